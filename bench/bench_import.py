"""Benchmark: import of a ResNet-50 (25.6M parameters) into the graph dialect.

Builds ResNet-50 with `mrvl.models.resnet50` (random weights), saves it to a temporary
directory, then, each in a fresh subprocess so that peak RSS is the import's own:

- `mrvl.frontend.onnx_import.import_onnx(path)`: wall time and peak RSS above the
  process's baseline (Python + xdsl + onnx + numpy imported);
- `onnxruntime.InferenceSession(path)`: the same two figures, for comparison.

Targets (issue 2): import < 2 s, peak RSS < 3x the weight size.

Run: .venv/bin/python bench/bench_import.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap

_HWM = """
import json, resource, sys, time


def hwm_kb():
    # VmHWM is reset by exec; ru_maxrss is not (it would carry the parent's peak).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

IMPORT_CHILD = _HWM + textwrap.dedent(
    """
    import numpy, onnx, xdsl.dialects.builtin
    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.dialects import graph
    base = hwm_kb()
    t0 = time.perf_counter()
    module = import_onnx(sys.argv[1])
    wall = time.perf_counter() - t0
    peak = hwm_kb()
    n_ops = sum(1 for _ in module.walk())
    print(json.dumps({"wall_s": wall, "peak_kb": peak - base, "ops": n_ops}))
    """
)

ORT_CHILD = _HWM + textwrap.dedent(
    """
    import numpy, onnx, onnxruntime
    base = hwm_kb()
    t0 = time.perf_counter()
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    wall = time.perf_counter() - t0
    peak = hwm_kb()
    print(json.dumps({"wall_s": wall, "peak_kb": peak - base}))
    """
)


def _run(child: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", child, path], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (best is reported)")
    args = parser.parse_args()

    import onnx

    from mrvl.models.resnet50 import resnet50

    model = resnet50()
    params = sum(math.prod(t.dims) for t in model.graph.initializer)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet50.onnx")
        onnx.save(model, path)
        del model
        file_mb = os.path.getsize(path) / 1e6
        ours = [_run(IMPORT_CHILD, path) for _ in range(args.repeat)]
        theirs = [_run(ORT_CHILD, path) for _ in range(args.repeat)]
    best = min(ours, key=lambda r: r["wall_s"])
    best_ort = min(theirs, key=lambda r: r["wall_s"])
    peak = max(r["peak_kb"] for r in ours) * 1024
    peak_ort = max(r["peak_kb"] for r in theirs) * 1024
    weights_mb = weight_bytes / 1e6
    print(f"ResNet-50: {params:,} parameters, {weights_mb:.1f} MB of weights, file {file_mb:.1f} MB")
    print(f"{'':28s}{'wall (best of ' + str(args.repeat) + ')':>22s}{'peak RSS above baseline':>26s}")
    print(f"{'mrvl import_onnx':28s}{best['wall_s']:>20.3f} s{peak / 1e6:>20.1f} MB"
          f" ({peak / weight_bytes:.2f}x weights)")
    print(f"{'onnxruntime session create':28s}{best_ort['wall_s']:>20.3f} s{peak_ort / 1e6:>20.1f} MB"
          f" ({peak_ort / weight_bytes:.2f}x weights)")
    print(f"imported ops: {best['ops']}")
    print(f"target import < 2 s: {best['wall_s']:.3f} s ({best['wall_s'] / 2.0:.0%} of the budget) "
          f"{'OK' if best['wall_s'] < 2.0 else 'MISSED'}")
    print(f"target peak RSS < 3x weights: {peak / weight_bytes:.2f}x "
          f"{'OK' if peak < 3 * weight_bytes else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
