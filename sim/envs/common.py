"""What every shopgym environment shares: scenario resolution, argument checks, the objective."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sim.economics import expected_order_margin, residual_value
from sim.engine import Simulation
from sim.mechanisms.breadth import count_categories
from sim.oracle import OracleView, friend_value
from sim.params import DECISION_KINDS, Scenario, load_scenario, scenario_from_dict
from sim.population import CHANNEL_DEAL, CHANNEL_REFERRED, HOURS_PER_DAY, INCENTIVE_FAMILIES, Population
from sim.rng import STREAM_NAMES

#: The objective vector, in order: margin ($), LTV ($), load (late deliveries, overtime), incentive cost ($).
OBJECTIVES = ("margin", "ltv", "load", "budget")

#: The response log a shop keeps of each shopper, observed by ShopperJourney and IncentiveTargeting:
#: (name, unit, scale the raw value is divided by). Offers ignored are received minus redeemed.
RESPONSE_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("deal_channel", "0 or 1: acquired through a deal or price-comparison site", 1.0),
    ("referred", "0 or 1: a friend referred her", 1.0),
    ("full_price_share", "orders no offer applied to / orders", 1.0),
    ("carts_abandoned", "count", 10.0),
    ("conversion_after_offer", "offers redeemed / offers received", 1.0),
    ("categories_bought", "count of catalogue categories she has ordered in", 4.0),
    ("returned_share", "orders returned / orders", 1.0),
    *((f"received_{family}", "offers received", 10.0) for family in INCENTIVE_FAMILIES),
    *((f"redeemed_{family}", "offers redeemed", 10.0) for family in INCENTIVE_FAMILIES),
)


def response_history(pop: Population, rows: NDArray[np.int64]) -> NDArray[np.float64]:
    """``(m, len(RESPONSE_FIELDS))`` raw values of each row's response log (unscaled)."""
    received, redeemed = pop.offers_received[rows], pop.offers_redeemed[rows]
    total = received.sum(axis=1)
    return np.column_stack(
        [
            pop.channel[rows] == CHANNEL_DEAL,
            pop.channel[rows] == CHANNEL_REFERRED,
            pop.full_price_orders[rows] / np.maximum(pop.orders[rows], 1),
            pop.carts_abandoned[rows],
            redeemed.sum(axis=1) / np.maximum(total, 1),
            count_categories(pop.categories_bought[rows]),
            pop.returns[rows] / np.maximum(pop.orders[rows], 1),
            received,
            redeemed,
        ]
    ).astype(np.float64)


_PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Characters of a refused action's repr quoted in the error: the message stays one bounded line.
_ACTION_REPR_CHARS = 60


class ActionError(ValueError):
    """An action outside the environment's ``action_space`` (one line: the value and what is allowed)."""


def _short_repr(value: object) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= _ACTION_REPR_CHARS else text[: _ACTION_REPR_CHARS - 3] + "..."


def check_action(action: object, space: spaces.Space[Any]) -> Any:
    """``action`` as an ``int`` (Discrete) or an int64 array (MultiDiscrete), or an :class:`ActionError`.

    Stricter than ``space.contains``: a bool (``True``) or a float (``1.7``, ``2.0``) is not an
    incentive id, though Python and numpy would cast it. A Discrete action is a Python or numpy
    integer, or a 0-d integer array; a MultiDiscrete one an integer array (or list) of the space's
    shape. Every env checks its actions here, so all three refuse the same things the same way.
    """
    value: Any = action
    if isinstance(space, spaces.Discrete):
        integral = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if isinstance(value, np.ndarray) and value.shape == () and np.issubdtype(value.dtype, np.integer):
            integral, value = True, value.item()
        if integral and space.contains(int(value)):
            return int(value)
        allowed = f"an integer incentive id in [0, {int(space.n) - 1}]"
    elif isinstance(space, spaces.MultiDiscrete):
        if isinstance(value, list | tuple):
            value = np.asarray(value) if all(isinstance(v, int | np.integer) for v in value) else None
        if (
            isinstance(value, np.ndarray)
            and np.issubdtype(value.dtype, np.integer)
            and value.shape == space.shape
            and space.contains(value.astype(np.int64))
        ):
            return value.astype(np.int64)
        allowed = (
            f"an integer array of shape {space.shape}, entry i in [0, nvec[i]), nvec {space.nvec.tolist()}"
        )
    else:
        raise TypeError(f"check_action handles Discrete and MultiDiscrete spaces, not {space}")
    kind = type(action).__name__
    if isinstance(action, np.ndarray):
        kind = f"{action.dtype} array of shape {action.shape}"
    raise ActionError(
        f"action {_short_repr(action)} ({kind}) is outside the action space: allowed is {allowed}"
    )


def resolve_scenario(scenario: str | Path | Scenario, overrides: Mapping[str, Any] | None) -> Scenario:
    """A validated scenario from an object, a shipped scenario's name or a YAML path.

    A relative path is looked up in the working directory, then in the project checkout (when
    there is one); names (``"default"``) are the package data of :mod:`sim.scenarios`.
    """
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        return scenario_from_dict(scenario.model_dump(mode="json"), overrides, source=scenario.name)
    path = Path(scenario)
    if not path.is_file() and (_PROJECT_ROOT / path).is_file():
        return load_scenario(_PROJECT_ROOT / path, overrides)
    return load_scenario(scenario, overrides)


#: Constructor arguments that decide the scenario an environment runs on (see :func:`env_scenario`).
SCENARIO_ARGUMENTS = ("scenario", "overrides", "decision_points")


def env_scenario(
    scenario: str | Path | Scenario,
    overrides: Mapping[str, Any] | None = None,
    decision_points: Sequence[str] | None = None,
) -> Scenario:
    """The scenario an environment made with these arguments runs on: the one definition of it.

    Every environment builds its scenario here, and ``shopgym run`` hashes the scenario of a
    config's ``env`` section through :func:`scenario_of_env_kwargs`, so what a cell ran on and
    what its run directory records cannot disagree.
    """
    return resolve_scenario(scenario, with_decision_points(overrides, decision_points))


def scenario_of_env_kwargs(kwargs: Mapping[str, Any], default: str | Path | Scenario = "default") -> Scenario:
    """The scenario ``gymnasium.make(env_id, **kwargs)`` runs on (``default``: the env's own)."""
    return env_scenario(
        kwargs.get("scenario", default),
        kwargs.get("overrides"),
        kwargs.get("decision_points"),
    )


def check_common_arguments(horizon_days: int, incentive_budget: float, render_mode: str | None) -> str | None:
    """Reject a bad horizon or budget; warn on an unsupported render mode and return the mode to use.

    An unsupported mode (SB3's ``make_vec_env`` passes ``"rgb_array"``) warns, as gymnasium does,
    and rendering is then off (None), so third-party clients make the env with default arguments.
    """
    if horizon_days < 1 or incentive_budget < 0:
        raise ValueError(
            f"need horizon_days >= 1 and incentive_budget >= 0, got {horizon_days}, {incentive_budget}"
        )
    if render_mode not in (None, "ansi"):
        warnings.warn(
            f"render_mode {render_mode!r} unsupported (allowed: 'ansi' or None); rendering is off",
            UserWarning,
            stacklevel=3,
        )
        return None
    return render_mode


def with_decision_points(
    overrides: Mapping[str, Any] | None, decision_points: Sequence[str] | None
) -> dict[str, Any]:
    """Scenario overrides with ``engine.decision_points`` set, after checking the kinds asked for."""
    merged = dict(overrides or {})
    if decision_points is not None:
        unknown = set(decision_points) - set(DECISION_KINDS)
        if unknown or not decision_points:
            raise ValueError(
                f"decision_points {sorted(unknown) or '()'} invalid; use a non-empty subset of "
                f"{list(DECISION_KINDS)}"
            )
        merged["engine.decision_points"] = list(decision_points)
    return merged


#: Largest objective weight by magnitude. A reward is weight x a day's dollars x reward_scale;
#: with this bound, any physical day of a shop stays far inside float32 (SB3's buffers), where
#: 1e308 overflowed to inf and NaN logits.
MAX_OBJECTIVE_WEIGHT = 1e6


def weights_over_objectives(
    weights: Mapping[str, float] | None, default: Mapping[str, float]
) -> NDArray[np.float64]:
    """Weights over ``OBJECTIVES`` (missing ones are 0); unknown names and unbounded values are rejected."""
    chosen = dict(default if weights is None else weights)
    unknown = set(chosen) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"objective_weights keys {sorted(unknown)} unknown; allowed: {list(OBJECTIVES)}")
    for key, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not abs(value) <= MAX_OBJECTIVE_WEIGHT:
            raise ValueError(
                f"objective_weights.{key}: {str(value)[:40]} not allowed; a number in "
                f"[-{MAX_OBJECTIVE_WEIGHT:g}, {MAX_OBJECTIVE_WEIGHT:g}]"
            )
    return np.array([float(chosen.get(k, 0.0)) for k in OBJECTIVES])


def new_simulation(env: gym.Env[Any, Any], scenario: Scenario, horizon_days: int) -> Simulation:
    """A fresh simulation seeded from the environment's ``np_random`` (call after ``Env.reset``)."""
    seed = int(env.np_random.integers(0, 2**63 - 1))
    return Simulation(scenario, seed=seed, horizon_days=horizon_days, log_level="aggregates")


#: Spawn-key component of a planning rollout's futures (an episode's own streams use 0-6).
ROLLOUT_KEY = 0x0A11CE


def rollout_simulation(sim: Simulation, replicate: int) -> Simulation:
    """A fresh run of ``sim``'s own population (its traits, arrivals, social graph) with another future.

    Only the planning oracles may use it: the population is the episode's true state at day 0.
    Future ``replicate`` is drawn from a spawn key no stream of the episode uses, so rollouts
    are independent of the episode's own future and the same for every plan compared on it
    (common random numbers).
    """
    root = sim.seed
    base = root if isinstance(root, np.random.SeedSequence) else np.random.SeedSequence(root)
    if isinstance(root, np.random.SeedSequence) and root.n_children_spawned != len(STREAM_NAMES):
        raise RuntimeError("a rollout needs the episode's seed as given to its simulation")
    # Fresh sequences each time: spawning mutates one, and the population must be drawn from
    # the children the episode's own run drew it from.
    return Simulation(
        sim.scenario,
        seed=np.random.SeedSequence(base.entropy, spawn_key=base.spawn_key),
        horizon_days=sim.horizon_days,
        log_level="aggregates",
        future_seed=np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, ROLLOUT_KEY, replicate)),
    )


def shop_objective_state(sim: Simulation, order_margin: NDArray[np.float64]) -> NDArray[np.float64]:
    """The whole shop's cumulative margin, LTV, load and incentive cost so far (``OBJECTIVES``).

    ``order_margin``: each shopper's expected order margin (``expected_order_margin``; traits
    only), at least as long as the acquired rows.
    """
    rows = sim.acquired_rows()
    residual = residual_value(sim.scenario, sim.pop, sim.now_hours, rows, order_margin[rows])
    totals = sim.ledger.totals_cents()
    daily = sim.daily.values
    load = float(daily["late_deliveries"].sum() + daily["overtime_orders"].sum())
    ltv = float(sim.ledger.margin_pv[rows].sum() + residual.sum())
    return np.array([totals["margin"] / 100.0, ltv, load, totals["incentive"] / 100.0])


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, bool | int | float]:
    """An episode summary's numbers as plain Python bools, ints and floats (text is left out)."""
    out: dict[str, bool | int | float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool | np.bool_):
            out[key] = bool(value)
        elif isinstance(value, int | np.integer):
            out[key] = int(value)
        elif isinstance(value, float | np.floating):
            out[key] = float(value)
    return out


def metrics_template(metrics: Mapping[str, Any]) -> dict[str, bool | int | float]:
    """Zeros of the types of an episode summary's numbers: ``info["episode_metrics"]`` mid-episode."""
    return {key: type(value)() for key, value in numeric_metrics(metrics).items()}


def conform_metrics(template: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with exactly ``template``'s keys and value types (missing values are 0).

    ``info["episode_metrics"]`` is on every step with the same keys and types (zeros until the
    episode ends), so vector envs and replay buffers can batch it.
    """
    return {key: type(zero)(metrics.get(key, zero)) for key, zero in template.items()}


def budget_left(spent_dollars: float, budget: float) -> float:
    """Share of an incentive budget left (1 for an unlimited budget)."""
    if not np.isfinite(budget):
        return 1.0
    return max(0.0, 1.0 - spent_dollars / budget) if budget > 0 else 0.0


#: Per simulation: (day, a referred friend's worth over the episode and as LTV), for the oracle.
_FRIEND_VALUE: weakref.WeakKeyDictionary[Simulation, tuple[int, float, float]] = weakref.WeakKeyDictionary()


def oracle_view_of(
    sim: Simulation,
    shoppers: NDArray[np.int64],
    kinds: NDArray[np.int8],
    objective_weights: NDArray[np.float64],
    horizon_days: int,
) -> OracleView:
    """The privileged oracle's view of ``shoppers`` at their decisions in a population simulation.

    One more order's load is the last week's late deliveries and overtime orders per order.
    """
    days_left = horizon_days - sim.now_hours / HOURS_PER_DAY
    today = int(sim.now_hours // HOURS_PER_DAY)
    cached = _FRIEND_VALUE.get(sim)
    if cached is None or cached[0] != today:
        sample = np.arange(min(sim.pop.planned, 1000))  # organic shoppers: what a new one is like
        margin = expected_order_margin(sim.scenario, sim.pop, sample)
        state = sim.true_state(sample)
        cached = (
            today,
            friend_value(sim.scenario, state, margin, days_left),
            friend_value(sim.scenario, state, margin, float("inf")),
        )
        _FRIEND_VALUE[sim] = cached
    daily = sim.daily.values
    week = slice(max(today - 7, 0), today + 1)
    load = float(daily["late_deliveries"][week].sum() + daily["overtime_orders"][week].sum())
    return OracleView(
        scenario=sim.scenario,
        catalog=sim.catalog,
        state=sim.true_state(shoppers),
        kinds=kinds,
        objective_weights=np.asarray(objective_weights, dtype=np.float64),
        days_left=days_left,
        friend_value=(cached[1], cached[2]),
        load_per_order=load / max(float(daily["orders"][week].sum()), 1.0),
        late_per_order=float(daily["late_deliveries"][week].sum())
        / max(float(daily["orders"][week].sum()), 1.0),
    )
