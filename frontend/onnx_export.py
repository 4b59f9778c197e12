"""Export of a graph-dialect function back to an ONNX model.

`export_function(module, func_name="main", *, opset=17)` turns `func.func @<func_name>` into an
`onnx.ModelProto` that passes `onnx.checker` and that onnxruntime runs to the same values as the
reference executor (`mrvl.sim.reference`). This is how CPU sub-graphs run on onnxruntime.

Invariants:
- graph inputs are the function arguments, named by their `graph.name` arg attribute; graph
  outputs are the returned values, named by the function's `graph.output_names`;
- every `graph.constant` becomes an initializer whose `raw_data` is the constant's bytes
  (no per-element Python work);
- every modelled op becomes the equivalent ONNX node(s) for the chosen default-domain opset;
  NHWC / OHWI ops and `graph.layout_transform` become Transpose-wrapped NCHW equivalents;
- `graph.onnx` ops are re-emitted verbatim (op_type, domain, attributes, input positions).
  The default-domain opset of the model is `opset`, unless a `graph.onnx` op's schema differs
  between its own opset and `opset`: then the model uses that op's opset (the modelled ops are
  emitted for whichever opset is chosen).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue

from mrvl.dialects import graph
from mrvl.errors import MrvlError
from mrvl.reference_kernels import layout_perm


class ExportError(MrvlError):
    """A graph-dialect function cannot be written as an ONNX model (names the op)."""


MIN_OPSET = 7

# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


def onnx_elem_type(element_type: Attribute) -> int:
    """The ONNX TensorProto data type of a builtin element type (frontend/onnx_import.py's
    mapping); ExportError when it has none."""
    from mrvl.frontend.onnx_import import onnx_elem_type as to_onnx

    try:
        return to_onnx(element_type)
    except ValueError:
        raise ExportError(f"element type {element_type} has no ONNX equivalent") from None


def _value_info(name: str, ty: Attribute) -> onnx.ValueInfoProto:
    if not isinstance(ty, TensorType):
        raise ExportError(f"value '{name}' has non-tensor type {ty}")
    # A dynamic dim (data-dependent outputs of some graph.onnx ops) is left unnamed.
    shape = [d if d >= 0 else None for d in ty.get_shape()]
    return helper.make_tensor_value_info(name, onnx_elem_type(ty.get_element_type()), shape)


def _tensor_from_dense(
    name: str, value: DenseIntOrFPElementsAttr, t: TensorProto | None = None
) -> TensorProto:
    """`value` as a TensorProto (filled in place when `t` is given: one copy of the bytes)."""
    ty = value.type
    assert isinstance(ty, TensorType)
    t = TensorProto() if t is None else t
    t.name = name
    t.data_type = onnx_elem_type(ty.get_element_type())
    t.dims.extend(ty.get_shape())
    t.raw_data = bytes(value.data.data)
    return t


def _tensor_from_numpy(name: str, arr: np.ndarray, t: TensorProto | None = None) -> TensorProto:
    arr = np.asarray(arr, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    t = TensorProto() if t is None else t
    t.name = name
    t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.dims.extend(arr.shape)
    t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return t


# ---------------------------------------------------------------------------------------------
# graph.onnx attributes -> AttributeProto (inverse of the importer's encoding)
# ---------------------------------------------------------------------------------------------

def ir_attribute_to_onnx(name: str, attr: Attribute) -> onnx.AttributeProto:
    """The ONNX attribute `name` encoded in the IR as `attr` (the importer's encoding, see
    `graph.OnnxOp`; the inverse lives beside the encoder in `onnx_import`)."""
    from mrvl.frontend.onnx_import import ir_to_onnx_attribute

    try:
        return ir_to_onnx_attribute(name, attr)
    except (ValueError, KeyError, AssertionError) as e:
        raise ExportError(f"attribute '{name}' = {attr} has no ONNX encoding") from e


def rename_references(graph_proto: onnx.GraphProto, mapping: Mapping[str, str]) -> None:
    """Rename the outer-scope names `mapping` reads in a subgraph (at any depth)."""
    for node in graph_proto.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs):
                rename_references(sub, mapping)
    for output in graph_proto.output:  # a branch may return an outer value as it is
        output.name = mapping.get(output.name, output.name)


def onnx_node_attributes(op: graph.OnnxOp, outer: Mapping[str, str]) -> list[onnx.AttributeProto]:
    """The node's attributes; the subgraphs' outer-scope references renamed by `outer`
    (name in the subgraphs -> name of the value where the node is emitted)."""
    protos = [ir_attribute_to_onnx(k, v) for k, v in op.attrs.data.items()]
    renames = {k: v for k, v in outer.items() if k != v}
    if renames:
        for attr in protos:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs):
                rename_references(sub, renames)
    return protos


def onnx_op_model(op: graph.OnnxOp) -> onnx.ModelProto:
    """A one-node model running `op` (inputs in0.., outputs out0.., types from the IR)."""
    positions = op.onnx_input_positions()
    node_inputs = [""] * (max(positions) + 1 if positions else 0)
    inputs = []
    for i, (pos, value) in enumerate(zip(positions, op.node_inputs())):
        node_inputs[pos] = f"in{i}"
        inputs.append(_value_info(f"in{i}", value.type))
    outer = {}
    for k, (name, value) in enumerate(op.outer_values()):
        outer[name] = f"outer{k}"
        inputs.append(_value_info(f"outer{k}", value.type))
    out_positions = op.onnx_output_positions()
    node_outputs = [""] * (max(out_positions) + 1 if out_positions else 0)
    outputs = []
    for i, (pos, value) in enumerate(zip(out_positions, op.outputs)):
        node_outputs[pos] = f"out{i}"
        outputs.append(_value_info(f"out{i}", value.type))
    node = helper.make_node(
        op.op_type.data,
        node_inputs,
        node_outputs,
        domain=op.domain.data,
        name="node",
        **{},
    )
    node.attribute.extend(onnx_node_attributes(op, outer))
    opset = int(op.opset.value.data)
    imports = [helper.make_opsetid(op.domain.data, opset)]
    if op.domain.data not in ("", "ai.onnx"):
        imports.append(helper.make_opsetid("", 17))
    g = helper.make_graph([node], "graph_onnx", inputs, outputs)
    model = helper.make_model(g, opset_imports=imports, producer_name="mrvl")
    model.ir_version = helper.find_min_ir_version_for(imports, ignore_unknown=True)
    return model


# ---------------------------------------------------------------------------------------------
# The function exporter
# ---------------------------------------------------------------------------------------------


def _schema_version(op_type: str, domain: str, opset: int) -> int | None:
    try:
        return onnx.defs.get_schema(op_type, opset, domain).since_version
    except onnx.defs.SchemaError:
        return None


def choose_opset(fn: func.FuncOp, opset: int) -> int:
    """The default-domain opset to export `fn` with (see the module docstring)."""
    generic = [
        op
        for op in fn.walk()
        if isinstance(op, graph.OnnxOp) and op.domain.data in ("", "ai.onnx")
    ]
    candidates = [opset] + sorted({int(op.opset.value.data) for op in generic}, reverse=True)
    for candidate in candidates:
        if candidate < MIN_OPSET:
            continue
        if all(
            _schema_version(op.op_type.data, "", candidate)
            == _schema_version(op.op_type.data, "", int(op.opset.value.data))
            for op in generic
        ):
            return candidate
    raise ExportError(
        f"@{fn.sym_name.data}: no single opset >= {MIN_OPSET} fits all generic ONNX ops "
        f"(opsets {sorted({int(op.opset.value.data) for op in generic})})"
    )


class _Exporter:
    """Builds the ONNX graph of one function, one `emit_*` method per graph op."""

    def __init__(self, fn: func.FuncOp, opset: int):
        self.fn = fn
        self.opset = opset
        # Built in place in the model (no copies of the weights by make_graph / make_model).
        self.model = onnx.ModelProto()
        self.graph = self.model.graph
        self.names: dict[SSAValue, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    # -- naming -------------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        name = hint
        while name in self.used or not name:
            self.counter += 1
            name = f"{hint or 'v'}_{self.counter}"
        self.used.add(name)
        return name

    def name_of(self, value: SSAValue) -> str:
        return self.names[value]

    def const(self, arr: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        _tensor_from_numpy(name, arr, self.graph.initializer.add())
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             *, hint: str = "", domain: str = "", **attrs: object) -> list[str]:
        if outputs is None:
            outputs = [self.fresh(f"{hint or op_type.lower()}_out")]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.graph.node.append(
            helper.make_node(
                op_type, list(inputs), list(outputs),
                name=self.fresh(hint or op_type), domain=domain, **attrs,
            )
        )
        return list(outputs)

    def transpose(self, x: str, perm: Sequence[int], hint: str) -> str:
        return self.node("Transpose", [x], hint=hint, perm=list(perm))[0]

    def i64(self, values: Iterable[int], hint: str) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint)

    # -- driver -------------------------------------------------------------------------------

    def run(self, input_names: Sequence[str], output_names: Sequence[str]) -> onnx.ModelProto:
        block = self.fn.body.blocks.first
        assert block is not None
        inputs = []
        for arg, name in zip(block.args, input_names):
            if name in self.used:
                raise ExportError(f"@{self.fn.sym_name.data}: duplicate input name '{name}'")
            self.used.add(name)
            self.names[arg] = name
            inputs.append(_value_info(name, arg.type))
        ret = block.last_op
        if not isinstance(ret, func.ReturnOp):
            raise ExportError(f"@{self.fn.sym_name.data}: expected a func.return at the end")
        # A returned op result used nowhere else takes its output name directly (first
        # occurrence only); other outputs get an Identity. (onnxruntime 1.31's fusions can
        # drop a node whose output is both a graph output and consumed by another node.)
        direct: dict[SSAValue, str] = {}
        for value, name in zip(ret.arguments, output_names):
            if name in self.used:
                raise ExportError(f"@{self.fn.sym_name.data}: output name '{name}' is used twice")
            self.used.add(name)
            owner = value.owner
            only_returned = all(use.operation is ret for use in value.uses)
            if (
                value not in direct
                and only_returned
                and isinstance(owner, Operation)
                and not isinstance(owner, graph.ConstantOp)
            ):
                direct[value] = name
        self.direct = direct
        for op in block.ops:
            if op is ret:
                break
            self.emit(op)
        outputs = []
        for value, name in zip(ret.arguments, output_names):
            if direct.get(value) != name:
                self.node("Identity", [self.name_of(value)], [name], hint="output")
            outputs.append(_value_info(name, value.type))
        self.graph.name = self.fn.sym_name.data
        self.graph.input.extend(inputs)
        self.graph.output.extend(outputs)
        return self.model

    def result_names(self, op: Operation) -> list[str]:
        hint = _node_name(op) or op.name.split(".")[-1]
        names = []
        for i, r in enumerate(op.results):
            name = self.direct.get(r)
            if name is None:
                name = self.fresh(hint if len(op.results) == 1 else f"{hint}:{i}")
            self.names[r] = name
            names.append(name)
        return names

    def emit(self, op: Operation) -> None:
        cls = type(op)
        method = getattr(self, "emit_" + cls.__name__, None)
        if method is None or getattr(graph, cls.__name__, None) is not cls:  # graph ops only
            where = f" (ONNX node '{_node_name(op)}')" if _node_name(op) else ""
            raise ExportError(f"{op.name}{where} has no ONNX export")
        method(op)

    # -- helpers for layouts ------------------------------------------------------------------

    def nchw_in(self, x: str, layout: str, rank: int, hint: str) -> str:
        if layout == "NHWC":
            return self.transpose(x, [0, rank - 1] + list(range(1, rank - 1)), hint)
        return x

    def nchw_out(
        self, op: Operation, op_type: str, inputs: list[str], layout: str, **attrs: object
    ) -> None:
        (out,) = self.result_names(op)
        hint = _node_name(op)
        if layout != "NHWC":
            self.node(op_type, inputs, [out], hint=hint, **attrs)
            return
        rank = len(op.results[0].type.get_shape())
        (tmp,) = self.node(op_type, inputs, hint=hint, **attrs)
        self.node("Transpose", [tmp], [out], hint=hint, perm=[0] + list(range(2, rank)) + [1])

    def simple(self, op: Operation, op_type: str, **attrs: object) -> None:
        ins = [self.name_of(v) for v in op.operands]
        outs = self.result_names(op)
        self.node(op_type, ins, outs, hint=_node_name(op), **attrs)

    # -- one emitter per op -------------------------------------------------------------------

    def emit_ConstantOp(self, op: graph.ConstantOp) -> None:
        name = self.fresh(_node_name(op) or "const")
        self.names[op.result] = name
        _tensor_from_dense(name, op.value, self.graph.initializer.add())

    def emit_Conv2DOp(self, op: graph.Conv2DOp) -> None:
        hint = _node_name(op)
        layout = op.data_layout.data
        x = self.nchw_in(self.name_of(op.input), layout, 4, hint)
        w = self.name_of(op.weight)
        wshape = op.weight.type.get_shape()
        kernel = wshape[1:3] if op.kernel_layout.data == "OHWI" else wshape[2:4]
        if op.kernel_layout.data == "OHWI":
            w = self.transpose(w, [0, 3, 1, 2], hint)
        ins = [x, w] + ([self.name_of(op.bias)] if op.bias is not None else [])
        self.nchw_out(
            op, "Conv", ins, layout,
            strides=list(graph.ints(op.strides)), pads=list(graph.ints(op.pads)),
            dilations=list(graph.ints(op.dilations)), group=int(op.groups.value.data),
            kernel_shape=list(kernel),
        )

    def emit_GemmOp(self, op: graph.GemmOp) -> None:
        ins = [self.name_of(op.a), self.name_of(op.b)]
        if op.c is not None:
            ins.append(self.name_of(op.c))
        elif self.opset < 11:
            n = op.result.type.get_shape()[1]
            ins.append(self.const(np.zeros((n,), _dtype(op.result)), "gemm_c"))
        self.node(
            "Gemm", ins, self.result_names(op), hint=_node_name(op),
            alpha=float(op.alpha.value.data), beta=float(op.beta.value.data),
            transA=int(op.trans_a.value.data), transB=int(op.trans_b.value.data),
        )

    def emit_MatMulOp(self, op: graph.MatMulOp) -> None:
        self.simple(op, "MatMul")

    def emit_DenseOp(self, op: graph.DenseOp) -> None:
        ins = [self.name_of(op.input), self.name_of(op.weight)]
        if self.opset < 11:
            n = op.result.type.get_shape()[1]
            ins.append(self.const(np.zeros((n,), _dtype(op.result)), "dense_c"))
        self.node("Gemm", ins, self.result_names(op), hint=_node_name(op), transB=1)

    def emit_BiasAddOp(self, op: graph.BiasAddOp) -> None:
        hint = _node_name(op)
        rank = len(op.input.type.get_shape())
        axis = int(op.axis.value.data) % rank
        b = self.name_of(op.bias)
        if axis != rank - 1:
            shape = [op.bias.type.get_shape()[0]] + [1] * (rank - 1 - axis)
            (b,) = self.node("Reshape", [b, self.i64(shape, "bias_shape")], hint=hint)
        self.node("Add", [self.name_of(op.input), b], self.result_names(op), hint=hint)

    def emit_AddOp(self, op: Operation) -> None:
        self.simple(op, "Add")

    def emit_SubOp(self, op: Operation) -> None:
        self.simple(op, "Sub")

    def emit_MulOp(self, op: Operation) -> None:
        self.simple(op, "Mul")

    def emit_DivOp(self, op: Operation) -> None:
        self.simple(op, "Div")

    def emit_ReluOp(self, op: Operation) -> None:
        self.simple(op, "Relu")

    def emit_SigmoidOp(self, op: Operation) -> None:
        self.simple(op, "Sigmoid")

    def emit_TanhOp(self, op: Operation) -> None:
        self.simple(op, "Tanh")

    def emit_IdentityOp(self, op: Operation) -> None:
        self.simple(op, "Identity")

    def emit_HardSwishOp(self, op: graph.HardSwishOp) -> None:
        if self.opset >= 14:
            self.simple(op, "HardSwish")
            return
        hint = _node_name(op)
        x = self.name_of(op.input)
        (h,) = self.node("HardSigmoid", [x], hint=hint, alpha=1.0 / 6.0, beta=0.5)
        self.node("Mul", [x, h], self.result_names(op), hint=hint)

    def emit_LeakyReluOp(self, op: graph.LeakyReluOp) -> None:
        self.simple(op, "LeakyRelu", alpha=float(op.alpha.value.data))

    def emit_PReluOp(self, op: Operation) -> None:
        self.simple(op, "PRelu")

    def emit_HardSigmoidOp(self, op: graph.HardSigmoidOp) -> None:
        alpha, beta = float(op.alpha.value.data), float(op.beta.value.data)
        self.simple(op, "HardSigmoid", alpha=alpha, beta=beta)

    def emit_ClipOp(self, op: graph.ClipOp) -> None:
        lo = None if op.min is None else float(op.min.value.data)
        hi = None if op.max is None else float(op.max.value.data)
        if self.opset < 11:
            self.simple(op, "Clip", min=lo, max=hi)
            return
        dtype = graph.numpy_dtype(op.input.type.get_element_type())
        ins = [self.name_of(op.input)]
        ins.append("" if lo is None else self.const(np.asarray(lo).astype(dtype), "clip_min"))
        ins.append("" if hi is None else self.const(np.asarray(hi).astype(dtype), "clip_max"))
        while ins[-1] == "":
            ins.pop()
        self.node("Clip", ins, self.result_names(op), hint=_node_name(op))

    def emit_SoftmaxOp(self, op: graph.SoftmaxOp) -> None:
        rank = len(op.input.type.get_shape())
        axis = int(op.axis.value.data) % rank
        if self.opset >= 13 or axis == rank - 1:
            self.simple(op, "Softmax", axis=axis)
            return
        # Before opset 13 Softmax flattens from `axis`: move the axis last around it.
        hint = _node_name(op)
        perm = [i for i in range(rank) if i != axis] + [axis]
        inv = list(np.argsort(perm))
        t = self.transpose(self.name_of(op.input), perm, hint)
        (s,) = self.node("Softmax", [t], hint=hint, axis=rank - 1)
        self.node("Transpose", [s], self.result_names(op), hint=hint, perm=[int(i) for i in inv])

    def emit_MaxPool2DOp(self, op: graph.MaxPool2DOp) -> None:
        layout = op.layout.data
        x = self.nchw_in(self.name_of(op.input), layout, 4, _node_name(op))
        dil = list(graph.ints(op.dilations))
        pads, ceil_mode = _floor_mode_pads(op, dil, pads_ignored=True)
        self.nchw_out(
            op, "MaxPool", [x], layout,
            kernel_shape=list(graph.ints(op.kernel_shape)), strides=list(graph.ints(op.strides)),
            pads=pads,
            dilations=dil if any(d != 1 for d in dil) else None,
            ceil_mode=ceil_mode or None,
        )

    def emit_AvgPool2DOp(self, op: graph.AvgPool2DOp) -> None:
        layout = op.layout.data
        x = self.nchw_in(self.name_of(op.input), layout, 4, _node_name(op))
        count_include_pad = int(op.count_include_pad.value.data)
        pads, ceil_mode = _floor_mode_pads(op, [1, 1], pads_ignored=not count_include_pad)
        self.nchw_out(
            op, "AveragePool", [x], layout,
            kernel_shape=list(graph.ints(op.kernel_shape)), strides=list(graph.ints(op.strides)),
            pads=pads, ceil_mode=ceil_mode or None,
            count_include_pad=count_include_pad,
        )

    def emit_GlobalAvgPool2DOp(self, op: graph.GlobalAvgPool2DOp) -> None:
        layout = op.layout.data
        x = self.nchw_in(self.name_of(op.input), layout, 4, _node_name(op))
        self.nchw_out(op, "GlobalAveragePool", [x], layout)

    def emit_GlobalMaxPool2DOp(self, op: graph.GlobalMaxPool2DOp) -> None:
        layout = op.layout.data
        x = self.nchw_in(self.name_of(op.input), layout, 4, _node_name(op))
        self.nchw_out(op, "GlobalMaxPool", [x], layout)

    def emit_BatchNormOp(self, op: graph.BatchNormOp) -> None:
        layout = op.layout.data
        rank = len(op.input.type.get_shape())
        x = self.nchw_in(self.name_of(op.input), layout, rank, _node_name(op))
        ins = [x] + [self.name_of(v) for v in (op.scale, op.bias, op.mean, op.var)]
        self.nchw_out(op, "BatchNormalization", ins, layout, epsilon=float(op.epsilon.value.data))

    def emit_PadOp(self, op: graph.PadOp) -> None:
        pads = list(graph.ints(op.pads))
        mode = op.mode.data
        value = float(op.value.value.data)
        if self.opset < 11:
            self.simple(op, "Pad", pads=pads, mode=mode, value=value)
            return
        dtype = graph.numpy_dtype(op.input.type.get_element_type())
        ins = [self.name_of(op.input), self.i64(pads, "pads")]
        if mode == "constant":
            ins.append(self.const(np.asarray(value).astype(dtype), "pad_value"))
        self.node("Pad", ins, self.result_names(op), hint=_node_name(op), mode=mode)

    def emit_ConcatOp(self, op: graph.ConcatOp) -> None:
        self.simple(op, "Concat", axis=int(op.axis.value.data))

    def emit_SplitOp(self, op: graph.SplitOp) -> None:
        split = list(graph.ints(op.split))
        axis = int(op.axis.value.data)
        if self.opset < 13:
            self.simple(op, "Split", axis=axis, split=split)
            return
        ins = [self.name_of(op.input), self.i64(split, "split")]
        self.node("Split", ins, self.result_names(op), hint=_node_name(op), axis=axis)

    def emit_ReshapeOp(self, op: graph.ReshapeOp) -> None:
        shape = list(op.result.type.get_shape())
        allowzero = 1 if 0 in shape and self.opset >= 14 else None
        ins = [self.name_of(op.input), self.i64(shape, "shape")]
        self.node("Reshape", ins, self.result_names(op), hint=_node_name(op), allowzero=allowzero)

    def emit_FlattenOp(self, op: graph.FlattenOp) -> None:
        self.simple(op, "Flatten", axis=int(op.axis.value.data))

    def _axes_op(self, op: Operation, op_type: str, axes: list[int]) -> None:
        if self.opset < 13:
            self.simple(op, op_type, axes=axes)
            return
        ins = [self.name_of(op.operands[0]), self.i64(axes, "axes")]
        self.node(op_type, ins, self.result_names(op), hint=_node_name(op))

    def emit_SqueezeOp(self, op: graph.SqueezeOp) -> None:
        self._axes_op(op, "Squeeze", list(graph.ints(op.axes)))

    def emit_UnsqueezeOp(self, op: graph.UnsqueezeOp) -> None:
        self._axes_op(op, "Unsqueeze", list(graph.ints(op.axes)))

    def emit_TransposeOp(self, op: graph.TransposeOp) -> None:
        perm = list(graph.ints(op.perm))
        self.simple(op, "Transpose", perm=perm or None)

    def emit_LayoutTransformOp(self, op: graph.LayoutTransformOp) -> None:
        perm = layout_perm(op.src_layout.data, op.dst_layout.data)
        self.simple(op, "Transpose", perm=list(perm))

    def emit_ResizeOp(self, op: graph.ResizeOp) -> None:
        if self.opset < 11:
            raise ExportError(
                f"graph.resize (ONNX node '{_node_name(op)}') needs opset >= 11, got {self.opset}"
            )
        hint = _node_name(op)
        in_shape = op.input.type.get_shape()
        out_shape = op.result.type.get_shape()
        scales = np.asarray(graph.floats(op.scales), dtype=np.float32)
        by_scales = all(
            int(np.floor(np.float32(i) * s)) == o for i, s, o in zip(in_shape, scales, out_shape)
        )
        if by_scales:
            ins = [self.name_of(op.input), "", self.const(scales, "scales")]
        else:
            ins = [self.name_of(op.input), "", "", self.i64(out_shape, "sizes")]
        self.node(
            "Resize", ins, self.result_names(op), hint=hint, mode=op.mode.data,
            coordinate_transformation_mode=op.coordinate_transformation_mode.data,
            nearest_mode=op.nearest_mode.data,
        )

    def emit_DropoutOp(self, op: graph.DropoutOp) -> None:
        ratio = float(op.ratio.value.data)
        if self.opset < 12:
            self.simple(op, "Dropout", ratio=ratio)
            return
        ins = [self.name_of(op.input), self.const(np.asarray(ratio, np.float32), "ratio")]
        self.node("Dropout", ins, self.result_names(op), hint=_node_name(op))

    def emit_OnnxOp(self, op: graph.OnnxOp) -> None:
        positions = op.onnx_input_positions()
        ins = [""] * (max(positions) + 1 if positions else 0)
        for pos, value in zip(positions, op.node_inputs()):
            ins[pos] = self.name_of(value)
        outer = {name: self.name_of(value) for name, value in op.outer_values()}
        names = self.result_names(op)
        out_positions = op.onnx_output_positions()
        outs = [""] * (max(out_positions) + 1 if out_positions else 0)
        for pos, name in zip(out_positions, names):
            outs[pos] = name
        node = helper.make_node(
            op.op_type.data, ins, outs, name=self.fresh(_node_name(op) or op.op_type.data),
            domain=op.domain.data,
        )
        node.attribute.extend(onnx_node_attributes(op, outer))
        self.graph.node.append(node)


def _dtype(value: SSAValue) -> np.dtype:
    return graph.numpy_dtype(value.type.get_element_type())


def _floor_mode_pads(op: graph.MaxPool2DOp | graph.AvgPool2DOp, dilations: list[int], *,
                     pads_ignored: bool) -> tuple[list[int], int]:
    """(pads, ceil_mode) to export a pool with. A ceil_mode=1 pool becomes ceil_mode=0 when
    floor mode gives the same windows: with its own pads, or with extra end padding where the
    padding does not enter the result (`pads_ignored`: max pool, average pool without
    count_include_pad). ONNX shape inference and onnxruntime's kernels disagree on ceil-mode
    sizes whose last window would start in the end padding; floor mode has no such case."""
    pads = list(graph.ints(op.pads))
    ceil_mode = int(op.ceil_mode.value.data)
    if not ceil_mode:
        return pads, ceil_mode
    in_shape = list(op.input.type.get_shape())
    out_shape = list(op.result.type.get_shape())
    hw = (1, 2) if op.layout.data == "NHWC" else (2, 3)
    kernel, strides = list(graph.ints(op.kernel_shape)), list(graph.ints(op.strides))
    new = list(pads)
    for i, axis in enumerate(hw):
        size, out = in_shape[axis], out_shape[axis]
        eff = dilations[i] * (kernel[i] - 1) + 1
        new[i + 2] = max(pads[i + 2], (out - 1) * strides[i] + eff - size - pads[i])
        if (size + pads[i] + new[i + 2] - eff) // strides[i] + 1 != out:
            return pads, ceil_mode
    if new != pads and not pads_ignored:
        return pads, ceil_mode
    return new, 0


def _node_name(op: Operation) -> str:
    attr = op.attributes.get("onnx_node")
    return attr.data if isinstance(attr, StringAttr) else ""


def export_function(
    module: ModuleOp, func_name: str = "main", *, opset: int = 17
) -> onnx.ModelProto:
    """`func.func @<func_name>` of `module` as an ONNX model that passes `onnx.checker` (see the
    module docstring; the check itself is left to the caller, it costs a pass over the weights).

    Raises `ExportError` naming the op when something has no ONNX equivalent.
    """
    fn = graph.find_function(module, func_name)
    if fn is None:
        raise ExportError(f"the module has no function named '{func_name}'")
    if opset < MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise ExportError(
            f"opset {opset} is outside the supported range "
            f"{MIN_OPSET}..{onnx.defs.onnx_opset_version()}"
        )
    chosen = choose_opset(fn, opset)
    exporter = _Exporter(fn, chosen)
    model = exporter.run(graph.input_names(fn), graph.output_names(fn))
    imports = {"": chosen}
    for op in fn.walk():
        if isinstance(op, graph.OnnxOp) and op.domain.data not in ("", "ai.onnx"):
            d = op.domain.data
            imports[d] = max(imports.get(d, 0), int(op.opset.value.data))
    opset_ids = [helper.make_opsetid(d, v) for d, v in imports.items()]
    model.opset_import.extend(opset_ids)
    model.producer_name = "mrvl"
    model.ir_version = helper.find_min_ir_version_for(opset_ids, ignore_unknown=True)
    return model
