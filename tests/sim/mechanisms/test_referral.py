"""Referral: bonuses grow the population through the graph; the fraud floor stops abusers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.mechanisms.referral import fake_accounts
from sim.metrics import summarize
from sim.params import load_scenario
from sim.population import CHANNEL_REFERRED
from tests.conftest import DEFAULT


def _referral_run(
    min_basket: float, abuser_share: float = 0.02, bonus: bool = True, seed: int = 0
) -> Simulation:
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 3000,
            "population.acquisition_days": 20.0,
            "population.abuser_share": abuser_share,
            "incentives": [
                {"name": "none", "kind": "none"},
                {"name": "referral", "kind": "referral_bonus", "value": 10.0, "min_basket": min_basket},
            ],
        },
    )

    def refer_at_login(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, 1 if bonus and batch.kind == "login" else 0)

    return Simulation(scenario, seed=seed, horizon_days=60).run(decide=refer_at_login)


def test_fake_accounts_only_where_the_floor_lets_fakes_through():
    abuser = np.array([True, True, False])
    assert fake_accounts(abuser, np.array([0.0, 25.0, 0.0]), 8.0, 5).tolist() == [5, 0, 0]


def test_referral_bonus_grows_the_population_through_the_graph():
    referred_run, control = _referral_run(25.0), _referral_run(25.0, bonus=False)
    pop = referred_run.pop
    referred = np.flatnonzero(pop.channel == CHANNEL_REFERRED)
    assert referred.size > 100 and control.pop.size == control.pop.planned
    assert summarize(referred_run)["shoppers"] == control.acquired() + referred.size
    referrers = pop.referred_by[referred]
    assert (pop.community[referred] == pop.community[referrers]).all()
    assert (pop.neighbours[referred, 0] == referrers).all()

    # Organic acquisitions are untouched by however many friends joined (common random numbers).
    def organic_acquired(sim: Simulation) -> pd.DataFrame:
        log = sim.log.to_frame()
        rows = log[(log["event"] == "acquired") & (log["shopper_id"] < sim.pop.planned)]
        return rows[["shopper_id", "time_hours"]].reset_index(drop=True)

    pd.testing.assert_frame_equal(organic_acquired(referred_run), organic_acquired(control))
    assert summarize(referred_run)["referral_cost"] > 0


def test_without_the_fraud_floor_abusers_take_a_larger_share_of_referral_cost():
    with_floor = summarize(_referral_run(25.0, abuser_share=0.1))
    without_floor = summarize(_referral_run(0.0, abuser_share=0.1))
    assert with_floor["fake_accounts"] == 0 and without_floor["fake_accounts"] > 50
    assert without_floor["referral_cost_abuser_share"] > with_floor["referral_cost_abuser_share"] + 0.2
    assert without_floor["referral_cost"] > with_floor["referral_cost"]


def test_repeated_referral_bonuses_saturate_at_each_shoppers_finite_friends():
    sim = _referral_run(25.0)  # a bonus at every login for 60 days
    pop = sim.pop
    max_invites = sim.scenario.mechanisms.referral.max_invites
    referred = pop.channel == CHANNEL_REFERRED
    real_friends = np.bincount(pop.referred_by[referred & ~pop.fake_account], minlength=pop.size)
    assert pop.invites_sent.max() <= max_invites
    assert (real_friends <= pop.invites_sent).all()  # every friend who joined was invited once
    # Bonuses at every login exhaust the friend pool of frequent visitors rather than growing forever.
    assert (pop.invites_sent[: pop.planned] == max_invites).mean() > 0.03


def test_referred_shoppers_get_an_eighteen_percent_lower_dropout_rate():
    """Schmitt, Skiera & Van den Bulte 2011: referred customers churn about 18% less."""
    scenario = load_scenario(DEFAULT, {"population.shoppers": 100})
    sim = Simulation(scenario, seed=0, horizon_days=1, log_level="aggregates")
    count = 40_000  # friends of shopper 0: enough for a tight mean of a Gamma(0.61) rate
    sim._invited = [(np.zeros(count, np.int64), np.ones(count, np.int16), np.zeros(count, bool))]
    sim._accept_referrals(24.0)
    joined = sim.pop.dropout_rate_per_day[sim.pop.planned :]
    lifetime = scenario.population.lifetime
    assert lifetime is not None and joined.size == count
    organic_mean = lifetime.s / lifetime.beta_weeks / 7.0
    kept = 1.0 - scenario.mechanisms.referral.referred_churn_reduction
    assert joined.mean() == pytest.approx(kept * organic_mean, rel=0.03)
