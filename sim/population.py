"""The shopper population as a struct of numpy arrays, one row per shopper.

Latent traits are drawn at acquisition from the customer-base literature:

* purchase rate ``lambda ~ Gamma(r, alpha)`` per week while alive, and attrition either as a
  Pareto/NBD lifetime (dropout rate ``mu ~ Gamma(s, beta)`` per week, a hazard in calendar time
  whose budget ``E ~ Exp(1)`` is drawn now: she churns once her accumulated hazard reaches it;
  Schmittlein, Morrison & Colombo 1987) or, for reproducing BG/NBD papers, dropout
  ``p ~ Beta(a, b)`` after each repeat purchase (Fader, Hardie & Lee 2005);
* order value ``x ~ Gamma(p, nu)``, ``nu ~ Gamma(q, gamma)``: Gamma-Gamma (Fader & Hardie 2013);
* loss aversion (Tversky & Kahneman 1992; Brown et al. 2021), price sensitivity (Bijmolt et al.
  2005), streak sensitivity, social susceptibility, referral propensity, incentive-type
  affinities and an abuser flag (see ``docs/MODEL.md``);
* an uplift class (persuadable, sure thing, lost cause, sleeping dog; Radcliffe & Surry 2011)
  that sets how strongly offers move her and whether being contacted drives her away, and a
  win-back sensitivity.

BG/NBD describes completed purchases. The simulator decomposes them into sessions, carts and
checkouts, so each shopper's session rate is set at acquisition such that, at the shop's
baseline prices, her expected order rate equals her BG/NBD ``lambda``; incentives and
mechanisms then move behaviour around that calibrated baseline.

Observable state (recency, frequency, monetary, tenure, tier, points, streak, open cart,
deliveries, incentives received, channel) is what a shop could see; the traits are what only
the simulator knows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from sim.behaviour import checkout_probability, expected_orders_per_cart, logit, shipping_fee
from sim.mechanisms.social import community_graph
from sim.params import LogNormalTrait, Scenario, UpliftParams
from sim.twins import Twins, draw_twin_traits

HOURS_PER_DAY = 24.0
DAYS_PER_WEEK = 7.0
INCENTIVE_TYPES = ("hedonic", "utilitarian", "social", "surprise")
#: Incentive families a shop's response log counts by (``Population.offers_received`` columns).
INCENTIVE_FAMILIES = ("coupon", "free_shipping", "points", "streak", "referral", "tier_perk", "surprise_box")
CHANNEL_ORGANIC = 0
CHANNEL_REFERRED = 1
CHANNEL_DEAL = 2  # an organic shopper who came through a deal or price-comparison site
#: Uplift classes in code order (``Population.uplift_class``).
UPLIFT_CLASSES = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
NO_OFFER = 0

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_QUADRATURE_POINTS = 32
_CALIBRATION_CHUNK = 16384
_INTERCEPT_ITERATIONS = 200
_MAX_SCORE = 8.0  # normal scores are clipped where a quantile rounds to 0 or 1


def _lognormal(trait: LogNormalTrait, n: int, rng: np.random.Generator) -> F64:
    """Lognormal draws with the given mean and coefficient of variation."""
    if trait.cv == 0.0:
        return np.full(n, trait.mean)
    sigma2 = np.log1p(trait.cv**2)
    return rng.lognormal(np.log(trait.mean) - sigma2 / 2.0, np.sqrt(sigma2), n)


@functools.lru_cache(maxsize=64)
def basket_quantiles(p: float, points: int = _QUADRATURE_POINTS) -> F64:
    """Mid-point quantiles of Gamma(p, 1): a quadrature over order values (cached, read-only)."""
    quantiles = np.asarray(stats.gamma.ppf((np.arange(points) + 0.5) / points, p), dtype=np.float64)
    quantiles.flags.writeable = False
    return quantiles


@dataclass
class Population:
    """Traits and observable state of every shopper the run will acquire (rows in acquisition order)."""

    size: int
    planned: int  # rows [0, planned) are organic shoppers in acquisition order; referred ones follow
    # --- latent traits (the simulator's truth) ---
    acquired_at: F64
    purchase_rate_per_day: F64
    dropout_prob: F64  # BG/NBD dropout after a repeat order (0 under Pareto/NBD attrition)
    dropout_rate_per_day: F64  # Pareto/NBD hazard before experience (0 under BG/NBD attrition)
    lifetime_budget: F64  # she churns when her accumulated hazard reaches this Exp(1) draw
    spend_nu: F64
    loss_aversion: F64
    price_sensitivity: F64
    streak_sensitivity: F64
    social_susceptibility: F64
    referral_propensity: F64
    affinity: NDArray[np.float32]
    abuser: NDArray[np.bool_]
    uplift_class: NDArray[np.int8]
    offer_response: F64
    checkout_shift: F64
    contact_churn: F64
    winback_sensitivity: F64
    channel: NDArray[np.int8]
    community: NDArray[np.int32]
    neighbours: NDArray[np.int32]
    visit_prob: F64
    cart_prob: F64
    spend_p: float
    category_count: int = 1
    # --- observable state ---
    alive: NDArray[np.bool_] = field(init=False)
    hazard: F64 = field(init=False)
    churned_at: F64 = field(init=False)
    last_order_at: F64 = field(init=False)
    last_visit_day: I64 = field(init=False)
    orders: I64 = field(init=False)
    monetary: F64 = field(init=False)
    points: I64 = field(init=False)
    tier: NDArray[np.int8] = field(init=False)
    streak_days: I64 = field(init=False)
    cart_id: I64 = field(init=False)
    cart_value: F64 = field(init=False)
    cart_category: NDArray[np.int8] = field(init=False)
    cart_expires_at: F64 = field(init=False)
    deliveries: I64 = field(init=False)
    late_deliveries: I64 = field(init=False)
    last_delivery_late: NDArray[np.bool_] = field(init=False)
    incentives_received: I64 = field(init=False)
    offer: NDArray[np.int16] = field(init=False)
    offer_expires_at: F64 = field(init=False)
    lapsing_flagged: NDArray[np.bool_] = field(init=False)
    reference_ratio: F64 = field(init=False)  # as of the start of day reference_day
    promo_share: F64 = field(init=False)  # as of the start of day reference_day
    reference_day: I64 = field(init=False)
    streak_freezes: I64 = field(init=False)
    frustration: F64 = field(init=False)
    recent_purchases: F64 = field(init=False)
    referred_by: I64 = field(init=False)
    referral_offer: NDArray[np.int16] = field(init=False)
    invites_sent: NDArray[np.int8] = field(init=False)
    fake_account: NDArray[np.bool_] = field(init=False)
    qualifying_spend: F64 = field(init=False)
    qualifying_tier: NDArray[np.int8] = field(init=False)
    requalify_at: F64 = field(init=False)
    # --- her counters (what a report of one shopper shows) ---
    visits: NDArray[np.int32] = field(init=False)
    carts: NDArray[np.int32] = field(init=False)
    carts_abandoned: NDArray[np.int32] = field(init=False)
    carts_recovered: NDArray[np.int32] = field(init=False)
    returns: NDArray[np.int32] = field(init=False)
    ineligible_offers: NDArray[np.int32] = field(init=False)
    contacts: NDArray[np.int32] = field(init=False)  # contacts that could have woken a sleeping dog
    # --- her response log, as a shop keeps it (columns: INCENTIVE_FAMILIES; counts saturate at
    # 255, beyond the 100 at which the envs' observation of them clips) ---
    offers_received: NDArray[np.uint8] = field(init=False)
    offers_redeemed: NDArray[np.uint8] = field(init=False)  # used on an order; a referral: a friend paid
    full_price_orders: NDArray[np.int32] = field(init=False)  # orders no offer applied to
    # --- breadth and trust (sim.mechanisms.breadth, sim.mechanisms.dark_patterns) ---
    categories_bought: NDArray[np.uint64] = field(init=False)  # bit c: she has ordered in category c
    categories_kept: NDArray[np.uint64] = field(init=False)  # bit c: she has kept an order there
    category_weight: NDArray[np.float32] = field(init=False)  # (n, categories), learned from experience
    trust: NDArray[np.float32] = field(init=False)  # 1 until dark patterns take some of it
    price_image: NDArray[np.float32] = field(init=False)  # learned discount depth (mechanisms.price_image)

    def __post_init__(self) -> None:
        n = self.size
        self.alive = np.ones(n, dtype=bool)
        self.hazard = np.zeros(n)
        self.churned_at = np.full(n, np.nan)
        self.last_order_at = self.acquired_at.copy()
        self.last_visit_day = np.full(n, -10, dtype=np.int64)
        self.orders = np.zeros(n, dtype=np.int64)
        self.monetary = np.zeros(n)
        self.points = np.zeros(n, dtype=np.int64)
        self.tier = np.zeros(n, dtype=np.int8)
        self.streak_days = np.zeros(n, dtype=np.int64)
        self.cart_id = np.full(n, -1, dtype=np.int64)
        self.cart_value = np.zeros(n)
        self.cart_category = np.zeros(n, dtype=np.int8)
        self.cart_expires_at = np.full(n, -np.inf)
        self.deliveries = np.zeros(n, dtype=np.int64)
        self.late_deliveries = np.zeros(n, dtype=np.int64)
        self.last_delivery_late = np.zeros(n, dtype=bool)
        self.incentives_received = np.zeros(n, dtype=np.int64)
        self.offer = np.zeros(n, dtype=np.int16)
        self.offer_expires_at = np.full(n, -np.inf)
        self.lapsing_flagged = np.zeros(n, dtype=bool)
        self.reference_ratio = np.ones(n)
        self.promo_share = np.zeros(n)
        self.reference_day = np.zeros(n, dtype=np.int64)
        self.streak_freezes = np.zeros(n, dtype=np.int64)
        self.frustration = np.zeros(n)
        self.recent_purchases = np.zeros(n)
        self.referred_by = np.full(n, -1, dtype=np.int64)
        self.referral_offer = np.zeros(n, dtype=np.int16)
        self.invites_sent = np.zeros(n, dtype=np.int8)
        self.fake_account = np.zeros(n, dtype=bool)
        self.qualifying_spend = np.zeros(n)
        self.qualifying_tier = np.zeros(n, dtype=np.int8)
        self.requalify_at = np.full(n, np.inf)  # set from the membership period when drawn
        self.visits = np.zeros(n, dtype=np.int32)
        self.carts = np.zeros(n, dtype=np.int32)
        self.carts_abandoned = np.zeros(n, dtype=np.int32)
        self.carts_recovered = np.zeros(n, dtype=np.int32)
        self.returns = np.zeros(n, dtype=np.int32)
        self.ineligible_offers = np.zeros(n, dtype=np.int32)
        self.contacts = np.zeros(n, dtype=np.int32)
        self.offers_received = np.zeros((n, len(INCENTIVE_FAMILIES)), dtype=np.uint8)
        self.offers_redeemed = np.zeros((n, len(INCENTIVE_FAMILIES)), dtype=np.uint8)
        self.full_price_orders = np.zeros(n, dtype=np.int32)
        self.categories_bought = np.zeros(n, dtype=np.uint64)
        self.categories_kept = np.zeros(n, dtype=np.uint64)
        self.category_weight = np.zeros((n, self.category_count), dtype=np.float32)
        self.trust = np.ones(n, dtype=np.float32)
        self.price_image = np.zeros(n, dtype=np.float32)

    @property
    def mean_spend(self) -> F64:
        """Expected list value of a basket per shopper (Gamma-Gamma ``p / nu``), set by the scenario."""
        return self.spend_p / self.spend_nu

    def organic_count(self, until_hours: float) -> int:
        """Organic shoppers acquired strictly before ``until_hours`` (their rows are time-sorted)."""
        return int(np.searchsorted(self.acquired_at[: self.planned], until_hours, side="left"))

    def acquired_count(self, until_hours: float) -> int:
        """Shoppers acquired strictly before ``until_hours``: organic so far plus every referred row."""
        return self.organic_count(until_hours) + self.size - self.planned

    def active_rows(self, until_hours: float) -> slice | NDArray[np.int64]:
        """Rows of the shoppers acquired before ``until_hours``: a slice while nobody was referred."""
        organic = self.organic_count(until_hours)
        if self.size == self.planned:
            return slice(0, organic)
        return np.concatenate([np.arange(organic), np.arange(self.planned, self.size)])

    def append(self, other: Population) -> None:
        """Add ``other``'s shoppers as new rows (referred shoppers joining during a run)."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(self, name, np.concatenate([value, getattr(other, name)]))
        self.size += other.size

    def assign(self, rows: NDArray[np.int64], other: Population) -> None:
        """Overwrite ``rows`` with ``other``'s shoppers, traits and state (a journey's next shopper)."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                value[rows] = getattr(other, name)

    def nbytes(self) -> int:
        """Memory held by the population's arrays, in bytes."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def add_counts(counts: NDArray[np.uint8], rows: I64, columns: I64) -> None:
    """Add one to ``counts[row, column]`` per pair (pairs may repeat), saturating at the dtype's max."""
    keep = columns >= 0
    flat = rows[keep] * counts.shape[1] + columns[keep]
    cells, times = np.unique(flat, return_counts=True)
    view = counts.reshape(-1)
    view[cells] = np.minimum(view[cells].astype(np.int64) + times, np.iinfo(counts.dtype).max)


def sample_population(
    scenario: Scenario, rng: np.random.Generator, social_rng: np.random.Generator
) -> Population:
    """Draw every planned shopper's acquisition time and traits, and the social graph from its own stream."""
    n = scenario.population.shoppers
    horizon = scenario.population.acquisition_days * HOURS_PER_DAY
    acquired_at = np.sort(rng.uniform(0.0, horizon, n)) if horizon > 0 else np.zeros(n)
    social = scenario.mechanisms.social
    community, neighbours = community_graph(
        n, social.community_size, social.within_degree, social.across_degree, social_rng
    )
    return draw_shoppers(scenario, acquired_at, community, neighbours, CHANNEL_ORGANIC, rng)


def draw_shoppers(
    scenario: Scenario,
    acquired_at: F64,
    community: NDArray[np.int32],
    neighbours: NDArray[np.int32],
    channel: int,
    rng: np.random.Generator,
) -> Population:
    """Draw the latent traits of shoppers acquired at ``acquired_at``, placed in the social graph."""
    pop = scenario.population
    n = acquired_at.size
    rate_per_week = rng.gamma(pop.purchase.r, 1.0 / pop.purchase.alpha_weeks, n)
    dropout, dropout_rate_per_week = attrition_traits(scenario, rng, n)
    nu = rng.gamma(pop.spend.q, 1.0 / pop.spend.gamma, n)
    return _with_behaviour_traits(
        scenario,
        acquired_at,
        community,
        neighbours,
        channel,
        rng,
        rate_per_week,
        dropout,
        dropout_rate_per_week,
        nu,
    )


def draw_unlinked_shoppers(scenario: Scenario, n: int, channel: int, rng: np.random.Generator) -> Population:
    """``n`` shoppers acquired at time 0 with no social ties (a journey's rows, a valuation sample)."""
    return draw_shoppers(
        scenario, np.zeros(n), np.zeros(n, dtype=np.int32), np.zeros((n, 0), dtype=np.int32), channel, rng
    )


def twin_population(
    scenario: Scenario, twins: Twins, rng: np.random.Generator, social_rng: np.random.Generator
) -> Population:
    """The twins as shoppers at the end of calibration (time 0): posterior traits, real histories.

    Row ``i`` is the customer ``twins.customer_id[i]``, acquired ``T`` weeks before time 0 (so no
    trial order is placed), with her orders, spend and last order as observable state; a twin
    drawn dead stays churned (a win-back offer may still bring her back). Tiers, points and
    streaks start empty: the log does not record them.
    """
    traits = draw_twin_traits(twins, rng)
    acquired_at = -twins.age_weeks * HOURS_PER_DAY * DAYS_PER_WEEK
    social = scenario.mechanisms.social
    community, neighbours = community_graph(
        twins.size, social.community_size, social.within_degree, social.across_degree, social_rng
    )
    population = _with_behaviour_traits(
        scenario,
        acquired_at,
        community,
        neighbours,
        CHANNEL_ORGANIC,
        rng,
        traits.rate_per_week,
        traits.dropout_prob,
        traits.dropout_rate_per_week,
        traits.spend_nu,
        deal_channel=False,
    )
    population.alive = traits.alive.copy()
    population.churned_at = -traits.died_weeks_ago * HOURS_PER_DAY * DAYS_PER_WEEK
    population.last_order_at = -(twins.age_weeks - twins.recency_weeks) * HOURS_PER_DAY * DAYS_PER_WEEK
    population.orders = twins.repeats + 1
    population.monetary = twins.total_spend.copy()
    return population


def _with_behaviour_traits(
    scenario: Scenario,
    acquired_at: F64,
    community: NDArray[np.int32],
    neighbours: NDArray[np.int32],
    channel: int,
    rng: np.random.Generator,
    rate_per_week: F64,
    dropout: F64,
    dropout_rate_per_week: F64,
    nu: F64,
    deal_channel: bool = True,
) -> Population:
    """Shoppers with the given customer-base traits and the scenario's behavioural traits drawn.

    ``deal_channel``: organic shoppers may have come through a deal site (drawn); false for
    twins, whose channel no transaction log records.
    """
    pop = scenario.population
    n = acquired_at.size
    loss_aversion = _lognormal(pop.loss_aversion, n, rng)
    price_sensitivity = _lognormal(pop.price_sensitivity, n, rng)
    streak_sensitivity = _lognormal(pop.streak_sensitivity, n, rng)
    susceptibility = rng.beta(pop.social_susceptibility.a, pop.social_susceptibility.b, n)
    referral = rng.beta(pop.referral_propensity.a, pop.referral_propensity.b, n)
    a = pop.affinity
    affinity = rng.dirichlet([a.hedonic, a.utilitarian, a.social, a.surprise], n).astype(np.float32)
    abuser = rng.random(n) < pop.abuser_share
    z_price = _lognormal_score(pop.price_sensitivity, price_sensitivity)
    channels = np.full(n, channel, dtype=np.int8)
    if channel == CHANNEL_ORGANIC and deal_channel:
        deal = pop.deal_channel
        p_deal = special.expit(special.logit(deal.share) + deal.price_sensitivity_loading * z_price)
        channels[rng.random(n) < p_deal] = CHANNEL_DEAL
    uplift_class = uplift_class_of(
        scenario,
        rng.random(n),
        _gamma_score(pop.purchase.r, pop.purchase.alpha_weeks, rate_per_week),
        z_price,
        channels == CHANNEL_REFERRED,
    )
    winback = _lognormal(pop.winback_sensitivity, n, rng)
    budget = rng.standard_exponential(n)
    classes = pop.uplift.classes()
    checkout_shift = np.array([c.checkout_logit_shift for c in classes])[uplift_class]
    rate_per_day = rate_per_week / DAYS_PER_WEEK
    visit_prob, cart_prob = calibrate_session_rates(
        scenario, rate_per_day, nu, price_sensitivity, loss_aversion, checkout_shift
    )
    population = Population(
        size=n,
        planned=n,
        acquired_at=acquired_at,
        purchase_rate_per_day=rate_per_day,
        dropout_prob=dropout,
        dropout_rate_per_day=dropout_rate_per_week / DAYS_PER_WEEK,
        lifetime_budget=budget,
        spend_nu=nu,
        loss_aversion=loss_aversion,
        price_sensitivity=price_sensitivity,
        streak_sensitivity=streak_sensitivity,
        social_susceptibility=susceptibility,
        referral_propensity=referral,
        affinity=affinity,
        abuser=abuser,
        uplift_class=uplift_class,
        offer_response=np.array([c.offer_response for c in classes])[uplift_class],
        checkout_shift=checkout_shift,
        contact_churn=np.array([c.contact_churn for c in classes])[uplift_class],
        winback_sensitivity=winback,
        channel=channels,
        community=community,
        neighbours=neighbours,
        visit_prob=visit_prob,
        cart_prob=cart_prob,
        spend_p=pop.spend.p,
        category_count=len(scenario.catalog.categories),
    )
    population.requalify_at = acquired_at + scenario.mechanisms.tiers.membership_days * HOURS_PER_DAY
    return population


def attrition_traits(scenario: Scenario, rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    """BG/NBD dropout probabilities and Pareto/NBD dropout rates per week (one of them all zero)."""
    pop = scenario.population
    if pop.attrition == "bgnbd":
        assert pop.purchase.a is not None and pop.purchase.b is not None  # checked at load
        return rng.beta(pop.purchase.a, pop.purchase.b, n), np.zeros(n)
    assert pop.lifetime is not None  # checked at load
    return np.zeros(n), rng.gamma(pop.lifetime.s, 1.0 / pop.lifetime.beta_weeks, n)


def uplift_class_of(
    scenario: Scenario, u: F64, z_rate: F64, z_price: F64, referred: NDArray[np.bool_]
) -> NDArray[np.int8]:
    """Each shopper's uplift class (order of :data:`UPLIFT_CLASSES`), drawn by inverting ``u``.

    Class log-odds are :func:`uplift_intercepts` plus the class's loadings on her standard
    normal purchase-rate and price-sensitivity scores and its shift if she was referred.
    """
    classes = scenario.population.uplift.classes()
    loadings = np.array(
        [[c.purchase_rate_loading, c.price_sensitivity_loading, c.referred_shift] for c in classes]
    )
    drivers = np.column_stack([z_rate, z_price, referred.astype(np.float64)])
    utility = uplift_intercepts(scenario.population.uplift) + drivers @ loadings.T
    utility -= utility.max(axis=1, keepdims=True)
    weights = np.exp(utility)
    cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    return np.minimum((u[:, None] >= cdf).sum(axis=1), len(classes) - 1).astype(np.int8)


@functools.lru_cache(maxsize=64)
def uplift_intercepts(uplift: UpliftParams) -> F64:
    """Class intercepts that give organic shoppers the classes' shares (2-D Gauss-Hermite quadrature).

    Purchase-rate and price-sensitivity scores are independent standard normals by construction,
    so the shares hold for every prior; solved by iterative proportional fitting (read-only).
    """
    classes = uplift.classes()
    share = np.array([c.share for c in classes])
    loadings = np.array([[c.purchase_rate_loading, c.price_sensitivity_loading] for c in classes])
    nodes, weights = np.polynomial.hermite_e.hermegauss(_QUADRATURE_POINTS)
    grid = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), axis=-1).reshape(-1, 2)
    mass = np.outer(weights, weights).reshape(-1) / (2.0 * np.pi)
    present = share > 0
    intercepts = np.where(present, np.log(np.where(present, share, 1.0)), -np.inf)
    for _ in range(_INTERCEPT_ITERATIONS):
        utility = intercepts + grid @ loadings.T
        utility -= utility.max(axis=1, keepdims=True)
        prob = np.exp(utility)
        prob /= prob.sum(axis=1, keepdims=True)
        achieved = mass @ prob
        intercepts[present] += np.log(share[present] / achieved[present])
    intercepts.flags.writeable = False
    return intercepts


def _gamma_score(shape: float, rate: float, x: F64) -> F64:
    """Standard normal score of ``x`` in Gamma(shape, rate): the same quantile on a normal scale."""
    return np.clip(special.ndtri(special.gammainc(shape, rate * x)), -_MAX_SCORE, _MAX_SCORE)


def _lognormal_score(trait: LogNormalTrait, x: F64) -> F64:
    """Standard normal score of lognormal draws of ``trait`` (zeros when it is homogeneous)."""
    if trait.cv == 0.0:
        return np.zeros(x.size)
    sigma2 = np.log1p(trait.cv**2)
    return np.asarray((np.log(x) - np.log(trait.mean) + sigma2 / 2.0) / np.sqrt(sigma2), dtype=np.float64)


def calibrate_session_rates(
    scenario: Scenario,
    rate_per_day: F64,
    nu: F64,
    price_sensitivity: F64,
    loss_aversion: F64,
    checkout_shift: F64,
) -> tuple[F64, F64]:
    """Daily session and add-to-cart probabilities that reproduce each shopper's purchase rate.

    Expected orders per cart come from the checkout logit (with her uplift class's shift)
    integrated over the shopper's Gamma-Gamma basket distribution (quadrature), at the regular
    prices (``catalog.price_index`` 1: her rate is what she buys at them; a price change then
    moves it) with the shop's shipping fees. A shopper needing more than one cart a day is capped
    at one (documented bias).
    """
    s = scenario.sessions
    quantiles = basket_quantiles(scenario.population.spend.p)[None, :]
    base_logit = logit(s.checkout_conversion_at_reference) + checkout_shift
    checkout = np.empty(nu.size)
    for lo in range(0, nu.size, _CALIBRATION_CHUNK):  # chunks bound the temporary memory
        hi = min(lo + _CALIBRATION_CHUNK, nu.size)
        baskets = quantiles / nu[lo:hi, None]
        pay = baskets + shipping_fee(baskets, scenario.shipping.fee, scenario.shipping.free_threshold)
        probability = checkout_probability(
            base_logit[lo:hi, None],
            price_sensitivity[lo:hi, None],
            pay,
            baskets,
            loss_aversion[lo:hi, None],
        )
        checkout[lo:hi] = probability.mean(axis=1)
    # A shopper who can never check out (an extreme scenario) visits and fills a cart every day.
    carts_per_day = rate_per_day / np.maximum(expected_orders_per_cart(checkout, s.cart_return_rate), 1e-12)
    sessions_per_day = carts_per_day / s.add_to_cart_rate
    visit_prob = -np.expm1(-sessions_per_day)
    cart_prob = np.minimum(1.0, carts_per_day / np.maximum(visit_prob, 1e-300))
    return visit_prob, cart_prob
