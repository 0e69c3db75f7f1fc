"""Journeys: independent shoppers, each on her own clock, stepped decision by decision.

Scenario: a batch of ``size`` rows, each one shopper's journey from her acquisition to her
churn or the horizon. A row lives her own days: at each day's start her membership
requalifies, streaks break, Pareto/NBD hazard accrues and she may be lapsing (a decision
point); then she may be acquired (day 0, with her trial order: her first session, where the
shop may welcome her at a login decision point), start a session (the login decision point),
fill a cart and check out or abandon it (the abandonment decision point).
Deliveries, returns, cart timers and referral payouts are her own timed events, handled in
time order before her next event. Rows wait at decision points; :meth:`JourneyBatch.advance`
runs every row that is not waiting until it waits or ends, vectorized over the rows on their
own days and times. Every rule is :class:`sim.shop.Shop`'s, the population engine's.

Where one shopper's world differs from the population engine:

* **Deliveries without a warehouse queue** (:func:`sim.fulfillment.unloaded_delivery_hours`):
  one shopper is no load, so her deliveries keep the promise.
* **Social proof from a constant neighbour signal** (``neighbour_signal``, recent neighbour
  purchases; about 1 in the default shop); the bestseller badge is scaled by the population
  mean of social susceptibility (the Beta mean).
* **No tier inflation**: no other shoppers fill the tiers, so a perk keeps its full worth.
* **Referred friends are not simulated**: a referral bonus makes her invite friends
  (:mod:`sim.mechanisms.referral`); each friend's first order is drawn (Gamma-Gamma, topped
  up) and her bonus is paid when it reaches the anti-fraud floor, the day after (abusers'
  fake accounts too). Each real friend who joins credits her with a referred shopper's expected
  worth (:class:`sim.oracle.FriendWorth`: first order and discounted future margin, to the
  horizon and as LTV): what the shop earns because of the referral, which the engine realizes.
* **Churn and win-back**: a churned shopper still reaches her lapsing decision, where an
  incentive may bring her back; her journey ends at churn unless such a point lies ahead
  within the horizon, and there if she is not won back.

Randomness: row ``i`` draws its traits from the generator handed to :meth:`reset_rows` and a
64-bit key from it; every later value is :func:`sim.rng.keyed_uniforms` of that key and her
day, so a row's trajectory is the same in a batch of one or of any size.

The module is a little over 600 lines: it is the journey clock whole (phases of a row's day,
the quiet-day look-ahead, her timed events, copies for rollouts), each part read in the order
a row meets it; its rules are all in :mod:`sim.shop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import special

from sim.behaviour import hours_from_uniform
from sim.economics import INCENTIVE, to_cents
from sim.fulfillment import RETURNS_ROUND_HOUR, next_round_hours, unloaded_delivery_hours
from sim.mechanisms.referral import accepted_invitations, fake_accounts
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.oracle import referred_friend_worth
from sim.params import DecisionKind, Scenario
from sim.population import (
    CHANNEL_ORGANIC,
    HOURS_PER_DAY,
    Population,
    draw_shoppers,
    draw_unlinked_shoppers,
    twin_population,
)
from sim.rng import keyed_uniform, keyed_uniforms
from sim.shop import DayDraws, Shop
from sim.twins import read_twins

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# Phases of a row's day. Rows in a WAITING phase hold a pending decision.
# WELCOME: the login decision of her first session, right after her trial order (no cart follows).
DAY_START, LAPSING, SESSION, LOGIN, CARTS, ABANDONED, DAY_END, DONE, WELCOME = range(9)
PHASES = 9
WAITING = (LAPSING, LOGIN, ABANDONED, WELCOME)
_MOVING = np.array([p not in (*WAITING, DONE) for p in range(PHASES)])
_IS_WAITING = np.array([p in WAITING for p in range(PHASES)])
#: The decision kind a row waits at, by phase.
PHASE_KIND: dict[int, DecisionKind] = {
    LAPSING: "lapsing",
    LOGIN: "login",
    ABANDONED: "cart_abandoned",
    WELCOME: "login",
}
# A row's timed events.
_DELIVERY, _RETURN, _PAYOUT, _CART_TIMER, _FRIEND = range(5)
# Purposes of a row-day's uniforms (rows of keyed_uniforms' output).
_PURPOSES = (
    "visit",
    "hour",
    "cart",
    "basket",
    "checkout",
    "cart_return",
    "reconsider",
    "churn",
    "category",
    "topup",
    "bestseller",
    "return",
    "transit",
    "winback",
    "surprise",
    "referral",
)
_U = {name: i for i, name in enumerate(_PURPOSES)}
_EVENT_SLOTS = 8
#: Days a quiet stretch is looked ahead in one vectorized step (a performance knob, not a rule).
_LOOKAHEAD_DAYS = 32


#: Per-row arrays of a journey's clock and bookkeeping (what :meth:`JourneyBatch.copy_rows` copies).
_ROW_STATE = (
    "keys",
    "customer",
    "day",
    "phase",
    "visit_at",
    "decision_at",
    "end_hours",
    "referral_cost",
    "friends_referred",
    "referred_margin",
    "referred_margin_pv",
    "referred_ltv",
    "_acquired",
    "_timer_badge",
    "_timer_u_return",
    "_timer_u_reconsider",
)


class JourneyBatch(Shop):
    """``size`` independent journeys on their own clocks, every rule the population engine's.

    Drive it: ``reset_rows(rows, generators)`` draws new shoppers into ``rows``;
    ``advance(rows)`` runs them to their next decision point or end; ``pending_kind`` and
    ``decision_time`` say where each waits; ``submit(rows, incentive_ids)`` gives the
    incentives there and :meth:`advance` goes on.
    """

    def __init__(
        self,
        scenario: Scenario,
        size: int,
        horizon_days: int,
        neighbour_signal: float = 1.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1 journeys, got {size}")
        placeholder = draw_unlinked_shoppers(scenario, size, CHANNEL_ORGANIC, np.random.default_rng(0))
        super().__init__(scenario, placeholder, horizon_days, "aggregates", 16 * size)
        susceptibility = scenario.population.social_susceptibility
        self._mean_susceptibility = susceptibility.a / (susceptibility.a + susceptibility.b)
        self.neighbour_signal = float(neighbour_signal)
        # No other shoppers: tier 0 holds everyone, no one fills the tiers above (no inflation).
        self._tier_share = np.zeros(len(self._tier_thresholds))
        self._tier_share[0] = 1.0
        self._winnable_kinds = (
            "lapsing" in self._decision_kinds and scenario.mechanisms.churn.winback_ceiling > 0
        )
        self.size = size
        self.horizon_hours = horizon_days * HOURS_PER_DAY
        self.keys = np.zeros(size, dtype=np.uint64)
        self.day = np.zeros(size, dtype=np.int64)
        self.phase = np.full(size, DONE, dtype=np.int8)
        self.visit_at = np.full(size, np.nan)
        self.decision_at = np.zeros(size)
        self.end_hours = np.zeros(size)
        self.referral_cost = np.zeros(size, dtype=np.int64)  # cents, also in the ledger's incentive line
        self.friends_referred = np.zeros(size, dtype=np.int64)
        #: Her friends' worth credited to her (dollars; friends are not simulated): their expected
        #: margin to the horizon, the same discounted to her acquisition, and as LTV (a whole
        #: life, discounted): sim.oracle.FriendWorth.
        self.referred_margin = np.zeros(size)
        self.referred_margin_pv = np.zeros(size)
        self.referred_ltv = np.zeros(size)
        self._friends = referred_friend_worth(scenario)
        self._friend_lifetime = float(self._friends.over(np.array([np.inf]))[0])
        self._abandoned = np.zeros(0, dtype=np.int64)  # carts abandoned at the current decision
        self._ev_due = np.full((size, _EVENT_SLOTS), np.inf)
        self._ev_kind = np.zeros((size, _EVENT_SLOTS), dtype=np.int8)
        self._ev_arg = np.zeros((size, _EVENT_SLOTS), dtype=np.int64)
        self._timer_badge = np.zeros(size, dtype=np.bool_)
        self._timer_u_return = np.zeros(size)
        self._timer_u_reconsider = np.zeros(size)
        self._u = np.zeros((len(_PURPOSES), size))
        self._day = DayDraws(
            u_cart=self._u[_U["cart"]],
            u_checkout=self._u[_U["checkout"]],
            u_cart_return=self._u[_U["cart_return"]],
            u_reconsider=self._u[_U["reconsider"]],
            u_churn=self._u[_U["churn"]],
            u_category=self._u[_U["category"]],
            u_topup=self._u[_U["topup"]],
            u_bestseller=self._u[_U["bestseller"]],
            u_return=self._u[_U["return"]],
            u_transit=self._u[_U["transit"]],
            u_winback=self._u[_U["winback"]],
            u_surprise=self._u[_U["surprise"]],
        )
        self._via_batch = True
        self._acquired = np.zeros(size, dtype=np.bool_)
        #: The real customers a twins scenario's journeys are (``population.twins``), else None.
        self.twins = None if scenario.population.twins is None else read_twins(scenario.population.twins)
        #: Each row's customer (an index into ``twins``; -1 without twins).
        self.customer = np.full(size, -1, dtype=np.int64)
        self._lapse_hours = scenario.sessions.lapse_after_days * HOURS_PER_DAY

    # ---- driving ----------------------------------------------------------------------------
    def reset_rows(
        self,
        rows: Sequence[int] | I64,
        generators: Sequence[np.random.Generator],
        customers: Sequence[int] | None = None,
    ) -> None:
        """Draw a new shopper into each row from its generator and run nothing yet (see :meth:`advance`).

        Each shopper is drawn exactly as the population engine draws one (``draw_shoppers``),
        acquired at a uniform time of day 0 (at its start when the scenario acquires none later).
        In a twins scenario row ``j`` is instead the real customer ``customers[j]`` (an index
        into :attr:`twins`): her posterior traits drawn from the generator and her history as
        her state at time 0, as the population engine starts her (``twin_population``).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if self.twins is not None and customers is None:
            raise ValueError("a twins scenario's journeys need customers: one index into the twins per row")
        for j, (row, rng) in enumerate(zip(rows.tolist(), generators, strict=True)):
            shopper = self._draw_one(rng, None if customers is None else int(customers[j]))
            self.pop.assign(np.array([row]), shopper)
            self.keys[row] = np.uint64(int(rng.integers(0, 2**63)))
            self.customer[row] = -1 if customers is None else int(customers[j])
        self.ledger.lines[:, rows] = 0
        self.ledger.margin_pv[rows] = 0.0
        self.day[rows] = 0
        self.phase[rows] = DAY_START
        self.visit_at[rows] = np.nan
        self.end_hours[rows] = 0.0
        self.referral_cost[rows] = 0
        self.friends_referred[rows] = 0
        self.referred_margin[rows] = 0.0
        self.referred_margin_pv[rows] = 0.0
        self.referred_ltv[rows] = 0.0
        self._acquired[rows] = self.twins is not None  # a twin joined before time 0: no trial order
        self._ev_due[rows] = np.inf

    def _draw_one(self, rng: np.random.Generator, customer: int | None) -> Population:
        """One shopper: a fresh draw from the scenario's population, or the twin of ``customer``."""
        scenario = self.scenario
        if customer is not None:
            assert self.twins is not None
            if not 0 <= customer < self.twins.size:
                raise ValueError(f"customer {customer} not in the twins file's {self.twins.size} customers")
            # A journey has no social graph (a constant neighbour signal): the graph's draw is thrown away.
            twin = twin_population(
                scenario, self.twins.take(np.array([customer])), rng, np.random.default_rng(0)
            )
            twin.community = np.zeros(1, dtype=np.int32)
            twin.neighbours = np.zeros((1, 0), dtype=np.int32)
            return twin
        acquired_at = (
            rng.random(1) * HOURS_PER_DAY if scenario.population.acquisition_days > 0 else np.zeros(1)
        )
        return draw_shoppers(
            scenario,
            acquired_at,
            np.zeros(1, dtype=np.int32),
            np.zeros((1, 0), dtype=np.int32),
            CHANNEL_ORGANIC,
            rng,
        )

    def copy_rows(self, source: JourneyBatch, row: int) -> None:
        """Make every row a copy of ``source``'s ``row`` as she is now, her orders in flight included.

        Rollouts start here (:meth:`sim.envs.journey.JourneyTask.rollout_values`): the copies
        then part ways by :meth:`rekey` and by the incentives they are given.
        """
        everyone = np.arange(self.size)
        for name, value in vars(self.pop).items():
            if isinstance(value, np.ndarray):
                value[everyone] = getattr(source.pop, name)[row]
        self.ledger.lines[:] = source.ledger.lines[:, [row]]
        self.ledger.margin_pv[:] = source.ledger.margin_pv[row]
        for name in _ROW_STATE:
            getattr(self, name)[:] = getattr(source, name)[row]
        self._u[:] = source._u[:, [row]]
        self._next_cart_id = source._next_cart_id  # her open cart's id stays hers alone
        self._streak_bonus_given = source._streak_bonus_given
        while self._ev_due.shape[1] < source._ev_due.shape[1]:
            self._grow_slots()
        slots = source._ev_due.shape[1]
        self._ev_due[:, :slots] = source._ev_due[row]
        self._ev_kind[:, :slots] = source._ev_kind[row]
        self._ev_arg[:, :slots] = source._ev_arg[row]
        in_flight = np.flatnonzero(
            ~np.isinf(source._ev_due[row]) & np.isin(source._ev_kind[row], (_DELIVERY, _RETURN))
        )
        if in_flight.size:  # each copy gets its own copy of her orders in flight
            old_ids = source._ev_arg[row, in_flight]
            values = {
                name: np.tile(column[old_ids], self.size) for name, column in source.orders.cols.items()
            }
            values["shopper"] = np.repeat(everyone, in_flight.size)
            new_ids = self.orders.add(**values).reshape(self.size, in_flight.size)
            self._ev_arg[:, in_flight] = new_ids

    def futures(
        self,
        row: int,
        incentives: NDArray[np.integer],
        keys: NDArray[np.uint64],
        continuation: Callable[[JourneyBatch, I64], NDArray[np.integer]],
    ) -> JourneyBatch:
        """Her futures from her pending decision: one per incentive and key, each run to its end.

        Row ``row`` is copied into ``len(incentives) x len(keys)`` rows (incentive-major); each
        copy draws the rest of her life from its key (the same keys for every incentive: common
        random numbers), gets its incentive now and ``continuation``'s at every later decision.
        """
        copies = JourneyBatch(
            self.scenario, len(incentives) * len(keys), self.horizon_days, self.neighbour_signal
        )
        copies.copy_rows(self, row)
        everyone = np.arange(copies.size)
        copies.rekey(everyone, np.tile(np.asarray(keys, dtype=np.uint64), len(incentives)))
        copies.submit(everyone, np.repeat(np.asarray(incentives, dtype=np.int64), len(keys)))
        copies.advance(everyone)
        while (waiting := everyone[copies.phase != DONE]).size:
            copies.submit(waiting, np.asarray(continuation(copies, waiting)))
            copies.advance(waiting)
        return copies

    def rekey(self, rows: I64, keys: NDArray[np.uint64]) -> None:
        """Draw the rest of these rows' lives from new keys, from their current moment on.

        A counterfactual replicate: the values of today's events still ahead are drawn again.
        """
        self.keys[rows] = keys
        self._draw(rows)

    def advance(self, rows: I64 | None = None) -> None:
        """Run ``rows`` (default all) until each waits at a decision point or has ended."""
        rows = np.arange(self.size) if rows is None else np.asarray(rows, dtype=np.int64)
        phase = self.phase
        while True:
            rows = rows[_MOVING[phase[rows]]]
            if rows.size == 0:
                return
            for step, handler in (
                (DAY_END, self._end_day),
                (DAY_START, self._start_day),
                (SESSION, self._session),
                (CARTS, self._carts),
            ):
                group = rows[phase[rows] == step]
                if group.size:
                    handler(group)

    def pending_kind(self, row: int) -> DecisionKind | None:
        """The decision kind ``row`` waits at (None once her journey has ended)."""
        return PHASE_KIND.get(int(self.phase[row]))

    def submit(self, rows: I64, incentive_ids: NDArray[np.integer]) -> NDArray[np.int16]:
        """Give one incentive id per waiting row at its decision point; returns the ids given."""
        ids = self.catalog.validate(np.asarray(incentive_ids), rows.size)
        given = np.zeros(rows.size, dtype=np.int16)
        phase = self.phase[rows]
        if not _IS_WAITING[phase].all():
            raise RuntimeError("submit() needs rows waiting at a decision point: advance() them first")
        for waiting, kind in PHASE_KIND.items():
            at = phase == waiting
            if at.any():
                given[at] = self._apply_decision(kind, rows[at], ids[at], self.decision_at[rows[at]])
        self._resume(rows, phase)
        return given

    def now_hours(self, rows: I64) -> F64:
        """Each row's current time: her pending decision's, or her end."""
        return np.where(self.phase[rows] == DONE, self.end_hours[rows], self.decision_at[rows])

    def margin_cents(self, rows: I64) -> I64:
        """Net margin so far of each row, in cents."""
        return np.asarray(self.ledger.margin_cents()[rows], dtype=np.int64)

    # ---- what the journey world supplies to the rules -------------------------------------------
    def _neighbour_signal(self, shoppers: I64) -> F64:
        return np.full(shoppers.size, self.neighbour_signal)

    def _basket_gamma(self, shoppers: I64) -> F64:
        return np.asarray(
            special.gammaincinv(self.pop.spend_p, self._u[_U["basket"], shoppers]), dtype=np.float64
        )

    def _dispatch(self, order_ids: I64) -> None:
        cols = self.orders.cols
        due = unloaded_delivery_hours(
            self.scenario, cols["placed_at"][order_ids], self._via_batch, cols["u_transit"][order_ids]
        )
        self._schedule(cols["shopper"][order_ids], due, _DELIVERY, order_ids)

    def _invite(self, referrers: I64, offers: NDArray[np.int16], at: F64) -> None:
        """She invites friends; each friend's first order, drawn now, pays her bonus the day after."""
        params, spend = self.scenario.mechanisms.referral, self.scenario.population.spend
        for row, offer, when in zip(referrers.tolist(), offers.tolist(), at.tolist(), strict=True):
            rng = np.random.default_rng(
                [int(self.keys[row]), int(self.day[row]), int(self.pop.invites_sent[row])]
            )
            invited, friends = accepted_invitations(
                self.pop.referral_propensity[[row]],
                params.max_invites - self.pop.invites_sent[[row]].astype(np.int64),
                params.accept_rate,
                rng,
            )
            self.pop.invites_sent[row] += int(invited[0])
            floor = self.catalog.min_basket[[offer]]
            fakes = int(
                fake_accounts(
                    self.pop.abuser[[row]], floor, params.fake_order_value, params.abuser_fake_accounts
                )[0]
            )
            count = int(friends[0]) + fakes
            if count == 0:
                continue
            self.friends_referred[row] += int(friends[0])
            ship, topup = self.scenario.shipping, self.scenario.mechanisms.shipping_threshold
            nu = rng.gamma(spend.q, 1.0 / spend.gamma, int(friends[0]))
            drawn = (
                rng.standard_gamma(self.pop.spend_p, int(friends[0])) / nu * self.scenario.catalog.price_index
            )
            baskets = topped_up_basket(
                drawn,
                rng.random(int(friends[0])),
                ship.fee,
                ship.free_threshold,
                topup.topup_prob,
                topup.max_gap_fee_multiple,
                topup.overshoot_max,
            )
            baskets = np.concatenate([baskets, np.full(fakes, params.fake_order_value)])
            joins = (np.floor(when / HOURS_PER_DAY) + 1.0 + rng.random(count)) * HOURS_PER_DAY
            paid = joins[baskets >= floor[0]]
            cents = int(to_cents(self.catalog.value[offer]))
            self._schedule(np.full(paid.size, row, dtype=np.int64), paid, _PAYOUT, np.full(paid.size, cents))
            real = joins[: int(friends[0])]  # fake accounts bring no one
            self._schedule(np.full(real.size, row, dtype=np.int64), real, _FRIEND, np.zeros(real.size))

    # ---- a row's day --------------------------------------------------------------------------
    def _draw(self, rows: I64) -> None:
        """The rows' uniforms of their current day."""
        self._u[:, rows] = keyed_uniforms(self.keys[rows], self.day[rows], len(_PURPOSES))

    def _end_day(self, rows: I64) -> None:
        self.day[rows] += 1
        over = self.day[rows] >= self.horizon_days
        if over.any():
            ended = rows[over]
            self._fire_due(ended, np.full(ended.size, self.horizon_hours), inclusive=False)
            self._finish(ended, np.full(ended.size, self.horizon_hours))
        self.phase[rows[~over]] = DAY_START

    def _skip_quiet_days(self, rows: I64) -> None:
        """Move rows over the days ahead on which nothing happens to them, in one vectorized step.

        A day is quiet when she neither visits nor churns at its start, and nothing else can
        happen: no streak to break, no timed event, no lapse, no membership boundary before it.
        Each day's visit is decided by :meth:`Shop._visit_probability` on her state that day
        (frustration faded) with that day's own keyed uniform, and her hazard grows by
        :meth:`Shop._hazard_per_day`, so the stretch is what day-by-day steps would give.
        """
        pop, mech = self.pop, self.scenario.mechanisms
        day = self.day[rows]
        steady = (day >= 1) & (pop.streak_days[rows] == 0)
        rows, day = rows[steady], day[steady]
        if rows.size == 0:
            return
        lapse_day = np.where(pop.lapsing_flagged[rows], self.horizon_days, self._lapse_day(rows))
        limit = np.minimum.reduce(
            [
                lapse_day,
                np.floor(self._ev_due[rows].min(axis=1) / HOURS_PER_DAY),
                np.ceil(pop.requalify_at[rows] / HOURS_PER_DAY),
                np.full(rows.size, self.horizon_days - 1.0),
                day + float(_LOOKAHEAD_DAYS),
            ]
        )
        span = limit.astype(np.int64) - day
        ahead = span > 0
        rows, day, span = rows[ahead], day[ahead], span[ahead]
        if rows.size == 0:
            return
        width = int(span.max())
        offsets = np.arange(width)
        repeated = np.repeat(rows, width)
        days = (day[:, None] + offsets[None, :]).ravel()
        elapsed = np.tile(offsets + 1.0, rows.size)  # day starts from hers through that day's
        fading = mech.streaks.break_penalty > 0
        decay = 0.5 ** (1.0 / mech.streaks.frustration_half_life_days)
        frustration = pop.frustration[repeated] * decay**elapsed if fading else None
        probability = self._visit_probability(repeated, days * HOURS_PER_DAY, frustration)
        u = keyed_uniform(self.keys[repeated], days, len(_PURPOSES), _U["visit"])
        alive = pop.alive[repeated]
        loud = alive & (u < probability)
        pareto = self.scenario.population.attrition == "pareto_nbd"
        if pareto:
            rate = self._hazard_per_day(rows)
            loud |= alive & (
                pop.hazard[repeated] + np.repeat(rate, width) * elapsed >= pop.lifetime_budget[repeated]
            )
        loud = np.column_stack([loud.reshape(rows.size, width), np.ones(rows.size, dtype=np.bool_)])
        loud[:, :width] |= offsets[None, :] >= span[:, None]
        quiet_days = loud.argmax(axis=1)  # the first loud day (the span's end counts as loud)
        moving = quiet_days > 0
        rows, quiet_days = rows[moving], quiet_days[moving]
        self.day[rows] += quiet_days
        if fading:
            pop.frustration[rows] *= decay**quiet_days
        if pareto:
            grows = pop.alive[rows]
            pop.hazard[rows[grows]] += rate[moving][grows] * quiet_days[grows]

    def _start_day(self, rows: I64) -> None:
        """The day's start: events due before it, membership, streaks, attrition, lapsing, the visit draw."""
        self._skip_quiet_days(rows)
        pop, day = self.pop, self.day[rows]
        start = (day * HOURS_PER_DAY).astype(np.float64)
        self._fire_due(rows, start.astype(np.float64), inclusive=False)
        self._draw(rows)
        self._requalify(rows, start)
        self._streak_breaks(day, rows)
        if self.scenario.population.attrition == "pareto_nbd":
            accruing = pop.alive[rows] & (pop.acquired_at[rows] < start)
            if accruing.any():
                self._accrue_hazard(rows[accruing], start[accruing])
        u = self._u[:, rows]
        visits = pop.alive[rows] & (u[_U["visit"]] < self._visit_probability(rows, start))
        at = start + hours_from_uniform(u[_U["hour"]], self._hour_cdf)
        self.visit_at[rows] = np.where(visits & (at > pop.acquired_at[rows]), at, np.nan)
        self._end_if_lost(rows)
        going = rows[self.phase[rows] != DONE]
        lapsing = self._lapsing_now(going, self.day[going] * HOURS_PER_DAY)
        self.phase[going] = SESSION
        if lapsing.size and "lapsing" in self._decision_kinds:
            self.phase[lapsing] = LAPSING
            self.decision_at[lapsing] = self.day[lapsing] * HOURS_PER_DAY

    def _session(self, rows: I64) -> None:
        """Acquisition (day 0: her trial order is her first session, a login decision) and the day's visit."""
        pop = self.pop
        new = rows[~self._acquired[rows]]
        if new.size:
            self._acquired[new] = True
            trial = self._acquire(new)
            self._end_if_lost(new)
            if "login" in self._decision_kinds:  # her trial order is her first session
                welcomed = trial[self.phase[trial] != DONE]
                self.phase[welcomed] = WELCOME
                self.decision_at[welcomed] = pop.acquired_at[welcomed]
            rows = rows[self.phase[rows] == SESSION]
            if rows.size == 0:
                return
        at = self.visit_at[rows]
        visiting = ~np.isnan(at)
        self.phase[rows[~visiting]] = DAY_END
        rows, at = rows[visiting], at[visiting]
        if rows.size == 0:
            return
        self._fire_due(rows, at, inclusive=True)
        going = self.phase[rows] != DONE
        rows, at = rows[going], at[going]
        alive = pop.alive[rows]
        self.phase[rows[~alive]] = DAY_END  # churned before her session, a win-back point ahead
        rows, at = rows[alive], at[alive]
        if rows.size == 0:
            return
        self._visit(rows, at)
        if "login" in self._decision_kinds:
            self.phase[rows] = LOGIN
            self.decision_at[rows] = at
        else:
            self.phase[rows] = CARTS

    def _carts(self, rows: I64) -> None:
        """After the login decision: a cart, its checkout or abandonment (a decision point)."""
        self.phase[rows] = DAY_END
        alive = self.pop.alive[rows]  # a contact may have driven a sleeping dog away
        self._end_if_lost(rows[~alive])
        rows = rows[alive]
        if rows.size == 0:
            return
        at = self.visit_at[rows]
        self._via_batch = True
        ids, times, cart_ids, badge = self._fill_carts(rows, at)
        self._end_if_lost(rows)
        if ids.size == 0:
            return
        batch = self.scenario.engine.session_batch_hours
        wake = (np.floor(times / batch) + 1.0) * batch + self.scenario.sessions.cart_recovery_hours
        self._timer_badge[ids] = badge
        self._timer_u_return[ids] = self._u[_U["cart_return"], ids]
        self._timer_u_reconsider[ids] = self._u[_U["reconsider"], ids]
        self._schedule(ids, wake, _CART_TIMER, cart_ids)
        if "cart_abandoned" in self._decision_kinds:
            waiting = ids[self.phase[ids] != DONE]
            self.phase[waiting] = ABANDONED
            self.decision_at[waiting] = self.visit_at[waiting]

    def _resume(self, rows: I64, phase: NDArray[np.int8]) -> None:
        """After a decision: the lapsing shopper not won back ends; others go on with their day."""
        self.phase[rows[phase == LOGIN]] = CARTS
        self.phase[rows[phase == WELCOME]] = SESSION  # welcomed: the rest of her first day
        self.phase[rows[phase == ABANDONED]] = DAY_END
        self._end_if_lost(rows[phase == ABANDONED])
        lapsing = rows[phase == LAPSING]
        self.phase[lapsing] = SESSION
        if lapsing.size:
            dead = lapsing[~self.pop.alive[lapsing]]
            self._finish(dead, self.day[dead] * HOURS_PER_DAY, settle=True)

    # ---- her timed events ---------------------------------------------------------------------
    def _schedule(self, rows: I64, due: F64, kind: int, arg: I64) -> None:
        """Add one timed event per entry (rows may repeat), each in a free slot of its row."""
        order = np.argsort(rows, kind="stable")
        rows, due, arg = rows[order], due[order], np.asarray(arg)[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")  # k-th event of its row
        for k in range(int(rank.max()) + 1 if rows.size else 0):  # one round per event of a row
            these = rank == k
            r = rows[these]
            free = np.isinf(self._ev_due[r])
            if not free.any(axis=1).all():
                self._grow_slots()
                free = np.isinf(self._ev_due[r])
            slot = free.argmax(axis=1)
            self._ev_due[r, slot] = due[these]
            self._ev_kind[r, slot] = kind
            self._ev_arg[r, slot] = arg[these]

    def _grow_slots(self) -> None:
        extra = self._ev_due.shape[1]
        self._ev_due = np.concatenate([self._ev_due, np.full((self.size, extra), np.inf)], axis=1)
        self._ev_kind = np.concatenate([self._ev_kind, np.zeros((self.size, extra), np.int8)], axis=1)
        self._ev_arg = np.concatenate([self._ev_arg, np.zeros((self.size, extra), np.int64)], axis=1)

    def _fire_due(self, rows: I64, until: F64, inclusive: bool, settling: bool = False) -> None:
        """Handle the rows' events due before ``until`` (or at it, ``inclusive``), in time order.

        ``settling``: the rows' journeys are ending (:meth:`_finish`); no end is checked again.
        """
        while rows.size:
            due = self._ev_due[rows]
            slot = due.argmin(axis=1)
            first = due[np.arange(rows.size), slot]
            ready = first <= until if inclusive else first < until
            if not ready.any():
                return
            rows, until, slot, first = rows[ready], until[ready], slot[ready], first[ready]
            kind, arg = self._ev_kind[rows, slot], self._ev_arg[rows, slot]
            self._ev_due[rows, slot] = np.inf
            alive_or_pending = self.phase[rows] != DONE
            for code, handler in (
                (_DELIVERY, self._on_delivery),
                (_RETURN, self._on_return),
                (_PAYOUT, self._on_payout),
                (_CART_TIMER, self._on_cart_timer),
                (_FRIEND, self._on_friend),
            ):
                these = (kind == code) & alive_or_pending
                if these.any():
                    handler(rows[these], arg[these], first[these])
            if settling:
                continue
            self._end_if_lost(rows)
            going = self.phase[rows] != DONE
            rows, until = rows[going], until[going]

    def _on_delivery(self, rows: I64, order_ids: I64, now: F64) -> None:
        returned = self._delivered(order_ids, now)
        if returned.any():
            back = now[returned] + self.scenario.returns.delay_days * HOURS_PER_DAY
            self._schedule(
                rows[returned], next_round_hours(back, RETURNS_ROUND_HOUR), _RETURN, order_ids[returned]
            )

    def _on_return(self, rows: I64, order_ids: I64, now: F64) -> None:
        self._returned(order_ids, now)

    def _on_payout(self, rows: I64, cents: I64, now: F64) -> None:
        self.ledger.book(INCENTIVE, rows, cents, now)
        np.add.at(self.referral_cost, rows, cents)
        self.referral_cost_cents += int(cents.sum())

    def _on_friend(self, rows: I64, _: I64, now: F64) -> None:
        """A friend she referred joins: her expected worth to the horizon, and as LTV, is credited."""
        left = (self.horizon_hours - now) / HOURS_PER_DAY
        to_horizon, discount = self._friends.over(left), self.ledger.discount(rows, now)
        np.add.at(self.referred_margin, rows, to_horizon)
        np.add.at(self.referred_margin_pv, rows, to_horizon * discount)
        np.add.at(self.referred_ltv, rows, self._friend_lifetime * discount)

    def _on_cart_timer(self, rows: I64, cart_ids: I64, now: F64) -> None:
        self._via_batch = False  # a recovered cart's order reaches the warehouse at once
        self._cart_return(
            rows,
            cart_ids,
            self._timer_badge[rows],
            self._timer_u_return[rows],
            self._timer_u_reconsider[rows],
            now,
        )
        self._via_batch = True

    # ---- ends -----------------------------------------------------------------------------------
    def _end_if_lost(self, rows: I64) -> None:
        """Rows that churned and can reach no win-back point end at their churn."""
        pop = self.pop
        lost = rows[~pop.alive[rows] & (self.phase[rows] != DONE)]
        if lost.size == 0:
            return
        if self._winnable_kinds:
            winnable = ~pop.lapsing_flagged[lost] & (self._lapse_day(lost) < self.horizon_days)
            lost = lost[~winnable]
        self._finish(lost, pop.churned_at[lost], settle=True)

    def _lapse_day(self, rows: I64) -> F64:
        """The day at whose start each row's recency crosses the lapse threshold (unflagged)."""
        return np.ceil((self.pop.last_order_at[rows] + self._lapse_hours) / HOURS_PER_DAY)

    def _finish(self, rows: I64, at: F64, settle: bool = False) -> None:
        """End the rows' journeys at ``at``; ``settle``: a relationship ended before the horizon.

        She is gone, but what is in flight still happens, as in the population engine: her
        parcels arrive and come back, referral bonuses are paid and her friends join, up to the
        horizon. An open cart dies with her.
        """
        if settle and rows.size:
            timers = self._ev_kind[rows] == _CART_TIMER
            self._ev_due[rows] = np.where(timers, np.inf, self._ev_due[rows])
            self._fire_due(rows, np.full(rows.size, self.horizon_hours), inclusive=False, settling=True)
        self.phase[rows] = DONE
        self.end_hours[rows] = at
        if self.orders.size > 64 * self.size + 4096:
            self._recycle_orders()

    def _recycle_orders(self) -> None:
        """Keep only orders still in transit or on their way back (finished journeys drop theirs)."""
        live = ~np.isinf(self._ev_due) & np.isin(self._ev_kind, (_DELIVERY, _RETURN))
        live &= (self.phase != DONE)[:, None]
        old_to_new = self.orders.keep(np.unique(self._ev_arg[live]))
        self._ev_arg[live] = old_to_new[self._ev_arg[live]]
        self._ev_due[~live & np.isin(self._ev_kind, (_DELIVERY, _RETURN))] = np.inf
