"""OPE estimators against closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest

from policies.ope import FeedbackError, RewardModel, cross_fit_q_hat, estimate_all


def feedback(action, reward, pscore, context=None):
    n = len(action)
    return {
        "context": np.zeros((n, 2)) if context is None else context,
        "action": np.asarray(action),
        "reward": np.asarray(reward, dtype=float),
        "pscore": np.asarray(pscore, dtype=float),
    }


def test_estimators_match_their_formulas_on_a_hand_computed_log():
    # Two incentives; the evaluation policy always gives incentive 1; the logger chose 1 with p 0.5 / 0.25.
    log = feedback([1, 0, 1, 0], [4.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.25, 0.75])
    dist = np.tile([0.0, 1.0], (4, 1))
    q_hat = np.tile([1.0, 3.0], (4, 1))
    out = estimate_all(log, dist, q_hat, clip=np.inf, tau=3.0)
    assert out["dm"].value == pytest.approx(3.0)
    assert out["ips"].value == pytest.approx((2 * 4 + 4 * 2) / 4)  # 4.0
    assert out["snips"].value == pytest.approx((2 * 4 + 4 * 2) / 6)
    assert out["dr"].value == pytest.approx(3.0 + (2 * (4 - 3) + 4 * (2 - 3)) / 4)  # 2.5
    # switch-DR drops the correction of the round whose weight 4 passes tau 3
    assert out["switch_dr"].value == pytest.approx(3.0 + 2 * (4 - 3) / 4)
    assert out["ips"].ci_low < out["ips"].value < out["ips"].ci_high


def test_clipping_caps_the_weights_of_ips_and_dr():
    log = feedback([1, 1], [1.0, 1.0], [0.01, 0.5])
    dist = np.tile([0.0, 1.0], (2, 1))
    out = estimate_all(log, dist, np.zeros((2, 2)), clip=10.0)
    assert out["ips"].value == pytest.approx((10.0 + 2.0) / 2)
    assert out["dr"].value == pytest.approx((10.0 + 2.0) / 2)


def test_on_policy_logs_make_ips_snips_and_dr_the_sample_mean():
    rng = np.random.default_rng(0)
    action = rng.integers(0, 3, 500)
    reward = rng.normal(action, 1.0)
    dist = np.full((500, 3), 1 / 3)
    log = feedback(action, reward, np.full(500, 1 / 3))
    out = estimate_all(log, dist, cross_fit_q_hat(log, 3))
    for name in ("ips", "snips"):
        assert out[name].value == pytest.approx(reward.mean())


def test_reward_model_recovers_a_linear_reward_per_incentive():
    rng = np.random.default_rng(1)
    context = rng.uniform(0, 1, (4000, 2))
    action = rng.integers(0, 2, 4000)
    reward = np.where(action == 1, 2.0 * context[:, 0], -context[:, 1])
    model = RewardModel(2, ridge=1e-6, ridge_per_action=1e-6).fit(context, action, reward)
    test = np.array([[0.5, 0.2]])
    assert model.predict(test)[0] == pytest.approx([-0.2, 1.0], abs=1e-3)


def test_zero_propensities_and_ragged_logs_are_refused_with_shopgyms_message():
    with pytest.raises(FeedbackError, match="pscore must be in"):
        estimate_all(feedback([0], [1.0], [0.0]), np.array([[1.0, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(FeedbackError, match="rows for"):
        estimate_all(feedback([0, 1], [1.0], [0.5, 0.5]), np.full((2, 2), 0.5), np.zeros((2, 2)))
