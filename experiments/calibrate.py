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
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray

from experiments.clv_fit import (
    PUBLISHED_CDNOW,
    ModelFit,
    RepeatSummary,
    bgnbd_conditional_expected,
    bgnbd_expected_repeats,
    cohort_weekly_expected,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    pareto_nbd_conditional_expected,
    pareto_nbd_expected_repeats,
)
from sim.io import atomic_write_json, atomic_write_text
from sim.params import MAX_VALUE, NEUTRAL_MECHANISMS, Scenario, read_yaml_mapping, scenario_from_dict
from sim.scenarios import scenario_path

F64 = NDArray[np.float64]
Attrition = Literal["pareto_nbd", "bgnbd"]
DuplicatePolicy = Literal["keep", "drop", "error"]

DAYS_PER_WEEK = 7
MIN_CUSTOMERS = 100
#: Most orders read from a log (``--max-rows``), an assumption: the fits and the simulated check
#: grow with the customers, so a larger log should be calibrated on a sample of its customers.
MAX_LOG_ROWS = 1_000_000
#: Largest log file read (its bytes are read whole, to hash them).
MAX_LOG_BYTES = 512 * 1024 * 1024
#: Default plausible window of order dates: from 1970 to a year after today (``--earliest``,
#: ``--latest``). A date outside it is a typo or a unit error and would stretch the fit over decades.
EARLIEST_ORDER = pd.Timestamp("1970-01-01")
LATEST_ORDER_AHEAD = pd.Timedelta(days=366)
#: Median order values outside this range, in dollars, are implausible for a shop (an assumption:
#: amounts in cents read as $3,500 orders, amounts in thousands as $0.04 orders); they warn.
PLAUSIBLE_MEDIAN_ORDER = (1.0, 1000.0)
#: Longest excerpt of a user's value (a cell, an option) echoed in a message.
ECHO_CHARS = 40

#: Mechanisms that move purchasing or attrition even when no incentive is given. A scenario
#: calibrated on a transaction log sets them neutral: the log's purchase process already contains
#: whatever they did in the real shop, so leaving them on would count them twice.
TRANSACTION_NEUTRAL_KEYS = (
    "mechanisms.shipping_threshold.topup_prob",
    "mechanisms.churn.late_delivery_churn",
    "mechanisms.churn.late_dropout_multiplier",
    "mechanisms.churn.on_time_relief",
    "mechanisms.churn.frustration_weight",
    "mechanisms.streaks.weight",
    "mechanisms.streaks.break_penalty",
    "mechanisms.tiers.goal_gradient",
    "mechanisms.tiers.perk_dropout_relief",
    "mechanisms.tiers.downgrade_weight",
    "mechanisms.social.proof_weight",
    "mechanisms.social.bestseller_lift",
    "mechanisms.need.depletion",
)


class CalibrationError(ValueError):
    """A log could not be calibrated; the message names the column or value and the fix."""


class CalibrationWarning(UserWarning):
    """Something in a calibration deserves the user's attention; the calibration went on."""


def _shown(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr`` of a user's value, cut to ``limit`` characters: messages name values, not files."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def latest_order_default() -> pd.Timestamp:
    """The default latest plausible order date: a year after today."""
    return pd.Timestamp.today().normalize() + LATEST_ORDER_AHEAD


@dataclass(frozen=True)
class LogColumns:
    """Column names of the transaction log."""

    customer: str = "customer_id"
    timestamp: str = "timestamp"
    amount: str = "amount"


@dataclass(frozen=True)
class TransactionLog:
    """A validated log: one row per order, sorted by time; ``warnings`` says what was odd."""

    frame: pd.DataFrame  # columns customer (str), time (datetime64), amount (float)
    source_hash: str
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Cohort:
    """The log as the customer-base models see it: one transaction per customer-day."""

    start: pd.Timestamp
    calibration_end: pd.Timestamp
    log_end: pd.Timestamp
    customer_ids: tuple[str, ...]  # the summary's row order
    summary: RepeatSummary
    first_purchase_day: F64  # days from ``start``
    holdout_repeats: F64  # per customer, in (calibration_end, log_end]
    weekly_repeats: F64  # repeat transactions per week from ``start``
    calibration_weeks: float
    total_weeks: int
    weekday_share: F64  # Monday..Sunday share of transactions
    hour_weights: tuple[float, ...] | None  # 24 relative weights, when timestamps carry times
    acquisitions_per_week: F64
    late_first_purchases: int  # customers first seen after calibration_end (not in the cohort)

    @property
    def customers(self) -> int:
        """Customers in the calibration cohort."""
        return int(self.summary.frequency.size)

    @property
    def holdout_weeks(self) -> float:
        """Length of the held-out period in weeks (0 when the log ends at calibration end)."""
        return (self.log_end - self.calibration_end).days / DAYS_PER_WEEK

    @property
    def acquisition_days(self) -> float:
        """Days over which the cohort made its first purchases (the scenario's acquisition span)."""
        return float(np.max(self.first_purchase_day)) + 1.0


@dataclass(frozen=True)
class Calibration:
    """Fits, the cohort they came from and the scenario they make (nothing written yet)."""

    log: TransactionLog
    cohort: Cohort
    pareto_nbd: ModelFit
    bgnbd: ModelFit
    gamma_gamma: ModelFit
    attrition: Attrition
    scenario: Scenario
    scenario_text: str


@dataclass(frozen=True)
class HoldoutCheck:
    """Simulated against actual repeat transactions, beside the Pareto/NBD forecast."""

    seeds: tuple[int, ...]
    simulated_weekly: F64  # seeds x weeks
    simulated_calibration_counts: F64  # seeds x (repeat-count bins 0..max_bin)
    actual_holdout_total: float
    simulated_holdout_total: float
    simulated_holdout_sd: float
    pareto_nbd_holdout_total: float
    bgnbd_holdout_total: float
    simulated_weekly_mape: float
    pareto_nbd_weekly_mape: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def simulated_error(self) -> float:
        """Relative error of the simulated holdout total."""
        return _relative_error(self.simulated_holdout_total, self.actual_holdout_total)

    @property
    def pareto_nbd_error(self) -> float:
        """Relative error of the Pareto/NBD holdout forecast."""
        return _relative_error(self.pareto_nbd_holdout_total, self.actual_holdout_total)


# ---- reading and checking the log ----------------------------------------------------------------
def read_transaction_log(
    path: str | Path,
    columns: LogColumns = LogColumns(),
    date_format: str | None = None,
    duplicates: DuplicatePolicy = "drop",
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    max_rows: int = MAX_LOG_ROWS,
) -> TransactionLog:
    """Read a CSV or parquet order log and validate it; raises :class:`CalibrationError`.

    A file over ``MAX_LOG_BYTES`` or ``max_rows`` rows is refused before it is parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"transaction log not found: {path}")
    size = path.stat().st_size
    if size > MAX_LOG_BYTES:
        raise CalibrationError(f"transaction log {path}: {size:,} bytes; at most {MAX_LOG_BYTES:,}")
    raw_bytes = path.read_bytes()
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(io.BytesIO(raw_bytes)).metadata.num_rows
        else:
            rows = raw_bytes.count(b"\n") - 1 + (not raw_bytes.endswith(b"\n"))  # less the header
        if rows > max_rows:
            raise CalibrationError(
                f"transaction log {path}: {rows:,} rows; at most {max_rows:,} (--max-rows; "
                "calibrating a sample of customers, all of each one's orders, gives the same fits)"
            )
        if parquet:
            raw = pd.read_parquet(io.BytesIO(raw_bytes))
        else:
            raw = pd.read_csv(io.BytesIO(raw_bytes), dtype={columns.customer: str})
    except CalibrationError:
        raise
    except (ValueError, OSError, RecursionError) as problem:
        reason = " ".join(str(problem).split())[:200]
        raise CalibrationError(
            f"transaction log {path} could not be read as {'parquet' if parquet else 'CSV'} "
            f"(a table with a header row, one row per order): {reason}"
        ) from None
    digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return validate_log(raw, columns, date_format, duplicates, digest, window)


def validate_log(
    raw: pd.DataFrame,
    columns: LogColumns = LogColumns(),
    date_format: str | None = None,
    duplicates: DuplicatePolicy = "drop",
    source_hash: str = "",
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> TransactionLog:
    """Check a raw order table and return it as a :class:`TransactionLog`.

    Order times are the shop's local wall-clock times: a timestamp with a UTC offset keeps its
    local day and hour (offsets may differ row to row, as across daylight saving). Orders dated
    outside ``window`` (default :data:`EARLIEST_ORDER` to a year after today) are refused.
    """
    wanted = {"customer": columns.customer, "timestamp": columns.timestamp, "amount": columns.amount}
    missing = [f"{role} column {_shown(name)}" for role, name in wanted.items() if name not in raw.columns]
    if missing:
        names = [_shown(str(c), 24) for c in raw.columns[:10]]
        more = f" and {len(raw.columns) - 10} more" if len(raw.columns) > 10 else ""
        raise CalibrationError(
            f"transaction log lacks {', '.join(missing)}; it has columns [{', '.join(names)}]{more}. "
            "Name them with --customer-col, --time-col and --amount-col."
        )
    if raw.empty:
        raise CalibrationError("transaction log has no rows")
    customer = raw[columns.customer]
    if customer.isna().any():
        row = int(np.flatnonzero(customer.isna().to_numpy())[0])
        raise CalibrationError(
            f"column {_shown(columns.customer)} is empty in {int(customer.isna().sum())} rows "
            f"(first: row {row}); every order needs a customer id"
        )
    stamps = raw[columns.timestamp]
    time = local_times(stamps, date_format, columns.timestamp)
    bad = time.isna().to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)[:3]
        examples = ", ".join(f"row {r}: {_shown(stamps.iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {_shown(columns.timestamp)} has {int(bad.sum())} unparsable dates ({examples}); "
            "fix them or give their format with --date-format (e.g. %Y%m%d)"
        )
    earliest, latest = window or (EARLIEST_ORDER, latest_order_default())
    outside = ((time < earliest) | (time > latest)).to_numpy()
    if outside.any():
        rows = np.flatnonzero(outside)[:3]
        examples = ", ".join(f"row {r}: {_shown(stamps.iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {_shown(columns.timestamp)} has {int(outside.sum())} orders dated outside the plausible "
            f"window {earliest.date()} to {latest.date()} ({examples}); fix them, or set the window "
            "with --earliest and --latest"
        )
    amount = pd.to_numeric(raw[columns.amount], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(amount) | (amount < 0)
    if bad.any():
        rows = np.flatnonzero(bad)[:3]
        examples = ", ".join(f"row {r}: {_shown(raw[columns.amount].iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {_shown(columns.amount)} has {int(bad.sum())} negative, missing or non-finite order "
            f"values ({examples}); order values must be finite dollars >= 0 "
            "(drop refunds or net them out first)"
        )
    frame = pd.DataFrame(
        {"customer": customer.astype(str).to_numpy(), "time": time.to_numpy(), "amount": amount}
    )
    notes: list[str] = []
    duplicated = frame.duplicated()
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:3]
        text = (
            f"{int(duplicated.sum())} duplicate rows (same customer, time and value; first at rows "
            f"{', '.join(str(r) for r in rows)})"
        )
        if duplicates == "error":
            raise CalibrationError(
                f"transaction log has {text}; drop them with --duplicates drop or keep them"
            )
        if duplicates == "drop":
            frame = frame[~duplicated]
            notes.append(f"dropped {text}; --duplicates keep counts them as separate orders")
        else:
            notes.append(f"kept {text} as separate orders; --duplicates drop removes them")
    median = float(np.median(frame["amount"].to_numpy()))
    low, high = PLAUSIBLE_MEDIAN_ORDER
    if median > high:
        notes.append(
            f"the median order value is ${median:,.2f}, implausible for a shop (expected ${low:g} to "
            f"${high:,.0f}); if the amounts are in cents, divide them by 100"
        )
    elif median < low:
        notes.append(
            f"the median order value is ${median:,.4g}, implausible for a shop (expected ${low:g} to "
            f"${high:,.0f}); check the amount column's unit (dollars per order)"
        )
    customers = frame["customer"].nunique()
    if customers < MIN_CUSTOMERS:
        notes.append(
            f"only {customers} customers (fewer than {MIN_CUSTOMERS}): the fitted parameters will be "
            "imprecise; see their standard errors"
        )
    frame = frame.sort_values(["time", "customer"], kind="stable").reset_index(drop=True)
    return TransactionLog(frame=frame, source_hash=source_hash, warnings=tuple(notes))


# A clock time followed by a UTC offset ("10:30:00+02:00", "10:30Z"): the offset is cut off,
# leaving the shop's local wall-clock time.
_UTC_OFFSET = r"(?P<clock>\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


def local_times(stamps: pd.Series, date_format: str | None = None, column: str = "timestamp") -> pd.Series:
    """Order times as naive local wall-clock times (NaT where unparsable), never converted to UTC.

    Days are the shop's local days: an evening order stays on its evening, whatever its offset.
    """
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_localize(None)  # the wall-clock time in the column's own zone
    if pd.api.types.is_datetime64_dtype(stamps.dtype):
        return stamps
    text = stamps.astype(str).str.strip()
    fmt = date_format
    if fmt is None or "%z" in fmt or "%Z" in fmt:
        text = text.str.replace(_UTC_OFFSET, r"\g<clock>", regex=True)
        fmt = None if fmt is None else fmt.replace("%z", "").replace("%Z", "").strip()
    try:
        time = pd.to_datetime(text, format=fmt, errors="coerce")
        if fmt is None and time.isna().any() and text.str.match(r"\d{4}-\d{2}-\d{2}").all():
            time = pd.to_datetime(text, format="ISO8601", errors="coerce")  # ISO of mixed precision
    except (ValueError, TypeError, OverflowError):
        raise CalibrationError(
            f"column {_shown(column)} could not be parsed as dates with format {_shown(fmt)}; "
            "write them as ISO dates (2024-01-31 or 2024-01-31T18:05:00+01:00) or give --date-format"
        ) from None
    if isinstance(time.dtype, pd.DatetimeTZDtype):
        time = time.dt.tz_localize(None)
    return time


# ---- from orders to the models' summary -----------------------------------------------------------
def daily_transactions(frame: pd.DataFrame) -> pd.DataFrame:
    """One transaction per customer and day: columns customer, day (Timestamp), amount (summed)."""
    days = frame.assign(day=frame["time"].dt.normalize())
    return days.groupby(["customer", "day"], sort=True, as_index=False)["amount"].sum()


def build_cohort(log: TransactionLog, calibration_end: pd.Timestamp | None = None) -> Cohort:
    """Summarize the log's calibration period and measure its held-out period."""
    daily = daily_transactions(log.frame)
    start = daily["day"].min()
    log_end = daily["day"].max()
    end = log_end if calibration_end is None else pd.Timestamp(calibration_end).normalize()
    if end < start or end > log_end:
        raise CalibrationError(
            f"--calibration-end {end.date()} lies outside the log ({start.date()} to {log_end.date()}); "
            "choose a date inside it"
        )
    first = daily.groupby("customer")["day"].transform("min")
    in_cohort = first <= end
    late = int(daily.loc[~in_cohort, "customer"].nunique())
    daily, first = daily[in_cohort], first[in_cohort]
    repeat = daily["day"] > first
    calib = daily["day"] <= end

    customers = pd.Index(np.sort(daily["customer"].unique()))
    first_day = daily.groupby("customer")["day"].min().reindex(customers)
    cal_repeat = daily[repeat & calib]
    grouped = cal_repeat.groupby("customer")
    x = grouped.size().reindex(customers, fill_value=0).to_numpy(dtype=np.float64)
    last = grouped["day"].max().reindex(customers)
    zbar = grouped["amount"].mean().reindex(customers).to_numpy(dtype=np.float64)
    t_x = ((last - first_day).dt.days.fillna(0.0)).to_numpy(dtype=np.float64) / DAYS_PER_WEEK
    age = (end - first_day).dt.days.to_numpy(dtype=np.float64) / DAYS_PER_WEEK
    holdout = daily[repeat & ~calib].groupby("customer").size().reindex(customers, fill_value=0)

    day_index = (daily["day"] - start).dt.days.to_numpy()
    total_weeks = int(day_index.max()) // DAYS_PER_WEEK + 1
    weekly = np.bincount(day_index[repeat.to_numpy()] // DAYS_PER_WEEK, minlength=total_weeks)
    first_days = (first_day - start).dt.days.to_numpy(dtype=np.float64)
    acquisitions = np.bincount((first_days // DAYS_PER_WEEK).astype(np.int64), minlength=total_weeks)
    weekday = np.bincount(daily["day"].dt.day_of_week.to_numpy(), minlength=7).astype(np.float64)

    times = log.frame["time"]
    seconds = (times - times.dt.normalize()).dt.total_seconds().to_numpy()
    hour_weights: tuple[float, ...] | None = None
    if np.any(seconds > 0):
        hours = np.bincount((seconds // 3600).astype(np.int64), minlength=24)[:24].astype(np.float64)
        hour_weights = tuple(float(v) for v in np.round(24.0 * hours / hours.sum(), 4))

    summary = RepeatSummary(
        frequency=x,
        recency_weeks=t_x,
        age_weeks=age,
        mean_repeat_value=zbar,
    )
    if not np.any(x > 0):
        raise CalibrationError(
            f"no customer bought again before {end.date()}; repeat purchasing cannot be fitted. "
            "Use a later --calibration-end or a longer log"
        )
    return Cohort(
        start=start,
        calibration_end=end,
        log_end=log_end,
        customer_ids=tuple(str(c) for c in customers),
        summary=summary,
        first_purchase_day=first_days,
        holdout_repeats=holdout.to_numpy(dtype=np.float64),
        weekly_repeats=weekly.astype(np.float64),
        calibration_weeks=(end - start).days / DAYS_PER_WEEK,
        total_weeks=total_weeks,
        weekday_share=weekday / weekday.sum(),
        hour_weights=hour_weights,
        acquisitions_per_week=acquisitions.astype(np.float64),
        late_first_purchases=late,
    )


# ---- the scenario ----------------------------------------------------------------------------------
def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *heads, last = dotted.split(".")
    for key in heads:
        node = node.setdefault(key, {})
    node[last] = value


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _pair_within(x: float, y: float, cap: float) -> tuple[float, float]:
    """``(x, y)`` scaled down together until both are at most ``cap``: their ratio is kept."""
    k = max(x, y) / cap
    return (x / k, y / k) if k > 1.0 else (x, y)


def bounded_parameters(
    pareto_nbd: ModelFit, bgnbd: ModelFit, gamma_gamma: ModelFit
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Fitted parameters within the scenario's bounds, keeping what the log identifies; and notes.

    A log that does not identify a model (one customer, no heterogeneity) sends a shape and its
    scale to infinity together; their ratio, the mean rate or mean order value, stays identified.
    Such pairs are scaled down together to :data:`sim.params.MAX_VALUE`, keeping that mean.
    """
    cap = MAX_VALUE
    fitted = {
        "pareto_nbd": pareto_nbd.as_dict(),
        "bgnbd": bgnbd.as_dict(),
        "gamma_gamma": gamma_gamma.as_dict(),
    }
    out = {model: dict(values) for model, values in fitted.items()}
    for model, pairs in (
        ("pareto_nbd", (("r", "alpha"), ("s", "beta"))),
        ("bgnbd", (("r", "alpha"), ("a", "b"))),
    ):
        for x, y in pairs:
            out[model][x], out[model][y] = _pair_within(out[model][x], out[model][y], cap)
    spend = out["gamma_gamma"]
    if max(spend.values()) > cap:
        mean = spend["p"] * spend["gamma"] / (spend["q"] - 1.0)  # the mean order value (q > 1 checked)
        p = min(spend["p"], cap)
        q_less_1, gamma = _pair_within(spend["q"] - 1.0, mean * (spend["q"] - 1.0) / p, cap - 1.0)
        spend.update(p=p, q=1.0 + q_less_1, gamma=gamma)
    notes = []
    for model, values in out.items():
        changed = [
            f"{k} {fitted[model][k]:.4g} -> {v:.4g}" for k, v in values.items() if v != fitted[model][k]
        ]
        if changed:
            notes.append(
                f"{model} parameters run past the scenario's bound of {cap:g}: the log does not identify "
                f"this model (too few customers, or no heterogeneity in it); written scaled into bounds, "
                f"keeping the fitted mean ({', '.join(changed)})"
            )
    return out, notes


def scenario_mapping(
    base: dict[str, Any],
    cohort: Cohort,
    pareto_nbd: ModelFit,
    bgnbd: ModelFit,
    gamma_gamma: ModelFit,
    attrition: Attrition,
    name: str,
    log_hash: str = "n/a",
) -> dict[str, Any]:
    """The calibrated scenario as a mapping: the base scenario with the fitted population."""
    data = json.loads(json.dumps(base))
    data["name"] = name
    data["description"] = (
        f"Calibrated by shopgym calibrate on a transaction log (sha256 {log_hash}): "
        f"{cohort.customers} customers, calibration {cohort.start.date()} to {cohort.calibration_end.date()}."
    )
    population = data.setdefault("population", {})
    population["shoppers"] = cohort.customers
    population["acquisition_days"] = _round(cohort.acquisition_days)
    population["first_order_at_acquisition"] = True
    population["attrition"] = attrition
    fitted, _ = bounded_parameters(pareto_nbd, bgnbd, gamma_gamma)
    if attrition == "pareto_nbd":
        pnbd = fitted["pareto_nbd"]
        population["purchase"] = {"r": _round(pnbd["r"]), "alpha_weeks": _round(pnbd["alpha"])}
        population["lifetime"] = {"s": _round(pnbd["s"]), "beta_weeks": _round(pnbd["beta"])}
    else:
        bg = fitted["bgnbd"]
        population.pop("lifetime", None)
        population["purchase"] = {
            "r": _round(bg["r"]),
            "alpha_weeks": _round(bg["alpha"]),
            "a": _round(bg["a"]),
            "b": _round(bg["b"]),
        }
    population["spend"] = {k: _round(v) for k, v in fitted["gamma_gamma"].items()}
    sessions = data.setdefault("sessions", {})
    sessions["peaks"] = []  # the log's own seasonality is in the fitted rates, not added on top
    if cohort.hour_weights is not None:
        sessions["hour_weights"] = list(cohort.hour_weights)
    for key in TRANSACTION_NEUTRAL_KEYS:
        _set(data, key, NEUTRAL_MECHANISMS[key])
    return data


def _fit_line(fit: ModelFit) -> str:
    parts = [
        f"{n}={v:.4g} (SE {se:.2g})"
        for n, v, se in zip(fit.names, fit.values, fit.standard_errors, strict=True)
    ]
    return f"{', '.join(parts)}; log-likelihood {fit.log_likelihood:.2f} on {fit.customers} customers"


def scenario_text(data: dict[str, Any], calibration: dict[str, Any]) -> str:
    """YAML of ``data`` with a header saying where every fitted number came from."""
    c = calibration
    header = [
        f"# Calibrated by `shopgym calibrate` from {c['log']} (sha256 {c['log_hash']}).",
        f"# Calibration period {c['start']} to {c['calibration_end']} ({c['calibration_weeks']:.2f} weeks); "
        f"log ends {c['log_end']}.",
        f"# Cohort: {c['customers']} customers with a first purchase in the calibration period; "
        "one transaction per customer-day (Fader, Hardie & Lee 2005).",
        f"# Written attrition model: {c['attrition']}. "
        "Fits (maximum likelihood, SE from the inverse Hessian):",
        f"#   Pareto/NBD  {c['pareto_nbd']}",
        f"#   BG/NBD      {c['bgnbd']}",
        f"#   Gamma-Gamma {c['gamma_gamma']}",
        f"# Acquisition: first purchases over {c['acquisition_days']:g} days, written as uniform "
        "(population.acquisition_days); weekly counts in the calibration report.",
        f"# Weekly pattern (share of transactions Mon..Sun): {c['weekday_share']}; the scenario has no "
        "weekday field, so it is documented here and in the report only.",
        "# Mechanisms that move purchases without any incentive are set neutral (the log already",
        "# contains their effect): "
        + ", ".join(k.removeprefix("mechanisms.") for k in TRANSACTION_NEUTRAL_KEYS),
        "# Incentive responses are NOT identified by a transaction log; they keep the base scenario's",
        "# values. Calibrate them from an A/B test (docs/CALIBRATION.md).",
        "",
    ]
    wrapped = [
        textwrap.fill(line, width=100, subsequent_indent="#     ") if len(line) > 100 else line
        for line in header
    ]
    return "\n".join(wrapped) + yaml.safe_dump(data, sort_keys=False, width=100)


def calibrate(
    log: TransactionLog,
    calibration_end: pd.Timestamp | None = None,
    base: str | Path = "default",
    attrition: Attrition = "pareto_nbd",
    name: str = "calibrated",
    log_name: str = "<log>",
) -> Calibration:
    """Fit every model on the log's calibration period and build a validated scenario (no writes)."""
    cohort = build_cohort(log, calibration_end)
    pnbd = fit_pareto_nbd(cohort.summary)
    bg = fit_bgnbd(cohort.summary)
    try:
        gg = fit_gamma_gamma(cohort.summary)
    except ValueError as problem:
        raise CalibrationError(f"{problem}; check the amount column") from None
    if gg.param("q") <= 1.0:
        raise CalibrationError(
            f"Gamma-Gamma q = {gg.param('q'):.3f} <= 1: mean order value undefined for this log; "
            "check the amount column (units, refunds)"
        )
    for fit in (pnbd, bg, gg):
        if not fit.converged:
            warnings.warn(
                f"{fit.model} fit did not converge to an interior maximum ({_fit_line(fit)}): the log does "
                "not identify this model (too few customers, or no heterogeneity or attrition in it); "
                "treat its parameters with care",
                CalibrationWarning,
                stacklevel=2,
            )
    for note in bounded_parameters(pnbd, bg, gg)[1]:
        warnings.warn(note, CalibrationWarning, stacklevel=2)
    base_data = read_yaml_mapping(scenario_path(base), "base scenario", CalibrationError)
    data = scenario_mapping(base_data, cohort, pnbd, bg, gg, attrition, name, log.source_hash or "n/a")
    scenario = scenario_from_dict(data, source="calibrated scenario")
    info = {
        "log": log_name,
        "log_hash": log.source_hash or "n/a",
        "start": str(cohort.start.date()),
        "calibration_end": str(cohort.calibration_end.date()),
        "log_end": str(cohort.log_end.date()),
        "calibration_weeks": cohort.calibration_weeks,
        "customers": cohort.customers,
        "attrition": attrition,
        "pareto_nbd": _fit_line(pnbd),
        "bgnbd": _fit_line(bg),
        "gamma_gamma": _fit_line(gg),
        "acquisition_days": _round(cohort.acquisition_days),
        "weekday_share": [round(float(v), 3) for v in cohort.weekday_share],
    }
    text = scenario_text(data, info)
    reparsed = scenario_from_dict(yaml.safe_load(text), source="calibrated scenario text")
    if reparsed != scenario:
        raise RuntimeError("the written scenario text does not reproduce the calibrated scenario")
    return Calibration(
        log=log,
        cohort=cohort,
        pareto_nbd=pnbd,
        bgnbd=bg,
        gamma_gamma=gg,
        attrition=attrition,
        scenario=scenario,
        scenario_text=text,
    )


def cdnow_transactions() -> pd.DataFrame:
    """The CDNOW cohort's orders (2,357 customers, Jan 1997 to Jun 1998) from the ``lifetimes`` package.

    Columns ``customer_id``, ``timestamp`` (ISO date) and ``amount`` (dollars). The data are read
    from the installed peer library (``pip install lifetimes``), not shipped with shopgym.
    """
    try:
        import lifetimes
    except ImportError:
        raise CalibrationError(
            "the CDNOW example needs the lifetimes package: pip install lifetimes"
        ) from None
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, names=["master_id", "customer_id", "date", "cds", "amount"]
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype(str),
            "timestamp": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d").dt.strftime("%Y-%m-%d"),
            "amount": raw["amount"].astype(np.float64),
        }
    )


# ---- simulating the calibrated shop ------------------------------------------------------------------
def simulated_transactions(scenario: Scenario, seed: int, days: int, start: pd.Timestamp) -> pd.DataFrame:
    """Orders of one no-incentive simulation as a transaction log (customer, time, amount)."""
    from sim.engine import Simulation

    sim = Simulation(scenario, seed=seed, horizon_days=days, log_level="events").run()
    events = sim.log.to_frame()
    orders = events[events["event"] == "order"]
    return pd.DataFrame(
        {
            "customer": orders["shopper_id"].astype(str).to_numpy(),
            "time": start + pd.to_timedelta(orders["time_hours"].to_numpy(), unit="h"),
            "amount": orders["amount"].fillna(0.0).to_numpy(),
        }
    )


def _mape(predicted: F64, actual: F64) -> float:
    keep = actual > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(predicted[keep] - actual[keep]) / actual[keep]))


def _relative_error(forecast: float, actual: float) -> float:
    return abs(forecast - actual) / actual if actual > 0 else float("nan")


def check_holdout(
    calibration: Calibration,
    seeds: Sequence[int],
    max_bin: int = 7,
    on_seed: Callable[[], None] | None = None,
) -> HoldoutCheck:
    """Simulate the calibrated scenario on each seed and compare with the log and the Pareto/NBD.

    ``on_seed`` is called after each seed's simulation (a progress bar's advance).
    """
    cohort = calibration.cohort
    if not seeds:
        raise CalibrationError("--seeds must be >= 1 to simulate the calibrated scenario")
    days = (cohort.log_end - cohort.start).days + 1  # the log's span; its last week may be partial
    weeks = cohort.total_weeks
    end_day = (cohort.calibration_end - cohort.start).days
    first_holdout_week = math.ceil((end_day + 1) / DAYS_PER_WEEK)  # weeks wholly after calibration
    weekly = np.zeros((len(seeds), weeks))
    sim_totals = np.zeros(len(seeds))
    counts = np.zeros((len(seeds), max_bin + 1))
    for i, seed in enumerate(seeds):
        frame = simulated_transactions(calibration.scenario, seed, days, cohort.start)
        daily = daily_transactions(frame)
        first = daily.groupby("customer")["day"].transform("min")
        repeat = (daily["day"] > first).to_numpy()
        index = (daily["day"] - cohort.start).dt.days.to_numpy()
        weekly[i] = np.bincount(index[repeat] // DAYS_PER_WEEK, minlength=weeks)[:weeks]
        in_calib = repeat & (daily["day"] <= cohort.calibration_end).to_numpy()
        sim_totals[i] = np.count_nonzero(repeat & ~in_calib)
        x = daily[in_calib].groupby("customer").size()
        acquired = int(np.count_nonzero(first.groupby(daily["customer"]).first() <= cohort.calibration_end))
        per_customer = np.concatenate([x.to_numpy(), np.zeros(max(acquired - x.size, 0))])
        counts[i] = np.bincount(np.minimum(per_customer, max_bin).astype(np.int64), minlength=max_bin + 1)
        if on_seed is not None:
            on_seed()
    pnbd_weekly = cohort_weekly_expected(
        lambda t: pareto_nbd_expected_repeats(calibration.pareto_nbd, t),
        cohort.first_purchase_day / DAYS_PER_WEEK,
        weeks,
    )
    bg_weekly = cohort_weekly_expected(
        lambda t: bgnbd_expected_repeats(calibration.bgnbd, t),
        cohort.first_purchase_day / DAYS_PER_WEEK,
        weeks,
    )
    hold = slice(first_holdout_week, weeks)
    horizon = cohort.holdout_weeks
    pnbd_total = float(pareto_nbd_conditional_expected(calibration.pareto_nbd, cohort.summary, horizon).sum())
    bg_total = float(bgnbd_conditional_expected(calibration.bgnbd, cohort.summary, horizon).sum())
    actual = cohort.weekly_repeats
    return HoldoutCheck(
        seeds=tuple(int(s) for s in seeds),
        simulated_weekly=weekly,
        simulated_calibration_counts=counts,
        actual_holdout_total=float(cohort.holdout_repeats.sum()),
        simulated_holdout_total=float(sim_totals.mean()),
        simulated_holdout_sd=float(sim_totals.std(ddof=1)) if len(seeds) > 1 else float("nan"),
        pareto_nbd_holdout_total=pnbd_total,
        bgnbd_holdout_total=bg_total,
        simulated_weekly_mape=_mape(weekly.mean(axis=0)[hold], actual[hold]),
        pareto_nbd_weekly_mape=_mape(pnbd_weekly[hold], actual[hold]),
        extra={
            "pareto_nbd_tracking_holdout_total": float(pnbd_weekly[hold].sum()),
            "bgnbd_tracking_holdout_total": float(bg_weekly[hold].sum()),
            "simulated_weekly_mape_all_weeks": _mape(weekly.mean(axis=0), actual),
            "pareto_nbd_weekly_mape_all_weeks": _mape(pnbd_weekly, actual),
        },
    )


def funnel_shortfall(scenario: Scenario, seed: int = 0) -> float:
    """Share of the fitted purchase rate the scenario's session funnel cannot deliver.

    The simulator reaches a shopper's purchase rate through at most one cart a day; shoppers who
    need more are capped (``sim.population.calibrate_session_rates``). A high shipping fee or a
    low checkout conversion in the base scenario makes heavy buyers hit the cap.
    """
    from sim.population import sample_population

    streams = np.random.SeedSequence(seed).spawn(2)
    pop = sample_population(scenario, np.random.default_rng(streams[0]), np.random.default_rng(streams[1]))
    visit = np.minimum(pop.visit_prob, 1.0 - 1e-12)
    wanted_carts = -np.log1p(-visit) * scenario.sessions.add_to_cart_rate
    delivered = np.where(wanted_carts > 0, visit * pop.cart_prob / np.maximum(wanted_carts, 1e-300), 1.0)
    rate = pop.purchase_rate_per_day
    return float(np.sum(rate * np.clip(1.0 - delivered, 0.0, 1.0)) / max(np.sum(rate), 1e-300))


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


def render_plots(calibration: Calibration, check: HoldoutCheck | None) -> dict[str, bytes]:
    """PNG bytes of the tracking, repeat-count and conditional-expectation figures."""
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
    return plots


def report_data(
    calibration: Calibration, check: HoldoutCheck | None, shortfall: float, peer: dict[str, Any] | None = None
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
            f"{h['simulated_mean']:.1f} | {100 * h['simulated_relative_error']:.1f}% |",
            f"| Pareto/NBD conditional expectation (per-customer histories) | "
            f"{h['pareto_nbd_conditional_forecast']:.1f} | {100 * h['pareto_nbd_relative_error']:.1f}% |",
            f"| Pareto/NBD cohort tracking expectation | {h['pareto_nbd_tracking_holdout_total']:.1f} | "
            f"{100 * abs(h['pareto_nbd_tracking_holdout_total'] / h['actual_repeat_transactions'] - 1):.1f}"
            "% |",
            f"| BG/NBD conditional expectation | {h['bgnbd_conditional_forecast']:.1f} | "
            f"{100 * abs(h['bgnbd_conditional_forecast'] / h['actual_repeat_transactions'] - 1):.1f}% |",
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


def _atomic_write_bytes(content: bytes, path: Path) -> None:
    """Write ``content`` through a temporary file in ``path``'s folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(
    out: Path, report_dir: Path, calibration: Calibration, data: dict[str, Any], plots: dict[str, bytes]
) -> list[Path]:
    """Write the scenario and the report, each file atomically; returns the paths written."""
    written = []
    for name, content in plots.items():
        _atomic_write_bytes(content, report_dir / name)
        written.append(report_dir / name)
    atomic_write_json(_finite_or_none(data), report_dir / "calibration.json")
    atomic_write_text(report_markdown(data, list(plots)), report_dir / "report.md")
    written += [report_dir / "calibration.json", report_dir / "report.md"]
    atomic_write_text(calibration.scenario_text, out)  # last: the scenario exists only with its report
    written.append(out)
    return written


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
    parser.set_defaults(func=run_calibrate)


def _date_option(option: str, value: str) -> pd.Timestamp:
    """A date given on the command line (its local day, whatever offset it carries)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise CalibrationError(f"{option} {_shown(value)} is not a date; write it as YYYY-MM-DD")
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
            bars.update(task, completed=2 + args.seeds, description="writing the report")
            data = report_data(calibration, check, shortfall)
            plots = render_plots(calibration, check)
            bars.advance(task)
    except (CalibrationError, ScenarioError) as error:
        print(f"shopgym calibrate: {error}\nnothing was written", file=sys.stderr)
        return 2
    out = Path(args.out)
    report_dir = Path(args.report) if args.report else out.with_name(f"{out.stem}_report")
    write_outputs(out, report_dir, calibration, data, plots)
    print(report_markdown(data, list(plots)).split("## Figures")[0])
    print(f"wrote {out} and {report_dir}/ (report.md, calibration.json, {', '.join(plots)})", file=sys.stderr)
    return 0
