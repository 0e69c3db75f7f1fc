"""Comparing runs: ``shopgym compare`` (two run directories) and ``shopgym regress`` (a CI gate).

``regress`` re-runs a pinned small config and compares each policy's mean return and key
metrics with stored baseline values. The simulator, the baselines and the bandits are
bit-reproducible for a given seed, so they must match exactly (up to float formatting:
relative 1e-9). SB3 training is reproducible on one machine and torch build, but not across
CPU kinds, thread counts or torch versions (floating-point reductions differ), so RL policies
get a documented tolerance (``RL_TOLERANCE``, relative to the baseline's magnitude), as do
plugin kinds that declare ``reproducible = False`` (or train by ``timesteps``) in their factory.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from experiments.config import ExperimentConfig
from experiments.report import HEADLINE, metrics_present
from sim.io import atomic_write_json

#: Relative tolerance of exact comparisons (JSON float round trips are exact; this guards formatting).
EXACT_TOLERANCE = 1e-9
#: Relative tolerance for SB3-trained policies (cross-machine floating-point differences).
RL_TOLERANCE = 0.10
#: Metrics the gate compares (those the environment reports).
GATED = ("return", "ltv_mean", "margin", "incentive_cost", "orders", "late_delivery_share")


def policy_means(results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean of each gated metric per ``variant/policy`` over seeds and episodes."""
    metrics = [m for m in GATED if m in results.columns]
    means = results.groupby(["variant", "policy"], sort=False)[metrics].mean().reset_index()
    return {
        f"{row['variant']}/{row['policy']}": {m: float(row[m]) for m in metrics}
        for row in means.to_dict(orient="records")
    }


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per ``variant/policy`` and metric: the two runs' means, their difference and relative change."""
    metrics = [m for m in metrics_present(a) if m in b.columns]
    left, right = (
        {
            (r["variant"], r["policy"]): r
            for r in run.groupby(["variant", "policy"], sort=False)[metrics]
            .mean()
            .reset_index()
            .to_dict(orient="records")
        }
        for run in (a, b)
    )
    rows = []
    nan: dict[str, float] = {}
    for key in [*left, *(k for k in right if k not in left)]:
        for metric in metrics:
            x = float(left.get(key, nan).get(metric, float("nan")))
            y = float(right.get(key, nan).get(metric, float("nan")))
            rows.append(
                {
                    "variant": key[0],
                    "policy": key[1],
                    "metric": metric,
                    "a": x,
                    "b": y,
                    "diff": y - x,
                    "rel": (y - x) / abs(x) if x else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def compare_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich table of :func:`compare_runs` output."""
    table = Table(title=title)
    for column in ("policy", "metric", "A", "B", "B - A", "change"):
        table.add_column(column, justify="left" if column in ("policy", "metric") else "right")
    for row in frame.to_dict(orient="records"):
        name = row["policy"] if row["variant"] == "base" else f"{row['policy']} ({row['variant']})"
        change = f"{row['rel']:+.1%}" if np.isfinite(row["rel"]) else "-"
        table.add_row(
            str(name),
            HEADLINE.get(str(row["metric"]), str(row["metric"])),
            f"{row['a']:,.4g}",
            f"{row['b']:,.4g}",
            f"{row['diff']:+,.4g}",
            change,
        )
    return table


def regress(
    config: ExperimentConfig,
    baseline_path: Path,
    update: bool = False,
    out: Path | None = None,
    quiet: bool = True,
    verbose: bool = False,
) -> tuple[list[str], Table]:
    """Run ``config`` afresh and compare with the baseline: (one line per moved value, a table)."""
    from experiments.runner import load_results, run_experiment
    from policies.registry import reproducible_kind

    with tempfile.TemporaryDirectory(prefix="shopgym-regress-") as tmp:
        root = run_experiment(config, out or Path(tmp) / config.name, quiet=quiet)
        results = load_results(root)
    current = policy_means(results)
    kinds = {p.name: p.kind for p in config.policies}
    if update or not baseline_path.is_file():
        payload: dict[str, Any] = {
            "config": config.name,
            "tolerance": {"exact": EXACT_TOLERANCE, "rl": RL_TOLERANCE},
            "policies": current,
        }
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(payload, baseline_path)
        table = Table(title=f"baseline written to {baseline_path}")
        table.add_column("policy")
        table.add_column("mean return", justify="right")
        for name, values in current.items():
            table.add_row(name, f"{values.get('return', float('nan')):,.6g}")
        return [], table
    stored = json.loads(baseline_path.read_text())["policies"]
    table = Table(title=f"regression against {baseline_path}")
    for column in ("policy", "metric", "baseline", "now", "change", "tolerance", "verdict"):
        table.add_column(column, justify="left" if column in ("policy", "metric", "verdict") else "right")
    moved_lines: list[str] = []
    compared = 0
    for name in sorted(set(stored) | set(current)):
        if name not in current or name not in stored:
            moved_lines.append(
                f"REGRESSION {name}: {'missing now' if name not in current else 'not in baseline'}"
            )
            table.add_row(
                name,
                "-",
                "-",
                "-",
                "-",
                "-",
                "[red]missing " + ("now" if name not in current else "in baseline"),
            )
            continue
        exact = reproducible_kind(kinds.get(name.split("/", 1)[1], ""))
        tolerance = EXACT_TOLERANCE if exact else RL_TOLERANCE
        for metric, before in stored[name].items():
            now = current[name].get(metric, float("nan"))
            compared += 1
            moved = abs(now - before) > tolerance * max(abs(before), 1e-9)
            if moved:
                moved_lines.append(f"REGRESSION {name} {metric}: {before!r} -> {now!r}")
            if moved or verbose:
                change = f"{(now - before) / abs(before):+.3%}" if before else f"{now - before:+.4g}"
                verdict = "[red]REGRESSION" if moved else "ok"
                table.add_row(
                    name, metric, f"{before:,.6g}", f"{now:,.6g}", change, f"{tolerance:g}", verdict
                )
    table.caption = f"{compared} values compared; {len(moved_lines)} moved"
    return moved_lines, table
