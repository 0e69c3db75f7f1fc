"""Maximum-likelihood fits of the customer-base models to repeat-purchase summaries.

Models (time in weeks throughout; the likelihoods are written out in ``docs/CALIBRATION.md``):

* Pareto/NBD (Schmittlein, Morrison & Colombo 1987), in the form of Fader & Hardie's 2005 note
  "A Note on Deriving the Pareto/NBD Model and Related Expressions": purchases Poisson(lambda)
  while alive, ``lambda ~ Gamma(r, alpha)``; an exponential lifetime with rate
  ``mu ~ Gamma(s, beta)``. CDNOW: r=0.55, alpha=10.58, s=0.61, beta=11.67, LL=-9595.0.
* BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"): the same purchase
  process; after each repeat purchase the customer drops out with ``p ~ Beta(a, b)``.
  CDNOW: r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4.
* Gamma-Gamma spend (Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value"): the mean
  of a customer's x repeat order values. CDNOW: p=6.25, q=3.74, gamma=15.44.

Every fit is deterministic: a fixed start, Nelder-Mead on the log parameters, then a BFGS
polish; standard errors come from the inverse of a numerical Hessian of the negative
log-likelihood on the log scale, mapped to the natural scale by the delta method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize
from scipy.special import betaln, gammaln, hyp2f1

F64 = NDArray[np.float64]

PARETO_NBD_PARAMS = ("r", "alpha", "s", "beta")
BGNBD_PARAMS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMS = ("p", "q", "gamma")

#: Published maximum-likelihood estimates on CDNOW's 39-week calibration period.
PUBLISHED_CDNOW = {
    "pareto_nbd": {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67, "log_likelihood": -9595.0},
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.4},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}


@dataclass(frozen=True)
class RepeatSummary:
    """Per-customer repeat-purchase summary of a calibration period (time in weeks).

    Attributes:
        frequency: repeat transactions ``x`` (transactions after the first, one per day).
        recency_weeks: ``t_x``, time from the first to the last transaction.
        age_weeks: ``T``, time from the first transaction to the end of calibration.
        mean_repeat_value: ``zbar``, mean value of the repeat transactions (NaN where x = 0).
    """

    frequency: F64
    recency_weeks: F64
    age_weeks: F64
    mean_repeat_value: F64

    def __post_init__(self) -> None:
        n = self.frequency.size
        for name in ("recency_weeks", "age_weeks", "mean_repeat_value"):
            if getattr(self, name).size != n:
                raise ValueError(f"RepeatSummary.{name} has {getattr(self, name).size} values, expected {n}")
        if np.any(self.recency_weeks > self.age_weeks + 1e-9):
            raise ValueError("RepeatSummary.recency_weeks exceeds age_weeks; t_x must be <= T")


@dataclass(frozen=True)
class ModelFit:
    """A fitted model: parameters, standard errors and the maximized log-likelihood."""

    model: str
    names: tuple[str, ...]
    values: tuple[float, ...]
    standard_errors: tuple[float, ...]
    log_likelihood: float
    customers: int
    converged: bool

    def param(self, name: str) -> float:
        """The fitted value of parameter ``name``."""
        return self.values[self.names.index(name)]

    def as_dict(self) -> dict[str, float]:
        """Parameter name to fitted value."""
        return dict(zip(self.names, self.values, strict=True))

    def se_dict(self) -> dict[str, float]:
        """Parameter name to standard error."""
        return dict(zip(self.names, self.standard_errors, strict=True))


# ---- likelihoods ---------------------------------------------------------------------------------
def _log_a0(r: float, alpha: float, s: float, beta: float, x: F64, t_x: F64, age: F64) -> F64:
    """The log of A_0 in Fader & Hardie's Pareto/NBD note (eqs. 19-20), by a signed log-sum-exp."""
    b_arg: float | F64
    if alpha >= beta:
        big, small, b_arg = alpha, beta, s + 1.0
    else:
        big, small, b_arg = beta, alpha, r + x
    rsx = r + s + x
    gap = big - small
    log_h1 = np.log(hyp2f1(rsx, b_arg, rsx + 1.0, gap / (big + t_x)))
    log_h2 = np.log(hyp2f1(rsx, b_arg, rsx + 1.0, gap / (big + age)))
    log_q1, log_q2 = np.log(big + t_x), np.log(big + age)
    first = log_h1 - rsx * log_q1
    second = log_h2 - rsx * log_q2
    # first > second always (the integrand is positive); log(e^first - e^second), stable.
    return first + np.log(-np.expm1(np.minimum(second - first, -1e-300)))


def pareto_nbd_log_likelihood(params: tuple[float, ...] | F64, summary: RepeatSummary) -> F64:
    """Per-customer Pareto/NBD log-likelihood of ``(x, t_x, T)`` at ``(r, alpha, s, beta)``."""
    r, alpha, s, beta = (float(v) for v in params)
    x, t_x, age = summary.frequency, summary.recency_weeks, summary.age_weeks
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    died = np.log(s) - np.log(r + s + x) + _log_a0(r, alpha, s, beta, x, t_x, age)
    return np.asarray(head + np.logaddexp(alive, died), dtype=np.float64)


def bgnbd_log_likelihood(params: tuple[float, ...] | F64, summary: RepeatSummary) -> F64:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    r, alpha, a, b = (float(v) for v in params)
    x, t_x, age = summary.frequency, summary.recency_weeks, summary.age_weeks
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    survived = -(r + x) * np.log(alpha + age)
    repeat = x > 0
    dropped = np.full(x.shape, -np.inf)
    dropped[repeat] = np.log(a) - np.log(b + x[repeat] - 1.0) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    return np.asarray(head + np.logaddexp(survived, dropped), dtype=np.float64)


def gamma_gamma_log_likelihood(params: tuple[float, ...] | F64, frequency: F64, mean_value: F64) -> F64:
    """Per-customer Gamma-Gamma log-likelihood of the mean ``zbar`` of ``x`` order values."""
    p, q, gamma = (float(v) for v in params)
    px = p * frequency
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(mean_value)
        + px * np.log(frequency)
        - (px + q) * np.log(gamma + frequency * mean_value),
        dtype=np.float64,
    )


# ---- maximum likelihood --------------------------------------------------------------------------
def _numerical_hessian(f: Callable[[F64], float], at: F64, step: float = 1e-4) -> F64:
    """Central-difference Hessian of ``f`` at ``at``."""
    k = at.size
    hess = np.empty((k, k))
    eye = np.eye(k) * step
    f0 = f(at)
    for i in range(k):
        hess[i, i] = (f(at + eye[i]) - 2.0 * f0 + f(at - eye[i])) / step**2
        for j in range(i + 1, k):
            hess[i, j] = hess[j, i] = (
                f(at + eye[i] + eye[j])
                - f(at + eye[i] - eye[j])
                - f(at - eye[i] + eye[j])
                + f(at - eye[i] - eye[j])
            ) / (4.0 * step**2)
    return hess


def _maximize(
    model: str, names: tuple[str, ...], log_likelihood: Callable[[F64], float], start: F64, customers: int
) -> ModelFit:
    """Maximize ``log_likelihood`` over log-parameters from a fixed ``start`` (natural scale)."""

    def negative(theta: F64) -> float:
        if np.any(np.abs(theta) > 30.0):
            return np.inf
        value = log_likelihood(np.exp(theta))
        return -value if np.isfinite(value) else np.inf

    with np.errstate(all="ignore"):  # trial points far out give inf/nan; they are rejected as +inf
        simplex = optimize.minimize(
            negative,
            np.log(start),
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-9, "maxiter": 5000, "maxfev": 5000},
        )
        polish = optimize.minimize(negative, simplex.x, method="BFGS", options={"gtol": 1e-6})
        best = polish if polish.fun <= simplex.fun else simplex
        theta = np.asarray(best.x, dtype=np.float64)
        hess = _numerical_hessian(negative, theta)
        try:
            se_log = np.sqrt(np.diag(np.linalg.inv(hess)))
        except np.linalg.LinAlgError:
            se_log = np.full(theta.size, np.nan)
    values = np.exp(theta)
    return ModelFit(
        model=model,
        names=names,
        values=tuple(float(v) for v in values),
        standard_errors=tuple(float(v) for v in values * se_log),  # delta method: d e^t = e^t dt
        log_likelihood=float(-best.fun),
        customers=customers,
        # A parameter running off to 0 or infinity means the log does not identify the model.
        converged=bool(simplex.success)
        and bool(np.all(np.isfinite(se_log)))
        and bool(np.all(np.abs(theta) < 15)),
    )


def fit_pareto_nbd(summary: RepeatSummary) -> ModelFit:
    """Maximum-likelihood Pareto/NBD fit (start: every parameter 1)."""
    return _maximize(
        "pareto_nbd",
        PARETO_NBD_PARAMS,
        lambda p: float(pareto_nbd_log_likelihood(p, summary).sum()),
        np.ones(4),
        summary.frequency.size,
    )


def fit_bgnbd(summary: RepeatSummary) -> ModelFit:
    """Maximum-likelihood BG/NBD fit (start: every parameter 1)."""
    return _maximize(
        "bgnbd",
        BGNBD_PARAMS,
        lambda p: float(bgnbd_log_likelihood(p, summary).sum()),
        np.ones(4),
        summary.frequency.size,
    )


def fit_gamma_gamma(summary: RepeatSummary) -> ModelFit:
    """Maximum-likelihood Gamma-Gamma fit on customers with repeat transactions of positive mean value.

    Customers whose repeat transactions are all worth $0 carry no spend information for a
    Gamma distribution (its density at 0 is 0 or infinite) and are left out.
    """
    repeat = (summary.frequency > 0) & (np.nan_to_num(summary.mean_repeat_value) > 0)
    x, zbar = summary.frequency[repeat], summary.mean_repeat_value[repeat]
    if x.size == 0:
        raise ValueError(
            "Gamma-Gamma needs customers with repeat transactions of positive value; the summary has none"
        )
    return _maximize(
        "gamma_gamma",
        GAMMA_GAMMA_PARAMS,
        lambda p: float(gamma_gamma_log_likelihood(p, x, zbar).sum()),
        np.array([1.0, 2.0, float(np.mean(zbar))]),
        int(x.size),
    )


# ---- forecasts -----------------------------------------------------------------------------------
def pareto_nbd_expected_repeats(fit: ModelFit, t_weeks: F64) -> F64:
    """E[X(t)]: expected repeat transactions in ``t`` weeks after a customer's first purchase."""
    r, alpha, s, beta = fit.values
    t = np.maximum(np.asarray(t_weeks, dtype=np.float64), 0.0)
    if abs(s - 1.0) < 1e-9:
        return np.asarray(r * beta / alpha * np.log1p(t / beta), dtype=np.float64)
    return np.asarray(r * beta / (alpha * (s - 1.0)) * (1.0 - (beta / (beta + t)) ** (s - 1.0)))


def bgnbd_expected_repeats(fit: ModelFit, t_weeks: F64) -> F64:
    """E[X(t)] of the BG/NBD (Fader, Hardie & Lee 2005, eq. 9)."""
    r, alpha, a, b = fit.values
    t = np.maximum(np.asarray(t_weeks, dtype=np.float64), 0.0)
    h = hyp2f1(r, b, a + b - 1.0, t / (alpha + t))
    return np.asarray((a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)) ** r * h))


def pareto_nbd_p_alive(fit: ModelFit, summary: RepeatSummary) -> F64:
    """P(alive at T | x, t_x, T) of the Pareto/NBD: the alive term's share of the likelihood."""
    r, alpha, s, beta = fit.values
    x, age = summary.frequency, summary.age_weeks
    log_alive = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + s * np.log(beta)
        - (r + x) * np.log(alpha + age)
        - s * np.log(beta + age)
        - pareto_nbd_log_likelihood(fit.values, summary)
    )
    return np.asarray(np.minimum(np.exp(log_alive), 1.0))


def bgnbd_p_alive(fit: ModelFit, summary: RepeatSummary) -> F64:
    """P(alive at T | x, t_x, T) of the BG/NBD (Fader, Hardie & Lee 2005, eq. 11 of their note)."""
    r, alpha, a, b = fit.values
    x, t_x, age = summary.frequency, summary.recency_weeks, summary.age_weeks
    odds = np.where(
        x > 0, a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + age) / (alpha + t_x)) ** (r + x), 0.0
    )
    return np.asarray(1.0 / (1.0 + odds))


def gamma_gamma_expected_value(fit: ModelFit, summary: RepeatSummary) -> F64:
    """E[transaction value | x, zbar]: the Gamma-Gamma posterior mean (Fader & Hardie 2013, eq. 5)."""
    p, q, gamma = fit.values
    x = summary.frequency
    zbar = np.where(x > 0, np.nan_to_num(summary.mean_repeat_value), 0.0)
    return np.asarray(p * (gamma + x * zbar) / (p * x + q - 1.0))


def pareto_nbd_conditional_expected(fit: ModelFit, summary: RepeatSummary, horizon_weeks: float) -> F64:
    """E[Y(t) | x, t_x, T]: expected repeats in the next ``horizon_weeks`` given each history."""
    r, alpha, s, beta = fit.values
    x, age = summary.frequency, summary.age_weeks
    ratio = (beta + age) / (beta + age + horizon_weeks)
    trend = -np.log(ratio) if abs(s - 1.0) < 1e-9 else (1.0 - ratio ** (s - 1.0)) / (s - 1.0)
    alive = pareto_nbd_p_alive(fit, summary)
    return np.asarray((r + x) * (beta + age) / (alpha + age) * trend * alive)


def bgnbd_conditional_expected(fit: ModelFit, summary: RepeatSummary, horizon_weeks: float) -> F64:
    """E[Y(t) | x, t_x, T] of the BG/NBD (Fader, Hardie & Lee 2005, eq. 10)."""
    r, alpha, a, b = fit.values
    x, t_x, age = summary.frequency, summary.recency_weeks, summary.age_weeks
    t = horizon_weeks
    h = hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + age + t))
    numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + age) / (alpha + age + t)) ** (r + x) * h)
    odds = np.where(
        x > 0, a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + age) / (alpha + t_x)) ** (r + x), 0.0
    )
    return np.asarray(numerator / (1.0 + odds))


def cohort_weekly_expected(
    expected_repeats: Callable[[F64], F64], first_purchase_weeks: F64, weeks: int
) -> F64:
    """Expected repeat transactions of a cohort in each of ``weeks`` weeks from the log's start.

    Each customer contributes ``E[X(t)]`` from her own first purchase on (the Fader-Hardie-Lee
    tracking forecast); week ``k`` is ``[k, k + 1)`` weeks from the start.
    """
    edges = np.arange(weeks + 1, dtype=np.float64)
    cumulative = np.zeros(weeks + 1)
    for birth in np.unique(first_purchase_weeks):
        count = np.count_nonzero(first_purchase_weeks == birth)
        cumulative += count * expected_repeats(np.maximum(edges - birth, 0.0))
    return np.diff(cumulative)
