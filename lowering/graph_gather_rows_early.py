"""`graph-gather-rows-early`: take a one-row Gather before the row-wise ops that feed it.

A ViT reads only the class token's row of its last encoder block (Gather(axis 1, [0])
after the final LayerNorm), yet every row-wise layer before the Gather computes all S rows.
Row-wise ops commute with a Gather of one index on an axis they do not reduce over:

- element-wise ops (`graph.add/sub/mul/div` with numpy broadcasting: an operand whose
  dimension on that axis is 1, or that does not reach it, is kept; the others are
  gathered, a constant's row becoming a constant; `graph.relu/sigmoid/tanh/hard_swish/
  identity`, ONNX Erf / Gelu);
- ONNX LayerNormalization over the last axis (gather axis not the last);
- `graph.matmul` with a 2-D right operand (the gather axis one of the left operand's rows
  or batch axes);
- `graph.softmax` over another axis.

So Gather(op(x, y)) becomes op(Gather(x), Gather(y)) when every use of op's result is a
Gather of the same one index on the same axis, repeated until no such op is left: in the
ViT, the last block's MLP, its residual Adds, its attention output projection and the
final LayerNorm run on the class token only. The values are exactly the rows the Gathers
kept (the same per-row arithmetic).

Input: graph-dialect functions. Output: the same, with no Gather of one constant index
(1-D indices, so the axis is kept) on an axis of rank >= 2 taking the result of a
row-wise op above whose results are all used by such Gathers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from mrvl.dialects import graph
from mrvl.lowering.graph_pass_utils import constant_array, new_constant, shape_of

ELEMENTWISE_ONNX = ("Erf", "Gelu")
"""ONNX op types (kept as `graph.onnx`) that act element by element."""

UNARY = (graph.ReluOp, graph.SigmoidOp, graph.TanhOp, graph.HardSwishOp, graph.IdentityOp)
"""Element-wise graph ops with one operand."""

BINARY = (graph.AddOp, graph.SubOp, graph.MulOp, graph.DivOp)
"""Element-wise graph ops with numpy broadcasting."""


def _one_row(op: Operation) -> tuple[int, int] | None:
    """(axis, index) of a Gather of one constant index given as a 1-D tensor, else None."""
    if not isinstance(op, graph.OnnxOp) or op.op_type.data != "Gather" or len(op.operands) != 2:
        return None
    indices = constant_array(op.operands[1])
    if indices is None or indices.shape != (1,):
        return None
    rank = len(shape_of(op.operands[0]))
    axis_attr = op.attrs.data.get("axis")
    axis = 0 if axis_attr is None else int(axis_attr.value.data)  # type: ignore[union-attr]
    if rank < 2 or not -rank <= axis < rank:
        return None
    return axis % rank, int(indices[0])


def _int_attr(op: graph.OnnxOp, name: str, default: int) -> int:
    attr = op.attrs.data.get(name)
    return default if attr is None else int(attr.value.data)  # type: ignore[union-attr]


def _row_wise(op: Operation, axis: int) -> bool:
    """Does `op` (one result) commute with a one-index Gather on `axis` of its result?"""
    if len(op.results) != 1:
        return False
    rank = len(shape_of(op.results[0]))
    if isinstance(op, (*UNARY, *BINARY)):
        return True
    if isinstance(op, graph.OnnxOp):
        if op.op_type.data in ELEMENTWISE_ONNX:
            return True
        if op.op_type.data == "LayerNormalization":
            return _int_attr(op, "axis", -1) % rank == rank - 1 and axis < rank - 1
        return False
    if isinstance(op, graph.MatMulOp):
        return len(shape_of(op.rhs)) == 2 and len(shape_of(op.lhs)) == rank and axis < rank - 1
    if isinstance(op, graph.SoftmaxOp):
        return op.axis.value.data % rank != axis
    return False


def _gathered_operands(op: Operation, axis: int) -> list[int]:
    """Positions of `op`'s operands that carry the rows of `axis` (the others broadcast
    over it or are weights, and are kept as they are)."""
    rank = len(shape_of(op.results[0]))
    if isinstance(op, graph.OnnxOp) and op.op_type.data == "LayerNormalization":
        return [0]
    if isinstance(op, graph.MatMulOp):
        return [0]
    picked = []
    for k, value in enumerate(op.operands):
        shape = shape_of(value)
        local = axis - (rank - len(shape))
        if local >= 0 and shape[local] != 1:
            picked.append(k)
    return picked


def _with_row_dim(value_type: TensorType, axis: int) -> TensorType:
    shape = list(value_type.get_shape())
    shape[axis] = 1
    return TensorType(value_type.element_type, shape)


class GatherRowEarlyPattern(RewritePattern):
    """Gather(op(...)) -> op(Gather(...)) for a row-wise op whose every use is such a
    Gather (module docstring)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        row = _one_row(op)
        if row is None:
            return
        axis, index_value = row
        source = op.operands[0].owner
        if not isinstance(source, Operation) or not _row_wise(source, axis):
            return
        block = source.parent_block()
        gathers = [use.operation for use in source.results[0].uses]
        if block is None or any(_one_row(g) != row or g.operands[0] is not source.results[0]
                                or g.parent_block() is not block for g in gathers):
            return
        index = op.operands[1]
        new_operands: list[SSAValue] = list(source.operands)
        new_ops: list[Operation] = []
        for k in _gathered_operands(source, axis):
            value = source.operands[k]
            value_type = value.type
            assert isinstance(value_type, TensorType)
            local = axis - (len(shape_of(source.results[0])) - len(shape_of(value)))
            table = constant_array(value)
            if table is not None:  # a constant's row is a constant (ViT's position table)
                constant_row = new_constant(np.take(table, [index_value], axis=local),
                                            like=value.owner)
                new_ops.append(constant_row)
                new_operands[k] = constant_row.results[0]
                continue
            gather = graph.OnnxOp([value, index], [_with_row_dim(value_type, local)],
                                  op_type="Gather", opset=op.opset.value.data,
                                  attrs={"axis": IntegerAttr(local, i64)})
            gather.attributes.update(op.attributes)
            new_ops.append(gather)
            new_operands[k] = gather.results[0]
        result_type = source.results[0].type
        assert isinstance(result_type, TensorType)
        moved = type(source).create(operands=new_operands,
                                    result_types=[_with_row_dim(result_type, axis)],
                                    properties=dict(source.properties),
                                    attributes=dict(source.attributes))
        new_ops.append(moved)
        first = min(gathers, key=block.get_operation_index)  # dominates every reader
        rewriter.insert(new_ops, InsertPoint.before(first))
        for gather in gathers:
            rewriter.replace(gather, [], [moved.results[0]])
        rewriter.erase(source)


@dataclass(frozen=True)
class GraphGatherRowsEarlyPass(ModulePass):
    """Move one-row Gathers above the row-wise ops feeding them (module docstring).
    No options."""

    name = "graph-gather-rows-early"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GatherRowEarlyPattern(), apply_recursively=True).rewrite_module(op)
