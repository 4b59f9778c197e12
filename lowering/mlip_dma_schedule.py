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
    BarrierOp,
    BlockOp,
    BufferOp,
    DmaLoadOp,
    InstructionOp,
    LayerOp,
    ModelOp,
    NopOp,
    SectionOp,
    i64_attr,
    str_attr,
)
from mrvl.errors import CompileError
from mrvl.mlip_isa import Queue


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


def prefetch_loads(model: ModelOp, previous: LayerOp, mine: list[BlockOp]) -> list[DmaLoadOp]:
    """The loads of a tile's first block of a layer that may run during the layer before
    (`previous`): loads of weights-kind buffers that no later block of the tile loads
    again, whose slots are disjoint from every buffer live at `previous` (its own and the
    resident buffers of mlip-residency whose live layers include it; module docstring).
    When they are all of the first block's loads, a DMA_IN NOP is added to the block so it
    keeps a load of its own that pops the barrier's token."""
    if not mine:
        return []
    page = model.page_size.value.data
    reloaded = {_weights_buffer(op) for blk in mine[1:] for op in blk.instructions()
                if isinstance(op, DmaLoadOp)}
    index = previous.index.value.data
    live = [buf for buf in model.buffers()
            if buf.live_layers()[0] <= index <= buf.live_layers()[1]]
    busy = [r for buf in live for r in _slot_ranges(buf, page)]
    first = [op for op in mine[0].instructions() if op.queue() == Queue.DMA_IN]
    hoisted = []
    for op in first:
        buf = _weights_buffer(op) if isinstance(op, DmaLoadOp) else None
        if buf is None or buf in reloaded or not buf.addresses():
            continue
        if all(end <= lo or start >= hi for start, end in _slot_ranges(buf, page)
               for lo, hi in busy):
            hoisted.append(op)
    if hoisted and len(hoisted) == len(first):
        # every load of the block is hoisted (the resident schedule removed its activation
        # load): a DMA_IN NOP stays behind to pop the barrier's token for the block
        layer = mine[0].instructions()[0].layer.value.data
        nop = NopOp.build({**_header(layer), "queue": str_attr("dma_in")}, {})
        block = mine[0].body.block
        block.insert_op_before(nop, block.first_op)
    return hoisted


def _header(layer: int) -> dict:
    return {"src": str_attr("f16"), "dst": str_attr("f16"), "layer": i64_attr(layer)}


def schedule(model: ModelOp, prefetch: bool = True) -> None:
    """Move the blocks' instructions into the `main` section, rewriting each in place with
    its tile and tokens (module docstring)."""
    if model.scheduled:
        raise CompileError(f"@{model.sym_name.data}: mlip-dma-schedule already ran on this model")
    streams = _Streams()
    tiles = range(model.num_tiles.value.data)
    active = [layer for layer in model.layers() if layer.block_ops()]
    pending_barrier = {tile: False for tile in tiles}
    for k, layer in enumerate(active):
        last_layer = k == len(active) - 1
        index = layer.index.value.data
        blocks = layer.block_ops()
        for tile in tiles:
            mine = [b for b in blocks if b.tile.value.data == tile]
            n = len(mine)
            if n == 0 and pending_barrier[tile]:
                nop = NopOp.build({**_header(index), "queue": str_attr("dma_in")}, {})
                streams.emit(nop, tile, pop_next=True)
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
            if prefetch:
                following = active[k + 1]
                upcoming = [b for b in following.block_ops() if b.tile.value.data == tile]
                for op in prefetch_loads(model, layer, upcoming):
                    streams.emit(op, tile)
            barrier = BarrierOp.build({**_header(index), "id": i64_attr(k)}, {})
            streams.emit(barrier, tile, pop_next=n > 0, push_prev=True)
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

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for model in op.ops:
            if isinstance(model, ModelOp):
                schedule(model, self.prefetch)
