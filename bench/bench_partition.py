"""Benchmark: ResNet-50 from ONNX to the Nodes-JSON / Constants-JSON pair, in one process.

Builds ResNet-50 with `mrvl.models.resnet50` (random weights, batch 1), saves it to a
temporary directory, then runs `mrvl.lowering.mrvl_partition.write_json_pairs` (import, graph
passes, convert-graph-to-mrvl, mrvl-partition, JSON writer) in a fresh subprocess and reports
its wall time, the time of each step, and the process's peak RSS (VmHWM; absolute, and above
the baseline after the imports).

Targets (issue 3): under 3 s and under 1.5 GB peak memory (Marvell's own backend compiler
takes 4.8 s for ResNet-50, onnx-mlir about 29 s).

Run: .venv/bin/python bench/bench_partition.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, sys, time

    def hwm_kb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    import numpy, onnx, xdsl.dialects.builtin
    from xdsl.context import Context
    from mrvl.frontend.onnx_import import import_onnx
    from mrvl.lowering.convert_graph_to_mrvl import ConvertGraphToMrvlPass
    from mrvl.lowering.mrvl_json import write_module_json
    from mrvl.lowering.mrvl_partition import MrvlPartitionPass, run_graph_passes
    base = hwm_kb()
    steps = {}
    t0 = time.perf_counter()
    module = import_onnx(sys.argv[1])
    t1 = time.perf_counter(); steps["import"] = t1 - t0
    run_graph_passes(module)
    t2 = time.perf_counter(); steps["graph passes"] = t2 - t1
    ConvertGraphToMrvlPass().apply(Context(), module)
    t3 = time.perf_counter(); steps["convert-graph-to-mrvl"] = t3 - t2
    MrvlPartitionPass().apply(Context(), module)
    t4 = time.perf_counter(); steps["mrvl-partition"] = t4 - t3
    pairs = write_module_json(module, sys.argv[2])
    t5 = time.perf_counter(); steps["JSON pair"] = t5 - t4
    peak = hwm_kb()
    sizes = [p.stat().st_size for pair in pairs for p in pair]
    print(json.dumps({"wall_s": t5 - t0, "steps": steps, "peak_kb": peak,
                      "peak_above_base_kb": peak - base, "files": len(sizes),
                      "bytes": sum(sizes)}))
    """
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs (the best is reported)")
    args = parser.parse_args(argv)

    import onnx

    from mrvl.models.resnet50 import resnet50

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(resnet50(batch=1), str(path))
        runs = []
        for i in range(args.repeat):
            out = Path(tmp) / f"out{i}"
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(result.stdout))
        same = all(
            (Path(tmp) / "out0" / p.name).read_bytes() == p.read_bytes()
            for i in range(1, args.repeat)
            for p in (Path(tmp) / f"out{i}").iterdir()
        )
    best = min(runs, key=lambda r: r["wall_s"])
    peak_mb = max(r["peak_kb"] for r in runs) / 1024
    print("ResNet-50 ONNX -> JSON pair (one process)")
    for step, seconds in best["steps"].items():
        print(f"  {step:<24} {seconds:6.3f} s")
    print(f"  wall (best of {args.repeat}):      {best['wall_s']:6.3f} s   target < 3 s "
          f"({'ok' if best['wall_s'] < 3 else 'MISSED'})")
    print(f"  peak RSS:                 {peak_mb:7.0f} MB  target < 1536 MB "
          f"({'ok' if peak_mb < 1536 else 'MISSED'}); above the imports: "
          f"{best['peak_above_base_kb'] / 1024:.0f} MB")
    print(f"  output: {best['files']} files, {best['bytes'] / 1e6:.1f} MB; "
          f"byte-identical across runs: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
