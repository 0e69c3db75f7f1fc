"""CampaignPlanning-v0 specifics: segments, the peak-season load trade-off, the objective."""

from __future__ import annotations

import numpy as np
import pytest

from sim.envs.campaign import SEGMENTS, CampaignPlanningEnv


def _season(
    plan_name: str, weights: dict[str, float] | None = None
) -> tuple[float, dict[str, float], CampaignPlanningEnv]:
    env = CampaignPlanningEnv(
        overrides={"population.shoppers": 4000}, horizon_days=75, objective_weights=weights, reward_scale=1.0
    )
    names = [i.name for i in env.scenario.incentives]
    plan = np.full(len(SEGMENTS), names.index(plan_name))
    env.reset(seed=0)
    total, objective, done = 0.0, dict.fromkeys(("margin", "ltv", "load", "budget"), 0.0), False
    while not done:
        _, reward, _, done, info = env.step(plan)
        total += reward
        for key, value in info["objective"].items():
            objective[key] += value
    return total, objective, env


def test_segments_follow_observable_state():
    env = CampaignPlanningEnv(overrides={"population.shoppers": 300}, horizon_days=5)
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(len(SEGMENTS), dtype=np.int64))
    sim = env._sim
    assert sim is not None
    pop = sim.pop
    ids = np.arange(pop.size)
    pop.monetary[:3] = [50.0, 500.0, 150.0]
    pop.acquired_at[:3] = -1000.0 * 24  # long-standing customers
    pop.last_order_at[:3] = [sim.now_hours, sim.now_hours - 60 * 24, sim.now_hours]
    segments = env.segments_of(ids[:3])
    assert [SEGMENTS[s] for s in segments] == ["low_value", "high_value_at_risk", "active_mid"]
    assert (env.segments_of(ids[:3], "cart_abandoned") == SEGMENTS.index("cart_abandoners")).all()


def test_blanket_coupons_in_peak_season_overload_the_warehouse():
    _, none_objective, _ = _season("none")
    coupon_reward, coupon_objective, env = _season("coupon_20")
    assert coupon_objective["budget"] > 0 and none_objective["budget"] >= 0
    assert coupon_objective["load"] > none_objective["load"] * 1.1  # more late and overtime orders
    weights = env.objective_weights
    expected = sum(
        w * coupon_objective[k] for w, k in zip(weights, ("margin", "ltv", "load", "budget"), strict=True)
    )
    assert coupon_reward == pytest.approx(expected)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="objective_weights"):
        CampaignPlanningEnv(objective_weights={"joy": 1.0})
    env = CampaignPlanningEnv(overrides={"population.shoppers": 100}, horizon_days=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([0, 0]))
