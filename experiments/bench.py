"""Benchmarks: simulator throughput, scaling and memory (``bench sim``); environments (``bench envs``).

Each population size runs in a fresh Python process pinned to one core, so its peak resident
memory is its own. Beside the engine, the same process times a bare numpy loop that makes the
same random draws per shopper-day as the engine (:data:`sim.engine.DRAWS_PER_SHOPPER_DAY`):
the limit a vectorized engine could reach, measured in the same run so the ratio is fair.

Setup: every shopper is acquired at t=0 (``acquisition_days=0``) so that each run covers
``shoppers x days`` shopper-days, and the event log is reduced to daily aggregates
(``log_level="aggregates"``); the figures say so in their ``log_level`` field.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.table import Table

from sim.engine import DRAWS_PER_SHOPPER_DAY, Simulation
from sim.params import NEUTRAL_MECHANISMS, load_scenario
from sim.rng import Streams


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _limit_loop(shoppers: int, days: int, spend_p: float, seed: int) -> float:
    """Seconds a bare numpy loop takes to make the engine's draws for every shopper-day."""
    streams = Streams.from_seed(seed)
    started = time.perf_counter()
    for _ in range(days):
        streams.arrivals.random((DRAWS_PER_SHOPPER_DAY["arrivals"], shoppers))
        streams.behaviour.random((DRAWS_PER_SHOPPER_DAY["behaviour"] - 1, shoppers))
        streams.behaviour.standard_gamma(spend_p, shoppers)
        streams.fulfillment.random((DRAWS_PER_SHOPPER_DAY["fulfillment"], shoppers))
        streams.incentives.random((DRAWS_PER_SHOPPER_DAY["incentives"], shoppers))
    return time.perf_counter() - started


def measure_one(
    scenario_path: str, shoppers: int, days: int, seed: int, repeats: int, mechanisms: bool = True
) -> dict[str, Any]:
    """Time the engine and the limit loop at one population size (call in a fresh process)."""
    overrides: dict[str, Any] = {"population.shoppers": shoppers, "population.acquisition_days": 0.0}
    if not mechanisms:
        overrides.update(NEUTRAL_MECHANISMS)
    scenario = load_scenario(scenario_path, overrides)
    baseline_rss = _rss_bytes()
    run_s: list[float] = []
    init_s: list[float] = []
    limit_s: list[float] = []
    population_bytes = 0
    r = 0
    # Small sizes run fast and noisily: repeat until 2 s of engine time (at most 20 runs).
    while r < repeats or (sum(run_s) < 2.0 and r < 20):
        started = time.perf_counter()
        sim = Simulation(scenario, seed=seed + r, horizon_days=days, log_level="aggregates")
        built = time.perf_counter()
        sim.run()
        run_s.append(time.perf_counter() - built)
        init_s.append(built - started)
        population_bytes = sim.pop.nbytes()
        del sim
        gc.collect()  # a SimPy run holds reference cycles; free it before the next one
        limit_s.append(_limit_loop(shoppers, days, scenario.population.spend.p, seed + r))
        r += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    shopper_days = shoppers * days
    best_run, best_limit = min(run_s), min(limit_s)
    return {
        "shoppers": shoppers,
        "days": days,
        "shopper_days_per_s": shopper_days / best_run,
        "limit_shopper_days_per_s": shopper_days / best_limit,
        "ratio_to_limit": best_limit / best_run,
        "run_seconds": best_run,
        "init_seconds": min(init_s),
        "ns_per_shopper_day": 1e9 * best_run / shopper_days,
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline_rss,
        "bytes_per_shopper": (peak - baseline_rss) / shoppers,
        "population_bytes_per_shopper": population_bytes / shoppers,
        "draws_per_shopper_day": sum(DRAWS_PER_SHOPPER_DAY.values()),
        "log_level": "aggregates",
        "mechanisms": "on" if mechanisms else "off (neutral)",
        "repeats": r,
    }


def bench_sim(
    scenario_path: str,
    sizes: list[int],
    days: int,
    seed: int,
    repeats: int = 3,
    quiet: bool = False,
    mechanisms: tuple[bool, ...] = (True, False),
) -> list[dict[str, Any]]:
    """Run :func:`measure_one` per size and mechanisms setting, each in its own single-core process."""
    records = []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for size, on in [(size, on) for size in sizes for on in mechanisms]:
        if not quiet:
            label = "on" if on else "off"
            print(
                f"bench sim: {size:,} shoppers x {days} days, mechanisms {label}", file=sys.stderr, flush=True
            )
        args = json.dumps([scenario_path, size, days, seed, repeats, on])
        result = subprocess.run(
            [sys.executable, "-m", "experiments.bench", args],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path.cwd(),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bench child for {size} shoppers failed:\n{result.stderr}")
        records.append(json.loads(result.stdout))
    return records


def format_sim_table(records: list[dict[str, Any]]) -> Table:
    """A human-readable table of :func:`bench_sim` records, with cost relative to the largest size."""
    table = Table(
        title="shopgym bench sim: one core, event log aggregates; sd = shopper-days",
        caption="limit: bare numpy making the same draws; vs top: cost per shopper-day vs the largest size",
    )
    for col in (
        "shoppers",
        "mech.",
        "sd/s",
        "limit sd/s",
        "eng/lim",
        "ns/sd",
        "vs top",
        "RSS MiB",
        "B/shopper",
    ):
        table.add_column(col, justify="right")
    largest = max((r["shoppers"] for r in records), default=0)
    ref = {r["mechanisms"]: r["ns_per_shopper_day"] for r in records if r["shoppers"] == largest}
    for r in records:
        table.add_row(
            f"{r['shoppers']:,}",
            r["mechanisms"].split(" ")[0],
            f"{r['shopper_days_per_s']:,.0f}",
            f"{r['limit_shopper_days_per_s']:,.0f}",
            f"{r['ratio_to_limit']:.3f}",
            f"{r['ns_per_shopper_day']:.0f}",
            f"{r['ns_per_shopper_day'] / ref[r['mechanisms']]:.2f}x",
            f"{r['peak_rss_bytes'] / 2**20:,.0f}",
            f"{r['bytes_per_shopper']:,.0f}",
        )
    return table


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    path, size, n_days, base_seed, n_repeats, mechanisms_on = json.loads(sys.argv[1])
    print(json.dumps(measure_one(path, size, n_days, base_seed, n_repeats, mechanisms_on)))


class _TimedEnv(gym.Wrapper[Any, Any, Any, Any]):
    """Accumulates the wall time spent inside ``step`` and ``reset``."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action: Any) -> Any:
        started = time.perf_counter()
        result = self.env.step(action)
        self.seconds += time.perf_counter() - started
        return result

    def reset(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - started
        return result


def raw_steps_per_second(env_id: str, kwargs: dict[str, Any], steps: int, seed: int = 0) -> float:
    """Steps per second of ``env_id`` with a random policy (uniform over allowed actions where masked)."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    masks = getattr(env.unwrapped, "action_masks", None)
    uniforms = rng.random(steps).tolist()  # drawn ahead: the policy's cost stays out of the env's
    started = time.perf_counter()
    for u in uniforms:
        if masks is not None:
            allowed = np.flatnonzero(masks())
            action = allowed[int(u * allowed.size)]
        else:
            action = env.action_space.sample()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def ppo_env_share(
    env_id: str,
    kwargs: dict[str, Any],
    steps: int,
    seed: int = 0,
    n_steps: int = 1024,
    batch_size: int = 256,
    n_epochs: int = 4,
) -> float:
    """Share of an SB3 PPO ``learn(steps)`` wall time spent inside the environment.

    SB3's own defaults are ``n_steps=2048, batch_size=64, n_epochs=10`` (the ShopperJourney row).
    """
    from stable_baselines3 import PPO

    env = _TimedEnv(gym.make(env_id, **kwargs))
    model = PPO(
        "MlpPolicy", env, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, seed=seed, device="cpu"
    )
    started = time.perf_counter()
    model.learn(steps)
    return env.seconds / (time.perf_counter() - started)


#: The environments benchmarked, with their settings (one core, as in ``bench sim``).
ENV_BENCH: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("CartPole-v1", {}, 50_000),
    ("shopgym/ShopperJourney-v0", {}, 50_000),
    (
        "shopgym/IncentiveTargeting-v0",
        {
            "overrides": {"population.shoppers": 10_000, "population.acquisition_days": 0.0},
            "horizon_days": 30,
        },
        20_000,
    ),
    (
        "shopgym/IncentiveTargeting-v0",
        {
            "overrides": {"population.shoppers": 100_000, "population.acquisition_days": 0.0},
            "horizon_days": 30,
        },
        40_000,
    ),
    ("shopgym/CampaignPlanning-v0", {}, 90),
)


#: ShopperJourney-v0's performance targets: raw steps/s (one core) and its share of PPO's wall time.
JOURNEY_TARGETS = {"steps_per_s": 20_000.0, "ppo_env_share": 0.10}
#: PPO runs whose median env share ShopperJourney-v0 reports.
JOURNEY_PPO_RUNS = 3


def bench_envs(ppo_steps: int = 4096, quiet: bool = False) -> list[dict[str, Any]]:
    """Raw steps/s of each environment beside CartPole-v1, and PPO's env time share (same run)."""
    import sim  # noqa: F401  (registers the shopgym environments)

    records: list[dict[str, Any]] = []
    reference = 0.0
    for env_id, kwargs, steps in ENV_BENCH:
        if not quiet:
            print(f"bench envs: {env_id} {kwargs.get('overrides', '')}", file=sys.stderr, flush=True)
        rate = raw_steps_per_second(env_id, kwargs, steps)
        reference = rate if env_id == "CartPole-v1" else reference
        shoppers = kwargs.get("overrides", {}).get("population.shoppers")
        record: dict[str, Any] = {
            "env": env_id,
            "shoppers": shoppers,
            "steps": steps,
            "steps_per_s": rate,
            "ratio_to_cartpole": rate / reference if reference else None,
        }
        if env_id == "shopgym/ShopperJourney-v0":  # the headline: PPO with its defaults (n_steps 2048)
            runs = [
                ppo_env_share(env_id, kwargs, ppo_steps, n_steps=2048, batch_size=64, n_epochs=10)
                for _ in range(JOURNEY_PPO_RUNS)
            ]
            record["ppo_env_share"] = statistics.median(runs)  # one run varies by ~0.5 points
            record["ppo_env_share_runs"] = runs
            record["target_steps_per_s"] = JOURNEY_TARGETS["steps_per_s"]
            record["target_ppo_env_share"] = JOURNEY_TARGETS["ppo_env_share"]
        if env_id == "shopgym/IncentiveTargeting-v0" and shoppers == 10_000:
            record["ppo_env_share"] = ppo_env_share(env_id, kwargs, ppo_steps)
        records.append(record)
    return records


def format_env_table(records: list[dict[str, Any]]) -> Table:
    """A human-readable table of :func:`bench_envs` records, with ShopperJourney's targets."""
    table = Table(
        title="shopgym bench envs: one core, random (masked) actions",
        caption=(
            f"targets for ShopperJourney-v0: >= {JOURNEY_TARGETS['steps_per_s']:,.0f} steps/s, "
            f"<= {JOURNEY_TARGETS['ppo_env_share']:.0%} of SB3 PPO wall time (defaults, n_steps 2048; "
            f"median of {JOURNEY_PPO_RUNS} runs); "
            "IncentiveTargeting's PPO share: n_steps 1024, batch 256, 4 epochs"
        ),
    )
    for col in ("env", "shoppers", "steps/s", "vs CartPole", "PPO env share", "target met"):
        table.add_column(col, justify="right")
    for r in records:
        share = r.get("ppo_env_share")
        met = ""
        if "target_steps_per_s" in r:
            ok = r["steps_per_s"] >= r["target_steps_per_s"] and share <= r["target_ppo_env_share"]
            met = "yes" if ok else "NO"
        table.add_row(
            r["env"],
            f"{r['shoppers']:,}" if r["shoppers"] else "",
            f"{r['steps_per_s']:,.0f}",
            f"{r['ratio_to_cartpole']:.3f}" if r["ratio_to_cartpole"] else "",
            f"{share:.1%}" if share is not None else "",
            met,
        )
    return table
