"""Breadth: category choice, learning from experience, cross-buying's upside and its downside."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.incentives import IncentiveCatalog
from sim.mechanisms.breadth import (
    NEW_CATEGORY,
    category_bit,
    choose_categories,
    count_categories,
    cross_buying_multiplier,
    steering,
)
from sim.metrics import summarize
from sim.params import ScenarioError, load_scenario
from tests.conftest import DEFAULT

CROSS_SELL = [
    {"name": "cross_new_15", "kind": "cross_sell", "value": 0.15, "category": "new", "valid_days": 14.0},
    {
        "name": "cross_beauty_15",
        "kind": "cross_sell",
        "value": 0.15,
        "category": "beauty",
        "valid_days": 14.0,
    },
]
SHARES = np.array([0.35, 0.20, 0.25, 0.20])  # the default catalogue: apparel, electronics, home, beauty


def _scenario(n: int = 20000, **overrides: Any):
    specs = [s.model_dump() for s in load_scenario(DEFAULT).incentives] + CROSS_SELL
    return load_scenario(DEFAULT, {"population.shoppers": n, "incentives": specs, **overrides})


def _run(scenario, give: str | None = None, seed: int = 0, days: int = 365) -> Simulation:
    offer = 0 if give is None else [i.name for i in scenario.incentives].index(give)

    def at_login(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, offer if batch.kind == "login" else 0)

    return Simulation(scenario, seed=seed, horizon_days=days, log_level="aggregates").run(decide=at_login)


# ---- the pure rules ---------------------------------------------------------------------------------
def test_category_choice_follows_the_shares_at_zero_weight_and_a_weight_multiplies_the_odds():
    rng = np.random.default_rng(0)
    n = 200_000
    u = rng.random(n)
    flat = choose_categories(np.log(SHARES), np.zeros((n, 4)), u)
    assert np.bincount(flat, minlength=4) / n == pytest.approx(SHARES, abs=0.005)
    # A weight of 0.5 on beauty multiplies its odds against every other category by e^0.5.
    weight = np.zeros((n, 4))
    weight[:, 3] = 0.5
    moved = np.bincount(choose_categories(np.log(SHARES), weight, u), minlength=4) / n
    expected = SHARES[3] * np.exp(0.5) / (1.0 - SHARES[3] + SHARES[3] * np.exp(0.5))
    assert moved[3] == pytest.approx(expected, abs=0.005)


def test_a_cross_sell_coupon_steers_by_its_saving_in_checkout_logit_units():
    bought = category_bit(np.array([0, 0, 1]))  # each has bought in one category
    pull = np.array([0.6, 0.6, 0.6])
    steer = steering(np.array([3, NEW_CATEGORY, -1]), bought, 4, pull)
    assert steer.tolist() == [[0, 0, 0, 0.6], [0, 0.6, 0.6, 0.6], [0, 0, 0, 0]]


def test_cross_buying_lift_counts_kept_categories_beyond_the_first_up_to_the_cap():
    kept = np.array([0, 1, 2, 4, 10])
    assert cross_buying_multiplier(kept, 0.08, 3).tolist() == pytest.approx([1, 1, 1.08, 1.24, 1.24])


def test_a_cross_sell_coupon_names_a_catalogue_category_or_new():
    with pytest.raises(ScenarioError, match="category 'toys' is not in the catalogue"):
        _scenario(incentives=[{"name": "none", "kind": "none"}, {**CROSS_SELL[1], "category": "toys"}])
    with pytest.raises(ScenarioError, match="category is required for kind cross_sell"):
        _scenario(incentives=[{"name": "none", "kind": "none"}, {**CROSS_SELL[0], "category": None}])


def test_a_cross_sell_coupon_discounts_only_carts_in_its_category():
    catalog = IncentiveCatalog(_scenario(100))
    ids = {name: i for i, name in enumerate(catalog.names)}
    offer = np.array([ids["cross_beauty_15"]] * 2 + [ids["cross_new_15"]] * 2, np.int16)
    category = np.array([3, 0, 0, 1])
    bought = category_bit(np.array([0, 0, 0, 0]))  # each has bought apparel only
    terms = catalog.terms(offer, np.full(4, 40.0), category, bought)
    assert terms.discount.tolist() == pytest.approx([6.0, 0.0, 0.0, 6.0])
    # Without the cart's category (an expectation that cannot see it) it applies to none.
    assert not catalog.terms(offer, np.full(4, 40.0)).applies.any()


# ---- experience, in the shop's own rules -------------------------------------------------------------
def test_a_kept_first_order_raises_buying_in_its_category_and_a_return_lowers_it():
    """A first order kept adds ``experience_gain`` (0.5) to the category's weight, a return takes 0.5."""
    sim = Simulation(_scenario(3000), seed=0, horizon_days=1, log_level="aggregates")
    shoppers = np.arange(3000)
    beauty = np.full(3000, 3)
    kept, sent_back = shoppers[:1500], shoppers[1500:]
    sim._learn_categories(kept, beauty[:1500], np.zeros(1500, bool))
    sim._learn_categories(sent_back, beauty[1500:], np.ones(1500, bool))
    assert sim.pop.category_weight[kept, 3] == pytest.approx(0.5)
    assert sim.pop.category_weight[sent_back, 3] == pytest.approx(-0.5)
    assert count_categories(sim.pop.categories_kept[kept]).tolist() == [1] * 1500
    # A second kept order there teaches her nothing new; a second return lowers it again.
    sim._learn_categories(kept, beauty[:1500], np.zeros(1500, bool))
    assert sim.pop.category_weight[kept, 3] == pytest.approx(0.5)
    u = np.random.default_rng(1).random(3000)
    chosen = sim._categories(shoppers, u, 0.0)
    up, down = (chosen[:1500] == 3).mean(), (chosen[1500:] == 3).mean()
    odds = SHARES[3] * np.exp(0.5) / (1 - SHARES[3] + SHARES[3] * np.exp(0.5))
    assert up == pytest.approx(odds, abs=0.035)  # 0.29 against the share's 0.20
    assert down == pytest.approx(
        SHARES[3] * np.exp(-0.5) / (1 - SHARES[3] + SHARES[3] * np.exp(-0.5)), abs=0.03
    )


# ---- the literature's sizes in a year of the default shop ---------------------------------------------
@pytest.fixture(scope="module")
def year() -> dict[str, Simulation]:
    """The default shop with no incentives, the same shop without the cross-buying lift, and a cross-sell."""
    base = _scenario()
    return {
        "none": _run(base),
        "no_lift": _run(_scenario(**{"mechanisms.breadth.cross_buying_lift": 0.0})),
        "cross_sell": _run(base, "cross_new_15"),
    }


def test_cross_buyers_are_worth_more_and_about_one_in_eight_is_unprofitable_mostly_heavy_returners(year):
    """Kumar, George & Pancras 2008: cross-buyers order more and are worth more. Shah et al. 2012:
    10-35% of cross-buyers were unprofitable, above all heavy returners (measured: 13%; serial
    returners 40% against 13% for the rest)."""
    sim = year["none"]
    rows, pop = sim.acquired_rows(), sim.pop
    count = count_categories(pop.categories_bought[rows])
    margin = sim.ledger.margin_pv[rows]
    cross, single = count >= 2, count == 1
    assert pop.orders[rows][cross].mean() > 3 * pop.orders[rows][single].mean()
    assert margin[cross].mean() > 2.5 * margin[single].mean()
    unprofitable = (margin[cross] < 0).mean()
    assert 0.10 <= unprofitable <= 0.35
    returners = pop.abuser[rows]
    assert (margin[cross & returners] < 0).mean() > 2 * (margin[cross & ~returners] < 0).mean()


def test_the_cross_buying_lift_adds_orders_as_a_cause_but_far_less_than_the_correlation(year):
    """Same shoppers, same draws: the lift (8% per kept category) adds about 1.7% of orders."""
    with_lift, without = summarize(year["none"]), summarize(year["no_lift"])
    gain = with_lift["orders"] / without["orders"] - 1.0
    assert 0.005 < gain < 0.04


def test_a_cross_sell_coupon_raises_the_cross_buying_share_by_about_two_fifths(year):
    base, treated = summarize(year["none"]), summarize(year["cross_sell"])
    assert base["cross_buying_share"] == pytest.approx(0.20, abs=0.03)
    assert treated["cross_buying_share"] / base["cross_buying_share"] == pytest.approx(1.4, abs=0.15)
    assert treated["categories_per_shopper"] > base["categories_per_shopper"]
    assert treated["incentive_cost"] > 20 * base["incentive_cost"]  # every discount is booked
