from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.params import ScenarioError, load_scenario, scenario_from_dict
from tests.conftest import CDNOW, DEFAULT


def _default_dict() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def test_shipped_scenarios_load():
    default = load_scenario(DEFAULT)
    cdnow = load_scenario(CDNOW)
    assert default.population.shoppers == 10000
    assert (cdnow.population.purchase.r, cdnow.population.purchase.alpha_weeks) == (0.243, 4.414)
    assert (cdnow.population.purchase.a, cdnow.population.purchase.b) == (0.793, 2.426)
    assert (cdnow.population.spend.p, cdnow.population.spend.q, cdnow.population.spend.gamma) == (
        6.25,
        3.74,
        15.44,
    )


def test_overrides_use_dotted_paths_and_are_validated():
    scenario = load_scenario(DEFAULT, {"population.shoppers": 123})
    assert scenario.population.shoppers == 123
    with pytest.raises(ScenarioError, match=r"population\.shoppers: got 0"):
        load_scenario(DEFAULT, {"population.shoppers": 0})


def test_unknown_key_names_its_path():
    data = _default_dict()
    data["warehouse"]["pick_capacityy"] = 3
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(data)
    assert "warehouse.pick_capacityy: unknown key" in str(error.value)


def test_negative_capacity_names_field_value_and_bound():
    data = _default_dict()
    data["warehouse"]["pick_capacity_per_1k_shoppers"] = -5.0
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(data)
    message = str(error.value)
    assert "warehouse.pick_capacity_per_1k_shoppers: got -5.0" in message
    assert "must be more than 0" in message


def test_probability_above_one_is_rejected():
    data = _default_dict()
    data["catalog"]["categories"][0]["return_rate"] = 1.5
    with pytest.raises(
        ScenarioError,
        match=r"catalog\.categories\.0\.return_rate: got 1\.5; must be at most 1",
    ):
        scenario_from_dict(data)


def test_wrong_type_is_not_coerced():
    data = _default_dict()
    data["population"]["shoppers"] = "10000"
    with pytest.raises(ScenarioError, match=r"population\.shoppers: got '10000'"):
        scenario_from_dict(data)


def test_category_shares_must_sum_to_one():
    data = _default_dict()
    data["catalog"]["categories"][0]["share"] = 0.9
    with pytest.raises(ScenarioError, match="shares must sum to 1"):
        scenario_from_dict(data)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("population: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)


def test_config_hash_is_stable_and_sensitive():
    a, b = load_scenario(DEFAULT), load_scenario(DEFAULT)
    assert a.config_hash() == b.config_hash()
    assert load_scenario(DEFAULT, {"shipping.fee": 4.99}).config_hash() != a.config_hash()


def test_neutral_mechanisms_switch_every_mechanism_off():
    from sim.params import NEUTRAL_MECHANISMS

    scenario = load_scenario(DEFAULT, NEUTRAL_MECHANISMS)
    m = scenario.mechanisms
    assert scenario.population.loss_aversion.mean == 1.0 and scenario.population.loss_aversion.cv == 0.0
    assert m.reference_price.smoothing == m.reference_price.promo_sensitivity == 0.0
    assert m.shipping_threshold.topup_prob == 0.0
    assert m.churn.late_delivery_churn == m.churn.late_dropout_multiplier == m.churn.winback_ceiling == 0.0
    assert m.need.depletion == m.advertising.visit_lift == 0.0
    assert m.streaks.weight == m.streaks.break_penalty == 0.0
    assert m.tiers.goal_gradient == m.tiers.perk_dropout_relief == 0.0
