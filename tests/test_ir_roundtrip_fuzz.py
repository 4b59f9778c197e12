"""Hypothesis fuzzing of the graph dialect: random small functions (chains of graph ops with
random shapes and attributes that verify) must

1. print -> parse -> print unchanged (textual round trip is exact), and
2. give the same values through export_function + onnxruntime as through the reference
   executor (rtol 1e-4, atol 1e-5: float32 summation order differs between the two), and the
   parsed-back module gives bit-identical reference results to the original.

Tensors stay rank 4 (N, C, H, W) between steps; ops with another rank or layout (gemm, NHWC
variants, split, squeeze, ...) are wrapped so each step maps rank 4 to rank 4.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from mrvl.dialects import graph as G
from mrvl.frontend.onnx_export import export_function
from mrvl.sim.reference import run_function

RTOL, ATOL = 1e-4, 1e-5


class Chain:
    """Collects the ops of one random function; `cur` is the current rank-4 NCHW value."""

    def __init__(self, draw: Callable, x: SSAValue, seed: int):
        self.draw = draw
        self.ops: list[Operation] = []
        self.cur = x
        self.rng = np.random.default_rng(seed)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.cur.type.get_shape())

    def add(self, op: Operation) -> Operation:
        self.ops.append(op)
        return op

    def set(self, op: Operation) -> None:
        self.add(op)
        self.cur = op.results[0]
        assert 0 not in self.shape, f"step made an empty tensor: {op.name} -> {self.shape}"

    def const(self, shape, low: float = -1.0, high: float = 1.0) -> SSAValue:
        arr = self.rng.uniform(low, high, size=shape).astype(np.float32)
        return self.add(G.ConstantOp.from_numpy(arr)).result

    def to_nhwc(self) -> SSAValue:
        return self.add(G.LayoutTransformOp(self.cur, src_layout="NCHW", dst_layout="NHWC")).result

    def from_nhwc(self, op: Operation) -> None:
        self.add(op)
        self.set(G.LayoutTransformOp(op.results[0], src_layout="NHWC", dst_layout="NCHW"))


UNARY = [
    "relu", "sigmoid", "tanh", "hard_swish", "identity", "leaky_relu", "hard_sigmoid", "clip",
    "dropout", "softmax", "abs",
]


def step_unary(c: Chain) -> None:
    kind = c.draw(st.sampled_from(UNARY))
    x = c.cur
    if kind == "relu":
        c.set(G.ReluOp(x))
    elif kind == "sigmoid":
        c.set(G.SigmoidOp(x))
    elif kind == "tanh":
        c.set(G.TanhOp(x))
    elif kind == "hard_swish":
        c.set(G.HardSwishOp(x))
    elif kind == "identity":
        c.set(G.IdentityOp(x))
    elif kind == "leaky_relu":
        c.set(G.LeakyReluOp(x, alpha=c.draw(st.sampled_from([0.01, 0.1, 0.3]))))
    elif kind == "hard_sigmoid":
        c.set(G.HardSigmoidOp(x, alpha=c.draw(st.sampled_from([0.2, 0.5])), beta=0.5))
    elif kind == "clip":
        lo = c.draw(st.sampled_from([None, -0.5, 0.0]))
        hi = c.draw(st.sampled_from([None, 0.5, 6.0]))
        c.set(G.ClipOp(x, min=lo, max=hi))
    elif kind == "dropout":
        c.set(G.DropoutOp(x, ratio=0.25))
    elif kind == "softmax":
        c.set(G.SoftmaxOp(x, axis=c.draw(st.integers(-4, 3))))
    else:
        c.set(G.OnnxOp([x], [x.type], op_type="Abs", opset=17))


def step_binary(c: Chain) -> None:
    kind = c.draw(st.sampled_from(["add", "sub", "mul", "div", "prelu", "bias_add"]))
    n, ch, h, w = c.shape
    shape = c.draw(st.sampled_from([(ch, 1, 1), (1, ch, h, w), (w,), (1,), (n, ch, h, w)]))
    if kind == "div":
        sign = np.where(c.rng.random(shape) < 0.5, -1, 1).astype(np.float32)
        arr = (sign * c.rng.uniform(0.5, 2.0, size=shape)).astype(np.float32)
        c.set(G.DivOp(c.cur, c.add(G.ConstantOp.from_numpy(arr)).result))
        return
    if kind == "prelu":
        c.set(G.PReluOp(c.cur, c.const((ch, 1, 1), 0.0, 0.5)))
        return
    if kind == "bias_add":
        c.set(G.BiasAddOp(c.cur, c.const((ch,)), axis=1))
        return
    b = c.const(shape)
    lhs, rhs = (c.cur, b) if c.draw(st.booleans()) else (b, c.cur)
    cls = {"add": G.AddOp, "sub": G.SubOp, "mul": G.MulOp}[kind]
    c.set(cls(lhs, rhs))


def step_conv(c: Chain) -> None:
    n, ch, h, w = c.shape
    k = c.draw(st.integers(1, 3))
    d = c.draw(st.integers(1, 2))
    ek = (k - 1) * d + 1
    pads = [c.draw(st.integers(0, k - 1)) for _ in range(4)]
    s = c.draw(st.integers(1, 2))
    if h + pads[0] + pads[2] < ek or w + pads[1] + pads[3] < ek:
        pads = [k - 1] * 4
        d = 1
        ek = k
    groups = c.draw(st.sampled_from([1, ch]))
    out = c.draw(st.integers(1, 3)) * groups
    nhwc = c.draw(st.booleans())
    wt = c.const((out, ch // groups, k, k))
    bias = c.const((out,)) if c.draw(st.booleans()) else None
    kw = dict(strides=[s, s], pads=pads, dilations=[d, d], groups=groups)
    if not nhwc:
        c.set(G.Conv2DOp(c.cur, wt, bias, **kw))
        return
    x = c.to_nhwc()
    wt = c.add(G.LayoutTransformOp(wt, src_layout="OIHW", dst_layout="OHWI")).result
    c.from_nhwc(G.Conv2DOp(x, wt, bias, data_layout="NHWC", kernel_layout="OHWI", **kw))


def step_pool(c: Chain) -> None:
    n, ch, h, w = c.shape
    kind = c.draw(st.sampled_from(["max", "avg", "gavg", "gmax"]))
    nhwc = c.draw(st.booleans())
    layout = "NHWC" if nhwc else "NCHW"
    x = c.to_nhwc() if nhwc else c.cur
    if kind in ("gavg", "gmax"):
        cls = G.GlobalAvgPool2DOp if kind == "gavg" else G.GlobalMaxPool2DOp
        op = cls(x, layout=layout)
    else:
        k = c.draw(st.integers(1, min(3, h, w)))
        pads = [c.draw(st.integers(0, k - 1)) for _ in range(4)]
        kw = dict(kernel_shape=[k, k], strides=[c.draw(st.integers(1, 2))] * 2, pads=pads,
                  ceil_mode=int(c.draw(st.booleans())), layout=layout)
        if kind == "max":
            op = G.MaxPool2DOp(x, **kw)
        else:
            op = G.AvgPool2DOp(x, count_include_pad=int(c.draw(st.booleans())), **kw)
    if nhwc:
        c.from_nhwc(op)
    else:
        c.set(op)


def step_norm(c: Chain) -> None:
    ch = c.shape[1]
    params = [c.const((ch,)), c.const((ch,)), c.const((ch,)), c.const((ch,), 0.5, 2.0)]
    if c.draw(st.booleans()):
        c.from_nhwc(G.BatchNormOp(c.to_nhwc(), *params, epsilon=1e-3, layout="NHWC"))
    else:
        c.set(G.BatchNormOp(c.cur, *params, epsilon=1e-5))


def step_movement(c: Chain) -> None:
    n, ch, h, w = c.shape
    kind = c.draw(st.sampled_from(["pad", "concat", "split", "transpose", "reshape", "flatten", "squeeze"]))
    if kind == "pad":
        mode = c.draw(st.sampled_from(["constant", "reflect", "edge"]))
        limit = 2 if mode != "reflect" else min(2, h - 1, w - 1)
        pads = [0, 0] + [c.draw(st.integers(0, limit)) for _ in range(2)] + [0, 0] + [
            c.draw(st.integers(0, limit)) for _ in range(2)
        ]
        c.set(G.PadOp(c.cur, pads=pads, mode=mode, value=0.5 if mode == "constant" else 0.0))
    elif kind == "concat":
        axis = c.draw(st.integers(0, 3))
        other_shape = list(c.shape)
        other_shape[axis] = c.draw(st.integers(1, 2))
        c.set(G.ConcatOp([c.cur, c.const(tuple(other_shape)), c.cur], axis=axis))
    elif kind == "split" and ch >= 2:
        first = c.draw(st.integers(1, ch - 1))
        op = c.add(G.SplitOp(c.cur, axis=1, split=[first, ch - first]))
        c.set(G.ConcatOp([op.results[1], op.results[0]], axis=1))
    elif kind == "transpose":
        perm = c.draw(st.permutations([0, 1, 2, 3]))
        c.set(G.TransposeOp(c.cur, perm=perm))
    elif kind == "reshape":
        c.set(G.ReshapeOp(c.cur, [n, ch * h, w, 1]))
    elif kind == "flatten":
        op = c.add(G.FlattenOp(c.cur, axis=c.draw(st.integers(0, 4))))
        c.set(G.ReshapeOp(op.result, [n, ch, h, w]))
    else:
        op = c.add(G.UnsqueezeOp(c.cur, axes=[c.draw(st.integers(0, 4))]))
        axes = [i for i, d in enumerate(op.result.type.get_shape()) if d == 1]
        c.set(G.SqueezeOp(op.result, axes=[c.draw(st.sampled_from(axes))]))
        if len(c.shape) != 4:  # squeezed an original unit dim: restore rank 4
            c.set(G.ReshapeOp(c.cur, [n, ch, h, w]))


def step_resize(c: Chain) -> None:
    mode = c.draw(st.sampled_from(["nearest", "linear"]))
    ctm = c.draw(st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]))
    nm = c.draw(st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    n, ch, h, w = c.shape
    # steps map non-empty rank-4 tensors to non-empty ones: no scale that floors a side to 0
    scales = [(sh, sw) for sh, sw in [(2.0, 2.0), (1.0, 2.0), (0.5, 0.5), (1.5, 1.0)]
              if int(h * sh) >= 1 and int(w * sw) >= 1]
    sh, sw = c.draw(st.sampled_from(scales))
    c.set(G.ResizeOp(c.cur, scales=[1.0, 1.0, sh, sw], mode=mode,
                     coordinate_transformation_mode=ctm, nearest_mode=nm))


def step_dense(c: Chain) -> None:
    n, ch, h, w = c.shape
    k = ch * h * w
    flat = c.add(G.FlattenOp(c.cur, axis=1)).result
    out = c.draw(st.integers(1, 6))
    kind = c.draw(st.sampled_from(["gemm", "dense", "matmul"]))
    if kind == "gemm":
        ta, tb = c.draw(st.booleans()), c.draw(st.booleans())
        a = c.add(G.TransposeOp(flat, perm=[1, 0])).result if ta else flat
        b = c.const((out, k) if tb else (k, out))
        bias = c.const(c.draw(st.sampled_from([(out,), (1, out), (n, out)])))
        y = c.add(G.GemmOp(a, b, bias, alpha=0.5, beta=2.0, trans_a=int(ta), trans_b=int(tb))).result
    elif kind == "dense":
        y = c.add(G.DenseOp(flat, c.const((out, k)))).result
    else:
        y = c.add(G.MatMulOp(flat, c.const((k, out)))).result
    c.set(G.ReshapeOp(y, [n, out, 1, 1]))


STEPS = [step_unary, step_binary, step_conv, step_pool, step_norm, step_movement, step_resize, step_dense]


class Case:
    """A random function and its input; repr is the (short) IR text, for failure reports."""

    def __init__(self, module: ModuleOp, x: np.ndarray):
        self.module, self.x = module, x

    def __repr__(self) -> str:
        with G.elided_constants():
            return str(self.module)


@st.composite
def functions(draw) -> Case:
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    block = Block(arg_types=[TensorType(f32, shape)])
    chain = Chain(draw, block.args[0], draw(st.integers(0, 2**31 - 1)))
    results = []
    for _ in range(draw(st.integers(1, 5))):
        draw(st.sampled_from(STEPS))(chain)
        while chain.shape[2] > 16 or chain.shape[3] > 16:  # keep it small (halve big sides)
            k = [2 if side > 16 else 1 for side in chain.shape[2:]]
            chain.set(G.MaxPool2DOp(chain.cur, kernel_shape=k, strides=k))
        if chain.shape[1] > 12:
            ch = chain.shape[1]
            chain.set(G.SplitOp(chain.cur, axis=1, split=[12, ch - 12]))
        if draw(st.integers(0, 4)) == 0:
            results.append(chain.cur)
    results.append(chain.cur)
    chain.add(func.ReturnOp(*results))
    block.add_ops(chain.ops)
    fn = func.FuncOp("main", ([block.args[0].type], [r.type for r in results]), Region(block))
    fn.arg_attrs = ArrayAttr([DictionaryAttr({"graph.name": StringAttr("x")})])
    fn.attributes["graph.output_names"] = ArrayAttr([StringAttr(f"y{i}") for i in range(len(results))])
    module = ModuleOp([fn])
    module.verify()
    x = np.random.default_rng(draw(st.integers(0, 1000))).standard_normal(shape).astype(np.float32)
    return Case(module, x)


def _parse(text: str) -> ModuleOp:
    ctx = Context()
    for dialect in (builtin.Builtin, func.Func, G.Graph):
        ctx.load_dialect(dialect)
    module = Parser(ctx, text).parse_module()
    module.verify()
    return module


def test_global_pool_of_an_empty_input_does_not_verify() -> None:
    """Found by the fuzzer: a resize may floor a side to 0 (valid ONNX, onnxruntime gives a
    1x1x0x0 tensor), but a global pool of it is not (onnxruntime: "Only N can be zero"), so
    the graph dialect rejects it instead of the reference executor failing on it."""
    block = Block(arg_types=[TensorType(f32, (1, 1, 1, 1))])
    resize = G.ResizeOp(block.args[0], scales=[1.0, 1.0, 0.5, 0.5], mode="nearest")
    assert resize.result.type.get_shape() == (1, 1, 0, 0)
    resize.verify()
    for cls in (G.GlobalAvgPool2DOp, G.GlobalMaxPool2DOp):
        with pytest.raises(VerifyException, match="non-empty input"):
            cls(resize.result)
    empty_batch = Block(arg_types=[TensorType(f32, (0, 2, 3, 3))])
    assert G.GlobalMaxPool2DOp(empty_batch.args[0]).result.type.get_shape() == (0, 2, 1, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(functions())
def test_random_functions_round_trip(case) -> None:
    module, x = case.module, case.x
    text = str(module)
    parsed = _parse(text)
    assert str(parsed) == text

    ref = run_function(module, [x])
    declared = [tuple(t.get_shape()) for t in module.body.block.first_op.function_type.outputs]
    assert [r.shape for r in ref] == declared, "reference shapes differ from the IR types"
    again = run_function(parsed, [x])
    for a, b in zip(ref, again):
        np.testing.assert_array_equal(a, b)

    model = export_function(module)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})
    assert [o.name for o in model.graph.output] == [f"y{i}" for i in range(len(ref))]
    for i, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"output {i}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"output {i}\n{text}")
