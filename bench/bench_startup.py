"""Start-up figures of the `mrvl` command (issue 12, item 4): whole-process wall times.

- `mrvl --help` (target <= 0.3 s), and the heavy modules it imports (none of onnx,
  onnxruntime, xdsl);
- a whole-process `mrvl run BUILD --inputs x.npz` of the in-repo ResNet-50 (fp16, 8 tiles)
  against a whole-process onnxruntime script that loads the same model and runs it once
  (target: within 1.5x).

Each figure is the best of `--repeat` runs of a fresh interpreter.

    .venv/bin/python bench/bench_startup.py [--repeat 5] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ORT_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
feeds = dict(np.load(sys.argv[2]))
session.run(None, feeds)
"""
HEAVY = ("onnx", "onnxruntime", "xdsl", "ml_dtypes")
IMPORTS_SCRIPT = """
import sys
from mrvl.driver import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def best_of(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def heavy_imports(args: list[str]) -> str:
    script = IMPORTS_SCRIPT.format(heavy=set(HEAVY))
    out = subprocess.run([sys.executable, "-c", script, *args], check=True,
                         capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("HEAVY:"))
    return line.removeprefix("HEAVY:")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    mrvl = str(BIN / "mrvl")
    python = best_of([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass:            {python:.3f} s")
    help_s = best_of([mrvl, "--help"], args.repeat)
    print(f"mrvl --help:               {help_s:.3f} s  (target <= 0.3 s)  heavy imports: "
          f"{heavy_imports(['--help']) or 'none'}")
    if args.skip_resnet:
        return 0
    import numpy as np

    from mrvl.driver import api
    from mrvl.models import build, example_inputs

    model = build("resnet50", batch=1)
    feeds = example_inputs(model)
    with tempfile.TemporaryDirectory(prefix="mrvl-startup-") as tmp:
        build_dir = Path(tmp) / "build"
        start = time.perf_counter()
        api.compile(model, build_dir, num_tiles=8, quantize="fp16")
        print(f"compile resnet50 (in process): {time.perf_counter() - start:.1f} s")
        inputs = Path(tmp) / "x.npz"
        np.savez(inputs, **feeds)
        script = Path(tmp) / "ort_run.py"
        script.write_text(ORT_SCRIPT)
        ort_s = best_of([sys.executable, str(script), str(build_dir / "model.onnx"),
                         str(inputs)], args.repeat)
        run_s = best_of([mrvl, "run", str(build_dir), "--inputs", str(inputs)], args.repeat)
        print(f"onnxruntime script (whole process): {ort_s:.3f} s")
        print(f"mrvl run resnet50 (whole process):  {run_s:.3f} s  ({run_s / ort_s:.2f}x, "
              f"target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
