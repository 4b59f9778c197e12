"""mrvl's Python API for users: the same verbs as the `mrvl` command.

```python
from mrvl.driver import api

module = api.import_onnx("model.onnx", input_shapes={"x": [1, 3, 224, 224]})
api.partition_for_mrvl(module)                  # the BYOC-style step 1 on a module

build = api.compile("model.onnx", "build/", num_tiles=8, quantize="fp16")
api.compile("det.onnx", "det/", input_shapes={"x": [1, 3, 640, 640]})  # symbolic H, W
api.compile("model.onnx", "b8/", quantize="int8", calibration="samples.npz")  # N stacked
api.compile("mnist.onnx", "b100/", batch_size=100)  # runs in chunks of 8 rows
result = api.run(build, {"data": x}, check=True)
result.outputs["prob"], result.total_cycles, result.checks
print(api.format_report(api.report(build)))
api.show(build, "partition.svg")
```

Invariants: each function raises a `MrvlError` subclass for bad input (never a bare
exception); `run` loads, runs and unloads (use `load` to keep a model loaded across runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mrvl.driver.compiler import (
    compile_json_pair,
    compile_model,
    compile_to_partitioned,
    write_json_pairs,
)
from mrvl.errors import MrvlError
from mrvl.frontend.onnx_import import import_onnx
from mrvl.lowering.mrvl_partition import partition_for_mrvl
from mrvl.sim import acceptance
from mrvl.sim.device import Device
from mrvl.sim.runtime import (
    CompiledModel,
    RunResult,
    load_manifest,
    run_reference,
    save_run_report,
)

__all__ = [
    "import_onnx", "partition_for_mrvl", "compile_to_partitioned", "write_json_pairs",
    "compile_model", "compile_json_pair", "compile", "load", "run", "check", "report",
    "format_report", "show", "ApiRunResult",
]


def compile(model: str | Path | onnx.ModelProto, out_dir: str | Path, **options: Any) -> Path:
    """Compile an ONNX model (path or ModelProto) into the build directory `out_dir`.

    `options` are `CompileOptions.from_keywords`'s (`num_tiles`, `quantize`, `calibration`
    (required for int8: an .npz / mapping of samples, or "random"), `machine`, partition
    options such as `batch_size` and `input_shapes`; driver/compiler.py); see
    `mrvl compile --help`. Notes and warnings go to stderr. Returns the build directory.
    """

    out = Path(out_dir)
    if isinstance(model, onnx.ModelProto):
        import tempfile

        # the model goes to a scratch directory, never into the build directory
        with tempfile.TemporaryDirectory(prefix="mrvl-model-") as scratch:
            path = Path(scratch) / "model.onnx"
            try:
                onnx.save(model, path)
            except OSError as error:
                raise MrvlError(f"cannot write the model to a temporary file: "
                                f"{error.strerror}") from None
            compile_model(path, out, **options)
        return out
    if not Path(model).is_file():
        raise MrvlError(f"model file '{model}' does not exist")
    compile_model(model, out, **options)
    return out


def load(build_dir: str | Path, device: Device | None = None, threads: int = 1) -> CompiledModel:
    """Load a build directory for repeated runs (`with api.load(b) as m: m.run(feeds)`).
    `threads`: onnxruntime threads of the CPU steps and, with the default device, simulator
    threads for large instructions (`TimingParams.threads`; same results)."""
    return CompiledModel.load(build_dir, device=device, threads=threads)


@dataclass
class ApiRunResult:
    """Outputs by name, the runtime's per-step records, and the acceptance checks (when
    `check=True`)."""

    outputs: dict[str, np.ndarray]
    result: RunResult
    checks: list[acceptance.OutputCheck] = field(default_factory=list)

    @property
    def total_cycles(self) -> int:
        return self.result.total_cycles

    @property
    def passed(self) -> bool:
        return acceptance.passed(self.checks)


def check(build_dir: str | Path, inputs: Mapping[str, np.ndarray],
          outputs: Mapping[str, np.ndarray]) -> list[acceptance.OutputCheck]:
    """Marvell's rule for `outputs` against the original model on onnxruntime."""
    manifest = load_manifest(build_dir)
    expected = run_reference(manifest, inputs)
    mode = "int8" if manifest.quantize == "int8" else "fp16"
    return acceptance.check_outputs(outputs, expected, mode)


_check = check  # `run` has a parameter named `check`


def run(build_dir: str | Path, inputs: Mapping[str, np.ndarray], *, check: bool = False,
        record: bool = True, device: Device | None = None,
        trace: bool | str | Path | None = None) -> ApiRunResult:
    """Run a build directory once; `check=True` also applies the acceptance rule. `record`
    writes `run_report.json` into the build directory (for `report`). `trace`: True keeps
    the simulated timeline (`.result.trace_events()`), a path also writes it as Chrome
    trace-event JSON."""
    with CompiledModel.load(build_dir, device=device) as model:
        result = model.run(inputs, trace=trace)
    if record:
        save_run_report(build_dir, result)
    checks = _check(build_dir, inputs, result.outputs) if check else []
    return ApiRunResult(result.outputs, result, checks)


def report(build_dir: str | Path) -> dict[str, Any]:
    """The build's report (partition, offload share, per-layer cycles, OCM, DMA) as a dict."""
    from mrvl.driver.verb_report import build_report

    return build_report(build_dir)


def format_report(data: dict[str, Any]) -> str:
    """Text of `report`'s dict (what `mrvl report` prints)."""
    from mrvl.driver.verb_report import format_build_report

    return format_build_report(data)


def show(build_dir: str | Path, out: str | Path) -> Path:
    """Picture of the build's partition: DOT, or SVG when `out` ends in .svg and Graphviz is
    installed (else the DOT text is written next to it). Returns the written path."""
    from mrvl.lowering.partition_dot import check_picture_path, write_picture

    check_picture_path(out)
    manifest = load_manifest(build_dir)
    if not manifest.model_onnx.is_file():
        raise MrvlError(f"'{manifest.model_onnx}' is missing: cannot draw the partition")
    options = manifest.options.get("partition", {})
    module = compile_to_partitioned(str(manifest.model_onnx), **options)
    return write_picture(module, out, title=Path(build_dir).name)
