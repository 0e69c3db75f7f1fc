"""Info dicts keep the same keys and value types across steps, resets and episode ends."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import ENV_IDS
from sim.envs.common import numeric_metrics
from sim.metrics import summarize

#: Small settings: full episodes in about a second each.
TINY: dict[str, dict[str, Any]] = {
    "shopgym/ShopperJourney-v0": {"horizon_days": 120},
    "shopgym/IncentiveTargeting-v0": {
        "overrides": {"population.shoppers": 150, "population.acquisition_days": 3.0},
        "horizon_days": 6,
    },
    "shopgym/CampaignPlanning-v0": {"overrides": {"population.shoppers": 300}, "horizon_days": 4},
}


def _signature(value: Any) -> Any:
    """The type of a value; for dicts the keys with their types; for arrays dtype and shape."""
    if isinstance(value, dict):
        return {key: _signature(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return (np.ndarray, value.dtype, value.shape)
    return type(value)


def _raw_totals(env: gym.Env) -> dict[str, Any]:
    base = env.unwrapped
    return numeric_metrics(summarize(base._sim) if hasattr(base, "_sim") else base.summary())


def _no_none_no_list(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_none_no_list(v) for v in value.values())
    return value is not None and not isinstance(value, list | tuple)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_keys_and_types_match_on_every_step_reset_and_episode_end(env_id: str) -> None:
    env = gym.make(env_id, **TINY[env_id])
    env.action_space.seed(0)
    signatures, ends = [], 0
    _, info = env.reset(seed=3)
    signatures.append(_signature(info))
    while ends < 2:  # two full episodes: the reset after an end is checked too
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        signatures.append(_signature(info))
        assert _no_none_no_list(info), info
        if terminated or truncated:
            ends += 1
            assert info["episode_metrics"]["l"] > 0  # the totals arrive at the end
            raw = _raw_totals(env)  # and keep their values (no int truncating a float)
            assert {k: info["episode_metrics"][k] for k in raw} == pytest.approx(raw)
            _, info = env.reset()
            signatures.append(_signature(info))
            assert info["episode_metrics"]["l"] == 0  # zeros of the same types until then
    assert all(s == signatures[0] for s in signatures), "info keys or types changed"


def test_targeting_feedback_is_a_method_and_its_count_is_in_info() -> None:
    env = gym.make("shopgym/IncentiveTargeting-v0", **TINY["shopgym/IncentiveTargeting-v0"])
    _, info = env.reset(seed=0)
    assert info["attributed_count"] == 0 and env.unwrapped.attributed_feedback() == []
    total = reward_sum = 0.0
    done = False
    while not done:
        _, reward, _, done, info = env.step(0)
        feedback = env.unwrapped.attributed_feedback()
        assert info["attributed_count"] == len(feedback)
        total += reward
        reward_sum += sum(a.reward for a in feedback)
    assert reward_sum == pytest.approx(total)


def test_unsupported_render_mode_warns_and_turns_rendering_off() -> None:
    with pytest.warns(UserWarning, match="rgb_array"):
        env = gym.make("shopgym/ShopperJourney-v0", render_mode="rgb_array", disable_env_checker=True)
    assert env.unwrapped.render_mode is None
