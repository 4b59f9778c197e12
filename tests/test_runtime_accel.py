"""The runtime's accelerator path on the real simulator, with binaries written here through the
documented writer API (docs/isa.md section 7), so the border conversions are checked exactly
and independently of the backend compiler:

- a relu program whose input is fp16 NHWC and whose output is int8 quantised NHWC, in a build
  that alternates accelerator -> CPU -> accelerator steps; the expected values are computed
  from the ISA's documented semantics in numpy and compared exactly;
- `SimulatorDevice` itself: descriptor checks, exact round trip of quantised tensors, unload.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mrvl.errors import RuntimeInputError, SimulationError
from mrvl.sim.device import Device, SimulatorDevice
from mrvl.mlip_binary import IODesc, Instruction, ModelBinary, plan_dram
from mrvl.mlip_isa import Act, DType, Layout, Opcode, Queue, Section
from mrvl.sim.runtime import CompiledModel
from mrvl.sim.simulator import to_device

SHAPE_NHWC = (1, 2, 3, 4)
SHAPE_NCHW = (1, 4, 2, 3)
E = 24


def relu_binary(in_desc: IODesc, out_desc: IODesc, name: str) -> bytes:
    """DMA_LOAD (dequantise if needed) -> ACT relu (fp16) -> DMA_STORE (quantise if needed)."""
    binary = ModelBinary(name=name, inputs=[in_desc], outputs=[out_desc])
    binary.apply_plan(plan_dram([in_desc.size_bytes], [out_desc.size_bytes], 0, 0))
    dma = dict(dim0=1, dim1=1, dim2=1, dim3=E, src_dim0=1, src_dim1=1, src_dim2=1, src_dim3=E,
               dram_stride0=E, dram_stride1=E, dram_stride2=E, dram_stride3=1,
               ocm_stride0=E, ocm_stride1=E, ocm_stride2=E, ocm_stride3=1)
    load = {}
    if in_desc.quantize:
        load = dict(scale_flag=True, scale=1.0 / in_desc.scale, in_zp=in_desc.zero_point)
    binary.stream(Section.MAIN, 0, Queue.DMA_IN).append(Instruction.make(
        Opcode.DMA_LOAD, dram_addr=in_desc.dram_offset, ocm_addr=0, src_dtype=in_desc.dtype,
        dst_dtype=DType.FP16, push_next=True, **load, **dma))
    binary.stream(Section.MAIN, 0, Queue.COMPUTE).append(Instruction.make(
        Opcode.ACT, in_addr=0, out_addr=64, rows=1, cols=E, in_row_stride=E, out_row_stride=E,
        act=Act.RELU, src_dtype=DType.FP16, dst_dtype=DType.FP16, pop_prev=True,
        push_next=True))
    store = {}
    if out_desc.quantize:
        store = dict(scale_flag=True, scale=1.0 / out_desc.scale, out_zp=out_desc.zero_point)
    binary.stream(Section.MAIN, 0, Queue.DMA_OUT).append(Instruction.make(
        Opcode.DMA_STORE, dram_addr=out_desc.dram_offset, ocm_addr=64, src_dtype=DType.FP16,
        dst_dtype=out_desc.dtype, pop_prev=True, **store, **dma))
    return binary.to_bytes()


def _fp16_in(name: str) -> IODesc:
    return IODesc(name, SHAPE_NHWC, dtype=DType.FP16, layout=Layout.NHWC)


def _q8(name: str, scale: float, zp: int, output: bool) -> IODesc:
    # inputs: q = rint(x * scale) + zp; outputs: x = (q - zp) * scale (docs/isa.md)
    return IODesc(name, SHAPE_NHWC, dtype=DType.INT8, layout=Layout.NHWC, quantize=True,
                  scale=scale, zero_point=zp)


IN_SCALE, IN_ZP = 20.0, 5  # step 2's quantised input
OUT_SCALE, OUT_ZP = 0.05, -3  # step 1's quantised output


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("accel") / "build"
    root.mkdir()
    (root / "acc0.bin").write_bytes(
        relu_binary(_fp16_in("x"), _q8("t1", OUT_SCALE, OUT_ZP, True), "acc0"))
    (root / "acc1.bin").write_bytes(
        relu_binary(_q8("t2", IN_SCALE, IN_ZP, False),
                    IODesc("y", SHAPE_NHWC, dtype=DType.FP16, layout=Layout.NHWC), "acc1"))
    # CPU step between them, in NCHW: t2 = -(t1 - 1)
    node_sub = helper.make_node("Sub", ["t1", "one"], ["d"], name="sub")
    node_neg = helper.make_node("Neg", ["d"], ["t2"], name="neg")
    graph = helper.make_graph(
        [node_sub, node_neg], "cpu_main_0",
        [helper.make_tensor_value_info("t1", TensorProto.FLOAT, SHAPE_NCHW)],
        [helper.make_tensor_value_info("t2", TensorProto.FLOAT, SHAPE_NCHW)],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    cpu = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(cpu, root / "cpu_main_0.onnx")
    manifest = {
        "format": "mrvl-build", "version": 1,
        "model": {"onnx": "model.onnx",
                  "inputs": [{"name": "x", "shape": list(SHAPE_NCHW), "dtype": "float32"}],
                  "outputs": [{"name": "y", "shape": list(SHAPE_NCHW), "dtype": "float32"}]},
        "options": {"num_tiles": 1, "quantize": "fp16"},
        "steps": [
            {"kind": "accelerator", "symbol": "acc0", "binary": "acc0.bin",
             "inputs": ["x"], "outputs": ["t1"]},
            {"kind": "cpu", "symbol": "cpu_main_0", "onnx": "cpu_main_0.onnx",
             "inputs": ["t1"], "outputs": ["t2"]},
            {"kind": "accelerator", "symbol": "acc1", "binary": "acc1.bin",
             "inputs": ["t2"], "outputs": ["y"]},
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _expected(x_nchw: np.ndarray) -> np.ndarray:
    """The documented semantics step by step, in numpy (fp32 arithmetic)."""
    f32 = np.float32
    v = np.maximum(x_nchw.transpose(0, 2, 3, 1).astype(np.float16), 0)  # fp16 load, relu
    q = np.clip(np.rint(v.astype(f32) * f32(1.0 / OUT_SCALE)) + OUT_ZP, -128, 127)
    t1 = ((q.astype(f32) - f32(OUT_ZP)) * f32(OUT_SCALE)).transpose(0, 3, 1, 2)
    t2 = -(t1 - f32(1.0))
    q2 = np.clip(np.rint(t2.transpose(0, 2, 3, 1) * f32(IN_SCALE)) + IN_ZP, -128, 127)
    v2 = ((q2.astype(f32) - f32(IN_ZP)) * f32(1.0 / IN_SCALE)).astype(np.float16)
    return np.maximum(v2, 0).astype(f32).transpose(0, 3, 1, 2)


def test_alternating_steps_exact(build):
    x = (np.random.default_rng(3).standard_normal(SHAPE_NCHW) * 2).astype(np.float32)
    with CompiledModel.load(build) as model:
        result = model.run({"x": x})
    y = result.outputs["y"]
    assert y.shape == SHAPE_NCHW and y.dtype == np.float32
    np.testing.assert_array_equal(y, _expected(x))
    assert [s.kind for s in result.steps] == ["accelerator", "cpu", "accelerator"]
    assert all(s.report["cycles"] > 0 for s in result.steps if s.kind == "accelerator")
    assert result.total_cycles == sum(s.report["cycles"] for s in result.steps
                                      if s.kind == "accelerator")


def test_step_reports_built_on_read_equal_the_devices_eager_report(build):
    """The runtime builds an accelerator step's report when it is read (the simulator
    device's `run_deferred`): the same dict as the device's own `run` gives."""
    x = (np.random.default_rng(4).standard_normal(SHAPE_NCHW) * 2).astype(np.float32)
    with CompiledModel.load(build) as model:
        result = model.run({"x": x})
        later = model.run({"x": -x})  # reuses the simulator's statistics buffers
        step = model._steps[0]
        device_inputs = [to_device(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), desc)
                         for desc in step.in_descs]
        _, eager = step.device.run(step.handle, device_inputs)
    assert result.steps[0].report == eager
    assert later.steps[0].report["cycles"] == eager["cycles"]
    assert json.loads(json.dumps(result.as_dict()))["steps"][0]["report"]["cycles"] == \
        eager["cycles"]


def test_input_validation_before_any_step(build):
    with CompiledModel.load(build) as model:
        with pytest.raises(RuntimeInputError, match=r"expected \[1, 4, 2, 3\]"):
            model.run({"x": np.zeros(SHAPE_NHWC, np.float32)})


def test_simulator_device_seam(build):
    device = SimulatorDevice()
    assert isinstance(device, Device)
    handle = device.load(build / "acc1.bin")
    (desc,), (out_desc,) = device.io(handle)
    assert desc.quantize and desc.dtype == DType.INT8 and tuple(desc.shape) == SHAPE_NHWC
    q = np.arange(-12, 12, dtype=np.int8).reshape(SHAPE_NHWC)
    (out,), report = device.run(handle, [q])
    assert out.dtype == np.float16 and report["cycles"] > 0
    expected = np.maximum(((q.astype(np.float32) - IN_ZP) * np.float32(1 / IN_SCALE))
                          .astype(np.float16), 0)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(RuntimeInputError, match="expected int8"):
        device.run(handle, [q.astype(np.float32)])
    device.unload(handle)
    with pytest.raises(SimulationError, match="not loaded"):
        device.run(handle, [q])


def test_simulator_device_passes_32_bit_integers_bit_for_bit():
    """The seam hands device-format arrays to the simulated DRAM unchanged: int32 values
    beyond 2^24 (not representable in fp32) come back exactly through a COPY program."""
    from mrvl.sim.program_builder import ProgramBuilder

    pb = ProgramBuilder()
    xa = pb.input(0, "x", (2, 4), DType.INT32)
    oa = pb.alloc(0, 32)
    pb.compute(0, Instruction.make(Opcode.COPY, in_addr=xa, out_addr=oa, rows=2, cols=4,
                                   in_row_stride=4, out_row_stride=4, src_dtype=DType.INT32,
                                   dst_dtype=DType.INT32))
    pb.store(0, oa, "y", (2, 4), DType.INT32)
    device = SimulatorDevice()
    handle = device.load(pb.build().to_bytes())
    x = np.array([[2**24 + 1, -(2**31), 2**31 - 1, 7], [-(2**24) - 3, 0, 123456789, -1]],
                 np.int32)
    (y,), _ = device.run(handle, [x])
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, x)
    device.unload(handle)
