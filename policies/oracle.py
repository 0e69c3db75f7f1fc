"""``kind: oracle``: the privileged policy that reads the simulator's truth, as a measuring stick.

At each step it asks the environment for its :class:`sim.oracle.OracleView` (the true latent
traits and hidden state of the shoppers the step decides for, a hook ordinary policies never
use) and gives each decision the allowed incentive of highest true expected value
(:func:`sim.oracle.incentive_values`), or ``none`` when nothing beats it. For per-segment
actions it sums each segment's members' values, weighted by their chance of meeting a decision
that day. Reports normalize every policy by it: ``(policy - none) / (oracle - none)``.

It is exportable as nothing: it needs the live simulator. ``save`` writes a small card saying
so, and loading or exporting an oracle fails with that reason.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from policies.base import FORMAT_VERSION, Actions, EnvSpec, env_spec
from sim.io import atomic_write_json
from sim.oracle import OracleView, TrueState, best_allowed, incentive_values
from sim.params import DECISION_KINDS

#: Why an oracle cannot be exported or loaded from a file.
NOT_EXPORTABLE = "an oracle reads the live simulator's hidden state: it cannot be exported or loaded"


class Oracle:
    """Chooses by each incentive's true expected value, read from the environment's oracle hook."""

    name = "oracle"

    def __init__(self, env: gym.Env[Any, Any], seed: int = 0) -> None:
        base = env.unwrapped
        if not hasattr(base, "oracle_view"):
            raise ValueError(
                f"kind oracle needs an environment with oracle_view(); {type(base).__name__} has none"
            )
        self._env = base
        self.spec: EnvSpec = env_spec(env)
        self.seed = seed
        self._cached: tuple[int | None, NDArray[np.float64]] = (None, np.zeros((0, 0)))

    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """The best allowed incentive at the environment's current decision (the observation is unused)."""
        view: OracleView = self._env.oracle_view()
        if view.kinds.size == 0:  # no decision point now (a quiet day, or an empty episode): nothing
            if view.heads is None:
                return np.asarray(0, dtype=np.int64), state
            return np.zeros(len(self.spec.heads), dtype=np.int64), state
        if view.row is not None and view.batch is not None and view.batch == self._cached[0]:
            totals = self._cached[1][view.row : view.row + 1].copy()
        else:
            totals = self._head_values(view)
            if view.row is not None:
                self._cached = (view.batch, totals)
                totals = totals[view.row : view.row + 1].copy()
        allowed = None if action_masks is None else np.asarray(action_masks, dtype=bool).reshape(totals.shape)
        best = best_allowed(totals, allowed)
        if view.heads is None:
            return np.asarray(best[0], dtype=np.int64), state
        return best, state

    def _head_values(self, view: OracleView) -> NDArray[np.float64]:
        """Each action component's value of each incentive: ``(heads, incentives)``."""
        values = np.zeros((view.kinds.size, len(view.catalog)))
        for code in np.unique(view.kinds):
            rows = np.flatnonzero(view.kinds == code)
            state = _select(view, rows)
            values[rows] = incentive_values(view, state, DECISION_KINDS[code])
        if view.heads is None:
            return values
        heads = len(self.spec.heads)
        weighted = values * (view.weights[:, None] if view.weights is not None else 1.0)
        totals = np.zeros((heads, values.shape[1]))
        np.add.at(totals, view.heads, weighted)
        return totals

    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: Actions,
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """Nothing to learn: the oracle knows the model."""

    def save(self, path: str | Path) -> Path:
        """Write a card that records the oracle (no model: it cannot be exported)."""
        target = Path(path) / "policy.json"
        card = {"kind": self.name, "format_version": FORMAT_VERSION, "env_id": self.spec.env_id}
        atomic_write_json({**card, "note": NOT_EXPORTABLE}, target)
        return target


class RolloutOracle(Oracle):
    """``kind: oracle_rollout``: plans by rollouts of the true simulator where the lookahead is myopic.

    At each ShopperJourney decision it gives every allowed incentive, then ``none`` at every
    later decision, in ``replicates`` futures drawn from her true traits and state (the
    environment's ``rollout_values``), and chooses the best mean objective: one step of policy
    improvement over ``none`` (Bertsekas' rollout), which counts what the one-step lookahead
    leaves out (reference prices, promotion sensitivity, the need state, streaks, tiers).
    Costs ``incentives x replicates`` journeys per decision.
    """

    name = "oracle_rollout"

    def __init__(self, env: gym.Env[Any, Any], seed: int = 0, replicates: int = 16) -> None:
        super().__init__(env, seed)
        if not hasattr(self._env, "rollout_values"):
            raise ValueError(
                f"kind oracle_rollout replays one shopper's journey; {type(self._env).__name__} cannot "
                "(use shopgym/ShopperJourney-v0, or kind oracle)"
            )
        if not isinstance(replicates, int) or isinstance(replicates, bool) or not 2 <= replicates <= 256:
            raise ValueError(f"oracle_rollout: replicates must be an integer in [2, 256], got {replicates!r}")
        self.replicates = replicates

    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """The allowed incentive whose rollouts earn the most (``none`` unless one beats it)."""
        if self._env.oracle_view().kinds.size == 0:  # no decision point: its one step gives nothing
            return np.asarray(0, dtype=np.int64), state
        n = self.spec.n_actions
        allowed = (
            np.ones(n, dtype=bool) if action_masks is None else np.asarray(action_masks, bool).reshape(n)
        )
        allowed[0] = True
        candidates = np.flatnonzero(allowed).astype(np.int64)
        rollout_values = cast(Any, self._env).rollout_values
        values: NDArray[np.float64] = rollout_values(self.replicates, candidates)
        best = int(candidates[int(np.argmax(values))]) if values.max() > values[0] else 0
        return np.asarray(best, dtype=np.int64), state


class PlanOracle(Oracle):
    """``kind: oracle_plan``: plans an episode by rollouts of the true simulator.

    The one-step lookahead values each shopper alone and each decision alone, so it cannot see
    what a plan does to the shared warehouse in a peak (late deliveries raise everyone's churn)
    or through referred friends over the season. At the start of each episode this oracle
    searches open-loop plans with the environment's ``rollout_plans``: the episode's own
    population, futures from fresh seeds. A plan is a table (``plan_shape()``):
    on CampaignPlanning an incentive per segment and per phase (ordinary and seasonal-peak
    days); on IncentiveTargeting an option per decision kind and true uplift class, where one
    option is the one-step oracle's own choice. It starts from the best blanket plan (every
    option everywhere) and improves one cell at a time while a change raises the mean return
    (coordinate ascent, at most ``sweeps`` passes). Every blanket rule, every rule by segment
    or by decision kind and class, and the one-step oracle itself are in its search space, so
    none beats it but by Monte Carlo noise. Costs ``options x (1 + sweeps x cells) x
    replicates`` episodes per episode.
    """

    name = "oracle_plan"

    def __init__(self, env: gym.Env[Any, Any], seed: int = 0, replicates: int = 1, sweeps: int = 2) -> None:
        super().__init__(env, seed)
        if not hasattr(self._env, "rollout_plans"):
            raise ValueError(
                f"kind oracle_plan plans a whole episode by rollouts; {type(self._env).__name__} cannot "
                "(use shopgym/CampaignPlanning-v0 or shopgym/IncentiveTargeting-v0, or kind oracle)"
            )
        for field, value, top in (("replicates", replicates, 64), ("sweeps", sweeps, 8)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ValueError(f"oracle_plan: {field} must be an integer in [1, {top}], got {value!r}")
        self.replicates, self.sweeps = replicates, sweeps
        self._plan: tuple[int, NDArray[np.int64]] | None = None

    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """This step's action under the episode's plan (searched at the episode's first step)."""
        env = cast(Any, self._env)
        if self._plan is None or self._plan[0] != env.episode_index:
            self._plan = (env.episode_index, self.search())
        return env.plan_action(self._plan[1]), state

    def search(self) -> NDArray[np.int64]:
        """The best plan found for the current episode, shaped as the environment's ``plan_shape()``."""
        env = cast(Any, self._env)
        rows, columns, options = env.plan_shape()

        def values(plans: NDArray[np.int64]) -> NDArray[np.float64]:
            return np.asarray(env.rollout_plans(plans, self.replicates), dtype=np.float64)

        blanket = np.broadcast_to(np.arange(options)[:, None, None], (options, rows, columns)).copy()
        blanket_values = values(blanket)
        best, best_value = blanket[int(np.argmax(blanket_values))], float(blanket_values.max())
        for _ in range(self.sweeps):
            improved = False
            for row in range(rows):
                for column in range(columns):
                    others = np.array([i for i in range(options) if i != best[row, column]], dtype=np.int64)
                    trials = np.repeat(best[None], others.size, axis=0)
                    trials[:, row, column] = others
                    trial_values = values(trials)
                    if trial_values.max() > best_value:
                        best, best_value = trials[int(np.argmax(trial_values))], float(trial_values.max())
                        improved = True
            if not improved:
                break
        return best


def _select(view: OracleView, rows: NDArray[np.int64]) -> TrueState:
    """The true state of the shoppers in ``rows`` only."""
    state = view.state
    return replace(state, **{f.name: getattr(state, f.name)[rows] for f in fields(state)})
