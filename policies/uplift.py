"""``uplift``: a T-learner that targets incentives on what a shop observes, from a randomized log.

The classic field recipe (Radcliffe & Surry 2011; Ascarza 2018, "Retention futility"): run a
randomized experiment, fit one outcome model per treatment, then give each shopper the incentive
whose predicted outcome beats the others by the most. Here the experiment is the policy's own
training: every training decision draws an allowed incentive uniformly at random and logs the
observation, the incentive and the reward that followed (up to ``log_size`` decisions). The
first greedy decision closes the experiment: feedback on the policy's own choices is not
randomized, so it is not logged (``evaluation: learn: true`` leaves the fitted trees as they are). The
outcome models are scikit-learn gradient-boosted regression trees (Huber loss by default), one
per incentive (the T-learner of Kunzel et al. 2019); an incentive with fewer than ``min_arm_samples`` logged
decisions is never chosen. The greedy rule gives the incentive with the highest predicted
reward minus ``lambda * cost`` (the budget's price, as for every bandit) where it beats ``none``
by at least ``min_uplift``.

The fitted trees are saved as JSON arrays and decided by :class:`policies.rules.TreesRule`, in
numpy alone, in process and in the exported runtime; the log itself is not saved, so a reloaded
policy acts on its fitted trees and a further ``update`` starts a new log.
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
#: Most decisions the randomized log may hold (float32 features: 1M x 64 fields is 256 MB).
MAX_LOG_SIZE = 1_000_000


class UpliftTLearner(Bandit):
    """Randomized log, one boosted-tree outcome model per incentive, the best predicted one given."""

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
        budget_per_decision: float | None = None,
        pacing_rate: float = 0.01,
    ) -> None:
        for name, value, low, high in (
            ("log_size", log_size, 1, MAX_LOG_SIZE),
            ("n_estimators", n_estimators, 1, 2_000),
            ("max_depth", max_depth, 1, 12),
            ("min_samples_leaf", min_samples_leaf, 1, MAX_LOG_SIZE),
            ("min_arm_samples", min_arm_samples, 1, MAX_LOG_SIZE),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}={value!r} must be an integer in [{low}, {high:,}]")
        if spec.n_actions * n_estimators * (2 ** (max_depth + 1) - 1) > MAX_TREE_NODES:
            raise ValueError(
                f"uplift: {spec.n_actions} incentives x {n_estimators} trees of depth {max_depth} may "
                f"exceed {MAX_TREE_NODES:,} nodes (MAX_TREE_NODES): use fewer or shallower trees"
            )
        _check_positive("learning_rate", learning_rate)
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
        )
        self.log_size = log_size
        self.n_estimators, self.max_depth = n_estimators, max_depth
        self.learning_rate, self.min_samples_leaf = float(learning_rate), min_samples_leaf
        self.min_arm_samples, self.min_uplift = min_arm_samples, float(min_uplift)
        self.loss = loss
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
        return _masked_argmax(np.zeros(allowed.shape), allowed, self.rng)  # the randomized experiment

    def predicted_rewards(self, obs: Floats) -> Floats:
        """``(n, n_actions)``: each incentive's predicted reward (``-inf`` where it has no model)."""
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
        """Fit one boosted-tree regressor per incentive on its logged decisions (when the log grew)."""
        if self._fitted_at == self.logged:
            return
        from sklearn.ensemble import GradientBoostingRegressor

        model = _untrained(self.spec)
        log_obs = np.concatenate([batch[0] for batch in self._log])
        log_actions = np.concatenate([batch[1] for batch in self._log])
        log_rewards = np.concatenate([batch[2] for batch in self._log])
        for arm in range(self.spec.n_actions):
            rows = log_actions == arm
            if rows.sum() < self.min_arm_samples:
                continue
            regressor = GradientBoostingRegressor(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                min_samples_leaf=self.min_samples_leaf,
                loss=self.loss,
                random_state=self.seed,
            ).fit(log_obs[rows], log_rewards[rows])
            model["trained"][arm] = True
            model["bias"][arm] = float(regressor.init_.constant_.reshape(-1)[0])
            for tree in regressor.estimators_[:, 0]:
                t = tree.tree_
                model["trees"].append(
                    {
                        "action": arm,
                        "feature": t.feature.tolist(),
                        "threshold": t.threshold.tolist(),
                        "left": t.children_left.tolist(),
                        "right": t.children_right.tolist(),
                        "value": (self.learning_rate * t.value[:, 0, 0]).tolist(),
                    }
                )
        model["min_uplift"] = self.min_uplift
        self.trees_model = model
        self._rule = trees_rule(model, len(self.spec.obs_fields), self.spec.n_actions)
        self._fitted_at = self.logged

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


def _untrained(spec: EnvSpec) -> dict[str, Any]:
    """A decision model with no trees: only ``none`` (action 0) may be chosen."""
    return {
        "rule": "trees",
        "kind": UpliftTLearner.kind,
        "action_names": list(spec.action_names),
        "obs_fields": list(spec.obs_fields),
        "trained": [False] * spec.n_actions,
        "bias": [0.0] * spec.n_actions,
        "min_uplift": 0.0,
        "trees": [],
    }
