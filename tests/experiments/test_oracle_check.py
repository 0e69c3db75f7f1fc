"""``shopgym oracle-check``: the oracle's values beside counterfactual replays of the same decisions."""

from __future__ import annotations

import numpy as np

from experiments.cli import main
from experiments.oracle_check import check_journeys, check_population, error_table
from sim.params import load_scenario


def test_each_decision_gets_every_incentive_valued_by_the_oracle_and_by_replay():
    scenario = load_scenario("default")
    rows = check_journeys(scenario, journeys=2, decisions_per_journey=2, replicates=4)
    per_decision = rows.groupby(["unit", "decision"]).size()
    assert len(per_decision) >= 2 and (per_decision <= len(scenario.incentives)).all()
    assert "tier_perk" not in set(rows["incentive_kind"])  # no tier yet: masked, so not compared
    none = rows[rows["incentive_kind"] == "none"]
    assert (none["oracle"] == 0).all() and (none["replay"] == 0).all()  # effects are against none
    assert np.isfinite(rows[["oracle", "replay", "replay_se"]].to_numpy()).all()
    table = error_table(rows)
    assert "none" not in set(table["incentive_kind"])
    assert (table["mae"] >= table["mean_error"].abs() - 1e-12).all()


def test_population_replays_change_only_the_checked_shoppers_incentive():
    scenario = load_scenario("default", {"population.shoppers": 300, "population.acquisition_days": 5.0})
    rows = check_population(scenario, decisions=2, horizon_days=20, stride=3)
    assert rows["unit"].nunique() == 2
    none = rows[rows["incentive_kind"] == "none"]
    assert (none["replay"] == 0).all()


def test_bad_arguments_are_one_line_exit_2(capsys):
    assert main(["oracle-check", "--replicates", "1"]) == 2
    assert capsys.readouterr().err.strip() == "shopgym oracle-check: --replicates must be >= 2"
    assert main(["oracle-check", "--scenario", "nowhere.yaml"]) == 2
    assert "scenario file not found" in capsys.readouterr().err
