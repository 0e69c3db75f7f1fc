"""Baseline incentive policies: what shops do without learning, to measure learners against.

- ``none``: never an incentive (the control arm).
- ``random``: a uniformly random eligible incentive (what an untrained learner does).
- ``blanket``: one incentive for everyone, the all-or-nothing anti-pattern that trains
  shoppers to wait for deals (Mela, Gupta & Lehmann 1997).
- ``segment_rules``: the CRM playbook: a welcome bundle for new shoppers, streak and tier
  progress for active mid-value shoppers, a hedonic win-back for high-value shoppers at risk,
  referral and no deep coupon for low-value shoppers, free shipping then coupon escalation for
  abandoned carts (free shipping first because shipping cost is the top abandonment reason:
  Baymard Institute; hedonic rewards for the valuable: Kivetz & Simonson 2002).
- ``onboarding``: a first-week sequence for new shoppers (welcome bundle, then a first-purchase
  bonus) while they have not ordered again; ``none`` for everyone else.
- ``ltv_coupon``: a coupon sized by expected future value and churn risk:
  ``min(0.15 x (predicted - realized LTV), 0.25 x basket) x (1 + 0.5 x churn probability)``,
  rounded down to the largest catalogue coupon worth no more than that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from policies.base import Actions, EnvSpec, JsonPolicy, check_range
from policies.rules import (
    ONBOARDING_STEPS,
    PLAYBOOK,
    SEGMENTS,
    LtvCouponRule,
    OnboardingRule,
    Rule,
    SegmentRule,
    compile_rule,
    ltv_coupon_dollars,
)

__all__ = [
    "PLAYBOOK",
    "SEGMENTS",
    "Blanket",
    "LtvCoupon",
    "NoIncentive",
    "Onboarding",
    "RandomIncentive",
    "SegmentRules",
    "ltv_coupon_dollars",
]


class RuleBaseline(JsonPolicy):
    """A fixed policy whose every decision is a :mod:`policies.rules` rule (numpy only).

    ``greedy_model()`` is the JSON decision model ``shopgym export`` writes; the runtime builds
    the same rule from it, so exported and in-process decisions agree by construction.
    """

    rule: Rule

    def greedy_model(self) -> dict[str, Any]:
        """The JSON decision model of this policy (``{"rule": kind, ...params}``)."""
        return {
            "rule": self.kind,
            "kind": self.kind,
            "action_names": list(self.spec.action_names),
            **self.params,
        }

    def _build_rule(self) -> None:
        self.rule = compile_rule(self.greedy_model(), self.spec)

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        return _squeeze(self.rule.decide(obs, masks))


class NoIncentive(RuleBaseline):
    """Never give an incentive."""

    kind = "none"
    supports_heads: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self._build_rule()


class RandomIncentive(JsonPolicy):
    """A uniformly random eligible incentive per decision (per head); ``none`` included."""

    kind = "random"
    supports_heads: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, seed: int = 0) -> None:
        super().__init__(spec, seed)

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        # Random keys, masked ones pushed below every allowed one: argmax is uniform over allowed.
        keys = self.rng.random(masks.shape) + masks
        return _squeeze(np.argmax(keys, axis=2).astype(np.int64))


class Blanket(RuleBaseline):
    """The same incentive for everyone it is allowed for (``none`` where ineligible)."""

    kind = "blanket"
    supports_heads: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, seed: int = 0, incentive: str = "coupon_10") -> None:
        super().__init__(spec, seed, incentive=incentive)
        self.incentive_id = spec.action(incentive)
        self._build_rule()


class SegmentRules(RuleBaseline):
    """The playbook table: each shopper's segment picks an incentive, escalating on carts.

    Segments follow ``CampaignPlanning-v0``: ``new`` (tenure under ``new_days``), then cart
    abandoners (at a ``cart_abandoned`` decision), ``high_value_at_risk`` (spent at least
    ``high_value`` dollars, no order for ``at_risk_days``), ``low_value`` (spent under
    ``low_value``), ``active_mid`` (the rest). Cart escalation: a shopper who already received
    ``k`` incentives gets the ``k``-th entry of the cart row (free shipping, then coupons).
    In a per-segment environment each head gets its segment's first eligible entry.
    """

    kind = "segment_rules"
    supports_heads: ClassVar[bool] = True
    #: Observation fields the per-shopper rules read.
    FIELDS = SegmentRule.FIELDS
    rule: SegmentRule

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        playbook: Mapping[str, list[str] | tuple[str, ...]] | None = None,
        new_days: float = 30.0,
        at_risk_days: float = 45.0,
        high_value: float = 300.0,
        low_value: float = 80.0,
    ) -> None:
        table = {k: list(v) for k, v in (PLAYBOOK if playbook is None else playbook).items()}
        super().__init__(
            spec,
            seed,
            playbook=table,
            new_days=new_days,
            at_risk_days=at_risk_days,
            high_value=high_value,
            low_value=low_value,
        )
        if set(table) != set(SEGMENTS):
            raise ValueError(f"playbook keys {sorted(table)} must be exactly {list(SEGMENTS)}")
        for segment, row in table.items():
            if not row:
                raise ValueError(f"playbook[{segment!r}] is empty; list at least one incentive")
            for name in row:
                spec.action(name)  # names the unknown incentive and the allowed ones
        for name, value in (("new_days", new_days), ("at_risk_days", at_risk_days)):
            check_range(name, value, 0.0)
        check_range("low_value", low_value, 0.0, high_value)
        if len(spec.heads) > 1 and spec.heads != SEGMENTS:
            raise ValueError(f"segment_rules needs heads {list(SEGMENTS)}, got {list(spec.heads)}")
        self._build_rule()
        self.table = self.rule.table
        self.per_shopper = self.rule.per_shopper

    def segments(self, obs: NDArray[np.float64]) -> NDArray[np.int64]:
        """Segment index (``SEGMENTS`` order) of each observed shopper."""
        return self.rule.segments(np.asarray(obs, dtype=np.float64))


class Onboarding(RuleBaseline):
    """A first-week sequence for new shoppers: by days since acquisition, one incentive per step.

    The default follows the playbook's new-user row: a welcome bundle (free shipping and bonus
    points) in days 0-2, a first-purchase bonus in days 3-7, each only while she has not ordered
    again (``max_orders``: her trial order); ``none`` for everyone else. ``steps`` is a list of
    ``[until_day, incentive]``; the scenario must hold the incentives it names.
    """

    kind = "onboarding"
    FIELDS = OnboardingRule.FIELDS
    rule: OnboardingRule

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        steps: Sequence[Sequence[float | str]] | None = None,
        max_orders: int = 1,
    ) -> None:
        table = [list(step) for step in (ONBOARDING_STEPS if steps is None else steps)]
        super().__init__(spec, seed, steps=table, max_orders=max_orders)
        self._build_rule()


class LtvCoupon(RuleBaseline):
    """A coupon worth ``min(0.15 x future value, 0.25 x basket) x (1 + 0.5 x churn risk)``.

    The shop's predictions come from what it observes (recency, frequency, monetary, tenure):
    her order rate is ``frequency / max(tenure, min_tenure_days)`` per day, her churn risk
    ``recency / (recency + expected gap)`` (the longer past her usual gap, the likelier she is
    gone), and predicted LTV adds ``horizon_days`` of future orders at her average order value,
    weighted by the chance she is still active, to her realized spend. The coupon is the
    largest catalogue coupon (``coupon_pct`` or ``coupon_fixed``) whose dollar value on the
    basket (the open cart, else her average order) does not exceed the formula's amount.
    """

    kind = "ltv_coupon"
    FIELDS = LtvCouponRule.FIELDS
    rule: LtvCouponRule

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        future_share: float = 0.15,
        basket_cap: float = 0.25,
        churn_weight: float = 0.5,
        horizon_days: float = 365.0,
        min_tenure_days: float = 30.0,
    ) -> None:
        super().__init__(
            spec,
            seed,
            future_share=future_share,
            basket_cap=basket_cap,
            churn_weight=churn_weight,
            horizon_days=horizon_days,
            min_tenure_days=min_tenure_days,
        )
        for name, value, high in (
            ("future_share", future_share, 1.0),
            ("basket_cap", basket_cap, 1.0),
            ("churn_weight", churn_weight, 10.0),
        ):
            check_range(name, value, 0.0, high)
        check_range("horizon_days", horizon_days, 1.0)
        check_range("min_tenure_days", min_tenure_days, 1.0)
        self._build_rule()
        self.coupon_ids = self.rule.coupon_ids
        self.coupon_values = self.rule.coupon_values
        self.coupon_pct = self.rule.coupon_pct

    def predictions(self, obs: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Predicted LTV, realized LTV, churn probability and basket of each observed shopper."""
        return self.rule.predictions(np.asarray(obs, dtype=np.float64))

    def coupon_dollars(self, obs: NDArray[np.float64]) -> NDArray[np.float64]:
        """The formula's coupon value in dollars for each observed shopper."""
        return self.rule.coupon_dollars(np.asarray(obs, dtype=np.float64))


def _squeeze(actions: NDArray[np.int64]) -> Actions:
    """(n, 1) to (n,) for single-head environments; (n, heads) otherwise."""
    return actions[:, 0] if actions.shape[1] == 1 else actions
