"""Named random streams for one run, spawned from a single seed.

Each stream is an independent ``np.random.Generator`` spawned from the run's
``np.random.SeedSequence``. Separate streams give common random numbers: two policies run on
the same seed see the same shoppers arrive, because what one policy changes in the behaviour
stream never shifts the draws of the arrivals stream. The engine also draws a fixed number of
values per shopper per day from each stream, whatever the shopper's state, so a change to one
shopper leaves every other shopper's draws where they were.

Journeys (:mod:`sim.journeys`) run shoppers on their own clocks, so their draws are keyed
instead (:func:`keyed_uniforms`): a pure function of the shopper's key, her day and the
purpose, the same in a batch of one or of a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

STREAM_NAMES = ("acquisition", "arrivals", "behaviour", "fulfillment", "incentives", "social", "referred")
#: The streams that draw the population at the start of a run (its traits, arrival times and
#: social graph); everything else is the future.
POPULATION_STREAMS = ("acquisition", "social")


@dataclass(frozen=True)
class Streams:
    """One generator per named stream."""

    acquisition: np.random.Generator
    arrivals: np.random.Generator
    behaviour: np.random.Generator
    fulfillment: np.random.Generator
    incentives: np.random.Generator
    social: np.random.Generator
    referred: np.random.Generator  # everything about referred shoppers, so organic draws never shift

    @classmethod
    def from_seed(
        cls, seed: int | np.random.SeedSequence, future: int | np.random.SeedSequence | None = None
    ) -> Streams:
        """Spawn the named streams from ``seed``; the same seed always gives the same streams.

        With ``future``, only the streams that draw the population (``POPULATION_STREAMS``)
        come from ``seed``; every other stream comes from ``future``: the same shoppers, another
        future (the planning oracle's rollouts on the true state).
        """
        children = _spawn(seed)
        if future is not None:
            later = _spawn(future)
            children = [
                c if n in POPULATION_STREAMS else f
                for n, c, f in zip(STREAM_NAMES, children, later, strict=True)
            ]
        return cls(
            **{
                n: np.random.Generator(np.random.PCG64(c))
                for n, c in zip(STREAM_NAMES, children, strict=True)
            }
        )


def _spawn(seed: int | np.random.SeedSequence) -> list[np.random.SeedSequence]:
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(len(STREAM_NAMES))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64's finalizer (Steele, Lea & Flood 2014): a bijection that scatters every bit."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def keyed_uniforms(keys: NDArray[np.uint64], counters: NDArray[np.int64], count: int) -> NDArray[np.float64]:
    """``(count, n)`` uniforms in [0, 1), a pure function of each row's key and counter.

    Counter-based randomness (as Philox and Random123, Salmon et al. 2011): row ``i``'s values
    depend only on ``(keys[i], counters[i])``, never on the other rows or on how many values
    were drawn before, so a shopper draws the same values whether she runs alone or in a batch
    of any size, and vectorized over rows on their own days.
    """
    steps = counters.astype(np.uint64) * np.uint64(count)
    offsets = np.arange(1, count + 1, dtype=np.uint64)[:, None]
    with np.errstate(over="ignore"):
        z = _mix(_mix(keys)[None, :] + (steps[None, :] + offsets) * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def keyed_uniform(
    keys: NDArray[np.uint64], counters: NDArray[np.int64], count: int, index: int
) -> NDArray[np.float64]:
    """Row ``index`` of :func:`keyed_uniforms` alone (a look-ahead needs one purpose over many days)."""
    step = counters.astype(np.uint64) * np.uint64(count) + np.uint64(index + 1)
    with np.errstate(over="ignore"):
        z = _mix(_mix(keys) + step * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
