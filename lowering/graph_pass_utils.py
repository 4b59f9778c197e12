"""Small helpers shared by the graph cleanup and layout passes (`lowering/graph_*.py`).

Invariants: nothing here mutates IR (`new_constant` builds a detached `graph.constant`); arrays
returned by `constant_array` are read-only views of the constant's raw bytes (never copied).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from mrvl.dialects import graph
from mrvl.errors import MrvlError


class GraphPassOptionError(MrvlError):
    """An invalid option given to one of the graph passes (names the pass and the option)."""


NCHW_TO_NHWC: tuple[int, ...] = (0, 2, 3, 1)
"""`transpose` permutation turning an NCHW tensor into NHWC (also OIHW -> OHWI)."""


def constant_op(value: SSAValue) -> graph.ConstantOp | None:
    """The `graph.constant` defining `value`, or None."""
    owner = value.owner
    if isinstance(owner, graph.ConstantOp):
        return owner
    return None


def constant_array(value: SSAValue) -> np.ndarray | None:
    """The read-only numpy view of the constant defining `value`, or None."""
    op = constant_op(value)
    if op is None:
        return None
    return op.to_numpy()


def shape_of(value: SSAValue) -> tuple[int, ...]:
    """Static shape of a tensor-typed value."""
    ty = value.type
    assert isinstance(ty, TensorType)
    return tuple(ty.get_shape())


def permutation_of(op: Operation) -> tuple[int, ...] | None:
    """The axis permutation a `graph.transpose` or `graph.layout_transform` applies
    (result.shape[i] = input.shape[perm[i]]), or None for any other op."""
    if isinstance(op, graph.TransposeOp):
        return graph.ints(op.perm)
    if isinstance(op, graph.LayoutTransformOp):
        return op.permutation
    return None


def compose(inner: Sequence[int], outer: Sequence[int]) -> tuple[int, ...]:
    """The single permutation equal to applying `inner` then `outer`."""
    return tuple(inner[p] for p in outer)


def is_identity(perm: Sequence[int]) -> bool:
    """Whether `perm` leaves every axis in place."""
    return all(i == p for i, p in enumerate(perm))


def permute_shape(shape: Sequence[int], perm: Sequence[int]) -> tuple[int, ...]:
    """`shape` after a transpose by `perm`."""
    return tuple(shape[p] for p in perm)


def new_constant(
    arr: np.ndarray, like: Operation | None = None, name_hint: str | None = None
) -> graph.ConstantOp:
    """A `graph.constant` holding `arr` (C order), carrying `like`'s `onnx_node` name and
    the SSA name `name_hint` (default: the name of `like`'s first result)."""
    # ascontiguousarray + tobytes is ~4x faster than tobytes of a strided view
    op = graph.ConstantOp.from_numpy(np.ascontiguousarray(arr))
    if like is not None and "onnx_node" in like.attributes:
        op.attributes["onnx_node"] = like.attributes["onnx_node"]
    if name_hint is None and like is not None and like.results:
        name_hint = like.results[0].name_hint
    op.result.name_hint = name_hint
    return op

