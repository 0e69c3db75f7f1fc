"""Wrappers for RL clients that cannot pass action masks (rl-zoo3's algorithms, RLlib's default modules).

:class:`MaskInObservation` appends the env's ``action_masks()`` to the observation, so a policy
without masking still sees which incentives the shopper may receive now. An ineligible choice
is not given either way (the env gives ``none`` instead), so this is information, not a rule.
rl-zoo3 takes it as ``env_wrapper: sim.envs.wrappers.MaskInObservation``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray


class MaskInObservation(gym.ObservationWrapper[NDArray[np.float32], Any, NDArray[np.float32]]):
    """The observation followed by the action mask (1.0 eligible, 0.0 not), one entry per action."""

    def __init__(self, env: gym.Env[NDArray[np.float32], Any]) -> None:
        super().__init__(env)
        if not hasattr(env.unwrapped, "action_masks") or not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(
                f"MaskInObservation needs a Discrete env with action_masks(); {env.spec and env.spec.id} has "
                f"{env.action_space}"
            )
        inner = env.observation_space
        assert isinstance(inner, spaces.Box)
        n = int(env.action_space.n)
        self.observation_space = spaces.Box(
            np.concatenate([inner.low, np.zeros(n, dtype=np.float32)]),
            np.concatenate([inner.high, np.ones(n, dtype=np.float32)]),
            dtype=np.float32,
        )

    def observation(self, observation: NDArray[np.float32]) -> NDArray[np.float32]:
        """The env's observation with its current action mask appended."""
        mask = self.env.unwrapped.action_masks()  # type: ignore[attr-defined]
        return np.concatenate([observation, mask.astype(np.float32)])

    def action_masks(self) -> NDArray[np.bool_]:
        """The env's action mask (for clients that can use it)."""
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]
