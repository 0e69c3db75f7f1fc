"""Twins: the file's checks, the posterior draws and the engine starting from real histories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.engine import Simulation
from sim.params import ScenarioError, load_scenario
from sim.twins import (
    METADATA_KEY,
    TWINS_COLUMNS,
    Twins,
    TwinsError,
    TwinsPrior,
    draw_twin_traits,
    pareto_nbd_death_weeks,
    read_twins,
    write_twins,
)
from tests.conftest import ROOT

CDNOW_PARETO = ROOT / "sim" / "scenarios" / "cdnow_pareto.yaml"
NAN = float("nan")
PARETO = TwinsPrior("pareto_nbd", 0.55, 10.58, 0.61, 11.67, NAN, NAN, 6.25, 3.74, 15.44, "1997-09-30")
BGNBD = TwinsPrior("bgnbd", 0.243, 4.414, NAN, NAN, 0.793, 2.426, 6.25, 3.74, 15.44, "1997-09-30")


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(27.0, 39.0, n)
    repeats = rng.poisson(1.5, n)
    recency = np.where(repeats > 0, age * rng.uniform(0.0, 1.0, n), 0.0)
    mean_spend = np.where(repeats > 0, rng.gamma(6.0, 6.0, n), 0.0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "repeats": repeats.astype(np.int64),
            "recency_weeks": recency,
            "age_weeks": age,
            "mean_spend": mean_spend,
            "total_spend": mean_spend * repeats + 30.0,
            "p_alive": rng.uniform(0.05, 1.0, n),
            "rate_per_week_if_alive": (0.55 + repeats) / (10.58 + age),
            "order_value": np.full(n, 35.0),
        }
    )


@pytest.fixture
def twins_file(tmp_path: Path) -> Path:
    path = tmp_path / "twins.parquet"
    write_twins(_frame(), PARETO, path)
    return path


def test_twins_file_round_trips_with_rows_oldest_first(twins_file: Path):
    twins = read_twins(twins_file)
    frame = _frame().set_index("customer_id")
    assert twins.size == 300 and twins.prior.as_metadata() == PARETO.as_metadata()
    assert np.all(np.diff(twins.age_weeks) <= 0)
    back = frame.loc[twins.customer_id]
    np.testing.assert_array_equal(back["repeats"].to_numpy(), twins.repeats)
    np.testing.assert_array_equal(back["p_alive"].to_numpy(), twins.p_alive)


def _write_raw(path: Path, frame: pd.DataFrame, metadata: bytes | None = None, keep: bool = True) -> Path:
    """``frame`` as parquet with ``metadata`` as its prior (the sound prior when ``keep``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    prior = json.dumps(PARETO.as_metadata()).encode() if keep else metadata
    pq.write_table(table.replace_schema_metadata({} if prior is None else {METADATA_KEY: prior}), path)
    return path


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda f: f.drop(columns="p_alive"), "lacks column 'p_alive'"),
        (lambda f: f.assign(repeats=f["repeats"].astype(str)), "column 'repeats'"),
        (lambda f: f.assign(p_alive=np.r_[1.5, f["p_alive"].to_numpy()[1:]]), "column 'p_alive'"),
        (lambda f: f.assign(age_weeks=np.r_[np.nan, f["age_weeks"].to_numpy()[1:]]), "column 'age_weeks'"),
        (lambda f: f.assign(recency_weeks=f["age_weeks"] + 1.0), "recency_weeks"),
        (lambda f: f.assign(customer_id="same"), "repeats ids"),
        (lambda f: f.assign(customer_id="x" * 200), "200 characters"),
    ],
)
def test_bad_twins_files_are_refused_in_one_line_naming_the_column(tmp_path: Path, edit, words: str):
    path = _write_raw(tmp_path / "bad.parquet", edit(_frame()))
    with pytest.raises(TwinsError) as caught:
        read_twins(path)
    message = str(caught.value)
    assert words in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        (None, "lacks its prior"),
        (b"{not json", "not JSON"),
        (b'{"format": "shopgym-twins/1", "attrition": "pareto_nbd"}', "purchase.r"),
        (b"x" * 5000, "lacks its prior"),
    ],
)
def test_twins_file_without_a_sound_prior_is_refused(tmp_path: Path, metadata: bytes | None, words: str):
    path = _write_raw(tmp_path / "bad.parquet", _frame(), metadata, keep=False)
    with pytest.raises(TwinsError, match=words):
        read_twins(path)


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path):
    path = tmp_path / "fake.parquet"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle: never unpickled
    with pytest.raises(TwinsError, match="not a readable parquet file"):
        read_twins(path)


def _twins(frame: pd.DataFrame, prior: TwinsPrior) -> Twins:
    return Twins(
        customer_id=frame["customer_id"].to_numpy(str),
        repeats=frame["repeats"].to_numpy(np.int64),
        recency_weeks=frame["recency_weeks"].to_numpy(),
        age_weeks=frame["age_weeks"].to_numpy(),
        mean_spend=frame["mean_spend"].to_numpy(),
        total_spend=frame["total_spend"].to_numpy(),
        p_alive=frame["p_alive"].to_numpy(),
        prior=prior,
        source_hash="test",
    )


@pytest.mark.parametrize("prior", [PARETO, BGNBD], ids=["pareto_nbd", "bgnbd"])
def test_posterior_draws_match_the_conjugate_means_within_four_standard_errors(prior: TwinsPrior):
    one = pd.DataFrame(
        [
            {
                **_frame(1).iloc[0].to_dict(),
                "repeats": 4,
                "recency_weeks": 20.0,
                "age_weeks": 30.0,
                "mean_spend": 40.0,
                "p_alive": 0.6,
            }
        ]
    )
    many = pd.concat([one] * 40_000, ignore_index=True)
    traits = draw_twin_traits(_twins(many, prior), np.random.default_rng(1))
    alive = traits.alive
    assert abs(alive.mean() - 0.6) < 4 * np.sqrt(0.24 / alive.size)
    rate = traits.rate_per_week[alive]
    expected = (prior.r + 4) / (prior.alpha_weeks + 30.0)
    assert abs(rate.mean() - expected) < 4 * rate.std() / np.sqrt(rate.size)
    nu_mean = (prior.q + prior.p * 4) / (prior.gamma + 4 * 40.0)
    assert abs(traits.spend_nu.mean() - nu_mean) < 4 * traits.spend_nu.std() / np.sqrt(alive.size)
    dead_rate = traits.rate_per_week[~alive].mean()
    assert dead_rate > rate.mean()  # who died early was seen over less time: her x came faster


def test_pareto_nbd_death_times_lie_between_her_last_purchase_and_calibration_end():
    twins = _twins(_frame(500), PARETO)
    tau = pareto_nbd_death_weeks(PARETO, twins, np.random.default_rng(0).random(500))
    assert np.all(tau >= twins.recency_weeks - 1e-9) and np.all(tau <= twins.age_weeks + 1e-9)
    # With u = 0.5 the death time is the median of its density, decreasing in tau: in the first half.
    median = pareto_nbd_death_weeks(PARETO, twins, np.full(500, 0.5))
    assert np.all(median <= (twins.recency_weeks + twins.age_weeks) / 2 + 1e-9)


def test_engine_starts_from_the_twins_histories_with_ids_kept_and_no_trial_orders(twins_file: Path):
    scenario = load_scenario(CDNOW_PARETO, {"population.twins": str(twins_file), "population.shoppers": 300})
    sim = Simulation(scenario, seed=3, horizon_days=60)
    twins = read_twins(twins_file)
    assert sim.customer_ids is not None
    np.testing.assert_array_equal(sim.customer_ids, twins.customer_id)
    np.testing.assert_array_equal(sim.pop.orders, twins.repeats + 1)
    np.testing.assert_allclose(sim.pop.acquired_at, -twins.age_weeks * 168.0)
    np.testing.assert_allclose(sim.pop.last_order_at, -(twins.age_weeks - twins.recency_weeks) * 168.0)
    assert 0 < sim.pop.alive.sum() < 300
    assert (sim.pop.channel == 0).all()  # no log records a channel: no twin came through a deal site
    log = sim.run().log.to_frame()
    assert not (log["event"] == "acquired").any()
    orders = log[log["event"] == "order"]
    assert len(orders) > 0 and orders["time_hours"].min() >= 0.0
    again = Simulation(scenario, seed=3, horizon_days=60).run().log.to_frame()
    pd.testing.assert_frame_equal(log, again, check_exact=True)


def test_scenario_with_twins_is_checked_at_load(twins_file: Path, tmp_path: Path):
    with pytest.raises(ScenarioError, match="set shoppers to 300"):
        load_scenario(CDNOW_PARETO, {"population.twins": str(twins_file), "population.shoppers": 299})
    bg = tmp_path / "bg.parquet"
    write_twins(_frame(), BGNBD, bg)
    with pytest.raises(ScenarioError, match="set attrition to bgnbd"):
        load_scenario(CDNOW_PARETO, {"population.twins": str(bg), "population.shoppers": 300})
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(
            CDNOW_PARETO, {"population.twins": str(tmp_path / "no.parquet"), "population.shoppers": 300}
        )


def test_config_hash_names_the_twins_file_content(twins_file: Path):
    scenario = load_scenario(CDNOW_PARETO, {"population.twins": str(twins_file), "population.shoppers": 300})
    plain = load_scenario(CDNOW_PARETO, {"population.shoppers": 300})
    assert scenario.config_hash() != plain.config_hash()
    assert set(TWINS_COLUMNS) <= set(pq.read_schema(twins_file).names)
