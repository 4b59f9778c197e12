"""Mul2D and Activation layers end to end: element-wise products (squeeze-excite broadcast,
SiLU, HardSwish, division by a constant) and standalone activations become accelerator
layers, so the blocks of MobileNetV3 / EfficientNet stay in ONE accelerator sub-graph.

Models are built with onnx.helper as PyTorch exports them. Compiled builds run through
`CompiledModel` (simulator) and are judged against onnxruntime with Marvell's rules
(`mrvl.sim.acceptance`: fp16 3 % relative, int8 3 LSB); the partitioned module through the
reference executor within rtol 1e-4 / atol 1e-5; the JSON pair reads back op for op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mrvl.dialects import mrvl
from mrvl.driver.compiler import compile_model
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.mrvl_partition import layers_of
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel

RNG = np.random.default_rng(11)
"""Weights: each model builder reseeds it, so a model does not depend on the test order."""
C, CS, HW = 16, 8, 8


def _init(name: str, arr) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _seed(seed: int) -> None:
    global RNG
    RNG = np.random.default_rng(seed)


def _conv(x: str, y: str, cin: int, cout: int, k: int, name: str, inits: list,
          group: int = 1) -> onnx.NodeProto:
    w = RNG.standard_normal((cout, cin // group, k, k)) * (1.0 / np.sqrt(cin // group * k * k))
    inits += [_init(f"{name}.w", w), _init(f"{name}.b", RNG.standard_normal(cout) * 0.1)]
    return helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [y], name=f"/{name}/Conv",
                            kernel_shape=[k, k], pads=[k // 2] * 4, group=group)


def _model(nodes, inits, inputs: dict[str, list[int]], out_shape, opset: int = 14
           ) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _se(x: str, y: str, gate: str, nodes: list, inits: list, tag: str) -> None:
    """PyTorch's squeeze-excite: GlobalAveragePool -> Conv1x1 -> Relu -> Conv1x1 -> gate ->
    Mul(x, gate) with [N, C, H, W] * [N, C, 1, 1] broadcasting."""
    nodes += [
        helper.make_node("GlobalAveragePool", [x], [f"{tag}.p"], name=f"/{tag}/avgpool"),
        _conv(f"{tag}.p", f"{tag}.f1", C, CS, 1, f"{tag}.fc1", inits),
        helper.make_node("Relu", [f"{tag}.f1"], [f"{tag}.r"], name=f"/{tag}/Relu"),
        _conv(f"{tag}.r", f"{tag}.f2", CS, C, 1, f"{tag}.fc2", inits),
    ]
    if gate == "HardSigmoid":
        nodes.append(helper.make_node("HardSigmoid", [f"{tag}.f2"], [f"{tag}.s"],
                                      name=f"/{tag}/HardSigmoid", alpha=1.0 / 6.0, beta=0.5))
    else:
        nodes.append(helper.make_node("Sigmoid", [f"{tag}.f2"], [f"{tag}.s"],
                                      name=f"/{tag}/Sigmoid"))
    nodes.append(helper.make_node("Mul", [x, f"{tag}.s"], [y], name=f"/{tag}/Mul"))


def _silu(x: str, y: str, nodes: list, tag: str) -> None:
    nodes += [helper.make_node("Sigmoid", [x], [f"{tag}.sg"], name=f"/{tag}/Sigmoid"),
              helper.make_node("Mul", [x, f"{tag}.sg"], [y], name=f"/{tag}/Mul")]


def mobilenet_v3_block(blocks: int = 1) -> onnx.ModelProto:
    """Conv -> HardSwish, then per block: depthwise conv -> HardSwish -> SE (HardSigmoid)
    -> Conv1x1 + residual add."""
    _seed(1)
    nodes: list = []
    inits: list = []
    nodes += [_conv("input", "c0", 3, C, 3, "stem", inits),
              helper.make_node("HardSwish", ["c0"], ["x0"], name="/stem/HardSwish")]
    x = "x0"
    for k in range(blocks):
        nodes += [_conv(x, f"b{k}.d", C, C, 3, f"b{k}.dw", inits, group=C),
                  helper.make_node("HardSwish", [f"b{k}.d"], [f"b{k}.h"],
                                   name=f"/b{k}/HardSwish")]
        _se(f"b{k}.h", f"b{k}.se", "HardSigmoid", nodes, inits, f"b{k}.se")
        nodes += [_conv(f"b{k}.se", f"b{k}.pw", C, C, 1, f"b{k}.project", inits),
                  helper.make_node("Add", [x, f"b{k}.pw"], [f"b{k}.out"], name=f"/b{k}/Add")]
        x = f"b{k}.out"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out"))
    return _model(nodes, inits, {"input": [1, 3, HW, HW]}, [1, C, HW, HW])


def efficientnet_block() -> onnx.ModelProto:
    """Conv -> SiLU -> depthwise conv -> SiLU -> SE (Sigmoid) -> Conv1x1, and a sigmoid
    head (it keeps the judged outputs away from the fp16 cancellation of a last random
    conv, which the 3 % rule does not forgive)."""
    _seed(2)
    nodes: list = []
    inits: list = []
    nodes.append(_conv("input", "c0", 3, C, 3, "stem", inits))
    _silu("c0", "x0", nodes, "stem.silu")
    nodes.append(_conv("x0", "d", C, C, 3, "dw", inits, group=C))
    _silu("d", "x1", nodes, "dw.silu")
    _se("x1", "se", "Sigmoid", nodes, inits, "se")
    nodes += [_conv("se", "p", C, C, 1, "project", inits),
              helper.make_node("Sigmoid", ["p"], ["y"], name="/head/Sigmoid")]
    return _model(nodes, inits, {"input": [1, 3, HW, HW]}, [1, C, HW, HW])


def hardswish_legacy_block() -> onnx.ModelProto:
    """PyTorch's HardSwish before opset 14: x * Clip(x + 3, 0, 6) / 6, then Conv1x1 ->
    LeakyReLU -> Tanh (standalone activations) and a Conv1x1 + Sigmoid head."""
    _seed(3)
    nodes: list = []
    inits = [_init("three", np.float32(3.0)), _init("six", np.float32(6.0))]
    nodes += [
        _conv("input", "c0", 3, C, 3, "stem", inits),
        helper.make_node("Add", ["c0", "three"], ["a"], name="/hs/Add"),
        helper.make_node("Clip", ["a", "zero", "six"], ["cl"], name="/hs/Clip"),
        helper.make_node("Mul", ["c0", "cl"], ["m"], name="/hs/Mul"),
        helper.make_node("Div", ["m", "six"], ["h"], name="/hs/Div"),
        _conv("h", "c1", C, C, 1, "conv1", inits),
        helper.make_node("LeakyRelu", ["c1"], ["l"], name="/LeakyRelu", alpha=0.1),
        helper.make_node("Tanh", ["l"], ["t"], name="/Tanh"),
        _conv("t", "c2", C, C, 1, "conv2", inits),
        helper.make_node("Sigmoid", ["c2"], ["y"], name="/head/Sigmoid"),
    ]
    inits.append(_init("zero", np.float32(0.0)))
    return _model(nodes, inits, {"input": [1, 3, HW, HW]}, [1, C, HW, HW], opset=13)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _compile_and_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], out: Path,
                     quantize: str, tiles: int, **options) -> tuple[list, np.ndarray]:
    path = out.parent / f"{out.name}.onnx"
    onnx.save(model, path)
    if quantize == "int8":
        options["calibration"] = feeds
    manifest = compile_model(path, out, num_tiles=tiles, quantize=quantize, **options)
    with CompiledModel.load(out) as compiled:
        got = compiled.run(feeds).outputs["y"]
    return [step.kind for step in manifest.steps], got


BLOCKS = {
    "mobilenet_v3": mobilenet_v3_block,
    "efficientnet": efficientnet_block,
    "hardswish_legacy": hardswish_legacy_block,
}


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
@pytest.mark.parametrize("tiles", [1, 8])
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_is_one_accelerator_subgraph(block, tiles, quantize, tmp_path):
    model = BLOCKS[block]()
    x = np.random.default_rng(tiles).standard_normal((1, 3, HW, HW)).astype(np.float32)
    kinds, got = _compile_and_run(model, {"input": x}, tmp_path / "build", quantize, tiles)
    assert kinds == ["accelerator"], kinds
    check = check_output("y", got, _ort(model, {"input": x}), quantize)
    assert check.passed, check.summary()


def _single(op_type: str, shape=(1, C, 4, 4), **attrs) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], name=f"/{op_type}", **attrs)
    return _model([node], [], {"x": list(shape)}, list(shape))


SINGLE = {
    "sigmoid": lambda: _single("Sigmoid"),
    "tanh": lambda: _single("Tanh"),
    "leaky_relu": lambda: _single("LeakyRelu", alpha=0.2),
    "relu_2d": lambda: _single("Relu", shape=(2, 24)),
    "hard_swish": lambda: _single("HardSwish"),
    "hard_sigmoid": lambda: _single("HardSigmoid", alpha=0.25, beta=0.4),
    "clip": lambda: _model(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="/Clip")],
        [_init("lo", np.float32(-0.5)), _init("hi", np.float32(0.75))],
        {"x": [1, C, 4, 4]}, [1, C, 4, 4]),
    "mul_broadcast": lambda: _model(
        [helper.make_node("Mul", ["x", "s"], ["y"], name="/Mul")], [],
        {"x": [2, C, 4, 4], "s": [2, C, 1, 1]}, [2, C, 4, 4]),
    "mul_const": lambda: _model(
        [helper.make_node("Mul", ["k", "x"], ["y"], name="/Mul")],
        [_init("k", RNG.standard_normal((C, 1, 1)))], {"x": [1, C, 4, 4]}, [1, C, 4, 4]),
    "div_const": lambda: _model(
        [helper.make_node("Div", ["x", "k"], ["y"], name="/Div")],
        [_init("k", np.float32(6.0))], {"x": [1, C, 4, 4]}, [1, C, 4, 4]),
}


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
@pytest.mark.parametrize("tiles", [1, 8])
@pytest.mark.parametrize("case", sorted(SINGLE))
def test_single_layer(case, tiles, quantize, tmp_path):
    _seed(4)
    model = SINGLE[case]()
    feeds = {
        vi.name: RNG.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
        .astype(np.float32)
        for vi in model.graph.input
    }
    kinds, got = _compile_and_run(model, feeds, tmp_path / "build", quantize, tiles,
                                  require_compute=False)
    assert kinds == ["accelerator"], kinds
    check = check_output("y", got, _ort(model, feeds), quantize)
    assert check.passed, check.summary()


def _partitioned(model: onnx.ModelProto, tmp_path: Path, **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return compile_to_partitioned(str(path), **options)


def test_se_chain_layers_reference_and_json_roundtrip(tmp_path):
    """Three MobileNetV3 blocks: one accelerator sub-graph whose Mul2D / Sum2D layers come
    from the SE muls and the HardSwish decomposition; the reference executor matches
    onnxruntime; each JSON pair passes the checker and reads back op for op."""
    model = mobilenet_v3_block(blocks=3)
    module = _partitioned(model, tmp_path)
    fns = subgraph_functions(module, "accelerator")
    assert len(fns) == 1
    kinds = [op.LAYER_NAME for op in layers_of(fns[0])]
    # stem + 3 blocks: 4 HardSwish (3 layers each) and 3 SE muls
    assert kinds.count("Mul2D") == 4 * 2 + 3
    assert kinds.count("Sum2D") == 4 + 3  # HardSwish's +1/2 and the residual adds
    x = RNG.standard_normal((1, 3, HW, HW)).astype(np.float32)
    got = run_function(module, [x])[0]
    np.testing.assert_allclose(got, _ort(model, {"input": x}), rtol=1e-4, atol=1e-5)
    for fn in fns:
        nodes, consts = subgraph_to_json(fn)
        assert check_json_pair(nodes, consts) == []
        names = {n["attrs"]["layer_name"][0] for n in nodes["nodes"]}
        assert {"Mul2D", "Sum2D"} <= names
        assert str(json_to_function(nodes, consts)) == str(fn)


def test_activation_json_roundtrip(tmp_path):
    """Activation layers (leaky_relu's alpha, tanh) and Mul2D with a scalar constant
    (Div by 6) keep every property through the JSON pair."""
    module = _partitioned(hardswish_legacy_block(), tmp_path)
    (fn,) = subgraph_functions(module, "accelerator")
    acts = [op for op in layers_of(fn) if isinstance(op, mrvl.ActivationOp)]
    assert [op.activation_str() for op in acts] == ["leaky_relu", "tanh"]
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    by_kind = {}
    for node in nodes["nodes"]:
        by_kind.setdefault(node["attrs"]["layer_name"][0], []).append(node["attrs"])
    assert [a["activation_type"] for a in by_kind["Activation"]] == [["leaky_relu"], ["tanh"]]
    assert float(by_kind["Activation"][0]["alpha"][0]) == pytest.approx(0.1)
    assert any("input_const_name" in a for a in by_kind["Mul2D"])
    assert str(json_to_function(nodes, consts)) == str(fn)


def test_forced_to_cpu_expands_back(tmp_path):
    """Mul2D and Activation layers forced to the CPU expand back into graph ops with the
    same values."""
    model = efficientnet_block()
    module = _partitioned(model, tmp_path, cpu_layers=["/se/Mul", "/dw.silu/Sigmoid"])
    fns = subgraph_functions(module, "accelerator")
    assert len(fns) > 1
    x = RNG.standard_normal((1, 3, HW, HW)).astype(np.float32)
    got = run_function(module, [x])[0]
    np.testing.assert_allclose(got, _ort(model, {"input": x}), rtol=1e-4, atol=1e-5)
