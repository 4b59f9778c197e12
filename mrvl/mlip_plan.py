"""The conversion's internal builder: what the per-layer lowerings of
`convert-mrvl-to-mlip` (lowering/convert_mrvl_to_mlip.py) fill in before `build_model` turns
it into an `mlip.model` op.

A `Program` holds DRAM tensors (inputs, outputs, weights, scratch activations) and per layer
a list of `Block`s, each one tile's unit of double-buffered work (its DMA loads, its compute
instructions, its DMA stores) whose operands name buffers and tensors symbolically (`Ref`).
The passes do not see these records: they work on the `mlip` dialect ops (dialects/mlip.py),
where a buffer is an `!mlip.buffer` value and a dependency an `!mlip.token` value.

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
    upwards from the layer's weights base, page 0 without weight prefetch) or "scratch"
    (from the top). `addrs[slot]` once allocated."""

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



@dataclass
class Program:
    """A sub-graph being converted (turned into an `mlip.model` by `build_model`)."""

    name: str
    num_tiles: int = 1
    ocm_size: int = isa.DEFAULT_OCM_SIZE
    page_size: int = isa.DEFAULT_PAGE_SIZE
    quantize: str = "fp16"
    tensors: dict[str, DramTensor] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    layers: list[LayerPlan] = field(default_factory=list)
    machine: Machine = DEFAULT_MACHINE
    """The machine compiled for (its tiles, OCM and page size are the fields above);
    `build_model` records it in the model for the binary."""

    def add_tensor(self, tensor: DramTensor) -> DramTensor:
        self.tensors[tensor.name] = tensor
        return tensor

    def root(self, name: str) -> DramTensor:
        """The tensor that owns the bytes of `name` (following aliases)."""
        tensor = self.tensors[name]
        while tensor.alias_of is not None:
            tensor = self.tensors[tensor.alias_of]
        return tensor
