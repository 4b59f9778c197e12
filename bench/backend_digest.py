"""Refactor guard: a digest of what the backend produces for every in-repo model.

For each model x tile count (1, 2, 4, 8) x mode (fp16, int8) the first accelerator
sub-graph is compiled (int8 calibrated on one seeded input) and simulated on a seeded input;
the digest records the SHA-256 of the output bytes and the simulated cycle count.

    .venv/bin/python bench/backend_digest.py                 # compare with tests/data/backend_digest.json
    .venv/bin/python bench/backend_digest.py --write         # record this machine's digest
    .venv/bin/python bench/backend_digest.py --models mnist_cnn --tiles 1,8

fp16 outputs depend only on the model and the compiler (the simulator is bit-exact and the
fp16 conversion of weights is exact IEEE rounding), so they are compared on any machine.
int8 outputs also depend on the calibration ranges, which the reference executor computes
with the machine's BLAS (AVX2 and AVX-512 kernels differ in the last bit), so int8 output
digests are compared only against a digest recorded on the same kind of machine
(`--write` first); cycle counts never depend on data and are always compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

DIGEST_PATH = Path(__file__).resolve().parents[1] / "tests" / "data" / "backend_digest.json"
MODEL_NAMES = ("mnist_cnn", "mobilenet_v2", "ssd_detector", "resnet50")
TILES = (1, 2, 4, 8)
MODES = ("fp16", "int8")


def _inputs(fn, seed: int) -> list[np.ndarray]:
    from mrvl.dialects import mrvl

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]


def digest_entries(models=MODEL_NAMES, tiles=TILES, modes=MODES, progress=None) -> dict:
    """{"<model>/<tiles>/<mode>": {"outputs": sha256 hex, "cycles": int}}."""
    from mrvl.lowering.backend import compile_function
    from mrvl.machine import Machine
    from mrvl.driver.calibration import activation_ranges
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.dialects.mrvl import subgraph_functions
    from mrvl.models import MODELS
    from mrvl.sim.simulator import Simulator

    entries = {}
    for name in models:
        module = compile_to_partitioned(MODELS[name](batch=1))
        for tile_count in tiles:
            for mode in modes:
                # a fresh function per compile: the backend annotates it in place
                fn = subgraph_functions(module.clone(), "accelerator")[0]
                feeds = _inputs(fn, 0)
                ranges = activation_ranges(fn, [_inputs(fn, 1)]) if mode == "int8" else None
                start = time.perf_counter()
                sub = compile_function(fn, machine=Machine(tiles=tile_count), quantize=mode,
                                       ranges=ranges)
                with Simulator.load(sub.data) as sim:
                    outputs, report = sim.run(feeds)
                sha = hashlib.sha256()
                for out in outputs:
                    sha.update(np.ascontiguousarray(out, dtype=np.float32).tobytes())
                key = f"{name}/{tile_count}/{mode}"
                entries[key] = {"outputs": sha.hexdigest(), "cycles": int(report["cycles"])}
                if progress is not None:
                    progress(f"{key:28s} cycles {report['cycles']:>12,}  "
                             f"{time.perf_counter() - start:5.1f} s")
    return entries


def compare(entries: dict, recorded: dict, *, int8_outputs: bool) -> list[str]:
    """Differences between two digests (empty when they agree)."""
    problems = []
    for key, got in entries.items():
        want = recorded.get(key)
        if want is None:
            problems.append(f"{key}: not in the recorded digest")
            continue
        if got["cycles"] != want["cycles"]:
            problems.append(f"{key}: cycles {got['cycles']} != recorded {want['cycles']}")
        if (int8_outputs or key.endswith("/fp16")) and got["outputs"] != want["outputs"]:
            problems.append(f"{key}: outputs differ from the recorded digest")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="record the digest")
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--tiles", default=",".join(map(str, TILES)))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--digest", type=Path, default=DIGEST_PATH)
    args = parser.parse_args(argv)
    entries = digest_entries(args.models.split(","), [int(t) for t in args.tiles.split(",")],
                             args.modes.split(","), progress=print)
    if args.write:
        recorded = json.loads(args.digest.read_text()) if args.digest.exists() else {}
        recorded.update(entries)
        args.digest.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")
        print(f"wrote {len(entries)} entries to {args.digest}")
        return 0
    problems = compare(entries, json.loads(args.digest.read_text()), int8_outputs=True)
    for line in problems:
        print("DIFF", line)
    print(f"{len(entries) - len(problems)} of {len(entries)} entries identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
