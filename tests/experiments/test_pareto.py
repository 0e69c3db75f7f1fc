"""The Pareto front of policies over LTV (more), margin (more) and load (less)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.pareto import front_table, pareto_mask, plot_pareto_front


def test_a_point_is_on_the_front_unless_another_is_as_good_everywhere_and_better_somewhere():
    points = np.array([[10.0, 5.0, 0.1], [9.0, 6.0, 0.1], [9.0, 4.0, 0.2], [10.0, 5.0, 0.1]])
    senses = np.array([1.0, 1.0, -1.0])
    # Row 2 is dominated by rows 0 and 3; rows 0 and 3 tie (neither dominates); row 1 trades off.
    assert pareto_mask(points, senses).tolist() == [True, True, False, True]
    assert pareto_mask(points[:, :2], -senses[:2]).tolist() == [False, False, True, False]


def _summary(rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    records = []
    for policy, values in rows.items():
        for metric, mean in zip(("ltv_mean", "margin", "late_delivery_share"), values, strict=True):
            records.append({"variant": "base", "policy": policy, "metric": metric, "mean": mean, "ci95": 0.1})
    return pd.DataFrame(records)


def test_the_front_table_marks_dominated_policies_and_the_plot_is_written(tmp_path: Path):
    summary = _summary(
        {
            "none": (150.0, 80.0, 0.05),
            "blanket": (140.0, 64.0, 0.06),  # worse than none everywhere
            "thompson": (141.0, 74.0, 0.04),  # less load: on the front
        }
    )
    table = front_table(summary)
    assert dict(zip(table["policy"], table["on_front"], strict=True)) == {
        "none": True,
        "blanket": False,
        "thompson": True,
    }
    path = tmp_path / "pareto_front.png"
    assert plot_pareto_front(summary, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_two_objectives_there_is_no_front():
    summary = _summary({"none": (1.0, 2.0, 0.0)})
    assert not plot_pareto_front(summary[summary["metric"] == "margin"], Path("unused.png"))
