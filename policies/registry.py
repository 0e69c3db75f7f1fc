"""Every policy kind by name: one factory to build them and one loader to read them back.

Kinds resolve lazily ("module:Class"), so using a baseline never imports torch or SB3.
Besides the built-in kinds, researchers' own kinds come from installed packages' entry
points or ``register_policy`` (:mod:`policies.plugins`, protocol in ``docs/POLICIES.md``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym

from policies.base import EnvSpec, JsonPolicy, Policy, PolicyFileError, check_seal, env_spec

#: JSON-saved policies (baselines and bandits) by kind.
JSON_POLICIES: dict[str, str] = {
    "none": "policies.baselines:NoIncentive",
    "random": "policies.baselines:RandomIncentive",
    "blanket": "policies.baselines:Blanket",
    "segment_rules": "policies.baselines:SegmentRules",
    "ltv_coupon": "policies.baselines:LtvCoupon",
    "onboarding": "policies.baselines:Onboarding",
    "epsilon_greedy": "policies.bandits:EpsilonGreedy",
    "ucb1": "policies.bandits:UCB1",
    "thompson": "policies.bandits:ThompsonSampling",
    "lin_ucb": "policies.bandits:LinUCB",
    "lin_thompson": "policies.bandits:LinearThompson",
    "uplift": "policies.uplift:UpliftLearner",
}
#: Policies that learn online from ``update`` (trained over episodes before evaluation).
ONLINE_KINDS = ("epsilon_greedy", "ucb1", "thompson", "lin_ucb", "lin_thompson", "uplift")
#: Reinforcement-learning kinds (stable-baselines3 and sb3-contrib), trained by ``learn``.
RL_KINDS = ("ppo", "a2c", "dqn", "maskable_ppo", "qrdqn", "trpo", "ars", "recurrent_ppo")
#: Privileged kinds: read the simulator's hidden state (a measuring stick, never exported).
ORACLE_KINDS = ("oracle", "oracle_rollout", "oracle_plan")
POLICY_KINDS = (*JSON_POLICIES, *RL_KINDS, *ORACLE_KINDS)
#: The kinds shopgym ships (plugins may not take these names).
BUILTIN_KINDS = POLICY_KINDS
#: Largest ``policy.json`` read (bandit state for many incentives and features stays far below).
MAX_POLICY_FILE_BYTES = 64 * 1024 * 1024


def json_policy_class(kind: str) -> type[JsonPolicy]:
    """The class of a JSON-saved policy kind."""
    if kind not in JSON_POLICIES:
        from policies.plugins import unknown_kind_message

        raise ValueError(unknown_kind_message(kind))
    module, name = JSON_POLICIES[kind].split(":")
    cls: type[JsonPolicy] = getattr(importlib.import_module(module), name)
    return cls


def is_known_kind(kind: str) -> bool:
    """Whether ``kind`` is built in or registered (an entry point is named, not imported, here)."""
    from policies.plugins import plugin_kinds

    return kind in BUILTIN_KINDS or kind in plugin_kinds()


def plugin_training(kind: str) -> str | None:
    """How a plugin kind trains (``none``, ``episodes``, ``timesteps``); ``None`` for built-in kinds."""
    if kind in BUILTIN_KINDS:
        return None
    from policies.plugins import get_plugin, unknown_kind_message

    plugin = get_plugin(kind)
    if plugin is None:
        raise ValueError(unknown_kind_message(kind))
    return plugin.training


def reproducible_kind(kind: str) -> bool:
    """Whether a kind's results repeat bit for bit for a seed (SB3 training does so only per machine)."""
    if kind in BUILTIN_KINDS:
        return kind not in RL_KINDS
    from policies.plugins import get_plugin

    plugin = get_plugin(kind)
    return plugin is not None and plugin.reproducible


def make_policy(
    kind: str,
    env: gym.Env[Any, Any] | EnvSpec,
    seed: int = 0,
    tensorboard_log: str | Path | None = None,
    **kwargs: Any,
) -> Policy:
    """A new policy of ``kind`` for ``env``; ``kwargs`` are its constructor arguments.

    RL kinds and plugin kinds need the environment itself (they train in it or read it); the
    others only its spec.
    """
    if kind not in BUILTIN_KINDS:
        from policies.plugins import get_plugin, unknown_kind_message

        plugin = get_plugin(kind)
        if plugin is None:
            raise ValueError(unknown_kind_message(kind))
        if isinstance(env, EnvSpec):
            raise ValueError(f"policy kind {kind!r} is a plugin; its factory receives the env, not its spec")
        policy: Policy = plugin.factory(env, seed, **kwargs)
        return policy
    if kind in RL_KINDS:
        if isinstance(env, EnvSpec):
            raise ValueError(f"{kind} trains in an environment; pass the env, not its spec")
        from policies.rl import make_sb3

        return make_sb3(kind, env, seed, tensorboard_log=tensorboard_log, **kwargs)
    if kind in ORACLE_KINDS:
        if isinstance(env, EnvSpec):
            raise ValueError("kind oracle reads the live environment; pass the env, not its spec")
        if kind == "oracle_rollout":
            from policies.oracle import RolloutOracle

            unknown = sorted(set(kwargs) - {"replicates"})
            if unknown:
                raise ValueError(f"policy 'oracle_rollout' takes only replicates, got {unknown}")
            return RolloutOracle(env, seed, **kwargs)
        if kind == "oracle_plan":
            from policies.oracle import PlanOracle

            unknown = sorted(set(kwargs) - {"replicates", "sweeps"})
            if unknown:
                raise ValueError(f"policy 'oracle_plan' takes only replicates and sweeps, got {unknown}")
            return PlanOracle(env, seed, **kwargs)
        if kwargs:
            raise ValueError(f"policy 'oracle' takes no arguments, got {sorted(kwargs)}")
        from policies.oracle import Oracle

        return Oracle(env, seed)
    spec = env if isinstance(env, EnvSpec) else env_spec(env)
    cls = json_policy_class(kind)
    try:
        return cls(spec, seed, **kwargs)
    except TypeError as error:
        raise ValueError(f"policy {kind!r}: bad arguments {sorted(kwargs)}: {error}") from error


def load_policy(path: str | Path, env: gym.Env[Any, Any] | None = None) -> Policy:
    """Read a policy saved with ``policy.save(path)`` (a directory holding ``policy.json``).

    The file is untrusted: its content hash (``content_sha256``) must match, nothing in it is
    unpickled or imported, its environment must be a registered ``shopgym/`` id and any file it
    names must lie in its own directory. Every
    problem raises :class:`PolicyFileError` (a ``ValueError``) with one line naming it.
    """
    directory = Path(path)
    meta_path = directory / "policy.json" if directory.is_dir() else directory
    try:
        size = meta_path.stat().st_size
        if size > MAX_POLICY_FILE_BYTES:
            raise PolicyFileError(
                f"{meta_path}: {size:,} bytes; a policy file has at most {MAX_POLICY_FILE_BYTES:,}"
            )
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PolicyFileError(f"{meta_path}: not a readable policy file: {str(error)[:200]}") from None
    if not isinstance(meta, dict):
        raise PolicyFileError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if kind in ORACLE_KINDS:
        from policies.oracle import NOT_EXPORTABLE

        raise PolicyFileError(f"{meta_path}: {NOT_EXPORTABLE}")
    if kind in RL_KINDS:
        from policies.rl import load_sb3

        return load_sb3(check_seal(meta, meta_path), meta_path.parent, env)
    if kind not in JSON_POLICIES:
        from policies.plugins import PluginError, get_plugin, unknown_kind_message

        plugin = get_plugin(kind) if isinstance(kind, str) and kind not in BUILTIN_KINDS else None
        if plugin is None:
            raise PolicyFileError(f"{meta_path}: {unknown_kind_message(kind)}")
        try:
            loaded: Policy = plugin.load(meta_path.parent, env)
        except PolicyFileError:
            raise
        except (PluginError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise PolicyFileError(f"{meta_path}: malformed {kind} policy: {str(error)[:200]}") from None
        return loaded
    content = check_seal(meta, meta_path)  # an edited file is refused before any of it is used
    try:
        return json_policy_class(kind).from_dict(content)
    except PolicyFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise PolicyFileError(f"{meta_path}: malformed {kind} policy: {str(error)[:200]}") from None
