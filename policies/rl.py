"""Reinforcement-learning policies: every discrete-action algorithm of stable-baselines3 and sb3-contrib.

stable-baselines3's PPO, A2C and DQN; sb3-contrib's MaskablePPO, QR-DQN, TRPO, ARS and
RecurrentPPO. RecurrentPPO's LSTM state travels through ``predict``'s ``state`` and
``episode_start`` (the evaluation loop carries it across a journey and resets it at each
journey's start).

One small factory builds them; hyperparameters are the algorithms' constructor keyword
arguments, as in rl-zoo3's ``hyperparams`` files (``policy_kwargs`` included), checked by
:func:`check_hyperparams` before anything is built. A trained model saves as
``weights.npz`` (the policy network's ``state_dict`` as plain numpy arrays) next to a
``policy.json`` that names the algorithm, its hyperparameters and the environment spec.
:func:`load_sb3` rebuilds the network from that validated JSON and loads the arrays with
``allow_pickle=False``: SB3's own ``model.zip`` is never written or read, because loading it
unpickles whatever its ``data`` entry carries.

Reproducibility: SB3 seeds Python, numpy and torch from ``seed``; on CPU with a fixed number
of torch threads (we train with one) the same seed gives the same weights and actions, and
the tests check it. Across torch versions, CPU kinds or thread counts, floating-point
reductions may differ, so trained weights are not guaranteed bit-identical across machines.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import itertools
import math
import re
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import NDArray
from sb3_contrib import ARS, QRDQN, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from policies.base import (
    FORMAT_VERSION,
    Actions,
    EnvSpec,
    PolicyFileError,
    confined_path,
    env_spec,
    sealed,
)
from sim.io import atomic_write_bytes, atomic_write_json

#: Algorithms by policy kind.
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "maskable_ppo": MaskablePPO,
    "qrdqn": QRDQN,
    "trpo": TRPO,
    "ars": ARS,
    "recurrent_ppo": RecurrentPPO,
}
#: Value-based kinds: Q-values (QR-DQN: the mean of its quantiles), epsilon-greedy exploration.
Q_KINDS = ("dqn", "qrdqn")
#: Kinds that need a Discrete action space (one incentive per decision).
DISCRETE_ONLY_KINDS = ("dqn", "qrdqn", "ars")
#: Kinds whose ``n_steps`` rollouts are split into ``batch_size`` minibatches.
ROLLOUT_KINDS = ("ppo", "maskable_ppo", "trpo", "recurrent_ppo")
#: Kinds that train on an env's native vector env (its rollout split across the sub-envs).
VECTOR_KINDS = ("ppo", "maskable_ppo", "trpo")
#: Sub-envs of that vector env.
TRAIN_SUB_ENVS = 16
#: The file a saved SB3 policy's network weights live in (numpy arrays, read without pickle).
WEIGHTS_FILE = "weights.npz"
#: Constructor arguments a config or a policy file may not set (the runner and loader own them).
RESERVED_HYPERPARAMS = frozenset(
    {"env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model", "replay_buffer_class"}
)
#: Policy network classes a config or file may name (SB3's aliases for flat Box observations).
POLICY_NETWORKS = ("MlpPolicy",)
#: Kinds with other networks: (allowed aliases, the default).
KIND_NETWORKS: dict[str, tuple[tuple[str, ...], str]] = {
    "recurrent_ppo": (("MlpLstmPolicy",), "MlpLstmPolicy"),
    "ars": (("LinearPolicy", "MlpPolicy"), "LinearPolicy"),  # Mania et al. 2018: linear policies
}
#: Numeric hyperparameters and their allowed closed range (SB3 asserts or misbehaves outside).
HYPERPARAM_RANGES: dict[str, tuple[float, float, type]] = {
    "learning_rate": (1e-12, 10.0, float),
    "n_steps": (2, 1_000_000, int),
    "batch_size": (2, 1_000_000, int),
    "n_epochs": (1, 1_000, int),
    "gamma": (0.0, 1.0, float),
    "gae_lambda": (0.0, 1.0, float),
    "clip_range": (1e-6, 10.0, float),
    "ent_coef": (0.0, 10.0, float),
    "vf_coef": (0.0, 10.0, float),
    "max_grad_norm": (1e-6, 1e6, float),
    "buffer_size": (1, 10_000_000, int),
    "learning_starts": (0, 100_000_000, int),
    "tau": (0.0, 1.0, float),
    "train_freq": (1, 1_000_000, int),
    "gradient_steps": (-1, 1_000, int),
    "target_update_interval": (1, 100_000_000, int),
    "exploration_fraction": (0.0, 1.0, float),
    "exploration_initial_eps": (0.0, 1.0, float),
    "exploration_final_eps": (0.0, 1.0, float),
    "rms_prop_eps": (1e-12, 1.0, float),
    "n_delta": (1, 10_000, int),
    "n_top": (1, 10_000, int),
    "delta_std": (1e-12, 10.0, float),
    "n_eval_episodes": (1, 10_000, int),
    "alive_bonus_offset": (-1e6, 1e6, float),
    "cg_max_steps": (1, 1_000, int),
    "cg_damping": (0.0, 10.0, float),
    "line_search_shrinking_factor": (1e-6, 1.0, float),
    "line_search_max_iter": (1, 1_000, int),
    "n_critic_updates": (1, 1_000, int),
    "target_kl": (1e-12, 10.0, float),
    "sub_sampling_factor": (1, 1_000, int),
}
#: Largest unpacked ``weights.npz`` loaded (16 layers of 4096 x 4096 float32 stay below it);
#: each member's declared size, and their sum, is checked before anything is decompressed.
MAX_WEIGHTS_BYTES = 2 * 1024**3
#: Largest ratio of a member's declared to its compressed size (plus 64 KiB of slack for zero
#: biases): shopgym stores weights uncompressed (ratio 1) and trained floats barely deflate, while
#: a deflate bomb reaches 1,000.
MAX_COMPRESSION_RATIO = 50
#: Most arrays a ``weights.npz`` may hold (a 16-layer actor-critic has about 70).
MAX_WEIGHT_ARRAYS = 1024
#: Largest weight magnitude loaded: trained networks stay far below; 3e38 overflows float32 scores.
MAX_WEIGHT_MAGNITUDE = 1e6
#: Names a ``weights.npz`` member may have (a ``state_dict`` key plus ``.npy``).
_WEIGHT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}\.npy")
#: Largest layer a file or config may ask for (units), and most layers.
MAX_LAYER_UNITS, MAX_LAYERS = 4096, 16
#: Network sizes ``policy_kwargs`` may set, and their largest value.
SIZE_KWARGS = {"n_quantiles": 1_000, "lstm_hidden_size": MAX_LAYER_UNITS, "n_lstm_layers": MAX_LAYERS}
#: Business metrics of ``info["episode_metrics"]`` logged to TensorBoard under ``shop/``.
LOGGED_METRICS = (
    "margin",
    "ltv_mean",
    "incentive_cost",
    "orders",
    "active_share",
    "late_delivery_share",
    "peak_utilization",
    "cart_abandonment_rate",
)


class ShopMetricsCallback(BaseCallback):
    """Log each finished episode's LTV, margin and fulfillment metrics to TensorBoard (``shop/*``)."""

    def _on_step(self) -> bool:
        dones = self.locals.get("dones", ())
        for info, done in zip(self.locals.get("infos", ()), dones, strict=False):
            metrics = info.get("episode_metrics")
            if not done or metrics is None:  # the envs report zeros until the episode ends
                continue
            for key in LOGGED_METRICS:
                if key in metrics:
                    self.logger.record_mean(f"shop/{key}", float(metrics[key]))
            self.logger.record_mean("shop/episode_return", float(metrics["r"]))
        return True


class SB3Policy:
    """A stable-baselines3 model behind the shared ``Policy`` protocol."""

    supports_heads: ClassVar[bool] = True

    def __init__(
        self, model: BaseAlgorithm, kind: str, spec: EnvSpec, seed: int, params: dict[str, Any]
    ) -> None:
        self.model = model
        self.kind = kind
        self.name = kind
        self.spec = spec
        self.seed = seed
        self.params = params

    def predict(
        self,
        observation: NDArray[np.floating[Any]],
        state: tuple[NDArray[Any], ...] | None = None,
        episode_start: NDArray[np.bool_] | None = None,
        deterministic: bool = False,
        action_masks: NDArray[np.bool_] | None = None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """The model's action; MaskablePPO never picks a masked incentive."""
        obs = np.asarray(observation, dtype=np.float32)
        if isinstance(self.model, RecurrentPPO):
            return self._recurrent(obs, state, episode_start, deterministic, action_masks)
        if isinstance(self.model, MaskablePPO):
            actions, state = self.model.predict(
                obs, state, episode_start, deterministic, action_masks=action_masks
            )
        elif action_masks is not None and isinstance(self.model.action_space, gym.spaces.Discrete):
            actions = self._masked(obs, np.asarray(action_masks, dtype=np.bool_), deterministic)
        else:
            actions, state = self.model.predict(obs, state, episode_start, deterministic)
        return np.asarray(actions, dtype=np.int64), state

    def _masked(self, obs: NDArray[np.float32], masks: NDArray[np.bool_], deterministic: bool) -> Actions:
        """An unmasked network's choice among allowed incentives: what the exported runtime does too.

        PPO, A2C and TRPO sample from (or take the mode of) their action distribution renormalized
        over the allowed incentives; DQN and QR-DQN take their best allowed Q-value (exploring
        uniformly over the allowed ones with the final exploration rate when not deterministic);
        ARS takes its best allowed action score (its policy is deterministic).
        """
        single = obs.ndim == 1
        batch, allowed = obs.reshape(1, -1) if single else obs, masks.reshape(-1, masks.shape[-1])
        with torch.no_grad():
            scores = self.scores(torch.as_tensor(batch))
            scores = scores.masked_fill(~torch.as_tensor(allowed), -torch.inf)
            if deterministic:
                chosen = scores.argmax(dim=1)
            elif isinstance(self.model, DQN | QRDQN):
                greedy = scores.argmax(dim=1)
                uniform = torch.multinomial(torch.as_tensor(allowed, dtype=torch.float32), 1)[:, 0]
                explore = torch.rand(len(batch)) < self.model.exploration_rate
                chosen = torch.where(explore, uniform, greedy)
            else:
                chosen = torch.distributions.Categorical(logits=scores).sample()
        actions = chosen.numpy().astype(np.int64)
        return actions[0] if single else actions

    def scores(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-incentive scores whose argmax is the deterministic action (stateless kinds).

        Logits of the action distribution (PPO, A2C, TRPO, MaskablePPO unmasked), Q-values
        (DQN), the mean over quantiles (QR-DQN), ARS's action scores.
        """
        policy: Any = self.model.policy
        if isinstance(self.model, DQN):
            scores: torch.Tensor = policy.q_net(obs)
            return scores
        if isinstance(self.model, QRDQN):
            return policy.quantile_net(obs).mean(dim=1)
        if isinstance(self.model, ARS):
            return policy.action_net(policy.extract_features(obs, policy.features_extractor))
        return policy.get_distribution(obs).distribution.logits

    def _recurrent(
        self,
        obs: NDArray[np.float32],
        state: tuple[NDArray[Any], ...] | None,
        episode_start: NDArray[np.bool_] | None,
        deterministic: bool,
        action_masks: NDArray[np.bool_] | None,
    ) -> tuple[Actions, tuple[NDArray[Any], ...] | None]:
        """RecurrentPPO's action and next LSTM state; with masks, its choice among allowed incentives."""
        if action_masks is None or not isinstance(self.model.action_space, gym.spaces.Discrete):
            actions, new_state = self.model.predict(obs, state, episode_start, deterministic)
            return np.asarray(actions, dtype=np.int64), new_state
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        allowed = np.asarray(action_masks, dtype=np.bool_).reshape(len(batch), -1)
        policy: Any = self.model.policy
        if state is None:
            zeros = np.zeros((policy.lstm_actor.num_layers, len(batch), policy.lstm_actor.hidden_size))
            state = (zeros, zeros)
        starts = (
            np.zeros(len(batch)) if episode_start is None else np.asarray(episode_start, dtype=np.float32)
        )
        with torch.no_grad(), torch_threads(1):
            lstm = (
                torch.as_tensor(state[0], dtype=torch.float32),
                torch.as_tensor(state[1], dtype=torch.float32),
            )
            distribution, lstm = policy.get_distribution(
                torch.as_tensor(batch), lstm, torch.as_tensor(starts, dtype=torch.float32)
            )
            scores = distribution.distribution.logits.masked_fill(~torch.as_tensor(allowed), -torch.inf)
            chosen = (
                scores.argmax(dim=1)
                if deterministic
                else torch.distributions.Categorical(logits=scores).sample()
            )
        actions = chosen.numpy().astype(np.int64)
        return (actions[0] if single else actions), (lstm[0].numpy(), lstm[1].numpy())

    def update(
        self,
        observations: NDArray[np.floating[Any]],
        actions: Actions,
        rewards: NDArray[np.floating[Any]],
        costs: NDArray[np.floating[Any]] | None = None,
    ) -> None:
        """SB3 learns in :meth:`learn`, from its own rollouts; evaluation feedback is not used."""

    def learn(
        self, total_timesteps: int, callback: BaseCallback | None = None, progress_bar: bool = False
    ) -> None:
        """Train for ``total_timesteps`` environment steps (business metrics logged per episode)."""
        callbacks: list[BaseCallback] = [ShopMetricsCallback()]
        if callback is not None:
            callbacks.append(callback)
        if self.model.tensorboard_log is None:
            # SB3's default logger makes an empty SB3-<time> folder in the temp dir on every learn().
            self.model.set_logger(Logger(folder=None, output_formats=[]))
        with torch_threads(1):
            self.model.learn(total_timesteps, callback=callbacks, progress_bar=progress_bar)

    def save(self, path: str | Path) -> Path:
        """Write ``weights.npz`` (no pickle) and ``policy.json`` into the directory ``path``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().numpy() for k, v in self.model.policy.state_dict().items()}
        buffer = io.BytesIO()
        np.savez(buffer, **state)
        data = buffer.getvalue()
        atomic_write_bytes(data, directory / WEIGHTS_FILE)
        (directory / "model.zip").unlink(missing_ok=True)  # an SB3 zip of an older version: never read
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "params": self.params,
            "env": self.spec.to_dict(),
            "weights": WEIGHTS_FILE,
            "weights_sha256": hashlib.sha256(data).hexdigest(),
            "num_timesteps": int(self.model.num_timesteps),
            "exploration_rate": float(getattr(self.model, "exploration_rate", 0.0)),
        }
        atomic_write_json(sealed(meta), directory / "policy.json")
        return directory / "policy.json"


def make_sb3(
    kind: str,
    env: gym.Env[Any, Any],
    seed: int = 0,
    tensorboard_log: str | Path | None = None,
    **hyperparams: Any,
) -> SB3Policy:
    """A fresh SB3 agent for ``env``; ``hyperparams`` are the algorithm's constructor kwargs."""
    if kind not in ALGORITHMS:
        raise ValueError(f"RL kind {kind!r} unknown; allowed: {list(ALGORITHMS)}")
    algorithm = ALGORITHMS[kind]
    if kind == "maskable_ppo" and not hasattr(env.unwrapped, "action_masks"):
        raise ValueError(f"maskable_ppo needs an env with action_masks(); {env.unwrapped} has none")
    if kind in DISCRETE_ONLY_KINDS and not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{kind} needs a Discrete action space, got {env.action_space}")
    hyperparams = check_hyperparams(kind, hyperparams, "hyperparameters")
    hyperparams.setdefault("policy", KIND_NETWORKS.get(kind, (POLICY_NETWORKS, "MlpPolicy"))[1])
    policy = hyperparams.pop("policy")
    training_env, hyperparams = _training_env(kind, env, hyperparams)
    try:
        with torch_threads(1):
            model = algorithm(
                policy,
                training_env,
                seed=seed,
                device="cpu",
                verbose=0,
                tensorboard_log=None if tensorboard_log is None else str(tensorboard_log),
                **hyperparams,
            )
    except TypeError as error:
        raise ValueError(
            f"{kind} hyperparameters {sorted(hyperparams)} rejected by {algorithm.__name__}: {error}"
        ) from error
    return SB3Policy(model, kind, env_spec(env), seed, {"policy": policy, **hyperparams})


def _training_env(
    kind: str, env: gym.Env[Any, Any], hyperparams: dict[str, Any]
) -> tuple[gym.Env[Any, Any] | VecEnv, dict[str, Any]]:
    """Where ``kind`` trains: the env's native vector env (SB3 adapter) if it has one, else the env.

    On-policy kinds with ``n_steps`` rollouts (:data:`VECTOR_KINDS`) train on
    :data:`TRAIN_SUB_ENVS` sub-envs with ``n_steps / TRAIN_SUB_ENVS`` steps each, so a rollout
    holds as many steps as on one env; a rollout that does not split into at least 8 steps per
    sub-env stays on the single env. Other kinds (replay buffers, A2C's short rollouts) keep it.
    """
    spec = env.spec
    if kind not in VECTOR_KINDS or spec is None or gym.spec(spec.id).vector_entry_point is None:
        return env, hyperparams
    default = inspect.signature(ALGORITHMS[kind].__init__).parameters["n_steps"].default
    steps = int(hyperparams.get("n_steps", default))
    if steps % TRAIN_SUB_ENVS or steps // TRAIN_SUB_ENVS < 8:
        return env, hyperparams
    from policies.vec_env import make_sb3_vec_env

    vector = make_sb3_vec_env(spec.id, TRAIN_SUB_ENVS, **spec.kwargs)
    return vector, {**hyperparams, "n_steps": steps // TRAIN_SUB_ENVS}


def check_hyperparams(kind: str, params: Any, where: str = "params") -> dict[str, Any]:
    """Check SB3 constructor arguments: known names, JSON values, finite numbers in range.

    Raises ``ValueError`` naming the field, the value and what is allowed. Used on configs at
    load time and on saved ``policy.json`` files before any network is built.
    """
    if kind not in ALGORITHMS:
        raise ValueError(f"RL kind {kind!r} unknown; allowed: {list(ALGORITHMS)}")
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: expected a mapping of hyperparameters, got {type(params).__name__}")
    algorithm = ALGORITHMS[kind]
    known = set(inspect.signature(algorithm.__init__).parameters) - {"self"} - RESERVED_HYPERPARAMS
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in known:
            raise ValueError(
                f"{where}.{key}: not a {algorithm.__name__} hyperparameter (or set by shopgym); "
                f"allowed: {sorted(known)}"
            )
        if key == "policy":
            networks = KIND_NETWORKS.get(kind, (POLICY_NETWORKS, ""))[0]
            if value not in networks:
                raise ValueError(f"{where}.policy: {value!r} not allowed; allowed: {list(networks)}")
        elif key == "policy_kwargs":
            _check_policy_kwargs(value, f"{where}.policy_kwargs")
        elif key == "train_freq" and isinstance(value, list | tuple):
            if (
                len(value) != 2
                or not isinstance(value[0], int)
                or isinstance(value[0], bool)
                or not 1 <= value[0] <= 1_000_000
                or value[1] not in ("step", "episode")
            ):
                raise ValueError(
                    f"{where}.train_freq: {_short(value)} not allowed; an integer in [1, 1e6] "
                    "or [n, 'step' | 'episode']"
                )
        elif key in HYPERPARAM_RANGES:
            low, high, typ = HYPERPARAM_RANGES[key]
            ok_type = isinstance(value, int) if typ is int else isinstance(value, int | float)
            if (
                isinstance(value, bool)
                or not ok_type
                or not math.isfinite(float(value))
                or not low <= value <= high
            ):
                kind_name = "an integer" if typ is int else "a number"
                raise ValueError(
                    f"{where}.{key}: {_short(value)} not allowed; {kind_name} in [{low:g}, {high:g}]"
                )
        elif not _plain_json(value):
            raise ValueError(
                f"{where}.{key}: {_short(value)} is not a plain JSON value (finite numbers only)"
            )
        out[key] = value
    if out.get("batch_size") is not None and kind in ROLLOUT_KINDS:
        n_steps = int(out.get("n_steps", 2048 if kind != "recurrent_ppo" else 128))
        if int(out["batch_size"]) > n_steps:
            raise ValueError(
                f"{where}.batch_size: {out['batch_size']} exceeds n_steps {n_steps}; allowed: 2..n_steps"
            )
    return out


def _check_policy_kwargs(value: Any, where: str) -> None:
    """``policy_kwargs``: only ``net_arch`` (layer sizes) and a few flags, as plain JSON."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {_short(value)}")
    allowed = {
        "net_arch",
        "ortho_init",
        "share_features_extractor",
        "normalize_images",
        "log_std_init",
        "optimizer_kwargs",
        "n_quantiles",  # QR-DQN
        "lstm_hidden_size",  # RecurrentPPO
        "n_lstm_layers",
        "shared_lstm",
        "enable_critic_lstm",
        "with_bias",  # ARS's linear policy
    }
    for key, item in value.items():
        if key not in allowed:
            raise ValueError(f"{where}.{key}: not allowed from a config or file; allowed: {sorted(allowed)}")
        if key == "optimizer_kwargs":
            if not isinstance(item, Mapping) or not all(
                isinstance(v, bool | int | float) and math.isfinite(float(v)) for v in item.values()
            ):
                raise ValueError(f"{where}.optimizer_kwargs: {_short(item)} must map names to finite numbers")
        elif key == "net_arch":
            layers = list(item.values()) if isinstance(item, Mapping) else [item]
            if isinstance(item, Mapping) and not set(item) <= {"pi", "vf", "qf"}:
                raise ValueError(f"{where}.net_arch: keys {sorted(item)}; allowed: pi, vf, qf")
            for sizes in layers:
                if (
                    not isinstance(sizes, list)
                    or len(sizes) > MAX_LAYERS
                    or not all(
                        isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= MAX_LAYER_UNITS
                        for u in sizes
                    )
                ):
                    raise ValueError(
                        f"{where}.net_arch: {_short(item)} not allowed; lists of at most {MAX_LAYERS} "
                        f"layer sizes, each an integer in [1, {MAX_LAYER_UNITS}]"
                    )
        elif key in SIZE_KWARGS:
            top = SIZE_KWARGS[key]
            if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= top:
                raise ValueError(f"{where}.{key}: {_short(item)} not allowed; an integer in [1, {top}]")
        elif not _plain_json(item) or isinstance(item, Mapping | list):
            raise ValueError(f"{where}.{key}: {_short(item)} must be a finite number or a boolean")


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON data (no objects), with finite numbers, nested at most 8 deep."""
    if depth > 8:
        return False
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain_json(v, depth + 1) for k, v in value.items())
    return False


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _SpacesEnv(gym.Env[Any, Any]):
    """An environment that only has the saved policy's spaces: enough to rebuild its network."""

    def __init__(self, spec: EnvSpec) -> None:
        low, high = spec.obs_clip
        self.observation_space = gym.spaces.Box(low, high, (len(spec.obs_fields),), np.float32)
        n = spec.n_actions
        self.action_space = (
            gym.spaces.Discrete(n)
            if spec.heads == ("shopper",)
            else gym.spaces.MultiDiscrete([n] * len(spec.heads))
        )

    def action_masks(self) -> NDArray[np.bool_]:  # pragma: no cover - never stepped
        """Every incentive allowed (MaskablePPO looks for this method)."""
        return np.ones(self.action_space.shape or (1,), dtype=np.bool_)


def load_sb3(meta: Mapping[str, Any], directory: Path, env: gym.Env[Any, Any] | None = None) -> SB3Policy:
    """Rebuild an :class:`SB3Policy` from its validated ``policy.json`` and ``weights.npz`` (no pickle)."""
    kind = meta.get("kind")
    if kind not in ALGORITHMS:
        raise PolicyFileError(f"policy.json: kind {kind!r} unknown; allowed: {list(ALGORITHMS)}")
    if "weights" not in meta:
        raise PolicyFileError(
            f"{directory}/policy.json has no 'weights' entry: an SB3 model.zip of an older shopgym, "
            "which this version never loads (loading it would unpickle code). Re-train the policy."
        )
    try:
        params = check_hyperparams(kind, meta.get("params", {}), "policy.json params")
    except ValueError as error:
        raise PolicyFileError(str(error)) from None
    spec = EnvSpec.from_dict(meta.get("env"))
    seed, timesteps, epsilon = (
        meta.get("seed"),
        meta.get("num_timesteps", 0),
        meta.get("exploration_rate", 0.0),
    )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise PolicyFileError(f"policy.json seed: {_short(seed)} not allowed; an integer in [0, 2**32 - 1]")
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 0:
        raise PolicyFileError(f"policy.json num_timesteps: {_short(timesteps)} not allowed; an integer >= 0")
    if not isinstance(epsilon, int | float) or not 0.0 <= epsilon <= 1.0:
        raise PolicyFileError(
            f"policy.json exploration_rate: {_short(epsilon)} not allowed; a number in [0, 1]"
        )
    path = confined_path(directory, meta["weights"], "policy.json weights")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise PolicyFileError(
            f"{path}: sha256 {digest[:16]}... differs from policy.json's weights_sha256; the file was changed"
        )
    arrays = read_weights(data, path)
    problem = _network_size_problem(params, sum(a.size for a in arrays.values()))
    if problem is not None:  # before a network of that size is built
        raise PolicyFileError(f"{directory / 'policy.json'}: {problem}")
    state = {name: torch.from_numpy(array.copy()) for name, array in arrays.items()}
    hyper = dict(params)
    policy = hyper.pop("policy", KIND_NETWORKS.get(kind, (POLICY_NETWORKS, "MlpPolicy"))[1])
    if kind in Q_KINDS:  # the loaded model only decides: a small replay buffer, not the training one
        hyper["buffer_size"] = 1
    with torch_threads(1):
        model = ALGORITHMS[kind](
            policy, env if env is not None else _SpacesEnv(spec), seed=seed, device="cpu", verbose=0, **hyper
        )
        try:
            if any(
                not torch.is_floating_point(t) or not bool(torch.isfinite(t).all()) for t in state.values()
            ):
                raise ValueError("weights must be finite floating-point arrays")
            model.policy.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError) as error:
            raise PolicyFileError(
                f"{path}: weights do not fit the network policy.json describes: {error}"
            ) from None
    model.num_timesteps = timesteps
    if kind in Q_KINDS:
        model.exploration_rate = float(epsilon)  # type: ignore[attr-defined]
    return SB3Policy(model, kind, spec, seed, dict(params))


def read_weights(data: bytes, path: Path) -> dict[str, NDArray[np.floating[Any]]]:
    """The arrays of a ``weights.npz``, every size checked before anything is decompressed or allocated.

    Per member: a plain ``NAME.npy`` name (printable, no NUL, no folder); a declared uncompressed
    size within :data:`MAX_WEIGHTS_BYTES` (all members together too; zipfile never inflates past
    the declared size) and :data:`MAX_COMPRESSION_RATIO` times its compressed size; a ``.npy``
    header of a plain float dtype whose ``shape x itemsize`` is exactly the member's declared
    data size; finite values at most :data:`MAX_WEIGHT_MAGNITUDE` in magnitude. Anything else
    is one ``PolicyFileError`` line.
    """
    arrays: dict[str, NDArray[np.floating[Any]]] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_WEIGHT_ARRAYS:
                raise PolicyFileError(
                    f"{path}: {len(members):,} arrays; a weights archive holds at most {MAX_WEIGHT_ARRAYS}"
                )
            total = 0
            for member in members:
                name = member.filename
                if not _WEIGHT_NAME.fullmatch(name):
                    raise PolicyFileError(
                        f"{path}: array name {_short(name, 60)} not allowed; plain names like "
                        "'mlp_extractor.policy_net.0.weight.npy' only"
                    )
                if member.file_size > MAX_COMPRESSION_RATIO * member.compress_size + 65_536:
                    raise PolicyFileError(
                        f"{path}: array {name!r} unpacks {member.file_size:,} bytes from "
                        f"{member.compress_size:,}; at most {MAX_COMPRESSION_RATIO}x "
                        "(MAX_COMPRESSION_RATIO): a deflate bomb, not weights"
                    )
                total += member.file_size
                if member.file_size > MAX_WEIGHTS_BYTES or total > MAX_WEIGHTS_BYTES:
                    raise PolicyFileError(
                        f"{path}: {total:,} bytes unpacked (declared, up to {name!r}); at most "
                        f"{MAX_WEIGHTS_BYTES:,} (MAX_WEIGHTS_BYTES)"
                    )
            for member in members:
                with archive.open(member) as handle:
                    array = _read_npy(handle, member, path)
                arrays[member.filename[: -len(".npy")]] = array
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
        if isinstance(error, PolicyFileError):
            raise
        raise PolicyFileError(
            f"{path}: not a weights archive shopgym reads: {_short(str(error), 200)}"
        ) from None
    return arrays


def _read_npy(handle: Any, member: zipfile.ZipInfo, path: Path) -> NDArray[np.floating[Any]]:
    """One ``.npy`` member: header checked (dtype, shape x itemsize = declared size), then read."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if read_header is None:
        raise PolicyFileError(f"{path}: {member.filename!r}: .npy version {version} not read")
    shape, fortran, dtype = read_header(handle)
    name = member.filename
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8) or dtype.fields is not None or dtype.subdtype:
        raise PolicyFileError(
            f"{path}: array {name!r} has dtype {_short(str(dtype), 40)}; weights are float16/32/64 only"
        )
    if not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 8:
        raise PolicyFileError(f"{path}: array {name!r} declares shape {_short(shape, 60)}")
    nbytes = math.prod(shape) * dtype.itemsize
    header = handle.tell()
    if nbytes != member.file_size - header:
        raise PolicyFileError(
            f"{path}: array {name!r} declares shape {_short(shape, 60)} ({nbytes:,} bytes) but holds "
            f"{member.file_size - header:,}; a forged header"
        )
    raw = handle.read(nbytes)
    if len(raw) != nbytes:
        raise PolicyFileError(f"{path}: array {name!r} is truncated")
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if flat.size and not (np.isfinite(flat).all() and float(np.abs(flat).max()) <= MAX_WEIGHT_MAGNITUDE):
        worst = flat[~np.isfinite(flat)][0] if not np.isfinite(flat).all() else np.abs(flat).max()
        raise PolicyFileError(
            f"{path}: array {name!r} holds {float(worst):.3g}; weights are finite and at most "
            f"{MAX_WEIGHT_MAGNITUDE:g} in magnitude (MAX_WEIGHT_MAGNITUDE), or the network's scores overflow"
        )
    return flat.reshape(shape, order="F" if fortran else "C")


def _network_size_problem(params: Mapping[str, Any], n_weights: int) -> str | None:
    """Whether checked hyperparameters ask for more weights than ``weights.npz`` holds (before building).

    A lower bound of the network's size: the products of consecutive ``net_arch`` layers and an
    LSTM's recurrent matrices. A file cannot make the loader build a network (16 layers of 4096
    units is 2 GB with its optimizer) that its own weights could never fill.
    """
    kwargs = params.get("policy_kwargs") or {}
    arch = kwargs.get("net_arch")
    lists = list(arch.values()) if isinstance(arch, Mapping) else [arch] if isinstance(arch, list) else []
    lstm = 4 * int(kwargs.get("lstm_hidden_size", 0)) ** 2 * int(kwargs.get("n_lstm_layers", 1))
    needed = sum(a * b for sizes in lists for a, b in itertools.pairwise(sizes)) + lstm
    if needed > n_weights:
        return (
            f"policy_kwargs asks for at least {needed:,} network weights, weights.npz holds "
            f"{n_weights:,}; they belong to different networks"
        )
    return None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch CPU threads (training is reproducible for a fixed thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
