"""The program-independent lower bound on a model binary's cycles (docs/isa.md section 5).

    bound_cycles = max(MACs_fp16 / (tiles * fp16 MACs/cycle/tile)
                       + MACs_int8 / (tiles * int8 MACs/cycle/tile),
                       minimal_bytes / DRAM bytes per cycle)

where the MACs are the layer table's (the compiler's count of the model's multiply-adds, the
same whatever the tile split or OCM size) and `minimal_bytes` = the weights once + the model
inputs + the model outputs, in their binary dtypes. No schedule can beat it on the machine:
the tiles' matrix engines cannot do the MACs faster and the shared DRAM cannot move the bytes
that must cross it faster. `efficiency = bound_cycles / cycles`.

Unlike the "traffic roofline" of a report (the same max over the program's own DMA bytes),
the bound does not move when a program moves more bytes than it must, so excess traffic
shows up as lost efficiency.

Invariant: the bound depends on the binary's model (layer MACs and their dtype, weights,
I/O descriptors) and on the machine, never on the schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mrvl import mlip_isa as isa
from mrvl.machine import Machine
from mrvl.mlip_binary import ModelBinary

__all__ = ["Bound", "independent_bound", "int8_layers", "machine_for"]

_MATRIX_OPCODES = (int(isa.Opcode.CONV), int(isa.Opcode.GEMM))
# the instruction header: opcode, flags, func, act, src_dtype, dst_dtype (u8), layer (u16)
_HEADER = np.dtype([("opcode", "u1"), ("flags", "u1"), ("func", "u1"), ("act", "u1"),
                    ("src_dtype", "u1"), ("dst_dtype", "u1"), ("layer", "<u2")])


@dataclass(frozen=True)
class Bound:
    """The figures of the bound (all in cycles or bytes)."""

    cycles: int
    compute_cycles: float
    traffic_cycles: float
    macs_fp16: int
    macs_int8: int
    minimal_bytes: int
    weights_bytes: int
    input_bytes: int
    output_bytes: int
    tiles: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def machine_for(binary: ModelBinary) -> Machine:
    """The machine a binary runs on: the record in its header (or the override the simulator
    loaded it with)."""
    return binary.effective_machine


def int8_layers(data: bytes | bytearray | memoryview) -> set[int]:
    """Indices of the layers whose matrix-engine instructions (CONV / GEMM) take int8 inputs,
    read from the code of a whole binary file (already validated)."""
    data = memoryview(data)
    header = isa.HEADER_STRUCT.unpack(data[:isa.HEADER_STRUCT.size])
    metadata_size = header[4]
    info = isa.MODEL_INFO_HEAD_STRUCT.unpack(
        data[isa.HEADER_STRUCT.size:isa.HEADER_STRUCT.size + isa.MODEL_INFO_HEAD_STRUCT.size])
    num_insns = info[10]
    start = isa.HEADER_STRUCT.size + metadata_size
    code = np.frombuffer(data, dtype=np.uint8, count=num_insns * isa.INSN_BYTES, offset=start)
    heads = code.reshape(num_insns, isa.INSN_BYTES)[:, :_HEADER.itemsize].copy().view(_HEADER)
    heads = heads.reshape(num_insns)
    matrix = np.isin(heads["opcode"], _MATRIX_OPCODES) & (heads["src_dtype"] ==
                                                           int(isa.DType.INT8))
    return {int(k) for k in np.unique(heads["layer"][matrix]) if k != isa.LAYER_NONE}


def independent_bound(binary: ModelBinary, machine: Machine,
                      int8: set[int] | None = None) -> Bound:
    """The program-independent bound of `binary` on `machine` (module docstring). `int8`:
    indices of the int8 layers (`int8_layers(data)`; none when not given). The tile count is
    the binary's; the per-tile rates and the DRAM bandwidth are the machine's."""
    int8 = int8 or set()
    tiles = binary.tile_end - binary.tile_start + 1
    macs_int8 = sum(layer.macs for k, layer in enumerate(binary.layers) if k in int8)
    macs_fp16 = sum(layer.macs for layer in binary.layers) - macs_int8
    compute = (macs_fp16 / (tiles * machine.macs_per_cycle(int8=False))
               + macs_int8 / (tiles * machine.macs_per_cycle(int8=True)))
    weights = len(binary.weights)
    inputs = sum(desc.size_bytes for desc in binary.inputs)
    outputs = sum(desc.size_bytes for desc in binary.outputs)
    minimal = weights + inputs + outputs
    traffic = minimal / machine.dram_bytes_per_cycle
    return Bound(cycles=math.ceil(max(compute, traffic)), compute_cycles=compute,
                 traffic_cycles=traffic, macs_fp16=macs_fp16, macs_int8=macs_int8,
                 minimal_bytes=minimal, weights_bytes=weights, input_bytes=inputs,
                 output_bytes=outputs, tiles=tiles)
