"""The compiler's cost model: estimated cycles of mlip work on a given `Machine`.

Used to rank choices (`mrvl-tile-split`'s conv splits) and to state bounds (the static
report's roofline); never to decide results. Every machine figure comes from the `Machine`
(mrvl/machine.py, docs/isa.md section 4), the same record the backend writes into the model
binary and the simulator's timing model reads back, so the compiler estimates for the
machine it compiles for.

- `conv_estimate(g, work, config, machine)`: (cycles, DRAM bytes read) of a conv's blocks.
- `conv_cost(g, kind, ranges, machine)`: the same for a tile split, with the lowering's
  blocking for the machine's OCM; None when the blocks do not fit.
- `roofline(macs, dram_bytes, tiles, int8, machine)`: max(compute, DRAM) lower bound.
- `compute_cycles(op, machine)`: cycles of one compute instruction (mlip-dma-schedule's
  choice of where to share weights between tiles).
- `valued_dram_rate(machine)`: the DRAM rate at which the schedule's choices value a DRAM
  byte saved (`DRAM_VALUE_FLOOR_GBPS`).

Invariant: every machine figure comes from the `Machine` given; the module's own constants
are fitted estimates (below) and the schedule's valuation floor `DRAM_VALUE_FLOOR_GBPS`.
"""

from __future__ import annotations

import math

from mrvl.dialects.mlip import ConvOp, GemmOp, InstructionOp, PoolOp
from mrvl.lowering.mlip_conv_blocking import ConvGeom, _fits, _segments, conv_blocks, conv_config
from mrvl.machine import DEFAULT_MACHINE, Machine

OVERLAP_LOSS = 0.1
"""Share of the smaller of compute and DRAM time that `conv_estimate` adds to the larger:
the shared DRAM serves the tiles' transfers one after another, so they do not overlap the
compute perfectly. Fitted against the simulator on the conv layers of ResNet-50,
MobileNet v2 and the SSD detector at 8 tiles, over every candidate split."""


DRAM_VALUE_FLOOR_GBPS = 32.0
"""**Assumption** (a policy value, not a machine fact): a DRAM byte saved is worth at least
its time at this bandwidth, however fast the DRAM:
the DRAM is shared with the SoC's CPU cores, so bandwidth the accelerator leaves is not
wasted even where the accelerator's own schedule does not wait for it. Used where the
schedule trades DRAM bytes for cycles (`mlip-dma-schedule`'s weight broadcast "auto",
`mlip-residency`'s prefetch exchange); at or below this bandwidth it changes nothing.
(docs/backend.md, "DRAM bytes valued with a floor": ResNet-50 fp16 8 tiles at 64 GB/s
then meets issue 10's traffic targets.)"""


def valued_dram_rate(machine: Machine = DEFAULT_MACHINE) -> float:
    """Bytes per cycle at which a saved DRAM byte is valued: the machine's DRAM rate, at most
    `DRAM_VALUE_FLOOR_GBPS` at its clock (a byte is then worth 1 / rate cycles)."""
    floor = DRAM_VALUE_FLOOR_GBPS / (machine.clock_mhz / 1000.0)
    return min(machine.dram_bytes_per_cycle, floor)


def conv_estimate(g: ConvGeom, work, config: tuple[int, int, int],
                  machine: Machine = DEFAULT_MACHINE, input_on_chip: bool = False
                  ) -> tuple[float, int]:
    """Estimated (cycles, DRAM bytes read) of a conv's blocks (`conv_blocks`) under the
    timing model of docs/isa.md section 4 on `machine`: the largest of, per tile, the
    compute queue's busy cycles and the DMA queues' busy cycles (issue + latency + bytes /
    min(DMA, DRAM rate) per transfer), and the shared DRAM's (all tiles' bytes / DRAM
    rate); plus `OVERLAP_LOSS` of the smaller of compute and DRAM. A ranking heuristic for
    the tile split, not a bound. `input_on_chip`: the input stays in OCM (mlip-residency)
    and is read in place: no DMA, no DRAM bytes for it; each tile's band arrives over its
    link port instead (its bytes / `link_bytes_per_cycle`, overlapping the compute)."""
    m = machine
    tiles = len(work)
    compute = [0.0] * tiles
    dma_in = [0.0] * tiles
    dma_out = [0.0] * tiles
    link = [0.0] * tiles
    total = stored = 0
    issue, latency = m.issue_latency, m.dma_latency
    per_dma = min(m.dma_bytes_per_cycle, m.dram_bytes_per_cycle)
    wsize = g.kh * g.kw * g.cg * g.w_es + 4 * g.consts
    speed = m.int8_speedup if g.es == 1 else 1
    icg = g.c // g.groups
    for blk in conv_blocks(g, work, config):
        t = blk.tile
        loads = [(blk.oc1 - blk.oc0) * wsize] if blk.load_w else []
        box = (blk.y1 - blk.y0) * (blk.x1 - blk.x0) * blk.icc * g.in_es
        if input_on_chip:
            link[t] += box / m.link_bytes_per_cycle
        else:
            loads.append(box)
        store = (blk.r1 - blk.r0) * (blk.c1 - blk.c0) * (blk.oc1 - blk.oc0) * g.out_es
        dma_in[t] += sum(issue + latency + b / per_dma for b in loads)
        dma_out[t] += issue + latency + store / per_dma
        total += sum(loads)
        stored += store
        count = blk.oc1 - blk.oc0
        gch, ocg = (1, count) if g.groups == 1 else (count // g.ocg, g.ocg)
        pixels = (blk.r1 - blk.r0) * (blk.c1 - blk.c0)
        if gch > 1 and icg == 1 and ocg == 1 and g.es != 1:  # depthwise: vector engine
            compute[t] += (issue + m.vector_latency
                           + pixels * gch * g.kh * g.kw / m.vector_lanes)
        else:
            compute[t] += issue + m.matrix_fill + math.ceil(
                pixels * g.kh * g.kw * gch * math.ceil(icg / m.matrix_rows)
                * math.ceil(ocg / m.matrix_cols) / speed)
    dram = (total + stored) / m.dram_bytes_per_cycle
    busy = max(max(c, i, o, k) for c, i, o, k in zip(compute, dma_in, dma_out, link,
                                                       strict=True))
    return max(busy, dram) + OVERLAP_LOSS * min(max(compute), dram), total


def conv_cost(g: ConvGeom, kind: str, ranges, machine: Machine = DEFAULT_MACHINE,
              input_on_chip: bool = False) -> tuple[float, int] | None:
    """Estimated (cycles, DRAM bytes read) of a conv under a tile split (`kind`, `ranges`
    as in mrvl-tile-split), with the blocking `lower_conv2d` chooses for the machine's OCM
    (`ocm_bytes` in pages of `page_bytes`); None when its blocks do not fit."""
    work = _segments(kind, ranges, g.n, g.oh, g.o)

    def fits(buffers):
        return _fits(buffers, machine.ocm_bytes, machine.page_bytes)

    config = conv_config(g, work, fits)
    return None if config is None else conv_estimate(g, work, config, machine,
                                                     input_on_chip)


def roofline(macs: int, dram_bytes: int, tiles: int, int8: bool,
             machine: Machine = DEFAULT_MACHINE) -> int:
    """Lower bound in cycles: max(MACs / (tiles x MACs per cycle), DRAM bytes / DRAM rate),
    each rounded up (the simulator's report computes the same from its counters)."""
    compute = -(-macs // (tiles * machine.macs_per_cycle(int8)))
    memory = math.ceil(dram_bytes / machine.dram_bytes_per_cycle)
    return max(compute, memory)


def compute_cycles(op: InstructionOp, machine: Machine = DEFAULT_MACHINE) -> int:
    """Cycles of one compute-queue instruction under docs/isa.md section 4 (the timing the
    simulator applies; its own count is authoritative): CONV and GEMM on the matrix engine
    (fp16 depthwise CONV on the vector engine), POOL, ELTWISE and the vector ops by
    elements over the lanes; anything else its issue cycle."""
    m = machine

    def field(name: str) -> int:
        return op.properties[name].value.data  # type: ignore[union-attr]

    int8 = op.properties["src"].data in ("i8", "u8")  # type: ignore[union-attr]
    speed = m.int8_speedup if int8 else 1
    if isinstance(op, ConvOp):
        groups = field("groups")
        icg, ocg = field("ic") // groups, field("oc") // groups
        pixels = field("oh") * field("ow")
        taps = field("kh") * field("kw")
        if icg == 1 and ocg == 1 and groups > 1 and not int8:
            lanes = min(m.vector_lanes, m.matrix_rows * m.matrix_cols)
            return m.issue_latency + m.vector_latency + -(-pixels * groups * taps // lanes)
        passes = (pixels * taps * groups * -(-icg // m.matrix_rows)
                  * -(-ocg // m.matrix_cols))
        return m.issue_latency + m.matrix_fill + -(-passes // speed)
    if isinstance(op, GemmOp):
        passes = field("m") * -(-field("k") // m.matrix_rows) * -(-field("n") // m.matrix_cols)
        return m.issue_latency + m.matrix_fill + -(-passes // speed)
    if isinstance(op, PoolOp):
        taps = field("oh") * field("ow") * field("c") * field("kh") * field("kw")
        return m.issue_latency + m.vector_latency + -(-taps // m.vector_lanes)
    if "rows" in op.properties and "cols" in op.properties:
        return (m.issue_latency + m.vector_latency
                + -(-field("rows") * field("cols") // m.vector_lanes))
    return m.issue_latency
