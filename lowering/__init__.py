"""mrvl's passes and targets, one pass per file.

`get_all_passes()` and `get_all_targets()` map names to loader functions, so that mrvl-opt
imports a pass only when a pipeline names it.  Add one line per pass or target.
"""

from collections.abc import Callable

from xdsl.passes import ModulePass
from xdsl.utils.target import Target


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name (as written in a pipeline) -> loader of its ModulePass class."""
    return {
        "graph-remove-identity": lambda: __import__("mrvl.lowering.graph_remove_identity", fromlist=["_"]).GraphRemoveIdentityPass,
        "graph-fold-batch-norm": lambda: __import__("mrvl.lowering.graph_fold_batch_norm", fromlist=["_"]).GraphFoldBatchNormPass,
        "graph-fold-constants": lambda: __import__("mrvl.lowering.graph_fold_constants", fromlist=["_"]).GraphFoldConstantsPass,
        "graph-conv-add-to-bias": lambda: __import__("mrvl.lowering.graph_conv_add_to_bias", fromlist=["_"]).GraphConvAddToBiasPass,
        "graph-layout-nhwc": lambda: __import__("mrvl.lowering.graph_layout_nhwc", fromlist=["_"]).GraphLayoutNhwcPass,
        "graph-cancel-transposes": lambda: __import__("mrvl.lowering.graph_cancel_transposes", fromlist=["_"]).GraphCancelTransposesPass,
        "graph-gather-rows-early": lambda: __import__("mrvl.lowering.graph_gather_rows_early", fromlist=["_"]).GraphGatherRowsEarlyPass,
        "graph-widen-f16": lambda: __import__("mrvl.lowering.graph_widen_f16", fromlist=["_"]).GraphWidenF16Pass,
        "graph-cleanup": lambda: __import__("mrvl.lowering.graph_pipeline", fromlist=["_"]).GraphCleanupPass,
        "convert-graph-to-mrvl": lambda: __import__("mrvl.lowering.convert_graph_to_mrvl", fromlist=["_"]).ConvertGraphToMrvlPass,
        "mrvl-partition": lambda: __import__("mrvl.lowering.mrvl_partition", fromlist=["_"]).MrvlPartitionPass,
        "mrvl-quantize": lambda: __import__("mrvl.lowering.mrvl_quantize", fromlist=["_"]).MrvlQuantizePass,
        "mrvl-tile-split": lambda: __import__("mrvl.lowering.mrvl_tile_split", fromlist=["_"]).MrvlTileSplitPass,
        "convert-mrvl-to-mlip": lambda: __import__("mrvl.lowering.convert_mrvl_to_mlip", fromlist=["_"]).ConvertMrvlToMlipPass,
        "mlip-residency": lambda: __import__("mrvl.lowering.mlip_residency", fromlist=["_"]).MlipResidencyPass,
        "mlip-ocm-alloc": lambda: __import__("mrvl.lowering.mlip_ocm_alloc", fromlist=["_"]).MlipOcmAllocPass,
        "mlip-dma-schedule": lambda: __import__("mrvl.lowering.mlip_dma_schedule", fromlist=["_"]).MlipDmaSchedulePass,
        "mrvl-extended-precision": lambda: __import__("mrvl.lowering.mrvl_extended_precision", fromlist=["_"]).MrvlExtendedPrecisionPass,
    }


def get_all_targets() -> dict[str, Callable[[], type[Target]]]:
    """Target name (as given to `mrvl-opt -t`) -> loader of its Target class."""
    return {
        "mrvl-json": lambda: __import__("mrvl.lowering.mrvl_json", fromlist=["_"]).MrvlJsonTarget,
        "mlip-asm": lambda: __import__("mrvl.lowering.mlip_emit", fromlist=["_"]).MlipAsmTarget,
        "mlip-bin": lambda: __import__("mrvl.lowering.mlip_emit", fromlist=["_"]).MlipBinTarget,
    }
