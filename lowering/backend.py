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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mrvl.errors import CompileError
from mrvl.machine import DEFAULT_MACHINE, Machine
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.mlip_plan import Program
from mrvl.lowering.mlip_quantize import accelerator_functions, quantize_function
from mrvl.lowering.mlip_tile_split import split_function
from mrvl import mlip_isa as isa
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
    calibration: Sequence[Sequence[np.ndarray]] | None = None,
    model_id: int = 0,
) -> CompiledSubgraph:
    """Compile one accelerator sub-graph function (annotated in place) for `machine`:
    `machine.tiles` tiles, blocks sized to `machine.ocm_bytes` in pages of
    `machine.page_bytes`, tile splits ranked by its timing; the binary records it."""
    if not isinstance(machine, Machine):
        raise CompileError(f"machine: expected a Machine, got {type(machine).__name__}")
    quantize_function(fn, quantize, io_dtype, calibration)
    split_function(fn, machine)
    prog = convert_function(fn, machine)
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

    Options as `compile_function` (machine, quantize, io_dtype, calibration, model_id), or
    num_tiles / ocm_size / page_size / machine overrides as `compile_model` (`machine_of`);
    `calibration` may also be an .npz path.
    """
    fn = read_pair(nodes, consts)
    if "machine" not in options or not isinstance(options["machine"], Machine):
        options["machine"] = machine_of(
            options.pop("machine", None), int(options.pop("num_tiles", 1)),
            int(options.pop("ocm_size", isa.DEFAULT_OCM_SIZE)),
            int(options.pop("page_size", isa.DEFAULT_PAGE_SIZE)))
    calibration = options.pop("calibration", None)
    if isinstance(calibration, str | Path):
        from mrvl.lowering.mlip_quantize import load_calibration

        calibration = load_calibration(str(calibration), fn)
    return compile_function(fn, calibration=calibration, **options).data


def compile_module(module: ModuleOp, **options: Any) -> list[CompiledSubgraph]:
    """Compile every accelerator sub-graph of a partitioned module."""
    return [compile_function(fn, **options) for fn in accelerator_functions(module)]


# ---- the whole flow: ONNX model -> build directory ----------------------------------------
def _dtype_name(typ) -> str:
    """The exact numpy dtype name of a tensor type's element type (signedness kept:
    ui8 -> "uint8"); bfloat16, which numpy lacks, is written as "bfloat16"."""
    from xdsl.dialects.builtin import (
        BFloat16Type,
        Float16Type,
        Float32Type,
        Float64Type,
        IntegerType,
        Signedness,
    )

    elem = typ.element_type
    if isinstance(elem, Float32Type):
        return "float32"
    if isinstance(elem, Float16Type):
        return "float16"
    if isinstance(elem, Float64Type):
        return "float64"
    if isinstance(elem, BFloat16Type):
        return "bfloat16"
    if isinstance(elem, IntegerType):
        width = elem.width.data
        if width == 1:
            return "bool"
        unsigned = elem.signedness.data == Signedness.UNSIGNED
        return f"{'u' if unsigned else ''}int{width}"
    raise CompileError(f"element type {elem} has no numpy dtype")


def _spec(name: str, typ) -> dict[str, Any]:
    """A manifest tensor entry; a dynamic dimension (e.g. after NMS) is written as -1."""
    shape = [int(d) if int(d) >= 0 else -1 for d in typ.get_shape()]
    return {"name": name, "shape": shape, "dtype": _dtype_name(typ)}


def _main(module: ModuleOp) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            return op
    raise CompileError("the partitioned module has no @main")


def plan_steps(module: ModuleOp) -> tuple[list[dict], list[dict], list[dict]]:
    """(model inputs, model outputs, steps) of a partitioned module, in execution order,
    with the tensor names of docs/build-dir.md (model names at the borders, t<k> inside).

    A model output that no call produces under its own name (it is a model input, or the
    same value as an earlier output) gets a pass-through CPU step `cpu_identity_<k>` whose
    `identity` key holds the value's type (`identity_model` writes its ONNX model)."""
    from mrvl.sim.reference import input_names, output_names

    main = _main(module)
    args = list(main.body.block.args)
    name_of: dict = dict(zip(args, input_names(module), strict=True))
    ret = main.body.block.last_op
    assert ret is not None
    out_names = output_names(module)
    for value, name in zip(ret.operands, out_names, strict=True):
        if value not in name_of:
            name_of[value] = name
    inputs = [_spec(name_of[a], a.type) for a in args]
    outputs = [_spec(n, v.type) for v, n in zip(ret.operands, out_names, strict=True)]
    steps = []
    counter = 0
    funcs = {op.sym_name.data: op for op in module.ops if isinstance(op, func.FuncOp)}
    for op in main.body.block.ops:
        if not isinstance(op, func.CallOp):
            continue
        for value in op.results:
            if value not in name_of:
                name_of[value] = f"t{counter}"
                counter += 1
        symbol = op.callee.root_reference.data
        callee = funcs.get(symbol)
        target = callee.attributes.get("mrvl.target") if callee is not None else None
        kind = getattr(target, "data", "cpu")
        steps.append({"kind": kind, "symbol": symbol,
                      "inputs": [name_of[v] for v in op.arguments],
                      "outputs": [name_of[v] for v in op.results]})
    for value, name in zip(ret.operands, out_names, strict=True):
        if name_of[value] == name:
            continue
        # a model output that is a model input (a folded Dropout / Clip / Transpose) or the
        # same value as an earlier output: no call produces it, so an Identity CPU step does
        steps.append({"kind": "cpu", "symbol": f"cpu_identity_{len(steps)}",
                      "inputs": [name_of[value]], "outputs": [name], "identity": value.type})
    return inputs, outputs, steps


def identity_model(step: dict[str, Any]):
    """The ONNX model of a pass-through step of `plan_steps` (one Identity node, typed as the
    step's value; a dynamic dimension stays unnamed)."""
    from onnx import helper

    from mrvl.frontend.onnx_export import onnx_elem_type

    typ = step["identity"]
    elem = onnx_elem_type(typ.element_type)
    shape = [int(d) if int(d) >= 0 else None for d in typ.get_shape()]
    (src,), (dst,) = step["inputs"], step["outputs"]
    graph = helper.make_graph(
        [helper.make_node("Identity", [src], [dst], name=step["symbol"])], step["symbol"],
        [helper.make_tensor_value_info(src, elem, shape)],
        [helper.make_tensor_value_info(dst, elem, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def subgraph_inputs(module: ModuleOp, feeds: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The input arrays of every sub-graph call when @main runs on `feeds` (reference)."""
    from mrvl.sim.reference import run_function

    main = _main(module)
    values: dict = dict(zip(main.body.block.args, feeds, strict=True))
    found: dict[str, list[np.ndarray]] = {}
    for op in main.body.block.ops:
        if not isinstance(op, func.CallOp):
            continue
        args = [values[v] for v in op.arguments]
        symbol = op.callee.root_reference.data
        found[symbol] = args
        for value, arr in zip(op.results, run_function(module, args, func_name=symbol),
                              strict=True):
            values[value] = arr
    return found


def _rename_onnx_io(model, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Rename the graph inputs / outputs of an exported CPU model to the manifest names."""
    graph = model.graph
    mapping = {}
    for vi, name in zip(graph.input, inputs, strict=True):
        mapping[vi.name] = name
    for vi, name in zip(graph.output, outputs, strict=True):
        mapping[vi.name] = name
    if all(k == v for k, v in mapping.items()):
        return
    for vi in (*graph.input, *graph.output):
        vi.name = mapping.get(vi.name, vi.name)
    for node in graph.node:
        for i, n in enumerate(node.input):
            node.input[i] = mapping.get(n, n)
        for i, n in enumerate(node.output):
            node.output[i] = mapping.get(n, n)


@dataclass
class CompileResult:
    """What `compile_model` produced (besides the files)."""

    out_dir: Path
    manifest: dict[str, Any]
    subgraphs: list[CompiledSubgraph] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)


PARTITION_KEYS = ("mode", "cpu_layers", "max_layers", "require_compute", "batch_size")


def copy_model(onnx_path: Path, out: Path) -> None:
    """Copy the model to `out/model.onnx` together with the external data files its
    initializers name (the PyTorch dynamo exporter writes `<model>.onnx.data` beside the
    model), at the same relative locations, so onnxruntime can load the copy for `--check`."""
    import shutil

    import onnx

    shutil.copyfile(onnx_path, out / "model.onnx")
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # the ONNX text format has no external data
        return
    locations = {
        entry.value
        for tensor in proto.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in sorted(locations):
        source = onnx_path.parent / location
        target = out / location
        if not target.resolve().is_relative_to(out.resolve()):
            raise CompileError(f"model '{onnx_path}': external data location '{location}' "
                               f"lies outside the model's directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as error:
            raise CompileError(f"model '{onnx_path}': cannot copy its external data "
                               f"'{source}': {error.strerror}") from None


def compile_model_result(onnx_path: str | Path, out_dir: str | Path, **options: Any
                         ) -> CompileResult:
    """`compile_model`, returning the in-memory results too."""
    import json

    import onnx

    from mrvl.frontend.onnx_export import export_function
    from mrvl.lowering.backend_report import program_report, write_reports
    from mrvl.lowering.mrvl_json import write_json_pair
    from mrvl.lowering.mrvl_partition import compile_to_partitioned
    from mrvl.lowering.offload_report import write_report

    onnx_path = Path(onnx_path)
    if onnx_path.is_dir():
        raise CompileError(f"model file '{onnx_path}' is a directory, expected an .onnx file")
    if not onnx_path.is_file():
        raise CompileError(f"model file '{onnx_path}' does not exist")
    num_tiles = int(options.pop("num_tiles", 1))
    quantize = str(options.pop("quantize", "fp16"))
    io_dtype = options.pop("io_dtype", None)
    ocm_size = int(options.pop("ocm_size", isa.DEFAULT_OCM_SIZE))
    page_size = int(options.pop("page_size", isa.DEFAULT_PAGE_SIZE))
    machine = machine_of(options.pop("machine", None), num_tiles, ocm_size, page_size)
    num_tiles, ocm_size, page_size = machine.tiles, machine.ocm_bytes, machine.page_bytes
    calibration = options.pop("calibration", None)
    partition = {k: options.pop(k) for k in PARTITION_KEYS if k in options}
    if options:
        raise CompileError(f"unknown compile option(s): {sorted(options)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CompileError(f"cannot create the build directory '{out}': {error}") from None
    module = compile_to_partitioned(str(onnx_path), **partition)
    model_inputs, model_outputs, steps = plan_steps(module)
    if quantize == "int8":
        feeds = _calibration_feeds(calibration, model_inputs)
        per_call = [subgraph_inputs(module, batch) for batch in feeds]
    funcs = {op.sym_name.data: op for op in module.ops if isinstance(op, func.FuncOp)}
    result = CompileResult(out, {})
    copy_model(onnx_path, out)
    for model_id, step in enumerate(steps):
        if "identity" in step:
            onnx.save(identity_model(step), out / f"{step['symbol']}.onnx")
            step["onnx"] = f"{step['symbol']}.onnx"
            continue
        fn = funcs[step["symbol"]]
        if step["kind"] == "cpu":
            model = export_function(module, step["symbol"])
            _rename_onnx_io(model, step["inputs"], step["outputs"])
            onnx.save(model, out / f"{step['symbol']}.onnx")
            step["onnx"] = f"{step['symbol']}.onnx"
            continue
        nodes_path, consts_path = write_json_pair(fn, out)
        cal = None
        if quantize == "int8":
            cal = [calls[step["symbol"]] for calls in per_call]
        quantize_function(fn, quantize, io_dtype, cal)
        split_function(fn, machine)
        prog = convert_function(fn, machine, step["inputs"], step["outputs"])
        allocate_ocm(prog)
        schedule(prog)
        binary = to_model_binary(prog, model_id)
        data = binary.to_bytes()
        (out / f"{step['symbol']}.bin").write_bytes(data)
        sub = CompiledSubgraph(step["symbol"], prog, binary, data)
        result.subgraphs.append(sub)
        report = program_report(prog)
        result.reports.append(report)
        step.update({
            "nodes": nodes_path.name, "consts": consts_path.name,
            "binary": f"{step['symbol']}.bin",
            "layers": sum(1 for layer in prog.layers if layer.kind != "copy"),
            "macs": report["macs"],
        })
    write_report(module, out / "offload.json")
    write_reports(result.reports, out / "static_report.json")
    manifest = {
        "format": "mrvl-build",
        "version": 1,
        "model": {"onnx": "model.onnx", "inputs": model_inputs, "outputs": model_outputs},
        "options": {"num_tiles": num_tiles, "quantize": quantize, "ocm_size": ocm_size,
                    "page_size": page_size, "io_dtype": io_dtype or (
                        "i8" if quantize == "int8" else "f16"),
                    "partition": {k: (list(v) if isinstance(v, tuple) else v)
                                  for k, v in partition.items()},
                    "machine": machine.to_dict()},
        "steps": [_ordered_step(s) for s in steps],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    result.manifest = manifest
    return result


def machine_of(spec: Any, num_tiles: int = 1, ocm_size: int = isa.DEFAULT_OCM_SIZE,
               page_size: int = isa.DEFAULT_PAGE_SIZE) -> Machine:
    """The machine of `compile_model`'s options: a `Machine` as it is, else the default
    machine with `num_tiles`, `ocm_size`, `page_size` and the `machine` overrides (a list of
    "KEY=VALUE" strings or a dict, `Machine.with_overrides`; they win over the three)."""
    if isinstance(spec, Machine):
        return spec
    base = replace(DEFAULT_MACHINE, tiles=num_tiles, ocm_bytes=ocm_size, page_bytes=page_size)
    if spec is None:
        return base
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, dict | list | tuple):
        raise CompileError(f"machine: expected KEY=VALUE strings, a dict or a Machine, got "
                           f"{type(spec).__name__}")
    return base.with_overrides(spec)


def _ordered_step(step: dict[str, Any]) -> dict[str, Any]:
    order = ("kind", "symbol", "nodes", "consts", "binary", "onnx", "inputs", "outputs",
             "layers", "macs")
    return {k: step[k] for k in order if k in step}


def _calibration_feeds(calibration: Any, specs: list[dict]) -> list[list[np.ndarray]]:
    """Model-input calibration sets: an .npz path, a mapping name -> array (a leading extra
    dimension holds several samples), a list of such sets, or None (one seeded
    standard-normal set)."""
    if calibration is None:
        rng = np.random.default_rng(0)
        return [[rng.standard_normal(s["shape"]).astype(np.float32) for s in specs]]
    if isinstance(calibration, str | Path):
        try:
            data = np.load(calibration)
        except (OSError, ValueError) as error:
            raise CompileError(f"--calibration: cannot read '{calibration}': {error}") from None
        calibration = {k: data[k] for k in data.files}
    if isinstance(calibration, dict):
        sets = []
        arrays = []
        if len(calibration) < len(specs) and not all(s["name"] in calibration for s in specs):
            raise CompileError(
                f"calibration holds {sorted(calibration)}, the model needs the inputs "
                f"{[s['name'] for s in specs]}")
        for k, s in enumerate(specs):
            key = s["name"] if s["name"] in calibration else list(calibration)[k]
            arrays.append(np.asarray(calibration[key], dtype=np.float32))
        if all(list(a.shape) == s["shape"] for a, s in zip(arrays, specs, strict=True)):
            return [arrays]
        if all(list(a.shape[1:]) == s["shape"] for a, s in zip(arrays, specs, strict=True)):
            count = min(a.shape[0] for a in arrays)
            for i in range(count):
                sets.append([a[i] for a in arrays])
            return sets
        raise CompileError(
            f"calibration arrays {[list(a.shape) for a in arrays]} do not match the model "
            f"inputs {[s['shape'] for s in specs]}")
    return [list(batch) for batch in calibration]


def compile_model(onnx_path: str | Path, out_dir: str | Path, **options: Any):
    """ONNX model -> build directory (docs/build-dir.md); returns the runtime's `Manifest`
    (sim/runtime.py `load_manifest`) of what was written (the manifest as a dict when the
    runtime's reader does not take it, e.g. dynamic output shapes written as -1).

    Options: num_tiles (1, 2, 4, 8), quantize ("fp16" | "int8"), io_dtype ("f16", "f32",
    "i8"), ocm_size, page_size, machine ("KEY=VALUE" overrides or a `Machine`, see
    `machine_of`), calibration (int8: .npz of model inputs or arrays), and the
    partition options of `partition_for_mrvl` (mode, cpu_layers, max_layers,
    require_compute, batch_size).
    """
    result = compile_model_result(onnx_path, out_dir, **options)
    try:
        from mrvl.sim.runtime import BuildDirError, load_manifest
    except ImportError:  # pragma: no cover - the runtime is part of the package
        return result.manifest
    try:
        return load_manifest(result.out_dir)
    except BuildDirError:
        # the runtime's reader rejects dynamic output shapes (-1); the files are complete
        return result.manifest
