"""`mlip-dma-schedule`: per-tile instruction streams with dependency tokens (double buffering).

Input: an `mlip.model` whose layers hold per-tile blocks (loads, computes, stores; slot
`i % 2` of every streamed buffer for block i). Output: the same model with its layers turned
into the `main` streams of every (tile, queue), tokens set, and one BARRIER per tile between
consecutive layers.

Protocol per tile and layer, block i of n (VTA-style, docs/isa.md section 2):

- loads of block i: the first pops a token from COMPUTE (`POP_NEXT`) when i >= 2 (block
  i - 2 is done with the slot), or when the tile's previous layer ended with a barrier; the
  last pushes one to COMPUTE (`PUSH_NEXT`);
- computes of block i: the first pops the loads' token (`POP_PREV`) and, when i >= 2, the
  store of block i - 2's token (`POP_NEXT`, the output slot is free); the last pushes to
  DMA_OUT (`PUSH_NEXT`) and, when i + 2 < n, to DMA_IN (`PUSH_PREV`, the input slot is free);
- stores of block i: the first pops COMPUTE's token (`POP_PREV`); the last pushes one back
  (`PUSH_PREV`) when i + 2 < n, or, for the layer's last block, to the barrier;
- between layers every tile runs BARRIER (compute queue) that pops the last store's token and
  pushes one to DMA_IN, so the next layer's first load waits for every tile's stores; a tile
  with no block in a layer relays that token with a NOP.

So the loads of block i + 1 overlap the compute of block i, and the stores of block i
overlap the compute of block i + 1, and every read-after-write, write-after-read and
write-after-write on OCM and DRAM is covered by a token or a barrier.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mrvl.errors import CompileError
from mrvl.mlip_plan import Insn, Program
from mrvl.mlip_isa import Flag, Opcode, Queue, Section


def schedule(prog: Program) -> None:
    """Build `prog.streams` from the layers' blocks (module docstring)."""
    if prog.streams is not None:
        raise CompileError(f"@{prog.name}: mlip-dma-schedule already ran on this model")
    streams: dict = {}
    tiles = range(prog.num_tiles)
    for tile in tiles:
        for queue in Queue:
            streams[(int(Section.MAIN), tile, int(queue))] = []
    active = [layer for layer in prog.layers if layer.blocks]
    pending_barrier = {tile: False for tile in tiles}
    for k, layer in enumerate(active):
        last_layer = k == len(active) - 1
        for tile in tiles:
            ld = streams[(int(Section.MAIN), tile, int(Queue.DMA_IN))]
            cp = streams[(int(Section.MAIN), tile, int(Queue.COMPUTE))]
            st = streams[(int(Section.MAIN), tile, int(Queue.DMA_OUT))]
            blocks = layer.blocks_of(tile)
            n = len(blocks)
            if n == 0 and pending_barrier[tile]:
                ld.append(Insn(Opcode.NOP, flags=int(Flag.POP_NEXT), queue=Queue.DMA_IN,
                               layer=layer.index))
            for i, blk in enumerate(blocks):
                if not blk.loads or not blk.computes or not blk.stores:
                    raise AssertionError(f"layer {layer.name}: incomplete block {i}")
                if i >= 2 or (i == 0 and pending_barrier[tile]):
                    blk.loads[0].set_flag(Flag.POP_NEXT)
                blk.loads[-1].set_flag(Flag.PUSH_NEXT)
                blk.computes[0].set_flag(Flag.POP_PREV)
                if i >= 2:
                    blk.computes[0].set_flag(Flag.POP_NEXT)
                blk.computes[-1].set_flag(Flag.PUSH_NEXT)
                if i + 2 < n:
                    blk.computes[-1].set_flag(Flag.PUSH_PREV)
                blk.stores[0].set_flag(Flag.POP_PREV)
                if i + 2 < n or (i == n - 1 and not last_layer):
                    blk.stores[-1].set_flag(Flag.PUSH_PREV)
                ld.extend(blk.loads)
                cp.extend(blk.computes)
                st.extend(blk.stores)
            if last_layer:
                continue
            flags = int(Flag.PUSH_PREV)
            if n:
                flags |= int(Flag.POP_NEXT)
            cp.append(Insn(Opcode.BARRIER, {"id": k}, flags=flags, layer=layer.index))
            pending_barrier[tile] = True
    prog.streams = streams


@dataclass(frozen=True)
class MlipDmaSchedulePass(ModulePass):
    """Turn every `mlip.model`'s blocks into token-synchronised streams (module docstring)."""

    name = "mlip-dma-schedule"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from mrvl.dialects.mlip import map_models

        map_models(op, schedule)
