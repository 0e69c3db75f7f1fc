"""The Gymnasium contract at its edges: every reset steps, check_env over every kwarg, bad actions."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import ENV_IDS
from sim.envs.common import ActionError
from sim.envs.journey import ShopperJourneyEnv
from sim.params import DECISION_KINDS
from sim.scenarios import SHIPPED

JOURNEY = "shopgym/ShopperJourney-v0"
TARGETING = "shopgym/IncentiveTargeting-v0"
CAMPAIGN = "shopgym/CampaignPlanning-v0"

#: Shops small and short enough that some or most resets meet no decision point (issue 19).
TINY_TARGETING = [
    {"overrides": {"population.shoppers": 100}, "horizon_days": 8},
    {"overrides": {"population.shoppers": 30}, "horizon_days": 4},
    {"overrides": {"population.shoppers": 20}, "horizon_days": 1},
    {"overrides": {"population.shoppers": 500}, "horizon_days": 10},
]
#: A journey whose only decision point lies beyond the horizon: every reset is an empty episode.
EMPTY_JOURNEY: dict[str, Any] = {"horizon_days": 1, "decision_points": ("lapsing",)}


def _step_to_end(env: gym.Env, action: Any = 0, limit: int = 10_000) -> tuple[int, dict[str, Any]]:
    """Steps until the episode ends; returns the step count and the last info."""
    for steps in range(1, limit + 1):
        _, reward, terminated, truncated, info = env.step(action)
        assert np.isfinite(reward)
        if terminated or truncated:
            return steps, info
    raise AssertionError(f"no episode end within {limit} steps")


@pytest.mark.parametrize("kwargs", TINY_TARGETING, ids=lambda k: f"{k['overrides']}-{k['horizon_days']}d")
def test_every_targeting_reset_can_be_stepped_even_with_no_decision_point(kwargs: dict[str, Any]):
    env = gym.make(TARGETING, **kwargs)
    empty = 0
    for seed in range(40):
        _, info = env.reset(seed=seed)
        if info["decision_kind"] == "end":
            empty += 1
            assert info["shopper"] == -1 and info["action_mask"].tolist() == [True] + [False] * (
                env.action_space.n - 1
            )
            _, reward, terminated, truncated, end = env.step(0)
            assert (reward, terminated, truncated) == (0.0, False, True)  # nothing attributed
            assert end["episode_metrics"]["l"] == 1 and end["episode_metrics"]["margin"] >= 0.0
            with pytest.raises(RuntimeError, match="call reset"):
                env.step(0)  # over: the empty episode had exactly one step
        else:
            _step_to_end(env)
    if kwargs["horizon_days"] <= 4:
        assert empty > 20  # the edge is exercised, not only stepped past
    if kwargs["horizon_days"] == 10:
        assert empty < 40


def test_an_empty_journey_resets_to_her_end_and_its_first_step_terminates():
    env = gym.make(JOURNEY, **EMPTY_JOURNEY)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert info["decision_kind"] == "end"
        _, reward, terminated, truncated, end = env.step(env.action_space.n - 1)
        assert (reward, terminated, truncated) == (0.0, True, False)
        assert end["episode_metrics"]["l"] == 1 and not end["given"]
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(0)


def test_the_oracle_steps_an_empty_targeting_episode():
    from policies.oracle import Oracle

    env = gym.make(TARGETING, **TINY_TARGETING[1])
    obs, info = env.reset(seed=1)  # no one acquired or visiting in these 4 days
    assert info["decision_kind"] == "end"
    action, _ = Oracle(env).predict(obs)
    assert int(action) == 0 and env.step(action)[3]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(TARGETING, TINY_TARGETING[1]), (TARGETING, TINY_TARGETING[0]), (JOURNEY, EMPTY_JOURNEY)],
    ids=["targeting-30-4d", "targeting-100-8d", "journey-empty"],
)
def test_vector_envs_autoreset_through_empty_episodes(mode: str, env_id: str, kwargs: dict[str, Any]):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, **kwargs)
    try:
        envs.reset(seed=[0, 1])
        ends = 0
        for _ in range(30):
            obs, reward, terminated, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
            ends += int((terminated | truncated).sum())
            assert np.isfinite(reward).all() and obs.shape == (2, *envs.single_observation_space.shape)
        assert ends >= 10  # empty episodes end at their first step, and autoreset goes on
    finally:
        envs.close()


#: ShopperJourney-v0's kwargs across their documented ranges (its docstring's Arguments).
JOURNEY_KWARGS: list[dict[str, Any]] = [
    *({"horizon_days": h} for h in (1, 2, 7, 30, 60, 90, 180, 365, 1000)),
    *({"horizon_days": 90, "decision_points": (kind,)} for kind in DECISION_KINDS),
    {"horizon_days": 1, "decision_points": ("lapsing",)},  # every episode empty
    *({"horizon_days": 90, "incentive_budget": b} for b in (0.0, 5.0, float("inf"))),
    *({"horizon_days": 90, "neighbour_signal": s} for s in (0.0, 1.0, 10.0)),
    *({"horizon_days": 90, "objective_weights": w} for w in ({"ltv": 1.0}, {"load": -1.0}, {})),
    *({"horizon_days": 90, "reward_scale": r} for r in (1e-4, 1.0)),
    {"horizon_days": 90, "render_mode": "ansi"},
    *({"horizon_days": 90, "scenario": name} for name in SHIPPED),
]


@pytest.mark.parametrize("kwargs", JOURNEY_KWARGS, ids=repr)
def test_gymnasium_check_env_passes_on_the_journey_across_every_kwarg(kwargs: dict[str, Any]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(JOURNEY, **kwargs).unwrapped)
    assert [str(w.message) for w in caught] == []


def test_no_journey_step_is_truncated_the_horizon_terminates():
    env = ShopperJourneyEnv(horizon_days=90)
    churned = at_horizon = 0
    for seed in range(60):
        env.reset(seed=seed)
        _, info = _step_to_end(env)
        churned += info["episode_metrics"]["churned"]
        at_horizon += not info["episode_metrics"]["churned"]
    assert churned > 0 and at_horizon > 0  # both ends met, both reported as terminated


def _bad_actions(space: gym.Space) -> list[Any]:
    if isinstance(space, gym.spaces.Discrete):
        return [1.7, 2.0, "1", True, np.True_, -1, int(space.n), np.array([1]), np.array(1.0), None]
    n = space.shape[0]
    return [
        np.zeros(n, dtype=np.float64) + 1.7,
        np.zeros(n + 1, dtype=np.int64),
        np.zeros((1, n), dtype=np.int64),
        np.ones(n, dtype=bool),
        [True] * n,
        ["1"] * n,
        np.full(n, int(space.nvec[0])),
        1,
    ]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_actions_outside_the_space_are_refused_in_one_line_whatever_their_type(env_id: str):
    env = gym.make(env_id, **({"horizon_days": 365} if env_id == JOURNEY else TINY_TARGETING[2]))
    for action in _bad_actions(env.action_space):
        env.reset(seed=0)
        with pytest.raises(ActionError, match="outside the action space: allowed is an integer") as refused:
            env.step(action)
        message = str(refused.value)
        assert "\n" not in message and len(message) < 200
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"\.\.\."):  # a huge array is quoted, not dumped
        env.step(np.zeros(10_000))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_integer_actions_of_every_ordinary_form_are_accepted(env_id: str):
    env = gym.make(env_id, **({"horizon_days": 365} if env_id == JOURNEY else TINY_TARGETING[3]))
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        forms: list[Any] = [0, np.int64(1), np.int32(1), np.array(1), np.uint8(0)]
    else:
        n = space.shape[0]
        forms = [[0] * n, np.zeros(n, dtype=np.int32), np.ones(n, dtype=np.int64), space.sample()]
    for action in forms:
        env.reset(seed=0)
        env.step(action)
