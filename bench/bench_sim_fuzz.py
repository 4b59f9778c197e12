"""10,000 mutated model binaries through the ASan + UBSan build of the simulator core.

Builds the sanitizer variant with sim/build_sim.py (MRVL_SIM_SANITIZE=1) in a temporary
directory, runs `python -m mrvl.sim.sim_fuzz` under LD_PRELOAD of libasan, and prints how the
cases ended (rejected at load / simulation error / ran) and whether any sanitizer report or
crash occurred.

    .venv/bin/python bench/bench_sim_fuzz.py [--cases 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build = subprocess.run(
            [sys.executable, "-c",
             "import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
             "ns['ffibuilder'].compile(tmpdir=sys.argv[2])",
             str(ROOT / "sim" / "build_sim.py"), tmp],
            cwd=ROOT, env=dict(os.environ, MRVL_SIM_SANITIZE="1"), capture_output=True,
            text=True)
        if build.returncode != 0:
            print(build.stderr[-4000:])
            return 1
        print(f"sanitizer build: {time.perf_counter() - start:.1f} s")
        env = dict(os.environ)
        env.update(
            LD_PRELOAD=libasan,
            ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1",
            UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
            MRVL_SIM_BACKEND="_mlip_sim_asan",
            PYTHONPATH=os.pathsep.join([tmp, env.get("PYTHONPATH", "")]),
        )
        run = subprocess.run([sys.executable, "-m", "mrvl.sim.sim_fuzz", "--cases",
                              str(args.cases), "--seed", str(args.seed)], env=env,
                             capture_output=True, text=True)
    sanitizer = "AddressSanitizer" in run.stderr or "runtime error" in run.stderr
    print(f"exit status {run.returncode}; sanitizer reports: {'YES' if sanitizer else 'none'}")
    if run.returncode != 0 or sanitizer:
        print(run.stderr[-6000:])
        return 1
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
