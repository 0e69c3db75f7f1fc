"""IncentiveTargeting-v0 specifics: delayed, last-touch attributed rewards; masks; errors."""

from __future__ import annotations

import gymnasium as gym
import pytest
from numpy.random import default_rng as np_random

import sim  # noqa: F401  (registers the environments)
from sim.envs.targeting import OBS_FIELDS, IncentiveTargetingEnv
from sim.incentives import IncentiveCatalog

SMALL = {"overrides": {"population.shoppers": 400, "population.acquisition_days": 5.0}, "horizon_days": 20}


def _run(env: IncentiveTargetingEnv, seed: int, policy) -> tuple[float, list, dict]:
    env.reset(seed=seed)
    total, attributed, done, info = 0.0, [], False, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(policy(env))
        total += reward
        attributed += env.attributed_feedback()
        assert info["attributed_count"] == len(env.attributed_feedback())
        done = terminated or truncated
    return total, attributed, info


def test_rewards_are_attributed_once_per_decision_and_never_double_count():
    env = IncentiveTargetingEnv(**SMALL, attribution_days=1000.0, reward_scale=1.0)
    total, attributed, info = _run(env, 0, lambda e: 0)
    ids = [a[0] for a in attributed]
    assert len(ids) == len(set(ids)) == info["decision_id"]  # every decision gets feedback once
    assert sum(a[3] for a in attributed) == pytest.approx(total)
    # With windows as long as the horizon, each shopper's windows tile [first decision, end]:
    # the rewards add up to her margin since her first decision, and no cent is counted twice.
    assert total <= info["margin"] + 1e-6


def test_feedback_arrives_when_the_window_ends_or_the_shopper_decides_again():
    env = IncentiveTargetingEnv(**SMALL, attribution_days=3.0)
    _, info = env.reset(seed=1)
    made: dict[int, tuple[float, int]] = {}  # decision id -> (day, shopper)
    last_decision_day: dict[int, float] = {}
    early = on_time = 0
    for _ in range(4000):
        decision, shopper, day = info["decision_id"], info["shopper"], info["time_days"]
        made[decision] = (day, shopper)
        last_decision_day[shopper] = day
        _, _, _, truncated, info = env.step(0)
        if truncated:
            break
        for decision_id, who, *_ in env.attributed_feedback():
            decided_day, _ = made[decision_id]
            if info["time_days"] - decided_day >= 3.0 - 1e-9:
                on_time += 1
            else:  # closed early: only because the same shopper decided again since
                assert last_decision_day[who] > decided_day or made[max(made)][1] == who
                early += 1
    assert on_time > 100 and early > 0


def test_masks_follow_eligibility_and_the_budget():
    env = IncentiveTargetingEnv(**SMALL, incentive_budget=50.0)
    names = [i.name for i in env.scenario.incentives]
    env.reset(seed=2)
    mask = env.action_masks()
    assert mask[0] and mask[names.index("coupon_10")]
    assert not mask[names.index("tier_perk")]  # a new shopper is tier 0
    coupon = names.index("coupon_20")
    done = False
    while not done and env._budget_left() > 0:
        _, _, _, done, _ = env.step(coupon if env.action_masks()[coupon] else 0)
    assert done or env.action_masks().tolist() == [True] + [False] * (len(names) - 1)


def test_observation_fields_are_named_and_in_range():
    env = gym.make("shopgym/IncentiveTargeting-v0", **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (len(OBS_FIELDS),)
    assert env.observation_space.contains(obs)
    assert obs[[f[0] for f in OBS_FIELDS].index("decision_login")] in (0.0, 1.0)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="decision_points"):
        IncentiveTargetingEnv(**SMALL, decision_points=("checkout",))
    with pytest.raises(ValueError, match="horizon_days"):
        IncentiveTargetingEnv(**{**SMALL, "horizon_days": 0})
    from sim.params import ScenarioError

    with pytest.raises(ScenarioError, match=r"population\.shoppers"):
        IncentiveTargetingEnv(overrides={"population.shoppers": -1})


def test_reward_is_the_weighted_objective_vector():
    coupon = 2  # coupon_20 in the default catalogue

    def run(weights: dict[str, float]) -> tuple[float, dict]:
        env = IncentiveTargetingEnv(**SMALL, reward_scale=1.0, objective_weights=weights)
        total, _, info = _run(env, 5, lambda e: coupon if e.action_masks()[coupon] else 0)
        return total, info["objective"]

    margin_reward, objective = run({"margin": 1.0})
    budget_reward, _ = run({"budget": -1.0})
    mixed_reward, _ = run({"margin": 1.0, "ltv": 0.5, "load": -2.0, "budget": -1.0})
    assert margin_reward == pytest.approx(objective["margin"])
    assert budget_reward == pytest.approx(-objective["budget"]) and objective["budget"] > 0
    expected = objective["margin"] + 0.5 * objective["ltv"] - 2.0 * objective["load"] - objective["budget"]
    assert mixed_reward == pytest.approx(expected)
    with pytest.raises(ValueError, match="objective_weights"):
        IncentiveTargetingEnv(**SMALL, objective_weights={"happiness": 1.0})


def test_propensity_logged_decisions_form_open_bandit_pipeline_feedback():
    env = IncentiveTargetingEnv(**SMALL)
    env.reset(seed=4)
    rng = np_random(0)
    by_decision: dict[int, float] = {}
    done, step = False, 0
    while not done:
        allowed = env.action_masks().nonzero()[0]
        action = int(rng.choice(allowed))
        if step % 2 == 0:  # only every other decision comes with a propensity
            env.record_propensity(1.0 / allowed.size)
        step += 1
        _, _, _, done, _ = env.step(action)
        by_decision.update({a.decision_id: a.reward for a in env.attributed_feedback()})
    feedback = env.bandit_feedback()
    n = feedback["n_rounds"]
    assert n == (step + 1) // 2  # every logged decision got its reward by the end
    assert feedback["context"].shape == (n, len(OBS_FIELDS)) and feedback["action"].shape == (n,)
    assert ((feedback["pscore"] > 0) & (feedback["pscore"] <= 1)).all()
    assert set(feedback) >= {"n_rounds", "n_actions", "context", "action", "reward", "pscore", "position"}
    logged_rewards = sorted(feedback["reward"])
    assert logged_rewards == sorted(by_decision[d] for d in range(0, step, 2))
    with pytest.raises(ValueError, match="pscore"):
        env.record_propensity(0.0)


def test_referred_friends_value_is_credited_once_to_the_referral_decision():
    """A referral decision's window holds what its friends brought before their own first decision.

    With windows as long as the horizon every cent is still attributed at most once (the total
    stays within the shop's margin), and referral decisions that brought friends are credited
    with the friends' LTV: about $16 more than those that brought none (a new customer's habit is
    not formed yet, so a friend's LTV is modest).
    """
    referral = IncentiveCatalog(IncentiveTargetingEnv(**SMALL).scenario).names.index("referral_10")

    def give(env: IncentiveTargetingEnv) -> int:
        return referral if env.action_masks()[referral] else 0

    env = IncentiveTargetingEnv(**SMALL, attribution_days=1000.0, reward_scale=1.0)
    total, attributed, info = _run(env, 0, give)
    assert len({a[0] for a in attributed}) == len(attributed) == info["decision_id"]
    assert total <= info["margin"] + 1e-6

    env = IncentiveTargetingEnv(**SMALL, reward_scale=1.0, objective_weights={"ltv": 1.0})
    _, info = env.reset(seed=2)
    made: dict[int, tuple[float, int]] = {}
    rewards: dict[int, float] = {}
    done = False
    while not done:
        made[info["decision_id"]] = (env._sim.now_hours, info["shopper"])
        _, _, terminated, truncated, info = env.step(give(env))
        rewards.update({a.decision_id: a.reward for a in env.attributed_feedback() if a.action == referral})
        done = terminated or truncated
    pop = env._sim.pop
    brought, none_brought = [], []
    for decision_id, reward in rewards.items():
        at, shopper = made[decision_id]
        joined = (pop.referred_by[: pop.size] == shopper) & (pop.acquired_at[: pop.size] > at)
        joined &= pop.acquired_at[: pop.size] <= at + 14 * 24.0
        (brought if joined.any() else none_brought).append(reward)
    assert len(brought) > 5 and len(none_brought) > 5
    assert sum(brought) / len(brought) > sum(none_brought) / len(none_brought) + 10.0
