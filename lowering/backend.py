"""The backend compiler (step 2: accelerator sub-graph -> model binary).

- `compile_function(fn, ...) -> CompiledSubgraph`: one accelerator sub-graph function through
  the ModulePasses mrvl-quantize, mrvl-tile-split, convert-mrvl-to-mlip, mlip-ocm-alloc,
  mlip-dma-schedule and then emission (`to_model_binary`), in one process without printing
  the IR; the result holds the scheduled `mlip.model`.
- `compile_json_pair(nodes, consts, ...) -> bytes`: the `mrvl-tvmircomp` counterpart (paths or
  already-loaded JSON documents).
- `read_pair(nodes, consts) -> func.FuncOp`: the accelerator function of a JSON pair.

The whole flow (ONNX model -> build directory, int8 calibration) is the driver's
(driver/compiler.py); int8 activation ranges come in as data.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mrvl.dialects.mlip import ModelOp
from mrvl.errors import CompileError
from mrvl.lowering.convert_mrvl_to_mlip import ConvertMrvlToMlipPass
from mrvl.lowering.mlip_dma_schedule import MlipDmaSchedulePass
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import MlipOcmAllocPass
from mrvl.lowering.mlip_residency import MlipResidencyPass
from mrvl.lowering.mrvl_extended_precision import MrvlExtendedPrecisionPass
from mrvl.lowering.mrvl_quantize import MrvlQuantizePass, Ranges
from mrvl.lowering.mrvl_tile_split import MrvlTileSplitPass
from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE, Machine, machine_of
from mrvl.mlip_binary import ModelBinary

PRECISIONS = ("auto", "storage", "targeted", "extended")
"""The fp16 precision options (lowering/mrvl_extended_precision.py); "auto" is the default."""
"""fp16 precision options: the storage policy alone (lowering/mrvl_precision.py), or with
the FCs of transformer sub-graphs in three fp16 GEMM passes (mrvl-extended-precision)."""


@dataclass
class CompiledSubgraph:
    """One compiled accelerator sub-graph: its scheduled `mlip.model` (for reports and
    listings) and its binary."""

    symbol: str
    model: ModelOp
    binary: ModelBinary
    data: bytes


def backend_passes(
    *,
    machine: Machine = DEFAULT_MACHINE,
    quantize: str = "fp16",
    io_dtype: str | None = None,
    ranges: Ranges | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    prefetch: bool = True,
    resident: bool = True,
    broadcast: str = "auto",
    precision: str = "auto",
) -> tuple[list[ModulePass], list[ModulePass]]:
    """The backend pipeline as ModulePass objects: (annotation passes on the mrvl
    functions, lowering passes from mrvl to a scheduled `mlip.model`); `prefetch=False`
    keeps every layer's weight loads behind the barrier before it, `resident=False` every
    activation in DRAM between layers (the schedule before the OCM-resident one),
    `broadcast` says where prefetched weights that several tiles need are loaded once and
    shared with TILE_COPY: "auto" (where that pays), "all" (every boundary), "none" (every
    tile loads its own; mlip-dma-schedule). `precision` (fp16 builds; `PRECISIONS`,
    mrvl-extended-precision): "auto" (default) stacks the weights' low half onto the FCs of
    transformer sub-graphs that read one token's row (a class token), "targeted" onto
    those of every transformer sub-graph, "extended" splits every FC of transformer
    sub-graphs into three fp16 GEMM passes, "storage" keeps the precision policy alone.
    int8 builds take "auto" (which does nothing there) only."""
    if precision not in PRECISIONS:
        raise CompileError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto" and quantize != "fp16":
        raise CompileError(f"precision '{precision}' applies to fp16 builds only")
    annotate: list[ModulePass] = [
        MrvlExtendedPrecisionPass(mode=precision if quantize == "fp16" else "storage"),
        MrvlQuantizePass(mode=quantize, io_dtype=io_dtype or "", ranges=ranges),
        MrvlTileSplitPass(num_tiles=machine.tiles, ocm_size=machine.ocm_bytes,
                          page_size=machine.page_bytes, resident=resident, machine=machine),
    ]
    lower: list[ModulePass] = [
        ConvertMrvlToMlipPass(ocm_size=machine.ocm_bytes, page_size=machine.page_bytes,
                              input_names=tuple(input_names or ()),
                              output_names=tuple(output_names or ()), machine=machine),
        MlipResidencyPass(enabled=resident),
        MlipOcmAllocPass(prefetch=prefetch),
        MlipDmaSchedulePass(prefetch=prefetch, broadcast=broadcast),
    ]
    return annotate, lower


def compile_function(
    fn: func.FuncOp,
    *,
    machine: Machine = DEFAULT_MACHINE,
    quantize: str = "fp16",
    io_dtype: str | None = None,
    ranges: Ranges | None = None,
    model_id: int = 0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    prefetch: bool = True,
    resident: bool = True,
    broadcast: str = "auto",
    precision: str = "auto",
) -> CompiledSubgraph:
    """Compile one accelerator sub-graph function for `machine` through the backend pipeline
    (`backend_passes`), in one process without printing: `machine.tiles` tiles, blocks
    sized to `machine.ocm_bytes` in pages of `machine.page_bytes`, tile splits ranked by its
    timing; the binary records it. int8 needs the activation `ranges`
    (driver/calibration.py); `input_names` / `output_names` name the binary's I/O tensors
    (default: the function's); `prefetch=False` turns off the weight prefetch across layer
    boundaries (mlip-dma-schedule), `broadcast` ("auto", "all", "none") where prefetched
    weights are shared between tiles (`backend_passes`). The annotation passes run on `fn` (annotated in place, left
    where it is), the lowering passes on a copy of it."""
    if not isinstance(machine, Machine):
        raise CompileError(f"machine: expected a Machine, got {type(machine).__name__}")
    annotate, lower = backend_passes(
        machine=machine, quantize=quantize, io_dtype=io_dtype, ranges=ranges,
        input_names=input_names, output_names=output_names, prefetch=prefetch,
        resident=resident, broadcast=broadcast, precision=precision)
    with _collector_paused():
        return _compile(fn, annotate, lower, model_id)


@contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while the pipeline builds its thousands of
    ops (its full scans of the live IR cost about a quarter of a ResNet-50 compile)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compile(fn: func.FuncOp, annotate: list[ModulePass], lower: list[ModulePass],
             model_id: int) -> CompiledSubgraph:
    ctx = Context()
    parent = fn.parent_block()
    after = fn.next_op
    if parent is not None:
        parent.detach_op(fn)
    holder = ModuleOp([fn])
    try:
        for p in annotate:
            p.apply(ctx, holder)
        work = ModuleOp([fn.clone()])
    finally:
        holder.body.block.detach_op(fn)
        if parent is not None:
            if after is not None:
                parent.insert_op_before(fn, after)
            else:
                parent.add_op(fn)
    for p in lower:
        p.apply(ctx, work)
    model = next(op for op in work.ops if isinstance(op, ModelOp))
    binary = to_model_binary(model, model_id)
    return CompiledSubgraph(fn.sym_name.data, model, binary, binary.to_bytes())


def _json_doc(value: Any, what: str) -> tuple[Any, str]:
    if isinstance(value, dict):
        return value, f"<{what}>"
    import json

    path = Path(value)
    try:
        return json.loads(path.read_text()), str(path)
    except OSError as error:
        raise CompileError(f"cannot read {what} '{path}': {error}") from None
    except ValueError as error:
        raise CompileError(f"{what} '{path}' is not valid JSON: {error}") from None


def read_pair(nodes: Any, consts: Any) -> func.FuncOp:
    """The accelerator function of a JSON pair (paths or loaded documents)."""
    from mrvl.lowering.mrvl_json import JsonPairError, check_json_pair, json_to_function

    nodes_doc, nodes_name = _json_doc(nodes, "Nodes-JSON")
    consts_doc, consts_name = _json_doc(consts, "Constants-JSON")
    if not isinstance(nodes_doc, dict) or not isinstance(consts_doc, dict):
        raise CompileError(f"'{nodes_name}' / '{consts_name}' must hold JSON objects")
    problems = check_json_pair(nodes_doc, consts_doc)
    if problems:
        raise CompileError(
            f"JSON pair '{nodes_name}' / '{consts_name}' is malformed: " + "; ".join(problems))
    try:
        fn = json_to_function(nodes_doc, consts_doc)
    except JsonPairError as error:
        raise CompileError(f"'{nodes_name}': {error}") from None
    ModuleOp([fn])
    return fn


def compile_json_pair(nodes: Any, consts: Any, **options: Any) -> bytes:
    """Nodes-JSON + Constants-JSON (paths or dicts) -> model binary bytes.

    Options as `compile_function` (machine, quantize, io_dtype, ranges, model_id), or
    num_tiles / ocm_size / page_size / machine overrides (`mrvl.machine.machine_of`); the
    driver's `compile_json_pair` takes calibration inputs instead.
    """
    fn = read_pair(nodes, consts)
    options["machine"] = machine_of(
        options.pop("machine", None), int(options.pop("num_tiles", 1)),
        int(options.pop("ocm_size", isa.DEFAULT_OCM_SIZE)),
        int(options.pop("page_size", isa.DEFAULT_PAGE_SIZE)))
    return compile_function(fn, **options).data
