"""Reference semantics of the mrvl layers (sim/reference_mrvl.py) against onnxruntime, and the
mrvl ops' Python constructors (result-type inference, verification)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32
from xdsl.ir import Block, Region
from xdsl.utils.exceptions import VerifyException

from mrvl.dialects import graph, mrvl
from mrvl.sim import reference_mrvl as R
from mrvl.sim.reference import run_function

RNG = np.random.default_rng(5)


def _ort(op_type: str, x: np.ndarray, inits: dict[str, np.ndarray], **attrs) -> np.ndarray:
    node = helper.make_node(op_type, ["x", *inits], ["y"], **attrs)
    g = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.mark.parametrize(
    ("groups", "c", "o", "strides", "pads", "dilations"),
    [
        (1, 3, 4, (1, 1), (0, 0, 0, 0), (1, 1)),
        (2, 4, 6, (2, 1), (1, 0, 2, 1), (1, 2)),
        (4, 4, 4, (1, 2), (1, 1, 1, 1), (2, 1)),
    ],
)
def test_conv2d_matches_onnxruntime(groups, c, o, strides, pads, dilations):
    x = RNG.standard_normal((2, c, 7, 8)).astype(np.float32)
    w = RNG.standard_normal((o, c // groups, 3, 2)).astype(np.float32)
    b = RNG.standard_normal(o).astype(np.float32)
    want = _ort(
        "Conv", x, {"w": w, "b": b}, group=groups, strides=list(strides), pads=list(pads),
        dilations=list(dilations),
    )
    got = R.conv2d(_nhwc(x), _nhwc(w), b, strides, pads, dilations, groups, "relu")
    np.testing.assert_allclose(got, np.maximum(_nhwc(want), 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_pools_match_onnxruntime(count_include_pad):
    x = RNG.standard_normal((1, 3, 7, 6)).astype(np.float32)
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}
    want_max = _ort("MaxPool", x, {}, **attrs)
    want_avg = _ort("AveragePool", x, {}, count_include_pad=count_include_pad, **attrs)
    args = ((3, 2), (2, 1), (1, 0, 1, 1))
    np.testing.assert_array_equal(R.maxpool2d(_nhwc(x), *args), _nhwc(want_max))
    np.testing.assert_allclose(
        R.avgpool2d(_nhwc(x), *args, count_include_pad), _nhwc(want_avg), rtol=1e-6, atol=1e-6
    )


def test_fc_with_weights_need_transform_flattens_in_nchw_order():
    x = RNG.standard_normal((2, 3, 2, 4)).astype(np.float32)
    w = RNG.standard_normal((5, 24)).astype(np.float32)
    want = x.reshape(2, -1) @ w.T
    got = R.fc(_nhwc(x), w, None, weights_need_transform=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    clipped = R.fc(x.reshape(2, -1), w, None, activation="clip", clip=(-0.5, 0.5))
    np.testing.assert_allclose(clipped, np.clip(want, -0.5, 0.5), rtol=1e-5, atol=1e-5)


def test_layers_run_in_the_reference_executor():
    """A small hand-built accelerator function computes what numpy computes."""
    block = Block(arg_types=[TensorType(f32, [1, 2, 4, 4])])
    x = block.args[0]
    w = graph.ConstantOp.from_numpy(RNG.standard_normal((3, 3, 3, 2)).astype(np.float32))
    lt = mrvl.LayoutTransformOp(x, "NCHW", "NHWC", layer_name="tvmgen_mrvl_main_0")
    conv = mrvl.Conv2DOp(lt, w, None, layer_name="tvmgen_mrvl_main_1", pads=(1, 1, 1, 1),
                         activation="sigmoid")
    pool = mrvl.GlobalMaxpool2DOp(conv, layer_name="tvmgen_mrvl_main_2")
    cat = mrvl.ConcatOp([pool, pool], layer_name="tvmgen_mrvl_main_3", axis=3)
    sq = mrvl.SqueezeOp(cat, [1, 2], layer_name="tvmgen_mrvl_main_4")
    block.add_ops([w, lt, conv, pool, cat, sq, func.ReturnOp(sq)])
    fn = func.FuncOp("main", ([x.type], [sq.output.type]), Region(block))
    module = ModuleOp([fn])
    module.verify()
    assert sq.output.type == TensorType(f32, [1, 6])
    xv = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    y = R.conv2d(_nhwc(xv), w.to_numpy(), None, pads=(1, 1, 1, 1), activation="sigmoid")
    m = y.max(axis=(1, 2))
    want = np.concatenate([m, m], axis=1)
    np.testing.assert_allclose(run_function(module, [xv])[0], want, rtol=1e-5, atol=1e-6)


def test_constructors_infer_types_and_verifiers_reject_bad_ops():
    block = Block(arg_types=[TensorType(f32, [2, 9, 9, 4]), TensorType(f32, [8, 3, 3, 2])])
    x, w = block.args
    conv = mrvl.Conv2DOp(x, w, None, layer_name="l0", strides=(2, 2), groups=2)
    assert conv.output.type == TensorType(f32, [2, 4, 4, 8])
    assert conv.macs() == 2 * 4 * 4 * 8 * 3 * 3 * 2
    conv.verify()
    pool = mrvl.Avgpool2DOp(conv, layer_name="l1", kernel_shape=(2, 2), strides=(2, 2))
    assert pool.output.type == TensorType(f32, [2, 2, 2, 8])
    flat = mrvl.BatchFlattenOp(pool, layer_name="l2")
    assert flat.output.type == TensorType(f32, [2, 32])
    bad = mrvl.Conv2DOp(x, w, None, layer_name="l3", groups=4)
    with pytest.raises(VerifyException, match="expected weight input channels 1"):
        bad.verify()
    with pytest.raises(VerifyException, match="do not broadcast"):
        mrvl.Sum2DOp(conv, pool, layer_name="l4")
    assert mrvl.layout_permutation("NCHW", "NHWC") == (0, 2, 3, 1)
    assert mrvl.layout_permutation("NCHW", "NCW") is None


def test_every_layer_op_has_reference_semantics():
    """Each mrvl layer kind has its own branch in sim/reference_mrvl.py, so the executor's
    'no reference semantics' error cannot be reached by a layer the dialect defines."""
    import inspect

    from mrvl.dialects.mrvl import LAYER_OPS
    from mrvl.sim import reference_mrvl

    source = inspect.getsource(reference_mrvl)
    missing = [op.__name__ for op in LAYER_OPS if f"mrvl.{op.__name__}" not in source]
    assert missing == []
