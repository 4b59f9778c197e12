"""int8 numerics at the end of a sub-graph: a CONV / FC whose result is a sub-graph output
writes fp32 real values (`mrvl.real_output`, docs/isa.md CONV `dst_dtype` FP32), and average
pools requantise to their own step (POOL with SCALE). Both are documented int8 semantics:
the simulator equals sim/reference_int8.py bit for bit.

The error comparisons hold on any BLAS: the int8 side is exact integer and IEEE fp32 work;
only the fp32 reference (and so the calibrated ranges) may differ in the last bit between
AVX2 and AVX-512 kernels, which moves an error by far less than the factors asserted."""

from __future__ import annotations

import numpy as np
from backend_helpers import add, assert_int8_emulated, layer_module, rng_inputs

from mrvl.dialects import mrvl
from mrvl.dialects.mlip import PoolOp
from mrvl.driver.calibration import activation_ranges
from mrvl.lowering.backend import compile_function
from mrvl.lowering.mrvl_quantize import REAL_OUTPUT_ATTR, quantize_function, real_output_layers
from mrvl.machine import Machine
from mrvl.mlip_isa import DType
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator


def _head(block, args, const):
    """conv (relu6) -> global average pool -> FC: a classifier's tail."""
    rng = np.random.default_rng(11)
    c = add(block, mrvl.Conv2DOp(args[0], const(rng.standard_normal((32, 1, 1, 8)) * 0.5),
                                 const(rng.standard_normal(32) * 0.1),
                                 layer_name="tvmgen_mrvl_main_1", activation="clip",
                                 clip=(0.0, 6.0)))
    g = add(block, mrvl.GlobalAvgpool2DOp(c, layer_name="tvmgen_mrvl_main_2"))
    return [add(block, mrvl.FCOp(g, const(rng.standard_normal((40, 32)) * 0.3),
                                 const(rng.standard_normal(40) * 0.1),
                                 layer_name="tvmgen_mrvl_main_3"))]


def _model():
    return layer_module([(1, 7, 7, 8)], _head)


def _compile(fn, calibration, **options):
    fn = fn.clone()
    ranges = activation_ranges(fn, calibration)
    return fn, compile_function(fn, machine=Machine(tiles=2), quantize="int8", ranges=ranges,
                                **options)


def test_only_a_returned_conv_or_fc_read_by_nothing_else_is_real():
    _, fn = _model()
    (fc,) = real_output_layers(fn)
    assert isinstance(fc, mrvl.FCOp)

    def read_twice(block, args, const):
        rng = np.random.default_rng(1)
        c = add(block, mrvl.Conv2DOp(args[0], const(rng.standard_normal((8, 1, 1, 4))),
                                     const(np.zeros(8)), layer_name="tvmgen_mrvl_main_1"))
        s = add(block, mrvl.Sum2DOp(c, c, layer_name="tvmgen_mrvl_main_2"))
        return [c, s]

    _, fn2 = layer_module([(1, 4, 4, 4)], read_twice)
    assert real_output_layers(fn2) == []  # the conv is also read by the sum


def test_real_output_is_fp32_and_the_documented_semantics():
    _, fn = _model()
    calibration = [rng_inputs(fn, seed) for seed in range(1, 5)]
    annotated, sub = _compile(fn, calibration)
    assert [op.name_str for op in annotated.body.block.ops
            if REAL_OUTPUT_ATTR in op.attributes] == ["tvmgen_mrvl_main_3"]
    assert sub.binary.inputs[0].dtype == DType.INT8
    assert sub.binary.outputs[0].dtype == DType.FP32 and not sub.binary.outputs[0].quantize
    for seed in (20, 21):
        assert_int8_emulated(annotated, sub.data, rng_inputs(fn, seed))
    pools = [op for op in sub.model.instructions() if isinstance(op, PoolOp)]
    assert pools and all(op.scale_flag is not None for op in pools)  # requantising POOLs


def test_explicit_int8_io_keeps_int8_outputs():
    _, fn = _model()
    annotated, sub = _compile(fn, [rng_inputs(fn, 1)], io_dtype="i8")
    assert sub.binary.outputs[0].dtype == DType.INT8
    assert not any(REAL_OUTPUT_ATTR in op.attributes for op in annotated.body.block.ops)
    assert_int8_emulated(annotated, sub.data, rng_inputs(fn, 20))


def test_f16_io_stores_the_real_output_as_f16():
    _, fn = _model()
    _, sub = _compile(fn, [rng_inputs(fn, 1)], io_dtype="f16")
    assert sub.binary.outputs[0].dtype == DType.FP16


def test_average_pool_gets_its_own_finer_step():
    _, fn = _model()
    fn = fn.clone()
    quantize_function(fn, "int8", None, activation_ranges(fn, [rng_inputs(fn, 1)]))
    conv, pool = [op for op in fn.body.block.ops if isinstance(op, mrvl.Conv2DOp
                                                              | mrvl.GlobalAvgpool2DOp)]
    step = {op: op.attributes["mrvl.scale"].value.data for op in (conv, pool)}
    assert step[pool] < step[conv]  # an average spans less than the values averaged


def test_real_outputs_lower_the_error_out_of_sample():
    """Calibrated on 4 inputs, judged on 8 others: the largest and the RMS error against
    fp32 with the int8 output rounding (explicit i8 I/O) and without it (the default)."""
    module, fn = _model()
    calibration = [rng_inputs(fn, seed) for seed in range(1, 5)]
    judges = [rng_inputs(fn, seed) for seed in range(20, 28)]
    refs = [run_function(module, x, func_name=fn.sym_name.data)[0] for x in judges]
    errors = {}
    for io in ("i8", None):
        _, sub = _compile(fn, calibration, io_dtype=io)
        with Simulator.load(sub.data) as sim:
            errors[io] = np.stack([sim.run(x)[0][0] - r for x, r in zip(judges, refs,
                                                                        strict=True)])
    lsb = max(float(np.max(np.abs(r))) for r in refs) / 127.0
    worst = {io: float(np.max(np.abs(e))) / lsb for io, e in errors.items()}
    rms = {io: float(np.sqrt(np.mean(e.astype(np.float64) ** 2))) / lsb
           for io, e in errors.items()}
    assert rms[None] < 0.6 * rms["i8"], rms  # measured 0.39 vs 1.05 LSB
    assert worst[None] < 0.5 * worst["i8"], worst  # 1.3 vs 12.7 (i8 saturates)
