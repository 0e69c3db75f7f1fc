"""The ``shopgym`` command line: simulate, benchmark, run experiments, compare runs, gate regressions.

Run ``shopgym --help`` or ``shopgym COMMAND --help`` for the options of each command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from experiments.config import ConfigError
from experiments.terminal import make_console, package_version
from policies.base import PolicyFileError
from policies.runtime import ArtifactError, FeatureError
from sim.io import atomic_write_json, atomic_write_parquet
from sim.params import ScenarioError, load_scenario

_console = make_console(stderr=True)


def _simulate(args: argparse.Namespace) -> int:
    from sim.engine import Simulation
    from sim.metrics import summarize

    overrides: dict[str, Any] = {}
    if args.shoppers is not None:
        overrides["population.shoppers"] = args.shoppers
    scenario = load_scenario(args.scenario, overrides)
    if args.days < 1:
        raise ScenarioError(f"--days must be >= 1, got {args.days}")
    started = time.perf_counter()
    sim = Simulation(scenario, seed=args.seed, horizon_days=args.days, log_level=args.log)
    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        console=_console,
        disable=args.quiet,
    ) as progress:
        task = progress.add_task(f"{scenario.name}, seed {args.seed}", total=args.days)
        sim.run(on_day=lambda day: progress.update(task, completed=day))
        progress.update(task, completed=args.days)
    summary = summarize(sim)
    summary["shoppers_planned"] = scenario.population.shoppers
    if summary["shoppers"] < scenario.population.shoppers:
        _console.print(
            f"note: {scenario.name} acquires {scenario.population.shoppers:,} shoppers over "
            f"{scenario.population.acquisition_days:g} days; "
            f"{summary['shoppers']:,} were acquired in {args.days} days"
        )
    summary["seed"] = args.seed
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    summary["event_log"] = args.log

    out = Path(args.out)
    if args.log == "events":
        sim.log.write_parquet(out / "events.parquet")
    atomic_write_parquet(sim.daily.to_frame(), out / "daily.parquet")
    atomic_write_json(summary, out / "summary.json")

    table = Table(
        title=f"shopgym simulate: {scenario.name}, {summary['shoppers']} shoppers, {args.days} days"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4f}")
        else:
            table.add_row(key, str(value))
    make_console().print(table)
    _console.print(
        f"wrote {out}/summary.json, daily.parquet" + (", events.parquet" if args.log == "events" else "")
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from experiments.bench import bench_envs, bench_sim, format_env_table, format_sim_table

    if args.target == "export":
        from experiments.export_cli import run_bench_export

        return run_bench_export(args)
    if args.target == "serve":
        from experiments.bench_serve import run_bench_serve

        return run_bench_serve(args)
    if args.target == "load":
        from experiments.bench_load import run_bench_load

        return run_bench_load(args)
    if args.target == "envs":
        env_records = bench_envs(ppo_steps=args.ppo_steps, quiet=args.json)
        if args.json:
            print(json.dumps(env_records, indent=2))
        else:
            make_console().print(format_env_table(env_records))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    mechanisms = {"both": (True, False), "on": (True,), "off": (False,)}[args.mechanisms]
    records = bench_sim(
        args.scenario,
        sizes,
        args.days,
        args.seed,
        repeats=args.repeats,
        quiet=args.json,
        mechanisms=mechanisms,
    )
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        make_console().print(format_sim_table(records))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``shopgym`` command."""
    parser = argparse.ArgumentParser(
        prog="shopgym",
        description=(
            "Simulate e-commerce shoppers and compare incentive policies on LTV, margin and fulfillment load."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"shopgym {package_version()}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate",
        help="run a scenario with no incentives and write its event log and summary",
        description=(
            "Run a scenario with no incentives; write DIR/events.parquet, "
            "DIR/daily.parquet and DIR/summary.json."
        ),
    )
    sim.add_argument(
        "--scenario", required=True, help="a shipped scenario (default, cdnow, peak_season) or a YAML path"
    )
    sim.add_argument("--shoppers", type=int, help="override population.shoppers")
    sim.add_argument("--days", type=int, default=365, help="simulated days (default 365)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--out", required=True, help="output folder (created; files are replaced atomically)")
    sim.add_argument(
        "--log",
        choices=["events", "aggregates"],
        default="events",
        help="'events' keeps every event (default); 'aggregates' keeps only daily counters, faster",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_simulate)

    bench = sub.add_parser(
        "bench",
        help="measure simulator throughput and memory",
        description=(
            "sim: shopper-days per second at several population sizes, beside a bare numpy loop "
            "making the same random draws (the limit), each size in a fresh process for peak memory. "
            "envs: raw steps per second of each environment beside CartPole-v1 in the same run, and "
            "the share of SB3 PPO wall time spent inside the environment. "
            "export: p50/p99 latency of one decision and batch throughput of exported policies "
            "(onnxruntime and numpy paths) on one core, against the 50 ms budget and a 100 us p99 target. "
            "load: late-delivery share against warehouse and carrier utilization (configs/bench/load.yaml)."
        ),
    )
    bench.add_argument(
        "target",
        choices=["sim", "envs", "export", "serve", "load"],
        help="sim: shopper-days/s by population size; envs: environment steps/s beside CartPole-v1; "
        "export: decision latency of exported policies; serve: HTTP load test of shopgym serve on 127.0.0.1; "
        "load: late deliveries by utilization",
    )
    bench.add_argument("--ppo-steps", type=int, default=4096, help="envs: PPO timesteps for the env share")
    bench.add_argument("--scenario", default="default", help="shipped scenario name or YAML path")
    bench.add_argument(
        "--sizes", default="1000,10000,100000,1000000", help="comma-separated population sizes"
    )
    bench.add_argument("--days", type=int, default=30, help="simulated days per run (default 30)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="at least this many runs per size, more until 2 s are measured; the fastest counts",
    )
    bench.add_argument(
        "--mechanisms",
        choices=["both", "on", "off"],
        default="both",
        help="behavioural mechanisms on, off (neutral settings) or both in the same run (default both)",
    )
    bench.add_argument("--json", action="store_true", help="print a JSON list of records instead of a table")
    bench.set_defaults(func=_bench)
    from experiments.export_cli import add_bench_arguments, add_export_parser

    add_bench_arguments(bench)
    add_export_parser(sub)
    from experiments.bench_serve import add_bench_serve_arguments
    from experiments.ope import add_ope_parser
    from experiments.serve_cli import add_serve_parser

    add_bench_serve_arguments(bench)
    from experiments.bench_load import add_bench_load_arguments
    from experiments.oracle_check import add_oracle_check_parser
    from experiments.uplift_check import add_uplift_check_parser

    add_bench_load_arguments(bench)
    add_oracle_check_parser(sub)
    add_uplift_check_parser(sub)
    add_serve_parser(sub)
    add_ope_parser(sub)

    from experiments.run_cli import add_parsers

    add_parsers(sub)
    from experiments.calibrate import add_calibrate_parser

    add_calibrate_parser(sub)
    from experiments.ab_test import add_ab_test_parser

    add_ab_test_parser(sub)
    from experiments.tune import add_tune_parser

    add_tune_parser(sub)
    from experiments.leaderboard import add_leaderboard_parser

    add_leaderboard_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shopgym`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as error:  # Ctrl-C: one line, the shell's exit code for SIGINT
        text = " ".join(str(error).split())[:1000] or "interrupted"
        print(f"shopgym: {text}", file=sys.stderr)
        return 130
    except (ScenarioError, ConfigError, ArtifactError, FeatureError, PolicyFileError) as error:
        print(f"shopgym: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only or full disk, a vanished directory: one line, no traceback
        if os.environ.get("SHOPGYM_TRACEBACK"):
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"shopgym: cannot read or write{where}: {error.strerror or error}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # e.g. an environment in which no shopper ever reaches a decision
        if os.environ.get("SHOPGYM_TRACEBACK"):
            raise
        text = " ".join(str(error).split())[:1000]
        print(f"shopgym: {text} (SHOPGYM_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
