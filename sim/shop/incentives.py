"""Incentives at decision points: given, refused, acted on at once, contacts and win-backs."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.incentives import KIND_CODES
from sim.mechanisms.churn import (
    lump_hazard,
    winback_probability,
)
from sim.params import ChurnParams, DecisionKind
from sim.population import add_counts
from sim.shop.sessions import Sessions

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def contact_churn_now(contact_churn: F64, contacts: NDArray[np.int32], params: ChurnParams) -> F64:
    """A proactive contact's chance of ending her relationship now, saturated by earlier contacts."""
    return np.asarray(
        contact_churn * params.contact_saturation ** contacts.astype(np.float64), dtype=np.float64
    )


class Incentives(Sessions):
    """Incentives at decision points: given, refused, acted on at once, contacts and win-backs."""

    def _apply_decision(
        self, kind: DecisionKind, shoppers: I64, incentive_ids: NDArray[np.int16], at: F64
    ) -> NDArray[np.int16]:
        """Give the incentives chosen at a decision point; a lapsing shopper reached may come back.

        ``at`` holds each shopper's own moment (her session, abandonment or lapse); the incentive
        is given and starts its validity then. Returns the ids actually given (0 where refused).
        """
        was_alive = self.pop.alive[shoppers]
        given = self._give(shoppers, incentive_ids, at, proactive=kind == "lapsing")
        if kind == "lapsing":  # a refused (ineligible) incentive reaches no one
            reached = (given > 0) & ~was_alive
            self._win_back(shoppers[reached], given[reached], at[reached])
        return given

    def _give(
        self, shoppers: I64, incentive_ids: NDArray[np.int16], at: F64, proactive: bool
    ) -> NDArray[np.int16]:
        """Make each non-``none`` incentive the shopper's active offer; returns the ids actually given.

        ``proactive``: the shop reaches out unasked (a lapsing shopper), rather than answering her
        session with an offer; it decides how likely the contact is to wake a sleeping dog.
        """
        pop = self.pop
        eligible = self.catalog.eligible(
            incentive_ids,
            pop.streak_days[shoppers],
            pop.tier[shoppers],
            self.scenario.mechanisms.streaks.min_days,
            pop.orders[shoppers],
        )
        if not eligible.all():  # an ineligible incentive is not given (environments mask them)
            np.add.at(pop.ineligible_offers, shoppers[~eligible], 1)
            self.daily.add("ineligible_offers", float(at[0]), float((~eligible).sum()))
            incentive_ids = np.where(eligible, incentive_ids, 0).astype(np.int16)
        given = incentive_ids > 0
        if not given.any():
            return incentive_ids
        kind = self.catalog.kind[incentive_ids]
        self._streak_bonus_given |= bool((kind == KIND_CODES["streak_bonus"]).any())
        freeze = kind == KIND_CODES["streak_freeze"]
        pop.streak_freezes[shoppers[freeze]] += 1
        referral = kind == KIND_CODES["referral_bonus"]
        if referral.any():
            self._invite(shoppers[referral], incentive_ids[referral], at[referral])
        ids, offer = shoppers[given], incentive_ids[given]
        self._contact(ids, at[given], proactive)
        offers = ~(freeze | referral)[given]  # acted on at once, not held as an offer
        pop.offer[ids[offers]] = offer[offers]
        pop.offer_expires_at[ids[offers]] = (at[given] + self.catalog.valid_hours[offer])[offers]
        pop.incentives_received[ids] += 1
        add_counts(pop.offers_received, ids, self.catalog.family[offer])
        self.log.record("incentive_offered", at[given], ids, incentive=offer)
        return incentive_ids

    def _contact(self, shoppers: I64, now: F64, proactive: bool) -> None:
        """Being contacted drives some shoppers away (sleeping dogs; Ascarza et al. 2016).

        A proactive contact carries her whole contact churn, an in-session offer
        ``reactive_contact_share`` of it; each earlier contact multiplies it by
        ``contact_saturation`` (:func:`contact_churn_now`).
        """
        pop, params = self.pop, self.scenario.mechanisms.churn
        share = 1.0 if proactive else params.reactive_contact_share
        if share == 0.0:
            return
        is_touched = (pop.contact_churn[shoppers] > 0) & pop.alive[shoppers]
        touched = shoppers[is_touched]
        if touched.size:
            chance = share * contact_churn_now(pop.contact_churn[touched], pop.contacts[touched], params)
            pop.contacts[touched] += 1
            np.add.at(pop.hazard, touched, lump_hazard(chance))
            self.end_lives(touched, now[is_touched])

    def _win_back(self, shoppers: I64, offers: NDArray[np.int16], now: F64) -> None:
        """Churned shoppers reached by an incentive while lapsing may come back, more for a richer offer."""
        day, pop, churn = self._day, self.pop, self.scenario.mechanisms.churn
        assert day is not None
        typical = pop.mean_spend[shoppers] * self.scenario.catalog.price_index
        chance = winback_probability(
            self.catalog.face_value(offers, typical),
            pop.winback_sensitivity[shoppers],
            churn.winback_ceiling,
            churn.winback_value_dollars,
        )
        is_back = day.u_winback[shoppers] < chance
        back = shoppers[is_back]
        if back.size:
            pop.alive[back] = True
            pop.churned_at[back] = np.nan
            pop.hazard[back] = 0.0  # a new relationship: her hazard clock starts again
            self.log.record("winback", now[is_back], back)
            self.daily.add("won_back", float(now[0]), back.size)
