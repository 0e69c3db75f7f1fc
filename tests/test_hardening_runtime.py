"""Issue 12: the runtime answers every bad input with FeatureError or ArtifactError, the same in decide and
decide_batch, and fuzzed inputs never raise anything else."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim  # noqa: F401 (registers the environments)
from experiments.cli import main
from policies.export import export_policy
from policies.registry import make_policy
from policies.runtime import CARD_FILE, ArtifactError, FeatureError, RuntimePolicy, card_digest, load_policy

OVERRIDES = {"population.shoppers": 200, "population.acquisition_days": 3.0}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("rt")
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=OVERRIDES, horizon_days=5)
    out = {}
    for kind in ("segment_rules", "maskable_ppo"):
        make_policy(kind, env, seed=0).save(where / "saved" / kind)
        out[kind] = export_policy(
            where / "saved" / kind, where / kind, overrides=OVERRIDES, check_samples=50
        ).parent
    env.close()
    return out


@pytest.fixture(scope="module", params=["segment_rules", "maskable_ppo"])
def policy(request: pytest.FixtureRequest, artifacts: dict[str, Path]) -> RuntimePolicy:
    return load_policy(artifacts[request.param])


def _row(policy: RuntimePolicy, value: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(policy.feature_names, value)


@pytest.mark.parametrize(
    "features", [None, [1.0, 2.0], "recency", 5, {"recency": 10**400}, np.zeros(3)], ids=repr
)
def test_bad_features_raise_feature_error(policy: RuntimePolicy, features: Any):
    """The original failure: TypeError, AttributeError or OverflowError escaped decide()."""
    if isinstance(features, dict):
        features = {**_row(policy), **features}
    with pytest.raises(FeatureError):
        policy.decide(features)


def test_huge_integer_is_a_feature_error_everywhere(policy: RuntimePolicy):
    row = {**_row(policy), policy.feature_names[0]: 10**400}
    with pytest.raises(FeatureError):
        policy.decide(row)
    with pytest.raises(FeatureError):
        policy.decide_batch([row])


@pytest.mark.parametrize(
    "allowed",
    [5, 1.5, "none", {"none": 1}, [1, 2], np.array([1, 2]), object()],
    ids=lambda value: "object" if type(value) is object else repr(value),  # no address: xdist workers agree
)
def test_bad_allowed_raises_feature_error(policy: RuntimePolicy, allowed: Any):
    with pytest.raises(FeatureError):
        policy.decide(_row(policy), allowed)
    with pytest.raises(FeatureError):
        policy.decide_batch([_row(policy)], allowed)


def test_numpy_allowed_is_honoured(policy: RuntimePolicy):
    names = np.array(["none", policy.action_names[1]])
    assert policy.decide(_row(policy), names) in set(names.tolist())
    mask = np.zeros(len(policy.action_names), dtype=bool)
    mask[1] = True
    assert policy.decide(_row(policy), mask) == policy.action_names[1]


def test_decide_batch_refuses_numeric_strings_as_decide_does(policy: RuntimePolicy):
    """The original failure: decide_batch parsed '1.5' that decide refused."""
    row = {**_row(policy), policy.feature_names[0]: "1.5"}
    with pytest.raises(FeatureError):
        policy.decide(row)
    with pytest.raises(FeatureError):
        policy.decide_batch([row])
    with pytest.raises(FeatureError):
        policy.decide_batch(np.array([[str(1.5)] * len(policy.feature_names)]))


def test_an_empty_masked_batch_gives_an_empty_answer(policy: RuntimePolicy):
    """The original failure: an empty masked batch failed to reshape."""
    empty = np.zeros((0, len(policy.feature_names)))
    mask = np.zeros((0, len(policy.action_names)), dtype=bool)
    assert policy.decide_batch(empty, mask).shape == (0,)
    assert policy.decide_batch(empty).shape == (0,)


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(features="nope"),
        lambda c: c.update(features=["a", "b"]),
        lambda c: c.update(normalization=[1, 2]),
        lambda c: c.update(model=["x"]),
        lambda c: c.update(actions={"names": 5}),
    ],
)
def test_malformed_cards_raise_artifact_error(artifacts: dict[str, Path], tmp_path: Path, edit: Any):
    copy = tmp_path / "a"
    shutil.copytree(artifacts["segment_rules"], copy)
    card = json.loads((copy / CARD_FILE).read_text())
    edit(card)
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError):
        load_policy(copy)


# ---- fuzz: any input gives a decision or a FeatureError, never another exception ------------------
_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.floats(), max_size=3),
)


@FUZZ
@given(values=st.lists(_scalars, min_size=0, max_size=40), extra=st.booleans(), drop=st.booleans())
def test_fuzzed_features_decide_or_raise_feature_error(
    policy: RuntimePolicy, values: list[Any], extra: bool, drop: bool
):
    names = list(policy.feature_names)
    row: dict[str, Any] = {n: values[i] if i < len(values) else 1.0 for i, n in enumerate(names)}
    if extra:
        row["bogus"] = 1.0
    if drop:
        row.pop(names[0])
    for call in (lambda: policy.decide(row), lambda: policy.decide_batch([row])):
        try:
            answer = call()
        except FeatureError as error:
            assert len(str(error)) < 2000
        else:
            ok = all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in row.values()
            )
            assert ok or all(isinstance(v, int | float) for v in row.values())
            assert np.all(np.isin(np.asarray(answer), policy.action_names))


@FUZZ
@given(
    allowed=st.one_of(
        st.sets(st.sampled_from(["none", "coupon_10", "free_shipping", "bogus"]), max_size=4),
        st.lists(st.text(max_size=3), max_size=3),
        st.integers(),
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_fuzzed_allowed_sets_are_honoured_or_refused(policy: RuntimePolicy, allowed: Any):
    try:
        choice = policy.decide(_row(policy), allowed)
    except FeatureError:
        return
    if allowed is not None:
        assert choice in allowed


# ---- issue 19 §4: hostile artifacts, each refused in one line of shopgym's own words -------------
def _resign(directory: Path, model: bytes | None = None, edit: Any = None) -> None:
    """Plant a model file and/or edit the card, then re-sign the card with the project's own digest."""
    card = json.loads((directory / CARD_FILE).read_text())
    if model is not None:
        (directory / card["model"]["file"]).write_bytes(model)
        card["model"]["sha256"] = hashlib.sha256(model).hexdigest()
        card["model"]["bytes"] = len(model)
    if edit is not None:
        edit(card)
    card["integrity"]["sha256"] = card_digest(card)
    (directory / CARD_FILE).write_text(json.dumps(card))


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) < 600 and "Traceback" not in message
    return message


def _copy(artifacts: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    copy = tmp_path / kind
    shutil.copytree(artifacts[kind], copy)
    return copy


def _graph(artifacts: dict[str, Path]) -> Any:
    import onnx

    return onnx.load_model_from_string((artifacts["maskable_ppo"] / "policy.onnx").read_bytes())


def test_a_card_declaring_200000_incentives_x_64_heads_is_refused_before_sizing(
    artifacts: dict[str, Path], tmp_path: Path
):
    copy = _copy(artifacts, "segment_rules", tmp_path)

    def widen(card: dict[str, Any]) -> None:
        card["actions"].update(
            names=[f"i{k}" for k in range(200_000)],
            kinds=["none"] * 200_000,
            values=[0.0] * 200_000,
            heads=[f"h{k}" for k in range(64)],
        )

    _resign(copy, edit=widen)
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)
    assert "declares more than this runtime serves: 200,000 incentives declared" in _one_line(info.value)


def test_a_model_file_over_its_cap_is_refused_before_it_is_read(artifacts: dict[str, Path], tmp_path: Path):
    """The original failure: policy.onnx was read whole, whatever its size (a sparse 3 GiB file here)."""
    copy = _copy(artifacts, "maskable_ppo", tmp_path)
    with (copy / "policy.onnx").open("r+b") as handle:
        handle.truncate(3 * 1024**3)
    _resign(copy, edit=lambda c: c["model"].update(bytes=3 * 1024**3))
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)
    assert "3,221,225,472 bytes; a onnx model file has at most" in _one_line(info.value)
    assert "(MAX_MODEL_BYTES)" in str(info.value)


def test_a_model_file_of_another_size_than_its_card_records_is_refused(
    artifacts: dict[str, Path], tmp_path: Path
):
    copy = _copy(artifacts, "segment_rules", tmp_path)
    with (copy / "policy.json").open("ab") as handle:
        handle.write(b" " * 10)
    with pytest.raises(ArtifactError, match=r"but its card records .*belongs to another export"):
        load_policy(copy)


def test_garbage_onnx_re_signed_is_an_artifact_error_in_shopgyms_words(
    artifacts: dict[str, Path], tmp_path: Path
):
    copy = _copy(artifacts, "maskable_ppo", tmp_path)
    _resign(copy, model=b"\x08\x07garbage" * 100)
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)
    assert _one_line(info.value).startswith("policy.onnx cannot be loaded: onnxruntime refused the graph")


def test_an_onnx_graph_with_a_scalar_output_is_refused_at_load(artifacts: dict[str, Path], tmp_path: Path):
    """The original failure: IndexError at load (output.shape[-1] of a rank-0 output)."""
    import onnx
    from onnx import TensorProto, helper

    graph = _graph(artifacts)
    old = graph.graph.output[0]
    graph.graph.node.append(helper.make_node("ReduceSum", [old.name], ["total"], keepdims=0))
    graph.graph.output.remove(old)
    graph.graph.output.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    copy = _copy(artifacts, "maskable_ppo", tmp_path)
    _resign(copy, model=graph.SerializeToString())
    onnx.checker.check_model(graph)
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)
    assert "policy.onnx output 'total' has shape []; the card needs rank 2 ending in" in _one_line(info.value)


def test_an_onnx_graph_allocating_10_to_the_12_floats_is_an_artifact_error(
    artifacts: dict[str, Path], tmp_path: Path
):
    """The original failure: onnxruntime's own exception escaped decide() (ConstantOfShape 10^6 x 10^6)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = _graph(artifacts)
    old = graph.graph.output[0]
    shape = numpy_helper.from_array(np.array([10**6, 10**6], dtype=np.int64), "bomb_shape")
    graph.graph.initializer.append(shape)
    graph.graph.node.extend(
        [
            helper.make_node(
                "ConstantOfShape",
                ["bomb_shape"],
                ["bomb"],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
            ),
            helper.make_node("ReduceSum", ["bomb"], ["bomb_sum"], keepdims=1),
            helper.make_node("Add", [old.name, "bomb_sum"], ["scores"]),
        ]
    )
    width = old.type.tensor_type.shape.dim[1].dim_value
    graph.graph.output.remove(old)
    graph.graph.output.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", width]))
    copy = _copy(artifacts, "maskable_ppo", tmp_path)
    _resign(copy, model=graph.SerializeToString())
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)  # the load-time probe runs the graph once
    message = _one_line(info.value)
    assert message.startswith(("policy.onnx failed while deciding (", "policy.onnx cannot be loaded: "))
    assert "Re-export it." in message


def _linear_graph(n_fields: int, width: int, weights: np.ndarray, then: str | None = None) -> bytes:
    """A masked-input graph: ``scores = then(obs @ weights)`` (a re-signed, hostile network's stand-in)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["obs", "w"], ["linear" if then else "scores"])]
    if then:
        nodes.append(helper.make_node(then, ["linear"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "hostile",
        [
            helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_fields]),
            helper.make_tensor_value_info("action_mask", TensorProto.BOOL, ["batch", width]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_weights_of_3e38_are_refused_at_load_and_non_finite_scores_at_decide(
    artifacts: dict[str, Path], tmp_path: Path
):
    """The original failure: NaN/inf scores decided silently (argmax of NaN)."""
    policy = load_policy(artifacts["maskable_ppo"])
    n, width = len(policy.feature_names), len(policy.action_names)
    copy = _copy(artifacts, "maskable_ppo", tmp_path)
    _resign(copy, model=_linear_graph(n, width, np.full((n, width), 3e38)))
    with pytest.raises(ArtifactError) as info:
        load_policy(copy)  # every probe row overflows
    assert "non-finite score(s) (NaN or inf): its weights overflow float32" in _one_line(info.value)
    # sqrt(feature 0 - feature 1): finite on the load-time probe rows (all features equal), NaN on a
    # real shopper whose feature 1 is the larger.
    weights = np.zeros((n, width))
    weights[0], weights[1] = 1.0, -1.0
    _resign(copy, model=_linear_graph(n, width, weights, then="Sqrt"))
    hostile = load_policy(copy)
    row = dict.fromkeys(hostile.feature_names, 0.0)
    row[hostile.feature_names[1]] = 1e9  # clipped to the box's top
    with pytest.raises(ArtifactError, match="non-finite score"):
        hostile.decide(row)
    with pytest.raises(ArtifactError, match="non-finite score"):
        hostile.decide_batch([row, row])


def test_bench_export_of_a_hostile_artifact_is_one_line_exit_2(
    artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    copy = _copy(artifacts, "segment_rules", tmp_path)
    card = json.loads((copy / CARD_FILE).read_text())
    card["evaluation"] = {"margin": 1e9}
    (copy / CARD_FILE).write_text(json.dumps(card))
    code = main(["bench", "export", "--artifact", str(copy), "--decisions", "10", "--batches", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "the card was edited" in err


@pytest.mark.parametrize("command", ["serve", "ope"])
def test_serve_and_ope_refuse_an_edited_artifact_in_one_line_exit_2(
    artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
):
    copy = _copy(artifacts, "segment_rules", tmp_path)
    card = json.loads((copy / CARD_FILE).read_text())
    card["evaluation"] = {"margin": 1e9}
    (copy / CARD_FILE).write_text(json.dumps(card))
    if command == "serve":
        code = main(["serve", str(copy)])
    else:
        code = main(["ope", "estimate", str(tmp_path / "feedback.npz"), "--artifact", str(copy)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "the card was edited" in err
