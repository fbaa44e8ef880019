/* lib/serve/forward.c — one batched GPT-2 or Llama forward over the next positions of many
 * sequences (decode rows and prompt chunks alike), against the paged KV cache. Each
 * weight matrix is read once per step for all rows (one GEMM), where per-sequence decode
 * would stream it once per sequence.
 * Batch invariance: parlm_sgemm sums every element of a row in an order fixed by K and
 * the cache sizes whatever M is, as long as M >= 2 (M = 1 goes to the GEMV kernels, which
 * sum in another order), so a step of one row runs with a second, dummy row. Layernorm is
 * per row, bias/GELU/add are elementwise (their vector tails are masked, not scalar), and
 * attention below is computed per (row, head) by one thread in a fixed order. Llama's
 * RMSNorm is per row, RoPE rotates each row's q and k at that row's own position, SwiGLU
 * is elementwise, and a query head reads the cache of its group's key/value head. With a
 * quantized decode copy (ps_model_set_decode_type), a generated token's row is one Q8_0 /
 * Q4_0 GEMV of its own per product, prompt rows one GEMM: still row by row the same
 * arithmetic whatever the batch.
 * On a tensor-parallel shard (Megatron-LM, as parlm_gpt_forward's): this rank's heads of
 * QKV and MLP units of fc (column-parallel), the matching columns of attproj and fcproj
 * (row-parallel: partial sums, added over the group before the replicated bias), its
 * vocabulary rows of the embedding (lookups summed over the group) and of the LM head
 * (gathered). The sums add the ranks' all-gathered partials in rank order, so they do not
 * depend on the row count or the collective's algorithm. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "../../base/error.h"
#include "parlm/bf16.h"
#include "parlm/gemm.h"
#include "parlm/llama_ops.h"
#include "parlm/quant.h"
#include "parlm/nn.h"
#include "parlm/ops.h"
#include "parlm/tensor.h"

enum { T_LN1W, T_LN1B, T_QKVW, T_QKVB, T_APW, T_APB, T_LN2W, T_LN2B, T_FCW, T_FCB, T_FPW,
       T_FPB, T_PER_LAYER };
static const char *const layer_names[T_PER_LAYER] = {
    "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw",  "fcb",  "fcprojw",  "fcprojb"};
/* Llama's tensors of a layer (in the same per-layer offset table): wq, wk, wv are
 * consecutive rows of one (C + 2 Ckv, C) matrix, w_gate and w_up of one (2F, C) */
enum { LL_ATTN_NORM, LL_WQ, LL_WK, LL_WV, LL_WO, LL_FFN_NORM, LL_WGATE, LL_WUP, LL_WDOWN,
       LL_PER_LAYER };
static const char *const llama_names[LL_PER_LAYER] = {
    "attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down"};

struct ps_model {
    parlm_gpt_config c;
    int max_rows, threads, bf16;
    int tp, tp_rank;                 /* tensor parallelism (1, 0: a whole model) */
    parlm_gpt_tp_comm comm;
    int64_t Ca, Hm, Vl, v0;          /* local attention channels, MLP units, vocab rows from v0 */
    int llama;                       /* arch PARLM_ARCH_LLAMA (Hm is then F) */
    int64_t Ckv, Wqkv;               /* key/value channels per position, the qkv row's width */
    float *rope_cos, *rope_sin;      /* Llama: (max_seq, hs) rotation tables */
    /* decode rows on Q8_0 / Q4_0 (ps_model_set_decode_type): nq matrices (4 per layer and
     * the head), matrix i for the f32 weights at q_woff[i], its blocks at qbuf + q_at[i]
     * (plain rows, or repacked 8 rows at a time when qr8) */
    int qtype, qr8, nq;
    int64_t *q_woff;
    uint64_t *q_at;
    uint8_t *qbuf;
    int64_t D, Rq;                   /* this product: D leading decode rows of Rq real ones */
    /* a view of a mapped file (parlm_gpt_create_view): its matrices stay where the file
     * holds them, in one type vtype; each of the nv products (4 per layer and the head) is
     * up to 3 matrices whose output rows follow each other, found by the key linear()
     * gets (a matrix's offset is -2 - its tensor index); the embedding wte_w (its own
     * type) is converted a row at a time */
    int view, vtype, nv;
    struct ps_vprod {
        int64_t key;
        int nseg;
        const void *data[3];
        int64_t rows[3];
    } *vp;
    parlm_gpt_weight wte_w;
    float *gat;                      /* all-gather scratch (tp > 1) */
    const float *params;
    uint16_t *pbf16;                 /* bf16 copy of the parameters (bf16 mode) */
    int64_t (*off)[T_PER_LAYER];     /* per layer: offsets of its tensors */
    int64_t wte, wpe, lnfw, lnfb, head; /* head: the LM head's rows (wte, or Llama's lm_head) */
    float *x, *ln, *qkv, *att, *tmp, *fch, *mean, *rstd, *scores, *lnf, *logits;
    int *row_seq, *row_pos;          /* per row: its group and position */
};

parlm_gpt_config ps_model_config(const ps_model *pm) { return pm->c; }

int ps_model_kv_channels(const ps_model *pm) { return (int)pm->Ckv; }

void ps_model_free(ps_model *pm)
{
    if (!pm)
        return;
    parlm_free(pm->pbf16);
    parlm_free(pm->rope_cos);
    parlm_free(pm->rope_sin);
    parlm_free(pm->qbuf);
    free(pm->q_woff);
    free(pm->q_at);
    free(pm->vp);
    free(pm->off);
    parlm_free(pm->x);
    free(pm->row_seq);
    free(pm->row_pos);
    free(pm);
}

static int64_t tp_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* The view's products: a layer's four (Llama: wq|wk|wv, wo, w_gate|w_up, w_down) and the
 * head, each with the matrices the view binds (rows: the tensor's, the head's the real
 * vocabulary) */
static parlm_status view_products(ps_model *pm, parlm_gpt *m)
{
    const parlm_gpt_config *c = &pm->c;
    static const int seg[2][4][3] = {{{T_QKVW, -1, -1}, {T_APW, -1, -1}, {T_FCW, -1, -1},
                                      {T_FPW, -1, -1}},
                                     {{LL_WQ, LL_WK, LL_WV}, {LL_WO, -1, -1},
                                      {LL_WGATE, LL_WUP, -1}, {LL_WDOWN, -1, -1}}};
    const int64_t in[4] = {c->n_embd, pm->Ca, c->n_embd, pm->Hm}; /* input widths */
    pm->nv = 4 * c->n_layer + 1;
    pm->vp = calloc((size_t)pm->nv, sizeof *pm->vp);
    if (!pm->vp)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    for (int i = 0; i < pm->nv; i++) {
        struct ps_vprod *v = &pm->vp[i];
        const int head = i == pm->nv - 1, p = i % 4;
        for (int k = 0; k < (head ? 1 : 3); k++) {
            if (!head && seg[pm->llama][p][k] < 0)
                break;
            const int64_t key = head ? pm->head : pm->off[i / 4][seg[pm->llama][p][k]];
            parlm_gpt_weight w;
            int64_t count;
            RETURN_IF_ERROR(parlm_gpt_view_weight(m, (int)(-2 - key), &w));
            RETURN_IF_ERROR(parlm_gpt_tensor_info(m, (int)(-2 - key), NULL, NULL, NULL, &count));
            if (!w.data)
                return parlm_error(PARLM_EINVAL, "a matrix of the view is not bound");
            if (k == 0)
                v->key = key;
            pm->vtype = w.type; /* one type for every product (parlm_gpt_view_bind) */
            v->data[k] = w.data;
            v->rows[k] = head ? c->vocab : count / in[p];
            v->nseg = k + 1;
        }
    }
    return parlm_gpt_view_weight(m, (int)(-2 - pm->wte), &pm->wte_w);
}

parlm_status ps_model_create(ps_model **out, parlm_gpt *m, int max_rows, int threads, int bf16,
                             const parlm_gpt_tp_comm *comm)
{
    *out = NULL;
    if (!m || max_rows < 1)
        return parlm_error(PARLM_EINVAL, "ps_model_create: no model or max_rows %d", max_rows);
    parlm_gpt_shard sh = parlm_gpt_get_shard(m);
    parlm_gpt_config c = parlm_gpt_get_config(m);
    if (sh.layer_begin != 0 || sh.layer_end != c.n_layer)
        return parlm_error(PARLM_EUNSUPPORTED, "ps_model_create: the model is a pipeline stage");
    const int llama = c.arch == PARLM_ARCH_LLAMA;
    if (llama && sh.tp > 1)
        return parlm_error(PARLM_EUNSUPPORTED, "ps_model_create: a Llama model is served by one "
                           "process, not as a tensor-parallel shard (tp %d)", sh.tp);
    if (sh.tp > 1 && (!comm || !comm->all_gather))
        return parlm_error(PARLM_EINVAL, "ps_model_create: a tensor-parallel shard needs its "
                           "group's all-gather");
    ps_model *pm = calloc(1, sizeof *pm);
    if (!pm)
        return parlm_error(PARLM_ENOMEM, "ps_model_create: out of memory");
    pm->c = c;
    pm->llama = llama;
    pm->tp = sh.tp, pm->tp_rank = sh.tp_rank;
    if (sh.tp > 1)
        pm->comm = *comm;
    pm->max_rows = max_rows < 2 ? 2 : max_rows; /* room for the dummy row */
    pm->threads = threads > 0 ? threads : omp_get_max_threads();
    pm->bf16 = bf16;
    pm->view = parlm_gpt_is_view(m);
    if (pm->view && bf16) {
        ps_model_free(pm);
        return parlm_error(PARLM_EUNSUPPORTED, "ps_model_create: a view of a mapped file runs "
                           "its weights as stored, not in bf16");
    }
    pm->params = pm->view ? parlm_gpt_view_vectors(m) : parlm_gpt_params(m);
    pm->off = calloc((size_t)c.n_layer, sizeof *pm->off);
    if (!pm->off) {
        ps_model_free(pm);
        return parlm_error(PARLM_ENOMEM, "ps_model_create: out of memory");
    }
    int found = 0;
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *name;
        int layer;
        int64_t off, count;
        parlm_gpt_slice sl;
        if (parlm_gpt_tensor_info(m, i, &name, &layer, &off, &count) != PARLM_OK ||
            parlm_gpt_tensor_slice(m, i, &sl) != PARLM_OK)
            continue;
        if (pm->view && off < 0) /* a matrix where the file holds it: a key of its own */
            off = -2 - i;
        /* this shard's sizes, as the slices say (the same in every layer) */
        int64_t *size = !strcmp(name, "qkvw") || !strcmp(name, "wq") ? &pm->Ca
                        : !strcmp(name, "fcw") || !strcmp(name, "w_gate") ? &pm->Hm
                        : !strcmp(name, "wte") ? &pm->Vl : !strcmp(name, "wk") ? &pm->Ckv : NULL;
        if (size && *size && *size != sl.rows) {
            parlm_status st = parlm_error(PARLM_EFORMAT, "ps_model_create: %s of layer %d has "
                                          "%lld rows, not %lld", name, layer,
                                          (long long)sl.rows, (long long)*size);
            ps_model_free(pm);
            return st;
        }
        if (size)
            *size = sl.rows;
        if (!strcmp(name, "wte"))
            pm->v0 = sl.row0[0];
        if (!strcmp(name, "wte"))
            pm->wte = off, found++;
        else if (!strcmp(name, "wpe"))
            pm->wpe = off, found++;
        else if (!strcmp(name, "lnfw") || !strcmp(name, "norm"))
            pm->lnfw = off, found++;
        else if (!strcmp(name, "lnfb"))
            pm->lnfb = off, found++;
        else if (!strcmp(name, "lm_head"))
            pm->head = off, found++;
        else if (layer >= 0 && layer < c.n_layer)
            for (int t = 0; t < (llama ? LL_PER_LAYER : T_PER_LAYER); t++)
                if (!strcmp(name, llama ? llama_names[t] : layer_names[t]))
                    pm->off[layer][t] = off, found++;
    }
    const int want = llama ? 2 + c.untied_head + LL_PER_LAYER * c.n_layer
                           : 4 + T_PER_LAYER * c.n_layer;
    if (found != want) {
        ps_model_free(pm);
        return parlm_error(PARLM_EFORMAT, "ps_model_create: %d of %d tensors found", found,
                           want);
    }
    if (!llama || !c.untied_head)
        pm->head = pm->wte;
    if (!llama)
        pm->Ckv = pm->Ca;
    pm->Wqkv = llama ? pm->Ca + 2 * pm->Ckv : 3 * pm->Ca;
    for (int l = 0; llama && !pm->view && l < c.n_layer; l++) { /* the stacked matrices the GEMMs read */
        const int64_t *o = pm->off[l], C = c.n_embd;
        if (o[LL_WK] != o[LL_WQ] + C * C || o[LL_WV] != o[LL_WK] + pm->Ckv * C ||
            o[LL_WUP] != o[LL_WGATE] + pm->Hm * C) {
            ps_model_free(pm);
            return parlm_error(PARLM_EFORMAT, "ps_model_create: layer %d: wq|wk|wv or "
                               "w_gate|w_up are not consecutive", l);
        }
    }
    const int64_t hs = c.n_embd / c.n_head;
    if (pm->Ca < 1 || pm->Ca % hs || pm->Ckv < 1 || pm->Ckv % hs || pm->Hm < 1 || pm->Vl < 1 ||
        pm->Vl * sh.tp != c.vocab_pad) {
        parlm_status st = parlm_error(PARLM_EFORMAT, "ps_model_create: shard of %lld attention "
                                      "channels (heads of %lld), %lld MLP units, %lld of %d "
                                      "vocabulary rows", (long long)pm->Ca, (long long)hs,
                                      (long long)pm->Hm, (long long)pm->Vl, c.vocab_pad);
        ps_model_free(pm);
        return st;
    }
    if (pm->view && view_products(pm, m) != PARLM_OK) {
        parlm_status st = parlm_error(PARLM_EINVAL, "ps_model_create: %s", parlm_last_error());
        ps_model_free(pm);
        return st;
    }
    if (bf16) {
        int64_t n = parlm_gpt_num_params(m);
        pm->pbf16 = parlm_alloc((size_t)n, sizeof(uint16_t));
        if (!pm->pbf16) {
            ps_model_free(pm);
            return parlm_error(PARLM_ENOMEM, "ps_model_create: bf16 copy of %lld parameters",
                               (long long)n);
        }
        parlm_status st = parlm_f32_to_bf16(pm->params, pm->pbf16, n);
        if (st != PARLM_OK) {
            ps_model_free(pm);
            return st;
        }
    }
    if (llama) {
        pm->rope_cos = parlm_alloc((size_t)(c.max_seq * hs), sizeof(float));
        pm->rope_sin = parlm_alloc((size_t)(c.max_seq * hs), sizeof(float));
        parlm_status st = pm->rope_cos && pm->rope_sin
                              ? parlm_rope_table(pm->rope_cos, pm->rope_sin, c.max_seq, hs,
                                                 c.rope_theta, c.rope_scale)
                              : parlm_error(PARLM_ENOMEM, "ps_model_create: RoPE tables");
        if (st != PARLM_OK) {
            ps_model_free(pm);
            return st;
        }
    }
    int64_t R = pm->max_rows, C = c.n_embd, Ca = pm->Ca;
    /* x ln tmp lnf: 4C per row; qkv: Wqkv; att: Ca; fch: Hm (Llama: 3F, gate|up and the
     * SwiGLU); local logits: Vl; mean, rstd; scores per thread; the all-gathers: tp partial
     * sums of C, or a row of Vp */
    const int64_t fch = llama ? 3 * pm->Hm : pm->Hm;
    int64_t gat = sh.tp > 1 ? R * (tp_max(sh.tp * C, c.vocab_pad)) : 0;
    int64_t floats = R * (4 * C + pm->Wqkv + Ca + fch + pm->Vl + 2) +
                     (int64_t)pm->threads * c.max_seq + gat;
    pm->x = parlm_alloc((size_t)floats, sizeof(float));
    pm->row_seq = malloc((size_t)R * sizeof(int));
    pm->row_pos = malloc((size_t)R * sizeof(int));
    if (!pm->x || !pm->row_seq || !pm->row_pos) {
        ps_model_free(pm);
        return parlm_error(PARLM_ENOMEM, "ps_model_create: scratch of %lld floats",
                           (long long)floats);
    }
    memset(pm->x, 0, (size_t)floats * sizeof(float)); /* the dummy row reads zeros */
    pm->ln = pm->x + R * C;
    pm->qkv = pm->ln + R * C;
    pm->att = pm->qkv + R * pm->Wqkv;
    pm->tmp = pm->att + R * Ca;
    pm->fch = pm->tmp + R * C;
    pm->lnf = pm->fch + R * fch;
    pm->logits = pm->lnf + R * C;
    pm->mean = pm->logits + R * pm->Vl;
    pm->rstd = pm->mean + R;
    pm->scores = pm->rstd + R;
    pm->gat = gat ? pm->scores + (int64_t)pm->threads * c.max_seq : NULL;
    *out = pm;
    return PARLM_OK;
}

parlm_status ps_model_set_decode_type(ps_model *pm, int type)
{
    if (pm->view) /* every row already runs on the file's weights */
        return type == pm->vtype ? PARLM_OK
                                 : parlm_error(PARLM_EUNSUPPORTED, "ps_model_set_decode_type: "
                                               "%s: a view runs its weights as stored, %s",
                                               parlm_wtype_name(type) ? parlm_wtype_name(type)
                                                                      : "unknown",
                                               parlm_wtype_name(pm->vtype));
    parlm_free(pm->qbuf);
    free(pm->q_woff);
    free(pm->q_at);
    pm->qbuf = NULL, pm->q_woff = NULL, pm->q_at = NULL, pm->qtype = 0, pm->nq = 0;
    if (type == PARLM_WT_F32)
        return PARLM_OK;
    if (type != PARLM_WT_Q8_0 && type != PARLM_WT_Q4_0)
        return parlm_error(PARLM_EUNSUPPORTED, "ps_model_set_decode_type: type %d (%s): decode "
                           "rows take f32, q8_0 or q4_0", type,
                           parlm_wtype_name(type) ? parlm_wtype_name(type) : "unknown");
    if (pm->tp > 1)
        return parlm_error(PARLM_EUNSUPPORTED, "ps_model_set_decode_type: %s decode rows on a "
                           "tensor-parallel shard", parlm_wtype_name(type));
    const parlm_gpt_config *c = &pm->c;
    const int64_t C = c->n_embd, L = c->n_layer;
    const int64_t widths[3] = {C, pm->Ca, pm->Hm};
    for (int i = 0; i < 3; i++)
        if (widths[i] % PARLM_QBLOCK)
            return parlm_error(PARLM_EINVAL, "ps_model_set_decode_type: a product's input width "
                               "%lld is not a multiple of %d: %s blocks cannot hold its rows",
                               (long long)widths[i], PARLM_QBLOCK, parlm_wtype_name(type));
    /* (rows, columns) of the four matrices of a layer, as linear() reads them */
    const int64_t shape[4][2] = {{pm->Wqkv, C},
                                 {C, pm->Ca},
                                 {pm->llama ? 2 * pm->Hm : pm->Hm, C},
                                 {C, pm->Hm}};
    const int slot[2][4] = {{T_QKVW, T_APW, T_FCW, T_FPW}, {LL_WQ, LL_WO, LL_WGATE, LL_WDOWN}};
    const int r8 = parlm_qlayout_current(type, NULL) == PARLM_QLAYOUT_R8;
    const int n = (int)(4 * L + 1);
    pm->q_woff = malloc((size_t)n * sizeof *pm->q_woff);
    pm->q_at = malloc((size_t)n * sizeof *pm->q_at);
    if (!pm->q_woff || !pm->q_at)
        return parlm_error(PARLM_ENOMEM, "ps_model_set_decode_type: out of memory");
    int64_t (*dims)[2] = malloc((size_t)n * sizeof *dims);
    if (!dims)
        return parlm_error(PARLM_ENOMEM, "ps_model_set_decode_type: out of memory");
    uint64_t total = 0, plain = 0;
    parlm_status st = PARLM_OK;
    for (int i = 0; i < n && st == PARLM_OK; i++) {
        const int head = i == n - 1;
        dims[i][0] = head ? pm->Vl : shape[i % 4][0];
        dims[i][1] = head ? C : shape[i % 4][1];
        pm->q_woff[i] = head ? pm->head : pm->off[i / 4][slot[pm->llama][i % 4]];
        uint64_t bytes = 0, rows_bytes = 0;
        st = parlm_wtype_bytes(type, (uint64_t)(dims[i][0] * dims[i][1]), &rows_bytes);
        if (st == PARLM_OK)
            st = r8 ? parlm_qrepack_bytes(type, dims[i][0], dims[i][1], &bytes)
                    : (bytes = rows_bytes, PARLM_OK);
        pm->q_at[i] = total;
        total += bytes;
        plain = rows_bytes > plain ? rows_bytes : plain;
    }
    uint8_t *stage = st == PARLM_OK && r8 ? malloc((size_t)plain) : NULL;
    if (st == PARLM_OK && !(pm->qbuf = parlm_alloc((size_t)total, 1)))
        st = parlm_error(PARLM_ENOMEM, "ps_model_set_decode_type: %s copy of the weights (%llu "
                         "bytes)", parlm_wtype_name(type), (unsigned long long)total);
    if (st == PARLM_OK && r8 && !stage)
        st = parlm_error(PARLM_ENOMEM, "ps_model_set_decode_type: out of memory");
    /* quantized to ggml's rows as parlm_gpt_set_decode_type's copy, then (r8) repacked */
    for (int i = 0; i < n && st == PARLM_OK; i++) {
        uint8_t *dst = pm->qbuf + pm->q_at[i];
        st = parlm_quantize(type, pm->params + pm->q_woff[i], dims[i][0] * dims[i][1],
                            r8 ? stage : dst);
        if (st == PARLM_OK && r8)
            st = parlm_qrepack(type, dims[i][0], dims[i][1], stage, dst);
    }
    free(stage);
    free(dims);
    if (st != PARLM_OK) {
        ps_model_set_decode_type(pm, PARLM_WT_F32);
        return st;
    }
    pm->qtype = type, pm->qr8 = r8, pm->nq = n;
    return PARLM_OK;
}

/* out rows [r0, r1) = in rows W^T, M = r1 - r0 >= 2 (see the header) */
static parlm_status gemm_rows(const ps_model *pm, float *out, const float *in, int64_t woff,
                              int64_t r0, int64_t r1, int64_t IC, int64_t OC)
{
    const int64_t M = r1 - r0;
    out += r0 * OC, in += r0 * IC;
    if (pm->bf16)
        return parlm_gemm_f32_bf16(PARLM_NO_TRANS, PARLM_TRANS, M, OC, IC, 1.0f, in, IC,
                                   pm->pbf16 + woff, IC, 0.0f, out, OC);
    return parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, M, OC, IC, 1.0f, in, IC,
                       pm->params + woff, IC, 0.0f, out, OC);
}

/* out (M, OC) = in (M, IC) W^T + b on a view's product `key`: each matrix into its columns,
 * as parlm_qgemm (every row the bits of its own GEMV, whatever the batch) or, for f32, the
 * GEMM; the head's columns past the real vocabulary are 0 */
static parlm_status view_linear(const ps_model *pm, float *out, const float *in, int64_t key,
                                const float *b, int64_t M, int64_t IC, int64_t OC)
{
    const struct ps_vprod *v = NULL;
    for (int i = 0; i < pm->nv && !v; i++)
        v = pm->vp[i].key == key ? &pm->vp[i] : NULL;
    if (!v)
        return parlm_error(PARLM_EINVAL, "ps_forward: no product of the view at key %lld",
                           (long long)key);
    int64_t c0 = 0;
    for (int k = 0; k < v->nseg; k++) {
        if (pm->vtype == PARLM_WT_F32)
            RETURN_IF_ERROR(parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, M, v->rows[k], IC, 1.0f, in,
                                        IC, v->data[k], IC, 0.0f, out + c0, OC));
        else
            RETURN_IF_ERROR(parlm_qgemm(pm->vtype, M, v->rows[k], IC, v->data[k], in, IC,
                                        out + c0, OC));
        c0 += v->rows[k];
    }
    for (int64_t r = 0; c0 < OC && r < M; r++)
        memset(out + r * OC + c0, 0, (size_t)(OC - c0) * sizeof(float));
    return b ? parlm_bias_forward(out, b, M, OC) : PARLM_OK;
}

/* out (M, OC) = in (M, IC) W^T + b, M >= 2 (see the header). With a quantized decode copy
 * of W, the pm->D leading rows (decode rows) are one quantized GEMV each, and the other
 * real rows (of pm->Rq) one GEMM of at least two rows: every row is computed the same way
 * whatever else the step holds. */
static parlm_status linear(const ps_model *pm, float *out, const float *in, int64_t woff,
                           const float *b, int64_t M, int64_t IC, int64_t OC)
{
    if (pm->view)
        return view_linear(pm, out, in, woff, b, M, IC, OC);
    const uint8_t *qw = NULL;
    for (int i = 0; pm->D > 0 && i < pm->nq && !qw; i++)
        if (pm->q_woff[i] == woff)
            qw = pm->qbuf + pm->q_at[i];
    if (qw) {
        const int64_t D = pm->D, P = pm->Rq - D;
        /* the prompt rows; one alone takes the last decode row along (overwritten below) */
        if (P > 0)
            RETURN_IF_ERROR(gemm_rows(pm, out, in, woff, P >= 2 ? D : D - 1, pm->Rq, IC, OC));
        for (int64_t r = 0; r < D; r++)
            RETURN_IF_ERROR((pm->qr8 ? parlm_qgemv_repacked : parlm_qgemv)(
                pm->qtype, OC, IC, qw, in + r * IC, out + r * OC));
        return b ? parlm_bias_forward(out, b, M, OC) : PARLM_OK;
    }
    parlm_status st;
    if (pm->bf16)
        st = parlm_gemm_f32_bf16(PARLM_NO_TRANS, PARLM_TRANS, M, OC, IC, 1.0f, in, IC,
                                 pm->pbf16 + woff, IC, 0.0f, out, OC);
    else
        st = parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, M, OC, IC, 1.0f, in, IC,
                         pm->params + woff, IC, 0.0f, out, OC);
    if (st == PARLM_OK && b)
        st = parlm_bias_forward(out, b, M, OC);
    return st;
}

/* Causal attention of one row (position pos of a sequence) for one head, whose keys and
 * values are the cache's head h: softmax of q.k / sqrt(hs) over positions 0..pos, then
 * the weighted sum of v. */
static void attend(const ps_kv_pool *kv, const ps_kv_seq *s, int l, int h, int hs, int pos,
                   const float *q, float *out, float *sc)
{
    const float scale = 1.0f / sqrtf((float)hs);
    float mx = -INFINITY;
    for (int j = 0; j <= pos; j++) {
        const float *k = ps_kv_at(kv, s, l, 0, j) + (int64_t)h * hs;
        float d = 0.0f;
#pragma omp simd reduction(+ : d)
        for (int i = 0; i < hs; i++)
            d += q[i] * k[i];
        sc[j] = d * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0.0f;
    for (int j = 0; j <= pos; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < hs; i++)
        out[i] = 0.0f;
    for (int j = 0; j <= pos; j++) {
        const float *v = ps_kv_at(kv, s, l, 1, j) + (int64_t)h * hs;
        const float w = sc[j] * inv;
#pragma omp simd
        for (int i = 0; i < hs; i++)
            out[i] += w * v[i];
    }
}

/* buf (n) = the sum over the group of every rank's buf, added in rank order */
static parlm_status tp_sum(ps_model *pm, float *buf, int64_t n)
{
    const int tp = pm->tp;
    float *g = pm->gat;
    memcpy(g + pm->tp_rank * n, buf, (size_t)n * sizeof(float));
    RETURN_IF_ERROR(pm->comm.all_gather(pm->comm.arg, g, n));
#pragma omp parallel for num_threads(pm->threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float s = g[i];
        for (int r = 1; r < tp; r++)
            s += g[r * n + i];
        buf[i] = s;
    }
    return PARLM_OK;
}

/* out (M, OC) = the row-parallel product in (M, IC) W^T summed over the group, + b */
static parlm_status linear_rows(ps_model *pm, float *out, const float *in, int64_t woff,
                                const float *b, int64_t M, int64_t IC, int64_t OC)
{
    if (pm->tp == 1)
        return linear(pm, out, in, woff, b, M, IC, OC);
    RETURN_IF_ERROR(linear(pm, out, in, woff, NULL, M, IC, OC));
    RETURN_IF_ERROR(tp_sum(pm, out, M * OC));
    return parlm_bias_forward(out, b, M, OC);
}

/* Llama's layers over the rows of x (M, C), R of them real (the rest a dummy row):
 * x += wo attn(rope(ln1 [wq; wk; wv])), x += w_down swiglu(ln2 [w_gate; w_up]),
 * ln = RMSNorm. Query head h reads key/value head h / (NH / NKV). */
static parlm_status llama_layers(ps_model *pm, ps_kv_pool *kv, const ps_group *g, int64_t R,
                                 int64_t M)
{
    const parlm_gpt_config *c = &pm->c;
    const int64_t C = c->n_embd, NH = c->n_head, hs = C / NH, Ckv = pm->Ckv, NKV = Ckv / hs,
                  W = pm->Wqkv, F = pm->Hm, group = NH / NKV;
    const float *P = pm->params;
    float *x = pm->x, *ln = pm->ln, *qkv = pm->qkv, *att = pm->att, *tmp = pm->tmp,
          *gu = pm->fch, *act = pm->fch + M * 2 * F;
    for (int l = 0; l < c->n_layer; l++) {
        const int64_t *o = pm->off[l];
        RETURN_IF_ERROR(parlm_rmsnorm_forward(ln, pm->rstd, x, P + o[LL_ATTN_NORM], M, C,
                                              c->norm_eps));
        RETURN_IF_ERROR(linear(pm, qkv, ln, o[LL_WQ], NULL, M, C, W));
        for (int64_t r = 0; r < R; r++) { /* each row at its own position */
            const ps_group *gr = &g[pm->row_seq[r]];
            float *row = qkv + r * W;
            const int pos = pm->row_pos[r];
            RETURN_IF_ERROR(parlm_rope_forward(row, 1, NH, hs, W, pos, pm->rope_cos,
                                               pm->rope_sin, c->max_seq));
            RETURN_IF_ERROR(parlm_rope_forward(row + C, 1, NKV, hs, W, pos, pm->rope_cos,
                                               pm->rope_sin, c->max_seq));
            memcpy(ps_kv_at(kv, gr->seq, l, 0, pos), row + C, (size_t)Ckv * sizeof(float));
            memcpy(ps_kv_at(kv, gr->seq, l, 1, pos), row + C + Ckv, (size_t)Ckv * sizeof(float));
        }
        const int64_t tasks = R * NH;
#pragma omp parallel for num_threads(pm->threads) schedule(dynamic, 1) if (tasks > 1)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t r = t / NH, h = t % NH;
            float *sc = pm->scores + (int64_t)omp_get_thread_num() * c->max_seq;
            attend(kv, g[pm->row_seq[r]].seq, l, (int)(h / group), (int)hs, pm->row_pos[r],
                   qkv + r * W + h * hs, att + r * C + h * hs, sc);
        }
        RETURN_IF_ERROR(linear(pm, tmp, att, o[LL_WO], NULL, M, C, C));
        RETURN_IF_ERROR(parlm_add(x, x, tmp, M * C));
        RETURN_IF_ERROR(parlm_rmsnorm_forward(ln, pm->rstd, x, P + o[LL_FFN_NORM], M, C,
                                              c->norm_eps));
        RETURN_IF_ERROR(linear(pm, gu, ln, o[LL_WGATE], NULL, M, C, 2 * F));
        RETURN_IF_ERROR(parlm_swiglu_forward(act, gu, M, F));
        RETURN_IF_ERROR(linear(pm, tmp, act, o[LL_WDOWN], NULL, M, F, C));
        RETURN_IF_ERROR(parlm_add(x, x, tmp, M * C));
    }
    return PARLM_OK;
}

parlm_status ps_forward(ps_model *pm, ps_kv_pool *kv, const ps_group *g, int ngroups)
{
    const parlm_gpt_config *c = &pm->c;
    const int64_t C = c->n_embd, hs = C / c->n_head, Ca = pm->Ca, NH = Ca / hs, Hm = pm->Hm,
                  Vl = pm->Vl, Vp = c->vocab_pad;
    const float *P = pm->params;
    if (kv->C != pm->Ckv)
        return parlm_error(PARLM_EINVAL, "ps_forward: a KV pool of %d channels, not %lld", kv->C,
                           (long long)pm->Ckv);
    int64_t R = 0, D = 0;
    for (int i = 0; i < ngroups; i++) {
        if (g[i].decode && (i != D || g[i].n != 1 || !g[i].logits_out))
            return parlm_error(PARLM_EINVAL, "ps_forward: group %d: a decode row must be a "
                               "group of one position with logits, before the others", i);
        D += g[i].decode != 0;
        if (g[i].n < 1 || g[i].pos < 0 || g[i].pos + g[i].n > c->max_seq ||
            g[i].seq->nblocks * kv->block < g[i].pos + g[i].n)
            return parlm_error(PARLM_EINVAL, "ps_forward: group %d: positions %d..%d (KV for %d)",
                               i, g[i].pos, g[i].pos + g[i].n - 1,
                               g[i].seq->nblocks * kv->block);
        for (int j = 0; j < g[i].n; j++) {
            if (g[i].tokens[j] < 0 || g[i].tokens[j] >= c->vocab)
                return parlm_error(PARLM_EINVAL, "ps_forward: token %d outside [0, %d)",
                                   g[i].tokens[j], c->vocab);
            if (R >= pm->max_rows)
                return parlm_error(PARLM_EINVAL, "ps_forward: more than %d rows", pm->max_rows);
            pm->row_seq[R] = i;
            pm->row_pos[R++] = g[i].pos + j;
        }
    }
    if (R == 0)
        return PARLM_OK;
    const int64_t M = R < 2 ? 2 : R; /* the GEMMs' row count: see the header */
    pm->D = pm->qtype ? D : 0, pm->Rq = R;
    omp_set_num_threads(pm->threads);
    if (R < 2) /* the dummy row starts from zeros: it must stay finite, step after step */
        memset(pm->x + C, 0, (size_t)C * sizeof(float));
    for (int64_t r = 0; r < R; r++) {
        const ps_group *gr = &g[pm->row_seq[r]];
        int pos = pm->row_pos[r];
        const int32_t tok = gr->tokens[pos - gr->pos];
        if (pm->view) { /* the row converted from the file's type (+ wpe: GPT-2) */
            uint64_t rb;
            RETURN_IF_ERROR(parlm_wtype_bytes(pm->wte_w.type, (uint64_t)C, &rb));
            RETURN_IF_ERROR(parlm_dequantize(pm->wte_w.type, (const uint8_t *)pm->wte_w.data +
                                                                 (uint64_t)tok * rb, C,
                                             pm->x + r * C));
            if (!pm->llama)
                RETURN_IF_ERROR(parlm_add(pm->x + r * C, pm->x + r * C, P + pm->wpe + pos * C, C));
            continue;
        }
        if (pm->llama) { /* no position table: RoPE puts the position into q and k */
            memcpy(pm->x + r * C, P + pm->wte + (int64_t)tok * C, (size_t)C * sizeof(float));
            continue;
        }
        if (pm->tp == 1) {
            RETURN_IF_ERROR(parlm_embedding_forward(pm->x + r * C, &tok, P + pm->wte, P + pm->wpe + pos * C,
                                        1, 1, (int)C, c->vocab));
            continue;
        }
        /* vocab-parallel lookup: the owner's row, rank 0's position; the sum over the
         * group has one nonzero term besides the position, so it is exactly wte + wpe */
        float *x = pm->x + r * C;
        const float *e = tok >= pm->v0 && tok < pm->v0 + Vl ? P + pm->wte + (tok - pm->v0) * C
                                                             : NULL;
        const float *w = pm->tp_rank == 0 ? P + pm->wpe + (int64_t)pos * C : NULL;
        for (int64_t i = 0; i < C; i++)
            x[i] = (e ? e[i] : 0.0f) + (w ? w[i] : 0.0f);
    }
    if (pm->tp > 1)
        RETURN_IF_ERROR(tp_sum(pm, pm->x, M * C));
    float *x = pm->x, *ln = pm->ln, *qkv = pm->qkv, *att = pm->att, *tmp = pm->tmp,
          *fch = pm->fch;
    if (pm->llama)
        RETURN_IF_ERROR(llama_layers(pm, kv, g, R, M));
    for (int l = 0; !pm->llama && l < c->n_layer; l++) {
        const int64_t *o = pm->off[l];
        RETURN_IF_ERROR(parlm_layernorm_forward(ln, pm->mean, pm->rstd, x, P + o[T_LN1W], P + o[T_LN1B], M,
                                    C));
        RETURN_IF_ERROR(linear(pm, qkv, ln, o[T_QKVW], P + o[T_QKVB], M, C, 3 * Ca));
        for (int64_t r = 0; r < R; r++) {
            const ps_group *gr = &g[pm->row_seq[r]];
            memcpy(ps_kv_at(kv, gr->seq, l, 0, pm->row_pos[r]), qkv + r * 3 * Ca + Ca,
                   (size_t)Ca * sizeof(float));
            memcpy(ps_kv_at(kv, gr->seq, l, 1, pm->row_pos[r]), qkv + r * 3 * Ca + 2 * Ca,
                   (size_t)Ca * sizeof(float));
        }
        const int64_t tasks = R * NH;
#pragma omp parallel for num_threads(pm->threads) schedule(dynamic, 1) if (tasks > 1)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t r = t / NH, h = t % NH;
            float *sc = pm->scores + (int64_t)omp_get_thread_num() * c->max_seq;
            attend(kv, g[pm->row_seq[r]].seq, l, (int)h, (int)hs, pm->row_pos[r],
                   qkv + r * 3 * Ca + h * hs, att + r * Ca + h * hs, sc);
        }
        RETURN_IF_ERROR(linear_rows(pm, tmp, att, o[T_APW], P + o[T_APB], M, Ca, C));
        RETURN_IF_ERROR(parlm_add(x, x, tmp, M * C));
        RETURN_IF_ERROR(parlm_layernorm_forward(ln, pm->mean, pm->rstd, x, P + o[T_LN2W], P + o[T_LN2B], M,
                                    C));
        RETURN_IF_ERROR(linear(pm, fch, ln, o[T_FCW], P + o[T_FCB], M, C, Hm));
        RETURN_IF_ERROR(parlm_gelu_forward(fch, fch, M * Hm));
        RETURN_IF_ERROR(linear_rows(pm, tmp, fch, o[T_FPW], P + o[T_FPB], M, Hm, C));
        RETURN_IF_ERROR(parlm_add(x, x, tmp, M * C));
    }
    /* the LM head only for the rows whose logits are wanted */
    int64_t G = 0, r = 0;
    for (int i = 0; i < ngroups; i++) {
        r += g[i].n;
        if (g[i].logits_out)
            memcpy(pm->lnf + G++ * C, x + (r - 1) * C, (size_t)C * sizeof(float));
    }
    if (G == 0)
        return PARLM_OK;
    const int64_t MG = G < 2 ? 2 : G;
    pm->Rq = G; /* the decode rows' logits come first, as their groups */
    if (G < 2)
        memset(pm->lnf + C, 0, (size_t)C * sizeof(float));
    if (pm->llama)
        RETURN_IF_ERROR(parlm_rmsnorm_forward(pm->lnf, pm->rstd, pm->lnf, P + pm->lnfw, MG, C,
                                              c->norm_eps));
    else
        RETURN_IF_ERROR(parlm_layernorm_forward(pm->lnf, pm->mean, pm->rstd, pm->lnf,
                                                P + pm->lnfw, P + pm->lnfb, MG, C));
    /* vocab-parallel head: rank q's (MG, Vl) block lands at gat + q MG Vl */
    float *lg = pm->tp > 1 ? pm->gat + pm->tp_rank * MG * Vl : pm->logits;
    RETURN_IF_ERROR(linear(pm, lg, pm->lnf, pm->head, NULL, MG, C, Vl));
    if (pm->tp > 1)
        RETURN_IF_ERROR(pm->comm.all_gather(pm->comm.arg, pm->gat, MG * Vl));
    G = 0;
    for (int i = 0; i < ngroups; i++) {
        if (!g[i].logits_out)
            continue;
        for (int q = 0; q < pm->tp; q++) {
            const float *src = pm->tp > 1 ? pm->gat + (q * MG + G) * Vl : pm->logits + G * Vp;
            memcpy(g[i].logits_out + q * Vl, src, (size_t)Vl * sizeof(float));
        }
        G++;
    }
    return PARLM_OK;
}
