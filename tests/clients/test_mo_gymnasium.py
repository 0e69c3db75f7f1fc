"""MO-Gymnasium takes the multi-objective views: a reward vector with a ``reward_space``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import MO_ENV_IDS
from sim.envs.common import OBJECTIVES
from sim.envs.mo import MO_SIGNS
from tests.clients.small import TINY

mo_gym = pytest.importorskip("mo_gymnasium", reason="optional client: pip install 'shopgym[clients]'")
from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics  # noqa: E402


def _episode(env: gym.Env, seed: int) -> tuple[list, dict]:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rewards, done, info = [], False, {}
    while not done:
        action = rng.integers(0, env.action_space.nvec if env.action_space.shape else env.action_space.n)
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        done = terminated or truncated
    return rewards, info


@pytest.mark.parametrize("mo_id", MO_ENV_IDS)
def test_mo_record_episode_statistics_sums_the_vector_and_weights_give_back_the_scalar_return(mo_id: str):
    scalar_id = mo_id.replace("shopgym/mo-", "shopgym/")
    mo_env = MORecordEpisodeStatistics(mo_gym.make(mo_id, **TINY[mo_id]), gamma=1.0)
    assert mo_env.unwrapped.reward_space.shape == (len(OBJECTIVES),)
    vectors, info = _episode(mo_env, seed=5)
    assert all(v.shape == (4,) and v.dtype == np.float32 for v in vectors)
    assert mo_env.unwrapped.reward_space.contains(vectors[-1])
    episode_return = info["episode"]["r"]
    assert episode_return.shape == (4,) and info["episode"]["l"] == len(vectors)
    np.testing.assert_allclose(episode_return, np.sum(vectors, axis=0), rtol=1e-5, atol=1e-6)

    scalars, _ = _episode(gym.make(scalar_id, **TINY[scalar_id]), seed=5)  # same shoppers, same actions
    weights = gym.make(scalar_id, **TINY[scalar_id]).unwrapped.objective_weights * MO_SIGNS
    np.testing.assert_allclose(np.array(vectors, dtype=np.float64) @ weights, scalars, rtol=1e-4, atol=1e-5)

    linear = LinearReward(mo_gym.make(mo_id, **TINY[mo_id]), weight=weights)
    linear_rewards, _ = _episode(linear, seed=5)
    np.testing.assert_allclose(linear_rewards, scalars, rtol=1e-4, atol=1e-5)


def test_costs_are_negated_so_more_is_better_in_every_component():
    env = mo_gym.make("shopgym/mo-ShopperJourney-v0", **TINY["shopgym/mo-ShopperJourney-v0"])
    env.reset(seed=0)
    coupon = [i.name for i in env.unwrapped.scenario.incentives].index("coupon_10")
    spent = 0.0
    for _ in range(40):
        _, reward, terminated, truncated, _ = env.step(coupon)
        assert reward[3] <= 0.0  # incentive dollars are a cost
        spent += float(reward[3])
        if terminated or truncated:
            env.reset()
    assert spent < 0.0
