"""``shopgym ope``: off-policy evaluation from logs, and its validation against the simulator's truth.

``shopgym ope validate CONFIG``: in each replication the shop (``IncentiveTargeting-v0``) runs
under a logging policy (epsilon-greedy over a base rule, propensities recorded); every
candidate policy then runs on-policy in the same shop with the same seed (common random
numbers) for its true value, the mean attributed reward per decision. From random subsamples
of the log (sizes ``sizes``), DM, IPS, SNIPS, DR and switch-DR estimate each candidate's
value; the report gives bias, RMSE, relative RMSE and 95% CI coverage per estimator and size,
and plots them (as in Saito et al. 2021, Open Bandit Pipeline).

``shopgym ope estimate FEEDBACK --artifact DIR``: the estimators on a joined production log.
``shopgym ope join LOG_DIR ORDERS --artifact DIR``: decision log + orders log -> feedback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from experiments.config import ConfigError
from policies.ope import ESTIMATORS, cross_fit_q_hat, estimate_all
from sim.io import atomic_write_json, atomic_write_parquet
from sim.params import format_validation_errors, read_yaml_mapping


class PolicySpec(BaseModel):
    """A policy of the validation: epsilon-greedy over a fixed rule (``epsilon: 0`` is the rule itself)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = Field(description="a fixed policy kind: none, blanket, segment_rules, ltv_coupon")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    epsilon: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("kind")
    @classmethod
    def _fixed(cls, kind: str) -> str:
        allowed = ("none", "blanket", "segment_rules", "ltv_coupon")
        if kind not in allowed:
            raise ValueError(f"kind {kind!r} is not a fixed rule; allowed: {list(allowed)}")
        return kind


class ValidateConfig(BaseModel):
    """The OPE validation experiment (see ``configs/ope/validate.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    scenario: str = "default"
    overrides: dict[str, Any] = Field(default_factory=dict)
    horizon_days: int = Field(ge=1, le=3650)
    logger: PolicySpec
    candidates: list[PolicySpec] = Field(min_length=1, max_length=8)
    replications: int = Field(ge=2, le=200)
    sizes: list[int] = Field(min_length=1)
    clip: float = Field(100.0, gt=0)
    tau: float = Field(10.0, ge=0)
    folds: int = Field(2, ge=1, le=10)
    seed: int = Field(0, ge=0)
    workers: int = Field(1, ge=1, le=64)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(s < 10 for s in sizes):
            raise ValueError(f"every log size must be >= 10, got {sizes}")
        return sorted(set(sizes))


def load_validate_config(path: str | Path) -> ValidateConfig:
    """Read and validate a validation config; one bounded message on error."""
    data = read_yaml_mapping(path, "off-policy validation config", ConfigError)
    try:
        return ValidateConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(
            format_validation_errors(error, f"invalid off-policy validation config {path}")
        ) from None


# ---- simulating a shop under a policy -------------------------------------------------------------
def action_dist(
    policy: Any, epsilon: float, context: NDArray[Any], masks: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Probabilities ``(n, n_actions)`` of epsilon-greedy over ``policy``'s rule, uniform over allowed."""
    greedy, _ = policy.predict(np.asarray(context, dtype=np.float64), action_masks=masks)
    greedy = np.asarray(greedy, dtype=np.int64).reshape(-1)
    dist = epsilon * masks / masks.sum(axis=1, keepdims=True)
    dist[np.arange(greedy.size), greedy] += 1.0 - epsilon
    return np.asarray(dist, dtype=np.float64)


def run_shop(config: ValidateConfig, spec: PolicySpec, replication: int) -> dict[str, Any]:
    """One episode of the shop under ``spec``: its logged feedback (with masks) and its true value."""
    import gymnasium as gym

    import sim  # noqa: F401 (registers the environments)
    from policies.base import env_spec
    from policies.registry import make_policy
    from sim.envs.targeting import IncentiveTargetingEnv

    env = cast(
        IncentiveTargetingEnv,
        gym.make(
            "shopgym/IncentiveTargeting-v0",
            scenario=config.scenario,
            overrides=config.overrides,
            horizon_days=config.horizon_days,
            reward_scale=1.0,  # rewards in dollars of attributed net margin
        ).unwrapped,
    )
    policy = make_policy(spec.kind, env_spec(env), seed=0, **spec.kwargs)
    seed = config.seed + replication
    explore = np.random.default_rng([seed, 1])  # the same exploration draws for every policy
    obs, _ = env.reset(seed=seed)
    masks, done = [], False
    while not done:
        mask = env.action_masks()
        dist = action_dist(policy, spec.epsilon, obs[None], mask[None])[0]
        action = int(min(np.searchsorted(np.cumsum(dist), explore.random(), side="right"), dist.size - 1))
        env.record_propensity(float(dist[action]))
        masks.append(mask)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    feedback = env.bandit_feedback()
    if feedback["n_rounds"] != len(masks):
        raise RuntimeError(f"{feedback['n_rounds']} logged rounds for {len(masks)} decisions")
    feedback["action_mask"] = np.asarray(masks, dtype=np.bool_)
    feedback["value"] = float(feedback["reward"].mean()) if len(masks) else float("nan")
    return feedback


def _job(args: tuple[ValidateConfig, PolicySpec, int, Path]) -> tuple[str, int, dict[str, Any]]:
    """One shop run, read from its finished file if an earlier (interrupted) run left one."""
    config, spec, replication, shops = args
    path = shops / f"{spec.name}-{replication:04d}.npz"
    if path.is_file():
        try:
            return spec.name, replication, _read_shop(path)
        except (OSError, ValueError, KeyError):
            pass  # a damaged file: simulate again
    feedback = run_shop(config, spec, replication)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **{key: np.asarray(value) for key, value in feedback.items()})  # type: ignore[arg-type]
    tmp.replace(path)
    return spec.name, replication, feedback


def _read_shop(path: Path) -> dict[str, Any]:
    """A finished shop run's feedback (plain arrays: never unpickled)."""
    with np.load(path, allow_pickle=False) as data:
        feedback: dict[str, Any] = {key: data[key] for key in data.files}
    for key in ("n_rounds", "n_actions"):
        feedback[key] = int(feedback[key])
    feedback["value"] = float(feedback["value"])
    return feedback


def shops_dir(config: ValidateConfig, out: Path) -> Path:
    """Where the shop runs of ``config`` are kept: keyed by everything but ``workers``, so a rerun resumes."""
    key = config.model_dump(mode="json", exclude={"workers"})
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return out / f"shops-{digest}"


def evaluate_replication(
    config: ValidateConfig, log: Mapping[str, Any], truths: Mapping[str, float], replication: int
) -> list[dict[str, Any]]:
    """Every estimator's estimate of every candidate from subsamples of one replication's log."""
    from policies.registry import make_policy

    rows = []
    n_log = int(log["n_rounds"])
    n_actions = int(log["n_actions"])
    spec_env = _spec(config)
    for size in config.sizes:
        if size > n_log:
            raise ConfigError(
                f"sizes: {size} exceeds the {n_log} decisions the logging run made; raise "
                "population.shoppers or horizon_days, or lower the size"
            )
        pick = np.sort(np.random.default_rng([config.seed + replication, size]).permutation(n_log)[:size])
        sample = {key: log[key][pick] for key in ("context", "action", "reward", "pscore", "action_mask")}
        q_hat = cross_fit_q_hat(sample, n_actions, config.folds, seed=replication)
        for candidate in config.candidates:
            policy = make_policy(candidate.kind, spec_env, seed=0, **candidate.kwargs)
            dist = action_dist(policy, candidate.epsilon, sample["context"], sample["action_mask"])
            weight = dist[np.arange(size), sample["action"]] / sample["pscore"]
            for name, estimate in estimate_all(sample, dist, q_hat, config.clip, config.tau).items():
                rows.append(
                    {
                        "replication": replication,
                        "candidate": candidate.name,
                        "size": size,
                        "estimator": name,
                        "estimate": estimate.value,
                        "ci_low": estimate.ci_low,
                        "ci_high": estimate.ci_high,
                        "truth": truths[candidate.name],
                        "logger_value": float(log["value"]),
                        "max_weight": float(weight.max()),
                        "ess_share": float(weight.sum() ** 2 / (weight @ weight) / size)
                        if weight.any()
                        else 0.0,
                    }
                )
    return rows


def _spec(config: ValidateConfig) -> Any:
    import gymnasium as gym

    import sim  # noqa: F401
    from policies.base import env_spec

    env = gym.make(
        "shopgym/IncentiveTargeting-v0",
        scenario=config.scenario,
        overrides=config.overrides,
        horizon_days=config.horizon_days,
    )
    return env_spec(env.unwrapped)


def summarize_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE, relative RMSE and CI coverage per candidate, estimator and log size."""
    frame = frame.assign(
        error=frame["estimate"] - frame["truth"],
        covered=(frame["ci_low"] <= frame["truth"]) & (frame["truth"] <= frame["ci_high"]),
    )
    grouped = frame.groupby(["candidate", "size", "estimator"], sort=False)
    out = grouped.agg(
        truth=("truth", "mean"),
        bias=("error", "mean"),
        rmse=("error", lambda e: float(np.sqrt(np.mean(np.square(e))))),
        coverage=("covered", "mean"),
        ess_share=("ess_share", "mean"),
        max_weight=("max_weight", "mean"),
        replications=("error", "size"),
    ).reset_index()
    out["rel_rmse"] = out["rmse"] / out["truth"].abs()
    return out


def summary_markdown(summary: pd.DataFrame, config: ValidateConfig, truths: pd.DataFrame) -> str:
    """The validation's tables: one per candidate, rows log sizes, columns estimators."""
    lines = [
        f"# OPE validation: {config.name}",
        "",
        f"Logger: {config.logger.kind} with epsilon {config.logger.epsilon}; {config.replications} "
        f"replications; weights clipped at {config.clip} (IPS, SNIPS, DR); switch-DR tau {config.tau}. "
        "Truth: the candidate's mean attributed net margin per decision ($) when it runs the same shop "
        "on-policy with the same seed. rel RMSE = RMSE / |mean truth|; coverage of the 95% CI.",
        "",
        "| policy | true value per decision ($, mean over replications) | sd over replications |",
        "|---|---|---|",
    ]
    for name, row in truths.iterrows():
        lines.append(f"| {name} | {row['mean']:.4f} | {row['std']:.4f} |")
    for candidate, part in summary.groupby("candidate", sort=False):
        lines += ["", f"## {candidate}", ""]
        ess = part.groupby("size")["ess_share"].first()
        lines.append("| size | effective sample share | " + " | ".join(ESTIMATORS) + " |")
        lines.append("|---" * (len(ESTIMATORS) + 2) + "|")
        for size, rows in part.groupby("size"):
            by = rows.set_index("estimator")
            cells = [
                f"{by.loc[e, 'rel_rmse']:.1%} / {by.loc[e, 'bias']:+.3f} / {by.loc[e, 'coverage']:.0%}"
                for e in ESTIMATORS
            ]
            lines.append(f"| {size:,} | {ess.loc[size]:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("cells: relative RMSE / bias ($ per decision) / 95% CI coverage")
    return "\n".join(lines) + "\n"


def plot_validation(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Relative RMSE and CI coverage against log size, one panel per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidates = list(dict.fromkeys(summary["candidate"]))
    paths = []
    for metric, label, log_y in (("rel_rmse", "relative RMSE", True), ("coverage", "95% CI coverage", False)):
        fig, axes = plt.subplots(1, len(candidates), figsize=(5 * len(candidates), 4), squeeze=False)
        for ax, candidate in zip(axes[0], candidates, strict=True):
            part = summary[summary["candidate"] == candidate]
            for estimator in ESTIMATORS:
                rows = part[part["estimator"] == estimator]
                ax.plot(rows["size"], rows[metric], marker="o", label=estimator)
            ax.set_xscale("log")
            if log_y:
                ax.set_yscale("log")
                ax.axhline(0.10, color="grey", linestyle="--", linewidth=1, label="10%")
            else:
                ax.axhline(0.95, color="grey", linestyle="--", linewidth=1, label="95%")
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(candidate)
            ax.set_xlabel("logged decisions")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{metric}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths


def run_validation(config: ValidateConfig, out: str | Path, quiet: bool = False) -> Path:
    """Simulate, estimate and report; returns the output directory."""
    from rich.progress import Progress

    root = Path(out)
    shops = shops_dir(config, root)
    shops.mkdir(parents=True, exist_ok=True)  # each finished shop run is kept: an interrupted run resumes
    jobs = [
        (config, spec, r, shops)
        for r in range(config.replications)
        for spec in (config.logger, *config.candidates)
    ]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with Progress(disable=quiet) as progress:
        task = progress.add_task("simulating shops", total=len(jobs))
        if config.workers > 1:
            with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
                for name, replication, feedback in pool.imap_unordered(_job, jobs):
                    results[(name, replication)] = feedback
                    progress.advance(task)
        else:
            for job in jobs:
                name, replication, feedback = _job(job)
                results[(name, replication)] = feedback
                progress.advance(task)
        rows: list[dict[str, Any]] = []
        task = progress.add_task("estimating", total=config.replications)
        for r in range(config.replications):
            truths = {c.name: results[(c.name, r)]["value"] for c in config.candidates}
            rows += evaluate_replication(config, results[(config.logger.name, r)], truths, r)
            progress.advance(task)
    frame = pd.DataFrame(rows)
    summary = summarize_validation(frame)
    values = pd.DataFrame(
        [
            {"policy": name, "replication": r, "value": f["value"], "rounds": f["n_rounds"]}
            for (name, r), f in results.items()
        ]
    )
    truths = values.groupby("policy")["value"].agg(["mean", "std"])
    atomic_write_parquet(frame, root / "estimates.parquet")
    atomic_write_parquet(summary, root / "summary.parquet")
    atomic_write_parquet(values, root / "values.parquet")
    (root / "summary.tmp.md").write_text(summary_markdown(summary, config, truths))
    (root / "summary.tmp.md").replace(root / "summary.md")
    atomic_write_json(config.model_dump(), root / "config.resolved.json")
    plot_validation(summary, root)
    return root


# ---- production logs ----------------------------------------------------------------------------
def estimate_from_feedback(
    feedback: Mapping[str, Any], candidate: Any, clip: float = 100.0, tau: float = 10.0, folds: int = 2
) -> dict[str, Any]:
    """Every estimator's value of an exported candidate on joined feedback.

    The candidate acts by its action distribution over each round's allowed incentives: one-hot
    on its decision for a deterministic artifact, its trained distribution for a stochastic one.
    """
    dist = candidate.action_probabilities(
        np.asarray(feedback["raw_context"]), np.asarray(feedback["action_mask"])
    )
    q_hat = cross_fit_q_hat(feedback, int(feedback["n_actions"]), folds)
    return {name: e.__dict__ for name, e in estimate_all(feedback, dist, q_hat, clip, tau).items()}


def _save_feedback(feedback: Mapping[str, Any], path: Path) -> None:
    arrays = {
        k: np.asarray(v) for k, v in feedback.items() if k not in ("n_rounds", "n_actions", "request_id")
    }
    tmp = path.with_name(f".{path.name}.tmp.npz")
    arrays["n_rounds"] = np.asarray(feedback["n_rounds"])
    arrays["n_actions"] = np.asarray(feedback["n_actions"])
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def load_feedback(path: str | Path) -> dict[str, Any]:
    """Joined feedback written by ``shopgym ope join`` (an ``.npz`` of plain arrays: never unpickled)."""
    with np.load(path, allow_pickle=False) as data:
        return {
            key: (int(data[key]) if key in ("n_rounds", "n_actions") else data[key]) for key in data.files
        }


def _cmd_validate(args: argparse.Namespace) -> int:
    config = load_validate_config(args.config)
    root = run_validation(config, args.out, quiet=args.quiet)
    print((root / "summary.md").read_text())
    print(f"wrote {root}/summary.md, estimates.parquet, summary.parquet, rel_rmse.png, coverage.png")
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    from policies.decision_log import join_feedback, read_decisions, read_orders
    from policies.runtime import load_policy

    policy = load_policy(args.artifact)
    feedback = join_feedback(
        read_decisions(args.log_dir),
        read_orders(args.orders),
        policy.feature_names,
        policy.layout.obs_scales,
        policy.action_names,
        policy.layout.obs_clip,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_feedback(feedback, out)
    print(
        f"joined {feedback['n_rounds']} decisions; total margin {feedback['reward'].sum():,.2f}; wrote {out}"
    )
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from policies.runtime import load_policy

    policy = load_policy(args.artifact)  # checked first: an edited artifact is refused before any log is read
    estimates = estimate_from_feedback(load_feedback(args.feedback), policy, args.clip, args.tau)
    print(json.dumps(estimates, indent=2))
    return 0


def add_ope_parser(sub: Any) -> None:
    """The ``shopgym ope`` command and its subcommands."""
    ope = sub.add_parser(
        "ope",
        help="off-policy evaluation: join production logs, estimate a candidate, validate against the truth",
        description="Off-policy evaluation with DM, IPS, SNIPS, DR and switch-DR (weights clipped).",
    )
    commands = ope.add_subparsers(dest="ope_command", required=True)
    validate = commands.add_parser(
        "validate",
        help="score every estimator against the simulator's true policy values (bias, RMSE, coverage)",
    )
    validate.add_argument("config", help="validation YAML, e.g. configs/ope/validate.yaml")
    validate.add_argument("--out", required=True, help="output folder")
    validate.add_argument("--quiet", action="store_true", help="no progress bars")
    validate.set_defaults(func=_cmd_validate)
    join = commands.add_parser("join", help="decision log + orders log -> OBP logged bandit feedback (.npz)")
    join.add_argument("log_dir", help="the --log-dir of shopgym serve")
    join.add_argument("orders", help="orders log: JSON lines {request_id, margin}")
    join.add_argument("--artifact", required=True, help="the served artifact (its feature schema)")
    join.add_argument("--out", required=True, help="feedback file to write (.npz)")
    join.set_defaults(func=_cmd_join)
    estimate = commands.add_parser(
        "estimate", help="estimate an exported candidate's value from joined feedback"
    )
    estimate.add_argument("feedback", help="the .npz written by shopgym ope join")
    estimate.add_argument("--artifact", required=True, help="the candidate policy's artifact directory")
    estimate.add_argument("--clip", type=float, default=100.0, help="importance-weight cap (default 100)")
    estimate.add_argument("--tau", type=float, default=10.0, help="switch-DR threshold (default 10)")
    estimate.set_defaults(func=_cmd_estimate)
