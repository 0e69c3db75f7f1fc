"""``uplift``: a meta-learner that targets incentives on what a shop observes, from a randomized log.

The classic field recipe (Radcliffe & Surry 2011; Ascarza 2018, "Retention futility"): run a
randomized experiment, fit outcome models, then give each shopper the incentive whose predicted
effect beats the others by the most. Here the experiment is the policy's own training: every
training decision draws an allowed incentive uniformly at random and logs the observation, the
incentive and the reward that followed (up to ``log_size`` decisions). The first greedy decision
closes the experiment: feedback on the policy's own choices is not randomized, so it is not logged
(``evaluation: learn: true`` leaves the fitted trees as they are).

Two learners (Kunzel, Sekhon, Bickel & Yu 2019), all models scikit-learn gradient-boosted
regression trees (Huber loss by default, since a shopper's margin is heavy-tailed):

* ``learner: t``, the T-learner: one outcome model per incentive; its predicted reward.
* ``learner: x`` (the default), the X-learner: the T-learner's outcome models impute each logged
  shopper's individual effect of incentive k against ``none`` (her outcome minus the other arm's
  prediction), and shallow, subsampled trees (``effect_*``) are fitted to those imputed effects,
  one model on each arm's rows, blended by the randomization's propensity. A shop's margin varies
  far more between shoppers than an incentive's effect on it does (here an effect's spread is
  about a seventh of the outcome's); the T-learner then ranks on the difference of two noisy fits,
  while the X-learner regularizes the effect itself. ``shopgym uplift-check`` measures the two.

``arms`` (incentive names, the baseline among them; default every incentive) limits the experiment
to the incentives a shop wants to test: each gets a larger share of the log, and the others are
never given. ``baseline`` (default ``none``) is the incentive the X-learner measures effects
against and every other must beat by ``min_uplift``: a shop whose default is already an
incentive (say a referral bonus for everyone) asks where to deviate from it, a champion and
its challengers. An incentive with fewer than ``min_arm_samples`` logged decisions (for the
X-learner, either it or the baseline) is never chosen. The greedy rule gives the incentive with
the highest predicted reward (T) or effect against the baseline (X, where the baseline scores
0) minus ``lambda * cost`` (the budget's price, as for every bandit) where it beats the
baseline by at least ``min_uplift``.

The fitted trees are saved as JSON arrays and decided by :class:`policies.rules.TreesRule`, in
numpy alone, in process and in the exported runtime (an X-learner's two effect models of one
incentive are one sum of trees, their leaves scaled by the blend); the log itself is not saved,
so a reloaded policy acts on its fitted trees and a further ``update`` starts a new log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.bandits import Bandit, Floats, _check_positive, _masked_argmax
from policies.base import Actions, EnvSpec, check_choice, check_range
from policies.rules import MAX_TREE_NODES, TreesRule, trees_rule

#: Losses of the outcome models: Huber by default, since a shopper's margin is heavy-tailed (one
#: large basket) and squared error lets a few such orders decide the trees.
LOSSES = ("huber", "squared_error")
#: Meta-learners: ``t`` (one outcome model per incentive), ``x`` (imputed effects, Kunzel et al. 2019).
LEARNERS = ("t", "x")
#: Most decisions the randomized log may hold (float32 features: 1M x 64 fields is 256 MB).
MAX_LOG_SIZE = 1_000_000


class UpliftLearner(Bandit):
    """Randomized log, boosted-tree T- or X-learner, the incentive with the best predicted effect given."""

    kind = "uplift"

    def __init__(
        self,
        spec: EnvSpec,
        seed: int = 0,
        log_size: int = 20_000,
        n_estimators: int = 100,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        min_samples_leaf: int = 50,
        min_arm_samples: int = 200,
        min_uplift: float = 0.0,
        loss: str = "huber",
        learner: str = "x",
        effect_estimators: int = 200,
        effect_depth: int = 2,
        effect_learning_rate: float = 0.02,
        effect_subsample: float = 0.5,
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
        arms: list[str] | None = None,
        baseline: str | None = None,
    ) -> None:
        arm_mask = _arm_mask(spec, arms)
        base = spec.action(spec.action_names[0] if baseline is None else baseline)
        if not arm_mask[base]:
            raise ValueError(
                f"uplift: arms must include the baseline {spec.action_names[base]!r} (effects are "
                f"measured against it); got {list(arms or [])}"[:300]
            )
        for name, value, low, high in (
            ("log_size", log_size, 1, MAX_LOG_SIZE),
            ("n_estimators", n_estimators, 1, 2_000),
            ("max_depth", max_depth, 1, 12),
            ("min_samples_leaf", min_samples_leaf, 1, MAX_LOG_SIZE),
            ("min_arm_samples", min_arm_samples, 1, MAX_LOG_SIZE),
            ("effect_estimators", effect_estimators, 1, 2_000),
            ("effect_depth", effect_depth, 1, 12),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}={value!r} must be an integer in [{low}, {high:,}]")
        check_choice("learner", learner, LEARNERS)
        trees, depth = (n_estimators, max_depth) if learner == "t" else (2 * effect_estimators, effect_depth)
        if spec.n_actions * trees * (2 ** (depth + 1) - 1) > MAX_TREE_NODES:
            raise ValueError(
                f"uplift: {spec.n_actions} incentives x {trees} trees of depth {depth} may "
                f"exceed {MAX_TREE_NODES:,} nodes (MAX_TREE_NODES): use fewer or shallower trees"
            )
        _check_positive("learning_rate", learning_rate)
        _check_positive("effect_learning_rate", effect_learning_rate)
        if not 0.0 < effect_subsample <= 1.0:
            raise ValueError(f"effect_subsample={effect_subsample!r} must be in (0, 1]")
        check_choice("loss", loss, LOSSES)
        check_range("min_uplift", min_uplift, 0.0)
        super().__init__(
            spec,
            seed,
            budget_per_decision=budget_per_decision,
            pacing_rate=pacing_rate,
            log_size=log_size,
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            min_samples_leaf=min_samples_leaf,
            min_arm_samples=min_arm_samples,
            min_uplift=min_uplift,
            loss=loss,
            learner=learner,
            effect_estimators=effect_estimators,
            effect_depth=effect_depth,
            effect_learning_rate=effect_learning_rate,
            effect_subsample=effect_subsample,
            arms=None if arms is None else list(arms),
            baseline=baseline,
        )
        #: The incentive effects are measured against (X-learner) and others must beat by ``min_uplift``.
        self.baseline = base
        #: The incentives the experiment randomizes over (and so the only ones it can learn).
        self.arms = arm_mask
        self.log_size = log_size
        self.n_estimators, self.max_depth = n_estimators, max_depth
        self.learning_rate, self.min_samples_leaf = float(learning_rate), min_samples_leaf
        self.min_arm_samples, self.min_uplift = min_arm_samples, float(min_uplift)
        self.loss, self.learner = loss, learner
        self.effect_estimators, self.effect_depth = effect_estimators, effect_depth
        self.effect_learning_rate = float(effect_learning_rate)
        self.effect_subsample = float(effect_subsample)
        d = len(spec.obs_fields)
        #: The log as the batches ``update`` received (joined once, at a fit: no copy per decision).
        self._log: list[tuple[NDArray[np.float32], Actions, Floats]] = []
        self.logged = 0
        #: Whether decisions are still the randomized experiment (until the first greedy one).
        self.experimenting = True
        self.trees_model: dict[str, Any] = _untrained(spec)
        self._rule: TreesRule = trees_rule(self.trees_model, d, spec.n_actions)
        self._fitted_at = 0

    # ---- acting -------------------------------------------------------------------------------
    def _act(self, obs: Floats, masks: Any, deterministic: bool) -> Actions:
        allowed = masks[:, 0, :]
        if deterministic:
            self.experimenting = False  # its own choices are no experiment: the log is closed
            return _masked_argmax(self._greedy_scores(obs), allowed)
        return _masked_argmax(np.zeros(allowed.shape), allowed & self.arms, self.rng)  # the experiment

    def predicted_rewards(self, obs: Floats) -> Floats:
        """``(n, n_actions)``: each incentive's predicted reward (``-inf`` where it has no model).

        For the X-learner, the reward relative to ``none`` (which scores 0): the same differences.
        """
        self._refit()
        return self._rule.scores(np.asarray(obs, dtype=np.float64))

    def _greedy_scores(self, obs: Floats) -> Floats:
        return self.predicted_rewards(obs) - self.lagrange * self.cost_means

    def greedy_model(self) -> dict[str, Any]:
        """``{"rule": "trees", ...}``: the fitted trees per incentive, the budget's price in ``bias``."""
        self._refit()
        return {
            **self.trees_model,
            "bias": (np.asarray(self.trees_model["bias"]) - self.lagrange * self.cost_means).tolist(),
        }

    # ---- learning -----------------------------------------------------------------------------
    def _learn(self, obs: Floats, actions: Actions, rewards: Floats) -> None:
        room = self.log_size - self.logged
        if room <= 0 or not self.experimenting:
            return
        take = slice(0, min(room, obs.shape[0]))
        self._log.append((obs[take].astype(np.float32), actions[take].copy(), rewards[take].copy()))
        self.logged += self._log[-1][1].size

    def _refit(self) -> None:
        """Fit the learner's trees on the log (when it grew) and rebuild the numpy rule."""
        if self._fitted_at == self.logged:
            return
        obs = np.concatenate([batch[0] for batch in self._log])
        actions = np.concatenate([batch[1] for batch in self._log])
        rewards = np.concatenate([batch[2] for batch in self._log])
        model = _untrained(self.spec, self.baseline)
        fitted = [
            self._boosted(obs[rows], rewards[rows]) if rows.sum() >= self.min_arm_samples else None
            for rows in (actions == arm for arm in range(self.spec.n_actions))
        ]
        if self.learner == "t":
            for arm, regressor in enumerate(fitted):
                if regressor is not None:
                    _add_ensemble(model, arm, regressor, 1.0)
        elif (reference := fitted[self.baseline]) is not None:
            _mark_trained(model, self.baseline, 0.0)  # effects are against the baseline: its own is 0
            control = actions == self.baseline
            for arm, regressor in enumerate(fitted):
                if regressor is None or arm == self.baseline:
                    continue
                treated = actions == arm
                propensity = treated.sum() / (treated.sum() + control.sum())
                imputed_treated = rewards[treated] - reference.predict(obs[treated])
                imputed_control = regressor.predict(obs[control]) - rewards[control]
                # Kunzel et al.: tau = g tau_control + (1 - g) tau_treated, g the propensity.
                for rows, imputed, weight in (
                    (control, imputed_control, propensity),
                    (treated, imputed_treated, 1.0 - propensity),
                ):
                    _add_ensemble(model, arm, self._boosted(obs[rows], imputed, effect=True), weight)
        model["min_uplift"] = self.min_uplift
        self.trees_model = model
        self._rule = trees_rule(model, len(self.spec.obs_fields), self.spec.n_actions)
        self._fitted_at = self.logged

    def _boosted(self, obs: Floats, targets: Floats, effect: bool = False) -> Any:
        """One arm's outcome model, or (``effect``) the X-learner's second stage on imputed effects.

        The second stage's trees are shallower, slower and subsampled: less variance on noisy targets.
        """
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            n_estimators=self.effect_estimators if effect else self.n_estimators,
            max_depth=self.effect_depth if effect else self.max_depth,
            learning_rate=self.effect_learning_rate if effect else self.learning_rate,
            subsample=self.effect_subsample if effect else 1.0,
            min_samples_leaf=self.min_samples_leaf,
            loss=self.loss,
            random_state=self.seed,
        ).fit(obs, targets)

    # ---- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The fitted trees (the log is not saved) and the budget state."""
        self._refit()
        return {**super().state_dict(), "model": self.trees_model, "logged": self.logged}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (its trees checked as an exported rule is)."""
        super().load_state(state)
        model = state.get("model")
        if not isinstance(model, Mapping):
            raise ValueError("uplift state: 'model' missing or not a mapping")
        self._rule = trees_rule(model, len(self.spec.obs_fields), self.spec.n_actions)
        self.trees_model = dict(model)
        self.logged = self._fitted_at = 0
        self.experimenting = not any(model.get("trained", []))  # a fitted policy's experiment is over


def _arm_mask(spec: EnvSpec, arms: list[str] | None) -> NDArray[np.bool_]:
    """Which incentives ``arms`` names (all when ``None``), each once."""
    mask = np.ones(spec.n_actions, dtype=bool)
    if arms is None:
        return mask
    if not isinstance(arms, list | tuple) or not all(isinstance(a, str) for a in arms) or len(arms) < 2:
        shown = repr(arms)[:200]
        raise ValueError(
            f"uplift: arms must list two or more incentive names, e.g. [none, referral_10]; got {shown}"
        )
    mask[:] = False
    for name in arms:
        mask[spec.action(name)] = True  # an unknown name: a clear error naming the incentives
    if len(set(arms)) != len(arms):
        raise ValueError(f"uplift: arms must name each incentive once; got {list(arms)}"[:300])
    return mask


def _untrained(spec: EnvSpec, baseline: int = 0) -> dict[str, Any]:
    """A decision model with no trees: only ``none`` (action 0) may be chosen."""
    return {
        "rule": "trees",
        "kind": UpliftLearner.kind,
        "action_names": list(spec.action_names),
        "obs_fields": list(spec.obs_fields),
        "trained": [False] * spec.n_actions,
        "bias": [0.0] * spec.n_actions,
        "min_uplift": 0.0,
        "baseline": baseline,
        "trees": [],
    }


def _mark_trained(model: dict[str, Any], arm: int, bias: float) -> None:
    """Let ``arm`` be chosen and add ``bias`` to its constant score."""
    model["trained"][arm] = True
    model["bias"][arm] += bias


def _add_ensemble(model: dict[str, Any], arm: int, regressor: Any, weight: float) -> None:
    """Add ``weight`` times a fitted scikit-learn boosted ensemble to ``arm``'s sum of trees."""
    _mark_trained(model, arm, weight * float(regressor.init_.constant_.reshape(-1)[0]))
    scale = weight * regressor.learning_rate
    for tree in regressor.estimators_[:, 0]:
        t = tree.tree_
        model["trees"].append(
            {
                "action": arm,
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "value": (scale * t.value[:, 0, 0]).tolist(),
            }
        )
