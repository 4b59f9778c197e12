/*
 * mlip_sim.h -- public API of the mlip simulator core (C11, no globals).
 *
 * One opaque handle per loaded model.  Every function returns MLIP_OK or a negative status
 * and writes a NUL-terminated message into the caller's buffer.  The core never reads or
 * writes outside its own buffers whatever the binary says: mlip_sim_load validates the whole
 * binary before anything runs.  Keep this file free of preprocessor conditionals: cffi's
 * cdef in sim/build_sim.py repeats the declarations below.
 */
#ifndef MLIP_SIM_H
#define MLIP_SIM_H

#include <stddef.h>
#include <stdint.h>

#define MLIP_OK 0
#define MLIP_ERR_FORMAT (-1)  /* the binary is malformed (BinaryFormatError) */
#define MLIP_ERR_RUN (-2)     /* the program misbehaved at run time (SimulationError) */
#define MLIP_ERR_ARG (-3)     /* bad API argument or parameter */
#define MLIP_ERR_NOMEM (-4)   /* out of memory */

typedef struct mlip_params {
    uint32_t check_deps;       /* 1: enforce the dependency rule (default) */
    uint32_t portable;         /* 1: use the portable C kernels, not the AVX2 ones */
    uint32_t no_avx512;        /* 1: the AVX2 kernels even where the CPU has AVX-512 */
    uint32_t threads;          /* host threads (0, 1: none; <= 64; at most the CPUs online are
                                * started): the tiles between barriers once two runs in a row
                                * passed the dependency check, and the parts of large CONVs
                                * otherwise */
    uint64_t max_insn_work;    /* per-instruction work limit (MACs / taps / elements) */
    uint64_t max_dram_bytes;   /* largest dram_size the simulator accepts */
} mlip_params;

typedef struct mlip_stats {
    uint64_t cycles;           /* main + finish of the last inference */
    uint64_t init_cycles;
    uint64_t macs_fp16;
    uint64_t macs_int8;
    uint64_t dma_in_bytes;
    uint64_t dma_out_bytes;
    uint64_t matrix_busy;      /* summed over tiles */
    uint64_t vector_busy;
    uint64_t dram_busy;
    uint64_t stall[3];         /* per queue kind, summed over tiles */
    uint64_t instructions;
    uint64_t tile_copy_bytes;  /* TILE_COPY bytes written into destination OCMs */
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

/* One executed instruction of a traced run (mlip_sim_run_traced): where and when it ran.
 * ready <= start <= end; start - ready is the cycles its queue waited (tokens, DRAM or a
 * barrier). */
typedef struct mlip_trace_record {
    uint64_t ready;            /* cycle its queue became free (the previous one's end) */
    uint64_t start;            /* cycle it started */
    uint64_t end;              /* cycle it finished */
    uint64_t busy;             /* engine cycles of its cost (matrix / vector work) */
    uint64_t macs;
    uint64_t dram_bytes;       /* DMA: DRAM-side bytes */
    uint32_t index;            /* position in its stream (section, tile, queue) */
    uint16_t layer;            /* MLIP_LAYER_NONE if none */
    uint8_t tile;              /* absolute tile number */
    uint8_t queue;             /* 0 dma_in, 1 compute, 2 dma_out */
    uint8_t opcode;
    uint8_t section;           /* 1 main, 2 finish */
    uint8_t int8;              /* 1: its MACs are int8 */
    uint8_t reserved;
} mlip_trace_record;

typedef struct mlip_sim mlip_sim;

void mlip_default_params(mlip_params *params);
uint32_t mlip_crc32c(const uint8_t *data, size_t size);
int mlip_sim_load(mlip_sim **out, const uint8_t *data, size_t size, const mlip_params *params,
                  char *msg, size_t msg_size);
void mlip_sim_free(mlip_sim *sim);
/* The model's DRAM (dram_size bytes).  The host writes inputs into the input region through
 * it at any time; it may write the weights region too, but only through a pointer returned
 * since the last mlip_sim_run: each call tells the core that the weights may change, and the
 * converted weights it caches are compared with DRAM again at the next run. */
uint8_t *mlip_sim_dram(mlip_sim *sim, uint64_t *size);
uint32_t mlip_sim_num_layers(const mlip_sim *sim);
/* How the last run's main section ran (MLIP_RUN_*): scheduled (the first run, every run the
 * dependency rule is checked in, traced runs), replayed from its recorded schedule on one
 * thread, or replayed with tiles on threads (threads > 1, after two checked runs in a row) */
#define MLIP_RUN_SCHEDULED 0
#define MLIP_RUN_REPLAYED 1
#define MLIP_RUN_TILE_THREADS 2
uint32_t mlip_sim_run_mode(const mlip_sim *sim);
int mlip_sim_run(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                 uint32_t num_layers, char *msg, size_t msg_size);
/* Records a run of mlip_sim_run writes: the instructions of main and finish. */
uint64_t mlip_sim_trace_size(const mlip_sim *sim);
/* mlip_sim_run that also writes one record per executed instruction into trace[0..capacity)
 * in execution order; *recorded = records written, *dropped = records that did not fit
 * (never written). Outputs and cycles are those of mlip_sim_run. */
int mlip_sim_run_traced(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                        uint32_t num_layers, mlip_trace_record *trace, uint64_t capacity,
                        uint64_t *recorded, uint64_t *dropped, char *msg, size_t msg_size);

/* Host conversion fp32 -> fp16 (round to nearest even) of src[0..n) into dst: returns 0, or
 * 1 when an input is NaN (dst is then incomplete: the caller converts NaN payloads itself). */
int mlip_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/* Infinities and NaNs (all exponent bits set) among the n fp16 (elem_bytes 2) or fp32
 * (elem_bytes 4) values at data; 0 for any other elem_bytes. */
uint64_t mlip_count_nonfinite(const void *data, size_t n, uint32_t elem_bytes);

/* Host conversion fp16 -> fp32 (exact; NaN payloads kept) of src[0..n) into dst: returns the
 * number of infinities and NaNs among the inputs (what mlip_count_nonfinite counts). */
uint64_t mlip_f16_to_f32(const uint16_t *src, float *dst, size_t n);

#endif /* MLIP_SIM_H */
