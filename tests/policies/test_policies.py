"""Every policy kind: one factory, the evaluation loop, save/load round trips, SB3 reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import sim  # noqa: F401 (registers the environments)
from policies.base import Policy
from policies.evaluate import episode_frame, evaluate
from policies.registry import JSON_POLICIES, RL_KINDS, load_policy, make_policy

TARGETING = {
    "overrides": {"population.shoppers": 300, "population.acquisition_days": 5.0},
    "horizon_days": 10,
}
CAMPAIGN = {"overrides": {"population.shoppers": 300}, "horizon_days": 6}
#: Small RL budgets: enough updates to move the weights, fast enough for a unit test.
RL_SETTINGS = {
    # The default catalogue has no onboarding kinds: a first week from the incentives it has.
    "onboarding": {"steps": [[3, "free_shipping"], [8, "bonus_500_points"]]},
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 16, "buffer_size": 1000, "train_freq": 4},
    "maskable_ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "qrdqn": {"learning_starts": 16, "buffer_size": 1000, "train_freq": 4},
    "trpo": {"n_steps": 64, "batch_size": 32},
    "ars": {"n_delta": 2},
    "recurrent_ppo": {
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 1,
        "policy_kwargs": {"lstm_hidden_size": 16},
    },
    "thompson": {"likelihood": "gaussian"},  # margins, not conversions
}


def targeting() -> gym.Env:
    return gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)


def observations(env: gym.Env, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Real observations and masks from a random rollout."""
    obs, _ = env.reset(seed=11)
    rng = np.random.default_rng(0)
    seen, masks = [], []
    for _ in range(n):
        mask = env.unwrapped.action_masks()
        seen.append(obs)
        masks.append(mask)
        obs, _, terminated, truncated, _ = env.step(rng.choice(np.flatnonzero(mask)))
        if terminated or truncated:
            obs, _ = env.reset(seed=12)
    return np.array(seen), np.array(masks)


def trained(kind: str, env: gym.Env, seed: int = 0) -> Policy:
    policy = make_policy(kind, env, seed=seed, **RL_SETTINGS.get(kind, {}))
    if kind in RL_KINDS:
        policy.learn(128)  # type: ignore[attr-defined]
    return policy


@pytest.mark.parametrize("kind", [*JSON_POLICIES, *RL_KINDS])
def test_save_and_load_round_trip_gives_identical_actions(kind: str, tmp_path: Path):
    env = targeting()
    obs, masks = observations(env)
    policy = trained(kind, env)
    if kind in JSON_POLICIES:  # learners: learn something first, so the state is not trivial
        policy.update(obs[:50], np.arange(50) % 3, np.linspace(-1, 1, 50), np.zeros(50))
    policy.save(tmp_path)
    loaded = load_policy(tmp_path)
    for deterministic in (True, False):
        # SB3 samples stochastic actions from torch's global generator; JSON policies own theirs.
        torch.manual_seed(0)
        a, _ = policy.predict(obs, deterministic=deterministic, action_masks=masks)
        torch.manual_seed(0)
        b, _ = loaded.predict(obs, deterministic=deterministic, action_masks=masks)
        np.testing.assert_array_equal(a, b)
    if kind in JSON_POLICIES:
        assert "pickle" not in (tmp_path / "policy.json").read_text()
        json.loads((tmp_path / "policy.json").read_text())  # plain JSON


@pytest.mark.parametrize("kind", RL_KINDS)
def test_sb3_training_twice_with_the_same_seed_gives_identical_actions(kind: str):
    obs, masks = observations(targeting())
    a, _ = trained(kind, targeting(), seed=5).predict(obs, deterministic=True, action_masks=masks)
    b, _ = trained(kind, targeting(), seed=5).predict(obs, deterministic=True, action_masks=masks)
    np.testing.assert_array_equal(a, b)


def test_maskable_ppo_never_chooses_a_masked_incentive():
    obs, masks = observations(targeting())
    policy = trained("maskable_ppo", targeting())
    actions, _ = policy.predict(obs, action_masks=masks)
    assert masks[np.arange(len(actions)), actions].all()


def test_evaluation_loop_runs_every_policy_with_common_random_numbers():
    env = targeting()
    rows = {}
    for kind in ("none", "blanket", "segment_rules"):
        records = evaluate(make_policy(kind, env), env, episodes=2, seed=7)
        rows[kind] = episode_frame(records)
    for frame in rows.values():
        assert list(frame["episode_seed"]) == [7, 8]
        assert {"return", "margin", "ltv_mean", "late_delivery_share", "incentive_cost"} <= set(frame)
    assert (rows["none"]["incentive_cost"] == 0).all()
    assert (rows["blanket"]["incentive_cost"] > 0).all()
    again = episode_frame(evaluate(make_policy("none", env), env, episodes=2, seed=7))
    assert again.equals(rows["none"])


def test_evaluation_feeds_delayed_attributed_feedback_to_learners():
    env = targeting()
    fed: list[int] = []
    policy = make_policy("random", env, seed=3)
    policy.update = lambda obs, actions, rewards, costs=None: fed.append(len(actions))  # type: ignore[method-assign]
    records = evaluate(policy, env, episodes=1, seed=0, learn=True)
    # Every decision's window closes by truncation: each decision is fed back exactly once.
    assert sum(fed) == records[0].row["length"]


def test_per_segment_environment_gets_one_incentive_per_segment():
    env = gym.make("shopgym/CampaignPlanning-v0", **CAMPAIGN)
    records = evaluate(make_policy("segment_rules", env), env, episodes=1, seed=0)
    assert records[0].row["length"] == 6
    assert records[0].daily is not None and len(records[0].daily) >= 6
    assert {head for head, _ in records[0].incentive_mix} == {
        "new",
        "active_mid",
        "high_value_at_risk",
        "low_value",
        "cart_abandoners",
    }


def test_training_logs_ltv_margin_and_fulfillment_metrics_to_tensorboard(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=120)
    policy = make_policy("ppo", env, seed=0, tensorboard_log=tmp_path, n_steps=256, batch_size=64, n_epochs=1)
    policy.learn(512)  # type: ignore[attr-defined]
    (events,) = tmp_path.rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"shop/ltv_mean", "shop/margin", "shop/incentive_cost", "shop/late_delivery_share"} <= tags


@pytest.mark.parametrize("kind", ["ppo", "a2c", "dqn"])
def test_unmasked_sb3_models_choose_only_allowed_incentives_when_given_masks(kind: str):
    obs, masks = observations(targeting())
    policy = trained(kind, targeting())
    for deterministic in (True, False):
        actions, _ = policy.predict(obs, deterministic=deterministic, action_masks=masks)
        assert masks[np.arange(len(actions)), actions].all()
    free, _ = policy.predict(obs, deterministic=True)
    masked, _ = policy.predict(obs, deterministic=True, action_masks=np.ones_like(masks))
    np.testing.assert_array_equal(free, masked)  # all allowed: the model's own greedy choice
