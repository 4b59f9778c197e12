"""Runs replayed from the recorded schedule, and tiles simulated on threads (issue 14), give
exactly the outputs, cycles and reports of the scheduled one-thread run; a program that is not
known to be free of races never runs its tiles on threads."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mrvl.driver import api
from mrvl.mlip_binary import Instruction
from mrvl.mlip_isa import OPCODE_FIELDS, Act, DType, EltFunc, Opcode, Queue, Section
from mrvl.models import MODELS, pp_lcnet
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.simulator import Simulator, TimingParams
from sanitizers import gcc_runtime_library

ROOT = Path(__file__).resolve().parents[1]
F16 = np.float16
RUNS = 5  # two checked runs, then three replayed (on threads where threads > 1)
# the C core starts no more threads than the host has CPUs online (os.cpu_count's figure)
THREADED = "tile-threads" if (os.cpu_count() or 1) >= 2 else "replayed"


def _binary(build: Path) -> Path:
    (path,) = sorted(build.glob("*.bin"))
    return path


def _feed_sets(sim: Simulator, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(desc.shape) * 2).astype(np.float32) for desc in sim.inputs]
            for _ in range(RUNS)]


def _runs(binary: Path, timing: TimingParams, feed_sets) -> tuple[list, list[str]]:
    sim = Simulator.load(binary, timing=timing)
    results, modes = [], []
    for feeds in feed_sets:
        outputs, report = sim.run(feeds)
        results.append(([y.tobytes() for y in outputs], report))
        modes.append(sim.last_run_mode)
    sim.close()
    return results, modes


@pytest.mark.parametrize("name, quantize, tiles", [
    ("mnist_cnn", "fp16", 8), ("pp_lcnet", "fp16", 8), ("mnist_cnn", "int8", 4),
    ("mobilenet_v2", "fp16", 2)])
def test_tile_threads_give_the_scheduled_bits_and_reports(tmp_path, name, quantize, tiles):
    """Five inferences of different inputs on one handle, on 1, 2 and 3 threads and the AVX2
    kernels: each gives the output bits and the report (cycles, per-layer stats) of its input
    set run first on a fresh handle (scheduled, checked); from the third run on, the handle
    replays the recorded schedule (with the tiles on threads where there are any)."""
    model = pp_lcnet() if name == "pp_lcnet" else MODELS[name](batch=1)
    options = {"calibration": "random"} if quantize == "int8" else {}
    build = api.compile(model, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                        **options)
    binary = _binary(build)
    feed_sets = _feed_sets(Simulator.load(binary), seed=tiles)
    # each input set as the first (scheduled, checked) run of a fresh handle
    scheduled = [_runs(binary, TimingParams(), [feeds])[0][0] for feeds in feed_sets]
    expected_modes = {1: ["scheduled", "scheduled"] + ["replayed"] * 3,
                      2: ["scheduled", "scheduled"] + [THREADED] * 3}
    for timing in (TimingParams(), TimingParams(threads=2), TimingParams(threads=3),
                   TimingParams(threads=2, no_avx512=True)):
        results, modes = _runs(binary, timing, feed_sets)
        assert modes == expected_modes[min(timing.threads, 2)], timing
        for k, (want, got) in enumerate(zip(scheduled, results, strict=True)):
            assert got[0] == want[0], (timing, k)
            assert got[1] == want[1], (timing, k)
    # the five inputs differ, and so do their outputs
    assert len({tuple(r[0]) for r in scheduled}) == RUNS


def test_weights_written_between_replayed_runs_are_used(tmp_path):
    """The host writes new weights into DRAM between tile-parallel runs: the next run uses
    them, exactly as a freshly loaded simulator does."""
    build = api.compile(MODELS["mnist_cnn"](batch=1), tmp_path / "build", num_tiles=8,
                        quantize="fp16")
    binary = _binary(build)
    sim = Simulator.load(binary, timing=TimingParams(threads=2))
    feeds = _feed_sets(sim, seed=3)[0]
    for _ in range(3):
        first, _ = sim.run(feeds)
    assert sim.last_run_mode == THREADED
    desc = sim.binary
    dram = sim._dram()
    lo, hi = desc.weights_offset, desc.weights_offset + len(desc.weights)
    weights = np.frombuffer(bytes(dram[lo:hi]), np.uint8).copy()
    changed = weights.view(F16).copy()
    changed[::7] = (changed[::7].astype(np.float32) * 0.5).astype(F16)
    dram[lo:hi] = changed.view(np.uint8).tobytes()
    second, _ = sim.run(feeds)
    assert sim.last_run_mode == THREADED
    fresh = Simulator.load(binary)
    fresh_dram = fresh._dram()
    fresh_dram[lo:hi] = changed.view(np.uint8).tobytes()
    want, _ = fresh.run(feeds)
    assert [y.tobytes() for y in second] == [y.tobytes() for y in want]
    assert [y.tobytes() for y in second] != [y.tobytes() for y in first]


def _racy_binary() -> bytes:
    """Two tiles write the same output bytes in one epoch (no barrier orders them): a
    dependency error when checked; unchecked, the schedule decides which write lands last."""
    n = 64 * 1024
    pb = ProgramBuilder(tiles=2)
    outs = []
    for tile, value in ((0, 1.0), (1, 2.0)):
        x = np.full(n, value, F16)
        a = pb.const(tile, x)
        o = pb.alloc(tile, x.nbytes)
        pb.compute(tile, Instruction.make(
            Opcode.ELTWISE, a_addr=a, b_addr=a, out_addr=o, rows=1, cols=n, a_row_stride=n,
            b_row_stride=n, b_col_stride=1, out_row_stride=n, func=EltFunc.ADD,
            act=Act.NONE, src_dtype=DType.FP16, dst_dtype=DType.FP16))
        outs.append(o)
    pb.store(0, outs[0], "y", (n,), DType.FP16)
    pb.store(1, outs[1], "z", (n,), DType.FP16)
    binary = pb.build()
    # tile 1 stores into y's bytes too
    (store,) = binary.streams[(Section.MAIN, 1, Queue.DMA_OUT)]
    args = list(store.args)
    args[OPCODE_FIELDS[Opcode.DMA_STORE].index("dram_addr")] = binary.outputs[0].dram_offset
    binary.streams[(Section.MAIN, 1, Queue.DMA_OUT)] = [replace(store, args=tuple(args))]
    return binary.to_bytes()


def test_a_program_not_checked_for_races_never_runs_tiles_on_threads():
    data = _racy_binary()
    with pytest.raises(Exception, match="dependency"):
        Simulator.load(data).run([])
    sim = Simulator.load(data, timing=TimingParams(threads=2, check_deps=False))
    results = []
    for _ in range(6):
        (y, _z), _report = sim.run([])
        results.append(y.tobytes())
        assert sim.last_run_mode in ("scheduled", "replayed")
    assert sim.last_run_mode == "replayed"
    assert len(set(results)) == 1


def test_tile_threads_have_no_data_race_under_thread_sanitizer(tmp_path):
    """The C core built with -fsanitize=thread runs two models' binaries four times on 2 and
    3 threads (two checked runs, then two with tiles on threads): no race is reported, and
    every run's cycles and DRAM bytes (CRC) equal the one-thread run's.  (The same build with
    the tile locks removed reports races.)"""
    assert gcc_runtime_library("libtsan.so") is not None, \
        "gcc with libtsan is required for the thread-race test"
    harness = tmp_path / "harness"
    build = subprocess.run(
        ["gcc", "-O1", "-g", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing",
         "-pthread", "-fsanitize=thread", f"-I{ROOT / 'csrc'}", str(ROOT / "csrc" / "mlip_sim.c"),
         str(ROOT / "tests" / "tile_threads_harness.c"), "-o", str(harness), "-lm"],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    for name, tiles in (("pp_lcnet", 8), ("mnist_cnn", 4)):
        model = pp_lcnet() if name == "pp_lcnet" else MODELS[name](batch=1)
        binary = _binary(api.compile(model, tmp_path / name, num_tiles=tiles, quantize="fp16"))
        runs = {}
        for threads in (1, 2, 3):
            run = subprocess.run([str(harness), str(binary), str(threads), "4"],
                                 capture_output=True, text=True, timeout=600,
                                 env=dict(os.environ, TSAN_OPTIONS="halt_on_error=1"))
            assert run.returncode == 0, run.stderr[-6000:]
            assert "ThreadSanitizer" not in run.stderr, run.stderr[-6000:]
            rows = [line.split() for line in run.stdout.split("\n") if line]
            runs[threads] = [(cycles, crc) for cycles, _mode, crc in rows]
            modes = [int(mode) for _cycles, mode, _crc in rows]
            threaded = 2 if threads > 1 and THREADED == "tile-threads" else 1
            assert modes == [0, 0, threaded, threaded], (name, threads)
        assert runs[1] == runs[2] == runs[3]
