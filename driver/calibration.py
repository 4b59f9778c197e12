"""int8 calibration: the one reader of calibration inputs, and the activation ranges the
driver gathers with the reference executor and hands to `mrvl-quantize` as data.

- `calibration_sets(source, inputs, what)`: calibration input sets from an .npz path, a
  mapping name -> array (a leading extra dimension holds several samples), a list of sets,
  or None (one seeded standard-normal set);
- `activation_ranges(fn, sets, method)`: the int8 range of every value of an accelerator
  sub-graph when the sets run through it layer by layer (sim/reference_mrvl.py `run_layer`),
  chosen by a calibration method (`CALIBRATION_METHODS`):
  - `minmax`: [min, max] over every sample (one pass);
  - `percentile`: the 0.01st and 99.99th percentiles of each activation, each side clipped
    on its own (the range stays asymmetric, as `qparams` makes it);
  - `mse`: [lo, hi] clipped to [-t, t], t = max(|lo|, |hi|) times the factor of a geometric
    grid whose int8 quantisation (`qparams`, round, clip, dequantise) has the least mean
    squared error;
  - `entropy`: TensorRT's entropy calibration made asymmetric: among the same kind of
    clipped ranges, the one whose int8 codes lose the least information, the KL divergence
    of the clipped histogram P (`ENTROPY_BINS` bins, outliers folded into the edge bins)
    from Q (P's mass per int8 code spread evenly over that code's non-empty bins);
  percentile, mse and entropy stream over the samples twice, keeping per tensor only running
  [min, max] (pass 1) and a fixed-range histogram of `HISTOGRAM_BINS` bins (pass 2), never
  the activations of every sample; graph constants keep their [min, max];
- `CalibratingQuantizePass`: `mrvl-quantize` as mrvl-opt registers it (gathers the ranges
  of each sub-graph from its `calibration` option, or a seeded random input, by its
  `calibration_method`).
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
from mrvl.lowering.mrvl_quantize import MrvlQuantizePass, Ranges, constant_value, qparams

CALIBRATION_METHODS = ("minmax", "percentile", "mse", "entropy")
"""How the int8 range of an activation is chosen from its calibration values."""
DEFAULT_CALIBRATION_METHOD = "percentile"
"""The driver's default (`mrvl compile`, `CompileOptions`), chosen by measurement out of
sample (docs/backend.md "Numerics", bench/bench_calibration.py); the functions here and
`mrvl-quantize` default to minmax, the ranges the backend tests and digest are built on."""
PERCENTILE = 99.99
"""`percentile`: the share (in %) of each activation's values kept inside its range."""
HISTOGRAM_BINS = 1 << 16
"""Bins of the per-tensor histogram percentile and mse read."""
MSE_SCALES = tuple(2.0 ** (-k / 8) for k in range(65))
"""`mse`: the clipping factors tried (1 down to 1/256, 8 per octave)."""
ENTROPY_BINS = 2048
"""`entropy`: the histogram is read in this many bins (as TensorRT's entropy calibrator)."""
ENTROPY_SCALES = tuple(2.0 ** (-k / 16) for k in range(129))
"""`entropy`: the clipping factors tried (1 down to 1/256, 16 per octave), as long as the
clipped range keeps at least 256 of the `ENTROPY_BINS` bins (one per int8 code)."""


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
            raw = np.asarray(source[key])
            # integer inputs (token ids) keep their dtype; everything else is float32
            chosen.append(raw if np.issubdtype(raw.dtype, np.integer)
                          else np.asarray(raw, dtype=np.float32))
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


def check_method(method: str) -> str:
    """`method` when it is a known calibration method, else a one-line CompileError."""
    if method not in CALIBRATION_METHODS:
        raise CompileError(f"--calibration-method: expected one of "
                           f"{list(CALIBRATION_METHODS)}, got '{method}'")
    return method


@dataclass
class TensorStatistics:
    """Running statistics of one tensor over streamed samples: [min, max] (pass 1), then a
    histogram of `HISTOGRAM_BINS` bins over that fixed [min, max] (pass 2)."""

    lo: float = 0.0
    hi: float = 0.0
    counts: np.ndarray | None = None

    def observe_range(self, arr: np.ndarray) -> None:
        self.lo = min(self.lo, float(arr.min()))
        self.hi = max(self.hi, float(arr.max()))

    def observe_histogram(self, arr: np.ndarray) -> None:
        if self.hi <= self.lo:
            return
        counts, _ = np.histogram(arr, bins=HISTOGRAM_BINS, range=(self.lo, self.hi))
        self.counts = counts if self.counts is None else self.counts + counts

    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, HISTOGRAM_BINS + 1)

    def range(self, method: str) -> tuple[float, float]:
        """The int8 range `method` chooses, within [lo, hi]."""
        if method == "minmax" or self.counts is None:
            return self.lo, self.hi
        if method == "percentile":
            return self.percentile_range(PERCENTILE)
        if method == "entropy":
            return self.entropy_range()
        return self.mse_range()

    def percentile_range(self, percent: float) -> tuple[float, float]:
        """[left edge of the bin holding the (100 - percent)th percentile, right edge of the
        bin holding the percent-th], clipped to [lo, hi]."""
        assert self.counts is not None
        cumulative = np.cumsum(self.counts)
        total = float(cumulative[-1])
        tail = total * (100.0 - percent) / 100.0
        edges = self.edges()
        low_bin = int(np.searchsorted(cumulative, tail, side="right"))
        high_bin = int(np.searchsorted(cumulative, total - tail, side="left"))
        lo = max(self.lo, float(edges[min(low_bin, HISTOGRAM_BINS - 1)]))
        hi = min(self.hi, float(edges[min(high_bin, HISTOGRAM_BINS - 1) + 1]))
        return lo, hi

    def mse_range(self) -> tuple[float, float]:
        """[lo, hi] clipped to [-t, t], t = max(|lo|, |hi|) * s for the s of `MSE_SCALES`
        whose quantisation of the bin centres (weighted by their counts) has the least
        squared error (ties: the widest)."""
        assert self.counts is not None
        edges = self.edges()
        centres = ((edges[:-1] + edges[1:]) * 0.5)[self.counts > 0]
        weights = self.counts[self.counts > 0].astype(np.float64)
        best, best_error = (self.lo, self.hi), np.inf
        peak = max(-self.lo, self.hi)
        for scale in MSE_SCALES:
            lo, hi = max(self.lo, -peak * scale), min(self.hi, peak * scale)
            step, zero = qparams(lo, hi)
            codes = np.clip(np.rint(centres / step) + zero, -128, 127)
            error = float(np.dot(weights, (centres - (codes - zero) * step) ** 2))
            if error < best_error:
                best, best_error = (lo, hi), error
        return best


    def entropy_range(self) -> tuple[float, float]:
        """[lo, hi] clipped to [-t, t], t = max(|lo|, |hi|) * s for the s of `ENTROPY_SCALES`
        (range snapped outwards to `ENTROPY_BINS` bin edges) whose int8 codes give the least
        KL divergence KL(P || Q) (module docstring; ties: the widest)."""
        assert self.counts is not None
        counts = self.counts.reshape(ENTROPY_BINS, -1).sum(axis=1).astype(np.float64)
        width = (self.hi - self.lo) / ENTROPY_BINS
        centres = self.lo + (np.arange(ENTROPY_BINS) + 0.5) * width
        peak = max(-self.lo, self.hi)
        best, best_divergence = (self.lo, self.hi), np.inf
        for scale in ENTROPY_SCALES:
            first = int(np.floor((max(self.lo, -peak * scale) - self.lo) / width))
            last = int(np.ceil((min(self.hi, peak * scale) - self.lo) / width))
            first, last = max(first, 0), min(last, ENTROPY_BINS)
            if last - first < 256:
                continue
            lo, hi = self.lo + first * width, self.lo + last * width
            divergence = _kl_divergence(counts, first, last, centres[first:last], lo, hi)
            if divergence < best_divergence:
                best, best_divergence = (max(lo, self.lo), min(hi, self.hi)), divergence
        return best


def _kl_divergence(counts: np.ndarray, first: int, last: int, centres: np.ndarray,
                   lo: float, hi: float) -> float:
    """KL(P || Q) as TensorRT's entropy calibrator: P is the histogram clipped to bins
    [first, last) with the outliers folded into its edge bins; Q is the clipped histogram
    without the outliers, its mass per int8 code of [lo, hi] spread evenly over that code's
    non-empty bins; bins where P has mass and Q none get Q = `1e-4` of a count."""
    inside = counts[first:last]
    p = inside.copy()
    p[0] += counts[:first].sum()
    p[-1] += counts[last:].sum()
    step, zero = qparams(lo, hi)
    codes = (np.clip(np.rint(centres / step) + zero, -128, 127) + 128).astype(np.int64)
    mass = np.bincount(codes, weights=inside, minlength=256)
    filled = np.bincount(codes, weights=(inside > 0).astype(np.float64), minlength=256)
    q = np.where(inside > 0, mass[codes] / np.maximum(filled[codes], 1.0), 0.0)
    nonzero = p > 0
    q = np.where(nonzero & (q == 0.0), 1e-4, q)
    p, q = p[nonzero] / p.sum(), q[nonzero] / q[nonzero].sum()
    return float(np.sum(p * np.log(p / q)))


def activation_ranges(fn: func.FuncOp, sets: Sequence[Sequence[np.ndarray]] | None,
                      method: str = "minmax") -> Ranges:
    """The int8 range of every value of `fn` over the calibration sets (None: one seeded
    standard-normal set) chosen by `method` (module docstring)."""
    check_method(method)
    if not sets:
        sets = calibration_sets(None, function_inputs(fn), f"@{fn.sym_name.data}")
    statistics: dict[SSAValue, TensorStatistics] = {}
    for batch in sets:
        for value, arr in evaluate_layers(fn, batch).items():
            if arr.size:
                statistics.setdefault(value, TensorStatistics()).observe_range(arr)
    if method != "minmax":
        activations = {v for v, _ in statistics.items() if constant_value(v) is None}
        for batch in sets:
            for value, arr in evaluate_layers(fn, batch).items():
                if value in activations and arr.size:
                    statistics[value].observe_histogram(arr)
    return {value: stats.range(method) for value, stats in statistics.items()}


@dataclass(frozen=True)
class CalibratingQuantizePass(MrvlQuantizePass):
    """`mrvl-quantize` with int8 ranges from a calibration run of the reference executor
    (mrvl-opt registers this one; options as `MrvlQuantizePass`)."""

    calibration_method: str = "minmax"

    def activation_ranges(self, fn: func.FuncOp) -> Ranges:
        sets = None
        if self.calibration:
            sets = calibration_sets(self.calibration, function_inputs(fn),
                                    f"@{fn.sym_name.data}")
        return activation_ranges(fn, sets, self.calibration_method)
