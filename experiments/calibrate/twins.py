"""Twins: every real customer of the cohort as a shopper drawn from her own posterior.

``shopgym calibrate LOG --twins twins.parquet`` writes one row per customer of the calibration
cohort: her history (repeat transactions, recency, age, spend) and her posterior at the end of
calibration under the written attrition model (:mod:`sim.twins` says what the simulator draws
from it), and beside it a scenario whose ``population.twins`` names the file. The holdout check
here simulates the twins over the held-out period (several draws per seed) and compares each
customer's mean simulated transactions with what she did, beside the conditional expectation
``E[Y(t) | x, t_x, T]`` the simulation converges to (Fader, Hardie & Lee 2005, Figure 5; their
per-customer figures).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from experiments.calibrate.common import DAYS_PER_WEEK, F64, CalibrationError
from experiments.calibrate.scenario import Calibration, bounded_parameters
from experiments.clv_fit import (
    ModelFit,
    bgnbd_conditional_expected,
    bgnbd_p_alive,
    gamma_gamma_expected_value,
    pareto_nbd_conditional_expected,
    pareto_nbd_p_alive,
)
from sim.params import Scenario, scenario_from_dict
from sim.twins import TwinsPrior, write_twins

#: Environment variable holding the key of ``--pseudonymize``'s keyed hash (HMAC-SHA256). With
#: the key a shop re-hashes its own ids to join results back; without it a random key is used and
#: discarded, so nobody (the shop included) can map a pseudonym back to a customer.
PSEUDONYM_KEY_ENV = "SHOPGYM_PSEUDONYM_KEY"
#: Hex digits kept of a pseudonym (64 bits: no collision expected below ~10^9 customers).
PSEUDONYM_HEX = 16
#: Customers per progress step when building the twins (the bar advances this often).
BUILD_CHUNK = 20_000
#: Twins of each customer per seed in the holdout check (``--twin-draws``). A customer's mean
#: over ``seeds x draws`` futures carries Monte-Carlo noise that raises its absolute error and
#: lowers its correlation; on CDNOW the per-customer figures settle within 0.002 after about 400
#: draws in all, which the default's 5 seeds x 80 reach in one engine run per seed.
TWIN_DRAWS = 80
#: Most draws per customer and seed asked for (``--twin-draws``).
MAX_TWIN_DRAWS = 1000
#: Most twins in one check run: a large cohort gets fewer draws per seed (the report says how many).
MAX_CHECK_SHOPPERS = 400_000
#: Separates a customer's id from her draw's index in the check's replicated twins file.
DRAW_SEPARATOR = "#"


def pseudonymize(ids: Sequence[str], key: bytes) -> list[str]:
    """HMAC-SHA256 of each id under ``key``, cut to :data:`PSEUDONYM_HEX` hex digits."""
    return [hmac.new(key, i.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX] for i in ids]


def pseudonym_key() -> bytes:
    """The key from :data:`PSEUDONYM_KEY_ENV`, or 32 random bytes nobody keeps."""
    given = os.environ.get(PSEUDONYM_KEY_ENV)
    return given.encode() if given else os.urandom(32)


def twins_prior(calibration: Calibration) -> TwinsPrior:
    """The written scenario's population (fits within its bounds) as the twins' prior."""
    fitted, _ = bounded_parameters(calibration.pareto_nbd, calibration.bgnbd, calibration.gamma_gamma)
    pnbd, bg, gg = fitted["pareto_nbd"], fitted["bgnbd"], fitted["gamma_gamma"]
    nan = float("nan")
    pareto = calibration.attrition == "pareto_nbd"
    return TwinsPrior(
        attrition=calibration.attrition,
        r=pnbd["r"] if pareto else bg["r"],
        alpha_weeks=pnbd["alpha"] if pareto else bg["alpha"],
        s=pnbd["s"] if pareto else nan,
        beta_weeks=pnbd["beta"] if pareto else nan,
        a=nan if pareto else bg["a"],
        b=nan if pareto else bg["b"],
        p=gg["p"],
        q=gg["q"],
        gamma=gg["gamma"],
        calibration_end=str(calibration.cohort.calibration_end.date()),
    )


def _prior_fit(prior: TwinsPrior) -> ModelFit:
    """The prior's transaction model as a :class:`ModelFit` for the closed-form posteriors."""
    if prior.attrition == "pareto_nbd":
        names, values = ("r", "alpha", "s", "beta"), (prior.r, prior.alpha_weeks, prior.s, prior.beta_weeks)
    else:
        names, values = ("r", "alpha", "a", "b"), (prior.r, prior.alpha_weeks, prior.a, prior.b)
    return ModelFit(prior.attrition, names, values, (0.0,) * len(names), 0.0, 0, True)


def twins_frame(
    calibration: Calibration,
    pseudonym: bytes | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, TwinsPrior]:
    """One row per cohort customer (:data:`sim.twins.TWINS_COLUMNS`) and the prior they update.

    ``pseudonym``: a key to hash the ids with (``--pseudonymize``); ``on_chunk(customers)`` is
    called after each :data:`BUILD_CHUNK` customers (a progress bar's advance).
    """
    cohort = calibration.cohort
    summary = cohort.summary
    prior = twins_prior(calibration)
    fit = _prior_fit(prior)
    spend_fit = ModelFit(
        "gamma_gamma", ("p", "q", "gamma"), (prior.p, prior.q, prior.gamma), (0.0,) * 3, 0, 0, True
    )
    x = summary.frequency
    parts = []
    for lo in range(0, x.size, BUILD_CHUNK):
        part = slice(lo, min(lo + BUILD_CHUNK, x.size))
        piece = type(summary)(
            frequency=x[part],
            recency_weeks=summary.recency_weeks[part],
            age_weeks=summary.age_weeks[part],
            mean_repeat_value=summary.mean_repeat_value[part],
        )
        alive = (
            pareto_nbd_p_alive(fit, piece) if prior.attrition == "pareto_nbd" else bgnbd_p_alive(fit, piece)
        )
        ids = list(cohort.customer_ids[part])
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids if pseudonym is None else pseudonymize(ids, pseudonym),
                    "repeats": piece.frequency.astype(np.int64),
                    "recency_weeks": piece.recency_weeks,
                    "age_weeks": piece.age_weeks,
                    "mean_spend": np.where(piece.frequency > 0, np.nan_to_num(piece.mean_repeat_value), 0.0),
                    "total_spend": cohort.calibration_spend[part],
                    "p_alive": alive,
                    "rate_per_week_if_alive": (prior.r + piece.frequency)
                    / (prior.alpha_weeks + piece.age_weeks),
                    "order_value": gamma_gamma_expected_value(spend_fit, piece),
                }
            )
        )
        if on_chunk is not None:
            on_chunk(part.stop - part.start)
    return pd.concat(parts, ignore_index=True), prior


def twins_scenario_mapping(calibration: Calibration, twins_path: str, customers: int) -> dict[str, object]:
    """The calibrated scenario with ``population.twins`` naming ``twins_path``."""
    data = yaml.safe_load(calibration.scenario_text)
    data["name"] = f"{data['name']}_twins"
    data["description"] = (
        f"{data['description']} Its {customers} customers as twins (population.twins), from the end "
        "of calibration on."
    )
    data["population"]["shoppers"] = customers
    data["population"]["twins"] = twins_path
    return data


def write_twins_outputs(
    calibration: Calibration, frame: pd.DataFrame, prior: TwinsPrior, twins_path: Path
) -> tuple[Path, Scenario]:
    """Write the twins file and, beside it, its scenario (``<stem>.yaml``); returns the scenario."""
    write_twins(frame, prior, twins_path)
    data = twins_scenario_mapping(calibration, str(twins_path), len(frame))
    scenario = scenario_from_dict(data, source="twins scenario")  # reads and checks the file just written
    scenario_path = twins_path.with_suffix(".yaml")
    header = (
        f"# The {len(frame)} customers of the calibrated cohort as twins ({twins_path.name}), each drawn\n"
        "# from her own posterior at the end of calibration; time 0 is the first day after it.\n"
        "# Written by `shopgym calibrate --twins`; see docs/CALIBRATION.md.\n"
    )
    from sim.io import atomic_write_text

    atomic_write_text(header + yaml.safe_dump(data, sort_keys=False, width=100), scenario_path)
    return scenario_path, scenario


# ---- the per-customer holdout check -----------------------------------------------------------------
@dataclass(frozen=True)
class TwinsCheck:
    """Each customer's mean simulated holdout transactions against hers and the closed form."""

    seeds: tuple[int, ...]
    draws: int  # twins of each customer per seed's run
    simulated: F64  # (seeds x draws) x customers (cohort order): repeat transactions in the holdout
    actual: F64  # customers
    conditional: F64  # customers: E[Y(t) | x, t_x, T] of the twins' prior model
    pareto_nbd_conditional: F64  # customers: the Pareto/NBD fit's, the benchmark
    frequency: F64  # customers: calibration repeats x

    @property
    def simulated_mean(self) -> F64:
        """Mean over all draws (seeds x draws) of each customer's simulated holdout transactions."""
        return np.asarray(self.simulated.mean(axis=0), dtype=np.float64)

    def figures(self) -> dict[str, float]:
        """MAE and Pearson r against the actual counts, and cohort totals, of both forecasts."""
        sim, actual, closed = self.simulated_mean, self.actual, self.pareto_nbd_conditional
        totals = self.simulated.sum(axis=1)
        return {
            "customers": float(actual.size),
            "seeds": float(len(self.seeds)),
            "draws": float(self.simulated.shape[0]),
            "simulated_mae": float(np.mean(np.abs(sim - actual))),
            "simulated_pearson_r": float(np.corrcoef(sim, actual)[0, 1]),
            "pareto_nbd_mae": float(np.mean(np.abs(closed - actual))),
            "pareto_nbd_pearson_r": float(np.corrcoef(closed, actual)[0, 1]),
            "actual_total": float(actual.sum()),
            "simulated_total": float(totals.mean()),
            "simulated_total_sd_across_draws": float(totals.std(ddof=1)) if totals.size > 1 else float("nan"),
            "twins_conditional_total": float(self.conditional.sum()),
            "pareto_nbd_conditional_total": float(closed.sum()),
        }

    def by_frequency(self, max_bin: int = 7) -> pd.DataFrame:
        """Mean holdout transactions by calibration repeats 0..max_bin+ (FHL 2005, Figure 5).

        Errors keep their sign: ``simulated - actual`` and ``pareto_nbd - actual``.
        """
        frame = pd.DataFrame(
            {
                "x": np.minimum(self.frequency, max_bin).astype(np.int64),
                "actual": self.actual,
                "simulated": self.simulated_mean,
                "pareto_nbd": self.pareto_nbd_conditional,
            }
        )
        table = frame.groupby("x").agg(
            customers=("actual", "size"),
            actual=("actual", "mean"),
            simulated=("simulated", "mean"),
            pareto_nbd=("pareto_nbd", "mean"),
        )
        table["simulated_error"] = table["simulated"] - table["actual"]
        table["pareto_nbd_error"] = table["pareto_nbd"] - table["actual"]
        table.index = [str(i) if i < max_bin else f"{max_bin}+" for i in table.index]
        return table


def simulated_holdout_counts(
    scenario: Scenario, seed: int, days: int, customers: pd.Index, draws: int = 1
) -> F64:
    """Each twin's simulated transactions (one per customer-day) over ``days``: ``(draws, customers)``.

    The scenario's twins file holds ``draws`` rows per customer, with ids ``<id>#<k>``
    (:func:`replicated_frame`); row ``k`` of the result is every customer's ``k``-th twin.
    """
    from sim.engine import Simulation

    sim = Simulation(scenario, seed=seed, horizon_days=days, log_level="events").run()
    assert sim.customer_ids is not None  # a twins scenario
    events = sim.log.to_frame()
    orders = events[events["event"] == "order"]
    shopper = orders["shopper_id"].to_numpy(dtype=np.int64)
    day = np.floor(orders["time_hours"].to_numpy() / 24.0).astype(np.int64)
    twins = shopper < sim.customer_ids.size  # referred newcomers are nobody's twin
    pairs = np.unique(shopper[twins] * (days + 1) + day[twins])
    counts = pd.Series(
        np.bincount(pairs // (days + 1), minlength=sim.customer_ids.size).astype(np.float64),
        index=sim.customer_ids,
    )
    return np.stack(
        [counts.reindex([f"{c}{DRAW_SEPARATOR}{k}" for c in customers]).to_numpy() for k in range(draws)]
    ).astype(np.float64)


def replicated_frame(frame: pd.DataFrame, draws: int) -> pd.DataFrame:
    """``draws`` copies of every twin, the ``k``-th with id ``<id>#<k>``: independent draws in one run.

    Twins share nothing but the warehouse and the carriers, whose capacity scales with the
    population (``*_per_1k_shoppers``), so ``draws`` copies in one run are ``draws`` independent
    draws of each customer's future, at the engine's large-population speed.
    """
    copies = []
    for k in range(draws):
        copy = frame.copy()
        copy["customer_id"] = frame["customer_id"].astype(str) + f"{DRAW_SEPARATOR}{k}"
        copies.append(copy)
    return pd.concat(copies, ignore_index=True)


def check_twins(
    calibration: Calibration,
    seeds: Sequence[int],
    on_seed: Callable[[], None] | None = None,
    horizon_days: int | None = None,
    draws: int = TWIN_DRAWS,
) -> TwinsCheck:
    """Simulate the cohort's twins over the held-out period, ``draws`` of each per seed (temp file).

    A run holds at most :data:`MAX_CHECK_SHOPPERS` twins, so a large cohort gets fewer draws
    per seed (``TwinsCheck.draws`` says how many).
    ``horizon_days`` shortens the simulated period (default: the whole holdout); the actual
    counts are then the whole holdout's, so only the conditional expectations compare.
    """
    if not 1 <= draws <= MAX_TWIN_DRAWS:
        raise CalibrationError(f"--twin-draws must be in [1, {MAX_TWIN_DRAWS}], got {draws}")
    cohort = calibration.cohort
    days = (cohort.log_end - cohort.calibration_end).days if horizon_days is None else horizon_days
    horizon = days / DAYS_PER_WEEK
    draws = max(1, min(draws, MAX_CHECK_SHOPPERS // max(cohort.customers, 1)))
    frame, prior = twins_frame(calibration)
    fit = _prior_fit(prior)
    conditional = (
        pareto_nbd_conditional_expected(fit, cohort.summary, horizon)
        if prior.attrition == "pareto_nbd"
        else bgnbd_conditional_expected(fit, cohort.summary, horizon)
    )
    customers = pd.Index(cohort.customer_ids)
    with tempfile.TemporaryDirectory(prefix="shopgym-twins-") as folder:
        path = Path(folder) / "twins.parquet"
        write_twins(replicated_frame(frame, draws), prior, path)
        scenario = scenario_from_dict(
            twins_scenario_mapping(calibration, str(path), len(frame) * draws), source="twins scenario"
        )
        simulated = np.zeros((len(seeds) * draws, customers.size))
        for i, seed in enumerate(seeds):
            simulated[i * draws : (i + 1) * draws] = simulated_holdout_counts(
                scenario, seed, days, customers, draws
            )
            if on_seed is not None:
                on_seed()
    return TwinsCheck(
        seeds=tuple(int(s) for s in seeds),
        draws=draws,
        simulated=simulated,
        actual=cohort.holdout_repeats,
        conditional=conditional,
        pareto_nbd_conditional=pareto_nbd_conditional_expected(
            calibration.pareto_nbd, cohort.summary, horizon
        ),
        frequency=cohort.summary.frequency,
    )
