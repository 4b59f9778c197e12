"""Benchmark: mrvl as a TVM Relax BYOC target (mrvl.tvm; needs the extra mrvl[tvm]).

Per model: TVM's ONNX import, partition_for_mrvl, build (RunCodegen + tvm.compile), one VM
run; the regions and layers offloaded, and the TVM output against `mrvl compile` + `mrvl run`
of the same model (fp16, 8 tiles): bit for bit when the whole model is one region (the binary
then has the same layers; its I/O is f32 instead of f16 with host conversion), and the
acceptance rule against onnxruntime.

Run: .venv/bin/python bench/bench_tvm.py [--models mnist_cnn,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import onnxruntime as ort


def bench(name: str) -> dict:
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    import mrvl.tvm as mt
    from mrvl import models
    from mrvl.driver import api
    from mrvl.sim.acceptance import check_outputs, passed

    model = models.build(name)
    feeds = models.example_inputs(model)
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    start = time.perf_counter()
    mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
    imported = time.perf_counter()
    partitioned = mt.partition_for_mrvl(mod)
    parted = time.perf_counter()
    exe = mt.build(partitioned, num_tiles=8)
    built = time.perf_counter()
    vm = relax.VirtualMachine(exe, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(x) for x in feeds.values()])
    ran = time.perf_counter()
    got = [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]
    ref = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    names = [o.name for o in model.graph.output]
    checks = check_outputs(dict(zip(names, got)), dict(zip(names, ref)))
    with tempfile.TemporaryDirectory() as scratch:
        build_dir = api.compile(model, f"{scratch}/build", num_tiles=8)
        ours = api.run(build_dir, feeds, record=False).outputs
    regions = mt.offloaded_layers(partitioned)
    return {
        "model": name, "import_s": imported - start, "partition_s": parted - imported,
        "build_s": built - parted, "run_s": ran - built, "regions": len(regions),
        "layers": sum(len(v) for v in regions.values()),
        "identical_to_mrvl_run": all(np.array_equal(g, ours[n]) for g, n in zip(got, names)),
        "max_rel_err": max(c.max_rel_err for c in checks), "rule": passed(checks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist_cnn,mobilenet_v2")
    args = parser.parse_args()
    print("| model | import (s) | partition (s) | build (s) | VM run (s) | regions | layers "
          "| = mrvl run | max rel err | rule |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = bench(name)
        print(f"| {r['model']} | {r['import_s']:.2f} | {r['partition_s']:.2f} | "
              f"{r['build_s']:.2f} | {r['run_s']:.3f} | {r['regions']} | {r['layers']} | "
              f"{'yes' if r['identical_to_mrvl_run'] else 'no'} | {100 * r['max_rel_err']:.2f}% "
              f"| {'pass' if r['rule'] else 'FAIL'} |")


if __name__ == "__main__":
    main()
