"""The native vector ShopperJourney env: gymnasium's vector API, identity with single envs, SB3."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3 import PPO

import sim  # noqa: F401  (registers the environments)
from policies.vec_env import GymnasiumVecEnv, make_sb3_vec_env
from sim.envs.journey_task import OBS_FIELDS
from sim.envs.journey_vector import ShopperJourneyVectorEnv

N_OBS = len(OBS_FIELDS)

ENV_ID = "shopgym/ShopperJourney-v0"
#: A short horizon: episodes end (and autoreset) within a few dozen steps.
KWARGS: dict[str, Any] = {"horizon_days": 60}


def _native(n: int, mode: AutoresetMode = AutoresetMode.NEXT_STEP) -> VectorEnv:
    return gym.make_vec(
        ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode=mode, **KWARGS
    )


def _masked_actions(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform allowed incentive per sub-env."""
    return np.array([rng.choice(np.flatnonzero(row)) for row in masks], dtype=np.int64)


def test_make_vec_returns_the_native_vector_env_with_batched_spaces():
    envs = _native(3)
    assert isinstance(envs.unwrapped, ShopperJourneyVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == (3, N_OBS)
    assert envs.action_space == gym.spaces.MultiDiscrete([envs.single_action_space.n] * 3)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, N_OBS) and obs.dtype == np.float32
    assert envs.observation_space.contains(obs)
    assert info["decision_kind"].shape == (3,) and info["_decision_kind"].all()
    assert envs.unwrapped.action_masks().shape == (3, envs.single_action_space.n)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_every_step_equals_gymnasiums_sync_vector_env_of_single_envs(mode: AutoresetMode):
    n, seed = 4, 11
    native = _native(n, mode)
    reference = gym.make_vec(
        ENV_ID, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, **KWARGS
    )
    assert data_equivalence(native.reset(seed=seed), reference.reset(seed=seed), exact=True)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(150):
        actions = _masked_actions(native.unwrapped.action_masks(), rng)
        a, b = native.step(actions), reference.step(actions)
        assert data_equivalence(a, b, exact=True)
        assert native.observation_space.contains(a[0])
        ended += int((a[2] | a[3]).sum())
    assert ended > 0  # the autoreset path ran


def test_sub_env_i_of_a_vector_env_seeded_s_is_the_single_env_seeded_s_plus_i():
    n, seed, steps = 3, 5, 80
    native = _native(n)
    obs, _ = native.reset(seed=seed)
    trajectories = [[obs]]
    rng = np.random.default_rng(1)
    actions = []
    for _ in range(steps):
        act = _masked_actions(native.unwrapped.action_masks(), rng)
        actions.append(act)
        obs, reward, terminated, truncated, _ = native.step(act)
        trajectories.append([obs, reward, terminated, truncated])
    i = 2
    single = gym.make(ENV_ID, **KWARGS)
    obs, _ = single.reset(seed=seed + i)
    assert np.array_equal(obs, trajectories[0][0][i])
    restart = False
    for k, act in enumerate(actions):
        if restart:  # next-step autoreset: this step's action is ignored, the episode restarts
            obs, reward, terminated, truncated = *single.reset()[:1], 0.0, False, False
        else:
            obs, reward, terminated, truncated, _ = single.step(act[i])
        got = trajectories[k + 1]
        assert np.array_equal(obs, got[0][i]) and reward == got[1][i]
        assert (terminated, truncated) == (got[2][i], got[3][i])
        restart = terminated or truncated


def test_disabled_autoreset_resets_only_the_masked_sub_envs_with_their_seeds():
    native = _native(2, AutoresetMode.DISABLED)
    native.reset(seed=[7, 8])
    single = gym.make(ENV_ID, **KWARGS)
    while True:
        *_, terminated, truncated, _ = native.step(np.zeros(2, dtype=np.int64))
        if (terminated | truncated).any():
            break
    done = terminated | truncated
    with pytest.raises(RuntimeError, match="has ended: reset it"):
        native.step(np.zeros(2, dtype=np.int64))
    obs, info = native.reset(seed=[99, 99], options={"reset_mask": done})
    assert np.array_equal(obs[done][0], single.reset(seed=99)[0])
    assert info["_decision_kind"].tolist() == done.tolist()


def test_bad_arguments_get_shopgyms_messages():
    with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
        ShopperJourneyVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="autoreset_mode 'sometimes' not allowed"):
        ShopperJourneyVectorEnv(num_envs=1, autoreset_mode="sometimes")
    envs = ShopperJourneyVectorEnv(num_envs=2, **KWARGS)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions: shape \(2,\) expected"):
        envs.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="a list of 2 seeds"):
        envs.reset(seed=[1])


def test_sb3_ppo_trains_through_the_vec_env_adapter():
    venv = make_sb3_vec_env(ENV_ID, 4, **KWARGS)
    assert isinstance(venv, GymnasiumVecEnv)
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (4, N_OBS)
    assert len(venv.env_method("action_masks")) == 4
    finals = 0
    for _ in range(60):
        obs, _, dones, infos = venv.step(np.zeros(4, dtype=np.int64))
        for i in np.flatnonzero(dones):
            assert infos[i]["terminal_observation"].shape == (N_OBS,)
            assert isinstance(infos[i]["TimeLimit.truncated"], bool)
            finals += 1
        assert isinstance(infos[0]["objective"], dict)
    assert finals > 0
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    with pytest.raises(ValueError, match="needs autoreset_mode SameStep"):
        GymnasiumVecEnv(_native(1))
