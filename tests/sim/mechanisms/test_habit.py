"""Onboarding: early attrition, habit formation, and the onboarding incentives."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.incentives import IncentiveCatalog
from sim.mechanisms.habit import habit_multiplier
from sim.metrics import summarize
from sim.params import load_scenario
from tests.conftest import DEFAULT

ONBOARDING = [
    {"name": "welcome", "kind": "welcome_bundle", "value": 500.0, "valid_days": 14.0},
    {
        "name": "first_bonus",
        "kind": "first_purchase_bonus",
        "value": 10.0,
        "valid_days": 14.0,
        "min_basket": 25.0,
    },
]


def _scenario(n: int = 20000, **overrides: Any):
    specs = [s.model_dump() for s in load_scenario(DEFAULT).incentives] + ONBOARDING
    return load_scenario(DEFAULT, {"population.shoppers": n, "incentives": specs, **overrides})


def _monthly_attrition(**overrides: Any) -> np.ndarray:
    """Share of a day-0 cohort's survivors at each month's start who churn within that month."""
    scenario = _scenario(**{"population.acquisition_days": 0.0, **overrides})
    died_day = (
        Simulation(scenario, seed=0, horizon_days=120, log_level="aggregates").run().pop.churned_at / 24
    )
    return np.array(
        [
            ((died_day >= 30 * m) & (died_day < 30 * (m + 1))).sum() / (~(died_day < 30 * m)).sum()
            for m in range(4)
        ]
    )


def test_habit_forms_over_repeat_orders():
    assert habit_multiplier(np.array([0, 1, 2, 3, 11]), 0.5, 2.0).tolist() == pytest.approx(
        [1.5, 1.5, 1 + 0.5 * np.exp(-0.5), 1 + 0.5 * np.exp(-1.0), 1 + 0.5 * np.exp(-5.0)]
    )


def test_a_repeat_order_lowers_her_hazard_as_a_cause():
    """The same shopper's hazard before and after two repeat orders: x1.5 / x1.18 (default shop)."""
    sim = Simulation(_scenario(200), seed=0, horizon_days=1, log_level="aggregates")
    rows = np.arange(200)
    sim.pop.orders[rows] = 1
    new = sim._hazard_per_day(rows)
    sim.pop.orders[rows] = 3
    assert new / sim._hazard_per_day(rows) == pytest.approx(1.5 / (1 + 0.5 * np.exp(-1.0)))


def test_an_established_base_has_formed_its_habit():
    sim = Simulation(
        _scenario(200, **{"population.first_order_at_acquisition": False}),
        seed=0,
        horizon_days=1,
        log_level="aggregates",
    )
    rows = np.arange(200)
    assert sim._trust_and_habit(rows).tolist() == [1.0] * 200


def test_a_new_cohort_loses_most_in_its_first_month_and_habit_adds_to_sorting():
    """Survivors' monthly attrition falls with tenure (sorting alone: x1.46 from month 1 to 3; with
    habit: x1.64); habit adds about 8 points to the first month."""
    with_habit = _monthly_attrition()
    sorting_only = _monthly_attrition(**{"mechanisms.habit.early_attrition": 0.0})
    assert (np.diff(with_habit) < 0).all() and (np.diff(sorting_only) < 0).all()
    assert with_habit[0] / with_habit[2] > sorting_only[0] / sorting_only[2] > 1.3
    assert with_habit[0] - sorting_only[0] == pytest.approx(0.076, abs=0.03)


def test_onboarding_incentives_are_for_new_shoppers_and_give_what_they_say():
    catalog = IncentiveCatalog(_scenario(100))
    welcome, bonus = catalog.names.index("welcome"), catalog.names.index("first_bonus")
    ids = np.array([welcome, welcome, bonus, bonus], np.int16)
    orders = np.array([1, 2, 0, 5])
    allowed = catalog.eligible(ids, np.zeros(4, np.int64), np.zeros(4, np.int8), 3, orders)
    assert allowed.tolist() == [True, False, True, False]
    terms = catalog.terms(ids, np.array([30.0, 30.0, 30.0, 20.0]))
    assert terms.free_shipping.tolist() == [True, True, False, False]
    assert terms.bonus_points.tolist() == [500, 500, 0, 0]
    assert terms.discount.tolist() == pytest.approx([0.0, 0.0, 10.0, 0.0])  # the last below its $25 floor


def test_a_welcome_bundle_in_the_first_week_makes_more_shoppers_buy_again():
    """At each first-week login of a shopper with only her trial order: +3 to 5 points of repeaters."""
    scenario = _scenario(**{"population.uplift.sleeping_dog.contact_churn": 0.0})
    welcome = [i.name for i in scenario.incentives].index("welcome")
    repeaters = []
    for offer in (0, welcome):
        sim = Simulation(scenario, seed=0, horizon_days=365, log_level="aggregates")

        def first_week(batch: DecisionBatch, sim: Simulation = sim, offer: int = offer) -> np.ndarray:
            tenure_days = (sim.now_hours - sim.pop.acquired_at[batch.shoppers]) / 24
            new = (batch.kind == "login") & (sim.pop.orders[batch.shoppers] <= 1) & (tenure_days < 8)
            return np.where(new, offer, 0)

        sim.run(first_week)
        rows = sim.acquired_rows()
        repeaters.append(float((sim.pop.orders[rows] >= 2).mean()))
        assert summarize(sim)["incentive_cost"] >= 0
    assert repeaters[1] - repeaters[0] == pytest.approx(0.04, abs=0.015)


def test_both_clocks_let_the_shop_act_at_a_new_shoppers_first_session():
    """Her trial order is her first session: a login decision right then, in the engine and a journey."""
    scenario = _scenario(500, **{"population.acquisition_days": 10.0})
    sim = Simulation(scenario, seed=0, horizon_days=12, log_level="aggregates")
    first_decision = np.full(500, np.inf)

    def record(batch: DecisionBatch) -> np.ndarray:
        if batch.kind == "login":
            fresh = batch.shoppers[np.isinf(first_decision[batch.shoppers])]
            assert (sim.pop.orders[fresh] == 1).all()  # her trial order, nothing more yet
            first_decision[fresh] = batch.time_hours
        return np.zeros(batch.shoppers.size, np.int64)

    sim.run(record)
    acquired = sim.pop.acquired_at[:500]
    batch_hours = scenario.engine.session_batch_hours
    # Decided at the end of the session batch of her acquisition.
    assert (first_decision - acquired <= batch_hours + 1e-9).all() and (first_decision > acquired).all()

    env = gym.make("shopgym/ShopperJourney-v0", overrides={"incentives": scenario.model_dump()["incentives"]})
    for seed in range(5):
        _, info = env.reset(seed=seed)
        batch = env.unwrapped.task.batch
        assert info["decision_kind"] == "login"
        assert batch.now_hours(np.array([0]))[0] == batch.pop.acquired_at[0] and batch.pop.orders[0] == 1
        assert env.unwrapped.action_masks()[[i.name for i in scenario.incentives].index("welcome")]
