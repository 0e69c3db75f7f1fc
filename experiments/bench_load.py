"""``shopgym bench load``: late deliveries against warehouse and carrier utilization.

Lateness is one of the three things policies are compared on, so it must come from load and
from nothing else. This benchmark runs one scenario (no incentives) at several capacity
levels, the warehouse's pick capacity and the carrier's parcel capacity scaled together, and
reports per level the mean and peak warehouse utilization, the carrier's mean utilization and
the late-delivery share with a 95% CI over seeds. Every level sees the same shoppers and draws
(common random numbers), so only the capacity differs. The shipped sweep is
``configs/bench/load.yaml``; ``docs/MODEL.md`` (Fulfillment) reports its figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiments.config import CONFIG_DIR
from sim.engine import Simulation
from sim.io import atomic_write_bytes, atomic_write_text
from sim.metrics import summarize
from sim.params import (
    ScenarioError,
    format_validation_errors,
    load_scenario,
    read_yaml_mapping,
)


class LoadSweepError(ValueError):
    """A load-sweep config could not be used; the message names the field, the value and the fix."""


class LoadSweepConfig(BaseModel):
    """A utilization sweep: one scenario at several capacity levels, a few seeds each."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    name: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: Annotated[str, Field(max_length=2000)] = ""
    scenario: Annotated[str, Field(min_length=1, max_length=300)] = "default"
    overrides: dict[str, Any] = Field(default_factory=dict)
    horizon_days: Annotated[int, Field(ge=7, le=3650)] = 365
    seeds: Annotated[
        tuple[Annotated[int, Field(ge=0, le=2**32 - 1)], ...], Field(min_length=1, max_length=50)
    ]
    capacity_scales: Annotated[
        tuple[Annotated[float, Field(gt=0.0, le=1000.0)], ...], Field(min_length=2, max_length=40)
    ] = Field(description="multiples of the scenario's warehouse and carrier capacity, swept together")


def load_sweep_config(path: str | Path) -> LoadSweepConfig:
    """Read and validate a load-sweep config (a shipped name such as ``load`` or a YAML path)."""
    resolved = Path(path)
    shipped = CONFIG_DIR / "bench" / f"{path}.yaml"
    if not resolved.is_file() and "/" not in str(path) and shipped.is_file():
        resolved = shipped
    data = read_yaml_mapping(resolved, "load-sweep config", LoadSweepError)
    try:
        # Strict JSON mode: YAML lists become tuples, ints become floats, nothing else is coerced.
        return LoadSweepConfig.model_validate_json(json.dumps(data, default=str))
    except ValidationError as error:
        raise LoadSweepError(format_validation_errors(error, f"load-sweep config {resolved}")) from None


def run_level(config: LoadSweepConfig, scale: float, seed: int) -> dict[str, Any]:
    """One run at ``scale`` times the scenario's capacity: utilization and lateness."""
    base = load_scenario(config.scenario, config.overrides)
    warehouse = base.warehouse.pick_capacity_per_1k_shoppers * scale
    carrier = base.shipping.carrier_capacity_per_1k_shoppers * scale
    scenario = load_scenario(
        config.scenario,
        {
            **config.overrides,
            "warehouse.pick_capacity_per_1k_shoppers": warehouse,
            "shipping.carrier_capacity_per_1k_shoppers": carrier,
        },
    )
    sim = Simulation(scenario, seed=seed, horizon_days=config.horizon_days, log_level="aggregates").run()
    summary = summarize(sim)
    daily = sim.daily.to_frame()
    carrier_per_day = carrier * scenario.population.shoppers / 1000.0
    return {
        "capacity_scale": scale,
        "seed": seed,
        "utilization_mean": summary["utilization_mean"],
        "peak_utilization": summary["peak_utilization"],
        "carrier_utilization_mean": float(daily["shipped"].mean() / carrier_per_day),
        "late_delivery_share": summary["late_delivery_share"],
        "deliveries": summary["deliveries"],
        "overtime_orders": summary["overtime_orders"],
        "active_share": summary["active_share"],
    }


def run_sweep(config: LoadSweepConfig, quiet: bool = False) -> pd.DataFrame:
    """Every capacity level on every seed (a progress bar unless ``quiet``); one row per run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cells = [(scale, seed) for scale in config.capacity_scales for seed in config.seeds]
    rows = []
    with Progress(
        TextColumn("[bold]load sweep[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=True,
    ) as progress:
        task = progress.add_task(config.name, total=len(cells))
        for scale, seed in cells:
            rows.append(run_level(config, scale, seed))
            progress.advance(task)
    return pd.DataFrame(rows)


def summarize_sweep(runs: pd.DataFrame) -> pd.DataFrame:
    """Per capacity level: means over seeds, and the late share's 95% CI half-width (t over seeds)."""
    from scipy import stats

    grouped = runs.groupby("capacity_scale", sort=False)
    table = grouped[
        ["utilization_mean", "peak_utilization", "carrier_utilization_mean", "late_delivery_share"]
    ].mean()
    n = grouped["late_delivery_share"].count()
    sd = grouped["late_delivery_share"].std(ddof=1).fillna(0.0)
    t = np.array([stats.t.ppf(0.975, k - 1) if k > 1 else math.nan for k in n])
    table["late_share_ci95"] = t * sd / np.sqrt(n)
    table["seeds"] = n
    return table.reset_index()


def _plot(table: pd.DataFrame) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = table.sort_values("utilization_mean")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.errorbar(
        order["utilization_mean"],
        order["late_delivery_share"] * 100,
        yerr=order["late_share_ci95"].fillna(0.0) * 100,
        marker="o",
        capsize=3,
        label="late deliveries",
    )
    ax.axvline(1.0, color="grey", linestyle=":", label="regular capacity")
    ax.set_xlabel("mean warehouse utilization (orders picked / regular capacity)")
    ax.set_ylabel("late deliveries (% of deliveries)")
    ax.set_title("Lateness comes from load")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def format_markdown(config: LoadSweepConfig, table: pd.DataFrame) -> str:
    """The sweep's table in Markdown, one row per capacity level."""
    lines = [
        f"# {config.name}: late deliveries by utilization",
        "",
        f"Scenario `{config.scenario}`, {config.horizon_days} days, seeds {list(config.seeds)}; "
        "warehouse and carrier capacity scaled together.",
        "",
        "| capacity x | warehouse util. (mean) | peak util. | carrier util. (mean) | late share | 95% CI |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.to_dict("records"):
        half_width = float(row["late_share_ci95"])
        ci = "n/a" if math.isnan(half_width) else f"+-{half_width:.2%}"
        lines.append(
            f"| {row['capacity_scale']:g} | {row['utilization_mean']:.2f} | {row['peak_utilization']:.2f} | "
            f"{row['carrier_utilization_mean']:.2f} | {row['late_delivery_share']:.2%} | {ci} |"
        )
    return "\n".join(lines) + "\n"


def add_bench_load_arguments(bench: argparse.ArgumentParser) -> None:
    """The ``bench load`` options."""
    bench.add_argument(
        "--config",
        default="load",
        help="load: the sweep config, a shipped name (default 'load': configs/bench/load.yaml) "
        "or a YAML path",
    )
    bench.add_argument(
        "--out",
        help="load: a folder for load.md, load.csv and load.png (created; files written atomically)",
    )


def run_bench_load(args: argparse.Namespace) -> int:
    """``shopgym bench load``: run the sweep, print its table, and write it if ``--out`` is given."""
    try:
        config = load_sweep_config(args.config)
        out = Path(args.out) if args.out else None
        if out is not None and out.exists() and not out.is_dir():
            raise LoadSweepError(f"--out {out} exists and is not a folder")
        runs = run_sweep(config, quiet=args.json)
    except (LoadSweepError, ScenarioError) as error:
        print(f"shopgym bench load: {error}", file=sys.stderr)
        return 2
    table = summarize_sweep(runs)
    text = format_markdown(config, table)
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text, out / "load.md")
        atomic_write_text(runs.to_csv(index=False), out / "load.csv")
        atomic_write_bytes(_plot(table), out / "load.png")
    return 0
