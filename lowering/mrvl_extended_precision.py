"""Extended-precision FCs in fp16 transformer sub-graphs: each FC as three fp16 GEMM passes.

The matrix engine reads fp16 operands only. With `precision = "extended"` (an fp16 build
option, `compile_function(precision=...)`, `mrvl compile --fp16-precision extended`), every
FC of an accelerator sub-graph that holds a LayerNorm (where the precision policy of
lowering/mrvl_precision.py applies) is rewritten into existing layers, the "3-pass" split
of 3xTF32:

    y = FC(x, W, b)        ->   n  = Mul2D(x, -1)          (stored fp16: -fp16(x), exact)
                                xl = Sum2D(x, n)           (x - fp16(x), stored fp16)
                                p  = FC(x,  Wh, b)         (the load rounds x to fp16)
                                q  = FC(xl, Wh)
                                r  = FC(x,  Wl)
                                y  = Sum2D(Sum2D(p, q), r, activation of the FC)

with Wh = fp16(W) and Wl = W - Wh (two constant tensors; the compiler rounds both to fp16).
The FC passes write fp32 and the sums add in fp32 (the precision policy keeps them fp32:
their readers are element-wise), and `x` becomes fp32 too (it now has element-wise
readers), so the product misses only Wl * xl (relative 2^-22), the fp32 accumulation, and
the fp16 subnormal step of the low halves (2^-24 absolute: Wl of a weight below 1/4 is
subnormal, so W is kept to ~3e-6 relative at |W| = 0.02 instead of fp16's 2.4e-4).
The `-1` layer carries `mrvl.high_half` so the policy keeps its output fp16.
Costs are the layers' own: 3x the FC's MACs, the weight bytes twice, two element-wise
layers over x and two over y, and fp32 x and partial sums.

Input: mrvl functions (after partitioning, before mrvl-quantize). Output: the same, with
each FC of a LayerNorm sub-graph replaced as above (new layers named after the FC:
`<name>_neg`, `_lo`, `_hh`, `_lh`, `_hl`, `_sum`, and the FC's name on the final sum; each
carries `mrvl.extended_of = <name>`);
other sub-graphs and other layers are unchanged. A no-op unless `enabled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.dialects.graph import ConstantOp
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.mrvl_precision import HIGH_HALF_ATTR, applies

EXTENDED_ATTR = "mrvl.extended_of"
"""Attribute of every layer the split makes: the name of the FC it replaces (the offload
report's `extended_fp16`)."""

PASSES = ("hh", "lh", "hl")
"""The GEMM passes of one extended FC: (high x, high W), (low x, high W), (high x, low W)."""


def _clip(op: mrvl.FCOp) -> tuple[float, float] | None:
    if op.clip_min is None or op.clip_max is None:
        return None
    return (op.clip_min.value.data, op.clip_max.value.data)


def split_weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Wh, Wl): Wh = fp16(W) (round to nearest even), Wl = W - Wh, both as fp32 arrays
    (each is then rounded to fp16 by the compiler: Wh exactly, Wl to its own fp16)."""
    w = np.asarray(weight, np.float32)
    high = w.astype(np.float16).astype(np.float32)
    return high, (w - high).astype(np.float32)


def extend_fc(op: mrvl.FCOp) -> list[mrvl.MrvlLayerOp]:
    """Replace `op` (its weight a constant) by the split of the module docstring; the new
    layers in program order."""
    weight = op.weight.owner
    if not isinstance(weight, ConstantOp):
        return []
    name = op.layer_name.data
    x = op.input
    shape = mrvl.tensor_shape(x)
    high, low = split_weights(weight.to_numpy())
    minus_one = ConstantOp.from_numpy(np.full([1] * len(shape), -1.0, np.float32))
    w_high = ConstantOp.from_numpy(high)
    w_low = ConstantOp.from_numpy(low)
    neg = mrvl.Mul2DOp(x, minus_one, layer_name=f"{name}_neg")
    neg.attributes[HIGH_HALF_ATTR] = builtin.UnitAttr()
    lo = mrvl.Sum2DOp(x, neg, layer_name=f"{name}_lo")
    transform = op.weights_need_transform is not None
    out_type = op.output.type
    hh = mrvl.FCOp(x, w_high, op.bias, layer_name=f"{name}_hh",
                   weights_need_transform=transform, result_type=out_type)
    lh = mrvl.FCOp(lo, w_high, None, layer_name=f"{name}_lh",
                   weights_need_transform=transform, result_type=out_type)
    hl = mrvl.FCOp(x, w_low, None, layer_name=f"{name}_hl",
                   weights_need_transform=transform, result_type=out_type)
    partial = mrvl.Sum2DOp(hh, lh, layer_name=f"{name}_sum")
    total = mrvl.Sum2DOp(partial, hl, layer_name=name, activation=op.activation.data,
                         clip=_clip(op))
    new = [minus_one, w_high, w_low, neg, lo, hh, lh, hl, partial, total]
    total.attributes.update(op.attributes)  # the FC's ONNX nodes
    for layer in (neg, lo, hh, lh, hl, partial, total):
        layer.attributes[EXTENDED_ATTR] = builtin.StringAttr(name)
    block = op.parent_block()
    assert block is not None
    block.insert_ops_before(new, op)
    op.output.replace_all_uses_with(total.output)
    block.erase_op(op)
    if not weight.result.uses:
        block.erase_op(weight)
    return [neg, lo, hh, lh, hl, partial, total]


def extended_fcs(fn: func.FuncOp) -> list[mrvl.FCOp]:
    """The FCs of `fn` the rewrite applies to (a LayerNorm sub-graph's FCs with constant
    weights), in program order."""
    if not applies(fn):
        return []
    return [op for op in fn.body.block.ops
            if isinstance(op, mrvl.FCOp) and isinstance(op.weight.owner, ConstantOp)]


@dataclass(frozen=True)
class MrvlExtendedPrecisionPass(ModulePass):
    """Split each FC of the fp16 transformer sub-graphs into three fp16 GEMM passes
    (module docstring) when `enabled`; every other function and layer is unchanged."""

    name = "mrvl-extended-precision"

    enabled: bool = True

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        if not self.enabled:
            return
        for fn in subgraph_functions(op, "accelerator"):
            for fc in extended_fcs(fn):
                extend_fc(fc)
