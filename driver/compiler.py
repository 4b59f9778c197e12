"""The staged compiler driver: ONNX model -> graph IR -> partitioned IR -> JSON pairs ->
mlip programs -> model binaries and the build directory (docs/build-dir.md).

`compile(model, options, stop_after=Stage.X, out_dir=...)` is the one pipeline (like xDSL's
Toy `compiler.py --emit=<stage>`); the `mrvl` verbs, the Python API (driver/api.py) and
mrvl-opt's ONNX frontend all go through it. Options are typed (`CompileOptions`, with the
accelerator as a `mrvl.machine.Machine`); int8 calibration ranges are gathered here
(driver/calibration.py) and handed to the backend as data.

Stages and what each leaves behind (every stage includes the ones before it):

- `IMPORT`: `result.module` is the graph-dialect module of the model;
- `PARTITION`: graph passes, convert-graph-to-mrvl and mrvl-partition ran on it;
- `JSON`: the build directory holds the model copy, a JSON pair per accelerator sub-graph
  and an ONNX model per CPU sub-graph (`result.pairs`);
- `MLIP`: every accelerator sub-graph went through the backend (`result.subgraphs`: mlip
  programs and binaries in memory, `result.reports`);
- `BINARY`: the binaries, offload.json, static_report.json and manifest.json are written.
"""

from __future__ import annotations

import enum
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mrvl.dialects import graph
from mrvl.errors import CompileError
from mrvl.machine import DEFAULT_MACHINE, VALID_TILES, Machine
from mrvl.lowering.backend import PRECISIONS, CompiledSubgraph, compile_function, read_pair

RANDOM = "random"
"""The `calibration` value that opts in to calibrating int8 on seeded standard-normal data."""


def warn(message: str) -> None:
    """A one-line warning of the compiler on stderr (the CLI and the Python API alike)."""
    import sys

    from mrvl.progress import clear_line

    clear_line()
    print(f"mrvl: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """A one-line note of the compiler on stderr (e.g. where a shape came from)."""
    import sys

    from mrvl.progress import clear_line

    clear_line()
    print(f"mrvl: {message}", file=sys.stderr)


class Stage(enum.Enum):
    """The compiler's stages, in order (module docstring)."""

    IMPORT = "import"
    PARTITION = "partition"
    JSON = "json"
    MLIP = "mlip"
    BINARY = "binary"

    @property
    def index(self) -> int:
        return list(Stage).index(self)


@dataclass(frozen=True)
class PartitionOptions:
    """Step-1 options: `mrvl-partition`'s (mode, cpu_layers, max_layers, require_compute)
    and the import's (batch_size: the value of a symbolic first input dimension;
    input_shapes: (name, dims) pairs fixing the whole shape of named inputs)."""

    mode: str = "default"
    cpu_layers: tuple[str, ...] = ()
    max_layers: int = -1
    require_compute: bool = True
    batch_size: int = 1
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.input_shapes, Mapping):  # the keyword / manifest form
            object.__setattr__(self, "input_shapes", tuple(
                (str(k), tuple(int(d) for d in v)) for k, v in self.input_shapes.items()))
        if self.batch_size < 1:
            raise CompileError(f"--batch-size must be at least 1, got {self.batch_size}")
        for name, dims in self.input_shapes:
            if any(d < 1 for d in dims):
                raise CompileError(f"--input-shape {name}={','.join(map(str, dims))}: "
                                   "dimensions must be at least 1")

    def pass_options(self) -> dict[str, Any]:
        return {"mode": self.mode, "cpu_layers": self.cpu_layers,
                "max_layers": self.max_layers, "require_compute": self.require_compute}

    def to_dict(self) -> dict[str, Any]:
        """As recorded in the manifest (and read back by `from_dict`)."""
        return {**self.pass_options(), "cpu_layers": list(self.cpu_layers),
                "batch_size": self.batch_size,
                "input_shapes": {k: list(v) for k, v in self.input_shapes}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartitionOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CompileError(f"unknown partition option(s) {unknown}; expected {sorted(known)}")
        values = dict(data)
        if "cpu_layers" in values:
            layers = values["cpu_layers"]
            values["cpu_layers"] = (layers,) if isinstance(layers, str) else tuple(layers)
        return cls(**values)


@dataclass(frozen=True)
class CompileOptions:
    """Everything a compilation depends on besides the model."""

    quantize: str = "fp16"
    """Accelerator precision: "fp16" or "int8"."""
    io_dtype: str | None = None
    """dtype of each binary's inputs/outputs: "f16", "f32", "i8" (default f16; i8 for int8,
    except outputs computed by a CONV / FC, written f32 (lowering/mrvl_quantize.py
    `real_output_layers`); "i8" given keeps every output int8)."""
    calibration: Any = None
    """int8 (required): an .npz path of model inputs (samples stacked along the batch axis),
    a mapping name -> array(s), a list of input sets, or "random" (one seeded
    standard-normal set, with a warning); see driver/calibration.py."""
    calibration_method: str | None = None
    """int8: how each activation's range is chosen from the calibration values: "minmax",
    "percentile", "mse" or "entropy" (driver/calibration.py `CALIBRATION_METHODS`); None:
    `DEFAULT_CALIBRATION_METHOD` (percentile, chosen by measurement: docs/backend.md)."""
    bias_correction: bool | None = None
    """int8: fold each CONV / FC's mean output error on the calibration sets into its bias
    (driver/bias_correction.py); None: on for int8."""
    channel_scales: bool | None = None
    """int8: per-channel activation scales on CONV -> CONV / FC edges, folded into the
    weights before calibration (driver/channel_scales.py); None: on for int8."""
    fp16_precision: str = "auto"
    """fp16: "auto" (default: the FCs of transformer sub-graphs that read a class token's
    row take their weights' low half as a second GEMM pass, stacked along K), "targeted"
    (that in every transformer sub-graph), "storage" (the precision policy alone) or
    "extended" (the FCs of transformer sub-graphs as three fp16 GEMM passes: 3x their MACs);
    lowering/mrvl_extended_precision.py."""
    machine: Machine = DEFAULT_MACHINE
    """The accelerator (tiles, OCM and page size, timing constants)."""
    partition: PartitionOptions = field(default_factory=PartitionOptions)
    verify: bool = False
    """Verify the IR after every step-1 pass."""

    def __post_init__(self) -> None:
        """Options are checked before anything is read or written."""
        if self.quantize not in ("fp16", "int8"):
            raise CompileError(f"quantize must be 'fp16' or 'int8', got {self.quantize!r}")
        if self.calibration is not None and self.quantize != "int8":
            raise CompileError("--calibration applies to --quantize int8 only (fp16 needs no "
                               "calibration); drop it or add --quantize int8")
        from mrvl.driver.calibration import check_method

        if self.calibration_method is not None:
            check_method(self.calibration_method)
            if self.quantize != "int8":
                raise CompileError("--calibration-method applies to --quantize int8 only; "
                                   "drop it or add --quantize int8")
        for flag, on in (("--bias-correction", self.bias_correction),
                         ("--channel-scales", self.channel_scales)):
            if on is not None and self.quantize != "int8":
                raise CompileError(f"{flag} applies to --quantize int8 only; drop it or add "
                                   "--quantize int8")
        if self.fp16_precision not in PRECISIONS:
            raise CompileError(f"--fp16-precision must be one of {', '.join(PRECISIONS)}, "
                               f"got {self.fp16_precision!r}")
        if self.fp16_precision != "auto" and self.quantize != "fp16":
            raise CompileError("--fp16-precision applies to --quantize fp16 only; drop it")
        if self.quantize == "int8" and self.calibration is None:
            raise CompileError(
                "--quantize int8 needs calibration data: give --calibration inputs.npz "
                "(representative inputs, samples stacked along the batch axis), or "
                "--calibration random to calibrate on standard-normal noise (inaccurate for "
                "e.g. 0-255 pixel inputs)")
        if isinstance(self.calibration, str | Path) and str(self.calibration) != RANDOM:
            path = Path(self.calibration)
            if path.is_dir():
                raise CompileError(f"--calibration: '{path}' is a directory, expected an .npz")
            if not path.is_file():
                raise CompileError(f"--calibration: file '{path}' does not exist")
        if self.machine.tiles not in VALID_TILES:
            raise CompileError(f"--num-tiles (or --machine tiles=): the compiler splits work "
                               f"across one of {list(VALID_TILES)} tiles, got "
                               f"{self.machine.tiles}")

    @classmethod
    def from_keywords(cls, **options: Any) -> CompileOptions:
        """Options from the keyword form of the Python API: quantize, io_dtype, calibration,
        calibration_method, bias_correction, channel_scales, num_tiles, ocm_size, page_size,
        machine (a Machine, or KEY=VALUE items / a dict of overrides), verify, and the
        `PartitionOptions` fields."""
        base = options.pop("machine", None)
        machine = base if isinstance(base, Machine) else DEFAULT_MACHINE
        sizes = {"tiles": options.pop("num_tiles", None),
                 "ocm_bytes": options.pop("ocm_size", None),
                 "page_bytes": options.pop("page_size", None)}
        sizes = {k: int(v) for k, v in sizes.items() if v is not None}
        if sizes:
            machine = machine.with_overrides(sizes)
        if base is not None and not isinstance(base, Machine):
            machine = machine.with_overrides(base)
        partition = {f.name: options.pop(f.name) for f in fields(PartitionOptions)
                     if f.name in options}
        known = {"quantize", "io_dtype", "calibration", "calibration_method",
                 "bias_correction", "channel_scales", "fp16_precision", "verify"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise CompileError(f"unknown compile option(s): {unknown}")
        return cls(machine=machine, partition=PartitionOptions.from_dict(partition), **options)

    @property
    def int8_method(self) -> str:
        """The int8 calibration method in effect (`calibration_method` or the default)."""
        from mrvl.driver.calibration import DEFAULT_CALIBRATION_METHOD

        return self.calibration_method or DEFAULT_CALIBRATION_METHOD

    @property
    def int8_refinements(self) -> tuple[bool, bool]:
        """(channel scales, bias correction) in effect for int8 (None: on)."""
        return self.channel_scales is not False, self.bias_correction is not False

    def manifest_options(self) -> dict[str, Any]:
        """The `options` of the build manifest (`fp16_precision` only when not the default)."""
        extra = {} if self.fp16_precision == "auto" else {
            "fp16_precision": self.fp16_precision}
        return {"num_tiles": self.machine.tiles, "quantize": self.quantize,
                "ocm_size": self.machine.ocm_bytes, "page_size": self.machine.page_bytes,
                "io_dtype": self.io_dtype or ("i8" if self.quantize == "int8" else "f16"),
                **extra, "machine": self.machine.to_dict(),
                "partition": self.partition.to_dict()}


@dataclass
class CompileResult:
    """What `compile` produced (besides the files), up to `stage`."""

    stage: Stage
    module: ModuleOp
    out_dir: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    subgraphs: list[CompiledSubgraph] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    batch_chunk: int | None = None
    """Set when the batch exceeds the accelerator's limit: the module is compiled for this
    many rows and the runtime runs the model's batch in chunks of it (`_batch_chunk`)."""
    batch_rows: int | None = None
    """The model's batch when `batch_chunk` is set."""


# ---- the backend adapter: the one call into lowering/backend.py ---------------------------
def _compile_subgraph(fn: func.FuncOp, options: CompileOptions, ranges: Any = None,
                      model_id: int = 0, input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None) -> CompiledSubgraph:
    """One accelerator sub-graph through the backend (quantize, split, mlip, OCM, DMA, emit)."""
    return compile_function(
        fn, machine=options.machine, quantize=options.quantize, io_dtype=options.io_dtype, ranges=ranges,
        model_id=model_id, input_names=input_names, output_names=output_names,
        precision=options.fp16_precision)


def int8_ranges(fn: func.FuncOp, options: CompileOptions, sets: Any) -> Any:
    """The int8 activation ranges of `fn` over its calibration input sets (None for fp16);
    with `channel_scales` / `bias_correction`, `fn`'s weights / biases are refined in place
    first / after."""
    if options.quantize != "int8":
        return None
    from mrvl.driver.calibration import activation_ranges, calibration_sets, function_inputs

    channel_scales, bias_correction = options.int8_refinements
    if channel_scales or bias_correction:
        sets = sets or calibration_sets(None, function_inputs(fn), f"@{fn.sym_name.data}")
    if channel_scales:
        from mrvl.driver.channel_scales import equalize_channels

        equalize_channels(fn, sets)
    ranges = activation_ranges(fn, sets, options.int8_method)
    if bias_correction:
        from mrvl.driver.bias_correction import correct_biases

        correct_biases(fn, sets, ranges)
    return ranges


def _batch_chunk(model: Any, shapes: Mapping[str, Sequence[int]], batch: int
                 ) -> tuple[int, int] | None:
    """(rows, chunk) when a batch above the accelerator's limit runs in chunks, else None.

    A batch of B > MAX_BATCH rows (`--batch-size`, or the first dimension `--input-shape`
    gives every input) is compiled for MAX_BATCH rows and run in ceil(B / 8) chunks, the
    last one padded with zero rows (sim/runtime.py); this needs every model input and
    output to lead with a symbolic batch dimension (rows then do not interact); otherwise
    the model is compiled for B rows and stays on the CPU."""
    from mrvl.lowering.mrvl_legality import MAX_BATCH

    if isinstance(model, bytes):
        return None
    rows = {int(shapes[name][0]) for name in shapes if len(shapes[name])}
    if max(rows | {batch}) <= MAX_BATCH:
        return None
    from mrvl.frontend.onnx_import import load_model

    proto, _ = load_model(model)
    init_names = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in init_names]

    def symbolic_first(value: onnx.ValueInfoProto, output: bool = False) -> bool:
        if not value.type.HasField("tensor_type"):
            return False
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            return output  # an output without a declared shape: the import's shape decides
        dims = tensor.shape.dim
        return bool(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0)

    if not inputs or not all(symbolic_first(v) for v in inputs):
        return None
    if not all(symbolic_first(v, output=True) for v in proto.graph.output):
        return None
    rows = {int(shapes[v.name][0]) if v.name in shapes else batch for v in inputs}
    if len(rows) != 1 or min(rows) <= MAX_BATCH:
        return None
    return rows.pop(), MAX_BATCH


def _leads_with_batch(module: ModuleOp, rows: int) -> bool:
    """Every input and output of @main has `rows` as its (static) first dimension."""
    main = _main(module)
    types = [*main.function_type.inputs.data, *main.function_type.outputs.data]
    for typ in types:
        shape = list(typ.get_shape()) if hasattr(typ, "get_shape") else []
        if not shape or shape[0] != rows or any(d < 0 for d in shape):
            return False
    return True


def _warn_low_offload(module: ModuleOp) -> None:
    """A one-line warning when less than half the MACs run on the accelerator, naming the
    reason that keeps the most MACs on the CPU."""
    from collections import Counter

    from mrvl.lowering.offload_report import offload_report

    report = offload_report(module)
    if not report["macs_total"] or report["accelerator_mac_share"] >= 0.5:
        return
    reasons: Counter[str] = Counter()
    for node in report["cpu_nodes"]:
        reasons[node["reason"]] += node["macs"]
    reason = reasons.most_common(1)[0][0] if reasons else "no accelerator sub-graph"
    warn(f"only {100 * report['accelerator_mac_share']:.0f}% of the MACs run on the "
         f"accelerator; main reason: {reason} (see `mrvl report`)")


def _warn_random(options: CompileOptions) -> None:
    if str(options.calibration) == RANDOM:
        warn("int8 calibrated on standard-normal noise (--calibration random): accuracy "
             "suffers when the real inputs differ (e.g. 0-255 pixels); give representative "
             "inputs as an .npz")


# ---- stages --------------------------------------------------------------------------------
def import_model(model: str | Path | bytes | onnx.ModelProto, *,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, batch_size: int = 1,
                 name: str = "<bytes>", base_dir: str | None = None) -> ModuleOp:
    """Stage IMPORT: the graph-dialect module of a model (path, ModelProto or file bytes)."""
    from mrvl.frontend.onnx_import import import_onnx, import_onnx_bytes

    shapes = {k: list(v) for k, v in (input_shapes or {}).items()}
    if isinstance(model, bytes):
        return import_onnx_bytes(model, name=name, base_dir=base_dir, input_shapes=shapes,
                                 batch_size=batch_size)
    return import_onnx(model, input_shapes=shapes, batch_size=batch_size)


def sample_shapes(model: str | Path, samples: Any, shapes: Mapping[str, Sequence[int]],
                  batch_size: int, what: str) -> dict[str, list[int]]:
    """`shapes` completed from sample arrays (an .npz path or a mapping name -> array): an
    input with a symbolic dimension past the first that `shapes` does not fix takes the
    sample's dimensions when that is unambiguous (the array named like the input, or the
    only array of a one-input model, of the input's rank and agreeing with its fixed
    dimensions); a symbolic first dimension stays `batch_size` (samples are stacked along
    it). Notes each shape it took on stderr."""
    from mrvl.frontend.onnx_import import load_model

    result = {k: list(v) for k, v in shapes.items()}
    proto, _ = load_model(model)
    init_names = {t.name for t in proto.graph.initializer}
    declared = []
    for value in proto.graph.input:
        if value.name in init_names or not value.type.HasField("tensor_type") \
                or not value.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in value.type.tensor_type.shape.dim]
        declared.append((value.name, dims))
    needing = [(n, d) for n, d in declared if n not in result and None in d[1:]]
    if not needing:
        return result
    label = str(samples) if isinstance(samples, str | Path) else what
    if isinstance(samples, str | Path):
        from mrvl.files import read_arrays

        samples = read_arrays(samples, f"--{what}", CompileError)
    if not isinstance(samples, Mapping):
        return result
    for name, dims in needing:
        array = samples.get(name)
        if array is None and len(samples) == 1 and len(declared) == 1:
            array = next(iter(samples.values()))
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) != len(dims) or any(
                d is not None and d != a for d, a in zip(dims[1:], shape[1:])):
            continue
        first = dims[0] if dims[0] is not None else batch_size
        result[name] = [first, *(int(a) for a in shape[1:])]
        note(f"input '{name}' shape {result[name]} taken from {label}")
    return result


def compile(model: str | Path | onnx.ModelProto, options: CompileOptions | None = None, *,
            stop_after: Stage = Stage.BINARY, out_dir: str | Path | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            samples: Any = None, progress: bool = False) -> CompileResult:
    """Run the stages up to and including `stop_after` (module docstring). Stages from JSON
    on write into `out_dir` and need the model as a file (it is copied into the build).
    `input_shapes` adds to `options.partition.input_shapes`; symbolic dimensions still open
    are taken from `samples` (an .npz path or mapping of model inputs), else from the int8
    calibration data, when unambiguous (`sample_shapes`). `progress` shows the current step
    on stderr when it is a terminal (mrvl/progress.py)."""
    from mrvl.progress import Progress

    with Progress("mrvl compile", enabled=progress) as bar:
        return _compile(model, options or CompileOptions(), stop_after, out_dir,
                        input_shapes, samples, bar)


def _compile(model: str | Path | onnx.ModelProto, options: CompileOptions, stop_after: Stage,
             out_dir: str | Path | None, input_shapes: Mapping[str, Sequence[int]] | None,
             samples: Any, bar: Any) -> CompileResult:
    """`compile`'s stages, reporting each to the progress line `bar`."""
    if stop_after.index >= Stage.JSON.index:
        if out_dir is None:
            raise CompileError(f"stage '{stop_after.value}' writes files: give a build directory")
        if not isinstance(model, str | Path):
            raise CompileError(f"stage '{stop_after.value}' needs the model as a file")
        model = Path(model)
        if model.is_dir():
            raise CompileError(f"model file '{model}' is a directory, expected an .onnx file")
        if not model.is_file():
            raise CompileError(f"model file '{model}' does not exist")
        from mrvl.driver.build_dir import check_output_dir

        out_dir = check_output_dir(out_dir)
    shapes = {**dict(options.partition.input_shapes), **(input_shapes or {})}
    what = "inputs"
    if samples is None and options.quantize == "int8" and str(options.calibration) != RANDOM:
        samples, what = options.calibration, "calibration"
    if samples is not None and isinstance(model, str | Path):
        shapes = sample_shapes(model, samples, shapes, options.partition.batch_size, what)
    if shapes != {k: list(v) for k, v in options.partition.input_shapes}:
        options = replace(options, partition=replace(options.partition, input_shapes=shapes))
    batch = options.partition.batch_size
    bar.update("import", force=True)
    chunked = _batch_chunk(model, shapes, batch)
    chunk = None
    if chunked:
        batch, chunk = chunked
        module = import_model(model, batch_size=chunk, input_shapes={
            name: [chunk, *dims[1:]] for name, dims in shapes.items()})
        if not _leads_with_batch(module, chunk):
            chunk = None
    if not chunk:
        module = import_model(model, input_shapes=shapes, batch_size=options.partition.batch_size)
    result = CompileResult(Stage.IMPORT, module, batch_chunk=chunk,
                           batch_rows=batch if chunk else None)
    if stop_after is Stage.IMPORT:
        return result
    from mrvl.lowering.mrvl_partition import partition_module

    bar.update("graph passes and partition", force=True)
    partition_module(module, verify=options.verify, **options.partition.pass_options())
    result.stage = Stage.PARTITION
    if stop_after is Stage.PARTITION:
        return result
    if chunk:
        runs = -(-batch // chunk)
        note(f"batch {batch} runs as {runs} chunks of {chunk} (the accelerator's limit"
             + (f"; the last one padded with {runs * chunk - batch} zero rows)"
                if batch % chunk else ")"))
    _warn_low_offload(module)
    assert out_dir is not None and isinstance(model, Path)
    from mrvl.driver.build_dir import staged_build_dir

    out = Path(out_dir)
    with staged_build_dir(out) as staging:
        _build(model, staging, options, stop_after, result, bar)
    result.out_dir = out
    result.pairs = [(out / nodes.name, out / consts.name) for nodes, consts in result.pairs]
    return result


def _build(onnx_path: Path, out: Path, options: CompileOptions, stop_after: Stage,
           result: CompileResult, bar: Any) -> None:
    """Stages JSON, MLIP and BINARY of `compile` on the partitioned `result.module`."""
    from mrvl.frontend.onnx_export import export_function
    from mrvl.lowering.backend_report import program_report, write_reports
    from mrvl.lowering.mrvl_json import write_json_pair
    from mrvl.lowering.offload_report import write_report

    module = result.module
    model_inputs, model_outputs, steps = plan_steps(module)
    for spec in (*model_inputs, *model_outputs):
        if spec["dtype"] == "bfloat16":
            raise CompileError(f"model input/output '{spec['name']}' is bfloat16, which numpy "
                               "(and so an .npz of inputs or outputs) cannot hold; give the "
                               "model float32 or float16 inputs and outputs")
    per_call: list[dict[str, list[np.ndarray]]] = []
    if options.quantize == "int8" and stop_after.index >= Stage.MLIP.index:
        from mrvl.driver.calibration import InputSpec, calibration_sets

        specs = [InputSpec((s["name"],), tuple(s["shape"])) for s in model_inputs]
        _warn_random(options)
        sets = calibration_sets(options.calibration, specs, "the model")
        per_call = []
        for k, batch in enumerate(sets):
            bar.update("calibrate", k, len(sets))
            per_call.append(subgraph_inputs(module, batch))
    funcs = {op.sym_name.data: op for op in module.ops if isinstance(op, func.FuncOp)}
    bar.update("write the JSON pairs and CPU models", force=True)
    copy_model(onnx_path, out)
    accelerator_steps = []
    for step in steps:
        if "identity" in step:
            onnx.save(identity_model(step), out / f"{step['symbol']}.onnx")
            step["onnx"] = f"{step['symbol']}.onnx"
        elif step["kind"] == "cpu":
            cpu_model = export_function(module, step["symbol"])
            _rename_onnx_io(cpu_model, step["inputs"], step["outputs"])
            onnx.save(cpu_model, out / f"{step['symbol']}.onnx")
            step["onnx"] = f"{step['symbol']}.onnx"
        else:
            nodes_path, consts_path = write_json_pair(funcs[step["symbol"]], out)
            result.pairs.append((nodes_path, consts_path))
            step.update({"nodes": nodes_path.name, "consts": consts_path.name})
            accelerator_steps.append(step)
    result.stage = Stage.JSON
    if stop_after is Stage.JSON:
        return
    for k, step in enumerate(accelerator_steps):
        bar.update(f"backend @{step['symbol']}", k, len(accelerator_steps), force=True)
        fn = funcs[step["symbol"]]
        sets = [calls[step["symbol"]] for calls in per_call]
        sub = _compile_subgraph(fn, options, int8_ranges(fn, options, sets), steps.index(step),
                                step["inputs"], step["outputs"])
        result.subgraphs.append(sub)
        report = program_report(sub.model)
        result.reports.append(report)
        step.update({"binary": f"{step['symbol']}.bin",
                     "layers": sum(1 for layer in sub.model.layers()
                                   if layer.kind.data != "copy"),
                     "macs": report["macs"]})
    result.stage = Stage.MLIP
    if stop_after is Stage.MLIP:
        return
    bar.update("write the binaries", force=True)
    for sub in result.subgraphs:
        (out / f"{sub.symbol}.bin").write_bytes(sub.data)
    write_report(module, out / "offload.json", options.machine)
    write_reports(result.reports, out / "static_report.json")
    model_entry: dict[str, Any] = {"onnx": "model.onnx", "inputs": model_inputs,
                                   "outputs": model_outputs}
    if result.batch_chunk:
        for spec in (*model_inputs, *model_outputs):
            spec["shape"][0] = result.batch_rows
        model_entry["batch_chunk"] = result.batch_chunk
    result.manifest = {
        "format": "mrvl-build",
        "version": 1,
        "model": model_entry,
        "options": options.manifest_options(),
        "steps": [_ordered_step(s) for s in steps],
        "artifacts": artifact_digests(out),
    }
    (out / "manifest.json").write_text(json.dumps(result.manifest, indent=1) + "\n")
    result.stage = Stage.BINARY


def compile_pair(nodes: Any, consts: Any, options: CompileOptions | None = None
                 ) -> CompiledSubgraph:
    """Backend only: a JSON pair (paths or loaded documents) -> compiled sub-graph; int8
    calibration inputs are the sub-graph's (keyed by argument name, `arg<K>`, or in order)."""
    options = options or CompileOptions()
    fn = read_pair(nodes, consts)
    ranges = None
    if options.quantize == "int8":
        from mrvl.driver.calibration import calibration_sets, function_inputs

        _warn_random(options)
        sets = calibration_sets(options.calibration, function_inputs(fn),
                                f"@{fn.sym_name.data}")
        ranges = int8_ranges(fn, options, sets)
    return _compile_subgraph(fn, options, ranges)


# ---- the keyword-style Python API -------------------------------------------------------
def compile_json_pair(nodes: Any, consts: Any, **options: Any) -> bytes:
    """Nodes-JSON + Constants-JSON (paths or dicts) -> model binary bytes; options as
    `CompileOptions.from_keywords` (calibration may be an .npz path)."""
    return compile_pair(nodes, consts, CompileOptions.from_keywords(**options)).data


def compile_model_result(onnx_path: str | Path, out_dir: str | Path, **options: Any
                         ) -> CompileResult:
    """`compile_model`, returning the in-memory results too."""
    return compile(onnx_path, CompileOptions.from_keywords(**options), out_dir=out_dir)


def compile_model(onnx_path: str | Path, out_dir: str | Path, **options: Any):
    """ONNX model -> build directory (docs/build-dir.md); returns the runtime's `Manifest`
    (sim/runtime.py `load_manifest`) of what was written (the manifest as a dict when the
    runtime's reader does not take it, e.g. dynamic output shapes written as -1).

    Options: see `CompileOptions.from_keywords` (num_tiles, quantize, io_dtype, ocm_size,
    page_size, machine, calibration, mode, cpu_layers, max_layers, require_compute,
    batch_size).
    """
    from mrvl.sim.runtime import BuildDirError, load_manifest

    result = compile_model_result(onnx_path, out_dir, **options)
    try:
        return load_manifest(result.out_dir)
    except BuildDirError:
        # the runtime's reader rejects dynamic output shapes (-1); the files are complete
        return result.manifest


def compile_to_partitioned(model: str | Path | onnx.ModelProto, *, batch_size: int = 1,
                           input_shapes: dict[str, list[int]] | None = None,
                           verify: bool = False, samples: Any = None,
                           **options: Any) -> ModuleOp:
    """ONNX model -> partitioned module (stage PARTITION). `batch_size` and `input_shapes`
    fix symbolic input dimensions (see `import_onnx`); `options` are `partition_for_mrvl`'s;
    `verify=True` verifies the IR after every step."""
    from mrvl.errors import PartitionError
    from mrvl.lowering.mrvl_partition import OPTION_NAMES

    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise PartitionError(f"partition_for_mrvl: unknown option(s) {unknown}; expected "
                             f"{sorted(OPTION_NAMES)}")
    report = options.pop("report", None)
    partition = PartitionOptions.from_dict({**options, "batch_size": batch_size})
    module = compile(model, CompileOptions(partition=partition, verify=verify),
                     stop_after=Stage.PARTITION, input_shapes=input_shapes,
                     samples=samples).module
    if report:
        from mrvl.lowering.offload_report import write_report

        write_report(module, report)
    return module


def write_json_pairs(onnx_path: str | Path | onnx.ModelProto, out_dir: str | Path,
                     **options: Any) -> list[tuple[Path, Path]]:
    """ONNX model -> `<sym>-nodes.json` / `<sym>-consts.json` files in `out_dir`."""
    from mrvl.lowering.mrvl_json import write_module_json

    return write_module_json(compile_to_partitioned(onnx_path, **options), out_dir)


# ---- the build directory's pieces ----------------------------------------------------------
def _spec(name: str, typ) -> dict[str, Any]:
    """A manifest tensor entry: the exact numpy dtype name (signedness kept; bfloat16 as
    "bfloat16"); a dynamic dimension (e.g. after NMS) is written as -1."""
    from mrvl.frontend.onnx_export import onnx_elem_type

    shape = [int(d) if int(d) >= 0 else -1 for d in typ.get_shape()]
    dtype = helper.tensor_dtype_to_np_dtype(onnx_elem_type(typ.element_type))
    return {"name": name, "shape": shape, "dtype": dtype.name}


def _main(module: ModuleOp) -> func.FuncOp:
    fn = graph.find_function(module)
    if fn is None:
        raise CompileError("the partitioned module has no @main")
    return fn


def plan_steps(module: ModuleOp) -> tuple[list[dict], list[dict], list[dict]]:
    """(model inputs, model outputs, steps) of a partitioned module, in execution order,
    with the tensor names of docs/build-dir.md (model names at the borders, t<k> inside).

    A model output that no call produces under its own name (it is a model input, or the
    same value as an earlier output) gets a pass-through CPU step `cpu_identity_<k>` whose
    `identity` key holds the value's type (`identity_model` writes its ONNX model)."""
    main = _main(module)
    args = list(main.body.block.args)
    name_of: dict = dict(zip(args, graph.input_names(main), strict=True))
    ret = main.body.block.last_op
    assert ret is not None
    out_names = graph.output_names(main)
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


def identity_model(step: dict[str, Any]) -> onnx.ModelProto:
    """The ONNX model of a pass-through step of `plan_steps` (one Identity node, typed as the
    step's value; a dynamic dimension stays unnamed)."""
    from mrvl.frontend.onnx_export import onnx_elem_type

    typ = step["identity"]
    elem = onnx_elem_type(typ.element_type)
    shape = [int(d) if int(d) >= 0 else None for d in typ.get_shape()]
    (src,), (dst,) = step["inputs"], step["outputs"]
    graph_proto = helper.make_graph(
        [helper.make_node("Identity", [src], [dst], name=step["symbol"])], step["symbol"],
        [helper.make_tensor_value_info(src, elem, shape)],
        [helper.make_tensor_value_info(dst, elem, shape)])
    return helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8)


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


def _rename_onnx_io(model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str]
                    ) -> None:
    """Rename the graph inputs / outputs of an exported CPU model to the manifest names."""
    from mrvl.frontend.onnx_export import rename_references

    graph_proto = model.graph
    mapping = {}
    for vi, name in zip(graph_proto.input, inputs, strict=True):
        mapping[vi.name] = name
    for vi, name in zip(graph_proto.output, outputs, strict=True):
        mapping[vi.name] = name
    if all(k == v for k, v in mapping.items()):
        return
    for vi in (*graph_proto.input, *graph_proto.output):
        vi.name = mapping.get(vi.name, vi.name)
    for node in graph_proto.node:
        for i, n in enumerate(node.input):
            node.input[i] = mapping.get(n, n)
        for i, n in enumerate(node.output):
            node.output[i] = mapping.get(n, n)
        for attr in node.attribute:  # If / Loop / Scan bodies read outer names too
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs):
                rename_references(sub, mapping)


def copy_model(onnx_path: Path, out: Path) -> None:
    """Copy the model to `out/model.onnx` together with the external data files its
    initializers name (the PyTorch dynamo exporter writes `<model>.onnx.data` beside the
    model), at the same relative locations, so onnxruntime can load the copy for `--check`."""
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


def artifact_digests(out: Path) -> dict[str, dict[str, int]]:
    """Size and CRC32C of every file under `out` (the manifest's `artifacts`; the runtime
    refuses a build whose files do not match them)."""
    from mrvl.files import file_digest

    digests = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            size, crc = file_digest(path)
            digests[path.relative_to(out).as_posix()] = {"size": size, "crc32c": crc}
    return digests


def _ordered_step(step: dict[str, Any]) -> dict[str, Any]:
    order = ("kind", "symbol", "nodes", "consts", "binary", "onnx", "inputs", "outputs",
             "layers", "macs")
    return {k: step[k] for k in order if k in step}
