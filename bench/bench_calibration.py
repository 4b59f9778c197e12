"""int8 calibration methods out of sample: calibrate on one set, judge on another.

    .venv/bin/python bench/bench_calibration.py [--models mnist,mobilenet_v2,resnet50]
        [--methods minmax,percentile,mse,entropy] [--bias-correction none,output,weights]
        [--num-tiles 2] [--mnist-calibration 0] [--mnist-limit 450] [--seeded-count 16]
        [--ort] [--ulp]

For each calibration method (driver/calibration.py `CALIBRATION_METHODS`), the accelerator
sub-graph is compiled in int8 with ranges from the calibration set only, then simulated on
the judging set:
- `mnist`: the trained MNIST CNN (`mnist_cnn_trained`), calibrated on the first N training
  digits of `load_digits_28` (default: all 1347), judged on the held-out digits: top-1
  accuracy (fp32 reference executor and simulated int8), agreement of the int8 labels with
  fp32, and the share of images whose logits are within +-3 LSB (Marvell's int8 rule,
  max|ref| / 127);
- `mobilenet_v2`, `resnet50`: seeded weights, calibrated on seeded standard-normal inputs
  100..100+K-1, judged on seeds 0..K-1: the worst and median max error in LSB and the RMS
  error in LSB.
With `--channel-scales`, each method also runs with per-channel activation scales on the
CONV -> CONV edges, folded into the weights (driver/channel_scales.py) at each strength; with
`--bias-correction`, with its CONV / FC biases corrected on the calibration set
(driver/bias_correction.py), measuring the whole chain's error (`output`) or each layer's own
rounding (`weights`).
The variant `default` is what `mrvl compile --quantize int8` does without flags
(driver/calibration.py `DEFAULT_CALIBRATION_METHOD` with channel scales at strength 0.5 and
bias correction: `percentile+cs0.5+bc-output`).
With `--ort`, onnxruntime's own static quantization of the same ONNX model
(`quantize_static`, QDQ, per-channel, MinMax and Percentile) on the same calibration set is
judged on the same inputs against onnxruntime fp32, side by side (rows `ort-*`).
Every mrvl run also checks the simulated int8 codes against `sim/reference_int8.py` (the
documented int8 semantics; "codes differ" must be 0: only the ranges change).
With `--ulp` (seeded models), each variant is also compiled with every calibration range
widened by one fp32 ulp, the size of the last-bit difference between BLAS kernels (AVX2,
AVX-512) in the reference executor that computes the ranges, and judged again: columns
`+1ulp worst` and `moved` (the largest change of one input's error), i.e. how far another
x86-64 machine can move the figures.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.bias_correction import BIAS_ERRORS, correct_biases
from mrvl.driver.calibration import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD,
                                     activation_ranges)
from mrvl.driver.channel_scales import equalize_channels
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.lowering.backend import compile_function
from mrvl.machine import Machine
from mrvl.models import MODELS, load_digits_28, mnist_cnn_trained
from mrvl.sim import reference_int8
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator, to_device


def _returned(fn) -> list:
    return list(fn.body.block.last_op.operands)


def _simulate(fn, sim, inputs) -> tuple[list[np.ndarray], int]:
    """(simulated fp32 outputs, int8 codes that differ from the documented semantics)."""
    device = [to_device(x, d) for x, d in zip(inputs, sim.inputs, strict=True)]
    raw, _ = sim.run_device(device)
    out, _ = sim.run(inputs)
    values = reference_int8.emulate(fn, device)
    differ = sum(int(np.count_nonzero(values[v][0].reshape(r.shape) != r))
                 for v, r in zip(_returned(fn), raw, strict=True))
    return out, differ


def _max_lsb(out, ref) -> float:
    return max(check_output(str(k), g, r, "int8").max_err_lsb
               for k, (g, r) in enumerate(zip(out, ref, strict=True)))


def _rms_lsb(out, ref) -> float:
    errors = [(np.asarray(g, np.float64) - r) / (np.max(np.abs(r)) / 127.0)
              for g, r in zip(out, ref, strict=True)]
    return float(np.sqrt(np.mean(np.concatenate([e.ravel() for e in errors]) ** 2)))


def _setup(model):
    module = compile_to_partitioned(model)
    (fn,) = subgraph_functions(module, "accelerator")
    return module, fn.sym_name.data


def _widened(ranges):
    """Every range widened outward by one fp32 ulp."""
    return {v: (float(np.nextafter(np.float32(lo), np.float32(-np.inf))),
                float(np.nextafter(np.float32(hi), np.float32(np.inf))))
            for v, (lo, hi) in ranges.items()}


def _compiled(module, sym, sets, variant, tiles, widen=False):
    """(annotated fn, compiled sub-graph, calibration seconds, widened compile or None) of
    one variant `method[+cs<strength>][+bc-<mode>]`."""
    method, *steps = variant.split("+")
    fn = next(f for f in subgraph_functions(module.clone(), "accelerator")
              if f.sym_name.data == sym)
    start = time.perf_counter()
    for step in steps:
        if step.startswith("cs"):
            equalize_channels(fn, sets, float(step[2:]))
    ranges = activation_ranges(fn, sets, method)
    for step in steps:
        if step.startswith("bc-"):
            correct_biases(fn, sets, ranges, step[3:])
    seconds = time.perf_counter() - start
    widened = None
    if widen:
        fn_w = fn.clone()
        copy = dict(zip(fn.body.block.args, fn_w.body.block.args, strict=True))
        for a, b in zip(fn.body.block.ops, fn_w.body.block.ops, strict=True):
            copy.update(zip(a.results, b.results, strict=True))
        widened = compile_function(fn_w, machine=Machine(tiles=tiles), quantize="int8",
                                   ranges={copy[v]: r for v, r in _widened(ranges).items()
                                           if v in copy})
    return fn, compile_function(fn, machine=Machine(tiles=tiles), quantize="int8",
                                ranges=ranges), seconds, widened


ORT_METHODS = ("MinMax", "Percentile")


def ort_sessions(model, samples: list[np.ndarray]) -> dict[str, object]:
    """{"ort-fp32": session, "ort-<method>": int8 session} for `model` (one input) calibrated
    on `samples` by onnxruntime's quantize_static (QDQ, per-channel, int8)."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)

    name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {name: item}

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "fp32.onnx"
        onnx.save(model, source)
        sessions["ort-fp32"] = ort.InferenceSession(str(source), options,
                                                    providers=["CPUExecutionProvider"])
        for method in ORT_METHODS:
            target = Path(tmp) / f"{method}.onnx"
            quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method))
            sessions[f"ort-{method.lower()}"] = ort.InferenceSession(
                str(target), options, providers=["CPUExecutionProvider"])
    return sessions


def _ort_run(session, x: np.ndarray) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x})


def bench_mnist(methods, tiles, calibration_count, limit, with_ort=False) -> None:
    model = mnist_cnn_trained()
    module, sym = _setup(model)
    x_train, _, x_test, y_test = load_digits_28()
    calibration_count = calibration_count or len(x_train)
    x_test, y_test = x_test[:limit], y_test[:limit]
    shape = mrvl.tensor_shape(subgraph_functions(module, "accelerator")[0].body.block.args[0])
    sets = [[x.reshape(shape)] for x in x_train[:calibration_count]]
    refs = [run_function(module, [x.reshape(shape)], func_name=sym) for x in x_test]
    ref_labels = np.array([int(np.argmax(r[0])) for r in refs])
    print(f"mnist_cnn_trained: calibrated on {calibration_count} training digits, judged on "
          f"{len(x_test)} held-out digits; fp32 top-1 {100 * np.mean(ref_labels == y_test):.2f}%")
    print(f"  {'method':20s} {'top-1':>7s} {'agree fp32':>10s} {'<=3 LSB':>9s} "
          f"{'worst LSB':>9s} {'codes differ':>12s} {'calib s':>7s}")
    for method in methods:
        fn, sub, seconds, _ = _compiled(module, sym, sets, method, tiles)
        labels, within, worst, differ = [], 0, 0.0, 0
        with Simulator.load(sub.data) as sim:
            for x, ref in zip(x_test, refs, strict=True):
                out, d = _simulate(fn, sim, [x.reshape(shape)])
                differ += d
                labels.append(int(np.argmax(out[0])))
                err = _max_lsb(out, ref)
                worst = max(worst, err)
                within += err <= 3.0
        labels = np.array(labels)
        print(f"  {method:20s} {100 * np.mean(labels == y_test):6.2f}% "
              f"{100 * np.mean(labels == ref_labels):9.2f}% {within:4d}/{len(x_test):<4d} "
              f"{worst:9.2f} {differ:12d} {seconds:7.1f}")
        sys.stdout.flush()
    if not with_ort:
        return
    sessions = ort_sessions(model, [x[None] for x in x_train[:calibration_count]])
    reference = sessions.pop("ort-fp32")
    fp32 = [_ort_run(reference, x[None]) for x in x_test]
    fp32_labels = np.array([int(np.argmax(r[0])) for r in fp32])
    for label, session in sessions.items():
        outs = [_ort_run(session, x[None]) for x in x_test]
        labels = np.array([int(np.argmax(o[0])) for o in outs])
        errors = np.array([_max_lsb(o, r) for o, r in zip(outs, fp32, strict=True)])
        print(f"  {label:20s} {100 * np.mean(labels == y_test):6.2f}% "
              f"{100 * np.mean(labels == fp32_labels):9.2f}% "
              f"{int(np.sum(errors <= 3.0)):4d}/{len(x_test):<4d} {errors.max():9.2f} "
              f"{'(vs ort fp32)':>12s}")
        sys.stdout.flush()


def _seeded(fn, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]


def bench_seeded(name, methods, tiles, count, with_ort=False, ulp=False) -> None:
    """A seeded-weight zoo model (`mobilenet_v2`, `resnet50`): worst / median / RMS LSB."""
    model = MODELS[name](batch=1)
    module, sym = _setup(model)
    fn0 = subgraph_functions(module, "accelerator")[0]
    sets = [_seeded(fn0, 100 + k) for k in range(count)]
    judges = [_seeded(fn0, k) for k in range(count)]
    refs = [run_function(module, x, func_name=sym) for x in judges]
    print(f"{name} (seeded weights): calibrated on seeds 100..{99 + count}, judged on "
          f"seeds 0..{count - 1}")
    print(f"  {'method':20s} {'worst LSB':>9s} {'median':>7s} {'RMS LSB':>8s} "
          f"{'> 3 LSB':>8s} {'codes differ':>12s} {'calib s':>7s}"
          + (f" {'+1ulp worst':>11s} {'moved':>6s}" if ulp else ""))
    for method in methods:
        fn, sub, seconds, widened = _compiled(module, sym, sets, method, tiles, ulp)
        errors, rms, differ = [], [], 0
        with Simulator.load(sub.data) as sim:
            for x, ref in zip(judges, refs, strict=True):
                out, d = _simulate(fn, sim, x)
                differ += d
                errors.append(_max_lsb(out, ref))
                rms.append(_rms_lsb(out, ref))
        arr = np.asarray(errors)
        extra = ""
        if widened is not None:
            with Simulator.load(widened.data) as sim:
                moved = np.asarray([_max_lsb(sim.run(x)[0], ref)
                                    for x, ref in zip(judges, refs, strict=True)])
            extra = f" {moved.max():11.2f} {np.abs(moved - arr).max():6.2f}"
        print(f"  {method:20s} {arr.max():9.2f} {np.median(arr):7.2f} {np.mean(rms):8.3f} "
              f"{int(np.sum(arr > 3.0)):4d}/{count:<3d} {differ:12d} {seconds:7.1f}{extra}")
        sys.stdout.flush()
    if not with_ort:
        return
    sessions = ort_sessions(model, [s[0] for s in sets])
    reference = sessions.pop("ort-fp32")
    fp32 = [_ort_run(reference, x[0]) for x in judges]
    for label, session in sessions.items():
        outs = [_ort_run(session, x[0]) for x in judges]
        arr = np.array([_max_lsb(o, r) for o, r in zip(outs, fp32, strict=True)])
        rms = np.mean([_rms_lsb(o, r) for o, r in zip(outs, fp32, strict=True)])
        print(f"  {label:20s} {arr.max():9.2f} {np.median(arr):7.2f} {rms:8.3f} "
              f"{int(np.sum(arr > 3.0)):4d}/{count:<3d} {'(vs ort fp32)':>12s}")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,mobilenet_v2,resnet50")
    parser.add_argument("--methods", default=",".join(CALIBRATION_METHODS),
                        help="comma list of methods (driver/calibration.py) or `default`")
    parser.add_argument("--num-tiles", type=int, default=2)
    parser.add_argument("--mnist-calibration", type=int, default=0,
                        help="training digits to calibrate on (default 0: all of them)")
    parser.add_argument("--mnist-limit", type=int, default=450)
    parser.add_argument("--seeded-count", type=int, default=16,
                        help="mobilenet_v2 / resnet50: calibration and judging inputs each")
    parser.add_argument("--bias-correction", default="none",
                        help=f"comma list of none,{','.join(BIAS_ERRORS)}: each method also "
                             "runs with bias correction measuring that error (driver/"
                             "bias_correction.py), as rows `method+bc-<mode>`")
    parser.add_argument("--channel-scales", default="none",
                        help="comma list of none or strengths (e.g. 0.5,1): each variant "
                             "also runs with per-channel activation scales folded into the "
                             "weights (driver/channel_scales.py), as rows `+cs<strength>`")
    parser.add_argument("--ort", action="store_true",
                        help="add onnxruntime's quantize_static (MinMax, Percentile) rows")
    parser.add_argument("--ulp", action="store_true",
                        help="seeded models: also judge each variant with every range widened "
                             "by one fp32 ulp (columns `+1ulp worst`, `moved`)")
    args = parser.parse_args(argv)
    default = f"{DEFAULT_CALIBRATION_METHOD}+cs0.5+bc-output"
    methods = [(default if m == "default" else m) + ("" if cs == "none" else f"+cs{cs}") + ("" if bc == "none" else f"+bc-{bc}")
               for m in args.methods.split(",") for cs in args.channel_scales.split(",")
               for bc in args.bias_correction.split(",")]
    for name in args.models.split(","):
        if name == "mnist":
            bench_mnist(methods, args.num_tiles, args.mnist_calibration, args.mnist_limit,
                        args.ort)
        elif name in ("mobilenet_v2", "resnet50"):
            bench_seeded(name, methods, args.num_tiles, args.seeded_count, args.ort, args.ulp)
        else:
            parser.error(f"unknown model '{name}' (mnist, mobilenet_v2, resnet50)")


if __name__ == "__main__":
    main()
