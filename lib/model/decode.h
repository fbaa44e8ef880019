/* lib/model/decode.h — internal: one decode step of GPT-2 or Llama (one new token against the KV
 * cache) run inside ONE OpenMP parallel region, for lib/model/model.c's parlm_gpt_infer.
 * The model hands over plain pointers (f32, or bf16 / Q8_0 / Q4_0 copies of the four
 * matrices per layer and of the LM head), so this file knows nothing of the parameter
 * layout. */
#ifndef PARLM_LIB_DECODE_H
#define PARLM_LIB_DECODE_H
#include <stdint.h>

#include "parlm/model.h"
#include "parlm/status.h"

/* One layer. The matrices are (OC, IC) row-major in the model's wtype: f32 (float), bf16
 * (uint16_t), or rows of ggml blocks (parlm/quant.h; IC a multiple of 32), as they are or
 * repacked 8 rows at a time (qr8 below). Llama: ln1w / ln2w are the RMSNorm weights, qkvw
 * is wq|wk|wv (C + 2 NKV hs rows), fcw is w_gate|w_up (2F rows), fcprojw is w_down, and
 * the biases and ln*b are NULL. */
typedef struct parlm_decode_layer {
    const float *ln1w, *ln1b, *qkvb, *attprojb, *ln2w, *ln2b, *fcb, *fcprojb;
    const void *qkvw, *attprojw, *fcw, *fcprojw;
    /* Llama's wk, wv and w_up where they are matrices of their own (weights read where a
     * file holds them); NULL: their rows follow wq's / w_gate's in qkvw / fcw */
    const void *wk, *wv, *wup;
} parlm_decode_layer;

/* A tensor-parallel shard (tp > 1) holds NH/tp heads (qkvw (3C/tp, C) as [q | k | v] of
 * them, attprojw (C, C/tp)), 4C/tp hidden units (fcw (4C/tp, C), fcprojw (C, 4C/tp)) and
 * the vocab rows [tp_rank Vp/tp, ...) of lm_head; its KV cache rows are C/tp wide (Llama:
 * NKV/tp key/value heads, F/tp hidden units, fcw [gate | up] of them). The
 * projections' partial outputs are summed over the group (comm->allreduce_sum) before
 * the replicated bias is added once, and the logit slices are all-gathered, so every
 * rank ends with the same Vp logits. One thread of the team calls comm, between
 * barriers. */
typedef struct parlm_decode_model {
    int L, C, NH, Vp, max_seq;        /* full sizes */
    int llama;                        /* 1: Llama layers (RMSNorm, RoPE, GQA, SwiGLU) */
    int NKV, F;                       /* key/value heads, MLP hidden units (GPT-2: NH, 4C) */
    float eps;                        /* Llama: RMSNorm epsilon */
    const float *rope_cos, *rope_sin; /* Llama: (max_seq, C/NH) rotary tables
                                       * (parlm_rope_table) */
    int wtype;                        /* PARLM_WT_F32, _BF16, _Q8_0 or _Q4_0: the matrices' and
                                       * lm_head's storage */
    int qr8;                          /* Q8_0 / Q4_0 rows repacked 8 at a time (parlm_qrepack),
                                       * else plain rows (parlm_qlayout) */
    const parlm_decode_layer *layers; /* L of them */
    const float *lnfw, *lnfb;
    const void *lm_head;              /* (Vp/tp, C): the tied token embedding (its slice) */
    int head_rows;                    /* rows lm_head holds (the real vocabulary of a file's
                                       * matrix: the padding rows' logits are 0); 0: Vp/tp */
    float *kv;                        /* KV cache (L, 2, max_seq, NKV/tp * C/NH) */
    int tp, tp_rank;                  /* 0 or 1, 0: the whole model */
    const parlm_gpt_tp_comm *comm;    /* tp > 1 */
} parlm_decode_model;

/* Floats of scratch parlm_decode_step needs for d's sizes with `threads` OpenMP threads
 * (enough for every weight type). */
int64_t parlm_decode_scratch(const parlm_decode_model *d, int threads);

/* x (C floats, the embedded token at position pos, 0 <= pos < max_seq) runs through the
 * model: writes k and v of pos into the cache (positions < pos must be there already;
 * Llama: k rotated) and logits (Vp floats, all of them also on a shard). x is overwritten
 * (the final residual stream). `scratch` holds parlm_decode_scratch(d, threads) floats, threads
 * >= 1 (the team size asked for). Every output element is computed the same way whatever
 * the thread count: the result is bitwise independent of it. Arguments are the caller's
 * to check; a failed collective is returned (the logits are then garbage). */
parlm_status parlm_decode_step(const parlm_decode_model *d, float *x, int pos, float *logits,
                               float *scratch, int threads);
#endif
