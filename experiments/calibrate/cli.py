"""The ``shopgym calibrate`` command line: options, progress bars and one-line errors."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.calibrate.common import (
    CalibrationError,
    CalibrationWarning,
    shown,
)
from experiments.calibrate.holdout import check_holdout, funnel_shortfall
from experiments.calibrate.log import (
    EARLIEST_ORDER,
    MAX_LOG_ROWS,
    LogColumns,
    latest_order_default,
    read_transaction_log,
)
from experiments.calibrate.report import render_plots, report_data, report_markdown, write_outputs
from experiments.calibrate.scenario import calibrate
from experiments.calibrate.twins import (
    MAX_TWIN_DRAWS,
    PSEUDONYM_KEY_ENV,
    TWIN_DRAWS,
    check_twins,
    pseudonym_key,
    twins_frame,
    write_twins_outputs,
)


# ---- command line ------------------------------------------------------------------------------------
def add_calibrate_parser(sub: Any) -> None:
    """Add ``shopgym calibrate`` to the command's subparsers."""
    parser = sub.add_parser(
        "calibrate",
        help="fit a scenario's population to a real transaction log and check it on the held-out period",
        description=(
            "Fit Pareto/NBD and BG/NBD (purchasing and attrition) and Gamma-Gamma (spend) by maximum "
            "likelihood to LOG's calibration period, write a validated, commented scenario to --out, and a "
            "report (fitted parameters, tracking plots of simulated against actual repeat transactions, "
            "repeat-count distribution, conditional expectations) to --report. Nothing is written on error. "
            "See docs/CALIBRATION.md."
        ),
    )
    parser.add_argument("log", help="transaction log, CSV or parquet, one row per order")
    parser.add_argument("--out", required=True, help="scenario YAML to write")
    parser.add_argument("--report", help="report folder (default: <out stem>_report next to --out)")
    parser.add_argument(
        "--calibration-end",
        help="last day of the calibration period, e.g. 1997-09-30; later days are the holdout "
        "(default: the log's last day, no holdout)",
    )
    parser.add_argument(
        "--base",
        default="default",
        help="scenario whose shop (catalogue, shipping, warehouse, incentives, behavioural traits) is kept "
        "(a shipped scenario's name or a path; default: default)",
    )
    parser.add_argument("--name", default="calibrated", help="scenario name (default calibrated)")
    parser.add_argument(
        "--attrition",
        choices=["pareto_nbd", "bgnbd"],
        default="pareto_nbd",
        help="attrition model written to the scenario (default pareto_nbd; both are fitted and reported)",
    )
    parser.add_argument(
        "--customer-col", default="customer_id", help="customer id column (default customer_id)"
    )
    parser.add_argument("--time-col", default="timestamp", help="order time column (default timestamp)")
    parser.add_argument("--amount-col", default="amount", help="order value column, dollars (default amount)")
    parser.add_argument("--date-format", help="strftime format of the time column, e.g. %%Y%%m%%d")
    parser.add_argument(
        "--duplicates",
        choices=["keep", "drop", "error"],
        default="drop",
        help="what to do with exact duplicate rows (same customer, time and value), which are always "
        "counted in a warning (default drop: a log exported twice would double the mean spend)",
    )
    parser.add_argument(
        "--earliest",
        default=str(EARLIEST_ORDER.date()),
        help=f"earliest plausible order date; earlier rows are refused (default {EARLIEST_ORDER.date()})",
    )
    parser.add_argument(
        "--latest",
        help="latest plausible order date; later rows are refused (default: a year after today)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=MAX_LOG_ROWS,
        help=f"largest log read, in rows; a larger one is refused before parsing (default {MAX_LOG_ROWS:,})",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="simulations of the calibrated shop, on seeds 0..N-1 (default 5; 0: none)",
    )
    parser.add_argument(
        "--twins",
        metavar="FILE.parquet",
        help="also write every cohort customer as a twin (her history and posterior; docs/CALIBRATION.md) "
        "to FILE.parquet, and beside it FILE.yaml, the scenario that starts from them; with a holdout "
        "and --seeds, the report compares each customer's simulated holdout with hers",
    )
    parser.add_argument(
        "--twin-draws",
        type=int,
        default=TWIN_DRAWS,
        help=f"twins of each customer per seed in the holdout check of --twins (default {TWIN_DRAWS}; "
        f"1 to {MAX_TWIN_DRAWS}): a customer's forecast is the mean of seeds x draws futures",
    )
    parser.add_argument(
        "--pseudonymize",
        action="store_true",
        help=f"write keyed hashes of the customer ids into --twins (HMAC-SHA256 under ${PSEUDONYM_KEY_ENV}, "
        "else under a random key nobody keeps)",
    )
    parser.set_defaults(func=run_calibrate)


def _date_option(option: str, value: str) -> pd.Timestamp:
    """A date given on the command line (its local day, whatever offset it carries)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise CalibrationError(f"{option} {shown(value)} is not a date; write it as YYYY-MM-DD")
    return stamp.tz_localize(None) if stamp.tzinfo is not None else stamp


def run_calibrate(args: Any) -> int:
    """Run ``shopgym calibrate``; a bad log or option prints the problem and returns 2."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.params import ScenarioError

    try:
        if args.seeds < 0:
            raise CalibrationError(f"--seeds must be >= 0, got {args.seeds}")
        if args.max_rows < 1:
            raise CalibrationError(f"--max-rows must be >= 1, got {args.max_rows}")
        end = (
            None if args.calibration_end is None else _date_option("--calibration-end", args.calibration_end)
        )
        window = (
            _date_option("--earliest", args.earliest),
            latest_order_default() if args.latest is None else _date_option("--latest", args.latest),
        )
        if window[0] > window[1]:
            raise CalibrationError(f"--earliest {window[0].date()} is after --latest {window[1].date()}")
        twins_path = None if args.twins is None else Path(args.twins)
        if twins_path is not None and twins_path.suffix.lower() != ".parquet":
            raise CalibrationError(
                f"--twins {shown(args.twins)} must end in .parquet, e.g. --twins twins.parquet"
            )
        if not 1 <= args.twin_draws <= MAX_TWIN_DRAWS:
            raise CalibrationError(f"--twin-draws must be in [1, {MAX_TWIN_DRAWS}], got {args.twin_draws}")
        if args.pseudonymize and twins_path is None:
            raise CalibrationError("--pseudonymize hashes the ids of --twins; give --twins FILE.parquet too")
        columns = (
            TextColumn("[bold]calibrate[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        # Steps: read, fit, the simulated seeds, the report.
        with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
            task = bars.add_task("reading the log", total=3 + args.seeds)
            log = read_transaction_log(
                args.log,
                LogColumns(args.customer_col, args.time_col, args.amount_col),
                args.date_format,
                args.duplicates,
                window,
                args.max_rows,
            )
            for note in log.warnings:
                bars.console.print(
                    f"shopgym calibrate: warning: {note}", markup=False, highlight=False, soft_wrap=True
                )
            bars.update(task, advance=1, description=f"fitting {len(log.frame):,} orders")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CalibrationWarning)
                calibration = calibrate(log, end, args.base, args.attrition, args.name, Path(args.log).name)
            for warning in caught:
                bars.console.print(
                    f"shopgym calibrate: warning: {warning.message}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            bars.update(task, advance=1, description=f"simulating {calibration.cohort.customers:,} shoppers")
            shortfall = funnel_shortfall(calibration.scenario)
            check = None
            if args.seeds and calibration.cohort.total_weeks > 0:
                check = check_holdout(calibration, range(args.seeds), on_seed=lambda: bars.advance(task))
            twins = twin_check = None
            if twins_path is not None:
                customers = calibration.cohort.customers
                build = bars.add_task("building the twins", total=customers)
                twins = twins_frame(
                    calibration,
                    pseudonym_key() if args.pseudonymize else None,
                    on_chunk=lambda done: bars.advance(build, done),
                )
                if args.seeds and calibration.cohort.holdout_weeks > 0:
                    seeds = bars.add_task(f"simulating {customers:,} twins", total=args.seeds)
                    twin_check = check_twins(
                        calibration,
                        range(args.seeds),
                        on_seed=lambda: bars.advance(seeds),
                        draws=args.twin_draws,
                    )
            bars.update(task, completed=2 + args.seeds, description="writing the report")
            data = report_data(calibration, check, shortfall, twins=twin_check)
            plots = render_plots(calibration, check, twin_check)
            bars.advance(task)
    except (CalibrationError, ScenarioError) as error:
        print(f"shopgym calibrate: {error}\nnothing was written", file=sys.stderr)
        return 2
    out = Path(args.out)
    report_dir = Path(args.report) if args.report else out.with_name(f"{out.stem}_report")
    write_outputs(out, report_dir, calibration, data, plots)
    print(report_markdown(data, list(plots)).split("## Figures")[0])
    print(f"wrote {out} and {report_dir}/ (report.md, calibration.json, {', '.join(plots)})", file=sys.stderr)
    if twins is not None and twins_path is not None:
        scenario_file, _ = write_twins_outputs(calibration, *twins, twins_path)
        print(f"wrote {twins_path} ({len(twins[0]):,} twins) and {scenario_file}", file=sys.stderr)
    return 0
