"""`mrvl-tile-split`: split every accelerator layer's work across `num_tiles` tiles.

Input: accelerator sub-graph functions (mrvl layers; optionally annotated by mrvl-quantize).
Output: the same, each layer annotated with `mrvl.split` ("rows", "channels", "grid" or
"none") and `mrvl.tiles` (`array<i64: start0, end0, start1, end1, ...>`, one half-open range
per tile of output rows or output channels; for "grid", four values per tile: a range of
output rows, then a range of output channels; an empty range leaves the tile idle for that
layer), and the function with `mrvl.num_tiles`.

- Conv2D: every legal candidate is costed and the cheapest taken (`_conv_split`):
  output rows (of all images: the range is over batch x rows; every tile reads all the
  weights and its band of the input), output channels (whole groups; every tile reads its
  share of the weights and the whole input), and for 4 or 8 tiles the grids of 2 x T/2
  and T/2 x 2 tiles (rows x channels: the weights are read by the row groups, the input by
  the channel groups). The cost is `mlip_cost.conv_cost`: it runs the same OCM blocking
  as the lowering (chunks of weights when they do not fit, bands of rows or columns) and
  estimates cycles from the blocks' DMA bytes and compute under the docs/isa.md timing
  model, on the `Machine` compiled for (its OCM, page size and timing constants).
  The split never changes the order of any output's reduction, so results are the same
  bits whatever it chooses. With `resident`, a conv whose input is read by several layers
  and produced under a row split also gets the row split aligned with its producer's
  (`aligned_rows`: every tile reads only rows it produced), costed as reading its input
  in place and, when no other candidate's band fits, as saving the producer's stores.
- FC, global pools: output channels. Pools: output rows. Sum, Concat, transposes: the
  second dimension of the output (rows of NHWC), or the channels of a [1, 1, 1, C] tensor.
- Reshape-like layers: none (they move no data).

Invariant: the DRAM bytes written by different tiles never share a 16-byte granule (range
boundaries are multiples of the granule of the output tensor), so tiles need no
synchronisation inside a layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import BlockArgument, OpResult
from xdsl.passes import ModulePass

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.machine import DEFAULT_MACHINE, Machine
from mrvl.lowering.mlip_conv_blocking import ConvGeom
from mrvl.lowering.mlip_cost import conv_cost
from mrvl.lowering.mrvl_quantize import IO_ATTR, MODE_ATTR, is_real_output
from mrvl import mlip_isa as isa

SPLIT_ATTR = "mrvl.split"
TILES_ATTR = "mrvl.tiles"
NUM_TILES_ATTR = "mrvl.num_tiles"
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


def dtype_sizes(fn: func.FuncOp) -> tuple[int, int]:
    """(activation element size, I/O element size) from the mrvl-quantize annotations."""
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


def conv_candidates(op: mrvl.Conv2DOp, tiles: int, out_es: int):
    """The legal splits of a conv: output rows (of all images), and output channels (whole
    groups, boundaries on 16-byte granules of every output pixel) when the channels of one
    pixel fill whole granules (or there is one pixel); with those, when there are several
    rows and at least 4 tiles, the row x channel grids (any row boundary is then on a
    granule, since every pixel's channels start on one)."""
    n, _, _, _ = mrvl.tensor_shape(op.input)
    _, oh, ow, o = mrvl.tensor_shape(op.output)
    groups = op.groups.value.data
    out: list[tuple[str, list[tuple[int, ...]]]] = [
        ("rows", balanced_ranges(n * oh, tiles, row_unit(ow * o * out_es)))]
    unit = math.lcm(channel_unit(out_es), o // groups if groups > 1 else 1)
    if tiles == 1 or unit > o or not (n * oh * ow == 1 or (o * out_es) % GRANULE == 0):
        return out
    out.append(("channels", balanced_ranges(o, tiles, unit)))
    if n * oh == 1 or (o * out_es) % GRANULE != 0:
        return out
    for row_tiles in sorted({2, tiles // 2}):
        chan_tiles = tiles // row_tiles
        if row_tiles < 2 or chan_tiles < 2:
            continue
        rows = balanced_ranges(n * oh, row_tiles, 1)
        chans = balanced_ranges(o, chan_tiles, unit)
        out.append(("grid", [r + ch for r in rows for ch in chans]))
    return out


RESIDENT_SHARE = 8
"""`resident` splits: a conv's input counts as kept in OCM when the band a tile reads is at
most 1 / RESIDENT_SHARE of the OCM (larger bands usually spill, mlip-residency)."""


def aligned_rows(geom: ConvGeom, producer: list[tuple[int, int]], out_row_bytes: int
                 ) -> list[tuple[int, int]] | None:
    """A row split of a conv under which every tile reads only input rows (of all images)
    that its own tile produced under the producer's row split `producer`; None when some
    output row needs rows of two producer tiles or a boundary is off the granule."""
    unit = row_unit(out_row_bytes)
    owner = {}
    for tile, (lo, hi) in enumerate(producer):
        for row in range(lo, hi):
            owner[row] = tile
    height = geom.src_h or geom.h
    tiles_of_rows: list[int] = []
    for image in range(geom.n):
        for r in range(geom.oh):
            if geom.ys > 1:  # a strided 1x1 gather reads row r * ys only
                needed = [r * geom.ys]
            else:
                needed = [r * geom.sh - geom.pt + k * geom.dh for k in range(geom.kh)]
            found = {owner.get(image * height + y) for y in needed if 0 <= y < height}
            if len(found) != 1 or None in found:
                return None
            tiles_of_rows.append(found.pop())
    ranges = []
    for tile in range(len(producer)):
        rows = [k for k, t in enumerate(tiles_of_rows) if t == tile]
        if not rows:
            ranges.append((len(tiles_of_rows), len(tiles_of_rows)))
            continue
        ranges.append((rows[0], rows[-1] + 1))
    starts = [lo for lo, hi in ranges if hi > lo]
    if any(lo % unit for lo in starts) or sorted(starts) != starts:
        return None
    return ranges


def _conv_split(op: mrvl.Conv2DOp, tiles: int, es: int, in_es: int, out_es: int,
                machine: Machine, resident_input: bool = False,
                producer_rows: list[tuple[int, int]] | None = None):
    """The candidate with the fewest estimated cycles (`conv_cost`: the blocks the lowering
    would emit under the docs/isa.md timing model), ties to fewer DRAM bytes, then to the
    earlier candidate (rows). `producer_rows`: the row split of the layer producing a
    resident input read by several layers; a row split aligned with it (`aligned_rows`)
    is a candidate that reads its input in place whatever the band's size."""
    candidates = conv_candidates(op, tiles, out_es)
    consts = (op.bias is not None) + (es == 1)
    sig8 = es == 1 and op.activation_str() in ("sigmoid", "silu")
    geom = ConvGeom.of(op, es, in_es, out_es, consts, sig8)
    if es == 1 and is_real_output(op):
        geom = replace(geom, wide_out=True)  # fp32 real values (mrvl.real_output)
    aligned = None
    if resident_input and producer_rows is not None and tiles > 1:
        aligned = aligned_rows(geom, producer_rows, geom.ow * geom.o * out_es)
        if aligned is not None and ("rows", aligned) not in candidates:
            candidates = candidates + [("rows", aligned)]
    if len(candidates) == 1:
        return candidates[0]
    best, best_key = candidates[0], None
    n, h, w, c = mrvl.tensor_shape(op.input)
    for kind, ranges in candidates:
        row_tiles = {"rows": tiles, "channels": 1}.get(kind, len({r[:2] for r in ranges}))
        band = n * h * w * c * in_es // row_tiles
        fits = band * RESIDENT_SHARE <= machine.ocm_bytes
        on_chip = resident_input and (fits or (kind, ranges) == ("rows", aligned))
        cost = conv_cost(geom, kind, ranges, machine, on_chip)
        if cost is None:
            continue
        if on_chip and not fits:
            # only the aligned split keeps the input on chip: its producer's stores go too
            cost = (cost[0] - n * h * w * c * in_es / machine.dram_bytes_per_cycle, cost[1])
        key = (round(cost[0]), cost[1])
        if best_key is None or key < best_key:
            best, best_key = (kind, ranges), key
    return best


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
    op: mrvl.MrvlLayerOp, tiles: int, es: int, out_es: int, in_es: int | None = None,
    machine: Machine = DEFAULT_MACHINE, resident_input: bool = False,
    producer_rows: list[tuple[int, int]] | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """The split of one layer (see the module docstring). `in_es`: element size of the
    first input in DRAM (default `es`); `machine`: the machine compiled for (its OCM sizes
    the lowering's blocks, its timing ranks the candidates); `producer_rows`: see
    `_conv_split`."""
    if isinstance(op, ALIAS_OPS):
        return "none", [(0, 0)] * tiles
    out_shape = mrvl.tensor_shape(op.results[0])
    if isinstance(op, mrvl.Conv2DOp):
        return _conv_split(op, tiles, es, es if in_es is None else in_es, out_es, machine,
                           resident_input, producer_rows)
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
    if isinstance(op, mrvl.MatMulOp | mrvl.SoftmaxOp | mrvl.LayerNormOp):
        # rows of the 2-D view [prod(shape[:-1]), shape[-1]]
        rows = math.prod(out_shape[:-1])
        return "rows", balanced_ranges(rows, tiles, row_unit(out_shape[-1] * out_es))
    return generic_split(out_shape, tiles, out_es)


def _input_es(value, es: int, io_es: int) -> int:
    """Element size of `value` in DRAM: I/O dtype for a function argument (also through
    reshape-like layers, which alias it), else the activation dtype."""
    while isinstance(value, OpResult) and isinstance(value.op, ALIAS_OPS):
        value = value.op.operands[0]
    return io_es if isinstance(value, BlockArgument) else es


def _is_input(value) -> bool:
    while isinstance(value, OpResult) and isinstance(value.op, ALIAS_OPS):
        value = value.op.operands[0]
    return isinstance(value, BlockArgument)


def split_function(fn: func.FuncOp, machine: Machine = DEFAULT_MACHINE,
                   resident: bool = False) -> None:
    """Annotate every layer of `fn` in place, split across `machine.tiles` tiles (for
    blocks sized to its OCM, candidates ranked by its timing). `resident`: rank conv splits
    for the OCM-resident schedule (an activation input whose band fits is read in place,
    `_conv_split`), so splits that read the weights once can win."""
    num_tiles = machine.tiles
    if num_tiles not in VALID_TILES:
        raise CompileError(f"--num-tiles (or --machine tiles=): expected one of "
                           f"{list(VALID_TILES)}, got {num_tiles}")
    es, io_es = dtype_sizes(fn)
    outputs = _returned(fn)
    fn.attributes[NUM_TILES_ATTR] = IntegerAttr(num_tiles, i64)
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.MrvlLayerOp):
            continue
        # a real output (fp32) keeps the split of an int8 one: its units are whole
        # granules of 1-byte elements, so of 4-byte ones too
        out_es = io_es if op.results[0] in outputs else es
        in_es = _input_es(op.operands[0], es, io_es) if op.operands else es
        resident_input = resident and bool(op.operands) and not _is_input(op.operands[0])
        producer = _shared_row_producer(op) if resident_input else None
        kind, ranges = choose_split(op, num_tiles, es, out_es, in_es, machine, resident_input,
                                    producer)
        op.attributes[SPLIT_ATTR] = StringAttr(kind)
        op.attributes[TILES_ATTR] = DenseArrayBase.from_list(
            i64, [v for r in ranges for v in r]
        )


def _shared_row_producer(op: mrvl.MrvlLayerOp) -> list[tuple[int, int]] | None:
    """The row split of the layer producing `op`'s first input when that input is read by
    several layers (a residual: it stays in OCM across them, so its band matters) and the
    producer split rows (already annotated: layers are split in program order)."""
    value = op.operands[0]
    if not isinstance(value, OpResult) or len({use.operation for use in value.uses}) < 2:
        return None
    if not isinstance(value.op, mrvl.MrvlLayerOp) or isinstance(value.op, ALIAS_OPS):
        return None
    split = read_split(value.op)
    if split is None or split[0] != "rows":
        return None
    return split[1]


def read_split(op: mrvl.MrvlLayerOp) -> tuple[str, list[tuple[int, int]]] | None:
    kind = op.attributes.get(SPLIT_ATTR)
    tiles = op.attributes.get(TILES_ATTR)
    if not isinstance(kind, StringAttr) or not isinstance(tiles, DenseArrayBase):
        return None
    values = [int(v) for v in tiles.get_values()]
    width = 4 if kind.data == "grid" else 2
    return kind.data, [tuple(values[i:i + width]) for i in range(0, len(values), width)]


@dataclass(frozen=True)
class MrvlTileSplitPass(ModulePass):
    """Annotate every accelerator layer with its tile split (module docstring).

    Options: `num-tiles`: 1, 2, 4 or 8 (default 1); `ocm-size`, `page-size`: the OCM
    that `convert-mrvl-to-mlip` will be given (defaults 1 MiB, 16 KiB), used to estimate
    each candidate split's blocks.
    """

    name = "mrvl-tile-split"

    num_tiles: int = 1
    ocm_size: int = isa.DEFAULT_OCM_SIZE
    page_size: int = isa.DEFAULT_PAGE_SIZE
    resident: bool = False
    """Rank conv splits for the OCM-resident schedule (`split_function`)."""
    machine: Machine | None = field(default=None, compare=False)
    """In-process callers: the whole machine (its timing ranks the splits); the three
    options above then come from it (not a pipeline-text option)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in mrvl.subgraph_functions(op):
            split_function(fn, self._machine(), self.resident)

    def _machine(self) -> Machine:
        if self.machine is not None:
            return self.machine
        return replace(DEFAULT_MACHINE, tiles=self.num_tiles, ocm_bytes=self.ocm_size,
                       page_bytes=self.page_size)
