"""``shopgym ab-test``: the identified effect, the Fréchet bounds, the scenario check and bad files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.ab_test import ABTestError, effects, read_test, simulate_test
from sim.envs.common import resolve_scenario

INCENTIVES = [i.name for i in resolve_scenario("default", None).incentives]


def _write(path: Path, rows: list[tuple[str, int, int]]) -> Path:
    pd.DataFrame(rows, columns=["arm", "customers", "buyers"]).to_csv(path, index=False)
    return path


def test_the_effect_is_identified_and_the_class_shares_only_bounded(tmp_path: Path) -> None:
    test = read_test(_write(tmp_path / "t.csv", [("none", 1000, 200), ("coupon_10", 1000, 300)]), INCENTIVES)
    (arm,) = effects(test)
    assert arm.effect == pytest.approx(0.10)
    assert arm.effect_se == pytest.approx(np.sqrt(0.3 * 0.7 / 1000 + 0.2 * 0.8 / 1000))
    assert arm.persuadables == pytest.approx((0.10, 0.30))
    assert arm.sleeping_dogs == pytest.approx((0.0, 0.20))
    # At both ends of the bounds the four shares sum to 1 and reproduce both arms' rates exactly.
    for end in (0, 1):
        persuadable, dog = arm.persuadables[end], arm.sleeping_dogs[end]
        sure, lost = arm.sure_things[1 - end], arm.lost_causes[1 - end]
        assert persuadable + dog + sure + lost == pytest.approx(1.0)
        assert sure + persuadable == pytest.approx(0.30)  # bought treated
        assert sure + dog == pytest.approx(0.20)  # bought untreated


def test_a_test_of_the_scenarios_own_shop_is_consistent_and_no_effect_is_too_weak(tmp_path: Path) -> None:
    scenario = resolve_scenario("default", {"population.shoppers": 30_000})
    own = simulate_test(scenario, ["none", "coupon_10"], "cart_abandoned", 10, 120, 7, 14)
    assert own["customers"].min() > 100
    measured = _write(tmp_path / "own.csv", list(own.itertuples(index=False, name=None)))
    flat = int(own["customers"][1])
    nothing = _write(
        tmp_path / "flat.csv",
        [
            ("none", *own.iloc[0, 1:].tolist()),
            ("coupon_10", flat, round(flat * own["buyers"][0] / own["customers"][0])),
        ],
    )
    common = ["--shoppers", "30000", "--seeds", "1"]
    result = subprocess.run(["shopgym", "ab-test", str(measured), *common], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| coupon_10 |" in result.stdout and "consistent" in result.stdout
    out = tmp_path / "flat.json"
    result = subprocess.run(
        ["shopgym", "ab-test", str(nothing), *common, "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (
        "the scenario responds too strongly" in result.stdout
    )  # the shop's coupon works; this test saw none
    figures = json.loads(out.read_text())
    assert abs(figures["measured"][0]["effect"]) < 0.01 < figures["simulated"][0]["effect"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("none", 100, 10), ("coupon_99", 100, 20)], "arm 'coupon_99' is not an incentive of the scenario"),
        ([("none", 100, 10), ("coupon_10", 100, 120)], "no more buyers than customers"),
        ([("coupon_10", 100, 10), ("free_shipping", 100, 20)], "needs one control row"),
        ([("none", 100, 10), ("coupon_10", -5, 1)], "customers '-5' is not allowed"),
        ([("none", 100, 10), ("none", 100, 11)], "appears twice"),
    ],
)
def test_a_bad_test_file_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, rows: list[tuple[str, int, int]], message: str
) -> None:
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(ABTestError, match=message):
        read_test(path, INCENTIVES)
    if "coupon_99" not in message:
        return  # one case goes through the command line: the rest share its error path
    out = tmp_path / "out.json"
    result = subprocess.run(
        ["shopgym", "ab-test", str(path), "--seeds", "0", "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("shopgym ab-test: ") and message.split("'")[0] in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not out.exists()
