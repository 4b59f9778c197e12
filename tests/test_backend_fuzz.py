"""Property tests of the backend over random layer shapes, tile counts and OCM sizes.

For every generated layer: the compiled program never needs more OCM than the tile has, every
DMA stays inside its OCM buffer slot and its DRAM tensor (checked statically before
allocation), the binary passes the simulator's load-time validation, every data dependency
is covered by a token or a barrier (the simulator's dependency checker runs and would raise),
and the result matches the reference executor under the fp16 rule (or the int8 rule); int8
outputs also equal the documented int8 semantics bit for bit (sim/reference_int8.py).
"""

from __future__ import annotations

import numpy as np
from backend_helpers import (
    add,
    assert_accepted,
    assert_int8_emulated,
    check_static,
    layer_module,
    rng_inputs,
)

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mrvl.dialects import mrvl
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.lowering.mrvl_quantize import quantize_function, weight_scales
from mrvl.driver.calibration import activation_ranges
from mrvl.lowering.mrvl_tile_split import split_function
from mrvl.machine import Machine
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator

OCM_CHOICES = [(1 << 20, 16384), (64 * 1024, 4096), (16 * 1024, 1024)]


@st.composite
def conv_case(draw):
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    depthwise = draw(st.booleans())
    c = draw(st.integers(1, 20))
    o = c if depthwise else draw(st.integers(1, 24))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
            draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))]
    if h + pads[0] + pads[2] < kh or w + pads[1] + pads[3] < kw:
        pads = [kh - 1, kw - 1, kh - 1, kw - 1]
    pool = draw(st.sampled_from(["none", "max", "avg"]))
    return dict(shape=(n, h, w, c), o=o, k=(kh, kw), strides=(sh, sw), pads=tuple(pads),
                groups=c if depthwise else 1, pool=pool,
                act=draw(st.sampled_from(["none", "relu"])))


def _fp16(arr):
    """Values exactly representable in fp16 (weights convert exactly: the comparison
    measures the machine's accumulation and rounding, not the weight conversion)."""
    return np.asarray(arr, dtype=np.float32).astype(np.float16).astype(np.float32)


def _int8_weights(arr):
    """Weights as the int8 machine sees them (per-output-channel steps)."""
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 4:
        return arr
    ws = weight_scales(arr).reshape(-1, 1, 1, 1)
    return (np.clip(np.rint(arr / ws), -127, 127) * ws).astype(np.float32)


def _int8_inputs(fn, inputs):
    """Inputs as the int8 machine sees them (the annotated step and zero point), quantised
    as the input DMA does it: an fp32 multiply by the fp32 reciprocal of the step
    (docs/isa.md, conversion), which can round differently from `x / step` at a tie."""
    scales = [a.value.data for a in fn.attributes["mrvl.input_scales"].data]
    zps = [a.value.data for a in fn.attributes["mrvl.input_zero_points"].data]
    return [((np.clip(np.rint(x.astype(np.float32) * np.float32(1.0 / s)) + z, -128, 127)
              - z) * np.float32(s)).astype(np.float32)
            for x, s, z in zip(inputs, scales, zps, strict=True)]


def _int8_range(fn, k, ref):
    """`ref` clipped to the range of output `k`'s int8 steps: the calibration sees the
    float model, so the int8 values can exceed its range by an input step's worth, and the
    machine saturates there (mrvl-quantize)."""
    op = fn.body.block.last_op.operands[k].owner
    step = op.attributes["mrvl.scale"].value.data
    zp = op.attributes["mrvl.zero_point"].value.data
    return np.clip(ref, (-128 - zp) * step, (127 - zp) * step).astype(np.float32)


def _build(case, transform=None):
    def build(block, args, const):
        rng = np.random.default_rng(1)
        const = (lambda c: lambda arr: c(_fp16(arr) if transform is None
                                         else transform(_fp16(arr))))(const)
        n, h, w, c = case["shape"]
        kh, kw = case["k"]
        wt = const(rng.standard_normal((case["o"], kh, kw, c // case["groups"])) * 0.3)
        y = add(block, mrvl.Conv2DOp(args[0], wt, const(rng.standard_normal(case["o"])),
                                     layer_name="tvmgen_mrvl_main_1",
                                     strides=case["strides"], pads=case["pads"],
                                     groups=case["groups"], activation=case["act"]))
        oh, ow = mrvl.tensor_shape(y)[1:3]
        if case["pool"] == "max" and oh >= 2 and ow >= 2:
            y = add(block, mrvl.Maxpool2DOp(y, layer_name="tvmgen_mrvl_main_2",
                                            kernel_shape=(2, 2), strides=(1, 2),
                                            pads=(0, 1, 1, 0)))
        elif case["pool"] == "avg":
            y = add(block, mrvl.Sum2DOp(y, y, layer_name="tvmgen_mrvl_main_2"))
        return y

    return layer_module([case["shape"]], build)


@settings(max_examples=25, deadline=None)
@given(case=conv_case(), tiles=st.sampled_from([1, 2, 4, 8]),
       ocm=st.sampled_from(OCM_CHOICES), mode=st.sampled_from(["fp16", "int8"]))
def test_random_layers_compile_within_ocm_and_run_without_hazards(case, tiles, ocm, mode):
    module, fn = _build(case)
    ocm_size, page = ocm
    inputs = [_fp16(x) for x in rng_inputs(fn)]
    ranges = activation_ranges(fn, [inputs]) if mode == "int8" else None
    quantize_function(fn, mode, ranges=ranges)
    machine = Machine(tiles=tiles, ocm_bytes=ocm_size, page_bytes=page)
    split_function(fn, machine)
    model = convert_function(fn, machine)
    check_static(model)
    allocate_ocm(model)
    assert model.ocm_end is not None and model.ocm_end.value.data <= ocm_size
    for buf in model.buffers():
        for addr in buf.addresses():
            assert 0 <= addr and addr + buf.size.value.data <= model.ocm_end.value.data
    schedule(model)
    data = to_model_binary(model).to_bytes()
    if mode == "int8":
        # the machine's arithmetic on int8 values: compare with the reference run on the
        # values it holds (int8 weights and inputs), so the rule checks the accumulation,
        # requantisation and activations rather than the input quantisation
        ref_module, ref_fn = _build(case, _int8_weights)
        ref = run_function(ref_module, _int8_inputs(fn, inputs),
                           func_name=ref_fn.sym_name.data)
        ref = [_int8_range(fn, k, r) for k, r in enumerate(ref)]
    else:
        ref = run_function(module, inputs, func_name=fn.sym_name.data)
    with Simulator.load(data) as sim:
        out, report = sim.run(inputs)
    assert report["cycles"] >= report["traffic_roofline_cycles"]
    assert_accepted(out, ref, mode)
    if mode == "int8":
        assert_int8_emulated(fn, data, inputs)


@st.composite
def vector_case(draw):
    n = draw(st.integers(1, 3))
    h, w, c = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 40))
    return dict(shape=(n, h, w, c), broadcast=draw(st.sampled_from(["none", "c", "hw1"])),
                extra=draw(st.integers(1, 7)), fc_out=draw(st.integers(1, 30)),
                perm=draw(st.permutations([1, 2, 3])))


@settings(max_examples=20, deadline=None)
@given(case=vector_case(), tiles=st.sampled_from([1, 2, 4, 8]),
       ocm=st.sampled_from(OCM_CHOICES), mode=st.sampled_from(["fp16", "int8"]))
@example(case={"shape": (2, 3, 2, 4), "broadcast": "c", "extra": 1, "fc_out": 2,
               "perm": [2, 3, 1]}, tiles=1, ocm=OCM_CHOICES[0], mode="fp16")  # FC cancels
def test_random_vector_layers(case, tiles, ocm, mode):
    """Sum (with broadcasting), concat, transpose, global pool and FC on random shapes.

    fp16: the transpose output is judged against the reference executor; the FC output
    against the FC of the simulator's own (fp16) transpose output, because its reduction
    may cancel and amplify the fp16 rounding of the layers before it beyond any relative
    rule. int8: both outputs equal the documented int8 semantics bit for bit."""
    n, h, w, c = case["shape"]
    fc_weights = []
    b_shape = {"none": (n, h, w, c), "c": (1, 1, 1, c), "hw1": (n, h, w, 1)}[case["broadcast"]]

    def build(block, args, const):
        s = add(block, mrvl.Sum2DOp(args[0], args[1], layer_name="tvmgen_mrvl_main_1",
                                    activation="relu"))
        cat = add(block, mrvl.ConcatOp([s, args[2]], layer_name="tvmgen_mrvl_main_2", axis=3))
        tr = add(block, mrvl.TransposeOp(cat, (0, *case["perm"]),
                                         layer_name="tvmgen_mrvl_main_3"))
        g = add(block, mrvl.GlobalMaxpool2DOp(tr, layer_name="tvmgen_mrvl_main_4"))
        k = mrvl.tensor_shape(g)[3]
        rng = np.random.default_rng(2)
        fc_weights.append(_fp16(rng.standard_normal((case["fc_out"], k))))
        fc = add(block, mrvl.FCOp(g, const(fc_weights[0]), None,
                                  layer_name="tvmgen_mrvl_main_5"))
        return [tr, fc]

    module, fn = layer_module([case["shape"], b_shape, (n, h, w, case["extra"])], build)
    inputs = [_fp16(x) for x in rng_inputs(fn)]
    ranges = activation_ranges(fn, [inputs]) if mode == "int8" else None
    quantize_function(fn, mode, ranges=ranges)
    split_function(fn, Machine(tiles=tiles))
    model = convert_function(fn, Machine(ocm_bytes=ocm[0], page_bytes=ocm[1]))
    check_static(model)
    allocate_ocm(model)
    assert model.ocm_end is not None and model.ocm_end.value.data <= ocm[0]
    schedule(model)
    if mode == "int8":
        assert_int8_emulated(fn, to_model_binary(model).to_bytes(), inputs)
        return
    ref = run_function(module, inputs, func_name=fn.sym_name.data)
    with Simulator.load(to_model_binary(model).to_bytes()) as sim:
        out, _ = sim.run(inputs)
    assert_accepted(out[:1], ref[:1], "fp16")
    pooled = out[0].astype(np.float64).max(axis=(1, 2))
    fc_want = (pooled @ fc_weights[0].astype(np.float64).T).astype(np.float32)
    assert_accepted(out[1:], [fc_want], "fp16")
