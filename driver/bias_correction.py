"""int8 bias correction: fold each CONV / GEMM layer's mean output error on the calibration
set into its bias (empirical bias correction, as in Nagel et al., "Data-Free Quantization",
section 4.2, with the error measured instead of predicted).

`correct_biases(fn, sets, ranges)` takes an accelerator sub-graph (fp32 mrvl layers, not yet
annotated), its calibration input sets and the activation ranges `mrvl-quantize` will get.
It runs the sets through the layers twice side by side: in fp32 (sim/reference_mrvl.py) and
in the documented int8 semantics (sim/reference_int8.py, on a copy annotated like the
compiler will annotate `fn`). Layer by layer, in program order, for every CONV / FC with a
constant bias: per output channel, the mean over every sample and pixel of

    (int8 sum before rounding, in output steps) - (fp32 sum before the activation) / s_out

(`errors="output"`: the int8 input is the int8 chain's, so upstream error counts; or
`errors="weights"`: both sums read the same dequantised int8 input, so only this layer's
weight and bias rounding counts), times s_out, is subtracted from the fp32 bias; the layer's
int8 output is then recomputed with the corrected bias before the next layer reads it.
`fn` is edited in place (each corrected layer gets its own new bias constant); the int8
semantics do not change: the compiler rounds the corrected fp32 bias to int32 as any bias.

Memory is bounded whatever the calibration set's size: the statistics come from at most
`BIAS_SAMPLES` sets, spread evenly over the calibration sets (the mean error of a channel
is an average over every pixel of them, so more sets add little), and a value's arrays are
dropped as soon as its last reader has run, so at most the live values of one layer
frontier of `BIAS_SAMPLES` sets are held at a time (the range statistics of
driver/calibration.py stream over every set).

Layers without a bias, or with a non-constant one, are left as they are. A layer the int8
emulation does not model (e.g. sigmoid) passes its fp32 output, quantised with its output
parameters, to the layers after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.ir import SSAValue

from mrvl.dialects import graph, mrvl
from mrvl.errors import CompileError
from mrvl.lowering.mrvl_quantize import Ranges, constant_value, quantize_function
from mrvl.sim import reference_int8
from mrvl.sim import reference_mrvl

BIAS_SAMPLES = 16
"""The most calibration sets whose activations the correction holds (module docstring)."""
BIAS_ERRORS = ("output", "weights")
"""What a correction measures: the whole int8 chain's error, or this layer's rounding only."""

_F32 = np.float32


def _quantize_input(x: np.ndarray, param: tuple[float, int]) -> np.ndarray:
    step, zp = param
    return reference_int8.store_int8(np.asarray(x, _F32) * _F32(1.0 / step), zp)


def _sums(op, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """float64 sums of a CONV / FC (no bias, no activation) over `x` [N, ...]."""
    return reference_int8._accumulate(op, np.asarray(x, np.float64), np.asarray(w, np.float64))


def _channel_mean(a: list[np.ndarray]) -> np.ndarray:
    """Mean over every axis but the last (output channels) of arrays of equal channels."""
    channels = a[0].shape[-1]
    total = sum(np.sum(x.reshape(-1, channels), axis=0) for x in a)
    count = sum(x.size // channels for x in a)
    return total / count


def _layer_error(op, w, bias, q_in, p_in, x_ref, out, errors) -> np.ndarray:
    """Per-channel mean error (real units) of one CONV / FC over the calibration samples."""
    s_in, z_in = p_in
    s_out = out[0]
    wq, bq, rq = reference_int8.quantize_weights(w, bias, s_in, s_out)
    diffs = []
    for q, x in zip(q_in, x_ref, strict=True):
        centred = np.asarray(q, np.float64) - z_in
        acc = _sums(op, centred, wq) + bq
        steps = acc * np.float64(rq)
        source = centred * np.float64(_F32(s_in)) if errors == "weights" else x
        exact = (_sums(op, source, w) + np.asarray(bias, np.float64)) / s_out
        diffs.append(steps - exact)
    return _channel_mean(diffs) * s_out


def _replace_bias(op: mrvl.MrvlLayerOp, bias: np.ndarray) -> None:
    old = op.operands[2]
    const = graph.ConstantOp.from_numpy(np.asarray(bias, _F32))
    block = op.parent_block()
    assert block is not None
    block.insert_op_before(const, op)
    op.operands[2] = const.results[0]
    owner = old.owner
    if not old.uses and isinstance(owner, graph.ConstantOp):
        owner.detach()
        owner.erase()


def _consumers_left(fn: func.FuncOp) -> dict[SSAValue, int]:
    counts: dict[SSAValue, int] = {}
    for op in fn.body.block.ops:
        for v in op.operands:
            counts[v] = counts.get(v, 0) + 1
    return counts


def spread_samples(sets: Sequence[Sequence[np.ndarray]], count: int
                   ) -> list[Sequence[np.ndarray]]:
    """At most `count` of `sets`, spread evenly over them (all of them when they are fewer)."""
    if len(sets) <= count:
        return list(sets)
    return [sets[(k * len(sets)) // count] for k in range(count)]


def correct_biases(fn: func.FuncOp, sets: Sequence[Sequence[np.ndarray]], ranges: Ranges,
                   errors: str = "output", samples: int = BIAS_SAMPLES) -> int:
    """Fold the mean per-channel error of every CONV / FC over at most `samples` of the
    calibration sets into its bias (module docstring); the number of layers corrected."""
    if errors not in BIAS_ERRORS:
        raise CompileError(f"bias correction: expected one of {list(BIAS_ERRORS)}, got "
                           f"'{errors}'")
    if samples < 1:
        raise CompileError(f"bias correction: expected at least 1 sample, got {samples}")
    sets = spread_samples(sets, samples)
    if not sets:
        return 0
    shadow = fn.clone()
    originals = list(fn.body.block.ops)
    pairs = list(zip(fn.body.block.args, shadow.body.block.args, strict=True))
    for original, copy in zip(originals, shadow.body.block.ops, strict=True):
        pairs.extend(zip(original.results, copy.results, strict=True))
    quantize_function(shadow, "int8", None,
                      {copy: ranges[value] for value, copy in pairs if value in ranges})
    left = _consumers_left(shadow)
    ref: dict[SSAValue, list[np.ndarray]] = {}
    quant: dict[SSAValue, tuple[list[np.ndarray], tuple[float, int] | None]] = {}
    for arg, param in zip(shadow.body.block.args, reference_int8.input_params(shadow),
                          strict=True):
        samples = [np.asarray(batch[arg.index], _F32) for batch in sets]
        ref[arg] = samples
        quant[arg] = ([_quantize_input(x, param) for x in samples], param)
    corrected = 0
    for original, op in zip(originals, shadow.body.block.ops, strict=True):
        if not isinstance(op, mrvl.MrvlLayerOp):
            const = constant_value(op.results[0]) if op.results else None
            if const is not None:
                ref[op.results[0]] = [const] * len(sets)
                quant[op.results[0]] = ([const] * len(sets), None)
            continue
        out = reference_int8.layer_params(op)
        inputs_ref = [ref[v] for v in op.operands]
        inputs_q = [quant[v] for v in op.operands]
        result = op.results[0]
        ref[result] = [np.asarray(reference_mrvl.run_layer(op, tuple(a[k] for a in inputs_ref)),
                                  _F32) for k in range(len(sets))]
        args_q = [[a[k] for a, _ in inputs_q] for k in range(len(sets))]
        params_q = [p for _, p in inputs_q]
        bias_const = (constant_value(op.operands[2])
                      if isinstance(op, mrvl.Conv2DOp | mrvl.FCOp) and len(op.operands) > 2
                      else None)
        if bias_const is not None and params_q[0] is not None:
            w = constant_value(op.operands[1])
            assert w is not None
            error = _layer_error(op, w, bias_const, inputs_q[0][0], params_q[0], inputs_ref[0],
                                 out, errors)
            bias = (bias_const.astype(np.float64) - error).astype(_F32)
            _replace_bias(original, bias)
            for args in args_q:
                args[2] = bias
            corrected += 1
        try:
            quant[result] = ([reference_int8.run_layer(op, args, params_q, out)
                              for args in args_q], out)
        except NotImplementedError:
            quant[result] = ([_quantize_input(x, out) for x in ref[result]], out)
        for v in op.operands:
            left[v] -= 1
            if left[v] == 0:
                ref.pop(v, None)
                quant.pop(v, None)
    return corrected
