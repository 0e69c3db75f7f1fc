"""Counterfactual queries by replay: each incentive's effect at one decision, everything else equal."""

from __future__ import annotations

import numpy as np
import pytest

from sim.counterfactual import journey_effects, population_effects
from sim.engine import DecisionBatch
from sim.incentives import IncentiveCatalog
from sim.journeys import JourneyBatch
from sim.params import load_scenario
from sim.population import UPLIFT_CLASSES
from tests.conftest import DEFAULT


def _none(batch: JourneyBatch, rows: np.ndarray) -> np.ndarray:
    return np.zeros(rows.size, dtype=np.int64)


def test_journey_effects_replay_her_past_and_pair_the_arms_by_common_random_numbers():
    scenario = load_scenario(DEFAULT)
    names = IncentiveCatalog(scenario).names
    arms = [0, names.index("coupon_10"), names.index("surprise_box")]
    effects = journey_effects(scenario, 2, 1, [0], 365, _none, incentives=arms, replicates=8)
    assert effects.margin.shape == effects.ltv.shape == (3, 8)
    assert effects.effect("margin")[0] == 0.0 and np.isfinite(effects.effect("ltv")).all()
    again = journey_effects(scenario, 2, 1, [0], 365, _none, incentives=arms, replicates=8)
    np.testing.assert_array_equal(effects.ltv, again.ltv)  # exact replay
    # "none" replayed twice is the same world: zero effect, replicate by replicate.
    twice = journey_effects(scenario, 2, 1, [0], 365, _none, incentives=[0, 0], replicates=8)
    np.testing.assert_array_equal(twice.ltv[0], twice.ltv[1])
    with pytest.raises(ValueError, match="prefix needs"):
        journey_effects(scenario, 2, 2, [0], 365, _none)


def test_a_sleeping_dogs_individual_effect_of_any_contact_is_a_loss():
    scenario = load_scenario(
        DEFAULT,
        {
            "population.uplift.sleeping_dog.contact_churn": 0.9,
            "mechanisms.churn.reactive_contact_share": 1.0,  # an in-session offer is a contact too
        },
    )
    sleeping = UPLIFT_CLASSES.index("sleeping_dog")

    def uplift_class(seed: int) -> int:
        batch = JourneyBatch(scenario, 1, 365)
        batch.reset_rows(np.zeros(1, dtype=np.int64), [np.random.default_rng(seed)])
        return int(batch.pop.uplift_class[0])

    seed = next(s for s in range(200) if uplift_class(s) == sleeping)
    effects = journey_effects(scenario, seed, 0, [], 365, _none, incentives=[0, 1], replicates=16)
    assert effects.effect("ltv")[1] < 0.0


def test_population_effects_change_one_shoppers_incentive_and_nothing_else():
    scenario = load_scenario(DEFAULT, {"population.shoppers": 600, "population.acquisition_days": 10.0})

    def none(batch: DecisionBatch) -> np.ndarray:
        return np.zeros(batch.shoppers.size, dtype=np.int64)

    effects = population_effects(scenario, 4, 40, none, batch=3, position=0, incentives=[0, 0, 1])
    assert effects.margin.shape == (3, 1)
    assert effects.ltv[0, 0] == effects.ltv[1, 0]  # the same world replayed exactly
    with pytest.raises(ValueError, match="decision batches"):
        population_effects(scenario, 4, 40, none, batch=10**6, position=0, incentives=[0])
