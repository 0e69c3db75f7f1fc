"""experiments.zoo_compare reads rl-zoo3 (SB3) PPO zips without unpickling anything (issue 19)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from experiments.zoo_compare import ZooModelError, load_zoo_ppo, main
from sim.envs.wrappers import MaskInObservation


class _Plant:
    """Unpickling this object creates the marker file: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def _env() -> MaskInObservation:
    return MaskInObservation(gym.make("shopgym/ShopperJourney-v0", horizon_days=90))


@pytest.fixture(scope="module")
def zoo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO(
        "MlpPolicy", _env(), n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu",
        policy_kwargs={"net_arch": {"pi": [16, 8], "vf": [12]}, "activation_fn": torch.nn.ReLU},
    )  # fmt: skip
    model.learn(64)
    path = tmp_path_factory.mktemp("zoo") / "model.zip"
    model.save(path)
    return path


def test_a_saved_ppo_zip_loads_without_pickle_and_decides_as_sb3_does(zoo_zip: Path):
    from stable_baselines3 import PPO

    reference = PPO.load(zoo_zip, device="cpu")  # the test's own file: trusted here only
    ours = load_zoo_ppo(zoo_zip, _env())
    env = _env()
    obs, _ = env.reset(seed=3)
    observations = np.stack([env.observation_space.sample() for _ in range(200)] + [obs])
    assert np.array_equal(
        reference.predict(observations, deterministic=True)[0],
        ours.predict(observations, deterministic=True)[0],
    )
    for a, b in zip(reference.policy.state_dict().values(), ours.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))
    return target


def test_a_planted_pickle_in_policy_pth_never_runs_and_is_one_line(
    zoo_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"x": _Plant(marker)}, buffer)  # torch.save pickles the object
    bad = _rewrite(zoo_zip, tmp_path / "bad.zip", {"policy.pth": buffer.getvalue(), "data": b"{}"})
    assert main([str(bad), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "policy.pth is not a plain state dict of tensors" in err


def test_the_pickled_fields_of_data_are_never_read(zoo_zip: Path, tmp_path: Path):
    marker = tmp_path / "pwned"
    planted = pickle.dumps(_Plant(marker)).hex()
    data = f'{{"observation_space": {{":serialized:": "{planted}"}}}}'.encode()
    model = load_zoo_ppo(_rewrite(zoo_zip, tmp_path / "data.zip", {"data": data}), _env())
    assert model is not None and not marker.exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a zip", "not a zip file"),
        (None, "no policy.pth in the zip"),
    ],
)
def test_bad_model_files_are_one_line(tmp_path: Path, content: bytes | None, needle: str):
    path = tmp_path / "model.zip"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data", b"{}")
    else:
        path.write_bytes(content)
    with pytest.raises(ZooModelError) as info:
        load_zoo_ppo(path, _env())
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_activation_name_is_refused(zoo_zip: Path, tmp_path: Path):
    data = b'{"policy_kwargs": {"activation_fn": "<class \'os.system\'>"}}'
    with pytest.raises(ZooModelError, match="not supported"):
        load_zoo_ppo(_rewrite(zoo_zip, tmp_path / "act.zip", {"data": data}), _env())
