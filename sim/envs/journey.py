"""``shopgym/ShopperJourney-v0``: one shopper's life, one decision point per step.

:class:`JourneyTask` is what the task makes of a batch of journeys (:class:`sim.journeys.JourneyBatch`):
observations, action masks, rewards and metrics, vectorized over rows. The single env is a
batch of one; :mod:`sim.envs.journey_vector` steps N rows in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sim.economics import INCENTIVE, REVENUE, expected_order_margin, residual_value
from sim.envs.common import (
    OBJECTIVES,
    check_action,
    check_common_arguments,
    env_scenario,
    metrics_template,
    weights_over_objectives,
)
from sim.journeys import ABANDONED, DONE, LAPSING, LOGIN, JourneyBatch
from sim.mechanisms.tiers import tier_progress
from sim.oracle import OracleView, TrueState
from sim.params import DECISION_KINDS, Scenario
from sim.population import HOURS_PER_DAY

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Observation fields, in order: (name, unit, scale the raw value is divided by).
OBS_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("recency", "days since last order", 365.0),
    ("frequency", "orders", 20.0),
    ("monetary", "dollars spent", 1000.0),
    ("tenure", "days since acquisition", 365.0),
    ("tier", "tier index / top tier", 1.0),
    ("tier_progress", "share of the way to the next tier", 1.0),
    ("points", "points balance", 1000.0),
    ("streak", "days", 30.0),
    ("streak_freezes", "freezes held", 5.0),
    ("open_cart", "dollars in the open cart", 100.0),
    ("last_delivery_late", "0 or 1", 1.0),
    ("late_share", "late deliveries / deliveries", 1.0),
    ("incentives_received", "count", 10.0),
    ("offer_active", "0 or 1", 1.0),
    ("paid_ratio", "smoothed share of list price paid", 1.0),
    ("promo_share", "smoothed share of orders with a coupon", 1.0),
    ("decision_login", "0 or 1", 1.0),
    ("decision_cart_abandoned", "0 or 1", 1.0),
    ("decision_lapsing", "0 or 1", 1.0),
    ("season", "demand multiplier of today's peaks / 10", 1.0),
    ("time", "share of the horizon elapsed", 1.0),
    ("budget_left", "share of the incentive budget left", 1.0),
)
OBS_HIGH = 10.0
_INV_SCALE = np.array([1.0 / s for *_, s in OBS_FIELDS])
_N_FIELDS = len(OBS_FIELDS)
#: One-hot of the decision kind by a row's phase (zeros once her journey has ended).
_KIND_BY_PHASE = np.zeros((8, len(DECISION_KINDS)))
_KIND_BY_PHASE[LAPSING, DECISION_KINDS.index("lapsing")] = 1.0
_KIND_BY_PHASE[LOGIN, DECISION_KINDS.index("login")] = 1.0
_KIND_BY_PHASE[ABANDONED, DECISION_KINDS.index("cart_abandoned")] = 1.0
#: The info's decision kind by a row's phase ("end" once her journey has ended).
_KIND_NAME = np.array(["end"] * 8, dtype=object)
_KIND_NAME[LAPSING], _KIND_NAME[LOGIN], _KIND_NAME[ABANDONED] = "lapsing", "login", "cart_abandoned"
#: Tries to draw a shopper who reaches a decision point before the horizon.
_MAX_DRAWS = 100


class JourneyTask:
    """What ShopperJourney makes of a batch of journeys, vectorized over its rows.

    Observations (``OBS_FIELDS``), action masks (eligibility and budget), rewards (the change
    of the weighted objective vector) and each row's business metrics. The single env drives a
    task of one row; the vector env one row per sub-env.
    """

    def __init__(
        self,
        scenario: Scenario,
        size: int,
        horizon_days: int,
        incentive_budget: float,
        weights: NDArray[np.float64],
        neighbour_signal: float,
        reward_scale: float,
    ) -> None:
        self.scenario = scenario
        self.horizon_days = horizon_days
        self.incentive_budget = incentive_budget
        self.unlimited = math.isinf(incentive_budget)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.reward_scale = reward_scale
        self.batch = JourneyBatch(scenario, size, horizon_days, neighbour_signal)
        self.catalog = self.batch.catalog
        self.n_actions = len(self.catalog)
        # Eligibility depends only on (shown streak, tier >= 1): the four masks, computed once.
        ids = np.arange(self.n_actions, dtype=np.int16)
        min_days = scenario.mechanisms.streaks.min_days
        self._min_days = min_days
        self._masks = np.stack(
            [
                self.catalog.eligible(
                    ids,
                    np.full(ids.size, min_days if streak_ok else 0, dtype=np.int64),
                    np.full(ids.size, 1 if tier_ok else 0, dtype=np.int8),
                    min_days,
                )
                for streak_ok in (False, True)
                for tier_ok in (False, True)
            ]
        )
        self._none_only = np.zeros(self.n_actions, dtype=np.bool_)
        self._none_only[0] = True
        self._top_tier = max(len(scenario.loyalty.tier_thresholds) - 1, 1)
        self._thresholds = np.asarray(scenario.loyalty.tier_thresholds, dtype=np.float64)
        self._horizon_hours = horizon_days * HOURS_PER_DAY
        self._order_margin = np.zeros(size)
        #: Each row's cumulative objective vector (``OBJECTIVES``) as of her last step.
        self.state = np.zeros((size, len(OBJECTIVES)))
        self.episode_reward = np.zeros(size)
        self.episode_steps = np.zeros(size, dtype=np.int64)

    # ---- episodes -------------------------------------------------------------------------------
    def reset_rows(self, rows: I64, generators: Sequence[np.random.Generator]) -> None:
        """A new shopper in each row, run to her first decision point.

        A shopper who would reach no decision point before the horizon is redrawn from the same
        generator, up to ``_MAX_DRAWS`` times; the last draw stays, at her end, if none does.
        """
        batch = self.batch
        pending, rngs = rows, list(generators)
        for _ in range(_MAX_DRAWS):
            batch.reset_rows(pending, rngs)
            batch.advance(pending)
            ended = batch.phase[pending] == DONE
            if not ended.any():
                break
            pending, rngs = pending[ended], [r for r, e in zip(rngs, ended.tolist(), strict=True) if e]
        self._order_margin[rows] = expected_order_margin(self.scenario, batch.pop, rows)
        self.state[rows] = self.objective_state(rows)
        self.episode_reward[rows] = 0.0
        self.episode_steps[rows] = 0

    def step(self, rows: I64, actions: I64) -> tuple[F64, F64, NDArray[np.bool_], NDArray[np.bool_]]:
        """Give ``actions`` at the rows' decision points and run them to the next.

        Returns (rewards, objective vectors ``(m, 4)``, given, terminated). An action a row may
        not receive now is not given. A row already at her end (no decision point reached)
        just terminates, with reward 0.
        """
        batch = self.batch
        deciding = batch.phase[rows] != DONE
        allowed = self.allowed(rows)
        given = (actions > 0) & allowed[np.arange(rows.size), actions] & deciding
        if deciding.any():
            waiting = rows[deciding]
            batch.submit(waiting, np.where(given, actions, 0)[deciding])
            batch.advance(waiting)
        before = self.state[rows]
        after = self.objective_state(rows)
        self.state[rows] = after
        objective = after - before
        rewards = objective @ self.weights * self.reward_scale
        self.episode_reward[rows] += rewards
        self.episode_steps[rows] += 1
        return rewards, objective, given, batch.phase[rows] == DONE

    # ---- what is observed -------------------------------------------------------------------------
    def now_hours(self, rows: I64) -> F64:
        """Each row's time: her pending decision's, or her end's."""
        return self.batch.now_hours(rows)

    def objective_state(self, rows: I64) -> F64:
        """Cumulative margin, LTV (with her residual value), late deliveries and incentive cost."""
        batch, pop = self.batch, self.batch.pop
        now = batch.now_hours(rows)
        residual = residual_value(self.scenario, pop, now, rows, self._order_margin[rows])
        lines = batch.ledger.lines[:, rows]
        return np.column_stack(
            [
                batch.margin_cents(rows) / 100.0,
                batch.ledger.margin_pv[rows] + residual,
                pop.late_deliveries[rows].astype(np.float64),
                lines[INCENTIVE] / 100.0,
            ]
        )

    def budget_left(self, rows: I64) -> F64:
        """Share of each row's incentive budget left (1 when unlimited)."""
        if self.unlimited:
            return np.ones(rows.size)
        spent = self.batch.ledger.lines[INCENTIVE, rows] / 100.0
        if self.incentive_budget <= 0:
            return np.zeros(rows.size)
        return np.maximum(0.0, 1.0 - spent / self.incentive_budget)

    def allowed(self, rows: I64) -> NDArray[np.bool_]:
        """``(m, n_actions)``: the incentives each row may receive now (``none`` only at her end)."""
        pop = self.batch.pop
        index = 2 * (pop.streak_days[rows] >= self._min_days) + (pop.tier[rows] >= 1)
        masks = self._masks[index]
        closed = self.batch.phase[rows] == DONE
        if not self.unlimited:
            closed |= self.budget_left(rows) <= 0
        masks[closed] = self._none_only
        return masks

    def observe(self, rows: I64) -> NDArray[np.float32]:
        """``(m, 22)``: what the shop sees of each row now, scaled and clipped (``OBS_FIELDS``)."""
        batch, pop = self.batch, self.batch.pop
        now = batch.now_hours(rows)
        deliveries = pop.deliveries[rows]
        day = np.minimum(np.floor(now / HOURS_PER_DAY).astype(np.int64), self.horizon_days)
        raw = np.column_stack(
            [
                (now - pop.last_order_at[rows]) / HOURS_PER_DAY,
                pop.orders[rows],
                pop.monetary[rows],
                (now - pop.acquired_at[rows]) / HOURS_PER_DAY,
                pop.tier[rows] / self._top_tier,
                tier_progress(pop.qualifying_spend[rows], pop.tier[rows], self._thresholds),
                pop.points[rows],
                pop.streak_days[rows],
                pop.streak_freezes[rows],
                pop.cart_value[rows],
                pop.last_delivery_late[rows],
                np.divide(pop.late_deliveries[rows], np.maximum(deliveries, 1)),
                pop.incentives_received[rows],
                (pop.offer[rows] != 0) & (pop.offer_expires_at[rows] >= now),
                pop.reference_ratio[rows],
                pop.promo_share[rows],
                _KIND_BY_PHASE[batch.phase[rows]],
                batch.season_multiplier(day * HOURS_PER_DAY) / 10.0,
                now / self._horizon_hours,
                self.budget_left(rows),
            ]
        )
        return np.clip(raw * _INV_SCALE, 0.0, OBS_HIGH).astype(np.float32)

    def decision_kinds(self, rows: I64) -> NDArray[np.object_]:
        """Each row's pending decision kind as text (``"end"`` once her journey has ended)."""
        return _KIND_NAME[self.batch.phase[rows]]

    def summary(self, rows: I64) -> dict[str, NDArray[Any]]:
        """Each row's business metrics so far (her episode's totals at the end)."""
        batch, pop, scenario = self.batch, self.batch.pop, self.scenario
        lines = batch.ledger.lines[:, rows]
        carts = pop.carts[rows]
        completed = carts - pop.carts_abandoned[rows] + pop.carts_recovered[rows]
        deliveries = pop.deliveries[rows]
        ltv = self.state[rows, 1]
        return {
            "days": batch.now_hours(rows) / HOURS_PER_DAY,
            "churned": ~pop.alive[rows],
            "visits": pop.visits[rows].astype(np.int64),
            "carts": carts.astype(np.int64),
            "cart_abandonment_rate": np.where(carts > 0, 1.0 - completed / np.maximum(carts, 1), 0.0),
            "orders": pop.orders[rows],
            "repeat_orders": np.maximum(
                pop.orders[rows] - int(scenario.population.first_order_at_acquisition), 0
            ),
            "revenue": lines[REVENUE] / 100.0,
            "incentive_cost": lines[INCENTIVE] / 100.0,
            "margin": batch.margin_cents(rows) / 100.0,
            "ltv": ltv,
            "ltv_mean": ltv,  # the population envs' name: here a population of one
            "active_share": pop.alive[rows].astype(np.float64),
            "ltv_realized": batch.ledger.margin_pv[rows],
            "points_liability": pop.points[rows] * scenario.loyalty.point_value,
            "deliveries": deliveries,
            "late_deliveries": pop.late_deliveries[rows],
            "late_delivery_share": np.where(
                deliveries > 0, pop.late_deliveries[rows] / np.maximum(deliveries, 1), 0.0
            ),
            "returns": pop.returns[rows].astype(np.int64),
            "incentives_offered": pop.incentives_received[rows],
            "ineligible_offers": pop.ineligible_offers[rows].astype(np.int64),
            "referral_cost": batch.referral_cost[rows] / 100.0,
        }

    # ---- the oracle's view (never observed) -----------------------------------------------------------
    def true_state(self, row: int) -> TrueState:
        """Her latent traits and hidden state now, as one-row arrays (for the privileged oracle only)."""
        rows = np.array([row])
        return self.batch.true_state(rows, self.batch.now_hours(rows))

    def rollout_values(self, row: int, replicates: int, incentives: NDArray[np.int64], key: int) -> F64:
        """Each incentive's expected weighted objective from now on, by rollouts of her true journey.

        Her present state is copied into ``len(incentives) x replicates`` journeys; each gives its
        incentive now and ``none`` at every later decision. Replicate ``r`` draws the rest of
        her life from the same new key for every incentive (common random numbers), tied to
        ``key`` and her step count. Returns the env's weighted objective gained from now on, per
        incentive (the sum of the rewards to come, before ``reward_scale``).
        """
        arms = len(incentives)
        clones = JourneyBatch(
            self.scenario, arms * replicates, self.horizon_days, self.batch.neighbour_signal
        )
        clones.copy_rows(self.batch, row)
        steps = int(self.episode_steps[row])
        keys = np.array(
            [
                np.random.SeedSequence([key, steps, r]).generate_state(1, np.uint64)[0]
                for r in range(replicates)
            ]
        )
        everyone = np.arange(arms * replicates)
        clones.rekey(everyone, np.tile(keys, arms))
        order_margin = np.full(everyone.size, self._order_margin[row])
        start = self.objective_state(np.array([row]))[0]
        clones.submit(everyone, np.repeat(np.asarray(incentives, dtype=np.int64), replicates))
        clones.advance(everyone)
        while (waiting := everyone[clones.phase != DONE]).size:
            clones.submit(waiting, np.zeros(waiting.size, dtype=np.int64))
            clones.advance(waiting)
        now = clones.now_hours(everyone)
        final = np.column_stack(
            [
                clones.margin_cents(everyone) / 100.0,
                clones.ledger.margin_pv
                + residual_value(self.scenario, clones.pop, now, everyone, order_margin),
                clones.pop.late_deliveries.astype(np.float64),
                clones.ledger.lines[INCENTIVE] / 100.0,
            ]
        )
        gained = (final - start) @ self.weights
        return np.asarray(gained.reshape(arms, replicates).mean(axis=1), dtype=np.float64)

    # ---- infos ------------------------------------------------------------------------------------
    def metrics_template(self) -> dict[str, Any]:
        """Zeros of the episode metrics' keys and types (``info["episode_metrics"]`` mid-episode)."""
        first = {key: value[0].item() for key, value in self.summary(np.zeros(1, dtype=np.int64)).items()}
        return metrics_template({"r": 0.0, "l": 0, **first})

    def infos(
        self,
        rows: I64,
        objective: F64,
        given: NDArray[np.bool_],
        ended: NDArray[np.bool_],
        metrics_zero: dict[str, Any],
    ) -> dict[str, Any]:
        """The rows' infos as arrays (the keys and types of every step; ``episode_metrics`` at ends).

        ``objective`` holds each row's step objective vector; ``ended`` marks the rows whose
        episode ended at this step: their ``episode_metrics`` hold the episode's return ``r``,
        length ``l`` and business totals, every other row's zeros of the same types.
        """
        state = self.state[rows]
        alive = self.batch.pop.alive[rows]
        metrics = {key: np.full(rows.size, zero, dtype=type(zero)) for key, zero in metrics_zero.items()}
        if ended.any():
            done = rows[ended]
            totals = {"r": self.episode_reward[done], "l": self.episode_steps[done], **self.summary(done)}
            for key, zero in metrics_zero.items():
                metrics[key][ended] = np.asarray(totals[key]).astype(type(zero))
        return {
            "objective": {key: objective[:, i] for i, key in enumerate(OBJECTIVES)},
            "decision_kind": self.decision_kinds(rows),
            "given": given,
            "time_days": self.batch.now_hours(rows) / HOURS_PER_DAY,
            "alive": alive,
            "margin": state[:, 0],
            "ltv": state[:, 1],
            "ltv_mean": state[:, 1],  # the population envs' name: here a population of one
            "active_share": alive.astype(np.float64),
            "incentive_cost": state[:, 3],
            "episode_metrics": metrics,
        }

    def describe(self, row: int) -> str:
        """One row's KPIs so far, as text (the ``ansi`` render)."""
        rows = np.array([row])
        pop, ledger = self.batch.pop, self.batch.ledger
        return (
            f"day {self.batch.now_hours(rows)[0] / HOURS_PER_DAY:6.1f}  "
            f"{'alive' if pop.alive[row] else 'churned'}  orders {pop.orders[row]}  "
            f"margin ${self.batch.margin_cents(rows)[0] / 100:,.2f}  "
            f"incentives ${ledger.lines[INCENTIVE, row] / 100:,.2f}  ltv ${self.state[row, 1]:,.2f}  "
            f"tier {pop.tier[row]}  streak {pop.streak_days[row]}  "
            f"late {pop.late_deliveries[row]}/{pop.deliveries[row]}"
        )


def one_info(batched: dict[str, Any], k: int) -> dict[str, Any]:
    """Row ``k`` of batched infos as plain Python values (a single env's info)."""
    out: dict[str, Any] = {}
    for key, value in batched.items():
        if isinstance(value, dict):
            out[key] = one_info(value, k)
        else:
            item = value[k]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


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
    late deliveries. Each step is one of her decision points: she logged in, abandoned a cart,
    or is lapsing (``engine.decision_points`` of the scenario). Small and fast: the env for CI
    regression and first experiments.

    What a one-shopper world cannot have is documented in :mod:`sim.journeys`:
    deliveries follow the scenario's schedule without a warehouse queue (one shopper is no
    load, so the promise is kept; lateness comes from load in the population envs); social proof comes from a
    constant neighbour signal (``neighbour_signal``, default 1.0, about the population
    engine's average in the default shop; 0 turns it off);
    tiers are not inflated by other shoppers; invited friends are not simulated: a referral
    bonus's cost is booked on her ledger when a friend's first order reaches the floor, and
    the friends' value is not hers.

    ## Action Space
    ``Discrete(n)``, one action per incentive of the scenario (0 is ``none``).
    ``action_masks()`` marks those she may receive (``IncentiveCatalog.eligible``: streak
    incentives need a shown streak, tier perks tier 1), and only ``none`` once the incentive
    budget is spent, in sb3-contrib MaskablePPO's convention. An ineligible or over-budget
    action is not given (``info["given"]`` is False).

    ## Observation Space
    ``Box(0, 10, (22,), float32)``: what the shop observes of her, each field divided by its
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
    | 16-18 | decision_login / _cart_abandoned / _lapsing | one-hot | 1 |
    | 19 | season | demand multiplier of today's peaks / 10 | 1 |
    | 20 | time | share of the horizon elapsed | 1 |
    | 21 | budget_left | share of the incentive budget left | 1 |

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
    * v0: first version.
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
        self.task.reset_rows(self._row, [self.np_random])
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
            friend_value=(0.0, 0.0),  # her friends are not simulated here: a referral shows only its cost
        )

    # ---- internals ----------------------------------------------------------------------------
    def _info(self, objective: F64, given: NDArray[np.bool_], ended: NDArray[np.bool_]) -> dict[str, Any]:
        assert self._metrics_zero is not None
        batched = self.task.infos(self._row, objective, given, ended, self._metrics_zero)
        return one_info(batched, 0)
