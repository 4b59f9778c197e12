"""int8 calibration: the one reader of calibration inputs, and the activation ranges the
driver gathers with the reference executor and hands to `mrvl-quantize` as data.

- `calibration_sets(source, inputs, what)`: calibration input sets from an .npz path, a
  mapping name -> array (a leading extra dimension holds several samples), a list of sets,
  or None (one seeded standard-normal set);
- `activation_ranges(fn, sets)`: [min, max] of every value of an accelerator sub-graph when
  the sets run through it layer by layer (sim/reference_mrvl.py `run_layer`);
- `CalibratingQuantizePass`: `mrvl-quantize` as mrvl-opt registers it (gathers the ranges
  of each sub-graph from its `calibration` option, or a seeded random input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import SSAValue

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.lowering.mrvl_quantize import MrvlQuantizePass, Ranges, constant_value


@dataclass(frozen=True)
class InputSpec:
    """One input a calibration set feeds: the keys it may have in a mapping, and its shape."""

    names: tuple[str, ...]
    shape: tuple[int, ...]


def function_inputs(fn: func.FuncOp) -> list[InputSpec]:
    """The inputs of a sub-graph function: keyed by the argument's `graph.name`, `arg<K>` or
    `i<K>` (or a key ending in `_i<K>`, or file order)."""
    specs = []
    for k, arg in enumerate(fn.body.block.args):
        names = [f"arg{k}", f"i{k}"]
        if fn.arg_attrs is not None and k < len(fn.arg_attrs.data):
            name_attr = fn.arg_attrs.data[k].data.get("graph.name")
            if isinstance(name_attr, StringAttr):
                names.insert(0, name_attr.data)
        specs.append(InputSpec(tuple(names), tuple(mrvl.tensor_shape(arg))))
    return specs


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    from mrvl.files import read_arrays

    return read_arrays(path, "--calibration", CompileError)


def calibration_sets(source: Any, inputs: Sequence[InputSpec], what: str
                     ) -> list[list[np.ndarray]]:
    """Calibration input sets for `inputs` (module docstring); `what` names the consumer in
    error messages (e.g. the model or `@tvmgen_mrvl_main_0`)."""
    if source is None or (isinstance(source, str) and source == "random"):
        rng = np.random.default_rng(0)
        return [[rng.standard_normal(s.shape).astype(np.float32) for s in inputs]]
    label = "calibration"
    if isinstance(source, str | Path):
        label = str(source)
        source = _read_npz(source)
    if not isinstance(source, Mapping):
        return [list(batch) for batch in source]
    keys = list(source)
    chosen = []
    for k, spec in enumerate(inputs):
        key = next((n for n in spec.names if n in source), None)
        if key is None:
            key = next((c for c in keys if c.endswith(f"_i{k}")), None)
        if key is None and k < len(keys):
            key = keys[k]
        if key is None:
            raise CompileError(f"{label}: no array for input '{spec.names[0]}' of {what} "
                               f"(it holds {keys})")
        try:
            chosen.append(np.asarray(source[key], dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise CompileError(f"{label}: array '{key}' is not numeric: {error}") from None
    for spec, array in zip(inputs, chosen, strict=True):
        _check_values(array, f"{label}: the calibration data of input '{spec.names[0]}'")
    shapes = [s.shape for s in inputs]
    if all(a.shape == s for a, s in zip(chosen, shapes, strict=True)):
        return [chosen]
    if all(a.shape[1:] == s for a, s in zip(chosen, shapes, strict=True)):
        count = min(a.shape[0] for a in chosen)
        return [[a[i] for a in chosen] for i in range(count)]
    if all(s and a.ndim == len(s) and a.shape[1:] == s[1:] and a.shape[0] > 0
           for a, s in zip(chosen, shapes, strict=True)):
        return _batch_sets(chosen, [s[0] for s in shapes])
    raise CompileError(
        f"{label}: calibration arrays of shapes {[list(a.shape) for a in chosen]} do not "
        f"match the inputs {[list(s) for s in shapes]} of {what}")


def _batch_sets(arrays: Sequence[np.ndarray], batches: Sequence[int]
                ) -> list[list[np.ndarray]]:
    """Samples stacked along the batch axis, regrouped into sets of the compiled batch: the
    last set (or a single one, when there are fewer samples than the batch) is filled up by
    repeating samples from the start, which leaves the activation ranges unchanged."""
    count = min(len(a) for a in arrays)
    sets_count = max(-(-count // b) for b in batches)
    sets = []
    for k in range(sets_count):
        batch = []
        for array, b in zip(arrays, batches, strict=True):
            rows = [(k * b + i) % count for i in range(b)]
            batch.append(array[rows])
        sets.append(batch)
    return sets


def _check_values(array: np.ndarray, where: str) -> None:
    """Calibration data that cannot give ranges are refused: NaN / Inf values, or only
    zeros (every scale would be degenerate)."""
    if array.size == 0:
        raise CompileError(f"{where} is empty")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise CompileError(f"{where} holds {bad} NaN or Inf value(s) of {array.size}; "
                           "calibrate with finite samples")
    if not np.any(array):
        raise CompileError(f"{where} is all zeros: it gives no activation ranges; calibrate "
                           "with representative samples")


def evaluate_layers(fn: func.FuncOp, inputs: Sequence[np.ndarray]
                    ) -> dict[SSAValue, np.ndarray]:
    """Run `fn` layer by layer with the reference semantics; every value's array."""
    from mrvl.sim.reference_mrvl import run_layer

    args = list(fn.body.block.args)
    if len(inputs) != len(args):
        raise CompileError(f"calibration for @{fn.sym_name.data}: expected {len(args)} "
                           f"inputs, got {len(inputs)}")
    values: dict[SSAValue, np.ndarray] = {}
    for arg, arr in zip(args, inputs, strict=True):
        arr = np.asarray(arr, dtype=np.float32)
        expected = mrvl.tensor_shape(arg)
        if tuple(arr.shape) != expected:
            raise CompileError(
                f"calibration input for @{fn.sym_name.data} argument {arg.index}: expected "
                f"shape {list(expected)}, got {list(arr.shape)}")
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


def activation_ranges(fn: func.FuncOp, sets: Sequence[Sequence[np.ndarray]] | None) -> Ranges:
    """[min, max] of every value of `fn` over the calibration sets (None: one seeded
    standard-normal set)."""
    if not sets:
        sets = calibration_sets(None, function_inputs(fn), f"@{fn.sym_name.data}")
    ranges: Ranges = {}
    for batch in sets:
        for value, arr in evaluate_layers(fn, batch).items():
            if not arr.size:
                continue
            lo, hi = ranges.get(value, (0.0, 0.0))
            ranges[value] = (min(lo, float(arr.min())), max(hi, float(arr.max())))
    return ranges


@dataclass(frozen=True)
class CalibratingQuantizePass(MrvlQuantizePass):
    """`mrvl-quantize` with int8 ranges from a calibration run of the reference executor
    (mrvl-opt registers this one; options as `MrvlQuantizePass`)."""

    def activation_ranges(self, fn: func.FuncOp) -> Ranges:
        sets = None
        if self.calibration:
            sets = calibration_sets(self.calibration, function_inputs(fn),
                                    f"@{fn.sym_name.data}")
        return activation_ranges(fn, sets)
