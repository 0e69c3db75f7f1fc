"""``shopgym/IncentiveTargeting-v0``: choose an incentive for one shopper at a time, population underneath."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sim.economics import INCENTIVE, REVENUE, expected_order_margin, residual_value
from sim.engine import DecisionBatch, Simulation
from sim.envs.common import (
    OBJECTIVES,
    RESPONSE_FIELDS,
    budget_left,
    check_action,
    check_common_arguments,
    conform_metrics,
    env_scenario,
    metrics_template,
    new_simulation,
    oracle_view_of,
    response_history,
    rollout_simulation,
    shop_objective_state,
    weights_over_objectives,
)
from sim.mechanisms.tiers import tier_progress
from sim.metrics import summarize
from sim.oracle import OracleView, best_allowed, incentive_values
from sim.params import DECISION_KINDS, Scenario
from sim.population import HOURS_PER_DAY, UPLIFT_CLASSES

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
    ("open_cart", "dollars in the open cart", 100.0),
    ("last_delivery_late", "0 or 1", 1.0),
    ("late_share", "late deliveries / deliveries", 1.0),
    ("incentives_received", "count", 10.0),
    *RESPONSE_FIELDS,
    ("decision_login", "0 or 1", 1.0),
    ("decision_cart_abandoned", "0 or 1", 1.0),
    ("decision_lapsing", "0 or 1", 1.0),
    ("time", "share of the horizon elapsed", 1.0),
    ("budget_left", "share of the incentive budget left", 1.0),
)
OBS_HIGH = 10.0


class Attribution(NamedTuple):
    """One decision whose attribution window closed: the delayed feedback a bandit learns from."""

    decision_id: int
    shopper: int
    action: int
    reward: float  # its scalarized objective over the window, times reward_scale
    cost: float  # incentive dollars booked on her over the window


class IncentiveTargetingEnv(gym.Env[NDArray[np.float32], np.int64]):
    """Target incentives one shopper at a time while the whole shop runs underneath.

    ## Description
    The full simulator runs: the population, the social graph, the warehouse and every
    mechanism of ``docs/MODEL.md``. Each step is one shopper at a decision point: she logged
    in, abandoned a cart, or is lapsing. Shoppers reaching decision points at the same moment
    are stepped through one after the other; then the clock moves on. Feedback is delayed, as
    in a real shop: an incentive's effect is known only when its attribution window closes.

    ## Action Space
    ``Discrete(n)``, one action per incentive of the scenario (0 is ``none``).
    ``action_masks()`` marks the incentives the current shopper may receive (eligibility rules,
    and only ``none`` once the incentive budget is spent), in sb3-contrib MaskablePPO's
    convention.

    ## Observation Space
    ``Box(0, 10, (38,), float32)``: the current shopper's observable state, each field divided
    by its scale and clipped to [0, 10]:

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
    | 8 | open_cart | dollars in the open cart | 100 |
    | 9 | last_delivery_late | 0 or 1 | 1 |
    | 10 | late_share | late deliveries / deliveries | 1 |
    | 11 | incentives_received | count | 10 |
    | 12-32 | response log | `RESPONSE_FIELDS` (sim.envs.common): channel, shares, offers | its own |
    | 33-35 | decision_login / _cart_abandoned / _lapsing | one-hot | 1 |
    | 36 | time | share of the horizon elapsed | 1 |
    | 37 | budget_left | share of the incentive budget left | 1 |

    ## Rewards
    The scalarized objective of every decision whose attribution window closed since the last
    step, times ``reward_scale``. A decision's window closes ``attribution_days`` later or at
    the shopper's next decision, whichever comes first (last-touch attribution: nothing is
    credited twice). Over the window, her objective vector is the change in
    (``OBJECTIVES``): ``margin`` (ledger net margin, dollars, incentives included), ``ltv``
    (realized discounted margin plus residual value from her true traits, dollars), ``load``
    (her late deliveries) and ``budget`` (incentive cost booked on her, dollars), each with
    what the friends she referred brought before their own first decision (their first order,
    their LTV at joining): a referral bonus is credited with the customers it caused, once,
    and the friends' later changes go to their own decisions. The reward
    is ``objective_weights`` (default margin only) dotted with it. ``attributed_feedback()``
    returns those decisions of the last step as :class:`Attribution` tuples (``decision_id``,
    ``shopper``, ``action``, ``reward``, ``cost``: incentive dollars booked on her over the
    window), so bandits can match feedback to their choices and budget pacing can learn what
    each incentive costs; ``info["attributed_count"]`` says how many there are (through a vector
    env: ``envs.call("attributed_feedback")``). At truncation every open window is closed.

    ## Logging for off-policy evaluation
    A policy that chooses stochastically may call ``record_propensity(p)`` before ``step``;
    the decision is then logged with its context (the observation), action and propensity,
    and ``bandit_feedback()`` returns the closed rounds in Open Bandit Pipeline's
    ``BanditFeedback`` layout (``n_rounds``, ``n_actions``, ``context``, ``action``,
    ``reward``, ``pscore``, ``position``).

    ## Episode End
    Truncated at ``horizon_days``; never terminated (the shop goes on). A small shop can reach
    no decision point before the horizon: ``reset()`` then returns the all-zero observation
    with ``info["decision_kind"] == "end"``, and the first step (any valid action; there is no
    shopper to give it to) ends the episode with reward 0 (no decision, nothing attributed)
    and the shop's totals in ``info["episode_metrics"]``.
    The last step's ``info["episode_metrics"]`` holds the episode's return ``r``, length ``l``
    and the shop's business totals (the numbers of ``sim.metrics.summarize``); every other step
    holds zeros of the same keys and types. It is not ``info["episode"]``, which gymnasium's
    ``RecordEpisodeStatistics`` and SB3's ``Monitor`` write themselves.

    ## Info
    The same keys with the same value types on every step, at reset and at the episode's end
    (no ``None``, no variable-length lists), so gymnasium's vector envs, SB3 and replay buffers
    (tianshou) batch them: ``attributed_count`` (int), ``decision_id`` (int: the id the next
    action's decision gets), ``decision_kind`` (str; ``"end"`` once the episode is over),
    ``shopper`` (int; -1 at the end), ``action_mask`` (bool array), ``objective`` (the
    episode's attributed objective vector so far, a dict over ``OBJECTIVES``), ``margin``,
    ``incentive_cost``, ``time_days`` and ``episode_metrics``. ``step_objective()`` returns the
    objective vector attributed in the last step.

    ## Arguments
    ``scenario`` (a shipped scenario's name, a YAML path or a Scenario; default ``"default"``),
    ``overrides`` (dotted scenario overrides, e.g. ``{"population.shoppers": 100000}``),
    ``horizon_days`` (90), ``attribution_days`` (14), ``incentive_budget`` (dollars, default
    unlimited), ``objective_weights`` (mapping over ``OBJECTIVES``, default ``{"margin": 1}``),
    ``decision_points`` (subset of login, cart_abandoned, lapsing; default the scenario's),
    ``reward_scale`` (0.01), ``render_mode`` (``"ansi"`` or None).

    ## Version History
    * v0: first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | Scenario = "default",
        overrides: dict[str, Any] | None = None,
        horizon_days: int = 90,
        attribution_days: float = 14.0,
        incentive_budget: float = float("inf"),
        decision_points: tuple[str, ...] | None = None,
        reward_scale: float = 0.01,
        objective_weights: dict[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        render_mode = check_common_arguments(horizon_days, incentive_budget, render_mode)
        if attribution_days <= 0:
            raise ValueError(f"attribution_days must be > 0, got {attribution_days}")
        self.scenario = env_scenario(scenario, overrides, decision_points)
        self.horizon_days = horizon_days
        self.attribution_hours = attribution_days * HOURS_PER_DAY
        self.incentive_budget = incentive_budget
        self.reward_scale = reward_scale
        self.objective_weights = weights_over_objectives(objective_weights, {"margin": 1.0})
        self.render_mode = render_mode
        self.n_actions = len(self.scenario.incentives)
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = spaces.Box(0.0, OBS_HIGH, (len(OBS_FIELDS),), np.float32)
        self._thresholds = np.asarray(self.scenario.loyalty.tier_thresholds)
        self._sim: Simulation | None = None
        self._metrics_zero: dict[str, Any] | None = None
        self._attributed: list[Attribution] = []
        self._step_objective = np.zeros(len(OBJECTIVES))
        self._batches = 0  # decision batches seen over every episode: names each for the oracle
        self._ended = False
        #: Episodes started by reset() so far (a planning oracle plans once per episode).
        self.episode_index = 0

    # ---- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Build a fresh simulation (all SimPy state) and move to the first decision point."""
        super().reset(seed=seed)
        self.episode_index += 1
        self._sim = new_simulation(self, self.scenario, self.horizon_days)
        # Each window: [closes_at, decision_id, shopper, action, margin_cents_then, still_open].
        self._windows: deque[list[Any]] = deque()
        self._open: dict[int, list[Any]] = {}  # shopper -> her open window
        # A referred friend's objective state at her own first decision: what her referrer's
        # decision earned through her (afterwards her own decisions' windows take her changes).
        self._friend_at_first_decision: dict[int, NDArray[np.float64]] = {}
        self._next_decision_id = 0
        self._episode_reward = 0.0
        self._objective_total = np.zeros(len(OBJECTIVES))
        self._pscore: float | None = None
        self._logged: dict[int, list[Any]] = {}  # decision_id -> [context, action, pscore, reward]
        self._order_margin = expected_order_margin(self.scenario, self._sim.pop)  # traits only
        self._episode_steps = 0
        self._batch: DecisionBatch | None = None
        self._attributed = []
        self._step_objective = np.zeros(len(OBJECTIVES))
        self._ended = False
        if self._metrics_zero is None:
            self._metrics_zero = metrics_template({"r": 0.0, "l": 0, **summarize(self._sim)})
        self._advance()
        return self._observe(), self._info()

    def step(self, action: np.int64 | int) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Give ``action`` to the current shopper, move to the next decision, collect closed feedback."""
        if self._sim is None or self._ended:
            raise RuntimeError("call reset() before step(), and again after the episode ends")
        incentive = check_action(action, self.action_space)
        self._step_objective = np.zeros(len(OBJECTIVES))
        if self._batch is None:  # an episode with no decision point: this step ends it
            return self._end_step([])
        shopper = int(self._batch.shoppers[self._position])
        if self._sim.pop.referred_by[shopper] >= 0 and shopper not in self._friend_at_first_decision:
            self._friend_at_first_decision[shopper] = self._own_states(np.array([shopper]))[0]
        self._actions[self._position] = incentive
        if self._pscore is not None:
            self._logged[self._next_decision_id] = [self._observe(), incentive, self._pscore, None]
            self._pscore = None
        state_now = self._objective_state(shopper)
        superseded = self._open.pop(shopper, None)
        attributed = [self._close(superseded, state_now)] if superseded is not None else []
        closes_at = self._sim.now_hours + self.attribution_hours
        window = [closes_at, self._next_decision_id, shopper, incentive, state_now, True]
        self._windows.append(window)
        self._open[shopper] = window
        self._next_decision_id += 1
        self._position += 1
        if self._position == self._batch.shoppers.size:
            self._sim.submit(self._actions)
            self._advance()
        if self._batch is None:
            return self._end_step(attributed)
        attributed += self._close_windows(self._sim.now_hours)
        return self._finish_step(attributed, truncated=False)

    def _end_step(
        self, attributed: list[Attribution]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """The step that reaches the horizon: every open window closes, the episode's totals are reported."""
        assert self._sim is not None
        self._ended = True
        return self._finish_step(attributed + self._close_windows(np.inf), truncated=True)

    def _finish_step(
        self, attributed: list[Attribution], truncated: bool
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        assert self._sim is not None
        reward = float(sum(a.reward for a in attributed))
        self._attributed = attributed
        self._episode_reward += reward
        self._episode_steps += 1
        info = self._info()
        if truncated:
            totals = {"r": self._episode_reward, "l": self._episode_steps}
            info["episode_metrics"] = conform_metrics(
                info["episode_metrics"], {**totals, **summarize(self._sim)}
            )
        return self._observe(), reward, False, truncated, info

    def attributed_feedback(self) -> list[Attribution]:
        """The decisions whose attribution window closed in the last step (none after reset)."""
        return list(self._attributed)

    def step_objective(self) -> NDArray[np.float64]:
        """The objective vector (``OBJECTIVES``) of the decisions attributed in the last step."""
        return self._step_objective.copy()

    def record_propensity(self, pscore: float) -> None:
        """Log the next step's decision with the probability the policy chose its action with."""
        if not 0.0 < pscore <= 1.0:
            raise ValueError(f"pscore must be in (0, 1], got {pscore}")
        self._pscore = float(pscore)

    def bandit_feedback(self) -> dict[str, Any]:
        """Logged decisions whose reward is known, in Open Bandit Pipeline's BanditFeedback layout."""
        rows = [row for row in self._logged.values() if row[3] is not None] if self._sim is not None else []
        return {
            "n_rounds": len(rows),
            "n_actions": self.n_actions,
            "context": np.array([r[0] for r in rows], dtype=np.float32).reshape(len(rows), len(OBS_FIELDS)),
            "action": np.array([r[1] for r in rows], dtype=np.int64),
            "reward": np.array([r[3] for r in rows], dtype=np.float64),
            "pscore": np.array([r[2] for r in rows], dtype=np.float64),
            "position": np.zeros(len(rows), dtype=np.int64),
        }

    def action_masks(self) -> NDArray[np.bool_]:
        """Incentives the current shopper may receive (eligibility and budget)."""
        mask: NDArray[np.bool_] = np.zeros(self.n_actions, dtype=np.bool_)
        mask[0] = True
        if self._sim is None or self._batch is None or self._budget_left() <= 0:
            return mask
        return _eligibility(self._sim, self._batch.shoppers[self._position : self._position + 1])[0]

    def render(self) -> str | None:
        """The shop's KPIs so far, as text."""
        if self.render_mode != "ansi" or self._sim is None:
            return None
        s = summarize(self._sim)
        return (
            f"day {self._sim.now_hours / HOURS_PER_DAY:6.1f}  shoppers {s['shoppers']:,}  "
            f"orders {s['orders']:,}  "
            f"margin ${s['margin']:,.0f}  incentives ${s['incentive_cost']:,.0f}  "
            f"late {s['late_delivery_share']:.1%}  peak util {s['peak_utilization']:.2f}"
        )

    def oracle_view(self) -> OracleView:
        """The truth about the shopper at the current decision, for ``kind: oracle`` only (never observed)."""
        sim, batch = self._sim, self._batch
        if sim is None or self._ended:
            raise RuntimeError("no decision is pending: reset() first, or the episode has ended")
        if batch is None:  # an episode with no decision point: a view of no shopper
            empty = np.zeros(0, dtype=np.int64)
            return oracle_view_of(
                sim, empty, empty.astype(np.int8), self.objective_weights, self.horizon_days
            )
        # The whole batch at once: its shoppers' states do not change until the batch is submitted.
        view = oracle_view_of(
            sim,
            batch.shoppers,
            np.full(batch.shoppers.size, DECISION_KINDS.index(batch.kind), dtype=np.int8),
            self.objective_weights,
            self.horizon_days,
        )
        return replace(view, row=self._position, batch=self._batches)

    # ---- the planning oracle's hooks (privileged: they read the true state) -------------------
    def plan_shape(self) -> tuple[int, int, int]:
        """A plan's (rows, columns, options): decision kinds x true uplift classes -> an option.

        Options ``0 .. n-1`` are incentives; option ``n`` (``n_actions``) is the one-step
        oracle's choice for that shopper, so a plan can keep the lookahead where it is right and
        overrule it where it is myopic.
        """
        return len(DECISION_KINDS), len(UPLIFT_CLASSES), self.n_actions + 1

    def plan_action(self, plan: NDArray[np.int64]) -> NDArray[np.int64]:
        """The current shopper's incentive under ``plan`` (``none`` where it is not allowed)."""
        if self._sim is None or self._batch is None:
            return np.asarray(0, dtype=np.int64)
        shoppers = self._batch.shoppers[self._position : self._position + 1]
        choice = int(self._planned(self._sim, plan, self._batch.kind, shoppers)[0])
        return np.asarray(choice if self.action_masks()[choice] else 0, dtype=np.int64)

    def rollout_plans(self, plans: NDArray[np.int64], replicates: int) -> NDArray[np.float64]:
        """Mean return on the shop's true objective of each plan, rolled out from this episode's start.

        ``plans[p, kind, class]`` is an option of :meth:`plan_shape`. Each rollout runs this
        episode's own population (the true state at day 0) through ``replicates`` futures drawn
        from fresh seeds, the same futures for every plan (common random numbers), and scores
        the whole shop's change in ``objective_weights @ OBJECTIVES`` (what the shop earns, not
        the attributed reward), times ``reward_scale``. Cost: ``plans x replicates`` episodes.
        """
        if self._sim is None or self._next_decision_id != 0:
            raise RuntimeError("rollout_plans plans from the start: call it right after reset()")
        plans = np.asarray(plans, dtype=np.int64)
        rows, columns, options = self.plan_shape()
        if plans.ndim != 3 or plans.shape[1:] != (rows, columns) or plans.min() < 0 or plans.max() >= options:
            raise ValueError(
                f"plans must be (plans, {rows}, {columns}) with options in [0, {options - 1}], "
                f"got shape {plans.shape}"
            )
        returns = np.zeros(len(plans))
        for r in range(replicates):
            for p, plan in enumerate(plans):
                sim = rollout_simulation(self._sim, r)
                start = shop_objective_state(sim, expected_order_margin(sim.scenario, sim.pop))
                sim.run(decide=partial(self._rollout_decide, sim, plan))
                end = shop_objective_state(sim, expected_order_margin(sim.scenario, sim.pop))
                returns[p] += float(self.objective_weights @ (end - start))
        return returns * self.reward_scale / replicates

    def _rollout_decide(
        self, sim: Simulation, plan: NDArray[np.int64], batch: DecisionBatch
    ) -> NDArray[np.int64]:
        """A rollout's incentives for a batch: the plan's, ``none`` for everyone once the budget is spent."""
        spent = sim.ledger.totals_cents()["incentive"] / 100.0
        if budget_left(spent, self.incentive_budget) <= 0:
            return np.zeros(batch.shoppers.size, dtype=np.int64)
        return self._planned(sim, plan, batch.kind, batch.shoppers)

    def _planned(
        self, sim: Simulation, plan: NDArray[np.int64], kind: str, shoppers: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Each shopper's option under ``plan``, the one-step oracle's choice resolved."""
        code = DECISION_KINDS.index(kind)
        choices = plan[code, sim.pop.uplift_class[shoppers]].astype(np.int64)
        ask = np.flatnonzero(choices == self.n_actions)
        if ask.size:
            rows = shoppers[ask]
            view = oracle_view_of(
                sim, rows, np.full(rows.size, code, dtype=np.int8), self.objective_weights, self.horizon_days
            )
            values = incentive_values(view, view.state, DECISION_KINDS[code])
            choices[ask] = best_allowed(values, _eligibility(sim, rows))
        return choices

    # ---- internals ----------------------------------------------------------------------------
    def _advance(self) -> None:
        """Run the clock to the next decision batch; the shop's totals only change here."""
        assert self._sim is not None
        self._batch = self._sim.next_decision()
        self._batches += 1  # names the batch for the oracle's cache
        self._position = 0
        self._totals = self._sim.ledger.totals_cents()
        if self._batch is not None:
            self._actions = np.zeros(self._batch.shoppers.size, dtype=np.int64)

    def _objective_state(self, shopper: int) -> NDArray[np.float64]:
        """The shopper's cumulative objective quantities now (see ``OBJECTIVES``), her referrals' included.

        A friend she referred counts with what she brought before her own first decision (her
        first order, her LTV at joining): the referral caused it, and it is credited once.
        """
        assert self._sim is not None
        pop = self._sim.pop
        own = self._own_states(np.array([shopper]))[0]
        friends = np.flatnonzero(pop.referred_by[: pop.size] == shopper)
        if friends.size == 0:
            return own
        frozen = self._friend_at_first_decision
        live = friends[[int(f) not in frozen for f in friends]]
        credit = self._own_states(live).sum(axis=0) if live.size else np.zeros(len(OBJECTIVES))
        for friend in friends.tolist():
            if friend in frozen:
                credit = credit + frozen[friend]
        return own + credit

    def _own_states(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Each row's own cumulative objective quantities now: ``(len(rows), len(OBJECTIVES))``."""
        assert self._sim is not None
        sim = self._sim
        if self._order_margin.size < sim.pop.size:  # referred shoppers joined: extend the cache
            self._order_margin = expected_order_margin(sim.scenario, sim.pop)
        residual = residual_value(sim.scenario, sim.pop, sim.now_hours, rows, self._order_margin[rows])
        lines = sim.ledger.lines[:, rows]
        margin_cents = lines[REVENUE] - lines[1:].sum(axis=0)
        return np.column_stack(
            [
                margin_cents / 100.0,
                sim.ledger.margin_pv[rows] + residual,
                sim.pop.late_deliveries[rows].astype(np.float64),
                lines[INCENTIVE] / 100.0,
            ]
        )

    def _close(self, window: list[Any], state: NDArray[np.float64]) -> Attribution:
        """Close one window at her current state."""
        _, decision_id, shopper, action, state_then, _ = window
        window[5] = False
        objective = state - state_then
        self._objective_total += objective
        self._step_objective += objective
        reward = float(self.objective_weights @ objective) * self.reward_scale
        if decision_id in self._logged:
            self._logged[decision_id][3] = reward
        return Attribution(decision_id, shopper, action, reward, float(objective[OBJECTIVES.index("budget")]))

    def _close_windows(self, now: float) -> list[Attribution]:
        """Close every window due by ``now`` (windows superseded earlier are skipped)."""
        assert self._sim is not None
        closed = []
        while self._windows and self._windows[0][0] <= now:
            window = self._windows.popleft()
            if window[5]:
                shopper = window[2]
                if self._open.get(shopper) is window:
                    del self._open[shopper]
                closed.append(self._close(window, self._objective_state(shopper)))
        return closed

    def _budget_left(self) -> float:
        return budget_left(self._totals["incentive"] / 100.0, self.incentive_budget)

    def _observe(self) -> NDArray[np.float32]:
        obs = np.zeros(len(OBS_FIELDS), dtype=np.float32)
        if self._sim is None or self._batch is None:
            return obs
        pop, now = self._sim.pop, self._sim.now_hours
        i = int(self._batch.shoppers[self._position])
        top = max(len(self._thresholds) - 1, 1)
        tier = pop.tier[i : i + 1]
        raw = [
            (now - pop.last_order_at[i]) / HOURS_PER_DAY,
            pop.orders[i],
            pop.monetary[i],
            (now - pop.acquired_at[i]) / HOURS_PER_DAY,
            pop.tier[i] / top,
            tier_progress(pop.qualifying_spend[i : i + 1], tier, self._thresholds)[0],
            pop.points[i],
            pop.streak_days[i],
            pop.cart_value[i],
            float(pop.last_delivery_late[i]),
            pop.late_deliveries[i] / max(pop.deliveries[i], 1),
            pop.incentives_received[i],
            *response_history(pop, np.array([i]))[0],
            *(float(self._batch.kind == kind) for kind in DECISION_KINDS),
            now / (self.horizon_days * HOURS_PER_DAY),
            self._budget_left(),
        ]
        scale = np.array([s for *_, s in OBS_FIELDS])
        obs[:] = np.clip(np.asarray(raw, dtype=np.float64) / scale, 0.0, OBS_HIGH)
        return obs

    def _info(self) -> dict[str, Any]:
        assert self._sim is not None and self._metrics_zero is not None
        return {
            "attributed_count": len(self._attributed),
            "decision_id": self._next_decision_id,
            # Type-stable for vector envs and replay buffers: "end" and -1 when no shopper is waiting.
            "decision_kind": "end" if self._batch is None else self._batch.kind,
            "shopper": -1 if self._batch is None else int(self._batch.shoppers[self._position]),
            "action_mask": self.action_masks(),
            "objective": dict(zip(OBJECTIVES, (float(v) for v in self._objective_total), strict=True)),
            "margin": float(self._totals["margin"]) / 100.0,
            "incentive_cost": float(self._totals["incentive"]) / 100.0,
            "time_days": float(self._sim.now_hours) / HOURS_PER_DAY,
            # Zeros (same keys and types) until the step that ends the episode: batchable.
            "episode_metrics": self._metrics_zero.copy(),
        }


def _eligibility(sim: Simulation, shoppers: NDArray[np.int64]) -> NDArray[np.bool_]:
    """``(shoppers, incentives)``: which incentives each shopper may receive (eligibility rules only)."""
    pop, n = sim.pop, len(sim.catalog)
    ids = np.tile(np.arange(n, dtype=np.int16), shoppers.size)
    allowed = sim.catalog.eligible(
        ids,
        np.repeat(pop.streak_days[shoppers], n),
        np.repeat(pop.tier[shoppers], n),
        sim.scenario.mechanisms.streaks.min_days,
        np.repeat(pop.orders[shoppers], n),
    )
    return np.asarray(allowed, dtype=np.bool_).reshape(shoppers.size, n)
