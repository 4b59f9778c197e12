"""The backend compiler (step 2: accelerator sub-graph -> model binary).

- `compile_function(fn, ...) -> CompiledSubgraph`: one accelerator sub-graph function through
  mlip-quantize, mlip-tile-split, convert-mrvl-to-mlip, mlip-ocm-alloc, mlip-dma-schedule
  and emission, in one process without printing the IR.
- `compile_json_pair(nodes, consts, ...) -> bytes`: the `mrvl-tvmircomp` counterpart (paths or
  already-loaded JSON documents).
- `read_pair(nodes, consts) -> func.FuncOp`: the accelerator function of a JSON pair.

The whole flow (ONNX model -> build directory, int8 calibration) is the driver's
(driver/compiler.py); int8 activation ranges come in as data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mrvl.errors import CompileError
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.mlip_plan import Program
from mrvl.lowering.mlip_quantize import Ranges, quantize_function
from mrvl.lowering.mlip_tile_split import split_function
from mrvl import mlip_isa as isa
from mrvl.machine import DEFAULT_MACHINE, Machine, machine_of
from mrvl.mlip_binary import ModelBinary


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
    machine: Machine = DEFAULT_MACHINE,
    quantize: str = "fp16",
    io_dtype: str | None = None,
    ranges: Ranges | None = None,
    model_id: int = 0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> CompiledSubgraph:
    """Compile one accelerator sub-graph function (annotated in place) for `machine`:
    `machine.tiles` tiles, blocks sized to `machine.ocm_bytes` in pages of
    `machine.page_bytes`, tile splits ranked by its timing; the binary records it. int8
    needs the activation `ranges` (driver/calibration.py); `input_names` / `output_names`
    name the binary's I/O tensors (default: the function's)."""
    if not isinstance(machine, Machine):
        raise CompileError(f"machine: expected a Machine, got {type(machine).__name__}")
    quantize_function(fn, quantize, io_dtype, ranges)
    split_function(fn, machine)
    prog = convert_function(fn, machine, input_names, output_names)
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
