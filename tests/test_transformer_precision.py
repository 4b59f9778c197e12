"""Issue 15a: transformer numerics and layers.

- the fp16 precision policy (lowering/mrvl_precision.py): which layers write fp32 in a
  transformer sub-graph, that the backend stores exactly those tensors fp32, that CNN
  sub-graphs are untouched, and the in-place fp32 -> fp16 SOFTMAX the attention epilogue
  relies on;
- ViT's class-token Concat (a constant operand) and Gather (one index: a slice) on the
  accelerator, through the JSON pair, the CPU fallback and the simulator;
- BERT's additive attention mask fused into the score MatMul (ELTWISE ADD with SCALE
  before the SOFTMAX), end to end in fp16 and int8.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.lowering.backend import compile_function
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.lowering.mrvl_precision import OUT_DTYPE_ATTR, fp32_outputs
from mrvl.lowering.offload_report import offload_report
from mrvl.machine import Machine
from mrvl.mlip_binary import Instruction
from mrvl.mlip_isa import DType, Opcode
from mrvl.models import mnist_cnn
from mrvl.models.bert_tiny import bert_tiny
from mrvl.models.vit_tiny import vit_tiny
from mrvl.sim import acceptance
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.runtime import CompiledModel
from mrvl.sim.simulator import Simulator

F32 = np.float32


def _vit():
    return vit_tiny(image_size=32, depth=1, dim=64, heads=2, mlp=128, classes=100)


def _bert(mask: bool = False):
    return bert_tiny(seq=32, dim=64, heads=2, ffn=128, layers=1, vocab=50,
                     attention_mask=mask)


def _accelerator(model, **options):
    (fn,) = subgraph_functions(compile_to_partitioned(model, **options), "accelerator")
    return fn


def _ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)


def _run(model, feeds, tmp_path, tiles=2, quantize="fp16", **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    if quantize == "int8":
        np.savez(tmp_path / "cal.npz", **feeds)
        options["calibration"] = str(tmp_path / "cal.npz")
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    with CompiledModel.load(tmp_path / "build") as compiled:
        result = compiled.run(feeds)
    return manifest, result


# ---- the precision policy -----------------------------------------------------------------
def test_policy_keeps_the_residual_stream_fp32_in_vit():
    fn = _accelerator(_vit())
    wide = fp32_outputs(fn)
    kinds = [type(op) for op in wide]
    # the position Add and the two residual Adds, the FCs feeding those Adds (out-proj and
    # fc2), and the patch embedding conv with the copies from it to the position Add
    assert kinds.count(mrvl.Sum2DOp) == 3
    assert kinds.count(mrvl.FCOp) == 2
    assert mrvl.Conv2DOp in kinds and mrvl.ConcatOp in kinds
    # LayerNorm outputs read only by FCs (pre-norm) stay fp16; so do MatMul outputs
    assert not any(isinstance(op, mrvl.LayerNormOp | mrvl.MatMulOp) for op in wide)
    for op in wide:
        readers = [u.operation for u in op.results[0].uses]
        assert readers, op.name_str


def test_policy_in_bert_keeps_post_norm_layernorm_outputs_fp32():
    fn = _accelerator(_bert())
    wide = fp32_outputs(fn)
    norms = [op for op in fn.body.block.ops if isinstance(op, mrvl.LayerNormOp)]
    returned = set(fn.body.block.last_op.operands)
    # every LayerNorm feeds the next residual Add (fp32) except the last: a sub-graph output
    for norm in norms:
        assert (norm in wide) == (norm.results[0] not in returned), norm.name_str


def test_policy_leaves_cnn_subgraphs_alone():
    for fn in subgraph_functions(compile_to_partitioned(mnist_cnn(batch=1)), "accelerator"):
        assert fp32_outputs(fn) == []


def test_backend_stores_exactly_the_policy_tensors_fp32(tmp_path):
    fn = _accelerator(_vit())
    wide = {op.name_str for op in fp32_outputs(fn)}
    # the DRAM schedule keeps every activation in DRAM (resident ones leave the table)
    sub = compile_function(fn.clone(), machine=Machine(tiles=2), quantize="fp16",
                           resident=False)
    scratch = {name: t.dtype.data for name, t in sub.model.tensors().items()
               if t.region.data == "scratch" and t.alias_of is None}
    fp32 = {name[:-2] for name, dtype in scratch.items() if dtype == "f32"}
    assert fp32 == wide
    # int8 builds do not use the policy
    int8_fn = fn.clone()
    int8 = compile_function(int8_fn, machine=Machine(tiles=2), quantize="int8", ranges={})
    assert not [t for t in int8.model.tensors().values()
                if t.region.data == "scratch" and t.dtype.data == "f32"]
    assert not [op for op in int8_fn.walk() if OUT_DTYPE_ATTR in op.attributes]


def test_offload_report_lists_the_fp32_layers():
    report = offload_report(compile_to_partitioned(_vit()))
    fn = _accelerator(_vit())
    assert report["fp32_in_fp16"] == [op.name_str for op in fp32_outputs(fn)]


def test_softmax_writes_fp16_over_its_fp32_rows_in_place():
    """The attention epilogue's SOFTMAX reads fp32 scores and writes fp16 probabilities at
    the same address (rows in order: row r's output lies in input rows <= r)."""
    x = (np.random.default_rng(3).standard_normal((6, 40)) * 5).astype(F32)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    pb.compute(0, Instruction.make(
        Opcode.SOFTMAX, in_addr=xa, out_addr=xa, rows=6, cols=40, in_row_stride=40,
        out_row_stride=40, src_dtype=DType.FP32, dst_dtype=DType.FP16))
    pb.store(0, xa, "y", (6, 40), DType.FP16)
    (y,), _ = Simulator.load(pb.build().to_bytes()).run([])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    want = (e / e.sum(axis=1, keepdims=True)).astype(np.float16)
    ulps = np.abs(y.astype(np.float16).view(np.int16).astype(int)
                  - want.view(np.int16).astype(int))
    assert ulps.max() <= 1


# ---- class-token Concat and Gather ------------------------------------------------------
def _cls_model(indices, axis=1):
    """Concat(constant [1, 1, 8], x [1, 5, 8]) on axis 1, Add, Gather(indices, axis)."""
    rng = np.random.default_rng(0)
    cls = helper.make_tensor("cls", TensorProto.FLOAT, [1, 1, 8],
                             rng.standard_normal(8).astype(F32))
    pos = helper.make_tensor("pos", TensorProto.FLOAT, [1, 6, 8],
                             rng.standard_normal(48).astype(F32))
    index = helper.make_tensor("index", TensorProto.INT64, np.shape(indices),
                               np.asarray(indices, np.int64).reshape(-1).tolist())
    nodes = [helper.make_node("Concat", ["cls", "x"], ["cat"], axis=1, name="Concat"),
             helper.make_node("Add", ["cat", "pos"], ["sum"], name="Add"),
             helper.make_node("Gather", ["sum", "index"], ["y"], axis=axis, name="Gather")]
    ref = np.take(np.zeros((1, 6, 8)), np.asarray(indices), axis=axis)
    graph = helper.make_graph(
        nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(ref.shape))],
        [cls, pos, index])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8)


def _fp16_emulation(model, x, indices, axis):
    def h(v):
        return np.asarray(v, F32).astype(np.float16).astype(F32)

    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    cat = np.concatenate([h(init["cls"]), h(x)], axis=1)
    if np.ndim(indices) == 1 and len(indices) == 1:
        # graph-gather-rows-early moved the one-row Gather above the Add (the position
        # table's row is a constant): the Add is the sub-graph's last layer with an f32
        # output, so it computes in fp32 with an fp32 constant and is not rounded
        return np.take(cat, indices, axis=axis) + np.take(init["pos"], indices, axis=axis)
    return np.take(h(cat + h(init["pos"])), np.asarray(indices), axis=axis)


@pytest.mark.parametrize("indices,axis", [([0], 1), (-1, 1), ([2, 3, 4], 1), ([1], 2)])
def test_class_token_concat_and_gather_run_on_the_accelerator(indices, axis, tmp_path):
    model = _cls_model(indices, axis)
    fn = _accelerator(model, require_compute=False)  # copies and an Add only
    kinds = [type(op) for op in fn.body.block.ops if isinstance(op, mrvl.MrvlLayerOp)]
    assert mrvl.ConcatOp in kinds and mrvl.SliceOp in kinds
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    rebuilt = json_to_function(nodes, consts)
    assert str(rebuilt) == str(fn)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 5, 8)).astype(F32)}
    manifest, result = _run(model, feeds, tmp_path, io_dtype="f32", require_compute=False)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    (ref,) = _ort(model, feeds)
    got = result.outputs["y"]
    assert got.shape == ref.shape
    # copies are exact: the documented fp16 semantics (fp16 constants and activations,
    # the Add in fp32 rounded once) give these bits
    assert np.array_equal(got, _fp16_emulation(model, feeds["x"], indices, axis))
    np.testing.assert_allclose(got, ref, atol=4e-3 * float(np.abs(ref).max()))


def test_gathers_that_are_not_slices_stay_on_the_cpu():
    for indices in ([0, 2], [3, 2]):
        module = compile_to_partitioned(_cls_model(indices), require_compute=False)
        reasons = [node["reason"] for node in offload_report(module)["cpu_nodes"]
                   if node["op"] == "graph.onnx"]
        assert reasons == ["Gather indices are not constant consecutive in-range integers"]
    # BERT's embedding lookup (a constant table) stays on the CPU
    module = compile_to_partitioned(_bert())
    (node,) = [n for n in offload_report(module)["cpu_nodes"] if "Gather" in n["node"]]
    assert "constant table" in node["reason"]


def test_a_forced_cpu_concat_with_a_constant_matches(tmp_path):
    model = _cls_model([0])
    fn = _accelerator(model, require_compute=False)
    concat = next(op for op in fn.body.block.ops if isinstance(op, mrvl.ConcatOp))
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 5, 8)).astype(F32)}
    manifest, result = _run(model, feeds, tmp_path, io_dtype="f32", require_compute=False,
                            cpu_layers=[concat.name_str])
    assert "cpu" in [step.kind for step in manifest.steps]
    (ref,) = _ort(model, feeds)
    np.testing.assert_allclose(result.outputs["y"], ref, atol=2e-3 * float(np.abs(ref).max()))


def test_vit_is_one_accelerator_step(tmp_path):
    model = _vit()
    report = offload_report(compile_to_partitioned(model))
    assert report["cpu_nodes"] == []
    assert report["crossings"]["count"] == 0
    feeds = {"pixel_values": np.random.default_rng(4).standard_normal(
        (1, 3, 32, 32)).astype(F32)}
    manifest, result = _run(model, feeds, tmp_path)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    (ref,) = _ort(model, feeds)
    (check,) = acceptance.check_outputs({"y": result.outputs["logits"]}, {"y": ref}, "fp16")
    assert check.passed, check.summary()


# ---- BERT attention mask ----------------------------------------------------------------
def _mask_feeds(valid: int, seq: int = 32):
    ids = np.random.default_rng(5).integers(0, 50, (1, seq)).astype(np.int64)
    return {"input_ids": ids,
            "attention_mask": (np.arange(seq) < valid).astype(np.int64)[None]}


def test_attention_mask_is_fused_into_the_score_matmul():
    fn = _accelerator(_bert(mask=True))
    matmuls = [op for op in fn.body.block.ops if isinstance(op, mrvl.MatMulOp)]
    scores = [op for op in matmuls if op.softmax_scale is not None]
    assert len(scores) == 1 and scores[0].mask is not None
    assert mrvl.tensor_shape(scores[0].mask) == (1, 1, 1, 32)
    assert not any(isinstance(op, mrvl.SoftmaxOp) for op in fn.body.block.ops)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert str(json_to_function(nodes, consts)) == str(fn)


@pytest.mark.parametrize("tiles", [1, 4])
def test_masked_bert_end_to_end(tiles, tmp_path):
    model = _bert(mask=True)
    feeds = _mask_feeds(valid=20)
    manifest, result = _run(model, feeds, tmp_path, tiles)
    assert [step.kind for step in manifest.steps].count("accelerator") == 1
    (ref,) = _ort(model, feeds)
    got = result.outputs["last_hidden_state"]
    (check,) = acceptance.check_outputs({"y": got}, {"y": ref}, "fp16")
    assert check.passed, check.summary()
    # the mask matters: attending to every position gives another result
    (unmasked,) = _ort(model, _mask_feeds(valid=32))
    assert float(np.abs(unmasked - ref).max()) > 100 * float(np.abs(got - ref).max())


def test_masked_attention_on_the_cpu_matches(tmp_path):
    """The fused layer forced to the CPU expands back to MatMul, Mul, Add mask, Softmax."""
    model = _bert(mask=True)
    fn = _accelerator(model)
    layer = next(op for op in fn.body.block.ops
                 if isinstance(op, mrvl.MatMulOp) and op.mask is not None)
    feeds = _mask_feeds(valid=11)
    manifest, result = _run(model, feeds, tmp_path, cpu_layers=[layer.name_str])
    assert [step.kind for step in manifest.steps].count("cpu") >= 2
    (ref,) = _ort(model, feeds)
    (check,) = acceptance.check_outputs({"y": result.outputs["last_hidden_state"]},
                                        {"y": ref}, "fp16")
    assert check.passed, check.summary()


def test_masked_bert_int8(tmp_path):
    model = _bert(mask=True)
    feeds = _mask_feeds(valid=24)
    _, result = _run(model, feeds, tmp_path, quantize="int8")
    (ref,) = _ort(model, feeds)
    lsb = float(np.abs(ref).max()) / 127
    assert float(np.abs(result.outputs["last_hidden_state"] - ref).max()) <= 8 * lsb


def test_int8_concat_with_a_constant_is_the_documented_semantics():
    """The class token in int8: quantised in the Concat output's step and zero point and
    copied (sim/reference_int8.py), bit for bit at 1 and 2 tiles."""
    from backend_helpers import add, assert_int8_emulated, layer_module, rng_inputs
    from xdsl.dialects.builtin import TensorType, f32

    from mrvl.driver.calibration import activation_ranges

    def build(block, args, const):
        cls = const(np.linspace(-0.3, 0.4, 16, dtype=F32).reshape(1, 1, 16))
        cat = add(block, mrvl.ConcatOp([cls, args[0]], layer_name="tvmgen_mrvl_main_1",
                                       axis=1))
        rows = add(block, mrvl.ReshapeOp(cat, TensorType(f32, [7, 16]),
                                         layer_name="tvmgen_mrvl_main_2"))
        w = np.random.default_rng(9).standard_normal((8, 16)).astype(F32) * 0.3
        return add(block, mrvl.FCOp(rows, const(w), None, layer_name="tvmgen_mrvl_main_3"))

    for tiles in (1, 2):
        _, fn = layer_module([(1, 6, 16)], build)
        inputs = rng_inputs(fn)
        sub = compile_function(fn, machine=Machine(tiles=tiles), quantize="int8",
                               ranges=activation_ranges(fn, [rng_inputs(fn, 1)]))
        assert_int8_emulated(fn, sub.data, inputs)
