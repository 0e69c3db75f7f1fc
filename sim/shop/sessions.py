"""Sessions: visits and streaks, acquisition, carts, checkout and the cart-abandonment timer."""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import NDArray

from sim.behaviour import checkout_probability, shipping_fee
from sim.economics import INCENTIVE, to_cents
from sim.incentives import KIND_CODES, Terms
from sim.mechanisms.affinity import TYPE_COLUMN, affinity_factor
from sim.mechanisms.breadth import (
    choose_categories,
    count_categories,
    cross_buying_multiplier,
    steering,
)
from sim.mechanisms.dark_patterns import felt_hidden_fee, forced_response
from sim.mechanisms.need import need_factor
from sim.mechanisms.price_image import image_visit_multiplier
from sim.mechanisms.prospect import framed_offer_pull, prospect_value
from sim.mechanisms.reference_price import effective_price_sensitivity
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.mechanisms.social import social_logit_lift
from sim.mechanisms.streaks import visit_hazard_multiplier
from sim.mechanisms.tiers import (
    downgrade_threat_multiplier,
    goal_gradient_multiplier,
    tier_progress,
)
from sim.population import CHANNEL_REFERRED, HOURS_PER_DAY, add_counts
from sim.shop.orders import Orders
from sim.shop.state import Times, _at, _first

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Sessions(Orders):
    """Sessions: visits and streaks, acquisition, carts, checkout and the cart-abandonment timer."""

    def _visit_probability(self, rows: slice | I64, now: Times, frustration: F64 | None = None) -> F64:
        """Today's session probability: the calibrated base moved by streaks and the goal gradient.

        ``frustration`` replaces the rows' own (a journey looks ahead over quiet days with it).
        """
        pop, mech = self.pop, self.scenario.mechanisms
        multiplier = visit_hazard_multiplier(
            pop.streak_days[rows],
            pop.frustration[rows] if frustration is None else frustration,
            pop.streak_sensitivity[rows],
            pop.loss_aversion[rows],
            mech.streaks.weight,
            mech.streaks.cap_days,
            mech.streaks.min_days,
            mech.prospect.alpha,
            mech.prospect.beta,
        )
        bonus = self._active_streak_bonus(rows, now) if self._streak_bonus_given else None
        if bonus is not None and bonus.any():
            types = mech.incentive_types
            value = self.catalog.value[pop.offer[rows]] * self.scenario.loyalty.point_value
            appeal = affinity_factor(
                pop.affinity[rows], self.catalog.type_column[pop.offer[rows]], types.affinity_weight
            )
            pull = mech.streaks.weight * pop.streak_sensitivity[rows] * appeal
            pull *= (value / types.streak_bonus_reference) ** mech.prospect.alpha
            multiplier *= np.exp(np.where(bonus, pull, 0.0))
        lift = mech.advertising.visit_lift
        if lift > 0:  # an offer held, redeemed or not, brings her back (the advertising effect)
            held = (pop.offer[rows] > 0) & (pop.offer_expires_at[rows] >= now)
            if held.any():
                multiplier *= np.where(held, 1.0 + lift * pop.offer_response[rows], 1.0)
        if mech.price_image.visit_gain > 0:
            image = pop.price_image[rows]
            learned = np.flatnonzero(image)  # most were never given a discount: their factor is 1
            if learned.size:
                multiplier[learned] *= image_visit_multiplier(image[learned], mech.price_image.visit_gain)
        season = self.season_multiplier(now)
        if np.ndim(season) or season != 1.0:
            multiplier *= season
        if mech.tiers.goal_gradient > 0:
            progress = tier_progress(
                pop.qualifying_spend[rows], pop.qualifying_tier[rows], self._tier_thresholds
            )
            multiplier *= goal_gradient_multiplier(progress, mech.tiers.goal_gradient)
        if mech.tiers.downgrade_weight > 0:
            warning = mech.tiers.downgrade_warning_days * HOURS_PER_DAY
            in_window = np.flatnonzero(pop.requalify_at[rows] - now <= warning)  # positions in rows
            if in_window.size:
                ids = (np.arange(rows.stop) if isinstance(rows, slice) else rows)[in_window]
                multiplier[in_window] *= downgrade_threat_multiplier(
                    pop.tier[ids],
                    pop.qualifying_tier[ids],
                    np.ones(ids.size, dtype=bool),
                    pop.loss_aversion[ids],
                    len(self._tier_thresholds) - 1,
                    mech.tiers.downgrade_weight,
                    mech.prospect.beta,
                )
        return -np.expm1(multiplier * np.log1p(-np.minimum(pop.visit_prob[rows], 1.0 - 1e-12)))

    @overload
    def season_multiplier(self, now: float) -> float: ...

    @overload
    def season_multiplier(self, now: F64) -> F64: ...

    def season_multiplier(self, now: Times) -> F64 | float:
        """Visit-hazard multiplier of the seasonal peaks covering the day of ``now`` (per row)."""
        day = np.minimum(np.floor(np.asarray(now) / HOURS_PER_DAY).astype(np.int64), self.horizon_days)
        if np.ndim(day) == 0:
            return float(self._season_by_day[int(day)])
        return self._season_by_day[day]

    def _active_streak_bonus(self, rows: slice | I64, now: Times) -> NDArray[np.bool_]:
        """Shoppers holding an unexpired streak bonus."""
        pop = self.pop
        kind = self.catalog.kind[pop.offer[rows]]
        return (kind == KIND_CODES["streak_bonus"]) & (pop.offer_expires_at[rows] >= now)

    def _visit(self, shoppers: I64, times: F64) -> None:
        """Record sessions and update the daily-visit streaks."""
        pop = self.pop
        day = np.floor(times / HOURS_PER_DAY).astype(np.int64)
        continued = pop.last_visit_day[shoppers] == day - 1
        pop.streak_days[shoppers] = np.where(continued, pop.streak_days[shoppers] + 1, 1)
        pop.last_visit_day[shoppers] = day
        pop.visits[shoppers] += 1
        self.log.record("visit", times, shoppers)
        self.daily.add("visits", times[0], shoppers.size)
        if not self._streak_bonus_given:
            return
        shown = pop.streak_days[shoppers] >= self.scenario.mechanisms.streaks.min_days
        kept = continued & shown & self._active_streak_bonus(shoppers, times)
        if kept.any():  # the streak held: the bonus points are credited
            earners, offer = shoppers[kept], pop.offer[shoppers[kept]]
            points = self.catalog.value[offer].astype(np.int64)
            pop.points[earners] += points
            pop.offer[earners] = 0
            pop.offer_expires_at[earners] = -np.inf
            self.log.record(
                "incentive_redeemed",
                times[kept],
                earners,
                amount=points * self.scenario.loyalty.point_value,
                incentive=offer,
            )

    def _acquire(self, shoppers: I64) -> I64:
        """New shoppers arrive with their first order (the BG/NBD trial purchase).

        Returns the new customers among them (those who placed a trial order): their acquisition
        is their first session, where a driver poses a login decision.
        """
        day, pop = self._day, self.pop
        assert day is not None
        times = pop.acquired_at[shoppers]
        fake = pop.fake_account[shoppers]
        basket = np.where(fake, self.scenario.mechanisms.referral.fake_order_value, self._basket(shoppers))
        category = self._categories(shoppers, day.u_category[shoppers], times)
        self.log.record("acquired", times, shoppers, detail=pop.channel[shoppers].astype(np.int16))
        self.daily.add("acquired", times[0], shoppers.size)
        if not self.scenario.population.first_order_at_acquisition:
            # Established customers are observed from now on, with no trial order; a referred
            # friend (or a fake account) is new, and joins with the first order that pays the bonus.
            trial = pop.channel[shoppers] == CHANNEL_REFERRED
            if not trial.any():
                return shoppers[:0]
            shoppers, times, basket, category = shoppers[trial], times[trial], basket[trial], category[trial]
        offer = np.zeros(shoppers.size, dtype=np.int16)
        no_points = np.zeros(shoppers.size, np.int64)
        terms = self.catalog.terms(offer, basket)
        order_ids = self._place_orders(shoppers, times, basket, category, offer, no_points, terms)
        self._pay_referral_bonuses(shoppers, times, basket, order_ids)
        return shoppers

    def _pay_referral_bonuses(self, shoppers: I64, times: F64, basket: F64, order_ids: I64) -> None:
        """Pay each referrer whose friend's first order reaches the bonus's anti-fraud floor."""
        pop = self.pop
        offer = pop.referral_offer[shoppers]
        paid = (pop.referred_by[shoppers] >= 0) & (basket >= self.catalog.min_basket[offer])
        if not paid.any():
            return
        referrers, offer = pop.referred_by[shoppers[paid]], offer[paid]
        add_counts(pop.offers_redeemed, referrers, self.catalog.family[offer])
        cents = to_cents(self.catalog.value[offer])
        self.ledger.book(INCENTIVE, referrers, cents, times[paid])
        self.referral_cost_cents += int(cents.sum())
        self.referral_cost_abusers_cents += int(cents[pop.abuser[referrers]].sum())
        self.daily.add("incentive_cost", times[0], float(cents.sum()) / 100.0)
        self.log.record(
            "incentive_redeemed",
            times[paid],
            referrers,
            order_id=order_ids[paid],
            amount=cents / 100.0,
            incentive=offer,
        )

    def _fill_carts(self, visitors: I64, times: F64) -> tuple[I64, F64, I64, NDArray[np.bool_]]:
        """Visitors who fill a cart check out or abandon it; returns the abandoned carts.

        Returns (shoppers, times, cart ids, bestseller badge) of the abandoned carts, their
        ``cart_expires_at`` set; a driver poses the abandonment decision and starts the timer.
        """
        day, pop = self._day, self.pop
        assert day is not None
        has_cart = day.u_cart[visitors] < self._cart_probability(visitors, times)
        shoppers, times = visitors[has_cart], times[has_cart]
        none = (shoppers[:0], times[:0], shoppers[:0], np.zeros(0, dtype=np.bool_))
        if shoppers.size == 0:
            return none
        basket = self._basket(shoppers)
        category = self._categories(shoppers, day.u_category[shoppers], times)
        cart_ids = np.arange(self._next_cart_id, self._next_cart_id + shoppers.size, dtype=np.int64)
        self._next_cart_id += shoppers.size
        pop.cart_id[shoppers] = cart_ids
        pop.cart_value[shoppers] = basket
        pop.cart_category[shoppers] = category
        pop.carts[shoppers] += 1
        self.log.record("cart", times, shoppers, amount=basket, detail=category)
        self.daily.add("carts", times[0], shoppers.size)

        badge = day.u_bestseller[shoppers] < self.scenario.mechanisms.social.bestseller_share
        bought = self._checkout(shoppers, times, basket, category, day.u_checkout[shoppers], badge)
        abandoned = ~bought
        if not abandoned.any():
            return none
        ids = shoppers[abandoned]
        pop.cart_expires_at[ids] = times[abandoned] + self.scenario.sessions.cart_recovery_hours
        pop.carts_abandoned[ids] += 1
        self.log.record("abandon", times[abandoned], ids, amount=basket[abandoned])
        self.daily.add("abandoned", times[0], ids.size)
        return ids, times[abandoned], cart_ids[abandoned], badge[abandoned]

    def _cart_return(
        self,
        shoppers: I64,
        cart_ids: I64,
        badge: NDArray[np.bool_],
        u_return: F64,
        u_reconsider: F64,
        now: Times,
    ) -> None:
        """The cart-abandonment timer rang: returning shoppers decide again, other carts are lost."""
        pop = self.pop
        still_open = pop.cart_id[shoppers] == cart_ids  # not replaced by a newer cart, not bought
        shoppers, badge = shoppers[still_open], badge[still_open]
        now = _at(now, still_open)
        basket, category = pop.cart_value[shoppers], pop.cart_category[shoppers]
        back = pop.alive[shoppers] & (u_return[still_open] < self.scenario.sessions.cart_return_rate)
        bought = np.zeros(shoppers.size, dtype=bool)
        if back.any():
            bought[back] = self._checkout(
                shoppers[back],
                _at(now, back),
                basket[back],
                category[back],
                u_reconsider[still_open][back],
                badge[back],
            )
            pop.carts_recovered[shoppers[bought]] += 1
            self.daily.add("recovered", _first(now), float(bought.sum()))
        lost = shoppers[~bought]
        pop.cart_id[lost] = -1
        pop.cart_value[lost] = 0.0
        self.log.record("cart_lost", _at(now, ~bought), lost, amount=basket[~bought])

    def _cart_probability(self, shoppers: I64, times: F64) -> F64:
        """Her calibrated cart probability moved by her need since her last order and her breadth."""
        pop, mech = self.pop, self.scenario.mechanisms
        need, breadth = mech.need, mech.breadth
        probability = pop.cart_prob[shoppers]
        if breadth.cross_buying_lift > 0:
            probability = probability * cross_buying_multiplier(
                count_categories(pop.categories_kept[shoppers]),
                breadth.cross_buying_lift,
                breadth.max_lift_categories,
            )
        if need.depletion > 0.0:
            age_days = (times - pop.last_order_at[shoppers]) / HOURS_PER_DAY
            probability = probability * need_factor(
                age_days, pop.purchase_rate_per_day[shoppers], need.depletion, need.restock_days
            )
        return np.minimum(probability, 1.0)

    def _basket(self, shoppers: I64) -> F64:
        """Today's Gamma-Gamma basket of each shopper, topped up towards free shipping."""
        day, pop = self._day, self.pop
        assert day is not None
        ship, topup = self.scenario.shipping, self.scenario.mechanisms.shipping_threshold
        return topped_up_basket(
            self._basket_gamma(shoppers) / pop.spend_nu[shoppers] * self.scenario.catalog.price_index,
            day.u_topup[shoppers],
            ship.fee,
            ship.free_threshold,
            topup.topup_prob,
            topup.max_gap_fee_multiple,
            topup.overshoot_max,
        )

    def _categories(self, shoppers: I64, u: F64, times: Times) -> NDArray[np.int8]:
        """Each cart's category: the catalogue's shares moved by her weights and a held cross-sell coupon."""
        pop = self.pop
        category = np.searchsorted(self._category_cdf, u, side="right")
        category = np.minimum(category, len(self._category_cdf) - 1)
        weight = pop.category_weight[shoppers].astype(np.float64)
        active = pop.offer_expires_at[shoppers] >= times
        target = np.where(active, self.catalog.category[pop.offer[shoppers]], -1)
        moved = (target != -1) | weight.any(axis=1)
        if moved.any():  # shoppers at the shares keep the shares' own draw
            rows = shoppers[moved]
            pull = pop.price_sensitivity[rows] * self.catalog.value[pop.offer[rows]]
            weight = weight[moved] + steering(
                target[moved], pop.categories_bought[rows], weight.shape[1], pull
            )
            category[moved] = choose_categories(self._log_category_share, weight, u[moved])
        return category.astype(np.int8)

    def _checkout(
        self,
        shoppers: I64,
        times: F64 | float,
        basket: F64,
        category: NDArray[np.int8],
        u: F64,
        badge: NDArray[np.bool_],
    ) -> NDArray[np.bool_]:
        """Each cart's shopper sees what she would pay (offers, shipping, points) and decides."""
        pop, loyalty, ship = self.pop, self.scenario.loyalty, self.scenario.shipping
        active = pop.offer_expires_at[shoppers] >= times
        offer = np.where(active, pop.offer[shoppers], 0).astype(np.int16)
        terms = self.catalog.terms(offer, basket, category, pop.categories_bought[shoppers])
        fee = np.where(terms.free_shipping, 0.0, shipping_fee(basket, ship.fee, ship.free_threshold))
        points = pop.points[shoppers]
        if loyalty.point_value > 0:  # points worth nothing are never redeemed
            redeem_points = np.where(
                points >= loyalty.min_redeem_points,
                np.minimum(points, np.floor((basket - terms.discount) / loyalty.point_value)),
                0,
            ).astype(np.int64)
        else:
            redeem_points = np.zeros(shoppers.size, dtype=np.int64)
        pay = basket - terms.discount - redeem_points * loyalty.point_value + fee
        reference = self.scenario.mechanisms.reference_price
        loss_aversion = pop.loss_aversion[shoppers]
        felt = pay
        if terms.applies.any():
            # Her uplift class scales what the offer is felt to be worth (the saving and the pull);
            # a forced opt-in enrols her regardless, and trust lost to dark patterns damps it.
            dark = self.scenario.mechanisms.dark_patterns
            response = pop.offer_response[shoppers]
            response = np.where(terms.forced, forced_response(response, dark.opt_in_response), response)
            response = response * pop.trust[shoppers]
            saving = terms.discount + np.where(
                terms.free_shipping, shipping_fee(basket, ship.fee, ship.free_threshold), 0.0
            )
            pull = self._offer_pull(shoppers, terms, basket, loss_aversion)
            felt = pay + (1.0 - response) * saving - response * pull
            felt = felt + felt_hidden_fee(terms.hidden_fee, dark.hidden_fee_salience)
        today = np.floor(np.asarray(times) / HOURS_PER_DAY).astype(np.int64)
        ratio, promo = self._reference_now(shoppers, today)
        sensitivity = effective_price_sensitivity(
            pop.price_sensitivity[shoppers], promo, reference.promo_sensitivity
        )
        social = self.scenario.mechanisms.social
        signal = self._neighbour_signal(shoppers) if social.proof_weight > 0 else np.zeros(shoppers.size)
        lift = social_logit_lift(
            signal,
            pop.social_susceptibility[shoppers],
            badge,
            self._mean_susceptibility,
            social.proof_weight,
            social.saturation,
            social.bestseller_lift,
        )
        prob = checkout_probability(
            self._base_logit + pop.checkout_shift[shoppers] + lift,
            sensitivity,
            felt,
            basket / self.scenario.catalog.price_index * ratio,
            loss_aversion,
        )
        bought = u < prob
        if bought.any():
            times_b = times[bought] if isinstance(times, np.ndarray) else np.full(int(bought.sum()), times)
            self._place_orders(
                shoppers[bought],
                times_b,
                basket[bought],
                category[bought],
                offer[bought],
                redeem_points[bought],
                terms.select(bought),
            )
        return bought

    def _offer_pull(self, shoppers: I64, terms: Terms, basket: F64, loss_aversion: F64) -> F64:
        """Dollar-equivalent pull of points, perks and surprises, framed and scaled by type affinity."""
        pop, loyalty = self.pop, self.scenario.loyalty
        prospect = self.scenario.mechanisms.prospect
        extra_points = (
            terms.points_multiplier - 1.0
        ) * basket * loyalty.points_per_dollar + terms.bonus_points
        types = self.scenario.mechanisms.incentive_types
        appeal = affinity_factor(pop.affinity[shoppers], terms.type_column, types.affinity_weight)
        surprise = terms.type_column == TYPE_COLUMN["surprise"]
        perk = terms.hedonic_value * np.where(surprise, 1.0 + types.uncertainty_premium, 1.0)
        worth = 1.0 - self.scenario.mechanisms.tiers.inflation * self._tier_share[pop.tier[shoppers]]
        perk *= np.where(terms.type_column == TYPE_COLUMN["hedonic"], np.clip(worth, 0.0, 1.0), 1.0)
        pull = appeal * (
            framed_offer_pull(
                extra_points * loyalty.point_value,
                terms.loss_framed,
                loss_aversion,
                prospect.alpha,
                prospect.beta,
            )
            + prospect_value(perk, 1.0, prospect.alpha, prospect.beta)
        )
        return pull
