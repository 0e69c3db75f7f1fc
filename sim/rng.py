"""Named random streams for one run, spawned from a single seed.

Each stream is an independent ``np.random.Generator`` spawned from the run's
``np.random.SeedSequence``. Separate streams give common random numbers: two policies run on
the same seed see the same shoppers arrive, because what one policy changes in the behaviour
stream never shifts the draws of the arrivals stream. The engine also draws a fixed number of
values per shopper per day from each stream, whatever the shopper's state, so a change to one
shopper leaves every other shopper's draws where they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STREAM_NAMES = ("acquisition", "arrivals", "behaviour", "fulfillment", "incentives", "social", "referred")


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
    def from_seed(cls, seed: int | np.random.SeedSequence) -> Streams:
        """Spawn the named streams from ``seed``; the same seed always gives the same streams."""
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        children = root.spawn(len(STREAM_NAMES))
        return cls(
            **{
                n: np.random.Generator(np.random.PCG64(c))
                for n, c in zip(STREAM_NAMES, children, strict=True)
            }
        )
