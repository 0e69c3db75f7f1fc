"""Compare an rl-zoo3 PPO model with ``random`` and ``none`` on ShopperJourney-v0, on the same shoppers.

Usage (after ``python -m rl_zoo3.train --algo ppo --env shopgym/ShopperJourney-v0 --gym-packages sim
--conf-file configs/rl_zoo3/ppo.yml -f logs --seed 0``)::

    python -m experiments.zoo_compare logs/ppo/shopgym-ShopperJourney-v0_1/shopgym-ShopperJourney-v0.zip

Each policy plays the same episodes (seeds 10,000 + k: common random numbers); ``random`` picks
uniformly among the eligible incentives. Prints mean returns and paired differences with 95% CIs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

import sim  # noqa: F401 (registers the shopgym ids)
from sim.envs.wrappers import MaskInObservation


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


def main() -> None:
    """Print PPO, random and none mean returns and PPO's paired differences."""
    from stable_baselines3 import PPO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .zip rl-zoo3 saved")
    parser.add_argument("--episodes", type=int, default=500)
    args = parser.parse_args()
    model = PPO.load(args.model, device="cpu")
    env = MaskInObservation(gym.make("shopgym/ShopperJourney-v0"))
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


if __name__ == "__main__":
    main()
