"""Simulator speed on ResNet-50 fp16 vs onnxruntime on one thread (issue 5, "Measure").

Two measurements, side by side, both on this machine:
- onnxruntime (1 intra-op thread) running the in-repo ResNet-50 (batch 1), best of N;
- the whole model compiled by the backend (`mrvl.driver.api.compile`, 8 tiles, fp16) and its
  accelerator binary simulated (functional + timing + dependency checking), best of N, with
  the fp16 acceptance check against onnxruntime and the simulated latency / efficiency next
  to Marvell's published 5.674 ms and 33.2 %;
- the simulator executing every conv / gemm of ResNet-50 as one hand-built program per layer
  (1 tile, large OCM; independent of the backend), summed over layers, best of N.

    .venv/bin/python bench/bench_sim_resnet50.py [--repeat 3] [--skip-full]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads spinning beside us

import argparse  # noqa: E402
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

from mrvl.models import build, example_inputs
from mrvl.mlip_binary import Instruction
from mrvl.mlip_isa import Act, DType, Opcode
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.simulator import Simulator, TimingParams

BIG_OCM = 1 << 26


def conv_layers(model: onnx.ModelProto):
    """(name, H, W, C, O, K, stride, pad, groups, is_gemm) of every Conv / Gemm."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            n, c, h, w = shapes[node.input[0]]
            weight = inits[node.input[1]]
            layers.append((node.name, h, w, c, weight.shape[0], weight.shape[2],
                           attrs.get("strides", [1, 1])[0], attrs.get("pads", [0] * 4)[0],
                           attrs.get("group", 1), False))
        elif node.op_type == "Gemm":
            weight = inits[node.input[1]]
            out_f, in_f = weight.shape if attrs.get("transB", 0) else weight.shape[::-1]
            layers.append((node.name, 1, 1, in_f, out_f, 1, 1, 0, 1, True))
    return layers


def layer_program(layer, rng) -> bytes:
    name, H, W, C, O, K, s, p, g, gemm = layer
    OH, OW = (H + 2 * p - K) // s + 1, (W + 2 * p - K) // s + 1
    pb = ProgramBuilder(ocm_size=BIG_OCM, name=name[:60])
    xa = pb.const(0, rng.standard_normal((H, W, C)).astype(np.float16))
    wa = pb.const(0, (rng.standard_normal((O, K, K, C // g)) * 0.05).astype(np.float16))
    ba = pb.const(0, rng.standard_normal(O).astype(np.float32))
    oa = pb.alloc(0, OH * OW * O * 2)
    if gemm:
        insn = Instruction.make(Opcode.GEMM, in_addr=xa, m=1, k=C, in_row_stride=C,
                                out_addr=oa, n=O, out_row_stride=O, w_addr=wa, bias_addr=ba)
    else:
        insn = Instruction.make(
            Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=OH,
            ow=OW, oc=O, out_pix_stride=O, w_addr=wa, bias_addr=ba, kh=K, kw=K, sh=s, sw=s,
            pad_t=p, pad_l=p, groups=g, act=Act.RELU)
    pb.compute(0, insn)
    pb.store(0, oa, "y", (OH, OW, O), DType.FP16)
    return pb.build().to_bytes()


def bench_layers(model, repeat: int) -> tuple[float, int, int]:
    rng = np.random.default_rng(0)
    timing = TimingParams()  # the OCM size is the binary's machine record (BIG_OCM)
    sims = [Simulator.load(layer_program(layer, rng), timing=timing)
            for layer in conv_layers(model)]
    best = float("inf")
    macs = cycles = 0
    for _ in range(repeat):
        start = time.perf_counter()
        macs = cycles = 0
        for sim in sims:
            _, report = sim.run([])
            macs += report["macs"]
            cycles += report["cycles"]
        best = min(best, time.perf_counter() - start)
    return best, macs, cycles


def bench_ort(model, feeds, repeat: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return best


def bench_full(model, feeds, repeat: int, t_ort: float, tiles: int = 8) -> None:
    """Compile the whole model (backend) and simulate its accelerator binary directly."""
    from mrvl.driver import api
    from mrvl.sim.acceptance import check_output
    from mrvl.sim.simulator import format_report

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        try:
            api.compile(model, tmp, num_tiles=tiles, quantize="fp16")
        except Exception as error:  # noqa: BLE001 - the backend is another module
            print(f"whole-model compile: not available ({type(error).__name__}: "
                  f"{str(error)[:200]})")
            return
        compile_s = time.perf_counter() - start
        bins = sorted(Path(tmp).glob("*.bin"))
        if len(bins) != 1:
            print(f"whole model: expected one accelerator binary, got {len(bins)}")
            return
        sim = Simulator.load(bins[0])
    (name, x), = feeds.items()
    best = float("inf")
    outputs = report = None
    for _ in range(repeat):
        start = time.perf_counter()
        outputs, report = sim.run([x])
        best = min(best, time.perf_counter() - start)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    ref = ort.InferenceSession(model.SerializeToString(), options,
                               providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    check = check_output("logits", outputs[0].reshape(ref.shape), ref, "fp16")
    print(f"whole ResNet-50 on the simulator ({tiles} tiles): host {best * 1e3:.1f} ms "
          f"= {best / t_ort:.2f}x onnxruntime (target <= 3x); compile {compile_s:.2f} s")
    print(f"  fp16 acceptance vs onnxruntime: {check}")
    print(f"  simulated latency {report['time_ms']:.3f} ms ({report['cycles']:,} cycles), "
          f"MAC efficiency {100 * report['peak_mac_fraction']:.1f} %  "
          f"(Marvell: 5.674 ms, 33.2 %)")
    print("\n".join("  " + line for line in format_report(report).split("\n\n")[0]
                    .splitlines()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    model = build("resnet50", batch=1)
    feeds = example_inputs(model)
    t_ort = bench_ort(model, feeds, args.repeat)
    print(f"onnxruntime 1 thread, whole ResNet-50: {t_ort * 1e3:.1f} ms")
    if not args.skip_full:
        bench_full(model, feeds, args.repeat, t_ort)
    t_sim, macs, cycles = bench_layers(model, args.repeat)
    print(f"simulator, ResNet-50 conv+gemm layers one program each (1 tile): "
          f"{t_sim * 1e3:.1f} ms = {t_sim / t_ort:.2f}x onnxruntime "
          f"({macs / 1e9:.2f} GMACs, {macs / t_sim / 1e9:.2f} GMAC/s host, "
          f"{cycles:,} simulated cycles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
