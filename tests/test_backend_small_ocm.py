"""A valid model compiles and runs for small OCM sizes: layers are streamed, never refused
while the minimum working set fits (regression: zero-byte buffers used to be charged whole
pages, which made the MNIST FC layer fail at 128 KiB)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from mrvl.driver.cli import main
from mrvl.models import mnist_cnn_trained
from mrvl.driver.verb_example import fix_batch
from mrvl.sim import acceptance
from mrvl.sim.runtime import CompiledModel


@pytest.mark.parametrize(
    "options",
    [
        ["--ocm-size", "0x20000", "--num-tiles", "4"],
        ["--ocm-size", "0x8000", "--page-size", "1024", "--num-tiles", "8"],
    ],
)
def test_mnist_compiles_and_passes_at_small_ocm(tmp_path, options):
    model = fix_batch(mnist_cnn_trained(), 1)
    path = tmp_path / "mnist.onnx"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "build"
    assert main(["compile", str(path), "-o", str(out), *options]) == 0
    x = np.random.default_rng(3).random((1, 1, 28, 28), dtype=np.float32)
    with CompiledModel.load(out) as compiled:
        got = compiled.run({"permute_input": x}).outputs["dense_1"]
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"permute_input": x})[0]
    figures = acceptance.check_output("dense_1", got, want, "fp16")
    assert figures.passed, figures


def test_too_small_ocm_is_a_one_line_error_with_a_hint(tmp_path, capsys):
    path = tmp_path / "mnist.onnx"
    path.write_bytes(fix_batch(mnist_cnn_trained(), 1).SerializeToString())
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--ocm-size", "0x10000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--page-size" in err, err
