"""The OCM-resident schedule against the DRAM schedule (issue 10): DRAM traffic, latency,
the independent bound and efficiency per model and DRAM bandwidth, with Marvell's published
ResNet-50 figures.

    .venv/bin/python bench/bench_schedule.py                       # 8 tiles, fp16, 16/32/64 GB/s
    .venv/bin/python bench/bench_schedule.py --models resnet50 --gbps 32 --tiles 8
    .venv/bin/python bench/bench_schedule.py --models resnet50 --why   # tensors still in DRAM

Both schedules are compiled in the same process from the same partitioned model:
`compile_function(..., resident=False, prefetch=False)` is the schedule before issue 10
(every activation stored to and loaded from DRAM, every weight load behind its layer's
barrier), the default `resident=True, prefetch=True` the OCM-resident schedule with weight
prefetch. Outputs are compared bit for bit (a mismatch is an error). A model partitioned
into several accelerator sub-graphs (the DenseNet-style model: its BatchNorms without a
conv before them run on the CPU) is reported as the sum over its accelerator sub-graphs,
each fed seeded random inputs (CPU steps take no simulated time; the row's "subgraphs"
column says how many were summed). `--why` lists, per sub-graph, every activation tensor
that still goes through DRAM with its bytes and the reason (`mlip_residency.dram_report`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

MODEL_NAMES = ("resnet50", "mobilenet_v2", "densenet121", "ssd_detector")
MARVELL_RESNET50 = {"dram_in_mb": 51.46, "dram_out_mb": 2000 / 1e6, "latency_ms": 5.674,
                    "matmul_efficiency": 0.332}
"""Marvell's compiler on ResNet-50 v1 (fp16, 8 tiles, batch 1): published figures."""

SUMMED = ("dma_in_bytes", "dma_out_bytes", "tile_copy_bytes", "cycles", "time_ms",
          "bound_cycles")


def build_model(name: str):
    """The ONNX model of a benchmark name (`mrvl.models.MODELS` or `densenet121`)."""
    from mrvl.models import MODELS
    from mrvl.models.densenet import densenet121

    if name == "densenet121":
        return densenet121(batch=1)
    return MODELS[name](batch=1)


def _machine(tiles: int, gbps: float):
    from mrvl.machine import Machine

    return Machine(tiles=tiles).with_overrides({"dram_gbps": gbps})


def _feeds(fn) -> list[np.ndarray]:
    from mrvl.dialects.mrvl import tensor_shape

    rng = np.random.default_rng(0)
    return [rng.standard_normal(tensor_shape(a)).astype(np.float32) for a in fn.body.block.args]


def measure(name: str, tiles: int, gbps: float, resident: bool, module=None):
    """(outputs of every accelerator sub-graph, report summed over them) of one compile +
    simulated inference per sub-graph."""
    from mrvl.dialects.mrvl import subgraph_functions
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.lowering.backend import compile_function
    from mrvl.sim.simulator import Simulator

    if module is None:
        module = compile_to_partitioned(build_model(name))
    outputs: list[np.ndarray] = []
    total: dict = {key: 0 for key in SUMMED}
    functions = subgraph_functions(module.clone(), "accelerator")
    for fn in functions:
        sub = compile_function(fn, machine=_machine(tiles, gbps), resident=resident,
                               prefetch=resident)
        with Simulator.load(sub.data) as sim:
            outs, report = sim.run(_feeds(fn))
        outputs.extend(outs)
        for key in SUMMED:
            total[key] += report[key]
        total["clock_mhz"] = report["clock_mhz"]
    total["efficiency"] = total["bound_cycles"] / total["cycles"] if total["cycles"] else 0.0
    total["subgraphs"] = len(functions)
    return outputs, total


def why(name: str, tiles: int, gbps: float, module=None) -> None:
    """Print every activation tensor the resident schedule still moves through DRAM."""
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp

    from mrvl.dialects.mlip import ModelOp
    from mrvl.dialects.mrvl import subgraph_functions
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.lowering.backend import backend_passes
    from mrvl.lowering.mlip_residency import dram_report

    if module is None:
        module = compile_to_partitioned(build_model(name))
    annotate, lower = backend_passes(machine=_machine(tiles, gbps))
    residency = [p for p in lower if p.name in ("convert-mrvl-to-mlip", "mlip-residency")]
    totals = {"activations": [0, 0], "weights": [0, 0], "model I/O": [0, 0]}
    for fn in subgraph_functions(module.clone(), "accelerator"):
        holder = ModuleOp([fn.clone()])
        for p in annotate + residency:
            p.apply(Context(), holder)
        model = next(op for op in holder.ops if isinstance(op, ModelOp))
        for t in dram_report(model):
            kind = {"scratch": "activations", "weights": "weights"}.get(t.region, "model I/O")
            totals[kind][0] += t.in_bytes
            totals[kind][1] += t.out_bytes
            if t.region == "scratch":
                print(f"  {fn.sym_name.data:22s} {t.name:34s} in {t.in_bytes / 1e6:6.2f} MB "
                      f"out {t.out_bytes / 1e6:6.2f} MB  {t.reason}")
    for kind, (in_bytes, out_bytes) in totals.items():
        print(f"  {name}: {kind}: DRAM->OCM {in_bytes / 1e6:.2f} MB, OCM->DRAM "
              f"{out_bytes / 1e6:.2f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--gbps", default="16,32,64")
    parser.add_argument("--why", action="store_true",
                        help="list the activation tensors that still go through DRAM, and why")
    args = parser.parse_args(argv)
    from mrvl.driver.compiler import compile_to_partitioned

    gbps_list = [float(g) for g in args.gbps.split(",")]
    if args.why:
        for name in args.models.split(","):
            why(name, args.tiles, gbps_list[0], compile_to_partitioned(build_model(name)))
        return 0
    print(f"{'model':14s} {'subgr':>5s} {'GB/s':>5s} {'schedule':9s} {'DRAM in MB':>10s} "
          f"{'out MB':>8s} {'copy MB':>8s} {'latency ms':>10s} {'bound ms':>9s} {'eff':>6s}")
    failed = False
    for name in args.models.split(","):
        module = compile_to_partitioned(build_model(name))
        for gbps in gbps_list:
            results = {}
            for resident in (False, True):
                outputs, rep = measure(name, args.tiles, gbps, resident, module)
                results[resident] = outputs
                clock_khz = rep["clock_mhz"] * 1000.0
                print(f"{name:14s} {rep['subgraphs']:5d} {gbps:5.0f} "
                      f"{'resident' if resident else 'dram':9s} "
                      f"{rep['dma_in_bytes'] / 1e6:10.2f} {rep['dma_out_bytes'] / 1e6:8.2f} "
                      f"{rep['tile_copy_bytes'] / 1e6:8.2f} {rep['time_ms']:10.3f} "
                      f"{rep['bound_cycles'] / clock_khz:9.3f} {rep['efficiency']:6.1%}",
                      flush=True)
            same = all(np.array_equal(a, b, equal_nan=True)
                       for a, b in zip(results[False], results[True], strict=True))
            if not same:
                print(f"{name} {gbps} GB/s: resident outputs differ from the DRAM schedule")
                failed = True
        if name == "resnet50":
            m = MARVELL_RESNET50
            print(f"{'resnet50':14s} {'':>5s} {'':>5s} {'Marvell':9s} {m['dram_in_mb']:10.2f} "
                  f"{m['dram_out_mb']:8.3f} {'':>8s} {m['latency_ms']:10.3f} {'':>9s} "
                  f"{m['matmul_efficiency']:6.1%} (matmul efficiency)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
