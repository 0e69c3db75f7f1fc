"""Attrition: membership periods, streak breaks, Pareto/NBD hazard, churn and lapsing."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.mechanisms.churn import experience_multiplier
from sim.mechanisms.dark_patterns import distrust_multiplier
from sim.mechanisms.habit import habit_multiplier
from sim.mechanisms.streaks import loss_weight, streak_after_miss
from sim.mechanisms.tiers import (
    perk_dropout_relief,
    tier_of,
)
from sim.population import CHANNEL_REFERRED, HOURS_PER_DAY, INCENTIVE_FAMILIES, add_counts
from sim.shop.state import ShopState, Times, _at, _first

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_STREAK_FAMILY = INCENTIVE_FAMILIES.index("streak")


class Attrition(ShopState):
    """Attrition: membership periods, streak breaks, Pareto/NBD hazard, churn and lapsing."""

    def _requalify(self, rows: slice | I64, now: Times) -> None:
        """Shoppers whose membership period ended keep the tier their period's spend earned."""
        pop = self.pop
        is_due = pop.requalify_at[rows] <= now
        due = np.flatnonzero(is_due) + (rows.start or 0) if isinstance(rows, slice) else rows[is_due]
        if due.size == 0:
            return
        earned = tier_of(pop.qualifying_spend[due], self._tier_thresholds)
        self.daily.add("downgrades", _first(now), float((earned < pop.tier[due]).sum()))
        pop.tier[due] = earned
        pop.qualifying_spend[due] = 0.0
        pop.qualifying_tier[due] = 0
        pop.requalify_at[due] += self.scenario.mechanisms.tiers.membership_days * HOURS_PER_DAY

    def _streak_breaks(self, day: int | I64, rows: slice | I64) -> None:
        """Apply the missed-day rule to streaks broken yesterday; frustration fades."""
        pop, mech = self.pop, self.scenario.mechanisms
        streaks, prospect = mech.streaks, mech.prospect
        if streaks.break_penalty > 0:
            pop.frustration[rows] *= 0.5 ** (1.0 / streaks.frustration_half_life_days)
        row_ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        is_missed = (pop.streak_days[rows] > 0) & (pop.last_visit_day[rows] < day - 1)
        missed = row_ids[is_missed]
        if missed.size == 0:
            return
        frozen = pop.streak_freezes[missed] > 0
        pop.streak_freezes[missed[frozen]] -= 1
        add_counts(pop.offers_redeemed, missed[frozen], np.full(int(frozen.sum()), _STREAK_FAMILY))
        broken = missed[~frozen]
        before = pop.streak_days[broken]
        after = streak_after_miss(before, streaks.missed_day_rule, streaks.decay_keep)
        pop.streak_days[broken] = after
        lost = np.where(before >= streaks.min_days, before - after, 0)  # a shown streak was lost
        added = (
            streaks.break_penalty
            * pop.streak_sensitivity[broken]
            * loss_weight(
                lost.astype(np.float64),
                streaks.cap_days,
                1,
                pop.loss_aversion[broken],
                prospect.alpha,
                prospect.beta,
            )
        )
        pop.frustration[broken] += added
        if self.scenario.population.attrition == "pareto_nbd":  # checked by the day's attrition
            pop.hazard[broken] += self.scenario.mechanisms.churn.frustration_weight * added
        # The streak, kept or shortened, carries on from here.
        pop.last_visit_day[missed] = day - 1 if np.ndim(day) == 0 else np.asarray(day)[is_missed] - 1

    def _accrue_hazard(self, rows: I64, start: Times) -> None:
        """Pareto/NBD: add a day's experience-moved hazard to alive ``rows``; churn at the budget."""
        self.pop.hazard[rows] += self._hazard_per_day(rows)
        self.end_lives(rows, start)

    def _hazard_per_day(self, rows: I64) -> F64:
        """Pareto/NBD: each row's hazard per day now, moved by her experience and her tier's perks."""
        pop, churn = self.pop, self.scenario.mechanisms.churn
        tiers = self.scenario.mechanisms.tiers
        relief = perk_dropout_relief(
            pop.tier[rows],
            self._tier_share,
            len(self._tier_thresholds) - 1,
            tiers.perk_dropout_relief,
            tiers.inflation,
        )
        multiplier = experience_multiplier(
            pop.last_delivery_late[rows],
            pop.deliveries[rows] > 0,
            pop.frustration[rows],
            churn.late_dropout_multiplier,
            churn.on_time_relief,
            0.0,  # a lost streak adds its hazard once, when it is lost (_streak_breaks)
        )
        multiplier = multiplier * self._trust_and_habit(rows)
        return np.asarray(pop.dropout_rate_per_day[rows] * multiplier * (1.0 - relief), dtype=np.float64)

    def _trust_and_habit(self, rows: I64) -> F64:
        """How lost trust and a habit not yet formed scale each row's attrition.

        Habit forms over the repeat orders of a new customer (a trial order seen, or a referred
        friend); an established base observed from its acquisition has formed it already.
        """
        pop, mech = self.pop, self.scenario.mechanisms
        factor = distrust_multiplier(pop.trust[rows], mech.dark_patterns.distrust_attrition)
        if mech.habit.early_attrition > 0:
            habit = habit_multiplier(pop.orders[rows], mech.habit.early_attrition, mech.habit.habit_orders)
            if not self.scenario.population.first_order_at_acquisition:
                habit = np.where(pop.channel[rows] == CHANNEL_REFERRED, habit, 1.0)
            factor = factor * habit
        return factor

    def end_lives(self, shoppers: I64, now: Times) -> None:
        """Churn the alive ``shoppers`` whose accumulated hazard has reached their lifetime budget."""
        pop = self.pop
        ending = pop.alive[shoppers] & (pop.hazard[shoppers] >= pop.lifetime_budget[shoppers])
        gone = shoppers[ending]
        if gone.size:
            gone, first = np.unique(gone, return_index=True)
            when = _at(_at(now, ending), first)
            pop.alive[gone] = False
            pop.churned_at[gone] = when
            self.log.record("churn", when, gone)
            self.daily.add("churned", _first(when), gone.size)

    def _lapsing_now(self, rows: I64, now: Times) -> I64:
        """Rows whose recency has just crossed the lapse threshold: flagged, logged and returned."""
        pop = self.pop
        threshold = self.scenario.sessions.lapse_after_days * HOURS_PER_DAY
        is_lapsing = (now - pop.last_order_at[rows] >= threshold) & ~pop.lapsing_flagged[rows]
        ids = rows[is_lapsing]
        if ids.size:
            pop.lapsing_flagged[ids] = True
            self.log.record("lapsing", _at(now, is_lapsing), ids)
        return ids
