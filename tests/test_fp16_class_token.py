"""Issue 13 (fp16 no worse than onnxruntime-fp16): ViT-tiny's class-token path.

- graph-gather-rows-early (lowering/graph_gather_rows_early.py) runs the last encoder block
  after its attention, the final LayerNorm and the head on the class token's row only,
  with the values of the full computation;
- fp16 precision "auto" (the default; lowering/mrvl_extended_precision.py) stacks the
  weights' low half onto the FCs (K <= 512) of sub-graphs that read one token's row, and
  leaves other transformer sub-graphs (BERT) as "storage" builds them;
- the pin: ViT-tiny 224 (random weights) in the default fp16 build against onnxruntime
  fp32, on the three inputs where the storage build was worse than onnxruntime-fp16.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from xdsl.context import Context

from mrvl.dialects import graph, mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned, import_model
from mrvl.lowering.backend import compile_function
from mrvl.lowering.graph_gather_rows_early import GraphGatherRowsEarlyPass
from mrvl.lowering.graph_pipeline import graph_cleanup_passes
from mrvl.lowering.mrvl_extended_precision import (
    MrvlExtendedPrecisionPass,
    reads_one_token,
    targeted_fcs,
)
from mrvl.machine import Machine
from mrvl.models.bert_tiny import bert_tiny
from mrvl.models.vit_tiny import vit_tiny
from mrvl.sim import acceptance
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel


def _small_vit():
    """Two blocks, D 64, MLP 1024 (so fc2 has K 1024 > MAX_STACKED_K)."""
    return vit_tiny(image_size=32, depth=2, dim=64, heads=2, mlp=1024, classes=100)


def test_gather_rows_early_keeps_the_values_and_shrinks_the_last_block():
    """Without and with the pass, the fp32 reference executor gives the same logits; with
    it the last block's output projection and MLP (3 MatMuls) and the final LayerNorm
    work on one row."""
    model = _small_vit()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    modules = []
    for keep in (False, True):
        module = import_model(model)
        for p in graph_cleanup_passes():
            if keep or not isinstance(p, GraphGatherRowsEarlyPass):
                p.apply(Context(), module)
        modules.append(module)
    (plain,), (early,) = (run_function(m, [x]) for m in modules)
    scale = float(np.abs(plain).max())
    np.testing.assert_allclose(early, plain, rtol=0, atol=1e-5 * scale)

    def one_row(module, kind):
        return [op for op in module.walk() if isinstance(op, kind)
                and op.results[0].type.get_shape()[1] == 1]

    assert one_row(modules[0], graph.MatMulOp) == []
    assert len(one_row(modules[1], graph.MatMulOp)) == 3
    norms = [op for op in one_row(modules[1], graph.OnnxOp)
             if op.op_type.data == "LayerNormalization"]
    assert len(norms) == 2  # the last block's second LayerNorm and the final one


def test_auto_precision_stacks_only_class_token_subgraphs():
    """ViT: every FC with K <= 512 (Q, K, V, output projection and fc1 of each block, the
    head: 11; not fc2, K 1024) becomes one FC over [x, x] and [Wh, Wl]; BERT (no one-row
    read): the default build's binary is byte-identical to the storage build's."""
    (fn,) = subgraph_functions(compile_to_partitioned(_small_vit()), "accelerator")
    assert reads_one_token(fn)
    fcs = targeted_fcs(fn)
    assert len(fcs) == 11
    widths = {op.layer_name.data: mrvl.tensor_shape(op.input)[-1] for op in fcs}
    module = compile_to_partitioned(_small_vit())
    MrvlExtendedPrecisionPass(mode="auto").apply(Context(), module)
    (fn,) = subgraph_functions(module, "accelerator")
    stacked = {op.layer_name.data: mrvl.tensor_shape(op.input)[-1]
               for op in fn.body.block.ops if isinstance(op, mrvl.FCOp)}
    assert {name: stacked[name] for name in widths} == {n: 2 * k for n, k in widths.items()}
    concats = [op for op in fn.body.block.ops
               if isinstance(op, mrvl.ConcatOp) and op.layer_name.data.endswith("_stack")]
    assert len(concats) == 2 * 3 + 1  # Q / K / V share one per block; proj, fc1 of each; head
    bert = bert_tiny(seq=32, dim=64, heads=2, ffn=128, layers=1, vocab=50)
    binaries = []
    for precision in ("auto", "storage"):
        (fn,) = subgraph_functions(compile_to_partitioned(bert), "accelerator")
        assert not reads_one_token(fn)
        binaries.append(compile_function(fn, machine=Machine(tiles=2),
                                         precision=precision).data)
    assert binaries[0] == binaries[1]


PIN_SEEDS = (2, 3, 4)
"""The inputs (`default_rng(seed).standard_normal`) on which the storage build's worst
element was worse than onnxruntime-fp16's."""


@pytest.fixture(scope="module")
def vit_default_runs(tmp_path_factory):
    model = vit_tiny()
    path = tmp_path_factory.mktemp("vit") / "vit.onnx"
    onnx.save(model, path)
    manifest = compile_model(path, path.parent / "build", num_tiles=8)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    runs = []
    with CompiledModel(manifest) as compiled:
        for seed in PIN_SEEDS:
            x = np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(
                np.float32)
            ref = session.run(None, {"pixel_values": x})[0]
            out = compiled.run({"pixel_values": x.astype(manifest.inputs[0].dtype)})
            runs.append((x, ref, np.asarray(out.outputs["logits"], np.float32)))
    return model, runs


def _errors(got, ref) -> tuple[float, float]:
    """(max rel err over the judged elements of Marvell's fp16 rule, RMS error / max|ref|)."""
    check = acceptance.check_output("logits", got, ref, "fp16")
    rms = float(np.sqrt(np.mean((got.astype(np.float64) - ref) ** 2)))
    return check.max_rel_err, rms / check.max_ref


def test_vit_fp16_default_error_is_pinned(vit_default_runs):
    """Max rel err per input <= 3.6 % (measured 3.09 / 2.65 / 2.32 %; the storage build
    5.50 / 4.15 / 4.88 %, onnxruntime-fp16 4.98 / 3.59 / 4.28 %) and mean RMS error <=
    2.3e-4 of max|ref| (measured 2.02e-4; storage 2.48e-4, onnxruntime-fp16 3.02e-4).

    The tolerance holds on any x86-64 machine: the weights and inputs come from numpy's
    seeded generators, the compiler's arithmetic on them is elementwise numpy, and the
    simulator is C built with -ffp-contract=off, so our logits are the same bits on AVX2
    and AVX-512 machines; only onnxruntime's fp32 reference changes with the GEMM kernel
    (summation order), by about 1e-6 of max|ref|, which moves a max rel err by under
    0.01 % (judged elements are >= 1 % of max|ref|) and the RMS by under 1e-6: far inside
    the 0.5 % and 0.28e-4 margins."""
    _, runs = vit_default_runs
    errors = [_errors(got, ref) for _, ref, got in runs]
    for worst, _ in errors:
        assert worst <= 0.036
    assert np.mean([rms for _, rms in errors]) <= 2.3e-4


def test_vit_fp16_default_no_worse_than_onnxruntime_fp16(vit_default_runs):
    """The anchor itself (needs the bench extra, onnxconverter-common): on each pinned
    input our RMS error is below onnxruntime-fp16's (measured 1.77 / 1.89 / 2.41e-4 vs
    3.19 / 2.58 / 3.28e-4), and so is our worst element over the three (3.09 % vs 4.98 %).
    onnxruntime's fp16 kernels depend on the CPU's features, so its per-input worst element
    (a tail of ~20 logits near the judged cut) is not compared one by one."""
    float16 = pytest.importorskip("onnxconverter_common.float16")
    model, runs = vit_default_runs
    with warnings.catch_warnings():  # it warns for every weight below fp16's normal range
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    session = ort.InferenceSession(converted.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    ours, theirs = [], []
    for x, ref, got in runs:
        anchor = session.run(None, {"pixel_values": x})[0]
        ours.append(_errors(got, ref))
        theirs.append(_errors(anchor, ref))
    for (_, our_rms), (_, their_rms) in zip(ours, theirs, strict=True):
        assert our_rms < their_rms
    assert max(worst for worst, _ in ours) < max(worst for worst, _ in theirs)
