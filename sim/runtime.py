"""The hybrid runtime: runs a build directory (docs/build-dir.md) end to end.

Accelerator steps run on a `Device` (the simulator by default, `mrvl.sim.device`), CPU steps
run their exported ONNX model on onnxruntime, in the manifest's order; any number of
alternating steps, and a step may consume any earlier tensor.

    model = CompiledModel.load("build/")
    result = model.run({"data": x})          # x: float32, the manifest's input shape
    result.outputs["prob"], result.total_cycles
    model.close()

Conversions at every border (host tensors are fp32 unless an ONNX model says otherwise):
- layout: every value carries a layout tag (NCHW for 4-D model inputs, the descriptor's layout
  for accelerator outputs, unknown for CPU outputs). A 4-D value is transposed between NCHW
  and NHWC when the consumer's layout differs from its tag, or when only the transposed shape
  matches the consumer's shape; 4-D model outputs are returned NCHW. Shapes that differ only
  in size-1 dimensions are reshaped.
- dtype (docs/isa.md, I/O descriptors): to the device, fp32 -> fp16 round-to-nearest-even,
  quantised `q = saturate(rint(x * scale) + zero_point)`, or a plain cast; from the device,
  quantised `(q - zero_point) * scale`, else an exact widening to fp32. CPU inputs are cast to
  the element type their ONNX model declares.

Invariants:
- Input validation happens before any step runs: a missing or unknown input name, a wrong
  shape or a wrong dtype raises `RuntimeInputError` with a one-line message stating what is
  expected. A malformed build directory raises `BuildDirError` naming the file.
- `run` returns exactly the manifest's model outputs, in order, with their declared dtype and
  shape.
- The runtime never changes the build directory; `save_run_report` writes
  `run_report.json` beside the manifest when asked (read by `mrvl report`).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrvl.errors import MrvlError, RuntimeInputError, SimulationError
from mrvl.sim import trace
from mrvl.sim.device import Device, SimulatorDevice, describe
from mrvl.mlip_isa import Layout
from mrvl.sim.simulator import from_device, input_converter, to_device

MANIFEST = "manifest.json"
RUN_REPORT = "run_report.json"
FORMAT = "mrvl-build"
VERSION = 1

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
_LAYOUT_TAG = {int(Layout.NCHW): "NCHW", int(Layout.NHWC): "NHWC"}
_ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, "tensor(int16)": np.int16,
}


class BuildDirError(MrvlError):
    """A build directory is missing, incomplete or its manifest is malformed."""


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the manifest declares it."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"'{self.name}' {self.dtype} {list(self.shape)}"


@dataclass(frozen=True)
class Step:
    """One manifest step; `files` maps roles (binary, onnx, nodes, consts) to paths."""

    kind: str
    symbol: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    files: dict[str, Path]
    info: dict[str, Any]


@dataclass
class Manifest:
    """A parsed, checked `manifest.json`."""

    root: Path
    model_onnx: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    options: dict[str, Any]
    steps: list[Step]
    raw: dict[str, Any]

    @property
    def quantize(self) -> str:
        return str(self.options.get("quantize", "fp16"))

    @property
    def accelerator_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "accelerator"]

    @property
    def batch_chunk(self) -> int | None:
        """Rows per run of the steps when the model's batch exceeds the accelerator's limit
        (the model's inputs and outputs lead with the whole batch; docs/build-dir.md)."""
        chunk = self.raw["model"].get("batch_chunk")
        return int(chunk) if chunk else None


def _spec(entry: Any, where: str, dynamic: bool = False) -> TensorSpec:
    """A manifest tensor; -1 marks a data-dependent dimension (outputs only); 0 is an empty
    dimension (ONNX allows empty tensors)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BuildDirError(f"{where}: expected an object with a 'name'")
    shape = entry.get("shape")
    lowest = -1 if dynamic else 0
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= lowest for d in shape):
        what = "ints >= 0 or -1" if dynamic else "ints >= 0"
        raise BuildDirError(f"{where} '{entry['name']}': shape must be a list of {what}")
    dtype = entry.get("dtype", "float32")
    try:
        known = isinstance(dtype, str) and np.dtype(dtype).kind in "biuf"
    except TypeError:
        known = False
    if not known:
        raise BuildDirError(f"{where} '{entry['name']}': unknown dtype {dtype!r} (expected a "
                            "numpy name such as 'float32')")
    return TensorSpec(entry["name"], tuple(shape), dtype)


def _list(value: Any, where: str, default: Any = ()) -> list:
    """`value` as a list (missing: `default`); raises BuildDirError for anything else."""
    if value is None and default is None:
        raise BuildDirError(f"{where}: missing")
    value = list(default) if value is None else value
    if not isinstance(value, list):
        raise BuildDirError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    names = _list(value, where)
    if not all(isinstance(n, str) for n in names):
        raise BuildDirError(f"{where}: expected a list of tensor names")
    return tuple(names)


def load_manifest(build_dir: str | Path) -> Manifest:
    """Read and check `build_dir/manifest.json` (see docs/build-dir.md); raises BuildDirError."""
    root = Path(build_dir)
    if not root.is_dir():
        raise BuildDirError(
            f"build directory '{root}' does not exist; create it with `mrvl compile model.onnx "
            f"-o {root}`"
        )
    path = root / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BuildDirError(
            f"'{root}' has no {MANIFEST}: not a build directory (run `mrvl compile` first)"
        ) from None
    except IsADirectoryError:
        raise BuildDirError(f"'{path}' is a directory, expected the build manifest (re-run "
                            "`mrvl compile`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        raise BuildDirError(f"{path}: cannot read the manifest: {reason}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BuildDirError(f"{path}: not an mrvl build manifest (format != '{FORMAT}')")
    if raw.get("version") != VERSION:
        raise BuildDirError(f"{path}: unsupported manifest version {raw.get('version')!r}, "
                            f"this runtime reads version {VERSION}")
    model = raw.get("model")
    if not isinstance(model, dict):
        raise BuildDirError(f"{path}: missing 'model'")
    if "inputs" in model and model["inputs"] is None:
        raise BuildDirError(f"{path}: model 'inputs' must be a list, got null")
    inputs = [_spec(e, f"{path}: model input")
              for e in _list(model.get("inputs"), f"{path}: model 'inputs'")]
    outputs = [_spec(e, f"{path}: model output", dynamic=True)
               for e in _list(model.get("outputs"), f"{path}: model 'outputs'")]
    if not outputs:
        raise BuildDirError(f"{path}: the model declares no outputs")
    known = {s.name for s in inputs}
    steps = []
    for i, entry in enumerate(_list(raw.get("steps"), f"{path}: 'steps'", default=None)):
        where = f"{path}: step {i}"
        if not isinstance(entry, dict):
            raise BuildDirError(f"{where}: expected an object")
        kind = entry.get("kind")
        if kind not in ("accelerator", "cpu"):
            raise BuildDirError(f"{where}: kind {kind!r} is not 'accelerator' or 'cpu'")
        roles = ("binary", "nodes", "consts") if kind == "accelerator" else ("onnx",)
        files = {}
        for role in roles:
            rel = entry.get(role)
            if not isinstance(rel, str):
                if role != "binary" and kind == "accelerator":
                    continue
                raise BuildDirError(f"{where}: missing '{role}'")
            files[role] = root / rel
        needed = files["binary"] if kind == "accelerator" else files["onnx"]
        if needed.is_dir():
            raise BuildDirError(f"{where}: '{needed}' is a directory, expected a file "
                                "(re-run `mrvl compile`)")
        if not needed.is_file():
            raise BuildDirError(f"{where}: file '{needed}' is missing (re-run `mrvl compile`)")
        step_inputs = _names(entry.get("inputs"), f"{where}: 'inputs'")
        missing = [n for n in step_inputs if n not in known]
        if missing:
            raise BuildDirError(f"{where} ({entry.get('symbol')}): inputs {missing} are neither "
                                "model inputs nor outputs of an earlier step")
        step_outputs = _names(entry.get("outputs"), f"{where}: 'outputs'")
        known.update(step_outputs)
        info = {k: v for k, v in entry.items() if k not in roles}
        steps.append(Step(kind, str(entry.get("symbol", f"step{i}")), step_inputs,
                          step_outputs, files, info))
    chunk = model.get("batch_chunk")
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1
                              or not all(s.shape and s.shape[0] >= 1
                                         for s in (*inputs, *outputs))):
        raise BuildDirError(f"{path}: 'batch_chunk' must be a positive int and every model "
                            "input and output must lead with the batch")
    unproduced = [s.name for s in outputs if s.name not in known]
    if unproduced:
        raise BuildDirError(f"{path}: model outputs {unproduced} are produced by no step")
    check_artifacts(root, raw.get("artifacts"), path)
    return Manifest(root, root / str(model.get("onnx", "model.onnx")), inputs, outputs,
                    dict(raw.get("options", {})), steps, raw)


def check_artifacts(root: Path, artifacts: Any, path: Path) -> None:
    """Every file the manifest's `artifacts` lists has its recorded size and CRC32C (a file
    from another build, truncated or edited, is refused); manifests written before the
    record existed carry no `artifacts` and are read as they are."""
    if artifacts is None:
        return
    if not isinstance(artifacts, dict):
        raise BuildDirError(f"{path}: 'artifacts' must map file names to their size and crc32c")
    from mrvl.files import file_digest

    for name, record in artifacts.items():
        if not isinstance(record, dict) or not isinstance(record.get("size"), int) \
                or not isinstance(record.get("crc32c"), int):
            raise BuildDirError(f"{path}: artifact '{name}' needs an integer size and crc32c")
        file = root / name
        if not file.resolve().is_relative_to(root.resolve()):
            raise BuildDirError(f"{path}: artifact '{name}' lies outside the build directory")
        try:
            size, crc = file_digest(file)
        except IsADirectoryError:
            raise BuildDirError(f"'{file}' is a directory, the manifest records a file "
                                "(re-run `mrvl compile`)") from None
        except FileNotFoundError:
            raise BuildDirError(f"'{file}' is missing (re-run `mrvl compile`)") from None
        except OSError as error:
            raise BuildDirError(f"cannot read '{file}': {error.strerror}") from None
        if (size, crc) != (record["size"], record["crc32c"]):
            raise BuildDirError(
                f"'{file}' is not the file this build wrote (size {size}, CRC32C {crc:#010x}; "
                f"the manifest records {record['size']}, {record['crc32c']:#010x}): re-run "
                "`mrvl compile`")


# ----------------------------------------------------------------------------- conversions


@dataclass
class Value:
    """A tensor between steps: its array and layout tag ("NCHW", "NHWC" or None)."""

    array: np.ndarray
    layout: str | None


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def adapt_layout(value: Value, shape, layout: str | None, where: str) -> np.ndarray:
    """`value`'s array in `shape` (and `layout` when known); raises SimulationError."""
    arr = value.array
    shape = tuple(int(d) for d in shape)
    if arr.shape == shape and (value.layout is None or layout is None
                               or value.layout == layout):
        return np.ascontiguousarray(arr)  # the first candidate below, without the others
    candidates: list[np.ndarray] = []
    if arr.ndim == 4:
        to = None
        if value.layout == "NCHW":
            to = NCHW_TO_NHWC
        elif value.layout == "NHWC":
            to = NHWC_TO_NCHW
        transposed = [arr.transpose(to)] if to is not None else [
            arr.transpose(NCHW_TO_NHWC), arr.transpose(NHWC_TO_NCHW)]
        if value.layout is not None and layout is not None and value.layout != layout:
            candidates = transposed + [arr]
        else:
            candidates = [arr] + transposed
    else:
        candidates = [arr]
    for cand in candidates:
        if cand.shape == shape:
            return np.ascontiguousarray(cand)
    if arr.size == math.prod(shape) and _squeezed(arr.shape) == _squeezed(shape):
        return arr.reshape(shape)
    raise SimulationError(f"{where}: got a tensor of shape {list(arr.shape)}, the consumer "
                          f"expects {list(shape)}")


# ----------------------------------------------------------------------------- running


class StepRecord:
    """What one step did in one run: wall time and (accelerator) the device report.

    `report` is built on first read when the record holds a `build_report` function instead
    (a device with `run_deferred`): the same dict, paid for only by whoever reads it.
    `timeline`: accelerator steps of a traced run, the `mrvl.sim.trace.Timeline`."""

    __slots__ = ("symbol", "kind", "wall_s", "timeline", "_report", "_build_report")

    def __init__(self, symbol: str, kind: str, wall_s: float,
                 report: dict[str, Any] | None = None, timeline: Any = None,
                 build_report: Callable[[], dict[str, Any]] | None = None):
        self.symbol = symbol
        self.kind = kind
        self.wall_s = wall_s
        self.timeline = timeline
        self._report = report if report is not None or build_report is not None else {}
        self._build_report = build_report if report is None else None

    @property
    def report(self) -> dict[str, Any]:
        if self._report is None:
            assert self._build_report is not None
            self._report = self._build_report()
            self._build_report = None
        return self._report

    @report.setter
    def report(self, value: dict[str, Any]) -> None:
        self._report = value
        self._build_report = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepRecord):
            return NotImplemented
        return (self.symbol, self.kind, self.wall_s, self.report, self.timeline) == (
            other.symbol, other.kind, other.wall_s, other.report, other.timeline)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return (f"StepRecord(symbol={self.symbol!r}, kind={self.kind!r}, "
                f"wall_s={self.wall_s!r}, report={self.report!r}, "
                f"timeline={self.timeline!r})")


@dataclass
class RunResult:
    """Model outputs by name (manifest order) and per-step records."""

    outputs: dict[str, np.ndarray]
    steps: list[StepRecord]

    def trace_events(self) -> list[dict[str, Any]]:
        """The Chrome trace events of a traced run (`run(inputs, trace=True)`): every
        accelerator step's timeline one after another, CPU steps as instant events."""
        return trace.chrome_events(self._trace_parts())

    def write_trace(self, path: str | Path) -> Path:
        """Write the run's timeline as Chrome trace-event JSON (Perfetto opens it)."""
        return trace.write_chrome_trace(path, self._trace_parts())

    def _trace_parts(self) -> list[Any]:
        parts: list[Any] = []
        for s in self.steps:
            if s.kind == "cpu":
                parts.append(trace.CpuMark(s.symbol, s.wall_s))
            elif s.timeline is None:
                raise MrvlError(f"step @{s.symbol} has no timeline: run with trace=True")
            else:
                parts.append(s.timeline)
        return parts

    @property
    def total_cycles(self) -> int:
        """Sum of the accelerator steps' simulated cycles (0 without accelerator steps)."""
        return sum(int(report_cycles(s.report)) for s in self.steps if s.kind == "accelerator")

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_cycles": self.total_cycles,
            "steps": [{"symbol": s.symbol, "kind": s.kind, "wall_s": s.wall_s,
                       "report": s.report} for s in self.steps],
        }


def report_cycles(report: Mapping[str, Any]) -> int:
    """Total cycles of a device report (0 when it has none)."""
    for key in ("total_cycles", "cycles"):
        value = report.get(key)
        if isinstance(value, int | float):
            return int(value)
    total = report.get("total")
    if isinstance(total, Mapping):
        return report_cycles(total)
    return 0


class _CpuStep:
    def __init__(self, step: Step, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if threads > 1:
            # the simulator's worker threads run the accelerator steps right after: spinning
            # onnxruntime workers would hold the cores they need
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = step.files["onnx"]
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise BuildDirError(f"{path}: onnxruntime cannot load this CPU sub-graph: "
                                f"{str(error).splitlines()[0]}") from None
        self.step = step
        self.inputs = self.session.get_inputs()
        names = [i.name for i in self.inputs]
        if sorted(names) != sorted(step.inputs):
            raise BuildDirError(f"{path}: inputs {names} differ from the manifest's "
                                f"{list(step.inputs)}")
        out_names = [o.name for o in self.session.get_outputs()]
        if sorted(out_names) != sorted(step.outputs):
            raise BuildDirError(f"{path}: outputs {out_names} differ from the manifest's "
                                f"{list(step.outputs)}")
        # per input: its name, shape (-1: any), dtype and error context (fixed per step)
        self._feeds = []
        for spec in self.inputs:
            shape = tuple(d if isinstance(d, int) else -1 for d in spec.shape)
            self._feeds.append((spec.name, shape, _ONNX_DTYPES.get(spec.type),
                                f"{step.symbol} input '{spec.name}'"))
        self._output_names = list(step.outputs)

    def run(self, env: dict[str, Value]) -> StepRecord:
        feeds = {}
        for name, shape, dtype, where in self._feeds:
            value = env[name]
            arr = value.array
            if arr.shape == shape or -1 in shape:  # as adapt_layout, without the call
                arr = np.ascontiguousarray(arr)
            else:
                arr = adapt_layout(value, shape, None, where)
            # onnxruntime only reads its feeds: an array of the right dtype goes as it is
            feeds[name] = arr.astype(dtype, copy=False) if dtype is not None else arr
        start = time.perf_counter()
        results = self.session.run(self._output_names, feeds)
        wall = time.perf_counter() - start
        for name, arr in zip(self.step.outputs, results):
            env[name] = Value(np.asarray(arr), None)
        return StepRecord(self.step.symbol, "cpu", wall)


class _AcceleratorStep:
    def __init__(self, step: Step, device: Device):
        self.step = step
        self.device = device
        self.handle = device.load(step.files["binary"])
        self.in_descs, self.out_descs = device.io(self.handle)
        if len(self.in_descs) != len(step.inputs) or len(self.out_descs) != len(step.outputs):
            raise BuildDirError(
                f"{step.files['binary']}: {len(self.in_descs)} input / {len(self.out_descs)} "
                f"output descriptors, the manifest names {len(step.inputs)} / "
                f"{len(step.outputs)}"
            )
        # a device with input buffers (the simulator: its DRAM) gets the inputs converted
        # straight into them
        buffers_of = getattr(device, "input_buffers", None)
        buffers = buffers_of(self.handle) if buffers_of is not None else None
        # per input: its name, shape, layout tag, error context and converter (fixed per step)
        self._inputs = [
            (name, tuple(int(d) for d in desc.shape), _LAYOUT_TAG.get(int(desc.layout)),
             f"{step.symbol} input '{name}' ({describe(desc)})",
             input_converter(desc, buffers[k]) if buffers is not None
             else functools.partial(to_device, desc=desc))
            for k, (name, desc) in enumerate(zip(step.inputs, self.in_descs))]
        self._outputs = [(name, desc, _LAYOUT_TAG.get(int(desc.layout)))
                         for name, desc in zip(step.outputs, self.out_descs)]
        # a device that converts the outputs for the host itself (the simulator)
        self._run_host = getattr(device, "run_host_deferred", None)

    def run(self, env: dict[str, Value], traced: bool = False) -> StepRecord:
        device_inputs = []
        for name, shape, layout, where, convert in self._inputs:
            value = env[name]
            arr = value.array
            if arr.shape != shape or (value.layout is not None and layout is not None
                                      and value.layout != layout):
                arr = adapt_layout(value, shape, layout, where)
            device_inputs.append(convert(arr))  # a non-contiguous `arr`: to_device copies
        start = time.perf_counter()
        run_host = self._run_host
        report, build_report = None, None
        if not traced and run_host is not None:  # outputs converted by the device
            outputs, build_report = run_host(self.handle, device_inputs)
            wall = time.perf_counter() - start
            for (name, _, layout), arr in zip(self._outputs, outputs):
                env[name] = Value(arr, layout)
            return StepRecord(self.step.symbol, "accelerator", wall, build_report=build_report)
        run_deferred = getattr(self.device, "run_deferred", None)
        if traced:
            timeline_of = getattr(self.device, "timeline", None)
            if timeline_of is None:
                raise MrvlError(f"device {self.device.name} cannot record a trace")
            outputs, report = self.device.run(self.handle, device_inputs,  # type: ignore
                                              trace=True)
        elif run_deferred is not None:  # the report is built when the record's is read
            outputs, build_report = run_deferred(self.handle, device_inputs)
        else:
            outputs, report = self.device.run(self.handle, device_inputs)
        wall = time.perf_counter() - start
        for (name, desc, layout), arr in zip(self._outputs, outputs):
            env[name] = Value(from_device(np.asarray(arr), desc), layout)
        record = StepRecord(self.step.symbol, "accelerator", wall, report,
                            build_report=build_report)
        if traced:
            timeline = timeline_of(self.handle)
            if timeline is not None:
                timeline.name = self.step.symbol
            record.timeline = timeline
        return record

    def close(self) -> None:
        self.device.unload(self.handle)


class _NoProgress:
    """The progress line of a run that shows none (no terminal check, no strings built)."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_PROGRESS = _NoProgress()


class CompiledModel:
    """A loaded build directory, ready to run many times. Use as a context manager or call
    `close()` to unload the accelerator binaries."""

    def __init__(self, manifest: Manifest, device: Device | None = None, threads: int = 1):
        self.manifest = manifest
        self._input_dtypes = [np.dtype(spec.dtype) for spec in manifest.inputs]
        # what a run checks and returns, made once: per input (name, dtype, shape); per
        # output (name, shape, layout tag, dtype, error context)
        self._input_checks = [(spec.name, dtype, tuple(spec.shape))
                              for spec, dtype in zip(manifest.inputs, self._input_dtypes)]
        self._output_plan = [(spec.name, tuple(spec.shape),
                              "NCHW" if len(spec.shape) == 4 else None, np.dtype(spec.dtype),
                              f"model output '{spec.name}'") for spec in manifest.outputs]
        self._batch = manifest.inputs[0].shape[0] if manifest.inputs and \
            manifest.inputs[0].shape else 1
        self._batch_chunk = manifest.batch_chunk
        if device is None:
            device = SimulatorDevice()
            if threads > 1:  # the simulator's tiles (or large CONVs) on as many threads
                from mrvl.sim.simulator import TimingParams

                device = SimulatorDevice(timing=TimingParams(threads=threads))
        self.device = device
        self._steps: list[_CpuStep | _AcceleratorStep] = []
        try:
            for step in manifest.steps:
                if step.kind == "cpu":
                    self._steps.append(_CpuStep(step, threads))
                else:
                    self._steps.append(_AcceleratorStep(step, self.device))
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(cls, build_dir: str | Path, device: Device | None = None,
             threads: int = 1) -> CompiledModel:
        return cls(load_manifest(build_dir), device, threads)

    def __enter__(self) -> CompiledModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for step in self._steps:
            if isinstance(step, _AcceleratorStep):
                step.close()
        self._steps = []

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.manifest.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.manifest.outputs

    def expected_inputs(self) -> str:
        return ", ".join(s.describe() for s in self.inputs)

    def check_inputs(self, inputs: Mapping[str, Any], batched: bool = False) -> int:
        """Raise RuntimeInputError unless `inputs` match the manifest. With `batched`, the
        first dimension of every input may be any size (the same for all inputs); returns it
        (the manifest's batch when not `batched`)."""
        if not batched and len(inputs) == len(self._input_checks):  # the usual case, quickly
            for name, dtype, shape in self._input_checks:
                arr = inputs.get(name)
                if type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
                    break
            else:
                return self._batch
        names = {s.name for s in self.inputs}
        unknown = sorted(set(inputs) - names)
        if unknown:
            raise RuntimeInputError(f"unknown input name(s) {unknown}; the model expects "
                                    f"{self.expected_inputs()}")
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise RuntimeInputError(f"missing input(s) {missing}; the model expects "
                                    f"{self.expected_inputs()}")
        rows = set()
        for spec, dtype in zip(self.inputs, self._input_dtypes):
            arr = inputs[spec.name]
            if not isinstance(arr, np.ndarray):
                raise RuntimeInputError(f"input '{spec.name}' must be a numpy array, got "
                                        f"{type(arr).__name__}; expected {spec.describe()}")
            if arr.dtype != dtype:
                raise RuntimeInputError(f"input '{spec.name}' has dtype {arr.dtype}, expected "
                                        f"{spec.dtype} (shape {list(spec.shape)})")
            shape = tuple(arr.shape)
            fits = shape == spec.shape or (
                batched and len(shape) == len(spec.shape) and len(shape) > 0
                and shape[1:] == spec.shape[1:] and shape[0] > 0)
            if not fits:
                what = f"[N, {', '.join(map(str, spec.shape[1:]))}]" if batched else (
                    f"{list(spec.shape)}")
                raise RuntimeInputError(f"input '{spec.name}' has shape {list(shape)}, expected "
                                        f"{what} ({spec.dtype})")
            rows.add(shape[0] if shape else 1)
        if not batched:
            return self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else 1
        if len(rows) > 1:
            raise RuntimeInputError(f"inputs have different batch sizes {sorted(rows)}; the "
                                    f"model expects {self.expected_inputs()}")
        return rows.pop() if rows else 1

    def run(self, inputs: Mapping[str, np.ndarray],
            trace: bool | str | Path | None = None, progress: bool = False) -> RunResult:
        """Run once on inputs of exactly the manifest's shapes and dtypes. `trace`: True
        records the simulated timeline (`result.trace_events()`, `result.write_trace(path)`);
        a path also writes it there as Chrome trace-event JSON. `progress` shows the step
        being run on stderr when it is a terminal (mrvl/progress.py)."""
        if not progress:
            return self._run(inputs, trace, _NO_PROGRESS)
        from mrvl.progress import Progress

        with Progress("mrvl run", enabled=progress) as bar:
            return self._run(inputs, trace, bar)

    def _run(self, inputs: Mapping[str, np.ndarray], trace: bool | str | Path | None,
             bar: Any) -> RunResult:
        self.check_inputs(inputs)
        traced = trace is not None and trace is not False
        chunk = self._batch_chunk
        if chunk is None:
            outputs, records = self._run_steps(inputs, traced, None, bar, "")
        else:
            # the steps were compiled for `chunk` rows: run the batch chunk by chunk, the
            # last chunk padded with zero rows, and cut the outputs back to the batch
            rows = self.inputs[0].shape[0]
            parts = []
            records = []
            for start in range(0, rows, chunk):
                feeds = {}
                for spec in self.inputs:
                    part = np.asarray(inputs[spec.name])[start:start + chunk]
                    if len(part) < chunk:
                        pad = np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)
                        part = np.concatenate([part, pad])
                    feeds[spec.name] = np.ascontiguousarray(part)
                part_outputs, part_records = self._run_steps(
                    feeds, traced, chunk, bar,
                    f"rows {start}-{min(start + chunk, rows) - 1} of {rows}, ")
                parts.append(part_outputs)
                records += part_records
            outputs = {spec.name: np.concatenate([p[spec.name] for p in parts])[:rows]
                       for spec in self.outputs}
        result = RunResult(outputs, records)
        if traced and trace is not True:
            result.write_trace(trace)  # type: ignore[arg-type]
        return result

    def _run_steps(self, inputs: Mapping[str, np.ndarray], traced: bool, rows: int | None,
                   bar: Any, where: str) -> tuple[dict[str, np.ndarray], list[StepRecord]]:
        """Every step once on checked inputs; the outputs as the manifest declares them (with
        `rows` in place of the batch when the steps run a chunk)."""
        env: dict[str, Value] = {}
        for name, _, _ in self._input_checks:
            arr = np.asarray(inputs[name])
            env[name] = Value(arr, "NCHW" if arr.ndim == 4 else None)
        records = []
        for k, step in enumerate(self._steps):
            if bar is not _NO_PROGRESS:
                bar.update(f"{where}{step.step.kind} step @{step.step.symbol}", k,
                           len(self._steps))
            records.append(step.run(env, traced) if isinstance(step, _AcceleratorStep)
                           else step.run(env))
        outputs = {}
        for name, shape, layout, dtype, where in self._output_plan:
            value = env[name]
            arr = value.array
            if rows is not None:
                shape = (rows, *shape[1:])
            elif arr.shape == shape and arr.dtype == dtype and arr.flags.c_contiguous and (
                    value.layout is None or layout is None or value.layout == layout):
                outputs[name] = arr  # already as declared (what the general path returns)
                continue
            if -1 in shape:  # data-dependent (e.g. NMS): only the known dims are checked
                arr = value.array
                if arr.ndim != len(shape) or any(
                        d not in (-1, a) for d, a in zip(shape, arr.shape)):
                    raise SimulationError(f"{where}: got shape {list(arr.shape)}, the manifest "
                                          f"declares {list(shape)} (-1: any)")
            else:
                arr = adapt_layout(value, shape, layout, where)
            outputs[name] = arr.astype(dtype, copy=False)
        return outputs, records

    def run_batches(
        self,
        inputs: Mapping[str, np.ndarray],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[dict[str, np.ndarray], list[RunResult]]:
        """Run inputs holding any number N of samples (first dimension) through the compiled
        batch B: ceil(N / B) runs, the last one padded with zeros; outputs are concatenated
        along axis 0 and cut back to N rows. Every input and output must lead with the
        compiled batch B. Returns (outputs, per-run results)."""
        total = self.check_inputs(inputs, batched=True)
        batches = {s.shape[0] for s in self.inputs} | {s.shape[0] for s in self.outputs}
        if len(batches) != 1:
            raise RuntimeInputError(
                "run_batches needs every model input and output to lead with the same batch "
                f"dimension; the model has {self.expected_inputs()} -> "
                + ", ".join(s.describe() for s in self.outputs))
        b = batches.pop()
        count = -(-total // b)
        results = []
        for k in range(count):
            chunk = {}
            for spec in self.inputs:
                part = inputs[spec.name][k * b:(k + 1) * b]
                if len(part) < b:
                    pad = np.zeros((b - len(part), *part.shape[1:]), dtype=part.dtype)
                    part = np.concatenate([part, pad], axis=0)
                chunk[spec.name] = np.ascontiguousarray(part)
            results.append(self.run(chunk))
            if progress is not None:
                progress(k + 1, count)
        outputs = {
            spec.name: np.concatenate([r.outputs[spec.name] for r in results], axis=0)[:total]
            for spec in self.outputs
        }
        return outputs, results


def save_run_report(build_dir: str | Path, result: RunResult) -> Path:
    """Write `run_report.json` (the last run's per-step figures) into the build directory."""
    from mrvl.files import write_text

    path = Path(build_dir) / RUN_REPORT
    write_text(path, json.dumps(result.as_dict(), indent=1, sort_keys=True, default=_jsonable)
               + "\n", "run report")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def run_reference(manifest: Manifest, inputs: Mapping[str, np.ndarray],
                  threads: int = 1) -> dict[str, np.ndarray]:
    """The original model (`model.onnx`) on onnxruntime: the fp32 reference of `--check`."""
    import onnxruntime as ort

    path = manifest.model_onnx
    if not path.is_file():
        raise BuildDirError(f"'{path}' is missing: the build directory has no original model "
                            "to check against (re-run `mrvl compile`)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise BuildDirError(f"{path}: onnxruntime cannot load it: "
                            f"{str(error).splitlines()[0]}") from None
    names = [o.name for o in manifest.outputs]
    results = session.run(names, {k: np.asarray(v) for k, v in inputs.items()})
    return dict(zip(names, results))
