"""Concat written in place (`mlip_residency.concat_in_place`), direct writes into resident
bands, the DRAM diagnostic (`dram_report`) and the DenseNet-style model: outputs equal the
DRAM schedule bit for bit, and a Concat whose inputs are resident moves no data."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.dialects.mlip import DmaLoadOp, DmaStoreOp, ModelOp, TileCopyOp
from mrvl.dialects.mrvl import subgraph_functions, tensor_shape
from mrvl.driver.calibration import activation_ranges
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.lowering.backend import backend_passes, compile_function
from mrvl.lowering.mlip_residency import dram_report
from mrvl.machine import Machine
from mrvl.models import count_parameters, example_inputs
from mrvl.models._graph_builder import GraphBuilder, tensor_info
from mrvl.models.densenet import densenet121
from mrvl.sim.simulator import Simulator


def _concat_model() -> onnx.ModelProto:
    """conv a -> conv b -> Concat(a, b) -> 1x1 conv: both Concat inputs are activations."""
    g = GraphBuilder(0, 17)
    a = g.node("Relu", [g.conv("a", "x", 16, 32, 3)], "a_relu")
    b = g.node("Relu", [g.conv("b", a, 32, 32, 3)], "b_relu")
    y = g.node("Concat", [a, b], "cat", axis=1)
    z = g.conv("c", y, 64, 32, 1)
    return g.make_model("concat", [tensor_info("x", [1, 16, 28, 28])],
                        [tensor_info(z, [1, 32, 28, 28])])


@functools.cache
def _partitioned(name: str):
    if name == "concat":
        return compile_to_partitioned(_concat_model())
    return compile_to_partitioned(densenet121(batch=1, block_layers=(2, 2)))


def _feeds(fn) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(tensor_shape(a)).astype(np.float32) for a in fn.body.block.args]


def _run(name: str, index: int, tiles: int, resident: bool, mode: str = "fp16"):
    fn = subgraph_functions(_partitioned(name).clone(), "accelerator")[index]
    ranges = None
    if mode == "int8":
        ranges = activation_ranges(fn, [_feeds(fn)])
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize=mode, ranges=ranges,
                           resident=resident)
    with Simulator.load(sub.data) as sim:  # the dependency checker runs by default
        outputs, report = sim.run(_feeds(fn))
    return sub, outputs, report


def _dram_names(model: ModelOp) -> set[str]:
    return {op.properties["dram"].root_reference.data  # type: ignore[union-attr]
            for op in model.instructions() if isinstance(op, (DmaLoadOp, DmaStoreOp))}


def _concat_layer(model: ModelOp):
    return next(layer for layer in model.layers() if layer.kind.data == "Concat")


@pytest.mark.parametrize("tiles", [1, 2, 8])
def test_resident_concat_moves_no_data(tiles):
    off_sub, off, off_report = _run("concat", 0, tiles, resident=False)
    sub, on, report = _run("concat", 0, tiles, resident=True)
    for a, b in zip(off, on, strict=True):
        assert np.array_equal(a, b)
    assert report["cycles"] <= off_report["cycles"]
    concat = _concat_layer(sub.model).index.value.data
    # the DRAM schedule copies both inputs; in place, no instruction belongs to the Concat
    assert any(op.properties["layer"].value.data == concat  # type: ignore[union-attr]
               for op in off_sub.model.instructions())
    assert not any(op.properties["layer"].value.data == concat  # type: ignore[union-attr]
                   for op in sub.model.instructions())
    # neither the Concat's inputs nor its output go through DRAM any more
    concat_tensors = {name for name in _dram_names(off_sub.model)
                      if name.endswith(("_1_y", "_2_y", "_3_y"))}
    assert len(concat_tensors) == 3 and not concat_tensors & _dram_names(sub.model)
    if tiles > 1:
        assert any(isinstance(op, TileCopyOp) for op in sub.model.instructions())


def test_int8_concat_outputs_are_unchanged():
    """int8 Concat requantises its inputs: only exact copies are made in place."""
    _, off, _ = _run("concat", 0, 2, resident=False, mode="int8")
    _, on, _ = _run("concat", 0, 2, resident=True, mode="int8")
    for a, b in zip(off, on, strict=True):
        assert np.array_equal(a, b)


def test_dram_report_says_why():
    annotate, lower = backend_passes(machine=Machine(tiles=8))
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp

    fn = subgraph_functions(_partitioned("concat").clone(), "accelerator")[0]
    holder = ModuleOp([fn.clone()])
    for p in annotate + lower[:2]:  # convert-mrvl-to-mlip, mlip-residency
        p.apply(Context(), holder)
    model = next(op for op in holder.ops if isinstance(op, ModelOp))
    report = {t.name: t for t in dram_report(model)}
    regions = {t.region for t in report.values()}
    assert regions == {"input", "output", "weights", "scratch"}
    scratch = [t for t in report.values() if t.region == "scratch"]
    # the conv output before the NCHW layout transform: a copy reads channel ranges of it
    assert len(scratch) == 1 and "channel range" in scratch[0].reason
    assert scratch[0].in_bytes > 0 and scratch[0].out_bytes == scratch[0].in_bytes
    assert all(t.reason == "weights" for t in report.values() if t.region == "weights")


def test_densenet_model():
    model = densenet121(batch=1)
    onnx.checker.check_model(model, full_check=True)
    assert count_parameters(model) == 7_978_856  # torchvision's densenet121
    assert densenet121(batch=1).SerializeToString() == model.SerializeToString()
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert len(concats) == 6 + 12 + 24 + 16
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 1000]
    small = densenet121(batch=1, block_layers=(2, 2))
    session = ort.InferenceSession(small.SerializeToString())
    (logits,) = session.run(None, example_inputs(small))
    assert logits.shape == (1, 1000) and np.all(np.isfinite(logits))


def test_densenet_bit_identical_and_concat_in_place():
    """The shallow DenseNet-style model is one accelerator sub-graph (its pre-activation
    BatchNorms are per-channel affine layers): resident, its outputs equal the DRAM
    schedule's bit for bit, it is no slower, and its Concats move less data (the dense
    layers' conv3x3 store straight into their slice of the Concat's output)."""
    assert len(subgraph_functions(_partitioned("densenet").clone(), "accelerator")) == 1
    off_sub, off, off_report = _run("densenet", 0, 8, resident=False)
    sub, on, report = _run("densenet", 0, 8, resident=True)
    for a, b in zip(off, on, strict=True):
        assert np.array_equal(a, b)
    assert report["cycles"] <= off_report["cycles"]
    assert report["dma_out_bytes"] <= off_report["dma_out_bytes"]

    def concat_blocks(model):
        return [layer.blocks.value.data for layer in model.layers() if layer.kind.data == "Concat"]

    before, after = concat_blocks(off_sub.model), concat_blocks(sub.model)
    assert len(before) == len(after) == 4  # two dense layers in each of the two blocks
    assert sum(after) < sum(before)
