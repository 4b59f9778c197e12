"""The reference executor: runs graph-dialect functions on numpy arrays.

`run_function(module, inputs, func_name="main")` interprets `func_name` with xDSL's interpreter
(`func.call` / `func.return` included, so a partitioned `@main` calling sub-graph functions
runs too). Each graph op runs its numpy kernel from `mrvl.reference_kernels` with exact ONNX
semantics; `graph.onnx` runs as a one-node ONNX model on onnxruntime (one cached session per
distinct node). Other dialects plug their `InterpreterFunctions` in with
`register_reference_impls(cls)` (the mrvl layer ops do, from `mrvl.sim.reference_mrvl`).

Invariants:
- it is the oracle of every pass: a pass keeps `run_function` results equal (rtol 1e-4 /
  atol 1e-5 where float reassociation is allowed, exact elsewhere);
- every op's results are checked against its declared result types (shape and dtype): a
  mismatch is a bug in a kernel or in type inference and raises `InterpretationError`;
- inputs are validated against the function signature (count, names, shape, dtype) and a
  mismatch raises `mrvl.errors.RuntimeInputError`.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.interpreters.func import FuncFunctions
from xdsl.utils.exceptions import InterpretationError

from mrvl.dialects import graph
from mrvl.errors import RuntimeInputError
from mrvl import reference_kernels as K

# Modules that register reference semantics of other dialects when imported; loaded lazily
# by `run_function` so that `import mrvl.sim.reference` stays cheap and acyclic.
_PLUGIN_MODULES = ("mrvl.sim.reference_mrvl",)
_REGISTERED: list[type[InterpreterFunctions]] = []


def register_reference_impls(cls: type[InterpreterFunctions]) -> None:
    """Add an `InterpreterFunctions` class (decorated with `@register_impls`) to every later
    `run_function` call. Registering the same class twice is a no-op."""
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)


def _f(attr: FloatAttr | None) -> float | None:
    return None if attr is None else float(attr.value.data)


def _i(attr: IntegerAttr) -> int:
    return int(attr.value.data)


def _s(attr: StringAttr) -> str:
    return attr.data


@register_impls
class GraphFunctions(InterpreterFunctions):
    """Interpreter implementations of every graph op (each one calls one numpy kernel)."""

    @impl(graph.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: graph.ConstantOp, args: tuple[Any, ...]):
        return (op.to_numpy(),)

    @impl(graph.Conv2DOp)
    def run_conv2d(self, interpreter: Interpreter, op: graph.Conv2DOp, args: tuple[Any, ...]):
        y = K.conv2d(
            args[0],
            args[1],
            args[2] if len(args) > 2 else None,
            strides=graph.ints(op.strides),
            pads=graph.ints(op.pads),
            dilations=graph.ints(op.dilations),
            groups=_i(op.groups),
            data_layout=_s(op.data_layout),
            kernel_layout=_s(op.kernel_layout),
        )
        return (y,)

    @impl(graph.GemmOp)
    def run_gemm(self, interpreter: Interpreter, op: graph.GemmOp, args: tuple[Any, ...]):
        y = K.gemm(
            args[0],
            args[1],
            args[2] if len(args) > 2 else None,
            alpha=_f(op.alpha),
            beta=_f(op.beta),
            trans_a=_i(op.trans_a),
            trans_b=_i(op.trans_b),
        )
        return (y,)

    @impl(graph.MatMulOp)
    def run_matmul(self, interpreter: Interpreter, op: graph.MatMulOp, args: tuple[Any, ...]):
        return (K.matmul(*args),)

    @impl(graph.DenseOp)
    def run_dense(self, interpreter: Interpreter, op: graph.DenseOp, args: tuple[Any, ...]):
        return (K.dense(*args),)

    @impl(graph.BiasAddOp)
    def run_bias_add(self, interpreter: Interpreter, op: graph.BiasAddOp, args: tuple[Any, ...]):
        return (K.bias_add(*args, axis=_i(op.axis)),)

    @impl(graph.AddOp)
    def run_add(self, interpreter: Interpreter, op: graph.AddOp, args: tuple[Any, ...]):
        return (K.add(*args),)

    @impl(graph.SubOp)
    def run_sub(self, interpreter: Interpreter, op: graph.SubOp, args: tuple[Any, ...]):
        return (K.sub(*args),)

    @impl(graph.MulOp)
    def run_mul(self, interpreter: Interpreter, op: graph.MulOp, args: tuple[Any, ...]):
        return (K.mul(*args),)

    @impl(graph.DivOp)
    def run_div(self, interpreter: Interpreter, op: graph.DivOp, args: tuple[Any, ...]):
        return (K.div(*args),)

    @impl(graph.ReluOp)
    def run_relu(self, interpreter: Interpreter, op: graph.ReluOp, args: tuple[Any, ...]):
        return (K.relu(args[0]),)

    @impl(graph.LeakyReluOp)
    def run_leaky_relu(self, interpreter: Interpreter, op: graph.LeakyReluOp, args: tuple[Any, ...]):
        return (K.leaky_relu(args[0], alpha=_f(op.alpha)),)

    @impl(graph.PReluOp)
    def run_prelu(self, interpreter: Interpreter, op: graph.PReluOp, args: tuple[Any, ...]):
        return (K.prelu(*args),)

    @impl(graph.ClipOp)
    def run_clip(self, interpreter: Interpreter, op: graph.ClipOp, args: tuple[Any, ...]):
        return (K.clip(args[0], min=_f(op.min), max=_f(op.max)),)

    @impl(graph.SigmoidOp)
    def run_sigmoid(self, interpreter: Interpreter, op: graph.SigmoidOp, args: tuple[Any, ...]):
        return (K.sigmoid(args[0]),)

    @impl(graph.HardSigmoidOp)
    def run_hard_sigmoid(
        self, interpreter: Interpreter, op: graph.HardSigmoidOp, args: tuple[Any, ...]
    ):
        return (K.hard_sigmoid(args[0], alpha=_f(op.alpha), beta=_f(op.beta)),)

    @impl(graph.HardSwishOp)
    def run_hard_swish(self, interpreter: Interpreter, op: graph.HardSwishOp, args: tuple[Any, ...]):
        return (K.hard_swish(args[0]),)

    @impl(graph.TanhOp)
    def run_tanh(self, interpreter: Interpreter, op: graph.TanhOp, args: tuple[Any, ...]):
        return (K.tanh(args[0]),)

    @impl(graph.SoftmaxOp)
    def run_softmax(self, interpreter: Interpreter, op: graph.SoftmaxOp, args: tuple[Any, ...]):
        return (K.softmax(args[0], axis=_i(op.axis)),)

    @impl(graph.MaxPool2DOp)
    def run_max_pool2d(self, interpreter: Interpreter, op: graph.MaxPool2DOp, args: tuple[Any, ...]):
        y = K.max_pool2d(
            args[0],
            kernel_shape=graph.ints(op.kernel_shape),
            strides=graph.ints(op.strides),
            pads=graph.ints(op.pads),
            dilations=graph.ints(op.dilations),
            ceil_mode=_i(op.ceil_mode),
            layout=_s(op.layout),
        )
        return (y,)

    @impl(graph.AvgPool2DOp)
    def run_avg_pool2d(self, interpreter: Interpreter, op: graph.AvgPool2DOp, args: tuple[Any, ...]):
        y = K.avg_pool2d(
            args[0],
            kernel_shape=graph.ints(op.kernel_shape),
            strides=graph.ints(op.strides),
            pads=graph.ints(op.pads),
            ceil_mode=_i(op.ceil_mode),
            count_include_pad=_i(op.count_include_pad),
            layout=_s(op.layout),
        )
        return (y,)

    @impl(graph.GlobalAvgPool2DOp)
    def run_global_avg_pool2d(
        self, interpreter: Interpreter, op: graph.GlobalAvgPool2DOp, args: tuple[Any, ...]
    ):
        return (K.global_avg_pool2d(args[0], layout=_s(op.layout)),)

    @impl(graph.GlobalMaxPool2DOp)
    def run_global_max_pool2d(
        self, interpreter: Interpreter, op: graph.GlobalMaxPool2DOp, args: tuple[Any, ...]
    ):
        return (K.global_max_pool2d(args[0], layout=_s(op.layout)),)

    @impl(graph.BatchNormOp)
    def run_batch_norm(self, interpreter: Interpreter, op: graph.BatchNormOp, args: tuple[Any, ...]):
        return (K.batch_norm(*args, epsilon=_f(op.epsilon), layout=_s(op.layout)),)

    @impl(graph.PadOp)
    def run_pad(self, interpreter: Interpreter, op: graph.PadOp, args: tuple[Any, ...]):
        y = K.pad(args[0], pads=graph.ints(op.pads), mode=_s(op.mode), value=_f(op.value))
        return (y,)

    @impl(graph.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: graph.ConcatOp, args: tuple[Any, ...]):
        return (K.concat(*args, axis=_i(op.axis)),)

    @impl(graph.SplitOp)
    def run_split(self, interpreter: Interpreter, op: graph.SplitOp, args: tuple[Any, ...]):
        return tuple(K.split(args[0], axis=_i(op.axis), split=graph.ints(op.split)))

    @impl(graph.ReshapeOp)
    def run_reshape(self, interpreter: Interpreter, op: graph.ReshapeOp, args: tuple[Any, ...]):
        return (K.reshape(args[0], shape=op.result.type.get_shape()),)

    @impl(graph.FlattenOp)
    def run_flatten(self, interpreter: Interpreter, op: graph.FlattenOp, args: tuple[Any, ...]):
        return (K.flatten(args[0], axis=_i(op.axis)),)

    @impl(graph.SqueezeOp)
    def run_squeeze(self, interpreter: Interpreter, op: graph.SqueezeOp, args: tuple[Any, ...]):
        return (K.squeeze(args[0], axes=graph.ints(op.axes)),)

    @impl(graph.UnsqueezeOp)
    def run_unsqueeze(self, interpreter: Interpreter, op: graph.UnsqueezeOp, args: tuple[Any, ...]):
        return (K.unsqueeze(args[0], axes=graph.ints(op.axes)),)

    @impl(graph.TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: graph.TransposeOp, args: tuple[Any, ...]):
        return (K.transpose(args[0], perm=graph.ints(op.perm)),)

    @impl(graph.LayoutTransformOp)
    def run_layout_transform(
        self, interpreter: Interpreter, op: graph.LayoutTransformOp, args: tuple[Any, ...]
    ):
        y = K.layout_transform(
            args[0], src_layout=_s(op.src_layout), dst_layout=_s(op.dst_layout)
        )
        return (y,)

    @impl(graph.ResizeOp)
    def run_resize(self, interpreter: Interpreter, op: graph.ResizeOp, args: tuple[Any, ...]):
        y = K.resize(
            args[0],
            sizes=op.result.type.get_shape(),
            scales=graph.floats(op.scales),
            mode=_s(op.mode),
            coordinate_transformation_mode=_s(op.coordinate_transformation_mode),
            nearest_mode=_s(op.nearest_mode),
        )
        return (y,)

    @impl(graph.IdentityOp)
    def run_identity(self, interpreter: Interpreter, op: graph.IdentityOp, args: tuple[Any, ...]):
        return (K.identity(args[0]),)

    @impl(graph.DropoutOp)
    def run_dropout(self, interpreter: Interpreter, op: graph.DropoutOp, args: tuple[Any, ...]):
        return (K.dropout(args[0], ratio=_f(op.ratio)),)

    @impl(graph.OnnxOp)
    def run_onnx(self, interpreter: Interpreter, op: graph.OnnxOp, args: tuple[Any, ...]):
        return tuple(run_onnx_op(op, args))


# ---------------------------------------------------------------------------------------------
# graph.onnx through onnxruntime
# ---------------------------------------------------------------------------------------------

_SESSION_CACHE_SIZE = 256
_SESSIONS: OrderedDict[bytes, Any] = OrderedDict()


def run_onnx_op(op: graph.OnnxOp, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a `graph.onnx` op as a one-node ONNX model on onnxruntime (session cached by the
    serialized model, so equal nodes share one session)."""
    import onnxruntime as ort

    from mrvl.frontend.onnx_export import onnx_op_model

    model = onnx_op_model(op)
    key = model.SerializeToString()
    session = _SESSIONS.get(key)
    if session is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(key, options, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = session
        if len(_SESSIONS) > _SESSION_CACHE_SIZE:
            _SESSIONS.popitem(last=False)
    else:
        _SESSIONS.move_to_end(key)
    feeds = {inp.name: np.asarray(a) for inp, a in zip(model.graph.input, args)}
    return list(session.run(None, feeds))


# ---------------------------------------------------------------------------------------------
# Running a function
# ---------------------------------------------------------------------------------------------


def _find_function(module: ModuleOp, func_name: str) -> func.FuncOp:
    fn = graph.find_function(module, func_name)
    if fn is None:
        raise RuntimeInputError(f"the module has no function named '{func_name}'")
    return fn


def _validate_inputs(
    fn: func.FuncOp, inputs: Sequence[Any] | Mapping[str, Any]
) -> list[np.ndarray]:
    names = graph.input_names(fn)
    fname = fn.sym_name.data
    if isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise RuntimeInputError(
                f"@{fname}: unknown input name(s) {unknown}; expected {names}"
            )
        missing = [n for n in names if n not in inputs]
        if missing:
            raise RuntimeInputError(f"@{fname}: missing input(s) {missing}; expected {names}")
        values = [inputs[n] for n in names]
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise RuntimeInputError(
                f"@{fname}: expected {len(names)} input(s) {names}, got {len(values)}"
            )
    arrays = []
    for name, value, arg in zip(names, values, fn.args):
        arr = np.asarray(value)
        ty = arg.type
        if isinstance(ty, TensorType):
            shape = tuple(ty.get_shape())
            dtype = graph.numpy_dtype(ty.get_element_type())
            if arr.dtype != dtype:
                raise RuntimeInputError(
                    f"@{fname}: input '{name}' expected dtype {dtype}, got {arr.dtype}"
                )
            if arr.shape != shape:
                raise RuntimeInputError(
                    f"@{fname}: input '{name}' expected shape {list(shape)}, "
                    f"got {list(arr.shape)}"
                )
        arrays.append(arr)
    return arrays


class _TypeChecker(Interpreter.Listener):
    """Checks each op's results against its declared result types."""

    def did_interpret_op(self, op: Any, results: Sequence[Any]) -> None:
        for i, (res, value) in enumerate(zip(op.results, results)):
            ty = res.type
            if not isinstance(ty, TensorType):
                continue
            shape = tuple(ty.get_shape())
            dtype = graph.numpy_dtype(ty.get_element_type())
            if (
                not isinstance(value, np.ndarray)
                or value.dtype != dtype
                or value.ndim != len(shape)
                # A dynamic dim (the data-dependent outputs of some graph.onnx ops) matches any.
                or any(d >= 0 and d != v for d, v in zip(shape, value.shape))
            ):
                got = (
                    f"{value.dtype}{list(value.shape)}"
                    if isinstance(value, np.ndarray)
                    else type(value).__name__
                )
                node = op.attributes.get("onnx_node")
                where = f" (ONNX node '{node.data}')" if isinstance(node, StringAttr) else ""
                raise InterpretationError(
                    f"{op.name}{where} result {i}: expected {dtype}{list(shape)}, got {got}"
                )


def _load_plugins() -> None:
    for name in _PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def _needs_plugins(module: ModuleOp) -> bool:
    return any(
        not op.name.startswith(("graph.", "func.", "builtin.")) for op in module.walk()
    )


def make_interpreter(module: ModuleOp) -> Interpreter:
    """An interpreter over `module` with graph, func and all registered plug-in semantics
    (the known plug-in modules are imported only when `module` has ops of other dialects)."""
    if _needs_plugins(module):
        _load_plugins()
    interpreter = Interpreter(module, listeners=(_TypeChecker(),))
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(GraphFunctions())
    for cls in _REGISTERED:
        interpreter.register_implementations(cls())
    return interpreter


def run_function(
    module: ModuleOp,
    inputs: Sequence[Any] | Mapping[str, Any],
    func_name: str = "main",
) -> list[np.ndarray]:
    """Execute `func_name` of `module` on numpy inputs and return its results.

    `inputs` is a sequence in argument order, or a mapping keyed by each argument's
    `graph.name` attribute. Raises `RuntimeInputError` on a missing function or on inputs
    that do not match the signature (count, names, shape, dtype).
    """
    fn = _find_function(module, func_name)
    arrays = _validate_inputs(fn, inputs)
    interpreter = make_interpreter(module)
    results = interpreter.call_op(fn, tuple(arrays))
    return [np.asarray(r) for r in results]
