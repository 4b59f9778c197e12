"""The Python API (`mrvl.driver.api`): compile, run (with the acceptance check), report, show, on
the MNIST CNN at batch 2 with the second max-pool forced to the CPU, so the build alternates
accelerator -> CPU -> accelerator steps. Outputs are checked against onnxruntime with
Marvell's fp16 rule."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from mrvl.errors import MrvlError, RuntimeInputError
from mrvl.models import mnist_cnn_trained
from mrvl.driver.verb_example import fix_batch
from mrvl.driver import api
from mrvl.sim import acceptance


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "build"
    api.compile(fix_batch(mnist_cnn_trained(), 2), out, num_tiles=4, quantize="fp16",
                cpu_layers=["max_pooling2d_1"], require_compute=False)
    return out


def test_static_report_before_any_run(build):
    data = api.report(build)
    assert not data["recorded_run"]
    accel = [s for s in data["steps"] if s["kind"] == "accelerator"]
    assert accel and accel[0]["source"] == "static estimate"
    rows = accel[0]["layer_rows"]
    assert rows and all(r["cycles"] == r["traffic_roofline_cycles"] for r in rows)
    assert data["accelerator_mac_share"] == 1.0  # a max-pool has no MACs
    assert [s["kind"] for s in data["steps"]] == ["accelerator", "cpu", "accelerator"]
    assert any("forced to the CPU" in n["reason"] for n in data["cpu_nodes"])


def test_run_check_report(build):
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    result = api.run(build, {"permute_input": x}, check=True)
    assert [s.kind for s in result.result.steps] == ["accelerator", "cpu", "accelerator"]
    assert result.passed and result.total_cycles > 0
    session = ort.InferenceSession(str(build / "model.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"permute_input": x})
    assert acceptance.check_output("dense_1", result.outputs["dense_1"], expected).passed
    data = api.report(build)
    assert data["recorded_run"]
    accel = [s for s in data["steps"] if s["kind"] == "accelerator"]
    assert accel[0]["source"] == "simulated run" and accel[0]["cycles"] > 0
    text = api.format_report(data)
    assert "(simulated run)" in text and "forced to the CPU" in text
    assert json.loads((build / "run_report.json").read_text())["total_cycles"] == (
        result.total_cycles)


def test_load_keeps_the_model_loaded(build):
    x = np.zeros((2, 1, 28, 28), np.float32)
    with api.load(build) as model:
        first = model.run({"permute_input": x}).outputs["dense_1"]
        second = model.run({"permute_input": x}).outputs["dense_1"]
        with pytest.raises(RuntimeInputError, match=r"expected \[2, 1, 28, 28\]"):
            model.run({"permute_input": x[:1]})
    np.testing.assert_array_equal(first, second)


def test_show_writes_dot(build, tmp_path):
    path = api.show(build, tmp_path / "partition.dot")
    text = path.read_text()
    assert text.startswith("digraph") and "tvmgen_mrvl_main_" in text


def test_compile_missing_model(tmp_path):
    with pytest.raises(MrvlError, match="does not exist"):
        api.compile(tmp_path / "nope.onnx", tmp_path / "out")
