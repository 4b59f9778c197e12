"""`mrvl example [mnist|resnet50|ssd]`: compile an in-repo model, run it end to end, report.

- `mnist` (the README's first command): the RFC's MNIST CNN trained on scikit-learn's digits
  is compiled (fp16, 8 tiles, batch 8 by default) into a build directory; the held-out split
  (450 images) runs through the hybrid runtime (accelerator sub-graphs simulated, CPU parts on
  onnxruntime), one compiled batch at a time (the last one zero-padded); prints the accuracy
  of the simulated fp16 model next to onnxruntime's fp32 accuracy, the share of images whose
  predicted labels agree, how many images pass Marvell's fp16 rule on the logits, and the
  performance report.
- `resnet50`, `ssd`: compile the model and run one seeded input with the acceptance check.

`run_mnist(out_dir, ...)` and `run_single(name, out_dir, ...)` return the figures as a dict
(used by the tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mrvl.errors import MrvlError

HELP = "compile and run an in-repo example model end to end (mnist, resnet50, ssd)"

EXAMPLES = ("mnist", "resnet50", "ssd")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default="mnist", choices=EXAMPLES,
                        help="which example (default mnist)")
    parser.add_argument("-o", "--out", default=None,
                        help="build directory (default build/example-<name>)")
    parser.add_argument("--num-tiles", type=int, default=8, help="accelerator tiles (default 8)")
    parser.add_argument("--batch", type=int, default=8,
                        help="mnist: batch the model is compiled for (default 8, the most the "
                        "accelerator takes; the last batch is zero-padded)")
    parser.add_argument("--limit", type=int, default=None,
                        help="mnist: run only the first N held-out images")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of `model` whose symbolic batch dimension is `batch`: the `dim_param` of the
    first dimension of the inputs, wherever it appears in the inputs and outputs (other
    symbolic dimensions, such as a detection count, stay symbolic)."""
    fixed = onnx.ModelProto.FromString(model.SerializeToString())
    params = set()
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0 and dims[0].HasField("dim_param"):
            params.add(dims[0].dim_param)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in params:
                dim.dim_value = batch
    del fixed.graph.value_info[:]
    return fixed


def _progress(label: str, quiet: bool) -> Callable[[int, int], None]:
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        if quiet or not sys.stderr.isatty() and done != total:
            return
        elapsed = time.perf_counter() - start
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total} ({elapsed:.1f} s)", end=end, file=sys.stderr,
              flush=True)

    return show


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _compile(model: onnx.ModelProto, out: Path, num_tiles: int, quiet: bool) -> float:
    from mrvl.driver import api

    _say(f"compiling into {out}/ (fp16, {num_tiles} tiles) ...", quiet)
    start = time.perf_counter()
    api.compile(model, out, num_tiles=num_tiles, quantize="fp16")
    return time.perf_counter() - start


def _ort_session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def run_mnist(out: Path, num_tiles: int = 8, batch: int = 8, limit: int | None = None,
              quiet: bool = True) -> dict[str, Any]:
    """Compile the trained MNIST CNN and evaluate it on the held-out digits."""
    from mrvl.models import load_digits_28, mnist_cnn_trained
    from mrvl.sim import acceptance
    from mrvl.sim.runtime import CompiledModel, save_run_report

    model = mnist_cnn_trained()
    compile_s = _compile(fix_batch(model, batch), out, num_tiles, quiet)
    _, _, x_test, y_test = load_digits_28()
    if limit is not None:
        x_test, y_test = x_test[:limit], y_test[:limit]
    usable = len(x_test)
    if usable == 0:
        raise MrvlError("mrvl example mnist: --limit leaves no image to run")
    with CompiledModel.load(out) as compiled:
        input_name = compiled.inputs[0].name
        output_name = compiled.outputs[0].name
        start = time.perf_counter()
        outputs, results = compiled.run_batches(
            {input_name: x_test}, progress=_progress("simulating held-out digits", quiet))
        sim_s = time.perf_counter() - start
    save_run_report(out, results[0])
    session = _ort_session(model)
    start = time.perf_counter()
    (reference,) = session.run([output_name], {input_name: x_test})
    ort_s = time.perf_counter() - start
    logits = outputs[output_name]
    sim_labels = logits.argmax(axis=1)
    ort_labels = reference.argmax(axis=1)
    rule_pass = sum(
        acceptance.check_output(output_name, logits[i], reference[i], "fp16").passed
        for i in range(usable)
    )
    return {
        "example": "mnist",
        "build": str(out),
        "images": usable,
        "batch": batch,
        "num_tiles": num_tiles,
        "accuracy_sim": float(np.mean(sim_labels == y_test)),
        "accuracy_ort": float(np.mean(ort_labels == y_test)),
        "label_agreement": float(np.mean(sim_labels == ort_labels)),
        "rule_pass": int(rule_pass),
        "cycles_per_batch": results[0].total_cycles,
        "compile_s": compile_s,
        "sim_wall_s": sim_s,
        "ort_wall_s": ort_s,
    }


def run_single(name: str, out: Path, num_tiles: int = 8, quiet: bool = True) -> dict[str, Any]:
    """Compile `resnet50` or `ssd` (batch 1) and run one seeded input with the check."""
    from mrvl.models import example_inputs, resnet50, ssd_detector
    from mrvl.sim import acceptance
    from mrvl.sim.runtime import CompiledModel, load_manifest, run_reference, save_run_report

    model = {"resnet50": resnet50, "ssd": ssd_detector}[name](batch=1)
    compile_s = _compile(model, out, num_tiles, quiet)
    feeds = example_inputs(model)
    _say("running (accelerator sub-graphs simulated, CPU sub-graphs on onnxruntime) ...", quiet)
    with CompiledModel.load(out) as compiled:
        start = time.perf_counter()
        result = compiled.run(feeds)
        run_s = time.perf_counter() - start
    save_run_report(out, result)
    manifest = load_manifest(out)
    expected = run_reference(manifest, feeds)
    checks = acceptance.check_outputs(result.outputs, expected, "fp16")
    return {
        "example": name,
        "build": str(out),
        "num_tiles": num_tiles,
        "cycles": result.total_cycles,
        "steps": [(s.kind, s.symbol) for s in result.steps],
        "checks": checks,
        "passed": acceptance.passed(checks),
        "compile_s": compile_s,
        "run_wall_s": run_s,
    }


def run(args: argparse.Namespace) -> int:
    from mrvl.driver.verb_report import build_report, format_build_report

    out = Path(args.out if args.out is not None else f"build/example-{args.name}")
    if args.num_tiles < 1:
        raise MrvlError(f"--num-tiles must be at least 1, got {args.num_tiles}")
    if args.batch < 1:
        raise MrvlError(f"--batch must be at least 1, got {args.batch}")
    if args.limit is not None and args.limit < 1:
        raise MrvlError(f"--limit must be at least 1 (images to run), got {args.limit}")
    if args.name == "mnist":
        r = run_mnist(out, args.num_tiles, args.batch, args.limit, args.quiet)
        print(f"MNIST CNN (trained on scikit-learn digits), {r['images']} held-out images, "
              f"fp16, {r['num_tiles']} tiles, batch {r['batch']}")
        print(f"  accuracy, simulated fp16 model: {100 * r['accuracy_sim']:.2f}%")
        print(f"  accuracy, onnxruntime fp32:     {100 * r['accuracy_ort']:.2f}%")
        print(f"  predicted labels agree:         {100 * r['label_agreement']:.2f}%")
        print(f"  logits passing Marvell's fp16 rule: {r['rule_pass']}/{r['images']}")
        print(f"  compile {r['compile_s']:.2f} s; simulation + CPU parts {r['sim_wall_s']:.2f} s; "
              f"onnxruntime {r['ort_wall_s']:.3f} s")
        ok = r["label_agreement"] >= 0.995 and abs(r["accuracy_sim"] - r["accuracy_ort"]) <= 0.005
    else:
        r = run_single(args.name, out, args.num_tiles, args.quiet)
        print(f"{args.name}: fp16, {r['num_tiles']} tiles; steps "
              + ", ".join(f"{k} @{s}" for k, s in r["steps"]))
        for check in r["checks"]:
            print(f"  check {check.summary()}")
        print(f"  compile {r['compile_s']:.2f} s; run {r['run_wall_s']:.2f} s")
        ok = r["passed"]
    print()
    print(format_build_report(build_report(out)))
    print()
    print(f"build directory: {out}/ (try `mrvl report {out}` or `mrvl run {out} --inputs ...`)")
    return 0 if ok else 1
