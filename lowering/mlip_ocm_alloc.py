"""`mlip-ocm-alloc`: place every layer's OCM buffers, per tile, in pages.

Input: an `mlip.model` whose `mlip.buffer` ops have no `addrs` yet (instructions address
them as `%buffer[slot, offset]`). Output: the same model with `addrs` (one byte address per
slot) on every `mlip.buffer` and the model's OCM range `[0, ocm_end)` set; the instructions
keep their buffer operands, so emission reads an OCM address as
`addrs[slot] + offset` of the buffer an operand names.

Rules (../shared/docs/mlip-hardware.md): OCM is managed in pages of `page_size` bytes
(1, 2, 4, 8 or 16 KiB; every buffer slot starts on a page and takes whole pages).

1. Cross-layer (resident) buffers first (`place_residents`, from mlip-residency: `kind =
   resident`, live for layers [`layer`, `last`]): interval first-fit by live layers from
   the top of the OCM downwards, in IR order; two residents share bytes only when their
   live layers do not overlap. They form a band at the top of the OCM whose lower edge
   (`resident_floors`) varies per layer.
2. Per-layer buffers: weights, biases and requantisation scales upwards from the layer's
   weights base, scratch (activation blocks) from the top of the model's OCM range
   downwards or, at a layer with resident buffers live, from the lowest of them downwards.
   They live only while the layer runs (layers are separated by barriers), so every layer
   starts again from an OCM empty below its residents. Without residents the model's range
   is the largest layer's need; with them it is the whole OCM.
3. Weight prefetch (`prefetch=True`, the default; `weight_bases`, `prefetch_top`): the
   weights of layer L+1 are placed disjoint from every buffer of the layer L before it, so
   that `mlip-dma-schedule` may load them while L computes. The weights base of L+1 is page
   0 (below L's weights) or the page just above L's weights, whichever is disjoint from L's
   weights and ends below both layers' scratch; when neither is, the base is 0 (that
   boundary is not prefetched). Without residents the range `ocm_end` is the largest of
   each layer's need and of each boundary's need `weights(L) + weights(L+1) +
   max(scratch(L), scratch(L+1))` that fits `ocm_size`. A base that does not fit under a
   layer's residents falls back to 0; `mlip-dma-schedule` hoists a load only when its slots
   are disjoint from every buffer live at the layer before, so a fallback costs the overlap,
   never correctness. With `prefetch=False` every base is 0.

Every tile uses the same placement (a layer's blocks are the same size on every tile; a
resident buffer is sized for the largest band of any tile). Allocating again gives the same
addresses (the pass is idempotent), before or after `mlip-dma-schedule`.

Invariants (checked here, a CompileError otherwise): no layer uses more than `ocm_size`
bytes; no two buffer slots of a layer overlap; no per-layer slot overlaps a resident buffer
live at its layer (it stays below the layer's resident floor); resident buffers with
overlapping live layers do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    op_type_rewrite_pattern,
)

from mrvl.dialects.mlip import BufferOp, ModelOp, i64_attr
from mrvl.errors import CompileError


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _by_layer(model: ModelOp) -> dict[int, list[BufferOp]]:
    """The per-layer (weights and scratch) buffers of every layer index."""
    found: dict[int, list[BufferOp]] = {layer.index.value.data: [] for layer in model.layers()}
    for buf in model.buffers():
        if buf.kind.data != "resident":
            found.setdefault(buf.layer.value.data, []).append(buf)
    return found


# ---- cross-layer (resident) buffers: placed first, by liveness, from the top of the OCM ----
@dataclass(frozen=True)
class Resident:
    """A resident buffer's request: bytes (one slot) and live layers [first, last]."""

    size: int
    first: int
    last: int


def place_residents(requests: list[Resident], ocm_size: int, page: int) -> list[int] | None:
    """Interval first-fit of resident buffers, from the top of the OCM downwards: each takes
    the highest page-aligned range free of every earlier request whose live layers overlap
    its own (requests are placed in the given order). The start address of each, or None
    when one does not fit above address 0."""
    placed: list[tuple[int, int, int, int]] = []  # (start, end, first, last)
    out = []
    for req in requests:
        need = _align(max(req.size, 1), page)
        busy = [(a, e) for a, e, f, last in placed if not (last < req.first or req.last < f)]
        end = ocm_size  # busy ranges may overlap each other (they need not share a layer)
        while True:
            if end - need < 0:
                return None
            clash = [a for a, e in busy if a < end and e > end - need]
            if not clash:
                break
            end = min(clash)
        out.append(end - need)
        placed.append((end - need, end, req.first, req.last))
    return out


def resident_floors(requests: list[Resident], addrs: list[int], ocm_size: int
                    ) -> dict[int, int]:
    """Lowest resident address live at each layer index that has a resident buffer (the
    per-layer buffers of that layer must stay below it)."""
    floors: dict[int, int] = {}
    for req, addr in zip(requests, addrs, strict=True):
        for layer in range(req.first, req.last + 1):
            floors[layer] = min(floors.get(layer, ocm_size), addr)
    return floors


def resident_requests(model: ModelOp) -> tuple[list[BufferOp], list[Resident]]:
    """The model's resident buffers, in placement order, and their requests."""
    bufs = [buf for buf in model.buffers() if buf.kind.data == "resident"]
    return bufs, [Resident(buf.size.value.data, *buf.live_layers()) for buf in bufs]


def layer_pages(model: ModelOp) -> dict[int, tuple[int, int]]:
    """(weights bytes, scratch bytes) of every layer index, page-rounded."""
    page = model.page_size.value.data
    out = {}
    for index, buffers in _by_layer(model).items():
        low = high = 0
        for buf in buffers:
            size = _align(max(buf.size.value.data, 1), page) * buf.slots.value.data
            if buf.kind.data == "weights":
                low += size
            else:
                high += size
        out[index] = (low, high)
    return out


def weight_bases(needs: dict[int, tuple[int, int]], top: int) -> dict[int, int]:
    """Byte address where each layer's weights start, so that a layer's weights are
    disjoint from every buffer of the layer before it when they fit below `top` (module
    docstring); `needs` as `layer_pages`, in layer order, layers without buffers left out."""
    bases: dict[int, int] = {}
    prev: tuple[int, int, int] | None = None  # (base, weights, scratch) of the layer before
    for index, (weights, scratch) in needs.items():
        if weights + scratch == 0:
            continue
        base = 0
        if prev is not None and weights > 0:
            prev_base, prev_weights, prev_scratch = prev
            limit = top - max(prev_scratch, scratch)
            for candidate in (0, prev_base + prev_weights):
                disjoint = (candidate + weights <= prev_base
                            or candidate >= prev_base + prev_weights)
                if candidate + weights <= limit and disjoint:
                    base = candidate
                    break
        bases[index] = base
        prev = (base, weights, scratch)
    return bases


def prefetch_top(needs: dict[int, tuple[int, int]], ocm_size: int) -> int:
    """The model's OCM range with weight prefetch: the largest layer need and the largest
    boundary need (both layers' weights and the larger scratch) that fits `ocm_size`."""
    top = max((low + high for low, high in needs.values()), default=0)
    used = [need for need in needs.values() if sum(need) > 0]
    for (prev_weights, prev_scratch), (weights, scratch) in zip(used, used[1:]):
        boundary = prev_weights + weights + max(prev_scratch, scratch)
        if weights > 0 and boundary <= ocm_size:
            top = max(top, boundary)
    return top


def plan_ocm(model: ModelOp, prefetch: bool = True) -> tuple[dict[BufferOp, list[int]], int]:
    """(byte address of every slot of every buffer, ocm_end) of a model (module docstring)."""
    page = model.page_size.value.data
    ocm_size = model.ocm_size.value.data
    needs = layer_pages(model)
    top = max((low + high for low, high in needs.values()), default=page)
    if prefetch and top <= ocm_size:
        top = prefetch_top(needs, ocm_size)
    top = max(top, page)
    bases = weight_bases(needs, top) if prefetch else {}
    names = {layer.index.value.data: layer.sym_name.data for layer in model.layers()}
    if top > ocm_size:
        worst = max(needs, key=lambda i: sum(needs[i]))
        raise CompileError(
            f"layer {names.get(worst, worst)} needs {sum(needs[worst])} bytes of OCM, more "
            f"than the {ocm_size} available"
        )
    placed: dict[BufferOp, list[int]] = {}
    floors: dict[int, int] = {}
    res_bufs, requests = resident_requests(model)
    if res_bufs:
        addrs = place_residents(requests, ocm_size, page)
        if addrs is None:
            raise CompileError(f"@{model.sym_name.data}: resident buffers do not fit the OCM")
        floors = resident_floors(requests, addrs, ocm_size)
        for buf, addr in zip(res_bufs, addrs, strict=True):
            placed[buf] = [addr]
        top = ocm_size
    for index, buffers in _by_layer(model).items():
        base = bases.get(index, 0)
        high = min(top, floors.get(index, top))
        if res_bufs and high == top:  # no resident live here: the layer's buffers sit low
            high = max(base + sum(needs[index]), page)
        if base + sum(needs[index]) > high:  # the prefetch base does not fit under the
            base = 0  # residents: this boundary is not prefetched (mlip-dma-schedule sees it)
        low = base
        for buf in buffers:
            slot_size = _align(max(buf.size.value.data, 1), page)
            addrs = placed[buf] = []
            for _ in range(buf.slots.value.data):
                if buf.kind.data == "weights":
                    addrs.append(low)
                    low += slot_size
                else:
                    high -= slot_size
                    addrs.append(high)
        if low > high:
            raise CompileError(f"layer {names.get(index, index)}: OCM buffers overlap "
                               f"({low} > {high})")
    return placed, top


@dataclass
class PlaceBuffer(RewritePattern):
    """Give an `mlip.buffer` its planned slot addresses (in place)."""

    placed: dict[BufferOp, list[int]]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: BufferOp, rewriter: PatternRewriter) -> None:
        addrs = self.placed.get(op)
        if addrs is None or op.addresses() == addrs:
            return
        op.addrs = DenseArrayBase.from_list(i64, addrs)
        rewriter.notify_op_modified(op)


def allocate_ocm(model: ModelOp, prefetch: bool = True) -> None:
    """Set `addrs` on every buffer and `ocm_end` on the model (module docstring)."""
    placed, top = plan_ocm(model, prefetch)
    pattern = PlaceBuffer(placed)
    # the buffers are top-level ops of the model: apply the pattern to them directly rather
    # than walking the thousands of instruction ops nested in the layers
    for buf in placed:
        pattern.match_and_rewrite(buf, PatternRewriter(buf))
    model.ocm_end = i64_attr(top)


@dataclass(frozen=True)
class MlipOcmAllocPass(ModulePass):
    """Place the OCM buffers of every `mlip.model` (module docstring)."""

    name = "mlip-ocm-alloc"

    prefetch: bool = True
    """Place each layer's weights disjoint from the previous layer's buffers when they fit."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for model in op.ops:
            if isinstance(model, ModelOp):
                allocate_ocm(model, self.prefetch)
