"""`mrvl-quantize`: annotate an accelerator sub-graph's mrvl layers with their precision.

Input: `func.func`s with `mrvl.target = "accelerator"` holding mrvl layers (f32).
Output: the same functions, annotated (the IR stays f32; `convert-mrvl-to-mlip` converts
weights and activations following the annotations):

- function attributes `mrvl.quantize` ("fp16" or "int8") and `mrvl.io_dtype` ("f16",
  "f32" or "i8": the dtype of the sub-graph's inputs and outputs in DRAM; "I/O as asked");
- int8 only: `mrvl.input_scales` / `mrvl.input_zero_points` (one per argument) and on
  every layer `mrvl.scale` (f32) and `mrvl.zero_point` (i64): the asymmetric int8
  quantisation of its output, real = (q - zero_point) * scale, covering [min, max] of the
  values seen when the calibration inputs run through the reference executor. This pass
  does not run it: the ranges are handed in as data (`Ranges`), gathered by the driver
  (driver/calibration.py, which mrvl-opt's `mrvl-quantize` uses). Layers that cannot
  rescale (max pools, reshapes, transposes) take their input's parameters. Weight scales are
  per output channel, computed from the weights by the conversion (`weight_scales`);
- int8 only, unless the I/O dtype is given as "i8": a CONV / FC whose result is a sub-graph
  output and read by nothing else (activation none, relu, clip or leaky_relu) gets
  `mrvl.real_output`: it writes fp32 real values (docs/isa.md CONV `dst_dtype` FP32), stored
  as f32 (f16 with "f16" I/O), instead of int8 steps (`real_output_layers`).

fp16: weights fp16, bias fp32, activations fp16 (accumulation fp32, docs/isa.md), except
where the layers that `mrvl_precision.fp32_outputs` names get `mrvl.out_dtype = "f32"`
(their outputs are stored fp32: a transformer's residual stream, a CNN sub-graph's
element-wise outputs and the layers feeding only them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (ArrayAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr,
                                   UnitAttr, f32, i64)
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.lowering.mrvl_precision import OUT_DTYPE_ATTR, fp32_outputs

QUANTIZE_MODES = ("fp16", "int8")
IO_DTYPES = ("f16", "f32", "i8")
SCALE_ATTR = "mrvl.scale"
ZP_ATTR = "mrvl.zero_point"
INPUT_ZPS_ATTR = "mrvl.input_zero_points"
MODE_ATTR = "mrvl.quantize"
IO_ATTR = "mrvl.io_dtype"
INPUT_SCALES_ATTR = "mrvl.input_scales"
REAL_OUTPUT_ATTR = "mrvl.real_output"
REAL_OUTPUT_ACTIVATIONS = ("none", "relu", "clip", "leaky_relu")
"""Fused activations a real-output CONV / FC applies to its fp32 real values."""

SCALE_PRESERVING = (
    mrvl.Maxpool2DOp,
    mrvl.GlobalMaxpool2DOp,
    mrvl.ReshapeOp,
    mrvl.BatchFlattenOp,
    mrvl.SqueezeOp,
    mrvl.LayoutTransformOp,
    mrvl.TransposeOp,
    mrvl.SliceOp,
)
"""Layers whose int8 output uses the scale of their (first) input. Average pools take their
own (an average spans a narrower range than its input: a global average pool's output
keeps more bits with its own step, and POOL requantises with `SCALE`)."""


Ranges = dict[SSAValue, tuple[float, float]]
"""[min, max] of each value of a sub-graph over the calibration inputs."""


def qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 step and zero point covering [min(lo, 0), max(hi, 0)]: real value
    = (q - zero_point) * step, q in [-128, 127]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= 0.0:
        return 1.0 / 127.0, 0
    step = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.rint(-128.0 - lo / step), -128, 127))
    return step, zp


def weight_scales(w: np.ndarray) -> np.ndarray:
    """Per-output-channel int8 steps of a weight array ([O, ...]): max |w[o]| / 127."""
    flat = np.abs(w.reshape(w.shape[0], -1).astype(np.float32))
    peak = flat.max(axis=1) if flat.shape[1] else np.zeros(w.shape[0], np.float32)
    peak = np.where(peak > 0, peak, np.float32(1.0))
    return (peak / np.float32(127.0)).astype(np.float32)


def real_output_layers(fn: func.FuncOp) -> list[mrvl.MrvlLayerOp]:
    """The CONV / FC layers of `fn` whose result is returned once and read by nothing else,
    with an activation the matrix engine applies to real values: they can write fp32 real
    values as the sub-graph's output, with no int8 rounding of the last layer."""
    found = []
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.Conv2DOp | mrvl.FCOp):
            continue
        uses = list(op.results[0].uses)
        if (len(uses) == 1 and isinstance(uses[0].operation, func.ReturnOp)
                and op.activation_str() in REAL_OUTPUT_ACTIVATIONS):
            found.append(op)
    return found


def is_real_output(op: mrvl.MrvlLayerOp) -> bool:
    """Does `op` write fp32 real values (annotated `mrvl.real_output` by this pass)?"""
    return REAL_OUTPUT_ATTR in op.attributes


def constant_value(value: SSAValue) -> np.ndarray | None:
    """numpy value of a `graph.constant` operand (None when not a constant)."""
    owner = value.owner
    to_numpy = getattr(owner, "to_numpy", None)
    if to_numpy is None:
        return None
    return np.asarray(to_numpy(), dtype=np.float32)


def quantize_function(
    fn: func.FuncOp,
    mode: str,
    io_dtype: str | None = None,
    ranges: Ranges | None = None,
) -> None:
    """Annotate `fn` in place (see the module docstring); int8 needs the activation
    `ranges` of `fn` (driver/calibration.py `activation_ranges`). Real outputs
    (`real_output_layers`) are annotated unless `io_dtype` is given as "i8"."""
    if mode not in QUANTIZE_MODES:
        raise CompileError(f"--quantize: expected one of {list(QUANTIZE_MODES)}, got '{mode}'")
    real_outputs = io_dtype != "i8"
    if io_dtype is None:
        io_dtype = "i8" if mode == "int8" else "f16"
    if io_dtype not in IO_DTYPES:
        raise CompileError(f"io dtype: expected one of {list(IO_DTYPES)}, got '{io_dtype}'")
    if io_dtype == "i8" and mode != "int8":
        raise CompileError("int8 I/O needs --quantize int8")
    fn.attributes[MODE_ATTR] = StringAttr(mode)
    fn.attributes[IO_ATTR] = StringAttr(io_dtype)
    if mode != "int8":
        for op in fp32_outputs(fn):
            op.attributes[OUT_DTYPE_ATTR] = StringAttr("f32")
        return
    if ranges is None:
        raise CompileError(f"int8 quantisation of @{fn.sym_name.data} needs its activation "
                           "ranges from a calibration run (the mrvl driver gathers them)")
    params: dict[SSAValue, tuple[float, int]] = {}
    for arg in fn.body.block.args:
        params[arg] = qparams(*ranges.get(arg, (0.0, 0.0)))
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.MrvlLayerOp):
            continue
        result = op.results[0]
        if isinstance(op, SCALE_PRESERVING) and op.operands[0] in params:
            params[result] = params[op.operands[0]]
        else:
            params[result] = qparams(*ranges.get(result, (0.0, 0.0)))
        op.attributes[SCALE_ATTR] = FloatAttr(params[result][0], f32)
        op.attributes[ZP_ATTR] = IntegerAttr(params[result][1], i64)
    if real_outputs:
        for op in real_output_layers(fn):
            op.attributes[REAL_OUTPUT_ATTR] = UnitAttr()
    fn.attributes[INPUT_SCALES_ATTR] = ArrayAttr(
        [FloatAttr(params[arg][0], f32) for arg in fn.body.block.args]
    )
    fn.attributes[INPUT_ZPS_ATTR] = ArrayAttr(
        [IntegerAttr(params[arg][1], i64) for arg in fn.body.block.args]
    )


@dataclass(frozen=True)
class MrvlQuantizePass(ModulePass):
    """Annotate every accelerator sub-graph with its precision (module docstring).

    Options: `mode` fp16 | int8; `io-dtype` f16 | f32 | i8 (default: f16 for fp16, i8 for
    int8, with real outputs where `real_output_layers` allows them; "i8" given: every output
    int8); `calibration` an .npz of inputs (int8; without it a seeded random input).
    In-process callers (lowering/backend.py) may give the int8 activation ranges of the
    function in `ranges` instead (not a pipeline-text option).
    """

    name = "mrvl-quantize"

    mode: str = "fp16"
    io_dtype: str = ""
    calibration: str = ""
    ranges: Ranges | None = field(default=None, compare=False)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in mrvl.subgraph_functions(op):
            ranges = self.activation_ranges(fn) if self.mode == "int8" else None
            quantize_function(fn, self.mode, self.io_dtype or None, ranges)

    def activation_ranges(self, fn: func.FuncOp) -> Ranges:
        """The int8 ranges of `fn`: `ranges` when an in-process caller gave them, else the
        driver's subclass runs the reference executor."""
        if self.ranges is not None:
            return self.ranges
        raise CompileError(f"mrvl-quantize{{mode=int8}} on @{fn.sym_name.data} needs a "
                           "calibration run; use mrvl-opt or the mrvl driver")
