"""TILE_COPY: the explicit OCM -> OCM transfer between tiles (docs/isa.md sections 2-4).

Halo exchange on 2 and 8 tiles and a broadcast, bit-exact against numpy; the dependency rule
across tiles (a missing barrier is a SimulationError naming the instructions); load-time
rejection of bad masks and addresses; the link timing formula and its machine fields.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from mrvl import mlip_isa as isa
from mrvl.errors import BinaryFormatError, SimulationError
from mrvl.machine import DEFAULT_MACHINE
from mrvl.mlip_binary import Instruction, ModelBinary
from mrvl.mlip_isa import Act, DType, EltFunc, Opcode, Queue, Section
from mrvl.sim.program_builder import ProgramBuilder, tile_copy_2d
from mrvl.sim.simulator import Simulator, TimingParams

F32 = DType.FP32
OCM = 1 << 16


def _vec(opcode, in_addr, out_addr, rows, cols, dtype=F32, **kw) -> Instruction:
    return Instruction.make(opcode, in_addr=in_addr, out_addr=out_addr, rows=rows, cols=cols,
                            in_row_stride=cols, out_row_stride=cols, src_dtype=dtype,
                            dst_dtype=dtype, **kw)


def _add(a, b, out, rows, cols, dtype=F32) -> Instruction:
    return Instruction.make(Opcode.ELTWISE, func=EltFunc.ADD, a_addr=a, b_addr=b,
                            out_addr=out, rows=rows, cols=cols, a_row_stride=cols,
                            b_row_stride=cols, out_row_stride=cols, src_dtype=dtype,
                            dst_dtype=dtype)


def halo_program(tiles: int, rows: int, cols: int, barrier: bool = True) -> bytes:
    """Each tile holds `rows` rows of a (tiles*rows, cols) fp32 image: relu(x_t) in the
    interior of a buffer with one halo row above and below; it sends its first row to the
    previous tile's bottom halo and its last row to the next tile's top halo (TILE_COPY),
    then (after a barrier) computes y[r] = (p[r-1] + p[r]) + p[r+1] on its rows."""
    pb = ProgramBuilder(tiles=tiles, ocm_size=OCM, name="halo")
    row = cols * 4
    addrs = []
    for t in range(tiles):  # the same allocations on every tile: the same addresses
        x = pb.input(t, f"x{t}", (rows, cols), F32)
        addrs.append((x, pb.alloc(t, (rows + 2) * row), pb.alloc(t, rows * row),
                      pb.alloc(t, rows * row)))
    assert len({a[1:] for a in addrs}) == 1
    for t, (x, buf, _tmp, _out) in enumerate(addrs):
        pb.compute(t, _vec(Opcode.ACT, x, buf + row, rows, cols, act=Act.RELU))
        for edge, halo in ((0, buf), (tiles - 1, buf + (rows + 1) * row)):
            if t == edge:  # zero padding at the image's top / bottom
                pb.compute(t, _vec(Opcode.COPY, pb.const(t, np.zeros(cols, np.float32)),
                                   halo, 1, cols))
        if t > 0:
            pb.tile_copy(t, tile_copy_2d(buf + row, buf + (rows + 1) * row, 1 << (t - 1), 1,
                                         cols, F32))
        if t < tiles - 1:
            pb.tile_copy(t, tile_copy_2d(buf + rows * row, buf, 1 << (t + 1), 1, cols, F32))
    if barrier:
        pb.barrier()
    for t, (_x, buf, tmp, out) in enumerate(addrs):
        pb.compute(t, _add(buf, buf + row, tmp, rows, cols))
        pb.compute(t, _add(tmp, buf + 2 * row, out, rows, cols))
        pb.store(t, out, f"y{t}", (rows, cols), F32)
    return pb.build().to_bytes()


def halo_reference(xs: list[np.ndarray]) -> np.ndarray:
    full = np.maximum(np.concatenate(xs), np.float32(0))
    zero = np.zeros((1, full.shape[1]), np.float32)
    p = np.concatenate([zero, full, zero])
    return (p[:-2] + p[1:-1]) + p[2:]


@pytest.mark.parametrize("tiles, rows, cols", [(2, 3, 8), (8, 2, 12)])
def test_halo_exchange_matches_numpy(tiles, rows, cols):
    data = halo_program(tiles, rows, cols)
    sim = Simulator.load(data)
    rng = np.random.default_rng(tiles)
    for _ in range(2):  # a second inference overwrites the halos the first one read
        xs = [rng.standard_normal((rows, cols)).astype(np.float32) for _ in range(tiles)]
        outs, report = sim.run(xs)
        np.testing.assert_array_equal(np.concatenate(outs), halo_reference(xs))
    copies = 2 * (tiles - 1)
    assert report["tile_copy_bytes"] == copies * cols * 4
    assert report["layers"][0]["tile_copy_bytes"] == copies * cols * 4
    assert report["dma_in_bytes"] == tiles * rows * cols * 4 + 2 * cols * 4  # + zero rows


def test_portable_kernels_and_unchecked_run_agree():
    data = halo_program(4, 2, 8)
    xs = [np.random.default_rng(i).standard_normal((2, 8)).astype(np.float32)
          for i in range(4)]
    results = [Simulator.load(data, timing=TimingParams(**kw)).run(xs)
               for kw in ({}, {"portable": True}, {"check_deps": False})]
    for outs, report in results:
        np.testing.assert_array_equal(np.concatenate(outs), halo_reference(xs))
        assert report["cycles"] == results[0][1]["cycles"]


def test_broadcast_to_every_tile_including_the_issuer():
    tiles, n = 4, 64
    pb = ProgramBuilder(tiles=tiles, ocm_size=OCM, name="bcast")
    addrs = [(pb.input(t, f"x{t}", (n,), DType.FP16), pb.alloc(t, 2 * n), pb.alloc(t, 2 * n))
             for t in range(tiles)]
    v_addr = pb.input(0, "v", (n,), DType.FP16)
    relu = pb.alloc(0, 2 * n)
    pb.compute(0, _vec(Opcode.ACT, v_addr, relu, 1, n, DType.FP16, act=Act.RELU))
    shared = addrs[0][1]
    assert all(a[1] == shared for a in addrs)
    pb.tile_copy(0, tile_copy_2d(relu, shared, (1 << tiles) - 1, 1, n, DType.FP16))
    pb.barrier()
    for t, (x, b, out) in enumerate(addrs):
        pb.compute(t, _add(x, b, out, 1, n, DType.FP16))
        pb.store(t, out, f"y{t}", (n,), DType.FP16)
    sim = Simulator.load(pb.build().to_bytes())
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(n).astype(np.float32) for _ in range(tiles + 1)]
    outs, report = sim.run(xs)
    v = np.maximum(xs[-1].astype(np.float16), np.float16(0))
    for t in range(tiles):
        ref = (xs[t].astype(np.float16).astype(np.float32) + v.astype(np.float32))
        np.testing.assert_array_equal(outs[t], ref.astype(np.float16))
    assert report["tile_copy_bytes"] == tiles * n * 2  # one box delivered to 4 tiles


def test_local_copy_with_overlapping_boxes_reads_the_old_bytes():
    """The issuer's own bit is a local copy; the source box is read before any destination
    byte is written, so overlapping boxes shift the data (no smearing)."""
    pb = ProgramBuilder(tiles=2, ocm_size=OCM, name="local")
    x = pb.input(0, "x", (4, 8), F32)
    pb.alloc(0, 64)  # room for the shifted rows after x
    pb.alloc(1, 4 * 8 * 4 + 64)  # same layout on tile 1 (its OCM is not used)
    pb.tile_copy(0, tile_copy_2d(x, x + 32, 0b01, 4, 8, F32))  # rows 0..3 -> rows 1..4
    pb.store(0, x, "y", (5, 8), F32)
    sim = Simulator.load(pb.build().to_bytes())
    xs = np.arange(32, dtype=np.float32).reshape(4, 8)
    (y,), _ = sim.run([xs])
    np.testing.assert_array_equal(y[1:], xs)
    np.testing.assert_array_equal(y[0], xs[0])


def test_strided_box_copy():
    """A 4-D box with strides on both sides: every other column of a 2x3x4x6 block."""
    pb = ProgramBuilder(tiles=2, ocm_size=OCM, name="box")
    src = pb.input(0, "x", (2, 3, 4, 6), F32)
    pb.alloc(1, 2 * 3 * 4 * 6 * 4)
    dst = pb.alloc(1, 2 * 3 * 4 * 3 * 4)
    box = dict(dim0=2, dim1=3, dim2=4, dim3=3, src_stride0=72, src_stride1=24,
               src_stride2=6, src_stride3=2, dst_stride0=36, dst_stride1=12, dst_stride2=3,
               dst_stride3=1)
    pb.tile_copy(0, Instruction.make(Opcode.TILE_COPY, src_addr=src, dst_addr=dst,
                                     dst_tile_mask=0b10, src_dtype=F32, dst_dtype=F32, **box))
    pb.barrier()
    pb.store(1, dst, "y", (2, 3, 4, 3), F32)
    xs = np.random.default_rng(5).standard_normal((2, 3, 4, 6)).astype(np.float32)
    (y,), _ = Simulator.load(pb.build().to_bytes()).run([xs])
    np.testing.assert_array_equal(y, xs[..., ::2])


@pytest.mark.parametrize("tiles, message", [
    # the copy landed first: the read names the unordered copy
    (2, "main/tile 1/compute/#4 ELTWISE reads tile 1 OCM 0x80, but main/tile 0/dma_out/#0 "
        "TILE_COPY is not ordered before it"),
    # this schedule reads the halo before the copy lands: nothing wrote it yet
    (8, "main/tile 1/compute/#3 ELTWISE reads tile 1 OCM 0x80 that no instruction has "
        "written"),
])
def test_missing_barrier_is_a_dependency_error(tiles, message):
    data = halo_program(tiles, 3, 8, barrier=False)
    with pytest.raises(SimulationError) as error:
        Simulator.load(data).run([np.ones((3, 8), np.float32)] * tiles)
    assert f"dependency error: {message}" in str(error.value)


def _cross_tile_program(order: str, barrier: bool) -> bytes:
    """Tile 1 copies a row of 7s into tile 0's `d`; tile 0 computes y = d + d.

    "read_then_copy": d holds arange(n) (loaded, then a first barrier orders the load before
    the copy); tile 0 reads d at once while tile 1 computes for a while and then copies (with
    `barrier`: read, barrier, copy).  "copy_then_read": d is first written by the copy, which
    tile 1 issues at once while tile 0 computes for a while before it reads d (with
    `barrier`: copy, barrier, read)."""
    n, big = 16, 4096
    pb = ProgramBuilder(tiles=2, ocm_size=OCM, name="cross")
    d = (pb.const(0, np.arange(n, dtype=np.float32)) if order == "read_then_copy"
         else pb.alloc(0, n * 4))
    out = pb.alloc(0, n * 4)
    pb.alloc(1, 2 * n * 4)  # tile 1's own data stays clear of [d, out)
    src = pb.const(1, np.full(n, 7, np.float32))
    busy = pb.const(1 if order == "read_then_copy" else 0, np.ones(big, np.float32))
    copy = tile_copy_2d(src, d, 0b01, 1, n, F32)
    read = _add(d, d, out, 1, n)
    if order == "read_then_copy":
        pb.barrier()
        pb.compute(1, _vec(Opcode.ACT, busy, busy, 1, big, act=Act.TANH))
        pb.compute(0, read)
        if barrier:
            pb.barrier()
        pb.tile_copy(1, copy)
    else:
        pb.tile_copy(1, copy)
        for _ in range(4):
            pb.compute(0, _vec(Opcode.ACT, busy, busy, 1, big, act=Act.TANH))
        if barrier:
            pb.barrier()
        pb.compute(0, read)
    pb.store(0, out, "y", (n,), F32)
    return pb.build().to_bytes()


@pytest.mark.parametrize("order, expected", [("read_then_copy", 0.0), ("copy_then_read", 7.0)])
def test_cross_tile_writes_ordered_by_a_barrier_run(order, expected):
    (y,), _ = Simulator.load(_cross_tile_program(order, barrier=True)).run([])
    ref = np.arange(16, dtype=np.float32) if expected == 0.0 else np.full(16, 7, np.float32)
    np.testing.assert_array_equal(y, ref + ref)


def test_copy_overwriting_a_range_still_read_without_barrier_is_an_error():
    data = _cross_tile_program("read_then_copy", barrier=False)
    with pytest.raises(SimulationError) as error:
        Simulator.load(data).run([])
    message = str(error.value)
    assert "dependency error" in message
    assert "tile 1/dma_out/#0 TILE_COPY overwrites data still to be read at tile 0 OCM" in (
        message)
    assert "tile 0/compute/#1 ELTWISE is not ordered before it" in message


def test_read_of_copied_data_without_barrier_is_an_error():
    data = _cross_tile_program("copy_then_read", barrier=False)
    with pytest.raises(SimulationError) as error:
        Simulator.load(data).run([])
    message = str(error.value)
    assert "ELTWISE reads tile 0 OCM" in message
    assert "tile 1/dma_out/#0 TILE_COPY is not ordered before it" in message


# ---- load-time validation ------------------------------------------------------------------
def _one_copy_program(tiles: int = 2, **copy) -> bytes:
    """Tile 0 sends a 4 x 8 fp32 block to tile 1 (or per `copy`, fields of the TILE_COPY)."""
    pb = ProgramBuilder(tiles=tiles, ocm_size=OCM, name="one")
    src = pb.input(0, "x", (4, 8), F32)
    for t in range(1, tiles):
        pb.alloc(t, 4 * 8 * 4)
    fields = dict(src_addr=src, dst_addr=src, dst_tile_mask=0b10, dim0=1, dim1=1, dim2=4,
                  dim3=8, src_stride2=8, src_stride3=1, dst_stride2=8, dst_stride3=1,
                  src_dtype=F32, dst_dtype=F32)
    fields.update(copy)
    pb.tile_copy(0, Instruction.make(Opcode.TILE_COPY, **fields))
    pb.barrier()
    pb.store(1, src, "y", (4, 8), F32)
    return pb.build().to_bytes()


def test_one_copy_program_runs():
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    (y,), report = Simulator.load(_one_copy_program()).run([x])
    np.testing.assert_array_equal(y, x)
    assert report["tile_copy_bytes"] == 128


@pytest.mark.parametrize("fields, pattern", [
    (dict(dst_tile_mask=0), "dst_tile_mask 0x0 names no tile"),
    (dict(dst_tile_mask=0b100), "dst_tile_mask 0x4 names no tile or a tile outside the "
                                "model's 2 tile"),
    (dict(dst_tile_mask=0xFFFFFFFF), "dst_tile_mask 0xffffffff"),
    (dict(dst_addr=OCM - 64), "destination OCM range .* is outside the model's OCM range"),
    (dict(dst_addr=0xFFFFFFF0), "destination OCM range"),
    (dict(dst_stride2=0xFFFFFFFF), "destination OCM range"),
    (dict(src_addr=OCM), "source OCM range"),
    (dict(dst_addr=2), "destination OCM address 0x2 not 4-aligned"),
    (dict(dim2=0), r"field 2 of \(dim0..3\) = 0"),
    (dict(dim3=isa.MAX_DIM + 1), r"dim0..3"),
    (dict(dim0=4096, dim1=4096), "work|exceed the OCM size"),
    (dict(dst_dtype=DType.FP16), "TILE_COPY is a bit copy"),
    (dict(scale_flag=True), "TILE_COPY is a bit copy"),
    (dict(in_zp=3), "TILE_COPY is a bit copy"),
    (dict(act=Act.RELU), "act must be NONE for TILE_COPY"),
    (dict(func=1), "func must be 0"),
])
def test_bad_copies_rejected_at_load(fields, pattern):
    with pytest.raises(BinaryFormatError, match=pattern) as error:
        Simulator.load(_one_copy_program(**fields))
    assert "dma_out/#0 TILE_COPY" in str(error.value) and "\n" not in str(error.value)


def test_copy_in_another_queue_rejected():
    binary = ModelBinary.from_bytes(_one_copy_program())
    copy = binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)][0]
    binary.streams[(Section.MAIN, 0, Queue.DMA_IN)].append(replace(copy, flags=0))
    with pytest.raises(BinaryFormatError, match="TILE_COPY belongs in the dma_out queue"):
        Simulator.load(binary.to_bytes())


def test_one_tile_model_may_copy_locally_only():
    pb = ProgramBuilder(tiles=1, ocm_size=OCM, name="solo")
    x = pb.input(0, "x", (8,), F32)
    y = pb.alloc(0, 32)
    pb.tile_copy(0, tile_copy_2d(x, y, 0b1, 1, 8, F32))
    pb.store(0, y, "y", (8,), F32)
    xs = np.arange(8, dtype=np.float32)
    (out,), _ = Simulator.load(pb.build().to_bytes()).run([xs])
    np.testing.assert_array_equal(out, xs)
    binary = pb.build()
    copy = binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)][0]
    words = list(copy.args)
    words[isa.TCOPY_FIELDS.index("dst_tile_mask")] = 0b10
    binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)][0] = replace(copy, args=tuple(words))
    with pytest.raises(BinaryFormatError, match="outside the model's 1 tile"):
        Simulator.load(binary.to_bytes())


# ---- timing ---------------------------------------------------------------------------------
def _copy_records(sim: Simulator, inputs) -> np.ndarray:
    sim.run(inputs, trace=True)
    records = sim.last_trace.records
    return records[records["opcode"] == Opcode.TILE_COPY]


def _expected(machine, nbytes: int) -> int:
    return (machine.issue_latency + machine.link_latency
            + math.ceil(nbytes / machine.link_bytes_per_cycle))


@pytest.mark.parametrize("overrides", [
    [], ["link_bytes_per_cycle=16", "link_latency=100"], ["link_bytes_per_cycle=7"],
    ["link_latency=0", "issue_latency=3"],
])
def test_copy_cycles_follow_the_link_formula(overrides):
    data = _one_copy_program()
    sim = Simulator.load(data, machine=overrides)
    (record,) = _copy_records(sim, [np.ones((4, 8), np.float32)])
    assert int(record["end"] - record["start"]) == _expected(sim.machine, 128)
    assert int(record["dram_bytes"]) == 0  # the link is not the DRAM
    machine = DEFAULT_MACHINE.with_overrides(overrides)
    assert (sim.machine.link_bytes_per_cycle, sim.machine.link_latency) == (
        machine.link_bytes_per_cycle, machine.link_latency)


def test_link_fields_change_cycles_not_results():
    data = _one_copy_program()
    x = [np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)]
    (fast,), fast_report = Simulator.load(data).run(x)
    (slow,), slow_report = Simulator.load(
        data, machine=["link_bytes_per_cycle=1", "link_latency=500"]).run(x)
    np.testing.assert_array_equal(fast, slow)
    # the copy is on the critical path: 480 more latency cycles, 126 more transfer cycles
    assert slow_report["cycles"] - fast_report["cycles"] == (500 - 20) + (128 - 2)


def test_copies_into_one_tile_share_its_ingress_port_and_a_broadcast_is_one_transfer():
    tiles, n = 4, 256  # 1 KiB per copy: 16 cycles at 64 B/cycle
    pb = ProgramBuilder(tiles=tiles, ocm_size=OCM, name="fan_in")
    addrs = [pb.input(t, f"x{t}", (n,), F32) for t in range(tiles)]
    slots = [pb.alloc(t, tiles * n * 4) for t in range(tiles)]
    assert len(set(addrs)) == len(set(slots)) == 1
    pb.barrier()  # the inputs arrive at different cycles (one DRAM): line the tiles up
    for t in range(1, tiles):  # tiles 1..3 send to tile 0 at the same time
        pb.tile_copy(t, tile_copy_2d(addrs[t], slots[0] + t * n * 4, 0b0001, 1, n, F32))
    pb.barrier()
    pb.tile_copy(0, tile_copy_2d(slots[0] + n * 4, slots[0], 0b1111, 1, n, F32))
    pb.barrier()
    for t in range(tiles):
        pb.store(t, slots[0], f"y{t}", (n,), F32)
    sim = Simulator.load(pb.build().to_bytes())
    xs = [np.full(n, t, np.float32) for t in range(tiles)]
    records = _copy_records(sim, xs)
    machine = sim.machine
    link = math.ceil(n * 4 / machine.link_bytes_per_cycle)
    fan_in = sorted(records[records["tile"] != 0], key=lambda r: int(r["end"]))
    assert len({int(r["start"]) for r in fan_in}) == 1  # issued at the same cycle
    ends = [int(r["end"] - r["start"]) for r in fan_in]
    assert ends == [_expected(machine, n * 4) + k * link for k in range(3)]
    (broadcast,) = records[records["tile"] == 0]
    assert int(broadcast["end"] - broadcast["start"]) == _expected(machine, n * 4)
    outs, report = sim.run(xs)
    for out in outs:
        np.testing.assert_array_equal(out, xs[1])
    assert report["tile_copy_bytes"] == 3 * n * 4 + tiles * n * 4


def test_copies_appear_in_the_timeline_on_the_dma_out_thread():
    from mrvl.sim.trace import chrome_events

    sim = Simulator.load(halo_program(2, 3, 8))
    sim.run([np.ones((3, 8), np.float32)] * 2, trace=True)
    slices = [e for e in chrome_events([sim.last_trace])
              if e.get("ph") == "X" and e["args"]["opcode"] == "TILE_COPY"]
    assert len(slices) == 2 and all(e["name"] == "layer0 TILE_COPY" for e in slices)
    assert {e["tid"] for e in slices} == {Queue.DMA_OUT}
    assert {e["cat"] for e in slices} == {"dma_out"}
    assert all(e["args"].get("dram_bytes", 0) == 0 for e in slices)  # not DRAM traffic


def test_link_fields_of_the_machine_description():
    from mrvl.errors import CompileError
    from mrvl.machine import ASSUMED_FIELDS, format_machine, overrides_help

    m = DEFAULT_MACHINE
    assert (m.link_bytes_per_cycle, m.link_latency) == (
        isa.DEFAULT_LINK_BYTES_PER_CYCLE, isa.DEFAULT_LINK_LATENCY) == (64, 20)
    assert {"link_bytes_per_cycle", "link_latency"} <= set(ASSUMED_FIELDS)
    assert "link_bytes_per_cycle" in overrides_help()
    assert format_machine(m).endswith("tile link 64 B/cycle + 20 cycles")
    assert m.with_overrides(["link_latency=0"]).link_latency == 0  # latency may be 0 ...
    for bad, pattern in ((["link_bytes_per_cycle=0"], "link_bytes_per_cycle must be from 1"),
                         (["link_latency=2000000"], "link_latency must be from 0 to 1000000"),
                         (["link_bytes_per_cycle=1.5"], "must be an integer")):
        with pytest.raises(CompileError, match=pattern):  # ... the rate may not
            m.with_overrides(bad)
