"""The `mlip` dialect: the accelerator's ISA (docs/isa.md), one op per instruction.

Like xDSL's riscv dialect, an instruction op has typed operands and prints itself as one
assembly line: the mnemonic, then `name = value` operands separated by commas, then the set
flags. Two SSA types make the data flow visible:

- `!mlip.buffer`, the result of an `mlip.buffer` op (an OCM buffer of a layer: `size`
  bytes x `slots`, `kind` weights or scratch, `addrs` per slot once `mlip-ocm-alloc` placed
  it). An instruction's OCM address is a buffer operand plus a slot and a byte offset
  (properties `<x>_slot`, `<x>_offset`), printed `in_addr = %in[slot, offset]`.
- `!mlip.token`, a dependency token between two neighbouring queues of one tile (docs/isa.md
  section 2). After `mlip-dma-schedule` an instruction that pushes a token has a
  `push_prev` / `push_next` result and the instruction that pops it takes it as its
  `pop_prev` / `pop_next` operand; emission turns the edges back into the flags.

A DRAM address names an `mlip.tensor` and a byte offset (`dram_addr = @x[64]`, properties
`dram` and `dram_offset`). The other fields are i64 / f64 properties named as in
docs/isa.md; a field left out takes the ISA default (0, or what `Instruction.make` sets).
Header: `func` (pool / eltwise), `act`, `src`, `dst` (dtype names), `in_zp`, `out_zp`,
`scale`, `alpha`, `beta`, `layer`, `tile`; flags `scale_flag`, `count_pad`.

```mlir
%2 = mlip.conv in_addr = %in[0, 0], ih = 4, ..., w_addr = %w[0, 0], ..., act = relu,
     src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %1, push_next
```

Containers: `mlip.model @sym {...} {...}` holds `mlip.tensor`s, each layer's
`mlip.buffer`s followed by its `mlip.layer` (layer table entry) and, before scheduling,
the layer's per-tile `mlip.block`s inside the `mlip.layer`. `mlip-dma-schedule` moves every
instruction into one `mlip.section` block (the `main` section), ordered topologically:
layer by layer, tile by tile, block by block, each op carrying its `tile` (its queue is its
opcode's, or `queue` for `mlip.nop`). One flat block (rather than one region per stream)
is what lets a token cross streams and layers under SSA dominance: a barrier's token is
popped by the next layer's first load, another stream. A stream is the section's ops of one
(tile, queue), in block order; the verifier checks that every channel's tokens are popped in
the order they are pushed (the hardware queues are FIFOs). The buffers sit in the model's
block (tagged with their `layer`) rather than inside their layer, so they dominate both the
blocks and the section: scheduling never moves them, and allocation works before or after it.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from dataclasses import asdict, replace
from typing import ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    Float64Type,
    FloatAttr,
    FlatSymbolRefAttrConstr,
    I64,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    UnitAttr,
    f64,
    i64,
)
from xdsl.ir import (
    Attribute,
    Data,
    Dialect,
    OpResult,
    ParametrizedAttribute,
    SSAValue,
    SSAValues,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    AttrSizedResultSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    opt_result_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator
from xdsl.utils.exceptions import VerifyException

from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE, Machine
from mrvl.mlip_isa import Act, EltFunc, Opcode, PoolFunc, Queue, Section

DTYPE_NAMES = {
    isa.DType.FP32: "f32", isa.DType.FP16: "f16", isa.DType.INT8: "i8",
    isa.DType.UINT8: "u8", isa.DType.INT16: "i16", isa.DType.UINT16: "u16",
    isa.DType.INT32: "i32", isa.DType.UINT32: "u32",
}
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
ACT_NAMES = {a.name.lower(): a for a in Act}
POOL_FUNCS = {f.name.lower(): f for f in PoolFunc}
ELT_FUNCS = {f.name.lower(): f for f in EltFunc}
QUEUE_NAMES = {"dma_in": Queue.DMA_IN, "compute": Queue.COMPUTE, "dma_out": Queue.DMA_OUT}
SECTION_NAMES = {"init": Section.INIT, "main": Section.MAIN, "finish": Section.FINISH}
BUFFER_KINDS = ("weights", "scratch", "resident")
DRAM_REGIONS = ("input", "output", "weights", "scratch")
OCM_ADDRESS_FIELDS = frozenset({"ocm_addr", "in_addr", "out_addr", "w_addr", "bias_addr",
                                "scale_addr", "a_addr", "b_addr", "src_addr", "dst_addr",
                                "gamma_addr", "beta_addr"})
"""ISA fields that address OCM: a buffer operand plus `<base>_slot` / `<base>_offset`."""
TOKEN_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")
UNIT_FLAGS = ("scale_flag", "count_pad")
HEADER_INT = ("in_zp", "out_zp", "layer", "tile")
HEADER_FLOAT = ("scale", "alpha", "beta")
HEADER_DEFAULTS = {"in_zp": 0, "out_zp": 0, "scale": 1.0, "alpha": 0.0, "beta": 0.0}


def base_of(field: str) -> str:
    """`in_addr` -> `in`: the prefix of an OCM address field's slot / offset properties."""
    return field[: -len("_addr")]


@functools.lru_cache(maxsize=65536)
def i64_attr(value: int) -> IntegerAttr:
    """A (cached, immutable) i64 IntegerAttr."""
    return IntegerAttr(value, i64)


@functools.lru_cache(maxsize=4096)
def f64_attr(value: float) -> FloatAttr:
    return FloatAttr(value, f64)


@functools.lru_cache(maxsize=256)
def str_attr(value: str) -> StringAttr:
    return StringAttr(value)


_SIZES: dict[int, tuple[DenseArrayBase, tuple[int, ...]]] = {}


@functools.lru_cache(maxsize=64)
def segments(*sizes: int) -> DenseArrayBase:
    """The (cached) segment-sizes property of an op with these segment sizes."""
    attr = DenseArrayBase.from_list(i32_type(), list(sizes))
    _SIZES[id(attr)] = (attr, tuple(sizes))
    return attr


def segment_sizes(attr: DenseArrayBase) -> tuple[int, ...]:
    """The values of a segment-sizes property (cached for the ones `segments` made)."""
    hit = _SIZES.get(id(attr))
    if hit is not None and hit[0] is attr:
        return hit[1]
    return tuple(int(v) for v in attr.get_values())


def i32_type():
    from xdsl.dialects.builtin import i32

    return i32


UNIT = UnitAttr()


# ---- types and attributes -----------------------------------------------------------------
@irdl_attr_definition
class BufferType(ParametrizedAttribute, TypeAttribute):
    """An OCM buffer (the result of `mlip.buffer`)."""

    name = "mlip.buffer"


@irdl_attr_definition
class TokenType(ParametrizedAttribute, TypeAttribute):
    """A dependency token pushed by one queue and popped by a neighbouring one."""

    name = "mlip.token"


BUFFER = BufferType()
TOKEN = TokenType()


@irdl_attr_definition
class BytesAttr(Data[bytes]):
    """Raw bytes (weights), printed as hex: `#mlip.bytes<"0x0102">`."""

    name = "mlip.bytes"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> bytes:
        with parser.in_angle_brackets():
            text = parser.parse_str_literal("hex bytes")
        if not text.startswith("0x"):
            parser.raise_error(f"expected \"0x<hex bytes>\", got \"{text[:16]}\"")
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            parser.raise_error(f"expected \"0x<hex bytes>\", got \"{text[:16]}\"")

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string(f'<"0x{self.data.hex()}">')


# ---- instructions -------------------------------------------------------------------------
def _u():
    """An unsigned / signed integer field (i64 property, optional: absent = ISA default)."""
    return opt_prop_def(IntegerAttr[I64])


def _f():
    return opt_prop_def(FloatAttr[Float64Type])


def _slot(base: str):
    return opt_prop_def(IntegerAttr[I64], prop_name=f"{base}_slot")


def _offset(base: str):
    return opt_prop_def(IntegerAttr[I64], prop_name=f"{base}_offset")


class InstructionOp(IRDLOperation):
    """Base of the instruction ops: header properties, token operands and results, and
    the one-line assembly syntax (module docstring)."""

    OPCODE: ClassVar[Opcode]

    pop_prev = opt_operand_def(TokenType)
    pop_next = opt_operand_def(TokenType)
    push_prev = opt_result_def(TokenType)
    push_next = opt_result_def(TokenType)

    src = prop_def(StringAttr)
    dst = prop_def(StringAttr)
    act = opt_prop_def(StringAttr)
    in_zp = _u()
    out_zp = _u()
    scale = _f()
    alpha = _f()
    beta = _f()
    layer = _u()
    tile = _u()
    scale_flag = opt_prop_def(UnitAttr)

    irdl_options = (AttrSizedOperandSegments(as_property=True),
                    AttrSizedResultSegments(as_property=True))

    # -- layout of the operands (computed once per class) --
    @classmethod
    @functools.cache
    def operand_layout(cls) -> tuple[str, ...]:
        """Operand names (token operands and OCM address fields) in segment order."""
        return tuple(name for name, _ in cls.get_irdl_definition().operands)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return isa.OPCODE_FIELDS[cls.OPCODE]

    @classmethod
    @functools.cache
    def field_plan(cls) -> tuple[tuple[str, str, str, str], ...]:
        """(field, kind "dram" / "ocm" / "value", slot property, offset property) per ISA
        field, in ISA order (for emission)."""
        plan = []
        for name in cls.fields():
            if name == "dram_addr":
                plan.append((name, "dram", "", ""))
            elif name in OCM_ADDRESS_FIELDS:
                base = base_of(name)
                plan.append((name, "ocm", f"{base}_slot", f"{base}_offset"))
            else:
                plan.append((name, "value", "", ""))
        return tuple(plan)

    @classmethod
    def build(cls, properties: dict[str, Attribute], ocm: dict[str, SSAValue],
              pop_prev: SSAValue | None = None, pop_next: SSAValue | None = None,
              push_prev: bool = False, push_next: bool = False) -> InstructionOp:
        """The op (fast path, no irdl init): `ocm` maps OCM address fields to buffers;
        `properties` is taken over (the caller passes a fresh dictionary)."""
        layout = cls.operand_layout()
        operands: list[SSAValue] = []
        sizes = []
        for name in layout:
            value = pop_prev if name == "pop_prev" else pop_next if name == "pop_next" \
                else ocm.get(name)
            if value is None:
                sizes.append(0)
            else:
                sizes.append(1)
                operands.append(value)
        props = properties
        props["operandSegmentSizes"] = segments(*sizes)
        props["resultSegmentSizes"] = segments(int(push_prev), int(push_next))
        return cls.create(operands=operands, properties=props,
                          result_types=[TOKEN] * (int(push_prev) + int(push_next)))

    def __post_init__(self) -> None:
        # No property of an instruction op has a default value to fill in, so skip the
        # generic IRDL step (it walks every property definition of every op created).
        pass

    def named_operands(self) -> dict[str, SSAValue]:
        """Operand name (token or OCM address field) -> value, for the present ones."""
        sizes = segment_sizes(self.properties["operandSegmentSizes"])  # type: ignore[arg-type]
        operands = self.operands
        out = {}
        index = 0
        for name, size in zip(self.operand_layout(), sizes, strict=True):
            if size:
                out[name] = operands[index]
                index += 1
        return out

    def ocm_operands(self) -> dict[str, SSAValue]:
        """OCM address field -> buffer operand."""
        found = self.named_operands()
        found.pop("pop_prev", None)
        found.pop("pop_next", None)
        return found

    def tokens(self) -> tuple[SSAValue | None, SSAValue | None, SSAValue | None,
                              SSAValue | None]:
        """(pop_prev, pop_next, push_prev, push_next): the token operands and results."""
        found = self.named_operands()
        push = segment_sizes(self.properties["resultSegmentSizes"])  # type: ignore[arg-type]
        results = self.results
        push_prev = results[0] if push[0] else None
        push_next = results[push[0]] if push[1] else None
        return found.get("pop_prev"), found.get("pop_next"), push_prev, push_next

    def queue(self) -> Queue:
        queue = isa.OPCODE_QUEUE[self.OPCODE]
        assert queue is not None
        return queue

    def set_tokens(self, tile: int, pop_prev: SSAValue | None, pop_next: SSAValue | None,
                   push_prev: bool, push_next: bool) -> None:
        """Rewrite this token-less op in place (as a register allocator rewrites its
        instructions): place it on `tile`, give it the popped tokens as operands and a
        token result per push."""
        if self.results:
            raise AssertionError(f"{self.name} already has token results")
        props = self.properties
        if pop_prev is not None or pop_next is not None:
            named = self.ocm_operands()
            named["pop_prev"] = pop_prev  # type: ignore[assignment]
            named["pop_next"] = pop_next  # type: ignore[assignment]
            operands = []
            sizes = []
            for name in self.operand_layout():
                value = named.get(name)
                sizes.append(0 if value is None else 1)
                if value is not None:
                    operands.append(value)
            self.operands = operands
            props["operandSegmentSizes"] = segments(*sizes)
        props["resultSegmentSizes"] = segments(int(push_prev), int(push_next))
        props["tile"] = i64_attr(tile)
        self.results = SSAValues(OpResult(TOKEN, self, index)
                                 for index in range(int(push_prev) + int(push_next)))

    # -- assembly --
    def print(self, printer: Printer) -> None:
        try:
            parts = self._assembly_parts(printer)
        except (KeyError, AttributeError, TypeError, ValueError):
            printer.print_string(" ")
            printer.print_op_with_default_format(self)
            return
        printer.print_string(" ")
        for k, part in enumerate(parts):
            if k:
                printer.print_string(", ")
            if callable(part):
                part()
            else:
                printer.print_string(part)

    def _assembly_parts(self, printer: Printer) -> list:
        props = self.properties
        parts: list = []
        ocm = self.ocm_operands()
        for name in self.fields():
            if name == "dram_addr":
                parts.append(f"dram_addr = @{props['dram'].root_reference.data}"  # type: ignore[union-attr]
                             f"[{_ival(props['dram_offset'])}]")
            elif name in OCM_ADDRESS_FIELDS:
                if name in ocm:
                    base = base_of(name)
                    slot = _ival(props.get(f"{base}_slot"))
                    offset = _ival(props.get(f"{base}_offset"))
                    parts.append(_ocm_printer(printer, name, ocm[name], slot, offset))
            elif name in props:
                parts.append(f"{name} = {_fmt(props[name])}")
        if "func" in props:
            parts.append(f"func = {props['func'].data}")  # type: ignore[union-attr]
        for name in ("act", "src", "dst"):
            if name in props:
                parts.append(f"{name} = {props[name].data}")  # type: ignore[union-attr]
        for name in ("in_zp", "out_zp", "scale", "alpha", "beta", "layer", "tile"):
            if name in props:
                parts.append(f"{name} = {_fmt(props[name])}")
        if "queue" in props:
            parts.append(f"queue = {props['queue'].data}")  # type: ignore[union-attr]
        tokens = dict(zip(TOKEN_NAMES, self.tokens(), strict=True))
        for name in ("pop_prev", "pop_next"):
            if tokens[name] is not None:
                parts.append(_token_printer(printer, name, tokens[name]))
        for name in UNIT_FLAGS:
            if name in props:
                parts.append(name)
        for name in ("push_prev", "push_next"):
            if tokens[name] is not None:
                parts.append(name)
        return parts

    @classmethod
    def parse(cls, parser: Parser) -> InstructionOp:
        props: dict[str, Attribute] = {}
        ocm: dict[str, SSAValue] = {}
        tokens: dict[str, SSAValue] = {}
        pushes = {"push_prev": False, "push_next": False}
        fields = set(cls.fields())
        defs = cls.get_irdl_definition().properties
        while True:
            key = parser.parse_identifier(" (an operand name or flag)")
            if key in pushes:
                pushes[key] = True
            elif key in UNIT_FLAGS:
                if key not in defs:
                    parser.raise_error(f"'{key}' is not a flag of {cls.name}")
                props[key] = UNIT
            else:
                parser.parse_punctuation("=")
                _parse_item(parser, cls, key, fields, defs, props, ocm, tokens)
            if parser.parse_optional_punctuation(",") is None:
                break
        return cls.build(props, ocm, tokens.get("pop_prev"), tokens.get("pop_next"),
                         pushes["push_prev"], pushes["push_next"])

    # -- verification --
    def verify_(self) -> None:
        props = self.properties
        for name in ("src", "dst"):
            _check_enum(name, props[name], DTYPE_BY_NAME)
        if "act" in props:
            _check_enum("act", props["act"], ACT_NAMES)
        ocm = self.ocm_operands()
        for name in self.fields():
            if name == "dram_addr":
                for key in ("dram", "dram_offset"):
                    if key not in props:
                        raise VerifyException(f"expected property '{key}' (dram_addr), got none")
            elif name in OCM_ADDRESS_FIELDS:
                base = base_of(name)
                if name in ocm:
                    slot = _ival(props.get(f"{base}_slot"))
                    offset = _ival(props.get(f"{base}_offset"))
                    if slot < 0 or offset < 0:
                        raise VerifyException(
                            f"expected {name} slot and offset >= 0, got [{slot}, {offset}]")
                elif f"{base}_slot" in props or f"{base}_offset" in props:
                    raise VerifyException(f"expected a buffer operand for {name}, got none")
            elif name in props:
                value = props[name]
                if isa.field_type(name) == "f":
                    continue
                lo, hi = (-(1 << 31), (1 << 31) - 1) if isa.field_type(name) == "i" \
                    else (0, (1 << 32) - 1)
                if not lo <= _ival(value) <= hi:
                    raise VerifyException(f"expected {name} in [{lo}, {hi}], got {_ival(value)}")
        queue = self.queue()
        pop_prev, pop_next, push_prev, push_next = self.tokens()
        if queue == Queue.DMA_IN and (pop_prev is not None or push_prev is not None):
            raise VerifyException(
                "expected no pop_prev / push_prev on the dma_in queue (it has no previous "
                "queue), got one")
        if queue == Queue.DMA_OUT and (pop_next is not None or push_next is not None):
            raise VerifyException(
                "expected no pop_next / push_next on the dma_out queue (it has no next "
                "queue), got one")


def _ival(attr) -> int:
    return 0 if attr is None else attr.value.data


def _fmt(attr) -> str:
    if isinstance(attr, FloatAttr):
        return repr(float(attr.value.data))
    return str(attr.value.data)


def _ocm_printer(printer: Printer, name: str, value: SSAValue, slot: int, offset: int):
    def show():
        printer.print_string(f"{name} = ")
        printer.print_operand(value)
        printer.print_string(f"[{slot}, {offset}]")
    return show


def _token_printer(printer: Printer, name: str, value: SSAValue):
    def show():
        printer.print_string(f"{name} = ")
        printer.print_operand(value)
    return show


def _check_enum(name: str, attr: Attribute, names) -> None:
    if not isinstance(attr, StringAttr) or attr.data not in names:
        shown = attr.data if isinstance(attr, StringAttr) else attr
        raise VerifyException(f"expected {name} in {list(names)}, got {shown}")


def _parse_item(parser: Parser, cls, key: str, fields: set[str], defs, props, ocm,
                tokens) -> None:
    """Parse the value of `key = value` into props / ocm / tokens."""
    if key in ("pop_prev", "pop_next"):
        tokens[key] = parser.parse_operand(TOKEN)
    elif key == "dram_addr" and key in fields:
        sym = parser.parse_optional_symbol_name()
        if sym is None:
            parser.raise_error("expected @tensor[offset] for dram_addr")
        parser.parse_punctuation("[")
        props["dram_offset"] = i64_attr(parser.parse_integer())
        parser.parse_punctuation("]")
        props["dram"] = SymbolRefAttr(sym.data)
    elif key in OCM_ADDRESS_FIELDS and key in fields:
        ocm[key] = parser.parse_operand(BUFFER)
        parser.parse_punctuation("[")
        slot = parser.parse_integer()
        parser.parse_punctuation(",")
        offset = parser.parse_integer()
        parser.parse_punctuation("]")
        props[f"{base_of(key)}_slot"] = i64_attr(slot)
        props[f"{base_of(key)}_offset"] = i64_attr(offset)
    elif key in ("src", "dst", "act", "func", "queue"):
        word = parser.parse_identifier(f" (the {key} name)")
        if key not in defs:
            parser.raise_error(f"'{key}' is not an operand of {cls.name}")
        choices = {"src": DTYPE_BY_NAME, "dst": DTYPE_BY_NAME, "act": ACT_NAMES,
                   "queue": QUEUE_NAMES,
                   "func": POOL_FUNCS if cls.OPCODE == Opcode.POOL else ELT_FUNCS}[key]
        if word not in choices:
            parser.raise_error(f"expected {key} in {list(choices)}, got '{word}'")
        props[key] = str_attr(word)
    elif key in fields or key in HEADER_INT or key in HEADER_FLOAT:
        number = parser.parse_optional_number()
        if number is None:
            parser.raise_error(f"expected a number for '{key}'")
        if key in HEADER_FLOAT or isa.field_type(key) == "f":
            props[key] = f64_attr(float(number))
        else:
            if not isinstance(number, int):
                parser.raise_error(f"expected an integer for '{key}', got {number}")
            props[key] = i64_attr(number)
    else:
        parser.raise_error(f"'{key}' is not an operand of {cls.name}")


@irdl_op_definition
class NopOp(InstructionOp):
    """NOP: does nothing but its tokens; `queue` says which queue runs it."""

    name = "mlip.nop"
    OPCODE: ClassVar[Opcode] = Opcode.NOP
    queue_name = prop_def(StringAttr, prop_name="queue")

    def queue(self) -> Queue:
        return QUEUE_NAMES[self.queue_name.data]

    def verify_(self) -> None:
        _check_enum("queue", self.queue_name, QUEUE_NAMES)
        super().verify_()


class DmaOp(InstructionOp):
    """Fields shared by DMA_LOAD and DMA_STORE (docs/isa.md)."""

    dram = prop_def(FlatSymbolRefAttrConstr)
    dram_offset = prop_def(IntegerAttr[I64])
    ocm_addr = operand_def(BufferType)
    ocm_slot = _slot("ocm")
    ocm_offset = _offset("ocm")
    dim0 = _u()
    dim1 = _u()
    dim2 = _u()
    dim3 = _u()
    pad0 = _u()
    pad1 = _u()
    pad2 = _u()
    pad3 = _u()
    src_dim0 = _u()
    src_dim1 = _u()
    src_dim2 = _u()
    src_dim3 = _u()
    dram_stride0 = _u()
    dram_stride1 = _u()
    dram_stride2 = _u()
    dram_stride3 = _u()
    ocm_stride0 = _u()
    ocm_stride1 = _u()
    ocm_stride2 = _u()
    ocm_stride3 = _u()


@irdl_op_definition
class DmaLoadOp(DmaOp):
    """DMA_LOAD: DRAM -> OCM box copy with conversion and zero padding."""

    name = "mlip.dma_load"
    OPCODE: ClassVar[Opcode] = Opcode.DMA_LOAD


@irdl_op_definition
class DmaStoreOp(DmaOp):
    """DMA_STORE: OCM -> DRAM box copy with conversion."""

    name = "mlip.dma_store"
    OPCODE: ClassVar[Opcode] = Opcode.DMA_STORE


@irdl_op_definition
class ConvOp(InstructionOp):
    """CONV: NHWC x OHWI convolution on the matrix engine."""

    name = "mlip.conv"
    OPCODE: ClassVar[Opcode] = Opcode.CONV
    in_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    w_addr = operand_def(BufferType)
    bias_addr = opt_operand_def(BufferType)
    scale_addr = opt_operand_def(BufferType)
    in_slot = _slot("in")
    in_offset = _offset("in")
    out_slot = _slot("out")
    out_offset = _offset("out")
    w_slot = _slot("w")
    w_offset = _offset("w")
    bias_slot = _slot("bias")
    bias_offset = _offset("bias")
    scale_slot = _slot("scale")
    scale_offset = _offset("scale")
    ih = _u()
    iw = _u()
    ic = _u()
    in_pix_stride = _u()
    oh = _u()
    ow = _u()
    oc = _u()
    out_pix_stride = _u()
    kh = _u()
    kw = _u()
    sh = _u()
    sw = _u()
    pad_t = _u()
    pad_l = _u()
    dh = _u()
    dw = _u()
    groups = _u()


@irdl_op_definition
class GemmOp(InstructionOp):
    """GEMM: out = act(in @ W^T + bias)."""

    name = "mlip.gemm"
    OPCODE: ClassVar[Opcode] = Opcode.GEMM
    in_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    w_addr = operand_def(BufferType)
    bias_addr = opt_operand_def(BufferType)
    scale_addr = opt_operand_def(BufferType)
    in_slot = _slot("in")
    in_offset = _offset("in")
    out_slot = _slot("out")
    out_offset = _offset("out")
    w_slot = _slot("w")
    w_offset = _offset("w")
    bias_slot = _slot("bias")
    bias_offset = _offset("bias")
    scale_slot = _slot("scale")
    scale_offset = _offset("scale")
    m = _u()
    k = _u()
    in_row_stride = _u()
    n = _u()
    out_row_stride = _u()


@irdl_op_definition
class PoolOp(InstructionOp):
    """POOL: max or average pooling (vector engine)."""

    name = "mlip.pool"
    OPCODE: ClassVar[Opcode] = Opcode.POOL
    in_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    in_slot = _slot("in")
    in_offset = _offset("in")
    out_slot = _slot("out")
    out_offset = _offset("out")
    func = prop_def(StringAttr)
    count_pad = opt_prop_def(UnitAttr)
    ih = _u()
    iw = _u()
    c = _u()
    in_pix_stride = _u()
    oh = _u()
    ow = _u()
    out_pix_stride = _u()
    kh = _u()
    kw = _u()
    sh = _u()
    sw = _u()
    pad_t = _u()
    pad_l = _u()

    def verify_(self) -> None:
        _check_enum("func", self.func, POOL_FUNCS)
        super().verify_()


@irdl_op_definition
class EltwiseOp(InstructionOp):
    """ELTWISE: add / sub / mul / max / min of two blocks."""

    name = "mlip.eltwise"
    OPCODE: ClassVar[Opcode] = Opcode.ELTWISE
    a_addr = operand_def(BufferType)
    b_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    a_slot = _slot("a")
    a_offset = _offset("a")
    b_slot = _slot("b")
    b_offset = _offset("b")
    out_slot = _slot("out")
    out_offset = _offset("out")
    func = prop_def(StringAttr)
    rows = _u()
    cols = _u()
    a_row_stride = _u()
    b_row_stride = _u()
    out_row_stride = _u()
    b_col_stride = _u()
    a_scale = _f()
    b_scale = _f()
    out_scale = _f()
    b_zp = _u()

    def verify_(self) -> None:
        _check_enum("func", self.func, ELT_FUNCS)
        super().verify_()


class VectorOp(InstructionOp):
    """Fields shared by ACT, CONVERT and COPY (docs/isa.md)."""

    in_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    in_slot = _slot("in")
    in_offset = _offset("in")
    out_slot = _slot("out")
    out_offset = _offset("out")
    rows = _u()
    cols = _u()
    in_row_stride = _u()
    out_row_stride = _u()
    out_scale = _f()


@irdl_op_definition
class ActOp(VectorOp):
    """ACT: activation of a block."""

    name = "mlip.act"
    OPCODE: ClassVar[Opcode] = Opcode.ACT


@irdl_op_definition
class ConvertOp(VectorOp):
    """CONVERT: dtype conversion of a block."""

    name = "mlip.convert"
    OPCODE: ClassVar[Opcode] = Opcode.CONVERT


@irdl_op_definition
class CopyOp(VectorOp):
    """COPY: bit copy of a block."""

    name = "mlip.copy"
    OPCODE: ClassVar[Opcode] = Opcode.COPY


@irdl_op_definition
class SoftmaxOp(VectorOp):
    """SOFTMAX: each row of a block normalised to exp(x - max) / sum (vector engine)."""

    name = "mlip.softmax"
    OPCODE: ClassVar[Opcode] = Opcode.SOFTMAX


@irdl_op_definition
class LayerNormOp(InstructionOp):
    """LAYERNORM: each row of a block normalised to zero mean and unit variance, then
    scaled by gamma and shifted by beta (fp32 arrays; epsilon in `alpha`)."""

    name = "mlip.layernorm"
    OPCODE: ClassVar[Opcode] = Opcode.LAYERNORM
    in_addr = operand_def(BufferType)
    out_addr = operand_def(BufferType)
    gamma_addr = operand_def(BufferType)
    beta_addr = operand_def(BufferType)
    in_slot = _slot("in")
    in_offset = _offset("in")
    out_slot = _slot("out")
    out_offset = _offset("out")
    gamma_slot = _slot("gamma")
    gamma_offset = _offset("gamma")
    beta_slot = _slot("beta")
    beta_offset = _offset("beta")
    rows = _u()
    cols = _u()
    in_row_stride = _u()
    out_row_stride = _u()


@irdl_op_definition
class BarrierOp(InstructionOp):
    """BARRIER: all tiles meet (compute queue)."""

    name = "mlip.barrier"
    OPCODE: ClassVar[Opcode] = Opcode.BARRIER
    barrier_id = opt_prop_def(IntegerAttr[I64], prop_name="id")


@irdl_op_definition
class TileCopyOp(InstructionOp):
    """TILE_COPY: 4-D box bit copy from the issuing tile's OCM to the OCM of every tile in
    `dst_tile_mask`, at the same `dst_addr` on each (DMA_OUT queue, docs/isa.md section 3).
    The destination buffer operand names the receiving tiles' buffer (every tile places its
    buffers at the same addresses)."""

    name = "mlip.tile_copy"
    OPCODE: ClassVar[Opcode] = Opcode.TILE_COPY
    src_addr = operand_def(BufferType)
    dst_addr = operand_def(BufferType)
    src_slot = _slot("src")
    src_offset = _offset("src")
    dst_slot = _slot("dst")
    dst_offset = _offset("dst")
    dst_tile_mask = _u()
    dim0 = _u()
    dim1 = _u()
    dim2 = _u()
    dim3 = _u()
    src_stride0 = _u()
    src_stride1 = _u()
    src_stride2 = _u()
    src_stride3 = _u()
    dst_stride0 = _u()
    dst_stride1 = _u()
    dst_stride2 = _u()
    dst_stride3 = _u()

    def verify_(self) -> None:
        props = self.properties
        if props["src"] != props["dst"]:
            raise VerifyException(
                f"expected src = dst (a bit copy), got {props['src'].data} and "  # type: ignore[union-attr]
                f"{props['dst'].data}")  # type: ignore[union-attr]
        for name in ("act", "scale_flag", "in_zp", "out_zp", "scale"):
            if name in props and not (name == "act" and props[name].data == "none"):  # type: ignore[union-attr]
                raise VerifyException(f"expected no {name} on a tile copy, got one")
        mask = _ival(props.get("dst_tile_mask"))
        if not 0 < mask < 1 << isa.MAX_TILES:
            raise VerifyException(
                f"expected dst_tile_mask in [1, {(1 << isa.MAX_TILES) - 1}], got {mask}")
        for k in range(4):
            if _ival(props.get(f"dim{k}")) < 1:
                raise VerifyException(f"expected dim{k} >= 1, got {_ival(props.get(f'dim{k}'))}")
        super().verify_()


INSN_OPS: dict[Opcode, type[InstructionOp]] = {
    Opcode.NOP: NopOp, Opcode.DMA_LOAD: DmaLoadOp, Opcode.DMA_STORE: DmaStoreOp,
    Opcode.CONV: ConvOp, Opcode.GEMM: GemmOp, Opcode.POOL: PoolOp, Opcode.ELTWISE: EltwiseOp,
    Opcode.ACT: ActOp, Opcode.CONVERT: ConvertOp, Opcode.COPY: CopyOp,
    Opcode.BARRIER: BarrierOp, Opcode.TILE_COPY: TileCopyOp,
    Opcode.SOFTMAX: SoftmaxOp, Opcode.LAYERNORM: LayerNormOp,
}


# ---- containers ---------------------------------------------------------------------------
def _vals(attr) -> list[int]:
    return [int(v) for v in attr.get_values()]


@irdl_op_definition
class TensorOp(IRDLOperation):
    """A DRAM tensor of the model: `region` input / output / weights / scratch; weights
    carry their bytes in `data`; `live` = [first, last] layer index (scratch reuse);
    `alias_of` names the tensor whose bytes a reshape-like layer views.

    ```mlir
    mlip.tensor @x {region = "input", shape = array<i64: 1, 4, 4, 2>, dtype = "f16"}
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
    data = opt_prop_def(BytesAttr)
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

    @property
    def dtype_code(self) -> int:
        return int(DTYPE_BY_NAME[self.dtype.data])

    def shape_tuple(self) -> tuple[int, ...]:
        return tuple(_vals(self.shape))

    @property
    def size_bytes(self) -> int:
        count = 1
        for d in _vals(self.shape):
            count *= d
        return count * isa.DTYPE_SIZE[isa.DType(self.dtype_code)]

    def live_range(self) -> tuple[int, int]:
        if self.live is None:
            return (-1, -1)
        first, last = _vals(self.live)
        return first, last


@irdl_op_definition
class BufferOp(IRDLOperation):
    """An OCM buffer of layer `layer`: `slots` x `size` bytes, `kind` weights or scratch;
    `addrs` (one per slot) once allocated. One line:

    ```mlir
    %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0
    ```
    """

    name = "mlip.buffer"
    label = prop_def(StringAttr, prop_name="label")
    size = prop_def(IntegerAttr[I64])
    slots = prop_def(IntegerAttr[I64])
    kind = prop_def(StringAttr)
    layer = prop_def(IntegerAttr[I64])
    last = opt_prop_def(IntegerAttr[I64])
    addrs = opt_prop_def(DenseArrayBase)
    result = result_def(BufferType)

    @classmethod
    def build(cls, label: str, size: int, slots: int, kind: str, layer: int) -> BufferOp:
        op = cls.create(result_types=[BUFFER], properties={
            "label": StringAttr(label), "size": i64_attr(size), "slots": i64_attr(slots),
            "kind": str_attr(kind), "layer": i64_attr(layer)})
        op.result.name_hint = label if label.isidentifier() else None
        return op

    def addresses(self) -> list[int]:
        return [] if self.addrs is None else _vals(self.addrs)

    def live_layers(self) -> tuple[int, int]:
        """[first, last] layer index the buffer lives for: its `layer`, through `last` for
        a resident (cross-layer) buffer."""
        first = self.layer.value.data
        return first, first if self.last is None else self.last.value.data

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_string_literal(self.label.data)
        printer.print_string(f", size = {self.size.value.data}, slots = {self.slots.value.data}"
                             f", kind = {self.kind.data}, layer = {self.layer.value.data}")
        if self.last is not None:
            printer.print_string(f", last = {self.last.value.data}")
        if self.addrs is not None:
            printer.print_string(f", addrs = [{', '.join(map(str, self.addresses()))}]")

    @classmethod
    def parse(cls, parser: Parser) -> BufferOp:
        label = parser.parse_str_literal("the buffer's name")
        values: dict[str, object] = {}
        while parser.parse_optional_punctuation(",") is not None:
            key = parser.parse_identifier(" (a buffer property)")
            parser.parse_punctuation("=")
            if key == "kind":
                values[key] = parser.parse_identifier(" (weights or scratch)")
            elif key == "addrs":
                values[key] = parser.parse_comma_separated_list(
                    parser.Delimiter.SQUARE, parser.parse_integer)
            elif key in ("size", "slots", "layer", "last"):
                values[key] = parser.parse_integer()
            else:
                parser.raise_error(f"'{key}' is not a property of mlip.buffer")
        for key in ("size", "slots", "kind", "layer"):
            if key not in values:
                parser.raise_error(f"expected '{key} = ...' in mlip.buffer")
        op = cls.build(label, values["size"], values["slots"], values["kind"],  # type: ignore[arg-type]
                       values["layer"])  # type: ignore[arg-type]
        if "last" in values:
            op.last = i64_attr(values["last"])  # type: ignore[arg-type]
        if "addrs" in values:
            op.addrs = DenseArrayBase.from_list(i64, values["addrs"])  # type: ignore[arg-type]
        return op

    def verify_(self) -> None:
        if self.kind.data not in BUFFER_KINDS:
            raise VerifyException(f"expected kind in {list(BUFFER_KINDS)}, got {self.kind.data}")
        if self.slots.value.data < 1 or self.size.value.data < 0:
            raise VerifyException(
                f"expected slots >= 1 and size >= 0, got slots = {self.slots.value.data}, "
                f"size = {self.size.value.data}")
        if self.addrs is not None and len(self.addresses()) != self.slots.value.data:
            raise VerifyException(
                f"expected {self.slots.value.data} addrs (one per slot), got "
                f"{len(self.addresses())}")
        first, last = self.live_layers()
        if last < first:
            raise VerifyException(f"expected last >= layer, got last = {last} < {first}")
        if self.last is not None and self.kind.data != "resident":
            raise VerifyException(
                f"expected 'last' only on a resident buffer, got one on {self.kind.data}")
        for use in self.result.uses:
            op = use.operation
            if isinstance(op, InstructionOp):
                layer = op.properties.get("layer")
                if layer is not None and not first <= _ival(layer) <= last:
                    span = f"layer {first}" if first == last else f"layers {first}..{last}"
                    raise VerifyException(
                        f"expected buffer '{self.label.data}' ({span}) to be used by {span}, "
                        f"got a use by layer {_ival(layer)}")


@irdl_op_definition
class BlockOp(IRDLOperation):
    """One tile's unit of work in a layer: loads, computes, stores (in that order)."""

    name = "mlip.block"
    tile = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)

    def instructions(self) -> list[InstructionOp]:
        return [op for op in self.body.block.ops if isinstance(op, InstructionOp)]

    def verify_(self) -> None:
        for op in self.body.block.ops:
            if not isinstance(op, InstructionOp):
                raise VerifyException(f"expected instruction ops in mlip.block, got {op.name}")
            if op.results or op.pop_prev is not None or op.pop_next is not None:
                raise VerifyException(
                    f"expected no tokens before mlip-dma-schedule, got some on {op.name}")


@irdl_op_definition
class LayerOp(IRDLOperation):
    """A lowered mrvl layer (an entry of the binary's layer table); its per-tile
    `mlip.block`s until `mlip-dma-schedule` moves their instructions out and leaves the
    region empty."""

    name = "mlip.layer"
    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(StringAttr)
    index = prop_def(IntegerAttr[I64])
    macs = prop_def(IntegerAttr[I64])
    split = prop_def(StringAttr)
    blocks = prop_def(IntegerAttr[I64])
    body = region_def()
    traits = traits_def(NoTerminator())
    assembly_format = "$sym_name attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)

    def block_ops(self) -> list[BlockOp]:
        if not self.body.blocks:
            return []
        return [op for op in self.body.block.ops if isinstance(op, BlockOp)]

    def verify_(self) -> None:
        if len(self.body.blocks) > 1:
            raise VerifyException(f"expected at most one block, got {len(self.body.blocks)}")
        found = self.block_ops()
        if found and len(found) != self.blocks.value.data:
            raise VerifyException(
                f"expected blocks = {len(found)} (the blocks it holds), got "
                f"{self.blocks.value.data}")


@irdl_op_definition
class SectionOp(IRDLOperation):
    """The scheduled instructions of one section (module docstring), in one block."""

    name = "mlip.section"
    section = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "attr-dict-with-keyword $body"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        _check_enum("section", self.section, SECTION_NAMES)
        pending: dict[tuple[int, int, int], deque] = {}
        for op in self.body.block.ops:
            if isinstance(op, BufferOp):
                continue
            if not isinstance(op, InstructionOp):
                raise VerifyException(f"expected instruction ops in mlip.section, got {op.name}")
            if "tile" not in op.properties:
                raise VerifyException(f"expected a tile on {op.name} in mlip.section, got none")
            tile = _ival(op.properties["tile"])
            queue = int(op.queue())
            tokens = dict(zip(TOKEN_NAMES, op.tokens(), strict=True))
            for name, source in (("pop_prev", queue - 1), ("pop_next", queue + 1)):
                token = tokens[name]
                if token is None:
                    continue
                fifo = pending.get((tile, source, queue))
                expected = fifo.popleft() if fifo else None
                if token is not expected:
                    raise VerifyException(
                        f"expected {op.name} {name} to take the oldest token that queue "
                        f"{Queue(source).name.lower()} of tile {tile} pushed to it, got "
                        f"{'another token' if expected is not None else 'none pending'}")
            for name, target in (("push_prev", queue - 1), ("push_next", queue + 1)):
                token = tokens[name]
                if token is not None:
                    pending.setdefault((tile, queue, target), deque()).append(token)

    def instructions(self) -> list[InstructionOp]:
        return [op for op in self.body.block.ops if isinstance(op, InstructionOp)]


@irdl_op_definition
class ModelOp(IRDLOperation):
    """A compiled sub-graph (one model binary). Its name (property `model`, printed
    `@name`) is the accelerator function's, which `convert-mrvl-to-mlip` keeps as an
    external declaration so that calls to it still verify; so the model is not itself a
    symbol of the module."""

    name = "mlip.model"
    sym_name = prop_def(SymbolNameConstraint(), prop_name="model")
    num_tiles = prop_def(IntegerAttr[I64])
    ocm_size = prop_def(IntegerAttr[I64])
    page_size = prop_def(IntegerAttr[I64])
    quantize = prop_def(StringAttr)
    inputs = prop_def(ArrayAttr[StringAttr])
    outputs = prop_def(ArrayAttr[StringAttr])
    ocm_end = opt_prop_def(IntegerAttr[I64])
    machine = opt_prop_def(DictionaryAttr)
    """The machine compiled for (mrvl/machine.py fields), when it is not the default one;
    the binary records it (with the model's tiles, OCM and page size)."""
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "$model attr-dict-with-keyword $body"

    def machine_record(self) -> Machine:
        """The machine of the model: `machine` (or the default) with its tiles, OCM and
        page size."""
        base = DEFAULT_MACHINE
        if self.machine is not None:
            base = Machine.from_dict({k: v.value.data  # type: ignore[union-attr]
                                      for k, v in self.machine.data.items()})
        return replace(base, tiles=self.num_tiles.value.data,
                       ocm_bytes=self.ocm_size.value.data,
                       page_bytes=self.page_size.value.data)
    irdl_options = (ParsePropInAttrDict(),)

    # -- views used by the passes, emission and the report --
    def tensors(self) -> dict[str, TensorOp]:
        return {op.sym_name.data: op for op in self.body.block.ops if isinstance(op, TensorOp)}

    def layers(self) -> list[LayerOp]:
        return [op for op in self.body.block.ops if isinstance(op, LayerOp)]

    def buffers(self) -> list[BufferOp]:
        return [op for op in self.body.block.ops if isinstance(op, BufferOp)]

    def buffers_of(self, layer: int) -> dict[str, BufferOp]:
        """The buffers of layer index `layer`, by name."""
        return {buf.label.data: buf for buf in self.buffers() if buf.layer.value.data == layer}

    def sections(self) -> list[SectionOp]:
        return [op for op in self.body.block.ops if isinstance(op, SectionOp)]

    @property
    def scheduled(self) -> bool:
        return bool(self.sections())

    def instructions(self):
        """Every instruction op, in program order (blocks, or the scheduled sections)."""
        for op in self.body.block.ops:
            if isinstance(op, LayerOp):
                for block in op.block_ops():
                    yield from block.instructions()
            elif isinstance(op, SectionOp):
                yield from op.instructions()

    def verify_(self) -> None:
        tiles = self.num_tiles.value.data
        if tiles not in (1, 2, 4, 8):
            raise VerifyException(f"expected num_tiles in [1, 2, 4, 8], got {tiles}")
        names = set(self.tensors())
        for name in (*self.inputs.data, *self.outputs.data):
            if name.data not in names:
                raise VerifyException(f"expected an mlip.tensor @{name.data}, got none")
        for op in self.instructions():
            dram = op.properties.get("dram")
            if dram is not None and dram.root_reference.data not in names:  # type: ignore[union-attr]
                raise VerifyException(
                    f"expected {op.name} dram_addr to name an mlip.tensor, got "
                    f"@{dram.root_reference.data}")  # type: ignore[union-attr]
            if isinstance(op, TileCopyOp) and _ival(op.dst_tile_mask) >> tiles:
                raise VerifyException(
                    f"expected dst_tile_mask below {1 << tiles} ({tiles} tiles), got "
                    f"{_ival(op.dst_tile_mask)}")
            tile = op.properties.get("tile")
            if tile is not None and not 0 <= _ival(tile) < tiles:
                raise VerifyException(f"expected tile in [0, {tiles}), got {_ival(tile)}")


def machine_attr(machine: Machine) -> DictionaryAttr:
    """The `machine` property of a model: every field typed (i64 or f64)."""
    data: dict[str, Attribute] = {}
    for key, value in asdict(machine).items():
        data[key] = f64_attr(float(value)) if isinstance(value, float) else i64_attr(int(value))
    return DictionaryAttr(data)


def model_asm(model: ModelOp) -> str:
    """Assembly listing of a scheduled model: one line per instruction, per stream."""
    import io

    lines = [f"; model {model.sym_name.data}: {model.num_tiles.value.data} tile(s), OCM [0, "
             f"{_ival(model.ocm_end) if model.ocm_end is not None else None}), "
             f"{model.quantize.data}"]
    for layer in model.layers():
        lines.append(f"; layer {layer.index.value.data} {layer.sym_name.data} "
                     f"{layer.kind.data} macs={layer.macs.value.data}")
    streams: dict[tuple[int, int, int], list[str]] = {}
    for section in model.sections():
        sec = int(SECTION_NAMES[section.section.data])
        text = io.StringIO()
        printer = Printer(stream=text)
        for op in section.body.block.ops:
            text.seek(0)
            text.truncate()
            printer.print_op(op)
            if not isinstance(op, InstructionOp):
                continue
            line = _RESULTS_RE.sub("", text.getvalue().strip())
            key = (sec, _ival(op.properties["tile"]), int(op.queue()))
            streams.setdefault(key, []).append(line.removeprefix("mlip."))
    for (sec, tile, queue), insns in sorted(streams.items()):
        lines.append(f"{Section(sec).name.lower()}.tile{tile}.{Queue(queue).name.lower()}:")
        lines.extend("  " + line for line in insns)
    return "\n".join(lines) + "\n"


_RESULTS_RE = re.compile(r"^%[\w.$-]+(, %[\w.$-]+)* = ")


Mlip = Dialect(
    "mlip",
    [*INSN_OPS.values(), TensorOp, BufferOp, BlockOp, LayerOp, SectionOp, ModelOp],
    [BufferType, TokenType, BytesAttr],
)
