"""The benchmark table: every in-repo model compiled and run end to end, in one process.

    .venv/bin/python bench/run.py [--models mnist_cnn,resnet50,...] [--num-tiles 8] [--json F]

Per model (fp16, batch 1, `--num-tiles` tiles, default 8):
- compile: wall seconds of `mrvl compile` (ONNX -> build directory, all steps);
- cycles / latency: simulated cycles of all accelerator steps of one inference, and the
  latency at the simulator's clock (`time_ms` of its report);
- efficiency: achieved / peak matrix throughput over the accelerator steps
  (MACs / (cycles * tiles * 256)); bound/cycles: the program-independent bound
  (`mrvl.sim.bound`: MACs at peak, weights + I/O once over DRAM) / simulated cycles (1.0
  would mean no schedule could do better; it never exceeds 1); own-traffic roofline/cycles:
  the same max over the program's own DMA bytes, which excess traffic raises with it;
- offload: share of the model's MACs on the accelerator (offload.json);
- sim wall / ort wall: wall seconds of one hybrid run (simulated accelerator + CPU parts on
  onnxruntime) next to onnxruntime running the whole original model on 1 thread, measured
  in the same run (best of `--repeat`);
- accuracy: for the MNIST CNN, held-out digits accuracy simulated vs onnxruntime (all 450
  images); for the others, the largest relative error over the judged elements of the fp16
  rule and the verdict.

Prints a Markdown table (kept in the README with this command).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL_NAMES = ("mnist_cnn", "resnet50", "mobilenet_v2", "ssd_detector", "unet", "yolo",
               "vit_tiny", "bert_tiny", "bert_tiny_mask")
"""The default rows; `--models densenet121` adds DenseNet-121 (not in `mrvl.models.MODELS`)."""
TRANSFORMERS = ("vit_tiny", "bert_tiny", "bert_tiny_mask")
"""Built by their own builders (not in `mrvl.models.MODELS`); BERT's token ids are int64;
`bert_tiny_mask` takes an attention mask too (its last quarter padding)."""


def _build(name: str):
    """The model `name`: the MNIST CNN trained, a `MODELS` entry, or one of the CNN models
    kept out of `MODELS` (unet, yolo, densenet121)."""
    from mrvl import models

    if name == "mnist_cnn":
        return models.mnist_cnn_trained()
    extra = {"unet": models.unet, "yolo": models.yolo, "densenet121": models.densenet121}
    if name in extra:
        return extra[name]()
    return models.build(name)


def _ort(model, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _best(fn, repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench_model(name: str, work: Path, num_tiles: int, repeat: int) -> dict:
    from mrvl.models import example_inputs, load_digits_28
    from mrvl.driver.verb_example import fix_batch
    from mrvl.driver import api
    from mrvl.sim import acceptance
    from mrvl.sim.runtime import CompiledModel, load_manifest

    if name in TRANSFORMERS:
        from mrvl.models.bert_tiny import bert_tiny
        from mrvl.models.vit_tiny import vit_tiny

        model = (vit_tiny() if name == "vit_tiny"
                 else bert_tiny(attention_mask=name == "bert_tiny_mask"))
    else:
        source = _build(name)
        model = fix_batch(source, 1)
    out = work / name
    start = time.perf_counter()
    api.compile(model, out, num_tiles=num_tiles, quantize="fp16")
    compile_s = time.perf_counter() - start
    manifest = load_manifest(out)
    feeds = example_inputs(model)
    if name.startswith("bert_tiny"):
        ids = np.random.default_rng(0).integers(0, 1000, feeds["input_ids"].shape)
        feeds["input_ids"] = ids.astype(np.int64)
    if "attention_mask" in feeds:
        n, seq = feeds["attention_mask"].shape
        feeds["attention_mask"] = (np.arange(seq) < seq * 3 // 4).astype(np.int64)[None].repeat(
            n, 0)
    session = _ort(model)
    names = [o.name for o in manifest.outputs]
    row: dict = {"model": name, "compile_s": compile_s, "num_tiles": num_tiles}
    with CompiledModel.load(out) as compiled:
        sim_s, result = _best(lambda: compiled.run(feeds), repeat)
        ort_s, reference = _best(lambda: session.run(names, feeds), repeat)
        reports = [s.report for s in result.steps if s.kind == "accelerator"]
        cycles = sum(int(r.get("cycles", 0)) for r in reports)
        macs = sum(int(r.get("macs", 0)) for r in reports)
        roofline = sum(int(r.get("traffic_roofline_cycles", 0)) for r in reports)
        bound = sum(int(r.get("bound_cycles", 0)) for r in reports)
        row.update(
            cycles=cycles,
            latency_ms=sum(float(r.get("time_ms", 0.0)) for r in reports),
            efficiency=macs / (cycles * num_tiles * 256) if cycles else 0.0,
            roofline_ratio=roofline / cycles if cycles else 0.0,
            bound_ratio=bound / cycles if cycles else 0.0,
            sim_wall_s=sim_s,
            ort_wall_s=ort_s,
            accel_steps=len(reports),
            cpu_steps=sum(1 for s in result.steps if s.kind == "cpu"),
        )
        offload = json.loads((out / "offload.json").read_text()) if (
            out / "offload.json").is_file() else {}
        row["offload"] = offload.get("accelerator_mac_share")
        checks = acceptance.check_outputs(result.outputs, dict(zip(names, reference)), "fp16")
        row["rule"] = "pass" if acceptance.passed(checks) else "FAIL"
        row["max_rel_err"] = max((c.max_rel_err for c in checks if c.mode == "fp16"),
                                 default=0.0)
        if name == "mnist_cnn":
            _, _, x_test, y_test = load_digits_28()
            inp = manifest.inputs[0].name
            outputs, _ = compiled.run_batches({inp: x_test})
            (ref_all,) = _ort(source).run([names[0]], {inp: x_test})
            sim_labels = outputs[names[0]].argmax(1)
            row["accuracy"] = (f"{100 * np.mean(sim_labels == y_test):.2f}% sim vs "
                               f"{100 * np.mean(ref_all.argmax(1) == y_test):.2f}% ort, "
                               f"{100 * np.mean(sim_labels == ref_all.argmax(1)):.1f}% agree")
        else:
            row["accuracy"] = f"max rel err {100 * row['max_rel_err']:.2f}%, rule {row['rule']}"
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| model | compile (s) | cycles | latency (ms) | efficiency | bound/cycles | "
            "own-traffic roofline/cycles | offload (MACs) | sim wall (s) | ort wall 1 thr (s) "
            "| sim/ort | accuracy |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |" + " |" * 10)
            continue
        offload = "-" if r["offload"] is None else f"{100 * r['offload']:.1f}%"
        ratio = r["sim_wall_s"] / r["ort_wall_s"] if r["ort_wall_s"] else float("inf")
        lines.append(
            f"| {r['model']} | {r['compile_s']:.2f} | {r['cycles']:,} | {r['latency_ms']:.3f} | "
            f"{100 * r['efficiency']:.1f}% | {r['bound_ratio']:.2f} | {r['roofline_ratio']:.2f} "
            f"| {offload} | {r['sim_wall_s']:.3f} | {r['ort_wall_s']:.4f} | {ratio:.1f}x | {r['accuracy']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--num-tiles", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mrvl-bench-") as tmp:
        for name in args.models.split(","):
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(bench_model(name, Path(tmp), args.num_tiles, args.repeat))
            except Exception as error:  # noqa: BLE001 - a failing model is a row, not a crash
                rows.append({"model": name, "error": f"{type(error).__name__}: {error}"})
    print(markdown(rows))
    if args.json is not None:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
