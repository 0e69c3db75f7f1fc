"""The experiment commands of ``shopgym``: ``run``, ``compare`` and ``regress``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markdown import Markdown

from experiments.config import load_config
from experiments.terminal import make_console


def _run(args: argparse.Namespace) -> int:
    from experiments.runner import run_experiment

    config = load_config(args.config)
    root = run_experiment(config, args.out, args.backend, args.workers, quiet=args.quiet)
    console = make_console()
    summary = root / "summary.md"
    if summary.is_file() and not args.quiet:
        console.print(Markdown(summary.read_text()))
    console.print(f"results in {root}/ (results.parquet, summary.md, plots/, models/, tensorboard/)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from experiments.regress import compare_runs, compare_table
    from experiments.runner import load_results

    a, b = Path(args.a), Path(args.b)
    frame = compare_runs(load_results(a), load_results(b))
    make_console().print(compare_table(frame, f"A = {a}, B = {b}"))
    return 0


def _regress(args: argparse.Namespace) -> int:
    from experiments.regress import regress

    config = load_config(args.config)
    moved, table = regress(
        config, Path(args.baseline), update=args.update, quiet=args.quiet, verbose=args.verbose
    )
    console = make_console()
    console.print(table if table.row_count else table.caption)
    for line in moved:
        print(line)
    if moved:
        console.print("[red bold]policy returns moved: regression gate failed[/]")
        console.print(f"if the change is intended, rerun with --update to rewrite {args.baseline}")
        return 1
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``run``, ``compare`` and ``regress`` to the ``shopgym`` subcommands."""
    run = sub.add_parser(
        "run",
        help="train and evaluate every policy of an experiment config on every seed",
        description=(
            "Train and evaluate every policy x seed (x scenario variant) of CONFIG with common random "
            "numbers. Writes DIR/config.resolved.yaml, meta.json (versions, git SHA), results.parquet (one "
            "row per policy x seed x evaluation episode), summary.md (means, 95% CIs, paired differences), "
            "plots/*.png, tensorboard/ and models/. Re-running skips finished cells; a killed run keeps "
            "every finished cell."
        ),
    )
    run.add_argument(
        "config", help="experiment YAML (e.g. configs/my.yaml) or a shipped config's name (e.g. quickstart)"
    )
    run.add_argument("--out", help="run directory (default: the config's output_dir, else runs/<name>)")
    run.add_argument("--backend", choices=["local", "ray"], help="local process pool (default) or Ray tasks")
    run.add_argument("--workers", type=int, help="parallel cells (default: the config's workers)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, no summary print")
    run.set_defaults(func=_run)

    compare = sub.add_parser(
        "compare",
        help="print metric differences between two runs",
        description="Per policy and metric: run A's mean, run B's mean, B - A and the relative change.",
    )
    compare.add_argument("a", help="run directory A (holds results.parquet)")
    compare.add_argument("b", help="run directory B")
    compare.set_defaults(func=_compare)

    regress = sub.add_parser(
        "regress",
        help="CI gate: re-run a pinned config and compare policy returns with a stored baseline",
        description=(
            "Re-run CONFIG in a temporary directory and compare each policy's mean return and key metrics "
            "with BASELINE: exact for the simulator, baselines and bandits, within 10% for SB3-trained "
            "policies (floating point differs across machines). Exits 1 and prints what moved on a "
            "regression."
        ),
    )
    regress.add_argument("config", help="pinned experiment YAML, e.g. configs/ci/regress.yaml")
    regress.add_argument(
        "--baseline", required=True, help="stored baseline JSON, e.g. configs/ci/baseline.json"
    )
    regress.add_argument("--update", action="store_true", help="rewrite the baseline with this run's values")
    regress.add_argument(
        "--verbose", action="store_true", help="show every compared value, not only what moved"
    )
    regress.add_argument("--quiet", action="store_true", help="no progress bars")
    regress.set_defaults(func=_regress)
