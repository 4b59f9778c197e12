"""The in-repo models through the backend: MNIST CNN at 1, 2, 4 and 8 tiles, fp16 and
int8, simulated against the reference executor (Marvell's rules); MobileNet v2 and the SSD
backbone compiled and simulated at one tile count each; ResNet-50 compiled once (fp16, 8
tiles: the other combinations and the timings are in bench/bench_compile.py)."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import assert_accepted, assert_int8_emulated

from mrvl.dialects import mrvl
from mrvl.lowering.backend import compile_function
from mrvl.driver.calibration import activation_ranges
from mrvl.lowering.backend_report import program_report
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.models import MODELS
from mrvl.mlip_binary import ModelBinary
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator
from mrvl.machine import Machine

_CACHE: dict[str, object] = {}


def _partitioned(name: str):
    if name not in _CACHE:
        _CACHE[name] = compile_to_partitioned(MODELS[name](batch=1))
    return _CACHE[name]


def _accelerator(name: str):
    module = _partitioned(name)
    fns = subgraph_functions(module, "accelerator")
    assert fns, f"{name} has no accelerator sub-graph"
    return module, fns[0]


def _inputs(fn, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]


@pytest.mark.parametrize("mode", ["fp16", "int8"])
@pytest.mark.parametrize("tiles", [1, 2, 4, 8])
def test_mnist_matches_reference(tiles, mode):
    module, fn = _accelerator("mnist_cnn")
    inputs = _inputs(fn)
    ref = run_function(module, inputs, func_name=fn.sym_name.data)
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize=mode,
                           ranges=activation_ranges(fn, [_inputs(fn, 1), inputs])
                           if mode == "int8" else None)
    with Simulator.load(sub.data) as sim:
        out, report = sim.run(inputs)
    assert_accepted(out, ref, mode)
    assert report["cycles"] >= report["traffic_roofline_cycles"]
    assert report["macs"] == sum(layer.macs.value.data for layer in sub.model.layers())


@pytest.mark.parametrize("name,tiles", [("ssd_detector", 8)])
def test_larger_models_simulate_fp16(name, tiles):
    """Deep random-weight networks in fp16 accumulate a rounding per layer (50 layers), so
    the whole-model check is every element within 1 % of max |ref| (single layers meet
    Marvell's 3 % rule, tests/test_backend_layers.py; bench/fp16_error_budget.py)."""
    module, fn = _accelerator(name)
    inputs = _inputs(fn)
    ref = run_function(module, inputs, func_name=fn.sym_name.data)
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize="fp16")
    with Simulator.load(sub.data) as sim:
        out, report = sim.run(inputs)
    for got, want in zip(out, ref, strict=True):
        assert np.max(np.abs(got - want)) <= 0.01 * np.max(np.abs(want))
    assert report["cycles"] >= report["traffic_roofline_cycles"]


MOBILENET_INT8_MAX_LSB = 6.0
MOBILENET_INT8_RMS_LSB = 1.3
"""Whole-model bounds of random-weight MobileNet v2 in int8 against fp32, in Marvell's LSB
(max |ref| / 127): the largest error and the root mean square error over the 1000 logits
(test_larger_models_int8 says why they hold)."""


@pytest.mark.parametrize("name,tiles", [("mobilenet_v2", 2), ("ssd_detector", 4)])
def test_larger_models_int8(name, tiles):
    """Deep random-weight networks in int8, calibrated on three inputs and run on a fourth.

    1. The simulator's int8 outputs equal, bit for bit, `sim/reference_int8.py`: a numpy
       emulation of the documented int8 semantics (docs/backend.md "Numerics", docs/isa.md)
       that re-derives weights, biases and requantisation scales from the documented rules
       and takes only the calibrated activation parameters from the compiler. Every step is
       integer or one IEEE fp32 operation, so this holds on any machine, and any change to
       the compiler's or the simulator's int8 arithmetic fails it (tests/test_int8_semantics.py
       shows it catching weight steps 1/1000 off).
    2. Against the fp32 reference (MobileNet), what is left is int8 quantisation of this
       network, and Marvell's +-3 LSB whole-model rule does not hold for it. Measured with
       bench/int8_error_budget.py (AVX-512 machine, 2 tiles; the simulator equals the
       emulation in every run): calibrated on the checked input itself (the old test)
       seeds 0-49 give 2.66-4.39 LSB, 42 of 50 over 3; calibrated on three other inputs
       (out of sample, as here) 2.52-4.35, median 3.37, 42 of 50 over 3. Widening every
       calibration range by one fp32 ulp, the size of the last-bit difference between BLAS
       kernels (AVX2 vs AVX-512) in the reference executor that computes the ranges, moves
       a seed's maximum by up to 0.97 LSB (median 0.13): the old check (seed 0, 3.53 LSB
       here) passed on AVX2 machines by that luck. This instance: 2.90 LSB, RMS 0.86
       (2.79 / 0.93 before the logits were written as fp32 and average pools got their own
       step).
       The bounds: the maximum within 6 LSB (worst seen 4.35, plus the 0.97 a machine can
       move it: 5.3); a calibration that saturates (ranges x0.7) gives 38 LSB. The RMS over
       the logits is steadier (out of sample, seeds 0-29: 0.87-1.10, median 0.98) and
       within 1.3 LSB; activation steps twice as coarse as calibrated give 1.44-1.55.
    """
    module, fn = _accelerator(name)
    fn = fn.clone()  # the backend annotates it in place
    inputs = _inputs(fn)
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize="int8",
                           ranges=activation_ranges(
                               fn, [_inputs(fn, seed) for seed in (1, 2, 3)]))
    with Simulator.load(sub.data) as sim:
        out, report = sim.run(inputs)
    assert report["cycles"] >= report["traffic_roofline_cycles"]
    assert_int8_emulated(fn, sub.data, inputs)
    if name == "mobilenet_v2":
        ref = run_function(module, inputs, func_name=fn.sym_name.data)
        (got,), (want,) = out, ref
        check = check_output("out0", got, want, "int8")
        assert check.max_err_lsb <= MOBILENET_INT8_MAX_LSB, check.summary()
        lsb = np.max(np.abs(want)) / 127.0
        rms = float(np.sqrt(np.mean(((got.astype(np.float64) - want) / lsb) ** 2)))
        assert rms <= MOBILENET_INT8_RMS_LSB, f"RMS error {rms:.3f} LSB; {check.summary()}"


def test_resnet50_compiles_once():
    module, fn = _accelerator("resnet50")
    sub = compile_function(fn, machine=Machine(tiles=8), quantize="fp16")
    report = program_report(sub.model)
    assert report["ocm_bytes"] <= 8 * (1 << 20)
    assert all(row["ocm_bytes"] <= 8 * (1 << 20) for row in report["layers"])
    # ResNet-50 v1.5: about 4.1 G MACs, all on the accelerator
    assert 4.0e9 < report["macs"] < 4.2e9
    # DRAM -> OCM traffic per inference: 51.1 MB of weights read once plus every layer's
    # inputs; the costed tile split keeps it under 145 MB (161 MB with rows-first splits)
    assert 51e6 < report["dma_in_bytes"] < 145e6
    assert ModelBinary.from_bytes(sub.data).to_bytes() == sub.data
    assert len(sub.binary.layers) == len(sub.model.layers())
