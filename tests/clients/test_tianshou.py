"""tianshou's PPO trains on every env id and DQN on the Discrete ones; its buffer takes their info."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401 (registers the shopgym ids)
from tests.clients.small import TINY

pytest.importorskip("tianshou", reason="optional client: its own venv, see requirements/legacy-clients.in")
import torch
from tianshou.algorithm import DQN, PPO
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy, ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OffPolicyTrainerParams, OnPolicyTrainerParams
from tianshou.utils.net.common import Net
from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

#: The envs whose action is one Discrete choice (CampaignPlanning's MultiDiscrete plan has no tianshou DQN).
DISCRETE_IDS = ("shopgym/ShopperJourney-v0", "shopgym/IncentiveTargeting-v0")


def _envs(env_id: str, n: int) -> DummyVectorEnv:
    envs = DummyVectorEnv([lambda: gym.make(env_id, **TINY[env_id]) for _ in range(n)])
    envs.seed(0)
    return envs


def _shapes(env_id: str) -> tuple[int, int]:
    env = gym.make(env_id, **TINY[env_id])
    return int(np.prod(env.observation_space.shape)), int(env.action_space.n)


@pytest.mark.parametrize("env_id", DISCRETE_IDS)
def test_tianshou_ppo_trains_and_its_collector_takes_the_info_dicts(env_id: str, tmp_path: Path):
    torch.manual_seed(0)
    n_obs, n_actions = _shapes(env_id)
    net = Net(state_shape=n_obs, hidden_sizes=[32])
    actor = DiscreteActor(preprocess_net=net, action_shape=n_actions)
    critic = DiscreteCritic(preprocess_net=Net(state_shape=n_obs, hidden_sizes=[32]))
    policy = DiscreteActorPolicy(actor=actor, action_space=gym.spaces.Discrete(n_actions))
    algorithm = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=3e-4))
    train_envs = _envs(env_id, 2)
    train = Collector[CollectStats](algorithm, train_envs, VectorReplayBuffer(2000, len(train_envs)))
    test = Collector[CollectStats](algorithm, _envs(env_id, 2))
    result = algorithm.run_training(
        OnPolicyTrainerParams(
            training_collector=train,
            test_collector=test,
            max_epochs=1,
            epoch_num_steps=400,
            collection_step_num_env_steps=200,
            update_step_num_repetitions=1,
            batch_size=64,
            test_step_num_episodes=2,
            show_progress=False,
            verbose=False,
        )
    )
    assert result.timing.total_time > 0
    assert train.buffer.info.decision_kind.dtype == object  # a string on every step, "end" at the end
    assert not train.buffer.hasnull()


@pytest.mark.parametrize("env_id", DISCRETE_IDS)
def test_tianshou_dqn_trains_through_episode_ends(env_id: str):
    torch.manual_seed(0)
    n_obs, n_actions = _shapes(env_id)
    model = Net(state_shape=n_obs, action_shape=n_actions, hidden_sizes=[32])
    policy = DiscreteQLearningPolicy(
        model=model, action_space=gym.spaces.Discrete(n_actions), eps_training=0.2, eps_inference=0.0
    )
    algorithm = DQN(policy=policy, optim=AdamOptimizerFactory(lr=1e-3), target_update_freq=50)
    train_envs = _envs(env_id, 2)
    train = Collector[CollectStats](
        algorithm, train_envs, VectorReplayBuffer(2000, len(train_envs)), exploration_noise=True
    )
    train.reset()
    train.collect(n_step=64)
    result = algorithm.run_training(
        OffPolicyTrainerParams(
            training_collector=train,
            test_collector=Collector[CollectStats](algorithm, _envs(env_id, 2)),
            max_epochs=1,
            epoch_num_steps=400,
            collection_step_num_env_steps=20,
            batch_size=32,
            test_step_num_episodes=2,
            show_progress=False,
            verbose=False,
        )
    )
    assert result.timing.total_time > 0
    assert (train.buffer.done > 0).any()  # at least one episode ended inside the buffer


def test_tianshou_ppo_plans_campaigns_with_one_categorical_per_segment():
    torch.manual_seed(0)
    env_id = "shopgym/CampaignPlanning-v0"
    env = gym.make(env_id, **TINY[env_id])
    nvec = env.action_space.nvec
    n_obs = int(np.prod(env.observation_space.shape))

    def per_segment(logits: torch.Tensor) -> torch.distributions.Distribution:
        by_segment = logits.view(*logits.shape[:-1], len(nvec), int(nvec[0]))
        return torch.distributions.Independent(torch.distributions.Categorical(logits=by_segment), 1)

    actor = DiscreteActor(
        preprocess_net=Net(state_shape=n_obs, hidden_sizes=[32]),
        action_shape=int(nvec.sum()),
        softmax_output=False,
    )
    policy = ProbabilisticActorPolicy(
        actor=actor,
        dist_fn=per_segment,
        action_space=env.action_space,
        action_scaling=False,
        action_bound_method=None,
    )
    critic = DiscreteCritic(preprocess_net=Net(state_shape=n_obs, hidden_sizes=[32]))
    algorithm = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=3e-4))
    train = Collector[CollectStats](algorithm, _envs(env_id, 2), VectorReplayBuffer(1000, 2))
    algorithm.run_training(
        OnPolicyTrainerParams(
            training_collector=train,
            test_collector=Collector[CollectStats](algorithm, _envs(env_id, 2)),
            max_epochs=1,
            epoch_num_steps=100,
            collection_step_num_env_steps=50,
            update_step_num_repetitions=1,
            batch_size=32,
            test_step_num_episodes=2,
            show_progress=False,
            verbose=False,
        )
    )
    train.reset()  # on-policy training empties the buffer after each update: collect once more to look
    train.collect(n_step=20)
    plans = train.buffer.act[: len(train.buffer)]
    assert plans.shape == (20, len(nvec)) and env.action_space.contains(plans[0].astype(np.int64))
    assert (train.buffer.done > 0).any()  # a 5-day episode ended inside the 10 steps per env
