"""Which graph ops the accelerator takes, and why not: one small predicate per op.

`is_legal(op) -> (bool, reason)`: `reason` is "" when legal, else one short sentence naming
what the accelerator cannot do ("pad value 0.5 is not zero", "batch 16 exceeds the
accelerator limit 8", "dtype i64 not supported", "graph.onnx NonMaxSuppression: not an
accelerator op"). A legal op may still stay on the CPU when no fusion pattern takes it (the
converter then records its own reason).

Invariants: the predicates only read the IR; data must already be NHWC (run
graph-layout-nhwc first), float32, batch <= `MAX_BATCH`; weights must be `graph.constant`s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    IntegerAttr,
    StringAttr,
    TensorType,
)
from xdsl.ir import Operation, SSAValue

from mrvl import reference_kernels
from mrvl.dialects import graph

MAX_BATCH = 8
"""Largest batch the accelerator takes (upstream's limit)."""

NOT_FUSED = "only fused into a preceding conv2d, dense or add, or a LayerNorm pattern"

Verdict = tuple[bool, str]
OK: Verdict = (True, "")


def _shape(value: SSAValue) -> tuple[int, ...]:
    typ = value.type
    assert isinstance(typ, TensorType)
    return tuple(int(d) for d in typ.get_shape())


def is_constant(value: SSAValue) -> bool:
    return isinstance(value.owner, graph.ConstantOp)


def _dtype_name(typ: object) -> str:
    if isinstance(typ, TensorType):
        return str(typ.element_type)
    return str(typ)


def check_common(op: Operation) -> Verdict:
    """Every tensor f32 and non-empty, the batch (first dim of the first non-constant
    operand) within the limit."""
    for value in (*op.operands, *op.results):
        typ = value.type
        if not isinstance(typ, TensorType) or not isinstance(typ.element_type, Float32Type):
            return False, f"dtype {_dtype_name(typ)} not supported"
        if 0 in _shape(value):
            return False, f"empty tensor {list(_shape(value))} not supported"
    data = [v for v in op.operands if not is_constant(v)]
    if data:
        shape = _shape(data[0])
        if len(shape) >= 2 and shape[0] > MAX_BATCH:
            return False, f"batch {shape[0]} exceeds the accelerator limit {MAX_BATCH}"
    return OK


def _nhwc(layout: str, what: str) -> Verdict:
    if layout != "NHWC":
        return False, f"{what} layout {layout} is not NHWC (run graph-layout-nhwc first)"
    return OK


def _conv2d(op: graph.Conv2DOp) -> Verdict:
    ok = _nhwc(op.data_layout.data, "data")
    if not ok[0]:
        return ok
    if op.kernel_layout.data != "OHWI":
        return False, f"kernel layout {op.kernel_layout.data} is not OHWI"
    if not is_constant(op.weight):
        return False, "weight is not a constant"
    if op.bias is not None and not is_constant(op.bias):
        return False, "bias is not a constant"
    return OK


def _dense(op: graph.DenseOp) -> Verdict:
    if not is_constant(op.weight):
        return False, "weight is not a constant"
    return OK


def _gemm(op: graph.GemmOp) -> Verdict:
    if not is_constant(op.b):
        return False, "weight B is not a constant"
    if op.trans_a.value.data != 0:
        return False, "trans_a = 1 is not supported"
    if op.c is not None:
        if not is_constant(op.c):
            return False, "C is not a constant"
        n = _shape(op.result)[1]
        if _shape(op.c) not in ((n,), (1, n), (1,), ()):
            return False, f"C of shape {list(_shape(op.c))} is not a per-output bias"
    return OK


def _matmul(op: graph.MatMulOp) -> Verdict:
    """x @ W with a constant 2-D W (an FC per row of x, any rank of x up to 4), or a batched
    product of two activations of equal rank 2 to 4 and equal batch dimensions."""
    lhs, rhs = _shape(op.lhs), _shape(op.rhs)
    if is_constant(op.lhs):
        return False, "left operand is a constant"
    if is_constant(op.rhs):
        if len(rhs) != 2 or not 2 <= len(lhs) <= 4:
            return False, f"matmul {list(lhs)} x constant {list(rhs)} is not [..., K] x [K, N]"
        return OK
    if len(lhs) != len(rhs) or not 2 <= len(lhs) <= 4:
        return False, f"matmul of ranks {len(lhs)} and {len(rhs)} is not supported"
    if lhs[:-2] != rhs[:-2]:
        return False, f"matmul batch dims {list(lhs[:-2])} and {list(rhs[:-2])} differ"
    return OK


def _pad(op: graph.PadOp) -> Verdict:
    if op.mode.data != "constant":
        return False, f"pad mode {op.mode.data} is not constant"
    value = op.value.value.data
    if value != 0.0:
        return False, f"pad value {value:g} is not zero"
    pads = graph.ints(op.pads)
    if len(pads) != 8 or any(pads[i] != 0 for i in (0, 3, 4, 7)) or min(pads) < 0:
        return False, f"pads {list(pads)} do not pad only H and W of NHWC"
    return OK


def _max_pool(op: graph.MaxPool2DOp) -> Verdict:
    ok = _nhwc(op.layout.data, "data")
    if not ok[0]:
        return ok
    if op.ceil_mode.value.data != 0:
        return False, "ceil_mode = 1 is not supported"
    if set(graph.ints(op.dilations)) != {1}:
        return False, "pool dilations are not supported"
    return OK


def _avg_pool(op: graph.AvgPool2DOp) -> Verdict:
    ok = _nhwc(op.layout.data, "data")
    if not ok[0]:
        return ok
    if op.ceil_mode.value.data != 0:
        return False, "ceil_mode = 1 is not supported"
    return OK


def _global_pool(op: graph.GlobalAvgPool2DOp | graph.GlobalMaxPool2DOp) -> Verdict:
    return _nhwc(op.layout.data, "data")


def _add(op: graph.AddOp) -> Verdict:
    ranks = {len(_shape(op.lhs)), len(_shape(op.rhs))}
    if is_constant(op.lhs) and is_constant(op.rhs):
        return False, "both operands are constants (fold constants first)"
    if not ranks <= {1, 2, 3, 4}:
        return False, f"add of rank {max(ranks)} tensors is not supported"
    return OK


def _eltwise_ranks(op: graph.MulOp | graph.DivOp | graph.SubOp, what: str) -> Verdict:
    """Data operands of rank 1 to 4; a constant operand of any rank up to 4 (a scalar,
    PyTorch's [C, 1, 1] per-channel factors)."""
    for value in (op.lhs, op.rhs):
        rank = len(_shape(value))
        if rank not in (1, 2, 3, 4) and not (rank <= 4 and is_constant(value)):
            return False, f"{what} of rank {rank} tensors is not supported"
    return OK


def _mul(op: graph.MulOp) -> Verdict:
    if is_constant(op.lhs) and is_constant(op.rhs):
        return False, "both operands are constants (fold constants first)"
    return _eltwise_ranks(op, "mul")


def _sub(op: graph.SubOp) -> Verdict:
    """x - c is a Sum2D with -c; a - b a Mul2D by -1 and a Sum2D (numpy broadcasting)."""
    if is_constant(op.lhs) and is_constant(op.rhs):
        return False, "both operands are constants (fold constants first)"
    return _eltwise_ranks(op, "sub")


def _div(op: graph.DivOp) -> Verdict:
    """A division by a constant is a Mul2D by its reciprocal; by a tensor a Div2D."""
    if is_constant(op.lhs) and is_constant(op.rhs):
        return False, "both operands are constants (fold constants first)"
    ok = _eltwise_ranks(op, "div")
    if not ok[0] or not is_constant(op.rhs):
        return ok
    divisor = op.rhs.owner.to_numpy()  # type: ignore[union-attr]
    with np.errstate(divide="ignore", over="ignore"):
        if not np.all(np.isfinite(np.float32(1.0) / divisor.astype(np.float32))):
            return False, "divisor has zeros or values without a finite reciprocal"
    return OK


def _activation(op: Operation) -> Verdict:
    """A standalone activation (ACT), or hard_sigmoid / hard_swish as Mul2D + Sum2D layers."""
    rank = len(_shape(op.operands[0]))
    if not 1 <= rank <= 4:
        return False, f"{op.name} of a rank {rank} tensor is not supported"
    if isinstance(op, graph.ClipOp) and op.min is not None and op.max is not None:
        lo, hi = op.min.value.data, op.max.value.data
        if lo > hi:
            return False, f"clip min {lo:g} > max {hi:g} (the ISA clip needs min <= max)"
    return OK


def _concat(op: graph.ConcatOp) -> Verdict:
    """Any axis of a tensor of rank 1 to 4 (copies with output strides); at most one
    constant operand (ViT's class token), copied from the weights."""
    rank = len(_shape(op.result))
    if not 1 <= rank <= 4:
        return False, f"concat of rank {rank} tensors is not supported"
    constants = sum(1 for v in op.inputs if is_constant(v))
    if constants == len(op.inputs):
        return False, "concat of constants only (fold constants first)"
    if constants > 1:
        return False, f"concat of {constants} constants is not supported (at most one)"
    return OK


def gather_slice(op: graph.OnnxOp) -> tuple[int, int, int, bool] | None:
    """(axis, start, size, keeps_axis) of an ONNX Gather that is a slice: constant indices
    start, start + 1, ... (a scalar index removes the axis), in range; else None."""
    if len(op.operands) != 2 or not is_constant(op.operands[1]):
        return None
    shape = _shape(op.operands[0])
    axis_attr = op.attrs.data.get("axis")
    axis = 0 if axis_attr is None else int(axis_attr.value.data)  # type: ignore[union-attr]
    if not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    const = op.operands[1].owner
    assert isinstance(const, graph.ConstantOp)
    indices = np.asarray(const.to_numpy())
    if indices.size == 0 or indices.ndim > 1 or not np.issubdtype(indices.dtype, np.integer):
        return None
    flat = [int(i) % shape[axis] if -shape[axis] <= int(i) < shape[axis] else -1
            for i in indices.reshape(-1)]
    if -1 in flat or flat != list(range(flat[0], flat[0] + len(flat))):
        return None
    return axis, flat[0], len(flat), indices.ndim == 1


def _gather(op: graph.OnnxOp) -> Verdict:
    """ONNX Gather of consecutive constant indices of an f32 activation: a slice (a copy;
    ViT's class-token row). Checked here since the indices are integers."""
    data, result = op.operands[0], op.results[0]
    for value in (data, result):
        typ = value.type
        if not isinstance(typ, TensorType) or not isinstance(typ.element_type, Float32Type):
            return False, f"dtype {_dtype_name(typ)} not supported"
    if is_constant(data):
        return False, "Gather from a constant table (an embedding) stays on the CPU"
    rank = len(_shape(data))
    if not 1 <= rank <= 4 or 0 in _shape(data):
        return False, f"Gather from a rank {rank} tensor is not supported"
    if rank >= 2 and _shape(data)[0] > MAX_BATCH:
        return False, f"batch {_shape(data)[0]} exceeds the accelerator limit {MAX_BATCH}"
    if gather_slice(op) is None:
        return False, "Gather indices are not constant consecutive in-range integers"
    return OK


def onnx_ints(op: graph.OnnxOp, name: str, default: list[int]) -> list[int]:
    """An INTS / INT attribute of a `graph.onnx` op as a list (`default` when absent)."""
    attr = op.attrs.data.get(name)
    if attr is None:
        return list(default)
    if isinstance(attr, DenseArrayBase):
        return [int(v) for v in attr.get_values()]
    if isinstance(attr, IntegerAttr):
        return [int(attr.value.data)]
    return list(default)


@dataclass(frozen=True)
class TransposePhase:
    """One output phase of one axis of a ConvTranspose: outputs `y = stride * t + a`
    (t < the axis' phase size) are a stride-1 convolution of the input from index `start`
    on with the kernel taps `taps` (in convolution order: input offsets ascending),
    `dilation`, pads `before` and `after`."""

    taps: tuple[int, ...]
    dilation: int
    before: int
    after: int
    start: int = 0


def _axis_phases(size: int, out: int, kernel: int, stride: int, dilation: int, begin: int
                 ) -> tuple[list[TransposePhase], str]:
    """The `stride` phases of one axis (input `size`, output `out`). Every phase computes
    the same number of outputs, at least ceil(out / stride) and enough for each phase to
    read its whole padded input (the interleaved result is cropped to `out`)."""
    step = dilation // math.gcd(dilation, stride)
    found = []
    for a in range(stride):
        taps = [k for k in range(kernel) if (a + begin - dilation * k) % stride == 0]
        if not taps:
            return [], (f"ConvTranspose kernel {kernel}, stride {stride}, dilation {dilation}: "
                        f"output phase {a} has no kernel tap")
        taps.reverse()  # input offset (a + begin - dilation * k) / stride ascending
        first = (a + begin - dilation * taps[0]) // stride
        before, start = max(-first, 0), max(first, 0)
        if start >= size:
            return [], (f"ConvTranspose kernel {kernel}, stride {stride}, pad {begin}: output "
                        f"phase {a} starts beyond the input")
        found.append((taps, before, start, size - start + before - step * (len(taps) - 1)))
    phase_size = max(-(-out // stride), *(found_one[3] for found_one in found))
    return [TransposePhase(tuple(taps), step, before, phase_size - natural, start)
            for taps, before, start, natural in found], ""


def conv_transpose_phases(op: graph.OnnxOp) -> tuple[list[list[TransposePhase]], str]:
    """The output phases of a 2-D ConvTranspose per axis (H, W); see `TransposePhase`.
    (phases, "") when the accelerator can take it, else ([], reason). Any groups, strides,
    dilations, pads, output_padding, auto_pad and output_shape (not below the full output)
    whose every phase has a kernel tap."""
    if len(op.inputs) not in (2, 3) or len(op.results) != 1:
        return [], "ConvTranspose needs X, W and an optional B"
    x, w = op.inputs[0], op.inputs[1]
    if len(_shape(x)) != 4 or not all(isinstance(v.type, TensorType) for v in op.inputs):
        return [], "ConvTranspose is not 2-D"
    if not is_constant(w) or (len(op.inputs) == 3 and not is_constant(op.inputs[2])):
        return [], "ConvTranspose weight or bias is not a constant"
    auto_pad_attr = op.attrs.data.get("auto_pad")
    auto_pad = auto_pad_attr.data if isinstance(auto_pad_attr, StringAttr) else "NOTSET"
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        return [], f"ConvTranspose auto_pad {auto_pad} is not supported"
    n, channels, h, wd = _shape(x)
    groups = onnx_ints(op, "group", [1])[0]
    if groups < 1 or channels % groups or _shape(w)[0] != channels:
        return [], f"ConvTranspose groups {groups} do not divide {channels} input channels"
    y = _shape(op.results[0])
    kernel = _shape(w)[2:]
    strides = onnx_ints(op, "strides", [1, 1])
    dilations = onnx_ints(op, "dilations", [1, 1])
    pads = onnx_ints(op, "pads", [0, 0, 0, 0])
    output_padding = onnx_ints(op, "output_padding", [0, 0])
    phases: list[list[TransposePhase]] = []
    for axis, size in enumerate((h, wd)):
        stride, k, dilation = strides[axis], kernel[axis], dilations[axis]
        # the output is the result's size (output_shape, output_padding and the end pad
        # only add or drop outputs at the end); the begin pad places it (ONNX's reference)
        out = y[2 + axis]
        full = stride * (size - 1) + output_padding[axis] + dilation * (k - 1) + 1
        begin = pads[axis]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = full - out
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad == "VALID":
            begin = 0
        elif "output_shape" in op.attrs.data and out < full - begin - pads[2 + axis]:
            # onnxruntime then moves the begin pad, ONNX's reference crops at the end
            return [], (f"ConvTranspose output_shape {out} below its full output "
                        f"{full - begin - pads[2 + axis]} is ambiguous")
        if begin < 0 or out < 1:
            return [], f"ConvTranspose pad {begin} / output size {out} not supported"
        axis_phases, reason = _axis_phases(size, out, k, stride, dilation, begin)
        if reason:
            return [], reason
        phases.append(axis_phases)
    if n > MAX_BATCH:
        return [], f"batch {n} exceeds the accelerator limit {MAX_BATCH}"
    return phases, ""


def resize_matrix(op: graph.ResizeOp, axis: int) -> np.ndarray | None:
    """The [out, in] interpolation matrix of `op` along NCHW `axis` (row y holds the weights
    of the input pixels for output pixel y: one-hot for nearest), None when the axis keeps
    its size and scale."""
    in_size, out_size = _shape(op.input)[axis], _shape(op.result)[axis]
    scale = graph.floats(op.scales)[axis]
    if in_size == out_size and scale == 1.0:
        return None
    return reference_kernels.resize(
        np.eye(in_size, dtype=np.float64), sizes=[out_size, in_size], scales=[scale, 1.0],
        mode=op.mode.data,
        coordinate_transformation_mode=op.coordinate_transformation_mode.data,
        nearest_mode=op.nearest_mode.data,
    )


def resize_replication(op: graph.ResizeOp) -> tuple[int, int] | None:
    """(s_h, s_w) when `op` repeats every pixel s_h x s_w times (nearest with integer factors
    whose index map is y // s), else None."""
    factors = []
    for axis in (2, 3):
        matrix = resize_matrix(op, axis)
        if matrix is None:
            factors.append(1)
            continue
        in_size, out_size = matrix.shape[1], matrix.shape[0]
        if out_size % in_size:
            return None
        factor = out_size // in_size
        expected = np.eye(in_size).repeat(factor, axis=0)
        if not np.array_equal(matrix, expected):
            return None
        factors.append(factor)
    return factors[0], factors[1]


def _resize(op: graph.ResizeOp) -> Verdict:
    """4-D NCHW, N and C kept; nearest or linear in any coordinate mode the reference takes
    (the lowering uses the interpolation matrices that `resize_matrix` computes)."""
    shape_in, shape_out = _shape(op.input), _shape(op.result)
    if len(shape_in) != 4:
        return False, f"resize of a rank {len(shape_in)} tensor is not supported"
    if shape_in[:2] != shape_out[:2] or any(s != 1.0 for s in graph.floats(op.scales)[:2]):
        return False, "resize of the batch or channel axis is not supported"
    try:
        for axis in (2, 3):
            resize_matrix(op, axis)
    except ValueError as error:
        return False, f"resize: {error}"
    return OK


def _split(op: graph.SplitOp) -> Verdict:
    """Any axis of a tensor of rank 1 to 4: one copy (mrvl.slice) per output."""
    rank = len(_shape(op.input))
    if not 1 <= rank <= 4:
        return False, f"split of a rank {rank} tensor is not supported"
    return OK


def _layout_transform(op: graph.LayoutTransformOp) -> Verdict:
    src, dst = op.src_layout.data, op.dst_layout.data
    if len(src) != 4:
        return False, f"layout_transform {src}->{dst} is not 4-D"
    return OK


def _softmax(op: graph.SoftmaxOp) -> Verdict:
    rank = len(_shape(op.results[0]))
    axis = op.axis.value.data
    if not 1 <= rank <= 4:
        return False, f"softmax of a rank {rank} tensor is not supported"
    if axis % rank != rank - 1:
        return False, f"softmax axis {axis} is not the last axis"
    return OK


def _layer_norm(op: graph.OnnxOp) -> Verdict:
    """ONNX LayerNormalization over the last axis with constant scale and bias, whose
    mean / inverse-std outputs are unused."""
    if any(r.uses for r in op.results[1:]):
        return False, "LayerNormalization mean / inv_std_dev outputs are used"
    rank = len(_shape(op.operands[0]))
    axis = op.attrs.data.get("axis")
    axis_v = -1 if axis is None else axis.value.data  # type: ignore[union-attr]
    if not 1 <= rank <= 4 or axis_v % rank != rank - 1:
        return False, f"LayerNormalization over axis {axis_v} of rank {rank} is not the last axis"
    if not all(is_constant(v) for v in op.operands[1:]):
        return False, "LayerNormalization scale / bias are not constants"
    return OK


MAX_NORM_ROW = 32768
"""Largest group of an InstanceNormalization / GroupNormalization (elements normalised
together): one LAYERNORM row, held whole in OCM with its fp32 gamma and beta."""


def _norm_row(op: graph.OnnxOp, row: int, what: str) -> Verdict:
    if row > MAX_NORM_ROW:
        return False, f"{what} group of {row} elements exceeds {MAX_NORM_ROW}"
    if not all(is_constant(v) for v in op.operands[1:]):
        return False, f"{what} scale / bias are not constants"
    return OK


def _instance_norm(op: graph.OnnxOp) -> Verdict:
    """InstanceNormalization of a rank-3 or rank-4 tensor (torch's GroupNorm export runs it
    on [N, G, C/G*H*W]): one LAYERNORM row per (n, c)."""
    shape = _shape(op.operands[0])
    if len(shape) not in (3, 4) or len(op.operands) != 3:
        return False, f"InstanceNormalization of a rank {len(shape)} tensor is not supported"
    return _norm_row(op, math.prod(shape[2:]), "InstanceNormalization")


def _group_norm(op: graph.OnnxOp) -> Verdict:
    """GroupNormalization (opset 18: scale / bias per group; 21: per channel) of 4-D NCHW:
    one LAYERNORM row per (n, group), then a per-channel affine."""
    shape = _shape(op.operands[0])
    groups = onnx_ints(op, "num_groups", [0])[0]
    if len(shape) != 4 or len(op.operands) != 3:
        return False, f"GroupNormalization of a rank {len(shape)} tensor is not supported"
    channels = shape[1]
    if groups < 1 or channels % groups:
        return False, f"GroupNormalization num_groups {groups} does not divide {channels}"
    if any(math.prod(_shape(v)) not in (groups, channels) for v in op.operands[1:]):
        return False, "GroupNormalization scale / bias are neither per group nor per channel"
    return _norm_row(op, channels // groups * shape[2] * shape[3], "GroupNormalization")


def reduce_mean_axes(op: graph.OnnxOp) -> list[int] | None:
    """The normalised, sorted axes of a ReduceMean (attribute, or opset-18 constant input;
    none given: every axis), None when not known at compile time or a no-op."""
    rank = len(_shape(op.operands[0]))
    attr = op.attrs.data.get("axes")
    if attr is not None:
        axes = onnx_ints(op, "axes", [])
    elif len(op.operands) == 2:
        if not is_constant(op.operands[1]):
            return None
        axes = [int(a) for a in op.operands[1].owner.to_numpy().reshape(-1)]  # type: ignore[union-attr]
    else:
        axes = []
    if not axes:
        if onnx_ints(op, "noop_with_empty_axes", [0]) != [0]:
            return None
        axes = list(range(rank))
    return sorted({a % rank for a in axes})


def _reduce_mean(op: graph.OnnxOp) -> Verdict:
    """ReduceMean over the last axes (any keepdims) of a rank 1-4 f32 tensor: an FC of
    the [rows, K] view with the weight 1/K. Its own common checks (opset 18's axes input is
    an i64 constant)."""
    x = op.operands[0]
    for value in (x, op.results[0]):
        typ = value.type
        if not isinstance(typ, TensorType) or not isinstance(typ.element_type, Float32Type):
            return False, f"dtype {_dtype_name(typ)} not supported"
        if 0 in _shape(value):
            return False, f"empty tensor {list(_shape(value))} not supported"
    rank = len(_shape(x))
    if not 1 <= rank <= 4:
        return False, f"ReduceMean of a rank {rank} tensor is not supported"
    axes = reduce_mean_axes(op)
    if axes is None:
        return False, "ReduceMean axes are not compile-time constants"
    if axes != list(range(rank - len(axes), rank)):
        return False, f"ReduceMean over axes {axes} is not over the last axes"
    return OK


ONNX_PREDICATES: dict[str, Callable[[graph.OnnxOp], Verdict]] = {
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
}
"""ONNX op types kept as graph.onnx that the accelerator takes (after the common checks).
Erf, Pow and Sqrt are taken only inside the GELU and LayerNorm patterns; ReduceMean over the
last axes also alone (`_reduce_mean`, checked in `is_legal`)."""

PATTERN_ONLY_ONNX = ("Erf", "Pow", "Sqrt", "ReduceMean")


def _always(op: Operation) -> Verdict:
    return OK


def _fused_only(op: Operation) -> Verdict:
    return False, f"{op.name}: {NOT_FUSED}"


PREDICATES: dict[type[Operation], Callable[[Operation], Verdict]] = {
    graph.Conv2DOp: _conv2d,  # type: ignore[dict-item]
    graph.DenseOp: _dense,  # type: ignore[dict-item]
    graph.GemmOp: _gemm,  # type: ignore[dict-item]
    graph.MatMulOp: _matmul,  # type: ignore[dict-item]
    graph.PadOp: _pad,  # type: ignore[dict-item]
    graph.MaxPool2DOp: _max_pool,  # type: ignore[dict-item]
    graph.AvgPool2DOp: _avg_pool,  # type: ignore[dict-item]
    graph.GlobalAvgPool2DOp: _global_pool,  # type: ignore[dict-item]
    graph.GlobalMaxPool2DOp: _global_pool,  # type: ignore[dict-item]
    graph.AddOp: _add,  # type: ignore[dict-item]
    graph.MulOp: _mul,  # type: ignore[dict-item]
    graph.DivOp: _div,  # type: ignore[dict-item]
    graph.SubOp: _sub,  # type: ignore[dict-item]
    graph.ConcatOp: _concat,  # type: ignore[dict-item]
    graph.ResizeOp: _resize,  # type: ignore[dict-item]
    graph.SplitOp: _split,  # type: ignore[dict-item]
    graph.ReshapeOp: _always,
    graph.FlattenOp: _always,
    graph.SqueezeOp: _always,
    graph.TransposeOp: _always,
    graph.LayoutTransformOp: _layout_transform,  # type: ignore[dict-item]
    graph.BiasAddOp: _fused_only,
    graph.BatchNormOp: _fused_only,
    graph.ReluOp: _activation,
    graph.ClipOp: _activation,
    graph.SigmoidOp: _activation,
    graph.TanhOp: _activation,
    graph.LeakyReluOp: _activation,
    graph.HardSigmoidOp: _activation,
    graph.HardSwishOp: _activation,
    graph.SoftmaxOp: _softmax,  # type: ignore[dict-item]
}
"""Graph op class -> its predicate (after the common dtype and batch checks)."""


def is_legal(op: Operation) -> Verdict:
    """(True, "") when the accelerator can take `op`, else (False, reason)."""
    if isinstance(op, graph.OnnxOp):
        if op.op_type.data == "Gather":
            return _gather(op)
        if op.op_type.data == "ConvTranspose":
            ok = check_common(op)
            if not ok[0]:
                return ok
            reason = conv_transpose_phases(op)[1]
            return (reason == "", reason)
        if op.op_type.data == "ReduceMean":
            return _reduce_mean(op)
        onnx_predicate = ONNX_PREDICATES.get(op.op_type.data)
        if onnx_predicate is None:
            if op.op_type.data in PATTERN_ONLY_ONNX:
                return False, (f"graph.onnx {op.op_type.data}: only inside a GELU or "
                               "LayerNorm pattern")
            return False, f"graph.onnx {op.op_type.data}: not an accelerator op"
        ok = check_common(op)
        if not ok[0]:
            return ok
        return onnx_predicate(op)
    predicate = PREDICATES.get(type(op))
    if predicate is None:
        return False, f"{op.name}: not an accelerator op"
    ok = check_common(op)
    if not ok[0]:
        return ok
    return predicate(op)
