"""``gym.make_vec("shopgym/ShopperJourney-v0", num_envs=N, vectorization_mode="vector_entry_point")``.

N independent journeys stepped by one call, natively: one :class:`sim.journeys.JourneyBatch`
of N rows runs every sub-env's shopper on her own clock, vectorized over the rows
(:class:`sim.envs.journey.JourneyTask` makes the observations, masks, rewards and infos).
gymnasium 1.x's vector API: batched observations ``(N, 22)``, rewards, terminations,
truncations, info as a dict of arrays with a ``_key`` mask per key, and the three autoreset
modes (next step by default, same step for SB3, disabled with ``options["reset_mask"]``).
``action_masks()`` returns one row per sub-env.

Seeding: reset with ``seed=s``, sub-env ``i`` draws from a generator seeded ``s + i``, as
gymnasium seeds its sync and async vector envs and as a single env reset with ``seed=s + i``
draws; every later shopper of sub-env ``i`` continues that generator (autoreset). A row's
trajectory depends only on its own draws, so sub-env ``i`` gives bit-identically the episodes
of a single env seeded ``s + i`` (``tests/sim/envs/test_journey_vector.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from sim.envs.journey import ShopperJourneyEnv
from sim.envs.journey_task import one_info


class ShopperJourneyVectorEnv(VectorEnv[NDArray[np.float32], NDArray[np.int64], NDArray[Any]]):
    """N journeys of ``shopgym/ShopperJourney-v0`` as one gymnasium ``VectorEnv``, stepped natively.

    Arguments: ``num_envs`` (>= 1), ``autoreset_mode`` (an :class:`AutoresetMode` or its
    value; default next step), and every keyword argument of :class:`ShopperJourneyEnv`.
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
        self.env = ShopperJourneyEnv(**kwargs)  # validates the arguments, gives the spaces
        self.task = self.env.make_task(num_envs)
        self.scenario = self.env.scenario
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = self.env.render_mode
        self.single_observation_space = self.env.observation_space
        self.single_action_space = self.env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rows = np.arange(num_envs)
        self._generators: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._started = np.zeros(num_envs, dtype=np.bool_)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._objective = np.zeros((num_envs, 4))
        self._metrics_zero: dict[str, Any] | None = None

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
        rows = self._rows[mask]
        for i in rows.tolist():
            if seeds[i] is not None or not self._started[i]:
                self._generators[i] = seeding.np_random(seeds[i])[0]
        self._reset_rows(rows, [seeds[i] for i in rows.tolist()])
        self._autoreset[rows] = False
        infos = self._infos(rows, np.zeros(rows.size, dtype=np.bool_), np.zeros(rows.size, dtype=np.bool_))
        if not mask.all():
            infos = self._scatter(infos, rows)
        return self.task.observe(self._rows), infos

    def step(
        self, actions: NDArray[np.int64]
    ) -> tuple[
        NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]
    ]:
        """Step every sub-env with its action; ended sub-envs reset as ``autoreset_mode`` says."""
        actions = np.asarray(actions)
        n = self.num_envs
        if actions.shape != (n,):
            raise ValueError(f"actions: shape ({n},) expected (one per sub-env), got {actions.shape}")
        if (
            not np.issubdtype(actions.dtype, np.integer)
            or actions.min() < 0
            or actions.max() >= self.env.n_actions
        ):
            raise ValueError(
                f"actions: integers in [0, {self.env.n_actions - 1}] expected (incentive ids), "
                f"got {actions.dtype} in [{actions.min()}, {actions.max()}]"
            )
        if not self._started.all():
            raise RuntimeError("call reset() before step()")
        mode = self.autoreset_mode
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=np.bool_)
        given = np.zeros(n, dtype=np.bool_)
        restarting = self._autoreset.copy()
        if restarting.any() and mode is AutoresetMode.DISABLED:
            first = int(np.flatnonzero(restarting)[0])
            raise RuntimeError(f"sub-env {first} has ended: reset it with options['reset_mask'] first")
        if mode is AutoresetMode.NEXT_STEP and restarting.any():
            self._reset_rows(self._rows[restarting])
        stepping = self._rows[~restarting] if mode is AutoresetMode.NEXT_STEP else self._rows
        if stepping.size:
            r, objective, g, t = self.task.step(stepping, actions[stepping].astype(np.int64))
            rewards[stepping], given[stepping], terminated[stepping] = r, g, t
            self._objective[stepping] = objective
        if mode is AutoresetMode.NEXT_STEP:
            self._objective[restarting] = 0.0
        infos: dict[str, Any] = {}
        if mode is AutoresetMode.SAME_STEP and terminated.any():
            ended = self._rows[terminated]
            final_obs = self.task.observe(ended)
            assert self._metrics_zero is not None
            final = self.task.infos(
                ended,
                self._objective[ended],
                given[ended],
                np.ones(ended.size, dtype=np.bool_),
                self._metrics_zero,
            )
            for k, i in enumerate(ended.tolist()):
                infos = self._add_info(
                    infos, {"final_obs": final_obs[k], "final_info": one_info(final, k)}, i
                )
            self._reset_rows(ended)
            self._objective[ended] = 0.0
            fresh = given.copy()
            fresh[ended] = False  # their info is the next shopper's, at her reset
            infos.update(self._infos(self._rows, fresh, np.zeros(n, dtype=np.bool_)))
        else:
            infos.update(self._infos(self._rows, given, terminated))
        self._autoreset = (
            terminated.copy() if mode is not AutoresetMode.SAME_STEP else np.zeros(n, dtype=np.bool_)
        )
        return self.task.observe(self._rows), rewards, terminated, np.zeros(n, dtype=np.bool_), infos

    def action_masks(self) -> NDArray[np.bool_]:
        """Allowed incentives per sub-env, shape ``(num_envs, n_actions)`` (sb3-contrib's convention)."""
        return self.task.allowed(self._rows)

    def render(self) -> tuple[Any, ...] | None:
        """Each sub-env's ``ansi`` text (None without a render mode)."""
        if self.render_mode is None:
            return None
        return tuple(self.task.describe(i) for i in range(self.num_envs))

    # ---- internals ------------------------------------------------------------------------------
    def customer_results(self, i: int) -> pd.DataFrame | None:
        """In a twins scenario, sub-env ``i``'s customer id and what she was given and earned (else None)."""
        return self.task.customer_results(np.array([i]))

    def _reset_rows(self, rows: NDArray[np.int64], seeds: list[int | None] | None = None) -> None:
        self.task.reset_rows(rows, [self._generators[i] for i in rows.tolist()], seeds)
        self._started[rows] = True
        if self._metrics_zero is None:
            self._metrics_zero = self.task.metrics_template()

    def _infos(
        self, rows: NDArray[np.int64], given: NDArray[np.bool_], ended: NDArray[np.bool_]
    ) -> dict[str, Any]:
        assert self._metrics_zero is not None
        batched = self.task.infos(rows, self._objective[rows], given, ended, self._metrics_zero)
        return _with_masks(batched, rows.size)

    def _scatter(self, infos: dict[str, Any], rows: NDArray[np.int64]) -> dict[str, Any]:
        """Infos of some sub-envs in gymnasium's layout over all of them (``_key`` masks False elsewhere)."""
        out: dict[str, Any] = {}
        for k, i in enumerate(rows.tolist()):
            out = self._add_info(out, one_info(_without_masks(infos), k), i)
        return out


def _with_masks(batched: dict[str, Any], n: int) -> dict[str, Any]:
    """Gymnasium's vector info layout: each key's array and an all-True ``_key`` mask, recursively."""
    out: dict[str, Any] = {}
    for key, value in batched.items():
        out[key] = _with_masks(value, n) if isinstance(value, dict) else value
        out[f"_{key}"] = np.ones(n, dtype=np.bool_)
    return out


def _without_masks(infos: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _without_masks(value) if isinstance(value, dict) else value
        for key, value in infos.items()
        if not key.startswith("_")
    }
