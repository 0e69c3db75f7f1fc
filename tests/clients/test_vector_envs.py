"""Gymnasium's vector envs and SB3's ``make_vec_env`` run every env id unchanged, across autoresets."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import ENV_IDS
from tests.clients.small import TINY

VECTOR_STEPS = 1000


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_runs_1000_steps_across_autoresets_and_batches_info(env_id: str, mode: str):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, **TINY[env_id])
    try:
        envs.action_space.seed(0)
        obs, info = envs.reset(seed=[0, 1])
        ends = 0
        for _ in range(VECTOR_STEPS):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            done = terminated | truncated
            ends += int(done.sum())
            if done.any():  # the totals arrive on the step that ends an episode, batched
                assert (info["episode_metrics"]["l"][done] > 0).all()
        assert ends >= 4, f"only {ends} episode ends in {VECTOR_STEPS} steps: autoreset not exercised"
        assert obs.shape == (2, *envs.single_observation_space.shape) and obs.dtype == np.float32
        assert np.isfinite(reward).all()
    finally:
        envs.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_make_vec_env_with_subprocesses_and_its_default_render_mode(env_id: str):
    # make_vec_env asks for render_mode="rgb_array" unless told otherwise: the env warns and renders off.
    # SubprocVecEnv's workers start by forkserver and have not imported sim: the "sim:" prefix
    # makes gymnasium import it (a script that imports sim at the top works with the plain id).
    kwargs = {k: v for k, v in TINY[env_id].items() if env_id != "shopgym/ShopperJourney-v0"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the workers' warnings stay in the workers anyway
        venv = make_vec_env(f"sim:{env_id}", n_envs=4, seed=0, vec_env_cls=SubprocVecEnv, env_kwargs=kwargs)
    try:
        assert venv.render_mode is None or venv.get_attr("render_mode") == [None] * 4
        venv.reset()
        ends = 0
        for _ in range(60):
            actions = np.array([venv.action_space.sample() for _ in range(4)])
            obs, reward, dones, infos = venv.step(actions)
            ends += int(dones.sum())
            assert obs.shape == (4, *venv.observation_space.shape) and np.isfinite(reward).all()
            assert all("episode_metrics" in i for i in infos)
        assert ends >= 1
    finally:
        venv.close()
