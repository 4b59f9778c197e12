"""mrvl-partition: split `@main` into accelerator and CPU sub-graph functions.

Input invariant: `@main` holds mrvl layers (from convert-graph-to-mrvl), graph ops and
`graph.constant`s.

Output invariant (docs/architecture.md): `@main` only calls sub-graph functions and returns;
`func.func @tvmgen_mrvl_main_<N>` (`mrvl.target = "accelerator"`) hold mrvl layers, each
preceded by its own copies of its constant operands (kernel, then bias; without discardable
attributes, so that the function holds exactly what its JSON pair holds), and
`func.func @cpu_main_<N>` (`mrvl.target = "cpu"`) hold graph ops. Together they compute the
same values as the input. A layer sent to the CPU is expanded back into NHWC graph ops that
carry `mrvl.cpu_reason` and `mrvl.layer` (its layer name).

How: every op gets a phase, the largest number of accelerator/CPU switches on a path from
the inputs to it; the ops of one (phase, target) pair form one sub-graph, so sub-graphs never
depend on each other in a cycle, and they are called in phase order.

Options (pass options, frozen dataclass fields):
- `mode`: "default" (as many accelerator sub-graphs as needed, they may take intermediate
  tensors) or "rfc-first-revision" (at most one accelerator sub-graph fed only by model
  inputs, plus one CPU sub-graph);
- `cpu-layers`: layer names (`tvmgen_mrvl_main_4`) or ONNX node names forced to the CPU;
- `max-layers`: keep at most this many accelerator layers (the first ones; -1 = no limit);
- `require-compute`: send accelerator regions without conv2d or dense back to the CPU
  (upstream's rule; default true);
- `report`: write the offload report to this path (JSON when it ends in .json, else text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr, f32, i64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import ArgSpec
from xdsl.rewriter import Rewriter

from mrvl.dialects import graph, mrvl
from mrvl.dialects.mrvl import TARGET_ATTR
from mrvl.errors import PartitionError
from mrvl.lowering.convert_graph_to_mrvl import (
    CPU_REASON_ATTR,
    ONNX_NODES_ATTR,
    ConvertGraphToMrvlPass,
)

LAYER_ATTR = "mrvl.layer"
MODES = ("default", "rfc-first-revision")
ACCEL, CPU = "accelerator", "cpu"


# ----------------------------------------------------------------------------- un-fusing


def _activation_ops(layer: mrvl.MrvlLayerOp, x: SSAValue) -> list[Operation]:
    act = layer.activation_str()
    if act == "relu":
        return [graph.ReluOp(x)]
    if act == "sigmoid":
        return [graph.SigmoidOp(x)]
    if act == "silu":
        gate = graph.SigmoidOp(x)
        return [gate, graph.MulOp(x, gate.results[0])]
    if act == "clip":
        lo = layer.clip_min.value.data  # type: ignore[attr-defined]
        hi = layer.clip_max.value.data  # type: ignore[attr-defined]
        return [graph.ClipOp(x, min=lo, max=hi)]
    if act in ("gelu", "gelu_tanh"):
        return _gelu_ops(x, act)
    return []


def _scalar_op(value: float) -> graph.ConstantOp:
    return graph.ConstantOp.from_numpy(np.array(value, dtype=np.float32))


def _gelu_ops(x: SSAValue, act: str) -> list[Operation]:
    """x * 0.5 * (1 + erf(x / sqrt 2)), or the tanh form, as graph ops."""
    ops: list[Operation] = []

    def const(value: float) -> SSAValue:
        ops.append(_scalar_op(value))
        return ops[-1].results[0]

    if act == "gelu":
        ops.append(graph.MulOp(x, const(1.0 / math.sqrt(2.0))))
        ops.append(graph.OnnxOp([ops[-1].results[0]], [x.type], op_type="Erf", opset=17))
    else:
        ops.append(graph.MulOp(x, x))
        ops.append(graph.MulOp(ops[-1].results[0], x))
        ops.append(graph.MulOp(ops[-1].results[0], const(0.044715)))
        ops.append(graph.AddOp(x, ops[-1].results[0]))
        ops.append(graph.MulOp(ops[-1].results[0], const(math.sqrt(2.0 / math.pi))))
        ops.append(graph.TanhOp(ops[-1].results[0]))
    ops.append(graph.AddOp(ops[-1].results[0], const(1.0)))
    ops.append(graph.MulOp(x, ops[-1].results[0]))
    ops.append(graph.MulOp(ops[-1].results[0], const(0.5)))
    return ops


def unfuse_ops(layer: mrvl.MrvlLayerOp) -> list[Operation]:
    """Graph ops (NHWC) computing what `layer` computes; the last one gives its result."""
    x = layer.operands[0]
    out_type = layer.results[0].type
    ops: list[Operation] = []
    if isinstance(layer, mrvl.Conv2DOp):
        ops.append(
            graph.Conv2DOp(
                x,
                layer.weight,
                layer.bias,
                strides=graph.ints(layer.strides),
                pads=graph.ints(layer.pads),
                dilations=graph.ints(layer.dilations),
                groups=layer.groups.value.data,
                data_layout="NHWC",
                kernel_layout="OHWI",
            )
        )
    elif isinstance(layer, mrvl.FCOp):
        n = mrvl.tensor_shape(x)[0]
        k = mrvl.tensor_shape(layer.weight)[1]
        if layer.weights_need_transform is not None:
            ops.append(graph.LayoutTransformOp(x, src_layout="NHWC", dst_layout="NCHW"))
            x = ops[-1].results[0]
        if len(mrvl.tensor_shape(x)) != 2:
            ops.append(graph.ReshapeOp(x, [n, k]))
            x = ops[-1].results[0]
        ops.append(graph.DenseOp(x, layer.weight))
        if layer.bias is not None:
            ops.append(graph.BiasAddOp(ops[-1].results[0], layer.bias, axis=1))
    elif isinstance(layer, mrvl.Maxpool2DOp):
        ops.append(
            graph.MaxPool2DOp(
                x,
                kernel_shape=graph.ints(layer.kernel_shape),
                strides=graph.ints(layer.strides),
                pads=graph.ints(layer.pads),
                layout="NHWC",
            )
        )
    elif isinstance(layer, mrvl.Avgpool2DOp):
        ops.append(
            graph.AvgPool2DOp(
                x,
                kernel_shape=graph.ints(layer.kernel_shape),
                strides=graph.ints(layer.strides),
                pads=graph.ints(layer.pads),
                count_include_pad=layer.count_include_pad.value.data,
                layout="NHWC",
            )
        )
    elif isinstance(layer, mrvl.GlobalAvgpool2DOp):
        ops.append(graph.GlobalAvgPool2DOp(x, layout="NHWC"))
    elif isinstance(layer, mrvl.GlobalMaxpool2DOp):
        ops.append(graph.GlobalMaxPool2DOp(x, layout="NHWC"))
    elif isinstance(layer, mrvl.Sum2DOp):
        ops.append(graph.AddOp(layer.lhs, layer.rhs))
    elif isinstance(layer, mrvl.Mul2DOp):
        ops.append(graph.MulOp(layer.lhs, layer.rhs))
    elif isinstance(layer, mrvl.Div2DOp):
        ops.append(graph.DivOp(layer.lhs, layer.rhs))
    elif isinstance(layer, mrvl.ActivationOp):
        if layer.activation_str() == "tanh":
            return [graph.TanhOp(x)]
        if layer.alpha is not None:
            return [graph.LeakyReluOp(x, alpha=layer.alpha.value.data)]
        return _activation_ops(layer, x)
    elif isinstance(layer, mrvl.ConcatOp):
        ops.append(graph.ConcatOp(list(layer.inputs), axis=layer.axis.value.data))
    elif isinstance(layer, mrvl.ReshapeOp | mrvl.BatchFlattenOp | mrvl.SqueezeOp):
        ops.append(graph.ReshapeOp(x, result_type=out_type))
    elif isinstance(layer, mrvl.LayoutTransformOp):
        ops.append(
            graph.LayoutTransformOp(
                x, src_layout=layer.src_layout.data, dst_layout=layer.dst_layout.data
            )
        )
    elif isinstance(layer, mrvl.TransposeOp):
        ops.append(graph.TransposeOp(x, perm=graph.ints(layer.perm)))
    elif isinstance(layer, mrvl.MatMulOp):
        a, b = layer.a, layer.b
        if layer.a_perm is not None:
            ops.append(graph.TransposeOp(a, perm=graph.ints(layer.a_perm)))
            a = ops[-1].results[0]
        if layer.b_perm is not None:
            ops.append(graph.TransposeOp(b, perm=graph.ints(layer.b_perm)))
            b = ops[-1].results[0]
        ops.append(graph.MatMulOp(a, b))
        if layer.softmax_scale is not None:
            ops.append(_scalar_op(layer.softmax_scale.value.data))
            ops.append(graph.MulOp(ops[-2].results[0], ops[-1].results[0]))
            if layer.mask is not None:
                ops.append(graph.AddOp(ops[-1].results[0], layer.mask))
            ops.append(graph.SoftmaxOp(ops[-1].results[0]))
    elif isinstance(layer, mrvl.SoftmaxOp):
        ops.append(graph.SoftmaxOp(x))
    elif isinstance(layer, mrvl.LayerNormOp):
        ops.append(graph.OnnxOp(
            [x, layer.gamma, layer.beta], [out_type], op_type="LayerNormalization", opset=17,
            attrs={"axis": IntegerAttr(-1, i64),
                   "epsilon": FloatAttr(layer.epsilon.value.data, f32)}))
    elif isinstance(layer, mrvl.SliceOp):
        axis, start = layer.axis.value.data, layer.start.value.data
        size, total = mrvl.tensor_shape(layer.output)[axis], mrvl.tensor_shape(x)[axis]
        pieces = [p for p in (start, size, total - start - size) if p > 0]
        split = graph.SplitOp(x, axis=axis, split=pieces)
        # the piece at `start`, as the single result of the last op
        ops += [split, graph.ReshapeOp(split.results[1 if start > 0 else 0],
                                       result_type=out_type)]
    else:
        raise AssertionError(f"no graph expansion for {layer.name}")
    ops.extend(_activation_ops(layer, ops[-1].results[0]))
    return ops


def unfuse(layer: mrvl.MrvlLayerOp, reason: str) -> None:
    """Replace `layer` in place by its graph ops, marked with `reason` and the layer name."""
    ops = unfuse_ops(layer)
    names = layer.attributes.get(ONNX_NODES_ATTR)
    node = names.data[0] if isinstance(names, ArrayAttr) and names.data else None
    for op in ops:
        op.attributes[CPU_REASON_ATTR] = StringAttr(reason)
        op.attributes[LAYER_ATTR] = StringAttr(layer.name_str)
        if isinstance(node, StringAttr):
            op.attributes["onnx_node"] = node
    Rewriter.replace_op(layer, ops, [ops[-1].results[0]])


# ----------------------------------------------------------------------------- grouping


def _is_const(op: Operation) -> bool:
    return isinstance(op, graph.ConstantOp)


def _target(op: Operation) -> str:
    return ACCEL if isinstance(op, mrvl.MrvlLayerOp) else CPU


def _body_ops(fn: func.FuncOp) -> list[Operation]:
    return [op for op in fn.body.block.ops if not isinstance(op, func.ReturnOp)]


def compute_groups(fn: func.FuncOp, rfc: bool) -> dict[Operation, tuple[int, str]]:
    """(phase, target) of every non-constant op of `fn` (see the module docstring)."""
    key: dict[Operation, tuple[int, str]] = {}
    for op in _body_ops(fn):
        if _is_const(op):
            continue
        target = _target(op)
        phase = 0
        for value in op.operands:
            producer = value.owner
            if not isinstance(producer, Operation) or producer not in key:
                continue
            p, t = key[producer]
            phase = max(phase, p + (t != target))
        key[op] = (phase, target)
    if rfc:
        key = {op: ((0, ACCEL) if t == ACCEL else (1, CPU)) for op, (_, t) in key.items()}
    return key


def _depends_on_cpu(fn: func.FuncOp) -> list[mrvl.MrvlLayerOp]:
    """Layers that (transitively) use a CPU result: not allowed in rfc-first-revision."""
    tainted: set[Operation] = set()
    found = []
    for op in _body_ops(fn):
        if _is_const(op):
            continue
        uses_cpu = any(
            isinstance(v.owner, Operation) and v.owner in tainted for v in op.operands
        )
        if not isinstance(op, mrvl.MrvlLayerOp) or uses_cpu:
            tainted.add(op)
            if isinstance(op, mrvl.MrvlLayerOp):
                found.append(op)
    return found


def _compute_free_groups(
    fn: func.FuncOp, key: dict[Operation, tuple[int, str]]
) -> list[mrvl.MrvlLayerOp]:
    """Layers of accelerator groups with no conv2d or dense."""
    members: dict[tuple[int, str], list[Operation]] = {}
    for op, k in key.items():
        members.setdefault(k, []).append(op)
    found: list[mrvl.MrvlLayerOp] = []
    for (_, target), ops in members.items():
        if target != ACCEL or any(isinstance(o, mrvl.COMPUTE_OPS) for o in ops):
            continue
        found.extend(o for o in ops if isinstance(o, mrvl.MrvlLayerOp))
    return found


# ----------------------------------------------------------------------------- outlining


def _outline(module: ModuleOp, fn: func.FuncOp, key: dict[Operation, tuple[int, str]]) -> None:
    """Move each (phase, target) group into its own function and call them from `fn`."""
    block = fn.body.block
    order = sorted(set(key.values()), key=lambda k: (k[0], k[1] != ACCEL))
    members: dict[tuple[int, str], list[Operation]] = {k: [] for k in order}
    for op in _body_ops(fn):
        if op in key:
            members[key[op]].append(op)
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    external_uses: dict[SSAValue, bool] = {}
    for op in _body_ops(fn):
        for value in op.results:
            external_uses[value] = any(
                use.operation is ret or key.get(use.operation) != key.get(op)
                for use in value.uses
            )
    new_main: list[Operation] = []
    mapping: dict[SSAValue, SSAValue] = {a: a for a in block.args}
    counters = {ACCEL: 0, CPU: 0}
    new_funcs: list[func.FuncOp] = []
    for k in order:
        ops = members[k]
        target = k[1]
        prefix = mrvl.ACCEL_PREFIX if target == ACCEL else mrvl.CPU_PREFIX
        sym = f"{prefix}{counters[target]}"
        counters[target] += 1
        inputs: list[SSAValue] = []
        in_group = set(ops)
        for op in ops:
            for value in op.operands:
                owner = value.owner
                if isinstance(owner, Operation) and (owner in in_group or _is_const(owner)):
                    continue
                if value not in inputs:
                    inputs.append(value)
        outputs = [v for op in ops for v in op.results if external_uses[v]]
        body = Block(arg_types=[v.type for v in inputs])
        local: dict[SSAValue, SSAValue] = dict(zip(inputs, body.args))
        for op in ops:
            for value in op.operands:
                owner = value.owner
                if not (isinstance(owner, graph.ConstantOp)):
                    continue
                if target == ACCEL or value not in local:
                    const = owner.clone()
                    if target == ACCEL:
                        const.attributes.clear()
                    body.add_op(const)
                    local[value] = const.results[0]
            new_op = op.clone(value_mapper=local)
            body.add_op(new_op)
            for old, new in zip(op.results, new_op.results):
                local[old] = new
        body.add_op(func.ReturnOp(*[local[v] for v in outputs]))
        sub = func.FuncOp(sym, ([v.type for v in inputs], [v.type for v in outputs]), Region(body))
        sub.attributes[TARGET_ATTR] = StringAttr(target)
        new_funcs.append(sub)
        call = func.CallOp(sym, [mapping[v] for v in inputs], [v.type for v in outputs])
        new_main.append(call)
        for old, new in zip(outputs, call.results):
            mapping[old] = new
    for value in ret.operands:
        owner = value.owner
        if isinstance(owner, graph.ConstantOp) and value not in mapping:
            const = owner.clone()
            new_main.append(const)
            mapping[value] = const.results[0]
    new_main.append(func.ReturnOp(*[mapping[v] for v in ret.operands]))
    for old in reversed(list(block.ops)):
        old.detach()
        old.erase()
    block.add_ops(new_main)
    anchor: Operation = fn
    for sub in new_funcs:
        module.body.block.insert_op_after(sub, anchor)
        anchor = sub


# ----------------------------------------------------------------------------- the pass


def _layer_names(fn: func.FuncOp) -> dict[str, list[mrvl.MrvlLayerOp]]:
    """Layer name and ONNX node name -> layers."""
    names: dict[str, list[mrvl.MrvlLayerOp]] = {}
    for op in _body_ops(fn):
        if not isinstance(op, mrvl.MrvlLayerOp):
            continue
        names.setdefault(op.name_str, []).append(op)
        onnx_nodes = op.attributes.get(ONNX_NODES_ATTR)
        if isinstance(onnx_nodes, ArrayAttr):
            for s in onnx_nodes.data:
                names.setdefault(s.data, []).append(op)  # type: ignore[union-attr]
    return names


def _graph_node_names(fn: func.FuncOp) -> set[str]:
    found = set()
    for op in _body_ops(fn):
        node = op.attributes.get("onnx_node")
        if isinstance(node, StringAttr):
            found.add(node.data)
    return found


@dataclass(frozen=True)
class MrvlPartitionPass(ModulePass):
    """Partition `@main` into accelerator and CPU sub-graphs (see the module docstring)."""

    name = "mrvl-partition"

    mode: str = "default"
    cpu_layers: tuple[str, ...] = ()
    max_layers: int = -1
    require_compute: bool = True
    report: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PartitionError(
                f"mrvl-partition: invalid mode \"{self.mode}\", expected one of {list(MODES)}"
            )
        if not isinstance(self.max_layers, int) or self.max_layers < -1:
            raise PartitionError(
                f"mrvl-partition: invalid max-layers {self.max_layers!r}, expected an integer "
                ">= 0 (or -1 for no limit)"
            )
        if isinstance(self.cpu_layers, str):
            object.__setattr__(self, "cpu_layers", (self.cpu_layers,))

    @classmethod
    def from_spec(cls, spec: ArgSpec) -> MrvlPartitionPass:
        """Options from pipeline text; a bad option is a PartitionError, not a traceback."""
        try:
            return super().from_spec(spec)
        except ValueError as exc:
            raise PartitionError(f"mrvl-partition: invalid option: {exc}") from exc

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fn = _main(op)
        self._force_cpu(fn)
        rfc = self.mode == "rfc-first-revision"
        while True:
            if rfc:
                late = _depends_on_cpu(fn)
                for layer in late:
                    unfuse(layer, "rfc-first-revision: the accelerator sub-graph may only use "
                           "model inputs, and this layer depends on a CPU result")
                if late:
                    continue
            key = compute_groups(fn, rfc)
            if not self.require_compute:
                break
            weak = _compute_free_groups(fn, key)
            if not weak:
                break
            for layer in weak:
                unfuse(layer, "accelerator region without conv2d or dense (require-compute)")
        _outline(op, fn, key)
        if self.report:
            from mrvl.lowering.offload_report import write_report

            write_report(op, self.report)

    def _force_cpu(self, fn: func.FuncOp) -> None:
        names = _layer_names(fn)
        known = set(names) | _graph_node_names(fn)
        unknown = [n for n in self.cpu_layers if n not in known]
        if unknown:
            layers = sorted({o.name_str for ops in names.values() for o in ops})
            raise PartitionError(
                f"mrvl-partition: unknown layer or node name(s) {unknown} in cpu-layers; "
                f"layers are {layers[:12]}{' ...' if len(layers) > 12 else ''}"
            )
        forced: set[mrvl.MrvlLayerOp] = set()
        for name in self.cpu_layers:
            forced.update(names.get(name, []))
        count = 0
        for op in _body_ops(fn):
            if not isinstance(op, mrvl.MrvlLayerOp):
                continue
            if op in forced:
                unfuse(op, "forced to the CPU by cpu-layers")
                continue
            if self.max_layers >= 0 and count >= self.max_layers:
                unfuse(op, f"beyond max-layers {self.max_layers}")
                continue
            count += 1


def _main(module: ModuleOp) -> func.FuncOp:
    fn = graph.find_function(module)
    if fn is not None:
        return fn
    raise PartitionError("mrvl-partition: the module has no func.func @main")


OPTION_NAMES = {"mode", "cpu_layers", "max_layers", "require_compute", "report"}
"""The options of `partition_for_mrvl` (the fields of `MrvlPartitionPass`)."""


def _make_pass(options: dict[str, Any]) -> MrvlPartitionPass:
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise PartitionError(
            f"partition_for_mrvl: unknown option(s) {unknown}; expected {sorted(OPTION_NAMES)}"
        )
    if "cpu_layers" in options:
        value = options["cpu_layers"]
        options = dict(options, cpu_layers=(value,) if isinstance(value, str) else tuple(value))
    return MrvlPartitionPass(**options)


def partition_for_mrvl(module: ModuleOp, **options: Any) -> ModuleOp:
    """Convert (if not done) and partition `module` in place; return it.

    The de-facto BYOC signature; options are `MrvlPartitionPass`'s fields (`mode`,
    `cpu_layers`, `max_layers`, `require_compute`, `report`). The Marvell information (layers,
    sub-graphs, CPU reasons) lives in the returned IR.
    """
    partition = _make_pass(options)
    fn = _main(module)
    if not any(isinstance(op, mrvl.MrvlLayerOp) for op in _body_ops(fn)):
        ConvertGraphToMrvlPass().apply(Context(), module)
    partition.apply(Context(), module)
    return module


def run_graph_passes(module: ModuleOp) -> ModuleOp:
    """The step-1 graph passes (cleanup, folding, NHWC layout: `graph-cleanup`) in place."""
    from mrvl.lowering.graph_pipeline import run_graph_cleanup

    return run_graph_cleanup(module, "NHWC")


def partition_module(module: ModuleOp, *, verify: bool = False, **options: Any) -> ModuleOp:
    """Step 1 on an imported module, in place: graph passes, convert, partition.

    `options` are `partition_for_mrvl`'s; `verify=True` verifies the IR after every step.
    (The driver, driver/compiler.py, imports the model first.)
    """
    partition = _make_pass(options)
    steps = (run_graph_passes, lambda m: ConvertGraphToMrvlPass().apply(Context(), m))
    for step in steps:
        step(module)
        if verify:
            module.verify()
    partition.apply(Context(), module)
    if verify:
        module.verify()
    return module


def layers_of(fn: func.FuncOp) -> list[mrvl.MrvlLayerOp]:
    return [op for op in fn.body.block.ops if isinstance(op, mrvl.MrvlLayerOp)]
