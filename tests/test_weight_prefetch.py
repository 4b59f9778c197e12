"""Weight prefetch across layer boundaries (mlip-ocm-alloc places a layer's weights apart
from the previous layer's buffers, mlip-dma-schedule loads them before the barrier): the next
layer's weights load while the current layer computes, the results are the bits of the
schedule without prefetch, and the dependency checker (on in every run) finds every hazard
covered."""

from __future__ import annotations

import numpy as np
import pytest

from mrvl import mlip_isa as isa
from mrvl.dialects import mrvl
from mrvl.dialects.mlip import DmaLoadOp
from mrvl.lowering.backend import compile_function
from mrvl.lowering.mlip_ocm_alloc import weight_bases
from mrvl.machine import Machine
from mrvl.sim.simulator import Simulator

from backend_helpers import add, layer_module, rng_inputs


def _w(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 0.2


def three_convs():
    """conv 3x3 (16 -> 32) -> conv 1x1 (32 -> 32) -> conv 3x3 (32 -> 16) on 32 x 32."""

    def build(block, args, const):
        c1 = add(block, mrvl.Conv2DOp(args[0], const(_w(32, 3, 3, 16)), const(_w(32)),
                                      layer_name="tvmgen_mrvl_main_1", pads=(1, 1, 1, 1),
                                      activation="relu"))
        c2 = add(block, mrvl.Conv2DOp(c1, const(_w(32, 1, 1, 32)), const(_w(32)),
                                      layer_name="tvmgen_mrvl_main_2", activation="relu"))
        return add(block, mrvl.Conv2DOp(c2, const(_w(16, 3, 3, 32)), const(_w(16)),
                                        layer_name="tvmgen_mrvl_main_3", pads=(1, 1, 1, 1),
                                        activation="none"))

    return layer_module([(1, 32, 32, 16)], build)


def _run(tiles: int, prefetch: bool, mode: str = "fp16", broadcast: str = "none"):
    """Compiled and run; with `broadcast="none"` (tests/test_weight_broadcast.py) every
    tile loads its own prefetched weights."""
    module, fn = three_convs()
    feeds = rng_inputs(fn)
    ranges = None
    if mode == "int8":
        from mrvl.driver.calibration import activation_ranges
        ranges = activation_ranges(fn, [feeds])
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize=mode, ranges=ranges,
                           prefetch=prefetch, broadcast=broadcast)
    with Simulator.load(sub.data) as sim:
        outputs, report = sim.run(feeds, trace=True)
        timeline = sim.last_trace
    return sub, outputs, report, timeline


@pytest.mark.parametrize("tiles", [1, 2, 8])
def test_layer_weights_load_while_the_previous_layer_computes(tiles):
    sub, outputs, report, timeline = _run(tiles, prefetch=True)
    _, plain_outputs, plain_report, plain_timeline = _run(tiles, prefetch=False)
    for got, want in zip(outputs, plain_outputs, strict=True):
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
    assert report["cycles"] < plain_report["cycles"]
    records = timeline.records
    plain = plain_timeline.records
    for layer in (1, 2):
        weight_loads = 0
        for tile in range(tiles):
            mine = records[records["tile"] == tile]
            loads = mine[(mine["layer"] == layer) & (mine["queue"] == int(isa.Queue.DMA_IN))]
            if len(loads) == 0:
                continue
            computes = mine[(mine["layer"] == layer - 1)
                            & (mine["queue"] == int(isa.Queue.COMPUTE))
                            & (mine["opcode"] != int(isa.Opcode.BARRIER))]
            # the tile's first load of the layer is its weights, started before the previous
            # layer's last compute on the tile ends
            first = loads[np.argmin(loads["index"])]
            assert first["start"] < computes["end"].max()
            weight_loads += 1
            # without prefetch the layer's first load waits for the barrier
            plain_mine = plain[plain["tile"] == tile]
            plain_loads = plain_mine[(plain_mine["layer"] == layer)
                                     & (plain_mine["queue"] == int(isa.Queue.DMA_IN))]
            plain_computes = plain_mine[(plain_mine["layer"] == layer - 1)
                                        & (plain_mine["queue"] == int(isa.Queue.COMPUTE))]
            assert plain_loads["start"].min() >= plain_computes["end"].max()
        assert weight_loads > 0
    # in the IR: every tile's weight loads of layers 1 and 2 come before the layer's other
    # loads and pop no token
    section = sub.model.sections()[0]
    for layer in (1, 2):
        for tile in range(tiles):
            loads = [op for op in section.instructions()
                     if isinstance(op, DmaLoadOp) and op.layer.value.data == layer
                     and op.tile.value.data == tile]
            if not loads:
                continue
            assert loads[0].ocm_addr.owner.kind.data == "weights"
            assert loads[0].tokens() == (None, None, None, None)


def test_int8_outputs_equal_the_schedule_without_prefetch():
    _, outputs, report, _ = _run(4, prefetch=True, mode="int8")
    _, plain_outputs, plain_report, _ = _run(4, prefetch=False, mode="int8")
    for got, want in zip(outputs, plain_outputs, strict=True):
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
    assert report["cycles"] < plain_report["cycles"]


def test_weights_placed_apart_from_the_previous_layer_when_they_fit():
    page = 16384
    # layer 1's weights go above layer 0's, layer 2's back at page 0 (apart from layer 1's)
    needs = {0: (2 * page, 4 * page), 1: (3 * page, 4 * page), 2: (page, 2 * page)}
    assert weight_bases(needs, 10 * page) == {0: 0, 1: 2 * page, 2: 0}
    # layer 1's weights fit just below its larger scratch
    needs = {0: (2 * page, 2 * page), 1: (2 * page, 6 * page)}
    assert weight_bases(needs, 10 * page) == {0: 0, 1: 2 * page}
    # no room apart from layer 0's buffers and no free head at any base: the highest base
    # (page 3) leaves the longest free run (pages 4-5, loaded before the barrier)
    needs = {0: (4 * page, 4 * page), 1: (3 * page, 4 * page)}
    assert weight_bases(needs, 10 * page) == {0: 0, 1: 3 * page}
    # nothing free anywhere (layer 1 fills what layer 0 leaves): page 0, as without prefetch
    needs = {0: (4 * page, 4 * page), 1: (4 * page, 6 * page)}
    assert weight_bases(needs, 10 * page) == {0: 0, 1: 0}
    # layers without buffers are skipped: layer 2 is placed against layer 0
    needs = {0: (2 * page, 2 * page), 1: (0, 0), 2: (page, 2 * page)}
    assert weight_bases(needs, 6 * page) == {0: 0, 2: 2 * page}


def test_small_ocm_keeps_boundaries_that_do_not_fit():
    """An OCM of 64 KiB: the second conv's weights cannot be placed apart from the first
    conv's buffers, so their load stays behind the barrier (it pops the barrier's token);
    the third conv's bias can and is prefetched. Results equal the schedule without
    prefetch."""
    results = []
    for prefetch in (True, False):
        module, fn = three_convs()
        feeds = rng_inputs(fn)
        sub = compile_function(fn, machine=Machine(tiles=2, ocm_bytes=64 * 1024,
                                                   page_bytes=4096), prefetch=prefetch,
                               broadcast="none")
        with Simulator.load(sub.data) as sim:
            results.append(sim.run(feeds)[0])
        if not prefetch:
            continue
        first = {}
        for op in sub.model.sections()[0].instructions():
            if isinstance(op, DmaLoadOp) and op.tile.value.data == 0:
                first.setdefault((op.layer.value.data, op.ocm_addr.owner.label.data), op)
        assert first[(1, "w")].tokens()[1] is not None  # pops the barrier's token
        assert first[(2, "bias")].tokens() == (None, None, None, None)
        assert first[(2, "w")].tokens()[1] is not None
    for got, want in zip(*results, strict=True):
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
