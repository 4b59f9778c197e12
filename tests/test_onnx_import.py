"""The ONNX importer: opset variants, initializers, Constant nodes, external data, symbolic
dimensions, text format, generic ops and error messages.

Numerical checks run the imported module on the reference executor and compare with
onnxruntime on the original model (rtol 1e-4, atol 1e-5; integer outputs exactly).
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import DYNAMIC_INDEX, TensorType, f32

from mrvl.dialects import graph
from mrvl.errors import ModelImportError
from mrvl.driver.api import import_onnx
from mrvl.frontend.onnx_import import (
    import_onnx_bytes,
    ir_to_onnx_attribute,
    onnx_attribute_to_ir,
)

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=17, ir_version=8):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version  # onnxruntime 1.31 reads IR versions up to 13
    return m


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _ops(module) -> collections.Counter:
    return collections.Counter(op.name for op in module.walk())


def _check(model, feeds, **kwargs):
    """Import, run on the reference executor, compare with onnxruntime; return the module."""
    from mrvl.sim.reference import run_function

    module = import_onnx(model, **kwargs)
    got = run_function(module, feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, e)
    return module


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Opset variants
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_clip_attribute_and_input_forms(opset):
    if opset < 11:
        nodes = [helper.make_node("Clip", ["x"], ["y"], name="clip", min=-0.5, max=0.5)]
        inits = []
    else:
        nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")]
        inits = [_init("lo", np.float32(-0.5)), _init("hi", np.float32(0.5))]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], inits, opset=opset)
    module = _check(m, {"x": _x(2, 3)})
    clip = next(op for op in module.walk() if isinstance(op, graph.ClipOp))
    assert clip.min.value.data == -0.5 and clip.max.value.data == 0.5
    assert clip.attributes["onnx_node"].data == "clip"


def test_clip_with_only_max_input():
    nodes = [helper.make_node("Clip", ["x", "", "hi"], ["y"])]
    m = _model(nodes, [_vi("x", [4])], [_vi("y", [4])], [_init("hi", np.float32(0.1))])
    module = _check(m, {"x": _x(4)})
    clip = next(op for op in module.walk() if isinstance(op, graph.ClipOp))
    assert clip.min is None


@pytest.mark.parametrize("opset", [7, 13])
def test_pad_squeeze_unsqueeze_split_opset_forms(opset):
    if opset < 11:
        nodes = [
            helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 2, 0, 0, 1, 0], mode="constant", value=1.5),
            helper.make_node("Unsqueeze", ["p"], ["u"], axes=[0]),
            helper.make_node("Squeeze", ["u"], ["s"], axes=[0]),
            helper.make_node("Split", ["s"], ["a", "b"], axis=3, split=[2, 3]),
        ]
        inits = []
    else:
        nodes = [
            helper.make_node("Pad", ["x", "pads", "cv"], ["p"], mode="constant"),
            helper.make_node("Unsqueeze", ["p", "ax"], ["u"]),
            helper.make_node("Squeeze", ["u", "ax"], ["s"]),
            helper.make_node("Split", ["s", "sp"], ["a", "b"], axis=3),
        ]
        inits = [_init("pads", np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64)),
                 _init("cv", np.float32(1.5)), _init("ax", np.array([0], np.int64)),
                 _init("sp", np.array([2, 3], np.int64))]
    m = _model(nodes, [_vi("x", [1, 2, 3, 3])], [_vi("a", None), _vi("b", None)], inits, opset=opset)
    module = _check(m, {"x": _x(1, 2, 3, 3)})
    counts = _ops(module)
    assert counts["graph.pad"] == 1 and counts["graph.split"] == 1 and counts["graph.onnx"] == 0
    assert counts["graph.squeeze"] == 1 and counts["graph.unsqueeze"] == 1


def test_split_num_outputs_opset18_and_squeeze_without_axes():
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
        helper.make_node("Squeeze", ["a"], ["s"]),
    ]
    m = _model(nodes, [_vi("x", [1, 7, 2])], [_vi("s", None), _vi("b", None), _vi("c", None)], opset=18)
    module = _check(m, {"x": _x(1, 7, 2)})
    split = next(op for op in module.walk() if isinstance(op, graph.SplitOp))
    assert graph.ints(split.split) == (3, 3, 1)


@pytest.mark.parametrize("opset", [10, 13])
def test_resize_scales_and_sizes(opset):
    if opset == 10:
        nodes = [helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest")]
        inits = [_init("scales", np.array([1, 1, 2, 2], np.float32))]
    else:
        nodes = [
            helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
            helper.make_node("Resize", ["x", "", "", "sizes"], ["z"], mode="linear"),
        ]
        inits = [_init("scales", np.array([1, 1, 2, 2], np.float32)),
                 _init("sizes", np.array([1, 2, 5, 7], np.int64))]
    outputs = [_vi("y", None)] + ([_vi("z", None)] if opset == 13 else [])
    m = _model(nodes, [_vi("x", [1, 2, 3, 4])], outputs, inits, opset=opset)
    module = _check(m, {"x": _x(1, 2, 3, 4)})
    resizes = [op for op in module.walk() if isinstance(op, graph.ResizeOp)]
    assert resizes[0].result.type == TensorType(f32, [1, 2, 6, 8])
    if opset == 13:
        assert resizes[1].result.type == TensorType(f32, [1, 2, 5, 7])


def test_reshape_zero_and_minus_one_and_softmax_old_opset():
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Softmax", ["r"], ["s"], axis=1),  # opset 11: coerced 2-D over [1:]
        helper.make_node("Softmax", ["x"], ["t"], axis=2),  # last axis: modelled
    ]
    inits = [_init("shape", np.array([0, -1, 2], np.int64))]
    m = _model(nodes, [_vi("x", [2, 3, 4])], [_vi("s", None), _vi("t", None)], inits, opset=11)
    module = _check(m, {"x": _x(2, 3, 4)})
    reshape = next(op for op in module.walk() if isinstance(op, graph.ReshapeOp))
    assert reshape.result.type == TensorType(f32, [2, 6, 2])
    generic = [op for op in module.walk() if isinstance(op, graph.OnnxOp)]
    assert [op.op_type.data for op in generic] == ["Softmax"]
    assert _ops(module)["graph.softmax"] == 1


def test_shape_arithmetic_is_folded_into_a_static_reshape():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten"),
    ]
    inits = [_init("zero", np.int64(0)), _init("ax", np.array([0], np.int64)),
             _init("minus1", np.array([-1], np.int64))]
    m = _model(nodes, [_vi("x", ["N", 2, 3])], [_vi("y", None)], inits)
    module = _check(m, {"x": _x(4, 2, 3)}, batch_size=4)
    counts = _ops(module)
    assert counts["graph.onnx"] == 0 and counts["graph.reshape"] == 1
    assert counts["graph.constant"] == 0  # the shape computation is gone


def test_conv_auto_pad_pools_gemm_and_batch_norm():
    w = _x(4, 3, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["r"], alpha=0.1),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["r"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["p"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, alpha=0.5),
    ]
    inits = [_init("w", w), _init("g", np.abs(_x(4)) + 0.5), _init("b", _x(4)),
             _init("m", _x(4)), _init("v", np.abs(_x(4)) + 0.5), _init("wf", _x(5, 4)),
             _init("bf", _x(5))]
    m = _model(nodes, [_vi("x", [1, 3, 9, 9])], [_vi("y", None), _vi("a", None)], inits)
    module = _check(m, {"x": _x(1, 3, 9, 9)})
    conv = next(op for op in module.walk() if isinstance(op, graph.Conv2DOp))
    assert graph.ints(conv.pads) == (1, 1, 1, 1)
    assert _ops(module)["graph.onnx"] == 0


# ----------------------------------------------------------------------------------------
# Initializers, Constant nodes, external data, text format
# ----------------------------------------------------------------------------------------


def test_initializer_listed_among_inputs_becomes_a_constant():
    w = _x(3, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    m = _model(nodes, [_vi("x", [2, 3]), _vi("w", [3, 4])], [_vi("y", [2, 4])], [_init("w", w)],
               ir_version=3)
    module = import_onnx(m)
    func = next(iter(module.ops))
    assert len(func.args) == 1
    assert func.arg_attrs.data[0].data["graph.name"].data == "x"
    const = next(op for op in module.walk() if isinstance(op, graph.ConstantOp))
    assert const.to_numpy().tobytes() == w.tobytes()
    assert const.attributes["onnx_node"].data == "w"
    feeds = {"x": _x(2, 3)}
    from mrvl.sim.reference import run_function

    np.testing.assert_allclose(run_function(module, feeds)[0], feeds["x"] @ w, rtol=1e-5)


def test_constant_nodes_of_every_form():
    t = numpy_helper.from_array(_x(2, 3), "t")
    nodes = [
        helper.make_node("Constant", [], ["c0"], value=t),
        helper.make_node("Constant", [], ["c1"], value_float=2.0),
        helper.make_node("Constant", [], ["c2"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["c3"], value_int=3),
        helper.make_node("Constant", [], ["c4"], value_ints=[2, 3]),
        helper.make_node("Constant", [], ["c5"], sparse_value=helper.make_sparse_tensor(
            _init("v", np.array([1.0, 2.0], np.float32)), _init("i", np.array([1, 5], np.int64)), [2, 3])),
        helper.make_node("Add", ["x", "c0"], ["a"]),
        helper.make_node("Mul", ["a", "c1"], ["b"]),
        helper.make_node("Add", ["b", "c2"], ["y0"]),
        helper.make_node("Add", ["y0", "c5"], ["y"]),
        helper.make_node("Reshape", ["y", "c4"], ["z"]),
        helper.make_node("Add", ["i", "c3"], ["j"]),
    ]
    m = _model(nodes, [_vi("x", [2, 3]), _vi("i", [2], TensorProto.INT64)],
               [_vi("z", None), _vi("j", None, TensorProto.INT64)])
    module = _check(m, {"x": _x(2, 3), "i": np.array([1, 2], np.int64)})
    assert _ops(module)["graph.onnx"] == 0


def test_external_data_is_loaded_from_the_model_directory(tmp_path):
    w = _x(64, 64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    m = _model(nodes, [_vi("x", [1, 64])], [_vi("y", None)], [_init("w", w)])
    path = tmp_path / "model.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    module = import_onnx(path)
    const = next(op for op in module.walk() if isinstance(op, graph.ConstantOp))
    assert const.to_numpy().tobytes() == w.tobytes()
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelImportError, match="cannot load external data"):
        import_onnx(path)


def test_symbolic_dimensions_batch_size_and_input_shapes():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = _model(nodes, [_vi("x", ["N", 3, "H"])], [_vi("y", ["N", 3, "H"])])
    with pytest.raises(ModelImportError, match="input 'x': dimension 2 is symbolic \\('H'\\)"):
        import_onnx(m)
    module = import_onnx(m, input_shapes={"x": [2, 3, 5]})
    assert next(iter(module.ops)).function_type.inputs.data[0] == TensorType(f32, [2, 3, 5])
    m2 = _model(nodes, [_vi("x", ["N", 3])], [_vi("y", ["N", 3])])
    assert next(iter(import_onnx(m2).ops)).function_type.outputs.data[0] == TensorType(f32, [1, 3])
    module = import_onnx(m2, batch_size=4)
    assert next(iter(module.ops)).function_type.outputs.data[0] == TensorType(f32, [4, 3])
    with pytest.raises(ModelImportError, match="'y', which is not a model input"):
        import_onnx(m2, input_shapes={"y": [1, 3]})
    with pytest.raises(ModelImportError, match="the model fixes 3"):
        import_onnx(m2, input_shapes={"x": [1, 4]})


def test_text_format_file(tmp_path):
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 4] x) => (float[N, 4] y) {
        r = Relu(x)
        y = Sigmoid(r)
    }
    """
    path = tmp_path / "model.onnxtxt"
    path.write_text(text)
    module = import_onnx(path)
    counts = _ops(module)
    assert counts["graph.relu"] == 1 and counts["graph.sigmoid"] == 1
    m = onnx.parser.parse_model(text)
    _check(m, {"x": _x(1, 4)})


# ----------------------------------------------------------------------------------------
# Generic ops and errors
# ----------------------------------------------------------------------------------------


def test_unmodelled_op_becomes_graph_onnx_with_faithful_attributes():
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=1, largest=0),
        helper.make_node("Conv", ["x3", "w3"], ["c"], name="conv1d"),  # 1-D conv: not modelled
    ]
    m = _model(nodes, [_vi("x", [2, 6]), _vi("x3", [1, 2, 5])],
               [_vi("v", None), _vi("i", None, TensorProto.INT64), _vi("c", None)],
               [_init("k", np.array([3], np.int64)), _init("w3", _x(3, 2, 2))])
    module = _check(m, {"x": _x(2, 6), "x3": _x(1, 2, 5)})
    generic = {op.op_type.data: op for op in module.walk() if isinstance(op, graph.OnnxOp)}
    assert set(generic) == {"TopK", "Conv"}
    topk = generic["TopK"]
    assert topk.attributes["onnx_node"].data == "topk"
    assert topk.attrs.data["largest"].value.data == 0
    assert topk.opset.value.data == 17 and topk.domain.data == ""
    assert [r.type for r in topk.results] == [TensorType(f32, [2, 3]), TensorType(graph.i64, [2, 3])]


def test_optional_empty_inputs_are_recorded_by_position():
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")]
    m = _model(nodes, [_vi("x", [1, 1, 2, 2])], [_vi("y", None)],
               [_init("sizes", np.array([1, 1, 4, 4], np.int64))], opset=13)
    module = _check(m, {"x": _x(1, 1, 2, 2)})
    op = next(op for op in module.walk() if isinstance(op, graph.OnnxOp))
    assert op.onnx_input_positions() == (0, 3)


def test_data_dependent_output_keeps_dynamic_dims():
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Transpose", ["nz"], ["t"])]
    m = _model(nodes, [_vi("x", [3, 4])], [_vi("t", None, TensorProto.INT64)])
    module = import_onnx(m)
    types = [op.results[0].type for op in module.walk() if isinstance(op, graph.OnnxOp)]
    assert types[0].get_shape() == (2, DYNAMIC_INDEX)
    assert types[1].get_shape() == (DYNAMIC_INDEX, 2)  # computed from a dynamic value: generic


@pytest.mark.parametrize(
    "attr",
    [
        helper.make_attribute("i", 3),
        helper.make_attribute("f", 0.25),
        helper.make_attribute("s", b"hello"),
        helper.make_attribute("s2", b"\xff\xfe"),
        helper.make_attribute("ints", [1, -2, 3]),
        helper.make_attribute("floats", [0.5, 1.5]),
        helper.make_attribute("strings", [b"a", b"b"]),
        helper.make_attribute("t", numpy_helper.from_array(np.arange(6, dtype=np.int32).reshape(2, 3))),
        helper.make_attribute("g", helper.make_graph([], "body", [], [])),
    ],
    ids=lambda a: a.name,
)
def test_attribute_conversion_round_trips(attr):
    back = ir_to_onnx_attribute(attr.name, onnx_attribute_to_ir(attr))
    assert back == attr


def test_truncated_garbage_empty_and_missing_files(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = _model(nodes, [_vi("x", [1, 1000])], [_vi("y", None)], [_init("unused", _x(1000))])
    data = m.SerializeToString()
    cases = {
        "truncated.onnx": data[: len(data) // 2],
        "garbage.onnx": bytes(RNG.integers(0, 256, 3000, dtype=np.uint8)),
        "empty.onnx": b"",
        "text.onnx": b"this is not a model\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelImportError, match=name.replace(".", r"\.")):
            import_onnx(path)
    with pytest.raises(ModelImportError, match="cannot read the model file"):
        import_onnx(tmp_path / "missing.onnx")


@pytest.mark.parametrize("opset", [5, 99])
def test_unsupported_opset(opset):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = _model(nodes, [_vi("x", [2])], [_vi("y", None)], opset=opset)
    with pytest.raises(ModelImportError, match=f"unsupported opset {opset}"):
        import_onnx_bytes(m.SerializeToString(), name="m.onnx")


def test_inconsistent_shapes_name_the_node():
    nodes = [helper.make_node("Add", ["x", "z"], ["y"], name="bad_add")]
    m = _model(nodes, [_vi("x", [2, 3]), _vi("z", [4])], [_vi("y", None)])
    with pytest.raises(ModelImportError, match="node 'bad_add' \\(Add\\): inconsistent shapes"):
        import_onnx(m)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", None)], [_init("s", np.array([4, -1], np.int64))])
    with pytest.raises(ModelImportError, match="node 'bad_reshape' \\(Reshape\\): cannot reshape"):
        import_onnx(m)


def test_mrvl_import_verb_and_mrvl_opt_frontend(tmp_path, capsys):
    from mrvl.driver import cli
    from mrvl.driver.opt import main as opt_main

    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    m = _model(nodes, [_vi("x", ["N", 40])], [_vi("y", None)], [_init("w", _x(10, 40))])
    path = tmp_path / "fc.onnx"
    onnx.save(m, str(path))
    assert cli.main(["import", str(path), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "x: tensor<2x40xf32>" in out and "graph.gemm: 1" in out and "parameters: 400" in out
    assert cli.main(["import", str(path), "--print-ir", "--elide-constants"]) == 0
    out = capsys.readouterr().out
    assert "dense_resource<__elided__> : tensor<10x40xf32>" in out
    assert opt_main([str(path), "--input-shape", "x=3,40"]) == 0
    out = capsys.readouterr().out
    assert "graph.gemm" in out and "tensor<3x40xf32>" in out and 'dense<"0x' in out
    assert cli.main(["import", str(tmp_path / "nope.onnx")]) == 2
    assert "cannot read the model file" in capsys.readouterr().err


def test_unsorted_graph_is_sorted_and_undefined_values_name_the_node():
    nodes = [
        helper.make_node("Sigmoid", ["r"], ["y"], name="second"),
        helper.make_node("Relu", ["x"], ["r"], name="first"),
    ]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    module = _check(m, {"x": _x(2, 3)})
    assert [op.name for op in next(iter(module.ops)).body.ops][:2] == ["graph.relu", "graph.sigmoid"]
    nodes = [helper.make_node("Relu", ["nowhere"], ["y"], name="lost")]
    m = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    with pytest.raises(ModelImportError, match="node 'lost' uses 'nowhere'"):
        import_onnx(m)


def test_shape_given_by_an_integer_input_stays_dynamic():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_by_input"),
             helper.make_node("Relu", ["y"], ["z"])]
    m = _model(nodes, [_vi("x", [2, 6]), _vi("s", [2], TensorProto.INT64)], [_vi("z", None)])
    module = import_onnx(m)
    generic = [op for op in module.walk() if isinstance(op, graph.OnnxOp)]
    assert [op.op_type.data for op in generic] == ["Reshape", "Relu"]
    assert all(d == DYNAMIC_INDEX for d in generic[0].results[0].type.get_shape())
