"""Experiment configs: a strictly validated YAML schema, checked completely before any work starts.

An experiment compares policies (and optionally scenario variants) on one environment over
several seeds. Everything a run needs is in the file, so a config plus the package version
reproduces a results table. Loading validates the schema (unknown keys, types, ranges), then
resolves every scenario variant, builds the environment once and constructs every policy, so
a typo in a hyperparameter fails at load, with the field path, the value and what is allowed,
not an hour into training.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.envs import ENV_IDS
from sim.envs.common import MAX_OBJECTIVE_WEIGHT, OBJECTIVES
from sim.params import ScenarioError, format_validation_errors, read_yaml_mapping


class ConfigError(ValueError):
    """An experiment config is invalid; the message names the field, the value and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


#: Upper bounds of environment constructor arguments (the environments check the lower ones).
ENV_KWARG_LIMITS: dict[str, float] = {
    "horizon_days": 36_500,
    "attribution_days": 3650.0,
    "incentive_budget": 1e12,
    "reward_scale": 1e6,
    "neighbour_signal": 1e6,
    "new_days": 36_500.0,
    "at_risk_days": 36_500.0,
    "high_value": 1e9,
    "low_value": 1e9,
}


def plain_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse NaN, infinities, nesting deeper than 8 and non-JSON values, naming the field."""
    if depth > 8:
        raise ValueError(f"{where}: nested deeper than 8 levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} not allowed; finite numbers only")
    if isinstance(value, Mapping):
        for key, item in value.items():
            plain_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            plain_json(item, f"{where}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


# At least one non-dot character: "." and ".." would resolve outside the run directory.
_NAME_PATTERN = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=_NAME_PATTERN, min_length=1, max_length=64)]


class EnvConfig(_Model):
    """Which environment, on which scenario, with which constructor arguments."""

    id: str = Field(description=f"a registered environment id: one of {list(ENV_IDS)}")
    scenario: str = Field(description="scenario YAML path, relative to the project or the working directory")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted scenario overrides")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="environment constructor arguments")

    @field_validator("id")
    @classmethod
    def _known_env(cls, value: str) -> str:
        if value not in ENV_IDS:
            raise ValueError(f"unknown environment {value!r}; allowed: {list(ENV_IDS)}")
        return value

    @field_validator("kwargs")
    @classmethod
    def _no_shadowing(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        taken = {"scenario", "overrides", "objective_weights"} & set(value)
        if taken:
            raise ValueError(f"{sorted(taken)} are set by env.scenario, env.overrides and objective_weights")
        plain_json(value, "kwargs")
        check_env_kwargs(str(info.data.get("id")), value)
        return value

    @field_validator("overrides")
    @classmethod
    def _finite_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        plain_json(value, "overrides")
        return value


class VariantConfig(_Model):
    """A named set of scenario overrides compared as its own arm (e.g. streak rules)."""

    name: Name
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _finite_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        plain_json(value, "overrides")
        return value


class PolicyConfig(_Model):
    """One policy arm: a kind (built in, or a registered plugin: ``docs/POLICIES.md``) and its kwargs."""

    name: Name
    kind: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    variants: tuple[str, ...] | None = Field(
        default=None, min_length=1, description="run only on these variants (default: every variant)"
    )

    @field_validator("kwargs")
    @classmethod
    def _finite_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        plain_json(value, "kwargs")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from policies.plugins import unknown_kind_message
        from policies.registry import is_known_kind

        if not is_known_kind(value):
            raise ValueError(unknown_kind_message(value))
        return value


class ComparisonConfig(_Model):
    """Two cells paired episode by episode (same seeds, same shoppers): ``policy`` minus ``against``.

    The cells may lie in different variants (the same policy under two streak rules); where the
    variants change only mechanisms, their shoppers and draws are the same, so the pairing holds.
    """

    name: Name
    policy: str
    against: str
    variant: str | None = Field(default=None, description="the policy's variant (default: the first)")
    against_variant: str | None = Field(default=None, description="default: the policy's variant")


class TrainingConfig(_Model):
    """How much each learner trains before evaluation."""

    timesteps: Annotated[int, Field(ge=0)] = Field(default=0, description="RL environment steps")
    episodes: Annotated[int, Field(ge=0)] = Field(
        default=0, description="episodes bandits learn in before evaluation (fixed policies skip it)"
    )


class EvaluationConfig(_Model):
    """How each trained policy is evaluated (the same episode seeds for every policy)."""

    episodes: Annotated[int, Field(ge=1)] = 5
    deterministic: bool = Field(default=True, description="greedy actions (no exploration) at evaluation")
    learn: bool = Field(default=False, description="let online learners keep learning during evaluation")


class ExperimentConfig(_Model):
    """A whole experiment: policies x variants x seeds on one environment."""

    name: Name
    description: str = ""
    env: EnvConfig
    objective_weights: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, description=f"weights over {list(OBJECTIVES)} (default: the environment's)"
    )
    variants: tuple[VariantConfig, ...] = Field(default=(VariantConfig(name="base"),), min_length=1)
    # Seeds are stored as int64 in results.parquet; 2**32 - 1 keeps them well inside it.
    seeds: tuple[Annotated[int, Field(ge=0, le=2**32 - 1)], ...] = Field(min_length=1)
    policies: tuple[PolicyConfig, ...] = Field(min_length=1)
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    reference: str | None = Field(
        default=None, description="policy name paired differences are taken against"
    )
    comparisons: tuple[ComparisonConfig, ...] = Field(
        default=(), max_length=256, description="further paired comparisons reported (policy minus against)"
    )
    backend: Literal["local", "ray"] = "local"
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    output_dir: str = Field(default="", description="where results go (default runs/<name>)")

    @field_validator("objective_weights")
    @classmethod
    def _known_objectives(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and set(value) - set(OBJECTIVES):
            unknown = sorted(set(value) - set(OBJECTIVES))
            raise ValueError(f"unknown objectives {unknown}; allowed: {list(OBJECTIVES)}")
        for key, weight in (value or {}).items():
            if not abs(weight) <= MAX_OBJECTIVE_WEIGHT:
                raise ValueError(
                    f"{key}: {weight:g} not allowed; at most {MAX_OBJECTIVE_WEIGHT:g} in magnitude (rewards "
                    "are weight x dollars x reward_scale and must stay finite in float32)"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        for field, names in (("policies", [p.name for p in self.policies]), ("variants", self.variant_names)):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{field}: names must be unique, {duplicates} repeat")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: must be unique, got {list(self.seeds)}")
        policy_names = [p.name for p in self.policies]
        if self.reference is not None and self.reference not in policy_names:
            raise ValueError(f"reference: {self.reference!r} is not a policy; allowed: {policy_names}")
        for policy in self.policies:
            unknown = set(policy.variants or ()) - set(self.variant_names)
            if unknown:
                where = f"policies.{policy.name}.variants"
                raise ValueError(f"{where}: {sorted(unknown)} unknown; allowed: {self.variant_names}")
        runs = {(variant, policy) for variant, policy, _ in self.cells()}
        for k, comparison in enumerate(self.comparisons):
            variant, against_variant = self.comparison_variants(comparison)
            for field, name, where in (
                ("policy", comparison.policy, variant),
                ("against", comparison.against, against_variant),
            ):
                if (where, name) not in runs:
                    raise ValueError(
                        f"comparisons[{k}].{field}: {name!r} does not run in variant {where!r}; "
                        f"allowed there: {sorted(p for v, p in runs if v == where)[:30]}"
                    )
        return self

    def comparison_variants(self, comparison: ComparisonConfig) -> tuple[str, str]:
        """The variants of a comparison's two cells (defaults filled in)."""
        variant = comparison.variant or self.variant_names[0]
        return variant, comparison.against_variant or variant

    @property
    def variant_names(self) -> list[str]:
        """Names of the scenario variants, in order."""
        return [v.name for v in self.variants]

    @property
    def reference_policy(self) -> str:
        """The policy paired differences are taken against (default: the first)."""
        return self.reference or self.policies[0].name

    def cells(self) -> list[tuple[str, str, int]]:
        """Every (variant, policy, seed) to train and evaluate, in a stable order."""
        return [
            (variant, policy.name, seed)
            for variant in self.variant_names
            for policy in self.policies
            if policy.variants is None or variant in policy.variants
            for seed in self.seeds
        ]

    def policy(self, name: str) -> PolicyConfig:
        """A policy arm by name."""
        return next(p for p in self.policies if p.name == name)

    def variant(self, name: str) -> VariantConfig:
        """A scenario variant by name."""
        return next(v for v in self.variants if v.name == name)

    def env_kwargs(self, variant: str) -> dict[str, Any]:
        """``gymnasium.make`` keyword arguments of the environment for one variant."""
        kwargs: dict[str, Any] = {
            **self.env.kwargs,
            "scenario": self.env.scenario,
            "overrides": {**self.env.overrides, **self.variant(variant).overrides},
        }
        if self.objective_weights is not None:
            kwargs["objective_weights"] = dict(self.objective_weights)
        return kwargs

    def output_path(self, out: str | Path | None = None) -> Path:
        """The run directory: ``out`` if given, else ``output_dir``, else ``runs/<name>``."""
        return Path(out or self.output_dir or f"runs/{self.name}")


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>", check: bool = True) -> ExperimentConfig:
    """Validate a config mapping; with ``check``, also build its envs and policies (see module doc)."""
    try:
        # Strict JSON mode: YAML lists become tuples, ints become floats, nothing else is coerced.
        config = ExperimentConfig.model_validate_json(json.dumps(dict(data), default=str))
    except ValidationError as error:
        raise ConfigError(format_validation_errors(error, f"invalid experiment config {source}")) from None
    if check:
        check_buildable(config, source)
    return config


#: The experiment configs that ship with shopgym (``configs/*.yaml``, package data of ``shopgym``).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "shopgym" / "configs"


def shipped_configs() -> tuple[str, ...]:
    """Names of the shipped experiment configs (``quickstart``, ...), found without a checkout."""
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))


def config_path(config: str | Path) -> Path:
    """An experiment config's file: an existing path, else a shipped config's name (``"quickstart"``).

    Anything else is returned as given, so the loader's error names it (with the shipped names).
    """
    path = Path(config)
    if path.is_file() or str(config) not in shipped_configs():
        return path
    return CONFIG_DIR / f"{config}.yaml"


def load_config(path: str | Path, check: bool = True) -> ExperimentConfig:
    """Read and validate an experiment YAML (a path or a shipped name); errors are :class:`ConfigError`."""
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(
            f"experiment config file not found: {str(path)[:300]} "
            f"(shipped configs, by name: {', '.join(shipped_configs())})"
        )
    data = read_yaml_mapping(file, "experiment config", ConfigError)
    return config_from_dict(data, str(path), check)


def check_buildable(config: ExperimentConfig, source: str) -> None:
    """Build every variant's environment and every policy once, so bad values fail before work."""
    import gymnasium as gym

    from policies.base import env_spec
    from policies.registry import BUILTIN_KINDS, ORACLE_KINDS, RL_KINDS, make_policy

    for variant in config.variant_names:
        try:
            env = gym.make(config.env.id, **config.env_kwargs(variant))
        except ScenarioError as error:
            raise ConfigError(
                f"invalid experiment config {source}: env (variant {variant!r}): {error}"
            ) from None
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"invalid experiment config {source}: env.kwargs (variant {variant!r}): {error}"
            ) from None
        spec = env_spec(env, config.env.id)
        for policy in config.policies:
            where = f"invalid experiment config {source}: policies.{policy.name}.kwargs"
            if policy.kind in RL_KINDS:
                _check_rl_kwargs(policy.kind, policy.kwargs, where, env)
                continue
            if policy.kind not in BUILTIN_KINDS:
                _check_plugin(policy.kind, policy.kwargs, where, env)
                continue
            if policy.kind in ("oracle_rollout", "oracle_plan"):
                try:
                    make_policy(policy.kind, env, 0, **policy.kwargs)
                except ValueError as error:
                    raise ConfigError(f"{where}: {error}") from None
                continue
            if policy.kind in ORACLE_KINDS:
                if policy.kwargs or not hasattr(env.unwrapped, "oracle_view"):
                    raise ConfigError(
                        f"{where}: got {policy.kwargs!r}; kind oracle takes no arguments and needs an "
                        "environment with oracle_view() (every shopgym env has one)"
                    )
                continue
            if policy.kind == "thompson" and policy.kwargs.get("likelihood", "bernoulli") == "bernoulli":
                given = policy.kwargs.get("likelihood", "bernoulli (the default)")
                raise ConfigError(
                    f"{where}.likelihood: {given!r} needs rewards in [0, 1], but every shopgym environment "
                    "rewards margin; set likelihood: gaussian"
                )
            try:
                make_policy(policy.kind, spec, 0, **policy.kwargs)
            except (TypeError, ValueError, KeyError) as error:
                raise ConfigError(f"{where}: {error}") from None
        env.close()


def _check_rl_kwargs(kind: str, kwargs: Mapping[str, Any], where: str, env: Any) -> None:
    """Reject hyperparameters the SB3 constructor does not take (without building a network)."""
    from policies.rl import check_hyperparams

    try:
        check_hyperparams(kind, kwargs, "kwargs")
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    if kind == "maskable_ppo" and not hasattr(env.unwrapped, "action_masks"):
        raise ConfigError(f"{where}: maskable_ppo needs action masks, which {env.spec.id} does not provide")
    if kind in ("dqn", "qrdqn", "ars") and len(env.action_space.shape or ()) > 0:
        raise ConfigError(
            f"{where}: {kind} needs a Discrete action space; {env.spec.id} has {env.action_space}"
        )


def _check_plugin(kind: str, kwargs: Mapping[str, Any], where: str, env: Any) -> None:
    """Build a plugin kind once with its kwargs (its factory validates them) and check the protocol."""
    from policies.plugins import PluginError
    from policies.registry import make_policy, plugin_training

    try:
        training = plugin_training(kind)
        policy = make_policy(kind, env, 0, **kwargs)
    except (PluginError, TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"{where}: {str(error)[:500]}") from None
    needed = ["predict", "update", "save"] + (["learn"] if training == "timesteps" else [])
    missing = [name for name in needed if not callable(getattr(policy, name, None))]
    if missing:
        raise ConfigError(
            f"{where}: policy kind {kind!r} lacks {missing} of the policy protocol (docs/POLICIES.md)"
        )


def check_env_kwargs(env_id: str, kwargs: Mapping[str, Any]) -> None:
    """Type-check environment constructor arguments against the environment's signature and bounds."""
    import importlib
    import typing

    import gymnasium as gym
    from pydantic import TypeAdapter

    if env_id not in ENV_IDS:
        return  # the id validator names the problem
    module_name, class_name = str(gym.spec(env_id).entry_point).split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    hints = typing.get_type_hints(cls.__init__)
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    for key, value in kwargs.items():
        if key not in hints:
            raise ValueError(f"kwargs.{key}: not an argument of {env_id}; allowed: {allowed}")
        try:
            TypeAdapter(hints[key]).validate_json(json.dumps(value), strict=True)
        except (ValidationError, ValueError) as error:
            first = error.errors()[0]["msg"] if isinstance(error, ValidationError) else str(error)
            raise ValueError(f"kwargs.{key}: {repr(value)[:80]} not allowed; {first}") from None
        limit = ENV_KWARG_LIMITS.get(key)
        if limit is not None and isinstance(value, int | float) and abs(value) > limit:
            raise ValueError(f"kwargs.{key}: {value!r} not allowed; at most {limit:g}")
