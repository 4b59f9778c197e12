"""Mutation fuzzing of the simulator's binary loader and executor.

`seed_binaries()` builds small valid binaries covering every opcode (TILE_COPY included); `mutate()` corrupts one
(instruction and metadata words set to boundary values, byte flips, truncation, appended
bytes), usually re-computing the CRCs so the mutation reaches the deep validation;
`run_case()` loads and runs it and says how it ended.  The only acceptable ends are a
clean run or an `MrvlError`; anything else (another exception, a crash, a sanitizer report)
is a bug.  `python -m mrvl.sim.sim_fuzz --cases N --seed S` prints the counts as JSON (used
by tests/test_sim_binary.py under the sanitizer build and by bench/bench_sim_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

import numpy as np

from mrvl.errors import BinaryFormatError, MrvlError, RuntimeInputError, SimulationError
from mrvl import mlip_isa as isa
from mrvl.mlip_binary import IODesc, Instruction, crc32c
from mrvl.mlip_isa import Act, DType, EltFunc, Flag, Opcode, PoolFunc, Queue, Section
from mrvl.sim.program_builder import ProgramBuilder, flat_dma, tile_copy_2d
from mrvl.sim.simulator import Simulator, TimingParams

FUZZ_OCM = 1 << 18
# 2 threads: a case that runs clean is replayed with its tiles on threads from its third run
FUZZ_TIMING = TimingParams(max_insn_work=1 << 22, max_dram_bytes=1 << 24, threads=2)
INTERESTING = (0, 1, 2, 3, 7, 15, 16, 17, 255, 256, 4095, 4096, 65535, 65536, 0x7FFF,
               0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, FUZZ_OCM - 2,
               FUZZ_OCM, 1 << 24)


def _conv_seed(rng) -> bytes:
    pb = ProgramBuilder(ocm_size=FUZZ_OCM, name="fuzz_conv")
    x_addr = pb.input(0, "x", (5, 6, 4), DType.FP16)
    w = rng.standard_normal((8, 3, 3, 4)).astype(np.float16)
    wa = pb.const(0, w)
    ba = pb.const(0, rng.standard_normal(8).astype(np.float32))
    oa = pb.alloc(0, 5 * 6 * 8 * 2)
    pa = pb.alloc(0, 3 * 3 * 8 * 2)
    ea = pb.alloc(0, 5 * 6 * 8 * 4)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=x_addr, ih=5, iw=6, ic=4, in_pix_stride=4, out_addr=oa, oh=5,
        ow=6, oc=8, out_pix_stride=8, w_addr=wa, bias_addr=ba, kh=3, kw=3, pad_t=1, pad_l=1,
        act=Act.RELU))
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=PoolFunc.MAX, in_addr=oa, ih=5, iw=6, c=8, in_pix_stride=8,
        out_addr=pa, oh=3, ow=3, out_pix_stride=8, kh=3, kw=3, sh=2, sw=2, pad_t=1, pad_l=1))
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=oa, b_addr=oa, out_addr=ea, rows=30, cols=8,
        a_row_stride=8, b_row_stride=8, out_row_stride=8, act=Act.CLIP, alpha=-1, beta=1,
        dst_dtype=DType.FP32))
    pb.store(0, pa, "p", (3, 3, 8), DType.FP16)
    pb.store(0, ea, "e", (5, 6, 8), DType.FP32)
    return pb.build().to_bytes()


def _int8_seed(rng) -> bytes:
    pb = ProgramBuilder(ocm_size=FUZZ_OCM, name="fuzz_int8")
    xa = pb.const(0, rng.integers(-128, 128, (4, 4, 8)).astype(np.int8))
    wa = pb.const(0, rng.integers(-128, 128, (16, 1, 1, 8)).astype(np.int8))
    ba = pb.const(0, rng.integers(-100, 100, 16).astype(np.int32))
    sa = pb.const(0, (rng.random(16) * 0.01).astype(np.float32))
    oa = pb.alloc(0, 4 * 4 * 16)
    ga = pb.alloc(0, 16 * 4)
    ca = pb.alloc(0, 4 * 4 * 16 * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=4, iw=4, ic=8, in_pix_stride=8, out_addr=oa, oh=4, ow=4,
        oc=16, out_pix_stride=16, w_addr=wa, bias_addr=ba, scale_addr=sa, kh=1, kw=1,
        src_dtype=DType.INT8, dst_dtype=DType.INT8, in_zp=1, out_zp=-2))
    pb.compute(0, Instruction.make(
        Opcode.GEMM, in_addr=oa, m=1, k=16, in_row_stride=16, out_addr=ga, n=16,
        out_row_stride=16, w_addr=wa + 0, bias_addr=ba, scale_addr=sa,
        src_dtype=DType.INT8, dst_dtype=DType.FP32))
    pb.compute(0, Instruction.make(
        Opcode.CONVERT, in_addr=oa, out_addr=ca, rows=16, cols=16, in_row_stride=16,
        out_row_stride=16, scale=0.1, scale_flag=True, in_zp=-2, src_dtype=DType.INT8,
        dst_dtype=DType.FP16))
    pb.compute(0, Instruction.make(
        Opcode.ACT, act=Act.SIGMOID, in_addr=ca, out_addr=ca, rows=16, cols=16,
        in_row_stride=16, out_row_stride=16))
    pb.store(0, ga, "g", (16,), DType.FP32)
    pb.store(0, ca, "c", (16, 16), DType.FP16)
    return pb.build().to_bytes()


def _two_tile_seed(rng) -> bytes:
    """Two tiles, a padded strided load, scratch traffic and a barrier."""
    pb = ProgramBuilder(tiles=2, ocm_size=FUZZ_OCM, name="fuzz_tiles", scratch_size=512)
    pb.inputs.append(IODesc("x", (2, 3, 8), dtype=DType.FP32))
    a0 = pb.alloc(0, 4 * 5 * 8 * 2)
    c0 = pb.alloc(0, 4 * 5 * 8 * 2)
    a1 = pb.alloc(1, 4 * 5 * 8 * 2)
    pb.const(1, np.arange(4, dtype=np.float16))  # gives the init section something to load
    pb.compute(0, Instruction.make(
        Opcode.COPY, in_addr=a0, out_addr=c0, rows=20, cols=8, in_row_stride=8,
        out_row_stride=8))
    pb.store(1, a1, "y", (4, 5, 8), DType.FP16)
    b = pb.build()
    main = Section.MAIN
    x_off = b.inputs[0].dram_offset
    b.streams[(main, 0, Queue.DMA_IN)] = [Instruction.make(
        Opcode.DMA_LOAD, dram_addr=x_off, ocm_addr=a0, dim0=1, dim1=4, dim2=5, dim3=8,
        pad1=1, pad2=1, src_dim0=1, src_dim1=2, src_dim2=3, src_dim3=8, dram_stride1=24,
        dram_stride2=8, dram_stride3=1, ocm_stride1=40, ocm_stride2=8, ocm_stride3=1,
        src_dtype=DType.FP32, dst_dtype=DType.FP16, push_next=True)]
    comp0 = b.streams[(main, 0, Queue.COMPUTE)]
    comp0[0] = Instruction.make(**{**_fields(comp0[0]), "flags": Flag.POP_PREV | Flag.PUSH_NEXT})
    b.streams[(main, 0, Queue.DMA_OUT)] = [flat_dma(
        Opcode.DMA_STORE, b.scratch_offset, c0, 160, DType.FP16, pop_prev=True,
        push_prev=True)]
    comp0 += [Instruction.make(Opcode.NOP, pop_next=True), Instruction.make(Opcode.BARRIER)]
    b.streams[(main, 1, Queue.COMPUTE)] = [
        Instruction.make(Opcode.BARRIER, push_prev=True),
        Instruction.make(Opcode.NOP, pop_prev=True, push_next=True),
    ]
    b.streams[(main, 1, Queue.DMA_IN)] = [flat_dma(
        Opcode.DMA_LOAD, b.scratch_offset, a1, 160, DType.FP16, pop_next=True,
        push_next=True)]
    store = b.streams[(main, 1, Queue.DMA_OUT)][0]
    b.streams[(main, 1, Queue.DMA_OUT)] = [Instruction.make(
        **{**_fields(store), "flags": Flag.POP_PREV})]
    # an init section that preloads a constant kept in OCM
    b.streams[(Section.INIT, 1, Queue.DMA_IN)] = [flat_dma(
        Opcode.DMA_LOAD, b.weights_offset, 0x8000, 4, DType.FP16)]
    return b.to_bytes()


def _tile_copy_seed(rng) -> bytes:
    """Two tiles swap a row (TILE_COPY each way), tile 0 broadcasts a strided box to both
    (its own bit: a local copy), then a barrier and compute on what arrived."""
    del rng  # the inputs carry the data
    fp16 = DType.FP16
    pb = ProgramBuilder(tiles=2, ocm_size=FUZZ_OCM, name="fuzz_link")
    xs, halos, boxes, outs = [], [], [], []
    for t in range(2):  # the same allocations on both tiles: the same addresses
        xs.append(pb.input(t, f"x{t}", (4, 8), fp16))
        halos.append(pb.alloc(t, 8 * 2))
        boxes.append(pb.alloc(t, 16 * 2))
        outs.append(pb.alloc(t, 4 * 8 * 2))
    pb.tile_copy(0, tile_copy_2d(xs[0] + 3 * 8 * 2, halos[1], 0b10, 1, 8, fp16))
    pb.tile_copy(0, Instruction.make(
        Opcode.TILE_COPY, src_addr=xs[0], dst_addr=boxes[0], dst_tile_mask=0b11, dim0=1,
        dim1=2, dim2=2, dim3=4, src_stride1=16, src_stride2=8, src_stride3=2, dst_stride1=8,
        dst_stride2=4, dst_stride3=1, src_dtype=fp16, dst_dtype=fp16))
    pb.tile_copy(1, tile_copy_2d(xs[1], halos[0], 0b01, 1, 8, fp16))
    pb.barrier()
    for t in range(2):
        pb.compute(t, Instruction.make(
            Opcode.ELTWISE, func=EltFunc.ADD, a_addr=xs[t], b_addr=halos[t], out_addr=outs[t],
            rows=4, cols=8, a_row_stride=8, b_row_stride=0, out_row_stride=8))
        pb.store(t, outs[t], f"y{t}", (4, 8), fp16)
        pb.store(t, boxes[t], f"box{t}", (16,), fp16)
    return pb.build().to_bytes()


def _fields(insn: Instruction) -> dict:
    """Keyword arguments that rebuild `insn` with Instruction.make."""
    kw = dict(insn.fields())
    kw.update(opcode=insn.opcode, func=insn.func, act=insn.act, src_dtype=insn.src_dtype,
              dst_dtype=insn.dst_dtype, layer=insn.layer, in_zp=insn.in_zp,
              out_zp=insn.out_zp, scale=insn.fparam[0], alpha=insn.fparam[1],
              beta=insn.fparam[2], flags=insn.flags)
    return kw


def seed_binaries() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [_conv_seed(rng), _int8_seed(rng), _two_tile_seed(rng), _tile_copy_seed(rng)]


def refresh_crcs(data: bytearray) -> None:
    """Recompute the three CRCs (and keep everything else) if the header is readable."""
    hsize = isa.HEADER_STRUCT.size
    if len(data) < hsize:
        return
    fields = list(isa.HEADER_STRUCT.unpack(bytes(data[:hsize])))
    meta_size = fields[4]
    if hsize + meta_size <= len(data):
        fields[10] = crc32c(bytes(data[hsize:hsize + meta_size]))
        fields[11] = crc32c(bytes(data[hsize + meta_size:]))
    fields[12] = 0
    header = isa.HEADER_STRUCT.pack(*fields)
    fields[12] = crc32c(header)
    data[:hsize] = isa.HEADER_STRUCT.pack(*fields)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    hsize = isa.HEADER_STRUCT.size
    meta_size = isa.HEADER_STRUCT.unpack(data[:hsize])[4]
    code_start = hsize + meta_size
    n_edits = int(rng.integers(1, 4))
    for _ in range(n_edits):
        kind = rng.random()
        if kind < 0.5 and len(out) > code_start + isa.INSN_BYTES:
            # an instruction word (header byte fields included) set to a boundary value
            n_insn = (len(out) - code_start) // isa.INSN_BYTES
            insn = int(rng.integers(0, n_insn))
            word = int(rng.integers(0, isa.INSN_BYTES // 4))
            pos = code_start + insn * isa.INSN_BYTES + 4 * word
            if pos + 4 > len(out):
                continue
            value = (int(rng.choice(INTERESTING)) if rng.random() < 0.7
                     else int(rng.integers(0, 2**32)))
            if rng.random() < 0.3:  # a single byte only
                out[pos + int(rng.integers(0, 4))] = value & 0xFF
            else:
                out[pos:pos + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif kind < 0.7:
            pos = int(rng.integers(0, min(len(out), code_start) // 4)) * 4
            value = int(rng.choice(INTERESTING)) if rng.random() < 0.7 else int(
                rng.integers(0, 2**32))
            out[pos:pos + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif kind < 0.85:
            pos = int(rng.integers(0, len(out)))
            out[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind < 0.95:
            out = out[: int(rng.integers(0, len(out)))]
        else:
            out += bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
    if rng.random() < 0.85:
        refresh_crcs(out)
    return bytes(out)


def run_case(data: bytes, timing: TimingParams = FUZZ_TIMING) -> str:
    """'rejected', 'sim_error', 'input_error' or 'ran'; other exceptions propagate."""
    try:
        sim = Simulator.load(data, timing=timing)
    except BinaryFormatError:
        return "rejected"
    except SimulationError:  # the init section runs at load
        return "sim_error"
    try:
        inputs = [np.ones(d.shape, np.float32) for d in sim.inputs]
        first, report = sim.run(inputs)
        sim.run(inputs, trace=True)  # the traced path too (its buffer is sized exactly)
        # the recorded schedule replayed (tiles on threads where there are 2 CPUs), on other
        # inputs and then on the first ones: a fresh handle's scheduled run's bits and cycles
        other = [np.arange(x.size, dtype=np.float32).reshape(x.shape) % 7 - 3 for x in inputs]
        fresh = Simulator.load(data, timing=timing)
        try:
            want_other, _ = fresh.run(other)
        finally:
            fresh.close()
        for feeds, want in ((other, want_other), (inputs, first)):
            got, got_report = sim.run(feeds)
            if [y.tobytes() for y in got] != [y.tobytes() for y in want] or \
                    got_report["cycles"] != report["cycles"]:
                raise AssertionError(f"a {sim.last_run_mode} run differs from a scheduled one")
    except SimulationError:
        return "sim_error"
    except (RuntimeInputError, MrvlError):
        return "input_error"
    finally:
        sim.close()
    return "ran"


def fuzz(cases: int, seed: int) -> dict:
    seeds = seed_binaries()
    for data in seeds:  # every seed must run cleanly before we mutate it
        assert run_case(data) == "ran", "a seed binary does not run"
    rng = np.random.default_rng(seed)
    counts = {"cases": cases, "rejected": 0, "sim_error": 0, "input_error": 0, "ran": 0}
    start = time.perf_counter()
    for i in range(cases):
        data = mutate(seeds[i % len(seeds)], rng)
        counts[run_case(data)] += 1
    counts["seconds"] = round(time.perf_counter() - start, 3)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(fuzz(args.cases, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
