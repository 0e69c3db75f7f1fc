"""``shopgym leaderboard``: run the shipped leaderboard configs and regenerate ``docs/LEADERBOARD.md``.

One config per environment (``configs/leaderboard/``), each on the env's default scenario with
every shipped policy kind that fits it. The page gives each policy's normalized score
``(policy - none) / (oracle - none)`` on margin, LTV and the return, with 95% CIs (paired per
seed, delta method; :func:`experiments.report.normalized_scores`), and the IQM of the return's
normalized score across seeds and environments with a stratified bootstrap CI
(:mod:`experiments.aggregate`). ``--seeds`` and ``--scale`` shrink the runs for a quick page;
the page records the size it was made at and the exact command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import ConfigError, ExperimentConfig, config_from_dict, load_config
from sim.io import atomic_write_text

#: The shipped leaderboard configs, one per environment, in page order.
CONFIGS = (
    "configs/leaderboard/journey.yaml",
    "configs/leaderboard/targeting.yaml",
    "configs/leaderboard/campaign.yaml",
)
#: The metrics scored, with their column titles.
SCORED = {"margin": "margin", "ltv_mean": "LTV", "return": "return"}


def scaled(
    config: ExperimentConfig, seeds: int | None, scale: float, shoppers: int | None
) -> ExperimentConfig:
    """``config`` cut to its first ``seeds`` seeds, budgets times ``scale``, populations of ``shoppers``."""
    if not 0 < scale <= 1:
        raise ConfigError(f"--scale {scale} not allowed; a number in (0, 1]")
    data = config.model_dump(mode="json")
    if seeds is not None:
        if not 1 <= seeds <= len(config.seeds):
            raise ConfigError(f"--seeds {seeds} not allowed; an integer in [1, {len(config.seeds)}]")
        data["seeds"] = data["seeds"][:seeds]
    data["training"] = {k: int(np.ceil(v * scale)) for k, v in data["training"].items()}
    data["evaluation"]["episodes"] = max(1, int(np.ceil(data["evaluation"]["episodes"] * scale)))
    if shoppers is not None and config.env.id != "shopgym/ShopperJourney-v0":
        data["env"]["overrides"] = {**data["env"]["overrides"], "population.shoppers": shoppers}
    return config_from_dict(data, f"{config.name} (scaled)")


def score_table(results: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """Per policy: the normalized score and its 95% CI half-width on each scored metric."""
    from experiments.report import normalized_scores, normalizing_oracle

    oracle = normalizing_oracle(config, results)[0]
    columns = []
    for metric in SCORED:
        part = normalized_scores(results, config.reference_policy, oracle, metric).set_index("policy")
        columns.append(part[["score", "ci95"]].add_prefix(f"{metric} "))
    return pd.concat(columns, axis=1)


def _cell(score: float, half: float) -> str:
    if not np.isfinite(score):
        return "-"
    score += 0.0  # none's own score is 0 / (oracle - none): never print it as -0.00
    return f"{score:.2f} ± {half:.2f}" if np.isfinite(half) else f"{score:.2f}"


def page(runs: list[tuple[ExperimentConfig, pd.DataFrame]], command: str, minutes: float, note: str) -> str:
    """The markdown of ``docs/LEADERBOARD.md``."""
    from experiments.aggregate import BOOTSTRAP_REPS, interval, iqm, run_scores
    from experiments.report import normalizing_oracle

    lines = [
        "# Leaderboard",
        "",
        "Every shipped policy on each environment's default scenario: normalized score "
        "(policy - none) / (oracle - none) on margin, LTV and the return (0 is no incentives, 1 the "
        "privileged oracle that reads the simulator's hidden state), mean over seeds ± 95% CI (paired "
        "per seed against `none`, delta method). Scores below 0 lose money against giving nothing.",
        "",
        "Regenerate with:",
        "",
        "```bash",
        command,
        "```",
        "",
        note,
        f"This page took {minutes:.1f} minutes to make.",
    ]
    matrices: dict[str, list[np.ndarray]] = {}
    for config, results in runs:
        table = score_table(results, config)
        seeds, episodes = results["seed"].nunique(), results.groupby(["policy", "seed"]).size().max()
        lines += [
            "",
            f"## `{config.env.id}`",
            "",
            f"Config `{config.name}` (scenario `{config.env.scenario}`"
            + (f", overrides {dict(config.env.overrides)}" if config.env.overrides else "")
            + f"); {seeds} seeds x {episodes} evaluation episodes; training {config.training.timesteps} "
            f"RL steps, {config.training.episodes} bandit episodes.",
            "",
            "| policy | margin | LTV | return |",
            "|---|---:|---:|---:|",
        ]
        for policy, row in table.iterrows():
            cells = [_cell(float(row[f"{m} score"]), float(row[f"{m} ci95"])) for m in SCORED]
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
        oracle = normalizing_oracle(config, results)[0]
        scores, _ = run_scores(results, config.reference_policy, oracle)
        for policy, matrix in scores.items():
            matrices.setdefault(str(policy), []).append(matrix)
    common = {
        p: np.hstack(parts)
        for p, parts in matrices.items()
        if len(parts) == len(runs) and len({m.shape[0] for m in parts}) == 1
    }
    if len(runs) > 1 and common:
        lines += [
            "",
            "## Across environments",
            "",
            f"IQM of the return's normalized score over seeds x environments, for policies on every "
            f"environment, with a 95% stratified bootstrap CI ({BOOTSTRAP_REPS} resamples of seeds within "
            "each environment; Agarwal et al. 2021).",
            "",
            "| policy | IQM |",
            "|---|---:|",
        ]
        for policy, matrix in common.items():
            point, low, high = interval(iqm, matrix)
            lines.append(f"| {policy} | {point:.2f} [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines) + "\n"


def run_leaderboard(
    configs: list[str],
    out: Path,
    runs_dir: Path,
    seeds: int | None,
    scale: float,
    shoppers: int | None,
    command: str,
    quiet: bool = False,
) -> Path:
    """Run every leaderboard config (resumably, under ``runs_dir``) and write the page to ``out``."""
    from experiments.runner import load_results, run_experiment

    started = time.perf_counter()
    prepared = [scaled(load_config(path), seeds, scale, shoppers) for path in configs]
    runs = []
    for config in prepared:
        root = run_experiment(config, runs_dir / config.name, quiet=quiet)
        runs.append((config, load_results(root)))
    size = (
        "Full size (the configs as shipped)."
        if seeds is None and scale == 1 and shoppers is None
        else f"Reduced size: first {seeds or 'all'} seeds, budgets x {scale:g}"
        + (f", {shoppers} shoppers in the population envs" if shoppers else "")
        + ", so the numbers are noisy; the full-size page comes from the same command without "
        "--seeds/--scale/--shoppers."
    )
    text = page(runs, command, (time.perf_counter() - started) / 60, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, out)
    return out


def _run(args: argparse.Namespace) -> int:
    command = "shopgym leaderboard" + "".join(f" {shlex.quote(a)}" for a in sys.argv[2:])
    path = run_leaderboard(
        args.configs or list(CONFIGS),
        Path(args.out),
        Path(args.runs),
        args.seeds,
        args.scale,
        args.shoppers,
        command,
        args.quiet,
    )
    print(f"wrote {path}")
    return 0


def add_leaderboard_parser(sub: Any) -> None:
    """Add ``leaderboard`` to the ``shopgym`` subcommands."""
    parser = sub.add_parser(
        "leaderboard",
        help="run the shipped leaderboard configs and regenerate docs/LEADERBOARD.md",
        description=(
            "Run configs/leaderboard/*.yaml (one per environment, default scenario, every shipped policy) "
            "into RUNS/<name> (resumable) and write the normalized scores on margin, LTV and the return, "
            "with CIs, to OUT. --seeds/--scale/--shoppers make a smaller, noisier page."
        ),
    )
    parser.add_argument("--configs", nargs="+", help=f"leaderboard configs (default: {' '.join(CONFIGS)})")
    parser.add_argument("--out", default="docs/LEADERBOARD.md", help="the page (default docs/LEADERBOARD.md)")
    parser.add_argument(
        "--runs", default="runs/leaderboard", help="run directories (default runs/leaderboard)"
    )
    parser.add_argument("--seeds", type=int, help="use only the first N seeds of each config")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply training and evaluation budgets (0, 1]"
    )
    parser.add_argument("--shoppers", type=int, help="population size of the population envs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)
