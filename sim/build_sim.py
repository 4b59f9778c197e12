"""cffi build script (API mode) of the simulator core: module `mrvl.sim._mlip_sim`.

Run by `pip install` through setup.py's `cffi_modules`.  Compiles csrc/*.c with -O3 -std=c11
-Wall -Wextra -Werror (-ffp-contract=off: the documented fp32 semantics have no fused
multiply-add).  With the environment variable MRVL_SIM_SANITIZE=1 it builds an
AddressSanitizer + UndefinedBehaviorSanitizer variant as the top-level module `_mlip_sim_asan`
instead (the tests build it in a temporary directory; load it with LD_PRELOAD of libasan).
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

CDEF = """
#define MLIP_OK 0
#define MLIP_ERR_FORMAT -1
#define MLIP_ERR_RUN -2
#define MLIP_ERR_ARG -3
#define MLIP_ERR_NOMEM -4

typedef struct mlip_params {
    uint32_t check_deps;
    uint32_t portable;
    uint32_t no_avx512;
    uint32_t threads;
    uint64_t max_insn_work;
    uint64_t max_dram_bytes;
} mlip_params;

typedef struct mlip_stats {
    uint64_t cycles;
    uint64_t init_cycles;
    uint64_t macs_fp16;
    uint64_t macs_int8;
    uint64_t dma_in_bytes;
    uint64_t dma_out_bytes;
    uint64_t matrix_busy;
    uint64_t vector_busy;
    uint64_t dram_busy;
    uint64_t stall[3];
    uint64_t instructions;
    uint64_t tile_copy_bytes;
} mlip_stats;

typedef struct mlip_layer_stats {
    uint64_t start;
    uint64_t end;
    uint64_t macs_fp16;
    uint64_t macs_int8;
    uint64_t dma_in_bytes;
    uint64_t dma_out_bytes;
    uint64_t matrix_cycles;
    uint64_t vector_cycles;
    uint64_t instructions;
    uint64_t tile_copy_bytes;
} mlip_layer_stats;

typedef struct mlip_trace_record {
    uint64_t ready;
    uint64_t start;
    uint64_t end;
    uint64_t busy;
    uint64_t macs;
    uint64_t dram_bytes;
    uint32_t index;
    uint16_t layer;
    uint8_t tile;
    uint8_t queue;
    uint8_t opcode;
    uint8_t section;
    uint8_t int8;
    uint8_t reserved;
} mlip_trace_record;

typedef struct mlip_sim mlip_sim;

void mlip_default_params(mlip_params *params);
uint32_t mlip_crc32c(const uint8_t *data, size_t size);
int mlip_sim_load(mlip_sim **out, const uint8_t *data, size_t size, const mlip_params *params,
                  char *msg, size_t msg_size);
void mlip_sim_free(mlip_sim *sim);
uint8_t *mlip_sim_dram(mlip_sim *sim, uint64_t *size);
uint32_t mlip_sim_num_layers(const mlip_sim *sim);
#define MLIP_RUN_SCHEDULED 0
#define MLIP_RUN_REPLAYED 1
#define MLIP_RUN_TILE_THREADS 2
uint32_t mlip_sim_run_mode(const mlip_sim *sim);
int mlip_sim_run(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                 uint32_t num_layers, char *msg, size_t msg_size);
uint64_t mlip_sim_trace_size(const mlip_sim *sim);
int mlip_sim_run_traced(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                        uint32_t num_layers, mlip_trace_record *trace, uint64_t capacity,
                        uint64_t *recorded, uint64_t *dropped, char *msg, size_t msg_size);
int mlip_f32_to_f16(const float *src, uint16_t *dst, size_t n);
uint64_t mlip_count_nonfinite(const void *data, size_t n, uint32_t elem_bytes);
uint64_t mlip_f16_to_f32(const uint16_t *src, float *dst, size_t n);
"""

SANITIZE = os.environ.get("MRVL_SIM_SANITIZE", "") not in ("", "0")


def _rel(path: Path) -> str:
    """Source paths relative to the working directory when possible (setuptools prefers it);
    absolute for the sanitizer build, which cffi compiles from inside its own tmpdir."""
    if SANITIZE:
        return str(path)
    try:
        return os.path.relpath(path, os.getcwd())
    except ValueError:
        return str(path)


def make_ffibuilder(sanitize: bool = SANITIZE) -> FFI:
    builder = FFI()
    builder.cdef(CDEF)
    cflags = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
              "-fno-strict-aliasing", "-pthread"]
    ldflags: list[str] = []
    module = "mrvl.sim._mlip_sim"
    if sanitize:
        module = "_mlip_sim_asan"
        cflags = [f for f in cflags if f != "-O3"] + [
            "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=undefined",
        ]
        ldflags = ["-fsanitize=address,undefined"]
    builder.set_source(
        module,
        '#include "mlip_sim.h"',
        sources=[_rel(CSRC / "mlip_sim.c")],
        include_dirs=[_rel(CSRC)],
        depends=[_rel(CSRC / "mlip_sim.h"), _rel(CSRC / "mlip_isa.h")],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        libraries=["m", "pthread"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
