"""Bad input gets a clear message or a CPU placement with a reason, never a traceback:
invalid partition options, a pad with a non-zero value, a batch over the accelerator limit,
an op the accelerator cannot take, missing or garbage model files."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.utils.arg_spec import parse_spec

from mrvl.errors import MrvlError, PartitionError
from mrvl.driver.cli import main as cli_main
from mrvl.lowering.mrvl_partition import MrvlPartitionPass, layers_of
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.offload_report import offload_report
from mrvl.models.mnist_cnn import mnist_cnn
from mrvl.sim.reference import run_function

RNG = np.random.default_rng(11)


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "bad_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _weights(*shape) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


def _check_values(model, module, x):
    name = model.graph.input[0].name
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {name: x})[0]
    np.testing.assert_allclose(run_function(module, [x])[0], expected, rtol=1e-4, atol=1e-5)


def _reasons(module) -> dict[str, str]:
    return {n["node"]: n["reason"] for n in offload_report(module)["cpu_nodes"]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "bogus"}, 'invalid mode "bogus"'),
        ({"max_layers": -5}, "invalid max-layers -5"),
        ({"max_layer": 3}, "unknown option(s) ['max_layer']"),
        ({"cpu_layers": ["conv9"]}, "unknown layer or node name(s) ['conv9'] in cpu-layers"),
    ],
)
def test_invalid_options_raise_partition_error(options, message):
    with pytest.raises(PartitionError) as info:
        compile_to_partitioned(mnist_cnn(batch=1), **options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mrvl-partition{max-layers=abc}", "invalid option: Incompatible types"),
        ("mrvl-partition{colour=red}", 'invalid option: Provided arguments ["colour"] not found'),
        ("mrvl-partition{mode=rfc}", 'invalid mode "rfc"'),
    ],
)
def test_invalid_pipeline_options_raise_partition_error(spec, message):
    with pytest.raises(PartitionError, match=".*") as info:
        MrvlPartitionPass.from_spec(parse_spec(spec))
    assert message in str(info.value)


def test_pipeline_options_parse():
    parsed = MrvlPartitionPass.from_spec(
        parse_spec("mrvl-partition{mode=rfc-first-revision cpu-layers=a,b max-layers=3}")
    )
    assert parsed == MrvlPartitionPass(
        mode="rfc-first-revision", cpu_layers=("a", "b"), max_layers=3
    )


def test_nonzero_pad_stays_on_cpu_with_reason():
    w = _weights(4, 2, 3, 3)
    model = _model(
        [
            helper.make_node("Pad", ["x", "pads", "value"], ["p"], name="pad_half"),
            helper.make_node("Conv", ["p", "w"], ["c"], name="conv"),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        {
            "w": w,
            "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64),
            "value": np.array(0.5, dtype=np.float32),
        },
        [1, 2, 6, 6],
        [1, 4, 6, 6],
    )
    module = compile_to_partitioned(model, require_compute=False)
    assert _reasons(module)["pad_half"] == "pad value 0.5 is not zero"
    kinds = [l.LAYER_NAME for f in subgraph_functions(module, "accelerator") for l in layers_of(f)]
    assert "Conv2D" in kinds
    _check_values(model, module, RNG.standard_normal((1, 2, 6, 6)).astype(np.float32))


def test_zero_pad_is_fused_into_the_conv():
    model = _model(
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], name="pad0", mode="constant"),
            helper.make_node("Conv", ["p", "w"], ["y"], name="conv"),
        ],
        {"w": _weights(4, 2, 3, 3), "pads": np.array([0, 0, 1, 2, 0, 0, 1, 0], dtype=np.int64)},
        [1, 2, 6, 6],
        [1, 4, 6, 6],
    )
    module = compile_to_partitioned(model)
    conv = layers_of(subgraph_functions(module, "accelerator")[0])[1]
    assert conv.LAYER_NAME == "Conv2D"
    assert list(conv.pads.get_values()) == [1, 2, 1, 0]
    assert _reasons(module) == {}
    _check_values(model, module, RNG.standard_normal((1, 2, 6, 6)).astype(np.float32))


def test_batch_over_the_limit_runs_on_the_cpu_with_reason():
    model = mnist_cnn(batch=16)
    module = compile_to_partitioned(model)
    assert subgraph_functions(module, "accelerator") == []
    reasons = _reasons(module)
    assert reasons["conv2d"] == "batch 16 exceeds the accelerator limit 8"
    assert reasons["dense/MatMul"] == "batch 16 exceeds the accelerator limit 8"
    x = RNG.standard_normal((16, 1, 28, 28)).astype(np.float32)
    _check_values(model, module, x)


def test_op_the_accelerator_cannot_take_splits_the_model():
    model = _model(
        [
            helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Erf", ["r1"], ["e"], name="erf"),
            helper.make_node("Conv", ["e", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
        ],
        {"w1": _weights(4, 3, 3, 3), "w2": _weights(2, 4, 3, 3)},
        [1, 3, 5, 5],
        [1, 2, 5, 5],
    )
    module = compile_to_partitioned(model, verify=True)
    main = next(f for f in module.ops if f.sym_name.data == "main")
    calls = [op for op in main.body.block.ops if op.name == "func.call"]
    callees = [op.callee.root_reference.data for op in calls]
    assert callees == ["tvmgen_mrvl_main_0", "cpu_main_0", "tvmgen_mrvl_main_1"]
    reasons = _reasons(module)
    assert reasons["erf"] == "graph.onnx Erf: only inside a GELU or LayerNorm pattern"
    _check_values(model, module, RNG.standard_normal((1, 3, 5, 5)).astype(np.float32))
    rfc = compile_to_partitioned(model, mode="rfc-first-revision")
    assert len(subgraph_functions(rfc, "accelerator")) == 1
    assert _reasons(rfc)["conv2"].startswith("rfc-first-revision:")
    _check_values(model, rfc, RNG.standard_normal((1, 3, 5, 5)).astype(np.float32))


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = cli_main(["partition", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("mrvl partition: error: model file") and "missing.onnx" in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model\xff" * 10)
    rc = cli_main(["partition", str(garbage), "-o", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "garbage.onnx" in err and "Traceback" not in err
    good = tmp_path / "mnist.onnx"
    onnx.save(mnist_cnn(batch=1), str(good))
    rc = cli_main(["partition", str(good), "-o", str(tmp_path / "o"), "--cpu-layers", "nope"])
    assert rc == 2
    assert "unknown layer or node name(s) ['nope']" in capsys.readouterr().err


def test_partition_error_is_an_mrvl_error():
    assert issubclass(PartitionError, MrvlError)


def test_legality_reasons_for_single_ops():
    from xdsl.dialects.builtin import TensorType, f32, i64
    from xdsl.ir import Block

    from mrvl.dialects import graph
    from mrvl.lowering.mrvl_legality import is_legal

    block = Block(
        arg_types=[
            TensorType(f32, [0, 4]),
            TensorType(i64, [1, 4]),
            TensorType(f32, [1, 3, 4, 4]),
            TensorType(f32, [9, 4, 4, 3]),
        ]
    )
    empty, ints, nchw, big = block.args
    assert is_legal(graph.ReshapeOp(empty, [4, 0])) == (False, "empty tensor [0, 4] not supported")
    assert is_legal(graph.AddOp(ints, ints)) == (False, "dtype i64 not supported")
    nms = graph.OnnxOp([nchw], [TensorType(i64, [1, 3])], op_type="NonMaxSuppression", opset=17)
    assert is_legal(nms) == (False, "graph.onnx NonMaxSuppression: not an accelerator op")
    assert is_legal(graph.GlobalAvgPool2DOp(nchw)) == (
        False,
        "data layout NCHW is not NHWC (run graph-layout-nhwc first)",
    )
    assert is_legal(graph.GlobalAvgPool2DOp(big, layout="NHWC")) == (
        False,
        "batch 9 exceeds the accelerator limit 8",
    )
    pad = graph.PadOp(empty, pads=[0, 1, 0, 1], value=0.5)
    assert is_legal(pad) == (False, "empty tensor [0, 4] not supported")
    pad = graph.PadOp(nchw, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5)
    assert is_legal(pad) == (False, "pad value 0.5 is not zero")
    assert is_legal(graph.SoftmaxOp(nchw)) == (True, "")  # the last axis
    assert is_legal(graph.SoftmaxOp(nchw, axis=1)) == (False, "softmax axis 1 is not the last axis")
    assert is_legal(graph.TransposeOp(nchw, perm=[0, 2, 3, 1])) == (True, "")
