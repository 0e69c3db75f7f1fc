"""The holdout check: the calibrated shop simulated on several seeds against the held-out log."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.calibrate.cohort import daily_transactions
from experiments.calibrate.common import (
    DAYS_PER_WEEK,
    F64,
    CalibrationError,
)
from experiments.calibrate.scenario import Calibration
from experiments.clv_fit import (
    bgnbd_conditional_expected,
    bgnbd_expected_repeats,
    cohort_weekly_expected,
    pareto_nbd_conditional_expected,
    pareto_nbd_expected_repeats,
)
from sim.params import Scenario


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
        """Signed relative error of the simulated holdout total (negative: too few)."""
        return _relative_error(self.simulated_holdout_total, self.actual_holdout_total)

    @property
    def pareto_nbd_error(self) -> float:
        """Signed relative error of the Pareto/NBD holdout forecast (negative: too few)."""
        return _relative_error(self.pareto_nbd_holdout_total, self.actual_holdout_total)


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
    """Signed: negative when the forecast falls short of the actual count."""
    return (forecast - actual) / actual if actual > 0 else float("nan")


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
