"""Scenario parameters: typed, validated once at load, then passed down as frozen objects.

A scenario is a YAML file (see ``sim/scenarios/``) describing one shop: its customer base
(BG/NBD purchase and dropout, Gamma-Gamma spend, behavioural traits), its catalogue, shipping,
warehouse and loyalty economics. Loading rejects unknown keys, wrong types and out-of-range
values with the field path, the bad value and what is allowed (:class:`ScenarioError`).

Every default cites its source here or in ``docs/MODEL.md``; the sources are listed in
``DESIGN.md`` (Fader, Hardie & Lee 2005; Fader & Hardie 2013; Tversky & Kahneman 1992;
Brown et al. 2021; Bijmolt et al. 2005; Baymard Institute; NRF/Appriss 2023).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.twins import read_twins

#: Largest value of any rate, duration or multiplier and of any amount of money in a scenario: far
#: above anything physical, far below what overflows int64 cents or numpy array sizes.
MAX_VALUE = 1e6
#: Largest mean order value (dollars) a scenario may imply: keeps ledger sums far from int64 cents.
MAX_MEAN_ORDER = 100_000.0
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0, le=MAX_VALUE)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, le=MAX_VALUE)]
Money = Annotated[float, Field(ge=0.0, le=MAX_VALUE, description="US dollars")]
HourOfDay = Annotated[float, Field(ge=0.0, lt=24.0)]

DecisionKind = Literal["login", "cart_abandoned", "lapsing"]
DECISION_KINDS: tuple[DecisionKind, ...] = ("login", "cart_abandoned", "lapsing")


class ScenarioError(ValueError):
    """A scenario could not be loaded; the message names the field, the value and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class LogNormalTrait(_Model):
    """A positive per-shopper trait drawn lognormally with a given population mean."""

    mean: PositiveFloat
    cv: NonNegativeFloat = Field(description="coefficient of variation (sd / mean); 0 = homogeneous")


class BetaTrait(_Model):
    """A per-shopper probability-like trait drawn from Beta(a, b)."""

    a: PositiveFloat
    b: PositiveFloat


class PurchaseParams(_Model):
    """Repeat buying while alive: rate ~ Gamma(r, alpha) per week (Pareto/NBD and BG/NBD alike).

    ``alpha_weeks`` is the Gamma scale parameter's inverse in weeks, as published: the mean
    purchase rate while alive is ``r / alpha_weeks`` purchases per week. ``a`` and ``b`` are
    BG/NBD's dropout-after-purchase Beta(a, b) (Fader, Hardie & Lee 2005), used only with
    ``population.attrition: bgnbd``.
    """

    r: PositiveFloat
    alpha_weeks: PositiveFloat
    a: PositiveFloat | None = None
    b: PositiveFloat | None = None


class LifetimeParams(_Model):
    """Pareto/NBD lifetimes (Schmittlein, Morrison & Colombo 1987): dropout rate mu ~ Gamma(s, beta).

    ``beta_weeks`` is the inverse scale in weeks: the mean dropout rate is ``s / beta_weeks`` per
    week (CDNOW, Fader, Hardie & Lee 2005: s=0.61, beta=11.67). The rate is a hazard in calendar
    time, moved by experience (:mod:`sim.mechanisms.churn`), never by buying.
    """

    s: PositiveFloat
    beta_weeks: PositiveFloat


class UpliftClass(_Model):
    """One latent class of incentive response (Radcliffe & Surry 2011); see docs/MODEL.md."""

    share: Probability
    offer_response: Annotated[float, Field(ge=0.0, le=10.0)] = Field(
        default=1.0,
        description="multiplier of an offer's felt value at checkout and of its advertising effect",
    )
    checkout_logit_shift: Annotated[float, Field(ge=-5.0, le=5.0)] = Field(
        default=0.0,
        description="checkout log-odds shift without any offer (session rates recalibrate around it)",
    )
    contact_churn: Probability = Field(
        default=0.0,
        description="chance that a first proactive contact (an incentive the shop sends unasked, at a "
        "lapsing decision) ends the relationship; in-session offers carry "
        "mechanisms.churn.reactive_contact_share of it, later contacts less (contact_saturation)",
    )
    # Who falls in the class: log-odds loadings on standardized drivers that also shape what a
    # shop observes (see UpliftParams and docs/MODEL.md, "Who is persuadable").
    purchase_rate_loading: Annotated[float, Field(ge=-5.0, le=5.0)] = Field(
        default=0.0, description="log-odds per standard normal score of her purchase rate in the prior"
    )
    price_sensitivity_loading: Annotated[float, Field(ge=-5.0, le=5.0)] = Field(
        default=0.0, description="log-odds per standard normal score of her log price sensitivity"
    )
    referred_shift: Annotated[float, Field(ge=-5.0, le=5.0)] = Field(
        default=0.0, description="log-odds shift for a shopper a friend referred"
    )


class UpliftParams(_Model):
    """The four uplift classes, their shares and who falls in each (see docs/MODEL.md).

    A shopper's class is a multinomial logit on her standardized purchase rate, price
    sensitivity and channel; the intercepts are solved so that the classes keep their
    ``share`` over organic shoppers. The loadings give the classes the untreated behaviour of
    the typology and make them learnable from what a shop logs, as field uplift data shows
    (treatment effects vary with observables: Ascarza 2018; Hitsch & Misra 2018; Simester,
    Timoshenko & Zoumpoulis 2020). Their sizes are assumptions: sure things buy often at full
    price, lost causes rarely buy, persuadables are deal-prone (Lewis 2006 on customers
    acquired by promotions), referred customers are more loyal (Schmitt, Skiera & Van den
    Bulte 2011). Sleeping dogs carry no loading: nothing in a purchase log marks them.

    Sleeping dogs are sized on Ascarza, Iyengar & Schleicher (2016): a proactive retention
    contact raised established customers' 3-month churn from 6.4% to 10.0%, x1.56. Here
    established shoppers churn 18.3% in 90 days, so the same relative effect is +10.3 points: a
    15% share quitting with probability 0.85 at a first proactive contact (in-session offers and
    repeated contacts: ``mechanisms.churn``; docs/MODEL.md, "Sleeping dogs").
    """

    persuadable: UpliftClass = UpliftClass(
        share=0.25,
        offer_response=2.5,
        checkout_logit_shift=-1.0,
        purchase_rate_loading=-0.5,
        price_sensitivity_loading=1.5,
    )
    sure_thing: UpliftClass = UpliftClass(
        share=0.35,
        offer_response=0.15,
        checkout_logit_shift=1.0,
        purchase_rate_loading=1.5,
        price_sensitivity_loading=-1.0,
        referred_shift=0.7,
    )
    lost_cause: UpliftClass = UpliftClass(
        share=0.25, offer_response=0.15, checkout_logit_shift=-1.0, purchase_rate_loading=-1.5
    )
    # contact_churn: calibrated so that a proactive contact multiplies established shoppers'
    # 90-day churn by Ascarza, Iyengar & Schleicher's (2016) x1.56 (their 6.4% -> 10.0%); at
    # this shop's base (18.3%) that is +10.3 points, all from the 15% of sleeping dogs.
    sleeping_dog: UpliftClass = UpliftClass(
        share=0.15, offer_response=1.0, checkout_logit_shift=0.0, contact_churn=0.85
    )

    @model_validator(mode="after")
    def _check_shares(self) -> UpliftParams:
        total = sum(c.share for c in self.classes())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"uplift class shares must sum to 1, got {total:.6f}")
        return self

    def classes(self) -> tuple[UpliftClass, UpliftClass, UpliftClass, UpliftClass]:
        """The classes in code order (see :data:`sim.population.UPLIFT_CLASSES`)."""
        return (self.persuadable, self.sure_thing, self.lost_cause, self.sleeping_dog)


class SpendParams(_Model):
    """Gamma-Gamma spend per order (Fader & Hardie 2013): x ~ Gamma(p, nu), nu ~ Gamma(q, gamma).

    ``q`` must exceed 1 for the mean order value ``p * gamma / (q - 1)`` to exist.
    """

    p: PositiveFloat
    q: Annotated[float, Field(gt=1.0, le=MAX_VALUE)]
    gamma: PositiveFloat

    @model_validator(mode="after")
    def _check_mean(self) -> SpendParams:
        mean = self.p * self.gamma / (self.q - 1.0)
        if not mean <= MAX_MEAN_ORDER:
            raise ValueError(
                f"mean order value p * gamma / (q - 1) = {mean:.4g} dollars; at most {MAX_MEAN_ORDER:g} "
                "(lower p or gamma, or raise q)"
            )
        return self


class AffinityParams(_Model):
    """Dirichlet concentration of each shopper's affinity for the four incentive types."""

    hedonic: PositiveFloat = 1.0
    utilitarian: PositiveFloat = 1.0
    social: PositiveFloat = 1.0
    surprise: PositiveFloat = 1.0


class DealChannelParams(_Model):
    """Organic shoppers who arrived through a deal or price-comparison site (an observable channel).

    Acquisition channels differ in who they bring (Verhoef & Donkers 2005); customers won by
    price promotions are more price-sensitive later (Lewis 2006). The channel causes nothing
    here: it marks deal-prone shoppers, a signal a shop can target on. Sizes are assumptions.
    """

    share: Probability = Field(
        default=0.2, description="share of organic shoppers at the median price sensitivity"
    )
    price_sensitivity_loading: Annotated[float, Field(ge=-5.0, le=5.0)] = Field(
        default=1.0, description="log-odds per standard normal score of her log price sensitivity"
    )


class PopulationParams(_Model):
    """Who the shoppers are and when they are acquired (acquisition = first order)."""

    shoppers: Annotated[int, Field(ge=1, le=5_000_000, description="shoppers acquired over the run")]
    acquisition_days: NonNegativeFloat = Field(
        description="acquisitions spread uniformly over [0, acquisition_days); 0 = all at t=0"
    )
    first_order_at_acquisition: bool = Field(
        default=True,
        description="new customers arrive with their first (trial) order; false models an established "
        "customer base observed from its acquisition time, with no burst of trial orders",
    )
    attrition: Literal["pareto_nbd", "bgnbd"] = Field(
        default="pareto_nbd",
        description="pareto_nbd: a latent lifetime in calendar time (default); bgnbd: dropout after "
        "each repeat purchase, for reproducing BG/NBD papers (CDNOW)",
    )
    purchase: PurchaseParams
    # CDNOW's Pareto/NBD fit (Fader, Hardie & Lee 2005), per week.
    lifetime: LifetimeParams | None = None
    spend: SpendParams
    # Tversky & Kahneman 1992: lambda = 2.25; Brown et al. 2021 meta-analysis: mean 1.8-2.1.
    loss_aversion: LogNormalTrait = LogNormalTrait(mean=2.0, cv=0.4)
    # Bijmolt, van Heerde & Pieters 2005: mean price elasticity -2.62. The logit slope whose
    # elasticity at a 30% checkout conversion is -2.62 is 2.62 / (1 - 0.30) = 3.74.
    price_sensitivity: LogNormalTrait = LogNormalTrait(mean=3.74, cv=0.5)
    streak_sensitivity: LogNormalTrait = LogNormalTrait(mean=1.0, cv=0.5)
    social_susceptibility: BetaTrait = BetaTrait(a=2.0, b=5.0)
    referral_propensity: BetaTrait = BetaTrait(a=1.0, b=9.0)
    affinity: AffinityParams = AffinityParams()
    abuser_share: Probability = Field(
        default=0.02, description="share of incentive abusers (assumption; see docs/MODEL.md)"
    )
    uplift: UpliftParams = UpliftParams()
    deal_channel: DealChannelParams = DealChannelParams()
    # Win-back responses differ across lapsed shoppers (Thomas, Blattberg & Fox 2004 find
    # reacquisition depends on the offer and on the customer's history); the spread is an assumption.
    winback_sensitivity: LogNormalTrait = LogNormalTrait(mean=1.0, cv=0.5)

    twins: str | None = Field(
        default=None,
        max_length=4096,
        description="a twins file (shopgym calibrate --twins; a path relative to the working directory): "
        "the population is its real customers, each drawn from her own posterior, at the end of "
        "calibration (docs/CALIBRATION.md); none = shoppers drawn from the prior",
    )

    @model_validator(mode="after")
    def _check_attrition(self) -> PopulationParams:
        if self.attrition == "bgnbd" and (self.purchase.a is None or self.purchase.b is None):
            raise ValueError("attrition bgnbd needs purchase.a and purchase.b (BG/NBD dropout Beta(a, b))")
        if self.attrition == "pareto_nbd" and self.lifetime is None:
            raise ValueError("attrition pareto_nbd needs lifetime: {s, beta_weeks} (Pareto/NBD dropout rate)")
        if self.twins is not None:
            twins = read_twins(self.twins)  # checked here, at load; cached for the simulations
            if twins.size != self.shoppers:
                raise ValueError(
                    f"population.twins holds {twins.size} customers but population.shoppers is "
                    f"{self.shoppers}; set shoppers to {twins.size}"
                )
            if twins.prior.attrition != self.attrition:
                raise ValueError(
                    f"population.twins was fitted with attrition {twins.prior.attrition} but "
                    f"population.attrition is {self.attrition}; set attrition to {twins.prior.attrition}"
                )
        return self


class Peak(_Model):
    """A demand peak: sessions ``visit_multiplier`` times as likely on days [start, start + days)."""

    start_day: Annotated[int, Field(ge=0, le=100_000)]
    days: Annotated[int, Field(ge=1, le=100_000)]
    visit_multiplier: PositiveFloat


class SessionParams(_Model):
    """Sessions, carts and checkout (before incentives and mechanisms)."""

    # Industry add-to-cart benchmarks put roughly one session in four to ten on a cart.
    add_to_cart_rate: Probability = 0.25
    # Chosen so that, with shipping fees below the threshold, about 70% of carts are
    # abandoned (Baymard Institute: 70.19% average documented abandonment rate).
    checkout_conversion_at_reference: Probability = 0.50
    # Abandoned-cart reminders bring back a minority of carts; those shoppers decide again.
    cart_return_rate: Probability = Field(
        default=0.25, description="share of abandoned carts whose shopper returns within the window"
    )
    cart_recovery_hours: PositiveFloat = Field(
        default=24.0,
        description="the cart-abandonment timer: when a returning shopper decides again",
    )
    lapse_after_days: PositiveFloat = Field(
        default=60.0, description="recency at which a shopper becomes a 'lapsing' decision point"
    )
    peaks: tuple[Peak, ...] = Field(
        default=(), max_length=1000, description="seasonal peaks (e.g. holiday weeks)"
    )
    hour_weights: tuple[NonNegativeFloat, ...] = Field(
        max_length=24,
        # Diurnal traffic of a Western online shop: night trough, evening peak around 20h.
        default=(
            0.5,
            0.3,
            0.2,
            0.2,
            0.2,
            0.3,
            0.6,
            1.0,
            1.4,
            1.6,
            1.7,
            1.8,
            1.9,
            1.9,
            1.8,
            1.8,
            1.9,
            2.0,
            2.2,
            2.5,
            2.7,
            2.6,
            2.0,
            1.1,
        ),
        description="relative session arrival intensity for each hour of the day (24 values)",
    )

    @model_validator(mode="after")
    def _check_hours(self) -> SessionParams:
        if len(self.hour_weights) != 24 or sum(self.hour_weights) <= 0:
            raise ValueError(
                f"hour_weights needs 24 non-negative values with a positive sum, "
                f"got {len(self.hour_weights)} values summing to {sum(self.hour_weights)}"
            )
        return self


class Category(_Model):
    """A product category: its share of carts, its cost of goods and its return rate."""

    name: str
    share: Probability
    cogs_ratio: Annotated[float, Field(ge=0.0, lt=1.0, description="cost of goods / list price")]
    return_rate: Probability


class CatalogParams(_Model):
    """The product categories; shares must sum to 1."""

    categories: tuple[Category, ...] = Field(min_length=1, max_length=64)  # a shopper's bitmask
    price_index: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        default=1.0,
        description="posted prices as a multiple of the regular prices (0.9 = a permanent 10% cut)",
    )

    @model_validator(mode="after")
    def _check_shares(self) -> CatalogParams:
        total = sum(c.share for c in self.categories)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"category shares must sum to 1, got {total:.6f}")
        names = [c.name for c in self.categories]
        if len(set(names)) != len(names):
            raise ValueError(f"category names must be unique, got {names}")
        return self


class ShippingParams(_Model):
    """What shipping costs the shopper and the shop, and how long it takes."""

    fee: Money = 5.99
    free_threshold: Money = Field(default=50.0, description="basket value from which shipping is free")
    carrier_cost_per_order: Money = 6.50
    carrier_cutoff_hour: HourOfDay = 17.0
    delivery_hour: HourOfDay = 14.0
    base_transit_days: Annotated[int, Field(ge=0, le=365)] = 2
    transit_jitter_days: Annotated[int, Field(ge=0, le=365, description="uniform extra 0..N days")] = 1
    promised_days: PositiveFloat = Field(
        default=4.0, description="promised delivery date: days after the order's day, by its end"
    )  # assumption: a standard-shipping promise of 3-5 business days, as checkout pages quote
    carrier_capacity_per_1k_shoppers: PositiveFloat = Field(
        default=30.0, description="parcels per day the carrier takes without delay"
    )
    congestion_days_per_overload: NonNegativeFloat = Field(
        default=2.0, description="extra transit days per 100% over carrier capacity"
    )


class ReturnsParams(_Model):
    """Returns: NRF/Appriss 2023 put online returns at ~15-20% of orders (category rates)."""

    delay_days: PositiveFloat = 10.0
    handling_cost: Money = 8.0
    restock_share: Probability = Field(default=0.7, description="share of returned COGS recovered")
    processing_weight: NonNegativeFloat = Field(
        default=0.5, description="warehouse capacity a return uses, in orders"
    )


class WarehouseParams(_Model):
    """A pick/pack warehouse with fixed waves, overtime and per-category stock."""

    pick_capacity_per_1k_shoppers: PositiveFloat = Field(
        default=30.0, description="orders per day picked in regular hours per 1,000 shoppers"
    )
    wave_hours: tuple[HourOfDay, ...] = Field(default=(7.0, 11.0, 15.0), min_length=1, max_length=96)
    pick_hours_per_wave: PositiveFloat = 3.0
    overtime_capacity_share: NonNegativeFloat = Field(
        default=0.25, description="extra daily capacity available as overtime"
    )
    overtime_cost_per_order: Money = 2.50
    stock_days_of_cover: PositiveFloat = Field(
        default=10.0, description="base-stock level, in days of regular pick capacity"
    )
    replenish_lead_days: PositiveFloat = 3.0

    @model_validator(mode="after")
    def _check_waves(self) -> WarehouseParams:
        if list(self.wave_hours) != sorted(set(self.wave_hours)):
            raise ValueError(f"wave_hours must be strictly increasing, got {list(self.wave_hours)}")
        return self


class LoyaltyParams(_Model):
    """The points programme: points earned per dollar and redeemed as a discount."""

    points_per_dollar: NonNegativeFloat = 1.0
    point_value: Money = 0.01
    min_redeem_points: Annotated[int, Field(ge=1, le=1_000_000_000)] = 500
    tier_thresholds: tuple[NonNegativeFloat, ...] = Field(
        max_length=100,  # tiers are int8 per shopper
        default=(0.0, 500.0, 2000.0, 10000.0),
        description="cumulative spend (dollars) that opens each tier; starts at 0",
    )

    @model_validator(mode="after")
    def _check_tiers(self) -> LoyaltyParams:
        t = list(self.tier_thresholds)
        if not t or t[0] != 0.0 or t != sorted(set(t)):
            raise ValueError(f"tier_thresholds must start at 0 and increase strictly, got {t}")
        return self


IncentiveKind = Literal[
    "none",
    "coupon_pct",
    "coupon_fixed",
    "free_shipping",
    "points_multiplier",
    "points_bonus",
    "expiring_points",
    "streak_freeze",
    "referral_bonus",
    "tier_perk",
    "surprise_box",
    "streak_bonus",
    "cross_sell",
    "welcome_bundle",
    "first_purchase_bonus",
]
#: How an incentive may be dressed up: honestly, with a cost revealed only at checkout, or with
#: the shopper opted in by a pre-ticked box (:mod:`sim.mechanisms.dark_patterns`).
DarkPattern = Literal["none", "hidden_cost", "forced_opt_in"]
#: Onboarding incentives are for new shoppers only: those with at most this many orders.
ONBOARDING_MAX_ORDERS = 1


class IncentiveSpec(_Model):
    """One incentive the shop can offer; ``value`` is its size in the kind's unit."""

    name: str
    kind: IncentiveKind
    value: NonNegativeFloat = 0.0
    valid_days: PositiveFloat = 7.0
    min_basket: Money = 0.0
    category: str | None = Field(
        default=None,
        max_length=200,
        description="cross_sell only: the catalogue category it is valid in, or 'new' (any category "
        "she has not bought yet)",
    )
    dark_pattern: DarkPattern = "none"

    @model_validator(mode="after")
    def _check_value(self) -> IncentiveSpec:
        if (self.kind == "cross_sell") != (self.category is not None):
            raise ValueError(
                f"category is required for kind cross_sell and only for it (kind {self.kind}, "
                f"category {self.category!r})"
            )
        if self.kind == "cross_sell" and not 0.0 < self.value < 1.0:
            raise ValueError(f"cross_sell value is a fraction off in (0, 1), got {self.value}")
        if self.kind == "welcome_bundle" and self.value < 1.0:
            raise ValueError(
                f"welcome_bundle value is the bonus points it adds to free shipping (>= 1), got {self.value}"
            )
        if self.kind == "first_purchase_bonus" and self.value <= 0.0:
            raise ValueError(f"first_purchase_bonus value is a positive dollar credit, got {self.value}")
        if self.kind == "none" and self.dark_pattern != "none":
            raise ValueError("dark_pattern needs an incentive to dress up; kind none has none")
        if self.kind == "coupon_pct" and not 0.0 < self.value < 1.0:
            raise ValueError(f"coupon_pct value is a fraction in (0, 1), got {self.value}")
        if self.kind == "points_multiplier" and self.value < 1.0:
            raise ValueError(f"points_multiplier value is a multiplier >= 1, got {self.value}")
        if self.kind == "coupon_fixed" and self.value <= 0.0:
            raise ValueError(f"coupon_fixed value is a positive dollar amount, got {self.value}")
        if self.kind in ("tier_perk", "surprise_box", "streak_bonus") and self.value <= 0.0:
            raise ValueError(f"{self.kind} value must be positive (dollars, or points for streak_bonus)")
        if self.kind == "referral_bonus" and self.value <= 0.0:
            raise ValueError(f"referral_bonus value is a positive dollar bonus, got {self.value}")
        if self.kind in ("points_bonus", "expiring_points") and self.value < 1.0:
            raise ValueError(f"{self.kind} value is a number of points >= 1, got {self.value}")
        return self


def _default_incentives() -> tuple[IncentiveSpec, ...]:
    return (
        IncentiveSpec(name="none", kind="none"),
        IncentiveSpec(name="coupon_10", kind="coupon_pct", value=0.10),
        IncentiveSpec(name="coupon_20", kind="coupon_pct", value=0.20),
        IncentiveSpec(name="coupon_5usd", kind="coupon_fixed", value=5.0, min_basket=25.0),
        IncentiveSpec(name="free_shipping", kind="free_shipping"),
        IncentiveSpec(name="points_2x", kind="points_multiplier", value=2.0),
        IncentiveSpec(name="bonus_500_points", kind="points_bonus", value=500.0),
        IncentiveSpec(name="expiring_500_points", kind="expiring_points", value=500.0),
        IncentiveSpec(name="streak_freeze", kind="streak_freeze"),
        # min_basket is the anti-fraud floor: the friend's first order must reach it.
        IncentiveSpec(name="referral_10", kind="referral_bonus", value=10.0, min_basket=25.0),
        IncentiveSpec(name="tier_perk", kind="tier_perk", value=15.0),
        IncentiveSpec(name="surprise_box", kind="surprise_box", value=10.0),
        IncentiveSpec(name="streak_bonus_200", kind="streak_bonus", value=200.0, valid_days=2.0),
    )


class ProspectParams(_Model):
    """Prospect-theory value function (Tversky & Kahneman 1992): gains x^alpha, losses -lambda (-x)^beta.

    lambda is per shopper (``population.loss_aversion``); neutral: ``{mean: 1, cv: 0}``.
    """

    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.88
    beta: Annotated[float, Field(gt=0.0, le=1.0)] = 0.88


class ReferencePriceParams(_Model):
    """Reference prices and promotion dependence (Mela, Gupta & Lehmann 1997); see docs/MODEL.md.

    The reference ratio moves towards the share of the regular price paid at each purchase and
    drifts back to the posted price level in calendar time; promotion sensitivity builds with
    the share of purchases on promotion and fades over years. Neutral: ``smoothing: 0`` and
    ``promo_sensitivity: 0`` (reference stays at the posted price).
    """

    smoothing: Probability = Field(
        default=0.3, description="weight of the latest purchase in the reference (carry-over 0.7)"
    )
    promo_sensitivity: NonNegativeFloat = Field(
        default=1.0, description="price sensitivity multiplier gain at a 100% promotion share"
    )
    # Van Heerde, Leeflang & Wittink 2000: post-promotion dips are small and short; assumption.
    memory_half_life_days: Annotated[float, Field(gt=0.0, le=3650.0)] = Field(
        default=30.0, description="half-life of a reference price's gap to the posted price, in days"
    )
    # Mela, Gupta & Lehmann 1997: promotion sensitivity builds and fades over years (8 years of data).
    promo_memory_half_life_days: Annotated[float, Field(gt=0.0, le=3650.0)] = Field(
        default=365.0, description="half-life of the promotion share, in days"
    )
    # Anderson & Simester 2004: deep discounts raise new customers' later purchases and lower
    # established customers'; the reference update grows with experience up to full weight.
    established_orders: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="orders after which a discount moves her reference with full weight"
    )


class NeedParams(_Model):
    """Purchase timing: a need that depletes after each order (Van Heerde, Gupta & Wittink 2003).

    A session fills a cart with probability scaled by ``1 - depletion * exp(-days since the last
    order / restock_days)``, normalized so the long-run cart rate is unchanged: an order pulled
    forward by an incentive makes the next one less likely soon after. Neutral: ``depletion: 0``.
    """

    depletion: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.5, description="how empty the need is right after an order (assumption)"
    )
    restock_days: Annotated[float, Field(gt=0.0, le=3650.0)] = Field(
        default=14.0, description="time scale on which the need recovers, in days (assumption)"
    )


class AdvertisingParams(_Model):
    """An offer held but not yet redeemed still brings her back (Sahni, Zou & Chintagunta 2017).

    Neutral: ``visit_lift: 0``.
    """

    visit_lift: Annotated[float, Field(ge=0.0, le=10.0)] = Field(
        default=0.25,
        description="visit hazard gain while an offer is held, times her class's offer response (assumption)",
    )


class ShippingThresholdParams(_Model):
    """Baskets topped up to reach the free-shipping threshold (Lewis, Singh & Fay 2006).

    Neutral: ``topup_prob: 0``.
    """

    topup_prob: Probability = Field(
        default=0.5, description="chance a shopper close below the threshold adds items to reach it"
    )
    max_gap_fee_multiple: NonNegativeFloat = Field(
        default=2.0, description="tops up only when the gap is at most this many shipping fees"
    )
    overshoot_max: Money = Field(default=8.0, description="added items exceed the threshold by up to this")


class ChurnParams(_Model):
    """Attrition moved by experience, and the win-back of lapsed shoppers; see :mod:`sim.mechanisms.churn`.

    Neutral: ``late_delivery_churn: 0``, ``late_dropout_multiplier: 0``, ``winback_ceiling: 0``,
    ``on_time_relief: 0``, ``frustration_weight: 0``.
    """

    late_delivery_churn: Probability = Field(
        default=0.08, description="chance an active shopper quits right after a late delivery"
    )
    late_dropout_multiplier: NonNegativeFloat = Field(
        default=1.0,
        description="attrition (hazard, or BG/NBD dropout) multiplied by 1 + this while the last "
        "delivery was late",
    )
    on_time_relief: Probability = Field(
        default=0.1, description="attrition cut while the shopper's last delivery came on time"
    )
    frustration_weight: NonNegativeFloat = Field(
        default=0.5, description="attrition multiplier gain per unit of streak frustration"
    )
    # Thomas, Blattberg & Fox 2004: reacquisition rises with the offer's value, with diminishing
    # returns; the ceiling and value scale are assumptions (docs/MODEL.md).
    winback_ceiling: Probability = Field(
        default=0.30, description="most a win-back offer can bring back, however large"
    )
    winback_value_dollars: Annotated[float, Field(gt=0.0, le=1e4)] = Field(
        default=15.0,
        description="offer value (dollars) that reaches 63% of the ceiling for a typical shopper",
    )
    # Sleeping dogs (Ascarza, Iyengar & Schleicher 2016) were woken by proactive outreach; that an
    # offer answering her own session drives a shopper away has no field evidence: an assumption.
    reactive_contact_share: Probability = Field(
        default=0.0,
        description="share of a sleeping dog's contact churn that an in-session offer (login, "
        "abandoned cart) carries; proactive contacts (lapsing) carry all of it",
    )
    # A reminder wakes a dog once: repeated contacts add less (assumption; Ascarza et al. 2016
    # measured one campaign, so the decay is not identified by field data).
    contact_saturation: Probability = Field(
        default=0.5,
        description="each earlier contact multiplies the next one's churn chance by this "
        "(1: every contact a fresh chance, 0: only the first counts)",
    )


class StreakParams(_Model):
    """Daily-visit streaks (Silverman & Barasch 2023); see :mod:`sim.mechanisms.streaks`.

    Neutral: ``weight: 0``, ``break_penalty: 0``.
    """

    weight: NonNegativeFloat = Field(default=0.4, description="visit-hazard pull of a full streak")
    cap_days: PositiveFloat = Field(default=14.0, description="streak length at which the pull saturates")
    min_days: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=3, description="a streak is shown, pulls and can be lost from this length"
    )
    missed_day_rule: Literal["reset", "decay", "freeze"] = "reset"
    decay_keep: Probability = Field(default=0.5, description="share kept per missed day under 'decay'")
    break_penalty: NonNegativeFloat = Field(
        default=0.6, description="frustration (log visit hazard) from losing a full streak"
    )
    frustration_half_life_days: PositiveFloat = 14.0


class TierParams(_Model):
    """Goal gradient, perks and downgrades of the loyalty tiers; see :mod:`sim.mechanisms.tiers`.

    Neutral: ``goal_gradient: 0``, ``perk_dropout_relief: 0``, ``downgrade_weight: 0``.
    """

    # Kivetz, Urminsky & Zheng 2006: inter-purchase times shrink by roughly a fifth near the
    # reward. 0.6 (visit hazard x1.6 at the threshold) yields ~15% shorter gaps in the 70-100%
    # band once frequent buyers' saturation is accounted for (tests/sim/mechanisms/test_tiers.py).
    goal_gradient: NonNegativeFloat = 0.6
    perk_dropout_relief: Probability = Field(default=0.3, description="dropout cut of top-tier perks")
    inflation: Probability = Field(default=0.5, description="how much a full tier erodes its perk")
    membership_days: PositiveFloat = Field(
        default=365.0, description="a tier is kept for this long, then requalified on that period's spend"
    )
    downgrade_warning_days: NonNegativeFloat = Field(
        default=30.0, description="how long before requalification a coming downgrade is felt"
    )
    downgrade_weight: NonNegativeFloat = Field(
        default=0.5, description="visit-hazard pull of a threatened downgrade by every tier, loss-weighted"
    )


class SocialParams(_Model):
    """Social graph and social proof (Cai, Chen & Fang 2009); see :mod:`sim.mechanisms.social`.

    Neutral: ``proof_weight: 0``, ``bestseller_lift: 0``.
    """

    community_size: Annotated[int, Field(ge=2, le=5_000_000)] = Field(
        default=100, description="shoppers per community"
    )
    within_degree: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=5, description="neighbours seen in one's community"
    )
    across_degree: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=1, description="neighbours seen anywhere"
    )
    recent_half_life_days: PositiveFloat = 7.0
    proof_weight: NonNegativeFloat = Field(
        default=1.0, description="checkout logit lift at saturation for a fully susceptible shopper"
    )
    saturation: PositiveFloat = Field(default=1.0, description="neighbour purchases for 63% of the lift")
    bestseller_share: Probability = Field(default=0.2, description="share of carts holding a bestseller")
    # +0.25 logit for the average shopper: about +17% choice at ~25% conversion (Cai et al.: 13-20%).
    bestseller_lift: NonNegativeFloat = 0.25


class ReferralParams(_Model):
    """Referral through the graph (Schmitt, Skiera & Van den Bulte 2011); see :mod:`sim.mechanisms.referral`.

    Neutral: ``accept_rate: 0``, ``abuser_fake_accounts: 0``.
    """

    max_invites: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="friends a shopper can invite over her whole life (assumption)"
    )
    accept_rate: Probability = Field(default=0.15, description="share of invitations accepted (assumption)")
    referred_churn_reduction: Probability = 0.18
    abuser_fake_accounts: Annotated[int, Field(ge=0, le=100)] = 5
    fake_order_value: Money = 8.0


class IncentiveTypeParams(_Model):
    """Hedonic and surprise incentives and type affinities; see :mod:`sim.mechanisms.affinity`.

    Neutral: ``affinity_weight: 0`` (every shopper values every type alike).
    """

    affinity_weight: Probability = Field(
        default=1.0, description="how much a shopper's type affinity scales an offer's appeal"
    )
    perk_cost_ratio: Probability = Field(
        default=0.4, description="what a hedonic perk costs the shop per dollar of perceived value"
    )
    surprise_cost_ratio: Probability = Field(default=0.5, description="gift cost per dollar of value")
    uncertainty_premium: NonNegativeFloat = Field(
        default=0.3, description="extra appeal of an uncertain reward over its expected value"
    )
    streak_bonus_reference: Money = Field(
        default=2.0, description="bonus value (dollars) whose pull equals a full streak's"
    )


class BreadthParams(_Model):
    """Categories bought, learned from experience, and cross-buying; see :mod:`sim.mechanisms.breadth`.

    Neutral: ``experience_gain: 0``, ``return_loss: 0``, ``cross_buying_lift: 0``,
    ``new_category_return_premium: 0``.
    """

    experience_gain: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.5, description="category weight added by a first order she keeps there (assumption)"
    )
    return_loss: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.5, description="category weight taken by an order she returns (assumption)"
    )
    # Kumar, George & Pancras 2008 (cross-buying raises later orders); the causal share is an
    # assumption kept below their correlation (Reinartz, Thomas & Bascoul 2008).
    cross_buying_lift: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        default=0.08, description="cart-probability gain per kept category beyond her first"
    )
    max_lift_categories: Annotated[int, Field(ge=0, le=64)] = Field(
        default=3, description="kept categories beyond her first that add to the lift"
    )
    # Shah, Kumar, Qu & Chen 2012: heavy returners are the unprofitable cross-buyers; size assumed.
    new_category_return_premium: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.5, description="return rate x (1 + this) on a first order in a new category"
    )


class DarkPatternParams(_Model):
    """Hidden costs and forced opt-ins; see :mod:`sim.mechanisms.dark_patterns`.

    Neutral: ``trust_loss_hidden_cost: 0``, ``trust_loss_opt_in: 0`` (no backlash; the short-run
    gains of a dark pattern remain, as they are part of the incentive's terms).
    """

    # Blake, Moshary, Sweeney & Tadelis 2021: StubHub's fees shown only at checkout.
    hidden_fee_share: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.10, description="the fee revealed at checkout, as a share of the basket"
    )
    hidden_fee_salience: Probability = Field(
        default=0.6, description="weight of a fee revealed at checkout in the buying decision"
    )
    # Luguri & Strahilevitz 2021: mild dark patterns doubled acceptance (11% to 26%).
    opt_in_response: Probability = Field(
        default=0.6, description="offer response of a forced opt-in (her own if higher)"
    )
    trust_loss_hidden_cost: Probability = Field(
        default=0.2, description="trust lost when a hidden cost is charged (assumption)"
    )
    trust_loss_opt_in: Probability = Field(
        default=0.1, description="trust lost when an order shows she was opted in unasked (assumption)"
    )
    distrust_attrition: Annotated[float, Field(ge=0.0, le=20.0)] = Field(
        default=1.0, description="attrition x (1 + this x lost trust) (assumption)"
    )


class HabitParams(_Model):
    """Early attrition and habit formation; see :mod:`sim.mechanisms.habit`.

    Neutral: ``early_attrition: 0``.
    """

    early_attrition: Annotated[float, Field(ge=0.0, le=20.0)] = Field(
        default=0.5, description="attrition x (1 + this) before any repeat order, fading as habit forms"
    )
    habit_orders: Annotated[float, Field(gt=0.0, le=1000.0)] = Field(
        default=2.0, description="repeat orders over which the early excess attrition falls by 63%"
    )


class PriceImageParams(_Model):
    """What a shopper learns of the shop's deals; see :mod:`sim.mechanisms.price_image`.

    Neutral: ``visit_gain: 0``.
    """

    # Anderson & Simester 2004 (direction: deep discounts raise first-time customers' later
    # purchases); Hamilton & Chernev 2013 (price image drives store visits). Size: assumption.
    visit_gain: Annotated[float, Field(ge=0.0, le=50.0)] = Field(
        default=3.0, description="visit probability x exp(this x her learned mean discount depth)"
    )
    # Assumption: her first order carries as much weight as the prior (a Bayesian mean).
    prior_orders: Annotated[float, Field(gt=0.0, le=1000.0)] = Field(
        default=1.0, description="full-price pseudo-orders her price image is shrunk towards"
    )


class MechanismParams(_Model):
    """Behavioural mechanisms; each section documents its neutral (ablation) setting."""

    incentive_types: IncentiveTypeParams = IncentiveTypeParams()
    referral: ReferralParams = ReferralParams()
    social: SocialParams = SocialParams()
    prospect: ProspectParams = ProspectParams()
    streaks: StreakParams = StreakParams()
    tiers: TierParams = TierParams()
    reference_price: ReferencePriceParams = ReferencePriceParams()
    shipping_threshold: ShippingThresholdParams = ShippingThresholdParams()
    churn: ChurnParams = ChurnParams()
    need: NeedParams = NeedParams()
    advertising: AdvertisingParams = AdvertisingParams()
    breadth: BreadthParams = BreadthParams()
    dark_patterns: DarkPatternParams = DarkPatternParams()
    habit: HabitParams = HabitParams()
    price_image: PriceImageParams = PriceImageParams()


#: Dotted overrides that switch every behavioural mechanism to its neutral (ablation) setting.
NEUTRAL_MECHANISMS: dict[str, Any] = {
    "population.loss_aversion": {"mean": 1.0, "cv": 0.0},
    "mechanisms.reference_price.smoothing": 0.0,
    "mechanisms.reference_price.promo_sensitivity": 0.0,
    "mechanisms.shipping_threshold.topup_prob": 0.0,
    "mechanisms.churn.late_delivery_churn": 0.0,
    "mechanisms.churn.late_dropout_multiplier": 0.0,
    "mechanisms.churn.winback_ceiling": 0.0,
    "mechanisms.need.depletion": 0.0,
    "mechanisms.advertising.visit_lift": 0.0,
    "mechanisms.churn.on_time_relief": 0.0,
    "mechanisms.churn.frustration_weight": 0.0,
    "mechanisms.streaks.weight": 0.0,
    "mechanisms.streaks.break_penalty": 0.0,
    "mechanisms.tiers.goal_gradient": 0.0,
    "mechanisms.tiers.perk_dropout_relief": 0.0,
    "mechanisms.tiers.downgrade_weight": 0.0,
    "mechanisms.social.proof_weight": 0.0,
    "mechanisms.social.bestseller_lift": 0.0,
    "mechanisms.referral.accept_rate": 0.0,
    "mechanisms.referral.abuser_fake_accounts": 0,
    "mechanisms.incentive_types.affinity_weight": 0.0,
    "mechanisms.incentive_types.uncertainty_premium": 0.0,
    "mechanisms.breadth.experience_gain": 0.0,
    "mechanisms.breadth.return_loss": 0.0,
    "mechanisms.breadth.cross_buying_lift": 0.0,
    "mechanisms.breadth.new_category_return_premium": 0.0,
    "mechanisms.dark_patterns.trust_loss_hidden_cost": 0.0,
    "mechanisms.dark_patterns.trust_loss_opt_in": 0.0,
    "mechanisms.habit.early_attrition": 0.0,
    "mechanisms.price_image.visit_gain": 0.0,
}


class EconomicsParams(_Model):
    """Discounting for LTV."""

    annual_discount_rate: NonNegativeFloat = Field(default=0.10, description="for LTV")


class EngineParams(_Model):
    """How the clock batches work; does not change the model, only its granularity."""

    session_batch_hours: Annotated[float, Field(gt=0.0, le=24.0)] = Field(
        default=6.0, description="sessions are handled in batches of this many hours"
    )
    decision_points: tuple[DecisionKind, ...] = DECISION_KINDS

    @model_validator(mode="after")
    def _check_batch(self) -> EngineParams:
        if abs(24.0 / self.session_batch_hours - round(24.0 / self.session_batch_hours)) > 1e-9:
            raise ValueError(f"session_batch_hours must divide 24, got {self.session_batch_hours}")
        return self


class Scenario(_Model):
    """A whole shop: population, sessions, catalogue, fulfillment, loyalty and incentives."""

    name: str
    description: str = ""
    population: PopulationParams
    sessions: SessionParams = SessionParams()
    catalog: CatalogParams
    shipping: ShippingParams = ShippingParams()
    returns: ReturnsParams = ReturnsParams()
    warehouse: WarehouseParams = WarehouseParams()
    loyalty: LoyaltyParams = LoyaltyParams()
    incentives: tuple[IncentiveSpec, ...] = Field(default_factory=_default_incentives, max_length=256)
    mechanisms: MechanismParams = MechanismParams()
    economics: EconomicsParams = EconomicsParams()
    engine: EngineParams = EngineParams()

    @model_validator(mode="after")
    def _check_incentives(self) -> Scenario:
        names = [i.name for i in self.incentives]
        if not names or names[0] != "none" or self.incentives[0].kind != "none":
            raise ValueError("incentives must start with {name: none, kind: none} (action 0)")
        if len(set(names)) != len(names):
            raise ValueError(f"incentive names must be unique, got {names}")
        categories = [c.name for c in self.catalog.categories]
        for spec in self.incentives:
            if spec.category is not None and spec.category != "new" and spec.category not in categories:
                raise ValueError(
                    f"incentive {spec.name!r}: category {spec.category!r} is not in the catalogue; "
                    f"use one of {categories[:20]} or 'new'"
                )
        return self

    def config_hash(self) -> str:
        """Short, stable hash of the resolved scenario (for artifacts and caches)."""
        data = self.model_dump(mode="json")
        twins = data["population"].pop("twins")  # absent when unset: earlier hashes stay valid
        if twins is not None:
            data["population"]["twins"] = {"path": twins, "sha256": read_twins(twins).source_hash}
        payload = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def format_validation_errors(error: ValidationError, heading: str) -> str:
    """One line per problem under ``heading``: the field path, the value and what is allowed."""
    lines = [f"{heading}:"]
    items = error.errors(include_url=False)
    # A tuple whose items failed also reports "too short"; the item's own error says it all.
    failed = [tuple(i["loc"]) for i in items if i["type"] != "too_short"]
    items = [
        i
        for i in items
        if not (i["type"] == "too_short" and any(f[: len(i["loc"])] == tuple(i["loc"]) for f in failed))
    ]
    for item in items[:20]:
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        value = _excerpt(item["input"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key (value {value}); remove it or fix its spelling")
        elif item["type"] == "missing":
            lines.append(f"  {path}: required field is missing")
        else:
            lines.append(f"  {path}: got {value}; {_excerpt(_allowed(item), 600, plain=True)}")
    if len(items) > 20:
        lines.append(f"  ... and {len(items) - 20} more problems")
    text = "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 4] + " ..."


#: What a value of each pydantic type error should be, in shopgym's words (the library's wording
#: changes between releases; messages and tests keep to these).
_EXPECTED_TYPES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "none_required": "null",
}


def _allowed(item: Any) -> str:
    """What a field allows, worded by shopgym from a pydantic error's type and context."""
    kind, ctx = item["type"], item.get("ctx") or {}
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind in ("too_short", "string_too_short"):
        return f"needs at least {ctx.get('min_length')} {'items' if kind == 'too_short' else 'characters'}"
    if kind in ("too_long", "string_too_long"):
        return f"allows at most {ctx.get('max_length')} {'items' if kind == 'too_long' else 'characters'}"
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}"
    if kind == "finite_number":
        return "finite numbers only"
    if kind in _EXPECTED_TYPES:
        return f"expected {_EXPECTED_TYPES[kind]}"
    if kind in ("value_error", "assertion_error"):  # shopgym's own validators: their message
        return str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"not allowed (check {kind})"


def _excerpt(value: Any, limit: int = 120, plain: bool = False) -> str:
    """A value's ``repr`` (or text), cut to ``limit`` characters: messages name values, not sections."""
    text = str(value) if plain else repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ScenarioError(f"override {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def scenario_from_dict(
    data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str = "<dict>"
) -> Scenario:
    """Validate a scenario mapping, after applying dotted-key overrides (``population.shoppers``)."""
    resolved = json.loads(json.dumps(dict(data), default=str))
    if overrides:
        # Overrides may name any field, defaulted ones too: start from the full scenario (unless
        # the overrides are what makes it valid; it is validated below either way).
        with contextlib.suppress(ValidationError):
            resolved = Scenario.model_validate_json(json.dumps(resolved)).model_dump(mode="json")
        for key, value in overrides.items():
            _set_dotted(resolved, key, value)
    try:
        # Strict JSON mode: arrays become tuples and ints become floats, nothing else is coerced.
        return Scenario.model_validate_json(json.dumps(resolved))
    except ValidationError as error:
        raise ScenarioError(format_validation_errors(error, f"invalid scenario {source}")) from None


#: Limits on YAML read from files: bytes, nesting depth and nodes after alias expansion.
MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES = 4_000_000, 40, 200_000
#: Longest error message a bad file produces (a field's value is cut to a short excerpt).
MAX_MESSAGE_CHARS = 4000


class _DepthLimitedLoader(yaml.SafeLoader):
    """The pure-Python safe loader, refusing nesting deeper than ``MAX_YAML_DEPTH`` as it scans.

    The check sits in the scanner, where each level opens: libyaml looks far ahead in flow
    collections and refuses deep ones with its own wording before any event reaches shopgym.
    """

    def _refuse_deeper(self, depth: int) -> None:
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"nested deeper than {MAX_YAML_DEPTH} levels (line {self.get_mark().line + 1})")

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        """Open a flow collection (``[`` or ``{``), counting it towards the depth limit."""
        self._refuse_deeper(self.flow_level + len(self.indents) + 1)
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        """Open a block level, counting it towards the depth limit."""
        opened = bool(super().add_indent(column))
        if opened:
            self._refuse_deeper(self.flow_level + len(self.indents))
        return opened


def safe_yaml_load(text: str) -> Any:
    """Parse YAML data only (no tags), refusing deep nesting and alias bombs before expanding them.

    Raises ``yaml.YAMLError`` (or ``ValueError`` for the limits) with a one-line reason.
    """
    depth_check = _DepthLimitedLoader(text)
    try:
        while depth_check.check_token():  # tokens stream without recursion
            depth_check.get_token()
    finally:
        depth_check.dispose()
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: 5x faster
    loader = loader_class(text)
    try:
        root = loader.get_single_node()  # aliases stay shared nodes here
        sizes: dict[int, int] = {}

        def expanded(node: yaml.Node) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            sizes[id(node)] = MAX_YAML_NODES + 1  # a cycle counts as too big
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(expanded(k) + expanded(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(expanded(v) for v in node.value)
            else:
                size = 1
            sizes[id(node)] = min(size, MAX_YAML_NODES + 1)
            return sizes[id(node)]

        if root is None:
            return None
        if expanded(root) > MAX_YAML_NODES:
            raise ValueError(
                f"more than {MAX_YAML_NODES:,} values once aliases are expanded (an alias bomb?)"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """A YAML file's top-level mapping; a missing file, bad YAML or a non-mapping raise ``error``.

    The file is untrusted: it must be UTF-8, at most ``MAX_YAML_BYTES``, nested at most
    ``MAX_YAML_DEPTH`` deep and expand to at most ``MAX_YAML_NODES`` values; YAML tags never run.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{what} {path}: {size:,} bytes; at most {MAX_YAML_BYTES:,}")
        text = path.read_bytes().decode("utf-8")
        data = safe_yaml_load(text)
    except UnicodeDecodeError as problem:
        raise error(f"{what} {path} is not UTF-8 text (byte {problem.start}); save it as UTF-8") from None
    except OSError as problem:
        raise error(f"{what} {path} cannot be read: {problem.strerror or problem}") from None
    except yaml.YAMLError as problem:
        reason = " ".join(str(problem).split())[:300]
        raise error(f"{what} {path} is not valid YAML: {reason}") from None
    except RecursionError:
        raise error(f"{what} {path}: nested too deeply") from None
    except error:
        raise
    except ValueError as problem:
        raise error(f"{what} {path}: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} must be a mapping at the top level, got {type(data).__name__}")
    return data


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario: a shipped name (``"default"``) or a YAML file.

    Names and the legacy ``configs/scenarios/<name>.yaml`` paths resolve to the package data of
    :mod:`sim.scenarios`. Raises :class:`ScenarioError` on any problem.
    """
    from sim.scenarios import scenario_path  # here, not at the top: sim.scenarios is data, not model

    data = read_yaml_mapping(scenario_path(path), "scenario", ScenarioError)
    return scenario_from_dict(data, overrides, source=str(path))
