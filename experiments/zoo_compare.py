"""Compare an rl-zoo3 PPO model with ``random`` and ``none`` on ShopperJourney-v0, on the same shoppers.

Usage (after ``python -m rl_zoo3.train --algo ppo --env shopgym/ShopperJourney-v0 --gym-packages shopgym
--conf-file configs/rl_zoo3/ppo.yml -f logs --seed 0``)::

    python -m experiments.zoo_compare logs/ppo/shopgym-ShopperJourney-v0_1/shopgym-ShopperJourney-v0.zip

Each policy plays the same episodes (seeds 10,000 + k: common random numbers); ``random`` picks
uniformly among the eligible incentives. Prints mean returns and paired differences with 95% CIs.

The zip is untrusted and nothing in it is unpickled (``PPO.load`` would unpickle its ``data``):
the network is rebuilt from ``policy.pth``, read with ``torch.load(weights_only=True)``, whose
tensor shapes give the layer sizes; the activation is SB3's default (tanh) unless the zip's JSON
``data`` names one of :data:`ACTIVATIONS` in plain text.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs.wrappers import MaskInObservation

#: Limits on the zip read: its size, and the unpacked size of the members read.
MAX_ZIP_BYTES, MAX_MEMBER_BYTES = 256 * 1024**2, 256 * 1024**2
#: Activation names a zip's ``policy_kwargs`` may give (in SB3's plain-text form), and their modules.
ACTIVATIONS = ("Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid")


class ZooModelError(ValueError):
    """An rl-zoo3 zip that shopgym will not read; the message is one line."""


def _member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One member's bytes, its declared unpacked size checked before decompressing."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ZooModelError(f"{path}: no {name} in the zip; not a stable-baselines3 model") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise ZooModelError(
            f"{path}: {name} unpacks to {info.file_size:,} bytes; at most {MAX_MEMBER_BYTES:,}"
        )
    with archive.open(info) as member:
        data = member.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise ZooModelError(f"{path}: {name} unpacks past {MAX_MEMBER_BYTES:,} bytes")
    return data


def _layers(state: dict[str, Any], prefix: str) -> list[int]:
    """Hidden-layer sizes of an SB3 MLP from its weights' shapes (``prefix.0.weight``, ...)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.weight$")
    found = sorted((int(m.group(1)), key) for key in state if (m := pattern.match(key)))
    return [int(state[key].shape[0]) for _, key in found]


def _activation(data: bytes, path: Path) -> type[Any]:
    """The activation the zip's JSON ``data`` names in plain text (SB3 writes its class name), else tanh."""
    import torch

    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ZooModelError(f"{path}: its data member is not JSON") from None
    kwargs = fields.get("policy_kwargs") if isinstance(fields, dict) else None
    named = kwargs.get("activation_fn") if isinstance(kwargs, dict) else None
    if named is None:
        return torch.nn.Tanh
    match = re.fullmatch(r"<class 'torch\.nn\.modules\.activation\.(\w+)'>", str(named))
    if match is None or match.group(1) not in ACTIVATIONS:
        raise ZooModelError(
            f"{path}: activation {str(named)[:80]!r} not supported; one of {list(ACTIVATIONS)}"
        )
    return getattr(torch.nn, match.group(1))


def load_zoo_ppo(path: str | Path, env: gym.Env[Any, Any]) -> Any:
    """An rl-zoo3 (SB3) PPO zip as a PPO model on ``env``, read without unpickling anything."""
    import torch
    from stable_baselines3 import PPO

    path = Path(path)
    if not path.is_file():
        raise ZooModelError(f"model file not found: {path}")
    if path.stat().st_size > MAX_ZIP_BYTES:
        raise ZooModelError(f"{path}: {path.stat().st_size:,} bytes; at most {MAX_ZIP_BYTES:,}")
    try:
        with zipfile.ZipFile(path) as archive:
            weights = _member(archive, "policy.pth", path)
            activation = _activation(_member(archive, "data", path), path)
    except zipfile.BadZipFile:
        raise ZooModelError(f"{path}: not a zip file") from None
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses anything but tensors; any failure is the file's
        reason = " ".join(str(error).split())[:160]
        raise ZooModelError(f"{path}: policy.pth is not a plain state dict of tensors ({reason})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str)
        and isinstance(v, torch.Tensor)
        and v.is_floating_point()
        and bool(v.isfinite().all())
        for k, v in state.items()
    ):
        raise ZooModelError(f"{path}: policy.pth must map names to finite floating-point tensors")
    net_arch = {
        "pi": _layers(state, "mlp_extractor.policy_net"),
        "vf": _layers(state, "mlp_extractor.value_net"),
    }
    model = PPO(
        "MlpPolicy", env, policy_kwargs={"net_arch": net_arch, "activation_fn": activation}, device="cpu"
    )
    try:
        model.policy.load_state_dict(state, strict=True)
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:200]
        raise ZooModelError(
            f"{path}: its weights do not fit a PPO MlpPolicy on this env ({reason})"
        ) from None
    return model


def returns(
    env: MaskInObservation, choose: Callable[[NDArray[np.float32]], int], episodes: int
) -> NDArray[np.float64]:
    """Undiscounted return of each episode ``k`` (seed 10,000 + k)."""
    out = np.zeros(episodes)
    for k in range(episodes):
        obs, _ = env.reset(seed=10_000 + k)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(choose(obs))
            out[k] += float(reward)
            done = terminated or truncated
    return out


def main(argv: list[str] | None = None) -> int:
    """Print PPO, random and none mean returns and PPO's paired differences; 2 on a bad model file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .zip rl-zoo3 saved")
    parser.add_argument("--episodes", type=int, default=500)
    args = parser.parse_args(argv)
    env = MaskInObservation(gym.make("shopgym/ShopperJourney-v0"))
    try:
        model = load_zoo_ppo(args.model, env)
    except ZooModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    ppo = returns(env, lambda obs: int(model.predict(obs, deterministic=True)[0]), args.episodes)
    uniform = returns(env, lambda obs: int(rng.choice(np.flatnonzero(env.action_masks()))), args.episodes)
    none = returns(env, lambda obs: 0, args.episodes)
    for name, values in (
        ("ppo", ppo),
        ("random", uniform),
        ("none", none),
        ("ppo - random (paired)", ppo - uniform),
        ("ppo - none (paired)", ppo - none),
    ):
        half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
        print(f"{name:22s} {values.mean():.3f} ± {half:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
