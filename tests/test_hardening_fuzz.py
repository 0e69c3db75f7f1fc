"""Issue 12: fuzzed scenarios and experiment configs (hypothesis, bounded in time).

Properties: a bad input is refused with one message of bounded length that names the field,
never a traceback or another exception type, and the command writes nothing under ``--out``;
a valid input simulates to finite metrics whose margin is the ledger identity
(revenue - cogs - incentive - shipping - returns - overtime, in exact cents).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.cli import main
from experiments.config import ConfigError, config_from_dict
from sim.engine import Simulation
from sim.metrics import summarize
from sim.params import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "sim" / "scenarios" / "default.yaml"
SMALL = {"population.shoppers": 150, "population.acquisition_days": 3.0}
#: Examples per property; SHOPGYM_FUZZ_EXAMPLES raises them for a long fuzzing session.
EXAMPLES = int(os.environ.get("SHOPGYM_FUZZ_EXAMPLES", "80"))
QUICK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(12, EXAMPLES // 8), deadline=None, suppress_health_check=list(HealthCheck))


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every scalar field of a scenario (tuples of sections excluded)."""
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += _leaves(value, f"{prefix}{key}.")
        return out
    return [prefix[:-1]]


SCENARIO_FIELDS = sorted(
    p
    for p in _leaves(load_scenario(DEFAULT).model_dump(mode="json"))
    if not p.startswith(("name", "description"))
)
NASTY = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1e300, 1e16, 2**63, 10**30, -1, 0, 128]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.floats(allow_nan=True), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@QUICK
@given(key=st.sampled_from(SCENARIO_FIELDS), value=NASTY)
def test_fuzzed_scenario_values_load_or_fail_with_one_bounded_message(key: str, value: Any):
    try:
        scenario = load_scenario(DEFAULT, {key: value})
    except ScenarioError as error:
        message = str(error)
        assert len(message) <= 4000
        assert key.split(".")[-1] in message or key.split(".")[0] in message
        return
    dumped = yaml.safe_dump(scenario.model_dump(mode="json"))  # what a run records: all finite
    assert ".nan" not in dumped and ".inf" not in dumped


def _within(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


VALID = st.fixed_dictionaries(
    {
        "shipping.fee": _within(0.0, 1e6),
        "shipping.free_threshold": _within(0.0, 1e6),
        "population.spend.gamma": _within(0.01, 1e5),
        "population.spend.q": _within(1.5, 50.0),
        "population.purchase.r": _within(0.01, 100.0),
        "population.purchase.alpha_weeks": _within(0.01, 100.0),
        "returns.handling_cost": _within(0.0, 1e6),
        "warehouse.overtime_cost_per_order": _within(0.0, 1e6),
        "mechanisms.social.within_degree": st.integers(0, 20),
        "mechanisms.social.across_degree": st.integers(0, 5),
        "loyalty.point_value": _within(0.0, 100.0),
    }
)


@pytest.mark.slow
@SLOW
@given(overrides=VALID, seed=st.integers(0, 2**32 - 1))
def test_fuzzed_valid_scenarios_give_finite_metrics_and_the_ledger_identity(
    overrides: dict[str, Any], seed: int
):
    try:
        scenario = load_scenario(DEFAULT, {**SMALL, **overrides})
    except ScenarioError as error:  # e.g. a mean order value above the cap: refused, and said so
        assert "mean order value" in str(error)
        return
    simulation = Simulation(scenario, seed=seed, horizon_days=10).run()
    metrics = summarize(simulation)
    numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    assert all(math.isfinite(v) for v in numbers.values()), numbers
    totals = simulation.ledger.totals_cents()
    costs = sum(totals[line] for line in ("cogs", "incentive", "shipping", "returns", "overtime"))
    assert totals["margin"] == totals["revenue"] - costs
    assert metrics["repeat_orders"] >= 0


BASE_CONFIG: dict[str, Any] = {
    "name": "fuzz",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "configs/scenarios/default.yaml",
        "overrides": dict(SMALL),
        "kwargs": {"horizon_days": 5},
    },
    "seeds": [0],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "ppo", "kind": "ppo", "kwargs": {"n_steps": 64, "batch_size": 32}},
    ],
    "evaluation": {"episodes": 1},
    "training": {"timesteps": 0},
}
CONFIG_FIELDS = [
    ("name",),
    ("seeds",),
    ("seeds", 0),
    ("env", "id"),
    ("env", "kwargs", "horizon_days"),
    ("env", "kwargs", "reward_scale"),
    ("env", "overrides", "shipping.fee"),
    ("env", "overrides", "population.shoppers"),
    ("policies", 0, "name"),
    ("policies", 0, "kind"),
    ("policies", 1, "kwargs", "n_steps"),
    ("policies", 1, "kwargs", "batch_size"),
    ("policies", 1, "kwargs", "learning_rate"),
    ("policies", 1, "kwargs", "gamma"),
    ("evaluation", "episodes"),
    ("training", "timesteps"),
    ("objective_weights",),
    ("variants",),
    ("workers",),
    ("backend",),
]


@QUICK
@given(field=st.sampled_from(CONFIG_FIELDS), value=NASTY)
def test_fuzzed_experiment_configs_fail_at_load_with_one_message_and_write_nothing(
    tmp_path_factory: pytest.TempPathFactory, field: tuple[Any, ...], value: Any
):
    data = copy.deepcopy(BASE_CONFIG)
    node: Any = data
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    try:
        config_from_dict(data)
    except ConfigError as error:
        message = str(error)
        assert len(message) <= 4000 and "Traceback" not in message
        assert any(str(part) in message for part in field if isinstance(part, str))
    else:
        return  # a valid config (e.g. another name): running it is the runner tests' job
    where = tmp_path_factory.mktemp("fuzz")
    path = where / "exp.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = where / "out"
    code = main(["run", str(path), "--out", str(out), "--quiet"])
    assert code == 2
    assert not out.exists()


# ---- issue 19 §4: fuzzed artifacts (edited cards, bomb headers, bad dtypes, wide layouts) ---------
ARTIFACT = settings(
    max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck)
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def rules_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gymnasium as gym

    import sim  # noqa: F401 (registers the environments)
    from policies.export import export_policy
    from policies.registry import make_policy

    where = tmp_path_factory.mktemp("fuzz_artifact")
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=SMALL, horizon_days=5)
    make_policy("segment_rules", env).save(where / "saved")
    env.close()
    return export_policy(where / "saved", where / "out", overrides=SMALL, check_samples=50).parent


def _card_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in _card_paths(v, (*prefix, k))]
    if isinstance(node, list):
        return [prefix] + [p for i, v in enumerate(node[:3]) for p in _card_paths(v, (*prefix, i))]
    return [prefix]


@ARTIFACT
@given(data=st.data(), value=JSONISH, resign=st.booleans())
def test_fuzzed_card_edits_are_refused_or_load_never_another_exception(
    rules_artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    value: Any,
    resign: bool,
):
    """Any edit is refused by the hash; re-signed, it loads and decides or is one ArtifactError line."""
    import json
    import shutil

    from policies.runtime import CARD_FILE, ArtifactError, FeatureError, card_digest, load_policy

    card = json.loads((rules_artifact / CARD_FILE).read_text())
    path = data.draw(st.sampled_from([p for p in _card_paths(card) if p and p[0] != "integrity"]))
    node: Any = card
    for key in path[:-1]:
        node = node[key]
    if node[path[-1]] == value:
        return
    node[path[-1]] = value
    if resign:
        card["integrity"]["sha256"] = card_digest(card)
    copy = tmp_path_factory.mktemp("card") / "a"
    shutil.copytree(rules_artifact, copy)
    (copy / CARD_FILE).write_text(json.dumps(card))
    try:
        policy = load_policy(copy)
    except ArtifactError as error:
        message = str(error)
        assert "\n" not in message and len(message) <= 1000
        if not resign:
            assert "the card was edited" in message or "unsupported" in message
        return
    assert resign, f"an edit at {path} loaded without re-signing"
    try:
        policy.decide(dict.fromkeys(policy.feature_names, 1.0))
    except (ArtifactError, FeatureError) as error:
        assert "\n" not in str(error)


DESCRS = st.one_of(
    st.sampled_from(["<f4", ">f8", "<f2", "<U8", "<M8[ns]", "|O", "<i8", "<c16", "|V8", "|S4", "<m8[s]"]),
    st.just([("a", "<f4"), ("b", "<f8")]),
)
SHAPES = st.lists(st.integers(0, 10**12), min_size=0, max_size=4).map(tuple)


@ARTIFACT
@given(descr=DESCRS, shape=SHAPES, payload=st.integers(0, 256), fortran=st.booleans())
def test_fuzzed_npy_headers_are_read_exactly_or_refused_before_allocating(
    descr: Any, shape: tuple[int, ...], payload: int, fortran: bool
):
    """Bomb shapes and bad dtypes: one PolicyFileError line, never a MemoryError or TypeError."""
    import io
    import zipfile

    import numpy as np

    from policies.base import PolicyFileError
    from policies.rl import read_weights

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": fortran, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + bytes(payload))
    try:
        arrays = read_weights(buffer.getvalue(), Path("weights.npz"))
    except PolicyFileError as error:
        assert "\n" not in str(error) and len(str(error)) <= 600
        return
    array = arrays["w"]
    assert array.dtype.kind == "f" and array.shape == shape and array.nbytes == payload


@ARTIFACT
@given(
    n_actions=st.integers(1, 300_000),
    n_heads=st.integers(0, 200),
    n_fields=st.integers(0, 6000),
)
def test_fuzzed_policy_file_layouts_are_checked_before_anything_is_sized(
    n_actions: int, n_heads: int, n_fields: int
):
    """A saved policy's env spec declaring any layout: a spec within the limits, or one line."""
    from policies.base import EnvSpec, PolicyFileError
    from policies.rules import MAX_DECISION_SLOTS, MAX_FEATURES, MAX_HEADS, MAX_INCENTIVES

    spec = {
        "env_id": "shopgym/IncentiveTargeting-v0",
        "obs_fields": [f"f{k}" for k in range(n_fields)],
        "obs_scales": [1.0] * n_fields,
        "obs_clip": [0.0, 10.0],
        "action_names": [f"i{k}" for k in range(n_actions)],
        "action_kinds": ["none"] * n_actions,
        "action_values": [0.0] * n_actions,
        "heads": [f"h{k}" for k in range(n_heads)],
    }
    try:
        loaded = EnvSpec.from_dict(spec)
    except PolicyFileError as error:
        assert "\n" not in str(error) and len(str(error)) <= 600
        return
    assert 0 < len(loaded.obs_fields) <= MAX_FEATURES and 0 < len(loaded.heads) <= MAX_HEADS
    assert loaded.n_actions <= MAX_INCENTIVES and loaded.n_actions * len(loaded.heads) <= MAX_DECISION_SLOTS
