"""Serve an exported incentive policy in production with numpy and onnxruntime only.

``shopgym export`` writes a directory holding ``policy_card.json`` and one model file:
``policy.onnx`` (a stable-baselines3 network, run by onnxruntime) or ``policy.json`` (a
baseline's or bandit's decision rule, run by :mod:`policies.rules` in numpy). This module
loads that directory and decides, without torch, stable-baselines3, SimPy or gymnasium, so a
serving process stays small and starts fast.

Features are the raw business values of the environment's observation fields, by name
(``recency=12.0`` days, ``monetary=240.0`` dollars, ``incentives_received=2`` ...). The
runtime normalizes them exactly as the environment does (``clip(raw / scale, low, high)`` in
float64, then float32, with the card's constants), so the model sees what it saw in training.
Decisions are deterministic: the argmax of the network's logits or Q-values, or the rule's
choice, over the incentives the caller allows.

Example:
    >>> policy = load_policy("artifacts/ppo")  # doctest: +SKIP
    >>> policy.decide({"recency": 12.0, ...}, allowed={"none", "coupon_10"})  # doctest: +SKIP
    'coupon_10'
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from policies.rules import Rule, compile_rule, layout_size_problem, masked_argmax

#: The card's file name inside an artifact directory.
CARD_FILE = "policy_card.json"
#: Card layout version; bump when the card's JSON layout changes.
CARD_FORMAT = 1
#: The model file of each artifact format (nothing else is ever read, and never a pickle).
MODEL_FILES = {"onnx": "policy.onnx", "json": "policy.json"}
#: Name of the observation input of every exported ONNX graph, and of MaskablePPO's mask input.
OBS_INPUT, MASK_INPUT = "obs", "action_mask"
#: The output name of a network whose scores are its action distribution's log-probabilities.
STOCHASTIC_OUTPUT = "log_probs"
#: Inputs a recurrent graph (RecurrentPPO) takes besides ``obs``: the LSTM state and episode starts.
STATE_INPUTS, START_INPUT = ("state_h", "state_c"), "episode_start"
#: The card's own hash field: :func:`card_digest` covers every other field of the card.
INTEGRITY_KEY = "integrity"
#: What the card's ``integrity.covers`` says (the card records what its hash covers).
INTEGRITY_COVERS = "every field of the card except 'integrity'"
#: Largest card read (a real card is a few tens of kilobytes).
MAX_CARD_BYTES = 16 * 1024 * 1024
#: Largest model file read, by format, checked on the file's size before a byte is read:
#: protobuf's own 2 GiB limit for ``policy.onnx`` (16 layers of 4096 units take about 1 GiB),
#: and ``policy.json``'s rule (a linear rule over 1,024 incentives x 4,096 features is ~100 MB).
MAX_MODEL_BYTES = {"onnx": 2 * 1024**3 - 1, "json": 256 * 1024**2}
#: Largest recurrent state a card may declare (layers, hidden units), as training allows.
MAX_LSTM_LAYERS, MAX_LSTM_HIDDEN = 16, 4096

Ids = NDArray[np.int64]
Masks = NDArray[np.bool_]


class ArtifactError(ValueError):
    """An artifact directory is incomplete, inconsistent or tampered with; the message says which."""


class FeatureError(ValueError):
    """Features given to a policy are missing, extra, not numbers or not finite; the message names them."""


class _TooLarge(Exception):
    """A card's declared layout exceeds the runtime's limits (turned into an ArtifactError)."""


@dataclass(frozen=True)
class CardLayout:
    """The environment layout a card records (feature names and scales, incentives, heads)."""

    obs_fields: tuple[str, ...]
    obs_scales: tuple[float, ...]
    obs_clip: tuple[float, float]
    action_names: tuple[str, ...]
    action_kinds: tuple[str, ...]
    action_values: tuple[float, ...]
    heads: tuple[str, ...]

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> CardLayout:
        """Read and check the layout of a policy card."""
        try:
            features = card["features"]
            normalization = card["normalization"]
            actions = card["actions"]
            problem = layout_size_problem(len(features), len(actions["names"]), len(actions["heads"]))
            if problem is not None:  # before anything is sized from it
                raise _TooLarge(problem)
            layout = cls(
                obs_fields=tuple(str(f["name"]) for f in features),
                obs_scales=tuple(float(f["scale"]) for f in features),
                obs_clip=(float(normalization["clip"][0]), float(normalization["clip"][1])),
                action_names=tuple(str(a) for a in actions["names"]),
                action_kinds=tuple(str(a) for a in actions["kinds"]),
                action_values=tuple(float(a) for a in actions["values"]),
                heads=tuple(str(h) for h in actions["heads"]),
            )
        except _TooLarge as error:
            raise ArtifactError(f"policy card declares more than this runtime serves: {error}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
            raise ArtifactError(f"policy card lacks or garbles its layout: {repr(error)[:200]}") from None
        if len(set(layout.obs_fields)) != len(layout.obs_fields) or not layout.obs_fields:
            raise ArtifactError(
                f"policy card features must be unique and non-empty: {list(layout.obs_fields)}"
            )
        if not all(np.isfinite(s) and s > 0 for s in layout.obs_scales):
            raise ArtifactError(f"policy card scales must be finite and > 0: {list(layout.obs_scales)}")
        low, high = layout.obs_clip
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ArtifactError(f"policy card clip {[low, high]} must be two finite numbers, low < high")
        n = len(layout.action_names)
        if (
            n == 0
            or len(set(layout.action_names)) != n
            or len(layout.action_kinds) != n
            or len(layout.action_values) != n
        ):
            raise ArtifactError("policy card actions need unique names, with one kind and one value each")
        if not layout.heads:
            raise ArtifactError("policy card names no action heads")
        return layout


class _Model(Protocol):
    """A loaded decision model: normalized float32 observations and masks in, ids ``(n, heads)`` out."""

    def ids(self, obs: NDArray[np.float32], masks: Masks | None) -> Ids: ...

    def probabilities(self, obs: NDArray[np.float32], masks: Masks | None) -> NDArray[np.float64]: ...


def _one_hot(ids: Ids, n_actions: int) -> NDArray[np.float64]:
    """A deterministic rule's action distribution: probability 1 on each decision's incentive."""
    dist = np.zeros((*ids.shape, n_actions), dtype=np.float64)
    np.put_along_axis(dist, ids[..., None], 1.0, axis=-1)
    return dist


def _onnxruntime_words(error: BaseException) -> str:
    """The message of onnxruntime's error, cut to one short line (quoted in ours, never the whole text)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def _onnx_session(model: bytes, threads: int) -> Any:
    """An onnxruntime session for ``policy.onnx``; any failure to build it is one ArtifactError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types, and MemoryError
        raise ArtifactError(
            f"policy.onnx cannot be loaded: onnxruntime refused the graph ({_onnxruntime_words(error)}); "
            "it is not a network shopgym exported. Re-export it."
        ) from None


def _run_session(session: Any, outputs: list[str] | None, feeds: Mapping[str, Any]) -> list[Any]:
    """``session.run``; a graph that fails while deciding (e.g. allocates too much) is one ArtifactError."""
    try:
        result: list[Any] = session.run(outputs, feeds)
    except Exception as error:  # onnxruntime raises its own exception types, and MemoryError
        raise ArtifactError(
            f"policy.onnx failed while deciding ({_onnxruntime_words(error)}); the graph is broken or "
            "not a network shopgym exported. Re-export it."
        ) from None
    return result


def _checked_scores(scores: Any, shape: tuple[int, ...], what: str) -> NDArray[Any]:
    """``scores`` if a finite float array of ``shape``; else ArtifactError (a broken or hostile graph)."""
    if not isinstance(scores, np.ndarray) or scores.shape != shape or scores.dtype.kind != "f":
        got = f"{scores.dtype} {scores.shape}" if isinstance(scores, np.ndarray) else type(scores).__name__
        raise ArtifactError(
            f"policy.onnx {what}: got {got}, expected float {shape}; the graph does not match its card. "
            "Re-export it."
        )
    if not np.isfinite(scores).all():
        raise ArtifactError(
            f"policy.onnx {what}: {int((~np.isfinite(scores)).sum())} non-finite score(s) (NaN or inf): "
            "its weights overflow float32, so its decisions mean nothing. Re-export it."
        )
    return scores


def _probe_obs(layout: CardLayout) -> NDArray[np.float32]:
    """Three normalized observations spanning the clip box (low, middle, high) for the load-time check."""
    low, high = layout.obs_clip
    rows = np.array([[low], [(low + high) / 2.0], [high]], dtype=np.float64)
    return np.repeat(rows, len(layout.obs_fields), axis=1).astype(np.float32)


def _output_width(session: Any, names: Sequence[str], rank: int, width: int, what: str) -> None:
    """Check the declared outputs: ``names`` many at least, the first of ``rank`` ending in ``width``."""
    outputs = session.get_outputs()
    if len(outputs) < len(names):
        raise ArtifactError(f"policy.onnx has {len(outputs)} output(s); {what} needs {list(names)}")
    shape = outputs[0].shape
    if not isinstance(shape, list | tuple) or len(shape) != rank or shape[-1] != width:
        raise ArtifactError(
            f"policy.onnx output {outputs[0].name!r} has shape {shape}; the card needs rank {rank} ending "
            f"in {width} ({what}). Re-export it."
        )


class _OnnxModel:
    """An SB3 network exported to ONNX: logits or Q-values per head, argmax over allowed incentives."""

    def __init__(self, model: bytes, layout: CardLayout, spec: Mapping[str, Any], threads: int) -> None:
        self.session = _onnx_session(model, threads)
        self.n_heads, self.n_actions = len(layout.heads), len(layout.action_names)
        self.masked_input = spec.get("mask") == "input"
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        expected = [OBS_INPUT, MASK_INPUT] if self.masked_input else [OBS_INPUT]
        if sorted(inputs) != sorted(expected):
            raise ArtifactError(f"policy.onnx inputs {sorted(inputs)} differ from the card's {expected}")
        if not inputs[OBS_INPUT] or inputs[OBS_INPUT][-1] != len(layout.obs_fields):
            raise ArtifactError(
                f"policy.onnx reads features of shape {inputs[OBS_INPUT]}, the card lists "
                f"{len(layout.obs_fields)} features"
            )
        width = self.n_heads * self.n_actions
        _output_width(
            self.session, ["scores"], 2, width, f"{self.n_heads} head(s) x {self.n_actions} incentives"
        )
        self.output = self.session.get_outputs()[0].name
        #: Whether the network's output is an action distribution (PPO, A2C, MaskablePPO, TRPO).
        self.stochastic = self.output == STOCHASTIC_OUTPUT
        self._all_allowed = np.ones((1, width), dtype=np.bool_)
        self.ids(_probe_obs(layout), None)  # the graph runs and gives finite scores of the card's shape

    def _scores(self, obs: NDArray[np.float32], masks: Masks | None) -> NDArray[Any]:
        feeds: dict[str, NDArray[Any]] = {OBS_INPUT: obs}
        n = obs.shape[0]
        if self.masked_input:
            flat = (
                np.broadcast_to(self._all_allowed, (n, self._all_allowed.shape[1]))
                if masks is None
                else masks.reshape(n, -1)
            )
            feeds[MASK_INPUT] = np.ascontiguousarray(flat)
        return _checked_scores(
            _run_session(self.session, [self.output], feeds)[0],
            (n, self.n_heads * self.n_actions),
            "scores",
        ).reshape(n, self.n_heads, self.n_actions)

    def ids(self, obs: NDArray[np.float32], masks: Masks | None) -> Ids:
        scores = self._scores(obs, masks)
        if masks is None:
            return np.argmax(scores, axis=2).astype(np.int64)
        return masked_argmax(scores, masks)

    def probabilities(self, obs: NDArray[np.float32], masks: Masks | None) -> NDArray[np.float64]:
        """The trained action distribution over allowed incentives (log-probabilities renormalized).

        Q-values and ARS scores define no distribution: their policy is the argmax (one-hot).
        """
        if not self.stochastic:
            return _one_hot(self.ids(obs, masks), self.n_actions)
        log_probs = self._scores(obs, masks).astype(np.float64)
        if masks is not None:
            log_probs = np.where(masks, log_probs, -np.inf)
        log_probs -= log_probs.max(axis=2, keepdims=True)
        weights = np.exp(log_probs)
        return weights / weights.sum(axis=2, keepdims=True)


class _RecurrentOnnxModel:
    """RecurrentPPO's actor exported to ONNX: one step, the LSTM state in and out (card ``recurrent``)."""

    def __init__(self, model: bytes, layout: CardLayout, spec: Mapping[str, Any], threads: int) -> None:
        recurrent = spec.get("recurrent")
        try:
            self.layers, self.hidden = int(recurrent["layers"]), int(recurrent["hidden"])  # type: ignore[index]
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ArtifactError(f"policy card 'model.recurrent' lacks layers or hidden: {error!r}") from None
        if not (1 <= self.layers <= MAX_LSTM_LAYERS and 1 <= self.hidden <= MAX_LSTM_HIDDEN):
            raise ArtifactError(
                f"policy card 'model.recurrent': {self.layers} layers x {self.hidden} hidden; at most "
                f"{MAX_LSTM_LAYERS} x {MAX_LSTM_HIDDEN} (MAX_LSTM_LAYERS, MAX_LSTM_HIDDEN)"
            )
        self.session = _onnx_session(model, threads)
        expected = sorted([OBS_INPUT, *STATE_INPUTS, START_INPUT])
        if sorted(i.name for i in self.session.get_inputs()) != expected:
            raise ArtifactError(f"recurrent policy.onnx inputs differ from the card's {expected}")
        self.n_heads, self.n_actions = len(layout.heads), len(layout.action_names)
        _output_width(
            self.session, [STOCHASTIC_OUTPUT, *STATE_INPUTS], 2, self.n_heads * self.n_actions, "recurrent"
        )
        probe = _probe_obs(layout)
        zeros = np.zeros((self.layers, probe.shape[0], self.hidden), dtype=np.float32)
        self.step(probe, None, (zeros, zeros), np.ones(probe.shape[0]))

    def ids(self, obs: NDArray[np.float32], masks: Masks | None) -> Ids:
        raise ArtifactError(
            "this artifact is recurrent (RecurrentPPO): each decision needs the journey's LSTM state; "
            "use RuntimePolicy.step(features, state, episode_start) and initial_state(n)"
        )

    def probabilities(self, obs: NDArray[np.float32], masks: Masks | None) -> NDArray[np.float64]:
        return _one_hot(self.ids(obs, masks), 0)  # ids() refuses: a recurrent decision needs its state

    def step(
        self,
        obs: NDArray[np.float32],
        masks: Masks | None,
        state: tuple[NDArray[np.float32], ...],
        starts: Any,
    ) -> tuple[Ids, tuple[NDArray[np.float32], NDArray[np.float32]]]:
        n = obs.shape[0]
        shape = (self.layers, n, self.hidden)
        if len(state) != 2 or any(np.shape(s) != shape for s in state):
            raise FeatureError(f"state must be two float32 arrays of shape {shape} (initial_state({n}))")
        try:
            feeds = {
                OBS_INPUT: obs,
                STATE_INPUTS[0]: np.asarray(state[0], dtype=np.float32),
                STATE_INPUTS[1]: np.asarray(state[1], dtype=np.float32),
                START_INPUT: np.asarray(starts, dtype=np.float32).reshape(n),
            }
        except (TypeError, ValueError) as error:
            raise FeatureError(f"state and episode_start must be numbers ({n} journeys): {error}") from None
        outputs = _run_session(self.session, None, feeds)
        scores = _checked_scores(outputs[0], (n, self.n_heads * self.n_actions), "log-probabilities")
        h = _checked_scores(outputs[1], shape, "LSTM state h")
        c = _checked_scores(outputs[2], shape, "LSTM state c")
        scores = scores.reshape(n, self.n_heads, self.n_actions)
        ids = np.argmax(scores, axis=2).astype(np.int64) if masks is None else masked_argmax(scores, masks)
        return ids, (h, c)


class _RuleModel:
    """A baseline's or bandit's decision rule, evaluated by :mod:`policies.rules` in numpy."""

    def __init__(self, rule: Rule, layout: CardLayout) -> None:
        self.rule = rule
        self.shape = (len(layout.heads), len(layout.action_names))

    def ids(self, obs: NDArray[np.float32], masks: Masks | None) -> Ids:
        if masks is None:
            masks = np.ones((obs.shape[0], *self.shape), dtype=np.bool_)
        # The rules read the float64 view of the float32 observation, as the in-process policies do.
        return self.rule.decide(obs.astype(np.float64), masks)

    def probabilities(self, obs: NDArray[np.float32], masks: Masks | None) -> NDArray[np.float64]:
        """A rule is deterministic: probability 1 on its decision."""
        return _one_hot(self.ids(obs, masks), self.shape[1])


class RuntimePolicy:
    """An exported policy, ready to decide: raw features by name in, incentive names out.

    Build it with :func:`load_policy`. ``decide`` serves one decision; ``decide_batch`` many
    (a DataFrame, a mapping of columns, a list of mappings, or an array in card order).
    """

    def __init__(self, card: Mapping[str, Any], layout: CardLayout, model: _Model, directory: Path) -> None:
        self.card = card
        self.layout = layout
        self.directory = directory
        self._model = model
        self._names = layout.obs_fields
        self._n = len(layout.obs_fields)
        self._scales = np.asarray(layout.obs_scales, dtype=np.float64)
        self._low, self._high = layout.obs_clip
        self._actions = np.asarray(layout.action_names)
        self._action_index = {name: i for i, name in enumerate(layout.action_names)}
        self._action_set = frozenset(layout.action_names)
        self._single_head = len(layout.heads) == 1

    # ---- what it is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The policy's name (its kind, or its name in the experiment it came from)."""
        return str(self.card["policy"]["name"])

    @property
    def kind(self) -> str:
        """The policy kind (``ppo``, ``segment_rules``, ``lin_ucb`` ...)."""
        return str(self.card["policy"]["kind"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features ``decide`` requires, in the order an array given to ``decide_batch`` uses."""
        return self._names

    @property
    def action_names(self) -> tuple[str, ...]:
        """The incentives, by id (0 is ``none``)."""
        return self.layout.action_names

    @property
    def heads(self) -> tuple[str, ...]:
        """One name per decision: ``("shopper",)``, or the segments of a per-segment policy."""
        return self.layout.heads

    # ---- deciding ---------------------------------------------------------------------------
    def decide(
        self,
        features: Mapping[str, float],
        allowed: Collection[str] | Mapping[str, Collection[str]] | None = None,
    ) -> str | dict[str, str]:
        """The incentive for one decision (per head, a dict head -> incentive, for per-segment policies).

        ``allowed`` names the incentives this shopper may receive (eligibility); default all.
        For a per-segment policy it may map each head to its own allowed set.
        """
        if not isinstance(features, Mapping):
            raise FeatureError(
                f"features must be a mapping of feature name to number, got {type(features).__name__}; "
                f"give {{name: value}} for {list(self._names)} (decide_batch takes arrays and lists)"
            )
        if len(features) != self._n:
            raise FeatureError(self._mismatch(features.keys()))
        try:
            values = [features[name] for name in self._names]
        except KeyError:
            raise FeatureError(self._mismatch(features.keys())) from None
        try:
            # sum() screens cheaply: a TypeError for non-numbers, non-finite if any value is.
            total = sum(values)
            raw = np.array(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise FeatureError(self._bad_values(None, values)) from None
        if raw.shape != (self._n,):
            raise FeatureError(self._bad_values(None, values))
        if not math.isfinite(total) and not np.isfinite(raw).all():
            raise FeatureError(self._bad_values(raw.reshape(1, -1), None))
        obs = self._normalize(raw.reshape(1, -1))
        masks = None if allowed is None else self._mask_one(allowed)
        ids = self._model.ids(obs, masks)[0]
        if self._single_head:
            return str(self.layout.action_names[ids[0]])
        return {head: self.layout.action_names[i] for head, i in zip(self.layout.heads, ids, strict=True)}

    def decide_batch(self, features: Any, allowed: Any = None) -> NDArray[np.str_]:
        """Incentive names for many decisions: shape ``(n,)``, or ``(n, heads)`` for per-segment policies.

        ``features``: a DataFrame or a mapping with one column per feature, a list of mappings,
        or an array ``(n, n_features)`` in :attr:`feature_names` order. ``allowed``: one set of
        incentive names for every row, one set per row, or a boolean array ``(n, n_actions)``.
        """
        return self._actions[self.action_ids(features, allowed)]

    def action_ids(self, features: Any, allowed: Any = None) -> Ids:
        """Like :meth:`decide_batch`, as incentive ids (indices into :attr:`action_names`)."""
        raw = self.features_array(features)
        masks = None if allowed is None else self._mask_batch(allowed, raw.shape[0])
        if raw.shape[0] == 0:  # nothing to decide: the empty answer, in the usual shape
            empty = np.zeros((0, len(self.heads)), dtype=np.int64)
            return empty[:, 0] if self._single_head else empty
        ids = self._model.ids(self._normalize(raw), masks)
        return ids[:, 0] if self._single_head else ids

    @property
    def stochastic(self) -> bool:
        """Whether the policy is a distribution over incentives (an exported PPO, A2C, MaskablePPO, TRPO).

        A deterministic policy (rules, bandits' exported means, Q-values) puts probability 1 on its
        decision; serving draws from a stochastic one with :meth:`action_probabilities`.
        """
        return bool(getattr(self._model, "stochastic", False))

    def action_probabilities(self, features: Any, allowed: Any = None) -> NDArray[np.float64]:
        """Each decision's distribution over incentives: ``(n, n_actions)``, or ``(n, heads, n_actions)``.

        Disallowed incentives get 0 and each row sums to 1; its argmax is :meth:`action_ids`' choice.
        Takes ``features`` and ``allowed`` as :meth:`decide_batch` does.
        """
        raw = self.features_array(features)
        masks = None if allowed is None else self._mask_batch(allowed, raw.shape[0])
        n_actions = len(self.action_names)
        if raw.shape[0] == 0:
            empty = np.zeros((0, len(self.heads), n_actions), dtype=np.float64)
            return empty[:, 0] if self._single_head else empty
        dist = self._model.probabilities(self._normalize(raw), masks)
        return dist[:, 0] if self._single_head else dist

    def initial_state(self, n: int = 1) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """A recurrent artifact's state for ``n`` journeys before their first decision (zeros)."""
        if not isinstance(self._model, _RecurrentOnnxModel):
            raise ArtifactError(f"{self.kind} is not recurrent; decide() needs no state")
        zeros = np.zeros((self._model.layers, n, self._model.hidden), dtype=np.float32)
        return zeros, zeros.copy()

    def step(
        self, features: Any, state: tuple[NDArray[np.float32], ...], episode_start: Any, allowed: Any = None
    ) -> tuple[Ids, tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """A recurrent artifact's incentive ids for one decision of ``n`` journeys, and their next state.

        ``episode_start`` (``n`` booleans) marks each journey's first decision (its state is reset).
        """
        if not isinstance(self._model, _RecurrentOnnxModel):
            raise ArtifactError(f"{self.kind} is not recurrent; use decide() or action_ids()")
        raw = self.features_array(features)
        masks = None if allowed is None else self._mask_batch(allowed, raw.shape[0])
        ids, new_state = self._model.step(self._normalize(raw), masks, state, episode_start)
        return (ids[:, 0] if self._single_head else ids), new_state

    def normalize(self, features: Any) -> NDArray[np.float32]:
        """The observations the model sees: ``clip(raw / scale, low, high)`` as float32, per row."""
        return self._normalize(self.features_array(features))

    def features_array(self, features: Any) -> NDArray[np.float64]:
        """Checked raw features ``(n, n_features)`` in card order from any accepted batch form."""
        if hasattr(features, "columns") and hasattr(features, "to_numpy"):  # a DataFrame
            columns = [str(c) for c in features.columns]
            if sorted(columns) != sorted(self._names) or len(set(columns)) != len(columns):
                raise FeatureError(self._mismatch(columns))
            values: Any = features[list(self._names)].to_numpy()
        elif isinstance(features, Mapping):
            if set(features) != set(self._names):
                raise FeatureError(self._mismatch(features.keys()))
            values = [np.asarray(features[name]).reshape(-1) for name in self._names]
            if len({v.shape[0] for v in values}) > 1:
                raise FeatureError("feature columns have different lengths; give one value per row in each")
            values = np.stack(values, axis=1) if values else np.zeros((0, self._n))
        elif isinstance(features, Sequence) and features and isinstance(features[0], Mapping):
            for row, item in enumerate(features):
                if (
                    not isinstance(item, Mapping)
                    or len(item) != self._n
                    or not all(n in item for n in self._names)
                ):
                    keys = item.keys() if isinstance(item, Mapping) else ()
                    raise FeatureError(f"row {row}: " + self._mismatch(keys))
            values = [[item[name] for name in self._names] for item in features]
        else:
            values = features
        try:
            raw = np.asarray(values)
        except (TypeError, ValueError, OverflowError) as error:
            raise FeatureError(f"features are not an array of numbers: {str(error)[:200]}") from None
        if raw.ndim == 1 and raw.shape[0] == self._n:
            raw = raw.reshape(1, -1)
        if raw.ndim != 2 or raw.shape[1] != self._n:
            raise FeatureError(
                f"features of shape {raw.shape} given; expected (n, {self._n}) "
                f"in the order {list(self._names)}"
            )
        if raw.dtype.kind not in "biuf":
            # Numbers only, as decide() takes them: strings like "1.5" are refused, not parsed.
            if raw.dtype.kind != "O" or not all(
                isinstance(v, int | float | np.number) and not isinstance(v, str | bytes) for v in raw.flat
            ):
                raise FeatureError(self._bad_values(None, raw))
            try:
                raw = raw.astype(np.float64)
            except (TypeError, ValueError, OverflowError):
                raise FeatureError(self._bad_values(None, raw)) from None
            if raw.dtype.kind == "O":  # pragma: no cover - astype to float64 never returns object
                raise FeatureError(self._bad_values(None, raw))
        raw = raw.astype(np.float64, copy=False)
        if not np.isfinite(raw).all():
            raise FeatureError(self._bad_values(raw, None))
        return raw

    # ---- helpers ----------------------------------------------------------------------------
    def _normalize(self, raw: NDArray[Any]) -> NDArray[np.float32]:
        # float64 division and clip, then float32: the environment's own arithmetic.
        obs = raw.astype(np.float64, copy=False) / self._scales
        np.minimum(obs, self._high, out=obs)
        np.maximum(obs, self._low, out=obs)
        return obs.astype(np.float32)

    def _mismatch(self, given: Collection[Any]) -> str:
        names = [str(g) for g in given]
        missing = [n for n in self._names if n not in names]
        extra = sorted(n for n in set(names) if n not in self._names)
        repeated = sorted({n for n in names if names.count(n) > 1})
        parts = []
        if missing:
            parts.append(f"missing features {missing}")
        if extra:
            parts.append(f"unknown features {extra}")
        if repeated:
            parts.append(f"repeated features {repeated}")
        return (
            f"{'; '.join(parts) or 'features do not match'}: policy {self.name!r} needs exactly "
            f"{list(self._names)} (raw values: days, dollars, counts; see policy_card.json)"
        )

    def _bad_values(self, raw: NDArray[np.float64] | None, values: Any) -> str:
        if raw is None:  # not numbers
            array = np.asarray(values, dtype=object).reshape(-1, self._n)
            for row, column in np.ndindex(array.shape):
                value = array[row, column]
                if isinstance(value, str | bytes) or not isinstance(value, int | float | np.number):
                    return (
                        f"feature {self._names[column]!r} (row {row}) is {value!r}, not a number; "
                        "give finite numbers (raw business values)"
                    )
            return "features are not all numbers; give finite numbers (raw business values)"
        bad = ~np.isfinite(raw)
        rows, columns = np.nonzero(bad)
        row, column = int(rows[0]), int(columns[0])
        return (
            f"feature {self._names[column]!r} is {raw[row, column]!r} (row {row}; "
            f"{int(bad.sum())} non-finite value(s) in all); every feature must be a finite number"
        )

    def _ids_of(self, names: Any, where: str) -> list[int]:
        if isinstance(names, np.ndarray) and names.dtype.kind in "US":
            names = names.reshape(-1).tolist()
        if isinstance(names, str | bytes) or not isinstance(names, Collection) or isinstance(names, Mapping):
            raise FeatureError(
                f"allowed{where} must be a collection of incentive names, got {repr(names)[:80]}"
            )
        if not all(isinstance(n, str) for n in names):
            bad = next(n for n in names if not isinstance(n, str))
            raise FeatureError(f"allowed{where} holds {repr(bad)[:80]}, not an incentive name")
        unknown = sorted(str(n) for n in names if n not in self._action_index)
        if unknown:
            raise FeatureError(
                f"allowed{where} names unknown incentives {unknown}; allowed: {list(self.action_names)}"
            )
        if not names:
            raise FeatureError(
                f"allowed{where} is empty; allow at least one incentive ('none' for no incentive)"
            )
        return [self._action_index[n] for n in names]

    def _mask_one(self, allowed: Collection[str] | Mapping[str, Collection[str]]) -> Masks:
        shape = (1, len(self.heads), len(self.action_names))
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            return self._mask_batch(allowed, 1)
        names = allowed if isinstance(allowed, set | frozenset) else None
        if names and names <= self._action_set:  # the fast path: a set of known names
            row = np.fromiter((a in names for a in self.layout.action_names), dtype=np.bool_, count=shape[2])
            return row.reshape(1, 1, -1) if shape[1] == 1 else np.repeat(row[None, None, :], shape[1], axis=1)
        masks = np.zeros(shape, dtype=np.bool_)
        if isinstance(allowed, Mapping):
            if set(allowed) != set(self.heads):
                raise FeatureError(
                    f"allowed per head must name exactly the heads {list(self.heads)}; got {sorted(allowed)}"
                )
            for h, head in enumerate(self.heads):
                masks[0, h, self._ids_of(allowed[head], f"[{head!r}]")] = True
            return masks
        masks[0, :, self._ids_of(allowed, "")] = True  # checks the names, and names what is wrong
        return masks

    def _mask_batch(self, allowed: Any, n: int) -> Masks:
        shape = (n, len(self.heads), len(self.action_names))
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            if allowed.size != int(np.prod(shape)):
                raise FeatureError(
                    f"allowed mask of shape {allowed.shape} given; "
                    f"expected {shape[::2] if shape[1] == 1 else shape} "
                    f"(rows x incentives {list(self.action_names)})"
                )
            masks = allowed.reshape(shape)
            if not masks.any(axis=2).all():
                raise FeatureError(
                    "every row of the allowed mask must allow at least one incentive ('none' is id 0)"
                )
            return masks
        if (
            isinstance(allowed, Collection)
            and not isinstance(allowed, str)
            and all(isinstance(a, str) for a in allowed)
        ):
            return np.broadcast_to(self._mask_one(allowed), shape)
        if isinstance(allowed, str | bytes | Mapping) or not isinstance(allowed, Collection):
            raise FeatureError(
                f"allowed must be incentive names (one set for all rows or one per row) or a boolean "
                f"array (rows x {len(self.action_names)}), got {repr(allowed)[:80]}"
            )
        rows = list(allowed)
        if len(rows) != n:
            raise FeatureError(
                f"allowed has {len(rows)} rows for {n} decisions; give one set per row or one for all"
            )
        masks = np.zeros(shape, dtype=np.bool_)
        for row, names in enumerate(rows):
            masks[row, :, self._ids_of(names, f"[{row}]")] = True
        return masks


def card_digest(card: Mapping[str, Any]) -> str:
    """SHA-256 of every field of the card except ``integrity``, in canonical JSON.

    Canonical: sorted keys, no whitespace, non-finite floats as ``NaN``/``Infinity`` (as the
    card file writes them). Decisions (features, scales, clip, incentives, heads, the model
    file's hash) and the record a reviewer trusts (evaluation, parity, scenario, training,
    source, versions, export time) are all covered: an edit to any of them is refused.
    This detects accidental and careless edits; it is not a signature (whoever can write the
    directory can recompute it), so serve artifacts from storage only trusted exporters write.
    """
    covered = {key: value for key, value in card.items() if key != INTEGRITY_KEY}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_model(path: Path, limit: int, recorded: Any) -> bytes:
    """The model file's bytes, its size checked against ``limit`` and the card before any is read.

    Hashed and loaded from the same bytes: no swap in between.
    """
    try:
        size = path.stat().st_size
        if size > limit:
            raise ArtifactError(
                f"{path}: {size:,} bytes; a {path.suffix[1:]} model file has at most {limit:,} "
                "(MAX_MODEL_BYTES); not an artifact shopgym exports"
            )
        if size != recorded:
            raise ArtifactError(
                f"{path}: {size:,} bytes, but its card records {str(recorded)[:20]}; the file was changed "
                "or belongs to another export. Re-export it."
            )
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # the file may have grown since stat
    except OSError as error:
        raise ArtifactError(f"{path}: cannot be read: {error.strerror or error}") from None
    if len(data) != size:
        raise ArtifactError(f"{path}: changed while it was read ({len(data):,} of {size:,} bytes)")
    return data


def read_card(path: str | Path) -> dict[str, Any]:
    """The policy card of an artifact directory (or of the card file itself), format-checked."""
    card_path = Path(path)
    if card_path.is_dir():
        card_path = card_path / CARD_FILE
    if not card_path.is_file():
        raise ArtifactError(
            f"{card_path} not found; export the policy first: shopgym export SOURCE --out DIR"
        )
    try:
        if card_path.stat().st_size > MAX_CARD_BYTES:
            raise ArtifactError(f"{card_path} is larger than {MAX_CARD_BYTES:,} bytes; not a policy card")
        card: Any = json.loads(card_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as error:
        raise ArtifactError(f"{card_path} is not a readable JSON policy card: {str(error)[:200]}") from None
    if not isinstance(card, dict):
        raise ArtifactError(f"{card_path}: a policy card is a JSON object, got {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise ArtifactError(
            f"{card_path}: card format {card.get('format')!r} unsupported; this runtime reads {CARD_FORMAT}"
        )
    return card


def load_policy(path: str | Path, threads: int = 1) -> RuntimePolicy:
    """Load an exported policy directory, checking its card against its model file (SHA-256).

    ``threads`` is onnxruntime's intra-op thread count (1: one core per decision, the lowest
    single-decision latency for these small networks).
    """
    card = read_card(path)
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    integrity = card.get("integrity")
    recorded = integrity.get("sha256") if isinstance(integrity, Mapping) else None
    try:
        digest = card_digest(card)
    except (TypeError, ValueError) as error:  # NaN or non-JSON values: never a card export wrote
        raise ArtifactError(f"{directory / CARD_FILE}: card content is not plain JSON: {error}") from None
    if digest != recorded:
        raise ArtifactError(
            f"{directory / CARD_FILE}: its content ({INTEGRITY_COVERS}) does not match its integrity "
            f"sha256 {str(recorded)[:16]}...; the card was edited. Re-export it."
        )
    layout = CardLayout.from_card(card)
    spec = card.get("model")
    if not isinstance(spec, Mapping):
        raise ArtifactError(f"{directory / CARD_FILE}: 'model' must be an object")
    fmt = spec.get("format")
    if not isinstance(fmt, str) or fmt not in MODEL_FILES or spec.get("file") != MODEL_FILES[fmt]:
        raise ArtifactError(
            f"{directory}: card model {fmt!r}/{spec.get('file')!r} unsupported; expected one of "
            f"{[f'{k}/{v}' for k, v in MODEL_FILES.items()]}"
        )
    model_path = directory / MODEL_FILES[fmt]
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing; the card {directory / CARD_FILE} describes it")
    data = _read_model(model_path, MAX_MODEL_BYTES[fmt], spec.get("bytes"))
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.get("sha256"):
        raise ArtifactError(
            f"{model_path} does not match its card: sha256 {digest[:16]}... but the card records "
            f"{str(spec.get('sha256'))[:16]}...; the file was changed or belongs to another export. "
            "Re-export it."
        )
    if fmt == "onnx" and spec.get("recurrent") is not None:
        return RuntimePolicy(card, layout, _RecurrentOnnxModel(data, layout, spec, threads), directory)
    if fmt == "onnx":
        return RuntimePolicy(card, layout, _OnnxModel(data, layout, spec, threads), directory)
    try:
        document = json.loads(data)
        rule = compile_rule(document["decision"], layout)
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        RecursionError,
        OverflowError,
    ) as error:
        raise ArtifactError(
            f"{model_path}: not a decision model this runtime reads: {str(error)[:200]}"
        ) from None
    return RuntimePolicy(card, layout, _RuleModel(rule, layout), directory)
