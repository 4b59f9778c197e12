"""`graph-cleanup` and `run_graph_cleanup`: the graph passes in the order that makes each
one see what the previous ones exposed.

0. `graph-widen-f16` (a half-precision model's f16 tensors are computed as f32, with Cast
   ops at the borders, so the patterns below and the accelerator see f32 ops);
1. `graph-remove-identity` (identity / dropout out of the way of every pattern below);
2. `graph-fold-constants` (shape arithmetic and weight preprocessing become constants);
3. `graph-cancel-transposes` (no-op and back-to-back transposes), then
   `graph-gather-rows-early` (a one-row Gather moves above the row-wise ops feeding it:
   a ViT's last block runs on its class token only);
4. `graph-conv-add-to-bias`, `graph-fold-batch-norm`, `graph-conv-add-to-bias` (conv + add
   + batch-norm + add chains in either order end as one conv2d with bias; gemm / matmul with
   constant weights become dense + bias_add);
5. with layout NHWC: `graph-layout-nhwc` then `graph-cancel-transposes` and
   `graph-fold-constants` again (layout transforms of constants become constants).

Input: an imported graph-dialect module. Output: the same values (rtol 1e-4 / atol 1e-5 for
the folded float arithmetic), in NHWC / OHWI for every op the accelerator takes when
layout = "NHWC", with layout transforms only at the borders of the NHWC regions. Like every
xDSL greedy rewrite, each pass also erases `Pure` ops whose results are unused. Running the
cleanup twice changes nothing the second time.

ResNet-50 (25.6M parameters): about 0.3 s for the whole cleanup
(`bench/bench_graph_passes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mrvl.lowering.graph_cancel_transposes import GraphCancelTransposesPass
from mrvl.lowering.graph_conv_add_to_bias import GraphConvAddToBiasPass
from mrvl.lowering.graph_fold_batch_norm import GraphFoldBatchNormPass
from mrvl.lowering.graph_fold_constants import DEFAULT_MAX_ELEMENTS, GraphFoldConstantsPass
from mrvl.lowering.graph_gather_rows_early import GraphGatherRowsEarlyPass
from mrvl.lowering.graph_layout_nhwc import GraphLayoutNhwcPass
from mrvl.lowering.graph_pass_utils import GraphPassOptionError
from mrvl.lowering.graph_remove_identity import GraphRemoveIdentityPass
from mrvl.lowering.graph_widen_f16 import GraphWidenF16Pass

LAYOUTS = ("NHWC", "NCHW")


def graph_cleanup_passes(
    layout: str = "NHWC", max_elements: int = DEFAULT_MAX_ELEMENTS
) -> list[ModulePass]:
    """The cleanup passes in order; layout "NCHW" leaves the layout as imported."""
    if layout not in LAYOUTS:
        raise GraphPassOptionError(
            f"graph-cleanup: expected layout NHWC or NCHW, got '{layout}'"
        )
    fold = GraphFoldConstantsPass(max_elements=max_elements)
    passes: list[ModulePass] = [
        GraphWidenF16Pass(),
        GraphRemoveIdentityPass(),
        fold,
        GraphCancelTransposesPass(),
        GraphGatherRowsEarlyPass(),
        GraphConvAddToBiasPass(),
        GraphFoldBatchNormPass(),
        GraphConvAddToBiasPass(),
    ]
    if layout == "NHWC":
        passes += [GraphLayoutNhwcPass(), GraphCancelTransposesPass(), fold]
    return passes


def run_graph_cleanup(
    module: ModuleOp,
    layout: str = "NHWC",
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    ctx: Context | None = None,
) -> ModuleOp:
    """Apply the graph cleanup passes to `module` in place and return it."""
    if ctx is None:
        ctx = Context()
    for p in graph_cleanup_passes(layout, max_elements):
        p.apply(ctx, module)
    return module


@dataclass(frozen=True)
class GraphCleanupPass(ModulePass):
    """All graph cleanup passes in order (see the module docstring).

    Options:
      layout: "NHWC" (default: convert for the accelerator) or "NCHW" (no layout change).
      max-elements: the constant-folding size cap (see graph-fold-constants).
    """

    name = "graph-cleanup"

    layout: str = "NHWC"
    max_elements: int = DEFAULT_MAX_ELEMENTS

    def __post_init__(self) -> None:
        graph_cleanup_passes(self.layout, self.max_elements)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        run_graph_cleanup(op, self.layout, max_elements=self.max_elements, ctx=ctx)
