"""Export a trained policy as a self-contained production artifact: ONNX or JSON, plus a policy card.

A stable-baselines3 model becomes ``policy.onnx``: only the network its deterministic action
needs (PPO, A2C, MaskablePPO: features, actor MLP and ``action_net``, whose argmax is the
mode of the action distribution; DQN: ``q_net``, whose argmax is the greedy action), exported
with ``torch.onnx.export`` (the ``torch.export``-based exporter) following SB3's export guide.
MaskablePPO's graph takes the eligibility mask as a second input and sets masked logits to
``-1e8`` as sb3-contrib's ``MaskableCategorical`` does. Baselines and bandits become
``policy.json``: their deterministic decision model (``greedy_model()``), which
:mod:`policies.rules` evaluates in numpy. ``random`` has no deterministic decision and is
refused.

``policy_card.json`` documents everything a serving team needs: feature names, order, units
and dtypes, the normalization constants, action names (incentive ids) and heads, the scenario
config hash, package versions, the training config and evaluation metrics, the model file's
SHA-256 (the runtime refuses a file that does not match) and the parity check run at export:
the artifact, loaded by :mod:`policies.runtime`, must choose the in-process policy's
deterministic action on every checked observation. No pickle is written anywhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import io
import json
import logging
import platform
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.base import EnvSpec, JsonPolicy, Policy, PolicyFileError
from policies.registry import BUILTIN_KINDS, RL_KINDS, load_policy
from policies.rules import RULES
from policies.runtime import (
    CARD_FILE,
    CARD_FORMAT,
    INTEGRITY_COVERS,
    INTEGRITY_KEY,
    MASK_INPUT,
    MODEL_FILES,
    OBS_INPUT,
    START_INPUT,
    STATE_INPUTS,
    STOCHASTIC_OUTPUT,
    RuntimePolicy,
    card_digest,
)
from policies.runtime import load_policy as load_artifact
from sim.io import atomic_write_bytes, atomic_write_json

#: Scenario a bare saved model is assumed to come from when ``scenario`` is not given.
DEFAULT_SCENARIO = "configs/scenarios/default.yaml"
#: Packages whose versions the card records.
RECORDED_PACKAGES = (
    "shopgym",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "gymnasium",
    "simpy",
)
#: Tolerance of ONNX Runtime's scores against torch's at export (float32 kernels differ slightly).
SCORE_RTOL, SCORE_ATOL = 1e-4, 1e-5
#: Logit value of masked incentives in MaskablePPO's graph (sb3-contrib's ``HUGE_NEG``).
MASKED_LOGIT = -1e8


class ExportError(ValueError):
    """A policy cannot be exported as asked; the message says why and what to do instead."""


@dataclass
class Source:
    """Where a policy comes from: its saved files and what the card records about its training."""

    model_dir: Path
    name: str
    seed: int | None
    scenario_path: str
    scenario_overrides: dict[str, Any]
    scenario_hash: str | None = None
    run_dir: Path | None = None
    variant: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    training_versions: dict[str, Any] | None = None
    git_sha: str | None = None


# ---- the public entry point ---------------------------------------------------------------------
def export_policy(
    source: str | Path,
    out: str | Path,
    *,
    policy: str | None = None,
    seed: int | None = None,
    variant: str | None = None,
    scenario: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    eval_episodes: int = 0,
    check_samples: int = 2000,
) -> Path:
    """Export the policy at ``source`` into the directory ``out``; return the card's path.

    ``source`` is a saved policy directory (what ``policy.save(dir)`` wrote) or a run directory
    of ``shopgym run`` (then ``policy``, ``seed`` and, with several variants, ``variant`` pick
    the model). ``scenario``/``overrides`` name a bare model's training scenario (default
    ``configs/scenarios/default.yaml``); ``eval_episodes`` evaluates a bare model for the card.
    ``check_samples`` observations are checked for parity before anything is written.
    """
    if check_samples < 1:
        raise ExportError(f"check_samples must be >= 1, got {check_samples}")
    found = resolve_source(source, policy, seed, variant, scenario, overrides)
    try:
        loaded = load_policy(found.model_dir)
    except PolicyFileError as error:
        raise ExportError(str(error)) from None
    spec: EnvSpec = loaded.spec  # type: ignore[attr-defined]
    kind = str(getattr(loaded, "kind", "?"))
    scenario_obj = _check_scenario(found, spec)
    if found.scenario_hash is None:
        found.scenario_hash = scenario_obj.config_hash()
    if found.evaluation is None and eval_episodes > 0:
        found.evaluation = _evaluate(loaded, spec, found, eval_episodes)
    if not found.training:
        found.training = _bare_training(loaded, kind)

    if kind in RL_KINDS:
        model_bytes, model_info = export_onnx(loaded, spec)
    else:
        model_bytes, model_info = export_json(loaded, kind)
    fmt = model_info["format"]
    card = build_card(found, spec, kind, model_bytes, model_info)
    _seal_card(card)

    check_obs, check_masks = _check_batch(spec, check_samples)
    with tempfile.TemporaryDirectory(prefix="shopgym-export-") as tmp:
        staging = Path(tmp)
        (staging / MODEL_FILES[fmt]).write_bytes(model_bytes)
        atomic_write_json(card, staging / CARD_FILE)
        artifact = load_artifact(staging)
        card["parity"] = (
            check_recurrent_parity(loaded, artifact, spec, check_samples)
            if kind == "recurrent_ppo"
            else check_parity(loaded, kind, artifact, check_obs, check_masks)
        )
        if fmt == "onnx":
            card["parity"].update(model_info.pop("_score_check"))
    _seal_card(card)  # again: the parity record is covered too

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model_path = target / MODEL_FILES[fmt]
    atomic_write_bytes(model_bytes, model_path)
    atomic_write_json(card, target / CARD_FILE)  # last: a card never points at a missing file
    for other, name in MODEL_FILES.items():
        if other != fmt:
            (target / name).unlink(missing_ok=True)  # a stale model of another format
    return target / CARD_FILE


def _seal_card(card: dict[str, Any]) -> None:
    """Record the card's integrity hash over every other field (:func:`policies.runtime.card_digest`)."""
    card.pop(INTEGRITY_KEY, None)
    card[INTEGRITY_KEY] = {"sha256": card_digest(card), "covers": INTEGRITY_COVERS}


# ---- finding the policy -------------------------------------------------------------------------
def resolve_source(
    source: str | Path,
    policy: str | None = None,
    seed: int | None = None,
    variant: str | None = None,
    scenario: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Source:
    """Locate the saved policy and what the card should record about it (run or bare model)."""
    path = Path(source)
    if path.is_file() and path.name == "policy.json":
        path = path.parent
    if (path / "config.resolved.yaml").is_file():
        return _run_source(path, policy, seed, variant, scenario, overrides)
    if (path / "policy.json").is_file():
        if policy is not None or variant is not None:
            raise ExportError(
                f"{path} is a saved policy, not a run directory; --policy and --variant pick a model in a run"
            )
        meta = _read_json(path / "policy.json")
        if not isinstance(meta, dict):
            raise ExportError(f"{path / 'policy.json'}: expected a JSON object")
        return Source(
            model_dir=path,
            name=str(meta.get("kind", "?")),
            seed=meta.get("seed") if seed is None else seed,
            scenario_path=scenario or DEFAULT_SCENARIO,
            scenario_overrides=dict(overrides or {}),
        )
    raise ExportError(
        f"{path} is neither a saved policy (no policy.json) nor a run directory (no config.resolved.yaml)"
    )


def _run_source(
    run: Path,
    policy: str | None,
    seed: int | None,
    variant: str | None,
    scenario: str | None,
    overrides: Mapping[str, Any] | None,
) -> Source:
    from sim.io import refuse_links
    from sim.params import read_yaml_mapping

    refuse_links(run, "run directory", ExportError)
    config = read_yaml_mapping(run / "config.resolved.yaml", "run config", ExportError)
    saved = _saved_models(run)
    matches = [
        (v, p, s)
        for (v, p, s) in saved
        if (policy is None or p == policy)
        and (seed is None or s == seed)
        and (variant is None or v == variant)
    ]
    if len(matches) != 1:
        choices = ", ".join(
            f"--policy {p} --seed {s}" + (f" --variant {v}" if v is not None else "") for v, p, s in saved
        )
        what = "no saved model matches" if not matches else "several saved models match"
        raise ExportError(f"{run}: {what}; choose one of: {choices or '(none saved under models/)'}")
    chosen_variant, name, chosen_seed = matches[0]
    model_dir = run / "models" / (chosen_variant or "") / name / f"seed{chosen_seed}"

    env = config.get("env") or {}
    scenario_cfg = config.get("scenario")
    if isinstance(scenario_cfg, Mapping):  # {"path": ..., "overrides": ...}
        path_cfg, overrides_cfg = scenario_cfg.get("path"), dict(scenario_cfg.get("overrides") or {})
    else:
        path_cfg, overrides_cfg = scenario_cfg or env.get("scenario"), dict(env.get("overrides") or {})
    variants = [v for v in config.get("variants") or () if isinstance(v, Mapping)]
    # Models saved without a variant folder belong to the run's only variant, if it has one.
    variant_name = chosen_variant or (variants[0].get("name") if len(variants) == 1 else None)
    for item in variants:
        if item.get("name") == variant_name:
            overrides_cfg.update(item.get("overrides") or {})
    meta = _read_json(run / "meta.json") or {}
    hashes = meta.get("scenario_hash")
    scenario_hash = hashes.get(variant_name) if isinstance(hashes, Mapping) else hashes
    arm: dict[str, Any] = next((p for p in config.get("policies") or () if p.get("name") == name), {})
    training = {
        "policy": arm,
        "seed": chosen_seed,
        "variant": chosen_variant,
        "env": {k: v for k, v in env.items() if k not in ("scenario", "overrides")} or None,
        "objective_weights": config.get("objective_weights"),
        "training": config.get("training"),
        "evaluation": config.get("evaluation"),
        "experiment": config.get("name"),
    }
    return Source(
        model_dir=model_dir,
        name=name,
        seed=chosen_seed,
        scenario_path=scenario or str(path_cfg or DEFAULT_SCENARIO),
        scenario_overrides={**overrides_cfg, **dict(overrides or {})},
        scenario_hash=None if scenario or overrides else scenario_hash,
        run_dir=run,
        variant=chosen_variant,
        training={k: v for k, v in training.items() if v is not None},
        evaluation=_run_metrics(run, name, chosen_seed, chosen_variant),
        training_versions=meta.get("versions"),
        git_sha=meta.get("git_sha"),
    )


def _saved_models(run: Path) -> list[tuple[str | None, str, int]]:
    """(variant or None, policy name, seed) of every model saved under ``run/models``."""
    found = []
    models = run / "models"
    for meta in sorted(models.glob("**/seed*/policy.json")):
        parts = meta.parent.relative_to(models).parts
        if len(parts) not in (2, 3) or not parts[-1][4:].isdigit():
            continue
        found.append((parts[0] if len(parts) == 3 else None, parts[-2], int(parts[-1][4:])))
    return found


def _run_metrics(run: Path, name: str, seed: int, variant: str | None) -> dict[str, Any] | None:
    """Mean and standard deviation of every numeric metric of the policy's evaluation episodes."""
    from experiments.runner import load_results

    path = run / "results.parquet"
    if not path.is_file():
        return None
    frame = load_results(run, ExportError)  # checked against the run's record: no forged metrics
    rows = frame[(frame["policy"] == name) & (frame["seed"] == seed)]
    if variant is not None and "variant" in rows:
        rows = rows[rows["variant"] == variant]
    if rows.empty:
        return None
    keys = {"seed", "episode", "episode_seed"}
    numeric = rows[[c for c in rows.select_dtypes("number").columns if c not in keys]]
    return {
        "source": str(path),
        "episodes": len(rows),
        "mean": {k: float(v) for k, v in numeric.mean().items()},
        "std": {k: float(v) for k, v in numeric.std(ddof=1).fillna(0.0).items()},
    }


def _read_json(path: Path) -> Any:
    """A JSON file of a run or saved policy (untrusted: any problem is one ExportError line)."""
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > 64 * 1024 * 1024:
            raise ExportError(f"{path}: larger than 64 MiB; not a file shopgym wrote")
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ExportError(f"{path}: not readable JSON: {str(error)[:200]}") from None


def _check_scenario(found: Source, spec: EnvSpec) -> Any:
    """The training scenario, after checking it offers the incentives the policy chooses among."""
    from sim.envs.common import resolve_scenario

    scenario = resolve_scenario(found.scenario_path, found.scenario_overrides)
    names = tuple(i.name for i in scenario.incentives)
    if names != spec.action_names:
        raise ExportError(
            f"scenario {found.scenario_path} offers incentives {list(names)}, but the policy chooses among "
            f"{list(spec.action_names)}; pass the scenario it was trained on (--scenario, --set)"
        )
    return scenario


def _bare_training(policy: Policy, kind: str) -> dict[str, Any]:
    """What a saved model itself says about its training: kind, seed, arguments, timesteps."""
    training: dict[str, Any] = {
        "policy": {"kind": kind, "kwargs": getattr(policy, "params", {})},
        "seed": getattr(policy, "seed", None),
    }
    model = getattr(policy, "model", None)
    if model is not None:
        training["total_timesteps"] = int(model.num_timesteps)
    return training


def _evaluate(policy: Policy, spec: EnvSpec, found: Source, episodes: int) -> dict[str, Any]:
    """Evaluate a bare model greedily for the card (episode ``k`` seeded ``k``)."""
    import gymnasium as gym
    import pandas as pd

    import sim  # noqa: F401 (registers the environments)
    from policies.evaluate import evaluate

    env = gym.make(spec.env_id, scenario=found.scenario_path, overrides=found.scenario_overrides)
    records = evaluate(policy, env, episodes, seed=0, learn=False, deterministic=True)
    env.close()
    rows = pd.DataFrame([r.row for r in records])
    numeric = rows[[c for c in rows.select_dtypes("number").columns if c not in ("episode", "episode_seed")]]
    return {
        "source": f"shopgym export --eval-episodes {episodes} (seeds 0..{episodes - 1}, deterministic)",
        "episodes": episodes,
        "mean": {k: float(v) for k, v in numeric.mean().items()},
        "std": {k: float(v) for k, v in numeric.std(ddof=1).fillna(0.0).items()},
    }


# ---- model files ----------------------------------------------------------------------------------
def export_json(policy: Policy, kind: str) -> tuple[bytes, dict[str, Any]]:
    """A baseline's, bandit's or plugin's deterministic decision model as ``policy.json`` bytes."""
    greedy = getattr(policy, "greedy_model", None)
    if kind not in BUILTIN_KINDS:  # a plugin: its decision model is compiled by the runtime at parity
        if not callable(greedy):
            raise ExportError(
                f"policy kind {kind!r} is a plugin that does not implement the export protocol: a "
                "greedy_model() method returning a decision model of policies.rules (rules "
                f"{list(RULES)}), which the runtime serves in numpy; see docs/POLICIES.md"
            )
    elif not isinstance(policy, JsonPolicy) or greedy is None:
        raise ExportError(
            f"policy {kind!r} has no deterministic decision to export (it draws among the allowed "
            "incentives at random); export a baseline (none, blanket, segment_rules, ltv_coupon), "
            "a bandit or an RL model"
        )
    decision = greedy()
    document = {"format": 1, "kind": kind, "decision": decision}
    text = json.dumps(document, indent=2, allow_nan=True) + "\n"
    return text.encode(), {"format": "json", "rule": decision["rule"], "mask": "rule"}


class _ActorLogits:
    """Factory of the torch modules to export (built lazily: torch is imported only here)."""

    @staticmethod
    def build(model: Any, masked: bool, n_heads: int) -> Any:
        import torch

        class ActorLogits(torch.nn.Module):
            """Logits of the action distribution (the mode is their argmax), masked like sb3-contrib."""

            def __init__(self) -> None:
                super().__init__()
                self.policy = model.policy

            def forward(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
                features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
                logits = self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))
                if action_mask is not None:
                    logits = torch.where(action_mask, logits, torch.full_like(logits, MASKED_LOGIT))
                # Normalized as torch.distributions.Categorical does (per head), so near-ties round alike.
                heads = logits.reshape(logits.shape[0], n_heads, -1)
                return (heads - heads.logsumexp(dim=-1, keepdim=True)).reshape(logits.shape)

        class QValues(torch.nn.Module):
            """DQN's Q-values (the greedy action is their argmax)."""

            def __init__(self) -> None:
                super().__init__()
                self.q_net = model.policy.q_net

            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                return self.q_net(obs)

        class QuantileMeans(torch.nn.Module):
            """QR-DQN's Q-values: the mean of each incentive's quantiles (the greedy action's argmax)."""

            def __init__(self) -> None:
                super().__init__()
                self.quantile_net = model.policy.quantile_net

            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                return self.quantile_net(obs).mean(dim=1)

        class ArsScores(torch.nn.Module):
            """ARS's action scores (its deterministic action is their argmax)."""

            def __init__(self) -> None:
                super().__init__()
                self.policy = model.policy

            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                features = self.policy.extract_features(obs, self.policy.features_extractor)
                return self.policy.action_net(features)

        if hasattr(model.policy, "q_net"):
            return QValues().eval()
        if hasattr(model.policy, "quantile_net"):
            return QuantileMeans().eval()
        if not hasattr(model.policy, "mlp_extractor"):  # ARS
            return ArsScores().eval()
        return ActorLogits().eval()


def export_onnx(policy: Policy, spec: EnvSpec) -> tuple[bytes, dict[str, Any]]:
    """The network behind an SB3 model's deterministic action as ONNX bytes, checked against torch."""
    import onnx
    import torch
    from gymnasium import spaces

    model = policy.model  # type: ignore[attr-defined]
    kind = policy.kind  # type: ignore[attr-defined]
    space = model.action_space
    if isinstance(space, spaces.MultiDiscrete) and len(set(int(n) for n in space.nvec)) != 1:
        raise ExportError(
            f"{kind}: MultiDiscrete heads of different sizes {list(space.nvec)} are not supported"
        )
    if not isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        raise ExportError(f"{kind}: action space {space} is not Discrete or MultiDiscrete")
    if kind == "recurrent_ppo":
        return export_recurrent_onnx(policy, spec)
    masked = kind == "maskable_ppo"
    module = _ActorLogits.build(model, masked, len(spec.heads))
    output = {"dqn": "q_values", "qrdqn": "q_values", "ars": "scores"}.get(kind, STOCHASTIC_OUTPUT)
    n_fields, width = len(spec.obs_fields), len(spec.heads) * spec.n_actions
    example_obs = torch.zeros((2, n_fields), dtype=torch.float32)
    batch = torch.export.Dim("batch")
    if masked:
        args: tuple[Any, ...] = (example_obs, torch.ones((2, width), dtype=torch.bool))
        names, shapes = [OBS_INPUT, MASK_INPUT], {"obs": {0: batch}, "action_mask": {0: batch}}
    else:
        args, names, shapes = (example_obs,), [OBS_INPUT], {"obs": {0: batch}}
    with _quiet():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=names,
            output_names=[output],
            dynamic_shapes=shapes,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"shopgym.kind": kind, "shopgym.env_id": spec.env_id})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    info: dict[str, Any] = {
        "format": "onnx",
        "inputs": {
            OBS_INPUT: {"dtype": "float32", "shape": ["batch", n_fields]},
            **({MASK_INPUT: {"dtype": "bool", "shape": ["batch", width]}} if masked else {}),
        },
        "output": {"name": output, "dtype": "float32", "shape": ["batch", width]},
        "mask": "input" if masked else "after",
        "decision": {
            "dqn": "argmax of the Q-values over allowed incentives",
            "qrdqn": "argmax of the mean of each incentive's quantiles over allowed incentives",
            "ars": "argmax of the linear (or MLP) policy's action scores over allowed incentives",
        }.get(
            kind, "argmax of the action distribution's log-probabilities over allowed incentives, per head"
        ),
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "producer": f"{proto.producer_name} {proto.producer_version}",
    }
    info["_score_check"] = _score_check(module, data, spec, masked)
    return data, info


def _recurrent_module(model: Any) -> Any:
    """RecurrentPPO's actor for one step: the LSTM written out gate by gate (exporter-friendly).

    As sb3-contrib's ``_process_sequence`` for a sequence of length 1: the state is zeroed where
    ``episode_start`` is 1, then the actor LSTM, the actor MLP and ``action_net``.
    """
    import torch

    policy = model.policy

    class RecurrentActor(torch.nn.Module):
        """Normalized log-probabilities and the next LSTM state for one decision per journey."""

        def __init__(self) -> None:
            super().__init__()
            self.policy = policy
            self.lstm = policy.lstm_actor

        def forward(
            self, obs: torch.Tensor, state_h: torch.Tensor, state_c: torch.Tensor, episode_start: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            keep = (1.0 - episode_start).reshape(1, -1, 1)
            h_all, c_all = state_h * keep, state_c * keep
            x = self.policy.extract_features(obs, self.policy.pi_features_extractor)
            hs, cs = [], []
            for layer in range(self.lstm.num_layers):
                gates = (
                    x @ getattr(self.lstm, f"weight_ih_l{layer}").T
                    + getattr(self.lstm, f"bias_ih_l{layer}")
                    + h_all[layer] @ getattr(self.lstm, f"weight_hh_l{layer}").T
                    + getattr(self.lstm, f"bias_hh_l{layer}")
                )
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c_all[layer] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
                cs.append(c)
                x = h
            logits = self.policy.action_net(self.policy.mlp_extractor.forward_actor(x))
            return logits - logits.logsumexp(dim=-1, keepdim=True), torch.stack(hs), torch.stack(cs)

    return RecurrentActor().eval()


def export_recurrent_onnx(policy: Policy, spec: EnvSpec) -> tuple[bytes, dict[str, Any]]:
    """RecurrentPPO's acting network as ONNX with the LSTM state as inputs and outputs, checked."""
    import onnx
    import onnxruntime as ort
    import torch

    model = policy.model  # type: ignore[attr-defined]
    if len(spec.heads) != 1:
        raise ExportError("recurrent_ppo: only one-incentive-per-decision envs are exported")
    module = _recurrent_module(model)
    layers, hidden = model.policy.lstm_actor.num_layers, model.policy.lstm_actor.hidden_size
    n_fields = len(spec.obs_fields)
    example = (
        torch.zeros((2, n_fields)),
        torch.zeros((layers, 2, hidden)),
        torch.zeros((layers, 2, hidden)),
        torch.ones(2),
    )
    batch = torch.export.Dim("batch")
    names = [OBS_INPUT, *STATE_INPUTS, START_INPUT]
    shapes = {"obs": {0: batch}, "state_h": {1: batch}, "state_c": {1: batch}, "episode_start": {0: batch}}
    with _quiet():
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            input_names=names,
            output_names=[STOCHASTIC_OUTPUT, "state_h_out", "state_c_out"],
            dynamic_shapes=shapes,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"shopgym.kind": "recurrent_ppo", "shopgym.env_id": spec.env_id})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    # Scores and states of onnxruntime against torch on random inputs, before anything is written.
    rng = np.random.default_rng(1)
    obs, _ = _check_batch(spec, 500, seed=1)
    inputs = (
        obs,
        rng.normal(0, 0.5, (layers, 500, hidden)).astype(np.float32),
        rng.normal(0, 0.5, (layers, 500, hidden)).astype(np.float32),
        (rng.random(500) < 0.3).astype(np.float32),
    )
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, dict(zip(names, inputs, strict=True)))
    with torch.no_grad():
        want = [t.numpy() for t in module(*(torch.as_tensor(a) for a in inputs))]
    difference = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    if not all(np.allclose(g, w, rtol=SCORE_RTOL, atol=SCORE_ATOL) for g, w in zip(got, want, strict=True)):
        raise ExportError(
            f"onnxruntime's scores or LSTM states differ from torch's by up to {difference:.3g}; "
            "the export is wrong, nothing was written"
        )
    info: dict[str, Any] = {
        "format": "onnx",
        "inputs": {
            OBS_INPUT: {"dtype": "float32", "shape": ["batch", n_fields]},
            "state_h": {"dtype": "float32", "shape": [layers, "batch", hidden]},
            "state_c": {"dtype": "float32", "shape": [layers, "batch", hidden]},
            START_INPUT: {"dtype": "float32", "shape": ["batch"], "note": "1 at a journey's first decision"},
        },
        "output": {"name": STOCHASTIC_OUTPUT, "dtype": "float32", "shape": ["batch", spec.n_actions]},
        "state_outputs": ["state_h_out", "state_c_out"],
        "recurrent": {"layers": layers, "hidden": hidden},
        "mask": "after",
        "decision": "argmax of the log-probabilities over allowed incentives; carry the returned state "
        "to the journey's next decision (RuntimePolicy.step)",
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "producer": f"{proto.producer_name} {proto.producer_version}",
        "_score_check": {"score_samples": 500, "max_abs_score_difference": difference},
    }
    return data, info


def check_recurrent_parity(
    policy: Policy, artifact: RuntimePolicy, spec: EnvSpec, samples: int
) -> dict[str, Any]:
    """Run journeys step by step through the in-process policy and the artifact, each carrying its state.

    Journeys start together and restart at random (``episode_start``), so the state's reset is
    checked too. As in :func:`check_parity`, a choice may differ only on a float32 tie.
    """
    import torch

    journeys = 50
    steps = max(1, samples // journeys)
    obs, _ = _check_batch(spec, journeys * steps, seed=2)
    obs = obs.reshape(steps, journeys, -1)
    starts = np.random.default_rng(3).random((steps, journeys)) < 0.05
    starts[0] = True
    scales = np.asarray(artifact.layout.obs_scales, dtype=np.float64)
    state_in: Any = None
    state_rt = artifact.initial_state(journeys)
    module = _recurrent_module(policy.model)  # type: ignore[attr-defined]
    differ = ties = 0
    for t in range(steps):
        previous = state_in
        with _torch_threads():
            want, state_in = policy.predict(
                obs[t], state=state_in, episode_start=starts[t], deterministic=True
            )
        got, state_rt = artifact.step(obs[t].astype(np.float64) * scales, state_rt, starts[t])
        bad = np.flatnonzero(np.asarray(want) != got)
        if bad.size:
            zeros = np.zeros_like(state_rt[0])
            h, c = (zeros, zeros) if previous is None else previous
            with torch.no_grad():
                scores = module(
                    torch.as_tensor(obs[t]),
                    torch.as_tensor(h, dtype=torch.float32),
                    torch.as_tensor(c, dtype=torch.float32),
                    torch.as_tensor(starts[t], dtype=torch.float32),
                )[0].numpy()
            best, chosen = scores[bad, np.asarray(want)[bad]], scores[bad, got[bad]]
            tie = chosen >= best - 2 * np.spacing(np.abs(best).astype(np.float32))
            if not tie.all():
                raise ExportError(
                    f"recurrent_ppo: the exported artifact chose differently from the in-process policy at "
                    f"step {t} of {int((~tie).sum())} journeys; nothing was written"
                )
            differ += bad.size
            ties += int(tie.sum())
    total = steps * journeys
    return {
        "samples": total,
        "journeys": journeys,
        "steps_per_journey": steps,
        "masked": False,
        "agreement": 1.0 - differ / total,
        "float32_ties": ties,
    }


def _score_check(module: Any, data: bytes, spec: EnvSpec, masked: bool) -> dict[str, Any]:
    """ONNX Runtime's scores against torch's on random observations; an error if they differ."""
    import onnxruntime as ort
    import torch

    obs, masks = _check_batch(spec, 1000, seed=1)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    flat_masks = masks.reshape(obs.shape[0], -1)
    feeds: dict[str, NDArray[Any]] = {OBS_INPUT: obs}
    if masked:
        feeds[MASK_INPUT] = flat_masks
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        tensors = [torch.as_tensor(obs)] + ([torch.as_tensor(flat_masks)] if masked else [])
        want = module(*tensors).numpy()
    difference = float(np.max(np.abs(got - want)))
    if not np.allclose(got, want, rtol=SCORE_RTOL, atol=SCORE_ATOL):
        raise ExportError(
            f"onnxruntime's scores differ from torch's by up to {difference:.3g} on random observations "
            f"(tolerance rtol={SCORE_RTOL}, atol={SCORE_ATOL}); the export is wrong, nothing was written"
        )
    return {"score_samples": int(obs.shape[0]), "max_abs_score_difference": difference}


# ---- checks -------------------------------------------------------------------------------------
def _check_batch(spec: EnvSpec, n: int, seed: int = 0) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Observations over the whole box and its busy low end, and masks always allowing ``none``."""
    rng = np.random.default_rng(seed)
    low, high = spec.obs_clip
    d = len(spec.obs_fields)
    obs = np.where(
        rng.random((n, 1)) < 0.5,
        rng.uniform(low, high, (n, d)),
        rng.uniform(low, min(high, low + 2.0), (n, d)),
    ).astype(np.float32)
    masks = rng.random((n, len(spec.heads), spec.n_actions)) < 0.6
    masks[:, :, 0] = True
    return obs, masks


def check_parity(
    policy: Policy,
    kind: str,
    artifact: RuntimePolicy,
    obs: NDArray[np.float32],
    masks: NDArray[np.bool_],
) -> dict[str, Any]:
    """Compare the artifact's decisions with the in-process policy's; an error on any real difference.

    The artifact is fed raw features (``obs x scale``), so its normalization is checked too.
    SB3 models other than MaskablePPO ignore masks in process; they are compared unmasked. A
    network's choice may differ only where its best scores tie in float32 (see
    :func:`float32_ties`): torch and onnxruntime round differently in the last bit there.
    """
    scales = np.asarray(artifact.layout.obs_scales, dtype=np.float64)
    raw = obs.astype(np.float64) * scales
    masked = kind not in RL_KINDS or kind == "maskable_ppo"
    flat = masks[:, 0, :] if len(artifact.heads) == 1 else masks
    with _torch_threads():
        want, _ = policy.predict(obs, deterministic=True, action_masks=flat if masked else None)
    got = artifact.action_ids(raw, flat if masked else None)
    want = np.asarray(want).reshape(got.shape)
    differ = np.flatnonzero(np.any((want != got).reshape(len(got), -1), axis=1))
    ties = float32_ties(policy, obs[differ], flat[differ] if masked else None, want[differ], got[differ])
    real = differ[~ties]
    if real.size:
        first = int(real[0])
        raise ExportError(
            f"{kind}: the exported artifact chose differently from the in-process policy on "
            f"{real.size} of {len(got)} observations (first: row {first}, {want[first]} vs {got[first]}); "
            "nothing was written"
        )
    return {
        "samples": len(got),
        "masked": masked,
        "agreement": 1.0 - differ.size / len(got),
        "float32_ties": int(differ.size),
    }


def float32_ties(
    policy: Policy,
    obs: NDArray[np.float32],
    masks: NDArray[np.bool_] | None,
    want: NDArray[np.int64],
    got: NDArray[np.int64],
) -> NDArray[np.bool_]:
    """Per row, whether the artifact's choice scores within 2 float32 ulps of the in-process choice.

    Scores are the in-process network's: the action distribution's normalized logits (SB3 takes
    the argmax of their softmax) or DQN's Q-values. JSON policies compute with the very same
    numpy code in process and in the runtime, so for them no difference is ever a tie.
    """
    model = getattr(policy, "model", None)
    if len(obs) == 0 or model is None:
        return np.zeros(len(obs), dtype=np.bool_)
    import torch

    with torch.no_grad(), _torch_threads():
        tensor = torch.as_tensor(obs)
        if hasattr(policy, "scores") and masks is None:
            scores = policy.scores(tensor)
        elif hasattr(model.policy, "q_net"):
            scores = model.policy.q_net(tensor)
        else:
            extra = {} if masks is None else {"action_masks": masks}
            distribution = model.policy.get_distribution(tensor, **extra).distribution
            parts = distribution if isinstance(distribution, list) else [distribution]
            scores = torch.cat([part.logits for part in parts], dim=1)
    want_2d, got_2d = want.reshape(len(obs), -1), got.reshape(len(obs), -1)
    values = scores.numpy().reshape(len(obs), want_2d.shape[1], -1)  # (n, heads, n_actions)
    rows, heads = np.arange(len(obs))[:, None], np.arange(values.shape[1])[None, :]
    best, chosen = values[rows, heads, want_2d], values[rows, heads, got_2d]
    tolerance = 2 * np.spacing(np.abs(best).astype(np.float32))
    return np.all(chosen >= best - tolerance, axis=1)


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """One torch thread for in-process SB3 decisions, when torch is loaded (as in training)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, warnings and optional-dependency notes."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# ---- the card -----------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    """Installed versions of the packages an artifact was made with (and Python's)."""
    found = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _units(env_id: str) -> dict[str, str]:
    """Each observation field's unit, from the environment module's ``OBS_FIELDS``."""
    try:
        import gymnasium as gym

        import sim  # noqa: F401 (registers the environments)

        entry = str(gym.spec(env_id).entry_point)
        module = importlib.import_module(entry.split(":")[0])
        return {name: unit for name, unit, *_ in module.OBS_FIELDS}
    except Exception:  # an unknown or foreign env: the card then lists no units
        return {}


def build_card(
    found: Source, spec: EnvSpec, kind: str, model_bytes: bytes, model_info: Mapping[str, Any]
) -> dict[str, Any]:
    """The policy card: everything needed to serve, audit and reproduce the artifact."""
    units = _units(spec.env_id)
    fmt = model_info["format"]
    return {
        "format": CARD_FORMAT,
        "policy": {"name": found.name, "kind": kind, "seed": found.seed, "deterministic": True},
        "env_id": spec.env_id,
        "features": [
            {"name": name, "unit": units.get(name, ""), "dtype": "float64", "scale": scale}
            for name, scale in zip(spec.obs_fields, spec.obs_scales, strict=True)
        ],
        "normalization": {
            "formula": "obs = float32(clip(raw / scale, clip[0], clip[1])), per feature in card order",
            "clip": list(spec.obs_clip),
            "raw_dtype": "float64",
            "model_dtype": "float32",
        },
        "actions": {
            "names": list(spec.action_names),
            "kinds": list(spec.action_kinds),
            "values": list(spec.action_values),
            "heads": list(spec.heads),
            "note": "ids index names; 0 is 'none'. One incentive per head (per shopper, or per segment).",
        },
        "model": {
            "file": MODEL_FILES[fmt],
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "bytes": len(model_bytes),
            **{k: v for k, v in model_info.items() if not k.startswith("_")},
        },
        "runtime_requires": ["numpy", "onnxruntime"] if fmt == "onnx" else ["numpy"],
        "scenario": {
            "config_hash": found.scenario_hash,
            "path": found.scenario_path,
            "overrides": found.scenario_overrides,
        },
        "training": found.training,
        "evaluation": found.evaluation,
        "versions": {"export": package_versions(), "training": found.training_versions},
        "source": {
            "model_dir": str(found.model_dir),
            "run_dir": None if found.run_dir is None else str(found.run_dir),
            "variant": found.variant,
            "git_sha": found.git_sha,
        },
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
