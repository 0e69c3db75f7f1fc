"""Deterministic decision rules of the JSON policies, in numpy alone, shared by training and serving.

The in-process baselines (:mod:`policies.baselines`) and the production runtime
(:mod:`policies.runtime`) both decide through these rules, so an exported policy chooses what
the in-process one does by construction. A rule is built from a JSON *decision model*
(``{"rule": "segment_rules", ...}``; a bandit's ``greedy_model()``) and the layout of its
environment (feature names and scales, incentive names, kinds and values, action heads).

This module imports numpy only: the runtime loads it in processes that have no torch,
stable-baselines3, SimPy or gymnasium.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ids = NDArray[np.int64]
Masks = NDArray[np.bool_]

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

#: Decision-model kinds a rule can be built from (the ``"rule"`` key of a decision model).
RULES = ("none", "blanket", "segment_rules", "ltv_coupon", "onboarding", "scores", "linear", "trees")

#: The first-week sequence: (days since acquisition up to which the step lasts, incentive).
ONBOARDING_STEPS: tuple[tuple[float, str], ...] = ((3.0, "welcome_bundle"), (8.0, "first_purchase_bonus"))
#: Most steps an onboarding sequence may have.
MAX_ONBOARDING_STEPS = 64

# Layout limits, checked on every file's declared layout before anything is sized from it (a saved
# policy's env spec, an artifact's card): a file declaring 200,000 incentives x 64 heads would
# otherwise size eligibility masks of 12.8 million booleans per decision (25 GB for the export's
# parity batch). Real scenarios have about a dozen incentives, 5 heads and 15 features.
#: Most incentives (actions per head) a policy file or card may declare.
MAX_INCENTIVES = 1024
#: Most action heads (one per shopper, or one per segment) a policy file or card may declare.
MAX_HEADS = 64
#: Most observation features a policy file or card may declare.
MAX_FEATURES = 4096
#: Most decision slots (heads x incentives) a policy file or card may declare.
MAX_DECISION_SLOTS = 65_536
#: Most nodes of a tree rule, all trees together (an uplift policy's default uses about 12,000).
MAX_TREE_NODES = 2_000_000
#: Deepest tree of a tree rule (a decision walks one level per step; the uplift policy allows 12).
MAX_TREE_DEPTH = 64


def layout_size_problem(n_features: int, n_incentives: int, n_heads: int) -> str | None:
    """What exceeds the layout limits (features, incentives, heads, their product), or ``None``."""
    if n_features > MAX_FEATURES:
        return f"{n_features:,} features declared; at most {MAX_FEATURES:,} (MAX_FEATURES)"
    if n_incentives > MAX_INCENTIVES:
        return f"{n_incentives:,} incentives declared; at most {MAX_INCENTIVES:,} (MAX_INCENTIVES)"
    if n_heads > MAX_HEADS:
        return f"{n_heads:,} heads declared; at most {MAX_HEADS} (MAX_HEADS)"
    if n_heads * n_incentives > MAX_DECISION_SLOTS:
        return (
            f"{n_heads} heads x {n_incentives:,} incentives declared; at most {MAX_DECISION_SLOTS:,} "
            "decision slots (MAX_DECISION_SLOTS)"
        )
    return None


class Layout(Protocol):
    """What a rule needs to know of its environment (``policies.base.EnvSpec`` provides it)."""

    @property
    def obs_fields(self) -> tuple[str, ...]: ...  # noqa: D102
    @property
    def obs_scales(self) -> tuple[float, ...]: ...  # noqa: D102
    @property
    def action_names(self) -> tuple[str, ...]: ...  # noqa: D102
    @property
    def action_kinds(self) -> tuple[str, ...]: ...  # noqa: D102
    @property
    def action_values(self) -> tuple[float, ...]: ...  # noqa: D102
    @property
    def heads(self) -> tuple[str, ...]: ...  # noqa: D102


class Rule(Protocol):
    """A deterministic decision: normalized observations and eligibility in, incentive ids out."""

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """Ids ``(n, heads)`` for observations ``(n, n_fields)`` and masks ``(n, heads, n_actions)``."""
        ...


# ---- shared helpers ---------------------------------------------------------------------------
def first_allowed(preferences: Ids, masks: Masks) -> Ids:
    """Per row, the first incentive of ``preferences`` ``(n, k)`` the mask allows.

    When no preference is allowed the row gets the lowest allowed id (``none`` when allowed), so a
    rule never returns an incentive the caller excluded; ``none`` (0) only if nothing is allowed.
    """
    allowed = np.take_along_axis(masks, preferences, axis=1)
    first = np.argmax(allowed, axis=1)
    chosen = preferences[np.arange(preferences.shape[0]), first]
    fallback = np.argmax(masks, axis=1)  # lowest allowed id; 0 where the row allows nothing
    return np.where(allowed.any(axis=1), chosen, fallback).astype(np.int64)


def masked_argmax(scores: Floats | NDArray[np.float32], masks: Masks) -> Ids:
    """Per row, the highest-scoring allowed incentive (ties to the lowest id), over the last axis."""
    return np.argmax(np.where(masks, scores, -np.inf), axis=-1).astype(np.int64)


def _index(layout: Layout, kind: str, name: str, names: Sequence[str], what: str) -> int:
    """Index of ``name`` in ``names``, or an error naming the rule, the value and what is allowed."""
    if name not in names:
        raise ValueError(f"{kind}: {what} {name!r} not in the environment; allowed: {list(names)}")
    return list(names).index(name)


def _columns(layout: Layout, kind: str, fields: Sequence[str]) -> tuple[list[int], Floats]:
    """Column indices and scales of the observation fields a rule reads."""
    columns = [_index(layout, kind, f, layout.obs_fields, "observation field") for f in fields]
    return columns, np.array([layout.obs_scales[c] for c in columns], dtype=np.float64)


# ---- rules ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoneRule:
    """Never an incentive."""

    n_heads: int

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """``none`` (0) for every row and head."""
        return np.zeros((obs.shape[0], self.n_heads), dtype=np.int64)


@dataclass(frozen=True)
class BlanketRule:
    """One incentive for everyone it is allowed for, ``none`` elsewhere."""

    incentive_id: int

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """The incentive where allowed, per row and head."""
        return np.where(masks[:, :, self.incentive_id], self.incentive_id, 0).astype(np.int64)


@dataclass(frozen=True)
class SegmentRule:
    """The CRM playbook: segment by tenure, spend and recency; escalate coupons on abandoned carts.

    See :class:`policies.baselines.SegmentRules` for the segments and the escalation.
    """

    FIELDS: ClassVar[tuple[str, ...]] = (
        "tenure",
        "monetary",
        "recency",
        "incentives_received",
        "decision_cart_abandoned",
    )

    table: Ids
    """``(segments, width)`` incentive ids, rows padded by repeating their last entry."""
    per_shopper: bool
    columns: tuple[int, ...]
    scales: Floats
    new_days: float
    at_risk_days: float
    high_value: float
    low_value: float
    escalated: Ids = field(init=False, repr=False)
    """``(segments, steps, width)``: each row started at its ``step``-th entry, padded with its last."""

    def __post_init__(self) -> None:
        width = self.table.shape[1]
        shift = np.minimum(np.arange(width)[:, None] + np.arange(width)[None, :], width - 1)
        object.__setattr__(self, "escalated", self.table[:, shift])

    def segments(self, obs: Floats) -> Ids:
        """Segment index (``SEGMENTS`` order) of each observed shopper."""
        return self._segments(obs[:, list(self.columns)] * self.scales)

    def _segments(self, values: Floats) -> Ids:
        tenure, monetary, recency, cart = values[:, 0], values[:, 1], values[:, 2], values[:, 4]
        # Precedence: new, then cart abandoners, then high value at risk, then low value.
        at_risk = (monetary >= self.high_value) & (recency >= self.at_risk_days)
        segment = np.where(
            tenure < self.new_days,
            _NEW,
            np.where(
                cart > 0.5,
                _CART,
                np.where(at_risk, _AT_RISK, np.where(monetary < self.low_value, _LOW, _MID)),
            ),
        )
        return segment.astype(np.int64)

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """Per shopper, her segment's first eligible entry; per segment head, that head's."""
        width = self.table.shape[1]
        if not self.per_shopper:
            rows = np.repeat(self.table[None, :, :], obs.shape[0], axis=0)  # (n, heads, width)
            return np.stack([first_allowed(rows[:, h], masks[:, h]) for h in range(len(SEGMENTS))], 1)
        values = obs[:, list(self.columns)] * self.scales
        segment = self._segments(values)
        # Escalation: a cart abandoner who already received k incentives starts her row at the
        # k-th entry (later entries stay as fallbacks); everyone else starts at the first.
        received = np.minimum(np.maximum(np.round(values[:, 3]), 0.0), width - 1).astype(np.int64)
        step = np.where(segment == _CART, received, 0)
        return first_allowed(self.escalated[segment, step], masks[:, 0])[:, None]


_NEW, _MID, _AT_RISK, _LOW, _CART = (SEGMENTS.index(s) for s in SEGMENTS)


@dataclass(frozen=True)
class OnboardingRule:
    """A first-week sequence: each step's incentive to a shopper who has not ordered again yet.

    See :class:`policies.baselines.Onboarding`.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("tenure", "frequency")

    columns: tuple[int, ...]
    scales: Floats
    until_days: Floats
    """``(steps,)``: step ``k`` lasts while her tenure is below ``until_days[k]`` (increasing)."""
    incentive_ids: Ids
    max_orders: float

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """Her step's incentive while she is new and within the sequence; ``none`` otherwise."""
        tenure, orders = (obs[:, list(self.columns)] * self.scales).T
        step = np.searchsorted(self.until_days, tenure, side="right")
        within = (step < self.until_days.size) & (np.round(orders) <= self.max_orders)
        chosen = np.where(within, self.incentive_ids[np.minimum(step, self.until_days.size - 1)], 0)
        allowed = masks[np.arange(obs.shape[0]), 0, chosen]
        return np.where(allowed, chosen, 0).astype(np.int64)[:, None]


def ltv_coupon_dollars(
    predicted: Floats,
    realized: Floats,
    basket: Floats,
    churn: Floats,
    future_share: float = 0.15,
    basket_cap: float = 0.25,
    churn_weight: float = 0.5,
) -> Floats:
    """``min(future_share x (predicted - realized), basket_cap x basket) x (1 + churn_weight x churn)``."""
    future = np.maximum(predicted - realized, 0.0)
    return np.minimum(future_share * future, basket_cap * basket) * (1.0 + churn_weight * churn)


@dataclass(frozen=True)
class LtvCouponRule:
    """The largest catalogue coupon worth no more than the LTV formula's amount.

    See :class:`policies.baselines.LtvCoupon` for the predictions behind the formula.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("recency", "frequency", "monetary", "tenure", "open_cart")

    columns: tuple[int, ...]
    scales: Floats
    coupon_ids: Ids
    coupon_values: Floats
    coupon_pct: Masks
    future_share: float
    basket_cap: float
    churn_weight: float
    horizon_days: float
    min_tenure_days: float

    def predictions(self, obs: Floats) -> dict[str, Floats]:
        """Predicted LTV, realized LTV, churn probability and basket of each observed shopper."""
        recency, frequency, monetary, tenure, cart = (obs[:, list(self.columns)] * self.scales).T
        orders = np.maximum(frequency, 1.0)
        gap_days = np.maximum(tenure, self.min_tenure_days) / orders
        churn = recency / (recency + gap_days)
        average_order = np.where(frequency > 0, monetary / orders, 0.0)
        future = average_order * self.horizon_days / gap_days * (1.0 - churn)
        basket = np.where(cart > 0, cart, average_order)
        return {"predicted": monetary + future, "realized": monetary, "churn": churn, "basket": basket}

    def coupon_dollars(self, obs: Floats) -> Floats:
        """The formula's coupon value in dollars for each observed shopper."""
        q = self.predictions(obs)
        return ltv_coupon_dollars(
            q["predicted"],
            q["realized"],
            q["basket"],
            q["churn"],
            future_share=self.future_share,
            basket_cap=self.basket_cap,
            churn_weight=self.churn_weight,
        )

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """Per shopper, the most valuable eligible coupon that fits the amount, else ``none``."""
        amount = self.coupon_dollars(obs)
        basket = self.predictions(obs)["basket"]
        worth = np.where(
            self.coupon_pct[None, :], self.coupon_values[None, :] * basket[:, None], self.coupon_values
        )
        fits = (worth <= amount[:, None] + 1e-9) & masks[:, 0, self.coupon_ids]
        best = np.argmax(np.where(fits, worth, -np.inf), axis=1)
        return np.where(fits.any(axis=1), self.coupon_ids[best], 0).astype(np.int64)[:, None]


@dataclass(frozen=True)
class ScoresRule:
    """A context-free bandit's greedy rule: one score per incentive, the best allowed one wins."""

    scores: Floats

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """The best allowed incentive, the same ranking for every shopper."""
        scores = np.broadcast_to(self.scores, (obs.shape[0], self.scores.shape[0]))
        return masked_argmax(scores, masks[:, 0])[:, None]


@dataclass(frozen=True)
class LinearRule:
    """A linear bandit's greedy rule: ``scores = obs @ weights.T + bias``, the best allowed one wins."""

    weights: Floats
    """``(n_actions, n_fields)`` on the normalized observation."""
    bias: Floats

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """The best allowed incentive by predicted reward."""
        return masked_argmax(obs @ self.weights.T + self.bias, masks[:, 0])[:, None]


@dataclass(frozen=True)
class TreesRule:
    """Per incentive, a sum of regression trees on the observation; the best allowed one wins.

    Each node is split as scikit-learn splits it (``x[feature] <= threshold`` goes left, on the
    feature cast to float32); leaves carry their (already learning-rate scaled) values.
    Incentives without trees (``trained`` false) are never chosen, and the ``baseline``
    incentive (``none``, 0, unless the model names another) gets ``min_uplift`` added: another
    incentive must beat it by that much.
    """

    feature: Ids  # a leaf splits on feature 0 at +inf and is its own child: the walk stays there
    threshold: Floats
    left: Ids
    right: Ids
    value: Floats
    roots: Ids  # grouped by incentive: trees of one incentive are consecutive
    starts: Ids  # where each incentive's group of trees starts in ``roots``
    owners: Ids  # the incentive of each group
    depth: int
    bias: Floats
    trained: Masks
    min_uplift: float
    baseline: int

    def scores(self, obs: Floats) -> Floats:
        """``(n, n_actions)`` predicted rewards (``-inf`` for untrained incentives)."""
        x = np.asarray(obs, dtype=np.float32).astype(np.float64)
        total = np.tile(self.bias, (x.shape[0], 1))
        if self.roots.size:
            node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size))
            rows = np.arange(x.shape[0])[:, None]
            for _ in range(self.depth):  # every tree one level down at once; leaves stay put
                go_left = x[rows, self.feature[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
            total[:, self.owners] += np.add.reduceat(self.value[node], self.starts, axis=1)
        total[:, self.baseline] += self.min_uplift
        return np.where(self.trained, total, -np.inf)

    def decide(self, obs: Floats, masks: Masks) -> Ids:
        """The best allowed incentive by predicted reward (``none`` when nothing is trained)."""
        return masked_argmax(self.scores(obs), masks[:, 0])[:, None]


def trees_rule(model: Mapping[str, Any], n_fields: int, n_actions: int) -> TreesRule:
    """A :class:`TreesRule` from its decision model, every index and size checked before use."""
    trees = model.get("trees")
    if not isinstance(trees, list):
        raise ValueError("decision model 'trees': 'trees' missing or not a list")
    sizes = [len(t.get("feature", ())) if isinstance(t, Mapping) else 0 for t in trees]
    if sum(sizes) > MAX_TREE_NODES:
        raise ValueError(
            f"decision model 'trees': {sum(sizes):,} nodes; at most {MAX_TREE_NODES:,} (MAX_TREE_NODES)"
        )
    parts: dict[str, list[Any]] = {key: [] for key in ("feature", "threshold", "left", "right", "value")}
    roots, actions, depth, offset = [], [], 0, 0
    for number, (tree, size) in enumerate(zip(trees, sizes, strict=True)):
        where = f"decision model 'trees': tree {number}"
        if size == 0:
            raise ValueError(f"{where} is empty or not a mapping")
        action = tree.get("action")
        if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < n_actions:
            raise ValueError(f"{where}: action={action!r} must be an incentive id in [0, {n_actions})")
        arrays = {key: _vector(tree, key, (size,)) for key in parts}
        index = np.arange(size)
        feature = arrays["feature"]
        inner = feature >= 0
        for key in ("left", "right"):  # children follow their parent: no cycles, depth < size
            child = arrays[key]
            if (inner & ((child <= index) | (child >= size))).any():
                raise ValueError(f"{where}: {key} children must point forward within the tree")
        if (feature >= n_fields).any() or (feature != np.round(feature)).any():
            raise ValueError(f"{where}: features must be integers below {n_fields} (negative for leaves)")
        if not np.isfinite(arrays["value"]).all() or not np.isfinite(arrays["threshold"][inner]).all():
            raise ValueError(f"{where}: thresholds and values must be finite")
        levels = np.zeros(size, dtype=np.int64)
        for node in np.flatnonzero(inner):  # parents come before children
            for key in ("left", "right"):
                levels[int(arrays[key][node])] = levels[node] + 1
        depth = max(depth, int(levels.max()))
        if depth > MAX_TREE_DEPTH:
            raise ValueError(
                f"{where}: {int(levels.max())} levels deep; at most {MAX_TREE_DEPTH} (MAX_TREE_DEPTH)"
            )
        for key in parts:
            shift = offset if key in ("left", "right") else 0
            parts[key].append(np.where(inner, arrays[key] + shift, -1) if shift else arrays[key])
        roots.append(offset)
        actions.append(action)
        offset += size
    trained = model.get("trained")
    if (
        not isinstance(trained, list)
        or len(trained) != n_actions
        or not all(isinstance(t, bool) for t in trained)
    ):
        raise ValueError(f"decision model 'trees': 'trained' must be {n_actions} booleans")
    if any(not trained[a] for a in actions):
        raise ValueError("decision model 'trees': a tree belongs to an incentive marked untrained")
    joined = {key: np.concatenate(parts[key]) if trees else np.zeros(0) for key in parts}
    leaf = joined["feature"] < 0
    nodes = np.arange(leaf.size)
    by_owner = np.argsort(np.array(actions, dtype=np.int64), kind="stable")
    owner_of = np.array(actions, dtype=np.int64)[by_owner]
    starts = np.flatnonzero(np.r_[True, owner_of[1:] != owner_of[:-1]]) if trees else np.zeros(0, np.int64)
    return TreesRule(
        feature=np.where(leaf, 0, joined["feature"]).astype(np.int64),
        threshold=np.where(leaf, np.inf, joined["threshold"]),
        left=np.where(leaf, nodes, joined["left"]).astype(np.int64),
        right=np.where(leaf, nodes, joined["right"]).astype(np.int64),
        value=joined["value"],
        roots=np.array(roots, dtype=np.int64)[by_owner],
        starts=starts.astype(np.int64),
        owners=owner_of[starts],
        depth=depth,
        bias=_vector(model, "bias", (n_actions,)),
        trained=np.array(trained, dtype=bool),
        min_uplift=_number(model, "min_uplift", 0.0),
        baseline=_baseline(model, n_actions),
    )


def _baseline(model: Mapping[str, Any], n_actions: int) -> int:
    """The incentive the others must beat by ``min_uplift`` (``none``, 0, when the model names none)."""
    baseline = model.get("baseline", 0)
    if isinstance(baseline, bool) or not isinstance(baseline, int) or not 0 <= baseline < n_actions:
        raise ValueError(
            f"decision model 'trees': baseline={baseline!r} must be an incentive id in [0, {n_actions})"
        )
    return baseline


# ---- building a rule from its decision model --------------------------------------------------
def _number(model: Mapping[str, Any], key: str, default: float) -> float:
    value = model.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"decision model {model.get('rule')!r}: {key}={value!r} must be a finite number")
    return float(value)


def _single_head(layout: Layout, rule: str) -> None:
    if len(layout.heads) != 1:
        raise ValueError(
            f"rule {rule!r} decides one incentive per shopper; the environment has heads {list(layout.heads)}"
        )


def _vector(model: Mapping[str, Any], key: str, shape: tuple[int, ...]) -> Floats:
    """A finite float array of the given shape from a decision model, or an error naming the key."""
    try:
        array = np.asarray(model[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"decision model {model.get('rule')!r}: {key!r} missing or not numbers") from error
    if array.shape != shape:
        raise ValueError(
            f"decision model {model.get('rule')!r}: {key} has shape {array.shape}, expected {shape}"
        )
    # Bandits score never-tried arms +inf on purpose; NaN would make the argmax meaningless.
    if np.isnan(array).any():
        raise ValueError(f"decision model {model.get('rule')!r}: {key} holds NaN")
    return array


def compile_rule(model: Mapping[str, Any], layout: Layout) -> Rule:
    """The rule a decision model describes, checked against its environment's layout."""
    rule = model.get("rule")
    n_actions, n_fields = len(layout.action_names), len(layout.obs_fields)
    names = model.get("action_names")
    if names is not None and list(names) != list(layout.action_names):
        raise ValueError(
            f"decision model actions {list(names)} differ from the environment's {list(layout.action_names)}"
        )
    fields = model.get("obs_fields")
    if fields is not None and list(fields) != list(layout.obs_fields):
        raise ValueError(
            f"decision model fields {list(fields)} differ from the environment's {list(layout.obs_fields)}"
        )
    if rule == "none":
        return NoneRule(len(layout.heads))
    if rule == "blanket":
        incentive = str(model.get("incentive", "coupon_10"))
        return BlanketRule(_index(layout, "blanket", incentive, layout.action_names, "incentive"))
    if rule == "segment_rules":
        return _segment_rule(model, layout)
    if rule == "ltv_coupon":
        return _ltv_coupon_rule(model, layout)
    if rule == "onboarding":
        return _onboarding_rule(model, layout)
    if rule == "scores":
        _single_head(layout, "scores")
        return ScoresRule(_vector(model, "scores", (n_actions,)))
    if rule == "linear":
        _single_head(layout, "linear")
        return LinearRule(
            _vector(model, "weights", (n_actions, n_fields)), _vector(model, "bias", (n_actions,))
        )
    if rule == "trees":
        _single_head(layout, "trees")
        return trees_rule(model, n_fields, n_actions)
    raise ValueError(f"decision model rule {rule!r} unknown; allowed: {list(RULES)}")


def _segment_rule(model: Mapping[str, Any], layout: Layout) -> SegmentRule:
    playbook = model.get("playbook", PLAYBOOK)
    if not isinstance(playbook, Mapping) or set(playbook) != set(SEGMENTS):
        keys = sorted(playbook) if isinstance(playbook, Mapping) else playbook
        raise ValueError(f"playbook keys {keys} must be exactly {list(SEGMENTS)}")
    table = {segment: list(playbook[segment]) for segment in SEGMENTS}
    for segment, row in table.items():
        if not row:
            raise ValueError(f"playbook[{segment!r}] is empty; list at least one incentive")
    width = max(len(row) for row in table.values())
    # Rows padded by repeating their last entry, so escalation saturates.
    ids = np.array(
        [
            [
                _index(layout, "segment_rules", row[min(j, len(row) - 1)], layout.action_names, "incentive")
                for j in range(width)
            ]
            for row in table.values()
        ],
        dtype=np.int64,
    )
    per_shopper = tuple(layout.heads) == ("shopper",)
    if per_shopper:
        columns, scales = _columns(layout, "segment_rules", SegmentRule.FIELDS)
    elif tuple(layout.heads) == SEGMENTS:
        columns, scales = [], np.zeros(0)
    else:
        raise ValueError(f"segment_rules needs heads {list(SEGMENTS)}, got {list(layout.heads)}")
    return SegmentRule(
        table=ids,
        per_shopper=per_shopper,
        columns=tuple(columns),
        scales=scales,
        new_days=_number(model, "new_days", 30.0),
        at_risk_days=_number(model, "at_risk_days", 45.0),
        high_value=_number(model, "high_value", 300.0),
        low_value=_number(model, "low_value", 80.0),
    )


def _onboarding_rule(model: Mapping[str, Any], layout: Layout) -> OnboardingRule:
    _single_head(layout, "onboarding")
    columns, scales = _columns(layout, "onboarding", OnboardingRule.FIELDS)
    steps = model.get("steps", [list(step) for step in ONBOARDING_STEPS])
    if (
        not isinstance(steps, Sequence)
        or isinstance(steps, str)
        or not 1 <= len(steps) <= MAX_ONBOARDING_STEPS
    ):
        raise ValueError(
            f"onboarding: steps must be a list of 1 to {MAX_ONBOARDING_STEPS} [until_day, incentive] pairs"
        )
    until: list[float] = []
    ids: list[int] = []
    for k, step in enumerate(steps):
        if not isinstance(step, Sequence) or isinstance(step, str) or len(step) != 2:
            raise ValueError(f"onboarding: steps[{k}] must be [until_day, incentive], got {str(step)[:80]}")
        day, name = step
        if isinstance(day, bool) or not isinstance(day, int | float) or not 0 < day <= 3650:
            raise ValueError(
                f"onboarding: steps[{k}] until_day {str(day)[:40]} must be a number in (0, 3650]"
            )
        if until and day <= until[-1]:
            raise ValueError(
                f"onboarding: steps[{k}] until_day {day} must exceed the step before ({until[-1]})"
            )
        until.append(float(day))
        ids.append(_index(layout, "onboarding", str(name), layout.action_names, "incentive"))
    return OnboardingRule(
        columns=tuple(columns),
        scales=scales,
        until_days=np.array(until),
        incentive_ids=np.array(ids, dtype=np.int64),
        max_orders=_number(model, "max_orders", 1.0),
    )


def _ltv_coupon_rule(model: Mapping[str, Any], layout: Layout) -> LtvCouponRule:
    _single_head(layout, "ltv_coupon")
    columns, scales = _columns(layout, "ltv_coupon", LtvCouponRule.FIELDS)
    coupons = [i for i, kind in enumerate(layout.action_kinds) if kind in ("coupon_pct", "coupon_fixed")]
    if not coupons:
        raise ValueError(f"ltv_coupon needs coupon incentives; the scenario has {list(layout.action_names)}")
    ids = np.array(coupons, dtype=np.int64)
    return LtvCouponRule(
        columns=tuple(columns),
        scales=scales,
        coupon_ids=ids,
        coupon_values=np.array([layout.action_values[i] for i in ids], dtype=np.float64),
        coupon_pct=np.array([layout.action_kinds[i] == "coupon_pct" for i in ids]),
        future_share=_number(model, "future_share", 0.15),
        basket_cap=_number(model, "basket_cap", 0.25),
        churn_weight=_number(model, "churn_weight", 0.5),
        horizon_days=_number(model, "horizon_days", 365.0),
        min_tenure_days=_number(model, "min_tenure_days", 30.0),
    )
