"""RLlib's PPO trains on every env id with remote env runners and two envs per runner.

A remote env runner is a fresh process that has not imported ``sim``, so the plain id is
unknown there. Either name the module in the id (``"sim:shopgym/ShopperJourney-v0"``:
gymnasium imports it first) or register a creator with ``ray.tune.registry.register_env``.
Both are tested. Slow: Ray starts worker processes (about a minute on two cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import pytest

from tests.clients.small import TINY

ray = pytest.importorskip("ray", reason="optional client: pip install 'shopgym[clients]'")
pytest.importorskip("ray.rllib", reason="optional client: pip install 'shopgym[clients]'")
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _make_journey(config: dict[str, Any]) -> gym.Env:
    import sim  # noqa: F401 (runs in the env runner's process: registers the shopgym ids)

    return gym.make("shopgym/ShopperJourney-v0", **config)


def _train_twice(env: str, env_config: dict[str, Any], runners: int) -> dict[str, Any]:
    config = (
        PPOConfig()
        .environment(env, env_config=env_config)
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=2, rollout_fragment_length=64)
        .training(train_batch_size_per_learner=128 * runners, minibatch_size=64, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    return results[-1]


def test_rllib_ppo_with_register_env_and_two_remote_runners(ray_session: None):
    register_env("shopgym-journey", _make_journey)
    result = _train_twice("shopgym-journey", TINY["shopgym/ShopperJourney-v0"], runners=2)
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 512
    assert result["env_runners"]["num_episodes_lifetime"] >= 2


@pytest.mark.parametrize("env_id", ["shopgym/IncentiveTargeting-v0", "shopgym/CampaignPlanning-v0"])
def test_rllib_ppo_with_the_sim_prefixed_id(ray_session: None, env_id: str):
    result = _train_twice(f"sim:{env_id}", TINY[env_id], runners=1)
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 256
    assert result["env_runners"]["num_episodes_lifetime"] >= 1
