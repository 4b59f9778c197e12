"""int8 calibration methods out of sample: calibrate on one set, judge on another.

    .venv/bin/python bench/bench_calibration.py [--models mnist,mobilenet_v2]
        [--methods minmax,percentile,mse] [--num-tiles 2] [--mnist-calibration 64]
        [--mnist-limit 450] [--mobilenet-count 16]

For each calibration method (driver/calibration.py `CALIBRATION_METHODS`), the accelerator
sub-graph is compiled in int8 with ranges from the calibration set only, then simulated on
the judging set:
- `mnist`: the trained MNIST CNN (`mnist_cnn_trained`), calibrated on the first N training
  digits of `load_digits_28`, judged on the held-out digits: top-1 accuracy (fp32 reference
  executor and simulated int8), agreement of the int8 labels with fp32, and the share of
  images whose logits are within +-3 LSB (Marvell's int8 rule, max|ref| / 127);
- `mobilenet_v2`: seeded weights, calibrated on seeded standard-normal inputs 100..100+K-1,
  judged on seeds 0..K-1: the worst and median max error in LSB and the RMS error in LSB.
Every run also checks the simulated int8 codes against `sim/reference_int8.py` (the
documented int8 semantics; "codes differ" must be 0: only the ranges change).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.calibration import CALIBRATION_METHODS, activation_ranges
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


def _compiled(module, sym, sets, method, tiles):
    fn = next(f for f in subgraph_functions(module.clone(), "accelerator")
              if f.sym_name.data == sym)
    start = time.perf_counter()
    ranges = activation_ranges(fn, sets, method)
    seconds = time.perf_counter() - start
    return fn, compile_function(fn, machine=Machine(tiles=tiles), quantize="int8",
                                ranges=ranges), seconds


def bench_mnist(methods, tiles, calibration_count, limit) -> None:
    module, sym = _setup(mnist_cnn_trained())
    x_train, _, x_test, y_test = load_digits_28()
    x_test, y_test = x_test[:limit], y_test[:limit]
    shape = mrvl.tensor_shape(subgraph_functions(module, "accelerator")[0].body.block.args[0])
    sets = [[x.reshape(shape)] for x in x_train[:calibration_count]]
    refs = [run_function(module, [x.reshape(shape)], func_name=sym) for x in x_test]
    ref_labels = np.array([int(np.argmax(r[0])) for r in refs])
    print(f"mnist_cnn_trained: calibrated on {calibration_count} training digits, judged on "
          f"{len(x_test)} held-out digits; fp32 top-1 {100 * np.mean(ref_labels == y_test):.2f}%")
    print(f"  {'method':11s} {'top-1':>7s} {'agree fp32':>10s} {'<=3 LSB':>9s} "
          f"{'worst LSB':>9s} {'codes differ':>12s} {'calib s':>7s}")
    for method in methods:
        fn, sub, seconds = _compiled(module, sym, sets, method, tiles)
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
        print(f"  {method:11s} {100 * np.mean(labels == y_test):6.2f}% "
              f"{100 * np.mean(labels == ref_labels):9.2f}% {within:4d}/{len(x_test):<4d} "
              f"{worst:9.2f} {differ:12d} {seconds:7.1f}")
        sys.stdout.flush()


def _seeded(fn, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]


def bench_mobilenet(methods, tiles, count) -> None:
    module, sym = _setup(MODELS["mobilenet_v2"](batch=1))
    fn0 = subgraph_functions(module, "accelerator")[0]
    sets = [_seeded(fn0, 100 + k) for k in range(count)]
    judges = [_seeded(fn0, k) for k in range(count)]
    refs = [run_function(module, x, func_name=sym) for x in judges]
    print(f"mobilenet_v2 (seeded weights): calibrated on seeds 100..{99 + count}, judged on "
          f"seeds 0..{count - 1}")
    print(f"  {'method':11s} {'worst LSB':>9s} {'median':>7s} {'RMS LSB':>8s} "
          f"{'> 3 LSB':>8s} {'codes differ':>12s} {'calib s':>7s}")
    for method in methods:
        fn, sub, seconds = _compiled(module, sym, sets, method, tiles)
        errors, rms, differ = [], [], 0
        with Simulator.load(sub.data) as sim:
            for x, ref in zip(judges, refs, strict=True):
                out, d = _simulate(fn, sim, x)
                differ += d
                errors.append(_max_lsb(out, ref))
                rms.append(_rms_lsb(out, ref))
        arr = np.asarray(errors)
        print(f"  {method:11s} {arr.max():9.2f} {np.median(arr):7.2f} {np.mean(rms):8.3f} "
              f"{int(np.sum(arr > 3.0)):4d}/{count:<3d} {differ:12d} {seconds:7.1f}")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,mobilenet_v2")
    parser.add_argument("--methods", default=",".join(CALIBRATION_METHODS))
    parser.add_argument("--num-tiles", type=int, default=2)
    parser.add_argument("--mnist-calibration", type=int, default=64)
    parser.add_argument("--mnist-limit", type=int, default=450)
    parser.add_argument("--mobilenet-count", type=int, default=16)
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    for name in args.models.split(","):
        if name == "mnist":
            bench_mnist(methods, args.num_tiles, args.mnist_calibration, args.mnist_limit)
        elif name == "mobilenet_v2":
            bench_mobilenet(methods, args.num_tiles, args.mobilenet_count)
        else:
            parser.error(f"unknown model '{name}' (mnist, mobilenet_v2)")


if __name__ == "__main__":
    main()
