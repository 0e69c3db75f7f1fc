"""``shopgym tune``: Optuna hyperparameter search for one policy of a config, without test-set leakage.

Every trial trains the policy exactly as ``shopgym run`` would (the config's training budget,
one model per experiment seed) and scores it on *validation* episodes drawn from the training
side of each seed (:func:`validation_seed`), never on the evaluation episodes
(:func:`experiments.runner.eval_seed`): the search cannot see the numbers it will be reported
on. After each seed the trial reports its running mean validation return, and Optuna's median
pruner stops trials that trail the median of earlier ones at the same seed. The best
hyperparameters are written as a config snippet; then the tuned policy, the untuned one, the
reference and the oracle (when the config has them) are run by the normal runner on the
held-out evaluation episodes, and that run's ``summary.md`` is the report.

Search spaces follow rl-zoo3's ``hyperparams_opt.py`` in spirit, cut to the few parameters
that matter most for each kind (learning rate, discount, exploration).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.config import ConfigError, ExperimentConfig, load_config
from experiments.runner import eval_seed, train_seed
from sim.io import atomic_write_text

#: Offset of the first validation episode from a seed's first training episode.
VALIDATION_OFFSET = 2500
#: Most validation episodes per seed (they must stay clear of the next seed's evaluation episodes).
MAX_VALIDATION_EPISODES = 2500

Suggest = Callable[[Any], dict[str, Any]]


def _ppo_like(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
    }


def _trpo(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "target_kl": trial.suggest_categorical("target_kl", [0.1, 0.05, 0.03, 0.02, 0.01, 0.005]),
    }


def _q_learning(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.05, 0.5),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.2),
    }


def _ars(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "delta_std": trial.suggest_float("delta_std", 0.01, 0.3, log=True),
        "n_delta": trial.suggest_categorical("n_delta", [2, 4, 8, 16]),
    }


#: Search space per policy kind.
SEARCH_SPACES: dict[str, Suggest] = {
    "ppo": _ppo_like,
    "maskable_ppo": _ppo_like,
    "recurrent_ppo": _ppo_like,
    "a2c": _ppo_like,
    "trpo": _trpo,
    "dqn": _q_learning,
    "qrdqn": _q_learning,
    "ars": _ars,
    "epsilon_greedy": lambda t: {
        "epsilon": t.suggest_float("epsilon", 0.0, 0.5),
        "decay_steps": t.suggest_float("decay_steps", 10.0, 1e5, log=True),
    },
    "ucb1": lambda t: {
        "exploration": t.suggest_float("exploration", 0.01, 4.0, log=True),
        "reward_range": t.suggest_float("reward_range", 0.1, 10.0, log=True),
    },
    "lin_ucb": lambda t: {
        "alpha": t.suggest_float("alpha", 0.01, 4.0, log=True),
        "ridge": t.suggest_float("ridge", 0.01, 100.0, log=True),
    },
    "lin_thompson": lambda t: {"ridge": t.suggest_float("ridge", 0.01, 100.0, log=True)},
}


def validation_seed(seed: int) -> int:
    """First validation-episode seed of an experiment seed: on the training side, after its training."""
    return train_seed(seed) + VALIDATION_OFFSET


def check_no_leakage(config: ExperimentConfig, episodes: int) -> None:
    """Refuse validation episodes that would coincide with any evaluation or training episode."""
    if not 1 <= episodes <= MAX_VALIDATION_EPISODES:
        raise ConfigError(
            f"--val-episodes {episodes} not allowed; an integer in [1, {MAX_VALIDATION_EPISODES}]"
        )
    if config.training.episodes > VALIDATION_OFFSET:
        raise ConfigError(
            f"training.episodes {config.training.episodes} would reach the validation episodes; at most "
            f"{VALIDATION_OFFSET} when tuning"
        )
    validation = {validation_seed(s) + k for s in config.seeds for k in range(episodes)}
    evaluation = {eval_seed(s) + k for s in config.seeds for k in range(config.evaluation.episodes)}
    if validation & evaluation:
        raise ConfigError(
            "validation episodes overlap evaluation episodes "
            f"(evaluation.episodes {config.evaluation.episodes}); "
            "lower evaluation.episodes below 7500 or --val-episodes"
        )


def trial_score(
    config: ExperimentConfig,
    name: str,
    kwargs: dict[str, Any],
    episodes: int,
    report: Callable[[int, float], bool],
) -> float:
    """Train policy ``name`` with ``kwargs`` per seed as the runner does; mean validation return.

    ``report(step, running_mean)`` is called after each seed; it returns True to prune.
    """
    import gymnasium as gym

    from policies.evaluate import evaluate
    from policies.registry import ONLINE_KINDS, RL_KINDS, make_policy, plugin_training

    arm = config.policy(name)
    variant = config.variant_names[0]
    returns: list[float] = []
    for step, seed in enumerate(config.seeds):
        env = gym.make(config.env.id, **config.env_kwargs(variant))
        policy = make_policy(arm.kind, env, seed, **kwargs)
        plugin = plugin_training(arm.kind)
        if (arm.kind in RL_KINDS or plugin == "timesteps") and config.training.timesteps > 0:
            policy.learn(config.training.timesteps)  # type: ignore[attr-defined]
        elif (arm.kind in ONLINE_KINDS or plugin == "episodes") and config.training.episodes > 0:
            for k in range(config.training.episodes):
                evaluate(policy, env, 1, train_seed(seed) + k, learn=True)
        records = evaluate(
            policy,
            env,
            episodes,
            validation_seed(seed),
            learn=config.evaluation.learn,
            deterministic=config.evaluation.deterministic,
        )
        env.close()
        returns.append(float(np.mean([r.row["return"] for r in records])))
        if report(step, float(np.mean(returns))):
            break
    return float(np.mean(returns))


def tune(
    config: ExperimentConfig,
    name: str,
    trials: int,
    out: Path,
    val_episodes: int | None = None,
    sampler_seed: int = 0,
    evaluate_best: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Search ``name``'s hyperparameters; write ``trials.csv``, ``best.yaml`` and ``tune.md``."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("shopgym tune needs optuna: pip install 'shopgym[tune]'") from None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    names = [p.name for p in config.policies]
    if name not in names:
        raise ConfigError(f"--policy {name!r} is not a policy of {config.name}; allowed: {names}")
    arm = config.policy(name)
    if arm.kind not in SEARCH_SPACES:
        raise ConfigError(
            f"--policy {name}: kind {arm.kind!r} has no search space; tunable kinds: {sorted(SEARCH_SPACES)}"
        )
    if trials < 1:
        raise ConfigError(f"--trials {trials} not allowed; an integer >= 1")
    episodes = val_episodes or config.evaluation.episodes
    check_no_leakage(config, episodes)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )

    def objective(trial: optuna.Trial) -> float:
        kwargs = {**arm.kwargs, **SEARCH_SPACES[arm.kind](trial)}

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        value = trial_score(config, name, kwargs, episodes, report)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return value

    columns = (TextColumn("[bold]tuning " + name), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bars:
        task = bars.add_task("trials", total=trials)
        study.optimize(objective, n_trials=trials, callbacks=[lambda s, t: bars.advance(task)])

    frame = study.trials_dataframe(attrs=("number", "state", "value", "params"))
    frame.columns = [str(c).removeprefix("params_") for c in frame.columns]
    frame["state"] = frame["state"].astype(str)
    atomic_write_text(frame.to_csv(index=False), out / "trials.csv")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"no trial of {name} completed; raise --trials")
    best = study.best_trial
    tuned = {**arm.kwargs, **best.params}
    snippet = {"policies": [{"name": f"{name}_tuned", "kind": arm.kind, "kwargs": tuned}]}
    atomic_write_text(
        f"# Best of {len(study.trials)} trials (trial {best.number}): "
        f"mean validation return {best.value:.6g}\n"
        f"# on training-side episodes (seeds {list(config.seeds)}, {episodes} per seed); paste into "
        f"{config.name}'s policies.\n" + yaml.safe_dump(snippet, sort_keys=False),
        out / "best.yaml",
    )
    lines = [
        f"# Tuning {name} ({arm.kind}) on {config.name}",
        "",
        f"{len(study.trials)} Optuna trials (TPE sampler, seed {sampler_seed}; median pruner), "
        "each training as "
        f"`shopgym run` does on seeds {list(config.seeds)} and scored on {episodes} validation episodes per "
        "seed from the training side (never the evaluation episodes).",
        "",
        _markdown_table(frame),
        "",
        f"Best: trial {best.number}, mean validation return {best.value:.6g}; snippet in `best.yaml`.",
    ]
    result: dict[str, Any] = {"best_params": tuned, "best_value": best.value, "trials": len(study.trials)}
    if evaluate_best:
        from experiments.runner import run_experiment

        held_out = _held_out_config(config, name, tuned)
        root = run_experiment(held_out, out / "evaluation", quiet=quiet)
        lines += [
            "",
            "## Held-out evaluation",
            "",
            f"The tuned and untuned policies on the config's evaluation episodes (`{root}/summary.md`):",
            "",
            (root / "summary.md").read_text(),
        ]
        result["evaluation"] = str(root)
    atomic_write_text("\n".join(lines) + "\n", out / "tune.md")
    return result


def _held_out_config(config: ExperimentConfig, name: str, tuned: dict[str, Any]) -> ExperimentConfig:
    """The config cut to the reference, the oracles, the untuned and the tuned policy."""
    from experiments.config import config_from_dict

    keep = [
        p.model_dump(mode="json")
        for p in config.policies
        if p.name in (name, config.reference_policy) or p.kind == "oracle"
    ]
    arm = config.policy(name)
    keep.append({"name": f"{name}_tuned", "kind": arm.kind, "kwargs": tuned})
    data = config.model_dump(mode="json")
    data.update(
        name=f"{config.name}_{name}_tuned", policies=keep, output_dir="", variants=data["variants"][:1]
    )
    if data.get("reference") not in [p["name"] for p in keep]:
        data["reference"] = None
    return config_from_dict(data, f"{config.name} (tuned {name})")


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _run_tune(args: argparse.Namespace) -> int:
    from rich.console import Console

    config = load_config(args.config)
    out = Path(args.out or f"runs/tune_{config.name}_{args.policy}")
    result = tune(
        config, args.policy, args.trials, out, args.val_episodes, args.seed, not args.no_eval, args.quiet
    )
    console = Console()
    console.print(
        f"best {args.policy}: {result['best_params']} (validation return {result['best_value']:.6g})"
    )
    console.print(
        f"wrote {out}/trials.csv, best.yaml, tune.md" + (", evaluation/" if "evaluation" in result else "")
    )
    return 0


def add_tune_parser(sub: Any) -> None:
    """Add ``tune`` to the ``shopgym`` subcommands."""
    parser = sub.add_parser(
        "tune",
        help="search one policy's hyperparameters with Optuna, then report it on held-out episodes",
        description=(
            "Optuna (TPE, median pruning) over one policy's hyperparameters: each trial trains on the "
            "config's seeds and budget and is scored on validation episodes from the training side, never "
            "the evaluation episodes. Writes DIR/trials.csv, best.yaml (a config snippet), tune.md, and "
            "DIR/evaluation/ (the tuned and untuned policy on the held-out evaluation episodes)."
        ),
    )
    parser.add_argument("config", help="experiment YAML holding the policy")
    parser.add_argument("--policy", required=True, help="name of the policy to tune (a policies[].name)")
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials (default 20)")
    parser.add_argument("--out", help="output folder (default runs/tune_<config>_<policy>)")
    parser.add_argument(
        "--val-episodes", type=int, help="validation episodes per seed (default: evaluation.episodes)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_tune)
