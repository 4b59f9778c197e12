"""The simulated timeline of a run as Chrome trace-event JSON (Perfetto, chrome://tracing).

The C core records one `mlip_trace_record` per executed instruction when a run is traced
(`Simulator.run(inputs, trace=...)`, `CompiledModel.run(inputs, trace=...)`, `mrvl run BUILD
--trace run.json`). `Timeline` holds those records (a numpy structured array) with what names
them; `chrome_events` turns one or more timelines into trace events:

- one process per (accelerator step, tile), named `@<symbol> tile <n>` by a `process_name`
  metadata ("M") event; one thread per queue of that tile (`dma_in`, `compute`, `dma_out`,
  `thread_name` events), so each track is one queue of one tile;
- one complete ("X") slice per instruction, named `<layer> <OPCODE>` (`<section> <OPCODE>`
  outside any layer), with args opcode, layer, section, start/end cycle, stall cycles (the
  wait before it started), MACs, DRAM bytes and engine-busy cycles. Barriers are slices
  named `barrier` on every tile's compute track; stalls are the gaps before slices (and their
  `stall_cycles`);
- timestamps in microseconds: cycles / clock MHz, offset by the cycles of the accelerator
  steps before (steps run one after another); CPU steps are instant ("i") events at the
  boundary where they ran, with their wall time in args.

One slice per instruction is kept (not merged per layer): ResNet-50 at 8 tiles runs 4,999
instructions, 1.4 MB of JSON, which Perfetto opens at once, and merging would hide the
stalls between the instructions of one layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrvl import mlip_isa as isa

__all__ = ["RECORD_DTYPE", "Timeline", "CpuMark", "chrome_events", "write_chrome_trace"]

QUEUE_NAMES = ("dma_in", "compute", "dma_out")
SECTION_NAMES = ("init", "main", "finish")

# mirrors `mlip_trace_record` (csrc/mlip_sim.h); `tests/test_trace.py` checks the size
RECORD_DTYPE = np.dtype([
    ("ready", "<u8"), ("start", "<u8"), ("end", "<u8"), ("busy", "<u8"), ("macs", "<u8"),
    ("dram_bytes", "<u8"), ("index", "<u4"), ("layer", "<u2"), ("tile", "u1"),
    ("queue", "u1"), ("opcode", "u1"), ("section", "u1"), ("int8", "u1"), ("reserved", "u1"),
], align=True)


@dataclass
class Timeline:
    """The records of one traced run of one binary, and what names them."""

    name: str
    records: np.ndarray
    layer_names: list[str]
    clock_mhz: int
    cycles: int
    dropped: int = 0

    def layer_name(self, layer: int) -> str | None:
        if layer == isa.LAYER_NONE or layer >= len(self.layer_names):
            return None
        return self.layer_names[layer]


@dataclass(frozen=True)
class CpuMark:
    """A CPU step between accelerator steps (shown as an instant event)."""

    name: str
    wall_s: float


def _opcode_name(opcode: int) -> str:
    try:
        return isa.Opcode(opcode).name
    except ValueError:
        return f"OP{opcode}"


def chrome_events(parts: Sequence[Timeline | CpuMark]) -> list[dict[str, Any]]:
    """Trace events of accelerator timelines and CPU steps, in run order (module docstring)."""
    events: list[dict[str, Any]] = []
    offset_us = 0.0
    pid = 0
    if any(isinstance(part, CpuMark) for part in parts):
        events.append({"name": "process_name", "ph": "M", "pid": 0, "tid": 0,
                       "args": {"name": "host (CPU steps, wall time not to scale)"}})
    for part in parts:
        if isinstance(part, CpuMark):
            events.append({"name": f"cpu {part.name}", "ph": "i", "s": "g", "ts": offset_us,
                           "pid": 0, "tid": 0, "args": {"wall_s": part.wall_s}})
            continue
        events.extend(_timeline_events(part, offset_us, pid))
        pid += 1 + max((int(t) for t in part.records["tile"]), default=0)
        offset_us += part.cycles / part.clock_mhz
    return events


def _timeline_events(timeline: Timeline, offset_us: float, pid0: int) -> list[dict[str, Any]]:
    records = timeline.records
    per_us = float(timeline.clock_mhz)
    events: list[dict[str, Any]] = []
    tracks = sorted({(int(t), int(q)) for t, q in zip(records["tile"], records["queue"])})
    for tile in sorted({t for t, _ in tracks}):
        pid = pid0 + 1 + tile
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": f"@{timeline.name} tile {tile}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
    for tile, queue in tracks:
        events.append({"name": "thread_name", "ph": "M", "pid": pid0 + 1 + tile, "tid": queue,
                       "args": {"name": QUEUE_NAMES[queue]}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid0 + 1 + tile,
                       "tid": queue, "args": {"sort_index": queue}})
    for rec in records.tolist():
        (ready, start, end, busy, macs, dram_bytes, index, layer, tile, queue, opcode,
         section, int8, _reserved) = rec
        op = _opcode_name(opcode)
        layer_name = timeline.layer_name(layer)
        section_name = SECTION_NAMES[section] if section < len(SECTION_NAMES) else "?"
        if op == "BARRIER":
            name = "barrier"
        else:
            name = f"{layer_name if layer_name is not None else section_name} {op}"
        args: dict[str, Any] = {
            "opcode": op, "layer": layer_name, "section": section_name, "index": index,
            "start_cycle": start, "end_cycle": end, "stall_cycles": start - ready,
        }
        if macs:
            args["macs"] = macs
            args["int8"] = bool(int8)
        if dram_bytes:
            args["dram_bytes"] = dram_bytes
        if busy:
            args["busy_cycles"] = busy
        events.append({"name": name, "cat": QUEUE_NAMES[queue], "ph": "X",
                       "ts": round(offset_us + start / per_us, 6),
                       "dur": round((end - start) / per_us, 6),
                       "pid": pid0 + 1 + tile, "tid": queue, "args": args})
    return events


def chrome_document(parts: Sequence[Timeline | CpuMark]) -> dict[str, Any]:
    """The whole JSON object: `traceEvents` plus what the run was."""
    timelines = [p for p in parts if isinstance(p, Timeline)]
    return {
        "traceEvents": chrome_events(parts),
        "displayTimeUnit": "ns",
        "otherData": {
            "generator": "mrvl",
            "steps": [{"name": t.name, "cycles": t.cycles, "clock_mhz": t.clock_mhz,
                       "records": int(len(t.records)), "dropped": t.dropped}
                      for t in timelines],
        },
    }


def write_chrome_trace(path: str | Path, parts: Timeline | Iterable[Timeline | CpuMark]) -> Path:
    """Write the Chrome trace-event JSON of `parts` to `path`; raises MrvlError on I/O."""
    parts = [parts] if isinstance(parts, Timeline) else list(parts)
    from mrvl.files import write_text

    return write_text(path, json.dumps(chrome_document(parts), separators=(",", ":")), "trace")
