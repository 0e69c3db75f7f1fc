"""``shopgym oracle-check``: the oracle's values against counterfactual replays of the same decisions.

The privileged oracle (:func:`sim.oracle.incentive_values`) values each incentive at a decision
by a one-step lookahead on the true model. A counterfactual replay (:mod:`sim.counterfactual`)
measures the same quantity by running the shopper's future with each incentive, under common
random numbers: :func:`sim.counterfactual.journey_effects` averages ``replicates`` futures of
one shopper (ShopperJourney), :func:`sim.counterfactual.population_effects` replays the whole
shop once per incentive (IncentiveTargeting: one realized world, spillovers included).

For a sample of decisions taken under ``none``, this module records both for every incentive,
on the margin objective, and reports the mean absolute error (and the mean signed error, so the
oracle's bias shows) per incentive kind and decision kind, beside the replays' own Monte Carlo
standard error: a journey's futures under two incentives share their generators but part ways
as soon as her behaviour does (each draw is read in sequence), so a single decision's replayed
effect is noisy, and the MAE includes that noise; the mean error over many decisions does not.
Replayed margins are discounted to each shopper's acquisition; they are moved back to the
decision's day before comparing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.counterfactual import journey_effects, population_effects
from sim.economics import daily_discount_rate
from sim.engine import DecisionBatch, Simulation
from sim.envs.common import oracle_view_of
from sim.incentives import IncentiveCatalog
from sim.io import atomic_write_parquet, atomic_write_text
from sim.journeys import JourneyBatch
from sim.oracle import OracleView, incentive_values, referred_friend_worth
from sim.params import DECISION_KINDS, Scenario, ScenarioError, load_scenario
from sim.population import HOURS_PER_DAY

#: The margin objective over (margin, ltv, load, budget), as the environments weigh it.
MARGIN_ONLY = np.array([1.0, 0.0, 0.0, 0.0])


def _kind_names(scenario: Scenario) -> list[str]:
    return [spec.kind for spec in scenario.incentives]


def _eligible(
    catalog: IncentiveCatalog, scenario: Scenario, streak_days: Any, tier: Any, orders: Any
) -> NDArray[np.bool_]:
    """Which incentives she may receive now (the envs' masks, without a budget)."""
    ids = np.arange(len(catalog), dtype=np.int16)
    return catalog.eligible(
        ids,
        np.full(ids.size, int(streak_days)),
        np.full(ids.size, int(tier)),
        scenario.mechanisms.streaks.min_days,
        np.full(ids.size, int(orders)),
    )


def check_journeys(
    scenario: Scenario,
    journeys: int,
    decisions_per_journey: int,
    replicates: int,
    horizon_days: int = 365,
    seed: int = 0,
) -> pd.DataFrame:
    """Oracle values and replayed effects at the first decisions of ``journeys`` ShopperJourney shoppers.

    One row per (decision, incentive): ``oracle`` and ``replay`` in dollars of margin against
    ``none``, the replay's Monte Carlo standard error, the decision kind and the incentive kind.
    """
    catalog = IncentiveCatalog(scenario)
    delta = daily_discount_rate(scenario.economics.annual_discount_rate)
    names, kind_of = list(catalog.names), _kind_names(scenario)
    rows = []
    here = np.zeros(1, dtype=np.int64)
    for j in range(journeys):
        journey_seed = [seed, j]
        journey = JourneyBatch(scenario, 1, horizon_days)
        journey.reset_rows(here, [np.random.default_rng(journey_seed)])
        journey.advance(here)
        for d in range(decisions_per_journey):
            kind = journey.pending_kind(0)
            if kind is None:
                break
            now = float(journey.now_hours(here)[0])
            view = OracleView(
                scenario=scenario,
                catalog=catalog,
                state=journey.true_state(here, now),
                kinds=np.array([DECISION_KINDS.index(kind)], dtype=np.int8),
                objective_weights=MARGIN_ONLY,
                days_left=horizon_days - now / HOURS_PER_DAY,
                friend_value=referred_friend_worth(scenario).for_oracle(horizon_days - now / HOURS_PER_DAY),
            )
            oracle = incentive_values(view, view.state, kind)[0]
            eligible = _eligible(
                catalog,
                scenario,
                int(journey.pop.streak_days[0]),
                int(journey.pop.tier[0]),
                int(journey.pop.orders[0]),
            )
            effects = journey_effects(
                scenario,
                journey_seed,
                d,
                [0] * d,
                horizon_days,
                lambda _batch, waiting: np.zeros(waiting.size, dtype=np.int64),
                replicates=replicates,
            )
            days_since = (now - float(journey.pop.acquired_at[0])) / HOURS_PER_DAY
            undiscount = math.exp(delta * days_since)
            diffs = (effects.margin - effects.margin[0]) * undiscount
            for i, name in enumerate(names):
                if not eligible[i]:
                    continue  # the env masks it: there is nothing to compare
                rows.append(
                    {
                        "env": "ShopperJourney-v0",
                        "unit": j,
                        "decision": d,
                        "decision_kind": kind,
                        "incentive": name,
                        "incentive_kind": kind_of[i],
                        "oracle": float(oracle[i]),
                        "replay": float(diffs[i].mean()),
                        "replay_se": float(diffs[i].std(ddof=1) / math.sqrt(replicates)),
                    }
                )
            journey.submit(here, np.zeros(1, dtype=np.int64))
            journey.advance(here)
    return pd.DataFrame(rows)


def check_population(
    scenario: Scenario, decisions: int, horizon_days: int, seed: int = 0, stride: int = 7
) -> pd.DataFrame:
    """Oracle values and exact realized effects for ``decisions`` IncentiveTargeting decisions.

    The run takes ``none`` everywhere; every ``stride``-th decision batch's first shopper is
    replayed once per incentive (:func:`population_effects`), against what the oracle said there.
    """

    def no_incentives(batch: DecisionBatch) -> np.ndarray:
        return np.zeros(batch.shoppers.size, dtype=np.int64)

    delta = daily_discount_rate(scenario.economics.annual_discount_rate)
    names, kind_of = list(IncentiveCatalog(scenario).names), _kind_names(scenario)
    sim = Simulation(scenario, seed=seed, horizon_days=horizon_days, log_level="aggregates")
    picked: list[tuple[int, str, Any, float, Any]] = []
    k = 0
    while (batch := sim.next_decision()) is not None and len(picked) < decisions:
        if k % stride == 0:
            kinds = np.full(batch.shoppers.size, DECISION_KINDS.index(batch.kind), dtype=np.int8)
            view = oracle_view_of(sim, batch.shoppers, kinds, MARGIN_ONLY, horizon_days)
            oracle = incentive_values(view, view.state, batch.kind)[0]
            shopper = int(batch.shoppers[0])
            eligible = _eligible(
                sim.catalog,
                scenario,
                sim.pop.streak_days[shopper],
                sim.pop.tier[shopper],
                sim.pop.orders[shopper],
            )
            days_since = (sim.now_hours - float(sim.pop.acquired_at[shopper])) / HOURS_PER_DAY
            picked.append((k, batch.kind, oracle, math.exp(delta * days_since), eligible))
        sim.submit(no_incentives(batch))
        k += 1
    rows = []
    for unit, (batch_index, kind, oracle, undiscount, eligible) in enumerate(picked):
        effects = population_effects(scenario, seed, horizon_days, no_incentives, batch_index, 0)
        diffs = (effects.margin[:, 0] - effects.margin[0, 0]) * undiscount
        for i, name in enumerate(names):
            if not eligible[i]:
                continue
            rows.append(
                {
                    "env": "IncentiveTargeting-v0",
                    "unit": unit,
                    "decision": batch_index,
                    "decision_kind": kind,
                    "incentive": name,
                    "incentive_kind": kind_of[i],
                    "oracle": float(oracle[i]),
                    "replay": float(diffs[i]),
                    "replay_se": float("nan"),  # one realized world: no Monte Carlo average
                }
            )
    return pd.DataFrame(rows)


def error_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per env, decision kind and incentive kind: decisions, mean oracle and replay, MAE, mean error."""
    data = rows[rows["incentive_kind"] != "none"].assign(error=lambda f: f["oracle"] - f["replay"])
    grouped = data.groupby(["env", "decision_kind", "incentive_kind"], sort=True)
    table = grouped.agg(
        decisions=("unit", "size"),
        oracle_mean=("oracle", "mean"),
        replay_mean=("replay", "mean"),
        mae=("error", lambda e: float(np.abs(e).mean())),
        mean_error=("error", "mean"),
        replay_se=("replay_se", "mean"),
    )
    return table.reset_index()


def format_markdown(table: pd.DataFrame, note: str) -> str:
    """The error table in Markdown, dollars of margin against ``none``."""
    lines = [
        "# The oracle's values against counterfactual replays",
        "",
        note,
        "",
        "| env | decision | incentive kind | n | oracle ($) | replay ($) | MAE ($) | mean error ($) "
        "| replay SE ($) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.to_dict("records"):
        se = "n/a" if math.isnan(row["replay_se"]) else f"{row['replay_se']:.2f}"
        lines.append(
            f"| {row['env']} | {row['decision_kind']} | {row['incentive_kind']} | {row['decisions']} | "
            f"{row['oracle_mean']:.2f} | {row['replay_mean']:.2f} | {row['mae']:.2f} | "
            f"{row['mean_error']:+.2f} | {se} |"
        )
    return "\n".join(lines) + "\n"


def add_oracle_check_parser(sub: Any) -> None:
    """The ``shopgym oracle-check`` command."""
    parser = sub.add_parser(
        "oracle-check",
        help="the oracle's incentive values against counterfactual replays (MAE per kind)",
        description=(
            "Sample decisions taken under 'none'; at each, compare the privileged oracle's value of "
            "every incentive with its effect measured by replaying the shopper's future (ShopperJourney: "
            "the mean of --replicates futures; IncentiveTargeting: the whole shop replayed once per "
            "incentive). Reports the mean absolute and signed error per decision and incentive kind."
        ),
    )
    parser.add_argument("--scenario", default="default", help="shipped scenario name or YAML path")
    parser.add_argument("--journeys", type=int, default=40, help="ShopperJourney shoppers (default 40)")
    parser.add_argument("--decisions", type=int, default=3, help="decisions checked per journey (default 3)")
    parser.add_argument("--replicates", type=int, default=32, help="futures per incentive (default 32)")
    parser.add_argument(
        "--population-decisions",
        type=int,
        default=12,
        help="IncentiveTargeting decisions replayed (default 12; 0 skips)",
    )
    parser.add_argument(
        "--shoppers", type=int, default=2000, help="IncentiveTargeting shop size (default 2000)"
    )
    parser.add_argument("--days", type=int, default=120, help="IncentiveTargeting horizon (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for oracle_check.md and oracle_check.parquet")
    parser.set_defaults(func=run_oracle_check)


def run_oracle_check(args: argparse.Namespace) -> int:
    """Run the check, print its table, and write it under ``--out``."""
    for name in ("journeys", "decisions", "replicates", "shoppers", "days"):
        if getattr(args, name) < 1 or (name == "replicates" and args.replicates < 2):
            print(
                f"shopgym oracle-check: --{name} must be >= {2 if name == 'replicates' else 1}",
                file=sys.stderr,
            )
            return 2
    try:
        scenario = load_scenario(args.scenario)
        population = load_scenario(args.scenario, {"population.shoppers": args.shoppers})
    except ScenarioError as error:
        print(f"shopgym oracle-check: {error}", file=sys.stderr)
        return 2
    rows = check_journeys(scenario, args.journeys, args.decisions, args.replicates, seed=args.seed)
    if args.population_decisions > 0:
        rows = pd.concat(
            [rows, check_population(population, args.population_decisions, args.days, seed=args.seed)],
            ignore_index=True,
        )
    note = (
        f"Scenario `{args.scenario}`, seed {args.seed}: {args.journeys} journeys x up to {args.decisions} "
        f"decisions, {args.replicates} futures per incentive; IncentiveTargeting: "
        f"{args.population_decisions} decisions in a {args.shoppers:,}-shopper shop over {args.days} days. "
        "Dollars of margin against `none` at the decision's day; error = oracle - replay."
    )
    text = format_markdown(error_table(rows), note)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_parquet(rows, out / "oracle_check.parquet")
        atomic_write_text(text, out / "oracle_check.md")
    return 0
