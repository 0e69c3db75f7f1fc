"""The oracle bounds every policy: no rule in a grid of blanket and trait-reading rules beats it.

The rules read what the oracle reads (each shopper's true offer response and contact churn,
her decision kind) but decide by a fixed rule: blanket referral and coupons, coupons to
persuadables only, win-back coupons, and a combination that spares sleeping dogs. Each is
paired with the oracle episode by episode (common random numbers) on the margin the shop
earns; none may beat it with its 95% CI above 0. On CampaignPlanning, where one incentive
goes to a whole segment, the bound is the planning oracle (``kind: oracle_plan``) and the grid
is every blanket incentive, per-segment rules and a rule that pauses incentives in the peak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401  (registers the environments)
from policies.base import env_spec
from policies.evaluate import episode_frame, evaluate
from policies.registry import make_policy
from sim.envs.campaign import SEGMENTS
from sim.oracle import OracleView
from sim.params import DECISION_KINDS


class _TraitRule:
    """A fixed rule over the oracle's view of the current shopper (a privileged but non-optimizing policy)."""

    name = "trait_rule"

    def __init__(self, env: gym.Env[Any, Any], pick: Callable[[OracleView, int], str | None]) -> None:
        self._env = env.unwrapped
        self._names = [i.name for i in self._env.scenario.incentives]
        self._pick = pick

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, Any]:
        view = self._env.oracle_view()
        if view.kinds.size == 0:
            return np.asarray(0, dtype=np.int64), state
        name = self._pick(view, view.row or 0)
        action = 0 if name is None else self._names.index(name)
        if action_masks is not None and not np.asarray(action_masks).reshape(-1)[action]:
            action = 0
        return np.asarray(action, dtype=np.int64), state

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to learn."""


def _kind(view: OracleView, row: int) -> str:
    return DECISION_KINDS[int(view.kinds[row])]


def _persuadable(view: OracleView, row: int) -> bool:
    return bool(view.state.offer_response[row] > 0.5 and view.state.contact_churn[row] == 0)


def _combination(view: OracleView, row: int) -> str | None:
    if view.state.contact_churn[row] > 0:
        return None  # let sleeping dogs lie
    if _kind(view, row) == "lapsing":
        return "coupon_20"
    return "coupon_10" if _persuadable(view, row) else "referral_10"


RULES: dict[str, Callable[[OracleView, int], str | None]] = {
    "blanket_referral_10": lambda v, r: "referral_10",
    "blanket_coupon_10": lambda v, r: "coupon_10",
    "persuadables_coupon_10": lambda v, r: "coupon_10" if _persuadable(v, r) else None,
    "persuadables_coupon_20": lambda v, r: "coupon_20" if _persuadable(v, r) else None,
    "winback_coupon_20": lambda v, r: "coupon_20" if _kind(v, r) == "lapsing" else None,
    "combination": _combination,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_id", "kwargs", "episodes"),
    [
        ("shopgym/ShopperJourney-v0", {"horizon_days": 365}, 200),
        (
            "shopgym/IncentiveTargeting-v0",
            {
                "overrides": {"population.shoppers": 500, "population.acquisition_days": 5.0},
                "horizon_days": 30,
            },
            3,
        ),
    ],
    ids=["journey", "targeting"],
)
def test_no_blanket_or_trait_reading_rule_beats_the_oracle_on_margin(
    env_id: str, kwargs: dict[str, Any], episodes: int
) -> None:
    env = gym.make(env_id, **kwargs)

    def margins(policy: Any) -> np.ndarray:
        frame = episode_frame(evaluate(policy, env, episodes=episodes, seed=700, learn=False))
        return frame["margin"].to_numpy(dtype=np.float64)

    oracle = margins(make_policy("oracle", env, seed=0))
    for name, pick in RULES.items():
        gain = margins(_TraitRule(env, pick)) - oracle
        half = 1.96 * gain.std(ddof=1) / np.sqrt(gain.size)
        assert gain.mean() - half <= 0.0, f"{name} beats the oracle: {gain.mean():+.2f} +- {half:.2f}"


class _SegmentRule:
    """A fixed per-segment plan for CampaignPlanning, by incentive name (peak days may differ)."""

    name = "segment_rule"

    def __init__(
        self, env: gym.Env[Any, Any], plan: dict[str, str], peak: dict[str, str] | None = None
    ) -> None:
        self._env = env.unwrapped
        self.spec = env_spec(env)  # its per-segment heads, for the evaluation's incentive mix
        names = [i.name for i in self._env.scenario.incentives]
        self._plans = [
            np.array([names.index(p.get(s, "none")) for s in SEGMENTS], dtype=np.int64)
            for p in (plan, plan if peak is None else peak)
        ]

    def predict(self, observation: Any, state: Any = None, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return self._plans[int(self._env.phases()[self._env.day])].copy(), state

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to learn."""


@pytest.mark.slow
def test_no_blanket_or_segment_rule_beats_the_planning_oracle_on_campaign_margin() -> None:
    # A small peak-season shop whose peak falls inside a short horizon, rewarded on margin alone.
    env = gym.make(
        "shopgym/CampaignPlanning-v0",
        overrides={
            "population.shoppers": 1000,
            "sessions.peaks": [{"start_day": 12, "days": 5, "visit_multiplier": 3.0}],
        },
        horizon_days=21,
        objective_weights={"margin": 1.0},
    )
    names = [i.name for i in env.unwrapped.scenario.incentives]
    everyone = dict.fromkeys(SEGMENTS, "referral_10")
    rules: dict[str, Any] = {f"blanket_{n}": _SegmentRule(env, dict.fromkeys(SEGMENTS, n)) for n in names[1:]}
    rules |= {
        "segment_rules": make_policy("segment_rules", env, seed=0),
        "winback_coupon_20": _SegmentRule(env, {"high_value_at_risk": "coupon_20"}),
        "cart_free_shipping_referral": _SegmentRule(env, everyone | {"cart_abandoners": "free_shipping"}),
        "referral_off_peak": _SegmentRule(env, everyone, peak={}),
    }

    def margins(policy: Any) -> np.ndarray:
        frame = episode_frame(evaluate(policy, env, episodes=3, seed=700, learn=False))
        return frame["margin"].to_numpy(dtype=np.float64)

    oracle = margins(make_policy("oracle_plan", env, seed=0, sweeps=1))
    assert oracle.mean() > margins(make_policy("none", env, seed=0)).mean()
    for name, rule in rules.items():
        gain = margins(rule) - oracle
        half = 1.96 * gain.std(ddof=1) / np.sqrt(gain.size)
        assert gain.mean() - half <= 0.0, f"{name} beats the plan oracle: {gain.mean():+.2f} +- {half:.2f}"
