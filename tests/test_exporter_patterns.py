"""Node patterns that real exporters (torch.onnx.export, TorchScript and dynamo) write, rebuilt
with onnx.helper (no torch): each reproduces a failure or a needless CPU fallback found by
exporting real architectures. Results are checked against onnxruntime: the reference executor
within rtol 1e-4 / atol 1e-5, the simulated build with Marvell's fp16 rule (`--check`)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.parser import Parser

from mrvl.dialects import graph, mrvl
from mrvl.driver.cli import main
from mrvl.frontend.onnx_export import export_function
from mrvl.frontend.onnx_import import import_onnx
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.lowering.offload_report import offload_report
from mrvl.driver import api
from mrvl.sim.reference import run_function

RNG = np.random.default_rng(7)


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _model(nodes, inits, x_shape, out_name, out_shape, opset) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "exported", [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _ops(module, cls) -> list:
    return [op for op in module.walk() if isinstance(op, cls)]


def _conv_nodes(cin: int, cout: int) -> tuple[list, list]:
    w = RNG.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3
    b = RNG.standard_normal(cout).astype(np.float32) * 0.1
    node = helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="/conv/Conv",
                            pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    relu = helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu")
    return [node, relu], [_init("conv.w", w), _init("conv.b", b)]


def _mean_head(opset: int, keepdims: int) -> onnx.ModelProto:
    """Conv -> Relu -> ReduceMean over H, W -> [Flatten] -> Gemm(transB=1): `x.mean((2, 3))`
    (EfficientNet-style heads) from the TorchScript exporter (opset 13: axes attribute) and
    AdaptiveAvgPool2d(1) from the dynamo exporter (opset 18: axes input, negative axes)."""
    nodes, inits = _conv_nodes(3, 8)
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1, -2], np.int64), "axes"))
        nodes.append(helper.make_node("ReduceMean", ["r", "axes"], ["m"], name="node_mean",
                                      keepdims=keepdims))
    else:
        nodes.append(helper.make_node("ReduceMean", ["r"], ["m"], name="/ReduceMean",
                                      axes=[2, 3], keepdims=keepdims))
    flat = "m"
    if keepdims:
        nodes.append(helper.make_node("Flatten", ["m"], ["f"], name="/Flatten", axis=1))
        flat = "f"
    inits += [_init("fc.w", RNG.standard_normal((4, 8)) * 0.3), _init("fc.b", np.arange(4) * 0.1)]
    nodes.append(helper.make_node("Gemm", [flat, "fc.w", "fc.b"], ["y"], name="/fc/Gemm",
                                  alpha=1.0, beta=1.0, transB=1))
    return _model(nodes, inits, [1, 3, 8, 8], "y", [1, 4], opset)


@pytest.mark.parametrize("opset,keepdims", [(13, 0), (13, 1), (18, 0)])
def test_spatial_reduce_mean_is_a_global_pool_on_the_accelerator(opset, keepdims):
    model = _mean_head(opset, keepdims)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    module = import_onnx(model)
    assert len(_ops(module, graph.GlobalAvgPool2DOp)) == 1 and not _ops(module, graph.OnnxOp)
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, x), rtol=1e-4, atol=1e-5)
    report = offload_report(compile_to_partitioned(model))
    assert report["cpu_nodes"] == []


def test_other_reductions_stay_generic_and_exact():
    """ReduceMean over the channel axis and ReduceMax over H, W (a global max pool)."""
    nodes, inits = _conv_nodes(3, 8)
    nodes += [helper.make_node("ReduceMean", ["r"], ["m"], name="/mean_c", axes=[1], keepdims=1),
              helper.make_node("ReduceMax", ["m"], ["y"], name="/amax", axes=[-2, -1],
                               keepdims=0)]
    model = _model(nodes, inits, [1, 3, 8, 8], "y", [1, 1], 13)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    module = import_onnx(model)
    assert [op.op_type.data for op in _ops(module, graph.OnnxOp)] == ["ReduceMean"]
    assert len(_ops(module, graph.GlobalMaxPool2DOp)) == 1
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, x), rtol=1e-4, atol=1e-5)


def _hard_sigmoid_se(opset: int = 17) -> onnx.ModelProto:
    """MobileNetV3 squeeze-excite as exported: GlobalAveragePool -> Conv -> Relu -> Conv ->
    HardSigmoid(alpha=1/6) -> Mul with the block input; and a Gemm -> HardSigmoid head."""
    nodes, inits = _conv_nodes(3, 8)
    inits += [_init("se1.w", RNG.standard_normal((4, 8, 1, 1)) * 0.5), _init("se1.b", np.zeros(4)),
              _init("se2.w", RNG.standard_normal((8, 4, 1, 1)) * 0.5),
              _init("se2.b", RNG.standard_normal(8) * 0.5),
              _init("fc.w", RNG.standard_normal((5, 8)) * 0.5), _init("fc.b", np.ones(5) * 0.2)]
    nodes += [
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/se/GlobalAveragePool"),
        helper.make_node("Conv", ["p", "se1.w", "se1.b"], ["s1"], name="/se/fc1/Conv"),
        helper.make_node("Relu", ["s1"], ["s1r"], name="/se/Relu"),
        helper.make_node("Conv", ["s1r", "se2.w", "se2.b"], ["s2"], name="/se/fc2/Conv"),
        helper.make_node("HardSigmoid", ["s2"], ["hs"], name="/se/HardSigmoid",
                         alpha=1.0 / 6.0, beta=0.5),
        helper.make_node("Mul", ["r", "hs"], ["se"], name="/se/Mul"),
        helper.make_node("GlobalAveragePool", ["se"], ["q"], name="/pool"),
        helper.make_node("Flatten", ["q"], ["f"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["g"], name="/fc/Gemm", transB=1),
        helper.make_node("HardSigmoid", ["g"], ["y"], name="/HardSigmoid", alpha=0.2, beta=0.5),
    ]
    return _model(nodes, inits, [1, 3, 8, 8], "y", [1, 5], opset)


def test_hard_sigmoid_folds_into_conv_and_fc(tmp_path):
    model = _hard_sigmoid_se()
    module = compile_to_partitioned(model)
    assert not _ops(module, graph.HardSigmoidOp)
    clipped = [op for op in module.walk() if isinstance(op, mrvl.Conv2DOp | mrvl.FCOp)
               and op.activation_str() == "clip"]
    assert len(clipped) == 2
    cpu = [n["node"] for n in offload_report(module)["cpu_nodes"]]
    assert cpu == []  # the SE Mul is a Mul2D layer (tests/test_eltwise_act_layers.py)
    assert len([op for op in module.walk() if isinstance(op, mrvl.Mul2DOp)]) == 1
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    build = api.compile(model, tmp_path / "build", num_tiles=8, quantize="fp16")
    result = api.run(build, {"input": x}, check=True)
    assert result.passed
    np.testing.assert_allclose(result.outputs["y"], _ort(model, x), rtol=0.03, atol=1e-3)


def test_external_data_model_is_copied_into_the_build(tmp_path):
    """The dynamo exporter writes the weights to `<model>.onnx.data` beside the model."""
    model = _mean_head(18, 0)
    src = tmp_path / "src"
    src.mkdir()
    external = onnx.ModelProto()
    external.CopyFrom(model)  # saving with external data rewrites the proto in place
    onnx.save(external, src / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=128)
    build = api.compile(src / "m.onnx", tmp_path / "build", num_tiles=4)
    assert (build / "m.onnx.data").is_file()
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    result = api.run(build, {"input": x}, check=True)
    assert result.passed
    np.testing.assert_allclose(result.outputs["y"], _ort(model, x), rtol=0.03, atol=1e-3)


def test_partition_report_without_accelerator_subgraph(tmp_path, capsys):
    """A model with nothing for the accelerator still gets its offload report written."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 17, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 17, 32])
    g = helper.make_graph([helper.make_node("Softmax", ["input"], ["y"], name="/Softmax", axis=-1)],
                          "sm", [x], [y])
    path = tmp_path / "sm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "new" / "dir"
    assert main(["partition", str(path), "-o", str(out), "--report"]) == 0
    assert "/Softmax" in (out / "offload-report.json").read_text()
    assert "cpu: 1 sub-graph(s)" in capsys.readouterr().out


def test_unet_up_path_counts_conv_transpose_macs():
    """UNet decoder as exported: ConvTranspose(k=2, s=2) and Resize(nearest, empty roi input,
    scales constant) joined to the skip by Concat on the channel axis. Both up-samplings run
    on the accelerator (ConvTranspose as phase convs, the nearest x2 as copies), and the
    accelerator's MACs count the ConvTranspose's exactly."""
    nodes, inits = _conv_nodes(3, 8)
    wt = RNG.standard_normal((8, 4, 2, 2)).astype(np.float32) * 0.3
    inits += [_init("up.w", wt), _init("up.b", np.zeros(4)),
              numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
              _init("out.w", RNG.standard_normal((2, 20, 1, 1)) * 0.3), _init("out.b", np.zeros(2))]
    nodes += [
        helper.make_node("MaxPool", ["r"], ["p"], name="/MaxPool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("ConvTranspose", ["p", "up.w", "up.b"], ["u"], name="/up/ConvTranspose",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["n"], name="/up1/Resize",
                         mode="nearest", coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor"),
        helper.make_node("Concat", ["u", "n", "r"], ["cat"], name="/Concat", axis=1),
        helper.make_node("Conv", ["cat", "out.w", "out.b"], ["y"], name="/out/Conv"),
    ]
    model = _model(nodes, inits, [1, 3, 8, 8], "y", [1, 2, 8, 8], 17)
    module = compile_to_partitioned(model)
    report = offload_report(module)
    assert report["cpu_nodes"] == []
    transposed = 1 * 8 * 4 * 4 * 4 * 2 * 2  # every input element times Cout * kh * kw
    direct = 8 * 8 * 8 * 3 * 9 + 2 * 8 * 8 * 20
    assert report["macs_total"] == report["macs_accelerator"] == transposed + direct
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_function(import_onnx(model), [x])[0], _ort(model, x),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, x),
                               rtol=1e-4, atol=1e-5)


def test_half_precision_model_runs_on_the_accelerator(tmp_path):
    """`model.half()` then export: f16 input, weights and output. The layers go to the
    accelerator (computed as f32 in the IR); only the border Casts stay on the CPU."""
    f16 = TensorProto.FLOAT16
    inits = [numpy_helper.from_array(a.astype(np.float16), n) for n, a in (
        ("conv.w", RNG.standard_normal((8, 3, 3, 3)) * 0.3), ("conv.b", RNG.standard_normal(8) * .1),
        ("fc.w", RNG.standard_normal((4, 8)) * 0.3), ("fc.b", np.arange(4) * 0.1))]
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="/conv/Conv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="/fc/Gemm", transB=1),
    ]
    g = helper.make_graph(nodes, "half", [helper.make_tensor_value_info("input", f16, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", f16, [1, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float16)
    module = compile_to_partitioned(model)
    report = offload_report(module)
    assert report["accelerator_mac_share"] == 1.0
    assert {n["node"] for n in report["cpu_nodes"]} <= {"graph.onnx"}  # the two border Casts
    assert len(report["cpu_nodes"]) == 2
    build = api.compile(model, tmp_path / "build", num_tiles=2)
    result = api.run(build, {"input": x}, check=True)
    assert result.passed and result.outputs["y"].dtype == np.float16
    np.testing.assert_allclose(result.outputs["y"].astype(np.float32),
                               _ort(model, x).astype(np.float32), rtol=0.03, atol=2e-3)


@pytest.mark.parametrize("size,kernel,stride,pad", [(8, 3, 2, 0), (7, 2, 2, 0), (9, 3, 2, 1)])
def test_ceil_mode_max_pool_runs_on_the_accelerator(tmp_path, size, kernel, stride, pad):
    """`nn.MaxPool2d(..., ceil_mode=True)` (GoogLeNet, SqueezeNet) after a conv with negative
    outputs: imported as a floor-mode pool with extra end padding, which must be ignored."""
    nodes, inits = _conv_nodes(3, 8)
    nodes[1] = helper.make_node("MaxPool", ["c"], ["y"], name="/pool/MaxPool", ceil_mode=1,
                                kernel_shape=[kernel, kernel], strides=[stride, stride],
                                pads=[pad] * 4)
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    model = _model(nodes, inits, [1, 3, size, size], "y", [1, 8, out, out], 17)
    x = RNG.standard_normal((1, 3, size, size)).astype(np.float32)
    module = import_onnx(model)
    (pool,) = _ops(module, graph.MaxPool2DOp)
    assert pool.ceil_mode.value.data == 0
    np.testing.assert_allclose(run_function(module, [x])[0], _ort(model, x), rtol=1e-4, atol=1e-5)
    assert offload_report(compile_to_partitioned(model))["cpu_nodes"] == []
    result = api.run(api.compile(model, tmp_path / "build", num_tiles=2), {"input": x}, check=True)
    assert result.passed


CEIL_POOLS = """builtin.module {
  func.func @main(%x: tensor<1x1x2x2xf32> {graph.name = "x"}) -> (tensor<1x1xf32>, tensor<1x1x1x1xf32>) attributes {graph.output_names = ["y0", "y1"]} {
    %a = graph.avg_pool2d %x {kernel_shape = array<i64: 1, 1>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 1 : i64, count_include_pad = 1 : i64, layout = "NCHW"} : (tensor<1x1x2x2xf32>) -> tensor<1x1x1x1xf32>
    %m = graph.max_pool2d %x {kernel_shape = array<i64: 1, 1>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 1 : i64, layout = "NCHW"} : (tensor<1x1x2x2xf32>) -> tensor<1x1x1x1xf32>
    %f = graph.flatten %a {axis = 1 : i64} : (tensor<1x1x1x1xf32>) -> tensor<1x1xf32>
    %w = graph.constant dense<0.25> : tensor<1x1xf32>
    %d = graph.dense %f, %w : (tensor<1x1xf32>, tensor<1x1xf32>) -> tensor<1x1xf32>
    func.return %d, %m : tensor<1x1xf32>, tensor<1x1x1x1xf32>
  }
}"""


def test_ceil_mode_pools_export_in_floor_mode():
    """A ceil-mode pool whose last window would start in the end padding (size 2, stride 2,
    kernel 1: one output) is exported as floor mode with end pads: ONNX shape inference gives
    2 there, onnxruntime's kernel 1, and the session would not load (found by the IR fuzz)."""
    ctx = Context()
    for dialect in (builtin.Builtin, func.Func, graph.Graph):
        ctx.load_dialect(dialect)
    module = Parser(ctx, CEIL_POOLS).parse_module()
    model = export_function(module)
    pools = [n for n in model.graph.node if n.op_type in ("AveragePool", "MaxPool")]
    assert len(pools) == 2
    assert all(a.i == 0 for n in pools for a in n.attribute if a.name == "ceil_mode")
    x = RNG.standard_normal((1, 1, 2, 2)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, ref in zip(sess.run(None, {"x": x}), run_function(module, [x])):
        np.testing.assert_allclose(got, ref, rtol=1e-6)
