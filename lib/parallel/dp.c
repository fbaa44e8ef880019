/* lib/parallel/dp.c — data-parallel training over parlm_comm (see parlm/dp.h).
 * Gradient buckets are laid over the flat gradient buffer from its end: the model's
 * layers are contiguous and backward finishes them last-to-first, so when backward
 * reports "gradients from offset X on are final", every bucket starting at or after X
 * can start its all-reduce. The same report, issued after every backward op, is where
 * the outstanding requests are progressed (parlm/dist.h progresses from the caller).
 * In overlap mode the token embedding (the first and largest tensor, a third of GPT-2
 * 124M) gets buckets of its own that go first: the model defers its lookup gradient
 * (parlm_gpt_set_defer_token_grad), so wte is final right after the LM head, and only
 * the B*T gradient rows of the lookup are exchanged after backward, by an all-gather.
 * On a pipeline stage (parlm/pp.h) the token embedding is tied to the other end stage's
 * copy: its buckets are held back, to start after the pipeline has summed the copies. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../base/error.h"
#include "../model/dp_hooks.h"
#include "dp_async.h"
#include "parlm/dp.h"
#include "parlm/nn.h"
#include "parlm/tensor.h"

#define DEFAULT_BUCKET_BYTES (25 << 20)
/* a step's events: up to 4 per bucket (local SGD averages parameters, both moments and
 * gradients) and a few more (backward, rows, wait, optimizer, ...) */
#define MAX_EXTRA_EVENTS 8

struct parlm_dp {
    parlm_gpt *m;
    parlm_comm *comm;
    parlm_dp_config cfg;
    int rank, size;
    int64_t P;
    int nb, next;           /* buckets (nb), index of the next one to start */
    int nhead;              /* buckets 0 .. nhead-1 cover the token embedding [0, head_n) */
    int64_t head_n;
    int nheld;              /* or the last nheld buckets cover a pipeline end stage's tied
                             * wte (tensor 0; started by parlm_dp_exchange) */
    int64_t *bstart, *bend; /* bucket i covers [bstart[i], bend[i]); the others count down
                             * from the end of the buffer */
    parlm_request **req;
    int observed;           /* buckets seen complete (they complete in order) */
    int *bev;               /* bucket i's event */
    int armed;              /* overlap: this backward's buckets may start */
    int deferred;           /* this backward deferred the token-lookup rows */
    float *rows;            /* all ranks' lookup rows: per rank [N int32 token ids][N x C rows] */
    int64_t rows_cap, rows_n;
    int32_t *ids;           /* one rank's ids, copied out of their float slots */
    int64_t ids_cap;
    parlm_request *rows_req;
    int rows_ev;
    parlm_status hook_error;
    int64_t blk_off, blk_n; /* ZeRO-1: this rank's block and its AdamW state */
    float *zm, *zv;
    float *shared_grads;    /* the model's gradients, in the node's shared memory */
    float *shared_params;   /* ZeRO-1 and local SGD: its parameters too (all-gathered or
                             * averaged in place) */
    int local_count, drift; /* local SGD: steps taken, replicas differ */
    dp_async *async;        /* async: the shared state (lib/parallel/dp_async.c) */
    double t_comm_start;
    parlm_dp_stats stats;
    parlm_dp_event *ev; /* the current step's timeline */
    int nev, cap_ev;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *parlm_dp_mode_name(parlm_dp_mode mode)
{
    static const char *const names[] = {"sync", "overlap", "zero1", "local", "async"};
    return (unsigned)mode < 5 ? names[mode] : "?";
}

parlm_status parlm_dp_mode_parse(const char *name, parlm_dp_mode *out)
{
    if (!name || !out)
        return parlm_error(PARLM_EINVAL, "parlm_dp_mode_parse: null argument");
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, parlm_dp_mode_name((parlm_dp_mode)i))) {
            *out = (parlm_dp_mode)i;
            return PARLM_OK;
        }
    return parlm_error(PARLM_EINVAL, "unknown data-parallel mode '%s' (sync, overlap, zero1, local, "
                       "async)",
                       name);
}

void parlm_dp_free(parlm_dp *dp)
{
    if (!dp)
        return;
    for (int i = 0; i < dp->nb; i++)
        if (dp->req && dp->req[i])
            parlm_request_wait(&dp->req[i]);
    parlm_gpt_set_grad_hook(dp->m, NULL, NULL);
    dp_async_free(dp->async);
    if (dp->rows_req)
        parlm_request_wait(&dp->rows_req);
    parlm_gpt_set_defer_token_grad(dp->m, 0);
    /* (if the model cannot take them back, for want of memory, it keeps using the
     * shared buffers, which live until the communicator is freed) */
    if (dp->shared_grads && parlm_gpt_set_grad_buffer(dp->m, NULL) == PARLM_OK)
        parlm_comm_free_shared(dp->comm, dp->shared_grads);
    if (dp->shared_params && parlm_gpt_set_param_buffer(dp->m, NULL) == PARLM_OK)
        parlm_comm_free_shared(dp->comm, dp->shared_params);
    free(dp->bstart);
    free(dp->bend);
    free(dp->req);
    free(dp->bev);
    free(dp->ev);
    parlm_free(dp->rows);
    parlm_free(dp->ids);
    parlm_free(dp->zm);
    parlm_free(dp->zv);
    free(dp);
}

/* ---- the step's timeline ---- */

static int event_begin(parlm_dp *dp, const char *name, parlm_dp_lane lane, int64_t bytes)
{
    if (dp->nev == dp->cap_ev)
        return -1; /* cannot happen: capacity is one per bucket plus the fixed ones */
    dp->ev[dp->nev] = (parlm_dp_event){name, lane, now(), 0, bytes};
    return dp->nev++;
}

static void event_end(parlm_dp *dp, int i)
{
    if (i >= 0 && dp->ev[i].end == 0)
        dp->ev[i].end = now();
}

static void event_add(parlm_dp *dp, const char *name, parlm_dp_lane lane, double t0, double t1,
                      int64_t bytes)
{
    int i = event_begin(dp, name, lane, bytes);
    if (i >= 0)
        dp->ev[i].start = t0, dp->ev[i].end = t1;
}

static int by_start(const void *a, const void *b)
{
    double x = ((const parlm_dp_event *)a)->start, y = ((const parlm_dp_event *)b)->start;
    return (x > y) - (x < y);
}

/* ---- overlap: buckets start as backward finishes them ---- */

static int held(const parlm_dp *dp, int i) { return i >= dp->nb - dp->nheld; }

static int bucket_ready(const parlm_dp *dp, int i, int64_t ready_from, int64_t head_ready)
{
    return i < dp->nhead ? dp->bend[i] <= head_ready
                         : !held(dp, i) && dp->bstart[i] >= ready_from;
}

/* progresses the queue (through test) and timestamps the buckets that completed */
static parlm_status observe(parlm_dp *dp)
{
    while (dp->observed < dp->next) {
        int i = dp->observed, done = 0;
        parlm_status st = parlm_request_test(&dp->req[i], &done);
        if (st != PARLM_OK)
            return st;
        if (!done)
            break;
        event_end(dp, dp->bev[i]);
        dp->observed++;
    }
    return PARLM_OK;
}

/* the all-reduce of the next bucket, in bucket order (the same on every rank) */
static parlm_status start_next(parlm_dp *dp)
{
    int i = dp->next++;
    if (i == 0)
        dp->t_comm_start = now();
    int64_t n = dp->bend[i] - dp->bstart[i];
    dp->bev[i] = event_begin(dp, "allreduce", PARLM_DP_LANE_COMM, n * 4);
    return parlm_allreduce_start(dp->comm, parlm_gpt_grads(dp->m) + dp->bstart[i], n,
                                 PARLM_REDUCE_AVG, dp->cfg.flags, &dp->req[i]);
}

static void on_grads_ready(int64_t ready_from, int64_t head_ready, void *arg)
{
    parlm_dp *dp = arg;
    if (!dp->armed || dp->hook_error != PARLM_OK)
        return;
    double t0 = now();
    while (dp->next < dp->nb && bucket_ready(dp, dp->next, ready_from, head_ready)) {
        parlm_status st = start_next(dp);
        if (st != PARLM_OK) {
            dp->hook_error = st;
            return;
        }
    }
    parlm_status st = observe(dp);
    if (st != PARLM_OK)
        dp->hook_error = st;
    dp->stats.progress += now() - t0;
}

parlm_status parlm_dp_create(parlm_dp **out, parlm_gpt *m, parlm_comm *comm,
                             const parlm_dp_config *cfg)
{
    if (!out || !m || !comm || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_dp_create: null argument");
    *out = NULL;
    RETURN_IF_ERROR(parlm_gpt_check_owned(m, "parlm_dp_create"));
    if ((unsigned)cfg->mode > PARLM_DP_ASYNC || cfg->bucket_bytes < 0 ||
        (cfg->mode == PARLM_DP_LOCAL && cfg->local_steps < 1) ||
        (cfg->mode == PARLM_DP_ASYNC && cfg->staleness < 0))
        return parlm_error(PARLM_EINVAL, "parlm_dp_create: bad mode, bucket size, local steps "
                           "or staleness");
    parlm_dp *dp = calloc(1, sizeof *dp);
    if (!dp)
        return parlm_error(PARLM_ENOMEM, "parlm_dp_create: out of memory");
    dp->m = m, dp->comm = comm, dp->cfg = *cfg;
    dp->rank = parlm_comm_rank(comm), dp->size = parlm_comm_size(comm);
    dp->P = parlm_gpt_num_params(m);
    int64_t bucket = (cfg->bucket_bytes ? cfg->bucket_bytes : DEFAULT_BUCKET_BYTES) / 4;
    if (bucket < 1024)
        bucket = 1024;
    /* overlap: the token embedding gets its own buckets (ids travel as floats: < 2^24);
     * only the whole model can defer its lookup gradient (a shard's wte is tied or cut) */
    parlm_gpt_config mc = parlm_gpt_get_config(m);
    parlm_gpt_shard sh = parlm_gpt_get_shard(m);
    int first = sh.layer_begin == 0, last = sh.layer_end == mc.n_layer;
    int64_t held_n = 0; /* a pipeline end stage's tied wte: its tensor 0 */
    if (first != last && cfg->mode == PARLM_DP_OVERLAP)
        (void)parlm_gpt_tensor_info(m, 0, NULL, NULL, NULL, &held_n);
    if (cfg->mode == PARLM_DP_OVERLAP && dp->size > 1 && mc.vocab_pad < (1 << 24) &&
        sh.tp == 1 && first && last)
        dp->head_n = (int64_t)mc.vocab_pad * mc.n_embd;
    /* the prefix [0, pre) has buckets of its own: first (head) or last (held) */
    int64_t pre = dp->head_n ? dp->head_n : held_n;
    int npre = (int)((pre + bucket - 1) / bucket);
    if (dp->head_n)
        dp->nhead = npre;
    else
        dp->nheld = npre;
    dp->nb = npre + (int)((dp->P - pre + bucket - 1) / bucket);
    dp->cap_ev = 4 * dp->nb + MAX_EXTRA_EVENTS;
    dp->bstart = calloc((size_t)dp->nb, sizeof *dp->bstart);
    dp->bend = calloc((size_t)dp->nb, sizeof *dp->bend);
    dp->req = calloc((size_t)dp->nb, sizeof *dp->req);
    dp->bev = calloc((size_t)dp->nb, sizeof *dp->bev);
    dp->ev = calloc((size_t)dp->cap_ev, sizeof *dp->ev);
    parlm_status st = PARLM_OK;
    if (!dp->bstart || !dp->bend || !dp->req || !dp->bev || !dp->ev)
        st = parlm_error(PARLM_ENOMEM, "parlm_dp_create: out of memory");
    int pre0 = dp->head_n ? 0 : dp->nb - npre; /* the prefix's first bucket */
    for (int i = 0; st == PARLM_OK && i < dp->nb; i++) {
        if (i >= pre0 && i < pre0 + npre) {
            dp->bstart[i] = (i - pre0) * bucket;
            dp->bend[i] = dp->bstart[i] + bucket < pre ? dp->bstart[i] + bucket : pre;
        } else {
            dp->bend[i] = dp->P - (i - dp->nhead) * bucket;
            dp->bstart[i] = dp->bend[i] - bucket > pre ? dp->bend[i] - bucket : pre;
        }
    }
    /* gradients in shared memory: ranks of a node reduce them in place (collective) */
    if (st == PARLM_OK && dp->size > 1 && cfg->mode != PARLM_DP_ASYNC &&
        (st = parlm_comm_alloc_shared(comm, dp->P, &dp->shared_grads)) == PARLM_OK)
        st = parlm_gpt_set_grad_buffer(m, dp->shared_grads);
    if (st == PARLM_OK && dp->size > 1 &&
        (cfg->mode == PARLM_DP_ZERO1 || cfg->mode == PARLM_DP_LOCAL) &&
        (st = parlm_comm_alloc_shared(comm, dp->P, &dp->shared_params)) == PARLM_OK)
        st = parlm_gpt_set_param_buffer(m, dp->shared_params);
    /* everyone starts from rank 0's replica */
    if (st == PARLM_OK)
        st = parlm_comm_bcast(comm, parlm_gpt_params(m), (size_t)dp->P * 4, 0);
    int64_t step = parlm_gpt_get_step(m);
    if (st == PARLM_OK && (st = parlm_comm_bcast(comm, &step, sizeof step, 0)) == PARLM_OK)
        st = parlm_gpt_set_step(m, step);
    parlm_block_range(dp->P, dp->size, dp->rank, &dp->blk_off, &dp->blk_n);
    if (st == PARLM_OK && cfg->mode == PARLM_DP_ZERO1) {
        dp->zm = parlm_alloc((size_t)dp->blk_n, 4);
        dp->zv = parlm_alloc((size_t)dp->blk_n, 4);
        if (!dp->zm || !dp->zv) {
            st = parlm_error(PARLM_ENOMEM, "ZeRO-1: optimizer block of %lld floats",
                             (long long)dp->blk_n);
        } else if (parlm_gpt_adam_m(m)) { /* resuming: take this rank's slice */
            memcpy(dp->zm, parlm_gpt_adam_m(m) + dp->blk_off, (size_t)dp->blk_n * 4);
            memcpy(dp->zv, parlm_gpt_adam_v(m) + dp->blk_off, (size_t)dp->blk_n * 4);
        } else {
            memset(dp->zm, 0, (size_t)dp->blk_n * 4);
            memset(dp->zv, 0, (size_t)dp->blk_n * 4);
        }
    }
    if (st == PARLM_OK && cfg->mode == PARLM_DP_OVERLAP)
        st = parlm_gpt_set_grad_hook(m, on_grads_ready, dp);
    /* async: RMA on an MPI window when asked (PARLM_ALGO_MPI in the flags or as the
     * communicator's forced algorithm) or when the ranks span nodes */
    parlm_comm_config cc;
    int rma = (cfg->flags & ~(unsigned)PARLM_WIRE_BF16) == PARLM_ALGO_MPI ||
              (parlm_comm_get_config(comm, &cc) == PARLM_OK && cc.algo == PARLM_ALGO_MPI);
    if (st == PARLM_OK && cfg->mode == PARLM_DP_ASYNC)
        st = dp_async_create(&dp->async, m, comm, cfg->staleness, rma);
    if (st != PARLM_OK) {
        parlm_dp_free(dp);
        return st;
    }
    *out = dp;
    return PARLM_OK;
}

/* After a deferring backward: this rank's lookup rows into its block of dp->rows, and
 * an all-gather of everyone's queued behind the buckets. */
static parlm_status start_rows(parlm_dp *dp)
{
    const int32_t *tok;
    const float *rows;
    int64_t N, C = parlm_gpt_get_config(dp->m).n_embd;
    parlm_status st = parlm_gpt_token_grad_rows(dp->m, &tok, &rows, &N);
    if (st != PARLM_OK)
        return st;
    int64_t blk = N * (C + 1);
    dp->rows_n = blk * dp->size;
    if (dp->rows_n > dp->rows_cap) {
        parlm_free(dp->rows);
        dp->rows = parlm_alloc((size_t)dp->rows_n, sizeof(float));
        dp->rows_cap = dp->rows ? dp->rows_n : 0;
        if (!dp->rows)
            return parlm_error(PARLM_ENOMEM, "data-parallel: %lld floats of token-gradient rows",
                               (long long)dp->rows_n);
    }
    float *mine = dp->rows + blk * dp->rank;
    memcpy(mine, tok, (size_t)N * sizeof(int32_t)); /* the ids' bytes ride in float slots */
    /* scaled by 1/p like the averaged gradient before they travel: every rank then adds
     * the same rounded products, in the same order */
    float scale = 1.0f / (float)dp->size, *dst = mine + N;
    for (int64_t i = 0; i < N * C; i++)
        dst[i] = scale * rows[i];
    dp->rows_ev = event_begin(dp, "embedding rows", PARLM_DP_LANE_COMM, dp->rows_n * 4);
    /* exact (no bf16 wire): a gather only copies, so the ids' bytes arrive as sent */
    return parlm_all_gather_start(dp->comm, dp->rows, dp->rows_n, dp->cfg.flags & ~PARLM_WIRE_BF16,
                                  &dp->rows_req);
}

/* wte gradient += every rank's (scaled) lookup rows, in rank order (the same on every
 * rank), through the model's lookup backward */
static parlm_status add_rows(parlm_dp *dp)
{
    int64_t C = parlm_gpt_get_config(dp->m).n_embd, blk = dp->rows_n / dp->size;
    int64_t N = blk / (C + 1);
    if (N > dp->ids_cap) {
        parlm_free(dp->ids);
        dp->ids = parlm_alloc((size_t)N, sizeof(int32_t));
        dp->ids_cap = dp->ids ? N : 0;
        if (!dp->ids)
            return parlm_error(PARLM_ENOMEM, "data-parallel: %lld token ids", (long long)N);
    }
    for (int r = 0; r < dp->size; r++) {
        const float *blk_r = dp->rows + blk * r;
        memcpy(dp->ids, blk_r, (size_t)N * sizeof(int32_t));
        parlm_status st = parlm_gpt_token_grad_add(dp->m, dp->ids, blk_r + N, N);
        if (st != PARLM_OK)
            return st; /* a bad id names itself; ranks are in order, so it is rank r's */
    }
    return PARLM_OK;
}

parlm_status parlm_dp_backward(parlm_dp *dp, float loss_scale, int last)
{
    if (!dp)
        return parlm_error(PARLM_EINVAL, "parlm_dp_backward: null argument");
    dp->armed = last && dp->cfg.mode == PARLM_DP_OVERLAP && dp->size > 1;
    dp->deferred = dp->armed && dp->nhead > 0;
    dp->next = dp->observed = 0;
    dp->hook_error = PARLM_OK;
    if (last) {
        dp->nev = 0; /* a new step's timeline */
        dp->stats.progress = 0;
    }
    parlm_status st = parlm_gpt_set_defer_token_grad(dp->m, dp->deferred);
    if (st != PARLM_OK)
        return st;
    double t0 = now();
    st = parlm_gpt_backward(dp->m, loss_scale);
    double t1 = now();
    if (last) {
        dp->stats.backward = t1 - t0;
        event_add(dp, "backward", PARLM_DP_LANE_COMPUTE, t0, t1, 0);
    }
    if (st == PARLM_OK)
        st = dp->hook_error;
    if (st == PARLM_OK && dp->deferred)
        st = start_rows(dp);
    return st;
}

/* all-reduce (average) of a whole buffer, bucket by bucket */
static parlm_status average(parlm_dp *dp, float *buf)
{
    for (int i = 0; i < dp->nb; i++) {
        int64_t n = dp->bend[i] - dp->bstart[i];
        int e = event_begin(dp, "allreduce", PARLM_DP_LANE_COMM, n * 4);
        parlm_status st = parlm_allreduce(dp->comm, buf + dp->bstart[i], n, PARLM_REDUCE_AVG,
                                          dp->cfg.flags);
        event_end(dp, e);
        if (st != PARLM_OK)
            return st;
    }
    return PARLM_OK;
}

static parlm_status exchange_grads(parlm_dp *dp)
{
    parlm_status st = PARLM_OK;
    double t0 = now();
    if (dp->cfg.mode == PARLM_DP_OVERLAP && dp->armed) {
        /* the held buckets (a pipeline stage's tied embedding, summed by now) go last */
        while (dp->next < dp->nb && held(dp, dp->next) && st == PARLM_OK)
            st = start_next(dp);
        for (int i = 0; i < dp->nb; i++)
            if (dp->req[i]) {
                parlm_status w = parlm_request_wait(&dp->req[i]);
                st = st != PARLM_OK ? st : w;
                if (i >= dp->observed)
                    event_end(dp, dp->bev[i]);
            }
        if (st == PARLM_OK && dp->next != dp->nb)
            st = parlm_error(PARLM_EINVAL, "data-parallel: backward finished %d of %d gradient "
                             "buckets", dp->next, dp->nb);
        if (st == PARLM_OK && dp->deferred) {
            st = parlm_request_wait(&dp->rows_req);
            event_end(dp, dp->rows_ev);
            if (st == PARLM_OK)
                st = add_rows(dp);
        }
        dp->armed = dp->deferred = 0;
    } else {
        dp->t_comm_start = t0;
        st = average(dp, parlm_gpt_grads(dp->m));
    }
    double t1 = now();
    dp->stats.comm_wait = t1 - t0;
    dp->stats.comm_total = t1 - dp->t_comm_start;
    event_add(dp, "wait", PARLM_DP_LANE_COMPUTE, t0, t1, 0);
    return st;
}

/* the gradient exchange of sync, overlap and ZeRO-1 (which averages this rank's block) */
static parlm_status exchange(parlm_dp *dp)
{
    if (dp->size == 1) { /* nothing to exchange */
        dp->stats.comm_wait = dp->stats.comm_total = 0;
        return PARLM_OK;
    }
    if (dp->cfg.mode != PARLM_DP_ZERO1)
        return exchange_grads(dp);
    double t0 = now();
    parlm_status st = parlm_reduce_scatter(dp->comm, parlm_gpt_grads(dp->m), dp->P,
                                           PARLM_REDUCE_AVG, dp->cfg.flags);
    double t1 = now();
    dp->stats.comm_wait = dp->stats.comm_total = t1 - t0;
    event_add(dp, "reduce-scatter", PARLM_DP_LANE_COMM, t0, t1, dp->P * 4);
    event_add(dp, "wait", PARLM_DP_LANE_COMPUTE, t0, t1, 0);
    return st;
}

/* ZeRO-1: AdamW on this rank's block with its part of the state, then every rank's block
 * of the parameters to everyone */
static parlm_status zero1_update(parlm_dp *dp, const parlm_adamw_cfg *cfg, float scale)
{
    parlm_gpt *m = dp->m;
    parlm_status st = PARLM_OK;
    int64_t t = parlm_gpt_get_step(m) + 1;
    if (dp->blk_n)
        st = parlm_gpt_update_range(m, cfg, scale, t, dp->blk_off, dp->blk_n, dp->zm, dp->zv);
    int e = event_begin(dp, "all-gather", PARLM_DP_LANE_COMM, dp->P * 4);
    if (st == PARLM_OK)
        st = parlm_all_gather(dp->comm, parlm_gpt_params(m), dp->P,
                              dp->cfg.flags & ~PARLM_WIRE_BF16);
    event_end(dp, e);
    return st == PARLM_OK ? parlm_gpt_set_step(m, t) : st;
}

static void end_step(parlm_dp *dp, double t0)
{
    double t1 = now();
    dp->stats.optimizer = t1 - t0;
    event_add(dp, "optimizer", PARLM_DP_LANE_COMPUTE, t0, t1, 0);
    qsort(dp->ev, (size_t)dp->nev, sizeof *dp->ev, by_start);
}

parlm_status parlm_dp_update(parlm_dp *dp, const parlm_adamw_cfg *cfg, float grad_clip,
                           float *grad_norm)
{
    if (!dp || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_dp_update: null argument");
    parlm_gpt *m = dp->m;
    parlm_status st = PARLM_OK;
    float norm = 0;
    if (dp->cfg.mode == PARLM_DP_ASYNC) {
        double t0 = now();
        st = dp_async_step(dp->async, cfg, grad_clip, &norm);
        dp_async_state(dp->async, &dp->stats.version, &dp->stats.staleness,
                       &dp->stats.comm_wait);
        dp->stats.comm_total = dp->stats.comm_wait;
        end_step(dp, t0);
        if (grad_norm)
            *grad_norm = norm;
        return st;
    }
    if (dp->cfg.mode == PARLM_DP_LOCAL && dp->size > 1) {
        dp->local_count++;
        if (dp->local_count % dp->cfg.local_steps == 0) {
            /* a synchronous step from averaged replicas; after a synchronous step they are
             * identical, and averaging them again could only add rounding */
            if (dp->drift) {
                st = average(dp, parlm_gpt_params(m));
                if (st == PARLM_OK && parlm_gpt_adam_m(m))
                    st = average(dp, parlm_gpt_adam_m(m));
                if (st == PARLM_OK && parlm_gpt_adam_v(m))
                    st = average(dp, parlm_gpt_adam_v(m));
            }
            dp->drift = 0;
            if (st == PARLM_OK)
                st = exchange_grads(dp);
        } else {
            dp->drift = 1;
            dp->stats.comm_wait = dp->stats.comm_total = 0;
        }
    } else {
        st = exchange(dp);
    }
    if (st != PARLM_OK)
        return st;
    double t0 = now();
    if (dp->cfg.mode == PARLM_DP_ZERO1 && dp->size > 1) {
        /* global norm from the blocks; one float all-reduce, identical on every rank */
        double ss = 0;
        if (dp->blk_n)
            st = parlm_sumsq(parlm_gpt_grads(m) + dp->blk_off, dp->blk_n, &ss);
        float ssf = (float)ss;
        if (st == PARLM_OK)
            st = parlm_allreduce(dp->comm, &ssf, 1, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO);
        if (st != PARLM_OK)
            return st;
        norm = sqrtf(ssf);
        if (!isfinite(norm))
            return parlm_error(PARLM_EINVAL, "data-parallel step: the gradient norm is %g", norm);
        st = zero1_update(dp, cfg, grad_clip > 0 && norm > grad_clip ? grad_clip / norm : 1.0f);
    } else {
        /* every rank holds the averaged gradients: the single-process step, fused (a norm
         * pass only when clipping; AdamW, gradient zeroing and the norm in one pass) */
        st = parlm_gpt_optimizer_step(m, cfg, grad_clip, &norm);
    }
    end_step(dp, t0);
    if (grad_norm)
        *grad_norm = norm;
    return st;
}

parlm_status parlm_dp_exchange(parlm_dp *dp)
{
    if (!dp)
        return parlm_error(PARLM_EINVAL, "parlm_dp_exchange: null argument");
    if (dp->cfg.mode == PARLM_DP_LOCAL || dp->cfg.mode == PARLM_DP_ASYNC)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_dp_exchange: %s exchanges in "
                           "parlm_dp_update", dp->cfg.mode == PARLM_DP_LOCAL ? "local SGD"
                                                                             : "async");
    return exchange(dp);
}

void parlm_dp_block(const parlm_dp *dp, int64_t *off, int64_t *n)
{
    *off = dp ? dp->blk_off : 0;
    *n = dp ? dp->blk_n : 0;
}

parlm_status parlm_dp_apply(parlm_dp *dp, const parlm_adamw_cfg *cfg, float grad_scale)
{
    if (!dp || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_dp_apply: null argument");
    if (dp->cfg.mode == PARLM_DP_LOCAL || dp->cfg.mode == PARLM_DP_ASYNC)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_dp_apply: %s steps in parlm_dp_update",
                           dp->cfg.mode == PARLM_DP_LOCAL ? "local SGD" : "async");
    double t0 = now();
    parlm_status st = dp->cfg.mode == PARLM_DP_ZERO1 && dp->size > 1
                          ? zero1_update(dp, cfg, grad_scale)
                          : parlm_gpt_optimizer_step_scale(dp->m, cfg, grad_scale);
    end_step(dp, t0);
    return st;
}

parlm_status parlm_dp_mean(parlm_dp *dp, double *x)
{
    if (!dp || !x)
        return parlm_error(PARLM_EINVAL, "parlm_dp_mean: null argument");
    /* async between drains: this rank's value (a collective would wait for the slowest) */
    if (dp->size == 1 || (dp->cfg.mode == PARLM_DP_ASYNC && !dp_async_drained(dp->async)))
        return PARLM_OK;
    float f = (float)*x;
    parlm_status st = parlm_allreduce(dp->comm, &f, 1, PARLM_REDUCE_AVG, PARLM_ALGO_AUTO);
    *x = f;
    return st;
}

int parlm_dp_apart(const parlm_dp *dp)
{
    return dp && dp->size > 1 && dp->cfg.mode == PARLM_DP_LOCAL && dp->drift;
}

parlm_status parlm_dp_gather_state(parlm_dp *dp)
{
    if (!dp)
        return parlm_error(PARLM_EINVAL, "parlm_dp_gather_state: null argument");
    if (dp->cfg.mode == PARLM_DP_ASYNC)
        return dp_async_drain(dp->async);
    if (dp->cfg.mode != PARLM_DP_ZERO1 || dp->size == 1)
        return PARLM_OK;
    parlm_status st = parlm_gpt_init_optimizer(dp->m);
    float *bufs[2][2] = {{parlm_gpt_adam_m(dp->m), dp->zm}, {parlm_gpt_adam_v(dp->m), dp->zv}};
    for (int i = 0; i < 2 && st == PARLM_OK; i++) {
        memcpy(bufs[i][0] + dp->blk_off, bufs[i][1], (size_t)dp->blk_n * 4);
        st = parlm_all_gather(dp->comm, bufs[i][0], dp->P, PARLM_ALGO_AUTO);
    }
    return st;
}

parlm_status parlm_dp_stop(parlm_dp *dp)
{
    if (!dp)
        return parlm_error(PARLM_EINVAL, "parlm_dp_stop: null argument");
    return dp->async ? dp_async_stop(dp->async) : PARLM_OK;
}

const char *parlm_dp_async_store(const parlm_dp *dp)
{
    if (!dp || !dp->async)
        return NULL;
    return dp_async_uses_rma(dp->async) ? "MPI RMA" : "shared memory";
}

parlm_dp_stats parlm_dp_get_stats(const parlm_dp *dp)
{
    parlm_dp_stats z = {0};
    return dp ? dp->stats : z;
}

int parlm_dp_get_events(const parlm_dp *dp, const parlm_dp_event **events)
{
    if (!dp || !events)
        return 0;
    *events = dp->ev;
    return dp->nev;
}
