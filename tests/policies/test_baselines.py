"""Baselines reproduce the playbook table and the LTV-coupon formula on hand-built shoppers."""

from __future__ import annotations

import numpy as np
import pytest

from policies.base import EnvSpec, env_spec
from policies.baselines import PLAYBOOK, SEGMENTS, LtvCoupon, Onboarding, SegmentRules, ltv_coupon_dollars
from policies.registry import make_policy
from sim.envs.campaign import CampaignPlanningEnv
from sim.envs.targeting import IncentiveTargetingEnv
from sim.params import load_scenario
from tests.conftest import DEFAULT


@pytest.fixture(scope="module")
def spec() -> EnvSpec:
    return env_spec(IncentiveTargetingEnv(), "shopgym/IncentiveTargeting-v0")


def shopper(spec: EnvSpec, **raw: float) -> np.ndarray:
    """An observation from raw field values (days, dollars, counts), scaled as the env does."""
    obs = np.zeros(len(spec.obs_fields), dtype=np.float32)
    defaults = {"tenure": 200.0, "recency": 10.0, "frequency": 4.0, "monetary": 150.0, "decision_login": 1.0}
    for name, value in {**defaults, **raw}.items():
        obs[spec.field(name)] = value / spec.obs_scales[spec.field(name)]
    return obs


def test_segment_rules_follow_the_playbook_table(spec: EnvSpec):
    rules = SegmentRules(spec)
    cases = {
        "new": shopper(spec, tenure=10.0),
        "active_mid": shopper(spec),
        "high_value_at_risk": shopper(spec, monetary=500.0, recency=60.0),
        "low_value": shopper(spec, monetary=40.0),
        "cart_abandoners": shopper(spec, decision_login=0.0, decision_cart_abandoned=1.0, open_cart=60.0),
    }
    obs = np.stack(list(cases.values()))
    assert [SEGMENTS[s] for s in rules.segments(obs)] == list(cases)
    actions, _ = rules.predict(obs)
    assert [spec.action_names[a] for a in actions] == [PLAYBOOK[s][0] for s in cases]


def test_segment_rules_fall_back_to_the_next_eligible_playbook_entry(spec: EnvSpec):
    masks = np.ones((1, spec.n_actions), dtype=bool)
    masks[0, spec.action("streak_bonus_200")] = False  # no streak to reward yet
    action, _ = SegmentRules(spec).predict(shopper(spec), action_masks=masks[0])
    assert spec.action_names[action] == "points_2x"
    masks[0, 1:] = False
    action, _ = SegmentRules(spec).predict(shopper(spec), action_masks=masks[0])
    assert spec.action_names[action] == "none"


def test_cart_abandoners_get_free_shipping_then_escalating_coupons(spec: EnvSpec):
    rules = SegmentRules(spec)
    cart = {"decision_login": 0.0, "decision_cart_abandoned": 1.0, "open_cart": 60.0}
    actions = [rules.predict(shopper(spec, **cart, incentives_received=k))[0] for k in (0, 1, 2, 7)]
    chosen = [spec.action_names[a] for a in actions]
    assert chosen == ["free_shipping", "coupon_10", "coupon_20", "coupon_20"]


def test_segment_rules_give_each_campaign_segment_its_playbook_incentive():
    spec = env_spec(CampaignPlanningEnv(), "shopgym/CampaignPlanning-v0")
    plan, _ = SegmentRules(spec).predict(np.zeros((3, len(spec.obs_fields)), dtype=np.float32))
    assert plan.shape == (3, len(SEGMENTS))
    assert [spec.action_names[a] for a in plan[0]] == [PLAYBOOK[s][0] for s in SEGMENTS]


def test_ltv_coupon_formula_on_hand_computed_cases():
    got = ltv_coupon_dollars(
        predicted=np.array([400.0, 150.0, 100.0]),
        realized=np.array([100.0, 100.0, 100.0]),
        basket=np.array([60.0, 60.0, 60.0]),
        churn=np.array([0.2, 0.0, 0.9]),
    )
    # min(0.15 x 300, 0.25 x 60) x 1.1; min(0.15 x 50, 15) x 1; nothing to gain x 1.45.
    np.testing.assert_allclose(got, [16.5, 7.5, 0.0])


def test_ltv_coupon_predicts_from_rfm_and_picks_the_largest_coupon_within_the_amount(spec: EnvSpec):
    policy = LtvCoupon(spec)
    # 4 orders over 200 days: a 50-day gap; 10 days since the last: churn risk 10/60;
    # future = $50 x 365/50 x 5/6 = $304.17; coupon = min(45.6, 0.25 x $60) x (1 + 0.5/6) = $16.25.
    obs = shopper(spec, recency=10.0, frequency=4.0, monetary=200.0, tenure=200.0, open_cart=60.0)
    assert policy.coupon_dollars(obs[None, :])[0] == pytest.approx(16.25)
    action, _ = policy.predict(obs)
    assert spec.action_names[action] == "coupon_20"  # $12 on $60; coupon_10 is $6, coupon_5usd $5
    small = shopper(spec, recency=10.0, frequency=4.0, monetary=200.0, tenure=200.0, open_cart=30.0)
    assert spec.action_names[policy.predict(small)[0]] == "coupon_20"  # amount $8.13, 20% of $30 = $6
    loyal_fresh = shopper(spec, recency=0.0, frequency=1.0, monetary=5.0, tenure=400.0, open_cart=10.0)
    assert spec.action_names[policy.predict(loyal_fresh)[0]] == "none"  # under the smallest coupon


def test_blanket_gives_one_incentive_to_everyone_it_is_allowed_for(spec: EnvSpec):
    policy = make_policy("blanket", spec, incentive="free_shipping")
    masks = np.ones((3, spec.n_actions), dtype=bool)
    masks[1, spec.action("free_shipping")] = False
    actions, _ = policy.predict(np.zeros((3, len(spec.obs_fields))), action_masks=masks)
    assert [spec.action_names[a] for a in actions] == ["free_shipping", "none", "free_shipping"]


def test_random_never_picks_a_masked_incentive_and_covers_the_allowed_ones(spec: EnvSpec):
    policy = make_policy("random", spec, seed=1)
    masks = np.zeros((2000, spec.n_actions), dtype=bool)
    masks[:, [0, 3, 5]] = True
    actions, _ = policy.predict(np.zeros((2000, len(spec.obs_fields))), action_masks=masks)
    counts = np.bincount(actions, minlength=spec.n_actions)
    assert set(np.flatnonzero(counts)) == {0, 3, 5}
    assert counts[[0, 3, 5]].min() > 600


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("blanket", {"incentive": "coupon_99"}, "coupon_99"),
        ("segment_rules", {"high_value": 50.0}, "low_value"),
        ("segment_rules", {"playbook": {"new": ["none"]}}, "playbook keys"),
        ("ltv_coupon", {"future_share": 2.0}, "future_share"),
        ("none", {"colour": "red"}, "colour"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(spec: EnvSpec, kind: str, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        make_policy(kind, spec, **kwargs)


def test_per_shopper_policies_refuse_per_segment_environments():
    spec = env_spec(CampaignPlanningEnv(), "shopgym/CampaignPlanning-v0")
    with pytest.raises(ValueError, match="one incentive per shopper"):
        make_policy("ltv_coupon", spec)


@pytest.fixture(scope="module")
def onboarding_spec() -> EnvSpec:
    """The targeting env on the default shop with the two onboarding incentives added."""
    incentives = [s.model_dump() for s in load_scenario(DEFAULT).incentives] + [
        {"name": "welcome_bundle", "kind": "welcome_bundle", "value": 500.0},
        {"name": "first_purchase_bonus", "kind": "first_purchase_bonus", "value": 10.0},
    ]
    env = IncentiveTargetingEnv(overrides={"population.shoppers": 200, "incentives": incentives})
    return env_spec(env, "shopgym/IncentiveTargeting-v0")


def test_onboarding_gives_a_new_shopper_the_week_in_sequence_and_everyone_else_nothing(
    onboarding_spec: EnvSpec,
):
    spec = onboarding_spec
    cases = [
        (shopper(spec, tenure=0.5, frequency=1.0), "welcome_bundle"),
        (shopper(spec, tenure=2.9, frequency=1.0), "welcome_bundle"),
        (shopper(spec, tenure=3.1, frequency=1.0), "first_purchase_bonus"),
        (shopper(spec, tenure=7.5, frequency=1.0), "first_purchase_bonus"),
        (shopper(spec, tenure=8.1, frequency=1.0), "none"),  # the week is over
        (shopper(spec, tenure=1.0, frequency=2.0), "none"),  # she has ordered again
    ]
    actions, _ = Onboarding(spec).predict(np.stack([obs for obs, _ in cases]))
    assert [spec.action_names[a] for a in actions] == [name for _, name in cases]
    masks = np.ones(spec.n_actions, dtype=bool)
    masks[spec.action("welcome_bundle")] = False  # an ineligible step gives nothing, never a substitute
    action, _ = Onboarding(spec).predict(cases[0][0], action_masks=masks)
    assert spec.action_names[action] == "none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "onboarding: incentive 'welcome_bundle' not in the environment"),
        ({"steps": [[3, "free_shipping"], [3, "coupon_10"]]}, r"steps\[1\] until_day 3 must exceed"),
        ({"steps": [[0, "free_shipping"]]}, r"steps\[0\] until_day 0 must be a number in \(0, 3650\]"),
        ({"steps": []}, "steps must be a list of 1 to 64"),
    ],
)
def test_onboarding_steps_are_checked_against_the_catalogue(spec: EnvSpec, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Onboarding(spec, **kwargs)
