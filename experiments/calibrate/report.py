"""The calibration report: figures, JSON data and markdown, written atomically."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.calibrate.common import (
    DAYS_PER_WEEK,
)
from experiments.calibrate.holdout import HoldoutCheck
from experiments.calibrate.scenario import Calibration
from experiments.calibrate.twins import TwinsCheck
from experiments.clv_fit import (
    PUBLISHED_CDNOW,
    ModelFit,
    bgnbd_conditional_expected,
    cohort_weekly_expected,
    pareto_nbd_conditional_expected,
    pareto_nbd_expected_repeats,
)
from sim.io import atomic_write_bytes, atomic_write_json, atomic_write_text


# ---- the report ------------------------------------------------------------------------------------
def _conditional_table(calibration: Calibration, max_bin: int = 7) -> pd.DataFrame:
    """Mean held-out repeats by calibration frequency: actual, Pareto/NBD and BG/NBD (FHL Figure 5)."""
    cohort = calibration.cohort
    horizon = cohort.holdout_weeks
    x = np.minimum(cohort.summary.frequency, max_bin).astype(np.int64)
    frame = pd.DataFrame(
        {
            "frequency": x,
            "actual": cohort.holdout_repeats,
            "pareto_nbd": pareto_nbd_conditional_expected(calibration.pareto_nbd, cohort.summary, horizon),
            "bgnbd": bgnbd_conditional_expected(calibration.bgnbd, cohort.summary, horizon),
        }
    )
    table = frame.groupby("frequency").agg(
        customers=("actual", "size"),
        actual=("actual", "mean"),
        pareto_nbd=("pareto_nbd", "mean"),
        bgnbd=("bgnbd", "mean"),
    )
    table.index = [str(i) if i < max_bin else f"{max_bin}+" for i in table.index]
    return table


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def render_plots(
    calibration: Calibration, check: HoldoutCheck | None, twins: TwinsCheck | None = None
) -> dict[str, bytes]:
    """PNG bytes of the tracking, repeat-count and conditional-expectation figures (and the twins')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohort = calibration.cohort
    weeks = np.arange(1, cohort.total_weeks + 1)
    births = cohort.first_purchase_day / DAYS_PER_WEEK
    pnbd = cohort_weekly_expected(
        lambda t: pareto_nbd_expected_repeats(calibration.pareto_nbd, t), births, cohort.total_weeks
    )
    actual = cohort.weekly_repeats
    plots: dict[str, bytes] = {}
    for name, transform, label in (
        ("tracking_weekly.png", lambda v: v, "repeat transactions per week"),
        ("tracking_cumulative.png", np.cumsum, "cumulative repeat transactions"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        ax.plot(weeks, transform(actual), color="black", lw=1.6, label="actual")
        if check is not None:
            sims = np.array([transform(row) for row in check.simulated_weekly])
            ax.fill_between(weeks, sims.min(axis=0), sims.max(axis=0), color="tab:blue", alpha=0.2, lw=0)
            ax.plot(
                weeks,
                sims.mean(axis=0),
                color="tab:blue",
                ls="--",
                lw=1.4,
                label=f"simulated calibrated shop (mean, range of {len(check.seeds)} seeds)",
            )
        ax.plot(weeks, transform(pnbd), color="tab:red", ls=":", lw=1.6, label="Pareto/NBD expectation")
        ax.axvline(cohort.calibration_weeks, color="grey", ls="-", lw=0.8)
        low, high = ax.get_ylim()
        ax.text(cohort.calibration_weeks, low + 0.03 * (high - low), " end of calibration", fontsize=8)
        ax.set_xlabel("week")
        ax.set_ylabel(label)
        ax.set_title(f"{label.capitalize()}: calibration and holdout ({cohort.customers} customers)")
        ax.legend(loc="upper left" if transform is np.cumsum else "upper right", fontsize=8)
        plots[name] = _png(fig)

    max_bin = 7
    x = np.minimum(cohort.summary.frequency, max_bin).astype(np.int64)
    counts = np.bincount(x, minlength=max_bin + 1)
    labels = [str(i) for i in range(max_bin)] + [f"{max_bin}+"]
    fig, ax = plt.subplots(figsize=(7, 4))
    positions = np.arange(max_bin + 1)
    width = 0.4 if check is not None else 0.8
    ax.bar(positions - (width / 2 if check is not None else 0), counts, width, color="black", label="actual")
    if check is not None:
        ax.bar(
            positions + width / 2,
            check.simulated_calibration_counts.mean(axis=0),
            width,
            color="tab:blue",
            label="simulated (mean over seeds)",
        )
    ax.set_xticks(positions, labels)
    ax.set_xlabel("repeat transactions in the calibration period")
    ax.set_ylabel("customers")
    ax.set_title("Distribution of repeat transactions (calibration period)")
    ax.legend(fontsize=8)
    plots["repeat_count_distribution.png"] = _png(fig)

    if cohort.holdout_weeks > 0:
        table = _conditional_table(calibration, max_bin)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(table.index, table["actual"], color="black", marker="o", label="actual")
        ax.plot(table.index, table["pareto_nbd"], color="tab:red", ls=":", marker="s", label="Pareto/NBD")
        ax.plot(table.index, table["bgnbd"], color="tab:green", ls="--", marker="^", label="BG/NBD")
        ax.set_xlabel("repeat transactions in the calibration period")
        ax.set_ylabel(f"mean repeat transactions in the {cohort.holdout_weeks:.0f}-week holdout")
        ax.set_title("Conditional expectations by calibration frequency")
        ax.legend(fontsize=8)
        plots["conditional_expectations.png"] = _png(fig)
    if twins is not None:
        table = twins.by_frequency(max_bin)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(table.index, table["actual"], color="black", marker="o", label="actual")
        ax.plot(
            table.index,
            table["simulated"],
            color="tab:blue",
            ls="--",
            marker="D",
            label=f"twins simulated (mean of {len(twins.seeds)} seeds x {twins.draws} draws)",
        )
        ax.plot(table.index, table["pareto_nbd"], color="tab:red", ls=":", marker="s", label="Pareto/NBD")
        ax.set_xlabel("repeat transactions in the calibration period")
        ax.set_ylabel("mean repeat transactions in the holdout")
        ax.set_title("Twins: per-customer holdout forecasts by calibration frequency")
        ax.legend(fontsize=8)
        plots["twins_by_frequency.png"] = _png(fig)
    return plots


def report_data(
    calibration: Calibration,
    check: HoldoutCheck | None,
    shortfall: float,
    peer: dict[str, Any] | None = None,
    twins: TwinsCheck | None = None,
) -> dict[str, Any]:
    """Everything the report says, as JSON-ready data."""
    cohort = calibration.cohort

    def fit(m: ModelFit) -> dict[str, Any]:
        return {
            "params": m.as_dict(),
            "standard_errors": m.se_dict(),
            "log_likelihood": m.log_likelihood,
            "customers": m.customers,
            "converged": m.converged,
        }

    data: dict[str, Any] = {
        "log_hash": calibration.log.source_hash,
        "log_warnings": list(calibration.log.warnings),
        "start": str(cohort.start.date()),
        "calibration_end": str(cohort.calibration_end.date()),
        "log_end": str(cohort.log_end.date()),
        "calibration_weeks": cohort.calibration_weeks,
        "holdout_weeks": cohort.holdout_weeks,
        "customers": cohort.customers,
        "customers_first_seen_after_calibration": cohort.late_first_purchases,
        "calibration_repeat_transactions": float(cohort.summary.frequency.sum()),
        "attrition_written": calibration.attrition,
        "scenario_hash": calibration.scenario.config_hash(),
        "fits": {
            "pareto_nbd": fit(calibration.pareto_nbd),
            "bgnbd": fit(calibration.bgnbd),
            "gamma_gamma": fit(calibration.gamma_gamma),
        },
        "published_cdnow": PUBLISHED_CDNOW,
        "acquisition_days": cohort.acquisition_days,
        "acquisitions_per_week": cohort.acquisitions_per_week.tolist(),
        "weekday_share_mon_to_sun": cohort.weekday_share.tolist(),
        "hour_weights": list(cohort.hour_weights) if cohort.hour_weights is not None else None,
        "funnel_shortfall": shortfall,
    }
    if cohort.holdout_weeks > 0:
        table = _conditional_table(calibration)
        data["conditional_expectations"] = table.reset_index(names="frequency").to_dict(orient="records")
    if check is not None and cohort.holdout_weeks > 0:
        data["holdout"] = {
            "seeds": list(check.seeds),
            "actual_repeat_transactions": check.actual_holdout_total,
            "simulated_mean": check.simulated_holdout_total,
            "simulated_sd_across_seeds": check.simulated_holdout_sd,
            "simulated_relative_error": check.simulated_error,
            "pareto_nbd_conditional_forecast": check.pareto_nbd_holdout_total,
            "pareto_nbd_relative_error": check.pareto_nbd_error,
            "bgnbd_conditional_forecast": check.bgnbd_holdout_total,
            "simulated_weekly_mape": check.simulated_weekly_mape,
            "pareto_nbd_weekly_mape": check.pareto_nbd_weekly_mape,
            **check.extra,
        }
    if twins is not None:
        data["twins"] = {
            **twins.figures(),
            "by_frequency": twins.by_frequency().reset_index(names="x").to_dict(orient="records"),
        }
    if peer is not None:
        data["peer"] = peer
    return data


def report_markdown(data: dict[str, Any], plots: Sequence[str]) -> str:
    """The human-readable calibration report."""
    lines = [
        "# Calibration report",
        "",
        f"Log sha256 `{data['log_hash']}`; calibration {data['start']} to {data['calibration_end']} "
        f"({data['calibration_weeks']:.2f} weeks), holdout to {data['log_end']} "
        f"({data['holdout_weeks']:.2f} weeks); "
        f"{data['customers']} customers, {data['calibration_repeat_transactions']:.0f} repeat transactions "
        "in calibration. Scenario written with "
        f"`attrition: {data['attrition_written']}` (scenario hash `{data['scenario_hash']}`).",
        "",
    ]
    for note in data["log_warnings"]:
        lines.append(f"- log: {note}")
    if data["customers_first_seen_after_calibration"]:
        lines.append(
            f"- {data['customers_first_seen_after_calibration']} customers first bought after "
            "calibration end; "
            "they are not part of the cohort."
        )
    if data["funnel_shortfall"] > 0.01:
        lines.append(
            f"- the base scenario's session funnel (one cart a day at most) cannot deliver "
            f"{100 * data['funnel_shortfall']:.1f}% of the fitted purchase rate: "
            "raise checkout conversion or "
            "lower the shipping fee in the base scenario"
        )
    lines += ["", "## Fitted parameters (maximum likelihood; SE from the inverse Hessian, delta method)", ""]
    lines += ["| model | parameter | estimate | SE | published CDNOW |", "|---|---|---:|---:|---:|"]
    for model, fit in data["fits"].items():
        published = data["published_cdnow"].get(model, {})
        for name, value in fit["params"].items():
            ref = published.get(name)
            lines.append(
                f"| {model} | {name} | {value:.4f} | {fit['standard_errors'][name]:.4f} | "
                f"{'' if ref is None else ref} |"
            )
        ref_ll = published.get("log_likelihood")
        lines.append(
            f"| {model} | log-likelihood | {fit['log_likelihood']:.2f} | | "
            f"{'' if ref_ll is None else ref_ll} |"
        )
    lines += [
        "",
        "(The published column is for the CDNOW cohort only; ignore it for other logs.)",
        "",
        "## Acquisition and weekly pattern",
        "",
        f"First purchases span {data['acquisition_days']:g} days (written as uniform acquisition). "
        f"New customers per week: {', '.join(f'{v:.0f}' for v in data['acquisitions_per_week'] if v)}.",
        "",
        "Share of transactions by weekday (Mon..Sun): "
        + ", ".join(f"{v:.3f}" for v in data["weekday_share_mon_to_sun"])
        + ". The scenario has no weekday field; this is reported only.",
        "",
    ]
    if data["hour_weights"] is not None:
        lines += [
            "Hour-of-day weights were read from the timestamps and written to `sessions.hour_weights`.",
            "",
        ]
    if "holdout" in data:
        h = data["holdout"]
        lines += [
            "## Holdout: simulated calibrated shop against the log",
            "",
            "| forecast of held-out repeat transactions | total | relative error |",
            "|---|---:|---:|",
            f"| actual | {h['actual_repeat_transactions']:.0f} | |",
            f"| simulated, mean of seeds {h['seeds']} (sd {h['simulated_sd_across_seeds']:.1f}) | "
            f"{h['simulated_mean']:.1f} | {100 * h['simulated_relative_error']:+.1f}% |",
            f"| Pareto/NBD conditional expectation (per-customer histories) | "
            f"{h['pareto_nbd_conditional_forecast']:.1f} | {100 * h['pareto_nbd_relative_error']:+.1f}% |",
            f"| Pareto/NBD cohort tracking expectation | {h['pareto_nbd_tracking_holdout_total']:.1f} | "
            f"{100 * (h['pareto_nbd_tracking_holdout_total'] / h['actual_repeat_transactions'] - 1):+.1f}"
            "% |",
            f"| BG/NBD conditional expectation | {h['bgnbd_conditional_forecast']:.1f} | "
            f"{100 * (h['bgnbd_conditional_forecast'] / h['actual_repeat_transactions'] - 1):+.1f}% |",
            "",
            f"Weekly repeat transactions in the holdout weeks, mean absolute percentage error: simulated "
            f"{100 * h['simulated_weekly_mape']:.1f}%, Pareto/NBD {100 * h['pareto_nbd_weekly_mape']:.1f}% "
            f"(all weeks: simulated {100 * h['simulated_weekly_mape_all_weeks']:.1f}%, Pareto/NBD "
            f"{100 * h['pareto_nbd_weekly_mape_all_weeks']:.1f}%).",
            "",
        ]
    if "conditional_expectations" in data:
        lines += [
            "## Conditional expectations by calibration frequency",
            "",
            "| x | customers | actual | Pareto/NBD | BG/NBD |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in data["conditional_expectations"]:
            lines.append(
                f"| {row['frequency']} | {row['customers']} | {row['actual']:.2f} | "
                f"{row['pareto_nbd']:.2f} | "
                f"{row['bgnbd']:.2f} |"
            )
        lines.append("")
    if "twins" in data:
        t = data["twins"]
        lines += [
            "## Twins: each customer's holdout transactions",
            "",
            f"Every customer simulated from her own posterior over the holdout, {t['draws']:.0f} times "
            f"({t['seeds']:.0f} seeds); per customer, the mean of her draws against what she did (Fader, "
            "Hardie & Lee 2005). With few draws, each mean's Monte-Carlo noise adds to its error and "
            "lowers its correlation (raise --twin-draws).",
            "",
            "| forecast | mean absolute error | Pearson r | cohort total | relative error |",
            "|---|---:|---:|---:|---:|",
            f"| twins simulated (sd of one draw's total {t['simulated_total_sd_across_draws']:.1f}) | "
            f"{t['simulated_mae']:.4f} | {t['simulated_pearson_r']:.4f} | {t['simulated_total']:.1f} | "
            f"{100 * (t['simulated_total'] / t['actual_total'] - 1):+.1f}% |",
            f"| Pareto/NBD conditional expectation | {t['pareto_nbd_mae']:.4f} | "
            f"{t['pareto_nbd_pearson_r']:.4f} | "
            f"{t['pareto_nbd_conditional_total']:.1f} | "
            f"{100 * (t['pareto_nbd_conditional_total'] / t['actual_total'] - 1):+.1f}% |",
            f"| actual | | | {t['actual_total']:.0f} | |",
            "",
            "Mean holdout transactions by calibration repeats; errors are forecast minus actual:",
            "",
            "| x | customers | actual | twins simulated | error | Pareto/NBD | error |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in t["by_frequency"]:
            lines.append(
                f"| {row['x']} | {row['customers']} | {row['actual']:.3f} | {row['simulated']:.3f} | "
                f"{row['simulated_error']:+.3f} | {row['pareto_nbd']:.3f} | {row['pareto_nbd_error']:+.3f} |"
            )
        lines.append("")
    if "peer" in data:
        lines += ["## Peer library", "", "```", json.dumps(data["peer"], indent=2), "```", ""]
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(lines)


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(
    out: Path, report_dir: Path, calibration: Calibration, data: dict[str, Any], plots: dict[str, bytes]
) -> list[Path]:
    """Write the scenario and the report, each file atomically; returns the paths written."""
    written = []
    for name, content in plots.items():
        atomic_write_bytes(content, report_dir / name)
        written.append(report_dir / name)
    atomic_write_json(_finite_or_none(data), report_dir / "calibration.json")
    atomic_write_text(report_markdown(data, list(plots)), report_dir / "report.md")
    written += [report_dir / "calibration.json", report_dir / "report.md"]
    atomic_write_text(calibration.scenario_text, out)  # last: the scenario exists only with its report
    written.append(out)
    return written
