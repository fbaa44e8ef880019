/* parlm/sample.h — choosing the next token from logits (greedy, temperature, top-k,
 * top-p) and the seeded generator behind it: what every decoder (parlm-generate,
 * parlm-serve, the trainer's samples) shares, apart from any model. */
#ifndef PARLM_SAMPLE_H
#define PARLM_SAMPLE_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Picks the next token from logits (V): greedy when temperature == 0 or top_k == 1, else
 * a sample at this temperature from the top_k most likely tokens (0 = all) and within
 * them the smallest set with probability >= top_p (1 = all). rng is the generator's state. */
PARLM_API parlm_status parlm_sample(const float *logits, int V, float temperature, int top_k,
                                    float top_p, uint64_t *rng, int32_t *out);
/* The generator behind parlm_sample (splitmix64): returns the next 64 random bits. */
PARLM_API uint64_t parlm_rng_next(uint64_t *state);

#ifdef __cplusplus
}
#endif
#endif
