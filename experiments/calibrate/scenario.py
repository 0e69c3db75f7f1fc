"""Fitting the models on the cohort and writing the calibrated scenario (nothing on disk yet)."""

from __future__ import annotations

import json
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from experiments.calibrate.cohort import Cohort, build_cohort
from experiments.calibrate.common import (
    Attrition,
    CalibrationError,
    CalibrationWarning,
)
from experiments.calibrate.log import TransactionLog
from experiments.clv_fit import (
    ModelFit,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
)
from sim.params import MAX_VALUE, NEUTRAL_MECHANISMS, Scenario, read_yaml_mapping, scenario_from_dict
from sim.scenarios import scenario_path

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
