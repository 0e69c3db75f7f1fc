"""Batched evaluation on the native vector env gives exactly the sequential evaluation's records."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.vector import AutoresetMode

import sim  # noqa: F401  (registers the environments)
from policies.evaluate import evaluate, evaluate_vector
from policies.registry import make_policy

ENV_ID = "shopgym/ShopperJourney-v0"


@pytest.mark.parametrize(("kind", "num_envs"), [("segment_rules", 3), ("ltv_coupon", 8)])
def test_vector_evaluation_equals_episode_by_episode_evaluation(kind: str, num_envs: int):
    env = gym.make(ENV_ID, horizon_days=90)
    envs = gym.make_vec(
        ENV_ID,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.DISABLED,
        horizon_days=90,
    )
    policy = make_policy(kind, env, seed=0)
    episodes, seed = 5, 40
    sequential = [
        evaluate(policy, env, 1, seed + k, learn=False, deterministic=True)[0] for k in range(episodes)
    ]
    batched = evaluate_vector(policy, envs, episodes, seed, deterministic=True)
    for k, (a, b) in enumerate(zip(sequential, batched, strict=True)):
        assert b.row == {**a.row, "episode": k}
        assert b.incentive_mix == a.incentive_mix


def test_vector_evaluation_needs_disabled_autoreset():
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", horizon_days=30)
    policy = make_policy("none", gym.make(ENV_ID, horizon_days=30))
    with pytest.raises(ValueError, match="needs a vector env made with autoreset_mode Disabled"):
        evaluate_vector(policy, envs, 2, 0)
