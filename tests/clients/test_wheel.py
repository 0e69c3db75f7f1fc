"""A wheel built from the repository works outside the checkout: every env, ``simulate``, ``run`` by name.

The wheel is built from a copy of the packages (``pip wheel --no-build-isolation``, no network)
and installed with ``--no-deps`` into a fresh venv. The venv sees this machine's third-party
packages through a ``.pth`` line (so nothing is downloaded) but not the checkout, nor the
editable install of it: the test checks that ``sim`` is imported from the venv.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

#: Made from the installed wheel, in a folder with no checkout: every env steps once.
MAKE_EVERY_ENV = """
import sys, gymnasium as gym, sim
from sim.envs import ENV_IDS, MO_ENV_IDS
assert sim.__file__.startswith(sys.prefix), sim.__file__
small = {"overrides": {"population.shoppers": 100, "population.acquisition_days": 2.0}, "horizon_days": 3}
for env_id in ENV_IDS + MO_ENV_IDS:
    env = gym.make(env_id, **({} if "Journey" in env_id else small))
    env.reset(seed=0)
    env.step(env.action_space.sample())
print("made", len(ENV_IDS + MO_ENV_IDS), "envs from", sim.__file__)
"""
#: A fresh process that imports nothing of shopgym: the ``shopgym:`` prefix registers the ids;
#: then the quickstart config is found by name and built.
MAKE_BY_PREFIX = """
import gymnasium as gym
env = gym.make("shopgym:shopgym/ShopperJourney-v0")
env.reset(seed=0)
env.step(0)
import shopgym, sys
assert shopgym.__file__.startswith(sys.prefix), shopgym.__file__
print("prefix ok", shopgym.__version__)
# What `shopgym run quickstart` does before any work: find the shipped config by name, build it.
from experiments.config import load_config
config = load_config("quickstart")
print("built", config.name, len(config.policies), "policies")
"""
#: A run small enough for a test, written by the wheel's ``shopgym run``.
TINY_RUN = {
    "name": "tiny_wheel",
    "description": "A tiny run from a wheel install.",
    "env": {"id": "shopgym/ShopperJourney-v0", "scenario": "default", "kwargs": {"horizon_days": 60}},
    "seeds": [0],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "coupon", "kind": "blanket", "kwargs": {"incentive": "coupon_10"}},
    ],
    "training": {"timesteps": 64, "episodes": 1},
    "evaluation": {"episodes": 3},
}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_wheel_install_outside_the_checkout_makes_every_env_and_simulates_by_scenario_name(
    tmp_path: Path,
):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("shopgym", "sim", "policies", "experiments", "configs"):
        shutil.copytree(
            ROOT / package, source / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    # No COLUMNS either: the run below checks the width chosen for a pipe (a pytest worker may set it).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "COLUMNS", "LINES")}
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "."],
        source,
        env,
    )
    (wheel,) = (source / "dist").glob("shopgym-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    venv_site = Path(
        _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], tmp_path, env)
    )
    # Third-party packages from this interpreter, without processing its .pth files (no editable install).
    (Path(str(venv_site).strip()) / "machine_packages.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    out = _run([str(python), "-c", MAKE_EVERY_ENV], work, env)
    assert "made 6 envs" in out and str(venv) in out
    simulate = [str(venv / "bin" / "shopgym"), "simulate", "--scenario", "default"]
    _run([*simulate, "--shoppers", "300", "--days", "10", "--out", "run"], work, env)
    assert {"events.parquet", "daily.parquet", "summary.json"} <= {p.name for p in (work / "run").iterdir()}

    shopgym = str(venv / "bin" / "shopgym")
    assert _run([shopgym, "--version"], work, env).strip() == "shopgym 0.1.0"
    printed = _run([str(python), "-c", MAKE_BY_PREFIX], work, env)
    assert "prefix ok 0.1.0" in printed and "built quickstart" in printed
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_RUN))
    printed = _run([shopgym, "run", "tiny.yaml", "--out", "tiny", "--workers", "1"], work, env)
    assert "…" not in printed  # a pipe is not a terminal: tables are not cut to 80 columns
    summary = (work / "tiny" / "summary.md").read_text()
    assert "shopgym 0.1.0" in summary and "git None" not in summary  # no git tree in a wheel install
    assert not (work / "tiny" / ".lock").exists()


def test_no_scenario_file_is_left_in_configs():
    assert not (ROOT / "configs" / "scenarios").exists() or not any(
        (ROOT / "configs" / "scenarios").iterdir()
    )
