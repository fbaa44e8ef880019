/* lib/core/gemm.c — GEMM / GEMV / bf16 conversion: argument checks, blocking, packing, threads.
 * The arithmetic is in the per-ISA kernels of simd/ (micro-kernel, packing, GEMV); this
 * file is the portable BLIS-style framework around them.
 *
 * Loop order (one thread's block of C; simd/kernels.h has the micro-kernel contract):
 *   jc: NC columns   - the KC x NC block of packed B stays in the thread's share of L3
 *                      (A is packed again for each NC block)
 *    pc: KC depth    - one KC block of the sums: C is read and written once per block
 *     ic: MC rows    - pack A(ic, pc) into MR-row panels (streamed by the kernels), unless
 *                      the kernels read an f32 row-major A in place (sgemm_ukr_ua)
 *      jr: NR        - in the first MC block, pack B(pc, jr) into its NR-column panel just
 *                      before use (it is in L2 for the kernels; later MC blocks re-read it
 *                      from the buffer; with one MC block one panel buffer serves all)
 *       ir: MR       - micro-kernel on one MR x NR tile of C; it applies alpha, and beta
 *                      only on the first KC block (beta = 1 after, as C then holds a sum);
 *                      between calls, the source of the next B panel is fetched into L2
 * Blocking: parlm_gemm_blocking_for() derives KC and MC from L2 and NC from L3 (the sizes
 * hwloc reports, via parlm_topo_system), in 32-bit words per k step, so a bf16 k-pair
 * block takes the same bytes as an f32 one: KC = 3/4 L2 / (4 x 256 rows), MC = 2 L2 /
 * (4 KC), NC = L3 / (threads sharing it) / 2 / (4 KC); a thread whose rows fit in one MC
 * block keeps no B block, and its NC is its whole width. Each loop cuts its range into
 * equal blocks rounded up to 16 / MR / NR (no thin last block).
 * bf16 (parlm_gemm_bf16) takes the path chosen once per process (parlm_bf16_path_current,
 * by measured speed): "widen" packs bf16 as f32 panels (exact) for the f32 micro-kernel,
 * so it equals the f32 GEMM of the widened inputs bit for bit; "dot" packs k pairs for the
 * set's bf16 kernel (vdpbf16ps).
 * Threads: C is cut into a tm x tn grid of MR/NR-aligned blocks, one per OpenMP thread,
 * picked by parlm_gemm_grid (smallest largest block in real rows and columns, packing
 * included: M = 256, N = 768 splits N; 256^3 in 48-column tiles and tall shapes split
 * M). Each thread runs the five loops on its block with its own packing buffers, packing
 * the B columns it needs itself: no barriers, no shared writes. Wide outputs split over
 * columns (N >= 4 x threads x CHUNK_COLS, the LM head) are handed out in column chunks to
 * whichever thread is free (run_gemm). Sharing the packing of B would only pay when
 * threads share columns (tm > 1, i.e. tall M), where B (K x N) is small next to each
 * thread's M/tm x N x K of work (measured bound for GPT-2 at B*T = 2048: about 1% of the
 * GEMM; panels packed once by whichever thread came first were no faster on 256^3).
 * Each element of C is summed by one thread in a fixed order (KC depends on the caches
 * only), so results are bitwise repeatable, and independent of the thread count
 * (tests/core/test_gemm.c checks both).
 * Workspace: one 64-byte aligned buffer per calling thread, kept between calls (no
 * allocation in the loops, none at all in steady state); freed when that thread exits.
 * M == 1 (and parlm_sgemv) runs the GEMV kernels, rows split over threads.
 * parlm_gemm_set_backend(PARLM_GEMM_OPENBLAS) sends parlm_sgemm to cblas_sgemm when the
 * library was built with OpenBLAS (after the same argument checks); bf16 always stays native. */
#include "config.h"

#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef PARLM_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "dispatch.h"
#include "../../base/error.h"
#include "gemm.h"
#include "parallel.h"
#include "parlm/bf16.h"
#include "parlm/tensor.h"
#include "parlm/topo.h"

/* Below this many multiply-adds per thread, fork/join costs more than a thread saves
 * (2^19 FMAs take ~10 us on one core). */
#define GEMM_GRAIN ((int64_t)1 << 19)
/* GEMV and conversions are memory-bound: elements per thread worth a fork. */
#define GEMV_GRAIN ((int64_t)1 << 16)
#define CONVERT_GRAIN ((int64_t)1 << 18)
/* Relative cost of packing one element vs one k-step of an output element, used to
 * weigh packing in the choice of the thread grid (vector packing, 16-wide FMAs). */
#define PACK_WEIGHT 4
/* Columns per dynamically scheduled chunk of a wide output (run_gemm). */
#define CHUNK_COLS 2016

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- blocking ----------------------------------------------------------------------- */

/* KC: as deep as L2 allows for an A block of MC_ROWS rows (the C tile is read and written
 * once per KC block); on Cascade Lake (1 MiB L2) KC = 768 measured 5-10% faster than
 * 256-384 on the shapes of parlm-bench gemm, and 1024-1536 lost on K = 3072.
 * MC: the A block fills twice L2 (512 rows there): the kernels stream A at 32 bytes per
 * 12 cycles, which L3 serves easily, while each MC block re-reads every B panel from L3
 * into L2 (measured: MC = 512 3-5% faster than 256 at 2048^3 and 1024x3072x768). */
#define MC_ROWS 256
#define KC_MIN 256
#define KC_MAX 1536

parlm_gemm_blocking parlm_gemm_blocking_for(int64_t l1, int64_t l2, int64_t l3, int l3_threads,
                                            int mr, int nr)
{
    if (l1 <= 0)
        l1 = PARLM_TOPO_L1_DEFAULT;
    if (l2 <= 0)
        l2 = PARLM_TOPO_L2_DEFAULT;
    if (l3 <= 0)
        l3 = PARLM_TOPO_L3_DEFAULT;
    if (l3_threads < 1)
        l3_threads = 1;
    mr = mr < 1 ? 1 : mr;
    nr = nr < 1 ? 1 : nr;
    parlm_gemm_blocking b;
    /* an A block of MC_ROWS rows fills 3/4 of L2, the rest holding the B micro-panel */
    b.kc = l2 * 3 / 4 / (4 * MC_ROWS) / 16 * 16;
    b.kc = b.kc < KC_MIN ? KC_MIN : b.kc > KC_MAX ? KC_MAX : b.kc;
    /* twice L2: see the header */
    b.mc = max64(l2 * 2 / (4 * b.kc) / mr * mr, mr);
    /* the packed B block fills half the thread's share of L3 (A streams through the rest).
     * The C block need not stay: it is read and written once per KC block, 8 bytes per KC
     * multiply-adds. Counting it (NC = 1440 for KC = 768 on 32 MiB shared by 2) cut
     * 2048-wide blocks in two and packed A twice: on one Zen 5 core (1 MiB L2, 32 MiB L3)
     * 2048^3 ran 1.005-1.044x faster with NC from B alone (seven alternating runs; other
     * shapes within noise). */
    b.nc = max64(l3 / l3_threads / 2 / (4 * b.kc) / nr * nr, nr);
    (void)l1;
    return b;
}

static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int64_t cache_l1, cache_l2, cache_l3;
static int cache_l3_cores = 1;

static void cache_init(void)
{
    const parlm_topo *topo;
    if (parlm_topo_system(&topo) == PARLM_OK) {
        cache_l1 = parlm_topo_cache_bytes(topo, 1);
        cache_l2 = parlm_topo_cache_bytes(topo, 2);
        cache_l3 = parlm_topo_cache_bytes(topo, 3);
        cache_l3_cores = parlm_topo_cache_cores(topo, 3);
    } /* else: the defaults of parlm_gemm_blocking_for (sizes 0) */
    if (cache_l3_cores < 1)
        cache_l3_cores = 1;
}

/* Thread-local: blocking() runs on the thread that called the GEMM, before its parallel
 * region, so an override reaches only that thread's GEMMs and no thread reads another's. */
static _Thread_local parlm_gemm_blocking forced;
static _Thread_local int forced_on;

void parlm_gemm_blocking_override(const parlm_gemm_blocking *b)
{
    forced_on = b != NULL;
    if (b)
        forced = *b;
}

/* Blocking for a kernel of mr x nr when nt threads run at once. */
static parlm_gemm_blocking blocking(int mr, int nr, int nt)
{
    if (forced_on) {
        parlm_gemm_blocking b = {round_up(max64(forced.mc, 1), mr),
                                 round_up(max64(forced.kc, 1), 16),
                                 round_up(max64(forced.nc, 1), nr)};
        return b;
    }
    pthread_once(&cache_once, cache_init);
    return parlm_gemm_blocking_for(cache_l1, cache_l2, cache_l3,
                                   nt < cache_l3_cores ? nt : cache_l3_cores, mr, nr);
}

parlm_gemm_blocking parlm_gemm_blocking_get(void)
{
    const parlm_kernels *k = parlm_kern();
    return blocking(k->sgemm_mr, k->sgemm_nr, omp_get_max_threads());
}

void parlm_gemm_grid(int64_t M, int64_t N, int mr, int nr, int nt, int *tm, int *tn)
{
    int64_t best = INT64_MAX;
    *tm = 1;
    *tn = nt;
    for (int a = 1; a <= nt; a++) {
        if (nt % a)
            continue;
        int b = nt / a;
        /* the largest cell as run_gemm cuts it, in real rows and columns: counting tiles
         * padded to full width took N = 256 in 48-column tiles, 144 | 112 columns, for as
         * even as M = 256 in 128 | 128 rows (the row split: 256^3 on 2 threads 1.09-1.11x) */
        int64_t rows = 0, cols = 0, lo, hi;
        for (int t = 0; t < a; t++) {
            parlm_split(M, mr, t, a, &lo, &hi);
            rows = max64(rows, hi - lo);
        }
        for (int t = 0; t < b; t++) {
            parlm_split(N, nr, t, b, &lo, &hi);
            cols = max64(cols, hi - lo);
        }
        int64_t cost = rows * cols + PACK_WEIGHT * (rows + cols);
        if (cost < best) {
            best = cost;
            *tm = a;
            *tn = b;
        }
    }
}

/* ---- workspace: one growing buffer per calling thread ---------------------------------- */

typedef struct workspace {
    void *p;
    size_t bytes;
} workspace;

static pthread_key_t ws_key;
static int ws_key_ok;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_release(void *v)
{
    workspace *w = v;
    parlm_free(w->p);
    free(w);
}

static void ws_init(void) { ws_key_ok = pthread_key_create(&ws_key, ws_release) == 0; }

/* At least `bytes` of 64-byte aligned scratch, valid until this thread's next call;
 * NULL if memory is short. */
static void *ws_get(size_t bytes)
{
    pthread_once(&ws_once, ws_init);
    if (!ws_key_ok)
        return NULL;
    workspace *w = pthread_getspecific(ws_key);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w || pthread_setspecific(ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->bytes < bytes) {
        parlm_free(w->p);
        w->p = parlm_alloc(bytes, 1);
        w->bytes = w->p ? bytes : 0;
    }
    return w->p;
}

/* ---- argument checks --------------------------------------------------------------- */

/* A row-major matrix in memory: rows x cols elements of es bytes, row stride ld. */
typedef struct region {
    const char *name;
    const void *p;
    int64_t rows, cols, ld, es;
} region;

static uintptr_t region_end(const region *r)
{
    return (uintptr_t)r->p + (uintptr_t)(((r->rows - 1) * r->ld + r->cols) * r->es);
}

/* Shape checks for one operand: pointer, leading dim, and an extent that fits in memory. */
static parlm_status check_region(const char *fn, const region *r, const char *ldname)
{
    if (!r->p)
        return parlm_error(PARLM_EINVAL, "%s: %s is NULL", fn, r->name);
    if (r->ld < r->cols)
        return parlm_error(PARLM_EINVAL, "%s: %s = %lld is below the row width %lld of %s", fn,
                           ldname, (long long)r->ld, (long long)r->cols, r->name);
    /* (rows - 1) * ld + cols elements must not overflow, nor wrap the address space */
    int64_t max_elems = INT64_MAX / r->es;
    if (r->rows - 1 > (max_elems - r->cols) / r->ld)
        return parlm_error(PARLM_EINVAL, "%s: %s of %lld x %lld with %s = %lld is too large", fn,
                           r->name, (long long)r->rows, (long long)r->cols, ldname,
                           (long long)r->ld);
    uintptr_t bytes = (uintptr_t)(((r->rows - 1) * r->ld + r->cols) * r->es);
    if ((uintptr_t)r->p > UINTPTR_MAX - bytes)
        return parlm_error(PARLM_EINVAL, "%s: %s extends past the end of the address space", fn,
                           r->name);
    return PARLM_OK;
}

/* 1 if some element of a is also an element of b. Both are unions of rows, each row an
 * address interval and rows increasing, so a merge walk over the rows decides exactly
 * (sub-views of one buffer with interleaved columns do not overlap). */
static int regions_overlap(const region *a, const region *b)
{
    if (region_end(a) <= (uintptr_t)b->p || region_end(b) <= (uintptr_t)a->p)
        return 0;
    int64_t i = 0, j = 0;
    while (i < a->rows && j < b->rows) {
        uintptr_t a0 = (uintptr_t)a->p + (uintptr_t)(i * a->ld * a->es);
        uintptr_t b0 = (uintptr_t)b->p + (uintptr_t)(j * b->ld * b->es);
        uintptr_t a1 = a0 + (uintptr_t)(a->cols * a->es), b1 = b0 + (uintptr_t)(b->cols * b->es);
        if (a1 <= b0)
            i++;
        else if (b1 <= a0)
            j++;
        else
            return 1;
    }
    return 0;
}

static parlm_status check_trans(const char *fn, const char *name, parlm_trans t)
{
    if (t != PARLM_NO_TRANS && t != PARLM_TRANS)
        return parlm_error(PARLM_EINVAL, "%s: %s = %d is neither PARLM_NO_TRANS nor PARLM_TRANS",
                           fn, name, (int)t);
    return PARLM_OK;
}

static parlm_status check_dim(const char *fn, const char *name, int64_t v)
{
    if (v < 1)
        return parlm_error(PARLM_EINVAL, "%s: %s must be >= 1, got %lld", fn, name, (long long)v);
    return PARLM_OK;
}

static parlm_status check_gemm(const char *fn, parlm_trans ta, parlm_trans tb, int64_t M,
                               int64_t N, int64_t K, const void *A, int64_t lda, const void *B,
                               int64_t ldb, const float *C, int64_t ldc, int64_t es_a,
                               int64_t es_b)
{
    parlm_status st;
    if ((st = check_trans(fn, "ta", ta)) || (st = check_trans(fn, "tb", tb)))
        return st;
    if (ta == PARLM_TRANS && tb == PARLM_TRANS)
        return parlm_error(PARLM_EINVAL,
                           "%s: op(A) and op(B) both transposed (TT) is not supported", fn);
    if ((st = check_dim(fn, "M", M)) || (st = check_dim(fn, "N", N)) ||
        (st = check_dim(fn, "K", K)))
        return st;
    region a = {"A", A, ta ? K : M, ta ? M : K, lda, es_a};
    region b = {"B", B, tb ? N : K, tb ? K : N, ldb, es_b};
    region c = {"C", C, M, N, ldc, 4};
    if ((st = check_region(fn, &a, "lda")) || (st = check_region(fn, &b, "ldb")) ||
        (st = check_region(fn, &c, "ldc")))
        return st;
    if (regions_overlap(&c, &a))
        return parlm_error(PARLM_EINVAL, "%s: C (%p) overlaps A (%p)", fn, (void *)C, A);
    if (regions_overlap(&c, &b))
        return parlm_error(PARLM_EINVAL, "%s: C (%p) overlaps B (%p)", fn, (void *)C, B);
    return PARLM_OK;
}

/* ---- GEMV drivers: rows (or columns) split over threads ------------------------------ */

/* y[i] = alpha * dot(W[i, :k], x) + beta * y[i], i < rows; W f32 or (bf16) uint16. */
static void run_gemv_t(const parlm_kernels *kern, int bf16, int64_t rows, int64_t k, float alpha,
                       const void *w, int64_t ldw, const float *x, float beta, float *y)
{
    int nt = parlm_threads_for(rows * k, GEMV_GRAIN, omp_get_max_threads());
    int row1 = parlm_gemv_mode_current(NULL) == PARLM_GEMV_ROW1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        /* 16-row slices: every thread count groups rows alike in the kernels (by 4) */
        parlm_split(rows, 16, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r0 < r1) {
            if (bf16)
                (row1 ? kern->bgemv_t1 : kern->bgemv_t)(r1 - r0, k, alpha,
                                                        (const uint16_t *)w + r0 * ldw, ldw, x,
                                                        beta, y + r0);
            else
                (row1 ? kern->sgemv_t1 : kern->sgemv_t)(r1 - r0, k, alpha,
                                                        (const float *)w + r0 * ldw, ldw, x,
                                                        beta, y + r0);
        }
    }
}

/* y[j] = alpha * sum_p x[p] * B[p, j] + beta * y[j], j < n, p < k. */
static void run_gemv_n(const parlm_kernels *kern, int64_t k, int64_t n, float alpha,
                       const float *b, int64_t ldb, const float *x, float beta, float *y)
{
    int nt = parlm_threads_for(n * k, GEMV_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t j0, j1;
        /* 128 columns: the kernels' pass width, and whole cache lines of y per thread */
        parlm_split(n, 128, omp_get_thread_num(), omp_get_num_threads(), &j0, &j1);
        if (j0 < j1)
            kern->sgemv_n(k, j1 - j0, alpha, b + j0, ldb, x, beta, y + j0);
    }
}

/* ---- GEMM driver ------------------------------------------------------------------- */

typedef struct gemm_job {
    const parlm_kernels *kern;
    int a_bf16, b_bf16;       /* A, B are bf16 (else f32) */
    int pairs;                /* both bf16, packed as k pairs for bgemm_ukr (the dot path);
                                 else packed as f32 (bf16 widened) for sgemm_ukr */
    int64_t es_a, es_b;       /* their element sizes in bytes */
    parlm_trans ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const char *A, *B;
    int64_t lda, ldb;
    float *C;
    int64_t ldc;
    int mr, nr;               /* micro-kernel tile */
    int tm, tn;               /* thread grid */
    int ua;                   /* A may be read in place (sgemm_ukr_ua), not packed */
    int64_t kb, mc, nc;       /* block sizes: K per block (in k), rows, columns */
    size_t a_bytes, b_bytes;  /* packing buffers of one thread */
    char *ws;
} gemm_job;

/* Equal blocks of at most `cap` (a multiple of `unit`) covering n. */
static int64_t even_block(int64_t n, int64_t cap, int64_t unit)
{
    int64_t nb = ceil_div(n, cap);
    return min64(round_up(ceil_div(n, nb), unit), cap);
}

/* Words of one packed panel of width w over kc k: 64-byte multiple keeps panels aligned. */
static int64_t panel_words(const gemm_job *j, int64_t kc, int w)
{
    int64_t steps = j->pairs ? (kc + 1) / 2 : kc;
    return round_up(steps * w, 16);
}

void parlm_gemm_widen_pack(const parlm_kernels *k, int64_t kc, int64_t mn, const uint16_t *x,
                           int64_t rs, int64_t cs, int w, float *out)
{
    enum { KB = 64, WMAX = 64 }; /* a 64 x 64 f32 block on the stack: 16 KB, in L1 */
    float tmp[KB * WMAX] __attribute__((aligned(64)));
    int64_t ps = round_up(kc * w, 16), np = ceil_div(mn, w);
    if (w > WMAX || (rs != 1 && cs != 1)) { /* not a layout of the kernels: plain loops */
        parlm_kernels s;
        parlm_kernels_for(PARLM_ISA_SCALAR, &s);
        s.wpack(kc, mn, x, rs, cs, w, out);
        return;
    }
    for (int64_t q = 0; q < np; q++) {
        int64_t rows = min64(w, mn - q * w);
        for (int64_t k0 = 0; k0 < kc; k0 += KB) {
            int64_t kn = min64(KB, kc - k0);
            float *dst = out + q * ps + k0 * w; /* 64-byte aligned: KB * w * 4 bytes */
            if (cs == 1) { /* rows of the panel are runs of k: widen them, transpose-pack */
                for (int64_t i = 0; i < rows; i++)
                    k->bf16_to_f32(x + (q * w + i) * rs + k0, tmp + i * KB, kn);
                k->spack(kn, rows, tmp, KB, 1, w, dst);
            } else { /* runs of the panel's columns: widen each, copy-pack */
                for (int64_t p = 0; p < kn; p++)
                    k->bf16_to_f32(x + (k0 + p) * cs + q * w, tmp + p * w, rows);
                k->spack(kn, rows, tmp, 1, w, w, dst);
            }
        }
    }
}

static void pack(const gemm_job *j, int bf16, int64_t kc, int64_t mn, const char *x,
                 int64_t rs, int64_t cs, int w, void *out)
{
    if (j->pairs)
        j->kern->bpack(kc, mn, (const uint16_t *)x, rs, cs, w, out);
    else if (bf16 && j->kern->wpack)
        j->kern->wpack(kc, mn, (const uint16_t *)x, rs, cs, w, out);
    else if (bf16)
        parlm_gemm_widen_pack(j->kern, kc, mn, (const uint16_t *)x, rs, cs, w, out);
    else
        j->kern->spack(kc, mn, (const float *)x, rs, cs, w, out);
}

/* A(ic:ic+mc, pc:pc+kc) -> MR-row panels. A(i, k) is A[i*lda + k] (NN) or A[k*lda + i]. */
static void pack_a(const gemm_job *j, int64_t ic, int64_t mc, int64_t pc, int64_t kc, void *out)
{
    if (j->ta == PARLM_NO_TRANS)
        pack(j, j->a_bf16, kc, mc, j->A + (ic * j->lda + pc) * j->es_a, j->lda, 1, j->mr, out);
    else
        pack(j, j->a_bf16, kc, mc, j->A + (pc * j->lda + ic) * j->es_a, 1, j->lda, j->mr, out);
}

/* B(pc:pc+kc, jc:jc+nc) -> NR-column panels. B(k, n) is B[k*ldb + n] (NN) or B[n*ldb + k]. */
static void pack_b(const gemm_job *j, int64_t pc, int64_t kc, int64_t jc, int64_t nc, void *out)
{
    if (j->tb == PARLM_NO_TRANS)
        pack(j, j->b_bf16, kc, nc, j->B + (pc * j->ldb + jc) * j->es_b, 1, j->ldb, j->nr, out);
    else
        pack(j, j->b_bf16, kc, nc, j->B + (jc * j->ldb + pc) * j->es_b, j->ldb, 1, j->nr, out);
}

/* Rows of a matrix in memory (rows of row_bytes, ld_bytes apart), fetched into L2 a few
 * cache lines at a time between micro-kernel calls (prefetch_lines). */
typedef struct prefetch_cursor {
    const char *p;
    int64_t rows, row_bytes, ld_bytes;
    int64_t r, line; /* the next line: row r, line `line` of it */
} prefetch_cursor;

static inline void prefetch_lines(prefetch_cursor *c, int64_t lines)
{
    while (lines > 0 && c->r < c->rows) {
        uintptr_t row = (uintptr_t)(c->p + c->r * c->ld_bytes);
        uintptr_t first = row & ~(uintptr_t)63;
        uintptr_t last = (row + (uintptr_t)c->row_bytes - 1) & ~(uintptr_t)63;
        uintptr_t a = first + (uintptr_t)c->line * 64;
        for (; lines > 0 && a <= last; lines--, a += 64, c->line++)
            __builtin_prefetch((const void *)a, 0, 2);
        if (a > last) {
            c->r++;
            c->line = 0;
        }
    }
}

/* The source of B(pc:pc+kc, n0:n0+n) as rows of memory, and in *quota the lines to fetch
 * per call for all of them in `calls` calls. */
static prefetch_cursor b_source(const gemm_job *j, int64_t pc, int64_t kc, int64_t n0, int64_t n,
                                int64_t calls, int64_t *quota)
{
    prefetch_cursor c;
    if (j->tb == PARLM_NO_TRANS)
        c = (prefetch_cursor){j->B + (pc * j->ldb + n0) * j->es_b, kc, n * j->es_b,
                              j->ldb * j->es_b, 0, 0};
    else
        c = (prefetch_cursor){j->B + (n0 * j->ldb + pc) * j->es_b, n, kc * j->es_b,
                              j->ldb * j->es_b, 0, 0};
    *quota = ceil_div(c.rows * (c.row_bytes / 64 + 2), calls); /* r bytes: <= r/64 + 2 lines */
    return c;
}

/* The five loops over C[m0:m1, n0:n1], with the buffers of slot `slot`.
 * B panels are packed lazily, each just before the first micro-kernel that reads it (in
 * the first MC block of rows): it is then still in L2 when used, where packing the whole
 * KC x NC block first sent it through L3 and back (measured on Cascade Lake: packing
 * bound by L3 bandwidth at 1.2 ns per element, a quarter of the time of the kernels on
 * NT shapes with M = 256). Later MC blocks read the panels from the buffer; with a
 * single MC block (M per thread <= MC, as in training at B*T = 256) every panel goes to
 * the same L2-resident buffer. */
static void gemm_block(const gemm_job *j, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                       int slot, int *a_packed)
{
    if (m0 >= m1 || n0 >= n1)
        return;
    char *abuf = j->ws + (size_t)slot * (j->a_bytes + j->b_bytes), *bbuf = abuf + j->a_bytes;
    int64_t mc = even_block(m1 - m0, j->mc, j->mr), nc = even_block(n1 - n0, j->nc, j->nr);
    /* a_packed (the chunks of one thread, all over rows m0:m1): with one MC and one KC
     * block, the packed A of the first chunk serves the thread's later ones */
    int one_a = mc >= m1 - m0 && j->kb >= j->K;
    /* A in place (an f32 row-major A, on a set with sgemm_ukr_ua) rather than packed again
     * for every block; packed when one packing serves all of a thread's chunks (the LM
     * head). On one Zen 5 core, 2 threads, M = 256: X W^T and dY W of GPT-2's layers
     * 1.00-1.04x; the LM head's X W^T 0.96x in place, hence packed there. */
    int ua = j->ua && !(a_packed && one_a);
    for (int64_t jc = n0; jc < n1; jc += nc) {
        int64_t ncur = min64(nc, n1 - jc);
        for (int64_t pc = 0; pc < j->K; pc += j->kb) {
            int64_t kcur = min64(j->kb, j->K - pc);
            int64_t steps = j->pairs ? (kcur + 1) / 2 : kcur;
            int64_t astride = panel_words(j, kcur, j->mr), bstride = panel_words(j, kcur, j->nr);
            float beta = pc == 0 ? j->beta : 1.0f;
            for (int64_t ic = m0; ic < m1; ic += mc) {
                int64_t mcur = min64(mc, m1 - ic);
                if (!ua && (!a_packed || !*a_packed))
                    pack_a(j, ic, mcur, pc, kcur, abuf);
                if (a_packed && one_a)
                    *a_packed = 1;
                for (int64_t jr = 0; jr < ncur; jr += j->nr) {
                    /* one MC block: each panel serves it alone, so one buffer, kept in L2 */
                    char *bp = mc < m1 - m0 ? bbuf + jr / j->nr * bstride * 4 : bbuf;
                    int n = (int)min64(j->nr, ncur - jr);
                    if (ic == m0)
                        pack_b(j, pc, kcur, jc + jr, n, bp);
                    /* While the kernels run on this panel, the source of the panel packed
                     * next is fetched into L2 (the weights, in training, come from memory),
                     * so packing it does not wait on memory: the next panel of this block
                     * (packed in its first MC block), else the first of the next KC or NC
                     * block. On one Zen 5 core, 2 threads, M = 256, weights out of cache:
                     * X W^T 1.01-1.02x, dY W 1.01-1.04x, dY^T X (B in cache) 0.99-1.0x. */
                    int64_t npc = -1, nj = 0, nk = 0, quota = 0;
                    int last_ic = ic + mc >= m1, last_jr = jr + j->nr >= ncur;
                    if (ic == m0 && !last_jr)
                        npc = pc, nj = jc + jr + j->nr, nk = kcur;
                    else if (last_ic && last_jr && pc + j->kb < j->K)
                        npc = pc + j->kb, nj = jc, nk = min64(j->kb, j->K - npc);
                    else if (last_ic && last_jr && jc + nc < n1)
                        npc = 0, nj = jc + nc, nk = min64(j->kb, j->K);
                    prefetch_cursor next = {0};
                    if (npc >= 0)
                        next = b_source(j, npc, nk, nj, min64(j->nr, n1 - nj),
                                        ceil_div(mcur, j->mr), &quota);
                    for (int64_t ir = 0; ir < mcur; ir += j->mr) {
                        if (quota)
                            prefetch_lines(&next, quota);
                        const char *ap = abuf + ir / j->mr * astride * 4;
                        float *c = j->C + (ic + ir) * j->ldc + jc + jr;
                        int m = (int)min64(j->mr, mcur - ir);
                        if (ua)
                            j->kern->sgemm_ukr_ua(kcur,
                                                  (const float *)j->A + (ic + ir) * j->lda + pc,
                                                  j->lda, (const float *)bp, c, j->ldc,
                                                  j->alpha, beta, m, n);
                        else if (j->pairs)
                            j->kern->bgemm_ukr(steps, (const uint16_t *)ap, (const uint16_t *)bp,
                                               c, j->ldc, j->alpha, beta, m, n);
                        else
                            j->kern->sgemm_ukr(steps, (const float *)ap, (const float *)bp, c,
                                               j->ldc, j->alpha, beta, m, n);
                    }
                }
            }
        }
    }
}

static parlm_status run_gemm(gemm_job *j, const char *fn)
{
    const parlm_kernels *k = j->kern;
    j->ua = j->ta == PARLM_NO_TRANS && !j->a_bf16 && !j->pairs && k->sgemm_ukr_ua;
    j->mr = j->pairs ? k->bgemm_mr : k->sgemm_mr;
    j->nr = j->pairs ? k->bgemm_nr : k->sgemm_nr;
    int64_t tiles = ceil_div(j->M, j->mr) * ceil_div(j->N, j->nr);
    int64_t fmas = j->M * j->N; /* M*N*K without overflow: K counted by the grain */
    int nt = parlm_threads_for(fmas > INT64_MAX / j->K ? INT64_MAX : fmas * j->K, GEMM_GRAIN,
                               omp_get_max_threads());
    if (nt > tiles)
        nt = (int)tiles;
    parlm_gemm_grid(j->M, j->N, j->mr, j->nr, nt, &j->tm, &j->tn);
    parlm_gemm_blocking b = blocking(j->mr, j->nr, nt);
    int64_t kstep = j->pairs ? 2 : 1; /* k per 32-bit word */
    j->kb = even_block(j->K, b.kc * kstep, 16);
    int64_t rows = ceil_div(ceil_div(j->M, j->mr), j->tm) * j->mr;
    int64_t cols = ceil_div(ceil_div(j->N, j->nr), j->tn) * j->nr;
    /* Wide outputs split over columns (the LM head: N = 50304) go out in chunks of CHUNK_COLS,
     * each to the next free thread, so a thread slowed by a busy core does less of them
     * (static halves waited on it: 2-thread runs on a shared machine took up to twice the
     * time). A chunk repacks A (0.4 cycles per element against CHUNK_COLS / 32 cycles of
     * FMAs, 0.6%) unless it is one MC x KC block, which a thread then packs once for all its
     * chunks (the LM head). Which thread computes a chunk does not change its bits. */
    int64_t chunks = 0;
    if (j->tm == 1 && nt > 1 && ceil_div(j->N, CHUNK_COLS) >= 4 * nt) {
        /* a multiple of the threads, cut in whole tiles as evenly as parlm_split does:
         * 25 chunks of 2016 (the last 1920) left one of two threads 13 to do, 4% idle */
        chunks = round_up(ceil_div(j->N, CHUNK_COLS), nt);
        cols = ceil_div(ceil_div(j->N, j->nr), chunks) * j->nr;
    }
    j->mc = min64(b.mc, rows);
    j->nc = min64(b.nc, cols);
    /* With one MC block no B block is kept (gemm_block packs each panel into one
     * L2-resident buffer), so nothing bounds NC: a narrower one only packed A again per
     * NC block. Forced blocks stay as the tests set them. */
    if (rows <= j->mc && !forced_on)
        j->nc = cols;
    j->a_bytes = (size_t)(ceil_div(j->mc, j->mr) * panel_words(j, j->kb, j->mr) * 4);
    /* a cell of one MC block keeps one B panel at a time (gemm_cell) */
    int64_t panels = rows <= j->mc ? 1 : ceil_div(j->nc, j->nr);
    j->b_bytes = (size_t)(panels * panel_words(j, j->kb, j->nr) * 4);
    j->ws = ws_get((size_t)nt * (j->a_bytes + j->b_bytes));
    if (!j->ws)
        return parlm_error(PARLM_ENOMEM, "%s: cannot allocate %zu bytes of packing buffers", fn,
                           (size_t)nt * (j->a_bytes + j->b_bytes));
    int cells = j->tm * j->tn;
    if (chunks) {
#pragma omp parallel num_threads(nt)
        {
            int a_packed = 0;
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < chunks; c++) {
                int64_t n0, n1;
                parlm_split(j->N, j->nr, (int)c, (int)chunks, &n0, &n1);
                gemm_block(j, 0, j->M, n0, n1, omp_get_thread_num(), &a_packed);
            }
        }
        return PARLM_OK;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* a team smaller than planned (nested regions) works through the cells in turn */
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        for (int cell = t; cell < cells; cell += team) {
            int64_t m0, m1, n0, n1;
            parlm_split(j->M, j->mr, cell / j->tn, j->tm, &m0, &m1);
            parlm_split(j->N, j->nr, cell % j->tn, j->tn, &n0, &n1);
            gemm_block(j, m0, m1, n0, n1, t, NULL);
        }
    }
    return PARLM_OK;
}

static atomic_int backend = PARLM_GEMM_NATIVE; /* set once at start-up, read per call */

parlm_status parlm_gemm_set_backend(parlm_gemm_backend b)
{
    if (b != PARLM_GEMM_NATIVE && b != PARLM_GEMM_OPENBLAS)
        return parlm_error(PARLM_EINVAL, "parlm_gemm_set_backend: unknown backend %d", (int)b);
#ifndef PARLM_HAVE_OPENBLAS
    if (b == PARLM_GEMM_OPENBLAS)
        return parlm_error(PARLM_EUNSUPPORTED,
                           "parlm_gemm_set_backend: this build has no OpenBLAS");
#endif
    atomic_store_explicit(&backend, (int)b, memory_order_relaxed);
    return PARLM_OK;
}

int parlm_gemm_uses_openblas(void)
{
    return atomic_load_explicit(&backend, memory_order_relaxed) == PARLM_GEMM_OPENBLAS;
}

#ifdef PARLM_HAVE_OPENBLAS
/* cblas takes int sizes: larger problems stay native. */
static int fits_int(int64_t v) { return v <= INT_MAX; }
#endif

parlm_status parlm_sgemm(parlm_trans ta, parlm_trans tb, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc)
{
    static const char fn[] = "parlm_sgemm";
    parlm_status st = check_gemm(fn, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, 4, 4);
    if (st)
        return st;
#ifdef PARLM_HAVE_OPENBLAS
    if (parlm_gemm_uses_openblas() && fits_int(M) && fits_int(N) && fits_int(K) && fits_int(lda) &&
        fits_int(ldb) && fits_int(ldc)) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return PARLM_OK;
    }
#endif
    const parlm_kernels *k = parlm_kern();
    if (M == 1) { /* a row vector times op(B): GEMV */
        const float *x = A;
        if (ta == PARLM_TRANS && lda != 1 && K > 1) { /* A is a K x 1 column: gather it */
            float *xs = ws_get((size_t)K * sizeof(float));
            if (!xs)
                return parlm_error(PARLM_ENOMEM, "%s: cannot allocate %lld floats", fn,
                                   (long long)K);
            for (int64_t p = 0; p < K; p++)
                xs[p] = A[p * lda];
            x = xs;
        }
        if (tb == PARLM_TRANS) /* B is N x K: C[j] = dot(B[j, :], x) */
            run_gemv_t(k, 0, N, K, alpha, B, ldb, x, beta, C);
        else
            run_gemv_n(k, K, N, alpha, B, ldb, x, beta, C);
        return PARLM_OK;
    }
    gemm_job j = {.kern = k, .es_a = 4, .es_b = 4, .ta = ta, .tb = tb, .M = M, .N = N, .K = K,
                  .alpha = alpha, .beta = beta, .A = (const char *)A, .B = (const char *)B,
                  .lda = lda, .ldb = ldb, .C = C, .ldc = ldc};
    return run_gemm(&j, fn);
}

parlm_status parlm_gemm_bf16(parlm_trans ta, parlm_trans tb, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc)
{
    static const char fn[] = "parlm_gemm_bf16";
    parlm_status st = check_gemm(fn, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, 2, 2);
    if (st)
        return st;
    const parlm_kernels *k = parlm_kern();
    if (M == 1 && tb == PARLM_TRANS) { /* C[j] = dot(B[j, :], a): the bf16-weight GEMV */
        float *x = ws_get((size_t)K * sizeof(float));
        if (!x)
            return parlm_error(PARLM_ENOMEM, "%s: cannot allocate %lld floats", fn, (long long)K);
        if (ta == PARLM_NO_TRANS)
            k->bf16_to_f32(A, x, K);
        else
            for (int64_t p = 0; p < K; p++)
                k->bf16_to_f32(A + p * lda, x + p, 1);
        run_gemv_t(k, 1, N, K, alpha, B, ldb, x, beta, C);
        return PARLM_OK;
    }
    gemm_job j = {.kern = k, .a_bf16 = 1, .b_bf16 = 1,
                  .pairs = parlm_bf16_path_current(NULL) == PARLM_BF16_DOT, .es_a = 2, .es_b = 2,
                  .ta = ta, .tb = tb, .M = M, .N = N, .K = K,
                  .alpha = alpha, .beta = beta, .A = (const char *)A, .B = (const char *)B,
                  .lda = lda, .ldb = ldb, .C = C, .ldc = ldc};
    return run_gemm(&j, fn);
}

parlm_status parlm_gemm_f32_bf16(parlm_trans ta, parlm_trans tb, int64_t M, int64_t N,
                                 int64_t K, float alpha, const float *A, int64_t lda,
                                 const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    static const char fn[] = "parlm_gemm_f32_bf16";
    parlm_status st = check_gemm(fn, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, 4, 2);
    if (st)
        return st;
    const parlm_kernels *k = parlm_kern();
    if (M == 1 && tb == PARLM_TRANS && (ta == PARLM_NO_TRANS || K == 1 || lda == 1)) {
        run_gemv_t(k, 1, N, K, alpha, B, ldb, A, beta, C); /* the bf16-weight GEMV */
        return PARLM_OK;
    }
    gemm_job j = {.kern = k, .a_bf16 = 0, .b_bf16 = 1, .pairs = 0, .es_a = 4, .es_b = 2,
                  .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
                  .A = (const char *)A, .B = (const char *)B, .lda = lda, .ldb = ldb, .C = C,
                  .ldc = ldc};
    return run_gemm(&j, fn);
}

/* ---- public GEMV ------------------------------------------------------------------- */

static parlm_status check_gemv(const char *fn, parlm_trans ta, int64_t rows, int64_t cols,
                               const void *A, int64_t lda, int64_t es, const float *x,
                               const float *y)
{
    parlm_status st;
    if ((st = check_trans(fn, "ta", ta)) || (st = check_dim(fn, "rows", rows)) ||
        (st = check_dim(fn, "cols", cols)))
        return st;
    int64_t nx = ta ? rows : cols, ny = ta ? cols : rows;
    region a = {"A", A, rows, cols, lda, es};
    region rx = {"x", x, 1, nx, nx, 4}, ry = {"y", y, 1, ny, ny, 4};
    if ((st = check_region(fn, &a, "lda")) || (st = check_region(fn, &rx, "its length")) ||
        (st = check_region(fn, &ry, "its length")))
        return st;
    if (regions_overlap(&ry, &a))
        return parlm_error(PARLM_EINVAL, "%s: y (%p) overlaps A (%p)", fn, (const void *)y, A);
    if (regions_overlap(&ry, &rx))
        return parlm_error(PARLM_EINVAL, "%s: y (%p) overlaps x (%p)", fn, (const void *)y,
                           (const void *)x);
    return PARLM_OK;
}

parlm_status parlm_sgemv(parlm_trans ta, int64_t rows, int64_t cols, float alpha,
                         const float *A, int64_t lda, const float *x, float beta, float *y)
{
    parlm_status st = check_gemv("parlm_sgemv", ta, rows, cols, A, lda, 4, x, y);
    if (st)
        return st;
    const parlm_kernels *k = parlm_kern();
    if (ta == PARLM_NO_TRANS)
        run_gemv_t(k, 0, rows, cols, alpha, A, lda, x, beta, y);
    else
        run_gemv_n(k, rows, cols, alpha, A, lda, x, beta, y);
    return PARLM_OK;
}

parlm_status parlm_gemv_bf16(int64_t rows, int64_t cols, float alpha, const uint16_t *A,
                             int64_t lda, const float *x, float beta, float *y)
{
    parlm_status st = check_gemv("parlm_gemv_bf16", PARLM_NO_TRANS, rows, cols, A, lda, 2, x, y);
    if (st)
        return st;
    run_gemv_t(parlm_kern(), 1, rows, cols, alpha, A, lda, x, beta, y);
    return PARLM_OK;
}

/* ---- conversions ------------------------------------------------------------------- */

static parlm_status check_convert(const char *fn, const void *x, int64_t xes, const void *y,
                                  int64_t yes, int64_t n)
{
    if (!x)
        return parlm_error(PARLM_EINVAL, "%s: x is NULL", fn);
    if (!y)
        return parlm_error(PARLM_EINVAL, "%s: y is NULL", fn);
    if (n < 0)
        return parlm_error(PARLM_EINVAL, "%s: n must be >= 0, got %lld", fn, (long long)n);
    if (n == 0)
        return PARLM_OK;
    region rx = {"x", x, 1, n, n, xes}, ry = {"y", y, 1, n, n, yes};
    parlm_status st;
    if ((st = check_region(fn, &rx, "n")) || (st = check_region(fn, &ry, "n")))
        return st;
    if (regions_overlap(&rx, &ry))
        return parlm_error(PARLM_EINVAL, "%s: y (%p) overlaps x (%p)", fn, y, x);
    return PARLM_OK;
}

parlm_status parlm_f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    parlm_status st = check_convert("parlm_f32_to_bf16", x, 4, y, 2, n);
    if (st || n == 0)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(n, CONVERT_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(n, 64, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i0 < i1)
            k->f32_to_bf16(x + i0, y + i0, i1 - i0);
    }
    return PARLM_OK;
}

parlm_status parlm_bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    parlm_status st = check_convert("parlm_bf16_to_f32", x, 2, y, 4, n);
    if (st || n == 0)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(n, CONVERT_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(n, 64, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i0 < i1)
            k->bf16_to_f32(x + i0, y + i0, i1 - i0);
    }
    return PARLM_OK;
}
