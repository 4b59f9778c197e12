"""int8 per-channel activation scales where the hardware form allows them, folded into the
weights: a CONV's output channel c is scaled by k[c] >= 1 (its weights and bias times k[c];
the per-output-channel weight steps and requantisation scales absorb that exactly) and every
consumer's weights for input channel c by 1 / k[c]. The per-tensor int8 step of the scaled
tensor then gives channel c an effective step of step / k[c]: small-range channels get finer
codes (as cross-layer range equalisation, Nagel et al., "Data-Free Quantization", 4.1).

The hardware allows this only on CONV -> CONV / FC edges: a CONV's requantisation scale is
per output channel (docs/isa.md), and a pool commutes with a positive per-channel scale (a
max pool keeps its input's step, an average pool requantises to its own), but ELTWISE,
CONCAT, ACT and the DMA conversion of a sub-graph output take one scale per tensor, so a
tensor that any of them reads (or a sub-graph output) keeps one step.
`equalize_channels(fn, sets, strength)` rescales every CONV whose activation is none, relu
or clip(0, hi) and whose result feeds only CONVs with groups 1 or groups = channels
(depthwise) or FCs (a classifier after its global pool: the FC's weight columns of channel
c divide by k[c]), directly or through pools. Per channel, with r[c] the channel's
largest |value| over the calibration sets and R their maximum: k[c] = (R / r[c]) ** a,
capped at `MAX_FACTOR`, with a = 1 and R / `DEPTHWISE_HEADROOM` for R when every consumer
is depthwise (its per-channel weight step absorbs 1 / k[c] exactly) and a = `strength`
otherwise (a dense consumer's weight step is shared by its input channels: dividing a
column by k[c] trades activation error for weight error). Since k[c] >= 1 and r[c] * k[c] <= R, a clip(0, hi) stays clip(0, hi): it
binds only beyond the calibrated range, where the int8 codes saturate anyway.

The IR stays f32 and the int8 semantics do not change: the rescaled weights are ordinary
weights. Calibrate the ranges on the rescaled `fn` afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.ir import SSAValue

from mrvl.dialects import graph, mrvl
from mrvl.driver.calibration import evaluate_layers
from mrvl.lowering.mrvl_quantize import constant_value
from mrvl.sim import reference_mrvl

MAX_FACTOR = 64.0
"""The largest factor a channel is scaled by (a nearly silent channel keeps a sane range)."""
DEPTHWISE_HEADROOM = 1.5
"""Into depthwise readers (full equalisation) a channel is scaled up to R / this, not R: an
unseen input that overshoots the channel's calibrated peak would otherwise saturate at once
(a per-channel min/max clip; measured on few calibration samples, docs/backend.md)."""

_F32 = np.float32


def _rescalable(op: mrvl.MrvlLayerOp, outputs: set[SSAValue]) -> list[mrvl.Conv2DOp] | None:
    """The consumers of a CONV that may take per-channel scales, or None when it may not."""
    if not isinstance(op, mrvl.Conv2DOp) or len(op.operands) < 3:
        return None
    name = op.activation_str()
    if name == "clip":
        bounds = reference_mrvl._clip(op)
        if bounds is None or bounds[0] != 0.0:
            return None
    elif name not in ("none", "relu"):
        return None
    if constant_value(op.operands[1]) is None or constant_value(op.operands[2]) is None:
        return None
    result = op.results[0]
    channels = mrvl.tensor_shape(result)[-1]
    consumers = _conv_readers(result, outputs)
    if not consumers:
        return None
    for user in consumers:
        if constant_value(user.operands[1]) is None:
            return None
        if isinstance(user, mrvl.Conv2DOp) and user.groups.value.data not in (1, channels):
            return None
    return consumers


_POOLS = (mrvl.Maxpool2DOp, mrvl.Avgpool2DOp, mrvl.GlobalMaxpool2DOp, mrvl.GlobalAvgpool2DOp)
"""Pools commute with a positive per-channel scale (and keep their input's int8 step)."""


def _conv_readers(value: SSAValue, outputs: set[SSAValue]
                  ) -> list[mrvl.Conv2DOp | mrvl.FCOp] | None:
    """The CONVs and FCs reading `value` as their input, directly or through pools; None
    when anything else reads it (or a pool of it), or it is a sub-graph output."""
    if value in outputs or not value.uses:
        return None
    readers = []
    for use in value.uses:
        user = use.operation
        if isinstance(user, _POOLS):
            through = _conv_readers(user.results[0], outputs)
            if through is None:
                return None
            readers.extend(through)
        elif isinstance(user, mrvl.Conv2DOp | mrvl.FCOp) and use.index == 0:
            readers.append(user)
        else:
            return None
    return readers


def _fc_columns(fc: mrvl.FCOp, k: np.ndarray) -> np.ndarray:
    """The factor of each weight column of `fc` ([1, K]) for per-channel factors `k` of its
    NHWC input: K flattens (h, w, c), or (c, h, w) with `weights_need_transform`."""
    pixels = int(np.prod(mrvl.tensor_shape(fc.operands[0])[1:-1], dtype=np.int64))
    if fc.weights_need_transform is not None:
        return np.repeat(k, pixels).reshape(1, -1)
    return np.tile(k, pixels).reshape(1, -1)


def _set_constant(op: mrvl.MrvlLayerOp, index: int, value: np.ndarray) -> None:
    """Give operand `index` of `op` a new constant of its own (the old one is erased when
    nothing else reads it)."""
    old = op.operands[index]
    const = graph.ConstantOp.from_numpy(np.ascontiguousarray(value, _F32))
    block = op.parent_block()
    assert block is not None
    block.insert_op_before(const, op)
    op.operands[index] = const.results[0]
    owner = old.owner
    if not old.uses and isinstance(owner, graph.ConstantOp):
        owner.detach()
        owner.erase()


def channel_factors(peaks: np.ndarray, exponent: float, headroom: float = 1.0) -> np.ndarray:
    """k[c] = (max(peaks) / (headroom * peaks[c])) ** exponent, in [1, MAX_FACTOR] (1 for
    silent channels)."""
    peaks = np.asarray(peaks, np.float64)
    top = float(peaks.max()) if peaks.size else 0.0
    if top <= 0.0:
        return np.ones_like(peaks)
    ratio = np.where(peaks > 0, top / (headroom * np.maximum(peaks, 1e-300)), 1.0)
    return np.clip(ratio ** exponent, 1.0, MAX_FACTOR)


def equalize_channels(fn: func.FuncOp, sets: Sequence[Sequence[np.ndarray]],
                      strength: float = 0.5) -> int:
    """Rescale the channels of every eligible CONV of `fn` in place (module docstring); the
    number of CONVs rescaled. The per-channel peaks come from one reference run of `sets`."""
    outputs = set(fn.body.block.last_op.operands)
    plans = []
    for op in fn.body.block.ops:
        if isinstance(op, mrvl.MrvlLayerOp):
            consumers = _rescalable(op, outputs)
            if consumers is not None:
                plans.append((op, consumers))
    if not plans or not sets:
        return 0
    peaks = {op.results[0]: np.zeros(mrvl.tensor_shape(op.results[0])[-1]) for op, _ in plans}
    for batch in sets:
        values = evaluate_layers(fn, batch)
        for value, peak in peaks.items():
            arr = np.abs(values[value])
            np.maximum(peak, arr.reshape(-1, arr.shape[-1]).max(axis=0), out=peak)
    rescaled = 0
    for op, consumers in plans:
        channels = len(peaks[op.results[0]])
        depthwise = all(isinstance(c, mrvl.Conv2DOp) and c.groups.value.data == channels != 1
                        for c in consumers)
        k = (channel_factors(peaks[op.results[0]], 1.0, DEPTHWISE_HEADROOM) if depthwise
             else channel_factors(peaks[op.results[0]], strength))
        if np.all(k == 1.0):
            continue
        w = constant_value(op.operands[1])
        b = constant_value(op.operands[2])
        assert w is not None and b is not None
        _set_constant(op, 1, w * k.reshape(-1, 1, 1, 1).astype(_F32))
        _set_constant(op, 2, b * k.astype(_F32))
        for consumer in consumers:
            cw = constant_value(consumer.operands[1])
            assert cw is not None
            if isinstance(consumer, mrvl.FCOp):
                cw = cw / _fc_columns(consumer, k).astype(_F32)
            elif consumer.groups.value.data == 1:
                cw = cw / k.reshape(1, 1, 1, -1).astype(_F32)
            else:  # depthwise: output o reads input channel o // (outputs per channel)
                per = cw.shape[0] // channels
                cw = cw / np.repeat(k, per).reshape(-1, 1, 1, 1).astype(_F32)
            _set_constant(consumer, 1, cw)
        rescaled += 1
    return rescaled
