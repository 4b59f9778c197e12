"""Marvell's acceptance rule for accelerator outputs against an fp32 reference (onnxruntime).

- fp16: every element whose reference magnitude is within 100x of the largest reference
  magnitude of that output (|ref| >= max|ref| / 100) differs from the reference by at most
  3 % relative (|got - ref| <= 0.03 |ref|). Smaller elements are not judged.
- int8: every element is within +-3 LSB of the reference, LSB = max|ref| / 127.
- Reference values beyond fp16's range (|ref| > 65504) cannot be represented on the
  accelerator: they are counted and reported (`beyond_fp16`); an fp16 output with such
  values fails.

`check_outputs(got, expected, quantize)` returns one `OutputCheck` per output (the figures the
CLI prints); `passed(checks)` is the overall verdict. A shape mismatch, a NaN where the
reference is finite, or a missing output fails the check (it is never an exception).

No check passes vacuously: where the reference is NaN or +-Inf the result must be NaN or
the same infinity (else those elements fail), and a non-empty output of which the rule
judges no element fails ("nothing judged"). A reference of only zeros is judged exactly
(every result element must be 0).

Integer and boolean outputs (labels, indices, counts) are compared exactly whatever the mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

FP16_MAX = 65504.0
FP16_RELATIVE = 0.03
FP16_RANGE = 100.0
INT8_LSB_TOLERANCE = 3.0
INT8_LEVELS = 127.0
MODES = ("fp16", "int8", "exact")


@dataclass(frozen=True)
class OutputCheck:
    """The figures of one output. `max_rel_err` is over the judged elements (fp16 rule);
    `max_err_lsb` is the largest error in LSB (int8 rule); `failing` counts elements
    outside the rule; `message` says why a check failed in one line."""

    name: str
    mode: str
    shape: tuple[int, ...]
    checked: int
    failing: int
    max_abs_err: float
    max_rel_err: float
    max_err_lsb: float
    max_ref: float
    beyond_fp16: int
    passed: bool
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: name, verdict and error figures."""
        verdict = "PASS" if self.passed else "FAIL"
        text = (
            f"{self.name}: {verdict} ({self.mode}) shape {list(self.shape)}, "
            f"max |ref| {self.max_ref:.4g}, max abs err {self.max_abs_err:.3g}"
        )
        if self.mode == "fp16":
            text += (
                f", max rel err {100 * self.max_rel_err:.3f}% over {self.checked} judged "
                f"elements (limit {100 * FP16_RELATIVE:.0f}%)"
            )
        elif self.mode == "int8":
            text += f", max err {self.max_err_lsb:.2f} LSB (limit {INT8_LSB_TOLERANCE:.0f})"
        if self.failing:
            text += f", {self.failing} element(s) outside the rule"
        if self.beyond_fp16:
            text += f", {self.beyond_fp16} reference value(s) beyond fp16 +-{FP16_MAX:.0f}"
        if self.message:
            text += f": {self.message}"
        return text


def _failed(name: str, mode: str, shape, message: str) -> OutputCheck:
    return OutputCheck(name, mode, tuple(shape), 0, 0, float("inf"), float("inf"),
                       float("inf"), 0.0, 0, False, message)


def check_output(name: str, got: np.ndarray, ref: np.ndarray, mode: str = "fp16") -> OutputCheck:
    """Apply the rule of `mode` ("fp16", "int8" or "exact") to one output."""
    if mode not in MODES:
        raise ValueError(f"unknown acceptance mode '{mode}', expected one of {MODES}")
    got = np.asarray(got)
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return _failed(name, mode, got.shape,
                       f"shape {list(got.shape)} differs from the reference's {list(ref.shape)}")
    if not np.issubdtype(ref.dtype, np.floating) or mode == "exact":
        equal = got == ref if not np.issubdtype(ref.dtype, np.floating) else (
            (got == ref) | (np.isnan(got) & np.isnan(ref)))
        failing = int(np.size(equal) - np.count_nonzero(equal))
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        compared = diff[~np.isnan(diff)]  # NaN == NaN counts as equal
        max_abs = float(compared.max()) if compared.size else 0.0
        max_ref = float(np.max(np.abs(ref.astype(np.float64)))) if ref.size else 0.0
        return OutputCheck(name, "exact", ref.shape, int(ref.size), failing, max_abs,
                           0.0, 0.0, max_ref, 0, failing == 0,
                           "" if failing == 0 else "values differ from the reference")
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    finite = np.isfinite(r)
    beyond = int(np.count_nonzero(np.abs(r[finite]) > FP16_MAX))
    if r.size == 0:
        return OutputCheck(name, mode, ref.shape, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, True)
    max_ref = float(np.max(np.abs(r[finite]))) if finite.any() else 0.0
    bad_nan = int(np.count_nonzero(~np.isfinite(g) & finite))
    # where the reference is NaN / +-Inf, the result must be NaN / the same infinity
    nonfinite_match = (np.isnan(r) & np.isnan(g)) | (np.isinf(r) & (g == r))
    bad_nonfinite = int(np.count_nonzero(~finite & ~nonfinite_match))
    matched_nonfinite = int(np.count_nonzero(~finite & nonfinite_match))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(g - r), 0.0)
    err = np.where(np.isfinite(err), err, np.inf)
    max_abs = float(err.max())
    if mode == "fp16":
        if max_ref > 0:
            judged = finite & (np.abs(r) >= max_ref / FP16_RANGE) & (np.abs(r) > 0)
        else:  # a reference of zeros: judged exactly
            judged = finite
        rel = np.zeros_like(r)
        np.divide(err, np.abs(r), out=rel, where=judged & (r != 0))
        rel = np.where(judged & (r == 0) & (err > 0), np.inf, rel)
        failing = int(np.count_nonzero(judged & (rel > FP16_RELATIVE)))
        failing += int(np.count_nonzero(~judged & finite & ~np.isfinite(err)))
        failing += bad_nonfinite
        max_rel = float(rel[judged].max()) if judged.any() else 0.0
        lsb = max_ref / INT8_LEVELS if max_ref > 0 else 1.0
        checked = int(np.count_nonzero(judged)) + matched_nonfinite
        passed = failing == 0 and bad_nan == 0 and beyond == 0 and checked > 0
        message = ""
        if bad_nonfinite:
            message = (f"{bad_nonfinite} element(s) where the reference is NaN or Inf and the "
                       "result is not")
        elif bad_nan:
            message = f"{bad_nan} non-finite value(s) where the reference is finite"
        elif beyond:
            message = "the reference exceeds fp16's range"
        elif checked == 0:
            message = "nothing judged: the rule judges no element of this output"
        return OutputCheck(name, mode, ref.shape, checked, failing,
                           max_abs, max_rel, max_abs / lsb, max_ref, beyond, passed, message)
    lsb = max_ref / INT8_LEVELS if max_ref > 0 else np.finfo(np.float32).tiny
    in_lsb = err / lsb
    failing = int(np.count_nonzero(in_lsb > INT8_LSB_TOLERANCE)) + bad_nonfinite
    max_lsb = float(in_lsb.max())
    nonzero = finite & (np.abs(r) > 0)
    rel = np.zeros_like(r)
    np.divide(err, np.abs(r), out=rel, where=nonzero)
    max_rel = float(rel[nonzero].max()) if nonzero.any() else 0.0
    passed = failing == 0 and bad_nan == 0
    message = f"{bad_nan} non-finite value(s) where the reference is finite" if bad_nan else ""
    if bad_nonfinite:
        message = (f"{bad_nonfinite} element(s) where the reference is NaN or Inf and the "
                   "result is not")
    return OutputCheck(name, mode, ref.shape, int(r.size), failing, max_abs, max_rel, max_lsb,
                       max_ref, beyond, passed, message)


def check_outputs(
    got: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    mode: str = "fp16",
    modes: Mapping[str, str] | None = None,
) -> list[OutputCheck]:
    """One check per name of `expected` (in its order). `modes` overrides `mode` per output
    (for example "exact" for outputs computed on the CPU only)."""
    checks = []
    for name, ref in expected.items():
        out_mode = (modes or {}).get(name, mode)
        if name not in got:
            checks.append(_failed(name, out_mode, np.shape(ref), "output missing"))
            continue
        checks.append(check_output(name, got[name], ref, out_mode))
    return checks


def passed(checks: Sequence[OutputCheck]) -> bool:
    """True when every output passes (and there is at least one)."""
    return bool(checks) and all(c.passed for c in checks)
