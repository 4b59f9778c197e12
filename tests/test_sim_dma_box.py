"""DMA and TILE_COPY boxes without padding or conversion (the simulator copies them as merged rows or, for a
layout transpose, with the longest dimension innermost): every element lands where the ISA's
element loop puts it, later elements overwriting earlier ones where the destination box
writes one place twice."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mrvl.mlip_binary import IODesc, Instruction
from mrvl.mlip_isa import DType, Opcode, Queue, Section
from mrvl.sim.program_builder import ProgramBuilder, flat_dma
from mrvl.sim.simulator import Simulator

RNG = np.random.default_rng(14)


def _box_reference(dest_size: int, source: np.ndarray, dims, src_strides, dst_strides):
    """The ISA's element loop: innermost dimension last, in row-major order."""
    out = np.zeros(dest_size, source.dtype)
    for index in itertools.product(*(range(n) for n in dims)):
        s = sum(i * st for i, st in zip(index, src_strides))
        d = sum(i * st for i, st in zip(index, dst_strides))
        out[d] = source[s]
    return out


def _extent(dims, strides) -> int:
    return sum((n - 1) * st for n, st in zip(dims, strides)) + 1


# (dims, DRAM strides, OCM strides), in elements
LOADS = [
    # NCHW -> NHWC of a 3-channel image band (the models' input layout conversion)
    ((1, 4, 9, 3), (108, 9, 1, 36), (108, 27, 3, 1)),
    # a single channel: rows of one element that continue each other
    ((1, 5, 7, 1), (35, 7, 1, 35), (35, 7, 1, 1)),
    # a scalar broadcast over a contiguous box, and a row broadcast over rows
    ((1, 3, 10, 8), (1, 0, 0, 0), (240, 80, 8, 1)),
    ((2, 3, 1, 16), (0, 0, 0, 1), (48, 16, 16, 1)),
    # channel slices (a row stride longer than the row) and a column gather
    ((1, 6, 5, 4), (240, 40, 8, 1), (120, 20, 4, 1)),
    ((1, 1, 40, 2), (80, 80, 1, 40), (80, 80, 2, 1)),
    # the destination writes places twice: the element order decides (last write wins)
    ((1, 2, 20, 2), (80, 40, 1, 20), (0, 0, 1, 0)),
    ((1, 1, 30, 3), (90, 90, 1, 30), (30, 30, 1, 1)),
    ((2, 2, 12, 2), (96, 48, 2, 1), (0, 24, 2, 1)),
]


def _box_fields(dims, dram_strides, ocm_strides) -> dict:
    """A DMA's box fields: `dims` on both sides (no padding), the two sides' strides."""
    box = {f"dim{d}": n for d, n in enumerate(dims)}
    box.update({f"src_dim{d}": n for d, n in enumerate(dims)})
    box.update({f"dram_stride{d}": s for d, s in enumerate(dram_strides)})
    box.update({f"ocm_stride{d}": s for d, s in enumerate(ocm_strides)})
    return box


def _load_program(dims, dram_strides, ocm_strides, x):
    dest = _extent(dims, ocm_strides)
    pb = ProgramBuilder()
    pb.inputs.append(IODesc("x", x.shape, dtype=DType.FP16))
    oa = pb.alloc(0, dest * 2)
    pb.compute(0, Instruction.make(Opcode.NOP, pop_prev=True))  # relays dma_in -> dma_out
    pb.store(0, oa, "y", (dest,), DType.FP16)
    binary = pb.build()
    box = _box_fields(dims, dram_strides, ocm_strides)
    binary.streams[(Section.MAIN, 0, Queue.DMA_IN)] = [Instruction.make(
        Opcode.DMA_LOAD, dram_addr=binary.inputs[0].dram_offset, ocm_addr=oa, **box,
        push_next=True)]
    binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)] = [flat_dma(
        Opcode.DMA_STORE, binary.outputs[0].dram_offset, oa, dest, DType.FP16,
        pop_prev=True)]
    return binary, dest


@pytest.mark.parametrize("dims, dram_strides, ocm_strides", LOADS)
def test_unpadded_load_box_matches_the_element_loop(dims, dram_strides, ocm_strides):
    x = RNG.standard_normal(_extent(dims, dram_strides)).astype(np.float16)
    binary, dest = _load_program(dims, dram_strides, ocm_strides, x)
    (y,), _ = Simulator.load(binary.to_bytes()).run_device([x])
    expected = _box_reference(dest, x, dims, dram_strides, ocm_strides)
    assert np.array_equal(y.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("dims, ocm_strides, dram_strides", LOADS)
def test_unpadded_store_box_matches_the_element_loop(dims, ocm_strides, dram_strides):
    """The same boxes stored: the OCM side is read, the DRAM side written."""
    count = _extent(dims, ocm_strides)
    dest = _extent(dims, dram_strides)
    x = RNG.standard_normal(count).astype(np.float16)
    pb = ProgramBuilder()
    pb.inputs.append(IODesc("x", x.shape, dtype=DType.FP16))
    oa = pb.alloc(0, count * 2)
    pb.compute(0, Instruction.make(Opcode.NOP, pop_prev=True))
    pb.store(0, oa, "y", (dest,), DType.FP16)
    binary = pb.build()
    binary.streams[(Section.MAIN, 0, Queue.DMA_IN)] = [flat_dma(
        Opcode.DMA_LOAD, binary.inputs[0].dram_offset, oa, count, DType.FP16,
        push_next=True)]
    box = _box_fields(dims, dram_strides, ocm_strides)
    binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)] = [Instruction.make(
        Opcode.DMA_STORE, dram_addr=binary.outputs[0].dram_offset, ocm_addr=oa, **box,
        pop_prev=True)]
    (y,), report = Simulator.load(binary.to_bytes()).run_device([x])
    expected = _box_reference(dest, x, dims, ocm_strides, dram_strides)
    assert np.array_equal(y.view(np.uint16), expected.view(np.uint16))
    assert report["dma_out_bytes"] == 2 * int(np.prod(dims))


# TILE_COPY boxes on two tiles: (dims, source strides, destination strides, source offset,
# destination offset, tile mask), offsets in elements of one 256-element region per tile
TILE_COPIES = [
    # to both tiles, the source apart from the destination: a transpose
    ((1, 1, 12, 3), (36, 36, 1, 12), (36, 36, 3, 1), 0, 100, 0b11),
    # to the other tile only, a destination that writes places twice (last write wins)
    ((1, 2, 10, 3), (60, 30, 3, 1), (0, 0, 1, 0), 0, 200, 0b10),
    # channel slices between the tiles and locally, apart
    ((1, 3, 4, 8), (96, 32, 8, 1), (48, 16, 4, 1), 0, 120, 0b11),
    # locally onto an overlapping box (every element read before any is written), and to
    # both tiles from a source the local destination overlaps
    ((1, 1, 10, 8), (80, 80, 8, 1), (80, 80, 8, 1), 0, 4, 0b01),
    ((1, 2, 6, 4), (48, 24, 4, 1), (40, 20, 3, 1), 10, 0, 0b11),
]


@pytest.mark.parametrize("dims, src_strides, dst_strides, src_off, dst_off, mask",
                         TILE_COPIES)
def test_tile_copy_box_matches_the_element_loop(dims, src_strides, dst_strides, src_off,
                                                dst_off, mask):
    size = 256
    region = RNG.standard_normal(size).astype(np.float16)
    pb = ProgramBuilder(tiles=2)
    base = [pb.const(0, region), pb.const(1, np.zeros(size, np.float16))]
    assert base == [0, 0]  # the same address on both tiles
    pb.barrier()  # both regions loaded before the copy
    box = {f"dim{d}": n for d, n in enumerate(dims)}
    box.update({f"src_stride{d}": s for d, s in enumerate(src_strides)})
    box.update({f"dst_stride{d}": s for d, s in enumerate(dst_strides)})
    pb.tile_copy(0, Instruction.make(
        Opcode.TILE_COPY, src_addr=2 * src_off, dst_addr=2 * dst_off, dst_tile_mask=mask,
        src_dtype=DType.FP16, dst_dtype=DType.FP16, **box))
    pb.barrier()
    pb.store(0, 0, "t0", (size,), DType.FP16)
    pb.store(1, 0, "t1", (size,), DType.FP16)
    (t0, t1), report = Simulator.load(pb.build().to_bytes()).run_device([])
    expected = [region.copy(), np.zeros(size, np.float16)]
    for index in itertools.product(*(range(n) for n in dims)):
        s = src_off + sum(i * st for i, st in zip(index, src_strides))
        d = dst_off + sum(i * st for i, st in zip(index, dst_strides))
        for tile in (0, 1):
            if mask >> tile & 1:
                expected[tile][d] = region[s]
    assert np.array_equal(t0.view(np.uint16), expected[0].view(np.uint16))
    assert np.array_equal(t1.view(np.uint16), expected[1].view(np.uint16))
    assert report["tile_copy_bytes"] == 2 * int(np.prod(dims)) * bin(mask).count("1")
