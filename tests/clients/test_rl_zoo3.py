"""rl-zoo3 trains and plays back the envs with the shipped hyperparameter file (configs/rl_zoo3/ppo.yml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rl_zoo3", reason="optional client: its own venv, see requirements/legacy-clients.in")

ROOT = Path(__file__).resolve().parents[2]
HYPERPARAMS = ROOT / "configs" / "rl_zoo3" / "ppo.yml"


def _zoo(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args, "--gym-packages", "sim"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_hyperparameter_file_covers_the_discrete_envs_and_observes_the_mask():
    sections = yaml.safe_load(HYPERPARAMS.read_text())
    assert set(sections) == {"shopgym/ShopperJourney-v0", "shopgym/IncentiveTargeting-v0"}
    for section in sections.values():
        assert section["env_wrapper"] == "sim.envs.wrappers.MaskInObservation"


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["shopgym/ShopperJourney-v0", "shopgym/IncentiveTargeting-v0"])
def test_rl_zoo3_trains_and_enjoys_with_the_shipped_hyperparameters(env_id: str, tmp_path: Path):
    env = ["--algo", "ppo", "--env", env_id]
    _zoo(
        "rl_zoo3.train",
        *env,
        "--conf-file",
        str(HYPERPARAMS),
        "-n",
        "2048",
        "-f",
        "logs",
        "--seed",
        "0",
        cwd=tmp_path,
    )
    folder = env_id.replace("/", "-")
    assert (tmp_path / "logs" / "ppo" / f"{folder}_1" / f"{folder}.zip").is_file()
    out = _zoo(
        "rl_zoo3.enjoy",
        *env,
        "-f",
        "logs",
        "--exp-id",
        "1",
        "-n",
        "1200",
        "--no-render",
        "--deterministic",
        cwd=tmp_path,
    )
    assert "Episode Reward" in out  # at least one episode ended and was reported
