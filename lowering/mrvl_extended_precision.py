"""Extended precision in fp16 transformer sub-graphs: FCs and MatMuls as fp16 GEMM passes on
split operands.

The matrix engine reads fp16 operands only. With `precision = "extended"` (an fp16 build
option, `compile_function(precision=...)`, `mrvl compile --fp16-precision extended`), every
FC of an accelerator sub-graph where the precision policy of lowering/mrvl_precision.py
applies (a residual stream through a LayerNorm) is rewritten into existing layers, the
"3-pass" split of 3xTF32:

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
A MatMul of two activations without the attention epilogue (attention's P @ V) is split the
same way on both operands (A_h B_h + A_l B_h + A_h B_l, the MatMuls writing fp32); an
operand written by an attention epilogue (the fp16 probabilities) has no low half, so its
pass is left out (P @ V: two passes). The score MatMul (with the epilogue) is unchanged.
Costs are the layers' own: 3x the FC's MACs, the weight bytes twice, two element-wise
layers over x and two over y, and fp32 x and partial sums.

With `precision = "targeted"`, and with "auto" (the default of fp16 builds) in sub-graphs
that read one token's row (a ViT's class token), only the weights are split, and both
halves go into one GEMM along K (`stack_fc`):

    y = FC(x, W, b)        ->   x2 = Concat(x, x)          (a copy of fp16 x)
                                y  = FC(x2, [Wh, Wl], b)   (K doubled, same epilogue)

for each FC with at most MAX_STACKED_K input features: twice the FC's MACs and weight
bytes, one copy of x (shared by the FCs that read the same x), nothing element-wise.

Input: mrvl functions (after partitioning, before mrvl-quantize). Output: the same, with
each FC and epilogue-free MatMul of a LayerNorm sub-graph replaced as above (new layers
named after it: `<name>_neg`, `_lo` (a MatMul's `_a_neg`, `_a_lo`, `_b_neg`, `_b_lo`),
`_hh`, `_lh`, `_hl`, `_sum`, and its name on the final sum, which takes its attributes;
each carries `mrvl.extended_of = <name>`; a stacked FC keeps its name, its Concat is
`<name>_stack`); other sub-graphs and other layers are unchanged. A no-op unless `enabled`,
and in mode "storage".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.dialects.graph import ConstantOp
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.errors import CompileError
from mrvl.lowering.mrvl_precision import ALIASES, HIGH_HALF_ATTR, applies

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
    high, low = split_weights(weight.to_numpy())
    w_high = ConstantOp.from_numpy(high)
    w_low = ConstantOp.from_numpy(low)
    split, lo = _split(x, name)
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
    layers = _replace(op, [w_high, w_low, *split, hh, lh, hl, partial, total], name)
    block = total.parent_block()
    if block is not None and not weight.result.uses:
        block.erase_op(weight)
    return layers


def stack_fc(op: mrvl.FCOp, stacks: dict[tuple, SSAValue] | None = None
             ) -> list[mrvl.MrvlLayerOp]:
    """Replace `op` (its weight a constant, no NCHW weight transform) by one FC over its
    input twice and its weights' two halves stacked along K:

        y = FC(x, W, b)   ->   x2 = Concat(x, x) on the last axis   (a copy, fp16 as x)
                               y  = FC(x2, [Wh, Wl], b)             (K doubled)

    so the one fp32 accumulator sums x Wh + x Wl: the weights lose only Wl's own fp16
    rounding (2^-22 relative), x keeps its fp16 rounding, and the bias, the activation and
    the single output store stay the FC's. `stacks` ((x through reshape-like aliases, x's
    shape) -> x2) shares one Concat between the FCs that read the same x (attention's Q,
    K and V projections). The new layers in program order."""
    weight = op.weight.owner
    if not isinstance(weight, ConstantOp) or op.weights_need_transform is not None:
        return []
    name = op.layer_name.data
    x = op.input
    high, low = split_weights(weight.to_numpy())
    new: list[Operation] = []
    source = x
    while isinstance(source.owner, ALIASES):
        source = source.owner.operands[0]
    key = (source, mrvl.tensor_shape(x))
    stacked = None if stacks is None else stacks.get(key)
    if stacked is None:
        concat = mrvl.ConcatOp([x, x], layer_name=f"{name}_stack",
                               axis=len(mrvl.tensor_shape(x)) - 1)
        new.append(concat)
        stacked = concat.output
        if stacks is not None:
            stacks[key] = stacked
    w_stacked = ConstantOp.from_numpy(np.concatenate([high, low], axis=1))
    fc = mrvl.FCOp(stacked, w_stacked, op.bias, layer_name=name,
                   result_type=op.output.type)
    fc.properties.update(op.properties)
    new += [w_stacked, fc]
    layers = _replace(op, new, name, single=True)
    block = fc.parent_block()
    assert block is not None
    if not weight.result.uses:
        block.erase_op(weight)
    alias = x.owner
    if isinstance(alias, ALIASES) and not x.uses:  # the shared x2 reads another alias
        block.erase_op(alias)
    return layers


def _split(x: SSAValue, name: str) -> tuple[list[Operation], SSAValue]:
    """The low half x - fp16(x) of activation `x` (stored fp16): the ops and the value."""
    minus_one = ConstantOp.from_numpy(np.full([1] * len(mrvl.tensor_shape(x)), -1.0,
                                              np.float32))
    neg = mrvl.Mul2DOp(x, minus_one, layer_name=f"{name}_neg")
    neg.attributes[HIGH_HALF_ATTR] = builtin.UnitAttr()
    lo = mrvl.Sum2DOp(x, neg, layer_name=f"{name}_lo")
    return [minus_one, neg, lo], lo.output


def extend_matmul(op: mrvl.MatMulOp) -> list[mrvl.MrvlLayerOp]:
    """Replace the product of two activations `op` (no attention epilogue) by
    A_h B_h + A_l B_h + A_h B_l, each operand's low half as an FC input's; an operand that
    an attention epilogue wrote (fp16 probabilities) has no low half, so its pass is left
    out. The new layers in program order."""
    name = op.layer_name.data
    perms = {"a_perm": None if op.a_perm is None else [int(v) for v in op.a_perm.get_values()],
             "b_perm": None if op.b_perm is None else [int(v) for v in op.b_perm.get_values()]}
    new: list[Operation] = []
    lows: list[SSAValue | None] = []
    for side, value in (("a", op.a), ("b", op.b)):
        source = value.owner
        if isinstance(source, mrvl.MatMulOp) and source.softmax_scale is not None:
            lows.append(None)
            continue
        ops, low = _split(value, f"{name}_{side}")
        new += ops
        lows.append(low)
    products = [mrvl.MatMulOp(op.a, op.b, layer_name=f"{name}_hh", **perms)]
    if lows[0] is not None:
        products.append(mrvl.MatMulOp(lows[0], op.b, layer_name=f"{name}_lh", **perms))
    if lows[1] is not None:
        products.append(mrvl.MatMulOp(op.a, lows[1], layer_name=f"{name}_hl", **perms))
    new += products
    total: SSAValue = products[0].output
    for k, product in enumerate(products[1:], 1):
        last = k == len(products) - 1
        add = mrvl.Sum2DOp(total, product, layer_name=name if last else f"{name}_sum")
        new.append(add)
        total = add.output
    return _replace(op, new, name)


def _replace(op: mrvl.MrvlLayerOp, new: list[Operation], name: str,
             single: bool = False) -> list[mrvl.MrvlLayerOp]:
    """Insert `new` before `op`, give its last op `op`'s uses and attributes, erase `op`
    (nothing when `new` holds one layer, unless `single`)."""
    layers = [x for x in new if isinstance(x, mrvl.MrvlLayerOp)]
    if len(layers) == 1 and not single:
        return []
    block = op.parent_block()
    assert block is not None
    block.insert_ops_before(new, op)
    layers[-1].attributes.update(op.attributes)  # the ONNX nodes
    for layer in layers:
        layer.attributes[EXTENDED_ATTR] = builtin.StringAttr(name)
    op.results[0].replace_all_uses_with(layers[-1].results[0])
    block.erase_op(op)
    return layers


def extended_matmuls(fn: func.FuncOp) -> list[mrvl.MatMulOp]:
    """The MatMuls of `fn` the rewrite applies to: those without the attention epilogue
    (in a LayerNorm sub-graph), in program order."""
    if not applies(fn):
        return []
    return [op for op in fn.body.block.ops
            if isinstance(op, mrvl.MatMulOp) and op.softmax_scale is None]


def extended_fcs(fn: func.FuncOp) -> list[mrvl.FCOp]:
    """The FCs of `fn` the rewrite applies to (a LayerNorm sub-graph's FCs with constant
    weights), in program order."""
    if not applies(fn):
        return []
    return [op for op in fn.body.block.ops
            if isinstance(op, mrvl.FCOp) and isinstance(op.weight.owner, ConstantOp)]


MAX_STACKED_K = 512
"""The targeted mode stacks an FC's weights only when its input has at most this many
features: the stacked input [rows, 2K] of ViT-tiny's fc2 (K 768) no longer stays in OCM
and its FC took 3x the cycles (46 k -> 142 k at 8 tiles, plus a 27 k copy)."""

MODES = ("storage", "targeted", "extended", "auto")
"""The pass's modes (the fp16 precision options of compile_function)."""


def reads_one_token(fn: func.FuncOp) -> bool:
    """Does `fn` read one token's row of a sequence (a one-row Slice on a non-last axis,
    such as a ViT's class token before its classifier head)?"""
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.SliceOp):
            continue
        axis, shape = op.axis.value.data, mrvl.tensor_shape(op.input)
        if len(shape) >= 2 and axis != len(shape) - 1 and shape[axis] > 1 \
                and mrvl.tensor_shape(op.output)[axis] == 1:
            return True
    return False


def targeted_fcs(fn: func.FuncOp) -> list[mrvl.FCOp]:
    """The FCs of `fn` the targeted mode stacks (`stack_fc` with the weights' low half):
    those of `extended_fcs` with at most MAX_STACKED_K input features and no NCHW weight
    transform."""
    return [op for op in extended_fcs(fn)
            if op.weights_need_transform is None
            and mrvl.tensor_shape(op.input)[-1] <= MAX_STACKED_K]


@dataclass(frozen=True)
class MrvlExtendedPrecisionPass(ModulePass):
    """Split or stack the FCs (and, in "extended" mode, the epilogue-free MatMuls) of the
    fp16 transformer sub-graphs (module docstring). `mode`:

    - "extended": every FC as three GEMM passes, every such MatMul as two or three;
    - "targeted": every FC of `targeted_fcs` as one FC over [x, x] and [Wh, Wl]
      (`stack_fc`: the weights' low half, no split of x);
    - "auto" (the default of fp16 builds): "targeted" in sub-graphs that read one token's
      row (`reads_one_token`: a classifier on a class token), where the error of the whole
      encoder reaches the outputs through that row and the head; "storage" elsewhere;
    - "storage": nothing.

    `enabled=False` changes nothing either. Every other function and layer is unchanged."""

    name = "mrvl-extended-precision"

    enabled: bool = True
    mode: str = "extended"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CompileError(f"mrvl-extended-precision: expected mode one of "
                               f"{', '.join(MODES)}, got {self.mode!r}")

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        if not self.enabled or self.mode == "storage":
            return
        for fn in subgraph_functions(op, "accelerator"):
            mode = self.mode
            if mode == "auto":
                mode = "targeted" if reads_one_token(fn) else "storage"
            if mode == "targeted":
                stacks: dict[tuple, SSAValue] = {}
                for fc in targeted_fcs(fn):
                    stack_fc(fc, stacks)
            elif mode == "extended":
                for fc in extended_fcs(fn):
                    extend_fc(fc)
                for matmul in extended_matmuls(fn):
                    extend_matmul(matmul)
