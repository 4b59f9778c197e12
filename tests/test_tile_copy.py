"""`mlip.tile_copy`: emission of the TILE_COPY instruction, checked on the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.parser import Parser

from mrvl import mlip_isa as isa
from mrvl.dialects.mlip import Mlip, ModelOp
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.sim.simulator import Simulator

LIT_MODEL = Path(__file__).parent / "filecheck" / "mlip" / "mlip_tile_copy.mlir"


def _model() -> ModelOp:
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Mlip)
    module = Parser(ctx, LIT_MODEL.read_text()).parse_module()
    return next(op for op in module.ops if isinstance(op, ModelOp))


def test_tile_copy_fields_are_emitted():
    binary = to_model_binary(_model())
    copies = [insn for insn in binary.stream(int(isa.Section.MAIN), 0, isa.Queue.DMA_OUT)]
    assert [insn.opcode for insn in copies] == [int(isa.Opcode.TILE_COPY)]
    fields = dict(zip(isa.TCOPY_FIELDS, copies[0].args, strict=False))
    assert fields["src_addr"] == 0 and fields["dst_addr"] == 16384 + 64
    assert fields["dst_tile_mask"] == 2
    assert (fields["dim2"], fields["dim3"], fields["src_stride2"]) == (4, 16, 16)
    assert copies[0].flags == int(isa.Flag.POP_PREV) | int(isa.Flag.PUSH_PREV)


def test_tile_copy_moves_data_between_tiles():
    data = to_model_binary(_model()).to_bytes()
    x = (np.arange(64, dtype=np.float32).reshape(1, 2, 2, 16) - 20.5).astype(np.float16)
    outputs, report = Simulator.load(data).run({"x": x})
    assert np.array_equal(outputs[0], x.astype(np.float32))
    assert report["tile_copy_bytes"] == 128
    assert report["dma_in_bytes"] == 128 and report["dma_out_bytes"] == 128
