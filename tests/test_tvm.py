"""mrvl as a TVM Relax BYOC target (mrvl.tvm, the extra mrvl[tvm]; docs/tvm.md).

ONNX -> Relax (from_onnx) -> partition_for_mrvl -> build -> Relax VM, against onnxruntime by
Marvell's rule; the same layers offloaded as `mrvl compile`; export and reload in a fresh
process. Skipped only when tvm is not installed (.ci/run installs the extra).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.errors import MrvlError
from mrvl.lowering.mlip_emit import LAYER_KINDS
from mrvl.mlip_binary import ModelBinary
from mrvl.sim.acceptance import check_outputs, passed

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "models" / "data" / "mnist_cnn.onnx"


def test_import_mrvl_and_the_cli_never_load_tvm():
    code = ("import sys, mrvl, mrvl.driver.cli, mrvl.driver.api\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'tvm_ffi'))\n"
            "assert not loaded, loaded\n"
            "print('clean')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


@pytest.fixture(scope="module")
def mt():
    if os.environ.get("CI") != "true":  # CI installs the extra: never skip there
        pytest.importorskip("tvm")
    import mrvl.tvm

    return mrvl.tvm


def _relax(model: onnx.ModelProto, batch: int = 1):
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else batch for d in dims]
    return from_onnx(model, shape_dict=shapes, keep_params_in_input=False), shapes


def _feeds(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in shapes.items()}


def _run_vm(exe, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(exe, tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(x) for x in feeds.values()])
    items = [result] if hasattr(result, "numpy") else list(result)
    return [item.numpy() for item in items]


def _onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


LAYOUT_TRANSFORM = LAYER_KINDS["layout_transform"]


def _mrvl_compile_layers(model_path: Path, tmp_path: Path, **partition) -> list[tuple[int, int]]:
    """(kind, MACs) of every binary layer `mrvl compile` makes, in order, layout transforms
    aside (TVM's CPU parts are NCHW, mrvl's NHWC: the borders differ, the layers do not)."""
    from mrvl.driver.compiler import CompileOptions, PartitionOptions, Stage, compile

    options = CompileOptions(partition=PartitionOptions(**partition))
    result = compile(model_path, options, stop_after=Stage.MLIP, out_dir=tmp_path / "build")
    return [(layer.kind, layer.macs) for sub in result.subgraphs for layer in sub.binary.layers
            if layer.kind != LAYOUT_TRANSFORM]


def _tvm_layers(mt, exe) -> list[tuple[int, int]]:
    binaries = mt.mrvl_modules(exe.mod)
    return [(layer.kind, layer.macs) for symbol in sorted(binaries)
            for layer in ModelBinary.from_bytes(binaries[symbol]).layers
            if layer.kind != LAYOUT_TRANSFORM]


@pytest.fixture(scope="module")
def mnist(mt):
    model = onnx.load(MNIST)
    mod, shapes = _relax(model)
    partitioned = mt.partition_for_mrvl(mod)
    exe = mt.build(partitioned, num_tiles=8)
    return model, shapes, partitioned, exe


def test_mnist_runs_on_mrvl_and_matches_onnxruntime(mt, mnist):
    model, shapes, partitioned, exe = mnist
    regions = mt.offloaded_layers(partitioned)
    assert len(regions) == 1
    (symbol,) = regions
    assert str(partitioned[symbol].attrs["Codegen"]) == "mrvl"
    assert str(partitioned[symbol].attrs["global_symbol"]) == symbol
    (layers,) = regions.values()
    assert [kind for _, kind in layers] == [
        "mrvl.conv2d", "mrvl.maxpool2d", "mrvl.conv2d", "mrvl.maxpool2d", "mrvl.flatten",
        "mrvl.dense", "mrvl.dense"]
    assert [name for name, _ in layers] == ["lv3", "lv4", "lv8", "lv9", "lv14", "lv17", "gv"]
    feeds = _feeds(shapes)
    (got,) = _run_vm(exe, feeds)
    (ref,) = _onnxruntime(model, feeds)
    checks = check_outputs({"y": got}, {"y": ref}, "fp16")
    assert passed(checks), checks
    assert not np.array_equal(got, ref)  # the fp16 accelerator ran, not an fp32 CPU path


def test_mnist_offloads_the_same_layers_as_mrvl_compile(mt, mnist, tmp_path):
    from mrvl.driver import api

    model, shapes, _, exe = mnist
    ours = _mrvl_compile_layers(MNIST, tmp_path)
    assert len(ours) == 6  # 7 layers, the flatten has no instructions
    assert _tvm_layers(mt, exe) == ours
    # one region = the whole model: the same program, so the same outputs bit for bit
    feeds = _feeds(shapes, seed=5)
    build = api.compile(MNIST, tmp_path / "api", num_tiles=8)
    (expected,) = api.run(build, feeds, record=False).outputs.values()
    np.testing.assert_array_equal(_run_vm(exe, feeds)[0], expected)


def test_cpu_layers_and_max_layers_cut_like_mrvl_compile(mt, tmp_path):
    model = onnx.load(MNIST)
    mod, shapes = _relax(model)
    # the second max-pool on the CPU: two regions, as mrvl compile makes of the same cut
    cut = mt.partition_for_mrvl(mod, cpu_layers=["lv9"])
    regions = mt.offloaded_layers(cut)
    assert len(regions) == 2
    assert all("lv9" not in [name for name, _ in layers] for layers in regions.values())
    exe = mt.build(cut)
    ours = _mrvl_compile_layers(MNIST, tmp_path / "cut", cpu_layers=("max_pooling2d_1",))
    # the second region also turns TVM's NCHW pool output to NHWC for the flatten: a
    # transpose that mrvl's NHWC CPU part does not need
    transpose = LAYER_KINDS["transpose"]
    assert sorted(layer for layer in _tvm_layers(mt, exe) if layer[0] != transpose) == \
        sorted(ours)
    feeds = _feeds(shapes, seed=1)
    assert passed(check_outputs({"y": _run_vm(exe, feeds)[0]},
                                {"y": _onnxruntime(model, feeds)[0]}))
    # max_layers keeps the first layers (mrvl compile also counts the layout transform)
    first = mt.partition_for_mrvl(mod, max_layers=3)
    (layers,) = mt.offloaded_layers(first).values()
    assert [name for name, _ in layers] == ["lv3", "lv4", "lv8"]
    exe = mt.build(first)
    ours = _mrvl_compile_layers(MNIST, tmp_path / "max", max_layers=4)
    assert _tvm_layers(mt, exe) == ours
    assert passed(check_outputs({"y": _run_vm(exe, feeds)[0]},
                                {"y": _onnxruntime(model, feeds)[0]}))


def test_require_compute_sends_pool_only_regions_back(mt):
    model = onnx.load(MNIST)
    mod, _ = _relax(model)
    # conv layers forced out: the pools and the flatten left alone have no conv2d or dense
    cut = mt.partition_for_mrvl(mod, cpu_layers=["lv3", "lv8", "lv17", "gv"])
    assert mt.offloaded_layers(cut) == {}
    kept = mt.partition_for_mrvl(mod, cpu_layers=["lv3", "lv8", "lv17", "gv"],
                                 require_compute=False)
    kinds = [kind for layers in mt.offloaded_layers(kept).values() for _, kind in layers]
    assert "mrvl.maxpool2d" in kinds and "mrvl.conv2d" not in kinds


def test_partition_errors_are_one_line_mrvl_errors(mt):
    model = onnx.load(MNIST)
    mod, _ = _relax(model)
    with pytest.raises(MrvlError, match=r"unknown layer name\(s\) \['nope'\]"):
        mt.partition_for_mrvl(mod, cpu_layers=["nope"])
    with pytest.raises(MrvlError, match="unknown option"):
        mt.partition_for_mrvl(mod, tiles=8)
    with pytest.raises(MrvlError, match="invalid max_layers"):
        mt.partition_for_mrvl(mod, max_layers=-2)
    from tvm.relax.frontend.onnx import from_onnx

    symbolic = from_onnx(model, keep_params_in_input=False)
    with pytest.raises(MrvlError, match="no static shape"):
        mt.partition_for_mrvl(symbolic)
    partitioned = mt.partition_for_mrvl(mod)
    with pytest.raises(MrvlError, match="unknown option"):
        mt.build(partitioned, tiles=8)
    with pytest.raises(MrvlError, match="quantize must be 'fp16' or 'int8'"):
        mt.build(partitioned, quantize="int4")
    with pytest.raises(MrvlError, match="needs calibration data"):
        mt.build(partitioned, quantize="int8")


def test_codegen_options_reach_the_backend(mt, mnist):
    from mrvl.tvm.codegen import compile_region

    _, _, partitioned, _ = mnist
    (symbol,) = mt.offloaded_layers(partitioned)
    fn = partitioned[symbol]
    one, _, _ = compile_region(fn, symbol, {"num_tiles": 1})
    four, _, _ = compile_region(fn, symbol, {"num_tiles": 4})
    assert ModelBinary.from_bytes(one).machine.tiles == 1
    assert ModelBinary.from_bytes(four).machine.tiles == 4
    with pytest.raises(MrvlError, match="quantize"):
        compile_region(fn, symbol, {"quantize": "int4"})


def test_int8_region_equals_mrvl_compile_int8(mt, mnist, tmp_path):
    from mrvl.driver import api

    model, shapes, partitioned, _ = mnist
    exe = mt.build(partitioned, quantize="int8", calibration="random")
    binaries = mt.mrvl_modules(exe.mod)
    assert all(ModelBinary.from_bytes(b).layers for b in binaries.values())
    # the whole model is one region, so both calibrate on the same seeded inputs and make
    # the same int8 program: the outputs agree bit for bit (int8's error against fp32 is
    # bench/int8_error_budget.py's subject, not this one's)
    build = api.compile(MNIST, tmp_path / "int8", num_tiles=8, quantize="int8",
                        calibration="random")
    feeds = _feeds(shapes, seed=2)
    (expected,) = api.run(build, feeds, record=False).outputs.values()
    got = _run_vm(exe, feeds)[0]
    np.testing.assert_array_equal(got, expected)
    (ref,) = _onnxruntime(model, feeds)
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()


def test_export_and_reload_in_a_fresh_process(mnist, tmp_path):
    model, shapes, _, exe = mnist
    library = tmp_path / "mnist_mrvl.so"
    exe.export_library(str(library))
    feeds = _feeds(shapes, seed=3)
    np.save(tmp_path / "x.npy", feeds[next(iter(feeds))])
    script = textwrap.dedent(f"""
        import numpy as np, tvm
        from tvm import relax
        import mrvl.tvm  # registers the loader of the "mrvl" runtime modules
        lib = tvm.runtime.load_module({str(library)!r})
        vm = relax.VirtualMachine(lib, tvm.cpu())
        x = np.load({str(tmp_path / 'x.npy')!r})
        np.save({str(tmp_path / 'y.npy')!r}, vm["main"](tvm.runtime.tensor(x)).numpy())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(reloaded, _run_vm(exe, feeds)[0])
    (ref,) = _onnxruntime(model, feeds)
    assert passed(check_outputs({"y": reloaded}, {"y": ref}))
    # without mrvl.tvm the loader is missing, and TVM says so
    bare = f"import tvm; tvm.runtime.load_module({str(library)!r})"
    result = subprocess.run([sys.executable, "-c", bare], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert "ffi.Module.load_from_bytes.mrvl" in result.stderr


def test_the_runtime_library_builds_from_scratch(mt, tmp_path, monkeypatch):
    from mrvl.tvm import runtime_library

    monkeypatch.setenv("MRVL_TVM_CACHE", str(tmp_path))
    path = runtime_library.library_path()
    assert path.is_relative_to(tmp_path) and not path.exists()
    assert runtime_library.build(path) == path
    assert path.stat().st_size > 0
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind


def test_the_readme_example_runs(mt, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using mrvl from TVM", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    code = code.replace('"models/data/mnist_cnn.onnx"', repr(str(MNIST)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mrvl.conv2d" in result.stdout
    assert (tmp_path / "mnist_mrvl.so").is_file()
    printed = re.findall(r"\[\[(.*?)\]\]", result.stdout, re.S)
    assert len(printed) == 2 and printed[0] == printed[1]  # reloaded == built


def _tiny_mobilenet_block() -> onnx.ModelProto:
    """conv 3x3/2 + BN + ReLU6, depthwise 3x3 + BN + ReLU6, 1x1 projection + BN, residual
    Add, GlobalAveragePool, Flatten, Gemm: MobileNet v2's layer kinds on 16x16 inputs."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(prefix: str, x: str, cin: int, cout: int, kernel: int, stride: int,
                group: int, relu6: bool) -> str:
        weight = rng.standard_normal((cout, cin // group, kernel, kernel)) / np.sqrt(
            cin // group * kernel * kernel)
        nodes.append(helper.make_node(
            "Conv", [x, const(f"{prefix}.w", weight)], [f"{prefix}.conv"], name=f"{prefix}.0",
            kernel_shape=[kernel, kernel], strides=[stride, stride], group=group,
            pads=[kernel // 2] * 4))
        bn = [const(f"{prefix}.{k}", v) for k, v in (
            ("gamma", rng.uniform(0.5, 1.5, cout)), ("beta", rng.normal(0, 0.1, cout)),
            ("mean", rng.normal(0, 0.1, cout)), ("var", rng.uniform(0.5, 1.5, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"{prefix}.conv", *bn],
                                      [f"{prefix}.bn"], name=f"{prefix}.1", epsilon=1e-5))
        if not relu6:
            return f"{prefix}.bn"
        nodes.append(helper.make_node(
            "Clip", [f"{prefix}.bn", const(f"{prefix}.min", np.array(0.0)),
                     const(f"{prefix}.max", np.array(6.0))], [f"{prefix}.act"], name=f"{prefix}.2"))
        return f"{prefix}.act"

    x = conv_bn("stem", "input", 3, 8, 3, 2, 1, True)
    y = conv_bn("dw", x, 8, 8, 3, 1, 8, True)
    y = conv_bn("project", y, 8, 8, 1, 1, 1, False)
    nodes.append(helper.make_node("Add", [x, y], ["residual"], name="add"))
    nodes.append(helper.make_node("GlobalAveragePool", ["residual"], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"))
    nodes.append(helper.make_node(
        "Gemm", ["flat", const("fc.w", rng.standard_normal((10, 8)) / 3),
                 const("fc.b", rng.normal(0, 0.1, 10))], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "tiny_mobilenet_block",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_mobilenet_layer_kinds_relu6_residual_pool_gemm(mt, tmp_path):
    model = _tiny_mobilenet_block()
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    mod, shapes = _relax(model)
    partitioned = mt.partition_for_mrvl(mod)
    kinds = [kind for layers in mt.offloaded_layers(partitioned).values() for _, kind in layers]
    # ReLU6 (TVM imports ONNX Clip as TIR maximum/minimum) fuses into its conv like in mrvl
    assert sorted(kinds) == sorted(["mrvl.conv2d"] * 3 + [
        "mrvl.add", "mrvl.global_avgpool2d", "mrvl.flatten", "mrvl.dense"])
    exe = mt.build(partitioned)
    assert sorted(_tvm_layers(mt, exe)) == sorted(_mrvl_compile_layers(path, tmp_path))
    feeds = _feeds(shapes, seed=4)
    checks = check_outputs({"y": _run_vm(exe, feeds)[0]}, {"y": _onnxruntime(model, feeds)[0]})
    assert passed(checks), checks
