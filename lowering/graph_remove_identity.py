"""`graph-remove-identity`: remove `graph.identity` and `graph.dropout` (inference mode).

Input: any module holding graph-dialect functions.
Output: no `graph.identity` / `graph.dropout` is left; each one's uses now use its input
directly (same type, so the IR still verifies). A training-mode Dropout or one whose mask
output is used is imported as `graph.onnx` and is left alone, as is every other op (except
that the rewrite driver erases `Pure` ops whose results are unused).
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


class RemoveIdentityPattern(RewritePattern):
    """identity(x) -> x, dropout(x) -> x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.IdentityOp | graph.DropoutOp, rewriter: PatternRewriter):
        if op.input.type != op.result.type:
            return
        rewriter.replace(op, [], [op.input])


@dataclass(frozen=True)
class GraphRemoveIdentityPass(ModulePass):
    """Remove identity and inference-mode dropout ops. No options."""

    name = "graph-remove-identity"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier([RemoveIdentityPattern()])
        ).rewrite_module(op)
