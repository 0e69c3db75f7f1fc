"""Researchers' own policy kinds: an installed entry-point package and ``shopgym.register_policy``.

The example package ``examples/custom_policy`` is pip-installed into a temporary target (never
into the shared environment) that is put on ``sys.path``, so ``importlib.metadata`` sees its
entry point as it would after ``pip install``.
"""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shopgym
from experiments.config import ConfigError, config_from_dict
from experiments.regress import regress
from experiments.runner import run_experiment
from policies import plugins
from policies.base import env_spec
from policies.export import ExportError, export_policy
from policies.registry import BUILTIN_KINDS, load_policy
from policies.runtime import load_policy as load_artifact

ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = {
    "name": "plugins",
    "env": {
        "id": "shopgym/ShopperJourney-v0",
        "scenario": "configs/scenarios/default.yaml",
        "kwargs": {"horizon_days": 120},
    },
    "objective_weights": {"margin": 1.0},
    "seeds": [0, 1],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "oracle", "kind": "oracle"},
        {"name": "segment_rules", "kind": "segment_rules"},
        {"name": "ridge", "kind": "ridge_greedy", "kwargs": {"epsilon": 0.2}},
    ],
    "training": {"episodes": 6},
    "evaluation": {"episodes": 3},
    "reference": "none",
}


class CountdownPolicy:
    """A plugin registered from Python: ``coupon_10`` on every third decision, with no export protocol."""

    def __init__(self, env: Any, seed: int = 0, every: int = 3) -> None:
        self.spec, self.seed, self.every, self.kind, self.name = (
            env_spec(env),
            seed,
            every,
            "countdown",
            "countdown",
        )
        self.steps = 0

    def predict(self, observation, state=None, episode_start=None, deterministic=False, action_masks=None):
        if episode_start is not None and bool(np.asarray(episode_start).all()):
            self.steps = 0
        self.steps += 1
        coupon = self.spec.action("coupon_10")
        allowed = action_masks is None or bool(np.asarray(action_masks).reshape(-1)[coupon])
        return np.int64(coupon if allowed and self.steps % self.every == 0 else 0), state

    def update(self, observations, actions, rewards, costs=None) -> None:
        return None

    def save(self, path) -> Path:
        target = Path(path) / "policy.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"kind": "countdown", "every": self.every, "env": self.spec.to_dict()}))
        return target

    @classmethod
    def load(cls, directory: Path, env: Any = None) -> CountdownPolicy:
        from policies.base import EnvSpec

        data = json.loads((Path(directory) / "policy.json").read_text())
        policy = cls.__new__(cls)
        policy.spec, policy.seed, policy.every = EnvSpec.from_dict(data["env"]), 0, int(data["every"])
        policy.kind = policy.name = "countdown"
        policy.steps = 0
        return policy


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "examples" / "custom_policy"),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    plugins.refresh_entry_points()
    yield target
    sys.path.remove(str(target))
    plugins.unregister_policy("ridge_greedy")
    plugins.refresh_entry_points()


@pytest.fixture(scope="module")
def run_dir(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_experiment(config_from_dict(CONFIG), tmp_path_factory.mktemp("run") / "plugins", quiet=True)


def test_the_installed_entry_point_is_a_kind_and_not_imported_until_used(installed: Path):
    sys.modules.pop("ridge_greedy", None)
    plugins.unregister_policy("ridge_greedy")
    plugins.refresh_entry_points()
    assert "ridge_greedy" in plugins.plugin_kinds()
    assert "ridge_greedy" not in sys.modules  # listing names reads metadata only
    assert plugins.get_plugin("ridge_greedy") is not None
    assert "ridge_greedy" in sys.modules


def test_plugin_runs_beside_built_in_kinds_on_the_same_episodes(run_dir: Path):
    results = pd.read_parquet(run_dir / "results.parquet")
    assert set(results["policy"]) == {"none", "oracle", "segment_rules", "ridge"}
    seeds = results.groupby("policy")["episode_seed"].apply(sorted)
    assert all(s == seeds.iloc[0] for s in seeds)
    ridge = results[results["policy"] == "ridge"]
    assert (ridge["kind"] == "ridge_greedy").all() and np.isfinite(ridge["margin"]).all()
    summary = (run_dir / "summary.md").read_text()
    assert "| ridge |" in summary and "| policy | IQM | mean | optimality gap | P(policy > none) |" in summary
    assert (run_dir / "plots" / "performance_profiles.png").read_bytes().startswith(b"\x89PNG")
    curve = pd.read_parquet(run_dir / "cells" / "base" / "ridge" / "seed0" / "curve.parquet")
    assert list(curve["x"]) == [1, 2, 3, 4, 5, 6]  # it trained over the configured episodes
    saved = json.loads((run_dir / "models" / "base" / "ridge" / "seed0" / "policy.json").read_text())
    assert saved["kind"] == "ridge_greedy" and np.abs(np.array(saved["target"])).sum() > 0


def test_a_resumed_plugin_run_skips_its_finished_cells(run_dir: Path):
    done = run_dir / "cells" / "base" / "ridge" / "seed1" / "done.json"
    before = done.stat().st_mtime_ns
    run_experiment(config_from_dict(CONFIG), run_dir, quiet=True)
    assert done.stat().st_mtime_ns == before


def test_plugin_passes_the_regression_gate_exactly(installed: Path, tmp_path: Path):
    config = config_from_dict(CONFIG)
    baseline = tmp_path / "baseline.json"
    regress(config, baseline, update=True)
    moved, _ = regress(config, baseline)
    assert moved == []
    stored = json.loads(baseline.read_text())
    stored["policies"]["base/ridge"]["return"] *= 1.0 + 1e-6  # exact: a plugin with reproducible = True
    baseline.write_text(json.dumps(stored))
    moved, _ = regress(config, baseline)
    assert [line.split(":")[0] for line in moved] == ["REGRESSION base/ridge return"]


def test_plugin_exports_through_its_decision_model_with_parity(run_dir: Path, tmp_path: Path):
    card_path = export_policy(run_dir, tmp_path / "artifact", policy="ridge", seed=0, check_samples=400)
    card = json.loads(card_path.read_text())
    assert card["policy"]["kind"] == "ridge_greedy" and card["model"]["rule"] == "linear"
    assert card["parity"]["agreement"] == 1.0
    runtime = load_artifact(tmp_path / "artifact")
    loaded = load_policy(run_dir / "models" / "base" / "ridge" / "seed0")
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 2, (50, len(runtime.feature_names))).astype(np.float32)
    want, _ = loaded.predict(obs, deterministic=True)
    raw = obs.astype(np.float64) * np.asarray(runtime.layout.obs_scales)
    np.testing.assert_array_equal(runtime.action_ids(raw), want)


def test_register_policy_runs_a_python_kind_and_export_says_what_is_missing(tmp_path: Path):
    shopgym.register_policy("countdown", CountdownPolicy)
    try:
        config = copy.deepcopy(CONFIG)
        config["policies"] = [CONFIG["policies"][0], {"name": "countdown", "kind": "countdown"}]
        root = run_experiment(config_from_dict(config), tmp_path / "run", quiet=True)
        results = pd.read_parquet(root / "results.parquet")
        spent = results.groupby("policy")["incentive_cost"].sum()
        assert spent["countdown"] > 0 and spent["none"] < spent["countdown"]
        with pytest.raises(ExportError, match="does not implement the export protocol: a greedy_model"):
            export_policy(root, tmp_path / "artifact", policy="countdown", seed=0)
        assert not (tmp_path / "artifact").exists()
    finally:
        plugins.unregister_policy("countdown")


def test_unknown_kind_lists_built_in_and_registered_kinds_and_how_to_register():
    shopgym.register_policy("countdown", CountdownPolicy)
    try:
        config = copy.deepcopy(CONFIG)
        config["policies"] = [{"name": "x", "kind": "os:system"}]
        with pytest.raises(ConfigError) as error:
            config_from_dict(config)
        message = str(error.value)
        assert "unknown policy kind 'os:system'" in message
        assert "segment_rules, " in message and "recurrent_ppo, " in message
        assert "countdown" in message.split("registered: ")[1].split(";")[0]
        assert "entry point (group 'shopgym.policies')" in message and "register_policy" in message
        assert len(message) < 2000
    finally:
        plugins.unregister_policy("countdown")


def test_a_run_directory_naming_an_unregistered_kind_imports_nothing(tmp_path: Path):
    (tmp_path / "policy.json").write_text(json.dumps({"kind": "json.tool", "env": {}}))
    sys.modules.pop("json.tool", None)
    with pytest.raises(ValueError, match=r"unknown policy kind 'json\.tool'"):
        load_policy(tmp_path)
    assert "json.tool" not in sys.modules


def test_register_policy_refuses_built_in_names_and_bad_names():
    with pytest.raises(plugins.PluginError, match="is built in"):
        shopgym.register_policy("ppo", CountdownPolicy)
    with pytest.raises(plugins.PluginError, match="not allowed"):
        shopgym.register_policy("../evil", CountdownPolicy)
    assert "ppo" in BUILTIN_KINDS
