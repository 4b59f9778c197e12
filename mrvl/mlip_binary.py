"""Model binary writer and reader (format: docs/isa.md, structs: csrc/mlip_isa.h).

The backend compiler builds a `ModelBinary` (instruction streams made with
`Instruction.make`, I/O descriptors, layer table, weights bytes) and calls `to_bytes()`.
`ModelBinary.from_bytes(data)` reads a binary back and checks its structure (magic, version,
sizes, CRC32C of header, metadata and payload, stream table, I/O descriptors and DRAM regions)
raising `BinaryFormatError` with a clear message.  Instruction fields are checked by the C core
on load (`mrvl.sim.simulator.Simulator.load`), which never trusts the binary.

Invariant: `ModelBinary.from_bytes(b).to_bytes() == b` for every binary this module writes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from typing import NoReturn

import crc32c as _crc32c

from mrvl.errors import BinaryFormatError, CompileError
from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE, Machine, machine_problem
from mrvl.mlip_isa import DType, Flag, Layout, Opcode, Queue, Section

__all__ = [
    "Instruction",
    "IODesc",
    "LayerDesc",
    "ModelBinary",
    "DramPlan",
    "plan_dram",
    "crc32c",
    "encode_machine",
    "decode_machine",
    "replace_machine",
]


# ---- CRC32C (Castagnoli) -----------------------------------------------------------------
def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF) of `data` (the `crc32c`
    package; the C core keeps its own to validate binaries)."""
    return _crc32c.crc32c(data)


# ---- instructions -------------------------------------------------------------------------
_FLAG_KWARGS = {
    "pop_prev": Flag.POP_PREV,
    "pop_next": Flag.POP_NEXT,
    "push_prev": Flag.PUSH_PREV,
    "push_next": Flag.PUSH_NEXT,
    "scale_flag": Flag.SCALE,
    "count_pad": Flag.COUNT_PAD,
}


def _u32(name: str, value) -> int:
    kind = isa.field_type(name)
    if kind == "f":
        return struct.unpack("<I", struct.pack("<f", float(value)))[0]
    value = int(value)
    if kind == "i":
        if not -(2**31) <= value < 2**31:
            raise BinaryFormatError(f"instruction field '{name}' = {value} does not fit int32")
        return value & 0xFFFFFFFF
    if not 0 <= value <= 0xFFFFFFFF:
        raise BinaryFormatError(f"instruction field '{name}' = {value} does not fit uint32")
    return value


def _from_u32(name: str, word: int):
    kind = isa.field_type(name)
    if kind == "f":
        return struct.unpack("<f", struct.pack("<I", word))[0]
    if kind == "i":
        return word - (1 << 32) if word & 0x80000000 else word
    return word


@dataclass
class Instruction:
    """One 128-byte mlip instruction.  `args` holds the raw arg[] words (uint32).

    Build with `Instruction.make(Opcode.CONV, in_addr=..., pad_t=-1, act=Act.RELU,
    pop_prev=True, layer=3)`: keyword arguments name the opcode's fields (see
    `mlip_isa.OPCODE_FIELDS`), the header fields (func, act, src_dtype, dst_dtype, layer,
    in_zp, out_zp), the fparams (scale, alpha, beta) and the flags (pop_prev, pop_next,
    push_prev, push_next, scale_flag, count_pad).  Fields not given are 0, except
    bias_addr / scale_addr (ADDR_NONE), layer (LAYER_NONE), scale (1.0) and, for CONV,
    sh / sw / dh / dw / groups (1).
    """

    opcode: int
    flags: int = 0
    func: int = 0
    act: int = 0
    src_dtype: int = DType.FP16
    dst_dtype: int = DType.FP16
    layer: int = isa.LAYER_NONE
    in_zp: int = 0
    out_zp: int = 0
    fparam: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    args: tuple[int, ...] = (0,) * isa.INSN_ARGS

    @classmethod
    def make(cls, opcode: Opcode | int, **kw) -> Instruction:
        opcode = Opcode(opcode)
        names = isa.OPCODE_FIELDS[opcode]
        words = [0] * isa.INSN_ARGS
        defaults: dict[str, int] = {}
        if "bias_addr" in names:
            defaults["bias_addr"] = isa.ADDR_NONE
        if "scale_addr" in names:
            defaults["scale_addr"] = isa.ADDR_NONE
        if opcode == Opcode.CONV:
            defaults.update(sh=1, sw=1, dh=1, dw=1, groups=1)
        if opcode == Opcode.ELTWISE:
            defaults.update(b_col_stride=1, a_scale=1.0, b_scale=1.0, out_scale=1.0)
        if opcode in (Opcode.ACT, Opcode.CONVERT, Opcode.COPY):
            defaults["out_scale"] = 1.0
        for name, value in defaults.items():
            words[names.index(name)] = _u32(name, value)
        flags = int(kw.pop("flags", 0))
        for key, bit in _FLAG_KWARGS.items():
            if kw.pop(key, False):
                flags |= int(bit)
        header = {}
        for key in ("func", "act", "src_dtype", "dst_dtype", "layer", "in_zp", "out_zp"):
            if key in kw:
                header[key] = int(kw.pop(key))
        fparam = [
            float(kw.pop("scale", 1.0)),
            float(kw.pop("alpha", 0.0)),
            float(kw.pop("beta", 0.0)),
            0.0,
        ]
        for name, value in kw.items():
            if name not in names:
                raise BinaryFormatError(
                    f"{opcode.name} has no field '{name}' (fields: {', '.join(names)})"
                )
            words[names.index(name)] = _u32(name, value)
        return cls(opcode=int(opcode), flags=flags, fparam=tuple(fparam), args=tuple(words),
                   **header)

    def field(self, name: str):
        """Value of a named arg[] field (decoded as int32 / float where the field is)."""
        names = isa.OPCODE_FIELDS[Opcode(self.opcode)]
        return _from_u32(name, self.args[names.index(name)])

    def fields(self) -> dict:
        """All named arg[] fields of this opcode, decoded."""
        names = isa.OPCODE_FIELDS.get(Opcode(self.opcode), ())
        return {name: _from_u32(name, self.args[i]) for i, name in enumerate(names)}

    def encode(self) -> bytes:
        try:
            return isa.INSN_STRUCT.pack(
                self.opcode, self.flags, self.func, self.act, self.src_dtype, self.dst_dtype,
                self.layer, self.in_zp, self.out_zp, *self.fparam, *self.args,
            )
        except struct.error as error:
            raise BinaryFormatError(f"cannot encode instruction {self}: {error}") from None

    @classmethod
    def decode(cls, data: bytes) -> Instruction:
        values = isa.INSN_STRUCT.unpack(data)
        return cls(
            opcode=values[0], flags=values[1], func=values[2], act=values[3],
            src_dtype=values[4], dst_dtype=values[5], layer=values[6], in_zp=values[7],
            out_zp=values[8], fparam=tuple(values[9:13]), args=tuple(values[13:]),
        )


# ---- descriptors --------------------------------------------------------------------------
def _name_bytes(name: str, what: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) >= isa.NAME_LEN:
        raise BinaryFormatError(
            f"{what} name '{name}' is {len(raw)} bytes; at most {isa.NAME_LEN - 1} fit"
        )
    return raw


def _name_str(raw: bytes, what: str) -> str:
    raw = raw.split(b"\0", 1)[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BinaryFormatError(f"{what} name is not valid UTF-8: {raw!r}") from None


@dataclass
class IODesc:
    """An input or output tensor of the model, as the host sees it in DRAM."""

    name: str
    shape: tuple[int, ...]
    dtype: int = DType.FP16
    layout: int = Layout.NHWC
    quantize: bool = False
    scale: float = 1.0
    zero_point: int = 0
    dram_offset: int = 0

    @property
    def size_bytes(self) -> int:
        return math.prod(self.shape) * isa.DTYPE_SIZE[DType(self.dtype)]

    def encode(self) -> bytes:
        if len(self.shape) > isa.MAX_RANK:
            raise BinaryFormatError(
                f"tensor '{self.name}' has rank {len(self.shape)}; at most {isa.MAX_RANK}"
            )
        shape = list(self.shape) + [0] * (isa.MAX_RANK - len(self.shape))
        return isa.IO_DESC_STRUCT.pack(
            _name_bytes(self.name, "tensor"), int(self.dtype), int(self.layout),
            int(bool(self.quantize)), float(self.scale), int(self.zero_point),
            len(self.shape), *shape, self.dram_offset, self.size_bytes, 0,
        )

    @classmethod
    def decode(cls, data: bytes, what: str) -> IODesc:
        (name, dtype, layout, quantize, scale, zp, rank, *rest) = isa.IO_DESC_STRUCT.unpack(data)
        shape_all, (dram_offset, size_bytes, _reserved) = rest[: isa.MAX_RANK], rest[isa.MAX_RANK:]
        text = _name_str(name, what)
        if dtype >= isa.NUM_DTYPES:
            raise BinaryFormatError(f"{what} '{text}': unknown dtype {dtype}")
        if layout > max(Layout):
            raise BinaryFormatError(f"{what} '{text}': unknown layout {layout}")
        if quantize > 1:
            raise BinaryFormatError(f"{what} '{text}': quantize flag {quantize} is not 0 or 1")
        if not 1 <= rank <= isa.MAX_RANK:
            raise BinaryFormatError(f"{what} '{text}': rank {rank} not in 1..{isa.MAX_RANK}")
        if any(shape_all[rank:]):
            raise BinaryFormatError(f"{what} '{text}': shape entries beyond its rank are not 0")
        desc = cls(
            name=text, shape=tuple(shape_all[:rank]), dtype=dtype, layout=layout,
            quantize=bool(quantize), scale=scale, zero_point=zp, dram_offset=dram_offset,
        )
        if any(d == 0 for d in desc.shape):
            raise BinaryFormatError(f"{what} '{text}': shape {desc.shape} has a zero dimension")
        if desc.size_bytes != size_bytes:
            raise BinaryFormatError(
                f"{what} '{text}': size_bytes {size_bytes} != product(shape) * dtype size "
                f"= {desc.size_bytes}"
            )
        return desc


@dataclass
class LayerDesc:
    """One row of the layer table (instructions name their layer by index)."""

    name: str
    macs: int = 0
    dram_bytes: int = 0
    kind: int = 0

    def encode(self) -> bytes:
        return isa.LAYER_DESC_STRUCT.pack(
            _name_bytes(self.name, "layer"), self.macs, self.dram_bytes, self.kind, 0, 0
        )

    @classmethod
    def decode(cls, data: bytes) -> LayerDesc:
        name, macs, dram_bytes, kind, _r0, _r1 = isa.LAYER_DESC_STRUCT.unpack(data)
        return cls(name=_name_str(name, "layer"), macs=macs, dram_bytes=dram_bytes, kind=kind)


# ---- the machine record -------------------------------------------------------------------
MACHINE_OFFSET = isa.HEADER_STRUCT.size + isa.MODEL_INFO_SIZE
"""Byte offset of the mlip_machine record in a binary (right after the model info)."""


def encode_machine(machine: Machine) -> bytes:
    """The 80-byte mlip_machine record of `machine` (its reserved words 0)."""
    values = [getattr(machine, name) for name in isa.MACHINE_FIELDS]
    values[isa.MACHINE_FIELDS.index("dram_bytes_per_cycle")] = float(
        machine.dram_bytes_per_cycle)
    return isa.MACHINE_STRUCT.pack(*values, *([0] * isa.MACHINE_RESERVED))


def decode_machine(raw: bytes) -> Machine:
    """The `Machine` of an mlip_machine record; BinaryFormatError (one line) when a field is
    outside its range (csrc/mlip_isa.h, `machine_problem`)."""
    words = isa.MACHINE_STRUCT.unpack(raw)[:-isa.MACHINE_RESERVED]
    values = dict(zip(isa.MACHINE_FIELDS, words, strict=True))
    problem = machine_problem(values)
    if problem is not None:
        raise BinaryFormatError(f"machine record: {problem}")
    try:
        return Machine(**values)  # type: ignore[arg-type]
    except CompileError as error:  # pragma: no cover - machine_problem checks the same
        raise BinaryFormatError(f"machine record: {error}") from None


def replace_machine(data: bytes, machine: Machine, source: str = "<bytes>") -> bytes:
    """`data` (a model binary) with its machine record replaced and the metadata and header
    CRCs recomputed: the same program and results, timed on another machine.  The tiles,
    OCM size and page size are the program's and must stay (BinaryFormatError otherwise)."""
    current = ModelBinary.from_bytes(data, source=source, decode_code=False).machine
    assert current is not None
    for name in ("tiles", "ocm_bytes", "page_bytes"):
        if getattr(machine, name) != getattr(current, name):
            raise BinaryFormatError(
                f"{source}: the program was compiled for {name}={getattr(current, name)}; "
                f"a timing override cannot change it to {getattr(machine, name)} (recompile)")
    out = bytearray(data)
    out[MACHINE_OFFSET:MACHINE_OFFSET + isa.MACHINE_STRUCT.size] = encode_machine(machine)
    hsize = isa.HEADER_STRUCT.size
    metadata_size = isa.HEADER_STRUCT.unpack(bytes(out[:hsize]))[4]
    fields = list(isa.HEADER_STRUCT.unpack(bytes(out[:hsize])))
    fields[10] = crc32c(bytes(out[hsize:hsize + metadata_size]))
    fields[12] = 0
    header = isa.HEADER_STRUCT.pack(*fields)
    fields[12] = crc32c(header)
    out[:hsize] = isa.HEADER_STRUCT.pack(*fields)
    return bytes(out)


# ---- DRAM plan ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DramPlan:
    """Offsets of the four DRAM regions (each 64-byte aligned) and of every I/O tensor."""

    input_offset: int
    input_size: int
    output_offset: int
    output_size: int
    weights_offset: int
    weights_size: int
    scratch_offset: int
    scratch_size: int
    input_offsets: tuple[int, ...]
    output_offsets: tuple[int, ...]

    @property
    def dram_size(self) -> int:
        return self.scratch_offset + self.scratch_size


def _align(value: int, to: int = isa.WEIGHTS_ALIGN) -> int:
    return (value + to - 1) // to * to


def plan_dram(input_sizes, output_sizes, weights_size: int, scratch_size: int) -> DramPlan:
    """Lay out inputs, outputs, weights and scratch consecutively, each tensor 64-aligned."""
    offset = 0
    input_offsets = []
    for size in input_sizes:
        input_offsets.append(offset)
        offset = _align(offset + size)
    input_size = offset
    output_offset = offset
    output_offsets = []
    for size in output_sizes:
        output_offsets.append(offset)
        offset = _align(offset + size)
    output_size = offset - output_offset
    weights_offset = offset
    offset = _align(offset + weights_size)
    scratch_offset = offset
    return DramPlan(
        input_offset=0, input_size=input_size, output_offset=output_offset,
        output_size=output_size, weights_offset=weights_offset, weights_size=weights_size,
        scratch_offset=scratch_offset, scratch_size=_align(scratch_size),
        input_offsets=tuple(input_offsets), output_offsets=tuple(output_offsets),
    )


# ---- the model binary ---------------------------------------------------------------------
StreamKey = tuple[int, int, int]  # (section, tile, queue)


@dataclass
class ModelBinary:
    """Everything a model binary holds.  `streams[(section, tile, queue)]` = instructions.

    DRAM regions are absolute byte offsets in the model's flat DRAM space; the weights bytes
    are copied to `weights_offset` at load.  `dram_size` defaults to the end of scratch.
    """

    name: str = "model"
    model_id: int = 0
    tile_start: int = 0
    tile_end: int = 0
    batch: int = 1
    ocm_start: int = 0
    ocm_end: int = isa.DEFAULT_OCM_SIZE
    page_size: int = isa.DEFAULT_PAGE_SIZE
    input_offset: int = 0
    input_size: int = 0
    output_offset: int = 0
    output_size: int = 0
    weights_offset: int = 0
    scratch_offset: int = 0
    scratch_size: int = 0
    dram_size: int | None = None
    inputs: list[IODesc] = field(default_factory=list)
    outputs: list[IODesc] = field(default_factory=list)
    layers: list[LayerDesc] = field(default_factory=list)
    streams: dict[StreamKey, list[Instruction]] = field(default_factory=dict)
    weights: bytes = b""
    arch: int = isa.ARCH_CN10K
    flags: int = 0
    machine: Machine | None = None
    """The machine the program is compiled for (recorded in the binary); None: the default
    machine with this binary's tiles, page size and OCM (`effective_machine`)."""

    @property
    def effective_machine(self) -> Machine:
        """The machine record `to_bytes` writes."""
        if self.machine is not None:
            return self.machine
        ocm = max(isa.DEFAULT_OCM_SIZE, -(-self.ocm_end // isa.OCM_GRANULE) * isa.OCM_GRANULE)
        try:
            return replace(DEFAULT_MACHINE, tiles=self.tile_end - self.tile_start + 1,
                           page_bytes=self.page_size, ocm_bytes=ocm)
        except CompileError as error:
            raise BinaryFormatError(str(error)) from None

    # -- building --
    def apply_plan(self, plan: DramPlan) -> None:
        """Set the DRAM regions and the I/O offsets from `plan_dram`'s result."""
        self.input_offset, self.input_size = plan.input_offset, plan.input_size
        self.output_offset, self.output_size = plan.output_offset, plan.output_size
        self.weights_offset = plan.weights_offset
        self.scratch_offset, self.scratch_size = plan.scratch_offset, plan.scratch_size
        self.dram_size = plan.dram_size
        for desc, offset in zip(self.inputs, plan.input_offsets, strict=True):
            desc.dram_offset = offset
        for desc, offset in zip(self.outputs, plan.output_offsets, strict=True):
            desc.dram_offset = offset

    def stream(self, section: int, tile: int, queue: int) -> list[Instruction]:
        """The (mutable) instruction list of one stream, created empty when missing."""
        return self.streams.setdefault((int(section), int(tile), int(queue)), [])

    # -- writing --
    def _ordered_streams(self):
        for section in Section:
            for tile in range(isa.MAX_TILES):
                for queue in Queue:
                    yield (int(section), tile, int(queue)), self.streams.get(
                        (int(section), tile, int(queue)), []
                    )

    def to_bytes(self) -> bytes:
        if not 0 <= self.tile_start <= self.tile_end < isa.MAX_TILES:
            raise BinaryFormatError(
                f"tiles {self.tile_start}..{self.tile_end} not within 0..{isa.MAX_TILES - 1}"
            )
        for key, insns in self.streams.items():
            section, tile, queue = key
            if not (0 <= section < isa.NUM_SECTIONS and 0 <= tile < isa.MAX_TILES
                    and 0 <= queue < isa.NUM_QUEUES):
                raise BinaryFormatError(f"invalid stream key {key}")
            if insns and not self.tile_start <= tile <= self.tile_end:
                raise BinaryFormatError(
                    f"stream {key} has instructions but tile {tile} is outside "
                    f"{self.tile_start}..{self.tile_end}"
                )
        if len(self.inputs) > isa.MAX_IO or len(self.outputs) > isa.MAX_IO:
            raise BinaryFormatError(f"at most {isa.MAX_IO} inputs and {isa.MAX_IO} outputs")
        if len(self.layers) > isa.MAX_LAYERS - 1:
            raise BinaryFormatError(f"at most {isa.MAX_LAYERS - 1} layers")
        code = bytearray()
        table = []
        index = 0
        for _key, insns in self._ordered_streams():
            table.append((index, len(insns)))
            for insn in insns:
                code += insn.encode()
            index += len(insns)
        weights_size = len(self.weights)
        dram_size = self.dram_size
        if dram_size is None:
            dram_size = self.scratch_offset + self.scratch_size
        info = isa.MODEL_INFO_HEAD_STRUCT.pack(
            _name_bytes(self.name, "model"), self.tile_start, self.tile_end, self.batch,
            len(self.inputs), len(self.outputs), len(self.layers), self.ocm_start,
            self.ocm_end, self.page_size, index, len(code), weights_size, dram_size,
            self.input_offset, self.input_size, self.output_offset, self.output_size,
            self.weights_offset, self.scratch_offset, self.scratch_size, 0, 0, 0, 0,
        )
        info += b"".join(isa.STREAM_STRUCT.pack(first, count) for first, count in table)
        machine = self.effective_machine
        problem = _machine_mismatch(machine, self.tile_end - self.tile_start + 1,
                                    self.page_size, self.ocm_end)
        if problem is not None:
            raise BinaryFormatError(problem)
        metadata = (
            info
            + encode_machine(machine)
            + b"".join(d.encode() for d in self.inputs)
            + b"".join(d.encode() for d in self.outputs)
            + b"".join(layer.encode() for layer in self.layers)
        )
        payload = bytes(code) + bytes(self.weights)
        header_size = isa.HEADER_STRUCT.size
        total = header_size + len(metadata) + len(payload)
        fields = [
            isa.MAGIC, isa.VERSION_MAJOR, isa.VERSION_MINOR, header_size, len(metadata),
            len(payload), total, self.model_id, self.arch, self.flags, crc32c(metadata),
            crc32c(payload), 0, 0,
        ]
        header = isa.HEADER_STRUCT.pack(*fields)
        fields[12] = crc32c(header)
        header = isa.HEADER_STRUCT.pack(*fields)
        return header + metadata + payload

    def write(self, path) -> None:
        from mrvl.files import write_bytes

        write_bytes(path, self.to_bytes(), "model binary")

    # -- reading --
    @classmethod
    def read(cls, path) -> ModelBinary:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise BinaryFormatError(f"cannot read model binary '{path}': {error}") from None
        return cls.from_bytes(data, source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>",
                   decode_code: bool = True) -> ModelBinary:
        """Parse and structurally validate a binary; raises BinaryFormatError.

        With `decode_code=False` the instruction streams are left empty (faster, for callers
        that only need the metadata, e.g. the simulator after the C core validated all).
        """

        def fail(message: str) -> NoReturn:
            raise BinaryFormatError(f"{source}: {message}")

        data = bytes(data)
        hsize = isa.HEADER_STRUCT.size
        if len(data) < hsize:
            fail(f"truncated: {len(data)} bytes, a header alone is {hsize}")
        (magic, vmaj, vmin, header_size, metadata_size, payload_size, total, model_id, arch,
         flags, metadata_crc, payload_crc, header_crc, _reserved) = isa.HEADER_STRUCT.unpack(
            data[:hsize])
        if magic != isa.MAGIC:
            fail(f"bad magic {magic!r}, expected {isa.MAGIC!r}: not an mlip model binary")
        if vmaj != isa.VERSION_MAJOR:
            fail(f"unsupported version {vmaj}.{vmin}, this reader supports "
                 f"{isa.VERSION_MAJOR}.x")
        if vmin < isa.VERSION_MINOR:
            fail(f"version {vmaj}.{vmin} predates the machine record of format "
                 f"{isa.VERSION_MAJOR}.{isa.VERSION_MINOR}; recompile the model")
        if header_size != hsize:
            fail(f"header_size {header_size} != {hsize}")
        zeroed = bytearray(data[:hsize])
        zeroed[56:60] = b"\0\0\0\0"
        if crc32c(bytes(zeroed)) != header_crc:
            fail("header CRC32C mismatch (corrupt header)")
        if total != len(data):
            fail(f"size mismatch: header says {total} bytes, got {len(data)} "
                 f"({'truncated' if len(data) < total else 'trailing bytes'})")
        if hsize + metadata_size + payload_size != total:
            fail("header sizes do not add up to total_size")
        if arch != isa.ARCH_CN10K:
            fail(f"unsupported target architecture {arch}, expected {isa.ARCH_CN10K}")
        metadata = data[hsize:hsize + metadata_size]
        payload = data[hsize + metadata_size:]
        if crc32c(metadata) != metadata_crc:
            fail("metadata CRC32C mismatch (corrupt metadata)")
        if crc32c(payload) != payload_crc:
            fail("payload CRC32C mismatch (corrupt code or weights)")
        head = isa.MODEL_INFO_HEAD_STRUCT
        if metadata_size < isa.MODEL_INFO_SIZE:
            fail(f"metadata of {metadata_size} bytes is smaller than the model info")
        values = head.unpack(metadata[:head.size])
        (name, tile_start, tile_end, batch, n_in, n_out, n_layers, ocm_start, ocm_end,
         page_size, num_insns, code_size, weights_size, dram_size, input_offset, input_size,
         output_offset, output_size, weights_offset, scratch_offset, scratch_size) = values[:21]
        try:
            model_name = _name_str(name, "model")
        except BinaryFormatError as error:
            fail(str(error))
        binary = cls(
            name=model_name, model_id=model_id, tile_start=tile_start,
            tile_end=tile_end, batch=batch, ocm_start=ocm_start, ocm_end=ocm_end,
            page_size=page_size, input_offset=input_offset, input_size=input_size,
            output_offset=output_offset, output_size=output_size,
            weights_offset=weights_offset, scratch_offset=scratch_offset,
            scratch_size=scratch_size, dram_size=dram_size, arch=arch, flags=flags,
        )
        if not tile_start <= tile_end < isa.MAX_TILES:
            fail(f"tiles {tile_start}..{tile_end} not within 0..{isa.MAX_TILES - 1}")
        if n_in > isa.MAX_IO or n_out > isa.MAX_IO:
            fail(f"{n_in} inputs / {n_out} outputs; at most {isa.MAX_IO} each")
        if n_layers >= isa.MAX_LAYERS:
            fail(f"{n_layers} layers; at most {isa.MAX_LAYERS - 1}")
        expected = (isa.MODEL_INFO_SIZE + isa.MACHINE_STRUCT.size
                    + (n_in + n_out) * isa.IO_DESC_STRUCT.size
                    + n_layers * isa.LAYER_DESC_STRUCT.size)
        if metadata_size != expected:
            fail(f"metadata_size {metadata_size} != {expected} for {n_in} inputs, "
                 f"{n_out} outputs and {n_layers} layers")
        if code_size != num_insns * isa.INSN_BYTES or code_size + weights_size != payload_size:
            fail("code_size / weights_size do not match the payload")
        if dram_size > isa.MAX_DRAM_BYTES:
            fail(f"dram_size {dram_size} exceeds {isa.MAX_DRAM_BYTES}")
        regions = {
            "input": (input_offset, input_size), "output": (output_offset, output_size),
            "weights": (weights_offset, weights_size), "scratch": (scratch_offset, scratch_size),
        }
        for region, (offset, size) in regions.items():
            if offset + size > dram_size:
                fail(f"DRAM {region} region [{offset}, {offset + size}) beyond dram_size "
                     f"{dram_size}")
        if not ocm_start <= ocm_end:
            fail(f"OCM range [{ocm_start}, {ocm_end}) is empty or reversed")
        pos = head.size
        keys = list(binary._ordered_streams())
        next_first = 0
        for key, _ in keys:
            first, count = isa.STREAM_STRUCT.unpack(metadata[pos:pos + 8])
            pos += 8
            if first != next_first or first + count > num_insns:
                fail(f"stream table entry (section, tile, queue) = {key} [{first}, "
                     f"{first + count}) is out of order or beyond {num_insns} instructions")
            next_first = first + count
            if count and not tile_start <= key[1] <= tile_end:
                fail(f"stream {key} has instructions for a tile outside "
                     f"{tile_start}..{tile_end}")
            if count and decode_code:
                binary.streams[key] = [
                    Instruction.decode(payload[i * isa.INSN_BYTES:(i + 1) * isa.INSN_BYTES])
                    for i in range(first, first + count)
                ]
        if next_first != num_insns:
            fail(f"stream table covers {next_first} of {num_insns} instructions")
        try:
            binary.machine = decode_machine(metadata[pos:pos + isa.MACHINE_STRUCT.size])
        except BinaryFormatError as error:
            fail(str(error))
        problem = _machine_mismatch(binary.machine, tile_end - tile_start + 1, page_size,
                                    ocm_end)
        if problem is not None:
            fail(problem)
        pos += isa.MACHINE_STRUCT.size
        size = isa.IO_DESC_STRUCT.size
        for kind, count, target, (r_off, r_size) in (
            ("input", n_in, binary.inputs, regions["input"]),
            ("output", n_out, binary.outputs, regions["output"]),
        ):
            for _ in range(count):
                try:
                    desc = IODesc.decode(metadata[pos:pos + size], kind)
                except BinaryFormatError as error:
                    fail(str(error))
                pos += size
                if not r_off <= desc.dram_offset <= desc.dram_offset + desc.size_bytes <= (
                        r_off + r_size):
                    fail(f"{kind} '{desc.name}' at DRAM [{desc.dram_offset}, "
                         f"{desc.dram_offset + desc.size_bytes}) is outside the {kind} region")
                target.append(desc)
        for _ in range(n_layers):
            try:
                binary.layers.append(
                    LayerDesc.decode(metadata[pos:pos + isa.LAYER_DESC_STRUCT.size]))
            except BinaryFormatError as error:
                fail(str(error))
            pos += isa.LAYER_DESC_STRUCT.size
        binary.weights = payload[code_size:]
        return binary


def _machine_mismatch(machine: Machine, tiles: int, page_size: int, ocm_end: int) -> str | None:
    """How the machine record disagrees with the model info (one line), or None."""
    if machine.tiles != tiles:
        return f"machine record: tiles {machine.tiles} != the {tiles} tile(s) the model uses"
    if machine.page_bytes != page_size:
        return f"machine record: page_bytes {machine.page_bytes} != page_size {page_size}"
    if ocm_end > machine.ocm_bytes:
        return (f"machine record: the model's OCM range ends at {ocm_end}, beyond the "
                f"machine's {machine.ocm_bytes} bytes of OCM")
    return None
