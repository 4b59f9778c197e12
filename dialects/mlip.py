"""The `mlip` dialect: the accelerator's ISA (docs/isa.md), one op per instruction.

Like xDSL's riscv dialect, an instruction op prints itself as one assembly line: the
mnemonic, then `name = value` operands separated by commas, then the set flags:

```mlir
mlip.conv in_addr = @in[0, 0], ih = 4, iw = 4, ic = 2, ..., act = relu, layer = 0, pop_prev
mlip.dma_load dram_addr = @x[0], ocm_addr = 1032192, dim0 = 1, ..., push_next
```

An address operand is a number (an absolute OCM or DRAM byte address) or, before
allocation, a symbolic reference: `@buf[slot, offset]` (a layer's OCM buffer) or
`@tensor[offset]` (a DRAM tensor). Header fields: `func`, `act`, `src`, `dst` (dtype names
f32 f16 i8 u8 i16 u16 i32 u32), `in_zp`, `out_zp`, `scale`, `alpha`, `beta`, `layer`; flags:
`pop_prev pop_next push_prev push_next scale_flag count_pad`.

Containers (the program model of mrvl/mlip_plan.py, one op per record):
`mlip.model @sym {...} {...}` holds `mlip.tensor`s, and either `mlip.layer`s (each with
`mlip.buffer`s and per-tile `mlip.block`s) before `mlip-dma-schedule`, or `mlip.stream`s
(one per section, tile and queue) after it. `program_to_op` / `op_to_program` convert both
ways; `program_to_op(op_to_program(m))` prints the same as `m`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    SymbolNameConstraint,
    f64,
    i64,
)
from xdsl.ir import Attribute, Dialect, Region
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator
from xdsl.utils.exceptions import VerifyException

from mrvl.mlip_plan import (
    DTYPE_BY_NAME,
    DTYPE_NAMES,
    Block,
    DramTensor,
    Insn,
    LayerPlan,
    OcmBuffer,
    Program,
    Ref,
)
from mrvl import mlip_isa as isa
from mrvl.mlip_isa import Act, EltFunc, Flag, Opcode, PoolFunc, Queue, Section

FLAG_NAMES = {
    "pop_prev": Flag.POP_PREV, "pop_next": Flag.POP_NEXT, "push_prev": Flag.PUSH_PREV,
    "push_next": Flag.PUSH_NEXT, "scale_flag": Flag.SCALE, "count_pad": Flag.COUNT_PAD,
}
ACT_NAMES = {a.name.lower(): a for a in Act}
QUEUE_NAMES = {"dma_in": Queue.DMA_IN, "compute": Queue.COMPUTE, "dma_out": Queue.DMA_OUT}
SECTION_NAMES = {"init": Section.INIT, "main": Section.MAIN, "finish": Section.FINISH}
HEADER_INT = ("in_zp", "out_zp", "layer")
HEADER_FLOAT = ("scale", "alpha", "beta")


def _func_names(opcode: Opcode) -> dict[str, int]:
    if opcode == Opcode.POOL:
        return {f.name.lower(): f for f in PoolFunc}
    if opcode == Opcode.ELTWISE:
        return {f.name.lower(): f for f in EltFunc}
    return {}


def _fmt_value(value) -> str:
    if isinstance(value, Ref):
        if value.space == "ocm":
            return f"@{value.name}[{value.slot}, {value.offset}]"
        return f"@{value.name}[{value.offset}]"
    if isinstance(value, float):
        return repr(float(value))
    return str(int(value))


def insn_text(insn: Insn, mnemonic_prefix: str = "mlip.") -> str:
    """One assembly line for an instruction."""
    parts = []
    for name in isa.OPCODE_FIELDS[Opcode(insn.opcode)]:
        if name in insn.fields:
            parts.append(f"{name} = {_fmt_value(insn.fields[name])}")
    funcs = _func_names(Opcode(insn.opcode))
    if funcs:
        parts.append(f"func = {[k for k, v in funcs.items() if v == insn.func][0]}")
    if insn.act:
        parts.append(f"act = {Act(insn.act).name.lower()}")
    parts.append(f"src = {DTYPE_NAMES[isa.DType(insn.src_dtype)]}")
    parts.append(f"dst = {DTYPE_NAMES[isa.DType(insn.dst_dtype)]}")
    for name in ("in_zp", "out_zp"):
        if getattr(insn, name):
            parts.append(f"{name} = {getattr(insn, name)}")
    defaults = {"scale": 1.0, "alpha": 0.0, "beta": 0.0}
    for name, default in defaults.items():
        if float(getattr(insn, name)) != default:
            parts.append(f"{name} = {float(getattr(insn, name))!r}")
    if insn.layer != isa.LAYER_NONE:
        parts.append(f"layer = {insn.layer}")
    if insn.opcode == Opcode.NOP:
        parts.append(f"queue = {Queue(insn.queue).name.lower()}")
    for name, bit in FLAG_NAMES.items():
        if insn.flags & bit:
            parts.append(name)
    mnemonic = INSN_OPS[Opcode(insn.opcode)].name.split(".", 1)[1]
    return f"{mnemonic_prefix}{mnemonic} " + ", ".join(parts)


def _parse_value(parser: Parser):
    sym = parser.parse_optional_symbol_name()
    if sym is not None:
        parser.parse_punctuation("[")
        first = parser.parse_integer()
        if parser.parse_optional_punctuation(",") is not None:
            offset = parser.parse_integer()
            parser.parse_punctuation("]")
            return Ref("ocm", sym.data, first, offset)
        parser.parse_punctuation("]")
        return Ref("dram", sym.data, 0, first)
    number = parser.parse_optional_number()
    if number is not None:
        return number
    return parser.parse_identifier(" (an operand value)")


class InstructionOp(IRDLOperation):
    """Base of the instruction ops: the instruction lives in the `insn` property set
    (`fields`, a dictionary); the op prints and parses as one assembly line."""

    insn_fields = prop_def(Attribute, prop_name="fields")

    def __init__(self, insn: Insn):
        super().__init__(properties={"fields": _insn_to_attr(insn)})

    @classmethod
    def opcode(cls) -> Opcode:
        return OPCODE_OF_OP[cls.name]

    def to_insn(self) -> Insn:
        return _attr_to_insn(self.opcode(), self.properties["fields"])

    def print(self, printer: Printer) -> None:
        if _fields_problem(self.opcode(), self.properties["fields"]) is not None:
            # Malformed (generic-form input that failed verification): show it as it is.
            printer.print_string(" ")
            printer.print_op_with_default_format(self)
            return
        text = insn_text(self.to_insn(), "")
        printer.print_string(" " + text.split(" ", 1)[1])

    @classmethod
    def parse(cls, parser: Parser):
        opcode = cls.opcode()
        insn = Insn(opcode)
        names = isa.OPCODE_FIELDS[opcode]
        funcs = _func_names(opcode)
        while True:
            key = parser.parse_identifier(" (an operand name or flag)")
            if key in FLAG_NAMES:
                insn.flags |= int(FLAG_NAMES[key])
            else:
                parser.parse_punctuation("=")
                value = _parse_value(parser)
                _set_parsed(parser, insn, opcode, names, funcs, key, value)
            if parser.parse_optional_punctuation(",") is None:
                break
        return cls(insn)

    def verify_(self) -> None:
        problem = _fields_problem(self.opcode(), self.properties["fields"])
        if problem is not None:
            raise VerifyException(problem)
        insn = self.to_insn()
        names = isa.OPCODE_FIELDS[self.opcode()]
        for key in insn.fields:
            if key not in names:
                raise VerifyException(f"expected a field of {self.name}, got '{key}'")
        queue = isa.OPCODE_QUEUE[self.opcode()]
        if queue is not None and insn.queue != queue:
            raise VerifyException(f"expected queue {queue.name}, got {Queue(insn.queue).name}")


def _set_parsed(parser, insn: Insn, opcode, names, funcs, key: str, value) -> None:
    if key in ("src", "dst"):
        if value not in DTYPE_BY_NAME:
            parser.raise_error(f"expected a dtype name, got '{value}'")
        setattr(insn, f"{key}_dtype", DTYPE_BY_NAME[value])
    elif key == "act":
        if value not in ACT_NAMES:
            parser.raise_error(f"expected an activation name, got '{value}'")
        insn.act = ACT_NAMES[value]
    elif key == "func":
        if value not in funcs:
            parser.raise_error(f"expected one of {list(funcs)}, got '{value}'")
        insn.func = funcs[value]
    elif key == "queue":
        if value not in QUEUE_NAMES:
            parser.raise_error(f"expected a queue name, got '{value}'")
        insn.queue = QUEUE_NAMES[value]
    elif key in HEADER_INT:
        if not isinstance(value, int):
            parser.raise_error(f"expected an integer for '{key}', got '{value}'")
        setattr(insn, key, int(value))
    elif key in HEADER_FLOAT:
        if not isinstance(value, int | float):
            parser.raise_error(f"expected a number for '{key}', got '{value}'")
        setattr(insn, key, float(value))
    elif key in names:
        if isinstance(value, str):
            parser.raise_error(f"expected a number or @ref for '{key}', got '{value}'")
        insn.fields[key] = float(value) if isa.field_type(key) == "f" else value
    else:
        parser.raise_error(f"'{key}' is not an operand of {opcode.name}")


def _insn_to_attr(insn: Insn) -> Attribute:
    """The property holding an instruction: a dictionary attribute (refs as strings)."""
    from xdsl.dialects.builtin import DictionaryAttr

    data: dict[str, Attribute] = {}
    for key, value in insn.fields.items():
        if isinstance(value, Ref):
            data[key] = StringAttr(_fmt_value(value))
        elif isinstance(value, float):
            data[key] = FloatAttr(value, f64)
        else:
            data[key] = IntegerAttr(int(value), i64)
    data["#header"] = DenseArrayBase.from_list(i64, [
        insn.func, insn.act, insn.src_dtype, insn.dst_dtype, insn.in_zp, insn.out_zp,
        insn.flags, insn.layer, int(insn.queue),  # type: ignore[arg-type]
    ])
    data["#fparams"] = ArrayAttr([FloatAttr(float(v), f64)
                                  for v in (insn.scale, insn.alpha, insn.beta)])
    return DictionaryAttr(data)


_REF_RE = re.compile(r"^@[^\[\]]+\[-?[0-9]+(, -?[0-9]+)?\]$")
_HEADER_ENUMS = ((1, "act", Act), (2, "src dtype", isa.DType), (3, "dst dtype", isa.DType),
                 (8, "queue", Queue))
"""(index in `#header`, what, enum) of the header entries that must be enum values."""


def _fields_problem(opcode: Opcode, attr: Attribute) -> str | None:
    """Why a `fields` property (from generic-form IR) cannot be an instruction, or None."""
    from xdsl.dialects.builtin import DictionaryAttr

    if not isinstance(attr, DictionaryAttr):
        return f"expected a dictionary of instruction fields, got {attr}"
    data = attr.data
    header = data.get("#header")
    if not isinstance(header, DenseArrayBase) or len(header.get_values()) != 9:
        return "expected '#header' = array<i64: ...> of 9 values"
    fparams = data.get("#fparams")
    if not (isinstance(fparams, ArrayAttr) and len(fparams.data) == 3
            and all(isinstance(a, FloatAttr) for a in fparams.data)):
        return "expected '#fparams' = [scale, alpha, beta] of 3 floats"
    values = [int(v) for v in header.get_values()]
    for index, what, enum in _HEADER_ENUMS:
        if values[index] not in set(enum):
            return f"expected a valid {what}, got {values[index]}"
    funcs = _func_names(opcode)
    if funcs and values[0] not in funcs.values():
        return f"expected func in {list(funcs)}, got {values[0]}"
    for key, value in data.items():
        if key.startswith("#"):
            continue
        if isinstance(value, StringAttr) and _REF_RE.match(value.data) is None:
            return f"expected field '{key}' to be a number or an @ref, got \"{value.data}\""
        if not isinstance(value, StringAttr | FloatAttr | IntegerAttr):
            return f"expected field '{key}' to be a number or an @ref, got {value}"
    return None


def _ref_from_text(text: str) -> Ref:
    name, rest = text[1:].split("[", 1)
    parts = [int(p) for p in rest.rstrip("]").split(",")]
    if len(parts) == 2:
        return Ref("ocm", name, parts[0], parts[1])
    return Ref("dram", name, 0, parts[0])


def _attr_to_insn(opcode: Opcode, attr) -> Insn:
    data = attr.data
    header = [int(v) for v in data["#header"].get_values()]
    fparams = [a.value.data for a in data["#fparams"].data]
    fields: dict = {}
    for key, value in data.items():
        if key.startswith("#"):
            continue
        if isinstance(value, StringAttr):
            fields[key] = _ref_from_text(value.data)
        elif isinstance(value, FloatAttr):
            fields[key] = value.value.data
        else:
            fields[key] = value.value.data
    return Insn(opcode, fields, func=header[0], act=header[1], src_dtype=header[2],
                dst_dtype=header[3], in_zp=header[4], out_zp=header[5], flags=header[6],
                layer=header[7], queue=Queue(header[8]), scale=fparams[0], alpha=fparams[1],
                beta=fparams[2])


OPCODE_OF_OP: dict[str, Opcode] = {}


def _insn_op(mnemonic: str, opcode: Opcode, doc: str) -> type[InstructionOp]:
    cls = type(
        f"{mnemonic.title().replace('_', '')}Op",
        (InstructionOp,),
        {"__doc__": doc, "name": f"mlip.{mnemonic}", "__module__": __name__},
    )
    OPCODE_OF_OP[f"mlip.{mnemonic}"] = opcode
    return irdl_op_definition(cls)


NopOp = _insn_op("nop", Opcode.NOP, "NOP: does nothing but its tokens (any queue).")
DmaLoadOp = _insn_op("dma_load", Opcode.DMA_LOAD,
                     "DMA_LOAD: DRAM -> OCM box copy with conversion and zero padding.")
DmaStoreOp = _insn_op("dma_store", Opcode.DMA_STORE, "DMA_STORE: OCM -> DRAM box copy.")
ConvOp = _insn_op("conv", Opcode.CONV, "CONV: NHWC x OHWI convolution on the matrix engine.")
GemmOp = _insn_op("gemm", Opcode.GEMM, "GEMM: out = act(in @ W^T + bias).")
PoolOp = _insn_op("pool", Opcode.POOL, "POOL: max or average pooling (vector engine).")
EltwiseOp = _insn_op("eltwise", Opcode.ELTWISE, "ELTWISE: add/sub/mul/max/min of two blocks.")
ActOp = _insn_op("act", Opcode.ACT, "ACT: activation of a block.")
ConvertOp = _insn_op("convert", Opcode.CONVERT, "CONVERT: dtype conversion of a block.")
CopyOp = _insn_op("copy", Opcode.COPY, "COPY: bit copy of a block.")
BarrierOp = _insn_op("barrier", Opcode.BARRIER, "BARRIER: all tiles meet (compute queue).")

INSN_OPS: dict[Opcode, type[InstructionOp]] = {
    Opcode.NOP: NopOp, Opcode.DMA_LOAD: DmaLoadOp, Opcode.DMA_STORE: DmaStoreOp,
    Opcode.CONV: ConvOp, Opcode.GEMM: GemmOp, Opcode.POOL: PoolOp, Opcode.ELTWISE: EltwiseOp,
    Opcode.ACT: ActOp, Opcode.CONVERT: ConvertOp, Opcode.COPY: CopyOp,
    Opcode.BARRIER: BarrierOp,
}


# ---- containers ---------------------------------------------------------------------------
DRAM_REGIONS = ("input", "output", "weights", "scratch")
_HEX_RE = re.compile(r"^0x([0-9a-fA-F]{2})*$")


def _body() -> Region:
    from xdsl.ir import Block as IRBlock

    return Region(IRBlock())


@irdl_op_definition
class TensorOp(IRDLOperation):
    """A DRAM tensor of the model: `region` input / output / weights / scratch.

    ```mlir
    mlip.tensor @x {dtype = "f16", region = "input", shape = array<i64: 1, 4, 4, 2>}
    ```
    """

    name = "mlip.tensor"
    sym_name = prop_def(SymbolNameConstraint())
    region = prop_def(StringAttr)
    shape = prop_def(DenseArrayBase)
    dtype = prop_def(StringAttr)
    scale = opt_prop_def(FloatAttr)
    zero_point = opt_prop_def(IntegerAttr)
    layout = opt_prop_def(IntegerAttr)
    live = opt_prop_def(DenseArrayBase)
    alias_of = opt_prop_def(StringAttr)
    data = opt_prop_def(StringAttr)
    offset = opt_prop_def(IntegerAttr)
    assembly_format = "$sym_name attr-dict"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        if self.dtype.data not in DTYPE_BY_NAME:
            raise VerifyException(
                f"expected dtype in {list(DTYPE_BY_NAME)}, got \"{self.dtype.data}\"")
        if self.region.data not in DRAM_REGIONS:
            raise VerifyException(
                f"expected region in {list(DRAM_REGIONS)}, got \"{self.region.data}\"")
        if any(d < 1 for d in _vals(self.shape)):
            raise VerifyException(f"expected positive sizes, got shape {_vals(self.shape)}")
        if self.live is not None and len(_vals(self.live)) != 2:
            raise VerifyException(f"expected live = [first, last], got {_vals(self.live)}")
        if self.data is not None and _HEX_RE.match(self.data.data) is None:
            raise VerifyException("expected data = \"0x<hex bytes>\"")


@irdl_op_definition
class BufferOp(IRDLOperation):
    """An OCM buffer of a layer: `slots` x `size` bytes, `kind` weights or scratch;
    `addrs` once allocated."""

    name = "mlip.buffer"
    sym_name = prop_def(SymbolNameConstraint())
    size = prop_def(IntegerAttr)
    slots = prop_def(IntegerAttr)
    kind = prop_def(StringAttr)
    addrs = opt_prop_def(DenseArrayBase)
    assembly_format = "$sym_name attr-dict"
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class BlockOp(IRDLOperation):
    """One tile's unit of work: loads, computes, stores (in that order inside)."""

    name = "mlip.block"
    tile = prop_def(IntegerAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class LayerOp(IRDLOperation):
    """A lowered mrvl layer: its OCM buffers and its blocks."""

    name = "mlip.layer"
    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(StringAttr)
    index = prop_def(IntegerAttr)
    macs = prop_def(IntegerAttr)
    split = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "$sym_name attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class StreamOp(IRDLOperation):
    """The instruction stream of one (section, tile, queue)."""

    name = "mlip.stream"
    section = prop_def(StringAttr)
    tile = prop_def(IntegerAttr)
    queue = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class ModelOp(IRDLOperation):
    """A compiled sub-graph (one model binary)."""

    name = "mlip.model"
    sym_name = prop_def(SymbolNameConstraint())
    num_tiles = prop_def(IntegerAttr)
    ocm_size = prop_def(IntegerAttr)
    page_size = prop_def(IntegerAttr)
    quantize = prop_def(StringAttr)
    inputs = prop_def(ArrayAttr)
    outputs = prop_def(ArrayAttr)
    ocm_end = opt_prop_def(IntegerAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "$sym_name attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)


def _int(v: int) -> IntegerAttr:
    return IntegerAttr(int(v), i64)


def _ints(values) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def _vals(attr) -> list[int]:
    return [int(v) for v in attr.get_values()]


def _layer_op(layer: LayerPlan, body: Region) -> LayerOp:
    """The `mlip.layer` record of a layer (its buffers and blocks in `body`)."""
    return LayerOp.create(
        properties={"sym_name": StringAttr(layer.name), "kind": StringAttr(layer.kind),
                    "index": _int(layer.index), "macs": _int(layer.macs),
                    "split": StringAttr(layer.split)},
        regions=[body])


def program_to_op(prog: Program) -> ModelOp:
    """The `mlip.model` op of a program."""
    body = _body()
    block = body.block
    for t in prog.tensors.values():
        props: dict[str, Attribute] = {
            "sym_name": StringAttr(t.name), "region": StringAttr(t.region),
            "shape": _ints(t.shape), "dtype": StringAttr(DTYPE_NAMES[isa.DType(t.dtype)]),
        }
        if t.scale != 1.0:
            props["scale"] = FloatAttr(t.scale, f64)
        if t.zp:
            props["zero_point"] = _int(t.zp)
        if t.layout:
            props["layout"] = _int(t.layout)
        if t.first >= 0 or t.last >= 0:
            props["live"] = _ints([t.first, t.last])
        if t.alias_of is not None:
            props["alias_of"] = StringAttr(t.alias_of)
        if t.data is not None:
            props["data"] = StringAttr("0x" + t.data.hex())
        if t.offset is not None:
            props["offset"] = _int(t.offset)
        block.add_op(TensorOp.create(properties=props))
    if prog.streams is None:
        for layer in prog.layers:
            lbody = _body()
            for buf in layer.buffers.values():
                props = {"sym_name": StringAttr(buf.name), "size": _int(buf.size),
                         "slots": _int(buf.slots), "kind": StringAttr(buf.kind)}
                if buf.addrs:
                    props["addrs"] = _ints(buf.addrs)
                lbody.block.add_op(BufferOp.create(properties=props))
            for blk in layer.blocks:
                bbody = _body()
                for insn in (*blk.loads, *blk.computes, *blk.stores):
                    bbody.block.add_op(INSN_OPS[Opcode(insn.opcode)](insn))
                lbody.block.add_op(BlockOp.create(properties={"tile": _int(blk.tile)},
                                                  regions=[bbody]))
            block.add_op(_layer_op(layer, lbody))
    else:
        for layer in prog.layers:
            block.add_op(_layer_op(layer, _body()))
        for (section, tile, queue), insns in sorted(prog.streams.items()):
            sbody = _body()
            for insn in insns:
                sbody.block.add_op(INSN_OPS[Opcode(insn.opcode)](insn))
            block.add_op(StreamOp.create(
                properties={"section": StringAttr(Section(section).name.lower()),
                            "tile": _int(tile), "queue": StringAttr(Queue(queue).name.lower())},
                regions=[sbody]))
    props = {
        "sym_name": StringAttr(prog.name), "num_tiles": _int(prog.num_tiles),
        "ocm_size": _int(prog.ocm_size), "page_size": _int(prog.page_size),
        "quantize": StringAttr(prog.quantize),
        "inputs": ArrayAttr([StringAttr(n) for n in prog.inputs]),
        "outputs": ArrayAttr([StringAttr(n) for n in prog.outputs]),
    }
    if prog.ocm_end is not None:
        props["ocm_end"] = _int(prog.ocm_end)
    return ModelOp.create(properties=props, regions=[body])


def op_to_program(model: ModelOp) -> Program:
    """The program an `mlip.model` op describes."""
    prog = Program(
        model.sym_name.data, num_tiles=model.num_tiles.value.data,
        ocm_size=model.ocm_size.value.data, page_size=model.page_size.value.data,
        quantize=model.quantize.data,
        inputs=[a.data for a in model.inputs.data],  # type: ignore[union-attr]
        outputs=[a.data for a in model.outputs.data],  # type: ignore[union-attr]
        ocm_end=None if model.ocm_end is None else model.ocm_end.value.data,
    )
    streams: dict = {}
    for op in model.body.block.ops:
        if isinstance(op, TensorOp):
            live = _vals(op.live) if op.live is not None else [-1, -1]
            data = None
            if op.data is not None:
                data = bytes.fromhex(op.data.data[2:])
            prog.add_tensor(DramTensor(
                op.sym_name.data, tuple(_vals(op.shape)), DTYPE_BY_NAME[op.dtype.data],
                op.region.data, data=data,
                offset=None if op.offset is None else op.offset.value.data,
                layout=0 if op.layout is None else op.layout.value.data,
                scale=1.0 if op.scale is None else op.scale.value.data,
                zp=0 if op.zero_point is None else op.zero_point.value.data,
                first=live[0], last=live[1],
                alias_of=None if op.alias_of is None else op.alias_of.data))
        elif isinstance(op, LayerOp):
            layer = LayerPlan(op.sym_name.data, op.kind.data, op.index.value.data,
                              macs=op.macs.value.data, split=op.split.data)
            for inner in op.body.block.ops:
                if isinstance(inner, BufferOp):
                    layer.buffers[inner.sym_name.data] = OcmBuffer(
                        inner.sym_name.data, inner.size.value.data, inner.slots.value.data,
                        inner.kind.data, _vals(inner.addrs) if inner.addrs is not None else [])
                elif isinstance(inner, BlockOp):
                    blk = Block(inner.tile.value.data)
                    for insn_op in inner.body.block.ops:
                        assert isinstance(insn_op, InstructionOp)
                        insn = insn_op.to_insn()
                        target = {Queue.DMA_IN: blk.loads, Queue.COMPUTE: blk.computes,
                                  Queue.DMA_OUT: blk.stores}[Queue(insn.queue)]
                        target.append(insn)
                    layer.blocks.append(blk)
            prog.layers.append(layer)
        elif isinstance(op, StreamOp):
            key = (int(SECTION_NAMES[op.section.data]), op.tile.value.data,
                   int(QUEUE_NAMES[op.queue.data]))
            streams[key] = [i.to_insn() for i in op.body.block.ops
                            if isinstance(i, InstructionOp)]
    if streams:
        prog.streams = streams
    return prog


def map_models(module: ModuleOp, transform: Callable[[Program], None]) -> None:
    """Apply `transform` to the program of every `mlip.model` in `module`, in place."""
    for op in list(module.ops):
        if not isinstance(op, ModelOp):
            continue
        prog = op_to_program(op)
        transform(prog)
        new = program_to_op(prog)
        module.body.block.insert_op_before(new, op)
        module.body.block.erase_op(op)


def program_asm(prog: Program) -> str:
    """Assembly listing of a scheduled program: one line per instruction, per stream."""
    lines = [f"; model {prog.name}: {prog.num_tiles} tile(s), OCM [0, {prog.ocm_end}), "
             f"{prog.quantize}"]
    for layer in prog.layers:
        lines.append(f"; layer {layer.index} {layer.name} {layer.kind} macs={layer.macs}")
    for (section, tile, queue), insns in sorted((prog.streams or {}).items()):
        if not insns:
            continue
        lines.append(f"{Section(section).name.lower()}.tile{tile}.{Queue(queue).name.lower()}:")
        for insn in insns:
            lines.append("  " + insn_text(insn, ""))
    return "\n".join(lines) + "\n"


Mlip = Dialect(
    "mlip",
    [*INSN_OPS.values(), TensorOp, BufferOp, BlockOp, LayerOp, StreamOp, ModelOp],
    [],
)
