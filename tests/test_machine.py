"""The machine description: `Machine` overrides, the compiler -> binary -> simulator path, and
the invariant that a machine changes cycle counts only, never results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from mrvl.errors import CompileError
from mrvl import mlip_isa as isa
from mrvl.driver.cli import main
from mrvl.driver.compiler import compile_model_result
from mrvl.lowering.backend import compile_function
from mrvl.machine import machine_of
from mrvl.machine import (
    ASSUMED_FIELDS,
    DEFAULT_MACHINE,
    PUBLISHED_FIELDS,
    Machine,
    format_machine,
    machine_problem,
    overrides_help,
)
from mrvl.mlip_binary import ModelBinary, decode_machine, encode_machine
from mrvl.models import MODELS, example_inputs
from mrvl.sim.simulator import Simulator

from backend_helpers import add, layer_module, rng_inputs
from mrvl.dialects import mrvl


def conv_module(shape=(1, 12, 12, 32), o=64):
    """One 3x3 conv + ReLU layer (deterministic weights)."""
    rng = np.random.default_rng(5)

    def build(block, args, const):
        w = const(rng.standard_normal((o, 3, 3, shape[3])).astype(np.float32) * 0.1)
        b = const(rng.standard_normal(o).astype(np.float32))
        return add(block, mrvl.Conv2DOp(args[0], w, b, layer_name="tvmgen_mrvl_main_1",
                                        strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1),
                                        groups=1, activation="relu"))

    return layer_module([shape], build)


# ---- the record ---------------------------------------------------------------------------
@pytest.mark.parametrize("items, expect", [
    (["warp=9"], "unknown key 'warp'"),
    (["dram_gbps"], "expected KEY=VALUE, got 'dram_gbps'"),
    (["=3"], "expected KEY=VALUE"),
    (["dram_gbps=fast"], "dram_gbps must be a number, got 'fast'"),
    (["dram_gbps=nan"], "dram_gbps must be finite"),
    (["dram_gbps=0"], "dram_gbps must be > 0"),
    (["dram_gbps=-4"], "dram_gbps must be > 0"),
    (["dma_latency=1.5"], "dma_latency must be an integer, got 1.5"),
    (["tiles=0"], "tiles must be from 1 to 8"),
    (["tiles=16"], "tiles must be from 1 to 8"),
    (["page_bytes=3000"], "page_bytes must be one of"),
    (["ocm_bytes=1000"], "ocm_bytes must be a multiple of 16"),
    (["clock_mhz=0"], "clock_mhz must be from 1"),
    (["vector_lanes=0"], "vector_lanes must be from 1"),
    (["barrier_latency=2000000"], "barrier_latency must be from 0 to 1000000"),
    (["dram_bytes_per_cycle=0"], "dram_bytes_per_cycle must be a finite number"),
    ({"matrix_rows": "x"}, "matrix_rows must be a number"),
])
def test_override_errors_are_one_line(items, expect):
    with pytest.raises(CompileError) as error:
        DEFAULT_MACHINE.with_overrides(items)
    message = str(error.value)
    assert expect in message and "\n" not in message, message


def test_overrides_fractional_bandwidth_and_round_trips():
    machine = DEFAULT_MACHINE.with_overrides(["dram_gbps=41.6", "tiles=8"])
    assert machine.dram_bytes_per_cycle == 41.6 and machine.dram_gbps == 41.6
    assert machine.tiles == 8
    slower = DEFAULT_MACHINE.with_overrides({"clock_mhz": 800, "dram_gbps": 32})
    assert slower.dram_bytes_per_cycle == 40.0 and slower.dram_gbps == 32.0
    assert Machine.from_dict(json.loads(json.dumps(machine.to_dict()))) == machine
    assert decode_machine(encode_machine(machine)) == machine
    assert isinstance(Machine(dram_bytes_per_cycle=64).dram_bytes_per_cycle, float)
    assert machine_problem(DEFAULT_MACHINE.to_dict()) is None
    assert set(PUBLISHED_FIELDS) | set(ASSUMED_FIELDS) == set(DEFAULT_MACHINE.to_dict()) - {
        "dram_gbps"}
    help_text = overrides_help()
    assert "assumptions" in help_text and "dram_gbps" in help_text
    assert all(name in help_text for name in (*PUBLISHED_FIELDS, *ASSUMED_FIELDS[1:]))


def test_default_machine_is_the_header_defaults():
    """The default machine is today's constants (same cycle counts as before the record)."""
    m = DEFAULT_MACHINE
    assert (m.ocm_bytes, m.page_bytes, m.clock_mhz) == (
        isa.DEFAULT_OCM_SIZE, isa.DEFAULT_PAGE_SIZE, isa.DEFAULT_CLOCK_MHZ)
    assert m.dram_bytes_per_cycle == isa.DEFAULT_DRAM_BYTES_PER_CYCLE == 64
    assert (m.dma_bytes_per_cycle, m.dma_latency, m.barrier_latency) == (32, 200, 50)
    assert m.macs_per_cycle() == 256 and m.macs_per_cycle(int8=True) == 512
    assert format_machine(m).startswith(
        "machine: 1 tile(s), 1000 MHz, DRAM 64 GB/s (64 B/cycle), DMA 32 B/cycle/tile")


def test_machine_of_builds_from_options():
    assert machine_of(None, 4, 1 << 19, 4096) == Machine(tiles=4, ocm_bytes=1 << 19,
                                                         page_bytes=4096)
    assert machine_of(["dram_gbps=16"], 2).dram_gbps == 16.0
    assert machine_of({"tiles": 8}, 2).tiles == 8  # the overrides win
    given = Machine(tiles=2)
    assert machine_of(given, 8) is given
    with pytest.raises(CompileError, match="expected KEY=VALUE strings"):
        machine_of(3.5)


# ---- compile_function: the binary records the machine, results never depend on it --------
def test_compile_function_records_the_machine_and_only_cycles_change():
    outputs, cycles = {}, {}
    for gbps in (16, 64):
        module, fn = conv_module(shape=(1, 12, 12, 32), o=64)
        inputs = rng_inputs(fn)
        machine = Machine(tiles=2).with_overrides([f"dram_gbps={gbps}", "dma_latency=400"])
        sub = compile_function(fn, machine=machine)
        assert ModelBinary.from_bytes(sub.data).machine == machine
        with Simulator.load(sub.data) as sim:
            assert sim.machine == machine
            outs, report = sim.run(inputs)
        assert report["machine"] == machine.to_dict()
        assert report["cycles"] >= report["traffic_roofline_cycles"]
        outputs[gbps], cycles[gbps] = outs, report["cycles"]
    assert all(np.array_equal(a, b) for a, b in zip(outputs[16], outputs[64], strict=True))
    assert cycles[16] > cycles[64]


def test_compile_function_takes_a_machine_only():
    _, fn = conv_module()
    with pytest.raises(CompileError, match="expected a Machine"):
        compile_function(fn, machine={"tiles": 2})  # type: ignore[arg-type]


# ---- the whole flow: mrvl compile --machine, mrvl run, mrvl report ------------------------
@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("machine")
    model = MODELS["mnist_cnn"](batch=1)
    path = root / "mnist.onnx"
    onnx.save(model, path)
    inputs = example_inputs(model)
    npz = root / "x.npz"
    np.savez(npz, **inputs)
    return root, path, inputs, npz


def _binaries(build: Path) -> list[Path]:
    manifest = json.loads((build / "manifest.json").read_text())
    return [build / s["binary"] for s in manifest["steps"] if s["kind"] == "accelerator"]


def _simulate(build: Path, inputs: dict) -> tuple[list[list[np.ndarray]], list[dict]]:
    outputs, reports = [], []
    for path in _binaries(build):
        with Simulator.load(path) as sim:
            outs, report = sim.run([inputs[d.name] for d in sim.inputs])
        outputs.append(outs)
        reports.append(report)
    return outputs, reports


def test_cli_compile_machine_changes_cycles_not_outputs(mnist, tmp_path, capsys):
    _, path, inputs, npz = mnist
    builds = {}
    for gbps in (16, 64):
        out = tmp_path / f"b{gbps}"
        assert main(["compile", str(path), "-o", str(out), "--num-tiles", "2",
                     "--machine", f"dram_gbps={gbps}", "--machine", "dma_latency=800"]) == 0
        raw = json.loads((out / "manifest.json").read_text())
        assert raw["options"]["machine"]["dram_gbps"] == gbps
        assert raw["options"]["machine"]["tiles"] == 2
        assert raw["options"]["machine"]["dma_latency"] == 800
        builds[gbps] = out
    capsys.readouterr()
    (out16, rep16), (out64, rep64) = (_simulate(builds[g], inputs) for g in (16, 64))
    for a, b in zip(out16, out64, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert [r["machine"]["dram_gbps"] for r in rep16] == [16.0] * len(rep16)
    assert sum(r["cycles"] for r in rep16) > sum(r["cycles"] for r in rep64)
    # the report names the machine: the manifest's before a run, the run's after one
    assert main(["report", str(builds[16])]) == 0
    text = capsys.readouterr().out
    assert "machine: 2 tile(s), 1000 MHz, DRAM 16 GB/s" in text and "(from the manifest)" in text
    assert main(["run", str(builds[16]), "--inputs", str(npz)]) == 0
    capsys.readouterr()
    assert main(["report", str(builds[16])]) == 0
    text = capsys.readouterr().out
    assert "machine: 2 tile(s), 1000 MHz, DRAM 16 GB/s" in text
    assert "(from the recorded run)" in text and "dma_latency" not in text
    assert "+ 800 cycles" in text


def test_cli_machine_errors_are_one_line(mnist, tmp_path, capsys):
    _, path, _, _ = mnist
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--machine", "warp=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown key 'warp'" in err, err
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--machine",
                 "dram_gbps=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "dram_gbps must be > 0" in err, err


def test_python_api_compile_model_machine_option(mnist, tmp_path):
    _, path, inputs, _ = mnist
    reports = {}
    outputs = {}
    for gbps, spec in ((16, ["dram_gbps=16"]), (64, {"dram_gbps": 64})):
        result = compile_model_result(path, tmp_path / f"api{gbps}", num_tiles=4, machine=spec)
        machine = result.manifest["options"]["machine"]
        assert machine["dram_gbps"] == gbps and machine["tiles"] == 4
        assert result.manifest["options"]["num_tiles"] == 4
        for sub in result.subgraphs:
            assert sub.binary.machine == Machine.from_dict(machine)
        outputs[gbps], reports[gbps] = _simulate(tmp_path / f"api{gbps}", inputs)
    for a, b in zip(outputs[16], outputs[64], strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sum(r["cycles"] for r in reports[16]) > sum(r["cycles"] for r in reports[64])


def test_sim_what_if_machine_matches_compiling_for_it(mnist, tmp_path):
    """Timing a 64 GB/s binary as if at 16 GB/s (`Simulator.load(machine=...)`) gives the
    16 GB/s machine in the report and never other outputs."""
    _, path, inputs, _ = mnist
    result = compile_model_result(path, tmp_path / "w", num_tiles=2)
    data = result.subgraphs[0].data
    with Simulator.load(data) as sim:
        base_outs, base = sim.run([inputs[d.name] for d in sim.inputs])
    with Simulator.load(data, machine=["dram_gbps=16"]) as sim:
        outs, slow = sim.run([inputs[d.name] for d in sim.inputs])
    assert all(np.array_equal(a, b) for a, b in zip(base_outs, outs, strict=True))
    assert slow["machine"]["dram_gbps"] == 16.0 and base["machine"]["dram_gbps"] == 64.0
    assert slow["cycles"] >= base["cycles"]
    assert slow["traffic_roofline_cycles"] >= base["traffic_roofline_cycles"]
