"""Experiment configs fail at load, naming the field path, the bad value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments.config import ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
VALID: dict[str, Any] = {
    "name": "tiny",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "configs/scenarios/default.yaml",
        "overrides": {"population.shoppers": 200},
        "kwargs": {"horizon_days": 5},
    },
    "seeds": [0, 1],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "ppo", "kind": "ppo", "kwargs": {"n_steps": 64}},
    ],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with one dotted field replaced (list items by index)."""
    data = copy.deepcopy(VALID)
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_a_valid_config_loads_and_lists_its_cells():
    config = config_from_dict(VALID)
    assert config.cells() == [
        ("base", "none", 0),
        ("base", "none", 1),
        ("base", "ppo", 0),
        ("base", "ppo", 1),
    ]
    assert config.reference_policy == "none"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("env.id", "shopgym/Nope-v0", ["env.id", "shopgym/Nope-v0", "shopgym/IncentiveTargeting-v0"]),
        ("seeds", [0, "1"], ["seeds.1", "'1'"]),
        ("seeds", [], ["seeds", "needs at least 1 items"]),
        ("policies.0.kind", "greedy", ["policies.0.kind", "greedy", "segment_rules"]),
        ("evaluation", {"episodes": 0}, ["evaluation.episodes", "0", "must be at least 1"]),
        ("backend", "slurm", ["backend", "slurm", "allowed: 'local' or 'ray'"]),
        ("reference", "ppo2", ["reference", "ppo2", "'none', 'ppo'"]),
        ("objective_weights", {"profit": 1.0}, ["objective_weights", "profit", "margin"]),
        ("trainig", {"timesteps": 10}, ["trainig", "unknown key"]),
        ("env.overrides", {"population.shoppers": -5}, ["population.shoppers", "-5"]),
        ("env.kwargs", {"horizon_days": 0}, ["env.kwargs", "horizon_days"]),
        ("policies.1.kwargs", {"n_step": 64}, ["policies.ppo.kwargs", "n_step", "n_steps"]),
        (
            "policies.0",
            {"name": "none", "kind": "blanket", "kwargs": {"incentive": "coupon_99"}},
            ["policies.none.kwargs", "coupon_99", "coupon_10"],
        ),
    ],
)
def test_invalid_fields_fail_at_load_with_path_value_and_allowed(path: str, value: Any, expected: list[str]):
    data = VALID | {path: value} if "." not in path else with_change(path, value)
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    for fragment in expected:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_duplicate_policy_names_are_rejected():
    data = copy.deepcopy(VALID)
    data["policies"].append({"name": "none", "kind": "random"})
    with pytest.raises(ConfigError, match=r"policies.*\['none'\] repeat"):
        config_from_dict(data)


#: Experiment configs that ship (scenario files are checked by tests/sim/test_params.py; the
#: off-policy validation configs in configs/ope/ and the benchmark configs in configs/bench/
#: have their own schemas).
SHIPPED = sorted(
    p for p in (ROOT / "configs").glob("**/*.yaml") if not {"scenarios", "ope", "bench"} & set(p.parts)
)
OPE_SHIPPED = sorted((ROOT / "configs" / "ope").glob("*.yaml"))
BENCH_SHIPPED = sorted((ROOT / "configs" / "bench").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_shipped_experiment_config_loads(path: Path):
    assert yaml.safe_load(path.read_text())["name"]
    load_config(path)


@pytest.mark.parametrize("path", BENCH_SHIPPED, ids=lambda p: p.name)
def test_every_shipped_benchmark_config_loads(path: Path):
    from experiments.bench_load import load_sweep_config

    assert BENCH_SHIPPED and load_sweep_config(path)


@pytest.mark.parametrize("path", OPE_SHIPPED, ids=lambda p: p.name)
def test_every_shipped_off_policy_validation_config_loads(path: Path):
    from experiments.ope import load_validate_config

    assert OPE_SHIPPED and load_validate_config(path)


def test_a_comparison_must_name_cells_that_run(tmp_path):
    data = {
        "name": "x",
        "env": {"id": "shopgym/IncentiveTargeting-v0", "scenario": "configs/scenarios/default.yaml"},
        "variants": [
            {"name": "base"},
            {"name": "decay", "overrides": {"mechanisms.streaks.missed_day_rule": "decay"}},
        ],
        "seeds": [0],
        "policies": [
            {"name": "none", "kind": "none"},
            {"name": "rules", "kind": "segment_rules", "variants": ["base"]},
        ],
        "comparisons": [{"name": "c", "policy": "rules", "against": "rules", "against_variant": "decay"}],
    }
    with pytest.raises(
        ConfigError, match=r"comparisons\[0\]\.against: 'rules' does not run in variant 'decay'"
    ):
        config_from_dict(data)
    data["comparisons"] = [{"name": "c", "policy": "rules", "against": "none", "against_variant": "decay"}]
    assert config_from_dict(data).comparison_variants(config_from_dict(data).comparisons[0]) == (
        "base",
        "decay",
    )
