"""CNN-side layers end to end: the standalone per-channel affine (a BatchNormalization with
no conv before it, or a Mul + Add by per-channel constants, with the activation after it)
becomes one depthwise 1x1 `mrvl.conv2d` (weight = scale, bias = shift), so a DenseNet's
pre-activation BN-ReLU stays on the accelerator; Concat on any axis; Split as `mrvl.slice`
layers; Sub as Sum2D (and Mul2D by -1).

Compiled builds run through `CompiledModel` (simulator) and are judged against onnxruntime
with Marvell's rules (fp16 3 % relative, int8 3 LSB); the partitioned module through the
reference executor (rtol 1e-4 / atol 1e-5); the JSON pair reads back op for op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.lowering.mrvl_partition import layers_of
from mrvl.models._graph_builder import GraphBuilder, tensor_info
from mrvl.models.densenet import densenet121
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel

HW = 8


def dense_block(layers: int = 3, growth: int = 8, stem: int = 16) -> onnx.ModelProto:
    """A small DenseNet-style net: stem conv-BN-ReLU, `layers` dense layers (BN-ReLU-Conv1x1-
    BN-ReLU-Conv3x3, concatenated to the input on the channel axis), a transition
    (BN-ReLU-Conv1x1-AvgPool), final BN-ReLU, GlobalAveragePool, Gemm."""
    g = GraphBuilder(seed=3, opset=17)
    x = g.conv("stem", "input", 3, stem, 3)
    x = g.node("Relu", [g.batch_norm("stem.bn", x, stem)], "stem.relu")
    channels = stem
    for i in range(layers):
        y = g.node("Relu", [g.batch_norm(f"b{i}.norm1", x, channels)], f"b{i}.relu1")
        y = g.conv(f"b{i}.conv1", y, channels, 4 * growth, 1)
        y = g.node("Relu", [g.batch_norm(f"b{i}.norm2", y, 4 * growth)], f"b{i}.relu2")
        y = g.conv(f"b{i}.conv2", y, 4 * growth, growth, 3)
        x = g.node("Concat", [x, y], f"b{i}.concat", axis=1)
        channels += growth
    y = g.node("Relu", [g.batch_norm("trans.norm", x, channels)], "trans.relu")
    y = g.conv("trans.conv", y, channels, channels // 2, 1)
    y = g.node("AveragePool", [y], "trans.pool", kernel_shape=[2, 2], strides=[2, 2])
    channels //= 2
    y = g.node("Relu", [g.batch_norm("norm5", y, channels)], "relu5")
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y], "gap")], "flatten")
    w = g.initializer("fc.weight", g.he_normal((10, channels), channels))
    b = g.initializer("fc.bias", g.uniform((10,), -0.1, 0.1))
    y = g.node("Gemm", [y, w, b], "fc", transB=1)
    return g.make_model("dense_block", [tensor_info("input", [1, 3, HW, HW])],
                        [tensor_info(y, [1, 10])])


def scale_shift(activation: str = "Relu", scalar_shift: bool = False) -> onnx.ModelProto:
    """conv -> Mul by a [C,1,1] constant -> Add of a [C,1,1] (or scalar) constant ->
    activation -> conv: the Mul + Add is one affine layer."""
    g = GraphBuilder(seed=5, opset=17)
    c = 12
    x = g.conv("conv0", "input", 3, c, 3, bias=True)
    x = g.node("Relu", [x], "relu0")
    scale = g.initializer("scale", g.uniform((c, 1, 1), 0.5, 1.5))
    shift_shape = () if scalar_shift else (c, 1, 1)
    shift = g.initializer("shift", g.uniform(shift_shape, -0.5, 0.5))
    y = g.node("Add", [g.node("Mul", [scale, x], "mul"), shift], "add")
    if activation == "Clip":
        y = g.clip("act", y, 0.0, 6.0)
    elif activation:
        y = g.node(activation, [y], "act")
    y = g.conv("conv1", y, c, 8, 3, bias=True)
    return g.make_model("scale_shift", [tensor_info("input", [1, 3, HW, HW])],
                        [tensor_info(y, [1, 8, HW, HW])])


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _partitioned(model: onnx.ModelProto, tmp_path: Path, **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return compile_to_partitioned(str(path), **options)


def _depthwise_1x1(fn) -> list[mrvl.Conv2DOp]:
    return [
        op for op in layers_of(fn)
        if isinstance(op, mrvl.Conv2DOp)
        and mrvl.tensor_shape(op.weight)[1:] == (1, 1, 1)
        and op.groups.value.data == mrvl.tensor_shape(op.weight)[0] > 1
    ]


def test_dense_block_is_one_subgraph_and_matches_reference(tmp_path):
    model = dense_block()
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    affine = _depthwise_1x1(fn)
    # 3 dense layers' norm1, the transition's norm, norm5 (norm2 folds into conv1)
    assert len(affine) == 5
    assert {op.activation_str() for op in affine} == {"relu"}
    x = np.random.default_rng(1).standard_normal((1, 3, HW, HW)).astype(np.float32)
    got = run_function(module, [x])[0]
    np.testing.assert_allclose(got, _ort(model, {"input": x}), rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    for op in fn.walk():  # the JSON pair keeps no SSA name hints
        for result in op.results:
            result.name_hint = None
    assert str(json_to_function(nodes, consts)) == str(fn)


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
def test_dense_block_end_to_end(quantize, tiles, tmp_path):
    model = dense_block()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(tiles).standard_normal((1, 3, HW, HW)).astype(np.float32)
    options = {"calibration": {"input": x}} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run({"input": x}).outputs["fc"]
    check = check_output("fc", got, _ort(model, {"input": x}), quantize)
    assert check.passed, check.summary()


@pytest.mark.parametrize(
    ("activation", "scalar_shift"), [("Relu", False), ("Clip", True), ("", False)]
)
def test_scale_shift_is_one_affine_layer(activation, scalar_shift, tmp_path):
    model = scale_shift(activation, scalar_shift)
    module = _partitioned(model, tmp_path)
    (fn,) = subgraph_functions(module, "accelerator")
    kinds = [op.LAYER_NAME for op in layers_of(fn)]
    assert "Mul2D" not in kinds and "Sum2D" not in kinds and "Activation" not in kinds
    (affine,) = _depthwise_1x1(fn)
    expected = {"Relu": "relu", "Clip": "clip", "": "none"}[activation]
    assert affine.activation_str() == expected
    x = np.random.default_rng(2).standard_normal((1, 3, HW, HW)).astype(np.float32)
    got = run_function(module, [x])[0]
    np.testing.assert_allclose(got, _ort(model, {"input": x}), rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.onnx"
    manifest = compile_model(path, tmp_path / "build", num_tiles=2, quantize="fp16")
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        out = compiled.run({"input": x}).outputs["conv1"]
    check = check_output("conv1", out, _ort(model, {"input": x}), "fp16")
    assert check.passed, check.summary()


def test_mul_without_add_stays_mul2d(tmp_path):
    """Not lowered as an affine: a per-channel Mul with no Add after it stays a Mul2D."""
    g = GraphBuilder(seed=1, opset=17)
    x = g.conv("conv0", "input", 3, 4, 3)
    y = g.node("Mul", [x, g.initializer("k", g.uniform((4, 1, 1), 0.5, 1.5))], "mul")
    model = g.make_model("m", [tensor_info("input", [1, 3, 4, 4])],
                         [tensor_info(y, [1, 4, 4, 4])])
    (fn,) = subgraph_functions(_partitioned(model, tmp_path, require_compute=False),
                               "accelerator")
    assert [op.LAYER_NAME for op in layers_of(fn)][1:3] == ["Conv2D", "Mul2D"]
    assert _depthwise_1x1(fn) == []


def test_affine_forced_to_cpu_expands_back(tmp_path):
    model = dense_block(layers=1)
    module = _partitioned(model, tmp_path, cpu_layers=["b0.norm1"])
    assert len(subgraph_functions(module, "cpu")) == 1
    x = np.random.default_rng(3).standard_normal((1, 3, HW, HW)).astype(np.float32)
    got = run_function(module, [x])[0]
    np.testing.assert_allclose(got, _ort(model, {"input": x}), rtol=1e-4, atol=1e-5)


def test_densenet121_is_one_accelerator_subgraph(tmp_path):
    """DenseNet-121 (torchvision's layout): every pre-activation BN-ReLU is an affine layer,
    so the whole network is one accelerator sub-graph (before: 63 accelerator + 62 CPU)."""
    module = _partitioned(densenet121(batch=1), tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    assert len(_depthwise_1x1(fn)) == 58 + 3 + 1  # dense layers' norm1, transitions, norm5


def _concat_model(shapes: list[list[int]], axis: int) -> onnx.ModelProto:
    """conv(x_k) for every input shape, concatenated on the NCHW `axis`."""
    g = GraphBuilder(seed=7, opset=17)
    parts, inputs = [], []
    for k, shape in enumerate(shapes):
        inputs.append(tensor_info(f"x{k}", shape))
        name = g.conv(f"conv{k}", f"x{k}", shape[1], shape[1], 3)
        parts.append(name)
    out = g.node("Concat", parts, "concat", axis=axis)
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    return g.make_model("concat", inputs, [tensor_info(out, shape)])


def _flat_concat_model() -> onnx.ModelProto:
    """Two convs reshaped to [N, C, H*W] and concatenated on axis 2 (YOLO-style heads)."""
    g = GraphBuilder(seed=8, opset=17)
    parts = []
    for k in range(2):
        y = g.conv(f"conv{k}", f"x{k}", 4, 6, 1)
        parts.append(g.node("Reshape", [y, g.int64s(f"shape{k}", [1, 6, -1])], f"flat{k}"))
    out = g.node("Concat", parts, "concat", axis=2)
    return g.make_model(
        "flat_concat", [tensor_info("x0", [1, 4, 8, 8]), tensor_info("x1", [1, 4, 4, 4])],
        [tensor_info(out, [1, 6, 80])])


CONCATS = {
    "channels": lambda: _concat_model([[1, 4, 6, 6], [1, 8, 6, 6]], 1),
    "height": lambda: _concat_model([[1, 4, 6, 5], [1, 4, 3, 5]], 2),
    "width": lambda: _concat_model([[1, 4, 6, 5], [1, 4, 6, 2]], 3),
    "batch": lambda: _concat_model([[1, 4, 6, 5], [2, 4, 6, 5]], 0),
    "flattened": _flat_concat_model,
}


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize("case", sorted(CONCATS))
def test_concat_any_axis(case, quantize, tiles, tmp_path):
    model = CONCATS[case]()
    module = _partitioned(model, tmp_path)
    (fn,) = subgraph_functions(module, "accelerator")
    assert subgraph_functions(module, "cpu") == []
    assert "Concat" in [op.LAYER_NAME for op in layers_of(fn)]
    rng = np.random.default_rng(tiles)
    feeds = {
        vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
        .astype(np.float32)
        for vi in model.graph.input
    }
    expected = _ort(model, feeds)
    got = run_function(module, list(feeds.values()))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.onnx"
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        out = compiled.run(feeds).outputs["concat"]
    check = check_output("concat", out, expected, quantize)
    assert check.passed, check.summary()


def _split_model(axis: int, sizes: list[int]) -> onnx.ModelProto:
    """conv -> Split (a C2f block's chunk) -> conv on the last piece -> Concat of every piece
    and the conv (on the split axis)."""
    g = GraphBuilder(seed=9, opset=17)
    x = g.conv("conv0", "input", 3, 8, 3)
    pieces = g.split("split", x, axis, sizes)
    shape = [1, 8, 6, 6]
    last = [1, 8, 6, 6]
    last[axis] = sizes[-1]
    y = g.conv("conv1", pieces[-1], last[1], last[1], 3)
    out = g.node("Concat", [*pieces, y], "concat", axis=axis)
    shape[axis] = 8 if axis == 1 else 6
    shape[axis] += last[axis]
    return g.make_model("split", [tensor_info("input", [1, 3, 6, 6])], [tensor_info(out, shape)])


SPLITS = {
    "channels_halves": (1, [4, 4]),
    "channels_three": (1, [2, 3, 3]),
    "height": (2, [2, 4]),
}


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize("case", sorted(SPLITS))
def test_split_is_slice_layers(case, quantize, tiles, tmp_path):
    axis, sizes = SPLITS[case]
    model = _split_model(axis, sizes)
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    slices = [op for op in layers_of(fn) if isinstance(op, mrvl.SliceOp)]
    assert [mrvl.tensor_shape(op.output)[op.axis.value.data] for op in slices] == sizes
    rng = np.random.default_rng(tiles)
    feeds = {"input": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    expected = _ort(model, feeds)
    np.testing.assert_allclose(run_function(module, [feeds["input"]])[0], expected,
                               rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert str(json_to_function(nodes, consts)) == str(fn)
    path = tmp_path / "m.onnx"
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        out = compiled.run(feeds).outputs["concat"]
    check = check_output("concat", out, expected, quantize)
    assert check.passed, check.summary()


def test_slice_forced_to_cpu_expands_back(tmp_path):
    """A slice layer forced to the CPU is a graph.split (+ reshape) with the same values."""
    model = _split_model(1, [2, 3, 3])
    module = _partitioned(model, tmp_path)
    (fn,) = subgraph_functions(module, "accelerator")
    middle = [op for op in layers_of(fn) if isinstance(op, mrvl.SliceOp)][1].name_str
    module = _partitioned(model, tmp_path, cpu_layers=[middle])
    assert len(subgraph_functions(module, "cpu")) == 1
    x = np.random.default_rng(5).standard_normal((1, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, {"input": x}),
                               rtol=1e-4, atol=1e-5)


def _sub_model(kind: str) -> onnx.ModelProto:
    """conv -> Sigmoid -> Sub (two data tensors with broadcasting, minus a constant, or a
    constant minus the data) -> Relu (the Sigmoid keeps a constant from folding into the
    conv's bias)."""
    g = GraphBuilder(seed=11, opset=17)
    x = g.node("Sigmoid", [g.conv("conv0", "input", 3, 4, 3)], "sigmoid")
    inputs = [tensor_info("input", [1, 3, 5, 6])]
    if kind == "data":
        inputs.append(tensor_info("other", [1, 4, 1, 6]))
        operands = [x, "other"]
    elif kind == "minus_const":
        operands = [x, g.initializer("k", g.uniform((4, 1, 1), -1, 1))]
    else:
        operands = [g.initializer("k", g.uniform((1, 1, 6), -1, 1)), x]
    y = g.node("Relu", [g.node("Sub", operands, "sub")], "relu")
    return g.make_model("sub", inputs, [tensor_info(y, [1, 4, 5, 6])])


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 2), ("int8", 2)])
@pytest.mark.parametrize("kind", ["data", "minus_const", "const_minus"])
def test_sub_is_sum2d(kind, quantize, tiles, tmp_path):
    model = _sub_model(kind)
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    kinds = [op.LAYER_NAME for op in layers_of(fn)]
    assert kinds.count("Sum2D") == 1
    assert kinds.count("Mul2D") == (0 if kind == "minus_const" else 1)
    rng = np.random.default_rng(tiles)
    feeds = {vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
             .astype(np.float32) for vi in model.graph.input}
    expected = _ort(model, feeds)
    np.testing.assert_allclose(run_function(module, list(feeds.values()))[0], expected,
                               rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.onnx"
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        out = compiled.run(feeds).outputs["relu"]
    check = check_output("relu", out, expected, quantize)
    assert check.passed, check.summary()


def _silu_model(after: str) -> onnx.ModelProto:
    """conv (+ BN) or add, then SiLU as torch exports it (Sigmoid + Mul), then a conv."""
    g = GraphBuilder(seed=13, opset=17)
    x = g.conv("conv0", "input", 3, 6, 3)
    if after == "conv_bn":
        y = g.batch_norm("bn0", x, 6)
    else:
        y = g.node("Add", [x, g.conv("conv1", "input", 3, 6, 1)], "add")
    y = g.node("Mul", [y, g.node("Sigmoid", [y], "act.Sigmoid")], "act.Mul")
    out = g.conv("conv2", y, 6, 4, 3, bias=True)
    return g.make_model("silu", [tensor_info("input", [1, 3, 6, 6])],
                        [tensor_info(out, [1, 4, 6, 6])])


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize("after", ["conv_bn", "add"])
def test_silu_is_fused(after, quantize, tiles, tmp_path):
    """Sigmoid + Mul(x, sigmoid(x)) after a conv or an add is the layer's fused "silu" (ACT
    function SILU; in int8 the layer writes fp32 and an ACT applies silu and quantises)."""
    model = _silu_model(after)
    module = _partitioned(model, tmp_path)
    (fn,) = subgraph_functions(module, "accelerator")
    layers = list(layers_of(fn))
    assert not any(isinstance(op, mrvl.ActivationOp | mrvl.Mul2DOp) for op in layers)
    assert [op.activation_str() for op in layers if op.activation_str() == "silu"] == ["silu"]
    rng = np.random.default_rng(tiles)
    feeds = {"input": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    expected = _ort(model, feeds)
    np.testing.assert_allclose(run_function(module, [feeds["input"]])[0], expected,
                               rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert any(n["attrs"].get("activation_type") == ["silu"] for n in nodes["nodes"])
    for op in fn.walk():  # the JSON pair keeps no SSA name hints
        for result in op.results:
            result.name_hint = None
    assert str(json_to_function(nodes, consts)) == str(fn)
    path = tmp_path / "m.onnx"
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    with CompiledModel.load(tmp_path / "build") as compiled:
        out = compiled.run(feeds).outputs["conv2"]
    check = check_output("conv2", out, expected, quantize)
    assert check.passed, check.summary()


def test_silu_forced_to_cpu_expands_back(tmp_path):
    model = _silu_model("conv_bn")
    module = _partitioned(model, tmp_path, cpu_layers=["act.Mul"])
    assert len(subgraph_functions(module, "cpu")) == 1
    x = np.random.default_rng(6).standard_normal((1, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, {"input": x}),
                               rtol=1e-4, atol=1e-5)
