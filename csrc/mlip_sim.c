/*
 * mlip_sim.c -- the mlip simulator core: load + validate a model binary, execute its
 * per-tile instruction streams functionally (bit-exact fp16 / int8 semantics of docs/isa.md),
 * check the dependency rule with vector clocks and shadow memory, and estimate cycles.
 *
 * Invariants:
 *  - no globals; all state hangs off the mlip_sim handle;
 *  - mlip_sim_load validates every field and every byte range of every instruction before
 *    anything runs, so the executors index their buffers without further checks;
 *  - timing never influences functional results (the scheduler only picks among legal
 *    interleavings, and the dependency checker rejects programs whose result would depend
 *    on the interleaving);
 *  - the bytes an instruction accesses depend only on its fields, and the schedule only on
 *    the program and the machine record, never on data: every inference of a handle makes
 *    the same accesses in the same order.  So once two inferences in a row have passed the
 *    dependency check, every later one would too (it starts from the same shadow state,
 *    shifted by one inference's sequence numbers), and the check is skipped (deps_now).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "mlip_sim.h"
#include "mlip_isa.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <emmintrin.h> /* SSE2: part of the x86-64 baseline */
#endif

#define NS_MAX (MLIP_MAX_TILES * MLIP_NUM_QUEUES)
#define NCH 4 /* token channels per tile */

static const char *const OP_NAMES[MLIP_NUM_OPCODES] = {
    "NOP", "DMA_LOAD", "DMA_STORE", "CONV", "GEMM", "POOL",
    "ELTWISE", "ACT", "CONVERT", "COPY", "BARRIER", "TILE_COPY",
    [MLIP_OP_SOFTMAX] = "SOFTMAX", [MLIP_OP_LAYERNORM] = "LAYERNORM",
};
static const char *const Q_NAMES[MLIP_NUM_QUEUES] = {"dma_in", "compute", "dma_out"};
static const char *const SEC_NAMES[MLIP_NUM_SECTIONS] = {"init", "main", "finish"};
static const uint32_t DT_SIZE[MLIP_NUM_DTYPES] = {4, 2, 1, 1, 2, 2, 4, 4};

/* 8 fp32 lanes (GCC vector extension): kernels written once and compiled per target */
typedef float v8f __attribute__((vector_size(32)));
/* 16 fp32 lanes: the same bodies' wider blocks where compiled for AVX-512F */
typedef float v16f __attribute__((vector_size(64)));
/* 4 fp32 lanes: the blocks of a body compiled for the x86-64 baseline (SSE2) */
typedef float v4f __attribute__((vector_size(16)));

/* r = a OP b with a as the first source operand, on a float or any of the vectors above.
 * Where both operands are NaN, x86 returns the first source's NaN, so a NaN result's sign
 * and payload depend on the operand order; C lets the compiler commute `a + b` and `a * b`,
 * and gcc does (with SSE2's two-operand addps, whose second source may be memory, it added an
 * accumulator kept in memory as the second source).  An asm cannot be commuted.  sfx: "ps"
 * (vectors) or "ss" (a float); vex: a constant of the compiled instance, nonzero where it is
 * compiled for AVX2 or later (the VEX / EVEX three-operand form, xmm to zmm), zero for the
 * baseline (the SSE form, a float or v4f only); the other form's asm, whose operands need not
 * fit the target, is dead code after inlining (the builds use -O1 or more).  Not x86-64:
 * plain C. */
#if defined(__x86_64__)
#define OP_FIRST(vex, insn, op, r, a, b)                                                   \
    do {                                                                                   \
        if (vex) {                                                                         \
            __asm__("v" insn " %2, %1, %0" : "=v"(r) : "v"(a), "vm"(b));                   \
        } else {                                                                           \
            (r) = (a);                                                                     \
            __asm__(insn " %1, %0" : "+x"(r) : "x"(b));                                    \
        }                                                                                  \
    } while (0)
#else
#define OP_FIRST(vex, insn, op, r, a, b) ((r) = (a) op (b))
#endif
#define ADD_FIRST(vex, sfx, r, a, b) OP_FIRST(vex, "add" sfx, +, r, a, b)
#define SUB_FIRST(vex, sfx, r, a, b) OP_FIRST(vex, "sub" sfx, -, r, a, b)
#define MUL_FIRST(vex, sfx, r, a, b) OP_FIRST(vex, "mul" sfx, *, r, a, b)

/* ---- shadow memory entries ------------------------------------------------------------- */
/* Shadow memory for the dependency rule, one entry per granule, stored field by field so
 * the common bulk operations (scan a range for its writers, fill a range with a reader's
 * sequence number, max-reduce a reader column) are plain vectorisable loops.
 * Sequence numbers are global per stream (instruction count of the stream over every section
 * ever executed, + 1), so an access by an earlier section is ordered by construction: at a
 * section start every stream's vector clock covers all earlier instructions.  0 = none. */
typedef struct shadow {
    uint64_t n;                        /* granules */
    uint64_t base;                     /* byte address of granule 0 (for messages) */
    uint32_t *w;                       /* last writer's sequence number */
    uint8_t *ws;                       /* last writer's stream */
    uint32_t nr;                       /* reader slots */
    uint32_t rstream[MLIP_MAX_TILES];  /* stream of each reader slot */
    uint32_t *r[MLIP_MAX_TILES];       /* per slot: its last read of the granule */
    uint32_t *bm[MLIP_MAX_TILES];      /* per slot: max of r[] over blocks of 64 granules */
    /* per slot, the last range it read, not yet written since: a read of exactly that range
     * again (e.g. the same weights by the next band of a layer) only updates memo_seq; the
     * memo is flushed into r[] before any write overlaps it and at every section start */
    uint64_t memo_g0[MLIP_MAX_TILES];
    uint64_t memo_g1[MLIP_MAX_TILES];
    uint32_t memo_seq[MLIP_MAX_TILES];
    int memo_valid[MLIP_MAX_TILES];
} shadow;

static void shadow_flush(shadow *sh, uint32_t k)
{
    if (!sh->memo_valid[k]) return;
    /* locals: under -fno-strict-aliasing a store to r[] could alias the memo fields */
    uint32_t *r = sh->r[k], *bm = sh->bm[k];
    const uint64_t g0 = sh->memo_g0[k], g1 = sh->memo_g1[k];
    const uint32_t seq = sh->memo_seq[k];
    for (uint64_t g = g0; g <= g1; g++) r[g] = seq;
    for (uint64_t b = g0 >> 6; b <= g1 >> 6; b++) bm[b] = seq;
    sh->memo_valid[k] = 0;
}

typedef struct token {
    uint64_t time;
    uint32_t vc[NS_MAX];
} token;

typedef struct fifo {
    token *buf;
    uint32_t cap;
    uint32_t head;
    uint32_t count;
} fifo;

typedef struct stream_state {
    const mlip_insn *insns;
    uint32_t first;
    uint32_t n;
    uint32_t pc;
    uint64_t ready;
    uint32_t vc[NS_MAX];
} stream_state;

/* The schedule of a section as its first complete run made it.  The schedule depends only
 * on the program and the machine record (see the invariants at the top), so later runs
 * without the dependency check or a trace replay it (run_replay): the same instructions in
 * the same order, with the recorded cycles and statistics. */
typedef struct sec_plan {
    int valid;          /* complete: recorded by a run that succeeded */
    int recording;      /* being recorded (cleared when out of memory) */
    uint64_t t_start;   /* the section started at this cycle ... */
    mlip_stats in;      /* ... with these statistics, */
    uint64_t t_end;     /* and ended at this one */
    mlip_stats out;     /* with these; */
    mlip_layer_stats *lstats; /* the layer statistics after it (main; num_layers entries) */
    uint32_t n, cap;
    uint32_t *idx;      /* the executed instructions but NOPs (global index), in order */
    uint8_t *stream;    /* and their streams (tile * 3 + queue) */
    uint32_t nep, ep_cap;
    uint32_t *ep_end;   /* per epoch (between barriers): the end of its part of idx */
    uint32_t *by_tile;  /* positions in idx, by epoch, then tile, then schedule order */
    uint32_t *tile_end; /* per (epoch, tile): the end of its part of by_tile */
} sec_plan;

/* Per-section execution context. */
typedef struct run_ctx {
    int section;
    int deps;    /* the dependency rule is checked: vector clocks are kept */
    uint32_t base0[NS_MAX];
    uint32_t ns;
    stream_state st[NS_MAX];
    fifo ch[MLIP_MAX_TILES][NCH];
    uint64_t dram_free;
    uint64_t link_free[MLIP_MAX_TILES]; /* when each tile's link ingress port is free */
    uint64_t end;
    mlip_stats *stats;
    sec_plan *plan;  /* the schedule being recorded, or NULL */
} run_ctx;

#define PREP_KEYS 6
typedef struct prep_cache {
    int valid;
    uint32_t tile;      /* the tile whose OCM bytes [lo, hi) it holds */
    uint64_t lo;
    uint64_t hi;
    uint64_t key[PREP_KEYS];
    float *buf;
    size_t cap;
} prep_cache;

/* The buffers an instruction works in, one set per host thread that executes instructions
 * (scratch[0]: the calling thread; scratch[k]: worker k - 1 during a tile-parallel run).
 * Only that thread touches its set, and nothing in it outlives the instruction except the
 * converted-input cache xcache (see prep_lookup). */
typedef struct scratch {
    prep_cache xcache;     /* the last CONV's converted input (any tile's) */
    float *fbuf;
    size_t fbuf_cap;
    float *wbuf;
    size_t wbuf_cap;
    float *wconv;          /* a CONV's fp32 weights, converted from the cache */
    size_t wconv_cap;
    int32_t *ibuf;
    size_t ibuf_cap;
    int32_t *iwbuf;
    size_t iwbuf_cap;
    uint8_t *tbuf;         /* TILE_COPY staging: the source box, gathered */
    size_t tbuf_cap;
    int nested;            /* runs inside a pool part: no threads of its own */
} __attribute__((aligned(64))) scratch; /* threads' sets never share a cache line */

/* transposed fp16 weights shared by all tiles and kept across inferences, validated by
 * comparing the raw fp16 bytes; up to WCACHE_BUDGET bytes (raw + transposed), least recently
 * used evicted.  fp16, not fp32: the weights of an inference are more than the host's caches
 * hold, and each CONV converts its block into a scratch that stays in cache (exact) */
#define WCACHE_BUDGET ((size_t)256 << 20)
typedef struct wcache_entry {
    int valid;
    uint64_t key[PREP_KEYS];
    uint8_t *raw;
    size_t raw_cap;
    size_t raw_len;
    uint16_t *buf;          /* the transposed fp16 weights */
    size_t cap;
    uint64_t stamp;
    int finite;   /* every weight is finite (enables the zero-padded fast path) */
    uint64_t dram_src;     /* DRAM weights bytes equal to raw (WPROV_NONE: none known) */
    uint64_t checked_gen;  /* host_gen when dram_src was compared (no host write since) */
    uint64_t fill;         /* which filling of this slot (0: empty) */
    uint32_t slot;         /* its index in mlip_sim.wc */
    uint32_t pins;         /* instructions using its buffer now (never evicted then) */
} wcache_entry;

/* Where a tile's OCM weights came from: [ocm_lo, ocm_hi) holds a plain copy of the DRAM
 * weights region at dram_lo (a contiguous DMA_LOAD without conversion), and no OCM write
 * overlapping it has happened since.  The program cannot write the weights region and the
 * host writes DRAM only between inferences, so within one inference those OCM bytes equal
 * the DRAM bytes: a CONV's weights are checked against the cache once per inference from
 * DRAM instead of once per tile from OCM.  Emptied at the start of every inference. */
#define WPROV_MAX 64
#define WPROV_NONE UINT64_MAX
typedef struct wprov_entry {
    uint64_t ocm_lo, ocm_hi, dram_lo;
} wprov_entry;
typedef struct wprov_table {
    wprov_entry e[WPROV_MAX];
    uint32_t n;
    uint32_t next;  /* the slot a new entry replaces when the table is full */
} wprov_table;

/* A tile's OCM weights found equal to a cache entry: [ocm_lo, ocm_hi) matched entry `idx`
 * (while it holds filling `fill`) and no OCM write overlapping it has happened since, so the
 * bytes are still those of the entry (only the tile's own instructions and TILE_COPYs write
 * its OCM, the host never does): weights that stay in OCM across inferences are compared
 * once, not at every use. */
typedef struct wver_entry {
    uint64_t ocm_lo, ocm_hi, fill;
    uint32_t idx;
} wver_entry;
typedef struct wver_table {
    wver_entry e[WPROV_MAX];
    uint32_t n;
    uint32_t next;
} wver_table;

/* OCM bytes kept across inferences: [ocm_lo, ocm_hi) of a tile equals the DRAM weights bytes
 * at ocm + delta (a plain DMA_LOAD of one run from the weights region put them there), no
 * OCM write overlapping them has happened since (every write cuts the pieces it touches), and
 * the host has not asked for the DRAM pointer since (host_gen == wkeep_gen; else the tables
 * are emptied at the next run).  A DMA_LOAD of such bytes again copies only what is not kept
 * (the copy's result is the same bytes; its shadow marks and timing are made as before).
 * Pieces never overlap; when a table is full a piece is forgotten (a longer copy later). */
#define WKEEP_MAX 64
#define WKEEP_GAPS 8
typedef struct wkeep_entry {
    uint64_t ocm_lo, ocm_hi, delta;
} wkeep_entry;
typedef struct wkeep_table {
    wkeep_entry e[WKEEP_MAX];
    uint32_t n;
    uint32_t next;  /* the slot a new piece replaces when the table is full */
    uint64_t lo, hi; /* a range holding every piece (a write outside it cuts nothing) */
} wkeep_table;
/* the parts of a DMA_LOAD's OCM run [lo, hi) (offsets from its start) not kept: to copy */
typedef struct wkeep_gaps {
    int use;     /* 0: copy everything */
    uint32_t n;
    uint64_t lo[WKEEP_GAPS], hi[WKEEP_GAPS];
} wkeep_gaps;

/* Worker threads of one handle (mlip_params.threads - 1 of them; the calling thread is the
 * last worker): pool_run hands out the parts of one job, each part exactly once; the parts
 * write disjoint outputs, so the results do not depend on which thread runs which part.
 * A part is told which thread runs it (0: the caller, k: worker k), for its scratch. */
#define MLIP_MAX_THREADS 64
typedef void (*part_fn)(void *ctx, int64_t part, uint32_t thread);

struct pool;
typedef struct pool_arg {
    struct pool *p;
    uint32_t thread;
} pool_arg;

typedef struct pool {
    uint32_t n;                       /* worker threads started */
    pthread_t th[MLIP_MAX_THREADS];
    pool_arg arg[MLIP_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t go;
    pthread_cond_t done;
    uint64_t gen;                     /* job number, bumped by pool_run */
    int quit;
    part_fn fn;
    void *ctx;
    int64_t parts;
    atomic_llong next;                /* the next part to take */
    int affine;                       /* parts <= threads: part k is thread k's if it comes */
    atomic_int claimed[MLIP_MAX_THREADS]; /* affine: part k taken */
    uint32_t active;                  /* workers inside pool_parts (joined a job) */
} pool;

struct mlip_sim {
    mlip_params p;
    mlip_machine m;                   /* the binary's machine record: every timing constant */
    int has_avx2;
    int has_avx512;                   /* AVX-512F kernels (implies has_avx2) */
    pool pool;
    int pool_init;                    /* pool.mu / go / done initialised */
    /* During a tile-parallel run (par), the tables several threads may touch change only
     * under a lock: the weights cache under wc_held, tile t's wkeep / wprov / wver tables
     * under tlock[t], the error message under msg_mu (initialised with the pool) */
    int par;
    pthread_mutex_t msg_mu;
    struct {
        atomic_flag held;
    } __attribute__((aligned(64))) wc_held, tlock[MLIP_MAX_TILES];
    wprov_table wprov[MLIP_MAX_TILES];
    wver_table wver[MLIP_MAX_TILES];
    wkeep_table wkeep[MLIP_MAX_TILES];
    uint64_t wkeep_gen;               /* host_gen the wkeep pieces were made under */
    uint64_t wc_fills;                /* weights cache entries filled so far */
    uint64_t host_gen;                /* mlip_sim_dram calls: the host may have written the
                                       * weights region only when this changed */
    wcache_entry **wc;                /* wc_n entries (valid or free slots) */
    uint32_t wc_n;
    uint32_t wc_cap;
    size_t wc_bytes;                  /* raw_cap + cap of every entry */
    uint64_t wc_clock;
    mlip_header hdr;
    mlip_model_info info;
    mlip_io_desc io[2 * MLIP_MAX_IO];
    mlip_layer_desc *layers;
    mlip_layer_stats *lstats;
    uint32_t num_layers;
    mlip_insn *code;
    uint32_t num_insns;
    uint32_t tile0;
    uint32_t ntiles;
    uint8_t *dram;
    uint64_t dram_size;
    uint8_t *ocm[MLIP_MAX_TILES];
    shadow osh[MLIP_MAX_TILES];       /* OCM of each tile; reader slots = its 3 queues */
    uint64_t osh_n;
    shadow dsh[2];                    /* DRAM output, scratch; reader slots = dma_in queues */
    uint32_t pushes[MLIP_NUM_SECTIONS][MLIP_MAX_TILES][NCH];
    uint32_t base[NS_MAX];            /* instructions each stream has executed so far */
    uint32_t init_end[NS_MAX];        /* base after the init section */
    uint32_t run_start[NS_MAX];       /* base at the start of the current inference */
    scratch scr[MLIP_MAX_THREADS];    /* per executing thread (see scratch) */
    mlip_stats stats;
    int deps_now;                     /* check the dependency rule in this section */
    sec_plan plan[MLIP_NUM_SECTIONS]; /* main and finish (see sec_plan) */
    uint32_t run_mode;                /* how the last run's main section ran: MLIP_RUN_* */
    uint32_t clean_runs;              /* inferences in a row that passed it */
    char *msg;
    size_t msg_size;
    /* tracing (mlip_sim_run_traced only; tracing == 0 otherwise: no record is made) */
    int tracing;
    mlip_trace_record *trace;
    uint64_t trace_cap;
    uint64_t trace_n;       /* records produced, written or not */
};

/* ---- small helpers ---------------------------------------------------------------------- */
static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    _mm_pause();
#endif
}

/* the weights cache (sim->wc and its entries), during a tile-parallel run: a spin lock (a
 * lookup holds it for well under a microsecond, once per CONV; a mutex's sleeps cost more
 * than that), which yields the CPU while another thread fills an entry (weights changed) */
static inline void wc_lock(mlip_sim *sim)
{
    if (!sim->par) return;
    for (uint32_t spins = 1;
         atomic_flag_test_and_set_explicit(&sim->wc_held.held, memory_order_acquire); spins++) {
        if (spins % 1024 == 0) {
            sched_yield();
        } else {
            cpu_relax();
        }
    }
}

static inline void wc_unlock(mlip_sim *sim)
{
    if (sim->par) atomic_flag_clear_explicit(&sim->wc_held.held, memory_order_release);
}

/* tile t's wkeep / wprov / wver tables, during a tile-parallel run: held for a table lookup
 * or update only (well under a microsecond), so a spin lock; taken after wc_lock, never
 * two at once */
static inline void tile_lock(mlip_sim *sim, uint32_t t)
{
    if (!sim->par) return;
    while (atomic_flag_test_and_set_explicit(&sim->tlock[t].held, memory_order_acquire)) {
        cpu_relax();
    }
}

static inline void tile_unlock(mlip_sim *sim, uint32_t t)
{
    if (sim->par) atomic_flag_clear_explicit(&sim->tlock[t].held, memory_order_release);
}

static int fail(mlip_sim *sim, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(mlip_sim *sim, int code, const char *fmt, ...)
{
    if (sim->msg == NULL || sim->msg_size == 0) {
        return code;
    }
    if (sim->par) { /* threads: the first message stays */
        pthread_mutex_lock(&sim->msg_mu);
        if (sim->msg[0] == 0) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(sim->msg, sim->msg_size, fmt, ap);
            va_end(ap);
        }
        pthread_mutex_unlock(&sim->msg_mu);
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sim->msg, sim->msg_size, fmt, ap);
    va_end(ap);
    return code;
}

static inline uint64_t umax64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static inline uint64_t umin64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
/* ceil(bytes / rate) for a validated rate (>= 0.001, finite) and bytes < 2^53: exact for
 * integral rates (IEEE division is correctly rounded), so 64.0 gives cdiv(bytes, 64) */
static inline uint64_t rate_cdiv(uint64_t bytes, double rate)
{
    double q = (double)bytes / rate;
    uint64_t n = (uint64_t)q;
    return (double)n < q ? n + 1 : n;
}

/* a * b, or UINT64_MAX on overflow */
static inline uint64_t smul(uint64_t a, uint64_t b)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        return UINT64_MAX;
    }
    return r;
}

static inline uint64_t sadd(uint64_t a, uint64_t b)
{
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        return UINT64_MAX;
    }
    return r;
}

static inline int dt_is_int(int dt) { return dt >= MLIP_DT_INT8; }
static inline int dt_is_float(int dt) { return dt == MLIP_DT_FP32 || dt == MLIP_DT_FP16; }

/* ---- CRC32C ------------------------------------------------------------------------------ */
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(const uint8_t *p, size_t n)
{
    uint64_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        n--;
    }
    return c32 ^ 0xFFFFFFFFu;
}
#endif

static uint32_t crc32c_sw(const uint8_t *p, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
        }
        table[i] = c;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

uint32_t mlip_crc32c(const uint8_t *data, size_t size)
{
    if (data == NULL) {
        return 0;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        return crc32c_hw(data, size);
    }
#endif
    return crc32c_sw(data, size);
}

/* ---- fp16 <-> fp32, bit exact RNE -------------------------------------------------------- */
static inline float h2f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* subnormal: value = mant * 2^-24, exact in fp32 */
        float f = (float)mant * 5.9604644775390625e-8f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline uint16_t f2h(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = x & 0x80000000u;
    x ^= sign;
    uint32_t o;
    if (x >= 0x47800000u) { /* >= 65536 or inf / nan */
        o = (x > 0x7F800000u) ? 0x7E00u : 0x7C00u;
    } else if (x < 0x38800000u) { /* below the smallest normal half: RNE via fp32 add */
        const uint32_t magic_u = ((127u - 15u) + (23u - 10u) + 1u) << 23;
        float fx, magic;
        memcpy(&fx, &x, 4);
        memcpy(&magic, &magic_u, 4);
        fx += magic;
        uint32_t r;
        memcpy(&r, &fx, 4);
        o = r - magic_u;
    } else {
        uint32_t mant_odd = (x >> 13) & 1u;
        x += 0xC8000FFFu; /* ((15 - 127) << 23) + 0xFFF, mod 2^32 */
        x += mant_odd;
        o = x >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
}

/* ---- element load / store with the documented conversion --------------------------------- */
static inline float ld_elem(const uint8_t *p, int dt)
{
    switch (dt) {
    case MLIP_DT_FP32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case MLIP_DT_FP16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return h2f(h);
    }
    case MLIP_DT_INT8:
        return (float)(int8_t)p[0];
    case MLIP_DT_UINT8:
        return (float)p[0];
    case MLIP_DT_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        return (float)v;
    }
    case MLIP_DT_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return (float)v;
    }
    case MLIP_DT_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        return (float)v;
    }
    default: {
        uint32_t v;
        memcpy(&v, p, 4);
        return (float)v;
    }
    }
}

static inline void st_elem(uint8_t *p, int dt, float v, int zp)
{
    if (dt == MLIP_DT_FP32) {
        memcpy(p, &v, 4);
        return;
    }
    if (dt == MLIP_DT_FP16) {
        uint16_t h = f2h(v);
        memcpy(p, &h, 2);
        return;
    }
    double lo, hi;
    switch (dt) {
    case MLIP_DT_INT8: lo = -128.0; hi = 127.0; break;
    case MLIP_DT_UINT8: lo = 0.0; hi = 255.0; break;
    case MLIP_DT_INT16: lo = -32768.0; hi = 32767.0; break;
    case MLIP_DT_UINT16: lo = 0.0; hi = 65535.0; break;
    case MLIP_DT_INT32: lo = -2147483648.0; hi = 2147483647.0; break;
    default: lo = 0.0; hi = 4294967295.0; break;
    }
    double d = isnan(v) ? (double)zp : (double)rintf(v) + (double)zp;
    if (d < lo) {
        d = lo;
    }
    if (d > hi) {
        d = hi;
    }
    switch (dt) {
    case MLIP_DT_INT8: { int8_t q = (int8_t)d; memcpy(p, &q, 1); break; }
    case MLIP_DT_UINT8: { uint8_t q = (uint8_t)d; memcpy(p, &q, 1); break; }
    case MLIP_DT_INT16: { int16_t q = (int16_t)d; memcpy(p, &q, 2); break; }
    case MLIP_DT_UINT16: { uint16_t q = (uint16_t)d; memcpy(p, &q, 2); break; }
    case MLIP_DT_INT32: { int32_t q = (int32_t)d; memcpy(p, &q, 4); break; }
    default: { uint32_t q = (uint32_t)d; memcpy(p, &q, 4); break; }
    }
}

static inline float apply_act(int act, float v, float alpha, float beta)
{
    switch (act) {
    case MLIP_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case MLIP_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case MLIP_ACT_CLIP: return v < alpha ? alpha : (v > beta ? beta : v);
    case MLIP_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case MLIP_ACT_LEAKY_RELU: return v < 0.0f ? alpha * v : v;
    case MLIP_ACT_TANH: return tanhf(v);
    case MLIP_ACT_GELU_ERF: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case MLIP_ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * (v * v * v))));
    case MLIP_ACT_SILU: return v * (1.0f / (1.0f + expf(-v)));
    default: return v;
    }
}

/* apply_act over a row, with the activation chosen once (same results as apply_act) */
static void act_row(int act, float *v, int64_t n, float alpha, float beta)
{
    switch (act) {
    case MLIP_ACT_NONE:
        return;
    case MLIP_ACT_RELU:
    case MLIP_ACT_RELU6: {
        /* x > 0 ? min-ish(x, 6) : +0 with ordered compares and bit masks, four lanes at a time
         * (SSE2 is the x86-64 baseline): NaN and -0 give +0, exactly the scalar tail's values */
        int64_t k = 0;
        const int six = act == MLIP_ACT_RELU6;
#if defined(__x86_64__)
        const __m128 zero = _mm_setzero_ps(), cap = _mm_set1_ps(6.0f);
        for (; k + 4 <= n; k += 4) {
            __m128 x = _mm_loadu_ps(v + k);
            __m128 y = x;
            if (six) {
                __m128 lt = _mm_cmplt_ps(x, cap);
                y = _mm_or_ps(_mm_and_ps(lt, x), _mm_andnot_ps(lt, cap));
            }
            _mm_storeu_ps(v + k, _mm_and_ps(_mm_cmpgt_ps(x, zero), y));
        }
#endif
        for (; k < n; k++) {
            float y = six ? (v[k] < 6.0f ? v[k] : 6.0f) : v[k];
            v[k] = v[k] > 0.0f ? y : 0.0f;
        }
        return;
    }
    case MLIP_ACT_CLIP: {
        /* v < alpha ? alpha : (v > beta ? beta : v) with ordered compares and bit masks (NaN
         * fails both and stays v, as in apply_act) */
        int64_t k = 0;
#if defined(__x86_64__)
        const __m128 lo = _mm_set1_ps(alpha), hi = _mm_set1_ps(beta);
        for (; k + 4 <= n; k += 4) {
            __m128 x = _mm_loadu_ps(v + k);
            __m128 below = _mm_cmplt_ps(x, lo), above = _mm_cmpgt_ps(x, hi);
            __m128 y = _mm_or_ps(_mm_and_ps(above, hi), _mm_andnot_ps(above, x));
            _mm_storeu_ps(v + k, _mm_or_ps(_mm_and_ps(below, lo), _mm_andnot_ps(below, y)));
        }
#endif
        for (; k < n; k++) v[k] = apply_act(act, v[k], alpha, beta);
        return;
    }
    default:
        for (int64_t k = 0; k < n; k++) v[k] = apply_act(act, v[k], alpha, beta);
        return;
    }
}

static inline float f32_bits(uint32_t w)
{
    float f;
    memcpy(&f, &w, 4);
    return f;
}

/* ---- validation ---------------------------------------------------------------------------- */
typedef struct insn_where {
    int sec;
    uint32_t tile;
    int q;
    uint32_t idx;
} insn_where;

#define WHERE_FMT "%s/tile %u/%s/#%u %s"
#define WHERE_ARGS(w, op) SEC_NAMES[(w).sec], (w).tile, Q_NAMES[(w).q], (w).idx, (op)

static const char *op_name(unsigned op)
{
    return op < MLIP_NUM_OPCODES && OP_NAMES[op] != NULL ? OP_NAMES[op] : "?";
}

/* activation values in use (the enum leaves gaps for other branches' values) */
static int act_known(unsigned act)
{
    return act <= MLIP_ACT_SILU || act == MLIP_ACT_GELU_ERF || act == MLIP_ACT_GELU_TANH;
}

/* OCM operand [addr, addr + extent) must be inside [ocm_start, ocm_end), aligned. */
static int chk_ocm(mlip_sim *sim, const insn_where *w, const mlip_insn *in, const char *what,
                   uint64_t addr, uint64_t extent, uint32_t align)
{
    uint64_t end = sadd(addr, extent);
    if (addr < sim->info.ocm_start || end > sim->info.ocm_end || extent == 0 ||
        extent == UINT64_MAX) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": %s OCM range [0x%llx, 0x%llx) is outside the model's OCM "
                    "range [0x%x, 0x%x)",
                    WHERE_ARGS(*w, op_name(in->opcode)), what, (unsigned long long)addr,
                    (unsigned long long)end, sim->info.ocm_start, sim->info.ocm_end);
    }
    if (addr % align != 0) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": %s OCM address 0x%llx not %u-aligned",
                    WHERE_ARGS(*w, op_name(in->opcode)), what, (unsigned long long)addr,
                    align);
    }
    return MLIP_OK;
}

/* region index: 0 input, 1 output, 2 weights, 3 scratch; -1 if none */
static int dram_region(const mlip_sim *sim, uint64_t lo, uint64_t hi)
{
    const mlip_model_info *m = &sim->info;
    uint64_t off[4] = {m->input_offset, m->output_offset, m->weights_offset, m->scratch_offset};
    uint64_t size[4] = {m->input_size, m->output_size, m->weights_size, m->scratch_size};
    for (int r = 0; r < 4; r++) {
        if (lo >= off[r] && hi <= off[r] + size[r] && hi > lo) {
            return r;
        }
    }
    return -1;
}

/* extent of a 2-D block of rows x cols elements (row stride in elements) */
static uint64_t extent2(uint64_t rows, uint64_t cols, uint64_t row_stride, uint64_t es)
{
    return smul(sadd(smul(rows - 1, row_stride), cols), es);
}

static int chk_dims(mlip_sim *sim, const insn_where *w, const mlip_insn *in, const char *names,
                    const uint32_t *vals, int n, uint32_t lo, uint32_t hi)
{
    for (int i = 0; i < n; i++) {
        if (vals[i] < lo || vals[i] > hi) {
            return fail(sim, MLIP_ERR_FORMAT,
                        WHERE_FMT ": field %d of (%s) = %u is not in [%u, %u]",
                        WHERE_ARGS(*w, op_name(in->opcode)), i, names, vals[i], lo, hi);
        }
    }
    return MLIP_OK;
}

static int chk_work(mlip_sim *sim, const insn_where *w, const mlip_insn *in, uint64_t work)
{
    if (work > sim->p.max_insn_work) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": work %llu exceeds the simulator limit max_insn_work = %llu",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)work,
                    (unsigned long long)sim->p.max_insn_work);
    }
    return MLIP_OK;
}

static int chk_zp(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    if (in->in_zp < -128 || in->in_zp > 255 || in->out_zp < -128 || in->out_zp > 255) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": zero points %d / %d not in [-128, 255]",
                    WHERE_ARGS(*w, op_name(in->opcode)), in->in_zp, in->out_zp);
    }
    return MLIP_OK;
}

#define TRY(x)                                                                              \
    do {                                                                                    \
        int rc_ = (x);                                                                      \
        if (rc_ != MLIP_OK) {                                                               \
            return rc_;                                                                     \
        }                                                                                   \
    } while (0)

static int validate_dma(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    int load = in->opcode == MLIP_OP_DMA_LOAD;
    TRY(chk_dims(sim, w, in, "dim0..3", a + MLIP_DMA_DIM0, 4, 1, MLIP_MAX_DIM));
    TRY(chk_dims(sim, w, in, "src_dim0..3", a + MLIP_DMA_SRC_DIM0, 4, 1, MLIP_MAX_DIM));
    TRY(chk_dims(sim, w, in, "pad0..3", a + MLIP_DMA_PAD0, 4, 0, MLIP_MAX_PAD));
    uint32_t ses = DT_SIZE[in->src_dtype], des = DT_SIZE[in->dst_dtype];
    uint32_t ocm_es = load ? des : ses, dram_es = load ? ses : des;
    uint64_t count = 1, ocm_ext = 0, dram_ext = 0;
    for (int d = 0; d < 4; d++) {
        uint64_t dim = a[MLIP_DMA_DIM0 + d], src = a[MLIP_DMA_SRC_DIM0 + d];
        uint64_t pad = a[MLIP_DMA_PAD0 + d];
        if (pad + src > dim) {
            return fail(sim, MLIP_ERR_FORMAT,
                        WHERE_FMT ": dimension %d: pad %llu + src_dim %llu > dim %llu",
                        WHERE_ARGS(*w, op_name(in->opcode)), d, (unsigned long long)pad,
                        (unsigned long long)src, (unsigned long long)dim);
        }
        if (!load && (pad != 0 || src != dim)) {
            return fail(sim, MLIP_ERR_FORMAT,
                        WHERE_FMT ": DMA_STORE needs pad = 0 and src_dim = dim (dimension %d)",
                        WHERE_ARGS(*w, op_name(in->opcode)), d);
        }
        count = smul(count, dim);
        ocm_ext = sadd(ocm_ext, smul(dim - 1, a[MLIP_DMA_OCM_STRIDE0 + d]));
        dram_ext = sadd(dram_ext, smul(src - 1, a[MLIP_DMA_DRAM_STRIDE0 + d]));
    }
    TRY(chk_work(sim, w, in, count));
    if (count > sim->m.ocm_bytes) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": %llu elements exceed the OCM size",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)count);
    }
    TRY(chk_ocm(sim, w, in, "OCM", a[MLIP_DMA_OCM_ADDR], smul(sadd(ocm_ext, 1), ocm_es),
                ocm_es));
    uint64_t lo = a[MLIP_DMA_DRAM_ADDR];
    uint64_t hi = sadd(lo, smul(sadd(dram_ext, 1), dram_es));
    int region = dram_region(sim, lo, hi);
    if (region < 0 || hi > sim->dram_size) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": DRAM range [0x%llx, 0x%llx) does not lie inside one DRAM "
                    "region",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)lo,
                    (unsigned long long)hi);
    }
    if (!load && (region == 0 || region == 2)) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": DMA_STORE writes the read-only %s region of DRAM",
                    WHERE_ARGS(*w, op_name(in->opcode)), region == 0 ? "input" : "weights");
    }
    if (lo % dram_es != 0) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": DRAM address 0x%llx not %u-aligned",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)lo, dram_es);
    }
    return chk_zp(sim, w, in);
}

static int validate_conv(mlip_sim *sim, const insn_where *w, const mlip_insn *in, int gemm)
{
    const uint32_t *a = in->arg;
    uint32_t ih, iw, ic, ips, oh, ow, oc, ops, kh, kw, sh, sw, dh, dw, groups;
    uint32_t in_addr, out_addr, w_addr, b_addr, s_addr;
    int32_t pt = 0, pl = 0;
    if (gemm) {
        uint32_t v[3] = {a[MLIP_GEMM_M], a[MLIP_GEMM_K], a[MLIP_GEMM_N]};
        TRY(chk_dims(sim, w, in, "m, k, n", v, 3, 1, MLIP_MAX_DIM));
        ih = 1; iw = a[MLIP_GEMM_M]; ic = a[MLIP_GEMM_K]; ips = a[MLIP_GEMM_IN_ROW_STRIDE];
        oh = 1; ow = a[MLIP_GEMM_M]; oc = a[MLIP_GEMM_N]; ops = a[MLIP_GEMM_OUT_ROW_STRIDE];
        kh = kw = sh = sw = dh = dw = groups = 1;
        in_addr = a[MLIP_GEMM_IN_ADDR]; out_addr = a[MLIP_GEMM_OUT_ADDR];
        w_addr = a[MLIP_GEMM_W_ADDR]; b_addr = a[MLIP_GEMM_BIAS_ADDR];
        s_addr = a[MLIP_GEMM_SCALE_ADDR];
    } else {
        uint32_t v[6] = {a[MLIP_CONV_IH], a[MLIP_CONV_IW], a[MLIP_CONV_IC],
                         a[MLIP_CONV_OH], a[MLIP_CONV_OW], a[MLIP_CONV_OC]};
        TRY(chk_dims(sim, w, in, "ih, iw, ic, oh, ow, oc", v, 6, 1, MLIP_MAX_DIM));
        uint32_t k[6] = {a[MLIP_CONV_KH], a[MLIP_CONV_KW], a[MLIP_CONV_SH],
                         a[MLIP_CONV_SW], a[MLIP_CONV_DH], a[MLIP_CONV_DW]};
        TRY(chk_dims(sim, w, in, "kh, kw, sh, sw, dh, dw", k, 6, 1, MLIP_MAX_KERNEL));
        ih = v[0]; iw = v[1]; ic = v[2]; oh = v[3]; ow = v[4]; oc = v[5];
        kh = k[0]; kw = k[1]; sh = k[2]; sw = k[3]; dh = k[4]; dw = k[5];
        ips = a[MLIP_CONV_IN_PIX_STRIDE]; ops = a[MLIP_CONV_OUT_PIX_STRIDE];
        groups = a[MLIP_CONV_GROUPS];
        pt = (int32_t)a[MLIP_CONV_PAD_T]; pl = (int32_t)a[MLIP_CONV_PAD_L];
        in_addr = a[MLIP_CONV_IN_ADDR]; out_addr = a[MLIP_CONV_OUT_ADDR];
        w_addr = a[MLIP_CONV_W_ADDR]; b_addr = a[MLIP_CONV_BIAS_ADDR];
        s_addr = a[MLIP_CONV_SCALE_ADDR];
        if (pt < -MLIP_MAX_PAD || pt > MLIP_MAX_PAD || pl < -MLIP_MAX_PAD || pl > MLIP_MAX_PAD) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": pads %d, %d out of range",
                        WHERE_ARGS(*w, op_name(in->opcode)), pt, pl);
        }
        if (groups == 0 || ic % groups != 0 || oc % groups != 0) {
            return fail(sim, MLIP_ERR_FORMAT,
                        WHERE_FMT ": groups %u must divide ic %u and oc %u",
                        WHERE_ARGS(*w, op_name(in->opcode)), groups, ic, oc);
        }
    }
    if (ips < ic || ops < oc) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": pixel/row strides (%u, %u) smaller than channels (%u, %u)",
                    WHERE_ARGS(*w, op_name(in->opcode)), ips, ops, ic, oc);
    }
    int i8 = in->src_dtype == MLIP_DT_INT8;
    if (in->src_dtype == MLIP_DT_FP16) {
        if (in->dst_dtype != MLIP_DT_FP16 && in->dst_dtype != MLIP_DT_FP32) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": fp16 input needs an fp16/fp32 output",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
    } else if (i8) {
        if (in->dst_dtype != MLIP_DT_INT8 && in->dst_dtype != MLIP_DT_FP32) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": int8 input needs an int8/fp32 output",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
        if (s_addr == MLIP_ADDR_NONE) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": int8 needs scale_addr",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
        if (in->in_zp < -128 || in->in_zp > 127 || in->out_zp < -128 || in->out_zp > 127) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": int8 zero points not in [-128, 127]",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
    } else {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": src_dtype %u not FP16 or INT8",
                    WHERE_ARGS(*w, op_name(in->opcode)), in->src_dtype);
    }
    uint64_t icg = ic / groups;
    uint64_t kk = (uint64_t)kh * kw * icg;
    if (i8 && kk > MLIP_MAX_INT8_K) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": int8 reduction %llu > %u",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)kk,
                    MLIP_MAX_INT8_K);
    }
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    TRY(chk_work(sim, w, in, smul(smul(smul(oh, ow), oc), kk)));
    TRY(chk_ocm(sim, w, in, "input", in_addr, extent2((uint64_t)ih * iw, ic, ips, es), es));
    TRY(chk_ocm(sim, w, in, "output", out_addr, extent2((uint64_t)oh * ow, oc, ops, oes), oes));
    TRY(chk_ocm(sim, w, in, "weights", w_addr, smul(smul(oc, kk), es), es));
    if (b_addr != MLIP_ADDR_NONE) {
        TRY(chk_ocm(sim, w, in, "bias", b_addr, (uint64_t)oc * 4, 4));
    }
    if (s_addr != MLIP_ADDR_NONE) {
        if (!i8) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": scale_addr is for int8 only",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
        TRY(chk_ocm(sim, w, in, "scale", s_addr, (uint64_t)oc * 4, 4));
    }
    return MLIP_OK;
}

static int validate_pool(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    uint32_t v[5] = {a[MLIP_POOL_IH], a[MLIP_POOL_IW], a[MLIP_POOL_C], a[MLIP_POOL_OH],
                     a[MLIP_POOL_OW]};
    TRY(chk_dims(sim, w, in, "ih, iw, c, oh, ow", v, 5, 1, MLIP_MAX_DIM));
    uint32_t k[4] = {a[MLIP_POOL_KH], a[MLIP_POOL_KW], a[MLIP_POOL_SH], a[MLIP_POOL_SW]};
    TRY(chk_dims(sim, w, in, "kh, kw, sh, sw", k, 4, 1, MLIP_MAX_KERNEL));
    int32_t pt = (int32_t)a[MLIP_POOL_PAD_T], pl = (int32_t)a[MLIP_POOL_PAD_L];
    if (pt < -MLIP_MAX_PAD || pt > MLIP_MAX_PAD || pl < -MLIP_MAX_PAD || pl > MLIP_MAX_PAD) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": pads %d, %d out of range",
                    WHERE_ARGS(*w, op_name(in->opcode)), pt, pl);
    }
    if (in->func >= MLIP_NUM_POOL_FUNCS) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown pool function %u",
                    WHERE_ARGS(*w, op_name(in->opcode)), in->func);
    }
    if (a[MLIP_POOL_IN_PIX_STRIDE] < v[2] || a[MLIP_POOL_OUT_PIX_STRIDE] < v[2]) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": pixel strides smaller than c",
                    WHERE_ARGS(*w, op_name(in->opcode)));
    }
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    TRY(chk_zp(sim, w, in));
    TRY(chk_work(sim, w, in, smul(smul(smul(v[3], v[4]), v[2]), (uint64_t)k[0] * k[1])));
    TRY(chk_ocm(sim, w, in, "input", a[MLIP_POOL_IN_ADDR],
                extent2((uint64_t)v[0] * v[1], v[2], a[MLIP_POOL_IN_PIX_STRIDE], es), es));
    TRY(chk_ocm(sim, w, in, "output", a[MLIP_POOL_OUT_ADDR],
                extent2((uint64_t)v[3] * v[4], v[2], a[MLIP_POOL_OUT_PIX_STRIDE], oes), oes));
    return MLIP_OK;
}

static int validate_elt(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    uint32_t v[2] = {a[MLIP_ELT_ROWS], a[MLIP_ELT_COLS]};
    TRY(chk_dims(sim, w, in, "rows, cols", v, 2, 1, MLIP_MAX_DIM));
    if (in->func >= MLIP_NUM_ELT_FUNCS) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown eltwise function %u",
                    WHERE_ARGS(*w, op_name(in->opcode)), in->func);
    }
    if (a[MLIP_ELT_B_COL_STRIDE] > 1 || a[MLIP_ELT_A_ROW_STRIDE] < v[1] ||
        a[MLIP_ELT_OUT_ROW_STRIDE] < v[1]) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": bad strides (b_col_stride must be 0 or "
                    "1, row strides >= cols)", WHERE_ARGS(*w, op_name(in->opcode)));
    }
    int32_t bzp = (int32_t)a[MLIP_ELT_B_ZP];
    if (bzp < -128 || bzp > 255) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": b_zp %d not in [-128, 255]",
                    WHERE_ARGS(*w, op_name(in->opcode)), bzp);
    }
    TRY(chk_zp(sim, w, in));
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    TRY(chk_work(sim, w, in, (uint64_t)v[0] * v[1]));
    TRY(chk_ocm(sim, w, in, "a", a[MLIP_ELT_A_ADDR],
                extent2(v[0], v[1], a[MLIP_ELT_A_ROW_STRIDE], es), es));
    uint64_t bext = smul(sadd(sadd(smul(v[0] - 1, a[MLIP_ELT_B_ROW_STRIDE]),
                                   smul(v[1] - 1, a[MLIP_ELT_B_COL_STRIDE])), 1), es);
    TRY(chk_ocm(sim, w, in, "b", a[MLIP_ELT_B_ADDR], bext, es));
    TRY(chk_ocm(sim, w, in, "output", a[MLIP_ELT_OUT_ADDR],
                extent2(v[0], v[1], a[MLIP_ELT_OUT_ROW_STRIDE], oes), oes));
    return MLIP_OK;
}

static int validate_vec(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    uint32_t v[2] = {a[MLIP_VEC_ROWS], a[MLIP_VEC_COLS]};
    TRY(chk_dims(sim, w, in, "rows, cols", v, 2, 1, MLIP_MAX_DIM));
    if (a[MLIP_VEC_IN_ROW_STRIDE] < v[1] || a[MLIP_VEC_OUT_ROW_STRIDE] < v[1]) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": row strides smaller than cols",
                    WHERE_ARGS(*w, op_name(in->opcode)));
    }
    if (in->opcode == MLIP_OP_COPY &&
        (in->src_dtype != in->dst_dtype || (in->flags & MLIP_F_SCALE) || in->act != 0)) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": COPY needs src_dtype == dst_dtype, no SCALE, no act",
                    WHERE_ARGS(*w, op_name(in->opcode)));
    }
    TRY(chk_zp(sim, w, in));
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    TRY(chk_work(sim, w, in, (uint64_t)v[0] * v[1]));
    TRY(chk_ocm(sim, w, in, "input", a[MLIP_VEC_IN_ADDR],
                extent2(v[0], v[1], a[MLIP_VEC_IN_ROW_STRIDE], es), es));
    TRY(chk_ocm(sim, w, in, "output", a[MLIP_VEC_OUT_ADDR],
                extent2(v[0], v[1], a[MLIP_VEC_OUT_ROW_STRIDE], oes), oes));
    return MLIP_OK;
}

/* SOFTMAX (vector layout) and LAYERNORM (norm layout): float rows, no SCALE, no zero points */
static int validate_rownorm(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    /* the first six fields of both layouts are the same (in, out, rows, cols, strides) */
    uint32_t v[2] = {a[MLIP_VEC_ROWS], a[MLIP_VEC_COLS]};
    TRY(chk_dims(sim, w, in, "rows, cols", v, 2, 1, MLIP_MAX_DIM));
    if (a[MLIP_VEC_IN_ROW_STRIDE] < v[1] || a[MLIP_VEC_OUT_ROW_STRIDE] < v[1]) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": row strides smaller than cols",
                    WHERE_ARGS(*w, op_name(in->opcode)));
    }
    if (!dt_is_float(in->src_dtype) || !dt_is_float(in->dst_dtype) ||
        ((in->flags & MLIP_F_SCALE) && in->opcode == MLIP_OP_LAYERNORM) ||
        in->in_zp != 0 || in->out_zp != 0) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": needs fp16/fp32 dtypes, zero points 0 "
                    "(and no SCALE for LAYERNORM)", WHERE_ARGS(*w, op_name(in->opcode)));
    }
    if ((in->flags & MLIP_F_SCALE) && !isfinite(in->fparam[MLIP_FP_SCALE])) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": scale must be finite",
                    WHERE_ARGS(*w, op_name(in->opcode)));
    }
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    TRY(chk_work(sim, w, in, (uint64_t)v[0] * v[1]));
    TRY(chk_ocm(sim, w, in, "input", a[MLIP_VEC_IN_ADDR],
                extent2(v[0], v[1], a[MLIP_VEC_IN_ROW_STRIDE], es), es));
    TRY(chk_ocm(sim, w, in, "output", a[MLIP_VEC_OUT_ADDR],
                extent2(v[0], v[1], a[MLIP_VEC_OUT_ROW_STRIDE], oes), oes));
    if (in->opcode == MLIP_OP_LAYERNORM) {
        if (!isfinite(in->fparam[MLIP_FP_ACT_ALPHA]) || in->fparam[MLIP_FP_ACT_ALPHA] < 0.0f) {
            return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": epsilon must be finite and >= 0",
                        WHERE_ARGS(*w, op_name(in->opcode)));
        }
        TRY(chk_ocm(sim, w, in, "gamma", a[MLIP_NORM_GAMMA_ADDR], (uint64_t)v[1] * 4, 4));
        TRY(chk_ocm(sim, w, in, "beta", a[MLIP_NORM_BETA_ADDR], (uint64_t)v[1] * 4, 4));
    }
    return MLIP_OK;
}

/* byte extent of a 4-D box of dims[] elements of es bytes, strides[] in elements */
static uint64_t box_extent(const uint32_t *dims, const uint32_t *strides, uint64_t es)
{
    uint64_t ext = 0;
    for (int d = 0; d < 4; d++) ext = sadd(ext, smul((uint64_t)dims[d] - 1, strides[d]));
    return smul(sadd(ext, 1), es);
}

static int validate_tcopy(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    TRY(chk_dims(sim, w, in, "dim0..3", a + MLIP_TCOPY_DIM0, 4, 1, MLIP_MAX_DIM));
    if (in->src_dtype != in->dst_dtype || (in->flags & MLIP_F_SCALE) || in->in_zp != 0 ||
        in->out_zp != 0) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": TILE_COPY is a bit copy: src_dtype == dst_dtype, no SCALE, "
                    "zero points 0", WHERE_ARGS(*w, op_name(in->opcode)));
    }
    uint32_t mask = a[MLIP_TCOPY_DST_TILE_MASK];
    if (mask == 0 || (mask >> sim->ntiles) != 0) {
        return fail(sim, MLIP_ERR_FORMAT,
                    WHERE_FMT ": dst_tile_mask 0x%x names no tile or a tile outside the "
                    "model's %u tile(s)", WHERE_ARGS(*w, op_name(in->opcode)), mask,
                    sim->ntiles);
    }
    uint64_t count = 1;
    for (int d = 0; d < 4; d++) count = smul(count, a[MLIP_TCOPY_DIM0 + d]);
    TRY(chk_work(sim, w, in, count));
    if (count > sim->m.ocm_bytes) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": %llu elements exceed the OCM size",
                    WHERE_ARGS(*w, op_name(in->opcode)), (unsigned long long)count);
    }
    uint32_t es = DT_SIZE[in->src_dtype];
    TRY(chk_ocm(sim, w, in, "source", a[MLIP_TCOPY_SRC_ADDR],
                box_extent(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_SRC_STRIDE0, es), es));
    /* every tile has the same OCM range: one check covers every destination tile */
    TRY(chk_ocm(sim, w, in, "destination", a[MLIP_TCOPY_DST_ADDR],
                box_extent(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_DST_STRIDE0, es), es));
    return MLIP_OK;
}

static int expected_queue(int op)
{
    switch (op) {
    case MLIP_OP_NOP: return -1;
    case MLIP_OP_DMA_LOAD: return MLIP_Q_DMA_IN;
    case MLIP_OP_DMA_STORE:
    case MLIP_OP_TILE_COPY: return MLIP_Q_DMA_OUT;
    default: return MLIP_Q_COMPUTE;
    }
}

/* channel index of the token channel from queue `from` to neighbour queue `to` */
static int channel(int from, int to)
{
    if (from == 0 && to == 1) return 0;
    if (from == 1 && to == 0) return 1;
    if (from == 1 && to == 2) return 2;
    return 3; /* 2 -> 1 */
}

static int validate_insn(mlip_sim *sim, const insn_where *w, const mlip_insn *in)
{
    if (in->opcode >= MLIP_NUM_OPCODES || OP_NAMES[in->opcode] == NULL) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown opcode %u", WHERE_ARGS(*w, "?"),
                    in->opcode);
    }
    const char *name = OP_NAMES[in->opcode];
    int eq = expected_queue(in->opcode);
    if (eq >= 0 && eq != w->q) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": %s belongs in the %s queue",
                    WHERE_ARGS(*w, name), name, Q_NAMES[eq]);
    }
    if (in->flags & ~(unsigned)MLIP_F_ALL) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown flag bits 0x%x",
                    WHERE_ARGS(*w, name), in->flags);
    }
    if (w->q == MLIP_Q_DMA_IN && (in->flags & (MLIP_F_POP_PREV | MLIP_F_PUSH_PREV))) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": the dma_in queue has no prev neighbour",
                    WHERE_ARGS(*w, name));
    }
    if (w->q == MLIP_Q_DMA_OUT && (in->flags & (MLIP_F_POP_NEXT | MLIP_F_PUSH_NEXT))) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": the dma_out queue has no next neighbour",
                    WHERE_ARGS(*w, name));
    }
    if (in->src_dtype >= MLIP_NUM_DTYPES || in->dst_dtype >= MLIP_NUM_DTYPES) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown dtype %u -> %u",
                    WHERE_ARGS(*w, name), in->src_dtype, in->dst_dtype);
    }
    if (!act_known(in->act)) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": unknown activation %u",
                    WHERE_ARGS(*w, name), in->act);
    }
    if (in->layer != MLIP_LAYER_NONE && in->layer >= sim->num_layers) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": layer %u not in the layer table (%u)",
                    WHERE_ARGS(*w, name), in->layer, sim->num_layers);
    }
    if (in->act != MLIP_ACT_NONE &&
        (in->opcode == MLIP_OP_NOP || in->opcode == MLIP_OP_DMA_LOAD ||
         in->opcode == MLIP_OP_DMA_STORE || in->opcode == MLIP_OP_CONVERT ||
         in->opcode == MLIP_OP_COPY || in->opcode == MLIP_OP_BARRIER ||
         in->opcode == MLIP_OP_TILE_COPY || in->opcode == MLIP_OP_SOFTMAX ||
         in->opcode == MLIP_OP_LAYERNORM)) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": act must be NONE for %s",
                    WHERE_ARGS(*w, name), name);
    }
    if (in->func != 0 && in->opcode != MLIP_OP_POOL && in->opcode != MLIP_OP_ELTWISE) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": func must be 0", WHERE_ARGS(*w, name));
    }
    if ((in->flags & MLIP_F_COUNT_PAD) && in->opcode != MLIP_OP_POOL) {
        return fail(sim, MLIP_ERR_FORMAT, WHERE_FMT ": COUNT_PAD is for POOL only",
                    WHERE_ARGS(*w, name));
    }
    switch (in->opcode) {
    case MLIP_OP_DMA_LOAD:
    case MLIP_OP_DMA_STORE: return validate_dma(sim, w, in);
    case MLIP_OP_CONV: return validate_conv(sim, w, in, 0);
    case MLIP_OP_GEMM: return validate_conv(sim, w, in, 1);
    case MLIP_OP_POOL: return validate_pool(sim, w, in);
    case MLIP_OP_ELTWISE: return validate_elt(sim, w, in);
    case MLIP_OP_ACT:
    case MLIP_OP_CONVERT:
    case MLIP_OP_COPY: return validate_vec(sim, w, in);
    case MLIP_OP_TILE_COPY: return validate_tcopy(sim, w, in);
    case MLIP_OP_SOFTMAX:
    case MLIP_OP_LAYERNORM: return validate_rownorm(sim, w, in);
    default: return MLIP_OK;
    }
}

/* the machine record (csrc/mlip_isa.h ranges; mirrored by mrvl/machine.py machine_problem) */
static int validate_machine(mlip_sim *sim, const mlip_machine *k, const mlip_model_info *m)
{
    const uint32_t widths[6] = {k->matrix_rows, k->matrix_cols, k->int8_speedup,
                                k->vector_lanes, k->dma_bytes_per_cycle,
                                k->link_bytes_per_cycle};
    static const char *const wname[6] = {"matrix_rows", "matrix_cols", "int8_speedup",
                                         "vector_lanes", "dma_bytes_per_cycle",
                                         "link_bytes_per_cycle"};
    const uint32_t lats[6] = {k->dma_latency, k->matrix_fill, k->vector_latency,
                              k->issue_latency, k->barrier_latency, k->link_latency};
    static const char *const lname[6] = {"dma_latency", "matrix_fill", "vector_latency",
                                         "issue_latency", "barrier_latency", "link_latency"};
    if (k->tiles != m->tile_end - m->tile_start + 1) {
        return fail(sim, MLIP_ERR_FORMAT, "machine record: tiles %u != the %u tile(s) the "
                    "model uses", k->tiles, m->tile_end - m->tile_start + 1);
    }
    if (k->ocm_bytes < MLIP_OCM_GRANULE || k->ocm_bytes > MLIP_MAX_OCM_BYTES ||
        k->ocm_bytes % MLIP_OCM_GRANULE) {
        return fail(sim, MLIP_ERR_FORMAT, "machine record: ocm_bytes %u is not a multiple of "
                    "%d up to %d", k->ocm_bytes, MLIP_OCM_GRANULE, MLIP_MAX_OCM_BYTES);
    }
    if (k->page_bytes != m->page_size) {
        return fail(sim, MLIP_ERR_FORMAT, "machine record: page_bytes %u != page_size %u",
                    k->page_bytes, m->page_size);
    }
    if (k->clock_mhz < 1 || k->clock_mhz > MLIP_MAX_CLOCK_MHZ) {
        return fail(sim, MLIP_ERR_FORMAT, "machine record: clock_mhz %u not within 1..%d",
                    k->clock_mhz, MLIP_MAX_CLOCK_MHZ);
    }
    for (int i = 0; i < 6; i++) {
        if (widths[i] < 1 || widths[i] > MLIP_MAX_MACHINE_WIDTH) {
            return fail(sim, MLIP_ERR_FORMAT, "machine record: %s %u not within 1..%d",
                        wname[i], widths[i], MLIP_MAX_MACHINE_WIDTH);
        }
        if (lats[i] > MLIP_MAX_MACHINE_LATENCY) {
            return fail(sim, MLIP_ERR_FORMAT, "machine record: %s %u exceeds %d", lname[i],
                        lats[i], MLIP_MAX_MACHINE_LATENCY);
        }
    }
    /* written so that NaN fails too */
    if (!(k->dram_bytes_per_cycle >= MLIP_MIN_DRAM_MILLIBYTES_PER_CYCLE / 1000.0 &&
          k->dram_bytes_per_cycle <= MLIP_MAX_MACHINE_WIDTH)) {
        return fail(sim, MLIP_ERR_FORMAT, "machine record: dram_bytes_per_cycle %g not "
                    "within 0.001..%d", k->dram_bytes_per_cycle, MLIP_MAX_MACHINE_WIDTH);
    }
    return MLIP_OK;
}

static int validate_model(mlip_sim *sim, const uint8_t *data, size_t size)
{
    const size_t hsize = sizeof(mlip_header);
    if (size < hsize) {
        return fail(sim, MLIP_ERR_FORMAT, "truncated: %zu bytes, a header alone is %zu", size,
                    hsize);
    }
    mlip_header h;
    memcpy(&h, data, hsize);
    if (memcmp(h.magic, MLIP_MAGIC, 4) != 0) {
        return fail(sim, MLIP_ERR_FORMAT, "bad magic: not an mlip model binary");
    }
    if (h.version_major != MLIP_VERSION_MAJOR) {
        return fail(sim, MLIP_ERR_FORMAT, "unsupported version %u.%u (supported: %d.x)",
                    h.version_major, h.version_minor, MLIP_VERSION_MAJOR);
    }
    if (h.version_minor < MLIP_VERSION_MINOR) {
        return fail(sim, MLIP_ERR_FORMAT,
                    "version %u.%u predates the machine record of format %d.%d; recompile the "
                    "model",
                    h.version_major, h.version_minor, MLIP_VERSION_MAJOR, MLIP_VERSION_MINOR);
    }
    if (h.header_size != hsize) {
        return fail(sim, MLIP_ERR_FORMAT, "header_size %u != %zu", h.header_size, hsize);
    }
    mlip_header z = h;
    z.header_crc = 0;
    if (mlip_crc32c((const uint8_t *)&z, hsize) != h.header_crc) {
        return fail(sim, MLIP_ERR_FORMAT, "header CRC32C mismatch (corrupt header)");
    }
    if (h.total_size != size) {
        return fail(sim, MLIP_ERR_FORMAT, "size mismatch: header says %llu bytes, got %zu (%s)",
                    (unsigned long long)h.total_size, size,
                    size < h.total_size ? "truncated" : "trailing bytes");
    }
    if (sadd(sadd(hsize, h.metadata_size), h.payload_size) != h.total_size) {
        return fail(sim, MLIP_ERR_FORMAT, "header sizes do not add up to total_size");
    }
    if (h.arch != MLIP_ARCH_CN10K) {
        return fail(sim, MLIP_ERR_FORMAT, "unsupported target architecture %u", h.arch);
    }
    const uint8_t *meta = data + hsize;
    const uint8_t *payload = meta + h.metadata_size;
    if (mlip_crc32c(meta, h.metadata_size) != h.metadata_crc) {
        return fail(sim, MLIP_ERR_FORMAT, "metadata CRC32C mismatch (corrupt metadata)");
    }
    if (mlip_crc32c(payload, h.payload_size) != h.payload_crc) {
        return fail(sim, MLIP_ERR_FORMAT, "payload CRC32C mismatch (corrupt code or weights)");
    }
    if (h.metadata_size < sizeof(mlip_model_info) + sizeof(mlip_machine)) {
        return fail(sim, MLIP_ERR_FORMAT, "metadata smaller than the model info");
    }
    sim->hdr = h;
    mlip_model_info *m = &sim->info;
    memcpy(m, meta, sizeof(*m));
    if (m->tile_start > m->tile_end || m->tile_end >= MLIP_MAX_TILES) {
        return fail(sim, MLIP_ERR_FORMAT, "tiles %u..%u not within 0..%d", m->tile_start,
                    m->tile_end, MLIP_MAX_TILES - 1);
    }
    if (m->num_inputs > MLIP_MAX_IO || m->num_outputs > MLIP_MAX_IO ||
        m->num_layers >= MLIP_MAX_LAYERS) {
        return fail(sim, MLIP_ERR_FORMAT, "%u inputs / %u outputs / %u layers exceed the limits",
                    m->num_inputs, m->num_outputs, m->num_layers);
    }
    uint64_t expect = sizeof(mlip_model_info) + sizeof(mlip_machine) +
                      (uint64_t)(m->num_inputs + m->num_outputs) * sizeof(mlip_io_desc) +
                      (uint64_t)m->num_layers * sizeof(mlip_layer_desc);
    if (expect != h.metadata_size) {
        return fail(sim, MLIP_ERR_FORMAT, "metadata_size %u != %llu for the counts it holds",
                    h.metadata_size, (unsigned long long)expect);
    }
    if (m->code_size != (uint64_t)m->num_insns * MLIP_INSN_BYTES ||
        sadd(m->code_size, m->weights_size) != h.payload_size) {
        return fail(sim, MLIP_ERR_FORMAT, "code_size / weights_size do not match the payload");
    }
    memcpy(&sim->m, meta + sizeof(mlip_model_info), sizeof(mlip_machine));
    TRY(validate_machine(sim, &sim->m, m));
    if (m->ocm_start > m->ocm_end || m->ocm_end > sim->m.ocm_bytes) {
        return fail(sim, MLIP_ERR_FORMAT,
                    "model OCM range [0x%x, 0x%x) does not fit the machine's OCM of %u bytes",
                    m->ocm_start, m->ocm_end, sim->m.ocm_bytes);
    }
    if (m->dram_size > MLIP_MAX_DRAM_BYTES || m->dram_size > sim->p.max_dram_bytes) {
        return fail(sim, MLIP_ERR_FORMAT, "dram_size %llu exceeds the simulator limit %llu",
                    (unsigned long long)m->dram_size,
                    (unsigned long long)umin64(MLIP_MAX_DRAM_BYTES, sim->p.max_dram_bytes));
    }
    uint64_t off[4] = {m->input_offset, m->output_offset, m->weights_offset, m->scratch_offset};
    uint64_t sz[4] = {m->input_size, m->output_size, m->weights_size, m->scratch_size};
    static const char *const rname[4] = {"input", "output", "weights", "scratch"};
    for (int r = 0; r < 4; r++) {
        if (sadd(off[r], sz[r]) > m->dram_size) {
            return fail(sim, MLIP_ERR_FORMAT, "DRAM %s region beyond dram_size", rname[r]);
        }
        for (int s = 0; s < r; s++) {
            if (sz[r] && sz[s] && off[r] < off[s] + sz[s] && off[s] < off[r] + sz[r]) {
                return fail(sim, MLIP_ERR_FORMAT, "DRAM regions %s and %s overlap", rname[s],
                            rname[r]);
            }
        }
    }
    if (m->page_size == 0 || m->page_size > 16384 || (m->page_size & (m->page_size - 1)) ||
        m->page_size < 1024) {
        return fail(sim, MLIP_ERR_FORMAT, "page_size %u is not 1, 2, 4, 8 or 16 KiB",
                    m->page_size);
    }
    sim->tile0 = m->tile_start;
    sim->ntiles = m->tile_end - m->tile_start + 1;
    sim->num_insns = m->num_insns;
    sim->num_layers = m->num_layers;
    sim->dram_size = m->dram_size;
    /* stream table */
    uint32_t next = 0;
    for (int s = 0; s < MLIP_NUM_SECTIONS; s++) {
        for (uint32_t t = 0; t < MLIP_MAX_TILES; t++) {
            for (int q = 0; q < MLIP_NUM_QUEUES; q++) {
                const mlip_stream *st = &m->streams[s][t][q];
                if (st->first != next || (uint64_t)st->first + st->count > m->num_insns ||
                    st->count > MLIP_MAX_INSNS_PER_STREAM) {
                    return fail(sim, MLIP_ERR_FORMAT,
                                "stream table entry %s/tile %u/%s is out of order or beyond "
                                "the code", SEC_NAMES[s], t, Q_NAMES[q]);
                }
                if (st->count && (t < m->tile_start || t > m->tile_end)) {
                    return fail(sim, MLIP_ERR_FORMAT,
                                "stream %s/tile %u/%s has code but the tile is not used",
                                SEC_NAMES[s], t, Q_NAMES[q]);
                }
                next = st->first + st->count;
            }
        }
    }
    if (next != m->num_insns) {
        return fail(sim, MLIP_ERR_FORMAT, "stream table covers %u of %u instructions", next,
                    m->num_insns);
    }
    /* descriptors */
    const uint8_t *p = meta + sizeof(mlip_model_info) + sizeof(mlip_machine);
    uint32_t nio = m->num_inputs + m->num_outputs;
    for (uint32_t i = 0; i < nio; i++) {
        mlip_io_desc *d = &sim->io[i];
        memcpy(d, p + (size_t)i * sizeof(mlip_io_desc), sizeof(*d));
        int is_in = i < m->num_inputs;
        if (memchr(d->name, 0, MLIP_NAME_LEN) == NULL || d->dtype >= MLIP_NUM_DTYPES ||
            d->layout > MLIP_LAYOUT_NHWC || d->quantize > 1 || d->rank < 1 ||
            d->rank > MLIP_MAX_RANK) {
            return fail(sim, MLIP_ERR_FORMAT, "%s descriptor %u is malformed",
                        is_in ? "input" : "output", i);
        }
        uint64_t n = DT_SIZE[d->dtype];
        for (uint32_t k = 0; k < MLIP_MAX_RANK; k++) {
            if (k < d->rank) {
                n = smul(n, d->shape[k]);
                if (d->shape[k] == 0) {
                    return fail(sim, MLIP_ERR_FORMAT, "tensor '%.63s' has a zero dimension",
                                d->name);
                }
            } else if (d->shape[k] != 0) {
                return fail(sim, MLIP_ERR_FORMAT, "tensor '%.63s': shape beyond rank not 0",
                            d->name);
            }
        }
        int r = is_in ? 0 : 1;
        if (n != d->size_bytes || d->dram_offset < off[r] ||
            sadd(d->dram_offset, n) > off[r] + sz[r]) {
            return fail(sim, MLIP_ERR_FORMAT,
                        "tensor '%.63s': size or DRAM offset outside the %s region", d->name,
                        rname[r]);
        }
    }
    sim->layers = calloc(m->num_layers ? m->num_layers : 1, sizeof(mlip_layer_desc));
    sim->lstats = calloc(m->num_layers ? m->num_layers : 1, sizeof(mlip_layer_stats));
    sim->code = malloc(m->num_insns ? (size_t)m->code_size : sizeof(mlip_insn));
    if (sim->layers == NULL || sim->lstats == NULL || sim->code == NULL) {
        return fail(sim, MLIP_ERR_NOMEM, "out of memory loading the model");
    }
    memcpy(sim->layers, p + (size_t)nio * sizeof(mlip_io_desc),
           (size_t)m->num_layers * sizeof(mlip_layer_desc));
    memcpy(sim->code, payload, (size_t)m->code_size);
    /* instructions */
    for (int s = 0; s < MLIP_NUM_SECTIONS; s++) {
        uint32_t barriers = UINT32_MAX;
        for (uint32_t t = m->tile_start; t <= m->tile_end; t++) {
            uint32_t pushes[NCH] = {0}, pops[NCH] = {0}, nbar = 0;
            for (int q = 0; q < MLIP_NUM_QUEUES; q++) {
                const mlip_stream *st = &m->streams[s][t][q];
                for (uint32_t i = 0; i < st->count; i++) {
                    const mlip_insn *in = &sim->code[st->first + i];
                    insn_where w = {s, t, q, i};
                    TRY(validate_insn(sim, &w, in));
                    if (in->flags & MLIP_F_POP_PREV) pops[channel(q - 1, q)]++;
                    if (in->flags & MLIP_F_POP_NEXT) pops[channel(q + 1, q)]++;
                    if (in->flags & MLIP_F_PUSH_PREV) pushes[channel(q, q - 1)]++;
                    if (in->flags & MLIP_F_PUSH_NEXT) pushes[channel(q, q + 1)]++;
                    if (in->opcode == MLIP_OP_BARRIER) nbar++;
                }
            }
            static const char *const cname[NCH] = {"dma_in->compute", "compute->dma_in",
                                                   "compute->dma_out", "dma_out->compute"};
            for (int c = 0; c < NCH; c++) {
                if (pushes[c] != pops[c]) {
                    return fail(sim, MLIP_ERR_FORMAT,
                                "%s/tile %u: %u tokens pushed but %u popped on channel %s",
                                SEC_NAMES[s], t, pushes[c], pops[c], cname[c]);
                }
                sim->pushes[s][t][c] = pushes[c];
            }
            if (barriers != UINT32_MAX && barriers != nbar) {
                return fail(sim, MLIP_ERR_FORMAT,
                            "%s: tile %u has %u BARRIERs, other tiles %u", SEC_NAMES[s], t,
                            nbar, barriers);
            }
            barriers = nbar;
        }
    }
    return MLIP_OK;
}

/* ---- shadow memory: the dependency rule ------------------------------------------------ */
typedef struct acc_ctx {
    mlip_sim *sim;
    run_ctx *rc;
    uint32_t s;   /* stream doing the access */
    uint32_t seq; /* its instruction's sequence number (index + 1) */
    const char *op;
    scratch *w;   /* the executing thread's buffers */
} acc_ctx;

static void describe(const mlip_sim *sim, const run_ctx *rc, uint32_t stream, uint32_t seq,
                     char *buf, size_t n)
{
    uint32_t lt = stream / 3, q = stream % 3;
    const stream_state *st = &rc->st[stream];
    const char *op = "?";
    uint32_t idx = seq - rc->base0[stream] - 1;
    if (seq > rc->base0[stream] && idx < st->n) {
        op = op_name(st->insns[idx].opcode);
    }
    snprintf(buf, n, "%s/tile %u/%s/#%u %s", SEC_NAMES[rc->section], sim->tile0 + lt,
             Q_NAMES[q], idx, op);
}

static int dep_error(const acc_ctx *a, const char *what, const char *mem, uint64_t addr,
                     uint32_t other_stream, uint32_t other_seq)
{
    char me[128], other[128];
    describe(a->sim, a->rc, a->s, a->seq, me, sizeof me);
    if (other_seq == 0) {
        return fail(a->sim, MLIP_ERR_RUN, "dependency error: %s %s %s 0x%llx %s", me, what, mem,
                    (unsigned long long)addr, "that no instruction has written");
    }
    describe(a->sim, a->rc, other_stream, other_seq, other, sizeof other);
    return fail(a->sim, MLIP_ERR_RUN,
                "dependency error: %s %s %s 0x%llx, but %s is not ordered before it by "
                "dependency tokens or barriers", me, what, mem, (unsigned long long)addr, other);
}

static inline int hb(const acc_ctx *a, uint32_t stream, uint32_t seq)
{
    return a->rc->st[a->s].vc[stream] >= seq;
}

/* check + record an access to OCM granules [g0, g1] of tile lt */
/* 0: the read of data last written by (stream, seq) is fine; else the kind of error */
static inline int read_state(const acc_ctx *a, uint32_t stream, uint32_t seq)
{
    const mlip_sim *sim = a->sim;
    if (seq == 0) return 1;                               /* never written */
    if (seq <= sim->init_end[stream]) return 0;           /* init section (resident data) */
    if (seq <= sim->run_start[stream]) return 2;          /* an earlier inference: stale */
    return hb(a, stream, seq) ? 0 : 3;                    /* this inference: needs hb */
}

static int read_error(const acc_ctx *a, int kind, const char *mem, uint64_t addr,
                      uint32_t stream, uint32_t seq)
{
    if (kind == 1) {
        return dep_error(a, "reads", mem, addr, 0, 0);
    }
    if (kind == 2) {
        char me[128];
        describe(a->sim, a->rc, a->s, a->seq, me, sizeof me);
        return fail(a->sim, MLIP_ERR_RUN,
                    "dependency error: %s reads %s 0x%llx, which holds stale data written by "
                    "a previous inference", me, mem, (unsigned long long)addr);
    }
    return dep_error(a, "reads", mem, addr, stream, seq);
}

/* check + record an access by instruction `a` to granules [g0, g1] of shadow `sh`; a read
 * records itself in reader slot `slot` */
static int shadow_mark(const acc_ctx *a, shadow *sh, uint64_t g0, uint64_t g1, int write,
                       uint32_t slot, uint64_t granule, int tile)
{
    const uint32_t seq = a->seq;
    char mem[32] = "DRAM"; /* an OCM name is formatted only for an error message */
    if (!write && sh->memo_valid[slot] && sh->memo_g0[slot] == g0 && sh->memo_g1[slot] == g1) {
        /* same range as this slot's previous read, no write since: same writers, and this
         * later instruction of the same stream has a clock >= that read's */
        sh->memo_seq[slot] = seq;
        return MLIP_OK;
    }
    if (!write) {
        shadow_flush(sh, slot);
    } else {
        for (uint32_t k = 0; k < sh->nr; k++) {
            if (sh->memo_valid[k] && sh->memo_g0[k] <= g1 && g0 <= sh->memo_g1[k]) {
                shadow_flush(sh, k);
            }
        }
    }
#define MEM_NAME()                                                                          \
    (tile >= 0 ? (snprintf(mem, sizeof mem, "tile %d OCM", tile), mem) : mem)
    /* the last writer of every run of granules with the same writer */
    for (uint64_t g = g0; g <= g1;) {
        uint32_t ws = sh->w[g];
        uint8_t st = sh->ws[g];
        if (!write) {
            int kind = read_state(a, st, ws);
            if (kind != 0) {
                return read_error(a, kind, MEM_NAME(), sh->base + g * granule, st, ws);
            }
        } else if (ws != 0 && !hb(a, st, ws)) {
            return dep_error(a, "overwrites", MEM_NAME(), sh->base + g * granule, st, ws);
        }
        uint64_t h = g + 1;
        /* skip whole chunks with the same writer (a vectorisable test), then granules */
#if defined(__x86_64__)
        const __m128i vw = _mm_set1_epi32((int)ws), vst = _mm_set1_epi8((char)st);
        while (h + 16 <= g1 + 1) {
            const uint32_t *wp = sh->w + h;
            __m128i e0 = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(const void *)wp), vw);
            __m128i e1 =
                _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(const void *)(wp + 4)), vw);
            __m128i e2 =
                _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(const void *)(wp + 8)), vw);
            __m128i e3 =
                _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(const void *)(wp + 12)), vw);
            __m128i es = _mm_cmpeq_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)(sh->ws + h)), vst);
            __m128i all = _mm_and_si128(_mm_and_si128(e0, e1), _mm_and_si128(e2, e3));
            if (_mm_movemask_epi8(_mm_and_si128(all, es)) != 0xFFFF) break;
            h += 16;
        }
#else
        while (h + 16 <= g1 + 1) {
            uint32_t diff = 0;
            for (int k = 0; k < 16; k++) {
                diff |= (sh->w[h + k] ^ ws) | (uint32_t)(sh->ws[h + k] ^ st);
            }
            if (diff != 0) break;
            h += 16;
        }
#endif
        while (h <= g1 && sh->w[h] == ws && sh->ws[h] == st) h++;
        g = h;
    }
    uint64_t n = g1 - g0 + 1;
    if (!write) {
        /* recorded lazily: r[] and bm[] are only consulted after shadow_flush (an
         * overlapping write, this slot's next different read, or a section start) */
        sh->memo_g0[slot] = g0;
        sh->memo_g1[slot] = g1;
        sh->memo_seq[slot] = seq;
        sh->memo_valid[slot] = 1;
        return MLIP_OK;
    }
    /* write-after-read: every recorded read must be in the writer's clock.  Reads are not
     * cleared by a write: a later write is ordered after this one (write-after-write) and so,
     * by the transitivity of the clocks, after every read this one was ordered after. */
    for (uint32_t k = 0; k < sh->nr; k++) {
        uint32_t lim = a->rc->st[a->s].vc[sh->rstream[k]], mx = 0;
        const uint32_t *bm = sh->bm[k];
        for (uint64_t b = g0 >> 6; b <= g1 >> 6; b++) mx = bm[b] > mx ? bm[b] : mx;
        if (mx <= lim) {
            continue;
        }
        const uint32_t *r = sh->r[k] + g0;
        for (uint64_t i = 0; i < n; i++) {
            if (r[i] > lim) {
                return dep_error(a, "overwrites data still to be read at", MEM_NAME(),
                                 sh->base + (g0 + i) * granule, sh->rstream[k], r[i]);
            }
        }
    }
    uint32_t *w = sh->w + g0;
    for (uint64_t k = 0; k < n; k++) w[k] = seq;
    memset(sh->ws + g0, (int)a->s, n);
    return MLIP_OK;
#undef MEM_NAME
}

/* `rows` accesses of `len` bytes at byte offsets off + i * stride (i ascending) of shadow
 * `sh`, with exactly the effect of one shadow_mark per row in that order (the same checks in
 * the same order, the same recorded state; an error is reported by shadow_mark itself, so its
 * message is the same), without the per-call overhead: channel-sliced rows are a granule or
 * two each.  Reads record rows straight into r[] (the last one stays the slot's memo), writes
 * flush the memos that overlap the rows' span once. */
static int shadow_mark_rows(const acc_ctx *a, shadow *sh, uint64_t off, uint64_t rows,
                            uint64_t len, uint64_t stride, int write, uint32_t slot,
                            uint64_t granule, int tile)
{
    if (rows < 2 || len == 0) {
        for (uint64_t i = 0; i < rows; i++) {
            uint64_t lo = off + i * stride;
            TRY(shadow_mark(a, sh, lo / granule, (lo + len - 1) / granule, write, slot,
                            granule, tile));
        }
        return MLIP_OK;
    }
    const uint32_t seq = a->seq;
    const uint32_t *w = sh->w;
    const uint8_t *ws = sh->ws;
    if (!write) {
        shadow_flush(sh, slot);
        uint32_t *r = sh->r[slot], *bm = sh->bm[slot];
        for (uint64_t i = 0; i < rows; i++) {
            const uint64_t g0 = (off + i * stride) / granule;
            const uint64_t g1 = (off + i * stride + len - 1) / granule;
            for (uint64_t g = g0; g <= g1; g++) {
                if (g > g0 && w[g] == w[g - 1] && ws[g] == ws[g - 1]) continue;
                if (read_state(a, ws[g], w[g]) != 0) {
                    return shadow_mark(a, sh, g0, g1, 0, slot, granule, tile);
                }
            }
            if (i + 1 < rows) {
                for (uint64_t g = g0; g <= g1; g++) r[g] = seq;
                for (uint64_t b = g0 >> 6; b <= g1 >> 6; b++) bm[b] = seq;
            } else {
                sh->memo_g0[slot] = g0;
                sh->memo_g1[slot] = g1;
                sh->memo_seq[slot] = seq;
                sh->memo_valid[slot] = 1;
            }
        }
        return MLIP_OK;
    }
    const uint64_t first = off / granule;
    const uint64_t last = (off + (rows - 1) * stride + len - 1) / granule;
    for (uint32_t k = 0; k < sh->nr; k++) {
        if (sh->memo_valid[k] && sh->memo_g0[k] <= last && first <= sh->memo_g1[k]) {
            shadow_flush(sh, k);
        }
    }
    const uint32_t *vc = a->rc->st[a->s].vc;
    /* reader slots whose every recorded read over the rows' whole span is in the writer's
     * clock need no per-row look (writes change neither r[] nor bm[]) */
    uint32_t check[MLIP_MAX_TILES], nc = 0;
    for (uint32_t k = 0; k < sh->nr; k++) {
        const uint32_t lim = vc[sh->rstream[k]], *bm = sh->bm[k];
        uint32_t mx = 0;
        for (uint64_t b = first >> 6; b <= last >> 6; b++) mx = bm[b] > mx ? bm[b] : mx;
        if (mx > lim) check[nc++] = k;
    }
    for (uint64_t i = 0; i < rows; i++) {
        const uint64_t g0 = (off + i * stride) / granule;
        const uint64_t g1 = (off + i * stride + len - 1) / granule;
        int bad = 0;
        for (uint64_t g = g0; g <= g1 && !bad; g++) {
            bad = w[g] != 0 && vc[ws[g]] < w[g];
        }
        for (uint32_t c = 0; c < nc && !bad; c++) {
            const uint32_t k = check[c];
            const uint32_t lim = vc[sh->rstream[k]];
            const uint32_t *bm = sh->bm[k], *r = sh->r[k];
            uint32_t mx = 0;
            for (uint64_t b = g0 >> 6; b <= g1 >> 6; b++) mx = bm[b] > mx ? bm[b] : mx;
            if (mx <= lim) continue;
            for (uint64_t g = g0; g <= g1 && !bad; g++) bad = r[g] > lim;
        }
        if (bad) {
            return shadow_mark(a, sh, g0, g1, 1, slot, granule, tile);
        }
        for (uint64_t g = g0; g <= g1; g++) sh->w[g] = seq;
        memset(sh->ws + g0, (int)a->s, g1 - g0 + 1);
    }
    return MLIP_OK;
}

static int ocm_mark(const acc_ctx *a, uint32_t lt, uint64_t lo, uint64_t hi, int write)
{
    return shadow_mark(a, &a->sim->osh[lt], lo / MLIP_OCM_GRANULE, (hi - 1) / MLIP_OCM_GRANULE,
                       write, a->s % 3, MLIP_OCM_GRANULE, (int)(a->sim->tile0 + lt));
}

/* the DRAM shadow holding [lo, hi): 0 output, 1 scratch, -1 none (input / weights) */
static int dram_shadow_of(const mlip_sim *sim, uint64_t lo, uint64_t hi)
{
    if (sim->dsh[0].n != 0 && lo >= sim->info.output_offset &&
        hi <= sim->info.output_offset + sim->info.output_size) {
        return 0;
    }
    if (sim->dsh[1].n != 0 && lo >= sim->info.scratch_offset &&
        hi <= sim->info.scratch_offset + sim->info.scratch_size) {
        return 1;
    }
    return -1;
}

/* whether [lo, hi) overlaps a DRAM shadow (output or scratch) */
static int dram_touches_shadow(const mlip_sim *sim, uint64_t lo, uint64_t hi)
{
    const mlip_model_info *m = &sim->info;
    return (sim->dsh[0].n != 0 && lo < m->output_offset + m->output_size &&
            m->output_offset < hi) ||
           (sim->dsh[1].n != 0 && lo < m->scratch_offset + m->scratch_size &&
            m->scratch_offset < hi);
}

static int dram_mark(const acc_ctx *a, uint64_t lo, uint64_t hi, int write)
{
    mlip_sim *sim = a->sim;
    int r = dram_shadow_of(sim, lo, hi);
    if (r < 0) {
        return MLIP_OK; /* input / weights: read-only, always valid */
    }
    shadow *sh = &sim->dsh[r];
    return shadow_mark(a, sh, (lo - sh->base) / MLIP_DRAM_GRANULE,
                       (hi - 1 - sh->base) / MLIP_DRAM_GRANULE, write, a->s / 3,
                       MLIP_DRAM_GRANULE, -1);
}

/* mark `rows` byte ranges of `len` bytes, `stride` bytes apart, starting at `addr` */
static int ocm_mark_rows(const acc_ctx *a, uint32_t lt, uint64_t addr, uint64_t rows,
                         uint64_t len, uint64_t stride, int write)
{
    if (!a->sim->deps_now) {
        return MLIP_OK;
    }
    if (stride == len) {
        return ocm_mark(a, lt, addr, addr + rows * len, write);
    }
    return shadow_mark_rows(a, &a->sim->osh[lt], addr, rows, len, stride, write, a->s % 3,
                            MLIP_OCM_GRANULE, (int)(a->sim->tile0 + lt));
}

/* ---- executors --------------------------------------------------------------------------- */
static int ensure(mlip_sim *sim, void **buf, size_t *cap, size_t bytes)
{
    if (*cap >= bytes) {
        return MLIP_OK;
    }
    void *p = realloc(*buf, bytes);
    if (p == NULL) {
        return fail(sim, MLIP_ERR_NOMEM, "out of memory (%zu bytes of scratch)", bytes);
    }
    *buf = p;
    *cap = bytes;
    return MLIP_OK;
}

typedef struct cost {
    uint64_t cycles;      /* busy cycles of the engine (excluding DMA transfer) */
    uint64_t dram_bytes;  /* DMA: DRAM-side bytes */
    uint64_t macs;
    int engine;           /* 0 none, 1 matrix, 2 vector, 3 dma, 4 tile link */
    int int8;
    uint64_t link_bytes;  /* TILE_COPY: bytes of the box (sent once, to every tile of mask) */
    uint32_t link_mask;   /* TILE_COPY: destination tiles, bit i = local tile i */
} cost;

/* copy `n` elements of `es` bytes (1, 2 or 4), `ds` / `ss` bytes apart: a fixed-size memcpy
 * per element compiles to one load and one store (no library call per element) */
static void copy_strided(uint8_t *dst, uint64_t ds, const uint8_t *src, uint64_t ss, uint64_t n,
                         uint32_t es)
{
    switch (es) {
    case 1:
        for (uint64_t i = 0; i < n; i++) dst[i * ds] = src[i * ss];
        return;
    case 2:
        if (ss == 0 && ds == 2) { /* a broadcast into a contiguous row: a vectorisable fill */
            uint16_t v;
            memcpy(&v, src, 2);
            const uint64_t four = v * 0x0001000100010001ull;
            uint64_t i = 0;
            for (; i + 4 <= n; i += 4) memcpy(dst + 2 * i, &four, 8);
            for (; i < n; i++) memcpy(dst + 2 * i, &v, 2);
            return;
        }
        for (uint64_t i = 0; i < n; i++) memcpy(dst + i * ds, src + i * ss, 2);
        return;
    case 4:
        for (uint64_t i = 0; i < n; i++) memcpy(dst + i * ds, src + i * ss, 4);
        return;
    default:
        for (uint64_t i = 0; i < n; i++) memcpy(dst + i * ds, src + i * ss, es);
        return;
    }
}

/* 1 if no two elements of the box (extents n, strides st in elements) share a place: taken
 * by increasing stride, each dimension of extent > 1 steps past the whole reach of the
 * smaller ones */
static int box_injective(const uint64_t *n, const uint64_t *st, int dims)
{
    int used[4] = {0, 0, 0, 0};
    uint64_t reach = 1; /* elements spanned by the dimensions taken so far */
    for (;;) {
        int next = -1;
        for (int d = 0; d < dims; d++) {
            if (!used[d] && n[d] > 1 && (next < 0 || st[d] < st[next])) next = d;
        }
        if (next < 0) return 1;
        if (st[next] < reach) return 0;
        used[next] = 1;
        reach += st[next] * (n[next] - 1);
    }
}

static inline void copy_row(uint8_t *dst, const uint8_t *src, uint64_t n);

/* A DMA without padding or conversion: copy the box (extents n, source / destination strides
 * in elements of es bytes, innermost last) from src to dst, which are different buffers.
 * Dimensions of extent 1 are dropped and dimensions that continue each other on both sides
 * are merged (the same element pairs in the same order); when the innermost dimension is
 * short and the destination never writes one place twice, the longest dimension is copied
 * innermost instead (a layout transpose: the order of the writes cannot matter). */
static void dma_copy_box(uint8_t *dst, const uint8_t *src, const uint64_t *n_in,
                         const uint64_t *sst_in, const uint64_t *dst_in, uint32_t es, int store)
{
    uint64_t n[4] = {1, 1, 1, 1}, ss[4] = {0, 0, 0, 0}, ds[4] = {0, 0, 0, 0};
    int dims = 0;
    for (int d = 0; d < 4; d++) {
        if (n_in[d] == 0) return;
        if (n_in[d] == 1) continue;
        if (dims > 0 && ss[dims - 1] == n_in[d] * sst_in[d] &&
            ds[dims - 1] == n_in[d] * dst_in[d]) { /* continues the outer one: merge */
            n[dims - 1] *= n_in[d];
            ss[dims - 1] = sst_in[d];
            ds[dims - 1] = dst_in[d];
            continue;
        }
        n[dims] = n_in[d];
        ss[dims] = sst_in[d];
        ds[dims] = dst_in[d];
        dims++;
    }
    if (dims == 0) { /* one element */
        memcpy(dst, src, es);
        return;
    }
    /* align to four dimensions, innermost last */
    int shift = 4 - dims;
    for (int d = 3; d >= 0; d--) {
        int from = d - shift;
        n[d] = from >= 0 ? n[from] : 1;
        ss[d] = from >= 0 ? ss[from] : 0;
        ds[d] = from >= 0 ? ds[from] : 0;
    }
    int inner = 3;
    if (!(ss[3] == 1 && ds[3] == 1) && n[3] < 16) {
        for (int d = shift; d < 3; d++) {
            if (n[d] >= 4 * n[3] && n[d] > n[inner]) inner = d;
        }
        if (inner != 3 && !box_injective(n, ds, 4)) inner = 3;
    }
    if (inner != 3) { /* the long dimension innermost */
        uint64_t t;
        t = n[3], n[3] = n[inner], n[inner] = t;
        t = ss[3], ss[3] = ss[inner], ss[inner] = t;
        t = ds[3], ds[3] = ds[inner], ds[inner] = t;
    }
    for (uint64_t i0 = 0; i0 < n[0]; i0++) {
        for (uint64_t i1 = 0; i1 < n[1]; i1++) {
            for (uint64_t i2 = 0; i2 < n[2]; i2++) {
                uint64_t so = (i0 * ss[0] + i1 * ss[1] + i2 * ss[2]) * es;
                uint64_t dof = (i0 * ds[0] + i1 * ds[1] + i2 * ds[2]) * es;
                if (ss[3] == 1 && ds[3] == 1) {
                    if (store) {
                        memmove(dst + dof, src + so, n[3] * es);
                    } else {
                        copy_row(dst + dof, src + so, n[3] * es);
                    }
                    continue;
                }
                copy_strided(dst + dof, ds[3] * es, src + so, ss[3] * es, n[3], es);
            }
        }
    }
}

/* `keep`: for a DMA_LOAD, which parts of its OCM run to copy (wkeep_plan; use = 0: all) */
static int exec_dma(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in, cost *c,
                    const wkeep_gaps *keep)
{
    const uint32_t *a = in->arg;
    int load = in->opcode == MLIP_OP_DMA_LOAD;
    uint8_t *ocm = sim->ocm[lt];
    int sdt = in->src_dtype, ddt = in->dst_dtype;
    uint32_t ses = DT_SIZE[sdt], des = DT_SIZE[ddt];
    uint64_t dim[4], pad[4], src[4], ds[4], os[4];
    for (int d = 0; d < 4; d++) {
        dim[d] = a[MLIP_DMA_DIM0 + d];
        pad[d] = a[MLIP_DMA_PAD0 + d];
        src[d] = a[MLIP_DMA_SRC_DIM0 + d];
        ds[d] = a[MLIP_DMA_DRAM_STRIDE0 + d];
        os[d] = a[MLIP_DMA_OCM_STRIDE0 + d];
    }
    uint64_t dram_addr = a[MLIP_DMA_DRAM_ADDR], ocm_addr = a[MLIP_DMA_OCM_ADDR];
    uint32_t dram_es = load ? ses : des, ocm_es = load ? des : ses;
    int scale = (in->flags & MLIP_F_SCALE) != 0;
    int same = sdt == ddt && !scale;
    float sc = in->fparam[MLIP_FP_SCALE];
    float izp = dt_is_int(sdt) ? (float)in->in_zp : 0.0f;
    /* dependency checks: reads first, then writes */
    if (sim->deps_now) {
        for (int pass = 0; pass < 2; pass++) {
            int write = pass == 1;
            int dram_side = load ? !write : write;
            uint64_t ext[4], st[4];
            memcpy(ext, dram_side ? src : dim, sizeof ext);
            memcpy(st, dram_side ? ds : os, sizeof st);
            uint64_t base = dram_side ? dram_addr : ocm_addr, es = dram_side ? dram_es : ocm_es;
            if (ext[0] == 0 || ext[1] == 0 || ext[2] == 0 || ext[3] == 0) {
                continue; /* an empty box marks nothing */
            }
            /* the box's bounding byte range: when it lies in one DRAM region (or none), every
             * row does, so the region is looked up once */
            uint64_t box_hi = base + ((ext[0] - 1) * st[0] + (ext[1] - 1) * st[1] +
                                      (ext[2] - 1) * st[2] + (ext[3] - 1) * st[3] + 1) * es;
            int box_rgn = 0; /* OCM: one region */
            if (dram_side) {
                if (!dram_touches_shadow(sim, base, box_hi)) {
                    continue; /* all in read-only DRAM: dram_mark is a no-op for every row */
                }
                box_rgn = dram_shadow_of(sim, base, box_hi);
            }
            /* with one region, rows that continue each other (row stride = row length) are
             * merged into longer rows: the same runs as the merging below, in fewer steps */
            if (box_rgn >= 0 && st[3] == 1) {
                for (int d = 2; d >= 0; d--) {
                    int inner_units = 1;
                    for (int e = d + 1; e < 3; e++) inner_units &= ext[e] == 1;
                    if (inner_units && st[d] == ext[3]) {
                        ext[3] *= ext[d];
                        ext[d] = 1;
                    }
                }
            }
            /* rows that no merging joins (channel slices: a row stride longer than the row)
             * go to shadow_mark_rows, block by block: the same marks as below */
            if (box_rgn >= 0 && st[3] == 1) {
                uint64_t oe[3] = {1, 1, 1}, ost[3] = {0, 0, 0};
                for (int d = 2, o = 2; d >= 0; d--) { /* the non-unit outer dims, in order */
                    if (ext[d] != 1) {
                        oe[o] = ext[d];
                        ost[o] = st[d];
                        o--;
                    }
                }
                uint64_t span = (oe[2] - 1) * ost[2] + ext[3]; /* a block, in elements */
                int joins = (oe[2] > 1 && ost[2] == ext[3]) || (oe[1] > 1 && ost[1] == span) ||
                            (oe[0] > 1 && ost[0] == (oe[1] - 1) * ost[1] + span);
                if (oe[2] > 1 && !joins) {
                    shadow *sh = dram_side ? &sim->dsh[box_rgn] : &sim->osh[lt];
                    uint64_t sbase = dram_side ? sh->base : 0;
                    for (uint64_t j0 = 0; j0 < oe[0]; j0++) {
                        for (uint64_t j1 = 0; j1 < oe[1]; j1++) {
                            uint64_t row = base + (j0 * ost[0] + j1 * ost[1]) * es;
                            TRY(dram_side
                                    ? shadow_mark_rows(ac, sh, row - sbase, oe[2], ext[3] * es,
                                                       ost[2] * es, write, ac->s / 3,
                                                       MLIP_DRAM_GRANULE, -1)
                                    : shadow_mark_rows(ac, sh, row, oe[2], ext[3] * es,
                                                       ost[2] * es, write, ac->s % 3,
                                                       MLIP_OCM_GRANULE,
                                                       (int)(sim->tile0 + lt)));
                        }
                    }
                    continue;
                }
            }
            /* contiguous rows are marked as one range [run_lo, run_hi): the same granules
             * in the same ascending order, without the per-call overhead; a DRAM run never
             * spans two shadow regions */
            uint64_t run_lo = 0, run_hi = 0;
            int run_rgn = -1;
            for (uint64_t i0 = 0; i0 < ext[0]; i0++) {
                for (uint64_t i1 = 0; i1 < ext[1]; i1++) {
                    for (uint64_t i2 = 0; i2 < ext[2]; i2++) {
                        uint64_t row = base + (i0 * st[0] + i1 * st[1] + i2 * st[2]) * es;
                        uint64_t n = ext[3], s3 = st[3] * es;
                        if (st[3] == 1) {
                            uint64_t hi = row + n * es;
                            if (n == 0) continue;
                            int rgn = box_rgn >= 0 ? box_rgn : dram_shadow_of(sim, row, hi);
                            if (rgn < 0) continue; /* read-only DRAM: nothing to mark */
                            if (run_hi > run_lo && rgn == run_rgn && row == run_hi) {
                                run_hi = hi;
                                continue;
                            }
                            if (run_hi > run_lo) {
                                TRY(dram_side ? dram_mark(ac, run_lo, run_hi, write)
                                              : ocm_mark(ac, lt, run_lo, run_hi, write));
                            }
                            run_lo = row;
                            run_hi = hi;
                            run_rgn = rgn;
                            continue;
                        }
                        if (run_hi > run_lo) {
                            TRY(dram_side ? dram_mark(ac, run_lo, run_hi, write)
                                          : ocm_mark(ac, lt, run_lo, run_hi, write));
                            run_lo = run_hi = 0;
                        }
                        if (dram_side && !dram_touches_shadow(sim, row, row + (n - 1) * s3 + es)) {
                            continue; /* every element in read-only DRAM: dram_mark is a no-op */
                        }
                        for (uint64_t i3 = 0; i3 < n; i3++) {
                            uint64_t p = row + i3 * s3;
                            if (dram_side) {
                                TRY(dram_mark(ac, p, p + es, write));
                            } else {
                                TRY(ocm_mark(ac, lt, p, p + es, write));
                            }
                        }
                    }
                }
            }
            if (run_hi > run_lo) {
                TRY(dram_side ? dram_mark(ac, run_lo, run_hi, write)
                              : ocm_mark(ac, lt, run_lo, run_hi, write));
            }
        }
    }
    uint64_t nsrc = src[0] * src[1] * src[2] * src[3];
    c->dram_bytes = nsrc * dram_es;
    c->engine = 3;
    /* without padding or conversion: a copy of the box (merged rows, transposes) */
    int plain = same;
    for (int d = 0; d < 4; d++) plain &= pad[d] == 0 && src[d] == dim[d];
    if (plain) {
        if (load && keep->use) { /* one run on both sides: the parts not kept */
            for (uint32_t k = 0; k < keep->n; k++) {
                memcpy(ocm + ocm_addr + keep->lo[k], sim->dram + dram_addr + keep->lo[k],
                       keep->hi[k] - keep->lo[k]);
            }
            return MLIP_OK;
        }
        if (load) {
            dma_copy_box(ocm + ocm_addr, sim->dram + dram_addr, dim, ds, os, des, 0);
        } else {
            dma_copy_box(sim->dram + dram_addr, ocm + ocm_addr, dim, os, ds, des, 1);
        }
        return MLIP_OK;
    }
    if (load) {
        uint8_t zero[4];
        st_elem(zero, ddt, 0.0f, in->out_zp);
        for (uint64_t i0 = 0; i0 < dim[0]; i0++) {
            for (uint64_t i1 = 0; i1 < dim[1]; i1++) {
                for (uint64_t i2 = 0; i2 < dim[2]; i2++) {
                    uint8_t *orow = ocm + ocm_addr + (i0 * os[0] + i1 * os[1] + i2 * os[2]) * des;
                    int row_valid = i0 >= pad[0] && i0 - pad[0] < src[0] && i1 >= pad[1] &&
                                    i1 - pad[1] < src[1] && i2 >= pad[2] && i2 - pad[2] < src[2];
                    const uint8_t *srow = NULL;
                    if (row_valid) {
                        srow = sim->dram + dram_addr +
                               ((i0 - pad[0]) * ds[0] + (i1 - pad[1]) * ds[1] +
                                (i2 - pad[2]) * ds[2]) * ses;
                    }
                    /* [lo3, hi3): destination columns with a source element */
                    uint64_t lo3 = row_valid ? pad[3] : dim[3];
                    uint64_t hi3 = row_valid ? pad[3] + src[3] : dim[3];
                    for (uint64_t i3 = 0; i3 < dim[3]; i3++) {
                        if (i3 == lo3) {
                            i3 = hi3 - 1;
                            continue;
                        }
                        memcpy(orow + i3 * os[3] * des, zero, des);
                    }
                    if (lo3 >= hi3) {
                        continue;
                    }
                    if (same && os[3] == 1 && ds[3] == 1) {
                        memcpy(orow + lo3 * des, srow, (hi3 - lo3) * des);
                        continue;
                    }
                    if (same) {
                        copy_strided(orow + lo3 * os[3] * des, os[3] * des, srow, ds[3] * ses,
                                     hi3 - lo3, des);
                        continue;
                    }
                    for (uint64_t i3 = lo3; i3 < hi3; i3++) {
                        uint8_t *o = orow + i3 * os[3] * des;
                        const uint8_t *sp = srow + (i3 - pad[3]) * ds[3] * ses;
                        float v = ld_elem(sp, sdt);
                        if (scale) {
                            v = (v - izp) * sc;
                        }
                        st_elem(o, ddt, v, in->out_zp);
                    }
                }
            }
        }
        return MLIP_OK;
    }
    for (uint64_t i0 = 0; i0 < dim[0]; i0++) {
        for (uint64_t i1 = 0; i1 < dim[1]; i1++) {
            for (uint64_t i2 = 0; i2 < dim[2]; i2++) {
                const uint8_t *srow = ocm + ocm_addr + (i0 * os[0] + i1 * os[1] + i2 * os[2]) * ses;
                uint8_t *drow = sim->dram + dram_addr + (i0 * ds[0] + i1 * ds[1] + i2 * ds[2]) * des;
                if (same && os[3] == 1 && ds[3] == 1) {
                    memmove(drow, srow, dim[3] * des);
                    continue;
                }
                if (same) {
                    copy_strided(drow, ds[3] * des, srow, os[3] * ses, dim[3], des);
                    continue;
                }
                for (uint64_t i3 = 0; i3 < dim[3]; i3++) {
                    const uint8_t *sp = srow + i3 * os[3] * ses;
                    uint8_t *dp = drow + i3 * ds[3] * des;
                    float v = ld_elem(sp, sdt);
                    if (scale) {
                        v = (v - izp) * sc;
                    }
                    st_elem(dp, ddt, v, in->out_zp);
                }
            }
        }
    }
    return MLIP_OK;
}

/* conv geometry, shared by CONV and GEMM */
typedef struct conv_geo {
    uint64_t in_addr, out_addr, w_addr, b_addr, s_addr;
    int64_t ih, iw, ic, ips, oh, ow, oc, ops, kh, kw, sh, sw, dh, dw, groups, pt, pl;
} conv_geo;

static void conv_geometry(const mlip_insn *in, conv_geo *g)
{
    const uint32_t *a = in->arg;
    if (in->opcode == MLIP_OP_GEMM) {
        g->in_addr = a[MLIP_GEMM_IN_ADDR]; g->out_addr = a[MLIP_GEMM_OUT_ADDR];
        g->w_addr = a[MLIP_GEMM_W_ADDR]; g->b_addr = a[MLIP_GEMM_BIAS_ADDR];
        g->s_addr = a[MLIP_GEMM_SCALE_ADDR];
        g->ih = 1; g->iw = a[MLIP_GEMM_M]; g->ic = a[MLIP_GEMM_K];
        g->ips = a[MLIP_GEMM_IN_ROW_STRIDE];
        g->oh = 1; g->ow = a[MLIP_GEMM_M]; g->oc = a[MLIP_GEMM_N];
        g->ops = a[MLIP_GEMM_OUT_ROW_STRIDE];
        g->kh = g->kw = g->sh = g->sw = g->dh = g->dw = g->groups = 1;
        g->pt = g->pl = 0;
        return;
    }
    g->in_addr = a[MLIP_CONV_IN_ADDR]; g->out_addr = a[MLIP_CONV_OUT_ADDR];
    g->w_addr = a[MLIP_CONV_W_ADDR]; g->b_addr = a[MLIP_CONV_BIAS_ADDR];
    g->s_addr = a[MLIP_CONV_SCALE_ADDR];
    g->ih = a[MLIP_CONV_IH]; g->iw = a[MLIP_CONV_IW]; g->ic = a[MLIP_CONV_IC];
    g->ips = a[MLIP_CONV_IN_PIX_STRIDE];
    g->oh = a[MLIP_CONV_OH]; g->ow = a[MLIP_CONV_OW]; g->oc = a[MLIP_CONV_OC];
    g->ops = a[MLIP_CONV_OUT_PIX_STRIDE];
    g->kh = a[MLIP_CONV_KH]; g->kw = a[MLIP_CONV_KW]; g->sh = a[MLIP_CONV_SH];
    g->sw = a[MLIP_CONV_SW]; g->dh = a[MLIP_CONV_DH]; g->dw = a[MLIP_CONV_DW];
    g->groups = a[MLIP_CONV_GROUPS];
    g->pt = (int32_t)a[MLIP_CONV_PAD_T]; g->pl = (int32_t)a[MLIP_CONV_PAD_L];
}

#define OB 16 /* output-channel block of the fp32 kernel */
#define PB 6  /* pixel block of the fp32 kernel */

/* valid kernel index range [lo, hi) for output coordinate r: 0 <= r*s + k*d - p < n */
static inline void tap_range(int64_t r, int64_t s, int64_t d, int64_t p, int64_t n, int64_t k,
                             int64_t *lo, int64_t *hi)
{
    int64_t base = r * s - p;
    int64_t l = 0, h = k;
    while (l < k && base + l * d < 0) l++;
    while (h > l && base + (h - 1) * d >= n) h--;
    *lo = l;
    *hi = h;
}

/* The NaN fix-up of the fp16 CONV kernels.  Their fused multiply-adds (and the compiler,
 * which may commute `acc + x * w` in the others) choose another NaN where two meet than the
 * documented order does (docs/isa.md: x's in x * w, acc's in acc + x * w and acc + bias);
 * every other result, infinities included, is the same (the product is exact), and so is
 * whether a result is NaN.  So the kernels run as they are, and a store that meets a NaN
 * recomputes that pixel's 16-channel block here in the documented order, pinned (OP_FIRST),
 * on every path.  The taps of pixel k: tap (i, j), channel c at
 * X[pix(k) + i * rs + j * cs + c] for i in [i0, i1), j in [j0, j1); pix(k) = off[k], or
 * base + k * pst where off is NULL; weights of block h at ((i * kw + j) * icg + c) * OB + o +
 * h * second, fp32 in wf, or (wf NULL) fp16 in wh. */
typedef struct conv_fix {
    const float *X;
    const float *wf;
    const uint16_t *wh;
    const int64_t *off;
    int64_t base, pst, rs, cs, i0, i1, j0, j1, kw, icg, second;
} conv_fix;

/* v[0..16) = the documented sum of pixel k, block h (+ bias[0..16) unless NULL) */
static void conv_fix_block(const conv_fix *f, int64_t k, int h, const float *bias, float v[OB])
{
    v4f a[OB / 4] = {{0}};
    const int64_t pix = f->off != NULL ? f->off[k] : f->base + k * f->pst;
    for (int64_t i = f->i0; i < f->i1; i++) {
        for (int64_t j = f->j0; j < f->j1; j++) {
            const float *xp = f->X + pix + i * f->rs + j * f->cs;
            const int64_t t0 = (i * f->kw + j) * f->icg * OB + h * f->second;
            for (int64_t c = 0; c < f->icg; c++) {
                const float x = xp[c];
                const v4f xv = {x, x, x, x};
                float w[OB];
                if (f->wf != NULL) {
                    memcpy(w, f->wf + t0 + c * OB, sizeof w);
                } else {
                    for (int o = 0; o < OB; o++) w[o] = h2f(f->wh[t0 + c * OB + o]);
                }
                for (int q = 0; q < OB / 4; q++) {
                    v4f wv, p;
                    memcpy(&wv, w + 4 * q, sizeof wv);
                    MUL_FIRST(0, "ps", p, xv, wv);
                    ADD_FIRST(0, "ps", a[q], a[q], p);
                }
            }
        }
    }
    for (int q = 0; q < OB / 4 && bias != NULL; q++) {
        v4f bv;
        memcpy(&bv, bias + 4 * q, sizeof bv);
        ADD_FIRST(0, "ps", a[q], a[q], bv);
    }
    memcpy(v, a, OB * sizeof(float));
}

/* ---- worker threads ------------------------------------------------------------------- */
/* How long a thread spins before it sleeps, waiting for the next job (a worker) or for the
 * workers of this one (the caller): a tile-parallel run hands out one job per barrier, often
 * tens of microseconds apart, and waking a sleeping thread costs about as much. */
#define POOL_SPIN_NS 200000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* a worker's wait: no new job (gen still `seen`) and no quit */
static int pool_idle(const pool *p, uint64_t seen)
{
    return __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen &&
           !__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE);
}

/* the caller's wait: workers still in the job */
static int pool_busy(const pool *p, uint64_t unused)
{
    (void)unused;
    return __atomic_load_n(&p->active, __ATOMIC_ACQUIRE) != 0;
}

/* spin while waiting(p, arg), at most POOL_SPIN_NS (the caller then sleeps on the condition) */
static void spin_while(int (*waiting)(const pool *, uint64_t), const pool *p, uint64_t arg)
{
    uint64_t t0 = 0;
    for (uint32_t i = 1; waiting(p, arg); i++) {
        cpu_relax();
        if ((i & 255) == 0) {
            const uint64_t t = now_ns();
            if (t0 == 0) {
                t0 = t;
            } else if (t - t0 > POOL_SPIN_NS) {
                return;
            }
        }
    }
}

static void pool_parts(pool *p, uint32_t thread)
{
    if (p->affine) { /* its own part first, then any part no thread has taken */
        if (thread < p->parts && !atomic_exchange(&p->claimed[thread], 1)) {
            p->fn(p->ctx, (int64_t)thread, thread);
        }
        for (int64_t k = 0; k < p->parts; k++) {
            if (!atomic_load(&p->claimed[k]) && !atomic_exchange(&p->claimed[k], 1)) {
                p->fn(p->ctx, k, thread);
            }
        }
        return;
    }
    for (;;) {
        long long k = atomic_fetch_add(&p->next, 1);
        if (k >= p->parts) return;
        p->fn(p->ctx, (int64_t)k, thread);
    }
}

static void *pool_worker(void *arg)
{
    pool_arg *pa = arg;
    pool *p = pa->p;
    uint64_t seen = 0;
    for (;;) {
        spin_while(pool_idle, p, seen);
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = p->gen;
        __atomic_add_fetch(&p->active, 1, __ATOMIC_ACQ_REL);
        pthread_mutex_unlock(&p->mu);
        pool_parts(p, pa->thread);
        pthread_mutex_lock(&p->mu);
        if (__atomic_sub_fetch(&p->active, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_cond_signal(&p->done);
        }
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* fn(ctx, k) for k in [0, parts): on the workers and this thread when there are workers and
 * `parallel`, else in order on this thread.  A worker joins the job when it gets to run
 * (`active`, under mu); this thread takes parts too and then waits only for the workers that
 * joined, so a worker the OS has not scheduled yet (a loaded machine) costs nothing: when it
 * runs it finds no part left, or joins the next job.  The job's fields change only while no
 * worker is active. */
static void pool_run(pool *p, part_fn fn, void *ctx, int64_t parts, int parallel)
{
    if (p->n == 0 || parts < 2 || !parallel) {
        for (int64_t k = 0; k < parts; k++) fn(ctx, k, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    while (p->active != 0) pthread_cond_wait(&p->done, &p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->parts = parts;
    atomic_store(&p->next, 0);
    /* as many parts as threads or fewer: each thread's own part first (a tile-parallel
     * run's parts are fixed sets of tiles, whose OCM then stays in one core's caches) */
    p->affine = parts <= (int64_t)p->n + 1;
    for (int64_t k = 0; p->affine && k < parts; k++) atomic_store(&p->claimed[k], 0);
    __atomic_store_n(&p->gen, p->gen + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    pool_parts(p, 0);
    spin_while(pool_busy, p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active != 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* start `threads - 1` workers; 0 if a thread could not be started (those started are kept
 * and stopped by pool_stop) */
static int pool_start(mlip_sim *sim, uint32_t threads)
{
    pool *p = &sim->pool;
    if (pthread_mutex_init(&p->mu, NULL) != 0) return 0;
    if (pthread_cond_init(&p->go, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return 0;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
        return 0;
    }
    if (pthread_mutex_init(&sim->msg_mu, NULL) != 0) {
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
        return 0;
    }
    sim->pool_init = 1;
    for (uint32_t k = 0; k + 1 < threads; k++) {
        p->arg[k] = (pool_arg){p, k + 1};
        if (pthread_create(&p->th[k], NULL, pool_worker, &p->arg[k]) != 0) return 0;
        p->n++;
    }
    return 1;
}

static void pool_stop(mlip_sim *sim)
{
    pool *p = &sim->pool;
    if (!sim->pool_init) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t k = 0; k < p->n; k++) pthread_join(p->th[k], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->go);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&sim->msg_mu);
    sim->pool_init = 0;
    p->n = 0;
}

/* ---- prepared (fp32) inputs -----------------------------------------------------------------
 * The conversion of a CONV's input block to fp32 is kept and reused by the next CONV/GEMM
 * reading the same OCM bytes of the same tile with the same geometry; any OCM write that
 * overlaps the source range invalidates it (prep_invalidate, called by exec_one).  One
 * buffer for all tiles, not one per tile: it stays in the host's cache from one CONV to the
 * next, and the next CONV rarely reads the same block (never in ResNet-50 at 8 tiles). */
/* the first 64-byte boundary in a buffer allocated with 64 bytes to spare: whole-cache-line
 * vector loads of the prepared operands never straddle two lines */
static inline float *align64f(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static float *prep_lookup(mlip_sim *sim, prep_cache *c, uint32_t lt,
                          const uint64_t key[PREP_KEYS], uint64_t lo, uint64_t hi,
                          size_t floats, int *hit)
{
    if (c->valid && c->tile == lt && c->lo == lo && c->hi == hi &&
        memcmp(c->key, key, sizeof c->key) == 0) {
        *hit = 1;
        return align64f(c->buf);
    }
    *hit = 0;
    c->valid = 0;
    if (ensure(sim, (void **)&c->buf, &c->cap, floats * sizeof(float) + 64) != MLIP_OK) {
        return NULL;
    }
    memcpy(c->key, key, sizeof c->key);
    c->tile = lt;
    c->lo = lo;
    c->hi = hi;
    return align64f(c->buf);
}

static int box_is_run(const uint32_t *dim, const uint32_t *stride);

/* OCM bytes [lo, hi) of tile lt are (about to be) written: they are no longer kept */
static void wkeep_cut(mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t hi)
{
    wkeep_table *t = &sim->wkeep[lt];
    if (hi <= t->lo || t->hi <= lo) return;
    uint64_t all_lo = UINT64_MAX, all_hi = 0;
    for (uint32_t k = 0; k < t->n;) {
        wkeep_entry *e = &t->e[k];
        if (hi <= e->ocm_lo || e->ocm_hi <= lo) {
            all_lo = e->ocm_lo < all_lo ? e->ocm_lo : all_lo;
            all_hi = e->ocm_hi > all_hi ? e->ocm_hi : all_hi;
            k++;
            continue;
        }
        const int left = e->ocm_lo < lo, right = hi < e->ocm_hi;
        if (left && right && t->n < WKEEP_MAX) { /* split: the right part as a new piece */
            t->e[t->n++] = (wkeep_entry){hi, e->ocm_hi, e->delta};
        }
        if (left || right) {
            if (left) e->ocm_hi = lo; else e->ocm_lo = hi;
            all_lo = e->ocm_lo < all_lo ? e->ocm_lo : all_lo;
            all_hi = e->ocm_hi > all_hi ? e->ocm_hi : all_hi;
            k++;
            continue;
        }
        t->e[k] = t->e[--t->n];
    }
    t->next = t->next < t->n ? t->next : 0;
    t->lo = all_lo;
    t->hi = all_hi;
}

/* 1 if the instruction is a DMA_LOAD copying one run of bytes from the DRAM weights region
 * to one run of OCM without conversion: *ocm, *dram, *bytes describe it */
static int dma_weights_run(const mlip_sim *sim, const mlip_insn *in, uint64_t *ocm,
                           uint64_t *dram, uint64_t *bytes)
{
    const uint32_t *a = in->arg;
    if (in->opcode != MLIP_OP_DMA_LOAD || in->src_dtype != in->dst_dtype ||
        (in->flags & MLIP_F_SCALE) != 0) {
        return 0;
    }
    for (int d = 0; d < 4; d++) {
        if (a[MLIP_DMA_PAD0 + d] != 0 || a[MLIP_DMA_SRC_DIM0 + d] != a[MLIP_DMA_DIM0 + d]) {
            return 0;
        }
    }
    if (!box_is_run(a + MLIP_DMA_DIM0, a + MLIP_DMA_DRAM_STRIDE0) ||
        !box_is_run(a + MLIP_DMA_DIM0, a + MLIP_DMA_OCM_STRIDE0)) {
        return 0;
    }
    *bytes = (uint64_t)DT_SIZE[in->src_dtype] * a[MLIP_DMA_DIM0] * a[MLIP_DMA_DIM0 + 1] *
             a[MLIP_DMA_DIM0 + 2] * a[MLIP_DMA_DIM0 + 3];
    *dram = a[MLIP_DMA_DRAM_ADDR];
    *ocm = a[MLIP_DMA_OCM_ADDR];
    const uint64_t w0 = sim->info.weights_offset, w1 = w0 + sim->info.weights_size;
    return *dram >= w0 && *dram + *bytes <= w1;
}

/* Before a DMA_LOAD runs (before its own write cuts the pieces): the parts of its OCM run
 * that are not kept copies of its source bytes, if they are at most WKEEP_GAPS */
static void wkeep_plan(const mlip_sim *sim, uint32_t lt, const mlip_insn *in, wkeep_gaps *gp)
{
    gp->use = 0;
    gp->n = 0;
    uint64_t ocm, dram, bytes;
    if (sim->wkeep_gen != sim->host_gen || !dma_weights_run(sim, in, &ocm, &dram, &bytes)) {
        return;
    }
    const wkeep_table *t = &sim->wkeep[lt];
    const uint64_t delta = dram - ocm, end = ocm + bytes;
    uint64_t at = ocm;
    while (at < end) {
        /* a piece holding `at`, else the first one starting after it */
        uint64_t next = end;
        int covered = 0;
        for (uint32_t k = 0; k < t->n; k++) {
            const wkeep_entry *e = &t->e[k];
            if (e->delta != delta || e->ocm_hi <= at) continue;
            if (e->ocm_lo <= at) {
                at = e->ocm_hi < end ? e->ocm_hi : end;
                covered = 1;
                break;
            }
            next = e->ocm_lo < next ? e->ocm_lo : next;
        }
        if (covered) continue;
        if (gp->n == WKEEP_GAPS) return; /* too fragmented: copy everything */
        gp->lo[gp->n] = at - ocm;
        gp->hi[gp->n] = next - ocm;
        gp->n++;
        at = next;
    }
    gp->use = 1;
}

/* OCM bytes [ocm, ocm + bytes) of tile lt now equal the DRAM weights bytes at dram: a
 * kept piece (replacing whatever pieces it overlaps) */
static void wkeep_add(mlip_sim *sim, uint32_t lt, uint64_t ocm, uint64_t dram, uint64_t bytes)
{
    wkeep_table *t = &sim->wkeep[lt];
    wkeep_cut(sim, lt, ocm, ocm + bytes);
    uint32_t k = t->n < WKEEP_MAX ? t->n++ : t->next++ % WKEEP_MAX;
    t->e[k] = (wkeep_entry){ocm, ocm + bytes, dram - ocm};
    t->lo = t->n == 1 || ocm < t->lo ? ocm : t->lo;
    t->hi = t->n == 1 || ocm + bytes > t->hi ? ocm + bytes : t->hi;
}

/* After a DMA_LOAD (and its own cut): its OCM run is a kept copy of its source */
static void wkeep_note(mlip_sim *sim, uint32_t lt, const mlip_insn *in)
{
    uint64_t ocm, dram, bytes;
    if (!dma_weights_run(sim, in, &ocm, &dram, &bytes) || bytes == 0) return;
    wkeep_add(sim, lt, ocm, dram, bytes);
}

/* 1 if OCM bytes [lo, hi) of tile lt lie in one kept piece: *dram, the DRAM weights bytes
 * they equal */
static int wkeep_covers(const mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t hi,
                        uint64_t *dram)
{
    const wkeep_table *t = &sim->wkeep[lt];
    if (sim->wkeep_gen != sim->host_gen || lo < t->lo || t->hi < hi) return 0;
    for (uint32_t k = 0; k < t->n; k++) {
        const wkeep_entry *e = &t->e[k];
        if (e->ocm_lo <= lo && hi <= e->ocm_hi) {
            *dram = lo + e->delta;
            return 1;
        }
    }
    return 0;
}

/* OCM bytes [lo, hi) of tile lt are (about to be) written: what was known of them is gone
 * (the kept pieces, the weights provenance, the checked weights, and the executing thread's
 * converted input; during a tile-parallel run no other thread's converted input can hold
 * them, see run_replay) */
static void prep_invalidate(mlip_sim *sim, scratch *scr, uint32_t lt, uint64_t lo, uint64_t hi)
{
    prep_cache *c = &scr->xcache;
    if (c->valid && c->tile == lt && lo < c->hi && c->lo < hi) {
        c->valid = 0;
    }
    tile_lock(sim, lt);
    wkeep_cut(sim, lt, lo, hi);
    /* the weights provenance and the checked weights of the written bytes are gone */
    wprov_table *t = &sim->wprov[lt];
    for (uint32_t k = 0; k < t->n;) {
        if (lo < t->e[k].ocm_hi && t->e[k].ocm_lo < hi) {
            t->e[k] = t->e[--t->n];
            t->next = t->n;
            continue;
        }
        k++;
    }
    wver_table *v = &sim->wver[lt];
    for (uint32_t k = 0; k < v->n;) {
        if (lo < v->e[k].ocm_hi && v->e[k].ocm_lo < hi) {
            v->e[k] = v->e[--v->n];
            v->next = v->n;
            continue;
        }
        k++;
    }
    tile_unlock(sim, lt);
}

/* The cache entry that tile lt's OCM weights [lo, lo + len) were found equal to, if no
 * OCM write has touched them since and the entry still holds the same weights and key */
static wcache_entry *wver_lookup(mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t len,
                                 const uint64_t key[PREP_KEYS])
{
    const wver_table *v = &sim->wver[lt];
    for (uint32_t k = 0; k < v->n; k++) {
        const wver_entry *r = &v->e[k];
        if (r->ocm_lo != lo || r->ocm_hi != lo + len || r->idx >= sim->wc_n) continue;
        wcache_entry *e = sim->wc[r->idx];
        if (e->valid && e->fill == r->fill && e->raw_len == len &&
            memcmp(e->key, key, sizeof e->key) == 0) {
            e->stamp = ++sim->wc_clock;
            return e;
        }
    }
    return NULL;
}

static void wver_note(mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t len,
                      const wcache_entry *e)
{
    wver_table *v = &sim->wver[lt];
    for (uint32_t k = 0; k < v->n; k++) {
        if (v->e[k].ocm_lo == lo && v->e[k].ocm_hi == lo + len) {
            v->e[k].idx = e->slot;
            v->e[k].fill = e->fill;
            return;
        }
    }
    uint32_t k = v->n < WPROV_MAX ? v->n++ : v->next++ % WPROV_MAX;
    v->e[k] = (wver_entry){lo, lo + len, e->fill, e->slot};
}

static void wprov_add(mlip_sim *sim, uint32_t lt, uint64_t ocm, uint64_t bytes, uint64_t dram)
{
    wprov_table *t = &sim->wprov[lt];
    uint32_t k = t->n < WPROV_MAX ? t->n++ : t->next++ % WPROV_MAX;
    t->e[k] = (wprov_entry){ocm, ocm + bytes, dram};
}

/* 1 if the 4-D box (innermost dimension last) is one run of consecutive elements */
static int box_is_run(const uint32_t *dim, const uint32_t *stride)
{
    uint64_t inner = 1;
    for (int d = 3; d >= 0; d--) {
        if (dim[d] == 0) return 0;
        if (dim[d] != 1 && stride[d] != inner) return 0;
        inner *= dim[d];
    }
    return 1;
}

static uint64_t wprov_source(const mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t len);

/* After a DMA_LOAD or TILE_COPY (and its own invalidation): a copy of one run of bytes
 * without conversion from the DRAM weights region, or from OCM bytes that came from there,
 * records where the written bytes came from. */
static void wprov_note_copy(mlip_sim *sim, uint32_t lt, const mlip_insn *in)
{
    const uint32_t *a = in->arg;
    if (in->opcode == MLIP_OP_TILE_COPY) {
        if (!box_is_run(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_SRC_STRIDE0) ||
            !box_is_run(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_DST_STRIDE0)) {
            return;
        }
        uint64_t bytes = (uint64_t)DT_SIZE[in->src_dtype] * a[MLIP_TCOPY_DIM0] *
                         a[MLIP_TCOPY_DIM0 + 1] * a[MLIP_TCOPY_DIM0 + 2] * a[MLIP_TCOPY_DIM0 + 3];
        tile_lock(sim, lt);
        uint64_t dram = wprov_source(sim, lt, a[MLIP_TCOPY_SRC_ADDR], bytes);
        tile_unlock(sim, lt);
        if (dram == WPROV_NONE) return;
        for (uint32_t t = 0; t < sim->ntiles; t++) {
            if (a[MLIP_TCOPY_DST_TILE_MASK] >> t & 1) {
                tile_lock(sim, t);
                wprov_add(sim, t, a[MLIP_TCOPY_DST_ADDR], bytes, dram);
                tile_unlock(sim, t);
            }
        }
        return;
    }
    if (in->opcode != MLIP_OP_DMA_LOAD || in->src_dtype != in->dst_dtype ||
        (in->flags & MLIP_F_SCALE) != 0) {
        return;
    }
    for (int d = 0; d < 4; d++) {
        if (a[MLIP_DMA_PAD0 + d] != 0 || a[MLIP_DMA_SRC_DIM0 + d] != a[MLIP_DMA_DIM0 + d]) {
            return;
        }
    }
    if (!box_is_run(a + MLIP_DMA_DIM0, a + MLIP_DMA_DRAM_STRIDE0) ||
        !box_is_run(a + MLIP_DMA_DIM0, a + MLIP_DMA_OCM_STRIDE0)) {
        return;
    }
    uint64_t bytes = (uint64_t)DT_SIZE[in->src_dtype] * a[MLIP_DMA_DIM0] * a[MLIP_DMA_DIM0 + 1] *
                     a[MLIP_DMA_DIM0 + 2] * a[MLIP_DMA_DIM0 + 3];
    uint64_t dram = a[MLIP_DMA_DRAM_ADDR];
    uint64_t w0 = sim->info.weights_offset, w1 = w0 + sim->info.weights_size;
    if (dram < w0 || dram + bytes > w1) return;
    tile_lock(sim, lt);
    wprov_add(sim, lt, a[MLIP_DMA_OCM_ADDR], bytes, dram);
    tile_unlock(sim, lt);
}

/* The DRAM source of the OCM bytes [lo, lo + len) if one run of recorded copies covers them
 * (pieces that continue each other on both sides), else WPROV_NONE */
static uint64_t wprov_source(const mlip_sim *sim, uint32_t lt, uint64_t lo, uint64_t len)
{
    const wprov_table *t = &sim->wprov[lt];
    uint64_t at = lo, src = WPROV_NONE;
    while (at < lo + len) {
        const wprov_entry *hit = NULL;
        for (uint32_t k = 0; k < t->n && hit == NULL; k++) {
            if (t->e[k].ocm_lo <= at && at < t->e[k].ocm_hi) hit = &t->e[k];
        }
        if (hit == NULL) return WPROV_NONE;
        uint64_t d = hit->dram_lo + (at - hit->ocm_lo);
        if (src == WPROV_NONE) {
            src = d;
        } else if (d != src + (at - lo)) {
            return WPROV_NONE;
        }
        at = hit->ocm_hi;
    }
    return src;
}

/* The transposed weights for these raw bytes and geometry: *hit = 1 if cached, else an entry
 * whose buffer of `halfs` fp16 values the caller fills (and then sets valid). */
static void wcache_drop(mlip_sim *sim, wcache_entry *e)
{
    sim->wc_bytes -= e->raw_cap + e->cap;
    free(e->raw);
    free(e->buf);
    const uint32_t slot = e->slot;
    memset(e, 0, sizeof *e);
    e->slot = slot;
}

static wcache_entry *wcache_lookup(mlip_sim *sim, const uint64_t key[PREP_KEYS],
                                   const uint8_t *raw, size_t len, size_t halfs,
                                   uint64_t dram_src, int *hit)
{
    sim->wc_clock++;
    /* raw is a copy of DRAM weights at dram_src made in this inference: an entry already
     * compared with those DRAM bytes since the host last asked for the DRAM pointer matches
     * without a comparison (the program never writes the weights region, and the host
     * writes it only through a pointer from mlip_sim_dram before the next run) */
    if (dram_src != WPROV_NONE) {
        for (uint32_t k = 0; k < sim->wc_n; k++) {
            wcache_entry *e = sim->wc[k];
            if (e->valid && e->dram_src == dram_src && e->checked_gen == sim->host_gen &&
                e->raw_len == len && memcmp(e->key, key, sizeof e->key) == 0) {
                e->stamp = sim->wc_clock;
                *hit = 1;
                return e;
            }
        }
    }
    for (uint32_t k = 0; k < sim->wc_n; k++) {
        wcache_entry *e = sim->wc[k];
        if (e->valid && e->raw_len == len && memcmp(e->key, key, sizeof e->key) == 0 &&
            memcmp(e->raw, raw, len) == 0) {
            e->stamp = sim->wc_clock;
            e->dram_src = dram_src;
            e->checked_gen = sim->host_gen;
            *hit = 1;
            return e;
        }
    }
    *hit = 0;
    /* make room: evict least recently used entries while over the budget */
    size_t need = len + halfs * sizeof(uint16_t);
    while (sim->wc_bytes + need > WCACHE_BUDGET) {
        wcache_entry *lru = NULL;
        for (uint32_t k = 0; k < sim->wc_n; k++) {
            wcache_entry *e = sim->wc[k];
            if (e->raw_cap + e->cap != 0 && e->pins == 0 &&
                (lru == NULL || e->stamp < lru->stamp)) {
                lru = e;
            }
        }
        if (lru == NULL) break;
        wcache_drop(sim, lru);
    }
    /* a free slot, else a new one */
    wcache_entry *victim = NULL;
    for (uint32_t k = 0; k < sim->wc_n && victim == NULL; k++) {
        if (!sim->wc[k]->valid && sim->wc[k]->pins == 0) victim = sim->wc[k];
    }
    if (victim == NULL) {
        if (sim->wc_n == sim->wc_cap) {
            uint32_t cap = sim->wc_cap ? 2 * sim->wc_cap : 16;
            wcache_entry **grown = realloc(sim->wc, (size_t)cap * sizeof *grown);
            if (grown == NULL) {
                fail(sim, MLIP_ERR_NOMEM, "out of memory (weights cache)");
                return NULL;
            }
            memset(grown + sim->wc_cap, 0, (size_t)(cap - sim->wc_cap) * sizeof *grown);
            sim->wc = grown;
            sim->wc_cap = cap;
        }
        /* entries are allocated one by one: a thread's pointer to one stays valid while
         * the table grows */
        victim = calloc(1, sizeof *victim);
        if (victim == NULL) {
            fail(sim, MLIP_ERR_NOMEM, "out of memory (weights cache)");
            return NULL;
        }
        victim->slot = sim->wc_n;
        sim->wc[sim->wc_n++] = victim;
    }
    victim->valid = 0;
    sim->wc_bytes -= victim->raw_cap + victim->cap;
    int ok = ensure(sim, (void **)&victim->raw, &victim->raw_cap, len) == MLIP_OK &&
             ensure(sim, (void **)&victim->buf, &victim->cap, halfs * sizeof(uint16_t)) ==
                 MLIP_OK;
    sim->wc_bytes += victim->raw_cap + victim->cap;
    if (!ok) return NULL;
    memcpy(victim->raw, raw, len);
    memcpy(victim->key, key, sizeof victim->key);
    victim->raw_len = len;
    victim->dram_src = dram_src;
    victim->checked_gen = sim->host_gen;
    victim->stamp = sim->wc_clock;
    victim->fill = ++sim->wc_fills;
    return victim;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define MLIP_HAVE_AVX2_KERNEL 1

/* Up to 12 output pixels (NP) x NB 16-channel weight blocks (NB = 1, or 2 adjacent blocks,
 * the second at wblk + kk * OB) on the zero-padded input, AVX-512F; NP and NB are
 * compile-time constants of each instance.  NP * NB accumulators: each loaded weight vector
 * serves NP pixels.  Pixel k starts at X + off[k]; tap (i, j) is at + (i*dh*iwp + j*dw) * ic.
 * Where dw == 1 and the group spans every input channel, the taps (j, c) of one kernel row
 * are contiguous in X and in the weights, so they run as one loop of kw * icg.  Every
 * output's accumulation order is the documented (i, j, c) sequence, the same as the other
 * kernels', so the bits are equal; out[b][k][o] for block b.  FILL (a compile-time constant
 * too) says where the weights come from: 0, fp32 wf; 1 and 2, fp16 wh converted in registers
 * (exact), and with 1 also stored as fp32 at the same index of ws. */
#define KNP_ACC(k) __m512 a##k##0 = _mm512_setzero_ps(), a##k##1 = _mm512_setzero_ps()
#define KNP_STEP(k)                                                                         \
    if (NP > k) {                                                                           \
        __m512 b = _mm512_set1_ps(xb[off[k] + c]);                                          \
        a##k##0 = _mm512_fmadd_ps(b, w0, a##k##0);                                          \
        if (NB == 2) a##k##1 = _mm512_fmadd_ps(b, w1, a##k##1);                             \
    }
#define KNP_STORE(k)                                                                        \
    if (NP > k) {                                                                           \
        _mm512_storeu_ps(out[0][k], a##k##0);                                               \
        if (NB == 2) _mm512_storeu_ps(out[1][k], a##k##1);                                  \
    }
static inline __attribute__((always_inline, target("avx512f"))) void
conv_np_body(const int NP, const int NB, const int FILL, const float *X, const float *wf,
             const uint16_t *wh, float *ws, const conv_geo *g, int64_t icg, int64_t iwp,
             const int64_t off[12], float out[2][12][OB])
{
    KNP_ACC(0); KNP_ACC(1); KNP_ACC(2); KNP_ACC(3); KNP_ACC(4); KNP_ACC(5);
    KNP_ACC(6); KNP_ACC(7); KNP_ACC(8); KNP_ACC(9); KNP_ACC(10); KNP_ACC(11);
    const int64_t second = g->kh * g->kw * icg * OB;
    const int merged = g->dw == 1 && icg == g->ic;
    const int64_t nj = merged ? 1 : g->kw, run = merged ? g->kw * icg : icg;
    int64_t t = 0; /* index of the step's weights in wf / wh / ws */
    for (int64_t i = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < nj; j++) {
            const float *xb = X + (i * g->dh * iwp + j * g->dw) * g->ic;
            for (int64_t c = 0; c < run; c++, t += OB) {
                __m512 w0, w1;
                if (FILL) {
                    w0 = _mm512_cvtph_ps(
                        _mm256_loadu_si256((const __m256i *)(const void *)(wh + t)));
                    if (FILL == 1) _mm512_storeu_ps(ws + t, w0);
                    w1 = w0;
                    if (NB == 2) {
                        w1 = _mm512_cvtph_ps(
                            _mm256_loadu_si256((const __m256i *)(const void *)(wh + t + second)));
                        if (FILL == 1) _mm512_storeu_ps(ws + t + second, w1);
                    }
                } else {
                    w0 = _mm512_loadu_ps(wf + t);
                    w1 = NB == 2 ? _mm512_loadu_ps(wf + t + second) : w0;
                }
                KNP_STEP(0) KNP_STEP(1) KNP_STEP(2) KNP_STEP(3) KNP_STEP(4) KNP_STEP(5)
                KNP_STEP(6) KNP_STEP(7) KNP_STEP(8) KNP_STEP(9) KNP_STEP(10) KNP_STEP(11)
            }
        }
    }
    KNP_STORE(0) KNP_STORE(1) KNP_STORE(2) KNP_STORE(3) KNP_STORE(4) KNP_STORE(5)
    KNP_STORE(6) KNP_STORE(7) KNP_STORE(8) KNP_STORE(9) KNP_STORE(10) KNP_STORE(11)
}
#undef KNP_ACC
#undef KNP_STEP
#undef KNP_STORE

/* wf: the fp32 weights; or, filling (fill 1), wh: the fp16 weights, converted (F16C semantics,
 * exact) and also stored at the same index of ws, so the block group's next calls read them
 * from wf; or (fill 2, a block group's only call) wh converted and not stored */
typedef void (*conv_np_fn)(const float *X, const float *wf, const uint16_t *wh, float *ws,
                           const conv_geo *g, int64_t icg, int64_t iwp, const int64_t off[12],
                           float out[2][12][OB]);
#define KNP_INSTANCE(n, b, f, sfx)                                                          \
    __attribute__((target("avx512f"))) static void conv_np##n##_nb##b##sfx(                 \
        const float *X, const float *wf, const uint16_t *wh, float *ws, const conv_geo *g,  \
        int64_t icg, int64_t iwp, const int64_t off[12], float out[2][12][OB])              \
    {                                                                                       \
        conv_np_body(n, b, f, X, wf, wh, ws, g, icg, iwp, off, out);                        \
    }
#define KNP_INSTANCES(b, f, sfx)                                                            \
    KNP_INSTANCE(1, b, f, sfx) KNP_INSTANCE(2, b, f, sfx) KNP_INSTANCE(3, b, f, sfx)        \
    KNP_INSTANCE(4, b, f, sfx) KNP_INSTANCE(5, b, f, sfx) KNP_INSTANCE(6, b, f, sfx)        \
    KNP_INSTANCE(7, b, f, sfx) KNP_INSTANCE(8, b, f, sfx) KNP_INSTANCE(9, b, f, sfx)        \
    KNP_INSTANCE(10, b, f, sfx) KNP_INSTANCE(11, b, f, sfx) KNP_INSTANCE(12, b, f, sfx)
KNP_INSTANCES(1, 0, )
KNP_INSTANCES(2, 0, )
KNP_INSTANCES(1, 1, _fill)
KNP_INSTANCES(2, 1, _fill)
KNP_INSTANCES(1, 2, _once)
KNP_INSTANCES(2, 2, _once)
#undef KNP_INSTANCES
#undef KNP_INSTANCE
/* conv_np_avx512[fill][nb - 1][np - 1] computes np pixels of nb blocks */
#define KNP_ROW(b, f)                                                                       \
    {conv_np1_nb##b##f, conv_np2_nb##b##f, conv_np3_nb##b##f, conv_np4_nb##b##f,            \
     conv_np5_nb##b##f, conv_np6_nb##b##f, conv_np7_nb##b##f, conv_np8_nb##b##f,            \
     conv_np9_nb##b##f, conv_np10_nb##b##f, conv_np11_nb##b##f, conv_np12_nb##b##f}
static const conv_np_fn conv_np_avx512[3][2][12] = {{KNP_ROW(1, ), KNP_ROW(2, )},
                                                    {KNP_ROW(1, _fill), KNP_ROW(2, _fill)},
                                                    {KNP_ROW(1, _once), KNP_ROW(2, _once)}};
#undef KNP_ROW

/* Whether conv_store_avx512 does this activation (the others take the generic path) */
static int conv_store_avx512_acts(int act)
{
    return act == MLIP_ACT_NONE || act == MLIP_ACT_RELU || act == MLIP_ACT_RELU6 ||
           act == MLIP_ACT_CLIP || act == MLIP_ACT_LEAKY_RELU;
}

/* The activations of conv_store_avx512_acts on 16 lanes with ordered compares and masks,
 * exactly apply_act's values; lo and hi hold alpha and beta */
static inline __attribute__((always_inline, target("avx512f"))) __m512
act_avx512(__m512 v, int act, __m512 zero, __m512 six, __m512 lo, __m512 hi)
{
    switch (act) {
    case MLIP_ACT_RELU:
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v);
    case MLIP_ACT_RELU6: {
        __m512 y = _mm512_mask_mov_ps(six, _mm512_cmp_ps_mask(v, six, _CMP_LT_OQ), v);
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), y);
    }
    case MLIP_ACT_CLIP: {
        __m512 y = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
        return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
    }
    case MLIP_ACT_LEAKY_RELU:
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ),
                                  _mm512_mul_ps(lo, v));
    default:
        return v;
    }
}

__attribute__((target("avx2,f16c"))) static int f2h_row_f16c(const float *src, uint8_t *dst,
                                                              int64_t n);

/* The activation (one of conv_store_avx512_acts) and fp16 RNE store of n contiguous fp32
 * values in one pass, 16 at a time: act_row then f2h_row_f16c's bits (a vector holding a
 * NaN goes through f2h); the tail of fewer than 16 through act_row and f2h_row_f16c */
__attribute__((target("avx512f,f16c"))) static void
act_f2h_row_avx512(const float *src, uint8_t *dst, int64_t n, int act, float alpha, float beta)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const __m512 lo = _mm512_set1_ps(alpha), hi = _mm512_set1_ps(beta);
    int64_t k = 0;
    for (; k + OB <= n; k += OB) {
        __m512 v = act_avx512(_mm512_loadu_ps(src + k), act, zero, six, lo, hi);
        if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) == 0) {
            __m256i hv = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_storeu_si256((__m256i *)(void *)(dst + k * 2), hv);
            continue;
        }
        float t[OB];
        _mm512_storeu_ps(t, v);
        for (int o = 0; o < OB; o++) {
            uint16_t h = f2h(t[o]);
            memcpy(dst + (k + o) * 2, &h, 2);
        }
    }
    if (k < n) {
        float t[OB];
        memcpy(t, src + k, (size_t)(n - k) * sizeof(float));
        act_row(act, t, n - k, alpha, beta);
        f2h_row_f16c(t, dst + k * 2, n - k);
    }
}

/* The stores of np pixels x `on` (<= 32) channels from conv_np_*: v = acc + bias (if any),
 * then the activation with ordered compares and masks, exactly apply_act's values (NONE,
 * RELU, RELU6, CLIP, LEAKY_RELU), then fp16 RNE (F16C; a vector holding a NaN goes through
 * f2h, like f2h_row_f16c) or fp32.  A vector holding a NaN after the activation is
 * recomputed in the documented order first (conv_fix_block; an activation maps every NaN
 * either to itself or to one value, so a vector without NaN has the documented bits).
 * Pixel k's channels go to orow0 + k * pstride bytes; a partial vector is stored through a
 * small buffer (no byte beyond `on` is written). */
__attribute__((target("avx512f,f16c"))) static void
conv_store_avx512(float acc[2][12][OB], int64_t np, int64_t on, const float *bias, int act,
                  float alpha, float beta, int fp16, uint8_t *orow0, int64_t pstride,
                  const conv_fix *fix)
{
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    const __m512 lo = _mm512_set1_ps(alpha), hi = _mm512_set1_ps(beta);
    int nh = on > OB ? 2 : 1;
    __m512 bv[2] = {zero, zero};
    for (int h = 0; h < nh && bias != NULL; h++) {
        int64_t n = on - h * OB < OB ? on - h * OB : OB;
        bv[h] = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), bias + h * OB);
    }
    for (int64_t k = 0; k < np; k++) {
        uint8_t *orow = orow0 + k * pstride;
        for (int h = 0; h < nh; h++) {
            int64_t n = on - h * OB < OB ? on - h * OB : OB;
            __m512 v = _mm512_loadu_ps(acc[h][k]);
            if (bias != NULL) v = _mm512_add_ps(v, bv[h]);
            v = act_avx512(v, act, zero, six, lo, hi);
            const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            if (nan != 0) {
                float t[OB];
                conv_fix_block(fix, k, h, bias != NULL ? bias + h * OB : NULL, t);
                v = act_avx512(_mm512_loadu_ps(t), act, zero, six, lo, hi);
            }
            if (!fp16) {
                _mm512_mask_storeu_ps(orow + h * OB * 4, (__mmask16)((1u << n) - 1u), v);
                continue;
            }
            uint16_t q[OB];
            if (nan == 0) {
                __m256i hv = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                if (n == OB) {
                    _mm256_storeu_si256((__m256i *)(void *)(orow + h * OB * 2), hv);
                    continue;
                }
                _mm256_storeu_si256((__m256i *)(void *)q, hv);
            } else {
                float t[OB];
                _mm512_storeu_ps(t, v);
                for (int o = 0; o < OB; o++) q[o] = f2h(t[o]);
            }
            memcpy(orow + h * OB * 2, q, (size_t)n * 2);
        }
    }
}

/* fp16 -> fp32 of n contiguous values (F16C; exact) */
__attribute__((target("avx2,f16c"))) static void h2f_row_f16c(const uint8_t *src, float *dst,
                                                               int64_t n)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + k * 2));
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(h));
    }
    for (; k < n; k++) {
        uint16_t h;
        memcpy(&h, src + k * 2, 2);
        dst[k] = h2f(h);
    }
}

/* fp16 -> fp32 of n contiguous values, 16 at a time (AVX-512F; exact) */
__attribute__((target("avx512f"))) static void h2f_row_avx512(const uint8_t *src, float *dst,
                                                             int64_t n)
{
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + k * 2));
        _mm512_storeu_ps(dst + k, _mm512_cvtph_ps(h));
    }
    h2f_row_f16c(src + k * 2, dst + k, n - k);
}

/* fp32 -> fp16 RNE of n values (F16C); NaNs are canonicalised like f2h so that both paths
 * give identical bits.  Whether a value was NaN. */
__attribute__((target("avx2,f16c"))) static int f2h_row_f16c(const float *src, uint8_t *dst,
                                                              int64_t n)
{
    int64_t k = 0;
    int nan = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps(src + k);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
            for (int64_t t = k; t < k + 8; t++) {
                uint16_t h = f2h(src[t]);
                memcpy(dst + t * 2, &h, 2);
            }
            nan = 1;
            continue;
        }
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(void *)(dst + k * 2), h);
    }
    for (; k < n; k++) {
        uint16_t h = f2h(src[k]);
        memcpy(dst + k * 2, &h, 2);
        nan |= src[k] != src[k];
    }
    return nan;
}

#else
#define MLIP_HAVE_AVX2_KERNEL 0
#endif

static void f2h_row(const mlip_sim *sim, const float *src, uint8_t *dst, int64_t n)
{
#if MLIP_HAVE_AVX2_KERNEL
    if (sim->has_avx2) {
        f2h_row_f16c(src, dst, n);
        return;
    }
#else
    (void)sim;
#endif
    for (int64_t k = 0; k < n; k++) {
        uint16_t h = f2h(src[k]);
        memcpy(dst + k * 2, &h, 2);
    }
}

static void h2f_row(const mlip_sim *sim, const uint8_t *src, float *dst, int64_t n)
{
#if MLIP_HAVE_AVX2_KERNEL
    if (sim->has_avx512) {
        h2f_row_avx512(src, dst, n);
        return;
    }
    if (sim->has_avx2) {
        h2f_row_f16c(src, dst, n);
        return;
    }
#else
    (void)sim;
#endif
    for (int64_t k = 0; k < n; k++) {
        uint16_t h;
        memcpy(&h, src + k * 2, 2);
        dst[k] = h2f(h);
    }
}

/* The 6-pixel x 16-channel accumulation shared by conv_block6_body and conv_block6p_body:
 * twelve 8-lane accumulators (pixel k, channel half h: a<k><h>) held in registers; one tap
 * adds, for c in order, pixel k's input xb[off[k] + c] times the weights wp[0..15], then
 * moves wp past the tap's icg rows of OB weights. */
#define CONV6_ACCUMULATORS \
    v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}; \
    v8f a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0}
#define CONV6_TAP(xb, off, wp, icg) do { \
    const float *x0 = (xb) + (off)[0], *x1 = (xb) + (off)[1], *x2 = (xb) + (off)[2]; \
    const float *x3 = (xb) + (off)[3], *x4 = (xb) + (off)[4], *x5 = (xb) + (off)[5]; \
    for (int64_t c = 0; c < (icg); c++, (wp) += OB) { \
        v8f w0, w1; \
        memcpy(&w0, (wp), sizeof w0); \
        memcpy(&w1, (wp) + 8, sizeof w1); \
        a00 = a00 + x0[c] * w0; a01 = a01 + x0[c] * w1; \
        a10 = a10 + x1[c] * w0; a11 = a11 + x1[c] * w1; \
        a20 = a20 + x2[c] * w0; a21 = a21 + x2[c] * w1; \
        a30 = a30 + x3[c] * w0; a31 = a31 + x3[c] * w1; \
        a40 = a40 + x4[c] * w0; a41 = a41 + x4[c] * w1; \
        a50 = a50 + x5[c] * w0; a51 = a51 + x5[c] * w1; \
    } \
} while (0)
#define CONV6_STORE(out) do { \
    memcpy((out)[0], &a00, 32); memcpy((out)[0] + 8, &a01, 32); \
    memcpy((out)[1], &a10, 32); memcpy((out)[1] + 8, &a11, 32); \
    memcpy((out)[2], &a20, 32); memcpy((out)[2] + 8, &a21, 32); \
    memcpy((out)[3], &a30, 32); memcpy((out)[3] + 8, &a31, 32); \
    memcpy((out)[4], &a40, 32); memcpy((out)[4] + 8, &a41, 32); \
    memcpy((out)[5], &a50, 32); memcpy((out)[5] + 8, &a51, 32); \
} while (0)

/* Up to 6 output pixels (np, consecutive in output row r from column s) x 16 output channels
 * on the unpadded input: kernel rows [i0, i1) and columns [j0, j1), the taps inside the input
 * for every one of these pixels (so non-finite weights never meet a padding tap); the weights
 * of the 16-channel block are contiguous: wblk[((i * kw + j) * icg + c) * OB + o].  Lanes of
 * pixels >= np repeat pixel np - 1 and are discarded.  Accumulation order per output:
 * (i, j, c) as documented.  One body, compiled twice: for AVX2+FMA (conv_block6_avx2, where
 * a + x * w may become one fused multiply-add: the product of two fp16 values is exact in
 * fp32, so that equals multiply then add) and for the baseline (conv_block6_c). */
static inline __attribute__((always_inline)) void
conv_block6_body(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                 int64_t xoff, int64_t r, int64_t s, int64_t np, int64_t i0, int64_t i1,
                 int64_t j0, int64_t j1, float out[6][OB])
{
    CONV6_ACCUMULATORS;
    const int64_t pst = g->sw * g->ic;
    int64_t off[6];
    for (int k = 0; k < 6; k++) off[k] = (k < np ? k : np - 1) * pst;
    for (int64_t i = i0; i < i1; i++) {
        int64_t y = r * g->sh + i * g->dh - g->pt;
        for (int64_t j = j0; j < j1; j++) {
            int64_t x = s * g->sw + j * g->dw - g->pl;
            const float *xb = X + (y * g->iw + x) * g->ic + xoff;
            const float *wp = wblk + ((i * g->kw + j) * icg) * OB;
            CONV6_TAP(xb, off, wp, icg);
        }
    }
    CONV6_STORE(out);
}

#if MLIP_HAVE_AVX2_KERNEL
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) static void
conv_block6_avx2(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                 int64_t xoff, int64_t r, int64_t s, int64_t np, int64_t i0, int64_t i1,
                 int64_t j0, int64_t j1, float out[6][OB])
{
    conv_block6_body(X, wblk, g, icg, xoff, r, s, np, i0, i1, j0, j1, out);
}
#endif

static void conv_block6_c(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                          int64_t xoff, int64_t r, int64_t s, int64_t np, int64_t i0,
                          int64_t i1, int64_t j0, int64_t j1, float out[6][OB])
{
    conv_block6_body(X, wblk, g, icg, xoff, r, s, np, i0, i1, j0, j1, out);
}

/* 6 output pixels x 16 output channels on a zero-padded input: pixel k starts at X + off[k]
 * (any 6 pixels, rows may differ; repeat the last one to fill), every kernel tap (i, j) is
 * at + (i*dh*iwp + j*dw) * ic; the weights of the 16-channel block are contiguous:
 * wblk[((i * kw + j) * icg + c) * OB + o].  Accumulation order per output: (i, j, c) as
 * documented.  One body, compiled twice: for AVX2+FMA (conv_block6p_avx2, where a + x * w
 * may become one fused multiply-add: the product of two fp16 values is exact in fp32, so
 * that equals multiply then add) and for the baseline (conv_block6p_c). */
static inline __attribute__((always_inline)) void
conv_block6p_body(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                  int64_t iwp, const int64_t off[6], float out[6][OB])
{
    CONV6_ACCUMULATORS;
    const float *wp = wblk;
    for (int64_t i = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < g->kw; j++) {
            const float *xb = X + (i * g->dh * iwp + j * g->dw) * g->ic;
            CONV6_TAP(xb, off, wp, icg);
        }
    }
    CONV6_STORE(out);
}

#if MLIP_HAVE_AVX2_KERNEL
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) static void
conv_block6p_avx2(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                  int64_t iwp, const int64_t off[6], float out[6][OB])
{
    conv_block6p_body(X, wblk, g, icg, iwp, off, out);
}
#endif

static void conv_block6p_c(const float *X, const float *wblk, const conv_geo *g, int64_t icg,
                           int64_t iwp, const int64_t off[6], float out[6][OB])
{
    conv_block6p_body(X, wblk, g, icg, iwp, off, out);
}

/* One CONV on the zero-padded input, cut into parts: (group, output block group, chunk of
 * PB * CONV_CHUNK pixels); a block group is 2 adjacent 16-channel blocks where the AVX-512
 * kernel runs, else 1.  Parts write disjoint outputs and read only X, W and the bias. */
#define CONV_CHUNK 16
#define CONV_DIRECT_IC 1024 /* most input channels of the direct 1x1 path (its stack block) */
#ifndef CONV_THREAD_MACS
#define CONV_THREAD_MACS ((uint64_t)1 << 23) /* least work handed to the threads */
#endif
typedef struct conv_job {
    const mlip_sim *sim;
    const conv_geo *g;
    const float *X;
    float *W;                         /* fp32 weights */
    const uint16_t *T;                /* fp16 weights, same layout */
    int fill;                         /* AVX-512: 1, W is filled from T by each block
                                       * group's first call; 2, every call reads T (threads:
                                       * parts of a block group run at the same time) */
    uint8_t *ocm;
    int64_t icg, ocg, nob, kk, iwp, ptp, plp, npix;
    int64_t step;                     /* blocks per block group */
    int avx512;                       /* the AVX-512 kernels (else AVX2 or portable) */
    int64_t nbg;                      /* block groups per group */
    int64_t nchunk;                   /* pixel chunks */
    int direct;                       /* 1x1 on contiguous pixels, one block group: each
                                       * call converts its own pixels (X unused) */
    int odt, act, has_bias;
    uint32_t oes;
    float alpha, beta;
} conv_job;

/* v[0..on) (on <= 32), after the bias and the activation, as documented where it holds a
 * NaN: those 16-channel blocks recomputed by conv_fix_block (+ bias unless NULL), then the
 * activation (which maps every NaN either to itself or to one value, so a block without NaN
 * is right as it is) */
__attribute__((cold, noinline)) static void
conv_fix_row(const conv_fix *fix, int64_t k, const float *bias, int act, float alpha,
             float beta, float *v, int64_t on)
{
    for (int h = 0; h * OB < on; h++) {
        int64_t n = on - h * OB < OB ? on - h * OB : OB;
        int nan = 0;
        for (int64_t o = 0; o < n; o++) nan |= v[h * OB + o] != v[h * OB + o];
        if (!nan) continue;
        float t[OB];
        conv_fix_block(fix, k, h, bias != NULL ? bias + h * OB : NULL, t);
        act_row(act, t, n, alpha, beta);
        memcpy(v + h * OB, t, (size_t)n * sizeof(float));
    }
}

/* The bias, activation and store of one pixel's v[0..on) at orow: fp16 (a NaN met by the
 * conversion makes the row the documented one, conv_fix_row, and stores it again) or fp32
 * (checked for NaN first) */
static inline __attribute__((always_inline)) void
conv_store_row(const mlip_sim *sim, const conv_fix *fix, int64_t k, float *v, int64_t on,
               const float *bias, int act, float alpha, float beta, int odt, uint8_t *orow)
{
    if (bias != NULL) {
        for (int64_t o = 0; o < on; o++) v[o] = v[o] + bias[o];
    }
    act_row(act, v, on, alpha, beta);
    int nan = 0;
    if (odt == MLIP_DT_FP16) {
#if MLIP_HAVE_AVX2_KERNEL
        if (sim->has_avx2) {
            nan = f2h_row_f16c(v, orow, on);
        } else
#endif
        {
            f2h_row(sim, v, orow, on);
            for (int64_t o = 0; o < on; o++) nan |= v[o] != v[o];
        }
        if (nan) {
            conv_fix_row(fix, k, bias, act, alpha, beta, v, on);
            f2h_row(sim, v, orow, on);
        }
        return;
    }
    for (int64_t o = 0; o < on; o++) nan |= v[o] != v[o];
    if (nan) conv_fix_row(fix, k, bias, act, alpha, beta, v, on);
    memcpy(orow, v, (size_t)on * 4);
}

/* bias, activation and store of np pixels' outputs acc0[k][0..16) (and acc1[k] for the
 * channels 16..on of a two-block group), one pixel at a time (conv_store_row) */
static void conv_store_generic(const conv_job *j, float (*acc0)[OB], float (*acc1)[OB],
                               int64_t np, int64_t p0, int64_t gi, int64_t ob, int64_t on,
                               const float *bias2, const conv_fix *fix)
{
    const conv_geo *g = j->g;
    for (int64_t k = 0; k < np; k++) {
        uint8_t *orow = j->ocm + g->out_addr +
                        (uint64_t)((p0 + k) * g->ops + gi * j->ocg + ob) * j->oes;
        float v[2 * OB];
        memcpy(v, acc0[k], OB * sizeof(float));
        if (acc1 != NULL) memcpy(v + OB, acc1[k], OB * sizeof(float));
        conv_store_row(j->sim, fix, k, v, on, j->has_bias ? bias2 : NULL, j->act, j->alpha,
                       j->beta, j->odt, orow);
    }
}

static void conv_padded_part(void *ctx, int64_t part, uint32_t thread)
{
    (void)thread;
    const conv_job *j = ctx;
    const conv_geo *g = j->g;
    const mlip_sim *sim = j->sim;
    int64_t chunk = part % j->nchunk, rest = part / j->nchunk;
    int64_t gi = rest / j->nbg, obi = (rest % j->nbg) * j->step;
    int64_t nb = obi + j->step <= j->nob ? j->step : j->nob - obi;
    const int64_t woff = (gi * j->nob + obi) * j->kk * OB; /* the block group's weights */
    int64_t ob = obi * OB;
    int64_t on = j->ocg - ob < nb * OB ? j->ocg - ob : nb * OB;
    float bias2[2 * OB];
    for (int64_t o = 0; o < on; o++) bias2[o] = 0.0f;
    if (j->has_bias) {
        memcpy(bias2, j->ocm + g->b_addr + (uint64_t)(gi * j->ocg + ob) * 4, (size_t)on * 4);
    }
    int64_t pend = (chunk + 1) * PB * CONV_CHUNK;
    if (pend > j->npix) pend = j->npix;
    /* the AVX-512 kernels take up to 12 pixels per call, the others 6 */
    int64_t pblk = j->avx512 ? 2 * PB : PB;
    /* output pixel p = (r, sc) starts at input pixel (r * sh - pt + ptp, sc * sw - pl + plp)
     * of the padded block; (r, sc) advance without a division per pixel */
    int64_t p1 = chunk * PB * CONV_CHUNK, r = p1 / g->ow, sc = p1 % g->ow;
    /* the direct path: the call's pixels converted here, into a block that stays in the
     * host's L1/L2, instead of the whole input into a buffer read back once (the same
     * values, exact) */
    float xblock[j->direct ? 2 * PB * CONV_DIRECT_IC : 1] __attribute__((aligned(64)));
    int64_t off[2 * PB];
    /* the taps for the NaN fix-up: the fp32 weights W are whole but where an AVX-512 call
     * converts its own (fill 2) */
    conv_fix fix = {j->direct ? xblock : j->X, j->W + woff, j->T + woff, off, 0, 0,
                    g->dh * j->iwp * g->ic, g->dw * g->ic, 0, g->kh, 0, g->kw, g->kw, j->icg,
                    j->kk * OB};
    for (int64_t p0 = p1; p0 < pend; p0 += pblk) {
        int64_t np = pend - p0 < pblk ? pend - p0 : pblk;
        const float *X = j->X;
        if (j->direct) {
            h2f_row(sim, j->ocm + g->in_addr + (uint64_t)(p0 * g->ic) * 2, xblock, np * g->ic);
            X = xblock;
        }
        for (int64_t k = 0; k < np && j->direct; k++) off[k] = k * g->ic;
        for (int64_t k = 0; k < np && !j->direct; k++) {
            off[k] = ((r * g->sh - g->pt + j->ptp) * j->iwp + sc * g->sw - g->pl + j->plp) *
                         g->ic + gi * j->icg;
            if (++sc == g->ow) {
                sc = 0;
                r++;
            }
        }
        for (int64_t k = np; k < 2 * PB; k++) off[k] = off[np - 1]; /* the 6-pixel kernels */
#if MLIP_HAVE_AVX2_KERNEL
        if (j->avx512) {
            float acc2[2][12][OB];
            int fill = j->fill == 2 ? 2 : p0 != 0 ? 0 : j->npix <= pblk ? 2 : 1;
            fix.wf = fill == 2 ? NULL : j->W + woff;
            conv_np_avx512[fill][nb - 1][np - 1](
                X, j->W + woff, j->T + woff, j->W + woff, g, j->icg, j->iwp, off, acc2);
            if (conv_store_avx512_acts(j->act) &&
                (j->odt == MLIP_DT_FP16 || j->odt == MLIP_DT_FP32)) {
                uint8_t *orow = j->ocm + g->out_addr +
                                (uint64_t)(p0 * g->ops + gi * j->ocg + ob) * j->oes;
                conv_store_avx512(acc2, np, on, j->has_bias ? bias2 : NULL, j->act, j->alpha,
                                  j->beta, j->odt == MLIP_DT_FP16, orow, g->ops * j->oes,
                                  &fix);
                continue;
            }
            conv_store_generic(j, acc2[0], nb == 2 ? acc2[1] : NULL, np, p0, gi, ob, on,
                               bias2, &fix);
            continue;
        }
#endif
        float acc[PB][OB];
#if MLIP_HAVE_AVX2_KERNEL
        if (sim->has_avx2) {
            conv_block6p_avx2(X, j->W + woff, g, j->icg, j->iwp, off, acc);
        } else
#endif
        {
            conv_block6p_c(X, j->W + woff, g, j->icg, j->iwp, off, acc);
        }
        conv_store_generic(j, acc, NULL, np, p0, gi, ob, on, bias2, &fix);
    }
}

/* The weights cache entry for tile lt's OCM weights [w_addr, w_addr + wlen) under `key`:
 * the one they were last found equal to, else wcache_lookup's (*hit = 0: the caller fills
 * its `halfs` fp16 values, sets it valid, then calls weights_noted).  Returned with wc_lock
 * held, which the caller releases; NULL when out of memory, with nothing held. */
static wcache_entry *weights_lookup(mlip_sim *sim, uint32_t lt, const uint8_t *ocm,
                                    uint64_t w_addr, size_t wlen, size_t halfs,
                                    const uint64_t key[PREP_KEYS], int *hit)
{
    wc_lock(sim);
    tile_lock(sim, lt);
    wcache_entry *we = wver_lookup(sim, lt, w_addr, wlen, key);
    *hit = we != NULL;
    if (we == NULL) {
        we = wcache_lookup(sim, key, ocm + w_addr, wlen, halfs,
                           wprov_source(sim, lt, w_addr, wlen), hit);
    }
    tile_unlock(sim, lt);
    if (we == NULL) wc_unlock(sim);
    return we;
}

/* tile lt's weights [w_addr, w_addr + wlen) are now known equal to `we` (wc_lock held) */
static void weights_noted(mlip_sim *sim, uint32_t lt, uint64_t w_addr, size_t wlen,
                          const wcache_entry *we)
{
    tile_lock(sim, lt);
    wver_note(sim, lt, w_addr, wlen, we);
    tile_unlock(sim, lt);
}

static int conv_f16_body(mlip_sim *sim, scratch *scr, uint32_t lt, uint8_t *ocm,
                         const mlip_insn *in, const conv_geo *g, const wcache_entry *we);

static int exec_conv_f16(mlip_sim *sim, scratch *scr, uint32_t lt, uint8_t *ocm,
                         const mlip_insn *in, const conv_geo *g)
{
    int64_t icg = g->ic / g->groups, ocg = g->oc / g->groups;
    int64_t nob = (ocg + OB - 1) / OB;
    int64_t kk = g->kh * g->kw * icg;
    size_t nw = (size_t)(g->groups * nob * kk * OB);
    int hit;
    /* weights OHWI -> T[g][ob][t = (i, j, c)][16] fp16 bits in the cache (channels beyond
     * ocg are 0), converted into W (fp32, the same layout) for this CONV */
    uint64_t wkey[PREP_KEYS] = {3, (uint64_t)g->groups, (uint64_t)kk, (uint64_t)ocg, 0, 0};
    size_t wlen = (size_t)(g->oc * kk) * 2;
    wcache_entry *we = weights_lookup(sim, lt, ocm, g->w_addr, wlen, nw, wkey, &hit);
    if (we == NULL) return MLIP_ERR_NOMEM;
    if (!hit) {
        /* the bits moved, not converted (NaN payloads kept); all finite iff no exponent is
         * all ones */
        uint16_t nonfinite = 0;
        for (int64_t gi = 0; gi < g->groups; gi++) {
            for (int64_t obi = 0; obi < nob; obi++) {
                int64_t on = ocg - obi * OB < OB ? ocg - obi * OB : OB;
                const uint8_t *src =
                    ocm + g->w_addr + (uint64_t)((gi * ocg + obi * OB) * kk) * 2;
                uint16_t *blk = we->buf + (gi * nob + obi) * kk * OB;
                for (int64_t t = 0; t < kk; t++) {
                    for (int64_t o = 0; o < OB; o++) {
                        uint16_t h = 0;
                        if (o < on) memcpy(&h, src + (uint64_t)(o * kk + t) * 2, 2);
                        blk[t * OB + o] = h;
                        nonfinite |= (uint16_t)((h & 0x7c00u) == 0x7c00u);
                    }
                }
            }
        }
        we->finite = nonfinite == 0;
        we->valid = 1;
    }
    weights_noted(sim, lt, g->w_addr, wlen, we);
    we->pins++;
    wc_unlock(sim);
    int rc = conv_f16_body(sim, scr, lt, ocm, in, g, we);
    wc_lock(sim);
    we->pins--;
    wc_unlock(sim);
    return rc;
}

/* exec_conv_f16 once the transposed weights `we` are at hand (pinned) */
static int conv_f16_body(mlip_sim *sim, scratch *scr, uint32_t lt, uint8_t *ocm,
                         const mlip_insn *in, const conv_geo *g, const wcache_entry *we)
{
    int64_t icg = g->ic / g->groups, ocg = g->oc / g->groups;
    int64_t nob = (ocg + OB - 1) / OB;
    int64_t kk = g->kh * g->kw * icg;
    size_t nin = (size_t)(g->ih * g->iw * g->ic);
    size_t nw = (size_t)(g->groups * nob * kk * OB);
    int hit;
    /* Zero-padded input path: with finite weights a padding tap adds 0*w = +-0 to an
     * accumulator that can never be -0, i.e. changes nothing, so it equals skipping the tap;
     * then any 6 output pixels (across rows) share one kernel call. */
    int64_t ptp = g->pt > 0 ? g->pt : 0, plp = g->pl > 0 ? g->pl : 0;
    int64_t ymax = (g->oh - 1) * g->sh + (g->kh - 1) * g->dh - g->pt;
    int64_t xmax = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw - g->pl;
    int64_t pbp = ymax > g->ih - 1 ? ymax - (g->ih - 1) : 0;
    int64_t prp = xmax > g->iw - 1 ? xmax - (g->iw - 1) : 0;
    int64_t ihp = g->ih + ptp + pbp, iwp = g->iw + plp + prp;
    int padded = we->finite && ptp < 32768 && plp < 32768 && pbp < 32768 && prp < 32768 &&
                 (uint64_t)(ihp * iwp * g->ic) <= 2 * (uint64_t)nin + 65536;
    uint64_t xlo = g->in_addr;
    uint64_t xhi = xlo + (uint64_t)((g->ih * g->iw - 1) * g->ips + g->ic) * 2;
    uint64_t pads = padded ? ((uint64_t)1 << 63) | (uint64_t)ptp | ((uint64_t)pbp << 15) |
                             ((uint64_t)plp << 30) | ((uint64_t)prp << 45)
                           : 0;
    uint64_t xkey[PREP_KEYS] = {1, (uint64_t)g->ih, (uint64_t)g->iw, (uint64_t)g->ic,
                                (uint64_t)g->ips, pads};
    size_t nx = padded ? (size_t)(ihp * iwp * g->ic) : nin;
    /* the fp32 weights of this CONV: converted here, or (the AVX-512 kernels on one thread)
     * by the first kernel call of each block group, which reads the fp16 weights and stores
     * them converted as it goes: the cold bytes stream in while that call computes (on
     * threads, every AVX-512 call converts the fp16 weights in registers) */
    TRY(ensure(sim, (void **)&scr->wconv, &scr->wconv_cap, nw * sizeof(float) + 64));
    float *W = align64f(scr->wconv);
    /* a 1x1 CONV on contiguous pixels with one block group reads each input pixel in one
     * kernel call: that call converts them (conv_padded_part), no whole-input conversion */
    int direct = padded && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 &&
                 g->pt == 0 && g->pl == 0 && pbp == 0 && prp == 0 && g->groups == 1 &&
                 g->ips == g->ic && g->ow == g->iw && g->ic <= CONV_DIRECT_IC &&
                 nob <= (sim->has_avx512 ? 2 : 1);
    float *X = NULL;
    hit = 1;
    if (!direct) {
        X = prep_lookup(sim, &scr->xcache, lt, xkey, xlo, xhi, nx, &hit);
        if (X == NULL) return MLIP_ERR_NOMEM;
    }
    if (!hit) {
        if (padded) { /* zero the border only: the rows above and below, the columns left
                        * and right of every input row */
            size_t rowf = (size_t)(iwp * g->ic);
            memset(X, 0, (size_t)ptp * rowf * sizeof(float));
            memset(X + (size_t)(ptp + g->ih) * rowf, 0, (size_t)pbp * rowf * sizeof(float));
            for (int64_t y = ptp; y < ptp + g->ih; y++) {
                float *xr = X + (size_t)y * rowf;
                memset(xr, 0, (size_t)(plp * g->ic) * sizeof(float));
                memset(xr + (plp + g->iw) * g->ic, 0, (size_t)(prp * g->ic) * sizeof(float));
            }
        }
        /* pixels that follow each other (pixel stride = channels): a whole input row (or
         * the whole input) per conversion */
        int64_t run = g->ips != g->ic ? 1 : padded ? g->iw : g->ih * g->iw;
        for (int64_t p = 0; p < g->ih * g->iw; p += run) {
            int64_t dst = padded ? ((p / g->iw + ptp) * iwp + p % g->iw + plp) * g->ic
                                 : p * g->ic;
            h2f_row(sim, ocm + g->in_addr + (uint64_t)p * g->ips * 2, X + dst, run * g->ic);
        }
        scr->xcache.valid = 1;
    }
    float bias_buf[OB];
    int odt = in->dst_dtype;
    uint32_t oes = DT_SIZE[odt];
    int has_bias = g->b_addr != MLIP_ADDR_NONE;
    float alpha = in->fparam[MLIP_FP_ACT_ALPHA], beta = in->fparam[MLIP_FP_ACT_BETA];
    if (padded) {
        conv_job job = {sim, g, X, W, we->buf, 0, ocm, icg, ocg, nob, kk, iwp, ptp, plp,
                        g->oh * g->ow, sim->has_avx512 ? 2 : 1, sim->has_avx512, 0, 0, direct,
                        odt, in->act, has_bias, oes, alpha, beta};
        job.nbg = (nob + job.step - 1) / job.step;
        job.nchunk = (job.npix + PB * CONV_CHUNK - 1) / (PB * CONV_CHUNK);
        /* threads only where the work dwarfs the hand-over (~tens of microseconds) */
        uint64_t macs = (uint64_t)(job.npix * g->oc * kk);
        int64_t parts = g->groups * job.nbg * job.nchunk;
        int parallel = macs >= CONV_THREAD_MACS && !scr->nested;
        job.fill = !job.avx512 ? 0 : parallel && sim->pool.n > 0 && parts >= 2 ? 2 : 1;
        if (!job.fill) h2f_row(sim, (const uint8_t *)we->buf, W, (int64_t)nw);
        pool_run(&sim->pool, conv_padded_part, &job, parts, parallel);
        return MLIP_OK;
    }
    h2f_row(sim, (const uint8_t *)we->buf, W, (int64_t)nw);
    for (int64_t gi = 0; gi < g->groups; gi++) {
        int64_t xoff = gi * icg;
        for (int64_t obi = 0; obi < nob; obi++) {
            const float *wblk = W + (gi * nob + obi) * kk * OB;
            /* the taps for the NaN fix-up (base, i0..j1: those of each group of pixels) */
            conv_fix fix = {X, wblk, NULL, NULL, 0, g->sw * g->ic, g->dh * g->iw * g->ic,
                            g->dw * g->ic, 0, 0, 0, 0, g->kw, icg, 0};
            int64_t ob = obi * OB;
            int64_t on = ocg - ob < OB ? ocg - ob : OB;
            for (int64_t o = 0; o < on; o++) bias_buf[o] = 0.0f;
            if (has_bias) {
                memcpy(bias_buf, ocm + g->b_addr + (uint64_t)(gi * ocg + ob) * 4, (size_t)on * 4);
            }
            for (int64_t r = 0; r < g->oh; r++) {
                int64_t i0, i1;
                tap_range(r, g->sh, g->dh, g->pt, g->ih, g->kh, &i0, &i1);
                int64_t s = 0;
                while (s < g->ow) {
                    /* group up to PB pixels that share the same valid kernel columns */
                    int64_t j0, j1, np = 1;
                    tap_range(s, g->sw, g->dw, g->pl, g->iw, g->kw, &j0, &j1);
                    while (np < PB && s + np < g->ow) {
                        int64_t a0, a1;
                        tap_range(s + np, g->sw, g->dw, g->pl, g->iw, g->kw, &a0, &a1);
                        if (a0 != j0 || a1 != j1) break;
                        np++;
                    }
                    float acc[PB][OB];
#if MLIP_HAVE_AVX2_KERNEL
                    if (sim->has_avx2) {
                        conv_block6_avx2(X, wblk, g, icg, xoff, r, s, np, i0, i1, j0, j1, acc);
                    } else
#endif
                    {
                        conv_block6_c(X, wblk, g, icg, xoff, r, s, np, i0, i1, j0, j1, acc);
                    }
                    fix.base = ((r * g->sh - g->pt) * g->iw + s * g->sw - g->pl) * g->ic + xoff;
                    fix.i0 = i0, fix.i1 = i1, fix.j0 = j0, fix.j1 = j1;
                    for (int64_t k = 0; k < np; k++) {
                        uint8_t *orow = ocm + g->out_addr +
                                        (uint64_t)((r * g->ow + s + k) * g->ops) * oes +
                                        (uint64_t)(gi * ocg + ob) * oes;
                        float v[OB];
                        memcpy(v, acc[k], sizeof v);
                        conv_store_row(sim, &fix, k, v, on, has_bias ? bias_buf : NULL,
                                       in->act, alpha, beta, odt, orow);
                    }
                    s += np;
                }
            }
        }
    }
    return MLIP_OK;
}

/* One depthwise output row: for each output pixel s, acc[s * C + c] = sum over the taps (i, j)
 * in order of x * w (separate multiply and add), then + bias[c] if bias != NULL; where both
 * operands of a step are NaN, the first one's NaN (x of x * w, the sum of sum + x * w: the
 * operations are asm with a pinned operand order, OP_FIRST).  Channels are independent, so
 * the lanes of a GCC vector give each channel the scalar loop's bits.  One body, compiled
 * three times (dw_row_avx512 / dw_row_avx2 / dw_row_c); isa, a constant of each: 2, AVX-512F
 * with 16-lane blocks first, then 8; 1, AVX2 with 8-lane blocks; 0, the baseline (SSE2) with
 * 4-lane blocks. */
static inline __attribute__((always_inline)) void
dw_row_body(const float *X, const float *W, const conv_geo *g, int64_t r, int64_t i0,
            int64_t i1, const float *bias, float *accrow, const int isa)
{
    const int vex = isa != 0;
    (void)vex; /* unused where OP_FIRST is plain C */
    const int64_t C = g->ic, iw = g->iw, kw = g->kw, xstep = g->dw * C;
    const int64_t CB = C - C % (isa ? 8 : 4); /* the channels in vector blocks */
    const int64_t xs = g->sw * C;              /* xs: the next output pixel's input */
/* v = v + x * w, both pinned (lanes or one float) */
#define DW_STEP(sfx, v, x, w)                                                                \
    do {                                                                                     \
        __typeof__(v) p_;                                                                    \
        MUL_FIRST(vex, sfx, p_, x, w);                                                       \
        ADD_FIRST(vex, sfx, v, v, p_);                                                       \
    } while (0)
    for (int64_t s = 0; s < g->ow; s++) {
        int64_t j0, j1;
        tap_range(s, g->sw, g->dw, g->pl, iw, kw, &j0, &j1);
        if (j0 == 0 && j1 == kw && CB > 0 && s + 4 <= g->ow) {
            int64_t j0_last, j1_last; /* the taps in range form an interval of pixels */
            tap_range(s + 3, g->sw, g->dw, g->pl, iw, kw, &j0_last, &j1_last);
            if (j0_last == 0 && j1_last == kw) {
                /* four pixels with every kernel column in range at once: four independent
                 * sums per channel block, each in the single pixel's tap order */
                float *acc = accrow + s * C;
                const int64_t x0 = s * g->sw - g->pl;
#define DW_PX4_BLOCK(VT)                                                                     \
    do {                                                                                     \
        VT v0 = {0}, v1 = {0}, v2 = {0}, v3 = {0};                                           \
        for (int64_t i = i0; i < i1; i++) {                                                  \
            const int64_t y = r * g->sh + i * g->dh - g->pt;                                 \
            const float *xp = X + (y * iw + x0) * C + c;                                     \
            const float *wp = W + i * kw * C + c;                                            \
            for (int64_t j = 0; j < kw; j++, xp += xstep, wp += C) {                         \
                VT wv, a0, a1, a2, a3;                                                       \
                memcpy(&wv, wp, sizeof wv);                                                  \
                memcpy(&a0, xp, sizeof a0);                                                  \
                memcpy(&a1, xp + xs, sizeof a1);                                             \
                memcpy(&a2, xp + 2 * xs, sizeof a2);                                         \
                memcpy(&a3, xp + 3 * xs, sizeof a3);                                         \
                DW_STEP("ps", v0, a0, wv);                                                   \
                DW_STEP("ps", v1, a1, wv);                                                   \
                DW_STEP("ps", v2, a2, wv);                                                   \
                DW_STEP("ps", v3, a3, wv);                                                   \
            }                                                                                \
        }                                                                                    \
        if (bias != NULL) {                                                                  \
            VT bv;                                                                           \
            memcpy(&bv, bias + c, sizeof bv);                                                \
            ADD_FIRST(vex, "ps", v0, v0, bv);                                                \
            ADD_FIRST(vex, "ps", v1, v1, bv);                                                \
            ADD_FIRST(vex, "ps", v2, v2, bv);                                                \
            ADD_FIRST(vex, "ps", v3, v3, bv);                                                \
        }                                                                                    \
        memcpy(acc + c, &v0, sizeof v0);                                                     \
        memcpy(acc + C + c, &v1, sizeof v1);                                                 \
        memcpy(acc + 2 * C + c, &v2, sizeof v2);                                             \
        memcpy(acc + 3 * C + c, &v3, sizeof v3);                                             \
    } while (0)
                int64_t c = 0;
                if (isa == 2) {
                    for (; c + 16 <= C; c += 16) DW_PX4_BLOCK(v16f);
                }
                if (isa >= 1) {
                    for (; c + 8 <= C; c += 8) DW_PX4_BLOCK(v8f);
                } else {
                    for (; c + 4 <= C; c += 4) DW_PX4_BLOCK(v4f);
                }
#undef DW_PX4_BLOCK
                for (int64_t p = 0; p < 4; p++) { /* the channels past the last block */
                    for (int64_t t = CB; t < C; t++) {
                        float v = 0.0f;
                        for (int64_t i = i0; i < i1; i++) {
                            int64_t y = r * g->sh + i * g->dh - g->pt;
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t x = x0 + p * g->sw + j * g->dw;
                                DW_STEP("ss", v, X[(y * iw + x) * C + t],
                                        W[(i * kw + j) * C + t]);
                            }
                        }
                        if (bias != NULL) {
                            ADD_FIRST(vex, "ss", v, v, bias[t]);
                        }
                        acc[p * C + t] = v;
                    }
                }
                s += 3;
                continue;
            }
        }
        float *acc = accrow + s * C;
        /* input column of tap j0 (a valid one when there is any) */
        const int64_t x0 = j0 < j1 ? s * g->sw + j0 * g->dw - g->pl : 0;
#define DW_PX1_BLOCK(VT)                                                                     \
    do {                                                                                     \
        VT v = {0};                                                                          \
        for (int64_t i = i0; i < i1; i++) {                                                  \
            const int64_t y = r * g->sh + i * g->dh - g->pt;                                 \
            const float *xp = X + (y * iw + x0) * C + c;                                     \
            const float *wp = W + (i * kw + j0) * C + c;                                     \
            for (int64_t j = j0; j < j1; j++, xp += xstep, wp += C) {                        \
                VT xv, wv;                                                                   \
                memcpy(&xv, xp, sizeof xv);                                                  \
                memcpy(&wv, wp, sizeof wv);                                                  \
                DW_STEP("ps", v, xv, wv);                                                    \
            }                                                                                \
        }                                                                                    \
        if (bias != NULL) {                                                                  \
            VT bv;                                                                           \
            memcpy(&bv, bias + c, sizeof bv);                                                \
            ADD_FIRST(vex, "ps", v, v, bv);                                                  \
        }                                                                                    \
        memcpy(acc + c, &v, sizeof v);                                                       \
    } while (0)
        int64_t c = 0;
        if (isa == 2) {
            for (; c + 16 <= C; c += 16) DW_PX1_BLOCK(v16f);
        }
        if (isa >= 1) {
            for (; c + 8 <= C; c += 8) DW_PX1_BLOCK(v8f);
        } else {
            for (; c + 4 <= C; c += 4) DW_PX1_BLOCK(v4f);
        }
#undef DW_PX1_BLOCK
        for (; c < C; c++) {
            float v = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                int64_t y = r * g->sh + i * g->dh - g->pt;
                for (int64_t j = j0; j < j1; j++) {
                    int64_t x = s * g->sw + j * g->dw - g->pl;
                    DW_STEP("ss", v, X[(y * iw + x) * C + c], W[(i * kw + j) * C + c]);
                }
            }
            if (bias != NULL) {
                ADD_FIRST(vex, "ss", v, v, bias[c]);
            }
            acc[c] = v;
        }
    }
#undef DW_STEP
}

#if MLIP_HAVE_AVX2_KERNEL
__attribute__((target("avx512f"))) static void
dw_row_avx512(const float *X, const float *W, const conv_geo *g, int64_t r, int64_t i0,
              int64_t i1, const float *bias, float *accrow)
{
    dw_row_body(X, W, g, r, i0, i1, bias, accrow, 2);
}

__attribute__((target("avx2"))) static void
dw_row_avx2(const float *X, const float *W, const conv_geo *g, int64_t r, int64_t i0,
            int64_t i1, const float *bias, float *accrow)
{
    dw_row_body(X, W, g, r, i0, i1, bias, accrow, 1);
}
#endif

static void dw_row_c(const float *X, const float *W, const conv_geo *g, int64_t r, int64_t i0,
                     int64_t i1, const float *bias, float *accrow)
{
    dw_row_body(X, W, g, r, i0, i1, bias, accrow, 0);
}

/* depthwise (icg = ocg = 1), vectorised over channels, fp16 */
static int exec_dw_f16(mlip_sim *sim, scratch *scr, uint32_t lt, uint8_t *ocm,
                       const mlip_insn *in, const conv_geo *g)
{
    int64_t C = g->ic;
    size_t nin = (size_t)(g->ih * g->iw * C);
    size_t nw = (size_t)(g->kh * g->kw * C);
    TRY(ensure(sim, (void **)&scr->fbuf, &scr->fbuf_cap, nin * sizeof(float)));
    TRY(ensure(sim, (void **)&scr->wbuf, &scr->wbuf_cap,
               (nw + (size_t)((g->ow + 1) * C)) * sizeof(float)));
    float *W = scr->wbuf, *bias = scr->wbuf + nw, *accrow = bias + C;
    float *X = scr->fbuf;
    int64_t run = g->ips == C ? g->ih * g->iw : 1; /* contiguous pixels: one conversion */
    for (int64_t p = 0; p < g->ih * g->iw; p += run) {
        h2f_row(sim, ocm + g->in_addr + (uint64_t)p * g->ips * 2, X + p * C, run * C);
    }
    /* weights [c][t] -> [t][c]: the fp16 bits moved once into the weights cache (shared
     * with CONV, keyed apart), converted here with one vector pass (exact) */
    const int64_t taps = g->kh * g->kw;
    uint64_t wkey[PREP_KEYS] = {4, (uint64_t)g->kh, (uint64_t)g->kw, (uint64_t)C, 0, 0};
    size_t wlen = nw * 2;
    int hit;
    wcache_entry *we = weights_lookup(sim, lt, ocm, g->w_addr, wlen, nw, wkey, &hit);
    if (we == NULL) return MLIP_ERR_NOMEM;
    if (!hit) {
        for (int64_t c = 0; c < C; c++) {
            for (int64_t t = 0; t < taps; t++) {
                memcpy(&we->buf[t * C + c], ocm + g->w_addr + (uint64_t)(c * taps + t) * 2, 2);
            }
        }
        we->finite = 1; /* unused by the depthwise path */
        we->valid = 1;
    }
    weights_noted(sim, lt, g->w_addr, wlen, we);
    /* converted while the lock is held: the entry cannot be refilled meanwhile */
    h2f_row(sim, (const uint8_t *)we->buf, W, (int64_t)nw);
    wc_unlock(sim);
    int has_bias = g->b_addr != MLIP_ADDR_NONE;
    if (has_bias) {
        memcpy(bias, ocm + g->b_addr, (size_t)C * 4);
    }
    int odt = in->dst_dtype;
    uint32_t oes = DT_SIZE[odt];
    float alpha = in->fparam[MLIP_FP_ACT_ALPHA], beta = in->fparam[MLIP_FP_ACT_BETA];
    /* output pixels that follow each other (pixel stride = channels): activation and
     * conversion once per output row, else once per pixel (element-wise: the same values) */
    int64_t rowpix = g->ops == C ? g->ow : 1;
    /* AVX-512: activation and fp16 conversion in one pass over the row */
#if MLIP_HAVE_AVX2_KERNEL
    int fused_store = sim->has_avx512 && odt == MLIP_DT_FP16 && conv_store_avx512_acts(in->act);
#endif
    for (int64_t r = 0; r < g->oh; r++) {
        int64_t i0, i1;
        tap_range(r, g->sh, g->dh, g->pt, g->ih, g->kh, &i0, &i1);
#if MLIP_HAVE_AVX2_KERNEL
        if (sim->has_avx512) {
            dw_row_avx512(X, W, g, r, i0, i1, has_bias ? bias : NULL, accrow);
        } else if (sim->has_avx2) {
            dw_row_avx2(X, W, g, r, i0, i1, has_bias ? bias : NULL, accrow);
        } else
#endif
        {
            dw_row_c(X, W, g, r, i0, i1, has_bias ? bias : NULL, accrow);
        }
        for (int64_t first = 0; first < g->ow; first += rowpix) {
            float *acc = accrow + first * C;
            uint8_t *orow = ocm + g->out_addr + (uint64_t)((r * g->ow + first) * g->ops) * oes;
#if MLIP_HAVE_AVX2_KERNEL
            if (fused_store) {
                act_f2h_row_avx512(acc, orow, rowpix * C, in->act, alpha, beta);
                continue;
            }
#endif
            act_row(in->act, acc, rowpix * C, alpha, beta);
            if (odt == MLIP_DT_FP16) {
                f2h_row(sim, acc, orow, rowpix * C);
            } else {
                memcpy(orow, acc, (size_t)(rowpix * C) * 4);
            }
        }
    }
    return MLIP_OK;
}

/* One int8 output pixel (r, s) of group gi: acc[o] = sum over the in-range taps (i, j, c)
 * of X * W (int32; X holds x - in_zp, W is [g][t][ocg]).  No partial sum can overflow
 * (|x - in_zp| <= 255, |w| <= 128, kh * kw * icg <= MLIP_MAX_INT8_K), so the vector lanes
 * give the same sums as any order.  One body, compiled for AVX-512F, AVX2 and the baseline. */
static inline __attribute__((always_inline)) void
conv_i8_pixel_body(const int32_t *X, const int32_t *W, const conv_geo *g, int64_t icg,
                   int64_t ocg, int64_t kk, int64_t gi, int64_t r, int64_t s, int32_t *acc)
{
    int64_t i0, i1, j0, j1;
    tap_range(r, g->sh, g->dh, g->pt, g->ih, g->kh, &i0, &i1);
    tap_range(s, g->sw, g->dw, g->pl, g->iw, g->kw, &j0, &j1);
    for (int64_t o = 0; o < ocg; o++) acc[o] = 0;
    for (int64_t i = i0; i < i1; i++) {
        int64_t y = r * g->sh + i * g->dh - g->pt;
        for (int64_t j = j0; j < j1; j++) {
            int64_t x = s * g->sw + j * g->dw - g->pl;
            const int32_t *xp = X + (y * g->iw + x) * g->ic + gi * icg;
            const int32_t *wp = W + (gi * kk + (i * g->kw + j) * icg) * ocg;
            for (int64_t c = 0; c < icg; c++) {
                int32_t v = xp[c];
                const int32_t *w = wp + c * ocg;
                for (int64_t o = 0; o < ocg; o++) acc[o] += v * w[o];
            }
        }
    }
}

#if MLIP_HAVE_AVX2_KERNEL
/* conv_i8_pixel_body with up to 64 output channels at a time held in registers (AVX-512F;
 * the channels beyond ocg of a partial vector are neither loaded nor stored) */
__attribute__((target("avx512f"))) static void
conv_i8_pixel_avx512(const int32_t *X, const int32_t *W, const conv_geo *g, int64_t icg,
                     int64_t ocg, int64_t kk, int64_t gi, int64_t r, int64_t s, int32_t *acc)
{
    int64_t i0, i1, j0, j1;
    tap_range(r, g->sh, g->dh, g->pt, g->ih, g->kh, &i0, &i1);
    tap_range(s, g->sw, g->dw, g->pl, g->iw, g->kw, &j0, &j1);
    for (int64_t ob = 0; ob < ocg; ob += 64) {
        __mmask16 m[4];
        for (int b = 0; b < 4; b++) {
            int64_t n = ocg - ob - 16 * b;
            m[b] = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1u) : 0;
        }
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = i0; i < i1; i++) {
            int64_t y = r * g->sh + i * g->dh - g->pt;
            for (int64_t j = j0; j < j1; j++) {
                int64_t x = s * g->sw + j * g->dw - g->pl;
                const int32_t *xp = X + (y * g->iw + x) * g->ic + gi * icg;
                const int32_t *wp = W + (gi * kk + (i * g->kw + j) * icg) * ocg + ob;
                for (int64_t c = 0; c < icg; c++, wp += ocg) {
                    __m512i v = _mm512_set1_epi32(xp[c]);
                    a0 = _mm512_add_epi32(a0, _mm512_mullo_epi32(
                                                  v, _mm512_maskz_loadu_epi32(m[0], wp)));
                    if (m[1] == 0) continue;
                    a1 = _mm512_add_epi32(a1, _mm512_mullo_epi32(
                                                  v, _mm512_maskz_loadu_epi32(m[1], wp + 16)));
                    if (m[2] == 0) continue;
                    a2 = _mm512_add_epi32(a2, _mm512_mullo_epi32(
                                                  v, _mm512_maskz_loadu_epi32(m[2], wp + 32)));
                    if (m[3] == 0) continue;
                    a3 = _mm512_add_epi32(a3, _mm512_mullo_epi32(
                                                  v, _mm512_maskz_loadu_epi32(m[3], wp + 48)));
                }
            }
        }
        _mm512_mask_storeu_epi32(acc + ob, m[0], a0);
        _mm512_mask_storeu_epi32(acc + ob + 16, m[1], a1);
        _mm512_mask_storeu_epi32(acc + ob + 32, m[2], a2);
        _mm512_mask_storeu_epi32(acc + ob + 48, m[3], a3);
    }
}

__attribute__((target("avx2"))) static void
conv_i8_pixel_avx2(const int32_t *X, const int32_t *W, const conv_geo *g, int64_t icg,
                   int64_t ocg, int64_t kk, int64_t gi, int64_t r, int64_t s, int32_t *acc)
{
    conv_i8_pixel_body(X, W, g, icg, ocg, kk, gi, r, s, acc);
}
#endif

static void conv_i8_pixel_c(const int32_t *X, const int32_t *W, const conv_geo *g, int64_t icg,
                            int64_t ocg, int64_t kk, int64_t gi, int64_t r, int64_t s,
                            int32_t *acc)
{
    conv_i8_pixel_body(X, W, g, icg, ocg, kk, gi, r, s, acc);
}

static int exec_conv_i8(mlip_sim *sim, scratch *scr, uint8_t *ocm, const mlip_insn *in,
                        const conv_geo *g)
{
    int64_t icg = g->ic / g->groups, ocg = g->oc / g->groups;
    size_t nin = (size_t)(g->ih * g->iw * g->ic);
    int64_t kk = g->kh * g->kw * icg;
    size_t nw = (size_t)(g->groups * kk * ocg);
    TRY(ensure(sim, (void **)&scr->ibuf, &scr->ibuf_cap, (nin + (size_t)ocg) * sizeof(int32_t)));
    TRY(ensure(sim, (void **)&scr->iwbuf, &scr->iwbuf_cap, nw * sizeof(int32_t)));
    int32_t *X = scr->ibuf, *acc = scr->ibuf + nin, *W = scr->iwbuf;
    for (int64_t p = 0; p < g->ih * g->iw; p++) {
        const int8_t *src = (const int8_t *)(ocm + g->in_addr + (uint64_t)p * g->ips);
        for (int64_t c = 0; c < g->ic; c++) X[p * g->ic + c] = (int32_t)src[c] - in->in_zp;
    }
    for (int64_t gi = 0; gi < g->groups; gi++) {
        /* blocks of 16 output channels: 16 sequential reads, contiguous writes */
        for (int64_t ob = 0; ob < ocg; ob += 16) {
            int64_t on = ocg - ob < 16 ? ocg - ob : 16;
            const int8_t *src =
                (const int8_t *)(ocm + g->w_addr + (uint64_t)((gi * ocg + ob) * kk));
            for (int64_t t = 0; t < kk; t++) {
                int32_t *dst = W + (gi * kk + t) * ocg + ob;
                for (int64_t o = 0; o < on; o++) dst[o] = src[o * kk + t];
            }
        }
    }
    int odt = in->dst_dtype;
    uint32_t oes = DT_SIZE[odt];
    for (int64_t gi = 0; gi < g->groups; gi++) {
        for (int64_t r = 0; r < g->oh; r++) {
            for (int64_t s = 0; s < g->ow; s++) {
#if MLIP_HAVE_AVX2_KERNEL
                if (sim->has_avx512) {
                    conv_i8_pixel_avx512(X, W, g, icg, ocg, kk, gi, r, s, acc);
                } else if (sim->has_avx2) {
                    conv_i8_pixel_avx2(X, W, g, icg, ocg, kk, gi, r, s, acc);
                } else
#endif
                {
                    conv_i8_pixel_c(X, W, g, icg, ocg, kk, gi, r, s, acc);
                }
                uint8_t *orow = ocm + g->out_addr + (uint64_t)((r * g->ow + s) * g->ops) * oes;
                for (int64_t o = 0; o < ocg; o++) {
                    int64_t oo = gi * ocg + o;
                    int64_t total = acc[o];
                    if (g->b_addr != MLIP_ADDR_NONE) {
                        int32_t b;
                        memcpy(&b, ocm + g->b_addr + oo * 4, 4);
                        total += b;
                    }
                    float sc;
                    memcpy(&sc, ocm + g->s_addr + oo * 4, 4);
                    float v = (float)total * sc;
                    v = apply_act(in->act, v, in->fparam[MLIP_FP_ACT_ALPHA],
                                  in->fparam[MLIP_FP_ACT_BETA]);
                    st_elem(orow + oo * oes, odt, v, in->out_zp);
                }
            }
        }
    }
    return MLIP_OK;
}

static int exec_conv(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                     const mlip_machine *p, cost *c)
{
    conv_geo g;
    conv_geometry(in, &g);
    uint8_t *ocm = sim->ocm[lt];
    int i8 = in->src_dtype == MLIP_DT_INT8;
    uint32_t es = DT_SIZE[in->src_dtype], oes = DT_SIZE[in->dst_dtype];
    int64_t icg = g.ic / g.groups, ocg = g.oc / g.groups;
    int64_t kk = g.kh * g.kw * icg;
    TRY(ocm_mark_rows(ac, lt, g.in_addr, (uint64_t)(g.ih * g.iw), (uint64_t)g.ic * es,
                      (uint64_t)g.ips * es, 0));
    TRY(ocm_mark_rows(ac, lt, g.w_addr, 1, (uint64_t)(g.oc * kk) * es, 0, 0));
    if (g.b_addr != MLIP_ADDR_NONE) {
        TRY(ocm_mark_rows(ac, lt, g.b_addr, 1, (uint64_t)g.oc * 4, 0, 0));
    }
    if (g.s_addr != MLIP_ADDR_NONE) {
        TRY(ocm_mark_rows(ac, lt, g.s_addr, 1, (uint64_t)g.oc * 4, 0, 0));
    }
    TRY(ocm_mark_rows(ac, lt, g.out_addr, (uint64_t)(g.oh * g.ow), (uint64_t)g.oc * oes,
                      (uint64_t)g.ops * oes, 1));
    int depthwise = icg == 1 && ocg == 1 && g.groups > 1;
    uint64_t pixels = (uint64_t)(g.oh * g.ow);
    c->macs = pixels * (uint64_t)g.oc * (uint64_t)kk;
    c->int8 = i8;
    uint64_t speed = i8 ? p->int8_speedup : 1;
    if (depthwise && !i8) {
        c->engine = 2;
        uint64_t lanes = umin64(p->vector_lanes, (uint64_t)p->matrix_rows * p->matrix_cols);
        c->cycles = p->vector_latency + cdiv(c->macs, lanes);
    } else {
        c->engine = 1;
        uint64_t passes = pixels * (uint64_t)(g.kh * g.kw * g.groups) *
                          cdiv((uint64_t)icg, p->matrix_rows) *
                          cdiv((uint64_t)ocg, p->matrix_cols);
        c->cycles = p->matrix_fill + cdiv(passes, speed);
    }
    if (i8) {
        return exec_conv_i8(sim, ac->w, ocm, in, &g);
    }
    if (depthwise) {
        return exec_dw_f16(sim, ac->w, lt, ocm, in, &g);
    }
    return exec_conv_f16(sim, ac->w, lt, ocm, in, &g);
}

/* acc[k] = max(acc[k], x[k]) (is_max) or min over a row, in the C library's fmaxf / fminf
 * sense made exact where C leaves it open: a NaN operand gives the other one, and of two
 * operands that compare equal (+0 and -0) the first, acc (what this simulator's fmaxf calls
 * gave); so max(a, b) = isnan(b) ? a : isnan(a) ? b : a >= b ? a : b.  Four lanes at a time
 * with the same rule. */
static inline float maxmin1(float a, float b, int is_max)
{
    if (isnan(b)) return a;
    if (isnan(a)) return b;
    return (is_max ? a >= b : a <= b) ? a : b;
}

typedef int32_t v8si __attribute__((vector_size(32)));

/* acc[k] = maxmin1(acc[k], x[k]) over a row: lanes keep acc where it wins (>= for MAX, <=
 * for MIN; false with a NaN) or x is NaN, else take x -- maxmin1 exactly.  One body, compiled
 * for AVX2 (maxmin_row_avx2) and the baseline (maxmin_row; ELTWISE uses this one).  8 lanes
 * also where AVX-512F is there: GCC turns 16-lane compares into scalar code without
 * AVX-512DQ. */
static inline __attribute__((always_inline)) void
maxmin_row_body(float *acc, const float *x, int64_t n, int is_max)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        v8f a, b;
        memcpy(&a, acc + k, sizeof a);
        memcpy(&b, x + k, sizeof b);
        const v8si keep = (is_max ? a >= b : a <= b) | (b != b);
        const v8si r = ((v8si)a & keep) | ((v8si)b & ~keep);
        memcpy(acc + k, &r, sizeof r);
    }
    for (; k < n; k++) acc[k] = maxmin1(acc[k], x[k], is_max);
}

static void maxmin_row(float *acc, const float *x, int64_t n, int is_max)
{
    maxmin_row_body(acc, x, n, is_max);
}

#if MLIP_HAVE_AVX2_KERNEL
__attribute__((target("avx2"))) static void
maxmin_row_avx2(float *acc, const float *x, int64_t n, int is_max)
{
    maxmin_row_body(acc, x, n, is_max);
}
#endif

/* maxmin_row on the AVX2 kernel where the handle may use it */
static void maxmin_row_best(const mlip_sim *sim, float *acc, const float *x, int64_t n,
                            int is_max)
{
#if MLIP_HAVE_AVX2_KERNEL
    if (sim->has_avx2) {
        maxmin_row_avx2(acc, x, n, is_max);
        return;
    }
#else
    (void)sim;
#endif
    maxmin_row(acc, x, n, is_max);
}

static int exec_pool(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                     const mlip_machine *p, cost *c)
{
    scratch *scr = ac->w;
    const uint32_t *a = in->arg;
    uint8_t *ocm = sim->ocm[lt];
    int64_t ih = a[MLIP_POOL_IH], iw = a[MLIP_POOL_IW], C = a[MLIP_POOL_C];
    int64_t ips = a[MLIP_POOL_IN_PIX_STRIDE], oh = a[MLIP_POOL_OH], ow = a[MLIP_POOL_OW];
    int64_t ops = a[MLIP_POOL_OUT_PIX_STRIDE], kh = a[MLIP_POOL_KH], kw = a[MLIP_POOL_KW];
    int64_t sh = a[MLIP_POOL_SH], sw = a[MLIP_POOL_SW];
    int64_t pt = (int32_t)a[MLIP_POOL_PAD_T], pl = (int32_t)a[MLIP_POOL_PAD_L];
    uint64_t in_addr = a[MLIP_POOL_IN_ADDR], out_addr = a[MLIP_POOL_OUT_ADDR];
    int sdt = in->src_dtype, odt = in->dst_dtype;
    uint32_t es = DT_SIZE[sdt], oes = DT_SIZE[odt];
    TRY(ocm_mark_rows(ac, lt, in_addr, (uint64_t)(ih * iw), (uint64_t)C * es,
                      (uint64_t)ips * es, 0));
    TRY(ocm_mark_rows(ac, lt, out_addr, (uint64_t)(oh * ow), (uint64_t)C * oes,
                      (uint64_t)ops * oes, 1));
    uint64_t taps = (uint64_t)(oh * ow * C * kh * kw);
    c->engine = 2;
    c->cycles = p->vector_latency + cdiv(taps, p->vector_lanes);
    /* one pass: an fp16 input whose windows do not overlap (every pixel is read at most
     * once) and whose output does not overlap it is converted tap by tap, as it is read */
    const uint64_t in_end = in_addr + extent2((uint64_t)(ih * iw), (uint64_t)C, (uint64_t)ips, es);
    const uint64_t out_end =
        out_addr + extent2((uint64_t)(oh * ow), (uint64_t)C, (uint64_t)ops, oes);
    const int one_pass = sdt == MLIP_DT_FP16 && kh <= sh && kw <= sw &&
                         (in_end <= out_addr || out_end <= in_addr);
    size_t nin = one_pass ? 0 : (size_t)(ih * iw * C);
    TRY(ensure(sim, (void **)&scr->fbuf, &scr->fbuf_cap, (nin + 2 * (size_t)C) * sizeof(float)));
    float *X = scr->fbuf, *acc = scr->fbuf + nin, *tap = acc + C;
    int is_int = dt_is_int(sdt);
    float zp = is_int ? (float)in->in_zp : 0.0f;
    /* x - 0 is x for every value but a signalling NaN (made quiet), and an fp16 output
     * stores every NaN as the same quiet one: no subtraction needed then */
    const int sub_zp = !(zp == 0.0f && odt == MLIP_DT_FP16);
    for (int64_t q = 0; q < ih * iw && !one_pass; q++) {
        const uint8_t *src = ocm + in_addr + (uint64_t)(q * ips) * es;
        if (sdt == MLIP_DT_FP16) { /* the loop below, converting the row at once */
            float *xr = X + q * C;
            h2f_row(sim, src, xr, C);
            if (!sub_zp) continue;
            for (int64_t ch = 0; ch < C; ch++) xr[ch] = xr[ch] - zp;
            continue;
        }
        for (int64_t ch = 0; ch < C; ch++) {
            X[q * C + ch] = ld_elem(src + ch * es, sdt) - zp;
        }
    }
    int is_max = in->func == MLIP_POOL_MAX;
    int scale = (in->flags & MLIP_F_SCALE) != 0;
    float sc = in->fparam[MLIP_FP_SCALE];
    for (int64_t r = 0; r < oh; r++) {
        int64_t i0, i1;
        tap_range(r, sh, 1, pt, ih, kh, &i0, &i1);
        for (int64_t s = 0; s < ow; s++) {
            int64_t j0, j1;
            tap_range(s, sw, 1, pl, iw, kw, &j0, &j1);
            int64_t count = (i1 - i0) * (j1 - j0);
            for (int64_t ch = 0; ch < C; ch++) acc[ch] = is_max ? -INFINITY : 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                for (int64_t j = j0; j < j1; j++) {
                    const int64_t pix = (r * sh + i - pt) * iw + (s * sw + j - pl);
                    const float *xp = X + pix * C;
                    if (one_pass) { /* the pixel's row as the loop above converts it */
                        h2f_row(sim, ocm + in_addr + (uint64_t)(pix * ips) * es, tap, C);
                        if (sub_zp) {
                            for (int64_t ch = 0; ch < C; ch++) tap[ch] = tap[ch] - zp;
                        }
                        xp = tap;
                    }
                    if (is_max) {
                        maxmin_row_best(sim, acc, xp, C, 1);
                    } else {
                        for (int64_t ch = 0; ch < C; ch++) acc[ch] += xp[ch];
                    }
                }
            }
            int64_t div = (in->flags & MLIP_F_COUNT_PAD) ? kh * kw : count;
            uint8_t *orow = ocm + out_addr + (uint64_t)((r * ow + s) * ops) * oes;
            if (odt == MLIP_DT_FP16 && count != 0) { /* the loop below, a row at a time */
                if (!is_max) {
                    for (int64_t ch = 0; ch < C; ch++) acc[ch] = acc[ch] / (float)div;
                }
                act_row(in->act, acc, C, in->fparam[MLIP_FP_ACT_ALPHA],
                        in->fparam[MLIP_FP_ACT_BETA]);
                if (scale) {
                    for (int64_t ch = 0; ch < C; ch++) acc[ch] = acc[ch] * sc;
                }
                f2h_row(sim, acc, orow, C);
                continue;
            }
            for (int64_t ch = 0; ch < C; ch++) {
                float v;
                if (count == 0) {
                    v = 0.0f;
                } else if (is_max) {
                    v = acc[ch];
                } else {
                    v = acc[ch] / (float)div;
                }
                v = apply_act(in->act, v, in->fparam[MLIP_FP_ACT_ALPHA],
                              in->fparam[MLIP_FP_ACT_BETA]);
                if (scale) v *= sc;
                st_elem(orow + ch * oes, odt, v, in->out_zp);
            }
        }
    }
    return MLIP_OK;
}

/* va[k] = va[k] OP vb[k] over a row.  For ADD, SUB, MUL and DIV the operation is an asm with va as
 * the first source operand, so that where both are NaN the result is va's NaN (its sign
 * survives f2h): C lets the compiler commute `a + b`, and it did so differently in different
 * loops; the fused F16C row (elt_row_body) does the same. */
static void elt_arith_row(int func, float *va, const float *vb, int64_t m)
{
    int64_t k = 0;
    if (func == MLIP_ELT_MAX || func == MLIP_ELT_MIN) {
        maxmin_row(va, vb, m, func == MLIP_ELT_MAX);
        return;
    }
#if defined(__x86_64__)
    for (; k + 4 <= m; k += 4) {
        __m128 a = _mm_loadu_ps(va + k), b = _mm_loadu_ps(vb + k);
        if (func == MLIP_ELT_ADD) {
            __asm__("addps %1, %0" : "+x"(a) : "x"(b));
        } else if (func == MLIP_ELT_SUB) {
            __asm__("subps %1, %0" : "+x"(a) : "x"(b));
        } else if (func == MLIP_ELT_DIV) {
            __asm__("divps %1, %0" : "+x"(a) : "x"(b));
        } else {
            __asm__("mulps %1, %0" : "+x"(a) : "x"(b));
        }
        _mm_storeu_ps(va + k, a);
    }
    for (; k < m; k++) {
        float a = va[k];
        if (func == MLIP_ELT_ADD) {
            __asm__("addss %1, %0" : "+x"(a) : "x"(vb[k]));
        } else if (func == MLIP_ELT_SUB) {
            __asm__("subss %1, %0" : "+x"(a) : "x"(vb[k]));
        } else if (func == MLIP_ELT_DIV) {
            __asm__("divss %1, %0" : "+x"(a) : "x"(vb[k]));
        } else {
            __asm__("mulss %1, %0" : "+x"(a) : "x"(vb[k]));
        }
        va[k] = a;
    }
#else
    for (; k < m; k++) {
        va[k] = func == MLIP_ELT_ADD ? va[k] + vb[k]
                : func == MLIP_ELT_SUB ? va[k] - vb[k]
                : func == MLIP_ELT_DIV ? va[k] / vb[k] : va[k] * vb[k];
    }
#endif
}

#if MLIP_HAVE_AVX2_KERNEL
/* fp16 bit patterns, 8 and 16 lanes (the F16C conversions' other side) */
typedef int16_t v8hi __attribute__((vector_size(16)));
typedef int16_t v16hi __attribute__((vector_size(32)));

/* One fp16 ELTWISE row, fused: out[k] = f2h(act(h2f(a[k]) OP b_k)) with b_k = h2f(b[k]) or,
 * with b_bcast, the one value h2f(b[0]); OP is ADD, SUB or MUL, act NONE, RELU, RELU6 or
 * CLIP.  The operations of the unfused path, so the same bits: the F16C conversions (exact
 * up; RNE down), `a OP b` with a as the first source (OP_FIRST), act_row's ordered compares
 * and masks, and a NaN stored as f2h stores it (0x7E00 with its sign: the converted lane's
 * NaN replaced).  One body, compiled twice (elt_row_avx512 / elt_row_f16c); the conversions
 * are asm, whose one mnemonic serves every width; wide: 16-lane blocks first, then 8; the
 * last fewer than 8 elements through 8 lanes, padded.  out may equal a (same positions) but
 * not overlap b. */
static inline __attribute__((always_inline)) void
elt_row_body(const uint8_t *a, const uint8_t *b, int b_bcast, uint8_t *out, int64_t n,
             int func, int act, float alpha, float beta, const int wide)
{
    uint16_t hb0;
    memcpy(&hb0, b, 2);
    const float b0 = h2f(hb0);
    /* the scalars in every lane, per width (exactly: -0 stays -0) */
    v16f b0_16, six_16, lo_16, hi_16;
    v8f b0_8, six_8, lo_8, hi_8;
    for (int t = 0; t < 16; t++) {
        b0_16[t] = b0;
        six_16[t] = 6.0f;
        lo_16[t] = alpha;
        hi_16[t] = beta;
    }
    for (int t = 0; t < 8; t++) {
        b0_8[t] = b0;
        six_8[t] = 6.0f;
        lo_8[t] = alpha;
        hi_8[t] = beta;
    }
/* lanes v = (m ? x : y), m a compare's lanes (all ones or zero) */
#define ELT_SELECT(m, x, y)                                                                  \
    ((__typeof__(x))(((m) & (__typeof__(m))(x)) | (~(m) & (__typeof__(m))(y))))
/* any = whether a lane of v is NaN (an unordered self-compare; 16 lanes into a mask register) */
#define ELT_ANY_NAN_16(any, v)                                                               \
    __asm__("vcmpunordps %1, %1, %%k1\n\tkortestw %%k1, %%k1" : "=@ccnz"(any) : "v"(v) : "k1")
#define ELT_ANY_NAN_8(any, v)                                                                \
    do {                                                                                     \
        v8f m_;                                                                              \
        __asm__("vcmpunordps %2, %2, %1\n\tvtestps %1, %1" : "=@ccnz"(any), "=&x"(m_)      \
                : "x"(v));                                                                   \
    } while (0)
/* one block of L lanes (v<L>f fp32, v<L>hi fp16) at pa, pb, po */
#define ELT_BLOCK(L, pa, pb, po)                                                             \
    do {                                                                                     \
        v##L##hi ha, hb, ho;                                                                 \
        v##L##f x, y, v;                                                                     \
        memcpy(&ha, pa, sizeof ha);                                                          \
        __asm__("vcvtph2ps %1, %0" : "=v"(x) : "vm"(ha));                                    \
        if (b_bcast) {                                                                       \
            y = b0_##L;                                                                      \
        } else {                                                                             \
            memcpy(&hb, pb, sizeof hb);                                                      \
            __asm__("vcvtph2ps %1, %0" : "=v"(y) : "vm"(hb));                                \
        }                                                                                    \
        if (func == MLIP_ELT_ADD) {                                                          \
            ADD_FIRST(1, "ps", v, x, y);                                                     \
        } else if (func == MLIP_ELT_SUB) {                                                   \
            SUB_FIRST(1, "ps", v, x, y);                                                     \
        } else {                                                                             \
            MUL_FIRST(1, "ps", v, x, y);                                                     \
        }                                                                                    \
        if (act == MLIP_ACT_RELU || act == MLIP_ACT_RELU6) { /* v > 0 ? min-ish(v, 6) : +0 */ \
            v##L##f t = v;                                                                   \
            if (act == MLIP_ACT_RELU6) t = ELT_SELECT(v < six_##L, v, six_##L);              \
            v = (v##L##f)((v > 0.0f) & (__typeof__(v > 0.0f))t);                             \
        } else if (act == MLIP_ACT_CLIP) { /* v < alpha ? alpha : (v > beta ? beta : v) */   \
            v##L##f t = ELT_SELECT(v > hi_##L, hi_##L, v);                                   \
            v = ELT_SELECT(v < lo_##L, lo_##L, t);                                           \
        }                                                                                    \
        /* RNE, exceptions suppressed (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) */     \
        __asm__("vcvtps2ph $8, %1, %0" : "=vm"(ho) : "v"(v));                                \
        int any_nan;                                                                         \
        ELT_ANY_NAN_##L(any_nan, v);                                                         \
        if (__builtin_expect(any_nan, 0)) { /* a NaN lane: 0x7E00 with its sign (f2h) */     \
            v##L##hi nan = (ho & 0x7FFF) > 0x7C00;                                           \
            ho = (ho & ~(nan & 0x7FFF)) | (nan & 0x7E00);                                    \
        }                                                                                    \
        memcpy(po, &ho, sizeof ho);                                                          \
    } while (0)
    int64_t k = 0;
    if (wide) {
        for (; k + 16 <= n; k += 16) {
            ELT_BLOCK(16, a + 2 * k, b + 2 * k, out + 2 * k);
        }
    }
    for (; k + 8 <= n; k += 8) {
        ELT_BLOCK(8, a + 2 * k, b + 2 * k, out + 2 * k);
    }
    if (k < n) {
        uint8_t ta[16] = {0}, tb[16] = {0}, to[16];
        size_t rest = (size_t)(n - k) * 2;
        memcpy(ta, a + 2 * k, rest);
        if (!b_bcast) memcpy(tb, b + 2 * k, rest);
        ELT_BLOCK(8, ta, tb, to);
        memcpy(out + 2 * k, to, rest);
    }
#undef ELT_BLOCK
#undef ELT_ANY_NAN_8
#undef ELT_ANY_NAN_16
#undef ELT_SELECT
}

__attribute__((target("avx512f,avx2,f16c"))) static void
elt_row_avx512(const uint8_t *a, const uint8_t *b, int b_bcast, uint8_t *out, int64_t n,
               int func, int act, float alpha, float beta)
{
    elt_row_body(a, b, b_bcast, out, n, func, act, alpha, beta, 1);
}

__attribute__((target("avx2,f16c"))) static void
elt_row_f16c(const uint8_t *a, const uint8_t *b, int b_bcast, uint8_t *out, int64_t n,
             int func, int act, float alpha, float beta)
{
    elt_row_body(a, b, b_bcast, out, n, func, act, alpha, beta, 0);
}
#endif

static int exec_elt(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                    const mlip_machine *p, cost *c)
{
    scratch *scr = ac->w;
    const uint32_t *a = in->arg;
    uint8_t *ocm = sim->ocm[lt];
    uint64_t rows = a[MLIP_ELT_ROWS], cols = a[MLIP_ELT_COLS];
    uint64_t ars = a[MLIP_ELT_A_ROW_STRIDE], brs = a[MLIP_ELT_B_ROW_STRIDE];
    uint64_t bcs = a[MLIP_ELT_B_COL_STRIDE], ors = a[MLIP_ELT_OUT_ROW_STRIDE];
    uint64_t aa = a[MLIP_ELT_A_ADDR], ba = a[MLIP_ELT_B_ADDR], oa = a[MLIP_ELT_OUT_ADDR];
    int sdt = in->src_dtype, odt = in->dst_dtype;
    uint32_t es = DT_SIZE[sdt], oes = DT_SIZE[odt];
    TRY(ocm_mark_rows(ac, lt, aa, rows, cols * es, ars * es, 0));
    if (bcs == 1) { /* rows that continue each other: one mark */
        TRY(ocm_mark_rows(ac, lt, ba, rows, cols * es, brs * es, 0));
    } else if (sim->deps_now) { /* one mark per row, contiguous or not */
        TRY(shadow_mark_rows(ac, &sim->osh[lt], ba, rows, ((cols - 1) * bcs + 1) * es,
                             brs * es, 0, ac->s % 3, MLIP_OCM_GRANULE, (int)(sim->tile0 + lt)));
    }
    TRY(ocm_mark_rows(ac, lt, oa, rows, cols * oes, ors * oes, 1));
    c->engine = 2;
    c->cycles = p->vector_latency + cdiv(rows * cols, p->vector_lanes);
    int scale = (in->flags & MLIP_F_SCALE) != 0;
    float as = f32_bits(a[MLIP_ELT_A_SCALE]), bs = f32_bits(a[MLIP_ELT_B_SCALE]);
    float os = f32_bits(a[MLIP_ELT_OUT_SCALE]);
    float azp = dt_is_int(sdt) ? (float)in->in_zp : 0.0f;
    float bzp = dt_is_int(sdt) ? (float)(int32_t)a[MLIP_ELT_B_ZP] : 0.0f;
    float alpha = in->fparam[MLIP_FP_ACT_ALPHA], beta = in->fparam[MLIP_FP_ACT_BETA];
    /* fast path: fp16 inputs without scaling, whole rows at a time; only where that cannot
     * differ from element order (the output aliases A exactly or nothing at all) */
    uint64_t a_hi = aa + extent2(rows, cols, ars, es);
    uint64_t b_hi = ba + ((rows - 1) * brs + (cols - 1) * bcs + 1) * es;
    uint64_t o_hi = oa + extent2(rows, cols, ors, oes);
    int alias_ok = !(oa < b_hi && ba < o_hi) &&
                   (!(oa < a_hi && aa < o_hi) || (oa == aa && ors == ars && oes == es));
#if MLIP_HAVE_AVX2_KERNEL
    if (sim->has_avx2 && !scale && sdt == MLIP_DT_FP16 && odt == MLIP_DT_FP16 && alias_ok &&
        (bcs == 1 || bcs == 0) && in->func <= MLIP_ELT_MUL && in->act <= MLIP_ACT_CLIP) {
        /* one fused pass per row (rows that follow each other in A, B and the output: one) */
        if (rows > 1 && bcs == 1 && ars == cols && brs == cols && ors == cols) {
            cols = rows * cols;
            rows = 1;
        }
        for (uint64_t r = 0; r < rows; r++) {
            (sim->has_avx512 ? elt_row_avx512 : elt_row_f16c)(
                ocm + aa + r * ars * es, ocm + ba + r * brs * es, bcs == 0,
                ocm + oa + r * ors * oes, (int64_t)cols, in->func, in->act, alpha, beta);
        }
        return MLIP_OK;
    }
#endif
    if (!scale && sdt == MLIP_DT_FP16 && (odt == MLIP_DT_FP16 || odt == MLIP_DT_FP32) &&
        alias_ok) {
        /* rows that follow each other in A, B and the output: one long row, in chunks
         * (element-wise, so the same values) */
        uint64_t rows_all = rows;
        if (rows > 1 && bcs == 1 && ars == cols && brs == cols && ors == cols) {
            cols = rows * cols;
            rows = 1;
        }
        uint64_t chunk = cols < 4096 ? cols : 4096;
        TRY(ensure(sim, (void **)&scr->fbuf, &scr->fbuf_cap, (size_t)chunk * 2 * sizeof(float)));
        float *va = scr->fbuf, *vb = scr->fbuf + chunk;
        if (rows != rows_all) {
            for (uint64_t k0 = 0; k0 < cols; k0 += chunk) {
                int64_t m = (int64_t)(cols - k0 < chunk ? cols - k0 : chunk);
                h2f_row(sim, ocm + aa + k0 * es, va, m);
                h2f_row(sim, ocm + ba + k0 * es, vb, m);
                elt_arith_row(in->func, va, vb, m);
                act_row(in->act, va, m, alpha, beta);
                if (odt == MLIP_DT_FP16) {
                    f2h_row(sim, va, ocm + oa + k0 * oes, m);
                } else {
                    memcpy(ocm + oa + k0 * oes, va, (size_t)m * 4);
                }
            }
            return MLIP_OK;
        }
        for (uint64_t r = 0; r < rows; r++) {
            h2f_row(sim, ocm + aa + r * ars * es, va, (int64_t)cols);
            if (bcs == 1) {
                h2f_row(sim, ocm + ba + r * brs * es, vb, (int64_t)cols);
            } else {
                float b0 = ld_elem(ocm + ba + r * brs * es, sdt);
                for (uint64_t k = 0; k < cols; k++) vb[k] = b0;
            }
            elt_arith_row(in->func, va, vb, (int64_t)cols);
            act_row(in->act, va, (int64_t)cols, alpha, beta);
            if (odt == MLIP_DT_FP16) {
                f2h_row(sim, va, ocm + oa + r * ors * oes, (int64_t)cols);
            } else {
                memcpy(ocm + oa + r * ors * oes, va, cols * 4);
            }
        }
        return MLIP_OK;
    }
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t k = 0; k < cols; k++) {
            float va = ld_elem(ocm + aa + (r * ars + k) * es, sdt);
            float vb = ld_elem(ocm + ba + (r * brs + k * bcs) * es, sdt);
            if (scale) {
                va = (va - azp) * as;
                vb = (vb - bzp) * bs;
            }
            float v;
            switch (in->func) {
            case MLIP_ELT_ADD: v = va + vb; break;
            case MLIP_ELT_SUB: v = va - vb; break;
            case MLIP_ELT_MUL: v = va * vb; break;
            case MLIP_ELT_MAX: v = fmaxf(va, vb); break;
            case MLIP_ELT_DIV: v = va / vb; break;
            default: v = fminf(va, vb); break;
            }
            v = apply_act(in->act, v, alpha, beta);
            if (scale) v *= os;
            st_elem(ocm + oa + (r * ors + k) * oes, odt, v, in->out_zp);
        }
    }
    return MLIP_OK;
}

static int exec_vec(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                    const mlip_machine *p, cost *c)
{
    const uint32_t *a = in->arg;
    uint8_t *ocm = sim->ocm[lt];
    uint64_t rows = a[MLIP_VEC_ROWS], cols = a[MLIP_VEC_COLS];
    uint64_t irs = a[MLIP_VEC_IN_ROW_STRIDE], ors = a[MLIP_VEC_OUT_ROW_STRIDE];
    uint64_t ia = a[MLIP_VEC_IN_ADDR], oa = a[MLIP_VEC_OUT_ADDR];
    int sdt = in->src_dtype, odt = in->dst_dtype;
    uint32_t es = DT_SIZE[sdt], oes = DT_SIZE[odt];
    TRY(ocm_mark_rows(ac, lt, ia, rows, cols * es, irs * es, 0));
    TRY(ocm_mark_rows(ac, lt, oa, rows, cols * oes, ors * oes, 1));
    c->engine = 2;
    c->cycles = p->vector_latency + cdiv(rows * cols, p->vector_lanes);
    int scale = (in->flags & MLIP_F_SCALE) != 0;
    float sc = in->fparam[MLIP_FP_SCALE], os = f32_bits(a[MLIP_VEC_OUT_SCALE]);
    float izp = dt_is_int(sdt) ? (float)in->in_zp : 0.0f;
    float alpha = in->fparam[MLIP_FP_ACT_ALPHA], beta = in->fparam[MLIP_FP_ACT_BETA];
    int same = in->opcode == MLIP_OP_COPY || (sdt == odt && !scale && in->act == 0 &&
                                              in->opcode == MLIP_OP_CONVERT);
    for (uint64_t r = 0; r < rows; r++) {
        const uint8_t *ip = ocm + ia + r * irs * es;
        uint8_t *op = ocm + oa + r * ors * oes;
        if (same) {
            if (op <= ip || op >= ip + cols * es) {
                memmove(op, ip, cols * es); /* equals the element order here */
            } else {
                /* output starts inside the row, after its start: element order (row-major,
                 * as documented) re-reads what this row already wrote */
                for (uint64_t k = 0; k < cols; k++) memcpy(op + k * es, ip + k * es, es);
            }
            continue;
        }
        for (uint64_t k = 0; k < cols; k++) {
            float v = ld_elem(ip + k * es, sdt);
            if (scale) v = (v - izp) * sc;
            if (in->opcode == MLIP_OP_ACT) {
                v = apply_act(in->act, v, alpha, beta);
                if (scale) v *= os;
            }
            st_elem(op + k * oes, odt, v, in->out_zp);
        }
    }
    return MLIP_OK;
}

/* SOFTMAX and LAYERNORM: one row at a time in fp32 (docs/isa.md); the whole row is read
 * before any of its outputs is written, so an output that aliases its input row is fine */
static int exec_rownorm(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                        const mlip_machine *p, cost *c)
{
    scratch *scr = ac->w;
    const uint32_t *a = in->arg;
    uint8_t *ocm = sim->ocm[lt];
    uint64_t rows = a[MLIP_VEC_ROWS], cols = a[MLIP_VEC_COLS];
    uint64_t irs = a[MLIP_VEC_IN_ROW_STRIDE], ors = a[MLIP_VEC_OUT_ROW_STRIDE];
    uint64_t ia = a[MLIP_VEC_IN_ADDR], oa = a[MLIP_VEC_OUT_ADDR];
    int sdt = in->src_dtype, odt = in->dst_dtype;
    uint32_t es = DT_SIZE[sdt], oes = DT_SIZE[odt];
    int norm = in->opcode == MLIP_OP_LAYERNORM;
    TRY(ocm_mark_rows(ac, lt, ia, rows, cols * es, irs * es, 0));
    if (norm && sim->deps_now) {
        TRY(ocm_mark(ac, lt, a[MLIP_NORM_GAMMA_ADDR], a[MLIP_NORM_GAMMA_ADDR] + cols * 4, 0));
        TRY(ocm_mark(ac, lt, a[MLIP_NORM_BETA_ADDR], a[MLIP_NORM_BETA_ADDR] + cols * 4, 0));
    }
    TRY(ocm_mark_rows(ac, lt, oa, rows, cols * oes, ors * oes, 1));
    c->engine = 2;
    /* three passes over every row: softmax max / exp+sum / divide, layernorm mean /
     * variance / scale+shift */
    c->cycles = p->vector_latency + 3 * cdiv(rows * cols, p->vector_lanes);
    TRY(ensure(sim, (void **)&scr->fbuf, &scr->fbuf_cap, (size_t)cols * 3 * sizeof(float)));
    float *v = scr->fbuf, *gamma = scr->fbuf + cols, *beta = scr->fbuf + 2 * cols;
    if (norm) {
        memcpy(gamma, ocm + a[MLIP_NORM_GAMMA_ADDR], cols * 4);
        memcpy(beta, ocm + a[MLIP_NORM_BETA_ADDR], cols * 4);
    }
    float eps = in->fparam[MLIP_FP_ACT_ALPHA];
    int scale = (in->flags & MLIP_F_SCALE) != 0;
    float sc = in->fparam[MLIP_FP_SCALE];
    for (uint64_t r = 0; r < rows; r++) {
        const uint8_t *ip = ocm + ia + r * irs * es;
        uint8_t *op = ocm + oa + r * ors * oes;
        for (uint64_t k = 0; k < cols; k++) v[k] = ld_elem(ip + k * es, sdt);
        if (scale) {
            for (uint64_t k = 0; k < cols; k++) v[k] = v[k] * sc;
        }
        if (norm) {
            float sum = 0.0f;
            for (uint64_t k = 0; k < cols; k++) sum = sum + v[k];
            float mean = sum / (float)cols;
            float sq = 0.0f;
            for (uint64_t k = 0; k < cols; k++) {
                v[k] = v[k] - mean;
                sq = sq + v[k] * v[k];
            }
            float rstd = 1.0f / sqrtf(sq / (float)cols + eps);
            for (uint64_t k = 0; k < cols; k++) v[k] = v[k] * rstd * gamma[k] + beta[k];
        } else {
            float mx = -INFINITY;
            for (uint64_t k = 0; k < cols; k++) mx = fmaxf(mx, v[k]);
            float sum = 0.0f;
            for (uint64_t k = 0; k < cols; k++) {
                v[k] = expf(v[k] - mx);
                sum = sum + v[k];
            }
            for (uint64_t k = 0; k < cols; k++) v[k] = v[k] / sum;
        }
        for (uint64_t k = 0; k < cols; k++) st_elem(op + k * oes, odt, v[k], 0);
    }
    return MLIP_OK;
}

/* memcpy of a short row without a library call for the common sizes (channel slices) */
static inline void copy_row(uint8_t *dst, const uint8_t *src, uint64_t n)
{
    if (n > 64) {
        memcpy(dst, src, n);
        return;
    }
    uint64_t k = 0;
    for (; k + 16 <= n; k += 16) memcpy(dst + k, src + k, 16);
    for (; k < n; k++) dst[k] = src[k];
}

/* Byte ranges of equal length at a constant stride, collected so that they are marked by one
 * shadow_mark_rows call (the same effect as one ocm_mark per range, in order). */
typedef struct mark_batch {
    uint64_t lo, len, stride, n;
} mark_batch;

static int batch_flush(const acc_ctx *ac, uint32_t lt, mark_batch *b, int write)
{
    uint64_t n = b->n;
    b->n = 0;
    if (n == 0) return MLIP_OK;
    return shadow_mark_rows(ac, &ac->sim->osh[lt], b->lo, n, b->len, n > 1 ? b->stride : 0,
                            write, ac->s % 3, MLIP_OCM_GRANULE, (int)(ac->sim->tile0 + lt));
}

static int batch_add(const acc_ctx *ac, uint32_t lt, mark_batch *b, uint64_t lo, uint64_t hi,
                     int write)
{
    uint64_t len = hi - lo;
    if (b->n == 1 && len == b->len && lo >= b->lo + len) {
        b->stride = lo - b->lo;
        b->n = 2;
        return MLIP_OK;
    }
    if (b->n >= 2 && len == b->len && lo == b->lo + b->n * b->stride) {
        b->n++;
        return MLIP_OK;
    }
    TRY(batch_flush(ac, lt, b, write));
    b->lo = lo;
    b->len = len;
    b->n = 1;
    return MLIP_OK;
}

/* check + record the accesses to a 4-D box of tile lt's OCM (dims and strides in elements of
 * es bytes); rows that follow each other in memory are marked as one range */
static int ocm_mark_box(const acc_ctx *ac, uint32_t lt, uint64_t base, const uint64_t *dim,
                        const uint64_t *st, uint64_t es, int write)
{
    uint64_t run_lo = 0, run_hi = 0;
    mark_batch b = {0, 0, 0, 0};
    /* rows of the innermost loop that continue each other: one row of dim[2] * dim[3] (the
     * run below would join them anyway) */
    uint64_t d2 = dim[2], d3 = dim[3];
    if (st[3] == 1 && st[2] == dim[3]) {
        d3 = dim[2] * dim[3];
        d2 = dim[2] != 0;
    }
    for (uint64_t i0 = 0; i0 < dim[0]; i0++) {
        for (uint64_t i1 = 0; i1 < dim[1]; i1++) {
            for (uint64_t i2 = 0; i2 < d2; i2++) {
                uint64_t row = base + (i0 * st[0] + i1 * st[1] + i2 * st[2]) * es;
                if (st[3] == 1) {
                    uint64_t hi = row + d3 * es;
                    if (run_hi > run_lo && row == run_hi) {
                        run_hi = hi;
                        continue;
                    }
                    if (run_hi > run_lo) TRY(batch_add(ac, lt, &b, run_lo, run_hi, write));
                    run_lo = row;
                    run_hi = hi;
                    continue;
                }
                if (run_hi > run_lo) {
                    TRY(batch_add(ac, lt, &b, run_lo, run_hi, write));
                    run_lo = run_hi = 0;
                }
                for (uint64_t i3 = 0; i3 < dim[3]; i3++) {
                    uint64_t p = row + i3 * st[3] * es;
                    TRY(batch_add(ac, lt, &b, p, p + es, write));
                }
            }
        }
    }
    if (run_hi > run_lo) TRY(batch_add(ac, lt, &b, run_lo, run_hi, write));
    return batch_flush(ac, lt, &b, write);
}

/* TILE_COPY: gather the source box of tile lt, then write it into the destination box of every
 * tile of the mask (so a local copy whose boxes overlap reads the old bytes only) */
static int exec_tcopy(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                      cost *c)
{
    scratch *scr = ac->w;
    const uint32_t *a = in->arg;
    uint64_t es = DT_SIZE[in->src_dtype];
    uint64_t dim[4], ss[4], ds[4];
    for (int d = 0; d < 4; d++) {
        dim[d] = a[MLIP_TCOPY_DIM0 + d];
        ss[d] = a[MLIP_TCOPY_SRC_STRIDE0 + d];
        ds[d] = a[MLIP_TCOPY_DST_STRIDE0 + d];
    }
    uint64_t src = a[MLIP_TCOPY_SRC_ADDR], dst = a[MLIP_TCOPY_DST_ADDR];
    uint32_t mask = a[MLIP_TCOPY_DST_TILE_MASK];
    if (sim->deps_now) {
        TRY(ocm_mark_box(ac, lt, src, dim, ss, es, 0));
        for (uint32_t t = 0; t < sim->ntiles; t++) {
            if (mask >> t & 1) TRY(ocm_mark_box(ac, t, dst, dim, ds, es, 1));
        }
    }
    uint64_t bytes = dim[0] * dim[1] * dim[2] * dim[3] * es;
    uint64_t src_end = src + box_extent(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_SRC_STRIDE0, es);
    uint64_t dst_end = dst + box_extent(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_DST_STRIDE0, es);
    if (!(mask >> lt & 1) || src_end <= dst || dst_end <= src) {
        /* no destination overlaps the source: each written straight from it (the same
         * element order, so the same bytes where a box writes a place twice).  A run of
         * bytes kept from the DRAM weights (wkeep) makes a kept piece of its destination;
         * a destination already holding the same kept bytes is left as it is (the write
         * would change nothing: no copy, and what is known of its bytes stays true) */
        uint64_t kept = 0, dest_kept;
        tile_lock(sim, lt);
        const int from_kept = bytes != 0 && box_is_run(a + MLIP_TCOPY_DIM0,
                                                        a + MLIP_TCOPY_SRC_STRIDE0) &&
                              box_is_run(a + MLIP_TCOPY_DIM0, a + MLIP_TCOPY_DST_STRIDE0) &&
                              wkeep_covers(sim, lt, src, src + bytes, &kept);
        tile_unlock(sim, lt);
        for (uint32_t t = 0; t < sim->ntiles; t++) {
            if (!(mask >> t & 1)) continue;
            tile_lock(sim, t);
            const int holds = from_kept && wkeep_covers(sim, t, dst, dst + bytes, &dest_kept) &&
                              dest_kept == kept;
            tile_unlock(sim, t);
            if (holds) continue;
            if (bytes != 0) {
                dma_copy_box(sim->ocm[t] + dst, sim->ocm[lt] + src, dim, ss, ds, (uint32_t)es,
                             0);
            }
            prep_invalidate(sim, ac->w, t, dst, dst_end);
            if (from_kept) {
                tile_lock(sim, t);
                wkeep_add(sim, t, dst, kept, bytes);
                tile_unlock(sim, t);
            }
        }
        c->engine = 4;
        c->link_bytes = bytes;
        c->link_mask = mask;
        return MLIP_OK;
    }
    TRY(ensure(sim, (void **)&scr->tbuf, &scr->tbuf_cap, (size_t)bytes));
    /* rows of the innermost loop that continue each other (stride = row) as one row */
    uint64_t row_bytes = dim[3] * es, k = 0;
    int src_joined = ss[3] == 1 && ss[2] == dim[3] && dim[2] != 0;
    int dst_joined = ds[3] == 1 && ds[2] == dim[3] && dim[2] != 0;
    for (uint64_t i0 = 0; i0 < dim[0]; i0++) {
        for (uint64_t i1 = 0; i1 < dim[1]; i1++) {
            if (src_joined) {
                memcpy(scr->tbuf + k, sim->ocm[lt] + src + (i0 * ss[0] + i1 * ss[1]) * es,
                       dim[2] * row_bytes);
                k += dim[2] * row_bytes;
                continue;
            }
            for (uint64_t i2 = 0; i2 < dim[2]; i2++, k += row_bytes) {
                const uint8_t *srow =
                    sim->ocm[lt] + src + (i0 * ss[0] + i1 * ss[1] + i2 * ss[2]) * es;
                if (ss[3] == 1) {
                    copy_row(scr->tbuf + k, srow, row_bytes);
                    continue;
                }
                for (uint64_t i3 = 0; i3 < dim[3]; i3++) {
                    memcpy(scr->tbuf + k + i3 * es, srow + i3 * ss[3] * es, es);
                }
            }
        }
    }
    for (uint32_t t = 0; t < sim->ntiles; t++) {
        if (!(mask >> t & 1)) continue;
        k = 0;
        for (uint64_t i0 = 0; i0 < dim[0]; i0++) {
            for (uint64_t i1 = 0; i1 < dim[1]; i1++) {
                if (dst_joined) {
                    memcpy(sim->ocm[t] + dst + (i0 * ds[0] + i1 * ds[1]) * es, scr->tbuf + k,
                           dim[2] * row_bytes);
                    k += dim[2] * row_bytes;
                    continue;
                }
                for (uint64_t i2 = 0; i2 < dim[2]; i2++, k += row_bytes) {
                    uint8_t *drow =
                        sim->ocm[t] + dst + (i0 * ds[0] + i1 * ds[1] + i2 * ds[2]) * es;
                    if (ds[3] == 1) {
                        copy_row(drow, scr->tbuf + k, row_bytes);
                        continue;
                    }
                    for (uint64_t i3 = 0; i3 < dim[3]; i3++) {
                        memcpy(drow + i3 * ds[3] * es, scr->tbuf + k + i3 * es, es);
                    }
                }
            }
        }
        prep_invalidate(sim, ac->w, t, dst, dst_end);
    }
    c->engine = 4;
    c->link_bytes = bytes;
    c->link_mask = mask;
    return MLIP_OK;
}

/* ---- scheduler ---------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) int
pops_ready(const run_ctx *rc, uint32_t s, const mlip_insn *in, uint64_t *tok_time)
{
    uint32_t lt = s / 3;
    int q = (int)(s % 3);
    uint64_t t = 0;
    if (in->flags & MLIP_F_POP_PREV) {
        const fifo *f = &rc->ch[lt][channel(q - 1, q)];
        if (f->count == 0) return 0;
        t = umax64(t, f->buf[f->head].time);
    }
    if (in->flags & MLIP_F_POP_NEXT) {
        const fifo *f = &rc->ch[lt][channel(q + 1, q)];
        if (f->count == 0) return 0;
        t = umax64(t, f->buf[f->head].time);
    }
    *tok_time = t;
    return 1;
}

/* the earliest start of stream s's next instruction, UINT64_MAX when it has none, it is a
 * BARRIER (started by the barrier rule) or a token it pops has not been pushed yet */
static uint64_t stream_candidate(const run_ctx *rc, uint32_t s)
{
    const stream_state *ss = &rc->st[s];
    if (ss->pc >= ss->n) return UINT64_MAX;
    const mlip_insn *in = &ss->insns[ss->pc];
    /* the instruction's arguments (its second cache line) are read when it runs, and the
     * stream's next instruction after that: fetch them while other streams run */
    __builtin_prefetch((const char *)in + 64);
    if (ss->pc + 1 < ss->n) {
        __builtin_prefetch(in + 1);
        __builtin_prefetch((const char *)(in + 1) + 64);
    }
    uint64_t tt;
    if (in->opcode == MLIP_OP_BARRIER || !pops_ready(rc, s, in, &tt)) return UINT64_MAX;
    return umax64(ss->ready, tt);
}

/* 1 if the stream's next instruction is a BARRIER */
static inline int at_barrier(const stream_state *ss)
{
    return ss->pc < ss->n && ss->insns[ss->pc].opcode == MLIP_OP_BARRIER;
}

static void do_pops(run_ctx *rc, uint32_t s, const mlip_insn *in)
{
    uint32_t lt = s / 3;
    int q = (int)(s % 3);
    for (int k = 0; k < 2; k++) {
        int flag = k == 0 ? MLIP_F_POP_PREV : MLIP_F_POP_NEXT;
        if (!(in->flags & flag)) continue;
        fifo *f = &rc->ch[lt][channel(k == 0 ? q - 1 : q + 1, q)];
        const token *tk = &f->buf[f->head];
        for (uint32_t i = 0; i < rc->ns && rc->deps; i++) {
            if (tk->vc[i] > rc->st[s].vc[i]) rc->st[s].vc[i] = tk->vc[i];
        }
        if (++f->head == f->cap) f->head = 0; /* no division per token */
        f->count--;
    }
}

static void do_pushes(run_ctx *rc, uint32_t s, const mlip_insn *in, uint64_t end)
{
    uint32_t lt = s / 3;
    int q = (int)(s % 3);
    for (int k = 0; k < 2; k++) {
        int flag = k == 0 ? MLIP_F_PUSH_PREV : MLIP_F_PUSH_NEXT;
        if (!(in->flags & flag)) continue;
        fifo *f = &rc->ch[lt][channel(q, k == 0 ? q - 1 : q + 1)];
        /* the load-time balance check guarantees count < cap here (and head < cap) */
        uint32_t at = f->head + f->count;
        token *tk = &f->buf[at >= f->cap ? at - f->cap : at];
        tk->time = end;
        if (rc->deps) memcpy(tk->vc, rc->st[s].vc, sizeof tk->vc);
        f->count++;
    }
}

static void account(mlip_sim *sim, run_ctx *rc, const mlip_insn *in, const cost *c,
                    uint64_t start, uint64_t end, int load)
{
    mlip_stats *st = rc->stats;
    st->instructions++;
    if (c->engine == 1) st->matrix_busy += c->cycles;
    if (c->engine == 2) st->vector_busy += c->cycles;
    if (c->int8) st->macs_int8 += c->macs; else st->macs_fp16 += c->macs;
    if (c->engine == 3) {
        if (load) st->dma_in_bytes += c->dram_bytes; else st->dma_out_bytes += c->dram_bytes;
    }
    uint64_t delivered = c->link_bytes * (uint64_t)__builtin_popcount(c->link_mask);
    st->tile_copy_bytes += delivered;
    if (in->layer == MLIP_LAYER_NONE || rc->section != MLIP_SEC_MAIN) return;
    mlip_layer_stats *l = &sim->lstats[in->layer];
    if (l->instructions == 0 || start < l->start) l->start = start;
    if (end > l->end) l->end = end;
    l->instructions++;
    if (c->int8) l->macs_int8 += c->macs; else l->macs_fp16 += c->macs;
    if (c->engine == 1) l->matrix_cycles += c->cycles;
    if (c->engine == 2) l->vector_cycles += c->cycles;
    if (c->engine == 3) {
        if (load) l->dma_in_bytes += c->dram_bytes; else l->dma_out_bytes += c->dram_bytes;
    }
    l->tile_copy_bytes += delivered;
}

/* one record of a traced run; records beyond the caller's capacity are only counted */
static void trace_add(mlip_sim *sim, const run_ctx *rc, uint32_t s, uint32_t index,
                      const mlip_insn *in, const cost *c, uint64_t ready, uint64_t start,
                      uint64_t end)
{
    uint64_t k = sim->trace_n++;
    if (k >= sim->trace_cap) return;
    mlip_trace_record *r = &sim->trace[k];
    r->ready = ready;
    r->start = start;
    r->end = end;
    r->busy = c->cycles;
    r->macs = c->macs;
    r->dram_bytes = c->dram_bytes;
    r->index = index;
    r->layer = in->layer;
    r->tile = (uint8_t)(sim->tile0 + s / 3);
    r->queue = (uint8_t)(s % 3);
    r->opcode = in->opcode;
    r->section = (uint8_t)rc->section;
    r->int8 = (uint8_t)(c->int8 != 0);
    r->reserved = 0;
}

/* bounding OCM byte range [lo, hi) an instruction writes; 0 if it writes no OCM */
static int insn_ocm_write(const mlip_insn *in, uint64_t *lo, uint64_t *hi)
{
    const uint32_t *a = in->arg;
    uint64_t oes = DT_SIZE[in->dst_dtype];
    switch (in->opcode) {
    case MLIP_OP_DMA_LOAD: {
        uint64_t ext = 0;
        for (int d = 0; d < 4; d++) {
            ext += (uint64_t)(a[MLIP_DMA_DIM0 + d] - 1) * a[MLIP_DMA_OCM_STRIDE0 + d];
        }
        *lo = a[MLIP_DMA_OCM_ADDR];
        *hi = *lo + (ext + 1) * oes;
        return 1;
    }
    case MLIP_OP_CONV:
        *lo = a[MLIP_CONV_OUT_ADDR];
        *hi = *lo + extent2((uint64_t)a[MLIP_CONV_OH] * a[MLIP_CONV_OW], a[MLIP_CONV_OC],
                            a[MLIP_CONV_OUT_PIX_STRIDE], oes);
        return 1;
    case MLIP_OP_GEMM:
        *lo = a[MLIP_GEMM_OUT_ADDR];
        *hi = *lo + extent2(a[MLIP_GEMM_M], a[MLIP_GEMM_N], a[MLIP_GEMM_OUT_ROW_STRIDE], oes);
        return 1;
    case MLIP_OP_POOL:
        *lo = a[MLIP_POOL_OUT_ADDR];
        *hi = *lo + extent2((uint64_t)a[MLIP_POOL_OH] * a[MLIP_POOL_OW], a[MLIP_POOL_C],
                            a[MLIP_POOL_OUT_PIX_STRIDE], oes);
        return 1;
    case MLIP_OP_ELTWISE:
        *lo = a[MLIP_ELT_OUT_ADDR];
        *hi = *lo + extent2(a[MLIP_ELT_ROWS], a[MLIP_ELT_COLS], a[MLIP_ELT_OUT_ROW_STRIDE], oes);
        return 1;
    case MLIP_OP_ACT:
    case MLIP_OP_CONVERT:
    case MLIP_OP_COPY:
    case MLIP_OP_SOFTMAX:
    case MLIP_OP_LAYERNORM:
        *lo = a[MLIP_VEC_OUT_ADDR];
        *hi = *lo + extent2(a[MLIP_VEC_ROWS], a[MLIP_VEC_COLS], a[MLIP_VEC_OUT_ROW_STRIDE], oes);
        return 1;
    default:
        return 0;
    }
}

/* An instruction's effect (no timing): its accesses checked (deps_now), its writes to OCM
 * or DRAM, and what the tables know of the bytes it writes.  *c gets its cost.  Safe on a
 * tile-parallel run's threads: the shared tables change under their locks, and everything else it
 * writes is its own tile's (or, for TILE_COPY, bytes no other tile touches before the next
 * barrier: see run_replay). */
static int exec_effect(mlip_sim *sim, const acc_ctx *ac, uint32_t lt, const mlip_insn *in,
                       cost *c)
{
    const mlip_machine *p = &sim->m;
    wkeep_gaps keep;
    keep.use = 0;
    if (in->opcode == MLIP_OP_DMA_LOAD) {
        tile_lock(sim, lt);
        wkeep_plan(sim, lt, in, &keep);
        tile_unlock(sim, lt);
    }
    uint64_t wlo = 0, whi = 0;
    int writes_ocm = insn_ocm_write(in, &wlo, &whi);
    if (writes_ocm) {
        prep_invalidate(sim, ac->w, lt, wlo, whi);
    }
    int rcode = MLIP_OK;
    switch (in->opcode) {
    case MLIP_OP_DMA_LOAD:
    case MLIP_OP_DMA_STORE: rcode = exec_dma(sim, ac, lt, in, c, &keep); break;
    case MLIP_OP_CONV:
    case MLIP_OP_GEMM: rcode = exec_conv(sim, ac, lt, in, p, c); break;
    case MLIP_OP_POOL: rcode = exec_pool(sim, ac, lt, in, p, c); break;
    case MLIP_OP_ELTWISE: rcode = exec_elt(sim, ac, lt, in, p, c); break;
    case MLIP_OP_ACT:
    case MLIP_OP_CONVERT:
    case MLIP_OP_COPY: rcode = exec_vec(sim, ac, lt, in, p, c); break;
    case MLIP_OP_TILE_COPY: rcode = exec_tcopy(sim, ac, lt, in, c); break;
    case MLIP_OP_SOFTMAX:
    case MLIP_OP_LAYERNORM: rcode = exec_rownorm(sim, ac, lt, in, p, c); break;
    default: break;
    }
    /* again after the writes: a CONV whose output overlaps its own input block has just
     * cached the converted input, which its writes made stale (only CONV and GEMM fill the
     * caches prep_invalidate clears) */
    if (writes_ocm && (in->opcode == MLIP_OP_CONV || in->opcode == MLIP_OP_GEMM)) {
        prep_invalidate(sim, ac->w, lt, wlo, whi);
    }
    if (rcode != MLIP_OK) return rcode;
    if (in->opcode == MLIP_OP_DMA_LOAD || in->opcode == MLIP_OP_TILE_COPY) {
        wprov_note_copy(sim, lt, in);
        if (in->opcode == MLIP_OP_DMA_LOAD) {
            tile_lock(sim, lt);
            wkeep_note(sim, lt, in);
            tile_unlock(sim, lt);
        }
    }
    return MLIP_OK;
}

/* append one executed instruction (global index, stream) to the schedule being recorded;
 * out of memory only stops the recording */
static void plan_add(sec_plan *pl, uint32_t idx, uint32_t s)
{
    if (!pl->recording) return;
    if (pl->n == pl->cap) {
        uint32_t cap = pl->cap ? 2 * pl->cap : 256;
        uint32_t *i2 = realloc(pl->idx, (size_t)cap * sizeof *i2);
        if (i2 != NULL) pl->idx = i2;
        uint8_t *s2 = i2 == NULL ? NULL : realloc(pl->stream, (size_t)cap);
        if (s2 != NULL) pl->stream = s2;
        if (i2 == NULL || s2 == NULL) {
            pl->recording = 0;
            return;
        }
        pl->cap = cap;
    }
    pl->idx[pl->n] = idx;
    pl->stream[pl->n] = (uint8_t)s;
    pl->n++;
}

/* a barrier ends the recorded schedule's current epoch */
static void plan_barrier(sec_plan *pl)
{
    if (!pl->recording) return;
    if (pl->nep + 1 >= pl->ep_cap) {
        uint32_t cap = pl->ep_cap ? 2 * pl->ep_cap : 64;
        uint32_t *e2 = realloc(pl->ep_end, (size_t)cap * sizeof *e2);
        if (e2 == NULL) {
            pl->recording = 0;
            return;
        }
        pl->ep_end = e2;
        pl->ep_cap = cap;
    }
    pl->ep_end[pl->nep++] = pl->n;
}

static int exec_one(mlip_sim *sim, run_ctx *rc, uint32_t s, uint64_t start)
{
    stream_state *ss = &rc->st[s];
    const mlip_insn *in = &ss->insns[ss->pc];
    const mlip_machine *p = &sim->m;
    uint32_t lt = s / 3;
    int q = (int)(s % 3);
    do_pops(rc, s, in);
    uint32_t seq = rc->base0[s] + ss->pc + 1;
    ss->vc[s] = seq;
    acc_ctx ac = {sim, rc, s, seq, op_name(in->opcode), &sim->scr[0]};
    cost c = {0, 0, 0, 0, 0, 0, 0};
    int rcode = exec_effect(sim, &ac, lt, in, &c);
    if (rcode != MLIP_OK) return rcode;
    if (rc->plan != NULL && in->opcode != MLIP_OP_NOP) { /* a NOP has no effect to replay */
        plan_add(rc->plan, ss->first + ss->pc, s);
    }
    uint64_t end;
    if (c.engine == 3) {
        uint64_t t0 = start + p->issue_latency + p->dma_latency;
        uint64_t xfer = umax64(t0, rc->dram_free);
        uint64_t dram_cycles = rate_cdiv(c.dram_bytes, p->dram_bytes_per_cycle);
        double dma_rate = (double)p->dma_bytes_per_cycle < p->dram_bytes_per_cycle
                              ? (double)p->dma_bytes_per_cycle : p->dram_bytes_per_cycle;
        rc->dram_free = xfer + dram_cycles;
        rc->stats->dram_busy += dram_cycles;
        end = xfer + rate_cdiv(c.dram_bytes, dma_rate);
    } else if (c.engine == 4) {
        /* the box crosses the tile link once (multicast); it waits until the ingress port of
         * every destination tile is free and holds each for bytes / link rate cycles */
        uint64_t xfer = start + p->issue_latency + p->link_latency;
        for (uint32_t t = 0; t < sim->ntiles; t++) {
            if (c.link_mask >> t & 1) xfer = umax64(xfer, rc->link_free[t]);
        }
        uint64_t link_cycles = cdiv(c.link_bytes, p->link_bytes_per_cycle);
        for (uint32_t t = 0; t < sim->ntiles; t++) {
            if (c.link_mask >> t & 1) rc->link_free[t] = xfer + link_cycles;
        }
        end = xfer + link_cycles;
    } else {
        end = start + p->issue_latency + c.cycles;
    }
    rc->stats->stall[q] += start - ss->ready;
    if (sim->tracing) trace_add(sim, rc, s, ss->pc, in, &c, ss->ready, start, end);
    ss->ready = end;
    ss->pc++;
    do_pushes(rc, s, in, end);
    account(sim, rc, in, &c, start, end, in->opcode == MLIP_OP_DMA_LOAD);
    if (end > rc->end) rc->end = end;
    return MLIP_OK;
}

/* the first smallest candidate among tile lt's three streams: *start (UINT64_MAX if none
 * can start) and its stream *best */
static inline void tile_first_min(const uint64_t *cand, uint32_t lt, uint64_t *start,
                                  uint32_t *best)
{
    const uint32_t s = lt * 3;
    uint64_t v = cand[s];
    uint32_t b = s;
    if (cand[s + 1] < v) v = cand[s + 1], b = s + 1;
    if (cand[s + 2] < v) v = cand[s + 2], b = s + 2;
    *start = v;
    *best = b;
}

/* at a section start: every reader memo into the shadows (see shadow) */
static void shadows_flush(mlip_sim *sim)
{
    for (uint32_t t = 0; t < sim->ntiles; t++) {
        for (uint32_t k = 0; k < sim->osh[t].nr; k++) shadow_flush(&sim->osh[t], k);
    }
    for (int r = 0; r < 2; r++) {
        for (uint32_t k = 0; k < sim->dsh[r].nr; k++) shadow_flush(&sim->dsh[r], k);
    }
}

/* Make the recorded schedule usable: its last epoch closed, its positions grouped by epoch
 * and tile, its end state kept.  The recording is dropped when out of memory. */
static void plan_finish(mlip_sim *sim, sec_plan *pl, int section, const mlip_stats *stats,
                        uint64_t t_end)
{
    plan_barrier(pl);
    const uint32_t nt = sim->ntiles;
    if (pl->recording) {
        free(pl->by_tile);
        free(pl->tile_end);
        free(pl->lstats);
        pl->by_tile = malloc((size_t)(pl->n ? pl->n : 1) * sizeof(uint32_t));
        pl->tile_end = malloc((size_t)pl->nep * nt * sizeof(uint32_t));
        pl->lstats = NULL;
        if (section == MLIP_SEC_MAIN && sim->num_layers != 0) {
            pl->lstats = malloc((size_t)sim->num_layers * sizeof(mlip_layer_stats));
        }
        if (pl->by_tile == NULL || pl->tile_end == NULL ||
            (section == MLIP_SEC_MAIN && sim->num_layers != 0 && pl->lstats == NULL)) {
            pl->recording = 0;
        }
    }
    if (!pl->recording) return;
    /* a counting sort of each epoch's positions by tile (stable: schedule order kept) */
    uint32_t at = 0;
    for (uint32_t e = 0; e < pl->nep; e++) {
        uint32_t first = e == 0 ? 0 : pl->ep_end[e - 1], end = pl->ep_end[e];
        uint32_t count[MLIP_MAX_TILES] = {0};
        for (uint32_t k = first; k < end; k++) count[pl->stream[k] / 3]++;
        uint32_t put[MLIP_MAX_TILES];
        for (uint32_t t = 0; t < nt; t++) {
            put[t] = at;
            at += count[t];
            pl->tile_end[e * nt + t] = at;
        }
        for (uint32_t k = first; k < end; k++) pl->by_tile[put[pl->stream[k] / 3]++] = k;
    }
    if (pl->lstats != NULL) {
        memcpy(pl->lstats, sim->lstats, (size_t)sim->num_layers * sizeof(mlip_layer_stats));
    }
    pl->out = *stats;
    pl->t_end = t_end;
    pl->recording = 0;
    pl->valid = 1;
}

static int run_schedule(mlip_sim *sim, int section, uint64_t t_start, mlip_stats *stats,
                        uint64_t *t_end)
{
    run_ctx *rc = calloc(1, sizeof(run_ctx));
    if (rc == NULL) return fail(sim, MLIP_ERR_NOMEM, "out of memory");
    int status = MLIP_OK;
    sec_plan *pl = &sim->plan[section];
    if (section != MLIP_SEC_INIT && !pl->valid) {
        pl->recording = 1;
        pl->n = 0;
        pl->nep = 0;
        pl->t_start = t_start;
        pl->in = *stats;
        rc->plan = pl;
    }
    rc->section = section;
    rc->deps = sim->deps_now;
    rc->ns = sim->ntiles * 3;
    rc->stats = stats;
    rc->end = t_start;
    rc->dram_free = t_start;
    for (uint32_t t = 0; t < MLIP_MAX_TILES; t++) rc->link_free[t] = t_start;
    memcpy(rc->base0, sim->base, sizeof rc->base0);
    shadows_flush(sim);
    for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
        for (int q = 0; q < 3; q++) {
            const mlip_stream *ms = &sim->info.streams[section][sim->tile0 + lt][q];
            stream_state *ss = &rc->st[lt * 3 + q];
            ss->insns = sim->code + ms->first;
            ss->first = ms->first;
            ss->n = ms->count;
            ss->ready = t_start;
            /* a section starts after everything before it: its clock covers all of it */
            memcpy(ss->vc, sim->base, sizeof ss->vc);
        }
        for (int c = 0; c < NCH; c++) {
            uint32_t cap = sim->pushes[section][sim->tile0 + lt][c];
            rc->ch[lt][c].cap = cap;
            if (cap > 0) {
                rc->ch[lt][c].buf = malloc((size_t)cap * sizeof(token));
                if (rc->ch[lt][c].buf == NULL) {
                    status = fail(sim, MLIP_ERR_NOMEM, "out of memory (token queues)");
                    goto done;
                }
            }
        }
    }
    /* each stream's earliest start (UINT64_MAX: finished, at a BARRIER or waiting for a
     * token), recomputed only for the streams an executed instruction can change */
    uint64_t cand[NS_MAX];
    uint32_t live = 0; /* streams with instructions left */
    for (uint32_t s = 0; s < rc->ns; s++) {
        cand[s] = stream_candidate(rc, s);
        live += rc->st[s].pc < rc->st[s].n;
    }
    /* per tile, the first smallest of its streams' candidates (an instruction changes only
     * its own tile's): the first smallest over all streams is the first smallest of these */
    uint64_t tile_start[MLIP_MAX_TILES];
    uint32_t tile_best[MLIP_MAX_TILES];
    for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
        tile_first_min(cand, lt, &tile_start[lt], &tile_best[lt]);
    }
    /* compute streams whose next instruction is a BARRIER: the barrier rule is looked at
     * only when it is every tile's */
    uint32_t at_bar = 0;
    for (uint32_t lt = 0; lt < sim->ntiles; lt++) at_bar += at_barrier(&rc->st[lt * 3 + 1]);
    for (;;) {
        if (live == 0) break;
        /* the first smallest (the lower stream on a tie) over the tiles' first smallest */
        int64_t best = -1;
        uint64_t best_start = UINT64_MAX;
        for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
            const int less = tile_start[lt] < best_start;
            best_start = less ? tile_start[lt] : best_start;
            best = less ? (int64_t)tile_best[lt] : best;
        }
        /* barrier: every tile's compute queue at a BARRIER with its tokens available */
        int bar_ready = at_bar == sim->ntiles;
        uint64_t bar_start = 0;
        for (uint32_t lt = 0; lt < sim->ntiles && bar_ready; lt++) {
            stream_state *ss = &rc->st[lt * 3 + 1];
            uint64_t tt;
            if (ss->pc >= ss->n || ss->insns[ss->pc].opcode != MLIP_OP_BARRIER ||
                !pops_ready(rc, lt * 3 + 1, &ss->insns[ss->pc], &tt)) {
                bar_ready = 0;
                break;
            }
            bar_start = umax64(bar_start, umax64(ss->ready, tt));
        }
        if (best >= 0 && (!bar_ready || best_start <= bar_start)) {
            status = exec_one(sim, rc, (uint32_t)best, best_start);
            if (status != MLIP_OK) goto done;
            /* it moved its own stream and may have pushed tokens to its neighbours */
            uint32_t b = (uint32_t)best, q = b % 3;
            live -= rc->st[b].pc == rc->st[b].n;
            if (q == 1) at_bar += at_barrier(&rc->st[b]); /* it ran no BARRIER itself */
            cand[b] = stream_candidate(rc, b);
            if (q > 0) cand[b - 1] = stream_candidate(rc, b - 1);
            if (q < 2) cand[b + 1] = stream_candidate(rc, b + 1);
            tile_first_min(cand, b / 3, &tile_start[b / 3], &tile_best[b / 3]);
            continue;
        }
        if (bar_ready) {
            uint32_t merged[NS_MAX] = {0};
            for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
                uint32_t s = lt * 3 + 1;
                do_pops(rc, s, &rc->st[s].insns[rc->st[s].pc]);
                for (uint32_t i = 0; i < rc->ns; i++) {
                    if (rc->st[s].vc[i] > merged[i]) merged[i] = rc->st[s].vc[i];
                }
            }
            uint64_t end = bar_start + sim->m.issue_latency + sim->m.barrier_latency;
            for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
                uint32_t s = lt * 3 + 1;
                stream_state *ss = &rc->st[s];
                const mlip_insn *in = &ss->insns[ss->pc];
                memcpy(ss->vc, merged, sizeof merged);
                ss->vc[s] = rc->base0[s] + ss->pc + 1;
                stats->stall[1] += bar_start - ss->ready;
                cost c = {0, 0, 0, 0, 0, 0, 0};
                if (sim->tracing) {
                    trace_add(sim, rc, s, ss->pc, in, &c, ss->ready, bar_start, end);
                }
                ss->ready = end;
                ss->pc++;
                live -= ss->pc == ss->n;
                do_pushes(rc, s, in, end);
                account(sim, rc, in, &c, bar_start, end, 0);
            }
            if (end > rc->end) rc->end = end;
            if (rc->plan != NULL) plan_barrier(rc->plan);
            for (uint32_t k = 0; k < rc->ns; k++) cand[k] = stream_candidate(rc, k);
            at_bar = 0;
            for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
                at_bar += at_barrier(&rc->st[lt * 3 + 1]);
                tile_first_min(cand, lt, &tile_start[lt], &tile_best[lt]);
            }
            continue;
        }
        /* deadlock */
        char buf[512];
        size_t used = 0;
        buf[0] = 0;
        for (uint32_t s = 0; s < rc->ns && used + 80 < sizeof buf; s++) {
            stream_state *ss = &rc->st[s];
            if (ss->pc >= ss->n) continue;
            char d[128];
            describe(sim, rc, s, rc->base0[s] + ss->pc + 1, d, sizeof d);
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", used ? "; " : "", d);
        }
        status = fail(sim, MLIP_ERR_RUN,
                      "deadlock: no queue can proceed; waiting for tokens or a barrier: %s", buf);
        goto done;
    }
    *t_end = rc->end;
    if (rc->plan != NULL) plan_finish(sim, rc->plan, section, stats, rc->end);
done:
    if (rc->plan != NULL) rc->plan->recording = 0;
    /* advance the sequence bases even after an error: whatever a failed section wrote
     * then counts as an earlier inference's (stale) data */
    for (uint32_t i = 0; i < rc->ns; i++) {
        sim->base[i] += rc->st[i].n;
    }
    for (uint32_t lt = 0; lt < MLIP_MAX_TILES; lt++) {
        for (int c = 0; c < NCH; c++) free(rc->ch[lt][c].buf);
    }
    free(rc);
    return status;
}

/* one instruction of a replayed schedule, on the thread whose buffers are w */
static int replay_one(mlip_sim *sim, scratch *w, const sec_plan *pl, uint32_t k)
{
    const mlip_insn *in = &sim->code[pl->idx[k]];
    const uint32_t s = pl->stream[k];
    acc_ctx ac = {sim, NULL, s, 0, op_name(in->opcode), w};
    cost c = {0, 0, 0, 0, 0, 0, 0};
    return exec_effect(sim, &ac, s / 3, in, &c);
}

/* one epoch of a tile-parallel replay: part k runs the instructions of its share of
 * tiles[] (neighbouring tiles: those exchange the halos and partial results of a layer, so
 * most TILE_COPYs stay within one core's caches; the same tiles on the same part every
 * epoch, so a tile's OCM stays there too while the workers keep up) */
typedef struct replay_job {
    mlip_sim *sim;
    const sec_plan *pl;
    uint32_t epoch;
    uint32_t ntiles;  /* tiles with instructions in this epoch */
    uint32_t parts;
    uint32_t tiles[MLIP_MAX_TILES];
    int status; /* the first error (under msg_mu), MLIP_OK if none */
} replay_job;

static void replay_part(void *ctx, int64_t part, uint32_t thread)
{
    replay_job *j = ctx;
    mlip_sim *sim = j->sim;
    const sec_plan *pl = j->pl;
    scratch *w = &sim->scr[thread];
    w->nested = 1;
    const uint32_t lo = (uint32_t)part * j->ntiles / j->parts;
    const uint32_t hi = ((uint32_t)part + 1) * j->ntiles / j->parts;
    for (uint32_t i = lo; i < hi; i++) {
        const uint32_t at = j->epoch * sim->ntiles + j->tiles[i];
        const uint32_t first = at == 0 ? 0 : pl->tile_end[at - 1];
        for (uint32_t k = first; k < pl->tile_end[at]; k++) {
            int rc = replay_one(sim, w, pl, pl->by_tile[k]);
            if (rc != MLIP_OK) {
                pthread_mutex_lock(&sim->msg_mu);
                if (j->status == MLIP_OK) j->status = rc;
                pthread_mutex_unlock(&sim->msg_mu);
                w->nested = 0;
                return;
            }
        }
    }
    w->nested = 0;
}

/* Run a section by its recorded schedule: its instructions' effects, in the recorded order,
 * then the recorded cycles and statistics.
 * On one thread, in schedule order.  With worker threads, once the dependency rule has been
 * checked on two inferences in a row (so the program is free of races: every two accesses to
 * the same bytes, one a write, are ordered by tokens or barriers), epoch by epoch: between two
 * barriers only tokens order instructions, and tokens join the queues of one tile, so two
 * tiles' instructions of one epoch never touch the same bytes where one writes them.  Each
 * tile's instructions of the epoch run in their recorded order on one thread, tiles on any
 * thread: every byte gets the value the one-thread order gives it.  The converted-input
 * caches are emptied at every barrier: within an epoch only the thread running a tile writes
 * bytes that tile's cached input came from. */
static int run_replay(mlip_sim *sim, int section, const sec_plan *pl)
{
    shadows_flush(sim);
    const int parallel = sim->pool.n > 0 && sim->p.check_deps && sim->clean_runs >= 2;
    if (section == MLIP_SEC_MAIN) {
        sim->run_mode = parallel ? MLIP_RUN_TILE_THREADS : MLIP_RUN_REPLAYED;
    }
    if (!parallel) {
        for (uint32_t k = 0; k < pl->n; k++) TRY(replay_one(sim, &sim->scr[0], pl, k));
        return MLIP_OK;
    }
    const uint32_t nt = sim->ntiles;
    const uint32_t threads = sim->pool.n + 1;
    replay_job job;
    job.sim = sim;
    job.pl = pl;
    job.status = MLIP_OK;
    sim->par = 1;
    for (uint32_t e = 0; e < pl->nep && job.status == MLIP_OK; e++) {
        for (uint32_t t = 0; t < threads; t++) sim->scr[t].xcache.valid = 0;
        uint32_t busy = 0;
        for (uint32_t t = 0; t < nt; t++) {
            const uint32_t at = e * nt + t, first = at == 0 ? 0 : pl->tile_end[at - 1];
            if (pl->tile_end[at] > first) job.tiles[busy++] = t;
        }
        job.epoch = e;
        job.ntiles = busy;
        job.parts = busy < threads ? busy : threads;
        if (busy == 0) continue;
        if (busy == 1) { /* one tile: on this thread, whose big CONVs may use the workers */
            sim->par = 0;
            const uint32_t at = e * nt + job.tiles[0], first = at == 0 ? 0 : pl->tile_end[at - 1];
            for (uint32_t k = first; k < pl->tile_end[at] && job.status == MLIP_OK; k++) {
                job.status = replay_one(sim, &sim->scr[0], pl, pl->by_tile[k]);
            }
            sim->par = 1;
            continue;
        }
        pool_run(&sim->pool, replay_part, &job, job.parts, 1);
    }
    sim->par = 0;
    for (uint32_t t = 0; t < threads; t++) sim->scr[t].xcache.valid = 0;
    return job.status;
}

/* One section: by its recorded schedule when there is one and neither the dependency rule
 * nor a trace needs the scheduler, else scheduled (and recorded, the first time). */
static int run_section(mlip_sim *sim, int section, uint64_t t_start, mlip_stats *stats,
                       uint64_t *t_end)
{
    const sec_plan *pl = &sim->plan[section];
    if (section == MLIP_SEC_INIT || !pl->valid || sim->deps_now || sim->tracing ||
        pl->t_start != t_start || memcmp(&pl->in, stats, sizeof *stats) != 0) {
        if (section == MLIP_SEC_MAIN) sim->run_mode = MLIP_RUN_SCHEDULED;
        return run_schedule(sim, section, t_start, stats, t_end);
    }
    int status = run_replay(sim, section, pl);
    /* the sequence bases advance as a scheduled run advances them (even after an error) */
    for (uint32_t lt = 0; lt < sim->ntiles; lt++) {
        for (int q = 0; q < 3; q++) {
            sim->base[lt * 3 + q] += sim->info.streams[section][sim->tile0 + lt][q].count;
        }
    }
    if (status != MLIP_OK) return status;
    *stats = pl->out;
    if (pl->lstats != NULL) {
        memcpy(sim->lstats, pl->lstats, (size_t)sim->num_layers * sizeof(mlip_layer_stats));
    }
    *t_end = pl->t_end;
    return MLIP_OK;
}

/* ---- API ------------------------------------------------------------------------------------ */
void mlip_default_params(mlip_params *p)
{
    if (p == NULL) return;
    p->check_deps = 1;
    p->portable = 0;
    p->no_avx512 = 0;
    p->threads = 1;
    p->max_insn_work = (uint64_t)1 << 34;
    p->max_dram_bytes = (uint64_t)1 << 31;
}

static void shadow_free(shadow *sh)
{
    free(sh->w);
    free(sh->ws);
    for (uint32_t k = 0; k < MLIP_MAX_TILES; k++) {
        free(sh->r[k]);
        free(sh->bm[k]);
    }
    memset(sh, 0, sizeof *sh);
}

/* allocate `n` granules with `nr` reader slots; returns 0 when out of memory */
static int shadow_alloc(shadow *sh, uint64_t n, uint64_t base, uint32_t nr,
                        const uint32_t *rstream)
{
    sh->n = n;
    sh->base = base;
    sh->nr = nr;
    sh->w = calloc((size_t)n, sizeof(uint32_t));
    sh->ws = calloc((size_t)n, 1);
    int ok = sh->w != NULL && sh->ws != NULL;
    for (uint32_t k = 0; k < nr; k++) {
        sh->rstream[k] = rstream[k];
        sh->r[k] = calloc((size_t)n, sizeof(uint32_t));
        sh->bm[k] = calloc((size_t)(n >> 6) + 1, sizeof(uint32_t));
        ok = ok && sh->r[k] != NULL && sh->bm[k] != NULL;
    }
    return ok;
}

void mlip_sim_free(mlip_sim *sim)
{
    if (sim == NULL) return;
    pool_stop(sim);
    for (int t = 0; t < MLIP_MAX_TILES; t++) {
        free(sim->ocm[t]);
        shadow_free(&sim->osh[t]);
    }
    for (uint32_t k = 0; k < sim->wc_n; k++) {
        free(sim->wc[k]->raw);
        free(sim->wc[k]->buf);
        free(sim->wc[k]);
    }
    free(sim->wc);
    for (int k = 0; k < MLIP_NUM_SECTIONS; k++) {
        sec_plan *pl = &sim->plan[k];
        free(pl->idx);
        free(pl->stream);
        free(pl->ep_end);
        free(pl->by_tile);
        free(pl->tile_end);
        free(pl->lstats);
    }
    shadow_free(&sim->dsh[0]);
    shadow_free(&sim->dsh[1]);
    free(sim->dram);
    free(sim->code);
    free(sim->layers);
    free(sim->lstats);
    for (int k = 0; k < MLIP_MAX_THREADS; k++) {
        scratch *w = &sim->scr[k];
        free(w->fbuf);
        free(w->wbuf);
        free(w->wconv);
        free(w->xcache.buf);
        free(w->ibuf);
        free(w->iwbuf);
        free(w->tbuf);
    }
    free(sim);
}

static void set_msg(mlip_sim *sim, char *msg, size_t msg_size)
{
    sim->msg = msg;
    sim->msg_size = msg_size;
    if (msg != NULL && msg_size > 0) msg[0] = 0;
}

int mlip_sim_load(mlip_sim **out, const uint8_t *data, size_t size, const mlip_params *params,
                  char *msg, size_t msg_size)
{
    if (msg != NULL && msg_size > 0) msg[0] = 0;
    if (out == NULL || (data == NULL && size > 0)) {
        if (msg != NULL && msg_size > 0) snprintf(msg, msg_size, "null argument");
        return MLIP_ERR_ARG;
    }
    *out = NULL;
    mlip_sim *sim = calloc(1, sizeof(mlip_sim));
    if (sim == NULL) {
        if (msg != NULL && msg_size > 0) snprintf(msg, msg_size, "out of memory");
        return MLIP_ERR_NOMEM;
    }
    set_msg(sim, msg, msg_size);
#if defined(__x86_64__)
    __builtin_cpu_init();
    sim->has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
#endif
    if (params != NULL) {
        sim->p = *params;
    } else {
        mlip_default_params(&sim->p);
    }
#if defined(__x86_64__)
    sim->has_avx512 = sim->has_avx2 && __builtin_cpu_supports("avx512f");
#endif
    if (sim->p.portable || sim->p.no_avx512) {
        sim->has_avx512 = 0;
    }
    if (sim->p.portable) {
        sim->has_avx2 = 0;
    }
    if (sim->p.threads > MLIP_MAX_THREADS) {
        int code = fail(sim, MLIP_ERR_ARG, "threads = %u, at most %d", sim->p.threads,
                        MLIP_MAX_THREADS);
        mlip_sim_free(sim);
        return code;
    }
    /* no more threads than the host has CPUs online: more would only take turns on them
     * (a spinning or woken worker then stalls the ones doing the work) */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t threads = sim->p.threads;
    if (cpus >= 1 && threads > (uint32_t)cpus) threads = (uint32_t)cpus;
    if (threads > 1 && !pool_start(sim, threads)) {
        int code = fail(sim, MLIP_ERR_NOMEM, "cannot start %u simulator threads", threads);
        mlip_sim_free(sim);
        return code;
    }
    int rc = validate_model(sim, data ? data : (const uint8_t *)"", size);
    if (rc != MLIP_OK) {
        mlip_sim_free(sim);
        return rc;
    }
    const mlip_model_info *m = &sim->info;
    sim->dram = calloc(sim->dram_size ? (size_t)sim->dram_size : 1, 1);
    sim->osh_n = sim->m.ocm_bytes / MLIP_OCM_GRANULE;
    int ok = sim->dram != NULL;
    for (uint32_t t = 0; t < sim->ntiles && ok; t++) {
        sim->ocm[t] = calloc(sim->m.ocm_bytes, 1);
        uint32_t queues[3] = {t * 3, t * 3 + 1, t * 3 + 2};
        ok = sim->ocm[t] != NULL && shadow_alloc(&sim->osh[t], sim->osh_n, 0, 3, queues);
    }
    uint64_t base[2] = {m->output_offset, m->scratch_offset};
    uint64_t sz[2] = {m->output_size, m->scratch_size};
    uint32_t dma_in[MLIP_MAX_TILES];
    for (uint32_t t = 0; t < sim->ntiles; t++) dma_in[t] = t * 3 + MLIP_Q_DMA_IN;
    for (int r = 0; r < 2 && ok; r++) {
        uint64_t gbase = base[r] / MLIP_DRAM_GRANULE * MLIP_DRAM_GRANULE;
        uint64_t n = sz[r] ? cdiv(base[r] + sz[r] - gbase, MLIP_DRAM_GRANULE) : 0;
        if (n != 0) {
            ok = shadow_alloc(&sim->dsh[r], n, gbase, sim->ntiles, dma_in);
        }
    }
    if (!ok) {
        rc = fail(sim, MLIP_ERR_NOMEM, "out of memory allocating DRAM (%llu bytes) and OCM",
                  (unsigned long long)sim->dram_size);
        mlip_sim_free(sim);
        return rc;
    }
    memcpy(sim->dram + m->weights_offset, data + sizeof(mlip_header) + sim->hdr.metadata_size +
                                              m->code_size, (size_t)m->weights_size);
    /* init section */
    mlip_stats st;
    memset(&st, 0, sizeof st);
    uint64_t end = 0;
    sim->deps_now = sim->p.check_deps != 0;
    rc = run_section(sim, MLIP_SEC_INIT, 0, &st, &end);
    if (rc != MLIP_OK) {
        mlip_sim_free(sim);
        return rc;
    }
    sim->stats.init_cycles = end;
    memcpy(sim->init_end, sim->base, sizeof sim->init_end);
    sim->msg = NULL;
    sim->msg_size = 0;
    *out = sim;
    return MLIP_OK;
}

#if MLIP_HAVE_AVX2_KERNEL
/* mlip_f32_to_f16 in one pass: 8 values are scanned for NaN and converted while in registers
 * (the conversion of f2h_row_f16c for blocks without NaN); 1 at the first NaN, with dst
 * partly written (the caller converts everything again then) */
__attribute__((target("avx2,f16c"))) static int f32_to_f16_f16c(const float *src,
                                                                  uint16_t *dst, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps(src + k);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) return 1;
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(void *)(dst + k), h);
    }
    for (; k < n; k++) {
        if (isnan(src[k])) return 1;
        dst[k] = f2h(src[k]);
    }
    return 0;
}
#endif

int mlip_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    if (src == NULL || dst == NULL) {
        return n == 0 ? 0 : 1;
    }
#if MLIP_HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        return f32_to_f16_f16c(src, dst, n);
    }
#endif
    /* block by block (scanned for NaN, then converted while the block is in L1: one pass
     * over a source the simulation has evicted from the caches) */
    enum { BLOCK = 2048 };
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t count = n - start < BLOCK ? n - start : BLOCK;
        uint32_t nan = 0; /* NaN payloads are the caller's (numpy keeps them) */
        for (size_t k = start; k < start + count; k++) {
            uint32_t bits;
            memcpy(&bits, src + k, 4);
            nan |= (bits & 0x7FFFFFFFu) > 0x7F800000u;
        }
        if (nan) {
            return 1;
        }
        for (size_t k = start; k < start + count; k++) dst[k] = f2h(src[k]);
    }
    return 0;
}

uint64_t mlip_count_nonfinite(const void *data, size_t n, uint32_t elem_bytes)
{
    if (data == NULL) return 0;
    uint64_t count = 0;
    if (elem_bytes == 2) {
        const uint8_t *p = data;
        for (size_t k = 0; k < n; k++) {
            uint16_t bits;
            memcpy(&bits, p + 2 * k, 2);
            count += (bits & 0x7C00u) == 0x7C00u;
        }
    } else if (elem_bytes == 4) {
        const uint8_t *p = data;
        for (size_t k = 0; k < n; k++) {
            uint32_t bits;
            memcpy(&bits, p + 4 * k, 4);
            count += (bits & 0x7F800000u) == 0x7F800000u;
        }
    }
    return count;
}

uint8_t *mlip_sim_dram(mlip_sim *sim, uint64_t *size)
{
    if (sim == NULL) return NULL;
    if (size != NULL) *size = sim->dram_size;
    sim->host_gen++; /* the host may now write the weights region */
    return sim->dram;
}

uint32_t mlip_sim_num_layers(const mlip_sim *sim) { return sim == NULL ? 0 : sim->num_layers; }

uint32_t mlip_sim_run_mode(const mlip_sim *sim) { return sim == NULL ? 0 : sim->run_mode; }

int mlip_sim_run(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                 uint32_t num_layers, char *msg, size_t msg_size)
{
    if (sim == NULL) return MLIP_ERR_ARG;
    set_msg(sim, msg, msg_size);
    if (num_layers != 0 && num_layers != sim->num_layers) {
        return fail(sim, MLIP_ERR_ARG, "layer stats buffer holds %u entries, model has %u",
                    num_layers, sim->num_layers);
    }
    mlip_stats st;
    memset(&st, 0, sizeof st);
    memset(sim->lstats, 0, (sim->num_layers ? sim->num_layers : 1) * sizeof(mlip_layer_stats));
    for (uint32_t i = 0; i < NS_MAX; i++) {
        if (sim->base[i] > UINT32_MAX - 2u * MLIP_MAX_INSNS_PER_STREAM) {
            return fail(sim, MLIP_ERR_RUN, "too many inferences on one handle; load it again");
        }
    }
    memcpy(sim->run_start, sim->base, sizeof sim->run_start);
    /* no OCM weights provenance carries over: this inference's DMA makes it again */
    memset(sim->wprov, 0, sizeof sim->wprov);
    if (sim->wkeep_gen != sim->host_gen) { /* the host may have written the weights */
        memset(sim->wkeep, 0, sizeof sim->wkeep);
        sim->wkeep_gen = sim->host_gen;
    }
    uint64_t end_main = 0, end_fin = 0;
    /* checked until two inferences in a row pass (see the invariants at the top) */
    sim->deps_now = sim->p.check_deps && sim->clean_runs < 2;
    int rc = run_section(sim, MLIP_SEC_MAIN, 0, &st, &end_main);
    if (rc == MLIP_OK) rc = run_section(sim, MLIP_SEC_FINISH, end_main, &st, &end_fin);
    if (rc != MLIP_OK) {
        sim->clean_runs = 0;
        return rc;
    }
    if (sim->deps_now) sim->clean_runs++;
    st.cycles = end_fin;
    st.init_cycles = sim->stats.init_cycles;
    if (stats != NULL) *stats = st;
    if (layers != NULL && num_layers != 0) {
        memcpy(layers, sim->lstats, (size_t)num_layers * sizeof(mlip_layer_stats));
    }
    return MLIP_OK;
}

uint64_t mlip_sim_trace_size(const mlip_sim *sim)
{
    if (sim == NULL) return 0;
    uint64_t n = 0;
    for (uint32_t t = sim->tile0; t < sim->tile0 + sim->ntiles; t++) {
        for (int q = 0; q < 3; q++) {
            n += sim->info.streams[MLIP_SEC_MAIN][t][q].count;
            n += sim->info.streams[MLIP_SEC_FINISH][t][q].count;
        }
    }
    return n;
}

int mlip_sim_run_traced(mlip_sim *sim, mlip_stats *stats, mlip_layer_stats *layers,
                        uint32_t num_layers, mlip_trace_record *trace, uint64_t capacity,
                        uint64_t *recorded, uint64_t *dropped, char *msg, size_t msg_size)
{
    if (sim == NULL) return MLIP_ERR_ARG;
    if (trace == NULL && capacity != 0) {
        set_msg(sim, msg, msg_size);
        return fail(sim, MLIP_ERR_ARG, "trace buffer is NULL but its capacity is %llu",
                    (unsigned long long)capacity);
    }
    sim->tracing = 1;
    sim->trace = trace;
    sim->trace_cap = capacity;
    sim->trace_n = 0;
    int rc = mlip_sim_run(sim, stats, layers, num_layers, msg, msg_size);
    uint64_t n = sim->trace_n;
    sim->tracing = 0;
    sim->trace = NULL;
    sim->trace_cap = 0;
    sim->trace_n = 0;
    if (recorded != NULL) *recorded = n < capacity ? n : capacity;
    if (dropped != NULL) *dropped = n > capacity ? n - capacity : 0;
    return rc;
}

uint64_t mlip_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    if (src == NULL || dst == NULL) return 0;
    /* block by block: the block's infinities and NaNs counted, then converted while it is in
     * L1 (F16C / AVX-512 for a finite block; a block holding a NaN goes the portable way,
     * which keeps NaN payloads bit for bit as numpy's widening does) */
    enum { BLOCK = 2048 };
#if MLIP_HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    int f16c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#endif
    uint64_t nonfinite = 0;
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t count = n - start < BLOCK ? n - start : BLOCK;
        uint32_t block_nonfinite = 0;
        for (size_t k = start; k < start + count; k++) {
            block_nonfinite += (src[k] & 0x7C00u) == 0x7C00u;
        }
        nonfinite += block_nonfinite;
#if MLIP_HAVE_AVX2_KERNEL
        if (block_nonfinite == 0 && avx512) {
            h2f_row_avx512((const uint8_t *)(src + start), dst + start, (int64_t)count);
            continue;
        }
        if (block_nonfinite == 0 && f16c) {
            h2f_row_f16c((const uint8_t *)(src + start), dst + start, (int64_t)count);
            continue;
        }
#endif
        for (size_t k = start; k < start + count; k++) dst[k] = h2f(src[k]);
    }
    return nonfinite;
}
