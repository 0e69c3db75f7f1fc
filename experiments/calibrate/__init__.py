"""``shopgym calibrate``: a scenario whose shoppers are fitted to a real transaction log.

Scenario: a researcher has her shop's order log (customer id, timestamp, order value). The
customer-base models of Fader & Hardie are fitted to its calibration period by maximum
likelihood (:mod:`experiments.clv_fit`): Pareto/NBD and BG/NBD for purchasing and attrition,
Gamma-Gamma for spend. The acquisition period and the weekly pattern are read off the log. A
scenario is written with the fitted population, and the calibrated shop is simulated to check
it against the held-out period: weekly and cumulative repeat transactions, simulated against
actual, as in Fader, Hardie & Lee (2005), beside the Pareto/NBD's own forecast.

Transactions are counted one per customer per day, as in the CDNOW studies; a day's orders are
summed into one transaction value. Time is measured in weeks from the log's first day. What a
transaction log identifies and what it does not (incentive responses) is in
``docs/CALIBRATION.md``.

One module per step: :mod:`.log` reads and checks the log, :mod:`.cohort` builds the models'
summary, :mod:`.scenario` fits the models and writes the scenario, :mod:`.holdout` simulates
the held-out period, :mod:`.report` draws the figures and writes the report, and :mod:`.cli` is
the command.
"""

from experiments.calibrate.cli import add_calibrate_parser, run_calibrate
from experiments.calibrate.cohort import Cohort, build_cohort, daily_transactions
from experiments.calibrate.common import DAYS_PER_WEEK, CalibrationError, CalibrationWarning
from experiments.calibrate.holdout import HoldoutCheck, check_holdout, funnel_shortfall
from experiments.calibrate.log import (
    EARLIEST_ORDER,
    MAX_LOG_ROWS,
    LogColumns,
    TransactionLog,
    cdnow_transactions,
    latest_order_default,
    local_times,
    read_transaction_log,
    validate_log,
)
from experiments.calibrate.report import render_plots, report_data, report_markdown, write_outputs
from experiments.calibrate.scenario import Calibration, calibrate, scenario_mapping

__all__ = [
    "DAYS_PER_WEEK",
    "EARLIEST_ORDER",
    "MAX_LOG_ROWS",
    "Calibration",
    "CalibrationError",
    "CalibrationWarning",
    "Cohort",
    "HoldoutCheck",
    "LogColumns",
    "TransactionLog",
    "add_calibrate_parser",
    "build_cohort",
    "calibrate",
    "cdnow_transactions",
    "check_holdout",
    "daily_transactions",
    "funnel_shortfall",
    "latest_order_default",
    "local_times",
    "read_transaction_log",
    "render_plots",
    "report_data",
    "report_markdown",
    "run_calibrate",
    "scenario_mapping",
    "validate_log",
    "write_outputs",
]
