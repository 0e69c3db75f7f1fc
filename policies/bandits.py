"""Bandit incentive policies: learn online which incentive pays, optionally under a spend budget.

Each decision (a shopper at a login, a lapse or an abandoned cart) is one bandit round: the
policy picks an incentive, the environment reports the reward (margin, LTV, ...) and the
incentive's cost in dollars, and :meth:`Bandit.update` learns from that batch.

- ``epsilon_greedy``: the per-arm empirical mean, explored with probability
  ``epsilon_t = epsilon * min(1, decay_steps / t)``, the ``epsilon_n``-greedy schedule of
  Auer, Cesa-Bianchi & Fischer (2002, Theorem 3) whose ``1/t`` decay keeps regret logarithmic.
- ``ucb1``: UCB1 (Auer, Cesa-Bianchi & Fischer 2002, "Finite-time analysis of the multiarmed
  bandit problem", Machine Learning 47): mean + ``exploration * reward_range *
  sqrt(2 ln t / n_a)``; Hoeffding's bound scales with the width of the reward range.
- ``thompson``: Thompson sampling (Chapelle & Li 2011, "An empirical evaluation of Thompson
  sampling", NeurIPS) from a Beta-Bernoulli posterior, rewards in ``[0, 1]`` turned into coin
  flips first (Agrawal & Goyal 2012, "Analysis of Thompson sampling for the multi-armed bandit
  problem", COLT), or from a Normal-Gamma posterior (unknown mean and variance) for margins.
- ``lin_ucb``: disjoint LinUCB (Li, Chu, Langford & Schapire 2010, "A contextual-bandit
  approach to personalized news article recommendation", WWW, Algorithm 1): one ridge
  regression per incentive on the observation plus an intercept.
- ``lin_thompson``: linear Thompson sampling (Agrawal & Goyal 2013, "Thompson sampling for
  contextual bandits with linear payoffs", ICML): the same regressions, sampled from
  ``N(theta_hat, v^2 A^-1)``.

Budget: with ``budget_per_decision`` set, every bandit learns each incentive's mean cost and
chooses the argmax of ``reward estimate - lambda * cost estimate``, where the Lagrange
multiplier follows projected subgradient descent on the dual,
``lambda <- max(0, lambda + pacing_rate * (cost - budget_per_decision))``: the dual pacing of
Agrawal & Devanur (2014, "Bandits with concave rewards and convex knapsacks", EC) and Balseiro
& Gur (2019, "Learning in repeated auctions with budgets", Management Science). Since lambda
only grows while spend runs over budget, average overspend after ``T`` decisions is at most
``lambda_T / (pacing_rate * T)``.

``deterministic=True`` acts greedily on the posterior or empirical mean (no exploration, no
random draws), the rule :meth:`Bandit.greedy_model` exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.base import Actions, EnvSpec, JsonPolicy, as_batch, check_choice, check_range, saved_array

Floats = NDArray[np.float64]
#: Most values of a linear bandit's per-incentive matrices (``incentives x (features + 1)^2``),
#: checked before they are allocated: 2**24 float64 values are 128 MiB per matrix (two are kept).
#: A dozen incentives on 15 features need 3,000.
MAX_LINEAR_STATE_VALUES = 2**24


def _check_positive(name: str, value: float) -> None:
    """Reject anything but a finite number above zero, naming the argument."""
    if not (isinstance(value, int | float) and 0.0 < value < np.inf):
        raise ValueError(f"{name}={value!r} must be a finite number > 0")


def _masked_argmax(
    scores: Floats, allowed: NDArray[np.bool_], rng: np.random.Generator | None = None
) -> Actions:
    """Per row, the best allowed arm; ties go to the first (``rng=None``) or a random one."""
    masked = np.where(allowed, scores, -np.inf)
    if rng is None:
        return np.argmax(masked, axis=1).astype(np.int64)
    ties = allowed & (masked == masked.max(axis=1, keepdims=True))
    return np.argmax(np.where(ties, rng.random(masked.shape), -1.0), axis=1).astype(np.int64)


def _pooled_update(
    counts: Floats, means: Floats, m2: Floats, actions: Actions, values: Floats
) -> tuple[Floats, Floats, Floats]:
    """Per-arm count, mean and sum of squared deviations after a batch (Chan et al. 1979)."""
    k = counts.shape[0]
    n_b = np.bincount(actions, minlength=k).astype(np.float64)
    seen = n_b > 0
    mean_b = np.divide(np.bincount(actions, weights=values, minlength=k), n_b, where=seen, out=np.zeros(k))
    m2_b = np.bincount(actions, weights=(values - mean_b[actions]) ** 2, minlength=k)
    total = counts + n_b
    delta = mean_b - means
    share = np.divide(n_b, total, where=total > 0, out=np.zeros(k))
    return total, means + delta * share, m2 + m2_b + delta**2 * counts * share


class Bandit(JsonPolicy):
    """What every bandit shares: feedback checks, cost learning and the budget's Lagrange pacing.

    Subclasses provide ``_explore_scores`` (UCB indices or posterior samples, ``(n, k)``),
    ``_greedy_scores`` (the deterministic rule, cost penalty included), ``_learn`` (rewards)
    and :meth:`greedy_model`.
    """

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
        **params: Any,
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        if budget_per_decision is not None:
            check_range("budget_per_decision", budget_per_decision, 0.0)
        _check_positive("pacing_rate", pacing_rate)
        super().__init__(
            spec, seed, budget_per_decision=budget_per_decision, pacing_rate=pacing_rate, **params
        )
        self.budget_per_decision = budget_per_decision
        self.pacing_rate = float(pacing_rate)
        k = spec.n_actions
        self.cost_counts = np.zeros(k)
        self.cost_means = np.zeros(k)
        self.lagrange = 0.0

    # ---- acting -------------------------------------------------------------------------------
    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        allowed = masks[:, 0, :]
        if deterministic:
            return _masked_argmax(self._greedy_scores(obs), allowed)
        scores = self._explore_scores(obs) - self.lagrange * self.cost_means
        return _masked_argmax(scores, allowed, self.rng)

    def _explore_scores(self, obs: Floats) -> Floats:
        raise NotImplementedError

    def _greedy_scores(self, obs: Floats) -> Floats:
        raise NotImplementedError

    def greedy_model(self) -> dict[str, Any]:
        """JSON-ready deterministic rule: argmax over allowed actions of its scores."""
        raise NotImplementedError

    # ---- learning -----------------------------------------------------------------------------
    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: Actions,
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """Learn from a batch of decisions: rewards per arm, costs per arm and the budget's price."""
        obs, _ = as_batch(observations, len(self.spec.obs_fields))
        n = obs.shape[0]
        acts = np.asarray(actions).reshape(-1)
        rew = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if acts.shape[0] != n or rew.shape[0] != n:
            raise ValueError(
                f"update got {n} observations, {acts.shape[0]} actions and {rew.shape[0]} rewards"
            )
        if not np.issubdtype(acts.dtype, np.integer) or ((acts < 0) | (acts >= self.spec.n_actions)).any():
            raise ValueError(f"actions must be integers in [0, {self.spec.n_actions}); got {acts[:5]}...")
        if not np.isfinite(rew).all():
            raise ValueError("rewards must be finite numbers")
        if costs is None and self.budget_per_decision is not None:
            raise ValueError("costs are required: budget_per_decision is set, so spend must be tracked")
        cst = None if costs is None else np.asarray(costs, dtype=np.float64).reshape(-1)
        if cst is not None and (cst.shape[0] != n or not (np.isfinite(cst) & (cst >= 0)).all()):
            raise ValueError(f"costs must be {n} finite dollar amounts >= 0, one per decision")
        if n == 0:
            return
        acts = acts.astype(np.int64)
        self._learn(obs, acts, rew)
        if cst is not None:
            self._learn_costs(acts, cst)

    def _learn(self, obs: Floats, actions: Actions, rewards: Floats) -> None:
        raise NotImplementedError

    def _learn_costs(self, actions: Actions, costs: Floats) -> None:
        """Each arm's mean cost, and lambda by projected subgradient on the budget constraint."""
        self.cost_counts, self.cost_means, _ = _pooled_update(
            self.cost_counts, self.cost_means, np.zeros_like(self.cost_means), actions, costs
        )
        if self.budget_per_decision is None:
            return
        # The projected recursion lambda_t = max(0, lambda_{t-1} + g_t) over the batch in closed
        # form (Lindley): lambda_T = max(lambda_0 + S_T, S_T - min_t S_t), S the partial sums.
        partial = np.cumsum(self.pacing_rate * (costs - self.budget_per_decision))
        self.lagrange = float(max(self.lagrange + partial[-1], partial[-1] - partial.min()))

    # ---- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Cost estimates and the Lagrange multiplier; subclasses add what they learn."""
        return {
            "cost_counts": self.cost_counts.tolist(),
            "cost_means": self.cost_means.tolist(),
            "lagrange": self.lagrange,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.cost_counts = saved_array(state, "cost_counts", self.cost_counts.shape, minimum=0.0)
        self.cost_means = saved_array(state, "cost_means", self.cost_means.shape)
        self.lagrange = float(saved_array(state, "lagrange", (), minimum=0.0))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bandit:
        """Rebuild a saved bandit (``to_dict``) with its learning and its rng state."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"kind {data.get('kind')!r} saved, but {cls.__name__} is {cls.kind!r}")
        policy = super().from_dict(data)
        if not isinstance(policy, Bandit):  # pragma: no cover - cls is a Bandit
            raise TypeError(f"{cls.__name__}.from_dict built a {type(policy).__name__}")
        return policy


class ContextFreeBandit(Bandit):
    """A bandit that ignores the observation: per-arm statistics of the rewards it learns from."""

    def __init__(self, spec: EnvSpec, seed: int = 0, **params: Any) -> None:
        super().__init__(spec, seed, **params)
        k = spec.n_actions
        self.counts = np.zeros(k)
        self.means = np.zeros(k)
        self.m2 = np.zeros(k)

    def _estimates(self) -> Floats:
        """Per-arm reward estimate the deterministic rule uses (empirical or posterior mean)."""
        return self.means

    def _learning_values(self, rewards: Floats) -> Floats:
        """What the statistics are kept of (the rewards, unless a likelihood needs otherwise)."""
        return rewards

    def _learn(self, obs: Floats, actions: Actions, rewards: Floats) -> None:
        values = self._learning_values(rewards)
        self.counts, self.means, self.m2 = _pooled_update(self.counts, self.means, self.m2, actions, values)

    def _arm_scores(self) -> Floats:
        return self._estimates() - self.lagrange * self.cost_means

    def _greedy_scores(self, obs: Floats) -> Floats:
        return np.broadcast_to(self._arm_scores(), (obs.shape[0], self.spec.n_actions))

    def greedy_model(self) -> dict[str, Any]:
        """``{"rule": "scores", "scores": [...]}``: one score per arm, ``-lambda * cost`` included."""
        return {
            "rule": "scores",
            "kind": self.kind,
            "action_names": list(self.spec.action_names),
            "scores": self._arm_scores().tolist(),
        }

    def _untried_first(self, scores: Floats) -> Floats:
        """Arms never tried score +inf, so each is tried once before the rule takes over."""
        return np.where(self.counts > 0, scores, np.inf)

    def state_dict(self) -> dict[str, Any]:
        """Per-arm counts, means and squared deviations, plus the budget state."""
        return {
            **super().state_dict(),
            "counts": self.counts.tolist(),
            "means": self.means.tolist(),
            "m2": self.m2.tolist(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state(state)
        self.counts = saved_array(state, "counts", self.counts.shape, minimum=0.0)
        self.means = saved_array(state, "means", self.means.shape)
        self.m2 = saved_array(state, "m2", self.m2.shape, minimum=0.0)


class EpsilonGreedy(ContextFreeBandit):
    """Best empirical mean, except a uniformly random allowed arm with probability ``epsilon_t``.

    ``epsilon_t = epsilon * min(1, decay_steps / t)`` after ``t`` learned decisions (Auer et al.
    2002's ``epsilon_n``-greedy); ``decay_steps=None`` keeps epsilon constant. Arms never tried
    go first, as in UCB1, so no incentive is written off before its first result.
    """

    kind = "epsilon_greedy"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        epsilon: float = 0.1,
        decay_steps: float | None = 1000.0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        check_range("epsilon", epsilon, 0.0, 1.0)
        if decay_steps is not None:
            _check_positive("decay_steps", decay_steps)
        super().__init__(
            spec,
            seed,
            epsilon=epsilon,
            decay_steps=decay_steps,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
        )
        self.epsilon = float(epsilon)
        self.decay_steps = decay_steps

    def current_epsilon(self) -> float:
        """Exploration probability for the next decision."""
        if self.decay_steps is None:
            return self.epsilon
        return self.epsilon * min(1.0, self.decay_steps / max(1.0, float(self.counts.sum())))

    def _explore_scores(self, obs: Floats) -> Floats:
        return np.broadcast_to(self._untried_first(self.means), (obs.shape[0], self.spec.n_actions))

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        greedy = super()._act(obs, masks, deterministic)
        if deterministic:
            return greedy
        explore = self.rng.random(obs.shape[0]) < self.current_epsilon()
        uniform = np.argmax(self.rng.random((obs.shape[0], self.spec.n_actions)) + masks[:, 0, :], axis=1)
        return np.where(explore, uniform, greedy).astype(np.int64)


class UCB1(ContextFreeBandit):
    """UCB1: mean + ``exploration * reward_range * sqrt(2 ln t / n_a)``; untried arms first.

    Hoeffding's inequality behind UCB1 holds for rewards in an interval of width
    ``reward_range`` (1 for conversions; the spread of margins for dollar rewards), so the
    bonus scales with it. ``exploration`` = 1 is Auer et al.'s index.
    """

    kind = "ucb1"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        exploration: float = 1.0,
        reward_range: float = 1.0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        check_range("exploration", exploration, 0.0)
        _check_positive("reward_range", reward_range)
        super().__init__(
            spec,
            seed,
            exploration=exploration,
            reward_range=reward_range,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
        )
        self.exploration = float(exploration)
        self.reward_range = float(reward_range)

    def _explore_scores(self, obs: Floats) -> Floats:
        log_t = np.log(max(1.0, float(self.counts.sum())))
        bonus = np.sqrt(2.0 * log_t / np.maximum(self.counts, 1.0))
        index = self.means + self.exploration * self.reward_range * bonus
        return np.broadcast_to(self._untried_first(index), (obs.shape[0], self.spec.n_actions))


class ThompsonSampling(ContextFreeBandit):
    """Thompson sampling: each decision draws every arm's mean from its posterior, takes the best.

    ``likelihood="bernoulli"``: Beta(``prior_alpha``, ``prior_beta``) prior; a reward ``r`` in
    ``[0, 1]`` counts as a Bernoulli(``r``) success drawn with the policy's rng (Agrawal & Goyal
    2012), so conversions and rates both work. ``likelihood="gaussian"``: Normal-Gamma prior on
    (mean, precision) with mean ``prior_mean`` worth ``prior_count`` observations and precision
    Gamma(``prior_shape``, rate ``prior_rate``); the defaults suit unit-scale rewards (set
    ``prior_rate`` near ``prior_shape`` times the expected noise variance otherwise).
    """

    kind = "thompson"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        likelihood: str = "bernoulli",
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        prior_mean: float = 0.0,
        prior_count: float = 1.0,
        prior_shape: float = 1.0,
        prior_rate: float = 1.0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        check_choice("likelihood", likelihood, ("bernoulli", "gaussian"))
        for name, value in (
            ("prior_alpha", prior_alpha),
            ("prior_beta", prior_beta),
            ("prior_count", prior_count),
            ("prior_shape", prior_shape),
            ("prior_rate", prior_rate),
        ):
            _check_positive(name, value)
        check_range("prior_mean", prior_mean, -np.inf)
        super().__init__(
            spec,
            seed,
            likelihood=likelihood,
            prior_alpha=prior_alpha,
            prior_beta=prior_beta,
            prior_mean=prior_mean,
            prior_count=prior_count,
            prior_shape=prior_shape,
            prior_rate=prior_rate,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
        )
        self.likelihood = likelihood

    def _learning_values(self, rewards: Floats) -> Floats:
        if self.likelihood == "gaussian":
            return rewards
        if ((rewards < 0) | (rewards > 1)).any():
            raise ValueError("likelihood='bernoulli' needs rewards in [0, 1]; use likelihood='gaussian'")
        return (self.rng.random(rewards.shape[0]) < rewards).astype(np.float64)

    def _beta_posterior(self) -> tuple[Floats, Floats]:
        successes = self.counts * self.means
        return self.params["prior_alpha"] + successes, self.params["prior_beta"] + self.counts - successes

    def _normal_gamma_posterior(self) -> tuple[Floats, Floats, Floats, Floats]:
        """Posterior (mean, count, shape, rate) of the Normal-Gamma model (Murphy 2007, sec. 3)."""
        p = self.params
        count = p["prior_count"] + self.counts
        mean = (p["prior_count"] * p["prior_mean"] + self.counts * self.means) / count
        shape = p["prior_shape"] + self.counts / 2.0
        shrink = p["prior_count"] * self.counts * (self.means - p["prior_mean"]) ** 2 / (2.0 * count)
        rate = p["prior_rate"] + self.m2 / 2.0 + shrink
        return mean, count, shape, rate

    def _estimates(self) -> Floats:
        if self.likelihood == "gaussian":
            return self._normal_gamma_posterior()[0]
        alpha, beta = self._beta_posterior()
        return alpha / (alpha + beta)

    def _explore_scores(self, obs: Floats) -> Floats:
        size = (obs.shape[0], self.spec.n_actions)
        if self.likelihood == "bernoulli":
            alpha, beta = self._beta_posterior()
            return self.rng.beta(alpha, beta, size=size)
        mean, count, shape, rate = self._normal_gamma_posterior()
        precision = self.rng.gamma(shape, 1.0 / rate, size=size)
        return mean + self.rng.standard_normal(size) / np.sqrt(count * precision)


class LinearBandit(Bandit):
    """Disjoint linear bandit: per arm, ridge regression of reward on ``[observation, 1]``.

    Keeps ``A = ridge * I + sum x x^T``, its inverse and ``b = sum r x`` per arm. A batch of
    ``m`` decisions on an arm updates the inverse by Woodbury (``O(m d^2 + m^3)``; Sherman-Morrison
    for ``m = 1``) or, when ``m`` exceeds ``d``, inverts ``A`` afresh (``O(d^3)``, amortized).
    """

    def __init__(self, spec: EnvSpec, seed: int = 0, ridge: float = 1.0, **params: Any) -> None:
        _check_positive("ridge", ridge)
        k, d = spec.n_actions, len(spec.obs_fields) + 1
        if k * d * d > MAX_LINEAR_STATE_VALUES:  # before the matrices are allocated
            raise ValueError(
                f"{self.kind}: {k} incentives x {d}^2 regression values = {k * d * d:,}; at most "
                f"{MAX_LINEAR_STATE_VALUES:,} (MAX_LINEAR_STATE_VALUES): use fewer features or incentives"
            )
        super().__init__(spec, seed, ridge=ridge, **params)
        self.gram = np.tile(float(ridge) * np.eye(d), (k, 1, 1))
        self.gram_inv = np.tile(np.eye(d) / float(ridge), (k, 1, 1))
        self.moments = np.zeros((k, d))
        self.theta = np.zeros((k, d))

    @staticmethod
    def _context(obs: Floats) -> Floats:
        return np.hstack([obs, np.ones((obs.shape[0], 1))])

    def _fit(self, obs: Floats) -> tuple[Floats, Floats]:
        """Per decision and arm: predicted reward ``x theta_a`` and ``x^T A_a^-1 x``."""
        x = self._context(obs)
        quad = np.einsum("kne,ne->nk", x @ self.gram_inv, x)
        return x @ self.theta.T, np.maximum(quad, 0.0)

    def _learn(self, obs: Floats, actions: Actions, rewards: Floats) -> None:
        x = self._context(obs)
        d = x.shape[1]
        for arm in np.unique(actions):
            rows = x[actions == arm]
            self.gram[arm] += rows.T @ rows
            self.moments[arm] += rows.T @ rewards[actions == arm]
            if rows.shape[0] <= d:
                inv_rows = rows @ self.gram_inv[arm]
                inner = np.eye(rows.shape[0]) + inv_rows @ rows.T
                inv = self.gram_inv[arm] - inv_rows.T @ np.linalg.solve(inner, inv_rows)
            else:
                inv = np.linalg.inv(self.gram[arm])
            self.gram_inv[arm] = (inv + inv.T) / 2.0  # keep round-off from breaking symmetry
        self.theta = np.einsum("kde,ke->kd", self.gram_inv, self.moments)

    def _weights(self) -> tuple[Floats, Floats]:
        """The deterministic rule as ``scores = obs @ weights.T + bias`` (cost penalty in bias)."""
        return self.theta[:, :-1], self.theta[:, -1] - self.lagrange * self.cost_means

    def _greedy_scores(self, obs: Floats) -> Floats:
        weights, bias = self._weights()
        return obs @ weights.T + bias

    def greedy_model(self) -> dict[str, Any]:
        """``{"rule": "linear", "weights": n_actions x n_fields, "bias": n_actions}`` on raw obs."""
        weights, bias = self._weights()
        return {
            "rule": "linear",
            "kind": self.kind,
            "action_names": list(self.spec.action_names),
            "obs_fields": list(self.spec.obs_fields),
            "weights": weights.tolist(),
            "bias": bias.tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Per-arm ``A``, ``A^-1`` and ``b`` (the inverse too, so a reload acts bit for bit alike)."""
        return {
            **super().state_dict(),
            "gram": self.gram.tolist(),
            "gram_inv": self.gram_inv.tolist(),
            "moments": self.moments.tolist(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state(state)
        self.gram = saved_array(state, "gram", self.gram.shape)
        self.gram_inv = saved_array(state, "gram_inv", self.gram_inv.shape)
        self.moments = saved_array(state, "moments", self.moments.shape)
        self.theta = np.einsum("kde,ke->kd", self.gram_inv, self.moments)


class LinUCB(LinearBandit):
    """Disjoint LinUCB: ``x theta_a + alpha * sqrt(x^T A_a^-1 x)``, a ridge fit plus its confidence width.

    ``alpha`` scales the width (Li et al. 2010 set it from the confidence level); ``ridge`` is
    the regularization ``A = ridge * I`` before any data.
    """

    kind = "lin_ucb"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        alpha: float = 1.0,
        ridge: float = 1.0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        check_range("alpha", alpha, 0.0)
        super().__init__(
            spec,
            seed,
            alpha=alpha,
            ridge=ridge,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
        )
        self.alpha = float(alpha)

    def _explore_scores(self, obs: Floats) -> Floats:
        mean, quad = self._fit(obs)
        return mean + self.alpha * np.sqrt(quad)


class LinearThompson(LinearBandit):
    """Linear Thompson sampling: per decision and arm, ``theta ~ N(theta_hat, v^2 A^-1)``, then argmax.

    Only ``x . theta`` is used, and for a Gaussian ``theta`` it is exactly
    ``N(x theta_hat, v^2 x^T A^-1 x)``: drawing that scalar is the same posterior sample as
    drawing all of ``theta`` (independently per decision and arm), at ``O(1)`` memory per pair.
    ``posterior_scale`` is ``v``: the reward noise's standard deviation makes the posterior exact
    for a Gaussian prior ``N(0, v^2 / ridge)``; Agrawal & Goyal's theory asks for a larger one.
    """

    kind = "lin_thompson"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        posterior_scale: float = 1.0,
        ridge: float = 1.0,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        _check_positive("posterior_scale", posterior_scale)
        super().__init__(
            spec,
            seed,
            posterior_scale=posterior_scale,
            ridge=ridge,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
        )
        self.posterior_scale = float(posterior_scale)

    def _explore_scores(self, obs: Floats) -> Floats:
        mean, quad = self._fit(obs)
        return mean + self.posterior_scale * np.sqrt(quad) * self.rng.standard_normal(mean.shape)


#: Every bandit by its ``kind``.
BANDITS: dict[str, type[Bandit]] = {
    cls.kind: cls for cls in (EpsilonGreedy, UCB1, ThompsonSampling, LinUCB, LinearThompson)
}


def bandit_from_dict(data: Mapping[str, Any]) -> Bandit:
    """Rebuild any saved bandit (``policy.json`` loaded with ``json.load``), rng state included."""
    kind = data.get("kind")
    if kind not in BANDITS:
        raise ValueError(f"kind={kind!r} is not a bandit; bandits: {sorted(BANDITS)}")
    return BANDITS[kind].from_dict(data)
