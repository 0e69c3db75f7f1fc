"""Counterfactual queries: what each incentive at one decision would have done, by replay.

Individual treatment effects need the same shopper, the same past and the same randomness
with only the incentive changed. Both simulators are deterministic given their seed and the
decisions taken, so a query replays the run up to the decision, gives each incentive there,
and continues under a stated continuation policy:

* :func:`journey_effects` (one shopper, ``ShopperJourney``): replays her journey from its
  seed, copies her state at the decision into ``incentives x replicates`` journeys of one
  batch, and draws the rest of each life from ``replicates`` fresh keys, the same ones for
  every incentive (common random numbers across the arms). The mean over replicates converges
  to her expected effect given her past: exact in expectation, with Monte Carlo error ~
  ``sd / sqrt(replicates)``. Cost: one batch of ``incentives x replicates`` journeys.
* :func:`population_effects` (``IncentiveTargeting`` and ``CampaignPlanning``'s engine):
  replays the whole shop once per incentive. The engine draws a fixed set of random numbers
  per shopper per day, so every other shopper's randomness is untouched: the difference is the
  exact effect of that one incentive in that realized world, including its spillovers through
  the warehouse and the social graph (one draw of the future, not an expectation). Cost: one
  full simulation per incentive (seconds at 10^4 shoppers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.economics import residual_value
from sim.engine import DecisionBatch, Simulation
from sim.journeys import DONE, JourneyBatch
from sim.params import Scenario

F64 = NDArray[np.float64]
#: A continuation policy for journeys: the batch and its waiting rows -> one incentive id per row.
JourneyPolicy = Callable[[JourneyBatch, NDArray[np.int64]], NDArray[np.integer]]
#: A continuation policy for the engine: a decision batch -> one incentive id per shopper.
BatchPolicy = Callable[[DecisionBatch], NDArray[np.integer]]


@dataclass(frozen=True)
class Effects:
    """Each incentive's outcome at one decision: ``margin`` and ``ltv`` (dollars, per replicate)."""

    margin: F64  # (incentives, replicates): realized margin over the horizon, discounted
    ltv: F64  # (incentives, replicates): margin plus residual value at the horizon

    def effect(self, objective: str = "ltv") -> F64:
        """Mean effect of each incentive against ``none`` (incentive 0) on ``objective``."""
        values = self.ltv if objective == "ltv" else self.margin
        return np.asarray((values - values[0]).mean(axis=1), dtype=np.float64)


def journey_effects(
    scenario: Scenario,
    seed: int | Sequence[int],
    decision: int,
    prefix: Sequence[int],
    horizon_days: int,
    continuation: JourneyPolicy,
    incentives: Sequence[int] | None = None,
    replicates: int = 32,
    neighbour_signal: float = 1.0,
) -> Effects:
    """Effects of each incentive at her ``decision``-th decision (0-based), her past replayed.

    Her journey is drawn from ``np.random.default_rng(seed)`` on ``scenario``'s decision points.
    ``prefix`` holds the incentives given at her earlier decisions (``len(prefix) ==
    decision``); after the decision every arm follows ``continuation``. Raises ``ValueError``
    if her journey ends before that decision.
    """
    if len(prefix) != decision:
        raise ValueError(f"prefix needs the {decision} earlier incentives, got {len(prefix)}")
    her = JourneyBatch(scenario, 1, horizon_days, neighbour_signal)
    row = np.zeros(1, dtype=np.int64)
    her.reset_rows(row, [np.random.default_rng(seed)])
    her.advance(row)
    for past in [*prefix, None]:
        if her.phase[0] == DONE:
            raise ValueError(f"her journey ends before decision {decision}")
        if past is not None:
            her.submit(row, np.array([past]))
            her.advance(row)
    arms = list(range(len(her.catalog))) if incentives is None else list(incentives)
    base = [int(v) for v in np.atleast_1d(seed)]
    keys = np.array(
        [
            np.random.SeedSequence([*base, decision, r]).generate_state(1, np.uint64)[0]
            for r in range(replicates)
        ]
    )
    futures = her.futures(0, np.asarray(arms, dtype=np.int64), keys, continuation)
    everyone = np.arange(futures.size)
    # Her referred friends' worth counts too (they are not simulated in a journey).
    margin = futures.ledger.margin_pv + futures.referred_margin_pv
    residual = residual_value(scenario, futures.pop, futures.now_hours(everyone), everyone)
    ltv = futures.ledger.margin_pv + residual + futures.referred_ltv
    return Effects(margin.reshape(len(arms), replicates), ltv.reshape(len(arms), replicates))


def population_effects(
    scenario: Scenario,
    seed: int,
    horizon_days: int,
    policy: BatchPolicy,
    batch: int,
    position: int,
    incentives: Sequence[int] | None = None,
) -> Effects:
    """Effects of each incentive for the shopper at ``position`` of decision batch ``batch`` (0-based).

    Every arm replays the shop from ``seed`` under ``policy``, overriding only that one
    shopper's incentive; outcomes are hers (realized discounted margin, and that plus her
    residual value). One replicate: the realized world's exact effect.
    """
    arms = list(range(len(scenario.incentives))) if incentives is None else list(incentives)
    margin = np.zeros((len(arms), 1))
    ltv = np.zeros((len(arms), 1))
    for i, incentive in enumerate(arms):
        sim = Simulation(scenario, seed=seed, horizon_days=horizon_days, log_level="aggregates")
        shopper, k = -1, 0
        while (pending := sim.next_decision()) is not None:
            chosen = np.asarray(policy(pending), dtype=np.int64).copy()
            if k == batch:
                if position >= pending.shoppers.size:
                    raise ValueError(
                        f"batch {batch} has {pending.shoppers.size} shoppers, not {position + 1}"
                    )
                chosen[position] = incentive
                shopper = int(pending.shoppers[position])
            sim.submit(chosen)
            k += 1
        if shopper < 0:
            raise ValueError(f"the run has {k} decision batches, not {batch + 1}")
        rows = np.array([shopper])
        realized = float(sim.ledger.margin_pv[shopper])
        margin[i, 0] = realized
        ltv[i, 0] = realized + float(residual_value(scenario, sim.pop, sim.now_hours, rows)[0])
    return Effects(margin, ltv)
