"""Bandits on stub problems (no simulator): regret, budget pacing, masks, seeding, save/load, export."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from policies.bandits import (
    BANDITS,
    UCB1,
    Bandit,
    EpsilonGreedy,
    LinearThompson,
    LinUCB,
    ThompsonSampling,
    bandit_from_dict,
)
from policies.base import EnvSpec, PolicyFileError

LINEAR = ("lin_ucb", "lin_thompson")


def make_spec(n_actions: int, n_fields: int = 1, heads: tuple[str, ...] = ("shopper",)) -> EnvSpec:
    return EnvSpec(
        env_id="shopgym/IncentiveTargeting-v0",  # files may name only registered ids (issue 12)
        obs_fields=tuple(f"x{i}" for i in range(n_fields)),
        obs_scales=(1.0,) * n_fields,
        obs_clip=(-10.0, 10.0),
        action_names=("none", *(f"a{i}" for i in range(1, n_actions))),
        action_kinds=("none", *("coupon",) * (n_actions - 1)),
        action_values=(0.0, *(0.05 * i for i in range(1, n_actions))),
        heads=heads,
    )


@dataclass
class Problem:
    """A stub bandit problem: contexts, expected rewards per arm, noisy draws, known costs per arm."""

    n_fields: int
    costs: NDArray[np.float64]
    expected_fn: Callable[[NDArray[np.float64]], NDArray[np.float64]]
    draw_fn: Callable[[NDArray[np.float64], np.random.Generator], NDArray[np.float64]]
    contextual: bool = False
    spec: EnvSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = make_spec(len(self.costs), self.n_fields)

    def contexts(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        x = rng.uniform(-1.0, 1.0, (n, self.n_fields))
        return x if self.contextual else np.zeros((n, self.n_fields))


def bernoulli_problem() -> Problem:
    """Conversion rates per incentive; the best one is also the dearest."""
    means = np.array([0.1, 0.3, 0.45, 0.55, 0.7])
    return Problem(
        n_fields=1,
        costs=np.array([0.0, 1.0, 1.5, 2.0, 4.0]),
        expected_fn=lambda x: np.broadcast_to(means, (x.shape[0], means.size)),
        draw_fn=lambda mu, rng: (rng.random(mu.shape[0]) < mu).astype(np.float64),
    )


def gaussian_problem() -> Problem:
    """Unit-noise margins per incentive."""
    means = np.array([0.0, 0.5, 1.5, 1.0, 0.8])
    return Problem(
        n_fields=1,
        costs=np.array([0.0, 1.0, 2.0, 1.5, 1.0]),
        expected_fn=lambda x: np.broadcast_to(means, (x.shape[0], means.size)),
        draw_fn=lambda mu, rng: mu + rng.standard_normal(mu.shape[0]),
    )


def linear_problem() -> Problem:
    """Reward = theta_a . x + bias_a + noise: which incentive is best depends on the shopper."""
    theta = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],
            [1.0, -0.5, 0.0, 0.3],
            [-1.0, 0.5, 0.5, 0.0],
            [0.0, 1.0, -1.0, 0.5],
            [0.5, 0.5, 0.5, -1.0],
        ]
    )
    bias = np.array([0.0, 0.2, 0.1, 0.0, 0.3])
    return Problem(
        n_fields=4,
        costs=np.array([0.0, 1.0, 1.5, 2.0, 4.0]),
        expected_fn=lambda x: x @ theta.T + bias,
        draw_fn=lambda mu, rng: mu + 0.3 * rng.standard_normal(mu.shape[0]),
        contextual=True,
    )


@dataclass
class Run:
    actions: NDArray[np.int64]
    regret: NDArray[np.float64]
    rewards: NDArray[np.float64]
    costs: NDArray[np.float64]
    random_regret: float


def play(
    policy: Bandit,
    problem: Problem,
    steps: int,
    batch: int = 1,
    seed: int = 123,
    masks: bool = False,
) -> Run:
    """Run the policy online; the problem's draws come from their own rng (not the policy's)."""
    rng = np.random.default_rng(seed)
    actions, regret, rewards, costs, random_regret = [], [], [], [], 0.0
    rows = np.arange(batch)
    for _ in range(steps // batch):
        x = problem.contexts(batch, rng)
        allowed = rng.random((batch, problem.costs.size)) < 0.5 if masks else None
        if allowed is not None:
            allowed[:, 0] = True
        a, _ = policy.predict(x, action_masks=allowed)
        mu = problem.expected_fn(x)
        r = problem.draw_fn(mu[rows, a], rng)
        c = problem.costs[a]
        policy.update(x, a, r, c)
        actions.append(a)
        regret.append(mu.max(axis=1) - mu[rows, a])
        rewards.append(r)
        costs.append(c)
        random_regret += float((mu.max(axis=1, keepdims=True) - mu).mean(axis=1).sum())
    return Run(
        np.concatenate(actions),
        np.concatenate(regret),
        np.concatenate(rewards),
        np.concatenate(costs),
        random_regret,
    )


# Each bandit on the problem it is built for, with settings a shop would start from.
SETUPS: dict[str, tuple[Callable[[], Problem], str, dict[str, Any]]] = {
    "epsilon_greedy": (bernoulli_problem, "epsilon_greedy", {"epsilon": 1.0, "decay_steps": 50.0}),
    "ucb1": (bernoulli_problem, "ucb1", {}),
    "thompson_bernoulli": (bernoulli_problem, "thompson", {}),
    "thompson_gaussian": (gaussian_problem, "thompson", {"likelihood": "gaussian"}),
    "lin_ucb": (linear_problem, "lin_ucb", {"alpha": 0.5}),
    "lin_thompson": (linear_problem, "lin_thompson", {"posterior_scale": 0.3}),
}


def make(kind: str, problem: Problem, seed: int = 0, **kwargs: Any) -> Bandit:
    setup = next(s for s in SETUPS.values() if s[1] == kind)
    return BANDITS[kind](problem.spec, seed, **{**setup[2], **kwargs})


@pytest.mark.parametrize("name", list(SETUPS))
def test_regret_grows_sublinearly_and_beats_random(name: str) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem = problem_fn()
    steps = 4000
    run = play(BANDITS[kind](problem.spec, 0, **kwargs), problem, steps)
    cumulative = np.cumsum(run.regret)
    quarter, half = cumulative[steps // 4 - 1], cumulative[steps // 2 - 1]
    # Regret per decision falls by at least 40% from T/4 to T (linear regret keeps it flat) ...
    assert cumulative[-1] / steps < 0.6 * quarter / (steps // 4)
    # ... the second half adds less than the first ...
    assert cumulative[-1] - half < half
    # ... and the total is a small fraction of what uniformly random incentives lose.
    assert cumulative[-1] < 0.25 * run.random_regret


@pytest.mark.parametrize("kind", LINEAR)
def test_linear_bandits_beat_ucb1_when_the_best_incentive_depends_on_the_shopper(kind: str) -> None:
    problem = linear_problem()
    linear = play(make(kind, problem), problem, 2000).regret.sum()
    context_free = play(UCB1(problem.spec, 0), problem, 2000).regret.sum()
    assert linear < 0.3 * context_free


@pytest.mark.parametrize("name", list(SETUPS))
def test_budgeted_bandit_keeps_spend_within_budget_while_unconstrained_overspends(name: str) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem, budget = problem_fn(), 1.0
    free = play(BANDITS[kind](problem.spec, 0, **kwargs), problem, 3000)
    paced = play(
        BANDITS[kind](problem.spec, 0, budget_per_decision=budget, pacing_rate=0.05, **kwargs), problem, 3000
    )
    assert free.costs.mean() > 1.5 * budget
    assert paced.costs.mean() <= 1.05 * budget
    never_incentive = problem.expected_fn(np.zeros((1, problem.n_fields)))[0, 0]
    assert paced.rewards.mean() > never_incentive + 0.15


def test_budgeted_thompson_earns_near_the_best_reward_any_policy_gets_at_that_spend() -> None:
    problem = bernoulli_problem()
    # The best mix at $1 per decision (a linear program over arms): "none" 1/3 and a2 2/3 of the
    # time, 0.1 / 3 + 0.45 * 2 / 3 = 0.333 conversions per decision.
    best_at_budget = 0.1 / 3 + 0.45 * 2 / 3
    paced = play(ThompsonSampling(problem.spec, 0, budget_per_decision=1.0, pacing_rate=0.05), problem, 4000)
    assert paced.rewards[1000:].mean() > 0.9 * best_at_budget


def test_batched_lambda_update_matches_one_decision_at_a_time() -> None:
    problem = bernoulli_problem()
    # A budget at a uniformly random arm's mean cost (1.7), so lambda keeps hitting its floor at 0.
    batched = UCB1(problem.spec, 0, budget_per_decision=1.7, pacing_rate=0.1)
    single = UCB1(problem.spec, 0, budget_per_decision=1.7, pacing_rate=0.1)
    rng = np.random.default_rng(5)
    floors = 0
    for _ in range(20):
        actions = rng.integers(0, 5, 16)
        rewards = rng.random(16)
        x = np.zeros((16, 1))
        batched.update(x, actions, rewards, problem.costs[actions])
        for i in range(16):
            one = slice(i, i + 1)
            single.update(x[one], actions[one], rewards[one], problem.costs[actions[one]])
            floors += single.lagrange == 0.0
        assert batched.lagrange == pytest.approx(single.lagrange, abs=1e-12)
        np.testing.assert_allclose(batched.means, single.means, atol=1e-12)
        np.testing.assert_allclose(batched.cost_means, single.cost_means, atol=1e-12)
    assert floors > 5


@pytest.mark.parametrize("kind", LINEAR)
def test_batched_ridge_update_matches_one_decision_at_a_time(kind: str) -> None:
    problem = linear_problem()
    batched, single = make(kind, problem), make(kind, problem)
    rng = np.random.default_rng(6)
    for size in (1, 3, 40):  # Sherman-Morrison, Woodbury, fresh inverse
        x = rng.uniform(-1, 1, (size, 4))
        actions = rng.integers(0, 5, size)
        rewards = rng.standard_normal(size)
        batched.update(x, actions, rewards)
        for i in range(size):
            single.update(x[i : i + 1], actions[i : i + 1], rewards[i : i + 1])
    np.testing.assert_allclose(batched.gram_inv, np.linalg.inv(batched.gram), atol=1e-10)
    np.testing.assert_allclose(batched.theta, single.theta, atol=1e-10)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("name", list(SETUPS))
def test_masked_incentives_are_never_chosen(name: str, deterministic: bool) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem = problem_fn()
    policy = BANDITS[kind](problem.spec, 0, budget_per_decision=1.0, **kwargs)
    rng = np.random.default_rng(7)
    for _ in range(100):
        x = problem.contexts(8, rng)
        allowed = rng.random((8, 5)) < 0.4
        allowed[:, 0] |= ~allowed.any(axis=1)
        actions, _ = policy.predict(x, action_masks=allowed, deterministic=deterministic)
        assert allowed[np.arange(8), actions].all()
        # Keep learning, so the arm a mask hides is at times the one the policy likes best.
        rewards = problem.draw_fn(problem.expected_fn(x)[np.arange(8), actions], rng)
        policy.update(x, actions, rewards, problem.costs[actions])


@pytest.mark.parametrize("name", list(SETUPS))
def test_same_seed_gives_identical_action_sequences(name: str) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem = problem_fn()
    first = play(BANDITS[kind](problem.spec, 3, **kwargs), problem, 400, batch=4, masks=True)
    second = play(BANDITS[kind](problem.spec, 3, **kwargs), problem, 400, batch=4, masks=True)
    np.testing.assert_array_equal(first.actions, second.actions)


@pytest.mark.parametrize("name", list(SETUPS))
def test_save_and_load_mid_run_gives_identical_subsequent_actions(name: str, tmp_path: Path) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem = problem_fn()
    original = BANDITS[kind](problem.spec, 11, budget_per_decision=1.0, **kwargs)
    play(original, problem, 300, batch=3, seed=1)
    path = original.save(tmp_path)
    with path.open() as file:
        loaded = bandit_from_dict(json.load(file))
    assert type(loaded) is type(original)
    assert loaded.to_dict() == original.to_dict()
    # The same feedback to both: any difference in learning or rng state shows up as an action.
    rng = np.random.default_rng(2)
    for _ in range(100):
        x = problem.contexts(3, rng)
        allowed = rng.random((3, 5)) < 0.7
        allowed[:, 0] = True
        actions, _ = original.predict(x, action_masks=allowed)
        again, _ = loaded.predict(x, action_masks=allowed)
        np.testing.assert_array_equal(actions, again)
        rewards = problem.draw_fn(problem.expected_fn(x)[np.arange(3), actions], rng)
        original.update(x, actions, rewards, problem.costs[actions])
        loaded.update(x, actions, rewards, problem.costs[actions])
    assert loaded.to_dict() == original.to_dict()


@pytest.mark.parametrize("name", list(SETUPS))
def test_greedy_model_reproduces_deterministic_predict_and_draws_nothing(name: str) -> None:
    problem_fn, kind, kwargs = SETUPS[name]
    problem = problem_fn()
    policy = BANDITS[kind](problem.spec, 0, budget_per_decision=1.0, pacing_rate=0.05, **kwargs)
    play(policy, problem, 600, batch=4)
    assert policy.lagrange > 0  # the export must carry the cost penalty
    model = json.loads(json.dumps(policy.greedy_model()))
    rng = np.random.default_rng(9)
    x = rng.uniform(-2, 2, (500, problem.n_fields))
    allowed = rng.random((500, 5)) < 0.6
    allowed[:, 0] = True
    if problem.contextual:
        assert model["rule"] == "linear"
        scores = x @ np.array(model["weights"]).T + np.array(model["bias"])
    else:
        assert model["rule"] == "scores"
        scores = np.broadcast_to(np.array(model["scores"]), (500, 5))
    expected = np.argmax(np.where(allowed, scores, -np.inf), axis=1)
    rng_state = policy.rng.bit_generator.state
    actions, _ = policy.predict(x, action_masks=allowed, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert policy.rng.bit_generator.state == rng_state
    # The exported rule prices cost in: it spends less than choosing the best reward would.
    oracle = np.argmax(problem.expected_fn(x), axis=1)
    assert problem.costs[actions].mean() < 0.8 * problem.costs[oracle].mean()
    if problem.contextual:  # a contextual rule really uses the context
        assert len(np.unique(actions[allowed.all(axis=1)])) > 1


@pytest.mark.parametrize(
    ("cls", "kwargs", "argument"),
    [
        (EpsilonGreedy, {"epsilon": 1.5}, "epsilon"),
        (EpsilonGreedy, {"decay_steps": 0.0}, "decay_steps"),
        (UCB1, {"exploration": -1.0}, "exploration"),
        (UCB1, {"reward_range": 0.0}, "reward_range"),
        (ThompsonSampling, {"likelihood": "poisson"}, "likelihood"),
        (ThompsonSampling, {"prior_alpha": 0.0}, "prior_alpha"),
        (ThompsonSampling, {"prior_rate": float("nan")}, "prior_rate"),
        (LinUCB, {"alpha": -0.1}, "alpha"),
        (LinUCB, {"ridge": 0.0}, "ridge"),
        (LinearThompson, {"posterior_scale": -1.0}, "posterior_scale"),
        (LinearThompson, {"ridge": "1"}, "ridge"),
        (UCB1, {"budget_per_decision": -1.0}, "budget_per_decision"),
        (ThompsonSampling, {"pacing_rate": 0.0}, "pacing_rate"),
        (LinUCB, {"seed": -1}, "seed"),
    ],
)
def test_bad_constructor_argument_raises_value_error_naming_it(
    cls: type[Bandit], kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        cls(make_spec(5, 4), **kwargs)


@pytest.mark.parametrize("kind", list(BANDITS))
def test_bandits_refuse_one_action_per_segment_envs(kind: str) -> None:
    with pytest.raises(ValueError, match="one incentive per shopper"):
        BANDITS[kind](make_spec(5, 4, heads=("new", "active_mid")))


def test_update_rejects_feedback_it_cannot_learn_from() -> None:
    spec = make_spec(5, 1)
    x, actions = np.zeros((2, 1)), np.array([1, 2])
    with pytest.raises(ValueError, match="costs are required"):
        UCB1(spec, budget_per_decision=1.0).update(x, actions, np.ones(2))
    with pytest.raises(ValueError, match="actions must be integers"):
        UCB1(spec).update(x, np.array([1, 5]), np.ones(2))
    with pytest.raises(ValueError, match="rewards in \\[0, 1\\]"):
        ThompsonSampling(spec).update(x, actions, np.array([2.0, 0.0]))
    with pytest.raises(ValueError, match="costs must be"):
        EpsilonGreedy(spec).update(x, actions, np.ones(2), np.array([-1.0, 0.0]))
    with pytest.raises(ValueError, match="not a bandit"):
        bandit_from_dict({"kind": "blanket"})


@pytest.mark.parametrize(
    ("kind", "field", "value", "needle"),
    [
        ("epsilon_greedy", "lagrange", float("nan"), "finite numbers only"),
        ("epsilon_greedy", "lagrange", -1.0, "at least 0"),
        ("ucb1", "means", [float("inf")] * 5, "finite numbers only"),
        ("ucb1", "counts", [-3.0, 1.0, 1.0, 1.0, 1.0], "at least 0"),
        ("thompson", "means", [0.1, 0.2], "shape (2,); expected (5,)"),
        ("thompson", "counts", "lots", "is not an array of numbers"),
        ("lin_ucb", "gram", [[1.0]], "expected (5, "),
    ],
)
def test_a_saved_bandits_tampered_state_is_refused_in_one_line(
    kind: str, field: str, value: Any, needle: str, tmp_path: Path
) -> None:
    problem_fn, _, kwargs = next(v for v in SETUPS.values() if v[1] == kind)
    problem = problem_fn()
    policy = BANDITS[kind](problem.spec, 0, budget_per_decision=1.0, **kwargs)
    play(policy, problem, 50, batch=2, seed=1)
    data = policy.to_dict()
    data["state"][field] = value
    with pytest.raises(PolicyFileError) as info:
        bandit_from_dict(json.loads(json.dumps(data)))
    message = str(info.value)
    assert needle in message and field in message and "\n" not in message and len(message) < 300


def test_a_garbage_rng_state_is_refused_in_one_line() -> None:
    problem_fn, kind, kwargs = next(iter(SETUPS.values()))
    policy = BANDITS[kind](problem_fn().spec, 0, **kwargs)
    data = policy.to_dict()
    data["rng"] = {"bit_generator": "PCG64", "state": "garbage"}
    with pytest.raises(PolicyFileError, match="is not a PCG64 state"):
        bandit_from_dict(data)
