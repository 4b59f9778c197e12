"""Reference (numpy) semantics of the `mrvl` layer ops, for the reference executor.

Each layer is one plain numpy function over float32 arrays (NHWC data, OHWI kernels), so that
the backend and the simulator tests can call them directly too. `MrvlFunctions` plugs them into
the xDSL interpreter; importing this module registers it with `sim.reference` when that module
provides `register_reference_impls`.

Invariant: a partitioned module (mrvl layers + graph ops) run through the reference executor
equals the original graph module (rtol 1e-4 / atol 1e-5: only float summation order differs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls

from mrvl.dialects import mrvl


def activate(
    y: np.ndarray, activation: str, clip: tuple[float, float] | None, alpha: float | None = None
) -> np.ndarray:
    """Apply an activation ("none", "relu", "clip", "sigmoid"; standalone layers also
    "tanh" and "leaky_relu" with slope `alpha`)."""
    if activation == "relu":
        return np.maximum(y, np.float32(0))
    if activation == "clip":
        assert clip is not None
        return np.clip(y, np.float32(clip[0]), np.float32(clip[1]))
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-y.astype(np.float64)))).astype(np.float32)
    if activation == "silu":
        wide = y.astype(np.float64)
        return (wide / (1.0 + np.exp(-wide))).astype(np.float32)
    if activation == "tanh":
        return np.tanh(y.astype(np.float64)).astype(np.float32)
    if activation == "leaky_relu":
        assert alpha is not None
        return np.where(y < 0, y * np.float32(alpha), y).astype(np.float32)
    if activation == "gelu":
        y64 = y.astype(np.float64)
        return (0.5 * y64 * (1.0 + _erf(y64 / np.sqrt(2.0)))).astype(np.float32)
    if activation == "gelu_tanh":
        y64 = y.astype(np.float64)
        inner = np.sqrt(2.0 / np.pi) * (y64 + 0.044715 * y64**3)
        return (0.5 * y64 * (1.0 + np.tanh(inner))).astype(np.float32)
    return y


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (math.erf per element; numpy has no erf)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def matmul(a: np.ndarray, b: np.ndarray, a_perm, b_perm) -> np.ndarray:
    """numpy matmul of the operands read through their permutations (float64 sums)."""
    if a_perm is not None:
        a = np.transpose(a, a_perm)
    if b_perm is not None:
        b = np.transpose(b, b_perm)
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float) -> np.ndarray:
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the last axis (biased var)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + np.float64(np.float32(epsilon)))
    return (y * gamma.astype(np.float64) + beta.astype(np.float64)).astype(np.float32)


def _windows(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    pad_value: float,
) -> np.ndarray:
    """[N, OH, OW, C, KH, KW] window view of NHWC `x` (pads top, left, bottom, right)."""
    top, left, bottom, right = pads
    xp = np.pad(
        x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=np.float32(pad_value)
    )
    kh = dilations[0] * (kernel[0] - 1) + 1
    kw = dilations[1] * (kernel[1] - 1) + 1
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))
    return win[:, :: strides[0], :: strides[1], :, :: dilations[0], :: dilations[1]]


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    strides=(1, 1),
    pads=(0, 0, 0, 0),
    dilations=(1, 1),
    groups: int = 1,
    activation: str = "none",
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """NHWC x OHWI convolution with `groups`, bias and fused activation."""
    o, kh, kw, cg = w.shape
    win = _windows(x, (kh, kw), tuple(strides), tuple(pads), tuple(dilations), 0.0)
    n, oh, ow = win.shape[:3]
    og = o // groups
    if groups == 1:
        y = np.tensordot(win, w, axes=([3, 4, 5], [3, 1, 2]))
    else:
        wg = win.reshape(n, oh, ow, groups, cg, kh, kw)
        kg = w.reshape(groups, og, kh, kw, cg)
        y = np.einsum("nhwgcij,goijc->nhwgo", wg, kg, optimize=True).reshape(n, oh, ow, o)
    y = y.astype(np.float32)
    if b is not None:
        y = y + b.astype(np.float32)
    return activate(y, activation, clip)


def fc(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    activation: str = "none",
    clip: tuple[float, float] | None = None,
    weights_need_transform: bool = False,
) -> np.ndarray:
    """flatten(x) @ w.T + b; with `weights_need_transform` x is NHWC flattened in NCHW order."""
    if weights_need_transform:
        x = np.transpose(x, (0, 3, 1, 2))
    y = (x.reshape(x.shape[0], -1) @ w.T).astype(np.float32)
    if b is not None:
        y = y + b.astype(np.float32)
    return activate(y, activation, clip)


def maxpool2d(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    win = _windows(x, tuple(kernel), tuple(strides), tuple(pads), (1, 1), -np.inf)
    return win.max(axis=(4, 5)).astype(np.float32)


def avgpool2d(x: np.ndarray, kernel, strides, pads, count_include_pad: int) -> np.ndarray:
    win = _windows(x, tuple(kernel), tuple(strides), tuple(pads), (1, 1), 0.0)
    total = win.sum(axis=(4, 5), dtype=np.float64)
    if count_include_pad:
        return (total / (kernel[0] * kernel[1])).astype(np.float32)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.float32)
    count = _windows(ones, tuple(kernel), tuple(strides), tuple(pads), (1, 1), 0.0).sum(
        axis=(4, 5), dtype=np.float64
    )
    return (total / count).astype(np.float32)


def _ints(attr) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def _clip(op) -> tuple[float, float] | None:
    if op.clip_min is None or op.clip_max is None:
        return None
    return (op.clip_min.value.data, op.clip_max.value.data)


def _f32(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def run_layer(op: mrvl.MrvlLayerOp, args: tuple[Any, ...]) -> np.ndarray:
    """Evaluate one layer op on numpy arguments (in operand order)."""
    if isinstance(op, mrvl.Conv2DOp):
        return conv2d(
            _f32(args[0]),
            _f32(args[1]),
            _f32(args[2]) if len(args) > 2 else None,
            _ints(op.strides),
            _ints(op.pads),
            _ints(op.dilations),
            op.groups.value.data,
            op.activation.data,
            _clip(op),
        )
    if isinstance(op, mrvl.FCOp):
        return fc(
            _f32(args[0]),
            _f32(args[1]),
            _f32(args[2]) if len(args) > 2 else None,
            op.activation.data,
            _clip(op),
            op.weights_need_transform is not None,
        )
    if isinstance(op, mrvl.Maxpool2DOp):
        return maxpool2d(_f32(args[0]), _ints(op.kernel_shape), _ints(op.strides), _ints(op.pads))
    if isinstance(op, mrvl.Avgpool2DOp):
        return avgpool2d(
            _f32(args[0]),
            _ints(op.kernel_shape),
            _ints(op.strides),
            _ints(op.pads),
            op.count_include_pad.value.data,
        )
    if isinstance(op, mrvl.GlobalAvgpool2DOp):
        return _f32(args[0]).mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    if isinstance(op, mrvl.GlobalMaxpool2DOp):
        return _f32(args[0]).max(axis=(1, 2), keepdims=True)
    if isinstance(op, mrvl.Sum2DOp):
        return activate(_f32(args[0]) + _f32(args[1]), op.activation.data, _clip(op))
    if isinstance(op, mrvl.Mul2DOp):
        return activate(_f32(args[0]) * _f32(args[1]), op.activation.data, _clip(op))
    if isinstance(op, mrvl.Div2DOp):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quotient = _f32(args[0]) / _f32(args[1])
        return activate(quotient, op.activation.data, _clip(op))
    if isinstance(op, mrvl.ActivationOp):
        alpha = None if op.alpha is None else op.alpha.value.data
        return activate(_f32(args[0]), op.activation.data, _clip(op), alpha)
    if isinstance(op, mrvl.ConcatOp):
        return np.concatenate([_f32(a) for a in args], axis=op.axis.value.data)
    if isinstance(op, mrvl.LayoutTransformOp):
        return np.ascontiguousarray(np.transpose(_f32(args[0]), op.permutation()))
    if isinstance(op, mrvl.TransposeOp):
        return np.ascontiguousarray(np.transpose(_f32(args[0]), _ints(op.perm)))
    if isinstance(op, mrvl.SliceOp):
        axis, start = op.axis.value.data, op.start.value.data
        size = mrvl.tensor_shape(op.output)[axis]
        return np.ascontiguousarray(np.take(_f32(args[0]), range(start, start + size), axis))
    if isinstance(op, mrvl.ReshapeOp | mrvl.BatchFlattenOp | mrvl.SqueezeOp):
        return _f32(args[0]).reshape(mrvl.tensor_shape(op.results[0]))
    if isinstance(op, mrvl.MatMulOp):
        y = matmul(_f32(args[0]), _f32(args[1]),
                   None if op.a_perm is None else _ints(op.a_perm),
                   None if op.b_perm is None else _ints(op.b_perm))
        if op.softmax_scale is None:
            return y
        y = y * np.float32(op.softmax_scale.value.data)
        if len(args) > 2:  # the additive attention mask
            y = y + _f32(args[2])
        return softmax(y)
    if isinstance(op, mrvl.SoftmaxOp):
        return softmax(_f32(args[0]))
    if isinstance(op, mrvl.LayerNormOp):
        return layer_norm(_f32(args[0]), _f32(args[1]), _f32(args[2]), op.epsilon.value.data)
    # Unreachable for the layers of mrvl.LAYER_OPS (tests/test_mrvl_reference.py checks that
    # each has a branch above); a new layer op must add its semantics here.
    raise NotImplementedError(f"no reference semantics for {op.name}")


@register_impls
class MrvlFunctions(InterpreterFunctions):
    """Interpreter implementations of every mrvl layer op (each one calls `run_layer`)."""

    @impl(mrvl.Conv2DOp)
    def run_conv2d(self, interpreter: Interpreter, op: mrvl.Conv2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.FCOp)
    def run_fc(self, interpreter: Interpreter, op: mrvl.FCOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.Maxpool2DOp)
    def run_maxpool2d(self, interpreter: Interpreter, op: mrvl.Maxpool2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.Avgpool2DOp)
    def run_avgpool2d(self, interpreter: Interpreter, op: mrvl.Avgpool2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.GlobalAvgpool2DOp)
    def run_global_avgpool2d(
        self, interpreter: Interpreter, op: mrvl.GlobalAvgpool2DOp, args: tuple[Any, ...]
    ):
        return (run_layer(op, args),)

    @impl(mrvl.GlobalMaxpool2DOp)
    def run_global_maxpool2d(
        self, interpreter: Interpreter, op: mrvl.GlobalMaxpool2DOp, args: tuple[Any, ...]
    ):
        return (run_layer(op, args),)

    @impl(mrvl.Sum2DOp)
    def run_sum2d(self, interpreter: Interpreter, op: mrvl.Sum2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.Mul2DOp)
    def run_mul2d(self, interpreter: Interpreter, op: mrvl.Mul2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.Div2DOp)
    def run_div2d(self, interpreter: Interpreter, op: mrvl.Div2DOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.ActivationOp)
    def run_activation(
        self, interpreter: Interpreter, op: mrvl.ActivationOp, args: tuple[Any, ...]
    ):
        return (run_layer(op, args),)

    @impl(mrvl.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: mrvl.ConcatOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.ReshapeOp)
    def run_reshape(self, interpreter: Interpreter, op: mrvl.ReshapeOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.BatchFlattenOp)
    def run_batch_flatten(
        self, interpreter: Interpreter, op: mrvl.BatchFlattenOp, args: tuple[Any, ...]
    ):
        return (run_layer(op, args),)

    @impl(mrvl.SqueezeOp)
    def run_squeeze(self, interpreter: Interpreter, op: mrvl.SqueezeOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.LayoutTransformOp)
    def run_layout_transform(
        self, interpreter: Interpreter, op: mrvl.LayoutTransformOp, args: tuple[Any, ...]
    ):
        return (run_layer(op, args),)

    @impl(mrvl.TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: mrvl.TransposeOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.SliceOp)
    def run_slice(self, interpreter: Interpreter, op: mrvl.SliceOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)


    @impl(mrvl.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: mrvl.MatMulOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: mrvl.SoftmaxOp, args: tuple[Any, ...]):
        return (run_layer(op, args),)

    @impl(mrvl.LayerNormOp)
    def run_layernorm(self, interpreter: Interpreter, op: mrvl.LayerNormOp,
                      args: tuple[Any, ...]):
        return (run_layer(op, args),)


def _register() -> None:
    try:
        from mrvl.sim import reference
    except ImportError:
        return
    register = getattr(reference, "register_reference_impls", None)
    if register is not None:
        register(MrvlFunctions)


_register()
