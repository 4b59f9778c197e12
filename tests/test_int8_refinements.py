"""int8 refinements on the calibration set, judged out of sample: bias correction
(driver/bias_correction.py) and per-channel activation scales folded into the weights
(driver/channel_scales.py). Both leave the int8 semantics alone: a compile after them still
simulates bit for bit like sim/reference_int8.py.

The margins hold on any BLAS: the int8 emulation sums integers exactly; only the fp32
reference sums (1-ulp differences between AVX2 and AVX-512 kernels) feed the corrections,
which moves an int32 bias by at most one step, far below the factors asserted here."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import add, assert_int8_emulated, layer_module, rng_inputs

from mrvl.dialects import mrvl
from mrvl.driver.bias_correction import correct_biases, spread_samples
from mrvl.driver.calibration import activation_ranges, evaluate_layers
from mrvl.driver.channel_scales import (DEPTHWISE_HEADROOM, MAX_FACTOR, channel_factors,
                                        equalize_channels)
from mrvl.errors import CompileError
from mrvl.lowering.backend import compile_function
from mrvl.lowering.mrvl_quantize import quantize_function
from mrvl.machine import Machine
from mrvl.sim import reference_int8
from mrvl.sim.reference import run_function

CHANNELS = 16


def _block(block, args, const):
    """1x1 conv (relu) -> depthwise 3x3 (clip 0..6) -> 1x1 conv: channel ranges spread over
    a factor of ten, and few-tap depthwise weights whose rounding biases the sums."""
    rng = np.random.default_rng(7)
    spread = 10.0 ** rng.uniform(-1.0, 0.0, CHANNELS)
    w1 = rng.standard_normal((CHANNELS, 1, 1, 8)) * 0.4 * spread.reshape(-1, 1, 1, 1)
    c1 = add(block, mrvl.Conv2DOp(args[0], const(w1), const(rng.standard_normal(CHANNELS) * 0.1),
                                  layer_name="tvmgen_mrvl_main_1", activation="relu"))
    w2 = rng.standard_normal((CHANNELS, 3, 3, 1)) * 0.5
    c2 = add(block, mrvl.Conv2DOp(c1, const(w2), const(rng.standard_normal(CHANNELS) * 0.1),
                                  layer_name="tvmgen_mrvl_main_2", pads=(1, 1, 1, 1),
                                  groups=CHANNELS, activation="clip", clip=(0.0, 6.0)))
    w3 = rng.standard_normal((8, 1, 1, CHANNELS)) * 0.3
    return [add(block, mrvl.Conv2DOp(c2, const(w3), const(rng.standard_normal(8) * 0.1),
                                     layer_name="tvmgen_mrvl_main_3"))]


def _model():
    return layer_module([(1, 10, 10, 8)], _block)


def _emulated(fn, inputs):
    """The int8 output of annotated `fn` dequantised, per the documented semantics."""
    params = reference_int8.input_params(fn)
    quantised = [reference_int8.store_int8(np.asarray(x, np.float32) * np.float32(1 / s), z)
                 for x, (s, z) in zip(inputs, params, strict=True)]
    (out,) = fn.body.block.last_op.operands
    codes, (step, zp) = reference_int8.emulate(fn, quantised)[out]
    return (codes.astype(np.float64) - zp) * step


def _errors(fn, ranges, judges, refs):
    """int8 minus fp32 on every judged input, [inputs, ..., channels]."""
    annotated = fn.clone()
    copy = dict(zip(fn.body.block.args, annotated.body.block.args, strict=True))
    for a, b in zip(fn.body.block.ops, annotated.body.block.ops, strict=True):
        copy.update(zip(a.results, b.results, strict=True))
    quantize_function(annotated, "int8", None, {copy[v]: r for v, r in ranges.items()
                                                 if v in copy})
    return np.stack([_emulated(annotated, x) - r[0] for x, r in zip(judges, refs, strict=True)])


def test_channel_factors():
    k = channel_factors(np.array([4.0, 2.0, 1.0, 0.0, 1e-9]), 1.0)
    assert k.tolist() == [1.0, 2.0, 4.0, 1.0, MAX_FACTOR]
    assert channel_factors(np.array([4.0, 1.0]), 0.5).tolist() == [1.0, 2.0]
    assert channel_factors(np.zeros(3), 1.0).tolist() == [1.0, 1.0, 1.0]
    assert channel_factors(np.array([4.0, 3.0, 1.0]), 1.0, 2.0).tolist() == [1.0, 1.0, 2.0]


def test_channel_scales_keep_the_function_and_balance_the_ranges():
    module, fn = _model()
    x = rng_inputs(fn, 1)
    before = run_function(module, x, func_name=fn.sym_name.data)[0]
    first = next(op for op in fn.body.block.ops if isinstance(op, mrvl.Conv2DOp))
    peaks = np.abs(evaluate_layers(fn, x)[first.results[0]]).max(axis=(0, 1, 2))
    assert peaks.max() > 5 * peaks[peaks > 0].min()
    assert equalize_channels(fn, [x]) == 2  # the last conv is an output: one step
    after = run_function(module, x, func_name=fn.sym_name.data)[0]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5 * np.abs(before).max())
    peaks = np.abs(evaluate_layers(fn, x)[first.results[0]]).max(axis=(0, 1, 2))
    live = peaks[peaks > 0]
    # depthwise consumer: equalised up to the headroom
    assert live.max() <= live.min() * DEPTHWISE_HEADROOM * 1.0001


def _conv_pool_fc(block, args, const):
    """1x1 conv (clip 0..6, channel ranges spread over a factor of 30) -> global average
    pool -> FC: the classifier head of MobileNet v2."""
    rng = np.random.default_rng(5)
    spread = 10.0 ** rng.uniform(-1.5, 0.0, CHANNELS)
    w1 = rng.standard_normal((CHANNELS, 1, 1, 8)) * spread.reshape(-1, 1, 1, 1)
    c1 = add(block, mrvl.Conv2DOp(args[0], const(w1), const(np.full(CHANNELS, 0.5) * spread),
                                  layer_name="tvmgen_mrvl_main_1", activation="clip",
                                  clip=(0.0, 6.0)))
    g = add(block, mrvl.GlobalAvgpool2DOp(c1, layer_name="tvmgen_mrvl_main_2"))
    w2 = rng.standard_normal((10, CHANNELS))
    return [add(block, mrvl.FCOp(g, const(w2), const(np.zeros(10)),
                                 layer_name="tvmgen_mrvl_main_3"))]


def test_channel_scales_reach_an_fc_through_a_pool():
    """The pooled channels read by an FC get their factors (the FC's weight columns divide
    by them); the function stays the same and the pooled ranges move closer together."""
    module, fn = layer_module([(1, 7, 7, 8)], _conv_pool_fc)
    x = rng_inputs(fn, 1)
    before = run_function(module, x, func_name=fn.sym_name.data)[0]
    pool = next(op for op in fn.body.block.ops if isinstance(op, mrvl.GlobalAvgpool2DOp))
    spread_before = np.abs(evaluate_layers(fn, x)[pool.results[0]]).ravel()
    assert equalize_channels(fn, [x], 1.0) == 1
    after = run_function(module, x, func_name=fn.sym_name.data)[0]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5 * np.abs(before).max())
    spread_after = np.abs(evaluate_layers(fn, x)[pool.results[0]]).ravel()
    ratio = lambda p: p.max() / p[p > 0].min()  # noqa: E731
    assert ratio(spread_after) < 0.5 * ratio(spread_before)
    sub = compile_function(fn, machine=Machine(tiles=2), quantize="int8",
                           ranges=activation_ranges(fn, [x]))
    assert_int8_emulated(fn, sub.data, rng_inputs(fn, 30))


def _conv_into_sum(block, args, const):
    rng = np.random.default_rng(3)
    c1 = add(block, mrvl.Conv2DOp(args[0], const(rng.standard_normal((4, 1, 1, 4))),
                                  const(np.zeros(4)), layer_name="tvmgen_mrvl_main_1"))
    c2 = add(block, mrvl.Conv2DOp(c1, const(rng.standard_normal((4, 1, 1, 4))),
                                  const(np.zeros(4)), layer_name="tvmgen_mrvl_main_2"))
    return [add(block, mrvl.Sum2DOp(c1, c2, layer_name="tvmgen_mrvl_main_3"))]


def test_channel_scales_leave_a_tensor_with_a_per_tensor_reader():
    """c1 feeds a Sum2D (one scale per operand in ELTWISE): it keeps one step; c2 feeds only
    the sum too."""
    _, fn = layer_module([(1, 4, 4, 4)], _conv_into_sum)
    assert equalize_channels(fn, [rng_inputs(fn, 0)]) == 0


def test_bias_correction_halves_the_mean_error_out_of_sample():
    module, fn = _model()
    calibration = [rng_inputs(fn, seed) for seed in range(1, 9)]
    judges = [rng_inputs(fn, seed) for seed in range(20, 28)]
    refs = [run_function(module, x, func_name=fn.sym_name.data) for x in judges]
    ranges = activation_ranges(fn, calibration)
    plain = _errors(fn, ranges, judges, refs)
    assert correct_biases(fn, calibration, ranges, "output") == 3
    corrected = _errors(fn, ranges, judges, refs)
    bias_plain = np.abs(plain.reshape(-1, 8).mean(axis=0))
    bias_corrected = np.abs(corrected.reshape(-1, 8).mean(axis=0))
    assert bias_corrected.mean() < 0.5 * bias_plain.mean()
    assert np.sqrt(np.mean(corrected ** 2)) < np.sqrt(np.mean(plain ** 2))


def test_bias_correction_holds_at_most_its_sample_cap():
    """With more calibration sets than `samples`, the correction reads only the sets
    `spread_samples` picks: the same biases as when given just those (bounded memory)."""
    sets = [[np.full((1, 2, 2, 1), float(k), np.float32)] for k in range(10)]
    assert [s[0][0, 0, 0, 0] for s in spread_samples(sets, 4)] == [0.0, 2.0, 5.0, 7.0]
    assert spread_samples(sets, 16) == sets
    module, fn = _model()
    calibration = [rng_inputs(fn, seed) for seed in range(1, 9)]
    ranges = activation_ranges(fn, calibration)
    picked = fn.clone()
    mapping = dict(zip(fn.body.block.args, picked.body.block.args, strict=True))
    for a, b in zip(fn.body.block.ops, picked.body.block.ops, strict=True):
        mapping.update(zip(a.results, b.results, strict=True))
    assert correct_biases(fn, calibration, ranges, samples=3) == 3
    assert correct_biases(picked, spread_samples(calibration, 3),
                          {mapping[v]: r for v, r in ranges.items()}) == 3
    biases = [[op.operands[2].owner.to_numpy() for op in f.body.block.ops
               if isinstance(op, mrvl.Conv2DOp)] for f in (fn, picked)]
    for a, b in zip(*biases, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CompileError, match="at least 1 sample"):
        correct_biases(fn, calibration, ranges, samples=0)


def test_bias_correction_mode_is_checked():
    _, fn = _model()
    with pytest.raises(CompileError, match="expected one of \\['output', 'weights'\\]"):
        correct_biases(fn, [rng_inputs(fn, 0)], {}, "mean")


def test_refined_compile_is_the_documented_int8_semantics():
    _, fn = _model()
    calibration = [rng_inputs(fn, seed) for seed in range(1, 5)]
    assert equalize_channels(fn, calibration) == 2
    ranges = activation_ranges(fn, calibration)
    assert correct_biases(fn, calibration, ranges) == 3
    sub = compile_function(fn, machine=Machine(tiles=2), quantize="int8", ranges=ranges)
    assert_int8_emulated(fn, sub.data, rng_inputs(fn, 30))


def test_cli_flags(tmp_path, capsys):
    import onnx

    from mrvl.driver.cli import main
    from mrvl.driver.compiler import CompileOptions
    from mrvl.models.mnist_cnn import mnist_cnn

    model = tmp_path / "m.onnx"
    onnx.save(mnist_cnn(batch=1), model)
    calibration = tmp_path / "c.npz"
    np.savez(calibration, input=np.random.default_rng(0).random((3, 1, 1, 28, 28),
                                                                 dtype=np.float32))
    binaries = {}
    for flags in ([], ["--bias-correction", "--channel-scales", "--calibration-method",
                       "percentile"], ["--no-bias-correction"], ["--no-channel-scales"]):
        out = tmp_path / ("default" if not flags else flags[0][2:])
        assert main(["compile", str(model), "-o", str(out), "--quantize", "int8",
                     "--calibration", str(calibration), *flags]) == 0
        binaries[out.name] = sorted(p.read_bytes() for p in out.glob("*.bin"))
    assert binaries["default"] == binaries["bias-correction"]  # the defaults, spelled out
    assert binaries["default"] != binaries["no-bias-correction"]
    assert binaries["default"] != binaries["no-channel-scales"]
    options = CompileOptions(quantize="int8", calibration="random")
    assert (options.int8_method, options.int8_refinements) == ("percentile", (True, True))
    options = CompileOptions(quantize="int8", calibration="random", bias_correction=False,
                             channel_scales=False, calibration_method="minmax")
    assert (options.int8_method, options.int8_refinements) == ("minmax", (False, False))
    with pytest.raises(CompileError, match="--bias-correction applies to --quantize int8"):
        CompileOptions(bias_correction=True)
    assert main(["compile", str(model), "-o", str(tmp_path / "f"), "--channel-scales"]) == 2
    assert "--channel-scales applies to --quantize int8 only" in capsys.readouterr().err
