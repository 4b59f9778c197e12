"""The `mrvl` verbs end to end on the MNIST CNN: compile, run (--check, -o, --perf-debug),
report, show; and bad input (malformed model, wrong input name or shape, missing file, not a
build directory) giving a one-line error and a non-zero exit, never a traceback.

The verbs run in-process through `mrvl.driver.cli.main` (fast); one case runs the installed
`mrvl` script in a subprocess to check what a user sees. Outputs are checked against
onnxruntime with Marvell's fp16 rule (sim/acceptance.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.driver.cli import main
from mrvl.models import mnist_cnn, mnist_cnn_trained
from mrvl.driver.verb_example import fix_batch
from mrvl.sim import acceptance

INPUT, OUTPUT = "permute_input", "dense_1"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def model_path(work) -> Path:
    path = work / "mnist.onnx"
    onnx.save(fix_batch(mnist_cnn_trained(), 1), path)
    return path


@pytest.fixture(scope="module")
def build(work, model_path) -> Path:
    out = work / "build"
    assert main(["compile", str(model_path), "-o", str(out), "--num-tiles", "8",
                 "--quantize", "fp16"]) == 0
    return out


@pytest.fixture(scope="module")
def x(work) -> np.ndarray:
    return np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert expect in err, err


def test_compile_writes_a_build_dir(build):
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["format"] == "mrvl-build"
    assert any(step["kind"] == "accelerator" for step in manifest["steps"])
    assert (build / "model.onnx").is_file()


def test_run_check_and_outputs(build, work, x, capsys):
    inputs = _npz(work / "x.npz", **{INPUT: x})
    out = work / "y.npz"
    assert main(["run", str(build), "--inputs", str(inputs), "-o", str(out), "--check",
                 "--perf-debug"]) == 0
    text = capsys.readouterr().out
    assert "check: PASS" in text and f"check {OUTPUT}: PASS (fp16)" in text
    assert "cycles" in text
    session = ort.InferenceSession(str(build / "model.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {INPUT: x})
    with np.load(out) as data:
        got = data[OUTPUT]
    assert acceptance.check_output(OUTPUT, got, expected, "fp16").passed
    run_report = json.loads((build / "run_report.json").read_text())
    assert run_report["total_cycles"] > 0


def test_check_failure_exits_1(build, work, x, capsys):
    """A build whose reference model differs (untrained weights) fails the check: exit 1."""
    other = work / "other-build"
    shutil.copytree(build, other)
    onnx.save(fix_batch(mnist_cnn(), 1), other / "model.onnx")
    manifest = json.loads((other / "manifest.json").read_text())
    del manifest["artifacts"]["model.onnx"]  # a consistent build whose reference differs
    (other / "manifest.json").write_text(json.dumps(manifest))
    inputs = _npz(work / "x3.npz", **{INPUT: x})
    assert main(["run", str(other), "--inputs", str(inputs), "--check"]) == 1
    captured = capsys.readouterr()
    assert f"check {OUTPUT}: FAIL (fp16)" in captured.out and "check: FAIL" in captured.err


def test_int8_build_passes_the_int8_rule(work, model_path, capsys):
    from mrvl.models import load_digits_28

    x_train, _, x_test, _ = load_digits_28()
    calibration = _npz(work / "cal.npz", **{INPUT: x_train[:16, None]})
    out = work / "build-int8"
    assert main(["compile", str(model_path), "-o", str(out), "--num-tiles", "2",
                 "--quantize", "int8", "--calibration", str(calibration)]) == 0
    inputs = _npz(work / "digit.npz", **{INPUT: x_test[:1]})
    capsys.readouterr()
    assert main(["run", str(out), "--inputs", str(inputs), "--check"]) == 0
    assert f"check {OUTPUT}: PASS (int8)" in capsys.readouterr().out


def test_corrupt_binary_one_line(build, work, x, capsys):
    broken = work / "broken-build"
    shutil.copytree(build, broken)
    binary = broken / "tvmgen_mrvl_main_0.bin"
    data = bytearray(binary.read_bytes())
    data[200] ^= 0xFF
    binary.write_bytes(bytes(data))
    _one_line_error(capsys, ["run", str(broken), "--inputs",
                             str(_npz(work / "x4.npz", **{INPUT: x}))],
                    "not the file this build wrote")


def test_run_single_npy(build, work, x, capsys):
    path = work / "x.npy"
    np.save(path, x)
    assert main(["run", str(build), "--inputs", str(path)]) == 0
    assert f"output {OUTPUT}: float32 [1, 10]" in capsys.readouterr().out


def test_report(build, work, x, capsys):
    main(["run", str(build), "--inputs", str(_npz(work / "x2.npz", **{INPUT: x}))])
    capsys.readouterr()
    assert main(["report", str(build)]) == 0
    text = capsys.readouterr().out
    assert "offload: 100.00% of" in text
    assert "accelerator @tvmgen_mrvl_main_0" in text
    assert "(simulated run)" in text
    assert main(["report", str(build), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    accel = [s for s in data["steps"] if s["kind"] == "accelerator"]
    assert accel and all(s["cycles"] > 0 for s in accel)
    assert len(accel[0]["layer_rows"]) >= 1


def test_bad_inputs(build, work, x, capsys):
    _one_line_error(capsys, ["run", str(build), "--inputs",
                             str(_npz(work / "bad_name.npz", image=x))],
                    "unknown input name(s) ['image']; the model expects 'permute_input' "
                    "float32 [1, 1, 28, 28]")
    _one_line_error(capsys, ["run", str(build), "--inputs",
                             str(_npz(work / "bad_shape.npz", **{INPUT: x[:, :, :14]}))],
                    "input 'permute_input' has shape [1, 1, 14, 28], expected [1, 1, 28, 28]")
    _one_line_error(capsys, ["run", str(build), "--inputs", str(work / "missing.npz")],
                    "input file")
    _one_line_error(capsys, ["run", str(work / "no-build"), "--inputs", str(work / "x.npz")],
                    "does not exist")
    _one_line_error(capsys, ["report", str(work)], "not a build directory")
    garbage = work / "garbage.npz"
    garbage.write_bytes(b"not an npz")
    _one_line_error(capsys, ["run", str(build), "--inputs", str(garbage)],
                    "is not an .npz archive")
    broken_zip = work / "broken.npz"
    broken_zip.write_bytes(b"PK\x03\x04 a truncated zip archive")
    _one_line_error(capsys, ["run", str(build), "--inputs", str(broken_zip)],
                    "cannot read")


def test_malformed_model_subprocess(work):
    bad = work / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf")
    mrvl = Path(sys.executable).with_name("mrvl")
    for argv in (["compile", str(bad), "-o", str(work / "bad-build")],
                 ["compile", str(work / "nope.onnx"), "-o", str(work / "bad-build")]):
        proc = subprocess.run([str(mrvl), *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        err = proc.stderr.strip()
        assert "Traceback" not in err and err.startswith("mrvl compile: error:"), err
        assert len(err.splitlines()) == 1, err


def test_show_build_dir_draws_both_sides(work, model_path):
    """`mrvl show BUILD_DIR` draws the partition the build used: with the RFC Figure 2b style
    cut (4 accelerator layers) the picture holds the accelerator cluster and the CPU cluster."""
    cut = work / "build-cut"
    assert main(["compile", str(model_path), "-o", str(cut), "--max-layers", "4"]) == 0
    dot_path = work / "cut.dot"
    assert main(["show", str(cut), "-o", str(dot_path)]) == 0
    dot = dot_path.read_text()
    assert "@tvmgen_mrvl_main_0 (accelerator)" in dot
    assert "@cpu_main_0 (cpu)" in dot
    assert dot.count("Conv2D") == 2 and "graph.dense" in dot
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed: SVG output not checked (.ci/run installs it)")
    svg_path = work / "cut.svg"
    assert main(["show", str(cut), "-o", str(svg_path)]) == 0
    assert svg_path.read_text().lstrip().startswith("<?xml")
