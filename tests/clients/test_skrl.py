"""skrl's PPO trains on every env id through a gymnasium vector env of several envs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import ENV_IDS
from tests.clients.small import TINY

pytest.importorskip("skrl", reason="optional client: pip install 'shopgym[clients]'")
import torch
from skrl.agents.torch.ppo import PPO, PPO_CFG
from skrl.envs.wrappers.torch import wrap_env
from skrl.memories.torch import RandomMemory
from skrl.models.torch import CategoricalMixin, DeterministicMixin, Model, MultiCategoricalMixin
from skrl.trainers.torch import SequentialTrainer


def _mlp(n_in: int, n_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, n_out))


class Policy(CategoricalMixin, Model):
    def __init__(self, observation_space: Any, action_space: Any) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space, device="cpu")
        CategoricalMixin.__init__(self)
        self.net = _mlp(self.num_observations, self.num_actions)

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        return self.net(inputs["observations"]), {}


class PlanPolicy(MultiCategoricalMixin, Model):
    def __init__(self, observation_space: Any, action_space: Any) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space, device="cpu")
        MultiCategoricalMixin.__init__(self)
        self.net = _mlp(self.num_observations, int(action_space.nvec.sum()))

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        return self.net(inputs["observations"]), {}


class Value(DeterministicMixin, Model):
    def __init__(self, observation_space: Any, action_space: Any) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space, device="cpu")
        DeterministicMixin.__init__(self)
        self.net = _mlp(self.num_observations, 1)

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        return self.net(inputs["observations"]), {}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_skrl_ppo_trains_with_three_envs(env_id: str, tmp_path: Path):
    torch.manual_seed(0)
    env = wrap_env(
        gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", **TINY[env_id]), wrapper="gymnasium"
    )
    assert env.num_envs == 3
    policy_class = PlanPolicy if env_id == "shopgym/CampaignPlanning-v0" else Policy
    models = {
        "policy": policy_class(env.observation_space, env.action_space),
        "value": Value(env.observation_space, env.action_space),
    }
    cfg = PPO_CFG(rollouts=32, learning_epochs=2, mini_batches=2)
    cfg.experiment.directory = str(tmp_path)
    cfg.experiment.write_interval = 0
    cfg.experiment.checkpoint_interval = 0
    agent = PPO(
        models=models,
        memory=RandomMemory(memory_size=32, num_envs=env.num_envs, device="cpu"),
        observation_space=env.observation_space,
        action_space=env.action_space,
        device="cpu",
        cfg=cfg,
    )
    before = [p.detach().clone() for p in models["policy"].parameters()]
    steps = 100 if env_id == "shopgym/CampaignPlanning-v0" else 200  # a campaign step is a day
    SequentialTrainer(
        env=env,
        agents=agent,
        cfg={
            "timesteps": steps,
            "headless": True,
            "disable_progressbar": True,
            "close_environment_at_exit": False,
        },
    ).train()
    after = list(models["policy"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # PPO updated the policy
    env.close()
