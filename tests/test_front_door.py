"""Real models through the front door (issue 12): symbolic input shapes on every verb,
int8 calibration that is never silent, batches above the accelerator limit, lazy start-up,
progress on a terminal only."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mrvl.driver import api
from mrvl.driver.cli import main
from mrvl.driver.compiler import CompileOptions, PartitionOptions
from mrvl.errors import CompileError
from mrvl.sim.runtime import CompiledModel, load_manifest


def symbolic_hw_model() -> onnx.ModelProto:
    """x [1, 3, H, W] -> Conv 3x3 -> Relu: an OCR-detector-like input with symbolic H, W."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3],
                                rng.standard_normal(108).astype(np.float32).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "ocr_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       [1, 3, "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, None, None])],
        [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def ocr_model(tmp_path):
    path = tmp_path / "ocr.onnx"
    onnx.save(symbolic_hw_model(), path)
    return path


def test_symbolic_shape_error_names_the_flag(ocr_model, tmp_path, capsys):
    assert main(["compile", str(ocr_model), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--input-shape x=D0,D1,..." in err, err


@pytest.mark.parametrize("verb", ["compile", "partition", "show"])
def test_input_shape_on_every_verb(ocr_model, tmp_path, capsys, verb):
    out = tmp_path / "out"
    argv = [verb, str(ocr_model), "--input-shape", "x=1,3,16,24"]
    argv += ["-o", str(out if verb != "show" else tmp_path / "p.dot")]
    assert main(argv) == 0, capsys.readouterr().err
    if verb == "compile":
        manifest = load_manifest(out)
        assert manifest.inputs[0].shape == (1, 3, 16, 24)
        assert manifest.outputs[0].shape == (1, 4, 16, 24)
        assert [s.kind for s in manifest.steps] == ["accelerator"]
        assert manifest.options["partition"]["input_shapes"] == {"x": [1, 3, 16, 24]}
        x = np.random.default_rng(1).standard_normal((1, 3, 16, 24)).astype(np.float32)
        assert api.run(out, {"x": x}, check=True).passed
        # the build's own picture re-partitions with the recorded shape
        assert main(["show", str(out), "-o", str(tmp_path / "b.dot")]) == 0
    elif verb == "partition":
        assert (out / "tvmgen_mrvl_main_0-nodes.json").is_file()
    else:
        assert "accelerator" in (tmp_path / "p.dot").read_text().lower()


def test_shape_taken_from_inputs_npz(ocr_model, tmp_path, capsys):
    sample = tmp_path / "x.npz"
    np.savez(sample, x=np.ones((1, 3, 8, 12), np.float32))
    out = tmp_path / "b"
    assert main(["compile", str(ocr_model), "-o", str(out), "--inputs", str(sample)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input 'x' shape [1, 3, 8, 12] taken from" in err, err
    assert load_manifest(out).inputs[0].shape == (1, 3, 8, 12)


def test_shape_taken_from_calibration_stacked_along_batch(ocr_model, tmp_path, capsys):
    """Ten samples stacked along the batch axis calibrate a batch-1 build (and give H, W)."""
    cal = tmp_path / "cal.npz"
    data = np.random.default_rng(2).uniform(0, 255, (10, 3, 8, 12)).astype(np.float32)
    np.savez(cal, x=data)
    out = tmp_path / "b"
    assert main(["compile", str(ocr_model), "-o", str(out), "--quantize", "int8",
                 "--calibration", str(cal)]) == 0
    assert "taken from" in capsys.readouterr().err
    x = data[3:4]
    assert api.run(out, {"x": x}, check=True).passed


def test_ambiguous_sample_is_not_used(ocr_model, tmp_path, capsys):
    sample = tmp_path / "x.npz"
    np.savez(sample, x=np.ones((3, 8, 12), np.float32))  # wrong rank: not taken
    assert main(["partition", str(ocr_model), "-o", str(tmp_path / "p"), "--inputs",
                 str(sample)]) == 2
    assert "is symbolic" in capsys.readouterr().err


def test_partition_options_carry_input_shapes():
    options = CompileOptions.from_keywords(input_shapes={"x": [1, 3, 8, 8]})
    assert options.partition.input_shapes == (("x", (1, 3, 8, 8)),)
    assert PartitionOptions.from_dict(options.partition.to_dict()) == options.partition
    with pytest.raises(CompileError, match="at least 1"):
        PartitionOptions(input_shapes={"x": [1, 0]})


def test_api_compile_takes_input_shapes(tmp_path):
    build = api.compile(symbolic_hw_model(), tmp_path / "b", input_shapes={"x": [1, 3, 4, 4]})
    assert load_manifest(build).inputs[0].shape == (1, 3, 4, 4)


# ---- int8 calibration is never silent ------------------------------------------------------
def test_int8_without_calibration_is_refused(ocr_model, tmp_path, capsys):
    argv = ["compile", str(ocr_model), "--input-shape", "x=1,3,8,8", "--quantize", "int8"]
    assert main([*argv, "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--calibration random" in err, err
    assert not (tmp_path / "b").exists()
    assert main([*argv, "-o", str(tmp_path / "r"), "--calibration", "random"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "standard-normal" in err, err
    assert load_manifest(tmp_path / "r").quantize == "int8"


def test_calibration_sets_regroup_stacked_samples():
    from mrvl.driver.calibration import InputSpec, calibration_sets

    data = np.arange(1, 11, dtype=np.float32)[:, None] * np.ones((10, 3), np.float32)
    sets = calibration_sets({"x": data}, [InputSpec(("x",), (4, 3))], "m")
    assert len(sets) == 3 and all(s[0].shape == (4, 3) for s in sets)
    # the last set is filled up from the start: every sample is seen, no other value appears
    seen = np.concatenate([s[0][:, 0] for s in sets])
    assert set(seen) == set(range(1, 11))
    sets = calibration_sets({"x": data[:2]}, [InputSpec(("x",), (8, 3))], "m")
    assert len(sets) == 1 and sets[0][0].shape == (8, 3)


# ---- batches above the accelerator's limit ------------------------------------------------
def test_batch_100_mnist_offloads_in_chunks(tmp_path, capsys):
    """Batch 100 runs as 13 chunks of 8 (the last padded): ~100 % of MACs offloaded and the
    outputs pass Marvell's fp16 rule against onnxruntime."""
    from models.mnist_cnn import mnist_cnn_trained

    model = mnist_cnn_trained()
    path = tmp_path / "mnist.onnx"
    onnx.save(model, path)
    out = tmp_path / "b100"
    assert main(["compile", str(path), "-o", str(out), "--batch-size", "100",
                 "--num-tiles", "8"]) == 0
    err = capsys.readouterr().err
    assert "13 chunks of 8" in err and "warning" not in err, err
    report = api.report(out)
    assert report["accelerator_mac_share"] > 0.99
    manifest = load_manifest(out)
    assert manifest.batch_chunk == 8 and manifest.inputs[0].shape == (100, 1, 28, 28)
    x = np.random.default_rng(0).uniform(0, 1, (100, 1, 28, 28)).astype(np.float32)
    result = api.run(out, {manifest.inputs[0].name: x}, check=True)
    assert result.passed, [c.summary() for c in result.checks]
    assert result.outputs[manifest.outputs[0].name].shape == (100, 10)
    assert sum(s.kind == "accelerator" for s in result.result.steps) == 13
    # rows do not leak across chunks: row 97 alone gives the same answer
    with CompiledModel.load(out) as compiled:
        alone = compiled.run({manifest.inputs[0].name: np.repeat(x[97:98], 100, 0)})
    np.testing.assert_allclose(alone.outputs[manifest.outputs[0].name][0],
                               result.outputs[manifest.outputs[0].name][97], rtol=1e-3,
                               atol=1e-3)


def test_fixed_batch_above_limit_warns_about_low_offload(tmp_path, capsys):
    from models.mnist_cnn import mnist_cnn
    from mrvl.driver.verb_example import fix_batch

    path = tmp_path / "fixed.onnx"
    onnx.save(fix_batch(mnist_cnn(), 16), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "warning: only 0% of the MACs" in err and "batch 16 exceeds" in err, err
    assert load_manifest(tmp_path / "b").batch_chunk is None


# ---- start-up ------------------------------------------------------------------------------
HEAVY = ("onnx", "onnxruntime", "xdsl", "ml_dtypes")


def _modules_after(argv: list[str]) -> set[str]:
    import subprocess
    import sys

    script = ("import sys\nfrom mrvl.driver import cli\ntry:\n    cli.main(sys.argv[1:])\n"
              "except SystemExit:\n    pass\nprint('MODULES:' + ','.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                         text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("MODULES:"))
    return set(line.removeprefix("MODULES:").split(","))


def test_help_imports_no_heavy_module():
    modules = _modules_after(["--help"])
    assert "mrvl.driver.cli" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, heavy
    assert not any(m.startswith("mrvl.driver.verb_") for m in modules)


def test_run_help_imports_no_compiler():
    modules = _modules_after(["run", "--help"])
    assert "mrvl.driver.verb_run" in modules
    assert not [m for m in modules if m.split(".")[0] in ("onnx", "xdsl", "ml_dtypes")]


def test_verb_table_matches_the_modules():
    import importlib

    from mrvl.driver.cli import VERBS, build_parser

    for verb, (module_name, help_text) in VERBS.items():
        assert importlib.import_module(module_name).HELP == help_text, verb
    build_parser()  # every verb configures without clashing


# ---- progress on a terminal only -----------------------------------------------------------
class FakeTerminal:
    """A stderr stand-in that says it is a terminal and keeps what was written."""

    def __init__(self, tty: bool = True):
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_draws_on_a_terminal_and_clears():
    from mrvl.progress import Progress, clear_line

    stream = FakeTerminal()
    with Progress("mrvl run", stream=stream, interval=0) as bar:
        bar.update("step @a", 0, 2)
        bar.update("step @b", 1, 2)
        clear_line()
        assert stream.text.endswith("\r\033[K")
        bar.update("step @c", 1, 2)
    assert "mrvl run: step @a [0/2]" in stream.text and "step @b [1/2]" in stream.text
    assert stream.text.endswith("\r\033[K")  # the line is gone when the step is done
    quiet = FakeTerminal(tty=False)
    with Progress("mrvl run", stream=quiet, interval=0) as bar:
        bar.update("step @a", 0, 2)
    assert quiet.text == ""


def test_compile_and_run_show_progress_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    """With stderr a terminal, compile and a chunked run draw their steps; piped (pytest's
    capture is not a terminal) they print nothing but their own lines."""
    import sys

    from models.mnist_cnn import mnist_cnn

    path = tmp_path / "mnist.onnx"
    onnx.save(mnist_cnn(), path)
    x = np.random.default_rng(0).uniform(0, 1, (20, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "x.npz", permute_input=x)
    assert main(["compile", str(path), "-o", str(tmp_path / "quiet"), "--batch-size", "20"]) == 0
    assert main(["run", str(tmp_path / "quiet"), "-i", str(tmp_path / "x.npz")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1, err  # only the chunk note
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["compile", str(path), "-o", str(tmp_path / "tty"), "--batch-size", "20"]) == 0
    assert "mrvl compile: import" in terminal.text
    assert "mrvl compile: backend @tvmgen_mrvl_main_0 [0/1]" in terminal.text
    assert "\r\033[Kmrvl: batch 20 runs as 3 chunks of 8" in terminal.text
    terminal.text = ""
    assert main(["run", str(tmp_path / "tty"), "-i", str(tmp_path / "x.npz"), "--check"]) == 0
    assert "mrvl run: rows 0-7 of 20, accelerator step @tvmgen_mrvl_main_0" in terminal.text
    assert "the reference on onnxruntime" in terminal.text
    assert terminal.text.endswith("\r\033[K")


def test_batch_from_input_shape_is_chunked_too(ocr_model, tmp_path, capsys):
    """`--input-shape x=20,3,8,8` on a symbolic-batch input chunks like --batch-size 20."""
    ocr = symbolic_hw_model()
    ocr.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    ocr.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "n.onnx"
    onnx.save(ocr, path)
    out = tmp_path / "b"
    assert main(["compile", str(path), "-o", str(out), "--input-shape", "x=20,3,8,8"]) == 0
    assert "3 chunks of 8" in capsys.readouterr().err
    manifest = load_manifest(out)
    assert manifest.batch_chunk == 8 and manifest.inputs[0].shape == (20, 3, 8, 8)
    x = np.random.default_rng(3).standard_normal((20, 3, 8, 8)).astype(np.float32)
    assert api.run(out, {"x": x}, check=True).passed
    # the fixed batch 1 of the OCR model is never chunked
    assert main(["compile", str(ocr_model), "-o", str(tmp_path / "one"), "--input-shape",
                 "x=1,3,8,8", "--batch-size", "20"]) == 0
    assert load_manifest(tmp_path / "one").batch_chunk is None
