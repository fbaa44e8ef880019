/* lib/model/sample.c — choosing the next token from logits: greedy, or temperature sampling
 * restricted to the top-k tokens and to the smallest set whose probability reaches top-p.
 * The candidates are kept in a size-k min-heap (top-k) before any sort, so sampling from
 * 50k logits with k = 40 costs one pass over the logits. */
#include <math.h>
#include <stdlib.h>

#include "../../base/error.h"
#include "parlm/model.h"
#include "parlm/sample.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

static int cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* ties: lower id first (deterministic) */
}

static void sift_down(cand *h, int n, int i) /* min-heap by logit */
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && h[c + 1].logit < h[c].logit)
            c++;
        if (h[c].logit >= h[i].logit)
            return;
        cand t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

uint64_t parlm_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

parlm_status parlm_sample(const float *logits, int V, float temperature, int top_k, float top_p,
                          uint64_t *rng, int32_t *out)
{
    if (!logits || !rng || !out || V < 1)
        return parlm_error(PARLM_EINVAL, "parlm_sample: null argument or V < 1");
    if (!(temperature >= 0) || top_k < 0 || !(top_p > 0 && top_p <= 1))
        return parlm_error(PARLM_EINVAL, "parlm_sample: need temperature >= 0, top_k >= 0, "
                           "0 < top_p <= 1 (got %g, %d, %g)", temperature, top_k, top_p);
    if (temperature == 0 || top_k == 1) { /* greedy */
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        *out = best;
        return PARLM_OK;
    }
    int k = top_k && top_k < V ? top_k : V;
    cand *c = malloc((size_t)k * sizeof *c);
    if (!c)
        return parlm_error(PARLM_ENOMEM, "parlm_sample: out of memory");
    for (int i = 0; i < k; i++)
        c[i] = (cand){logits[i], i};
    if (k < V) {
        for (int i = k / 2 - 1; i >= 0; i--)
            sift_down(c, k, i);
        for (int i = k; i < V; i++)
            if (logits[i] > c[0].logit) {
                c[0] = (cand){logits[i], i};
                sift_down(c, k, 0);
            }
    }
    qsort(c, (size_t)k, sizeof *c, cand_desc);
    /* softmax over the candidates at this temperature */
    double sum = 0;
    float mx = c[0].logit;
    for (int i = 0; i < k; i++) {
        c[i].logit = (float)exp((double)(c[i].logit - mx) / temperature);
        sum += c[i].logit;
    }
    int n = k; /* nucleus: the smallest prefix reaching top_p of the mass */
    if (top_p < 1) {
        double acc = 0;
        for (n = 0; n < k;) {
            acc += c[n++].logit / sum;
            if (acc >= top_p)
                break;
        }
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += c[i].logit;
    }
    double r = (double)(parlm_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0;
    int32_t pick = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += c[i].logit;
        if (r < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(c);
    *out = pick;
    return PARLM_OK;
}
