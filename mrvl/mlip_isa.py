"""Python mirror of `csrc/mlip_isa.h`: opcodes, instruction field layouts, limits, structs.

Invariant: every constant here equals the one of the same name in the header
(`tests/test_isa_header.py` parses the header and checks it), and every `struct` format
packs to the size the header's `_Static_assert`s state.  docs/isa.md is the prose version.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

# ---- versions and identification ---------------------------------------------------------
MAGIC = b"MRVL"
VERSION_MAJOR = 1
VERSION_MINOR = 4
ARCH_CN10K = 16

# ---- limits ------------------------------------------------------------------------------
MAX_TILES = 8
NUM_QUEUES = 3
NUM_SECTIONS = 3
MAX_IO = 32
MAX_RANK = 6
NAME_LEN = 64
MAX_LAYERS = 65535
LAYER_NONE = 65535
MAX_DIM = 16777215
MAX_KERNEL = 255
MAX_STRIDE = 255
MAX_PAD = 65535
MAX_INSNS_PER_STREAM = 16777216
MAX_DRAM_BYTES = 4294967295
ADDR_NONE = 4294967295
DMA_DIMS = 4
INSN_BYTES = 128
INSN_ARGS = 25
INSN_FPARAMS = 4
WEIGHTS_ALIGN = 64
MAX_INT8_K = 65536

# ---- machine description: defaults of the mlip_machine record -----------------------------
DEFAULT_OCM_SIZE = 1048576
DEFAULT_PAGE_SIZE = 16384
OCM_GRANULE = 16
DRAM_GRANULE = 16
DEFAULT_CLOCK_MHZ = 1000
DEFAULT_MATRIX_ROWS = 16
DEFAULT_MATRIX_COLS = 16
DEFAULT_INT8_SPEEDUP = 2
DEFAULT_VECTOR_LANES = 32
DEFAULT_DRAM_BYTES_PER_CYCLE = 64
DEFAULT_DMA_BYTES_PER_CYCLE = 32
DEFAULT_DMA_LATENCY = 200
DEFAULT_MATRIX_FILL = 32
DEFAULT_VECTOR_LATENCY = 8
DEFAULT_ISSUE_LATENCY = 1
DEFAULT_BARRIER_LATENCY = 50
DEFAULT_LINK_BYTES_PER_CYCLE = 64
DEFAULT_LINK_LATENCY = 20

# ---- machine description: the ranges a binary's mlip_machine record must be in ------------
MAX_OCM_BYTES = 1073741824
MAX_CLOCK_MHZ = 100000
MAX_MACHINE_WIDTH = 65536
MAX_MACHINE_LATENCY = 1000000
MIN_DRAM_MILLIBYTES_PER_CYCLE = 1


class Opcode(IntEnum):
    NOP = 0
    DMA_LOAD = 1
    DMA_STORE = 2
    CONV = 3
    GEMM = 4
    POOL = 5
    ELTWISE = 6
    ACT = 7
    CONVERT = 8
    COPY = 9
    BARRIER = 10
    TILE_COPY = 11
    SOFTMAX = 16
    LAYERNORM = 17


NUM_OPCODES = 18


class Queue(IntEnum):
    DMA_IN = 0
    COMPUTE = 1
    DMA_OUT = 2


class Section(IntEnum):
    INIT = 0
    MAIN = 1
    FINISH = 2


class DType(IntEnum):
    FP32 = 0
    FP16 = 1
    INT8 = 2
    UINT8 = 3
    INT16 = 4
    UINT16 = 5
    INT32 = 6
    UINT32 = 7


NUM_DTYPES = 8

DTYPE_SIZE = {
    DType.FP32: 4, DType.FP16: 2, DType.INT8: 1, DType.UINT8: 1,
    DType.INT16: 2, DType.UINT16: 2, DType.INT32: 4, DType.UINT32: 4,
}
DTYPE_NUMPY = {
    DType.FP32: "<f4", DType.FP16: "<f2", DType.INT8: "i1", DType.UINT8: "u1",
    DType.INT16: "<i2", DType.UINT16: "<u2", DType.INT32: "<i4", DType.UINT32: "<u4",
}


class Layout(IntEnum):
    NONE = 0
    NCHW = 1
    NHWC = 2


class Act(IntEnum):
    NONE = 0
    RELU = 1
    RELU6 = 2
    CLIP = 3
    SIGMOID = 4
    LEAKY_RELU = 5
    TANH = 6
    SILU = 7
    GELU_ERF = 10
    GELU_TANH = 11


NUM_ACTS = 12


class PoolFunc(IntEnum):
    MAX = 0
    AVG = 1


NUM_POOL_FUNCS = 2


class EltFunc(IntEnum):
    ADD = 0
    SUB = 1
    MUL = 2
    MAX = 3
    MIN = 4
    DIV = 5


NUM_ELT_FUNCS = 6


class Flag(IntFlag):
    POP_PREV = 1
    POP_NEXT = 2
    PUSH_PREV = 4
    PUSH_NEXT = 8
    SCALE = 16
    COUNT_PAD = 32


FLAG_ALL = 63

# ---- instruction field layouts ------------------------------------------------------------
# Per opcode family: (header enum prefix, field names in arg[] order).  A field's type is
# "u" (uint32), "i" (int32 two's complement) or "f" (float32 bits), see FIELD_TYPES.
DMA_FIELDS = (
    "dram_addr", "ocm_addr", "dim0", "dim1", "dim2", "dim3",
    "pad0", "pad1", "pad2", "pad3", "src_dim0", "src_dim1", "src_dim2", "src_dim3",
    "dram_stride0", "dram_stride1", "dram_stride2", "dram_stride3",
    "ocm_stride0", "ocm_stride1", "ocm_stride2", "ocm_stride3",
)
CONV_FIELDS = (
    "in_addr", "ih", "iw", "ic", "in_pix_stride", "out_addr", "oh", "ow", "oc",
    "out_pix_stride", "w_addr", "bias_addr", "scale_addr", "kh", "kw", "sh", "sw",
    "pad_t", "pad_l", "dh", "dw", "groups",
)
GEMM_FIELDS = (
    "in_addr", "m", "k", "in_row_stride", "out_addr", "n", "out_row_stride",
    "w_addr", "bias_addr", "scale_addr",
)
POOL_FIELDS = (
    "in_addr", "ih", "iw", "c", "in_pix_stride", "out_addr", "oh", "ow",
    "out_pix_stride", "kh", "kw", "sh", "sw", "pad_t", "pad_l",
)
ELT_FIELDS = (
    "a_addr", "b_addr", "out_addr", "rows", "cols", "a_row_stride", "b_row_stride",
    "out_row_stride", "b_col_stride", "a_scale", "b_scale", "out_scale", "b_zp",
)
VEC_FIELDS = (
    "in_addr", "out_addr", "rows", "cols", "in_row_stride", "out_row_stride", "out_scale",
)
NORM_FIELDS = (
    "in_addr", "out_addr", "rows", "cols", "in_row_stride", "out_row_stride",
    "gamma_addr", "beta_addr",
)
BARRIER_FIELDS = ("id",)
TCOPY_FIELDS = (
    "src_addr", "dst_addr", "dst_tile_mask", "dim0", "dim1", "dim2", "dim3",
    "src_stride0", "src_stride1", "src_stride2", "src_stride3",
    "dst_stride0", "dst_stride1", "dst_stride2", "dst_stride3",
)

# header enum prefix of each family (MLIP_<prefix>_<FIELD>) -> field names
FIELD_FAMILIES: dict[str, tuple[str, ...]] = {
    "DMA": DMA_FIELDS,
    "CONV": CONV_FIELDS,
    "GEMM": GEMM_FIELDS,
    "POOL": POOL_FIELDS,
    "ELT": ELT_FIELDS,
    "VEC": VEC_FIELDS,
    "NORM": NORM_FIELDS,
    "BARRIER": BARRIER_FIELDS,
    "TCOPY": TCOPY_FIELDS,
}

OPCODE_FIELDS: dict[Opcode, tuple[str, ...]] = {
    Opcode.NOP: (),
    Opcode.DMA_LOAD: DMA_FIELDS,
    Opcode.DMA_STORE: DMA_FIELDS,
    Opcode.CONV: CONV_FIELDS,
    Opcode.GEMM: GEMM_FIELDS,
    Opcode.POOL: POOL_FIELDS,
    Opcode.ELTWISE: ELT_FIELDS,
    Opcode.ACT: VEC_FIELDS,
    Opcode.CONVERT: VEC_FIELDS,
    Opcode.COPY: VEC_FIELDS,
    Opcode.BARRIER: BARRIER_FIELDS,
    Opcode.TILE_COPY: TCOPY_FIELDS,
    Opcode.SOFTMAX: VEC_FIELDS,
    Opcode.LAYERNORM: NORM_FIELDS,
}

SIGNED_FIELDS = frozenset({"pad_t", "pad_l", "b_zp"})
FLOAT_FIELDS = frozenset({"a_scale", "b_scale", "out_scale"})


def field_type(name: str) -> str:
    """'i', 'f' or 'u' for an arg[] field name."""
    if name in SIGNED_FIELDS:
        return "i"
    if name in FLOAT_FIELDS:
        return "f"
    return "u"


OPCODE_QUEUE: dict[Opcode, Queue | None] = {
    Opcode.NOP: None,  # any queue
    Opcode.DMA_LOAD: Queue.DMA_IN,
    Opcode.DMA_STORE: Queue.DMA_OUT,
    Opcode.CONV: Queue.COMPUTE,
    Opcode.GEMM: Queue.COMPUTE,
    Opcode.POOL: Queue.COMPUTE,
    Opcode.ELTWISE: Queue.COMPUTE,
    Opcode.ACT: Queue.COMPUTE,
    Opcode.CONVERT: Queue.COMPUTE,
    Opcode.COPY: Queue.COMPUTE,
    Opcode.BARRIER: Queue.COMPUTE,
    Opcode.TILE_COPY: Queue.DMA_OUT,
    Opcode.SOFTMAX: Queue.COMPUTE,
    Opcode.LAYERNORM: Queue.COMPUTE,
}

# fparam[] indices
FP_SCALE = 0
FP_ACT_ALPHA = 1
FP_ACT_BETA = 2
FP_RESERVED = 3

# ---- binary structs (little-endian, no implicit padding) ----------------------------------
# mlip_insn: opcode flags func act src_dtype dst_dtype layer in_zp out_zp fparam[4] arg[25]
INSN_STRUCT = struct.Struct("<6BHhh4f25I")
# mlip_header
HEADER_STRUCT = struct.Struct("<4sHHIIQQQIIIIII")
# mlip_stream
STREAM_STRUCT = struct.Struct("<II")
# mlip_model_info without its stream table
MODEL_INFO_HEAD_STRUCT = struct.Struct("<64s10I10Q4Q")
MODEL_INFO_SIZE = MODEL_INFO_HEAD_STRUCT.size + NUM_SECTIONS * MAX_TILES * NUM_QUEUES * 8
# mlip_machine: tiles ocm_bytes page_bytes clock_mhz matrix_rows matrix_cols int8_speedup
# vector_lanes dram_bytes_per_cycle(double) dma_bytes_per_cycle dma_latency matrix_fill
# vector_latency issue_latency barrier_latency link_bytes_per_cycle link_latency reserved[1]
MACHINE_STRUCT = struct.Struct("<8Id8IQ")
MACHINE_FIELDS = (
    "tiles", "ocm_bytes", "page_bytes", "clock_mhz", "matrix_rows", "matrix_cols",
    "int8_speedup", "vector_lanes", "dram_bytes_per_cycle", "dma_bytes_per_cycle",
    "dma_latency", "matrix_fill", "vector_latency", "issue_latency", "barrier_latency",
    "link_bytes_per_cycle", "link_latency",
)
MACHINE_RESERVED = 1
"""u64 reserved words at the end of mlip_machine (0 when written)."""
# mlip_io_desc
IO_DESC_STRUCT = struct.Struct("<64sIIIfiI6IQQQ")
# mlip_layer_desc
LAYER_DESC_STRUCT = struct.Struct("<64sQQIIQ")

STRUCT_SIZES = {
    "mlip_insn": INSN_STRUCT.size,
    "mlip_header": HEADER_STRUCT.size,
    "mlip_stream": STREAM_STRUCT.size,
    "mlip_model_info": MODEL_INFO_SIZE,
    "mlip_machine": MACHINE_STRUCT.size,
    "mlip_io_desc": IO_DESC_STRUCT.size,
    "mlip_layer_desc": LAYER_DESC_STRUCT.size,
}
