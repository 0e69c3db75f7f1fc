"""The causal model: what a policy changes moves shoppers the way field evidence says, as a cause.

Each test pairs runs by common random numbers (the same seed: the same shoppers, draws and
lifetime budgets), so a difference is the effect of the one input changed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.journeys import DONE, JourneyBatch
from sim.metrics import summarize
from sim.params import Scenario, load_scenario
from sim.population import UPLIFT_CLASSES
from tests.conftest import DEFAULT, force_orders

#: Capacity far above demand: deliveries come on the queue-free schedule whatever is ordered.
AMPLE = {
    "warehouse.pick_capacity_per_1k_shoppers": 1000.0,
    "shipping.carrier_capacity_per_1k_shoppers": 1000.0,
}


def _forced_order_run(
    scenario: Scenario, seed: int, force: bool
) -> tuple[np.ndarray, np.ndarray, Simulation]:
    """Run a year; at the first decision after day 120, even-numbered alive shoppers may be made to order."""
    sim = Simulation(scenario, seed=seed, horizon_days=365, log_level="aggregates")
    forced = before = None
    while (batch := sim.next_decision()) is not None:
        if forced is None and batch.time_hours >= 120 * 24:
            n = sim.acquired()
            rows = np.arange(n)
            forced = rows[sim.pop.alive[:n] & (rows % 2 == 0)]
            before = sim.pop.orders.copy()
            if force:
                force_orders(sim, forced, np.full(forced.size, batch.time_hours))
        sim.submit(np.zeros(batch.shoppers.size, np.int64))
    assert forced is not None and before is not None
    return forced, before, sim


@pytest.mark.slow
def test_forced_extra_order_does_not_lower_survival_or_future_orders():
    """Buying never causes churn: a forced order at day 120 leaves survival and later buying intact.

    Paired by common random numbers over 2 seeds x ~1,000 forced shoppers, with capacity to
    deliver on time. Orders from day 120 on (the forced one included) rise by about one (some
    of the next orders are pulled forward by the need state); the share alive at day 365 does
    not fall (on-time deliveries and tier perks even lower the hazard a little).
    """
    scenario = load_scenario(DEFAULT, {"population.shoppers": 10_000, **AMPLE})
    extra_orders, survival = [], []
    for seed in (0, 1):
        forced, before, treated = _forced_order_run(scenario, seed, force=True)
        same, before_control, control = _forced_order_run(scenario, seed, force=False)
        assert (forced == same).all() and forced.size > 400
        later = treated.pop.orders[forced] - before[forced]
        later_control = control.pop.orders[forced] - before_control[forced]
        extra_orders.append(float((later - later_control).mean()))
        survival.append(float(treated.pop.alive[forced].mean() - control.pop.alive[forced].mean()))
    assert 0.6 < np.mean(extra_orders) <= 1.2
    assert np.mean(survival) >= -0.005


def test_uplift_classes_exist_in_their_documented_shares():
    scenario = load_scenario(DEFAULT)
    sim = Simulation(scenario, seed=0, horizon_days=1, log_level="aggregates")
    shares = np.bincount(sim.pop.uplift_class, minlength=4) / sim.pop.size
    documented = [c.share for c in scenario.population.uplift.classes()]
    assert shares.tolist() == pytest.approx(documented, abs=0.015)
    assert UPLIFT_CLASSES == ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


def _churn_by_class(
    name: str, kind: str, overrides: dict[str, object] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Churn by uplift class after 120 days with ``name`` given at every ``kind`` decision, and who got it.

    Returns (churned, contacted): per shopper, for the shoppers acquired.
    """
    scenario = load_scenario(
        DEFAULT, {"population.shoppers": 6000, "population.acquisition_days": 30.0, **(overrides or {})}
    )
    offer = [i.name for i in scenario.incentives].index(name)
    sim = Simulation(scenario, seed=5, horizon_days=120, log_level="aggregates")
    sim.run(decide=lambda b: np.full(b.shoppers.size, offer if b.kind == kind else 0))
    n = sim.acquired()
    return ~sim.pop.alive[:n], sim.pop.incentives_received[:n] > 0


def _by_class(values: np.ndarray, who: np.ndarray, group: np.ndarray) -> np.ndarray:
    return np.array([values[who & (group == k)].mean() for k in range(4)])


def test_proactive_contact_raises_sleeping_dogs_churn_and_no_other_class_is_driven_away():
    """Ascarza, Iyengar & Schleicher 2016: a proactive contact raised 3-month churn 6.4% -> 10.0%.

    The same shoppers (common random numbers) with and without a points bonus sent when they
    lapse: among those it reached, sleeping dogs quit far more often, the other classes do not.
    """
    churned, contacted = _churn_by_class("bonus_500_points", "lapsing")
    untouched, _ = _churn_by_class("none", "lapsing")
    group = Simulation(
        load_scenario(DEFAULT, {"population.shoppers": 6000, "population.acquisition_days": 30.0}),
        seed=5,
        horizon_days=1,
        log_level="aggregates",
    ).pop.uplift_class[: churned.size]
    sleeping = UPLIFT_CLASSES.index("sleeping_dog")
    # Among those it reached who would still be active without it (a lapsing shopper may have
    # quit already: a contact cannot drive her away again), churn with it against without.
    survivors = contacted & ~untouched
    lift = _by_class(churned, survivors, group) - _by_class(untouched, survivors, group)
    assert lift[sleeping] > 0.6  # a 0.85 chance at a first contact
    others = [k for k in range(4) if k != sleeping]
    assert (lift[others] <= 0.02).all()


def _established_churn(seed: int, contact: bool) -> tuple[np.ndarray, Simulation]:
    """Alive shoppers with 3+ orders and 180+ days' tenure at day 300; all contacted, or none."""
    scenario = load_scenario(DEFAULT, {"population.shoppers": 12_000})
    sim = Simulation(scenario, seed=seed, horizon_days=300 + 90, log_level="aggregates")
    chosen = None
    while (batch := sim.next_decision()) is not None:
        if chosen is None and batch.time_hours >= 300 * 24:
            n = sim.acquired()
            tenure_days = (batch.time_hours - sim.pop.acquired_at[:n]) / 24
            chosen = np.flatnonzero(sim.pop.alive[:n] & (sim.pop.orders[:n] >= 3) & (tenure_days >= 180))
            if contact:
                sim._contact(chosen, np.full(chosen.size, batch.time_hours), proactive=True)
        sim.submit(np.zeros(batch.shoppers.size, np.int64))
    assert chosen is not None
    return chosen, sim


@pytest.mark.slow
def test_proactive_contact_multiplies_established_shoppers_churn_by_ascarzas_relative_size():
    """Ascarza, Iyengar & Schleicher 2016: 3-month churn x1.56 (6.4% -> 10.0%) among the contacted.

    Established shoppers here churn more: 18.3% in 90 days (3 x 20,000 shoppers, docs/MODEL.md),
    so x1.56 is about +10 points, carried by the 15% of sleeping dogs (contact churn 0.85).
    Paired by common random numbers: the same shoppers with and without one proactive contact.
    """
    base, contacted = [], []
    for seed in (0, 1):
        chosen, treated = _established_churn(seed, contact=True)
        same, control = _established_churn(seed, contact=False)
        assert np.array_equal(chosen, same) and chosen.size > 300
        base.append((~control.pop.alive[chosen]).sum())
        contacted.append((~treated.pop.alive[chosen]).sum())
    ratio = sum(contacted) / sum(base)
    assert 1.35 < ratio < 1.8, ratio


def test_offers_in_a_session_do_not_wake_sleeping_dogs_unless_the_reactive_share_says_so():
    """Reactive offers (login) carry ``reactive_contact_share`` of the contact churn: 0 by default."""
    churned, contacted = _churn_by_class("bonus_500_points", "login")
    untouched, _ = _churn_by_class("none", "login")
    share = {"mechanisms.churn.reactive_contact_share": 1.0}
    churned_all, _ = _churn_by_class("bonus_500_points", "login", share)
    untouched_all, _ = _churn_by_class("none", "login", share)
    sleeping = Simulation(
        load_scenario(DEFAULT, {"population.shoppers": 6000, "population.acquisition_days": 30.0}),
        seed=5,
        horizon_days=1,
        log_level="aggregates",
    ).pop.uplift_class[: churned.size] == UPLIFT_CLASSES.index("sleeping_dog")
    dogs = contacted & sleeping
    assert churned[dogs].mean() <= untouched[dogs].mean() + 0.03  # a session offer: no contact churn
    assert churned_all[dogs].mean() > untouched_all[dogs].mean() + 0.08  # every offer a contact


def test_repeated_contacts_saturate():
    """Each earlier contact multiplies the next one's churn chance by ``contact_saturation``."""
    from sim.shop.incentives import contact_churn_now

    scenario = load_scenario(DEFAULT)
    chance = contact_churn_now(np.full(4, 0.85), np.arange(4, dtype=np.int32), scenario.mechanisms.churn)
    np.testing.assert_allclose(chance, 0.85 * 0.5 ** np.arange(4))
    sim = Simulation(load_scenario(DEFAULT, {"population.shoppers": 200}), seed=0, horizon_days=1)
    dogs = np.flatnonzero(sim.pop.contact_churn > 0)[:5]
    sim.pop.lifetime_budget[dogs] = np.inf  # nobody leaves: watch the hazard each contact adds
    added = []
    for _ in range(3):
        before = sim.pop.hazard[dogs].copy()
        sim._contact(dogs, np.zeros(dogs.size), proactive=True)
        added.append(float((sim.pop.hazard[dogs] - before).mean()))
    assert added[0] > added[1] > added[2] > 0.0
    assert added[1] == pytest.approx(-np.log1p(-0.425), rel=1e-9)  # the second contact: half the chance


def _recovery_by_class(scenario: Scenario, action: int, n: int = 1500) -> np.ndarray:
    """Share of abandoned carts bought on the cart-abandonment timer, per uplift class."""
    batch = JourneyBatch(scenario, n, 180, neighbour_signal=0.0)
    rows = np.arange(n)  # one generator per shopper: the same shoppers under every action
    batch.reset_rows(rows, [np.random.default_rng([9, i]) for i in range(n)])
    batch.advance(rows)
    while (waiting := rows[batch.phase != DONE]).size:
        batch.submit(waiting, np.full(waiting.size, action))
        batch.advance(waiting)
    pop = batch.pop
    abandoned = np.bincount(pop.uplift_class, pop.carts_abandoned, minlength=4)
    recovered = np.bincount(pop.uplift_class, pop.carts_recovered, minlength=4)
    return recovered / np.maximum(abandoned, 1)


def test_persuadables_conversion_rises_with_the_offer_and_sure_things_barely_move():
    scenario = load_scenario(
        DEFAULT,
        {"population.uplift.sleeping_dog.contact_churn": 0.0, "engine.decision_points": ["cart_abandoned"]},
    )
    names = [i.name for i in scenario.incentives]
    none, ten, twenty = (
        _recovery_by_class(scenario, names.index(a)) for a in ("none", "coupon_10", "coupon_20")
    )
    persuadable, sure_thing = UPLIFT_CLASSES.index("persuadable"), UPLIFT_CLASSES.index("sure_thing")
    assert none[persuadable] < ten[persuadable] < twenty[persuadable]
    assert twenty[persuadable] > 1.5 * none[persuadable]
    lift = twenty / none - 1.0
    assert lift[sure_thing] < 0.25 * lift[persuadable]


def _year(overrides: dict[str, object], seed: int) -> dict[str, float]:
    scenario = load_scenario(DEFAULT, overrides)
    return summarize(Simulation(scenario, seed=seed, horizon_days=365, log_level="aggregates").run())


def test_permanent_ten_percent_price_cut_has_annual_demand_elasticity_in_minus_four_to_minus_one_and_half():
    """Bijmolt, van Heerde & Pieters 2005: mean price elasticity -2.62, mostly -1.5 to -4.

    Demand is repeat orders: acquisitions (with their trial orders) do not depend on the shop's
    prices in this model. The cut lowers posted prices for everyone, for the whole year; the
    free-shipping threshold stays at $50, so some baskets fall below it.
    """
    regular = _year({}, seed=0)["repeat_orders"]
    cut = _year({"catalog.price_index": 0.9}, seed=0)["repeat_orders"]
    elasticity = (cut / regular - 1.0) / -0.10
    assert -4.0 <= elasticity <= -1.5


def test_a_third_of_new_shoppers_order_again_within_a_year():
    """Industry repeat-purchase figures put the share of first-time buyers who buy again at ~27-32%."""
    scenario = load_scenario(DEFAULT, {"population.acquisition_days": 0.0, **AMPLE})
    sim = Simulation(scenario, seed=1, horizon_days=365, log_level="aggregates").run()
    repeat_share = float((sim.pop.orders[: sim.acquired()] >= 2).mean())
    assert 0.25 <= repeat_share <= 0.45


def test_post_promotion_reference_dip_fades_within_weeks_while_promotion_sensitivity_lasts():
    """Van Heerde, Leeflang & Wittink 2000: small, short dips; Mela, Gupta & Lehmann 1997: years."""
    from sim.mechanisms.reference_price import faded

    params = load_scenario(DEFAULT).mechanisms.reference_price
    ratio = faded(np.array([0.8]), 1.0, params.memory_half_life_days, np.array([60.0]))[0]
    promo = faded(np.array([0.5]), 0.0, params.promo_memory_half_life_days, np.array([60.0]))[0]
    assert ratio == pytest.approx(0.95) and promo > 0.4


def _paired(decide: Callable[[DecisionBatch], np.ndarray], seed: int) -> dict[str, float]:
    scenario = load_scenario(DEFAULT, {"population.shoppers": 6000})
    return summarize(Simulation(scenario, seed=seed, horizon_days=365, log_level="aggregates").run(decide))


def test_unredeemed_offers_still_bring_shoppers_back():
    """The advertising effect (Sahni, Zou & Chintagunta 2017): holding an offer raises visits."""
    on = load_scenario(DEFAULT, {"population.shoppers": 3000, "population.acquisition_days": 30.0})
    off = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 3000,
            "population.acquisition_days": 30.0,
            "mechanisms.advertising.visit_lift": 0.0,
        },
    )
    coupon = [i.name for i in on.incentives].index("coupon_5usd")

    def visits(scenario: Scenario) -> int:
        sim = Simulation(scenario, seed=2, horizon_days=60, log_level="aggregates")
        sim.run(decide=lambda b: np.full(b.shoppers.size, coupon if b.kind == "cart_abandoned" else 0))
        return int(summarize(sim)["visits"])

    assert visits(on) > 1.01 * visits(off)
