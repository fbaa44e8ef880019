/* lib/parallel/plan.c — the cost model and layout planner (parlm/plan.h). Pure arithmetic:
 * a step is (M + pp - 1) slots of the slowest stage's micro-batch (GEMMs, attention, the
 * elementwise ops, its TP all-reduces), plus stage-to-stage transfers, the gradient
 * all-reduce overlap does not hide, and the optimizer; the grid rules themselves come from
 * layout.c (parlm_grid_check). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../base/error.h"
#include "parlm/grid.h"
#include "parlm/plan.h"

_Static_assert(PARLM_PP_GPIPE == 0 && PARLM_PP_1F1B == 1, "parlm_plan_layout.schedule");

const char *parlm_plan_schedule_name(int schedule)
{
    return parlm_pp_schedule_name((parlm_pp_schedule)schedule);
}

const char *parlm_plan_term_name(parlm_plan_term t)
{
    switch (t) {
    case PARLM_PLAN_COMPUTE: return "compute";
    case PARLM_PLAN_TP: return "tp-allreduce";
    case PARLM_PLAN_BUBBLE: return "pp-bubble";
    case PARLM_PLAN_P2P: return "pp-p2p";
    case PARLM_PLAN_DP: return "dp-allreduce";
    case PARLM_PLAN_OPTIMIZER: return "optimizer";
    case PARLM_PLAN_ELEMENTWISE: return "elementwise";
    case PARLM_PLAN_NTERMS: break;
    }
    return "?";
}

const char *parlm_plan_ew_name(parlm_plan_ew op)
{
    switch (op) {
    case PARLM_PLAN_EW_LAYERNORM: return "layernorm";
    case PARLM_PLAN_EW_GELU: return "gelu";
    case PARLM_PLAN_EW_RESIDUAL: return "residual";
    case PARLM_PLAN_EW_BIAS: return "bias";
    case PARLM_PLAN_EW_CROSSENTROPY: return "crossentropy";
    case PARLM_PLAN_EW_ADAMW: return "adamw";
    case PARLM_PLAN_EW_RMSNORM: return "rmsnorm";
    case PARLM_PLAN_EW_ROPE: return "rope";
    case PARLM_PLAN_EW_SWIGLU: return "swiglu";
    case PARLM_PLAN_NEW: break;
    }
    return "?";
}

/* The rate of op i: a Llama op a profile lacks (0) takes the rate of the GPT-2 op doing
 * most alike (parlm/plan.h); every GPT-2 rate is > 0 (check_inputs). */
static double ew_rate(const parlm_plan_profile *pr, int i)
{
    static const parlm_plan_ew like[PARLM_PLAN_NEW] = {
        [PARLM_PLAN_EW_RMSNORM] = PARLM_PLAN_EW_LAYERNORM,
        [PARLM_PLAN_EW_ROPE] = PARLM_PLAN_EW_RESIDUAL,
        [PARLM_PLAN_EW_SWIGLU] = PARLM_PLAN_EW_GELU,
    };
    return pr->ew_rate[i] > 0 ? pr->ew_rate[i] : pr->ew_rate[like[i]];
}

/* ---- the GPT-2 family: parameters and FLOPs ---------------------------------------- */

static double gpt_layer_params(const parlm_gpt_config *c)
{
    double C = c->n_embd; /* qkv 3C^2+3C, proj C^2+C, fc 4C^2+4C, fcproj 4C^2+C, 2 LN 4C */
    return 12.0 * C * C + 13.0 * C;
}

/* Forward FLOPs per token of one layer: 2 per weight, and the causal attention's QK^T and
 * AV, 2 C T together (parlm-train's MFU counts 6 L C T for forward + backward). */
static double gpt_layer_flops(const parlm_gpt_config *c, int T)
{
    return 2.0 * gpt_layer_params(c) + 2.0 * c->n_embd * (double)T;
}

static double gpt_head_flops(const parlm_gpt_config *c)
{
    return 2.0 * ((double)c->vocab_pad * c->n_embd + 2.0 * c->n_embd);
}

/* Elements per token (parlm_plan_ew's units) of nl layers, plus the embedding (first) and
 * the final layernorm and loss (last), on one of tp ranks. Megatron splits what lies
 * between the column- and row-parallel matmuls: GELU on 4C, the qkv and fc biases (3C +
 * 4C), the logits; the layernorms, residual adds and the proj/fcproj biases (after their
 * all-reduce) are whole on every rank. The embedding's add counts as a residual add. */
static void gpt_ew_per_token(const parlm_gpt_config *c, int nl, int first, int last, int tp,
                             double e[PARLM_PLAN_NEW])
{
    double C = c->n_embd;
    e[PARLM_PLAN_EW_LAYERNORM] = nl * 2.0 * C + (last ? C : 0);
    e[PARLM_PLAN_EW_GELU] = nl * 4.0 * C / tp;
    e[PARLM_PLAN_EW_RESIDUAL] = nl * 2.0 * C + (first ? C : 0);
    e[PARLM_PLAN_EW_BIAS] = nl * (7.0 * C / tp + 2.0 * C);
    e[PARLM_PLAN_EW_CROSSENTROPY] = last ? (double)c->vocab_pad / tp : 0;
    e[PARLM_PLAN_EW_ADAMW] = 0;
    e[PARLM_PLAN_EW_RMSNORM] = e[PARLM_PLAN_EW_ROPE] = e[PARLM_PLAN_EW_SWIGLU] = 0;
}

/* ---- Llama: parameters and FLOPs ----------------------------------------------------
 * A layer: RMSNorm, wq (C x C), wk and wv (KV x C, KV = NKV hs), RoPE on q and k, GQA
 * attention, wo (C x C), residual; RMSNorm, w_gate and w_up (F x C), SwiGLU, w_down
 * (C x F), residual. No biases, no position table; the head (Vp x C) is wte or its own
 * tensor. A tensor-parallel rank holds NH/tp query heads, NKV/tp KV heads and F/tp
 * SwiGLU units (column-parallel wq, wk, wv, w_gate, w_up; row-parallel wo, w_down), and
 * Vp/tp rows of the embedding and the head; the norms are whole on every rank. */

static double llama_kv(const parlm_gpt_config *c)
{
    return (double)c->n_kv_head * (c->n_embd / c->n_head);
}

/* one layer's matmul weights, whole */
static double llama_layer_weights(const parlm_gpt_config *c)
{
    double C = c->n_embd, F = c->ffn_hidden;
    return 2.0 * C * C + 2.0 * C * llama_kv(c) + 3.0 * C * F;
}

/* Seconds a token of nl layers (and the head if last) spends in matmuls on one of tp
 * ranks, forward + backward (3 x 2 n k FLOPs each), every linear map (n outputs, k
 * inputs on this rank) at its own shape's GEMM rate for m rows (one core). */
static double llama_matmul_seconds(const parlm_plan_profile *pr, const parlm_gpt_config *c,
                                   int nl, int last, double m, int tp)
{
    double C = c->n_embd, KV = llama_kv(c), F = c->ffn_hidden, V = (double)c->vocab_pad;
    /* wq, wk, wv, wo, w_gate, w_up, w_down */
    const double nk[7][2] = {{C / tp, C}, {KV / tp, C}, {KV / tp, C}, {C, C / tp},
                             {F / tp, C}, {F / tp, C},  {C, F / tp}};
    double s = 0;
    for (int i = 0; i < 7; i++)
        s += 6.0 * nk[i][0] * nk[i][1] / parlm_plan_gemm_rate(pr, m, nk[i][0], nk[i][1]);
    s *= nl;
    if (last)
        s += 6.0 * V / tp * C / parlm_plan_gemm_rate(pr, m, V / tp, C);
    return s;
}

/* Parameters of a stage's rank: its layers, the embedding (first), the final norm and the
 * head (last: its own tensor if untied; a copy of wte, as GPT-2's, if tied on pp > 1). */
static double llama_stage_params(const parlm_gpt_config *c, int nl, int first, int last,
                                 int tp, int pp)
{
    double C = c->n_embd, emb = (double)c->vocab_pad * C / tp;
    double P = nl * (llama_layer_weights(c) / tp + 2.0 * C);
    if (first)
        P += emb;
    if (last)
        P += (c->untied_head || pp > 1 ? emb : 0) + C;
    return P;
}

/* Elements per token of nl layers (and the final norm and loss if last) on one of tp
 * ranks: RMSNorm 2C a layer (whole), RoPE on the rank's q and k ((C + KV) / tp), SwiGLU
 * F / tp, two residual adds 2C (whole); the embedding is a lookup, no add. */
static void llama_ew_per_token(const parlm_gpt_config *c, int nl, int last, int tp,
                               double e[PARLM_PLAN_NEW])
{
    double C = c->n_embd;
    for (int i = 0; i < PARLM_PLAN_NEW; i++)
        e[i] = 0;
    e[PARLM_PLAN_EW_RMSNORM] = nl * 2.0 * C + (last ? C : 0);
    e[PARLM_PLAN_EW_ROPE] = nl * (C + llama_kv(c)) / tp;
    e[PARLM_PLAN_EW_SWIGLU] = nl * (double)c->ffn_hidden / tp;
    e[PARLM_PLAN_EW_RESIDUAL] = nl * 2.0 * C;
    e[PARLM_PLAN_EW_CROSSENTROPY] = last ? (double)c->vocab_pad / tp : 0;
}

/* Activation floats a micro-batch keeps a token on one of tp ranks, as parlm's training
 * arena lays them out (lib/model/model.c) at Llama's widths. A layer: whole, the two norm
 * outputs, their rstd and the two residual sums (4C + 2); split, q, k, v (C + 2 KV), the
 * attention output C, its log-sum-exp per head NH (the fused attention keeps no T x T
 * scores), gate, up and the SwiGLU output 3F. A stage adds its input C; the last the
 * final norm (C + 1), the logits Vp/tp and the loss and its log-sum-exp (2). (GPT-2's
 * count below predates the fused attention; it stays, so its plans do not move.) */
static double llama_act_per_token(const parlm_gpt_config *c, int nl, int last, int tp)
{
    double C = c->n_embd;
    double split = 2.0 * C + 2.0 * llama_kv(c) + c->n_head + 3.0 * c->ffn_hidden;
    return nl * (4.0 * C + 2.0 + split / tp) + C +
           (last ? C + 3.0 + (double)c->vocab_pad / tp : 0);
}

/* The grid rules for a Llama model, as Megatron-LM splits it (parlm_grid_check holds
 * GPT-2's, whose MLP is 4C wide): whole query and KV heads, SwiGLU units and vocabulary
 * rows on each tensor-parallel rank, a layer or more a stage, 1F1B with M >= pp. */
static parlm_status llama_grid_check(const parlm_gpt_config *c, const parlm_grid_config *gc)
{
    int tp = gc->tp, pp = gc->pp;
    if (c->n_head % tp)
        return parlm_error(PARLM_EINVAL, "layout: the model's %d heads do not divide by tp %d "
                           "(each tensor-parallel rank holds whole heads)", c->n_head, tp);
    if (c->n_kv_head % tp)
        return parlm_error(PARLM_EINVAL, "layout: the model's %d KV heads do not divide by tp %d "
                           "(each tensor-parallel rank holds whole KV heads; the planner does "
                           "not model replicated KV heads)", c->n_kv_head, tp);
    if (c->ffn_hidden % tp)
        return parlm_error(PARLM_EINVAL, "layout: the SwiGLU's %d hidden units do not divide by "
                           "tp %d", c->ffn_hidden, tp);
    if (c->vocab_pad % tp)
        return parlm_error(PARLM_EINVAL, "layout: the padded vocabulary of %d rows does not "
                           "divide by tp %d (vocab-parallel embedding and LM head)",
                           c->vocab_pad, tp);
    if (c->n_layer < pp)
        return parlm_error(PARLM_EINVAL, "layout: %d layers cannot fill pp %d stages (each "
                           "stage holds at least one layer)", c->n_layer, pp);
    if (gc->schedule == PARLM_PP_1F1B && gc->micro_batches < pp)
        return parlm_error(PARLM_EINVAL, "layout: 1F1B needs at least pp = %d micro-batches, "
                           "got %d (fewer leave the pipeline idle most of the time; use more "
                           "or gpipe)", pp, gc->micro_batches);
    return PARLM_OK;
}

static int is_llama(const parlm_gpt_config *c)
{
    return c->arch == PARLM_ARCH_LLAMA;
}

/* The config with its defaults made explicit: vocab_pad (0 in a request: computed), and a
 * Llama config's n_kv_head and ffn_hidden (0: NH and 4C, as parlm/model.h says). */
static parlm_gpt_config plan_config(const parlm_gpt_config *m)
{
    parlm_gpt_config c = *m;
    if (c.vocab_pad == 0)
        c.vocab_pad = (c.vocab + 127) / 128 * 128;
    if (is_llama(&c) && c.n_kv_head == 0)
        c.n_kv_head = c.n_head;
    if (is_llama(&c) && c.ffn_hidden == 0)
        c.ffn_hidden = 4 * c.n_embd;
    return c;
}

double parlm_plan_gpt_flops_per_token(const parlm_gpt_config *m, int T)
{
    parlm_gpt_config c = plan_config(m);
    const parlm_gpt_config *cfg = &c;
    if (is_llama(cfg)) {
        double mm = cfg->n_layer * llama_layer_weights(cfg) + (double)cfg->vocab_pad * cfg->n_embd;
        return 2.0 * mm + cfg->n_layer * 2.0 * cfg->n_embd * (double)T;
    }
    return cfg->n_layer * gpt_layer_flops(cfg, T) + gpt_head_flops(cfg);
}

/* Seconds of the optimizer over n parameters: the measured per-core rate on every thread,
 * or the memory's pace if slower (AdamW reads param, grad, m, v and writes param, m, v:
 * 28 bytes a parameter) — the one op here that streams far more than the caches hold. */
static double optimizer_seconds(const parlm_plan_profile *pr, double n, int threads, double bw)
{
    return n / fmin(pr->ew_rate[PARLM_PLAN_EW_ADAMW] * threads, bw / 28.0);
}

/* ---- primitives --------------------------------------------------------------------- */

double parlm_plan_ring_allreduce(double n, int p, double alpha, double beta)
{
    if (p <= 1)
        return 0.0;
    return 2.0 * (p - 1) / p * n * beta + 2.0 * (p - 1) * alpha;
}

double parlm_plan_gemm_rate(const parlm_plan_profile *pr, double m, double n, double k)
{
    if (!pr || pr->n_gemm < 1)
        return 0.0;
    /* Inverse-distance weights (power 4) in (log m, log n, log k): a shape takes its rate
     * from the measured shapes nearest in every dimension. Interpolating in log(m n k)
     * alone confused shapes of one volume (64x3072x768 and 256x768x768 differ by 1.4x
     * here) and made a pipeline's micro-batches look faster or slower at random. */
    double lm = log(fmax(m, 1.0)), ln = log(fmax(n, 1.0)), lk = log(fmax(k, 1.0));
    double wsum = 0, rsum = 0;
    for (int i = 0; i < pr->n_gemm; i++) {
        const parlm_plan_gemm_point *g = &pr->gemm[i];
        double dm = log(fmax(g->m, 1.0)) - lm, dn = log(fmax(g->n, 1.0)) - ln,
               dk = log(fmax(g->k, 1.0)) - lk;
        double d2 = dm * dm + dn * dn + dk * dk;
        if (d2 < 1e-12)
            return g->flops;
        double w = 1.0 / (d2 * d2);
        wsum += w, rsum += w * g->flops;
    }
    return rsum / wsum;
}

static const parlm_plan_link *find_link(const parlm_plan_profile *pr, const char *name)
{
    for (int i = 0; i < pr->n_links; i++)
        if (!strcmp(pr->links[i].name, name))
            return &pr->links[i];
    return NULL;
}

/* Hierarchical ring all-reduce of n bytes over p ranks, pi of them on each node: reduce-
 * scatter inside the node, all-reduce of the n/pi shard across nodes, all-gather inside. */
static double hier_allreduce(double n, int p, int pi, const parlm_plan_link *in,
                             const parlm_plan_link *out)
{
    if (pi < 1)
        pi = 1;
    if (pi > p)
        pi = p;
    int pe = p / pi;
    return parlm_plan_ring_allreduce(n, pi, in->allreduce_alpha, in->allreduce_beta) +
           parlm_plan_ring_allreduce(n / pi, pe, out->allreduce_alpha, out->allreduce_beta);
}

/* ---- one layout --------------------------------------------------------------------- */

static parlm_status check_inputs(const parlm_plan_profile *pr, const parlm_plan_cluster *cl,
                                 const parlm_plan_request *rq)
{
    if (!pr || !cl || !rq)
        return parlm_error(PARLM_EINVAL, "parlm_plan: null argument");
    if (pr->n_gemm < 1 || pr->fma_peak_f32 <= 0 || pr->attention_flops <= 0 ||
        pr->stream_bandwidth <= 0)
        return parlm_error(PARLM_EINVAL, "parlm_plan: the profile needs gemm points, "
                                         "fma_peak_f32, attention_flops, stream_bandwidth > 0");
    for (int i = 0; i <= PARLM_PLAN_EW_ADAMW; i++) /* the Llama ops may be missing (ew_rate) */
        if (!(pr->ew_rate[i] > 0))
            return parlm_error(PARLM_EINVAL, "parlm_plan: the profile has no elementwise.%s "
                               "rate (an older parlm-bench calibrate measured it): run "
                               "`parlm-bench calibrate --out FILE` again",
                               parlm_plan_ew_name((parlm_plan_ew)i));
    if (rq->bf16 && pr->fma_peak_bf16 <= 0)
        return parlm_error(PARLM_EINVAL, "parlm_plan: bf16 asked, the profile has no fma_peak_bf16");
    if (cl->nodes < 1 || cl->sockets < 1 || cl->cores_per_socket < 1 || cl->memory_per_node <= 0)
        return parlm_error(PARLM_EINVAL, "parlm_plan: bad cluster (nodes %d sockets %d cores %d)",
                           cl->nodes, cl->sockets, cl->cores_per_socket);
    /* one rank talks to nobody: a profile measured without MPI has no links */
    if (rq->ranks != 1 && (!find_link(pr, cl->intra_link) || !find_link(pr, cl->inter_link)))
        return parlm_error(PARLM_EINVAL, "parlm_plan: the cluster's links '%s'/'%s' are not "
                                         "in the profile", cl->intra_link, cl->inter_link);
    int cores = cl->sockets * cl->cores_per_socket;
    if (rq->ranks < 1 || rq->ranks % cl->nodes || rq->ranks / cl->nodes > cores)
        return parlm_error(PARLM_EINVAL, "parlm_plan: %d ranks on %d nodes of %d cores: need a "
                                         "multiple of the nodes, at most one rank per core",
                           rq->ranks, cl->nodes, cores);
    if (rq->global_batch < 1 || rq->seq_len < 1 || rq->seq_len > rq->model.max_seq)
        return parlm_error(PARLM_EINVAL, "parlm_plan: batch %d, seq %d (max_seq %d)",
                           rq->global_batch, rq->seq_len, rq->model.max_seq);
    int64_t np;
    return parlm_gpt_config_num_params(&rq->model, &np);
}

parlm_status parlm_plan_estimate_layout(const parlm_plan_profile *pr, const parlm_plan_cluster *cl,
                                        const parlm_plan_request *rq, const parlm_plan_layout *lay,
                                        parlm_plan_estimate *est)
{
    RETURN_IF_ERROR(check_inputs(pr, cl, rq));
    if (!lay || !est)
        return parlm_error(PARLM_EINVAL, "parlm_plan_estimate_layout: null argument");
    parlm_gpt_config cm = plan_config(&rq->model);
    const parlm_gpt_config *c = &cm;
    int dp = lay->dp, tp = lay->tp, pp = lay->pp, M = lay->micro_batches, T = rq->seq_len;
    if (dp < 1 || tp < 1 || pp < 1 || M < 1 || lay->threads < 1 ||
        (long)dp * tp * pp != rq->ranks)
        return parlm_error(PARLM_EINVAL, "dp %d x tp %d x pp %d != %d ranks (or M %d, threads "
                                         "%d < 1)", dp, tp, pp, rq->ranks, M, lay->threads);
    if (rq->global_batch % (dp * M))
        return parlm_error(PARLM_EINVAL, "global batch %d is not a multiple of dp %d x M %d",
                           rq->global_batch, dp, M);
    parlm_grid_config gc = {.tp = tp, .pp = pp, .micro_batches = M, .schedule = (parlm_pp_schedule)lay->schedule,
                            .seq_len = T};
    RETURN_IF_ERROR(is_llama(c) ? llama_grid_check(c, &gc) : parlm_grid_check(c, rq->ranks, &gc));
    int rpn = rq->ranks / cl->nodes, cores = cl->sockets * cl->cores_per_socket;
    if (lay->threads * rpn > cores)
        return parlm_error(PARLM_EINVAL, "%d ranks x %d threads exceed the %d cores of a node",
                           rpn, lay->threads, cores);
    /* node of each rank (consecutive ranks per node): TP groups must not span nodes */
    int *node = malloc((size_t)rq->ranks * sizeof *node);
    if (!node)
        return parlm_error(PARLM_ENOMEM, "parlm_plan: out of memory");
    for (int r = 0; r < rq->ranks; r++)
        node[r] = r / rpn;
    parlm_status st = parlm_grid_check_nodes(rq->ranks, &gc, node);
    free(node);
    RETURN_IF_ERROR(st);
    int bounds[pp + 1];
    RETURN_IF_ERROR(parlm_pp_split(c, T, pp, bounds));

    /* both found unless ranks == 1 (check_inputs), where no term below reads them */
    const parlm_plan_link *intra = find_link(pr, cl->intra_link), *inter = find_link(pr, cl->inter_link);
    double b = (double)rq->global_batch / (dp * M); /* sequences per micro-batch */
    double tok = b * T, C = c->n_embd;
    double scale = lay->bf16 ? pr->fma_peak_bf16 / pr->fma_peak_f32 : 1.0;
    /* one representative GEMM of a layer (the MLP's: tokens x 4C/tp x C) sets the rate */
    double gemm = parlm_plan_gemm_rate(pr, tok, 4.0 * C / tp, C) * scale * lay->threads;
    double attn = pr->attention_flops * lay->threads;
    double bw_rank = pr->stream_bandwidth / rpn;
    /* TP link: inside the node (grid_check_nodes refused the rest) */
    double act_bytes = tok * C * 4.0;
    double tp_ar = tp > 1 ? parlm_plan_ring_allreduce(act_bytes, tp, intra->allreduce_alpha,
                                                      intra->allreduce_beta) : 0;
    double params_total = 0, P_max = 0;
    memset(est, 0, sizeof *est);
    double worst_mb = 0, worst_tp = 0, worst_ew = 0, worst_ops[PARLM_PLAN_NEW] = {0};
    for (int s = 0; s < pp; s++) {
        int nl = bounds[s + 1] - bounds[s], first = s == 0, last = s == pp - 1;
        double mm = nl * 2.0 * gpt_layer_params(c) + (last ? gpt_head_flops(c) : 0);
        double at = nl * 2.0 * C * T;
        /* forward + backward = 3x forward, per micro-batch, this rank's 1/tp share; Llama
         * times each matmul at its own shape's rate */
        double t_c = is_llama(c) ? tok * (llama_matmul_seconds(pr, c, nl, last, tok, tp) /
                                              (scale * lay->threads) + 3.0 * at / attn / tp)
                                 : 3.0 * tok * (mm / gemm + at / attn) / tp;
        /* the elementwise ops are threaded like the GEMMs: a micro-batch's tensors mostly
         * stay in cache, so no memory bound is applied (the optimizer's below has one) */
        double ops[PARLM_PLAN_NEW], t_ew = 0;
        if (is_llama(c))
            llama_ew_per_token(c, nl, last, tp, ops);
        else
            gpt_ew_per_token(c, nl, first, last, tp, ops);
        for (int i = 0; i < PARLM_PLAN_NEW; i++)
            t_ew += ops[i] = tok * ops[i] / (ew_rate(pr, i) * lay->threads);
        double t_tp = nl * 4.0 * tp_ar;
        if (t_c + t_ew + t_tp > worst_mb) {
            worst_mb = t_c + t_ew + t_tp, worst_tp = t_tp, worst_ew = t_ew;
            memcpy(worst_ops, ops, sizeof ops);
        }
        /* memory of this stage's rank: params (wte on the first and the last stage) */
        double P = nl * gpt_layer_params(c) / tp;
        if (s == 0)
            P += ((double)c->vocab_pad * C + (double)c->max_seq * C) / tp;
        if (s == pp - 1)
            P += (pp > 1 ? (double)c->vocab_pad * C / tp : 0) + 2.0 * C;
        if (is_llama(c))
            P = llama_stage_params(c, nl, first, last, tp, pp);
        params_total += P;
        /* activations kept per micro-batch, floats per token per layer: residuals, LNs and
         * projections (9C) stay whole; qkv, attention output, MLP (12C) and the two T x T
         * score maps per head (2 NH T) are split over tp. The last stage adds logits and
         * probabilities, 2 Vp / tp per token. */
        double a = tok * 4.0 * (nl * (9.0 * C + (12.0 * C + 2.0 * c->n_head * (double)T) / tp) +
                                (s == pp - 1 ? 2.0 * c->vocab_pad / tp : 0));
        if (is_llama(c))
            a = tok * 4.0 * llama_act_per_token(c, nl, last, tp);
        int inflight = parlm_pp_max_in_flight((parlm_pp_schedule)lay->schedule, s, pp, M);
        double m_par = P * (4.0 + (lay->bf16 ? 2.0 : 0.0)), m_grad = P * 4.0;
        double m_opt = P * 8.0 / (lay->zero1 ? dp : 1), m_act = a * inflight;
        double total = m_par + m_grad + m_opt + m_act;
        if (total > est->mem_total) {
            est->mem_total = total, est->mem_params = m_par, est->mem_grads = m_grad;
            est->mem_optim = m_opt, est->mem_act = m_act;
        }
        if (P > P_max)
            P_max = P;
    }
    est->mem_limit = cl->memory_per_node / rpn;
    est->term[PARLM_PLAN_COMPUTE] = M * (worst_mb - worst_tp - worst_ew);
    est->term[PARLM_PLAN_ELEMENTWISE] = M * worst_ew;
    for (int i = 0; i < PARLM_PLAN_NEW; i++)
        est->ew[i] = M * worst_ops[i];
    est->term[PARLM_PLAN_TP] = M * worst_tp;
    est->term[PARLM_PLAN_BUBBLE] = (pp - 1) * worst_mb;
    /* each micro-batch crosses pp - 1 boundaries forward and backward; after the first, the
     * pipeline overlaps them but the critical path still carries M + pp - 2 of each */
    /* a pipeline is tp*pp consecutive ranks: on one node only if they divide its ranks */
    const parlm_plan_link *pl = rpn % (tp * pp) == 0 ? intra : inter;
    if (pp > 1)
        est->term[PARLM_PLAN_P2P] = 2.0 * (M + pp - 2) * (pl->p2p_alpha + act_bytes * pl->p2p_beta);
    /* DP: a dp group holds one rank per replica; tp*pp ranks per replica, so rpn/(tp*pp)
     * replicas share a node (at least one) */
    int dpi = rpn / (tp * pp);
    if (dpi < 1)
        dpi = 1;
    if (dpi > dp)
        dpi = dp;
    while (dp % dpi)
        dpi--;
    est->dp_total = dp > 1 ? hier_allreduce(P_max * 4.0, dp, dpi, intra, inter) : 0;
    /* overlap: the all-reduce runs behind the last micro-batch's backward (2/3 of it) */
    est->dp_hidden = lay->overlap ? fmin(est->dp_total, 2.0 / 3.0 * (worst_mb - worst_tp)) : 0;
    est->term[PARLM_PLAN_DP] = est->dp_total - est->dp_hidden;
    /* ZeRO-1: each rank updates its 1/dp of the parameters */
    est->term[PARLM_PLAN_OPTIMIZER] = est->ew[PARLM_PLAN_EW_ADAMW] =
        optimizer_seconds(pr, P_max / (lay->zero1 ? dp : 1), lay->threads, bw_rank);
    est->step = 0;
    est->bottleneck = PARLM_PLAN_COMPUTE;
    for (int t = 0; t < PARLM_PLAN_NTERMS; t++) {
        est->step += est->term[t];
        if (est->term[t] > est->term[est->bottleneck])
            est->bottleneck = (parlm_plan_term)t;
    }
    est->tokens_per_s = (double)rq->global_batch * T / est->step;
    /* T1: the whole batch on one core, no communication, optimizer at the node's bandwidth */
    double P_all = params_total - (pp > 1 ? (double)c->vocab_pad * C / tp : 0);
    double mm1 = c->n_layer * 2.0 * gpt_layer_params(c) + gpt_head_flops(c);
    double tok1 = (double)rq->global_batch * T;
    double gemm1 = parlm_plan_gemm_rate(pr, tok1 / M / dp, 4.0 * C, C) * scale;
    double ops1[PARLM_PLAN_NEW], t1 = 3.0 * tok1 * (mm1 / gemm1 + c->n_layer * 2.0 * C * T /
                                                      pr->attention_flops) +
                                     optimizer_seconds(pr, P_all * tp, 1, pr->stream_bandwidth);
    gpt_ew_per_token(c, c->n_layer, 1, 1, 1, ops1);
    if (is_llama(c)) { /* every parameter once (tp 1 has no replicated norms) */
        t1 = tok1 * (llama_matmul_seconds(pr, c, c->n_layer, 1, tok1 / M / dp, 1) / scale +
                     3.0 * c->n_layer * 2.0 * C * T / pr->attention_flops) +
             optimizer_seconds(pr, llama_stage_params(c, c->n_layer, 1, 1, 1, 1), 1,
                               pr->stream_bandwidth);
        llama_ew_per_token(c, c->n_layer, 1, 1, ops1);
    }
    for (int i = 0; i < PARLM_PLAN_NEW; i++)
        t1 += tok1 * ops1[i] / ew_rate(pr, i);
    est->eta = t1 / ((double)rq->ranks * lay->threads * est->step);
    return PARLM_OK;
}

/* ---- enumeration -------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    const parlm_plan_entry *x = a, *y = b;
    if (x->excluded != y->excluded)
        return x->excluded - y->excluded;
    if (x->excluded)
        return 0;
    return (x->est.step > y->est.step) - (x->est.step < y->est.step);
}

parlm_status parlm_plan_enumerate(const parlm_plan_profile *pr, const parlm_plan_cluster *cl,
                                  const parlm_plan_request *rq, parlm_plan_entry **out, int *n)
{
    if (!out || !n)
        return parlm_error(PARLM_EINVAL, "parlm_plan_enumerate: null argument");
    *out = NULL, *n = 0;
    RETURN_IF_ERROR(check_inputs(pr, cl, rq));
    int rpn = rq->ranks / cl->nodes, threads = cl->sockets * cl->cores_per_socket / rpn;
    int cap = 64, cnt = 0;
    parlm_plan_entry *e = malloc((size_t)cap * sizeof *e);
    if (!e)
        return parlm_error(PARLM_ENOMEM, "parlm_plan_enumerate: out of memory");
    for (int tp = 1; tp <= rq->ranks; tp++) {
        for (int pp = 1; pp <= rq->ranks / tp; pp++) {
            if (rq->ranks % (tp * pp))
                continue;
            int dp = rq->ranks / (tp * pp);
            if (rq->global_batch % dp)
                continue; /* no whole per-replica batch: not a layout at all */
            int Br = rq->global_batch / dp;
            for (int M = 1; M <= Br; M++) {
                if (Br % M)
                    continue;
                for (int sch = 0; sch < (pp > 1 ? 2 : 1); sch++) {
                    for (int zo = 0; zo < (dp > 1 ? 4 : 1); zo++) {
                        if (cnt == cap) {
                            parlm_plan_entry *g = realloc(e, (size_t)cap * 2 * sizeof *e);
                            if (!g) {
                                free(e);
                                return parlm_error(PARLM_ENOMEM, "parlm_plan_enumerate: out of memory");
                            }
                            e = g, cap *= 2;
                        }
                        parlm_plan_entry *x = &e[cnt++];
                        memset(x, 0, sizeof *x);
                        x->layout = (parlm_plan_layout){
                            .dp = dp, .tp = tp, .pp = pp, .micro_batches = M,
                            .schedule = sch ? PARLM_PP_1F1B : PARLM_PP_GPIPE,
                            .zero1 = zo & 1, .overlap = zo >> 1, .bf16 = rq->bf16,
                            .threads = threads};
                        if (parlm_plan_estimate_layout(pr, cl, rq, &x->layout, &x->est)) {
                            x->excluded = 1;
                            snprintf(x->reason, sizeof x->reason, "%s", parlm_last_error());
                        } else if (x->est.mem_total > x->est.mem_limit) {
                            x->excluded = 1;
                            snprintf(x->reason, sizeof x->reason,
                                     "needs %.2f GiB a rank, %.2f GiB available (%d ranks a node)",
                                     x->est.mem_total / 1073741824.0,
                                     x->est.mem_limit / 1073741824.0, rpn);
                        }
                    }
                }
            }
        }
    }
    qsort(e, (size_t)cnt, sizeof *e, cmp_entry);
    *out = e, *n = cnt;
    return PARLM_OK;
}

/* ---- alpha/beta fit ----------------------------------------------------------------- */

parlm_status parlm_plan_fit_alpha_beta(const double *bytes, const double *seconds, int n,
                                       double *alpha, double *beta, double *rel_rms)
{
    if (!bytes || !seconds || !alpha || !beta || !rel_rms || n < 2)
        return parlm_error(PARLM_EINVAL, "parlm_plan_fit_alpha_beta: need >= 2 samples");
    double sx = 0, sy = 0;
    for (int i = 0; i < n; i++) {
        if (!(bytes[i] >= 0) || !(seconds[i] > 0) || !isfinite(bytes[i]) || !isfinite(seconds[i]))
            return parlm_error(PARLM_EINVAL, "parlm_plan_fit_alpha_beta: sample %d (%g bytes, "
                                             "%g s) is not valid", i, bytes[i], seconds[i]);
        sx += bytes[i], sy += seconds[i];
    }
    /* weights 1/t^2: the relative error is minimized, so the latency-bound small messages
     * count as much as the bandwidth-bound large ones (plain least squares would fit the
     * largest sizes alone and leave alpha to their noise) */
    double sw = 0;
    sx = sy = 0;
    for (int i = 0; i < n; i++) {
        double w = 1.0 / (seconds[i] * seconds[i]);
        sw += w, sx += w * bytes[i], sy += w * seconds[i];
    }
    double mx = sx / sw, my = sy / sw, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        double w = 1.0 / (seconds[i] * seconds[i]);
        sxx += w * (bytes[i] - mx) * (bytes[i] - mx);
        sxy += w * (bytes[i] - mx) * (seconds[i] - my);
    }
    if (!(sxx > 0))
        return parlm_error(PARLM_EINVAL, "parlm_plan_fit_alpha_beta: all samples have the same size");
    *beta = sxy / sxx;
    *alpha = my - *beta * mx;
    double e2 = 0;
    for (int i = 0; i < n; i++) {
        double r = (*alpha + *beta * bytes[i] - seconds[i]) / seconds[i];
        e2 += r * r;
    }
    *rel_rms = sqrt(e2 / n);
    return PARLM_OK;
}

/* ---- JSON --------------------------------------------------------------------------- */

/* a positive finite number (zero too if may_be_zero), else an error naming file and field */
static parlm_status get_num(const char *path, json_t *o, const char *ctx, const char *key,
                            int may_be_zero, double *v)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        return parlm_error(PARLM_EFORMAT, "%s: missing field %s%s", path, ctx, key);
    if (!json_is_number(j))
        return parlm_error(PARLM_EFORMAT, "%s: field %s%s is not a number", path, ctx, key);
    *v = json_number_value(j);
    if (!isfinite(*v) || *v < 0 || (*v == 0 && !may_be_zero))
        return parlm_error(PARLM_EFORMAT, "%s: field %s%s must be %s, got %g", path, ctx, key,
                           may_be_zero ? ">= 0" : "> 0", *v);
    return PARLM_OK;
}

static parlm_status get_int(const char *path, json_t *o, const char *key, int *v)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        return parlm_error(PARLM_EFORMAT, "%s: missing field %s", path, key);
    if (!json_is_integer(j) || json_integer_value(j) < 1 || json_integer_value(j) > 1000000)
        return parlm_error(PARLM_EFORMAT, "%s: field %s must be an integer in [1, 1000000]",
                           path, key);
    *v = (int)json_integer_value(j);
    return PARLM_OK;
}

static parlm_status get_str(const char *path, json_t *o, const char *ctx, const char *key,
                            char *dst)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        return parlm_error(PARLM_EFORMAT, "%s: missing field %s%s", path, ctx, key);
    const char *s = json_string_value(j);
    if (!s || !*s || strlen(s) >= PARLM_PLAN_NAME)
        return parlm_error(PARLM_EFORMAT, "%s: field %s%s must be a string of 1 to %d chars",
                           path, ctx, key, PARLM_PLAN_NAME - 1);
    strcpy(dst, s);
    return PARLM_OK;
}

static parlm_status load_root(const char *path, json_t **root)
{
    json_error_t err;
    *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!*root)
        return parlm_error(PARLM_EFORMAT, "%s: line %d: %s", path, err.line, err.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return parlm_error(PARLM_EFORMAT, "%s: not a JSON object", path);
    }
    return PARLM_OK;
}

static parlm_status profile_from(const char *path, json_t *r, parlm_plan_profile *pr)
{
    memset(pr, 0, sizeof *pr);
    RETURN_IF_ERROR(get_num(path, r, "", "fma_peak_f32", 0, &pr->fma_peak_f32));
    RETURN_IF_ERROR(get_num(path, r, "", "fma_peak_bf16", 1, &pr->fma_peak_bf16));
    RETURN_IF_ERROR(get_num(path, r, "", "attention_flops", 0, &pr->attention_flops));
    RETURN_IF_ERROR(get_num(path, r, "", "stream_bandwidth", 0, &pr->stream_bandwidth));
    json_t *g = json_object_get(r, "gemm");
    if (!json_is_array(g) || json_array_size(g) < 1 || json_array_size(g) > PARLM_PLAN_MAX_GEMM)
        return parlm_error(PARLM_EFORMAT, "%s: field gemm must be an array of 1 to %d points",
                           path, PARLM_PLAN_MAX_GEMM);
    pr->n_gemm = (int)json_array_size(g);
    for (int i = 0; i < pr->n_gemm; i++) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "gemm[%d].", i);
        json_t *p = json_array_get(g, (size_t)i);
        if (!json_is_object(p))
            return parlm_error(PARLM_EFORMAT, "%s: %s is not an object", path, ctx);
        parlm_plan_gemm_point *q = &pr->gemm[i];
        RETURN_IF_ERROR(get_num(path, p, ctx, "m", 0, &q->m));
        RETURN_IF_ERROR(get_num(path, p, ctx, "n", 0, &q->n));
        RETURN_IF_ERROR(get_num(path, p, ctx, "k", 0, &q->k));
        RETURN_IF_ERROR(get_num(path, p, ctx, "flops", 0, &q->flops));
    }
    /* optional: a profile of an older calibrate has none; it loads (for its links) and
     * check_inputs refuses to plan with it, naming the field */
    json_t *ew = json_object_get(r, "elementwise");
    if (ew && !json_is_object(ew))
        return parlm_error(PARLM_EFORMAT, "%s: field elementwise must be an object", path);
    for (int i = 0; ew && i < PARLM_PLAN_NEW; i++) {
        const char *key = parlm_plan_ew_name((parlm_plan_ew)i);
        /* the Llama ops: measured since calibrate knows them; absent, 0 (see ew_rate) */
        if (i > PARLM_PLAN_EW_ADAMW && !json_object_get(ew, key))
            continue;
        RETURN_IF_ERROR(get_num(path, ew, "elementwise.", key, 0, &pr->ew_rate[i]));
    }
    /* optional: a profile calibrated on one rank has none (it plans 1-rank layouts) */
    json_t *l = json_object_get(r, "links");
    if (!l)
        return PARLM_OK;
    if (!json_is_array(l) || json_array_size(l) > PARLM_PLAN_MAX_LINKS)
        return parlm_error(PARLM_EFORMAT, "%s: field links must be an array of 0 to %d links",
                           path, PARLM_PLAN_MAX_LINKS);
    pr->n_links = (int)json_array_size(l);
    for (int i = 0; i < pr->n_links; i++) {
        char ctx[32];
        snprintf(ctx, sizeof ctx, "links[%d].", i);
        json_t *p = json_array_get(l, (size_t)i);
        if (!json_is_object(p))
            return parlm_error(PARLM_EFORMAT, "%s: %s is not an object", path, ctx);
        parlm_plan_link *q = &pr->links[i];
        RETURN_IF_ERROR(get_str(path, p, ctx, "name", q->name));
        RETURN_IF_ERROR(get_num(path, p, ctx, "p2p_alpha", 1, &q->p2p_alpha));
        RETURN_IF_ERROR(get_num(path, p, ctx, "p2p_beta", 0, &q->p2p_beta));
        RETURN_IF_ERROR(get_num(path, p, ctx, "allreduce_alpha", 1, &q->allreduce_alpha));
        RETURN_IF_ERROR(get_num(path, p, ctx, "allreduce_beta", 0, &q->allreduce_beta));
    }
    return PARLM_OK;
}

parlm_status parlm_plan_profile_load(const char *path, parlm_plan_profile *pr)
{
    if (!path || !pr)
        return parlm_error(PARLM_EINVAL, "parlm_plan_profile_load: null argument");
    json_t *r;
    RETURN_IF_ERROR(load_root(path, &r));
    parlm_status st = profile_from(path, r, pr);
    json_decref(r);
    return st;
}

parlm_status parlm_plan_cluster_load(const char *path, parlm_plan_cluster *cl)
{
    if (!path || !cl)
        return parlm_error(PARLM_EINVAL, "parlm_plan_cluster_load: null argument");
    json_t *r;
    RETURN_IF_ERROR(load_root(path, &r));
    memset(cl, 0, sizeof *cl);
    parlm_status st = get_int(path, r, "nodes", &cl->nodes);
    if (!st)
        st = get_int(path, r, "sockets", &cl->sockets);
    if (!st)
        st = get_int(path, r, "cores_per_socket", &cl->cores_per_socket);
    if (!st)
        st = get_num(path, r, "", "memory_per_node", 0, &cl->memory_per_node);
    if (!st)
        st = get_str(path, r, "", "intra_link", cl->intra_link);
    if (!st)
        st = get_str(path, r, "", "inter_link", cl->inter_link);
    json_decref(r);
    return st;
}

static parlm_status dump(json_t *r, const char *path)
{
    if (!r)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory building JSON", path);
    int rc = json_dump_file(r, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(r);
    return rc ? parlm_error(PARLM_EIO, "%s: cannot write", path) : PARLM_OK;
}

parlm_status parlm_plan_profile_save(const char *path, const parlm_plan_profile *pr)
{
    if (!path || !pr || pr->n_gemm < 0 || pr->n_gemm > PARLM_PLAN_MAX_GEMM || pr->n_links < 0 ||
        pr->n_links > PARLM_PLAN_MAX_LINKS)
        return parlm_error(PARLM_EINVAL, "parlm_plan_profile_save: bad argument");
    json_t *g = json_array(), *l = json_array();
    for (int i = 0; i < pr->n_gemm; i++)
        json_array_append_new(g, json_pack("{s:f,s:f,s:f,s:f}", "m", pr->gemm[i].m, "n",
                                           pr->gemm[i].n, "k", pr->gemm[i].k, "flops",
                                           pr->gemm[i].flops));
    for (int i = 0; i < pr->n_links; i++) {
        const parlm_plan_link *q = &pr->links[i];
        json_array_append_new(l, json_pack("{s:s,s:f,s:f,s:f,s:f}", "name", q->name, "p2p_alpha",
                                           q->p2p_alpha, "p2p_beta", q->p2p_beta,
                                           "allreduce_alpha", q->allreduce_alpha,
                                           "allreduce_beta", q->allreduce_beta));
    }
    json_t *r = json_pack("{s:f,s:f,s:f,s:f,s:o,s:o}", "fma_peak_f32", pr->fma_peak_f32,
                          "fma_peak_bf16", pr->fma_peak_bf16, "attention_flops",
                          pr->attention_flops, "stream_bandwidth", pr->stream_bandwidth, "gemm",
                          g, "links", l);
    if (r && pr->ew_rate[0] > 0) { /* none: kept an old-style profile (loads the same) */
        json_t *ew = json_object();
        for (int i = 0; i < PARLM_PLAN_NEW; i++)
            if (pr->ew_rate[i] > 0) /* a Llama op may be unmeasured: left out, as it loads */
                json_object_set_new(ew, parlm_plan_ew_name((parlm_plan_ew)i),
                                    json_real(pr->ew_rate[i]));
        json_object_set_new(r, "elementwise", ew);
    }
    return dump(r, path);
}

parlm_status parlm_plan_cluster_save(const char *path, const parlm_plan_cluster *cl)
{
    if (!path || !cl)
        return parlm_error(PARLM_EINVAL, "parlm_plan_cluster_save: null argument");
    return dump(json_pack("{s:i,s:i,s:i,s:f,s:s,s:s}", "nodes", cl->nodes, "sockets", cl->sockets,
                          "cores_per_socket", cl->cores_per_socket, "memory_per_node",
                          cl->memory_per_node, "intra_link", cl->intra_link, "inter_link",
                          cl->inter_link),
                path);
}

parlm_status parlm_plan_save(const char *path, const parlm_plan_request *rq,
                             const parlm_plan_entry *e, int n)
{
    if (!path || !rq || (n > 0 && !e) || n < 0)
        return parlm_error(PARLM_EINVAL, "parlm_plan_save: bad argument");
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const parlm_plan_layout *y = &e[i].layout;
        const parlm_plan_estimate *s = &e[i].est;
        json_t *terms = json_object();
        for (int t = 0; t < PARLM_PLAN_NTERMS; t++)
            json_object_set_new(terms, parlm_plan_term_name((parlm_plan_term)t), json_real(s->term[t]));
        json_t *ops = json_object();
        /* a GPT-2 plan keeps its six ops (the file as before Llama); a Llama plan has all */
        for (int k = 0; k < (is_llama(&rq->model) ? PARLM_PLAN_NEW : PARLM_PLAN_EW_ADAMW + 1); k++)
            json_object_set_new(ops, parlm_plan_ew_name((parlm_plan_ew)k), json_real(s->ew[k]));
        json_t *o = json_pack(
            "{s:i,s:i,s:i,s:i,s:s,s:b,s:b,s:b,s:i,s:b}", "dp", y->dp, "tp", y->tp, "pp", y->pp,
            "micro_batches", y->micro_batches, "schedule", parlm_pp_schedule_name((parlm_pp_schedule)y->schedule),
            "zero1", y->zero1, "overlap", y->overlap, "bf16", y->bf16, "threads", y->threads,
            "excluded", e[i].excluded);
        if (e[i].excluded)
            json_object_set_new(o, "reason", json_string(e[i].reason));
        json_object_set_new(o, "estimate", json_pack(
            "{s:f,s:f,s:f,s:s,s:o,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "step_s", s->step,
            "tokens_per_s", s->tokens_per_s, "eta", s->eta, "bottleneck",
            parlm_plan_term_name(s->bottleneck), "terms_s", terms, "elementwise_s", ops,
            "dp_total_s", s->dp_total,
            "dp_hidden_s", s->dp_hidden, "mem_params", s->mem_params, "mem_grads", s->mem_grads,
            "mem_optim", s->mem_optim, "mem_act", s->mem_act, "mem_total", s->mem_total,
            "mem_limit", s->mem_limit));
        json_array_append_new(arr, o);
    }
    parlm_gpt_config cm = plan_config(&rq->model); /* as the estimate */
    const parlm_gpt_config *c = &cm;
    int vp = c->vocab_pad;
    json_t *mo = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "n_layer", c->n_layer, "n_head",
                           c->n_head, "n_embd", c->n_embd, "max_seq", c->max_seq, "vocab",
                           c->vocab, "vocab_pad", vp);
    if (mo && is_llama(c)) /* the shape's other fields; a GPT-2 model's file is as before */
        json_object_update_new(mo, json_pack("{s:s,s:i,s:i,s:b}", "arch", "llama", "n_kv_head",
                                             c->n_kv_head, "ffn_hidden", c->ffn_hidden,
                                             "untied_head", c->untied_head));
    return dump(json_pack("{s:o,s:i,s:i,s:i,s:b,s:o}", "model", mo, "global_batch",
                          rq->global_batch, "seq_len", rq->seq_len, "ranks", rq->ranks, "bf16",
                          rq->bf16, "layouts", arr),
                path);
}

/* an integer in [lo, hi] (a JSON true/false as 1/0 when is_bool), else an error naming it */
static parlm_status get_int_in(const char *path, json_t *o, const char *ctx, const char *key,
                               int lo, int hi, int is_bool, int *v)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        return parlm_error(PARLM_EFORMAT, "%s: missing field %s%s", path, ctx, key);
    if (is_bool) {
        if (!json_is_boolean(j))
            return parlm_error(PARLM_EFORMAT, "%s: field %s%s must be true or false", path, ctx, key);
        *v = json_is_true(j);
        return PARLM_OK;
    }
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
        return parlm_error(PARLM_EFORMAT, "%s: field %s%s must be an integer in [%d, %d]", path,
                           ctx, key, lo, hi);
    *v = (int)json_integer_value(j);
    return PARLM_OK;
}

static parlm_status plan_from(const char *path, json_t *r, parlm_plan_request *rq,
                              parlm_plan_entry **out, int *n)
{
    enum { BIG = 1 << 24 };
    memset(rq, 0, sizeof *rq);
    json_t *m = json_object_get(r, "model");
    if (!json_is_object(m))
        return parlm_error(PARLM_EFORMAT, "%s: field model must be an object", path);
    parlm_gpt_config *c = &rq->model;
    RETURN_IF_ERROR(get_int_in(path, m, "model.", "n_layer", 1, BIG, 0, &c->n_layer));
    RETURN_IF_ERROR(get_int_in(path, m, "model.", "n_head", 1, BIG, 0, &c->n_head));
    RETURN_IF_ERROR(get_int_in(path, m, "model.", "n_embd", 1, BIG, 0, &c->n_embd));
    RETURN_IF_ERROR(get_int_in(path, m, "model.", "max_seq", 1, BIG, 0, &c->max_seq));
    RETURN_IF_ERROR(get_int_in(path, m, "model.", "vocab_pad", 0, BIG, 0, &c->vocab_pad));
    /* vocab: written since parlm_plan_load exists; 0 (unknown) in older files */
    if (json_object_get(m, "vocab"))
        RETURN_IF_ERROR(get_int_in(path, m, "model.", "vocab", 1, BIG, 0, &c->vocab));
    /* arch: "llama" with its fields; absent, GPT-2 (every file before Llama) */
    json_t *arch = json_object_get(m, "arch");
    if (arch) {
        if (!json_is_string(arch) || strcmp(json_string_value(arch), "llama"))
            return parlm_error(PARLM_EFORMAT, "%s: field model.arch must be \"llama\" (or "
                               "absent: GPT-2)", path);
        c->arch = PARLM_ARCH_LLAMA;
        RETURN_IF_ERROR(get_int_in(path, m, "model.", "n_kv_head", 1, BIG, 0, &c->n_kv_head));
        RETURN_IF_ERROR(get_int_in(path, m, "model.", "ffn_hidden", 1, BIG, 0, &c->ffn_hidden));
        RETURN_IF_ERROR(get_int_in(path, m, "model.", "untied_head", 0, 1, 1, &c->untied_head));
    }
    RETURN_IF_ERROR(get_int_in(path, r, "", "global_batch", 1, BIG, 0, &rq->global_batch));
    RETURN_IF_ERROR(get_int_in(path, r, "", "seq_len", 1, BIG, 0, &rq->seq_len));
    RETURN_IF_ERROR(get_int_in(path, r, "", "ranks", 1, BIG, 0, &rq->ranks));
    RETURN_IF_ERROR(get_int_in(path, r, "", "bf16", 0, 1, 1, &rq->bf16));
    json_t *a = json_object_get(r, "layouts");
    if (!json_is_array(a) || json_array_size(a) > (size_t)BIG)
        return parlm_error(PARLM_EFORMAT, "%s: field layouts must be an array", path);
    int cnt = (int)json_array_size(a);
    parlm_plan_entry *e = calloc(cnt > 0 ? (size_t)cnt : 1, sizeof *e);
    if (!e)
        return parlm_error(PARLM_ENOMEM, "parlm_plan_load: out of memory");
    parlm_status st = PARLM_OK;
    for (int i = 0; i < cnt && !st; i++) {
        char ctx[48];
        snprintf(ctx, sizeof ctx, "layouts[%d].", i);
        json_t *o = json_array_get(a, (size_t)i);
        parlm_plan_layout *y = &e[i].layout;
        const char *sch = json_string_value(json_object_get(o, "schedule"));
        if (!json_is_object(o))
            st = parlm_error(PARLM_EFORMAT, "%s: %s is not an object", path, ctx);
        if (!st)
            st = get_int_in(path, o, ctx, "dp", 1, BIG, 0, &y->dp);
        if (!st)
            st = get_int_in(path, o, ctx, "tp", 1, BIG, 0, &y->tp);
        if (!st)
            st = get_int_in(path, o, ctx, "pp", 1, BIG, 0, &y->pp);
        if (!st)
            st = get_int_in(path, o, ctx, "micro_batches", 1, BIG, 0, &y->micro_batches);
        if (!st)
            st = get_int_in(path, o, ctx, "threads", 1, BIG, 0, &y->threads);
        if (!st)
            st = get_int_in(path, o, ctx, "zero1", 0, 1, 1, &y->zero1);
        if (!st)
            st = get_int_in(path, o, ctx, "overlap", 0, 1, 1, &y->overlap);
        if (!st)
            st = get_int_in(path, o, ctx, "bf16", 0, 1, 1, &y->bf16);
        if (!st)
            st = get_int_in(path, o, ctx, "excluded", 0, 1, 1, &e[i].excluded);
        if (!st && (!sch || (strcmp(sch, "gpipe") && strcmp(sch, "1f1b"))))
            st = parlm_error(PARLM_EFORMAT, "%s: field %sschedule must be \"gpipe\" or \"1f1b\"",
                             path, ctx);
        if (!st)
            y->schedule = strcmp(sch, "gpipe") ? PARLM_PP_1F1B : PARLM_PP_GPIPE;
        if (!st && (long)y->dp * y->tp * y->pp != rq->ranks)
            st = parlm_error(PARLM_EFORMAT, "%s: %sdp x tp x pp = %d x %d x %d is not ranks %d",
                             path, ctx, y->dp, y->tp, y->pp, rq->ranks);
        json_t *es = json_object_get(o, "estimate");
        if (!st && !json_is_object(es))
            st = parlm_error(PARLM_EFORMAT, "%s: field %sestimate must be an object", path, ctx);
        char ectx[64];
        snprintf(ectx, sizeof ectx, "%sestimate.", ctx);
        if (!st)
            st = get_num(path, es, ectx, "step_s", 1, &e[i].est.step); /* 0: excluded */
        const char *why = json_string_value(json_object_get(o, "reason"));
        if (!st && why)
            snprintf(e[i].reason, sizeof e[i].reason, "%s", why);
    }
    if (st) {
        free(e);
        return st;
    }
    *out = e, *n = cnt;
    return PARLM_OK;
}

parlm_status parlm_plan_load(const char *path, parlm_plan_request *rq, parlm_plan_entry **out,
                             int *n)
{
    if (!path || !rq || !out || !n)
        return parlm_error(PARLM_EINVAL, "parlm_plan_load: null argument");
    *out = NULL, *n = 0;
    json_t *r;
    RETURN_IF_ERROR(load_root(path, &r));
    parlm_status st = plan_from(path, r, rq, out, n);
    json_decref(r);
    return st;
}

/* The straggler model: the step schedule each data-parallel mode imposes, simulated step
 * by step (no closed form covers a rotating straggler with bounded staleness). Rank r's
 * step c takes compute, plus slow_extra when it is the slow one; its end is when its
 * gradients are in. sync: every step starts once every rank's previous step and the
 * exchange are done; local H: ranks run alone and meet (exchange) after every H-th step;
 * async S: rank r starts step c after its own step c-1 and after update c-S-1 (the last
 * push of step c-S-1, plus the exchange). */
parlm_status parlm_plan_straggler(const char *mode, int p, int k, double compute,
                                  double slow_extra, int slow_rank, double exchange, int steps,
                                  double *step_seconds)
{
    int kind = !mode ? -1 : !strcmp(mode, "sync") ? 0 : !strcmp(mode, "local") ? 1
             : !strcmp(mode, "async") ? 2 : -1;
    if (!step_seconds || kind < 0 || p < 1 || steps < 1 || k < (kind == 1) ||
        !(compute >= 0) || !(slow_extra >= 0) || !(exchange >= 0) || slow_rank < -2)
        return parlm_error(PARLM_EINVAL, "parlm_plan_straggler: mode sync, local or async, "
                           "p >= 1, steps >= 1, H >= 1 or S >= 0, times >= 0, slow rank a "
                           "rank, -1 (none) or -2 (rotate)");
    int S = kind == 2 ? k : 0, H = kind == 1 ? k : 1;
    double *end = calloc((size_t)p, sizeof *end);
    double *upd = calloc((size_t)steps, sizeof *upd); /* update c's time */
    if (!end || !upd) {
        free(end), free(upd);
        return parlm_error(PARLM_ENOMEM, "parlm_plan_straggler: %d steps", steps);
    }
    for (int c = 0; c < steps; c++) {
        double gate = kind == 2 ? (c - S - 1 >= 0 ? upd[c - S - 1] : 0)
                    : kind == 0 ? (c > 0 ? upd[c - 1] : 0)
                    : (c > 0 && c % H == 0 ? upd[c - 1] : 0);
        double last = 0;
        for (int r = 0; r < p; r++) {
            int slow = slow_rank == -2 ? c % p == r : slow_rank == r;
            double start = end[r] > gate ? end[r] : gate;
            end[r] = start + compute + (slow ? slow_extra : 0);
            last = end[r] > last ? end[r] : last;
        }
        /* local SGD exchanges only after its H-th steps (the others cost nothing) */
        upd[c] = last + (kind != 1 || (c + 1) % H == 0 ? exchange : 0);
        if (kind == 1 && (c + 1) % H == 0)
            for (int r = 0; r < p; r++)
                end[r] = upd[c];
    }
    double total = 0;
    for (int r = 0; r < p; r++)
        total = end[r] > total ? end[r] : total;
    if (kind == 0 && upd[steps - 1] > total)
        total = upd[steps - 1];
    *step_seconds = total / steps;
    free(end), free(upd);
    return PARLM_OK;
}
