"""Codegen `relax.ext.mrvl`: each region function -> a model binary -> a runtime module.

`RunCodegen` calls `relax.ext.mrvl(funcs, options, constant_names)` with the functions that
carry `Codegen = "mrvl"`; `codegen` returns one runtime module (kind "mrvl",
mrvl_runtime.cc) per function. Per region: Relax -> ONNX (relax_to_onnx.py) -> mrvl's step 1
(graph passes, convert-graph-to-mrvl, mrvl-partition) -> the Nodes-JSON / Constants-JSON pair
(lowering/mrvl_json.py `subgraph_to_json`) -> read back and compiled by the backend
(lowering/backend.py `read_pair`, `compile_function`) with the binary's I/O in f32, so the
runtime copies TVM's tensors in and out bit for bit; layout transforms at the region's
borders are layers of the binary. `options` (RunCodegen's `target_options["mrvl"]`) are
`CompileOptions.from_keywords`'s: num_tiles, ocm_size, page_size, machine, quantize,
calibration, calibration_method. int8 calibrates each region on its own inputs: give
`calibration="random"` (seeded standard-normal) or a mapping of the region's input names;
the refinements (channel scales, bias correction) and their defaults are `mrvl compile`'s.
"""

from __future__ import annotations

from typing import Any

from tvm import relax

from mrvl.errors import CompileError, MrvlError

IO_DTYPE = "f32"


def _plain(value: Any) -> Any:
    """A TVM options value (Map, Array, String, IntImm) as plain Python."""
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value) if isinstance(value, str) else value
    if hasattr(value, "value"):  # IntImm, FloatImm, StringImm
        return _plain(value.value)
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return str(value)


def compile_region(fn: relax.Function, symbol: str, options: dict[str, Any]
                   ) -> tuple[bytes, str, list[str]]:
    """(model binary, I/O table text for the runtime, layer names) of one region."""
    from mrvl.dialects import mrvl as mrvl_dialect
    from mrvl.driver.calibration import InputSpec, calibration_sets
    from mrvl.driver.compiler import CompileOptions, Stage, compile, int8_ranges, plan_steps
    from mrvl.lowering.backend import compile_function, read_pair
    from mrvl.lowering.mrvl_json import subgraph_to_json
    from mrvl.tvm.relax_to_onnx import function_to_onnx

    options = dict(options)
    options.setdefault("require_compute", False)
    compile_options = CompileOptions.from_keywords(**options)
    model = function_to_onnx(fn, symbol)
    result = compile(model, compile_options, stop_after=Stage.PARTITION)
    inputs, outputs, steps = plan_steps(result.module)
    if len(steps) != 1 or steps[0]["kind"] != "accelerator":
        kinds = [step["kind"] for step in steps]
        raise CompileError(f"mrvl region {symbol}: mrvl's partitioner split it into {kinds}, "
                           "expected one accelerator sub-graph")
    accelerator = mrvl_dialect.subgraph_functions(result.module)[0]
    nodes, consts = subgraph_to_json(accelerator)
    pair_function = read_pair(nodes, consts)
    ranges = None
    if compile_options.quantize == "int8":
        shapes = {spec["name"]: tuple(spec["shape"]) for spec in inputs}
        specs = [InputSpec((name,), shapes[name]) for name in steps[0]["inputs"]]
        sets = calibration_sets(compile_options.calibration, specs, f"region {symbol}")
        ranges = int8_ranges(pair_function, compile_options, sets)  # as `mrvl compile` does
    compiled = compile_function(
        pair_function, machine=compile_options.machine, quantize=compile_options.quantize,
        io_dtype=IO_DTYPE, ranges=ranges, input_names=steps[0]["inputs"],
        output_names=steps[0]["outputs"])
    binary = compiled.binary
    by_name = {desc.name: desc for desc in (*binary.inputs, *binary.outputs)}
    slots = []
    for spec in (*inputs, *outputs):
        desc = by_name.get(spec["name"])
        if desc is None:
            raise CompileError(f"mrvl region {symbol}: {spec['name']} is not an input or "
                               "output of its binary")
        slots.append(desc)
    table = f"{len(inputs)} {len(outputs)} " + " ".join(
        f"{desc.dram_offset} {desc.size_bytes}" for desc in slots)
    return compiled.data, table, [layer.name for layer in binary.layers]


def codegen(functions: Any, options: Any, constant_names: Any) -> list[Any]:
    """`relax.ext.mrvl`: one runtime module per region function (module docstring)."""
    import tvm_ffi

    create = tvm_ffi.get_global_func("mrvl.runtime.create")
    mrvl_options = _plain(options) or {}
    modules = []
    for fn in functions:
        symbol = str(fn.attrs["global_symbol"])
        try:
            data, table, _ = compile_region(fn, symbol, mrvl_options)
        except MrvlError as error:
            raise CompileError(f"mrvl codegen of {symbol}: {error}") from None
        modules.append(create(symbol, data, table))
    return modules


def register() -> None:
    """Register `relax.ext.mrvl` (idempotent)."""
    import tvm_ffi

    tvm_ffi.register_global_func("relax.ext.mrvl", codegen, override=True)
