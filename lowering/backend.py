"""The backend compiler's Python API (step 2: JSON pair -> model binary; and the whole flow).

- `compile_function(fn, ...) -> CompiledSubgraph`: one accelerator sub-graph function through
  mlip-quantize, mlip-tile-split, convert-mrvl-to-mlip, mlip-ocm-alloc, mlip-dma-schedule
  and emission, in one process without printing the IR.
- `compile_json_pair(nodes, consts, ...) -> bytes`: the `mrvl-tvmircomp` counterpart (paths or
  already-loaded JSON documents).
- `compile_model(onnx_path, out_dir, ...) -> Manifest`: step 1 and step 2, writing the build
  directory of docs/build-dir.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mrvl.errors import CompileError
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.lowering.mlip_plan import Program
from mrvl.lowering.mlip_quantize import accelerator_functions, quantize_function
from mrvl.lowering.mlip_tile_split import split_function
from mrvl.sim import mlip_isa as isa
from mrvl.sim.mlip_binary import ModelBinary


@dataclass
class CompiledSubgraph:
    """One compiled accelerator sub-graph: its program (for reports) and binary."""

    symbol: str
    program: Program
    binary: ModelBinary
    data: bytes


def compile_function(
    fn: func.FuncOp,
    *,
    num_tiles: int = 1,
    quantize: str = "fp16",
    io_dtype: str | None = None,
    calibration: Sequence[Sequence[np.ndarray]] | None = None,
    ocm_size: int = isa.DEFAULT_OCM_SIZE,
    page_size: int = isa.DEFAULT_PAGE_SIZE,
    model_id: int = 0,
) -> CompiledSubgraph:
    """Compile one accelerator sub-graph function (annotated in place)."""
    quantize_function(fn, quantize, io_dtype, calibration)
    split_function(fn, num_tiles)
    prog = convert_function(fn, ocm_size, page_size)
    allocate_ocm(prog)
    schedule(prog)
    binary = to_model_binary(prog, model_id)
    return CompiledSubgraph(fn.sym_name.data, prog, binary, binary.to_bytes())


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

    Options as `compile_function` (num_tiles, quantize, io_dtype, calibration, ocm_size,
    page_size); `calibration` may also be an .npz path.
    """
    fn = read_pair(nodes, consts)
    calibration = options.pop("calibration", None)
    if isinstance(calibration, str | Path):
        from mrvl.lowering.mlip_quantize import load_calibration

        calibration = load_calibration(str(calibration), fn)
    return compile_function(fn, calibration=calibration, **options).data


def compile_module(module: ModuleOp, **options: Any) -> list[CompiledSubgraph]:
    """Compile every accelerator sub-graph of a partitioned module."""
    return [compile_function(fn, **options) for fn in accelerator_functions(module)]
