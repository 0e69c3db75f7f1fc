"""The production loop end to end: train in simulation, export, serve, log, evaluate a candidate off-policy.

1. Train MaskablePPO on ``IncentiveTargeting-v0`` (the training shop) and export it to ONNX.
2. Serve it with ``shopgym serve`` (a real uvicorn on 127.0.0.1, a free port) with epsilon
   exploration and a decision log.
3. A simulated "production" shop (another seed) asks the endpoint for every decision over
   HTTP and books what each decision earned (its attributed net margin) in an orders log.
4. ``shopgym ope join`` turns the two logs into logged bandit feedback; the candidate (the CRM
   playbook, exported to JSON) is evaluated from it with DM, IPS, SNIPS, DR and switch-DR.
5. The truth: the candidate runs the same production shop on-policy with the same seed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np


def simulated_shop(
    overrides: dict[str, Any], horizon_days: int, seed: int, decide: Any
) -> tuple[list[str], list[float], float]:
    """Run a production shop whose every decision comes from ``decide(features, allowed, request_id)``.

    Returns the request ids, each decision's attributed net margin ($) and the mean per decision.
    """
    import gymnasium as gym

    import sim  # noqa: F401
    from sim.envs.targeting import OBS_FIELDS, IncentiveTargetingEnv

    env = cast(
        IncentiveTargetingEnv,
        gym.make(
            "shopgym/IncentiveTargeting-v0", overrides=overrides, horizon_days=horizon_days, reward_scale=1.0
        ).unwrapped,
    )
    names = [name for name, _, _ in OBS_FIELDS]
    scales = np.array([scale for *_, scale in OBS_FIELDS])
    action_names = [incentive.name for incentive in env.scenario.incentives]
    obs, info = env.reset(seed=seed)
    request_ids, done = [], False
    while not done:
        raw = obs.astype(np.float64) * scales  # the shop's raw values (as the card's schema names them)
        mask = env.action_masks()
        request_id = f"{seed}-{info['decision_id']}"
        incentive, propensity = decide(
            dict(zip(names, raw.tolist(), strict=True)),
            [a for a, m in zip(action_names, mask, strict=True) if m],
            request_id,
        )
        env.record_propensity(propensity)
        request_ids.append(request_id)
        obs, _, _, truncated, info = env.step(action_names.index(incentive))
        done = truncated
    feedback = env.bandit_feedback()
    margins = feedback["reward"].tolist()
    return request_ids, margins, float(np.mean(margins))


def production_loop(
    out: str | Path,
    train_overrides: dict[str, Any],
    shop_overrides: dict[str, Any],
    horizon_days: int,
    timesteps: int = 4096,
    epsilon: float = 0.2,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the whole loop; write artifacts, logs and ``loop.json`` under ``out``; return the comparison."""
    import gymnasium as gym
    import httpx

    import sim  # noqa: F401
    from experiments.bench_serve import HOST, free_port, start_server
    from experiments.ope import estimate_from_feedback
    from policies.decision_log import join_feedback, read_decisions, read_orders
    from policies.export import export_policy
    from policies.registry import make_policy
    from policies.runtime import load_policy
    from sim.io import atomic_write_json

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    # 1. train in simulation and export
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=train_overrides, horizon_days=horizon_days)
    learner = make_policy("maskable_ppo", env, seed=0, n_steps=512, batch_size=128)
    learner.learn(timesteps)  # type: ignore[attr-defined]
    learner.save(root / "trained")
    export_policy(root / "trained", root / "artifact_ppo", overrides=train_overrides, check_samples=200)
    make_policy("segment_rules", env, seed=0).save(root / "playbook")
    export_policy(
        root / "playbook", root / "artifact_candidate", overrides=train_overrides, check_samples=200
    )

    # 2. serve; 3. the production shop decides through HTTP
    port = free_port()
    log_dir = root / "decision_log"
    server = start_server(
        root / "artifact_ppo",
        port,
        ["--epsilon", str(epsilon), "--seed", str(seed), "--log-dir", str(log_dir)],
    )
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10.0) as client:

            def over_http(
                features: dict[str, float], allowed: list[str], request_id: str
            ) -> tuple[str, float]:
                body = {"features": features, "allowed": allowed, "request_id": request_id}
                response = client.post("/decide", json=body)
                response.raise_for_status()
                decision = response.json()
                return str(decision["incentive"]), float(decision["propensity"])

            request_ids, margins, served_value = simulated_shop(shop_overrides, horizon_days, seed, over_http)
    finally:
        server.terminate()
        server.wait(timeout=10)
    orders = root / "orders.jsonl"
    orders.write_text(
        "".join(
            json.dumps({"request_id": r, "margin": m}) + "\n"
            for r, m in zip(request_ids, margins, strict=True)
        )
    )

    # 4. join and evaluate the candidate off-policy
    served = load_policy(root / "artifact_ppo")
    feedback = join_feedback(
        read_decisions(log_dir),
        read_orders(orders),
        served.feature_names,
        served.layout.obs_scales,
        served.action_names,
        served.layout.obs_clip,
    )
    candidate = load_policy(root / "artifact_candidate")
    estimates = estimate_from_feedback(feedback, candidate)

    # 5. the truth: the candidate runs the same production shop on-policy
    def candidate_decides(features: dict[str, float], allowed: list[str], _: str) -> tuple[str, float]:
        return str(candidate.decide(features, allowed=set(allowed))), 1.0

    _, _, true_value = simulated_shop(shop_overrides, horizon_days, seed, candidate_decides)
    result = {
        "decisions_logged": int(feedback["n_rounds"]),
        "served_policy_value": served_value,
        "candidate_true_value": true_value,
        "estimates": estimates,
    }
    atomic_write_json(result, root / "loop.json")
    return result


def main() -> None:
    """Run the documented example and print the comparison."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--shoppers", type=int, default=4000, help="shoppers in each shop (default 4000)")
    parser.add_argument("--days", type=int, default=180, help="simulated days (default 180)")
    parser.add_argument("--timesteps", type=int, default=20000, help="MaskablePPO timesteps (default 20000)")
    parser.add_argument("--epsilon", type=float, default=0.2, help="exploration of the served policy")
    args = parser.parse_args()
    overrides = {"population.shoppers": args.shoppers}
    with tempfile.TemporaryDirectory() as tmp:
        result = production_loop(
            args.out or tmp, overrides, overrides, args.days, args.timesteps, args.epsilon
        )
    print(f"logged {result['decisions_logged']:,} decisions through HTTP")
    print(f"served policy earned {result['served_policy_value']:.4f} $/decision")
    print(f"candidate (playbook), true value {result['candidate_true_value']:.4f} $/decision")
    for name, e in result["estimates"].items():
        error = e["value"] - result["candidate_true_value"]
        print(
            f"  {name:9s} {e['value']:8.4f}  95% CI [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"
            f"  error {error:+.4f}"
        )


if __name__ == "__main__":
    main()
