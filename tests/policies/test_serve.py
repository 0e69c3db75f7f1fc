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
