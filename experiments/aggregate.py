"""Aggregate statistics as RL papers report them, on normalized scores.

Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (NeurIPS), and their
``rliable`` library.

``rliable`` 1.2.0 installs here but fails at import (its ``arch`` dependency breaks on pandas 3),
so this is an equivalent implementation of its definitions, tested against hand-computed cases:

- scores are a matrix per policy, ``(runs, tasks)``: a run is an experiment seed, a task a
  scenario variant or an environment;
- **IQM**: the mean of the middle 50% of all runs x tasks scores (``scipy.stats.trim_mean`` with
  0.25 cut from each end, as rliable);
- **mean**; **optimality gap**: the mean of ``max(1 - score, 0)`` (how far below the oracle, 1);
- **probability of improvement** ``P(X > Y)``: per task the Mann-Whitney statistic over the two
  policies' runs (ties count one half), averaged over tasks;
- **stratified bootstrap CIs**: runs are resampled with replacement within each task (the strata),
  percentile intervals, as rliable's ``get_interval_estimates``;
- **performance profile**: the share of runs scoring above ``tau``, averaged over tasks, with
  stratified bootstrap bands.

Per-run normalized score on a task: the run's mean paired gain over the reference, divided by
the task's mean span ``oracle - reference`` over runs (dividing by each run's own span would
explode on a run where the oracle gains little); its mean over runs is the report's
ratio-of-means normalized score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

Scores = NDArray[np.float64]
#: Bootstrap resamples for every interval (rliable's examples use 2,000 to 50,000).
BOOTSTRAP_REPS = 2000
#: Seed of the bootstrap's own generator: the same run gives the same intervals.
BOOTSTRAP_SEED = 0
#: The aggregate metrics, by name.
METRICS = ("IQM", "mean", "optimality gap")


def iqm(scores: Scores) -> float:
    """Interquartile mean of every run x task score (25% trimmed from each end)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=np.float64).ravel(), 0.25))


def mean(scores: Scores) -> float:
    """Mean of every run x task score."""
    return float(np.mean(scores))


def optimality_gap(scores: Scores, gamma: float = 1.0) -> float:
    """Mean shortfall below ``gamma`` (1: the oracle); scores above it count zero."""
    return float(np.mean(gamma - np.minimum(scores, gamma)))


AGGREGATES: dict[str, Callable[[Scores], float]] = {
    "IQM": iqm,
    "mean": mean,
    "optimality gap": optimality_gap,
}


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """``P(X > Y)``: per task, the share of run pairs where X beats Y (ties one half), averaged over tasks."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}; they must be the same tasks")
    per_task = [
        float(np.mean((x[:, t, None] > y[None, :, t]) + 0.5 * (x[:, t, None] == y[None, :, t])))
        for t in range(x.shape[1])
    ]
    return float(np.mean(per_task))


def stratified_resample(scores: Scores, rng: np.random.Generator) -> Scores:
    """One bootstrap sample: each task's runs drawn with replacement from that task's runs."""
    runs, tasks = scores.shape
    picks = rng.integers(0, runs, size=(runs, tasks))
    return np.take_along_axis(scores, picks, axis=0)


def interval(
    statistic: Callable[..., float],
    *samples: Scores,
    reps: int = BOOTSTRAP_REPS,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """``statistic(*samples)`` and its stratified-bootstrap percentile interval (low, high).

    Each sample (a policy's ``(runs, tasks)`` matrix) is resampled independently within tasks.
    """
    rng = np.random.default_rng(seed)
    point = statistic(*samples)
    boot = np.array([statistic(*(stratified_resample(s, rng) for s in samples)) for _ in range(reps)])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return point, float(low), float(high)


def aggregate_table(scores: Mapping[str, Scores], reps: int = BOOTSTRAP_REPS) -> pd.DataFrame:
    """Per policy: IQM, mean and optimality gap with 95% stratified-bootstrap CIs."""
    rows = []
    for policy, matrix in scores.items():
        row: dict[str, object] = {"policy": policy, "runs": matrix.shape[0], "tasks": matrix.shape[1]}
        for name, function in AGGREGATES.items():
            point, low, high = interval(function, matrix, reps=reps)
            row.update({name: point, f"{name} low": low, f"{name} high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_table(scores: Mapping[str, Scores], against: str, reps: int = BOOTSTRAP_REPS) -> pd.DataFrame:
    """Per policy: ``P(policy > against)`` with its 95% stratified-bootstrap CI."""
    rows = []
    for policy, matrix in scores.items():
        if policy == against:
            continue
        point, low, high = interval(probability_of_improvement, matrix, scores[against], reps=reps)
        rows.append({"policy": policy, "against": against, "P": point, "P low": low, "P high": high})
    return pd.DataFrame(rows)


def performance_profile(
    scores: Scores, taus: Scores, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[Scores, Scores, Scores]:
    """Share of runs scoring above each ``tau`` (averaged over tasks) and its 95% bootstrap band."""

    def profile(matrix: Scores) -> Scores:
        return np.mean(matrix[None, :, :] > taus[:, None, None], axis=(1, 2))

    rng = np.random.default_rng(seed)
    boot = np.array([profile(stratified_resample(scores, rng)) for _ in range(reps)])
    return profile(scores), np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)


def run_scores(
    results: pd.DataFrame, reference: str, oracle: str, metric: str = "return", task: str = "variant"
) -> tuple[dict[str, Scores], list[str]]:
    """Per policy, the ``(seeds, tasks)`` normalized scores of a run's ``results`` (module doc).

    Tasks are the values of ``task`` (the variants). Returns the matrices and the names of
    policies left out because they did not run on every task and seed.
    """
    table = results.set_index([task, "policy", "seed", "episode"])[metric].sort_index()
    tasks = list(dict.fromkeys(results[task]))
    seeds = sorted(results["seed"].unique())
    policies = list(dict.fromkeys(results["policy"]))
    columns: dict[str, list[pd.Series]] = {p: [] for p in policies}
    for name in tasks:
        part = table.loc[name]
        present = set(part.index.get_level_values("policy"))
        if reference not in present or oracle not in present:
            return {}, policies
        base = part.loc[reference]
        span = float((part.loc[oracle] - base).groupby(level="seed").mean().mean())
        for policy in policies:
            if policy not in present:
                continue
            gain = (part.loc[policy] - base).groupby(level="seed").mean()
            columns[policy].append((gain / span if span != 0 else gain * np.nan).reindex(seeds))
    out, left_out = {}, []
    for policy, parts in columns.items():
        matrix = np.column_stack([p.to_numpy(dtype=np.float64) for p in parts]) if parts else None
        if matrix is None or matrix.shape[1] != len(tasks) or not np.isfinite(matrix).all():
            left_out.append(policy)
        else:
            out[policy] = matrix
    return out, left_out


def plot_performance_profiles(scores: Mapping[str, Scores], path: Path, title: str = "") -> bool:
    """Performance profiles of every policy (share of runs above tau, 95% bootstrap bands) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not scores:
        return False
    values = np.concatenate([m.ravel() for m in scores.values()])
    low, high = min(-0.5, float(values.min())), max(1.5, float(values.max()))
    taus = np.linspace(low, high, 101)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, matrix in scores.items():
        curve, lower, upper = performance_profile(matrix, taus, reps=500)
        ax.plot(taus, curve, label=policy)
        ax.fill_between(taus, lower, upper, alpha=0.15)
    for x, text in ((0.0, "reference"), (1.0, "oracle")):
        ax.axvline(x, color="k", lw=0.8, ls="--")
        ax.annotate(text, (x, 0.5), fontsize=8, rotation=90, ha="right", va="center")
    ax.set_xlabel("normalized score tau ((policy - none) / (oracle - none))")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Performance profiles (95% stratified bootstrap bands)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(point: float, low: float, high: float) -> str:
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def aggregate_lines(
    scores: Mapping[str, Scores], left_out: list[str], reference: str, oracle: str, what: str
) -> list[str]:
    """The aggregate-statistics section of ``summary.md`` (markdown lines)."""
    ranked = {p: m for p, m in scores.items() if p not in (reference, oracle)}
    if not ranked:
        return []
    table = aggregate_table(ranked)
    runs, tasks = next(iter(ranked.values())).shape
    lines = [
        "",
        f"Aggregate normalized scores on {what} ({runs} seeds x {tasks} task(s); Agarwal et al. 2021): "
        "IQM, mean and optimality gap (mean shortfall below the oracle) with 95% stratified bootstrap "
        f"CIs ({BOOTSTRAP_REPS} resamples of seeds within each task); P(policy > {reference}) is the "
        f"probability that a run of the policy beats a run of `{reference}`. Performance profiles: "
        "`plots/performance_profiles.png`.",
        "",
        f"| policy | IQM | mean | optimality gap | P(policy > {reference}) |",
        "|---|---:|---:|---:|---:|",
    ]
    improvement = improvement_table({**ranked, reference: scores[reference]}, reference).set_index("policy")
    for row in table.to_dict(orient="records"):
        cells = [_fmt(float(row[m]), float(row[f"{m} low"]), float(row[f"{m} high"])) for m in METRICS]
        p = improvement.loc[row["policy"]]
        cells.append(_fmt(float(p["P"]), float(p["P low"]), float(p["P high"])))
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + " |")
    if left_out:
        lines += ["", f"Left out of the aggregates (not on every task and seed): {', '.join(left_out)}."]
    return lines
