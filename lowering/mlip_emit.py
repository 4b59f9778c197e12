"""Emission of scheduled mlip programs: the model binary (`mlip-bin`) and assembly (`mlip-asm`).

Input: a `Program` (or `mlip.model` ops) after `mlip-ocm-alloc` and `mlip-dma-schedule`:
streams of instructions whose OCM operands are absolute and whose DRAM operands still name
tensors. `plan_dram` places the tensors in the four DRAM regions (inputs, outputs, weights
packed 64-byte aligned; scratch activations reused by liveness: two tensors share bytes only
when their live layer ranges do not overlap), `to_model_binary` resolves every DRAM operand
and builds the `ModelBinary` of mrvl/mlip_binary.py (header, model info, I/O descriptors,
layer table, code, weights), and `write_binary` writes it.

Invariant: every DRAM operand lies inside its tensor, which lies inside its region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.arg_spec import ArgSpec
from xdsl.utils.target import Target

from mrvl.errors import CompileError
from mrvl.machine import Machine
from mrvl.mlip_plan import DramTensor, Insn, Program, Ref, align
from mrvl import mlip_isa as isa
from mrvl.mlip_binary import Instruction, IODesc, LayerDesc, ModelBinary, plan_dram as _plan

LAYER_KINDS = {
    "Conv2D": 1, "FC": 2, "Maxpool2D": 3, "Avgpool2D": 4, "GlobalAvgpool2D": 5,
    "GlobalMaxpool2D": 6, "Sum2D": 7, "Concat": 8, "reshape": 9, "nn.batch_flatten": 10,
    "squeeze": 11, "layout_transform": 12, "transpose": 13, "copy": 14, "Mul2D": 15,
    "Activation": 16,
}
"""`kind` of a layer descriptor, by mrvl layer_name (0 for none of these)."""

ALIGN = isa.WEIGHTS_ALIGN


def _place_scratch(tensors: list[DramTensor]) -> int:
    """First-fit offsets for scratch tensors by liveness; returns the region size."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    size = 0
    for t in sorted(tensors, key=lambda t: (t.first, -t.size_bytes)):
        need = align(t.size_bytes, ALIGN)
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


def plan_dram(prog: Program):
    """Give every root tensor its region-relative offset; returns (plan, weights bytes)."""
    weights = bytearray()
    for t in prog.tensors.values():
        if t.region == "weights" and t.alias_of is None:
            t.offset = len(weights)
            weights += t.data or b""
            weights += b"\0" * (align(len(weights), ALIGN) - len(weights))
    scratch = [t for t in prog.tensors.values() if t.region == "scratch" and t.alias_of is None]
    for t in scratch:
        if t.first < 0:
            t.first = t.last = max(t.last, 0)
    scratch_size = _place_scratch(scratch)
    ins = [prog.tensors[n] for n in prog.inputs]
    outs = [prog.tensors[n] for n in prog.outputs]
    plan = _plan([t.size_bytes for t in ins], [t.size_bytes for t in outs], len(weights),
                 scratch_size)
    for t, off in zip(ins, plan.input_offsets, strict=True):
        t.offset = off - plan.input_offset
    for t, off in zip(outs, plan.output_offsets, strict=True):
        t.offset = off - plan.output_offset
    return plan, bytes(weights)


def _region_base(plan, region: str) -> int:
    return {"input": plan.input_offset, "output": plan.output_offset,
            "weights": plan.weights_offset, "scratch": plan.scratch_offset}[region]


def _short(name: str) -> str:
    raw = name.encode("utf-8")
    if len(raw) < isa.NAME_LEN:
        return name
    return raw[: isa.NAME_LEN - 1].decode("utf-8", errors="ignore")


def dma_bytes(insn: Insn) -> int:
    """DRAM bytes one DMA_LOAD / DMA_STORE moves (element count x the DRAM-side dtype)."""
    count = 1
    for k in range(4):
        count *= int(insn.fields[f"src_dim{k}"])  # type: ignore[arg-type]
    side = insn.src_dtype if insn.opcode == isa.Opcode.DMA_LOAD else insn.dst_dtype
    return count * isa.DTYPE_SIZE[isa.DType(side)]


def layer_dram_bytes(prog: Program) -> list[int]:
    """DRAM bytes each layer moves (both directions, DRAM side)."""
    out = [0] * len(prog.layers)
    for layer in prog.layers:
        for blk in layer.blocks:
            out[layer.index] += sum(dma_bytes(insn) for insn in (*blk.loads, *blk.stores))
    return out


def _machine(prog: Program) -> Machine:
    """The machine record of a program: its machine, with the tiles, OCM and page size the
    program was built for."""
    return replace(prog.machine, tiles=prog.num_tiles, ocm_bytes=prog.ocm_size,
                   page_bytes=prog.page_size)


def to_model_binary(prog: Program, model_id: int = 0) -> ModelBinary:
    """The model binary of a scheduled, OCM-allocated program."""
    if prog.streams is None or prog.ocm_end is None:
        raise CompileError(f"@{prog.name}: run mlip-ocm-alloc and mlip-dma-schedule first")
    dram_bytes = layer_dram_bytes(prog)
    plan, weights = plan_dram(prog)
    binary = ModelBinary(
        name=_short(prog.name), model_id=model_id, tile_start=0,
        tile_end=prog.num_tiles - 1, ocm_start=0, ocm_end=prog.ocm_end,
        page_size=prog.page_size,
        machine=_machine(prog),
    )
    for name in prog.inputs:
        t = prog.tensors[name]
        binary.inputs.append(_io_desc(t, is_input=True))
    for name in prog.outputs:
        t = prog.tensors[name]
        binary.outputs.append(_io_desc(t))
    binary.weights = weights
    binary.apply_plan(plan)
    for layer in prog.layers:
        binary.layers.append(LayerDesc(_short(layer.name), macs=layer.macs,
                                       dram_bytes=dram_bytes[layer.index],
                                       kind=LAYER_KINDS.get(layer.kind, 0)))
    for key, insns in prog.streams.items():
        out = binary.stream(*key)
        for insn in insns:
            fields = {}
            for name, value in insn.fields.items():
                if isinstance(value, Ref):
                    if value.space != "dram":
                        raise CompileError(f"@{prog.name}: unallocated OCM operand {value}")
                    t = prog.root(value.name)
                    assert t.offset is not None
                    value = _region_base(plan, t.region) + t.offset + value.offset
                fields[name] = value
            out.append(Instruction.make(
                insn.opcode, func=insn.func, act=insn.act, src_dtype=insn.src_dtype,
                dst_dtype=insn.dst_dtype, layer=insn.layer, in_zp=insn.in_zp,
                out_zp=insn.out_zp, scale=insn.scale, alpha=insn.alpha, beta=insn.beta,
                flags=insn.flags, **fields))
    return binary


def _io_desc(t: DramTensor, is_input: bool = False) -> IODesc:
    """Descriptor of an I/O tensor; quantised inputs carry the multiplier q = x * scale,
    quantised outputs the step x = q * scale (docs/isa.md section 6)."""
    quantize = t.dtype in (isa.DType.INT8, isa.DType.UINT8, isa.DType.INT16, isa.DType.UINT16)
    scale = 1.0
    if quantize:
        scale = 1.0 / t.scale if is_input else t.scale
    return IODesc(_short(t.name), tuple(t.shape), dtype=t.dtype, layout=t.layout,
                  quantize=quantize, scale=scale, zero_point=t.zp if quantize else 0)


def write_binary(prog: Program, path: str | Path) -> bytes:
    data = to_model_binary(prog).to_bytes()
    Path(path).write_bytes(data)
    return data


def _programs(module: ModuleOp) -> list[Program]:
    from mrvl.dialects.mlip import ModelOp, op_to_program

    return [op_to_program(op) for op in module.ops if isinstance(op, ModelOp)]


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
        from mrvl.dialects.mlip import program_asm

        for prog in _programs(module):
            output.write(program_asm(prog))


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
        progs = _programs(module)
        if len(progs) != 1:
            raise CompileError(f"mlip-bin: expected one mlip.model, got {len(progs)}")
        data = to_model_binary(progs[0]).to_bytes()
        if not self.path:
            output.write(data.hex() + "\n")
            return
        try:
            Path(self.path).write_bytes(data)
        except OSError as error:
            raise CompileError(f"mlip-bin: cannot write '{self.path}': {error}") from None
        output.write(f"{self.path}: {len(data)} bytes, model {progs[0].name}\n")
