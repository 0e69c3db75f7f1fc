"""The production runtime: numpy and onnxruntime only, strict features, intact artifacts, eligibility."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import sim  # noqa: F401 (registers the environments)
from policies.base import env_spec
from policies.export import export_policy
from policies.registry import make_policy
from policies.rules import SEGMENTS
from policies.runtime import CARD_FILE, ArtifactError, FeatureError, RuntimePolicy, load_policy
from sim.envs.targeting import OBS_FIELDS as TARGETING_FIELDS

ROOT = Path(__file__).resolve().parents[2]
TARGETING = {"population.shoppers": 300, "population.acquisition_days": 5.0}
CAMPAIGN = {"population.shoppers": 300}
#: Artifacts exported once for the module: name -> (env, kind).
ARTIFACTS = {
    "ppo": ("targeting", "ppo"),
    "maskable_ppo": ("targeting", "maskable_ppo"),
    "segment_rules": ("targeting", "segment_rules"),
    "lin_ucb": ("targeting", "lin_ucb"),
    "campaign_rules": ("campaign", "segment_rules"),
    "campaign_ppo": ("campaign", "ppo"),
}


def make_env(which: str) -> gym.Env:
    if which == "targeting":
        return gym.make("shopgym/IncentiveTargeting-v0", overrides=TARGETING, horizon_days=10)
    return gym.make("shopgym/CampaignPlanning-v0", overrides=CAMPAIGN, horizon_days=6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, Path]]:
    """Untrained SB3 networks and fitted JSON policies: in-process policy and artifact directory."""
    root = tmp_path_factory.mktemp("runtime")
    envs = {"targeting": make_env("targeting"), "campaign": make_env("campaign")}
    out = {}
    for name, (which, kind) in ARTIFACTS.items():
        policy = make_policy(kind, envs[which], seed=0)
        if kind == "lin_ucb":
            rng = np.random.default_rng(0)
            obs = rng.uniform(0, 2, (200, len(policy.spec.obs_fields)))
            policy.update(
                obs, rng.integers(0, policy.spec.n_actions, 200), obs[:, 0] - obs[:, 2], np.zeros(200)
            )
        policy.save(root / "saved" / name)
        overrides = TARGETING if which == "targeting" else CAMPAIGN
        export_policy(root / "saved" / name, root / name, overrides=overrides, check_samples=300)
        out[name] = (policy, root / name)
    return out


def features(policy: RuntimePolicy, **raw: float) -> dict[str, float]:
    """A plausible shopper: every feature set, some overridden (raw business values)."""
    base = {name: 0.0 for name in policy.feature_names}
    base.update(
        {"recency": 12.0, "frequency": 3.0, "monetary": 240.0, "tenure": 200.0, "decision_login": 1.0}
    )
    base.update(raw)
    return {k: v for k, v in base.items() if k in policy.feature_names}


def test_runtime_decides_in_a_process_where_torch_sb3_simpy_and_gymnasium_cannot_be_imported(exported):
    blocked = [
        "torch",
        "stable_baselines3",
        "sb3_contrib",
        "simpy",
        "gymnasium",
        "sim",
        "pandas",
        "onnx",
        "yaml",
    ]
    dirs = {name: str(exported[name][1]) for name in ("ppo", "maskable_ppo", "segment_rules", "lin_ucb")}
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys
        BLOCKED = set({blocked!r})

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked: the runtime must not need it")
                return None

        for loaded in list(sys.modules):
            if loaded.split(".")[0] in BLOCKED:
                del sys.modules[loaded]
        sys.meta_path.insert(0, Block())
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("the import block does not work")

        from policies.runtime import load_policy

        out = {{}}
        for name, path in {dirs!r}.items():
            policy = load_policy(path)
            row = {{n: 1.0 for n in policy.feature_names}}
            out[name] = [policy.decide(row), policy.decide(row, allowed={{"none", "coupon_10"}})]
            out[name].append(policy.decide_batch({{n: [1.0, 2.0] for n in policy.feature_names}}).tolist())
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({{"decisions": out, "leaked": leaked}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    for name, (first, restricted, batch) in report["decisions"].items():
        runtime = load_policy(exported[name][1])
        row = {n: 1.0 for n in runtime.feature_names}
        assert first == runtime.decide(row), name
        assert restricted in {"none", "coupon_10"}
        assert len(batch) == 2


@pytest.mark.parametrize("name", ["ppo", "segment_rules"])
def test_missing_extra_and_non_numeric_features_are_rejected_by_name(exported, name: str):
    policy = load_policy(exported[name][1])
    row = features(policy)
    with pytest.raises(FeatureError, match=r"missing features \['recency'\]"):
        policy.decide({k: v for k, v in row.items() if k != "recency"})
    with pytest.raises(FeatureError, match=r"unknown features \['shoe_size'\]"):
        policy.decide({**row, "shoe_size": 38.0})
    renamed = {("recency_days" if k == "recency" else k): v for k, v in row.items()}
    with pytest.raises(
        FeatureError, match=r"missing features \['recency'\]; unknown features \['recency_days'\]"
    ):
        policy.decide(renamed)
    with pytest.raises(FeatureError, match=r"'monetary'.*not a number"):
        policy.decide({**row, "monetary": "240 dollars"})
    with pytest.raises(FeatureError, match=r"'monetary'.*not a number"):
        policy.decide({**row, "monetary": None})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_are_rejected_naming_the_feature(exported, bad: float):
    for name in ("ppo", "lin_ucb"):
        policy = load_policy(exported[name][1])
        with pytest.raises(FeatureError, match=r"'open_cart' is .*finite"):
            policy.decide(features(policy, open_cart=bad))
        frame = pd.DataFrame([features(policy), features(policy, open_cart=bad)])
        with pytest.raises(FeatureError, match=r"'open_cart' is .*\(row 1"):
            policy.decide_batch(frame)


def test_batches_reject_missing_or_extra_columns_and_wrong_shapes(exported):
    policy = load_policy(exported["ppo"][1])
    frame = pd.DataFrame([features(policy)] * 3)
    with pytest.raises(FeatureError, match=r"missing features \['tenure'\]"):
        policy.decide_batch(frame.drop(columns=["tenure"]))
    with pytest.raises(FeatureError, match=r"unknown features \['zip_code'\]"):
        policy.decide_batch(frame.assign(zip_code=1.0))
    width = len(TARGETING_FIELDS)
    with pytest.raises(FeatureError, match=rf"expected \(n, {width}\)"):
        policy.decide_batch(np.zeros((3, width - 1)))
    with pytest.raises(FeatureError, match="row 1: missing features"):
        policy.decide_batch([features(policy), {"recency": 1.0}])


def test_every_batch_form_gives_the_same_decisions_as_single_calls(exported):
    rng = np.random.default_rng(3)
    for name in ("ppo", "maskable_ppo", "segment_rules", "lin_ucb"):
        policy = load_policy(exported[name][1])
        rows = [
            features(policy, recency=float(r), monetary=float(m), open_cart=float(c))
            for r, m, c in rng.uniform(0, 400, (50, 3))
        ]
        singles = [policy.decide(row) for row in rows]
        frame = pd.DataFrame(rows)
        shuffled = frame[list(reversed(frame.columns))]  # columns are matched by name, not position
        array = frame[list(policy.feature_names)].to_numpy()
        columns = {k: frame[k].tolist() for k in frame.columns}
        for batch in (frame, shuffled, array, columns, rows):
            assert policy.decide_batch(batch).tolist() == singles, name


def test_normalization_is_the_environments_raw_over_scale_clipped_to_the_box(exported):
    policy = load_policy(exported["ppo"][1])
    card = policy.card
    assert card["normalization"]["clip"] == [0.0, 10.0]
    obs = policy.normalize(features(policy, recency=73.0, monetary=50_000.0, open_cart=-5.0))[0]
    assert obs.dtype == np.float32
    assert obs[policy.feature_names.index("recency")] == np.float32(73.0 / 365.0)
    assert obs[policy.feature_names.index("monetary")] == 10.0  # clipped at the box's top
    assert obs[policy.feature_names.index("open_cart")] == 0.0  # and at its bottom


def test_tampered_or_mismatched_model_files_are_refused(exported, tmp_path: Path):
    for name, file in (("ppo", "policy.onnx"), ("lin_ucb", "policy.json")):
        copy = tmp_path / name
        shutil.copytree(exported[name][1], copy)
        data = bytearray((copy / file).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / file).write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match="does not match its card"):
            load_policy(copy)
    swapped = tmp_path / "swapped"
    shutil.copytree(exported["ppo"][1], swapped)
    shutil.copy(exported["maskable_ppo"][1] / "policy.onnx", swapped / "policy.onnx")
    with pytest.raises(ArtifactError, match="belongs to another export"):  # its size, before its hash
        load_policy(swapped)
    (swapped / "policy.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_policy(swapped)
    with pytest.raises(ArtifactError, match="not found"):
        load_policy(tmp_path / "nowhere")


def test_artifacts_hold_only_the_card_and_one_plain_model_file_never_a_pickle(exported):
    import onnx

    for name, (_, path) in exported.items():
        files = sorted(p.name for p in path.iterdir())
        model = (
            "policy.onnx"
            if json.loads((path / CARD_FILE).read_text())["model"]["format"] == "onnx"
            else "policy.json"
        )
        assert files == sorted([CARD_FILE, model]), name
        for file in files:
            data = (path / file).read_bytes()
            assert not data.startswith(b"\x80"), f"{name}/{file} looks like a pickle"
            assert b"pickle" not in data
        if model == "policy.onnx":
            onnx.checker.check_model(onnx.load(path / model))
        else:
            json.loads((path / model).read_text())


@pytest.mark.parametrize("name", ["ppo", "maskable_ppo", "segment_rules", "lin_ucb"])
def test_allowed_incentives_bound_every_choice(exported, name: str):
    policy = load_policy(exported[name][1])
    rng = np.random.default_rng(5)
    rows = [features(policy, recency=float(r), monetary=float(m)) for r, m in rng.uniform(0, 400, (40, 2))]
    per_row = [{"none", *rng.choice(policy.action_names[1:], 2, replace=False).tolist()} for _ in rows]
    chosen = policy.decide_batch(rows, per_row)
    assert all(c in allowed for c, allowed in zip(chosen, per_row, strict=True))
    assert [
        policy.decide(row, allowed) for row, allowed in zip(rows, per_row, strict=True)
    ] == chosen.tolist()
    mask = np.array([[a in allowed for a in policy.action_names] for allowed in per_row])
    assert policy.decide_batch(rows, mask).tolist() == chosen.tolist()
    only = policy.decide_batch(rows, {"free_shipping"})
    assert set(only) <= {"free_shipping", "none"}  # rules fall back to none when nothing they like is allowed
    with pytest.raises(FeatureError, match=r"unknown incentives \['coupon_99'\]"):
        policy.decide(rows[0], {"none", "coupon_99"})
    with pytest.raises(FeatureError, match="empty"):
        policy.decide(rows[0], set())


def test_unmasked_networks_choose_the_best_allowed_logit(exported):
    policy = load_policy(exported["ppo"][1])
    row = features(policy)
    free = policy.decide(row)
    assert policy.decide(row, set(policy.action_names)) == free
    rest = set(policy.action_names) - {free}
    assert policy.decide(row, rest) != free


def test_per_segment_policies_decide_one_incentive_per_segment(exported):
    env = make_env("campaign")
    spec = env_spec(env)
    rng = np.random.default_rng(2)
    obs = rng.uniform(0, 1.5, (200, len(spec.obs_fields))).astype(np.float32)
    raw = obs.astype(np.float64) * np.asarray(spec.obs_scales)
    for name in ("campaign_rules", "campaign_ppo"):
        in_process, path = exported[name]
        policy = load_policy(path)
        assert policy.heads == SEGMENTS
        want, _ = in_process.predict(obs, deterministic=True)
        got = policy.decide_batch(raw)
        assert got.shape == (200, len(SEGMENTS))
        np.testing.assert_array_equal(np.asarray(policy.action_names)[want], got)
        one = policy.decide(dict(zip(policy.feature_names, raw[0].tolist(), strict=True)))
        assert one == dict(zip(SEGMENTS, got[0].tolist(), strict=True))
