"""stable-baselines3 training on a gymnasium 1.x ``VectorEnv`` (a native shopgym vector env).

SB3's ``VecEnv`` resets an ended sub-env in the same step and hands the last observation in
``info["terminal_observation"]``; gymnasium's same-step autoreset mode does exactly that with
``info["final_obs"]``. :class:`GymnasiumVecEnv` asks for that mode and translates the batched
info (a dict of arrays with ``_key`` masks) into SB3's list of per-env dicts. Attribute and
method calls (``env_method("action_masks")`` for MaskablePPO) go to the sub-envs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn


def make_sb3_vec_env(env_id: str, num_envs: int, **kwargs: Any) -> GymnasiumVecEnv:
    """``env_id``'s native vector env with ``num_envs`` sub-envs, as an SB3 ``VecEnv``."""
    vector = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **kwargs,
    )
    return GymnasiumVecEnv(vector)


def _unbatch(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s info from gymnasium's batched layout (keys masked off for ``i`` left out)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        out[key] = _unbatch(value, i) if isinstance(value, dict) else value[i]
        if isinstance(out[key], np.generic):
            out[key] = out[key].item()
    return out


class GymnasiumVecEnv(VecEnv):
    """A gymnasium ``VectorEnv`` in same-step autoreset mode, seen through SB3's ``VecEnv`` API."""

    def __init__(self, vector: VectorEnv[Any, Any, Any]) -> None:
        mode = vector.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(f"GymnasiumVecEnv needs autoreset_mode SameStep (SB3's semantics), got {mode}")
        self.vector = vector
        super().__init__(vector.num_envs, vector.single_observation_space, vector.single_action_space)
        self._actions: NDArray[np.int64] | None = None

    def reset(self) -> NDArray[Any]:
        """Reset every sub-env with the seeds given to ``seed()`` (then fresh ones)."""
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, _ = self.vector.reset(seed=seeds)  # type: ignore[arg-type]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: NDArray[Any]) -> None:
        """Keep the actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step the vector env; ended sub-envs carry ``terminal_observation`` and ``TimeLimit.truncated``."""
        assert self._actions is not None
        obs, rewards, terminated, truncated, infos = self.vector.step(self._actions)
        dones = terminated | truncated
        per_env = [_unbatch(infos, i) for i in range(self.num_envs)]
        for i in np.flatnonzero(dones):  # SB3's info at an end is the last step's, not the reset's
            info = per_env[i]
            final = info.pop("final_info", {})
            per_env[i] = {
                **final,
                "terminal_observation": info.pop("final_obs"),
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
            }
        return obs, rewards.astype(np.float32), dones, per_env

    def close(self) -> None:
        """Close the vector env."""
        self.vector.close()

    def _sub_envs(self, indices: VecEnvIndices) -> list[Any] | None:
        """The vector env's sub-env objects, or None for a native vector env (one object for all)."""
        envs: list[Any] = getattr(self.vector.unwrapped, "envs", [])
        if len(envs) != self.num_envs:
            return None
        return [envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each sub-env (a native vector env's own, for every index)."""
        envs = self._sub_envs(indices)
        if envs is None:
            value = getattr(self.vector.unwrapped, attr_name)
            return [value for _ in self._get_indices(indices)]
        return [getattr(env, attr_name) for env in envs]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on each sub-env (on a native vector env itself)."""
        envs = self._sub_envs(indices)
        if envs is None:
            setattr(self.vector.unwrapped, attr_name, value)
            return
        for env in envs:
            setattr(env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of each sub-env (``action_masks`` for MaskablePPO).

        A native vector env answers for all sub-envs at once: its batched result (one row per
        sub-env, as ``action_masks()``) is split by index.
        """
        envs = self._sub_envs(indices)
        if envs is None:
            batched = getattr(self.vector.unwrapped, method_name)(*method_args, **method_kwargs)
            return [batched[i] for i in self._get_indices(indices)]
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in envs]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Sub-envs are bare environments: never wrapped."""
        return [False for _ in self._get_indices(indices)]
