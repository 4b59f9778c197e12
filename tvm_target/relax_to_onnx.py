"""Relax (as `tvm.relax.frontend.onnx.from_onnx` produces it) -> ONNX, for the ops mrvl takes.

`function_to_onnx(fn, name) -> onnx.ModelProto`: a Relax function whose bindings are calls of
the ops in `CONVERTERS` (or of local composite functions holding such calls, as
`FuseOpsByPattern` and `MergeCompositeFunctions` leave them) becomes one ONNX graph; every
node is named after the Relax variable it defines, inputs keep the parameter names, constants
become initializers. mrvl's own ONNX frontend then takes it, so a Relax region goes through the
same step-1 passes, legality predicates and fusion patterns as a model given to `mrvl compile`.

`subgraph_to_onnx(root, bindings, name)`: the same for one pattern match (the matched
bindings; every other value it reads becomes a graph input).

An op outside the table raises `UnsupportedRelaxOp` (the pattern check then rejects the
match, and the op stays on TVM's CPU path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import tvm
from tvm import relax

from mrvl.errors import MrvlError

OPSET = 17


class UnsupportedRelaxOp(MrvlError):
    """A Relax construct the translation to ONNX does not cover."""


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values]


def shape_of(expr: relax.Expr) -> list[int]:
    """The static shape of a tensor-valued Relax expression."""
    info = expr.ty
    shape = getattr(info, "shape", None)
    if not isinstance(info, relax.TensorType) or shape is None:
        raise UnsupportedRelaxOp(f"expected a tensor, got {info}")
    try:
        return [int(d) for d in shape.values]
    except (TypeError, AttributeError):
        raise UnsupportedRelaxOp(f"shape {shape} is not static") from None


def _elem_type(expr: relax.Expr) -> int:
    dtype = str(expr.ty.dtype)
    if dtype != "float32":
        raise UnsupportedRelaxOp(f"dtype {dtype} (only float32 is translated)")
    return TensorProto.FLOAT


class _Graph:
    """The ONNX graph under construction: nodes, initializers, the name of each Relax value."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[relax.Expr, str] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def constant(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add_input(self, expr: relax.Expr, base: str) -> str:
        name = self.fresh(base)
        self.inputs.append(helper.make_tensor_value_info(name, _elem_type(expr), shape_of(expr)))
        self.names[expr] = name
        return name

    def value(self, expr: relax.Expr) -> str:
        if expr in self.names:
            return self.names[expr]
        if isinstance(expr, tvm.ir.GenericConst):
            name = self.constant(expr.value.numpy(), "const")
            self.names[expr] = name
            return name
        raise UnsupportedRelaxOp(f"value {expr} is not defined in the region")

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))


Converter = Callable[[_Graph, relax.Call, str], None]


def _conv2d(g: _Graph, call: relax.Call, out: str) -> None:
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or \
            attrs.out_layout not in ("", "NCHW"):
        raise UnsupportedRelaxOp(f"conv2d layouts {attrs.data_layout}/{attrs.kernel_layout}")
    weight = call.args[1]
    g.node("Conv", [g.value(call.args[0]), g.value(weight)], out,
           kernel_shape=shape_of(weight)[2:], strides=_ints(attrs.strides),
           pads=_ints(attrs.padding), dilations=_ints(attrs.dilation), group=int(attrs.groups))


def _pool(op_type: str) -> Converter:
    def convert(g: _Graph, call: relax.Call, out: str) -> None:
        attrs = call.attrs
        if attrs.layout != "NCHW" or attrs.out_layout not in ("", "NCHW"):
            raise UnsupportedRelaxOp(f"pool layout {attrs.layout}")
        extra: dict[str, Any] = {}
        if op_type == "AveragePool":
            extra["count_include_pad"] = int(bool(attrs.count_include_pad))
        else:
            extra["dilations"] = _ints(attrs.dilation)
        g.node(op_type, [g.value(call.args[0])], out, kernel_shape=_ints(attrs.pool_size),
               strides=_ints(attrs.strides), pads=_ints(attrs.padding),
               ceil_mode=int(bool(attrs.ceil_mode)), **extra)
    return convert


def _binary(op_type: str) -> Converter:
    def convert(g: _Graph, call: relax.Call, out: str) -> None:
        g.node(op_type, [g.value(call.args[0]), g.value(call.args[1])], out)
    return convert


def _unary(op_type: str) -> Converter:
    def convert(g: _Graph, call: relax.Call, out: str) -> None:
        g.node(op_type, [g.value(call.args[0])], out)
    return convert


def _leaky_relu(g: _Graph, call: relax.Call, out: str) -> None:
    g.node("LeakyRelu", [g.value(call.args[0])], out, alpha=float(call.attrs.alpha))


def _clip(g: _Graph, call: relax.Call, out: str) -> None:
    low, high = (float(v.value) for v in call.args[1:3])
    g.node("Clip", [g.value(call.args[0]),
                    g.constant(np.array(low, np.float32), f"{out}_min"),
                    g.constant(np.array(high, np.float32), f"{out}_max")], out)


def _matmul(g: _Graph, call: relax.Call, out: str) -> None:
    if len(shape_of(call.args[0])) != 2 or len(shape_of(call.args[1])) != 2:
        raise UnsupportedRelaxOp("matmul is not 2-D x 2-D")
    g.node("MatMul", [g.value(call.args[0]), g.value(call.args[1])], out)


def _reshape(g: _Graph, call: relax.Call, out: str) -> None:
    shape = np.array(shape_of(call), np.int64)
    g.node("Reshape", [g.value(call.args[0]), g.constant(shape, f"{out}_shape")], out)


def _permute_dims(g: _Graph, call: relax.Call, out: str) -> None:
    rank = len(shape_of(call.args[0]))
    axes = call.attrs.axes
    perm = _ints(axes) if axes is not None else list(reversed(range(rank)))
    g.node("Transpose", [g.value(call.args[0])], out, perm=perm)


def _mean(g: _Graph, call: relax.Call, out: str) -> None:
    rank = len(shape_of(call.args[0]))
    axes = sorted(int(a) % rank for a in call.attrs.axis)
    if rank != 4 or axes != [2, 3] or not call.attrs.keepdims:
        raise UnsupportedRelaxOp("mean is not a global average pool (axes 2, 3, keepdims)")
    g.node("GlobalAveragePool", [g.value(call.args[0])], out)


def _concat(g: _Graph, call: relax.Call, out: str) -> None:
    tensors = call.args[0]
    if not isinstance(tensors, relax.Tuple):
        raise UnsupportedRelaxOp("concat of a non-literal tuple")
    g.node("Concat", [g.value(t) for t in tensors.fields], out, axis=int(call.attrs.axis))


def _batch_norm(g: _Graph, call: relax.Call, out: str) -> None:
    attrs = call.attrs
    if int(attrs.axis) != 1 or attrs.training:
        raise UnsupportedRelaxOp("batch_norm not over axis 1 in inference mode")
    data, gamma, beta, mean, var = call.args
    g.node("BatchNormalization", [g.value(v) for v in (data, gamma, beta, mean, var)], out,
           epsilon=float(attrs.epsilon))


def _dropout(g: _Graph, call: relax.Call, out: str) -> None:
    g.node("Identity", [g.value(call.args[0])], out)


CONVERTERS: Mapping[str, Converter] = {
    "relax.nn.conv2d": _conv2d,
    "relax.nn.max_pool2d": _pool("MaxPool"),
    "relax.nn.avg_pool2d": _pool("AveragePool"),
    "relax.add": _binary("Add"),
    "relax.multiply": _binary("Mul"),
    "relax.divide": _binary("Div"),
    "relax.nn.relu": _unary("Relu"),
    "relax.sigmoid": _unary("Sigmoid"),
    "relax.tanh": _unary("Tanh"),
    "relax.nn.leakyrelu": _leaky_relu,
    "relax.clip": _clip,
    "relax.matmul": _matmul,
    "relax.reshape": _reshape,
    "relax.permute_dims": _permute_dims,
    "relax.mean": _mean,
    "relax.concat": _concat,
    "relax.nn.batch_norm": _batch_norm,
    "relax.nn.dropout": _dropout,
}
"""Relax op name -> the ONNX node(s) it becomes. batch_norm and dropout yield tuples whose
element 0 is the only one read (TupleGetItem 0 maps to the node's output)."""


def _emit(g: _Graph, var: relax.Var, value: relax.Expr,
          functions: dict[relax.Expr, relax.Function]) -> None:
    """One binding `var = value` into the graph."""
    name = g.fresh(var.name)
    if isinstance(value, relax.TupleGetItem):
        if value.index != 0:
            raise UnsupportedRelaxOp(f"tuple element {value.index} is not translated")
        g.names[var] = g.value(value.tuple_value)
        return
    if isinstance(value, relax.Function):
        functions[var] = value
        return
    if isinstance(value, relax.Var | tvm.ir.GenericConst):
        g.names[var] = g.value(value)
        return
    if not isinstance(value, relax.Call):
        raise UnsupportedRelaxOp(f"binding of {type(value).__name__} is not translated")
    callee = value.op
    if isinstance(callee, relax.Var) and callee in functions:
        inner = functions[callee]
        for param, arg in zip(inner.params, value.args, strict=True):
            g.names[param] = g.value(arg)
        g.names[var] = _emit_body(g, inner.body, functions)
        return
    if isinstance(callee, relax.Function):
        for param, arg in zip(callee.params, value.args, strict=True):
            g.names[param] = g.value(arg)
        g.names[var] = _emit_body(g, callee.body, functions)
        return
    op_name = getattr(callee, "name", str(callee))
    converter = CONVERTERS.get(op_name)
    if converter is None:
        raise UnsupportedRelaxOp(f"{op_name} is not an op mrvl takes")
    converter(g, value, name)
    g.names[var] = name


def _emit_body(g: _Graph, body: relax.Expr, functions: dict[relax.Expr, relax.Function]
               ) -> str:
    if isinstance(body, relax.SeqExpr):
        for block in body.blocks:
            for binding in block.bindings:
                _emit(g, binding.var, binding.value, functions)
        body = body.body
    return g.value(body)


def _model(g: _Graph, outputs: list[tuple[str, relax.Expr]], name: str) -> onnx.ModelProto:
    renamed = []
    for output_name, expr in outputs:
        renamed.append(helper.make_tensor_value_info(output_name, _elem_type(expr),
                                                     shape_of(expr)))
    graph = helper.make_graph(g.nodes, name, g.inputs, renamed, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mrvl.tvm")
    model.ir_version = 8
    return model


def _bind_outputs(g: _Graph, results: list[tuple[str, relax.Expr]]
                  ) -> list[tuple[str, relax.Expr]]:
    """Give each result value its output name (an Identity when the name is taken)."""
    outputs = []
    for k, (base, expr) in enumerate(results):
        source = g.value(expr)
        name = g.fresh(base) if base else g.fresh(f"output_{k}")
        g.node("Identity", [source], name)
        outputs.append((name, expr))
    return outputs


def function_to_onnx(fn: relax.Function, name: str) -> onnx.ModelProto:
    """The ONNX model of a Relax region function (its parameters are the graph inputs, in
    order; its result, a tensor or a tuple of tensors, the outputs `output_<k>`)."""
    g = _Graph()
    for param in fn.params:
        g.add_input(param, param.name)
    body = fn.body
    functions: dict[relax.Expr, relax.Function] = {}
    if isinstance(body, relax.SeqExpr):
        for block in body.blocks:
            for binding in block.bindings:
                _emit(g, binding.var, binding.value, functions)
        body = body.body
    results = list(body.fields) if isinstance(body, relax.Tuple) else [body]
    return _model(g, _bind_outputs(g, [("", r) for r in results]), name)


def subgraph_to_onnx(root: relax.Expr, bindings: Mapping[relax.Var, relax.Expr],
                     name: str) -> onnx.ModelProto:
    """The ONNX model of one pattern match: `root` and the `bindings` it reads (Var ->
    bound value); every other variable it reads becomes a graph input."""
    g = _Graph()
    order: list[tuple[relax.Var, relax.Expr]] = []
    seen: set[relax.Expr] = set()

    def visit(expr: relax.Expr) -> None:
        if expr in seen:
            return
        seen.add(expr)
        if isinstance(expr, relax.Var) and expr in bindings:
            visit(bindings[expr])
            order.append((expr, bindings[expr]))
        elif isinstance(expr, relax.Var):
            g.add_input(expr, expr.name)
        elif isinstance(expr, relax.Call):
            for arg in expr.args:
                visit(arg)
        elif isinstance(expr, relax.Tuple):
            for item in expr.fields:
                visit(item)
        elif isinstance(expr, relax.TupleGetItem):
            visit(expr.tuple_value)

    visit(root)
    for var, value in order:
        _emit(g, var, value, {})
    if isinstance(root, relax.TupleGetItem):
        g.names[root] = g.value(root.tuple_value)
    elif isinstance(root, relax.Call):
        result = relax.Var("result", root.ty)
        _emit(g, result, root, {})
        g.names[root] = g.names[result]
    return _model(g, _bind_outputs(g, [("result", root)]), name)
