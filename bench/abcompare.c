/* bench/abcompare.c — two builds of libparlm timed in one process, for "did this change
 * cost speed?" on a shared, noisy machine: both libraries are dlopen'ed side by side and
 * every op alternates old/new calls in ABBA order (thread CPU time of batches >= 2 ms,
 * many rounds, the best of each), so a slow spell hits both alike. Only the public API.
 * Not part of the build (it needs two builds):
 *   gcc -O2 -Wall -Wextra -o abcompare bench/abcompare.c -ldl -lm
 *   PARLM_ISA=avx2 OMP_NUM_THREADS=1 ./abcompare OLD/lib/.libs/libparlm.so \
 *       NEW/lib/.libs/libparlm.so [rounds] [name filter]   */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef int st;
typedef struct { float lr, b1, b2, eps, wd; } acfg;
typedef struct lib {
    st (*sgemm)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t, float, float *, int64_t);
    st (*gemm_bf16)(int, int, int64_t, int64_t, int64_t, float, const uint16_t *, int64_t, const uint16_t *, int64_t, float, float *, int64_t);
    st (*sgemv)(int, int64_t, int64_t, float, const float *, int64_t, const float *, float, float *);
    st (*gemv_bf16)(int64_t, int64_t, float, const uint16_t *, int64_t, const float *, float, float *);
    st (*add)(float *, const float *, const float *, int64_t);
    st (*bias_fwd)(float *, const float *, int64_t, int64_t);
    st (*bias_bwd)(float *, const float *, int64_t, int64_t);
    st (*gelu_fwd)(float *, const float *, int64_t);
    st (*gelu_bwd)(float *, const float *, const float *, int64_t);
    st (*ln_fwd)(float *, float *, float *, const float *, const float *, const float *, int64_t, int64_t);
    st (*ln_bwd)(float *, float *, float *, const float *, const float *, const float *, const float *, const float *, int64_t, int64_t);
    st (*sm_fwd)(float *, const float *, int64_t, int64_t);
    st (*sm_bwd)(float *, const float *, const float *, int64_t, int64_t);
    st (*att_fwd)(float *, float *, const float *, int, int, int, int);
    st (*att_bwd)(float *, const float *, const float *, const float *, const float *, int, int, int, int);
    st (*att_cached)(float *, const float *, int64_t, const float *, const float *, int, int, int, int);
    st (*ce_fwd)(float *, float *, const float *, const int32_t *, int64_t, int, int);
    st (*ce_bwd)(float *, const float *, const int32_t *, const float *, const float *, int64_t, int, int);
    st (*emb_fwd)(float *, const int32_t *, const float *, const float *, int, int, int, int);
    st (*emb_bwd)(float *, float *, const float *, const int32_t *, int, int, int, int);
    st (*adamw)(float *, const float *, float *, float *, int64_t, const acfg *, int64_t, float);
    st (*sumsq)(const float *, int64_t, double *);
} lib;
static void *sym(void *h, const char *n) { void *p = dlsym(h, n); if (!p) { fprintf(stderr, "no %s\n", n); exit(1); } return p; }
static void load(lib *L, const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); exit(1); }
    L->sgemm = sym(h, "parlm_sgemm"); L->gemm_bf16 = sym(h, "parlm_gemm_bf16");
    L->sgemv = sym(h, "parlm_sgemv"); L->gemv_bf16 = sym(h, "parlm_gemv_bf16");
    L->add = sym(h, "parlm_add"); L->bias_fwd = sym(h, "parlm_bias_forward"); L->bias_bwd = sym(h, "parlm_bias_backward");
    L->gelu_fwd = sym(h, "parlm_gelu_forward"); L->gelu_bwd = sym(h, "parlm_gelu_backward");
    L->ln_fwd = sym(h, "parlm_layernorm_forward"); L->ln_bwd = sym(h, "parlm_layernorm_backward");
    L->sm_fwd = sym(h, "parlm_softmax_forward"); L->sm_bwd = sym(h, "parlm_softmax_backward");
    L->att_fwd = sym(h, "parlm_attention_forward"); L->att_bwd = sym(h, "parlm_attention_backward");
    L->att_cached = sym(h, "parlm_attention_cached");
    L->ce_fwd = sym(h, "parlm_crossentropy_forward"); L->ce_bwd = sym(h, "parlm_crossentropy_backward");
    L->emb_fwd = sym(h, "parlm_embedding_forward"); L->emb_bwd = sym(h, "parlm_embedding_backward");
    L->adamw = sym(h, "parlm_adamw_update"); L->sumsq = sym(h, "parlm_sumsq");
}
static double tcpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static float *fa(size_t n, float s) { float *x = aligned_alloc(64, (n * 4 + 63) / 64 * 64); uint32_t r = 12345; for (size_t i = 0; i < n; i++) { r = r * 1664525u + 1013904223u; x[i] = ((r >> 8) / 16777216.0f - 0.5f) * s; } return x; }
static uint16_t *ha(size_t n) { uint16_t *x = aligned_alloc(64, (n * 2 + 63) / 64 * 64); uint32_t r = 777; for (size_t i = 0; i < n; i++) { r = r * 1664525u + 1013904223u; float f = ((r >> 8) / 16777216.0f - 0.5f); uint32_t u; memcpy(&u, &f, 4); x[i] = u >> 16; } return x; }
enum { GEMM_NN, GEMM_NT, BGEMM_NT, GEMV, BGEMV, ADD, BIASF, BIASB, GELUF, GELUB, LNF, LNB, SMF, SMB, ATTF, ATTB, ATTD, CEF, CEB, EMBF, EMBB, ADAMW, SUMSQ };
typedef struct { int kind; const char *name; int64_t m, n, k; } op;
static float *A, *B, *C, *D, *E, *F, *G; static uint16_t *HA, *HB; static int32_t *tok;
static void run(lib *L, const op *o)
{
    int64_t m = o->m, n = o->n, k = o->k;
    static acfg cf = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f};
    switch (o->kind) {
    case GEMM_NN: L->sgemm(0, 0, m, n, k, 1, A, k, B, n, 0, C, n); break;
    case GEMM_NT: L->sgemm(0, 1, m, n, k, 1, A, k, B, k, 0, C, n); break;
    case BGEMM_NT: L->gemm_bf16(0, 1, m, n, k, 1, HA, k, HB, k, 0, C, n); break;
    case GEMV: L->sgemv(0, n, k, 1, B, k, A, 0, C); break;
    case BGEMV: L->gemv_bf16(n, k, 1, HB, k, A, 0, C); break;
    case ADD: L->add(C, A, B, m * n); break;
    case BIASF: L->bias_fwd(C, A, m, n); break;
    case BIASB: L->bias_bwd(C, A, m, n); break;
    case GELUF: L->gelu_fwd(C, A, m * n); break;
    case GELUB: L->gelu_bwd(C, A, B, m * n); break;
    case LNF: L->ln_fwd(C, D, E, A, B, F, m, n); break;
    case LNB: L->ln_bwd(G, D, E, B, A, F, C + 0, C + m, m, n); break;
    case SMF: L->sm_fwd(C, A, m, n); break;
    case SMB: L->sm_bwd(D, C, B, m, n); break;
    case ATTF: L->att_fwd(C, D, A, 1, (int)m, 768, 12); break;
    case ATTB: L->att_bwd(G, B, A, C, D, 1, (int)m, 768, 12); break;
    case ATTD: L->att_cached(C, A, 768, B, F, (int)m, 1, 768, 12); break;
    case CEF: L->ce_fwd(C, D, A, tok, m, (int)n, (int)n); break;
    case CEB: L->ce_bwd(G, A, tok, D, E, m, (int)n, (int)n); break;
    case EMBF: L->emb_fwd(C, tok, A, B, 1, (int)m, (int)n, 50257); break;
    case EMBB: L->emb_bwd(G, D, B, tok, 1, (int)m, (int)n, 50257); break;
    case ADAMW: L->adamw(G, A, D, E, m, &cf, 10, 1.0f); break;
    case SUMSQ: { double s; L->sumsq(A, m, &s); } break;
    }
}
int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "ab OLD.so NEW.so [rounds] [filter]\n"); return 2; }
    lib L[2]; load(&L[0], argv[1]); load(&L[1], argv[2]);
    int rounds = argc > 3 ? atoi(argv[3]) : 15;
    const char *filt = argc > 4 ? argv[4] : NULL;
    size_t big = 50304 * 768 + 4096;
    A = fa(big, 1); B = fa(big, 1); C = fa(big, 1); D = fa(big, 0.1f); E = fa(big, 0.1f); F = fa(big, 1); G = fa(big, 1);
    for (size_t i = 0; i < big; i++) { E[i] = fabsf(E[i]) + 0.1f; D[i] = fabsf(D[i]) + 0.1f; }
    HA = ha(big); HB = ha(big);
    tok = malloc(4096 * 4); for (int i = 0; i < 4096; i++) tok[i] = (i * 7919) % 50257;
    const op ops[] = {
        {GEMM_NN, "sgemm 256^3 NN", 256, 256, 256}, {GEMM_NN, "sgemm 1024^3 NN", 1024, 1024, 1024},
        {GEMM_NT, "sgemm 256x768x768 NT", 256, 768, 768}, {GEMM_NT, "sgemm 256x3072x768 NT", 256, 3072, 768},
        {GEMM_NT, "sgemm 256x768x3072 NT", 256, 768, 3072}, {GEMM_NT, "sgemm 256x50304x768 NT", 256, 50304, 768},
        {BGEMM_NT, "bf16 256x768x768 NT", 256, 768, 768}, {BGEMM_NT, "bf16 256x3072x768 NT", 256, 3072, 768},
        {GEMV, "sgemv 768x768", 1, 768, 768}, {GEMV, "sgemv 3072x768", 1, 3072, 768}, {GEMV, "sgemv 50304x768", 1, 50304, 768},
        {BGEMV, "bgemv 768x768", 1, 768, 768}, {BGEMV, "bgemv 3072x768", 1, 3072, 768}, {BGEMV, "bgemv 50304x768", 1, 50304, 768},
        {ADD, "add 256x768", 256, 768, 0}, {BIASF, "bias_fwd 256x768", 256, 768, 0}, {BIASB, "bias_bwd 256x768", 256, 768, 0},
        {GELUF, "gelu_fwd 256x3072", 256, 3072, 0}, {GELUB, "gelu_bwd 256x3072", 256, 3072, 0},
        {LNF, "layernorm_fwd 256x768", 256, 768, 0}, {LNB, "layernorm_bwd 256x768", 256, 768, 0},
        {SMF, "softmax_fwd 256x256", 256, 256, 0}, {SMB, "softmax_bwd 256x256", 256, 256, 0},
        {ATTF, "attn_fwd T=256 12h", 256, 0, 0}, {ATTB, "attn_bwd T=256 12h", 256, 0, 0}, {ATTD, "attn_dec t0=255 12h", 255, 0, 0},
        {CEF, "ce_fwd 16x50257", 16, 50257, 0}, {CEB, "ce_bwd 16x50257", 16, 50257, 0},
        {EMBF, "embed_fwd 256x768", 256, 768, 0}, {EMBB, "embed_bwd 256x768", 256, 768, 0},
        {ADAMW, "adamw 1M", 1 << 20, 0, 0}, {SUMSQ, "sumsq 1M", 1 << 20, 0, 0},
    };
    int nops = sizeof ops / sizeof ops[0];
    printf("%-26s %11s %11s %8s\n", "op", "old s", "new s", "new/old");
    for (int i = 0; i < nops; i++) {
        const op *o = &ops[i];
        if (filt && !strstr(o->name, filt)) continue;
        run(&L[0], o); run(&L[1], o);
        int batch = 1;
        for (;;) { double t = tcpu(); for (int j = 0; j < batch; j++) run(&L[0], o); if (tcpu() - t > 2e-3 || batch > 1 << 16) break; batch *= 2; }
        double best[2] = {INFINITY, INFINITY};
        for (int r = 0; r < rounds; r++)
            for (int w = 0; w < 2; w++) {
                int x = (r & 1) ? 1 - w : w; /* ABBA */
                double t = tcpu();
                for (int j = 0; j < batch; j++) run(&L[x], o);
                t = (tcpu() - t) / batch;
                if (t < best[x]) best[x] = t;
            }
        printf("%-26s %11.4e %11.4e %8.3f%s\n", o->name, best[0], best[1], best[1] / best[0], best[1] / best[0] > 1.03 ? "  >3%" : "");
        fflush(stdout);
    }
    return 0;
}
