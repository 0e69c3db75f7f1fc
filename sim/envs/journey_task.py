"""What ShopperJourney makes of a batch of journeys: observations, masks, rewards, metrics.

:class:`JourneyTask` is vectorized over the rows of a :class:`sim.journeys.JourneyBatch`: the
single env (:mod:`sim.envs.journey`) drives a task of one row, the native vector env
(:mod:`sim.envs.journey_vector`) one row per sub-env, so both compute every number the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.economics import INCENTIVE, REVENUE, expected_order_margin, residual_value
from sim.envs.common import (
    OBJECTIVES,
    RESPONSE_FIELDS,
    metrics_template,
    response_history,
)
from sim.journeys import ABANDONED, DONE, LAPSING, LOGIN, PHASES, WELCOME, JourneyBatch
from sim.mechanisms.breadth import count_categories
from sim.mechanisms.tiers import tier_progress
from sim.oracle import TrueState
from sim.params import DECISION_KINDS, ONBOARDING_MAX_ORDERS, Scenario
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
    *RESPONSE_FIELDS,
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
_KIND_BY_PHASE = np.zeros((PHASES, len(DECISION_KINDS)))
_KIND_BY_PHASE[LAPSING, DECISION_KINDS.index("lapsing")] = 1.0
_KIND_BY_PHASE[[LOGIN, WELCOME], DECISION_KINDS.index("login")] = 1.0
_KIND_BY_PHASE[ABANDONED, DECISION_KINDS.index("cart_abandoned")] = 1.0
#: The info's decision kind by a row's phase ("end" once her journey has ended).
_KIND_NAME = np.array(["end"] * PHASES, dtype=object)
_KIND_NAME[LAPSING], _KIND_NAME[ABANDONED] = "lapsing", "cart_abandoned"
_KIND_NAME[[LOGIN, WELCOME]] = "login"
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
        # Eligibility depends only on (new shopper, shown streak, tier >= 1): eight masks, computed once.
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
                    np.full(ids.size, ONBOARDING_MAX_ORDERS + int(established), dtype=np.int64),
                )
                for established in (False, True)
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
    def reset_rows(
        self,
        rows: I64,
        generators: Sequence[np.random.Generator],
        seeds: Sequence[int | None] | None = None,
        customers: Sequence[int | None] | None = None,
    ) -> None:
        """A new shopper in each row, run to her first decision point.

        A shopper who would reach no decision point before the horizon is redrawn from the same
        generator, up to ``_MAX_DRAWS`` times; the last draw stays, at her end, if none does.
        In a twins scenario each row is a real customer (:meth:`choose_customers`), never
        redrawn: a customer with no decision point ahead is an episode of one step.
        """
        batch = self.batch
        if batch.twins is not None:
            chosen = self.choose_customers(rows, generators, seeds, customers)
            batch.reset_rows(rows, generators, chosen)
            batch.advance(rows)
        else:
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

    def choose_customers(
        self,
        rows: I64,
        generators: Sequence[np.random.Generator],
        seeds: Sequence[int | None] | None,
        customers: Sequence[int | None] | None,
    ) -> list[int]:
        """Which real customer each row's next episode is (twins scenarios).

        A given customer index wins; else a reset seeded ``s`` is customer ``s mod n`` (so
        episodes seeded ``s, s+1, ...`` visit every customer once in ``n`` episodes), and an
        unseeded reset the row's next customer after her last (the first one drawn).
        """
        assert self.batch.twins is not None
        n = self.batch.twins.size
        chosen = []
        for j, row in enumerate(rows.tolist()):
            wanted = None if customers is None else customers[j]
            seed = None if seeds is None else seeds[j]
            last = int(self.batch.customer[row])
            if wanted is not None:
                if not 0 <= int(wanted) < n:
                    raise ValueError(f"options['customer']: {wanted!r} not allowed; an index in [0, {n - 1}]")
                chosen.append(int(wanted))
            elif seed is not None:
                chosen.append(int(seed) % n)
            elif last >= 0:
                chosen.append((last + 1) % n)
            else:
                chosen.append(int(generators[j].integers(n)))
        return chosen

    def customer_results(self, rows: I64) -> pd.DataFrame | None:
        """Per real customer of a twins scenario's rows: what she was given and what she earned (else None).

        The columns of :meth:`sim.engine.Simulation.customer_results`: ``customer_id``,
        ``incentives_received``, ``incentive_cost``, ``revenue``, ``margin`` (dollars, this
        episode), ``orders`` (her total, calibration included) and ``alive`` at the end.
        """
        batch = self.batch
        if batch.twins is None:
            return None
        pop, lines = batch.pop, batch.ledger.lines[:, rows]
        return pd.DataFrame(
            {
                "customer_id": batch.twins.customer_id[batch.customer[rows]],
                "incentives_received": pop.incentives_received[rows],
                "incentive_cost": lines[INCENTIVE] / 100.0,
                "revenue": lines[REVENUE] / 100.0,
                "margin": batch.margin_cents(rows) / 100.0 + batch.referred_margin[rows],
                "orders": pop.orders[rows],
                "alive": pop.alive[rows],
            }
        )

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
        return _objectives(self.batch, rows, self._order_margin[rows])

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
        established = pop.orders[rows] > ONBOARDING_MAX_ORDERS
        index = 4 * established + 2 * (pop.streak_days[rows] >= self._min_days) + (pop.tier[rows] >= 1)
        masks = self._masks[index]
        closed = self.batch.phase[rows] == DONE
        if not self.unlimited:
            closed |= self.budget_left(rows) <= 0
        masks[closed] = self._none_only
        return masks

    def observe(self, rows: I64) -> NDArray[np.float32]:
        """``(m, len(OBS_FIELDS))``: what the shop sees of each row now, scaled and clipped."""
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
                response_history(pop, rows),
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
        categories = count_categories(pop.categories_bought[rows])
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
            "margin": batch.margin_cents(rows) / 100.0 + batch.referred_margin[rows],
            # Of which her referred friends' expected margin (friends are not simulated in a journey).
            "referred_margin": batch.referred_margin[rows],
            "friends_referred": batch.friends_referred[rows],
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
            # Her breadth; averaged over journeys, the population's (every journey has her trial order).
            "categories_per_shopper": categories,
            "cross_buying_share": (categories >= 2).astype(np.float64),
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
        steps = int(self.episode_steps[row])
        keys = np.array(
            [
                np.random.SeedSequence([key, steps, r]).generate_state(1, np.uint64)[0]
                for r in range(replicates)
            ]
        )
        clones = self.batch.futures(row, incentives, keys, _none_at_every_decision)
        everyone = np.arange(clones.size)
        final = _objectives(clones, everyone, np.full(everyone.size, self._order_margin[row]))
        gained = (final - self.objective_state(np.array([row]))[0]) @ self.weights
        return np.asarray(gained.reshape(len(incentives), replicates).mean(axis=1), dtype=np.float64)

    def play_out(self, rows: I64, incentives: NDArray[np.integer]) -> F64:
        """Give ``incentives`` at the rows' pending decisions and ``none`` at every later one, to the end.

        One realized outcome per row (a randomized experiment's log): the weighted objective
        each gained from now on, before ``reward_scale``. The rows' episodes are spent.
        """
        batch = self.batch
        start = self.objective_state(rows)
        batch.submit(rows, np.asarray(incentives, dtype=np.int64))
        batch.advance(rows)
        while (waiting := rows[batch.phase[rows] != DONE]).size:
            batch.submit(waiting, _none_at_every_decision(batch, waiting))
            batch.advance(waiting)
        return np.asarray((self.objective_state(rows) - start) @ self.weights, dtype=np.float64)

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
            f"margin ${self.state[row, 0]:,.2f}  "
            f"incentives ${ledger.lines[INCENTIVE, row] / 100:,.2f}  ltv ${self.state[row, 1]:,.2f}  "
            f"tier {pop.tier[row]}  streak {pop.streak_days[row]}  "
            f"late {pop.late_deliveries[row]}/{pop.deliveries[row]}"
        )


def _objectives(batch: JourneyBatch, rows: I64, order_margin: F64) -> F64:
    """``(m, 4)``: the rows' cumulative objective vectors (``OBJECTIVES``) now."""
    pop = batch.pop
    residual = residual_value(batch.scenario, pop, batch.now_hours(rows), rows, order_margin)
    return np.column_stack(
        [
            batch.margin_cents(rows) / 100.0 + batch.referred_margin[rows],
            batch.ledger.margin_pv[rows] + residual + batch.referred_ltv[rows],
            pop.late_deliveries[rows].astype(np.float64),
            batch.ledger.lines[INCENTIVE, rows] / 100.0,
        ]
    )


def _none_at_every_decision(batch: JourneyBatch, rows: I64) -> I64:
    return np.zeros(rows.size, dtype=np.int64)


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
