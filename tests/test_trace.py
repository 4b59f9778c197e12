"""The simulated timeline (`mrvl.sim.trace`, `mlip_sim_run_traced`): the C record matches its
numpy mirror, tracing changes neither outputs nor cycles, the buffer is never overrun, and
the written Chrome trace-event JSON is valid and agrees with the run's own report."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from mrvl import mlip_isa as isa
from mrvl.dialects import mrvl
from mrvl.driver.cli import main
from mrvl.lowering.backend import compile_function
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.calibration import activation_ranges
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.machine import Machine
from mrvl.mlip_binary import ModelBinary
from mrvl.models import MODELS, mnist_cnn_trained
from mrvl.driver.verb_example import fix_batch
from mrvl.driver import api
from mrvl.sim.simulator import Simulator, _backend
from mrvl.sim.trace import RECORD_DTYPE


def _compiled(name: str, tiles: int, mode: str):
    module = compile_to_partitioned(MODELS[name](batch=1))
    fn = subgraph_functions(module, "accelerator")[0]
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
             for a in fn.body.block.args]
    ranges = activation_ranges(fn, [feeds]) if mode == "int8" else None
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize=mode, ranges=ranges)
    return sub.data, feeds


@pytest.fixture(scope="module", params=[("mnist_cnn", 2, "fp16"), ("mnist_cnn", 4, "int8"),
                                        ("ssd_detector", 8, "fp16")],
                ids=lambda p: f"{p[0]}-{p[1]}-{p[2]}")
def traced(request, tmp_path_factory):
    data, feeds = _compiled(*request.param)
    path = tmp_path_factory.mktemp("trace") / "run.json"
    with Simulator.load(data) as sim:
        plain_out, plain = sim.run(feeds)
        traced_out, report = sim.run(feeds, trace=path)
        timeline = sim.last_trace
    return data, plain_out, plain, traced_out, report, timeline, json.loads(path.read_text())


def test_record_layout_matches_the_c_struct():
    ffi, _ = _backend()
    assert ffi.sizeof("mlip_trace_record") == RECORD_DTYPE.itemsize
    for name in RECORD_DTYPE.names:
        assert ffi.offsetof("mlip_trace_record", name) == RECORD_DTYPE.fields[name][1], name


def test_tracing_changes_neither_outputs_nor_cycles(traced):
    _, plain_out, plain, traced_out, report, timeline, _ = traced
    assert report["cycles"] == plain["cycles"]
    assert report["stall_cycles"] == plain["stall_cycles"]
    for a, b in zip(plain_out, traced_out, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert len(timeline.records) == report["instructions"]
    assert timeline.dropped == 0


def test_trace_is_valid_chrome_json(traced):
    data, _, _, _, report, _, doc = traced
    events = doc["traceEvents"]
    assert isinstance(events, list)
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == report["instructions"]
    total_us = report["cycles"] / report["clock_mhz"]
    for e in slices:
        for key in ("name", "ph", "ts", "dur", "pid", "tid"):
            assert key in e, (key, e)
        assert e["dur"] >= 0 and e["ts"] >= 0
        assert e["ts"] + e["dur"] <= total_us + 1e-6
        assert e["args"]["end_cycle"] <= report["cycles"]
        assert e["args"]["stall_cycles"] >= 0
    # one named track per (tile, queue) that has instructions in main or finish
    binary = ModelBinary.from_bytes(data)
    busy = {(tile, queue) for (section, tile, queue), insns in binary.streams.items()
            if insns and section != int(isa.Section.INIT)}
    process = {e["pid"]: e["args"]["name"] for e in events
               if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks = {(e["pid"], e["tid"]) for e in slices}
    assert tracks == set(threads)
    named = {(int(process[pid].rsplit(" ", 1)[1]), ("dma_in", "compute", "dma_out").index(name))
             for (pid, _), name in threads.items()}
    assert named == busy
    # slices of one track never overlap (exact, in cycles)
    per_track = defaultdict(list)
    for e in slices:
        per_track[(e["pid"], e["tid"])].append((e["args"]["start_cycle"], e["args"]["end_cycle"]))
    for spans in per_track.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start


def test_trace_agrees_with_the_per_layer_report(traced):
    _, _, _, _, report, _, doc = traced
    compute = defaultdict(int)
    macs = defaultdict(int)
    dma_in = defaultdict(int)
    stalls = 0
    for e in doc["traceEvents"]:
        if e["ph"] != "X":
            continue
        args = e["args"]
        stalls += args["stall_cycles"]
        if args["section"] != "main" or args["layer"] is None:
            continue
        macs[args["layer"]] += args.get("macs", 0)
        if e["cat"] == "compute":
            compute[args["layer"]] += args.get("busy_cycles", 0)
        if e["cat"] == "dma_in":
            dma_in[args["layer"]] += args.get("dram_bytes", 0)
    assert stalls == sum(report["stall_cycles"].values())
    for layer in report["layers"]:
        assert compute[layer["name"]] == layer["matrix_cycles"] + layer["vector_cycles"]
        assert macs[layer["name"]] == layer["macs"]
        assert dma_in[layer["name"]] == layer["dma_in_bytes"]


def test_stalls_and_barriers_are_visible(traced):
    _, _, _, _, report, _, doc = traced
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert any(e["args"]["stall_cycles"] > 0 for e in slices)
    barriers = [e for e in slices if e["name"] == "barrier"]
    if report["tiles"] > 1:
        assert barriers and all(e["cat"] == "compute" for e in barriers)


def test_a_small_buffer_is_never_overrun():
    data, feeds = _compiled("mnist_cnn", 2, "fp16")
    with Simulator.load(data) as sim:
        _, plain = sim.run(feeds)
        ffi, lib = sim._ffi, sim._lib
        total = int(lib.mlip_sim_trace_size(sim._handle))
        assert total == plain["instructions"]
        capacity = total // 3
        records = np.zeros(capacity + 4, dtype=RECORD_DTYPE)
        records["start"] = 0xDEADBEEF
        stats = ffi.new("mlip_stats *")
        layers = ffi.new("mlip_layer_stats[]", len(sim.binary.layers))
        recorded = ffi.new("uint64_t *")
        dropped = ffi.new("uint64_t *")
        msg = ffi.new("char[256]")
        buffer = ffi.cast("mlip_trace_record *", ffi.from_buffer(records))
        status = lib.mlip_sim_run_traced(sim._handle, stats, layers, len(sim.binary.layers),
                                         buffer, capacity, recorded, dropped, msg, 256)
        assert status == 0
        assert (recorded[0], dropped[0]) == (capacity, total - capacity)
        assert int(stats.cycles) == plain["cycles"]
        assert (records["start"][capacity:] == 0xDEADBEEF).all()
        assert (records["end"][:capacity] > 0).all()
        status = lib.mlip_sim_run_traced(sim._handle, stats, layers, len(sim.binary.layers),
                                         ffi.NULL, 0, recorded, dropped, msg, 256)
        assert status == 0 and (recorded[0], dropped[0]) == (0, total)
        status = lib.mlip_sim_run_traced(sim._handle, stats, layers, len(sim.binary.layers),
                                         ffi.NULL, 5, recorded, dropped, msg, 256)
        assert status == lib.MLIP_ERR_ARG and b"NULL" in ffi.string(msg)


def test_run_trace_of_a_hybrid_build(tmp_path):
    """`mrvl run BUILD --trace`: accelerator steps one after another on the simulated clock,
    the CPU step between them as an instant event; the Python API returns the same events."""
    build = tmp_path / "build"
    api.compile(fix_batch(mnist_cnn_trained(), 1), build, num_tiles=2, quantize="fp16",
                cpu_layers=["max_pooling2d_1"], require_compute=False)
    x = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    np.savez(tmp_path / "x.npz", permute_input=x)
    out = tmp_path / "run.json"
    assert main(["run", str(build), "--inputs", str(tmp_path / "x.npz"), "--trace",
                 str(out)]) == 0
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    steps = doc["otherData"]["steps"]
    assert [s["dropped"] for s in steps] == [0, 0]
    names = {e["pid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "process_name"}
    first = [e for e in events if e["ph"] == "X" and "main_0 " in names[e["pid"]]]
    second = [e for e in events if e["ph"] == "X" and "main_1 " in names[e["pid"]]]
    assert first and second
    end_first = steps[0]["cycles"] / steps[0]["clock_mhz"]
    assert max(e["ts"] + e["dur"] for e in first) <= end_first + 1e-6
    assert min(e["ts"] for e in second) >= end_first - 1e-6
    assert max(e["ts"] + e["dur"] for e in second) <= (
        end_first + steps[1]["cycles"] / steps[1]["clock_mhz"] + 1e-6)
    cpu = [e for e in events if e["ph"] == "i"]
    assert len(cpu) == 1 and cpu[0]["ts"] == pytest.approx(end_first)
    result = api.run(build, {"permute_input": x}, record=False, trace=True)
    again = result.result.trace_events()
    assert [e["name"] for e in again if e["ph"] == "X"] == [
        e["name"] for e in events if e["ph"] == "X"]
