"""The behavioural model of a shop and its shoppers: every rule, written once, for both clocks.

:class:`Shop` holds the population's state, the ledger and the event log, and applies the
rules of :mod:`sim.mechanisms` to rows of shoppers at their own times: visits and streaks,
carts and checkout, orders and their booking, deliveries' and returns' effects, attrition,
and incentives given at decision points. It owns no clock. Two drivers call it:

* :class:`sim.engine.Simulation`, the SimPy-clocked population: every shopper on one
  calendar, sessions in batches, a capacity-limited warehouse (:mod:`sim.fulfillment`);
* :class:`sim.journeys.JourneyBatch`, independent shoppers each on her own clock, stepped
  decision by decision (``ShopperJourney-v0`` and its native vector env).

A driver supplies the day's random draws (``self._day``: one value per row and purpose), the
neighbour signal of social proof, the tier shares of tier inflation, where new orders go
(:meth:`_dispatch`) and what a referral invitation does (:meth:`_invite`). Every method takes
per-row times, so the two clocks share each rule bit for bit.

The rules are split by responsibility, each class adding to the one before (a module each):
:class:`~sim.shop.state.ShopState` (state, constants, the driver's hooks),
:class:`~sim.shop.attrition.Attrition`, :class:`~sim.shop.orders.Orders`,
:class:`~sim.shop.sessions.Sessions` and :class:`~sim.shop.incentives.Incentives`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.mechanisms.churn import experience_multiplier
from sim.mechanisms.reference_price import effective_price_sensitivity
from sim.oracle import TrueState
from sim.population import HOURS_PER_DAY
from sim.shop.incentives import Incentives, contact_churn_now
from sim.shop.state import DayDraws, Times

I64 = NDArray[np.int64]

__all__ = ["DayDraws", "Shop"]


class Shop(Incentives):
    """State and rules of one shop's shoppers; a driver supplies the clock and the draws."""

    def true_state(self, shoppers: I64, now: Times) -> TrueState:
        """The latent traits and hidden state of ``shoppers`` at ``now`` (for the privileged oracle only)."""
        pop, scenario = self.pop, self.scenario
        churn, reference = scenario.mechanisms.churn, scenario.mechanisms.reference_price
        today = np.broadcast_to(np.floor(np.asarray(now) / HOURS_PER_DAY).astype(np.int64), shoppers.shape)
        ratio, promo = self._reference_now(shoppers, today)
        experience = experience_multiplier(
            pop.last_delivery_late[shoppers],
            pop.deliveries[shoppers] > 0,
            pop.frustration[shoppers],
            churn.late_dropout_multiplier,
            churn.on_time_relief,
            0.0,
        )
        return TrueState(
            alive=pop.alive[shoppers].copy(),
            purchase_rate_per_day=pop.purchase_rate_per_day[shoppers],
            dropout_prob=pop.dropout_prob[shoppers],
            hazard_per_day=pop.dropout_rate_per_day[shoppers] * experience,
            spend_nu=pop.spend_nu[shoppers],
            loss_aversion=pop.loss_aversion[shoppers],
            price_sensitivity=effective_price_sensitivity(
                pop.price_sensitivity[shoppers], promo, reference.promo_sensitivity
            ),
            checkout_shift=pop.checkout_shift[shoppers],
            offer_response=pop.offer_response[shoppers],
            contact_churn=contact_churn_now(pop.contact_churn[shoppers], pop.contacts[shoppers], churn),
            winback_sensitivity=pop.winback_sensitivity[shoppers],
            affinity=pop.affinity[shoppers],
            reference_ratio=ratio,
            visit_prob=pop.visit_prob[shoppers],
            cart_prob=pop.cart_prob[shoppers],
            cart_value=np.where(pop.cart_id[shoppers] >= 0, pop.cart_value[shoppers], 0.0),
            referral_propensity=pop.referral_propensity[shoppers],
            invites_left=(scenario.mechanisms.referral.max_invites - pop.invites_sent[shoppers]).astype(
                np.float64
            ),
        )
