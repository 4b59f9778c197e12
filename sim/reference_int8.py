"""The documented int8 semantics of the mrvl layers (docs/backend.md "Numerics", docs/isa.md
CONV / GEMM / POOL / ELTWISE / ACT / CONVERT), in numpy, as an oracle for the simulator.

Input: an accelerator function annotated by `mrvl-quantize` in int8 mode (every layer's
`mrvl.scale` / `mrvl.zero_point`, the function's input parameters) and its inputs already
quantised (the int8 arrays the device receives). Output: every layer's int8 output, computed
from the documented rules alone, not from the compiler's arrays:

- weights: step `max |w[o]| / 127` per output channel (fp32), `rint(w / step)` clipped to
  +-127; bias `rint(bias / (s_in * step))` int32; requantisation scale `(s_in * step) / s_out`
  (fp32 multiplies);
- CONV / GEMM: exact integer sum of `(x - in_zp) * w` (padding taps add nothing) plus the
  bias, rounded to fp32, times the requantisation scale (fp32), the fused activation on
  output steps (clip bounds divided by the output step, stored as fp32), then
  `saturate(rint_half_even(v) + out_zp)`; a CONV / GEMM annotated `mrvl.real_output` (a
  sub-graph output, lowering/mrvl_quantize.py `real_output_layers`) multiplies by the
  accumulator step `s_in * step` instead, applies its activation on the real values and
  keeps them as fp32 (no int8 store);
- max pools keep their input's parameters: MAX of `q - zp`; average pools have their own:
  AVG as an fp32 sum (exact for integers) of `q - in_zp` divided by the tap count in fp32,
  times `fp32(s_in / s_out)` when the steps differ, stored with the output's zero point;
- sum / mul / activation / concat dequantise in fp32 (`(q - zp) * step`), apply the op and
  the activation in fp32, multiply by `fp32(1 / s_out)` and store as above;
- reshapes, flattens and transposes move the int8 values;
- MatMul of two activations and LayerNorm compute in fp16: the load dequantises
  (`fp16((q - zp) * step)`, fp32 then RNE), GEMM sums the fp32 products in index order and
  rounds to fp16 / LAYERNORM follows docs/isa.md on the fp16 rows, and the store
  quantises (`saturate(rint_half_even(v * fp32(1 / s_out)) + zp)`).

Every operation above is one IEEE fp32 or exact integer step, so an implementation of the
documented semantics (the C simulator) must agree bit for bit.

Softmax (standalone, or attention's epilogue on the fp16 scores) runs in fp16 like MatMul:
SOFTMAX of docs/isa.md on the fp16 rows, with the C library's expf (called through ctypes:
the function the simulator calls).

Scope: the activations none, relu, clip (fused or standalone) and leaky_relu. int8 sigmoid,
tanh and gelu go through the vector unit's transcendentals (expf, tanhf, erff) in ACT,
whose rounding this oracle does not model: a model using them is refused with
NotImplementedError (the tests that use this
oracle build models without them; the simulator's ACT is checked in
tests/test_eltwise_act_layers.py against the reference executor by Marvell's rule).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, FloatAttr, IntegerAttr
from xdsl.ir import SSAValue

from mrvl.dialects import mrvl
from mrvl.lowering.mrvl_quantize import is_real_output
from mrvl.sim import reference_mrvl as ref

_F32 = np.float32


def _param(attr) -> float | int:
    assert isinstance(attr, FloatAttr | IntegerAttr), attr
    return attr.value.data


def store_int8(v: np.ndarray, zp: int) -> np.ndarray:
    """fp32 `v` stored to INT8: `saturate(rint_half_even(v) + zp)`, NaN -> zp."""
    q = np.rint(np.asarray(v, _F32)).astype(np.float64) + zp
    q = np.where(np.isnan(q), float(zp), q)
    return np.clip(q, -128, 127).astype(np.int32)


def dequantize(q: np.ndarray, step: float, zp: int) -> np.ndarray:
    """fp32 `(q - zp) * step` (the SCALE read of ELTWISE / ACT / CONVERT)."""
    return (np.asarray(q, _F32) - _F32(zp)) * _F32(step)


def quantize_weights(w: np.ndarray, bias: np.ndarray | None, s_in: float, s_out: float):
    """(int weights, int bias or None, fp32 requantisation scale per output channel)."""
    o = w.shape[0]
    flat = np.abs(w.reshape(o, -1).astype(_F32))
    peak = flat.max(axis=1) if flat.shape[1] else np.zeros(o, _F32)
    step = (np.where(peak > 0, peak, _F32(1.0)) / _F32(127.0)).astype(_F32)
    wq = np.clip(np.rint(w / step.reshape((o,) + (1,) * (w.ndim - 1))), -127, 127)
    acc_step = (_F32(s_in) * step).astype(_F32)
    bq = None
    if bias is not None:
        bq = np.clip(np.rint(bias / acc_step), -(2**31), 2**31 - 1).astype(np.int64)
    return wq.astype(np.int64), bq, (acc_step / _F32(s_out)).astype(_F32)


def _activate_steps(v: np.ndarray, op, s_out: float) -> np.ndarray:
    """The fused activation of a CONV / GEMM, on fp32 values in output steps."""
    name = op.activation_str()
    if name == "relu":
        return np.where(v > 0, v, _F32(0)).astype(_F32)
    if name == "clip":
        lo, hi = ref._clip(op)
        lo = min(lo, hi)
        alpha, beta = _F32(lo / s_out), _F32(hi / s_out)
        return np.where(v < alpha, alpha, np.where(v > beta, beta, v)).astype(_F32)
    if name != "none":
        raise NotImplementedError(f"int8 emulation: fused activation {name}")
    return v


def _activate_real(v: np.ndarray, op) -> np.ndarray:
    """A standalone or element-wise layer's activation on fp32 real values (ACT rules)."""
    name = op.activation_str()
    if name == "relu":
        return np.where(v > 0, v, _F32(0)).astype(_F32)
    if name == "clip":
        lo, hi = ref._clip(op)
        lo, hi = _F32(min(lo, hi)), _F32(hi)
        return np.where(v < lo, lo, np.where(v > hi, hi, v)).astype(_F32)
    if name == "leaky_relu":
        alpha = _F32(op.properties["alpha"].value.data)
        return np.where(v < 0, alpha * v, v).astype(_F32)
    if name != "none":
        raise NotImplementedError(f"int8 emulation: activation {name}")
    return v


def _accumulate(op, x: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """Exact integer sums (float64 holds them: |sum| < 2^31) of a CONV or an FC."""
    if isinstance(op, mrvl.FCOp):
        if op.weights_need_transform is not None:
            x = np.transpose(x, (0, 3, 1, 2))
        return x.reshape(x.shape[0], -1) @ wq.T
    o, kh, kw, cg = wq.shape
    win = ref._windows(x, (kh, kw), ref._ints(op.strides), ref._ints(op.pads),
                       ref._ints(op.dilations), 0.0)
    groups = op.groups.value.data
    n, oh, ow = win.shape[:3]
    if groups == 1:
        return np.tensordot(win, wq, axes=([3, 4, 5], [3, 1, 2]))
    wg = win.reshape(n, oh, ow, groups, cg, kh, kw)
    kg = wq.reshape(groups, o // groups, kh, kw, cg)
    return np.einsum("nhwgcij,goijc->nhwgo", wg, kg, optimize=True).reshape(n, oh, ow, o)


def _pool(op, x: np.ndarray) -> np.ndarray:
    """POOL on `q - zp` values (fp32), before the store."""
    if isinstance(op, mrvl.GlobalMaxpool2DOp):
        return x.max(axis=(1, 2), keepdims=True).astype(_F32)
    if isinstance(op, mrvl.GlobalAvgpool2DOp):
        total = x.sum(axis=(1, 2), keepdims=True, dtype=np.float64).astype(_F32)
        return (total / _F32(x.shape[1] * x.shape[2])).astype(_F32)
    kernel, strides, pads = (ref._ints(op.kernel_shape), ref._ints(op.strides),
                             ref._ints(op.pads))
    if isinstance(op, mrvl.Maxpool2DOp):
        return ref._windows(x, kernel, strides, pads, (1, 1), -np.inf).max(axis=(4, 5))
    total = ref._windows(x, kernel, strides, pads, (1, 1), 0.0).sum(axis=(4, 5),
                                                                     dtype=np.float64)
    if op.count_include_pad.value.data:
        count = np.float64(kernel[0] * kernel[1])
    else:
        ones = np.ones((1, *x.shape[1:3], 1), dtype=np.float64)
        count = ref._windows(ones, kernel, strides, pads, (1, 1), 0.0).sum(axis=(4, 5))
    return (total.astype(_F32) / np.asarray(count, _F32)).astype(_F32)


_MOVES = (mrvl.ReshapeOp, mrvl.BatchFlattenOp, mrvl.SqueezeOp, mrvl.LayoutTransformOp,
          mrvl.TransposeOp, mrvl.SliceOp)
_POOLS = (mrvl.Maxpool2DOp, mrvl.Avgpool2DOp, mrvl.GlobalAvgpool2DOp, mrvl.GlobalMaxpool2DOp)


REAL_PARAMS = (1.0, 0)
"""The (step, zero point) `emulate` gives a real-output layer's fp32 values."""


def run_layer(op: mrvl.MrvlLayerOp, args: Sequence, params: Sequence[tuple[float, int] | None],
              out: tuple[float, int]) -> np.ndarray:
    """One layer: `args` are int arrays (data operands) or fp32 constants, `params` the
    (step, zero point) of each data operand (None for constants), `out` the output's. A
    real-output CONV / FC returns its fp32 real values."""
    s_out, z_out = out
    if isinstance(op, mrvl.Conv2DOp | mrvl.FCOp):
        (s_in, z_in), w = params[0], np.asarray(args[1], _F32)
        bias = np.asarray(args[2], _F32) if len(args) > 2 else None
        wq, bq, rq = quantize_weights(w, bias, s_in, s_out)
        acc = _accumulate(op, np.asarray(args[0], np.float64) - z_in, wq.astype(np.float64))
        acc = acc.astype(np.int64)
        if bq is not None:
            acc = acc + bq
        if is_real_output(op):
            _, _, acc_step = quantize_weights(w, None, s_in, 1.0)
            return _activate_real((acc.astype(_F32) * acc_step).astype(_F32), op)
        v = (acc.astype(_F32) * rq).astype(_F32)
        return store_int8(_activate_steps(v, op, s_out), z_out)
    if isinstance(op, _POOLS):
        s_in, z_in = params[0]
        v = _pool(op, np.asarray(args[0], _F32) - _F32(z_in))
        if s_out != s_in:
            v = (v * _F32(s_in / s_out)).astype(_F32)
        return store_int8(v, z_out)
    if isinstance(op, _MOVES):
        return np.asarray(ref.run_layer(op, (np.asarray(args[0], _F32),))).astype(np.int32)
    if isinstance(op, mrvl.Sum2DOp | mrvl.Mul2DOp | mrvl.Div2DOp | mrvl.ActivationOp):
        reals = []
        for arg, param in zip(args, params, strict=True):
            if param is None:  # a constant: int8 with step max |c| / 127
                arr = np.asarray(arg, _F32)
                step = float(np.max(np.abs(arr))) / 127.0 or 1.0
                arg, param = np.clip(np.rint(arr / step), -127, 127), (step, 0)
            reals.append(dequantize(arg, *param))
        if isinstance(op, mrvl.Sum2DOp):
            v = reals[0] + reals[1]
        elif isinstance(op, mrvl.Mul2DOp):
            v = reals[0] * reals[1]
        elif isinstance(op, mrvl.Div2DOp):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                v = reals[0] / reals[1]
        else:
            v = reals[0]
        v = _activate_real(v.astype(_F32), op)
        return store_int8(v * _F32(1.0 / s_out), z_out)
    if isinstance(op, mrvl.ConcatOp):
        parts = []
        for arg, param in zip(args, params, strict=True):
            if param is None:  # a constant (ViT's class token): in the output's step
                arr = np.asarray(arg, _F32)
                parts.append(np.clip(np.rint(arr / _F32(s_out)) + z_out, -128, 127)
                             .astype(np.int32))
                continue
            s_in, z_in = param
            rescale = s_in / s_out
            if rescale == 1.0 and z_in == z_out:
                parts.append(np.asarray(arg, np.int32))
            else:
                parts.append(store_int8(dequantize(arg, rescale, z_in), z_out))
        return np.concatenate(parts, axis=op.axis.value.data)
    if isinstance(op, mrvl.SoftmaxOp):
        return _fp16_store_int8(_softmax_rows(_fp16_load(args[0], *params[0])), s_out, z_out)
    if isinstance(op, mrvl.MatMulOp):
        a, b = (_fp16_load(arg, *param) for arg, param in zip(args[:2], params[:2], strict=True))
        if op.a_perm is not None:
            a = np.transpose(a, ref._ints(op.a_perm))
        if op.b_perm is not None:
            b = np.transpose(b, ref._ints(op.b_perm))
        products = (a[..., :, None, :] * np.swapaxes(b, -1, -2)[..., None, :, :]).astype(_F32)
        acc = np.cumsum(products, axis=-1, dtype=_F32)[..., -1]
        if op.softmax_scale is not None:
            # the GEMM writes fp32 scores, SOFTMAX (SCALE) normalises them in place
            scores = acc
            if len(args) > 2:
                # the mask loaded as fp32; ELTWISE ADD with SCALE: scale * scores + mask in
                # fp32; then SOFTMAX without SCALE
                mask = dequantize(args[2], *params[2]).astype(_F32)
                scaled = (scores * _F32(op.softmax_scale.value.data)).astype(_F32)
                acc = _softmax_rows((scaled + mask).astype(_F32))
            else:
                acc = _softmax_rows(scores, op.softmax_scale.value.data)
        return _fp16_store_int8(acc, s_out, z_out)
    if isinstance(op, mrvl.LayerNormOp):
        x = _fp16_load(args[0], *params[0])
        gamma, beta = np.asarray(args[1], _F32), np.asarray(args[2], _F32)
        cols = _F32(x.shape[-1])
        mean = np.cumsum(x, axis=-1, dtype=_F32)[..., -1:] / cols
        d = (x - mean).astype(_F32)
        var = np.cumsum((d * d).astype(_F32), axis=-1, dtype=_F32)[..., -1:] / cols
        eps = _F32(op.epsilon.value.data)
        rstd = (_F32(1.0) / np.sqrt((var + eps).astype(_F32))).astype(_F32)
        y = ((d * rstd).astype(_F32) * gamma).astype(_F32) + beta
        return _fp16_store_int8(y, s_out, z_out)
    raise NotImplementedError(f"int8 emulation: no semantics for {op.name}")


_LIBM_EXPF = None


def _expf(x: np.ndarray) -> np.ndarray:
    """The C library's expf, element by element (the simulator's SOFTMAX calls it; numpy's
    float32 exp may round differently)."""
    global _LIBM_EXPF
    if _LIBM_EXPF is None:
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
        libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
        _LIBM_EXPF = np.frompyfunc(libm.expf, 1, 1)
    return np.asarray(_LIBM_EXPF(np.asarray(x, _F32)), _F32)


def _softmax_rows(v: np.ndarray, scale: float | None = None) -> np.ndarray:
    """SOFTMAX of docs/isa.md on fp32 rows (last axis): [v * scale], max, expf(v - max)
    summed in index order, e / sum."""
    v = np.asarray(v, _F32)
    if scale is not None:
        v = (v * _F32(scale)).astype(_F32)
    e = _expf((v - v.max(axis=-1, keepdims=True)).astype(_F32))
    total = np.cumsum(e, axis=-1, dtype=_F32)[..., -1:]
    return (e / total).astype(_F32)


def _fp16_load(q: np.ndarray, step: float, zp: int) -> np.ndarray:
    """A DMA load that dequantises int8 into fp16 OCM, as fp32 values."""
    return dequantize(q, step, zp).astype(np.float16).astype(_F32)


def _fp16_store_int8(v: np.ndarray, s_out: float, z_out: int) -> np.ndarray:
    """An fp16 result (rounded RNE) stored to int8 by the quantising DMA."""
    h = np.asarray(v, _F32).astype(np.float16).astype(_F32)
    return store_int8(h * _F32(1.0 / s_out), z_out)


def input_params(fn: func.FuncOp) -> list[tuple[float, int]]:
    """(step, zero point) of each argument of an int8-annotated function."""
    scales, zps = fn.attributes["mrvl.input_scales"], fn.attributes["mrvl.input_zero_points"]
    assert isinstance(scales, ArrayAttr) and isinstance(zps, ArrayAttr)
    return [(float(_param(s)), int(_param(z))) for s, z in zip(scales, zps, strict=True)]


def layer_params(op: mrvl.MrvlLayerOp) -> tuple[float, int]:
    return float(_param(op.attributes["mrvl.scale"])), int(_param(op.attributes["mrvl.zero_point"]))


def emulate(fn: func.FuncOp, quantized_inputs: Sequence[np.ndarray]
            ) -> dict[SSAValue, tuple[np.ndarray, tuple[float, int] | None]]:
    """Every value of `fn` as (int array, (step, zero point)); real outputs as (fp32 array,
    `REAL_PARAMS`); constants as (fp32, None)."""
    values: dict[SSAValue, tuple[np.ndarray, tuple[float, int] | None]] = {}
    for arg, q, param in zip(fn.body.block.args, quantized_inputs, input_params(fn),
                             strict=True):
        values[arg] = (np.asarray(q, np.int32), param)
    for op in fn.body.block.ops:
        if isinstance(op, mrvl.MrvlLayerOp):
            operands = [values[v] for v in op.operands]
            out = layer_params(op)
            result = run_layer(op, [a for a, _ in operands], [p for _, p in operands], out)
            values[op.results[0]] = (result, REAL_PARAMS if is_real_output(op) else out)
            continue
        to_numpy = getattr(op, "to_numpy", None)
        if to_numpy is not None:
            values[op.results[0]] = (np.asarray(to_numpy(), _F32), None)
    return values
