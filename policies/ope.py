"""Off-policy evaluation: what would a new incentive policy earn, estimated from another policy's log.

The estimators follow Open Bandit Pipeline's definitions (Saito et al. 2021) on its logged
bandit feedback layout (``context``, ``action``, ``reward``, ``pscore``), written here in
numpy because the maintained ``obp`` (0.5.x) does not install on Python 3.11 and the only
release that does (0.4.1, 2021) has no weight clipping:

- DM (direct method): the reward model's value of the evaluation policy's choices.
- IPS: importance-weighted rewards, ``w = pi_e(a|x) / pscore``, weights optionally clipped.
- SNIPS: IPS divided by the mean weight (self-normalized: bounded by the rewards' range).
- DR: DM plus the importance-weighted residuals of the reward model (Dudik et al. 2011).
- switch-DR: DR's correction only where ``w <= tau``, DM elsewhere (Wang et al. 2017).

Each estimate carries a 95% normal-approximation confidence interval from its per-round
terms (for SNIPS, by the delta method). DM's interval ignores the reward model's own error
and is narrower than its true uncertainty; it is reported and labelled as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
#: Two-sided 95% normal quantile of every confidence interval.
Z_95 = 1.959963984540054
#: Estimator names, in report order.
ESTIMATORS = ("dm", "ips", "snips", "dr", "switch_dr")


class FeedbackError(ValueError):
    """Logged bandit feedback is malformed (shapes, propensities, rewards); the message says which."""


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of the evaluation policy, per decision, with its 95% interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n_rounds: int


def check_feedback(feedback: Mapping[str, Any], action_dist: Floats) -> None:
    """Refuse feedback whose arrays disagree in length, or whose propensities or rewards are unusable."""
    for key in ("context", "action", "reward", "pscore"):
        if key not in feedback:
            raise FeedbackError(f"bandit feedback lacks {key!r}; it needs context, action, reward, pscore")
    n = len(feedback["action"])
    if n == 0:
        raise FeedbackError("bandit feedback has no rounds; log some decisions first")
    for key in ("context", "reward", "pscore"):
        if len(feedback[key]) != n:
            raise FeedbackError(f"bandit feedback {key!r} has {len(feedback[key])} rows for {n} actions")
    pscore = np.asarray(feedback["pscore"], dtype=np.float64)
    if not (np.isfinite(pscore).all() and (pscore > 0).all() and (pscore <= 1).all()):
        raise FeedbackError("every pscore must be in (0, 1]: a propensity of 0 cannot be reweighted")
    if not np.isfinite(np.asarray(feedback["reward"], dtype=np.float64)).all():
        raise FeedbackError("every reward must be a finite number")
    action = np.asarray(feedback["action"])
    if action_dist.ndim != 2 or action_dist.shape[0] != n:
        raise FeedbackError(f"action_dist must be (n_rounds={n}, n_actions), got {action_dist.shape}")
    if action.min() < 0 or action.max() >= action_dist.shape[1]:
        raise FeedbackError(f"actions must be ids in [0, {action_dist.shape[1]})")
    if not np.allclose(action_dist.sum(axis=1), 1.0, atol=1e-6) or (action_dist < 0).any():
        raise FeedbackError("each row of action_dist must be a probability distribution over incentives")


def _mean_ci(name: str, terms: Floats) -> Estimate:
    value = float(terms.mean())
    half = Z_95 * float(terms.std(ddof=1)) / np.sqrt(terms.size) if terms.size > 1 else np.inf
    return Estimate(name, value, value - half, value + half, int(terms.size))


def estimate_all(
    feedback: Mapping[str, Any],
    action_dist: Floats,
    q_hat: Floats,
    clip: float = np.inf,
    tau: float = 10.0,
) -> dict[str, Estimate]:
    """DM, IPS, SNIPS, DR and switch-DR of the policy ``action_dist`` ``(n, n_actions)`` from a log.

    ``q_hat`` ``(n, n_actions)`` is the reward model's prediction for every round and incentive
    (fit out of fold for DR). ``clip`` caps the importance weights of IPS, SNIPS and DR;
    ``tau`` is switch-DR's weight threshold.
    """
    action_dist = np.asarray(action_dist, dtype=np.float64)
    check_feedback(feedback, action_dist)
    if q_hat.shape != action_dist.shape or not np.isfinite(q_hat).all():
        raise FeedbackError(f"q_hat must be finite, of shape {action_dist.shape}, got {q_hat.shape}")
    if not clip > 0 or not tau >= 0:
        raise FeedbackError(f"clip must be > 0 and tau >= 0, got clip={clip}, tau={tau}")
    rows = np.arange(action_dist.shape[0])
    action = np.asarray(feedback["action"], dtype=np.int64)
    reward = np.asarray(feedback["reward"], dtype=np.float64)
    weight_raw = action_dist[rows, action] / np.asarray(feedback["pscore"], dtype=np.float64)
    weight = np.minimum(weight_raw, clip)
    dm_terms = (action_dist * q_hat).sum(axis=1)
    residual = reward - q_hat[rows, action]
    out = {
        "dm": _mean_ci("dm", dm_terms),
        "ips": _mean_ci("ips", weight * reward),
        "dr": _mean_ci("dr", dm_terms + weight * residual),
        "switch_dr": _mean_ci(
            "switch_dr", dm_terms + np.where(weight_raw <= tau, weight_raw, 0.0) * residual
        ),
    }
    mean_weight = float(weight.mean())
    if mean_weight <= 0:  # the evaluation policy never takes a logged action: SNIPS is undefined
        out["snips"] = Estimate("snips", float("nan"), float("nan"), float("nan"), int(rows.size))
    else:
        value = float((weight * reward).sum() / weight.sum())
        influence = weight * (reward - value) / mean_weight  # delta method for a ratio of means
        half = Z_95 * float(influence.std(ddof=1)) / np.sqrt(rows.size) if rows.size > 1 else np.inf
        out["snips"] = Estimate("snips", value, value - half, value + half, int(rows.size))
    return {name: out[name] for name in ESTIMATORS}


@dataclass
class RewardModel:
    """Expected reward per incentive from the context: a pooled ridge regression plus one per incentive.

    Features are ``[1, x, x**2]`` of the normalized context. The per-incentive fit is on the
    pooled model's residuals with a stronger penalty, so rarely logged incentives shrink to
    the pooled prediction instead of over-fitting a few rounds.
    """

    n_actions: int
    ridge: float = 1.0
    ridge_per_action: float = 100.0

    def fit(self, context: Floats, action: NDArray[np.int64], reward: Floats) -> RewardModel:
        """Fit on logged rounds; returns itself."""
        phi = self._features(context)
        self.pooled = self._solve(phi, reward, self.ridge)
        residual = reward - phi @ self.pooled
        self.per_action = np.zeros((self.n_actions, phi.shape[1]))
        for a in range(self.n_actions):
            rows = action == a
            if rows.any():
                self.per_action[a] = self._solve(phi[rows], residual[rows], self.ridge_per_action)
        return self

    def predict(self, context: Floats) -> Floats:
        """Predicted reward ``(n, n_actions)`` for every round and incentive."""
        phi = self._features(context)
        return (phi @ self.pooled)[:, None] + phi @ self.per_action.T

    @staticmethod
    def _features(context: Floats) -> Floats:
        x = np.asarray(context, dtype=np.float64)
        return np.hstack([np.ones((x.shape[0], 1)), x, x * x])

    @staticmethod
    def _solve(phi: Floats, target: Floats, ridge: float) -> Floats:
        gram = phi.T @ phi + ridge * np.eye(phi.shape[1])
        gram[0, 0] -= ridge  # the intercept is not penalized
        return np.linalg.solve(gram + 1e-9 * np.eye(phi.shape[1]), phi.T @ target)


def cross_fit_q_hat(
    feedback: Mapping[str, Any], n_actions: int, folds: int = 2, seed: int = 0
) -> NDArray[np.float64]:
    """Out-of-fold reward-model predictions ``(n, n_actions)``: no round is predicted by a model fit on it."""
    context = np.asarray(feedback["context"], dtype=np.float64)
    action = np.asarray(feedback["action"], dtype=np.int64)
    reward = np.asarray(feedback["reward"], dtype=np.float64)
    n = action.size
    fold = np.random.default_rng(seed).permutation(n) % max(folds, 1)
    q_hat = np.zeros((n, n_actions))
    for k in range(max(folds, 1)):
        test = fold == k
        train = ~test if folds > 1 else test
        model = RewardModel(n_actions).fit(context[train], action[train], reward[train])
        q_hat[test] = model.predict(context[test])
    return q_hat
