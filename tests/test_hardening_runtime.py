"""Issue 12: the runtime answers every bad input with FeatureError or ArtifactError, the same in decide and
decide_batch, and fuzzed inputs never raise anything else."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim  # noqa: F401 (registers the environments)
from policies.export import export_policy
from policies.registry import make_policy
from policies.runtime import CARD_FILE, ArtifactError, FeatureError, RuntimePolicy, load_policy

OVERRIDES = {"population.shoppers": 200, "population.acquisition_days": 3.0}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("rt")
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=5)
    out = {}
    for kind in ("segment_rules", "maskable_ppo"):
        make_policy(kind, env, seed=0).save(where / "saved" / kind)
        out[kind] = export_policy(
            where / "saved" / kind, where / kind, overrides=OVERRIDES, check_samples=50
        ).parent
    env.close()
    return out


@pytest.fixture(scope="module", params=["segment_rules", "maskable_ppo"])
def policy(request: pytest.FixtureRequest, artifacts: dict[str, Path]) -> RuntimePolicy:
    return load_policy(artifacts[request.param])


def _row(policy: RuntimePolicy, value: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(policy.feature_names, value)


@pytest.mark.parametrize(
    "features", [None, [1.0, 2.0], "recency", 5, {"recency": 10**400}, np.zeros(3)], ids=repr
)
def test_bad_features_raise_feature_error(policy: RuntimePolicy, features: Any):
    """The original failure: TypeError, AttributeError or OverflowError escaped decide()."""
    if isinstance(features, dict):
        features = {**_row(policy), **features}
    with pytest.raises(FeatureError):
        policy.decide(features)


def test_huge_integer_is_a_feature_error_everywhere(policy: RuntimePolicy):
    row = {**_row(policy), policy.feature_names[0]: 10**400}
    with pytest.raises(FeatureError):
        policy.decide(row)
    with pytest.raises(FeatureError):
        policy.decide_batch([row])


@pytest.mark.parametrize(
    "allowed", [5, 1.5, "none", {"none": 1}, [1, 2], np.array([1, 2]), object()], ids=repr
)
def test_bad_allowed_raises_feature_error(policy: RuntimePolicy, allowed: Any):
    with pytest.raises(FeatureError):
        policy.decide(_row(policy), allowed)
    with pytest.raises(FeatureError):
        policy.decide_batch([_row(policy)], allowed)


def test_numpy_allowed_is_honoured(policy: RuntimePolicy):
    names = np.array(["none", policy.action_names[1]])
    assert policy.decide(_row(policy), names) in set(names.tolist())
    mask = np.zeros(len(policy.action_names), dtype=bool)
    mask[1] = True
    assert policy.decide(_row(policy), mask) == policy.action_names[1]


def test_decide_batch_refuses_numeric_strings_as_decide_does(policy: RuntimePolicy):
    """The original failure: decide_batch parsed '1.5' that decide refused."""
    row = {**_row(policy), policy.feature_names[0]: "1.5"}
    with pytest.raises(FeatureError):
        policy.decide(row)
    with pytest.raises(FeatureError):
        policy.decide_batch([row])
    with pytest.raises(FeatureError):
        policy.decide_batch(np.array([[str(1.5)] * len(policy.feature_names)]))


def test_an_empty_masked_batch_gives_an_empty_answer(policy: RuntimePolicy):
    """The original failure: an empty masked batch failed to reshape."""
    empty = np.zeros((0, len(policy.feature_names)))
    mask = np.zeros((0, len(policy.action_names)), dtype=bool)
    assert policy.decide_batch(empty, mask).shape == (0,)
    assert policy.decide_batch(empty).shape == (0,)


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(features="nope"),
        lambda c: c.update(features=["a", "b"]),
        lambda c: c.update(normalization=[1, 2]),
        lambda c: c.update(model=["x"]),
        lambda c: c.update(actions={"names": 5}),
    ],
)
def test_malformed_cards_raise_artifact_error(artifacts: dict[str, Path], tmp_path: Path, edit: Any):
    copy = tmp_path / "a"
    shutil.copytree(artifacts["segment_rules"], copy)
    card = json.loads((copy / CARD_FILE).read_text())
    edit(card)
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError):
        load_policy(copy)


# ---- fuzz: any input gives a decision or a FeatureError, never another exception ------------------
_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.floats(), max_size=3),
)


@FUZZ
@given(values=st.lists(_scalars, min_size=0, max_size=40), extra=st.booleans(), drop=st.booleans())
def test_fuzzed_features_decide_or_raise_feature_error(
    policy: RuntimePolicy, values: list[Any], extra: bool, drop: bool
):
    names = list(policy.feature_names)
    row: dict[str, Any] = {n: values[i] if i < len(values) else 1.0 for i, n in enumerate(names)}
    if extra:
        row["bogus"] = 1.0
    if drop:
        row.pop(names[0])
    for call in (lambda: policy.decide(row), lambda: policy.decide_batch([row])):
        try:
            answer = call()
        except FeatureError as error:
            assert len(str(error)) < 2000
        else:
            ok = all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in row.values()
            )
            assert ok or all(isinstance(v, int | float) for v in row.values())
            assert np.all(np.isin(np.asarray(answer), policy.action_names))


@FUZZ
@given(
    allowed=st.one_of(
        st.sets(st.sampled_from(["none", "coupon_10", "free_shipping", "bogus"]), max_size=4),
        st.lists(st.text(max_size=3), max_size=3),
        st.integers(),
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_fuzzed_allowed_sets_are_honoured_or_refused(policy: RuntimePolicy, allowed: Any):
    try:
        choice = policy.decide(_row(policy), allowed)
    except FeatureError:
        return
    if allowed is not None:
        assert choice in allowed
