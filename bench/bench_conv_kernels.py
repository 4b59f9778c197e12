"""CONV / GEMM kernel throughput of the C simulator, per instruction shape (issue 14).

Compiles an in-repo model (fp16, N tiles), takes every distinct fp16 CONV / GEMM instruction
of its accelerator binary (depthwise CONVs excepted: they run on the vector engine's kernel),
and times each shape alone: one hand-built program per shape holding the instruction R times
(same input, so the converted input is reused, as when consecutive CONVs read one block;
the weights come from the fp16 weights cache, compared with DRAM once per host DRAM access,
as in a real run, but they stay in the host's caches, unlike in a whole model's run).
Per-thread CPU time, median of 5, so the load of a shared machine counts less; the per-run
Python cost is spread over the R copies.  Prints the slowest shapes and the sum over the model's
instructions (count x time), i.e. the CONV / GEMM time of one inference.

    .venv/bin/python bench/bench_conv_kernels.py [--model resnet50] [--tiles 8]
                                                 [--path default|avx2|portable] [--top 12]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mrvl.driver import api
from mrvl.mlip_binary import Instruction, ModelBinary
from mrvl.mlip_isa import Act, DType, Opcode
from mrvl.models import MODELS
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.simulator import Simulator, TimingParams

PATHS = {"default": TimingParams(), "avx2": TimingParams(no_avx512=True),
         "portable": TimingParams(portable=True)}


def shape_program(insn: Instruction, rng: np.random.Generator) -> tuple[bytes, int, tuple]:
    """(binary, MACs of one instruction, shape label) of a program repeating `insn`'s shape."""
    f = insn.fields()
    pb = ProgramBuilder(ocm_size=1 << 26, name="kernel")
    if insn.opcode == Opcode.CONV:
        g = f["groups"]
        xa = pb.const(0, rng.standard_normal((f["ih"], f["iw"], f["ic"])).astype(np.float16))
        wa = pb.const(0, (rng.standard_normal((f["oc"], f["kh"], f["kw"], f["ic"] // g))
                          * 0.05).astype(np.float16))
        ba = pb.const(0, rng.standard_normal(f["oc"]).astype(np.float32))
        oa = pb.alloc(0, f["oh"] * f["ow"] * f["oc"] * 2)
        new = Instruction.make(
            Opcode.CONV, in_addr=xa, ih=f["ih"], iw=f["iw"], ic=f["ic"], in_pix_stride=f["ic"],
            out_addr=oa, oh=f["oh"], ow=f["ow"], oc=f["oc"], out_pix_stride=f["oc"],
            w_addr=wa, bias_addr=ba, kh=f["kh"], kw=f["kw"], sh=f["sh"], sw=f["sw"],
            pad_t=f["pad_t"], pad_l=f["pad_l"], dh=f["dh"], dw=f["dw"], groups=g,
            act=Act.RELU)
        macs = f["oh"] * f["ow"] * f["oc"] * f["kh"] * f["kw"] * f["ic"] // g
        label = (f"conv {f['oh']}x{f['ow']} px, {f['ic']}->{f['oc']} ch, "
                 f"{f['kh']}x{f['kw']}/{f['sh']}, groups {g}")
        out_shape = (f["oh"] * f["ow"], f["oc"])
    else:
        xa = pb.const(0, rng.standard_normal((f["m"], f["k"])).astype(np.float16))
        wa = pb.const(0, (rng.standard_normal((f["n"], f["k"])) * 0.05).astype(np.float16))
        ba = pb.const(0, rng.standard_normal(f["n"]).astype(np.float32))
        oa = pb.alloc(0, f["m"] * f["n"] * 2)
        new = Instruction.make(Opcode.GEMM, in_addr=xa, m=f["m"], k=f["k"],
                               in_row_stride=f["k"], out_addr=oa, n=f["n"],
                               out_row_stride=f["n"], w_addr=wa, bias_addr=ba)
        macs = f["m"] * f["k"] * f["n"]
        label = f"gemm {f['m']}x{f['k']} -> {f['n']}"
        out_shape = (f["m"], f["n"])
    repeat = max(1, min(50, int(2e7 // macs)))
    for _ in range(repeat):
        pb.compute(0, new)
    pb.store(0, oa, "y", out_shape, DType.FP16)
    return pb.build().to_bytes(), macs, (label, repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--path", default="default", choices=sorted(PATHS))
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mrvl-kernels-") as scratch:
        api.compile(MODELS[args.model](batch=1), scratch, num_tiles=args.tiles,
                    quantize="fp16")
        (path,) = sorted(Path(scratch).glob("*.bin"))[:1]
        binary = ModelBinary.read(path)
    count: collections.Counter = collections.Counter()
    sample = {}
    for insns in binary.streams.values():
        for insn in insns:
            if insn.opcode not in (Opcode.CONV, Opcode.GEMM) or insn.src_dtype != DType.FP16:
                continue
            f = insn.fields()
            if insn.opcode == Opcode.CONV and f["groups"] > 1 and f["groups"] == f["ic"]:
                continue
            key = (int(insn.opcode), tuple(sorted(f.items())))
            count[key] += 1
            sample[key] = insn
    rng = np.random.default_rng(0)
    rows, total_s, total_macs = [], 0.0, 0
    for key, n in count.most_common():
        data, macs, (label, repeat) = shape_program(sample[key], rng)
        with Simulator.load(data, timing=PATHS[args.path]) as sim:
            sim.run([])
            runs = max(3, int(1e8 // (macs * repeat)))
            times = []
            for _ in range(5):
                start = time.thread_time()
                for _ in range(runs):
                    sim.run([])
                times.append((time.thread_time() - start) / (runs * repeat))
        per = statistics.median(times)
        total_s += per * n
        total_macs += macs * n
        rows.append((per * n, label, n, macs / per / 1e9))
    rows.sort(reverse=True)
    print(f"{args.model}, {args.tiles} tiles, fp16, kernel path '{args.path}': per-thread CPU "
          f"time, median of 5")
    for share, label, n, rate in rows[:args.top]:
        print(f"  {share * 1e3:7.2f} ms  {n:4d} x {label:<48s} {rate:6.1f} GMAC/s")
    print(f"CONV/GEMM per inference: {total_s * 1e3:.1f} ms for {total_macs / 1e9:.2f} GMAC "
          f"({total_macs / total_s / 1e9:.1f} GMAC/s), {sum(count.values())} instructions "
          f"of {len(count)} shapes")


if __name__ == "__main__":
    main()
