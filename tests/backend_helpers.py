"""Helpers for the backend tests: one-layer accelerator functions, compile + simulate, and
static checks of compiled programs (OCM capacity, DMA footprints)."""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Region

from mrvl.dialects.graph import ConstantOp
from mrvl.lowering.backend import compile_function
from mrvl.driver.calibration import activation_ranges
from mrvl.machine import machine_of
from mrvl.mlip_plan import Program, Ref
from mrvl import mlip_isa as isa
from mrvl.sim.acceptance import check_output
from mrvl.mlip_isa import DType, Opcode
from mrvl.sim.reference import run_function
from mrvl.sim import reference_int8
from mrvl.sim.simulator import Simulator, to_device


def layer_module(arg_shapes, build) -> tuple[ModuleOp, func.FuncOp]:
    """A module holding `@tvmgen_mrvl_main_0(args) -> build(...)`. `build(block, args,
    const)` adds layer ops to `block` (`const(arr)` adds a graph.constant and returns its
    value) and returns the value(s) to return."""
    block = Block(arg_types=[TensorType(f32, list(s)) for s in arg_shapes])

    def const(arr):
        op = ConstantOp.from_numpy(np.asarray(arr, dtype=np.float32))
        block.add_op(op)
        return op.results[0]

    result = build(block, list(block.args), const)
    results = list(result) if isinstance(result, list | tuple) else [result]
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("tvmgen_mrvl_main_0", ([a.type for a in block.args],
                                           [r.type for r in results]), Region(block))
    fn.attributes["mrvl.target"] = StringAttr("accelerator")
    module = ModuleOp([fn])
    module.verify()
    return module, fn


def add(block, op):
    block.add_op(op)
    return op.results[0]


def compile_and_run(module, fn, inputs, *, mode="fp16", **options):
    """Compile `fn`, simulate it (dependency checker on); (outputs, reference, compiled)."""
    ref = run_function(module, inputs, func_name=fn.sym_name.data)
    ranges = activation_ranges(fn, [inputs]) if mode == "int8" else None
    machine = machine_of(options.pop("machine", None), options.pop("num_tiles", 1),
                         options.pop("ocm_size", isa.DEFAULT_OCM_SIZE),
                         options.pop("page_size", isa.DEFAULT_PAGE_SIZE))
    sub = compile_function(fn, machine=machine, quantize=mode, ranges=ranges, **options)
    with Simulator.load(sub.data) as sim:
        outputs, report = sim.run(list(inputs))
    assert report["cycles"] >= report["traffic_roofline_cycles"]
    return outputs, ref, sub


def assert_accepted(outputs, ref, mode):
    for k, (got, want) in enumerate(zip(outputs, ref, strict=True)):
        check = check_output(f"out{k}", got, want, mode)
        assert check.passed, check.summary()


def assert_int8_emulated(fn, data: bytes, inputs) -> None:
    """The simulated int8 outputs of the binary `data` (compiled from `fn`, int8 I/O)
    equal, bit for bit, the documented int8 semantics (sim/reference_int8.py) on the same
    quantised inputs."""
    with Simulator.load(data) as sim:
        device = [to_device(x, desc) for x, desc in zip(inputs, sim.inputs, strict=True)]
        raw, _ = sim.run_device(device)
    values = reference_int8.emulate(fn, device)
    for k, (value, got) in enumerate(zip(fn.body.block.last_op.operands, raw, strict=True)):
        want = values[value][0].reshape(got.shape)
        differ = np.flatnonzero(want != got)
        assert differ.size == 0, (
            f"output {k}: {differ.size} of {got.size} int8 codes differ from the documented "
            f"semantics, first at flat index {differ[0]}: simulated {got.flat[differ[0]]}, "
            f"emulated {want.flat[differ[0]]}")


def _footprint(dims, strides) -> int:
    """Elements spanned by a 4-D box (last element offset + 1)."""
    return sum((int(d) - 1) * int(s) for d, s in zip(dims, strides, strict=True)) + 1


def check_static(prog: Program) -> None:
    """OCM never over capacity and every DMA inside its buffers (OCM slot and DRAM tensor).

    Run on a program converted but not yet allocated (symbolic refs)."""
    for layer in prog.layers:
        assert layer.ocm_bytes(prog.page_size) <= prog.ocm_size, layer.name
        for blk in layer.blocks:
            for insn in (*blk.loads, *blk.stores):
                f = insn.fields
                load = insn.opcode == Opcode.DMA_LOAD
                dims = [f[f"dim{k}"] for k in range(4)]
                src = [f[f"src_dim{k}"] for k in range(4)]
                ocm_dtype, dram_dtype = ((insn.dst_dtype, insn.src_dtype) if load
                                         else (insn.src_dtype, insn.dst_dtype))
                ocm_ref, dram_ref = f["ocm_addr"], f["dram_addr"]
                assert isinstance(ocm_ref, Ref) and isinstance(dram_ref, Ref)
                ocm_bytes = _footprint(dims, [f[f"ocm_stride{k}"] for k in range(4)]) * \
                    isa.DTYPE_SIZE[DType(ocm_dtype)]
                buf = layer.buffers[ocm_ref.name]
                assert ocm_ref.slot < buf.slots
                assert ocm_ref.offset + ocm_bytes <= buf.size, (layer.name, ocm_ref)
                dram_bytes = _footprint(src, [f[f"dram_stride{k}"] for k in range(4)]) * \
                    isa.DTYPE_SIZE[DType(dram_dtype)]
                tensor = prog.root(dram_ref.name)
                assert dram_ref.offset + dram_bytes <= tensor.size_bytes, (layer.name, dram_ref)
                assert math.prod(src) >= 1


def rng_inputs(fn, seed=0):
    from mrvl.dialects import mrvl

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]
