/* parlm/trainer.h — the training loop as a library: a GPT trained on token shards, on one
 * process or on MPI ranks (data parallelism, parlm/dp.h), with warmup + cosine learning
 * rate, gradient accumulation, clipping, AdamW, validation, samples, and a checkpoint
 * directory (cadence, rotation, resume). The idea to know: parlm_trainer_step is one
 * optimizer step of the whole job; the library never prints, it hands messages and per-step
 * reports to the caller (parlm-train is option parsing + these calls + printing).
 *
 *     parlm_trainer_config c;
 *     parlm_trainer_config_default(&c);
 *     c.model = "tiny", c.data = "shards/train_*.bin", c.steps = 100, c.ckpt_dir = "run";
 *     parlm_trainer *t;
 *     if (parlm_trainer_create(&t, &c) != PARLM_OK) ... parlm_last_error() ...
 *     parlm_trainer_report r;
 *     while (!parlm_trainer_done(t) && parlm_trainer_step(t, &r) == PARLM_OK)
 *         printf("step %lld loss %.4f\n", (long long)r.step, r.loss);
 *     parlm_trainer_finish(t);   // the last checkpoint
 *     parlm_trainer_free(t);
 *
 * Messages name configuration fields by parlm-train's option for them (--model, -b,
 * --grad-accum, --resume, ...): the fields below are those options one to one. */
#ifndef PARLM_TRAINER_H
#define PARLM_TRAINER_H
#include <signal.h>
#include <stdint.h>

#include "checkpoint.h"
#include "model.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct parlm_comm; /* parlm/dist.h (MPI builds) */

/* What the library has to say, by kind: INFO is progress (parlm-train prints it to stdout),
 * WARN a problem it works around, ERROR why the call that returned an error failed (the same
 * text as parlm_last_error(), said by the rank(s) that should say it: rank 0 for a problem
 * every rank shares, the rank concerned for its own). INFO and WARN come from rank 0 only. */
typedef enum parlm_trainer_msg { PARLM_MSG_INFO, PARLM_MSG_WARN, PARLM_MSG_ERROR } parlm_trainer_msg;
typedef void (*parlm_trainer_msg_fn)(void *arg, parlm_trainer_msg kind, const char *text);

typedef struct parlm_trainer_report parlm_trainer_report;
/* Called by parlm_trainer_step after the step (and its validation and sample), before its
 * checkpoint: the place to print or log it. Nonzero stops the run: every rank's step then
 * returns PARLM_EIO (for one rank's failing log, all ranks stop together). */
typedef int (*parlm_trainer_step_fn)(void *arg, const parlm_trainer_report *r);

#define PARLM_SLOW_ROTATE (-2)

typedef struct parlm_trainer_config {
    /* model: a preset, or a file to start from (then its shape wins over the preset) */
    const char *model;      /* --model: "tiny", "small", "d12", ... */
    const char *init;       /* --init: llm.c model file or parlm checkpoint (NULL: preset) */
    int vocab;              /* the tokenizer's vocabulary (a fresh model's V; tokens of the
                             * data must lie below it); 0: 50257 */
    int bf16;               /* --bf16: bf16 matmuls */
    uint64_t seed;          /* --seed: initialization (and the sampling RNG's start) */
    /* data: token shards (parlm/data.h), each rank reads its part of every batch */
    const char *data;       /* --data: glob of training shards */
    const char *val_data;   /* --val-data: glob of validation shards (NULL: no validation) */
    int B, T, grad_accum;   /* -b, -t, --grad-accum: a step is grad_accum batches of (B,T)
                             * per data-parallel rank (with tp x pp > 1: per replica, read
                             * alike by its ranks, in micro_batches of B / M rows) */
    /* schedule and optimizer */
    int steps;              /* --steps: the length of the schedule */
    int stop_at;            /* --stop-at: stop (done) after this step; 0: at steps */
    int warmup;             /* --warmup: linear warmup steps */
    double lr, lr_min_frac; /* --lr, --lr-min-frac: peak; cosine decay to lr * lr_min_frac */
    double weight_decay, grad_clip, beta1, beta2, eps; /* AdamW; grad_clip 0 = off */
    /* validation and samples (samples only on rank 0; their RNG is checkpointed) */
    int val_every, val_steps;   /* 0: no validation */
    int sample_every, sample_len;
    int sample_start;       /* the token a sample starts from (the tokenizer's EOT, or '\n') */
    int sample_stop;        /* a sample ends at this token; -1: only at sample_len */
    /* checkpoints: DIR/ckpt_<step>.bin, the newest ckpt_keep kept (parlm/checkpoint.h) */
    const char *ckpt_dir;   /* NULL: no checkpoints */
    int ckpt_every;         /* steps between checkpoints; 0: only at the end */
    int ckpt_keep;          /* 0: 2 */
    int resume;             /* --resume: continue from the newest loadable checkpoint */
    int overwrite;          /* --overwrite: a new run deletes an earlier run's checkpoints */
    /* processes and layout */
    struct parlm_comm *comm; /* every rank of the job (NULL: one process) */
    const char *dp;         /* --dp: "auto", "sync", "overlap", "zero1", "local", "async" */
    int local_steps, bucket_mb, bf16_wire;
    int staleness;          /* --staleness: S of --dp async (parlm/dp.h) */
    int slow_rank;          /* --slow-rank: this rank (or PARLM_SLOW_ROTATE: rank step mod
                             * ranks) sleeps slow_ms at each step's start; -1: none */
    double slow_ms;         /* --slow-ms */
    int tp, pp;             /* tensor / pipeline parallel ways (0 or 1: none); tp x pp > 1
                             * needs comm, dp auto/sync/overlap/zero1 (not local), no bf16
                             * or bf16_wire, grad_accum 1; no samples */
    int micro_batches;      /* pipeline micro-batches per batch (0: pp) */
    const char *schedule;   /* "gpipe" or "1f1b" (NULL: 1f1b) */
    /* control and output */
    const volatile sig_atomic_t *cancel; /* nonzero (a signal handler sets it): stop */
    parlm_trainer_msg_fn on_message;
    parlm_trainer_step_fn on_step;
    void *arg;              /* passed to on_message and on_step */
} parlm_trainer_config;

/* parlm-train's defaults: model "small", B 8, T 128, 1500 steps, lr 1e-3, warmup 20, ... */
PARLM_API void parlm_trainer_config_default(parlm_trainer_config *c);

struct parlm_trainer_report {
    int64_t step;           /* optimizer steps done, this one included */
    double loss;            /* training loss of the step (mean over micro-batches and ranks) */
    float val_loss;         /* mean validation loss after the step, NAN if none was due */
    float lr, grad_norm;    /* learning rate used; global gradient norm before clipping */
    double seconds;         /* wall time of the step (validation, sample and checkpoint not
                             * included) */
    int64_t tokens;         /* tokens of the step over all ranks */
    double comm_wait;       /* data parallelism (also the grid's replicas): this rank's
                             * exposed wait for gradients (s); -1 without */
    const int32_t *sample;  /* rank 0, when a sample was due: its tokens (valid until the
                             * next step), else NULL */
    int sample_n;
};

typedef struct parlm_trainer parlm_trainer;

/* Checks the configuration (a layout the build cannot run is PARLM_EUNSUPPORTED) and claims
 * the checkpoint directory (rank 0 creates and locks it; a directory holding another run's
 * checkpoints is refused unless resume or overwrite) before anything costly; then
 * parlm_trainer_start. Collective. Errors: PARLM_EINVAL for a configuration that cannot
 * work (or ranks that disagree), others for files and resources. */
PARLM_API parlm_status parlm_trainer_create(parlm_trainer **out, const parlm_trainer_config *c);
/* The same in two calls, for a program that produces its data (say, tokenizes text into
 * shards) only once it holds the checkpoint directory: _open checks and claims, and
 * parlm_trainer_start(t, data, val_data) (NULL: the config's) does the rest: the model
 * (resumed, --init or fresh), the data loaders, the agreement of every rank on config,
 * model and data bytes, data parallelism. The config's strings must outlive the trainer. */
PARLM_API parlm_status parlm_trainer_open(parlm_trainer **out, const parlm_trainer_config *c);
PARLM_API parlm_status parlm_trainer_start(parlm_trainer *t, const char *data,
                                           const char *val_data);

/* One optimizer step (grad_accum micro-batches, gradient exchange, clipping, AdamW), then
 * validation and a sample when due, on_step, and a checkpoint when due. Collective.
 * PARLM_ECANCELED: the cancel flag stopped a single process midway (the model is that of
 * the last whole step; with ranks, all stop together after a whole step and done() says
 * so). A non-finite gradient norm is PARLM_EINVAL. */
PARLM_API parlm_status parlm_trainer_step(parlm_trainer *t, parlm_trainer_report *r);
/* Nonzero when the run is over: stop_at/steps reached, or the cancel flag was seen. */
PARLM_API int parlm_trainer_done(const parlm_trainer *t);
PARLM_API int parlm_trainer_canceled(const parlm_trainer *t);
/* Writes a checkpoint of the current step now (ZeRO-1 gathers its optimizer state first;
 * rank 0 writes). Collective. */
PARLM_API parlm_status parlm_trainer_save(parlm_trainer *t);
/* At the end of a run: the checkpoint of the last step unless the cadence just wrote it
 * (also after a cancel). Collective. Nothing without a ckpt_dir. */
PARLM_API parlm_status parlm_trainer_finish(parlm_trainer *t);
/* Collective (data parallelism frees shared memory). NULL is a no-op; releases the lock. */
PARLM_API void parlm_trainer_free(parlm_trainer *t);

/* The model being trained (borrowed), the training state (step, data position, RNG), the
 * number of training tokens and shards, this rank and the number of ranks, the
 * data-parallel mode in use ("" for one process), *x = mean of x over the ranks. */
PARLM_API parlm_gpt *parlm_trainer_model(parlm_trainer *t);
PARLM_API parlm_train_state parlm_trainer_state(const parlm_trainer *t);
PARLM_API uint64_t parlm_trainer_data_tokens(const parlm_trainer *t);
PARLM_API size_t parlm_trainer_data_shards(const parlm_trainer *t);
PARLM_API int parlm_trainer_rank(const parlm_trainer *t);
PARLM_API int parlm_trainer_size(const parlm_trainer *t);
PARLM_API const char *parlm_trainer_dp_mode(const parlm_trainer *t);
PARLM_API parlm_status parlm_trainer_mean(parlm_trainer *t, double *x);
/* The learning rate of step (counted from 0) under the config's schedule. */
PARLM_API double parlm_trainer_lr(const parlm_trainer_config *c, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
