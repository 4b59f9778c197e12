"""ONNX -> graph dialect importer.

`import_onnx(model, *, input_shapes=None, batch_size=1) -> ModuleOp` reads an `.onnx` file,
an ONNX text-format file (`onnx.parser`), raw bytes or an `onnx.ModelProto` and returns a
`builtin.module` holding `func.func @main` in the graph dialect (see docs/architecture.md).

Invariants of the result:

- every value has a static `TensorType` (except outputs of data-dependent generic ops such
  as NonMaxSuppression, of ops whose shape-setting inputs (`SHAPE_INPUTS`) are not
  import-time constants, and what is computed from them, whose unknown sizes stay dynamic
  `?`; they are all `graph.onnx`): symbolic / unknown input dimensions are fixed
  (`input_shapes[name]` first, else `batch_size` for the first dimension), result types come
  from the graph ops' own inference; for generic ops from ONNX shape inference
  (`data_prop=True`) on the whole model, then on the node alone (with the imported input
  types and the constants folded so far, which whole-model inference cannot see), and only
  when a rank or a size that does not depend on data is still unknown (custom domains, ...)
  from onnxruntime run on the model prefix, once per node signature (op, attributes, input
  types, small constant input values; `ort_probe_count()` counts these probes);
- initializers (also those listed among the graph inputs) become `graph.constant`s holding
  the tensors' raw bytes (no per-element Python work); `Constant` nodes too;
- each ONNX op type has one importer function in `IMPORTERS`; a function returns None when
  the node uses a form we do not model, and every node without a modelling becomes one
  `graph.onnx` op, so every valid model imports;
- nodes whose inputs are all small constants are evaluated at import time (shape
  arithmetic such as Shape -> Gather -> Concat -> Reshape), and ops left without users are
  removed;
- every op made from a node carries `onnx_node = "<node name>"` (`<op_type>_<index>` for
  unnamed nodes); constants made from initializers carry the initializer's name there.

Errors (unreadable / truncated / non-ONNX file, unsupported opset, symbolic dimension that
cannot be fixed, inconsistent shapes, missing external data) raise `ModelImportError`
naming the file, the node or the value.
"""

from __future__ import annotations

import heapq
from graphlib import CycleError, TopologicalSorter

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.defs
import onnx.external_data_helper
import onnx.numpy_helper
import onnx.parser
import onnx.shape_inference
from onnx import AttributeProto, NodeProto, TensorProto
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    BytesAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from mrvl import mlip_isa
from mrvl.dialects import graph
from mrvl.errors import ModelImportError

MIN_OPSET = 7
"""Oldest default-domain opset we import (older ones use pre-broadcasting semantics)."""

ORT_MAX_IR_VERSION = 10
"""The shape probe on onnxruntime declares at most this IR version (newer onnx writes IR
versions the pinned onnxruntime refuses, for models that need nothing newer)."""

MAX_TENSOR_BYTES = mlip_isa.MAX_DRAM_BYTES + 1
"""The largest tensor a model may hold: the accelerator's DRAM address space (4 GiB)."""
FOLD_LIMIT = 4096
"""Nodes whose constant inputs hold at most this many elements in all are folded."""


DATA_DEPENDENT_OPS = {"NonMaxSuppression", "NonZero", "Unique", "Compress"}
"""Ops whose output sizes may depend on input values: unknown dims stay dynamic (`?`)."""

SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Range": (0, 1, 2), "ConstantOfShape": (0,),
    "TopK": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Resize": (2, 3), "Upsample": (1,),
    "OneHot": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "CenterCropPad": (1,),
    "MaxUnpool": (2,), "Col2Im": (1, 2), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceProd": (1,), "ReduceL1": (1,),
    "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
    "DFT": (1, 2), "STFT": (1, 3), "HannWindow": (0,), "HammingWindow": (0,),
    "BlackmanWindow": (0,), "MelWeightMatrix": (0, 1),
}
"""Default-domain ops -> the inputs whose values (not only shapes) set the output shape.  When
such an input is not an import-time constant, the sizes ONNX shape inference leaves unknown
depend on the data and stay dynamic (`?`)."""

_RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli"}


def onnx_element(elem_type: int) -> Attribute | None:
    """The builtin element type of an ONNX TensorProto data type (through its numpy dtype,
    `onnx.helper.tensor_dtype_to_np_dtype`), None when mrvl has none."""
    if elem_type == TensorProto.BFLOAT16:
        return BFloat16Type()  # numpy has no bfloat16 (the graph dialect keeps its bits)
    try:
        return graph.element_type_from_numpy(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return None


def element_type_of_onnx(elem_type: int, what: str) -> Attribute:
    """The builtin element type of an ONNX TensorProto data type."""
    element = onnx_element(elem_type)
    if element is None:
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
        raise ModelImportError(f"{what}: element type {name} is not supported")
    return element


def onnx_elem_type(element: Attribute) -> int:
    """The ONNX TensorProto data type of a builtin element type (`onnx.helper.
    np_dtype_to_tensor_dtype` of its numpy dtype); ValueError when it has none."""
    if isinstance(element, BFloat16Type):
        return TensorProto.BFLOAT16
    return onnx.helper.np_dtype_to_tensor_dtype(graph.numpy_dtype(element))


def _has_onnx_type(element: Attribute) -> bool:
    try:
        onnx_elem_type(element)
    except (ValueError, KeyError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------------------
# Tensors and attributes
# --------------------------------------------------------------------------------------


def tensor_to_dense(tensor: TensorProto, what: str) -> DenseIntOrFPElementsAttr:
    """The raw bytes of an ONNX tensor as a dense attribute (raw_data taken as is)."""
    element = element_type_of_onnx(tensor.data_type, what)
    ty = TensorType(element, list(tensor.dims))
    if tensor.data_location == TensorProto.EXTERNAL:
        raise ModelImportError(f"{what}: external data was not loaded")
    if tensor.HasField("raw_data"):
        data = tensor.raw_data
    else:
        arr = onnx.numpy_helper.to_array(tensor)
        if tensor.data_type == TensorProto.BFLOAT16:
            arr = arr.view(np.uint16)
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    expected = math.prod(tensor.dims) * graph.numpy_dtype(element).itemsize
    if len(data) != expected:
        raise ModelImportError(
            f"{what}: expected {expected} bytes of data for {ty}, got {len(data)}"
        )
    return DenseIntOrFPElementsAttr(ty, BytesAttr(data))


def dense_to_tensor(name: str, value: DenseIntOrFPElementsAttr) -> TensorProto:
    """Inverse of `tensor_to_dense` (raw_data)."""
    tensor = TensorProto()
    if name:
        tensor.name = name
    tensor.data_type = onnx_elem_type(value.get_element_type())
    tensor.dims.extend(value.get_shape())
    tensor.raw_data = value.data.data
    return tensor


def _hex_proto(kind: str, proto: Any) -> DictionaryAttr:
    return DictionaryAttr({f"onnx.{kind}": StringAttr(proto.SerializeToString().hex())})


def _tensor_attr(t: TensorProto, what: str) -> Attribute:
    if onnx_element(t.data_type) is not None:
        return tensor_to_dense(t, what)
    return _hex_proto("TensorProto", t)


def onnx_attribute_to_ir(attr: AttributeProto, what: str = "attribute") -> Attribute:
    """Faithful IR form of an ONNX attribute (encoding documented on `graph.OnnxOp`)."""
    kind = attr.type
    if kind == AttributeProto.INT:
        return IntegerAttr(attr.i, i64)
    if kind == AttributeProto.FLOAT:
        return FloatAttr(attr.f, f32)
    if kind == AttributeProto.STRING:
        try:
            return StringAttr(attr.s.decode("utf-8"))
        except UnicodeDecodeError:
            return DictionaryAttr({"onnx.bytes": StringAttr(attr.s.hex())})
    if kind == AttributeProto.INTS:
        return graph.i64_array(list(attr.ints))
    if kind == AttributeProto.FLOATS:
        return graph.f32_array(list(attr.floats))
    if kind == AttributeProto.STRINGS:
        try:
            return ArrayAttr([StringAttr(s.decode("utf-8")) for s in attr.strings])
        except UnicodeDecodeError:
            return DictionaryAttr({"onnx.AttributeProto": StringAttr(attr.SerializeToString().hex())})
    if kind == AttributeProto.TENSOR:
        return _tensor_attr(attr.t, what)
    if kind == AttributeProto.TENSORS:
        return ArrayAttr([_tensor_attr(t, what) for t in attr.tensors])
    if kind == AttributeProto.GRAPH:
        return _hex_proto("GraphProto", attr.g)
    if kind == AttributeProto.GRAPHS:
        return ArrayAttr([_hex_proto("GraphProto", g) for g in attr.graphs])
    if kind == AttributeProto.SPARSE_TENSOR:
        return _hex_proto("SparseTensorProto", attr.sparse_tensor)
    if kind == AttributeProto.TYPE_PROTO:
        return _hex_proto("TypeProto", attr.tp)
    # Anything else (SPARSE_TENSORS, TYPE_PROTOS, ...): keep the whole attribute.
    return DictionaryAttr({"onnx.AttributeProto": StringAttr(attr.SerializeToString().hex())})


def ir_to_onnx_attribute(name: str, value: Attribute) -> AttributeProto:
    """Inverse of `onnx_attribute_to_ir` (for the ONNX exporter)."""
    if isinstance(value, IntegerAttr):
        return onnx.helper.make_attribute(name, int(value.value.data))
    if isinstance(value, FloatAttr):
        return onnx.helper.make_attribute(name, float(value.value.data))
    if isinstance(value, StringAttr):
        return onnx.helper.make_attribute(name, value.data.encode("utf-8"))
    if isinstance(value, DenseArrayBase):
        if value.elt_type == i64:
            return onnx.helper.make_attribute(name, graph.ints(value), attr_type=AttributeProto.INTS)
        return onnx.helper.make_attribute(name, graph.floats(value), attr_type=AttributeProto.FLOATS)
    if isinstance(value, DenseIntOrFPElementsAttr):
        return onnx.helper.make_attribute(name, dense_to_tensor("", value))
    if isinstance(value, DictionaryAttr) and len(value.data) == 1:
        ((key, payload),) = value.data.items()
        assert isinstance(payload, StringAttr)
        raw = bytes.fromhex(payload.data)
        if key == "onnx.bytes":
            return onnx.helper.make_attribute(name, raw, attr_type=AttributeProto.STRING)
        if key == "onnx.AttributeProto":
            attr = AttributeProto.FromString(raw)
            attr.name = name
            return attr
        proto_type = {"onnx.TensorProto": onnx.TensorProto, "onnx.GraphProto": onnx.GraphProto,
                      "onnx.SparseTensorProto": onnx.SparseTensorProto,
                      "onnx.TypeProto": onnx.TypeProto}[key]
        return onnx.helper.make_attribute(name, proto_type.FromString(raw))
    if isinstance(value, ArrayAttr):
        items = list(value.data)
        if all(isinstance(v, StringAttr) for v in items):
            return onnx.helper.make_attribute(
                name, [v.data.encode("utf-8") for v in items], attr_type=AttributeProto.STRINGS
            )
        protos = [ir_to_onnx_attribute(name, v) for v in items]
        if protos and protos[0].type == AttributeProto.GRAPH:
            return onnx.helper.make_attribute(name, [p.g for p in protos], attr_type=AttributeProto.GRAPHS)
        return onnx.helper.make_attribute(name, [p.t for p in protos], attr_type=AttributeProto.TENSORS)
    raise ValueError(f"attribute {name}: no ONNX form for {value}")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_model(model: str | Path | bytes | onnx.ModelProto, *, name: str | None = None,
               base_dir: str | None = None) -> tuple[onnx.ModelProto, str]:
    """Read a model (binary or text format), load its external data. Returns (model, label)."""
    if isinstance(model, onnx.ModelProto):
        label = name or (model.graph.name or "<model>")
        proto = model
    else:
        if isinstance(model, bytes):
            data, label = model, name or "<bytes>"
        else:
            path = Path(model)
            label = name or str(path)
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ModelImportError(f"{label}: cannot read the model file: {error.strerror}") from None
            if base_dir is None:
                base_dir = str(path.parent)
        proto = _parse_model_bytes(data, label)
        del data
    _check_model(proto, label)
    if base_dir is not None and _has_external_data(proto):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, base_dir)
        except Exception as error:  # OSError, onnx.checker.ValidationError, ...
            raise ModelImportError(f"{label}: cannot load external data: {error}") from None
    elif _has_external_data(proto):
        raise ModelImportError(f"{label}: the model has external data but no directory to load it from")
    _onnx_checker(proto, label)
    _check_window_attributes(proto.graph, label)
    return proto, label


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096].lstrip()
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return head.startswith(b"<") or head[:1].isalpha()


def _parse_model_bytes(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise ModelImportError(f"{label}: empty file, not an ONNX model")
    text_error = None
    if _looks_like_text(data):
        try:
            return onnx.parser.parse_model(data.decode("utf-8"))
        except Exception as error:  # onnx.parser.ParseError and friends
            message = str(error).strip()
            text_error = message.splitlines()[0] if message else type(error).__name__
    try:
        proto = onnx.ModelProto.FromString(data)
    except Exception as error:  # google.protobuf.message.DecodeError
        if text_error is not None:
            raise ModelImportError(
                f"{label}: not an ONNX model (ONNX text format: {text_error})"
            ) from None
        raise ModelImportError(
            f"{label}: not an ONNX model or truncated ({error})"
        ) from None
    if text_error is not None and not proto.HasField("graph"):
        raise ModelImportError(f"{label}: not an ONNX model (ONNX text format: {text_error})")
    return proto


def _check_model(model: onnx.ModelProto, label: str) -> None:
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelImportError(f"{label}: not an ONNX model (no graph or IR version)")
    if len(model.opset_import) == 0 and model.ir_version >= 3:
        raise ModelImportError(f"{label}: the model imports no opset")
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    uses_default_domain = any(n.domain in ("", "ai.onnx") for n in model.graph.node)
    if opset == 0 and not uses_default_domain:
        return  # only other domains (ai.onnx.ml, training, custom): nothing to check here
    if opset < MIN_OPSET or opset > newest:
        raise ModelImportError(
            f"{label}: unsupported opset {opset} of the default ONNX domain "
            f"(supported: {MIN_OPSET} to {newest})"
        )


DEPRECATED_ACCEPTED = {"GroupNormalization": 18}
"""Default-domain ops whose schema at that opset onnx deprecated after models were written
with it (GroupNormalization-18's per-group scale, replaced in 21); onnxruntime still runs
them, so the checker is shown them in a private domain (their arity and attributes are
checked by the import instead)."""

CHECKER_DOMAIN = "mrvl.deprecated"


def _without_deprecated_schemas(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or a copy whose `DEPRECATED_ACCEPTED` nodes are in `CHECKER_DOMAIN`."""
    opset = default_opset(model)
    if not any(n.domain in ("", "ai.onnx") and DEPRECATED_ACCEPTED.get(n.op_type) == opset
               for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.domain in ("", "ai.onnx") and DEPRECATED_ACCEPTED.get(node.op_type) == opset:
            node.domain = CHECKER_DOMAIN
    copy.opset_import.append(onnx.helper.make_opsetid(CHECKER_DOMAIN, 1))
    return copy


def _onnx_checker(model: onnx.ModelProto, label: str) -> None:
    """ONNX's own checker (node arities, attributes, SSA form, IR version), without its
    shape inference, on the model with its external data loaded; a model beyond protobuf's
    2 GB is left to the import's own checks. Nodes out of order are accepted (as by
    onnxruntime): the checker sees them sorted, and a value no node defines is named by
    the sort."""
    if model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        return
    g = model.graph
    defined = {v.name for v in g.input} | {t.name for t in g.initializer}
    defined |= {t.values.name for t in g.sparse_initializer}
    order = _topological_order(g.node, defined, label)
    if [index for index, _ in order] != list(range(len(g.node))):
        sorted_model = onnx.ModelProto()
        sorted_model.CopyFrom(model)
        del sorted_model.graph.node[:]
        sorted_model.graph.node.extend(node for _, node in order)
        model = sorted_model
    # graph inputs / outputs of unknown rank are common and handled by the import (the
    # checker wants a shape): give them an empty one while the checker runs
    shapeless = [v.type.tensor_type for v in (*model.graph.input, *model.graph.output)
                 if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape")]
    for tensor_type in shapeless:
        tensor_type.shape.SetInParent()
    try:
        onnx.checker.check_model(_without_deprecated_schemas(model))
    except onnx.checker.ValidationError as error:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        if len(lines) > 1 and lines[0].startswith("Field") is False and "==>" in lines[-1]:
            reason = f"{reason} ({lines[-1]})"
        raise ModelImportError(f"{label}: invalid ONNX model: {reason}") from None
    finally:
        for tensor_type in shapeless:
            tensor_type.ClearField("shape")


_WINDOW_OPS = ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool",
               "LpPool", "MaxUnpool")


def _check_window_attributes(g: onnx.GraphProto, label: str) -> None:
    """Window ops need pads >= 0 and kernel_shape, strides, dilations >= 1 (the ONNX spec;
    onnxruntime accepts some negative pads, the accelerator must not)."""
    for index, node in enumerate(g.node):
        if node.op_type not in _WINDOW_OPS or node.domain not in ("", "ai.onnx"):
            continue
        for attr in node.attribute:
            lowest = 0 if attr.name in ("pads", "output_padding") else 1
            if attr.name not in ("pads", "output_padding", "kernel_shape", "strides",
                                 "dilations"):
                continue
            bad = [v for v in attr.ints if v < lowest]
            if bad:
                name = node.name or f"{node.op_type}_{index}"
                raise ModelImportError(
                    f"{label}: node '{name}' ({node.op_type}): {attr.name} must be >= "
                    f"{lowest}, got {list(attr.ints)}")


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1 if model.ir_version < 3 else 0


# --------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------


_GIVE_SHAPE = ("give its shape with --input-shape {0}=D0,D1,... (input_shapes={{'{0}': [...]}} "
               "in the Python API), or a sample with --inputs / --calibration")


def _fixed_inputs(model: onnx.ModelProto, label: str, input_shapes: dict[str, list[int]],
                  batch_size: int) -> list[tuple[str, TensorType]]:
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in init_names]
    known = {v.name for v in graph_inputs}
    for name in input_shapes:
        if name not in known:
            raise ModelImportError(
                f"{label}: input_shapes names '{name}', which is not a model input "
                f"(inputs: {', '.join(sorted(known)) or 'none'})"
            )
    result = []
    for value in graph_inputs:
        what = f"{label}: input '{value.name}'"
        if not value.type.HasField("tensor_type"):
            raise ModelImportError(f"{what}: only tensor inputs are supported")
        tt = value.type.tensor_type
        element = element_type_of_onnx(tt.elem_type, what)
        if value.name in input_shapes:
            dims = [int(d) for d in input_shapes[value.name]]
            if tt.HasField("shape") and len(tt.shape.dim) != len(dims):
                raise ModelImportError(
                    f"{what}: input_shapes gives rank {len(dims)}, the model says rank "
                    f"{len(tt.shape.dim)}"
                )
            for i, (d, md) in enumerate(zip(dims, tt.shape.dim)):
                if md.HasField("dim_value") and md.dim_value != d:
                    raise ModelImportError(
                        f"{what}: input_shapes gives {d} for dimension {i}, the model fixes "
                        f"{md.dim_value}"
                    )
        else:
            if not tt.HasField("shape"):
                raise ModelImportError(f"{what}: unknown rank; {_GIVE_SHAPE.format(value.name)}")
            dims = []
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value >= 0:
                    dims.append(int(d.dim_value))
                elif i == 0:
                    dims.append(int(batch_size))
                else:
                    sym = d.dim_param or "?"
                    raise ModelImportError(
                        f"{what}: dimension {i} is symbolic ('{sym}'); "
                        f"{_GIVE_SHAPE.format(value.name)}"
                    )
        if any(d < 0 for d in dims):
            raise ModelImportError(f"{what}: expected non-negative dimensions, got {dims}")
        result.append((value.name, TensorType(element, dims)))
    return result


def _type_from_value_info(vi: onnx.ValueInfoProto) -> TensorType | None:
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    element = onnx_element(tt.elem_type)
    if element is None or not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 0 else DYNAMIC_INDEX)
    return TensorType(element, dims)


def is_static(t: Attribute) -> bool:
    return isinstance(t, TensorType) and all(d >= 0 for d in t.get_shape())


def _light_model(model: onnx.ModelProto, inputs: list[tuple[str, TensorType]]) -> onnx.ModelProto:
    """The model with fixed input shapes and big initializers turned into typed inputs
    (so that shape inference / onnxruntime do not copy the weights)."""
    g = model.graph
    new_inputs = [
        onnx.helper.make_tensor_value_info(name, onnx_elem_type(t.element_type), list(t.get_shape()))
        for name, t in inputs
    ]
    small = []
    for t in g.initializer:
        if math.prod(t.dims) <= FOLD_LIMIT:
            small.append(t)
        else:
            new_inputs.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    outputs = list(g.output)
    light_graph = onnx.helper.make_graph(
        list(g.node), g.name or "main", new_inputs, outputs, initializer=small,
        value_info=list(g.value_info),
    )
    light = onnx.helper.make_model(light_graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    light.functions.extend(model.functions)
    return light


def _infer_shapes(light: onnx.ModelProto) -> tuple[dict[str, TensorType], str | None]:
    """Value types from ONNX shape inference; the strict-mode error message if any."""
    error_message = None
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True, data_prop=True)
    except Exception as error:
        error_message = str(error).strip()
        try:
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        except Exception:
            inferred = light
    types: dict[str, TensorType] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        t = _type_from_value_info(vi)
        if t is not None:
            types[vi.name] = t
    return types, error_message


_ort_probes = 0


def ort_probe_count() -> int:
    """Number of onnxruntime shape probes (sessions) the importer ran in this process: the
    last resort when ONNX shape inference cannot type a generic op."""
    return _ort_probes


def _known_dims(t: TensorType) -> int:
    return sum(1 for d in t.get_shape() if d >= 0)


def _better_type(new: TensorType, old: TensorType | None, data_dependent: bool) -> bool:
    """Whether `new` (local inference) should replace `old`: it is static, or (for a value
    whose sizes may depend on data) it knows the rank and more sizes than `old`."""
    if old is not None:
        if old.element_type != new.element_type or len(old.get_shape()) != len(new.get_shape()):
            return False  # disagreement: keep the whole-model answer, probe if still unknown
        if any(a >= 0 and b >= 0 and a != b for a, b in zip(old.get_shape(), new.get_shape())):
            return False
        if _known_dims(new) <= _known_dims(old):
            return False
    return is_static(new) or data_dependent


def _probe_feeds(probe: onnx.ModelProto, input_names: set[str], fill: str,
                 weights: Callable[[str], np.ndarray | None]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in probe.graph.input:
        if vi.name not in input_names:
            value = weights(vi.name)
            if value is not None:
                feeds[vi.name] = value
                continue
        t = _type_from_value_info(vi)
        if t is None or not is_static(t):
            continue
        dtype = graph.numpy_dtype(t.element_type)
        shape = t.get_shape()
        if fill == "zeros" or vi.name not in input_names:
            feeds[vi.name] = np.zeros(shape, dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[vi.name] = (rng.standard_normal(shape) * (1 if fill == "ones" else 3)).astype(dtype)
        else:
            feeds[vi.name] = np.full(shape, 1 if fill == "ones" else 2, dtype)
    return feeds


def _ort_types(light: onnx.ModelProto, inputs: list[tuple[str, TensorType]],
               names: Sequence[str], label: str,
               weights: Callable[[str], np.ndarray | None]) -> dict[str, TensorType]:
    """Types of `names` from running the model prefix on onnxruntime three times: with
    zero inputs, then normal floats with integer ones, then wider normal floats with
    integer twos.  A value whose shape differs between the runs (or that not every run
    could compute) depends on the input values: all its sizes become dynamic."""
    import onnxruntime

    global _ort_probes
    _ort_probes += 1
    probe = onnx.ModelProto()
    probe.CopyFrom(light)
    probe.ir_version = min(probe.ir_version, ORT_MAX_IR_VERSION)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    input_names = {name for name, _ in inputs}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    try:
        session = onnxruntime.InferenceSession(
            probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        raise ModelImportError(
            f"{label}: cannot determine the shapes of {', '.join(names)} "
            f"(ONNX shape inference left them unknown, onnxruntime failed: {str(error).strip()[:300]})"
        ) from None
    needed = {i.name for i in session.get_inputs()}
    runs = []
    errors = []
    for fill in ("zeros", "ones", "twos"):
        feeds = _probe_feeds(probe, input_names, fill, weights)
        try:
            runs.append(session.run(list(names), {k: v for k, v in feeds.items() if k in needed}))
        except Exception as error:
            errors.append(str(error).strip()[:300])
    if not runs:
        raise ModelImportError(
            f"{label}: cannot determine the shapes of {', '.join(names)} "
            f"(ONNX shape inference left them unknown, onnxruntime failed: {errors[0]})"
        )
    out = {}
    for i, name in enumerate(names):
        arrays = [run[i] for run in runs]
        if not all(isinstance(a, np.ndarray) for a in arrays):
            raise ModelImportError(f"{label}: value '{name}' is not a tensor")
        shape = list(arrays[0].shape)
        if any(a.ndim != len(shape) for a in arrays):
            raise ModelImportError(f"{label}: the rank of '{name}' depends on the input values")
        if len(arrays) < 3 or any(list(a.shape) != shape for a in arrays):
            shape = [DYNAMIC_INDEX] * len(shape)
        try:
            element = graph.element_type_from_numpy(arrays[0].dtype)
        except ValueError:
            raise ModelImportError(
                f"{label}: value '{name}' has element type {arrays[0].dtype}, which is not supported"
            ) from None
        out[name] = TensorType(element, shape)
    return out


# --------------------------------------------------------------------------------------
# Node importers
# --------------------------------------------------------------------------------------


@dataclass
class NodeContext:
    """What an importer function sees of one ONNX node."""

    importer: _Importer
    node: NodeProto
    name: str
    opset: int
    attrs: dict[str, Any]
    inputs: list[SSAValue | None]
    out_types: list[TensorType | None]
    emitted: list[Operation] = field(default_factory=list)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> SSAValue | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def const(self, i: int) -> np.ndarray | None:
        """The value of input i if it is a constant, else None."""
        value = self.input(i)
        if value is None or not isinstance(value.owner, graph.ConstantOp):
            return None
        return value.owner.to_numpy()

    def shape(self, i: int) -> tuple[int, ...]:
        value = self.input(i)
        assert value is not None and isinstance(value.type, TensorType)
        return tuple(value.type.get_shape())

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def n_outputs_used(self) -> int:
        """Number of outputs with a (non-empty) name."""
        return sum(1 for o in self.node.output if o)

    def emit(self, op: Operation) -> Operation:
        self.emitted.append(op)
        return op


Importer = Callable[[NodeContext], Sequence[SSAValue] | None]
IMPORTERS: dict[str, Importer] = {}


def importer(*op_types: str) -> Callable[[Importer], Importer]:
    def register(fn: Importer) -> Importer:
        for op_type in op_types:
            IMPORTERS[op_type] = fn
        return fn

    return register


def _results(op: Operation) -> list[SSAValue]:
    return list(op.results)


def _resolve_auto_pad(ctx: NodeContext, spatial: Sequence[int], kernel: Sequence[int],
                      strides: Sequence[int], dilations: Sequence[int]) -> list[int] | None:
    """Explicit ONNX pads (begins then ends) for the node's auto_pad/pads attributes."""
    auto_pad = ctx.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    n = len(spatial)
    if auto_pad == "NOTSET":
        pads = list(ctx.attr("pads", [0] * (2 * n)))
        return pads if len(pads) == 2 * n else None
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return None
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return begins + ends


@importer("Conv")
def import_conv(ctx: NodeContext):
    if ctx.rank(0) != 4 or ctx.input(1) is None or ctx.rank(1) != 4:
        return None
    kernel = list(ctx.attr("kernel_shape", ctx.shape(1)[2:]))
    if kernel != list(ctx.shape(1)[2:]):
        return None
    strides = list(ctx.attr("strides", [1, 1]))
    dilations = list(ctx.attr("dilations", [1, 1]))
    pads = _resolve_auto_pad(ctx, ctx.shape(0)[2:], kernel, strides, dilations)
    if pads is None:
        return None
    op = graph.Conv2DOp(ctx.input(0), ctx.input(1), ctx.input(2), strides=strides, pads=pads,
                        dilations=dilations, groups=ctx.attr("group", 1))
    return _results(ctx.emit(op))


@importer("Gemm")
def import_gemm(ctx: NodeContext):
    op = graph.GemmOp(ctx.input(0), ctx.input(1), ctx.input(2), alpha=ctx.attr("alpha", 1.0),
                      beta=ctx.attr("beta", 1.0), trans_a=ctx.attr("transA", 0),
                      trans_b=ctx.attr("transB", 0))
    return _results(ctx.emit(op))


@importer("MatMul")
def import_matmul(ctx: NodeContext):
    return _results(ctx.emit(graph.MatMulOp(ctx.input(0), ctx.input(1))))


_BINARY = {"Add": graph.AddOp, "Sub": graph.SubOp, "Mul": graph.MulOp, "Div": graph.DivOp}


@importer(*_BINARY)
def import_binary(ctx: NodeContext):
    return _results(ctx.emit(_BINARY[ctx.node.op_type](ctx.input(0), ctx.input(1))))


_UNARY = {"Relu": graph.ReluOp, "Sigmoid": graph.SigmoidOp, "HardSwish": graph.HardSwishOp,
          "Tanh": graph.TanhOp, "Identity": graph.IdentityOp}


@importer(*_UNARY)
def import_unary(ctx: NodeContext):
    x = ctx.input(0)
    if x is None or not isinstance(x.type, TensorType):
        return None
    return _results(ctx.emit(_UNARY[ctx.node.op_type](x)))


@importer("LeakyRelu")
def import_leaky_relu(ctx: NodeContext):
    return _results(ctx.emit(graph.LeakyReluOp(ctx.input(0), alpha=ctx.attr("alpha", 0.01))))


@importer("PRelu")
def import_prelu(ctx: NodeContext):
    x_shape, s_shape = ctx.shape(0), ctx.shape(1)
    if len(s_shape) > len(x_shape) or graph.broadcast_shapes(x_shape, s_shape) != x_shape:
        return None
    return _results(ctx.emit(graph.PReluOp(ctx.input(0), ctx.input(1))))


@importer("HardSigmoid")
def import_hard_sigmoid(ctx: NodeContext):
    op = graph.HardSigmoidOp(ctx.input(0), alpha=ctx.attr("alpha", 0.2), beta=ctx.attr("beta", 0.5))
    return _results(ctx.emit(op))


def _scalar(ctx: NodeContext, i: int) -> float | None | bool:
    """Float value of optional scalar input i: None if absent, False if not constant."""
    if ctx.input(i) is None:
        return None
    value = ctx.const(i)
    if value is None or value.size != 1:
        return False
    return float(value.reshape(()))


@importer("Clip")
def import_clip(ctx: NodeContext):
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        lo, hi = _scalar(ctx, 1), _scalar(ctx, 2)
        if lo is False or hi is False:
            return None
    return _results(ctx.emit(graph.ClipOp(ctx.input(0), min=lo, max=hi)))


@importer("Softmax")
def import_softmax(ctx: NodeContext):
    rank = ctx.rank(0)
    axis = ctx.attr("axis", -1 if ctx.opset >= 13 else 1)
    axis = axis + rank if axis < 0 else axis
    if ctx.opset < 13 and axis != rank - 1:
        return None  # coerced-2D semantics over several axes
    return _results(ctx.emit(graph.SoftmaxOp(ctx.input(0), axis=axis)))


def _pool_common(ctx: NodeContext, with_dilations: bool):
    if ctx.rank(0) != 4:
        return None
    kernel = list(ctx.attr("kernel_shape", []))
    if len(kernel) != 2:
        return None
    strides = list(ctx.attr("strides", [1, 1]))
    dilations = list(ctx.attr("dilations", [1, 1]))
    if not with_dilations and dilations != [1, 1]:
        return None
    pads = _resolve_auto_pad(ctx, ctx.shape(0)[2:], kernel, strides, dilations)
    if pads is None:
        return None
    return kernel, strides, pads, dilations


@importer("MaxPool")
def import_max_pool(ctx: NodeContext):
    common = _pool_common(ctx, True)
    if common is None or ctx.n_outputs_used() > 1 or ctx.attr("storage_order", 0) != 0:
        return None
    kernel, strides, pads, dilations = common
    ceil_mode = ctx.attr("ceil_mode", 0)
    if ceil_mode:
        floor_pads = _ceil_as_end_pads(ctx, kernel, strides, pads, dilations)
        if floor_pads is not None:
            pads, ceil_mode = floor_pads, 0
    op = graph.MaxPool2DOp(ctx.input(0), kernel_shape=kernel, strides=strides, pads=pads,
                           dilations=dilations, ceil_mode=ceil_mode)
    return _results(ctx.emit(op))


def _ceil_as_end_pads(ctx: NodeContext, kernel: list[int], strides: list[int], pads: list[int],
                      dilations: list[int]) -> list[int] | None:
    """Pads that give a ceil_mode=1 max pool's output (as ONNX shape inference states it) with
    ceil_mode=0: extra bottom / right padding (ignored by a max pool, like ceil mode's partial
    last window), when every window still starts inside the input or its begin padding.
    None when that does not hold or the output shape is unknown (PyTorch's
    `MaxPool2d(ceil_mode=True)` in GoogLeNet / SqueezeNet style models)."""
    out = ctx.out_types[0]
    if out is None or not is_static(out) or dilations != [1, 1]:
        return None
    in_hw, out_hw = ctx.shape(0)[2:], out.get_shape()[2:]
    new = list(pads)
    for i in range(2):
        size, k, s, begin, end = in_hw[i], kernel[i], strides[i], pads[i], pads[i + 2]
        last = (out_hw[i] - 1) * s  # start of the last window, in padded coordinates
        if last >= size + begin:
            return None
        new[i + 2] = end + max(0, last + k - (size + begin + end))
        if (size + begin + new[i + 2] - k) // s + 1 != out_hw[i]:
            return None
    return new


@importer("AveragePool")
def import_avg_pool(ctx: NodeContext):
    common = _pool_common(ctx, False)
    if common is None:
        return None
    kernel, strides, pads, _ = common
    op = graph.AvgPool2DOp(ctx.input(0), kernel_shape=kernel, strides=strides, pads=pads,
                           ceil_mode=ctx.attr("ceil_mode", 0),
                           count_include_pad=ctx.attr("count_include_pad", 0))
    return _results(ctx.emit(op))


@importer("GlobalAveragePool", "GlobalMaxPool")
def import_global_pool(ctx: NodeContext):
    if ctx.rank(0) != 4:
        return None
    cls = graph.GlobalAvgPool2DOp if ctx.node.op_type == "GlobalAveragePool" else graph.GlobalMaxPool2DOp
    return _results(ctx.emit(cls(ctx.input(0))))


@importer("ReduceMean", "ReduceMax")
def import_spatial_reduce(ctx: NodeContext):
    """ReduceMean / ReduceMax over exactly the two spatial axes of a rank-4 tensor (what
    PyTorch exports for `x.mean((2, 3))` / `x.amax((2, 3))`) is a global pool, followed by a
    reshape to [N, C] when keepdims=0. Every other reduction stays a generic op."""
    if ctx.rank(0) != 4:
        return None
    if ctx.opset < 18:
        axes = ctx.attr("axes")
    else:
        axes = ctx.const(1) if ctx.input(1) is not None else None
    if axes is None:
        return None
    if sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) != [2, 3]:
        return None
    cls = graph.GlobalAvgPool2DOp if ctx.node.op_type == "ReduceMean" else graph.GlobalMaxPool2DOp
    pool = ctx.emit(cls(ctx.input(0)))
    if ctx.attr("keepdims", 1):
        return _results(pool)
    n, c = ctx.shape(0)[:2]
    return _results(ctx.emit(graph.ReshapeOp(pool.results[0], [n, c])))


@importer("BatchNormalization")
def import_batch_norm(ctx: NodeContext):
    if ctx.n_outputs_used() > 1 or ctx.attr("training_mode", 0) or ctx.attr("spatial", 1) != 1:
        return None
    if ctx.rank(0) < 2:
        return None
    op = graph.BatchNormOp(*ctx.inputs[:5], epsilon=ctx.attr("epsilon", 1e-5))
    return _results(ctx.emit(op))


@importer("Pad")
def import_pad(ctx: NodeContext):
    rank = ctx.rank(0)
    mode = ctx.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge"):
        return None
    if ctx.opset < 11:
        pads = list(ctx.attr("pads", []))
        value = float(ctx.attr("value", 0.0))
    else:
        raw = ctx.const(1)
        if raw is None:
            return None
        pads = [int(p) for p in raw.reshape(-1)]
        value = _scalar(ctx, 2)
        if value is False:
            return None
        value = 0.0 if value is None else value
        if ctx.input(3) is not None:
            axes = ctx.const(3)
            if axes is None:
                return None
            axes = [int(a) + rank if a < 0 else int(a) for a in axes.reshape(-1)]
            full = [0] * (2 * rank)
            for j, a in enumerate(axes):
                full[a], full[a + rank] = pads[j], pads[j + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        return None
    return _results(ctx.emit(graph.PadOp(ctx.input(0), pads=pads, mode=mode, value=value)))


@importer("Concat")
def import_concat(ctx: NodeContext):
    inputs = [v for v in ctx.inputs if v is not None]
    return _results(ctx.emit(graph.ConcatOp(inputs, axis=ctx.attr("axis", 0))))


@importer("Split")
def import_split(ctx: NodeContext):
    rank = ctx.rank(0)
    axis = ctx.attr("axis", 0)
    axis = axis + rank if axis < 0 else axis
    size = ctx.shape(0)[axis]
    n = len(ctx.node.output)
    if ctx.opset < 13:
        split = list(ctx.attr("split", []))
    elif ctx.input(1) is not None:
        value = ctx.const(1)
        if value is None:
            return None
        split = [int(s) for s in value.reshape(-1)]
    else:
        split = []
    if not split:
        n = ctx.attr("num_outputs", n)
        chunk = -(-size // n)
        split = [min(chunk, size - i * chunk) for i in range(n)]
    if len(split) != len(ctx.node.output):
        return None
    return _results(ctx.emit(graph.SplitOp(ctx.input(0), axis=axis, split=split)))


@importer("Reshape")
def import_reshape(ctx: NodeContext):
    in_shape = ctx.shape(0)
    if ctx.opset < 5:
        target = list(ctx.attr("shape", []))
    else:
        value = ctx.const(1)
        if value is None:
            out = ctx.out_types[0]
            if out is None or not is_static(out):
                return None
            return _results(ctx.emit(graph.ReshapeOp(ctx.input(0), result_type=out)))
        target = [int(d) for d in value.reshape(-1)]
    allowzero = ctx.attr("allowzero", 0)
    shape = [in_shape[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        total = math.prod(in_shape)
        if known == 0 or total % known:
            raise ModelImportError(
                f"node '{ctx.name}' (Reshape): cannot reshape {list(in_shape)} to {target}"
            )
        shape[shape.index(-1)] = total // known
    if any(d < 0 for d in shape) or math.prod(shape) != math.prod(in_shape):
        raise ModelImportError(
            f"node '{ctx.name}' (Reshape): cannot reshape {list(in_shape)} to {target}"
        )
    return _results(ctx.emit(graph.ReshapeOp(ctx.input(0), shape)))


@importer("Flatten")
def import_flatten(ctx: NodeContext):
    return _results(ctx.emit(graph.FlattenOp(ctx.input(0), axis=ctx.attr("axis", 1))))


def _axes(ctx: NodeContext, input_index: int) -> list[int] | None | bool:
    """Axes from the attribute (old opsets) or the constant input: None if absent,
    False if given by a non-constant input."""
    if ctx.opset < 13:
        axes = ctx.attr("axes")
        return None if axes is None else list(axes)
    if ctx.input(input_index) is None:
        return None
    value = ctx.const(input_index)
    if value is None:
        return False
    return [int(a) for a in value.reshape(-1)]


@importer("Squeeze")
def import_squeeze(ctx: NodeContext):
    axes = _axes(ctx, 1)
    if axes is False:
        return None
    shape = ctx.shape(0)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    return _results(ctx.emit(graph.SqueezeOp(ctx.input(0), axes=axes)))


@importer("Unsqueeze")
def import_unsqueeze(ctx: NodeContext):
    axes = _axes(ctx, 1)
    if axes is False or axes is None:
        return None
    return _results(ctx.emit(graph.UnsqueezeOp(ctx.input(0), axes=axes)))


@importer("Transpose")
def import_transpose(ctx: NodeContext):
    perm = ctx.attr("perm")
    return _results(ctx.emit(graph.TransposeOp(ctx.input(0), perm=None if perm is None else list(perm))))


@importer("Resize", "Upsample")
def import_resize(ctx: NodeContext):
    s = lambda k, d: (lambda v: v.decode() if isinstance(v, bytes) else v)(ctx.attr(k, d))  # noqa: E731
    mode = s("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return None
    in_shape = ctx.shape(0)
    scales = sizes = None
    if ctx.node.op_type == "Upsample" or ctx.opset < 11:
        ctm, nearest_mode = "asymmetric", "floor"
        if ctx.node.op_type == "Upsample" and ctx.opset < 9:
            scales = list(ctx.attr("scales", []))
        else:
            value = ctx.const(1)
            if value is None:
                return None
            scales = [float(v) for v in value.reshape(-1)]
    else:
        ctm = s("coordinate_transformation_mode", "half_pixel")
        nearest_mode = s("nearest_mode", "round_prefer_floor")
        if ctm == "tf_crop_and_resize" or ctx.attr("exclude_outside", 0) or ctx.attr("antialias", 0):
            return None
        if ctx.attr("axes") is not None:
            return None
        if ctx.input(2) is not None and ctx.const(2) is None:
            return None
        if ctx.input(3) is not None and ctx.const(3) is None:
            return None
        scale_values = ctx.const(2)
        size_values = ctx.const(3)
        if size_values is not None and size_values.size:
            if s("keep_aspect_ratio_policy", "stretch") != "stretch":
                return None
            sizes = [int(v) for v in size_values.reshape(-1)]
        elif scale_values is not None and scale_values.size:
            scales = [float(v) for v in scale_values.reshape(-1)]
        else:
            return None
    if (scales is not None and len(scales) != len(in_shape)) or (
        sizes is not None and len(sizes) != len(in_shape)
    ):
        return None
    op = graph.ResizeOp(ctx.input(0), scales=scales, sizes=sizes, mode=mode,
                        coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)
    return _results(ctx.emit(op))


@importer("Dropout")
def import_dropout(ctx: NodeContext):
    if ctx.n_outputs_used() > 1:
        return None
    if ctx.opset >= 12:
        training = ctx.const(2) if ctx.input(2) is not None else np.array(False)
        if training is None or bool(training.reshape(())):
            return None
        ratio = _scalar(ctx, 1)
        if ratio is False:
            return None
        ratio = 0.5 if ratio is None else ratio
    else:
        ratio = ctx.attr("ratio", 0.5)
    return _results(ctx.emit(graph.DropoutOp(ctx.input(0), ratio=ratio)))


@importer("Constant")
def import_constant(ctx: NodeContext):
    attrs = ctx.node.attribute
    if len(attrs) != 1:
        return None
    a = attrs[0]
    if a.name == "value":
        if onnx_element(a.t.data_type) is None:
            return None
        value = tensor_to_dense(a.t, f"node '{ctx.name}'")
        return _results(ctx.emit(graph.ConstantOp(value)))
    if a.name == "sparse_value":
        values = onnx.numpy_helper.to_array(a.sparse_tensor.values)
        indices = onnx.numpy_helper.to_array(a.sparse_tensor.indices).astype(np.int64)
        dims = tuple(a.sparse_tensor.dims)
        if values.dtype not in graph._NUMPY_TO_ELEMENT:
            return None
        dense = np.zeros(dims, values.dtype)
        if indices.ndim == 2:  # [NNZ, rank] coordinates
            indices = np.ravel_multi_index(tuple(indices.T), dims) if indices.size else indices.reshape(-1)
        dense.reshape(-1)[indices.reshape(-1)] = values.reshape(-1)
        return _results(ctx.emit(graph.ConstantOp.from_numpy(dense)))
    arrays = {
        "value_float": lambda: np.array(a.f, np.float32),
        "value_floats": lambda: np.array(list(a.floats), np.float32),
        "value_int": lambda: np.array(a.i, np.int64),
        "value_ints": lambda: np.array(list(a.ints), np.int64),
    }
    if a.name not in arrays:
        return None
    return _results(ctx.emit(graph.ConstantOp.from_numpy(arrays[a.name]())))


@importer("Shape")
def import_shape(ctx: NodeContext):
    shape = ctx.shape(0)
    rank = len(shape)
    start, end = ctx.attr("start", 0), ctx.attr("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return _results(ctx.emit(graph.ConstantOp.from_numpy(np.array(shape[start:end], np.int64))))


@importer("Size")
def import_size(ctx: NodeContext):
    return _results(ctx.emit(graph.ConstantOp.from_numpy(np.array(math.prod(ctx.shape(0)), np.int64))))


# --------------------------------------------------------------------------------------
# The importer
# --------------------------------------------------------------------------------------


class _Importer:
    def __init__(self, model: onnx.ModelProto, label: str, owned: bool,
                 input_shapes: dict[str, list[int]], batch_size: int):
        self.model = model
        self.label = label
        self.owned = owned
        self.opset = default_opset(model)
        self.domain_opsets = {e.domain: int(e.version) for e in model.opset_import}
        self.inputs = _fixed_inputs(model, label, input_shapes, batch_size)
        self.values: dict[str, SSAValue] = {}
        self.block = Block(arg_types=[t for _, t in self.inputs])
        self.types: dict[str, TensorType] = {}
        self.shape_error: str | None = None
        self.int_input_values: set[str] = set()
        self.node_reads_int_input = False
        self.local_cache: dict[tuple, dict[int, TensorType]] = {}
        self.probe_cache: dict[tuple, dict[int, TensorType]] = {}

    # -- helpers ------------------------------------------------------------------------

    def _weight(self, name: str) -> np.ndarray | None:
        """The value of an initializer (for the onnxruntime shape probe)."""
        value = self.values.get(name)
        if value is None or not isinstance(value.owner, graph.ConstantOp):
            return None
        return value.owner.to_numpy()

    def node_label(self, index: int, node: NodeProto) -> str:
        return node.name or f"{node.op_type}_{index}"

    def value(self, name: str, node_label: str) -> SSAValue | None:
        if not name:
            return None
        value = self.values.get(name)
        if value is None:
            raise ModelImportError(
                f"{self.label}: node '{node_label}' uses '{name}', which is not defined "
                f"before it (the graph is not topologically sorted or the value is missing)"
            )
        return value

    def add(self, op: Operation) -> None:
        self.block.add_op(op)

    # -- steps --------------------------------------------------------------------------

    def run(self) -> ModuleOp:
        g = self.model.graph
        for (name, t), arg in zip(self.inputs, self.block.args):
            self.values[name] = arg
            if not isinstance(t.element_type, Float16Type | Float32Type | Float64Type | BFloat16Type):
                # Integer / bool inputs may carry shapes, axes or indices: a size that ONNX
                # shape inference cannot give for a value computed from them stays dynamic.
                self.int_input_values.add(name)
        self._shape_inference()
        self._check_sizes()
        self._initializers()
        for index, node in _topological_order(g.node, set(self.values), self.label):
            self._node(index, node)
        return self._finish()

    def _check_sizes(self) -> None:
        """Refuse at once a model with a tensor beyond MAX_TENSOR_BYTES (inputs, and every
        value ONNX shape inference sizes): no such tensor fits the accelerator's DRAM."""
        sized = [(name, t) for name, t in self.inputs]
        sized += [(name, t) for name, t in self.types.items() if is_static(t)]
        for name, t in sized:
            shape = t.get_shape()
            if any(d < 0 for d in shape):
                continue
            try:
                width = graph.numpy_dtype(t.element_type).itemsize
            except Exception:  # an element type without a numpy form: count 1 byte
                width = 1
            size = math.prod(shape) * width
            if size > MAX_TENSOR_BYTES:
                raise ModelImportError(
                    f"{self.label}: tensor '{name}' {list(shape)} is {size / 2**30:.3g} GiB, "
                    f"beyond the limit of {MAX_TENSOR_BYTES / 2**30:.0f} GiB per tensor (the "
                    f"accelerator's DRAM address space); use a smaller input size")

    def _shape_inference(self) -> None:
        light = _light_model(self.model, self.inputs)
        self.types, self.shape_error = _infer_shapes(light)
        self.light = light

    def _initializers(self) -> None:
        init_names: set[str] = set()
        for tensor in self.model.graph.initializer:
            what = f"{self.label}: initializer '{tensor.name}'"
            value = tensor_to_dense(tensor, what)
            if self.owned:
                tensor.ClearField("raw_data")  # keep one copy of the weights in memory
            op = graph.ConstantOp(value)
            op.attributes["onnx_node"] = StringAttr(tensor.name)
            self.add(op)
            self.values[tensor.name] = op.result
            init_names.add(tensor.name)

    def _const_inputs(self, inputs: list[SSAValue | None]) -> list[np.ndarray] | None:
        arrays = []
        total = 0
        for v in inputs:
            if v is None:
                arrays.append(None)
                continue
            if not isinstance(v.owner, graph.ConstantOp):
                return None
            arr = v.owner.to_numpy()
            total += arr.size
            arrays.append(arr)
        if total > FOLD_LIMIT or not any(a is not None for a in arrays):
            return None
        return arrays

    def _fold(self, node: NodeProto, node_label: str, arrays: list[np.ndarray | None]) -> list[SSAValue] | None:
        """Evaluate a node whose inputs are all small constants (None if it cannot be)."""
        if node.op_type in _RANDOM_OPS or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type in ("Constant", "Identity") and len(node.input) == 0:
            return None
        if outer_scope_names(node):  # its subgraphs read values the fold would not give
            return None
        from onnx.reference import ReferenceEvaluator

        names = [f"in{i}" if a is not None else "" for i, a in enumerate(arrays)]
        n = onnx.helper.make_node(node.op_type, names, [f"out{i}" if o else "" for i, o in enumerate(node.output)])
        n.attribute.extend(node.attribute)
        inputs = [onnx.helper.make_tensor_value_info(nm, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                  for nm, a in zip(names, arrays) if a is not None]
        outputs = [onnx.helper.make_empty_tensor_value_info(f"out{i}") for i, o in enumerate(node.output) if o]
        m = onnx.helper.make_model(onnx.helper.make_graph([n], "fold", inputs, outputs),
                                   opset_imports=[onnx.helper.make_opsetid("", self.opset)])
        try:
            results = ReferenceEvaluator(m).run(None, {nm: a for nm, a in zip(names, arrays) if a is not None})
        except Exception:
            return None
        values = []
        for r in results:
            if not isinstance(r, np.ndarray) or r.dtype not in graph._NUMPY_TO_ELEMENT:
                return None
            op = graph.ConstantOp.from_numpy(r)
            op.attributes["onnx_node"] = StringAttr(node_label)
            self.add(op)
            values.append(op.result)
        return values

    def _check_type_binding(self, node: NodeProto, node_label: str,
                            inputs: list[SSAValue | None]) -> None:
        """Inputs that the node's schema binds to one type parameter have one element type
        (an fp64 weight on an fp32 Conv is refused here, as onnxruntime refuses it)."""
        try:
            schema = onnx.defs.get_schema(node.op_type, self._node_opset(node), node.domain)
        except onnx.defs.SchemaError:
            return
        params = {c.type_param_str for c in schema.type_constraints}
        formal = list(schema.inputs)
        bound: dict[str, tuple[str, Attribute]] = {}
        for i, (name, value) in enumerate(zip(node.input, inputs)):
            if value is None or not formal or not isinstance(value.type, TensorType):
                continue
            if i >= len(formal):
                last = formal[-1]
                if last.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
                    continue
                param = last
            else:
                param = formal[i]
            if param.type_str not in params or not param.is_homogeneous:
                continue
            element = value.type.element_type
            first = bound.setdefault(param.type_str, (name, element))
            if first[1] != element:
                raise ModelImportError(
                    f"{self.label}: node '{node_label}' ({node.op_type}): inputs '{first[0]}' "
                    f"and '{name}' must have one type ({param.type_str}), got {first[1]} and "
                    f"{element}")

    def _node(self, index: int, node: NodeProto) -> None:
        node_label = self.node_label(index, node)
        inputs = [self.value(name, node_label) for name in node.input]
        self._check_type_binding(node, node_label, inputs)
        self.node_reads_int_input = any(name in self.int_input_values for name in node.input)
        if self.node_reads_int_input:
            self.int_input_values.update(o for o in node.output if o)
        outputs = [o for o in node.output]
        results: Sequence[SSAValue] | None = None
        arrays = self._const_inputs(inputs)
        if arrays is not None:
            results = self._fold(node, node_label, arrays)
        if results is None and node.domain in ("", "ai.onnx") and node.op_type in IMPORTERS:
            results = self._modelled(node, node_label, inputs)
        if results is None:
            results = self._generic(node, node_label, inputs)
        produced = [o for o in outputs if o]
        if len(results) < len(produced):
            raise ModelImportError(f"node '{node_label}' ({node.op_type}): produced too few results")
        it = iter(results)
        for name in outputs:
            if name:
                self.values[name] = next(it)

    def _modelled(self, node: NodeProto, node_label: str, inputs: list[SSAValue | None]) -> Sequence[SSAValue] | None:
        if any(v is not None and not is_static(v.type) for v in inputs):
            return None
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        out_types = [self.types.get(o) if o else None for o in node.output]
        ctx = NodeContext(self, node, node_label, self.opset, attrs, inputs, out_types)
        try:
            results = IMPORTERS[node.op_type](ctx)
        except VerifyException as error:
            msg = f"node '{node_label}' ({node.op_type}): inconsistent shapes: {error}"
            if self.shape_error:
                msg += f" (ONNX shape inference: {self.shape_error.splitlines()[0]})"
            raise ModelImportError(msg) from None
        if results is None:
            return None
        # A modelled op must agree with ONNX shape inference where that knows the type.
        for name, value in zip([o for o in node.output if o], results):
            known = self.types.get(name)
            if known is not None and is_static(known) and known != value.type:
                raise ModelImportError(
                    f"node '{node_label}' ({node.op_type}): inconsistent shapes: output "
                    f"'{name}' is {value.type} here but {known} by ONNX shape inference"
                )
        for op in ctx.emitted:
            op.attributes["onnx_node"] = StringAttr(node_label)
            self.add(op)
        return results

    def _value_dependent(self, node: NodeProto, inputs: list[SSAValue | None]) -> bool:
        """Whether an input whose values set the output shape (SHAPE_INPUTS) is not an
        import-time constant."""
        if node.domain not in ("", "ai.onnx"):
            return False
        shape_inputs = SHAPE_INPUTS.get(node.op_type, ())
        if node.op_type == "Resize" and self.opset < 11:
            shape_inputs = (1,)  # Resize-10: (X, scales)
        return any(
            i < len(inputs) and inputs[i] is not None
            and not isinstance(inputs[i].owner, graph.ConstantOp)
            for i in shape_inputs
        )

    def _signature(self, node: NodeProto, inputs: list[SSAValue | None]) -> tuple:
        """What fixes a node's output types: op, opset, attributes, input types and the values
        of constant inputs (the cache key of local inference and of probes)."""
        parts: list[Any] = [
            node.domain, node.op_type, self._node_opset(node),
            tuple(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name)),
            tuple(bool(o) for o in node.output),
        ]
        for v in inputs:
            if v is None:
                parts.append(None)
                continue
            owner = v.owner
            data = owner.value.data.data if isinstance(owner, graph.ConstantOp) else None
            parts.append((str(v.type), data))
        return tuple(parts)

    def _node_opset(self, node: NodeProto) -> int:
        domain = node.domain if node.domain != "ai.onnx" else ""
        return self.domain_opsets.get(node.domain, self.domain_opsets.get(domain, self.opset))

    @staticmethod
    def _small_const(v: SSAValue) -> np.ndarray | None:
        if not isinstance(v.owner, graph.ConstantOp) or not isinstance(v.type, TensorType):
            return None
        if math.prod(v.type.get_shape()) > FOLD_LIMIT:
            return None
        return v.owner.to_numpy()

    def _local_types(self, node: NodeProto, inputs: list[SSAValue | None],
                     key: tuple) -> dict[int, TensorType]:
        """Output types (by output index) from ONNX shape inference on the node alone, with
        the input types the importer knows and its small constant inputs as initializers
        (constants folded at import time, which whole-model inference cannot see)."""
        cached = self.local_cache.get(key)
        if cached is not None:
            return cached
        names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
        out_names = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
        one = onnx.helper.make_node(node.op_type, names, out_names, domain=node.domain)
        one.attribute.extend(node.attribute)
        graph_inputs, initializers = [], []
        for name, v in zip(names, inputs):
            if v is None:
                continue
            if not isinstance(v.type, TensorType) or not _has_onnx_type(v.type.element_type):
                self.local_cache[key] = {}
                return {}
            arr = self._small_const(v)
            if arr is not None:
                initializers.append(onnx.numpy_helper.from_array(arr, name))
                if self.model.ir_version >= 4:  # older IR versions list initializers as inputs
                    continue
            dims = [d if d >= 0 else None for d in v.type.get_shape()]
            graph_inputs.append(onnx.helper.make_tensor_value_info(
                name, onnx_elem_type(v.type.element_type), dims))
        outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in out_names if o]
        model = onnx.helper.make_model(
            onnx.helper.make_graph([one], "node", graph_inputs, outputs, initializer=initializers),
            opset_imports=list(self.model.opset_import))
        model.ir_version = self.model.ir_version
        model.functions.extend(self.model.functions)
        found: dict[int, TensorType] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:
            inferred = None
        if inferred is not None:
            by_name = {}
            for vi in list(inferred.graph.output) + list(inferred.graph.value_info):
                t = _type_from_value_info(vi)
                if t is not None:
                    by_name[vi.name] = t
            for i, o in enumerate(out_names):
                if o in by_name:
                    found[i] = by_name[o]
        self.local_cache[key] = found
        return found

    def _generic(self, node: NodeProto, node_label: str, inputs: list[SSAValue | None]) -> list[SSAValue]:
        out_names = [o for o in node.output if o]
        dynamic_inputs = any(v is not None and not is_static(v.type) for v in inputs)
        data_dependent = (
            dynamic_inputs or node.op_type in DATA_DEPENDENT_OPS or self.node_reads_int_input
            or self._value_dependent(node, inputs)
        )

        def unresolved(name: str) -> bool:
            t = self.types.get(name)
            return t is None or (not is_static(t) and not data_dependent)

        position = {name: index for index, name in enumerate(node.output) if name}
        if any(o not in self.types or not is_static(self.types[o]) for o in out_names):
            # ONNX shape inference on the node alone, with the constants folded so far and
            # the input types as imported (it may know sizes the whole-model pass did not).
            key = self._signature(node, inputs)
            local = self._local_types(node, inputs, key)
            for name in out_names:
                t = local.get(position[name])
                if t is not None and _better_type(t, self.types.get(name), data_dependent):
                    self.types[name] = t
            missing = [o for o in out_names if unresolved(o)]
            if missing:
                # Last resort: onnxruntime on the model prefix, once per node signature.
                found = self.probe_cache.setdefault(key, {})
                if any(position[o] not in found for o in missing):
                    by_name = _ort_types(self.light, self.inputs, missing, self.label, self._weight)
                    found.update({position[o]: t for o, t in by_name.items()})
                for name in missing:
                    t = found[position[name]]
                    if data_dependent:  # rank from onnxruntime, the sizes depend on the data
                        t = TensorType(t.element_type, [DYNAMIC_INDEX] * len(t.get_shape()))
                    self.types[name] = t
        result_types = [self.types[o] for o in out_names]
        outer_names = outer_scope_names(node)
        outer_values = [self.value(name, node_label) for name in outer_names]
        operands = [v for v in inputs if v is not None]
        input_indices = [i for i, v in enumerate(inputs) if v is not None]
        output_indices = [i for i, o in enumerate(node.output) if o]
        domain = node.domain if node.domain != "ai.onnx" else ""
        opset = self._node_opset(node)
        attrs = {
            a.name: onnx_attribute_to_ir(a, f"node '{node_label}' attribute '{a.name}'")
            for a in node.attribute
        }
        op = graph.OnnxOp([*operands, *outer_values], result_types, op_type=node.op_type,
                          domain=domain, opset=opset, attrs=attrs, input_indices=input_indices,
                          output_indices=output_indices, outer_names=outer_names)
        op.attributes["onnx_node"] = StringAttr(node_label)
        self.add(op)
        return list(op.results)

    def _finish(self) -> ModuleOp:
        g = self.model.graph
        outputs = []
        for vi in g.output:
            if vi.name not in self.values:
                raise ModelImportError(f"{self.label}: graph output '{vi.name}' is never produced")
            outputs.append(self.values[vi.name])
        self.add(ReturnOp(*outputs))
        _remove_dead_ops(self.block)
        arg_attrs = ArrayAttr(
            [DictionaryAttr({"graph.name": StringAttr(name)}) for name, _ in self.inputs]
        )
        func = FuncOp("main", ([t for _, t in self.inputs], [v.type for v in outputs]),
                      Region(self.block), arg_attrs=arg_attrs)
        func.attributes["graph.output_names"] = ArrayAttr([StringAttr(vi.name) for vi in g.output])
        module = ModuleOp([func])
        try:
            module.verify()
        except VerifyException as error:
            raise ModelImportError(f"{self.label}: imported IR does not verify: {error}") from None
        return module


def _topological_order(nodes: Sequence[NodeProto], defined: set[str],
                       label: str) -> list[tuple[int, NodeProto]]:
    """The nodes with their indices, in file order when that is topological (as ONNX
    requires), else stably sorted so that each node follows its producers (as onnxruntime
    accepts)."""
    available = set(defined)
    in_order = True
    for node in nodes:
        if any(name and name not in available
               for name in (*node.input, *outer_scope_names(node))):
            in_order = False
            break
        available.update(node.output)
    if in_order:
        return list(enumerate(nodes))
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    sorter: TopologicalSorter[int] = TopologicalSorter()
    for index, node in enumerate(nodes):
        sorter.add(index)
        for name in (*node.input, *outer_scope_names(node)):
            if not name or name in defined:
                continue
            if name not in producer:
                raise ModelImportError(
                    f"{label}: node '{node.name or f'{node.op_type}_{index}'}' uses '{name}', "
                    f"which no node, input or initializer defines")
            sorter.add(index, producer[name])
    try:
        sorter.prepare()
    except CycleError as error:
        index = min(error.args[1])
        node = nodes[index]
        raise ModelImportError(
            f"{label}: node '{node.name or f'{node.op_type}_{index}'}' is on a cycle of the "
            f"graph") from None
    order: list[tuple[int, NodeProto]] = []
    ready: list[int] = []
    while sorter.is_active():  # the earliest ready node first: file order where possible
        for index in sorter.get_ready():
            heapq.heappush(ready, index)
        index = heapq.heappop(ready)
        order.append((index, nodes[index]))
        sorter.done(index)
    return order


def _subgraphs(node: NodeProto) -> list[onnx.GraphProto]:
    return [g for a in node.attribute
            for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs))]


def outer_scope_names(node: NodeProto) -> list[str]:
    """The names the subgraphs of `node` (If, Loop, Scan; at any depth) read from the graph
    around the node, in first-use order."""
    found: list[str] = []

    def visit(g: onnx.GraphProto, defined: set[str]) -> None:
        local = set(defined) | {i.name for i in g.input} | {t.name for t in g.initializer}
        local |= {t.values.name for t in g.sparse_initializer}
        for n in g.node:
            for name in n.input:
                if name and name not in local and name not in found:
                    found.append(name)
            for sub in _subgraphs(n):
                visit(sub, local)
            local.update(n.output)
        for output in g.output:
            if output.name not in local and output.name not in found:
                found.append(output.name)

    for sub in _subgraphs(node):
        visit(sub, set())
    return found


def _remove_dead_ops(block: Block) -> None:
    """Erase ops none of whose results is used (in reverse order, so chains go too)."""
    for op in reversed(list(block.ops)):
        if isinstance(op, ReturnOp) or not op.results:
            continue
        if all(not r.uses for r in op.results):
            block.erase_op(op)


def import_onnx(model: str | Path | onnx.ModelProto, *,
                input_shapes: dict[str, list[int]] | None = None,
                batch_size: int = 1) -> ModuleOp:
    """Import an ONNX model (path of a binary or text-format file, or a ModelProto) into the
    graph dialect: a module holding `func.func @main`.

    `input_shapes` fixes the shapes of named inputs; other symbolic first dimensions become
    `batch_size`.  Raises `ModelImportError` for anything wrong with the model.
    """
    owned = not isinstance(model, onnx.ModelProto)
    proto, label = load_model(model)
    return _Importer(proto, label, owned, dict(input_shapes or {}), batch_size).run()


def import_onnx_bytes(data: bytes, *, name: str = "<bytes>", base_dir: str | None = None,
                      input_shapes: dict[str, list[int]] | None = None,
                      batch_size: int = 1) -> ModuleOp:
    """`import_onnx` for the bytes of a model file (external data from `base_dir`)."""
    proto, label = load_model(data, name=name, base_dir=base_dir)
    return _Importer(proto, label, True, dict(input_shapes or {}), batch_size).run()


__all__ = [
    "IMPORTERS",
    "NodeContext",
    "dense_to_tensor",
    "import_onnx",
    "import_onnx_bytes",
    "ir_to_onnx_attribute",
    "load_model",
    "onnx_attribute_to_ir",
    "tensor_to_dense",
]
