"""``shopgym/ShopperJourney-v0``: one shopper's life, one decision point per step.

The single env is a batch of one journey (:class:`sim.envs.journey_task.JourneyTask`);
:mod:`sim.envs.journey_vector` steps N journeys in one call with the same task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces
from numpy.typing import NDArray

from sim.envs.common import (
    OBJECTIVES,
    check_action,
    check_common_arguments,
    env_scenario,
    weights_over_objectives,
)
from sim.envs.journey_task import OBS_FIELDS, OBS_HIGH, JourneyTask, one_info
from sim.journeys import DONE
from sim.oracle import OracleView, referred_friend_worth
from sim.params import DECISION_KINDS, Scenario
from sim.population import HOURS_PER_DAY

F64 = NDArray[np.float64]

__all__ = ["OBS_FIELDS", "JourneyTask", "ShopperJourneyEnv"]


class ShopperJourneyEnv(gym.Env[NDArray[np.float32], np.int64]):
    """Choose incentives along one shopper's life, from acquisition to churn or the horizon.

    ## Description
    One shopper, drawn from the scenario's population exactly as the population engine draws
    them (BG/NBD purchase and dropout, Gamma-Gamma spend, loss aversion, price sensitivity,
    streak sensitivity, type affinities, abuser flag), lives on her own clock by the population
    engine's rules (:mod:`sim.journeys`, :class:`sim.shop.Shop`): sessions with seasonality
    and her calibrated session rate, streaks,
    carts and the checkout logit with her reference price, loss aversion and the shipping
    threshold, cart abandonment and return, loyalty points and tiers (goal gradient,
    perks, downgrades), deliveries and returns, BG/NBD dropout after orders and churn after
    late deliveries, category learning and habit. Each step is one of her decision points: she
    logged in (her acquisition, with its trial order, is her first session and her first
    login), abandoned a cart, or is lapsing (``engine.decision_points`` of the scenario).
    Small: the env for CI regression and first experiments; for throughput, step it as a
    native vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``), one
    vectorized call for N journeys.

    What a one-shopper world cannot have is documented in :mod:`sim.journeys`:
    deliveries follow the scenario's schedule without a warehouse queue (one shopper is no
    load, so the promise is kept; lateness comes from load in the population envs); social proof comes from a
    constant neighbour signal (``neighbour_signal``, default 1.0, about the population
    engine's average in the default shop; 0 turns it off);
    tiers are not inflated by other shoppers; invited friends are not simulated: a referral
    bonus's cost is booked on her ledger when a friend's first order reaches the floor, and
    each friend who joins credits her with a referred shopper's expected worth
    (:class:`sim.oracle.FriendWorth`).

    ## Action Space
    ``Discrete(n)``, one action per incentive of the scenario (0 is ``none``).
    ``action_masks()`` marks those she may receive (``IncentiveCatalog.eligible``: streak
    incentives need a shown streak, tier perks tier 1, onboarding incentives at most one order),
    and only ``none`` once the incentive budget is spent, in sb3-contrib MaskablePPO's
    convention. An ineligible or over-budget
    action is not given (``info["given"]`` is False).

    ## Observation Space
    ``Box(0, 10, (43,), float32)``: what the shop observes of her, each field divided by its
    scale and clipped to [0, 10]. Her latent traits (purchase rate, dropout, sensitivities)
    are not observed.

    | # | field | unit | scale |
    |---|---|---|---|
    | 0 | recency | days since last order | 365 |
    | 1 | frequency | orders | 20 |
    | 2 | monetary | dollars spent | 1000 |
    | 3 | tenure | days since acquisition | 365 |
    | 4 | tier | tier index / top tier | 1 |
    | 5 | tier_progress | share of the way to the next tier | 1 |
    | 6 | points | points balance | 1000 |
    | 7 | streak | days | 30 |
    | 8 | streak_freezes | freezes held | 5 |
    | 9 | open_cart | dollars in the open cart | 100 |
    | 10 | last_delivery_late | 0 or 1 | 1 |
    | 11 | late_share | late deliveries / deliveries | 1 |
    | 12 | incentives_received | count | 10 |
    | 13 | offer_active | 0 or 1 | 1 |
    | 14 | paid_ratio | smoothed share of list price paid | 1 |
    | 15 | promo_share | smoothed share of orders with a coupon | 1 |
    | 16-36 | response log | `RESPONSE_FIELDS` (sim.envs.common): channel, shares, offers | its own |
    | 37-39 | decision_login / _cart_abandoned / _lapsing | one-hot | 1 |
    | 40 | season | demand multiplier of today's peaks / 10 | 1 |
    | 41 | time | share of the horizon elapsed | 1 |
    | 42 | budget_left | share of the incentive budget left | 1 |

    ## Rewards
    The change since the last step of her objective vector (``OBJECTIVES``): ``margin``
    (ledger net margin, dollars: revenue - goods - incentives - shipping - returns),
    ``ltv`` (realized margin discounted to acquisition plus the residual value of her future
    orders from her true traits, dollars; the residual drops to 0 when she churns, so churn
    costs at once), ``load`` (her late deliveries) and ``budget`` (incentive cost, dollars).
    The reward is ``objective_weights`` (default margin only) dotted with it, times
    ``reward_scale``. ``info["objective"]`` holds the vector.

    ## Episode End
    Terminated when she churns (BG/NBD dropout after an order, or quitting after a late
    delivery). A churned shopper still reaches her lapsing decision when it lies within the
    horizon, where an incentive wins her back with ``mechanisms.churn.winback_rate``; the
    episode then terminates there if she is not won back. Also terminated (never truncated)
    at ``horizon_days`` after the start of her acquisition day: the horizon is part of the
    task (the ``time`` field observes it, and the LTV objective pays her residual value at
    the end), so no value lies beyond it and learners must not bootstrap past it (Pardo et
    al. 2018, "Time Limits in Reinforcement Learning"); ``info["episode_metrics"]["churned"]``
    tells the two ends apart. A shopper who would reach no decision point before the horizon
    is redrawn, up to 100 times; if none does (a horizon shorter than every decision point
    of the scenario), ``reset()`` returns the last draw at her end (``info["decision_kind"]
    == "end"``) and the first step, whatever its valid action, terminates with reward 0.
    ``info["episode_metrics"]`` holds the episode's return ``r``,
    length ``l`` and her business totals at the end (not ``info["episode"]``, which gymnasium's
    ``RecordEpisodeStatistics`` and SB3's ``Monitor`` write); on every other step it holds
    zeros of the same keys and types.

    ## Info
    The same keys with the same value types on every step, at reset and at episode ends (no
    ``None``, no per-step lists), so gymnasium's vector envs, SB3 and replay buffers
    (tianshou) batch them: ``objective`` (the step's objective vector, a dict over
    ``OBJECTIVES``), ``decision_kind`` (str: login, cart_abandoned, lapsing; ``"end"`` once
    the episode is over), ``given`` (bool), ``time_days``, ``alive``, ``margin``, ``ltv``,
    ``ltv_mean``, ``active_share``, ``incentive_cost`` and ``episode_metrics`` (numbers only).
    ``step_objective()`` returns the step's objective vector as an array.

    ## Arguments
    ``scenario`` (a shipped scenario's name, a YAML path or a Scenario; default ``"default"``),
    ``overrides`` (dotted scenario overrides), ``horizon_days`` (365), ``incentive_budget``
    (dollars per episode, default unlimited), ``objective_weights`` (mapping over
    ``OBJECTIVES``, default ``{"margin": 1}``), ``decision_points`` (subset of login,
    cart_abandoned, lapsing; default the scenario's), ``neighbour_signal`` (1.0),
    ``reward_scale`` (0.01), ``render_mode`` (``"ansi"`` or None). Ranges: ``horizon_days`` an
    integer >= 1, ``incentive_budget`` >= 0 (``inf``: unlimited), ``neighbour_signal`` >= 0;
    gymnasium's ``check_env`` passes across them (``tests/sim/envs/test_contract.py``).

    ## Version History
    * v0: first version. Since 2026-12 her life runs on the population engine's rules
      (:mod:`sim.journeys`) with counter-based draws: the same seed gives a different (equally
      distributed) shopper and trajectory than before; the id was kept, the CI baseline rebuilt.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | Scenario = "default",
        overrides: dict[str, Any] | None = None,
        horizon_days: int = 365,
        incentive_budget: float = float("inf"),
        objective_weights: dict[str, float] | None = None,
        decision_points: tuple[str, ...] | None = None,
        neighbour_signal: float = 1.0,
        reward_scale: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        render_mode = check_common_arguments(horizon_days, incentive_budget, render_mode)
        if not neighbour_signal >= 0.0:
            raise ValueError(
                f"neighbour_signal must be >= 0 (recent neighbour purchases), got {neighbour_signal}"
            )
        self.scenario = env_scenario(scenario, overrides, decision_points)
        if not self.scenario.engine.decision_points:
            raise ValueError("engine.decision_points is empty: the journey would have no steps")
        self.horizon_days = horizon_days
        self.incentive_budget = incentive_budget
        self.objective_weights = weights_over_objectives(objective_weights, {"margin": 1.0})
        self._weights = tuple(float(w) for w in self.objective_weights)
        self.neighbour_signal = neighbour_signal
        self.reward_scale = reward_scale
        self.render_mode = render_mode
        self.task = self.make_task(1)
        self.catalog = self.task.catalog
        self.n_actions = len(self.catalog)
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = spaces.Box(0.0, OBS_HIGH, (len(OBS_FIELDS),), np.float32)
        self._row = np.zeros(1, dtype=np.int64)
        self._metrics_zero: dict[str, Any] | None = None
        self._objective = np.zeros(len(OBJECTIVES))
        self._started = False
        self._ended = False

    def make_task(self, size: int) -> JourneyTask:
        """A task of ``size`` journeys with this env's settings (the vector env's, one row per sub-env)."""
        return JourneyTask(
            self.scenario,
            size,
            self.horizon_days,
            self.incentive_budget,
            np.asarray(self._weights),
            self.neighbour_signal,
            self.reward_scale,
        )

    # ---- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Draw a new shopper and run her life to her first decision point."""
        super().reset(seed=seed)
        customer = (options or {}).get("customer")
        self.task.reset_rows(self._row, [self.np_random], [seed], None if customer is None else [customer])
        self._started, self._ended = True, False
        self._objective = np.zeros(len(OBJECTIVES))
        if self._metrics_zero is None:
            self._metrics_zero = self.task.metrics_template()
        info = self._info(
            np.zeros((1, len(OBJECTIVES))), np.zeros(1, dtype=np.bool_), np.zeros(1, dtype=np.bool_)
        )
        return self.task.observe(self._row)[0], info

    def step(self, action: np.int64 | int) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Give ``action`` at the current decision point and run her life to the next one."""
        if not self._started or self._ended:
            raise RuntimeError("call reset() before step(), and again after the episode ends")
        incentive = check_action(action, self.action_space)
        rewards, objective, given, terminated = self.task.step(
            self._row, np.array([incentive], dtype=np.int64)
        )
        self._objective = objective[0]
        # The horizon is part of the task (``time`` is observed; the LTV objective pays her residual
        # value at the end): no value lies beyond it, so it terminates (Pardo et al. 2018).
        self._ended = bool(terminated[0])
        info = self._info(objective, given, terminated)
        return self.task.observe(self._row)[0], float(rewards[0]), self._ended, False, info

    def action_masks(self) -> NDArray[np.bool_]:
        """Incentives she may receive now (eligibility and budget)."""
        if not self._started:
            return self.task._none_only.copy()
        return self.task.allowed(self._row)[0]

    def step_objective(self) -> NDArray[np.float64]:
        """The last step's objective vector (``OBJECTIVES``: dollars, late deliveries, dollars)."""
        return self._objective.copy()

    def render(self) -> str | None:
        """Her KPIs so far, as text."""
        if self.render_mode != "ansi" or not self._started:
            return None
        return self.task.describe(0)

    def summary(self) -> dict[str, Any]:
        """Her business metrics so far (the episode's totals at the end)."""
        if not self._started:
            return {}
        return {key: value[0].item() for key, value in self.task.summary(self._row).items()}

    def customer_results(self) -> pd.DataFrame | None:
        """In a twins scenario, her customer id and what she was given and earned (else None)."""
        return self.task.customer_results(self._row) if self._started else None

    def rollout_values(self, replicates: int, incentives: NDArray[np.int64]) -> NDArray[np.float64]:
        """Each incentive's expected objective from now on, by rollouts of her true journey (oracle only).

        Her present state, hidden traits included, is copied into one journey per incentive and
        replicate; each gives its incentive now and ``none`` at every later decision. Replicates
        draw her future from fresh keys that every incentive shares (common random numbers):
        the truth about her traits and state, not her realized future. Returns the env's
        weighted objective gained from now on (the rewards to come, before ``reward_scale``).
        """
        if not self._started or self._ended or self.task.batch.phase[0] == DONE:
            raise RuntimeError("no decision is pending: reset() first, or the episode has ended")
        return self.task.rollout_values(0, replicates, incentives, int(self.task.batch.keys[0]))

    def oracle_view(self) -> OracleView:
        """The truth about the shopper at the current decision, for ``kind: oracle`` only (never observed)."""
        if not self._started or self._ended:
            raise RuntimeError("no decision is pending: reset() first, or the episode has ended")
        batch = self.task.batch
        kind = batch.pending_kind(0)
        days_left = self.horizon_days - float(batch.now_hours(self._row)[0]) / HOURS_PER_DAY
        kinds = [] if kind is None else [DECISION_KINDS.index(kind)]  # none: no decision point
        return OracleView(
            scenario=self.scenario,
            catalog=self.catalog,
            state=self.task.true_state(0),
            kinds=np.array(kinds, dtype=np.int8),
            objective_weights=np.asarray(self._weights, dtype=np.float64),
            days_left=days_left,
            friend_value=referred_friend_worth(self.scenario).for_oracle(days_left),
        )

    # ---- internals ----------------------------------------------------------------------------
    def _info(self, objective: F64, given: NDArray[np.bool_], ended: NDArray[np.bool_]) -> dict[str, Any]:
        assert self._metrics_zero is not None
        batched = self.task.infos(self._row, objective, given, ended, self._metrics_zero)
        return one_info(batched, 0)
