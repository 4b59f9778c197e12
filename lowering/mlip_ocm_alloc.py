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
3. Weight prefetch (`prefetch=True`, the default; `weight_bases`, `choose_base`,
   `prefetch_top`): the weights of layer L+1 are placed disjoint from every buffer of the
   layer L before it, so that `mlip-dma-schedule` may load them while L computes. The
   candidate bases of L+1 are page 0, the page just above L's weights and the highest base
   below both layers' scratch (and L+1's resident floor); each that fits L+1 is scored by
   the head of L+1's weights free of L's buffers (all of them when disjoint; a partial
   head is loaded early by `mlip-dma-schedule`, the rest after the barrier), then by the
   head it leaves the layer after (one layer of look-ahead); the earliest wins a tie, so
   page 0 when none leaves a head. Without residents the range `ocm_end` is the largest of
   each layer's need and of each boundary's need `weights(L) + weights(L+1) +
   max(scratch(L), scratch(L+1))` that fits `ocm_size`. A base that does not fit under a
   layer's residents falls back to 0; `mlip-dma-schedule` hoists a load only when its slots
   are disjoint from every buffer live at the layer before, so a fallback costs the overlap,
   never correctness. With `prefetch=False` every base is 0.

4. Long-range prefetch (with residents and prefetch; `long_range_bases`, `layer_slack`):
   a layer j with at least LONG_RANGE_MIN_BYTES of weights per tile, whose tiles load
   different weights, and whose weight bytes (all tiles) exceed the DRAM time the layer
   before leaves unused (`layer_slack`: busiest tile's compute cycles x DRAM bytes per
   cycle - the layer's own DMA bytes), gets its weights placed at the lowest address free
   over layers s .. j (their buffers, residents, the next-layer prefetch of s + 1 and the
   ranges held by other long-range layers), for the latest s (at most MAX_REACH layers
   back) from which the unused DRAM time of s .. j - 1 covers its bytes; when none does,
   the layer keeps rule 3. `plan_prefetch` returns {j: s}; `mlip-dma-schedule` loads j's
   weights during s after checking the disjointness on the placed addresses.

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

from mrvl.dialects.mlip import BufferOp, DmaLoadOp, DmaOp, ModelOp, i64_attr
from mrvl.errors import CompileError
from mrvl.lowering.mlip_cost import compute_cycles
from mrvl.lowering.mlip_emit import dma_bytes
from mrvl.mlip_isa import Queue


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


def _occupied(needs: dict[int, tuple[int, int]], index: int, base: int, top: int,
              floors: dict[int, int], resident: bool) -> list[tuple[int, int]]:
    """The OCM ranges of a layer's own buffers with its weights at `base`: its scratch sits
    below its resident floor, or just above its weights in a model with residents (none
    live at the layer), or at the top of the range."""
    weights, scratch = needs[index]
    if index in floors:
        return [(base, base + weights), (floors[index] - scratch, floors[index])]
    if resident:
        return [(base, base + weights + scratch)]
    return [(base, base + weights), (top - scratch, top)]


def _heads(needs: dict[int, tuple[int, int]], prev: tuple[int, int] | None, index: int,
           top: int, floors: dict[int, int], resident: bool) -> list[tuple[int, int]]:
    """(candidate weights base, bytes of the head of the layer's weights free of the
    previous layer's buffers) for every candidate that fits the layer: page 0, just above
    the previous layer's weights, and as high as the layer's and the previous layer's
    scratch allow."""
    weights, scratch = needs[index]
    if prev is None or weights == 0:
        return [(0, 0)]
    prev_index, prev_base = prev
    busy = _occupied(needs, prev_index, prev_base, top, floors, resident)
    ceiling = floors.get(index, top) - scratch
    if index in floors or not resident:
        under = [lo for lo, hi in busy[1:] if hi > lo]  # the previous layer's scratch
        high = min([ceiling, *under]) - weights
    else:
        high = -1
    out = []
    for candidate in dict.fromkeys((0, prev_base + needs[prev_index][0], high)):
        if candidate < 0 or candidate + weights > ceiling:
            continue
        clash = [lo for lo, hi in busy if lo < candidate + weights and hi > candidate]
        out.append((candidate, weights if not clash else max(0, min(clash) - candidate)))
    return out or [(0, 0)]


def choose_base(needs: dict[int, tuple[int, int]], prev: tuple[int, int] | None, index: int,
                top: int, floors: dict[int, int], resident: bool,
                after: int | None = None) -> int:
    """The weights base of layer `index` after layer prev = (index, base) (`_heads`): the
    candidate whose weights head free of the previous layer is the longest (all of them
    when one allows), among those the one that leaves layer `after` (the next) the longest
    head, the earliest on a tie (page 0 first)."""
    def score(candidate: int, head: int) -> tuple[int, int]:
        ahead = 0
        if after is not None and head > 0:
            ahead = max(h for _, h in _heads(needs, (index, candidate), after, top, floors,
                                            resident))
        return head, ahead

    best, best_score = 0, (0, -1)
    for candidate, head in _heads(needs, prev, index, top, floors, resident):
        value = score(candidate, head)
        if value > best_score:
            best, best_score = candidate, value
    return best


def weight_bases(needs: dict[int, tuple[int, int]], top: int,
                 floors: dict[int, int] | None = None, resident: bool = False
                 ) -> dict[int, int]:
    """Byte address where each layer's weights start (`choose_base`, module docstring rule
    3); `needs` as `layer_pages`, in layer order, layers without buffers left out.
    `floors` (`resident_floors`) and `resident` (the model has resident buffers) say where
    each layer's scratch is (`_occupied`)."""
    floors = floors or {}
    bases: dict[int, int] = {}
    prev: tuple[int, int] | None = None
    order = [index for index, need in needs.items() if sum(need) > 0]
    for k, index in enumerate(order):
        after = order[k + 1] if k + 1 < len(order) else None
        bases[index] = choose_base(needs, prev, index, top, floors, resident, after)
        prev = (index, bases[index])
    return bases


def prefetch_heads(needs: dict[int, tuple[int, int]], top: int, floors: dict[int, int]
                   ) -> dict[int, int]:
    """Per layer of a model with residents, the bytes of the head of its weights that the
    next-layer prefetch (rule 3) may load before the barrier: free of the previous layer's
    buffers at the bases `weight_bases` chooses under these resident floors."""
    bases = weight_bases(needs, top, floors, True)
    order = [index for index, need in needs.items() if sum(need) > 0]
    heads = {}
    for prev, index in zip(order, order[1:]):
        found = dict(_heads(needs, (prev, bases[prev]), index, top, floors, True))
        heads[index] = found.get(bases[index], 0)
    return heads


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


def layer_slack(model: ModelOp) -> dict[int, float]:
    """DRAM bytes each layer leaves unused while it computes: its busiest tile's compute
    cycles times the DRAM bytes per cycle, less the bytes of its own loads and stores (all
    tiles), at least 0. Read from the layers' blocks (before `mlip-dma-schedule`)."""
    machine = model.machine_record()
    out: dict[int, float] = {}
    for layer in model.layers():
        compute: dict[int, int] = {}
        moved = 0
        for block in layer.block_ops():
            tile = block.tile.value.data
            for op in block.instructions():
                if op.queue() == Queue.COMPUTE:
                    compute[tile] = compute.get(tile, 0) + compute_cycles(op, machine)
                elif isinstance(op, DmaOp):
                    moved += dma_bytes(op)
        busiest = max(compute.values(), default=0)
        out[layer.index.value.data] = max(0.0, busiest * machine.dram_bytes_per_cycle - moved)
    return out


def first_block_weight_bytes(model: ModelOp) -> dict[int, int]:
    """DRAM bytes of the weights-kind loads in every tile's first block of each layer (what
    a prefetch of the layer moves), summed over tiles; 0 for a layer whose tiles load
    some of the same weights (a row split: long-range loads are not shared between tiles,
    so such a layer keeps the next-layer prefetch, which is)."""
    out: dict[int, int] = {}
    for layer in model.layers():
        seen: set[int] = set()
        sources: set[tuple] = set()
        total = 0
        alike = False
        for block in layer.block_ops():
            tile = block.tile.value.data
            if tile in seen:
                continue
            seen.add(tile)
            for op in block.instructions():
                owner = op.ocm_addr.owner if isinstance(op, DmaLoadOp) else None
                if isinstance(owner, BufferOp) and owner.kind.data == "weights":
                    total += dma_bytes(op)
                    source = (op.properties["dram"], op.properties["dram_offset"])
                    alike = alike or source in sources
                    sources.add(source)
        out[layer.index.value.data] = 0 if alike else total
    return out


LONG_RANGE_MIN_BYTES = 131072
"""Long-range prefetch: the least per-tile weights (page-rounded) worth loading layers early
(a small load gains less than the DMA latency it adds to an earlier layer's queue)."""

MAX_REACH = 8
"""Long-range prefetch: how many layers before its own a layer's weights may load (24 made
MobileNet v2 at 8 tiles slower: loads far ahead delay the earlier layers' own DMA queue
more than `layer_slack` estimates)."""


def _free_base(busy: list[tuple[int, int]], size: int, limit: int, page: int) -> int | None:
    """Lowest page-aligned address a with [a, a + size) inside [0, limit) and disjoint
    from every range of `busy`; None when there is none."""
    start = 0
    for lo, hi in sorted(busy):
        if start + size <= lo:
            break
        start = max(start, _align(hi, page))
    return start if start + size <= limit else None


def plan_prefetch(model: ModelOp, prefetch: bool = True
                  ) -> tuple[dict[BufferOp, list[int]], int, dict[int, int]]:
    """(byte address of every slot of every buffer, ocm_end, the layer whose run each
    long-range prefetched layer's weights load during) of a model (module docstring)."""
    page = model.page_size.value.data
    ocm_size = model.ocm_size.value.data
    needs = layer_pages(model)
    top = max((low + high for low, high in needs.values()), default=page)
    if prefetch and top <= ocm_size:
        top = prefetch_top(needs, ocm_size)
    top = max(top, page)
    names = {layer.index.value.data: layer.sym_name.data for layer in model.layers()}
    if top > ocm_size:
        worst = max(needs, key=lambda i: sum(needs[i]))
        raise CompileError(
            f"layer {names.get(worst, worst)} needs {sum(needs[worst])} bytes of OCM, more "
            f"than the {ocm_size} available"
        )
    placed: dict[BufferOp, list[int]] = {}
    floors: dict[int, int] = {}
    starts: dict[int, int] = {}
    res_bufs, requests = resident_requests(model)
    if res_bufs:
        addrs = place_residents(requests, ocm_size, page)
        if addrs is None:
            raise CompileError(f"@{model.sym_name.data}: resident buffers do not fit the OCM")
        floors = resident_floors(requests, addrs, ocm_size)
        for buf, addr in zip(res_bufs, addrs, strict=True):
            placed[buf] = [addr]
        top = ocm_size
    bases = weight_bases(needs, top, floors, bool(res_bufs)) if prefetch else {}
    if res_bufs:
        if prefetch:
            starts = long_range_bases(model, needs, bases, requests, addrs, floors, top)
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
    return placed, top, starts


def long_range_bases(model: ModelOp, needs: dict[int, tuple[int, int]],
                     bases: dict[int, int], requests: list[Resident], addrs: list[int],
                     floors: dict[int, int], top: int) -> dict[int, int]:
    """Move the weights of layers whose prefetch does not fit the DRAM time the layer
    before leaves unused (`layer_slack`) to OCM free from an earlier layer s (the latest
    of the MAX_REACH before with enough unused DRAM time) to their own, so that
    `mlip-dma-schedule` may load them while s computes; updates `bases` in place and
    returns {layer: s} (module docstring, rule 4)."""
    page = model.page_size.value.data
    slack = layer_slack(model)
    wanted = first_block_weight_bytes(model)
    order = [index for index, need in needs.items() if sum(need) > 0]
    position = {index: k for k, index in enumerate(order)}
    live_res: dict[int, list[tuple[int, int]]] = {}
    for req, addr in zip(requests, addrs, strict=True):
        for layer in range(req.first, req.last + 1):
            live_res.setdefault(layer, []).append((addr, addr + _align(max(req.size, 1), page)))
    reserved: dict[int, list[tuple[int, int]]] = {}  # layer -> weights loaded early, held

    def own(index: int, base: int) -> list[tuple[int, int]]:
        base = base if fits(index, base) else 0  # as the placement below falls back
        return _occupied(needs, index, base, top, floors, True)

    def fits(index: int, base: int) -> bool:
        weights, scratch = needs[index]
        high = floors.get(index, top)
        return base + weights + scratch <= high if index not in floors else \
            base + weights <= high - scratch

    starts: dict[int, int] = {}
    for k, index in enumerate(order):
        weights = needs[index][0]
        if k == 0 or weights < LONG_RANGE_MIN_BYTES or wanted.get(index, 0) == 0:
            continue
        before = order[k - 1]
        if slack.get(before, 0) >= wanted[index]:
            slack[before] -= wanted[index]
            continue
        gathered = slack.get(before, 0)
        chosen: tuple[int, int] | None = None  # (position, base) of the furthest fit so far
        for back in range(k - 2, max(-1, k - 1 - MAX_REACH), -1):
            source = order[back]
            busy = [r for layer in order[back:k] for r in
                    own(layer, bases.get(layer, 0)) + live_res.get(layer, [])
                    + reserved.get(layer, [])]
            nxt = order[back + 1]  # the layer after `source` is prefetched during it
            busy.append((bases.get(nxt, 0), bases.get(nxt, 0) + needs[nxt][0]))
            busy += live_res.get(index, [])
            limit = floors.get(index, top) - (needs[index][1] if index in floors else 0)
            base = _free_base(busy, weights, limit, page)
            if base is None or not fits(index, base):
                break
            gathered += slack.get(source, 0)
            chosen = (back, base)
            if gathered >= wanted[index]:
                break
        if chosen is None or gathered < wanted[index] * 1:
            continue  # not enough unused DRAM time before: the next-layer prefetch only
        back, base = chosen
        source = order[back]
        bases[index] = base
        for layer in order[back:k]:
            reserved.setdefault(layer, []).append((base, base + weights))
            slack[layer] = 0
        starts[index] = source
        if k + 1 < len(order):  # the next layer's base was chosen beside the old one
            nxt = order[k + 1]
            bases[nxt] = choose_base(needs, (index, base), nxt, top, floors, True,
                                     order[k + 2] if k + 2 < len(order) else None)
    return starts


def plan_ocm(model: ModelOp, prefetch: bool = True) -> tuple[dict[BufferOp, list[int]], int]:
    """(byte address of every slot of every buffer, ocm_end) of a model (module docstring)."""
    placed, top, _ = plan_prefetch(model, prefetch)
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
