/* lib/model/model.c — GPT-2: parameters, forward, backward, AdamW update, KV-cache inference.
 * Layer by layer, llm.c style, on the library's kernels: parlm_sgemm (or bf16 GEMM) for
 * the linear layers, fused attention and cross-entropy, layernorm/GELU/residual ops.
 * Everything is allocated at create/setup; a training step allocates nothing except the
 * small per-call scratch of attention backward. Layout: see parlm/model.h. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "decode.h"
#include "../core/dispatch.h"
#include "../core/error.h"
#include "../core/parallel.h"
#include "parlm/gemm.h"
#include "parlm/model.h"
#include "parlm/ops.h"
#include "parlm/tensor.h"

/* one parameter tensor of the flat buffer */
typedef struct tensor_info {
    const char *name;
    int layer;         /* -1 embeddings, 0..L-1, L final layernorm */
    int64_t off, n;
    int decay;         /* weight decay applies (2-D weights) */
} tensor_info;

/* views of one layer's tensors in a flat buffer (parameters or gradients) */
typedef struct layer_views {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} layer_views;

enum { T_LN1W, T_LN1B, T_QKVW, T_QKVB, T_ATTPROJW, T_ATTPROJB, T_LN2W, T_LN2B, T_FCW, T_FCB,
       T_FCPROJW, T_FCPROJB, T_PER_LAYER };

/* activations of one layer (training arena), shapes with N = B*T rows */
typedef struct layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C) (N) (N) */
    float *qkv;                       /* (N,3C) */
    float *atty, *att_lse;            /* (N,C) (B,NH,T) */
    float *res2;                      /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C) (N) (N) */
    float *fch, *fch_gelu;            /* (N,4C) (N,4C) */
    float *res3;                      /* (N,C) residual after the MLP = next layer's input */
} layer_acts;

struct parlm_gpt {
    parlm_gpt_config cfg;
    int64_t nparams;
    float *params, *grads, *m, *v;
    int64_t step;
    tensor_info *tensors;
    int ntensors;
    int64_t layer_off0, layer_size;
    /* bf16 matmuls */
    int bf16, bf16_stale;
    uint16_t *params_bf16, *xa_bf16, *xb_bf16;
    int64_t bf16_scratch;
    /* training arena */
    int B, T, training;
    float *arena;
    float *encoded, *lnf, *lnf_mean, *lnf_rstd, *logits, *losses, *ce_lse, *dloss;
    layer_acts *acts;
    float *d_res, *d_ln, *d_atty, *d_qkv, *d_fch, *d_fch_gelu; /* backward scratch */
    const int32_t *inputs, *targets; /* of the last forward (borrowed until backward) */
    int have_forward;
    /* backward progress reports (overlapped gradient communication) */
    parlm_grad_ready_fn hook;
    void *hook_arg;
    int64_t ready_from, head_ready;
    parlm_cancel_fn cancel; /* asked between layers (parlm_gpt_set_cancel) */
    void *cancel_arg;
    int grads_external, params_external; /* the caller's (parlm_gpt_set_*_buffer) */
    int defer_tok, tok_rows_valid; /* deferred token-lookup gradient (d_res holds the rows) */
    int grads_zero; /* the fused optimizer step left every gradient 0: zero_grad is free */
    /* inference */
    float *kv, *inf;  /* KV cache (L, 2, maxT, C); inference activations */
    parlm_decode_layer *dec_layers; /* decode: the weights of each layer (L) */
    float *dec_scratch;
    int dec_threads;  /* threads dec_scratch is sized for */
};

/* ---- configuration ------------------------------------------------------------------ */

parlm_status parlm_gpt_preset(const char *name, parlm_gpt_config *cfg)
{
    static const struct { const char *name; int L, NH, C; } presets[] = {
        {"tiny", 2, 2, 64},    {"small", 4, 4, 256},  {"d6", 6, 6, 384},
        {"d12", 12, 12, 768},  {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280},
        {"d48", 48, 25, 1600},
    };
    if (!name || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_preset: null argument");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(name, presets[i].name)) {
            cfg->n_layer = presets[i].L;
            cfg->n_head = presets[i].NH;
            cfg->n_embd = presets[i].C;
            if (cfg->max_seq <= 0)
                cfg->max_seq = 1024;
            if (cfg->vocab <= 0)
                cfg->vocab = 50257;
            cfg->vocab_pad = 0;
            return PARLM_OK;
        }
    return parlm_error(PARLM_EINVAL, "unknown model preset '%s' (tiny, small, d6, d12, d24, d36, "
                       "d48)", name);
}

static parlm_status check_config(parlm_gpt_config *c)
{
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->max_seq < 1 || c->vocab < 1)
        return parlm_error(PARLM_EINVAL, "model config: layers, heads, channels, max_seq and "
                           "vocab must be >= 1 (got %d, %d, %d, %d, %d)", c->n_layer, c->n_head,
                           c->n_embd, c->max_seq, c->vocab);
    if (c->n_embd % c->n_head)
        return parlm_error(PARLM_EINVAL, "model config: channels %d not a multiple of heads %d",
                           c->n_embd, c->n_head);
    if (c->n_embd / c->n_head > 256)
        return parlm_error(PARLM_EINVAL, "model config: head size %d > 256",
                           c->n_embd / c->n_head);
    if (c->n_layer > 1024 || c->n_embd > 65536 || c->max_seq > (1 << 20) || c->vocab > (1 << 24))
        return parlm_error(PARLM_EINVAL, "model config: sizes out of range");
    if (c->vocab_pad == 0)
        c->vocab_pad = (c->vocab + 127) / 128 * 128;
    if (c->vocab_pad < c->vocab)
        return parlm_error(PARLM_EINVAL, "model config: padded vocab %d < vocab %d", c->vocab_pad,
                           c->vocab);
    return PARLM_OK;
}

parlm_status parlm_gpt_config_num_params(const parlm_gpt_config *cfg, int64_t *n)
{
    if (!cfg || !n)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_config_num_params: null argument");
    parlm_gpt_config c = *cfg;
    parlm_status st = check_config(&c);
    if (st != PARLM_OK)
        return st;
    int64_t C = c.n_embd; /* the sizes are bounded by check_config: no overflow */
    *n = ((int64_t)c.vocab_pad + c.max_seq) * C + c.n_layer * (12 * C * C + 13 * C) + 2 * C;
    return PARLM_OK;
}

static void add_tensor(parlm_gpt *m, const char *name, int layer, int64_t n, int decay)
{
    tensor_info *t = &m->tensors[m->ntensors++];
    t->name = name;
    t->layer = layer;
    t->off = m->nparams;
    t->n = n;
    t->decay = decay;
    m->nparams += n;
}

static void layout(parlm_gpt *m)
{
    const parlm_gpt_config *c = &m->cfg;
    int64_t C = c->n_embd;
    static const char *const names[T_PER_LAYER] = {
        "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
        "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"};
    const int64_t sizes[T_PER_LAYER] = {C, C, 3 * C * C, 3 * C, C * C, C,
                                        C, C, 4 * C * C, 4 * C, 4 * C * C, C};
    const int decay[T_PER_LAYER] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0};
    m->nparams = 0;
    m->ntensors = 0;
    add_tensor(m, "wte", -1, (int64_t)c->vocab_pad * C, 1);
    add_tensor(m, "wpe", -1, (int64_t)c->max_seq * C, 1);
    m->layer_off0 = m->nparams;
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < T_PER_LAYER; i++)
            add_tensor(m, names[i], l, sizes[i], decay[i]);
    m->layer_size = (m->nparams - m->layer_off0) / c->n_layer;
    add_tensor(m, "lnfw", c->n_layer, C, 0);
    add_tensor(m, "lnfb", c->n_layer, C, 0);
}

static layer_views lview(const parlm_gpt *m, float *base, int l)
{
    const tensor_info *t = &m->tensors[2 + l * T_PER_LAYER];
    layer_views v = {
        base + t[T_LN1W].off, base + t[T_LN1B].off, base + t[T_QKVW].off, base + t[T_QKVB].off,
        base + t[T_ATTPROJW].off, base + t[T_ATTPROJB].off, base + t[T_LN2W].off,
        base + t[T_LN2B].off, base + t[T_FCW].off, base + t[T_FCB].off, base + t[T_FCPROJW].off,
        base + t[T_FCPROJB].off};
    return v;
}

#define WTE(base) ((base) + m->tensors[0].off)
#define WPE(base) ((base) + m->tensors[1].off)
#define LNFW(base) ((base) + m->tensors[m->ntensors - 2].off)
#define LNFB(base) ((base) + m->tensors[m->ntensors - 1].off)

/* ---- creation and initialization ------------------------------------------------------- */

/* N(0, std) by Box-Muller, from a generator seeded per tensor (so the init of one tensor
 * does not depend on the sizes of the others). */
static void fill_normal(float *x, int64_t n, float std, uint64_t seed)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(parlm_rng_next(&s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
        double u2 = (double)(parlm_rng_next(&s) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(std * r * cos(2.0 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = (float)(std * r * sin(2.0 * M_PI * u2));
    }
}

static void init_params(parlm_gpt *m, uint64_t seed)
{
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->ntensors; i++) {
        const tensor_info *t = &m->tensors[i];
        float *p = m->params + t->off;
        const char *nm = t->name;
        if (!strcmp(nm, "ln1w") || !strcmp(nm, "ln2w") || !strcmp(nm, "lnfw")) {
            for (int64_t k = 0; k < t->n; k++)
                p[k] = 1.0f;
        } else if (t->decay) {
            int resid = !strcmp(nm, "attprojw") || !strcmp(nm, "fcprojw");
            fill_normal(p, t->n, resid ? resid_std : 0.02f, seed * 1000003ULL + (uint64_t)i);
        } /* biases stay 0 */
    }
    /* padded vocabulary rows of wte stay 0: their logits are masked out of the loss */
    int64_t C = m->cfg.n_embd;
    memset(WTE(m->params) + (int64_t)m->cfg.vocab * C, 0,
           (size_t)((m->cfg.vocab_pad - m->cfg.vocab) * C) * sizeof(float));
}

void parlm_gpt_free(parlm_gpt *m)
{
    if (!m)
        return;
    if (!m->params_external)
        parlm_free(m->params);
    if (!m->grads_external)
        parlm_free(m->grads);
    parlm_free(m->m);
    parlm_free(m->v);
    parlm_free(m->params_bf16);
    parlm_free(m->xa_bf16);
    parlm_free(m->xb_bf16);
    parlm_free(m->arena);
    parlm_free(m->kv);
    parlm_free(m->inf);
    parlm_free(m->dec_scratch);
    free(m->dec_layers);
    free(m->acts);
    free(m->tensors);
    free(m);
}

parlm_status parlm_gpt_create(parlm_gpt **out, const parlm_gpt_config *cfg, uint64_t seed)
{
    if (!out || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_create: null argument");
    *out = NULL;
    parlm_gpt_config c = *cfg;
    parlm_status st = check_config(&c);
    if (st != PARLM_OK)
        return st;
    parlm_gpt *m = calloc(1, sizeof *m);
    if (!m)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: out of memory");
    m->cfg = c;
    m->tensors = calloc((size_t)(4 + T_PER_LAYER * c.n_layer), sizeof *m->tensors);
    if (!m->tensors) {
        free(m);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: out of memory");
    }
    layout(m);
    m->params = parlm_alloc((size_t)m->nparams, sizeof(float));
    m->grads = parlm_alloc((size_t)m->nparams, sizeof(float));
    if (!m->params || !m->grads) {
        parlm_gpt_free(m);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: %lld parameters do not fit in memory",
                           (long long)m->nparams);
    }
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
    memset(m->params, 0, (size_t)m->nparams * sizeof(float)); /* biases start at 0 */
    init_params(m, seed);
    m->bf16_stale = 1;
    *out = m;
    return PARLM_OK;
}

parlm_gpt_config parlm_gpt_get_config(const parlm_gpt *m)
{
    parlm_gpt_config z = {0, 0, 0, 0, 0, 0};
    return m ? m->cfg : z;
}
int64_t parlm_gpt_num_params(const parlm_gpt *m) { return m ? m->nparams : 0; }
float *parlm_gpt_params(parlm_gpt *m)
{
    if (m)
        m->bf16_stale = 1; /* the caller may write them */
    return m ? m->params : NULL;
}
float *parlm_gpt_grads(parlm_gpt *m)
{
    if (!m)
        return NULL;
    m->grads_zero = 0; /* the caller may write through the pointer */
    return m->grads;
}
float *parlm_gpt_adam_m(parlm_gpt *m) { return m ? m->m : NULL; }
float *parlm_gpt_adam_v(parlm_gpt *m) { return m ? m->v : NULL; }
int64_t parlm_gpt_step(const parlm_gpt *m) { return m ? m->step : 0; }

parlm_status parlm_gpt_set_step(parlm_gpt *m, int64_t step)
{
    if (!m || step < 0)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_step: null model or negative step");
    m->step = step;
    return PARLM_OK;
}

parlm_status parlm_gpt_layer_range(const parlm_gpt *m, int layer, int64_t *offset, int64_t *count)
{
    if (!m || !offset || !count || layer < -1 || layer > m->cfg.n_layer)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_layer_range: bad argument (layer %d)", layer);
    if (layer == -1) {
        *offset = 0;
        *count = m->layer_off0;
    } else if (layer < m->cfg.n_layer) {
        *offset = m->layer_off0 + layer * m->layer_size;
        *count = m->layer_size;
    } else {
        *offset = m->layer_off0 + (int64_t)m->cfg.n_layer * m->layer_size;
        *count = m->nparams - *offset;
    }
    return PARLM_OK;
}

int parlm_gpt_num_tensors(const parlm_gpt *m) { return m ? m->ntensors : 0; }

parlm_status parlm_gpt_tensor_info(const parlm_gpt *m, int i, const char **name, int *layer,
                                   int64_t *offset, int64_t *count)
{
    if (!m || i < 0 || i >= m->ntensors)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_tensor_info: no tensor %d", i);
    const tensor_info *t = &m->tensors[i];
    if (name)
        *name = t->name;
    if (layer)
        *layer = t->layer;
    if (offset)
        *offset = t->off;
    if (count)
        *count = t->n;
    return PARLM_OK;
}

/* ---- bf16 and matmuls ------------------------------------------------------------------- */

parlm_status parlm_gpt_set_bf16(parlm_gpt *m, int on)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_bf16: null model");
    if (on && !m->params_bf16) {
        m->params_bf16 = parlm_alloc((size_t)m->nparams, 2);
        if (!m->params_bf16)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_set_bf16: bf16 weight copy");
    }
    m->bf16 = on != 0;
    m->bf16_stale = 1;
    return PARLM_OK;
}

/* (re)allocates the two bf16 activation scratch buffers to hold n values each */
static parlm_status bf16_scratch(parlm_gpt *m, int64_t n)
{
    if (n <= m->bf16_scratch)
        return PARLM_OK;
    parlm_free(m->xa_bf16);
    parlm_free(m->xb_bf16);
    m->xa_bf16 = parlm_alloc((size_t)n, 2);
    m->xb_bf16 = parlm_alloc((size_t)n, 2);
    m->bf16_scratch = m->xa_bf16 && m->xb_bf16 ? n : 0;
    if (!m->bf16_scratch)
        return parlm_error(PARLM_ENOMEM, "bf16 activation scratch of %lld values", (long long)n);
    return PARLM_OK;
}

static parlm_status refresh_bf16(parlm_gpt *m)
{
    if (!m->bf16 || !m->bf16_stale)
        return PARLM_OK;
    m->bf16_stale = 0;
    return parlm_f32_to_bf16(m->params, m->params_bf16, m->nparams);
}

#define TRY(x)                                                                                  \
    do {                                                                                        \
        parlm_status st_ = (x);                                                                 \
        if (st_ != PARLM_OK)                                                                    \
            return st_;                                                                         \
    } while (0)

/* out (N,OC) = inp (N,IC) W^T (W is (OC,IC)) + b (OC, may be NULL) */
static parlm_status matmul_fwd(parlm_gpt *m, float *out, const float *inp, const float *W,
                               const float *b, int64_t N, int64_t IC, int64_t OC)
{
    if (m->bf16) {
        const uint16_t *Wb = m->params_bf16 + (W - m->params);
        if (N == 1) { /* decode: stream bf16 weights against the f32 activation */
            TRY(parlm_gemv_bf16(OC, IC, 1.0f, Wb, IC, inp, 0.0f, out));
        } else {
            TRY(bf16_scratch(m, N * IC));
            TRY(parlm_f32_to_bf16(inp, m->xa_bf16, N * IC));
            TRY(parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_TRANS, N, OC, IC, 1.0f, m->xa_bf16, IC, Wb,
                                IC, 0.0f, out, OC));
        }
    } else {
        TRY(parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, N, OC, IC, 1.0f, inp, IC, W, IC, 0.0f, out,
                        OC));
    }
    if (b)
        TRY(parlm_bias_forward(out, b, N, OC));
    return PARLM_OK;
}

/* dinp (N,IC) = dout (N,OC) W (written); dW (OC,IC) += dout^T inp; db (OC) += colsum(dout) */
static parlm_status matmul_bwd(parlm_gpt *m, float *dinp, float *dW, float *db, const float *dout,
                               const float *inp, const float *W, int64_t N, int64_t IC, int64_t OC)
{
    if (m->bf16) {
        const uint16_t *Wb = m->params_bf16 + (W - m->params);
        TRY(bf16_scratch(m, N * (IC > OC ? IC : OC)));
        TRY(parlm_f32_to_bf16(dout, m->xa_bf16, N * OC));
        TRY(parlm_f32_to_bf16(inp, m->xb_bf16, N * IC));
        TRY(parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_NO_TRANS, N, IC, OC, 1.0f, m->xa_bf16, OC, Wb,
                            IC, 0.0f, dinp, IC));
        TRY(parlm_gemm_bf16(PARLM_TRANS, PARLM_NO_TRANS, OC, IC, N, 1.0f, m->xa_bf16, OC,
                            m->xb_bf16, IC, 1.0f, dW, IC));
    } else {
        TRY(parlm_sgemm(PARLM_NO_TRANS, PARLM_NO_TRANS, N, IC, OC, 1.0f, dout, OC, W, IC, 0.0f,
                        dinp, IC));
        TRY(parlm_sgemm(PARLM_TRANS, PARLM_NO_TRANS, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dW,
                        IC));
    }
    if (db)
        TRY(parlm_bias_backward(db, dout, N, OC));
    return PARLM_OK;
}

/* ---- training arena ------------------------------------------------------------------------ */

parlm_status parlm_gpt_setup(parlm_gpt *m, int B, int T, int training)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_setup: null model");
    if (B < 1 || T < 1 || T > m->cfg.max_seq)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_setup: need B >= 1 and 1 <= T <= %d (got B=%d "
                           "T=%d)", m->cfg.max_seq, B, T);
    int64_t N = (int64_t)B * T, C = m->cfg.n_embd, L = m->cfg.n_layer, Vp = m->cfg.vocab_pad;
    int64_t NH = m->cfg.n_head;
    /* per layer: ln1 C, stats 2, qkv 3C, atty C, lse NH, res2 C, ln2 C, stats 2, fch 4C,
     * fch_gelu 4C, res3 C  => 16C + 4 + NH per row */
    int64_t per_layer = N * (16 * C + 4 + NH);
    int64_t total = N * C /* encoded */ + L * per_layer + N * (C + 2) /* lnf */ + N * Vp +
                    3 * N /* losses, ce_lse, dloss */;
    if (training)
        total += N * C * 3 + N * 3 * C + N * 4 * C * 2; /* d_res d_ln d_atty d_qkv d_fch d_fch_gelu */
    if (N > (int64_t)1 << 40 || total > ((int64_t)1 << 60) / 4)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_setup: B*T = %lld is too large", (long long)N);
    float *arena = parlm_alloc((size_t)total, sizeof(float));
    layer_acts *acts = calloc((size_t)L, sizeof *acts);
    if (!arena || !acts) {
        parlm_free(arena);
        free(acts);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_setup: activations for B=%d T=%d need %.1f GiB",
                           B, T, (double)total * 4 / (1 << 30));
    }
    parlm_free(m->arena);
    free(m->acts);
    m->arena = arena;
    m->acts = acts;
    float *p = arena;
#define TAKE(n) (p += (n), p - (n))
    m->encoded = TAKE(N * C);
    for (int64_t l = 0; l < L; l++) {
        layer_acts *a = &acts[l];
        a->ln1 = TAKE(N * C), a->ln1_mean = TAKE(N), a->ln1_rstd = TAKE(N);
        a->qkv = TAKE(3 * N * C), a->atty = TAKE(N * C), a->att_lse = TAKE(N * NH);
        a->res2 = TAKE(N * C);
        a->ln2 = TAKE(N * C), a->ln2_mean = TAKE(N), a->ln2_rstd = TAKE(N);
        a->fch = TAKE(4 * N * C), a->fch_gelu = TAKE(4 * N * C), a->res3 = TAKE(N * C);
    }
    m->lnf = TAKE(N * C), m->lnf_mean = TAKE(N), m->lnf_rstd = TAKE(N);
    m->logits = TAKE(N * Vp);
    m->losses = TAKE(N), m->ce_lse = TAKE(N), m->dloss = TAKE(N);
    m->d_res = m->d_ln = m->d_atty = m->d_qkv = m->d_fch = m->d_fch_gelu = NULL;
    if (training) {
        m->d_res = TAKE(N * C), m->d_ln = TAKE(N * C), m->d_atty = TAKE(N * C);
        m->d_qkv = TAKE(3 * N * C), m->d_fch = TAKE(4 * N * C), m->d_fch_gelu = TAKE(4 * N * C);
    }
#undef TAKE
    m->B = B, m->T = T, m->training = training;
    m->have_forward = 0;
    return PARLM_OK;
}

/* ---- forward and backward ---------------------------------------------------------------- */

#define CHECK_CANCEL(m, what)                                                                   \
    do {                                                                                        \
        if ((m)->cancel && (m)->cancel((m)->cancel_arg))                                        \
            return parlm_error(PARLM_ECANCELED, "%s canceled", what);                           \
    } while (0)

parlm_status parlm_gpt_forward(parlm_gpt *m, const int32_t *inputs, const int32_t *targets,
                               float *loss)
{
    if (!m || !inputs)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: null model or inputs");
    if (!m->arena)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: call parlm_gpt_setup first");
    if (targets && !loss)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: targets given but loss is NULL");
    const parlm_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, NH = c->n_head;
    int64_t N = (int64_t)B * T;
    m->have_forward = 0;
    TRY(refresh_bf16(m));
    TRY(parlm_embedding_forward(m->encoded, inputs, WTE(m->params), WPE(m->params), B, T, C,
                                c->vocab));
    const float *res = m->encoded;
    for (int l = 0; l < c->n_layer; l++) {
        CHECK_CANCEL(m, "forward");
        layer_views w = lview(m, m->params, l);
        layer_acts *a = &m->acts[l];
        TRY(parlm_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, res, w.ln1w, w.ln1b, N, C));
        TRY(matmul_fwd(m, a->qkv, a->ln1, w.qkvw, w.qkvb, N, C, 3 * C));
        TRY(parlm_attention_forward(a->atty, a->att_lse, a->qkv, B, T, C, NH));
        TRY(matmul_fwd(m, a->res2, a->atty, w.attprojw, w.attprojb, N, C, C)); /* attproj */
        TRY(parlm_add(a->res2, a->res2, res, N * C));
        TRY(parlm_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w.ln2w, w.ln2b, N,
                                    C));
        TRY(matmul_fwd(m, a->fch, a->ln2, w.fcw, w.fcb, N, C, 4 * C));
        TRY(parlm_gelu_forward(a->fch_gelu, a->fch, N * 4 * C));
        TRY(matmul_fwd(m, a->res3, a->fch_gelu, w.fcprojw, w.fcprojb, N, 4 * C, C)); /* fcproj */
        TRY(parlm_add(a->res3, a->res3, a->res2, N * C));
        res = a->res3;
    }
    CHECK_CANCEL(m, "forward");
    TRY(parlm_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, res, LNFW(m->params),
                                LNFB(m->params), N, C));
    TRY(matmul_fwd(m, m->logits, m->lnf, WTE(m->params), NULL, N, C, c->vocab_pad));
    m->inputs = inputs;
    m->targets = NULL;
    if (targets) {
        TRY(parlm_crossentropy_forward(m->losses, m->ce_lse, m->logits, targets, N, c->vocab,
                                       c->vocab_pad));
        double sum = 0.0;
        for (int64_t i = 0; i < N; i++)
            sum += m->losses[i];
        *loss = (float)(sum / (double)N);
        m->targets = targets;
    }
    m->have_forward = 1;
    m->tok_rows_valid = 0;
    return PARLM_OK;
}

const float *parlm_gpt_logits(const parlm_gpt *m) { return m && m->have_forward ? m->logits : NULL; }

parlm_status parlm_gpt_set_cancel(parlm_gpt *m, parlm_cancel_fn fn, void *arg)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_cancel: null model");
    m->cancel = fn;
    m->cancel_arg = arg;
    return PARLM_OK;
}

parlm_status parlm_gpt_set_grad_hook(parlm_gpt *m, parlm_grad_ready_fn fn, void *arg)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_grad_hook: null model");
    m->hook = fn;
    m->hook_arg = arg;
    return PARLM_OK;
}

/* *cur (nparams floats) moves into buf, or back into memory of the model's own */
static parlm_status move_buffer(parlm_gpt *m, float **cur, int *external, float *buf,
                                const char *fn)
{
    if (buf && (uintptr_t)buf % 64)
        return parlm_error(PARLM_EINVAL, "%s: buffer %p is not 64-byte aligned", fn, (void *)buf);
    if (buf == *cur)
        return PARLM_OK;
    float *g = buf;
    if (!g && !(g = parlm_alloc((size_t)m->nparams, sizeof(float))))
        return parlm_error(PARLM_ENOMEM, "%s: %lld floats", fn, (long long)m->nparams);
    memcpy(g, *cur, (size_t)m->nparams * sizeof(float));
    if (!*external)
        parlm_free(*cur);
    *cur = g;
    *external = buf != NULL;
    return PARLM_OK;
}

parlm_status parlm_gpt_set_grad_buffer(parlm_gpt *m, float *buf)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_grad_buffer: null model");
    m->grads_zero = 0;
    return move_buffer(m, &m->grads, &m->grads_external, buf, "parlm_gpt_set_grad_buffer");
}

parlm_status parlm_gpt_set_param_buffer(parlm_gpt *m, float *buf)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_param_buffer: null model");
    return move_buffer(m, &m->params, &m->params_external, buf, "parlm_gpt_set_param_buffer");
}

parlm_status parlm_gpt_set_defer_token_grad(parlm_gpt *m, int on)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_defer_token_grad: null model");
    m->defer_tok = on != 0;
    return PARLM_OK;
}

parlm_status parlm_gpt_token_grad_rows(const parlm_gpt *m, const int32_t **tokens,
                                       const float **rows, int64_t *n)
{
    if (!m || !tokens || !rows || !n)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_token_grad_rows: null argument");
    if (!m->tok_rows_valid)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_token_grad_rows: the last backward did not "
                           "defer the token-lookup gradient (or a forward came after it)");
    *tokens = m->inputs;
    *rows = m->d_res;
    *n = (int64_t)m->B * m->T;
    return PARLM_OK;
}

/* Tells the hook that gradients from layer `layer` on are final (layer L: the final
 * layernorm; -1: everything), and again after every op in between with the same offset,
 * so the hook can keep communication moving while backward computes. */
static void grads_ready(parlm_gpt *m, int layer)
{
    int64_t off = 0, n;
    if (!m->hook)
        return;
    if (layer >= 0 && parlm_gpt_layer_range(m, layer, &off, &n) != PARLM_OK)
        return;
    m->ready_from = off;
    m->hook(off, m->head_ready, m->hook_arg);
}

#define TICK(m) ((m)->hook ? (m)->hook((m)->ready_from, (m)->head_ready, (m)->hook_arg) : (void)0)

/* d(wpe)[t] += sum over the batch of dout[b, t] (the lookup's position part alone) */
static void wpe_backward(float *dwpe, const float *dout, int64_t rows, int64_t T, int64_t C)
{
    for (int64_t r = 0; r < rows; r++) {
        float *p = dwpe + (r % T) * C;
        const float *d = dout + r * C;
        for (int64_t c = 0; c < C; c++)
            p[c] += d[c];
    }
}

parlm_status parlm_gpt_zero_grad(parlm_gpt *m)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_zero_grad: null model");
    if (!m->grads_zero)
        memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
    m->grads_zero = 1;
    return PARLM_OK;
}

parlm_status parlm_gpt_backward(parlm_gpt *m, float loss_scale)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_backward: null model");
    if (!m->training || !m->have_forward || !m->targets)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_backward: needs a forward with targets after "
                           "parlm_gpt_setup(..., training = 1)");
    const parlm_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, NH = c->n_head, L = c->n_layer;
    int64_t N = (int64_t)B * T, Vp = c->vocab_pad;
    CHECK_CANCEL(m, "backward");
    for (int64_t i = 0; i < N; i++)
        m->dloss[i] = loss_scale / (float)N;
    /* dlogits overwrite the logits in place */
    TRY(parlm_crossentropy_backward(m->logits, m->logits, m->targets, m->ce_lse, m->dloss, N,
                                    c->vocab, (int)Vp));
    m->have_forward = 0;
    m->tok_rows_valid = 0;
    m->grads_zero = 0;
    m->ready_from = m->nparams;
    m->head_ready = 0;
    const float *res_last = L ? m->acts[L - 1].res3 : m->encoded;
    TRY(matmul_bwd(m, m->d_ln, WTE(m->grads), NULL, m->logits, m->lnf, WTE(m->params), N, C, Vp));
    if (m->defer_tok && m->tensors[0].off == 0) { /* wte is final but for the lookup's rows */
        m->head_ready = m->tensors[0].n;
        TICK(m);
    }
    memset(m->d_res, 0, (size_t)(N * C) * sizeof(float));
    TRY(parlm_layernorm_backward(m->d_res, LNFW(m->grads), LNFB(m->grads), m->d_ln, res_last,
                                 LNFW(m->params), m->lnf_mean, m->lnf_rstd, N, C));
    grads_ready(m, L);
    for (int l = L - 1; l >= 0; l--) {
        CHECK_CANCEL(m, "backward");
        layer_views w = lview(m, m->params, l), g = lview(m, m->grads, l);
        layer_acts *a = &m->acts[l];
        const float *res_in = l ? m->acts[l - 1].res3 : m->encoded;
        /* res3 = res2 + fcproj: d_res is both d(res2) and d(fcproj) */
        TRY(matmul_bwd(m, m->d_fch_gelu, g.fcprojw, g.fcprojb, m->d_res, a->fch_gelu, w.fcprojw,
                       N, 4 * C, C));
        TICK(m);
        memset(m->d_fch, 0, (size_t)(N * 4 * C) * sizeof(float));
        TRY(parlm_gelu_backward(m->d_fch, a->fch, m->d_fch_gelu, N * 4 * C));
        TRY(matmul_bwd(m, m->d_ln, g.fcw, g.fcb, m->d_fch, a->ln2, w.fcw, N, C, 4 * C));
        TICK(m);
        TRY(parlm_layernorm_backward(m->d_res, g.ln2w, g.ln2b, m->d_ln, a->res2, w.ln2w,
                                     a->ln2_mean, a->ln2_rstd, N, C));
        /* res2 = res_in + attproj: d_res is both d(res_in) and d(attproj) */
        TRY(matmul_bwd(m, m->d_atty, g.attprojw, g.attprojb, m->d_res, a->atty, w.attprojw, N, C,
                       C));
        TICK(m);
        memset(m->d_qkv, 0, (size_t)(N * 3 * C) * sizeof(float));
        TRY(parlm_attention_backward(m->d_qkv, m->d_atty, a->qkv, a->atty, a->att_lse, B, T, C,
                                     NH));
        TICK(m);
        TRY(matmul_bwd(m, m->d_ln, g.qkvw, g.qkvb, m->d_qkv, a->ln1, w.qkvw, N, C, 3 * C));
        TRY(parlm_layernorm_backward(m->d_res, g.ln1w, g.ln1b, m->d_ln, res_in, w.ln1w,
                                     a->ln1_mean, a->ln1_rstd, N, C));
        grads_ready(m, l);
    }
    if (m->head_ready) {
        wpe_backward(WPE(m->grads), m->d_res, N, T, C);
        m->tok_rows_valid = 1;
    } else {
        TRY(parlm_embedding_backward(WTE(m->grads), WPE(m->grads), m->d_res, m->inputs, B, T, C,
                                     c->vocab));
    }
    grads_ready(m, -1);
    return PARLM_OK;
}

/* ---- optimizer ---------------------------------------------------------------------------- */

parlm_status parlm_gpt_grad_norm(parlm_gpt *m, float *norm)
{
    if (!m || !norm)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_grad_norm: null argument");
    double s;
    TRY(parlm_sumsq(m->grads, m->nparams, &s));
    *norm = (float)sqrt(s);
    return PARLM_OK;
}

parlm_status parlm_gpt_init_optimizer(parlm_gpt *m)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_init_optimizer: null model");
    if (m->m)
        return PARLM_OK;
    m->m = parlm_alloc((size_t)m->nparams, sizeof(float));
    m->v = parlm_alloc((size_t)m->nparams, sizeof(float));
    if (!m->m || !m->v) {
        parlm_free(m->m), parlm_free(m->v);
        m->m = m->v = NULL;
        return parlm_error(PARLM_ENOMEM, "AdamW state for %lld parameters does not fit in memory",
                           (long long)m->nparams);
    }
    memset(m->m, 0, (size_t)m->nparams * sizeof(float));
    memset(m->v, 0, (size_t)m->nparams * sizeof(float));
    return PARLM_OK;
}

parlm_status parlm_gpt_update_range(parlm_gpt *m, const parlm_adamw_cfg *cfg, float grad_scale,
                                    int64_t t, int64_t off, int64_t n, float *mom1, float *mom2)
{
    if (!m || !cfg || !mom1 || !mom2)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_update_range: null argument");
    if (t < 1 || off < 0 || n < 0 || off > m->nparams - n)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_update_range: range [%lld, %lld) outside the "
                           "%lld parameters, or step %lld < 1", (long long)off,
                           (long long)(off + n), (long long)m->nparams, (long long)t);
    parlm_adamw_cfg no_decay = *cfg;
    no_decay.weight_decay = 0.0f;
    /* the range cut into runs of consecutive tensors with the same decay flag */
    int64_t end = off + n;
    for (int i = 0; i < m->ntensors && off < end; i++) {
        const tensor_info *ti = &m->tensors[i];
        if (ti->off + ti->n <= off)
            continue;
        int j = i + 1;
        while (j < m->ntensors && m->tensors[j].decay == ti->decay && m->tensors[j].off < end)
            j++;
        int64_t run_end = m->tensors[j - 1].off + m->tensors[j - 1].n;
        int64_t len = (run_end < end ? run_end : end) - off, k = off - (end - n);
        TRY(parlm_adamw_update(m->params + off, m->grads + off, mom1 + k, mom2 + k, len,
                               ti->decay ? cfg : &no_decay, t, grad_scale));
        off += len;
        i = j - 1;
    }
    m->bf16_stale = 1;
    return PARLM_OK;
}

parlm_status parlm_gpt_update(parlm_gpt *m, const parlm_adamw_cfg *cfg, float grad_scale)
{
    if (!m || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_update: null argument");
    TRY(parlm_gpt_init_optimizer(m));
    TRY(parlm_gpt_update_range(m, cfg, grad_scale, m->step + 1, 0, m->nparams, m->m, m->v));
    m->step++;
    return PARLM_OK;
}

parlm_status parlm_gpt_optimizer_step(parlm_gpt *m, const parlm_adamw_cfg *cfg, float clip,
                                      float *norm)
{
    if (!m || !cfg || !norm)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_optimizer_step: null argument");
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 &&
          cfg->eps > 0 && isfinite(cfg->lr) && isfinite(cfg->weight_decay) && clip >= 0))
        return parlm_error(PARLM_EINVAL, "parlm_gpt_optimizer_step: need 0 <= beta < 1, "
                           "eps > 0, finite lr and weight decay, clip >= 0");
    TRY(parlm_gpt_init_optimizer(m));
    float scale = 1.0f;
    *norm = NAN;
    if (clip > 0) { /* the clipping factor is needed before the update: a pass of its own */
        TRY(parlm_gpt_grad_norm(m, norm));
        if (!isfinite(*norm))
            return parlm_error(PARLM_EINVAL, "the gradient norm is %g", *norm);
        if (*norm > clip)
            scale = clip / *norm;
    }
    /* the same bias corrections as parlm_adamw_update: bitwise the same step */
    int64_t t = m->step + 1;
    float bc1 = 1.0f - powf(cfg->beta1, (float)t), bc2 = 1.0f - powf(cfg->beta2, (float)t);
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(m->nparams, 1 << 15, omp_get_max_threads());
    double part[256] = {0};
    if (nt > 256)
        nt = 256;
    /* one parallel region for the whole model; each thread's slice is cut at tensor
     * boundaries, where the weight decay switches on and off */
#pragma omp parallel num_threads(nt)
    {
        int th = omp_get_thread_num();
        int64_t i0, i1;
        double s = 0.0;
        parlm_split(m->nparams, 16, th, omp_get_num_threads(), &i0, &i1);
        for (int i = 0; i < m->ntensors && i0 < i1; i++) {
            const tensor_info *ti = &m->tensors[i];
            int64_t a = ti->off > i0 ? ti->off : i0;
            int64_t b = ti->off + ti->n < i1 ? ti->off + ti->n : i1;
            if (b > a)
                s += k->adamw_zero(b - a, m->params + a, m->grads + a, m->m + a, m->v + a,
                                   cfg->lr, cfg->beta1, cfg->beta2, cfg->eps,
                                   ti->decay ? cfg->weight_decay : 0.0f, bc1, bc2, scale);
        }
        part[th] = s;
    }
    double ss = 0.0;
    for (int i = 0; i < nt; i++) /* fixed order: same thread count, same bits */
        ss += part[i];
    m->step++;
    m->bf16_stale = 1;
    m->grads_zero = 1;
    if (clip > 0)
        return PARLM_OK;
    *norm = (float)sqrt(ss);
    if (!isfinite(*norm))
        return parlm_error(PARLM_EINVAL, "the gradient norm is %g (the parameters took the "
                           "step)", *norm);
    return PARLM_OK;
}

/* ---- generation with a KV cache ------------------------------------------------------------ */

/* One token at pos (the cache holds positions < pos) in one parallel region: see
 * lib/decode.c. Threads: all, but no more than one per 16K weights of the smallest
 * matrix (C x C), below which the barriers cost more than the slices save. */
static parlm_status decode_one(parlm_gpt *m, int32_t token, int pos, float *logits)
{
    const parlm_gpt_config *c = &m->cfg;
    int64_t C = c->n_embd;
    int nt = parlm_threads_for(C * C, (int64_t)1 << 14, omp_get_max_threads());
    if (!m->dec_layers && !(m->dec_layers = calloc((size_t)c->n_layer, sizeof *m->dec_layers)))
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: out of memory");
    if (nt > m->dec_threads) {
        parlm_free(m->dec_scratch);
        m->dec_scratch = parlm_alloc((size_t)parlm_decode_scratch((int)C, c->n_head, nt),
                                     sizeof(float));
        m->dec_threads = m->dec_scratch ? nt : 0;
        if (!m->dec_scratch)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: out of memory");
    }
    /* the bf16 copy has the layout of the f32 parameters: same offsets */
    const uint16_t *hb = m->params_bf16;
#define DEC_W(p) (m->bf16 ? (const void *)(hb + ((p) - m->params)) : (const void *)(p))
    for (int l = 0; l < c->n_layer; l++) {
        layer_views w = lview(m, m->params, l);
        parlm_decode_layer d = {w.ln1w, w.ln1b, w.qkvb, w.attprojb, w.ln2w, w.ln2b, w.fcb,
                                w.fcprojb, DEC_W(w.qkvw), DEC_W(w.attprojw), DEC_W(w.fcw),
                                DEC_W(w.fcprojw)};
        m->dec_layers[l] = d;
    }
    parlm_decode_model d = {c->n_layer, (int)C, c->n_head, c->vocab_pad, c->max_seq, m->bf16,
                            m->dec_layers, LNFW(m->params), LNFB(m->params),
                            DEC_W(WTE(m->params)), m->kv};
#undef DEC_W
    float *x = m->inf; /* the residual row */
    TRY(parlm_embedding_forward(x, &token, WTE(m->params), WPE(m->params) + pos * C, 1, 1,
                                (int)C, c->vocab));
    return parlm_decode_step(&d, x, pos, logits, m->dec_scratch, nt);
}

parlm_status parlm_gpt_infer(parlm_gpt *m, const int32_t *tokens, int n, int pos, float *logits)
{
    if (!m || !tokens || !logits)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_infer: null argument");
    const parlm_gpt_config *c = &m->cfg;
    if (n < 1 || pos < 0 || pos > c->max_seq - n)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_infer: positions %d..%d outside the context of "
                           "%d", pos, pos + n - 1, c->max_seq);
    int64_t C = c->n_embd, L = c->n_layer, maxT = c->max_seq, NH = c->n_head;
    if (!m->kv) {
        m->kv = parlm_alloc((size_t)(L * 2 * maxT * C), sizeof(float));
        /* per row: x C, ln C, qkv 3C, att C, tmp C, fch 4C */
        m->inf = parlm_alloc((size_t)(maxT * 11 * C), sizeof(float));
        if (!m->kv || !m->inf) {
            parlm_free(m->kv), parlm_free(m->inf);
            m->kv = m->inf = NULL;
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: KV cache of %lld floats",
                               (long long)(L * 2 * maxT * C));
        }
    }
    TRY(refresh_bf16(m));
    if (n == 1)
        return decode_one(m, tokens[0], pos, logits);
    float *x = m->inf, *ln = x + maxT * C, *qkv = ln + maxT * C, *att = qkv + 3 * maxT * C;
    float *tmp = att + maxT * C, *fch = tmp + maxT * C;
    /* embeddings of positions pos..pos+n-1: one "batch" of n rows starting at wpe[pos] */
    TRY(parlm_embedding_forward(x, tokens, WTE(m->params), WPE(m->params) + pos * C, 1, n, (int)C,
                                c->vocab));
    float *mean = parlm_alloc((size_t)n * 2, sizeof(float));
    if (!mean)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: out of memory");
    float *rstd = mean + n;
    parlm_status st = PARLM_OK;
    for (int64_t l = 0; l < L && st == PARLM_OK; l++) {
        layer_views w = lview(m, m->params, (int)l);
        float *kc = m->kv + (l * 2) * maxT * C, *vc = kc + maxT * C;
        if ((st = parlm_layernorm_forward(ln, mean, rstd, x, w.ln1w, w.ln1b, n, C)) ||
            (st = matmul_fwd(m, qkv, ln, w.qkvw, w.qkvb, n, C, 3 * C)))
            break;
        for (int i = 0; i < n; i++) {
            memcpy(kc + (pos + i) * C, qkv + i * 3 * C + C, (size_t)C * sizeof(float));
            memcpy(vc + (pos + i) * C, qkv + i * 3 * C + 2 * C, (size_t)C * sizeof(float));
        }
        if ((st = parlm_attention_cached(att, qkv, 3 * C, kc, vc, pos, n, (int)C, (int)NH)) ||
            (st = matmul_fwd(m, tmp, att, w.attprojw, w.attprojb, n, C, C)) ||
            (st = parlm_add(x, x, tmp, n * C)) ||
            (st = parlm_layernorm_forward(ln, mean, rstd, x, w.ln2w, w.ln2b, n, C)) ||
            (st = matmul_fwd(m, fch, ln, w.fcw, w.fcb, n, C, 4 * C)) ||
            (st = parlm_gelu_forward(fch, fch, n * 4 * C)) ||
            (st = matmul_fwd(m, tmp, fch, w.fcprojw, w.fcprojb, n, 4 * C, C)) ||
            (st = parlm_add(x, x, tmp, n * C)))
            break;
    }
    /* only the last position's logits are needed to sample the next token */
    const float *last = x + (int64_t)(n - 1) * C;
    if (st == PARLM_OK)
        st = parlm_layernorm_forward(ln, mean, rstd, last, LNFW(m->params), LNFB(m->params), 1, C);
    if (st == PARLM_OK)
        st = matmul_fwd(m, logits, ln, WTE(m->params), NULL, 1, C, c->vocab_pad);
    parlm_free(mean);
    return st;
}
