"""Helpers for the backend tests: one-layer accelerator functions, compile + simulate, and
static checks of converted mlip models (OCM capacity, DMA footprints)."""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Region

from mrvl.dialects.graph import ConstantOp
from mrvl.lowering.backend import compile_function
from mrvl.dialects.mlip import DTYPE_BY_NAME, BufferOp, DmaOp, ModelOp
from mrvl.driver.calibration import activation_ranges
from mrvl.machine import machine_of
from mrvl import mlip_isa as isa
from mrvl.sim.acceptance import check_output
from mrvl.mlip_isa import Opcode
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


def check_static(model: ModelOp) -> None:
    """OCM never over capacity and every DMA inside its buffers (OCM slot and DRAM tensor).

    Run on a model converted but not yet allocated."""
    page = model.page_size.value.data
    used: dict[int, int] = {}
    for buf in model.buffers():
        size = -(-max(buf.size.value.data, 1) // page) * page * buf.slots.value.data
        used[buf.layer.value.data] = used.get(buf.layer.value.data, 0) + size
    assert all(n <= model.ocm_size.value.data for n in used.values()), used
    tensors = model.tensors()
    for op in model.instructions():
        if not isinstance(op, DmaOp):
            continue
        p = op.properties

        def get(name, p=p):
            attr = p.get(name)
            return 0 if attr is None else attr.value.data

        load = op.OPCODE == Opcode.DMA_LOAD
        dims = [get(f"dim{k}") for k in range(4)]
        src = [get(f"src_dim{k}") for k in range(4)]
        ocm_dtype, dram_dtype = ((p["dst"].data, p["src"].data) if load
                                 else (p["src"].data, p["dst"].data))
        ocm_bytes = _footprint(dims, [get(f"ocm_stride{k}") for k in range(4)]) * \
            isa.DTYPE_SIZE[DTYPE_BY_NAME[ocm_dtype]]
        buf = op.ocm_operands()["ocm_addr"].owner
        assert isinstance(buf, BufferOp)
        slot, offset = get("ocm_slot"), get("ocm_offset")
        assert slot < buf.slots.value.data
        assert offset + ocm_bytes <= buf.size.value.data, (op.name, buf.label.data)
        dram_bytes = _footprint(src, [get(f"dram_stride{k}") for k in range(4)]) * \
            isa.DTYPE_SIZE[DTYPE_BY_NAME[dram_dtype]]
        tensor = tensors[p["dram"].root_reference.data]
        while tensor.alias_of is not None:
            tensor = tensors[tensor.alias_of.data]
        assert get("dram_offset") + dram_bytes <= tensor.size_bytes, tensor.sym_name.data
        assert math.prod(src) >= 1


def rng_inputs(fn, seed=0):
    from mrvl.dialects import mrvl

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
            for a in fn.body.block.args]
