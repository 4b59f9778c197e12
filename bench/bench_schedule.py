"""The OCM-resident schedule against the DRAM schedule (issue 10): DRAM traffic, latency,
the independent bound and efficiency per model and DRAM bandwidth, with Marvell's published
ResNet-50 figures.

    .venv/bin/python bench/bench_schedule.py                       # 8 tiles, fp16, 16/32/64 GB/s
    .venv/bin/python bench/bench_schedule.py --models resnet50 --gbps 32 --tiles 8

Both schedules are compiled in the same process from the same partitioned model:
`compile_function(..., resident=False, prefetch=False)` is the schedule before issue 10
(every activation stored to and loaded from DRAM, every weight load behind its layer's
barrier), the default `resident=True, prefetch=True` the OCM-resident schedule with weight
prefetch. Outputs are compared bit for bit (a mismatch is an error).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

MODEL_NAMES = ("resnet50", "mobilenet_v2", "ssd_detector")
MARVELL_RESNET50 = {"dram_in_mb": 51.46, "dram_out_mb": 2000 / 1e6, "latency_ms": 5.674,
                    "matmul_efficiency": 0.332}
"""Marvell's compiler on ResNet-50 v1 (fp16, 8 tiles, batch 1): published figures."""


def measure(name: str, tiles: int, gbps: float, resident: bool, module=None):
    """(outputs, report) of one compile + simulated inference."""
    from mrvl.dialects.mrvl import subgraph_functions, tensor_shape
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.lowering.backend import compile_function
    from mrvl.machine import Machine
    from mrvl.models import MODELS
    from mrvl.sim.simulator import Simulator

    if module is None:
        module = compile_to_partitioned(MODELS[name](batch=1))
    fn = subgraph_functions(module.clone(), "accelerator")[0]
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal(tensor_shape(a)).astype(np.float32)
             for a in fn.body.block.args]
    machine = Machine(tiles=tiles).with_overrides({"dram_gbps": gbps})
    sub = compile_function(fn, machine=machine, resident=resident, prefetch=resident)
    with Simulator.load(sub.data) as sim:
        return sim.run(feeds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--gbps", default="16,32,64")
    args = parser.parse_args(argv)
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.models import MODELS

    print(f"{'model':14s} {'GB/s':>5s} {'schedule':9s} {'DRAM in MB':>10s} {'out MB':>8s} "
          f"{'copy MB':>8s} {'latency ms':>10s} {'bound ms':>9s} {'eff':>6s}")
    failed = False
    for name in args.models.split(","):
        module = compile_to_partitioned(MODELS[name](batch=1))
        for gbps in (float(g) for g in args.gbps.split(",")):
            results = {}
            for resident in (False, True):
                outputs, rep = measure(name, args.tiles, gbps, resident, module)
                results[resident] = outputs
                clock_khz = rep["clock_mhz"] * 1000.0
                print(f"{name:14s} {gbps:5.0f} {'resident' if resident else 'dram':9s} "
                      f"{rep['dma_in_bytes'] / 1e6:10.2f} {rep['dma_out_bytes'] / 1e6:8.2f} "
                      f"{rep['tile_copy_bytes'] / 1e6:8.2f} {rep['time_ms']:10.3f} "
                      f"{rep['bound_cycles'] / clock_khz:9.3f} {rep['efficiency']:6.1%}")
            same = all(np.array_equal(a, b, equal_nan=True)
                       for a, b in zip(results[False], results[True], strict=True))
            if not same:
                print(f"{name} {gbps} GB/s: resident outputs differ from the DRAM schedule")
                failed = True
        if name == "resnet50":
            m = MARVELL_RESNET50
            print(f"{'resnet50':14s} {'':>5s} {'Marvell':9s} {m['dram_in_mb']:10.2f} "
                  f"{m['dram_out_mb']:8.3f} {'':>8s} {m['latency_ms']:10.3f} {'':>9s} "
                  f"{m['matmul_efficiency']:6.1%} (matmul efficiency)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
