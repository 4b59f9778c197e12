"""`graph-conv-add-to-bias`: fold per-channel constant additions into conv / dense biases,
and turn gemm / matmul with a constant weight into `graph.dense` (+ `graph.bias_add`).

Rewrites (x any value, W / b / c constants):

- add(conv2d(x, W, b?), c), add(c, conv2d(..)), sub(conv2d(..), c) and
  bias_add(conv2d(..), c) on the conv's channel axis -> conv2d(x, W, b +- c), when c is
  per-channel (every axis but the channel axis has size 1, the channel axis 1 or C) and the
  conv result has no other user;
- gemm(x, B, C?) with trans_a = 0, constant B and a C that is constant and the same for every
  row (shape [], [1], [N], [1, N] or [1, 1]) -> dense(x, alpha * B') [+ bias_add(beta * C)],
  B' = B^T unless trans_b;
- matmul(x, W) with x 2-D and W a 2-D constant -> dense(x, W^T);
- add(dense(..), c) / add(c, dense(..)) / sub(dense(..), c) with c per-column
  -> bias_add(dense(..), c) (axis 1), and an add / sub / bias_add of such a c after a
  bias_add(dense(..), b) with constant b -> one bias_add(dense(..), b +- c).

Input: graph-dialect functions. Output: the same values (up to float reassociation of the
bias sums and alpha scaling); anything not matching is left alone (e.g. an add of a
non-constant, of a constant that varies over H / W, or a conv result used elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from mrvl.dialects import graph
from mrvl.lowering.graph_pass_utils import constant_array, constant_op, new_constant, shape_of


def _per_axis(c: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """`c` as a 1-D vector of length out_shape[axis] if broadcasting c against out_shape
    only varies along `axis` and does not grow the result; else None."""
    if c.ndim > len(out_shape):
        return None
    shape = (1,) * (len(out_shape) - c.ndim) + tuple(c.shape)
    n = out_shape[axis]
    for i, d in enumerate(shape):
        if i != axis and d != 1:
            return None
    if shape[axis] not in (1, n):
        return None
    return np.broadcast_to(c.reshape(-1), (n,))


def _bias_operands(op: Operation) -> tuple[SSAValue, SSAValue, float] | None:
    """For add / sub / bias_add with one constant side: (data operand, constant, sign)."""
    if isinstance(op, graph.BiasAddOp):
        if constant_op(op.bias) is None:
            return None
        return op.input, op.bias, 1.0
    if isinstance(op, graph.SubOp):
        if constant_op(op.rhs) is None:
            return None
        return op.lhs, op.rhs, -1.0
    if isinstance(op, graph.AddOp):
        if constant_op(op.rhs) is not None:
            return op.lhs, op.rhs, 1.0
        if constant_op(op.lhs) is not None:
            return op.rhs, op.lhs, 1.0
    return None


class ConvAddToBiasPattern(RewritePattern):
    """add / sub / bias_add of a per-channel constant after a conv2d -> conv2d bias."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: graph.AddOp | graph.SubOp | graph.BiasAddOp, rewriter: PatternRewriter
    ):
        found = _bias_operands(op)
        if found is None:
            return
        data, c_value, sign = found
        c = constant_array(c_value)
        assert c is not None
        conv = data.owner
        if not isinstance(conv, graph.Conv2DOp) or not conv.result.has_one_use():
            return
        out_shape = shape_of(conv.result)
        if shape_of(op.results[0]) != out_shape:
            return
        axis = 1 if conv.data_layout.data == "NCHW" else 3
        if isinstance(op, graph.BiasAddOp):
            if op.axis.value.data != axis:
                return
            vec = c  # 1-D along the channel axis (the op's verifier checks it)
        else:
            vec = _per_axis(c, out_shape, axis)
        if vec is None or vec.dtype.kind != "f":
            return
        old = np.zeros(vec.shape, np.float64)
        if conv.bias is not None:
            b = constant_array(conv.bias)
            if b is None:
                return
            old = b.astype(np.float64)
        total = (old + sign * vec.astype(np.float64)).astype(vec.dtype)
        bias_op = new_constant(total, name_hint="bias")
        new_conv = graph.Conv2DOp.create(
            operands=[conv.input, conv.weight, bias_op.result],
            result_types=[conv.result.type],
            properties=dict(conv.properties),
            attributes=dict(conv.attributes),
        )
        rewriter.replace(op, [bias_op, new_conv])
        rewriter.erase(conv)


class GemmToDensePattern(RewritePattern):
    """gemm(x, B const, C const per-column?) with trans_a = 0 -> dense [+ bias_add]."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.GemmOp, rewriter: PatternRewriter):
        if op.trans_a.value.data != 0:
            return
        b = constant_array(op.b)
        if b is None or b.dtype.kind != "f":
            return
        out_shape = shape_of(op.result)
        bias = None
        if op.c is not None:
            c = constant_array(op.c)
            if c is None:
                return
            bias = _per_axis(c, out_shape, 1)
            if bias is None:
                return
        alpha = float(op.alpha.value.data)
        beta = float(op.beta.value.data)
        new_ops: list[Operation] = []
        weight = op.b  # already [N, K] when trans_b and alpha == 1: reuse, no copy
        if not op.trans_b.value.data or alpha != 1.0:
            w = b if op.trans_b.value.data else b.T
            if alpha != 1.0:
                w = (w.astype(np.float64) * alpha).astype(b.dtype)
            weight_op = new_constant(w, op.b.owner)  # type: ignore[arg-type]
            new_ops.append(weight_op)
            weight = weight_op.result
        dense = graph.DenseOp(op.a, weight, result_type=op.result.type)
        dense.attributes.update(op.attributes)
        new_ops.append(dense)
        if bias is not None and op.c is not None:
            bias_value = op.c  # reused when already [N] and beta == 1
            if beta != 1.0 or shape_of(op.c) != bias.shape:
                bias = (bias.astype(np.float64) * beta).astype(bias.dtype)
                bias_op = new_constant(bias, op.c.owner, "bias")  # type: ignore[arg-type]
                new_ops.append(bias_op)
                bias_value = bias_op.result
            bias_add = graph.BiasAddOp(dense, bias_value, axis=1, result_type=op.result.type)
            bias_add.attributes.update(op.attributes)
            new_ops.append(bias_add)
        rewriter.replace(op, new_ops, [new_ops[-1].results[0]])


class MatMulToDensePattern(RewritePattern):
    """matmul(x 2-D, W 2-D const) -> dense(x, W^T)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.MatMulOp, rewriter: PatternRewriter):
        if len(shape_of(op.lhs)) != 2:
            return
        w = constant_array(op.rhs)
        if w is None or w.ndim != 2 or w.dtype.kind != "f":
            return
        weight_op = new_constant(w.T, op.rhs.owner)  # type: ignore[arg-type]
        dense = graph.DenseOp(op.lhs, weight_op, result_type=op.result.type)
        dense.attributes.update(op.attributes)
        rewriter.replace(op, [weight_op, dense])


class DenseAddToBiasPattern(RewritePattern):
    """add / sub of a per-column constant after dense (or after its bias_add) -> bias_add."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: graph.AddOp | graph.SubOp | graph.BiasAddOp, rewriter: PatternRewriter
    ):
        found = _bias_operands(op)
        if found is None:
            return
        data, c_value, sign = found
        c = constant_array(c_value)
        assert c is not None
        producer = data.owner
        out_shape = shape_of(data)
        if len(out_shape) != 2 or shape_of(op.results[0]) != out_shape:
            return
        if isinstance(op, graph.BiasAddOp) and op.axis.value.data != 1:
            return
        vec = c if isinstance(op, graph.BiasAddOp) else _per_axis(c, out_shape, 1)
        if vec is None or vec.dtype.kind != "f":
            return
        if isinstance(producer, graph.DenseOp):
            if isinstance(op, graph.BiasAddOp) or not data.has_one_use():
                return
            new_ops: list[Operation] = []
            bias = c_value
            if sign < 0 or c.shape != vec.shape:
                bias_op = new_constant(sign * vec, c_value.owner, "bias")  # type: ignore[arg-type]
                new_ops.append(bias_op)
                bias = bias_op.result
            new_op = graph.BiasAddOp(data, bias, axis=1, result_type=op.results[0].type)
            new_op.attributes.update(op.attributes)
            rewriter.replace(op, [*new_ops, new_op])
            return
        if not isinstance(producer, graph.BiasAddOp) or not data.has_one_use():
            return
        if not isinstance(producer.input.owner, graph.DenseOp) or producer.axis.value.data != 1:
            return
        old = constant_array(producer.bias)
        if old is None:
            return
        total = (old.astype(np.float64) + sign * vec.astype(np.float64)).astype(vec.dtype)
        bias_op = new_constant(total, name_hint="bias")
        new_op = graph.BiasAddOp(producer.input, bias_op, axis=1, result_type=op.results[0].type)
        new_op.attributes.update(producer.attributes)
        rewriter.replace(op, [bias_op, new_op])
        rewriter.erase(producer)


def conv_add_to_bias_patterns() -> list[RewritePattern]:
    """The patterns of this pass."""
    return [
        ConvAddToBiasPattern(),
        GemmToDensePattern(),
        MatMulToDensePattern(),
        DenseAddToBiasPattern(),
    ]


@dataclass(frozen=True)
class GraphConvAddToBiasPass(ModulePass):
    """Fold constant per-channel adds into conv / dense biases. No options."""

    name = "graph-conv-add-to-bias"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(conv_add_to_bias_patterns())
        ).rewrite_module(op)
