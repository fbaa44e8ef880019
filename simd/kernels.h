/* simd/kernels.h — the per-ISA kernel table (internal).
 * Each ISA directory (simd/scalar, simd/avx2, simd/avx512, simd/neon) is compiled
 * with its own flags and exports one function that fills this table. lib/core/dispatch.c
 * picks one table at init from cpuid/XGETBV or HWCAP (or PARLM_ISA). Kernels are
 * single-threaded and never validate arguments: lib/ checks shapes and splits work
 * across OpenMP threads, then calls these on its slice. simd/scalar is the reference
 * every other set is tested against. Backward kernels ACCUMULATE (+=) into gradients. */
#ifndef PARLM_SIMD_KERNELS_H
#define PARLM_SIMD_KERNELS_H
#include <stdint.h>

struct parlm_q8x;

typedef struct parlm_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */

    /* ---- f32 GEMM, BLIS micro-kernel contract ----------------------------
     * ap: packed A panel, kc steps of MR floats (column k of the MR-row block).
     * bp: packed B panel, kc steps of NR floats (row k of the NR-col block).
     * Computes C[0:m, 0:n] = alpha * (Ap . Bp)[0:m, 0:n] + beta * C[0:m, 0:n]
     * for m <= MR, n <= NR (edges), C row-major with leading dim ldc.
     * beta == 0 means C is write-only (never read: it may hold NaN).
     * Packed panels are 64-byte aligned and zero-padded to MR / NR. */
    int sgemm_mr, sgemm_nr;
    void (*sgemm_ukr)(int64_t kc, const float *ap, const float *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n);
    /* sgemm_ukr_ua: the same product with A in place, not packed: row i < m of the tile
     * at a + i * lda, kc floats; rows >= m are not read. Bit for bit sgemm_ukr's result on
     * the packed panel. NULL in sets without one (lib/core/gemm.c then packs A). */
    void (*sgemm_ukr_ua)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                         int64_t ldc, float alpha, float beta, int m, int n);

    /* ---- bf16 GEMM with f32 accumulation, same contract, kc2 = ceil(kc/2) pairs.
     * ap: kc2 steps of MR pairs (a[i][2p], a[i][2p+1]) = 2*MR uint16 per step.
     * bp: kc2 steps of NR pairs (b[2p][j], b[2p+1][j]) = 2*NR uint16 per step.
     * An odd kc is padded with a zero k. */
    int bgemm_mr, bgemm_nr;
    const char *bgemm_dot; /* the bf16 dot-product instruction it uses, NULL: it widens */
    void (*bgemm_ukr)(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n);

    /* ---- packing of a block into the panel layouts above: mn rows (A) or columns (B)
     * of width w = MR or NR each, panel q at out + q*ps, ps = ceil(steps*w / 16) * 16
     * 32-bit words (panels stay 64-byte aligned), steps = kc (f32) or ceil(kc/2) (bf16).
     * spack: panel q: out[q*ps + k*w + i] = x[(q*w + i)*rs + k*cs]; zero for rows >= mn.
     * bpack: panel q: out[2*q*ps + (p*w + i)*2 + e] = x[(q*w + i)*rs + (2p+e)*cs], zero
     *        for rows >= mn and for k = kc when kc is odd.
     * wpack: bf16 source, f32 panels exactly as spack's (each bf16 widened, exact): the
     *        "widen" bf16 path runs the f32 micro-kernel on them. NULL: lib/core/gemm.c
     *        composes it from bf16_to_f32 and spack (a pass through a block in L1).
     * One of rs, cs is 1 (a copy when rs == 1, a transpose when cs == 1). out is 64-byte
     * aligned. SIMD sets pack with vector transposes and row-ordered reads: scalar packing
     * costs 5-10% of a GEMM of the shapes of GPT-2 training. */
    void (*spack)(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                  float *out);
    void (*bpack)(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  uint16_t *out);
    void (*wpack)(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  float *out);

    /* ---- GEMV (decode) -------------------------------------------------------
     * sgemv_t: y[i] = alpha * dot(W[i, 0:k], x) + beta * y[i], i < rows (W row-major, ldw)
     * sgemv_n: y[j] = alpha * sum_p x[p] * B[p, j] + beta * y[j], j < n, p < k (B row-major, ldb)
     * bgemv_t: as sgemv_t with bf16 W.  beta == 0: y is write-only. */
    void (*sgemv_t)(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                    const float *x, float beta, float *y);
    void (*sgemv_n)(int64_t k, int64_t n, float alpha, const float *b, int64_t ldb,
                    const float *x, float beta, float *y);
    void (*bgemv_t)(int64_t rows, int64_t k, float alpha, const uint16_t *w, int64_t ldw,
                    const float *x, float beta, float *y);
    /* sgemv_t1, bgemv_t1: the same results computed one row at a time (one weight stream)
     * where sgemv_t, bgemv_t take 4 rows at once; the faster on the CPU at hand is measured
     * (parlm_gemv_mode_current, lib/core/dispatch.h). Each sums a row in its own fixed
     * order, so the two may differ in the last bits. */
    void (*sgemv_t1)(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                     const float *x, float beta, float *y);
    void (*bgemv_t1)(int64_t rows, int64_t k, float alpha, const uint16_t *w, int64_t ldw,
                     const float *x, float beta, float *y);

    /* ---- conversions (round to nearest even; NaN stays NaN) ---------------- */
    void (*f32_to_bf16)(const float *x, uint16_t *y, int64_t n);
    void (*bf16_to_f32)(const uint16_t *x, float *y, int64_t n);

    /* ---- elementwise and row-wise ops; rows of c contiguous floats ---------- */
    void (*add)(float *out, const float *a, const float *b, int64_t n);      /* out = a + b (residual) */
    void (*bias_fwd)(float *out, const float *bias, int64_t rows, int64_t c); /* out[r,:] += bias */
    void (*bias_bwd)(float *dbias, const float *dout, int64_t rows, int64_t c); /* dbias += sum_r dout[r,:] */
    /* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    void (*gelu_fwd)(float *out, const float *x, int64_t n);
    void (*gelu_bwd)(float *dx, const float *x, const float *dout, int64_t n); /* dx += gelu'(x) dout */
    /* layernorm over each row (eps 1e-5): out = (x - mean) * rstd * w + b; saves mean, rstd per row */
    void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t c);
    /* dx += ..., dw += ..., db += ...  (dw/db accumulate over the given rows) */
    void (*layernorm_bwd)(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd,
                          int64_t rows, int64_t c);
    /* softmax over each row: out = exp(x - max) / sum; a row of all -inf gives zeros */
    void (*softmax_fwd)(float *out, const float *x, int64_t rows, int64_t c);
    /* dx += y * (dy - dot(y, dy)) per row, y = softmax output */
    void (*softmax_bwd)(float *dx, const float *y, const float *dy, int64_t rows, int64_t c);

    /* ---- transformer kernels (GPT training and generation) -------------------
     * Causal attention of ONE (batch, head), FlashAttention style: key tiles against a
     * query tile with an online softmax; the tq x tk score matrix never exists.
     * Query i (i < tq) sits at position t0 + i and attends keys 0 .. t0 + i. Rows of q
     * are ldq floats apart, rows of k and v ldkv apart, rows of out ldo apart; hs <= 256.
     * out = softmax(q k^T * scale) v; lse[i] = log-sum-exp of row i's scaled scores. */
    void (*attn_fwd)(int64_t tq, int64_t t0, int64_t hs, const float *q, int64_t ldq,
                     const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                     float *lse, float scale);
    /* Backward of attn_fwd with t0 = 0 and tq = T keys (training): recomputes scores
     * tile by tile from lse; dq, dk, dv (row stride ldd) ACCUMULATE. q, k, v share the
     * row stride ld, out and dout share ldo. scratch: T floats. */
    void (*attn_bwd)(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *scratch);
    /* Fused softmax + cross-entropy over each row of V logits (row stride ld):
     * loss[r] = lse_r - logits[r, target[r]], lse[r] saved. A target < 0 is outside
     * these columns (a vocab slice of tensor parallelism): loss[r] = lse_r. */
    void (*ce_fwd)(int64_t rows, int64_t V, const float *logits, int64_t ld,
                   const int32_t *target, float *loss, float *lse);
    /* dlogits[r, j] = (exp(logits[r, j] - lse[r]) - [j == target[r]]) * dloss[r] for
     * j < V and 0 for V <= j < Vp; a target < 0 has no one-hot term. dlogits may be
     * logits (in place: the probabilities are never stored). Written, not accumulated. */
    void (*ce_bwd)(int64_t rows, int64_t V, int64_t Vp, float *dlogits, const float *logits,
                   int64_t ld, const int32_t *target, const float *lse, const float *dloss);
    /* out[r, c0:c1] = wte[tok[r], c0:c1] + wpe[r % T, c0:c1] (rows of C floats) */
    void (*embed_fwd)(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *wte, const float *wpe, float *out);
    /* dwte[tok[r], c0:c1] += dout[r, c0:c1]; dwpe[r % T, c0:c1] += dout[r, c0:c1], rows
     * in order (a thread owns a column slice: deterministic, no conflicts) */
    void (*embed_bwd)(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *dout, float *dwte, float *dwpe);
    /* AdamW, one pass: g' = g * gscale; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
     * p -= lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p), bc = 1 - beta^t. */
    void (*adamw)(int64_t n, float *p, const float *g, float *m, float *v, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2, float gscale);
    /* sum of squares, accumulated in double */
    double (*sumsq)(int64_t n, const float *x);
    /* The optimizer's one pass: adamw above (bitwise the same p, m, v), returning the sum
     * of the squares of the g it read (before gscale), accumulated in double like sumsq:
     * the gradient norm for free. g is only read (the next backward overwrites it). */
    double (*adamw_sumsq)(int64_t n, float *p, const float *g, float *m, float *v, float lr,
                          float b1, float b2, float eps, float wd, float bc1, float bc2,
                          float gscale);

    /* ---- Llama ops ------------------------------------------------------------
     * RMSNorm over each row of c floats: rstd = 1 / sqrt(mean(x^2) + eps),
     * out = x * rstd * w; saves rstd per row. out may be x. */
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int64_t rows,
                        int64_t c, float eps);
    /* With xhat = x rstd and dn = w dout: dx += rstd (dn - xhat mean(dn xhat)),
     * dw += sum over the given rows of xhat dout (both accumulate). */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int64_t rows, int64_t c);
    /* Rotary embedding in place on T rows of nh heads of hs floats (hs even; row t at
     * x + t*ld, head h at + h*hs), adjacent pairs (2i, 2i+1) of each head rotated by the
     * angle of row t. cs, sn: tables of T rows of hs floats (row t for the position of row
     * t), cs[2i] = cs[2i+1] = cos a_i, sn[2i] = -sin a_i, sn[2i+1] = +sin a_i, so that
     * x' = x * cs + swap_pairs(x) * sn. rope_bwd rotates by -a_i (the transpose): applied
     * to the gradient of the rotated rows it gives the gradient of the unrotated ones. */
    void (*rope_fwd)(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn);
    void (*rope_bwd)(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn);
    /* SwiGLU on rows of a fused gate|up projection: gu row r = gate (h floats) then up
     * (h floats), 2h floats per row; out (rows, h) = silu(gate) * up, silu(g) = g sigmoid(g).
     * Inputs finite. */
    void (*swiglu_fwd)(float *out, const float *gu, int64_t rows, int64_t h);
    /* dgu (rows, 2h): gate half += dout up silu'(gate), up half += dout silu(gate) */
    void (*swiglu_bwd)(float *dgu, const float *dout, const float *gu, int64_t rows, int64_t h);
    /* ---- quantized GEMV (decode with Q8_0 / Q4_0 weights) ----------------------
     * Weights: rows of ggml blocks (include/parlm/quant.h), row i at (char *)w + i * ldw,
     * k / 32 blocks each (k a multiple of 32). Activations are quantized first, to
     * parlm_q8x blocks: the dot of a block is then exact in int32 and only the scale
     * products and the sum over blocks are float. beta == 0: y is write-only. */
    /* x (k floats) -> qx (k / 32 blocks): d = max|x| / 127, q = round(x / d) (as Q8_0's
     * reference quantizer, but d stays f32; an all-zero block has d = 0, q = 0), s = sum q */
    void (*q8_quantize)(int64_t k, const float *x, struct parlm_q8x *qx);
    /* y[i] = alpha * sum_b d_w(i,b) d_x(b) dot(q_w(i,b), q_x(b)) + beta * y[i], i < rows */
    void (*q8_0_gemv)(int64_t rows, int64_t k, const void *w, int64_t ldw,
                      const struct parlm_q8x *qx, float alpha, float beta, float *y);
    void (*q4_0_gemv)(int64_t rows, int64_t k, const void *w, int64_t ldw,
                      const struct parlm_q8x *qx, float alpha, float beta, float *y);
    /* ---- the same GEMVs over rows repacked 8 at a time ("r8", parlm's decode copy) -----
     * One int8 dot instruction then serves 8 rows: x's 4 bytes broadcast against 4
     * consecutive weights of each of 8 rows, and the 8 scales are one f16 -> f32 convert.
     * A matrix of `rows` rows and k weights (k a multiple of 32, nb = k / 32) is
     * ceil(rows / 8) groups; the tail group is padded with zero rows (scale 0, weights 0).
     * Group g, block b is PARLM_Q8R_BLOCK / PARLM_Q4R_BLOCK bytes at
     * w + (g nb + b) * that, holding rows 8g + j (j < 8):
     *   bytes 0..15: the 8 rows' f16 scales, row j at 2j (little-endian, as in a file)
     *   Q8_0 (272 bytes): 8 chunks c of 32 bytes at 16 + 32c; byte 4j + t of chunk c is
     *     row j's weight 4c + t plus 128 (unsigned 0..255: vpdpbusd's unsigned operand).
     *   Q4_0 (144 bytes): 4 chunks c of 32 bytes at 16 + 32c; byte 4j + t of chunk c holds
     *     row j's weight 4c + t (stored q, 0..15, as ggml: w = q - 8) in its low nibble and
     *     weight 16 + 4c + t in its high one.
     * The unsigned weights u (= w + 128 or q = w + 8) give dot(w, x) = dot(u, x) - o sum(x)
     * with o = 128 or 8, and sum(x) is the parlm_q8x field s.
     * y[i - r0] = alpha * sum_b d_w(i,b) d_x(b) dot(q_w(i,b), q_x(b)) + beta * y[i - r0]
     * for the rows r0 <= i < r1 (0 <= r0 <= r1 <= rows, any values: a group partly in
     * range is computed whole and only its rows in range are written). A row's value does
     * not depend on r0, r1. beta == 0: y is write-only. */
    void (*q8_0r_gemv)(int64_t r0, int64_t r1, int64_t k, const void *w,
                       const struct parlm_q8x *qx, float alpha, float beta, float *y);
    void (*q4_0r_gemv)(int64_t r0, int64_t r1, int64_t k, const void *w,
                       const struct parlm_q8x *qx, float alpha, float beta, float *y);
} parlm_kernels;

#define PARLM_Q8R_BLOCK 272 /* bytes of 8 rows x 32 weights, repacked Q8_0 */
#define PARLM_Q4R_BLOCK 144 /* and Q4_0 */

/* One block of quantized activations: 32 int8 and an f32 scale (x ~ d * q), and the sum
 * of the 32 q (for the repacked kernels' unsigned weights). ggml's block_q8_0 stores d as
 * f16; f32 keeps the activation's scale exact, and 40 bytes keep q 4-byte aligned. */
typedef struct parlm_q8x {
    float d;
    int8_t q[32];
    int32_t s;
} parlm_q8x;

/* Fillers, one per ISA directory: each fills every field (an ISA set starts from the
 * scalar table and overrides; tests check that nothing is left at scalar). */
void parlm_kernels_scalar(parlm_kernels *k);
#if defined(__x86_64__) || defined(_M_X64)
void parlm_kernels_avx2(parlm_kernels *k);
void parlm_kernels_avx512(parlm_kernels *k);
/* Upgrades an avx512 table with AVX512-BF16 (vdpbf16ps / vcvtne2ps2bf16) kernels. */
void parlm_kernels_avx512bf16(parlm_kernels *k);
/* Upgrades an avx512 table with AVX512-VNNI (vpdpbusd) quantized GEMV kernels. */
void parlm_kernels_avx512vnni(parlm_kernels *k);
/* Upgrades an avx2 table with AVX-VNNI (VEX vpdpbusd) quantized GEMV kernels. */
void parlm_kernels_avxvnni(parlm_kernels *k);
#endif
#if defined(__aarch64__)
void parlm_kernels_neon(parlm_kernels *k);
/* Upgrades a neon table with the dot-product extension (sdot, armv8.2-a+dotprod). */
void parlm_kernels_neondot(parlm_kernels *k);
#endif

#endif
