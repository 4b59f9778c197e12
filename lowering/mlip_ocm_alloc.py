"""`mlip-ocm-alloc`: place every layer's OCM buffers, per tile, in pages.

Input: an `mlip.model` whose `mlip.buffer` ops have no `addrs` yet (instructions address
them as `%buffer[slot, offset]`). Output: the same model with `addrs` (one byte address per
slot) on every `mlip.buffer` and the model's OCM range `[0, ocm_end)` set; the instructions
keep their buffer operands, so emission reads an OCM address as
`addrs[slot] + offset` of the buffer an operand names.

Rules (../shared/docs/mlip-hardware.md): OCM is managed in pages of `page_size` bytes
(1, 2, 4, 8 or 16 KiB; every buffer slot starts on a page and takes whole pages); weights,
biases and requantisation scales are allocated upwards from the layer's weights base,
scratch (activation blocks) from the top of the model's OCM range downwards. Buffers are
reused by liveness: a layer's buffers live only while the layer runs (layers are separated
by barriers), so every layer starts again from an empty OCM.

Weight prefetch (`prefetch=True`, the default; `weight_bases`, `prefetch_top`): the
weights of layer L+1 are placed disjoint from every buffer of the layer L before it (the
previous layer that has buffers), so that `mlip-dma-schedule` may load them while L
computes. The weights base of L+1 is the first of page 0 (below L's weights) and the page
just above L's weights whose range is disjoint from L's weights and ends below both layers'
scratch; when neither is, the base is 0 (that boundary is not prefetched). So the weights of
consecutive layers alternate between page 0 and a region stacked above the previous layer's
weights. The model's range (`ocm_end`) is the largest of each layer's need and of each
boundary's need `weights(L) + weights(L+1) + max(scratch(L), scratch(L+1))` that fits
`ocm_size`. With `prefetch=False` every base is 0 and the range is the largest layer's need.

Every tile uses the same placement (a layer's blocks are the same size on every tile).
Allocating again gives the same addresses (the pass is idempotent), before or after
`mlip-dma-schedule`.

Invariant (checked here, a CompileError otherwise): no layer uses more than `ocm_size` bytes,
and no two buffer slots of a layer overlap.
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
    found: dict[int, list[BufferOp]] = {layer.index.value.data: [] for layer in model.layers()}
    for buf in model.buffers():
        found.setdefault(buf.layer.value.data, []).append(buf)
    return found


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
    for index, buffers in _by_layer(model).items():
        low, high = bases.get(index, 0), top
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
