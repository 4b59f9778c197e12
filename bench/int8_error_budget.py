"""How much of a model's int8 error is the simulator's or the compiler's, and how much is
inherent to int8 quantisation of the network.

    .venv/bin/python bench/int8_error_budget.py [--models mobilenet_v2,...] [--num-tiles 2]
                                                [--seeds 0-19] [--calibration 100,101,102]

Per model (the first accelerator sub-graph, random weights, batch 1, seeded standard-normal
inputs), compiled in int8:
- simulated vs emulated: the C simulator's int8 outputs against `sim/reference_int8.py`, a
  numpy emulation of the documented int8 semantics (weights, bias and requantisation scales
  re-derived from the documented rules, integer sums, one IEEE fp32 step per operation) on the
  same quantised input: the number of int8 codes that differ (the simulator and the compiler
  are bit-exact when it is 0);
- in-sample: calibrated on the very input it checks (the ranges fit the data exactly), and
  out-of-sample: calibrated on the `--calibration` inputs, checked on each seed; both as
  Marvell's int8 rule against the fp32 reference executor (max error in LSB = max|ref| /
  127 over all outputs), with the worst, the median and the 90th percentile over the seeds;
- out-of-sample RMS: the root mean square error over all output elements, in LSB (a
  steadier figure than the maximum over 1000 logits);
- ulp sensitivity: in-sample again with every calibration range widened by one fp32 ulp
  (the size of the difference between BLAS kernels, e.g. AVX2 and AVX-512, in the
  reference executor that computes the ranges): how far the error moves for a change of
  the ranges that no implementation controls.
"""

from __future__ import annotations

import argparse
import sys
from unittest import mock

import numpy as np

from mrvl.dialects import mrvl
from mrvl.lowering import mrvl_quantize
from mrvl.lowering.backend import compile_function
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.calibration import activation_ranges
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.machine import Machine
from mrvl.models import MODELS
from mrvl.sim import reference_int8
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator, to_device


def seeded_inputs(fn, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]


def returned(fn) -> list:
    return list(fn.body.block.last_op.operands)


def simulate_and_emulate(fn, sub, inputs):
    """(simulated fp32 outputs, int8 codes that differ from the emulation)."""
    with Simulator.load(sub.data) as sim:
        device = [to_device(x, d) for x, d in zip(inputs, sim.inputs, strict=True)]
        raw, _ = sim.run_device(device)
        out, _ = sim.run(inputs)
    values = reference_int8.emulate(fn, device)
    differ = sum(int(np.count_nonzero(values[v][0].reshape(r.shape) != r))
                 for v, r in zip(returned(fn), raw, strict=True))
    return out, differ


def max_lsb(out, ref) -> float:
    return max(check_output(str(k), g, r, "int8").max_err_lsb
               for k, (g, r) in enumerate(zip(out, ref, strict=True)))


def rms_lsb(out, ref) -> float:
    """Root mean square error over all output elements, in LSB (max|ref| / 127 each)."""
    errors = [(np.asarray(g, np.float64) - r) / (np.max(np.abs(r)) / 127.0)
              for g, r in zip(out, ref, strict=True)]
    return float(np.sqrt(np.mean(np.concatenate([e.ravel() for e in errors]) ** 2)))


def _widened(original):
    """`quantize_function` with every calibration range widened by one fp32 ulp."""
    def qparams(lo, hi):
        return original(np.nextafter(np.float32(lo), np.float32(-np.inf)),
                        np.nextafter(np.float32(hi), np.float32(np.inf)))
    return qparams


def budget(name: str, num_tiles: int, seeds: list[int], calibration: list[int]) -> None:
    module = compile_to_partitioned(MODELS[name](batch=1))
    sym = subgraph_functions(module, "accelerator")[0].sym_name.data

    def fresh():
        return subgraph_functions(module.clone(), "accelerator")[0]

    fn_out = fresh()
    sub_out = compile_function(fn_out, machine=Machine(tiles=num_tiles), quantize="int8",
                               ranges=activation_ranges(
                                   fn_out, [seeded_inputs(fn_out, s) for s in calibration]))
    rows: dict[str, list[float]] = {"in-sample": [], "in-sample, ranges +1 ulp": [],
                                    "out-of-sample": [], "out-of-sample, RMS": []}
    differing = 0
    for seed in seeds:
        fn = fresh()
        inputs = seeded_inputs(fn, seed)
        ref = run_function(module, inputs, func_name=sym)
        sub = compile_function(fn, machine=Machine(tiles=num_tiles), quantize="int8",
                               ranges=activation_ranges(fn, [inputs]))
        out, differ = simulate_and_emulate(fn, sub, inputs)
        differing += differ
        rows["in-sample"].append(max_lsb(out, ref))
        fn_w = fresh()
        with mock.patch.object(mrvl_quantize, "qparams", _widened(mrvl_quantize.qparams)):
            sub_w = compile_function(fn_w, machine=Machine(tiles=num_tiles), quantize="int8",
                                     ranges=activation_ranges(fn_w, [inputs]))
        out_w, differ = simulate_and_emulate(fn_w, sub_w, inputs)
        differing += differ
        rows["in-sample, ranges +1 ulp"].append(max_lsb(out_w, ref))
        out_o, differ = simulate_and_emulate(fn_out, sub_out, inputs)
        differing += differ
        rows["out-of-sample"].append(max_lsb(out_o, ref))
        rows["out-of-sample, RMS"].append(rms_lsb(out_o, ref))
    print(f"{name} ({num_tiles} tiles, seeds {seeds[0]}..{seeds[-1]}, out-of-sample "
          f"calibration on seeds {calibration})")
    print(f"  simulated vs emulated: {differing} int8 codes differ over {3 * len(seeds)} runs")
    for label, values in rows.items():
        arr = np.asarray(values)
        print(f"  {label:25s} vs fp32: max {arr.max():.2f} LSB, median "
              f"{np.median(arr):.2f}, 90th pct {np.percentile(arr, 90):.2f}, "
              f"runs over 3 LSB: {int(np.sum(arr > 3.0))} of {arr.size}")
    print("  (max / median / 90th pct over the seeds of each run's max error; the RMS row of "
          "each run's root mean square error)")
    if "--per-seed" in sys.argv:
        for label, values in rows.items():
            print(f"  {label}: " + " ".join(f"{v:.2f}" for v in values))
    sys.stdout.flush()


def _ints(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,mnist_cnn,ssd_detector")
    parser.add_argument("--num-tiles", type=int, default=2)
    parser.add_argument("--seeds", default="0-19")
    parser.add_argument("--calibration", default="100,101,102")
    parser.add_argument("--per-seed", action="store_true")
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        budget(name, args.num_tiles, _ints(args.seeds), _ints(args.calibration))


if __name__ == "__main__":
    main()
