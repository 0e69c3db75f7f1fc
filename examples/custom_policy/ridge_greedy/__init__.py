"""An example shopgym policy plugin: epsilon-greedy over per-incentive ridge regressions.

Each incentive ``k`` has a ridge regression of the reward on the (normalized) observation and
a constant, fitted from the feedback :meth:`RidgeGreedy.update` receives: ``A_k = ridge * I +
sum x x^T``, ``b_k = sum r x``, ``theta_k = A_k^-1 b_k``. A decision gives the allowed
incentive of highest predicted reward; while exploring (not deterministic) it gives a uniformly
drawn allowed incentive with probability ``epsilon``. It follows the protocol of shopgym's
``docs/POLICIES.md``: registered by the entry point in this package's ``pyproject.toml``,
saved as JSON (no pickle), exported as a ``linear`` decision model of ``policies.rules``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from policies.base import EnvSpec, PolicyFileError, as_batch, env_spec
from policies.rules import compile_rule
from sim.io import atomic_write_json

KIND = "ridge_greedy"
#: Largest policy file read back (the state is two small matrices per incentive).
MAX_FILE_BYTES = 16 * 1024 * 1024


class RidgeGreedy:
    """Epsilon-greedy ridge-regression bandit, one incentive per shopper."""

    #: How shopgym's runner trains it: over ``training.episodes`` episodes, through ``update``.
    training: ClassVar[str] = "episodes"
    #: Same seed, same decisions: the regression gate compares it exactly.
    reproducible: ClassVar[bool] = True

    def __init__(self, env: Any, seed: int = 0, epsilon: float = 0.1, ridge: float = 1.0) -> None:
        spec = env if isinstance(env, EnvSpec) else env_spec(env)
        if len(spec.heads) != 1:
            raise ValueError(f"{KIND} gives one incentive per shopper; {spec.env_id} wants one per segment")
        for name, value, low, high in (("epsilon", epsilon, 0.0, 1.0), ("ridge", ridge, 1e-9, 1e9)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ValueError(f"{KIND}: {name}={value!r} must be a number in [{low:g}, {high:g}]")
        self.kind = self.name = KIND
        self.spec, self.seed = spec, seed
        self.params = {"epsilon": float(epsilon), "ridge": float(ridge)}
        d, n = len(spec.obs_fields) + 1, spec.n_actions
        self.gram = np.repeat(ridge * np.eye(d)[None], n, axis=0)  # (n_actions, d, d)
        self.target = np.zeros((n, d))
        self.rng = np.random.default_rng(seed)
        self._rule: Any = None

    # ---- the protocol ------------------------------------------------------------------------
    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[NDArray[np.int64], tuple[NDArray[Any], ...] | None]:
        """The best allowed incentive by predicted reward (epsilon-greedy unless ``deterministic``)."""
        batch, single = as_batch(observation, len(self.spec.obs_fields))
        n = batch.shape[0]
        masks = (
            np.ones((n, self.spec.n_actions), dtype=np.bool_)
            if action_masks is None
            else np.asarray(action_masks, dtype=np.bool_).reshape(n, self.spec.n_actions)
        )
        if self._rule is None:  # the same numpy rule the exported artifact runs
            self._rule = compile_rule(self.greedy_model(), self.spec)
        actions = self._rule.decide(batch, masks[:, None, :])[:, 0]
        if not deterministic:
            explore = self.rng.random(n) < self.params["epsilon"]
            for i in np.flatnonzero(explore):
                actions[i] = self.rng.choice(np.flatnonzero(masks[i]))
        return (actions[0] if single else actions), state

    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: NDArray[np.int64],
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """Add the feedback to each chosen incentive's regression (the reward already nets costs)."""
        batch, _ = as_batch(observations, len(self.spec.obs_fields))
        x = np.hstack([batch, np.ones((batch.shape[0], 1))])
        for k in np.unique(actions):
            rows = x[actions == k]
            self.gram[k] += rows.T @ rows
            self.target[k] += rows.T @ np.asarray(rewards, dtype=np.float64)[actions == k]
        self._rule = None

    def greedy_model(self) -> dict[str, Any]:
        """Export protocol: the deterministic decision as a ``linear`` decision model."""
        theta = np.stack([np.linalg.solve(a, b) for a, b in zip(self.gram, self.target, strict=True)])
        return {
            "rule": "linear",
            "action_names": list(self.spec.action_names),
            "weights": theta[:, :-1].tolist(),
            "bias": theta[:, -1].tolist(),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``policy.json`` (arguments, regressions, rng state) into the directory ``path``."""
        target = Path(path) / "policy.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": 1,
            "kind": KIND,
            "seed": self.seed,
            "params": self.params,
            "env": self.spec.to_dict(),
            "gram": self.gram.tolist(),
            "target": self.target.tolist(),
            "rng": self.rng.bit_generator.state,
        }
        atomic_write_json(document, target)
        return target

    @classmethod
    def load(cls, directory: Path, env: Any = None) -> RidgeGreedy:
        """Read what :meth:`save` wrote; the file is untrusted, so every field is checked."""
        path = Path(directory) / "policy.json"
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PolicyFileError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
        data = json.loads(path.read_text())
        if not isinstance(data, Mapping) or data.get("format") != 1 or data.get("kind") != KIND:
            raise PolicyFileError(f"{path}: not a format-1 {KIND} policy file")
        seed, params = data.get("seed"), data.get("params")
        if not isinstance(seed, int) or not isinstance(params, Mapping):
            raise PolicyFileError(f"{path}: seed must be an integer and params a mapping")
        policy = cls(EnvSpec.from_dict(data.get("env")), seed, **params)
        gram, target = np.asarray(data.get("gram"), float), np.asarray(data.get("target"), float)
        if gram.shape != policy.gram.shape or target.shape != policy.target.shape:
            raise PolicyFileError(
                f"{path}: regression shapes {gram.shape}, {target.shape} do not fit the env"
            )
        if not (np.isfinite(gram).all() and np.isfinite(target).all()):
            raise PolicyFileError(f"{path}: regressions must be finite")
        if not all(math.isfinite(np.linalg.cond(a)) for a in gram):
            raise PolicyFileError(f"{path}: a regression's Gram matrix is singular")
        policy.gram, policy.target = gram, target
        policy.rng.bit_generator.state = data.get("rng")
        return policy
