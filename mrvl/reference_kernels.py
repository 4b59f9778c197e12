"""Pure numpy implementations of the graph-dialect ops, one function per op.

Each function is named like the graph op it implements (`graph.max_pool2d` -> `max_pool2d`),
takes its tensor operands positionally and its attributes as keyword arguments whose defaults
are ONNX's defaults for the corresponding ONNX operator. They are the semantics the reference
executor (`mrvl.sim.reference`) gives the graph dialect, and they are reusable by any other part
(constant folding, the mrvl-layer reference, tests).

Invariants:
- No function mutates its inputs; results are fresh arrays (or views of inputs where the op is
  a pure re-interpretation, like `reshape`), in the dtype ONNX gives the op (float32 in, float32
  out: no silent promotion to float64).
- Pads are in ONNX order: all begins, then all ends.
- 2-D spatial ops accept a `layout` ("NCHW" or "NHWC") and compute in NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ---------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------


def layout_perm(src: str, dst: str) -> tuple[int, ...]:
    """The transpose permutation that turns a `src`-layout tensor into `dst` layout.

    `src` and `dst` are strings of the same letters, e.g. "NCHW" and "NHWC" give (0, 2, 3, 1).
    """
    if sorted(src) != sorted(dst) or len(set(src)) != len(src):
        raise ValueError(f"expected two layouts with the same letters, got {src!r} and {dst!r}")
    return tuple(src.index(c) for c in dst)


def _to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NCHW":
        return x
    if layout == "NHWC":
        return x.transpose(0, 3, 1, 2)
    raise ValueError(f"expected layout NCHW or NHWC, got {layout!r}")


def _from_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NCHW":
        return x
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _pair(values: Sequence[int] | None, default: int, n: int = 2) -> tuple[int, ...]:
    if values is None:
        return (default,) * n
    return tuple(int(v) for v in values)


# ---------------------------------------------------------------------------------------------
# Convolution and dense algebra
# ---------------------------------------------------------------------------------------------


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    groups: int = 1,
    data_layout: str = "NCHW",
    kernel_layout: str = "OIHW",
) -> np.ndarray:
    """ONNX Conv (2-D, explicit pads top, left, bottom, right) via im2col + batched GEMM."""
    x = _to_nchw(x, data_layout)
    if kernel_layout == "OHWI":
        weight = weight.transpose(0, 3, 1, 2)
    elif kernel_layout != "OIHW":
        raise ValueError(f"expected kernel layout OIHW or OHWI, got {kernel_layout!r}")
    sh, sw = _pair(strides, 1)
    dh, dw = _pair(dilations, 1)
    pt, pl, pb, pr = _pair(pads, 0, 4)
    n, c, _, _ = x.shape
    o, cg, kh, kw = weight.shape
    g = int(groups)
    if c != cg * g or o % g != 0:
        raise ValueError(
            f"expected input channels {cg * g} and output channels divisible by {g}, "
            f"got {c} and {o}"
        )
    if pt or pl or pb or pr:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = sliding_window_view(x, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    ho, wo = win.shape[2], win.shape[3]
    # win: (N, C, Ho, Wo, kh, kw) -> cols (N, G, Ho*Wo, Cg*kh*kw)
    cols = win.reshape(n, g, cg, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
    cols = cols.reshape(n, g, ho * wo, cg * kh * kw)
    w = weight.reshape(g, o // g, cg * kh * kw).transpose(0, 2, 1)
    y = np.matmul(cols, w)  # (N, G, Ho*Wo, O/G)
    y = y.transpose(0, 1, 3, 2).reshape(n, o, ho, wo)
    if bias is not None:
        y = y + bias.reshape(1, o, 1, 1)
    return _from_nchw(np.ascontiguousarray(y, dtype=np.result_type(x, weight)), data_layout)


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    trans_a: int = 0,
    trans_b: int = 0,
) -> np.ndarray:
    """ONNX Gemm: alpha * A' @ B' + beta * C (C unidirectionally broadcast)."""
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    y = np.asarray(a @ b)
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if c is not None:
        y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
    return y.astype(a.dtype, copy=False)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX MatMul (numpy matmul semantics, batch broadcasting, 1-D promotion)."""
    return np.asarray(np.matmul(a, b))


def dense(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """x[N, K] @ weight[O, K].T -> [N, O]."""
    return np.asarray(x @ weight.T)


def bias_add(x: np.ndarray, bias: np.ndarray, *, axis: int = 1) -> np.ndarray:
    """x + bias broadcast along `axis` (bias is 1-D of length x.shape[axis])."""
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = bias.shape[0]
    return x + bias.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Element-wise
# ---------------------------------------------------------------------------------------------


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.add(a, b))


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.subtract(a, b))


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.multiply(a, b))


def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    dtype = np.result_type(a, b)
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(np.divide(a, b))
    q = np.floor_divide(a, b)
    if np.issubdtype(dtype, np.signedinteger):
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        q = q + fix.astype(dtype)
    return np.asarray(q).astype(dtype, copy=False)


def relu(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x, x.dtype.type(0)))


def leaky_relu(x: np.ndarray, *, alpha: float = 0.01) -> np.ndarray:
    return np.where(x < 0, x * x.dtype.type(alpha), x)


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)


def clip(
    x: np.ndarray, *, min: float | None = None, max: float | None = None  # noqa: A002
) -> np.ndarray:
    """ONNX Clip: min(max(x, min), max); an absent bound does not clip (min > max gives max)."""
    y = x
    if min is not None:
        y = np.maximum(y, np.asarray(min).astype(x.dtype))
    if max is not None:
        y = np.minimum(y, np.asarray(max).astype(x.dtype))
    if y is x:
        return x.copy()
    # np.maximum of 0-d arrays gives a numpy scalar; asarray makes it an array again.
    return np.asarray(y, dtype=x.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def hard_sigmoid(x: np.ndarray, *, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    t = x.dtype.type
    return np.asarray(np.clip(x * t(alpha) + t(beta), t(0), t(1)))


def hard_swish(x: np.ndarray) -> np.ndarray:
    return np.asarray(x * hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5))


def tanh(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.tanh(x))


def softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """ONNX Softmax (opset >= 13: along one axis)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return np.asarray(e / e.sum(axis=axis, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Pooling and normalization
# ---------------------------------------------------------------------------------------------


def _pool_geometry(
    size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: int
) -> tuple[int, int]:
    """Output size and extra end padding needed by ceil mode, for one spatial axis."""
    ek = (k - 1) * d + 1
    span = size + pb + pe - ek
    if ceil_mode:
        out = -(-span // s) + 1
        # The last window must start inside the input or the begin padding.
        if (out - 1) * s >= size + pb:
            out -= 1
    else:
        out = span // s + 1
    extra = max(0, (out - 1) * s + ek - (size + pb + pe))
    return out, extra


def _pool_windows(
    x: np.ndarray,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None,
    pads: Sequence[int] | None,
    dilations: Sequence[int] | None,
    ceil_mode: int,
    fill: float,
) -> tuple[np.ndarray, tuple[int, int, int, int], tuple[int, int]]:
    kh, kw = _pair(kernel_shape, 1)
    sh, sw = _pair(strides, 1)
    dh, dw = _pair(dilations, 1)
    pt, pl, pb, pr = _pair(pads, 0, 4)
    _, _, h, w = x.shape
    ho, eh = _pool_geometry(h, kh, sh, dh, pt, pb, ceil_mode)
    wo, ew = _pool_geometry(w, kw, sw, dw, pl, pr, ceil_mode)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew)), constant_values=fill)
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, ::dh, ::dw]
    return win, (pt, pl, pb, pr), (eh, ew)


def max_pool2d(
    x: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    ceil_mode: int = 0,
    layout: str = "NCHW",
) -> np.ndarray:
    """ONNX MaxPool (2-D, explicit pads); padding never wins the max."""
    xc = _to_nchw(x, layout)
    if np.issubdtype(xc.dtype, np.floating):
        fill = -np.inf
    else:
        fill = np.iinfo(xc.dtype).min
    win, _, _ = _pool_windows(xc, kernel_shape, strides, pads, dilations, ceil_mode, fill)
    return _from_nchw(win.max(axis=(4, 5)).astype(xc.dtype, copy=False), layout)


def avg_pool2d(
    x: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    layout: str = "NCHW",
) -> np.ndarray:
    """ONNX AveragePool (2-D, explicit pads).

    The divisor counts the input elements under the window, plus the explicit pads when
    `count_include_pad` is set; the extra end region added by ceil mode never counts.
    """
    xc = _to_nchw(x, layout)
    win, (pt, pl, pb, pr), (eh, ew) = _pool_windows(
        xc, kernel_shape, strides, pads, dilations, ceil_mode, 0.0
    )
    total = win.sum(axis=(4, 5), dtype=np.float64 if xc.dtype == np.float64 else np.float32)
    _, _, h, w = xc.shape
    if count_include_pad:
        ones = np.ones((1, 1, h + pt + pb, w + pl + pr), np.float32)
        mask = np.pad(ones, ((0, 0), (0, 0), (0, eh), (0, ew)))
    else:
        ones = np.ones((1, 1, h, w), np.float32)
        mask = np.pad(ones, ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew)))
    mwin, _, _ = _pool_windows(mask, kernel_shape, strides, (0, 0, 0, 0), dilations, 0, 0.0)
    mwin = mwin[:, :, : win.shape[2], : win.shape[3]]
    count = mwin.sum(axis=(4, 5))
    return _from_nchw((total / count).astype(xc.dtype, copy=False), layout)


def global_avg_pool2d(x: np.ndarray, *, layout: str = "NCHW") -> np.ndarray:
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    return x.mean(axis=axes, keepdims=True, dtype=np.float32).astype(x.dtype, copy=False)


def global_max_pool2d(x: np.ndarray, *, layout: str = "NCHW") -> np.ndarray:
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    return x.max(axis=axes, keepdims=True)


def batch_norm(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    epsilon: float = 1e-5,
    layout: str = "NCHW",
) -> np.ndarray:
    """ONNX BatchNormalization in inference mode; the channel axis is 1 (NCHW) or last (NHWC)."""
    axis = x.ndim - 1 if layout == "NHWC" else 1
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    t = x.dtype.type
    inv = (scale / np.sqrt(var + t(epsilon))).astype(x.dtype, copy=False)
    y = (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# Data movement
# ---------------------------------------------------------------------------------------------


def pad(
    x: np.ndarray, *, pads: Sequence[int], mode: str = "constant", value: float = 0.0
) -> np.ndarray:
    """ONNX Pad with full-rank pads (begins then ends); negative pads crop."""
    r = x.ndim
    pads = [int(p) for p in pads]
    if len(pads) != 2 * r:
        raise ValueError(f"expected {2 * r} pads, got {len(pads)}")
    begins, ends = pads[:r], pads[r:]
    crop = tuple(
        slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begins, ends))
    )
    x = x[crop]
    width = [(max(0, b), max(0, e)) for b, e in zip(begins, ends)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    if mode in ("reflect", "edge", "wrap"):
        return np.pad(x, width, mode=mode)
    raise ValueError(f"expected pad mode constant, reflect, edge or wrap, got {mode!r}")


def concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def split(x: np.ndarray, *, axis: int = 0, split: Sequence[int]) -> list[np.ndarray]:
    """ONNX Split with explicit sizes (they sum to x.shape[axis])."""
    bounds = np.cumsum([int(s) for s in split])[:-1]
    return [np.asarray(p, order="C") for p in np.split(x, bounds, axis=axis)]


def reshape(x: np.ndarray, *, shape: Sequence[int]) -> np.ndarray:
    """Reshape to a fully static shape (no 0 / -1 left: the importer resolves them)."""
    return x.reshape(tuple(int(s) for s in shape))


def flatten(x: np.ndarray, *, axis: int = 1) -> np.ndarray:
    axis = axis % x.ndim if axis != x.ndim else axis
    outer = math.prod(x.shape[:axis])
    return x.reshape(outer, -1) if x.size else x.reshape(outer, math.prod(x.shape[axis:]))


def squeeze(x: np.ndarray, *, axes: Sequence[int] | None = None) -> np.ndarray:
    if axes is None or len(axes) == 0:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(int(a) for a in axes))


def unsqueeze(x: np.ndarray, *, axes: Sequence[int]) -> np.ndarray:
    rank = x.ndim + len(axes)
    return np.expand_dims(x, axis=tuple(sorted(int(a) % rank for a in axes)))


def transpose(x: np.ndarray, *, perm: Sequence[int] | None = None) -> np.ndarray:
    if perm is None or len(perm) == 0:
        return np.asarray(x.transpose(), order="C")
    return np.asarray(x.transpose(tuple(int(p) for p in perm)), order="C")


def layout_transform(x: np.ndarray, *, src_layout: str, dst_layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(layout_perm(src_layout, dst_layout)))


def identity(x: np.ndarray) -> np.ndarray:
    return x


def dropout(x: np.ndarray, *, ratio: float = 0.5) -> np.ndarray:
    """Inference-mode Dropout: the identity."""
    return x


# ---------------------------------------------------------------------------------------------
# Resize
# ---------------------------------------------------------------------------------------------


def _source_coords(
    out_size: int, in_size: int, scale: float, mode: str
) -> np.ndarray:
    x = np.arange(out_size, dtype=np.float64)
    out_float = scale * in_size
    if mode == "align_corners":
        # The spec's length_resized is the (integer) output length, as in onnxruntime; ONNX's
        # Python reference uses in_size * scale instead, which differs when that is fractional.
        if out_size == 1:
            return np.zeros_like(x)
        return x * (in_size - 1) / (out_size - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "pytorch_half_pixel":
        if out_size == 1:
            return np.full_like(x, -0.5)
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_size / out_float
        offset = in_size / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ValueError(f"unsupported coordinate_transformation_mode {mode!r}")


def _nearest_index(coord: np.ndarray, in_size: int, nearest_mode: str) -> np.ndarray:
    lo = np.floor(coord)
    frac = coord - lo
    if nearest_mode == "round_prefer_floor":
        idx = np.where(frac > 0.5, lo + 1, lo)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(frac >= 0.5, lo + 1, lo)
    elif nearest_mode == "floor":
        idx = lo
    elif nearest_mode == "ceil":
        idx = np.ceil(coord)
    else:
        raise ValueError(f"unsupported nearest_mode {nearest_mode!r}")
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


def resize(
    x: np.ndarray,
    *,
    sizes: Sequence[int],
    scales: Sequence[float] | None = None,
    mode: str = "nearest",
    coordinate_transformation_mode: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
) -> np.ndarray:
    """ONNX Resize, modes nearest and linear (n-linear, separable), no roi / antialias.

    `sizes` is the full static output shape; `scales` the per-axis scale factors ONNX uses in
    the coordinate transformation (sizes / input shape when not given).
    """
    if mode not in ("nearest", "linear"):
        raise ValueError(f"expected resize mode nearest or linear, got {mode!r}")
    if scales is None or len(scales) == 0:
        scales = [o / i for o, i in zip(sizes, x.shape)]
    y = x
    for axis, (out_size, in_size, scale) in enumerate(zip(sizes, x.shape, scales)):
        out_size, scale = int(out_size), float(scale)
        if out_size == in_size and scale == 1.0:
            continue
        coord = _source_coords(out_size, in_size, scale, coordinate_transformation_mode)
        if mode == "nearest":
            y = np.take(y, _nearest_index(coord, in_size, nearest_mode), axis=axis)
            continue
        lo = np.floor(coord)
        frac = coord - lo
        i0 = np.clip(lo, 0, in_size - 1).astype(np.int64)
        i1 = np.clip(lo + 1, 0, in_size - 1).astype(np.int64)
        shape = [1] * y.ndim
        shape[axis] = out_size
        frac = frac.reshape(shape)
        a = np.take(y, i0, axis=axis).astype(np.float64)
        b = np.take(y, i1, axis=axis).astype(np.float64)
        y = (a * (1 - frac) + b * frac).astype(x.dtype)
    return np.ascontiguousarray(y)
