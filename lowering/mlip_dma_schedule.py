"""`mlip-dma-schedule`: per-tile instruction streams with dependency tokens (double buffering).

Input: an `mlip.model` whose `mlip.layer`s hold per-tile `mlip.block`s (loads, computes,
stores; slot `i % 2` of every streamed buffer for block i) and no `mlip.section`. Output:
the same model with every instruction moved into one `mlip.section "main"` block, in
topological order (layer by layer, tile by tile, block by block; each op with its `tile`),
the layers left empty (the layer table), every dependency a `!mlip.token` edge from the op
that pushes it to the op that pops it, and one `mlip.barrier` per tile between consecutive
layers. A stream is the section's ops of one (tile, queue).

Protocol per tile and layer, block i of n (VTA-style, docs/isa.md section 2):

- loads of block i: the first pops a token from COMPUTE (`pop_next`) when i >= 2 (block
  i - 2 is done with the slot), or when the tile's previous layer ended with a barrier; the
  last pushes one to COMPUTE (`push_next`);
- computes of block i: the first pops the loads' token (`pop_prev`) and, when i >= 2, the
  store of block i - 2's token (`pop_next`, the output slot is free); the last pushes to
  DMA_OUT (`push_next`) and, when i + 2 < n, to DMA_IN (`push_prev`, the input slot is free);
- stores of block i: the first pops COMPUTE's token (`pop_prev`); the last pushes one back
  (`push_prev`) when i + 2 < n, or, for the layer's last block, to the barrier;
- between layers every tile runs BARRIER (compute queue) that pops the last store's token and
  pushes one to DMA_IN, so the next layer's first load waits for every tile's stores; a tile
  with no block in a layer relays that token with a NOP.

Each queue-to-queue channel is a FIFO, so a pop takes the oldest token pushed to it: the
pass pairs them that way, and the section order (each block's loads, computes, stores) puts
every producer before its consumer.

So the loads of block i + 1 overlap the compute of block i, and the stores of block i
overlap the compute of block i + 1, and every read-after-write, write-after-read and
write-after-write on OCM and DRAM is covered by a token or a barrier.

Weight prefetch (`prefetch=True`, the default; `prefetch_loads`): on every tile, the loads of
the next layer's first block that fill a weights-kind buffer (weights, bias, requantisation
scales) which no later block of the tile loads again (resident weights; chunked weights
stream as before), and whose slots `mlip-ocm-alloc` placed apart from every buffer live at
the current layer (its own and the resident buffers of mlip-residency that span it), move to the tile's DMA_IN stream right after the current layer's own loads,
before the load that pops the barrier's token. They pop and push no token. Each buffer is
decided on its own; a first block is never left without a load of its own (that load pops
the barrier and pushes to compute): when every load of the block moves (the resident
schedule removed its activation load), a DMA_IN NOP stays in their place. Why every hazard stays covered (docs/isa.md section 2):

- read-after-write: the next layer reads the weights only in its computes; the first of them
  pops the token pushed by the last remaining load of its first block, which follows the
  hoisted loads in DMA_IN program order; the DRAM side reads the read-only weights region;
- write-after-read and write-after-write: the hoisted loads write OCM disjoint from every
  buffer live at the current layer (resident buffers included), so the last reads and writes of those granules belong to
  earlier layers; they happen-before the barrier that ends the layer before the current
  one, whose token the tile's first DMA_IN op of the current layer pops (its first load, or
  the relaying NOP of a tile without blocks), and that op precedes the hoisted loads in DMA_IN
  program order (before the first barrier only earlier sections and inferences touched the
  OCM, and they happen-before). The next layer's own accesses to its weights are ordered
  after the loads as above.

Partial prefetch (in `prefetch_loads`, `_free_piece`): a plain 1-D weight load of the first
block whose slots are not disjoint from the buffers live at the current layer, but of which
a run of bytes (the longest, at least MIN_HEAD_BYTES, cut on OCM granules: its head, its
tail or a middle part) is, is split around that run: the free piece is hoisted as above,
the bytes before and after it stay in the block (after the barrier). The piece's hazards
are those of a hoisted load (the bytes it writes are disjoint from every buffer live at the
layer); the rest are ordinary loads of the block, and the first compute of the next layer
pops the token of the block's last load, which follows all of them in DMA_IN program order.

Across a layer without weights (`through`): when the next layer L+1 has no weights-kind
buffer (an Add, a pool, a copy), the boundary after L prefetches the weights of L+2
instead, under the same rules with the buffers live at L or L+1 (and the held ranges over
L .. L+1) as the busy set; the boundary after L+1 then prefetches what is left of L+2 as
usual. Hazards: the loads write OCM disjoint from every buffer live at L and L+1, so the
last earlier accesses of those bytes belong to layers before L and happen-before the
barrier ending L - 1, which precedes the loads on the tile's DMA_IN queue; no other
prefetch writes them meanwhile (the boundary after L+1 targets L+2 itself); L+2 reads them
only in its computes, whose first pops the token of the last load of its first block,
which follows them in DMA_IN program order. When broadcast, the copies precede the barrier
ending L (as at any boundary), so they also precede L+2's reads on every tile.

Long-range prefetch (`long_range_loads`, with prefetch): `mlip-ocm-alloc` plans, for some
layers j, an earlier layer s <= j - 2 with unused DRAM time (`plan_prefetch`, its rule 4)
and places j's weights in OCM free over layers s .. j. On every tile, each load of j's
first block that fills a weights-kind buffer no later block of the tile loads again, and
whose slots are disjoint from every buffer live at any layer s .. j - 1 (resident ones
included) and from the ranges held by the long-range loads decided before it (`Held`:
each holds its slots over the layers s' .. j' - 1 between its load and its layer), moves
to the tile's DMA_IN stream during layer s, spread over s's blocks (after each block's
loads, about equal bytes per block; after the relaying NOP on a tile without blocks at s),
popping and pushing no token. The next-layer prefetch of every later boundary also keeps
apart from the held ranges (`prefetch_loads(held=...)`). Hazards:

- read-after-write: layer j reads the weights only in its computes; the first of them pops
  the token of the last load of j's first block, which follows the long-range load in the
  tile's DMA_IN program order (a DMA_IN NOP stays in the block when every load moved);
- write-after-read and write-after-write: the long-range load writes OCM that no buffer
  live at s .. j - 1 uses, and no other prefetched load writes while it is held (the held
  ranges are checked, and the next-layer prefetch of a boundary inside s .. j checks them
  too), so the last earlier accesses of those bytes belong to layers before s; they
  happen-before the barrier ending layer s - 1, whose token the tile's first DMA_IN op of
  layer s pops, and that op precedes the long-range load in DMA_IN program order (before
  the first barrier only earlier sections and inferences touched the OCM). Layer j's own
  later accesses follow its reads (its blocks' tokens). The DRAM side is read-only weights.
- barriers: the load carries no token and no barrier waits for it; only layer j's first
  compute does (through the DMA_IN order above), so the prefetch is never serialised
  behind the barriers between s and j.

Long-range loads are not shared between tiles: `mlip-ocm-alloc` plans them only for layers
whose tiles load different weights (a channel split); a row split keeps the next-layer
prefetch, which `broadcast` can share.

Weight broadcast (`broadcast`, with prefetch; "auto" by default, "all", "none"): hoisted
loads that several tiles make alike (the same DRAM bytes into the same buffer range; a row
split or a grid's row bands) are loaded once (`shared_groups`, `broadcast_loads`): cut
into pieces on 16-byte granules, each piece loaded by one of the tiles and sent with one
TILE_COPY to the others. Per tile with pieces: the piece loads follow the tile's other
hoisted loads on DMA_IN, the last pushes to a compute NOP after the layer's last compute
(the NOP also pops the layer's last store's token), the NOP pushes to the tile's copies on
DMA_OUT (after its stores), the last copy pushes to the BARRIER. Hazards: a copy reads
the piece its own tile loaded (ordered by the load -> NOP -> copy tokens) and writes the
same slots on other tiles, which the placement keeps apart from every buffer live at the
current layer, so their last accesses happened before the barrier that ended the layer
before (the copy follows that barrier on its tile: DMA_IN pop -> piece load -> NOP ->
copy); the next layer's reads of them follow the barrier that the copies precede. "auto"
shares only where that saves cycles (`sharing_pays`, `least_saved`): the copies and
their latencies come before the barrier, while unshared prefetch loads delay nothing but
the next layer's first compute; loads prefetched across a layer without weights are
shared whenever alike (unshared, every tile would read them from DRAM, where the boundary
after that layer, which computes next to nothing, would have shared them). DRAM bytes are
valued with a floor (`mlip_cost.valued_dram_rate`): above 32 GB/s a byte saved also counts
its time at 32 GB/s beyond its time at the machine's rate, so "auto" shares more there
(fewer DRAM bytes for at most about 1 % more cycles, docs/backend.md).

Rule (per boundary and tile): prefetch whenever the placement allows it. The hoisted loads
queue behind every load of the current layer on their tile, so they never delay its input
loads there; they can take the shared DRAM ahead of the current layer's stores and of other
tiles' loads, by bytes the next layer reads right after the barrier anyway. Measured on
every in-repo model (1, 2, 4, 8 tiles, fp16 and int8, 16, 32 and 64 GB/s), no model gets
slower.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass

from mrvl.dialects.mlip import (
    DTYPE_BY_NAME,
    BarrierOp,
    BlockOp,
    BufferOp,
    DmaLoadOp,
    DmaOp,
    InstructionOp,
    LayerOp,
    ModelOp,
    NopOp,
    SectionOp,
    TileCopyOp,
    i64_attr,
    str_attr,
)
from mrvl.errors import CompileError
from mrvl.lowering.mlip_cost import compute_cycles, valued_dram_rate
from mrvl.lowering.mlip_ocm_alloc import plan_prefetch
from mrvl.mlip_isa import DTYPE_SIZE, OCM_GRANULE, Queue


class _Streams:
    """The section block being built and the pending tokens of every channel."""

    def __init__(self) -> None:
        self.block = Block()
        self.pending: dict[tuple[int, int, int], deque[SSAValue]] = {}

    def emit(self, op: InstructionOp, tile: int, pop_prev: bool = False,
             pop_next: bool = False, push_prev: bool = False, push_next: bool = False) -> None:
        queue = int(op.queue())
        prev_token = self._pop(tile, queue - 1, queue) if pop_prev else None
        next_token = self._pop(tile, queue + 1, queue) if pop_next else None
        parent = op.parent_block()
        if parent is not None:
            parent.detach_op(op)
        op.set_tokens(tile, prev_token, next_token, push_prev, push_next)
        self.block.add_op(op)
        if push_prev:
            self.pending.setdefault((tile, queue, queue - 1), deque()).append(op.results[0])
        if push_next:
            self.pending.setdefault((tile, queue, queue + 1), deque()).append(op.results[-1])

    def _pop(self, tile: int, source: int, target: int) -> SSAValue:
        fifo = self.pending.get((tile, source, target))
        if not fifo:
            raise AssertionError(f"tile {tile}: no token from queue {source} to {target}")
        return fifo.popleft()


def _slot_ranges(buf: BufferOp, page: int) -> list[tuple[int, int]]:
    size = (max(buf.size.value.data, 1) + page - 1) // page * page
    return [(addr, addr + size) for addr in buf.addresses()]


def _weights_buffer(op: DmaLoadOp) -> BufferOp | None:
    owner = op.ocm_addr.owner
    return owner if isinstance(owner, BufferOp) and owner.kind.data == "weights" else None


def prefetch_loads(model: ModelOp, previous: LayerOp, mine: list[BlockOp],
                   held: list[tuple[int, int, int, int]] = (), split: bool = True,
                   through: LayerOp | None = None) -> list[DmaLoadOp]:
    """The loads of a tile's first block of a layer that may run during the layer before
    (`previous`): loads of weights-kind buffers that no later block of the tile loads
    again, whose slots are disjoint from every buffer live at `previous` (its own and the
    resident buffers of mlip-residency whose live layers include it; module docstring);
    with `through` (a later layer, the one without weights before `mine`'s layer), every
    buffer live at any layer from `previous` to `through`. A load with a free piece only
    is split (`_free_piece`). When they are all of the first block's loads, a DMA_IN NOP
    is added to the block so it keeps a load of its own that pops the barrier's token."""
    if not mine:
        return []
    page = model.page_size.value.data
    reloaded = {_weights_buffer(op) for blk in mine[1:] for op in blk.instructions()
                if isinstance(op, DmaLoadOp)}
    index = previous.index.value.data
    last = index if through is None else through.index.value.data
    live = [buf for buf in model.buffers()
            if buf.live_layers()[0] <= last and index <= buf.live_layers()[1]]
    busy = [r for buf in live for r in _slot_ranges(buf, page)]
    busy += [(lo, hi) for lo, hi, start, end in held if start <= last and index <= end]
    first = [op for op in mine[0].instructions() if op.queue() == Queue.DMA_IN]
    hoisted = []
    whole = 0
    for op in first:
        buf = _weights_buffer(op) if isinstance(op, DmaLoadOp) else None
        if buf is None or buf in reloaded or not buf.addresses():
            continue
        if all(end <= lo or start >= hi for start, end in _slot_ranges(buf, page)
               for lo, hi in busy):
            hoisted.append(op)
            whole += 1
        elif split:
            head = _free_piece(op, buf, busy)
            if head is not None:
                hoisted.append(head)
    if hoisted and whole == len(first):
        # every load of the block is hoisted (the resident schedule removed its activation
        # load): a DMA_IN NOP stays behind to pop the barrier's token for the block
        layer = mine[0].instructions()[0].layer.value.data
        nop = NopOp.build({**_header(layer), "queue": str_attr("dma_in")}, {})
        block = mine[0].body.block
        block.insert_op_before(nop, block.first_op)
    return hoisted


Held = list[tuple[int, int, int, int]]
"""OCM ranges that long-range prefetched weights hold: (start, end, first layer, last
layer) of the layers (before their own) during which they are loaded and kept."""


def long_range_loads(model: ModelOp, tiles: range) -> tuple[dict[tuple[int, int], list[DmaLoadOp]], Held]:
    """The long-range prefetch: {(layer index L, tile): weight loads of later layers j >=
    L + 2 to run while L computes}, and the OCM ranges they hold. The layers and L come
    from `mlip-ocm-alloc`'s plan (`plan_prefetch`); a load qualifies as in
    `prefetch_loads` (a weights-kind buffer of the tile's first block of j that no later
    block of the tile loads again), and only when its slots are disjoint from every buffer
    live at any layer L .. j - 1 and from the ranges held by the long-range loads decided
    before it (module docstring). The loads are detached from their blocks; a first block
    left without a DMA_IN op gets a DMA_IN NOP (it pops the barrier's token)."""
    page = model.page_size.value.data
    _, _, starts = plan_prefetch(model, True)
    by_index = {layer.index.value.data: layer for layer in model.layers()}
    buffers = model.buffers()
    held: Held = []
    out: dict[tuple[int, int], list[DmaLoadOp]] = {}
    for index in sorted(starts):
        source = starts[index]
        layer = by_index[index]
        busy = [r for buf in buffers
                if buf.live_layers()[0] <= index - 1 and buf.live_layers()[1] >= source
                for r in _slot_ranges(buf, page)]
        busy += [(lo, hi) for lo, hi, first, last in held
                 if first <= index - 1 and last >= source]
        for tile in tiles:
            mine = [b for b in layer.block_ops() if b.tile.value.data == tile]
            if not mine:
                continue
            reloaded = {_weights_buffer(op) for blk in mine[1:] for op in blk.instructions()
                        if isinstance(op, DmaLoadOp)}
            first = [op for op in mine[0].instructions() if op.queue() == Queue.DMA_IN]
            taken = []
            for op in first:
                buf = _weights_buffer(op) if isinstance(op, DmaLoadOp) else None
                if buf is None or buf in reloaded or not buf.addresses():
                    continue
                ranges = _slot_ranges(buf, page)
                if all(end <= lo or start >= hi for start, end in ranges for lo, hi in busy):
                    taken.append(op)
                    held.extend((start, end, source, index - 1) for start, end in ranges)
            if not taken:
                continue
            if len(taken) == len(first):
                nop = NopOp.build({**_header(index), "queue": str_attr("dma_in")}, {})
                block = mine[0].body.block
                block.insert_op_before(nop, block.first_op)
            for op in taken:
                op.detach()
            out.setdefault((source, tile), []).extend(taken)
    return out, held


def _spread(loads: list[DmaLoadOp], blocks: int) -> list[list[DmaLoadOp]]:
    """`loads` cut into `blocks` runs of about equal DRAM bytes, in order (the runs go after
    each block's loads; an empty list of runs when there are no blocks)."""
    if blocks == 0:
        return []
    total = sum(dma_bytes(op) for op in loads)
    runs: list[list[DmaLoadOp]] = [[] for _ in range(blocks)]
    done = 0
    for op in loads:
        i = min(blocks - 1, int(done * blocks // total)) if total else blocks - 1
        runs[i].append(op)
        done += dma_bytes(op)
    return runs


MIN_HEAD_BYTES = 16384
"""Partial prefetch: the least free piece of a weight load worth loading before the
barrier."""


def _free_runs(start: int, end: int, busy: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The maximal sub-ranges of [start, end) that no range of `busy` overlaps."""
    runs, at = [], start
    for lo, hi in sorted(r for r in busy if r[0] < end and r[1] > start):
        if lo > at:
            runs.append((at, lo))
        at = max(at, hi)
    if at < end:
        runs.append((at, end))
    return runs


def _free_piece(op: DmaLoadOp, buf: BufferOp, busy: list[tuple[int, int]]
                ) -> DmaLoadOp | None:
    """Partial prefetch: when a run of a plain 1-D weight load's bytes (`_load_key`) is free
    of `busy` (the longest such run, at least MIN_HEAD_BYTES, cut on OCM granules), split
    the load around it: the free piece is returned (to be hoisted), the bytes before and
    after it replace `op` in its block."""
    if _load_key(op) is None:
        return None
    esize = DTYPE_SIZE[DTYPE_BY_NAME[op.properties["src"].data]]  # type: ignore[union-attr]
    count = _ival(op, "dim3")
    start = buf.addresses()[_ival(op, "ocm_slot")] + _ival(op, "ocm_offset")
    end = start + count * esize
    runs = _free_runs(start, end, busy)
    if not runs or runs == [(start, end)]:
        return None
    lo, hi = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
    first = -(-(lo - start) // OCM_GRANULE) * OCM_GRANULE // esize
    last = count if hi == end else (hi - start) // OCM_GRANULE * OCM_GRANULE // esize
    if (last - first) * esize < MIN_HEAD_BYTES:
        return None
    block = op.parent_block()
    assert block is not None
    for a, b in ((0, first), (last, count)):
        if b > a:
            block.insert_op_before(_piece_load(op, a, b, esize), op)
    piece = _piece_load(op, first, last, esize)
    op.detach()
    op.erase()
    return piece


MIN_PIECE_BYTES = 4096
"""Weight broadcast: a shared load is cut into pieces of at least this many bytes (fewer
pieces than tiles when it is small), so that a small load (a bias) is not paid for with
one DMA latency per tile."""


@dataclass
class Broadcast:
    """The weight loads of one boundary that several tiles share: per tile, the pieces it
    loads from DRAM (`loads`) and sends to the other tiles that need them (`copies`)."""

    loads: dict[int, list[DmaLoadOp]]
    copies: dict[int, list[TileCopyOp]]


def _ival(op: InstructionOp, name: str) -> int:
    return op.properties[name].value.data  # type: ignore[union-attr]


def _load_key(op: DmaLoadOp) -> tuple | None:
    """What makes two tiles' loads the same bytes into the same OCM range; None for a load
    that is not a plain 1-D bit copy starting on an OCM granule (it is not shared)."""
    props = op.properties
    if (props["src"] != props["dst"] or "scale_flag" in props
            or any(_ival(op, f"dim{k}") != 1 for k in range(3))
            or _ival(op, "dram_stride3") != 1 or _ival(op, "ocm_stride3") != 1
            or _ival(op, "ocm_offset") % OCM_GRANULE != 0):
        return None
    return (props["dram"], _ival(op, "dram_offset"), _ival(op, "dim3"), op.ocm_addr,
            _ival(op, "ocm_slot"), _ival(op, "ocm_offset"), props["src"].data)  # type: ignore[union-attr]


def _pieces(count: int, esize: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) element ranges cutting `count` elements into at most `parts` pieces of
    at least MIN_PIECE_BYTES, boundaries on OCM granules."""
    unit = OCM_GRANULE // esize
    units = -(-count // unit)
    parts = max(1, min(parts, count * esize // MIN_PIECE_BYTES, units))
    base, extra = divmod(units, parts)
    out, start = [], 0
    for k in range(parts):
        end = min(count, start + (base + (k < extra)) * unit)
        out.append((start, end))
        start = end
    return out


def _piece_load(op: DmaLoadOp, start: int, end: int, esize: int) -> DmaLoadOp:
    props = dict(op.properties)
    for name in ("operandSegmentSizes", "resultSegmentSizes", "tile"):
        props.pop(name, None)
    count = end - start
    props["dram_offset"] = i64_attr(_ival(op, "dram_offset") + start * esize)
    props["ocm_offset"] = i64_attr(_ival(op, "ocm_offset") + start * esize)
    props["dim3"] = props["src_dim3"] = i64_attr(count)
    for k in range(3):
        props[f"ocm_stride{k}"] = i64_attr(count)
    return DmaLoadOp.build(props, {"ocm_addr": op.ocm_addr})  # type: ignore[return-value]


def _piece_copy(op: DmaLoadOp, start: int, end: int, esize: int, mask: int) -> TileCopyOp:
    offset = i64_attr(_ival(op, "ocm_offset") + start * esize)
    props = {"src": op.properties["src"], "dst": op.properties["dst"],
             "layer": op.properties["layer"], "dst_tile_mask": i64_attr(mask),
             "src_slot": op.properties["ocm_slot"], "src_offset": offset,
             "dst_slot": op.properties["ocm_slot"], "dst_offset": offset}
    for k in range(4):
        props[f"dim{k}"] = i64_attr(end - start if k == 3 else 1)
        props[f"src_stride{k}"] = props[f"dst_stride{k}"] = i64_attr(1)
    return TileCopyOp.build(props, {"src_addr": op.ocm_addr,  # type: ignore[return-value]
                                    "dst_addr": op.ocm_addr})


def dma_bytes(op: InstructionOp) -> int:
    """DRAM bytes of a DMA_LOAD (its source) or DMA_STORE (its destination); 0 otherwise."""
    if not isinstance(op, DmaOp):
        return 0
    side = "src" if isinstance(op, DmaLoadOp) else "dst"
    count = 1
    for k in range(4):
        count *= _ival(op, f"dim{k}")
    return count * DTYPE_SIZE[DTYPE_BY_NAME[op.properties[side].data]]  # type: ignore[union-attr]


def shared_groups(hoisted: dict[int, list[DmaLoadOp]], least_saved: float = 0
                  ) -> list[list[tuple[int, DmaLoadOp]]]:
    """The hoisted loads that several tiles make alike (the same bytes into the same buffer
    range; a row or grid split loads a layer's weights on every tile), as lists of (tile,
    load), each saving more than `least_saved` DRAM bytes when shared."""
    groups: dict[tuple, list[tuple[int, DmaLoadOp]]] = {}
    for tile, ops in hoisted.items():
        for op in ops:
            key = _load_key(op)
            if key is not None:
                groups.setdefault(key, []).append((tile, op))
    return [members for members in groups.values()
            if len(members) > 1 and (len(members) - 1) * dma_bytes(members[0][1]) > least_saved]


def sharing_pays(model: ModelOp, layer: LayerOp, hoisted: dict[int, list[DmaLoadOp]],
                 groups: list[list[tuple[int, DmaLoadOp]]]) -> bool:
    """Does sharing `groups` at the boundary after `layer` save cycles? Only when the hoisted
    loads, as every tile makes them, would hold the DRAM longer than the layer's busiest
    tile computes, by more than the sharing adds before the barrier (a load and a copy
    latency and the copies' bytes into one tile's link port). The layer's own transfers
    are left out: the DRAM serves them first (the hoisted loads queue behind the layer's
    loads), and the layer's last blocks compute and store while it serves the hoisted ones,
    so a layer whose own transfers fill the DRAM still leaves it free at its end.
    DRAM bytes valued with a floor: above `DRAM_VALUE_FLOOR_GBPS` every byte the sharing
    saves also counts the cycles it would take at the floor's rate beyond those at the
    machine's (`valued_dram_rate`), whether or not the DRAM is the bottleneck; at or
    below the floor that term is 0 and the rule is the one above."""
    machine = model.machine_record()
    compute: dict[int, int] = {}
    for block in layer.block_ops():
        tile = block.tile.value.data
        for op in block.instructions():
            if op.queue() == Queue.COMPUTE:
                compute[tile] = compute.get(tile, 0) + compute_cycles(op, machine)
    replicated = sum(dma_bytes(op) for ops in hoisted.values() for op in ops)
    received: dict[int, float] = {}
    saved = 0
    for members in groups:
        size = dma_bytes(members[0][1])
        saved += (len(members) - 1) * size
        for tile, _ in members:
            received[tile] = received.get(tile, 0) + size * (len(members) - 1) / len(members)
    cost = (machine.dma_latency + machine.link_latency + 3 * machine.issue_latency
            + max(received.values(), default=0) / machine.link_bytes_per_cycle)
    rate = machine.dram_bytes_per_cycle
    gained = max(0.0, replicated / rate - max(compute.values(), default=0))
    floor_value = saved * (1 / valued_dram_rate(machine) - 1 / rate)
    return gained + floor_value > cost


SAVED_LATENCIES = 1
"""In "auto", a shared load must save the DRAM at least this many load-plus-copy latencies
(`least_saved`): what it adds before the barrier. (With a first boundary rule, which
counted the layer's own transfers, 4 were needed to keep MobileNet v2 at 2 tiles from
getting slower; with `sharing_pays`, 1 keeps every in-repo model at or below the cycles
without sharing (docs/backend.md) and shares more than 4 where it pays: MobileNet v2 8
tiles 1 028 725 -> 1 002 725 cycles at 16 GB/s and 644 385 -> 638 236 at 32, against
1 011 371 and no change with 4.)"""


def least_saved(model: ModelOp) -> float:
    """DRAM bytes a shared load must save to pay for the load and copy latencies that it
    adds before the barrier (bytes valued at `valued_dram_rate`)."""
    machine = model.machine_record()
    return SAVED_LATENCIES * (machine.dma_latency + machine.link_latency) \
        * valued_dram_rate(machine)


def broadcast_loads(hoisted: dict[int, list[DmaLoadOp]],
                    groups: list[list[tuple[int, DmaLoadOp]]]) -> Broadcast:
    """Share each group of alike loads (`shared_groups`): it is cut into pieces
    (`_pieces`), each piece loaded from DRAM by one of the group's tiles (the one with the
    fewest bytes so far) and sent with one TILE_COPY to the others. The shared loads are
    erased and removed from `hoisted`; the others stay there."""
    result = Broadcast({}, {})
    assigned = {tile: 0 for tile in hoisted}
    for members in groups:
        first = members[0][1]
        esize = DTYPE_SIZE[DTYPE_BY_NAME[first.properties["src"].data]]  # type: ignore[union-attr]
        tiles = [tile for tile, _ in members]
        everyone = sum(1 << tile for tile in tiles)
        for start, end in _pieces(_ival(first, "dim3"), esize, len(members)):
            tile = min(tiles, key=lambda t: (assigned[t], t))
            assigned[tile] += (end - start) * esize
            result.loads.setdefault(tile, []).append(_piece_load(first, start, end, esize))
            result.copies.setdefault(tile, []).append(
                _piece_copy(first, start, end, esize, everyone & ~(1 << tile)))
        for tile, op in members:
            hoisted[tile].remove(op)
            if op.parent is not None:  # a partial prefetch's head is in no block yet
                op.detach()
            op.erase()
    return result


def _header(layer: int) -> dict:
    return {"src": str_attr("f16"), "dst": str_attr("f16"), "layer": i64_attr(layer)}


BROADCAST_MODES = ("auto", "all", "none")


def schedule(model: ModelOp, prefetch: bool = True, broadcast: str = "auto") -> None:
    """Move the blocks' instructions into the `main` section, rewriting each in place with
    its tile and tokens (module docstring)."""
    if model.scheduled:
        raise CompileError(f"@{model.sym_name.data}: mlip-dma-schedule already ran on this model")
    streams = _Streams()
    tiles = range(model.num_tiles.value.data)
    active = [layer for layer in model.layers() if layer.block_ops()]
    pending_barrier = {tile: False for tile in tiles}
    early, held = long_range_loads(model, tiles) if prefetch else ({}, [])
    weighted = {buf.layer.value.data for buf in model.buffers() if buf.kind.data == "weights"}
    for k, layer in enumerate(active):
        last_layer = k == len(active) - 1
        index = layer.index.value.data
        blocks = layer.block_ops()
        hoisted: dict[int, list[DmaLoadOp]] = {}
        shared = Broadcast({}, {})
        if prefetch and not last_layer:
            target, through = k + 1, None
            if k + 2 < len(active) and active[k + 1].index.value.data not in weighted:
                target, through = k + 2, active[k + 1]  # across a layer without weights
            following = active[target].block_ops()
            hoisted = {tile: prefetch_loads(model, layer, [b for b in following
                                                           if b.tile.value.data == tile],
                                            held, through=through)
                       for tile in tiles}
            if broadcast == "all":
                shared = broadcast_loads(hoisted, shared_groups(hoisted))
            elif broadcast == "auto":
                groups = shared_groups(hoisted, least_saved(model))
                # across a layer without weights: always shared (the boundary after that
                # layer, where they would load otherwise, computes next to nothing)
                if groups and (through is not None
                               or sharing_pays(model, layer, hoisted, groups)):
                    shared = broadcast_loads(hoisted, groups)
        for tile in tiles:
            mine = [b for b in blocks if b.tile.value.data == tile]
            n = len(mine)
            if n == 0 and pending_barrier[tile]:
                nop = NopOp.build({**_header(index), "queue": str_attr("dma_in")}, {})
                streams.emit(nop, tile, pop_next=True)
            runs = _spread(early.get((index, tile), []), n)
            if n == 0:
                for op in early.get((index, tile), []):
                    streams.emit(op, tile)
            for i, blk in enumerate(mine):
                ops = blk.instructions()
                loads = [op for op in ops if op.queue() == Queue.DMA_IN]
                computes = [op for op in ops if op.queue() == Queue.COMPUTE]
                stores = [op for op in ops if op.queue() == Queue.DMA_OUT]
                if not loads or not computes or not stores:
                    raise AssertionError(f"layer {layer.sym_name.data}: incomplete block {i}")
                for j, op in enumerate(loads):
                    streams.emit(op, tile,
                                 pop_next=j == 0 and (i >= 2 or (i == 0 and pending_barrier[tile])),
                                 push_next=j == len(loads) - 1)
                for op in runs[i]:
                    streams.emit(op, tile)
                for j, op in enumerate(computes):
                    last = j == len(computes) - 1
                    streams.emit(op, tile, pop_prev=j == 0, pop_next=j == 0 and i >= 2,
                                 push_next=last, push_prev=last and i + 2 < n)
                for j, op in enumerate(stores):
                    streams.emit(op, tile, pop_prev=j == 0,
                                 push_prev=j == len(stores) - 1 and (
                                     i + 2 < n or (i == n - 1 and not last_layer)))
            if last_layer:
                continue
            for op in hoisted.get(tile, []):
                streams.emit(op, tile)
            pieces = shared.loads.get(tile, [])
            for j, op in enumerate(pieces):
                streams.emit(op, tile, push_next=j == len(pieces) - 1)
            copies = shared.copies.get(tile, [])
            if copies:
                # the pieces' loads -> compute NOP (with the last store's token) -> copies
                # -> the barrier
                relay = NopOp.build({**_header(index), "queue": str_attr("compute")}, {})
                streams.emit(relay, tile, pop_prev=True, pop_next=n > 0, push_next=True)
                for j, op in enumerate(copies):
                    streams.emit(op, tile, pop_prev=j == 0, push_prev=j == len(copies) - 1)
            barrier = BarrierOp.build({**_header(index), "id": i64_attr(k)}, {})
            streams.emit(barrier, tile, pop_next=n > 0 or bool(copies), push_prev=True)
            pending_barrier[tile] = True
    for layer in model.layers():
        if layer.body.blocks:
            layer.body.detach_block(0).erase()
    model.body.block.add_op(SectionOp.create(properties={"section": StringAttr("main")},
                                             regions=[Region(streams.block)]))


@dataclass(frozen=True)
class MlipDmaSchedulePass(ModulePass):
    """Schedule every `mlip.model` into token-synchronised streams (module docstring)."""

    name = "mlip-dma-schedule"

    prefetch: bool = True
    """Load the next layer's resident weights while the current layer computes."""
    broadcast: str = "auto"
    """With `prefetch`: weights several tiles load alike are loaded once, in pieces, and
    sent to the others with TILE_COPY: "all" at every boundary (every prefetched weight
    byte crosses DRAM once), "auto" where that pays (`dram_bound`, `least_saved`), "none"
    nowhere."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.broadcast not in BROADCAST_MODES:
            raise CompileError(f"mlip-dma-schedule: broadcast: expected one of "
                               f"{list(BROADCAST_MODES)}, got {self.broadcast!r}")
        for model in op.ops:
            if isinstance(model, ModelOp):
                schedule(model, self.prefetch, self.broadcast)
