"""`mlip-tile-split`: split every accelerator layer's work across `num_tiles` tiles.

Input: accelerator sub-graph functions (mrvl layers; optionally annotated by mlip-quantize).
Output: the same, each layer annotated with `mlip.split` ("rows", "channels" or "none") and
`mlip.tiles` (`array<i64: start0, end0, start1, end1, ...>`, one half-open range per tile of
output rows or output channels; an empty range leaves the tile idle for that layer), and the
function with `mlip.num_tiles`.

- Conv2D: output rows (of all images: the range is over batch x rows), or output channels (whole groups) when that moves fewer DRAM bytes
  for the same balance (every tile of a row split reads all weights; every tile of a channel
  split reads the whole input).
- FC, global pools: output channels. Pools: output rows. Sum, Concat, transposes: the
  second dimension of the output (rows of NHWC), or the channels of a [1, 1, 1, C] tensor.
- Reshape-like layers: none (they move no data).

Invariant: the DRAM bytes written by different tiles never share a 16-byte granule (range
boundaries are multiples of the granule of the output tensor), so tiles need no
synchronisation inside a layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.lowering.mlip_quantize import IO_ATTR, MODE_ATTR, accelerator_functions
from mrvl.sim import mlip_isa as isa

SPLIT_ATTR = "mlip.split"
TILES_ATTR = "mlip.tiles"
NUM_TILES_ATTR = "mlip.num_tiles"
VALID_TILES = (1, 2, 4, 8)
GRANULE = isa.DRAM_GRANULE

ALIAS_OPS = (mrvl.ReshapeOp, mrvl.BatchFlattenOp, mrvl.SqueezeOp)


def balanced_ranges(extent: int, tiles: int, unit: int) -> list[tuple[int, int]]:
    """Split [0, extent) into `tiles` ranges whose inner boundaries are multiples of
    `unit`, as even as possible (empty ranges at the end when there is not enough work)."""
    units = -(-extent // unit)
    base, extra = divmod(units, tiles)
    ranges = []
    start = 0
    for t in range(tiles):
        count = base + (1 if t < extra else 0)
        end = min(extent, start + count * unit)
        ranges.append((start, end))
        start = end
    return ranges


def row_unit(row_bytes: int) -> int:
    """Rows per split unit so that a unit's bytes are a multiple of the granule."""
    return GRANULE // math.gcd(GRANULE, row_bytes)


def channel_unit(esize: int) -> int:
    return GRANULE // math.gcd(GRANULE, esize)


def _max_share(ranges: list[tuple[int, int]]) -> int:
    return max(e - s for s, e in ranges)


def dtype_sizes(fn: func.FuncOp) -> tuple[int, int]:
    """(activation element size, I/O element size) from the mlip-quantize annotations."""
    mode = fn.attributes.get(MODE_ATTR)
    io = fn.attributes.get(IO_ATTR)
    act = 1 if isinstance(mode, StringAttr) and mode.data == "int8" else 2
    io_size = act
    if isinstance(io, StringAttr):
        io_size = {"f16": 2, "f32": 4, "i8": 1}[io.data]
    return act, io_size


def _returned(fn: func.FuncOp) -> set:
    last = fn.body.block.last_op
    return set(last.operands) if last is not None else set()


def _conv_split(op: mrvl.Conv2DOp, tiles: int, es: int, out_es: int):
    n, h, w, c = mrvl.tensor_shape(op.input)
    _, oh, ow, o = mrvl.tensor_shape(op.output)
    groups = op.groups.value.data
    rows = balanced_ranges(n * oh, tiles, row_unit(ow * o * out_es))
    w_bytes = math.prod(mrvl.tensor_shape(op.weight)) * es
    in_bytes = n * h * w * c * es
    macs = op.macs()
    used_rows = sum(1 for s, e in rows if e > s)
    cost_rows = max(macs * _max_share(rows) / (n * oh) / 256,
                    (used_rows * w_bytes + in_bytes) / 64)
    best = ("rows", rows, cost_rows)
    ocg = o // groups
    unit = math.lcm(channel_unit(out_es), ocg if groups > 1 else 1)
    if (n * oh * ow == 1 or (o * out_es) % GRANULE == 0) and unit <= o:
        chans = balanced_ranges(o, tiles, unit)
        used = sum(1 for s, e in chans if e > s)
        in_reads = in_bytes * (used if groups == 1 else 1)
        cost = max(macs * _max_share(chans) / o / 256, (w_bytes + in_reads) / 64)
        if cost < best[2]:
            best = ("channels", chans, cost)
    return best[0], best[1]


def _shape4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) > 4:
        raise CompileError(f"tensors of rank {len(shape)} > 4 are not supported by the DMA")
    padded = (1,) * (4 - len(shape)) + tuple(shape)
    return padded  # type: ignore[return-value]


def generic_split(shape: tuple[int, ...], tiles: int, out_es: int):
    """Split of an element-wise style layer over its 4-D output shape: the rows (dims 0 and
    1 together, image-major), or dim 3 when everything else is 1."""
    d0, d1, d2, d3 = _shape4(shape)
    if d0 * d1 * d2 == 1 and d3 > 1:
        return "channels", balanced_ranges(d3, tiles, channel_unit(out_es))
    return "rows", balanced_ranges(d0 * d1, tiles, row_unit(d2 * d3 * out_es))


def choose_split(
    op: mrvl.MrvlLayerOp, tiles: int, es: int, out_es: int
) -> tuple[str, list[tuple[int, int]]]:
    """The split of one layer (see the module docstring)."""
    if isinstance(op, ALIAS_OPS):
        return "none", [(0, 0)] * tiles
    out_shape = mrvl.tensor_shape(op.results[0])
    if isinstance(op, mrvl.Conv2DOp):
        return _conv_split(op, tiles, es, out_es)
    if isinstance(op, mrvl.FCOp):
        n, o = out_shape
        if n == 1 or (o * out_es) % GRANULE == 0:
            return "channels", balanced_ranges(o, tiles, channel_unit(out_es))
        return "channels", [(0, o)] + [(o, o)] * (tiles - 1)
    if isinstance(op, mrvl.GlobalAvgpool2DOp | mrvl.GlobalMaxpool2DOp):
        n, _, _, c = out_shape
        if n == 1 or (c * out_es) % GRANULE == 0:
            return "channels", balanced_ranges(c, tiles, channel_unit(out_es))
        return "channels", [(0, c)] + [(c, c)] * (tiles - 1)
    if isinstance(op, mrvl.Maxpool2DOp | mrvl.Avgpool2DOp):
        n, oh, ow, c = out_shape
        return "rows", balanced_ranges(n * oh, tiles, row_unit(ow * c * out_es))
    return generic_split(out_shape, tiles, out_es)


def split_function(fn: func.FuncOp, num_tiles: int) -> None:
    """Annotate every layer of `fn` in place."""
    if num_tiles not in VALID_TILES:
        raise CompileError(f"--num-tiles: expected one of {list(VALID_TILES)}, got {num_tiles}")
    es, io_es = dtype_sizes(fn)
    outputs = _returned(fn)
    fn.attributes[NUM_TILES_ATTR] = IntegerAttr(num_tiles, i64)
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.MrvlLayerOp):
            continue
        out_es = io_es if op.results[0] in outputs else es
        kind, ranges = choose_split(op, num_tiles, es, out_es)
        op.attributes[SPLIT_ATTR] = StringAttr(kind)
        op.attributes[TILES_ATTR] = DenseArrayBase.from_list(
            i64, [v for r in ranges for v in r]
        )


def read_split(op: mrvl.MrvlLayerOp) -> tuple[str, list[tuple[int, int]]] | None:
    kind = op.attributes.get(SPLIT_ATTR)
    tiles = op.attributes.get(TILES_ATTR)
    if not isinstance(kind, StringAttr) or not isinstance(tiles, DenseArrayBase):
        return None
    values = [int(v) for v in tiles.get_values()]
    return kind.data, [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


@dataclass(frozen=True)
class MlipTileSplitPass(ModulePass):
    """Annotate every accelerator layer with its tile split (module docstring).

    Option `num-tiles`: 1, 2, 4 or 8 (default 1).
    """

    name = "mlip-tile-split"

    num_tiles: int = 1

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in accelerator_functions(op):
            split_function(fn, self.num_tiles)
