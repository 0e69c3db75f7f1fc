"""Orders: booking, points, reference prices, BG/NBD dropout, and what deliveries and returns do."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.behaviour import shipping_fee
from sim.economics import COGS, INCENTIVE, RETURNS, REVENUE, SHIPPING, to_cents
from sim.fulfillment import promised_by_hours
from sim.incentives import Terms
from sim.mechanisms.affinity import TYPE_COLUMN, surprise_value
from sim.mechanisms.breadth import category_bit, experienced_weight, has_category
from sim.mechanisms.churn import (
    dropout_probability,
    lump_hazard,
)
from sim.mechanisms.dark_patterns import felt_hidden_fee, lost_trust
from sim.mechanisms.price_image import learned_image
from sim.mechanisms.reference_price import (
    faded,
    update_reference,
    update_weight,
)
from sim.mechanisms.tiers import (
    perk_dropout_relief,
    tier_of,
)
from sim.population import HOURS_PER_DAY, add_counts
from sim.shop.attrition import Attrition
from sim.shop.state import Times, _at, _first

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Orders(Attrition):
    """Orders: booking, points, reference prices, BG/NBD dropout, and what deliveries and returns do."""

    def _place_orders(
        self,
        shoppers: I64,
        times: F64,
        basket: F64,
        category: NDArray[np.int8],
        offer: NDArray[np.int16],
        redeem_points: I64,
        terms: Terms,
    ) -> I64:
        """Book orders: ledger, points, offers redeemed, shopper state, BG/NBD dropout, warehouse."""
        pop, day, scenario = self.pop, self._day, self.scenario
        assert day is not None
        loyalty, ship = scenario.loyalty, scenario.shipping
        list_cents = to_cents(basket)
        fee_cents = to_cents(shipping_fee(basket, ship.fee, ship.free_threshold))
        waived_cents = np.where(terms.free_shipping, fee_cents, 0)
        fee_cents = fee_cents + to_cents(terms.hidden_fee)  # a fee revealed at checkout is charged too
        coupon_cents = to_cents(terms.discount)
        redeem_cents = to_cents(redeem_points * loyalty.point_value)
        regular_cents = list_cents / scenario.catalog.price_index  # COGS do not move with prices
        cogs_cents = np.rint(regular_cents * self._cogs_ratio[category]).astype(np.int64)
        earned = (
            np.floor(basket * loyalty.points_per_dollar * terms.points_multiplier).astype(np.int64)
            + terms.bonus_points
        )
        ids = self.orders.add(
            shopper=shoppers,
            placed_at=times,
            category=category,
            list_cents=list_cents,
            fee_cents=fee_cents,
            discount_cents=coupon_cents + redeem_cents,
            cogs_cents=cogs_cents,
            points_earned=earned,
            incentive=offer,
            u_return=day.u_return[shoppers],
            u_transit=day.u_transit[shoppers],
            promised_at=promised_by_hours(times, ship.promised_days),
            # A cross-buy: her first order in a category, after orders in others (not her trial).
            new_category=(pop.categories_bought[shoppers] != 0)
            & ~has_category(pop.categories_bought[shoppers], category),
        )
        incentive_cents = coupon_cents + redeem_cents + waived_cents + self._perk_cents(shoppers, terms)
        carrier_cents = np.full(shoppers.size, to_cents(ship.carrier_cost_per_order))
        self.ledger.book_unique(
            shoppers,
            {
                REVENUE: list_cents + fee_cents,
                COGS: cogs_cents,
                INCENTIVE: incentive_cents,
                SHIPPING: carrier_cents,
            },
            times,
        )
        pop.points[shoppers] += earned - redeem_points
        pop.categories_bought[shoppers] |= category_bit(category)
        if terms.forced.any() or terms.hidden_fee.any():
            # She sees the bill: a hidden fee, or a programme she was opted into unasked.
            dark = scenario.mechanisms.dark_patterns
            for hit, loss in (
                (terms.hidden_fee > 0, dark.trust_loss_hidden_cost),
                (terms.forced, dark.trust_loss_opt_in),
            ):
                pop.trust[shoppers[hit]] = lost_trust(pop.trust[shoppers[hit]], loss)

        redeemed = (offer > 0) & terms.applies
        pop.full_price_orders[shoppers[~redeemed]] += 1
        if redeemed.any():
            used = shoppers[redeemed]
            add_counts(pop.offers_redeemed, used, self.catalog.family[offer[redeemed]])
            self.log.record(
                "incentive_redeemed",
                times[redeemed],
                used,
                order_id=ids[redeemed],
                amount=(incentive_cents - redeem_cents)[redeemed] / 100.0,
                incentive=offer[redeemed],
            )
            pop.offer[used] = 0
            pop.offer_expires_at[used] = -np.inf

        reference = scenario.mechanisms.reference_price
        today = np.floor(times / HOURS_PER_DAY).astype(np.int64)
        ratio, promo = self._reference_now(shoppers, today)
        pop.reference_ratio[shoppers], pop.promo_share[shoppers] = update_reference(
            ratio,
            promo,
            (list_cents - coupon_cents - redeem_cents)
            / np.maximum(list_cents, 1)
            * scenario.catalog.price_index,
            coupon_cents > 0,
            update_weight(reference.smoothing, pop.orders[shoppers], reference.established_orders),
        )
        pop.reference_day[shoppers] = today
        if scenario.mechanisms.price_image.visit_gain > 0:
            # The deal as she felt it: a fee revealed at checkout weighs at its salience.
            felt_fee = felt_hidden_fee(
                terms.hidden_fee, scenario.mechanisms.dark_patterns.hidden_fee_salience
            )
            pop.price_image[shoppers] = learned_image(
                pop.price_image[shoppers],
                ((coupon_cents + redeem_cents) / 100.0 - felt_fee) / np.maximum(basket, 0.01),
                pop.orders[shoppers],
                scenario.mechanisms.price_image.prior_orders,
            )
        repeat = pop.orders[shoppers] > 0
        pop.orders[shoppers] += 1
        pop.recent_purchases[shoppers] += 1.0
        pop.monetary[shoppers] += basket
        pop.last_order_at[shoppers] = times
        pop.lapsing_flagged[shoppers] = False
        pop.cart_id[shoppers] = -1
        pop.cart_value[shoppers] = 0.0
        pop.qualifying_spend[shoppers] += basket
        pop.qualifying_tier[shoppers] = tier_of(pop.qualifying_spend[shoppers], self._tier_thresholds)
        pop.tier[shoppers] = np.maximum(pop.tier[shoppers], pop.qualifying_tier[shoppers])
        self.log.record(
            "order", times, shoppers, order_id=ids, amount=basket, incentive=offer, detail=category
        )
        self.daily.add("orders", times[0], shoppers.size)
        self.daily.add("revenue", times[0], float((list_cents + fee_cents).sum()) / 100.0)
        self.daily.add("incentive_cost", times[0], float(incentive_cents.sum()) / 100.0)

        if scenario.population.attrition == "bgnbd":
            self._bgnbd_dropout(shoppers, times, repeat)
        self._dispatch(ids)
        return ids

    def _perk_cents(self, shoppers: I64, terms: Terms) -> I64:
        """What the shop pays for the tier perks and surprise gifts redeemed on these orders."""
        if not terms.hedonic_value.any():
            return np.zeros(shoppers.size, dtype=np.int64)
        day, types = self._day, self.scenario.mechanisms.incentive_types
        assert day is not None
        gift = surprise_value(terms.hedonic_value, day.u_surprise[shoppers]) * types.surprise_cost_ratio
        perk = terms.hedonic_value * types.perk_cost_ratio
        return to_cents(np.where(terms.type_column == TYPE_COLUMN["surprise"], gift, perk))

    def _bgnbd_dropout(self, shoppers: I64, times: F64, repeat: NDArray[np.bool_]) -> None:
        """BG/NBD: after a repeat order she drops out with her probability, moved by experience."""
        pop, day, scenario = self.pop, self._day, self.scenario
        assert day is not None
        tiers = scenario.mechanisms.tiers
        relief = perk_dropout_relief(
            pop.tier[shoppers],
            self._tier_share,
            len(self._tier_thresholds) - 1,
            tiers.perk_dropout_relief,
            tiers.inflation,
        )
        churn_params = scenario.mechanisms.churn
        dropout = (
            (1.0 - relief)
            * self._trust_and_habit(shoppers)
            * dropout_probability(
                pop.dropout_prob[shoppers],
                pop.last_delivery_late[shoppers],
                pop.deliveries[shoppers] > 0,
                pop.frustration[shoppers],
                churn_params.late_dropout_multiplier,
                churn_params.on_time_relief,
                churn_params.frustration_weight,
            )
        )
        churn = repeat & (day.u_churn[shoppers] < np.minimum(dropout, 1.0))
        if churn.any():
            gone = shoppers[churn]
            pop.alive[gone] = False
            pop.churned_at[gone] = times[churn]
            self.log.record("churn", times[churn], gone)
            self.daily.add("churned", times[0], gone.size)

    def _reference_now(self, shoppers: I64, today: I64) -> tuple[F64, F64]:
        """Her reference ratio and promotion share today, faded since her last purchase."""
        pop, reference = self.pop, self.scenario.mechanisms.reference_price
        days = (today - pop.reference_day[shoppers]).astype(np.float64)
        # Her anchor is the market's regular price level (other shops'): the ratio drifts back to 1.
        ratio = faded(pop.reference_ratio[shoppers], 1.0, reference.memory_half_life_days, days)
        promo = faded(pop.promo_share[shoppers], 0.0, reference.promo_memory_half_life_days, days)
        return ratio, promo

    def _delivered(self, order_ids: I64, now: Times) -> NDArray[np.bool_]:
        """Parcels arrive: a late one marks her (she may quit); returns which ones she sends back."""
        cols, pop = self.orders.cols, self.pop
        cols["delivered_at"][order_ids] = now
        late = now > cols["promised_at"][order_ids]
        cols["late"][order_ids] = late
        shoppers = cols["shopper"][order_ids]
        np.add.at(pop.deliveries, shoppers, 1)
        np.add.at(pop.late_deliveries, shoppers, late.astype(np.int64))
        pop.last_delivery_late[shoppers] = late
        self.daily.add("deliveries", _first(now), order_ids.size)
        self.daily.add("late_deliveries", _first(now), float(late.sum()))
        self.log.record("deliver", now, shoppers, order_id=order_ids, detail=late.astype(np.int16))
        hazard = self.scenario.mechanisms.churn.late_delivery_churn
        late_alive = late & pop.alive[shoppers]
        if hazard > 0 and late_alive.any():  # a late delivery can end her relationship
            quitting = shoppers[late_alive]
            np.add.at(pop.hazard, quitting, float(lump_hazard(hazard)))
            self.end_lives(quitting, _at(now, late_alive))
        breadth = self.scenario.mechanisms.breadth
        category = cols["category"][order_ids]
        new = cols["new_category"][order_ids]
        rate = self._return_rate[category] * np.where(pop.abuser[shoppers], 2.0, 1.0)
        rate = rate * np.where(new, 1.0 + breadth.new_category_return_premium, 1.0)
        returned = cols["u_return"][order_ids] < np.minimum(rate, 1.0)
        cols["returned"][order_ids[returned]] = True
        self._learn_categories(shoppers, category.astype(np.int64), returned)
        return returned

    def _learn_categories(self, shoppers: I64, category: I64, returned: NDArray[np.bool_]) -> None:
        """Delivered orders teach her about their categories: kept for the first time, or sent back.

        The lessons add up whatever the parcels' order: a category's first kept order counts once
        however many of her parcels of it arrive together, and every return counts.
        """
        pop, breadth = self.pop, self.scenario.mechanisms.breadth
        width = pop.category_weight.shape[1]
        cell = shoppers * width + category
        first = np.unique(cell[~returned & ~has_category(pop.categories_kept[shoppers], category)])
        touched, inverse = np.unique(np.concatenate([first, cell[returned]]), return_inverse=True)
        first_kept = np.bincount(inverse[: first.size], minlength=touched.size) > 0
        returns = np.bincount(inverse[first.size :], minlength=touched.size)
        who, cat = touched // width, touched % width
        pop.category_weight[who, cat] = experienced_weight(
            pop.category_weight[who, cat].astype(np.float64),
            first_kept,
            returns,
            breadth.experience_gain,
            breadth.return_loss,
        )
        np.bitwise_or.at(pop.categories_kept, shoppers[~returned], category_bit(category[~returned]))

    def _returned(self, order_ids: I64, now: Times) -> None:
        """Returned parcels arrive: refund, handling and restock are booked; points are taken back."""
        cols, params, pop = self.orders.cols, self.scenario.returns, self.pop
        refund = cols["list_cents"][order_ids] - cols["discount_cents"][order_ids]
        restock = np.rint(params.restock_share * cols["cogs_cents"][order_ids]).astype(np.int64)
        cost = refund + to_cents(params.handling_cost) - restock
        shoppers = cols["shopper"][order_ids]
        self.ledger.book(RETURNS, shoppers, cost, now)
        np.subtract.at(pop.points, shoppers, cols["points_earned"][order_ids])
        np.add.at(pop.returns, shoppers, 1)
        pop.points[shoppers] = np.maximum(pop.points[shoppers], 0)  # the points are spent already
        self.daily.add("returns", _first(now), order_ids.size)
        self.log.record("return", now, shoppers, order_id=order_ids, amount=refund / 100.0)
