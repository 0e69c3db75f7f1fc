"""``gym.make_vec("shopgym/ShopperJourney-v0", num_envs=N, vectorization_mode="vector_entry_point")``.

N independent journeys stepped by one call, with gymnasium 1.x's vector API: batched
observations ``(N, 22)``, rewards, terminations, truncations, info as a dict of arrays with a
``_key`` mask per key (gymnasium's layout, built once per key rather than env by env), and
the three autoreset modes (next step by default, same step for SB3, disabled with
``options["reset_mask"]``). ``action_masks()`` returns one row per sub-env.

Sub-env ``i`` is a :class:`sim.envs.journey.ShopperJourneyEnv`; reset with ``seed=s`` it is
seeded ``s + i``, as gymnasium seeds its sync and async vector envs, so sub-env ``i`` of a
vector env seeded ``s`` gives bit-identically the trajectory of a single env seeded ``s + i``
(``tests/sim/envs/test_journey_vector.py`` checks this against ``SyncVectorEnv``). Today each
sub-env still runs its own scalar journey (:mod:`sim.journey`); this class is the seam where a
journey driver vectorized over the batch replaces that loop without changing the API.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from sim.envs.journey import OBS_FIELDS, ShopperJourneyEnv


def _batched(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Every sub-env's info (same keys and types: the env's info is type-stable) in gymnasium's layout.

    What ``VectorEnv._add_info`` builds key by key and env by env, built once per key: an array
    per key (numbers in their own dtype, strings as objects, dicts recursively) and an all-True
    ``_key`` mask.
    """
    n = len(infos)
    out: dict[str, Any] = {}
    for key, first in infos[0].items():
        values = [info[key] for info in infos]
        if isinstance(first, dict):
            out[key] = _batched(values)
        elif type(first) in (int, float, bool) or isinstance(first, np.number):
            out[key] = np.array(values, dtype=type(first))
        elif isinstance(first, np.ndarray):
            out[key] = np.stack(values)
        else:
            array = np.empty(n, dtype=object)
            array[:] = values
            out[key] = array
        out[f"_{key}"] = np.ones(n, dtype=np.bool_)
    return out


class ShopperJourneyVectorEnv(VectorEnv[NDArray[np.float32], NDArray[np.int64], NDArray[Any]]):
    """N journeys of ``shopgym/ShopperJourney-v0`` as one gymnasium ``VectorEnv``.

    Arguments: ``num_envs`` (>= 1), ``autoreset_mode`` (an :class:`AutoresetMode` or its
    value; default next step), and every keyword argument of :class:`ShopperJourneyEnv`,
    passed to each sub-env.
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        try:
            mode = (
                autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
            )
        except ValueError:
            allowed = [m.value for m in AutoresetMode]
            raise ValueError(f"autoreset_mode {autoreset_mode!r} not allowed; allowed: {allowed}") from None
        kwargs.pop("max_episode_steps", None)  # gymnasium's make_vec passes the spec's (None here)
        self.envs = [ShopperJourneyEnv(**kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        assert isinstance(self.single_action_space, spaces.Discrete)
        self._observations = np.zeros((num_envs, len(OBS_FIELDS)), dtype=np.float32)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._terminations = np.zeros(num_envs, dtype=np.bool_)
        self._truncations = np.zeros(num_envs, dtype=np.bool_)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Reset every sub-env (or those in ``options["reset_mask"]``); ``seed=s`` seeds sub-env i ``s+i``."""
        n = self.num_envs
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed: a list of {n} seeds (one per sub-env) expected, got {len(seeds)}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=np.bool_)
        elif not (
            isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (n,) and mask.any()
        ):
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({n},) with a True value")
        infos: dict[str, Any] = {}
        per_env = []
        for i in np.flatnonzero(mask):
            self._observations[i], info = self.envs[i].reset(seed=seeds[i], options=options or None)
            per_env.append(info)
        if mask.all():
            infos = _batched(per_env)
        else:
            for i, info in zip(np.flatnonzero(mask), per_env, strict=True):
                infos = self._add_info(infos, info, int(i))
        self._terminations[mask] = self._truncations[mask] = self._autoreset[mask] = False
        return self._observations.copy(), infos

    def step(
        self, actions: NDArray[np.int64]
    ) -> tuple[
        NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]
    ]:
        """Step every sub-env with its action; ended sub-envs reset as ``autoreset_mode`` says."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(
                f"actions: shape ({self.num_envs},) expected (one per sub-env), got {actions.shape}"
            )
        infos: dict[str, Any] = {}
        mode = self.autoreset_mode
        per_env: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            if mode is AutoresetMode.NEXT_STEP and self._autoreset[i]:
                self._observations[i], info = env.reset()
                self._rewards[i] = 0.0
                self._terminations[i] = self._truncations[i] = False
            else:
                if mode is AutoresetMode.DISABLED and self._autoreset[i]:
                    raise RuntimeError(f"sub-env {i} has ended: reset it with options['reset_mask'] first")
                obs, reward, terminated, truncated, info = env.step(actions[i])
                self._observations[i], self._rewards[i] = obs, reward
                self._terminations[i], self._truncations[i] = terminated, truncated
                if mode is AutoresetMode.SAME_STEP and (terminated or truncated):
                    infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, i)
                    self._observations[i], info = env.reset()
            per_env.append(info)
        infos.update(_batched(per_env))
        self._autoreset = self._terminations | self._truncations
        return (
            self._observations.copy(),
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )

    def action_masks(self) -> NDArray[np.bool_]:
        """Allowed incentives per sub-env, shape ``(num_envs, n_actions)`` (sb3-contrib's convention)."""
        return np.stack([env.action_masks() for env in self.envs])

    def render(self) -> tuple[Any, ...] | None:
        """Each sub-env's ``ansi`` text (None without a render mode)."""
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs."""
        for env in self.envs:
            env.close()
