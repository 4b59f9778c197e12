"""`mrvl compile`: the JSON-pair form (mrvl-tvmircomp) and the whole-model form writing the
build directory of docs/build-dir.md, which the runtime then runs end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mrvl.frontend.cli import main
from mrvl.lowering.backend import compile_json_pair, compile_model
from mrvl.lowering.mrvl_json import write_module_json
from mrvl.lowering.mrvl_partition import compile_to_partitioned
from mrvl.models import MODELS, example_inputs
from mrvl.sim.mlip_binary import ModelBinary
from mrvl.sim.simulator import Simulator


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    model = MODELS["mnist_cnn"](batch=1)
    path = root / "mnist.onnx"
    onnx.save(model, path)
    return root, path, model


def test_json_pair_to_binary(mnist, capsys):
    root, path, model = mnist
    module = compile_to_partitioned(str(path))
    (nodes, consts), = write_module_json(module, root)
    out = root / "tvmgen_mrvl_main_0.bin"
    status = main(["compile", "--nodes", str(nodes), "--consts", str(consts), "--num-tiles",
                   "4", "--ocm-size", "0x100000", "--quantize", "fp16", "-o", str(out),
                   "--report", "--asm", str(root / "m.s")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "tvmgen_mrvl_main_1" in printed and "roofline" in printed
    binary = ModelBinary.read(out)
    assert binary.tile_end == 3
    assert (root / "m.s").read_text().count("conv ") >= 4
    # the Python API gives the same bytes
    assert compile_json_pair(nodes, consts, num_tiles=4) == out.read_bytes()
    x = next(iter(example_inputs(model).values()))
    with Simulator.load(out) as sim:
        (y,), _ = sim.run([x])
    assert y.shape == (1, 10)


def test_int8_json_pair_with_calibration(mnist, tmp_path):
    root, path, model = mnist
    module = compile_to_partitioned(str(path))
    (nodes, consts), = write_module_json(module, tmp_path)
    feeds = example_inputs(model)
    np.savez(tmp_path / "cal.npz", *feeds.values())
    out = tmp_path / "m.bin"
    assert main(["compile", "--nodes", str(nodes), "--consts", str(consts), "--quantize",
                 "int8", "--calibration", str(tmp_path / "cal.npz"), "-o", str(out)]) == 0
    binary = ModelBinary.read(out)
    assert binary.inputs[0].quantize and binary.inputs[0].scale > 0


def test_whole_model_build_dir_runs(mnist, tmp_path):
    _, path, model = mnist
    manifest = compile_model(path, tmp_path / "build", num_tiles=2)
    raw = json.loads((tmp_path / "build" / "manifest.json").read_text())
    assert raw["format"] == "mrvl-build" and raw["version"] == 1
    assert raw["options"]["num_tiles"] == 2 and raw["options"]["quantize"] == "fp16"
    (step,) = raw["steps"]
    assert step["kind"] == "accelerator"
    assert step["inputs"] == [i["name"] for i in raw["model"]["inputs"]]
    assert step["outputs"] == [o["name"] for o in raw["model"]["outputs"]]
    for key in ("nodes", "consts", "binary"):
        assert (tmp_path / "build" / step[key]).is_file()
    for name in ("model.onnx", "offload.json", "static_report.json"):
        assert (tmp_path / "build" / name).is_file()
    binary = ModelBinary.read(tmp_path / "build" / step["binary"])
    assert [d.name for d in binary.inputs] == step["inputs"]
    assert [d.name for d in binary.outputs] == step["outputs"]
    from mrvl.sim import api

    result = api.run(tmp_path / "build", example_inputs(model), check=True, record=False)
    assert result.checks and all(c.passed for c in result.checks)
    assert manifest.accelerator_steps[0].symbol == step["symbol"]


def test_model_with_cpu_steps(tmp_path):
    model = MODELS["ssd_detector"](batch=1)
    path = tmp_path / "ssd.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--num-tiles", "4"]) == 0
    raw = json.loads((tmp_path / "b" / "manifest.json").read_text())
    kinds = [s["kind"] for s in raw["steps"]]
    assert kinds == ["accelerator", "cpu"]
    cpu = onnx.load(tmp_path / "b" / raw["steps"][1]["onnx"])
    assert [i.name for i in cpu.graph.input] == raw["steps"][1]["inputs"]
    assert [o.name for o in cpu.graph.output] == raw["steps"][1]["outputs"]
    known = {i["name"] for i in raw["model"]["inputs"]}
    for step in raw["steps"]:
        assert set(step["inputs"]) <= known
        known |= set(step["outputs"])


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["compile", "--nodes", str(tmp_path / "missing.json"), "--consts",
                 str(tmp_path / "missing2.json"), "-o", str(tmp_path / "x.bin")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["compile", "-o", str(tmp_path / "x.bin")]) == 2
    assert main(["compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "b")]) == 2
