"""The backend's program model: what the mlip passes hand to each other.

`convert-mrvl-to-mlip` turns a sub-graph into a `Program`: DRAM tensors (inputs, outputs,
weights, scratch activations), and per layer a list of `Block`s, each one tile's unit of
double-buffered work (its DMA loads, its compute instructions, its DMA stores). Instruction
operands that are buffers are symbolic `Ref`s until `mlip-ocm-alloc` (OCM) and `mlip-emit`
(DRAM) place them; `mlip-dma-schedule` turns the blocks into the per-(tile, queue) streams
with their dependency tokens and barriers. The `mlip` dialect (dialects/mlip.py) prints and
parses exactly this model, so every stage can be shown as IR.

Invariants:

- Every OCM buffer belongs to one layer; all buffers of a layer are live for the whole layer
  (between two barriers), and nothing in OCM outlives its layer.
- A block's loads only write its own slots (`slot = block index % 2` for double-buffered
  buffers), its computes only read the block's slots and write its output slot, and its
  stores only read that output slot.
- DRAM writes of different tiles in one layer never share a 16-byte granule
  (the tile split aligns its boundaries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE, Machine
from mrvl.mlip_isa import DType, Opcode, Queue

DTYPE_NAMES = {
    DType.FP32: "f32", DType.FP16: "f16", DType.INT8: "i8", DType.UINT8: "u8",
    DType.INT16: "i16", DType.UINT16: "u16", DType.INT32: "i32", DType.UINT32: "u32",
}
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}

ADDRESS_FIELDS = frozenset(
    {"dram_addr", "ocm_addr", "in_addr", "out_addr", "w_addr", "bias_addr", "scale_addr",
     "a_addr", "b_addr"}
)
"""Instruction fields that hold an address (possibly a symbolic `Ref`)."""


@dataclass(frozen=True)
class Ref:
    """A symbolic address: `space` "ocm" (a layer buffer, one `slot` of it) or "dram" (a
    tensor), plus a byte `offset`."""

    space: str
    name: str
    slot: int = 0
    offset: int = 0

    def __str__(self) -> str:
        slot = f"[{self.slot}]" if self.space == "ocm" else ""
        return f"@{self.name}{slot}+{self.offset}"


def align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


@dataclass
class Insn:
    """One instruction before encoding: opcode, named arg fields (ints, floats or Refs),
    the header fields and the flags."""

    opcode: Opcode
    fields: dict[str, int | float | Ref] = field(default_factory=dict)
    func: int = 0
    act: int = 0
    src_dtype: int = DType.FP16
    dst_dtype: int = DType.FP16
    in_zp: int = 0
    out_zp: int = 0
    scale: float = 1.0
    alpha: float = 0.0
    beta: float = 0.0
    flags: int = 0
    layer: int = isa.LAYER_NONE
    queue: Queue | None = None

    def __post_init__(self) -> None:
        if self.queue is None:
            self.queue = isa.OPCODE_QUEUE[Opcode(self.opcode)]

    def set_flag(self, flag: int) -> None:
        self.flags |= int(flag)


@dataclass
class DramTensor:
    """A tensor in DRAM. `region` is input / output / weights / scratch; weights carry
    `data`; `offset` is set by the DRAM plan (relative to the region's base)."""

    name: str
    shape: tuple[int, ...]
    dtype: int
    region: str
    data: bytes | None = None
    offset: int | None = None
    layout: int = isa.Layout.NONE
    scale: float = 1.0
    """Quantisation step of integer tensors: real value = (q - zp) * scale."""
    zp: int = 0
    first: int = -1
    """Index of the layer that writes it (-1: host written)."""
    last: int = -1
    """Index of the last layer that reads it."""
    alias_of: str | None = None
    """Name of the tensor whose bytes this one views (reshape-like layers)."""

    @property
    def size_bytes(self) -> int:
        return math.prod(self.shape) * isa.DTYPE_SIZE[DType(self.dtype)]

    @property
    def esize(self) -> int:
        return isa.DTYPE_SIZE[DType(self.dtype)]


@dataclass
class OcmBuffer:
    """A layer's OCM buffer: `slots` copies of `size` bytes. `kind` "weights" (allocated
    from the low pages) or "scratch" (from the top). `addrs[slot]` once allocated."""

    name: str
    size: int
    slots: int = 1
    kind: str = "scratch"
    addrs: list[int] = field(default_factory=list)


@dataclass
class Block:
    """One tile's unit of work in a layer: loads -> computes -> stores."""

    tile: int
    loads: list[Insn] = field(default_factory=list)
    computes: list[Insn] = field(default_factory=list)
    stores: list[Insn] = field(default_factory=list)


@dataclass
class LayerPlan:
    """One mrvl layer lowered: buffers and blocks (in per-tile program order)."""

    name: str
    kind: str
    index: int
    macs: int = 0
    buffers: dict[str, OcmBuffer] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    split: str = "none"

    def blocks_of(self, tile: int) -> list[Block]:
        return [b for b in self.blocks if b.tile == tile]

    def ocm_bytes(self, page_size: int) -> int:
        return sum(align(b.size, page_size) * b.slots for b in self.buffers.values())


StreamKey = tuple[int, int, int]


@dataclass
class Program:
    """A compiled sub-graph, from conversion to emission."""

    name: str
    num_tiles: int = 1
    ocm_size: int = isa.DEFAULT_OCM_SIZE
    page_size: int = isa.DEFAULT_PAGE_SIZE
    quantize: str = "fp16"
    tensors: dict[str, DramTensor] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    layers: list[LayerPlan] = field(default_factory=list)
    streams: dict[StreamKey, list[Insn]] | None = None
    ocm_end: int | None = None
    """Highest OCM byte used on any tile, page aligned (set by mlip-ocm-alloc)."""
    machine: Machine = DEFAULT_MACHINE
    """The machine compiled for (its tiles, OCM and page size are the fields above); the
    emitter records it in the binary."""

    def add_tensor(self, tensor: DramTensor) -> DramTensor:
        self.tensors[tensor.name] = tensor
        return tensor

    def root(self, name: str) -> DramTensor:
        """The tensor that owns the bytes of `name` (following aliases)."""
        tensor = self.tensors[name]
        while tensor.alias_of is not None:
            tensor = self.tensors[tensor.alias_of]
        return tensor

    def all_insns(self):
        if self.streams is not None:
            for insns in self.streams.values():
                yield from insns
            return
        for layer in self.layers:
            for block in layer.blocks:
                yield from block.loads
                yield from block.computes
                yield from block.stores
