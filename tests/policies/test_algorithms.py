"""Every discrete-action algorithm of stable-baselines3 and sb3-contrib trains, saves without pickle,
loads and evaluates; RecurrentPPO carries its LSTM state through a journey."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401 (registers the environments)
from policies.evaluate import evaluate
from policies.registry import RL_KINDS, load_policy, make_policy

#: A few hundred steps each: enough to move every algorithm's weights.
TINY: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 16, "buffer_size": 500, "train_freq": 4},
    "maskable_ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},
    "qrdqn": {"learning_starts": 16, "buffer_size": 500, "train_freq": 4},
    "trpo": {"n_steps": 64, "batch_size": 32},
    "ars": {"n_delta": 2},
    "recurrent_ppo": {
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 1,
        "policy_kwargs": {"lstm_hidden_size": 16},
    },
}


def journey() -> gym.Env:
    return gym.make("shopgym/ShopperJourney-v0", horizon_days=120)


def test_every_named_algorithm_is_a_kind():
    assert set(TINY) == set(RL_KINDS)


@pytest.mark.parametrize("kind", RL_KINDS)
def test_algorithm_trains_saves_without_pickle_loads_and_evaluates_alike(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    env = journey()
    policy = make_policy(kind, env, seed=0, **TINY[kind])
    before = {k: v.clone() for k, v in policy.model.policy.state_dict().items()}  # type: ignore[attr-defined]
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    policy.learn(256)  # type: ignore[attr-defined]
    assert not list(temp.iterdir()), "training left files in the temp dir (an SB3 logger folder?)"
    monkeypatch.undo()
    temp.rmdir()
    after = policy.model.policy.state_dict()  # type: ignore[attr-defined]
    assert any(not (before[k] == after[k]).all() for k in before), f"{kind}: training moved no weight"
    policy.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "weights.npz"]
    with zipfile.ZipFile(tmp_path / "weights.npz") as archive:  # numpy arrays only, no pickled object
        assert all(name.endswith(".npy") for name in archive.namelist())
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as arrays:
        assert arrays.files
    assert json.loads((tmp_path / "policy.json").read_text())["kind"] == kind
    loaded = load_policy(tmp_path)
    first = evaluate(policy, env, 2, seed=3, learn=False, deterministic=True)
    again = evaluate(loaded, env, 2, seed=3, learn=False, deterministic=True)
    assert [r.row["return"] for r in first] == [r.row["return"] for r in again]
    assert all(np.isfinite(r.row["margin"]) for r in first)


def test_recurrent_ppo_carries_its_lstm_state_through_a_journey_and_resets_at_the_next():
    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=365)  # journeys of seeds 5 and 6: 18 and 6 steps
    policy = make_policy("recurrent_ppo", env, seed=0, **TINY["recurrent_ppo"])
    policy.learn(128)  # type: ignore[attr-defined]
    calls: list[tuple[Any, bool, Any]] = []
    predict = policy.predict

    def recording(obs, state=None, episode_start=None, **kwargs):
        actions, new_state = predict(obs, state=state, episode_start=episode_start, **kwargs)
        calls.append((state, bool(np.asarray(episode_start).all()), new_state))
        return actions, new_state

    policy.predict = recording  # type: ignore[method-assign]
    records = evaluate(policy, env, 2, seed=5, learn=False, deterministic=True)
    lengths = [r.row["length"] for r in records]
    assert len(calls) == sum(lengths) and min(lengths) >= 2
    starts = [i for i, (_, start, _) in enumerate(calls) if start]
    assert starts == [0, lengths[0]]  # each journey's first decision starts the LSTM afresh
    for i in range(1, len(calls)):
        if i not in starts:  # within a journey, the state returned is the one passed next
            np.testing.assert_array_equal(calls[i][0][0], calls[i - 1][2][0])
    assert np.abs(calls[1][0][0]).sum() > 0


def test_recurrent_ppo_exports_its_lstm_state_as_inputs_and_outputs_with_parity(tmp_path: Path):
    import onnx

    from policies.export import export_policy
    from policies.runtime import ArtifactError
    from policies.runtime import load_policy as load_artifact

    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=365)
    policy = make_policy("recurrent_ppo", env, seed=0, **TINY["recurrent_ppo"])
    policy.learn(256)  # type: ignore[attr-defined]
    policy.save(tmp_path / "saved")
    card = json.loads(export_policy(tmp_path / "saved", tmp_path / "artifact", check_samples=500).read_text())
    assert card["parity"]["agreement"] == 1.0 and card["parity"]["steps_per_journey"] == 10
    graph = onnx.load(tmp_path / "artifact" / "policy.onnx").graph
    assert [i.name for i in graph.input] == ["obs", "state_h", "state_c", "episode_start"]
    assert [o.name for o in graph.output] == ["log_probs", "state_h_out", "state_c_out"]
    runtime = load_artifact(tmp_path / "artifact")
    # A real journey, step by step: the artifact carrying its state chooses what the policy does.
    obs, _ = env.reset(seed=5)
    state, rt_state, start, steps = None, runtime.initial_state(1), np.ones(1, dtype=np.bool_), 0
    scales = np.asarray(runtime.layout.obs_scales)
    done = False
    while not done:
        want, state = policy.predict(obs, state=state, episode_start=start, deterministic=True)
        got, rt_state = runtime.step((obs.astype(np.float64) * scales)[None], rt_state, start)
        assert int(got[0]) == int(want)
        obs, _, terminated, truncated, _ = env.step(int(want))
        done, start, steps = terminated or truncated, np.zeros(1, dtype=np.bool_), steps + 1
    assert steps >= 5
    with pytest.raises(ArtifactError, match="this artifact is recurrent"):
        runtime.decide(dict.fromkeys(runtime.feature_names, 0.0))
