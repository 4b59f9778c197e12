"""Conv2D blocking of the mrvl -> mlip conversion: the block sizes `lower_conv2d` chooses
so that a conv layer's buffers fit the OCM, and the blocks it emits.

Shared by the conversion (lowering/convert_mrvl_to_mlip.py) and the cost model that the
tile split uses (lowering/mlip_cost.py); moved out of the conversion so that the split
and the conversion do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mrvl.dialects import mrvl
from mrvl.mlip_plan import align


def _ints(attr) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


# ---- block sizing -------------------------------------------------------------------------
def _fits(buffers: list[tuple[int, int]], budget: int, page: int) -> bool:
    """Do buffers [(bytes, slots)], each slot taking whole pages, fit `budget` bytes?
    A buffer of 0 bytes is not allocated and takes no page."""
    return sum(align(size, page) * slots for size, slots in buffers if size > 0) <= budget


def _fit_rows(fits: Callable[[list[tuple[int, int]]], bool], fixed,
              per_rows: Callable[[int], list[tuple[int, int]]], rows: int) -> int:
    """Largest row count in [1, rows] whose buffers fit with the `fixed` ones; 0 if none.
    Keeps at least two blocks per tile when there are two rows, for double buffering."""
    best = 0
    lo, hi = 1, rows
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(fixed + per_rows(mid)):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best and rows >= 2:
        best = min(best, -(-rows // 2))
    return best


def _bands(start: int, end: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(end, s + size)) for s in range(start, end, size)]


def _chunk_candidates(total: int, unit: int, least: int = 1) -> list[int]:
    """Chunk sizes to try for output channels, decreasing: multiples of `unit` (the
    efficient sizes) down to `unit`, then halving down to `least`, multiples of `least`."""
    seen = []
    k = 1
    while True:
        size = min(total, align(-(-total // k), unit))
        if not seen or size < seen[-1]:
            seen.append(size)
        if size <= unit:
            break
        k *= 2
    size = seen[-1]
    while size > least:
        size = max(least, align(size // 2, least))
        if size < seen[-1]:
            seen.append(size)
        else:
            break
    return seen


def _segments(kind: str, ranges, batch: int, rows: int, chans: int):
    """Per tile, its work as (image, row start, row end, channel start, channel end):
    a "rows" split ranges over the rows of all images (image-major), a "channels" split
    gives every image's rows, a "grid" split (row start, row end, channel start, channel
    end per tile) a band of rows of all images times a range of channels."""
    out = []
    for bounds in ranges:
        segs = []
        if kind == "grid":
            lo, hi, c_lo, c_hi = bounds
            for n in range(batch):
                r0, r1 = max(lo - n * rows, 0), min(hi - n * rows, rows)
                if r1 > r0 and c_hi > c_lo:
                    segs.append((n, r0, r1, c_lo, c_hi))
            out.append(segs)
            continue
        lo, hi = bounds
        if kind == "rows":
            for n in range(batch):
                r0, r1 = max(lo - n * rows, 0), min(hi - n * rows, rows)
                if r1 > r0:
                    segs.append((n, r0, r1, 0, chans))
        elif hi > lo:
            segs = [(n, 0, rows, lo, hi) for n in range(batch)]
        out.append(segs)
    return out


# ---- Conv2D -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvGeom:
    """Shape and byte sizes of a Conv2D layer, everything its blocking depends on.

    `es`: compute element size (2 fp16, 1 int8); `w_es`: weight element size; `in_es` /
    `out_es`: element sizes of the input / output tensors in DRAM; `consts`: number of
    per-output-channel 4-byte arrays next to the weights (bias, requantisation scale);
    `sig8`: int8 with a fused sigmoid (an extra fp32 accumulator block). `wide_out`: an
    fp16 conv writing an fp32 output block (the fp16 precision policy of transformer
    sub-graphs, lowering/mrvl_precision.py).

    A 1x1 conv with strides and no padding only reads every `ys`-th row and `xs`-th column
    of its input (`src_h` x `src_w`): its geometry is that of a stride-1 conv over the
    subsampled input (`h` x `w` = the output size), which the DMA gathers with DRAM
    strides. Every output still sums the same products in the same order."""

    n: int
    h: int
    w: int
    c: int
    o: int
    kh: int
    kw: int
    cg: int
    oh: int
    ow: int
    groups: int
    sh: int
    sw: int
    pt: int
    pl: int
    dh: int
    dw: int
    es: int
    w_es: int
    in_es: int
    out_es: int
    consts: int
    sig8: bool
    src_h: int = 0
    src_w: int = 0
    ys: int = 1
    xs: int = 1
    wide_out: bool = False

    @classmethod
    def of(cls, op: mrvl.Conv2DOp, es: int, in_es: int, out_es: int, consts: int,
           sig8: bool) -> ConvGeom:
        n, h, w, c = mrvl.tensor_shape(op.input)
        o, kh, kw, cg = mrvl.tensor_shape(op.weight)
        _, oh, ow, _ = mrvl.tensor_shape(op.output)
        sh, sw = _ints(op.strides)
        pads = _ints(op.pads)
        dh, dw = _ints(op.dilations)
        groups = op.groups.value.data
        if kh == kw == 1 and not any(pads) and (sh, sw) != (1, 1):
            return cls(n, oh, ow, c, o, 1, 1, cg, oh, ow, groups, 1, 1, 0, 0, 1, 1, es, es,
                       in_es, out_es, consts, sig8, h, w, sh, sw)
        return cls(n, h, w, c, o, kh, kw, cg, oh, ow, groups, sh, sw, pads[0], pads[1],
                   dh, dw, es, es, in_es, out_es, consts, sig8, h, w)

    @property
    def ocg(self) -> int:
        return self.o // self.groups

    def in_ch(self, oc_chunk: int) -> int:
        return self.c if self.groups == 1 else (oc_chunk // self.ocg) * self.cg

    def in_rows(self, rows: int) -> int:
        return min(self.h, (rows - 1) * self.sh + (self.kh - 1) * self.dh + 1)

    def in_cols(self, cols: int) -> int:
        return min(self.w, (cols - 1) * self.sw + (self.kw - 1) * self.dw + 1)


def _conv_fit(g: ConvGeom, oc_chunk: int, resident: bool,
              fits: Callable[[list[tuple[int, int]]], bool], max_rows: int
              ) -> tuple[int, int, int] | None:
    """(oc_chunk, rows, cols) with the largest band of rows, else of columns, that fits
    next to the weights of `oc_chunk` channels (one slot if `resident`, else two)."""
    es, wsize = g.es, g.kh * g.kw * g.cg * g.w_es
    out_es = 4 if g.wide_out else es
    slots = 1 if resident else 2
    fixed = [(oc_chunk * wsize, slots)] + [(oc_chunk * 4, slots)] * g.consts
    icc = g.in_ch(oc_chunk)

    def per_rows(rows):
        return [(g.in_rows(rows) * g.w * icc * es, 2), (rows * g.ow * oc_chunk * out_es, 2),
                (rows * g.ow * oc_chunk * 4 * g.sig8, 2)]

    rows = _fit_rows(fits, fixed, per_rows, max_rows)
    if rows:
        return oc_chunk, rows, g.ow

    def per_cols(cols):
        return [(g.in_rows(1) * g.in_cols(cols) * icc * es, 2),
                (cols * oc_chunk * out_es, 2), (cols * oc_chunk * 4 * g.sig8, 2)]

    cols = _fit_rows(fits, fixed, per_cols, g.ow)
    return (oc_chunk, 1, cols) if cols else None


def conv_config(g: ConvGeom, work, fits: Callable[[list[tuple[int, int]]], bool]
                ) -> tuple[int, int, int] | None:
    """(output-channel chunk, rows per block, columns per block) of a conv whose per-tile
    `work` is given by `_segments`: the largest channel chunk (all of a tile's channels =
    resident weights first) with which a band of rows, else of columns, fits; None when
    not even one output pixel of one channel group fits. (Smaller chunks would let the
    next chunk's weights load while one computes, but re-read the input once per chunk:
    on the in-repo models they cost more DRAM traffic than the cycles they save.)"""
    max_rows = max((r1 - r0 for segs in work for _, r0, r1, _, _ in segs), default=0)
    max_oc = max((o1 - o0 for segs in work for _, _, _, o0, o1 in segs), default=0)
    if max_rows == 0 or max_oc == 0:
        return None
    unit = g.ocg if g.groups > 1 else min(max_oc, 16)
    for oc_chunk in _chunk_candidates(max_oc, unit, g.ocg if g.groups > 1 else 1):
        config = _conv_fit(g, oc_chunk, oc_chunk >= max_oc, fits, max_rows)
        if config is not None:
            return config
    return None


@dataclass(frozen=True)
class ConvBlock:
    """One block of a conv: output box (image n, rows [r0, r1), columns [c0, c1), channels
    [oc0, oc1)), its input box (rows [y0, y1), columns [x0, x1), channels [ic0, ic0 + icc)),
    and whether it loads a new weight chunk (into weight slot `wslot`)."""

    tile: int
    n: int
    r0: int
    r1: int
    c0: int
    c1: int
    oc0: int
    oc1: int
    y0: int
    y1: int
    x0: int
    x1: int
    ic0: int
    icc: int
    load_w: bool
    wslot: int


def conv_blocks(g: ConvGeom, work, config: tuple[int, int, int]):
    """The blocks of a conv in per-tile program order (the order `lower_conv2d` emits):
    per tile, per segment, per channel chunk, per row band, per column band. Resident
    weights (one chunk holds the tile's channels) are loaded once per tile, else every
    chunk is loaded before its first block, alternating two weight slots."""
    oc_chunk, rb, cb = config
    max_oc = max((o1 - o0 for segs in work for _, _, _, o0, o1 in segs), default=0)
    resident = oc_chunk >= max_oc
    wslots = 1 if resident else 2
    for tile, segs in enumerate(work):
        wloads = 0
        for n, r_lo, r_hi, o_lo, o_hi in segs:
            for oc0, oc1 in _bands(o_lo, o_hi, oc_chunk):
                new_chunk = True
                ic0 = 0 if g.groups == 1 else (oc0 // g.ocg) * g.cg
                icc = g.in_ch(oc1 - oc0)
                for r0, r1 in _bands(r_lo, r_hi, rb):
                    y0 = min(g.h - 1, max(0, r0 * g.sh - g.pt))
                    y1 = max(y0 + 1, min(g.h, (r1 - 1) * g.sh - g.pt + (g.kh - 1) * g.dh + 1))
                    for c0, c1 in _bands(0, g.ow, cb):
                        x0 = min(g.w - 1, max(0, c0 * g.sw - g.pl))
                        x1 = max(x0 + 1,
                                 min(g.w, (c1 - 1) * g.sw - g.pl + (g.kw - 1) * g.dw + 1))
                        load_w = new_chunk and (not resident or wloads == 0)
                        if load_w:
                            wloads += 1
                        new_chunk = False
                        yield ConvBlock(tile, n, r0, r1, c0, c1, oc0, oc1, y0, y1, x0, x1,
                                        ic0, icc, load_w, (wloads - 1) % wslots)
