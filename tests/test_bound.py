"""The program-independent bound (`mrvl.sim.bound`): never above the simulated cycles of any
in-repo model, the same for every schedule of one model (tile split, OCM size), and reported
by the simulator and by `mrvl report` with its efficiency."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mrvl import mlip_isa as isa
from mrvl.dialects import mrvl
from mrvl.driver.cli import main
from mrvl.lowering.backend import compile_function
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.calibration import activation_ranges
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.machine import Machine
from mrvl.mlip_binary import ModelBinary
from mrvl.models import MODELS, mnist_cnn_trained
from mrvl.driver.verb_example import fix_batch
from mrvl.driver import api
from mrvl.sim import bound
from mrvl.sim.simulator import Simulator

MODEL_NAMES = sorted(MODELS)


@pytest.fixture(scope="module")
def partitioned():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = compile_to_partitioned(MODELS[name](batch=1))
        return cache[name]

    return get


def _binaries(module, tiles: int, mode: str, ocm_size: int = isa.DEFAULT_OCM_SIZE):
    """(binary bytes, seeded inputs) of every accelerator sub-graph of a partitioned model."""
    out = []
    for fn in subgraph_functions(module.clone(), "accelerator"):
        rng = np.random.default_rng(0)
        feeds = [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
                 for a in fn.body.block.args]
        ranges = activation_ranges(fn, [feeds]) if mode == "int8" else None
        sub = compile_function(fn, machine=Machine(tiles=tiles, ocm_bytes=ocm_size),
                               quantize=mode, ranges=ranges)
        out.append((sub.data, feeds))
    return out


@pytest.mark.parametrize("tiles, mode", [(1, "fp16"), (8, "fp16"), (8, "int8")])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bound_never_exceeds_the_cycles(partitioned, name, tiles, mode):
    for data, feeds in _binaries(partitioned(name), tiles, mode):
        with Simulator.load(data) as sim:
            _, report = sim.run(feeds)
        assert 0 < report["bound_cycles"] <= report["cycles"]
        assert report["efficiency"] == report["bound_cycles"] / report["cycles"]
        # the bound's MACs are the model's, split by dtype as the run executed them
        assert report["bound"]["macs_int8"] == report["macs_int8"]
        assert report["bound"]["macs_fp16"] == report["macs_fp16"]
        # the program moves at least the minimal bytes
        assert report["bound"]["minimal_bytes"] <= (report["dma_in_bytes"]
                                                    + report["dma_out_bytes"])
        assert report["machine"] == Machine(tiles=tiles).to_dict()


@pytest.mark.parametrize("name", ["mnist_cnn", "ssd_detector"])
@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_bound_does_not_depend_on_the_program(partitioned, name, mode):
    bounds = {}
    for tiles, ocm in ((1, 1 << 20), (4, 1 << 20), (4, 256 * 1024), (8, 512 * 1024)):
        for k, (data, _) in enumerate(_binaries(partitioned(name), tiles, mode, ocm)):
            binary = ModelBinary.from_bytes(data, decode_code=False)
            bounds[(tiles, ocm, k)] = bound.independent_bound(
                binary, bound.machine_for(binary), bound.int8_layers(data))
    per_key = {}
    for (tiles, ocm, k), b in bounds.items():
        figures = (b.minimal_bytes, b.weights_bytes, b.macs_fp16, b.macs_int8)
        assert per_key.setdefault(k, figures) == figures, (tiles, ocm)
    for k in per_key:
        assert bounds[(4, 1 << 20, k)] == bounds[(4, 256 * 1024, k)]


def test_bound_formula_on_the_mnist_cnn(partitioned):
    ((data, _),) = _binaries(partitioned("mnist_cnn"), 2, "fp16")
    binary = ModelBinary.from_bytes(data, decode_code=False)
    macs = sum(layer.macs for layer in binary.layers)
    minimal = len(binary.weights) + sum(d.size_bytes for d in binary.inputs + binary.outputs)
    # 256 fp16 MACs per cycle per tile, 64 DRAM bytes per cycle (the defaults)
    expected = math.ceil(max(macs / (2 * 256), minimal / 64))
    b = bound.independent_bound(binary, Machine(tiles=2), bound.int8_layers(data))
    assert b.cycles == expected and b.macs_int8 == 0
    faster = bound.independent_bound(binary, Machine(tiles=2, dram_bytes_per_cycle=65536.0))
    assert faster.cycles == math.ceil(macs / (2 * 256))
    # the simulator's timing is the machine of its report
    with Simulator.load(data, machine=["dram_bytes_per_cycle=8"]) as sim:
        assert sim.machine.dram_bytes_per_cycle == 8
        assert sim.bound.cycles == math.ceil(max(macs / (2 * 256), minimal / 8))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("bound") / "build"
    api.compile(fix_batch(mnist_cnn_trained(), 1), out, num_tiles=4, quantize="fp16",
                cpu_layers=["max_pooling2d_1"], require_compute=False)
    return out


def test_report_json_totals(build, capsys):
    static = api.report(build)
    assert static["efficiency"] is None and static["bound_cycles"] > 0
    x = np.random.default_rng(2).random((1, 1, 28, 28), dtype=np.float32)
    result = api.run(build, {"permute_input": x})
    reports = [s.report for s in result.result.steps if s.kind == "accelerator"]
    assert main(["report", str(build), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_cycles"] == sum(r["cycles"] for r in reports)
    assert data["bound_cycles"] == sum(r["bound_cycles"] for r in reports)
    assert data["bound_cycles"] == static["bound_cycles"]  # the same from the binaries alone
    assert data["efficiency"] == pytest.approx(data["bound_cycles"] / data["total_cycles"])
    assert 0 < data["efficiency"] <= 1
    assert data["latency_ms"] == pytest.approx(sum(r["time_ms"] for r in reports))
    for key in ("dma_in_bytes", "dma_out_bytes", "macs"):
        assert data[key] == sum(r[key] for r in reports), key
    assert data["offload_mac_share"] == 1.0  # the CPU step is a max-pool: no MACs
    assert data["machine"] == Machine(tiles=4).to_dict()
    assert main(["report", str(build)]) == 0
    text = capsys.readouterr().out
    assert f"bound {data['bound_cycles']:,} cycles" in text
    assert f"efficiency {100 * data['efficiency']:.1f}%" in text
    assert "roofline of its own traffic" in text
