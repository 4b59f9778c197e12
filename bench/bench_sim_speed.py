"""Simulator speed against onnxruntime, in the same process (issue 14).

For every in-repo model (`mrvl.models.MODELS`) and the PP-LCNet-0.25-style classifier
(`mrvl.models.pp_lcnet`): compile (fp16, 8 tiles by default), load with `api.load`, and time
`model.run(feeds)` against an onnxruntime `session.run` of the original model, median of N
each.  Two columns: 1 thread (onnxruntime with 1 intra-op thread, `api.load(threads=1)`;
interleaved, so machine load hits both alike) and 2 threads (onnxruntime with 2, `api.load(
threads=2)`; `threads` sets the onnxruntime threads of the model's CPU steps, and the C core
runs the tiles on that many threads between barriers once two runs have passed the dependency
check: the warm-up makes those two runs; the simulator's runs first, then onnxruntime's, as
onnxruntime's workers spin after a run and would hold the cores the simulator's threads
need).  Prints the ratios sim / onnxruntime and the per-run fixed cost (1 thread): the
median time of a run minus the time the C core spends in `mlip_sim_run` and the CPU steps
spend in onnxruntime (Python-side conversions, report building, step borders).

Clock: with 1 thread, the calling thread's CPU time (`time.thread_time`: the C core and a
1-thread onnxruntime both run on it, and a loaded machine's waiting is not counted); with more
threads, wall time (`time.perf_counter`).  `--clock wall` uses wall time throughout.

    .venv/bin/python bench/bench_sim_speed.py [--repeat 5] [--tiles 8] [--threads 1,2]
                                              [--models mnist_cnn,pp_lcnet] [--build-root DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads spinning beside us

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import onnxruntime as ort  # noqa: E402

from mrvl.driver import api  # noqa: E402
from mrvl.models import MODELS, example_inputs, pp_lcnet  # noqa: E402

BUILDERS = {**{name: (lambda b=builder: b(batch=1)) for name, builder in MODELS.items()},
            "pp_lcnet": lambda: pp_lcnet(batch=1)}


class CoreTimer:
    """Sums the time (on the bench's clock) of the C core's `mlip_sim_run` calls (wraps `Simulator.run_device`'s
    library handle)."""

    def __init__(self, clock=time.perf_counter):
        self.seconds = 0.0
        self.clock = clock

    def wrap(self, model) -> None:
        for step in model._steps:
            device = getattr(step, "device", None)
            if device is None:
                continue
            sim = device._get(step.handle).simulator
            sim._lib = _TimedLib(sim._lib, self)


class _TimedLib:
    def __init__(self, lib, timer: CoreTimer):
        self._lib = lib
        self._timer = timer

    def mlip_sim_run(self, *args):
        start = self._timer.clock()
        status = self._lib.mlip_sim_run(*args)
        self._timer.seconds += self._timer.clock() - start
        return status

    def __getattr__(self, name):
        return getattr(self._lib, name)


def _session(onnx_model, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _time_cpu_steps(model, clock) -> None:
    """Time each CPU step's onnxruntime call on `clock` (the step reports carry wall time)."""
    for step in model._steps:
        session = getattr(step, "session", None)
        if session is not None:
            step.session = _TimedSession(session, clock)


class _TimedSession:
    def __init__(self, session, clock):
        self._session = session
        self._clock = clock
        self.seconds = 0.0

    def run(self, *args, **kwargs):
        start = self._clock()
        outputs = self._session.run(*args, **kwargs)
        self.seconds += self._clock() - start
        return outputs

    def __getattr__(self, name):
        return getattr(self._session, name)


def bench_model(name: str, root: Path, tiles: int, threads: int, repeat: int,
                clock_name: str = "thread") -> dict:
    onnx_model = BUILDERS[name]()
    feeds = example_inputs(onnx_model)
    build = root / name
    if not (build / "manifest.json").is_file():
        api.compile(onnx_model, build, num_tiles=tiles, quantize="fp16")
    session = _session(onnx_model, threads)
    clock = time.thread_time if clock_name == "thread" and threads == 1 else time.perf_counter
    sim_times, ort_times, fixed = [], [], []
    with api.load(build, threads=threads) as model:
        timer = CoreTimer(clock)
        timer.wrap(model)
        _time_cpu_steps(model, clock)
        sessions = [step.session for step in model._steps
                    if isinstance(getattr(step, "session", None), _TimedSession)]
        # warm-up: caches, prepared weights, and the two runs that check the dependency
        # rule (the steady state replays the recorded schedule, tiles on threads if any)
        for _ in range(2):
            model.run(feeds)

        def time_sim() -> None:
            timer.seconds = 0.0
            for cpu_session in sessions:
                cpu_session.seconds = 0.0
            start = clock()
            model.run(feeds)
            elapsed = clock() - start
            sim_times.append(elapsed)
            cpu = sum(cpu_session.seconds for cpu_session in sessions)
            fixed.append(elapsed - timer.seconds - cpu)

        def time_ort() -> None:
            start = clock()
            session.run(None, feeds)
            ort_times.append(clock() - start)

        if threads == 1:  # interleaved: machine load hits both alike
            session.run(None, feeds)
            for _ in range(repeat):
                time_sim()
                time_ort()
        else:  # one after the other: onnxruntime's workers spin for a while after a run
            # and would hold the cores the simulator's threads need (and the other way round)
            for _ in range(repeat):
                time_sim()
            session.run(None, feeds)
            for _ in range(repeat):
                time_ort()
    sim_s, ort_s = statistics.median(sim_times), statistics.median(ort_times)
    return {"model": name, "threads": threads, "sim_ms": sim_s * 1e3, "ort_ms": ort_s * 1e3,
            "ratio": sim_s / ort_s, "fixed_ms": statistics.median(fixed) * 1e3}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread",
                        help="1-thread column: the thread's CPU time (default) or wall time")
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts, one column each (default 1,2)")
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--build-root", type=Path, default=None,
                        help="keep (and reuse) the build directories here")
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="mrvl-simspeed-") as scratch:
        root = args.build_root if args.build_root is not None else Path(scratch)
        clock = "thread CPU time at 1 thread" if args.clock == "thread" else "wall time"
        print(f"fp16, {args.tiles} tiles, median of {args.repeat} interleaved ({clock}); per "
              f"thread count: sim ms, onnxruntime ms, sim/ort")
        head = "".join(f" {f'sim@{t}':>9} {f'ort@{t}':>9} {f'ratio@{t}':>8}" for t in counts)
        print(f"{'model':<14}{head} {'fixed ms':>9}")
        for name in args.models.split(","):
            rows = [bench_model(name, root, args.tiles, t, args.repeat, args.clock)
                    for t in counts]
            cells = "".join(f" {r['sim_ms']:>9.2f} {r['ort_ms']:>9.2f} {r['ratio']:>7.2f}x"
                            for r in rows)
            print(f"{name:<14}{cells} {rows[0]['fixed_ms']:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
