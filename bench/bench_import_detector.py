"""Benchmark: import and whole compile of a detector whose post-processing is generic ONNX ops.

Builds `mrvl.models.ssd_export_detector` (a small conv backbone, then box decoding, TopK,
NonMaxSuppression, ScatterND and shape arithmetic over 12096 anchors: most of its nodes become
`graph.onnx`), saves it to a temporary directory and reports, in this process:

- `import_onnx(path)`: wall time, the number of onnxruntime shape probes it ran and the
  number of `graph.onnx` ops in the result;
- `mrvl.sim.api.compile(path, ...)` (import, partition, backend, build directory): wall time.

Target (issue 12): a detector like this compiles in <= 10 s on a 2-core machine; the importer
types every generic op by ONNX shape inference, with no onnxruntime probe.

Run: .venv/bin/python bench/bench_import_detector.py [--repeat N] [--num-tiles T]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="imports to time (best is kept)")
    parser.add_argument("--num-tiles", type=int, default=8)
    parser.add_argument("--quantize", default="fp16", choices=["fp16", "int8"])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    from mrvl.dialects import graph
    from mrvl.frontend import onnx_import
    from mrvl.models.ssd_export_detector import NUM_ANCHORS, ssd_export_detector
    from mrvl.driver import api

    model = ssd_export_detector(batch=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ssd_export_detector.onnx"
        onnx.save(model, path)
        import_times, probes, generic = [], 0, 0
        for _ in range(max(1, args.repeat)):
            before = onnx_import.ort_probe_count()
            start = time.perf_counter()
            module = onnx_import.import_onnx(path)
            import_times.append(time.perf_counter() - start)
            probes = onnx_import.ort_probe_count() - before
            generic = sum(1 for op in module.walk() if isinstance(op, graph.OnnxOp))
        before = onnx_import.ort_probe_count()
        start = time.perf_counter()
        api.compile(path, Path(tmp) / "build", num_tiles=args.num_tiles, quantize=args.quantize)
        compile_s = time.perf_counter() - start
        compile_probes = onnx_import.ort_probe_count() - before
    result = {
        "model": "ssd_export_detector", "nodes": len(model.graph.node), "anchors": NUM_ANCHORS,
        "graph_onnx_ops": generic, "import_s": round(min(import_times), 3),
        "import_probes": probes, "compile_s": round(compile_s, 3),
        "compile_probes": compile_probes, "num_tiles": args.num_tiles, "quantize": args.quantize,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"ssd_export_detector: {result['nodes']} ONNX nodes, {NUM_ANCHORS} anchors, "
          f"{generic} graph.onnx ops after import")
    print(f"  import:  {result['import_s']:.3f} s (best of {len(import_times)}), "
          f"{probes} onnxruntime probes")
    print(f"  compile: {result['compile_s']:.3f} s ({args.num_tiles} tiles, {args.quantize}), "
          f"{compile_probes} onnxruntime probes")
    print(f"  target: compile <= 10 s: {'met' if compile_s <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
