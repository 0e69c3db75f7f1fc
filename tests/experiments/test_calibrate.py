"""shopgym calibrate on the real CDNOW cohort: published estimates, the lifetimes peer, the holdout.

The CDNOW data come from the ``lifetimes`` package (a dev dependency), not from this repository.
lifetimes' own Pareto/NBD optimizer starts from random values by default; here it starts from
fixed values with a tight tolerance, so the peer comparison is deterministic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.calibrate import (
    Calibration,
    CalibrationError,
    Cohort,
    LogColumns,
    build_cohort,
    calibrate,
    cdnow_transactions,
    check_holdout,
    read_transaction_log,
    validate_log,
)
from experiments.calibrate.twins import (
    PSEUDONYM_KEY_ENV,
    check_twins,
    pseudonym_key,
    pseudonymize,
    replicated_frame,
    twins_frame,
    write_twins_outputs,
)
from experiments.cli import main
from experiments.clv_fit import (
    PUBLISHED_CDNOW,
    ModelFit,
    RepeatSummary,
    bgnbd_conditional_expected,
    bgnbd_expected_repeats,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    pareto_nbd_conditional_expected,
    pareto_nbd_expected_repeats,
    pareto_nbd_log_likelihood,
)
from sim.params import load_scenario
from tests.conftest import CDNOW

lifetimes = pytest.importorskip("lifetimes", reason="the CDNOW cohort and the peer fits come from lifetimes")

CALIBRATION_END = pd.Timestamp("1997-09-30")
HOLDOUT_WEEKS = 39.0


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    cdnow_transactions().to_csv(path, index=False)
    return path


# CDNOW's 21 repeated rows are real orders: the source's CD-count column, left out of the log,
# tells them apart. The published data sum them, so these tests keep them.
@pytest.fixture(scope="module")
def calibration(cdnow_csv: Path) -> Calibration:
    return calibrate(read_transaction_log(cdnow_csv, duplicates="keep"), CALIBRATION_END, base=CDNOW)


@pytest.fixture(scope="module")
def cohort(calibration: Calibration) -> Cohort:
    return calibration.cohort


@pytest.fixture(scope="module")
def fits(calibration: Calibration) -> dict[str, ModelFit]:
    c = calibration
    return {"pareto_nbd": c.pareto_nbd, "bgnbd": c.bgnbd, "gamma_gamma": c.gamma_gamma}


def _peer_pareto_nbd(summary: RepeatSummary) -> lifetimes.ParetoNBDFitter:
    """lifetimes' Pareto/NBD from a fixed start with a tight tolerance (its default start is random)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lifetimes.ParetoNBDFitter().fit(
            summary.frequency,
            summary.recency_weeks,
            summary.age_weeks,
            initial_params=np.ones(4),
            tol=1e-10,
            maxiter=20000,
            maxfev=20000,
        )


@pytest.fixture(scope="module")
def peer(cohort: Cohort) -> dict[str, object]:
    s = cohort.summary
    repeat = s.frequency > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = lifetimes.BetaGeoFitter().fit(s.frequency, s.recency_weeks, s.age_weeks)
        gg = lifetimes.GammaGammaFitter().fit(s.frequency[repeat], s.mean_repeat_value[repeat])
    return {"pareto_nbd": _peer_pareto_nbd(s), "bgnbd": bg, "gamma_gamma": gg}


# ---- the summary ----------------------------------------------------------------------------------
def test_cdnow_summary_reproduces_the_published_calibration_data(cohort: Cohort):
    published = pd.read_csv(
        Path(lifetimes.__file__).parent / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    )
    s = cohort.summary
    assert cohort.customers == 2357
    assert s.frequency.sum() == published["x"].sum() == 2457
    order = np.argsort(np.array([int(c) for c in cohort.customer_ids]))
    assert np.array_equal(s.frequency[order], published["x"].to_numpy())
    assert np.allclose(s.recency_weeks[order], published["t_x"], atol=0.006)
    assert np.allclose(s.age_weeks[order], published["T"], atol=0.006)
    zbar = np.nan_to_num(s.mean_repeat_value[order])
    assert np.allclose(zbar, published["zbar"], atol=0.006)
    assert cohort.holdout_weeks == HOLDOUT_WEEKS
    assert cohort.total_weeks == 78


# ---- published estimates ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["pareto_nbd", "bgnbd", "gamma_gamma"])
def test_fit_matches_published_cdnow_estimates_within_one_percent(fits: dict[str, ModelFit], model: str):
    published = PUBLISHED_CDNOW[model]
    fit = fits[model]
    for name, value in fit.as_dict().items():
        assert value == pytest.approx(published[name], rel=0.01), name
    if "log_likelihood" in published:
        assert fit.log_likelihood == pytest.approx(published["log_likelihood"], abs=0.05)
    assert fit.converged
    assert all(np.isfinite(fit.standard_errors)) and all(se > 0 for se in fit.standard_errors)


def test_fits_are_deterministic(cdnow_csv: Path, fits: dict[str, ModelFit]):
    again = build_cohort(read_transaction_log(cdnow_csv, duplicates="keep"), CALIBRATION_END)
    assert fit_bgnbd(again.summary) == fits["bgnbd"]
    assert fit_gamma_gamma(again.summary) == fits["gamma_gamma"]


# ---- the peer library -------------------------------------------------------------------------------
def test_pareto_nbd_peer_fit_is_stable_from_different_starts(cohort: Cohort):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = lifetimes.ParetoNBDFitter().fit(
            cohort.summary.frequency,
            cohort.summary.recency_weeks,
            cohort.summary.age_weeks,
            initial_params=np.full(4, 0.5),
            tol=1e-10,
            maxiter=20000,
            maxfev=20000,
        )
    base = _peer_pareto_nbd(cohort.summary)
    assert np.allclose(other.params_.to_numpy(), base.params_.to_numpy(), rtol=1e-3)


@pytest.mark.parametrize("model", ["pareto_nbd", "bgnbd", "gamma_gamma"])
def test_fit_matches_lifetimes_within_one_percent(
    fits: dict[str, ModelFit], peer: dict[str, object], model: str
):
    theirs = peer[model].params_.to_numpy()  # type: ignore[attr-defined]
    ours = np.array(fits[model].values)
    assert np.allclose(ours, theirs, rtol=0.01), (ours, theirs)


def test_pareto_nbd_log_likelihood_matches_lifetimes_at_the_peer_optimum(cohort: Cohort, peer: dict):
    params = tuple(peer["pareto_nbd"].params_.to_numpy())
    s = cohort.summary
    theirs = lifetimes.ParetoNBDFitter._conditional_log_likelihood(
        params, s.frequency, s.recency_weeks, s.age_weeks
    )
    assert np.allclose(pareto_nbd_log_likelihood(params, s), theirs, rtol=1e-10, atol=1e-9)


def test_forecasts_match_lifetimes(cohort: Cohort, fits: dict[str, ModelFit], peer: dict):
    s, t = cohort.summary, np.array([1.0, 10.0, 39.0, 78.0])
    for model, conditional, unconditional in (
        ("pareto_nbd", pareto_nbd_conditional_expected, pareto_nbd_expected_repeats),
        ("bgnbd", bgnbd_conditional_expected, bgnbd_expected_repeats),
    ):
        fitter = peer[model]
        fitter.params_ = pd.Series(fits[model].values, index=fitter.params_.index)
        theirs = fitter.conditional_expected_number_of_purchases_up_to_time(
            HOLDOUT_WEEKS, s.frequency, s.recency_weeks, s.age_weeks
        )
        assert np.allclose(conditional(fits[model], s, HOLDOUT_WEEKS), theirs, rtol=1e-8)
        assert np.allclose(unconditional(fits[model], t), fitter.expected_number_of_purchases_up_to_time(t))


def test_pareto_nbd_fit_recovers_the_parameters_of_simulated_customers_within_two_standard_errors():
    rng = np.random.default_rng(7)
    n, truth = 4000, (0.6, 8.0, 0.8, 12.0)
    rate = rng.gamma(truth[0], 1 / truth[1], n)
    death = rng.exponential(1 / rng.gamma(truth[2], 1 / truth[3], n))
    age = rng.uniform(40.0, 52.0, n)
    alive_for = np.minimum(death, age)
    x = rng.poisson(rate * alive_for).astype(np.float64)
    # Given x events on [0, alive_for], the last one is alive_for * U^(1/x).
    t_x = np.where(x > 0, alive_for * rng.random(n) ** (1 / np.maximum(x, 1)), 0.0)
    fit = fit_pareto_nbd(RepeatSummary(x, t_x, age, np.full(n, np.nan)))
    for value, se, true in zip(fit.values, fit.standard_errors, truth, strict=True):
        assert abs(value - true) < 2 * se, (fit.as_dict(), fit.se_dict())


def test_pareto_nbd_likelihood_is_finite_at_extreme_histories():
    s = RepeatSummary(
        frequency=np.array([0.0, 1.0, 300.0, 50.0]),
        recency_weeks=np.array([0.0, 78.0, 77.9, 1e-6]),
        age_weeks=np.array([78.0, 78.0, 78.0, 78.0]),
        mean_repeat_value=np.array([np.nan, 10.0, 10.0, 10.0]),
    )
    for params in [(0.55, 10.58, 0.61, 11.67), (0.55, 11.67, 0.61, 11.67), (5.0, 0.01, 0.01, 300.0)]:
        assert np.all(np.isfinite(pareto_nbd_log_likelihood(params, s))), params


# ---- the holdout -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_simulated_calibrated_shop_forecasts_holdout_at_least_as_well_as_pareto_nbd(
    calibration: Calibration, cohort: Cohort, peer: dict
):
    assert calibration.scenario.population.attrition == "pareto_nbd"
    check = check_holdout(calibration, seeds=range(5))
    s = cohort.summary
    peer_forecast = float(
        peer["pareto_nbd"]
        .conditional_expected_number_of_purchases_up_to_time(
            HOLDOUT_WEEKS, s.frequency, s.recency_weeks, s.age_weeks
        )
        .sum()
    )
    actual = float(cohort.holdout_repeats.sum())
    assert actual == check.actual_holdout_total == 1882
    simulated_error = abs(check.simulated_holdout_total - actual) / actual
    peer_error = abs(peer_forecast - actual) / actual
    print(
        f"\nholdout repeat transactions: actual {actual:.0f}, simulated {check.simulated_holdout_total:.1f} "
        f"(error {simulated_error:.1%}), lifetimes Pareto/NBD {peer_forecast:.1f} (error {peer_error:.1%}); "
        f"weekly MAPE simulated {check.simulated_weekly_mape:.1%}, "
        f"Pareto/NBD {check.pareto_nbd_weekly_mape:.1%}"
    )
    assert simulated_error <= peer_error
    # The simulator is the Pareto/NBD: it reproduces the model's own cohort expectation.
    tracking = check.extra["pareto_nbd_tracking_holdout_total"]
    assert check.simulated_holdout_total == pytest.approx(tracking, rel=0.05)
    assert np.isfinite(check.simulated_weekly_mape) and check.simulated_weekly_mape < 0.35


# ---- the command --------------------------------------------------------------------------------------
def test_cli_writes_a_valid_commented_scenario_and_a_report(
    cdnow_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "shop.yaml"
    code = main(
        [
            "calibrate",
            str(cdnow_csv),
            "--out",
            str(out),
            "--calibration-end",
            "1997-09-30",
            "--base",
            str(CDNOW),
            "--seeds",
            "1",
            "--duplicates",
            "keep",
        ]
    )
    assert code == 0
    text = out.read_text()
    assert text.startswith("# Calibrated by `shopgym calibrate`")
    assert "log-likelihood -9582.43" in text and "log-likelihood -9594.98" in text
    scenario = load_scenario(out)
    assert scenario.population.shoppers == 2357
    assert scenario.population.acquisition_days == 84.0
    assert scenario.population.attrition == "pareto_nbd"
    assert scenario.population.purchase.r == pytest.approx(0.55, rel=0.01)
    assert scenario.population.purchase.a is None
    assert scenario.population.lifetime is not None
    assert scenario.population.lifetime.beta_weeks == pytest.approx(11.67, rel=0.01)
    assert scenario.mechanisms.social.proof_weight == 0.0
    assert scenario.mechanisms.need.depletion == 0.0
    report = tmp_path / "shop_report"
    for name in (
        "tracking_weekly.png",
        "tracking_cumulative.png",
        "repeat_count_distribution.png",
        "conditional_expectations.png",
    ):
        content = (report / name).read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000, name
    data = yaml.safe_load((report / "calibration.json").read_text())
    assert data["fits"]["pareto_nbd"]["log_likelihood"] == pytest.approx(-9594.98, abs=0.01)
    assert data["holdout"]["actual_repeat_transactions"] == 1882
    assert "## Conditional expectations by calibration frequency" in (report / "report.md").read_text()
    assert not list(tmp_path.glob("**/*.tmp"))
    assert "21 duplicate rows" in capsys.readouterr().err


def _orders(customers: int, rng: np.random.Generator, days: float = 300.0) -> pd.DataFrame:
    """A Pareto/NBD shop: births over 60 days, Gamma rates (per week) and Gamma dropout rates."""
    rows = []
    start = pd.Timestamp("2024-01-01")
    for customer in range(customers):
        birth = rng.uniform(0.0, 60.0)
        rate, dropout = rng.gamma(0.8, 1 / 4.0) / 7.0, rng.gamma(0.8, 1 / 10.0) / 7.0
        end = min(days, birth + rng.exponential(1.0 / dropout))
        times = [birth]
        while (t := times[-1] + rng.exponential(1.0 / rate)) < end:
            times.append(t)
        nu = rng.gamma(4.0, 1 / 15.0)  # Gamma-Gamma spend: p=6, q=4, gamma=15
        rows += [
            (f"c{customer}", str(start + pd.Timedelta(days=t)), round(rng.gamma(6.0, 1 / nu), 2))
            for t in times
        ]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="amount"), "lacks amount column 'amount'"),
        (lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 3, "not a date")), "unparsable dates"),
        (lambda f: f.assign(amount=f["amount"].where(f.index != 5, -4.0)), "negative, missing or non-finite"),
        (
            lambda f: f.assign(amount=f["amount"].where(f.index != 5, np.inf)),
            "negative, missing or non-finite",
        ),
        (
            lambda f: f.assign(amount=f["amount"].where(f.index != 5, np.nan)),
            "negative, missing or non-finite",
        ),
    ],
)
def test_bad_logs_are_rejected_with_the_column_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, message: str
):
    log = tmp_path / "log.csv"
    mutate(_orders(150, np.random.default_rng(0))).to_csv(log, index=False)
    out = tmp_path / "out" / "shop.yaml"
    assert main(["calibrate", str(log), "--out", str(out), "--attrition", "bgnbd", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_calibration_end_outside_the_log_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    log = tmp_path / "log.csv"
    _orders(150, np.random.default_rng(1)).to_csv(log, index=False)
    out = tmp_path / "shop.yaml"
    args = ["calibrate", str(log), "--out", str(out), "--calibration-end", "2030-01-01", "--seeds", "0"]
    assert main(args) == 2
    assert "lies outside the log" in capsys.readouterr().err and not out.exists()


def test_duplicates_are_dropped_by_default_with_a_warning_and_can_be_kept_or_refused():
    frame = _orders(150, np.random.default_rng(2))
    assert not frame.duplicated().any()
    frame = pd.concat([frame, frame.iloc[[0, 1]]], ignore_index=True)
    dropped = validate_log(frame)
    assert len(dropped.frame) == len(frame) - 2
    assert any(note.startswith("dropped 2 duplicate rows") for note in dropped.warnings)
    kept = validate_log(frame, duplicates="keep")
    assert len(kept.frame) == len(frame) and any("kept 2 duplicate rows" in n for n in kept.warnings)
    with pytest.raises(CalibrationError, match="2 duplicate rows"):
        validate_log(frame, duplicates="error")


def test_small_log_is_fitted_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    log = tmp_path / "log.csv"
    _orders(60, np.random.default_rng(3)).rename(columns={"customer_id": "who"}).to_csv(log, index=False)
    out = tmp_path / "shop.yaml"
    args = ["calibrate", str(log), "--out", str(out), "--customer-col", "who"]
    assert main([*args, "--seeds", "0"]) == 0
    assert "only 60 customers" in capsys.readouterr().err
    assert load_scenario(out).population.shoppers == 60


def test_log_without_holdout_is_calibrated_and_simulated(tmp_path: Path):
    log = tmp_path / "log.parquet"
    _orders(200, np.random.default_rng(4)).to_parquet(log)
    out = tmp_path / "shop.yaml"
    assert main(["calibrate", str(log), "--out", str(out), "--attrition", "bgnbd", "--seeds", "1"]) == 0
    data = yaml.safe_load((tmp_path / "shop_report" / "calibration.json").read_text())
    assert data["holdout_weeks"] == 0 and "holdout" not in data
    assert (tmp_path / "shop_report" / "tracking_cumulative.png").stat().st_size > 10_000
    assert not (tmp_path / "shop_report" / "conditional_expectations.png").exists()


def test_columns_and_date_format_are_configurable():
    frame = pd.DataFrame(
        {"id": ["a", "a", "b"], "day": [20240101, 20240110, 20240102], "usd": [1.0, 2.0, 3.0]}
    )
    log = validate_log(frame, LogColumns("id", "day", "usd"), date_format="%Y%m%d")
    assert log.frame["time"].iloc[-1] == pd.Timestamp("2024-01-10")


def test_twins_simulated_mean_converges_to_the_conditional_expectation_within_monte_carlo_error(
    calibration: Calibration,
):
    """Each CDNOW customer's twin drawn 6 times (2 seeds x 3 draws) over 13 weeks, against E[Y(13) | ...]."""
    check = check_twins(calibration, range(2), horizon_days=91, draws=3)
    assert check.simulated.shape == (6, calibration.cohort.customers) and check.draws == 3
    totals = check.simulated.sum(axis=1)
    standard_error = totals.std(ddof=1) / np.sqrt(totals.size)
    assert abs(totals.mean() - check.conditional.sum()) < 4 * standard_error, (
        totals,
        check.conditional.sum(),
    )
    # Per customer: the squared error to the closed form shrinks like 1 / draws (Monte-Carlo error).
    one = np.mean((check.simulated[0] - check.conditional) ** 2)
    six = np.mean((check.simulated_mean - check.conditional) ** 2)
    assert six < one / 3
    # A run's draws are independent of each other, as draws on separate seeds are.
    same_run = np.corrcoef(check.simulated[0] - check.conditional, check.simulated[1] - check.conditional)
    assert abs(same_run[0, 1]) < 0.1
    # By calibration repeats, signed errors to the closed form stay within 4 standard errors.
    for x in range(4):
        rows = check.frequency == x
        per_draw = check.simulated[:, rows].mean(axis=1)
        error = per_draw.std(ddof=1) / np.sqrt(per_draw.size)
        assert abs(per_draw.mean() - check.conditional[rows].mean()) < 4 * error + 1e-3, x


def test_twins_check_draws_copies_of_each_customer_and_refuses_a_bad_count(calibration: Calibration):
    frame, _ = twins_frame(calibration)
    copies = replicated_frame(frame.head(3), 2)
    assert list(copies["customer_id"]) == [f"{c}#{k}" for k in range(2) for c in frame["customer_id"].head(3)]
    assert copies.drop(columns="customer_id").equals(
        pd.concat([frame.head(3)] * 2, ignore_index=True).drop(columns="customer_id")
    )
    with pytest.raises(CalibrationError, match=r"--twin-draws must be in \[1, 1000\], got 0"):
        check_twins(calibration, range(1), draws=0)


def test_cli_twins_report_gives_each_customers_forecast_over_seeds_times_draws(
    cdnow_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out, twins = tmp_path / "shop.yaml", tmp_path / "twins.parquet"
    args = ["calibrate", str(cdnow_csv), "--out", str(out), "--calibration-end", "1997-09-30"]
    args += ["--base", str(CDNOW), "--duplicates", "keep", "--seeds", "1", "--twins", str(twins)]
    assert main([*args, "--twin-draws", "0"]) == 2
    assert "--twin-draws must be in [1, 1000], got 0" in capsys.readouterr().err
    assert not out.exists() and not twins.exists()
    assert main([*args, "--twin-draws", "2"]) == 0
    report = (tmp_path / "shop_report" / "report.md").read_text()
    assert "simulated from her own posterior over the holdout, 2 times (1 seeds)" in report
    data = yaml.safe_load((tmp_path / "shop_report" / "calibration.json").read_text())
    assert data["twins"]["draws"] == 2 and data["twins"]["seeds"] == 1
    assert (tmp_path / "shop_report" / "twins_by_frequency.png").read_bytes().startswith(b"\x89PNG")


def test_twins_file_keeps_or_hashes_the_ids_and_its_scenario_starts_from_them(
    calibration: Calibration, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    frame, prior = twins_frame(calibration)
    assert list(frame["customer_id"]) == list(calibration.cohort.customer_ids)
    assert np.all((frame["p_alive"] > 0) & (frame["p_alive"] <= 1))
    path, scenario = write_twins_outputs(calibration, frame, prior, tmp_path / "twins.parquet")
    assert scenario.population.twins == str(tmp_path / "twins.parquet")
    assert load_scenario(path) == scenario
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "a shop's secret")
    hashed, _ = twins_frame(calibration, pseudonym_key())
    assert hashed["customer_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert not set(hashed["customer_id"]) & set(frame["customer_id"])
    assert list(hashed["customer_id"]) == pseudonymize(list(frame["customer_id"]), b"a shop's secret")
