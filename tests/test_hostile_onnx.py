"""Hostile-input catalogue: ONNX models that are garbage, invalid, or valid but unusual.

- valid but unusual: `If` / `Loop` / `Scan` whose subgraphs read values of the main graph
  (outer-scope references) compile, run, and match onnxruntime (issue 11, item 2);
- invalid: models the ONNX checker or our own checks refuse, before anything is written
  (item 7); a size beyond the limit refused at once, naming it (item 8);
- garbage: files that are not ONNX at all.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hostile import one_line_error
from mrvl.driver.cli import main
from mrvl.sim import acceptance
from mrvl.sim.runtime import CompiledModel

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers)),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _conv_prefix(x: str = "x", out: str = "feat") -> tuple[list, list]:
    """A Conv + Relu on [1, 3, 8, 8] (accelerator work) producing `out`."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", F, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32))
    nodes = [helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], [out])]
    return nodes, [w]


def _if_model() -> onnx.ModelProto:
    """feat = Relu(Conv(x)); scaled = feat * 2 is read only inside the branches."""
    prefix, inits = _conv_prefix()
    two = helper.make_tensor("two", F, [], [2.0])
    then_graph = helper.make_graph(
        [helper.make_node("Add", ["scaled", "feat"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", F, [1, 4, 8, 8])])
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["scaled"], ["else_out"])], "else", [],
        [helper.make_tensor_value_info("else_out", F, [1, 4, 8, 8])])
    nodes = prefix + [
        helper.make_node("Mul", ["feat", "two"], ["scaled"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_graph,
                         else_branch=else_graph)]
    zero = helper.make_tensor("zero", F, [], [0.0])
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])], inits + [two, zero])


def _loop_model() -> onnx.ModelProto:
    """A Loop of 3 trips accumulating `step` (computed outside) into the carried value."""
    prefix, inits = _conv_prefix()
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "step"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", F, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [1, 4, 8, 8])])
    nodes = prefix + [
        helper.make_node("Sigmoid", ["feat"], ["step"]),
        helper.make_node("Loop", ["trips", "keep_going", "feat"], ["y"], body=body)]
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [3])
    keep_going = helper.make_tensor("keep_going", TensorProto.BOOL, [], [True])
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
                  inits + [trips, keep_going])


def _scan_model() -> onnx.ModelProto:
    """A Scan over the 8 rows of `feat`, adding `bias` (computed outside) to each."""
    prefix, inits = _conv_prefix()
    body = helper.make_graph(
        [helper.make_node("Add", ["row", "bias2"], ["row_out"]),
         helper.make_node("Identity", ["state_in"], ["state_out"])], "body",
        [helper.make_tensor_value_info("state_in", F, [1]),
         helper.make_tensor_value_info("row", F, [1, 4, 8])],
        [helper.make_tensor_value_info("state_out", F, [1]),
         helper.make_tensor_value_info("row_out", F, [1, 4, 8])])
    nodes = prefix + [
        helper.make_node("ReduceMean", ["feat"], ["bias"], keepdims=0, axes=[2, 3]),
        helper.make_node("Unsqueeze", ["bias", "axis2"], ["bias2"]),
        helper.make_node("Scan", ["state", "feat"], ["state_final", "y"], body=body,
                         num_scan_inputs=1, scan_input_axes=[2], scan_output_axes=[2])]
    state = helper.make_tensor("state", F, [1], [0.0])
    axis2 = helper.make_tensor("axis2", TensorProto.INT64, [1], [2])
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
                  inits + [state, axis2])


@pytest.mark.parametrize("make", [_if_model, _loop_model, _scan_model],
                         ids=["if", "loop", "scan"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["pos", "neg"])
def test_control_flow_with_outer_scope_references_runs(make, sign, tmp_path):
    model = make()
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    out = tmp_path / "build"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    x = (sign * np.random.default_rng(1).random((1, 3, 8, 8))).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    with CompiledModel.load(out) as compiled:
        assert any(s.kind == "accelerator" for s in compiled.manifest.steps)
        got = compiled.run({"x": x}).outputs["y"]
    check = acceptance.check_output("y", got, expected, "fp16")
    assert check.passed and check.checked > 0, check.summary()


@pytest.mark.parametrize("make", [_if_model, _loop_model, _scan_model],
                         ids=["if", "loop", "scan"])
def test_outer_scope_operands_in_the_ir(make):
    """The importer keeps the outer values as operands (they are not dead); the IR prints and
    parses back with them, and the reference executor runs the node as onnxruntime does."""
    import io

    from xdsl.context import Context
    from xdsl.dialects import builtin, func
    from xdsl.parser import Parser
    from xdsl.printer import Printer

    from mrvl.dialects import graph
    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.sim.reference import run_function

    model = make()
    module = import_onnx(model)
    (node,) = [op for op in module.walk() if isinstance(op, graph.OnnxOp)
               and op.op_type.data in ("If", "Loop", "Scan")]
    assert node.outer_values() and all(v.owner is not None for _, v in node.outer_values())
    text = io.StringIO()
    Printer(stream=text).print_op(module)
    ctx = Context()
    for dialect in (builtin.Builtin, func.Func, graph.Graph):
        ctx.load_dialect(dialect)
    parsed = Parser(ctx, text.getvalue()).parse_module()
    parsed.verify()
    x = np.random.default_rng(2).random((1, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    (got,) = run_function(parsed, [x])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _plain(nodes, inits=(), x_shape=(1, 3, 8, 8), ir_version=8) -> onnx.ModelProto:
    """A model as a careless exporter might write it (not checked here)."""
    return helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, list(x_shape))],
                          [helper.make_tensor_value_info("y", F, None)],
                          initializer=list(inits)),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version)


def _weight(dtype=np.float32):
    return onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype), "w")


INVALID = {
    "relu-two-inputs": (_plain([helper.make_node("Relu", ["x", "x"], ["y"])]),
                        "input size 2 not in range"),
    "duplicate-outputs": (_plain([helper.make_node("Relu", ["x"], ["y"]),
                                  helper.make_node("Sigmoid", ["x"], ["y"])]),
                          "single static assignment"),
    "negative-pads": (_plain([helper.make_node("Conv", ["x", "w"], ["y"], pads=[-1] * 4)],
                             [_weight()]), "pads must be >= 0"),
    "zero-stride": (_plain([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                             strides=[0, 1])]), "strides must be >= 1"),
    "fp64-weight": (_plain([helper.make_node("Conv", ["x", "w"], ["y"])],
                           [_weight(np.float64)]), "must have one type"),
    "ir-version-99": (_plain([helper.make_node("Relu", ["x"], ["y"])], ir_version=99),
                      "ir_version 99"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_onnx_is_refused_before_writing(name, tmp_path, capsys):
    model, needle = INVALID[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    out = tmp_path / "build"
    one_line_error(capsys, ["compile", str(path), "-o", str(out)], needle)
    assert not out.exists()


def test_size_limit_is_refused_at_once(tmp_path, capsys):
    import time

    model = _plain([helper.make_node("Conv", ["x", "w"], ["y"])], [_weight()],
                   x_shape=(1, 3, 100000, 100000))
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    start = time.perf_counter()
    one_line_error(capsys, ["compile", str(path), "-o", str(tmp_path / "b")],
                   "beyond the limit of 4 GiB per tensor")
    assert time.perf_counter() - start < 10  # was ~100 s and 7 GB before failing


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 50, b"hello world\n",
                                     b"<ir_version: 8>\nbroken graph {"],
                         ids=["empty", "binary", "text", "onnx-text-typo"])
def test_garbage_files(content, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    one_line_error(capsys, ["compile", str(path), "-o", str(tmp_path / "b")], "model.onnx")
    one_line_error(capsys, ["show", str(path)], "model.onnx")
    assert not (tmp_path / "b").exists()


def test_nested_subgraph_reads_the_main_graph(tmp_path):
    """An If inside a Loop body reads `feat` of the main graph two scopes up."""
    prefix, inits = _conv_prefix()
    inner_then = helper.make_graph([helper.make_node("Add", ["acc_in", "feat"], ["t"])], "t",
                                   [], [helper.make_tensor_value_info("t", F, [1, 4, 8, 8])])
    inner_else = helper.make_graph([helper.make_node("Sub", ["acc_in", "feat"], ["e"])], "e",
                                   [], [helper.make_tensor_value_info("e", F, [1, 4, 8, 8])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("If", ["flag"], ["acc_out"], then_branch=inner_then,
                          else_branch=inner_else)], "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", F, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [1, 4, 8, 8])])
    nodes = prefix + [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "half"], ["flag"]),
        helper.make_node("Loop", ["trips", "", "zeros"], ["y"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
                   [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])], inits + [
                       helper.make_tensor("trips", TensorProto.INT64, [], [2]),
                       helper.make_tensor("half", F, [], [0.5]),
                       onnx.numpy_helper.from_array(np.zeros((1, 4, 8, 8), np.float32),
                                                    "zeros")])
    path = tmp_path / "nested.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(tmp_path / "b")]) == 0
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for scale in (1.0, 0.1):
        x = (scale * np.random.default_rng(3).random((1, 3, 8, 8))).astype(np.float32)
        (expected,) = session.run(None, {"x": x})
        with CompiledModel.load(tmp_path / "b") as compiled:
            got = compiled.run({"x": x}).outputs["y"]
        assert acceptance.check_output("y", got, expected, "fp16").passed
