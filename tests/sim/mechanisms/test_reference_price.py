"""Reference prices: a year of coupons lowers reference prices, full-price conversion and margin."""

from __future__ import annotations

import numpy as np
import pytest

from sim.behaviour import checkout_probability, logit
from sim.engine import DecisionBatch, Simulation
from sim.mechanisms.reference_price import effective_price_sensitivity, update_reference
from sim.metrics import summarize
from sim.params import load_scenario
from tests.conftest import DEFAULT


def test_reference_moves_towards_paid_share_and_promotions_raise_sensitivity():
    ref, promo = update_reference(np.array([1.0]), np.array([0.0]), np.array([0.8]), np.array([True]), 0.3)
    assert ref[0] == pytest.approx(0.94) and promo[0] == pytest.approx(0.3)
    assert effective_price_sensitivity(np.array([3.0]), promo, 1.0)[0] == pytest.approx(3.9)


def _full_price_conversion(sim: Simulation) -> float:
    """Model checkout probability of alive shoppers for a $60 basket at list price, free shipping."""
    pop, n = sim.pop, sim.acquired()
    alive = np.flatnonzero(pop.alive[:n])
    mech = sim.scenario.mechanisms.reference_price
    sensitivity = effective_price_sensitivity(
        pop.price_sensitivity[alive], pop.promo_share[alive], mech.promo_sensitivity
    )
    basket = np.full(alive.size, 60.0)
    p = checkout_probability(
        logit(sim.scenario.sessions.checkout_conversion_at_reference),
        sensitivity,
        basket,
        basket * pop.reference_ratio[alive],
        pop.loss_aversion[alive],
    )
    return float(p.mean())


def test_year_of_twenty_percent_off_for_everyone_lowers_reference_prices_full_price_conversion_and_margin():
    scenario = load_scenario(DEFAULT, {"population.shoppers": 3000, "population.acquisition_days": 120.0})
    coupon = [i.name for i in scenario.incentives].index("coupon_20")

    def coupons_for_all(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, coupon if batch.kind == "login" else 0)

    promoted = Simulation(scenario, seed=4, horizon_days=365, log_level="aggregates").run(
        decide=coupons_for_all
    )
    control = Simulation(scenario, seed=4, horizon_days=365, log_level="aggregates").run()
    n = control.acquired()
    buyers = control.pop.orders[:n] > 1
    # Reference prices drift back to the posted price within weeks (a 30-day half-life: post-
    # promotion dips are small, Van Heerde, Leeflang & Wittink 2000); promotion sensitivity stays.
    assert promoted.pop.reference_ratio[:n][buyers].mean() < 0.95
    assert control.pop.reference_ratio[:n][buyers].mean() > 0.99  # only points redemptions lower it
    assert promoted.pop.promo_share[:n][buyers].mean() > 0.3 > control.pop.promo_share[:n][buyers].mean()
    assert _full_price_conversion(promoted) < _full_price_conversion(control) - 0.05
    assert summarize(promoted)["margin"] < summarize(control)["margin"]


def test_neutral_reference_keeps_full_price_conversion():
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 1000,
            "population.acquisition_days": 30.0,
            "mechanisms.reference_price": {"smoothing": 0.0, "promo_sensitivity": 0.0},
        },
    )
    coupon = [i.name for i in scenario.incentives].index("coupon_20")
    sim = Simulation(scenario, seed=1, horizon_days=90, log_level="aggregates")
    sim.run(decide=lambda b: np.full(b.shoppers.size, coupon))
    assert (sim.pop.reference_ratio == 1.0).all() and (sim.pop.promo_share == 0.0).all()
