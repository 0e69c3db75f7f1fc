"""From a checked log to the customer-base models' summary: one transaction per customer-day."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.calibrate.common import (
    DAYS_PER_WEEK,
    F64,
    CalibrationError,
)
from experiments.calibrate.log import TransactionLog
from experiments.clv_fit import (
    RepeatSummary,
)


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
    calibration_spend: F64  # per customer, dollars: every calibration transaction, the first included
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
    spend = daily[calib].groupby("customer")["amount"].sum().reindex(customers, fill_value=0.0)
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
        calibration_spend=spend.to_numpy(dtype=np.float64),
        weekly_repeats=weekly.astype(np.float64),
        calibration_weeks=(end - start).days / DAYS_PER_WEEK,
        total_weeks=total_weeks,
        weekday_share=weekday / weekday.sum(),
        hour_weights=hour_weights,
        acquisitions_per_week=acquisitions.astype(np.float64),
        late_first_purchases=late,
    )
