"""Issue 19: fuzzed objective weights, ``export --set`` values, env kwargs and calibrate logs.

Properties: a bad value is refused with shopgym's own bounded message (ConfigError,
ArgumentTypeError, CalibrationError), never another exception; a valid one loads, and what
it loads is right (the run records the scenario the env runs on; local days are kept).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
from typing import Any

import gymnasium as gym
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.calibrate import EARLIEST_ORDER, CalibrationError, latest_order_default, validate_log
from experiments.config import ConfigError, config_from_dict
from experiments.export_cli import _parse_overrides
from experiments.runner import scenario_hashes
from sim.envs.common import MAX_OBJECTIVE_WEIGHT
from sim.params import DECISION_KINDS

EXAMPLES = int(os.environ.get("SHOPGYM_FUZZ_EXAMPLES", "30"))
QUICK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(6, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck))
CONFIG: dict[str, Any] = {
    "name": "fuzz",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "default",
        "overrides": {"population.shoppers": 50, "population.acquisition_days": 2.0},
        "kwargs": {"horizon_days": 2},
    },
    "seeds": [0],
    "policies": [{"name": "none", "kind": "none"}],
}


@QUICK
@given(st.dictionaries(st.sampled_from(["margin", "ltv", "load", "budget"]), st.floats(), min_size=1))
def test_objective_weights_load_only_when_finite_and_bounded(weights: dict[str, float]):
    data = {**copy.deepcopy(CONFIG), "objective_weights": weights}
    bounded = all(abs(w) <= MAX_OBJECTIVE_WEIGHT for w in weights.values())  # False for NaN too
    try:
        config_from_dict(data, check=False)
    except ConfigError as error:
        assert not bounded and "objective_weights" in str(error) and len(str(error)) < 4000
    else:
        assert bounded


@QUICK
@given(st.text(max_size=200))
def test_export_set_values_parse_or_are_one_line_of_shopgym(value: str):
    try:
        parsed = _parse_overrides([f"population.shoppers={value}"])
    except argparse.ArgumentTypeError as error:
        text = str(error)
        assert text.startswith("--set ") and "\n" not in text and len(text) < 400
    else:
        assert set(parsed) == {"population.shoppers"}


@SLOW
@given(
    st.lists(st.sampled_from(list(DECISION_KINDS)), min_size=1, max_size=3, unique=True),
    st.sampled_from(["shopgym/IncentiveTargeting-v0", "shopgym/ShopperJourney-v0"]),
)
def test_the_run_records_the_scenario_of_any_decision_points(points: list[str], env_id: str):
    data = copy.deepcopy(CONFIG)
    data["env"] = {**data["env"], "id": env_id, "kwargs": {"horizon_days": 2, "decision_points": points}}
    config = config_from_dict(data, check=False)
    env = gym.make(env_id, **config.env_kwargs("base"))
    assert env.unwrapped.scenario.config_hash() == scenario_hashes(config)["base"]  # type: ignore[attr-defined]


_STAMPS = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))
_OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@QUICK
@given(st.lists(st.tuples(_STAMPS, _OFFSETS), min_size=1, max_size=20))
def test_calibrate_timestamps_keep_local_days_or_are_refused_by_shopgym(rows: list[tuple[dt.datetime, Any]]):
    stamps = [stamp.replace(tzinfo=zone, microsecond=0).isoformat() for stamp, zone in rows]
    frame = pd.DataFrame({"customer_id": ["a"] * len(rows), "timestamp": stamps, "amount": 10.0})
    try:
        log = validate_log(frame, duplicates="keep")
    except CalibrationError as error:
        assert len(str(error)) < 1000
        latest = latest_order_default()
        assert any(not EARLIEST_ORDER <= pd.Timestamp(stamp) <= latest for stamp, _ in rows)
    else:
        local = sorted(pd.Timestamp(stamp.replace(microsecond=0)) for stamp, _ in rows)
        assert list(log.frame["time"]) == local  # the wall-clock time, never shifted to UTC
