"""Python face of the C simulator core (`mrvl.sim._mlip_sim`, built from csrc/ by cffi).

`Simulator.load(path_or_bytes, timing=TimingParams(...), machine=None)` validates the whole
binary in C (raising `BinaryFormatError`) and runs its `init` section; the timing model reads
every constant from the binary's machine record (docs/isa.md section 4), which `machine` (a
`Machine`, or `KEY=VALUE` overrides of the recorded one) replaces for what-if timing; `.run(inputs)` converts the fp32
inputs to the binary's I/O types (docs/isa.md section 6), runs `main` and `finish`, and returns
`(outputs, report)`: fp32 numpy arrays in the order of the binary's output descriptors and the
report dict of docs/isa.md section 5; `.run_device(arrays)` takes and returns the tensors in
the descriptors' own dtypes (no conversion; the device seam uses it).  A program error at run time (a dependency violation, a
deadlock) raises `SimulationError` naming the instruction.

Invariant: outputs depend only on the binary's program and the inputs, never on the machine
record or on `TimingParams`.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mrvl.errors import BinaryFormatError, MrvlError, RuntimeInputError, SimulationError
from mrvl import mlip_isa as isa
from mrvl.machine import Machine, format_machine
from mrvl.mlip_binary import IODesc, ModelBinary, replace_machine
from mrvl.sim import bound
from mrvl.sim import trace as trace_module
from mrvl.mlip_isa import DType

__all__ = ["TimingParams", "Simulator", "format_report", "format_machine", "BACKEND_ENV"]

# Name of an alternative cffi module to load (the sanitizer build `_mlip_sim_asan`).
BACKEND_ENV = "MRVL_SIM_BACKEND"

_STATUS_ERRORS = {-1: BinaryFormatError, -2: SimulationError, -3: MrvlError, -4: MrvlError}


_BACKENDS: dict[str, tuple] = {}


def _backend():
    name = os.environ.get(BACKEND_ENV) or "mrvl.sim._mlip_sim"
    loaded = _BACKENDS.get(name)
    if loaded is not None:
        return loaded
    try:
        module = importlib.import_module(name)
    except ImportError as error:  # pragma: no cover - the package build provides it
        raise MrvlError(
            f"the simulator core '{name}' is not built ({error}); run `pip install -e .`"
        ) from None
    _BACKENDS[name] = (module.ffi, module.lib)
    return module.ffi, module.lib


@dataclass(frozen=True)
class TimingParams:
    """Simulator options (the machine's constants come from the binary's machine record)."""

    check_deps: bool = True
    portable: bool = False
    no_avx512: bool = False
    max_insn_work: int = 1 << 34
    max_dram_bytes: int = 1 << 31
    threads: int = 1

    def __post_init__(self):
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or \
                not 1 <= self.threads <= 64:
            raise MrvlError(f"simulator option threads = {self.threads!r} must be an integer "
                            f"from 1 to 64")
        for name in ("max_insn_work", "max_dram_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
                raise MrvlError(f"simulator option {name} = {value!r} must be an integer >= 0")

    def to_c(self, ffi):
        params = ffi.new("mlip_params *")
        for key, value in asdict(self).items():
            setattr(params, key, int(value))
        return params


# descriptor dtype number -> (DType, numpy dtype), looked up once per conversion
_IO_TYPES = {int(dtype): (dtype, np.dtype(isa.DTYPE_NUMPY[dtype])) for dtype in DType}

_INT_RANGES = {
    DType.INT8: (-128, 127), DType.UINT8: (0, 255), DType.INT16: (-32768, 32767),
    DType.UINT16: (0, 65535), DType.INT32: (-(2**31), 2**31 - 1), DType.UINT32: (0, 2**32 - 1),
}


def to_device(x: np.ndarray, desc: IODesc, out: np.ndarray | None = None) -> np.ndarray:
    """Host conversion of an fp32 input to the descriptor's dtype (docs/isa.md section 6).
    `out`: a C-contiguous array of that dtype and `x`'s shape to convert into (for example
    `Simulator.input_buffers()`, the simulated DRAM itself); returned."""
    x = np.asarray(x, dtype=np.float32)
    dtype, np_type = _IO_TYPES[desc.dtype]
    if out is not None and (out.dtype != np_type or out.shape != x.shape
                            or not out.flags.c_contiguous or not out.flags.writeable):
        raise MrvlError(f"to_device: the output buffer must be a writeable contiguous "
                        f"{np_type} {list(x.shape)}, got {out.dtype} {list(out.shape)}")
    # overflow is defined (fp16: +-inf; integers: saturation), not worth a warning
    if dtype == DType.FP16 and x.size:
        # the C core's vectorised round-to-nearest-even; numpy's own conversion keeps NaN
        # payloads, so it converts any input holding a NaN
        src = np.ascontiguousarray(x)
        target = np.empty(x.shape, dtype=np.float16) if out is None else out
        ffi, lib = _backend()
        if lib.mlip_f32_to_f16(ffi.cast("float *", ffi.from_buffer(src)),
                               ffi.cast("uint16_t *", ffi.from_buffer(target)),
                               src.size) == 0:
            return target
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype in (DType.FP32, DType.FP16):
            converted = x.astype(np_type)
        else:
            v = x * np.float32(desc.scale) if desc.quantize else x
            lo, hi = _INT_RANGES[dtype]
            q = np.rint(v).astype(np.float64) + desc.zero_point
            q = np.where(np.isnan(v), float(desc.zero_point), q)
            converted = np.clip(q, lo, hi).astype(np_type)
    if out is None:
        return converted
    out[...] = converted
    return out


def input_converter(desc: IODesc, out: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """`x -> to_device(x, desc, out=out)`, the same bits, with the fp16 case's target pointer
    made once: a C-contiguous fp32 `x` of `out`'s shape goes straight to the C core's
    conversion (per run: no dtype lookups, checks or casts of `out`)."""
    dtype, np_type = _IO_TYPES[desc.dtype]
    if dtype != DType.FP16 or out.dtype != np_type or not out.flags.c_contiguous \
            or not out.flags.writeable or not out.size:
        return functools.partial(to_device, desc=desc, out=out)
    ffi, lib = _backend()
    target = ffi.cast("uint16_t *", ffi.from_buffer(out))
    shape, size, fp32 = out.shape, out.size, np.dtype(np.float32)

    def convert(x: np.ndarray) -> np.ndarray:
        if type(x) is np.ndarray and x.dtype == fp32 and x.shape == shape \
                and x.flags.c_contiguous and lib.mlip_f32_to_f16(
                    ffi.cast("float *", ffi.from_buffer(x)), target, size) == 0:
            return out
        return to_device(x, desc, out=out)  # NaNs, other dtypes or layouts in memory

    return convert


def from_device(raw: np.ndarray, desc: IODesc) -> np.ndarray:
    """Host conversion of an output in the descriptor's dtype to fp32."""
    if desc.quantize:
        return (raw.astype(np.float32) - np.float32(desc.zero_point)) * np.float32(desc.scale)
    return raw.astype(np.float32)


# mlip_stats (csrc/mlip_sim.h) as fourteen native uint64: cycles, init_cycles, macs_fp16,
# macs_int8, dma_in_bytes, dma_out_bytes, matrix_busy, vector_busy, dram_busy, stall[3],
# instructions, tile_copy_bytes
_STATS = struct.Struct("=14Q")

# the keys of a per-layer report, in the order of `Simulator._layer_reports`'s columns
_LAYER_KEYS = ("name", "macs", "compiler_macs", "start", "end", "cycles", "instructions",
               "dma_in_bytes", "dma_out_bytes", "tile_copy_bytes", "matrix_cycles",
               "vector_cycles", "traffic_roofline_cycles", "achieved_tflops",
               "matrix_utilization")


class _RunStats:
    """One run's statistics as the C core left them (`mlip_stats` and the per-layer
    `mlip_layer_stats` bytes) and its outputs: what the report is built from.  `nonfinite`:
    the outputs' infinities and NaNs when counted already (None: count `outputs`)."""

    __slots__ = ("stats", "layers", "n_layers", "outputs", "nonfinite")

    def __init__(self, stats: bytes, layers: bytes, n_layers: int, outputs: list[np.ndarray],
                 nonfinite: int | None = None):
        self.stats = stats
        self.layers = layers
        self.n_layers = n_layers
        self.outputs = outputs
        self.nonfinite = nonfinite


class Simulator:
    """A loaded model binary on the simulated machine (one C handle)."""

    def __init__(self, handle, ffi, lib, binary: ModelBinary, timing: TimingParams, name: str,
                 int8_layers: set[int] | None = None):
        self.machine: Machine = binary.effective_machine
        """The machine the timing model runs with (the binary's record or the override)."""
        self._handle = handle
        self._ffi = ffi
        self._lib = lib
        self.binary = binary
        self.timing = timing
        self.name = name
        self.bound = bound.independent_bound(binary, self.machine, int8_layers)
        self.last_trace: trace_module.Timeline | None = None
        # per-run constants of the report, computed once (flat dicts: a shallow copy per run)
        self._machine_dict = self.machine.to_dict()
        self._bound_dict = self.bound.to_dict()
        self._output_bytes = [d.size_bytes for d in binary.outputs]
        self._layer_names = [layer.name for layer in binary.layers]
        self._compiler_macs = [layer.macs for layer in binary.layers]
        # the last run's per-layer stats (the C core's bytes) and report rows
        self._last_layers: tuple[bytes, list[dict]] | None = None
        self._dram_view: memoryview | None = None
        self._input_buffers: list[np.ndarray] | None = None
        self._output_views: list[np.ndarray] | None = None
        self._run_buffers: tuple | None = None  # the C core's stats, layer stats, message
        self._stats_views: tuple | None = None  # byte views of the first two
        self._host_plan: list[tuple] | None = None  # per output: view, desc, fp16 pointer
        self._input_shapes = [tuple(d.shape) for d in binary.inputs]
        self._io_types = ([np.dtype(isa.DTYPE_NUMPY[DType(d.dtype)]) for d in binary.inputs],
                          [np.dtype(isa.DTYPE_NUMPY[DType(d.dtype)]) for d in binary.outputs])

    # -- construction --
    @classmethod
    def load(cls, source: str | os.PathLike | bytes | bytearray,
             timing: TimingParams | None = None,
             machine: Machine | Iterable[str] | dict[str, object] | None = None) -> Simulator:
        """Load a binary.  `machine`: a `Machine`, or `KEY=VALUE` overrides (a list of
        strings or a dict, `Machine.with_overrides`) of the binary's recorded one, to time the
        same program on another machine; tiles, ocm_bytes and page_bytes are the program's."""
        timing = timing if timing is not None else TimingParams()
        if isinstance(source, (bytes, bytearray, memoryview)):
            data, name = bytes(source), "<bytes>"
        else:
            name = str(source)
            try:
                data = Path(source).read_bytes()
            except OSError as error:
                raise BinaryFormatError(f"cannot read model binary '{name}': {error}") from None
        if machine is not None:
            data = _with_machine(data, machine, name)
        ffi, lib = _backend()
        out = ffi.new("mlip_sim **")
        msg = ffi.new("char[1024]")
        status = lib.mlip_sim_load(out, data, len(data), timing.to_c(ffi), msg, 1024)
        if status != 0:
            error = _STATUS_ERRORS.get(status, MrvlError)
            raise error(f"{name}: {ffi.string(msg).decode('utf-8', 'replace')}")
        handle = ffi.gc(out[0], lib.mlip_sim_free)
        binary = ModelBinary.from_bytes(data, source=name, decode_code=False)
        return cls(handle, ffi, lib, binary, timing, name, bound.int8_layers(data))

    @property
    def inputs(self) -> list[IODesc]:
        return self.binary.inputs

    @property
    def outputs(self) -> list[IODesc]:
        return self.binary.outputs

    @property
    def last_run_mode(self) -> str:
        """How the last run's main section ran: "scheduled" (the first run, runs that check
        the dependency rule, traced runs), "replayed" (its recorded schedule, on one thread) or
        "tile-threads" (replayed with the tiles on `timing.threads` threads, at most the CPUs
        online, between barriers: only once two runs in a row passed the dependency check).
        Outputs, cycles and reports are the same in every mode."""
        if self._handle is None:
            raise SimulationError(f"{self.name}: the simulator was closed")
        lib = self._lib
        return {lib.MLIP_RUN_SCHEDULED: "scheduled", lib.MLIP_RUN_REPLAYED: "replayed",
                lib.MLIP_RUN_TILE_THREADS: "tile-threads"}[lib.mlip_sim_run_mode(self._handle)]

    def close(self) -> None:
        if self._handle is not None:
            self._dram_view = None
            self._input_buffers = None
            self._output_views = None
            self._host_plan = None
            self._ffi.release(self._handle)
            self._handle = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running --
    def _dram(self) -> memoryview:
        """The whole simulated DRAM, for the host to read or write anything (tests, tools).
        Asked of the core at every call, which tells it that the weights region may change
        before the next run (it then compares its converted weights with DRAM again)."""
        size = self._ffi.new("uint64_t *")
        ptr = self._lib.mlip_sim_dram(self._handle, size)
        return memoryview(self._ffi.buffer(ptr, size[0]))

    def _io_dram(self) -> memoryview:
        """The simulated DRAM as the run path uses it: inputs written, outputs read (allocated
        once by the core at load: the view is kept)."""
        if self._dram_view is None:
            self._dram_view = self._dram()
        return self._dram_view

    def input_buffers(self) -> list[np.ndarray]:
        """Per input descriptor, a writeable array of its dtype and shape that is the input's
        place in the simulated DRAM: convert into it (`to_device(x, desc, out=buffer)`) and
        pass it to `run_device`, which then copies nothing.  Valid until `close`."""
        if self._handle is None:
            raise SimulationError(f"{self.name}: the simulator was closed")
        if self._input_buffers is None:
            dram = self._io_dram()
            self._input_buffers = [
                np.frombuffer(dram, dtype=np_type, count=math.prod(shape),
                              offset=desc.dram_offset).reshape(shape)
                for desc, np_type, shape in zip(self.inputs, self._io_types[0],
                                                self._input_shapes, strict=True)]
        return self._input_buffers

    def _order_inputs(self, inputs) -> list[np.ndarray]:
        descs = self.inputs
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, dict):
            unknown = set(inputs) - {d.name for d in descs}
            if unknown:
                raise RuntimeInputError(
                    f"{self.name}: unknown input(s) {sorted(unknown)}; the model takes "
                    f"{[d.name for d in descs]}"
                )
            missing = [d.name for d in descs if d.name not in inputs]
            if missing:
                raise RuntimeInputError(f"{self.name}: missing input(s) {missing}")
            return [np.asarray(inputs[d.name]) for d in descs]
        inputs = list(inputs)
        if len(inputs) != len(descs):
            raise RuntimeInputError(
                f"{self.name}: {len(inputs)} inputs given, the model takes {len(descs)} "
                f"({[d.name for d in descs]})"
            )
        return [np.asarray(x) for x in inputs]

    def run(self, inputs, trace: bool | str | os.PathLike | None = None
            ) -> tuple[list[np.ndarray], dict]:
        """Run one inference.  `inputs`: dict name -> array, list in descriptor order, or
        one array.  Returns (fp32 outputs in descriptor order, report dict).  `trace`: True
        records the timeline in `last_trace` (a `mrvl.sim.trace.Timeline`); a path also
        writes it there as Chrome trace-event JSON."""
        arrays = self._order_inputs(inputs)
        device_inputs = []
        buffers = self.input_buffers()
        for x, desc, buffer in zip(arrays, self.inputs, buffers, strict=True):
            if tuple(x.shape) != tuple(desc.shape):
                raise RuntimeInputError(
                    f"{self.name}: input '{desc.name}' has shape {tuple(x.shape)}, expected "
                    f"{tuple(desc.shape)}"
                )
            if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
                raise RuntimeInputError(f"{self.name}: input '{desc.name}' is not numeric")
            device_inputs.append(to_device(x, desc, out=buffer))
        raw_outputs, report = self.run_device(device_inputs, trace=trace)
        return [from_device(raw, desc) for raw, desc in zip(raw_outputs, self.outputs,
                                                            strict=True)], report

    def run_device(self, inputs: list[np.ndarray],
                   trace: bool | str | os.PathLike | None = None
                   ) -> tuple[list[np.ndarray], dict]:
        """Run one inference on inputs already in the descriptors' dtypes and shapes (written
        to DRAM bit for bit, no conversion; the device seam's contract) and return the
        outputs likewise, with the report.  `trace` as in `run`."""
        outputs, run_stats = self._run_device(inputs, trace)
        return outputs, self._report(run_stats)

    def run_device_deferred(self, inputs: list[np.ndarray]
                            ) -> tuple[list[np.ndarray], Callable[[], dict]]:
        """As `run_device` (untraced), but the report is built when the returned function is
        called (any time later, as often as wanted: it holds its own copy of the run's
        statistics), so a caller that does not read it does not pay for it."""
        outputs, run_stats = self._run_device(inputs, None)
        return outputs, functools.partial(self._report, run_stats)

    def run_host_deferred(self, inputs: list[np.ndarray]
                          ) -> tuple[list[np.ndarray], Callable[[], dict]]:
        """As `run_device_deferred`, with the outputs converted for the host as `from_device`
        converts them (the same bits): fp16 ones widened to fp32 in C straight from the
        simulated DRAM (one pass, no fp16 copy), which also counts their non-finite values."""
        outputs, run_stats = self._run_host(inputs)
        return outputs, functools.partial(self._report, run_stats)

    def _run_device(self, inputs: list[np.ndarray],
                    trace: bool | str | os.PathLike | None) -> tuple[list[np.ndarray],
                                                                     _RunStats]:
        dram = self._write_inputs(inputs)
        ffi, lib = self._ffi, self._lib
        stats, layers, msg = self._run_buffers or self._make_run_buffers()
        n_layers = len(self.binary.layers)
        if trace is None or trace is False:
            status = lib.mlip_sim_run(self._handle, stats, layers, n_layers, msg, 1024)
        else:
            status, records = self._run_traced(stats, layers, n_layers, msg)
        if status != 0:
            error = _STATUS_ERRORS.get(status, MrvlError)
            raise error(f"{self.name}: {ffi.string(msg).decode('utf-8', 'replace')}")
        if trace is not None and trace is not False:
            self.last_trace = trace_module.Timeline(
                self.binary.name, records, [layer.name for layer in self.binary.layers],
                self.machine.clock_mhz, int(stats.cycles))
            if trace is not True:
                trace_module.write_chrome_trace(trace, self.last_trace)
        views = self._output_views or self._make_output_views(dram)
        outputs = [view.copy() for view in views]
        return outputs, self._snapshot(stats, layers, n_layers, outputs)

    def _write_inputs(self, inputs: list[np.ndarray]) -> memoryview:
        """Write the inputs to the simulated DRAM (nothing for those that are the
        `input_buffers` themselves); returns the DRAM.  Refuses a closed simulator and a
        wrong input count."""
        if self._handle is None:
            raise SimulationError(f"{self.name}: the simulator was closed")
        if len(inputs) != len(self.inputs):
            raise RuntimeInputError(f"{self.name}: {len(inputs)} inputs given, the model "
                                    f"takes {len(self.inputs)}")
        dram = self._io_dram()
        buffers = self._input_buffers or ()
        for k, (x, desc, np_type, shape) in enumerate(zip(
                inputs, self.inputs, self._io_types[0], self._input_shapes, strict=True)):
            if k < len(buffers) and x is buffers[k]:
                continue  # converted in place (`input_buffers`)
            x = np.asarray(x)
            if x.dtype != np_type or x.shape != shape:
                raise RuntimeInputError(
                    f"{self.name}: input '{desc.name}' must be {np_type} "
                    f"{list(desc.shape)}, got {x.dtype} {list(x.shape)}")
            raw = memoryview(np.ascontiguousarray(x)).cast("B")
            dram[desc.dram_offset:desc.dram_offset + len(raw)] = raw
        return dram

    def _make_run_buffers(self) -> tuple:
        """The C core's stats, layer stats and message buffers, allocated once (a report
        copies what it reads out of them)."""
        ffi = self._ffi
        if ffi.sizeof("mlip_stats") != _STATS.size:
            raise MrvlError("mlip_stats has changed; update simulator._STATS")
        self._run_buffers = (ffi.new("mlip_stats *"),
                             ffi.new("mlip_layer_stats[]", max(len(self.binary.layers), 1)),
                             ffi.new("char[1024]"))
        return self._run_buffers

    def _make_output_views(self, dram: memoryview) -> list[np.ndarray]:
        """The outputs' places in DRAM (made once)."""
        self._output_views = [
            np.frombuffer(dram[desc.dram_offset:desc.dram_offset + size], dtype=np_type
                          ).reshape(desc.shape)
            for desc, np_type, size in zip(self.outputs, self._io_types[1],
                                           self._output_bytes, strict=True)]
        return self._output_views

    def _run_host(self, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], _RunStats]:
        """`_run_device` untraced with the outputs converted as `from_device` converts them:
        the fp32 results allocated before the run, fp16 outputs widened in C straight from
        DRAM after it (counting their non-finite values in the same pass)."""
        dram = self._write_inputs(inputs)
        ffi, lib = self._ffi, self._lib
        if self._host_plan is None:  # per output: view, desc, fp16 DRAM pointer or None
            self._host_plan = [
                (view, desc, ffi.cast("uint16_t *", ffi.from_buffer(view))
                 if view.dtype == np.float16 and not desc.quantize and view.size else None)
                for view, desc in zip(self._output_views or self._make_output_views(dram),
                                      self.outputs, strict=True)]
        outputs, targets = [], []
        for view, _, source in self._host_plan:
            out = np.empty(view.shape, dtype=np.float32) if source is not None else view
            outputs.append(out)
            targets.append(ffi.cast("float *", ffi.from_buffer(out)) if source is not None
                           else None)
        stats, layers, msg = self._run_buffers or self._make_run_buffers()
        n_layers = len(self._layer_names)
        status = lib.mlip_sim_run(self._handle, stats, layers, n_layers, msg, 1024)
        if status != 0:
            error = _STATUS_ERRORS.get(status, MrvlError)
            raise error(f"{self.name}: {ffi.string(msg).decode('utf-8', 'replace')}")
        nonfinite = 0
        for k, (view, desc, source) in enumerate(self._host_plan):
            if source is None:
                nonfinite += _count_nonfinite(view, (ffi, lib))
                outputs[k] = from_device(view, desc)
            else:
                nonfinite += lib.mlip_f16_to_f32(source, targets[k], view.size)
        return outputs, self._snapshot(stats, layers, n_layers, outputs, nonfinite)

    def _snapshot(self, stats, layers, n_layers: int, outputs: list[np.ndarray],
                  nonfinite: int | None = None) -> _RunStats:
        """The run's statistics copied out of the C core's (reused) buffers."""
        if self._stats_views is None:  # the buffers are the same every run: views made once
            ffi = self._ffi
            self._stats_views = (ffi.buffer(stats),
                                 ffi.buffer(layers, n_layers * ffi.sizeof("mlip_layer_stats")))
        stats_view, layers_view = self._stats_views
        return _RunStats(bytes(stats_view), bytes(layers_view), n_layers, outputs, nonfinite)

    def _run_traced(self, stats, layers, n_layers: int, msg) -> tuple[int, np.ndarray]:
        """`mlip_sim_run_traced` into a buffer sized exactly from the instruction count."""
        ffi, lib = self._ffi, self._lib
        if ffi.sizeof("mlip_trace_record") != trace_module.RECORD_DTYPE.itemsize:
            raise MrvlError("mlip_trace_record and trace.RECORD_DTYPE disagree; rebuild")
        capacity = int(lib.mlip_sim_trace_size(self._handle))
        records = np.zeros(max(capacity, 1), dtype=trace_module.RECORD_DTYPE)
        buffer = ffi.cast("mlip_trace_record *", ffi.from_buffer(records))
        recorded = ffi.new("uint64_t *")
        dropped = ffi.new("uint64_t *")
        status = lib.mlip_sim_run_traced(self._handle, stats, layers, n_layers, buffer,
                                         capacity, recorded, dropped, msg, 1024)
        if status == 0 and dropped[0]:  # the size is exact: a dropped record is a core bug
            raise SimulationError(f"{self.name}: the trace dropped {dropped[0]} records")
        return status, records[:recorded[0]]

    # -- the report --
    def _layer_reports(self, data: bytes, n_layers: int, tiles: int, per_cycle: int,
                       clock_hz: float) -> list[dict]:
        """One dict per layer, from the C core's `mlip_layer_stats` array (read as one numpy
        array; the derived figures are computed column-wise in float64 with the same
        operations, in the same order, as the scalar formulas they replace).  The timing
        does not depend on the data, so a run whose stats equal the last run's gets copies
        of the last run's dicts (a fresh dict per layer, as many times faster to make)."""
        t = self.machine
        if self._last_layers is not None and self._last_layers[0] == data:
            return list(map(dict.copy, self._last_layers[1]))
        raw = np.frombuffer(data, dtype=np.uint64).reshape(n_layers, -1)
        if raw.shape[1] != 10:
            raise MrvlError("mlip_layer_stats has changed; update Simulator._layer_reports")
        (start, end, m16, m8, dma_in, dma_out, matrix, vector, insns,
         tile_copy) = (raw[:, k] for k in range(10))
        span = np.where(insns != 0, end - start, np.uint64(0))
        macs = m16 + m8
        dram_bytes = dma_in + dma_out
        compute = (m16 / per_cycle + m8 / (per_cycle * t.int8_speedup)) / tiles
        roofline = np.ceil(np.maximum(compute, dram_bytes / t.dram_bytes_per_cycle))
        active = span != 0
        safe_span = np.where(active, span, np.uint64(1)).astype(np.float64)
        tflops = np.where(active, 2.0 * macs / (safe_span / clock_hz) / 1e12, 0.0)
        utilization = np.where(active, matrix / (safe_span * tiles), 0.0)
        columns = (self._layer_names, macs.tolist(), self._compiler_macs, start.tolist(),
                   end.tolist(), span.tolist(), insns.tolist(), dma_in.tolist(),
                   dma_out.tolist(), tile_copy.tolist(), matrix.tolist(), vector.tolist(),
                   roofline.astype(np.int64).tolist(), tflops.tolist(), utilization.tolist())
        rows = [dict(zip(_LAYER_KEYS, row)) for row in zip(*columns, strict=True)]
        self._last_layers = (data, [row.copy() for row in rows])
        return rows

    def _report(self, run_stats: _RunStats) -> dict:
        """The report dict of docs/isa.md section 5 from one run's statistics."""
        n_layers, outputs = run_stats.n_layers, run_stats.outputs
        t = self.machine
        b = self.binary
        tiles = b.tile_end - b.tile_start + 1
        per_cycle = t.matrix_rows * t.matrix_cols
        # the C core's mlip_stats in one read (fourteen uint64: see _STATS_FIELDS)
        (cycles, init_cycles, macs_fp16, macs_int8, dma_in_bytes, dma_out_bytes, matrix_busy,
         vector_busy, dram_busy, stall_dma_in, stall_compute, stall_dma_out, instructions,
         tile_copy_bytes) = _STATS.unpack(run_stats.stats)
        macs = macs_fp16 + macs_int8
        clock_hz = t.clock_mhz * 1e6
        seconds = cycles / clock_hz
        peak = 2.0 * tiles * per_cycle * clock_hz / 1e12

        def roofline(m16: int, m8: int, dram_bytes: int) -> int:
            """The roofline of this program's own traffic (its DMA bytes, not the minimum)."""
            compute = (m16 / per_cycle + m8 / (per_cycle * t.int8_speedup)) / tiles
            return math.ceil(max(compute, dram_bytes / t.dram_bytes_per_cycle))

        def tflops(m: int, cyc: int) -> float:
            return 2.0 * m / (cyc / clock_hz) / 1e12 if cyc else 0.0

        ocm_bytes = (b.ocm_end - b.ocm_start) * tiles
        report = {
            "model": b.name,
            "tiles": tiles,
            "cycles": cycles,
            "init_cycles": init_cycles,
            "clock_mhz": t.clock_mhz,
            "time_ms": seconds * 1e3,
            "macs": macs,
            "macs_fp16": macs_fp16,
            "macs_int8": macs_int8,
            "flops": 2 * macs,
            "peak_tflops": peak,
            "achieved_tflops": tflops(macs, cycles),
            "peak_mac_fraction": tflops(macs, cycles) / peak if peak else 0.0,
            "bound_cycles": self.bound.cycles,
            "efficiency": self.bound.cycles / cycles if cycles else 0.0,
            "bound": dict(self._bound_dict),
            "machine": dict(self._machine_dict),
            "matrix_utilization": matrix_busy / (cycles * tiles) if cycles else 0.0,
            "vector_utilization": vector_busy / (cycles * tiles) if cycles else 0.0,
            "dram_utilization": dram_busy / cycles if cycles else 0.0,
            "dma_in_bytes": dma_in_bytes,
            "dma_out_bytes": dma_out_bytes,
            "tile_copy_bytes": tile_copy_bytes,
            "ocm_bytes": ocm_bytes,
            "ocm_percent": 100.0 * ocm_bytes / (t.ocm_bytes * tiles),
            "traffic_roofline_cycles": roofline(
                macs_fp16, macs_int8, dma_in_bytes + dma_out_bytes),
            "stall_cycles": {
                "dma_in": stall_dma_in,
                "compute": stall_compute,
                "dma_out": stall_dma_out,
            },
            "instructions": instructions,
            "nonfinite_outputs": run_stats.nonfinite if run_stats.nonfinite is not None else sum(
                _count_nonfinite(o, (self._ffi, self._lib)) for o in outputs),
            "layers": [],
        }
        if n_layers:
            report["layers"] = self._layer_reports(run_stats.layers, n_layers, tiles,
                                                   per_cycle, clock_hz)
        return report


_EXPONENT_MASKS = {np.dtype(np.float16): (np.uint16, 0x7C00),
                   np.dtype(np.float32): (np.uint32, 0x7F800000)}


def _count_nonfinite(x: np.ndarray, core=None) -> int:
    """Infinities and NaNs in a float array (all exponent bits set), 0 for other dtypes.
    With `core` (the C core's ffi, lib), contiguous fp16 / fp32 arrays are counted there (no numpy
    ufunc machinery to bring back into the caches after a simulation)."""
    if x.dtype.kind != "f":
        return 0
    if core is not None and x.dtype in _EXPONENT_MASKS and x.flags.c_contiguous and x.size:
        ffi, lib = core
        return int(lib.mlip_count_nonfinite(ffi.from_buffer(x), x.size, x.dtype.itemsize))
    if x.dtype not in _EXPONENT_MASKS:
        return int(np.count_nonzero(~np.isfinite(x)))
    bits, mask = _EXPONENT_MASKS[x.dtype]
    return int(np.count_nonzero((np.ascontiguousarray(x).view(bits) & mask) == mask))


def _with_machine(data: bytes, machine, name: str) -> bytes:
    """`data` with its machine record replaced by `machine` (or the overrides applied)."""
    if not isinstance(machine, Machine):
        recorded = ModelBinary.from_bytes(data, source=name, decode_code=False).machine
        assert recorded is not None
        machine = recorded.with_overrides(machine)
    return replace_machine(data, machine, source=name)


def format_report(report: dict) -> str:
    """The --perf-debug text: whole-model figures, then one line per layer."""
    r = report
    lines = [
        f"model {r['model']}: {r['tiles']} tile(s) at {r['clock_mhz']} MHz",
        f"  {format_machine(r['machine'])}",
        f"  total cycles        {r['cycles']:>14,}   ({r['time_ms']:.3f} ms)",
        f"  init cycles         {r['init_cycles']:>14,}",
        f"  bound cycles        {r['bound_cycles']:>14,}   (program-independent: MACs at "
        "peak, weights + I/O once over DRAM)",
        f"  efficiency          {100 * r['efficiency']:>13.1f} %   (bound / total cycles)",
        f"  own-traffic roofline{r['traffic_roofline_cycles']:>14,}   (this program's DMA "
        "bytes)",
        f"  matmul flops        {r['flops']:>14,}",
        f"  TFLOPS              {r['achieved_tflops']:>14.3f} of {r['peak_tflops']:.2f} "
        f"({100 * r['peak_mac_fraction']:.1f} % of peak)",
        f"  matrix engine util  {100 * r['matrix_utilization']:>13.1f} %",
        f"  vector engine util  {100 * r['vector_utilization']:>13.1f} %",
        f"  DMA DRAM->OCM       {r['dma_in_bytes']:>14,} bytes",
        f"  DMA OCM->DRAM       {r['dma_out_bytes']:>14,} bytes",
        *([f"  TILE_COPY OCM->OCM  {r['tile_copy_bytes']:>14,} bytes (delivered)"]
          if r.get("tile_copy_bytes") else []),
        f"  OCM used            {r['ocm_bytes']:>14,} bytes ({r['ocm_percent']:.2f} %)",
        "  stall cycles        dma_in {dma_in:,}  compute {compute:,}  dma_out {dma_out:,}".format(
            **r["stall_cycles"]),
        f"  instructions        {r['instructions']:>14,}",
    ]
    if r.get("nonfinite_outputs"):
        lines.append(f"  WARNING: {r['nonfinite_outputs']} output values are inf/nan "
                     "(beyond the fp16 range?)")
    if r["layers"]:
        lines.append("")
        lines.append(f"  {'layer':<32} {'cycles':>12} {'own roof':>12} {'MACs':>14} "
                     f"{'TFLOPS':>8} {'mat %':>6} {'DMA in':>12} {'DMA out':>12}")
        for layer in r["layers"]:
            lines.append(
                f"  {layer['name'][:32]:<32} {layer['cycles']:>12,} "
                f"{layer['traffic_roofline_cycles']:>12,} {layer['macs']:>14,} "
                f"{layer['achieved_tflops']:>8.3f} {100 * layer['matrix_utilization']:>6.1f} "
                f"{layer['dma_in_bytes']:>12,} {layer['dma_out_bytes']:>12,}"
            )
    return "\n".join(lines)
