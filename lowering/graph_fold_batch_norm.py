"""`graph-fold-batch-norm`: fold an inference batch-norm into the conv2d that feeds it.

    y = batch_norm(conv2d(x, W, b))  ->  y = conv2d(x, W * s, (b - mean) * s + beta)
    with s = scale / sqrt(var + epsilon), per output channel.

Input: graph-dialect functions.
Output: every `graph.batch_norm` whose input is a `graph.conv2d` result used only by it,
with a constant weight, a constant (or absent) bias, constant scale / bias / mean / var, a
floating element type and the same channel axis (batch-norm layout == conv data_layout) is
replaced by one `graph.conv2d` with new constant weight and bias (same strides, pads,
dilations, groups, layouts). Any other batch-norm (standalone, after a conv with other
users, or with non-constant parameters) is left as it is. Values are kept up to float
reassociation (the per-channel factors are computed in float64 and rounded once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from mrvl.dialects import graph
from mrvl.lowering.graph_pass_utils import constant_array, new_constant


class FoldBatchNormIntoConvPattern(RewritePattern):
    """batch_norm(conv2d(x, W const, b const?)) with constant parameters -> conv2d."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.BatchNormOp, rewriter: PatternRewriter):
        conv = op.input.owner
        if not isinstance(conv, graph.Conv2DOp):
            return
        if not conv.result.has_one_use():
            return
        if op.layout.data != conv.data_layout.data:
            return
        weight = constant_array(conv.weight)
        if weight is None or weight.dtype.kind != "f":
            return
        bias = None
        if conv.bias is not None:
            bias = constant_array(conv.bias)
            if bias is None:
                return
        params = [constant_array(v) for v in (op.scale, op.bias, op.mean, op.var)]
        if any(p is None for p in params):
            return
        scale, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
        eps = float(op.epsilon.value.data)
        s = scale / np.sqrt(var + eps)
        new_weight = weight * s.astype(weight.dtype).reshape(-1, 1, 1, 1)
        b = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
        new_bias = ((b - mean) * s + beta).astype(weight.dtype)
        weight_op = new_constant(new_weight, conv.weight.owner)  # type: ignore[arg-type]
        bias_op = new_constant(new_bias, name_hint="bias")
        new_conv = graph.Conv2DOp.create(
            operands=[conv.input, weight_op.result, bias_op.result],
            result_types=[op.result.type],
            properties=dict(conv.properties),
            attributes=dict(conv.attributes),
        )
        rewriter.replace(op, [weight_op, bias_op, new_conv])
        rewriter.erase(conv)


@dataclass(frozen=True)
class GraphFoldBatchNormPass(ModulePass):
    """Fold batch-norm into the preceding conv2d where possible. No options."""

    name = "graph-fold-batch-norm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier([FoldBatchNormIntoConvPattern()])
        ).rewrite_module(op)
