"""Every registered shopgym environment: checkers, same-seed rollouts, vector modes and SB3 training."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim
from sim.envs import ENV_IDS

#: Small, fast settings per environment for tests.
SMALL: dict[str, dict[str, Any]] = {
    "shopgym/ShopperJourney-v0": {"horizon_days": 365},
    "shopgym/IncentiveTargeting-v0": {
        "overrides": {"population.shoppers": 400, "population.acquisition_days": 5.0},
        "horizon_days": 15,
    },
    "shopgym/CampaignPlanning-v0": {"overrides": {"population.shoppers": 500}, "horizon_days": 12},
}
#: Checker warnings we accept, with the reason. None so far.
ALLOWED_WARNINGS: tuple[str, ...] = ()


def _make(env_id: str, **extra: Any) -> gym.Env:
    return gym.make(env_id, **{**SMALL[env_id], **extra})


def test_every_environment_is_registered_when_sim_is_imported():
    assert set(ENV_IDS) <= set(gym.registry)
    assert set(SMALL) == set(ENV_IDS)
    assert sim.envs.ENV_IDS == ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass_without_warnings(env_id: str):
    env = _make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    messages = [str(w.message) for w in caught if not any(a in str(w.message) for a in ALLOWED_WARNINGS)]
    assert messages == []


def _noop(space: gym.Space) -> Any:
    """The all-``none`` action of a Discrete or MultiDiscrete space (batched or not)."""
    return np.zeros(space.shape, dtype=np.int64) if space.shape else 0


def _rollout(env: gym.Env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    env.action_space.seed(0)
    observations, rewards = [obs], []
    for _ in range(steps):
        if hasattr(env.unwrapped, "action_masks"):
            action = rng.choice(np.flatnonzero(env.unwrapped.action_masks()))
        else:
            action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + 1)
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_and_actions_give_bit_identical_rollouts(env_id: str):
    steps = 30 if env_id == "shopgym/CampaignPlanning-v0" else 600  # a step is a day there
    a = _rollout(_make(env_id), seed=3, steps=steps)
    b = _rollout(_make(env_id), seed=3, steps=steps)
    c = _rollout(_make(env_id), seed=4, steps=steps)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_modes(env_id: str, mode: str):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, vector_kwargs={}, **SMALL[env_id])
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs.shape == (2, *envs.single_observation_space.shape)
        for _ in range(20):
            obs, reward, _, _, _ = envs.step(_noop(envs.action_space))
        assert np.isfinite(reward).all() and obs.dtype == np.float32
    finally:
        envs.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_ppo_learns_for_2048_steps(env_id: str):
    model = PPO("MlpPolicy", _make(env_id), n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_ansi_render_shows_kpis(env_id: str):
    env = _make(env_id, render_mode="ansi")
    env.reset(seed=0)
    env.step(_noop(env.action_space))
    text = env.render()
    assert isinstance(text, str) and "margin" in text


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_episode_totals_survive_record_episode_statistics(env_id: str):
    env = gym.wrappers.RecordEpisodeStatistics(_make(env_id, horizon_days=3))
    env.reset(seed=0)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(_noop(env.action_space))
        done = terminated or truncated
    assert {"r", "l", "t"} <= set(info["episode"])  # the wrapper's
    assert {"r", "l", "margin", "incentive_cost"} <= set(info["episode_metrics"])  # the env's
    assert info["episode_metrics"]["l"] == info["episode"]["l"]
