"""import -> export -> onnxruntime equals import -> reference executor equals the original model
on onnxruntime (rtol 1e-4, atol 1e-5: the float32 summation order differs between numpy and
onnxruntime; integer outputs must be equal).

Small models are built here with onnx.helper to reach the exporter's corners (old opsets,
generic ops that pin the opset, outputs that are also consumed, initializers listed as inputs);
the in-repo models (`mrvl.models`) check the whole path at scale (ResNet-50 in one test).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
from xdsl.dialects import test as xdsl_test
from xdsl.ir import Block, Region

from mrvl.frontend.onnx_export import ExportError, export_function
from mrvl.frontend.onnx_import import import_onnx
from mrvl.models import MODELS, example_inputs
from mrvl.sim.reference import run_function

RTOL, ATOL = 1e-4, 1e-5


def _run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _assert_close(what: str, got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected), what
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == e.dtype and g.shape == e.shape, f"{what} output {i}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=f"{what} output {i}")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{what} output {i}")


def check_round_trip(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The three-way equality of the module docstring; returns the exported model."""
    expected = _run_ort(model, feeds)
    module = import_onnx(model)
    _assert_close("reference executor", run_function(module, feeds), expected)
    exported = export_function(module)
    onnx.checker.check_model(exported)
    assert [i.name for i in exported.graph.input] == list(feeds)
    assert [o.name for o in exported.graph.output] == [o.name for o in model.graph.output]
    _assert_close("export + onnxruntime", _run_ort(exported, feeds), expected)
    return exported


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    return model


def _f32(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(arr, name)


RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_cnn_block_with_shared_output() -> None:
    """conv + bn + relu + pools + gemm; `r` is an output and also feeds the next op."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
        helper.make_node("Softmax", ["y"], ["prob"], axis=1),
    ]
    inits = [
        _init("w", _w(8, 3, 3, 3)), _init("b", _w(8)), _init("s", _w(8)), _init("bb", _w(8)),
        _init("m", _w(8)), _init("v", np.abs(_w(8)) + 0.5), _init("fw", _w(5, 8)), _init("fb", _w(5)),
    ]
    model = _model(nodes, [_f32("x", [1, 3, 16, 16])], [_f32("prob", [1, 5]), _f32("r", [1, 8, 8, 8])], inits)
    check_round_trip(model, {"x": _w(1, 3, 16, 16)})


def test_opset_11_attribute_forms_and_generic_op() -> None:
    """Opset 11: Squeeze / Unsqueeze / Split axes as attributes, Softmax flattening from
    `axis`, and a generic ReduceMean (axes attribute) that pins the export to opset 11."""
    nodes = [
        helper.make_node("Softmax", ["x"], ["s"], axis=1),
        helper.make_node("Split", ["s"], ["s0", "s1"], axis=2, split=[1, 3]),
        helper.make_node("Squeeze", ["s0"], ["q"], axes=[2]),
        helper.make_node("Unsqueeze", ["q"], ["u"], axes=[0]),
        helper.make_node("ReduceMean", ["s1"], ["rm"], axes=[3], keepdims=0),
        helper.make_node("Clip", ["rm", "lo", "hi"], ["y"]),
        helper.make_node("HardSigmoid", ["u"], ["h"]),
    ]
    inits = [_init("lo", np.float32(0.01)), _init("hi", np.float32(0.2))]
    model = _model(
        nodes, [_f32("x", [2, 3, 4, 5])], [_f32("y", [2, 3, 3]), _f32("h", [1, 2, 3, 5])], inits, opset=11
    )
    exported = check_round_trip(model, {"x": _w(2, 3, 4, 5)})
    assert {o.domain: o.version for o in exported.opset_import}[""] == 11


def test_initializers_listed_as_inputs_and_passthrough_output() -> None:
    """Older exporters list initializers among the inputs; an output may be an input."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["y"]),
        helper.make_node("Identity", ["x"], ["same"]),
    ]
    inits = [_init("w", _w(4, 3)), _init("b", _w(3))]
    inputs = [_f32("x", [2, 4]), _f32("w", [4, 3]), _f32("b", [3])]
    model = _model(nodes, inputs, [_f32("y", [2, 3]), _f32("same", [2, 4])], inits, opset=9)
    check_round_trip(model, {"x": _w(2, 4)})


def test_integer_and_generic_multi_output_ops() -> None:
    """TopK (two outputs, one int64) and an integer Div go through export unchanged."""
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["vals", "idx"], axis=-1),
        helper.make_node("Div", ["idx", "two"], ["half"]),
    ]
    inits = [_init("k", np.array([3], np.int64)), _init("two", np.array([2], np.int64))]
    outputs = [_f32("vals", [2, 3]), helper.make_tensor_value_info("half", TensorProto.INT64, [2, 3])]
    model = _model(nodes, [_f32("x", [2, 6])], outputs, inits)
    check_round_trip(model, {"x": _w(2, 6)})


def test_export_rejects_bad_requests() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_f32("x", [2])], [_f32("y", [2])])
    module = import_onnx(model)
    with pytest.raises(ExportError, match="no function named 'nope'"):
        export_function(module, "nope")
    with pytest.raises(ExportError, match="opset 3 is outside"):
        export_function(module, opset=3)


@pytest.mark.parametrize("name", sorted(n for n in MODELS if n != "resnet50"))
def test_repo_models(name: str) -> None:
    model = MODELS[name]()
    check_round_trip(model, example_inputs(model))


def test_resnet50() -> None:
    """The one ResNet-50 test (25M parameters: a few seconds on 2 cores)."""
    model = MODELS["resnet50"]()
    check_round_trip(model, example_inputs(model))


def test_export_rejects_ops_of_other_dialects() -> None:
    """A function holding a non-graph op (here xDSL's test.op) names it in the error."""
    ty = TensorType(f32, [2])
    block = Block(arg_types=[ty])
    op = xdsl_test.TestOp.create(operands=[block.args[0]], result_types=[ty])
    block.add_ops([op, func.ReturnOp(op.results[0])])
    module = ModuleOp([func.FuncOp("main", ([ty], [ty]), Region(block))])
    with pytest.raises(ExportError, match="test.op has no ONNX export"):
        export_function(module)
