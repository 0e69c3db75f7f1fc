"""``shopgym uplift-check``: can a shop learn whom to give an incentive from what it observes?

The field recipe, run on ShopperJourney's shoppers at their first decision:

1. **A randomized campaign.** ``--train`` shoppers each get the incentive or ``none`` by a fair
   coin at their first decision, ``none`` at every later one; the log keeps what the shop
   observed then, the coin and the margin each went on to earn to the horizon.
2. **A meta-learner** (the shipped ``uplift`` policy: scikit-learn boosted trees; ``--learner x``,
   its default X-learner, or ``t``, the T-learner) fitted on that log predicts each new shopper's
   uplift from her observation alone.
3. **The truth.** For ``--eval`` fresh shoppers, each arm's expected margin from the decision on
   comes from ``--replicates`` futures of her true journey (common random numbers), so the true
   individual effect is known up to Monte Carlo error.

Reported per seed and pooled (mean and 95% t-interval over seeds): the normalized Qini of the
learner's ranking against the true effects (0 = random ranking, 1 = the true effects' own
ranking; the Monte Carlo noise in the "true" effects lowers the ceiling a little), and the
margin per shopper of two targeting rules against ``none`` and against treating everyone: treat
where the predicted uplift is positive, and treat the top share that cross-fitting on the log
itself values highest (:func:`cross_fitted_share`: what a shop can choose without the truth).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from policies.base import env_spec
from policies.registry import make_policy
from policies.uplift import LEARNERS
from sim.envs.journey_task import JourneyTask
from sim.envs.journey_vector import ShopperJourneyVectorEnv
from sim.io import atomic_write_parquet, atomic_write_text
from sim.journeys import DONE
from sim.population import HOURS_PER_DAY

F64 = NDArray[np.float64]
ENV_ID = "shopgym/ShopperJourney-v0"
#: The campaign reaches shoppers whose decision falls in its first week.
CAMPAIGN_DAYS = 7


def _decisions_after(
    n: int, seed: int, start_day: int, kwargs: dict[str, Any]
) -> tuple[Any, JourneyTask, NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]:
    """``n`` journeys under ``none`` to their first decision at a tenure of ``start_day`` or more.

    Returns the vector env, its task, the rows deciding within the campaign's first
    ``CAMPAIGN_DAYS`` (the audience), their observations and their eligibility masks.
    """
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    envs.reset(seed=seed)
    native = envs.unwrapped
    assert isinstance(native, ShopperJourneyVectorEnv)  # the registered vector entry point
    task = native.task
    batch, pop = task.batch, task.batch.pop
    rows = np.arange(n)

    def early(candidates: NDArray[np.int64]) -> NDArray[np.int64]:
        tenure = batch.now_hours(candidates) - pop.acquired_at[candidates]
        return candidates[(batch.phase[candidates] != DONE) & (tenure < start_day * HOURS_PER_DAY)]

    while (waiting := early(rows)).size:
        batch.submit(waiting, np.zeros(waiting.size, dtype=np.int64))
        batch.advance(waiting)
    deciding = batch.phase != DONE
    tenure = batch.now_hours(rows) - pop.acquired_at
    audience = rows[deciding & (tenure < (start_day + CAMPAIGN_DAYS) * HOURS_PER_DAY)]
    return envs, task, audience, task.observe(audience), task.allowed(audience)


def normalized_qini(predicted: F64, true_effect: F64) -> float:
    """Area between the Qini curve of ``predicted`` and random targeting, over that of the true ranking.

    The Qini curve sums the true effects of the shoppers treated, in order of predicted uplift.
    """
    n = true_effect.size
    random_line = np.arange(1, n + 1) * true_effect.sum() / n
    model = np.cumsum(true_effect[np.argsort(-predicted, kind="stable")]) - random_line
    perfect = np.cumsum(np.sort(true_effect)[::-1]) - random_line
    return float(model.sum() / perfect.sum()) if perfect.sum() > 0 else float("nan")


def check_seed(
    seed: int,
    train: int,
    evaluate: int,
    replicates: int,
    incentive: str,
    start_day: int,
    kwargs: dict[str, Any],
    learner_kind: str = "x",
) -> tuple[dict[str, float], pd.DataFrame]:
    """One seed: the randomized log, the meta-learner, its ranking and targeting against the truth."""
    envs, task, audience, obs, masks = _decisions_after(train, seed, start_day, kwargs)
    arm = list(task.catalog.names).index(incentive)
    coin = np.random.default_rng([seed, 1]).random(audience.size) < 0.5
    treated = coin & masks[:, arm]
    actions = np.where(treated, arm, 0)
    outcome = task.play_out(audience, actions)
    spec = env_spec(gym.make(ENV_ID, **kwargs))
    learner: Any = make_policy("uplift", spec, seed, log_size=train, min_arm_samples=1, learner=learner_kind)
    learner.update(obs, actions, outcome)
    share = cross_fitted_share(spec, seed, obs, actions, outcome, masks[:, arm], arm, learner_kind)
    envs.close()

    envs, task, audience, obs, masks = _decisions_after(evaluate, seed + 1_000_003, start_day, kwargs)
    arms = np.array([0, arm])
    truth = np.array([task.rollout_values(row, replicates, arms, key=seed) for row in audience.tolist()])
    envs.close()
    allowed = masks[:, arm]
    predicted = learner.predicted_rewards(obs)
    uplift_hat = np.where(allowed, predicted[:, arm] - predicted[:, 0], -np.inf)
    effect = np.where(allowed, truth[:, 1] - truth[:, 0], 0.0)
    target = uplift_hat > 0
    gain_vs_none = np.where(target, effect, 0.0)
    gain_vs_blanket = gain_vs_none - effect
    finite = np.isfinite(uplift_hat)
    cut = np.quantile(uplift_hat[finite], 1.0 - share) if share > 0 else np.inf
    chosen = finite & (uplift_hat >= cut)
    summary = {
        "seed": float(seed),
        "normalized_qini": normalized_qini(uplift_hat[finite], effect[finite]),
        "treated_share": float(target.mean()),
        "targeting_vs_none": float(gain_vs_none.mean()),
        "targeting_vs_blanket": float(gain_vs_blanket.mean()),
        "validated_share": share,
        "validated_vs_none": float(np.where(chosen, effect, 0.0).mean()),
        "blanket_vs_none": float(effect.mean()),
        "oracle_targeting_vs_none": float(np.maximum(effect, 0.0).mean()),
        "audience_eval": float(audience.size),
        "log_treated": float(treated.sum()),
        "log_control": float((~treated).sum()),
    }
    rows = pd.DataFrame(
        {"seed": seed, "true_effect": effect, "predicted_uplift": np.where(finite, uplift_hat, np.nan)}
    )
    return summary, rows


def cross_fitted_share(
    spec: Any,
    seed: int,
    obs: NDArray[np.float32],
    actions: NDArray[np.int64],
    outcome: F64,
    allowed: NDArray[np.bool_],
    arm: int,
    learner_kind: str = "x",
) -> float:
    """The share to treat, top-ranked first, chosen by its value on the randomized log itself.

    Two-fold cross-fitting: each half is ranked by a learner fitted on the other half, and
    each candidate share (0, 10%, ..., 100%) is valued by inverse propensity weighting of the
    fair coin (``+2y`` if treated, ``-2y`` if not, among the shoppers it would treat). Ties go
    to the smaller share: treating nobody wins unless the log says otherwise.
    """
    folds = np.arange(obs.shape[0]) % 2
    held_out = np.full(obs.shape[0], -np.inf)
    for fold in (0, 1):
        fit = folds != fold
        model: Any = make_policy(
            "uplift", spec, seed, log_size=int(fit.sum()), min_arm_samples=1, learner=learner_kind
        )
        model.update(obs[fit], actions[fit], outcome[fit])
        predicted = model.predicted_rewards(obs[~fit])
        held_out[~fit] = predicted[:, arm] - predicted[:, 0]
    held_out = np.where(allowed, held_out, -np.inf)
    contrast = np.where(actions == arm, 2.0 * outcome, -2.0 * outcome)
    ranked = held_out[allowed]
    best, best_value = 0.0, 0.0
    for share in np.linspace(0.1, 1.0, 10):
        cut = np.quantile(ranked, 1.0 - share)
        value = float(np.mean(np.where(allowed & (held_out >= cut), contrast, 0.0)))
        if value > best_value:
            best, best_value = float(share), value
    return best


def _interval(values: F64) -> str:
    mean = float(np.mean(values))
    if values.size < 2:
        return f"{mean:+.3f}"
    half = float(stats.t.ppf(0.975, values.size - 1) * np.std(values, ddof=1) / math.sqrt(values.size))
    return f"{mean:+.3f} ± {half:.3f}"


def format_markdown(per_seed: pd.DataFrame, note: str) -> str:
    """The pooled table (mean and 95% t-interval over seeds) and the per-seed rows."""
    lines = [
        "# Uplift check",
        "",
        note,
        "",
        "| measure | mean ± 95% CI over seeds |",
        "| --- | --- |",
    ]
    labels = {
        "normalized_qini": "normalized Qini of the learner's ranking",
        "targeting_vs_none": "targeting rule vs none ($ margin per shopper)",
        "targeting_vs_blanket": "targeting rule vs everyone treated ($ margin per shopper)",
        "blanket_vs_none": "everyone treated vs none ($ margin per shopper)",
        "oracle_targeting_vs_none": "true-effect targeting vs none ($, the ceiling)",
        "treated_share": "share the rule treats",
        "validated_vs_none": "top share chosen on the log (cross-fitted) vs none ($ margin per shopper)",
        "validated_share": "share chosen on the log",
    }
    for column, label in labels.items():
        lines.append(f"| {label} | {_interval(per_seed[column].to_numpy())} |")
    columns = ["seed", *labels]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for _, row in per_seed.iterrows():
        lines.append("| " + " | ".join([f"{int(row['seed'])}", *(f"{row[c]:+.3f}" for c in labels)]) + " |")
    return "\n".join([*lines, ""])


def add_uplift_check_parser(sub: Any) -> None:
    """The ``shopgym uplift-check`` command."""
    parser = sub.add_parser(
        "uplift-check",
        help="an uplift learner on a randomized campaign against the true individual effects (Qini)",
        description=(
            "Randomize an incentive at ShopperJourney shoppers' first decision, fit the shipped uplift "
            "policy (X- or T-learner) on that log, and score its targeting on fresh shoppers whose true "
            "effects come from replicated futures: normalized Qini, and margin per shopper against "
            "none and against treating everyone, per seed and pooled."
        ),
    )
    parser.add_argument("--scenario", default="default", help="shipped scenario name or YAML path")
    parser.add_argument(
        "--incentive", default="coupon_10", help="the incentive randomized (default coupon_10)"
    )
    parser.add_argument(
        "--train", type=int, default=4000, help="shoppers in the randomized log (default 4000)"
    )
    parser.add_argument("--eval", type=int, default=1000, help="fresh shoppers scored (default 1000)")
    parser.add_argument("--replicates", type=int, default=32, help="futures per arm and shopper (default 32)")
    parser.add_argument(
        "--start-day",
        type=int,
        default=90,
        help="the campaign reaches shoppers at their first decision after this tenure, in its first "
        f"{CAMPAIGN_DAYS} days (default 90; 0: at their first decision)",
    )
    parser.add_argument(
        "--window-days",
        type=int,
        default=14,
        help="the outcome: margin from the decision to the campaign's start plus this many days "
        "(default 14: a campaign's usual read-out, twice a coupon's 7-day validity)",
    )
    parser.add_argument(
        "--learner",
        choices=LEARNERS,
        default="x",
        help="the uplift policy's meta-learner: x (X-learner, its default) or t (T-learner)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="independent repetitions (default 5)")
    parser.add_argument("--out", help="folder for uplift_check.md and uplift_check.parquet")
    parser.set_defaults(func=run_uplift_check)


def run_uplift_check(args: argparse.Namespace) -> int:
    """Run the check over the seeds, print the table and write it under ``--out``."""
    for name, low in (
        ("train", 10),
        ("eval", 10),
        ("replicates", 2),
        ("start_day", 0),
        ("window_days", CAMPAIGN_DAYS),
        ("seeds", 1),
    ):
        if getattr(args, name) < low:
            print(f"shopgym uplift-check: --{name.replace('_', '-')} must be >= {low}", file=sys.stderr)
            return 2
    kwargs = {"scenario": args.scenario, "horizon_days": args.start_day + args.window_days}
    spec = env_spec(gym.make(ENV_ID, **kwargs))
    if args.incentive not in spec.action_names:
        print(
            f"shopgym uplift-check: --incentive {args.incentive!r} is not in the scenario; "
            f"allowed: {', '.join(spec.action_names[1:])}",
            file=sys.stderr,
        )
        return 2
    from rich.progress import track

    summaries, rows = [], []
    for seed in track(range(args.seeds), description="uplift-check seeds", disable=not sys.stderr.isatty()):
        summary, frame = check_seed(
            seed, args.train, args.eval, args.replicates, args.incentive, args.start_day, kwargs, args.learner
        )
        summaries.append(summary)
        rows.append(frame)
    per_seed = pd.DataFrame(summaries)
    note = (
        f"Scenario `{args.scenario}`; of {args.train:,} journeys per seed under `none`, those at a "
        f"decision in days {args.start_day}-{args.start_day + CAMPAIGN_DAYS} of their tenure get "
        f"`{args.incentive}` or `none` by a fair coin (`none` afterwards); the same audience of "
        f"{args.eval:,} fresh journeys per seed is scored against {args.replicates} futures per arm; "
        f"{args.seeds} seeds; learner: {args.learner.upper()}-learner. Outcome: dollars of margin from "
        "the decision to day "
        f"{args.start_day + args.window_days}."
    )
    text = format_markdown(per_seed, note)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text, out / "uplift_check.md")
        atomic_write_parquet(pd.concat(rows, ignore_index=True), out / "uplift_check.parquet")
    return 0
