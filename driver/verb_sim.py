"""`mrvl sim`: run a model binary on the simulator (our `mrvl-mlsim`).

    mrvl sim -m model.bin -d input.bin|.npy|.npz -o out [--perf-debug] [--json report.json]
             [--machine dram_gbps=32 ...] [--param check_deps=0 ...]

The timing model reads the machine recorded in the binary (docs/isa.md section 4);
`--machine KEY=VALUE` times the same program on another machine (outputs never change).

Inputs: `.bin` = every input as raw little-endian fp32, concatenated in the binary's input
order; `.npy` = one array (or, for several inputs, their concatenation); `.npz` = arrays named
like the inputs, or `arr_0, arr_1, ...` in input order.  Outputs: `<out>-<i>.bin`, raw fp32,
one file per output in the binary's order.
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from mrvl.errors import MrvlError, RuntimeInputError
from mrvl.files import write_bytes, write_text
from mrvl.sim.simulator import Simulator, TimingParams, format_report

TIMING_KEYS = ("dram_gbps", "dram_bytes_per_cycle", "dma_bytes_per_cycle", "dma_latency",
               "clock_mhz", "matrix_rows", "matrix_cols", "int8_speedup", "vector_lanes",
               "matrix_fill", "vector_latency", "issue_latency", "barrier_latency",
               "link_bytes_per_cycle", "link_latency")
"""The machine keys `--machine` may change (tiles, ocm_bytes, page_bytes are the program's)."""

HELP = "simulate a model binary on inputs and report cycles (like mrvl-mlsim)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True, help="model binary (.bin)")
    parser.add_argument("-d", "--data", required=True,
                        help="inputs: raw fp32 .bin (concatenated), .npy or .npz")
    parser.add_argument("-o", "--out", required=True,
                        help="output prefix: writes <out>-<i>.bin (raw fp32)")
    parser.add_argument("--perf-debug", "--perf_debug", action="store_true",
                        help="print the performance report (whole model and per layer)")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--machine", action="append", default=[], metavar="KEY=VALUE",
                        help="time on another machine than the binary records, e.g. "
                        "dram_gbps=32 (repeatable; outputs never change); keys: "
                        + ", ".join(TIMING_KEYS))
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="simulator option (repeatable); names: "
                        + ", ".join(f.name for f in fields(TimingParams)))


def _timing(params: list[str]) -> TimingParams:
    names = {f.name for f in fields(TimingParams)}
    values = {}
    for item in params:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in names:
            raise MrvlError(f"--param '{item}': expected NAME=VALUE with NAME one of "
                            f"{sorted(names)}")
        try:
            value = int(text, 0)
        except ValueError:
            raise MrvlError(f"--param '{item}': value must be an integer") from None
        values[name] = bool(value) if name in ("check_deps", "portable") else value
    return replace(TimingParams(), **values)


def load_inputs(path: str, sim: Simulator) -> list[np.ndarray]:
    """Read the -d file into one fp32 array per model input (descriptor order and shapes)."""
    descs = sim.inputs
    shapes = [tuple(d.shape) for d in descs]
    sizes = [math.prod(s) for s in shapes]
    file = Path(path)
    if not file.is_file():
        raise RuntimeInputError(f"input file '{path}' does not exist")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npz":
            # open the file here: numpy leaks its own handle when the archive is corrupt
            with open(file, "rb") as handle, np.load(handle) as archive:
                keys = list(archive.keys())
                if all(d.name in keys for d in descs):
                    arrays = [archive[d.name] for d in descs]
                elif len(keys) == len(descs) and all(f"arr_{i}" in keys
                                                     for i in range(len(descs))):
                    arrays = [archive[f"arr_{i}"] for i in range(len(descs))]
                else:
                    raise RuntimeInputError(
                        f"'{path}' holds {keys}; the model takes {[d.name for d in descs]} "
                        "(name the arrays like the inputs, or arr_0, arr_1, ... in order)")
            return [np.asarray(a, dtype=np.float32).reshape(s) if np.size(a) == n else
                    _bad_size(path, d.name, np.size(a), n)
                    for a, s, n, d in zip(arrays, shapes, sizes, descs, strict=True)]
        if suffix == ".npy":
            flat = np.load(file).astype(np.float32).ravel()
        else:
            flat = np.fromfile(file, dtype="<f4")
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise RuntimeInputError(f"cannot read inputs from '{path}': {error}") from None
    if flat.size != sum(sizes):
        raise RuntimeInputError(
            f"'{path}' holds {flat.size} fp32 values; the model's inputs "
            f"{[d.name for d in descs]} of shapes {shapes} need {sum(sizes)}")
    arrays, pos = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        arrays.append(flat[pos:pos + size].reshape(shape))
        pos += size
    return arrays


def _bad_size(path: str, name: str, got: int, want: int):
    raise RuntimeInputError(f"'{path}': input '{name}' has {got} values, expected {want}")


def run(args: argparse.Namespace) -> int:
    timing = _timing(args.param)
    sim = Simulator.load(args.model, timing=timing, machine=args.machine or None)
    inputs = load_inputs(args.data, sim)
    outputs, report = sim.run(inputs)
    prefix = Path(args.out)
    try:
        if prefix.parent != Path(""):
            prefix.parent.mkdir(parents=True, exist_ok=True)
        for i, out in enumerate(outputs):
            write_bytes(f"{prefix}-{i}.bin", out.astype("<f4").tobytes(), "simulator output")
        if args.json:
            write_text(args.json, json.dumps(report, indent=2) + "\n", "simulator report")
    except OSError as error:
        raise MrvlError(f"cannot write the outputs or the report: {error}") from None
    if args.perf_debug:
        print(format_report(report))
    return 0
