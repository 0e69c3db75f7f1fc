"""The Pareto front of a run's policies over LTV, margin and fulfillment load (``plots/pareto_front.png``).

A policy is on the front when no other policy of the same scenario variant is at least as good
on every objective and better on one: more mean LTV, more margin, less load. Load is the
late-delivery share (the fulfillment cost shoppers feel); when a run lacks it, the front is
over LTV and margin alone. Points are means over seeds (the 95% CIs are in ``summary.md``).
Researchers who want the whole front of one policy family rather than of a few policies use
the multi-objective envs (``shopgym/mo-*-v0``, :mod:`sim.envs.mo`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from numpy.typing import NDArray

#: The objectives of the front: (summary metric, label, +1 to maximize or -1 to minimize).
PARETO_OBJECTIVES = (
    ("ltv_mean", "mean LTV per shopper ($)", 1.0),
    ("margin", "margin ($)", 1.0),
    ("late_delivery_share", "late-delivery share (load)", -1.0),
)


def pareto_mask(points: NDArray[np.float64], senses: NDArray[np.float64]) -> NDArray[np.bool_]:
    """True for the rows of ``points`` (n x k) that no other row dominates (``senses``: +1 max, -1 min)."""
    better = np.asarray(points, dtype=np.float64) * np.asarray(senses, dtype=np.float64)
    n = better.shape[0]
    mask = np.ones(n, dtype=np.bool_)
    for i in range(n):
        at_least = (better >= better[i]).all(axis=1)
        strictly = (better > better[i]).any(axis=1)
        mask[i] = not (at_least & strictly).any()
    return mask


def front_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per variant and policy: the objectives' means over seeds and whether it is on the front."""
    present = [(m, label, sense) for m, label, sense in PARETO_OBJECTIVES if m in set(summary["metric"])]
    metrics = [m for m, _, _ in present]
    if len(metrics) < 2:
        return pd.DataFrame()
    wide = summary[summary["metric"].isin(metrics)].pivot_table(
        index=["variant", "policy"], columns="metric", values="mean", sort=False
    )[metrics]
    wide = wide.dropna()
    senses = np.array([sense for _, _, sense in present])
    on_front = pd.Series(False, index=wide.index)
    for _, group in wide.groupby(level="variant", sort=False):
        on_front[group.index] = pareto_mask(group.to_numpy(), senses)
    return wide.assign(on_front=on_front).reset_index()


def plot_pareto_front(summary: pd.DataFrame, path: Path) -> bool:
    """Every pair of objectives as a panel; policies on the (all-objective) front filled, the rest hollow."""
    table = front_table(summary)
    if table.empty:
        return False
    present = [(m, label) for m, label, _ in PARETO_OBJECTIVES if m in table.columns]
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1 :]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, ((x, x_label), (y, y_label)) in zip(axes.flat, pairs, strict=True):
        for k, row in enumerate(table.itertuples(index=False)):
            label = row.policy if row.variant == "base" else f"{row.policy} ({row.variant})"
            x_value, y_value = getattr(row, x), getattr(row, y)
            face = colours(k % 10) if row.on_front else "none"
            ax.scatter(x_value, y_value, s=50, facecolors=face, edgecolors=colours(k % 10), zorder=3)
            ax.annotate(label, (x_value, y_value), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Pareto front of the policies: filled = not dominated on LTV (more), margin (more), load (less)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
