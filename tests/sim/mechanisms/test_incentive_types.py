"""Hedonic, surprise and streak incentives: eligibility, costs, affinity and the direction of effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.incentives import IncentiveCatalog
from sim.mechanisms.affinity import affinity_factor, surprise_value
from sim.metrics import summarize
from sim.params import load_scenario
from tests.conftest import DEFAULT


def _scenario(**overrides: object):
    # Every shopper is contacted at every login here: sleeping dogs' contact churn would swamp
    # the effects under test (it has its own tests in tests/sim/test_causal.py).
    return load_scenario(
        DEFAULT,
        {
            "population.shoppers": 4000,
            "population.acquisition_days": 10.0,
            "population.uplift.sleeping_dog.contact_churn": 0.0,
            **overrides,
        },
    )


def _offer_at_login(name: str, seed: int = 0, days: int = 60, **overrides: object) -> Simulation:
    scenario = _scenario(**overrides)
    offer = [i.name for i in scenario.incentives].index(name)

    def at_login(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, offer if batch.kind == "login" else 0)

    return Simulation(scenario, seed=seed, horizon_days=days).run(decide=at_login)


def test_eligibility_rules():
    scenario = _scenario()
    catalog = IncentiveCatalog(scenario)
    ids = {name: i for i, name in enumerate(catalog.names)}
    chosen = np.array(
        [ids["tier_perk"], ids["tier_perk"], ids["streak_freeze"], ids["streak_bonus_200"], ids["coupon_10"]],
        np.int16,
    )
    streak = np.array([0, 0, 2, 5, 0])
    tier = np.array([0, 1, 0, 0, 0], np.int8)
    assert catalog.eligible(chosen, streak, tier, 3, np.full(5, 4)).tolist() == [
        False,
        True,
        False,
        True,
        True,
    ]


def test_affinity_scales_appeal_around_one_and_surprise_gifts_vary_around_their_value():
    affinity = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]], np.float32)
    factor = affinity_factor(affinity, np.array([0, 0]), 1.0)
    assert factor[0] == pytest.approx(2.8) and factor[1] == pytest.approx(0.4)
    assert affinity_factor(affinity, np.array([0, -1]), 1.0)[1] == 1.0
    assert (affinity_factor(affinity, np.array([0, 3]), 0.0) == 1.0).all()
    assert surprise_value(np.array([10.0, 10.0]), np.array([0.0, 0.999])).tolist() == pytest.approx(
        [5.0, 14.99]
    )


def test_tier_perks_go_only_to_tier_members_and_cost_their_cost_ratio_on_redemption():
    sim = _offer_at_login("tier_perk", days=120)
    log = sim.log.to_frame()
    perk = [i.name for i in sim.scenario.incentives].index("tier_perk")
    offered = log[(log["event"] == "incentive_offered") & (log["incentive"] == perk)]
    redeemed = log[(log["event"] == "incentive_redeemed") & (log["incentive"] == perk)]
    assert len(offered) > 50 and len(redeemed) > 20
    assert (sim.daily.to_frame()["ineligible_offers"].sum()) > 0  # tier-0 shoppers were refused
    # Every redemption costs the shop perk_cost_ratio x value: 0.4 x $15 = $6.
    assert np.allclose(redeemed["amount"], 6.0)


def _paired_checkout_conversion(name: str, **overrides: object) -> float:
    """Checkout conversion with the offer at every login minus without it (same seed)."""
    treated = summarize(_offer_at_login(name, **overrides))
    control = summarize(_offer_at_login("none", **overrides))
    return control["checkout_abandonment_rate"] - treated["checkout_abandonment_rate"]


def test_surprise_box_lifts_conversion_more_with_an_uncertainty_premium_and_costs_about_half_its_value():
    premium = _paired_checkout_conversion("surprise_box")
    no_premium = _paired_checkout_conversion(
        "surprise_box", **{"mechanisms.incentive_types.uncertainty_premium": 0.0}
    )
    assert premium > no_premium > 0
    log = _offer_at_login("surprise_box").log.to_frame()
    box = [i.name for i in _scenario().incentives].index("surprise_box")
    costs = log[(log["event"] == "incentive_redeemed") & (log["incentive"] == box)]["amount"]
    assert len(costs) > 100
    assert costs.min() >= 2.5 and costs.max() <= 7.5  # U(0.5, 1.5) x $10 x 0.5, in whole cents
    assert costs.mean() == pytest.approx(5.0, abs=0.3)


def test_shoppers_with_more_surprise_affinity_respond_more_to_surprise_boxes():
    treated = _offer_at_login("surprise_box", days=60)
    control = _offer_at_login("none", days=60)

    def conversion_by_affinity(sim: Simulation) -> pd.Series:
        log = sim.log.to_frame()
        carts = log[log["event"] == "cart"].groupby("shopper_id").size()
        abandons = (
            log[log["event"] == "abandon"].groupby("shopper_id").size().reindex(carts.index, fill_value=0)
        )
        surprise_affinity = pd.Series(sim.pop.affinity[carts.index.to_numpy(), 3], index=carts.index)
        high = surprise_affinity > surprise_affinity.quantile(0.75)
        return pd.Series(
            {
                "high": 1 - abandons[high].sum() / carts[high].sum(),
                "low": 1 - abandons[~high].sum() / carts[~high].sum(),
            }
        )

    lift = conversion_by_affinity(treated) - conversion_by_affinity(control)
    assert lift["high"] > lift["low"] + 0.02


def test_streak_bonus_raises_next_day_visits_and_pays_only_when_the_streak_holds():
    overrides = {"population.purchase": {"r": 4.0, "alpha_weeks": 2.0, "a": 0.8, "b": 8.0}}
    treated = _offer_at_login("streak_bonus_200", days=40, **overrides)
    control = _offer_at_login("none", days=40, **overrides)
    assert summarize(treated)["visits"] > summarize(control)["visits"]
    log = treated.log.to_frame()
    bonus = [i.name for i in treated.scenario.incentives].index("streak_bonus_200")
    paid = log[(log["event"] == "incentive_redeemed") & (log["incentive"] == bonus)]
    assert len(paid) > 50 and np.allclose(paid["amount"], 2.0)  # 200 points x $0.01
