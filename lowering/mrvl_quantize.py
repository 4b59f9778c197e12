"""`mrvl-quantize`: annotate an accelerator sub-graph's mrvl layers with their precision.

Input: `func.func`s with `mrvl.target = "accelerator"` holding mrvl layers (f32).
Output: the same functions, annotated (the IR stays f32; `convert-mrvl-to-mlip` converts
weights and activations following the annotations):

- function attributes `mlip.quantize` ("fp16" or "int8") and `mlip.io_dtype` ("f16",
  "f32" or "i8": the dtype of the sub-graph's inputs and outputs in DRAM; "I/O as asked");
- int8 only: `mlip.input_scales` / `mlip.input_zero_points` (one per argument) and on
  every layer `mlip.scale` (f32) and `mlip.zero_point` (i64): the asymmetric int8
  quantisation of its output, real = (q - zero_point) * scale, covering [min, max] of the
  values seen when the calibration inputs run through the reference executor
  (sim/reference_mrvl.py `run_layer`). Layers that cannot rescale (pools, reshapes,
  transposes) take their input's parameters. Weight scales are per output
  channel, computed from the weights by the conversion (`weight_scales`).

fp16: weights fp16, bias fp32, activations fp16 (accumulation fp32, docs/isa.md).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr, f32, i64
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.lowering.mrvl_json import accelerator_functions  # noqa: F401 (re-exported)

QUANTIZE_MODES = ("fp16", "int8")
IO_DTYPES = ("f16", "f32", "i8")
SCALE_ATTR = "mlip.scale"
ZP_ATTR = "mlip.zero_point"
INPUT_ZPS_ATTR = "mlip.input_zero_points"
MODE_ATTR = "mlip.quantize"
IO_ATTR = "mlip.io_dtype"
INPUT_SCALES_ATTR = "mlip.input_scales"

SCALE_PRESERVING = (
    mrvl.Maxpool2DOp,
    mrvl.GlobalMaxpool2DOp,
    mrvl.Avgpool2DOp,
    mrvl.GlobalAvgpool2DOp,
    mrvl.ReshapeOp,
    mrvl.BatchFlattenOp,
    mrvl.SqueezeOp,
    mrvl.LayoutTransformOp,
    mrvl.TransposeOp,
)
"""Layers whose int8 output uses the scale of their (first) input."""


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


def constant_value(value: SSAValue) -> np.ndarray | None:
    """numpy value of a `graph.constant` operand (None when not a constant)."""
    owner = value.owner
    to_numpy = getattr(owner, "to_numpy", None)
    if to_numpy is None:
        return None
    return np.asarray(to_numpy(), dtype=np.float32)


def evaluate_layers(
    fn: func.FuncOp, inputs: Sequence[np.ndarray]
) -> dict[SSAValue, np.ndarray]:
    """Run `fn` layer by layer with the reference semantics; every value's array."""
    from mrvl.sim.reference_mrvl import run_layer

    args = list(fn.body.block.args)
    if len(inputs) != len(args):
        raise CompileError(
            f"calibration for @{fn.sym_name.data}: expected {len(args)} inputs, "
            f"got {len(inputs)}"
        )
    values: dict[SSAValue, np.ndarray] = {}
    for arg, arr in zip(args, inputs, strict=True):
        arr = np.asarray(arr, dtype=np.float32)
        expected = mrvl.tensor_shape(arg)
        if tuple(arr.shape) != expected:
            raise CompileError(
                f"calibration input for @{fn.sym_name.data} argument {arg.index}: expected "
                f"shape {list(expected)}, got {list(arr.shape)}"
            )
        values[arg] = arr
    for op in fn.body.block.ops:
        if isinstance(op, mrvl.MrvlLayerOp):
            result = run_layer(op, tuple(values[v] for v in op.operands))
            values[op.results[0]] = np.asarray(result, dtype=np.float32)
            continue
        const = constant_value(op.results[0]) if op.results else None
        if const is not None:
            values[op.results[0]] = const
    return values


def calibration_batches(
    fn: func.FuncOp, calibration: Sequence[Sequence[np.ndarray]] | None, seed: int = 0
) -> list[list[np.ndarray]]:
    """The calibration input sets; without any, one seeded standard-normal set."""
    if calibration:
        return [list(batch) for batch in calibration]
    rng = np.random.default_rng(seed)
    return [[
        rng.standard_normal(mrvl.tensor_shape(arg)).astype(np.float32)
        for arg in fn.body.block.args
    ]]


def quantize_function(
    fn: func.FuncOp,
    mode: str,
    io_dtype: str | None = None,
    calibration: Sequence[Sequence[np.ndarray]] | None = None,
) -> None:
    """Annotate `fn` in place (see the module docstring)."""
    if mode not in QUANTIZE_MODES:
        raise CompileError(f"--quantize: expected one of {list(QUANTIZE_MODES)}, got '{mode}'")
    if io_dtype is None:
        io_dtype = "i8" if mode == "int8" else "f16"
    if io_dtype not in IO_DTYPES:
        raise CompileError(f"io dtype: expected one of {list(IO_DTYPES)}, got '{io_dtype}'")
    if io_dtype == "i8" and mode != "int8":
        raise CompileError("int8 I/O needs --quantize int8")
    fn.attributes[MODE_ATTR] = StringAttr(mode)
    fn.attributes[IO_ATTR] = StringAttr(io_dtype)
    if mode != "int8":
        return
    ranges: dict[SSAValue, tuple[float, float]] = {}
    for batch in calibration_batches(fn, calibration):
        for value, arr in evaluate_layers(fn, batch).items():
            if not arr.size:
                continue
            lo, hi = ranges.get(value, (0.0, 0.0))
            ranges[value] = (min(lo, float(arr.min())), max(hi, float(arr.max())))
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
    fn.attributes[INPUT_SCALES_ATTR] = ArrayAttr(
        [FloatAttr(params[arg][0], f32) for arg in fn.body.block.args]
    )
    fn.attributes[INPUT_ZPS_ATTR] = ArrayAttr(
        [IntegerAttr(params[arg][1], i64) for arg in fn.body.block.args]
    )


def load_calibration(path: str, fn: func.FuncOp) -> list[list[np.ndarray]]:
    """Calibration inputs from an .npz: one array per argument (keyed by the argument's
    name, `mrvl_<N>_i<K>`, `arg<K>` or in file order); a leading extra dimension holds
    several calibration samples."""
    try:
        with open(path, "rb") as handle:  # closed even when numpy fails on a broken archive
            data = np.load(handle)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise CompileError(
                    f"--calibration: '{path}' is not an .npz archive (write it with "
                    "numpy.savez, one array per input)"
                )
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CompileError(f"--calibration: cannot read '{path}': {error}") from None
    return calibration_from_mapping(arrays, fn, source=path)


def calibration_from_mapping(
    arrays: Mapping[str, np.ndarray], fn: func.FuncOp, source: str = "calibration"
) -> list[list[np.ndarray]]:
    args = list(fn.body.block.args)
    keys = list(arrays)
    chosen = []
    for k, arg in enumerate(args):
        name_attr = None
        if fn.arg_attrs is not None and k < len(fn.arg_attrs.data):
            name_attr = fn.arg_attrs.data[k].data.get("graph.name")
        candidates = [f"arg{k}", f"i{k}"]
        if isinstance(name_attr, StringAttr):
            candidates.insert(0, name_attr.data)
        key = next((c for c in candidates if c in arrays), None)
        if key is None:
            key = next((c for c in keys if c.endswith(f"_i{k}")), None)
        if key is None and k < len(keys):
            key = keys[k]
        if key is None:
            raise CompileError(f"{source}: no array for input {k} of @{fn.sym_name.data}")
        try:
            chosen.append(np.asarray(arrays[key], dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise CompileError(f"{source}: array '{key}' is not numeric: {error}") from None
    batches: list[list[np.ndarray]] = []
    shapes = [mrvl.tensor_shape(a) for a in args]
    if all(arr.shape == shape for arr, shape in zip(chosen, shapes, strict=True)):
        return [chosen]
    if all(arr.shape[1:] == shape for arr, shape in zip(chosen, shapes, strict=True)):
        count = min(arr.shape[0] for arr in chosen)
        for i in range(count):
            batches.append([arr[i] for arr in chosen])
        return batches
    raise CompileError(
        f"{source}: calibration arrays of shapes {[list(a.shape) for a in chosen]} do not "
        f"match the inputs {[list(s) for s in shapes]} of @{fn.sym_name.data}"
    )


@dataclass(frozen=True)
class MrvlQuantizePass(ModulePass):
    """Annotate every accelerator sub-graph with its precision (module docstring).

    Options: `mode` fp16 | int8; `io-dtype` f16 | f32 | i8 (default: f16 for fp16, i8 for
    int8); `calibration` an .npz of inputs (int8; without it a seeded random input).
    In-process callers may give the calibration input sets as arrays in `batches` instead
    (not a pipeline-text option).
    """

    name = "mrvl-quantize"

    mode: str = "fp16"
    io_dtype: str = ""
    calibration: str = ""
    batches: tuple[tuple[np.ndarray, ...], ...] | None = field(default=None, compare=False)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in accelerator_functions(op):
            batches = self.batches
            if self.calibration:
                batches = load_calibration(self.calibration, fn)
            quantize_function(fn, self.mode, self.io_dtype or None, batches)
