"""ONNX's own backend node tests, for every op the graph dialect models, run through
import_onnx + the reference executor, and through export_function + onnxruntime.

onnx 1.23 wheels do not ship the test data: it is regenerated here by importing the case modules
of `onnx.backend.test.case.node` for the ops we model (importing a module runs its `export_*`
functions, which register the cases). The cases are cached in pytest's cache directory keyed by
the onnx version, so only the first run pays for the regeneration (~6 s).

Adaptations (the data and the expected outputs are ONNX's, unchanged):
- inputs that are operator parameters in ONNX (Reshape's shape, Split's split, Squeeze /
  Unsqueeze axes, Resize roi / scales / sizes, Pad pads / constant_value / axes, Clip min / max,
  Dropout ratio / training_mode) are turned into initializers: the graph dialect has static
  shapes, so shape-defining parameters are compile-time constants (as in every exported model).
- tolerance: rtol 1e-4, atol 1e-5 for floating outputs, exact equality for integer and bool
  outputs; except the cases in LOOSE_TOLERANCE (reason given there).

Cases whose op is outside the 2-D graph ops (1-D / 3-D pools, cubic or antialiased resize,
training-mode batch norm, MaxPool with indices, integer types, ...) must still pass: they import
as graph.onnx and run on onnxruntime. EXCLUDED lists what cannot run at all, with the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from mrvl.frontend.onnx_export import export_function
from mrvl.frontend.onnx_import import import_onnx
from mrvl.sim.reference import run_function

# Case modules of onnx.backend.test.case.node for the op types the graph dialect models.
CASE_MODULES = (
    "conv gemm matmul add sub mul div relu leakyrelu prelu clip sigmoid hardsigmoid hardswish "
    "tanh softmax maxpool averagepool globalaveragepool globalmaxpool batch_normalization pad "
    "concat split reshape flatten squeeze unsqueeze transpose resize identity dropout constant "
    "convtranspose groupnormalization instance_normalization reducemean"
).split()

# op_type -> ONNX input positions that are operator parameters (made initializers).
PARAMETER_INPUTS = {
    "Reshape": (1,),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Resize": (1, 2, 3),
    "Pad": (1, 2, 3),
    "Clip": (1, 2),
    "Dropout": (1, 2),
}

EXCLUDED = {
    "test_identity_sequence": "sequence-typed values are outside the tensor-only graph dialect",
    "test_identity_opt": "optional-typed values are outside the tensor-only graph dialect",
    "test_training_dropout": "training-mode dropout draws a random mask: outputs are not "
    "reproducible (onnxruntime's RNG differs from numpy's)",
    "test_training_dropout_default": "training-mode dropout: random mask, not reproducible",
    "test_training_dropout_mask": "training-mode dropout: random mask, not reproducible",
    "test_training_dropout_default_mask": "training-mode dropout: random mask, not reproducible",
    # align_corners with a fractional in * scale: the spec defines x_original with
    # length_resized, the output tensor's (integer) length, and so do onnxruntime and our
    # kernel; ONNX's Python reference (which made these expected outputs) uses in * scale.
    "test_resize_downsample_scales_linear_align_corners": "expected data uses a fractional "
    "length_resized for align_corners, against the spec text and onnxruntime",
    "test_resize_downsample_scales_cubic_align_corners": "expected data uses a fractional "
    "length_resized for align_corners, against the spec text and onnxruntime (cubic runs on "
    "onnxruntime through graph.onnx)",
}

LOOSE_TOLERANCE = {
    # The expected output is written in the ONNX case with 4 decimals only.
    "test_averagepool_2d_ceil_last_window_starts_on_pad": (1e-3, 1e-4),
}

RTOL, ATOL = 1e-4, 1e-5


def _regenerate() -> list[tuple[str, bytes, list[np.ndarray] | None, list[np.ndarray] | None]]:
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in CASE_MODULES:
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    cases = []
    for case in node_cases._NodeTestCases:  # noqa: SLF001 (the documented collection list)
        inputs, outputs = case.data_sets[0]
        arrays = _as_arrays(inputs), _as_arrays(outputs)
        cases.append((case.name, case.model.SerializeToString(), *arrays))
    return cases


def _as_arrays(values) -> list[np.ndarray] | None:
    out = []
    for v in values:
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        if not isinstance(v, np.ndarray | np.generic):
            return None  # sequence / optional values
        out.append(np.asarray(v))
    return out


def _cases(config: pytest.Config | None):
    key = hashlib.sha1(f"{onnx.__version__}:{CASE_MODULES}".encode()).hexdigest()[:16]
    cache_file = None
    if config is not None and getattr(config, "cache", None) is not None:
        cache_file = Path(config.cache.mkdir("mrvl_onnx_node_cases")) / f"{key}.pkl"
        try:
            with cache_file.open("rb") as f:
                return pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError):
            pass  # absent or unreadable: regenerate
    cases = _regenerate()
    if cache_file is not None:
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(cases, f)
        os.replace(tmp, cache_file)  # atomic: concurrent runs never read a partial file
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node_case" not in metafunc.fixturenames:
        return
    params = []
    for case in _cases(metafunc.config):
        marks = []
        if case[0] in EXCLUDED:
            marks.append(pytest.mark.skip(reason=EXCLUDED[case[0]]))
        params.append(pytest.param(case, id=case[0], marks=marks))
    metafunc.parametrize("node_case", params)


def _with_parameter_initializers(
    model: onnx.ModelProto, inputs: list[np.ndarray]
) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Move parameter inputs (PARAMETER_INPUTS) from graph inputs to initializers."""
    g = model.graph
    values = dict(zip([i.name for i in g.input], inputs))
    params = set()
    for node in g.node:
        for pos in PARAMETER_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos] in values:
                params.add(node.input[pos])
    if not params:
        return model, inputs
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [vi for vi in model.graph.input if vi.name not in params]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for name in sorted(params):
        model.graph.initializer.append(numpy_helper.from_array(values[name], name))
    return model, [values[vi.name] for vi in keep]


def _compare(name: str, what: str, got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    rtol, atol = LOOSE_TOLERANCE.get(name, (RTOL, ATOL))
    assert len(got) == len(expected), f"{what}: expected {len(expected)} outputs, got {len(got)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        assert g.dtype == e.dtype, f"{what} output {i}: expected dtype {e.dtype}, got {g.dtype}"
        assert g.shape == e.shape, f"{what} output {i}: expected shape {e.shape}, got {g.shape}"
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"{what} output {i}")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{what} output {i}")


def test_node_case(node_case) -> None:
    name, model_bytes, inputs, expected = node_case
    assert inputs is not None and expected is not None, f"{name}: non-tensor values"
    model, inputs = _with_parameter_initializers(onnx.ModelProto.FromString(model_bytes), inputs)
    # Fixed input shapes: the cases' own (some have 0-sized dims).
    shapes = {vi.name: list(x.shape) for vi, x in zip(model.graph.input, inputs)}
    module = import_onnx(model, input_shapes=shapes)
    got = run_function(module, inputs)
    _compare(name, "reference executor", got, expected)

    exported = export_function(module)
    onnx.checker.check_model(exported)
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {vi.name: x for vi, x in zip(exported.graph.input, inputs)}
    _compare(name, "export + onnxruntime", session.run(None, feeds), expected)
