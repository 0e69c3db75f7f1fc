"""One evaluation loop for every policy: run episodes, feed learners, collect business metrics.

The loop honours each environment's feedback protocol: IncentiveTargeting's delayed,
attributed rewards (``env.attributed_feedback()``, matched to the decision's observation by
``decision_id``) and the other environments' immediate rewards (the step's reward belongs to
the action just taken). Online learners (bandits) learn during evaluation when ``learn`` is
set; fixed policies and SB3 models ignore the feedback. A recurrent policy's state
(RecurrentPPO's LSTM) is carried from step to step within an episode, with ``episode_start``
set on its first step. Episode ``k`` is reset with seed ``seed + k``, so two policies
evaluated with the same seed face the same shoppers and draws (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.vector import AutoresetMode, VectorEnv
from numpy.typing import NDArray

from policies.base import Policy


@dataclass
class EpisodeRecord:
    """One evaluated episode: its row of metrics, the shop's daily trace and the incentive mix."""

    row: dict[str, Any]
    daily: pd.DataFrame | None = None
    incentive_mix: dict[tuple[str, str], int] = field(default_factory=dict)
    customers: pd.DataFrame | None = None  # per real customer, in a twins scenario


def evaluate(
    policy: Policy,
    env: gym.Env[Any, Any],
    episodes: int,
    seed: int,
    learn: bool = True,
    deterministic: bool = False,
    segment_of: Callable[[NDArray[np.float32]], str] | None = None,
    on_step: Callable[[], None] | None = None,
) -> list[EpisodeRecord]:
    """Run ``episodes`` episodes of ``policy`` in ``env`` (episode ``k`` seeded ``seed + k``).

    ``segment_of`` names the segment of a per-shopper observation, for the incentive mix;
    ``on_step`` is called after every step (progress bars).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    base = env.unwrapped
    masked = hasattr(base, "action_masks")
    action_names = [i.name for i in base.scenario.incentives]  # type: ignore[attr-defined]
    heads = getattr(policy, "spec", None)
    head_names = heads.heads if heads is not None else ("shopper",)
    records = []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        pending: dict[int, tuple[NDArray[np.float32], int]] = {}  # decision_id -> (obs, action)
        mix: dict[tuple[str, str], int] = {}
        total, steps, cost_before = 0.0, 0, float(info.get("incentive_cost", 0.0))
        # A small shop or a short horizon may reach no decision point at all: the episode is over
        # at reset, with nothing to decide and nothing to step.
        done = info.get("decision_kind") == "end"
        # Recurrent policies carry their state across the journey; it starts afresh at each reset.
        state: tuple[NDArray[Any], ...] | None = None
        start = np.ones(1, dtype=np.bool_)
        if done:
            info = {**info, "episode_metrics": _metrics_without_steps(base)}
        while not done:
            mask = base.action_masks() if masked else None  # type: ignore[attr-defined]
            action, state = policy.predict(
                obs, state=state, episode_start=start, deterministic=deterministic, action_masks=mask
            )
            start = np.zeros(1, dtype=np.bool_)
            if len(head_names) == 1:
                segment = segment_of(obs) if segment_of is not None else "all"
                key = (segment, action_names[int(action)])
                mix[key] = mix.get(key, 0) + 1
            else:
                for head, a in zip(head_names, np.atleast_1d(action), strict=True):
                    mix[(head, action_names[int(a)])] = mix.get((head, action_names[int(a)]), 0) + 1
            decision_id = info.get("decision_id")
            if decision_id is not None:
                pending[decision_id] = (obs, int(action))
            previous = obs
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if learn:
                cost_now = float(info.get("incentive_cost", cost_before))
                _feed(policy, base, pending, previous, action, float(reward), cost_now - cost_before)
                cost_before = cost_now
            if on_step is not None:
                on_step()
        metrics = info.get("episode_metrics", {})
        row: dict[str, Any] = {"episode": k, "episode_seed": seed + k, "return": total, "length": steps}
        numeric = {key: v for key, v in metrics.items() if isinstance(v, int | float)}
        row.update({key: v for key, v in numeric.items() if key not in ("r", "l")})
        row.update({f"objective_{key}": v for key, v in info.get("objective", {}).items()})
        sim = getattr(base, "_sim", None)
        daily = sim.daily.to_frame() if sim is not None and hasattr(sim, "daily") else None
        source = sim if sim is not None and hasattr(sim, "customer_results") else base  # journeys: the env
        customers = source.customer_results() if hasattr(source, "customer_results") else None
        records.append(EpisodeRecord(row, daily, mix, customers))
    return records


def evaluate_vector(
    policy: Policy,
    envs: VectorEnv[Any, Any, Any],
    episodes: int,
    seed: int,
    deterministic: bool = True,
    segment_of: Callable[[NDArray[np.float32]], str] | None = None,
    on_episode: Callable[[], None] | None = None,
) -> list[EpisodeRecord]:
    """:func:`evaluate` without learning on a native vector env: the same records, batched.

    Episode ``k`` is reset with seed ``seed + k`` (autoreset disabled, ended sub-envs reset by
    mask), and a sub-env equals the single env of the same seed, so a policy whose batched
    ``predict`` equals its single one gives exactly :func:`evaluate`'s records, in episode order.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if envs.metadata.get("autoreset_mode") is not AutoresetMode.DISABLED:
        raise ValueError("evaluate_vector needs a vector env made with autoreset_mode Disabled")
    base = envs.unwrapped
    n = envs.num_envs
    action_names = [i.name for i in base.scenario.incentives]  # type: ignore[attr-defined]
    episode_of = np.arange(n)  # the episode each sub-env plays (>= episodes: idle)
    first = [seed + int(k) if k < episodes else seed for k in episode_of]
    obs, _ = envs.reset(seed=first)  # type: ignore[arg-type]  # VectorEnv takes a seed per sub-env
    totals, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    mixes: list[dict[tuple[str, str], int]] = [{} for _ in range(n)]
    done_records: dict[int, EpisodeRecord] = {}
    next_episode = n
    while len(done_records) < episodes:
        active = episode_of < episodes
        action, _ = policy.predict(obs, deterministic=deterministic, action_masks=base.action_masks())  # type: ignore[attr-defined]
        action = np.where(active, np.asarray(action, dtype=np.int64), 0)
        for i in np.flatnonzero(active):
            segment = segment_of(obs[i]) if segment_of is not None else "all"
            key = (segment, action_names[int(action[i])])
            mixes[i][key] = mixes[i].get(key, 0) + 1
        obs, reward, terminated, truncated, info = envs.step(action)
        totals += np.where(active, reward, 0.0)
        lengths += active
        ended = np.flatnonzero((terminated | truncated) & active)
        for i in ended:
            k = int(episode_of[i])
            metrics = {
                key: value[i].item()
                for key, value in info["episode_metrics"].items()
                if not key.startswith("_") and isinstance(value[i], np.number | np.bool_)
            }
            row: dict[str, Any] = {"episode": k, "episode_seed": seed + k, "return": float(totals[i])}
            row["length"] = int(lengths[i])
            row.update({key: v for key, v in metrics.items() if key not in ("r", "l")})
            objective = {key: v for key, v in info["objective"].items() if not key.startswith("_")}
            row.update({f"objective_{key}": float(v[i]) for key, v in objective.items()})
            customers = base.customer_results(int(i)) if hasattr(base, "customer_results") else None
            done_records[k] = EpisodeRecord(row, None, mixes[i], customers)
            if on_episode is not None:
                on_episode()
        ended_mask = np.zeros(n, dtype=np.bool_)
        ended_mask[ended] = True
        ended_mask |= (terminated | truncated) & ~active  # an idle sub-env's own episode ended
        if ended_mask.any():
            seeds: list[int | None] = [None] * n
            for i in np.flatnonzero(ended_mask):
                if episode_of[i] < episodes:
                    episode_of[i] = next_episode
                    next_episode += 1
                seeds[i] = seed + int(episode_of[i]) if episode_of[i] < episodes else seed
                totals[i], lengths[i], mixes[i] = 0.0, 0, {}
            obs, _ = envs.reset(seed=seeds, options={"reset_mask": ended_mask})  # type: ignore[arg-type]
    return [done_records[k] for k in range(episodes)]


def _metrics_without_steps(base: Any) -> dict[str, Any]:
    """The business metrics of an episode that ended at reset (the simulation ran to its horizon)."""
    simulation = getattr(base, "_sim", None)
    if simulation is None:
        return {"r": 0.0, "l": 0}
    from sim.metrics import summarize

    return {"r": 0.0, "l": 0, **summarize(simulation)}


def _feed(
    policy: Policy,
    base: Any,
    pending: dict[int, tuple[NDArray[np.float32], int]],
    obs: NDArray[np.float32],
    action: Any,
    reward: float,
    cost: float,
) -> None:
    """Give the learner the feedback this step revealed (delayed or immediate)."""
    if hasattr(base, "attributed_feedback"):
        closed = [a for a in base.attributed_feedback() if a[0] in pending]
        if not closed:
            return
        contexts = np.array([pending.pop(a[0])[0] for a in closed])
        policy.update(
            contexts,
            np.array([a[2] for a in closed], dtype=np.int64),
            np.array([a[3] for a in closed]),
            np.array([a[4] for a in closed]),
        )
    elif np.ndim(action) == 0:
        policy.update(obs[None, :], np.array([int(action)]), np.array([reward]), np.array([cost]))


def episode_frame(records: list[EpisodeRecord]) -> pd.DataFrame:
    """Episode rows as a DataFrame (one row per episode)."""
    return pd.DataFrame([r.row for r in records])
