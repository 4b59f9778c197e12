"""`graph-cancel-transposes`: remove no-op transposes and fold chains of layout changes.

Both `graph.transpose` and `graph.layout_transform` are axis permutations (a layout
transform is a transpose whose permutation is spelled by its two layout strings), so a chain
of two of them is one permutation:

- transpose(x, identity perm) -> x; layout_transform(x, L -> L) -> x;
- t2(t1(x)) where the composed permutation is the identity -> x (transpose pairs,
  NCHW->NHWC / NHWC->NCHW pairs, and transpose <-> layout_transform equivalents such as
  transpose(perm = 0, 2, 3, 1) followed by layout_transform NHWC -> NCHW);
- otherwise layout_transform(layout_transform(x, A -> B), B -> C) -> layout_transform(x, A -> C)
  and any other chain -> one graph.transpose with the composed permutation.

Input: graph-dialect functions. Output: no identity transpose / layout transform is left and
no transpose or layout transform takes another one's result (t1 stays only while it has
other users). Values are exactly kept (pure data movement).
"""

from __future__ import annotations

from dataclasses import dataclass

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
from mrvl.lowering.graph_pass_utils import compose, is_identity, permutation_of


class RemoveIdentityPermutationPattern(RewritePattern):
    """transpose / layout_transform whose permutation is the identity -> its input."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: graph.TransposeOp | graph.LayoutTransformOp, rewriter: PatternRewriter
    ):
        perm = permutation_of(op)
        if perm is None or not is_identity(perm):
            return
        if op.input.type != op.result.type:
            return
        rewriter.replace(op, [], [op.input])


class FoldPermutationChainPattern(RewritePattern):
    """t2(t1(x)) for t1, t2 transposes or layout transforms -> x or a single op."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: graph.TransposeOp | graph.LayoutTransformOp, rewriter: PatternRewriter
    ):
        inner = op.input.owner
        if not isinstance(inner, graph.TransposeOp | graph.LayoutTransformOp):
            return
        inner_perm = permutation_of(inner)
        outer_perm = permutation_of(op)
        assert inner_perm is not None and outer_perm is not None
        perm = compose(inner_perm, outer_perm)
        source = inner.input
        if is_identity(perm):
            if source.type != op.result.type:
                return
            rewriter.replace(op, [], [source])
            return
        if (
            isinstance(op, graph.LayoutTransformOp)
            and isinstance(inner, graph.LayoutTransformOp)
            and inner.dst_layout.data == op.src_layout.data
        ):
            new_op = graph.LayoutTransformOp(
                source,
                src_layout=inner.src_layout.data,
                dst_layout=op.dst_layout.data,
                result_type=op.result.type,
            )
        else:
            new_op = graph.TransposeOp(source, perm=perm, result_type=op.result.type)
        new_op.attributes.update(op.attributes)
        rewriter.replace(op, new_op)


def cancel_transpose_patterns() -> list[RewritePattern]:
    """The patterns of this pass (the layout pass reuses them)."""
    return [RemoveIdentityPermutationPattern(), FoldPermutationChainPattern()]


@dataclass(frozen=True)
class GraphCancelTransposesPass(ModulePass):
    """Remove identity transposes and fold transpose / layout-transform chains. No options."""

    name = "graph-cancel-transposes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(cancel_transpose_patterns())
        ).rewrite_module(op)
