/* lib/parallel/layout.c — the arithmetic of the process grid, no MPI: layout checks,
 * rank coordinates, the cost model that balances pipeline stages, and the pipeline
 * schedules as lists of operations (see parlm/grid.h). Pure functions, so every rule is
 * testable without mpirun. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "parlm/grid.h"

/* ---- schedules ---------------------------------------------------------------------- */

const char *parlm_pp_schedule_name(parlm_pp_schedule s)
{
    switch (s) {
    case PARLM_PP_GPIPE: return "gpipe";
    case PARLM_PP_1F1B: return "1f1b";
    }
    return "?";
}

parlm_status parlm_pp_schedule_parse(const char *name, parlm_pp_schedule *out)
{
    if (!name || !out)
        return parlm_error(PARLM_EINVAL, "parlm_pp_schedule_parse: null argument");
    if (strcmp(name, "gpipe") == 0)
        *out = PARLM_PP_GPIPE;
    else if (strcmp(name, "1f1b") == 0)
        *out = PARLM_PP_1F1B;
    else
        return parlm_error(PARLM_EINVAL, "unknown pipeline schedule '%s' (gpipe or 1f1b)", name);
    return PARLM_OK;
}

parlm_status parlm_pp_schedule_ops(parlm_pp_schedule kind, int stage, int pp, int M,
                                   parlm_pp_op *ops)
{
    if (pp < 1 || stage < 0 || stage >= pp || M < 1 || !ops)
        return parlm_error(PARLM_EINVAL, "parlm_pp_schedule_ops: stage %d of pp %d, M %d%s", stage,
                           pp, M, ops ? "" : ", null ops");
    int n = 0;
    if (kind == PARLM_PP_GPIPE) {
        for (int i = 0; i < M; i++)
            ops[n++] = (parlm_pp_op){0, i};
        for (int i = 0; i < M; i++)
            ops[n++] = (parlm_pp_op){1, i};
        return PARLM_OK;
    }
    if (kind != PARLM_PP_1F1B)
        return parlm_error(PARLM_EINVAL, "parlm_pp_schedule_ops: unknown schedule %d", (int)kind);
    /* warm-up: the forwards that fill the pipeline below this stage; then each forward is
     * followed by the backward of the oldest micro-batch in flight; then the drain */
    int warm = pp - stage - 1 < M ? pp - stage - 1 : M;
    int f = 0, b = 0;
    for (; f < warm; f++)
        ops[n++] = (parlm_pp_op){0, f};
    for (; f < M; f++) {
        ops[n++] = (parlm_pp_op){0, f};
        ops[n++] = (parlm_pp_op){1, b++};
    }
    for (; b < M; b++)
        ops[n++] = (parlm_pp_op){1, b};
    return PARLM_OK;
}

int parlm_pp_max_in_flight(parlm_pp_schedule kind, int stage, int pp, int M)
{
    if (pp < 1 || stage < 0 || stage >= pp || M < 1)
        return 0;
    if (kind == PARLM_PP_GPIPE)
        return M;
    if (kind == PARLM_PP_1F1B)
        return pp - stage < M ? pp - stage : M;
    return 0;
}

/* ---- layout checks ---------------------------------------------------------------- */

void parlm_grid_coords(int rank, int tp, int pp, int *d, int *t, int *p)
{
    if (tp < 1 || pp < 1 || rank < 0) {
        *d = *t = *p = -1;
        return;
    }
    *t = rank % tp;
    *p = rank / tp % pp;
    *d = rank / (tp * pp);
}

parlm_status parlm_grid_check(const parlm_gpt_config *cfg, int nranks, const parlm_grid_config *gc)
{
    if (!cfg || !gc)
        return parlm_error(PARLM_EINVAL, "parlm_grid_check: null argument");
    parlm_gpt_config c = *cfg;
    int64_t np;
    parlm_status st = parlm_gpt_config_num_params(&c, &np);
    if (st != PARLM_OK)
        return st;
    if (c.vocab_pad == 0)
        c.vocab_pad = (c.vocab + 127) / 128 * 128;
    if (gc->tp < 1 || gc->pp < 1)
        return parlm_error(PARLM_EINVAL, "layout: tp %d and pp %d must be >= 1", gc->tp, gc->pp);
    if (nranks < 1 || nranks % ((int64_t)gc->tp * gc->pp) != 0)
        return parlm_error(PARLM_EINVAL,
                           "layout: %d ranks are not a multiple of tp x pp = %d x %d = %lld "
                           "(dp = ranks / (tp x pp) must be a whole number)",
                           nranks, gc->tp, gc->pp, (long long)gc->tp * gc->pp);
    if (c.n_head % gc->tp != 0)
        return parlm_error(PARLM_EINVAL,
                           "layout: the model's %d heads do not divide by tp %d (each tensor-"
                           "parallel rank holds whole heads)",
                           c.n_head, gc->tp);
    if ((4 * c.n_embd) % gc->tp != 0)
        return parlm_error(PARLM_EINVAL, "layout: the MLP's %d hidden units do not divide by tp %d",
                           4 * c.n_embd, gc->tp);
    if (c.vocab_pad % gc->tp != 0)
        return parlm_error(PARLM_EINVAL,
                           "layout: the padded vocabulary of %d rows does not divide by tp %d "
                           "(vocab-parallel embedding and LM head)",
                           c.vocab_pad, gc->tp);
    if (c.n_layer < gc->pp)
        return parlm_error(PARLM_EINVAL,
                           "layout: %d layers cannot fill pp %d stages (each stage holds at "
                           "least one layer)",
                           c.n_layer, gc->pp);
    if (gc->micro_batches < 1)
        return parlm_error(PARLM_EINVAL, "layout: micro-batches %d must be >= 1",
                           gc->micro_batches);
    if (gc->schedule != PARLM_PP_GPIPE && gc->schedule != PARLM_PP_1F1B)
        return parlm_error(PARLM_EINVAL, "layout: unknown pipeline schedule %d", (int)gc->schedule);
    if (gc->schedule == PARLM_PP_1F1B && gc->micro_batches < gc->pp)
        return parlm_error(PARLM_EINVAL,
                           "layout: 1F1B needs at least pp = %d micro-batches, got %d (fewer "
                           "leave the pipeline idle most of the time; use more or gpipe)",
                           gc->pp, gc->micro_batches);
    if (gc->seq_len < 0 || gc->seq_len > c.max_seq)
        return parlm_error(PARLM_EINVAL, "layout: sequence length %d outside [0, max_seq %d]",
                           gc->seq_len, c.max_seq);
    /* and the model's own rules for every shard this layout makes */
    int *bounds = malloc(sizeof(int) * ((size_t)gc->pp + 1));
    if (!bounds)
        return parlm_error(PARLM_ENOMEM, "layout: out of memory");
    st = parlm_pp_split(&c, gc->seq_len ? gc->seq_len : c.max_seq, gc->pp, bounds);
    for (int p = 0; st == PARLM_OK && p < gc->pp; p++)
        for (int t = 0; st == PARLM_OK && t < gc->tp; t++) {
            parlm_gpt_shard sh = {gc->tp, t, bounds[p], bounds[p + 1]};
            st = parlm_gpt_shard_check(&c, &sh);
        }
    free(bounds);
    return st;
}

parlm_status parlm_grid_check_nodes(int nranks, const parlm_grid_config *gc, const int *node)
{
    if (!gc || !node || gc->tp < 1 || nranks < 1)
        return parlm_error(PARLM_EINVAL, "parlm_grid_check_nodes: bad argument");
    if (gc->allow_tp_across_nodes)
        return PARLM_OK;
    for (int r0 = 0; r0 + gc->tp <= nranks; r0 += gc->tp)
        for (int r = r0 + 1; r < r0 + gc->tp; r++)
            if (node[r] != node[r0])
                return parlm_error(PARLM_EINVAL,
                                   "layout: tensor-parallel group of ranks %d..%d spans nodes "
                                   "(rank %d on node %d, rank %d on node %d); its all-reduces "
                                   "run every half-block and need shared memory: put tp "
                                   "consecutive ranks on each node (e.g. mpirun --map-by "
                                   "ppr:N:node with N a multiple of %d) or lower tp",
                                   r0, r0 + gc->tp - 1, r0, node[r0], r, node[r], gc->tp);
    return PARLM_OK;
}

/* ---- stage costs -------------------------------------------------------------------
 * Forward FLOPs per token (backward is about twice that everywhere, so the ratios hold):
 * a layer's four matmuls 2 * 12 C^2 and causal attention 2 T C (QK^T and AV over T/2
 * keys on average); the LM head 2 C Vp plus the softmax and loss ~5 Vp; the embedding
 * adds two rows, C. */
static double layer_flops(const parlm_gpt_config *c, int T)
{
    return 24.0 * c->n_embd * c->n_embd + 2.0 * T * c->n_embd;
}

static double head_flops(const parlm_gpt_config *c)
{
    double vp = c->vocab_pad ? c->vocab_pad : (c->vocab + 127) / 128 * 128;
    return 2.0 * c->n_embd * vp + 5.0 * vp;
}

double parlm_pp_stage_cost(const parlm_gpt_config *cfg, int T, int begin, int end)
{
    if (!cfg || begin < 0 || end > cfg->n_layer || begin > end)
        return -1;
    double lf = layer_flops(cfg, T);
    double f = (end - begin) * lf;
    if (begin == 0)
        f += cfg->n_embd;
    if (end == cfg->n_layer)
        f += head_flops(cfg);
    return f / lf;
}

parlm_status parlm_pp_split(const parlm_gpt_config *cfg, int T, int pp, int *bounds)
{
    if (!cfg || !bounds || T < 1 || pp < 1)
        return parlm_error(PARLM_EINVAL, "parlm_pp_split: bad argument (T %d, pp %d)", T, pp);
    int L = cfg->n_layer;
    if (L < pp)
        return parlm_error(PARLM_EINVAL, "parlm_pp_split: %d layers cannot fill %d stages", L, pp);
    /* best[s][l]: stages 0..s-1 holding layers [0, l). Pass 1 minimizes the largest stage
     * cost; pass 2 minimizes the sum of squares among splits within that bound. */
    size_t n = ((size_t)pp + 1) * ((size_t)L + 1);
    double *best = malloc(n * sizeof(double));
    int *from = malloc(n * sizeof(int));
    if (!best || !from) {
        free(best);
        free(from);
        return parlm_error(PARLM_ENOMEM, "parlm_pp_split: out of memory");
    }
#define AT(s, l) ((size_t)(s) * ((size_t)L + 1) + (size_t)(l))
    double bound = INFINITY;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++)
            best[i] = INFINITY;
        best[AT(0, 0)] = 0;
        for (int s = 1; s <= pp; s++)
            for (int l = s; l <= L - (pp - s); l++)
                for (int k = s - 1; k < l; k++) {
                    double prev = best[AT(s - 1, k)];
                    if (prev == INFINITY)
                        continue;
                    /* the last stage must end at L; others may not */
                    if (s == pp && l != L)
                        continue;
                    double c = parlm_pp_stage_cost(cfg, T, k, l);
                    /* relative slack: costs are sums of the same few doubles */
                    if (pass == 1 && c > bound * (1 + 1e-12))
                        continue;
                    double v = pass == 0 ? fmax(prev, c) : prev + c * c;
                    if (v < best[AT(s, l)]) {
                        best[AT(s, l)] = v;
                        from[AT(s, l)] = k;
                    }
                }
        bound = best[AT(pp, L)];
    }
    int l = L;
    for (int s = pp; s >= 1; s--) {
        bounds[s] = l;
        l = from[AT(s, l)];
    }
    bounds[0] = 0;
#undef AT
    free(best);
    free(from);
    return PARLM_OK;
}
