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
- ``ltv_coupon``: a coupon sized by expected future value and churn risk:
  ``min(0.15 x (predicted - realized LTV), 0.25 x basket) x (1 + 0.5 x churn probability)``,
  rounded down to the largest catalogue coupon worth no more than that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from policies.base import Actions, EnvSpec, JsonPolicy, check_range

#: Segment order shared with ``CampaignPlanning-v0``'s action heads.
SEGMENTS = ("new", "active_mid", "high_value_at_risk", "low_value", "cart_abandoners")

#: The playbook: per segment, incentives in order of preference (first eligible one is given).
PLAYBOOK: dict[str, tuple[str, ...]] = {
    "new": ("bonus_500_points", "free_shipping"),
    "active_mid": ("streak_bonus_200", "points_2x"),
    "high_value_at_risk": ("surprise_box", "tier_perk"),
    "low_value": ("referral_10", "none"),
    "cart_abandoners": ("free_shipping", "coupon_10", "coupon_20"),
}


class NoIncentive(JsonPolicy):
    """Never give an incentive."""

    kind = "none"
    supports_heads: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, seed: int = 0) -> None:
        super().__init__(spec, seed)

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        return _squeeze(np.zeros((obs.shape[0], len(self.spec.heads)), dtype=np.int64))


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


class Blanket(JsonPolicy):
    """The same incentive for everyone it is allowed for (``none`` where ineligible)."""

    kind = "blanket"
    supports_heads: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, seed: int = 0, incentive: str = "coupon_10") -> None:
        super().__init__(spec, seed, incentive=incentive)
        self.incentive_id = spec.action(incentive)

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        allowed = masks[:, :, self.incentive_id]
        return _squeeze(np.where(allowed, self.incentive_id, 0).astype(np.int64))


class SegmentRules(JsonPolicy):
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
    FIELDS = (
        "tenure",
        "monetary",
        "recency",
        "incentives_received",
        "decision_cart_abandoned",
    )

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
        for name, value in (("new_days", new_days), ("at_risk_days", at_risk_days)):
            check_range(name, value, 0.0)
        check_range("low_value", low_value, 0.0, high_value)
        width = max(len(row) for row in table.values())
        # Rows padded by repeating their last entry, so escalation saturates.
        self.table = np.array(
            [[spec.action(row[min(j, len(row) - 1)]) for j in range(width)] for row in table.values()],
            dtype=np.int64,
        )
        self.per_shopper = spec.heads == ("shopper",)
        if self.per_shopper:
            self.columns = [spec.field(f) for f in self.FIELDS]
            self.scales = np.array([spec.obs_scales[c] for c in self.columns])
        elif spec.heads != SEGMENTS:
            raise ValueError(f"segment_rules needs heads {list(SEGMENTS)}, got {list(spec.heads)}")

    def segments(self, obs: NDArray[np.float64]) -> NDArray[np.int64]:
        """Segment index (``SEGMENTS`` order) of each observed shopper."""
        tenure, monetary, recency, _, cart = (obs[:, self.columns] * self.scales).T
        p = self.params
        segment = np.full(obs.shape[0], SEGMENTS.index("active_mid"))
        segment[monetary < p["low_value"]] = SEGMENTS.index("low_value")
        segment[(monetary >= p["high_value"]) & (recency >= p["at_risk_days"])] = SEGMENTS.index(
            "high_value_at_risk"
        )
        segment[cart > 0.5] = SEGMENTS.index("cart_abandoners")
        segment[tenure < p["new_days"]] = SEGMENTS.index("new")
        return segment

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        if not self.per_shopper:
            rows = np.repeat(self.table[None, :, :], obs.shape[0], axis=0)  # (n, heads, width)
            return np.stack([self._first_allowed(rows[:, h], masks[:, h]) for h in range(len(SEGMENTS))], 1)
        segment = self.segments(obs)
        preferences = self.table[segment]
        cart = segment == SEGMENTS.index("cart_abandoners")
        received = np.round(obs[:, self.columns[3]] * self.scales[3]).astype(np.int64)
        step = np.clip(received, 0, self.table.shape[1] - 1)
        # Escalation: start the cart row at the k-th entry; later entries stay as fallbacks.
        shifted = np.take_along_axis(
            preferences,
            np.minimum(np.arange(self.table.shape[1])[None, :] + step[:, None], self.table.shape[1] - 1),
            1,
        )
        preferences = np.where(cart[:, None], shifted, preferences)
        return self._first_allowed(preferences, masks[:, 0])


class LtvCoupon(JsonPolicy):
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
    FIELDS = ("recency", "frequency", "monetary", "tenure", "open_cart")

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
        self.columns = [spec.field(f) for f in self.FIELDS]
        self.scales = np.array([spec.obs_scales[c] for c in self.columns])
        coupons = [
            (i, kind) for i, kind in enumerate(spec.action_kinds) if kind in ("coupon_pct", "coupon_fixed")
        ]
        if not coupons:
            raise ValueError(
                f"ltv_coupon needs coupon incentives; the scenario has {list(spec.action_names)}"
            )
        self.coupon_ids = np.array([i for i, _ in coupons], dtype=np.int64)
        self.coupon_values = np.array([spec.action_values[i] for i in self.coupon_ids])
        self.coupon_pct = np.array([self.spec.action_kinds[i] == "coupon_pct" for i in self.coupon_ids])

    def predictions(self, obs: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Predicted LTV, realized LTV, churn probability and basket of each observed shopper."""
        recency, frequency, monetary, tenure, cart = (obs[:, self.columns] * self.scales).T
        p = self.params
        orders = np.maximum(frequency, 1.0)
        gap_days = np.maximum(tenure, p["min_tenure_days"]) / orders
        churn = recency / (recency + gap_days)
        average_order = np.where(frequency > 0, monetary / orders, 0.0)
        future = average_order * p["horizon_days"] / gap_days * (1.0 - churn)
        basket = np.where(cart > 0, cart, average_order)
        return {"predicted": monetary + future, "realized": monetary, "churn": churn, "basket": basket}

    def coupon_dollars(self, obs: NDArray[np.float64]) -> NDArray[np.float64]:
        """The formula's coupon value in dollars for each observed shopper."""
        q = self.predictions(obs)
        return ltv_coupon_dollars(q["predicted"], q["realized"], q["basket"], q["churn"], **self._formula())

    def _formula(self) -> dict[str, float]:
        p = self.params
        return {
            "future_share": p["future_share"],
            "basket_cap": p["basket_cap"],
            "churn_weight": p["churn_weight"],
        }

    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        amount = self.coupon_dollars(obs)
        basket = self.predictions(obs)["basket"]
        worth = np.where(
            self.coupon_pct[None, :], self.coupon_values[None, :] * basket[:, None], self.coupon_values
        )
        fits = (worth <= amount[:, None] + 1e-9) & masks[:, 0, self.coupon_ids]
        best = np.argmax(np.where(fits, worth, -np.inf), axis=1)
        return np.where(fits.any(axis=1), self.coupon_ids[best], 0).astype(np.int64)


def ltv_coupon_dollars(
    predicted: NDArray[np.float64],
    realized: NDArray[np.float64],
    basket: NDArray[np.float64],
    churn: NDArray[np.float64],
    future_share: float = 0.15,
    basket_cap: float = 0.25,
    churn_weight: float = 0.5,
) -> NDArray[np.float64]:
    """``min(future_share x (predicted - realized), basket_cap x basket) x (1 + churn_weight x churn)``."""
    future = np.maximum(predicted - realized, 0.0)
    return np.minimum(future_share * future, basket_cap * basket) * (1.0 + churn_weight * churn)


def _squeeze(actions: NDArray[np.int64]) -> Actions:
    """(n, 1) to (n,) for single-head environments; (n, heads) otherwise."""
    return actions[:, 0] if actions.shape[1] == 1 else actions
