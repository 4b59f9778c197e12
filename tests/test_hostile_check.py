"""Hostile-input catalogue: `--check` never passes vacuously (issue 11, item 4).

A check that judges no element fails; where the reference is NaN or Inf the result must be
NaN or the same infinity. End to end: one NaN input pixel makes onnxruntime's logits NaN
while the simulator's stay finite, so `mrvl run --check` exits 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hostile import INPUT, digit, mnist_file, npz
from mrvl.driver.cli import main
from mrvl.sim.acceptance import check_output

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_nonfinite_reference_must_be_matched(mode):
    ref = np.array([1.0, NAN, INF, -INF, 2.0], np.float32)
    assert check_output("y", ref.copy(), ref, mode).passed
    for got in ([1.0, 0.5, INF, -INF, 2.0], [1.0, NAN, 1e4, -INF, 2.0],
                [1.0, NAN, -INF, -INF, 2.0]):
        check = check_output("y", np.array(got, np.float32), ref, mode)
        assert not check.passed and "reference is NaN or Inf" in check.message


def test_all_nan_reference_fails_against_finite_result():
    check = check_output("y", np.zeros(10, np.float32), np.full(10, NAN, np.float32))
    assert not check.passed and check.failing == 10


def test_nothing_judged_does_not_pass():
    ref = np.full(4, NAN, np.float32)
    ok = check_output("y", ref.copy(), ref)
    assert ok.passed and ok.checked == 4  # NaN matched NaN: judged, equal
    zeros = np.zeros(4, np.float32)
    assert check_output("y", zeros, zeros).passed
    wrong = check_output("y", np.full(4, 1e-3, np.float32), zeros)
    assert not wrong.passed  # a reference of zeros is judged exactly


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-check")


def test_nan_input_pixel_fails_the_check(work, capsys):
    build = work / "build"
    assert main(["compile", str(mnist_file(work / "m.onnx")), "-o", str(build)]) == 0
    x = digit()
    x[0, 0, 14, 14] = NAN
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", str(npz(work / "nan.npz", **{INPUT: x})),
                 "--check"]) == 1
    out = capsys.readouterr()
    assert "FAIL" in out.out and "reference is NaN or Inf" in out.out


def test_nonfinite_weights_fail_the_check(work, capsys):
    model = onnx.load(mnist_file(work / "m2.onnx"))
    weight = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    array = numpy_helper.to_array(weight).copy()
    array.flat[0], array.flat[1] = NAN, INF
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    path = work / "nan-weights.onnx"
    onnx.save(model, path)
    build = work / "nan-build"
    assert main(["compile", str(path), "-o", str(build)]) == 0
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", str(npz(work / "x.npz", **{INPUT: digit()})),
                 "--check"]) == 1
