"""``shopgym ab-test``: what a randomized incentive test identifies, and whether a scenario agrees.

A shop randomized customers at one decision point (say cart abandonment) between ``none`` and
one or more incentives and counted, per arm, the customers and those who bought within the
test's window. From those counts:

* **The response is identified.** Each arm's average effect on the purchase probability,
  ``p1 - p0``, with its standard error (two independent binomial arms; Wald interval).
* **The uplift-class shares are not, only bounded.** A customer's class is the pair of her
  potential outcomes (buys treated, buys untreated); a test sees one of the pair per customer.
  With the arms' rates fixed, any persuadable share between ``max(0, p1 - p0)`` and
  ``min(p1, 1 - p0)`` fits the counts exactly (the Fréchet bounds), and the sleeping dogs,
  sure things and lost causes move with it. The shares under "no sleeping dogs" (monotonicity)
  are printed as what they are: an assumption's consequence, not an estimate.
* **The scenario's own answer.** The same experiment runs in the scenario's shop (its first
  decision of that kind per shopper in an enrolment week, arms by a fair draw, purchase within
  the window), over several seeds; the measured and the simulated effects are compared with
  their joint standard error. A scenario that disagrees needs its response parameters refitted
  (docs/CALIBRATION.md: the method of simulated moments).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.engine import DecisionBatch, Simulation
from sim.envs.common import resolve_scenario
from sim.io import atomic_write_json
from sim.params import DECISION_KINDS, Scenario, ScenarioError
from sim.population import HOURS_PER_DAY

#: Largest test file read: a test has a handful of arms.
MAX_FILE_BYTES = 1_000_000
#: Most customers one arm may report (guards against a misplaced column of order ids).
MAX_CUSTOMERS = 10**9
#: Columns of the test file, one row per arm.
COLUMNS = ("arm", "customers", "buyers")


class ABTestError(ValueError):
    """A test file or an option that cannot be used, with what is allowed."""


@dataclass(frozen=True)
class ArmEffect:
    """One treated arm against control: the identified effect and the bounds on the class shares."""

    arm: str
    customers: int
    buyers: int
    rate: float
    effect: float  # p1 - p0
    effect_se: float
    persuadables: tuple[float, float]  # Fréchet bounds
    sleeping_dogs: tuple[float, float]
    sure_things: tuple[float, float]
    lost_causes: tuple[float, float]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_test(path: str | Path, incentives: list[str]) -> pd.DataFrame:
    """The test's arms (``arm, customers, buyers``), checked: one ``none`` control, known incentives."""
    file = Path(path)
    if not file.is_file():
        raise ABTestError(f"{file}: no such file; give a CSV with columns {', '.join(COLUMNS)}")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise ABTestError(
            f"{file}: {file.stat().st_size:,} bytes; a test file has at most {MAX_FILE_BYTES:,}"
        )
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ABTestError(f"{file}: not a readable CSV ({str(error)[:120]})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ABTestError(f"{file}: missing column(s) {missing}; the columns are {list(COLUMNS)}")
    frame = frame[list(COLUMNS)].copy()
    frame["arm"] = frame["arm"].str.strip()
    for row, arm in enumerate(frame["arm"], start=2):
        if arm not in incentives:
            raise ABTestError(
                f"{file} line {row}: arm {_shown(arm)} is not an incentive of the scenario; "
                f"allowed: {', '.join(incentives)}"
            )
    if frame["arm"].duplicated().any():
        raise ABTestError(f"{file}: arm {frame['arm'][frame['arm'].duplicated()].iloc[0]!r} appears twice")
    if (frame["arm"] == "none").sum() != 1 or len(frame) < 2:
        raise ABTestError(f"{file}: needs one control row (arm none) and at least one incentive arm")
    for column in ("customers", "buyers"):
        for row, text in enumerate(frame[column], start=2):
            value = int(text) if text.strip().isdigit() else -1
            if not 0 <= value <= MAX_CUSTOMERS:
                raise ABTestError(
                    f"{file} line {row}: {column} {_shown(text)} is not allowed; "
                    f"a whole number in [0, {MAX_CUSTOMERS:,}]"
                )
        frame[column] = frame[column].astype(np.int64)
    bad = frame[(frame["customers"] < 1) | (frame["buyers"] > frame["customers"])]
    if not bad.empty:
        arm = bad.iloc[0]
        raise ABTestError(
            f"{file}: arm {arm['arm']!r} has {arm['buyers']} buyers of {arm['customers']} customers; "
            "an arm needs at least one customer and no more buyers than customers"
        )
    return frame.reset_index(drop=True)


def effects(test: pd.DataFrame) -> list[ArmEffect]:
    """Each incentive arm's effect against the ``none`` arm, and the Fréchet bounds on the shares."""
    control = test[test["arm"] == "none"].iloc[0]
    n0, p0 = int(control["customers"]), control["buyers"] / control["customers"]
    out = []
    for _, arm in test[test["arm"] != "none"].iterrows():
        n1, p1 = int(arm["customers"]), arm["buyers"] / arm["customers"]
        effect = p1 - p0
        low, high = max(0.0, effect), min(p1, 1.0 - p0)
        out.append(
            ArmEffect(
                arm=str(arm["arm"]),
                customers=n1,
                buyers=int(arm["buyers"]),
                rate=float(p1),
                effect=float(effect),
                effect_se=math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0),
                persuadables=(low, high),
                sleeping_dogs=(low - effect, high - effect),
                sure_things=(p1 - high, p1 - low),
                lost_causes=(1 - p0 - high, 1 - p0 - low),
            )
        )
    return out


def simulate_test(
    scenario: Scenario,
    arms: list[str],
    decision: str,
    seed: int,
    start_day: int,
    enrol_days: int,
    window_days: int,
) -> pd.DataFrame:
    """The same test in the scenario's shop: per arm, customers and buyers within the window.

    Each shopper's first ``decision`` in days ``[start_day, start_day + enrol_days)`` enrols
    her in an arm by a fair draw; she buys if her order count rises by the end of the day her
    window closes. Everyone else, and every later decision, gets ``none``.
    """
    names = [i.name for i in scenario.incentives]
    ids = np.array([names.index(a) for a in arms], dtype=np.int64)
    horizon = start_day + enrol_days + window_days
    sim = Simulation(scenario, seed=seed, horizon_days=horizon, log_level="aggregates")
    draw = np.random.default_rng([seed, 0xAB])
    first, last = start_day * HOURS_PER_DAY, (start_day + enrol_days) * HOURS_PER_DAY
    # Per enrolment batch: the shoppers, their arms, their window ends (hours), their orders then.
    parts: list[tuple[NDArray[np.int64], NDArray[np.int64], float, NDArray[np.int64]]] = []
    seen = np.zeros(0, dtype=bool)

    def decide(batch: DecisionBatch) -> NDArray[np.int64]:
        nonlocal seen
        chosen = np.zeros(batch.shoppers.size, dtype=np.int64)
        if batch.kind != decision or not first <= batch.time_hours < last:
            return chosen
        if seen.size < sim.pop.size:  # referred friends joined
            seen = np.concatenate([seen, np.zeros(sim.pop.size - seen.size, dtype=bool)])
        new = ~seen[batch.shoppers]
        shoppers = batch.shoppers[new]
        seen[shoppers] = True
        arm = draw.integers(len(arms), size=shoppers.size)
        chosen[new] = ids[arm]
        end = batch.time_hours + window_days * HOURS_PER_DAY
        parts.append((shoppers, arm, end, sim.pop.orders[shoppers].copy()))
        return chosen

    measured: list[tuple[NDArray[np.int64], NDArray[np.bool_]]] = []
    done = 0  # parts measured so far (they end in enrolment order)

    def measure(now: float) -> None:
        nonlocal done
        while done < len(parts) and parts[done][2] <= now:
            shoppers, arm, _, orders = parts[done]
            measured.append((arm, sim.pop.orders[shoppers] > orders))
            done += 1

    sim.run(decide, on_day=lambda day: measure(day * HOURS_PER_DAY))
    measure(float(horizon * HOURS_PER_DAY))
    arm_of = np.concatenate([a for a, _ in measured]) if measured else np.zeros(0, dtype=np.int64)
    hits = np.concatenate([b for _, b in measured]) if measured else np.zeros(0, dtype=bool)
    return pd.DataFrame(
        {
            "arm": arms,
            "customers": np.bincount(arm_of, minlength=len(arms)),
            "buyers": np.bincount(arm_of, weights=hits, minlength=len(arms)).astype(np.int64),
        }
    )


def _range(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:.1%} to {bounds[1]:.1%}"


def report(measured: list[ArmEffect], simulated: list[ArmEffect] | None, control_rate: float) -> str:
    """The markdown report: effects, share bounds and the scenario's agreement."""
    lines = [
        f"Control (none): {control_rate:.2%} bought within the window.",
        "",
        "| arm | rate | effect (p1 - p0) | 95% CI | persuadables | sleeping dogs | sure things "
        "| lost causes |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for e in measured:
        low, high = e.effect - 1.96 * e.effect_se, e.effect + 1.96 * e.effect_se
        lines.append(
            f"| {e.arm} | {e.rate:.2%} | {e.effect:+.2%} | {low:+.2%} to {high:+.2%} | "
            f"{_range(e.persuadables)} | {_range(e.sleeping_dogs)} | {_range(e.sure_things)} | "
            f"{_range(e.lost_causes)} |"
        )
    lines += [
        "",
        "The effect is identified; the class shares are only bounded (Fréchet bounds at the measured "
        "rates): every share in a range fits the counts exactly. Assuming no sleeping dogs would put "
        "the persuadables at the lower bound: an assumption, not an estimate.",
    ]
    if simulated is not None:
        lines += ["", "| arm | measured effect | scenario's effect | difference / joint SE | verdict |"]
        lines.append("|---|---:|---:|---:|---|")
        for m, s in zip(measured, simulated, strict=True):
            z = (m.effect - s.effect) / max(math.hypot(m.effect_se, s.effect_se), 1e-12)
            verdict = (
                "consistent"
                if abs(z) < 1.96
                else ("the scenario responds too weakly" if z > 0 else "the scenario responds too strongly")
            )
            lines.append(
                f"| {m.arm} | {m.effect:+.2%} ± {1.96 * m.effect_se:.2%} | "
                f"{s.effect:+.2%} ± {1.96 * s.effect_se:.2%} | {z:+.2f} | {verdict} |"
            )
        lines += [
            "",
            "Where they disagree, refit the response parameters by simulated moments "
            "(docs/CALIBRATION.md, 'Calibrating incentive responses from an A/B test').",
        ]
    return "\n".join(lines) + "\n"


def add_ab_test_parser(sub: Any) -> None:
    """Add ``shopgym ab-test`` to the command's subparsers."""
    parser = sub.add_parser(
        "ab-test",
        help="estimate an incentive's effect from a randomized test and check a scenario against it",
        description=(
            "Read a randomized test's counts (CSV: arm, customers, buyers; one row per arm, arm 'none' the "
            "control, the others incentive names of --scenario), print each incentive's effect on the "
            "purchase probability with its 95% CI and the Fréchet bounds on the uplift-class shares (a "
            "test identifies the effect, not the shares), then run the same test in the scenario's shop "
            "and say whether its response agrees. See docs/CALIBRATION.md."
        ),
    )
    parser.add_argument("test", help="CSV with columns arm, customers, buyers")
    parser.add_argument("--scenario", default="default", help="scenario name or YAML path (default default)")
    parser.add_argument(
        "--decision",
        default="cart_abandoned",
        choices=list(DECISION_KINDS),
        help="the decision point the test randomized at (default cart_abandoned)",
    )
    parser.add_argument("--window-days", type=int, default=14, help="the test's purchase window (default 14)")
    parser.add_argument(
        "--shoppers",
        type=int,
        default=100_000,
        help="the simulated shop's population (default 100000: enough shoppers reach the decision)",
    )
    parser.add_argument(
        "--start-day", type=int, default=120, help="first enrolment day in the shop (default 120)"
    )
    parser.add_argument("--enrol-days", type=int, default=7, help="enrolment days (default 7)")
    parser.add_argument(
        "--seeds", type=int, default=3, help="simulated shops, seeds 0..N-1 (default 3; 0: none)"
    )
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.set_defaults(func=run_ab_test)


def run_ab_test(args: argparse.Namespace) -> int:
    """Run ``shopgym ab-test``; a bad file or option prints one line and returns 2."""
    import sys

    from rich.progress import track

    try:
        for option, value, low, high in (
            ("--window-days", args.window_days, 1, 365),
            ("--start-day", args.start_day, 0, 3650),
            ("--enrol-days", args.enrol_days, 1, 365),
            ("--seeds", args.seeds, 0, 100),
            ("--shoppers", args.shoppers, 1, 10**6),
        ):
            if not low <= value <= high:
                raise ABTestError(f"{option} {value} is not allowed; a whole number in [{low}, {high}]")
        scenario = resolve_scenario(args.scenario, {"population.shoppers": args.shoppers})
        if args.decision not in scenario.engine.decision_points:
            raise ABTestError(
                f"--decision {args.decision}: the scenario has no such decision point; "
                f"its decision points: {', '.join(scenario.engine.decision_points)}"
            )
        test = read_test(args.test, [i.name for i in scenario.incentives])
    except (ABTestError, ScenarioError) as error:
        print(f"shopgym ab-test: {error}", file=sys.stderr)
        return 2
    measured = effects(test)
    simulated = None
    if args.seeds:
        arms = ["none", *(e.arm for e in measured)]
        runs = [
            simulate_test(
                scenario, arms, args.decision, seed, args.start_day, args.enrol_days, args.window_days
            )
            for seed in track(range(args.seeds), description="simulating the test", transient=True)
        ]
        pooled = pd.concat(runs).groupby("arm", sort=False)[["customers", "buyers"]].sum().reset_index()
        if (pooled["customers"] == 0).any():
            empty = pooled["arm"][pooled["customers"] == 0].tolist()
            print(
                f"shopgym ab-test: no simulated shopper reached {args.decision} in the enrolment days "
                f"for arm(s) {empty}; raise --shoppers, --enrol-days or --seeds",
                file=sys.stderr,
            )
            return 1
        simulated = effects(pooled)
    control = test[test["arm"] == "none"].iloc[0]
    print(report(measured, simulated, control["buyers"] / control["customers"]), end="")
    if args.out:
        atomic_write_json(
            {
                "measured": [asdict(e) for e in measured],
                "simulated": None if simulated is None else [asdict(e) for e in simulated],
                "decision": args.decision,
                "window_days": args.window_days,
            },
            Path(args.out),
        )
    return 0
