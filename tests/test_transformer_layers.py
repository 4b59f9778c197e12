"""Transformer layers through every stage (15b): the SOFTMAX / LAYERNORM instructions and the
GELU activations against a numpy model of docs/isa.md, the graph patterns (Linear on [B, S, D],
batched MatMul with folded transposes, GELU erf / tanh, LayerNorm single op and decomposed),
the JSON pair, and ViT-tiny / BERT-tiny end to end (offload share, fp16 error, tile splits)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.errors import BinaryFormatError
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.lowering.offload_report import offload_report
from mrvl.mlip_binary import Instruction
from mrvl.mlip_isa import Act, DType, Opcode
from mrvl.models.bert_tiny import bert_tiny
from mrvl.models.vit_tiny import vit_tiny
from mrvl.sim import acceptance
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.runtime import CompiledModel
from mrvl.sim.simulator import Simulator

RNG = np.random.default_rng(15)
F16, F32 = np.float16, np.float32


# ---- the instructions against a numpy model of docs/isa.md ------------------------------
def _seq_sum(v: np.ndarray) -> np.float32:
    """Sequential fp32 sum (the documented order)."""
    return np.cumsum(v.astype(F32), dtype=F32)[-1]


def _run_row_insn(opcode: Opcode, x: np.ndarray, **kw) -> np.ndarray:
    rows, cols = x.shape
    pb = ProgramBuilder()
    xa = pb.const(0, x.astype(F16))
    extra = {}
    if opcode == Opcode.LAYERNORM:
        extra = {"gamma_addr": pb.const(0, kw.pop("gamma").astype(F32)),
                 "beta_addr": pb.const(0, kw.pop("beta").astype(F32))}
    oa = pb.alloc(0, rows * cols * 2)
    pb.compute(0, Instruction.make(
        opcode, in_addr=xa, out_addr=oa, rows=rows, cols=cols, in_row_stride=cols,
        out_row_stride=cols, src_dtype=DType.FP16, dst_dtype=DType.FP16, **extra, **kw))
    pb.store(0, oa, "y", (rows, cols), DType.FP16)
    (y,), _ = Simulator.load(pb.build().to_bytes()).run([])
    return y.astype(F16)


def test_softmax_instruction_matches_documented_semantics():
    x = (RNG.standard_normal((7, 37)) * 4).astype(F16)
    y = _run_row_insn(Opcode.SOFTMAX, x)
    xf = x.astype(F32)
    want = np.empty_like(xf)
    for r in range(xf.shape[0]):
        e = np.exp(xf[r] - xf[r].max()).astype(F32)
        want[r] = e / _seq_sum(e)
    # expf of the C library vs numpy's: at most 1 fp16 ulp after rounding
    ulps = np.abs(y.view(np.int16).astype(int) - want.astype(F16).view(np.int16).astype(int))
    assert ulps.max() <= 1
    np.testing.assert_allclose(y.astype(F32).sum(axis=1), 1.0, atol=2e-2)


def test_layernorm_instruction_is_bit_exact():
    x = (RNG.standard_normal((5, 48)) * 3 + 1).astype(F16)
    gamma = RNG.uniform(0.5, 1.5, 48).astype(F32)
    beta = RNG.standard_normal(48).astype(F32)
    eps = 1e-5
    y = _run_row_insn(Opcode.LAYERNORM, x, gamma=gamma, beta=beta, alpha=eps)
    want = np.empty((5, 48), F32)
    for r in range(5):
        v = x[r].astype(F32)
        mean = _seq_sum(v) / F32(48)
        d = (v - mean).astype(F32)
        var = _seq_sum((d * d).astype(F32)) / F32(48)
        rstd = F32(1.0) / np.sqrt(F32(var + F32(eps)), dtype=F32)
        want[r] = ((d * rstd).astype(F32) * gamma).astype(F32) + beta
    assert np.array_equal(y, want.astype(F16))


@pytest.mark.parametrize("act", [Act.GELU_ERF, Act.GELU_TANH])
def test_gelu_activation(act):
    x = (RNG.standard_normal((4, 64)) * 3).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, x.size * 2)
    pb.compute(0, Instruction.make(
        Opcode.ACT, in_addr=xa, out_addr=oa, rows=4, cols=64, in_row_stride=64,
        out_row_stride=64, act=act, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (4, 64), DType.FP16)
    (y,), _ = Simulator.load(pb.build().to_bytes()).run([])
    # the documented fp32 formula, erf / tanh correctly rounded to fp32
    v = x.astype(F32)
    if act == Act.GELU_ERF:
        inner = v * F32(0.70710678118654752)
        f = np.vectorize(math.erf)(inner.astype(np.float64)).astype(F32)
    else:
        inner = F32(0.79788456080286536) * (v + F32(0.044715) * (v * v * v))
        f = np.tanh(inner.astype(np.float64)).astype(F32)
    want = F32(0.5) * v * (F32(1.0) + f)
    ulps = np.abs(y.astype(F16).view(np.int16).astype(int)
                  - want.astype(F16).view(np.int16).astype(int))
    assert ulps.max() <= 1


def test_row_instructions_reject_integer_dtypes_and_unknown_values():
    pb = ProgramBuilder()
    xa = pb.const(0, np.zeros((2, 16), np.int8))
    oa = pb.alloc(0, 32)
    pb.compute(0, Instruction.make(
        Opcode.SOFTMAX, in_addr=xa, out_addr=oa, rows=2, cols=16, in_row_stride=16,
        out_row_stride=16, src_dtype=DType.INT8, dst_dtype=DType.INT8))
    pb.store(0, oa, "y", (2, 16), DType.INT8)
    with pytest.raises(BinaryFormatError, match="SOFTMAX: needs fp16/fp32 dtypes"):
        Simulator.load(pb.build().to_bytes())
    pb = ProgramBuilder()
    xa = pb.const(0, np.zeros((2, 16), F16))
    oa = pb.alloc(0, 64)
    pb.compute(0, Instruction.make(
        Opcode.ACT, in_addr=xa, out_addr=oa, rows=2, cols=16, in_row_stride=16,
        out_row_stride=16, act=8, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (2, 16), DType.FP16)
    with pytest.raises(BinaryFormatError, match="unknown activation 8"):
        Simulator.load(pb.build().to_bytes())


# ---- patterns ----------------------------------------------------------------------------
def _layers(module) -> list[mrvl.MrvlLayerOp]:
    return [op for fn in subgraph_functions(module) for op in fn.body.block.ops
            if isinstance(op, mrvl.MrvlLayerOp)]


@pytest.mark.parametrize("gelu", ["none", "tanh"])
@pytest.mark.parametrize("decomposed, opset", [(False, 17), (True, 13), (True, 18)])
def test_encoder_patterns(gelu, decomposed, opset):
    model = bert_tiny(seq=8, dim=32, heads=2, ffn=64, layers=1, vocab=50, opset=opset,
                      decomposed_ln=decomposed, gelu_approximate=gelu)
    module = compile_to_partitioned(model)
    report = offload_report(module)
    # only the embedding Gather stays on the CPU
    assert [n["op"] for n in report["cpu_nodes"]] == ["graph.onnx"]
    assert report["accelerator_mac_share"] == 1.0
    layers = _layers(module)
    kinds = [op.LAYER_NAME for op in layers]
    # the scale and the softmax are the score MatMul's epilogue
    assert kinds.count("LayerNorm") == 3 and "Softmax" not in kinds and "Mul2D" not in kinds
    assert kinds.count("MatMul") == 2 and kinds.count("FC") == 6
    assert "Activation" not in kinds
    fcs = [op for op in layers if isinstance(op, mrvl.FCOp)]
    want = "gelu" if gelu == "none" else "gelu_tanh"
    assert [op.activation_str() for op in fcs].count(want) == 1
    scores, context = [op for op in layers if isinstance(op, mrvl.MatMulOp)]
    # K's Transpose [0, 2, 3, 1] and Q's / V's [0, 2, 1, 3] are read through the operands
    assert list(scores.a_perm.get_values()) == [0, 2, 1, 3]  # type: ignore[union-attr]
    assert list(scores.b_perm.get_values()) == [0, 2, 3, 1]  # type: ignore[union-attr]
    assert scores.softmax_scale is not None
    assert scores.softmax_scale.value.data == pytest.approx(1 / math.sqrt(16))
    assert context.softmax_scale is None and context.a_perm is None
    assert list(context.b_perm.get_values()) == [0, 2, 1, 3]  # type: ignore[union-attr]
    assert kinds.count("transpose") == 1  # the head merge before the output Linear


def test_not_lowered_cases_name_their_reason():
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1, name="sm"),
             helper.make_node("MatMul", ["x", "y"], ["m"], name="mm")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 3])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 4, 6]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = offload_report(compile_to_partitioned(model))
    reasons = {n["node"]: n["reason"] for n in report["cpu_nodes"]}
    assert reasons["sm"] == "softmax axis 1 is not the last axis"
    assert reasons["mm"] == "matmul batch dims [1] and [2] differ"


def test_json_pair_round_trip():
    module = compile_to_partitioned(vit_tiny(image_size=32, depth=1, dim=48, heads=2, mlp=96,
                                             classes=10))
    kinds = set()
    for fn in subgraph_functions(module):
        nodes, consts = subgraph_to_json(fn)
        assert check_json_pair(nodes, consts) == []
        again = subgraph_to_json(json_to_function(nodes, consts))
        assert again == (nodes, consts)
        kinds |= {n["attrs"]["layer_name"][0] for n in nodes["nodes"]}
    assert {"MatMul", "LayerNorm", "FC", "Conv2D"} <= kinds


# ---- end to end ----------------------------------------------------------------------------
def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[vi.name] = rng.integers(0, 50, shape).astype(np.int64)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(F32)
    return feeds


def _run(model, tmp_path, tiles, quantize="fp16"):
    path = tmp_path / f"m{tiles}{quantize}.onnx"
    onnx.save(model, path)
    feeds = _feeds(model)
    options = {}
    if quantize == "int8":
        np.savez(tmp_path / "cal.npz", **feeds)
        options["calibration"] = str(tmp_path / "cal.npz")
    compile_model(path, tmp_path / f"b{tiles}{quantize}", num_tiles=tiles, quantize=quantize,
                  **options)
    with CompiledModel.load(tmp_path / f"b{tiles}{quantize}") as compiled:
        got = compiled.run(feeds).outputs
    (ref,) = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    return next(iter(got.values())), ref


MODELS = {
    "vit": lambda: vit_tiny(image_size=32, depth=1, dim=64, heads=2, mlp=128, classes=100),
    "bert": lambda: bert_tiny(seq=32, dim=64, heads=2, ffn=128, layers=1, vocab=50),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_end_to_end_fp16(name, tmp_path):
    model = MODELS[name]()
    assert offload_report(compile_to_partitioned(model))["accelerator_mac_share"] >= 0.95
    one, ref = _run(model, tmp_path, 1)
    four, _ = _run(model, tmp_path, 4)
    # no split changes any reduction order (BERT's FCs over 32 rows take a 2 x 2 grid)
    assert np.array_equal(one, four)
    # the residual stream in fp32 (precision policy): Marvell's 3 % rule holds
    (check,) = acceptance.check_outputs({"y": one}, {"y": ref}, "fp16")
    assert check.passed, check.summary()


def test_end_to_end_int8_bert(tmp_path):
    got, ref = _run(MODELS["bert"](), tmp_path, 2, "int8")
    lsb = float(np.abs(ref).max()) / 127
    assert float(np.abs(got - ref).max()) <= 8 * lsb
