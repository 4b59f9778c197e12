"""The graph cleanup and layout passes keep values (reference executor before vs after, on
random inputs, rtol 1e-4 / atol 1e-5) and do what they claim (checked on the IR).

Includes a hypothesis fuzz of random CNN-shaped graphs through every pass and the whole
pipeline, verifying the IR after each pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from mrvl.dialects import graph
from mrvl.lowering.graph_cancel_transposes import GraphCancelTransposesPass
from mrvl.lowering.graph_conv_add_to_bias import GraphConvAddToBiasPass
from mrvl.lowering.graph_fold_batch_norm import GraphFoldBatchNormPass
from mrvl.lowering.graph_fold_constants import GraphFoldConstantsPass
from mrvl.lowering.graph_layout_nhwc import GraphLayoutNhwcPass
from mrvl.lowering.graph_pass_utils import GraphPassOptionError
from mrvl.lowering.graph_pipeline import GraphCleanupPass, graph_cleanup_passes, run_graph_cleanup
from mrvl.lowering.graph_remove_identity import GraphRemoveIdentityPass
from mrvl.sim.reference import run_function

RTOL, ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------------------
# Building small graph functions
# ---------------------------------------------------------------------------------------


class FunctionBuilder:
    """Appends graph ops to the body of one `func.func @main`."""

    def __init__(self, *input_shapes: Sequence[int], seed: int = 0):
        self.block = Block(arg_types=[TensorType(f32, list(s)) for s in input_shapes])
        self.rng = np.random.default_rng(seed)

    @property
    def args(self) -> Sequence[SSAValue]:
        return self.block.args

    def add(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def const(self, arr: np.ndarray) -> SSAValue:
        return self.add(graph.ConstantOp.from_numpy(np.asarray(arr, np.float32)))

    def rand(self, *shape: int, low: float = -1.0, high: float = 1.0) -> SSAValue:
        return self.const(self.rng.uniform(low, high, shape).astype(np.float32))

    def module(self, *outputs: SSAValue) -> ModuleOp:
        self.block.add_op(func.ReturnOp(*outputs))
        ftype = FunctionType.from_lists(
            [a.type for a in self.block.args], [o.type for o in outputs]
        )
        return ModuleOp([func.FuncOp("main", ftype, Region(self.block))])


def _inputs(module: ModuleOp, seed: int = 1) -> list[np.ndarray]:
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(tuple(t.get_shape())).astype(np.float32)  # type: ignore[attr-defined]
        for t in fn.function_type.inputs.data
    ]


def _op_counts(module: ModuleOp) -> Counter[str]:
    return Counter(op.name for op in module.walk())


def _assert_same(before: list[np.ndarray], after: list[np.ndarray]) -> None:
    assert len(before) == len(after)
    for b, a in zip(before, after):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def _check_pass(module: ModuleOp, passes: Sequence[ModulePass]) -> ModuleOp:
    """Apply `passes` to a clone, verifying after each one; values must not change."""
    inputs = _inputs(module)
    expected = run_function(module, inputs)
    out = module.clone()
    ctx = Context()
    for p in passes:
        p.apply(ctx, out)
        out.verify()
    _assert_same(expected, run_function(out, inputs))
    return out


def _conv(b: FunctionBuilder, x: SSAValue, cout: int, k: int, **kw) -> SSAValue:
    cin = x.type.get_shape()[1] // kw.get("groups", 1)  # type: ignore[attr-defined]
    w = b.rand(cout, cin, k, k)
    bias = b.rand(cout) if kw.pop("bias", False) else None
    return b.add(graph.Conv2DOp(x, w, bias, **kw))


def _bn(b: FunctionBuilder, x: SSAValue, layout: str = "NCHW") -> SSAValue:
    c = x.type.get_shape()[1 if layout == "NCHW" else 3]  # type: ignore[attr-defined]
    scale, beta, mean = b.rand(c), b.rand(c), b.rand(c)
    var = b.rand(c, low=0.5, high=2.0)
    return b.add(graph.BatchNormOp(x, scale, beta, mean, var, epsilon=1e-3, layout=layout))


# ---------------------------------------------------------------------------------------
# One test per pass
# ---------------------------------------------------------------------------------------


def test_remove_identity_keeps_values():
    b = FunctionBuilder((2, 3))
    x = b.add(graph.IdentityOp(b.args[0]))
    y = b.add(graph.DropoutOp(b.add(graph.ReluOp(x)), ratio=0.3))
    z = b.add(graph.IdentityOp(y))
    out = _check_pass(b.module(z, x), [GraphRemoveIdentityPass()])
    counts = _op_counts(out)
    assert counts["graph.identity"] == 0 and counts["graph.dropout"] == 0
    assert counts["graph.relu"] == 1


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fold_batch_norm_into_conv(layout: str):
    b = FunctionBuilder((1, 3, 6, 6) if layout == "NCHW" else (1, 6, 6, 3))
    kernel_layout = "OIHW" if layout == "NCHW" else "OHWI"
    w = b.rand(4, 3, 3, 3)
    conv = b.add(
        graph.Conv2DOp(b.args[0], w, b.rand(4), pads=(1, 1, 1, 1), data_layout=layout,
                       kernel_layout=kernel_layout)
    )
    y = _bn(b, conv, layout)
    out = _check_pass(b.module(y), [GraphFoldBatchNormPass()])
    counts = _op_counts(out)
    assert counts["graph.batch_norm"] == 0 and counts["graph.conv2d"] == 1


def test_fold_batch_norm_leaves_standalone_and_shared():
    b = FunctionBuilder((1, 3, 5, 5))
    standalone = _bn(b, b.args[0])
    conv = _conv(b, b.args[0], 2, 3)
    shared = _bn(b, conv)
    out = _check_pass(b.module(standalone, shared, conv), [GraphFoldBatchNormPass()])
    assert _op_counts(out)["graph.batch_norm"] == 2


def test_fold_constants_uses_reference_kernels_and_cap():
    b = FunctionBuilder((1, 2, 3, 3))
    w = b.rand(2, 2, 1, 1)
    wt = b.add(graph.TransposeOp(w, perm=(0, 1, 3, 2)))
    w2 = b.add(graph.MulOp(wt, b.const(np.float32(2.0))))
    conv = b.add(graph.Conv2DOp(b.args[0], w2))
    big = b.add(graph.AddOp(b.rand(64, 1), b.rand(1, 64)))  # 4096 elements
    mod = b.module(conv, big)
    out = _check_pass(mod, [GraphFoldConstantsPass(max_elements=100)])
    counts = _op_counts(out)
    assert counts["graph.transpose"] == 0 and counts["graph.mul"] == 0
    assert counts["graph.add"] == 1  # over the cap: left alone
    out = _check_pass(mod, [GraphFoldConstantsPass()])
    assert _op_counts(out)["graph.add"] == 0


def test_fold_constants_split_and_integer_ops():
    b = FunctionBuilder((2,))
    parts = graph.SplitOp(b.rand(4), axis=0, split=(2, 2))
    b.block.add_op(parts)
    shape = b.add(graph.ConstantOp.from_numpy(np.array([3, 4], np.int64)))
    doubled = b.add(graph.AddOp(shape, shape))
    s = b.add(graph.AddOp(parts.results[0], parts.results[1]))
    y = b.add(graph.MulOp(b.args[0], s))
    out = _check_pass(b.module(y, doubled), [GraphFoldConstantsPass()])
    counts = _op_counts(out)
    assert counts["graph.split"] == 0 and counts["graph.add"] == 0


def test_conv_add_to_bias_variants():
    b = FunctionBuilder((1, 3, 5, 5), (2, 6))
    x, v = b.args
    c1 = b.add(graph.AddOp(b.rand(4, 1, 1), _conv(b, x, 4, 3, bias=True)))
    c2 = b.add(graph.SubOp(_conv(b, x, 4, 1), b.rand(1, 4, 1, 1)))
    c3 = b.add(graph.BiasAddOp(_conv(b, x, 4, 1), b.rand(4), axis=1))
    c4 = b.add(graph.AddOp(_conv(b, x, 4, 1), b.rand(1)))  # a scalar is per-channel too
    g = b.add(graph.GemmOp(v, b.rand(3, 6), b.rand(1, 3), alpha=0.5, beta=2.0, trans_b=1))
    m = b.add(graph.AddOp(b.add(graph.MatMulOp(v, b.rand(6, 3))), b.rand(3)))
    m2 = b.add(graph.SubOp(b.add(graph.BiasAddOp(m, b.rand(3), axis=1)), b.rand(1, 3)))
    out = _check_pass(b.module(c1, c2, c3, c4, g, m2), [GraphConvAddToBiasPass()])
    counts = _op_counts(out)
    assert counts["graph.add"] == 0 and counts["graph.sub"] == 0
    assert counts["graph.gemm"] == 0 and counts["graph.matmul"] == 0
    assert counts["graph.dense"] == 2 and counts["graph.bias_add"] == 2
    assert counts["graph.conv2d"] == 4


def test_conv_add_to_bias_not_applicable():
    b = FunctionBuilder((1, 3, 4, 4), (4, 3))
    x, a = b.args
    spatial = b.add(graph.AddOp(_conv(b, x, 2, 1), b.rand(4, 4)))
    rows = b.add(graph.GemmOp(a, b.rand(3, 2), b.rand(4, 1)))  # C varies by row
    trans_a = b.add(graph.GemmOp(a, b.rand(4, 2), trans_a=1))
    out = _check_pass(b.module(spatial, rows, trans_a), [GraphConvAddToBiasPass()])
    counts = _op_counts(out)
    assert counts["graph.add"] == 1 and counts["graph.gemm"] == 2


def test_layout_nhwc_all_follower_kinds():
    b = FunctionBuilder((1, 4, 6, 6), (1, 4, 6, 6))
    x, skip = b.args
    c = _conv(b, x, 4, 3, pads=(1, 1, 1, 1), bias=True)
    y = b.add(graph.PReluOp(c, b.rand(4, 1, 1)))
    y = b.add(graph.ClipOp(y, min=-0.5, max=0.5))
    y = b.add(graph.AddOp(y, skip))  # non-constant other side: transformed at the border
    y = b.add(graph.MulOp(y, b.rand(6)))  # broadcast along W
    y = b.add(graph.BiasAddOp(y, b.rand(4), axis=1))
    y = b.add(graph.PadOp(y, pads=(0, 0, 1, 0, 0, 0, 0, 2), mode="reflect"))
    y = b.add(graph.SoftmaxOp(y, axis=1))
    cat = b.add(graph.ConcatOp([y, b.add(graph.SigmoidOp(y))], axis=1))
    parts = graph.SplitOp(cat, axis=1, split=(3, 5))
    b.block.add_op(parts)
    p = b.add(graph.MaxPool2DOp(parts.results[1], kernel_shape=(2, 2), strides=(2, 2), ceil_mode=1))
    q = b.add(graph.AvgPool2DOp(parts.results[0], kernel_shape=(3, 3), pads=(1, 1, 1, 1)))
    g = b.add(graph.GlobalMaxPool2DOp(b.add(graph.TanhOp(q))))
    bn = _bn(b, b.add(graph.LeakyReluOp(p, alpha=0.2)))
    out = _check_pass(b.module(bn, g), [GraphLayoutNhwcPass()])
    for op in out.walk():
        if isinstance(op, graph.Conv2DOp):
            assert op.data_layout.data == "NHWC" and op.kernel_layout.data == "OHWI"
        if isinstance(op, graph.MaxPool2DOp | graph.AvgPool2DOp | graph.BatchNormOp):
            assert op.layout.data == "NHWC"
    transforms = [op for op in out.walk() if isinstance(op, graph.LayoutTransformOp)]
    # borders only: the two inputs in, the two outputs out
    assert sorted((t.src_layout.data, t.dst_layout.data) for t in transforms) == [
        ("NCHW", "NHWC"), ("NCHW", "NHWC"), ("NHWC", "NCHW"), ("NHWC", "NCHW")
    ]


def test_cancel_transposes_values():
    b = FunctionBuilder((2, 3, 4, 5))
    x = b.args[0]
    t = b.add(graph.TransposeOp(x, perm=(0, 2, 3, 1)))
    lt = b.add(graph.LayoutTransformOp(t, src_layout="NHWC", dst_layout="NCHW"))
    u = b.add(graph.TransposeOp(b.add(graph.TransposeOp(x, perm=(1, 0, 2, 3))), perm=(3, 2, 0, 1)))
    keep = b.add(graph.TransposeOp(b.add(graph.ReluOp(u)), perm=(0, 1, 3, 2)))
    out = _check_pass(b.module(lt, u, keep), [GraphCancelTransposesPass()])
    counts = _op_counts(out)
    assert counts["graph.layout_transform"] == 0
    assert counts["graph.transpose"] == 2  # the composed u, and the one after the relu


def test_bad_options_raise_mrvl_errors():
    with pytest.raises(GraphPassOptionError, match="max-elements"):
        GraphFoldConstantsPass(max_elements=-1)
    with pytest.raises(GraphPassOptionError, match="layout NHWC or NCHW, got 'NCWH'"):
        GraphCleanupPass(layout="NCWH")
    with pytest.raises(GraphPassOptionError):
        graph_cleanup_passes("OIHW")


# ---------------------------------------------------------------------------------------
# The pipeline on the project's models
# ---------------------------------------------------------------------------------------


def test_cleanup_mnist_cnn_matches_rfc_order():
    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.models import MODELS

    module = import_onnx(MODELS["mnist_cnn"](batch=1))
    out = _check_pass(module, graph_cleanup_passes("NHWC"))
    body = [op.name for op in out.walk() if isinstance(op, graph.GraphOperation)]
    assert body == [
        "graph.layout_transform", "graph.conv2d", "graph.relu", "graph.max_pool2d",
        "graph.conv2d", "graph.relu", "graph.max_pool2d", "graph.reshape",
        "graph.dense", "graph.bias_add", "graph.relu", "graph.dense", "graph.bias_add",
    ]


# ---------------------------------------------------------------------------------------
# Hypothesis: random CNN-shaped graphs through every pass
# ---------------------------------------------------------------------------------------

_UNARY: dict[str, Callable[[SSAValue], Operation]] = {
    "relu": graph.ReluOp,
    "sigmoid": graph.SigmoidOp,
    "tanh": graph.TanhOp,
    "hard_swish": graph.HardSwishOp,
    "clip": lambda x: graph.ClipOp(x, min=0.0, max=6.0),
    "leaky_relu": lambda x: graph.LeakyReluOp(x, alpha=0.1),
    "identity": graph.IdentityOp,
    "dropout": graph.DropoutOp,
}

_STEPS = [
    "conv", "conv", "bn", "unary", "unary", "add_const", "residual", "concat", "pool",
    "transpose_pair", "pad", "bias_add", "prelu", "split_concat", "softmax", "reshape_pair",
    "squeeze_excite", "onnx_op",
]


@st.composite
def cnn_graphs(draw: st.DrawFn) -> ModuleOp:
    c = draw(st.integers(1, 4))
    h = draw(st.integers(3, 7))
    w = draw(st.integers(3, 7))
    b = FunctionBuilder((1, c, h, w), seed=draw(st.integers(0, 2**16)))
    x = b.args[0]

    def shape() -> list[int]:
        return list(x.type.get_shape())  # type: ignore[attr-defined]

    for _ in range(draw(st.integers(1, 7))):
        step = draw(st.sampled_from(_STEPS))
        n, c, h, w = shape()
        if step == "conv":
            k = draw(st.integers(1, min(3, h, w)))
            depthwise = draw(st.booleans())
            cout = c if depthwise else draw(st.integers(1, 5))
            stride = draw(st.integers(1, 2))
            pad = draw(st.integers(0, k - 1))
            x = _conv(b, x, cout, k, strides=(stride, stride), pads=(pad, pad, pad, pad),
                      groups=c if depthwise else 1, bias=draw(st.booleans()))
        elif step == "bn":
            x = _bn(b, x)
        elif step == "unary":
            x = b.add(_UNARY[draw(st.sampled_from(sorted(_UNARY)))](x))
        elif step == "add_const":
            shapes = [(c, 1, 1), (1, c, 1, 1), (1,), (w,), (1, c, h, w)]
            const_shape = draw(st.sampled_from(shapes))
            op = draw(st.sampled_from([graph.AddOp, graph.SubOp, graph.MulOp]))
            x = b.add(op(x, b.rand(*const_shape)))
        elif step == "residual":
            branch = _conv(b, x, c, 3 if min(h, w) >= 3 else 1,
                           pads=(1, 1, 1, 1) if min(h, w) >= 3 else (0, 0, 0, 0))
            x = b.add(graph.AddOp(x, b.add(graph.ReluOp(branch))))
        elif step == "concat":
            other = _conv(b, x, draw(st.integers(1, 3)), 1)
            x = b.add(graph.ConcatOp([x, other], axis=1))
        elif step == "pool":
            k = draw(st.integers(1, min(2, h, w)))
            kind = draw(st.sampled_from([graph.MaxPool2DOp, graph.AvgPool2DOp]))
            x = b.add(kind(x, kernel_shape=(k, k), strides=(k, k)))
        elif step == "transpose_pair":
            perm = draw(st.permutations(range(4)))
            inverse = [perm.index(i) for i in range(4)]
            x = b.add(graph.TransposeOp(b.add(graph.TransposeOp(x, perm=perm)), perm=inverse))
        elif step == "pad":
            p = draw(st.integers(0, 1))
            x = b.add(graph.PadOp(x, pads=(0, 0, p, 0, 0, 0, 0, p)))
        elif step == "bias_add":
            x = b.add(graph.BiasAddOp(x, b.rand(c), axis=1))
        elif step == "prelu":
            x = b.add(graph.PReluOp(x, b.rand(c, 1, 1)))
        elif step == "split_concat" and c >= 2:
            parts = graph.SplitOp(x, axis=1, split=(1, c - 1))
            b.block.add_op(parts)
            first = b.add(graph.ReluOp(parts.results[1]))
            x = b.add(graph.ConcatOp([first, parts.results[0]], axis=1))
        elif step == "softmax":
            x = b.add(graph.SoftmaxOp(x, axis=draw(st.integers(1, 3))))
        elif step == "reshape_pair":
            flat = b.add(graph.ReshapeOp(x, (n, c, h * w)))
            x = b.add(graph.ReshapeOp(b.add(graph.SigmoidOp(flat)), (n, c, h, w)))
        elif step == "onnx_op":  # a CPU-only op in the middle: a border on each side
            x = b.add(graph.OnnxOp([x], [x.type], op_type="Neg", opset=17))
        elif step == "squeeze_excite":
            gate = b.add(graph.SigmoidOp(_conv(b, b.add(graph.GlobalAvgPool2DOp(x)), c, 1)))
            x = b.add(graph.MulOp(x, gate))
    n, c, h, w = shape()
    tail = draw(st.sampled_from(["none", "gemm", "matmul", "global"]))
    if tail == "none":
        return b.module(x)
    if tail == "global":
        return b.module(b.add(graph.GlobalAvgPool2DOp(x)))
    flat = b.add(graph.FlattenOp(b.add(graph.GlobalAvgPool2DOp(x)), axis=1))
    if tail == "gemm":
        y = b.add(graph.GemmOp(flat, b.rand(3, c), b.rand(3), trans_b=1))
    else:
        y = b.add(graph.AddOp(b.add(graph.MatMulOp(flat, b.rand(c, 3))), b.rand(3)))
    return b.module(b.add(graph.ReluOp(y)))


def _assert_cleaned(module: ModuleOp) -> None:
    for op in module.walk():
        assert not isinstance(op, graph.IdentityOp | graph.DropoutOp | graph.GemmOp)
        if isinstance(op, graph.Conv2DOp):
            assert op.data_layout.data == "NHWC" and op.kernel_layout.data == "OHWI"
        if isinstance(op, graph.MaxPool2DOp | graph.AvgPool2DOp | graph.GlobalAvgPool2DOp):
            assert op.layout.data == "NHWC"
        if isinstance(op, graph.TransposeOp | graph.LayoutTransformOp):
            assert not isinstance(op.input.owner, graph.TransposeOp | graph.LayoutTransformOp)
        if isinstance(op, graph.BatchNormOp):  # only when there is no conv to fold into
            conv = op.input.owner
            assert not (isinstance(conv, graph.Conv2DOp) and conv.result.has_one_use())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnn_graphs())
def test_fuzz_every_pass_and_pipeline(module: ModuleOp):
    module.verify()
    singles: list[ModulePass] = [
        GraphRemoveIdentityPass(), GraphFoldConstantsPass(), GraphCancelTransposesPass(),
        GraphConvAddToBiasPass(), GraphFoldBatchNormPass(), GraphLayoutNhwcPass(),
    ]
    inputs = _inputs(module)
    expected = run_function(module, inputs)
    for p in singles:
        out = module.clone()
        p.apply(Context(), out)
        out.verify()
        _assert_same(expected, run_function(out, inputs))
    out = module.clone()
    for p in graph_cleanup_passes("NHWC"):
        p.apply(Context(), out)
        out.verify()
    _assert_same(expected, run_function(out, inputs))
    _assert_cleaned(out)
    again = run_graph_cleanup(out.clone())  # idempotent
    assert str(again) == str(out)


def test_cleanup_mobilenet_v2_keeps_values_with_two_borders():
    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.models import MODELS, example_inputs

    model = MODELS["mobilenet_v2"](batch=1)
    feeds = example_inputs(model)
    module = import_onnx(model)
    expected = run_function(module, feeds)
    run_graph_cleanup(module)
    module.verify()
    _assert_same(expected, run_function(module, feeds))
    _assert_cleaned(module)
    transforms = [op for op in module.walk() if isinstance(op, graph.LayoutTransformOp)]
    assert [(t.src_layout.data, t.dst_layout.data) for t in transforms] == [
        ("NCHW", "NHWC"), ("NHWC", "NCHW")
    ]
    assert _op_counts(module)["graph.batch_norm"] == 0
