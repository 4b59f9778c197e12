"""int8 calibration methods (driver/calibration.py): minmax, percentile, mse and entropy
ranges lie within the data's [min, max] (with 0, as `qparams` covers it), percentile and mse
clip an outlier, entropy clips a half-normal's tail as TensorRT's calibrator does, the streamed statistics equal the one-shot ones, the CLI flag, and an int8
compile with each method simulating bit for bit like the documented int8 semantics."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from backend_helpers import add, assert_int8_emulated, layer_module, rng_inputs

from mrvl.dialects import mrvl
from mrvl.driver.calibration import (CALIBRATION_METHODS, TensorStatistics,
                                     activation_ranges)
from mrvl.driver.cli import main
from mrvl.driver.compiler import CompileOptions
from mrvl.errors import CompileError
from mrvl.lowering.backend import compile_function
from mrvl.lowering.mrvl_quantize import SCALE_ATTR
from mrvl.machine import Machine
from mrvl.models.mnist_cnn import mnist_cnn


def _statistics(chunks, method):
    stats = TensorStatistics()
    for chunk in chunks:
        stats.observe_range(chunk)
    if method != "minmax":
        for chunk in chunks:
            stats.observe_histogram(chunk)
    return stats


def _outlier_data():
    """Four million standard-normal values and one at 400: clipping the outlier costs less
    squared error than the coarse step its range gives to every other value."""
    data = np.random.default_rng(0).standard_normal(4_000_000).astype(np.float32)
    data[1234] = 400.0
    return data


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_ranges_lie_within_the_data(method):
    data = np.random.default_rng(1).standard_normal(50_000).astype(np.float32) * 3 + 1
    lo, hi = _statistics([data], method).range(method)
    assert min(float(data.min()), 0.0) <= lo < 0.0 < hi <= max(float(data.max()), 0.0)
    if method == "minmax":
        assert (lo, hi) == (float(data.min()), float(data.max()))


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_percentile_and_mse_clip_an_outlier(method):
    data = _outlier_data()
    lo, hi = _statistics([data], method).range(method)
    assert _statistics([data], "minmax").range("minmax")[1] == 400.0
    bound = 10.0 if method == "percentile" else 100.0  # mse trades the outlier's error
    assert hi < bound and lo > -bound                 # against the step of ~4e6 values
    assert hi > 3.0 and lo < -3.0


def test_entropy_clips_a_half_normal_tail():
    """ReLU of a normal (std 3, a million values, max near 15): the KL-optimal int8 range
    keeps about 1.9 sigma, as TensorRT's entropy calibration clips ReLU outputs (measured
    5.59; between 1 sigma and 0.6 of the max either way)."""
    data = np.maximum(np.random.default_rng(1).standard_normal(1_000_000) * 3, 0)
    data = data.astype(np.float32)
    lo, hi = _statistics([data], "entropy").range("entropy")
    assert lo == 0.0
    assert 3.0 < hi < 0.6 * float(data.max())
    assert hi < _statistics([data], "percentile").range("percentile")[1]


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_streaming_equals_one_shot(method):
    data = _outlier_data()
    streamed = _statistics(np.array_split(data, 7), method)
    whole = _statistics([data], method)
    assert streamed.range(method) == whole.range(method)
    if method != "minmax":
        np.testing.assert_array_equal(streamed.counts, whole.counts)


def _conv(block, args, const):
    w = np.random.default_rng(3).standard_normal
    c1 = add(block, mrvl.Conv2DOp(args[0], const((w((8, 3, 3, 4)) * 0.4).astype(np.float32)),
                                  const((w(8) * 0.4).astype(np.float32)),
                                  layer_name="tvmgen_mrvl_main_1", pads=(1, 1, 1, 1),
                                  activation="relu"))
    return [add(block, mrvl.FCOp(c1, const((w((5, 8 * 6 * 6)) * 0.1).astype(np.float32)),
                                 None, layer_name="tvmgen_mrvl_main_2",
                                 weights_need_transform=True))]


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_int8_compile_with_each_method_is_the_documented_semantics(method):
    _, fn = layer_module([(1, 6, 6, 4)], _conv)
    sets = [rng_inputs(fn, seed) for seed in (1, 2, 3)]
    ranges = activation_ranges(fn, sets, method)
    minmax = activation_ranges(fn, sets)
    for value, (lo, hi) in ranges.items():
        assert minmax[value][0] <= lo <= 0.0 <= hi <= minmax[value][1]
    sub = compile_function(fn, machine=Machine(tiles=2), quantize="int8", ranges=ranges)
    assert_int8_emulated(fn, sub.data, rng_inputs(fn, 4))


def test_unknown_method_is_one_line_error(tmp_path, capsys):
    with pytest.raises(CompileError, match=r"--calibration-method: expected one of "
                                           r"\['minmax', 'percentile', 'mse', 'entropy'\], "
                                           r"got 'kl'"):
        CompileOptions(quantize="int8", calibration="random", calibration_method="kl")
    with pytest.raises(CompileError, match="applies to --quantize int8 only"):
        CompileOptions(calibration_method="mse")
    assert CompileOptions.from_keywords(quantize="int8", calibration="random",
                                        calibration_method="mse").calibration_method == "mse"
    model = tmp_path / "m.onnx"
    onnx.save(mnist_cnn(batch=1), model)
    assert main(["compile", str(model), "-o", str(tmp_path / "o"), "--quantize", "int8",
                 "--calibration", "random", "--calibration-method", "kl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "got 'kl'" in err


def test_cli_compiles_with_a_method(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(mnist_cnn(batch=1), model)
    calibration = tmp_path / "c.npz"
    np.savez(calibration, input=np.random.default_rng(0).random((4, 1, 1, 28, 28),
                                                                 dtype=np.float32))
    sizes = {}
    for method in ("minmax", "percentile"):
        out = tmp_path / method
        assert main(["compile", str(model), "-o", str(out), "--quantize", "int8",
                     "--calibration", str(calibration), "--calibration-method", method]) == 0
        sizes[method] = sorted(p.read_bytes() for p in out.glob("*.bin"))
    assert sizes["minmax"] and sizes["minmax"] != sizes["percentile"]


def test_mrvl_opt_pass_takes_the_method():
    from xdsl.context import Context
    from xdsl.utils.arg_spec import parse_pipeline

    from mrvl.driver.calibration import CalibratingQuantizePass

    (spec,) = parse_pipeline("mrvl-quantize{mode=int8 calibration_method=percentile}")
    quantize = CalibratingQuantizePass.from_pass_spec(spec)
    assert quantize.calibration_method == "percentile"
    module, fn = layer_module([(1, 6, 6, 4)], _conv)
    quantize.apply(Context(), module)
    assert all(SCALE_ATTR in op.attributes for op in fn.body.block.ops
               if isinstance(op, mrvl.MrvlLayerOp))
    with pytest.raises(CompileError, match="got 'kl'"):
        CalibratingQuantizePass(mode="int8", calibration_method="kl").apply(
            Context(), layer_module([(1, 6, 6, 4)], _conv)[0])
