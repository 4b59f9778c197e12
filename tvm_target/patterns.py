"""Relax patterns of mrvl's accelerator layers and the check that decides each match.

`PATTERNS`: one Relax pattern per fused mrvl layer (conv2d with its bias, batch-norm and
activation; dense; pools; global average pool; eltwise add / multiply; concat; flatten),
longest variants first so a whole layer matches at once. `layers_of_match(expr, bindings)`
is the check: it translates the match to ONNX (relax_to_onnx.py) and runs mrvl's own step 1
on it (import, graph passes, convert-graph-to-mrvl with the legality predicates of
lowering/mrvl_legality.py, mrvl-partition); the match is offloaded when that step puts all of
it on the accelerator (as one layer, or a few that fuse in context). So TVM and
`mrvl compile` offload the same layers by construction.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, is_tuple_get_item, wildcard

from mrvl.errors import MrvlError
from mrvl.tvm.relax_to_onnx import subgraph_to_onnx

LAYOUT_TRANSFORM = "layout_transform"
ACTIVATIONS = ("relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh",
               "relax.nn.leakyrelu")


@dataclass(frozen=True)
class MatchedLayer:
    """The mrvl layer one match becomes: its Nodes-JSON layer name (Conv2D, FC, ...)."""

    kind: str


def _activation(x: DFPattern, op_name: str) -> DFPattern:
    if op_name == "relax.clip":
        return is_op(op_name)(x, wildcard(), wildcard())
    return is_op(op_name)(x)


def _with_tails(core: DFPattern, bias: bool, batch_norm: bool) -> list[DFPattern]:
    """`core` followed by an optional constant bias add, an optional batch norm and an
    optional activation: every combination, longest first."""
    variants = []
    for with_bias, with_bn, act in itertools.product(
            (True, False) if bias else (False,), (True, False) if batch_norm else (False,),
            (*ACTIVATIONS, None)):
        x = core
        if with_bias:
            x = is_op("relax.add")(x, is_const())
        if with_bn:
            x = is_tuple_get_item(is_op("relax.nn.batch_norm")(
                x, is_const(), is_const(), is_const(), is_const()), 0)
        if act is not None:
            x = _activation(x, act)
        variants.append((with_bias + with_bn + (act is not None), x))
    return [x for _, x in sorted(variants, key=lambda v: -v[0])]


def _conv2d() -> list[DFPattern]:
    return _with_tails(is_op("relax.nn.conv2d")(wildcard(), is_const()), True, True)


def _dense() -> list[DFPattern]:
    return _with_tails(is_op("relax.matmul")(wildcard(), is_const()), True, False)


def _eltwise(op_name: str) -> list[DFPattern]:
    return _with_tails(is_op(op_name)(wildcard(), wildcard()), False, False)


def _single(op_name: str) -> list[DFPattern]:
    return [is_op(op_name)(wildcard())]


def _flatten() -> list[DFPattern]:
    return [is_op("relax.reshape")(is_op("relax.permute_dims")(wildcard()), wildcard()),
            is_op("relax.reshape")(wildcard(), wildcard())]


def _concat() -> list[DFPattern]:
    return [is_op("relax.concat")(wildcard())]


PATTERN_TABLE: Mapping[str, Callable[[], list[DFPattern]]] = {
    "mrvl.conv2d": _conv2d,
    "mrvl.dense": _dense,
    "mrvl.maxpool2d": lambda: _single("relax.nn.max_pool2d"),
    "mrvl.avgpool2d": lambda: _single("relax.nn.avg_pool2d"),
    "mrvl.global_avgpool2d": lambda: [is_op("relax.mean")(wildcard())],
    "mrvl.add": lambda: _eltwise("relax.add"),
    "mrvl.multiply": lambda: _eltwise("relax.multiply"),
    "mrvl.concat": _concat,
    "mrvl.flatten": _flatten,
    "mrvl.activation": lambda: [_activation(wildcard(), act) for act in ACTIVATIONS],
}
"""Composite name -> its pattern variants, in priority order (the table's order too)."""


_VERDICTS: dict[bytes, tuple[MatchedLayer, ...] | None] = {}
"""`_layers_of_model`'s results by the SHA-256 of the fragment (a match is checked again
each time the cut options send FuseOpsByPattern round)."""


def _layers_of_model(model_bytes: bytes) -> tuple[MatchedLayer, ...] | None:
    """The layers mrvl's step 1 makes of an ONNX fragment, or None when any of it stays on
    the CPU (cached)."""
    key = hashlib.sha256(model_bytes).digest()
    if key not in _VERDICTS:
        _VERDICTS[key] = _step_one_layers(model_bytes)
    return _VERDICTS[key]


def _step_one_layers(model_bytes: bytes) -> tuple[MatchedLayer, ...] | None:
    import onnx

    from mrvl.dialects import mrvl as mrvl_dialect
    from mrvl.driver.compiler import (CompileOptions, PartitionOptions, Stage, compile,
                                      plan_steps)

    model = onnx.load_from_string(model_bytes)
    options = CompileOptions(partition=PartitionOptions(require_compute=False))
    try:
        result = compile(model, options, stop_after=Stage.PARTITION)
    except MrvlError:
        return None
    _, _, steps = plan_steps(result.module)
    if not steps or any(step["kind"] != "accelerator" for step in steps):
        return None
    layers = []
    for fn in mrvl_dialect.subgraph_functions(result.module):
        for op in fn.body.block.ops:
            if isinstance(op, mrvl_dialect.MrvlLayerOp):
                kind = op.LAYER_NAME
                if kind != LAYOUT_TRANSFORM:
                    layers.append(MatchedLayer(kind))
    return tuple(layers)


def layers_of_match(expr: relax.Expr, bindings: Mapping[relax.Var, relax.Expr]
                    ) -> tuple[MatchedLayer, ...] | None:
    """The mrvl layers a match becomes on the accelerator, or None (it stays on the CPU).
    Alone, a match may give a layer more than in context (a transpose before a flatten that
    the NHWC layout cancels inside a region)."""
    from mrvl.tvm.relax_to_onnx import UnsupportedRelaxOp

    try:
        model = subgraph_to_onnx(expr, bindings, "match")
    except UnsupportedRelaxOp:
        return None
    layers = _layers_of_model(model.SerializeToString())
    if not layers:
        return None
    return layers


def fusion_patterns(check: Callable[[relax.transform.PatternCheckContext], bool]
                    ) -> list[relax.transform.FusionPattern]:
    """The pattern table as FuseOpsByPattern's input, every variant checked by `check`."""
    patterns = []
    for name, make in PATTERN_TABLE.items():
        for pattern in make():
            patterns.append(relax.transform.FusionPattern(name, pattern, {}, check))
    return patterns
