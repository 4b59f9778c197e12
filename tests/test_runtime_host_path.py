"""The runtime's host path (issue 14): accelerator outputs widened to fp32 in C straight from
the simulated DRAM (`Simulator.run_host_deferred`) and inputs converted through a converter
made once per step (`input_converter`) give exactly the bits, reports and errors of the
plain path (`run_deferred` + `from_device`, `to_device`)."""

from __future__ import annotations

import numpy as np
import pytest

from mrvl.driver import api
from mrvl.errors import RuntimeInputError
from mrvl.mlip_binary import IODesc
from mrvl.mlip_isa import DType
from mrvl.models import MODELS, example_inputs
from mrvl.sim.device import SimulatorDevice
from mrvl.sim.simulator import _backend, input_converter, to_device

RNG = np.random.default_rng(1414)


@pytest.mark.parametrize("start,length", [(0, 65536), (1, 2047), (5, 2049), (3, 4097),
                                          (0, 1), (0, 0)])
def test_fp16_widening_is_numpys_bit_for_bit_for_every_pattern(start, length):
    """Every fp16 bit pattern (NaN payloads, both infinities, subnormals), across the C
    helper's block borders: numpy's widening, and the count of infinities and NaNs."""
    bits = np.roll(np.arange(65536, dtype=np.uint32).astype(np.uint16), -start)[:length]
    finite_run = np.resize(np.arange(0, 0x7C00, dtype=np.uint16), length)  # finite blocks
    for source in (bits, finite_run, np.ascontiguousarray(bits[::-1])):
        ffi, lib = _backend()
        out = np.full(length, 7, dtype=np.float32)
        count = lib.mlip_f16_to_f32(ffi.cast("uint16_t *", ffi.from_buffer(source)),
                                    ffi.cast("float *", ffi.from_buffer(out)), length)
        want = source.view(np.float16).astype(np.float32)
        assert out.view(np.uint32).tolist() == want.view(np.uint32).tolist()
        assert count == int(np.count_nonzero((source & 0x7C00) == 0x7C00))


def test_input_converter_gives_to_devices_bits_into_the_buffer():
    shape = (1, 3, 5, 7)
    desc = IODesc("x", shape, dtype=DType.FP16)
    buffer = np.zeros(shape, np.float16)
    convert = input_converter(desc, buffer)
    x = (RNG.standard_normal(shape) * 3e4).astype(np.float32)
    with_nan = x.copy()
    with_nan[0, 1, 2, 3] = np.float32(np.nan)
    transposed = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    for value in (x, with_nan, transposed, x.astype(np.float64), x.astype(np.int32)):
        want = to_device(value, desc)
        got = convert(value)
        assert got is buffer
        assert got.view(np.uint16).tolist() == want.view(np.uint16).tolist()
    quantised = IODesc("q", shape, dtype=DType.INT8, quantize=True, scale=0.25, zero_point=3)
    into = np.zeros(shape, np.int8)
    assert input_converter(quantised, into)(x).tobytes() == to_device(x, quantised).tobytes()


class _PlainDevice(SimulatorDevice):
    """The simulator device without the host path: the runtime converts the outputs."""

    def __getattribute__(self, name):
        if name == "run_host_deferred":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.fixture(scope="module", params=["fp16", "int8"])
def mnist_build(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"host-{request.param}") / "build"
    model = MODELS["mnist_cnn"](batch=1)
    extra = {"calibration": "random"} if request.param == "int8" else {}
    api.compile(model, root, num_tiles=2, quantize=request.param, **extra)
    return root, example_inputs(model)


def test_host_path_outputs_and_reports_equal_the_plain_paths(mnist_build):
    root, feeds = mnist_build
    (name, x), = feeds.items()
    special = x.copy()
    special.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    with api.load(root) as host, api.load(root, device=_PlainDevice()) as plain:
        assert hasattr(host.device, "run_host_deferred")
        assert not hasattr(plain.device, "run_host_deferred")
        first = None
        for inputs in ({name: x}, {name: special}, {name: x * 3}):
            got, want = host.run(inputs), plain.run(inputs)
            if first is None:
                first = got
                kept = {k: v.copy() for k, v in got.outputs.items()}
            assert list(got.outputs) == list(want.outputs)
            for key in want.outputs:
                assert got.outputs[key].dtype == want.outputs[key].dtype == np.float32
                assert got.outputs[key].tobytes() == want.outputs[key].tobytes()
            assert [s.report for s in got.steps] == [s.report for s in want.steps]
        # each run's outputs are its own arrays, not views of the simulated DRAM
        for key, value in kept.items():
            assert first.outputs[key].tobytes() == value.tobytes()


def test_host_path_keeps_one_line_input_errors(mnist_build):
    root, feeds = mnist_build
    (name, x), = feeds.items()
    with api.load(root) as model:
        with pytest.raises(RuntimeInputError, match="has dtype float64, expected float32"):
            model.run({name: x.astype(np.float64)})
        with pytest.raises(RuntimeInputError, match="missing input"):
            model.run({})
        with pytest.raises(RuntimeInputError, match="unknown input name"):
            model.run({name: x, "extra": x})
        step = model._steps[0]
        wrong = np.zeros((2, 2), np.float32)
        with pytest.raises(RuntimeInputError, match=r"expected \w+ \[1, 1, 28, 28\], got "
                           r"float32 \[2, 2\]") as error:
            step.device.run_host_deferred(step.handle, [wrong])
        assert "\n" not in str(error.value)
