"""`mrvl report build/`: what a build does and how fast.

Reads only the build directory: `manifest.json` (steps), `offload.json` (partition, CPU nodes
with reasons, MAC share), `static_report.json` (the backend's per-layer OCM, DMA, MACs and
roofline) and, when `mrvl run` recorded one, `run_report.json` (the simulator's per-layer
cycles of the last run). Per-layer cycles come from the run when there is one, else from the
static estimate (the roofline of each layer's own DMA traffic); the report says which. OCM
figures are the allocator's (static report), DMA bytes the run's when recorded. Every
accelerator step also gets the program-independent bound (`mrvl.sim.bound`) and, with a
recorded run, its efficiency (bound / cycles); the totals sum them over the steps. The
crossings between accelerator and CPU come from `offload.json`; the CPU's share of the run
time is **measured** with a recorded run (the CPU steps' onnxruntime wall time on this host
against the accelerator steps' simulated time; the hand-over between steps is not in
either) and else the offload report's **estimate**; `cpu_time_source` says which.

`build_report(build_dir) -> dict` gives the figures, `format_build_report(dict) -> str` the
text; `--json` prints the dict.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mrvl.errors import MrvlError

HELP = "report a build: partition, offload share, per-layer cycles, OCM and DMA"

OFFLOAD = "offload.json"
STATIC = "static_report.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("build", help="build directory written by `mrvl compile`")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MrvlError(f"{path}: cannot read it: {error}") from None


def _num(entry: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return None


def _layers(report: Any) -> list[dict[str, Any]]:
    """The per-layer rows of a simulator or static report, whatever its nesting."""
    if not isinstance(report, Mapping):
        return []
    rows = report.get("layers")
    if isinstance(rows, Mapping):
        rows = [dict(v, name=k) if isinstance(v, Mapping) else {"name": k} for k, v in
                rows.items()]
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _layer_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    cycles = _num(entry, "cycles", "total_cycles")
    if cycles is None and _num(entry, "start") is not None and _num(entry, "end") is not None:
        cycles = entry["end"] - entry["start"]
    return {
        "name": str(entry.get("name", entry.get("layer", "?"))),
        "kind": str(entry.get("kind", entry.get("type", ""))),
        "cycles": cycles,
        "traffic_roofline_cycles": _num(entry, "traffic_roofline_cycles", "roofline_cycles"),
        "macs": _num(entry, "macs", "macs_fp16"),
        "ocm_bytes": _num(entry, "ocm_bytes", "ocm_used", "ocm"),
        "dma_in_bytes": _num(entry, "dma_in_bytes", "dram_read_bytes", "dma_in"),
        "dma_out_bytes": _num(entry, "dma_out_bytes", "dram_write_bytes", "dma_out"),
        "utilisation": _num(entry, "utilisation", "utilization", "matrix_utilisation"),
    }


def _static_for(static: Any, symbol: str) -> Any:
    if not isinstance(static, Mapping):
        return None
    for key in ("subgraphs", "steps", "models"):
        sub = static.get(key)
        if isinstance(sub, Mapping) and symbol in sub:
            return sub[symbol]
        if isinstance(sub, list):
            for entry in sub:
                if isinstance(entry, Mapping) and symbol in (entry.get("symbol"),
                                                             entry.get("name")):
                    return entry
    return static.get(symbol)


def build_report(build_dir: str | Path) -> dict[str, Any]:
    """All the figures of `mrvl report` as a JSON-ready dict."""
    from mrvl.sim.runtime import RUN_REPORT, load_manifest, report_cycles

    manifest = load_manifest(build_dir)
    root = manifest.root
    offload = _read_json(root / OFFLOAD) or {}
    static = _read_json(root / STATIC)
    run = _read_json(root / RUN_REPORT)
    run_steps = {}
    if isinstance(run, Mapping):
        run_steps = {s.get("symbol"): s for s in run.get("steps", []) if isinstance(s, Mapping)}
    steps = []
    for step in manifest.steps:
        entry: dict[str, Any] = {"symbol": step.symbol, "kind": step.kind,
                                 "inputs": list(step.inputs), "outputs": list(step.outputs)}
        recorded = run_steps.get(step.symbol)
        if recorded is not None:
            entry["wall_s"] = recorded.get("wall_s")
        if step.kind == "accelerator":
            entry["layers"] = step.info.get("layers")
            entry["macs"] = step.info.get("macs")
            sim_report = recorded.get("report") if recorded is not None else None
            static_sub = _static_for(static, step.symbol)
            if sim_report:
                entry["source"] = "simulated run"
                entry["cycles"] = report_cycles(sim_report)
                entry["macs"] = sim_report.get("macs", entry["macs"])
                rows = _layers(sim_report)
            else:
                entry["source"] = "static estimate"
                entry["cycles"] = (_num(static_sub, "traffic_roofline_cycles", "roofline_cycles",
                                        "cycles", "total_cycles")
                                   if isinstance(static_sub, Mapping) else None)
                rows = _layers(static_sub)
            static_rows = {r["name"]: r for r in map(_layer_row, _layers(static_sub))}
            merged = []
            for row in map(_layer_row, rows):
                extra = static_rows.get(row["name"], {})
                row = {k: row[k] if row[k] not in (None, "") else extra.get(k) for k in row}
                if not sim_report and row["cycles"] is None:
                    # the static estimate: the roofline of the program's own traffic
                    row["cycles"] = row["traffic_roofline_cycles"]
                merged.append(row)
            entry["layer_rows"] = merged
            # OCM: the allocator's figure (static) first; the rest: the run's first.
            _add_bound(entry, step, sim_report)
            for keys, sources in ((("ocm_bytes", "ocm_percent"), (static_sub, sim_report)),
                                  (("dma_in_bytes", "dma_out_bytes", "traffic_roofline_cycles",
                                    "time_ms", "peak_mac_fraction", "bound_cycles",
                                    "efficiency", "machine"), (sim_report, static_sub))):
                for source in sources:
                    if not isinstance(source, Mapping):
                        continue
                    for key in keys:
                        if key in source and key not in entry:
                            entry[key] = source[key]
        steps.append(entry)
    share = offload.get("accelerator_mac_share")
    machine, machine_source = _machine(run_steps, manifest.options)
    return {
        **_totals(steps, run is not None, share),
        "build": str(root),
        "options": manifest.options,
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype}
                   for s in manifest.inputs],
        "outputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype}
                    for s in manifest.outputs],
        "steps": steps,
        "accelerator_mac_share": share,
        "macs_total": offload.get("macs_total"),
        "cpu_nodes": offload.get("cpu_nodes", []),
        "recorded_run": run is not None,
        "crossings": offload.get("crossings"),
        **_cpu_time_share(steps, run is not None, offload),
        "machine": machine,
        "machine_source": machine_source,
    }


def _cpu_time_share(steps: list[dict[str, Any]], recorded: bool,
                    offload: Mapping[str, Any]) -> dict[str, Any]:
    """`cpu_time_share` (0..1) and `cpu_time_source`: measured from the recorded run when
    every step has its time, else the offload report's estimate (None without one)."""
    if recorded:
        cpu = [s.get("wall_s") for s in steps if s["kind"] != "accelerator"]
        accel = [s.get("time_ms") for s in steps if s["kind"] == "accelerator"]
        if all(isinstance(v, int | float) for v in (*cpu, *accel)):
            cpu_s, accel_s = sum(cpu), sum(accel) / 1000.0  # type: ignore[arg-type]
            share = cpu_s / (cpu_s + accel_s) if cpu_s + accel_s > 0 else 0.0
            return {"cpu_time_share": share, "cpu_time_source": "measured",
                    "cpu_time_s": cpu_s, "accelerator_time_s": accel_s}
    share = offload.get("cpu_time_share")
    if not isinstance(share, int | float):
        return {"cpu_time_share": None, "cpu_time_source": None}
    estimate = offload.get("time_estimate") or {}
    return {"cpu_time_share": share, "cpu_time_source": "estimated",
            "cpu_time_s": estimate.get("cpu_s"),
            "accelerator_time_s": estimate.get("accelerator_s")}


def _add_bound(entry: dict[str, Any], step: Any, sim_report: Any) -> None:
    """The step's program-independent bound (`mrvl.sim.bound`): the recorded run's when there
    is one (it used the run's machine), else computed from the binary on its machine."""
    if isinstance(sim_report, Mapping) and "bound_cycles" in sim_report:
        return  # copied from the run with the other figures
    from mrvl.mlip_binary import ModelBinary
    from mrvl.sim import bound

    path = step.files["binary"]
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MrvlError(f"{path}: cannot read it: {error}") from None
    binary = ModelBinary.from_bytes(data, source=str(path), decode_code=False)
    machine = bound.machine_for(binary)
    entry["bound_cycles"] = bound.independent_bound(binary, machine,
                                                    bound.int8_layers(data)).cycles
    entry["machine"] = machine.to_dict()


def _totals(steps: list[dict[str, Any]], recorded: bool, share: Any) -> dict[str, Any]:
    """Whole-build figures summed over the accelerator steps (the recorded run's when there
    is one): cycles, latency, DMA bytes, MACs, the bound and its efficiency, the offload
    share and the machine description used."""
    accel = [s for s in steps if s["kind"] == "accelerator"]
    cycles = sum(s.get("cycles") or 0 for s in accel)
    bound_cycles = sum(s.get("bound_cycles") or 0 for s in accel)
    machine = next((s["machine"] for s in accel if s.get("machine")), None)
    latency = None
    if recorded and all(s.get("time_ms") is not None for s in accel):
        latency = sum(s["time_ms"] for s in accel)
    elif machine is not None:
        latency = cycles / (float(machine["clock_mhz"]) * 1000.0)

    def total(key: str) -> int | None:
        values = [s.get(key) for s in accel]
        return None if any(v is None for v in values) else sum(values)

    return {
        "total_cycles": cycles,
        "latency_ms": latency,
        "dma_in_bytes": total("dma_in_bytes"),
        "dma_out_bytes": total("dma_out_bytes"),
        "macs": total("macs"),
        "bound_cycles": bound_cycles,
        "efficiency": bound_cycles / cycles if recorded and cycles else None,
        "offload_mac_share": share,
        "machine": machine,
    }
def _machine(run_steps: Mapping[str, Any], options: Mapping[str, Any]
             ) -> tuple[dict[str, Any] | None, str | None]:
    """The machine the figures are for: the recorded run's (what the simulator timed
    with), else the manifest's (what the build was compiled for), else None."""
    for recorded in run_steps.values():
        report = recorded.get("report")
        if isinstance(report, Mapping) and isinstance(report.get("machine"), Mapping):
            return dict(report["machine"]), "recorded run"
    if isinstance(options.get("machine"), Mapping):
        return dict(options["machine"]), "manifest"
    return None, None


def _machine_line(machine: Mapping[str, Any]) -> str:
    from mrvl.machine import Machine, format_machine

    try:
        return format_machine(Machine.from_dict(dict(machine)))
    except (MrvlError, TypeError):
        return f"machine: {dict(machine)}"


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}{unit}"
    return f"{int(value):,}{unit}"


def format_run_layers(report: Mapping[str, Any]) -> str:
    """A per-layer table of one device report."""
    rows = [_layer_row(r) for r in _layers(report)]
    lines = [f"total cycles: {_fmt(_num(report, 'total_cycles', 'cycles'))}"]
    lines.append(f"{'layer':<28} {'cycles':>12} {'MACs':>14} {'DMA in':>12} {'DMA out':>12}")
    for row in rows:
        lines.append(f"{row['name'][:28]:<28} {_fmt(row['cycles']):>12} {_fmt(row['macs']):>14} "
                     f"{_fmt(row['dma_in_bytes']):>12} {_fmt(row['dma_out_bytes']):>12}")
    return "\n".join(lines)


def format_build_report(data: Mapping[str, Any]) -> str:
    """The text `mrvl report` prints."""
    opts = data.get("options", {})
    lines = [f"build {data['build']}: num_tiles {opts.get('num_tiles', '-')}, "
             f"quantize {opts.get('quantize', '-')}"]
    ins = ", ".join(f"{t['name']} {t['dtype']} {t['shape']}" for t in data["inputs"])
    outs = ", ".join(f"{t['name']} {t['dtype']} {t['shape']}" for t in data["outputs"])
    lines.append(f"inputs: {ins}; outputs: {outs}")
    if data.get("machine"):
        lines.append(f"{_machine_line(data['machine'])} (from the {data['machine_source']})")
    share = data.get("accelerator_mac_share")
    if share is not None:
        lines.append(f"offload: {100 * share:.2f}% of {_fmt(data.get('macs_total'))} MACs on "
                     "the accelerator")
    crossed = data.get("crossings")
    if isinstance(crossed, Mapping):
        lines.append(f"crossings: {crossed.get('count')} tensor(s), "
                     f"{_fmt(crossed.get('bytes'))} bytes between accelerator and CPU, "
                     f"{crossed.get('switches')} switch(es)")
    if data.get("cpu_time_share") is not None:
        how = ("measured: CPU steps' onnxruntime wall time on this host, accelerator steps' "
               "simulated time" if data["cpu_time_source"] == "measured" else
               "estimated from MACs and elements, see offload.json's time_estimate")
        lines.append(f"CPU share of run time: {100 * data['cpu_time_share']:.2f}% "
                     f"(CPU {1e3 * (data.get('cpu_time_s') or 0):.3f} ms, accelerator "
                     f"{1e3 * (data.get('accelerator_time_s') or 0):.3f} ms; {how})")
    lines.append("partition (execution order):")
    for step in data["steps"]:
        io = f"({', '.join(step['inputs'])}) -> ({', '.join(step['outputs'])})"
        if step["kind"] == "accelerator":
            lines.append(f"  accelerator @{step['symbol']} {io}: {_fmt(step.get('layers'))} "
                         f"layers, {_fmt(step.get('macs'))} MACs")
        else:
            lines.append(f"  cpu         @{step['symbol']} {io}")
    cpu_nodes = data.get("cpu_nodes") or []
    if cpu_nodes:
        lines.append(f"nodes on the CPU ({len(cpu_nodes)}):")
        for node in cpu_nodes:
            lines.append(f"  @{node.get('subgraph')}: {node.get('node')} ({node.get('op')}): "
                         f"{node.get('reason')}")
    for step in data["steps"]:
        if step["kind"] != "accelerator":
            continue
        timing = ""
        if step.get("time_ms") is not None:
            timing = f", {step['time_ms']:.3f} ms"
        if step.get("peak_mac_fraction") is not None:
            timing += f", {100 * step['peak_mac_fraction']:.1f}% of peak MAC throughput"
        lines.append(f"@{step['symbol']}: {_fmt(step.get('cycles'))} cycles{timing} "
                     f"({step.get('source')})")
        if step.get("bound_cycles") is not None:
            line = f"  bound {_fmt(step['bound_cycles'])} cycles (program-independent)"
            if step.get("efficiency") is not None:
                line += f", efficiency {100 * step['efficiency']:.1f}% (bound / cycles)"
            if step.get("traffic_roofline_cycles"):
                line += (f"; roofline of its own traffic "
                         f"{_fmt(step['traffic_roofline_cycles'])} cycles")
            lines.append(line)
        ocm = step.get("ocm_bytes")
        if ocm is not None:
            pct = step.get("ocm_percent")
            lines.append(f"  OCM {_fmt(ocm)} bytes" + (f" ({pct:.1f}%)" if pct is not None
                                                       else ""))
        if step.get("dma_in_bytes") is not None:
            lines.append(f"  DMA in {_fmt(step.get('dma_in_bytes'))} bytes, out "
                         f"{_fmt(step.get('dma_out_bytes'))} bytes")
        lines.append(f"  {'layer':<26} {'kind':<16} {'cycles':>11} {'own roof':>11} "
                     f"{'MACs':>14} {'OCM':>10} {'DMA in':>11} {'DMA out':>11}")
        for row in step.get("layer_rows", []):
            lines.append(
                f"  {row['name'][:26]:<26} {str(row.get('kind') or '')[:16]:<16} "
                f"{_fmt(row['cycles']):>11} {_fmt(row['traffic_roofline_cycles']):>11} "
                f"{_fmt(row['macs']):>14} {_fmt(row['ocm_bytes']):>10} "
                f"{_fmt(row['dma_in_bytes']):>11} {_fmt(row['dma_out_bytes']):>11}"
            )
    lines.append(_format_totals(data))
    if not data.get("recorded_run"):
        lines.append("(no recorded run: cycles are static estimates; `mrvl run` records one)")
    return "\n".join(lines)


def _format_totals(data: Mapping[str, Any]) -> str:
    """The whole-build line: cycles, latency, bound and efficiency."""
    text = f"total: {_fmt(data.get('total_cycles'))} cycles"
    if data.get("latency_ms") is not None:
        text += f" ({data['latency_ms']:.3f} ms)"
    text += f", bound {_fmt(data.get('bound_cycles'))} cycles"
    if data.get("efficiency") is not None:
        text += f", efficiency {100 * data['efficiency']:.1f}%"
    machine = data.get("machine")
    if isinstance(machine, Mapping):
        text += (f" on {machine.get('tiles')} tile(s) at {machine.get('clock_mhz')} MHz, "
                 f"{machine.get('dram_gbps'):g} GB/s DRAM")
    return text


def run(args: argparse.Namespace) -> int:
    data = build_report(args.build)
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True, default=str))
        return 0
    print(format_build_report(data))
    return 0
