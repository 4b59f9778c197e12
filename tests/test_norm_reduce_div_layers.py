"""GroupNorm, InstanceNorm, ReduceMean and Div by a tensor on the accelerator (issue 15,
part B).

GroupNormalization (opset 18 per-group and opset 21 per-channel scale) and torch's
Reshape -> InstanceNormalization -> Reshape -> Mul -> Add export become a LayerNorm of the
[N, G, C/G*H*W] rows plus a depthwise 1x1 conv (the per-channel affine, activation fused);
ReduceMean over the last axes becomes an FC with the weight 1/K between two reshapes; Div by a
non-constant is the Div2D layer (ELTWISE DIV, format 1.4). Each is
judged against onnxruntime: the partitioned module through the reference executor (rtol 1e-4
/ atol 1e-5), compiled builds with Marvell's rules (fp16 3 % relative, int8 3 LSB)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.lowering.mrvl_partition import layers_of
from mrvl.lowering.offload_report import offload_report
from mrvl.models._graph_builder import GraphBuilder, tensor_info
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel


def group_norm_model(form: str, opset: int, shape=(1, 8, 5, 6), groups: int = 4,
                     silu: bool = True, seed: int = 0) -> onnx.ModelProto:
    """conv 3x3 -> GroupNorm (`form` "torch" or "onnx") -> [SiLU] -> conv 3x3."""
    g = GraphBuilder(seed, opset)
    channels = shape[1]
    x = g.conv("conv", "x", channels, channels, 3, pads=[1, 1, 1, 1])
    y = g.group_norm("gn", x, list(shape), groups, form=form)
    if silu:
        y = g.node("Mul", [y, g.node("Sigmoid", [y], "act/Sigmoid")], "act/Mul")
    g.conv("conv2", y, channels, channels, 3, pads=[1, 1, 1, 1])
    g.node("Identity", ["conv2"], "out", outputs=["y"])
    return g.make_model("gn", [tensor_info("x", list(shape))], [tensor_info("y", list(shape))])


def instance_norm_model(shape=(1, 6, 4, 5), seed: int = 0) -> onnx.ModelProto:
    """conv 3x3 -> InstanceNormalization with a real per-channel scale and bias."""
    g = GraphBuilder(seed, 17)
    channels = shape[1]
    x = g.conv("conv", "x", channels, channels, 3, pads=[1, 1, 1, 1])
    scale = g.initializer("in.scale", g.uniform((channels,), 0.5, 1.5))
    bias = g.initializer("in.bias", g.uniform((channels,), -0.5, 0.5))
    g.node("InstanceNormalization", [x, scale, bias], "in", outputs=["y"], epsilon=1e-5)
    return g.make_model("in", [tensor_info("x", list(shape))], [tensor_info("y", list(shape))])


def reduce_mean_model(shape: tuple[int, ...], axes: list[int], keepdims: int, opset: int = 17,
                      seed: int = 0) -> onnx.ModelProto:
    """x * c (a Mul2D, so the graph has a compute-free accelerator layer before it) ->
    ReduceMean(axes as attribute below opset 18, as an input from 18)."""
    rng = np.random.default_rng(seed)
    rank = len(shape)
    factor = numpy_helper.from_array(rng.uniform(0.5, 1.5, shape[-1:]).astype(np.float32), "c")
    inits = [factor]
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"], name="/Mul")]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), "axes"))
        nodes.append(helper.make_node("ReduceMean", ["m", "axes"], ["y"], name="/ReduceMean",
                                      keepdims=keepdims))
    else:
        nodes.append(helper.make_node("ReduceMean", ["m"], ["y"], name="/ReduceMean",
                                      axes=axes, keepdims=keepdims))
    norm = sorted(a % rank for a in axes)
    out = [1 if d in norm else s for d, s in enumerate(shape)] if keepdims else [
        s for d, s in enumerate(shape) if d not in norm]
    graph = helper.make_graph(
        nodes, "rm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _partitioned(model: onnx.ModelProto, tmp_path: Path, **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return compile_to_partitioned(str(path), **options)


def _feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
            .astype(np.float32) for vi in model.graph.input}


def _check_partitioned(model: onnx.ModelProto, tmp_path: Path, seed: int = 1):
    """One accelerator sub-graph whose reference run matches onnxruntime and whose JSON
    pair round-trips; returns its function."""
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    feeds = _feeds(model, seed)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert str(json_to_function(nodes, consts)) == str(fn)
    return fn


def _compile_and_check(model: onnx.ModelProto, tmp_path: Path, quantize: str, tiles: int,
                       seed: int = 0) -> dict:
    """Compile, run, judge by Marvell's rule; returns the build's offload report."""
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    feeds = _feeds(model, seed)
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    name = model.graph.output[0].name
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs[name]
    check = check_output(name, got, _ort(model, feeds), quantize)
    assert check.passed, check.summary()
    return json.loads((tmp_path / "build" / "offload.json").read_text())


GROUP_NORM = {
    "torch_g4_silu": dict(form="torch", opset=17),
    "torch_g2_plain": dict(form="torch", opset=17, groups=2, silu=False),
    "torch_instance": dict(form="torch", opset=17, groups=8),
    "onnx18_g4_silu": dict(form="onnx", opset=18),
    "onnx21_g4_silu": dict(form="onnx", opset=21),
    "onnx21_g1_batch2": dict(form="onnx", opset=21, groups=1, shape=(2, 8, 3, 7)),
    "onnx18_g8_plain": dict(form="onnx", opset=18, groups=8, silu=False, shape=(1, 16, 6, 6)),
}


@pytest.mark.parametrize("case", sorted(GROUP_NORM))
def test_group_norm_matches_reference(case, tmp_path):
    params = GROUP_NORM[case]
    fn = _check_partitioned(group_norm_model(**params), tmp_path)
    layers = layers_of(fn)
    (norm,) = [op for op in layers if isinstance(op, mrvl.LayerNormOp)]
    shape = params.get("shape", (1, 8, 5, 6))
    groups = params.get("groups", 4)
    assert mrvl.tensor_shape(norm.output)[-1] == shape[1] // groups * shape[2] * shape[3]
    # the affine is a depthwise 1x1 conv with the SiLU fused
    (affine,) = [op for op in layers if isinstance(op, mrvl.Conv2DOp)
                 and op.groups.value.data == shape[1]]
    assert affine.activation_str() == ("silu" if params.get("silu", True) else "none")


def test_instance_norm_with_affine_matches_reference(tmp_path):
    fn = _check_partitioned(instance_norm_model(), tmp_path)
    kinds = [type(op) for op in layers_of(fn)]
    assert mrvl.LayerNormOp in kinds and mrvl.Mul2DOp in kinds and mrvl.Sum2DOp in kinds


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize("case", ["torch_g4_silu", "onnx18_g4_silu", "onnx21_g1_batch2"])
def test_group_norm_end_to_end(case, quantize, tiles, tmp_path):
    report = _compile_and_check(group_norm_model(**GROUP_NORM[case]), tmp_path, quantize, tiles)
    # the normalisation runs in fp16 in an int8 build, and the offload report says so
    assert len(report["fp16_in_int8"]) == 1


def test_instance_norm_end_to_end(tmp_path):
    _compile_and_check(instance_norm_model(), tmp_path, "fp16", 2)


def test_group_norm_too_large_group_stays_on_cpu(tmp_path):
    """A group beyond one OCM row (1 group of 16 x 48 x 48 = 36,864 elements) stays on the
    CPU with its reason."""
    model = group_norm_model("onnx", 21, shape=(1, 16, 48, 48), groups=1, silu=False)
    module = _partitioned(model, tmp_path)
    reasons = {node["node"]: node["reason"] for node in offload_report(module)["cpu_nodes"]}
    assert reasons["gn"] == "GroupNormalization group of 36864 elements exceeds 32768"


REDUCE_MEAN = {
    "last_keep": dict(shape=(2, 5, 12), axes=[-1], keepdims=1),
    "last_drop": dict(shape=(2, 5, 12), axes=[2], keepdims=0),
    "last_opset18": dict(shape=(3, 16), axes=[-1], keepdims=1, opset=18),
    "three_last_opset18_drop": dict(shape=(1, 4, 6, 5), axes=[1, 2, 3], keepdims=0, opset=18),
    "two_last_rank3": dict(shape=(2, 4, 6), axes=[1, 2], keepdims=1),
    "nchw_w": dict(shape=(1, 4, 6, 5), axes=[3], keepdims=1),
    "all_axes": dict(shape=(4, 10), axes=[0, 1], keepdims=0),
}


@pytest.mark.parametrize("case", sorted(REDUCE_MEAN))
def test_reduce_mean_matches_reference(case, tmp_path):
    params = REDUCE_MEAN[case]
    fn = _check_partitioned(reduce_mean_model(**params), tmp_path)
    (fc,) = [op for op in layers_of(fn) if isinstance(op, mrvl.FCOp)]
    width = int(np.prod([params["shape"][a] for a in params["axes"]]))
    assert mrvl.tensor_shape(fc.weight) == (1, width)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), trailing=st.integers(1, 4),
       keepdims=st.integers(0, 1), opset=st.sampled_from([17, 18]))
def test_reduce_mean_any_trailing_axes_match_onnxruntime(shape, trailing, keepdims, opset):
    """(A rank-4 mean over H and W is imported as a global average pool: not this path.)"""
    trailing = min(trailing, len(shape))
    assume(not (len(shape) == 4 and trailing == 2))
    axes = list(range(len(shape) - trailing, len(shape)))
    model = reduce_mean_model(tuple(shape), axes, keepdims, opset)
    with tempfile.TemporaryDirectory() as tmp:
        module = _partitioned(model, Path(tmp))
    assert offload_report(module)["cpu_nodes"] == []
    feeds = _feeds(model, 2)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 2), ("int8", 2)])
@pytest.mark.parametrize("case", ["last_keep", "three_last_opset18_drop", "nchw_w"])
def test_reduce_mean_end_to_end(case, quantize, tiles, tmp_path):
    _compile_and_check(reduce_mean_model(**REDUCE_MEAN[case]), tmp_path, quantize, tiles)


def test_reduce_mean_of_a_leading_axis_stays_on_cpu(tmp_path):
    model = reduce_mean_model((2, 5, 12), [1], keepdims=1)
    module = _partitioned(model, tmp_path)
    reasons = {node["node"]: node["reason"] for node in offload_report(module)["cpu_nodes"]}
    assert reasons["/ReduceMean"] == "ReduceMean over axes [1] is not over the last axes"
    feeds = _feeds(model, 3)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)


def div_model(divisor: str, constant_numerator: bool = False, relu: bool = False,
              shape=(1, 6, 5, 7), seed: int = 0) -> onnx.ModelProto:
    """conv 3x3 (C -> C) divided by a positive tensor d = sigmoid(t) + 0.5 whose t is
    `divisor` "pixel" (a conv C -> 1: [N, 1, H, W]), "channel" (global average pool:
    [N, C, 1, 1]) or "full" (a conv C -> C); `constant_numerator`: 2 / d instead."""
    g = GraphBuilder(seed, 17)
    channels = shape[1]
    x = g.conv("conv", "x", channels, channels, 3, pads=[1, 1, 1, 1])
    if divisor == "pixel":
        t = g.conv("gate", "x", channels, 1, 1)
    elif divisor == "channel":
        t = g.node("GlobalAveragePool", [x], "pool")
    else:
        t = g.conv("gate", "x", channels, channels, 1)
    d = g.node("Add", [g.node("Sigmoid", [t], "gate/Sigmoid"), g.scalar("half", 0.5)],
               "gate/Add")
    numerator = g.scalar("two", 2.0) if constant_numerator else x
    y = g.node("Div", [numerator, d], "/Div")
    if relu:
        y = g.node("Relu", [y], "/Relu")
    out_shape = list(shape)
    if constant_numerator and divisor != "full":
        out_shape = [shape[0], 1, shape[2], shape[3]] if divisor == "pixel" else [
            shape[0], channels, 1, 1]
    g.node("Identity", [y], "out", outputs=["y"])
    return g.make_model("div", [tensor_info("x", list(shape))], [tensor_info("y", out_shape)])


DIV = {
    "pixel": dict(divisor="pixel"),
    "channel_relu": dict(divisor="channel", relu=True),
    "full": dict(divisor="full"),
    "constant_numerator": dict(divisor="full", constant_numerator=True),
    "batch2_pixel": dict(divisor="pixel", shape=(2, 4, 6, 6)),
}


@pytest.mark.parametrize("case", sorted(DIV))
def test_div_by_tensor_matches_reference(case, tmp_path):
    params = DIV[case]
    fn = _check_partitioned(div_model(**params), tmp_path)
    (div,) = [op for op in layers_of(fn) if isinstance(op, mrvl.Div2DOp)]
    assert div.activation_str() == ("relu" if params.get("relu") else "none")


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 1),
                                                 ("int8", 2)])
@pytest.mark.parametrize("case", ["pixel", "channel_relu", "constant_numerator"])
def test_div_by_tensor_end_to_end(case, quantize, tiles, tmp_path):
    _compile_and_check(div_model(**DIV[case]), tmp_path, quantize, tiles)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       broadcast=st.lists(st.booleans(), min_size=4, max_size=4), swap=st.booleans())
def test_div_any_broadcast_matches_onnxruntime(shape, broadcast, swap):
    """a / (sigmoid(b) + 0.5) for numpy-broadcast shapes of rank 1-4 (either side the
    broadcast one): one Div2D on the accelerator, equal to onnxruntime."""
    other = [1 if flag else size for size, flag in zip(shape, broadcast, strict=False)]
    a_shape, b_shape = (other, shape) if swap else (shape, other)
    out_shape = list(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
    half = numpy_helper.from_array(np.full([1], 0.5, np.float32), "half")
    nodes = [helper.make_node("Sigmoid", ["b"], ["s"], name="/Sigmoid"),
             helper.make_node("Add", ["s", "half"], ["d"], name="/Add"),
             helper.make_node("Div", ["a", "d"], ["y"], name="/Div")]
    graph = helper.make_graph(
        nodes, "div", [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape),
                       helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        module = _partitioned(model, Path(tmp), require_compute=False)
    (fn,) = subgraph_functions(module, "accelerator")
    assert [type(op) for op in layers_of(fn)][-1] is mrvl.Div2DOp
    feeds = _feeds(model, 5)
    got = run_function(module, [feeds["a"], feeds["b"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)
