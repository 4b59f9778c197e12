"""The hybrid runtime's CPU path, border conversions and input validation, and the acceptance
rule. Build directories here are made by hand (the MNIST CNN cut into three ONNX pieces with
onnx.utils.Extractor), so these tests do not depend on the backend compiler; the accelerator
path through compiled builds is in tests/test_runtime_accel.py.

Tolerances: the CPU pieces run the same ONNX nodes as the whole model in onnxruntime, so the
outputs are compared with rtol 1e-5 / atol 1e-6 (onnxruntime may fuse differently across a cut).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.utils import Extractor

from mrvl.errors import RuntimeInputError, SimulationError
from mrvl.models import mnist_cnn
from mrvl.sim import acceptance
from mrvl.mlip_binary import IODesc
from mrvl.mlip_isa import DType, Layout
from mrvl.sim.runtime import (
    BuildDirError,
    CompiledModel,
    Value,
    adapt_layout,
    from_device,
    load_manifest,
    run_reference,
    to_device,
)

CUTS = [  # (symbol, inputs, outputs): three CPU steps, the middle one ends NHWC
    ("cpu_main_0", ["permute_input"], ["max_pooling2d"]),
    ("cpu_main_1", ["max_pooling2d"], ["flatten/Transpose"]),
    ("cpu_main_2", ["flatten/Transpose"], ["dense_1"]),
]


def _cpu_build(tmp: Path, model: onnx.ModelProto, batch: int = 1) -> Path:
    build = tmp / f"build{batch}"
    build.mkdir()
    onnx.save(model, build / "model.onnx")
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    steps = []
    for symbol, ins, outs in CUTS:
        onnx.save(extractor.extract_model(ins, outs), build / f"{symbol}.onnx")
        steps.append({"kind": "cpu", "symbol": symbol, "onnx": f"{symbol}.onnx",
                      "inputs": ins, "outputs": outs})
    manifest = {
        "format": "mrvl-build", "version": 1,
        "model": {"onnx": "model.onnx",
                  "inputs": [{"name": "permute_input", "shape": [batch, 1, 28, 28],
                              "dtype": "float32"}],
                  "outputs": [{"name": "dense_1", "shape": [batch, 10], "dtype": "float32"}]},
        "options": {"num_tiles": 8, "quantize": "fp16"},
        "steps": steps,
    }
    (build / "manifest.json").write_text(json.dumps(manifest))
    return build


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return mnist_cnn(batch=1)


@pytest.fixture(scope="module")
def build(tmp_path_factory, model) -> Path:
    return _cpu_build(tmp_path_factory.mktemp("rt"), model)


def _x(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def test_cpu_steps_match_onnxruntime(build, model):
    x = _x()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"permute_input": x})
    with CompiledModel.load(build) as compiled:
        result = compiled.run({"permute_input": x})
    assert list(result.outputs) == ["dense_1"]
    got = result.outputs["dense_1"]
    assert got.dtype == np.float32 and got.shape == (1, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [s.symbol for s in result.steps] == ["cpu_main_0", "cpu_main_1", "cpu_main_2"]
    assert result.total_cycles == 0
    ref = run_reference(load_manifest(build), {"permute_input": x})
    np.testing.assert_array_equal(ref["dense_1"], expected)


def test_run_batches_concatenates_and_pads(tmp_path):
    x = _x(5, seed=1)
    session = ort.InferenceSession(mnist_cnn().SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"permute_input": x})
    build2 = _cpu_build(tmp_path, mnist_cnn(batch=2), batch=2)
    seen = []
    with CompiledModel.load(build2) as compiled:
        outputs, results = compiled.run_batches({"permute_input": x},
                                                progress=lambda k, n: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and len(results) == 3
    assert outputs["dense_1"].shape == (5, 10)
    np.testing.assert_allclose(outputs["dense_1"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"image": _x()}, "unknown input name(s) ['image']; the model expects 'permute_input'"),
        ({}, "missing input(s) ['permute_input']"),
        ({"permute_input": _x(2)}, "shape [2, 1, 28, 28], expected [1, 1, 28, 28]"),
        ({"permute_input": _x().astype(np.float64)}, "dtype float64, expected float32"),
        ({"permute_input": np.zeros((1, 28, 28), np.float32)}, "shape [1, 28, 28], expected"),
    ],
)
def test_bad_inputs_one_line(build, feeds, message):
    with CompiledModel.load(build) as compiled:
        with pytest.raises(RuntimeInputError) as info:
            compiled.run(feeds)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_batches_check_the_other_dimensions(build):
    with CompiledModel.load(build) as compiled:
        with pytest.raises(RuntimeInputError,
                           match=r"shape \[3, 1, 28, 27\], expected \[N, 1, 28"):
            compiled.run_batches({"permute_input": np.zeros((3, 1, 28, 27), np.float32)})


def test_malformed_build_dirs(tmp_path, build):
    with pytest.raises(BuildDirError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(BuildDirError, match="no manifest.json"):
        load_manifest(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(build, broken)
    (broken / "manifest.json").write_text("{ not json")
    with pytest.raises(BuildDirError, match="cannot read the manifest"):
        load_manifest(broken)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["steps"] = manifest["steps"][1:]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildDirError, match="neither model inputs nor outputs of an earlier"):
        load_manifest(broken)
    manifest = json.loads((build / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / "cpu_main_1.onnx").unlink()
    with pytest.raises(BuildDirError, match="cpu_main_1.onnx' is missing"):
        load_manifest(broken)
    (broken / "cpu_main_1.onnx").write_bytes(b"garbage")
    with pytest.raises(BuildDirError, match="onnxruntime cannot load"):
        CompiledModel.load(broken)


def test_adapt_layout():
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = nchw.transpose(0, 2, 3, 1)
    got = adapt_layout(Value(nchw, "NCHW"), (2, 4, 5, 3), "NHWC", "t")
    np.testing.assert_array_equal(got, nhwc)
    # tags decide when the two layouts have the same shape
    cube = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    np.testing.assert_array_equal(adapt_layout(Value(cube, "NCHW"), cube.shape, "NHWC", "t"),
                                  cube.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(adapt_layout(Value(cube, "NHWC"), cube.shape, "NCHW", "t"),
                                  cube.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(adapt_layout(Value(cube, None), cube.shape, "NHWC", "t"), cube)
    # unknown tag: the shape decides
    np.testing.assert_array_equal(adapt_layout(Value(nhwc, None), (2, 3, 4, 5), None, "t"), nchw)
    # size-1 dimensions
    flat = np.arange(10, dtype=np.float32).reshape(1, 10)
    assert adapt_layout(Value(flat, None), (1, 1, 1, 10), "NHWC", "t").shape == (1, 1, 1, 10)
    with pytest.raises(SimulationError, match=r"shape \[1, 10\], the consumer expects \[1, 9\]"):
        adapt_layout(Value(flat, None), (1, 9), None, "t")


def test_dtype_conversions_follow_the_isa():
    x = np.array([0.1, -2.5, 1e5, 3.0000001, -1e-9], dtype=np.float32)
    fp16 = IODesc("x", (5,), dtype=DType.FP16, layout=Layout.NONE)
    np.testing.assert_array_equal(to_device(x, fp16),
                                  np.array([0.1, -2.5, np.inf, 3.0, -0.0], np.float16))
    assert to_device(x, fp16).dtype == np.float16
    # quantised input: q = saturate(rint_half_even(x * scale) + zp)
    q8 = IODesc("x", (5,), dtype=DType.INT8, layout=Layout.NONE, quantize=True, scale=10.0,
                zero_point=3)
    np.testing.assert_array_equal(to_device(x, q8), np.array([4, -22, 127, 33, 3], np.int8))
    half = np.array([0.25, 0.35, -0.25], dtype=np.float32)  # 2.5, 3.5, -2.5: ties to even
    np.testing.assert_array_equal(to_device(half, q8), np.array([5, 7, 1], np.int8))
    # the simulator's host conversion: overflow is defined (saturation, fp16 inf), NaN gives
    # the zero point, and neither raises a warning under -W error
    from mrvl.sim.simulator import to_device as sim_to_device

    huge = np.array([1e38, -1e38, np.nan, 1e6], dtype=np.float32)
    np.testing.assert_array_equal(sim_to_device(huge, IODesc("x", (4,), dtype=DType.INT8,
                                                             quantize=True, scale=10.0,
                                                             zero_point=3)),
                                  np.array([127, -128, 3, 127], np.int8))
    np.testing.assert_array_equal(sim_to_device(huge, IODesc("x", (4,), dtype=DType.FP16)),
                                  np.array([np.inf, -np.inf, np.nan, np.inf], np.float16))
    # quantised output: (q - zp) * scale
    out = IODesc("y", (3,), dtype=DType.INT8, layout=Layout.NONE, quantize=True, scale=0.5,
                 zero_point=-2)
    np.testing.assert_array_equal(from_device(np.array([-128, 0, 127], np.int8), out),
                                  np.array([-63.0, 1.0, 64.5], np.float32))
    assert from_device(np.float16([1.5]), fp16).dtype == np.float32


def test_acceptance_fp16_rule():
    ref = np.array([100.0, -50.0, 0.5, 0.0, 2.0], dtype=np.float32)
    ok = ref * np.float32(1.029)
    ok[2] = 7.0  # 0.5 < 100/100: not judged
    check = acceptance.check_output("y", ok, ref, "fp16")
    assert check.passed and check.checked == 3 and check.failing == 0
    assert abs(check.max_rel_err - 0.029) < 1e-6
    bad = ref.copy()
    bad[4] = 2.0 * 1.031
    check = acceptance.check_output("y", bad, ref, "fp16")
    assert not check.passed and check.failing == 1 and "1 element(s) outside" in check.summary()
    nan = ref.copy()
    nan[3] = np.nan
    assert not acceptance.check_output("y", nan, ref, "fp16").passed
    big = np.array([7e4, 1.0], dtype=np.float32)
    check = acceptance.check_output("y", big, big, "fp16")
    assert not check.passed and check.beyond_fp16 == 1 and "beyond fp16" in check.summary()
    check = acceptance.check_output("y", np.zeros((2, 2)), np.zeros((2, 3)), "fp16")
    assert not check.passed and "shape" in check.message


def test_acceptance_int8_rule():
    ref = np.array([127.0, -10.0, 0.0], dtype=np.float32)  # LSB = 1.0
    assert acceptance.check_output("y", ref + np.float32(3.0), ref, "int8").passed
    check = acceptance.check_output("y", ref + np.float32([0, 3.5, 0]), ref, "int8")
    assert not check.passed and check.failing == 1 and abs(check.max_err_lsb - 3.5) < 1e-6


def test_acceptance_integer_outputs_exact():
    ref = np.array([3, 1, 4], dtype=np.int64)
    assert acceptance.check_output("labels", ref.copy(), ref, "fp16").passed
    check = acceptance.check_output("labels", np.array([3, 1, 5]), ref, "fp16")
    assert not check.passed and check.mode == "exact" and check.failing == 1
    checks = acceptance.check_outputs({"a": ref}, {"a": ref, "b": ref})
    assert not acceptance.passed(checks) and checks[1].message == "output missing"
    nan = np.array([np.nan, 2.0])
    exact = acceptance.check_output("f", nan.copy(), nan, "exact")  # NaN == NaN, no warning
    assert exact.passed and exact.max_abs_err == 0.0
    exact = acceptance.check_output("f", np.array([np.nan, 2.5]), nan, "exact")
    assert not exact.passed and exact.failing == 1 and exact.max_abs_err == 0.5
