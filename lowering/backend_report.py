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

from mrvl.dialects.mlip import DmaOp, ModelOp
from mrvl.lowering.mlip_cost import roofline
from mrvl.lowering.mlip_emit import dma_bytes
from mrvl import mlip_isa as isa


def program_report(model: ModelOp) -> dict[str, Any]:
    """The static report of one compiled (allocated and scheduled) `mlip.model`, read from
    its ops: layers, buffers, DMA instructions and tensors."""
    tiles = model.num_tiles.value.data
    int8 = model.quantize.data == "int8"
    machine = model.machine_record()
    page = model.page_size.value.data
    capacity = model.ocm_size.value.data * tiles
    dma_in: dict[int, int] = {}
    dma_out: dict[int, int] = {}
    count = 0
    for op in model.instructions():
        count += 1
        if isinstance(op, DmaOp):
            target = dma_in if op.OPCODE == isa.Opcode.DMA_LOAD else dma_out
            index = op.properties["layer"].value.data  # type: ignore[union-attr]
            target[index] = target.get(index, 0) + dma_bytes(op)
    ocm_of: dict[int, int] = {}
    for buf in model.buffers():
        index = buf.layer.value.data
        size = -(-max(buf.size.value.data, 1) // page) * page * buf.slots.value.data
        ocm_of[index] = ocm_of.get(index, 0) + size
    layers = []
    for layer in model.layers():
        index = layer.index.value.data
        macs = layer.macs.value.data
        ocm = ocm_of.get(index, 0) * tiles
        moved_in, moved_out = dma_in.get(index, 0), dma_out.get(index, 0)
        layers.append({
            "name": layer.sym_name.data, "kind": layer.kind.data, "split": layer.split.data,
            "blocks": layer.blocks.value.data, "macs": macs,
            "ocm_bytes": ocm, "ocm_percent": round(100.0 * ocm / capacity, 2),
            "dma_in_bytes": moved_in, "dma_out_bytes": moved_out,
            "traffic_roofline_cycles": roofline(macs, moved_in + moved_out, tiles, int8,
                                                machine),
        })
    ocm_used = (0 if model.ocm_end is None else model.ocm_end.value.data) * tiles
    total_in = sum(row["dma_in_bytes"] for row in layers)
    total_out = sum(row["dma_out_bytes"] for row in layers)
    macs = sum(row["macs"] for row in layers)
    weights = sum(t.size_bytes for t in model.tensors().values() if t.region.data == "weights")
    return {
        "symbol": model.sym_name.data, "num_tiles": tiles, "quantize": model.quantize.data,
        "page_size": page, "ocm_bytes": ocm_used,
        "ocm_percent": round(100.0 * ocm_used / capacity, 2),
        "weights_bytes": weights, "macs": macs,
        "dma_in_bytes": total_in, "dma_out_bytes": total_out,
        "traffic_roofline_cycles": sum(row["traffic_roofline_cycles"] for row in layers),
        "instructions": count if model.scheduled else 0,
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
