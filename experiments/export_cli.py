"""``shopgym export`` and ``shopgym bench export``: production artifacts and their decision latency.

``export`` writes a trained policy as ``policy.onnx`` (SB3) or ``policy.json`` (baselines,
bandits) plus ``policy_card.json`` (:mod:`policies.export`). ``bench export`` measures what a
serving process pays per decision through :mod:`policies.runtime`, pinned to one core: the
50th and 99th percentile of one ``decide`` call (features by name in, incentive name out,
validation and normalization included) and the throughput of ``decide_batch`` on batches,
for the onnxruntime path (PPO and MaskablePPO networks) and the numpy path (a linear bandit
and the segment playbook), against a real-time budget of 50 ms per decision and a target of
100 microseconds at the 99th percentile.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.table import Table

from experiments.terminal import make_console

#: Real-time budget of one decision (a page render waits on it), in milliseconds.
BUDGET_MS = 50.0
#: Latency target of one decision at the 99th percentile, in microseconds.
TARGET_P99_US = 100.0
#: The small shop the bench draws real observations from and builds its artifacts on.
BENCH_OVERRIDES = {"population.shoppers": 500, "population.acquisition_days": 5.0}
#: Policies the bench exports when no artifact is given: (kind, path the runtime takes).
BENCH_POLICIES = (
    ("ppo", "onnxruntime"),
    ("maskable_ppo", "onnxruntime"),
    ("lin_ucb", "numpy"),
    ("segment_rules", "numpy"),
)

_console = make_console(stderr=True)


# ---- shopgym export --------------------------------------------------------------------------
def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs to scenario overrides (values parsed as YAML: numbers, lists, booleans)."""
    import yaml

    from experiments.config import plain_json
    from sim.params import safe_yaml_load

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        shown = repr(item) if len(item) <= 80 else repr(item[:76]) + " ..."
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(
                f"--set {shown}: expected KEY=VALUE, e.g. population.shoppers=5000"
            )
        try:
            parsed = safe_yaml_load(value)
            plain_json(parsed, key.strip())
        except yaml.YAMLError:
            raise argparse.ArgumentTypeError(
                f"--set {shown}: the value is not plain YAML data (a number, a string, a list "
                "or a mapping, brackets balanced, no !! tags); quote a string that holds brackets"
            ) from None
        except ValueError as problem:
            raise argparse.ArgumentTypeError(f"--set {shown}: {problem}") from None
        overrides[key.strip()] = parsed
    return overrides


def run_export(args: argparse.Namespace) -> int:
    """Handle ``shopgym export``."""
    from policies.export import ExportError, export_policy
    from policies.runtime import ArtifactError

    try:
        card_path = export_policy(
            args.source,
            args.out,
            policy=args.policy,
            seed=args.seed,
            variant=args.variant,
            scenario=args.scenario,
            overrides=_parse_overrides(args.set) or None,
            eval_episodes=args.eval_episodes,
            check_samples=args.check_samples,
        )
    except (ExportError, ArtifactError, argparse.ArgumentTypeError) as error:
        print(f"shopgym export: {error}", file=sys.stderr)
        return 2
    card = json.loads(card_path.read_text())
    model = card["model"]
    parity = card["parity"]
    _console.print(
        f"wrote {card_path.parent}/{model['file']} ({model['bytes']:,} bytes, {model['format']}) and "
        f"{card_path.name}: {card['policy']['kind']} on {card['env_id']}, "
        f"scenario {card['scenario']['config_hash']}; "
        f"parity {parity['agreement']:.0%} on {parity['samples']:,} observations"
    )
    return 0


def add_export_parser(sub: Any) -> None:
    """Add the ``export`` subcommand to the ``shopgym`` parser's subparsers."""
    export = sub.add_parser(
        "export",
        help="write a trained policy as a production artifact (ONNX or JSON plus a policy card)",
        description=(
            "Write a self-contained artifact for policies.runtime.load_policy (numpy and onnxruntime only): "
            "policy.onnx for SB3 models (ppo, a2c, dqn, maskable_ppo with the mask as an input), policy.json "
            "for baselines and bandits, and policy_card.json (features in order with units, dtypes and "
            "scales, clip bounds, incentive names, scenario config hash, package versions, training "
            "config, evaluation metrics, the model file's SHA-256). Before writing, the artifact must "
            "choose the in-process policy's deterministic action on every checked observation. "
            "The 'random' policy has no deterministic decision and is refused."
        ),
    )
    export.add_argument(
        "source",
        metavar="SOURCE",
        help="a saved policy directory (holding policy.json, and weights.npz for SB3) or a run directory "
        "of `shopgym run` (then pick the model with --policy/--seed)",
    )
    export.add_argument(
        "--out", required=True, help="artifact directory (created; files replaced atomically)"
    )
    export.add_argument("--policy", help="run directory: the policy's name in the config")
    export.add_argument("--seed", type=int, help="run directory: the training seed of the model")
    export.add_argument("--variant", help="run directory: the scenario variant (needed with several)")
    export.add_argument(
        "--scenario",
        help="the scenario the model was trained on "
        "(default: the run's, else configs/scenarios/default.yaml)",
    )
    export.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario override, repeatable (e.g. --set population.shoppers=5000)",
    )
    export.add_argument(
        "--eval-episodes",
        type=int,
        default=0,
        help="saved policy: evaluate this many episodes for the card's metrics "
        "(a run's come from its results.parquet)",
    )
    export.add_argument(
        "--check-samples",
        type=int,
        default=2000,
        help="observations the parity check compares (default 2000)",
    )
    export.set_defaults(func=run_export)


# ---- shopgym bench export --------------------------------------------------------------------
def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    """Options of ``shopgym bench export`` (added to the ``bench`` parser)."""
    bench.add_argument(
        "--decisions",
        type=int,
        default=20000,
        help="export: single decisions timed per policy (default 20000)",
    )
    bench.add_argument(
        "--batch-size", type=int, default=1000, help="export: rows per decide_batch call (default 1000)"
    )
    bench.add_argument(
        "--batches", type=int, default=50, help="export: decide_batch calls timed per policy (default 50)"
    )
    bench.add_argument(
        "--artifact",
        action="append",
        default=[],
        metavar="DIR",
        help="export: time these exported artifacts instead of freshly exported ppo, maskable_ppo, lin_ucb "
        "and segment_rules (repeatable)",
    )


def run_bench_export(args: argparse.Namespace) -> int:
    """Handle ``shopgym bench export``."""
    from policies.runtime import ArtifactError

    try:
        records = bench_export(
            decisions=args.decisions,
            batch_size=args.batch_size,
            batches=args.batches,
            artifacts=[Path(a) for a in args.artifact],
            quiet=args.json,
        )
    except ArtifactError as error:  # a given --artifact that is broken or hostile: one line
        print(f"shopgym bench export: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        make_console().print(format_export_table(records))
    return 0


def bench_export(
    decisions: int = 20000,
    batch_size: int = 1000,
    batches: int = 50,
    artifacts: Sequence[Path] = (),
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Time single decisions and batches of each artifact on one core; one record per artifact."""
    if min(decisions, batch_size, batches) < 1:
        raise ValueError("--decisions, --batch-size and --batches must be >= 1")
    from policies.runtime import load_policy

    for path in artifacts:  # a broken or hostile artifact is refused before the bench's set-up
        load_policy(path, threads=1)
    rows, allowed = _real_features(max(decisions, batch_size), quiet)
    with tempfile.TemporaryDirectory(prefix="shopgym-bench-export-") as tmp:
        paths = list(artifacts) or _bench_artifacts(Path(tmp), rows, quiet)
        records = []
        for path in paths:
            policy = load_policy(path, threads=1)
            path_kind = "onnxruntime" if policy.card["model"]["format"] == "onnx" else "numpy"
            if not quiet:
                _console.print(f"timing {policy.kind} ({path_kind}) ...")
            with one_core() as core:
                single = _single_latencies_us(policy, rows, decisions, None)
                eligible = _single_latencies_us(policy, rows, decisions, allowed)
                per_batch = _batch_seconds(policy, rows, batch_size, batches)
            records.append(
                {
                    "policy": policy.kind,
                    "path": path_kind,
                    "artifact": str(path) if artifacts else None,
                    "core": core,
                    "decisions": decisions,
                    "single_p50_us": float(np.percentile(single, 50)),
                    "single_p99_us": float(np.percentile(single, 99)),
                    "single_p999_us": float(np.percentile(single, 99.9)),
                    "eligible_p50_us": float(np.percentile(eligible, 50)),
                    "eligible_p99_us": float(np.percentile(eligible, 99)),
                    "batch_size": batch_size,
                    "batch_p50_ms": float(np.median(per_batch) * 1e3),
                    "batch_decisions_per_s": float(batch_size / np.median(per_batch)),
                    "budget_ms": BUDGET_MS,
                    "target_p99_us": TARGET_P99_US,
                    "meets_target": bool(np.percentile(single, 99) <= TARGET_P99_US),
                    "within_budget": bool(np.percentile(single, 99) <= BUDGET_MS * 1e3),
                }
            )
    return records


def format_export_table(records: Sequence[dict[str, Any]]) -> Table:
    """The bench records as a table, with the verdict against the target and the budget."""
    table = Table(
        title=(
            f"shopgym bench export: one decision, one core (target p99 <= {TARGET_P99_US:g} us, "
            f"budget {BUDGET_MS:g} ms)"
        )
    )
    for column in (
        "path",
        "policy",
        "p50 us",
        "p99 us",
        "p99 us, eligible",
        "batch",
        "batch ms",
        "batched/s",
        "p99 target",
        "p99 / budget",
    ):
        table.add_column(column, justify="left" if column in ("path", "policy") else "right")
    for r in records:
        table.add_row(
            r["path"],
            r["policy"],
            f"{r['single_p50_us']:.1f}",
            f"{r['single_p99_us']:.1f}",
            f"{r['eligible_p99_us']:.1f}",
            f"{r['batch_size']:,}",
            f"{r['batch_p50_ms']:.2f}",
            f"{r['batch_decisions_per_s']:,.0f}",
            "met" if r["meets_target"] else "MISSED",
            f"{r['single_p99_us'] / (r['budget_ms'] * 1e3):.3%}",
        )
    return table


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin every thread of this process to one CPU core for the block (Linux); yield the core."""
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    core = min(before)
    tasks = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in tasks:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, {core})
    try:
        yield core
    finally:
        for tid in tasks:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before)


def _real_features(n: int, quiet: bool) -> tuple[list[dict[str, float]], list[set[str]]]:
    """Raw features and eligible incentive names of ``n`` real decisions (random masked actions)."""
    import gymnasium as gym

    import sim  # noqa: F401 (registers the environments)
    from policies.base import env_spec

    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=BENCH_OVERRIDES, horizon_days=15)
    spec = env_spec(env)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    rows, allowed, episode = [], [], 0
    if not quiet:
        _console.print(f"collecting {min(n, 5000):,} real decisions ...")
    scales = np.asarray(spec.obs_scales)
    for _ in range(min(n, 5000)):
        mask = env.unwrapped.action_masks()  # type: ignore[attr-defined]
        raw = obs.astype(np.float64) * scales
        rows.append(dict(zip(spec.obs_fields, raw.tolist(), strict=True)))
        allowed.append({spec.action_names[i] for i in np.flatnonzero(mask)})
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=episode)
    env.close()
    return rows, allowed


def _bench_artifacts(where: Path, rows: list[dict[str, float]], quiet: bool) -> list[Path]:
    """Export the bench's policies: untrained default-size SB3 networks, a fitted LinUCB, the playbook."""
    import gymnasium as gym

    from policies.export import export_policy
    from policies.registry import make_policy

    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=BENCH_OVERRIDES, horizon_days=15)
    paths = []
    for kind, _ in BENCH_POLICIES:
        if not quiet:
            _console.print(f"exporting {kind} ...")
        policy = make_policy(kind, env, seed=0)
        if kind == "lin_ucb":  # fitted on real contexts, so its weights are not all zero
            spec = policy.spec  # type: ignore[attr-defined]
            obs = np.array([[r[f] for f in spec.obs_fields] for r in rows[:2000]]) / np.asarray(
                spec.obs_scales
            )
            rng = np.random.default_rng(1)
            actions = rng.integers(0, spec.n_actions, obs.shape[0])
            policy.update(obs, actions, rng.normal(obs[:, 0] - 0.1 * actions, 1.0), np.zeros(obs.shape[0]))
        policy.save(where / "saved" / kind)
        paths.append(export_policy(where / "saved" / kind, where / kind, overrides=BENCH_OVERRIDES).parent)
    env.close()
    return paths


def _single_latencies_us(
    policy: Any, rows: list[dict[str, float]], n: int, allowed: list[set[str]] | None
) -> NDArray[np.float64]:
    """Wall time of ``n`` single ``decide`` calls in microseconds (after a warm-up)."""
    timer = time.perf_counter_ns
    m = len(rows)
    for i in range(min(n, 1000)):
        policy.decide(rows[i % m], None if allowed is None else allowed[i % m])
    out = np.empty(n)
    gc.collect()
    for i in range(n):
        row = rows[i % m]
        eligible = None if allowed is None else allowed[i % m]
        start = timer()
        policy.decide(row, eligible)
        out[i] = timer() - start
    return out / 1e3


def _batch_seconds(
    policy: Any, rows: list[dict[str, float]], batch_size: int, batches: int
) -> NDArray[np.float64]:
    """Wall time of ``batches`` ``decide_batch`` calls on arrays of ``batch_size`` rows, in seconds."""
    names = policy.feature_names
    table = np.array([[r[f] for f in names] for r in rows])
    reps = -(-batch_size // table.shape[0])
    data = np.tile(table, (reps, 1))[:batch_size]
    policy.decide_batch(data)  # warm-up
    out = np.empty(batches)
    for k in range(batches):
        start = time.perf_counter()
        policy.decide_batch(data)
        out[k] = time.perf_counter() - start
    return out
