"""The uplift policy: a randomized log, a T- or X-learner of boosted trees, decided by numpy alone."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor

import sim  # noqa: F401 (registers the environments)
from policies.registry import load_policy, make_policy
from policies.rules import trees_rule

OVERRIDES = {"population.shoppers": 300, "population.acquisition_days": 5.0}


@pytest.fixture(scope="module")
def logged() -> tuple[gym.Env, np.ndarray, np.ndarray]:
    """3,000 real IncentiveTargeting observations and their eligibility masks."""
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=10)
    obs, _ = env.reset(seed=7)
    seen, masks = [], []
    rng = np.random.default_rng(0)
    while len(seen) < 3000:
        mask = env.unwrapped.action_masks()
        seen.append(obs)
        masks.append(mask)
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            obs, _ = env.reset(seed=len(seen))
    return env, np.array(seen), np.array(masks)


def _taught(
    env: gym.Env, obs: np.ndarray, masks: np.ndarray, learner: str = "x"
) -> tuple[object, np.ndarray, np.ndarray]:
    """An uplift policy that explored on ``obs``; rewards favour incentive 1 where field 0 is large."""
    policy = make_policy(
        "uplift", env, seed=0, n_estimators=30, min_samples_leaf=20, min_arm_samples=100, learner=learner
    )
    actions = policy.predict(obs, action_masks=masks)[0]
    effect = np.where(actions == 1, np.where(obs[:, 0] > np.median(obs[:, 0]), 1.0, -1.0), 0.0)
    rewards = effect + np.random.default_rng(1).normal(0.0, 0.1, obs.shape[0])
    policy.update(obs, actions, rewards)
    return policy, actions, rewards


def test_training_is_a_randomized_experiment_over_the_allowed_incentives(logged):
    env, obs, masks = logged
    _, actions, _ = _taught(env, obs, masks)
    allowed = masks[:, 0, :] if masks.ndim == 3 else masks
    assert allowed[np.arange(actions.size), actions].all()
    # Incentives every shopper may get are drawn about equally often.
    always = np.flatnonzero(allowed.all(axis=0))
    counts = np.bincount(actions, minlength=allowed.shape[1])[always]
    assert counts.min() > 0.6 * counts.max()


@pytest.mark.parametrize("learner", ["t", "x"])
def test_it_learns_who_to_treat_and_leaves_the_rest_alone(logged, learner):
    env, obs, masks = logged
    policy, _, _ = _taught(env, obs, masks, learner)
    chosen = policy.predict(obs, deterministic=True, action_masks=masks)[0]
    high = obs[:, 0] > np.median(obs[:, 0])
    assert (chosen[high] == 1).mean() > 0.9
    assert (chosen[~high] == 1).mean() < 0.1


def _boosted(**overrides: object) -> GradientBoostingRegressor:
    settings = {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.05, "min_samples_leaf": 20}
    return GradientBoostingRegressor(**{**settings, **overrides}, loss="huber", random_state=0)


def test_its_numpy_trees_predict_what_scikit_learn_predicts(logged):
    env, obs, masks = logged
    policy, actions, rewards = _taught(env, obs, masks, "t")
    rows = actions == 1
    reference = _boosted().fit(obs[rows], rewards[rows])
    rule = trees_rule(policy.greedy_model(), obs.shape[1], env.action_space.n)
    np.testing.assert_allclose(rule.scores(obs)[:, 1], reference.predict(obs), rtol=0, atol=1e-12)


def test_its_x_learner_is_the_propensity_blend_of_two_imputed_effect_models(logged):
    """Kunzel et al. (2019), step by step in scikit-learn, equals the numpy rule's scores."""
    env, obs, masks = logged
    policy, actions, rewards = _taught(env, obs, masks, "x")
    treated, control = actions == 1, actions == 0
    mu_treated = _boosted().fit(obs[treated], rewards[treated])
    mu_control = _boosted().fit(obs[control], rewards[control])
    effect = {"n_estimators": 200, "max_depth": 2, "learning_rate": 0.02, "subsample": 0.5}
    tau_treated = _boosted(**effect).fit(obs[treated], rewards[treated] - mu_control.predict(obs[treated]))
    tau_control = _boosted(**effect).fit(obs[control], mu_treated.predict(obs[control]) - rewards[control])
    g = treated.sum() / (treated.sum() + control.sum())
    expected = g * tau_control.predict(obs) + (1.0 - g) * tau_treated.predict(obs)
    scores = trees_rule(policy.greedy_model(), obs.shape[1], env.action_space.n).scores(obs)
    assert (scores[:, 0] == 0.0).all()  # effects are against none
    np.testing.assert_allclose(scores[:, 1], expected, rtol=0, atol=1e-9)


def test_a_saved_policy_decides_as_the_trained_one_and_bad_trees_are_refused(logged, tmp_path):
    env, obs, masks = logged
    policy, _, _ = _taught(env, obs, masks)
    policy.save(tmp_path / "uplift")
    again = load_policy(tmp_path / "uplift")
    first = policy.predict(obs, deterministic=True, action_masks=masks)[0]
    assert (again.predict(obs, deterministic=True, action_masks=masks)[0] == first).all()

    model = json.loads(json.dumps(policy.greedy_model()))
    n_fields, n_actions = obs.shape[1], env.action_space.n
    tree = model["trees"][0]
    tree["left"][0] = 0  # a cycle: the root its own child
    with pytest.raises(ValueError, match="left children must point forward"):
        trees_rule(model, n_fields, n_actions)
    tree["left"][0], tree["feature"][0] = 1, n_fields
    with pytest.raises(ValueError, match=f"features must be integers below {n_fields}"):
        trees_rule(model, n_fields, n_actions)
    chain = {
        "action": 1,
        "feature": [0] * 70 + [-2],
        "threshold": [0.5] * 70 + [-2.0],
        "left": [*range(1, 71), -1],
        "right": [*range(1, 71), -1],
        "value": [0.0] * 71,
    }
    deep = {**model, "trees": [chain], "trained": [True] * n_actions}
    with pytest.raises(ValueError, match="70 levels deep; at most 64"):
        trees_rule(deep, n_fields, n_actions)
    model["trained"][model["trees"][0]["action"]] = False
    tree["feature"][0] = 0
    with pytest.raises(ValueError, match="a tree belongs to an incentive marked untrained"):
        trees_rule(model, n_fields, n_actions)


def test_before_any_arm_has_enough_data_it_gives_nothing(logged):
    env, obs, masks = logged
    policy = make_policy("uplift", env, seed=0)
    assert (policy.predict(obs[:50], deterministic=True, action_masks=masks[:50])[0] == 0).all()
    with pytest.raises(ValueError, match=r"log_size=0 must be an integer in \[1, 1,000,000\]"):
        make_policy("uplift", env, seed=0, log_size=0)
    with pytest.raises(ValueError, match=r"effect_subsample=0\.0 must be in \(0, 1\]"):
        make_policy("uplift", env, seed=0, effect_subsample=0.0)


def test_its_own_greedy_choices_are_not_logged_as_the_experiment(logged):
    env, obs, masks = logged
    policy, _, _ = _taught(env, obs[:2000], masks[:2000])
    before = policy.greedy_model()
    chosen = policy.predict(obs[2000:], deterministic=True, action_masks=masks[2000:])[0]
    policy.update(obs[2000:], chosen, np.full(chosen.size, 100.0))  # feedback on its own choices
    assert policy.logged == 2000 and policy.greedy_model() == before


def test_its_experiment_can_be_limited_to_the_incentives_a_shop_wants_to_test(logged, tmp_path):
    env, obs, masks = logged
    names = list(env.unwrapped.scenario.incentives[i].name for i in range(env.action_space.n))
    arms = ["none", "coupon_10", "referral_10"]
    policy = make_policy("uplift", env, seed=0, n_estimators=30, min_arm_samples=100, arms=arms)
    actions = policy.predict(obs, action_masks=masks)[0]
    chosen = {names[a] for a in np.unique(actions)}
    assert chosen == set(arms)  # every arm tested, no other incentive given
    rewards = np.where(actions == names.index("referral_10"), 1.0, 0.0)
    policy.update(obs, actions, rewards + np.random.default_rng(2).normal(0.0, 0.1, obs.shape[0]))
    greedy = policy.predict(obs, deterministic=True, action_masks=masks)[0]
    assert {names[a] for a in np.unique(greedy)} <= set(arms)
    assert (greedy == names.index("referral_10")).mean() > 0.9
    policy.save(tmp_path / "arms")
    again = load_policy(tmp_path / "arms")
    assert list(again.arms) == list(policy.arms)
    assert (again.predict(obs, deterministic=True, action_masks=masks)[0] == greedy).all()
    with pytest.raises(ValueError, match=r"incentive 'coupon_99' not in the scenario"):
        make_policy("uplift", env, seed=0, arms=["none", "coupon_99"])
    with pytest.raises(
        ValueError, match=r"arms must include the baseline 'none' \(effects are measured against it\)"
    ):
        make_policy("uplift", env, seed=0, arms=["coupon_10", "referral_10"])
    with pytest.raises(ValueError, match=r"arms must name each incentive once"):
        make_policy("uplift", env, seed=0, arms=["none", "coupon_10", "coupon_10"])
    with pytest.raises(ValueError, match=r"arms must list two or more incentive names"):
        make_policy("uplift", env, seed=0, arms="referral_10")


def test_against_a_baseline_incentive_it_deviates_only_where_another_beats_it(logged, tmp_path):
    env, obs, masks = logged
    names = [i.name for i in env.unwrapped.scenario.incentives]
    arms = ["none", "coupon_10", "referral_10"]
    referral, coupon = names.index("referral_10"), names.index("coupon_10")
    policy = make_policy(
        "uplift", env, seed=0, n_estimators=30, min_arm_samples=100, arms=arms, baseline="referral_10"
    )
    actions = policy.predict(obs, action_masks=masks)[0]
    high = obs[:, 0] > np.median(obs[:, 0])
    # The referral is worth 1 to everyone; the coupon 2 where field 0 is high, 0 elsewhere.
    rewards = np.select([actions == referral, actions == coupon], [1.0, np.where(high, 2.0, 0.0)], 0.0)
    policy.update(obs, actions, rewards + np.random.default_rng(3).normal(0.0, 0.1, obs.shape[0]))
    model = policy.greedy_model()
    assert model["baseline"] == referral and model["trained"][referral]
    chosen = policy.predict(obs, deterministic=True, action_masks=masks)[0]
    assert (chosen[high] == coupon).mean() > 0.9
    assert (chosen[~high] == referral).mean() > 0.9
    policy.save(tmp_path / "champion")
    again = load_policy(tmp_path / "champion")
    assert (again.predict(obs, deterministic=True, action_masks=masks)[0] == chosen).all()
    bad = {**json.loads(json.dumps(model)), "baseline": len(names)}
    with pytest.raises(
        ValueError, match=rf"baseline={len(names)} must be an incentive id in \[0, {len(names)}\)"
    ):
        trees_rule(bad, obs.shape[1], len(names))
    with pytest.raises(ValueError, match=r"arms must include the baseline 'coupon_20'"):
        make_policy("uplift", env, seed=0, arms=arms, baseline="coupon_20")
