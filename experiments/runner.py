"""``shopgym run``: train and evaluate every policy on every seed, resumably, then report.

Reading order (cleanrl's): the config is validated completely first; the run directory gets
the resolved config and the versions; then each cell (variant x policy x seed) trains its
policy, saves it and evaluates it on the seed's evaluation episodes; a cell's files are
written atomically and its ``done.json`` last, so a killed run keeps every finished cell and
a re-run skips them. Finally the cells are gathered into ``results.parquet`` and
:mod:`experiments.report` writes ``summary.md`` and ``plots/``.

Common random numbers: evaluation episode ``k`` of seed ``s`` is reset with
:func:`eval_seed` ``(s) + k`` for every policy, so policies face the same shoppers and draws,
and paired differences cancel most of the noise. Training uses different seeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import sim  # noqa: F401 (registers the environments in worker processes too)
from experiments.config import ConfigError, ExperimentConfig
from experiments.terminal import make_console, package_version
from sim.io import atomic_write_json, atomic_write_parquet, atomic_write_text

#: Packages whose versions are recorded with every run.
RECORDED_PACKAGES = (
    "shopgym",
    "numpy",
    "simpy",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "torch",
    "pandas",
)
ProgressHook = Callable[[str, float], None]


def eval_seed(seed: int) -> int:
    """First evaluation-episode seed of an experiment seed (the same for every policy)."""
    return 10_000 * (seed + 1)


def train_seed(seed: int) -> int:
    """First training-episode seed of an experiment seed (disjoint from evaluation seeds)."""
    return 10_000 * (seed + 1) + 5_000


def cell_dir(out: Path, variant: str, policy: str, seed: int) -> Path:
    """Where one cell's results go."""
    return _inside(out, "cells", variant, policy, f"seed{seed}")


def model_dir(out: Path, variant: str, policy: str, seed: int) -> Path:
    """Where one cell's trained policy is saved (``policy.save``'s directory)."""
    return _inside(out, "models", variant, policy, f"seed{seed}")


def _inside(out: Path, *names: str) -> Path:
    """``out/names...``, checked to resolve inside the run directory ``out``.

    Config names are validated at load too; this is the last line of defence: ``.`` would
    collide with another cell, ``..`` would write beside the run.
    """
    for name in names:
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ConfigError(f"name {name!r} would resolve outside its folder in {out}; rename it")
    path = out.joinpath(*names)
    if not path.resolve().is_relative_to(out.resolve()):
        raise ConfigError(
            f"{path} would resolve outside the run directory {out}; rename the variant or policy"
        )
    return path


def versions() -> dict[str, str]:
    """Installed versions of the packages results depend on."""
    found = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_sha() -> str | None:
    """The source tree's commit (with ``-dirty`` when it has local changes), if it is a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


# ---- one cell ------------------------------------------------------------------------------------
def run_cell(
    config_json: str,
    variant: str,
    policy_name: str,
    seed: int,
    out: str,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Train, save and evaluate one policy on one seed; write the cell's files; return its row count.

    Top-level and argument-only (a JSON config), so process pools and Ray can run it.
    """
    from policies.base import env_spec
    from policies.baselines import SEGMENTS, SegmentRules
    from policies.evaluate import evaluate
    from policies.registry import ONLINE_KINDS, RL_KINDS, make_policy, plugin_training

    config = ExperimentConfig.model_validate_json(config_json)
    arm = config.policy(policy_name)
    root = Path(out)
    env = gym.make(config.env.id, **config.env_kwargs(variant))
    scenario_hash = env.unwrapped.scenario.config_hash()  # type: ignore[attr-defined]
    expected = scenario_hashes(config)[variant]
    if scenario_hash != expected:  # checked before any training: a mismatch could never be gathered
        raise ConfigError(
            f"variant {variant!r}: {config.env.id} runs on scenario {scenario_hash}, but the run records "
            f"{expected} for it; report this as a shopgym bug"
        )
    spec = env_spec(env, config.env.id)
    tensorboard = root / "tensorboard" / f"{variant}__{policy_name}__seed{seed}"
    policy = make_policy(arm.kind, env, seed, tensorboard_log=tensorboard, **arm.kwargs)
    report = progress or (lambda stage, fraction: None)

    curve: list[dict[str, Any]] = []
    plugin = plugin_training(arm.kind)  # None for built-in kinds
    if (arm.kind in RL_KINDS or plugin == "timesteps") and config.training.timesteps > 0:
        from experiments.curves import LearningCurve

        callback = LearningCurve(config.training.timesteps, lambda f: report("training", f))
        policy.learn(config.training.timesteps, callback=callback)  # type: ignore[attr-defined]
        curve = callback.rows
    elif (arm.kind in ONLINE_KINDS or plugin == "episodes") and config.training.episodes > 0:
        for k in range(config.training.episodes):
            record = evaluate(policy, env, 1, train_seed(seed) + k, learn=True)[0]
            curve.append({"x": k + 1, "x_unit": "episodes", "return": record.row["return"]})
            report("training", (k + 1) / config.training.episodes)
    policy.save(model_dir(root, variant, policy_name, seed))

    per_shopper = spec.heads == ("shopper",)
    segmenter = SegmentRules(spec) if per_shopper else None

    def segment_of(obs: Any) -> str:
        assert segmenter is not None
        return SEGMENTS[int(segmenter.segments(np.asarray(obs, dtype=np.float64)[None, :])[0])]

    episodes = config.evaluation.episodes
    records = []
    if _batched_evaluation(config, arm.kind):
        from gymnasium.vector import AutoresetMode

        from policies.evaluate import evaluate_vector

        envs = gym.make_vec(
            config.env.id,
            num_envs=min(episodes, EVAL_SUB_ENVS),
            vectorization_mode="vector_entry_point",
            autoreset_mode=AutoresetMode.DISABLED,
            **config.env_kwargs(variant),
        )
        finished = [0]

        def one_done() -> None:
            finished[0] += 1
            report("evaluating", finished[0] / episodes)

        records = evaluate_vector(
            policy,
            envs,
            episodes,
            eval_seed(seed),
            deterministic=True,
            segment_of=segment_of if per_shopper else None,
            on_episode=one_done,
        )
        envs.close()
    for k in range(len(records), episodes):
        records += evaluate(
            policy,
            env,
            1,
            eval_seed(seed) + k,
            learn=config.evaluation.learn,
            deterministic=config.evaluation.deterministic,
            segment_of=segment_of if per_shopper else None,
        )
        records[-1].row["episode"] = k
        report("evaluating", (k + 1) / episodes)
    env.close()

    keys = {"variant": variant, "policy": policy_name, "kind": arm.kind, "seed": seed}
    episodes_frame = pd.DataFrame([{**keys, **r.row} for r in records])
    dailies = [r.daily.assign(episode=k) for k, r in enumerate(records) if r.daily is not None]
    mix = pd.DataFrame(
        [
            {**keys, "episode": k, "segment": segment, "incentive": incentive, "count": count}
            for k, r in enumerate(records)
            for (segment, incentive), count in r.incentive_mix.items()
        ]
    )
    customers = [r.customers.assign(episode=k) for k, r in enumerate(records) if r.customers is not None]
    where = cell_dir(root, variant, policy_name, seed)
    (where / "daily.parquet").unlink(missing_ok=True)  # a stale file of an earlier, different attempt
    (where / "customers.parquet").unlink(missing_ok=True)
    if customers:  # a twins scenario: each real customer's incentives and margin, joinable by id
        atomic_write_parquet(
            pd.concat(customers, ignore_index=True).assign(**keys), where / "customers.parquet"
        )
    atomic_write_parquet(episodes_frame, where / "episodes.parquet")
    if dailies:
        daily = pd.concat(dailies).reset_index(names="day").assign(**keys)
        atomic_write_parquet(daily, where / "daily.parquet")
    atomic_write_parquet(mix, where / "mix.parquet")
    atomic_write_parquet(pd.DataFrame([{**keys, **row} for row in curve]), where / "curve.parquet")
    files = {p.name: _sha256(p) for p in sorted(where.glob("*.parquet"))}
    done = {**keys, "episodes": len(records), "scenario_hash": scenario_hash, "files": files}
    atomic_write_json(done, where / "done.json")
    return keys


#: Sub-envs of the native vector env a batched evaluation runs on.
EVAL_SUB_ENVS = 64


def _batched_evaluation(config: ExperimentConfig, kind: str) -> bool:
    """Whether a cell evaluates on the env's native vector env, with records identical to one by one.

    Only where nothing depends on episode order or on the single env: greedy actions, no
    learning during evaluation, and not the oracle (it reads the single env's true state).
    """
    from policies.registry import ORACLE_KINDS

    spec = gym.spec(config.env.id)
    return (
        spec.vector_entry_point is not None
        and config.evaluation.deterministic
        and not config.evaluation.learn
        and kind not in ORACLE_KINDS
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell_problem(
    out: Path, variant: str, policy: str, seed: int, scenario_hash: str | None = None
) -> str | None:
    """Why a cell's files cannot be used (``None``: finished and intact).

    A cell is finished when its ``done.json`` (written last) exists, was written for the same
    scenario content, and every data file it lists is present with the SHA-256 it records.
    """
    where = cell_dir(out, variant, policy, seed)
    try:
        done = json.loads((where / "done.json").read_text())
    except FileNotFoundError:
        return "not finished"
    except (OSError, ValueError) as error:
        return f"done.json unreadable ({str(error)[:80]})"
    if not isinstance(done, dict) or not isinstance(done.get("files"), dict):
        return "done.json lists no file hashes (written by an older shopgym)"
    if [done.get("variant"), done.get("policy"), done.get("seed")] != [variant, policy, seed]:
        return "done.json belongs to another cell"
    if scenario_hash is not None and done.get("scenario_hash") != scenario_hash:
        return f"ran on scenario {done.get('scenario_hash')}, the config now resolves to {scenario_hash}"
    for name, digest in done["files"].items():
        path = where / str(name)
        if path.parent != where or not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match the sha256 its done.json records"
    return None


def cell_done(out: Path, variant: str, policy: str, seed: int, scenario_hash: str | None = None) -> bool:
    """Whether a cell finished and its files are intact (see :func:`cell_problem`)."""
    return cell_problem(out, variant, policy, seed, scenario_hash) is None


# ---- the whole run ---------------------------------------------------------------------------------
def scenario_hashes(config: ExperimentConfig) -> dict[str, str]:
    """Each variant's resolved scenario content hash (what the cells of that variant run on)."""
    from sim.envs.common import scenario_of_env_kwargs

    return {v.name: scenario_of_env_kwargs(config.env_kwargs(v.name)).config_hash() for v in config.variants}


#: Config fields that do not change any result: a resume may change them.
NON_RESULT_FIELDS = ("workers", "description")


def _result_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping without the fields that do not change results (:data:`NON_RESULT_FIELDS`)."""
    return {k: v for k, v in config.items() if k not in NON_RESULT_FIELDS}


def check_run_dir(config: ExperimentConfig, out: Path, hashes: Mapping[str, str]) -> None:
    """Refuse a directory holding another config's results, or results of an edited scenario."""
    from sim.params import read_yaml_mapping

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    from sim.io import refuse_links

    refuse_links(out, "--out", ConfigError)
    config_path = out / "config.resolved.yaml"
    if config_path.is_file():
        existing = read_yaml_mapping(config_path, "run config", ConfigError)
        if _result_fields(existing) != _result_fields(config.model_dump(mode="json")):
            raise ConfigError(
                f"{out} holds results of a different config ({config_path}); "
                "use another --out, or delete that directory to start over"
            )
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            recorded = json.loads(meta_path.read_text()).get("scenario_hash")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != dict(hashes):
            raise ConfigError(
                f"{out} holds results of scenario content {recorded}, but {config.env.scenario} with these "
                f"overrides now resolves to {dict(hashes)} (was the scenario file edited?); "
                "use another --out, or delete that directory to start over"
            )


def prepare_run_dir(config: ExperimentConfig, out: Path, hashes: Mapping[str, str] | None = None) -> None:
    """Write the resolved config and run metadata (after :func:`check_run_dir` passed)."""
    hashes = scenario_hashes(config) if hashes is None else hashes
    check_run_dir(config, out, hashes)
    out.mkdir(parents=True, exist_ok=True)
    resolved = config.model_dump(mode="json")
    atomic_write_text(yaml.safe_dump(resolved, sort_keys=False), out / "config.resolved.yaml")
    meta = {
        "scenario_hash": dict(hashes),
        "versions": versions(),
        "git_sha": git_sha(),
        "shopgym_version": package_version(),
    }
    atomic_write_json(meta, out / "meta.json")


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.lock`` for the block: two runs never write one directory.

    The holder deletes the file before releasing it, so a finished run leaves no ``.lock``
    behind (a run that finds the file still held refuses; one that opens it afterwards makes its own).
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    try:  # O_NOFOLLOW: a planted link never makes the lock create or open a file elsewhere
        handle = os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644), "a+")
    except OSError as problem:
        raise ConfigError(f"cannot open the run lock {lock}: {problem.strerror or problem}") from None
    held = False
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            raise ConfigError(
                f"another shopgym run is writing to {out} (it holds {lock}); "
                "wait for it to finish or use another --out"
            ) from None
        held = True
        yield
    finally:
        if held:
            lock.unlink(missing_ok=True)
        handle.close()


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete temporary files a killed writer left in ``out`` (call with the run lock held)."""
    stale = [p for p in out.rglob(".*.tmp*") if p.is_file()]
    stale += [p for p in (out / "models").rglob("model.tmp.zip") if p.is_file()]  # older shopgym's SB3 saves
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def run_cell_with_plugins(plugins: list[tuple[str, str]], *args: Any) -> dict[str, Any]:
    """:func:`run_cell` in a worker that first registers the parent's Python-registered policy kinds."""
    from policies.plugins import register_references

    register_references(plugins)
    return run_cell(*args)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a run; the message says how many cells are kept for a resume."""


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while pool workers are spawned: they inherit it, so only the parent handles Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _init_pool_worker(parent: int, plugins: list[tuple[str, str]]) -> None:
    """Pool-worker initializer: leave Ctrl-C to the parent, die with it, know its registered kinds."""
    from policies.plugins import register_references

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    register_references(plugins)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued cells and terminate running ones (their unfinished cells are redone on resume)."""
    pool.shutdown(wait=False, cancel_futures=True)
    from multiprocessing import active_children

    workers = active_children()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=10)


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: exit as soon as the parent process is gone (even after kill -9)."""
    with contextlib.suppress(Exception):  # Linux: the kernel signals us when the parent dies
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="shopgym-parent-watch").start()


def run_experiment(
    config: ExperimentConfig,
    out: str | Path | None = None,
    backend: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    console: Console | None = None,
) -> Path:
    """Run every unfinished cell of ``config`` and write the results and the report; return the run dir.

    Everything is checked before anything is written: the backend, the worker count, the
    scenario of every variant and the run directory (same config, same scenario content).
    Ctrl-C stops the workers and raises :class:`RunInterrupted`; finished cells are kept.
    """
    root = config.output_path(out)
    backend = backend or config.backend
    workers = workers or config.workers
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend {backend!r} unknown; allowed: ['local', 'ray']")
    if not 1 <= workers <= 256:
        raise ConfigError(f"workers: {workers} not allowed; an integer in [1, 256]")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("backend 'ray' needs ray: pip install 'shopgym[ray]'") from None
    hashes = scenario_hashes(config)
    check_run_dir(config, root, hashes)
    try:
        _run_locked(config, root, hashes, backend, workers, quiet, console)
    except KeyboardInterrupt:
        cells = config.cells()
        kept = sum(cell_problem(root, *cell, hashes[cell[0]]) is None for cell in cells)
        raise RunInterrupted(
            f"interrupted: {kept} of {len(cells)} cells finished and are kept in {root}; "
            "run the same command again to resume"
        ) from None
    return root


def _run_locked(
    config: ExperimentConfig,
    root: Path,
    hashes: Mapping[str, str],
    backend: str,
    workers: int,
    quiet: bool,
    console: Console | None,
) -> None:
    """The body of :func:`run_experiment` once everything is checked: the cells, then the report."""
    from experiments.report import write_report
    from policies.plugins import worker_references

    with run_lock(root):
        remove_stale_temporaries(root)
        prepare_run_dir(config, root, hashes)
        console = console or make_console(stderr=True)
        todo = []
        for cell in config.cells():
            problem = cell_problem(root, *cell, hashes[cell[0]])
            if problem is None:
                continue
            todo.append(cell)
            if problem != "not finished" and not quiet:
                console.print(f"re-running cell {'/'.join(map(str, cell))}: {problem}")
        skipped = len(config.cells()) - len(todo)
        if skipped and not quiet:
            console.print(f"resuming {root}: {skipped} of {len(config.cells())} cells already finished")
        config_json = config.model_dump_json()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, disable=quiet) as bars:
            cells_task = bars.add_task("cells", total=len(config.cells()), completed=skipped)
            if backend == "ray":
                _run_ray(config_json, todo, root, workers, lambda: bars.advance(cells_task))
            elif workers == 1 or len(todo) <= 1:
                for variant, policy, seed in todo:
                    stage = bars.add_task(f"{policy} seed {seed} ({variant})", total=1.0)

                    def hook(
                        name: str, fraction: float, stage: Any = stage, label: str = f"{policy} seed {seed}"
                    ) -> None:
                        bars.update(stage, completed=fraction, description=f"{label}: {name}")

                    run_cell(config_json, variant, policy, seed, str(root), hook)
                    bars.remove_task(stage)
                    bars.advance(cells_task)
            else:
                with ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=get_context("spawn"),
                    initializer=_init_pool_worker,
                    initargs=(os.getpid(), worker_references()),
                ) as pool:
                    with _sigint_ignored():  # workers are spawned by submit
                        futures = [pool.submit(run_cell, config_json, *cell, str(root)) for cell in todo]
                    try:
                        for future in as_completed(futures):
                            future.result()
                            bars.advance(cells_task)
                    except BaseException:
                        _stop_workers(pool)
                        raise
        results = gather(root, config, hashes)
        write_report(root, config, results)


def _run_ray(
    config_json: str, todo: list[tuple[str, str, int]], root: Path, workers: int, done: Callable[[], None]
) -> None:
    """The same cells as Ray tasks (``pip install 'shopgym[ray]'``); a cluster if one is configured."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend 'ray' needs ray: pip install 'shopgym[ray]'") from None
    started = not ray.is_initialized()  # a session the caller opened is theirs to close
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    from policies.plugins import worker_references

    try:
        remote = ray.remote(num_cpus=1)(run_cell_with_plugins)
        plugins = worker_references()
        pending = [remote.remote(plugins, config_json, *cell, str(root)) for cell in todo]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            ray.get(finished)
            done()
    finally:
        if started:
            ray.shutdown()


def gather(
    root: Path, config: ExperimentConfig, hashes: Mapping[str, str] | None = None
) -> dict[str, pd.DataFrame]:
    """Concatenate the finished cells' files and write ``results.parquet`` (atomically).

    Every cell's files are checked against its ``done.json`` first: a deleted, swapped or
    edited file, or a cell of another scenario content, is an error, never a silent gap.
    """
    frames: dict[str, list[pd.DataFrame]] = {
        "episodes": [],
        "daily": [],
        "mix": [],
        "curve": [],
        "customers": [],
    }
    for cell in config.cells():
        where = cell_dir(root, *cell)
        if not (where / "done.json").is_file():
            continue
        problem = cell_problem(root, *cell, None if hashes is None else hashes[cell[0]])
        if problem is not None:
            raise ConfigError(f"cell {'/'.join(map(str, cell))} of {root}: {problem}; re-run to redo it")
        for name in frames:
            path = where / f"{name}.parquet"
            if path.is_file():
                frames[name].append(pd.read_parquet(path))
    tables = {
        name: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        for name, parts in frames.items()
    }
    write_results(tables["episodes"], root)
    if not tables["customers"].empty:  # twins: one row per customer, episode, policy and seed
        atomic_write_parquet(tables["customers"], root / "customers.parquet")
    return tables


def write_results(episodes: pd.DataFrame, root: Path) -> None:
    """Write ``results.parquet`` and then the record of its SHA-256 that :func:`load_results` checks."""
    atomic_write_parquet(episodes, root / "results.parquet")
    digest = hashlib.sha256((root / "results.parquet").read_bytes()).hexdigest()
    atomic_write_json({"sha256": digest, "rows": len(episodes)}, root / RESULTS_HASH)


#: The file beside ``results.parquet`` that records its SHA-256, written by :func:`gather`.
RESULTS_HASH = "results.sha256.json"


def load_results(root: Path, error: type[ValueError] = ConfigError) -> pd.DataFrame:
    """A run's ``results.parquet``, checked against the SHA-256 the run recorded; else ``error``.

    An edited, swapped or truncated results file (or a run without the record) is refused, so
    ``compare``, ``export`` and the gate never show numbers the run did not produce.
    """
    from sim.io import refuse_links

    refuse_links(root, "run directory", error)
    path = root / "results.parquet"
    if not path.is_file():
        raise error(f"{root} has no results.parquet; run `shopgym run CONFIG --out {root}` first")
    try:
        record = json.loads((root / RESULTS_HASH).read_bytes()[:4096])
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise error(f"{root}: {RESULTS_HASH} missing or unreadable; re-run `shopgym run CONFIG --out {root}`")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise error(
            f"{path}: its SHA-256 differs from {RESULTS_HASH}; the results were edited after the run "
            f"(re-run `shopgym run CONFIG --out {root}` to rebuild them from the cells)"
        )
    frame = pd.read_parquet(io.BytesIO(data))
    if len(frame) != record.get("rows"):
        raise error(f"{path}: {len(frame)} rows, {RESULTS_HASH} records {record.get('rows')!r}")
    return frame
