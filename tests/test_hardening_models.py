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
from experiments.cli import main
from policies.base import CONTENT_HASH_KEY, EnvSpec, PolicyFileError, policy_file_digest, sealed
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


# ---- issue 19 §4: saved policy.json content hash, memory bombs, bad dtypes -------------------------
def _resign_weights(bad: Path, data: bytes) -> None:
    """Plant ``data`` as weights.npz and re-sign policy.json with the project's own hashes."""
    import hashlib

    (bad / "weights.npz").write_bytes(data)
    meta = json.loads((bad / "policy.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) < 600 and "Traceback" not in message
    return message


@pytest.mark.parametrize("kind", ["segment_rules", "thompson", "lin_ucb", "ppo"])
def test_an_edited_saved_policy_is_refused_by_its_content_hash(saved_ppo: Path, tmp_path: Path, kind: str):
    if kind == "ppo":
        where = _copy(saved_ppo, tmp_path / "p")
    else:
        env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
        where = make_policy(kind, env).save(tmp_path / "p").parent
        env.close()
    meta = json.loads((where / "policy.json").read_text())
    assert meta[CONTENT_HASH_KEY] == policy_file_digest(meta)
    assert sorted(p.name for p in where.iterdir()) in (["policy.json"], ["policy.json", "weights.npz"])
    meta["seed"] = 7  # a plausible value: only the hash tells
    (where / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyFileError) as info:
        load_policy(where)
    assert "content does not match its content_sha256" in _one_line(info.value)
    del meta[CONTENT_HASH_KEY]
    (where / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyFileError, match="content_sha256 missing"):
        load_policy(where)


def test_export_of_an_edited_saved_bandit_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
    make_policy("ucb1", env).save(tmp_path / "saved")
    env.close()
    meta = json.loads((tmp_path / "saved" / "policy.json").read_text())
    meta["state"]["means"][2] = 1e6  # finite and the right shape: only the hash catches it
    (tmp_path / "saved" / "policy.json").write_text(json.dumps(meta))
    code = main(["export", str(tmp_path / "saved"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "content does not match" in err
    assert not (tmp_path / "out").exists()


def test_thompson_means_of_the_wrong_length_are_refused_even_when_re_signed(tmp_path: Path):
    env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
    make_policy("thompson", env).save(tmp_path)
    env.close()
    meta = json.loads((tmp_path / "policy.json").read_text())
    meta["state"]["means"] = [0.5, 0.5]
    (tmp_path / "policy.json").write_text(json.dumps(sealed(meta)))
    with pytest.raises(PolicyFileError) as info:
        load_policy(tmp_path)
    assert "state.means: shape (2,); expected" in _one_line(info.value)


def _wide_spec_meta(tmp_path: Path, kind: str, n_actions: int, heads: int, fields: int | None = None) -> Path:
    env = gym.make("shopgym/IncentiveTargeting-v0", **TARGETING)
    make_policy(kind, env).save(tmp_path)
    env.close()
    meta = json.loads((tmp_path / "policy.json").read_text())
    spec = meta["env"]
    spec["action_names"] = ["none", *(f"i{k}" for k in range(1, n_actions))]
    spec["action_kinds"] = ["none"] * n_actions
    spec["action_values"] = [0.0] * n_actions
    spec["heads"] = [f"h{k}" for k in range(heads)] if heads > 1 else ["shopper"]
    if fields is not None:
        spec["obs_fields"] = [f"f{k}" for k in range(fields)]
        spec["obs_scales"] = [1.0] * fields
    meta.pop("state", None)
    (tmp_path / "policy.json").write_text(json.dumps(sealed(meta)))
    return tmp_path


def test_a_policy_file_declaring_200000_incentives_x_64_heads_is_refused_before_allocating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """The original failure: export sized masks of 2,000 x 64 x 200,000 booleans (25 GB) for parity."""
    saved = _wide_spec_meta(tmp_path / "saved", "blanket", 200_000, 64)
    with pytest.raises(PolicyFileError) as info:
        load_policy(saved)
    assert "200,000 incentives declared; at most 1,024 (MAX_INCENTIVES)" in _one_line(info.value)
    code = main(["export", str(saved), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "MAX_INCENTIVES" in err
    assert not (tmp_path / "out").exists()


def test_a_linear_bandit_too_large_to_allocate_is_refused_before_its_matrices(tmp_path: Path):
    saved = _wide_spec_meta(tmp_path, "lin_ucb", 1024, 1, fields=4096)
    with pytest.raises(PolicyFileError) as info:
        load_policy(saved)
    assert "(MAX_LINEAR_STATE_VALUES)" in _one_line(info.value)


def test_a_1mb_deflate_bomb_weights_npz_is_refused_before_decompression(saved_ppo: Path, tmp_path: Path):
    """A real bomb: a valid .npy header for 1 GiB of float32 zeros, deflated to about 1 MB."""
    bad = _copy(saved_ppo, tmp_path / "bad")
    n = 2**28
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    buffer = io.BytesIO()
    chunk = bytes(16 * 1024 * 1024)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo("mlp_extractor.policy_net.0.weight.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(n * 4 // len(chunk)):
                member.write(chunk)
    assert len(buffer.getvalue()) < 2 * 1024 * 1024
    _resign_weights(bad, buffer.getvalue())
    with pytest.raises(PolicyFileError) as info_:
        load_policy(bad)
    assert "at most 50x (MAX_COMPRESSION_RATIO): a deflate bomb, not weights" in _one_line(info_.value)


def _npy_member(descr: str, shape: tuple[int, ...], payload: bytes, name: str = "w.npy") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, header.getvalue() + payload)
    return buffer.getvalue()


def test_a_npy_header_declaring_10_to_the_11_elements_is_refused_before_allocating(
    saved_ppo: Path, tmp_path: Path
):
    """The original failure: numpy allocated the header's 800 GB before reading (MemoryError traceback)."""
    bad = _copy(saved_ppo, tmp_path / "bad")
    _resign_weights(bad, _npy_member("<f8", (10**11,), b"\0" * 64))
    with pytest.raises(PolicyFileError) as info:
        load_policy(bad)
    message = _one_line(info.value)
    assert "declares shape (100000000000,) (800,000,000,000 bytes) but holds 64; a forged header" in message


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.array(["a", "b"]), "dtype '<U1'; weights are float16/32/64 only"),
        (
            np.array(["2020-01-01"], dtype="datetime64[ns]"),
            "dtype 'datetime64[ns]'; weights are float16/32/64",
        ),
        (np.array([1, 2], dtype=np.int64), "dtype 'int64'; weights are float16/32/64 only"),
        (np.full(3, 3e38, dtype=np.float32), "holds 3e+38; weights are finite and at most 1e+06"),
        (np.array([np.nan], dtype=np.float32), "holds nan; weights are finite"),
    ],
    ids=["str", "datetime64", "int64", "3e38", "nan"],
)
def test_weights_of_a_bad_dtype_or_overflowing_size_are_one_line(
    saved_ppo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, needle: str
):
    """The original failures: TypeError tracebacks (str, datetime64); NaN scores at export (3e38)."""
    bad = _copy(saved_ppo, tmp_path / "bad")
    _resign_weights(bad, _npz({"action_net.weight": array}))
    with pytest.raises(PolicyFileError) as info:
        load_policy(bad)
    assert needle in _one_line(info.value)
    code = main(["export", str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "out").exists()


def test_a_nul_byte_in_a_weights_name_is_one_line(saved_ppo: Path, tmp_path: Path):
    bad = _copy(saved_ppo, tmp_path / "bad")
    data = _npz({"actionXnet.weight": np.zeros(2, dtype=np.float32)})
    _resign_weights(bad, data.replace(b"actionXnet", b"action\0net"))
    with pytest.raises(PolicyFileError) as info:
        load_policy(bad)
    assert "array name 'action' not allowed; plain names like" in _one_line(info.value)


def test_net_arch_at_its_maximum_with_small_weights_is_refused_before_building(
    saved_ppo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """16 layers of 4,096 units is ~2 GB with its optimizer; the file's weights could never fill it."""
    import inspect

    from policies import rl

    bad = _copy(saved_ppo, tmp_path / "bad")
    meta = json.loads((bad / "policy.json").read_text())
    meta["params"]["policy_kwargs"] = {"net_arch": {"pi": [4096] * 16, "vf": [4096] * 16}}
    (bad / "policy.json").write_text(json.dumps(sealed(meta)))

    original = rl.ALGORITHMS["ppo"]

    class NeverBuilt(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the network was built before the refusal")

    NeverBuilt.__init__.__signature__ = inspect.signature(original.__init__)  # type: ignore[attr-defined]
    monkeypatch.setitem(rl.ALGORITHMS, "ppo", NeverBuilt)
    with pytest.raises(PolicyFileError) as info:
        load_policy(bad)
    assert "asks for at least 503,316,480 network weights, weights.npz holds" in _one_line(info.value)
