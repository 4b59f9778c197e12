"""Benchmark: the graph cleanup passes (`run_graph_cleanup`, layout NHWC) on the in-repo models.

Per model: import once, then time each pass of `graph_cleanup_passes("NHWC")` on a fresh
import (best of `--repeat`), the whole cleanup, and the op counts before and after. With
`--check`, also runs the reference executor before and after and prints the largest
absolute difference (rtol 1e-4 / atol 1e-5 is the contract).

Target (issue 3 / the pass task): ResNet-50 cleanup well under 1-2 s.

Run: .venv/bin/python bench/bench_graph_passes.py [--models resnet50,mobilenet_v2] [--repeat 3]
     [--check]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np


def _counts(module) -> Counter[str]:
    return Counter(op.name for op in module.walk() if op.name.startswith("graph."))


def bench(name: str, repeat: int, check: bool) -> None:
    from xdsl.context import Context

    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.lowering.graph_pipeline import graph_cleanup_passes
    from mrvl.models import MODELS, example_inputs

    model = MODELS[name](batch=1)
    per_pass: dict[str, float] = {}
    totals: list[float] = []
    module = None
    before: Counter[str] = Counter()
    for _ in range(repeat):
        module = import_onnx(model)
        before = _counts(module)
        ctx = Context()
        total = 0.0
        for i, p in enumerate(graph_cleanup_passes("NHWC")):
            start = time.perf_counter()
            p.apply(ctx, module)
            elapsed = time.perf_counter() - start
            key = f"{i + 1}. {p.name}"
            per_pass[key] = min(per_pass.get(key, float("inf")), elapsed)
            total += elapsed
        totals.append(total)
    assert module is not None
    after = _counts(module)
    print(f"## {name}: cleanup {min(totals):.3f} s (best of {repeat})")
    for key, elapsed in per_pass.items():
        print(f"  {key:32s} {elapsed * 1000:8.1f} ms")
    kinds = sorted(set(before) | set(after))
    print("  ops before -> after: " + ", ".join(
        f"{k[6:]} {before[k]}->{after[k]}" for k in kinds if before[k] != after[k]
    ))
    if check:
        from mrvl.sim.reference import run_function

        feeds = example_inputs(model)
        try:
            want = run_function(import_onnx(model), feeds)
            got = run_function(module, feeds)
        except Exception as error:  # report and go on with the next model
            print(f"  reference executor failed: {error}")
            return
        diff = max(float(np.abs(w.astype(np.float64) - g).max()) for w, g in zip(want, got))
        ok = all(np.allclose(g, w, rtol=1e-4, atol=1e-5) for w, g in zip(want, got))
        print(f"  reference executor before vs after: max |diff| {diff:.3g}, in tolerance: {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist_cnn,resnet50,mobilenet_v2,ssd_detector")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    for name in args.models.split(","):
        bench(name.strip(), args.repeat, args.check)


if __name__ == "__main__":
    main()
