"""`graph-widen-f16`: compute an f16 model's float16 tensors as float32 in the graph IR.

A model exported in half precision (`model.half()` then `torch.onnx.export`) has f16 inputs,
weights and activations. The accelerator computes in fp16 anyway (fp16 activations and
weights, fp32 accumulation; docs/backend.md), but its layers are only formed from f32 graph
ops (`mrvl_legality.check_common`). This pass makes every f16 value f32 inside the function
and keeps the function's signature:

- an f16 argument gets a `graph.onnx` Cast to f32 (CPU) that every other use now reads;
- an f16 `graph.constant` becomes the same values in f32 (exactly representable);
- a modelled graph op gets f32 in place of f16 in its result types (operands follow);
- a `graph.onnx` op keeps its f16 semantics: each widened operand is cast back to f16 before
  it (or, when it is one of this pass's Casts to f32, replaced by that Cast's f16 operand)
  and each f16 result is cast to f32 after it (Cast nodes, so a Cast to f16 inside the model
  still rounds); a Cast to f32 left without users is erased;
- each f16 value returned is cast back to f16 before the return.

Values: every cast f16 -> f32 is exact; the f32 ops compute what the f16 ops compute with
fewer roundings (on the accelerator, the fp16 rounding of its activations remains). A module
without f16 values is left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import Float16Type, ModuleOp, TensorType, f32
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from mrvl.dialects import graph

CAST_OPSET = 13


def _is_f16(typ: Attribute) -> bool:
    return isinstance(typ, TensorType) and isinstance(typ.element_type, Float16Type)


def _with(typ: Attribute, element: Attribute) -> Attribute:
    assert isinstance(typ, TensorType)
    return TensorType(element, typ.get_shape())


def _cast(value: SSAValue, to: int, result_type: Attribute) -> graph.OnnxOp:
    from mrvl.frontend.onnx_import import onnx_attribute_to_ir

    attr = onnx_attribute_to_ir(helper.make_attribute("to", to))
    return graph.OnnxOp([value], [result_type], op_type="Cast", opset=CAST_OPSET,
                        attrs={"to": attr})


def widen_function(fn: func.FuncOp) -> None:
    """Apply the rewrite of the module docstring to one function."""
    block = fn.body.block
    widened: dict[SSAValue, Attribute] = {}  # new f32 value -> the f16 type it replaces
    source: dict[SSAValue, SSAValue] = {}  # result of a Cast to f32 -> its f16 operand
    casts: list[Operation] = []

    def narrow_operands(op: Operation) -> None:
        for index, value in enumerate(list(op.operands)):
            if value in source:  # read the f16 value itself, not a round trip
                op.operands[index] = source[value]
            elif value in widened:
                cast = _cast(value, TensorProto.FLOAT16, widened[value])
                Rewriter.insert_op(cast, InsertPoint.before(op))
                op.operands[index] = cast.results[0]

    def widen_after(value: SSAValue, where: InsertPoint) -> None:
        uses = list(value.uses)
        cast = _cast(value, TensorProto.FLOAT, _with(value.type, f32))
        Rewriter.insert_op(cast, where)
        for use in uses:
            use.operation.operands[use.index] = cast.results[0]
        widened[cast.results[0]] = value.type
        source[cast.results[0]] = value
        casts.append(cast)

    ops = list(block.ops)
    for arg in block.args:
        if _is_f16(arg.type):
            widen_after(arg, InsertPoint.at_start(block))
    for op in ops:
        if isinstance(op, func.ReturnOp | graph.OnnxOp):
            narrow_operands(op)
            for result in op.results:
                if _is_f16(result.type):
                    widen_after(result, InsertPoint.after(op))
            continue
        if not any(_is_f16(r.type) for r in op.results):
            continue
        if isinstance(op, graph.ConstantOp):
            new = graph.ConstantOp.from_numpy(op.to_numpy().astype(np.float32))
            new.attributes.update(op.attributes)
        else:
            new = type(op).create(
                operands=list(op.operands),
                result_types=[_with(r.type, f32) if _is_f16(r.type) else r.type
                              for r in op.results],
                properties=dict(op.properties),
                attributes=dict(op.attributes),
                regions=[op.detach_region(r) for r in list(op.regions)],
            )
        for old, res in zip(op.results, new.results):
            if _is_f16(old.type):
                widened[res] = old.type
        Rewriter.replace_op(op, new)
    for cast in casts:
        if not cast.results[0].uses:
            Rewriter.erase_op(cast)


@dataclass(frozen=True)
class GraphWidenF16Pass(ModulePass):
    """Compute f16 tensors as f32 (see the module docstring). No options."""

    name = "graph-widen-f16"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in op.ops:
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                widen_function(fn)
