"""`mrvl compile`: the JSON-pair form (mrvl-tvmircomp) and the whole-model form writing the
build directory of docs/build-dir.md, which the runtime then runs end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mrvl.driver.cli import main
from mrvl.driver.compiler import compile_json_pair, compile_model
from mrvl.lowering.mrvl_json import write_module_json
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.models import MODELS, example_inputs
from mrvl.mlip_binary import ModelBinary
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


def test_bad_calibration_files_are_one_line_errors(mnist, tmp_path, capsys):
    """A .npy instead of an .npz, a broken archive and a non-numeric array: exit status 2
    and one line naming the file, no traceback."""
    root, path, model = mnist
    (nodes, consts), = write_module_json(compile_to_partitioned(str(path)), tmp_path)
    x = next(iter(example_inputs(model).values()))
    np.save(tmp_path / "cal.npy", x)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    np.savez(tmp_path / "text.npz", x=np.array(["a", "b"]))
    cases = [("cal.npy", "is not an .npz archive"), ("broken.npz", "cannot read"),
             ("text.npz", "array 'x' is not numeric")]
    for name, needle in cases:
        argv = ["compile", "--nodes", str(nodes), "--consts", str(consts), "--quantize",
                "int8", "--calibration", str(tmp_path / name), "-o", str(tmp_path / "m.bin")]
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert name in err and needle in err, err


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
    from mrvl.driver import api

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


# ---- odd but valid models: each compiles and passes `mrvl run --check` ---------------------
def _odd_model(kind: str):
    """(model, inputs, compile flags) of one small odd-but-valid model, built with
    onnx.helper (3x6x6 images, 3x3 convolutions with seeded random weights)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = []

    def conv(src, dst, name):
        for suffix, shape in (("_w", [4, 3, 3, 3]), ("_b", [4])):
            arr = (rng.standard_normal(shape) * 0.3).astype(np.float32)
            inits.append(numpy_helper.from_array(arr, name + suffix))
        return helper.make_node("Conv", [src, name + "_w", name + "_b"], [dst], name=name,
                                pads=[1, 1, 1, 1])

    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    image = [1, 3, 6, 6]
    feature = [1, 4, 6, 6]
    flags: list[str] = []
    if kind == "two_accel_outputs":  # plus a model output that is also consumed inside
        nodes = [conv("x", "c1", "conv1"), helper.make_node("Relu", ["c1"], ["y1"], name="r"),
                 conv("x", "c2", "conv2")]
        ins, outs = [info("x", image)], [info("y1", feature), info("c1", feature),
                                         info("c2", feature)]
    elif kind == "two_inputs":
        nodes = [conv("a", "c1", "conv1"), conv("b", "c2", "conv2"),
                 helper.make_node("Add", ["c1", "c2"], ["y"], name="add")]
        ins, outs = [info("a", image), info("b", image)], [info("y", feature)]
    elif kind == "concat_three":
        nodes = [conv("x", f"c{k}", f"conv{k}") for k in range(3)]
        nodes.append(helper.make_node("Concat", ["c0", "c1", "c2"], ["y"], name="cat", axis=1))
        ins, outs = [info("x", image)], [info("y", [1, 12, 6, 6])]
    elif kind == "symbolic_batch_2":
        nodes = [conv("x", "c", "conv"), helper.make_node("Relu", ["c"], ["y"], name="r")]
        ins, outs = [info("x", ["N", 3, 6, 6])], [info("y", ["N", 4, 6, 6])]
        flags = ["--batch-size", "2"]
    elif kind == "fixed_batch_2_gemm":
        inits += [numpy_helper.from_array(rng.standard_normal([5, 108]).astype(np.float32), "w"),
                  numpy_helper.from_array(rng.standard_normal([5]).astype(np.float32), "b")]
        nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                 helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="gemm", transB=1)]
        ins, outs = [info("x", [2, 3, 6, 6])], [info("y", [2, 5])]
    elif kind == "pass_through_and_duplicate":  # Dropout folds away; y1, y2 are one value
        nodes = [conv("x", "c", "conv"), helper.make_node("Dropout", ["x"], ["xo"], name="drop"),
                 helper.make_node("Identity", ["c"], ["y1"], name="id1"),
                 helper.make_node("Identity", ["c"], ["y2"], name="id2")]
        ins, outs = [info("x", image)], [info("xo", image), info("y1", feature),
                                         info("y2", feature)]
    else:
        raise AssertionError(kind)
    graph = helper.make_graph(nodes, kind, ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    batch = 2 if "batch_2" in kind else 1
    inputs = {vi.name: rng.standard_normal([batch, 3, 6, 6]).astype(np.float32) for vi in ins}
    return model, inputs, flags


@pytest.mark.parametrize("kind", ["two_accel_outputs", "two_inputs", "concat_three",
                                  "symbolic_batch_2", "fixed_batch_2_gemm",
                                  "pass_through_and_duplicate"])
def test_odd_models_compile_and_pass_check(kind, tmp_path, capsys):
    model, inputs, flags = _odd_model(kind)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", **inputs)
    build = tmp_path / "build"
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(build), *flags]) == 0
    assert main(["run", str(build), "--inputs", str(tmp_path / "x.npz"), "--check",
                 "-o", str(tmp_path / "y.npz")]) == 0
    assert "check: PASS" in capsys.readouterr().out
    raw = json.loads((build / "manifest.json").read_text())
    names = [o.name for o in model.graph.output]
    assert [o["name"] for o in raw["model"]["outputs"]] == names
    produced = {i["name"] for i in raw["model"]["inputs"]}
    for step in raw["steps"]:
        assert set(step["inputs"]) <= produced
        produced |= set(step["outputs"])
    assert set(names) <= produced
    accel = [s for s in raw["steps"] if s["kind"] == "accelerator"]
    assert len(accel) == 1
    got = np.load(tmp_path / "y.npz")
    if kind == "two_accel_outputs":
        assert len(accel[0]["outputs"]) >= 2 and {"c1", "c2"} <= set(accel[0]["outputs"])
    if kind == "two_inputs":
        assert sorted(accel[0]["inputs"]) == ["a", "b"]
    if kind == "pass_through_and_duplicate":
        np.testing.assert_array_equal(got["xo"], inputs["x"])
        np.testing.assert_array_equal(got["y2"], got["y1"])
        identity = [s for s in raw["steps"] if s["symbol"].startswith("cpu_identity_")]
        assert sorted(s["outputs"][0] for s in identity) == ["xo", "y2"]


def test_unsigned_dtypes_kept_in_manifest(tmp_path):
    """uint8 / uint16 inputs are declared as such (not int8 / int16) and accepted."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
         helper.make_node("Cast", ["s"], ["w"], name="cast", to=TensorProto.UINT16)], "u",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, [2, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("w", TensorProto.UINT16, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "u.onnx")
    compile_model(tmp_path / "u.onnx", tmp_path / "b")
    raw = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [i["dtype"] for i in raw["model"]["inputs"]] == ["uint8", "uint8"]
    assert raw["model"]["outputs"][0]["dtype"] == "uint16"
    from mrvl.sim.runtime import CompiledModel

    a = np.array([[200, 1, 2], [3, 4, 250]], dtype=np.uint8)
    with CompiledModel.load(tmp_path / "b") as m:
        got = m.run({"a": a, "b": a}).outputs["w"]
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, (a + a).astype(np.uint16))


def test_bad_paths_are_one_line_errors(tmp_path, capsys):
    """A missing file, a directory, a non-ONNX file, an output path that is a file and
    calibration data missing an input: exit status 2 and one line naming the culprit."""
    (tmp_path / "junk.onnx").write_text("not a model\n")
    model, inputs, _ = _odd_model("two_inputs")
    onnx.save(model, tmp_path / "two.onnx")
    np.savez(tmp_path / "cal.npz", a=inputs["a"])
    cases = [
        (["compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "b")], "nope.onnx"),
        (["compile", str(tmp_path), "-o", str(tmp_path / "b")], "directory"),
        (["compile", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "b")], "junk.onnx"),
        (["compile", str(tmp_path / "two.onnx"), "-o", str(tmp_path / "junk.onnx")],
         "junk.onnx"),
        (["compile", str(tmp_path / "two.onnx"), "-o", str(tmp_path / "b"), "--quantize",
          "int8", "--calibration", str(tmp_path / "cal.npz")], "'b'"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert needle in err, err
