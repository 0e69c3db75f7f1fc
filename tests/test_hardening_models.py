"""Issue 12, security: saved policies and artifacts never execute code, import modules or escape.

Each test crafts the file a hostile user would hand over and checks it is refused with one
clear error, before anything in it runs.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401 (registers the environments)
from policies.base import EnvSpec, PolicyFileError, sealed
from policies.registry import load_policy, make_policy
from policies.rl import check_hyperparams

TARGETING = {"overrides": {"population.shoppers": 200, "population.acquisition_days": 3.0}, "horizon_days": 5}


class _Marker:
    """Unpickling this writes a marker file: the proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "pwned"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def saved_ppo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
    policy = make_policy("ppo", env, seed=0, n_steps=32, batch_size=16, n_epochs=1)
    policy.learn(32)  # type: ignore[attr-defined]
    where = tmp_path_factory.mktemp("ppo")
    policy.save(where)
    env.close()
    return where


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_saved_sb3_policy_holds_no_pickle_and_round_trips(saved_ppo: Path):
    names = sorted(p.name for p in saved_ppo.iterdir())
    assert names == ["policy.json", "weights.npz"]
    with zipfile.ZipFile(saved_ppo / "weights.npz") as archive:
        for name in archive.namelist():
            header = archive.read(name)[:128]
            assert b"'descr': '<f4'" in header or b"'descr': '<f8'" in header  # plain float arrays
    loaded = load_policy(saved_ppo)
    obs = np.zeros((3, len(loaded.spec.obs_fields)), dtype=np.float32)  # type: ignore[attr-defined]
    actions, _ = loaded.predict(obs, deterministic=True)
    assert actions.shape == (3,)


def test_sb3_model_zip_with_a_pickle_is_never_unpickled(saved_ppo: Path, tmp_path: Path):
    """The original failure: SB3's model.zip 'data' entry carried a pickle that ran on load."""
    marker = tmp_path / "marker.txt"
    bad = _copy(saved_ppo, tmp_path / "bad")
    payload = pickle.dumps(_Marker(str(marker)))
    data = {"policy_class": {":type:": "<class 'abc'>", ":serialized:": payload.hex()}}
    with zipfile.ZipFile(bad / "model.zip", "w") as archive:
        archive.writestr("data", json.dumps(data))
    meta = json.loads((bad / "policy.json").read_text())
    old_style = {k: v for k, v in meta.items() if not k.startswith("weights")} | {"model": "model.zip"}
    (bad / "policy.json").write_text(json.dumps(sealed(old_style)))
    with pytest.raises(PolicyFileError, match="never loads"):
        load_policy(bad)
    assert not marker.exists()


def test_weights_archive_with_a_pickled_object_array_is_refused(saved_ppo: Path, tmp_path: Path):
    marker = tmp_path / "marker.txt"
    bad = _copy(saved_ppo, tmp_path / "bad")
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([_Marker(str(marker))], dtype=object))
    (bad / "weights.npz").write_bytes(buffer.getvalue())
    meta = json.loads((bad / "policy.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))
    with pytest.raises(PolicyFileError, match=r"dtype 'object'; weights are float16/32/64 only"):
        load_policy(bad)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../elsewhere/weights.npz", "/etc/passwd", "..", "sub/weights.npz", 5])
def test_model_path_outside_its_directory_is_refused(saved_ppo: Path, tmp_path: Path, name: object):
    bad = _copy(saved_ppo, tmp_path / "dir" / "bad")
    (tmp_path / "dir" / "elsewhere").mkdir()
    shutil.copy(saved_ppo / "weights.npz", tmp_path / "dir" / "elsewhere" / "weights.npz")
    meta = json.loads((bad / "policy.json").read_text())
    meta["weights"] = name
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))
    with pytest.raises(PolicyFileError, match="weights"):
        load_policy(bad)


def test_swapped_weights_file_is_refused(saved_ppo: Path, tmp_path: Path):
    bad = _copy(saved_ppo, tmp_path / "bad")
    data = bytearray((bad / "weights.npz").read_bytes())
    data[-200] ^= 1
    (bad / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match="sha256"):
        load_policy(bad)


def test_env_id_naming_a_module_is_refused_without_importing_it(saved_ppo: Path, tmp_path: Path):
    """The original failure: env_id 'this:Foo-v0' made gymnasium import the module ``this``."""
    module = tmp_path / "shopgym_evil_module.py"
    marker = tmp_path / "imported.txt"
    module.write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        for kind_dir in (saved_ppo,):
            bad = _copy(kind_dir, tmp_path / "bad")
            meta = json.loads((bad / "policy.json").read_text())
            meta["env"]["env_id"] = "shopgym_evil_module:Foo-v0"
            (bad / "policy.json").write_text(json.dumps(sealed(meta)))
            with pytest.raises(PolicyFileError, match="env_id"):
                load_policy(bad)
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists()
    assert "shopgym_evil_module" not in sys.modules


def test_json_policy_with_a_foreign_env_id_is_refused(tmp_path: Path):
    env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
    make_policy("segment_rules", env).save(tmp_path)
    env.close()
    meta = json.loads((tmp_path / "policy.json").read_text())
    meta["env"]["env_id"] = "this:Foo-v0"
    (tmp_path / "policy.json").write_text(json.dumps(sealed(meta)))
    with pytest.raises(PolicyFileError, match="env_id"):
        load_policy(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe not utf-8", b"[1, 2]", b"{" * 100_000, b'{"kind": "ppo"}', b'{"kind": "evil"}'],
)
def test_malformed_policy_files_raise_one_policy_file_error(tmp_path: Path, content: bytes):
    (tmp_path / "policy.json").write_bytes(content)
    with pytest.raises(PolicyFileError) as info:
        load_policy(tmp_path)
    assert len(str(info.value)) < 500


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"n_steps": 0}, "n_steps"),
        ({"batch_size": 1}, "batch_size"),
        ({"learning_rate": "x"}, "learning_rate"),
        ({"gamma": 2}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"policy": "CnnPolicy"}, "policy"),
        ({"policy_kwargs": {"activation_fn": "os.system"}}, "activation_fn"),
        ({"policy_kwargs": {"net_arch": [10**9]}}, "net_arch"),
        ({"env": "x"}, "env"),
    ],
)
def test_bad_ppo_hyperparameters_name_the_field(params: dict, field: str):
    with pytest.raises(ValueError, match=field):
        check_hyperparams("ppo", params)


def test_dqn_buffer_size_zero_is_refused():
    with pytest.raises(ValueError, match="buffer_size"):
        check_hyperparams("dqn", {"buffer_size": 0})


def test_env_spec_from_file_is_validated():
    good = {
        "env_id": "shopgym/IncentiveTargeting-v0",
        "obs_fields": ["a"],
        "obs_scales": [1.0],
        "obs_clip": [0.0, 10.0],
        "action_names": ["none"],
        "action_kinds": ["none"],
        "action_values": [0.0],
        "heads": ["shopper"],
    }
    assert EnvSpec.from_dict(good).obs_fields == ("a",)
    for key, value in [("obs_scales", [0.0]), ("obs_clip", [1.0, 0.0]), ("obs_fields", [1]), ("heads", [])]:
        with pytest.raises(PolicyFileError):
            EnvSpec.from_dict(good | {key: value})


def test_weights_archive_that_unpacks_huge_is_refused_before_decompression(
    saved_ppo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import hashlib

    bad = _copy(saved_ppo, tmp_path / "bad")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.npy", b"\0" * (64 * 1024 * 1024))  # stands in for gigabytes
    (bad / "weights.npz").write_bytes(buffer.getvalue())
    meta = json.loads((bad / "policy.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))
    monkeypatch.setattr("policies.rl.MAX_WEIGHTS_BYTES", 1024 * 1024)
    with pytest.raises(PolicyFileError, match="a deflate bomb, not weights"):
        load_policy(bad)
    with zipfile.ZipFile(bad / "weights.npz", "w") as archive:  # stored: no ratio, only its size
        archive.writestr("bomb.npy", b"\0" * (2 * 1024 * 1024))
    meta["weights_sha256"] = hashlib.sha256((bad / "weights.npz").read_bytes()).hexdigest()
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))
    with pytest.raises(PolicyFileError, match=r"unpacked \(declared, up to 'bomb.npy'\); at most 1,048,576"):
        load_policy(bad)
