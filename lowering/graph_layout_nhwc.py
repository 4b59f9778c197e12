"""`graph-layout-nhwc`: convert what the accelerator takes from NCHW / OIHW to NHWC / OHWI.

Anchors (always converted when in NCHW with a 4-D input): `graph.conv2d` with a constant
weight (weight OIHW -> OHWI, rewritten as a new constant), `graph.max_pool2d`,
`graph.avg_pool2d`, `graph.global_avg_pool2d`, `graph.global_max_pool2d`, 4-D
`graph.batch_norm`.

Followers (layout-agnostic ops on 4-D tensors: add / sub / mul / div, relu, leaky_relu,
prelu, clip, sigmoid, hard_sigmoid, hard_swish, tanh, softmax, bias_add, concat, split, pad,
identity, dropout) are converted when one of their 4-D operands comes out of an NHWC region
(a `layout_transform` NHWC -> NCHW), or when every use of their results goes into one
(a `layout_transform` NCHW -> NHWC). Their axis / pads / axes properties are permuted and
their constant operands (including lower-rank broadcast constants) are rewritten in NHWC.
A follower with a non-constant operand of rank other than 4 is left in NCHW.

How: each converted op gets NHWC operands (the source of a NHWC -> NCHW layout_transform,
a permuted constant, or a new NCHW -> NHWC layout_transform placed right after the value's
definition and shared by all its converted users) and its results go back to NCHW through a
new NHWC -> NCHW layout_transform; the cancellation patterns of `graph-cancel-transposes`
(run in the same rewrite) remove every back-to-back pair, so explicit layout transforms stay
only at the borders of the NHWC regions: model inputs, outputs, and ops that are not
converted (reshape, flatten, dense, graph.onnx, ...).

Input: graph-dialect functions (any mix of layouts). Output: the same values exactly (pure
data movement); ops already in NHWC, conv2d with a non-constant weight, and ops of rank other
than 4 are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)
from xdsl.rewriter import InsertPoint

from mrvl.dialects import graph
from mrvl.lowering.graph_cancel_transposes import cancel_transpose_patterns
from mrvl.lowering.graph_pass_utils import (
    NCHW_TO_NHWC,
    constant_op,
    new_constant,
    permute_shape,
)

_ANCHORS = (
    graph.Conv2DOp,
    graph.MaxPool2DOp,
    graph.AvgPool2DOp,
    graph.GlobalAvgPool2DOp,
    graph.GlobalMaxPool2DOp,
    graph.BatchNormOp,
)

_FOLLOWERS = (
    graph.AddOp,
    graph.SubOp,
    graph.MulOp,
    graph.DivOp,
    graph.ReluOp,
    graph.LeakyReluOp,
    graph.PReluOp,
    graph.ClipOp,
    graph.SigmoidOp,
    graph.HardSigmoidOp,
    graph.HardSwishOp,
    graph.TanhOp,
    graph.SoftmaxOp,
    graph.BiasAddOp,
    graph.ConcatOp,
    graph.SplitOp,
    graph.PadOp,
    graph.IdentityOp,
    graph.DropoutOp,
)


def _is_4d(value: SSAValue) -> bool:
    ty = value.type
    return isinstance(ty, TensorType) and len(ty.get_shape()) == 4


def _is_layout_transform(op: Operation | Block | None, src: str, dst: str) -> bool:
    return (
        isinstance(op, graph.LayoutTransformOp)
        and op.src_layout.data == src
        and op.dst_layout.data == dst
    )


def _nhwc_axis(axis: int) -> int:
    """Where NCHW axis `axis` lands in NHWC."""
    return NCHW_TO_NHWC.index(axis)


def _nhwc_type(value: SSAValue) -> TensorType:
    ty = value.type
    assert isinstance(ty, TensorType)
    return TensorType(ty.element_type, permute_shape(tuple(ty.get_shape()), NCHW_TO_NHWC))


def _new_properties(op: Operation) -> dict[str, Attribute]:
    """`op`'s properties rewritten for NHWC operands."""
    props = dict(op.properties)
    if isinstance(op, graph.Conv2DOp):
        props["data_layout"] = StringAttr("NHWC")
        props["kernel_layout"] = StringAttr("OHWI")
    elif isinstance(op, _ANCHORS):
        props["layout"] = StringAttr("NHWC")
    elif isinstance(op, graph.SoftmaxOp | graph.BiasAddOp | graph.ConcatOp | graph.SplitOp):
        axis = op.axis.value.data
        props["axis"] = IntegerAttr(_nhwc_axis(axis), op.axis.type)
    elif isinstance(op, graph.PadOp):
        pads = graph.ints(op.pads)
        props["pads"] = graph.i64_array(
            permute_shape(pads[:4], NCHW_TO_NHWC) + permute_shape(pads[4:], NCHW_TO_NHWC)
        )
    return props


@dataclass
class _LayoutState:
    """Values shared between the rewrites of one pass run: the NCHW -> NHWC transform made
    for a value, the NHWC copy made for a (constant, rank) pair."""

    transforms: dict[SSAValue, graph.LayoutTransformOp] = field(default_factory=dict)
    constants: dict[tuple[graph.ConstantOp, str], graph.ConstantOp] = field(default_factory=dict)


@dataclass
class ConvertToNhwcPattern(RewritePattern):
    """Rewrite one NCHW anchor or follower op into NHWC (see the module docstring)."""

    state: _LayoutState = field(default_factory=_LayoutState)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter):
        if isinstance(op, _ANCHORS):
            if not self._anchor_applies(op):
                return
        elif isinstance(op, _FOLLOWERS):
            if not self._follower_applies(op):
                return
        else:
            return
        self._convert(op, rewriter)

    # -- legality ---------------------------------------------------------------------

    def _anchor_applies(self, op: Operation) -> bool:
        if isinstance(op, graph.Conv2DOp):
            if op.data_layout.data != "NCHW" or op.kernel_layout.data != "OIHW":
                return False
            if constant_op(op.weight) is None:
                return False
            return True
        if isinstance(op, graph.BatchNormOp) and not _is_4d(op.input):
            return False
        return op.layout.data == "NCHW"  # type: ignore[attr-defined]

    def _follower_applies(self, op: Operation) -> bool:
        if not all(_is_4d(r) for r in op.results):
            return False
        data = []
        for v in op.operands:
            if constant_op(v) is not None:
                if len(v.type.get_shape()) > 4:  # type: ignore[attr-defined]
                    return False
                continue
            if not _is_4d(v):
                return False
            data.append(v)
        if not data:
            return False
        if any(_is_layout_transform(v.owner, "NHWC", "NCHW") for v in data):
            return True
        users = [use.operation for r in op.results for use in r.uses]
        return bool(users) and all(_is_layout_transform(u, "NCHW", "NHWC") for u in users)

    # -- rewriting --------------------------------------------------------------------

    def _convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        operands: list[SSAValue] = []
        for i, v in enumerate(op.operands):
            if isinstance(op, graph.Conv2DOp) and i == 1:
                operands.append(self._constant(v, "OHWI", rewriter))
            elif isinstance(op, graph.Conv2DOp | graph.BatchNormOp) and i >= 1:
                operands.append(v)  # bias and batch-norm parameters are 1-D
            elif isinstance(op, graph.BiasAddOp) and i == 1:
                operands.append(v)
            elif constant_op(v) is not None:
                operands.append(self._constant(v, "NHWC", rewriter))
            else:
                operands.append(self._to_nhwc(v, rewriter))
        new_op = type(op).create(
            operands=operands,
            result_types=[_nhwc_type(r) for r in op.results],
            properties=_new_properties(op),
            attributes=dict(op.attributes),
        )
        backs = [
            graph.LayoutTransformOp(r, src_layout="NHWC", dst_layout="NCHW")
            for r in new_op.results
        ]
        rewriter.replace(op, [new_op, *backs], [b.result for b in backs])

    def _to_nhwc(self, value: SSAValue, rewriter: PatternRewriter) -> SSAValue:
        """`value` (NCHW) as an NHWC value."""
        owner = value.owner
        if _is_layout_transform(owner, "NHWC", "NCHW"):
            return owner.input  # type: ignore[union-attr]
        known = self.state.transforms.get(value)
        if known is not None and known.parent is not None:
            return known.result
        lt = graph.LayoutTransformOp(value, src_layout="NCHW", dst_layout="NHWC")
        if isinstance(owner, Operation):
            where = InsertPoint.after(owner)
        else:
            where = InsertPoint.at_start(owner)  # type: ignore[arg-type]
        rewriter.insert(lt, where)
        self.state.transforms[value] = lt
        return lt.result

    def _constant(self, value: SSAValue, layout: str, rewriter: PatternRewriter) -> SSAValue:
        """A constant NCHW (or OIHW) value, broadcast-padded to rank 4, in NHWC (OHWI)."""
        const = constant_op(value)
        assert const is not None
        key = (const, layout)
        known = self.state.constants.get(key)
        if known is not None and known.parent is not None:
            return known.result
        arr = const.to_numpy()
        arr = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)
        new = new_constant(arr.transpose(NCHW_TO_NHWC), const)
        rewriter.insert(new, InsertPoint.after(const))
        self.state.constants[key] = new
        return new.result


def layout_nhwc_patterns() -> list[RewritePattern]:
    """The conversion plus the transpose-cancellation patterns, applied together."""
    return [ConvertToNhwcPattern(), *cancel_transpose_patterns()]


@dataclass(frozen=True)
class GraphLayoutNhwcPass(ModulePass):
    """Convert accelerator ops and the regions between them to NHWC / OHWI. No options."""

    name = "graph-layout-nhwc"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier(layout_nhwc_patterns())).rewrite_module(op)
