"""``shopgym/CampaignPlanning-v0``: plan one incentive per customer segment, one day at a time."""

from __future__ import annotations

from copy import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sim.economics import INCENTIVE, expected_order_margin
from sim.engine import DecisionBatch, Simulation
from sim.envs.common import (
    OBJECTIVES,
    budget_left,
    check_action,
    check_common_arguments,
    conform_metrics,
    env_scenario,
    metrics_template,
    new_simulation,
    oracle_view_of,
    rollout_simulation,
    shop_objective_state,
    weights_over_objectives,
)
from sim.metrics import summarize
from sim.oracle import OracleView
from sim.params import DECISION_KINDS, Scenario
from sim.population import HOURS_PER_DAY

#: Shoppers per decision kind the oracle values each day (a sample of larger groups).
ORACLE_SAMPLE = 1000
#: Segments, in action order. Cart abandoners are shoppers at a cart_abandoned decision.
SEGMENTS = ("new", "active_mid", "high_value_at_risk", "low_value", "cart_abandoners")
#: Observation fields, in order: (name, unit, scale).
OBS_FIELDS: tuple[tuple[str, str, float], ...] = (
    *(
        (f"{segment}_{field}", unit, scale)
        for segment in SEGMENTS
        for field, unit, scale in (
            ("share", "share of acquired shoppers", 1.0),
            ("recency", "mean days since last order", 365.0),
            ("monetary", "mean dollars spent", 1000.0),
            ("conversion", "yesterday's checkout conversion", 1.0),
        )
    ),
    ("backlog", "orders waiting / regular daily capacity", 1.0),
    ("utilization", "yesterday's capacity used / regular capacity", 1.0),
    ("late_share", "yesterday's late deliveries / deliveries", 1.0),
    ("budget_left", "share of the incentive budget left", 1.0),
    ("weekday_sin", "sin(2 pi weekday / 7)", 1.0),
    ("weekday_cos", "cos(2 pi weekday / 7)", 1.0),
    ("season", "demand multiplier of today's peaks / 10", 1.0),
    ("time", "share of the horizon elapsed", 1.0),
)


class CampaignPlanningEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """Plan the day's incentive for each customer segment; the shop and its warehouse run underneath.

    ## Description
    The whole simulator runs (see ``docs/MODEL.md``). Each step is one day: the action names
    the incentive each segment gets at its decision points that day (logins and lapsing
    shoppers by segment, cart abandoners by their own segment). Segments come from what a shop
    sees: ``new`` (tenure under ``new_days``), ``high_value_at_risk`` (spent at least
    ``high_value`` dollars, no order for ``at_risk_days``), ``low_value`` (spent under
    ``low_value``), ``active_mid`` (the rest), ``cart_abandoners``. Incentives that pull
    orders into a peak the warehouse cannot carry cause late deliveries, which raise churn:
    the shipped ``peak_season`` scenario is built for this trade-off.

    ## Action Space
    ``MultiDiscrete([n] * 5)``: one incentive id per segment, in ``SEGMENTS`` order (0 is
    ``none``). Ineligible choices (e.g. a tier perk for a tier-0 shopper) and any incentive
    after the budget is spent are not given.

    ## Observation Space
    ``Box(-1, 10, (28,), float32)``, fields in ``OBS_FIELDS`` order (each divided by its scale):

    | # | field | unit | scale |
    |---|---|---|---|
    | 0-19 | per segment: share, recency, monetary, conversion | share; days; $; rate | 1; 365; 1000; 1 |
    | 20 | backlog | orders waiting / regular daily capacity | 1 |
    | 21 | utilization | yesterday's capacity used / regular capacity | 1 |
    | 22 | late_share | yesterday's late deliveries / deliveries | 1 |
    | 23 | budget_left | share of the incentive budget left | 1 |
    | 24-25 | weekday_sin, weekday_cos | calendar | 1 |
    | 26 | season | demand multiplier of today's peaks / 10 | 1 |
    | 27 | time | share of the horizon elapsed | 1 |

    ## Rewards
    The day's objective vector (``OBJECTIVES``): ``margin`` (change in the shop's net margin,
    dollars), ``ltv`` (change in the acquired shoppers' total LTV: realized discounted margin
    plus residual value, so churn costs at once), ``load`` (late deliveries plus overtime
    orders) and ``budget`` (incentive cost). The reward is ``objective_weights`` (default
    margin 1, ltv 0.5, load -1) dotted with it, times ``reward_scale``. The vector is in
    ``info["objective"]``.

    ## Episode End
    Truncated after exactly ``horizon_days`` steps; never terminated. Decisions at the very
    end of the last day (cart timers running out at the horizon) follow the last day's plan.
    The last step's ``info["episode_metrics"]`` holds the episode's return ``r``, length ``l``
    and the shop's business totals (the numbers of ``sim.metrics.summarize``); every other step
    and the reset hold zeros of the same keys and types. It is not ``info["episode"]``, which
    gymnasium's ``RecordEpisodeStatistics`` and SB3's ``Monitor`` write themselves.

    ## Info
    ``objective`` (the day's objective vector, a dict over ``OBJECTIVES``; zeros at reset) and
    ``episode_metrics``: the same keys and types on every step, so vector envs and replay
    buffers batch them. ``step_objective()`` returns the day's vector as an array.

    ## Arguments
    ``scenario`` (name, YAML path or Scenario; default ``"peak_season"``), ``overrides`` (dotted),
    ``horizon_days`` (90), ``incentive_budget`` (dollars, default unlimited),
    ``objective_weights``, ``reward_scale`` (0.001), ``new_days`` (30), ``at_risk_days`` (45),
    ``high_value`` (300), ``low_value`` (80), ``render_mode`` (``"ansi"`` or None).

    ## Version History
    * v0: first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | Scenario = "peak_season",
        overrides: dict[str, Any] | None = None,
        horizon_days: int = 90,
        incentive_budget: float = float("inf"),
        objective_weights: dict[str, float] | None = None,
        reward_scale: float = 0.001,
        new_days: float = 30.0,
        at_risk_days: float = 45.0,
        high_value: float = 300.0,
        low_value: float = 80.0,
        render_mode: str | None = None,
    ) -> None:
        render_mode = check_common_arguments(horizon_days, incentive_budget, render_mode)
        self.scenario = env_scenario(scenario, overrides)
        self.horizon_days = horizon_days
        self.incentive_budget = incentive_budget
        self.objective_weights = weights_over_objectives(
            objective_weights, {"margin": 1.0, "ltv": 0.5, "load": -1.0}
        )
        self.reward_scale = reward_scale
        self.new_hours = new_days * HOURS_PER_DAY
        self.at_risk_hours = at_risk_days * HOURS_PER_DAY
        self.high_value, self.low_value = high_value, low_value
        self.render_mode = render_mode
        n = len(self.scenario.incentives)
        self.action_space = spaces.MultiDiscrete([n] * len(SEGMENTS))
        self.observation_space = spaces.Box(-1.0, 10.0, (len(OBS_FIELDS),), np.float32)
        self._sim: Simulation | None = None
        self._metrics_zero: dict[str, Any] | None = None
        self._step_objective = np.zeros(len(OBJECTIVES))
        #: Episodes started by reset() so far (a planning oracle plans once per episode).
        self.episode_index = 0

    @property
    def day(self) -> int:
        """Today's index: the day the next step plans (0 right after reset)."""
        return int(getattr(self, "_day", 0))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Build a fresh simulation; the first step plans day 0."""
        super().reset(seed=seed)
        self.episode_index += 1
        self._start(new_simulation(self, self.scenario, self.horizon_days))
        assert self._sim is not None
        if self._metrics_zero is None:
            self._metrics_zero = metrics_template({"r": 0.0, "l": 0, **summarize(self._sim)})
        return self._observe(), self._info()

    def _start(self, sim: Simulation) -> None:
        """Begin an episode on ``sim`` (a fresh run, or a planning rollout's fork)."""
        self._sim = sim
        self._order_margin = expected_order_margin(self.scenario, sim.pop)
        self._day = 0
        self._pending: DecisionBatch | None = None
        self._done = False
        self._state = self._objective_state()
        self._episode_reward = 0.0
        self._step_objective = np.zeros(len(OBJECTIVES))

    def step(
        self, action: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Run one day with this plan; reward the day's weighted objective vector."""
        if self._sim is None or self._done:
            raise RuntimeError("call reset() before step(), and again after the episode ends")
        self._run_day(check_action(action, self.action_space))
        state = self._objective_state()
        objective = state - self._state
        self._state = state
        reward = float(self.objective_weights @ objective) * self.reward_scale
        self._episode_reward += reward
        self._step_objective = objective
        info = self._info()
        if self._done:
            totals = {"r": self._episode_reward, "l": self._day, **summarize(self._sim)}
            info["episode_metrics"] = conform_metrics(info["episode_metrics"], totals)
        return self._observe(), reward, False, self._done, info

    def step_objective(self) -> NDArray[np.float64]:
        """The last day's objective vector (``OBJECTIVES``; zeros after reset)."""
        return self._step_objective.copy()

    def render(self) -> str | None:
        """The shop's KPIs so far, as text."""
        if self.render_mode != "ansi" or self._sim is None:
            return None
        s = summarize(self._sim)
        return (
            f"day {self._day:3d}  orders {s['orders']:,}  margin ${s['margin']:,.0f}  "
            f"incentives ${s['incentive_cost']:,.0f}  backlog {self._sim.fulfillment.queue_length:,}  "
            f"late {s['late_delivery_share']:.1%}  peak util {s['peak_utilization']:.2f}"
        )

    def oracle_view(self) -> OracleView:
        """The truth about every shopper today's plan may reach, for ``kind: oracle`` only (never observed).

        Each alive shopper may log in (weight: her session probability, with the day's seasonal
        peak; head: her segment) or
        abandon a cart (weight: session x cart x typical abandonment; head ``cart_abandoners``);
        a shopper whose recency crosses the lapse threshold today meets her lapsing decision
        (weight 1; head: her segment), alive or not. Groups above ``ORACLE_SAMPLE`` shoppers are
        represented by a fixed-seed random sample of that size, its weights scaled up.
        """
        sim = self._sim
        if sim is None or self._done:
            raise RuntimeError("no day is pending: reset() first, or the episode has ended")
        pop, rows = sim.pop, sim.acquired_rows()
        ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        alive = ids[pop.alive[ids]]
        start = self._day * HOURS_PER_DAY
        lapse = sim.scenario.sessions.lapse_after_days * HOURS_PER_DAY
        recency = start - pop.last_order_at[ids]
        lapsing = ids[(recency >= lapse - HOURS_PER_DAY) & (recency < lapse) & ~pop.lapsing_flagged[ids]]
        shoppers = np.concatenate([alive, alive, lapsing])
        kinds = np.repeat(
            np.array(
                [DECISION_KINDS.index(k) for k in ("login", "cart_abandoned", "lapsing")], dtype=np.int8
            ),
            [alive.size, alive.size, lapsing.size],
        )
        heads = np.concatenate(
            [
                self.segments_of(alive),
                np.full(alive.size, SEGMENTS.index("cart_abandoners")),
                self.segments_of(lapsing),
            ]
        )
        session = np.minimum(pop.visit_prob[alive] * sim.season_multiplier(start), 1.0)
        abandon = session * pop.cart_prob[alive] * 0.7  # about 70% of carts are abandoned
        weights = np.concatenate([session, abandon, np.ones(lapsing.size)])
        keep = np.ones(shoppers.size, dtype=bool)
        rng = np.random.default_rng(self._day)  # the same sample whatever the policy did before
        for code in np.unique(kinds):
            group = np.flatnonzero(kinds == code)
            if group.size > ORACLE_SAMPLE:
                chosen = np.zeros(group.size, dtype=bool)
                chosen[rng.choice(group.size, ORACLE_SAMPLE, replace=False)] = True
                keep[group[~chosen]] = False
                weights[group] *= group.size / ORACLE_SAMPLE
        shoppers, kinds, heads, weights = shoppers[keep], kinds[keep], heads[keep], weights[keep]
        view = oracle_view_of(sim, shoppers, kinds, self.objective_weights, self.horizon_days)
        return replace(view, heads=heads.astype(np.int64), weights=weights)

    def phases(self) -> NDArray[np.int64]:
        """Each day's phase for a planning oracle's plans: 1 on seasonal peak days, else 0."""
        days = np.arange(self.horizon_days) * HOURS_PER_DAY
        if self._sim is None:
            raise RuntimeError("reset() first: the phases come from the episode's simulation")
        return (self._sim.season_multiplier(days.astype(np.float64)) > 1.0).astype(np.int64)

    def plan_shape(self) -> tuple[int, int, int]:
        """A plan's (rows, columns, options): phases (``phases()``) x segments -> an incentive."""
        return int(self.phases().max()) + 1, len(SEGMENTS), len(self.scenario.incentives)

    def plan_action(self, plan: NDArray[np.int64]) -> NDArray[np.int64]:
        """Today's action under ``plan``: its row for today's phase."""
        return np.asarray(plan[int(self.phases()[self.day])], dtype=np.int64).copy()

    def rollout_plans(self, plans: NDArray[np.int64], replicates: int) -> NDArray[np.float64]:
        """Mean episode return of each open-loop plan, rolled out from this episode's true start.

        ``plans[p, phase, segment]`` is the incentive a segment gets on days of that phase
        (``phases()``). Each rollout runs this episode's own population (its traits, arrival
        times and social graph: the true state at day 0) through ``replicates`` futures drawn
        from fresh seeds, the same futures for every plan (common random numbers), so only the
        privileged planning oracle may call it. Cost: ``plans x replicates`` episodes.
        """
        if self._sim is None or self._day != 0:
            raise RuntimeError("rollout_plans plans from the start: call it right after reset()")
        plans = np.asarray(plans, dtype=np.int64)
        phase = self.phases()
        if plans.ndim != 3 or plans.shape[2] != len(SEGMENTS) or plans.shape[1] <= int(phase.max()):
            raise ValueError(
                f"plans must be (plans, phases, {len(SEGMENTS)}) with {int(phase.max()) + 1} phase(s), "
                f"got shape {plans.shape}"
            )
        returns = np.zeros(len(plans))
        for r in range(replicates):
            for p, plan in enumerate(plans):
                fork = copy(self)  # shares the settings; _start rebinds every per-episode field
                fork._start(rollout_simulation(self._sim, r))
                start = fork._state
                while not fork._done:
                    fork._run_day(plan[phase[fork._day]])
                # The daily rewards telescope: the return is the weighted change over the episode.
                returns[p] += float(self.objective_weights @ (fork._objective_state() - start))
        return returns * self.reward_scale / replicates

    # ---- internals ----------------------------------------------------------------------------
    def _run_day(self, plan: NDArray[np.int64]) -> None:
        """Run today with ``plan`` (one incentive per segment) and move to tomorrow."""
        assert self._sim is not None
        day_end = (self._day + 1) * HOURS_PER_DAY
        while True:
            batch = self._pending if self._pending is not None else self._sim.next_decision()
            self._pending = None
            if batch is None:
                self._done = True
                break
            if batch.time_hours >= day_end and self._day + 1 < self.horizon_days:
                self._pending = batch  # tomorrow's first decision waits for tomorrow's plan
                break
            self._sim.submit(self._plan_for(batch, plan))
        self._day += 1

    def _info(self) -> dict[str, Any]:
        assert self._metrics_zero is not None
        objective = dict(zip(OBJECTIVES, map(float, self._step_objective), strict=True))
        # Zeros (same keys and types) until the step that ends the episode: batchable.
        return {"objective": objective, "episode_metrics": self._metrics_zero.copy()}

    def segments_of(self, shoppers: NDArray[np.int64], kind: str | None = None) -> NDArray[np.int64]:
        """Segment index of each shopper, from what the shop can observe."""
        assert self._sim is not None
        pop, now = self._sim.pop, self._sim.now_hours
        recency = now - pop.last_order_at[shoppers]
        segment = np.full(shoppers.size, SEGMENTS.index("active_mid"))
        segment[pop.monetary[shoppers] < self.low_value] = SEGMENTS.index("low_value")
        at_risk = (pop.monetary[shoppers] >= self.high_value) & (recency >= self.at_risk_hours)
        segment[at_risk] = SEGMENTS.index("high_value_at_risk")
        segment[now - pop.acquired_at[shoppers] < self.new_hours] = SEGMENTS.index("new")
        if kind == "cart_abandoned":
            segment[:] = SEGMENTS.index("cart_abandoners")
        return segment

    def _plan_for(self, batch: DecisionBatch, plan: NDArray[np.int64]) -> NDArray[np.int64]:
        if self._budget_left() <= 0:
            return np.zeros(batch.shoppers.size, dtype=np.int64)
        return plan[self.segments_of(batch.shoppers, batch.kind)]

    def _budget_left(self) -> float:
        assert self._sim is not None
        return budget_left(float(self._sim.ledger.lines[INCENTIVE].sum()) / 100.0, self.incentive_budget)

    def _objective_state(self) -> NDArray[np.float64]:
        """Cumulative margin, LTV, load and incentive cost of the shop so far."""
        assert self._sim is not None
        if self._order_margin.size < self._sim.pop.size:  # referred shoppers joined
            self._order_margin = expected_order_margin(self._sim.scenario, self._sim.pop)
        return shop_objective_state(self._sim, self._order_margin)

    def _observe(self) -> NDArray[np.float32]:
        assert self._sim is not None
        sim, obs = self._sim, np.zeros(len(OBS_FIELDS), dtype=np.float32)
        rows = sim.acquired_rows()
        ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        values: list[float] = []
        yesterday = max(self._day - 1, 0)
        daily = sim.daily.values
        conversion = 1.0 - daily["abandoned"][yesterday] / max(daily["carts"][yesterday], 1.0)
        if ids.size:
            segment = self.segments_of(ids)
            # Per-segment sums in one pass each, instead of one masked gather per segment.
            counts = np.bincount(segment, minlength=len(SEGMENTS)).astype(np.float64)
            recency = np.bincount(
                segment, (sim.now_hours - sim.pop.last_order_at[ids]) / HOURS_PER_DAY, len(SEGMENTS)
            )
            monetary = np.bincount(segment, sim.pop.monetary[ids], len(SEGMENTS))
            mean = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
            for s in range(len(SEGMENTS)):
                values += [
                    counts[s] / ids.size,
                    recency[s] * mean[s] / 365.0,
                    monetary[s] * mean[s] / 1000.0,
                    conversion,
                ]
        else:
            values += [0.0] * (4 * len(SEGMENTS))
        capacity = max(sim.fulfillment.capacity_per_day, 1.0)
        weekday = 2 * np.pi * (self._day % 7) / 7
        values += [
            sim.fulfillment.queue_length / capacity,
            daily["units_used"][yesterday] / capacity,
            daily["late_deliveries"][yesterday] / max(daily["deliveries"][yesterday], 1.0),
            self._budget_left(),
            float(np.sin(weekday)),
            float(np.cos(weekday)),
            sim.season_multiplier(self._day * HOURS_PER_DAY) / 10.0,
            self._day / self.horizon_days,
        ]
        obs[:] = np.clip(values, -1.0, 10.0)
        return obs
