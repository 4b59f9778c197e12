/*
 * mlip_isa.h -- the mlip ISA and model binary contract (see docs/isa.md).
 *
 * This header is the single source of truth for opcodes, instruction field layouts, limits
 * and the binary structs.  mrvl/mlip_isa.py mirrors it and tests/test_isa_header.py parses this
 * file and checks that the two agree, so keep every constant a plain `#define NAME value` or an
 * enum entry `NAME = value,` on its own line.
 *
 * Everything in a binary is little-endian; every struct has a fixed size (checked by the
 * _Static_asserts at the end and by the Python mirror).
 */
#ifndef MLIP_ISA_H
#define MLIP_ISA_H

#include <stdint.h>

/* ---- versions and identification ---------------------------------------------------- */
#define MLIP_MAGIC "MRVL"
#define MLIP_VERSION_MAJOR 1
#define MLIP_VERSION_MINOR 4
#define MLIP_ARCH_CN10K 16

/* ---- limits --------------------------------------------------------------------------- */
#define MLIP_MAX_TILES 8
#define MLIP_NUM_QUEUES 3
#define MLIP_NUM_SECTIONS 3
#define MLIP_MAX_IO 32
#define MLIP_MAX_RANK 6
#define MLIP_NAME_LEN 64
#define MLIP_MAX_LAYERS 65535
#define MLIP_LAYER_NONE 65535
#define MLIP_MAX_DIM 16777215
#define MLIP_MAX_KERNEL 255
#define MLIP_MAX_STRIDE 255
#define MLIP_MAX_PAD 65535
#define MLIP_MAX_INSNS_PER_STREAM 16777216
#define MLIP_MAX_DRAM_BYTES 4294967295u
#define MLIP_ADDR_NONE 4294967295u
#define MLIP_DMA_DIMS 4
#define MLIP_INSN_BYTES 128
#define MLIP_INSN_ARGS 25
#define MLIP_INSN_FPARAMS 4
#define MLIP_WEIGHTS_ALIGN 64
#define MLIP_MAX_INT8_K 65536

/* ---- machine description: defaults of the mlip_machine record (docs/isa.md section 4) --- */
#define MLIP_DEFAULT_OCM_SIZE 1048576
#define MLIP_DEFAULT_PAGE_SIZE 16384
#define MLIP_OCM_GRANULE 16
#define MLIP_DRAM_GRANULE 16
#define MLIP_DEFAULT_CLOCK_MHZ 1000
#define MLIP_DEFAULT_MATRIX_ROWS 16
#define MLIP_DEFAULT_MATRIX_COLS 16
#define MLIP_DEFAULT_INT8_SPEEDUP 2
#define MLIP_DEFAULT_VECTOR_LANES 32
#define MLIP_DEFAULT_DRAM_BYTES_PER_CYCLE 64
#define MLIP_DEFAULT_DMA_BYTES_PER_CYCLE 32
#define MLIP_DEFAULT_DMA_LATENCY 200
#define MLIP_DEFAULT_MATRIX_FILL 32
#define MLIP_DEFAULT_VECTOR_LATENCY 8
#define MLIP_DEFAULT_ISSUE_LATENCY 1
#define MLIP_DEFAULT_BARRIER_LATENCY 50
#define MLIP_DEFAULT_LINK_BYTES_PER_CYCLE 64
#define MLIP_DEFAULT_LINK_LATENCY 20

/* ---- machine description: the ranges a binary's mlip_machine record must be in ---------- */
#define MLIP_MAX_OCM_BYTES 1073741824
#define MLIP_MAX_CLOCK_MHZ 100000
#define MLIP_MAX_MACHINE_WIDTH 65536
#define MLIP_MAX_MACHINE_LATENCY 1000000
#define MLIP_MIN_DRAM_MILLIBYTES_PER_CYCLE 1

/* ---- enums ---------------------------------------------------------------------------- */
enum mlip_opcode {
    MLIP_OP_NOP = 0,
    MLIP_OP_DMA_LOAD = 1,
    MLIP_OP_DMA_STORE = 2,
    MLIP_OP_CONV = 3,
    MLIP_OP_GEMM = 4,
    MLIP_OP_POOL = 5,
    MLIP_OP_ELTWISE = 6,
    MLIP_OP_ACT = 7,
    MLIP_OP_CONVERT = 8,
    MLIP_OP_COPY = 9,
    MLIP_OP_BARRIER = 10,
    MLIP_OP_TILE_COPY = 11,
    MLIP_OP_SOFTMAX = 16,
    MLIP_OP_LAYERNORM = 17,
    MLIP_NUM_OPCODES = 18,
};

enum mlip_queue {
    MLIP_Q_DMA_IN = 0,
    MLIP_Q_COMPUTE = 1,
    MLIP_Q_DMA_OUT = 2,
};

enum mlip_section {
    MLIP_SEC_INIT = 0,
    MLIP_SEC_MAIN = 1,
    MLIP_SEC_FINISH = 2,
};

enum mlip_dtype {
    MLIP_DT_FP32 = 0,
    MLIP_DT_FP16 = 1,
    MLIP_DT_INT8 = 2,
    MLIP_DT_UINT8 = 3,
    MLIP_DT_INT16 = 4,
    MLIP_DT_UINT16 = 5,
    MLIP_DT_INT32 = 6,
    MLIP_DT_UINT32 = 7,
    MLIP_NUM_DTYPES = 8,
};

enum mlip_layout {
    MLIP_LAYOUT_NONE = 0,
    MLIP_LAYOUT_NCHW = 1,
    MLIP_LAYOUT_NHWC = 2,
};

enum mlip_act {
    MLIP_ACT_NONE = 0,
    MLIP_ACT_RELU = 1,
    MLIP_ACT_RELU6 = 2,
    MLIP_ACT_CLIP = 3,
    MLIP_ACT_SIGMOID = 4,
    MLIP_ACT_LEAKY_RELU = 5,
    MLIP_ACT_TANH = 6,
    MLIP_ACT_SILU = 7,
    MLIP_ACT_GELU_ERF = 10,
    MLIP_ACT_GELU_TANH = 11,
    MLIP_NUM_ACTS = 12,
};

enum mlip_pool_func {
    MLIP_POOL_MAX = 0,
    MLIP_POOL_AVG = 1,
    MLIP_NUM_POOL_FUNCS = 2,
};

enum mlip_eltwise_func {
    MLIP_ELT_ADD = 0,
    MLIP_ELT_SUB = 1,
    MLIP_ELT_MUL = 2,
    MLIP_ELT_MAX = 3,
    MLIP_ELT_MIN = 4,
    MLIP_ELT_DIV = 5, /* format 1.4 */
    MLIP_NUM_ELT_FUNCS = 6,
};

/* instruction flags (mlip_insn.flags) */
enum mlip_flag {
    MLIP_F_POP_PREV = 1,
    MLIP_F_POP_NEXT = 2,
    MLIP_F_PUSH_PREV = 4,
    MLIP_F_PUSH_NEXT = 8,
    MLIP_F_SCALE = 16,
    MLIP_F_COUNT_PAD = 32,
    MLIP_F_ALL = 63,
};

/* ---- instruction field layouts: index into mlip_insn.arg[] ---------------------------- */
/* DMA_LOAD and DMA_STORE (dims[0] outermost .. dims[3] innermost; strides in elements) */
enum mlip_dma_arg {
    MLIP_DMA_DRAM_ADDR = 0,
    MLIP_DMA_OCM_ADDR = 1,
    MLIP_DMA_DIM0 = 2,
    MLIP_DMA_DIM1 = 3,
    MLIP_DMA_DIM2 = 4,
    MLIP_DMA_DIM3 = 5,
    MLIP_DMA_PAD0 = 6,
    MLIP_DMA_PAD1 = 7,
    MLIP_DMA_PAD2 = 8,
    MLIP_DMA_PAD3 = 9,
    MLIP_DMA_SRC_DIM0 = 10,
    MLIP_DMA_SRC_DIM1 = 11,
    MLIP_DMA_SRC_DIM2 = 12,
    MLIP_DMA_SRC_DIM3 = 13,
    MLIP_DMA_DRAM_STRIDE0 = 14,
    MLIP_DMA_DRAM_STRIDE1 = 15,
    MLIP_DMA_DRAM_STRIDE2 = 16,
    MLIP_DMA_DRAM_STRIDE3 = 17,
    MLIP_DMA_OCM_STRIDE0 = 18,
    MLIP_DMA_OCM_STRIDE1 = 19,
    MLIP_DMA_OCM_STRIDE2 = 20,
    MLIP_DMA_OCM_STRIDE3 = 21,
    MLIP_DMA_NUM_ARGS = 22,
};

/* CONV (matrix engine; NHWC input block, OHWI weights, NHWC output block) */
enum mlip_conv_arg {
    MLIP_CONV_IN_ADDR = 0,
    MLIP_CONV_IH = 1,
    MLIP_CONV_IW = 2,
    MLIP_CONV_IC = 3,
    MLIP_CONV_IN_PIX_STRIDE = 4,
    MLIP_CONV_OUT_ADDR = 5,
    MLIP_CONV_OH = 6,
    MLIP_CONV_OW = 7,
    MLIP_CONV_OC = 8,
    MLIP_CONV_OUT_PIX_STRIDE = 9,
    MLIP_CONV_W_ADDR = 10,
    MLIP_CONV_BIAS_ADDR = 11,
    MLIP_CONV_SCALE_ADDR = 12,
    MLIP_CONV_KH = 13,
    MLIP_CONV_KW = 14,
    MLIP_CONV_SH = 15,
    MLIP_CONV_SW = 16,
    MLIP_CONV_PAD_T = 17,
    MLIP_CONV_PAD_L = 18,
    MLIP_CONV_DH = 19,
    MLIP_CONV_DW = 20,
    MLIP_CONV_GROUPS = 21,
    MLIP_CONV_NUM_ARGS = 22,
};

/* GEMM (matrix engine; out[M][N] = in[M][K] . W[N][K]^T + bias[N]) */
enum mlip_gemm_arg {
    MLIP_GEMM_IN_ADDR = 0,
    MLIP_GEMM_M = 1,
    MLIP_GEMM_K = 2,
    MLIP_GEMM_IN_ROW_STRIDE = 3,
    MLIP_GEMM_OUT_ADDR = 4,
    MLIP_GEMM_N = 5,
    MLIP_GEMM_OUT_ROW_STRIDE = 6,
    MLIP_GEMM_W_ADDR = 7,
    MLIP_GEMM_BIAS_ADDR = 8,
    MLIP_GEMM_SCALE_ADDR = 9,
    MLIP_GEMM_NUM_ARGS = 10,
};

/* POOL (vector engine; NHWC blocks; func = mlip_pool_func) */
enum mlip_pool_arg {
    MLIP_POOL_IN_ADDR = 0,
    MLIP_POOL_IH = 1,
    MLIP_POOL_IW = 2,
    MLIP_POOL_C = 3,
    MLIP_POOL_IN_PIX_STRIDE = 4,
    MLIP_POOL_OUT_ADDR = 5,
    MLIP_POOL_OH = 6,
    MLIP_POOL_OW = 7,
    MLIP_POOL_OUT_PIX_STRIDE = 8,
    MLIP_POOL_KH = 9,
    MLIP_POOL_KW = 10,
    MLIP_POOL_SH = 11,
    MLIP_POOL_SW = 12,
    MLIP_POOL_PAD_T = 13,
    MLIP_POOL_PAD_L = 14,
    MLIP_POOL_NUM_ARGS = 15,
};

/* ELTWISE (vector engine; 2-D blocks; func = mlip_eltwise_func) */
enum mlip_elt_arg {
    MLIP_ELT_A_ADDR = 0,
    MLIP_ELT_B_ADDR = 1,
    MLIP_ELT_OUT_ADDR = 2,
    MLIP_ELT_ROWS = 3,
    MLIP_ELT_COLS = 4,
    MLIP_ELT_A_ROW_STRIDE = 5,
    MLIP_ELT_B_ROW_STRIDE = 6,
    MLIP_ELT_OUT_ROW_STRIDE = 7,
    MLIP_ELT_B_COL_STRIDE = 8,
    MLIP_ELT_A_SCALE = 9,
    MLIP_ELT_B_SCALE = 10,
    MLIP_ELT_OUT_SCALE = 11,
    MLIP_ELT_B_ZP = 12,
    MLIP_ELT_NUM_ARGS = 13,
};

/* ACT, CONVERT and COPY (vector engine; 2-D blocks) */
enum mlip_vec_arg {
    MLIP_VEC_IN_ADDR = 0,
    MLIP_VEC_OUT_ADDR = 1,
    MLIP_VEC_ROWS = 2,
    MLIP_VEC_COLS = 3,
    MLIP_VEC_IN_ROW_STRIDE = 4,
    MLIP_VEC_OUT_ROW_STRIDE = 5,
    MLIP_VEC_OUT_SCALE = 6,
    MLIP_VEC_NUM_ARGS = 7,
};

/* LAYERNORM (vector engine; 2-D blocks, each row normalised over its cols; gamma and beta
 * are fp32 arrays of cols elements; epsilon in fparam[MLIP_FP_ACT_ALPHA]) */
enum mlip_norm_arg {
    MLIP_NORM_IN_ADDR = 0,
    MLIP_NORM_OUT_ADDR = 1,
    MLIP_NORM_ROWS = 2,
    MLIP_NORM_COLS = 3,
    MLIP_NORM_IN_ROW_STRIDE = 4,
    MLIP_NORM_OUT_ROW_STRIDE = 5,
    MLIP_NORM_GAMMA_ADDR = 6,
    MLIP_NORM_BETA_ADDR = 7,
    MLIP_NORM_NUM_ARGS = 8,
};

/* BARRIER (compute queue of every tile of the model) */
enum mlip_barrier_arg {
    MLIP_BARRIER_ID = 0,
    MLIP_BARRIER_NUM_ARGS = 1,
};

/* TILE_COPY (DMA_OUT queue): a 4-D box bit copy from the issuing tile's OCM to the OCM of
 * every tile in dst_tile_mask (bit i = tile tile_start + i; several bits = broadcast; the
 * issuing tile's own bit = a local copy); strides in elements of src_dtype (== dst_dtype) */
enum mlip_tile_copy_arg {
    MLIP_TCOPY_SRC_ADDR = 0,
    MLIP_TCOPY_DST_ADDR = 1,
    MLIP_TCOPY_DST_TILE_MASK = 2,
    MLIP_TCOPY_DIM0 = 3,
    MLIP_TCOPY_DIM1 = 4,
    MLIP_TCOPY_DIM2 = 5,
    MLIP_TCOPY_DIM3 = 6,
    MLIP_TCOPY_SRC_STRIDE0 = 7,
    MLIP_TCOPY_SRC_STRIDE1 = 8,
    MLIP_TCOPY_SRC_STRIDE2 = 9,
    MLIP_TCOPY_SRC_STRIDE3 = 10,
    MLIP_TCOPY_DST_STRIDE0 = 11,
    MLIP_TCOPY_DST_STRIDE1 = 12,
    MLIP_TCOPY_DST_STRIDE2 = 13,
    MLIP_TCOPY_DST_STRIDE3 = 14,
    MLIP_TCOPY_NUM_ARGS = 15,
};

/* fparam[] meaning (all opcodes) */
enum mlip_fparam {
    MLIP_FP_SCALE = 0,
    MLIP_FP_ACT_ALPHA = 1,
    MLIP_FP_ACT_BETA = 2,
    MLIP_FP_RESERVED = 3,
};

/* ---- binary structs ------------------------------------------------------------------- */
/* One instruction: 128 bytes. */
typedef struct mlip_insn {
    uint8_t opcode;     /* mlip_opcode */
    uint8_t flags;      /* mlip_flag bits */
    uint8_t func;       /* pool / eltwise function */
    uint8_t act;        /* fused activation, mlip_act */
    uint8_t src_dtype;  /* mlip_dtype of the (first) input */
    uint8_t dst_dtype;  /* mlip_dtype of the output */
    uint16_t layer;     /* index into the layer table, MLIP_LAYER_NONE if none */
    int16_t in_zp;      /* zero point of the input (integer types) */
    int16_t out_zp;     /* zero point of the output (integer types) */
    float fparam[MLIP_INSN_FPARAMS];
    uint32_t arg[MLIP_INSN_ARGS];
} mlip_insn;

/* File header: 64 bytes at offset 0. */
typedef struct mlip_header {
    char magic[4];             /* "MRVL" */
    uint16_t version_major;
    uint16_t version_minor;
    uint32_t header_size;      /* sizeof(mlip_header) */
    uint32_t metadata_size;    /* bytes from the end of the header to the payload */
    uint64_t payload_size;     /* code + weights bytes */
    uint64_t total_size;       /* header + metadata + payload */
    uint64_t model_id;
    uint32_t arch;             /* MLIP_ARCH_CN10K */
    uint32_t flags;            /* reserved, 0 */
    uint32_t metadata_crc;     /* CRC32C of the metadata bytes */
    uint32_t payload_crc;      /* CRC32C of the payload bytes */
    uint32_t header_crc;       /* CRC32C of the header with header_crc = 0 */
    uint32_t reserved;
} mlip_header;

/* One instruction stream (section, tile, queue) inside the code area. */
typedef struct mlip_stream {
    uint32_t first;            /* index of the first instruction in the code area */
    uint32_t count;            /* number of instructions */
} mlip_stream;

/* Model info: first thing in the metadata. */
typedef struct mlip_model_info {
    char name[MLIP_NAME_LEN];
    uint32_t tile_start;
    uint32_t tile_end;         /* inclusive */
    uint32_t batch;
    uint32_t num_inputs;
    uint32_t num_outputs;
    uint32_t num_layers;
    uint32_t ocm_start;        /* OCM byte range [ocm_start, ocm_end) every tile uses */
    uint32_t ocm_end;
    uint32_t page_size;
    uint32_t num_insns;        /* instructions in the code area */
    uint64_t code_size;        /* num_insns * MLIP_INSN_BYTES */
    uint64_t weights_size;     /* bytes of the weights section (payload after the code) */
    uint64_t dram_size;        /* size of the flat DRAM space */
    uint64_t input_offset;     /* DRAM regions: [offset, offset + size) */
    uint64_t input_size;
    uint64_t output_offset;
    uint64_t output_size;
    uint64_t weights_offset;   /* the weights section is copied here at load */
    uint64_t scratch_offset;
    uint64_t scratch_size;
    uint64_t reserved[4];
    mlip_stream streams[MLIP_NUM_SECTIONS][MLIP_MAX_TILES][MLIP_NUM_QUEUES];
} mlip_model_info;

/* Machine description: right after the model info in the metadata (format 1.1 on; the two
 * link fields took reserved[0] in 1.2).  The simulator's timing model reads every constant
 * from here; it changes cycle counts only.
 * dram_bytes_per_cycle is an IEEE-754 double so that fractional bandwidths (41.6 GB/s) are
 * exact; integral values give the same cycle counts as integer arithmetic. */
typedef struct mlip_machine {
    uint32_t tiles;            /* tile_end - tile_start + 1 */
    uint32_t ocm_bytes;        /* OCM per tile; ocm_end <= ocm_bytes */
    uint32_t page_bytes;       /* == mlip_model_info.page_size */
    uint32_t clock_mhz;
    uint32_t matrix_rows;      /* matrix engine input channels per cycle */
    uint32_t matrix_cols;      /* matrix engine output channels per cycle */
    uint32_t int8_speedup;     /* int8 MACs per cycle over fp16 */
    uint32_t vector_lanes;     /* vector engine elements per cycle */
    double dram_bytes_per_cycle;  /* shared by all tiles; finite, > 0 */
    uint32_t dma_bytes_per_cycle; /* one tile's DMA engine */
    uint32_t dma_latency;      /* cycles from issue to the first byte */
    uint32_t matrix_fill;      /* fill/drain cycles of each matrix instruction */
    uint32_t vector_latency;   /* pipeline latency of each vector instruction */
    uint32_t issue_latency;    /* cycles to issue any instruction */
    uint32_t barrier_latency;  /* cycles from the last arrival to the release */
    uint32_t link_bytes_per_cycle; /* tile-to-tile link: one tile's ingress port (format 1.2) */
    uint32_t link_latency;     /* TILE_COPY cycles from issue to the first byte (format 1.2) */
    uint64_t reserved[1];
} mlip_machine;

/* Input / output descriptor. */
typedef struct mlip_io_desc {
    char name[MLIP_NAME_LEN];
    uint32_t dtype;            /* mlip_dtype in DRAM */
    uint32_t layout;           /* mlip_layout of shape */
    uint32_t quantize;         /* 1: integer dtype quantised with scale / zero_point */
    float scale;               /* input: q = x * scale; output: x = (q - zp) * scale */
    int32_t zero_point;
    uint32_t rank;
    uint32_t shape[MLIP_MAX_RANK];
    uint64_t dram_offset;      /* absolute DRAM address of the dense tensor */
    uint64_t size_bytes;       /* product(shape) * dtype size */
    uint64_t reserved;
} mlip_io_desc;

/* Layer table entry, for the per-layer report. */
typedef struct mlip_layer_desc {
    char name[MLIP_NAME_LEN];
    uint64_t macs;             /* compiler's count of multiply-adds */
    uint64_t dram_bytes;       /* compiler's count of DMA bytes */
    uint32_t kind;             /* free-form layer kind code (compiler's choice) */
    uint32_t reserved0;
    uint64_t reserved1;
} mlip_layer_desc;

_Static_assert(sizeof(mlip_insn) == MLIP_INSN_BYTES, "mlip_insn size");
_Static_assert(sizeof(mlip_header) == 64, "mlip_header size");
_Static_assert(sizeof(mlip_stream) == 8, "mlip_stream size");
_Static_assert(sizeof(mlip_model_info) == 792, "mlip_model_info size");
_Static_assert(sizeof(mlip_machine) == 80, "mlip_machine size");
_Static_assert(sizeof(mlip_io_desc) == 136, "mlip_io_desc size");
_Static_assert(sizeof(mlip_layer_desc) == 96, "mlip_layer_desc size");

#endif /* MLIP_ISA_H */
