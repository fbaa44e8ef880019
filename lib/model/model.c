/* lib/model/model.c — GPT-2: parameters, forward, backward, AdamW update, KV-cache inference.
 * Layer by layer, llm.c style, on the library's kernels: parlm_sgemm (or bf16 GEMM) for
 * the linear layers, fused attention and cross-entropy, layernorm/GELU/residual ops.
 * Everything is allocated at create/setup; a training step allocates nothing except the
 * small per-call scratch of attention backward. Layout: see parlm/model.h.
 * Tensor parallelism (Megatron-LM): a shard with tp > 1 runs its heads, MLP units and vocab
 * rows; the row-parallel projections (attproj, fcproj) produce partial sums that are
 * all-reduced before the replicated bias is added once, and backward all-reduces the
 * gradient of each layernorm's output (the input of the column-parallel qkv, fc and LM
 * head). Everything else is computed identically on every rank of the group, from the
 * same bits, so the replicas stay bitwise equal.
 * Llama (cfg.arch PARLM_ARCH_LLAMA) is a configuration of the same code: its layer tensors
 * fill the same views (attn_norm in ln1w, wq|wk|wv adjacent as one qkv matrix, wo in
 * attprojw, w_gate|w_up adjacent as one fc matrix, w_down in fcprojw; no biases, no wpe)
 * and the forward swaps four ops: RMSNorm for layernorm, RoPE on q and k after the qkv
 * product, grouped-query attention, SwiGLU for GELU. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "decode.h"
#include "dp_hooks.h"
#include "../core/dispatch.h"
#include "../../base/error.h"
#include "../core/parallel.h"
#include "parlm/bf16.h"
#include "parlm/gemm.h"
#include "parlm/llama_ops.h"
#include "parlm/model.h"
#include "parlm/sample.h"
#include "parlm/ops.h"
#include "parlm/quant.h"
#include "parlm/tensor.h"

/* one parameter tensor of the flat buffer */
typedef struct tensor_info {
    const char *name;
    int layer;         /* -1 embeddings, 0..L-1, L final layernorm */
    int64_t off, n;
    int decay;         /* weight decay applies (2-D weights) */
    parlm_gpt_slice sl; /* where it lies in the full model */
} tensor_info;

/* views of one layer's tensors in a flat buffer (parameters or gradients); a Llama layer
 * has no biases (NULL): ln1w attn_norm, qkvw wq (wk, wv follow), attprojw wo, ln2w
 * ffn_norm, fcw w_gate (w_up follows), fcprojw w_down */
typedef struct layer_views {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} layer_views;

enum { T_LN1W, T_LN1B, T_QKVW, T_QKVB, T_ATTPROJW, T_ATTPROJB, T_LN2W, T_LN2B, T_FCW, T_FCB,
       T_FCPROJW, T_FCPROJB, T_PER_LAYER };
enum { LT_ATTN_NORM, LT_WQ, LT_WK, LT_WV, LT_WO, LT_FFN_NORM, LT_GATE, LT_UP, LT_DOWN,
       LT_PER_LAYER };

/* activations of one layer (training arena), shapes with N = B*T rows; a tensor-parallel
 * shard has Ca = C/tp attention channels and NHa = NH/tp heads, Hm = 4C/tp MLP units.
 * Wqkv is the qkv row (3Ca; Llama C + 2 NKV hs), Hf the fc output (Hm; Llama 2F: gate and
 * up) and Hm the MLP activation (Llama F). RMSNorm leaves the means unused. */
typedef struct layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C) (N) (N) */
    float *qkv;                       /* (N,Wqkv), q and k rotated (Llama) */
    float *atty, *att_lse;            /* (N,Ca) (B,NHa,T) */
    float *res2;                      /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C) (N) (N) */
    float *fch, *fch_gelu;            /* (N,Hf) (N,Hm) */
    float *res3;                      /* (N,C) residual after the MLP = next layer's input */
} layer_acts;

/* one micro-batch's activations (parlm_gpt_setup_slots) */
typedef struct act_slot {
    float *encoded;   /* (N,C): the embeddings, or a later stage's input */
    layer_acts *acts; /* the shard's layers */
    float *lnf, *lnf_mean, *lnf_rstd, *logits, *losses, *ce_lse; /* last stage only */
    float *grad_out;  /* (N,C): a non-last stage's output gradient */
    const int32_t *inputs, *targets; /* of the slot's forward (borrowed until backward) */
    int have_forward;
} act_slot;

struct parlm_gpt {
    parlm_gpt_config cfg;
    parlm_gpt_shard sh;
    int first, last;   /* the shard holds the embeddings / the final layernorm and loss */
    int Ca, NHa, Hm, Vs; /* local attention channels, heads, MLP units, vocab rows */
    int llama;           /* cfg.arch is PARLM_ARCH_LLAMA */
    int NKVa, Ckv, Wqkv, Hf; /* key/value heads and width, qkv row, fc output (see layer_acts) */
    int npl;             /* tensors per layer */
    int t_head;          /* the untied LM head (Llama), -1 when tied to wte */
    float *rope_cos, *rope_sin; /* (maxT, hs) rotary tables (Llama) */
    int64_t nparams;
    float *params, *grads, *m, *v;
    int64_t step;
    tensor_info *tensors;
    int ntensors;
    int t_wte, t_wpe, t_layer0, t_lnf; /* tensor indices, -1 when not held */
    int64_t layer_off0, layer_size;
    parlm_gpt_tp_comm tp;
    int have_tp;
    /* bf16 matmuls */
    int bf16, bf16_stale;
    int bf16_widen; /* the CPU's bf16 path widens to f32: GEMMs run on the f32 weights */
    uint16_t *params_bf16, *xa_bf16, *xb_bf16;
    int64_t bf16_scratch;
    /* quantized decode (parlm_gpt_set_decode_type): a copy of the layers' four matrices and
     * the LM head in q_type, in the layout q_layout (parlm_qlayout_current: plain rows or
     * repacked 8 rows at a time by parlm_qrepack), matrix i of layer l at
     * params_q + q_off[4 l + i], the head at q_off[4 L] */
    int q_type, q_stale, q_layout;
    uint8_t *params_q;
    uint64_t *q_off;
    /* training arena: nslots micro-batch slots, cur the one in use */
    int B, T, training, nslots;
    float *arena;
    int64_t arena_floats;
    act_slot *slots, *cur;
    float *dloss;
    float *ce_part; /* tp > 1: the loss partials of every rank (tp, N, 2) */
    float *d_res, *d_ln, *d_atty, *d_qkv, *d_fch, *d_fch_gelu; /* backward scratch */
    /* backward progress reports (overlapped gradient communication) */
    parlm_grad_ready_fn hook;
    void *hook_arg;
    int64_t ready_from, head_ready;
    parlm_cancel_fn cancel; /* asked between layers (parlm_gpt_set_cancel) */
    void *cancel_arg;
    int grads_external, params_external; /* the caller's (parlm_gpt_set_*_buffer) */
    int grad_in_valid; /* d_res holds a non-first stage's input gradient */
    int defer_tok, tok_rows_valid; /* deferred token-lookup gradient (d_res holds the rows) */
    int grads_stale; /* every gradient is 0, the buffer not yet cleared (zero_grad, the fused
                        optimizer step): backward writes instead of adding (grads_clear) */
    /* a view (parlm_gpt_create_view): the matrices are bound where the caller keeps them,
     * vw[i] for tensor i (off -1); params holds only the vectors */
    int view, view_type; /* the layers' and the head's one type (0 until bound) */
    parlm_gpt_weight *vw;
    int64_t view_total;  /* parameters of the model, matrices included */
    void (*keep_release)(void *);
    void *keep_arg;
    /* inference */
    float *kv, *inf;  /* KV cache (L, 2, maxT, C); inference activations */
    parlm_decode_layer *dec_layers; /* decode: the weights of each layer (L) */
    float *dec_scratch;
    int dec_threads;  /* threads dec_scratch is sized for */
};

/* ---- configuration ------------------------------------------------------------------ */

parlm_status parlm_gpt_preset(const char *name, parlm_gpt_config *cfg)
{
    static const struct {
        const char *name;
        int arch, L, NH, NKV, C, F, maxT, V, untied;
    } presets[] = {
        {"tiny", PARLM_ARCH_GPT2, 2, 2, 0, 64, 0, 1024, 50257, 0},
        {"small", PARLM_ARCH_GPT2, 4, 4, 0, 256, 0, 1024, 50257, 0},
        {"d6", PARLM_ARCH_GPT2, 6, 6, 0, 384, 0, 1024, 50257, 0},
        {"d12", PARLM_ARCH_GPT2, 12, 12, 0, 768, 0, 1024, 50257, 0},
        {"d24", PARLM_ARCH_GPT2, 24, 16, 0, 1024, 0, 1024, 50257, 0},
        {"d36", PARLM_ARCH_GPT2, 36, 20, 0, 1280, 0, 1024, 50257, 0},
        {"d48", PARLM_ARCH_GPT2, 48, 25, 0, 1600, 0, 1024, 50257, 0},
        {"llama-15m", PARLM_ARCH_LLAMA, 6, 6, 2, 288, 768, 256, 32000, 0},
        {"llama-110m", PARLM_ARCH_LLAMA, 12, 12, 12, 768, 2048, 1024, 32000, 0},
        {"tinyllama-1.1b", PARLM_ARCH_LLAMA, 22, 32, 4, 2048, 5632, 2048, 32000, 1},
        {"llama-7b", PARLM_ARCH_LLAMA, 32, 32, 32, 4096, 11008, 4096, 32000, 1},
    };
    if (!name || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_preset: null argument");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(name, presets[i].name)) {
            int maxT = cfg->max_seq > 0 ? cfg->max_seq : presets[i].maxT;
            int V = cfg->vocab > 0 ? cfg->vocab : presets[i].V;
            memset(cfg, 0, sizeof *cfg);
            cfg->n_layer = presets[i].L;
            cfg->n_head = presets[i].NH;
            cfg->n_embd = presets[i].C;
            cfg->max_seq = maxT;
            cfg->vocab = V;
            cfg->arch = presets[i].arch;
            cfg->n_kv_head = presets[i].NKV;
            cfg->ffn_hidden = presets[i].F;
            cfg->untied_head = presets[i].untied;
            return PARLM_OK;
        }
    return parlm_error(PARLM_EINVAL, "unknown model preset '%s' (tiny, small, d6, d12, d24, d36, "
                       "d48, llama-15m, llama-110m, tinyllama-1.1b, llama-7b)", name);
}

/* The Llama fields: a GPT-2 config has none of them; a Llama one gets its defaults. */
static parlm_status check_arch(parlm_gpt_config *c)
{
    if (c->arch == PARLM_ARCH_GPT2) {
        if (c->n_kv_head || c->ffn_hidden || c->untied_head || c->rope_theta != 0.0f ||
            c->rope_scale != 0.0f || c->norm_eps != 0.0f)
            return parlm_error(PARLM_EINVAL, "model config: a GPT-2 config sets none of "
                               "n_kv_head, ffn_hidden, untied_head, rope_theta, rope_scale, "
                               "norm_eps (got %d, %d, %d, %g, %g, %g)", c->n_kv_head,
                               c->ffn_hidden, c->untied_head, c->rope_theta, c->rope_scale,
                               c->norm_eps);
        return PARLM_OK;
    }
    if (c->arch != PARLM_ARCH_LLAMA)
        return parlm_error(PARLM_EINVAL, "model config: unknown architecture %d (0 gpt2, "
                           "1 llama)", c->arch);
    if (c->n_kv_head == 0)
        c->n_kv_head = c->n_head;
    if (c->n_kv_head < 1 || c->n_head % c->n_kv_head)
        return parlm_error(PARLM_EINVAL, "model config: %d KV heads do not divide %d heads",
                           c->n_kv_head, c->n_head);
    if (c->ffn_hidden == 0)
        c->ffn_hidden = 4 * c->n_embd;
    if (c->ffn_hidden < 1 || c->ffn_hidden > (1 << 18))
        return parlm_error(PARLM_EINVAL, "model config: ffn_hidden %d out of range 1..%d",
                           c->ffn_hidden, 1 << 18);
    if (c->untied_head != 0 && c->untied_head != 1)
        return parlm_error(PARLM_EINVAL, "model config: untied_head %d is not 0 or 1",
                           c->untied_head);
    if (c->rope_theta == 0.0f)
        c->rope_theta = 10000.0f;
    if (c->rope_scale == 0.0f)
        c->rope_scale = 1.0f;
    if (c->norm_eps == 0.0f)
        c->norm_eps = 1e-5f;
    if (!(c->rope_theta > 1.0f && c->rope_theta < 1e9f) ||
        !(c->rope_scale >= 1.0f && c->rope_scale <= 1024.0f) ||
        !(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return parlm_error(PARLM_EINVAL, "model config: rope_theta %g (1..1e9), rope_scale %g "
                           "(1..1024) or norm_eps %g (0..1) out of range", c->rope_theta,
                           c->rope_scale, c->norm_eps);
    return PARLM_OK;
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
    return check_arch(c);
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
    if (c.arch == PARLM_ARCH_LLAMA) {
        int64_t kv = C / c.n_head * c.n_kv_head, F = c.ffn_hidden;
        *n = (int64_t)c.vocab_pad * C * (1 + c.untied_head) +
             c.n_layer * (2 * C + 2 * C * C + 2 * C * kv + 3 * C * F) + C;
        return PARLM_OK;
    }
    *n = ((int64_t)c.vocab_pad + c.max_seq) * C + c.n_layer * (12 * C * C + 13 * C) + 2 * C;
    return PARLM_OK;
}

/* Appends tensor `full_index` of the full model (shape full_rows x full_cols) as the
 * shard's slice: nseg row segments of `rows` rows from row0[], columns [col0, col0+cols). */
static void add_tensor(parlm_gpt *m, const char *name, int layer, int decay, int full_index,
                       int64_t full_offset, int64_t full_cols, int nseg, const int64_t *row0,
                       int64_t rows, int64_t col0, int64_t cols, int owner)
{
    tensor_info *t = &m->tensors[m->ntensors++];
    t->name = name;
    t->layer = layer;
    t->off = m->nparams;
    t->n = nseg * rows * cols;
    t->decay = decay;
    parlm_gpt_slice *sl = &t->sl;
    memset(sl, 0, sizeof *sl);
    sl->full_index = full_index;
    sl->owner = owner;
    sl->nseg = nseg;
    for (int k = 0; k < nseg; k++)
        sl->row0[k] = row0[k];
    sl->rows = rows;
    sl->col0 = col0;
    sl->cols = cols;
    sl->full_cols = full_cols;
    sl->full_offset = full_offset;
    m->nparams += t->n;
}

/* The shard's tensors in the full model's order, and where each lies in the full model.
 * Split along heads (qkv rows of each third, attproj columns), MLP units (fc rows, fcproj
 * columns) and vocabulary rows (wte); everything else is a replica owned by tp rank 0. */
static void layout(parlm_gpt *m)
{
    const parlm_gpt_config *c = &m->cfg;
    const int64_t C = c->n_embd, tp = m->sh.tp, r = m->sh.tp_rank;
    const int64_t Ca = C / tp, Hm = 4 * C / tp, Vs = c->vocab_pad / tp;
    static const char *const names[T_PER_LAYER] = {
        "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
        "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"};
    /* full shapes (rows, cols) of each layer tensor (qkvb seen as 3 rows of C), and how
     * the shard takes it: 0 replica, 1 rows of our heads in each third (qkvw), 2 a block
     * of columns of every row, 3 a block of rows */
    const int64_t frows[T_PER_LAYER] = {1, 1, 3 * C, 3, C, 1, 1, 1, 4 * C, 1, C, 1};
    const int64_t fcols[T_PER_LAYER] = {C, C, C, C, C, C, C, C, C, 4 * C, 4 * C, C};
    const int how[T_PER_LAYER] = {0, 0, 1, 2, 2, 0, 0, 0, 3, 2, 2, 0};
    const int decay[T_PER_LAYER] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0};
    const int lb = m->sh.layer_begin, le = m->sh.layer_end, rep0 = r == 0;
    int64_t full_off = 0, zero = 0;
    m->nparams = 0;
    m->ntensors = 0;
    m->t_wte = m->t_wpe = m->t_layer0 = m->t_lnf = -1;
    int64_t wte_rows = (int64_t)c->vocab_pad * C;
    if (m->first || m->last) { /* the tied embedding: vocab rows [r Vs, (r+1) Vs) */
        int64_t v0 = r * Vs;
        m->t_wte = m->ntensors;
        add_tensor(m, "wte", -1, 1, 0, 0, C, 1, &v0, Vs, 0, C, m->first);
    }
    full_off += wte_rows;
    if (m->first) {
        m->t_wpe = m->ntensors;
        add_tensor(m, "wpe", -1, 1, 1, full_off, C, 1, &zero, c->max_seq, 0, C, rep0);
    }
    full_off += (int64_t)c->max_seq * C;
    m->layer_off0 = m->nparams;
    m->t_layer0 = m->ntensors;
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < T_PER_LAYER; i++) {
            int64_t fn = frows[i] * fcols[i], fi = 2 + l * T_PER_LAYER + i;
            if (l >= lb && l < le) {
                int64_t r0[3] = {0, 0, 0};
                if (how[i] == 0) {
                    add_tensor(m, names[i], l, decay[i], (int)fi, full_off, fcols[i], 1, r0,
                               frows[i], 0, fcols[i], rep0);
                } else if (how[i] == 1) {
                    for (int k = 0; k < 3; k++)
                        r0[k] = k * C + r * Ca;
                    add_tensor(m, names[i], l, decay[i], (int)fi, full_off, C, 3, r0, Ca, 0, C, 1);
                } else if (how[i] == 2) {
                    int64_t w = fcols[i] / tp;
                    add_tensor(m, names[i], l, decay[i], (int)fi, full_off, fcols[i], 1, r0,
                               frows[i], r * w, w, 1);
                } else {
                    int64_t h = frows[i] / tp;
                    r0[0] = r * h;
                    add_tensor(m, names[i], l, decay[i], (int)fi, full_off, fcols[i], 1, r0, h,
                               0, fcols[i], 1);
                }
            }
            full_off += fn;
        }
    int nl = le - lb;
    m->layer_size = nl ? (m->nparams - m->layer_off0) / nl : 0;
    int fl = 2 + c->n_layer * T_PER_LAYER;
    if (m->last) {
        m->t_lnf = m->ntensors;
        add_tensor(m, "lnfw", c->n_layer, 0, fl, full_off, C, 1, &zero, 1, 0, C, rep0);
        add_tensor(m, "lnfb", c->n_layer, 0, fl + 1, full_off + C, C, 1, &zero, 1, 0, C, rep0);
    }
    m->Ca = (int)Ca, m->NHa = c->n_head / (int)tp, m->Hm = (int)Hm, m->Vs = (int)Vs;
    m->NKVa = m->NHa, m->Ckv = (int)Ca, m->Wqkv = 3 * (int)Ca, m->Hf = (int)Hm;
    m->npl = T_PER_LAYER;
    m->t_head = -1;
}

/* Llama:
 *   wte (Vp,C) | for each layer: attn_norm (C) wq (C,C) wk (Ckv,C) wv (Ckv,C) wo (C,C)
 *   ffn_norm (C) w_gate (F,C) w_up (F,C) w_down (C,F) | norm (C) [lm_head (Vp,C)]
 * wq, wk, wv are adjacent: one (C + 2 Ckv, C) matrix for the qkv product; so are w_gate
 * and w_up, one (2F, C) matrix whose output rows are SwiGLU's [gate | up]. A tensor-
 * parallel shard keeps rows of its query heads (wq), key/value heads (wk, wv: NKV/tp of
 * them, so each query head finds its group's) and SwiGLU units (w_gate, w_up), the same
 * columns of wo and w_down, and vocabulary rows of wte and lm_head; norms are replicas.
 * A pipeline stage holds its layers, the first wte, the last norm and the head (wte when
 * tied: a stage that is both holds it once), as GPT-2's do. */
static void layout_llama(parlm_gpt *m)
{
    const parlm_gpt_config *c = &m->cfg;
    const int64_t tp = m->sh.tp, r = m->sh.tp_rank;
    const int64_t C = c->n_embd, hs = C / c->n_head, Ckv = (int64_t)c->n_kv_head * hs;
    const int64_t F = c->ffn_hidden, Vp = c->vocab_pad, Vs = Vp / tp;
    const int64_t Ca = C / tp, Ckva = Ckv / tp, Fa = F / tp;
    static const char *const names[LT_PER_LAYER] = {
        "attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down"};
    /* full shapes, and how a shard takes them: 0 replica, 1 a block of rows, 2 a block of
     * columns of every row (of width w) */
    const int64_t rows[LT_PER_LAYER] = {1, C, Ckv, Ckv, C, 1, F, F, C};
    const int64_t cols[LT_PER_LAYER] = {C, C, C, C, C, C, C, C, F};
    const int how[LT_PER_LAYER] = {0, 1, 1, 1, 2, 0, 1, 1, 2};
    const int64_t part[LT_PER_LAYER] = {0, Ca, Ckva, Ckva, Ca, 0, Fa, Fa, Fa};
    const int decay[LT_PER_LAYER] = {0, 1, 1, 1, 1, 0, 1, 1, 1};
    const int rep0 = r == 0, lb = m->sh.layer_begin, le = m->sh.layer_end;
    int64_t zero = 0, v0 = r * Vs, full_off = 0;
    m->nparams = 0;
    m->ntensors = 0;
    m->t_wte = m->t_wpe = m->t_head = m->t_lnf = -1;
    if (m->first || (m->last && !c->untied_head)) { /* the lookup, and the tied head */
        m->t_wte = m->ntensors;
        add_tensor(m, "wte", -1, 1, 0, 0, C, 1, &v0, Vs, 0, C, m->first);
    }
    full_off += Vp * C;
    m->layer_off0 = m->nparams;
    m->t_layer0 = m->ntensors;
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < LT_PER_LAYER; i++) {
            int fi = 1 + l * LT_PER_LAYER + i;
            int64_t r0 = how[i] == 1 ? r * part[i] : 0;
            if (l < lb || l >= le)
                ;
            else if (how[i] == 0)
                add_tensor(m, names[i], l, decay[i], fi, full_off, cols[i], 1, &zero, rows[i],
                           0, cols[i], rep0);
            else if (how[i] == 1)
                add_tensor(m, names[i], l, decay[i], fi, full_off, cols[i], 1, &r0, part[i], 0,
                           cols[i], 1);
            else
                add_tensor(m, names[i], l, decay[i], fi, full_off, cols[i], 1, &zero, rows[i],
                           r * part[i], part[i], 1);
            full_off += rows[i] * cols[i];
        }
    m->layer_size = (m->nparams - m->layer_off0) / (le - lb);
    int fl = 1 + c->n_layer * LT_PER_LAYER;
    if (m->last) {
        m->t_lnf = m->ntensors;
        add_tensor(m, "norm", c->n_layer, 0, fl, full_off, C, 1, &zero, 1, 0, C, rep0);
    }
    full_off += C;
    if (m->last && c->untied_head) {
        m->t_head = m->ntensors;
        add_tensor(m, "lm_head", c->n_layer, 1, fl + 1, full_off, C, 1, &v0, Vs, 0, C, 1);
    }
    m->Ca = (int)Ca, m->NHa = c->n_head / (int)tp, m->Hm = (int)Fa, m->Vs = (int)Vs;
    m->NKVa = c->n_kv_head / (int)tp, m->Ckv = (int)Ckva, m->Wqkv = (int)(Ca + 2 * Ckva);
    m->Hf = 2 * (int)Fa;
    m->npl = LT_PER_LAYER;
}

static layer_views lview(const parlm_gpt *m, float *base, int l)
{
    const tensor_info *t = &m->tensors[m->t_layer0 + (l - m->sh.layer_begin) * m->npl];
    if (m->view) { /* the vectors; the matrices are elsewhere (view_mat) */
        float *ln1w = base + t[0].off, *ln2w = base + t[m->llama ? LT_FFN_NORM : T_LN2W].off;
        if (m->llama) {
            layer_views v = {ln1w, NULL, NULL, NULL, NULL, NULL, ln2w, NULL, NULL, NULL, NULL, NULL};
            return v;
        }
        layer_views v = {ln1w, base + t[T_LN1B].off, NULL, base + t[T_QKVB].off, NULL,
                         base + t[T_ATTPROJB].off, ln2w, base + t[T_LN2B].off, NULL,
                         base + t[T_FCB].off, NULL, base + t[T_FCPROJB].off};
        return v;
    }
    if (m->llama) {
        layer_views v = {base + t[LT_ATTN_NORM].off, NULL, base + t[LT_WQ].off, NULL,
                         base + t[LT_WO].off, NULL, base + t[LT_FFN_NORM].off, NULL,
                         base + t[LT_GATE].off, NULL, base + t[LT_DOWN].off, NULL};
        return v;
    }
    layer_views v = {
        base + t[T_LN1W].off, base + t[T_LN1B].off, base + t[T_QKVW].off, base + t[T_QKVB].off,
        base + t[T_ATTPROJW].off, base + t[T_ATTPROJB].off, base + t[T_LN2W].off,
        base + t[T_LN2B].off, base + t[T_FCW].off, base + t[T_FCB].off, base + t[T_FCPROJW].off,
        base + t[T_FCPROJB].off};
    return v;
}

#define WTE(base) ((base) + m->tensors[m->t_wte].off)
#define WPE(base) ((base) + m->tensors[m->t_wpe].off)
#define LNFW(base) ((base) + m->tensors[m->t_lnf].off)
#define LNFB(base) (m->llama ? NULL : (base) + m->tensors[m->t_lnf + 1].off)
/* the LM head: wte (tied) or its own tensor */
#define HEAD(base) ((base) + m->tensors[m->t_head >= 0 ? m->t_head : m->t_wte].off)
/* a params pointer, or NULL in a view (whose matrices are not in params) */
#define VIEW_OR(p) (m->view ? NULL : (p))

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

/* Full tensor i's values (n floats): GPT-2 init from a generator seeded per tensor. */
static void init_full_tensor(const parlm_gpt *m, const char *nm, int i, float *p, int64_t n,
                             uint64_t seed)
{
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    static const char *const weights[] = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw",
                                          "wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down",
                                          "lm_head"};
    static const char *const norms[] = {"ln1w", "ln2w", "lnfw", "attn_norm", "ffn_norm",
                                        "norm"};
    int decay = 0, norm = 0;
    for (size_t k = 0; k < sizeof weights / sizeof weights[0]; k++)
        decay |= !strcmp(nm, weights[k]);
    for (size_t k = 0; k < sizeof norms / sizeof norms[0]; k++)
        norm |= !strcmp(nm, norms[k]);
    if (norm) {
        for (int64_t k = 0; k < n; k++)
            p[k] = 1.0f;
    } else if (decay) {
        /* the projections into the residual stream */
        int resid = !strcmp(nm, "attprojw") || !strcmp(nm, "fcprojw") || !strcmp(nm, "wo") ||
                    !strcmp(nm, "w_down");
        fill_normal(p, n, resid ? resid_std : 0.02f, seed * 1000003ULL + (uint64_t)i);
    } else {
        memset(p, 0, (size_t)n * sizeof(float)); /* biases */
    }
    if (i == 0 || !strcmp(nm, "lm_head")) { /* padded vocabulary rows stay 0: their logits
                                              * are masked out */
        int64_t C = m->cfg.n_embd, v = (int64_t)m->cfg.vocab * C;
        memset(p + v, 0, (size_t)(n - v) * sizeof(float));
    }
}

/* Each tensor as it is in the full model: generated whole, then sliced (so every
 * layout starts from the same values); scratch holds the largest full tensor. */
static void init_params(parlm_gpt *m, uint64_t seed, float *scratch)
{
    for (int i = 0; i < m->ntensors; i++) {
        const tensor_info *t = &m->tensors[i];
        const parlm_gpt_slice *sl = &t->sl;
        int64_t full_n = (sl->nseg == 3 ? 3 * m->cfg.n_embd : sl->row0[0] + sl->rows) *
                         sl->full_cols; /* enough rows to cover the slice */
        if (!scratch) {
            init_full_tensor(m, t->name, sl->full_index, m->params + t->off, t->n, seed);
            continue;
        }
        if (sl->full_index == 0 || !strcmp(t->name, "lm_head"))
            full_n = (int64_t)m->cfg.vocab_pad * m->cfg.n_embd;
        init_full_tensor(m, t->name, sl->full_index, scratch, full_n, seed);
        parlm_gpt_slice_copy(sl, m->params + t->off, scratch, 0);
    }
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
    parlm_free(m->params_q);
    free(m->q_off);
    parlm_free(m->xa_bf16);
    parlm_free(m->xb_bf16);
    parlm_free(m->arena);
    parlm_free(m->kv);
    parlm_free(m->inf);
    parlm_free(m->dec_scratch);
    free(m->dec_layers);
    parlm_free(m->rope_cos);
    parlm_free(m->rope_sin);
    if (m->slots)
        free(m->slots[0].acts);
    free(m->slots);
    free(m->tensors);
    free(m->vw);
    if (m->keep_release)
        m->keep_release(m->keep_arg);
    free(m);
}

parlm_status parlm_gpt_shard_check(const parlm_gpt_config *cfg, const parlm_gpt_shard *sh)
{
    if (!cfg || !sh)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_shard_check: null argument");
    parlm_gpt_config c = *cfg;
    RETURN_IF_ERROR(check_config(&c));
    if (sh->tp < 1 || sh->tp_rank < 0 || sh->tp_rank >= sh->tp)
        return parlm_error(PARLM_EINVAL, "model shard: tensor-parallel rank %d of %d", sh->tp_rank,
                           sh->tp);
    if (c.arch == PARLM_ARCH_LLAMA && (c.n_kv_head % sh->tp || c.ffn_hidden % sh->tp))
        return parlm_error(PARLM_EINVAL, "tensor parallelism %d does not divide the %d key/value "
                           "heads and the %d SwiGLU units of the Llama model", sh->tp,
                           c.n_kv_head, c.ffn_hidden);
    if (c.n_head % sh->tp)
        return parlm_error(PARLM_EINVAL, "tensor parallelism %d does not divide the %d attention "
                           "heads", sh->tp, c.n_head);
    if (c.vocab_pad % sh->tp)
        return parlm_error(PARLM_EINVAL, "tensor parallelism %d does not divide the padded "
                           "vocabulary %d (pad it to a multiple of %d)", sh->tp, c.vocab_pad,
                           128 * sh->tp);
    if (sh->layer_begin < 0 || sh->layer_end > c.n_layer || sh->layer_begin >= sh->layer_end)
        return parlm_error(PARLM_EINVAL, "model shard: layers [%d, %d) outside the model's %d "
                           "(a stage needs at least one layer)", sh->layer_begin, sh->layer_end,
                           c.n_layer);
    return PARLM_OK;
}

/* the tensors a view reads where the caller keeps them: every matrix but GPT-2's
 * position table (a lookup of maxT rows, kept with the vectors) */
static int view_matrix(const char *name)
{
    static const char *const mats[] = {"wte", "lm_head", "qkvw", "attprojw", "fcw", "fcprojw",
                                       "wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
    for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++)
        if (!strcmp(name, mats[k]))
            return 1;
    return 0;
}

/* A view's layout: matrices at offset -1, the vectors packed in order */
static parlm_status view_layout(parlm_gpt *m)
{
    m->view = 1;
    m->view_total = m->nparams;
    m->vw = calloc((size_t)m->ntensors, sizeof *m->vw);
    if (!m->vw)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create_view: out of memory");
    int64_t off = 0;
    for (int i = 0; i < m->ntensors; i++) {
        tensor_info *t = &m->tensors[i];
        if (view_matrix(t->name)) {
            t->off = -1;
        } else {
            t->off = off;
            off += t->n;
        }
    }
    m->nparams = off;
    return PARLM_OK;
}

static parlm_status create(parlm_gpt **out, const parlm_gpt_config *cfg, const parlm_gpt_shard *sh,
                           uint64_t seed, int view)
{
    if (!out || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_create: null argument");
    *out = NULL;
    parlm_gpt_config c = *cfg;
    parlm_status st = check_config(&c);
    if (st != PARLM_OK)
        return st;
    parlm_gpt_shard whole = {1, 0, 0, c.n_layer};
    if (!sh)
        sh = &whole;
    RETURN_IF_ERROR(parlm_gpt_shard_check(&c, sh));
    parlm_gpt *m = calloc(1, sizeof *m);
    if (!m)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: out of memory");
    m->cfg = c;
    m->sh = *sh;
    m->first = sh->layer_begin == 0;
    m->last = sh->layer_end == c.n_layer;
    m->tensors = calloc((size_t)(4 + T_PER_LAYER * c.n_layer), sizeof *m->tensors);
    if (!m->tensors) {
        free(m);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: out of memory");
    }
    m->llama = c.arch == PARLM_ARCH_LLAMA;
    if (m->llama) {
        layout_llama(m);
        int64_t hs = c.n_embd / c.n_head;
        m->rope_cos = parlm_alloc((size_t)c.max_seq * (size_t)hs, sizeof(float));
        m->rope_sin = parlm_alloc((size_t)c.max_seq * (size_t)hs, sizeof(float));
        st = !m->rope_cos || !m->rope_sin
                 ? parlm_error(PARLM_ENOMEM, "parlm_gpt_create: rotary tables")
                 : parlm_rope_table(m->rope_cos, m->rope_sin, c.max_seq, hs, c.rope_theta,
                                    c.rope_scale);
        if (st != PARLM_OK) {
            parlm_gpt_free(m);
            return st;
        }
    } else {
        layout(m);
    }
    if (view) { /* the vectors only, zero until the caller writes them; no gradients */
        if ((st = view_layout(m)) ||
            !(m->params = parlm_alloc((size_t)(m->nparams ? m->nparams : 1), sizeof(float)))) {
            parlm_gpt_free(m);
            return st ? st : parlm_error(PARLM_ENOMEM, "parlm_gpt_create_view: out of memory");
        }
        memset(m->params, 0, (size_t)m->nparams * sizeof(float));
        *out = m;
        return PARLM_OK;
    }
    m->params = parlm_alloc((size_t)m->nparams, sizeof(float));
    m->grads = parlm_alloc((size_t)m->nparams, sizeof(float));
    /* a tensor-parallel slice is cut from its full tensor: room for the largest (wte) */
    int64_t rows = c.vocab_pad > 4 * c.n_embd ? c.vocab_pad : 4 * c.n_embd;
    rows = rows > c.max_seq ? rows : c.max_seq;
    rows = rows > c.ffn_hidden ? rows : c.ffn_hidden; /* Llama's w_down: (C, F) */
    float *scratch = sh->tp > 1 ? parlm_alloc((size_t)rows * (size_t)c.n_embd, sizeof(float))
                                : NULL;
    if (!m->params || !m->grads || (sh->tp > 1 && !scratch)) {
        parlm_free(scratch);
        parlm_gpt_free(m);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_create: %lld parameters do not fit in memory",
                           (long long)m->nparams);
    }
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
    init_params(m, seed, scratch);
    parlm_free(scratch);
    m->bf16_stale = m->q_stale = 1;
    *out = m;
    return PARLM_OK;
}

parlm_status parlm_gpt_create_shard(parlm_gpt **out, const parlm_gpt_config *cfg,
                                    const parlm_gpt_shard *sh, uint64_t seed)
{
    return create(out, cfg, sh, seed, 0);
}

/* ---- views over weights kept elsewhere ------------------------------------------------- */

/* PARLM_EUNSUPPORTED naming fn when m is a view (training, sharding, saving need weights
 * of their own) */
static parlm_status view_refused(const parlm_gpt *m, const char *fn)
{
    if (!m->view)
        return PARLM_OK;
    return parlm_error(PARLM_EUNSUPPORTED, "%s: the model is a view of weights kept elsewhere "
                       "(a mapped file) and runs inference only; load a copy of it (e.g. "
                       "parlm_gpt_load_gguf) to train, shard or save it", fn);
}

parlm_status parlm_gpt_create_view(parlm_gpt **out, const parlm_gpt_config *cfg)
{
    return create(out, cfg, NULL, 0, 1);
}

int parlm_gpt_is_view(const parlm_gpt *m) { return m && m->view; }

parlm_status parlm_gpt_check_owned(const parlm_gpt *m, const char *fn)
{
    return m ? view_refused(m, fn ? fn : "parlm_gpt_check_owned") : PARLM_OK;
}

float *parlm_gpt_view_vectors(parlm_gpt *m) { return m && m->view ? m->params : NULL; }

parlm_status parlm_gpt_view_bind(parlm_gpt *m, int i, int type, const void *data)
{
    static const char *fn = "parlm_gpt_view_bind";
    if (!m || !data)
        return parlm_error(PARLM_EINVAL, "%s: null argument", fn);
    if (!m->view)
        return parlm_error(PARLM_EINVAL, "%s: the model is not a view (parlm_gpt_create_view)",
                           fn);
    if (i < 0 || i >= m->ntensors || m->tensors[i].off >= 0)
        return parlm_error(PARLM_EINVAL, "%s: tensor %d is not a matrix of the view", fn, i);
    const tensor_info *t = &m->tensors[i];
    const int head = i == (m->t_head >= 0 ? m->t_head : m->t_wte);
    const int lookup_only = i == m->t_wte && !head; /* an untied embedding */
    const int q = type == PARLM_WT_Q8_0 || type == PARLM_WT_Q4_0;
    const char *tn = parlm_wtype_name(type) ? parlm_wtype_name(type) : "unknown";
    if (!(type == PARLM_WT_F32 || q ||
          (lookup_only && (type == PARLM_WT_F16 || type == PARLM_WT_BF16))))
        return parlm_error(PARLM_EUNSUPPORTED, "%s: %s (layer %d) is %s: a view runs matrices "
                           "of type f32, q8_0 or q4_0 (an untied embedding also f16, bf16)", fn,
                           t->name, t->layer, tn);
    if (q && t->sl.cols % PARLM_QBLOCK)
        return parlm_error(PARLM_EINVAL, "%s: %s has rows of %lld weights, not a multiple of %d",
                           fn, t->name, (long long)t->sl.cols, PARLM_QBLOCK);
    if (!lookup_only) { /* the products run one kernel type */
        if (m->view_type && type != m->view_type)
            return parlm_error(PARLM_EUNSUPPORTED, "%s: %s (layer %d) is %s but the other "
                               "matrices are %s: a view runs one type (load a copy to run "
                               "mixed types)", fn, t->name, t->layer, tn,
                               parlm_wtype_name(m->view_type));
        m->view_type = type;
    }
    m->vw[i].type = type;
    m->vw[i].data = data;
    return PARLM_OK;
}

parlm_status parlm_gpt_view_weight(const parlm_gpt *m, int i, parlm_gpt_weight *w)
{
    if (!m || !w || !m->view || i < 0 || i >= m->ntensors)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_view_weight: %s",
                           !m || !w ? "null argument" : !m->view ? "the model is not a view"
                                                                 : "no such tensor");
    *w = m->vw[i];
    return PARLM_OK;
}

parlm_status parlm_gpt_view_keep(parlm_gpt *m, void (*release)(void *), void *arg)
{
    if (!m || !m->view)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_view_keep: %s",
                           m ? "the model is not a view" : "null model");
    m->keep_release = release;
    m->keep_arg = arg;
    return PARLM_OK;
}

/* every matrix of the view bound, else an error naming the first that is not */
static parlm_status view_ready(const parlm_gpt *m, const char *fn)
{
    for (int i = 0; m->view && i < m->ntensors; i++)
        if (m->tensors[i].off < 0 && !m->vw[i].data)
            return parlm_error(PARLM_EINVAL, "%s: matrix %s (layer %d) of the view has no weights "
                               "(parlm_gpt_view_bind)", fn, m->tensors[i].name,
                               m->tensors[i].layer);
    return PARLM_OK;
}

/* A product's weights in a view: up to 3 matrices whose output rows follow each other
 * (Llama's wq, wk, wv; w_gate, w_up), each of `rows` rows. */
typedef struct vmat {
    int nseg;
    const void *data[3];
    int64_t rows[3];
} vmat;

enum { VM_QKV, VM_ATTPROJ, VM_FC, VM_FCPROJ, VM_HEAD };

static vmat view_mat(const parlm_gpt *m, int l, int which)
{
    vmat v = {0, {NULL, NULL, NULL}, {0, 0, 0}};
    int idx[3], n = 1;
    if (which == VM_HEAD) {
        int i = m->t_head >= 0 ? m->t_head : m->t_wte;
        v.nseg = 1, v.data[0] = m->vw[i].data, v.rows[0] = m->cfg.vocab; /* real rows only */
        return v;
    }
    if (m->llama) {
        static const int seg[4][3] = {{LT_WQ, LT_WK, LT_WV}, {LT_WO}, {LT_GATE, LT_UP}, {LT_DOWN}};
        static const int nseg[4] = {3, 1, 2, 1};
        n = nseg[which];
        for (int k = 0; k < n; k++)
            idx[k] = seg[which][k];
    } else {
        static const int one[4] = {T_QKVW, T_ATTPROJW, T_FCW, T_FCPROJW};
        idx[0] = one[which];
    }
    const tensor_info *t = &m->tensors[m->t_layer0 + (l - m->sh.layer_begin) * m->npl];
    v.nseg = n;
    for (int k = 0; k < n; k++)
        v.data[k] = m->vw[t - m->tensors + idx[k]].data, v.rows[k] = t[idx[k]].n / t[idx[k]].sl.cols;
    return v;
}

/* out (N,OC) = inp (N,IC) W^T + b over a view's matrix: each part into its columns, an
 * integer-dot GEMM (parlm_qgemm) for Q8_0 / Q4_0, the f32 GEMM for f32; the head's
 * columns past the real vocabulary are 0 */
static parlm_status view_matmul(parlm_gpt *m, float *out, const float *inp, int l, int which,
                                const float *b, int64_t N, int64_t IC, int64_t OC)
{
    vmat v = view_mat(m, l, which);
    int64_t c0 = 0;
    for (int k = 0; k < v.nseg; k++) {
        if (m->view_type == PARLM_WT_F32)
            RETURN_IF_ERROR(parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, N, v.rows[k], IC, 1.0f, inp,
                                        IC, v.data[k], IC, 0.0f, out + c0, OC));
        else
            RETURN_IF_ERROR(parlm_qgemm(m->view_type, N, v.rows[k], IC, v.data[k], inp, IC,
                                        out + c0, OC));
        c0 += v.rows[k];
    }
    for (int64_t i = 0; c0 < OC && i < N; i++)
        memset(out + i * OC + c0, 0, (size_t)(OC - c0) * sizeof(float));
    if (b)
        RETURN_IF_ERROR(parlm_bias_forward(out, b, N, OC));
    return PARLM_OK;
}

parlm_status parlm_gpt_shard_from(parlm_gpt **out, parlm_gpt *full, const parlm_gpt_shard *sh)
{
    if (!out || !full || !sh)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_shard_from: null argument");
    *out = NULL;
    RETURN_IF_ERROR(view_refused(full, "parlm_gpt_shard_from"));
    if (full->sh.tp != 1 || !full->first || !full->last)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_shard_from: the source must be a whole model "
                           "(it is a shard: tp %d, layers %d..%d)", full->sh.tp,
                           full->sh.layer_begin, full->sh.layer_end - 1);
    parlm_gpt *s;
    RETURN_IF_ERROR(parlm_gpt_create_shard(&s, &full->cfg, sh, 0));
    for (int i = 0; i < s->ntensors; i++) {
        int64_t off;
        parlm_gpt_tensor_info(s, i, NULL, NULL, &off, NULL);
        parlm_gpt_slice_copy(&s->tensors[i].sl, s->params + off,
                             full->params + s->tensors[i].sl.full_offset, 0);
    }
    s->step = full->step;
    *out = s;
    return PARLM_OK;
}

parlm_status parlm_gpt_create(parlm_gpt **out, const parlm_gpt_config *cfg, uint64_t seed)
{
    return parlm_gpt_create_shard(out, cfg, NULL, seed);
}

parlm_gpt_shard parlm_gpt_get_shard(const parlm_gpt *m)
{
    parlm_gpt_shard z = {1, 0, 0, 0};
    return m ? m->sh : z;
}

parlm_status parlm_gpt_tensor_slice(const parlm_gpt *m, int i, parlm_gpt_slice *s)
{
    if (!m || !s || i < 0 || i >= m->ntensors)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_tensor_slice: no tensor %d", i);
    *s = m->tensors[i].sl;
    return PARLM_OK;
}

void parlm_gpt_slice_copy(const parlm_gpt_slice *s, float *local, float *full, int to_full)
{
    size_t row = (size_t)s->cols * sizeof(float);
    for (int k = 0; k < s->nseg; k++)
        for (int64_t r = 0; r < s->rows; r++) {
            float *l = local + (k * s->rows + r) * s->cols;
            float *f = full + (s->row0[k] + r) * s->full_cols + s->col0;
            if (to_full)
                memcpy(f, l, row);
            else
                memcpy(l, f, row);
        }
}

parlm_status parlm_gpt_set_tp_comm(parlm_gpt *m, const parlm_gpt_tp_comm *comm)
{
    if (!m || !comm || !comm->allreduce_sum || !comm->all_gather)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_tp_comm: null model or callback");
    m->tp = *comm;
    m->have_tp = 1;
    return PARLM_OK;
}

parlm_gpt_config parlm_gpt_get_config(const parlm_gpt *m)
{
    parlm_gpt_config z = {0};
    return m ? m->cfg : z;
}
int64_t parlm_gpt_num_params(const parlm_gpt *m)
{
    return m ? m->view ? m->view_total : m->nparams : 0;
}
float *parlm_gpt_params(parlm_gpt *m)
{
    if (m && m->view) /* a view's matrices are elsewhere: parlm_gpt_view_vectors */
        return NULL;
    if (m)
        m->bf16_stale = m->q_stale = 1; /* the caller may write them */
    return m ? m->params : NULL;
}
static void grads_clear(parlm_gpt *m);
float *parlm_gpt_grads(parlm_gpt *m)
{
    if (!m)
        return NULL;
    grads_clear(m); /* the caller may read or write through the pointer */
    return m->grads;
}
float *parlm_gpt_adam_m(parlm_gpt *m) { return m ? m->m : NULL; }
float *parlm_gpt_adam_v(parlm_gpt *m) { return m ? m->v : NULL; }
int64_t parlm_gpt_get_step(const parlm_gpt *m) { return m ? m->step : 0; }

parlm_status parlm_gpt_set_step(parlm_gpt *m, int64_t step)
{
    if (!m || step < 0)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_step: null model or negative step");
    m->step = step;
    return PARLM_OK;
}

/* Offset and size (floats) of layer `layer`'s block, or (layer = L) of the final
 * layernorm: where the gradients backward reports final to the hook begin. */
static void layer_range(const parlm_gpt *m, int layer, int64_t *offset, int64_t *count)
{
    /* a pipeline stage holds layers [lb, le): the others are empty ranges in place */
    int lb = m->sh.layer_begin, le = m->sh.layer_end;
    if (layer < m->cfg.n_layer) {
        int k = layer < lb ? 0 : layer < le ? layer - lb : le - lb;
        *offset = m->layer_off0 + k * m->layer_size;
        *count = layer >= lb && layer < le ? m->layer_size : 0;
    } else {
        *offset = m->layer_off0 + (int64_t)(le - lb) * m->layer_size;
        *count = m->nparams - *offset;
    }
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
    if (on)
        RETURN_IF_ERROR(view_refused(m, "parlm_gpt_set_bf16"));
    if (on && !m->params_bf16) {
        m->params_bf16 = parlm_alloc((size_t)m->nparams, 2);
        if (!m->params_bf16)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_set_bf16: bf16 weight copy");
    }
    m->bf16 = on != 0;
    m->bf16_widen = parlm_bf16_path_current(NULL) == PARLM_BF16_WIDEN;
    m->bf16_stale = 1;
    return PARLM_OK;
}

parlm_status parlm_gpt_set_decode_type(parlm_gpt *m, int type)
{
    static const char *fn = "parlm_gpt_set_decode_type";
    if (!m)
        return parlm_error(PARLM_EINVAL, "%s: null model", fn);
    if (m->view && type != m->view_type)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: %s: a view decodes on its weights as stored, "
                           "%s", fn, parlm_wtype_name(type) ? parlm_wtype_name(type) : "unknown",
                           parlm_wtype_name(m->view_type));
    if (m->view)
        return PARLM_OK;
    if (type != PARLM_WT_F32 && type != PARLM_WT_Q8_0 && type != PARLM_WT_Q4_0)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: weight type %d (%s): decode takes f32, q8_0 "
                           "or q4_0 (bf16: parlm_gpt_set_bf16)", fn, type,
                           parlm_wtype_name(type) ? parlm_wtype_name(type) : "unknown");
    /* rows are quantized in blocks of 32 along the input: every product's input width */
    const struct { const char *what; int64_t n; } w[] = {
        {"n_embd", m->cfg.n_embd}, {"the shard's attention width (n_embd / tp)", m->Ca},
        {!m->llama ? "the shard's MLP width (4 n_embd / tp)"
         : m->sh.tp > 1 ? "the shard's SwiGLU width (ffn_hidden / tp)" : "ffn_hidden", m->Hm}};
    for (int i = 0; type != PARLM_WT_F32 && i < 3; i++)
        if (w[i].n % PARLM_QBLOCK)
            return parlm_error(PARLM_EINVAL, "%s: %s is %lld, not a multiple of %d: %s blocks "
                               "cannot hold its rows", fn, w[i].what, (long long)w[i].n,
                               PARLM_QBLOCK, parlm_wtype_name(type));
    if (type != m->q_type) {
        parlm_free(m->params_q);
        free(m->q_off);
        m->params_q = NULL, m->q_off = NULL;
    }
    m->q_type = type == PARLM_WT_F32 ? 0 : type;
    m->q_stale = 1;
    return PARLM_OK;
}

/* The quantized copy of the decode weights, (re)made when the parameters changed. */
static parlm_status refresh_q(parlm_gpt *m)
{
    if (!m->q_type)
        return PARLM_OK;
    const int lay = parlm_qlayout_current(m->q_type, NULL);
    if (m->params_q && lay != m->q_layout) { /* parlm_qlayout_select since the last copy */
        parlm_free(m->params_q);
        free(m->q_off);
        m->params_q = NULL, m->q_off = NULL;
        m->q_stale = 1;
    }
    if (!m->q_stale)
        return PARLM_OK;
    const int r8 = lay == PARLM_QLAYOUT_R8;
    const int64_t C = m->cfg.n_embd, L = m->cfg.n_layer, Ca = m->Ca, Hm = m->Hm;
    /* (rows, columns) of qkvw, attprojw, fcw, fcprojw (Llama: wq|wk|wv, wo, w_gate|w_up,
     * w_down) */
    const int64_t shape[4][2] = {{m->Wqkv, C}, {C, Ca}, {m->Hf, C}, {C, Hm}};
    uint64_t mat_bytes[4], head, plain = 0, b;
    for (int i = 0; i < 4; i++)
        RETURN_IF_ERROR(r8 ? parlm_qrepack_bytes(m->q_type, shape[i][0], shape[i][1], &mat_bytes[i])
                           : parlm_wtype_bytes(m->q_type, (uint64_t)(shape[i][0] * shape[i][1]),
                                               &mat_bytes[i]));
    RETURN_IF_ERROR(r8 ? parlm_qrepack_bytes(m->q_type, m->Vs, C, &head)
                       : parlm_wtype_bytes(m->q_type, (uint64_t)m->Vs * (uint64_t)C, &head));
    for (int i = 0; i < 4; i++) { /* the largest matrix in plain rows: the staging buffer */
        RETURN_IF_ERROR(parlm_wtype_bytes(m->q_type, (uint64_t)(shape[i][0] * shape[i][1]), &b));
        plain = b > plain ? b : plain;
    }
    RETURN_IF_ERROR(parlm_wtype_bytes(m->q_type, (uint64_t)m->Vs * (uint64_t)C, &b));
    plain = b > plain ? b : plain;
    if (!m->params_q) {
        uint64_t total = 0;
        m->q_off = malloc((size_t)(4 * L + 1) * sizeof *m->q_off);
        if (!m->q_off)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: quantized weight table");
        for (int64_t l = 0; l < L; l++)
            for (int i = 0; i < 4; i++) {
                m->q_off[4 * l + i] = total;
                total += mat_bytes[i];
            }
        m->q_off[4 * L] = total;
        total += head;
        m->params_q = parlm_alloc((size_t)total, 1);
        if (!m->params_q)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: %s copy of the weights (%llu bytes)",
                               parlm_wtype_name(m->q_type), (unsigned long long)total);
        m->q_layout = lay;
    }
    /* quantized to plain ggml rows, then (r8) repacked into the decode copy */
    uint8_t *stage = r8 ? malloc((size_t)plain) : NULL;
    if (r8 && !stage)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: %llu bytes to quantize the weights",
                           (unsigned long long)plain);
    parlm_status st = PARLM_OK;
    for (int l = 0; l < (int)L && !st; l++) {
        layer_views v = lview(m, m->params, l);
        const float *mat[4] = {v.qkvw, v.attprojw, v.fcw, v.fcprojw};
        for (int i = 0; i < 4 && !st; i++) {
            uint8_t *dst = m->params_q + m->q_off[4 * l + i];
            if (!(st = parlm_quantize(m->q_type, mat[i], shape[i][0] * shape[i][1],
                                      r8 ? stage : dst)) && r8)
                st = parlm_qrepack(m->q_type, shape[i][0], shape[i][1], stage, dst);
        }
    }
    uint8_t *hq = m->params_q + m->q_off[4 * L];
    if (!st && !(st = parlm_quantize(m->q_type, HEAD(m->params), (int64_t)m->Vs * C,
                                     r8 ? stage : hq)) && r8)
        st = parlm_qrepack(m->q_type, m->Vs, C, stage, hq);
    free(stage);
    if (st)
        return st;
    m->q_stale = 0;
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

/* The bf16 copy of the weights, brought up to date when something will read it: every
 * matmul on the dot path; only one-row products (decode) on the widen path, whose GEMMs
 * run on the f32 master weights (widened bf16 would cost a conversion per step and give
 * the same kernels' speed, with the weights rounded). */
static parlm_status refresh_bf16(parlm_gpt *m, int rows)
{
    if (!m->bf16 || !m->bf16_stale || (m->bf16_widen && rows > 1))
        return PARLM_OK;
    m->bf16_stale = 0;
    return parlm_f32_to_bf16(m->params, m->params_bf16, m->nparams);
}

/* out (N,OC) = inp (N,IC) W^T (W is (OC,IC)) + b (OC, may be NULL); in a view, the
 * product `which` (VM_*) of layer l instead of W */
static parlm_status matmul_fwd(parlm_gpt *m, float *out, const float *inp, const float *W,
                               int l, int which, const float *b, int64_t N, int64_t IC, int64_t OC)
{
    if (m->view) /* W is not in params: layer l's product `which` (VM_*) */
        return view_matmul(m, out, inp, l, which, b, N, IC, OC);
    if (m->bf16 && (N == 1 || !m->bf16_widen)) {
        const uint16_t *Wb = m->params_bf16 + (W - m->params);
        if (N == 1) { /* decode: stream bf16 weights against the f32 activation */
            RETURN_IF_ERROR(parlm_gemv_bf16(OC, IC, 1.0f, Wb, IC, inp, 0.0f, out));
        } else {
            RETURN_IF_ERROR(bf16_scratch(m, N * IC));
            RETURN_IF_ERROR(parlm_f32_to_bf16(inp, m->xa_bf16, N * IC));
            RETURN_IF_ERROR(parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_TRANS, N, OC, IC, 1.0f, m->xa_bf16, IC, Wb,
                                IC, 0.0f, out, OC));
        }
    } else {
        RETURN_IF_ERROR(parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, N, OC, IC, 1.0f, inp, IC, W, IC, 0.0f, out,
                        OC));
    }
    if (b)
        RETURN_IF_ERROR(parlm_bias_forward(out, b, N, OC));
    return PARLM_OK;
}

/* dinp (N,IC) = dout (N,OC) W (written); dW (OC,IC) = dout^T inp + wbeta dW (0: written,
 * 1: added); db (OC) += colsum(dout) */
static parlm_status matmul_bwd(parlm_gpt *m, float *dinp, float *dW, float *db, const float *dout,
                               const float *inp, const float *W, int64_t N, int64_t IC, int64_t OC,
                               float wbeta)
{
    if (m->bf16 && !m->bf16_widen) {
        const uint16_t *Wb = m->params_bf16 + (W - m->params);
        RETURN_IF_ERROR(bf16_scratch(m, N * (IC > OC ? IC : OC)));
        RETURN_IF_ERROR(parlm_f32_to_bf16(dout, m->xa_bf16, N * OC));
        RETURN_IF_ERROR(parlm_f32_to_bf16(inp, m->xb_bf16, N * IC));
        RETURN_IF_ERROR(parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_NO_TRANS, N, IC, OC, 1.0f, m->xa_bf16, OC, Wb,
                            IC, 0.0f, dinp, IC));
        RETURN_IF_ERROR(parlm_gemm_bf16(PARLM_TRANS, PARLM_NO_TRANS, OC, IC, N, 1.0f, m->xa_bf16, OC,
                            m->xb_bf16, IC, wbeta, dW, IC));
    } else {
        RETURN_IF_ERROR(parlm_sgemm(PARLM_NO_TRANS, PARLM_NO_TRANS, N, IC, OC, 1.0f, dout, OC, W, IC, 0.0f,
                        dinp, IC));
        RETURN_IF_ERROR(parlm_sgemm(PARLM_TRANS, PARLM_NO_TRANS, OC, IC, N, 1.0f, dout, OC, inp, IC, wbeta,
                        dW, IC));
    }
    if (db)
        RETURN_IF_ERROR(parlm_bias_backward(db, dout, N, OC));
    return PARLM_OK;
}

/* ---- training arena ------------------------------------------------------------------------ */

parlm_status parlm_gpt_setup_slots(parlm_gpt *m, int B, int T, int training, int nslots)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_setup: null model");
    if (B < 1 || T < 1 || T > m->cfg.max_seq)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_setup: need B >= 1 and 1 <= T <= %d (got B=%d "
                           "T=%d)", m->cfg.max_seq, B, T);
    if (nslots < 1 || nslots > 4096)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_setup_slots: %d slots (1 .. 4096)", nslots);
    if (training)
        RETURN_IF_ERROR(view_refused(m, "parlm_gpt_setup (training)"));
    int64_t N = (int64_t)B * T, C = m->cfg.n_embd, L = m->sh.layer_end - m->sh.layer_begin;
    int64_t Ca = m->Ca, NHa = m->NHa, Hm = m->Hm, Vs = m->Vs, Wqkv = m->Wqkv, Hf = m->Hf;
    /* per layer: ln1 C, stats 2, qkv Wqkv, atty Ca, lse NHa, res2 C, ln2 C, stats 2, fch Hf,
     * fch_gelu Hm, res3 C  => 4C + Wqkv + Ca + Hf + Hm + 4 + NHa per row */
    int64_t per_layer = N * (4 * C + Wqkv + Ca + Hf + Hm + 4 + NHa);
    int64_t per_slot = N * C /* encoded or stage input */ + L * per_layer;
    if (m->last)
        per_slot += N * (C + 2) /* lnf */ + N * Vs + 2 * N /* losses, ce_lse */;
    else if (training)
        per_slot += N * C; /* grad_out */
    int64_t total = per_slot * nslots + N /* dloss */;
    if (m->last && m->sh.tp > 1)
        total += 2 * N * m->sh.tp; /* ce_part */
    if (training) /* d_res d_ln d_atty d_qkv d_fch d_fch_gelu */
        total += N * C * 2 + N * Ca + N * Wqkv + N * Hf + N * Hm;
    if (N > (int64_t)1 << 40 || per_slot > ((int64_t)1 << 60) / 4 / nslots)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_setup: B*T = %lld is too large", (long long)N);
    float *arena = parlm_alloc((size_t)total, sizeof(float));
    act_slot *slots = calloc((size_t)nslots, sizeof *slots);
    layer_acts *acts = calloc((size_t)(L * nslots), sizeof *acts);
    if (!arena || !slots || !acts) {
        parlm_free(arena);
        free(slots);
        free(acts);
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_setup: activations for B=%d T=%d (%d slots) "
                           "need %.1f GiB", B, T, nslots, (double)total * 4 / (1 << 30));
    }
    parlm_free(m->arena);
    if (m->slots)
        free(m->slots[0].acts);
    free(m->slots);
    m->arena = arena;
    m->arena_floats = total;
    m->slots = slots;
    m->nslots = nslots;
    float *p = arena;
#define TAKE(n) (p += (n), p - (n))
    for (int s = 0; s < nslots; s++) {
        act_slot *sl = &slots[s];
        sl->acts = acts + s * L;
        sl->encoded = TAKE(N * C);
        for (int64_t l = 0; l < L; l++) {
            layer_acts *a = &sl->acts[l];
            a->ln1 = TAKE(N * C), a->ln1_mean = TAKE(N), a->ln1_rstd = TAKE(N);
            a->qkv = TAKE(N * Wqkv), a->atty = TAKE(N * Ca), a->att_lse = TAKE(N * NHa);
            a->res2 = TAKE(N * C);
            a->ln2 = TAKE(N * C), a->ln2_mean = TAKE(N), a->ln2_rstd = TAKE(N);
            a->fch = TAKE(N * Hf), a->fch_gelu = TAKE(N * Hm), a->res3 = TAKE(N * C);
        }
        if (m->last) {
            sl->lnf = TAKE(N * C), sl->lnf_mean = TAKE(N), sl->lnf_rstd = TAKE(N);
            sl->logits = TAKE(N * Vs);
            sl->losses = TAKE(N), sl->ce_lse = TAKE(N);
        } else if (training) {
            sl->grad_out = TAKE(N * C);
        }
    }
    m->dloss = TAKE(N);
    m->ce_part = m->last && m->sh.tp > 1 ? TAKE(2 * N * m->sh.tp) : NULL;
    m->d_res = m->d_ln = m->d_atty = m->d_qkv = m->d_fch = m->d_fch_gelu = NULL;
    if (training) {
        m->d_res = TAKE(N * C), m->d_ln = TAKE(N * C), m->d_atty = TAKE(N * Ca);
        m->d_qkv = TAKE(N * Wqkv), m->d_fch = TAKE(N * Hf), m->d_fch_gelu = TAKE(N * Hm);
    }
#undef TAKE
    m->B = B, m->T = T, m->training = training;
    m->cur = &slots[0];
    m->tok_rows_valid = 0;
    return PARLM_OK;
}

parlm_status parlm_gpt_setup(parlm_gpt *m, int B, int T, int training)
{
    return parlm_gpt_setup_slots(m, B, T, training, 1);
}

parlm_status parlm_gpt_set_slot(parlm_gpt *m, int slot)
{
    if (!m || !m->slots)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_slot: null model or no parlm_gpt_setup");
    if (slot < 0 || slot >= m->nslots)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_slot: slot %d of %d", slot, m->nslots);
    m->cur = &m->slots[slot];
    return PARLM_OK;
}

int64_t parlm_gpt_activation_bytes(const parlm_gpt *m)
{
    return m && m->arena ? m->arena_floats * (int64_t)sizeof(float) : 0;
}

float *parlm_gpt_stage_input(parlm_gpt *m)
{
    return m && m->cur && !m->first ? m->cur->encoded : NULL;
}

const float *parlm_gpt_stage_output(const parlm_gpt *m)
{
    if (!m || !m->cur || m->last || !m->cur->have_forward)
        return NULL;
    int L = m->sh.layer_end - m->sh.layer_begin;
    return m->cur->acts[L - 1].res3;
}

float *parlm_gpt_stage_grad_output(parlm_gpt *m)
{
    return m && m->cur && !m->last ? m->cur->grad_out : NULL;
}

const float *parlm_gpt_stage_grad_input(const parlm_gpt *m)
{
    return m && m->training && !m->first && m->grad_in_valid ? m->d_res : NULL;
}

/* ---- tensor parallelism ------------------------------------------------------------------ */

/* buf (n) = its sum over the tensor-parallel group (nothing without one) */
static parlm_status tp_sum(parlm_gpt *m, float *buf, int64_t n)
{
    return m->sh.tp > 1 ? m->tp.allreduce_sum(m->tp.arg, buf, n) : PARLM_OK;
}

/* first vocabulary row of this shard's slice */
static int vocab0(const parlm_gpt *m) { return m->sh.tp_rank * m->Vs; }

/* out (n,C) = wte[tokens] (+ wpe[pos0 + i % Tn] for GPT-2) in a view: each row converted
 * from the embedding's stored type, the same values as its f32 copy */
static parlm_status view_embed(parlm_gpt *m, float *out, const int32_t *tokens, int64_t n,
                               int pos0, int Tn)
{
    const int64_t C = m->cfg.n_embd;
    const parlm_gpt_weight *e = &m->vw[m->t_wte];
    uint64_t row;
    RETURN_IF_ERROR(parlm_wtype_bytes(e->type, (uint64_t)C, &row));
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
            return parlm_error(PARLM_EINVAL, "token %d at %lld is outside the vocabulary [0, %d)",
                               tokens[i], (long long)i, m->cfg.vocab);
        RETURN_IF_ERROR(parlm_dequantize(e->type, (const uint8_t *)e->data +
                                                      (uint64_t)tokens[i] * row, C, out + i * C));
        if (!m->llama)
            RETURN_IF_ERROR(parlm_add(out + i * C, out + i * C,
                                      WPE(m->params) + (int64_t)(pos0 + i % Tn) * C, C));
    }
    return PARLM_OK;
}

/* out (n,C) = wte[tokens] + wpe[pos0 ..]: the whole lookup, or on a shard the slice's
 * rows (0 for tokens of other slices) summed over the group, which is exact */
static parlm_status embed(parlm_gpt *m, float *out, const int32_t *tokens, int64_t n, int pos0,
                          int Bn, int Tn)
{
    int C = m->cfg.n_embd;
    if (m->view) /* rows of the bound embedding, in its type, + wpe (GPT-2) */
        return view_embed(m, out, tokens, n, pos0, Tn);
    if (m->llama) { /* no position embedding: RoPE rotates q and k instead */
        RETURN_IF_ERROR(parlm_embedding_vp_forward(out, tokens, WTE(m->params), n, C, vocab0(m),
                                                   m->Vs, m->cfg.vocab));
        return tp_sum(m, out, n * C);
    }
    const float *wpe = WPE(m->params) + (int64_t)pos0 * C;
    if (m->sh.tp == 1)
        return parlm_embedding_forward(out, tokens, WTE(m->params), wpe, Bn, Tn, C, m->cfg.vocab);
    RETURN_IF_ERROR(parlm_embedding_vp_forward(out, tokens, WTE(m->params), n, C, vocab0(m), m->Vs,
                                   m->cfg.vocab));
    RETURN_IF_ERROR(tp_sum(m, out, n * C));
    for (int b = 0; b < Bn; b++) /* + wpe, the same float addition as the whole lookup */
        RETURN_IF_ERROR(parlm_bias_forward(out + (int64_t)b * Tn * C, wpe, 1, (int64_t)Tn * C));
    return PARLM_OK;
}

/* out (N,C) = inp (N,IC) W^T + b, W row-parallel on a shard: the partial products are
 * summed over the group, then the replicated bias is added once */
static parlm_status row_parallel_fwd(parlm_gpt *m, float *out, const float *inp, const float *W,
                                     int l, int which, const float *b, int64_t N, int64_t IC,
                                     int64_t C)
{
    if (m->sh.tp == 1)
        return matmul_fwd(m, out, inp, W, l, which, b, N, IC, C);
    RETURN_IF_ERROR(matmul_fwd(m, out, inp, W, l, which, NULL, N, IC, C));
    RETURN_IF_ERROR(tp_sum(m, out, N * C));
    return b ? parlm_bias_forward(out, b, N, C) : PARLM_OK; /* Llama: no bias */
}

/* ---- the ops where the architectures differ ------------------------------------------------ */

/* out (N,C) = layernorm(x) w + b, or Llama's RMSNorm x rstd w (mean unused) */
static parlm_status norm_fwd(const parlm_gpt *m, float *out, float *mean, float *rstd,
                             const float *x, const float *w, const float *b, int64_t N)
{
    if (m->llama)
        return parlm_rmsnorm_forward(out, rstd, x, w, N, m->cfg.n_embd, m->cfg.norm_eps);
    return parlm_layernorm_forward(out, mean, rstd, x, w, b, N, m->cfg.n_embd);
}

/* dx += d(norm)/dx . dout, dw (and db) += their gradients */
static parlm_status norm_bwd(const parlm_gpt *m, float *dx, float *dw, float *db,
                             const float *dout, const float *x, const float *w, const float *mean,
                             const float *rstd, int64_t N)
{
    if (m->llama)
        return parlm_rmsnorm_backward(dx, dw, dout, x, w, rstd, N, m->cfg.n_embd);
    return parlm_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, m->cfg.n_embd);
}

/* Llama: rotates (inverse = 0) or un-rotates the gradient of (inverse = 1) the q and k
 * parts of Bn sequences of Tn qkv rows (Wqkv floats each) at positions pos0 .. */
static parlm_status rope_qk(const parlm_gpt *m, float *qkv, int64_t Bn, int64_t Tn, int pos0,
                            int inverse)
{
    const int64_t hs = m->cfg.n_embd / m->cfg.n_head, W = m->Wqkv, maxT = m->cfg.max_seq;
    for (int64_t b = 0; b < Bn; b++) {
        float *q = qkv + b * Tn * W, *k = q + m->Ca;
        if (inverse) {
            RETURN_IF_ERROR(parlm_rope_backward(q, Tn, m->NHa, hs, W, pos0, m->rope_cos,
                                                m->rope_sin, maxT));
            RETURN_IF_ERROR(parlm_rope_backward(k, Tn, m->NKVa, hs, W, pos0, m->rope_cos,
                                                m->rope_sin, maxT));
        } else {
            RETURN_IF_ERROR(parlm_rope_forward(q, Tn, m->NHa, hs, W, pos0, m->rope_cos,
                                               m->rope_sin, maxT));
            RETURN_IF_ERROR(parlm_rope_forward(k, Tn, m->NKVa, hs, W, pos0, m->rope_cos,
                                               m->rope_sin, maxT));
        }
    }
    return PARLM_OK;
}

/* the MLP activation: act (N,Hm) = gelu(fch (N,Hm)), or Llama's silu(gate) * up of
 * fch (N,2F) = [gate | up] */
static parlm_status act_fwd(const parlm_gpt *m, float *act, const float *fch, int64_t N)
{
    if (m->llama)
        return parlm_swiglu_forward(act, fch, N, m->Hm);
    return parlm_gelu_forward(act, fch, N * m->Hm);
}

/* dfch (N,Hf) += d(act)/d(fch) . dact (N,Hm) */
static parlm_status act_bwd(const parlm_gpt *m, float *dfch, const float *fch, const float *dact,
                            int64_t N)
{
    if (m->llama)
        return parlm_swiglu_backward(dfch, dact, fch, N, m->Hm);
    return parlm_gelu_backward(dfch, fch, dact, N * m->Hm);
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
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: null model");
    if (!m->arena)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: call parlm_gpt_setup first");
    if (m->first != (inputs != NULL))
        return parlm_error(PARLM_EINVAL, m->first ? "parlm_gpt_forward: null inputs"
                           : "parlm_gpt_forward: a later pipeline stage reads its input from "
                             "parlm_gpt_stage_input (pass inputs = NULL)");
    if (targets && !m->last)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: only the last pipeline stage takes "
                           "targets");
    if (targets && !loss)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: targets given but loss is NULL");
    if (m->sh.tp > 1 && !m->have_tp)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_forward: a tensor-parallel shard needs "
                           "parlm_gpt_set_tp_comm first");
    RETURN_IF_ERROR(view_ready(m, "parlm_gpt_forward"));
    const parlm_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, NHa = m->NHa, Ca = m->Ca, Hm = m->Hm;
    int lb = m->sh.layer_begin;
    int64_t N = (int64_t)B * T;
    act_slot *S = m->cur;
    S->have_forward = 0;
    m->tok_rows_valid = 0;
    RETURN_IF_ERROR(refresh_bf16(m, B * T));
    if (m->first)
        RETURN_IF_ERROR(embed(m, S->encoded, inputs, N, 0, B, T));
    const float *res = S->encoded;
    for (int l = lb; l < m->sh.layer_end; l++) {
        CHECK_CANCEL(m, "forward");
        layer_views w = lview(m, m->params, l);
        layer_acts *a = &S->acts[l - lb];
        RETURN_IF_ERROR(norm_fwd(m, a->ln1, a->ln1_mean, a->ln1_rstd, res, w.ln1w, w.ln1b, N));
        RETURN_IF_ERROR(matmul_fwd(m, a->qkv, a->ln1, w.qkvw, l, VM_QKV, w.qkvb, N, C, m->Wqkv));
        if (m->llama)
            RETURN_IF_ERROR(rope_qk(m, a->qkv, B, T, 0, 0));
        RETURN_IF_ERROR(
            parlm_attention_forward_gqa(a->atty, a->att_lse, a->qkv, B, T, Ca, NHa, m->NKVa));
        RETURN_IF_ERROR(row_parallel_fwd(m, a->res2, a->atty, w.attprojw, l, VM_ATTPROJ, w.attprojb, N, Ca,
                                         C));
        RETURN_IF_ERROR(parlm_add(a->res2, a->res2, res, N * C));
        RETURN_IF_ERROR(norm_fwd(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w.ln2w, w.ln2b, N));
        RETURN_IF_ERROR(matmul_fwd(m, a->fch, a->ln2, w.fcw, l, VM_FC, w.fcb, N, C, m->Hf));
        RETURN_IF_ERROR(act_fwd(m, a->fch_gelu, a->fch, N));
        RETURN_IF_ERROR(row_parallel_fwd(m, a->res3, a->fch_gelu, w.fcprojw, l, VM_FCPROJ, w.fcprojb,
                                         N, Hm, C));
        RETURN_IF_ERROR(parlm_add(a->res3, a->res3, a->res2, N * C));
        res = a->res3;
    }
    S->inputs = inputs;
    S->targets = NULL;
    if (!m->last) { /* the stage's output is its last layer's residual */
        S->have_forward = 1;
        return PARLM_OK;
    }
    CHECK_CANCEL(m, "forward");
    RETURN_IF_ERROR(norm_fwd(m, S->lnf, S->lnf_mean, S->lnf_rstd, res, LNFW(m->params),
                             LNFB(m->params), N));
    RETURN_IF_ERROR(matmul_fwd(m, S->logits, S->lnf, VIEW_OR(HEAD(m->params)), c->n_layer, VM_HEAD,
                               NULL, N, C, m->Vs));
    if (targets && m->sh.tp > 1) { /* vocab-parallel: 2 floats a row from every rank */
        RETURN_IF_ERROR(parlm_crossentropy_vp_partial(m->ce_part + 2 * N * m->sh.tp_rank, S->logits, targets,
                                          N, vocab0(m), m->Vs, c->vocab));
        RETURN_IF_ERROR(m->tp.all_gather(m->tp.arg, m->ce_part, 2 * N));
        RETURN_IF_ERROR(parlm_crossentropy_vp_combine(S->losses, S->ce_lse, m->ce_part, N, m->sh.tp));
    } else if (targets) {
        RETURN_IF_ERROR(parlm_crossentropy_forward(S->losses, S->ce_lse, S->logits, targets, N, c->vocab,
                                       c->vocab_pad));
    }
    if (targets) {
        double sum = 0.0;
        for (int64_t i = 0; i < N; i++)
            sum += S->losses[i];
        *loss = (float)(sum / (double)N);
        S->targets = targets;
    }
    S->have_forward = 1;
    return PARLM_OK;
}

const float *parlm_gpt_logits(const parlm_gpt *m)
{
    return m && m->cur && m->last && m->cur->have_forward ? m->cur->logits : NULL;
}

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
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_set_grad_buffer"));
    grads_clear(m);
    return move_buffer(m, &m->grads, &m->grads_external, buf, "parlm_gpt_set_grad_buffer");
}

parlm_status parlm_gpt_set_param_buffer(parlm_gpt *m, float *buf)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_param_buffer: null model");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_set_param_buffer"));
    return move_buffer(m, &m->params, &m->params_external, buf, "parlm_gpt_set_param_buffer");
}

parlm_status parlm_gpt_set_defer_token_grad(parlm_gpt *m, int on)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_set_defer_token_grad: null model");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_set_defer_token_grad"));
    if (on && (!m->first || !m->last || m->sh.tp > 1))
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_gpt_set_defer_token_grad: only for the "
                           "whole model, not a shard");
    m->defer_tok = on != 0;
    return PARLM_OK;
}

parlm_status parlm_gpt_token_grad_add(parlm_gpt *m, const int32_t *tokens, const float *rows,
                                      int64_t n)
{
    if (!m || (n > 0 && (!tokens || !rows)) || n < 0)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_token_grad_add: null argument or n < 0");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_token_grad_add"));
    if (!m->first || m->sh.tp > 1)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_gpt_token_grad_add: only for a model "
                           "holding the whole token embedding");
    const parlm_gpt_config *c = &m->cfg;
    for (int64_t i = 0; i < n; i++) /* all of them before anything is added */
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return parlm_error(PARLM_EINVAL, "parlm_gpt_token_grad_add: token %lld is %d "
                               "(vocabulary %d)", (long long)i, tokens[i], c->vocab);
    grads_clear(m);
    /* the lookup's own backward without its position part (dwpe = NULL): threads own
     * columns and take the rows in order, so the sums are those backward would make */
    for (int64_t i = 0; i < n; i += INT_MAX) {
        int k = n - i < INT_MAX ? (int)(n - i) : INT_MAX;
        RETURN_IF_ERROR(parlm_embedding_vp_backward(WTE(m->grads), NULL, rows + i * c->n_embd,
                                                    tokens + i, 1, k, c->n_embd, 0, m->Vs,
                                                    c->vocab));
    }
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
    *tokens = m->cur->inputs;
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
    if (layer >= 0)
        layer_range(m, layer, &off, &n);
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

/* 1 if backward's GEMMs write all of tensor i's gradient: the layers' weight matrices, and
 * the LM head on the last stage (the first product of backward). Every other gradient is a
 * sum that backward adds into: biases, norms, the lookups (wte's after the head's). */
static int grad_by_gemm(const parlm_gpt *m, int i)
{
    if (m->last && i == (m->t_head >= 0 ? m->t_head : m->t_wte))
        return 1;
    int nl = m->sh.layer_end - m->sh.layer_begin;
    if (i < m->t_layer0 || i >= m->t_layer0 + nl * m->npl)
        return 0;
    int j = (i - m->t_layer0) % m->npl;
    if (m->llama) /* wq|wk|wv, w_gate|w_up: one product each, over all their rows */
        return j != LT_ATTN_NORM && j != LT_FFN_NORM;
    return j == T_QKVW || j == T_ATTPROJW || j == T_FCW || j == T_FCPROJW;
}

static void zero_floats(float *x, int64_t n)
{
    int nt = parlm_threads_for(n, (int64_t)1 << 18, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(n, 16, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i0 < i1)
            memset(x + i0, 0, (size_t)(i1 - i0) * sizeof(float));
    }
}

/* Stale gradients (all 0 by the API) are cleared before anything but backward sees them. */
static void grads_clear(parlm_gpt *m)
{
    if (m->grads_stale)
        zero_floats(m->grads, m->nparams);
    m->grads_stale = 0;
}

/* Gradients are 0 from here: marked, not cleared. The next backward writes the weight
 * matrices' gradients (GEMMs with beta = 0) and clears only the rest, so no pass over the
 * parameters writes zeros (0.5 GB a step for GPT-2 124M). */
parlm_status parlm_gpt_zero_grad(parlm_gpt *m)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_zero_grad: null model");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_zero_grad"));
    m->grads_stale = 1;
    return PARLM_OK;
}

/* Backward on stale gradients: clears the runs of tensors that backward adds into. */
static void grads_clear_summed(parlm_gpt *m)
{
    for (int i = 0; i < m->ntensors;) {
        if (grad_by_gemm(m, i)) {
            i++;
            continue;
        }
        int j = i;
        while (j < m->ntensors && !grad_by_gemm(m, j))
            j++;
        int64_t off = m->tensors[i].off;
        zero_floats(m->grads + off, m->tensors[j - 1].off + m->tensors[j - 1].n - off);
        i = j;
    }
    m->grads_stale = 0;
}

parlm_status parlm_gpt_backward(parlm_gpt *m, float loss_scale)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_backward: null model");
    act_slot *S = m->cur;
    if (!m->training || !S || !S->have_forward || (m->last && !S->targets))
        return parlm_error(PARLM_EINVAL, "parlm_gpt_backward: needs a forward with targets after "
                           "parlm_gpt_setup(..., training = 1)");
    const parlm_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, NHa = m->NHa, Ca = m->Ca, Hm = m->Hm;
    int lb = m->sh.layer_begin, le = m->sh.layer_end;
    int64_t N = (int64_t)B * T;
    CHECK_CANCEL(m, "backward");
    S->have_forward = 0;
    m->tok_rows_valid = 0;
    m->grad_in_valid = 0;
    /* on stale gradients the weight matrices' GEMMs write (beta 0), the rest starts at 0 */
    float wb = m->grads_stale ? 0.0f : 1.0f;
    if (m->grads_stale)
        grads_clear_summed(m);
    m->ready_from = m->nparams;
    m->head_ready = 0;
    const float *res_last = S->acts[le - lb - 1].res3;
    if (m->last) {
        for (int64_t i = 0; i < N; i++)
            m->dloss[i] = loss_scale / (float)N;
        /* dlogits overwrite the logits in place */
        if (m->sh.tp > 1)
            RETURN_IF_ERROR(parlm_crossentropy_vp_backward(S->logits, S->logits, S->targets, S->ce_lse,
                                               m->dloss, N, vocab0(m), m->Vs, c->vocab));
        else
            RETURN_IF_ERROR(parlm_crossentropy_backward(S->logits, S->logits, S->targets, S->ce_lse,
                                            m->dloss, N, c->vocab, c->vocab_pad));
        RETURN_IF_ERROR(matmul_bwd(m, m->d_ln, HEAD(m->grads), NULL, S->logits, S->lnf,
                                   HEAD(m->params), N, C, m->Vs, wb));
        RETURN_IF_ERROR(tp_sum(m, m->d_ln, N * C)); /* each vocab slice's part of d(lnf out) */
        if (m->defer_tok && m->tensors[0].off == 0) { /* wte is final but for the lookup's rows */
            m->head_ready = m->tensors[0].n;
            TICK(m);
        }
        zero_floats(m->d_res, N * C);
        RETURN_IF_ERROR(norm_bwd(m, m->d_res, LNFW(m->grads), LNFB(m->grads), m->d_ln, res_last,
                                 LNFW(m->params), S->lnf_mean, S->lnf_rstd, N));
        grads_ready(m, c->n_layer);
    } else { /* the next stage's gradient of our output */
        memcpy(m->d_res, S->grad_out, (size_t)(N * C) * sizeof(float));
    }
    for (int l = le - 1; l >= lb; l--) {
        CHECK_CANCEL(m, "backward");
        layer_views w = lview(m, m->params, l), g = lview(m, m->grads, l);
        layer_acts *a = &S->acts[l - lb];
        const float *res_in = l > lb ? S->acts[l - lb - 1].res3 : S->encoded;
        /* res3 = res2 + fcproj: d_res is both d(res2) and d(fcproj) */
        RETURN_IF_ERROR(matmul_bwd(m, m->d_fch_gelu, g.fcprojw, g.fcprojb, m->d_res, a->fch_gelu, w.fcprojw,
                       N, Hm, C, wb));
        TICK(m);
        zero_floats(m->d_fch, N * m->Hf);
        RETURN_IF_ERROR(act_bwd(m, m->d_fch, a->fch, m->d_fch_gelu, N));
        RETURN_IF_ERROR(matmul_bwd(m, m->d_ln, g.fcw, g.fcb, m->d_fch, a->ln2, w.fcw, N, C, m->Hf,
                                   wb));
        RETURN_IF_ERROR(tp_sum(m, m->d_ln, N * C)); /* each shard's MLP units' part of d(ln2 out) */
        TICK(m);
        RETURN_IF_ERROR(norm_bwd(m, m->d_res, g.ln2w, g.ln2b, m->d_ln, a->res2, w.ln2w,
                                 a->ln2_mean, a->ln2_rstd, N));
        /* res2 = res_in + attproj: d_res is both d(res_in) and d(attproj) */
        RETURN_IF_ERROR(matmul_bwd(m, m->d_atty, g.attprojw, g.attprojb, m->d_res, a->atty, w.attprojw, N, Ca,
                       C, wb));
        TICK(m);
        zero_floats(m->d_qkv, N * m->Wqkv);
        RETURN_IF_ERROR(parlm_attention_backward_gqa(m->d_qkv, m->d_atty, a->qkv, a->atty,
                                                     a->att_lse, B, T, Ca, NHa, m->NKVa));
        if (m->llama) /* the gradient of q and k before their rotation */
            RETURN_IF_ERROR(rope_qk(m, m->d_qkv, B, T, 0, 1));
        TICK(m);
        RETURN_IF_ERROR(matmul_bwd(m, m->d_ln, g.qkvw, g.qkvb, m->d_qkv, a->ln1, w.qkvw, N, C,
                                   m->Wqkv, wb));
        RETURN_IF_ERROR(tp_sum(m, m->d_ln, N * C)); /* each shard's heads' part of d(ln1 out) */
        RETURN_IF_ERROR(norm_bwd(m, m->d_res, g.ln1w, g.ln1b, m->d_ln, res_in, w.ln1w,
                                 a->ln1_mean, a->ln1_rstd, N));
        grads_ready(m, l);
    }
    if (!m->first) { /* d_res is the gradient of the stage's input */
        m->grad_in_valid = 1;
    } else if (m->head_ready) {
        if (!m->llama)
            wpe_backward(WPE(m->grads), m->d_res, N, T, C);
        m->tok_rows_valid = 1;
    } else if (m->llama) { /* the token lookup alone: no position embedding */
        RETURN_IF_ERROR(parlm_embedding_vp_backward(WTE(m->grads), NULL, m->d_res, S->inputs, B,
                                                    T, C, vocab0(m), m->Vs, c->vocab));
    } else if (m->sh.tp > 1) { /* the rows of the tokens in our vocab slice */
        RETURN_IF_ERROR(parlm_embedding_vp_backward(WTE(m->grads), WPE(m->grads), m->d_res, S->inputs, B, T,
                                        C, vocab0(m), m->Vs, c->vocab));
    } else {
        RETURN_IF_ERROR(parlm_embedding_backward(WTE(m->grads), WPE(m->grads), m->d_res, S->inputs, B, T, C,
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
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_grad_norm"));
    grads_clear(m);
    double s;
    RETURN_IF_ERROR(parlm_sumsq(m->grads, m->nparams, &s));
    *norm = (float)sqrt(s);
    return PARLM_OK;
}

parlm_status parlm_gpt_init_optimizer(parlm_gpt *m)
{
    if (!m)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_init_optimizer: null model");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_init_optimizer"));
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
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_update_range"));
    if (t < 1 || off < 0 || n < 0 || off > m->nparams - n)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_update_range: range [%lld, %lld) outside the "
                           "%lld parameters, or step %lld < 1", (long long)off,
                           (long long)(off + n), (long long)m->nparams, (long long)t);
    grads_clear(m);
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
        RETURN_IF_ERROR(parlm_adamw_update(m->params + off, m->grads + off, mom1 + k, mom2 + k, len,
                               ti->decay ? cfg : &no_decay, t, grad_scale));
        off += len;
        i = j - 1;
    }
    m->bf16_stale = m->q_stale = 1;
    return PARLM_OK;
}

parlm_status parlm_gpt_update(parlm_gpt *m, const parlm_adamw_cfg *cfg, float grad_scale)
{
    if (!m || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_update: null argument");
    RETURN_IF_ERROR(parlm_gpt_init_optimizer(m));
    RETURN_IF_ERROR(parlm_gpt_update_range(m, cfg, grad_scale, m->step + 1, 0, m->nparams, m->m, m->v));
    m->step++;
    return PARLM_OK;
}

static parlm_status check_adamw(const parlm_adamw_cfg *cfg, float clip, const char *fn)
{
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 &&
          cfg->eps > 0 && isfinite(cfg->lr) && isfinite(cfg->weight_decay) && clip >= 0))
        return parlm_error(PARLM_EINVAL, "%s: need 0 <= beta < 1, eps > 0, finite lr and weight "
                           "decay, clip >= 0", fn);
    return PARLM_OK;
}

/* AdamW over all parameters with the gradients scaled by `scale` in one parallel region,
 * leaving them stale (zero for the next step, not written); returns the sum of squares of
 * the (unscaled) gradients it read. */
static double adamw_pass(parlm_gpt *m, const parlm_adamw_cfg *cfg, float scale)
{
    grads_clear(m);
    /* the same bias corrections as parlm_adamw_update: bitwise the same step */
    int64_t t = m->step + 1;
    float bc1 = 1.0f - powf(cfg->beta1, (float)t), bc2 = 1.0f - powf(cfg->beta2, (float)t);
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(m->nparams, 1 << 15, omp_get_max_threads());
    double part[256] = {0};
    if (nt > 256)
        nt = 256;
    /* each thread's slice is cut at tensor boundaries, where the weight decay switches */
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
                s += k->adamw_sumsq(b - a, m->params + a, m->grads + a, m->m + a, m->v + a,
                                    cfg->lr, cfg->beta1, cfg->beta2, cfg->eps,
                                    ti->decay ? cfg->weight_decay : 0.0f, bc1, bc2, scale);
        }
        part[th] = s;
    }
    double ss = 0.0;
    for (int i = 0; i < nt; i++) /* fixed order: same thread count, same bits */
        ss += part[i];
    m->step++;
    m->bf16_stale = m->q_stale = 1;
    m->grads_stale = 1;
    return ss;
}

parlm_status parlm_gpt_optimizer_step(parlm_gpt *m, const parlm_adamw_cfg *cfg, float clip,
                                      float *norm)
{
    if (!m || !cfg || !norm)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_optimizer_step: null argument");
    RETURN_IF_ERROR(check_adamw(cfg, clip, "parlm_gpt_optimizer_step"));
    RETURN_IF_ERROR(parlm_gpt_init_optimizer(m));
    float scale = 1.0f;
    *norm = NAN;
    if (clip > 0) { /* the clipping factor is needed before the update: a pass of its own */
        RETURN_IF_ERROR(parlm_gpt_grad_norm(m, norm));
        if (!isfinite(*norm))
            return parlm_error(PARLM_EINVAL, "the gradient norm is %g", *norm);
        if (*norm > clip)
            scale = clip / *norm;
    }
    double ss = adamw_pass(m, cfg, scale);
    if (clip > 0)
        return PARLM_OK;
    *norm = (float)sqrt(ss);
    if (!isfinite(*norm))
        return parlm_error(PARLM_EINVAL, "the gradient norm is %g (the parameters took the "
                           "step)", *norm);
    return PARLM_OK;
}

parlm_status parlm_gpt_optimizer_step_scale(parlm_gpt *m, const parlm_adamw_cfg *cfg,
                                            float grad_scale)
{
    if (!m || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_optimizer_step_scale: null argument");
    RETURN_IF_ERROR(check_adamw(cfg, 0.0f, "parlm_gpt_optimizer_step_scale"));
    if (!isfinite(grad_scale))
        return parlm_error(PARLM_EINVAL, "parlm_gpt_optimizer_step_scale: gradient scale %g",
                           grad_scale);
    RETURN_IF_ERROR(parlm_gpt_init_optimizer(m));
    adamw_pass(m, cfg, grad_scale);
    return PARLM_OK;
}

parlm_status parlm_gpt_grad_sumsq(parlm_gpt *m, int owned_only, double *sumsq)
{
    if (!m || !sumsq)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_grad_sumsq: null argument");
    RETURN_IF_ERROR(view_refused(m, "parlm_gpt_grad_sumsq"));
    grads_clear(m);
    double total = 0.0;
    if (!owned_only)
        return parlm_sumsq(m->grads, m->nparams, sumsq);
    /* runs of consecutive owned tensors, each summed by the threaded kernel */
    for (int i = 0; i < m->ntensors;) {
        if (!m->tensors[i].sl.owner) {
            i++;
            continue;
        }
        int j = i;
        while (j < m->ntensors && m->tensors[j].sl.owner)
            j++;
        double s;
        int64_t off = m->tensors[i].off;
        RETURN_IF_ERROR(parlm_sumsq(m->grads + off, m->tensors[j - 1].off + m->tensors[j - 1].n - off, &s));
        total += s;
        i = j;
    }
    *sumsq = total;
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
    RETURN_IF_ERROR(refresh_q(m));
    if (m->view) /* the bound matrices as stored, plain rows */
        for (int l = 0; l < c->n_layer; l++) {
            layer_views w = lview(m, m->params, l);
            vmat qkv = view_mat(m, l, VM_QKV), fc = view_mat(m, l, VM_FC);
            parlm_decode_layer d = {w.ln1w, w.ln1b, w.qkvb, w.attprojb, w.ln2w, w.ln2b, w.fcb,
                                    w.fcprojb, qkv.data[0], view_mat(m, l, VM_ATTPROJ).data[0],
                                    fc.data[0], view_mat(m, l, VM_FCPROJ).data[0], qkv.data[1],
                                    qkv.data[2], fc.data[1]};
            m->dec_layers[l] = d;
        }
    /* the bf16 copy has the layout of the f32 parameters: same offsets; the quantized
     * one has its own table */
    const uint16_t *hb = m->params_bf16;
    const int wt = m->view ? m->view_type : m->q_type ? m->q_type
                                          : m->bf16 ? PARLM_WT_BF16 : PARLM_WT_F32;
#define DEC_W(p, qi) (m->q_type ? (const void *)(m->params_q + m->q_off[qi])                     \
                      : m->bf16 ? (const void *)(hb + ((p) - m->params)) : (const void *)(p))
    for (int l = 0; l < c->n_layer && !m->view; l++) {
        layer_views w = lview(m, m->params, l);
        parlm_decode_layer d = {w.ln1w, w.ln1b, w.qkvb, w.attprojb, w.ln2w, w.ln2b, w.fcb,
                                w.fcprojb, DEC_W(w.qkvw, 4 * l), DEC_W(w.attprojw, 4 * l + 1),
                                DEC_W(w.fcw, 4 * l + 2), DEC_W(w.fcprojw, 4 * l + 3),
                                NULL, NULL, NULL};
        m->dec_layers[l] = d;
    }
    /* full sizes (the shard's are these / tp) */
    const int tp = m->sh.tp > 1 ? m->sh.tp : 1;
    parlm_decode_model d = {
        .L = c->n_layer, .C = (int)C, .NH = c->n_head, .Vp = c->vocab_pad, .max_seq = c->max_seq,
        .llama = m->llama, .NKV = m->NKVa * tp, .F = m->Hm * tp, .eps = c->norm_eps,
        .rope_cos = m->rope_cos, .rope_sin = m->rope_sin, .wtype = wt,
        .qr8 = m->q_type && m->q_layout == PARLM_QLAYOUT_R8, .layers = m->dec_layers,
        .lnfw = LNFW(m->params), .lnfb = LNFB(m->params),
        .lm_head = m->view ? view_mat(m, c->n_layer, VM_HEAD).data[0]
                           : DEC_W(HEAD(m->params), 4 * c->n_layer),
        .head_rows = m->view ? c->vocab : 0, .kv = m->kv, .tp = m->sh.tp,
        .tp_rank = m->sh.tp_rank, .comm = &m->tp};
#undef DEC_W
    if (nt > m->dec_threads) {
        parlm_free(m->dec_scratch);
        m->dec_scratch = parlm_alloc((size_t)parlm_decode_scratch(&d, nt), sizeof(float));
        m->dec_threads = m->dec_scratch ? nt : 0;
        if (!m->dec_scratch)
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: out of memory");
    }
    float *x = m->inf; /* the residual row */
    RETURN_IF_ERROR(embed(m, x, &token, 1, pos, 1, 1));
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
    if (!m->first || !m->last)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_gpt_infer: generation needs every layer "
                           "(a pipeline stage has layers %d..%d of %d)", m->sh.layer_begin,
                           m->sh.layer_end - 1, c->n_layer);
    if (m->sh.tp > 1 && !m->have_tp)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_infer: a tensor-parallel shard needs "
                           "parlm_gpt_set_tp_comm first");
    RETURN_IF_ERROR(view_ready(m, "parlm_gpt_infer"));
    /* a shard's attention has Ca channels (NHa heads; keys and values Ckv, NKVa heads) and
     * Hm MLP units (Llama: F, from an fc output of Hf = 2F) */
    int64_t C = c->n_embd, L = c->n_layer, maxT = c->max_seq, Ca = m->Ca, NHa = m->NHa;
    int64_t Hm = m->Hm, Ckv = m->Ckv, Wq = m->Wqkv, Hf = m->Hf;
    if (!m->kv) {
        m->kv = parlm_alloc((size_t)(L * 2 * maxT * Ckv), sizeof(float));
        /* per row: x C, ln C, qkv Wq, att Ca, tmp C, fch Hf, and Llama's SwiGLU output Hm
         * (GPT-2's GELU runs in place) */
        m->inf = parlm_alloc((size_t)(maxT * (3 * C + Wq + Ca + Hf + (m->llama ? Hm : 0))),
                             sizeof(float));
        if (!m->kv || !m->inf) {
            parlm_free(m->kv), parlm_free(m->inf);
            m->kv = m->inf = NULL;
            return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: KV cache of %lld floats",
                               (long long)(L * 2 * maxT * Ckv));
        }
    }
    /* 1 row even for a prefill: its LM head is the last row's product, on the bf16 copy */
    RETURN_IF_ERROR(refresh_bf16(m, 1));
    if (n == 1) /* the fused single-token path */
        return decode_one(m, tokens[0], pos, logits);
    float *x = m->inf, *ln = x + maxT * C, *qkv = ln + maxT * C, *att = qkv + maxT * Wq;
    float *tmp = att + maxT * Ca, *fch = tmp + maxT * C;
    float *act = m->llama ? fch + maxT * Hf : fch;
    /* embeddings of positions pos..pos+n-1: one "batch" of n rows starting at wpe[pos] */
    RETURN_IF_ERROR(embed(m, x, tokens, n, pos, 1, n));
    float *mean = parlm_alloc((size_t)n * 2, sizeof(float));
    if (!mean)
        return parlm_error(PARLM_ENOMEM, "parlm_gpt_infer: out of memory");
    float *rstd = mean + n;
    parlm_status st = PARLM_OK;
    for (int64_t l = 0; l < L && st == PARLM_OK; l++) {
        layer_views w = lview(m, m->params, (int)l);
        float *kc = m->kv + (l * 2) * maxT * Ckv, *vc = kc + maxT * Ckv;
        if ((st = norm_fwd(m, ln, mean, rstd, x, w.ln1w, w.ln1b, n)) ||
            (st = matmul_fwd(m, qkv, ln, w.qkvw, (int)l, VM_QKV, w.qkvb, n, C, Wq)) ||
            (m->llama && (st = rope_qk(m, qkv, 1, n, pos, 0))))
            break;
        for (int i = 0; i < n; i++) {
            memcpy(kc + (pos + i) * Ckv, qkv + i * Wq + Ca, (size_t)Ckv * sizeof(float));
            memcpy(vc + (pos + i) * Ckv, qkv + i * Wq + Ca + Ckv, (size_t)Ckv * sizeof(float));
        }
        if ((st = parlm_attention_cached_gqa(att, qkv, Wq, kc, vc, pos, n, (int)Ca, (int)NHa,
                                             m->NKVa)) ||
            (st = row_parallel_fwd(m, tmp, att, w.attprojw, (int)l, VM_ATTPROJ, w.attprojb, n,
                                   Ca, C)) ||
            (st = parlm_add(x, x, tmp, n * C)) ||
            (st = norm_fwd(m, ln, mean, rstd, x, w.ln2w, w.ln2b, n)) ||
            (st = matmul_fwd(m, fch, ln, w.fcw, (int)l, VM_FC, w.fcb, n, C, Hf)) ||
            (st = act_fwd(m, act, fch, n)) ||
            (st = row_parallel_fwd(m, tmp, act, w.fcprojw, (int)l, VM_FCPROJ, w.fcprojb, n, Hm,
                                   C)) ||
            (st = parlm_add(x, x, tmp, n * C)))
            break;
    }
    /* only the last position's logits are needed to sample the next token */
    const float *last = x + (int64_t)(n - 1) * C;
    if (st == PARLM_OK)
        st = norm_fwd(m, ln, mean, rstd, last, LNFW(m->params), LNFB(m->params), 1);
    /* a shard computes its vocab slice; the all-gather gives every rank the whole row */
    if (st == PARLM_OK)
        st = matmul_fwd(m, logits + vocab0(m), ln, VIEW_OR(HEAD(m->params)), (int)L, VM_HEAD,
                        NULL, 1, C, m->Vs);
    if (st == PARLM_OK && m->sh.tp > 1)
        st = m->tp.all_gather(m->tp.arg, logits, m->Vs);
    parlm_free(mean);
    return st;
}
