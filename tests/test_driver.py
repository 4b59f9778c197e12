"""The staged driver (driver/compiler.py): each stage stops where it says, typed options,
the machine recorded in the manifest, `mrvl compile --machine/--emit`, and the one
calibration reader (driver/calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mrvl.dialects import graph, mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.calibration import InputSpec, calibration_sets
from mrvl.driver.cli import main
from mrvl.driver.compiler import CompileOptions, PartitionOptions, Stage, compile
from mrvl.errors import CompileError
from mrvl.machine import Machine
from mrvl.models.mnist_cnn import mnist_cnn


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mnist.onnx"
    onnx.save(mnist_cnn(batch=1), path)
    return path


def _ops(module):
    return [op for op in module.walk()]


def test_import_and_partition_stages_return_the_module(model_path):
    imported = compile(model_path, stop_after=Stage.IMPORT)
    assert imported.stage is Stage.IMPORT and imported.out_dir is None
    assert any(isinstance(op, graph.Conv2DOp) for op in _ops(imported.module))
    assert not any(isinstance(op, mrvl.MrvlLayerOp) for op in _ops(imported.module))
    partitioned = compile(model_path, stop_after=Stage.PARTITION)
    assert partitioned.stage is Stage.PARTITION
    assert len(subgraph_functions(partitioned.module, "accelerator")) == 1


def test_file_stages_write_what_they_say(model_path, tmp_path):
    json_dir, mlip_dir, bin_dir = tmp_path / "json", tmp_path / "mlip", tmp_path / "bin"
    result = compile(model_path, stop_after=Stage.JSON, out_dir=json_dir)
    assert result.stage is Stage.JSON and not result.subgraphs
    assert {p.name for p in json_dir.iterdir()} == {
        ".mrvl-build", "model.onnx", "tvmgen_mrvl_main_0-nodes.json",
        "tvmgen_mrvl_main_0-consts.json"}
    result = compile(model_path, stop_after=Stage.MLIP, out_dir=mlip_dir)
    assert result.stage is Stage.MLIP and len(result.subgraphs) == 1
    assert result.subgraphs[0].model.layers() and not list(mlip_dir.glob("*.bin"))
    assert not (mlip_dir / "manifest.json").exists()
    options = CompileOptions(machine=Machine(tiles=2, dram_bytes_per_cycle=8.0))
    result = compile(model_path, options, out_dir=bin_dir)
    assert result.stage is Stage.BINARY
    manifest = json.loads((bin_dir / "manifest.json").read_text())
    assert manifest["options"]["machine"] == options.machine.to_dict()
    assert manifest["options"]["num_tiles"] == 2
    assert (bin_dir / "tvmgen_mrvl_main_0.bin").read_bytes() == result.subgraphs[0].data


def test_file_stages_need_a_directory_and_a_file(model_path):
    with pytest.raises(CompileError, match="build directory"):
        compile(model_path, stop_after=Stage.JSON)
    with pytest.raises(CompileError, match="as a file"):
        compile(mnist_cnn(batch=1), stop_after=Stage.BINARY, out_dir="unused")


def test_keyword_options_are_typed():
    options = CompileOptions.from_keywords(num_tiles=4, page_size=4096, quantize="int8",
                                           calibration="random",
                                           machine=["dram_gbps=32"], cpu_layers="fc",
                                           batch_size=2)
    assert options.machine.tiles == 4 and options.machine.page_bytes == 4096
    assert options.machine.dram_gbps == pytest.approx(32.0)
    assert options.partition == PartitionOptions(cpu_layers=("fc",), batch_size=2)
    with pytest.raises(CompileError, match="unknown compile option"):
        CompileOptions.from_keywords(tiles=4)
    with pytest.raises(CompileError, match="one of \\[1, 2, 4, 8\\] tiles, got 3"):
        CompileOptions.from_keywords(num_tiles=3)


def test_compile_verb_machine_and_emit(model_path, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["compile", str(model_path), "-o", str(out), "--num-tiles", "2",
                 "--machine", "dram_gbps=16", "--machine", "vector_lanes=32"]) == 0
    machine = json.loads((out / "manifest.json").read_text())["options"]["machine"]
    assert machine["tiles"] == 2 and machine["vector_lanes"] == 32
    assert machine["dram_gbps"] == pytest.approx(16.0)
    capsys.readouterr()
    assert main(["compile", str(model_path), "-o", str(tmp_path / "p"),
                 "--emit", "partition"]) == 0
    text = capsys.readouterr().out
    assert 'mrvl.target = "accelerator"' in text and "func.func @main" in text
    assert not (tmp_path / "p").exists()
    assert main(["compile", str(model_path), "-o", str(tmp_path / "m"), "--emit", "mlip"]) == 0
    assert "tvmgen_mrvl_main_0" in capsys.readouterr().out
    assert main(["compile", str(model_path), "-o", str(out), "--machine", "warp=9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'warp'" in err


def test_calibration_sets_by_name_order_and_samples(tmp_path):
    specs = [InputSpec(("x",), (1, 3)), InputSpec(("y",), (2,))]
    x, y = np.ones((1, 3), np.float32), np.arange(2, dtype=np.float32)
    (one,) = calibration_sets({"y": y, "x": x}, specs, "m")
    np.testing.assert_array_equal(one[0], x)
    np.testing.assert_array_equal(one[1], y)
    np.savez(tmp_path / "c.npz", np.stack([x, 2 * x, 3 * x]), np.stack([y, y, y]))
    sets = calibration_sets(tmp_path / "c.npz", specs, "m")  # file order, 3 samples
    assert len(sets) == 3 and float(sets[2][0][0, 0]) == 3.0
    (seeded,) = calibration_sets(None, specs, "m")
    np.testing.assert_array_equal(seeded[0], calibration_sets(None, specs, "m")[0][0])
    with pytest.raises(CompileError, match="no array for input 'y'"):
        calibration_sets({"x": x}, specs, "m")
    with pytest.raises(CompileError, match="do not match"):
        calibration_sets({"x": x, "y": np.ones((5, 3))}, specs, "m")
