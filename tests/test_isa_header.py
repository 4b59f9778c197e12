"""csrc/mlip_isa.h and mrvl/mlip_isa.py must agree: defines, enums, field layouts, sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mrvl import mlip_isa as isa

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "mlip_isa.h"
TEXT = HEADER.read_text()


def _int(text: str) -> int:
    return int(text.rstrip("uUlL"), 0)


def defines() -> dict[str, int]:
    found = {}
    for name, value in re.findall(r"^#define\s+MLIP_(\w+)\s+(\S+)\s*$", TEXT, re.M):
        if value.startswith('"'):
            continue
        found[name] = _int(value)
    return found


def enums() -> dict[str, dict[str, int]]:
    blocks = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\};", TEXT, re.S):
        entries = dict(
            (key, _int(value)) for key, value in re.findall(r"MLIP_(\w+)\s*=\s*(\w+)\s*,", body)
        )
        blocks[name] = entries
    return blocks


def test_magic_and_version():
    assert re.search(r'#define MLIP_MAGIC "MRVL"', TEXT)
    assert isa.MAGIC == b"MRVL"


def test_every_define_is_mirrored():
    found = defines()
    assert len(found) > 30
    for name, value in found.items():
        assert getattr(isa, name) == value, name


ENUM_MIRRORS = {
    "mlip_opcode": ("OP_", isa.Opcode, "NUM_OPCODES"),
    "mlip_queue": ("Q_", isa.Queue, None),
    "mlip_section": ("SEC_", isa.Section, None),
    "mlip_dtype": ("DT_", isa.DType, "NUM_DTYPES"),
    "mlip_layout": ("LAYOUT_", isa.Layout, None),
    "mlip_act": ("ACT_", isa.Act, "NUM_ACTS"),
    "mlip_pool_func": ("POOL_", isa.PoolFunc, "NUM_POOL_FUNCS"),
    "mlip_eltwise_func": ("ELT_", isa.EltFunc, "NUM_ELT_FUNCS"),
    "mlip_flag": ("F_", isa.Flag, None),
}


@pytest.mark.parametrize("enum_name", sorted(ENUM_MIRRORS))
def test_enums_agree(enum_name):
    prefix, py_enum, count_name = ENUM_MIRRORS[enum_name]
    entries = enums()[enum_name]
    members = {}
    for key, value in entries.items():
        if count_name is not None and key == count_name:
            # NUM_* is the largest value + 1 (values may leave gaps for other branches)
            assert getattr(isa, count_name) == value == max(int(m) for m in py_enum) + 1
            continue
        if key == "F_ALL":
            assert isa.FLAG_ALL == value == sum(int(f) for f in py_enum)
            continue
        assert key.startswith(prefix), key
        members[key[len(prefix):]] = value
    assert members == {m.name: int(m.value) for m in py_enum}


FAMILY_ENUMS = {
    "DMA": "mlip_dma_arg", "CONV": "mlip_conv_arg", "GEMM": "mlip_gemm_arg",
    "POOL": "mlip_pool_arg", "ELT": "mlip_elt_arg", "VEC": "mlip_vec_arg",
    "NORM": "mlip_norm_arg", "BARRIER": "mlip_barrier_arg", "TCOPY": "mlip_tile_copy_arg",
}


@pytest.mark.parametrize("family", sorted(FAMILY_ENUMS))
def test_field_layouts_agree(family):
    entries = enums()[FAMILY_ENUMS[family]]
    names = isa.FIELD_FAMILIES[family]
    assert entries.pop(f"{family}_NUM_ARGS") == len(names) <= isa.INSN_ARGS
    assert entries == {f"{family}_{name.upper()}": i for i, name in enumerate(names)}


def test_fparam_indices_agree():
    entries = enums()["mlip_fparam"]
    assert entries == {"FP_SCALE": isa.FP_SCALE, "FP_ACT_ALPHA": isa.FP_ACT_ALPHA,
                       "FP_ACT_BETA": isa.FP_ACT_BETA, "FP_RESERVED": isa.FP_RESERVED}


def test_struct_sizes_agree():
    asserts = re.findall(r"_Static_assert\(sizeof\((\w+)\) == (\w+),", TEXT)
    assert {name for name, _ in asserts} == set(isa.STRUCT_SIZES)
    consts = defines()
    for name, size in asserts:
        value = consts[size[len("MLIP_"):]] if size.startswith("MLIP_") else _int(size)
        assert isa.STRUCT_SIZES[name] == value, name


def test_struct_field_counts_agree():
    """The Python struct formats hold the header's fields in order (count per struct)."""

    def c_fields(struct_name: str) -> list[str]:
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct_name, struct_name),
                         TEXT, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        return [line.strip() for line in body.split(";") if line.strip()]

    assert len(c_fields("mlip_insn")) == 11  # 9 scalars, fparam[], arg[]
    assert len(isa.INSN_STRUCT.unpack(bytes(isa.INSN_STRUCT.size))) == 9 + 4 + 25
    assert len(c_fields("mlip_header")) == 14
    assert len(isa.HEADER_STRUCT.unpack(bytes(isa.HEADER_STRUCT.size))) == 14
    assert len(c_fields("mlip_io_desc")) == 11
    assert len(isa.IO_DESC_STRUCT.unpack(bytes(isa.IO_DESC_STRUCT.size))) == 10 + 6
    assert len(c_fields("mlip_layer_desc")) == 6
    assert len(isa.LAYER_DESC_STRUCT.unpack(bytes(isa.LAYER_DESC_STRUCT.size))) == 6
    assert len(c_fields("mlip_model_info")) == 1 + 10 + 10 + 2  # + reserved[], streams[]
    assert len(isa.MODEL_INFO_HEAD_STRUCT.unpack(bytes(isa.MODEL_INFO_HEAD_STRUCT.size))) == (
        1 + 10 + 10 + 4)


def test_opcode_tables_complete():
    assert set(isa.OPCODE_FIELDS) == set(isa.Opcode)
    assert set(isa.OPCODE_QUEUE) == set(isa.Opcode)


def _c_tokens(text: str) -> list[str]:
    """Declarations as tokens: comments, include guards and #includes dropped, `(-1)` -> `-1`."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"^#(ifndef|endif|include).*$", " ", text, flags=re.M)
    text = re.sub(r"^#define MLIP_SIM_H\s*$", " ", text, flags=re.M)
    text = re.sub(r"\((-\d+)\)", r"\1", text)
    return re.findall(r"\w+|[^\s\w]", text)


def test_cffi_cdef_repeats_the_c_api_exactly():
    """sim/build_sim.py's cdef must declare csrc/mlip_sim.h's API field for field (a struct
    that differs would make cffi read the wrong bytes)."""
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("_build_sim", HEADER.parent.parent / "sim" / "build_sim.py")
    build_sim = module_from_spec(spec)
    spec.loader.exec_module(build_sim)
    api_header = (HEADER.parent / "mlip_sim.h").read_text()
    assert _c_tokens(build_sim.CDEF) == _c_tokens(api_header)


def test_machine_record_fields_agree():
    """mlip_machine's fields, in order, are `MACHINE_FIELDS` plus reserved[1]; each is a
    field of `Machine` (mrvl/machine.py), and the double is where the struct format says."""
    from dataclasses import fields

    from mrvl.machine import Machine

    body = re.search(r"typedef struct mlip_machine \{(.*?)\} mlip_machine;", TEXT, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    decls = [line.split() for line in body.split(";") if line.strip()]
    names = [decl[-1] for decl in decls]
    assert names == [*isa.MACHINE_FIELDS, f"reserved[{isa.MACHINE_RESERVED}]"]
    assert [decl[0] for decl in decls if decl[-1] == "dram_bytes_per_cycle"] == ["double"]
    assert {decl[0] for decl in decls if decl[-1] in isa.MACHINE_FIELDS} == {"uint32_t", "double"}
    assert set(isa.MACHINE_FIELDS) == {f.name for f in fields(Machine)}
    assert isa.MACHINE_STRUCT.format == "<8Id8IQ"
    assert isa.MACHINE_FIELDS.index("dram_bytes_per_cycle") == 8
