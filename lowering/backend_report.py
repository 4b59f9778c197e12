"""The backend's static report: per sub-graph and per layer, before any simulation.

For every layer: OCM bytes used on all its tiles (page-rounded buffers x tiles) and the
percentage of the model's OCM (`ocm_size` x tiles), DMA bytes DRAM -> OCM and OCM -> DRAM
(DRAM side, as the DMA engine moves them), MACs, and the roofline of the program's own
traffic in cycles (`traffic_roofline_cycles`; the program-independent bound is
`mrvl.sim.bound`'s),
`max(MACs / (tiles x MACs per cycle), DRAM bytes / DRAM bytes per cycle)` on the machine
the program was compiled for (`mlip_cost.roofline`; by default 256 fp16 or 512 int8 MACs
per cycle per tile, 64 DRAM bytes per cycle, docs/isa.md section 4). The sub-graph totals add the layers (layers run one after another, separated by
barriers, so the sum of the layer bounds is itself a bound).

Invariant: the simulator never reports fewer cycles for a layer or a model than this bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrvl.lowering.mlip_cost import roofline
from mrvl.lowering.mlip_emit import dma_bytes
from mrvl.mlip_plan import Program


def program_report(prog: Program) -> dict[str, Any]:
    """The static report of one compiled (allocated) program."""
    tiles = prog.num_tiles
    int8 = prog.quantize == "int8"
    capacity = prog.ocm_size * tiles
    layers = []
    for layer in prog.layers:
        dma_in = dma_out = 0
        for blk in layer.blocks:
            dma_in += sum(dma_bytes(i) for i in blk.loads)
            dma_out += sum(dma_bytes(i) for i in blk.stores)
        ocm = layer.ocm_bytes(prog.page_size) * tiles
        layers.append({
            "name": layer.name, "kind": layer.kind, "split": layer.split,
            "blocks": len(layer.blocks), "macs": layer.macs,
            "ocm_bytes": ocm, "ocm_percent": round(100.0 * ocm / capacity, 2),
            "dma_in_bytes": dma_in, "dma_out_bytes": dma_out,
            "traffic_roofline_cycles": roofline(layer.macs, dma_in + dma_out, tiles, int8,
                                                prog.machine),
        })
    ocm_used = (prog.ocm_end or 0) * tiles
    total_in = sum(row["dma_in_bytes"] for row in layers)
    total_out = sum(row["dma_out_bytes"] for row in layers)
    macs = sum(row["macs"] for row in layers)
    weights = sum(t.size_bytes for t in prog.tensors.values() if t.region == "weights")
    return {
        "symbol": prog.name, "num_tiles": tiles, "quantize": prog.quantize,
        "page_size": prog.page_size, "ocm_bytes": ocm_used,
        "ocm_percent": round(100.0 * ocm_used / capacity, 2),
        "weights_bytes": weights, "macs": macs,
        "dma_in_bytes": total_in, "dma_out_bytes": total_out,
        "traffic_roofline_cycles": sum(row["traffic_roofline_cycles"] for row in layers),
        "instructions": sum(len(s) for s in (prog.streams or {}).values()),
        "layers": layers,
    }


def format_report(report: dict[str, Any]) -> str:
    """A text table of one sub-graph's report."""
    lines = [
        f"{report['symbol']}: {report['num_tiles']} tile(s), {report['quantize']}, "
        f"{report['macs']:,} MACs, OCM {report['ocm_bytes']:,} B ({report['ocm_percent']}%), "
        f"DMA in {report['dma_in_bytes']:,} B / out {report['dma_out_bytes']:,} B, "
        f"own-traffic roofline {report['traffic_roofline_cycles']:,} cycles",
        f"  {'layer':<24} {'kind':<16} {'MACs':>14} {'OCM B':>10} {'OCM%':>6} "
        f"{'DMA in':>12} {'DMA out':>12} {'own roof':>10}",
    ]
    for row in report["layers"]:
        lines.append(
            f"  {row['name'][:24]:<24} {row['kind'][:16]:<16} {row['macs']:>14,} "
            f"{row['ocm_bytes']:>10,} {row['ocm_percent']:>6} {row['dma_in_bytes']:>12,} "
            f"{row['dma_out_bytes']:>12,} {row['traffic_roofline_cycles']:>10,}")
    return "\n".join(lines) + "\n"


def write_reports(reports: list[dict[str, Any]], path: str | Path) -> None:
    from mrvl.files import write_text

    write_text(path, json.dumps({"subgraphs": reports}, indent=1) + "\n", "static report")
