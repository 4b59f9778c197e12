"""Model binary: write/read/write identity, rejection of bad binaries with clear messages,
mutation fuzzing in process (hypothesis) and under the ASan+UBSan build (subprocess)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrvl.errors import BinaryFormatError, MrvlError
from mrvl import mlip_isa as isa
from mrvl.mlip_binary import (
    LayerDesc,
    ModelBinary,
    crc32c,
    decode_machine,
    encode_machine,
    replace_machine,
)
from mrvl.mlip_isa import DType, Opcode, Queue, Section
from mrvl.sim.sim_fuzz import FUZZ_OCM, FUZZ_TIMING, refresh_crcs, run_case, seed_binaries
from mrvl.sim.simulator import Simulator
from sanitizers import gcc_runtime_library

ROOT = Path(__file__).resolve().parent.parent
SEEDS = seed_binaries()


def test_crc32c_known_value_and_the_c_core_agrees():
    from mrvl.sim._mlip_sim import ffi, lib

    def core(data: bytes) -> int:
        return int(lib.mlip_crc32c(ffi.from_buffer(data), len(data)))

    assert crc32c(b"123456789") == 0xE3069283 == core(b"123456789")
    blob = bytes(np.random.default_rng(0).integers(0, 256, 4099, dtype=np.uint8))
    assert crc32c(blob) == core(blob)
    assert crc32c(b"") == 0 == core(b"")


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_write_read_write_identical(index):
    data = SEEDS[index]
    binary = ModelBinary.from_bytes(data)
    assert binary.to_bytes() == data
    assert ModelBinary.from_bytes(binary.to_bytes()).to_bytes() == data


def test_all_fields_round_trip():
    binary = ModelBinary.from_bytes(SEEDS[2])
    binary.model_id = 0x1234_5678_9ABC
    binary.layers = [LayerDesc("conv_1", macs=123, dram_bytes=456, kind=3),
                     LayerDesc("fc", macs=7)]
    binary.inputs[0].quantize = True
    binary.inputs[0].dtype = DType.INT8
    binary.inputs[0].scale = 0.25
    binary.inputs[0].zero_point = -3
    binary.inputs[0].dram_offset = binary.input_offset
    binary.inputs[0].layout = isa.Layout.NCHW
    data = binary.to_bytes()
    again = ModelBinary.from_bytes(data)
    assert again.to_bytes() == data
    assert again.layers == binary.layers and again.inputs == binary.inputs
    assert again.model_id == binary.model_id
    insn = again.streams[(Section.MAIN, 0, Queue.DMA_IN)][0]
    assert insn.field("pad1") == 1 and insn.field("dram_stride1") == 24


def _reject(data: bytes, pattern: str, python_too: bool = True):
    with pytest.raises(BinaryFormatError, match=pattern):
        Simulator.load(data, timing=FUZZ_TIMING)
    if python_too:
        with pytest.raises(BinaryFormatError, match=pattern):
            ModelBinary.from_bytes(data)


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 500, -1])
def test_truncated_rejected(cut):
    data = SEEDS[0]
    _reject(data[:cut] if cut >= 0 else data[:-1], "truncated")


def test_corrupt_payload_and_metadata_and_header_rejected():
    data = bytearray(SEEDS[0])
    payload = bytearray(data)
    payload[-3] ^= 0x10
    _reject(bytes(payload), "payload CRC32C mismatch")
    meta = bytearray(data)
    meta[70] ^= 0x01
    _reject(bytes(meta), "metadata CRC32C mismatch")
    head = bytearray(data)
    head[33] ^= 0x01  # model_id
    _reject(bytes(head), "header CRC32C mismatch")
    magic = bytearray(data)
    magic[0:4] = b"MRVX"
    _reject(bytes(magic), "bad magic")


def test_bad_version_rejected():
    data = bytearray(SEEDS[0])
    data[4:6] = (2).to_bytes(2, "little")
    refresh_crcs(data)
    _reject(bytes(data), rf"unsupported version 2\.{isa.VERSION_MINOR}")
    for minor in (0, 1):  # 1.0: no machine record; 1.1: no tile-link fields in it
        data[4:8] = (1).to_bytes(2, "little") + minor.to_bytes(2, "little")
        refresh_crcs(data)
        _reject(bytes(data),
                rf"version 1\.{minor} predates the machine record of format "
                rf"1\.{isa.VERSION_MINOR}; recompile")


def _rewrite(data: bytes, key, index: int, **changes) -> bytes:
    binary = ModelBinary.from_bytes(data)
    insn = binary.streams[key][index]
    words = list(insn.args)
    names = isa.OPCODE_FIELDS[Opcode(insn.opcode)]
    header = {}
    for name, value in changes.items():
        if name in names:
            words[names.index(name)] = value & 0xFFFFFFFF
        else:
            header[name] = value
    binary.streams[key][index] = replace(insn, args=tuple(words), **header)
    return binary.to_bytes()


def test_out_of_bounds_addresses_rejected_naming_the_instruction():
    main_c = (Section.MAIN, 0, Queue.COMPUTE)
    bad = _rewrite(SEEDS[0], main_c, 0, in_addr=isa.DEFAULT_OCM_SIZE - 2)
    _reject(bad, r"main/tile 0/compute/#0 CONV: input OCM range .* outside", python_too=False)
    bad = _rewrite(SEEDS[0], main_c, 1, out_pix_stride=0xFFFFFFFF)
    _reject(bad, r"main/tile 0/compute/#1 POOL: output OCM range", python_too=False)
    main_o = (Section.MAIN, 0, Queue.DMA_OUT)
    binary = ModelBinary.from_bytes(SEEDS[0])
    bad = _rewrite(SEEDS[0], main_o, 0, dram_addr=binary.weights_offset)
    _reject(bad, r"DMA_STORE writes the read-only weights region", python_too=False)
    bad = _rewrite(SEEDS[0], main_o, 0, dram_addr=0xFFFFFF00)
    _reject(bad, r"DRAM range .* does not lie inside one DRAM region", python_too=False)


def test_invalid_fields_rejected():
    main_c = (Section.MAIN, 0, Queue.COMPUTE)
    _reject(_rewrite(SEEDS[0], main_c, 0, opcode=99), "unknown opcode 99", python_too=False)
    _reject(_rewrite(SEEDS[0], main_c, 0, opcode=Opcode.DMA_LOAD),
            "DMA_LOAD belongs in the dma_in queue", python_too=False)
    _reject(_rewrite(SEEDS[0], main_c, 0, groups=3), "groups 3 must divide",
            python_too=False)
    _reject(_rewrite(SEEDS[0], main_c, 0, act=42), "unknown activation 42", python_too=False)
    _reject(_rewrite(SEEDS[0], main_c, 0, layer=7), "layer 7 not in the layer table",
            python_too=False)


def test_model_level_fields_rejected():
    binary = ModelBinary.from_bytes(SEEDS[0])
    binary.tile_end = 9
    with pytest.raises(BinaryFormatError):
        binary.to_bytes()  # the writer refuses streams for tiles outside the range
    binary = ModelBinary.from_bytes(SEEDS[0])
    binary.ocm_end = isa.DEFAULT_OCM_SIZE * 2
    with pytest.raises(BinaryFormatError, match="beyond the machine's 262144 bytes of OCM"):
        binary.to_bytes()
    data = bytearray(SEEDS[0])
    ocm_end_at = isa.HEADER_STRUCT.size + isa.NAME_LEN + 7 * 4
    assert struct.unpack_from("<I", data, ocm_end_at)[0] == binary.machine.ocm_bytes
    struct.pack_into("<I", data, ocm_end_at, isa.DEFAULT_OCM_SIZE * 2)
    refresh_crcs(data)
    with pytest.raises(BinaryFormatError, match="does not fit the machine's OCM of 262144"):
        Simulator.load(bytes(data))
    binary = ModelBinary.from_bytes(SEEDS[0])
    binary.outputs[0].dram_offset = binary.weights_offset
    _reject(binary.to_bytes(), "outside the output region")


def test_sanity_seeds_run():
    for data in SEEDS:
        assert run_case(data) == "ran"


INTERESTING = st.sampled_from([0, 1, 2, 15, 16, 255, 256, 65535, 65536, 0x7FFFFFFF,
                               0x80000000, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(SEEDS) - 1),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), INTERESTING), min_size=1,
                   max_size=4),
    fix_crc=st.booleans(),
    cut=st.none() | st.floats(0, 1),
)
def test_mutated_binaries_never_crash(index, edits, fix_crc, cut):
    """Any mutation ends in a clean run or an MrvlError (run_case re-raises anything else)."""
    data = bytearray(SEEDS[index])
    for frac, value in edits:
        pos = int(frac * (len(data) // 4)) * 4
        data[pos:pos + 4] = value.to_bytes(4, "little")
    if cut is not None:
        data = data[: int(cut * len(data))]
    if fix_crc:
        refresh_crcs(data)
    assert run_case(bytes(data)) in ("rejected", "sim_error", "input_error", "ran")


def test_mutated_binaries_under_asan_ubsan(tmp_path):
    """Build the sanitizer variant with the same build script, fuzz 500 cases with it."""
    libasan = gcc_runtime_library("libasan.so")
    assert libasan is not None, "gcc with libasan is required for the sanitizer test"
    env = dict(os.environ, MRVL_SIM_SANITIZE="1")
    build = subprocess.run(
        [sys.executable, "-c",
         "import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
         "ns['ffibuilder'].compile(tmpdir=sys.argv[2])",
         str(ROOT / "sim" / "build_sim.py"), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        MRVL_SIM_BACKEND="_mlip_sim_asan",
        PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]),
    )
    env.pop("MRVL_SIM_SANITIZE", None)
    run = subprocess.run([sys.executable, "-m", "mrvl.sim.sim_fuzz", "--cases", "500",
                          "--seed", "2026"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-6000:]
    assert "ERROR: AddressSanitizer" not in run.stderr
    assert "runtime error" not in run.stderr
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert counts["cases"] == 500
    assert counts["ran"] + counts["rejected"] + counts["sim_error"] + counts[
        "input_error"] == 500
    assert counts["ran"] > 0 and counts["rejected"] > 0


def test_bad_descriptor_rejected_naming_the_source():
    data = bytearray(SEEDS[0])
    rank_at = isa.HEADER_STRUCT.size + isa.MODEL_INFO_SIZE + isa.MACHINE_STRUCT.size + 84  # input 0's rank field
    assert struct.unpack_from("<I", data, rank_at)[0] == 3  # x is (5, 6, 4)
    struct.pack_into("<I", data, rank_at, 7)
    refresh_crcs(data)
    with pytest.raises(BinaryFormatError, match="input descriptor 0 is malformed"):
        Simulator.load(bytes(data), timing=FUZZ_TIMING)
    with pytest.raises(BinaryFormatError, match=r"^seed\.bin: input 'x': rank 7 not in 1\.\.6"):
        ModelBinary.from_bytes(bytes(data), source="seed.bin")


# ---- the machine record ------------------------------------------------------------------
MACHINE_AT = isa.HEADER_STRUCT.size + isa.MODEL_INFO_SIZE


def _machine_field(data: bytearray, name: str, value) -> bytes:
    """`data` with one field of its machine record overwritten (CRCs refreshed)."""
    values = list(isa.MACHINE_STRUCT.unpack_from(data, MACHINE_AT))
    values[isa.MACHINE_FIELDS.index(name)] = value
    isa.MACHINE_STRUCT.pack_into(data, MACHINE_AT, *values)
    refresh_crcs(data)
    return bytes(data)


@pytest.mark.parametrize("name, value, pattern", [
    ("dram_bytes_per_cycle", 0.0, "dram_bytes_per_cycle"),
    ("dram_bytes_per_cycle", float("nan"), "dram_bytes_per_cycle"),
    ("dram_bytes_per_cycle", float("inf"), "dram_bytes_per_cycle"),
    ("dram_bytes_per_cycle", -64.0, "dram_bytes_per_cycle"),
    ("dma_bytes_per_cycle", 0, "dma_bytes_per_cycle"),
    ("matrix_rows", 0, "matrix_rows"),
    ("vector_lanes", 1 << 20, "vector_lanes"),
    ("int8_speedup", 0, "int8_speedup"),
    ("clock_mhz", 0, "clock_mhz"),
    ("barrier_latency", 0xFFFFFFFF, "barrier_latency"),
    ("link_bytes_per_cycle", 0, "link_bytes_per_cycle"),
    ("link_bytes_per_cycle", 1 << 17, "link_bytes_per_cycle"),
    ("link_latency", 1_000_001, "link_latency"),
    ("tiles", 2, "tiles"),
    ("page_bytes", 4096, "page_bytes"),
    ("ocm_bytes", 1000, "ocm_bytes"),
    ("ocm_bytes", 0, "ocm_bytes"),
])
def test_corrupt_machine_record_rejected_in_one_line(name, value, pattern):
    """A machine record field out of range (with valid CRCs) is a one-line BinaryFormatError
    from both the C core and the Python reader, never a crash or a division by zero."""
    data = _machine_field(bytearray(SEEDS[0]), name, value)
    for load in (lambda: Simulator.load(data, timing=FUZZ_TIMING),
                 lambda: ModelBinary.from_bytes(data)):
        with pytest.raises(BinaryFormatError, match=f"machine record: {pattern}") as error:
            load()
        assert "\n" not in str(error.value)


def test_machine_record_round_trips_and_the_ocm_end_must_fit():
    binary = ModelBinary.from_bytes(SEEDS[0])
    assert binary.machine is not None and binary.machine.ocm_bytes == FUZZ_OCM
    assert decode_machine(encode_machine(binary.machine)) == binary.machine
    fractional = replace(binary.machine, dram_bytes_per_cycle=41.6)
    data = replace_machine(SEEDS[0], fractional)
    assert ModelBinary.from_bytes(data).machine.dram_bytes_per_cycle == 41.6
    assert Simulator.load(data, timing=FUZZ_TIMING).machine == fractional
    small = _machine_field(bytearray(SEEDS[0]), "ocm_bytes", 1024)
    with pytest.raises(BinaryFormatError, match="OCM"):
        Simulator.load(small, timing=FUZZ_TIMING)
    with pytest.raises(BinaryFormatError, match="OCM"):
        ModelBinary.from_bytes(small)


def test_machine_override_changes_cycles_never_outputs():
    x = np.random.default_rng(0).standard_normal((5, 6, 4)).astype(np.float32)
    base = Simulator.load(SEEDS[0], timing=FUZZ_TIMING)
    outs, report = base.run([x])
    slow_outs, slow = Simulator.load(SEEDS[0], timing=FUZZ_TIMING,
                                     machine=["dram_gbps=0.5", "dma_latency=5000"]).run([x])
    assert all(np.array_equal(a, b) for a, b in zip(outs, slow_outs, strict=True))
    assert slow["cycles"] > report["cycles"]
    assert slow["machine"]["dram_gbps"] == 0.5 and report["machine"]["dram_gbps"] == 64.0
    with pytest.raises(BinaryFormatError, match="compiled for tiles=1"):
        Simulator.load(SEEDS[0], machine=replace(base.machine, tiles=2))
    with pytest.raises(MrvlError, match="unknown key 'warp'") as error:
        Simulator.load(SEEDS[0], machine={"warp": 9})
    assert "\n" not in str(error.value)
