/* lib/parallel/trainer.c — the training loop behind parlm/trainer.h.
 * The idea to know: what depends on how the model is spread over processes goes through a
 * strategy table (forward+backward of a micro-batch, optimizer step, mean of a scalar, save,
 * load); everything else (schedule, accumulation, validation, samples, checkpoint cadence,
 * resume, the checks every rank must pass) is written once above it. The strategies: one
 * process, data parallelism, and the grid (tensor x pipeline x data, parlm/pp.h).
 * The library never prints: messages go to the config's callback, and errors are returned. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../base/error.h"
#include "parlm/trainer.h"
#include "parlm/sample.h"
#include "parlm/version.h"
#ifdef PARLM_HAVE_MPI
#include "parlm/dist.h"
#include "parlm/dp.h"
#include "parlm/grid.h"
#include "parlm/pp.h"
#include "parlm/tp.h"
#endif

typedef struct strategy strategy;

struct parlm_trainer {
    parlm_trainer_config c;
    const strategy *s;
    struct parlm_comm *comm;
    int rank, size;
#ifdef PARLM_HAVE_MPI
    parlm_dp *dp;
    parlm_grid *grid;        /* tp x pp > 1: the process grid, this rank's pipeline, */
    parlm_pp *pp;            /* and the tensor-parallel collectives of its shard */
    parlm_gpt_tp_comm tpc;
#endif
    int dpn, dpr;            /* data-parallel replicas and this rank's (the loader's shard) */
    char dp_mode[16];
    parlm_ckpt_dir *dir;     /* rank 0's lock on ckpt_dir */
    parlm_gpt *m;
    parlm_train_state ts;
    parlm_loader *train, *val;
    int32_t *x, *y, *sample;
    int64_t stop;            /* the step the run ends after */
    int started, halted, failed;
    int step_bad;            /* local SGD: a failing step callback, held to the next meeting */
};

/* ---- messages ------------------------------------------------------------------------- */

static void say(parlm_trainer *t, parlm_trainer_msg kind, const char *fmt, ...) PARLM_PRINTF(3, 4);
static void say(parlm_trainer *t, parlm_trainer_msg kind, const char *fmt, ...)
{
    if (!t->c.on_message || (kind != PARLM_MSG_ERROR && t->rank != 0))
        return;
    char buf[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t->c.on_message(t->c.arg, kind, buf);
}

/* Records the error and says it: on every rank (all = 1: each rank's own problem, or one
 * every rank reports alike) or on rank 0 alone (a verdict every rank shares). The text may
 * contain parlm_last_error(), so it is formatted aside first. */
static parlm_status fail(parlm_trainer *t, parlm_status st, int all, const char *fmt, ...)
    PARLM_PRINTF(4, 5);
static parlm_status fail(parlm_trainer *t, parlm_status st, int all, const char *fmt, ...)
{
    char buf[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (t->c.on_message && (all || t->rank == 0))
        t->c.on_message(t->c.arg, PARLM_MSG_ERROR, buf);
    return parlm_error(st, "%s", buf);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- strategies ----------------------------------------------------------------------- */

struct strategy {
    const char *name;
    /* forward and backward of this process's next batch, which it reads from t->train
     * (one (B,T) batch here; a pipeline reads its micro-batches); gradients accumulate
     * scaled by scale; last = the step's last accumulation step */
    parlm_status (*forward_backward)(parlm_trainer *t, float scale, int last, float *loss);
    /* gradient exchange, clipping to clip (> 0), AdamW; *norm = the global norm */
    parlm_status (*optimizer_step)(parlm_trainer *t, const parlm_adamw_cfg *opt, float clip,
                                   float *norm);
    /* *x = mean of x over the data-parallel ranks */
    parlm_status (*mean)(parlm_trainer *t, double *x);
    /* the full model and its optimizer state in one checkpoint file of ckpt_dir (rank 0
     * writes); path gets its name on rank 0 */
    parlm_status (*save)(parlm_trainer *t, char *path, size_t len);
    /* a checkpoint of ckpt_dir (rank 0 through its handle, which notes a bad file) into
     * this process's part of the model */
    parlm_status (*load)(parlm_trainer *t, int64_t step, parlm_gpt **m, parlm_train_state *ts);
};

static parlm_status single_forward_backward(parlm_trainer *t, float scale, int last, float *loss)
{
    (void)last;
    parlm_status st = parlm_loader_next(t->train, t->x, t->y);
    if (st == PARLM_OK)
        st = parlm_gpt_forward(t->m, t->x, t->y, loss);
    return st == PARLM_OK ? parlm_gpt_backward(t->m, scale) : st;
}

static parlm_status single_optimizer_step(parlm_trainer *t, const parlm_adamw_cfg *opt,
                                          float clip, float *norm)
{
    return parlm_gpt_optimizer_step(t->m, opt, clip > 0 ? clip : 0.0f, norm);
}

static parlm_status single_mean(parlm_trainer *t, double *x)
{
    (void)t, (void)x;
    return PARLM_OK;
}

/* Rank 0 writes the whole model; with the model in shards (one replica's tensor and
 * pipeline parts), the same call assembles them over that replica's communicator. */
static parlm_status write_ckpt(parlm_trainer *t, char *path, size_t len)
{
    int keep = t->c.ckpt_keep > 0 ? t->c.ckpt_keep : 2;
    return parlm_ckpt_dir_save_shards(t->dir, &t->m, 1, NULL, &t->ts, keep, path, len);
}

static parlm_status single_save(parlm_trainer *t, char *path, size_t len)
{
    return write_ckpt(t, path, len);
}

/* A checkpoint, whatever layout wrote it, into this process's layout: the whole model for
 * one process and DP (layout NULL; a sharded strategy passes its shard, planned from
 * parlm_model_file_config). Rank 0 goes through its handle, which remembers a file that
 * failed to load. */
static parlm_status read_ckpt_as(parlm_trainer *t, int64_t step, const parlm_gpt_shard *layout,
                                 parlm_gpt **m, parlm_train_state *ts)
{
    if (t->dir)
        return parlm_ckpt_dir_load_shards(t->dir, step, layout, 1, m, ts);
    char path[4096];
    parlm_status st = parlm_ckpt_path(path, sizeof path, t->c.ckpt_dir, step);
    return st == PARLM_OK ? parlm_gpt_load_shards(path, layout, 1, m, ts) : st;
}

static parlm_status read_ckpt(parlm_trainer *t, int64_t step, parlm_gpt **m, parlm_train_state *ts)
{
    return read_ckpt_as(t, step, NULL, m, ts);
}

static const strategy single_strategy = {"single", single_forward_backward,
                                         single_optimizer_step, single_mean, single_save,
                                         read_ckpt};

#ifdef PARLM_HAVE_MPI
static parlm_status dp_forward_backward(parlm_trainer *t, float scale, int last, float *loss)
{
    parlm_status st = parlm_loader_next(t->train, t->x, t->y);
    if (st == PARLM_OK)
        st = parlm_gpt_forward(t->m, t->x, t->y, loss);
    return st == PARLM_OK ? parlm_dp_backward(t->dp, scale, last) : st;
}

static parlm_status dp_optimizer_step(parlm_trainer *t, const parlm_adamw_cfg *opt, float clip,
                                      float *norm)
{
    return parlm_dp_update(t->dp, opt, clip, norm);
}

static parlm_status dp_mean(parlm_trainer *t, double *x)
{
    return t->dp && t->size > 1 ? parlm_dp_mean(t->dp, x) : PARLM_OK;
}

/* ZeRO-1 first gathers the optimizer blocks (every rank); rank 0 writes */
static parlm_status dp_save(parlm_trainer *t, char *path, size_t len)
{
    parlm_status st = t->dp ? parlm_dp_gather_state(t->dp) : PARLM_OK;
    if (st != PARLM_OK)
        return st;
    if (!strcmp(t->dp_mode, "async")) /* the updates every rank pushed (a stop: fewer) */
        t->ts.step = parlm_gpt_get_step(t->m);
    return t->rank == 0 ? write_ckpt(t, path, len) : PARLM_OK;
}

static const strategy dp_strategy = {"dp", dp_forward_backward, dp_optimizer_step, dp_mean,
                                     dp_save, read_ckpt};

/* The grid (tp x pp > 1, Megatron-LM's batch semantics): an accumulation step is one batch
 * of -b rows per data-parallel replica, which every rank of the replica reads alike (the
 * loader's shard is the replica's, not the rank's) and the pipeline runs as M micro-batches
 * of -b/M rows each (rows i*b/M .. of the batch are micro-batch i). So at the same -b,
 * --grad-accum and number of replicas, any (tp, pp) trains on the tokens of the same
 * global batch as data parallelism alone. parlm_pp_run averages the shard's gradients over
 * the dp group (--dp sync, overlap or zero1) and returns the loss averaged over micro-batches
 * and replicas. */
static parlm_status grid_forward_backward(parlm_trainer *t, float scale, int last, float *loss)
{
    (void)last;
    if (scale != 1.0f) /* parlm_pp_run zeroes the gradients: one batch per step */
        return parlm_error(PARLM_EUNSUPPORTED, "--grad-accum > 1 with --tp/--pp: use "
                           "--micro-batches (the pipeline accumulates its micro-batches)");
    parlm_status st = parlm_loader_next(t->train, t->x, t->y);
    return st == PARLM_OK ? parlm_pp_run(t->pp, t->x, t->y, loss) : st;
}

static parlm_status grid_optimizer_step(parlm_trainer *t, const parlm_adamw_cfg *opt, float clip,
                                        float *norm)
{
    return parlm_pp_update(t->pp, opt, clip, norm);
}

/* the loss and the flags the loop averages are already the same on every rank of a
 * replica; the mean over the whole grid keeps the replicas in step too */
static parlm_status grid_mean(parlm_trainer *t, double *x)
{
    if (!t->grid)
        return PARLM_OK;
    /* a float pair carries ~48 bits: the logged loss keeps more than float's 24 */
    float v[2] = {(float)*x, 0};
    v[1] = (float)(*x - v[0]);
    parlm_status st = parlm_allreduce(t->comm, v, 2, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO);
    if (st == PARLM_OK)
        *x = ((double)v[0] + v[1]) / t->size;
    return st;
}

/* replica 0's shards assemble the whole file over the grid's world; the other replicas
 * only take part (their shards are copies). ZeRO-1 first gathers each shard's AdamW state
 * from its replicas. */
static parlm_status grid_save(parlm_trainer *t, char *path, size_t len)
{
    int keep = t->c.ckpt_keep > 0 ? t->c.ckpt_keep : 2;
    int mine = parlm_grid_dp_rank(t->grid) == 0;
    parlm_status st = parlm_pp_gather_state(t->pp);
    double bad = st != PARLM_OK; /* the save is collective: all ranks go on, or none */
    if (grid_mean(t, &bad) != PARLM_OK || bad > 0)
        return st != PARLM_OK ? st : parlm_error(PARLM_EIO, "another rank failed to gather "
                                                 "its optimizer state");
    return parlm_ckpt_dir_save_shards(t->dir, &t->m, mine, t->comm, &t->ts, keep, path, len);
}

static parlm_status grid_load(parlm_trainer *t, int64_t step, parlm_gpt **m, parlm_train_state *ts)
{
    parlm_gpt_shard sh = parlm_grid_shard(t->grid);
    return read_ckpt_as(t, step, &sh, m, ts);
}

static const strategy grid_strategy = {"grid", grid_forward_backward, grid_optimizer_step,
                                       grid_mean, grid_save, grid_load};
#endif

/* ---- configuration -------------------------------------------------------------------- */

void parlm_trainer_config_default(parlm_trainer_config *c)
{
    if (!c)
        return;
    *c = (parlm_trainer_config){.model = "small", .B = 8, .T = 128, .grad_accum = 1,
                                .steps = 1500, .warmup = 20, .lr = 1e-3, .lr_min_frac = 0.1,
                                .grad_clip = 1.0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                                .seed = 1337, .val_every = 50, .val_steps = 10,
                                .sample_every = 100, .sample_len = 96, .sample_start = '\n',
                                .sample_stop = -1, .ckpt_every = 100, .ckpt_keep = 2,
                                .dp = "auto", .local_steps = 4, .bucket_mb = 25, .slow_rank = -1, .tp = 1,
                                .pp = 1, .schedule = "1f1b"};
}

double parlm_trainer_lr(const parlm_trainer_config *c, int64_t step)
{
    if (step < c->warmup)
        return c->lr * (double)(step + 1) / c->warmup;
    double span = c->steps - c->warmup, frac = span > 0 ? (step - c->warmup) / span : 1.0;
    if (frac > 1)
        frac = 1;
    double lo = c->lr * c->lr_min_frac;
    return lo + 0.5 * (c->lr - lo) * (1.0 + cos(M_PI * frac));
}

/* What no layout can run, found before anything is allocated. */
static const char *config_problem(const parlm_trainer_config *c)
{
    static const char *const dps[] = {"auto", "sync", "overlap", "zero1", "local", "async"};
    int dp_ok = 0;
    for (size_t i = 0; i < sizeof dps / sizeof dps[0] && c->dp; i++)
        dp_ok |= !strcmp(c->dp, dps[i]);
    const char *p = !c->model && !c->init && !c->resume ? "--model or --init is needed"
                  : c->B < 1 || c->T < 1 ? "-b and -t must be >= 1"
                  : (int64_t)c->B * c->T > 1 << 28 ? "-b x -t must be at most 2^28 tokens"
                  : c->grad_accum < 1 ? "--grad-accum must be >= 1"
                  : c->steps < 0 || c->warmup < 0 || c->stop_at < 0 ? "--steps, --warmup and "
                    "--stop-at must be >= 0"
                  : !(c->lr >= 0) || !(c->lr_min_frac >= 0 && c->lr_min_frac <= 1)
                    ? "--lr must be >= 0 and --lr-min-frac in [0, 1]"
                  : !(c->weight_decay >= 0) || !(c->grad_clip >= 0)
                    ? "--weight-decay and --grad-clip must be >= 0"
                  : !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1)
                    ? "--beta1 and --beta2 must be below 1"
                  : !(c->eps > 0) ? "--eps must be > 0"
                  : c->val_every < 0 || (c->val_every && c->val_steps < 1)
                    ? "--val-steps must be >= 1"
                  : c->sample_every < 0 || c->sample_len < 0 ? "--sample-every and --sample-len "
                    "must be >= 0"
                  : c->ckpt_every < 0 || c->ckpt_keep < 0 ? "--ckpt-every must be >= 0"
                  : c->resume && !c->ckpt_dir ? "--resume needs --ckpt-dir"
                  : c->overwrite && !c->ckpt_dir ? "--overwrite needs --ckpt-dir"
                  : c->overwrite && c->resume ? "--resume and --overwrite exclude each other"
                  : !dp_ok ? "--dp must be one of auto, sync, overlap, zero1, local, async"
                  : c->staleness < 0 || c->staleness > 1024 ? "--staleness must be in 0..1024"
                  : c->slow_rank < -2 || !(c->slow_ms >= 0 && c->slow_ms <= 1e6)
                    ? "--slow-rank must be a rank or rotate, --slow-ms in 0..1e6"
                  : c->local_steps < 1 || c->bucket_mb < 1 ? "--local-steps and --bucket-mb "
                    "must be >= 1"
                  : c->tp < 0 || c->pp < 0 || c->micro_batches < 0 ? "--tp and --pp must be "
                    ">= 1, --micro-batches >= 0 (0: pp)"
                  : c->schedule && strcmp(c->schedule, "gpipe") && strcmp(c->schedule, "1f1b")
                    ? "--schedule must be gpipe or 1f1b"
                  : NULL;
    return p;
}

/* The options that change the computation, hashed: ranks must agree on them. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return s ? hash_bytes(h, s, strlen(s) + 1) : hash_bytes(h, "", 1);
}

static uint64_t config_hash(const parlm_trainer_config *c)
{
    uint64_t h = hash_str(1469598103934665603ULL, c->model);
    const int ints[] = {c->vocab, c->bf16, c->B, c->T, c->grad_accum, c->steps, c->stop_at,
                        c->warmup, c->val_every, c->val_steps, c->ckpt_every, c->resume,
                        c->local_steps, c->bucket_mb, c->bf16_wire, c->tp, c->pp,
                        c->micro_batches, c->staleness, c->slow_rank};
    const double dbl[] = {c->lr, c->lr_min_frac, c->weight_decay, c->grad_clip, c->beta1,
                          c->beta2, c->eps, c->slow_ms};
    h = hash_bytes(h, ints, sizeof ints);
    h = hash_bytes(h, dbl, sizeof dbl);
    h = hash_bytes(h, &c->seed, sizeof c->seed);
    h = hash_str(h, c->dp);
    return hash_str(h, c->schedule);
}

/* Word by word: the parameters of GPT-2 124M (500 MB) hash in a fraction of a second. */
static uint64_t hash_floats(const float *p, int64_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        h = (h ^ u) * 0x100000001B3ULL;
        h ^= h >> 29;
    }
    return h;
}

/* ---- what every rank must agree on ---------------------------------------------------- */

/* rc of rank 0 (which alone holds the checkpoint directory) becomes everyone's */
static parlm_status share_status(parlm_trainer *t, parlm_status st)
{
#ifdef PARLM_HAVE_MPI
    if (t->comm && t->size > 1) {
        int v = (int)st;
        if (parlm_comm_bcast(t->comm, &v, sizeof v, 0) != PARLM_OK)
            return fail(t, PARLM_ESYSTEM, 1, "MPI: %s", parlm_last_error());
        if (v != PARLM_OK && st == PARLM_OK)
            return parlm_error((parlm_status)v, "rank 0 failed (it says why)");
        return (parlm_status)v;
    }
#else
    (void)t;
#endif
    return st;
}

/* Every rank passed the same value, or all stop with a message naming field and ranks. */
static parlm_status agree(parlm_trainer *t, const char *field, uint64_t value)
{
#ifdef PARLM_HAVE_MPI
    if (t->comm && t->size > 1 && parlm_comm_check_agree(t->comm, field, value) != PARLM_OK)
        return fail(t, PARLM_EINVAL, 0, "ranks disagree: %s", parlm_last_error());
#else
    (void)t, (void)field, (void)value;
#endif
    return PARLM_OK;
}

/* A checksum of every shard a loader reads, compared across ranks: a same-size shard with
 * other contents on one rank is caught here, not after a week of diverging training.
 * The shard count is agreed first, so the per-shard pass is the same on every rank. */
static parlm_status agree_data(parlm_trainer *t, const parlm_loader *l, const char *what)
{
#ifdef PARLM_HAVE_MPI
    if (!t->comm || t->size <= 1 || !l)
        return PARLM_OK;
    char field[4200];
    size_t n = parlm_loader_num_shards(l);
    snprintf(field, sizeof field, "number of %s shards", what);
    parlm_status st = agree(t, field, (uint64_t)n);
    if (st != PARLM_OK)
        return st;
    uint64_t *sums = calloc(n ? n : 1, sizeof *sums), all = 0;
    int failed = !sums;
    for (size_t i = 0; i < n && !failed; i++) {
        if (parlm_shard_checksum(parlm_loader_shard_path(l, i), &sums[i]) != PARLM_OK) {
            say(t, PARLM_MSG_ERROR, "rank %d: %s", t->rank, parlm_last_error());
            failed = 1;
        }
        all = (all ^ sums[i]) * 0x100000001B3ULL + i;
    }
    snprintf(field, sizeof field, "%s data (readable)", what);
    if ((st = agree(t, field, (uint64_t)failed)) != PARLM_OK || failed) {
        free(sums);
        return st != PARLM_OK ? st : parlm_error(PARLM_EIO, "%s data: unreadable", what);
    }
    snprintf(field, sizeof field, "%s data checksum", what);
    if (parlm_comm_check_agree(t->comm, field, all) != PARLM_OK) {
        for (size_t i = 0; i < n; i++) {
            snprintf(field, sizeof field, "%s data: shard %zu (%s on rank 0) checksum", what, i,
                     parlm_loader_shard_path(l, i));
            if ((st = agree(t, field, sums[i])) != PARLM_OK)
                break;
        }
        free(sums);
        return st != PARLM_OK ? st : parlm_error(PARLM_EINVAL, "%s data differs", what);
    }
    free(sums);
#else
    (void)t, (void)l, (void)what;
#endif
    return PARLM_OK;
}

/* ---- create ----------------------------------------------------------------------------- */

/* Rank 0, before any compute: create and lock the checkpoint directory (a second trainer
 * stops here), and refuse to mix a new run with an earlier one's checkpoints unless told. */
static parlm_status claim_ckpt_dir(parlm_trainer *t)
{
    const parlm_trainer_config *c = &t->c;
    if (parlm_ckpt_dir_open(&t->dir, c->ckpt_dir) != PARLM_OK)
        return fail(t, PARLM_EIO, 1, "--ckpt-dir: %s", parlm_last_error());
    parlm_ckpt_dir_info info = parlm_ckpt_dir_get_info(t->dir);
    if (info.no_lock[0])
        say(t, PARLM_MSG_WARN, "warning: %s: nothing stops a second run from writing into %s",
            info.no_lock, c->ckpt_dir);
    if (info.stale_holder[0])
        say(t, PARLM_MSG_INFO, "ckpt: %s: took over the lock of %s, which ended without "
            "releasing it", c->ckpt_dir, info.stale_holder);
    if (info.removed_tmp)
        say(t, PARLM_MSG_INFO, "ckpt: %s: removed %d unfinished temp file(s) of an interrupted "
            "write", c->ckpt_dir, info.removed_tmp);
    int64_t step;
    int n;
    if (parlm_ckpt_list(c->ckpt_dir, &step, 1, &n) != PARLM_OK)
        return fail(t, PARLM_EIO, 1, "--ckpt-dir: %s", parlm_last_error());
    if (n && !c->resume && !c->overwrite)
        return fail(t, PARLM_EINVAL, 1, "%s already holds checkpoints of another run: pass "
                    "--resume to continue it, --overwrite to replace it, or choose another "
                    "--ckpt-dir", c->ckpt_dir);
    if (n && c->overwrite) {
        if (parlm_ckpt_dir_remove_all(t->dir, &n) != PARLM_OK)
            return fail(t, PARLM_EIO, 1, "--overwrite: %s", parlm_last_error());
        say(t, PARLM_MSG_INFO, "ckpt: --overwrite: removed %d checkpoint(s) of an earlier run "
            "from %s", n, c->ckpt_dir);
    }
    return PARLM_OK;
}

parlm_status parlm_trainer_open(parlm_trainer **out, const parlm_trainer_config *c)
{
    if (!out || !c)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_open: null argument");
    *out = NULL;
    parlm_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return parlm_error(PARLM_ENOMEM, "parlm_trainer_open: out of memory");
    t->c = *c;
    t->size = t->dpn = 1;
    t->s = &single_strategy;
    parlm_status st = PARLM_OK;
    if (c->comm) {
#ifdef PARLM_HAVE_MPI
        t->comm = c->comm;
        t->rank = parlm_comm_rank(c->comm), t->size = parlm_comm_size(c->comm);
        t->dpr = t->rank, t->dpn = t->size;
        t->s = &dp_strategy;
#else
        st = fail(t, PARLM_EUNSUPPORTED, 1, "a communicator was given to a build without MPI");
#endif
    }
    const char *bad = st == PARLM_OK ? config_problem(c) : NULL;
    int tp = c->tp > 1 ? c->tp : 1, pp = c->pp > 1 ? c->pp : 1;
    if (bad)
        st = fail(t, PARLM_EINVAL, 0, "%s", bad);
    else if (st == PARLM_OK && (int64_t)tp * pp > 1) {
#ifdef PARLM_HAVE_MPI
        /* the grid averages over its dp group in sync, overlap or ZeRO-1: local SGD, bf16
         * matmuls and accumulation over batches are not composed with it */
        if (!t->comm)
            st = fail(t, PARLM_EUNSUPPORTED, 0, "--tp %d --pp %d: tensor and pipeline "
                      "parallelism need a multiple of %d processes (run under mpirun)", tp,
                      pp, tp * pp);
        else if (!strcmp(c->dp, "local") || !strcmp(c->dp, "async"))
            st = fail(t, PARLM_EUNSUPPORTED, 0, "--dp %s: with --tp/--pp the replicas "
                      "average gradients every step (--dp auto, sync, overlap or zero1); "
                      "%s is data parallelism alone", c->dp,
                      !strcmp(c->dp, "local") ? "local SGD" : "async");
        else if (c->bf16 || c->bf16_wire)
            st = fail(t, PARLM_EUNSUPPORTED, 0, "--bf16 and --bf16-wire are not available "
                      "with --tp/--pp");
        else if (c->grad_accum > 1)
            st = fail(t, PARLM_EUNSUPPORTED, 0, "--grad-accum %d with --tp/--pp: use "
                      "--micro-batches (the pipeline accumulates its micro-batches)",
                      c->grad_accum);
        else if (c->B % (c->micro_batches > 0 ? c->micro_batches : pp))
            st = fail(t, PARLM_EINVAL, 0, "-b %d must be a multiple of --micro-batches %d "
                      "(each micro-batch is -b / M rows)", c->B,
                      c->micro_batches > 0 ? c->micro_batches : pp);
        else
            t->s = &grid_strategy;
#else
        st = fail(t, PARLM_EUNSUPPORTED, 0, "--tp %d --pp %d: tensor and pipeline "
                  "parallelism need MPI, which this build has not", tp, pp);
#endif
    }
    /* a rank alone with a bad configuration stops every rank (it says why) */
    if (t->comm && t->size > 1) {
        parlm_status mine = st;
        st = agree(t, "configuration is valid", mine == PARLM_OK);
        st = mine != PARLM_OK ? mine : st;
    }
    if (st == PARLM_OK) { /* the same on every rank now */
        if (c->ckpt_dir && t->rank == 0)
            st = claim_ckpt_dir(t);
        st = share_status(t, st); /* what rank 0 alone did: everyone learns how it went */
    }
    if (st == PARLM_OK)
        st = agree(t, "library version", hash_bytes(1469598103934665603ULL, PARLM_VERSION,
                                                    strlen(PARLM_VERSION)));
    if (st != PARLM_OK) {
        parlm_ckpt_dir_close(t->dir);
        free(t);
        return st;
    }
    t->stop = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    *out = t;
    return PARLM_OK;
}

/* Asked by forward and backward between layers: a step of minutes still stops at once. */
static int cancel_requested(void *arg)
{
    const volatile sig_atomic_t *flag = arg;
    return *flag != 0;
}

/* async: the ranks see a cancel each at its own step; a rank that stops tells the others,
 * so none waits for its pushes (they stop too, and the end drains what all pushed) */
static void stop_async(parlm_trainer *t)
{
#ifdef PARLM_HAVE_MPI
    if (t->halted && t->dp)
        (void)parlm_dp_stop(t->dp);
#else
    (void)t;
#endif
}

/* local SGD between its meetings: the ranks run apart, and a per-step mean (the logged
 * loss, a cancel, a failing step callback) would make them wait for each other at every
 * step; those wait for the step that averages the replicas, at most H - 1 steps later */
static int apart(const parlm_trainer *t)
{
#ifdef PARLM_HAVE_MPI
    return t->dp && parlm_dp_apart(t->dp);
#else
    (void)t;
    return 0;
#endif
}

static int cancel_seen(parlm_trainer *t)
{
    if (apart(t))
        return 0;
    double v = t->c.cancel && *t->c.cancel ? 1 : 0;
    t->s->mean(t, &v);
    return v > 0;
}

/* --resume: the newest checkpoint that loads (a corrupt one falls back to the one before,
 * named and kept), checked against this run's model and batch geometry. *m stays NULL
 * when the directory holds none. */
static parlm_status resume(parlm_trainer *t, parlm_gpt **m)
{
    const parlm_trainer_config *c = &t->c;
    int64_t *steps = malloc(4096 * sizeof *steps);
    int n = 0, tried = 0;
    if (!steps)
        return fail(t, PARLM_ENOMEM, 1, "--resume: out of memory");
    if (parlm_ckpt_list(c->ckpt_dir, steps, 4096, &n) != PARLM_OK) {
        free(steps);
        return fail(t, PARLM_EIO, 1, "--resume: %s", parlm_last_error());
    }
    for (int i = 0; i < n && !*m; i++, tried++) { /* newest first */
        char path[4096];
        parlm_ckpt_path(path, sizeof path, c->ckpt_dir, steps[i]);
        if (t->s->load(t, steps[i], m, &t->ts) == PARLM_OK)
            say(t, PARLM_MSG_INFO, "resume: %s (step %lld)", path, (long long)t->ts.step);
        else
            say(t, PARLM_MSG_WARN, "resume: cannot use %s (kept): %s", path, parlm_last_error());
    }
    free(steps);
    if (!*m && n)
        return fail(t, PARLM_EFORMAT, 0, "--resume: none of the %d checkpoint(s) in %s loads "
                    "(each is named above with the reason); they are kept. Move them away, or "
                    "pass --overwrite instead of --resume to start a new run there", tried,
                    c->ckpt_dir);
    if (!*m) {
        say(t, PARLM_MSG_INFO, "resume: no checkpoint in %s, starting fresh", c->ckpt_dir);
        return PARLM_OK;
    }
    parlm_gpt_config want = {.max_seq = c->T, .vocab = c->vocab};
    parlm_gpt_config got = parlm_gpt_get_config(*m);
    parlm_train_state *ts = &t->ts;
    if (c->model && parlm_gpt_preset(c->model, &want) != PARLM_OK)
        return fail(t, PARLM_EINVAL, 1, "--model: %s", parlm_last_error());
    if (c->model && !c->init && (want.n_layer != got.n_layer || want.n_head != got.n_head ||
                                 want.n_embd != got.n_embd || want.arch != got.arch))
        /* with --init the run's shape came from that file, not from --model */
        return fail(t, PARLM_EINVAL, 0, "the checkpoint holds a model of L%d NH%d C%d, but "
                    "--model %s is L%d NH%d C%d: resume with the run's --model", got.n_layer,
                    got.n_head, got.n_embd, c->model, want.n_layer, want.n_head, want.n_embd);
    if (ts->B != c->B || ts->T != c->T || ts->grad_accum != c->grad_accum ||
        ts->world != t->dpn)
        return fail(t, PARLM_EINVAL, 1, "the checkpoint was trained with -b %d -t %d "
                    "--grad-accum %d on %d data-parallel replica(s); resume with the same (got "
                    "-b %d -t %d --grad-accum %d on %d; --tp/--pp may differ)", ts->B, ts->T, ts->grad_accum, ts->world, c->B,
                    c->T, c->grad_accum, t->dpn);
    return PARLM_OK;
}

#ifdef PARLM_HAVE_MPI
#define GRID(t) ((t)->s == &grid_strategy)

/* The shape of the model the grid is planned for: the newest checkpoint's when resuming
 * (any layout wrote it), the --init file's, or the preset's. */
static parlm_status grid_model_config(parlm_trainer *t, parlm_gpt_config *cfg)
{
    const parlm_trainer_config *c = &t->c;
    *cfg = (parlm_gpt_config){.max_seq = c->T, .vocab = c->vocab ? c->vocab : 50257};
    if (c->resume) {
        int64_t step;
        int n = 0;
        char path[4096];
        if (parlm_ckpt_list(c->ckpt_dir, &step, 1, &n) != PARLM_OK)
            return fail(t, PARLM_EIO, 1, "--resume: %s", parlm_last_error());
        if (n) {
            parlm_ckpt_path(path, sizeof path, c->ckpt_dir, step);
            if (parlm_model_file_config(path, cfg) != PARLM_OK)
                return fail(t, PARLM_EFORMAT, 0, "--resume: %s: %s", path, parlm_last_error());
            return PARLM_OK;
        }
    }
    if (c->init) {
        if (parlm_model_file_config(c->init, cfg) != PARLM_OK)
            return fail(t, PARLM_EIO, 1, "--init %s: %s", c->init, parlm_last_error());
        return PARLM_OK;
    }
    if (parlm_gpt_preset(c->model ? c->model : "small", cfg) != PARLM_OK)
        return fail(t, PARLM_EINVAL, 0, "--model: %s", parlm_last_error());
    return PARLM_OK;
}

/* The grid over the trainer's ranks, checked before any model is allocated; its plan is
 * said on rank 0; the loader reads by replica. */
static parlm_status grid_setup(parlm_trainer *t)
{
    const parlm_trainer_config *c = &t->c;
    parlm_gpt_config cfg;
    parlm_status st = grid_model_config(t, &cfg);
    if (st != PARLM_OK)
        return st;
    parlm_grid_config gc = {c->tp > 1 ? c->tp : 1, c->pp > 1 ? c->pp : 1, 0, PARLM_PP_1F1B,
                            c->T, 0};
    gc.micro_batches = c->micro_batches > 0 ? c->micro_batches : gc.pp;
    if (parlm_pp_schedule_parse(c->schedule ? c->schedule : "1f1b", &gc.schedule) != PARLM_OK ||
        parlm_grid_create(&t->grid, t->comm, &cfg, &gc) != PARLM_OK)
        return fail(t, PARLM_EINVAL, 0, "%s", parlm_last_error());
    t->dpn = parlm_grid_dp(t->grid), t->dpr = parlm_grid_dp_rank(t->grid);
    say(t, PARLM_MSG_INFO, "grid: dp %d x tp %d x pp %d, %d micro-batch(es) of %d row(s), %s\n%s",
        t->dpn, gc.tp, gc.pp, gc.micro_batches, c->B / gc.micro_batches,
        parlm_pp_schedule_name(gc.schedule), parlm_grid_plan(t->grid));
    return PARLM_OK;
}

static parlm_status grid_create_shard(parlm_trainer *t, const parlm_gpt_config *cfg,
                                      parlm_gpt **m)
{
    parlm_gpt_shard sh = parlm_grid_shard(t->grid);
    return parlm_gpt_create_shard(m, cfg, &sh, t->c.seed);
}

static parlm_status grid_load_file(parlm_trainer *t, const char *path, parlm_gpt **m,
                                   parlm_train_state *ts)
{
    parlm_gpt_shard sh = parlm_grid_shard(t->grid);
    return parlm_gpt_load_shards(path, &sh, 1, m, ts);
}
#else
#define GRID(t) 0
#define grid_setup(t) PARLM_OK
#define grid_create_shard(t, cfg, m) PARLM_EUNSUPPORTED
#define grid_load_file(t, path, m, ts) PARLM_EUNSUPPORTED
#endif

/* The model: a checkpoint to resume, an initial file, or a fresh preset. */
static parlm_status make_model(parlm_trainer *t)
{
    const parlm_trainer_config *c = &t->c;
    parlm_gpt *m = NULL;
    parlm_status st = GRID(t) ? grid_setup(t) : PARLM_OK;
    if (st != PARLM_OK)
        return st;
    st = c->resume ? resume(t, &m) : PARLM_OK;
    if (st != PARLM_OK) {
        parlm_gpt_free(m);
        return st;
    }
    if (!m && c->init) {
        if ((GRID(t) ? grid_load_file(t, c->init, &m, &t->ts)
                     : parlm_gpt_load(&m, c->init, &t->ts)) != PARLM_OK)
            return fail(t, PARLM_EIO, 1, "--init %s: cannot load it: %s", c->init,
                        parlm_last_error());
        t->ts = (parlm_train_state){0}; /* a new run from these weights */
        parlm_gpt_set_step(m, 0);
    }
    if (!m) {
        parlm_gpt_config cfg = {.max_seq = c->T, .vocab = c->vocab ? c->vocab : 50257};
        if (parlm_gpt_preset(c->model ? c->model : "small", &cfg) != PARLM_OK ||
            (GRID(t) ? grid_create_shard(t, &cfg, &m) : parlm_gpt_create(&m, &cfg, c->seed)) !=
                PARLM_OK)
            return fail(t, PARLM_EINVAL, 1, "%s", parlm_last_error());
    }
    t->m = m;
#ifdef PARLM_HAVE_MPI
    if (GRID(t) && parlm_grid_tp(t->grid) > 1 &&
        (parlm_tp_comm_init(&t->tpc, parlm_grid_comm(t->grid, PARLM_GRID_TP)) != PARLM_OK ||
         parlm_gpt_set_tp_comm(m, &t->tpc) != PARLM_OK))
        return fail(t, PARLM_EINVAL, 1, "rank %d: %s", t->rank, parlm_last_error());
#endif
    return PARLM_OK;
}

parlm_status parlm_trainer_start(parlm_trainer *t, const char *data, const char *val_data)
{
    if (!t || t->started)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_start: %s",
                           t ? "called twice" : "null trainer");
    t->started = 1;
    const parlm_trainer_config *c = &t->c;
    data = data ? data : c->data;
    val_data = val_data ? val_data : c->val_data;
    if (!data)
        return fail(t, PARLM_EINVAL, 1, "--data: no training data given");
    parlm_status st = make_model(t);
    if (st != PARLM_OK)
        return st;
    parlm_gpt_config cfg = parlm_gpt_get_config(t->m);
    int vocab = c->vocab ? c->vocab : cfg.vocab;
    if (cfg.vocab < vocab || c->T > cfg.max_seq)
        return fail(t, PARLM_EFORMAT, 1, "the model (vocab %d, context %d) cannot take this "
                    "data (vocab %d) at -t %d", cfg.vocab, cfg.max_seq, vocab, c->T);
    if (GRID(t) && t->c.sample_every) {
        say(t, PARLM_MSG_INFO, "samples: off (not generated with --tp/--pp)");
        t->c.sample_every = 0;
    }
    if (cfg.vocab > vocab && t->c.sample_every) {
        say(t, PARLM_MSG_INFO, "samples: off (the model's %d tokens need its tokenizer: "
            "--encoder/--vocab)", cfg.vocab);
        t->c.sample_every = 0;
    }
    if (!t->ts.B)
        t->ts = (parlm_train_state){.B = c->B, .T = c->T, .grad_accum = c->grad_accum,
                                    .world = t->dpn, .seed = c->seed, .rng = c->seed ^ 0x5eed};
    if (parlm_loader_open(&t->train, data, c->B, c->T, t->dpr, t->dpn, cfg.vocab) != PARLM_OK ||
        (val_data && parlm_loader_open(&t->val, val_data, c->B, c->T, t->dpr, t->dpn,
                                       cfg.vocab) != PARLM_OK) ||
        parlm_loader_seek(t->train, t->ts.train) != PARLM_OK ||
        (!GRID(t) && parlm_gpt_setup(t->m, c->B, c->T, 1) != PARLM_OK) ||
        (c->bf16 && parlm_gpt_set_bf16(t->m, 1) != PARLM_OK))
        return fail(t, PARLM_EIO, 1, "rank %d: %s", t->rank, parlm_last_error());
    size_t n = (size_t)c->B * c->T;
    t->x = malloc(n * sizeof *t->x);
    t->y = malloc(n * sizeof *t->y);
    t->sample = malloc(((size_t)c->sample_len + 1) * sizeof *t->sample);
    if (!t->x || !t->y || !t->sample)
        return fail(t, PARLM_ENOMEM, 1, "rank %d: out of memory", t->rank);

    /* all ranks must train the same thing on the same data with the same library: the
     * computation's settings, the model, and the bytes of the data */
    if ((st = agree(t, "trainer config", config_hash(c))) != PARLM_OK ||
        (st = agree(t, "model config", hash_bytes(1469598103934665603ULL, &cfg, sizeof cfg))) !=
            PARLM_OK ||
        (st = agree(t, "model parameters (--init / checkpoint contents)",
                    t->size > 1 && !GRID(t) ? hash_floats(parlm_gpt_params(t->m), parlm_gpt_num_params(t->m))
                                : 0)) != PARLM_OK ||
        (st = agree(t, "resumed step", (uint64_t)t->ts.step)) != PARLM_OK ||
        (st = agree(t, "training tokens", parlm_loader_num_tokens(t->train))) != PARLM_OK ||
        (st = agree_data(t, t->train, "training")) != PARLM_OK ||
        (st = agree(t, "validation data (given)", t->val != NULL)) != PARLM_OK ||
        (st = agree_data(t, t->val, "validation")) != PARLM_OK)
        return st;
#ifdef PARLM_HAVE_MPI
    if (t->comm) {
        /* auto: on one node the ranks' "communication" is copying by the cores themselves,
         * so overlapping it with backward only interleaves it (measured: a slower step than
         * sync, bench/RESULTS.md); across nodes the network moves the bytes while backward
         * runs. The grid averages over each shard's dp group: its nodes decide. */
        parlm_comm *dpcomm = GRID(t) ? parlm_grid_comm(t->grid, PARLM_GRID_DP) : t->comm;
        const char *mode = c->dp;
        if (!strcmp(mode, "auto"))
            mode = parlm_comm_nodes(dpcomm) > 1 ? "overlap" : "sync";
        snprintf(t->dp_mode, sizeof t->dp_mode, "%s", mode);
        parlm_dp_config dpc = {PARLM_DP_OVERLAP, (int64_t)c->bucket_mb << 20,
                               c->bf16_wire ? PARLM_WIRE_BF16 : 0, c->local_steps,
                               c->staleness};
        int M = c->micro_batches > 0 ? c->micro_batches : GRID(t) ? parlm_grid_pp(t->grid) : 1;
        if (parlm_dp_mode_parse(mode, &dpc.mode) != PARLM_OK)
            return fail(t, PARLM_EINVAL, 1, "%s", parlm_last_error());
        if (GRID(t) ? parlm_pp_create_dp(&t->pp, t->m, t->grid, c->B / M, c->T, &dpc) != PARLM_OK
                    : parlm_dp_create(&t->dp, t->m, t->comm, &dpc) != PARLM_OK)
            return fail(t, PARLM_EINVAL, 1, "rank %d: %s", t->rank, parlm_last_error());
        if (t->dp && parlm_dp_async_store(t->dp))
            say(t, PARLM_MSG_INFO, "async: staleness %d, parameters and gradients in %s",
                c->staleness, parlm_dp_async_store(t->dp));
    }
#endif
    /* alone, a signal can stop a step midway; ranks stop together at a step's end */
    if (t->size == 1 && c->cancel)
        parlm_gpt_set_cancel(t->m, cancel_requested, (void *)(uintptr_t)c->cancel);
    t->halted = cancel_seen(t);
    stop_async(t);
    return PARLM_OK;
}

parlm_status parlm_trainer_create(parlm_trainer **out, const parlm_trainer_config *c)
{
    parlm_status st = parlm_trainer_open(out, c);
    if (st != PARLM_OK)
        return st;
    if ((st = parlm_trainer_start(*out, NULL, NULL)) != PARLM_OK) {
        parlm_trainer_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---- the step --------------------------------------------------------------------------- */

static parlm_status val_loss(parlm_trainer *t, float *out)
{
    parlm_loader_pos start = parlm_loader_tell(t->val);
    double sum = 0;
    parlm_status st = PARLM_OK;
    for (int i = 0; i < t->c.val_steps && st == PARLM_OK; i++) {
        float l;
        if ((st = parlm_loader_next(t->val, t->x, t->y)) != PARLM_OK)
            break;
#ifdef PARLM_HAVE_MPI
        if (GRID(t)) /* a shard has no forward alone: the pipeline's gradients are dropped */
            st = parlm_pp_run(t->pp, t->x, t->y, &l);
        else
#endif
            st = parlm_gpt_forward(t->m, t->x, t->y, &l);
        if (st == PARLM_OK)
            sum += l;
    }
    parlm_loader_seek(t->val, start); /* the same batches every time: comparable numbers */
    *out = (float)(sum / t->c.val_steps);
    return st;
}

/* A sample from the model with the trainer's RNG (checkpointed, so a resumed run draws the
 * same samples); top-k 40 at temperature 1. */
static int sample(parlm_trainer *t)
{
    parlm_gpt_config cfg = parlm_gpt_get_config(t->m);
    float *logits = malloc((size_t)cfg.vocab_pad * sizeof *logits);
    int32_t tok = t->c.sample_start;
    int n = 0;
    for (int pos = 0; logits && pos < t->c.sample_len && pos < cfg.max_seq; pos++) {
        if (parlm_gpt_infer(t->m, &tok, 1, pos, logits) != PARLM_OK ||
            parlm_sample(logits, cfg.vocab, 1.0f, 40, 1.0f, &t->ts.rng, &tok) != PARLM_OK)
            break;
        if (tok == t->c.sample_stop)
            break;
        t->sample[n++] = tok;
    }
    free(logits);
    return n;
}

static parlm_status save(parlm_trainer *t)
{
    char path[4096] = "";
    parlm_status st = t->s->save(t, path, sizeof path);
    if (st == PARLM_OK && t->rank == 0)
        say(t, PARLM_MSG_INFO, "checkpoint: %s", path);
    else if (st != PARLM_OK && t->rank == 0)
        fail(t, st, 1, "checkpoint of step %lld failed (earlier checkpoints are kept): %s",
             (long long)t->ts.step, parlm_last_error());
    else if (st != PARLM_OK)
        fail(t, st, 1, "rank %d: checkpoint: %s", t->rank, parlm_last_error());
    double bad = st != PARLM_OK; /* all ranks learn whether it worked: none carries on alone */
    t->s->mean(t, &bad);
    if (bad > 0) {
        t->failed = 1;
        return st != PARLM_OK ? st : parlm_error(PARLM_EIO, "checkpoint failed on another rank");
    }
    return PARLM_OK;
}

/* --slow-rank: a straggler made on purpose (part of the step's time, as slow compute) */
static void slow_down(const parlm_trainer *t)
{
    const parlm_trainer_config *c = &t->c;
    int slow = c->slow_rank == PARLM_SLOW_ROTATE ? (int)(t->ts.step % t->size) : c->slow_rank;
    if (c->slow_ms <= 0 || slow != t->rank)
        return;
    struct timespec ts = {(time_t)(c->slow_ms / 1000), (long)(fmod(c->slow_ms, 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

parlm_status parlm_trainer_step(parlm_trainer *t, parlm_trainer_report *r)
{
    if (!t || !r || !t->started || !t->m)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_step: %s",
                           !t || !r ? "null argument" : "the trainer is not started");
    if (parlm_trainer_done(t))
        return parlm_error(PARLM_EINVAL, "parlm_trainer_step: the run is over (step %lld)",
                           (long long)t->ts.step);
    const parlm_trainer_config *c = &t->c;
    *r = (parlm_trainer_report){.val_loss = NAN, .comm_wait = -1};
    double t0 = now(), loss = 0;
    slow_down(t);
    parlm_status st = parlm_gpt_zero_grad(t->m);
    for (int micro = 0; micro < c->grad_accum && st == PARLM_OK; micro++) {
        float l = 0;
        st = t->s->forward_backward(t, 1.0f / c->grad_accum, micro == c->grad_accum - 1, &l);
        loss += l / c->grad_accum;
    }
    float norm = 0;
    parlm_adamw_cfg opt = {(float)parlm_trainer_lr(c, t->ts.step), (float)c->beta1,
                           (float)c->beta2, (float)c->eps, (float)c->weight_decay};
    if (st == PARLM_OK)
        st = t->s->optimizer_step(t, &opt, (float)c->grad_clip, &norm);
    if (st == PARLM_ECANCELED) { /* parameters and state are still those of the last step */
        t->halted = 1;
        stop_async(t);
        return parlm_error(PARLM_ECANCELED, "canceled during step %lld",
                           (long long)t->ts.step + 1);
    }
    if (st != PARLM_OK) {
        t->failed = 1;
        if (isfinite(norm))
            return fail(t, st, 1, "rank %d, step %lld: %s", t->rank, (long long)t->ts.step + 1,
                        parlm_last_error());
        return fail(t, PARLM_EINVAL, 1, "step %lld: the gradient norm is %g; stopping (lower "
                    "--lr?)", (long long)t->ts.step + 1, norm);
    }
    if (!apart(t)) /* apart: this replica's loss */
        t->s->mean(t, &loss);
    t->halted = cancel_seen(t);
    stop_async(t);
    int64_t tokens = (int64_t)c->B * c->T * c->grad_accum * t->dpn;
    t->ts.step = parlm_gpt_get_step(t->m);
    t->ts.train = parlm_loader_tell(t->train);
    t->ts.tokens += (double)tokens;
    *r = (parlm_trainer_report){.step = t->ts.step, .loss = loss, .val_loss = NAN, .lr = opt.lr,
                                .grad_norm = norm, .seconds = now() - t0, .tokens = tokens,
                                .comm_wait = -1};
#ifdef PARLM_HAVE_MPI
    if (t->dp) /* this rank's wait for gradients after backward (exposed communication) */
        r->comm_wait = parlm_dp_get_stats(t->dp).comm_wait;
    /* async: the last step's validation and sample see every update, on every rank */
    if (t->dp && !strcmp(t->dp_mode, "async") && t->ts.step >= t->stop &&
        (st = parlm_dp_gather_state(t->dp)) != PARLM_OK) {
        t->failed = 1;
        return fail(t, st, 1, "rank %d: the last updates: %s", t->rank, parlm_last_error());
    }
    else if (t->pp && t->dpn > 1)
        r->comm_wait = parlm_pp_get_stats(t->pp).dp;
#endif
    if (t->val && c->val_every && (t->ts.step % c->val_every == 0 || t->ts.step == c->steps)) {
        float vl = NAN;
        parlm_status vst = val_loss(t, &vl);
        if (vst == PARLM_ECANCELED) { /* the step is done: stop after it, untested */
            t->halted = 1;
            vl = NAN;
        } else if (vst != PARLM_OK) {
            t->failed = 1;
            return fail(t, vst, 1, "validation: %s", parlm_last_error());
        }
        double v = vl;
        t->s->mean(t, &v);
        r->val_loss = (float)v;
    }
    if (t->rank == 0 && c->sample_every && t->ts.step % c->sample_every == 0) {
        r->sample_n = sample(t);
        r->sample = t->sample;
    }
    if (c->on_step) {
        double bad = c->on_step(c->arg, r) != 0;
        if (t->size > 1) { /* one rank's failing log stops every rank */
            t->step_bad |= bad > 0;
            bad = 0;
            if (!apart(t)) {
                bad = t->step_bad;
                t->step_bad = 0;
                t->s->mean(t, &bad);
            }
        }
        if (bad > 0) {
            t->failed = 1;
            return parlm_error(PARLM_EIO, "step %lld: stopped by the step callback",
                               (long long)t->ts.step);
        }
    }
    if (c->ckpt_dir && c->ckpt_every && t->ts.step % c->ckpt_every == 0)
        return save(t);
    return PARLM_OK;
}

int parlm_trainer_done(const parlm_trainer *t)
{
    return !t || !t->started || t->failed || t->halted || t->ts.step >= t->stop;
}

int parlm_trainer_canceled(const parlm_trainer *t) { return t && t->halted; }

parlm_status parlm_trainer_save(parlm_trainer *t)
{
    if (!t || !t->m || !t->c.ckpt_dir)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_save: %s",
                           !t || !t->m ? "the trainer is not started" : "no --ckpt-dir");
    return save(t);
}

parlm_status parlm_trainer_finish(parlm_trainer *t)
{
    if (!t || !t->m)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_finish: the trainer is not started");
    const parlm_trainer_config *c = &t->c;
    if (c->ckpt_dir && !t->failed && (t->halted || !c->ckpt_every || t->ts.step % c->ckpt_every))
        return save(t);
    return PARLM_OK;
}

void parlm_trainer_free(parlm_trainer *t)
{
    if (!t)
        return;
#ifdef PARLM_HAVE_MPI
    parlm_pp_free(t->pp);
    parlm_dp_free(t->dp);
#endif
    parlm_loader_free(t->train);
    parlm_loader_free(t->val);
    parlm_gpt_free(t->m);
#ifdef PARLM_HAVE_MPI
    parlm_grid_free(t->grid);
#endif
    parlm_ckpt_dir_close(t->dir);
    free(t->x);
    free(t->y);
    free(t->sample);
    free(t);
}

/* ---- accessors ------------------------------------------------------------------------ */

parlm_gpt *parlm_trainer_model(parlm_trainer *t) { return t ? t->m : NULL; }
parlm_train_state parlm_trainer_state(const parlm_trainer *t)
{
    return t ? t->ts : (parlm_train_state){0};
}
uint64_t parlm_trainer_data_tokens(const parlm_trainer *t)
{
    return t && t->train ? parlm_loader_num_tokens(t->train) : 0;
}
size_t parlm_trainer_data_shards(const parlm_trainer *t)
{
    return t && t->train ? parlm_loader_num_shards(t->train) : 0;
}
int parlm_trainer_rank(const parlm_trainer *t) { return t ? t->rank : 0; }
int parlm_trainer_size(const parlm_trainer *t) { return t ? t->size : 1; }
const char *parlm_trainer_dp_mode(const parlm_trainer *t) { return t ? t->dp_mode : ""; }
parlm_status parlm_trainer_mean(parlm_trainer *t, double *x)
{
    if (!t || !x)
        return parlm_error(PARLM_EINVAL, "parlm_trainer_mean: null argument");
    return t->s->mean(t, x);
}
