"""The device seam: what the hybrid runtime needs from an accelerator, and the simulator's
implementation of it.

A `Device` loads model binaries (docs/isa.md), runs them on host tensors that are already in
the binary's own I/O format (each input array has exactly the dtype, layout and shape of its
descriptor; the runtime does every conversion), and unloads them. A hardware backend (the
RFC's step 3b: a driver for a real MLIP) would implement the same four methods; nothing else in
mrvl talks to the simulator directly.  Optional methods the runtime uses when present:
`timeline(handle)` (traced runs), `input_buffers(handle)` (arrays in the device's own input
memory that the runtime converts into, so `run` copies nothing), `run_deferred(handle,
inputs)` (`run` returning a function that builds the report, called only when a step's
report is read) and `run_host_deferred(handle, inputs)` (the same, with the outputs already
converted for the host).

    device = SimulatorDevice()
    handle = device.load(Path("build/tvmgen_mrvl_main_0.bin"))
    in_descs, out_descs = device.io(handle)
    outputs, report = device.run(handle, [x_fp16_nhwc])
    device.unload(handle)

Invariants:
- `run` never converts: it checks that each input matches its descriptor (dtype, shape) and
  raises `RuntimeInputError` otherwise; outputs come back in their descriptors' dtype/shape.
- `report` is a JSON-ready dict; for the simulator it is the C core's performance report
  (total cycles, per-layer figures); a device without timing may return {}.
- A handle is valid until `unload`; using it afterwards raises `SimulationError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mrvl.errors import RuntimeInputError, SimulationError
from mrvl.mlip_binary import IODesc
from mrvl.mlip_isa import DTYPE_NUMPY, DType, Layout

LAYOUT_NAMES = {int(Layout.NONE): "NONE", int(Layout.NCHW): "NCHW", int(Layout.NHWC): "NHWC"}


def desc_numpy_dtype(desc: IODesc) -> np.dtype:
    """The numpy dtype of a descriptor's host buffer."""
    return np.dtype(DTYPE_NUMPY[DType(desc.dtype)])


def describe(desc: IODesc) -> str:
    """`name: fp16 NHWC [1, 28, 28, 1]` (for error messages and reports)."""
    layout = LAYOUT_NAMES.get(int(desc.layout), str(desc.layout))
    quant = f" quantised scale {desc.scale:g} zp {desc.zero_point}" if desc.quantize else ""
    return (f"{desc.name}: {DType(desc.dtype).name.lower()} {layout} "
            f"{list(desc.shape)}{quant}")


@runtime_checkable
class Device(Protocol):
    """What the runtime needs from an accelerator (simulated or real)."""

    name: str

    def load(self, binary: bytes | Path) -> Any:
        """Validate and load a model binary; returns an opaque handle."""
        ...

    def io(self, handle: Any) -> tuple[list[IODesc], list[IODesc]]:
        """The input and output descriptors of a loaded model, in binary order."""
        ...

    def run(self, handle: Any, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        """Run once on inputs in descriptor format; returns (outputs, report)."""
        ...

    def unload(self, handle: Any) -> None:
        """Release a loaded model."""
        ...


def check_device_inputs(descs: list[IODesc], inputs: list[np.ndarray], where: str) -> None:
    """Raise `RuntimeInputError` unless every input has its descriptor's dtype and shape."""
    if len(inputs) != len(descs):
        raise RuntimeInputError(f"{where}: expected {len(descs)} input(s), got {len(inputs)}")
    for desc, arr in zip(descs, inputs):
        dtype = desc_numpy_dtype(desc)
        if arr.dtype != dtype or tuple(arr.shape) != tuple(desc.shape):
            raise RuntimeInputError(
                f"{where}: input '{desc.name}' expected {dtype} {list(desc.shape)}, got "
                f"{arr.dtype} {list(arr.shape)}"
            )


@dataclass
class _Loaded:
    simulator: Any
    inputs: list[IODesc]
    outputs: list[IODesc]
    source: str


@dataclass
class SimulatorDevice:
    """`Device` on the C simulator core (`mrvl.sim.simulator.Simulator`).

    `timing` (a `TimingParams`, or None for the defaults) goes to `Simulator.load`; the
    functional results do not depend on it. `run` hands the arrays to
    `Simulator.run_device`, which writes them to the simulated DRAM bit for bit and returns
    the outputs in their descriptors' dtypes (no fp32 round trip, so 32-bit integers beyond
    2^24 stay exact).
    """

    timing: Any = None
    name: str = "mlip-simulator"
    _handles: dict[int, _Loaded] = field(default_factory=dict, repr=False)
    _next: int = 0

    def load(self, binary: bytes | Path) -> int:
        from mrvl.sim.simulator import Simulator

        source = "<bytes>" if isinstance(binary, bytes | bytearray) else str(binary)
        simulator = Simulator.load(binary, timing=self.timing)
        self._next += 1
        self._handles[self._next] = _Loaded(simulator, list(simulator.inputs),
                                            list(simulator.outputs), source)
        return self._next

    def _get(self, handle: int) -> _Loaded:
        loaded = self._handles.get(handle)
        if loaded is None:
            raise SimulationError(f"{self.name}: handle {handle!r} is not loaded")
        return loaded

    def io(self, handle: int) -> tuple[list[IODesc], list[IODesc]]:
        loaded = self._get(handle)
        return list(loaded.inputs), list(loaded.outputs)

    def run(self, handle: int, inputs: list[np.ndarray],
            trace: bool = False) -> tuple[list[np.ndarray], dict]:
        """As `Device.run`; with `trace` the run's timeline is kept for `timeline`."""
        loaded = self._get(handle)
        check_device_inputs(loaded.inputs, inputs, loaded.source)
        return loaded.simulator.run_device(list(inputs), trace=True if trace else None)

    def run_deferred(self, handle: int, inputs: list[np.ndarray]
                     ) -> tuple[list[np.ndarray], Callable[[], dict]]:
        """As `run` (untraced), with a function that builds the report when called instead
        of the report (`Simulator.run_device_deferred`).  Optional for a `Device`: the
        runtime builds a step's report only when it is read when the device has it."""
        loaded = self._get(handle)
        check_device_inputs(loaded.inputs, inputs, loaded.source)
        return loaded.simulator.run_device_deferred(list(inputs))

    def run_host_deferred(self, handle: int, inputs: list[np.ndarray]
                          ) -> tuple[list[np.ndarray], Callable[[], dict]]:
        """As `run_deferred`, with the outputs already converted for the host as
        `mrvl.sim.simulator.from_device` converts them (fp32, the same bits), so the runtime
        does not convert them again.  Optional for a `Device`: the runtime uses it when
        present.  Inputs that are this handle's `input_buffers` are not checked again."""
        loaded = self._get(handle)
        simulator = loaded.simulator
        buffers = simulator.input_buffers()
        checked = len(inputs) == len(buffers)
        for x, buffer in zip(inputs, buffers):
            checked = checked and x is buffer
        if not checked:
            check_device_inputs(loaded.inputs, inputs, loaded.source)
        return simulator.run_host_deferred(inputs)

    def input_buffers(self, handle: int) -> list[np.ndarray]:
        """Per input descriptor, the array in the device's own input memory (the simulated
        DRAM) to convert into; `run` given these very arrays copies nothing.  Optional for
        a `Device`: the runtime converts into them when the device has them."""
        return self._get(handle).simulator.input_buffers()

    def timeline(self, handle: int):
        """The `mrvl.sim.trace.Timeline` of the handle's last traced run (None if none).
        Optional for a `Device`: the runtime traces only devices that have it."""
        return self._get(handle).simulator.last_trace

    def unload(self, handle: int) -> None:
        loaded = self._handles.pop(handle, None)
        if loaded is not None:
            loaded.simulator.close()
