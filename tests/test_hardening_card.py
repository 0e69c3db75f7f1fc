"""Issues 12 and 19: the whole policy card is integrity-checked, not only the model file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import sim  # noqa: F401 (registers the environments)
from experiments.cli import main
from policies.base import sealed
from policies.export import export_policy
from policies.registry import make_policy
from policies.runtime import CARD_FILE, ArtifactError, card_digest, load_policy

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


CARD_FIELDS = (
    "policy",
    "env_id",
    "features",
    "normalization",
    "actions",
    "model",
    "runtime_requires",
    "scenario",
    "training",
    "evaluation",
    "versions",
    "source",
    "exported_at",
    "parity",
)


def test_the_card_lists_what_its_hash_covers(artifact: Path):
    card = json.loads((artifact / CARD_FILE).read_text())
    assert set(card) == {"format", *CARD_FIELDS, "integrity"}  # a changed format is refused by name
    assert card["integrity"]["covers"] == "every field of the card except 'integrity'"
    assert card["integrity"]["sha256"] == card_digest(card)


@pytest.mark.parametrize("field", CARD_FIELDS)
def test_an_edit_to_any_card_field_is_refused(artifact: Path, tmp_path: Path, field: str):
    """The original failure: evaluation, parity, scenario, training, source and versions were not covered."""
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card[field] = {"note": "annotated by a reviewer"}
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)
    message = str(info.value)
    assert "does not match its integrity sha256" in message and "the card was edited" in message
    assert "\n" not in message and len(message) < 500


def test_an_added_card_field_is_refused(artifact: Path, tmp_path: Path):
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card["approved_by"] = "someone"
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="the card was edited"):
        load_policy(copy)


def test_a_re_signed_card_loads(artifact: Path, tmp_path: Path):
    """The hash detects edits; whoever re-signs with card_digest is trusted (README: not a signature)."""
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card["evaluation"] = {"note": "annotated by a reviewer"}
    card["integrity"]["sha256"] = card_digest(card)
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
    (tmp_path / "saved" / "policy.json").write_text(json.dumps(sealed(meta)))  # re-signed: past the hash
    code = main(["export", str(tmp_path / "saved"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "env_id" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
