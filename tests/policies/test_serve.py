"""shopgym serve: decisions with propensities over HTTP, one-line 4xx for bad payloads, a joinable log."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from fastapi.testclient import TestClient

import sim  # noqa: F401 (registers the environments)
from experiments.bench_serve import fuzzed_payloads
from experiments.cli import main
from policies.decision_log import DecisionLog, join_feedback, read_decisions, read_orders, segments
from policies.export import export_policy
from policies.registry import make_policy
from policies.runtime import load_policy
from policies.serve import Server, build_app, create_app

OVERRIDES = {"population.shoppers": 300, "population.acquisition_days": 5.0}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=10)
    make_policy("ppo", env, seed=0).save(root / "saved")
    export_policy(root / "saved", root / "ppo", overrides=OVERRIDES, check_samples=100)
    return root / "ppo"


def features(policy) -> dict[str, float]:
    return {name: 1.0 for name in policy.feature_names}


def test_decide_returns_the_runtime_decision_with_propensity_one_and_the_card_hash(artifact: Path):
    policy = load_policy(artifact)
    client = TestClient(build_app(artifact))
    allowed = ["none", "coupon_10", "free_shipping"]
    body = client.post("/decide", json={"features": features(policy), "allowed": allowed, "request_id": "r1"})
    assert body.status_code == 200
    decision = body.json()
    assert decision["incentive"] == policy.decide(features(policy), allowed=set(allowed))
    assert decision["propensity"] == 1.0 and decision["request_id"] == "r1"
    assert decision["card_hash"] == policy.card["integrity"]["sha256"]
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/card").json()["integrity"] == policy.card["integrity"]
    batch = client.post("/decide/batch", json={"items": [{"features": features(policy)}] * 3}).json()
    assert [d["propensity"] for d in batch["decisions"]] == [1.0] * 3


def test_epsilon_exploration_logs_propensities_that_match_the_serving_rule(artifact: Path, tmp_path: Path):
    policy = load_policy(artifact)
    client = TestClient(build_app(artifact, epsilon=0.5, seed=3, log_dir=tmp_path / "log"))
    allowed = ["none", "coupon_10", "coupon_20", "free_shipping"]
    greedy = policy.decide(features(policy), allowed=set(allowed))
    served = [
        client.post("/decide", json={"features": features(policy), "allowed": allowed}).json()
        for _ in range(200)
    ]
    for d in served:
        expected = 0.5 * (d["incentive"] == greedy) + 0.5 / len(allowed)
        assert d["propensity"] == pytest.approx(expected)
    assert 0 < sum(d["incentive"] != greedy for d in served) < 200  # both branches drawn
    logged = read_decisions(tmp_path / "log")
    assert [row["request_id"] for row in logged] == [d["request_id"] for d in served]
    assert logged[0]["allowed"] == allowed and logged[0]["features"] == features(policy)


@pytest.mark.parametrize(
    "payload",
    [
        {"features": {"recency": 1.0}},
        {"features": {"recency": float("nan")}},
        {"allowed": ["none"]},
        {"features": {"recency": "1.0"}},
        [1, 2],
    ],
)
def test_bad_payloads_get_a_one_line_422_never_a_500(artifact: Path, payload):
    client = TestClient(build_app(artifact))
    body = json.dumps(payload, allow_nan=True)
    response = client.post("/decide", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "\n" not in response.json()["detail"]


def test_every_style_of_fuzz_all_get_4xx_and_the_server_stays_up(artifact: Path):
    policy = load_policy(artifact)
    client = TestClient(build_app(artifact, max_batch=256), raise_server_exceptions=False)
    codes = {}
    for path, body in fuzzed_payloads(policy.feature_names, 180, seed=0):
        code = client.post(path, content=body, headers={"content-type": "application/json"}).status_code
        codes[code] = codes.get(code, 0) + 1
    assert all(400 <= code < 500 for code in codes), codes
    assert 413 in codes  # oversized batch and body are refused before the model sees them
    assert client.get("/healthz").status_code == 200


def test_decision_log_rotates_by_size_and_joins_with_orders_into_obp_feedback(artifact: Path, tmp_path: Path):
    policy = load_policy(artifact)
    log = DecisionLog(tmp_path / "log", max_bytes=64 * 1024)
    server = Server(policy, epsilon=0.2, seed=0, log=log)
    app = TestClient(create_app(server))
    ids = [app.post("/decide", json={"features": features(policy)}).json()["request_id"] for _ in range(150)]
    assert len(segments(tmp_path / "log")) >= 2  # ~600 bytes a line: 150 lines pass 64 kB
    (tmp_path / "orders.jsonl").write_text(
        "".join(json.dumps({"request_id": r, "margin": 2.5}) + "\n" for r in ids[::2])
    )
    feedback = join_feedback(
        read_decisions(tmp_path / "log"),
        read_orders(tmp_path / "orders.jsonl"),
        policy.feature_names,
        policy.layout.obs_scales,
        policy.action_names,
        policy.layout.obs_clip,
    )
    assert feedback["n_rounds"] == 150 and feedback["request_id"] == ids
    assert feedback["reward"].tolist() == [2.5 if i % 2 == 0 else 0.0 for i in range(150)]
    assert np.allclose(feedback["context"], policy.normalize([features(policy)] * 150))
    assert ((feedback["pscore"] > 0) & (feedback["pscore"] <= 1)).all()


def _feature_rows(policy, n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [
        {name: float(v) for name, v in zip(policy.feature_names, row, strict=True)}
        for row in rng.random((n, len(policy.feature_names))) * 5
    ]


def test_a_stochastic_artifacts_probabilities_are_its_distribution_over_allowed_incentives(artifact: Path):
    policy = load_policy(artifact)
    assert policy.stochastic
    rows = _feature_rows(policy, 50)
    allowed = ["none", "coupon_10", "free_shipping"]
    dist = policy.action_probabilities(rows, allowed)
    assert dist.shape == (50, len(policy.action_names))
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-12)
    outside = [i for i, name in enumerate(policy.action_names) if name not in allowed]
    assert (dist[:, outside] == 0).all() and (dist > 0).sum(axis=1).min() > 1  # a real distribution
    assert (dist.argmax(axis=1) == policy.action_ids(rows, allowed)).all()


def test_sampling_serves_the_trained_distribution_and_logs_each_draws_probability(
    artifact: Path, tmp_path: Path
):
    policy = load_policy(artifact)
    allowed = ["none", "coupon_10", "free_shipping"]
    row = _feature_rows(policy, 1, seed=4)[0]
    expected = policy.action_probabilities([row], allowed)[0]
    client = TestClient(build_app(artifact, sample=True, epsilon=0.1, seed=5, log_dir=tmp_path / "log"))
    n = 3000
    served = client.post(
        "/decide/batch", json={"items": [{"features": row, "allowed": allowed}] * 256}
    ).json()["decisions"]
    while len(served) < n:
        served += client.post(
            "/decide/batch", json={"items": [{"features": row, "allowed": allowed}] * 256}
        ).json()["decisions"]
    served = served[:n]
    ids = np.array([policy.action_names.index(d["incentive"]) for d in served])
    rule = 0.9 * expected + 0.1 * np.isin(policy.action_names, allowed) / len(allowed)
    frequencies = np.bincount(ids, minlength=len(policy.action_names)) / n
    assert np.abs(frequencies - rule).max() < 4 * np.sqrt(0.25 / n)  # within 4 standard errors
    np.testing.assert_allclose([d["propensity"] for d in served], rule[ids], rtol=1e-12)
    logged = read_decisions(tmp_path / "log")
    assert len(logged) >= n
    assert {entry["rule"] for entry in logged} == {"sample"}


def test_sampling_a_deterministic_artifact_is_refused_in_one_line(tmp_path: Path, capsys):
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=10)
    make_policy("segment_rules", env, seed=0).save(tmp_path / "saved")
    export_policy(tmp_path / "saved", tmp_path / "rules", overrides=OVERRIDES, check_samples=50)
    assert not load_policy(tmp_path / "rules").stochastic
    assert main(["serve", str(tmp_path / "rules"), "--sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is deterministic: it has no distribution to sample" in err


def test_ope_of_a_stochastic_candidate_weights_each_round_by_its_probability(artifact: Path):
    """IPS of a stochastic artifact is mean(r * pi(a|x) / pscore): its distribution, not its mode."""
    from experiments.ope import estimate_from_feedback

    policy = load_policy(artifact)
    rng = np.random.default_rng(0)
    n, n_actions = 400, len(policy.action_names)
    raw = np.array([list(row.values()) for row in _feature_rows(policy, n, seed=1)])
    mask = np.ones((n, n_actions), dtype=bool)
    action = rng.integers(n_actions, size=n)
    reward = rng.normal(5.0, 2.0, size=n)
    feedback = {
        "raw_context": raw,
        "action_mask": mask,
        "context": raw,
        "action": action,
        "reward": reward,
        "pscore": np.full(n, 1.0 / n_actions),
        "n_actions": n_actions,
        "n_rounds": n,
    }
    pi = policy.action_probabilities(raw, mask)
    estimates = estimate_from_feedback(feedback, policy, clip=1e9)
    expected = float(np.mean(reward * pi[np.arange(n), action] * n_actions))
    assert estimates["ips"]["value"] == pytest.approx(expected, rel=1e-9)
    mode = np.zeros_like(pi)
    mode[np.arange(n), pi.argmax(axis=1)] = 1.0
    assert expected != pytest.approx(float(np.mean(reward * mode[np.arange(n), action] * n_actions)))


@pytest.mark.parametrize(("client", "rate"), [("httpx", 0.0), ("httpx", 300.0), ("raw", 0.0), ("raw", 300.0)])
def test_the_load_test_is_bounded_and_counts_every_fuzzed_payload_as_a_4xx(
    artifact: Path, client: str, rate: float
):
    """Small closed- and open-loop runs of ``shopgym bench serve`` against a real uvicorn on 127.0.0.1."""
    import os

    from experiments.bench_serve import bench_serve

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    (record,) = bench_serve(
        artifact, levels=(4,), max_requests=120, max_seconds=2.0, fuzz=30, rate=rate, client=client
    )
    assert record["requests"] > 0 and record["errors"] == 0 and record["client"] == client
    if client == "httpx":
        assert record["requests"] <= 120
    if rate > 0:  # an open loop offers what it was asked for, not more
        assert record["requests"] <= rate * 2.0 + 4
    assert record["fuzz_sent"] == record["fuzz_4xx"] == 30 and record["fuzz_5xx_or_failed"] == 0
    assert record["healthy_after"] and record["server_alive"]
    assert record["offered_per_s"] == (rate or None)
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity  # the client's pinning is undone


def test_wrk_durations_are_read_in_milliseconds():
    from experiments.bench_serve import _wrk_ms

    assert [_wrk_ms(t) for t in ("282.00us", "1.57ms", "2.10s")] == pytest.approx([0.282, 1.57, 2100.0])
    with pytest.raises(ValueError, match="not a wrk duration"):
        _wrk_ms("fast")


@pytest.mark.skipif(
    not __import__("shutil").which("wrk"), reason="wrk is not installed (apt-get install wrk)"
)
def test_a_wrk_driven_level_reports_throughput_latency_and_the_fuzz(artifact: Path):
    from experiments.bench_serve import bench_serve

    (record,) = bench_serve(artifact, levels=(4,), max_seconds=2.0, fuzz=20, client="wrk")
    assert record["client"] == "wrk" and record["requests"] > 0 and record["errors"] == 0
    assert 0 < record["p50_ms"] <= record["p99_ms"] and record["decisions_per_s"] > 0
    assert record["fuzz_sent"] == record["fuzz_4xx"] == 20 and record["healthy_after"]
