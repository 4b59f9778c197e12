"""The reference executor (mrvl.sim.reference): input validation, func.call between sub-graph
functions, graph.onnx through onnxruntime (with optional inputs), the plug-in point, and the
layout variants of the kernels.

Exact-semantics ops are compared for exact equality against numpy; convolutions against
onnxruntime with rtol 1e-4 / atol 1e-5 (float32 summation order differs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.ir import Block, Region
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, result_def

from mrvl.dialects import graph as G
from mrvl.errors import RuntimeInputError
from mrvl.frontend.onnx_import import import_onnx
from mrvl import reference_kernels as K
from mrvl.sim.reference import register_reference_impls, run_function

RNG = np.random.default_rng(0)


def _function(name: str, arg_types, build, arg_names=None, output_names=None) -> func.FuncOp:
    """func.func @name whose body is made by `build(block) -> (ops, results)`."""
    block = Block(arg_types=arg_types)
    ops, results = build(block)
    block.add_ops([*ops, func.ReturnOp(*results)])
    fn = func.FuncOp(name, (list(arg_types), [r.type for r in results]), Region(block))
    if arg_names is not None:
        fn.arg_attrs = ArrayAttr([DictionaryAttr({"graph.name": StringAttr(n)}) for n in arg_names])
    if output_names is not None:
        fn.attributes["graph.output_names"] = ArrayAttr([StringAttr(n) for n in output_names])
    return fn


T4 = TensorType(f32, [2, 3])


def _relu_plus(block: Block):
    one = G.ConstantOp.from_numpy(np.ones((3,), np.float32))
    relu = G.ReluOp(block.args[0])
    add = G.AddOp(relu, one)
    return [one, relu, add], [add.result, relu.result]


@pytest.fixture
def simple_module() -> ModuleOp:
    return ModuleOp([_function("main", [T4], _relu_plus, ["x"], ["y", "r"])])


def test_inputs_by_position_and_by_name(simple_module: ModuleOp) -> None:
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    y, r = run_function(simple_module, [x])
    np.testing.assert_array_equal(r, np.maximum(x, 0))
    np.testing.assert_array_equal(y, np.maximum(x, 0) + 1)
    y2, _ = run_function(simple_module, {"x": x})
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], r"expected 1 input\(s\) \['x'\], got 0"),
        ([np.zeros((2, 3), np.float64)], "input 'x' expected dtype float32, got float64"),
        ([np.zeros((3, 2), np.float32)], r"input 'x' expected shape \[2, 3\], got \[3, 2\]"),
        ({"z": np.zeros((2, 3), np.float32)}, r"unknown input name\(s\) \['z'\]"),
        ({}, r"missing input\(s\) \['x'\]"),
    ],
)
def test_bad_inputs_raise_runtime_input_error(simple_module: ModuleOp, inputs: Any, message: str) -> None:
    with pytest.raises(RuntimeInputError, match=message):
        run_function(simple_module, inputs)


def test_unknown_function(simple_module: ModuleOp) -> None:
    with pytest.raises(RuntimeInputError, match="no function named 'cpu_main_0'"):
        run_function(simple_module, [np.zeros((2, 3), np.float32)], func_name="cpu_main_0")


def test_partitioned_main_calls_sub_graphs() -> None:
    """@main calls @cpu_main_0 twice and @tvmgen_mrvl_main_1 once, as a partition does."""
    sub0 = _function("cpu_main_0", [T4], _relu_plus)

    def neg_mul(block: Block):
        mul = G.MulOp(block.args[0], block.args[1])
        return [mul], [mul.result]

    sub1 = _function("tvmgen_mrvl_main_1", [T4, T4], neg_mul)

    def main_body(block: Block):
        c0 = func.CallOp("cpu_main_0", [block.args[0]], [T4, T4])
        c1 = func.CallOp("cpu_main_0", [c0.results[0]], [T4, T4])
        c2 = func.CallOp("tvmgen_mrvl_main_1", [c1.results[0], c0.results[1]], [T4])
        return [c0, c1, c2], [c2.results[0], c1.results[1]]

    main = _function("main", [T4], main_body, ["x"], ["out", "relu"])
    module = ModuleOp([main, sub0, sub1])
    module.verify()
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    out, relu = run_function(module, [x])
    r0 = np.maximum(x, 0)
    y0 = r0 + 1
    r1 = np.maximum(y0, 0)
    np.testing.assert_array_equal(relu, r1)
    np.testing.assert_array_equal(out, (r1 + 1) * r0)
    # A sub-graph function runs on its own too.
    (prod,) = run_function(module, [x, y0], func_name="tvmgen_mrvl_main_1")
    np.testing.assert_array_equal(prod, x * y0)


def test_generic_op_with_absent_optional_input() -> None:
    """Clip with only `max` given (ONNX input positions 0 and 2) runs on onnxruntime."""
    def body(block: Block):
        hi = G.ConstantOp.from_numpy(np.asarray(0.25, np.float32))
        clip = G.OnnxOp([block.args[0], hi.result], [T4], op_type="Clip", opset=13, input_indices=[0, 2])
        return [hi, clip], [clip.outputs[0]]

    module = ModuleOp([_function("main", [T4], body, ["x"], ["y"])])
    module.verify()
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    (y,) = run_function(module, [x])
    np.testing.assert_array_equal(y, np.minimum(x, np.float32(0.25)))


def test_imported_generic_op_runs_on_onnxruntime() -> None:
    """An ONNX op we do not model (TopK, two outputs) gives onnxruntime's values."""
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=0)
    g = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 7])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [3, 2]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [3, 2])],
        initializer=[numpy_helper.from_array(np.array([2], np.int64), "k")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = RNG.standard_normal((3, 7)).astype(np.float32)
    module = import_onnx(model)
    assert any(isinstance(op, G.OnnxOp) for op in module.walk())
    got = run_function(module, {"x": x})
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g_, e in zip(got, expected):
        np.testing.assert_array_equal(g_, e)


@irdl_op_definition
class _DoubleOp(IRDLOperation):
    """A test-only op (no dialect) to exercise register_reference_impls."""

    name = "test_ref.double"
    input = operand_def(TensorType)
    result = result_def(TensorType)


@register_impls
class _DoubleFunctions(InterpreterFunctions):
    @impl(_DoubleOp)
    def run_double(self, interpreter: Interpreter, op: _DoubleOp, args: tuple[Any, ...]):
        return (args[0] * 2,)


def test_register_reference_impls_plugs_in_other_dialects() -> None:
    register_reference_impls(_DoubleFunctions)
    register_reference_impls(_DoubleFunctions)  # idempotent

    def body(block: Block):
        d = _DoubleOp.create(operands=[block.args[0]], result_types=[T4])
        relu = G.ReluOp(d.results[0])
        return [d, relu], [relu.result]

    module = ModuleOp([_function("main", [T4], body, ["x"], ["y"])])
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    (y,) = run_function(module, [x])
    np.testing.assert_array_equal(y, np.maximum(2 * x, 0))


def _ort_conv(x, w, b, *, strides, pads, dilations, group) -> np.ndarray:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=strides, pads=pads, dilations=dilations, group=group)
    g = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(
    ("cin", "cout", "group", "k", "stride", "pads", "dil"),
    [
        (3, 8, 1, 3, 1, [1, 1, 1, 1], 1),
        (8, 8, 8, 3, 2, [1, 0, 1, 2], 1),  # depthwise, asymmetric pads
        (6, 4, 2, 3, 1, [2, 2, 2, 2], 2),  # grouped, dilated
        (4, 5, 1, 1, 2, [0, 0, 0, 0], 1),
    ],
)
def test_conv2d_kernel_layouts_match_onnxruntime(cin, cout, group, k, stride, pads, dil) -> None:
    x = RNG.standard_normal((2, cin, 9, 8)).astype(np.float32)
    w = RNG.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    b = RNG.standard_normal((cout,)).astype(np.float32)
    kw = dict(strides=[stride] * 2, pads=pads, dilations=[dil] * 2)
    expected = _ort_conv(x, w, b, group=group, **kw)
    nchw = K.conv2d(x, w, b, groups=group, **kw)
    np.testing.assert_allclose(nchw, expected, rtol=1e-4, atol=1e-5)
    nhwc = K.conv2d(
        x.transpose(0, 2, 3, 1), w.transpose(0, 2, 3, 1), b, groups=group,
        data_layout="NHWC", kernel_layout="OHWI", **kw,
    )
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


def test_nhwc_pools_and_batch_norm_equal_nchw() -> None:
    x = RNG.standard_normal((1, 4, 7, 6)).astype(np.float32)
    xh = x.transpose(0, 2, 3, 1)
    kw = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], ceil_mode=1)
    np.testing.assert_array_equal(
        K.max_pool2d(xh, layout="NHWC", **kw), K.max_pool2d(x, **kw).transpose(0, 2, 3, 1)
    )
    np.testing.assert_array_equal(
        K.avg_pool2d(xh, layout="NHWC", **kw), K.avg_pool2d(x, **kw).transpose(0, 2, 3, 1)
    )
    p = [RNG.standard_normal(4).astype(np.float32) for _ in range(3)] + [np.full(4, 2.0, np.float32)]
    np.testing.assert_array_equal(
        K.batch_norm(xh, *p, layout="NHWC"), K.batch_norm(x, *p).transpose(0, 2, 3, 1)
    )
    np.testing.assert_array_equal(
        K.global_avg_pool2d(xh, layout="NHWC"), K.global_avg_pool2d(x).transpose(0, 2, 3, 1)
    )
    np.testing.assert_array_equal(
        K.layout_transform(x, src_layout="NCHW", dst_layout="NHWC"), xh
    )


def test_results_keep_float32() -> None:
    """No silent promotion to float64 anywhere in a float32 chain."""
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    for y in (
        K.sigmoid(x), K.hard_swish(x), K.leaky_relu(x, alpha=0.1), K.softmax(x, axis=1),
        K.gemm(x[0, 0], x[0, 1], x[0, 0, 0], alpha=0.5, beta=2.0),
        K.resize(x, sizes=[1, 2, 7, 9], mode="linear"), K.clip(x, min=-0.5, max=0.5),
        K.pad(x, pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=1.5),
    ):
        assert y.dtype == np.float32
