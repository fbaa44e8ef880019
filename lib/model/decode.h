/* lib/model/decode.h — internal: one decode step of GPT-2 (a single new token against the KV
 * cache) run inside ONE OpenMP parallel region, for lib/model/model.c's parlm_gpt_infer.
 * The model hands over plain pointers (f32, or bf16 copies of the four matrices per
 * layer and of the LM head), so this file knows nothing of the parameter layout. */
#ifndef PARLM_LIB_DECODE_H
#define PARLM_LIB_DECODE_H
#include <stdint.h>

#include "parlm/status.h"

/* One layer. The matrices are (OC, IC) row-major: f32 (float) or bf16 (uint16_t). */
typedef struct parlm_decode_layer {
    const float *ln1w, *ln1b, *qkvb, *attprojb, *ln2w, *ln2b, *fcb, *fcprojb;
    const void *qkvw, *attprojw, *fcw, *fcprojw;
} parlm_decode_layer;

typedef struct parlm_decode_model {
    int L, C, NH, Vp, max_seq, bf16;  /* bf16: the matrices and lm_head are uint16_t */
    const parlm_decode_layer *layers; /* L of them */
    const float *lnfw, *lnfb;
    const void *lm_head;              /* (Vp, C): the tied token embedding */
    float *kv;                        /* KV cache (L, 2, max_seq, C) */
} parlm_decode_model;

/* Floats of scratch parlm_decode_step needs with `threads` OpenMP threads. */
int64_t parlm_decode_scratch(int C, int NH, int threads);

/* x (C floats, the embedded token at position pos, 0 <= pos < max_seq) runs through the
 * model: writes k and v of pos into the cache (positions < pos must be there already)
 * and logits (Vp floats). x is overwritten (the final residual stream). `scratch` holds
 * parlm_decode_scratch(C, NH, threads) floats, threads >= 1 (the team size asked for).
 * Every output element is computed the same way whatever the thread count: the result
 * is bitwise independent of it. Arguments are the caller's to check. */
parlm_status parlm_decode_step(const parlm_decode_model *d, float *x, int pos, float *logits,
                               float *scratch, int threads);
#endif
