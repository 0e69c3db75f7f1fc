"""Reinforcement-learning policies: stable-baselines3 PPO, A2C, DQN and sb3-contrib MaskablePPO.

One small factory builds them; hyperparameters are the algorithms' constructor keyword
arguments, as in rl-zoo3's ``hyperparams`` files (``policy_kwargs`` included). The trained
model saves as SB3's zip next to a ``policy.json`` that names the algorithm and the
environment spec, so :func:`policies.load_policy` can rebuild it.

Reproducibility: SB3 seeds Python, numpy and torch from ``seed``; on CPU with a fixed number
of torch threads (we train with one) the same seed gives the same weights and actions, and
the tests check it. Across torch versions, CPU kinds or thread counts, floating-point
reductions may differ, so trained weights are not guaranteed bit-identical across machines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import NDArray
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from policies.base import FORMAT_VERSION, Actions, EnvSpec, env_spec
from sim.io import atomic_write_json

#: Algorithms by policy kind.
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "maskable_ppo": MaskablePPO}
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

        PPO and A2C sample from (or take the mode of) their action distribution renormalized over
        the allowed incentives; DQN takes its best allowed Q-value (exploring uniformly over the
        allowed ones with its final exploration rate when not deterministic).
        """
        single = obs.ndim == 1
        batch, allowed = obs.reshape(1, -1) if single else obs, masks.reshape(-1, masks.shape[-1])
        with torch.no_grad():
            tensor = torch.as_tensor(batch)
            if isinstance(self.model, DQN):
                scores = self.model.q_net(tensor)
            else:
                distribution = self.model.policy.get_distribution(tensor)  # type: ignore[operator]
                scores = distribution.distribution.logits
            scores = scores.masked_fill(~torch.as_tensor(allowed), -torch.inf)
            if deterministic:
                chosen = scores.argmax(dim=1)
            elif isinstance(self.model, DQN):
                greedy = scores.argmax(dim=1)
                uniform = torch.multinomial(torch.as_tensor(allowed, dtype=torch.float32), 1)[:, 0]
                explore = torch.rand(len(batch)) < self.model.exploration_rate
                chosen = torch.where(explore, uniform, greedy)
            else:
                chosen = torch.distributions.Categorical(logits=scores).sample()
        actions = chosen.numpy().astype(np.int64)
        return actions[0] if single else actions

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
        with torch_threads(1):
            self.model.learn(total_timesteps, callback=callbacks, progress_bar=progress_bar)

    def save(self, path: str | Path) -> Path:
        """Write ``model.zip`` (SB3's format) and ``policy.json`` into the directory ``path``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "model.tmp.zip"
        self.model.save(tmp)
        tmp.replace(directory / "model.zip")
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "params": self.params,
            "env": self.spec.to_dict(),
            "model": "model.zip",
        }
        atomic_write_json(meta, directory / "policy.json")
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
    if kind == "dqn" and not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"dqn needs a Discrete action space, got {env.action_space}")
    hyperparams.setdefault("policy", "MlpPolicy")
    policy = hyperparams.pop("policy")
    try:
        with torch_threads(1):
            model = algorithm(
                policy,
                env,
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


def load_sb3(meta: dict[str, Any], directory: Path, env: gym.Env[Any, Any] | None = None) -> SB3Policy:
    """Rebuild an :class:`SB3Policy` from its ``policy.json`` and ``model.zip``."""
    algorithm = ALGORITHMS[meta["kind"]]
    model = algorithm.load(directory / meta["model"], env=env, device="cpu")
    return SB3Policy(model, meta["kind"], EnvSpec.from_dict(meta["env"]), meta["seed"], meta["params"])


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch CPU threads (training is reproducible for a fixed thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
