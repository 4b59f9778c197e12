"""The `graph` dialect: tensor-level ops of CNN inference, as imported from ONNX.

Invariants (see docs/architecture.md):

- every operand and result is a builtin `TensorType` with a static shape (only `graph.onnx`
  may have dynamic `?` sizes: outputs of data-dependent ONNX ops such as
  NonMaxSuppression and what is computed from them);
- integer lists are `DenseArrayBase` of i64, layouts are `StringAttr`s ("NCHW", "NHWC",
  "OIHW", "OHWI"), float scalars are `FloatAttr` f32, integer scalars `IntegerAttr` i64;
- axes are stored normalised (non-negative, sorted where a set), pads in ONNX order (all
  begins, then all ends; 2-D: top, left, bottom, right);
- weights are `graph.constant` ops holding raw bytes (a `DenseIntOrFPElementsAttr`);
  `ConstantOp.from_numpy(arr)` builds one, `op.to_numpy()` returns a read-only view;
- an op imported from an ONNX node carries the discardable attribute
  `onnx_node = "<node name>"`;
- an ONNX op we do not model is `graph.onnx` (never `Pure`, always runs on the CPU).

Every op (except `graph.constant`) prints in one uniform custom form, which parses back to
the same op and re-prints identically:

```mlir
%y = graph.conv2d %x, %w {strides = array<i64: 1, 1>, ...} : (tensor<..>, tensor<..>) -> tensor<..>
```

Each op class computes its result types from its operand types and properties
(`infer_types`); its `__init__` uses that when no result type is given, and `verify_()`
checks the stored result types against it ("expected X, got Y").
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import ClassVar

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    BytesAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DictionaryAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VariadicDef,
    irdl_op_definition,
    opt_operand_def,
    opt_prop_def,
    operand_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import ConstantLike, Pure
from xdsl.utils.exceptions import VerifyException

from mrvl.reference_kernels import layout_perm

# --------------------------------------------------------------------------------------
# Element types <-> numpy dtypes
# --------------------------------------------------------------------------------------

i1 = IntegerType(1)
i8 = IntegerType(8)
i16 = IntegerType(16)
i32 = IntegerType(32)
ui8 = IntegerType(8, Signedness.UNSIGNED)
ui16 = IntegerType(16, Signedness.UNSIGNED)
ui32 = IntegerType(32, Signedness.UNSIGNED)
ui64 = IntegerType(64, Signedness.UNSIGNED)

_NUMPY_TO_ELEMENT: dict[np.dtype, Attribute] = {
    np.dtype(np.float32): f32,
    np.dtype(np.float16): Float16Type(),
    np.dtype(np.float64): Float64Type(),
    np.dtype(np.int64): i64,
    np.dtype(np.int32): i32,
    np.dtype(np.int16): i16,
    np.dtype(np.int8): i8,
    np.dtype(np.uint8): ui8,
    np.dtype(np.uint16): ui16,
    np.dtype(np.uint32): ui32,
    np.dtype(np.uint64): ui64,
    np.dtype(np.bool_): i1,
}
_ELEMENT_TO_NUMPY: dict[Attribute, np.dtype] = {v: k for k, v in _NUMPY_TO_ELEMENT.items()}
# bf16 has no numpy dtype: its raw bytes are viewed as uint16.
_ELEMENT_TO_NUMPY[BFloat16Type()] = np.dtype(np.uint16)


def element_type_from_numpy(dtype: np.dtype | type) -> Attribute:
    """The builtin element type of a numpy dtype (bool is i1, unsigned are ui*)."""
    dtype = np.dtype(dtype)
    element = _NUMPY_TO_ELEMENT.get(dtype.newbyteorder("=") if dtype.byteorder != "|" else dtype)
    if element is None:
        raise ValueError(f"expected a supported numpy dtype, got {dtype}")
    return element


def numpy_dtype(element_type: Attribute) -> np.dtype:
    """The numpy dtype holding one element of `element_type` (bf16: uint16 bits)."""
    dtype = _ELEMENT_TO_NUMPY.get(element_type)
    if dtype is None:
        raise ValueError(f"expected an element type with a numpy dtype, got {element_type}")
    return dtype


# --------------------------------------------------------------------------------------
# Attribute helpers
# --------------------------------------------------------------------------------------


def i64_array(values: Sequence[int]) -> DenseArrayBase:
    """`array<i64: ...>` from Python ints."""
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def f32_array(values: Sequence[float]) -> DenseArrayBase:
    """`array<f32: ...>` from Python floats."""
    return DenseArrayBase.from_list(f32, [float(v) for v in values])


def i64_attr(value: int) -> IntegerAttr:
    return IntegerAttr(int(value), i64)


def f32_attr(value: float) -> FloatAttr:
    """FloatAttr f32 holding `value` rounded to f32 (so it prints as the f32 it is)."""
    return FloatAttr(float(np.float32(value)), f32)


def ints(attr: Attribute | None) -> tuple[int, ...]:
    """Python ints of a DenseArrayBase i64 (empty tuple for None)."""
    if attr is None:
        return ()
    assert isinstance(attr, DenseArrayBase)
    return tuple(int(v) for v in attr.iter_values())


def floats(attr: Attribute | None) -> tuple[float, ...]:
    """Python floats of a DenseArrayBase f32 (empty tuple for None)."""
    if attr is None:
        return ()
    assert isinstance(attr, DenseArrayBase)
    return tuple(float(v) for v in attr.iter_values())


def _as_value(value: SSAValue | Operation) -> SSAValue:
    return SSAValue.get(value)


def _tensor(t: Attribute, what: str = "operand") -> TensorType:
    if not isinstance(t, TensorType):
        raise VerifyException(f"expected {what} of tensor type, got {t}")
    return t


def _shape(t: Attribute, what: str = "operand") -> tuple[int, ...]:
    return tuple(_tensor(t, what).get_shape())


def _fmt_types(types: Sequence[Attribute]) -> str:
    return ", ".join(str(t) for t in types)


def _int_prop(props: Mapping[str, Attribute], name: str) -> int:
    attr = props.get(name)
    if not isinstance(attr, IntegerAttr):
        raise VerifyException(f"expected property '{name}' as an integer, got {attr}")
    return int(attr.value.data)


def _str_prop(props: Mapping[str, Attribute], name: str) -> str:
    attr = props.get(name)
    if not isinstance(attr, StringAttr):
        raise VerifyException(f"expected property '{name}' as a string, got {attr}")
    return attr.data


def _ints_prop(props: Mapping[str, Attribute], name: str, length: int | None = None) -> tuple[int, ...]:
    attr = props.get(name)
    if not isinstance(attr, DenseArrayBase) or attr.elt_type != i64:
        raise VerifyException(f"expected property '{name}' as array<i64>, got {attr}")
    values = ints(attr)
    if length is not None and len(values) != length:
        raise VerifyException(f"expected {length} values in '{name}', got {len(values)}")
    return values


def _check_axis(axis: int, rank: int, name: str = "axis") -> None:
    if not 0 <= axis < rank:
        raise VerifyException(f"expected {name} in [0, {rank}), got {axis}")


_DYNAMIC_STAND_IN = 1 << 62
"""A dynamic size (`?`, -1) as numpy sees it: it broadcasts only with 1 and itself."""


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Numpy (multidirectional) broadcast of static shapes (`numpy.broadcast_shapes`; a
    dynamic size matches only 1 and itself); VerifyException if impossible."""
    try:
        result = np.broadcast_shapes(
            *(tuple(_DYNAMIC_STAND_IN if d < 0 else d for d in s) for s in shapes))
    except ValueError:
        raise VerifyException(
            "expected broadcastable shapes, got " + " and ".join(str(list(s)) for s in shapes)
        ) from None
    return tuple(-1 if d == _DYNAMIC_STAND_IN else int(d) for d in result)


def find_function(module: ModuleOp, name: str = "main") -> func.FuncOp | None:
    """The `func.func @<name>` of `module` (the model is `@main`), or None."""
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    return None


def input_names(fn: func.FuncOp) -> list[str]:
    """The `graph.name` of each argument of `fn` (arg0, arg1, ... when absent)."""
    names = []
    arg_attrs = fn.arg_attrs.data if fn.arg_attrs is not None else ()
    for i in range(len(fn.args)):
        name = f"arg{i}"
        if i < len(arg_attrs) and isinstance(arg_attrs[i], DictionaryAttr):
            attr = arg_attrs[i].data.get("graph.name")
            if isinstance(attr, StringAttr):
                name = attr.data
        names.append(name)
    return names


def output_names(fn: func.FuncOp) -> list[str]:
    """The `graph.output_names` of `fn` (or out0, out1, ... when absent)."""
    attr = fn.attributes.get("graph.output_names")
    n = len(fn.function_type.outputs.data)
    if isinstance(attr, ArrayAttr) and len(attr.data) == n:
        return [a.data if isinstance(a, StringAttr) else f"out{i}" for i, a in enumerate(attr.data)]
    return [f"out{i}" for i in range(n)]




# --------------------------------------------------------------------------------------
# Constant printing options
# --------------------------------------------------------------------------------------

_ELIDE_ABOVE: ContextVar[int | None] = ContextVar("graph_elide_above", default=None)

ELIDED_KEYWORD = "__elided__"


@contextlib.contextmanager
def elided_constants(limit: int = 16) -> Iterator[None]:
    """While active, constants with more than `limit` elements print as
    `dense_resource<__elided__>` (which parses back as zeros of the same type)."""
    token = _ELIDE_ABOVE.set(limit)
    try:
        yield
    finally:
        _ELIDE_ABOVE.reset(token)


SMALL_CONSTANT = 16
"""Constants with at most this many (finite) elements print as a readable literal."""


def print_dense(printer: Printer, value: DenseIntOrFPElementsAttr) -> None:
    """Print `dense<...> : type` compactly: small finite ones as a literal, a splat as one
    hex element, others as hex of the raw bytes, and elided when `elided_constants` is on.
    Never unpacks a big constant element by element."""
    ty = value.type
    data = value.data.data
    n = math.prod(ty.get_shape())
    limit = _ELIDE_ABOVE.get()
    if limit is not None and n > limit:
        printer.print_string(f"dense_resource<{ELIDED_KEYWORD}> : ")
        printer.print_attribute(ty)
        return
    if n == 0:
        printer.print_string("dense<> : ")
        printer.print_attribute(ty)
        return
    if n <= SMALL_CONSTANT and value.get_element_type() != i1:
        literal = _small_literal(value)
        if literal is not None:
            printer.print_string(literal)
            printer.print_string(" : ")
            printer.print_attribute(ty)
            return
    size = len(data) // n
    if n > 1 and data == data[:size] * n:
        data = data[:size]
    printer.print_string(f'dense<"0x{data.hex().upper()}"> : ')
    printer.print_attribute(ty)


def _small_literal(value: DenseIntOrFPElementsAttr) -> str | None:
    """xDSL's `dense<[...]>` text of a small constant, or None where that would not parse
    back bit-exactly (xDSL prints NaN, Inf and some floats as hex integer literals)."""
    element = value.get_element_type()
    if isinstance(element, BFloat16Type):
        return None
    stream = io.StringIO()
    value.print_without_type(Printer(stream=stream))
    text = stream.getvalue()
    if isinstance(element, Float16Type | Float32Type | Float64Type):
        if "0x" in text:
            return None
        # -0.0 parses back as +0.0: keep the sign by printing hex.
        dtype = {Float16Type: np.float16, Float32Type: np.float32, Float64Type: np.float64}[
            type(element)
        ]
        values = np.frombuffer(value.data.data, dtype)
        if np.any((values == 0) & np.signbit(values)):
            return None
    return text


def parse_dense(parser: Parser) -> DenseIntOrFPElementsAttr:
    """Parse what `print_dense` prints (including the elided form, as zeros)."""
    if parser.parse_optional_keyword("dense_resource") is not None:
        return _parse_elided_tail(parser)
    attr = parser.parse_attribute()
    if not isinstance(attr, DenseIntOrFPElementsAttr):
        parser.raise_error(f"expected a dense literal, got {attr}")
    if attr.get_element_type() == i1:
        # xDSL packs `true` as 0xFF; ONNX / numpy bools are bytes 0 and 1.
        bits = (np.frombuffer(attr.data.data, np.uint8) != 0).astype(np.uint8)
        attr = DenseIntOrFPElementsAttr(attr.type, BytesAttr(bits.tobytes()))
    return attr


def _parse_elided_tail(parser: Parser) -> DenseIntOrFPElementsAttr:
    """Parse `<__elided__> : type` (after `dense_resource`) as zeros of that type."""
    parser.parse_punctuation("<")
    key = parser.parse_identifier()
    if key != ELIDED_KEYWORD:
        parser.raise_error(f"expected {ELIDED_KEYWORD}, got {key}")
    parser.parse_punctuation(">")
    parser.parse_punctuation(":")
    ty = parser.parse_type()
    if not isinstance(ty, TensorType):
        parser.raise_error(f"expected a tensor type, got {ty}")
    size = math.prod(ty.get_shape()) * numpy_dtype(ty.get_element_type()).itemsize
    return DenseIntOrFPElementsAttr(ty, BytesAttr(bytes(size)))


# --------------------------------------------------------------------------------------
# Base class: uniform custom format, type inference, verification
# --------------------------------------------------------------------------------------


class GraphOperation(IRDLOperation):
    """Base of the graph ops: `graph.op %a, %b {props and attrs} : (types) -> types`."""

    @classmethod
    def infer_types(
        cls, operand_types: Sequence[Attribute], props: Mapping[str, Attribute]
    ) -> list[Attribute] | None:
        """Result types from operand types and properties; None if not inferable.
        Raises VerifyException when operands and properties are inconsistent."""
        return None

    ALLOWS_DYNAMIC_SHAPES: ClassVar[bool] = False

    def verify_(self) -> None:
        for value in (*self.operands, *self.results):
            if self.ALLOWS_DYNAMIC_SHAPES:
                break
            t = value.type
            if isinstance(t, TensorType) and any(d < 0 for d in t.get_shape()):
                raise VerifyException(f"expected static shapes, got {t}")
        expected = self.infer_types([o.type for o in self.operands], self.properties)
        if expected is None:
            return
        got = list(self.result_types)
        if got != list(expected):
            raise VerifyException(
                f"expected result type {_fmt_types(expected)}, got {_fmt_types(got)}"
            )

    def _build(
        self,
        operands: Sequence[SSAValue | Operation | Sequence[SSAValue | Operation]],
        props: dict[str, Attribute],
        result_types: Sequence[Attribute] | None,
    ) -> None:
        flat: list[Attribute] = []
        norm_operands: list[SSAValue | Sequence[SSAValue]] = []
        for o in operands:
            if isinstance(o, SSAValue | Operation):
                v = _as_value(o)
                norm_operands.append(v)
                flat.append(v.type)
            else:
                vs = [_as_value(x) for x in o]
                norm_operands.append(vs)
                flat.extend(v.type for v in vs)
        props = {k: v for k, v in props.items() if v is not None}
        if result_types is None:
            inferred = self.infer_types(flat, props)
            if inferred is None:
                raise ValueError(f"{self.name}: result type must be given")
            result_types = inferred
        defs = type(self).get_irdl_definition().results
        if len(defs) == 1 and not _is_variadic(defs[0][1]):
            results: list[Attribute | Sequence[Attribute]] = [result_types[0]]
        else:
            results = [list(result_types)]
        super().__init__(operands=norm_operands, result_types=results, properties=props)

    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        attrs = self._ordered_properties() | dict(self.attributes)
        self._print_attrs(printer, attrs)
        printer.print_string(" : ")
        printer.print_function_type(self.operand_types, self.result_types)

    def _ordered_properties(self) -> dict[str, Attribute]:
        order = list(type(self).get_irdl_definition().properties)
        out = {k: self.properties[k] for k in order if k in self.properties}
        out.update({k: v for k, v in self.properties.items() if k not in out})
        return out

    def _print_attrs(self, printer: Printer, attrs: Mapping[str, Attribute]) -> None:
        printer.print_op_attributes(attrs)

    @classmethod
    def parse(cls, parser: Parser) -> GraphOperation:
        unresolved = []
        first = parser.parse_optional_unresolved_operand()
        if first is not None:
            unresolved.append(first)
            while parser.parse_optional_punctuation(",") is not None:
                unresolved.append(parser.parse_unresolved_operand())
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        ftype = parser.parse_function_type()
        operands = parser.resolve_operands(unresolved, ftype.inputs.data, pos)
        prop_names = cls.get_irdl_definition().properties
        props = {k: attrs.pop(k) for k in list(attrs) if k in prop_names}
        return cls.create(
            operands=operands,
            result_types=ftype.outputs.data,
            properties=props,
            attributes=attrs,
        )


def _is_variadic(result_def: object) -> bool:
    return isinstance(result_def, VariadicDef)


class _UnaryOp(GraphOperation):
    """Element-wise op whose result has the operand's type."""

    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    @classmethod
    def infer_types(cls, operand_types, props):
        return [_tensor(operand_types[0])]

    def __init__(self, input: SSAValue | Operation, *, result_type: Attribute | None = None):
        self._build([input], {}, None if result_type is None else [result_type])


class _BinaryOp(GraphOperation):
    """Element-wise op with numpy broadcasting; both operands have the same element type."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    @classmethod
    def infer_types(cls, operand_types, props):
        a, b = _tensor(operand_types[0]), _tensor(operand_types[1])
        if a.element_type != b.element_type:
            raise VerifyException(
                f"expected operands of the same element type, got {a.element_type} and "
                f"{b.element_type}"
            )
        shape = broadcast_shapes(a.get_shape(), b.get_shape())
        return [TensorType(a.element_type, shape)]

    def __init__(
        self,
        lhs: SSAValue | Operation,
        rhs: SSAValue | Operation,
        *,
        result_type: Attribute | None = None,
    ):
        self._build([lhs, rhs], {}, None if result_type is None else [result_type])


# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A tensor of raw bytes (weights, shapes, scalars).

    ```mlir
    %w = graph.constant dense<"0x0000803F..."> : tensor<64x3x7x7xf32>
    %s = graph.constant dense<[1, 64]> : tensor<2xi64>
    %e = graph.constant {onnx_node = "w"} dense_resource<__elided__> : tensor<1000xf32>
    ```
    """

    name = "graph.constant"
    value = prop_def(DenseIntOrFPElementsAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure(), ConstantLike())

    def __init__(self, value: DenseIntOrFPElementsAttr):
        super().__init__(properties={"value": value}, result_types=[value.type])

    @classmethod
    def from_bytes(cls, data: bytes, type: TensorType) -> ConstantOp:
        """A constant of `type` holding `data` (little-endian raw bytes) without copying."""
        return cls(DenseIntOrFPElementsAttr(type, BytesAttr(data)))

    @classmethod
    def from_numpy(cls, arr: np.ndarray) -> ConstantOp:
        """A constant holding a copy of `arr`'s bytes (in C order, little-endian)."""
        arr = np.asarray(arr)
        element = element_type_from_numpy(arr.dtype)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return cls.from_bytes(arr.tobytes(), TensorType(element, arr.shape))

    def to_numpy(self) -> np.ndarray:
        """A read-only numpy view of the raw bytes (no copy)."""
        ty = self.value.type
        arr = np.frombuffer(self.value.data.data, dtype=numpy_dtype(ty.get_element_type()))
        return arr.reshape(tuple(ty.get_shape()))

    def verify_(self) -> None:
        ty = self.value.type
        if not isinstance(ty, TensorType):
            raise VerifyException(f"expected a tensor-typed value, got {ty}")
        if self.result.type != ty:
            raise VerifyException(f"expected result type {ty}, got {self.result.type}")
        size = math.prod(ty.get_shape()) * numpy_dtype(ty.get_element_type()).itemsize
        if len(self.value.data.data) != size:
            raise VerifyException(
                f"expected {size} bytes of data for {ty}, got {len(self.value.data.data)}"
            )

    def print(self, printer: Printer) -> None:
        printer.print_op_attributes(self.attributes)
        printer.print_string(" ")
        print_dense(printer, self.value)

    @classmethod
    def parse(cls, parser: Parser) -> ConstantOp:
        attrs = parser.parse_optional_attr_dict()
        value = parse_dense(parser)
        op = cls(value)
        op.attributes.update(attrs)
        return op


# --------------------------------------------------------------------------------------
# Compute-heavy ops
# --------------------------------------------------------------------------------------


@irdl_op_definition
class Conv2DOp(GraphOperation):
    """2-D convolution (ONNX Conv with explicit pads; auto_pad is resolved by the importer).

    ```mlir
    %y = graph.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>,
        dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW",
        kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>)
        -> tensor<1x4x8x8xf32>
    ```
    Weight: OIHW is [O, C/groups, KH, KW]; OHWI is [O, KH, KW, C/groups].
    """

    name = "graph.conv2d"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    data_layout = prop_def(StringAttr)
    kernel_layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        weight: SSAValue | Operation,
        bias: SSAValue | Operation | None = None,
        *,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        groups: int = 1,
        data_layout: str = "NCHW",
        kernel_layout: str = "OIHW",
        result_type: Attribute | None = None,
    ):
        props = {
            "strides": i64_array(strides),
            "pads": i64_array(pads),
            "dilations": i64_array(dilations),
            "groups": i64_attr(groups),
            "data_layout": StringAttr(data_layout),
            "kernel_layout": StringAttr(kernel_layout),
        }
        self._build(
            [input, weight, [] if bias is None else [bias]],
            props,
            None if result_type is None else [result_type],
        )

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs, ws = _shape(x), _shape(operand_types[1])
        strides = _ints_prop(props, "strides", 2)
        pads = _ints_prop(props, "pads", 4)
        dil = _ints_prop(props, "dilations", 2)
        groups = _int_prop(props, "groups")
        dl, kl = _str_prop(props, "data_layout"), _str_prop(props, "kernel_layout")
        if dl not in ("NCHW", "NHWC"):
            raise VerifyException(f"expected data_layout NCHW or NHWC, got {dl}")
        if kl not in ("OIHW", "OHWI"):
            raise VerifyException(f"expected kernel_layout OIHW or OHWI, got {kl}")
        if len(xs) != 4 or len(ws) != 4:
            raise VerifyException(f"expected 4-D input and weight, got {list(xs)} and {list(ws)}")
        if min(strides) < 1 or min(dil) < 1 or groups < 1:
            raise VerifyException("expected positive strides, dilations and groups")
        n, c, h, w = xs if dl == "NCHW" else (xs[0], xs[3], xs[1], xs[2])
        o, ci, kh, kw = ws if kl == "OIHW" else (ws[0], ws[3], ws[1], ws[2])
        if c % groups or o % groups:
            raise VerifyException(f"expected channels divisible by groups {groups}, got {c} and {o}")
        if ci * groups != c:
            raise VerifyException(f"expected weight input channels {c // groups}, got {ci}")
        if len(operand_types) == 3 and _shape(operand_types[2]) != (o,):
            raise VerifyException(f"expected bias shape [{o}], got {list(_shape(operand_types[2]))}")
        oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
        ow = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
        if oh < 1 or ow < 1:
            raise VerifyException(f"expected a non-empty output, got {oh}x{ow}")
        shape = (n, o, oh, ow) if dl == "NCHW" else (n, oh, ow, o)
        return [TensorType(x.element_type, shape)]


@irdl_op_definition
class GemmOp(GraphOperation):
    """ONNX Gemm: alpha * A' @ B' + beta * C (A' = A^T if trans_a, C broadcast to [M, N]).

    ```mlir
    %y = graph.gemm %a, %b, %c {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = 0 : i64,
        trans_b = 1 : i64} : (tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    ```
    """

    name = "graph.gemm"
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    c = opt_operand_def(TensorType)
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    trans_a = prop_def(IntegerAttr)
    trans_b = prop_def(IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        a: SSAValue | Operation,
        b: SSAValue | Operation,
        c: SSAValue | Operation | None = None,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        trans_a: int = 0,
        trans_b: int = 0,
        result_type: Attribute | None = None,
    ):
        props = {
            "alpha": f32_attr(alpha),
            "beta": f32_attr(beta),
            "trans_a": i64_attr(trans_a),
            "trans_b": i64_attr(trans_b),
        }
        self._build([a, b, [] if c is None else [c]], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        a = _tensor(operand_types[0])
        sa, sb = _shape(a), _shape(operand_types[1])
        if len(sa) != 2 or len(sb) != 2:
            raise VerifyException(f"expected 2-D A and B, got {list(sa)} and {list(sb)}")
        m, k = sa[::-1] if _int_prop(props, "trans_a") else sa
        k2, n = sb[::-1] if _int_prop(props, "trans_b") else sb
        if k != k2:
            raise VerifyException(f"expected matching inner dimensions, got {k} and {k2}")
        if len(operand_types) == 3:
            sc = _shape(operand_types[2])
            if len(sc) > 2 or broadcast_shapes(sc, (m, n)) != (m, n):
                raise VerifyException(f"expected C broadcastable to [{m}, {n}], got {list(sc)}")
        return [TensorType(a.element_type, (m, n))]


@irdl_op_definition
class MatMulOp(GraphOperation):
    """numpy.matmul (1-D promotion, batch broadcasting).

    ```mlir
    %y = graph.matmul %a, %b : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
    ```
    """

    name = "graph.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation, *, result_type: Attribute | None = None):
        self._build([lhs, rhs], {}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        a = _tensor(operand_types[0])
        sa, sb = list(_shape(a)), list(_shape(operand_types[1]))
        if not sa or not sb:
            raise VerifyException("expected operands of rank >= 1, got a scalar")
        da, db = len(sa) == 1, len(sb) == 1
        if da:
            sa = [1] + sa
        if db:
            sb = sb + [1]
        if sa[-1] != sb[-2]:
            raise VerifyException(f"expected matching inner dimensions, got {sa[-1]} and {sb[-2]}")
        batch = broadcast_shapes(sa[:-2], sb[:-2])
        shape = list(batch) + ([] if da else [sa[-2]]) + ([] if db else [sb[-1]])
        return [TensorType(a.element_type, shape)]


@irdl_op_definition
class DenseOp(GraphOperation):
    """Fully connected: x[N, K] @ weight[O, K]^T -> [N, O].

    ```mlir
    %y = graph.dense %x, %w : (tensor<1x4xf32>, tensor<3x4xf32>) -> tensor<1x3xf32>
    ```
    """

    name = "graph.dense"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, weight: SSAValue | Operation, *, result_type: Attribute | None = None):
        self._build([input, weight], {}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        sx, sw = _shape(x), _shape(operand_types[1])
        if len(sx) != 2 or len(sw) != 2:
            raise VerifyException(f"expected 2-D input and weight, got {list(sx)} and {list(sw)}")
        if sx[1] != sw[1]:
            raise VerifyException(f"expected weight with {sx[1]} columns, got {sw[1]}")
        return [TensorType(x.element_type, (sx[0], sw[0]))]


@irdl_op_definition
class BiasAddOp(GraphOperation):
    """x + bias broadcast along `axis` (bias is 1-D of length x.shape[axis]).

    ```mlir
    %y = graph.bias_add %x, %b {axis = 1 : i64} : (tensor<1x4x2x2xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>
    ```
    """

    name = "graph.bias_add"
    input = operand_def(TensorType)
    bias = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, bias: SSAValue | Operation, *, axis: int = 1, result_type: Attribute | None = None):
        self._build([input, bias], {"axis": i64_attr(axis)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        sx, sb = _shape(x), _shape(operand_types[1])
        axis = _int_prop(props, "axis")
        _check_axis(axis, len(sx))
        if sb != (sx[axis],):
            raise VerifyException(f"expected bias shape [{sx[axis]}], got {list(sb)}")
        return [x]


# --------------------------------------------------------------------------------------
# Element-wise ops
# --------------------------------------------------------------------------------------


@irdl_op_definition
class AddOp(_BinaryOp):
    """Element-wise lhs + rhs with numpy broadcasting.

    ```mlir
    %y = graph.add %a, %b : (tensor<1x4xf32>, tensor<4xf32>) -> tensor<1x4xf32>
    ```
    """

    name = "graph.add"


@irdl_op_definition
class SubOp(_BinaryOp):
    """Element-wise lhs - rhs with numpy broadcasting."""

    name = "graph.sub"


@irdl_op_definition
class MulOp(_BinaryOp):
    """Element-wise lhs * rhs with numpy broadcasting."""

    name = "graph.mul"


@irdl_op_definition
class DivOp(_BinaryOp):
    """Element-wise lhs / rhs with numpy broadcasting (ONNX Div: integer division truncates)."""

    name = "graph.div"


@irdl_op_definition
class ReluOp(_UnaryOp):
    """max(x, 0).

    ```mlir
    %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
    ```
    """

    name = "graph.relu"


@irdl_op_definition
class SigmoidOp(_UnaryOp):
    """1 / (1 + exp(-x))."""

    name = "graph.sigmoid"


@irdl_op_definition
class HardSwishOp(_UnaryOp):
    """x * max(0, min(1, x / 6 + 0.5))."""

    name = "graph.hard_swish"


@irdl_op_definition
class TanhOp(_UnaryOp):
    """tanh(x)."""

    name = "graph.tanh"


@irdl_op_definition
class IdentityOp(_UnaryOp):
    """x."""

    name = "graph.identity"


@irdl_op_definition
class LeakyReluOp(GraphOperation):
    """x if x >= 0 else alpha * x.

    ```mlir
    %y = graph.leaky_relu %x {alpha = 0.01 : f32} : (tensor<4xf32>) -> tensor<4xf32>
    ```
    """

    name = "graph.leaky_relu"
    input = operand_def(TensorType)
    alpha = prop_def(FloatAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, alpha: float = 0.01, result_type: Attribute | None = None):
        self._build([input], {"alpha": f32_attr(alpha)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return [_tensor(operand_types[0])]


@irdl_op_definition
class PReluOp(GraphOperation):
    """x if x >= 0 else slope * x; slope unidirectionally broadcast to x.

    ```mlir
    %y = graph.prelu %x, %s : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
    ```
    """

    name = "graph.prelu"
    input = operand_def(TensorType)
    slope = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, slope: SSAValue | Operation, *, result_type: Attribute | None = None):
        self._build([input, slope], {}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        sx, ss = _shape(x), _shape(operand_types[1])
        if len(ss) > len(sx) or broadcast_shapes(sx, ss) != sx:
            raise VerifyException(f"expected slope broadcastable to {list(sx)}, got {list(ss)}")
        return [x]


@irdl_op_definition
class ClipOp(GraphOperation):
    """min(max(x, min), max); a missing bound is no bound.

    ```mlir
    %y = graph.clip %x {min = 0.0 : f32, max = 6.0 : f32} : (tensor<4xf32>) -> tensor<4xf32>
    ```
    """

    name = "graph.clip"
    input = operand_def(TensorType)
    min = opt_prop_def(FloatAttr)
    max = opt_prop_def(FloatAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        min: float | None = None,
        max: float | None = None,
        result_type: Attribute | None = None,
    ):
        props = {
            "min": None if min is None else f32_attr(min),
            "max": None if max is None else f32_attr(max),
        }
        self._build([input], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return [_tensor(operand_types[0])]


@irdl_op_definition
class HardSigmoidOp(GraphOperation):
    """max(0, min(1, alpha * x + beta)).

    ```mlir
    %y = graph.hard_sigmoid %x {alpha = 0.2 : f32, beta = 0.5 : f32} : (tensor<4xf32>) -> tensor<4xf32>
    ```
    """

    name = "graph.hard_sigmoid"
    input = operand_def(TensorType)
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, alpha: float = 0.2, beta: float = 0.5, result_type: Attribute | None = None):
        props = {"alpha": f32_attr(alpha), "beta": f32_attr(beta)}
        self._build([input], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return [_tensor(operand_types[0])]


@irdl_op_definition
class SoftmaxOp(GraphOperation):
    """Softmax along one axis (ONNX opset >= 13 semantics).

    ```mlir
    %y = graph.softmax %x {axis = 1 : i64} : (tensor<1x10xf32>) -> tensor<1x10xf32>
    ```
    """

    name = "graph.softmax"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, axis: int = -1, result_type: Attribute | None = None):
        if axis < 0:
            axis += len(_shape(_as_value(input).type))
        self._build([input], {"axis": i64_attr(axis)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        _check_axis(_int_prop(props, "axis"), len(_shape(x)))
        return [x]


# --------------------------------------------------------------------------------------
# Pools and normalisation
# --------------------------------------------------------------------------------------


def _pool_dim(size: int, k: int, s: int, pb: int, pe: int, d: int, ceil_mode: int) -> int:
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = -(-(size + pb + pe - eff) // s) + 1
        # ONNX / PyTorch: the last window must start inside the input or the begin padding.
        if (out - 1) * s >= size + pb:
            out -= 1
        return out
    return (size + pb + pe - eff) // s + 1


def _check_layout(props: Mapping[str, Attribute], name: str = "layout") -> str:
    layout = _str_prop(props, name)
    if layout not in ("NCHW", "NHWC"):
        raise VerifyException(f"expected {name} NCHW or NHWC, got {layout}")
    return layout


def _pool_infer(operand_types, props, has_dilations: bool) -> list[Attribute]:
    x = _tensor(operand_types[0])
    xs = _shape(x)
    if len(xs) != 4:
        raise VerifyException(f"expected a 4-D input, got {list(xs)}")
    layout = _check_layout(props)
    k = _ints_prop(props, "kernel_shape", 2)
    s = _ints_prop(props, "strides", 2)
    p = _ints_prop(props, "pads", 4)
    d = _ints_prop(props, "dilations", 2) if has_dilations else (1, 1)
    if min(k) < 1 or min(s) < 1 or min(d) < 1:
        raise VerifyException("expected positive kernel_shape, strides and dilations")
    ceil_mode = _int_prop(props, "ceil_mode")
    n, c, h, w = xs if layout == "NCHW" else (xs[0], xs[3], xs[1], xs[2])
    oh = _pool_dim(h, k[0], s[0], p[0], p[2], d[0], ceil_mode)
    ow = _pool_dim(w, k[1], s[1], p[1], p[3], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise VerifyException(f"expected a non-empty output, got {oh}x{ow}")
    shape = (n, c, oh, ow) if layout == "NCHW" else (n, oh, ow, c)
    return [TensorType(x.element_type, shape)]


@irdl_op_definition
class MaxPool2DOp(GraphOperation):
    """2-D max pooling (padding never wins).

    ```mlir
    %y = graph.max_pool2d %x {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>,
        pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64,
        layout = "NCHW"} : (tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32>
    ```
    """

    name = "graph.max_pool2d"
    input = operand_def(TensorType)
    kernel_shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    ceil_mode = prop_def(IntegerAttr)
    layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        kernel_shape: Sequence[int],
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        ceil_mode: int = 0,
        layout: str = "NCHW",
        result_type: Attribute | None = None,
    ):
        props = {
            "kernel_shape": i64_array(kernel_shape),
            "strides": i64_array(strides),
            "pads": i64_array(pads),
            "dilations": i64_array(dilations),
            "ceil_mode": i64_attr(ceil_mode),
            "layout": StringAttr(layout),
        }
        self._build([input], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return _pool_infer(operand_types, props, True)


@irdl_op_definition
class AvgPool2DOp(GraphOperation):
    """2-D average pooling; count_include_pad counts padded cells in the divisor.

    ```mlir
    %y = graph.avg_pool2d %x {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>,
        pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64, count_include_pad = 0 : i64,
        layout = "NCHW"} : (tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32>
    ```
    """

    name = "graph.avg_pool2d"
    input = operand_def(TensorType)
    kernel_shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    ceil_mode = prop_def(IntegerAttr)
    count_include_pad = prop_def(IntegerAttr)
    layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        kernel_shape: Sequence[int],
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        ceil_mode: int = 0,
        count_include_pad: int = 0,
        layout: str = "NCHW",
        result_type: Attribute | None = None,
    ):
        props = {
            "kernel_shape": i64_array(kernel_shape),
            "strides": i64_array(strides),
            "pads": i64_array(pads),
            "ceil_mode": i64_attr(ceil_mode),
            "count_include_pad": i64_attr(count_include_pad),
            "layout": StringAttr(layout),
        }
        self._build([input], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return _pool_infer(operand_types, props, False)


class _GlobalPoolOp(GraphOperation):
    input = operand_def(TensorType)
    layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, layout: str = "NCHW", result_type: Attribute | None = None):
        self._build([input], {"layout": StringAttr(layout)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        if len(xs) != 4:
            raise VerifyException(f"expected a 4-D input, got {list(xs)}")
        layout = _check_layout(props)
        if xs[0] and not math.prod(xs):  # onnxruntime: "Only N can be zero"
            raise VerifyException(f"expected a non-empty input (only N may be 0), got {list(xs)}")
        shape = (xs[0], xs[1], 1, 1) if layout == "NCHW" else (xs[0], 1, 1, xs[3])
        return [TensorType(x.element_type, shape)]


@irdl_op_definition
class GlobalAvgPool2DOp(_GlobalPoolOp):
    """Mean over H and W, keeping them as 1.

    ```mlir
    %y = graph.global_avg_pool2d %x {layout = "NCHW"} : (tensor<1x4x3x3xf32>) -> tensor<1x4x1x1xf32>
    ```
    """

    name = "graph.global_avg_pool2d"


@irdl_op_definition
class GlobalMaxPool2DOp(_GlobalPoolOp):
    """Max over H and W, keeping them as 1."""

    name = "graph.global_max_pool2d"


@irdl_op_definition
class BatchNormOp(GraphOperation):
    """Inference batch normalisation: (x - mean) / sqrt(var + epsilon) * scale + bias,
    with the per-channel parameters ([C] each) on the layout's channel axis.

    ```mlir
    %y = graph.batch_norm %x, %s, %b, %m, %v {epsilon = 1.0e-05 : f32, layout = "NCHW"}
        : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
        -> tensor<1x4x2x2xf32>
    ```
    For inputs of rank other than 4, "NCHW" means channel axis 1.
    """

    name = "graph.batch_norm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = operand_def(TensorType)
    mean = operand_def(TensorType)
    var = operand_def(TensorType)
    epsilon = prop_def(FloatAttr)
    layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        scale: SSAValue | Operation,
        bias: SSAValue | Operation,
        mean: SSAValue | Operation,
        var: SSAValue | Operation,
        *,
        epsilon: float = 1e-5,
        layout: str = "NCHW",
        result_type: Attribute | None = None,
    ):
        props = {"epsilon": f32_attr(epsilon), "layout": StringAttr(layout)}
        self._build([input, scale, bias, mean, var], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        layout = _check_layout(props)
        if len(xs) < 2:
            raise VerifyException(f"expected an input of rank >= 2, got {list(xs)}")
        c = xs[1] if layout == "NCHW" else xs[-1]
        for name, t in zip(("scale", "bias", "mean", "var"), operand_types[1:]):
            if _shape(t) != (c,):
                raise VerifyException(f"expected {name} shape [{c}], got {list(_shape(t))}")
        return [x]


# --------------------------------------------------------------------------------------
# Data movement
# --------------------------------------------------------------------------------------


@irdl_op_definition
class PadOp(GraphOperation):
    """Pad (pads: all begins then all ends, full rank; negative pads crop).

    ```mlir
    %y = graph.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "constant",
        value = 0.0 : f32} : (tensor<1x1x2x2xf32>) -> tensor<1x1x4x4xf32>
    ```
    """

    name = "graph.pad"
    input = operand_def(TensorType)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    value = prop_def(FloatAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        pads: Sequence[int],
        mode: str = "constant",
        value: float = 0.0,
        result_type: Attribute | None = None,
    ):
        props = {"pads": i64_array(pads), "mode": StringAttr(mode), "value": f32_attr(value)}
        self._build([input], props, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        pads = _ints_prop(props, "pads", 2 * len(xs))
        mode = _str_prop(props, "mode")
        if mode not in ("constant", "reflect", "edge"):
            raise VerifyException(f"expected mode constant, reflect or edge, got {mode}")
        r = len(xs)
        shape = tuple(d + pads[i] + pads[i + r] for i, d in enumerate(xs))
        if min(shape, default=1) < 0:
            raise VerifyException(f"expected a non-negative padded shape, got {list(shape)}")
        return [TensorType(x.element_type, shape)]


@irdl_op_definition
class ConcatOp(GraphOperation):
    """Concatenation along `axis`.

    ```mlir
    %y = graph.concat %a, %b {axis = 1 : i64} : (tensor<1x2xf32>, tensor<1x3xf32>) -> tensor<1x5xf32>
    ```
    """

    name = "graph.concat"
    inputs = var_operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, inputs: Sequence[SSAValue | Operation], *, axis: int, result_type: Attribute | None = None):
        if axis < 0 and inputs:
            axis += len(_shape(_as_value(inputs[0]).type))
        self._build([list(inputs)], {"axis": i64_attr(axis)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        if not operand_types:
            raise VerifyException("expected at least one input, got none")
        first = _tensor(operand_types[0])
        s0 = _shape(first)
        axis = _int_prop(props, "axis")
        _check_axis(axis, len(s0))
        total = 0
        for t in operand_types:
            s = _shape(t)
            if len(s) != len(s0) or any(a != b for i, (a, b) in enumerate(zip(s, s0)) if i != axis):
                raise VerifyException(f"expected inputs matching {list(s0)} except on axis {axis}, got {list(s)}")
            if _tensor(t).element_type != first.element_type:
                raise VerifyException(f"expected element type {first.element_type}, got {_tensor(t).element_type}")
            total += s[axis]
        shape = list(s0)
        shape[axis] = total
        return [TensorType(first.element_type, shape)]


@irdl_op_definition
class SplitOp(GraphOperation):
    """Split along `axis` into pieces of the given sizes.

    ```mlir
    %a, %b = graph.split %x {axis = 1 : i64, split = array<i64: 2, 3>} : (tensor<1x5xf32>)
        -> (tensor<1x2xf32>, tensor<1x3xf32>)
    ```
    """

    name = "graph.split"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    split = prop_def(DenseArrayBase)
    outputs = var_result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        axis: int,
        split: Sequence[int],
        result_types: Sequence[Attribute] | None = None,
    ):
        if axis < 0:
            axis += len(_shape(_as_value(input).type))
        self._build([input], {"axis": i64_attr(axis), "split": i64_array(split)}, result_types)

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        axis = _int_prop(props, "axis")
        _check_axis(axis, len(xs))
        split = _ints_prop(props, "split")
        if sum(split) != xs[axis] or min(split, default=0) < 0:
            raise VerifyException(f"expected split sizes summing to {xs[axis]}, got {list(split)}")
        out = []
        for size in split:
            shape = list(xs)
            shape[axis] = size
            out.append(TensorType(x.element_type, shape))
        return out


@irdl_op_definition
class ReshapeOp(GraphOperation):
    """Reshape to the (static) result type's shape; the element count is unchanged.

    ```mlir
    %y = graph.reshape %x : (tensor<1x4x2x2xf32>) -> tensor<1x16xf32>
    ```
    """

    name = "graph.reshape"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        shape: Sequence[int] | None = None,
        *,
        result_type: Attribute | None = None,
    ):
        if result_type is None:
            if shape is None:
                raise ValueError("graph.reshape: give shape or result_type")
            result_type = TensorType(_tensor(_as_value(input).type).element_type, shape)
        self._build([input], {}, [result_type])

    def verify_(self) -> None:
        super().verify_()
        x, r = _tensor(self.input.type), _tensor(self.result.type)
        if x.element_type != r.element_type:
            raise VerifyException(f"expected result element type {x.element_type}, got {r.element_type}")
        if math.prod(x.get_shape()) != math.prod(r.get_shape()):
            raise VerifyException(
                f"expected a result with {math.prod(x.get_shape())} elements, got {r}"
            )


@irdl_op_definition
class FlattenOp(GraphOperation):
    """ONNX Flatten: [prod(shape[:axis]), prod(shape[axis:])].

    ```mlir
    %y = graph.flatten %x {axis = 1 : i64} : (tensor<1x4x2x2xf32>) -> tensor<1x16xf32>
    ```
    """

    name = "graph.flatten"
    input = operand_def(TensorType)
    axis = prop_def(IntegerAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, axis: int = 1, result_type: Attribute | None = None):
        if axis < 0:
            axis += len(_shape(_as_value(input).type))
        self._build([input], {"axis": i64_attr(axis)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        axis = _int_prop(props, "axis")
        if not 0 <= axis <= len(xs):
            raise VerifyException(f"expected axis in [0, {len(xs)}], got {axis}")
        return [TensorType(x.element_type, (math.prod(xs[:axis]), math.prod(xs[axis:])))]


@irdl_op_definition
class SqueezeOp(GraphOperation):
    """Remove the size-1 dimensions listed in `axes` (sorted, non-negative).

    ```mlir
    %y = graph.squeeze %x {axes = array<i64: 2, 3>} : (tensor<1x4x1x1xf32>) -> tensor<1x4xf32>
    ```
    """

    name = "graph.squeeze"
    input = operand_def(TensorType)
    axes = prop_def(DenseArrayBase)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, axes: Sequence[int], result_type: Attribute | None = None):
        rank = len(_shape(_as_value(input).type))
        axes = sorted(a + rank if a < 0 else a for a in axes)
        self._build([input], {"axes": i64_array(axes)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        axes = _ints_prop(props, "axes")
        if list(axes) != sorted(set(axes)):
            raise VerifyException(f"expected sorted unique axes, got {list(axes)}")
        for a in axes:
            _check_axis(a, len(xs), "axes")
            if xs[a] != 1:
                raise VerifyException(f"expected dimension {a} of size 1, got {xs[a]}")
        return [TensorType(x.element_type, [d for i, d in enumerate(xs) if i not in axes])]


@irdl_op_definition
class UnsqueezeOp(GraphOperation):
    """Insert size-1 dimensions at `axes` (positions in the result, sorted, non-negative).

    ```mlir
    %y = graph.unsqueeze %x {axes = array<i64: 0>} : (tensor<4xf32>) -> tensor<1x4xf32>
    ```
    """

    name = "graph.unsqueeze"
    input = operand_def(TensorType)
    axes = prop_def(DenseArrayBase)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, axes: Sequence[int], result_type: Attribute | None = None):
        rank = len(_shape(_as_value(input).type)) + len(axes)
        axes = sorted(a + rank if a < 0 else a for a in axes)
        self._build([input], {"axes": i64_array(axes)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = list(_shape(x))
        axes = _ints_prop(props, "axes")
        rank = len(xs) + len(axes)
        if list(axes) != sorted(set(axes)):
            raise VerifyException(f"expected sorted unique axes, got {list(axes)}")
        for a in axes:
            _check_axis(a, rank, "axes")
        it = iter(xs)
        return [TensorType(x.element_type, [1 if i in axes else next(it) for i in range(rank)])]


@irdl_op_definition
class TransposeOp(GraphOperation):
    """Permute dimensions: result.shape[i] = input.shape[perm[i]].

    ```mlir
    %y = graph.transpose %x {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
    ```
    """

    name = "graph.transpose"
    input = operand_def(TensorType)
    perm = prop_def(DenseArrayBase)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, perm: Sequence[int] | None = None, result_type: Attribute | None = None):
        if perm is None:
            perm = list(range(len(_shape(_as_value(input).type))))[::-1]
        self._build([input], {"perm": i64_array(perm)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        perm = _ints_prop(props, "perm")
        if sorted(perm) != list(range(len(xs))):
            raise VerifyException(f"expected a permutation of {len(xs)} axes, got {list(perm)}")
        return [TensorType(x.element_type, [xs[p] for p in perm])]


@irdl_op_definition
class LayoutTransformOp(GraphOperation):
    """Change a tensor's layout, e.g. "NCHW" -> "NHWC" or "OIHW" -> "OHWI" (a transpose
    whose permutation is spelled by the two layout strings).

    ```mlir
    %y = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWC"}
        : (tensor<1x3x4x5xf32>) -> tensor<1x4x5x3xf32>
    ```
    """

    name = "graph.layout_transform"
    input = operand_def(TensorType)
    src_layout = prop_def(StringAttr)
    dst_layout = prop_def(StringAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, src_layout: str, dst_layout: str, result_type: Attribute | None = None):
        props = {"src_layout": StringAttr(src_layout), "dst_layout": StringAttr(dst_layout)}
        self._build([input], props, None if result_type is None else [result_type])

    @property
    def permutation(self) -> tuple[int, ...]:
        return layout_perm(self.src_layout.data, self.dst_layout.data)

    @classmethod
    def infer_types(cls, operand_types, props):
        x = _tensor(operand_types[0])
        xs = _shape(x)
        src, dst = _str_prop(props, "src_layout"), _str_prop(props, "dst_layout")
        if len(set(src)) != len(src) or sorted(src) != sorted(dst) or len(src) != len(xs):
            raise VerifyException(
                f"expected src and dst layouts permuting the {len(xs)} axes, got {src} and {dst}"
            )
        return [TensorType(x.element_type, [xs[p] for p in layout_perm(src, dst)])]


@irdl_op_definition
class ResizeOp(GraphOperation):
    """ONNX Resize with a static output shape (the result type) and per-axis scales.

    ```mlir
    %y = graph.resize %x {mode = "nearest", coordinate_transformation_mode = "asymmetric",
        nearest_mode = "floor", scales = array<f32: 1.0, 1.0, 2.0, 2.0>}
        : (tensor<1x1x2x2xf32>) -> tensor<1x1x4x4xf32>
    ```
    """

    name = "graph.resize"
    input = operand_def(TensorType)
    mode = prop_def(StringAttr)
    coordinate_transformation_mode = prop_def(StringAttr)
    nearest_mode = prop_def(StringAttr)
    scales = prop_def(DenseArrayBase)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        scales: Sequence[float] | None = None,
        sizes: Sequence[int] | None = None,
        mode: str = "nearest",
        coordinate_transformation_mode: str = "half_pixel",
        nearest_mode: str = "round_prefer_floor",
        result_type: Attribute | None = None,
    ):
        x = _tensor(_as_value(input).type)
        xs = _shape(x)
        if result_type is not None:
            sizes = _shape(result_type, "result")
        if sizes is None:
            if scales is None:
                raise ValueError("graph.resize: give scales, sizes or result_type")
            sizes = [int(math.floor(d * s)) for d, s in zip(xs, scales)]
        if scales is None:
            scales = [o / i if i else 1.0 for o, i in zip(sizes, xs)]
        props = {
            "mode": StringAttr(mode),
            "coordinate_transformation_mode": StringAttr(coordinate_transformation_mode),
            "nearest_mode": StringAttr(nearest_mode),
            "scales": f32_array(scales),
        }
        self._build([input], props, [TensorType(x.element_type, sizes)])

    def verify_(self) -> None:
        super().verify_()
        x, r = _tensor(self.input.type), _tensor(self.result.type)
        if x.element_type != r.element_type or len(x.get_shape()) != len(r.get_shape()):
            raise VerifyException(f"expected a result of rank {len(x.get_shape())} and element type {x.element_type}, got {r}")
        if len(floats(self.scales)) != len(x.get_shape()):
            raise VerifyException(f"expected {len(x.get_shape())} scales, got {len(floats(self.scales))}")
        if self.mode.data not in ("nearest", "linear"):
            raise VerifyException(f"expected mode nearest or linear, got {self.mode.data}")


@irdl_op_definition
class DropoutOp(GraphOperation):
    """Dropout at inference: the identity (ratio kept for export).

    ```mlir
    %y = graph.dropout %x {ratio = 0.5 : f32} : (tensor<4xf32>) -> tensor<4xf32>
    ```
    """

    name = "graph.dropout"
    input = operand_def(TensorType)
    ratio = prop_def(FloatAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, input: SSAValue | Operation, *, ratio: float = 0.5, result_type: Attribute | None = None):
        self._build([input], {"ratio": f32_attr(ratio)}, None if result_type is None else [result_type])

    @classmethod
    def infer_types(cls, operand_types, props):
        return [_tensor(operand_types[0])]


# --------------------------------------------------------------------------------------
# Generic ONNX op
# --------------------------------------------------------------------------------------


@irdl_op_definition
class OnnxOp(GraphOperation):
    """An ONNX node we do not model; it always runs on the CPU (through onnxruntime).

    ```mlir
    %y = graph.onnx %x, %k {op_type = "TopK", domain = "", opset = 17 : i64,
        attrs = {axis = -1 : i64, largest = 1 : i64},
        input_indices = array<i64: 0, 1>} : (tensor<1x10xf32>, tensor<1xi64>)
        -> (tensor<1x3xf32>, tensor<1x3xi64>)
    ```

    `attrs` holds the ONNX attributes: INT -> i64 IntegerAttr, FLOAT -> f32 FloatAttr,
    STRING -> StringAttr, INTS -> array<i64>, FLOATS -> array<f32>, STRINGS -> array of
    StringAttr, TENSOR -> dense raw bytes (printed like graph.constant), TENSORS -> array of
    those; GRAPH / GRAPHS / SPARSE_TENSOR / TYPE_PROTO / non-UTF-8 strings / tensors of
    other dtypes -> a one-entry dictionary {"onnx.<ProtoName>" = "<hex of the serialized
    proto>"} (see `mrvl.frontend.onnx_import.onnx_attribute_to_ir` and its inverse).
    `input_indices[i]` is the ONNX input position of operand i (absent optional inputs are
    skipped); `output_indices` likewise for results (absent when they are 0..n-1).
    `outer_names` (If / Loop / Scan): the names the node's subgraphs read from the enclosing
    graph; the last len(outer_names) operands are those values, in that order (they are not
    ONNX inputs of the node; the exporter renames the subgraphs' references to them).
    """

    name = "graph.onnx"
    ALLOWS_DYNAMIC_SHAPES: ClassVar[bool] = True
    inputs = var_operand_def(TensorType)
    op_type = prop_def(StringAttr)
    domain = prop_def(StringAttr)
    opset = prop_def(IntegerAttr)
    attrs = prop_def(DictionaryAttr)
    input_indices = opt_prop_def(DenseArrayBase)
    output_indices = opt_prop_def(DenseArrayBase)
    outer_names = opt_prop_def(ArrayAttr)
    outputs = var_result_def(TensorType)

    def __init__(
        self,
        inputs: Sequence[SSAValue | Operation],
        result_types: Sequence[Attribute],
        *,
        op_type: str,
        domain: str = "",
        opset: int,
        attrs: Mapping[str, Attribute] | DictionaryAttr | None = None,
        input_indices: Sequence[int] | None = None,
        output_indices: Sequence[int] | None = None,
        outer_names: Sequence[str] = (),
    ):
        if not isinstance(attrs, DictionaryAttr):
            attrs = DictionaryAttr(dict(attrs or {}))
        node_inputs = len(inputs) - len(outer_names)
        if input_indices is not None and list(input_indices) == list(range(node_inputs)):
            input_indices = None
        if output_indices is not None and list(output_indices) == list(range(len(result_types))):
            output_indices = None
        props = {
            "op_type": StringAttr(op_type),
            "domain": StringAttr(domain),
            "opset": i64_attr(opset),
            "attrs": attrs,
            "input_indices": None if input_indices is None else i64_array(input_indices),
            "output_indices": None if output_indices is None else i64_array(output_indices),
            "outer_names": ArrayAttr([StringAttr(n) for n in outer_names]) if outer_names
            else None,
        }
        self._build([list(inputs)], props, list(result_types))

    def outer_values(self) -> list[tuple[str, SSAValue]]:
        """(name in the subgraphs, value) of every outer-scope operand."""
        if self.outer_names is None:
            return []
        names = [n.data for n in self.outer_names.data]  # type: ignore[attr-defined]
        return list(zip(names, self.inputs[len(self.inputs) - len(names):], strict=True))

    def node_inputs(self) -> Sequence[SSAValue]:
        """The operands that are ONNX inputs of the node (without the outer-scope values)."""
        return self.inputs[:len(self.inputs) - len(self.outer_values())]

    def onnx_input_positions(self) -> tuple[int, ...]:
        """ONNX input position of each operand of `node_inputs()`."""
        if self.input_indices is None:
            return tuple(range(len(self.node_inputs())))
        return ints(self.input_indices)

    def onnx_output_positions(self) -> tuple[int, ...]:
        """ONNX output position of each result."""
        if self.output_indices is None:
            return tuple(range(len(self.outputs)))
        return ints(self.output_indices)

    def verify_(self) -> None:
        super().verify_()
        outer = self.outer_names
        if outer is not None and (len(outer.data) > len(self.inputs) or not all(
                isinstance(n, StringAttr) for n in outer.data)):
            raise VerifyException(f"expected at most {len(self.inputs)} outer_names strings, "
                                  f"got {outer}")
        node_inputs = len(self.inputs) - (len(outer.data) if outer is not None else 0)
        for name, n in (("input_indices", node_inputs), ("output_indices", len(self.outputs))):
            attr = self.properties.get(name)
            if attr is None:
                continue
            positions = ints(attr)
            if len(positions) != n:
                raise VerifyException(f"expected {n} values in {name}, got {len(positions)}")
            if list(positions) != sorted(set(positions)) or min(positions, default=0) < 0:
                raise VerifyException(f"expected increasing non-negative {name}, got {list(positions)}")

    def _print_attrs(self, printer: Printer, attrs: Mapping[str, Attribute]) -> None:
        if not attrs:
            return
        printer.print_string(" {")
        printer.print_list(attrs.items(), lambda kv: _print_entry(printer, kv[0], kv[1]))
        printer.print_string("}")

    @classmethod
    def parse(cls, parser: Parser) -> OnnxOp:
        unresolved = []
        first = parser.parse_optional_unresolved_operand()
        if first is not None:
            unresolved.append(first)
            while parser.parse_optional_punctuation(",") is not None:
                unresolved.append(parser.parse_unresolved_operand())
        attrs: dict[str, Attribute] = {}
        if parser.parse_optional_punctuation("{") is not None:
            attrs = _parse_entries(parser)
        parser.parse_punctuation(":")
        pos = parser.pos
        ftype = parser.parse_function_type()
        operands = parser.resolve_operands(unresolved, ftype.inputs.data, pos)
        prop_names = cls.get_irdl_definition().properties
        props = {k: attrs.pop(k) for k in list(attrs) if k in prop_names}
        return cls.create(
            operands=operands,
            result_types=ftype.outputs.data,
            properties=props,
            attributes=attrs,
        )


def _parse_entries(parser: Parser) -> dict[str, Attribute]:
    """Parse `key = value, ...}` (the opening brace already consumed)."""
    entries: dict[str, Attribute] = {}
    if parser.parse_optional_punctuation("}") is not None:
        return entries
    while True:
        key = parser.parse_optional_identifier()
        if key is None:
            key = parser.parse_str_literal()
        parser.parse_punctuation("=")
        entries[key] = _parse_value(parser)
        if parser.parse_optional_punctuation(",") is None:
            break
    parser.parse_punctuation("}")
    return entries


def _parse_value(parser: Parser) -> Attribute:
    """Inverse of `_print_value`."""
    if parser.parse_optional_punctuation("{") is not None:
        return DictionaryAttr(_parse_entries(parser))
    if parser.parse_optional_punctuation("[") is not None:
        values: list[Attribute] = []
        if parser.parse_optional_punctuation("]") is None:
            values.append(_parse_value(parser))
            while parser.parse_optional_punctuation(",") is not None:
                values.append(_parse_value(parser))
            parser.parse_punctuation("]")
        return ArrayAttr(values)
    if parser.parse_optional_keyword("dense_resource") is not None:
        return _parse_elided_tail(parser)
    return parser.parse_attribute()


def _print_entry(printer: Printer, key: str, value: Attribute) -> None:
    printer.print_identifier_or_string_literal(key)
    printer.print_string(" = ")
    _print_value(printer, value)


def _print_value(printer: Printer, value: Attribute) -> None:
    """print_attribute, except that dense tensors (also nested) print like graph.constant."""
    if isinstance(value, DenseIntOrFPElementsAttr):
        print_dense(printer, value)
    elif isinstance(value, DictionaryAttr):
        printer.print_string("{")
        printer.print_list(value.data.items(), lambda kv: _print_entry(printer, kv[0], kv[1]))
        printer.print_string("}")
    elif isinstance(value, ArrayAttr):
        printer.print_string("[")
        printer.print_list(value.data, lambda v: _print_value(printer, v))
        printer.print_string("]")
    else:
        printer.print_attribute(value)


Graph = Dialect(
    "graph",
    [
        ConstantOp,
        Conv2DOp,
        GemmOp,
        MatMulOp,
        DenseOp,
        BiasAddOp,
        AddOp,
        SubOp,
        MulOp,
        DivOp,
        ReluOp,
        LeakyReluOp,
        PReluOp,
        ClipOp,
        SigmoidOp,
        HardSigmoidOp,
        HardSwishOp,
        TanhOp,
        SoftmaxOp,
        MaxPool2DOp,
        AvgPool2DOp,
        GlobalAvgPool2DOp,
        GlobalMaxPool2DOp,
        BatchNormOp,
        PadOp,
        ConcatOp,
        SplitOp,
        ReshapeOp,
        FlattenOp,
        SqueezeOp,
        UnsqueezeOp,
        TransposeOp,
        LayoutTransformOp,
        ResizeOp,
        IdentityOp,
        DropoutOp,
        OnnxOp,
    ],
    [],
)
