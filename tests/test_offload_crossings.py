"""The offload report's crossings and CPU time share: `mrvl partition --report` estimates the
share, `mrvl report` on a build with a recorded run measures it, and each says which."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from test_cnn_layers import dense_block

from mrvl.driver.api import compile_to_partitioned
from mrvl.driver.cli import main
from mrvl.lowering.offload_report import (
    CROSSING_SECONDS,
    format_report,
    offload_report,
)
from mrvl.machine import Machine


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("crossings") / "dense.onnx"
    onnx.save(dense_block(layers=2), path)
    return path


def test_all_on_the_accelerator_has_no_crossing(model_path):
    report = offload_report(compile_to_partitioned(str(model_path)))
    assert report["crossings"] == {"count": 0, "bytes": 0, "switches": 0, "edges": []}
    assert report["cpu_time_share"] == 0.0
    assert report["time_estimate"]["source"] == "estimated"
    assert report["time_estimate"]["accelerator_s"] > 0


def test_forced_cpu_layer_counts_two_crossings(model_path):
    """b1.norm1 (an affine BN-ReLU, input and output [1, 8, 8, 24]) forced to the CPU: one
    tensor goes to the CPU and one comes back."""
    module = compile_to_partitioned(str(model_path), cpu_layers=["b1.norm1"])
    report = offload_report(module)
    crossed = report["crossings"]
    assert crossed["count"] == 2 and crossed["switches"] == 2
    assert [(e["from"][:4], e["to"][:4]) for e in crossed["edges"]] == [
        ("tvmg", "cpu_"), ("cpu_", "tvmg")]
    assert crossed["bytes"] == 2 * 4 * 8 * 8 * 24
    estimate = report["time_estimate"]
    assert estimate["crossings_s"] > 2 * CROSSING_SECONDS
    share = report["cpu_time_share"]
    total = estimate["accelerator_s"] + estimate["cpu_s"] + estimate["crossings_s"]
    assert share == pytest.approx((estimate["cpu_s"] + estimate["crossings_s"]) / total)
    assert 0.0 < share < 1.0
    # more tiles: the accelerator's part shrinks, so the CPU's share grows
    eight = offload_report(module, Machine(tiles=8))
    assert eight["time_estimate"]["accelerator_s"] == pytest.approx(
        estimate["accelerator_s"] / 8)
    assert eight["cpu_time_share"] > share
    text = format_report(report)
    assert "crossings: 2 tensor(s), 12,288 bytes between accelerator and CPU, 2 switch(es)" in text
    assert "(estimated:" in text


def test_report_measures_the_share_after_a_run(model_path, tmp_path, capsys):
    build = tmp_path / "build"
    assert main(["compile", str(model_path), "-o", str(build), "--cpu-layers", "b1.norm1"]) == 0
    capsys.readouterr()
    assert main(["report", str(build), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["crossings"]["count"] == 2
    assert before["cpu_time_source"] == "estimated"
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    assert main(["run", str(build), "--inputs", str(tmp_path / "x.npz")]) == 0
    capsys.readouterr()
    assert main(["report", str(build), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["cpu_time_source"] == "measured"
    assert after["cpu_time_s"] > 0 and after["accelerator_time_s"] > 0
    assert after["cpu_time_share"] == pytest.approx(
        after["cpu_time_s"] / (after["cpu_time_s"] + after["accelerator_time_s"]))
    assert main(["report", str(build)]) == 0
    text = capsys.readouterr().out
    assert "crossings: 2 tensor(s)" in text
    assert "CPU share of run time:" in text
    assert "measured: CPU steps' onnxruntime wall time" in text
