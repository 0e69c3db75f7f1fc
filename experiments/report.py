"""Reports of a run: ``summary.md`` (means, 95% CIs, paired differences) and ``plots/*.png``.

Statistics: the unit of replication is the experiment seed (each seed trains its own policy
and evaluates it on its own episodes), so a policy's mean and 95% confidence interval come
from the per-seed means (Student t with ``seeds - 1`` degrees of freedom). Paired differences
against the reference policy are taken episode by episode, where both policies faced the same
shoppers and draws (common random numbers), then averaged per seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from experiments.config import ExperimentConfig
from experiments.pareto import plot_pareto_front
from sim.io import atomic_write_text

#: Metrics reported when present, in order, with their labels.
HEADLINE = {
    "return": "return",
    "ltv_mean": "mean LTV ($)",
    "margin": "margin ($)",
    "incentive_cost": "incentive cost ($)",
    "orders": "orders",
    "categories_per_shopper": "categories per buyer",
    "cross_buying_share": "cross-buying share",
    "active_share": "active share",
    "late_delivery_share": "late deliveries",
    "peak_utilization": "peak utilization",
    "overtime_orders": "overtime orders",
}
KEYS = ["variant", "policy"]
#: Metrics on which normalized scores are reported: the env's return and what the shop truly earns.
SCORED = {"return": "return", "margin": "margin", "ltv_mean": "mean LTV"}
#: Environments whose reward is an attribution, not what the shop earns: how their return is labelled.
ATTRIBUTED_RETURN = {
    "shopgym/IncentiveTargeting-v0": (
        "the env's reward: each decision's margin over its 14-day last-touch window (attributed), which "
        "misses what falls outside the windows"
    ),
}


def metrics_present(results: pd.DataFrame) -> list[str]:
    """Headline metrics this run's environment reports."""
    return [m for m in HEADLINE if m in results.columns]


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its ``level`` t confidence interval (NaN half-width for one value)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, half


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant, policy and metric: mean over seeds, 95% CI half-width, seeds."""
    per_seed = results.groupby([*KEYS, "seed"], sort=False)[metrics_present(results)].mean()
    rows = []
    for (variant, policy), group in per_seed.groupby(level=[0, 1], sort=False):
        for metric in group.columns:
            mean, half = mean_ci(group[metric].to_numpy())
            rows.append(
                {
                    "variant": variant,
                    "policy": policy,
                    "metric": metric,
                    "mean": mean,
                    "ci95": half,
                    "seeds": len(group),
                }
            )
    return pd.DataFrame(rows)


def _paired_rows(a: pd.DataFrame, b: pd.DataFrame, metrics: list[str]) -> list[tuple[str, float, float]]:
    """Per metric: the mean of ``a - b`` paired by (seed, episode), averaged per seed, and its CI."""
    per_seed = (a - b).dropna(how="all").groupby(level="seed").mean()
    return [(metric, *mean_ci(per_seed[metric].dropna().to_numpy())) for metric in metrics]


def paired_differences(results: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per variant, policy and metric: mean paired difference to ``reference`` with its 95% CI."""
    metrics = metrics_present(results)
    index = [*KEYS, "seed", "episode"]
    table = results.set_index(index)[metrics].sort_index()
    rows = []
    for variant in table.index.get_level_values("variant").unique():
        if reference not in table.loc[variant].index.get_level_values("policy"):
            continue
        base = table.loc[(variant, reference)]
        for policy in table.loc[variant].index.get_level_values("policy").unique():
            if policy == reference:
                continue
            for metric, mean, half in _paired_rows(table.loc[(variant, policy)], base, metrics):
                rows.append(
                    {
                        "variant": variant,
                        "policy": policy,
                        "metric": metric,
                        "diff": mean,
                        "ci95": half,
                        "significant": bool(np.isfinite(half) and abs(mean) > half),
                    }
                )
    return pd.DataFrame(rows)


def comparison_lines(results: pd.DataFrame, config: ExperimentConfig) -> list[str]:
    """The config's further paired comparisons as a table (``policy - against``, 95% CIs)."""
    if not config.comparisons:
        return []
    metrics = metrics_present(results)
    table = results.set_index([*KEYS, "seed", "episode"])[metrics].sort_index()
    present = set(zip(results["variant"], results["policy"], strict=True))
    lines = [
        "",
        "## Paired comparisons",
        "",
        "Each row: `policy` minus `against`, paired episode by episode (the same shoppers and draws), "
        "mean over seeds ± 95% CI half-width (* : the CI excludes 0).",
        "",
        "| comparison | policy | against | " + " | ".join(f"Δ {HEADLINE[m]}" for m in metrics) + " |",
        "|---|---|---|" + "---:|" * len(metrics),
    ]
    for comparison in config.comparisons:
        variant, against_variant = config.comparison_variants(comparison)
        cells = ((variant, comparison.policy), (against_variant, comparison.against))
        if not all(cell in present for cell in cells):
            continue
        paired = _paired_rows(table.loc[cells[0]], table.loc[cells[1]], metrics)
        lines.append(
            f"| {comparison.name} | {'/'.join(cells[0])} | {'/'.join(cells[1])} | "
            + " | ".join(
                _fmt(mean, half) + (" *" if np.isfinite(half) and abs(mean) > half else "")
                for _, mean, half in paired
            )
            + " |"
        )
    return lines


def normalized_scores(
    results: pd.DataFrame, reference: str, oracle: str, metric: str = "return"
) -> pd.DataFrame:
    """Per variant and policy: ``(policy - reference) / (oracle - reference)`` on ``metric``, with its CI.

    Differences are paired episode by episode (common random numbers) and averaged per seed;
    the score is the ratio of their means over seeds (a ratio of per-seed ratios would explode
    on a seed where the oracle gains little), and its 95% CI comes from the delta method with
    the t quantile over seeds. 0 is the reference (``none``), 1 the privileged oracle.
    """
    table = results.set_index([*KEYS, "seed", "episode"])[metric].sort_index()
    rows = []
    for variant in table.index.get_level_values("variant").unique():
        present = table.loc[variant].index.get_level_values("policy")
        if reference not in present or oracle not in present:
            continue
        base = table.loc[(variant, reference)]
        span = (table.loc[(variant, oracle)] - base).groupby(level="seed").mean()
        span_half = (
            float(stats.t.ppf(0.975, span.size - 1) * span.std(ddof=1) / np.sqrt(span.size))
            if span.size > 1
            else float("nan")
        )
        for policy in present.unique():
            gain = (table.loc[(variant, policy)] - base).groupby(level="seed").mean()
            pair = pd.concat([gain, span], axis=1, keys=["gain", "span"]).dropna()
            rows.append(
                {
                    "variant": variant,
                    "policy": policy,
                    **_ratio_ci(pair["gain"], pair["span"]),
                    "span": float(pair["span"].mean()) if len(pair) else float("nan"),
                    "span_ci95": span_half,
                }
            )
    return pd.DataFrame(rows)


def _ratio_ci(gain: pd.Series, span: pd.Series, level: float = 0.95) -> dict[str, float]:
    """``mean(gain) / mean(span)`` and the half-width of its delta-method t interval."""
    n, mean_span = len(gain), float(span.mean()) if len(span) else float("nan")
    if n == 0 or mean_span == 0.0:
        return {"score": float("nan"), "ci95": float("nan")}
    ratio = float(gain.mean()) / mean_span
    if n < 2:
        return {"score": ratio, "ci95": float("nan")}
    residual = (gain - ratio * span).to_numpy(dtype=np.float64)  # linearized ratio estimator
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * residual.std(ddof=1) / np.sqrt(n) / abs(mean_span))
    return {"score": ratio, "ci95": half}


def _fmt(mean: float, half: float) -> str:
    scale = max(abs(mean), abs(half) if np.isfinite(half) else 0.0)
    digits = 3 if scale < 10 else 1 if scale < 1000 else 0
    if not np.isfinite(half):
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} ± {half:,.{digits}f}"


def source_of(meta: dict[str, Any]) -> str:
    """Which shopgym wrote a run: its version, and the commit when it ran from a git checkout.

    A wheel install has no git tree: the version alone names the source then.
    """
    version = meta.get("shopgym_version") or meta.get("versions", {}).get("shopgym", "unknown")
    sha = meta.get("git_sha")
    return f"shopgym {version}" + (f", git {sha}" if sha else "")


def normalizing_oracle(config: ExperimentConfig, results: pd.DataFrame) -> list[str]:
    """The oracle that scores 1: of the run's privileged policies, the one with the highest mean return.

    A run may hold several (the one-step ``oracle`` and a planning one); the best bound is the
    yardstick. Empty when the run has none.
    """
    from policies.registry import ORACLE_KINDS

    names = [p.name for p in config.policies if p.kind in ORACLE_KINDS]
    present = [n for n in names if not results.empty and (results["policy"] == n).any()]
    if len(present) < 2:
        return names[:1]
    means = results[results["policy"].isin(present)].groupby("policy")["return"].mean()
    return [str(means.idxmax())]


def markdown_summary(
    config: ExperimentConfig, results: pd.DataFrame, meta: dict[str, Any] | None = None
) -> str:
    """The run's ``summary.md``: one table of means and CIs, one of paired differences, per variant."""
    summary = summary_table(results)
    diffs = paired_differences(results, config.reference_policy)
    oracles = normalizing_oracle(config, results)
    scores = (
        pd.concat(
            [
                normalized_scores(results, config.reference_policy, oracles[0], metric).assign(metric=metric)
                for metric in SCORED
                if metric in results.columns
            ],
            ignore_index=True,
        )
        if oracles
        else pd.DataFrame()
    )
    metrics = metrics_present(results)
    seeds = results["seed"].nunique()
    episodes = results.groupby([*KEYS, "seed"]).size().max()
    lines = [
        f"# {config.name}",
        "",
        config.description.strip(),
        "",
        f"Environment `{config.env.id}`, scenario `{config.env.scenario}`; {seeds} seeds x {episodes} "
        "evaluation episodes per policy, the same episode seeds for every policy (common random numbers). "
        "Cells: mean over seeds ± 95% CI half-width (t over per-seed means).",
    ]
    if meta:
        lines += ["", f"Scenario hash {meta.get('scenario_hash')}; {source_of(meta)}."]
    for variant in summary["variant"].unique():
        part = summary[summary["variant"] == variant]
        if len(config.variants) > 1:
            lines += ["", f"## Variant `{variant}`"]
        lines += [
            "",
            "| policy | " + " | ".join(HEADLINE[m] for m in metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for policy in part["policy"].unique():
            cells = part[part["policy"] == policy].set_index("metric")
            lines.append(
                f"| {policy} | "
                + " | ".join(_fmt(cells.at[m, "mean"], cells.at[m, "ci95"]) for m in metrics)
                + " |"
            )
        dpart = diffs[diffs["variant"] == variant] if not diffs.empty else diffs
        if not dpart.empty:
            lines += [
                "",
                f"Paired differences against `{config.reference_policy}` (* : the 95% CI excludes 0):",
                "",
                "| policy | " + " | ".join(f"Δ {HEADLINE[m]}" for m in metrics) + " |",
                "|---|" + "---:|" * len(metrics),
            ]
            for policy in dpart["policy"].unique():
                cells = dpart[dpart["policy"] == policy].set_index("metric")
                lines.append(
                    f"| {policy} | "
                    + " | ".join(
                        _fmt(cells.at[m, "diff"], cells.at[m, "ci95"])
                        + (" *" if cells.at[m, "significant"] else "")
                        for m in metrics
                    )
                    + " |"
                )
        lines += ["", *_score_lines(scores, variant, config.reference_policy, oracles, config.env.id)]
    lines += comparison_lines(results, config)
    if oracles:
        lines += aggregate_section(results, config.reference_policy, oracles[0])
    return "\n".join(lines) + "\n"


def aggregate_section(results: pd.DataFrame, reference: str, oracle: str) -> list[str]:
    """IQM, mean, optimality gap and probability of improvement over seeds and variants (return)."""
    from experiments.aggregate import aggregate_lines, run_scores

    matrices, left_out = run_scores(results, reference, oracle)
    if not matrices:
        return []
    return aggregate_lines(matrices, left_out, reference, oracle, "the return, across seeds and variants")


def _score_lines(
    scores: pd.DataFrame, variant: str, reference: str, oracles: list[str], env_id: str
) -> list[str]:
    """One variant's normalized scores on the return and on what the shop earns, or why there are none."""
    if not oracles:
        return [
            "No oracle policy (`kind: oracle`, `oracle_plan` or `oracle_rollout`) in this run: "
            "add one for normalized scores."
        ]
    part = scores[scores["variant"] == variant] if not scores.empty else scores
    if part.empty:
        return [f"No normalized scores: `{reference}` or `{oracles[0]}` is missing from this variant."]
    spans = part.groupby("metric", sort=False)["span"].first()
    halves = part.groupby("metric", sort=False)["span_ci95"].first()
    metrics = [m for m in spans.index if abs(float(spans[m])) > 0]
    # A ratio over an oracle gain that noise could make zero (or flip) is no score at all.
    noisy = [m for m in metrics if abs(float(spans[m])) <= float(halves[m])]
    if not metrics:  # the scale is zero on every metric: every score would be 0/0
        return [
            f"No normalized scores: `{oracles[0]}` earns exactly what `{reference}` earns here "
            f"(mean difference in return {float(spans.iloc[0]):g}), so (policy - {reference}) / "
            f"({oracles[0]} - {reference}) has no scale; in a shop where no incentive can do better than "
            "none, compare the policies' returns directly."
        ]
    metrics = [m for m in metrics if m not in noisy]
    label = {m: SCORED[m] for m in metrics}
    if "return" in label and env_id in ATTRIBUTED_RETURN:
        label["return"] = "return (attributed)"
    lines = [
        f"Normalized scores, (policy - {reference}) / ({oracles[0]} - {reference}) on each metric: 0 is "
        f"`{reference}`, 1 the privileged oracle `{oracles[0]}` (it reads the simulator's hidden state; "
        "the best-returning oracle when a run has several). Rank on margin "
        "and LTV: what the shop truly earns."
        + (
            f" The return is {ATTRIBUTED_RETURN[env_id]}."
            if "return" in label and env_id in ATTRIBUTED_RETURN
            else ""
        ),
        "",
        "| policy | " + " | ".join(label[m] for m in metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    table = part.set_index(["policy", "metric"])
    for policy in part["policy"].unique():
        cells = [
            _fmt(float(table.at[(policy, m), "score"]), float(table.at[(policy, m), "ci95"]))
            if (policy, m) in table.index
            else "n/a"
            for m in metrics
        ]
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    skipped = [SCORED[m] for m in spans.index if m not in metrics and m not in noisy]
    if skipped:
        lines += [
            "",
            f"No score on {', '.join(skipped)}: `{oracles[0]}` earns exactly what `{reference}` earns.",
        ]
    for m in noisy:
        lines += [
            "",
            f"No score on {SCORED[m]}: `{oracles[0]}`'s gain over `{reference}` there, "
            f"{_fmt(float(spans[m]), float(halves[m]))}, is within noise, so a ratio over it has no "
            "scale; read the paired differences above.",
        ]
    return lines


# ---- plots -----------------------------------------------------------------------------------------
def plot_learning_curves(curves: pd.DataFrame, path: Path) -> bool:
    """Training return against training steps (or episodes) per policy: mean over seeds ± 1 sd."""
    if curves.empty:
        return False
    units = curves["x_unit"].unique()
    fig, axes = plt.subplots(1, len(units), figsize=(6 * len(units), 4), squeeze=False)
    for ax, unit in zip(axes[0], units, strict=True):
        part = curves[curves["x_unit"] == unit]
        edges = np.linspace(0, part["x"].max(), 21)
        for (variant, policy), group in part.groupby(KEYS, sort=False):
            bins = np.digitize(group["x"], edges[1:-1])
            per_bin = group.assign(bin=bins).groupby(["bin", "seed"])["return"].mean().groupby("bin")
            mean, sd = per_bin.mean(), per_bin.std().fillna(0.0)
            centers = (edges[:-1] + edges[1:])[mean.index] / 2
            label = policy if variant == "base" else f"{policy} ({variant})"
            ax.plot(centers, mean.to_numpy(), label=label)
            ax.fill_between(centers, (mean - sd).to_numpy(), (mean + sd).to_numpy(), alpha=0.2)
        ax.set_xlabel(f"training {unit}")
        ax.set_ylabel("episode return")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Learning curves (mean over seeds ± 1 sd)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_frontier(summary: pd.DataFrame, path: Path) -> bool:
    """Mean LTV against margin per policy, with 95% CIs on both axes: the trade-off frontier."""
    if not {"ltv_mean", "margin"} <= set(summary["metric"]):
        return False
    fig, ax = plt.subplots(figsize=(7, 5))
    points: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for row in summary.to_dict(orient="records"):
        points.setdefault((row["variant"], row["policy"]), {})[row["metric"]] = (row["mean"], row["ci95"])
    for (variant, policy), values in points.items():
        label = policy if variant == "base" else f"{policy} ({variant})"
        (x, dx), (y, dy) = values["ltv_mean"], values["margin"]
        ax.errorbar(x, y, xerr=np.nan_to_num(dx), yerr=np.nan_to_num(dy), fmt="o", capsize=3, label=label)
        ax.annotate(label, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("mean LTV per shopper ($)")
    ax.set_ylabel("shop margin over the episode ($)")
    ax.set_title("LTV vs margin (mean over seeds, 95% CI)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_fulfillment(daily: pd.DataFrame, path: Path) -> bool:
    """Warehouse utilization and backlog per day per policy (mean over seeds and episodes)."""
    if daily.empty or "units_used" not in daily:
        return False
    frame = daily.assign(utilization=daily["units_used"] / daily["capacity"].replace(0, np.nan))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for (variant, policy), group in frame.groupby(KEYS, sort=False):
        per_day = group.groupby("day")[["utilization", "backlog_end", "late_deliveries"]].mean()
        label = policy if variant == "base" else f"{policy} ({variant})"
        top.plot(per_day.index, per_day["utilization"], label=label)
        bottom.plot(per_day.index, per_day["backlog_end"], label=label)
    top.axhline(1.0, color="k", lw=0.8, ls="--")
    top.set_ylabel("pick capacity used / regular")
    bottom.set_ylabel("orders waiting at day end")
    bottom.set_xlabel("day")
    top.legend(fontsize=8)
    top.set_title("Fulfillment load over time (mean over seeds and episodes)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_incentive_mix(mix: pd.DataFrame, path: Path) -> bool:
    """Share of each incentive within each segment, one panel per policy."""
    if mix.empty:
        return False
    arms: list[tuple[str, str]] = list(mix[KEYS].drop_duplicates().itertuples(index=False, name=None))
    incentives = sorted(mix["incentive"].unique(), key=lambda n: (n != "none", n))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(incentives), 2)))
    cols = min(len(arms), 3)
    rows = int(np.ceil(len(arms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (variant, policy) in zip(axes.flat, arms, strict=False):
        part = mix[(mix["variant"] == variant) & (mix["policy"] == policy)]
        table = part.pivot_table(
            index="segment", columns="incentive", values="count", aggfunc="sum", fill_value=0
        )
        shares = table.div(table.sum(axis=1), axis=0)
        bottom = np.zeros(len(shares))
        for colour, incentive in zip(colours, incentives, strict=False):
            if incentive in shares:
                ax.bar(shares.index, shares[incentive], bottom=bottom, color=colour, label=incentive)
                bottom += shares[incentive].to_numpy()
        ax.set_title(policy if variant == "base" else f"{policy} ({variant})", fontsize=10)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(arms) :]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours[: len(incentives)]]
    fig.legend(handles, incentives, loc="lower center", ncol=min(len(incentives), 7), fontsize=7)
    fig.suptitle("Incentive mix per segment (share of decisions)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(root: Path, config: ExperimentConfig, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write ``summary.md`` and the plots of a gathered run; return the files written."""
    import json

    results = tables["episodes"]
    if results.empty:
        return []
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    written = [root / "summary.md"]
    atomic_write_text(markdown_summary(config, results, meta), written[0])
    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    summary = summary_table(results)
    oracles = normalizing_oracle(config, results)

    def profiles(frame: pd.DataFrame, path: Path) -> bool:
        from experiments.aggregate import plot_performance_profiles, run_scores

        if not oracles:
            return False
        matrices, _ = run_scores(frame, config.reference_policy, oracles[0])
        ranked = {p: m for p, m in matrices.items() if p not in (config.reference_policy, oracles[0])}
        return plot_performance_profiles(ranked, path, f"{config.name}: performance profiles on the return")

    for name, draw, data in (
        ("performance_profiles", profiles, results),
        ("learning_curves", plot_learning_curves, tables["curve"]),
        ("frontier", plot_frontier, summary),
        ("pareto_front", plot_pareto_front, summary),
        ("fulfillment_load", plot_fulfillment, tables["daily"]),
        ("incentive_mix", plot_incentive_mix, tables["mix"]),
    ):
        target = plots / f"{name}.png"
        import os
        import tempfile

        fd, name_tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp.png", dir=plots)  # unique per writer
        os.close(fd)
        tmp = Path(name_tmp)
        try:
            if draw(data, tmp):
                tmp.replace(target)
                written.append(target)
        finally:
            tmp.unlink(missing_ok=True)
    return written
