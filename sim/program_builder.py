"""Hand-built mlip programs for tests, fuzzing and benchmarks (not the backend compiler).

`ProgramBuilder` makes a model binary for `tiles` tiles in which:
- `const(tile, array)` puts the array's bytes in the weights section and emits a DMA_LOAD
  (bit copy) of it into the tile's OCM at a fresh address, returned;
- `input(tile, name, array_shape, dtype)` declares a model input and loads it likewise;
- `alloc(tile, nbytes)` reserves OCM;
- `compute(tile, insn)` appends a compute instruction;
- `store(tile, ocm_addr, name, shape, dtype)` declares an output and emits a DMA_STORE;
- `tile_copy(tile, insn)` issues a TILE_COPY (`tile_copy_2d` makes one) at this point of the
  tile's compute program, and `barrier()` appends a BARRIER to every tile's.
Synchronisation is added by `build()`: per tile, the last DMA_LOAD pushes a token to compute,
the first compute instruction pops it, the last compute instruction pushes one to DMA_OUT and
the first DMA_STORE pops it.  Compute instructions run in program order.  Each run of
consecutive TILE_COPYs goes to the DMA_OUT queue (before the stores) between two compute NOPs:
the first pushes a token to DMA_OUT (the copies read what the compute program wrote before),
the first copy pops it, the last copy pushes one back and the second NOP pops it (so the
compute program, and through a later barrier every tile, is ordered after the copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE
from mrvl.mlip_binary import IODesc, Instruction, LayerDesc, ModelBinary, plan_dram
from mrvl.mlip_isa import DType, Flag, Opcode, Queue, Section

NUMPY_DTYPE = {
    np.dtype("float32"): DType.FP32, np.dtype("float16"): DType.FP16,
    np.dtype("int8"): DType.INT8, np.dtype("uint8"): DType.UINT8,
    np.dtype("int16"): DType.INT16, np.dtype("uint16"): DType.UINT16,
    np.dtype("int32"): DType.INT32, np.dtype("uint32"): DType.UINT32,
}


def flat_dma(opcode: Opcode, dram_addr: int, ocm_addr: int, count: int, dtype: int,
             **kw) -> Instruction:
    """A 1-D contiguous DMA of `count` elements of `dtype` (no conversion)."""
    return Instruction.make(
        opcode, dram_addr=dram_addr, ocm_addr=ocm_addr, dim0=1, dim1=1, dim2=1, dim3=count,
        src_dim0=1, src_dim1=1, src_dim2=1, src_dim3=count, dram_stride3=1, ocm_stride3=1,
        src_dtype=dtype, dst_dtype=dtype, **kw,
    )


def tile_copy_2d(src_addr: int, dst_addr: int, dst_tile_mask: int, rows: int, cols: int,
                 dtype: int, src_row_stride: int | None = None,
                 dst_row_stride: int | None = None, **kw) -> Instruction:
    """A TILE_COPY of `rows` x `cols` elements of `dtype` (row strides in elements, default
    `cols`) to the tiles of `dst_tile_mask` (bit i = tile i)."""
    return Instruction.make(
        Opcode.TILE_COPY, src_addr=src_addr, dst_addr=dst_addr, dst_tile_mask=dst_tile_mask,
        dim0=1, dim1=1, dim2=rows, dim3=cols,
        src_stride2=cols if src_row_stride is None else src_row_stride, src_stride3=1,
        dst_stride2=cols if dst_row_stride is None else dst_row_stride, dst_stride3=1,
        src_dtype=dtype, dst_dtype=dtype, **kw,
    )


@dataclass
class _Pending:
    kind: str  # "const" | "input"
    tile: int
    ocm_addr: int
    count: int
    dtype: int
    weights_offset: int = 0
    input_index: int = 0


@dataclass
class ProgramBuilder:
    tiles: int = 1
    ocm_size: int = isa.DEFAULT_OCM_SIZE
    name: str = "handmade"
    layer: int = 0
    _weights: bytearray = field(default_factory=bytearray)
    _next_ocm: list[int] = field(default_factory=list)
    _loads: list[_Pending] = field(default_factory=list)
    _compute: dict[int, list[Instruction]] = field(default_factory=dict)
    _stores: list[tuple[int, int, int, int]] = field(default_factory=list)
    inputs: list[IODesc] = field(default_factory=list)
    outputs: list[IODesc] = field(default_factory=list)
    extra: dict[tuple[int, int, int], list[Instruction]] = field(default_factory=dict)
    scratch_size: int = 0

    def __post_init__(self):
        self._next_ocm = [0] * self.tiles

    def alloc(self, tile: int, nbytes: int, align: int = 64) -> int:
        addr = (self._next_ocm[tile] + align - 1) // align * align
        if addr + nbytes > self.ocm_size:
            raise ValueError(f"tile {tile}: OCM full ({addr + nbytes} > {self.ocm_size})")
        self._next_ocm[tile] = addr + max(nbytes, 1)
        return addr

    def const(self, tile: int, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        dtype = NUMPY_DTYPE[array.dtype]
        addr = self.alloc(tile, array.nbytes)
        offset = (len(self._weights) + 63) // 64 * 64
        self._weights += b"\0" * (offset - len(self._weights)) + array.tobytes()
        self._loads.append(_Pending("const", tile, addr, array.size, dtype, offset))
        return addr

    def input(self, tile: int, name: str, shape, dtype: int = DType.FP16) -> int:
        """Declare an input (fp32 on the host, `dtype` in DRAM) and load it into OCM."""
        index = next((i for i, d in enumerate(self.inputs) if d.name == name), None)
        if index is None:
            self.inputs.append(IODesc(name, tuple(shape), dtype=dtype))
            index = len(self.inputs) - 1
        count = int(np.prod(shape))
        addr = self.alloc(tile, count * isa.DTYPE_SIZE[DType(dtype)])
        self._loads.append(_Pending("input", tile, addr, count, dtype, input_index=index))
        return addr

    def compute(self, tile: int, insn: Instruction) -> None:
        if insn.layer == isa.LAYER_NONE:
            insn = replace(insn, layer=self.layer)
        self._compute.setdefault(tile, []).append(insn)

    def tile_copy(self, tile: int, insn: Instruction) -> None:
        """A TILE_COPY issued by `tile` after its compute instructions so far."""
        if insn.opcode != Opcode.TILE_COPY:
            raise ValueError(f"tile_copy takes a TILE_COPY, got {Opcode(insn.opcode).name}")
        self.compute(tile, insn)

    def barrier(self) -> None:
        """A BARRIER at this point of every tile's compute program."""
        for tile in range(self.tiles):
            self.compute(tile, Instruction.make(Opcode.BARRIER))

    def _split_copies(self, program: list[Instruction]) -> tuple[list[Instruction],
                                                                  list[Instruction]]:
        """(compute stream, DMA_OUT copies) of a compute program with TILE_COPYs in it."""
        comp: list[Instruction] = []
        copies: list[Instruction] = []
        i = 0
        while i < len(program):
            if program[i].opcode != Opcode.TILE_COPY:
                comp.append(program[i])
                i += 1
                continue
            group = []
            while i < len(program) and program[i].opcode == Opcode.TILE_COPY:
                group.append(program[i])
                i += 1
            group[0] = replace(group[0], flags=group[0].flags | Flag.POP_PREV)
            group[-1] = replace(group[-1], flags=group[-1].flags | Flag.PUSH_PREV)
            layer = group[0].layer
            comp.append(Instruction.make(Opcode.NOP, push_next=True, layer=layer))
            comp.append(Instruction.make(Opcode.NOP, pop_next=True, layer=layer))
            copies.extend(group)
        return comp, copies

    def store(self, tile: int, ocm_addr: int, name: str, shape, dtype: int) -> None:
        self.outputs.append(IODesc(name, tuple(shape), dtype=dtype))
        self._stores.append((tile, ocm_addr, len(self.outputs) - 1, dtype))

    def build(self) -> ModelBinary:
        b = ModelBinary(name=self.name, tile_start=0, tile_end=self.tiles - 1, ocm_start=0,
                        ocm_end=self.ocm_size,
                        machine=replace(DEFAULT_MACHINE, tiles=self.tiles,
                                        ocm_bytes=self.ocm_size))
        b.inputs = list(self.inputs)
        b.outputs = list(self.outputs)
        b.weights = bytes(self._weights)
        b.layers = [LayerDesc("layer0")]
        b.apply_plan(plan_dram([d.size_bytes for d in b.inputs],
                               [d.size_bytes for d in b.outputs], len(b.weights),
                               self.scratch_size))
        for tile in range(self.tiles):
            loads = [p for p in self._loads if p.tile == tile]
            comp, copies = self._split_copies(list(self._compute.get(tile, [])))
            stores = [s for s in self._stores if s[0] == tile]
            dma_in = b.stream(Section.MAIN, tile, Queue.DMA_IN)
            for p in loads:
                dram = (b.weights_offset + p.weights_offset if p.kind == "const"
                        else b.inputs[p.input_index].dram_offset)
                dma_in.append(flat_dma(Opcode.DMA_LOAD, dram, p.ocm_addr, p.count, p.dtype,
                                       layer=0))
            if comp and dma_in:
                dma_in[-1] = replace(dma_in[-1], flags=dma_in[-1].flags | Flag.PUSH_NEXT)
                comp[0] = replace(comp[0], flags=comp[0].flags | Flag.POP_PREV)
            store_insns = []
            for t, addr, index, dtype in stores:
                desc = b.outputs[index]
                count = int(np.prod(desc.shape))
                store_insns.append(flat_dma(Opcode.DMA_STORE, desc.dram_offset, addr, count,
                                            dtype, layer=0))
            if comp and store_insns:
                comp[-1] = replace(comp[-1], flags=comp[-1].flags | Flag.PUSH_NEXT)
                store_insns[0] = replace(store_insns[0],
                                         flags=store_insns[0].flags | Flag.POP_PREV)
            b.stream(Section.MAIN, tile, Queue.DMA_OUT).extend(copies + store_insns)
            b.stream(Section.MAIN, tile, Queue.COMPUTE).extend(comp)
        for key, insns in self.extra.items():
            b.stream(*key).extend(insns)
        b.streams = {k: v for k, v in b.streams.items() if v}
        return b
