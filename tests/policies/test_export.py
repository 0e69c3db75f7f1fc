"""Exported artifacts choose exactly what the in-process policies choose; the card says what they are."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import pandas as pd
import pytest
import torch
import yaml

import sim  # noqa: F401 (registers the environments)
from experiments.cli import build_parser, main
from experiments.export_cli import bench_export, format_export_table
from experiments.runner import write_results
from policies.base import Policy, sealed
from policies.export import ExportError, export_policy, float32_ties
from policies.registry import RL_KINDS, make_policy
from policies.runtime import CARD_FILE, load_policy
from sim.envs.common import resolve_scenario
from sim.envs.targeting import OBS_FIELDS

OVERRIDES = {"population.shoppers": 300, "population.acquisition_days": 5.0}
SCENARIO = "configs/scenarios/default.yaml"
N_PARITY = 10_000
#: A few hundred training steps: enough to move the weights off their initialization.
RL_SETTINGS = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 16, "buffer_size": 1000, "train_freq": 4},
    "maskable_ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "qrdqn": {"learning_starts": 16, "buffer_size": 1000, "train_freq": 4},
    "trpo": {"n_steps": 64, "batch_size": 32},
    "ars": {"n_delta": 2},
    "uplift": {"n_estimators": 20, "min_samples_leaf": 10, "min_arm_samples": 50},
}
KINDS = (
    "ppo",
    "qrdqn",
    "trpo",
    "ars",
    "maskable_ppo",
    "dqn",
    "a2c",
    "segment_rules",
    "ltv_coupon",
    "blanket",
    "none",
    "lin_ucb",
    "lin_thompson",
    "thompson",
    "ucb1",
    "epsilon_greedy",
    "uplift",
)


def targeting() -> gym.Env:
    return gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=10)


@pytest.fixture(scope="module")
def episodes() -> tuple[np.ndarray, np.ndarray]:
    """10,000 real observations and eligibility masks: random eligible actions over several episodes."""
    env = targeting()
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=100)
    seen, masks, resets = [], [], 0
    while len(seen) < N_PARITY:
        mask = env.unwrapped.action_masks()
        seen.append(obs)
        masks.append(mask)
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            resets += 1
            obs, _ = env.reset(seed=100 + resets)
    assert resets >= 3
    return np.array(seen), np.array(masks)


def trained(kind: str, env: gym.Env, obs: np.ndarray, masks: np.ndarray) -> Policy:
    """A briefly trained policy: SB3 for 256 steps, bandits on 2,000 logged decisions."""
    policy = make_policy(kind, env, seed=0, **RL_SETTINGS.get(kind, {}))
    if kind in RL_KINDS:
        policy.learn(256)  # type: ignore[attr-defined]
    elif hasattr(policy, "greedy_model") and kind not in ("segment_rules", "ltv_coupon", "blanket", "none"):
        rng = np.random.default_rng(1)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks[:2000]])
        # A reward in [0, 1] with a context effect, so linear bandits learn non-trivial weights.
        reward = np.clip(0.3 + 0.2 * obs[:2000, 0] - 0.05 * (actions % 4) + rng.normal(0, 0.1, 2000), 0, 1)
        policy.update(obs[:2000], actions, reward, np.zeros(2000))
    return policy


@pytest.fixture(scope="module")
def exported(tmp_path_factory, episodes) -> dict[str, tuple[Policy, Path]]:
    obs, masks = episodes
    root = tmp_path_factory.mktemp("export")
    env = targeting()
    out = {}
    for kind in KINDS:
        policy = trained(kind, env, obs, masks)
        policy.save(root / "saved" / kind)
        export_policy(root / "saved" / kind, root / kind, overrides=OVERRIDES, check_samples=500)
        out[kind] = (policy, root / kind)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_exported_policy_chooses_the_in_process_action_on_10000_real_observations(
    exported, episodes, kind: str
):
    obs, masks = episodes
    policy, path = exported[kind]
    runtime = load_policy(path)
    raw = obs.astype(np.float64) * np.array([scale for *_, scale in OBS_FIELDS])
    frame = pd.DataFrame(raw, columns=list(runtime.feature_names))
    # In process, only MaskablePPO and the JSON policies read masks; the other SB3 models ignore them.
    masked = kind not in RL_KINDS or kind == "maskable_ppo"
    torch.set_num_threads(1)
    want, _ = policy.predict(obs, deterministic=True, action_masks=masks if masked else None)
    got = runtime.action_ids(frame, masks if masked else None)
    assert len(want) == N_PARITY
    differ = np.flatnonzero(want != got)
    # Only where the network's two best scores tie in float32 may the last-bit rounding of torch
    # and onnxruntime break the tie differently; never for JSON policies (the same numpy code).
    ties = float32_ties(policy, obs[differ], masks[differ] if masked else None, want[differ], got[differ])
    real = differ[~ties]
    assert real.size == 0, f"{kind}: {real.size} of {N_PARITY} differ, first rows {real[:5]}"
    assert differ.size <= (N_PARITY // 1000 if kind in RL_KINDS else 0), f"{kind}: {differ.size} float32 ties"
    names = np.asarray(runtime.action_names)
    for i in range(0, N_PARITY, 97):  # single decisions by name agree with the batch
        row = dict(zip(runtime.feature_names, raw[i].tolist(), strict=True))
        allowed = {runtime.action_names[a] for a in np.flatnonzero(masks[i])} if masked else None
        assert runtime.decide(row, allowed) == names[got[i]]


@pytest.mark.parametrize("kind", ["ppo", "dqn", "a2c"])
def test_unmasked_networks_with_eligibility_choose_the_best_allowed_score(exported, episodes, kind: str):
    obs, masks = episodes
    runtime = load_policy(exported[kind][1])
    raw = obs[:2000].astype(np.float64) * np.array([scale for *_, scale in OBS_FIELDS])
    free = runtime.action_ids(raw)
    got = runtime.action_ids(raw, masks[:2000])
    assert masks[:2000][np.arange(2000), got].all()
    allowed_anyway = masks[:2000][np.arange(2000), free]
    np.testing.assert_array_equal(got[allowed_anyway], free[allowed_anyway])


def test_onnx_graphs_hold_only_the_acting_network(exported):
    outputs = {"dqn": "q_values", "qrdqn": "q_values", "ars": "scores"}
    for kind in (k for k in KINDS if k in RL_KINDS):
        model = onnx.load(exported[kind][1] / "policy.onnx")
        inputs = [i.name for i in model.graph.input]
        assert inputs == (["obs", "action_mask"] if kind == "maskable_ppo" else ["obs"])
        assert [o.name for o in model.graph.output] == [outputs.get(kind, "log_probs")]
        weights = " ".join(i.name for i in model.graph.initializer)
        assert "value_net" not in weights and "q_net_target" not in weights, kind
        assert "quantile_net_target" not in weights, kind


def test_card_records_features_normalization_actions_hash_versions_and_training(exported):
    path = exported["ppo"][1]
    card = json.loads((path / CARD_FILE).read_text())
    assert [f["name"] for f in card["features"]] == [name for name, *_ in OBS_FIELDS]
    assert [f["unit"] for f in card["features"]] == [unit for _, unit, _ in OBS_FIELDS]
    assert [f["scale"] for f in card["features"]] == [scale for *_, scale in OBS_FIELDS]
    assert {f["dtype"] for f in card["features"]} == {"float64"}
    assert card["normalization"]["clip"] == [0.0, 10.0]
    scenario = resolve_scenario(SCENARIO, OVERRIDES)
    assert card["actions"]["names"] == [i.name for i in scenario.incentives]
    assert card["actions"]["heads"] == ["shopper"]
    assert card["scenario"]["config_hash"] == scenario.config_hash()
    assert card["model"]["format"] == "onnx" and card["model"]["mask"] == "after"
    assert card["runtime_requires"] == ["numpy", "onnxruntime"]
    assert {"numpy", "onnxruntime", "torch", "stable-baselines3"} <= set(card["versions"]["export"])
    assert card["training"]["total_timesteps"] == 256
    assert card["training"]["policy"]["kwargs"]["n_steps"] == 64
    assert card["parity"]["agreement"] == 1.0 and card["parity"]["max_abs_score_difference"] < 1e-4
    json_card = json.loads((exported["lin_ucb"][1] / CARD_FILE).read_text())
    assert json_card["model"] | {"sha256": "-", "bytes": 0} == {
        "file": "policy.json",
        "sha256": "-",
        "bytes": 0,
        "format": "json",
        "rule": "linear",
        "mask": "rule",
    }
    assert json_card["runtime_requires"] == ["numpy"]


def test_random_policy_is_refused_for_want_of_a_deterministic_decision(tmp_path: Path):
    make_policy("random", targeting()).save(tmp_path / "saved")
    with pytest.raises(ExportError, match="'random' has no deterministic decision"):
        export_policy(tmp_path / "saved", tmp_path / "out", overrides=OVERRIDES)
    assert not (tmp_path / "out").exists()


def test_a_scenario_with_other_incentives_is_refused(tmp_path: Path, monkeypatch):
    env = targeting()
    make_policy("segment_rules", env).save(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "policy.json").read_text())
    meta["env"]["action_names"][1] = "coupon_15"
    meta["params"]["playbook"]["cart_abandoners"] = ["free_shipping"]
    (tmp_path / "saved" / "policy.json").write_text(json.dumps(sealed(meta)))  # re-signed: past the hash
    with pytest.raises(ExportError, match="pass the scenario it was trained on"):
        export_policy(tmp_path / "saved", tmp_path / "out", overrides=OVERRIDES)


def make_run(root: Path, variant_dirs: bool) -> Path:
    """A hand-made run directory in the layout ``shopgym run`` writes."""
    env = targeting()
    root.mkdir(parents=True)
    config = {
        "name": "tiny",
        "env": {
            "id": "shopgym/IncentiveTargeting-v0",
            "scenario": SCENARIO,
            "overrides": OVERRIDES,
            "kwargs": {},
        },
        "variants": [{"name": "base", "overrides": {}}],
        "seeds": [3, 4],
        "policies": [
            {"name": "rules", "kind": "segment_rules", "kwargs": {"new_days": 20.0}},
            {"name": "control", "kind": "none", "kwargs": {}},
        ],
        "training": {"timesteps": 0, "episodes": 0},
        "evaluation": {"episodes": 2, "deterministic": True},
    }
    (root / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    (root / "meta.json").write_text(
        json.dumps(
            {"scenario_hash": {"base": "feedfacecafebeef"}, "versions": {"numpy": "x"}, "git_sha": "abc"}
        )
    )
    for name, kind, kwargs in (("rules", "segment_rules", {"new_days": 20.0}), ("control", "none", {})):
        for seed in (3, 4):
            where = root / "models" / ("base" if variant_dirs else "") / name / f"seed{seed}"
            make_policy(kind, env, seed=seed, **kwargs).save(where)
    rows = [
        {"variant": "base", "policy": p, "seed": s, "episode": e, "return": 10.0 * s + e, "margin": 100.0 + e}
        for p in ("rules", "control")
        for s in (3, 4)
        for e in range(2)
    ]
    write_results(pd.DataFrame(rows), root)
    return root


@pytest.mark.parametrize(
    "variant_dirs", [True, False], ids=["models-variant-policy-seed", "models-policy-seed"]
)
def test_export_from_a_run_directory_records_its_training_config_and_metrics(
    tmp_path: Path, variant_dirs: bool
):
    run = make_run(tmp_path / "run", variant_dirs)
    card_path = export_policy(run, tmp_path / "out", policy="rules", seed=4)
    card = json.loads(card_path.read_text())
    assert card["policy"] == {"name": "rules", "kind": "segment_rules", "seed": 4, "deterministic": True}
    assert card["training"]["policy"]["kwargs"] == {"new_days": 20.0}
    assert card["training"]["evaluation"]["episodes"] == 2
    assert card["evaluation"]["episodes"] == 2
    assert card["evaluation"]["mean"]["return"] == pytest.approx(40.5)
    assert card["evaluation"]["mean"]["margin"] == pytest.approx(100.5)
    assert card["scenario"]["config_hash"] == "feedfacecafebeef"  # what training recorded
    assert card["versions"]["training"] == {"numpy": "x"}
    assert card["source"]["git_sha"] == "abc"
    runtime = load_policy(tmp_path / "out")
    shopper = {n: 0.0 for n in runtime.feature_names} | {"decision_login": 1.0, "monetary": 120.0}
    assert runtime.decide(shopper | {"tenure": 15.0}) == "bonus_500_points"  # new
    assert runtime.decide(shopper | {"tenure": 25.0}) == "streak_bonus_200"  # new_days=20, not 30, came along
    with pytest.raises(
        ExportError, match=r"several saved models match; choose one of: .*--policy rules --seed 3"
    ):
        export_policy(run, tmp_path / "out2", policy="rules")
    with pytest.raises(ExportError, match="no saved model matches"):
        export_policy(run, tmp_path / "out2", policy="ppo", seed=3)


def test_cli_export_writes_an_artifact_and_explains_its_options(tmp_path: Path, capsys):
    make_policy("ltv_coupon", targeting()).save(tmp_path / "saved")
    args = ["export", str(tmp_path / "saved"), "--out", str(tmp_path / "out")]
    args += [f"--set={key}={value}" for key, value in OVERRIDES.items()]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([CARD_FILE, "policy.json"])
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a saved policy" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["export"].format_help()  # type: ignore[union-attr]
    for option in ("SOURCE", "--policy", "--seed", "--scenario", "--set", "--eval-episodes"):
        assert option in help_text
    assert "export" in build_parser()._subparsers._group_actions[0].choices["bench"].format_help()  # type: ignore[union-attr]


def test_bench_export_reports_both_paths_against_the_budget(exported):
    paths = [exported["ppo"][1], exported["lin_ucb"][1]]
    records = bench_export(decisions=50, batch_size=100, batches=2, artifacts=paths, quiet=True)
    assert [(r["path"], r["policy"]) for r in records] == [("onnxruntime", "ppo"), ("numpy", "lin_ucb")]
    for record in records:
        assert 0 < record["single_p50_us"] <= record["single_p99_us"]
        assert record["batch_decisions_per_s"] > 0 and record["budget_ms"] == 50.0
    format_export_table(records)  # renders
