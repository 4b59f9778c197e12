"""ONNX's backend node tests through the whole pipeline: `mrvl compile` into a build directory,
then the hybrid runtime (accelerator steps simulated, CPU steps on onnxruntime).

The cases are those of tests/test_onnx_node_conformance.py (ONNX's own node-test data,
regenerated and cached there, with parameter inputs turned into initializers). One more
adaptation here: the weights of Conv / ConvTranspose (W, B), Gemm (B, C), MatMul (B), the
scale and bias of Group- / InstanceNormalization and ReduceMean's axes become initializers,
as in every deployed model (the accelerator takes constant weights only; the values are
ONNX's).
ONNX's Add cases are all 1-D to 3-D, so one 4-D element-wise add (Sum2D) is added, its expected
output from onnxruntime.

- Every case of an op type the accelerator takes (ACCEL_OPS) is compiled with
  `require_compute=False`, so that a lone pool or add is offloaded too. When the build holds an
  accelerator step, its outputs must pass Marvell's fp16 rule against ONNX's expected outputs;
  when the partitioner left the case on the CPU (an attribute the accelerator cannot take,
  e.g. dilated or 1-D pooling), it must match onnxruntime on the original model exactly. At
  least one case of every op type must reach the accelerator.
- One case of every other op type (CPU_SAMPLE) runs through the CPU path and must match
  onnxruntime on the original model exactly.

Lean by design: single-node models at ONNX's small test shapes, 1 tile.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_onnx_node_conformance import EXCLUDED, _cases, _with_parameter_initializers

from mrvl.sim import acceptance
from mrvl.sim.runtime import CompiledModel

ACCEL_OPS = (
    "Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Add", "Concat", "Resize", "Split", "ConvTranspose", "GroupNormalization",
    "InstanceNormalization", "ReduceMean",
)
"""Op types that form an accelerator layer on their own (the pattern table); every case runs,
and at least one case of each must reach the accelerator."""

FUSED_OPS = ("Relu", "Clip", "Sigmoid", "BatchNormalization", "Pad", "Reshape", "Flatten",
             "Squeeze", "Transpose")
"""Taken by the accelerator fused into a layer (or as a data-movement layer); every case runs,
through whichever path the partitioner chooses for the lone node."""

CPU_SAMPLE = (
    "Softmax", "Div", "Sub", "Mul", "Unsqueeze", "Tanh", "LeakyRelu",
    "HardSigmoid", "PRelu", "HardSwish", "Identity", "Dropout",
)
"""Other op types: one case each, through whichever path the partitioner chooses (Mul,
Tanh, LeakyRelu, HardSigmoid, HardSwish now reach the accelerator as Mul2D / Activation
layers; the rest run on the CPU and must match onnxruntime exactly)."""

WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "ConvTranspose": (1, 2),
                 "GroupNormalization": (1, 2), "InstanceNormalization": (1, 2),
                 "ReduceMean": (1,)}

KNOWN_BACKEND_ISSUES: dict[str, str] = {}
"""Cases failing because of a known bug outside the runtime (strict xfail: they must be
removed from here once fixed)."""



def _add_4d_case():
    from onnx import TensorProto, helper

    shape = [1, 3, 4, 5]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["sum"], name="add")], "mrvl_add_4d",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "y")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    (expected,) = _ort(model, {"x": inputs[0], "y": inputs[1]})
    return ("mrvl_add_4d", model.SerializeToString(), inputs, [expected])


def _with_weight_initializers(model: onnx.ModelProto, inputs: list[np.ndarray]):
    """Move the weight inputs (WEIGHT_INPUTS) of the single node to initializers."""
    values = dict(zip([i.name for i in model.graph.input], inputs))
    weights = set()
    for node in model.graph.node:
        for pos in WEIGHT_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos] in values:
                weights.add(node.input[pos])
    if not weights:
        return model, inputs
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [vi for vi in model.graph.input if vi.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for name in sorted(weights):
        model.graph.initializer.append(onnx.numpy_helper.from_array(values[name], name))
    return model, [values[vi.name] for vi in keep]


def _single_op(model: onnx.ModelProto) -> str | None:
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    return ops[0] if len(set(ops)) == 1 else None


def _select(config) -> list:
    params, seen_cpu = [], set()
    for case in [*_cases(config), _add_4d_case()]:
        name, model_bytes = case[0], case[1]
        if name in EXCLUDED or case[2] is None or case[3] is None:
            continue
        marks = []
        if name in KNOWN_BACKEND_ISSUES:
            marks.append(pytest.mark.xfail(reason=KNOWN_BACKEND_ISSUES[name], strict=True))
        op = _single_op(onnx.ModelProto.FromString(model_bytes))
        if op in ACCEL_OPS or op in FUSED_OPS:
            params.append(pytest.param(case, "accel", id=name, marks=marks))
        elif op in CPU_SAMPLE and op not in seen_cpu:
            seen_cpu.add(op)
            params.append(pytest.param(case, "cpu", id=name, marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pipeline_case" in metafunc.fixturenames:
        metafunc.parametrize(("pipeline_case", "group"), _select(metafunc.config))


def _compile(model: onnx.ModelProto, out: Path) -> dict:
    from mrvl.driver.compiler import compile_model

    path = out.parent / f"{out.name}.onnx"
    onnx.save(model, path)
    compile_model(path, out, num_tiles=1, quantize="fp16", require_compute=False)
    return json.loads((out / "manifest.json").read_text())


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_pipeline_case(pipeline_case, group, tmp_path):  # noqa: ARG001 (group: the id)
    name, model_bytes, inputs, expected = pipeline_case
    model, inputs = _with_parameter_initializers(onnx.ModelProto.FromString(model_bytes), inputs)
    model, inputs = _with_weight_initializers(model, inputs)
    feeds = {vi.name: x for vi, x in zip(model.graph.input, inputs)}
    manifest = _compile(model, tmp_path / "build")
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs
    names = [o.name for o in model.graph.output]
    on_accel = any(step["kind"] == "accelerator" for step in manifest["steps"])
    if on_accel:
        checks = acceptance.check_outputs(got, dict(zip(names, expected)), "fp16")
        for check in checks:
            assert check.passed, f"{name}: {check.summary()}"
        return
    reference = _ort(model, feeds)
    for out_name, ref in zip(names, reference):
        np.testing.assert_array_equal(got[out_name], ref, err_msg=f"{name}: {out_name}")


def test_every_accelerator_op_reached_the_accelerator(request):
    """At least one case of every ACCEL_OPS type is offloaded: partitioned (as `_compile`
    does, without the backend) into an accelerator sub-graph. Self-contained: it does not
    depend on which test_pipeline_case runs were selected."""
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.dialects.mrvl import subgraph_functions

    reached: dict[str, str] = {}
    for case in [*_cases(request.config), _add_4d_case()]:
        name, model_bytes, inputs = case[0], case[1], case[2]
        if name in EXCLUDED or inputs is None:
            continue
        model = onnx.ModelProto.FromString(model_bytes)
        op = _single_op(model)
        if op not in ACCEL_OPS or op in reached:
            continue
        model, inputs = _with_parameter_initializers(model, inputs)
        model, _ = _with_weight_initializers(model, inputs)
        module = compile_to_partitioned(model, require_compute=False)
        if subgraph_functions(module, "accelerator"):
            reached[op] = name
    missing = sorted(set(ACCEL_OPS) - set(reached))
    assert not missing, f"no case of {missing} reached the accelerator; reached {reached}"


@pytest.mark.parametrize("name", ["vit_tiny", "bert_tiny", "bert_tiny_mask"])
def test_transformer_model_end_to_end(name, tmp_path):
    """ViT-tiny / BERT-tiny (small shapes; BERT also with a padding attention mask) through
    `mrvl compile` and the hybrid runtime, against onnxruntime on the original model:
    Marvell's fp16 rule holds (the residual stream is fp32 by the precision policy,
    docs/backend.md "Transformer layers"), and each model is one accelerator step."""
    from mrvl.models.bert_tiny import bert_tiny
    from mrvl.models.vit_tiny import vit_tiny

    if name == "vit_tiny":
        model = vit_tiny(image_size=32, depth=2, dim=64, heads=2, mlp=128, classes=100)
        feeds = {"pixel_values": np.random.default_rng(1).standard_normal(
            (1, 3, 32, 32)).astype(np.float32)}
    else:
        mask = name == "bert_tiny_mask"
        model = bert_tiny(seq=32, dim=64, heads=2, ffn=128, layers=2, vocab=100,
                          attention_mask=mask)
        feeds = {"input_ids": np.random.default_rng(1).integers(0, 100, (1, 32))}
        if mask:
            feeds["attention_mask"] = (np.arange(32) < 24).astype(np.int64)[None]
    manifest = _compile(model, tmp_path / "build")
    assert [s["kind"] for s in manifest["steps"]].count("accelerator") == 1
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs
    (expected,) = _ort(model, feeds)
    (check,) = acceptance.check_outputs({"y": next(iter(got.values()))}, {"y": expected},
                                        "fp16")
    assert check.passed, check.summary()


CNN_MODELS = ("unet", "yolo")
"""In-repo CNN models (mrvl.models, outside MODELS) run end to end: one accelerator step,
>= 95 % of the MACs on the accelerator, Marvell's fp16 rule against onnxruntime."""


@pytest.mark.parametrize("tiles", [1, 8])
@pytest.mark.parametrize("name", CNN_MODELS)
def test_cnn_model_end_to_end(name, tiles, tmp_path):
    from mrvl import models
    from mrvl.driver.compiler import compile_model

    model = getattr(models, name)(batch=1)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize="fp16")
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    offload = json.loads((tmp_path / "build" / "offload.json").read_text())
    assert offload["accelerator_mac_share"] >= 0.95
    assert offload["crossings"]["count"] == 0
    feeds = models.example_inputs(model)
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs
    names = [o.name for o in model.graph.output]
    checks = acceptance.check_outputs(got, dict(zip(names, _ort(model, feeds))), "fp16")
    for check in checks:
        assert check.passed, f"{name} on {tiles} tile(s): {check.summary()}"


@pytest.mark.parametrize(("opset", "tiles"), [(17, 1), (21, 8)])
def test_unet_group_norm_depthwise_variant_end_to_end(opset, tiles, tmp_path):
    """The UNet variant with GroupNorm(8) + SiLU blocks (torch's InstanceNormalization
    export at opset 17, GroupNormalization at 21) and depthwise ConvTranspose up-sampling:
    one accelerator step, every MAC on the accelerator, Marvell's fp16 rule."""
    from mrvl import models
    from mrvl.driver.compiler import compile_model
    from mrvl.models.unet import unet

    model = unet(opset=opset, batch=1, groups=8, depthwise_up=True)
    kinds = {node.op_type for node in model.graph.node}
    assert ("GroupNormalization" if opset >= 21 else "InstanceNormalization") in kinds
    assert any(node.op_type == "ConvTranspose" and attr.name == "group" and attr.i > 1
               for node in model.graph.node for attr in node.attribute)
    path = tmp_path / "unet.onnx"
    onnx.save(model, path)
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize="fp16")
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    offload = json.loads((tmp_path / "build" / "offload.json").read_text())
    assert offload["accelerator_mac_share"] == 1.0
    assert offload["cpu_nodes"] == []
    feeds = models.example_inputs(model)
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs
    (check,) = acceptance.check_outputs(got, {"masks": _ort(model, feeds)[0]}, "fp16")
    assert check.passed, check.summary()
