"""Issue 12: the policy card's decision-relevant content is integrity-checked, not only the model file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import sim  # noqa: F401 (registers the environments)
from experiments.cli import main
from policies.export import export_policy
from policies.registry import make_policy
from policies.runtime import CARD_FILE, ArtifactError, load_policy

OVERRIDES = {"population.shoppers": 200, "population.acquisition_days": 3.0}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("card")
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=5)
    make_policy("segment_rules", env).save(where / "saved")
    env.close()
    return export_policy(where / "saved", where / "out", overrides=OVERRIDES, check_samples=50).parent


def _swap_none_and_coupon(card: dict[str, Any]) -> None:
    names = card["actions"]["names"]
    i, j = names.index("none"), next(k for k, n in enumerate(names) if n.startswith("coupon"))
    names[i], names[j] = names[j], names[i]


def _scale(card: dict[str, Any]) -> None:
    card["features"][0]["scale"] *= 100


def _order(card: dict[str, Any]) -> None:
    card["features"][0], card["features"][1] = card["features"][1], card["features"][0]


def _clip(card: dict[str, Any]) -> None:
    card["normalization"]["clip"] = [0.0, 0.5]


def _drop_integrity(card: dict[str, Any]) -> None:
    del card["integrity"]


@pytest.mark.parametrize("edit", [_swap_none_and_coupon, _scale, _order, _clip, _drop_integrity])
def test_edited_card_is_refused(artifact: Path, tmp_path: Path, edit: Any):
    """The original failure: these edits loaded and silently changed up to 1,994 of 2,000 decisions."""
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    edit(card)
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=r"integrity|edited"):
        load_policy(copy)


def test_informational_card_sections_may_change(artifact: Path, tmp_path: Path):
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card["evaluation"] = {"note": "annotated by a reviewer"}
    (copy / CARD_FILE).write_text(json.dumps(card))
    assert load_policy(copy).kind == "segment_rules"


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[]", b"[" * 50_000, b'{"format": 1}', b"NaN"])
def test_malformed_cards_raise_artifact_error(tmp_path: Path, content: bytes):
    (tmp_path / CARD_FILE).write_bytes(content)
    with pytest.raises(ArtifactError):
        load_policy(tmp_path)


def test_export_of_a_tampered_saved_policy_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=5)
    make_policy("segment_rules", env).save(tmp_path / "saved")
    env.close()
    meta = json.loads((tmp_path / "saved" / "policy.json").read_text())
    meta["env"]["env_id"] = "this:Foo-v0"
    (tmp_path / "saved" / "policy.json").write_text(json.dumps(meta))
    code = main(["export", str(tmp_path / "saved"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "env_id" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
