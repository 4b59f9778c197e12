"""convert-graph-to-mrvl: pattern-table fusion of legal graph ops into mrvl layers.

Input invariant: `@main` holds graph ops with NHWC data and OHWI kernels where the
accelerator may take them (run graph-layout-nhwc and the cleanup passes first); weights are
`graph.constant`s.

Output invariant: every chain of the pattern table (docs/mrvl-json.md) whose ops are legal
(`mrvl_legality.is_legal`) is one mrvl layer op, in the place of the chain's last op:

- [pad 0] conv2d [bias_add | add const] [batch_norm] [relu | clip | sigmoid | hard_sigmoid]
  -> mrvl.conv2d (bias, batch-norm and hard_sigmoid's alpha / beta folded into new weight and
  bias constants; hard_sigmoid becomes a clip to [0, 1]);
- [layout_transform NHWC->NCHW + reshape | flatten] dense | gemm | matmul(const)
  [bias_add | add const] [relu | clip | sigmoid | hard_sigmoid] -> mrvl.fc
  (`weights_need_transform` when the NHWC->NCHW transform was absorbed; weights become [O, K]);
- mul [activation] and div by a constant [activation] -> mrvl.mul (the reciprocal of the
  divisor as its constant); div by a tensor [activation] -> mrvl.div; a standalone relu /
  clip / sigmoid / tanh / leaky_relu -> mrvl.activation; a standalone hard_sigmoid ->
  mrvl.mul (alpha) + mrvl.sum (beta, clip to [0, 1]); hard_swish -> those two + mrvl.mul
  with its input;
- matmul(x, constant W) on a [..., K] x -> reshape, mrvl.fc over the rows, reshape (the
  Add bias and a GELU fused into the FC); matmul of two activations -> mrvl.matmul with
  single-use transposes of its operands folded in (a_perm / b_perm); softmax on the last
  axis -> mrvl.softmax; ONNX LayerNormalization or the decomposed ReduceMean / Sub / Pow /
  ReduceMean / Add / Sqrt / Div [/ Mul] [/ Add] chain -> mrvl.layernorm; GELU (erf form
  and tanh form, by pattern) -> the FC's activation or a standalone mrvl.activation;
- a standalone per-channel affine [activation] (batch_norm without a conv before it, or mul +
  add by per-channel constants) -> mrvl.conv2d, depthwise 1x1 (weight = scale, bias = shift);
- sub(x, const) [activation] -> mrvl.sum with -const; sub(a, b) -> mrvl.mul(b, -1) + mrvl.sum;
- [layout_transform NHWC->NCHW] ConvTranspose (2-D, any groups / dilations / output size
  whose output phases all have kernel taps)
  [layout_transform NCHW->NHWC [bias] [batch_norm] [activation]] -> one mrvl.conv2d per
  output phase + mrvl.concat / reshape / transpose interleaving them (+ mrvl.slice crops
  when the phases differ in size);
- InstanceNormalization of [N, C, L] / [N, C, H, W] -> mrvl.layernorm of the [N, C, L]
  rows (gamma 1, beta 0) [+ mrvl.mul / mrvl.sum by the scale / bias]; GroupNormalization
  [layout_transform NCHW->NHWC [activation]] -> reshape, mrvl.layernorm of the
  [N, G, C/G*H*W] rows, reshape, layout_transform and a depthwise 1x1 mrvl.conv2d (the
  per-channel scale / bias, activation fused); ReduceMean over the last axes -> reshape,
  mrvl.fc with the weight 1/K, reshape;
- [layout_transform NHWC->NCHW] resize of H, W [layout_transform NCHW->NHWC] -> copies
  (nearest, integer factors) or per-axis mrvl.fc with the interpolation matrix;
- split on any axis -> one mrvl.slice per output;
- [pad] max_pool2d / avg_pool2d, global pools, add [activation], concat on any axis,
  reshape / flatten (-> batch_flatten when it is [N, rest]), squeeze, 4-D layout_transform
  (NCHW->NHWC at the inputs, NHWC->NCHW at the outputs), transpose -> the matching mrvl op.

Layers are named `tvmgen_mrvl_main_<k>` in program order and carry `onnx_nodes` (the ONNX
nodes fused into them). Every graph op left (constants aside) gets the discardable attribute
`mrvl.cpu_reason` saying why it stays on the CPU. Values are unchanged (up to float
reassociation of the folded constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, FloatAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from mrvl.dialects import graph, mrvl
from mrvl.lowering.mrvl_legality import (
    check_common,
    conv_transpose_phases,
    gather_slice,
    is_constant,
    is_legal,
    onnx_ints,
    reduce_mean_axes,
    resize_matrix,
    resize_replication,
)

CPU_REASON_ATTR = "mrvl.cpu_reason"
ONNX_NODES_ATTR = "onnx_nodes"
UNNAMED = "unnamed"
F32_MAX = float(np.finfo(np.float32).max)


def const_array(value: SSAValue) -> np.ndarray:
    owner = value.owner
    assert isinstance(owner, graph.ConstantOp)
    return owner.to_numpy()


def sole_user(value: SSAValue) -> Operation | None:
    """The only operation using `value` once, or None."""
    uses = list(value.uses)
    if len(uses) != 1:
        return None
    return uses[0].operation


def _shape(value: SSAValue) -> tuple[int, ...]:
    return mrvl.tensor_shape(value)


@dataclass
class Fusion:
    """What a chain of graph ops fuses into: the ops, extra bias, activation."""

    ops: list[Operation] = field(default_factory=list)
    bias: np.ndarray | None = None
    bn: tuple[np.ndarray, np.ndarray] | None = None
    activation: str = "none"
    clip: tuple[float, float] | None = None
    affine: tuple[float, float] | None = None
    """(alpha, beta) of an absorbed hard_sigmoid: the layer computes alpha * y + beta
    (folded into its weights and bias) before its clip to [0, 1]."""

    @property
    def result(self) -> SSAValue:
        return self.ops[-1].results[0]

    def onnx_nodes(self) -> ArrayAttr:
        names = []
        for op in self.ops:
            name = op.attributes.get("onnx_node")
            if isinstance(name, StringAttr) and name.data not in names:
                names.append(name.data)
        return ArrayAttr([StringAttr(n) for n in names])


def _const_bias(op: Operation, value: SSAValue, channels: int) -> np.ndarray | None:
    """The per-channel bias that `op` adds to `value`, or None if it is not one."""
    if isinstance(op, graph.BiasAddOp):
        rank = len(_shape(value))
        if op.axis.value.data != rank - 1 or not is_constant(op.bias):
            return None
        return const_array(op.bias).astype(np.float64)
    if not isinstance(op, graph.AddOp):
        return None
    other = op.rhs if op.lhs is value else op.lhs
    if not is_constant(other) or _shape(op.result) != _shape(value):
        return None
    shape = _shape(other)
    if len(shape) > len(_shape(value)) or int(np.prod(shape)) != channels:
        return None
    if shape and shape[-1] != channels:
        return None
    return const_array(other).astype(np.float64).reshape(channels)


def _activation(op: Operation) -> tuple[str, tuple[float, float] | None] | None:
    if isinstance(op, graph.ReluOp):
        return "relu", None
    if isinstance(op, graph.SigmoidOp):
        return "sigmoid", None
    if isinstance(op, graph.ClipOp):
        lo = -F32_MAX if op.min is None else op.min.value.data
        hi = F32_MAX if op.max is None else op.max.value.data
        if lo > hi:  # ONNX gives max everywhere; the ISA's clip would give min
            return None
        if lo == 0.0 and hi == F32_MAX:
            return "relu", None
        return "clip", (lo, hi)
    return None


def _silu_tail(value: SSAValue) -> list[Operation] | None:
    """[sigmoid, mul] when `value`'s only uses are y = sigmoid(value) and mul(value, y) (SiLU
    as torch exports it), else None."""
    users = {use.operation for use in value.uses}
    if len(users) != 2 or len(list(value.uses)) != 2:
        return None
    gate = next((u for u in users if isinstance(u, graph.SigmoidOp)), None)
    if gate is None or sole_user(gate.result) is None:
        return None
    mul = sole_user(gate.result)
    if not isinstance(mul, graph.MulOp) or mul not in users:
        return None
    if {mul.lhs, mul.rhs} != {value, gate.result}:
        return None
    if not (is_legal_dtype(gate) and is_legal_dtype(mul)):
        return None
    return [gate, mul]


def _absorb_tail(fusion: Fusion, channels: int, *, bias: bool, bn: bool,
                 affine: bool = False) -> None:
    """Extend `fusion` with [bias] [batch_norm] [activation] single-use successors
    (hard_sigmoid only with `affine`: the caller folds `fusion.affine` into its weights)."""
    user = sole_user(fusion.result)
    if bias and user is not None:
        extra = _const_bias(user, fusion.result, channels)
        if extra is not None and is_legal_dtype(user):
            fusion.bias = extra
            fusion.ops.append(user)
            user = sole_user(fusion.result)
    if bn and isinstance(user, graph.BatchNormOp) and user.layout.data == "NHWC":
        params = [user.scale, user.bias, user.mean, user.var]
        if all(is_constant(p) for p in params) and is_legal_dtype(user):
            s, b, m, v = (const_array(p).astype(np.float64) for p in params)
            factor = s / np.sqrt(v + user.epsilon.value.data)
            fusion.bn = (factor, b - m * factor)
            fusion.ops.append(user)
            user = sole_user(fusion.result)
    silu = _silu_tail(fusion.result)
    if silu is not None:
        fusion.activation, fusion.clip = "silu", None
        fusion.ops += silu
        return
    if user is None:
        return
    if affine and isinstance(user, graph.HardSigmoidOp) and is_legal_dtype(user):
        # hard_sigmoid(y) = clip(alpha * y + beta, 0, 1): a clip after folding alpha, beta
        fusion.activation, fusion.clip = "clip", (0.0, 1.0)
        fusion.affine = (user.alpha.value.data, user.beta.value.data)
        fusion.ops.append(user)
        return
    act = _activation(user)
    if act is not None and is_legal_dtype(user):
        fusion.activation, fusion.clip = act
        fusion.ops.append(user)


def is_legal_dtype(op: Operation) -> bool:
    """The common checks of the legality predicates (f32, batch) for a fused op."""
    return check_common(op)[0]


def _new_const(arr: np.ndarray, ops: list[Operation]) -> SSAValue:
    const = graph.ConstantOp.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    ops.append(const)
    return const.results[0]


def _finish(rewriter: PatternRewriter, fusion: Fusion, new_ops: list[Operation]) -> None:
    """Replace the chain's last op by `new_ops` and erase the rest of the chain."""
    layer = new_ops[-1]
    names = fusion.onnx_nodes()
    if names.data:
        layer.attributes[ONNX_NODES_ATTR] = names
    rewriter.replace(fusion.ops[-1], new_ops, [layer.results[0]])
    for op in reversed(fusion.ops[:-1]):
        rewriter.erase(op)


def _zero_hw_pad(op: Operation | None, value: float = 0.0) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a single-use constant pad of H and W of NHWC."""
    if not isinstance(op, graph.PadOp) or sole_user(op.result) is None:
        return None
    if op.mode.data != "constant" or op.value.value.data != value or not is_legal_dtype(op):
        return None
    p = graph.ints(op.pads)
    if len(p) != 8 or any(p[i] != 0 for i in (0, 3, 4, 7)) or min(p) < 0:
        return None
    return (p[1], p[2], p[5], p[6])


class ConvPattern(RewritePattern):
    """[pad 0] conv2d [bias] [batch_norm] [activation] -> mrvl.conv2d."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.Conv2DOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        x = op.input
        pads = list(graph.ints(op.pads))
        extra = _zero_hw_pad(x.owner) if isinstance(x.owner, Operation) else None
        if extra is not None:
            pad_op = x.owner
            assert isinstance(pad_op, graph.PadOp)
            pads = [a + b for a, b in zip(pads, extra)]
            fusion.ops.insert(0, pad_op)
            x = pad_op.input
        out_channels = _shape(op.weight)[0]
        _absorb_tail(fusion, out_channels, bias=True, bn=True, affine=True)
        new_ops: list[Operation] = []
        weight, bias = op.weight, op.bias
        if fusion.bias is not None or fusion.bn is not None or fusion.affine is not None:
            b = np.zeros(out_channels) if bias is None else const_array(bias).astype(np.float64)
            if fusion.bias is not None:
                b = b + fusion.bias
            if fusion.bn is not None or fusion.affine is not None:
                w = const_array(weight).astype(np.float64)
                if fusion.bn is not None:
                    factor, shift = fusion.bn
                    w = w * factor[:, None, None, None]
                    b = b * factor + shift
                if fusion.affine is not None:
                    alpha, beta = fusion.affine
                    w = w * alpha
                    b = b * alpha + beta
                weight = _new_const(w, new_ops)
            bias = _new_const(b, new_ops)
        layer = mrvl.Conv2DOp(
            x,
            weight,
            bias,
            layer_name=UNNAMED,
            strides=graph.ints(op.strides),
            pads=pads,
            dilations=graph.ints(op.dilations),
            groups=op.groups.value.data,
            activation=fusion.activation,
            clip=fusion.clip,
        )
        _finish(rewriter, fusion, [*new_ops, layer])


def _fc_weight(op: Operation) -> tuple[np.ndarray, bool, np.ndarray | None]:
    """([O, K] weight, whether it is a new array, gemm's bias or None) of a dense-like op."""
    if isinstance(op, graph.DenseOp):
        return const_array(op.weight), False, None
    if isinstance(op, graph.MatMulOp):
        return const_array(op.rhs).T, True, None
    assert isinstance(op, graph.GemmOp)
    b = const_array(op.b).astype(np.float64)
    w = b if op.trans_b.value.data else b.T
    alpha = op.alpha.value.data
    n = _shape(op.result)[1]
    c = None
    if op.c is not None:
        c = np.broadcast_to(const_array(op.c).astype(np.float64).reshape(-1), (n,))
        c = c * op.beta.value.data
    return w * alpha, True, c


class FCPattern(RewritePattern):
    """[layout_transform NHWC->NCHW + flatten] dense-like [bias] [activation] -> mrvl.fc."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, graph.DenseOp | graph.GemmOp | graph.MatMulOp):
            return
        if isinstance(op, graph.MatMulOp) and not is_constant(op.rhs):
            return  # MatMulPattern
        if not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        x = op.operands[0]
        need_transform = False
        flat = x.owner
        if isinstance(flat, graph.ReshapeOp | graph.FlattenOp) and sole_user(x) is op:
            lt = flat.input.owner
            if (
                isinstance(lt, graph.LayoutTransformOp)
                and (lt.src_layout.data, lt.dst_layout.data) == ("NHWC", "NCHW")
                and sole_user(flat.input) is flat
                and is_legal_dtype(lt)
                and _shape(x)[0] == _shape(lt.input)[0]
            ):
                fusion.ops[:0] = [lt, flat]
                x = lt.input
                need_transform = True
        w, new_w, gemm_bias = _fc_weight(op)
        out = w.shape[0]
        _absorb_tail(fusion, out, bias=True, bn=False, affine=True)
        new_ops: list[Operation] = []
        bias_arr = gemm_bias
        if fusion.bias is not None:
            bias_arr = fusion.bias if bias_arr is None else bias_arr + fusion.bias
        if fusion.affine is not None:
            alpha, beta = fusion.affine
            w, new_w = w.astype(np.float64) * alpha, True
            bias_arr = (np.zeros(out) if bias_arr is None else bias_arr) * alpha + beta
        weight = _new_const(w, new_ops) if new_w else op.operands[1]
        bias = None if bias_arr is None else _new_const(bias_arr, new_ops)
        rows_shape = _shape(x)
        if isinstance(op, graph.MatMulOp) and len(rows_shape) > 2:
            # x @ W on [..., K]: an FC over the rows of x, between two reshapes (aliases)
            flat = mrvl.ReshapeOp(
                x, TensorType(f32, [int(np.prod(rows_shape[:-1])), rows_shape[-1]]),
                layer_name=UNNAMED)
            new_ops.append(flat)
            x = flat.results[0]
        layer = mrvl.FCOp(
            x,
            weight,
            bias,
            layer_name=UNNAMED,
            activation=fusion.activation,
            clip=fusion.clip,
            weights_need_transform=need_transform,
        )
        new_ops.append(layer)
        if isinstance(op, graph.MatMulOp) and len(rows_shape) > 2:
            names = fusion.onnx_nodes()
            if names.data:
                layer.attributes[ONNX_NODES_ATTR] = names
            new_ops.append(mrvl.ReshapeOp(layer, fusion.result.type, layer_name=UNNAMED))
        _finish(rewriter, fusion, new_ops)


def _per_channel_const(op: Operation, value: SSAValue) -> np.ndarray | None:
    """The [C] float64 factors of a constant operand of a mul / add `op` of NHWC `value`
    that broadcasts per channel only (a scalar, [C], [1, 1, 1, C], ...), else None."""
    if not isinstance(op, graph.MulOp | graph.AddOp) or not is_legal_dtype(op):
        return None
    other = op.rhs if op.lhs is value else op.lhs
    if other is value or not is_constant(other) or _shape(op.result) != _shape(value):
        return None
    channels = _shape(value)[-1]
    shape = _shape(other)
    if len(shape) > len(_shape(value)) or any(d != 1 for d in shape[:-1]):
        return None
    if shape and shape[-1] not in (1, channels):
        return None
    arr = const_array(other).astype(np.float64).reshape(-1)
    return np.broadcast_to(arr, (channels,)).copy()


def _affine_chain(op: Operation) -> Fusion | None:
    """A standalone per-channel affine of 4-D NHWC data: batch_norm, or mul by a per-channel
    constant followed by add of one (a scale-shift), with (scale, shift) in `fusion.bn`."""
    if isinstance(op, graph.BatchNormOp):
        if op.layout.data != "NHWC" or len(_shape(op.input)) != 4 or not is_legal_dtype(op):
            return None
        params = [op.scale, op.bias, op.mean, op.var]
        if not all(is_constant(p) for p in params):
            return None
        s, b, m, v = (const_array(p).astype(np.float64) for p in params)
        factor = s / np.sqrt(v + op.epsilon.value.data)
        return Fusion(ops=[op], bn=(factor, b - m * factor))
    if not isinstance(op, graph.MulOp):
        return None
    data = op.rhs if is_constant(op.lhs) else op.lhs
    if is_constant(data) or len(_shape(data)) != 4:
        return None
    scale = _per_channel_const(op, data)
    user = sole_user(op.result)
    if scale is None or user is None:
        return None
    shift = _per_channel_const(user, op.result)
    if shift is None:
        return None
    return Fusion(ops=[op, user], bn=(scale, shift))


class AffinePattern(RewritePattern):
    """A standalone per-channel affine [activation] (batch_norm without a conv before it, or
    mul + add by per-channel constants) -> mrvl.conv2d, depthwise with a 1x1 kernel: weight
    [C, 1, 1, 1] = the scale, bias = the shift, the activation fused (ACT-free)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        fusion = _affine_chain(op)
        if fusion is None or fusion.bn is None:
            return
        data = fusion.ops[0].operands[0]
        if isinstance(op, graph.MulOp) and is_constant(op.lhs):
            data = op.rhs
        channels = _shape(data)[-1]
        _absorb_tail(fusion, channels, bias=False, bn=False)
        scale, shift = fusion.bn
        new_ops: list[Operation] = []
        weight = _new_const(scale.reshape(channels, 1, 1, 1), new_ops)
        bias = _new_const(shift, new_ops)
        layer = mrvl.Conv2DOp(
            data, weight, bias, layer_name=UNNAMED, groups=channels,
            activation=fusion.activation, clip=fusion.clip,
        )
        _finish(rewriter, fusion, [*new_ops, layer])


def _nchw_input(op: Operation, fusion: Fusion, new_ops: list[Operation]) -> SSAValue:
    """`op`'s NCHW data input as NHWC: the input of a single-use NHWC->NCHW transform before
    it (absorbed into `fusion`), else a new mrvl.layout_transform."""
    x = op.operands[0]
    lt = x.owner
    if (
        isinstance(lt, graph.LayoutTransformOp)
        and (lt.src_layout.data, lt.dst_layout.data) == ("NHWC", "NCHW")
        and sole_user(x) is op
    ):
        fusion.ops.insert(0, lt)
        return lt.input
    transform = mrvl.LayoutTransformOp(x, "NCHW", "NHWC", layer_name=UNNAMED)
    new_ops.append(transform)
    return transform.results[0]


def _nhwc_output(op: Operation, fusion: Fusion) -> bool:
    """Absorb a single-use NCHW->NHWC transform after `op` into `fusion`; False if none."""
    user = sole_user(op.results[0])
    if (
        isinstance(user, graph.LayoutTransformOp)
        and (user.src_layout.data, user.dst_layout.data) == ("NCHW", "NHWC")
    ):
        fusion.ops.append(user)
        return True
    return False


def _takes_nchw(op: Operation | None) -> bool:
    """An NCHW op that a pattern below converts with its surrounding layout transforms."""
    if isinstance(op, graph.ResizeOp):
        return is_legal(op)[0]
    return (
        isinstance(op, graph.OnnxOp)
        and op.op_type.data == "ConvTranspose"
        and is_legal(op)[0]
    )


def _interleave(phases: list[SSAValue], strides: tuple[int, int], out_shape: list[int],
                new_ops: list[Operation]) -> SSAValue:
    """Interleave the NHWC phase results P[a][b] ([N, H, W, O] each, a-major) into
    [N, s_h * H, s_w * W, O]: concat on channels, then [N*H, W, s_h, s_w*O] -> transpose
    (0, 2, 1, 3) -> reshape (copy layers only); then crop to `out_shape` (mrvl.slice of H
    and W) when the phases computed more rows or columns than the output has."""
    n, h, w, o = _shape(phases[0])
    sh, sw = strides
    value = phases[0]
    if len(phases) > 1:
        concat = mrvl.ConcatOp(phases, layer_name=UNNAMED, axis=3)
        new_ops.append(concat)
        value = concat.results[0]
    if sh > 1:
        rows = mrvl.ReshapeOp(value, TensorType(f32, [n * h, w, sh, sw * o]), layer_name=UNNAMED)
        swap = mrvl.TransposeOp(rows, [0, 2, 1, 3], layer_name=UNNAMED)
        new_ops += [rows, swap]
        value = swap.results[0]
    full = [n, sh * h, sw * w, o]
    result = mrvl.ReshapeOp(value, TensorType(f32, full), layer_name=UNNAMED)
    new_ops.append(result)
    value = result.results[0]
    for axis in (1, 2):
        if full[axis] != out_shape[axis]:
            crop = mrvl.SliceOp(value, axis=axis, start=0, size=out_shape[axis],
                                layer_name=UNNAMED)
            new_ops.append(crop)
            value = crop.results[0]
    return value


def _phase_kernel(weight: np.ndarray, groups: int, rows: tuple[int, ...],
                  cols: tuple[int, ...]) -> np.ndarray:
    """The OHWI kernel of one phase: ConvTranspose weight [C, O/g, kh, kw] -> conv weight
    [O, len(rows), len(cols), C/g] with the taps `rows` x `cols` (already in convolution
    order), group g's output channels reading group g's input channels."""
    channels, per_group_out = weight.shape[:2]
    per_group_in = channels // groups
    taps = weight[:, :, list(rows)][:, :, :, list(cols)]  # [C, O/g, T_h, T_w]
    grouped = taps.reshape(groups, per_group_in, per_group_out, len(rows), len(cols))
    return grouped.transpose(0, 2, 3, 4, 1).reshape(
        groups * per_group_out, len(rows), len(cols), per_group_in)


def _cropped_input(x: SSAValue, starts: tuple[int, int], new_ops: list[Operation],
                   made: dict[tuple[int, int], SSAValue]) -> SSAValue:
    """NHWC `x` from row / column `starts` on (mrvl.slice of H and W; `x` itself at 0, 0),
    each crop made once (`made`)."""
    if starts in made:
        return made[starts]
    value = x
    for axis, start in zip((1, 2), starts, strict=True):
        if start:
            size = _shape(value)[axis] - start
            crop = mrvl.SliceOp(value, axis=axis, start=start, size=size, layer_name=UNNAMED)
            new_ops.append(crop)
            value = crop.results[0]
    made[starts] = value
    return value


class ConvTransposePattern(RewritePattern):
    """[layout_transform NHWC->NCHW] ConvTranspose (graph.onnx, 2-D, any groups, strides,
    dilations, pads and output_padding whose phases all have kernel taps)
    [layout_transform NCHW->NHWC [bias] [batch_norm] [activation]] -> one (grouped)
    mrvl.conv2d per output phase (y = s*t + a: a conv of the input with the taps of the
    kernel that reach phase a, flipped; see mrvl_legality.TransposePhase), interleaved by
    mrvl.concat + reshape + transpose and cropped by mrvl.slice when the phases differ in
    size; the activation, bias and batch-norm go into every phase's conv."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        if op.op_type.data != "ConvTranspose" or not is_legal(op)[0]:
            return
        phases, _ = conv_transpose_phases(op)
        fusion = Fusion(ops=[op])
        new_ops: list[Operation] = []
        x = _nchw_input(op, fusion, new_ops)
        weight = const_array(op.inputs[1]).astype(np.float64)  # [C, O/g, kh, kw]
        groups = onnx_ints(op, "group", [1])[0]
        channels_out = weight.shape[1] * groups
        bias = (np.zeros(channels_out) if len(op.inputs) < 3
                else const_array(op.inputs[2]).astype(np.float64))
        nhwc = _nhwc_output(op, fusion)
        if nhwc:
            _absorb_tail(fusion, channels_out, bias=True, bn=True)
        if fusion.bias is not None:
            bias = bias + fusion.bias
        if fusion.bn is not None:
            factor, shift = fusion.bn
            # row c of the weight feeds output channels g*O/g.. of its group g = c // (C/g)
            per_row = np.repeat(factor.reshape(groups, -1), weight.shape[0] // groups, axis=0)
            weight = weight * per_row[:, :, None, None]
            bias = bias * factor + shift
        strides = (len(phases[0]), len(phases[1]))
        outputs = []
        crops: dict[tuple[int, int], SSAValue] = {}
        for row in phases[0]:
            for col in phases[1]:
                kernel = _phase_kernel(weight, groups, row.taps, col.taps)
                conv = mrvl.Conv2DOp(
                    _cropped_input(x, (row.start, col.start), new_ops, crops),
                    _new_const(kernel, new_ops), _new_const(bias, new_ops),
                    layer_name=UNNAMED, pads=(row.before, col.before, row.after, col.after),
                    dilations=(row.dilation, col.dilation), groups=groups,
                    activation=fusion.activation, clip=fusion.clip,
                )
                new_ops.append(conv)
                outputs.append(conv.results[0])
        n, _, oh, ow = _shape(op.results[0])
        result = _interleave(outputs, strides, [n, oh, ow, channels_out], new_ops)
        if not nhwc:
            back = mrvl.LayoutTransformOp(result, "NHWC", "NCHW", layer_name=UNNAMED)
            new_ops.append(back)
        names = fusion.onnx_nodes()
        for layer in new_ops[:-1]:
            if isinstance(layer, mrvl.MrvlLayerOp) and names.data:
                layer.attributes[ONNX_NODES_ATTR] = names
        _finish(rewriter, fusion, new_ops)


def _replicate(x: SSAValue, factors: tuple[int, int], new_ops: list[Operation]) -> SSAValue:
    """Nearest up-sampling of NHWC `x` by integer factors: W by concatenating s_w copies on
    the channel axis, H by concatenating s_h copies of [N*H, W*s_w*C] rows (copies only)."""
    n, h, w, c = _shape(x)
    sh, sw = factors
    value = x
    if sw > 1:
        wide = mrvl.ConcatOp([value] * sw, layer_name=UNNAMED, axis=3)
        new_ops.append(wide)
        value = wide.results[0]
    if sh > 1:
        rows = mrvl.ReshapeOp(value, TensorType(f32, [n * h, w * sw * c]), layer_name=UNNAMED)
        tall = mrvl.ConcatOp([rows.results[0]] * sh, layer_name=UNNAMED, axis=1)
        new_ops += [rows, tall]
        value = tall.results[0]
    result = mrvl.ReshapeOp(value, TensorType(f32, [n, sh * h, sw * w, c]), layer_name=UNNAMED)
    new_ops.append(result)
    return result.results[0]


def _interpolate(x: SSAValue, axis: int, matrix: np.ndarray, new_ops: list[Operation]
                 ) -> SSAValue:
    """Resample 4-D `x` along `axis` with the [out, in] `matrix`: transpose `axis` last,
    flatten to [rows, in], mrvl.fc with weight `matrix`, and back."""
    shape = list(_shape(x))
    perm = [d for d in range(4) if d != axis] + [axis]
    value = x
    if axis != 3:
        moved = mrvl.TransposeOp(value, perm, layer_name=UNNAMED)
        new_ops.append(moved)
        value = moved.results[0]
    moved_shape = [shape[p] for p in perm]
    rows = int(np.prod(moved_shape[:3]))
    flat = mrvl.ReshapeOp(value, TensorType(f32, [rows, shape[axis]]), layer_name=UNNAMED)
    fc = mrvl.FCOp(flat, _new_const(matrix, new_ops), None, layer_name=UNNAMED)
    out_shape = [*moved_shape[:3], matrix.shape[0]]
    back = mrvl.ReshapeOp(fc, TensorType(f32, out_shape), layer_name=UNNAMED)
    new_ops += [flat, fc, back]
    value = back.results[0]
    if axis != 3:
        inverse = [perm.index(d) for d in range(4)]
        restored = mrvl.TransposeOp(value, inverse, layer_name=UNNAMED)
        new_ops.append(restored)
        value = restored.results[0]
    return value


class ResizePattern(RewritePattern):
    """[layout_transform NHWC->NCHW] resize [layout_transform NCHW->NHWC] -> nearest with
    integer factors: copies (mrvl.concat of repeated inputs + reshape); anything else
    (linear, fractional nearest): per axis, mrvl.fc with the interpolation matrix over the
    axis moved last by mrvl.transpose (exact for every coordinate mode the reference takes)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ResizeOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        new_ops: list[Operation] = []
        x = _nchw_input(op, fusion, new_ops)
        factors = resize_replication(op)
        if factors is not None:
            value = _replicate(x, factors, new_ops)
        else:
            value = x
            for axis, nhwc_axis in ((2, 1), (3, 2)):
                matrix = resize_matrix(op, axis)
                if matrix is not None:
                    value = _interpolate(value, nhwc_axis, matrix, new_ops)
        if not _nhwc_output(op, fusion):
            new_ops.append(mrvl.LayoutTransformOp(value, "NHWC", "NCHW", layer_name=UNNAMED))
        names = fusion.onnx_nodes()
        for layer in new_ops:
            if isinstance(layer, mrvl.MrvlLayerOp) and names.data:
                layer.attributes[ONNX_NODES_ATTR] = names
        _finish(rewriter, fusion, new_ops)


class PoolPattern(RewritePattern):
    """[pad] max_pool2d / avg_pool2d and global pools -> the mrvl pool layers."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, graph.GlobalAvgPool2DOp | graph.GlobalMaxPool2DOp):
            if not is_legal(op)[0]:
                return
            cls = (
                mrvl.GlobalAvgpool2DOp
                if isinstance(op, graph.GlobalAvgPool2DOp)
                else mrvl.GlobalMaxpool2DOp
            )
            _finish(rewriter, Fusion(ops=[op]), [cls(op.input, layer_name=UNNAMED)])
            return
        if not isinstance(op, graph.MaxPool2DOp | graph.AvgPool2DOp) or not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        x = op.input
        pads = list(graph.ints(op.pads))
        count_include_pad = 0
        extra = None
        if isinstance(op, graph.AvgPool2DOp):
            count_include_pad = op.count_include_pad.value.data
            if count_include_pad or not any(pads):
                extra = _zero_hw_pad(x.owner) if isinstance(x.owner, Operation) else None
                if extra is not None:
                    count_include_pad = 1
        else:
            extra = _zero_hw_pad(x.owner, float("-inf")) if isinstance(x.owner, Operation) else None
        if extra is not None:
            pad_op = x.owner
            assert isinstance(pad_op, graph.PadOp)
            pads = [a + b for a, b in zip(pads, extra)]
            fusion.ops.insert(0, pad_op)
            x = pad_op.input
        kernel, strides = graph.ints(op.kernel_shape), graph.ints(op.strides)
        out_type = op.results[0].type
        if isinstance(op, graph.MaxPool2DOp):
            layer: mrvl.MrvlLayerOp = mrvl.Maxpool2DOp(
                x, layer_name=UNNAMED, kernel_shape=kernel, strides=strides, pads=pads,
                result_type=out_type,
            )
        else:
            layer = mrvl.Avgpool2DOp(
                x, layer_name=UNNAMED, kernel_shape=kernel, strides=strides, pads=pads,
                count_include_pad=count_include_pad, result_type=out_type,
            )
        _finish(rewriter, fusion, [layer])


class SumPattern(RewritePattern):
    """add(x, y) [activation] -> mrvl.sum."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.AddOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        _absorb_tail(fusion, 0, bias=False, bn=False)
        layer = mrvl.Sum2DOp(
            op.lhs, op.rhs, layer_name=UNNAMED, activation=fusion.activation, clip=fusion.clip
        )
        _finish(rewriter, fusion, [layer])


class MulPattern(RewritePattern):
    """mul(x, y) | div(x, const) [activation] -> mrvl.mul (a divisor becomes its
    reciprocal constant); div(x, y) by a non-constant y [activation] -> mrvl.div."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, graph.MulOp | graph.DivOp) or not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        _absorb_tail(fusion, 0, bias=False, bn=False)
        new_ops: list[Operation] = []
        rhs = op.rhs
        if isinstance(op, graph.DivOp) and not is_constant(op.rhs):
            layer = mrvl.Div2DOp(
                op.lhs, rhs, layer_name=UNNAMED, activation=fusion.activation, clip=fusion.clip
            )
            _finish(rewriter, fusion, [layer])
            return
        if isinstance(op, graph.DivOp):
            divisor = const_array(op.rhs).astype(np.float32)
            rhs = _new_const(np.float32(1.0) / divisor, new_ops)
        layer = mrvl.Mul2DOp(
            op.lhs, rhs, layer_name=UNNAMED, activation=fusion.activation, clip=fusion.clip
        )
        _finish(rewriter, fusion, [*new_ops, layer])


def _scalar(value: float, ops: list[Operation]) -> SSAValue:
    return _new_const(np.array([value], dtype=np.float32), ops)


class SubPattern(RewritePattern):
    """sub(x, c) [activation] -> mrvl.sum with the constant -c; sub(a, b) [activation] ->
    mrvl.mul(b, -1) + mrvl.sum(a, -b) (negation is exact, so a + (-b) rounds like a - b)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.SubOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        fusion = Fusion(ops=[op])
        _absorb_tail(fusion, 0, bias=False, bn=False)
        new_ops: list[Operation] = []
        if is_constant(op.rhs):
            negated = _new_const(-const_array(op.rhs).astype(np.float32), new_ops)
        else:
            negate = mrvl.Mul2DOp(op.rhs, _scalar(-1.0, new_ops), layer_name=UNNAMED)
            names = fusion.onnx_nodes()
            if names.data:
                negate.attributes[ONNX_NODES_ATTR] = names
            new_ops.append(negate)
            negated = negate.results[0]
        layer = mrvl.Sum2DOp(op.lhs, negated, layer_name=UNNAMED,
                             activation=fusion.activation, clip=fusion.clip)
        _finish(rewriter, fusion, [*new_ops, layer])


class ActivationPattern(RewritePattern):
    """A standalone relu / clip / sigmoid / tanh / leaky_relu -> mrvl.activation (the ACT
    instruction); hard_sigmoid(x) = clip(alpha * x + beta, 0, 1) -> mrvl.mul by alpha +
    mrvl.sum of beta with a clip to [0, 1]; hard_swish(x) = x * hard_sigmoid(x) (alpha 1/6,
    beta 1/2) -> those two layers + mrvl.mul with x. Activations that a conv2d, dense, add
    or mul can take were fused into it before (the walk visits producers first)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(
            op,
            graph.ReluOp
            | graph.ClipOp
            | graph.SigmoidOp
            | graph.TanhOp
            | graph.LeakyReluOp
            | graph.HardSigmoidOp
            | graph.HardSwishOp,
        ):
            return
        if not is_legal(op)[0]:
            return
        x = op.operands[0]
        new_ops: list[Operation] = []
        if isinstance(op, graph.HardSigmoidOp | graph.HardSwishOp):
            alpha, beta = 1.0 / 6.0, 0.5
            if isinstance(op, graph.HardSigmoidOp):
                alpha, beta = op.alpha.value.data, op.beta.value.data
            scaled = mrvl.Mul2DOp(x, _scalar(alpha, new_ops), layer_name=UNNAMED)
            new_ops.append(scaled)
            hard = mrvl.Sum2DOp(
                scaled, _scalar(beta, new_ops), layer_name=UNNAMED, activation="clip",
                clip=(0.0, 1.0),
            )
            new_ops.append(hard)
            if isinstance(op, graph.HardSwishOp):
                new_ops.append(mrvl.Mul2DOp(x, hard, layer_name=UNNAMED))
        elif isinstance(op, graph.TanhOp):
            new_ops.append(mrvl.ActivationOp(x, layer_name=UNNAMED, activation="tanh"))
        elif isinstance(op, graph.LeakyReluOp):
            new_ops.append(mrvl.ActivationOp(
                x, layer_name=UNNAMED, activation="leaky_relu", alpha=op.alpha.value.data
            ))
        else:
            act = _activation(op)
            assert act is not None
            new_ops.append(
                mrvl.ActivationOp(x, layer_name=UNNAMED, activation=act[0], clip=act[1])
            )
        fusion = Fusion(ops=[op])
        names = fusion.onnx_nodes()
        for layer in new_ops[:-1]:
            if isinstance(layer, mrvl.MrvlLayerOp) and names.data:
                layer.attributes[ONNX_NODES_ATTR] = names
        _finish(rewriter, fusion, new_ops)


BORDER_COPY = "copy feeding only CPU ops (kept on the CPU)"


def feeds_only_cpu(op: Operation) -> bool:
    """Every result of `op` is used, and only by graph ops the accelerator cannot take (or by
    concats / splits that themselves feed only such ops): a copy there gains nothing, so a
    non-channel concat or a split stays on the CPU."""
    users = [use.operation for result in op.results for use in result.uses]
    if not users:
        return False
    for user in users:
        if isinstance(user, graph.ConcatOp | graph.SplitOp):
            if not feeds_only_cpu(user):
                return False
        elif user.dialect_name() != "graph" or is_legal(user)[0]:
            return False
    return True


class ConcatPattern(RewritePattern):
    """concat on any axis -> mrvl.concat (not a non-channel concat feeding only CPU ops)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.ConcatOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        if op.axis.value.data != len(_shape(op.result)) - 1 and feeds_only_cpu(op):
            return
        layer = mrvl.ConcatOp(list(op.inputs), layer_name=UNNAMED, axis=op.axis.value.data)
        _finish(rewriter, Fusion(ops=[op]), [layer])


def _unfold_transpose(value: SSAValue) -> tuple[SSAValue, list[int] | None, Operation | None]:
    """(stored value, permutation, transpose op to erase) of a matmul operand: a transpose
    (graph or already converted) used only by the matmul is read through its permutation."""
    owner = value.owner
    if isinstance(owner, mrvl.TransposeOp | graph.TransposeOp) and sole_user(value) is not None:
        if isinstance(owner, graph.TransposeOp) and not is_legal_dtype(owner):
            return value, None, None
        return owner.operands[0], list(graph.ints(owner.perm)), owner
    return value, None, None


class MatMulPattern(RewritePattern):
    """matmul of two activations (after FCPattern took x @ constant) -> mrvl.matmul, with a
    single-use transpose of either operand folded into the operand's layout."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.MatMulOp, rewriter: PatternRewriter) -> None:
        if is_constant(op.rhs) or not is_legal(op)[0]:
            return
        a, a_perm, a_t = _unfold_transpose(op.lhs)
        b, b_perm, b_t = _unfold_transpose(op.rhs)
        if a_t is not None and a_t is b_t:
            a, a_perm, a_t = op.lhs, None, None
        layer = mrvl.MatMulOp(a, b, layer_name=UNNAMED, a_perm=a_perm, b_perm=b_perm)
        fusion = Fusion(ops=[op])
        for t in (a_t, b_t):
            if t is not None and isinstance(t, graph.TransposeOp):
                fusion.ops.insert(0, t)
        _finish(rewriter, fusion, [layer])
        for t in (a_t, b_t):
            if t is not None and isinstance(t, mrvl.TransposeOp):
                rewriter.erase(t)


FUSED_SOFTMAX_BYTES = 256 * 1024
"""Largest OCM (bytes) the fused score epilogue may need for one batch's B^T and a row of
A and of the scores, double-buffered: a quarter of the default OCM, so the lowering's
whole-row blocks fit next to the other buffers."""


def _attention_mask(op: graph.SoftmaxOp) -> tuple[SSAValue, SSAValue, Operation] | None:
    """(scores, mask, add) when the softmax's input is a single-use mrvl.sum of the scores
    and an additive mask activation broadcast to them (BERT's [B, 1, 1, S])."""
    add = op.input.owner
    if not isinstance(add, mrvl.Sum2DOp) or add.activation_str() != "none":
        return None
    if sole_user(op.input) is not op:
        return None
    for scores, mask in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        if is_constant(mask) or not isinstance(scores.owner, mrvl.MatMulOp | mrvl.Mul2DOp):
            continue
        out, shape = _shape(add.output), _shape(mask)
        if _shape(scores) == out and len(shape) == len(out) and all(
                m in (1, s) for m, s in zip(shape, out)):
            return scores, mask, add
    return None


def _score_epilogue(op: graph.SoftmaxOp
                    ) -> tuple[mrvl.MatMulOp, list[Operation], float, SSAValue | None] | None:
    """(matmul, layers to fold, scale, mask) when the softmax's input is a single-use
    mrvl.matmul, optionally through a single-use mrvl.mul by a scalar constant, then
    optionally through a single-use mrvl.sum with an additive mask."""
    value = op.input
    owner = value.owner
    scale = 1.0
    folded: list[Operation] = []
    mask = None
    consumer: Operation = op
    found_mask = _attention_mask(op)
    if found_mask is not None:
        value, mask, add = found_mask
        owner = value.owner
        folded.append(add)
        consumer = add
    if isinstance(owner, mrvl.Mul2DOp) and owner.activation_str() == "none":
        if sole_user(value) is not consumer:
            return None
        for data, other in ((owner.lhs, owner.rhs), (owner.rhs, owner.lhs)):
            factor = _scalar_const(other)
            if factor is not None and isinstance(data.owner, mrvl.MatMulOp):
                folded.insert(0, owner)
                scale, value, owner = factor, data, data.owner
                break
        else:
            return None
    if not isinstance(owner, mrvl.MatMulOp) or owner.softmax_scale is not None:
        return None
    if sole_user(value) is not (folded[0] if folded else op):
        return None
    sa, sb = owner.logical_shapes()
    k, n = sa[-1], sb[-1]
    if 4 * n * (k + 1) + 4 * k > FUSED_SOFTMAX_BYTES:
        return None
    return owner, folded, scale, mask


class SoftmaxPattern(RewritePattern):
    """softmax over the last axis -> mrvl.softmax; right after a matmul of activations
    (attention scores, optionally scaled by a constant) it becomes that matmul's epilogue
    (`softmax_scale`), so the scores never leave the OCM. A standalone softmax whose results
    feed only CPU ops (a detector's class scores going to TopK / NMS) stays on the CPU: at
    the border it saves no crossing, and fp16 scores would move the CPU's thresholds."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.SoftmaxOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0]:
            return
        found = _score_epilogue(op)
        if found is None:
            if feeds_only_cpu(op):
                return
            _finish(rewriter, Fusion(ops=[op]), [mrvl.SoftmaxOp(op.input, layer_name=UNNAMED)])
            return
        matmul, folded, scale, mask = found
        if mask is not None:
            # a new matmul with the mask operand, where the mask is defined (at the softmax)
            masked = mrvl.MatMulOp(
                matmul.a, matmul.b, layer_name=UNNAMED,
                a_perm=None if matmul.a_perm is None else graph.ints(matmul.a_perm),
                b_perm=None if matmul.b_perm is None else graph.ints(matmul.b_perm),
                softmax_scale=scale, mask=mask)
            for key in (ONNX_NODES_ATTR, "onnx_node"):
                if key in matmul.attributes:
                    masked.attributes[key] = matmul.attributes[key]
            rewriter.insert(masked, InsertPoint.before(op))
            folded.insert(0, matmul)
            matmul = masked
        matmul.properties["softmax_scale"] = FloatAttr(float(scale), f32)
        names = [n.data for n in matmul.attributes.get(ONNX_NODES_ATTR, ArrayAttr([])).data]  # type: ignore[union-attr]
        for layer in [*folded, op]:
            extra = layer.attributes.get(ONNX_NODES_ATTR)
            if isinstance(extra, ArrayAttr):
                names += [n.data for n in extra.data if n.data not in names]  # type: ignore[union-attr]
            single = layer.attributes.get("onnx_node")
            if isinstance(single, StringAttr) and single.data not in names:
                names.append(single.data)
        if names:
            matmul.attributes[ONNX_NODES_ATTR] = ArrayAttr([StringAttr(n) for n in names])
        rewriter.notify_op_modified(matmul)
        rewriter.replace_all_uses_with(op.results[0], matmul.output)
        rewriter.erase(op)
        for layer in reversed(folded):
            constants = [v.owner for v in layer.operands if is_constant(v)]
            rewriter.erase(layer)
            for const in constants:
                if isinstance(const, Operation) and not const.results[0].uses:
                    rewriter.erase(const)


def _onnx(op: Operation | None, op_type: str) -> bool:
    """A graph.onnx `op_type` with f32 data (ReduceMean's i64 axes operand aside)."""
    if not isinstance(op, graph.OnnxOp) or op.op_type.data != op_type:
        return False
    values = [*op.results, *(op.operands[:1] if op_type == "ReduceMean" else op.operands)]
    return all(isinstance(v.type, TensorType) and v.type.element_type == f32 for v in values)


def _scalar_const(value: SSAValue) -> float | None:
    """The value of a constant holding one element, else None."""
    if not is_constant(value):
        return None
    arr = const_array(value)
    return float(arr.reshape(-1)[0]) if arr.size == 1 else None


def _other(op: Operation, value: SSAValue) -> SSAValue | None:
    """The operand of a binary op that is not `value` (None unless exactly one is)."""
    lhs, rhs = op.operands[0], op.operands[1]
    if lhs is value and rhs is not value:
        return rhs
    if rhs is value and lhs is not value:
        return lhs
    return None


def _near(got: float | None, want: float, rel: float = 1e-4) -> bool:
    return got is not None and abs(got - want) <= rel * abs(want)


def _binary_user(value: SSAValue, cls: type, const: float | None = None,
                 partner: SSAValue | None = None) -> Operation | None:
    """The sole user of `value` if it is a `cls` op whose other operand is the scalar
    constant `const` (or the value `partner`)."""
    user = sole_user(value)
    if not isinstance(user, cls) or not is_legal_dtype(user):
        return None
    other = _other(user, value)
    if other is None:
        return None
    if const is not None and not _near(_scalar_const(other), const):
        return None
    if partner is not None and other is not partner:
        return None
    return user


def _fuse_into_fc(act: mrvl.ActivationOp, rewriter: PatternRewriter) -> None:
    """Fold a standalone activation into the FC (through its row reshape) that produces its
    only input, when the FC has no activation and no other user."""
    producer = act.input.owner
    reshape = None
    if isinstance(producer, mrvl.ReshapeOp) and sole_user(producer.results[0]) is act:
        reshape = producer
        producer = producer.input.owner
    if not isinstance(producer, mrvl.FCOp) or producer.activation_str() != "none":
        return
    if sole_user(producer.output) is not (reshape if reshape is not None else act):
        return
    producer.properties["activation"] = StringAttr(act.activation_str())
    rewriter.notify_op_modified(producer)
    names = [n.data for n in producer.attributes.get(ONNX_NODES_ATTR, ArrayAttr([])).data]  # type: ignore[union-attr]
    extra = act.attributes.get(ONNX_NODES_ATTR)
    if isinstance(extra, ArrayAttr):
        names += [n.data for n in extra.data if n.data not in names]  # type: ignore[union-attr]
    if names:
        producer.attributes[ONNX_NODES_ATTR] = ArrayAttr([StringAttr(n) for n in names])
    result = (reshape if reshape is not None else producer).results[0]
    rewriter.replace_all_uses_with(act.output, result)
    rewriter.erase(act)


class GeluPattern(RewritePattern):
    """GELU as exporters write it, matched at its first op:
    erf form  x * 0.5 * (1 + erf(x / sqrt 2)): div(x, sqrt2) | mul(x, 1/sqrt2), erf, add 1,
      mul x, mul 0.5 (or mul(x, 0.5) times the add);
    tanh form 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))): pow(x, 3), mul 0.044715,
      add x, mul sqrt(2/pi), tanh, add 1, and mul(mul(x, 0.5), .) (or mul(x, .) then mul 0.5)
    -> mrvl.activation gelu / gelu_tanh, folded into the FC before it when it can be."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, graph.DivOp | graph.MulOp):
            found = self._erf_form(op)
        elif _onnx(op, "Pow"):
            found = self._tanh_form(op)
        else:
            return
        if found is None:
            return
        x, ops, kind = found
        fusion = Fusion(ops=ops)
        act = mrvl.ActivationOp(x, layer_name=UNNAMED, activation=kind)
        _finish(rewriter, fusion, [act])
        _fuse_into_fc(act, rewriter)

    @staticmethod
    def _tail(x: SSAValue, one: Operation) -> list[Operation] | None:
        """The two muls after `one` = 1 + f(x): x * one * 0.5 in either order."""
        m = _binary_user(one.results[0], graph.MulOp, partner=x)
        if m is not None:
            last = _binary_user(m.results[0], graph.MulOp, const=0.5)
            return None if last is None else [m, last]
        m = sole_user(one.results[0])
        if not isinstance(m, graph.MulOp) or not is_legal_dtype(m):
            return None
        half = _other(m, one.results[0])
        owner = half.owner if half is not None else None
        if (isinstance(owner, graph.MulOp) and _other(owner, x) is not None
                and _near(_scalar_const(_other(owner, x)), 0.5)  # type: ignore[arg-type]
                and sole_user(owner.results[0]) is m):
            return [owner, m]
        return None

    def _erf_form(self, op: Operation) -> tuple[SSAValue, list[Operation], str] | None:
        if not is_legal_dtype(op) or not is_constant(op.operands[1]):
            return None
        want = np.sqrt(2.0) if isinstance(op, graph.DivOp) else 1.0 / np.sqrt(2.0)
        if not _near(_scalar_const(op.operands[1]), float(want)):
            return None
        x = op.operands[0]
        erf = sole_user(op.results[0])
        if not _onnx(erf, "Erf"):
            return None
        assert erf is not None
        one = _binary_user(erf.results[0], graph.AddOp, const=1.0)
        if one is None:
            return None
        tail = self._tail(x, one)
        if tail is None:
            return None
        return x, [op, erf, one, *tail], "gelu"

    def _tanh_form(self, op: Operation) -> tuple[SSAValue, list[Operation], str] | None:
        if len(op.operands) != 2 or not _near(_scalar_const(op.operands[1]), 3.0):
            return None
        x = op.operands[0]
        small = _binary_user(op.results[0], graph.MulOp, const=0.044715)
        if small is None:
            return None
        inner = _binary_user(small.results[0], graph.AddOp, partner=x)
        if inner is None:
            return None
        scaled = _binary_user(inner.results[0], graph.MulOp, const=float(np.sqrt(2.0 / np.pi)))
        if scaled is None:
            return None
        tanh = sole_user(scaled.results[0])
        if not isinstance(tanh, graph.TanhOp) or not is_legal_dtype(tanh):
            return None
        one = _binary_user(tanh.results[0], graph.AddOp, const=1.0)
        if one is None:
            return None
        tail = self._tail(x, one)
        if tail is None:
            return None
        ops = [op, small, inner, scaled, tanh, one, *tail]
        return x, sorted(ops, key=_position), "gelu_tanh"


def _position(op: Operation) -> int:
    block = op.parent_block()
    assert block is not None
    return block.get_operation_index(op)


def _reduce_mean_last(op: Operation | None) -> bool:
    """A ReduceMean over the last axis only, keepdims = 1."""
    if not _onnx(op, "ReduceMean"):
        return False
    assert isinstance(op, graph.OnnxOp)
    attrs = op.attrs.data
    keep = attrs.get("keepdims")
    if keep is not None and keep.value.data != 1:  # type: ignore[union-attr]
        return False
    axes_attr = attrs.get("axes")
    if axes_attr is not None:
        axes = list(graph.ints(axes_attr))  # type: ignore[arg-type]
    elif len(op.operands) == 2 and is_constant(op.operands[1]):
        axes = [int(a) for a in const_array(op.operands[1]).reshape(-1)]
    else:
        return False
    rank = len(_shape(op.operands[0]))
    return [a % rank for a in axes] == [rank - 1]


class LayerNormPattern(RewritePattern):
    """ONNX LayerNormalization over the last axis, and the decomposed form older exporters
    write (matched at its first ReduceMean): mean = reduce_mean(x); d = x - mean;
    var = reduce_mean(pow(d, 2)); y = d / sqrt(var + eps) * gamma + beta -> mrvl.layernorm
    (gamma, beta broadcast to the last axis' size)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if _onnx(op, "LayerNormalization") and is_legal(op)[0]:
            assert isinstance(op, graph.OnnxOp)
            x = op.operands[0]
            width = _shape(x)[-1]
            eps_attr = op.attrs.data.get("epsilon")
            eps = 1e-5 if eps_attr is None else eps_attr.value.data  # type: ignore[union-attr]
            new_ops: list[Operation] = []
            gamma = _new_const(np.broadcast_to(const_array(op.operands[1]).reshape(-1), (width,)),
                               new_ops)
            beta_arr = (const_array(op.operands[2]).reshape(-1) if len(op.operands) > 2
                        else np.zeros(1, np.float32))
            beta = _new_const(np.broadcast_to(beta_arr, (width,)), new_ops)
            layer = mrvl.LayerNormOp(x, gamma, beta, layer_name=UNNAMED, epsilon=eps)
            _finish(rewriter, Fusion(ops=[op]), [*new_ops, layer])
            return
        if not _reduce_mean_last(op):
            return
        found = self._decomposed(op)
        if found is None:
            return
        x, ops, eps, gamma_arr, beta_arr = found
        width = _shape(x)[-1]
        new_ops = []
        gamma = _new_const(np.broadcast_to(gamma_arr, (width,)), new_ops)
        beta = _new_const(np.broadcast_to(beta_arr, (width,)), new_ops)
        layer = mrvl.LayerNormOp(x, gamma, beta, layer_name=UNNAMED, epsilon=eps)
        _finish(rewriter, Fusion(ops=ops), [*new_ops, layer])

    @staticmethod
    def _per_channel(value: SSAValue | None, width: int) -> np.ndarray | None:
        if value is None or not is_constant(value):
            return None
        arr = const_array(value)
        if arr.size not in (1, width) or (arr.size == width and arr.shape[-1] != width):
            return None
        return arr.astype(np.float32).reshape(-1)

    def _decomposed(self, mean: Operation):
        x = mean.operands[0]
        width = _shape(x)[-1]
        sub = sole_user(mean.results[0])
        if not isinstance(sub, graph.SubOp) or sub.lhs is not x or not is_legal_dtype(sub):
            return None
        centred = sub.results[0]
        users = [u.operation for u in centred.uses]
        if len(users) != 2:
            return None
        pow_op = next((u for u in users if _onnx(u, "Pow")), None)
        div = next((u for u in users if isinstance(u, graph.DivOp)), None)
        if pow_op is None or div is None or div.lhs is not centred or not is_legal_dtype(div):
            return None
        if pow_op.operands[0] is not centred or not _near(_scalar_const(pow_op.operands[1]), 2.0):
            return None
        var = sole_user(pow_op.results[0])
        if not _reduce_mean_last(var):
            return None
        assert var is not None
        add_eps = sole_user(var.results[0])
        if not isinstance(add_eps, graph.AddOp) or not is_legal_dtype(add_eps):
            return None
        eps = _scalar_const(_other(add_eps, var.results[0]))  # type: ignore[arg-type]
        if eps is None or eps < 0:
            return None
        sqrt = sole_user(add_eps.results[0])
        if not _onnx(sqrt, "Sqrt") or sole_user(sqrt.results[0]) is not div:  # type: ignore[union-attr]
            return None
        if div.rhs is not sqrt.results[0]:  # type: ignore[union-attr]
            return None
        ops = [mean, sub, pow_op, var, add_eps, sqrt, div]
        gamma = np.ones(1, np.float32)
        beta = np.zeros(1, np.float32)
        last = div.results[0]
        mul = _binary_user(last, graph.MulOp)
        if mul is not None:
            found = self._per_channel(_other(mul, last), width)
            if found is not None and _shape(mul.results[0]) == _shape(x):
                gamma, last = found, mul.results[0]
                ops.append(mul)
        add = _binary_user(last, graph.AddOp)
        if add is not None:
            found = self._per_channel(_other(add, last), width)
            if found is not None and _shape(add.results[0]) == _shape(x):
                beta = found
                ops.append(add)
        return x, sorted(ops, key=_position), float(eps), gamma, beta


def _normalize_rows(x: SSAValue, groups_shape: list[int], epsilon: float,
                    new_ops: list[Operation]) -> SSAValue:
    """mrvl.layernorm (gamma 1, beta 0) of the rows of the [.., rows, L] view
    `groups_shape` of `x` (a reshape when the view differs), as a value of `x`'s shape."""
    shape = list(_shape(x))
    value = x
    if groups_shape != shape:
        view = mrvl.ReshapeOp(value, TensorType(f32, groups_shape), layer_name=UNNAMED)
        new_ops.append(view)
        value = view.results[0]
    width = groups_shape[-1]
    gamma = _new_const(np.ones(width), new_ops)
    beta = _new_const(np.zeros(width), new_ops)
    norm = mrvl.LayerNormOp(value, gamma, beta, layer_name=UNNAMED, epsilon=epsilon)
    new_ops.append(norm)
    value = norm.results[0]
    if groups_shape != shape:
        back = mrvl.ReshapeOp(value, TensorType(f32, shape), layer_name=UNNAMED)
        new_ops.append(back)
        value = back.results[0]
    return value


def _epsilon(op: graph.OnnxOp) -> float:
    attr = op.attrs.data.get("epsilon")
    return 1e-5 if attr is None else attr.value.data  # type: ignore[union-attr]


def _label(new_ops: list[Operation], fusion: Fusion) -> None:
    """Every layer of `new_ops` but the last (`_finish` labels it) carries the fused nodes."""
    names = fusion.onnx_nodes()
    for layer in new_ops[:-1]:
        if isinstance(layer, mrvl.MrvlLayerOp) and names.data:
            layer.attributes[ONNX_NODES_ATTR] = names


class InstanceNormPattern(RewritePattern):
    """InstanceNormalization of [N, C, L] or [N, C, H, W] data (torch's GroupNorm export
    runs it on [N, G, C/G*H*W] with scale 1, bias 0) -> mrvl.layernorm of the [N, C, L]
    rows; a scale / bias other than ones / zeros -> mrvl.mul + mrvl.sum by [C, 1] constants."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        if not _onnx(op, "InstanceNormalization") or not is_legal(op)[0]:
            return
        x = op.operands[0]
        shape = list(_shape(x))
        rows_shape = [shape[0], shape[1], int(np.prod(shape[2:]))]
        new_ops: list[Operation] = []
        value = x
        if rows_shape != shape:
            view = mrvl.ReshapeOp(value, TensorType(f32, rows_shape), layer_name=UNNAMED)
            new_ops.append(view)
            value = view.results[0]
        value = _normalize_rows(value, rows_shape, _epsilon(op), new_ops)
        scale = const_array(op.operands[1]).astype(np.float64).reshape(-1)
        bias = const_array(op.operands[2]).astype(np.float64).reshape(-1)
        if np.any(scale != 1.0):
            scaled = mrvl.Mul2DOp(value, _new_const(scale.reshape(-1, 1), new_ops),
                                  layer_name=UNNAMED)
            new_ops.append(scaled)
            value = scaled.results[0]
        if np.any(bias != 0.0):
            shifted = mrvl.Sum2DOp(value, _new_const(bias.reshape(-1, 1), new_ops),
                                   layer_name=UNNAMED)
            new_ops.append(shifted)
            value = shifted.results[0]
        if rows_shape != shape:
            new_ops.append(mrvl.ReshapeOp(value, TensorType(f32, shape), layer_name=UNNAMED))
        fusion = Fusion(ops=[op])
        _label(new_ops, fusion)
        _finish(rewriter, fusion, new_ops)


class GroupNormPattern(RewritePattern):
    """GroupNormalization of NCHW data [layout_transform NCHW->NHWC [activation]] ->
    mrvl.layernorm (gamma 1, beta 0) of the [N, G, C/G*H*W] rows, then the per-channel
    scale and bias as a depthwise 1x1 mrvl.conv2d in NHWC (the activation after it fused;
    opset 18's per-group scale / bias repeated per channel)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        if not _onnx(op, "GroupNormalization") or not is_legal(op)[0]:
            return
        x = op.operands[0]
        n, channels, h, w = _shape(x)
        groups = onnx_ints(op, "num_groups", [1])[0]
        new_ops: list[Operation] = []
        value = _normalize_rows(x, [n, groups, channels // groups * h * w], _epsilon(op),
                                new_ops)
        scale, bias = (np.repeat(const_array(v).astype(np.float64).reshape(-1),
                                 channels // const_array(v).size) for v in op.operands[1:])
        fusion = Fusion(ops=[op])
        nhwc = _nhwc_output(op, fusion)
        if nhwc:
            _absorb_tail(fusion, channels, bias=True, bn=True)
        if fusion.bias is not None:
            bias = bias + fusion.bias
        if fusion.bn is not None:
            factor, shift = fusion.bn
            scale, bias = scale * factor, bias * factor + shift
        to_nhwc = mrvl.LayoutTransformOp(value, "NCHW", "NHWC", layer_name=UNNAMED)
        new_ops.append(to_nhwc)
        affine = mrvl.Conv2DOp(
            to_nhwc, _new_const(scale.reshape(channels, 1, 1, 1), new_ops),
            _new_const(bias, new_ops), layer_name=UNNAMED, groups=channels,
            activation=fusion.activation, clip=fusion.clip,
        )
        new_ops.append(affine)
        if not nhwc:
            new_ops.append(mrvl.LayoutTransformOp(affine, "NHWC", "NCHW", layer_name=UNNAMED))
        _label(new_ops, fusion)
        _finish(rewriter, fusion, new_ops)


class ReduceMeanPattern(RewritePattern):
    """ReduceMean over the last axes (any keepdims; not inside a LayerNorm chain, which
    LayerNormPattern takes first) -> reshape to [rows, K], mrvl.fc with the [1, K] weight
    1/K (fp16: 1/K rounded once; int8: one exact step), reshape to the result's shape."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        if not _onnx(op, "ReduceMean") or not is_legal(op)[0]:
            return
        x = op.operands[0]
        shape = list(_shape(x))
        axes = reduce_mean_axes(op)
        assert axes is not None
        width = int(np.prod([shape[a] for a in axes]))
        rows = int(np.prod(shape)) // width
        new_ops: list[Operation] = []
        flat = mrvl.ReshapeOp(x, TensorType(f32, [rows, width]), layer_name=UNNAMED)
        weight = _new_const(np.full((1, width), 1.0 / width), new_ops)
        fc = mrvl.FCOp(flat, weight, None, layer_name=UNNAMED)
        back = mrvl.ReshapeOp(fc, op.results[0].type, layer_name=UNNAMED)
        new_ops += [flat, fc, back]
        fusion = Fusion(ops=[op])
        _label(new_ops, fusion)
        _finish(rewriter, fusion, new_ops)


class SplitPattern(RewritePattern):
    """split on any axis -> one mrvl.slice (a copy) per output (not when it feeds only CPU
    ops)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.SplitOp, rewriter: PatternRewriter) -> None:
        if not is_legal(op)[0] or feeds_only_cpu(op):
            return
        axis = op.axis.value.data
        names = Fusion(ops=[op]).onnx_nodes()
        slices = []
        start = 0
        for size in graph.ints(op.split):
            piece = mrvl.SliceOp(op.input, axis=axis, start=start, size=size,
                                 layer_name=UNNAMED)
            if names.data:
                piece.attributes[ONNX_NODES_ATTR] = names
            slices.append(piece)
            start += size
        rewriter.replace(op, slices, [piece.results[0] for piece in slices])


class GatherPattern(RewritePattern):
    """ONNX Gather of consecutive constant indices of an activation -> mrvl.slice (a copy;
    ViT's class-token row), plus a reshape when a scalar index removes the axis (not when
    it feeds only CPU ops)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: graph.OnnxOp, rewriter: PatternRewriter) -> None:
        if op.op_type.data != "Gather" or not is_legal(op)[0] or feeds_only_cpu(op):
            return
        found = gather_slice(op)
        assert found is not None
        axis, start, size, keeps_axis = found
        piece = mrvl.SliceOp(op.operands[0], axis=axis, start=start, size=size,
                             layer_name=UNNAMED)
        new_ops: list[Operation] = [piece]
        if not keeps_axis:
            new_ops.append(mrvl.ReshapeOp(piece, op.results[0].type, layer_name=UNNAMED))
        _finish(rewriter, Fusion(ops=[op]), new_ops)


def _feeds_fc_flatten(op: graph.ReshapeOp | graph.FlattenOp) -> bool:
    """A flatten of an NHWC->NCHW transform into a dense-like op: FCPattern takes it."""
    lt = op.input.owner
    if not isinstance(lt, graph.LayoutTransformOp) or lt.src_layout.data != "NHWC":
        return False
    user = sole_user(op.result)
    return isinstance(user, graph.DenseOp | graph.GemmOp | graph.MatMulOp)


class ShapePattern(RewritePattern):
    """reshape / flatten / squeeze / transpose / 4-D layout_transform -> mrvl ops."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(
            op,
            graph.ReshapeOp
            | graph.FlattenOp
            | graph.SqueezeOp
            | graph.TransposeOp
            | graph.LayoutTransformOp,
        ):
            return
        if not is_legal(op)[0]:
            return
        x = op.operands[0]
        if isinstance(op, graph.LayoutTransformOp):
            if _takes_nchw(sole_user(op.result)):
                return
            flat = sole_user(op.result)
            if isinstance(flat, graph.ReshapeOp | graph.FlattenOp) and _feeds_fc_flatten(flat):
                return
        if isinstance(op, graph.ReshapeOp | graph.FlattenOp):
            if _feeds_fc_flatten(op):
                return
            ins, outs = _shape(x), _shape(op.results[0])
            if len(outs) == 2 and outs[0] == ins[0]:
                layer: mrvl.MrvlLayerOp = mrvl.BatchFlattenOp(x, layer_name=UNNAMED)
            else:
                layer = mrvl.ReshapeOp(x, op.results[0].type, layer_name=UNNAMED)
        elif isinstance(op, graph.SqueezeOp):
            layer = mrvl.SqueezeOp(x, graph.ints(op.axes), layer_name=UNNAMED)
        elif isinstance(op, graph.TransposeOp):
            layer = mrvl.TransposeOp(x, graph.ints(op.perm), layer_name=UNNAMED)
        else:
            layer = mrvl.LayoutTransformOp(
                x, op.src_layout.data, op.dst_layout.data, layer_name=UNNAMED
            )
        _finish(rewriter, Fusion(ops=[op]), [layer])


def cpu_reason(op: Operation) -> str:
    """Why a graph op left after conversion stays on the CPU."""
    ok, reason = is_legal(op)
    if not ok:
        return reason
    if isinstance(op, graph.PadOp):
        return "pad not followed by a conv2d or pool that takes it"
    if isinstance(op, graph.ConcatOp | graph.SplitOp):
        return BORDER_COPY
    return f"{op.name}: no accelerator pattern matched"


def name_layers(fn: func.FuncOp, start: int = 0) -> int:
    """Name the unnamed layers of `fn` `tvmgen_mrvl_main_<k>` in order; return the next k."""
    k = start
    for op in fn.body.walk():
        if isinstance(op, mrvl.MrvlLayerOp) and op.name_str == UNNAMED:
            op.set_layer_name(f"{mrvl.ACCEL_PREFIX}{k}")
            k += 1
    return k


def mark_cpu_reasons(fn: func.FuncOp) -> None:
    for op in fn.body.walk():
        if op.dialect_name() != "graph" or isinstance(op, graph.ConstantOp):
            continue
        if CPU_REASON_ATTR not in op.attributes:
            op.attributes[CPU_REASON_ATTR] = StringAttr(cpu_reason(op))


def _existing_layer_count(module: ModuleOp) -> int:
    count = 0
    for op in module.walk():
        if isinstance(op, mrvl.MrvlLayerOp) and op.name_str.startswith(mrvl.ACCEL_PREFIX):
            count = max(count, int(op.name_str.rsplit("_", 1)[1]) + 1)
    return count


@dataclass(frozen=True)
class ConvertGraphToMrvlPass(ModulePass):
    """Fuse legal graph op chains into mrvl layers (see the module docstring)."""

    name = "convert-graph-to-mrvl"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [ConvPattern(), FCPattern(), GeluPattern(), LayerNormPattern(), MatMulPattern(),
                 SoftmaxPattern(), AffinePattern(), ConvTransposePattern(), ResizePattern(),
                 PoolPattern(), SumPattern(), MulPattern(), SubPattern(), ActivationPattern(),
                 ConcatPattern(), SplitPattern(), ShapePattern(), GatherPattern(),
                 InstanceNormPattern(), GroupNormPattern(), ReduceMeanPattern()]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
        k = _existing_layer_count(op)
        for fn in op.ops:
            if isinstance(fn, func.FuncOp):
                k = name_layers(fn, k)
                mark_cpu_reasons(fn)


def convert_graph_to_mrvl(module: ModuleOp) -> ModuleOp:
    """Apply the pass in place and return the module (Python API)."""
    ConvertGraphToMrvlPass().apply(Context(), module)
    return module
