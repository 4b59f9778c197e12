"""Emission of scheduled mlip models: the model binary (`mlip-bin`) and assembly (`mlip-asm`).

Input: `mlip.model` ops after `mlip-ocm-alloc` and `mlip-dma-schedule`: an `mlip.section`
of typed instruction ops whose OCM operands are allocated `mlip.buffer`s and whose DRAM
operands name `mlip.tensor`s. `plan_dram` places the tensors in the four DRAM regions
(inputs, outputs, weights packed 64-byte aligned; scratch activations reused by liveness:
two tensors share bytes only when their live layer ranges do not overlap), and
`to_model_binary` reads the ops: an OCM address is `addrs[slot] + offset` of its buffer, a
DRAM address the tensor's placement plus the offset, the token operands / results become
the POP / PUSH flags, and every (tile, queue) stream keeps the section's order. It builds the
`ModelBinary` of mrvl/mlip_binary.py (header, model info, I/O descriptors, layer table,
code, weights); `write_binary` writes it.

Invariant: every DRAM operand lies inside its tensor, which lies inside its region.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.arg_spec import ArgSpec
from xdsl.utils.target import Target

from xdsl.ir import SSAValue

from mrvl.dialects.mlip import (
    ACT_NAMES,
    DTYPE_BY_NAME,
    ELT_FUNCS,
    POOL_FUNCS,
    SECTION_NAMES,
    DmaOp,
    InstructionOp,
    ModelOp,
    TensorOp,
    model_asm,
    segment_sizes,
)
from mrvl.errors import CompileError
from mrvl import mlip_isa as isa
from mrvl.mlip_binary import Instruction, IODesc, LayerDesc, ModelBinary, _u32
from mrvl.mlip_binary import plan_dram as _plan

LAYER_KINDS = {
    "Conv2D": 1, "FC": 2, "Maxpool2D": 3, "Avgpool2D": 4, "GlobalAvgpool2D": 5,
    "GlobalMaxpool2D": 6, "Sum2D": 7, "Concat": 8, "reshape": 9, "nn.batch_flatten": 10,
    "squeeze": 11, "layout_transform": 12, "transpose": 13, "copy": 14, "Mul2D": 15,
    "Activation": 16, "MatMul": 17, "Softmax": 18, "LayerNorm": 19, "slice": 40,
    "Div2D": 41,
}
"""`kind` of a layer descriptor, by mrvl layer_name (0 for none of these)."""

ALIGN = isa.WEIGHTS_ALIGN


def align(value: int, to: int) -> int:
    return (value + to - 1) // to * to

FLAG_BITS = (int(isa.Flag.POP_PREV), int(isa.Flag.POP_NEXT), int(isa.Flag.PUSH_PREV),
             int(isa.Flag.PUSH_NEXT))
"""The flag of each of `InstructionOp.tokens()` (pop_prev, pop_next, push_prev, push_next)."""


@dataclass
class _Placed:
    """A root tensor's DRAM placement (emission's own record)."""

    region: str
    size: int
    first: int
    last: int
    offset: int = 0


def _place_scratch(tensors: list[_Placed]) -> int:
    """First-fit offsets for scratch tensors by liveness; returns the region size."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    size = 0
    for t in sorted(tensors, key=lambda t: (t.first, -t.size)):
        need = align(t.size, ALIGN)
        busy = sorted((o, e) for o, e, f, last in placed if not (last < t.first or t.last < f))
        offset = 0
        for o, e in busy:
            if offset + need <= o:
                break
            offset = max(offset, e)
        t.offset = offset
        placed.append((offset, offset + need, t.first, t.last))
        size = max(size, offset + need)
    return size


def plan_dram(model: ModelOp):
    """(plan, weights bytes, absolute DRAM address of every root tensor by name)."""
    tensors = model.tensors()
    weights = bytearray()
    placed: dict[str, _Placed] = {}
    for name, t in tensors.items():
        if t.alias_of is not None:
            continue
        first, last = t.live_range()
        p = placed[name] = _Placed(t.region.data, t.size_bytes, first, last)
        if p.region == "weights":
            p.offset = len(weights)
            weights += t.data.data if t.data is not None else b""
            weights += b"\0" * (align(len(weights), ALIGN) - len(weights))
    scratch = [p for p in placed.values() if p.region == "scratch"]
    for p in scratch:
        if p.first < 0:
            p.first = p.last = max(p.last, 0)
    scratch_size = _place_scratch(scratch)
    ins = [placed[a.data] for a in model.inputs.data]
    outs = [placed[a.data] for a in model.outputs.data]
    plan = _plan([p.size for p in ins], [p.size for p in outs], len(weights), scratch_size)
    for p, off in zip(ins, plan.input_offsets, strict=True):
        p.offset = off - plan.input_offset
    for p, off in zip(outs, plan.output_offsets, strict=True):
        p.offset = off - plan.output_offset
    base = {"input": plan.input_offset, "output": plan.output_offset,
            "weights": plan.weights_offset, "scratch": plan.scratch_offset}
    address = {}
    for name, t in tensors.items():
        root = name
        while tensors[root].alias_of is not None:
            root = tensors[root].alias_of.data  # type: ignore[union-attr]
        address[name] = base[placed[root].region] + placed[root].offset
    return plan, bytes(weights), address


def _short(name: str) -> str:
    raw = name.encode("utf-8")
    if len(raw) < isa.NAME_LEN:
        return name
    return raw[: isa.NAME_LEN - 1].decode("utf-8", errors="ignore")


def dma_bytes(op: InstructionOp) -> int:
    """DRAM bytes one DMA_LOAD / DMA_STORE op moves (element count x the DRAM-side dtype)."""
    props = op.properties
    count = 1
    for k in range(4):
        attr = props.get(f"src_dim{k}")
        count *= 0 if attr is None else attr.value.data  # type: ignore[union-attr]
    side = props["src" if op.OPCODE == isa.Opcode.DMA_LOAD else "dst"].data  # type: ignore[union-attr]
    return count * isa.DTYPE_SIZE[DTYPE_BY_NAME[side]]


def layer_dram_bytes(model: ModelOp) -> dict[int, int]:
    """DRAM bytes each layer index moves (both directions, DRAM side)."""
    out = {layer.index.value.data: 0 for layer in model.layers()}
    for op in model.instructions():
        if isinstance(op, DmaOp):
            index = op.properties["layer"].value.data  # type: ignore[union-attr]
            out[index] = out.get(index, 0) + dma_bytes(op)
    return out


def _func_code(op: InstructionOp) -> int:
    func = op.properties.get("func")
    if func is None:
        return 0
    names = POOL_FUNCS if op.OPCODE == isa.Opcode.POOL else ELT_FUNCS
    return int(names[func.data])  # type: ignore[union-attr]


@functools.cache
def _word_plan(cls: type[InstructionOp]):
    """(default arg words, [(field, kind, slot prop, offset prop, word index, type)]) of an
    op class: `Instruction.make`'s defaults and where each ISA field goes."""
    names = isa.OPCODE_FIELDS[cls.OPCODE]
    template = tuple(Instruction.make(cls.OPCODE).args)
    plan = [(name, kind, slot, offset, names.index(name), isa.field_type(name))
            for name, kind, slot, offset in cls.field_plan()]
    return template, plan


def _word(name: str, ftype: str, value) -> int:
    if ftype == "u" and 0 <= value <= 0xFFFFFFFF:
        return value
    return _u32(name, value)


def _instruction(op: InstructionOp, addrs: dict[SSAValue, list[int]],
                 dram: dict[str, int], model_name: str) -> Instruction:
    """The binary instruction of one scheduled op (what `Instruction.make` builds from the
    same fields, without its per-keyword lookups)."""
    props = op.properties
    template, plan = _word_plan(type(op))
    words = list(template)
    named = op.named_operands()  # the OCM address fields and the popped tokens
    for name, kind, slot_name, offset_name, index, ftype in plan:
        if kind == "value":
            attr = props.get(name)
            if attr is not None:
                words[index] = _word(name, ftype, attr.value.data)  # type: ignore[union-attr]
        elif kind == "ocm":
            buf = named.get(name)
            if buf is None:
                continue
            slots = addrs.get(buf)
            if not slots:
                raise CompileError(f"@{model_name}: unallocated OCM operand of {op.name} "
                                   "(run mlip-ocm-alloc)")
            slot = props.get(slot_name)
            offset = props.get(offset_name)
            words[index] = _word(name, ftype, slots[0 if slot is None else slot.value.data]  # type: ignore[union-attr]
                                 + (0 if offset is None else offset.value.data))  # type: ignore[union-attr]
        else:
            tensor = props["dram"].root_reference.data  # type: ignore[union-attr]
            words[index] = _word(name, ftype, dram[tensor]
                                 + props["dram_offset"].value.data)  # type: ignore[union-attr]
    flags = 0
    if "pop_prev" in named:
        flags |= FLAG_BITS[0]
    if "pop_next" in named:
        flags |= FLAG_BITS[1]
    pushes = segment_sizes(props["resultSegmentSizes"])  # type: ignore[arg-type]
    if pushes[0]:
        flags |= FLAG_BITS[2]
    if pushes[1]:
        flags |= FLAG_BITS[3]
    if "scale_flag" in props:
        flags |= int(isa.Flag.SCALE)
    if "count_pad" in props:
        flags |= int(isa.Flag.COUNT_PAD)
    act = props.get("act")
    layer = props.get("layer")
    in_zp = props.get("in_zp")
    out_zp = props.get("out_zp")
    scale = props.get("scale")
    alpha = props.get("alpha")
    beta = props.get("beta")
    return Instruction(
        opcode=int(op.OPCODE), flags=flags, func=_func_code(op),
        act=int(ACT_NAMES[act.data]) if act else 0,  # type: ignore[union-attr]
        src_dtype=int(DTYPE_BY_NAME[props["src"].data]),  # type: ignore[union-attr]
        dst_dtype=int(DTYPE_BY_NAME[props["dst"].data]),  # type: ignore[union-attr]
        layer=isa.LAYER_NONE if layer is None else layer.value.data,  # type: ignore[union-attr]
        in_zp=0 if in_zp is None else in_zp.value.data,  # type: ignore[union-attr]
        out_zp=0 if out_zp is None else out_zp.value.data,  # type: ignore[union-attr]
        fparam=(1.0 if scale is None else float(scale.value.data),  # type: ignore[union-attr]
                0.0 if alpha is None else float(alpha.value.data),  # type: ignore[union-attr]
                0.0 if beta is None else float(beta.value.data), 0.0),  # type: ignore[union-attr]
        args=tuple(words))


def to_model_binary(model: ModelOp, model_id: int = 0) -> ModelBinary:
    """The model binary of a scheduled, OCM-allocated `mlip.model`."""
    name = model.sym_name.data
    if not model.scheduled or model.ocm_end is None:
        raise CompileError(f"@{name}: run mlip-ocm-alloc and mlip-dma-schedule first")
    dram_bytes = layer_dram_bytes(model)
    plan, weights, dram = plan_dram(model)
    tiles = model.num_tiles.value.data
    binary = ModelBinary(
        name=_short(name), model_id=model_id, tile_start=0, tile_end=tiles - 1,
        ocm_start=0, ocm_end=model.ocm_end.value.data, page_size=model.page_size.value.data,
        machine=model.machine_record(),
    )
    tensors = model.tensors()
    for attr in model.inputs.data:
        binary.inputs.append(_io_desc(tensors[attr.data], is_input=True))
    for attr in model.outputs.data:
        binary.outputs.append(_io_desc(tensors[attr.data]))
    binary.weights = weights
    binary.apply_plan(plan)
    for layer in model.layers():
        index = layer.index.value.data
        binary.layers.append(LayerDesc(_short(layer.sym_name.data), macs=layer.macs.value.data,
                                       dram_bytes=dram_bytes.get(index, 0),
                                       kind=LAYER_KINDS.get(layer.kind.data, 0)))
    addrs = {buf.result: buf.addresses() for buf in model.buffers()}
    for section in model.sections():
        sec = int(SECTION_NAMES[section.section.data])
        for tile in range(tiles):
            for queue in isa.Queue:
                binary.stream(sec, tile, queue)
        for op in section.instructions():
            key = (sec, op.properties["tile"].value.data, int(op.queue()))  # type: ignore[union-attr]
            binary.stream(*key).append(_instruction(op, addrs, dram, name))
    return binary


def _io_desc(t: TensorOp, is_input: bool = False) -> IODesc:
    """Descriptor of an I/O tensor; quantised inputs carry the multiplier q = x * scale,
    quantised outputs the step x = q * scale (docs/isa.md section 6)."""
    dtype = t.dtype_code
    quantize = dtype in (isa.DType.INT8, isa.DType.UINT8, isa.DType.INT16, isa.DType.UINT16)
    step = 1.0 if t.scale is None else t.scale.value.data
    zp = 0 if t.zero_point is None else t.zero_point.value.data
    scale = 1.0
    if quantize:
        scale = 1.0 / step if is_input else step
    layout = 0 if t.layout is None else t.layout.value.data
    return IODesc(_short(t.sym_name.data), t.shape_tuple(), dtype=dtype, layout=layout,
                  quantize=quantize, scale=scale, zero_point=zp if quantize else 0)


def write_binary(model: ModelOp, path: str | Path) -> bytes:
    data = to_model_binary(model).to_bytes()
    Path(path).write_bytes(data)
    return data


def _models(module: ModuleOp) -> list[ModelOp]:
    return [op for op in module.ops if isinstance(op, ModelOp)]


@dataclass(frozen=True)
class _MlipTarget(Target):
    """A target whose bad `-t` options are a one-line CompileError, not a traceback."""

    @classmethod
    def from_spec(cls, spec: ArgSpec):
        try:
            return super().from_spec(spec)
        except ValueError as exc:
            raise CompileError(f"{cls.name}: invalid option: {exc}") from exc


@dataclass(frozen=True)
class MlipAsmTarget(_MlipTarget):
    """Print every scheduled `mlip.model` as assembly (one line per instruction)."""

    name = "mlip-asm"

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        for model in _models(module):
            output.write(model_asm(model))


@dataclass(frozen=True)
class MlipBinTarget(_MlipTarget):
    """The model binary of the (single) scheduled `mlip.model`.

    xDSL's driver hands targets a text stream, so the bytes go to the file named by the
    `path` option (`-t 'mlip-bin{path="m.bin"}'`, then one summary line is printed); without
    it the binary is printed as hex (`xxd -r -p` turns it back into bytes).
    """

    name = "mlip-bin"

    path: str = ""

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        models = _models(module)
        if len(models) != 1:
            raise CompileError(f"mlip-bin: expected one mlip.model, got {len(models)}")
        data = to_model_binary(models[0]).to_bytes()
        if not self.path:
            output.write(data.hex() + "\n")
            return
        try:
            Path(self.path).write_bytes(data)
        except OSError as error:
            raise CompileError(f"mlip-bin: cannot write '{self.path}': {error}") from None
        output.write(f"{self.path}: {len(data)} bytes, model {models[0].sym_name.data}\n")
