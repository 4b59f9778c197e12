"""`partition_for_mrvl(mod, **options) -> IRModule`: offload mrvl's layers of a Relax module.

Input: an IRModule from `tvm.relax.frontend.onnx.from_onnx` (static shapes, weights bound as
constants: `keep_params_in_input=False`). Output: the same module where every run of
offloaded layers is one function with the attributes `Codegen = "mrvl"` and
`global_symbol`, called from `main`; everything else is left to TVM's CPU path.

Pipeline: FoldConstant (the ONNX importer leaves conv biases as reshapes), dropout(x)[0] -> x
(inference), minimum(maximum(x, lo), hi) in TIR -> R.clip (TVM's ONNX Clip), batch norms
folded into the conv2d before them (as mrvl's graph passes fold them),
FuseOpsByPattern(patterns.PATTERN_TABLE, bind_constants=True, annotate_codegen=False) with
`patterns.layers_of_match` as the check, MergeCompositeFunctions. The cut options are
mrvl-partition's (lowering/mrvl_partition.py), applied to the matched layers in binding order
and repeated until nothing changes:

- `cpu_layers`: names of layers forced to the CPU: the Relax variable a layer's result is
  bound to (as `mod.show()` prints it, e.g. "lv3"); an unknown name is an error;
- `max_layers`: keep at most this many accelerator layers, the first ones (-1: no limit;
  layout transforms, which mrvl compile counts as layers, are not layers here: they are
  part of each region's binary);
- `require_compute`: send regions without a conv2d or dense layer back to the CPU (default
  true, as mrvl's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, is_tuple, is_tuple_get_item, rewrite_call, wildcard

from mrvl.errors import PartitionError
from mrvl.tvm.patterns import fusion_patterns, layers_of_match

COMPUTE_COMPOSITES = ("mrvl.conv2d", "mrvl.dense")
"""The layers `require_compute` asks a region to hold one of."""


def _drop_dropout(mod: tvm.IRModule) -> tvm.IRModule:
    """dropout(x)[0] -> x in every Relax function (dropout is the identity at inference)."""
    data = wildcard()
    pattern = is_tuple_get_item(is_op("relax.nn.dropout")(data), 0)
    updates = {}
    for gv, fn in mod.functions.items():
        if isinstance(fn, relax.Function):
            updates[gv] = rewrite_call(pattern, lambda _expr, matches: matches[data], fn)
    for gv, fn in updates.items():
        mod[gv] = fn
    return relax.transform.DeadCodeElimination()(mod)


def _topi_elementwise(mod: tvm.IRModule, callee: relax.Expr, name: str) -> bool:
    """Whether `callee` is the TIR function TVM's ONNX importer emits for topi.`name`
    (`bb.emit_te(topi.maximum, x, bound)`: a function named `<name>...` whose one block is
    `T_<name>`)."""
    if not isinstance(callee, relax.GlobalVar) or not callee.name_hint.startswith(name):
        return False
    return f'"T_{name}"' in mod[callee].script()


def _scalar(expr: relax.Expr) -> float | None:
    if not isinstance(expr, tvm.ir.GenericConst):
        return None
    value = expr.value.numpy()
    return float(value) if value.shape == () and value.dtype == "float32" else None


def _clips_from_call_tir(mod: tvm.IRModule) -> tvm.IRModule:
    """minimum(maximum(x, low), high) as TVM's ONNX importer writes an ONNX Clip (call_tir of
    TOPI functions, after FoldConstant) -> R.clip(x, low, high), which the patterns match."""
    data, low, high = wildcard(), is_const(), is_const()
    max_fn, min_fn = wildcard(), wildcard()
    inner = is_op("relax.call_tir")(max_fn, is_tuple([data, low]))
    pattern = is_op("relax.call_tir")(min_fn, is_tuple([inner, high]))

    def rewrite(expr: relax.Expr, matches: Any) -> relax.Expr:
        if not (_topi_elementwise(mod, matches[max_fn], "maximum")
                and _topi_elementwise(mod, matches[min_fn], "minimum")):
            return expr
        bounds = _scalar(matches[low]), _scalar(matches[high])
        if bounds[0] is None or bounds[1] is None or bounds[0] > bounds[1]:
            return expr
        return relax.op.clip(matches[data], bounds[0], bounds[1])

    updates = {gv: rewrite_call(pattern, rewrite, fn) for gv, fn in mod.functions.items()
               if isinstance(fn, relax.Function)}
    for gv, fn in updates.items():
        mod[gv] = fn
    return relax.transform.DeadCodeElimination()(mod)


def _use_counts(fn: relax.Function) -> dict[relax.Expr, int]:
    """How often each variable is read in `fn` (bindings and result)."""
    counts: dict[relax.Expr, int] = {}

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1
        elif isinstance(expr, relax.Call):
            for arg in expr.args:
                visit(arg)
        elif isinstance(expr, relax.Tuple):
            for item in expr.fields:
                visit(item)
        elif isinstance(expr, relax.TupleGetItem):
            visit(expr.tuple_value)

    for binding in _bindings(fn):
        visit(binding.value)
    visit(fn.body.body)
    return counts


def _folded_conv_constants(weight: np.ndarray, bias: np.ndarray | None,
                           params: list[np.ndarray], epsilon: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of conv2d(x, W, b) followed by batch_norm, computed as
    graph-fold-batch-norm (lowering/graph_fold_batch_norm.py) computes them."""
    scale, beta, mean, var = (p.astype(np.float64) for p in params)
    factor = scale / np.sqrt(var + epsilon)
    new_weight = weight * factor.astype(weight.dtype).reshape(-1, 1, 1, 1)
    b = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
    return new_weight, ((b - mean) * factor + beta).astype(weight.dtype)


def _fold_batch_norms(mod: tvm.IRModule) -> tvm.IRModule:
    """batch_norm(conv2d(x, W)[+ b])[0] -> conv2d(x, W') + b' where the conv's result has no
    other use: the fold mrvl's graph passes make, done first so that a conv with its batch
    norm and no activation matches as one layer (FuseOpsByPattern roots are calls, never the
    TupleGetItem that reads a batch norm's result)."""
    data, weight, bias = wildcard(), is_const(), is_const()
    params = [is_const() for _ in range(4)]
    conv = is_op("relax.nn.conv2d")(data, weight)
    with_bias = is_op("relax.add")(conv, bias)
    batch_norm = is_op("relax.nn.batch_norm")(conv | with_bias, *params)
    pattern = is_tuple_get_item(batch_norm, 0)
    fn = mod["main"]
    uses = _use_counts(fn)
    bound = {binding.value: binding.var for binding in _bindings(fn)}

    def single_use(expr: relax.Expr) -> bool:
        var = bound.get(expr)
        return var is not None and uses.get(var, 0) == 1

    def rewrite(expr: relax.Expr, matches: Any) -> relax.Expr:
        conv_call = matches[conv]
        attrs = conv_call.attrs
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or \
                attrs.out_dtype not in ("", "float32", None) or not single_use(conv_call):
            return expr
        bias_value = None
        if bias in matches:
            if not single_use(matches[with_bias]):
                return expr
            bias_value = matches[bias].value.numpy().reshape(-1)
        weight_value = matches[weight].value.numpy()
        if weight_value.dtype != np.float32 or \
                (bias_value is not None and bias_value.size != weight_value.shape[0]):
            return expr
        norm_attrs = matches[batch_norm].attrs
        if int(norm_attrs.axis) != 1 or norm_attrs.training:
            return expr
        new_weight, new_bias = _folded_conv_constants(
            weight_value, bias_value, [matches[p].value.numpy() for p in params],
            float(np.float32(norm_attrs.epsilon)))
        folded = relax.op.nn.conv2d(
            matches[data], relax.const(new_weight), strides=attrs.strides,
            padding=attrs.padding, dilation=attrs.dilation, groups=attrs.groups,
            data_layout="NCHW", kernel_layout="OIHW")
        return relax.op.add(folded, relax.const(new_bias.reshape(1, -1, 1, 1)))

    mod["main"] = rewrite_call(pattern, rewrite, fn)
    return relax.transform.DeadCodeElimination()(mod)


def _composite_calls(mod: tvm.IRModule) -> list[tuple[str, str]]:
    """(layer name, composite name) of every composite call in `main`, in binding order."""
    calls = []
    for binding in _bindings(mod["main"]):
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
            callee = mod[value.op]
            composite = _composite(callee)
            if composite is not None:
                calls.append((_layer_name(callee, binding.var), composite))
    return calls


def _regions(mod: tvm.IRModule) -> list[tuple[str, list[tuple[str, str]]]]:
    """(region symbol, [(result variable name, composite name)]) of every merged region."""
    regions = []
    for gv, fn in mod.functions.items():
        if not isinstance(fn, relax.Function) or fn.attrs is None or \
                "Codegen" not in fn.attrs:
            continue
        layers = []
        for block in fn.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Call) and isinstance(value.op, relax.Var):
                    callee = _bound_function(fn, value.op)
                    if callee is not None and _composite(callee) is not None:
                        layers.append((_layer_name(callee, binding.var), _composite(callee)))
        regions.append((str(fn.attrs["global_symbol"]), layers))
    return regions


def _bound_function(fn: relax.Function, var: relax.Var) -> relax.Function | None:
    for block in fn.body.blocks:
        for binding in block.bindings:
            if binding.var.same_as(var) and isinstance(binding.value, relax.Function):
                return binding.value
    return None


def _layer_name(composite: relax.Function, outer: relax.Var) -> str:
    """A composite's layer name: the variable its result was bound to in `main`."""
    name = composite.attrs.get("mrvl.layer") if composite.attrs is not None else None
    return str(name) if name is not None else outer.name


def _fuse(mod: tvm.IRModule, rejected: set[str]) -> tuple[tvm.IRModule, dict[str, set[str]]]:
    """FuseOpsByPattern with the mrvl check; a match that covers a binding of `rejected`
    is refused (a layer sent to the CPU goes there whole, as mrvl-partition unfuses it).
    Records on each composite function its layer name (the variable the original `main`
    bound the match's result to); returns the module and layer name -> covered bindings."""
    order = {binding.var.name: k for k, binding in enumerate(_bindings(mod["main"]))}
    accepted: dict[str, set[str]] = {}

    def check(context: relax.transform.PatternCheckContext) -> bool:
        bound = context.value_to_bound_var.get(context.matched_expr)
        name = bound.name if bound is not None else ""
        covered = {var.name for var in context.matched_bindings.keys()} | {name}
        if covered & rejected:
            return False
        if layers_of_match(context.matched_expr, context.matched_bindings) is None:
            return False
        accepted[name] = covered
        return True

    fused = relax.transform.FuseOpsByPattern(
        fusion_patterns(check), bind_constants=True, annotate_codegen=False)(mod)
    names = sorted(accepted, key=lambda n: order.get(n, len(order)))
    calls = [(binding, fused[binding.value.op]) for binding in _bindings(fused["main"])
             if isinstance(binding.value, relax.Call)
             and isinstance(binding.value.op, relax.GlobalVar)
             and _composite(fused[binding.value.op]) is not None]
    if len(calls) != len(names):  # unexpected: fall back to the fused module's names
        names = [binding.var.name for binding, _ in calls]
    for (binding, callee), name in zip(calls, names, strict=True):
        fused[binding.value.op] = callee.with_attr("mrvl.layer", name)
    return fused, {name: accepted.get(name, {name}) for name in names}


def _bindings(fn: relax.Function) -> list[relax.Binding]:
    return [binding for block in fn.body.blocks for binding in block.bindings]


def _composite(fn: relax.Function) -> str | None:
    if fn.attrs is None or "Composite" not in fn.attrs:
        return None
    return str(fn.attrs["Composite"])


def partition_for_mrvl(mod: tvm.IRModule, *, cpu_layers: Sequence[str] | str = (),
                       max_layers: int = -1, require_compute: bool = True,
                       **unknown: Any) -> tvm.IRModule:
    """Offload mrvl's layers of `mod` (module docstring); returns a new IRModule."""
    if unknown:
        raise PartitionError(f"partition_for_mrvl: unknown option(s) {sorted(unknown)}; "
                             "expected cpu_layers, max_layers, require_compute")
    if not isinstance(max_layers, int) or max_layers < -1:
        raise PartitionError(f"partition_for_mrvl: invalid max_layers {max_layers!r}, expected "
                             "an integer >= 0 (or -1 for no limit)")
    forced = {cpu_layers} if isinstance(cpu_layers, str) else set(cpu_layers)
    _check_static(mod)
    mod = relax.transform.FoldConstant()(mod)
    mod = _fold_batch_norms(_clips_from_call_tir(_drop_dropout(mod)))
    rejected: set[str] = set()
    checked_names = False
    while True:
        fused, covers = _fuse(mod, rejected)
        calls = _composite_calls(fused)
        if not checked_names:
            known = {name for name, _ in calls}
            unknown_names = sorted(forced - known)
            if unknown_names:
                raise PartitionError(
                    f"partition_for_mrvl: unknown layer name(s) {unknown_names} in cpu_layers; "
                    f"layers are {sorted(known)[:12]}{' ...' if len(known) > 12 else ''}")
            checked_names = True
        to_cpu = {name for name, _ in calls if name in forced}
        kept = [name for name, _ in calls if name not in forced]
        if max_layers >= 0:
            to_cpu |= set(kept[max_layers:])
        merged = relax.transform.MergeCompositeFunctions()(fused)
        if require_compute:
            for _, layers in _regions(merged):
                if not any(kind in COMPUTE_COMPOSITES for _, kind in layers):
                    to_cpu |= {name for name, _ in layers}
        more = set().union(*(covers.get(name, {name}) for name in to_cpu)) - rejected
        if not more:
            return merged
        rejected |= more


def _check_static(mod: tvm.IRModule) -> None:
    """mrvl compiles static shapes: every parameter of `main` must have one."""
    from mrvl.tvm.relax_to_onnx import UnsupportedRelaxOp, shape_of

    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise PartitionError("partition_for_mrvl: the module has no function main")
    for param in mod["main"].params:
        try:
            shape_of(param)
        except UnsupportedRelaxOp:
            raise PartitionError(
                f"partition_for_mrvl: input {param.name} has no static shape ({param.ty}); "
                "fix it when importing, e.g. from_onnx(model, shape_dict={name: [1, ...]})"
            ) from None


def offloaded_layers(mod: tvm.IRModule) -> dict[str, list[tuple[str, str]]]:
    """Region symbol -> [(layer name, composite name)] of a partitioned module."""
    return dict(_regions(mod))
