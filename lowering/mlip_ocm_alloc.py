"""`mlip-ocm-alloc`: place every layer's OCM buffers, per tile, in pages.

Input: an `mlip.model` whose instructions address OCM buffers symbolically
(`@<buffer>[<slot>, <offset>]`). Output: the same model with every OCM operand an absolute
byte address and the model's OCM range `[0, ocm_end)` set.

Rules (../shared/docs/mlip-hardware.md): OCM is managed in pages of `page_size` bytes
(1, 2, 4, 8 or 16 KiB; every buffer slot starts on a page and takes whole pages); weights,
biases and requantisation scales are allocated from the low pages upwards, scratch
(activation blocks) from the top of the model's OCM range downwards. Buffers are reused by
liveness: a layer's buffers live only while the layer runs (layers are separated by
barriers), so every layer starts again from an empty OCM; the model's range is the largest
layer's need. Every tile uses the same placement (a layer's blocks are the same size on every
tile).

Invariant (checked here, a CompileError otherwise): no layer uses more than `ocm_size` bytes,
and no two buffer slots of a layer overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mrvl.errors import CompileError
from mrvl.mlip_plan import Program, Ref, align


def layer_pages(prog: Program) -> list[tuple[int, int]]:
    """(weights bytes, scratch bytes) of every layer, page-rounded."""
    out = []
    for layer in prog.layers:
        low = high = 0
        for buf in layer.buffers.values():
            size = align(max(buf.size, 1), prog.page_size) * buf.slots
            if buf.kind == "weights":
                low += size
            else:
                high += size
        out.append((low, high))
    return out


def allocate_ocm(prog: Program) -> None:
    """Assign `addrs` to every buffer and resolve OCM refs (module docstring)."""
    if prog.streams is not None:
        raise CompileError(
            f"@{prog.name}: the model is already scheduled; run mlip-ocm-alloc before "
            "mlip-dma-schedule"
        )
    needs = layer_pages(prog)
    top = max((low + high for low, high in needs), default=prog.page_size)
    top = max(top, prog.page_size)
    if top > prog.ocm_size:
        worst = max(range(len(needs)), key=lambda i: sum(needs[i]))
        raise CompileError(
            f"layer {prog.layers[worst].name} needs {sum(needs[worst])} bytes of OCM, more "
            f"than the {prog.ocm_size} available"
        )
    for layer in prog.layers:
        low, high = 0, top
        for buf in layer.buffers.values():
            slot_size = align(max(buf.size, 1), prog.page_size)
            buf.addrs = []
            for _ in range(buf.slots):
                if buf.kind == "weights":
                    buf.addrs.append(low)
                    low += slot_size
                else:
                    high -= slot_size
                    buf.addrs.append(high)
        if low > high:
            raise CompileError(f"layer {layer.name}: OCM buffers overlap ({low} > {high})")
        for blk in layer.blocks:
            for insn in (*blk.loads, *blk.computes, *blk.stores):
                for key, value in insn.fields.items():
                    if isinstance(value, Ref) and value.space == "ocm":
                        buf = layer.buffers[value.name]
                        insn.fields[key] = buf.addrs[value.slot] + value.offset
    prog.ocm_end = top


@dataclass(frozen=True)
class MlipOcmAllocPass(ModulePass):
    """Place the OCM buffers of every `mlip.model` (module docstring)."""

    name = "mlip-ocm-alloc"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from mrvl.dialects.mlip import map_models

        map_models(op, allocate_ocm)
