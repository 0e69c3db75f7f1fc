"""torchrl wraps every env id unchanged: ``check_env_specs`` and rollouts across episode ends."""

from __future__ import annotations

import pytest

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs import ENV_IDS
from tests.clients.small import TINY

pytest.importorskip("torchrl", reason="optional client: pip install 'shopgym[clients]'")
from torchrl.envs import GymEnv
from torchrl.envs.libs.gym import set_gym_backend
from torchrl.envs.utils import check_env_specs


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_torchrl_check_env_specs_and_a_rollout_through_resets(env_id: str):
    with set_gym_backend("gymnasium"):
        env = GymEnv(env_id, **TINY[env_id])
    check_env_specs(env, seed=0)
    rollout = env.rollout(200, break_when_any_done=False)
    assert rollout.batch_size[0] == 200
    assert rollout["next", "done"].sum() >= 1  # torchrl reset the env itself at least once
