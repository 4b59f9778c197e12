"""The fp16 precision policy of transformer sub-graphs: which layer outputs stay fp32.

In an fp16 build every activation is stored fp16 (docs/backend.md, "Numerics"), except in
an accelerator sub-graph where a residual stream runs through a LayerNorm (a
transformer's: a LayerNorm reads a residual Add; `applies`): there a layer writes
its output in fp32 when

- some reader of it is not a matrix engine input (the matrix engine reads fp16 only, so
  storing fp32 for Conv2D / FC / MatMul readers would only cost bytes): the residual Adds,
  the LayerNorms, the other element-wise layers, and copy layers whose own output is fp32
  (readers are followed through reshape-like aliases);
- the layer can write fp32: Conv2D and FC (CONV / GEMM `dst_dtype` FP32; ViT's patch
  embedding), the vector-engine layers (ELTWISE, ACT, LAYERNORM, SOFTMAX, computed in fp32
  throughout) and the copy layers (Concat, Slice, transposes) when one of their inputs is
  fp32 (a copy of an fp16 tensor gains nothing), and MatMul without the attention epilogue
  (GEMM `dst_dtype` FP32; its readers are matrix engine inputs except after
  mrvl-extended-precision, whose split of an FC input reads it element-wise);
- it is not a sub-graph output (those keep the I/O dtype);
- it is not marked `mrvl.high_half` (lowering/mrvl_extended_precision.py: the fp16 high
  half of a split tensor).

So the residual stream (the Adds, the FC outputs feeding them, the LayerNorm inputs) never
goes through fp16, and every matrix engine input is rounded to fp16 exactly once, when it
is loaded (the DMA converts) or written. Measured on the in-repo ViT-tiny and BERT-tiny
(docs/backend.md, "Transformer layers"). int8 builds do not use this policy.

In the other (CNN) sub-graphs only element-wise arithmetic that leaves the accelerator is
kept fp32 (`arithmetic_outputs`): a sub-graph output written by a Sum2D or Mul2D with a
constant operand (a detector's box decode, center = delta * variance * prior size +
prior center, handed to a CPU decode) is stored fp32 (the one exception to "outputs keep the I/O dtype"), and so is
every layer whose readers are all such fp32 layers (none a matrix engine input), back to
the CONV that predicts the deltas (CONV `dst_dtype` FP32). An fp16 output there rounds a
center near 0.5 by up to 2^-12, which the CPU's corner subtraction (center - size / 2)
turns into about 1 % relative error on a corner near 0.02; measured on the in-repo SSD
detector (docs/backend.md, "Numerics"). Sub-graphs without such outputs are unchanged.

`fp32_outputs(fn)` is the one place that decides; `mrvl-quantize` records it on the layers
(`mrvl.out_dtype = "f32"`), convert-mrvl-to-mlip reads the attribute, and the offload
report lists the layers (`fp32_in_fp16`).
"""

from __future__ import annotations

from collections.abc import Iterator

from xdsl.dialects import func
from xdsl.ir import Operation, SSAValue

from mrvl.dialects import mrvl
from mrvl.dialects.graph import ConstantOp

OUT_DTYPE_ATTR = "mrvl.out_dtype"
"""Layer attribute set by mrvl-quantize: "f32" when the layer's output is stored fp32."""

HIGH_HALF_ATTR = "mrvl.high_half"
"""Unit attribute of a layer whose output must stay fp16 (the high half of an fp32 tensor
split by mrvl-extended-precision); the policy never widens it."""

MATRIX_READERS = (mrvl.Conv2DOp, mrvl.FCOp, mrvl.MatMulOp)
"""Layers whose data inputs the matrix engine reads as fp16."""

ALIASES = (mrvl.ReshapeOp, mrvl.BatchFlattenOp, mrvl.SqueezeOp)
"""Layers that reinterpret their input's bytes (the same tensor, the same dtype)."""

COPIES = (mrvl.ConcatOp, mrvl.SliceOp, mrvl.TransposeOp, mrvl.LayoutTransformOp)
"""Layers that move elements without arithmetic."""

FP32_WRITERS = (mrvl.Conv2DOp, mrvl.FCOp, mrvl.Sum2DOp, mrvl.Mul2DOp, mrvl.ActivationOp, mrvl.LayerNormOp,
                mrvl.SoftmaxOp, *COPIES, mrvl.MatMulOp)
"""Layers whose lowering can store an fp32 output."""


def _readers(value: SSAValue, heads: set[SSAValue]) -> Iterator[Operation]:
    """The ops that read `value`'s tensor, looking through alias layers (an alias that is
    a sub-graph output is a copy layer of its own, hence a reader)."""
    for use in value.uses:
        op = use.operation
        if isinstance(op, ALIASES) and op.results[0] not in heads:
            yield from _readers(op.results[0], heads)
        else:
            yield op


def _source(value: SSAValue) -> SSAValue:
    """The value whose tensor `value` aliases (itself unless made by an alias layer)."""
    while isinstance(value.owner, ALIASES):
        value = value.owner.operands[0]
    return value


def applies(fn: func.FuncOp) -> bool:
    """Does the policy apply to this accelerator sub-graph: does a residual stream run
    through a LayerNorm (some LayerNorm reads, through aliases, the output of a Sum2D)?
    A GroupNorm is lowered to LayerNorm rows too, but where it reads a conv's output (no
    residual stream) fp32 storage measured no better on the in-repo UNet variant, so such
    CNN sub-graphs keep fp16."""
    return any(isinstance(op, mrvl.LayerNormOp)
               and isinstance(_source(op.operands[0]).owner, mrvl.Sum2DOp)
               for op in fn.body.block.ops)


ARITHMETIC_OUTPUTS = (mrvl.Sum2DOp, mrvl.Mul2DOp)
"""Element-wise layers whose sub-graph outputs a CNN sub-graph stores fp32."""


def arithmetic_outputs(fn: func.FuncOp) -> list[mrvl.MrvlLayerOp]:
    """The layers of a CNN sub-graph stored fp32 (module docstring): sub-graph outputs of
    `ARITHMETIC_OUTPUTS` layers with a constant operand (a decode against priors, not a
    residual Add of two activations), then, in reverse program order, every fp32-capable layer
    all of whose readers are already in the set (no matrix engine input, no other sub-graph
    output); a copy layer stays only when one of its inputs is fp32 too. In program order."""
    block = fn.body.block
    layers = [op for op in block.ops if isinstance(op, mrvl.MrvlLayerOp)]
    heads = set(block.last_op.operands) if block.last_op is not None else set()
    wide_ops: set[Operation] = set()
    for op in reversed(layers):
        if isinstance(op, ALIASES) or not isinstance(op, FP32_WRITERS) \
                or HIGH_HALF_ATTR in op.attributes:
            continue
        readers = list(_readers(op.results[0], heads))
        if op.results[0] in heads:
            wanted = isinstance(op, ARITHMETIC_OUTPUTS) and any(
                isinstance(x.owner, ConstantOp) for x in op.operands)
            readers = [r for r in readers if not isinstance(r, func.ReturnOp)]
        else:
            wanted = bool(readers)
        if wanted and all(r in wide_ops and not isinstance(r, MATRIX_READERS)
                          for r in readers):
            wide_ops.add(op)
    wide: list[mrvl.MrvlLayerOp] = []
    wide_values: set[SSAValue] = set()
    for op in layers:
        if op not in wide_ops:
            continue
        if isinstance(op, COPIES) and not any(_source(x) in wide_values for x in op.operands):
            continue
        wide.append(op)
        wide_values.add(op.results[0])
    return wide


def fp32_outputs(fn: func.FuncOp) -> list[mrvl.MrvlLayerOp]:
    """The layers of `fn` whose outputs are stored fp32 in an fp16 build (module
    docstring), in program order."""
    if not applies(fn):
        return arithmetic_outputs(fn)
    block = fn.body.block
    layers = [op for op in block.ops if isinstance(op, mrvl.MrvlLayerOp)]
    heads = set(block.last_op.operands) if block.last_op is not None else set()
    needed: set[SSAValue] = set()
    for op in reversed(layers):
        value = op.results[0]
        if isinstance(op, ALIASES) or value in heads:
            continue
        for reader in _readers(value, heads):
            if isinstance(reader, (*MATRIX_READERS, func.ReturnOp)):
                continue
            if isinstance(reader, (*COPIES, *ALIASES)) and reader.results[0] not in needed:
                continue
            needed.add(value)
            break
    wide: list[mrvl.MrvlLayerOp] = []
    wide_values: set[SSAValue] = set()
    for op in layers:
        value = op.results[0]
        if value not in needed or not isinstance(op, FP32_WRITERS) or HIGH_HALF_ATTR in op.attributes:
            continue
        if isinstance(op, mrvl.MatMulOp) and op.softmax_scale is not None:
            continue  # the attention epilogue writes fp16 probabilities
        if isinstance(op, COPIES) and not any(
                _source(x) in wide_values for x in op.operands):
            continue
        wide.append(op)
        wide_values.add(value)
    return wide
