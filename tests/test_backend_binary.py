"""Model binaries from the backend: write, read, write gives identical bytes; the IR round
trip (mlip.model printed and parsed at every stage) gives the identical binary; token
edges become the binary's flags; corrupt and truncated
binaries are rejected with a clear message; the static report is consistent."""

from __future__ import annotations

import io

import numpy as np
import pytest
from backend_helpers import add, layer_module
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from mrvl.dialects import mrvl
from mrvl.dialects.mlip import ConvOp, Mlip, ModelOp, model_asm
from mrvl.errors import BinaryFormatError
from mrvl.driver.calibration import activation_ranges
from mrvl.lowering.backend import compile_function
from mrvl.lowering.backend_report import program_report
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.lowering.mrvl_quantize import quantize_function
from mrvl.lowering.mrvl_tile_split import split_function
from mrvl.mlip_binary import ModelBinary
from mrvl.mlip_isa import DType
from mrvl.machine import Machine


def _module():
    rng = np.random.default_rng(3)

    def build(block, args, const):
        y = add(block, mrvl.Conv2DOp(args[0], const(rng.standard_normal((8, 3, 3, 4))),
                                     const(rng.standard_normal(8)),
                                     layer_name="tvmgen_mrvl_main_1", pads=(1, 1, 1, 1),
                                     activation="relu"))
        y = add(block, mrvl.Maxpool2DOp(y, layer_name="tvmgen_mrvl_main_2",
                                        kernel_shape=(2, 2), strides=(2, 2)))
        f = add(block, mrvl.BatchFlattenOp(y, layer_name="tvmgen_mrvl_main_3"))
        return add(block, mrvl.FCOp(f, const(rng.standard_normal((10, 128))), None,
                                    layer_name="tvmgen_mrvl_main_4"))

    return layer_module([(1, 8, 8, 4)], build)


@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_write_read_write_is_identical(mode):
    _, fn = _module()
    ranges = activation_ranges(fn, None) if mode == "int8" else None  # a seeded random input
    sub = compile_function(fn, machine=Machine(tiles=4), quantize=mode, ranges=ranges)
    again = ModelBinary.from_bytes(sub.data).to_bytes()
    assert again == sub.data
    binary = ModelBinary.from_bytes(sub.data)
    assert [d.name for d in binary.inputs] == ["tvmgen_mrvl_main_0_i0"]
    assert binary.tile_end == 3 and binary.ocm_end <= 1 << 20
    assert [layer.name for layer in binary.layers] == [
        "tvmgen_mrvl_main_1", "tvmgen_mrvl_main_2", "tvmgen_mrvl_main_4"]
    assert binary.inputs[0].quantize == (mode == "int8")
    # int8: the last FC writes fp32 real values (mrvl.real_output), not int8 steps
    assert not binary.outputs[0].quantize
    assert binary.outputs[0].dtype == (DType.FP32 if mode == "int8" else DType.FP16)


def _print(op) -> str:
    text = io.StringIO()
    Printer(stream=text).print_op(op)
    return text.getvalue()


def _parse(text: str) -> ModelOp:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Mlip)
    module = Parser(ctx, text).parse_module()
    module.verify()
    model = module.ops.first
    assert isinstance(model, ModelOp)
    return model


def test_ir_round_trip_gives_the_same_binary():
    """Every stage prints, parses back to the same text, and the parsed model goes on to
    the same binary as the one kept in memory."""
    _, fn = _module()
    quantize_function(fn, "fp16")
    split_function(fn, Machine(tiles=2))
    model = convert_function(fn)
    ModuleOp([model])
    stages = [lambda m: None, allocate_ocm, schedule]
    parsed = model
    for stage in stages:
        stage(model)
        if parsed is not model:
            stage(parsed)
        text = _print(model)
        parsed = _parse(text)
        assert _print(parsed) == text
    assert to_model_binary(parsed).to_bytes() == to_model_binary(model).to_bytes()
    listing = model_asm(model)
    convs = sum(1 for op in model.instructions() if isinstance(op, ConvOp))
    assert convs > 0 and listing.count("\n  conv ") == convs


def test_token_edges_become_the_flags():
    """After scheduling, each push has one pop, and the binary's flags follow the edges."""
    _, fn = _module()
    sub = compile_function(fn, machine=Machine(tiles=2))
    binary = sub.binary
    pushes = pops = 0
    for op in sub.model.instructions():
        pop_prev, pop_next, push_prev, push_next = op.tokens()
        for token in (push_prev, push_next):
            if token is not None:
                pushes += 1
                assert len(list(token.uses)) == 1
        pops += (pop_prev is not None) + (pop_next is not None)
    flags = [insn.flags for insns in binary.streams.values() for insn in insns]
    assert pushes == pops > 0
    assert pops == sum(bin(f & 3).count("1") for f in flags)
    assert pushes == sum(bin(f & 12).count("1") for f in flags)


def test_corrupt_and_truncated_binaries_are_rejected():
    _, fn = _module()
    data = compile_function(fn).data
    with pytest.raises(BinaryFormatError, match="truncated"):
        ModelBinary.from_bytes(data[:-7])
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    with pytest.raises(BinaryFormatError, match="CRC"):
        ModelBinary.from_bytes(bytes(flipped))
    with pytest.raises(BinaryFormatError, match="magic"):
        ModelBinary.from_bytes(b"XXXX" + data[4:])


def test_static_report_adds_up():
    _, fn = _module()
    sub = compile_function(fn, machine=Machine(tiles=2))
    report = program_report(sub.model)
    assert report["macs"] == 8 * 8 * 8 * 9 * 4 + 10 * 128
    assert report["dma_in_bytes"] == sum(r["dma_in_bytes"] for r in report["layers"])
    assert report["dma_out_bytes"] == sum(r["dma_out_bytes"] for r in report["layers"])
    # the FC output (10 fp16 values) is the only store of its layer
    assert report["layers"][-1]["dma_out_bytes"] == 20
    assert 0 < report["ocm_percent"] <= 100
    for row in report["layers"]:
        assert row["traffic_roofline_cycles"] >= (row["dma_in_bytes"] + row["dma_out_bytes"]) // 64


def test_every_mrvl_layer_kind_has_a_binary_layer_kind():
    """The binary's layer table names each layer's kind; no mrvl layer falls to 'other' (0)."""
    from mrvl.dialects.mrvl import LAYER_OPS
    from mrvl.lowering.mlip_emit import LAYER_KINDS

    missing = sorted(op.LAYER_NAME for op in LAYER_OPS if op.LAYER_NAME not in LAYER_KINDS)
    assert missing == []
    assert len(set(LAYER_KINDS.values())) == len(LAYER_KINDS) and 0 not in LAYER_KINDS.values()
