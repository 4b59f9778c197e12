"""`mrvl run build/ --inputs x.npz [-o outputs.npz] [--check] [--perf-debug]
[--trace run.json]`.

Runs a build directory end to end with the hybrid runtime (accelerator sub-graphs on the
simulator, CPU sub-graphs on onnxruntime) and records the run's per-step report in
`build/run_report.json` (read by `mrvl report`). `--trace` writes the simulated timeline as
Chrome trace-event JSON (`mrvl.sim.trace`).

Exit codes: 0 success (and, with `--check`, every output passes Marvell's rule); 1 the check
failed; 2 bad input (missing file, wrong input name / shape / dtype, malformed build dir).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mrvl.errors import MrvlError, RuntimeInputError
from mrvl.files import OutputFileError, atomic_output, check_output_path, read_arrays

HELP = "run a compiled build directory end to end (accelerator simulated, CPU on onnxruntime)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "inputs: an .npz whose keys are the model's input names, or an .npy for a model with "
        "one input.\n--check compares with the original model on onnxruntime using Marvell's "
        "rule:\n  fp16: elements within 100x of the largest |reference| differ by <= 3% "
        "relative;\n  int8: every element within +-3 LSB (LSB = max|reference| / 127).\n"
        "exit status: 0 ok, 1 --check failed, 2 bad input."
    )
    parser.add_argument("build", help="build directory written by `mrvl compile`")
    parser.add_argument("--inputs", "-i", required=True, metavar="X.npz",
                        help="input tensors (.npz keyed by input name, or .npy)")
    parser.add_argument("-o", "--output", metavar="OUT.npz", default=None,
                        help="write the outputs to this .npz (keyed by output name)")
    parser.add_argument("--check", action="store_true",
                        help="compare with onnxruntime on the original model (acceptance rule)")
    parser.add_argument("--perf-debug", action="store_true",
                        help="print the per-layer performance report of each accelerator step")
    parser.add_argument("--trace", metavar="RUN.json", default=None,
                        help="write the simulated timeline as Chrome trace-event JSON "
                             "(open it in Perfetto or chrome://tracing)")
    parser.add_argument("--threads", type=int, default=1,
                        help="host threads (default 1): onnxruntime's for the CPU steps, and "
                             "the simulator's: large CONVs, and the tiles between barriers "
                             "once two inferences (batch chunks) have passed the dependency "
                             "check; the same outputs and cycles")


def load_inputs(path: str | Path, input_names: list[str]) -> dict[str, np.ndarray]:
    """Read .npz (keys = input names) or .npy (single-input models); raises RuntimeInputError."""
    arrays = read_arrays(path, "--inputs", RuntimeInputError, allow_npy=True)
    if isinstance(arrays, dict):
        return arrays
    if len(input_names) != 1:
        raise RuntimeInputError(f"'{path}' holds one array but the model has inputs "
                                f"{input_names}; give an .npz keyed by input name")
    return {input_names[0]: arrays}


def format_perf(report: dict, symbol: str) -> str:
    """The text of one accelerator step's device report (the simulator's own when it has one)."""
    from mrvl.sim.simulator import format_report
    from mrvl.driver.verb_report import format_run_layers

    try:
        return f"== {symbol} ==\n{format_report(report)}"
    except (KeyError, TypeError, ValueError):  # a device report without the simulator's keys
        pass

    return f"== {symbol} ==\n{format_run_layers(report)}"


def run(args: argparse.Namespace) -> int:
    from mrvl.sim import acceptance
    from mrvl.sim.runtime import CompiledModel, load_manifest, run_reference, save_run_report

    if args.threads < 1:
        raise MrvlError(f"--threads must be at least 1, got {args.threads}")
    for path, what in ((args.output, "outputs"), (args.trace, "trace")):
        if path is not None:
            check_output_path(path, what)
    manifest = load_manifest(args.build)
    inputs = load_inputs(args.inputs, [s.name for s in manifest.inputs])
    with CompiledModel(manifest, threads=args.threads) as model:
        result = model.run(inputs, trace=args.trace, progress=True)
    try:
        save_run_report(args.build, result)
    except OutputFileError as error:  # a read-only build still runs
        print(f"mrvl run: warning: {error}; `mrvl report` will not show this run",
              file=sys.stderr)
    for name, arr in result.outputs.items():
        print(f"output {name}: {arr.dtype} {list(arr.shape)}")
    accel = [s for s in result.steps if s.kind == "accelerator"]
    cpu = [s for s in result.steps if s.kind == "cpu"]
    print(f"steps: {len(accel)} accelerator, {len(cpu)} cpu; simulated cycles "
          f"{result.total_cycles}; wall {sum(s.wall_s for s in result.steps):.3f} s")
    if args.trace is not None:
        print(f"wrote the timeline to {args.trace} (open it in Perfetto or chrome://tracing)")
    if args.perf_debug:
        for step in accel:
            print(format_perf(step.report, step.symbol))
    if args.output is not None:
        with atomic_output(args.output, "outputs") as temporary:
            with open(temporary, "wb") as handle:  # a file object: numpy adds no suffix
                np.savez(handle, **result.outputs)
        print(f"wrote {args.output}")
    if not args.check:
        return 0
    from mrvl.progress import Progress

    with Progress("mrvl run", enabled=True) as bar:
        bar.update("the reference on onnxruntime (--check)", force=True)
        expected = run_reference(manifest, inputs, threads=args.threads)
    mode = "int8" if manifest.quantize == "int8" else "fp16"
    checks = acceptance.check_outputs(result.outputs, expected, mode)
    for check in checks:
        print(f"check {check.summary()}")
    ok = acceptance.passed(checks)
    print("check: PASS" if ok else "check: FAIL", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
