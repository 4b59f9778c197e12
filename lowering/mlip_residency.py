"""`mlip-residency`: keep activations in OCM between layers (TILE_COPY instead of DRAM).

Input: an `mlip.model` straight from convert-mrvl-to-mlip (per-tile `mlip.block`s, buffers
unallocated, no section). Output: the same model where every activation tensor chosen by the
plan below lives in a per-tile **resident buffer** (`mlip.buffer kind = resident, layer = P,
last = L`: P the producing layer, L the last consuming layer) instead of the DRAM scratch
region:

- the producer's `dma_store`s of the tensor become `mlip.tile_copy`s from the same output
  slot into the resident buffer of every tile that reads those rows (one copy per group of
  destination tiles with the same band offset; the own tile's bit is a local copy; a store
  whose rows nobody reads becomes a DMA_OUT `nop`); they run on DMA_OUT with the store's
  tokens, and the barrier after layer P orders them before every consumer's reads;
  **direct write**: when the store's rows lie in the own tile's band and one compute op
  writes exactly its box densely (`_direct_writer`), that op writes the band itself (pixel
  or row stride = the tensor's channels) and the copies to the other tiles read the band;
- the consumers' `dma_load`s of the tensor are deleted (a DMA_IN `nop` keeps the block's
  token protocol when it was the block's only load) and the compute operands that read the
  loaded slot point straight into the resident buffer (same layout, shifted offset).

Resident layout: per consuming tile t a band of the tensor's flat rows `[lo_t, hi_t)` (rows
of the (N*H) dimension, all columns and channels, the tensor's dense DRAM layout), the
union of the rows t's loads read (its row band plus halos; all rows for a channel split);
the buffer is the largest band on any tile, at the same address on every tile.

Which tensors (`plan_residency`): a scratch tensor qualifies when every load comes after
each store it overlaps (one producer layer, or several: a Concat's output written in
place), no DMA converts it, every box is a band of whole-row boxes
(`dim0 = 1`), its rows are whole 16-byte granules, and every load can be read in place:
its OCM box has the DRAM box's layout (any reader), or it is a channel range of
whole-width rows read by CONV / POOL (`in_pix_stride` becomes the tensor's channels), or
a strided gather read by 1x1 stride-1 unpadded convs (which then take the gather's
strides as `sh` / `sw` over the band's rows: the same products in the same order). A
column band, a broadcast or an input loaded once for several blocks keeps the tensor in
DRAM. Qualifying tensors are taken greedily by **DRAM bytes
saved per OCM byte-layer** (store plus load bytes over buffer bytes x live layers), each
kept only if the resident buffers still fit beside every layer's own buffers
(`mlip_ocm_alloc.place_residents`: interval first-fit from the top of the OCM; a layer's
weights and scratch must stay below the lowest resident live at it), counting as free the
consumers' input slots that the chosen tensors' rewrite leaves unused. The rest spill: they
keep today's DRAM path unchanged. Arithmetic is unchanged (TILE_COPY is a bit copy).
**Channel bands**: when every load of a tile reads one channel range of whole-width rows
into a dense box, the tile's band holds just those channels (`TensorPlan.chans`) and the
stores become TILE_COPYs of their rows x channel intersection (`_copy_into_channel_bands`).

Placement: a tensor that does not fit with the resident buffers placed in the order
chosen may fit with the buffers live during its layers re-sorted (`LOCAL_ORDERS`), taken
when the weight prefetch that costs is under half the DRAM bytes it saves
(`PREFETCH_EXCHANGE`, `prefetch_heads`; the saved bytes valued with a floor,
`mlip_cost.valued_dram_rate`). A tensor read by several layers that does not fit
whole may stay as one buffer per consumer layer (`TensorPlan.groups`, `_group_plans`:
each live from the producer to its layer; the stores copy into every one), a strided 1x1
conv's buffer **gathered** (only the rows and columns it reads, densely), under the same
rule.

Before planning, `concat_in_place` aliases every Concat input that is copied unchanged
along the channels to its slice of the output (its producers store there, the Concat's
copies of it go), so a resident Concat output is filled by its producers' copies and the
Concat moves no data. `dram_report` says, per tensor still moved by a DMA, why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, SymbolRefAttr, i64
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass

from mrvl import mlip_isa as isa
from mrvl.dialects.mlip import (
    DTYPE_BY_NAME,
    BlockOp,
    BufferOp,
    DmaLoadOp,
    DmaStoreOp,
    InstructionOp,
    LayerOp,
    ModelOp,
    NopOp,
    TileCopyOp,
    i64_attr,
    str_attr,
)
from mrvl.lowering.mlip_cost import valued_dram_rate
from mrvl.lowering.mlip_ocm_alloc import (
    Resident,
    layer_pages,
    place_residents,
    prefetch_heads,
    resident_floors,
    resident_requests,
)

GRANULE = 16


def _ival(op: InstructionOp, name: str, default: int = 0) -> int:
    attr = op.properties.get(name)
    return default if attr is None else attr.value.data  # type: ignore[union-attr]


@dataclass
class Box:
    """A DMA's DRAM box as flat rows [r0, r0 + rows) of its tensor, the element column
    `col` inside the row, and the op (with its layer and tile)."""

    op: DmaLoadOp | DmaStoreOp
    layer: int
    tile: int
    r0: int
    rows: int
    col: int
    view: View | None = None
    writer: InstructionOp | None = None
    """For a store: the compute op that writes its slot and can write the resident band
    directly instead (`_direct_writer`); None keeps the slot and a TILE_COPY from it."""


@dataclass(frozen=True)
class View:
    """How a CONV / POOL reads a load's box in place when the box's OCM layout is not the
    band's: pixel stride `channels` (the tensor's), every `sh`-th row and `sw`-th column of
    the `width`-pixel rows (a strided 1x1 conv's gather), `ih` rows of the band."""

    channels: int
    width: int
    sh: int
    sw: int
    ih: int


@dataclass
class TensorPlan:
    """One tensor's residency: rows of `row_elems` elements of `esize` bytes, the
    producer layer, the last consumer layer and each consuming tile's band of rows."""

    name: str
    row_elems: int
    esize: int
    producer: int
    last: int
    bands: dict[int, tuple[int, int]]
    saved_bytes: int
    channels: int = 1
    stores: list[Box] = field(default_factory=list)
    loads: list[Box] = field(default_factory=list)
    freed: dict[int, int] = field(default_factory=dict)
    """OCM bytes of the consumer layers' input slots the rewrite frees (by layer)."""
    chans: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Channel bands: per tile the channels [first, end) its band holds (every load of the
    tile reads exactly those, whole-width rows); empty: every tile holds all channels."""
    label: str = ""
    """The resident buffer's label (`res_<tensor>`, `res_<tensor>_<k>` for a group)."""
    gather: tuple[int, int] = (1, 1)
    """A gathered group: the band holds every `gather[0]`-th row and `gather[1]`-th
    column of the tensor (what a strided 1x1 conv reads), densely: rows of `row_elems`
    elements, `source_row_elems` those of the tensor."""
    source_row_elems: int = 0
    groups: list[TensorPlan] = field(default_factory=list)
    """When the tensor does not fit whole: one plan per consumer layer, each a buffer with
    the bands of that layer's loads, live from the producer to that layer (its stores copy
    into every group's buffer); see `_group_plans`."""

    def tile_channels(self, tile: int) -> tuple[int, int]:
        return self.chans.get(tile, (0, self.channels))

    def tile_row_elems(self, tile: int) -> int:
        """Elements of one row of the tile's band (all pixels, the tile's channels)."""
        first, end = self.tile_channels(tile)
        return self.row_elems // self.channels * (end - first)

    @property
    def size(self) -> int:
        return max(((hi - lo) * self.tile_row_elems(tile) * self.esize
                     for tile, (lo, hi) in self.bands.items()),
                   default=self.row_elems * self.esize)

    @property
    def score(self) -> float:
        """DRAM bytes saved per OCM byte-layer."""
        return self.saved_bytes / (max(self.size, 1) * (self.last - self.producer + 1))

    def request(self) -> Resident:
        return Resident(self.size, self.producer, self.last)


def _box(op: DmaLoadOp | DmaStoreOp, layer: int, tile: int, row_elems: int,
         esize: int) -> Box | None:
    """The op's DRAM box as whole-row boxes, or None (not a plain box of this tensor)."""
    props = op.properties
    if props["src"] != props["dst"] or "scale_flag" in props:
        return None
    dims = [_ival(op, f"dim{k}", 1) for k in range(4)]
    strides = [_ival(op, f"dram_stride{k}") for k in range(4)]
    if any(_ival(op, f"pad{k}") for k in range(4)):
        return None
    if any(_ival(op, f"src_dim{k}", dims[k]) != dims[k] for k in range(4)):
        return None
    offset = _ival(op, "dram_offset")
    if offset % esize or dims[0] != 1:
        return None
    elem = offset // esize
    if dims[1] > 1 and strides[1] != row_elems:
        return None
    col = elem % row_elems
    extent = col + (dims[2] - 1) * strides[2] + (dims[3] - 1) * strides[3] + 1
    if min(strides[2:]) < 0 or extent > row_elems:
        return None
    return Box(op, layer, tile, elem // row_elems, dims[1], col)


def _same_layout(op: DmaLoadOp) -> bool:
    """Does the load's OCM box have its DRAM box's layout (every dimension of size > 1)?"""
    return all(_ival(op, f"dim{k}", 1) == 1 or
               _ival(op, f"ocm_stride{k}") == _ival(op, f"dram_stride{k}") for k in range(1, 4))


def _view(load: DmaLoadOp, readers, width: int, channels: int, row_elems: int,
          esize: int) -> View | None:
    """The in-place view of a load whose box is a channel range of whole-width rows, or a
    strided gather of them read only by 1x1 stride-1 unpadded convs; None otherwise."""
    dims = [_ival(load, f"dim{k}", 1) for k in range(4)]
    strides = [_ival(load, f"dram_stride{k}") for k in range(4)]
    ocm = [_ival(load, f"ocm_stride{k}") for k in range(4)]
    if dims[0] != 1 or strides[3] != 1 or (dims[2] > 1 and strides[2] % channels):
        return None
    if (dims[1] > 1 and ocm[1] != dims[2] * dims[3]) or (dims[2] > 1 and ocm[2] != dims[3]) \
            or (dims[3] > 1 and ocm[3] != 1):
        return None
    if dims[2] > 1 and strides[1] != 0 and dims[1] > 1 and strides[1] % row_elems:
        return None
    sw = strides[2] // channels if dims[2] > 1 else 1
    sh = strides[1] // row_elems if dims[1] > 1 else 1
    col = _ival(load, "dram_offset") // esize % row_elems
    if sw < 1 or sh < 1 or col + dims[3] > channels or (dims[2] - 1) * sw >= width:
        return None
    gather = (sh, sw) != (1, 1)
    if not gather and dims[2] != width:
        return None
    if not readers:
        return None
    for op, name in readers:
        if name != "in_addr" or op.name not in ("mlip.conv", "mlip.pool"):
            return None
        if _ival(op, "in_offset") != _ival(load, "ocm_offset"):
            return None
        if (_ival(op, "ih"), _ival(op, "iw"), _ival(op, "in_pix_stride")) != \
                (dims[1], dims[2], dims[3]):
            return None
        if gather and (op.name != "mlip.conv" or
                       any(_ival(op, k) != 1 for k in ("kh", "kw", "sh", "sw")) or
                       _ival(op, "pad_t") or _ival(op, "pad_l")):
            return None
    return View(channels, width, sh, sw, (dims[1] - 1) * sh + 1)


def _slot_key(op: InstructionOp, name: str) -> tuple[SSAValue, int] | None:
    value = op.ocm_operands().get(name)
    if value is None:
        return None
    return value, _ival(op, f"{name[:-len('_addr')]}_slot")


def _readers(block_ops: list[InstructionOp], load: DmaLoadOp) -> list[tuple[InstructionOp, str]] | None:
    """The (compute op, operand) pairs that read the load's slot, or None when the slot is
    also written by another op of the block (it cannot be replaced by a pointer)."""
    key = _slot_key(load, "ocm_addr")
    readers = []
    for op in block_ops:
        if op is load:
            continue
        for name in op.ocm_operands():
            if _slot_key(op, name) != key:
                continue
            if op.queue() != isa.Queue.COMPUTE or name == "out_addr":
                return None
            if _ival(op, f"{name[:-len('_addr')]}_offset") < _ival(load, "ocm_offset"):
                return None
            readers.append((op, name))
    return readers


def _shared_slot_tensors(blocks) -> set[str]:
    """Tensors loaded into a slot that a block without its own load of that slot reads
    (e.g. an FC input loaded once for all channel chunks): those loads stay."""
    loaded: dict[tuple[SSAValue, int], set[str]] = {}
    by_block = []
    for blk in blocks:
        keys = set()
        for op in blk.instructions():
            if isinstance(op, DmaLoadOp):
                key = _slot_key(op, "ocm_addr")
                assert key is not None
                keys.add(key)
                loaded.setdefault(key, set()).add(
                    op.properties["dram"].root_reference.data)  # type: ignore[union-attr]
        by_block.append((blk, keys))
    bad: set[str] = set()
    for blk, keys in by_block:
        for op in blk.instructions():
            if op.queue() != isa.Queue.COMPUTE:
                continue
            for name in op.ocm_operands():
                key = _slot_key(op, name)
                if key in loaded and key not in keys:
                    bad |= loaded[key]
    return bad


DENSE_OUTPUT = {
    "mlip.conv": (("oh", "ow"), "oc", "out_pix_stride"),
    "mlip.pool": (("oh", "ow"), "c", "out_pix_stride"),
    "mlip.eltwise": (("rows",), "cols", "out_row_stride"),
    "mlip.act": (("rows",), "cols", "out_row_stride"),
    "mlip.convert": (("rows",), "cols", "out_row_stride"),
    "mlip.copy": (("rows",), "cols", "out_row_stride"),
}
"""Compute ops whose output is pixels x channels at a pixel stride: (fields whose product
is the pixel count, channel-count field, pixel-stride field)."""


def _direct_writer(block_ops: list[InstructionOp], store: DmaStoreOp, box: Box,
                   width: int, channels: int) -> InstructionOp | None:
    """The one compute op that writes exactly the store's box into its slot, densely, when
    the box is whole-width rows (or part of one row with all channels): it can write the
    box straight into the band (pixel stride = the tensor's channels). None otherwise."""
    dims = [_ival(store, f"dim{k}", 1) for k in range(4)]
    if dims[2] != width and (dims[1] != 1 or dims[3] != channels):
        return None
    if (dims[1] > 1 and _ival(store, "ocm_stride1") != dims[2] * dims[3]) or \
            (dims[2] > 1 and _ival(store, "ocm_stride2") != dims[3]) or \
            (dims[3] > 1 and _ival(store, "ocm_stride3") != 1):
        return None
    key = _slot_key(store, "ocm_addr")
    writer = None
    for op in block_ops:
        if op is store:
            continue
        for name in op.ocm_operands():
            if _slot_key(op, name) != key:
                continue
            if name != "out_addr" or writer is not None or op.name not in DENSE_OUTPUT:
                return None
            writer = op
    if writer is None or _ival(writer, "out_offset") != _ival(store, "ocm_offset"):
        return None
    pixel_fields, channel_field, stride_field = DENSE_OUTPUT[writer.name]
    pixels = 1
    for name in pixel_fields:
        pixels *= _ival(writer, name, 1)
    if (pixels, _ival(writer, channel_field), _ival(writer, stride_field)) != \
            (dims[1] * dims[2], dims[3], dims[3]):
        return None
    return writer


def _channel_bands(loads, width: int, channels: int, row_elems: int, esize: int
                   ) -> dict[int, tuple[int, int]] | None:
    """Per tile the one channel range every load of the tile reads, when each load is
    whole-width rows of a channel range in a dense OCM box (the layout of a band holding
    just those channels) and some tile reads fewer than all channels; None otherwise."""
    found: dict[int, tuple[int, int]] = {}
    for op, _, tile, _ in loads:
        dims = [_ival(op, f"dim{k}", 1) for k in range(4)]
        strides = [_ival(op, f"dram_stride{k}") for k in range(4)]
        ocm = [_ival(op, f"ocm_stride{k}") for k in range(4)]
        offset = _ival(op, "dram_offset")
        if offset % esize or dims[0] != 1 or dims[2] != width:
            return None
        if (dims[1] > 1 and (strides[1] != row_elems or ocm[1] != width * dims[3])) or \
                (width > 1 and (strides[2] != channels or ocm[2] != dims[3])) or \
                (dims[3] > 1 and (strides[3] != 1 or ocm[3] != 1)):
            return None
        first = offset // esize % row_elems
        span = (first, first + dims[3])
        if span[1] > channels or found.setdefault(tile, span) != span:
            return None
        if width * dims[3] * esize % GRANULE:
            return None
    if all(span == (0, channels) for span in found.values()):
        return None
    return found


def _channel_store(op: DmaStoreOp, width: int, channels: int) -> bool:
    """Is a store a box of pixels x a channel range (what a channel-band copy moves)?"""
    dims = [_ival(op, f"dim{k}", 1) for k in range(4)]
    strides = [_ival(op, f"dram_stride{k}") for k in range(4)]
    first = _ival(op, "dram_offset") // max(1, isa.DTYPE_SIZE[isa.DType(
        DTYPE_BY_NAME[op.properties["src"].data])]) % channels  # type: ignore[union-attr]
    return (dims[2] == 1 or strides[2] == channels) and (dims[3] == 1 or strides[3] == 1) \
        and first + dims[3] <= channels and (dims[1] == 1 or dims[2] == width)


def _note(reasons: dict[str, str] | None, name: str, reason: str) -> None:
    if reasons is not None:
        reasons.setdefault(name, reason)


def candidate_tensors(model: ModelOp, reasons: dict[str, str] | None = None
                      ) -> list[TensorPlan]:
    """Every scratch tensor that can stay in OCM (module docstring), with its bands; the
    first reason each other tensor cannot is recorded in `reasons` when given."""
    tensors = model.tensors()
    aliased = {t.alias_of.data for t in tensors.values() if t.alias_of is not None}
    stores: dict[str, list[tuple[DmaStoreOp, int, int, list]]] = {}
    loads: dict[str, list[tuple[DmaLoadOp, int, int, list]]] = {}
    bad: set[str] = set(aliased)
    for name in aliased:
        _note(reasons, name, "another tensor aliases it")
    for layer in model.layers():
        index = layer.index.value.data
        shared = _shared_slot_tensors(layer.block_ops())
        for name in shared:
            _note(reasons, name, f"layer {layer.sym_name.data} loads it once for several "
                                 "blocks")
        bad.update(shared)
        for blk in layer.block_ops():
            tile = blk.tile.value.data
            ops = blk.instructions()
            for op in ops:
                if not isinstance(op, (DmaLoadOp, DmaStoreOp)):
                    continue
                name = op.properties["dram"].root_reference.data  # type: ignore[union-attr]
                if isinstance(op, DmaStoreOp):
                    stores.setdefault(name, []).append((op, index, tile, ops))
                    continue
                readers = _readers(ops, op)
                if readers is None:
                    _note(reasons, name, f"layer {layer.sym_name.data} writes or DMAs its "
                                         "loaded slot")
                    bad.add(name)
                else:
                    loads.setdefault(name, []).append((op, index, tile, readers))
    plans = []
    for name, writes in stores.items():
        t = tensors.get(name)
        if t is None or name in bad or t.region.data != "scratch":
            continue
        if name not in loads:
            _note(reasons, name, "no layer of this sub-graph loads it")
            continue
        shape = (1, 1, 1, 1, *t.shape_tuple())[-4:]
        row_elems = shape[2] * shape[3]
        esize = isa.DTYPE_SIZE[isa.DType(DTYPE_BY_NAME[t.dtype.data])]
        if row_elems * esize % GRANULE:
            _note(reasons, name, "its rows are not whole 16-byte granules")
            continue
        p = min(index for _, index, _, _ in writes)
        plan = TensorPlan(name, row_elems, esize, p, p, {}, 0, shape[3])
        ok = True
        for op, index, tile, _ in writes:
            box = _box(op, index, tile, row_elems, esize)
            if box is None:
                _note(reasons, name, "a store is not a box of whole rows")
                ok = False
                break
            plan.stores.append(box)
        chans = _channel_bands(loads[name], shape[2], shape[3], row_elems, esize)
        if chans is not None and all(_channel_store(box.op, shape[2], shape[3])
                                     for box in plan.stores):
            plan.chans = chans
        for op, index, tile, readers in loads[name] if ok else []:
            if plan.chans:
                elem = _ival(op, "dram_offset") // esize
                box = Box(op, index, tile, elem // row_elems, _ival(op, "dim1", 1),
                          elem % row_elems)
            else:
                box = _box(op, index, tile, row_elems, esize) if _same_layout(op) else None
            if box is None:
                view = _view(op, readers, shape[2], shape[3], row_elems, esize)
                if view is not None:
                    elem = _ival(op, "dram_offset") // esize
                    box = Box(op, index, tile, elem // row_elems, view.ih, elem % row_elems,
                              view)
            early = box is not None and index <= p or box is not None and any(
                store.layer >= index and _overlap(store, box, shape[3])
                for store in plan.stores)
            if box is None or early:
                _note(reasons, name, _load_reason(model, op, readers, index, early, shape))
                ok = False
                break
            plan.loads.append(box)
            lo, hi = plan.bands.get(tile, (box.r0, box.r0 + box.rows))
            plan.bands[tile] = (min(lo, box.r0), max(hi, box.r0 + box.rows))
            plan.last = max(plan.last, index)
        if not ok:
            continue
        plan.saved_bytes = sum(_dram_bytes(b.op) for b in plan.stores + plan.loads)
        for box, (_, _, _, block_ops) in zip(plan.stores, writes, strict=True):
            lo, hi = plan.bands.get(box.tile, (0, 0))
            # only rows no other tile reads: with copies to other tiles as well, the copies
            # wait for the whole box either way and the measured cycles went up
            others = [tile for tile, (a, b) in plan.bands.items()
                      if tile != box.tile and a < box.r0 + box.rows and box.r0 < b]
            if lo <= box.r0 and box.r0 + box.rows <= hi and not others and not plan.chans:
                box.writer = _direct_writer(block_ops, box.op, box, shape[2], shape[3])
        # a direct write's output slot is not counted as freed: apply_residency keeps it,
        # so the layer's OCM placement (and its weight prefetch) stays as it was
        plan.freed = _freed_bytes(model, [(op, readers) for op, _, _, readers in loads[name]])
        plan.label = f"res_{name}"
        readers_of = {id(op): readers for op, _, _, readers in loads[name]}
        plan.groups = _group_plans(model, plan, shape, readers_of)
        plans.append(plan)
    return plans


def _group_plans(model: ModelOp, plan: TensorPlan, shape, readers_of) -> list[TensorPlan]:
    """A tensor read by several layers as one resident buffer per consumer layer: each
    holds the bands that layer's loads read and lives from the producer to that layer, so
    a late consumer's band does not hold the OCM of an early one's (a residual read whole
    by a channel-split downsample conv, in rows by the next block). A layer whose loads
    are all strided gathers of whole gathered rows (a strided 1x1 conv) gets a gathered
    band: only the rows and columns it reads, densely (a quarter for stride 2), read as
    the DMA's gathered box was. Empty when the tensor has one consumer layer, channel
    bands, or a store that is not a box of pixels x channels (`_channel_store`)."""
    layers = sorted({box.layer for box in plan.loads})
    width, channels = shape[2], shape[3]
    if len(layers) < 2 or plan.chans or \
            not all(_channel_store(box.op, width, channels) for box in plan.stores):
        return []
    stores = [replace(box, writer=None) for box in plan.stores]
    groups = []
    for k, layer in enumerate(layers):
        boxes = [box for box in plan.loads if box.layer == layer]
        group = TensorPlan(plan.name, plan.row_elems, plan.esize, plan.producer, layer, {},
                           0, channels, stores, [], label=f"{plan.label}_{k}")
        gathered = _gathered_boxes(boxes, shape, plan.esize)
        if gathered is not None:
            (sh, sw), boxes = gathered
            group.gather = (sh, sw)
            group.source_row_elems = plan.row_elems
            group.row_elems = ((width - 1) // sw + 1) * channels
        for box in boxes:
            lo, hi = group.bands.get(box.tile, (box.r0, box.r0 + box.rows))
            group.bands[box.tile] = (min(lo, box.r0), max(hi, box.r0 + box.rows))
        group.loads = boxes
        group.freed = _freed_bytes(model, [(box.op, readers_of[id(box.op)]) for box in boxes])
        groups.append(group)
    groups[0].saved_bytes = plan.saved_bytes
    return groups


def _gathered_boxes(boxes: list[Box], shape, esize: int
                    ) -> tuple[tuple[int, int], list[Box]] | None:
    """((sh, sw), the boxes in gathered rows) when every box is a strided gather (`View`)
    of whole gathered rows of all channels, starting on the gather's lattice, with one
    (sh, sw), and a pixel's channels fill whole 16-byte granules (copies from different
    tiles then never share one); None otherwise."""
    images, height, width, channels = shape
    if channels * esize % GRANULE:
        return None
    strides = {(box.view.sh, box.view.sw) if box.view is not None else (1, 1)
               for box in boxes}
    if len(strides) != 1 or strides == {(1, 1)}:
        return None
    sh, sw = strides.pop()
    if images > 1 and height % sh:
        return None  # flat rows of several images stay on the lattice only then
    out = []
    for box in boxes:
        pixel, channel = divmod(box.col, channels)
        dims = [_ival(box.op, f"dim{k}", 1) for k in range(4)]
        if box.r0 % sh or pixel or channel or dims[3] != channels or \
                dims[2] != (width - 1) // sw + 1:
            return None
        out.append(Box(box.op, box.layer, box.tile, box.r0 // sh, dims[1], 0))
    return (sh, sw), out


def _pixels_channels(box: Box, channels: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pixels [first, end) and channels [first, end) of its rows a box touches
    (conservatively: every pixel and channel between the first and the last)."""
    pixel, channel = divmod(box.col, channels)
    count2, stride2 = _ival(box.op, "dim2", 1), _ival(box.op, "dram_stride2")
    count3, stride3 = _ival(box.op, "dim3", 1), _ival(box.op, "dram_stride3")
    channel_end = channel + (count3 - 1) * stride3 + 1
    if count2 == 1 or stride2 % channels == 0 and channel_end <= channels:
        pixel_end = pixel + (count2 - 1) * (stride2 // channels) + 1
        return (pixel, pixel_end), (channel, channel_end)
    end = box.col + (count2 - 1) * stride2 + (count3 - 1) * stride3 + 1
    return (pixel, -(-end // channels)), (0, channels)


def _overlap(a: Box, b: Box, channels: int) -> bool:
    """Do two boxes of a tensor share an element (conservatively)?"""
    if a.r0 >= b.r0 + b.rows or b.r0 >= a.r0 + a.rows:
        return False
    (ap, ac), (bp, bc) = _pixels_channels(a, channels), _pixels_channels(b, channels)
    return ap[0] < bp[1] and bp[0] < ap[1] and ac[0] < bc[1] and bc[0] < ac[1]


def _load_reason(model: ModelOp, load: DmaLoadOp, readers, index: int, early: bool,
                 shape) -> str:
    """Why one load of a tensor cannot be read in place (for `dram_report`)."""
    layer = next(lay for lay in model.layers() if lay.index.value.data == index)
    where = f"layer {layer.sym_name.data}"
    if early:
        return f"{where} loads it before or while it is stored"
    kinds = sorted({op.name.removeprefix("mlip.") for op, _ in readers}) or ["nothing"]
    dims = [_ival(load, f"dim{k}", 1) for k in range(4)]
    if dims[0] != 1:
        return f"{where} loads several images in one box"
    if _ival(load, "dram_stride1") == 0 or _ival(load, "dram_stride2") == 0:
        return f"{where} broadcasts it"
    if dims[2] != shape[2] and dims[2] > 1:
        return f"{where} ({'/'.join(kinds)}) reads a column band"
    if dims[3] != shape[3]:
        return f"{where} ({'/'.join(kinds)}) reads a channel range"
    return f"{where} ({'/'.join(kinds)}) reads it in another layout"


def _freed_bytes(model: ModelOp, loads) -> dict[int, int]:
    """Per layer, the page-rounded bytes of the scratch buffers that only these loads and
    their readers use (the rewrite leaves them unused; `apply_residency` erases them)."""
    page = model.page_size.value.data
    removed: set[tuple[InstructionOp, str]] = set()  # operands the rewrite drops
    buffers: set[BufferOp] = set()
    for load, readers in loads:
        for op, name in ((load, "ocm_addr"), *readers):
            removed.add((op, name))
            buffers.add(op.ocm_operands()[name].owner)  # type: ignore[arg-type]
    freed: dict[int, int] = {}
    for buf in buffers:
        if buf.kind.data != "scratch":
            continue
        if all((use.operation, list(use.operation.named_operands())[use.index]) in removed
               for use in buf.result.uses if isinstance(use.operation, InstructionOp)):
            layer = buf.layer.value.data
            size = -(-max(buf.size.value.data, 1) // page) * page * buf.slots.value.data
            freed[layer] = freed.get(layer, 0) + size
    return freed


def _dram_bytes(op: InstructionOp) -> int:
    count = 1
    for k in range(4):
        count *= _ival(op, f"dim{k}", 1)
    return count * isa.DTYPE_SIZE[isa.DType(DTYPE_BY_NAME[op.properties["src"].data])]  # type: ignore[union-attr]


def _floors(requests: list[Resident], needs: dict[int, int], freed: dict[int, int],
            ocm_size: int, page: int) -> dict[int, int] | None:
    """The resident floor of every layer with residents live (`resident_floors`) when the
    resident buffers, placed in this order, leave every layer its own buffers; else None."""
    addrs = place_residents(requests, ocm_size, page)
    if addrs is None:
        return None
    floors = resident_floors(requests, addrs, ocm_size)
    if any(needs.get(layer, 0) - freed.get(layer, 0) > floor
           for layer, floor in floors.items()):
        return None
    return floors


LOCAL_ORDERS = (
    lambda req: (req.first - req.last, -req.size, req.first),
    lambda req: (req.first, -req.size, req.last),
    lambda req: (-req.size, req.first, req.last),
)
"""When a tensor does not fit with the resident buffers placed in the order they were
chosen (first-fit fragments the top of the OCM), the buffers live at some layer of its
range are tried again in these orders (earliest first, then largest first), in the
places they held in the placement order; the others keep theirs. Re-sorting every
buffer fitted more but moved the floors the layers' weight bases are chosen under
(ResNet-50 lost weight prefetch and got slower)."""


def _orders(labels: list[str], requests: list[Resident], new: Resident):
    """The placement orders to try for `labels` / `requests` (the last one `new`): as
    they are, then with the buffers overlapping `new`'s live layers re-sorted
    (`LOCAL_ORDERS`)."""
    yield labels, requests
    inside = [k for k, req in enumerate(requests)
              if not (req.last < new.first or new.last < req.first)]
    for key in LOCAL_ORDERS:
        ranked = iter(sorted(inside, key=lambda k: key(requests[k])))
        order = [next(ranked) if k in inside else k for k in range(len(requests))]
        yield [labels[k] for k in order], [requests[k] for k in order]


PREFETCH_EXCHANGE = 2
"""A re-sorted placement (`plan_residency`) may cost the next-layer prefetch at most 1 /
PREFETCH_EXCHANGE of the DRAM bytes its tensor saves: a weight byte no longer loaded
before the barrier waits after it, while the saved loads and stores overlapped their
layers' compute in part. (With 1, the SSD detector at 1 tile kept a tensor and lost more
prefetch than it gained: 1 911 126 -> 1 926 726 cycles.) The saved bytes are scaled by
machine rate / `valued_dram_rate` (1 up to 32 GB/s, 2 at 64): a DRAM byte is worth at
least its time at 32 GB/s, so at 64 GB/s ResNet-50 keeps stage 2's residual on chip."""


def plan_residency(model: ModelOp) -> tuple[list[TensorPlan], list[str]]:
    """The tensors to keep in OCM (module docstring: greedy by DRAM bytes saved per OCM
    byte-layer, each kept only if everything still fits) and the order to place all
    resident buffers in: labels, earlier rounds' and `res_<tensor>` of the chosen. A
    tensor that does not fit with the buffers in that order may fit re-sorted
    (`LOCAL_ORDERS`): the one whose layers' weights prefetch the most (`prefetch_heads`),
    taken when the prefetched bytes it loses are under 1 / PREFETCH_EXCHANGE of the
    tensor's saved DRAM bytes (re-sorting moves the floors the weight bases are chosen
    under; appending a buffer moves no other)."""
    ocm_size = model.ocm_size.value.data
    page = model.page_size.value.data
    pages = layer_pages(model)
    needs = {index: low + high for index, (low, high) in pages.items()}
    tiles = model.num_tiles.value.data  # prefetch heads are per tile, saved bytes in all
    machine = model.machine_record()  # saved bytes valued with a floor (`valued_dram_rate`)
    value = machine.dram_bytes_per_cycle / valued_dram_rate(machine)
    bufs, requests = resident_requests(model)  # residents of an earlier round stay first
    labels = [buf.label.data for buf in bufs]
    chosen: list[TensorPlan] = []
    freed: dict[int, int] = {}
    floors = _floors(requests, needs, freed, ocm_size, page) or {}
    heads: int | None = None  # prefetched bytes under `floors`, computed when needed
    for plan in sorted(candidate_tensors(model), key=lambda p: (-p.score, p.name)):
        for unit in ([plan], plan.groups):  # whole, else one buffer per consumer layer
            if not unit:
                continue
            trial_freed = dict(freed)
            for part in unit:
                for layer, size in part.freed.items():
                    trial_freed[layer] = trial_freed.get(layer, 0) + size
            new = Resident(sum(part.size for part in unit), plan.producer, plan.last)
            best = None
            for rank, (trial_labels, trial_requests) in enumerate(_orders(
                    labels + [part.label for part in unit],
                    requests + [part.request() for part in unit], new)):
                found = _floors(trial_requests, needs, trial_freed, ocm_size, page)
                if found is None:
                    continue
                if rank == 0 and len(unit) == 1:  # a whole tensor in the order chosen
                    best = (None, trial_labels, trial_requests, found)
                    break
                if heads is None:
                    heads = sum(prefetch_heads(pages, ocm_size, floors).values())
                kept = sum(prefetch_heads(pages, ocm_size, found).values())
                if (heads - kept) * tiles * PREFETCH_EXCHANGE < plan.saved_bytes * value and \
                        (best is None or kept > best[0]):
                    best = (kept, trial_labels, trial_requests, found)
            if best is not None:
                chosen.extend(unit)
                heads, labels, requests, floors = best
                freed = trial_freed
                break
    return chosen, labels


def _header(op: InstructionOp) -> dict:
    return {"src": op.properties["src"], "dst": op.properties["dst"],
            "layer": op.properties["layer"]}


def _set_operand(op: InstructionOp, name: str, value: SSAValue, slot: int, offset: int) -> None:
    named = list(op.named_operands())
    operands = list(op.operands)
    operands[named.index(name)] = value
    op.operands = operands
    base = name[:-len("_addr")]
    op.properties[f"{base}_slot"] = i64_attr(slot)
    op.properties[f"{base}_offset"] = i64_attr(offset)


def _store_copies(plan: TensorPlan, box: Box, resident: SSAValue) -> list[InstructionOp]:
    """The TILE_COPYs that replace one store for a plan: into the bands that need its
    rows, or none (a direct write: its compute is pointed at the own band)."""
    op = box.op
    es = plan.esize
    new_ops: list[InstructionOp] = []
    if box.writer is not None:  # only the own tile reads these rows (candidate_tensors)
        own_row = box.r0 - plan.bands[box.tile][0]
        _set_operand(box.writer, "out_addr", resident, 0,
                     (own_row * plan.row_elems + box.col) * es)
        box.writer.properties[DENSE_OUTPUT[box.writer.name][2]] = i64_attr(plan.channels)
    if plan.chans:
        return _copy_into_channel_bands(plan, box, resident)
    if plan.gather != (1, 1):
        return _copy_into_gathered(plan, box, resident)
    groups: dict[tuple[int, int, int], int] = {}  # (first row, rows, band offset) -> mask
    for tile, (lo, hi) in sorted(plan.bands.items()):
        a, b = max(box.r0, lo), min(box.r0 + box.rows, hi)
        if a < b and box.writer is None:
            key = (a, b - a, a - lo)
            groups[key] = groups.get(key, 0) | (1 << tile)
    for (a, rows, band_row), mask in groups.items():
        new_ops.append(_tile_copy(
            op, resident, mask,
            _ival(op, "ocm_offset") + (a - box.r0) * _ival(op, "ocm_stride1") * es,
            (band_row * plan.row_elems + box.col) * es,
            (1, rows, _ival(op, "dim2", 1), _ival(op, "dim3", 1)),
            tuple(_ival(op, f"dram_stride{k}") for k in range(4))))
    return new_ops


def _tile_copy(op: InstructionOp, resident: SSAValue, mask: int, src_offset: int,
               dst_offset: int, dims: tuple[int, ...], dst_strides: tuple[int, ...],
               src_strides: tuple[int, ...] | None = None) -> TileCopyOp:
    """A TILE_COPY of the box `dims` of store `op`'s OCM slot (its own strides unless
    `src_strides`, from `src_offset` bytes) into the resident buffer of every tile in
    `mask`."""
    if src_strides is None:
        src_strides = tuple(_ival(op, f"ocm_stride{k}") for k in range(4))
    props = {**_header(op), "dst_tile_mask": i64_attr(mask),
             "src_slot": op.properties["ocm_slot"], "src_offset": i64_attr(src_offset),
             "dst_slot": i64_attr(0), "dst_offset": i64_attr(dst_offset)}
    for k in range(4):
        props[f"dim{k}"] = i64_attr(dims[k])
        props[f"src_stride{k}"] = i64_attr(src_strides[k])
        props[f"dst_stride{k}"] = i64_attr(dst_strides[k])
    return TileCopyOp.build(props, {"src_addr": op.ocm_operands()["ocm_addr"],
                                    "dst_addr": resident})


def _replace_store(op: InstructionOp, new_ops: list[InstructionOp]) -> None:
    """Put `new_ops` (a DMA_OUT NOP when empty: the queue keeps its token) in store `op`'s
    place."""
    block = op.parent_block()
    assert block is not None
    if not new_ops:
        new_ops.append(NopOp.build({**_header(op), "queue": str_attr("dma_out")}, {}))
    block.insert_ops_before(new_ops, op)
    op.detach()
    op.erase()


def _copy_into_gathered(plan: TensorPlan, box: Box, resident: SSAValue
                        ) -> list[InstructionOp]:
    """The TILE_COPYs of one store's rows and columns on the gather's lattice into the
    gathered bands that hold them (`TensorPlan.gather`): the copy steps over the slot's
    rows and pixels by the gather's strides; tiles with the same band offset share one."""
    op = box.op
    es = plan.esize
    sh, sw = plan.gather
    pixel, channel = divmod(box.col, plan.channels)
    count2, count3 = _ival(op, "dim2", 1), _ival(op, "dim3", 1)
    first_row, end_row = -(-box.r0 // sh), -(-(box.r0 + box.rows) // sh)
    first_pixel, end_pixel = -(-pixel // sw), -(-(pixel + count2) // sw)
    if end_pixel <= first_pixel:
        return []
    groups: dict[tuple[int, int, int], int] = {}
    for tile, (lo, hi) in sorted(plan.bands.items()):
        a, b = max(first_row, lo), min(end_row, hi)
        if a < b:
            key = (a, b - a, a - lo)
            groups[key] = groups.get(key, 0) | (1 << tile)
    strides = [_ival(op, f"ocm_stride{k}") for k in range(4)]
    new_ops: list[InstructionOp] = []
    for (a, rows, band_row), mask in groups.items():
        src_offset = _ival(op, "ocm_offset") + ((a * sh - box.r0) * strides[1]
                                                + (first_pixel * sw - pixel) * strides[2]) * es
        new_ops.append(_tile_copy(
            op, resident, mask, src_offset,
            (band_row * plan.row_elems + first_pixel * plan.channels + channel) * es,
            (1, rows, end_pixel - first_pixel, count3),
            (rows * plan.row_elems, plan.row_elems, plan.channels, 1),
            (strides[0], strides[1] * sh, strides[2] * sw, strides[3])))
    return new_ops


def _copy_into_channel_bands(plan: TensorPlan, box: Box, resident: SSAValue
                             ) -> list[InstructionOp]:
    """The TILE_COPYs of one store's rows x channels into the channel bands of the tiles
    that hold some of them (tiles with the same band offset and channels share one)."""
    op = box.op
    es = plan.esize
    width = plan.row_elems // plan.channels
    pixel, channel = divmod(box.col, plan.channels)
    count2, count3 = _ival(op, "dim2", 1), _ival(op, "dim3", 1)
    groups: dict[tuple[int, ...], int] = {}
    for tile, (lo, hi) in sorted(plan.bands.items()):
        a, b = max(box.r0, lo), min(box.r0 + box.rows, hi)
        first, end = plan.tile_channels(tile)
        c0, c1 = max(channel, first), min(channel + count3, end)
        if a < b and c0 < c1:
            key = (a, b - a, a - lo, c0, c1, first, end - first)
            groups[key] = groups.get(key, 0) | (1 << tile)
    new_ops: list[InstructionOp] = []
    for (a, rows, band_row, c0, c1, first, held), mask in groups.items():
        src_offset = _ival(op, "ocm_offset") + ((a - box.r0) * _ival(op, "ocm_stride1")
                                                + (c0 - channel) * _ival(op, "ocm_stride3")) * es
        new_ops.append(_tile_copy(
            op, resident, mask, src_offset,
            (band_row * width * held + pixel * held + c0 - first) * es,
            (1, rows, count2, c1 - c0), (rows * width * held, width * held, held, 1)))
    return new_ops


def _rewrite_load(plan: TensorPlan, box: Box, resident: SSAValue) -> None:
    """Delete one load; its readers read the resident band in place."""
    op = box.op
    block = op.parent_block()
    assert block is not None
    ops = [o for o in block.ops if isinstance(o, InstructionOp)]
    readers = _readers(ops, op)
    assert readers is not None
    lo = plan.bands[box.tile][0]
    pixel, channel = divmod(box.col, plan.channels)
    first, end = plan.tile_channels(box.tile)
    position = (box.r0 - lo) * plan.tile_row_elems(box.tile) + pixel * (end - first) \
        + channel - first
    shift = position * plan.esize - _ival(op, "ocm_offset")
    for reader, name in readers:
        base = name[:-len("_addr")]
        _set_operand(reader, name, resident, 0, _ival(reader, f"{base}_offset") + shift)
        view = box.view
        if view is not None:  # same taps in the same order, read from the band's layout
            props = reader.properties
            props["in_pix_stride"] = i64_attr(view.channels)
            if (view.sh, view.sw) != (1, 1):
                props["ih"] = i64_attr(view.ih)
                props["iw"] = i64_attr(view.width)
                props["sh"] = i64_attr(view.sh)
                props["sw"] = i64_attr(view.sw)
    others = [o for o in ops if o is not op and o.queue() == isa.Queue.DMA_IN]
    if not others:
        block.insert_op_before(NopOp.build({**_header(op), "queue": str_attr("dma_in")}, {}),
                               op)
    op.detach()
    op.erase()


def apply_residency(model: ModelOp, plans: list[TensorPlan],
                    order: list[str] | None = None) -> None:
    """Rewrite the model for the chosen tensors (module docstring); `order`: the labels of
    all resident buffers in the order the allocator is to place them (None: earlier ones
    first, then the chosen in plan order)."""
    # resident buffers go before every layer (they are used by several), after those of
    # earlier rounds (the allocator places them in this order)
    body = model.body.block
    residents = [b for b in model.buffers() if b.kind.data == "resident"]
    anchor = residents[-1] if residents else None
    first = next(op for op in body.ops if isinstance(op, (BufferOp, LayerOp)))
    kept: set[BufferOp] = set()  # output slots left unused by direct writes: kept so that
    # the layer's OCM placement (and its weight prefetch) stays as it was
    copies: dict[int, tuple[DmaStoreOp, list[InstructionOp]]] = {}  # per store, in order
    for plan in plans:
        buf = BufferOp.build(plan.label or f"res_{plan.name}", plan.size, 1, "resident",
                             plan.producer)
        buf.last = i64_attr(plan.last)
        if anchor is None:
            body.insert_op_before(buf, first)
        else:
            body.insert_op_after(buf, anchor)
        anchor = buf
        for box in plan.loads:
            _rewrite_load(plan, box, buf.result)
        for box in plan.stores:
            if box.writer is not None:
                kept.add(box.writer.ocm_operands()["out_addr"].owner)
            new_ops = _store_copies(plan, box, buf.result)
            copies.setdefault(id(box.op), (box.op, []))[1].extend(new_ops)
    for store, new_ops in copies.values():  # a tensor in groups: every group's copies
        _replace_store(store, new_ops)
    tensors = model.tensors()
    for name in dict.fromkeys(plan.name for plan in plans):
        model.body.block.erase_op(tensors[name])  # no DMA names it any more
    for buf in model.buffers():
        if buf.kind.data == "scratch" and not buf.result.uses and buf not in kept:
            model.body.block.erase_op(buf)  # a slot only the deleted loads filled
    if order is not None:
        _reorder_residents(model, order)


def _reorder_residents(model: ModelOp, order: list[str]) -> None:
    """Put the resident buffer ops in the order of their labels in `order` (the allocator
    places them in IR order); they stay before every other buffer and layer."""
    bufs = resident_requests(model)[0]
    position = {label: k for k, label in enumerate(order)}
    ranked = sorted(bufs, key=lambda buf: position[buf.label.data])
    if ranked == bufs:
        return
    body = model.body.block
    resident = {id(buf) for buf in bufs}
    anchor = next((op for op in body.ops if isinstance(op, (BufferOp, LayerOp))
                   and id(op) not in resident), None)
    for buf in ranked:
        buf.detach()
        if anchor is None:
            body.add_op(buf)
        else:
            body.insert_op_before(buf, anchor)


@dataclass(frozen=True)
class DramTraffic:
    """One DRAM tensor's DMA bytes in a scheduled model and why it is not resident."""

    name: str
    region: str
    in_bytes: int
    out_bytes: int
    reason: str


def dram_report(model: ModelOp) -> list[DramTraffic]:
    """Every tensor a DMA of `model` still moves (after `mlip-residency`), largest first,
    with the reason it stays in DRAM: a model input, output or weight; the first rule of
    the module docstring it breaks; or "does not fit" (its band, live layers and bytes)."""
    reasons: dict[str, str] = {}
    candidates = {plan.name: plan for plan in candidate_tensors(model, reasons)}
    traffic: dict[str, list[int]] = {}
    for op in model.instructions():
        if isinstance(op, (DmaLoadOp, DmaStoreOp)):
            name = op.properties["dram"].root_reference.data  # type: ignore[union-attr]
            moved = traffic.setdefault(name, [0, 0])
            moved[isinstance(op, DmaStoreOp)] += _dram_bytes(op)
    tensors = model.tensors()
    names = {layer.index.value.data: layer.sym_name.data for layer in model.layers()}
    out = []
    for name, (in_bytes, out_bytes) in traffic.items():
        tensor = tensors.get(name)
        region = tensor.region.data if tensor is not None else "?"
        if region != "scratch":
            reason = f"model {region}" if region != "weights" else "weights"
        elif name in candidates:
            plan = candidates[name]
            reason = (f"does not fit: a {plan.size} B band live from {names[plan.producer]} "
                      f"to {names[plan.last]} ({plan.last - plan.producer + 1} layers)")
        else:
            reason = reasons.get(name, "not stored by a layer of this sub-graph")
        out.append(DramTraffic(name, region, in_bytes, out_bytes, reason))
    return sorted(out, key=lambda t: (-(t.in_bytes + t.out_bytes), t.name))


# ---- Concat in place: the producers of a Concat's inputs write the output's slices ----
def _dense_strides(shape4: tuple[int, ...]) -> list[int]:
    strides = [1, 1, 1, 1]
    for k in (2, 1, 0):
        strides[k] = strides[k + 1] * shape4[k + 1]
    return strides


def _split_elem(elem: int, strides: list[int]) -> list[int]:
    parts = []
    for stride in strides:
        parts.append(elem // stride)
        elem %= stride
    return parts


def _remap_dma(op: DmaLoadOp | DmaStoreOp, x_shape: tuple[int, ...], y_shape: tuple[int, ...],
               channel_offset: int, esize: int) -> tuple[int, list[int]] | None:
    """(byte offset, element strides) of the DMA's box of tensor x (4-D `x_shape`) moved to
    channels [channel_offset, ...) of y (`y_shape`, the same but for the channels), or None
    when a stride of the box mixes dimensions or the box leaves x."""
    x_strides, y_strides = _dense_strides(x_shape), _dense_strides(y_shape)
    offset = _ival(op, "dram_offset")
    if offset % esize:
        return None
    base = _split_elem(offset // esize, x_strides)
    reach = list(base)
    strides = []
    for k in range(4):
        count, stride = _ival(op, f"dim{k}", 1), _ival(op, f"dram_stride{k}")
        if stride < 0:
            return None
        parts = _split_elem(stride, x_strides)
        used = [d for d in range(4) if parts[d]]
        if count > 1 and len(used) > 1:
            return None
        if count > 1 and used:
            reach[used[0]] += (count - 1) * parts[used[0]]
        strides.append(sum(p * q for p, q in zip(parts, y_strides, strict=True)))
    if any(r >= size for r, size in zip(reach, x_shape, strict=True)):
        return None
    base[3] += channel_offset
    return sum(p * q for p, q in zip(base, y_strides, strict=True)) * esize, strides


def _dram_name(op: InstructionOp) -> str:
    return op.properties["dram"].root_reference.data  # type: ignore[union-attr]


def _shape4(tensor) -> tuple[int, ...]:
    return (1, 1, 1, 1, *tensor.shape_tuple())[-4:]


def _concat_copies(layer: LayerOp) -> dict[str, tuple[str, list[BlockOp]]] | None:
    """Input tensor -> (output tensor, blocks copying it) of a Concat layer whose blocks are
    each one load -> COPY -> store of the same dtype; None otherwise."""
    found: dict[str, tuple[str, list[BlockOp]]] = {}
    for blk in layer.block_ops():
        ops = blk.instructions()
        if len(ops) != 3 or not isinstance(ops[0], DmaLoadOp) or ops[1].name != "mlip.copy" \
                or not isinstance(ops[2], DmaStoreOp):
            return None
        load, store = ops[0], ops[2]
        if load.properties["src"] != load.properties["dst"] or \
                store.properties["src"] != store.properties["dst"] or \
                load.properties["src"] != store.properties["src"]:
            return None
        target, blocks = found.setdefault(_dram_name(load), (_dram_name(store), []))
        if target != _dram_name(store):
            return None
        blocks.append(blk)
    return found


def concat_in_place(model: ModelOp) -> int:
    """Drop the copies of every Concat input that can be written in place: a scratch
    tensor of the same dtype, copied unchanged (COPY, no requantisation) along the
    channels into a slice that owns whole 16-byte DRAM granules of every pixel, every DMA
    of which can address the output's slice instead (`_remap_dma`).
    Its producers then store into (and its other consumers load from) the output's
    channel slice, and the Concat's blocks for it are erased; with the output resident
    (`plan_residency`) the producers' copies land in the output's band and the Concat
    moves no data. Returns the number of inputs made in place."""
    tensors = model.tensors()
    aliased = {t.alias_of.data for t in tensors.values() if t.alias_of is not None}
    dmas: dict[str, list[InstructionOp]] = {}
    for op in model.instructions():
        if isinstance(op, (DmaLoadOp, DmaStoreOp)):
            dmas.setdefault(_dram_name(op), []).append(op)
    done = 0
    for layer in model.layers():
        if layer.kind.data != "Concat":
            continue
        copies = _concat_copies(layer)
        if copies is None:
            continue
        for source, (target, blocks) in copies.items():
            x, y = tensors.get(source), tensors.get(target)
            if x is None or y is None or x.region.data != "scratch" or source in aliased \
                    or x.alias_of is not None or x.dtype.data != y.dtype.data:
                continue
            x_shape, y_shape = _shape4(x), _shape4(y)
            if x_shape[:3] != y_shape[:3]:
                continue
            esize = isa.DTYPE_SIZE[isa.DType(DTYPE_BY_NAME[x.dtype.data])]
            offsets = set()
            for blk in blocks:
                load, _, store = blk.instructions()
                a = _split_elem(_ival(load, "dram_offset") // esize, _dense_strides(x_shape))
                b = _split_elem(_ival(store, "dram_offset") // esize, _dense_strides(y_shape))
                offsets.add((b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]))
            if len(offsets) != 1 or offsets != {(0, 0, 0, next(iter(offsets))[3])}:
                continue
            channel_offset = next(iter(offsets))[3]
            if any(n * esize % isa.DRAM_GRANULE
                   for n in (channel_offset, x_shape[3], y_shape[3])):
                # the slice must own whole DRAM granules of every pixel: a layer's stores and
                # another's loads of neighbouring channels would share granules otherwise
                continue
            concat_loads = {blk.instructions()[0] for blk in blocks}
            others = [op for op in dmas.get(source, []) if op not in concat_loads]
            moved = [_remap_dma(op, x_shape, y_shape, channel_offset, esize) for op in others]
            if any(m is None for m in moved):
                continue
            for op, remapped in zip(others, moved, strict=True):
                assert remapped is not None
                offset, strides = remapped
                op.properties["dram"] = SymbolRefAttr(target)
                op.properties["dram_offset"] = i64_attr(offset)
                for k in range(4):
                    op.properties[f"dram_stride{k}"] = i64_attr(strides[k])
            erased = {op for blk in blocks for op in blk.instructions()}
            for blk in blocks:
                blk.detach()
                blk.erase()
            # x's DMAs now address y: a later Concat that takes y as its input (DenseNet's
            # chained concats) must move them too
            dmas[target] = [op for op in dmas.get(target, []) if op not in erased] + others
            dmas.pop(source, None)
            lives = [t.live_range() for t in (x, y) if t.live is not None]
            if lives:
                y.live = DenseArrayBase.from_list(i64, [min(a for a, _ in lives),
                                                        max(b for _, b in lives)])
            model.body.block.erase_op(x)
            done += 1
        layer.blocks = i64_attr(len(layer.block_ops()))
    return done


MAX_ROUNDS = 4
"""Planning rounds: a round's rewrite frees the consumers' input slots, so a later round
may fit tensors an earlier one spilled."""


def keep_resident(model: ModelOp) -> int:
    """Plan and apply residency in rounds until nothing more fits; the tensors kept."""
    kept = 0
    concat_in_place(model)
    for _ in range(MAX_ROUNDS):
        plans, order = plan_residency(model)
        if not plans:
            break
        apply_residency(model, plans, order)
        kept += len(plans)
    return kept


@dataclass(frozen=True)
class MlipResidencyPass(ModulePass):
    """Keep the activations that fit in OCM between layers (module docstring);
    `enabled = false` leaves the model unchanged (every activation through DRAM)."""

    name = "mlip-residency"

    enabled: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not self.enabled:
            return
        for model in op.ops:
            if isinstance(model, ModelOp):
                keep_resident(model)
