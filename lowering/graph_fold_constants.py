"""`graph-fold-constants`: evaluate graph ops whose operands are all constants.

Input: graph-dialect functions.
Output: every graph op (not `graph.constant`, not `graph.onnx`) whose operands are all
`graph.constant` results and which the numpy kernels of `mrvl.reference_kernels` can
evaluate is replaced by one `graph.constant` per result (carrying the op's `onnx_node` name),
provided its results hold at most `max-elements` elements in total or no more elements than
its operands (data movement, such as a transpose of a big weight, never grows memory). The
values are exactly what the reference executor computes (the same kernels). Ops that cannot
be evaluated (no kernel, kernel error, result dtype or shape not matching the op's result
type) are left alone, as are ops with a non-constant operand; unused constants are erased by
the rewrite driver.

The cap keeps folding from exploding memory (a broadcast of two small constants can be huge);
`max-elements=0` disables folding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from mrvl.dialects import graph
from mrvl.lowering.graph_pass_utils import GraphPassOptionError, constant_array, new_constant

DEFAULT_MAX_ELEMENTS = 1 << 20
"""Default cap on the number of elements a folded op may produce (4 MiB of float32)."""


def _python_value(attr: Attribute) -> Any:
    """A property as the kernels take it: ints / floats / strings / lists of those."""
    if isinstance(attr, DenseArrayBase):
        return list(attr.iter_values())
    if isinstance(attr, IntegerAttr):
        return int(attr.value.data)
    if isinstance(attr, FloatAttr):
        return float(attr.value.data)
    if isinstance(attr, StringAttr):
        return attr.data
    raise TypeError(f"unsupported property {attr}")


def _result_shape(op: Operation) -> list[int]:
    ty = op.results[0].type
    assert isinstance(ty, TensorType)
    return list(ty.get_shape())


_EXTRA_KWARGS: dict[type[Operation], Callable[[Operation], dict[str, Any]]] = {
    graph.ReshapeOp: lambda op: {"shape": _result_shape(op)},
    graph.ResizeOp: lambda op: {"sizes": _result_shape(op)},
}
"""Kernel arguments that the op keeps in its result type rather than in a property."""


def _kernel(op: Operation) -> Callable[..., Any] | None:
    from mrvl import reference_kernels

    _, _, short = op.name.partition(".")
    fn = getattr(reference_kernels, short, None)
    return fn if callable(fn) else None


def evaluate(op: Operation, inputs: list[np.ndarray]) -> list[np.ndarray] | None:
    """Run `op`'s reference kernel on `inputs`; None when it cannot be evaluated exactly
    into the op's result types."""
    fn = _kernel(op)
    if fn is None:
        return None
    try:
        kwargs = {k: _python_value(v) for k, v in op.properties.items()}
        extra = _EXTRA_KWARGS.get(type(op))
        if extra is not None:
            kwargs.update(extra(op))
        with np.errstate(all="ignore"):
            out = fn(*inputs, **kwargs)
    except Exception:  # a kernel that cannot take these inputs: leave the op unfolded
        return None
    outs = list(out) if isinstance(out, list | tuple) else [out]
    if len(outs) != len(op.results):
        return None
    results: list[np.ndarray] = []
    for arr, res in zip(outs, op.results):
        ty = res.type
        assert isinstance(ty, TensorType)
        arr = np.asarray(arr)
        if tuple(arr.shape) != tuple(ty.get_shape()):
            return None
        dtype = graph.numpy_dtype(ty.get_element_type())
        if arr.dtype != dtype:
            if arr.dtype.kind != dtype.kind:
                return None
            arr = arr.astype(dtype)
        results.append(arr)
    return results


@dataclass
class FoldConstantOpPattern(RewritePattern):
    """op(constant, ..., constant) -> constant(s), for ops the reference kernels evaluate."""

    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter):
        if isinstance(op, graph.ConstantOp | graph.OnnxOp):
            return
        if op.dialect_name() != "graph" or not op.operands or not op.results:
            return
        total = 0
        for res in op.results:
            ty = res.type
            if not isinstance(ty, TensorType):
                return
            total += math.prod(ty.get_shape())
        if self.max_elements == 0:
            return
        inputs = [constant_array(v) for v in op.operands]
        if any(a is None for a in inputs):
            return
        if total > max(self.max_elements, sum(a.size for a in inputs)):  # type: ignore[union-attr]
            return
        results = evaluate(op, inputs)  # type: ignore[arg-type]
        if results is None:
            return
        new_ops = [new_constant(arr, op) for arr in results]
        rewriter.replace(op, new_ops, [c.result for c in new_ops])


@dataclass(frozen=True)
class GraphFoldConstantsPass(ModulePass):
    """Fold ops whose operands are all constants.

    Options:
      max-elements: the largest number of result elements an op may have to be folded
        when its results are bigger than its operands (default 1048576; 0 disables
        folding).
    """

    name = "graph-fold-constants"

    max_elements: int = DEFAULT_MAX_ELEMENTS

    def __post_init__(self) -> None:
        if self.max_elements < 0:
            raise GraphPassOptionError(
                f"graph-fold-constants: expected max-elements >= 0, got {self.max_elements}"
            )

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier([FoldConstantOpPattern(self.max_elements)])
        ).rewrite_module(op)
