"""The conv cost model: estimated cycles and DRAM bytes of a conv layer's blocks under a
tile split (used by mlip-tile-split to choose among the candidate splits).
"""

from __future__ import annotations

import math

from mrvl import mlip_isa as isa
from mrvl.lowering.mlip_conv_blocking import ConvGeom, _fits, _segments, conv_blocks, conv_config

OVERLAP_LOSS = 0.1
"""Share of the smaller of compute and DRAM time that `conv_estimate` adds to the larger:
the shared DRAM serves the tiles' transfers one after another, so they do not overlap the
compute perfectly. Fitted against the simulator on the conv layers of ResNet-50,
MobileNet v2 and the SSD detector at 8 tiles, over every candidate split."""


def conv_estimate(g: ConvGeom, work, config: tuple[int, int, int]) -> tuple[float, int]:
    """Estimated (cycles, DRAM bytes read) of a conv's blocks (`conv_blocks`) under the
    timing model of docs/isa.md section 4 with the default parameters of mrvl/mlip_isa.py:
    the largest of, per tile, the compute queue's busy cycles and the DMA queues' busy
    cycles (issue + latency + bytes / 32 per transfer), and the shared DRAM's (all
    tiles' bytes / 64); plus `OVERLAP_LOSS` of the smaller of compute and DRAM. A ranking
    heuristic for the tile split, not a bound."""
    tiles = len(work)
    compute = [0.0] * tiles
    dma_in = [0.0] * tiles
    dma_out = [0.0] * tiles
    total = stored = 0
    issue, latency = isa.DEFAULT_ISSUE_LATENCY, isa.DEFAULT_DMA_LATENCY
    per_dma = min(isa.DEFAULT_DMA_BYTES_PER_CYCLE, isa.DEFAULT_DRAM_BYTES_PER_CYCLE)
    wsize = g.kh * g.kw * g.cg * g.w_es + 4 * g.consts
    speed = 2 if g.es == 1 else 1
    icg = g.c // g.groups
    for blk in conv_blocks(g, work, config):
        t = blk.tile
        loads = [(blk.oc1 - blk.oc0) * wsize] if blk.load_w else []
        loads.append((blk.y1 - blk.y0) * (blk.x1 - blk.x0) * blk.icc * g.in_es)
        store = (blk.r1 - blk.r0) * (blk.c1 - blk.c0) * (blk.oc1 - blk.oc0) * g.out_es
        dma_in[t] += sum(issue + latency + b / per_dma for b in loads)
        dma_out[t] += issue + latency + store / per_dma
        total += sum(loads)
        stored += store
        count = blk.oc1 - blk.oc0
        gch, ocg = (1, count) if g.groups == 1 else (count // g.ocg, g.ocg)
        pixels = (blk.r1 - blk.r0) * (blk.c1 - blk.c0)
        if gch > 1 and icg == 1 and ocg == 1 and speed == 1:  # depthwise: vector engine
            compute[t] += (issue + isa.DEFAULT_VECTOR_LATENCY
                           + pixels * gch * g.kh * g.kw / isa.DEFAULT_VECTOR_LANES)
        else:
            compute[t] += issue + isa.DEFAULT_MATRIX_FILL + math.ceil(
                pixels * g.kh * g.kw * gch * math.ceil(icg / isa.DEFAULT_MATRIX_ROWS)
                * math.ceil(ocg / isa.DEFAULT_MATRIX_COLS) / speed)
    dram = (total + stored) / isa.DEFAULT_DRAM_BYTES_PER_CYCLE
    busy = max(max(c, i, o) for c, i, o in zip(compute, dma_in, dma_out, strict=True))
    return max(busy, dram) + OVERLAP_LOSS * min(max(compute), dram), total


def conv_cost(g: ConvGeom, kind: str, ranges, ocm_size: int, page_size: int
              ) -> tuple[float, int] | None:
    """Estimated (cycles, DRAM bytes read) of a conv under a tile split (`kind`, `ranges`
    as in mlip-tile-split), with the blocking `lower_conv2d` chooses for an OCM of
    `ocm_size` bytes in pages of `page_size`; None when its blocks do not fit."""
    work = _segments(kind, ranges, g.n, g.oh, g.o)

    def fits(buffers):
        return _fits(buffers, ocm_size, page_size)

    config = conv_config(g, work, fits)
    return None if config is None else conv_estimate(g, work, config)
