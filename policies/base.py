"""The one protocol every incentive policy follows, and what a policy may know about its env.

Every policy, from ``none`` to PPO, answers ``predict`` exactly like stable-baselines3's
``PolicyPredictor`` (batched observations in, batched actions and a recurrent state out), so
one evaluation loop (:mod:`policies.evaluate`) serves them all. Online learners also take
``update`` with the feedback the environment returned. Policies that are not neural networks
save as JSON (constructor arguments, learned state and their own random generator's state):
no pickle, and a loaded policy chooses exactly what the saved one would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from policies.rules import MAX_HEADS, layout_size_problem
from sim.io import atomic_write_json

Actions = NDArray[np.int64]
#: A policy file's format version; bump when the JSON layout changes.
FORMAT_VERSION = 1
#: Environment ids a policy file may name: registered ``shopgym/`` ids only (no ``module:Env`` imports).
ENV_ID_PREFIX = "shopgym/"
#: Key of a saved ``policy.json``'s content hash: SHA-256 of every other key in canonical JSON.
CONTENT_HASH_KEY = "content_sha256"


class PolicyFileError(ValueError):
    """A saved policy file is malformed, tampered with or points outside its directory."""


def confined_path(directory: Path, name: Any, what: str) -> Path:
    """``directory / name`` for a plain file name that stays inside ``directory``; else a clear error."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise PolicyFileError(f"{what}: {name!r} not allowed; a plain file name inside {directory}")
    path = directory / name
    root = directory.resolve()
    if path.resolve().parent != root or not path.is_file():
        raise PolicyFileError(f"{what}: {name!r} is not a file inside {directory}")
    return path


def policy_file_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of a policy file's content: every key but :data:`CONTENT_HASH_KEY`, canonical JSON.

    Canonical: sorted keys, no whitespace, non-finite floats as ``NaN``/``Infinity`` (as written).
    Like the card's hash it detects edits, it does not authenticate the file.
    """
    content = {key: value for key, value in document.items() if key != CONTENT_HASH_KEY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sealed(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with its content hash added (what :meth:`JsonPolicy.save` and SB3 saves write)."""
    return {**document, CONTENT_HASH_KEY: policy_file_digest(document)}


def check_seal(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``document`` without its content hash, after checking the hash; else one ``PolicyFileError`` line."""
    recorded = document.get(CONTENT_HASH_KEY)
    if not isinstance(recorded, str):
        raise PolicyFileError(
            f"{path}: {CONTENT_HASH_KEY} missing; a policy file shopgym saves records the SHA-256 of its "
            "content (this one was edited or saved by an older shopgym). Save or train the policy again."
        )
    try:
        digest = policy_file_digest(document)
    except (TypeError, ValueError, RecursionError):  # pragma: no cover - json.loads output always dumps
        digest = ""
    if digest != recorded:
        raise PolicyFileError(
            f"{path}: content does not match its {CONTENT_HASH_KEY} {recorded[:16]!r}...; the file was "
            "edited after it was saved. Save or train the policy again."
        )
    return {key: value for key, value in document.items() if key != CONTENT_HASH_KEY}


def registered_env_id(value: Any) -> str:
    """``value`` if it is a registered shopgym environment id (files never import modules)."""
    import sim.envs

    if not isinstance(value, str) or value not in sim.envs.ENV_IDS:
        text = repr(value)[:80]
        raise PolicyFileError(f"env_id {text} not allowed; allowed: {list(sim.envs.ENV_IDS)}")
    return value


@runtime_checkable
class Policy(Protocol):
    """What every incentive policy provides (SB3's ``PolicyPredictor`` plus online updates)."""

    name: str

    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """Actions for a batch of observations (shape ``(n, n_fields)``) or for a single one."""
        ...

    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: Actions,
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """Learn from feedback on earlier decisions (a no-op for fixed policies)."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the policy to ``path`` (a directory) and return the file written."""
        ...


@dataclass(frozen=True)
class EnvSpec:
    """What a policy may know about its environment: field names, incentives and action heads."""

    env_id: str
    obs_fields: tuple[str, ...]
    obs_scales: tuple[float, ...]
    """Each field is divided by its scale, then clipped to ``obs_clip``: raw value = obs x scale."""
    obs_clip: tuple[float, float]
    action_names: tuple[str, ...]
    action_kinds: tuple[str, ...]
    action_values: tuple[float, ...]
    """Each incentive's size in its kind's unit (coupon fraction, dollars, points)."""
    heads: tuple[str, ...]
    """One name per action component: ``("shopper",)`` for Discrete, the segments for MultiDiscrete."""

    @property
    def n_actions(self) -> int:
        """Incentives per head."""
        return len(self.action_names)

    def field(self, name: str) -> int:
        """Index of an observation field, or a clear error naming the fields there are."""
        if name not in self.obs_fields:
            raise KeyError(
                f"{self.env_id} has no observation field {name!r}; fields: {list(self.obs_fields)}"
            )
        return self.obs_fields.index(name)

    def action(self, name: str) -> int:
        """Index of an incentive by name, or a clear error naming the incentives there are."""
        if name not in self.action_names:
            raise ValueError(f"incentive {name!r} not in the scenario; allowed: {list(self.action_names)}")
        return self.action_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Any) -> EnvSpec:
        """Inverse of :meth:`to_dict`, validated: a file's spec is untrusted (``PolicyFileError``)."""
        if not isinstance(data, Mapping):
            raise PolicyFileError(f"env spec: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise PolicyFileError(f"env spec: keys {sorted(map(str, data))[:20]}; expected {sorted(names)}")
        env_id = registered_env_id(data["env_id"])
        declared = (data["obs_fields"], data["action_names"], data["heads"])
        n_fields, n_names, n_heads = (len(v) if isinstance(v, list) else 0 for v in declared)
        problem = layout_size_problem(n_fields, n_names, n_heads)
        if problem is not None:  # before anything is sized from it
            raise PolicyFileError(f"env spec: {problem}")
        try:
            spec = cls(
                env_id=env_id,
                obs_fields=tuple(_strs(data["obs_fields"])),
                obs_scales=tuple(_finite(data["obs_scales"])),
                obs_clip=(lambda c: (c[0], c[1]))(_finite(data["obs_clip"])),
                action_names=tuple(_strs(data["action_names"])),
                action_kinds=tuple(_strs(data["action_kinds"])),
                action_values=tuple(_finite(data["action_values"])),
                heads=tuple(_strs(data["heads"])),
            )
        except (TypeError, ValueError, IndexError) as error:
            raise PolicyFileError(f"env spec: {error}") from None
        n = spec.n_actions
        if (
            not spec.obs_fields
            or len(spec.obs_scales) != len(spec.obs_fields)
            or not all(s > 0 for s in spec.obs_scales)
            or len(spec.obs_clip) != 2
            or not spec.obs_clip[0] < spec.obs_clip[1]
            or n == 0
            or len(set(spec.action_names)) != n
            or len(spec.action_kinds) != n
            or len(spec.action_values) != n
            or not spec.heads
        ):
            raise PolicyFileError(
                "env spec: inconsistent (fields and scales of equal length, scales > 0, clip low < high, "
                f"unique incentive names with one kind and value each, 1..{MAX_HEADS} heads)"
            )
        return spec


def _strs(values: Any) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) and len(v) <= 200 for v in values):
        raise ValueError(f"expected a list of names, got {repr(values)[:80]}")
    return values


def _finite(values: Any) -> list[float]:
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values
    ):
        raise ValueError(f"expected a list of finite numbers, got {repr(values)[:80]}")
    return [float(v) for v in values]


def saved_array(
    state: Mapping[str, Any], name: str, shape: tuple[int, ...], minimum: float | None = None
) -> NDArray[np.float64]:
    """``state[name]`` as a finite array of exactly ``shape`` (>= ``minimum``); else ``PolicyFileError``.

    A saved policy's learned numbers are untrusted: a NaN, an infinity, a negative count or a
    wrong length would otherwise load and decide silently.
    """
    if not isinstance(state, Mapping) or name not in state:
        raise PolicyFileError(f"policy.json state.{name}: missing")
    try:
        values = np.asarray(state[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise PolicyFileError(
            f"policy.json state.{name}: {repr(state[name])[:60]} is not an array of numbers"
        ) from None
    if values.shape != shape:
        raise PolicyFileError(f"policy.json state.{name}: shape {values.shape}; expected {shape}")
    if not np.isfinite(values).all():
        raise PolicyFileError(f"policy.json state.{name}: not allowed; finite numbers only")
    if minimum is not None and values.size and values.min() < minimum:
        raise PolicyFileError(f"policy.json state.{name}: {values.min():.6g} not allowed; at least {minimum}")
    return values


def env_spec(env: gym.Env[Any, Any], env_id: str | None = None) -> EnvSpec:
    """Describe a shopgym environment (possibly wrapped) for the policies that act in it."""
    base = env.unwrapped
    module = importlib.import_module(type(base).__module__)
    fields = getattr(module, "OBS_FIELDS", None)
    scenario = getattr(base, "scenario", None)
    if fields is None or scenario is None:
        raise TypeError(f"{type(base).__name__} is not a shopgym environment (no OBS_FIELDS or scenario)")
    space, box = base.action_space, base.observation_space
    if not isinstance(box, spaces.Box):
        raise TypeError(f"shopgym policies read flat Box observations, got {box}")
    if isinstance(space, spaces.Discrete):
        heads: tuple[str, ...] = ("shopper",)
    elif isinstance(space, spaces.MultiDiscrete):
        heads = tuple(getattr(module, "SEGMENTS", tuple(f"head_{i}" for i in range(len(space.nvec)))))
    else:
        raise TypeError(f"unsupported action space {space}")
    spec_id = env_id or (env.spec.id if env.spec is not None else _registered_id(type(base)))
    return EnvSpec(
        env_id=spec_id,
        obs_fields=tuple(name for name, *_ in fields),
        obs_scales=tuple(float(scale) for *_, scale in fields),
        obs_clip=(float(np.min(box.low)), float(np.max(box.high))),
        action_names=tuple(i.name for i in scenario.incentives),
        action_kinds=tuple(i.kind for i in scenario.incentives),
        action_values=tuple(float(i.value) for i in scenario.incentives),
        heads=heads,
    )


def _registered_id(cls: type) -> str:
    """The registered id of an environment class built without ``gym.make`` (else its class name)."""
    entry = f"{cls.__module__}:{cls.__name__}"
    for spec in gym.registry.values():
        if spec.entry_point == entry:
            return spec.id
    return cls.__name__


def as_batch(observation: NDArray[np.floating[Any]], n_fields: int) -> tuple[NDArray[np.float64], bool]:
    """A 2-D float64 batch and whether the input was a single observation."""
    obs = np.asarray(observation, dtype=np.float64)
    single = obs.ndim == 1
    batch = obs.reshape(1, -1) if single else obs
    if batch.ndim != 2 or batch.shape[1] != n_fields:
        raise ValueError(f"observation shape {obs.shape} does not match {n_fields} fields")
    return batch, single


class JsonPolicy:
    """Shared machinery for policies that save as JSON: validated kwargs, own rng, save/load.

    Subclasses set ``kind``, keep their constructor arguments in ``self.params`` (JSON values)
    and their learned state in ``state_dict()``/``load_state()``.
    """

    kind: ClassVar[str]
    #: Whether the policy handles MultiDiscrete (one action per segment) environments.
    supports_heads: ClassVar[bool] = False

    def __init__(self, spec: EnvSpec, seed: int = 0, **params: Any) -> None:
        if len(spec.heads) > 1 and not self.supports_heads:
            raise ValueError(
                f"policy {self.kind!r} chooses one incentive per shopper; {spec.env_id} wants one per "
                f"segment ({list(spec.heads)}). Use none, random, blanket or segment_rules there."
            )
        self.spec = spec
        self.seed = seed
        self.params = params
        self.name = self.kind
        self.rng = np.random.default_rng(seed)

    # ---- the protocol -------------------------------------------------------------------------
    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """Actions for a batch (or one) of observations; masked incentives are never chosen."""
        batch, single = as_batch(observation, len(self.spec.obs_fields))
        masks = self._masks(action_masks, batch.shape[0])
        actions = self._act(batch, masks, deterministic)
        return (actions[0] if single else actions), state

    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: Actions,
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """Fixed policies learn nothing."""

    # ---- to override --------------------------------------------------------------------------
    def _act(self, obs: NDArray[np.float64], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Learned state as JSON values (none for fixed policies)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy, its learning and its rng, as JSON values."""
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "params": self.params,
            "env": self.spec.to_dict(),
            "state": self.state_dict(),
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JsonPolicy:
        """Rebuild a policy saved by :meth:`to_dict`, learned state and rng included."""
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"policy format {data.get('format')!r} unsupported; this version reads {FORMAT_VERSION}"
            )
        policy = cls(EnvSpec.from_dict(data["env"]), data["seed"], **data["params"])
        policy.load_state(data["state"])
        try:
            policy.rng.bit_generator.state = data["rng"]
        except (TypeError, ValueError, KeyError, OverflowError):
            raise PolicyFileError(
                f"policy.json rng: {repr(data['rng'])[:60]} is not a "
                f"{type(policy.rng.bit_generator).__name__} state"
            ) from None
        return policy

    def save(self, path: str | Path) -> Path:
        """Write ``policy.json`` into the directory ``path`` (atomically, with its content hash)."""
        target = Path(path) / "policy.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(sealed(self.to_dict()), target)
        return target

    # ---- helpers ------------------------------------------------------------------------------
    def _masks(self, action_masks: NDArray[np.bool_] | None, n: int) -> NDArray[np.bool_]:
        """Masks as ``(n, heads, n_actions)``; all allowed when none are given."""
        shape = (n, len(self.spec.heads), self.spec.n_actions)
        if action_masks is None:
            return np.ones(shape, dtype=np.bool_)
        masks = np.asarray(action_masks, dtype=np.bool_).reshape(shape)
        if not masks.any(axis=2).all():
            raise ValueError("every action mask must allow at least one incentive (0 is 'none')")
        return masks


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Reject a value outside ``allowed`` with the argument's name."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} not allowed; choose one of {list(allowed)}")


def check_range(name: str, value: float, low: float, high: float = np.inf) -> None:
    """Reject a number outside ``[low, high]`` with the argument's name."""
    if not (isinstance(value, int | float) and low <= value <= high):
        raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}]")
