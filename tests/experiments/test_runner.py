"""``shopgym run``, ``compare`` and ``regress`` on a tiny shop: files, resumption, reproducibility."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments import runner
from experiments.cli import main
from experiments.config import ConfigError, config_from_dict
from experiments.report import _fmt, mean_ci
from experiments.runner import cell_dir, run_experiment

TINY: dict[str, Any] = {
    "name": "tiny",
    "description": "A tiny shop for tests.",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "configs/scenarios/default.yaml",
        "overrides": {"population.shoppers": 200, "population.acquisition_days": 3.0},
        "kwargs": {"horizon_days": 6},
    },
    "seeds": [0, 1],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "coupon_all", "kind": "blanket", "kwargs": {"incentive": "coupon_10"}},
        {"name": "rules", "kind": "segment_rules"},
        {"name": "ppo", "kind": "ppo", "kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}},
        {"name": "thompson", "kind": "thompson", "kwargs": {"likelihood": "gaussian"}},
    ],
    "training": {"timesteps": 128, "episodes": 1},
    "evaluation": {"episodes": 2},
}
#: The module's shared run: TINY with a paired comparison reported.
RUN: dict[str, Any] = {
    **TINY,
    "comparisons": [{"name": "rules_vs_coupon", "policy": "rules", "against": "coupon_all"}],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_experiment(config_from_dict(RUN), tmp_path_factory.mktemp("run") / "tiny", quiet=True)


def test_a_finished_run_leaves_no_lock_and_its_summary_names_the_package_version(run_dir: Path):
    from experiments.terminal import package_version

    assert not (run_dir / ".lock").exists()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["shopgym_version"] == package_version()
    summary = (run_dir / "summary.md").read_text()
    assert f"shopgym {package_version()}" in summary and "git None" not in summary


def test_the_run_lock_refuses_a_second_holder_and_is_gone_after(tmp_path: Path):
    with runner.run_lock(tmp_path):
        assert (tmp_path / ".lock").is_file()
        with pytest.raises(ConfigError, match="another shopgym run is writing"), runner.run_lock(tmp_path):
            pass
        assert (tmp_path / ".lock").is_file()  # the refused run did not delete the holder's lock
    assert not (tmp_path / ".lock").exists()


def test_a_run_writes_config_results_summary_plots_models_and_tensorboard(run_dir: Path):
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 5 * 2 * 2  # policies x seeds x evaluation episodes
    assert {
        "variant",
        "policy",
        "seed",
        "episode",
        "return",
        "ltv_mean",
        "margin",
        "late_delivery_share",
    } <= set(results)
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    assert resolved["name"] == "tiny" and resolved["evaluation"]["deterministic"] is True
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["versions"]["gymnasium"] and "base" in meta["scenario_hash"]
    summary = (run_dir / "summary.md").read_text()
    for name in ("none", "coupon_all", "rules", "ppo", "thompson", "±", "Paired differences against `none`"):
        assert name in summary
    for plot in ("learning_curves", "frontier", "pareto_front", "fulfillment_load", "incentive_mix"):
        data = (run_dir / "plots" / f"{plot}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert (run_dir / "models" / "base" / "ppo" / "seed1" / "weights.npz").is_file()
    assert (run_dir / "models" / "base" / "rules" / "seed0" / "policy.json").is_file()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_a_comparison_pairs_its_two_cells_episode_by_episode(run_dir: Path):
    results = (
        pd.read_parquet(run_dir / "results.parquet").set_index(["policy", "seed", "episode"]).sort_index()
    )
    diff = (results.loc["rules", "margin"] - results.loc["coupon_all", "margin"]).groupby(level="seed").mean()
    summary = (run_dir / "summary.md").read_text()
    assert "## Paired comparisons" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| rules_vs_coupon |"))
    assert "| base/rules | base/coupon_all |" in row
    margin_cell = row.split("|")[6]  # comparison, policy, against, return, LTV, margin
    assert margin_cell.strip().removesuffix(" *") == _fmt(*mean_ci(diff.to_numpy()))


def test_every_policy_faces_the_same_evaluation_episodes(run_dir: Path):
    results = pd.read_parquet(run_dir / "results.parquet")
    seeds = results.groupby("policy")["episode_seed"].apply(lambda s: sorted(s))
    assert all(s == seeds.iloc[0] for s in seeds)
    # The no-incentive arm's episodes are the shop without incentives: nothing spent.
    assert (results.loc[results["policy"] == "none", "incentive_cost"] == 0).all()


def test_rerun_skips_finished_cells_and_recomputes_only_missing_ones_identically(run_dir: Path):
    before = pd.read_parquet(run_dir / "results.parquet")
    kept = cell_dir(run_dir, "base", "rules", 0) / "episodes.parquet"
    kept_mtime = kept.stat().st_mtime_ns
    lost = cell_dir(run_dir, "base", "ppo", 1)
    (lost / "done.json").unlink()
    run_experiment(config_from_dict(RUN), run_dir, quiet=True)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert (lost / "done.json").is_file()
    after = pd.read_parquet(run_dir / "results.parquet")
    pd.testing.assert_frame_equal(before, after)  # same seed, same machine: PPO retrains identically


def test_an_interrupted_run_keeps_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = config_from_dict(TINY | {"policies": TINY["policies"][:3], "seeds": [0]})
    real = runner.run_cell
    calls: list[str] = []

    def dies_on_third(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "run", quiet=True)
    assert [
        p.name for p in sorted((tmp_path / "run" / "cells" / "base").glob("*/seed0/done.json"), key=str)
    ] == [
        "done.json",
        "done.json",
    ]
    monkeypatch.setattr(runner, "run_cell", real)
    run_experiment(config, tmp_path / "run", quiet=True)
    assert len(pd.read_parquet(tmp_path / "run" / "results.parquet")) == 3 * 2


def test_a_run_directory_refuses_a_different_config(run_dir: Path):
    changed = copy.deepcopy(TINY)
    changed["evaluation"]["episodes"] = 3
    with pytest.raises(ConfigError, match="different config"):
        run_experiment(config_from_dict(changed), run_dir, quiet=True)


def test_process_pool_gives_the_same_results_as_one_process(run_dir: Path, tmp_path: Path):
    no_rl = [p for p in TINY["policies"] if p["kind"] != "ppo"]  # the bandit's learning included
    config = config_from_dict(TINY | {"policies": no_rl, "seeds": [1]})
    pooled = run_experiment(config, tmp_path / "pooled", workers=2, quiet=True)
    got = pd.read_parquet(pooled / "results.parquet").sort_values(["policy", "episode"], ignore_index=True)
    full = pd.read_parquet(run_dir / "results.parquet")
    expected = full[(full["seed"] == 1) & (full["policy"] != "ppo")].sort_values(
        ["policy", "episode"], ignore_index=True
    )
    pd.testing.assert_frame_equal(got, expected)


def test_ray_backend_runs_the_same_cells(run_dir: Path, tmp_path: Path):
    ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install 'shopgym[ray]'")
    config = config_from_dict(TINY | {"policies": TINY["policies"][:2], "seeds": [0]})
    root = run_experiment(config, tmp_path / "ray", backend="ray", workers=2, quiet=True)
    assert not ray.is_initialized()  # the session the run started is closed
    got = pd.read_parquet(root / "results.parquet").sort_values(["policy", "episode"], ignore_index=True)
    full = pd.read_parquet(run_dir / "results.parquet")
    expected = full[(full["seed"] == 0) & full["policy"].isin(["none", "coupon_all"])]
    pd.testing.assert_frame_equal(got, expected.sort_values(["policy", "episode"], ignore_index=True))


def test_compare_prints_differences_between_two_runs(run_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["compare", str(run_dir), str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "coupon_all" in out and "+0%" in out.replace("+0.0%", "+0%")


def test_regress_passes_on_a_rerun_and_fails_when_a_behavioural_parameter_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    small = TINY | {"policies": TINY["policies"][:3], "seeds": [0], "evaluation": {"episodes": 1}}
    config_path = tmp_path / "pinned.yaml"
    config_path.write_text(yaml.safe_dump(small))
    baseline = tmp_path / "baseline.json"
    assert main(["regress", str(config_path), "--baseline", str(baseline), "--update", "--quiet"]) == 0
    assert main(["regress", str(config_path), "--baseline", str(baseline), "--quiet"]) == 0
    changed = copy.deepcopy(small)
    changed["env"]["overrides"]["population.loss_aversion"] = {"mean": 1.5, "cv": 0.4}
    config_path.write_text(yaml.safe_dump(changed))
    capsys.readouterr()
    assert main(["regress", str(config_path), "--baseline", str(baseline), "--quiet"]) == 1
    assert "REGRESSION" in capsys.readouterr().out


def test_normalized_score_puts_none_at_zero_the_oracle_at_one_and_pairs_by_episode():
    from experiments.report import normalized_scores

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(5):
        for episode in range(20):
            base = rng.normal(10.0, 5.0)  # the shopper's own luck, shared by every policy
            gain = rng.normal(2.0, 0.5)
            for policy, value in (("none", base), ("oracle", base + gain), ("half", base + gain / 2)):
                rows.append(
                    {"variant": "base", "policy": policy, "seed": seed, "episode": episode, "return": value}
                )
    scores = normalized_scores(pd.DataFrame(rows), "none", "oracle").set_index("policy")
    assert scores.at["none", "score"] == 0.0 and scores.at["oracle", "score"] == 1.0
    assert scores.at["half", "score"] == pytest.approx(0.5)
    assert scores.at["half", "ci95"] < 0.05  # paired: the shared luck cancels


def test_summary_scores_on_margin_and_ltv_beside_a_return_labelled_attributed():
    """A policy that games an attributed return ranks by what the shop earns; the return says what it is."""
    from experiments.report import normalized_scores

    rows = []
    for seed in range(3):
        for policy, ret, margin, ltv in (
            ("none", 0.0, 100.0, 50.0),
            ("oracle", 10.0, 120.0, 60.0 + seed),
            ("gamer", 20.0, 90.0, 45.0),
        ):
            rows.append(
                {"variant": "base", "policy": policy, "seed": seed, "episode": 0}
                | {"return": ret + seed * 0.1, "margin": margin, "ltv_mean": ltv}
            )
    results = pd.DataFrame(rows)
    config = config_from_dict(
        {
            "name": "t",
            "env": {"id": "shopgym/IncentiveTargeting-v0", "scenario": "default"},
            "seeds": [0, 1, 2],
            "policies": [{"name": "none", "kind": "none"}, {"name": "oracle", "kind": "oracle"}],
            "training": {"timesteps": 0},
            "evaluation": {"episodes": 1},
        },
        check=False,
    )
    from experiments.report import markdown_summary

    text = markdown_summary(config, results)
    assert "| policy | return (attributed) | margin | mean LTV |" in text
    assert "14-day last-touch window (attributed)" in text
    lines = text.splitlines()
    header = lines.index("| policy | return (attributed) | margin | mean LTV |")
    gamer = next(line for line in lines[header:] if line.startswith("| gamer |")).split("|")
    assert gamer[2].strip().startswith("2.000") and gamer[3].strip().startswith("-0.500")
    assert normalized_scores(results, "none", "oracle", "margin").set_index("policy").at["gamer", "score"] < 0


def _twins_file(tmp_path: Path, n: int) -> tuple[pd.DataFrame, Path]:
    """A small twins file of ``n`` CDNOW-like customers (ids ``cust-0`` ...)."""
    from sim.twins import TwinsPrior, write_twins

    rng = np.random.default_rng(0)
    repeats = rng.poisson(2.0, n)
    age = rng.uniform(20.0, 39.0, n)
    twins = pd.DataFrame(
        {
            "customer_id": [f"cust-{i}" for i in range(n)],
            "repeats": repeats,
            "recency_weeks": age * rng.uniform(0.0, 1.0, n) * (repeats > 0),
            "age_weeks": age,
            "mean_spend": np.where(repeats > 0, 35.0, 0.0),
            "total_spend": 35.0 * (repeats + 1),
            "p_alive": rng.uniform(0.2, 1.0, n),
            "rate_per_week_if_alive": (0.55 + repeats) / (10.58 + age),
            "order_value": np.full(n, 35.0),
        }
    )
    nan = float("nan")
    prior = TwinsPrior("pareto_nbd", 0.55, 10.58, 0.61, 11.67, nan, nan, 6.25, 3.74, 15.44, "1997-09-30")
    path = tmp_path / "twins.parquet"
    write_twins(twins, prior, path)
    return twins, path


@pytest.mark.parametrize("env_id", ["shopgym/IncentiveTargeting-v0", "shopgym/CampaignPlanning-v0"])
def test_a_twins_run_writes_what_each_real_customer_was_given_and_earned(tmp_path: Path, env_id: str):
    n = 150
    twins, path = _twins_file(tmp_path, n)
    config = copy.deepcopy(TINY)
    config["env"] = {
        "id": env_id,
        "scenario": "sim/scenarios/cdnow_pareto.yaml",
        "overrides": {"population.twins": str(path), "population.shoppers": n},
        "kwargs": {"horizon_days": 14},
    }
    config["seeds"] = [0]
    config["policies"] = [
        {"name": "none", "kind": "none"},
        {"name": "coupon_all", "kind": "blanket", "kwargs": {"incentive": "coupon_10"}},
    ]
    config["evaluation"] = {"episodes": 1}
    out = run_experiment(config_from_dict(config), tmp_path / "run", quiet=True)
    customers = pd.read_parquet(out / "customers.parquet")
    assert set(customers["customer_id"]) == set(twins["customer_id"])
    assert len(customers) == 2 * n  # one row per customer and policy
    by_policy = customers.groupby("policy")
    assert by_policy["incentives_received"].sum()["none"] == 0
    assert by_policy["incentives_received"].sum()["coupon_all"] > 0
    joined = twins.merge(customers[customers["policy"] == "coupon_all"], on="customer_id")
    assert len(joined) == n and np.isfinite(joined["margin"]).all()


def test_shopper_journey_on_twins_runs_one_journey_per_real_customer(tmp_path: Path):
    """Episodes seeded s, s+1, ... are the customers s mod n, s+1 mod n, ...: n episodes, each once."""
    n = 40
    twins, path = _twins_file(tmp_path, n)
    config = copy.deepcopy(TINY)
    config["env"] = {
        "id": "shopgym/ShopperJourney-v0",
        "scenario": "sim/scenarios/cdnow_pareto.yaml",
        "overrides": {"population.twins": str(path), "population.shoppers": n},
        "kwargs": {"horizon_days": 60},
    }
    config["seeds"] = [0]
    config["policies"] = [
        {"name": "none", "kind": "none"},
        {"name": "coupon_all", "kind": "blanket", "kwargs": {"incentive": "coupon_10"}},
    ]
    config["evaluation"] = {"episodes": n}
    out = run_experiment(config_from_dict(config), tmp_path / "run", quiet=True)
    customers = pd.read_parquet(out / "customers.parquet")
    for _, mine in customers.groupby("policy"):
        assert sorted(mine["customer_id"]) == sorted(twins["customer_id"])  # each customer once
    # Her history is her starting state: every twin has at least her calibration-period orders.
    merged = twins.merge(customers[customers["policy"] == "none"], on="customer_id")
    assert (merged["orders"] >= merged["repeats"] + 1).all()
    assert customers.groupby("policy")["incentives_received"].sum()["coupon_all"] > 0
