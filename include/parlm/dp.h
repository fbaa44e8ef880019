/* parlm/dp.h — data-parallel training of a parlm_gpt over a parlm_comm (parlm/dist.h).
 * Every rank holds the whole model and trains on its own part of each batch; gradients
 * are averaged so that N ranks x batch B step exactly like 1 rank x batch N*B (up to
 * the order of float sums). Modes:
 *   PARLM_DP_SYNC     all-reduce the gradients after backward (bucketed, blocking).
 *   PARLM_DP_OVERLAP  buckets (default 25 MB, last layers first) start their all-reduce
 *                     as soon as backward has finished them, progressing while backward
 *                     computes the earlier layers; the step waits for the rest.
 *   PARLM_DP_ZERO1    reduce-scatter the gradients; each rank runs AdamW on its 1/N
 *                     block with its 1/N of the optimizer state; all-gather parameters.
 *   PARLM_DP_LOCAL    local SGD: ranks step on their own gradients; every H-th step the
 *                     replicas are averaged (parameters and AdamW moments) and take one
 *                     synchronous step with averaged gradients. H = 1 is PARLM_DP_SYNC;
 *                     larger H trades gradient noise and replica drift (the loss per
 *                     step is worse) for 1/H of the communication.
 *   PARLM_DP_ASYNC    bounded staleness (stale synchronous parallel): parameters, AdamW
 *                     moments and S+1 gradient slots per rank in one store (the node's
 *                     shared memory, split over its ranks);
 *                     a rank pushes its gradients and goes on, the rank completing a step
 *                     applies that update (rank-ordered mean, clipping, AdamW), and no rank
 *                     starts step c before updates 0 .. c-S-1 are in: a fast rank runs up
 *                     to S steps ahead of the slowest. S = 0 is PARLM_DP_SYNC bit for bit
 *                     on one node. Across nodes (or with PARLM_ALGO_MPI in flags, or
 *                     as the communicator's algorithm) the store is an MPI window on
 *                     rank 0 that every rank reaches by passive-target RMA (MPI_Get,
 *                     MPI_Put, MPI_Fetch_and_op, MPI_Accumulate under MPI_Win_lock_all),
 *                     as also when the node's shared memory lacks the store's 4 x P x
 *                     (3 + (S+1) x ranks) bytes.
 *                     Replicas differ between steps; parlm_dp_gather_state brings them
 *                     together, and until the next step parlm_dp_mean averages over the
 *                     ranks; otherwise it gives this rank's value (a collective would
 *                     make every step wait for the slowest rank).
 * No communication happens on gradient-accumulation micro-steps. */
#ifndef PARLM_DP_H
#define PARLM_DP_H
#include <stdint.h>

#include "dist.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum parlm_dp_mode {
    PARLM_DP_SYNC = 0,
    PARLM_DP_OVERLAP = 1,
    PARLM_DP_ZERO1 = 2,
    PARLM_DP_LOCAL = 3,
    PARLM_DP_ASYNC = 4,
} parlm_dp_mode;

typedef struct parlm_dp_config {
    parlm_dp_mode mode;
    int64_t bucket_bytes; /* gradient bucket size (0: 25 MB) */
    unsigned flags;       /* parlm/dist.h algorithm | PARLM_WIRE_BF16 */
    int local_steps;      /* H for PARLM_DP_LOCAL (>= 1) */
    int staleness;        /* S for PARLM_DP_ASYNC (>= 0) */
} parlm_dp_config;

/* Time split of the last step, seconds (for benchmarks and logs). */
typedef struct parlm_dp_stats {
    double backward;   /* inside parlm_gpt_backward of the last micro-step */
    double comm_wait;  /* waiting for communication after backward (exposed) */
    double optimizer;  /* norm, clipping, AdamW, ZeRO-1 all-gather */
    double comm_total; /* from the first bucket's start to the last one's end */
    double progress;   /* overlap: inside backward, starting and progressing buckets (the
                        * compute core's time spent on communication there; part of
                        * backward) */
    int64_t version;   /* async: updates in the parameters the next step computes with */
    int64_t staleness; /* async: that step's index minus version (<= S) */
} parlm_dp_stats;

typedef struct parlm_dp parlm_dp;

PARLM_API const char *parlm_dp_mode_name(parlm_dp_mode mode);
/* "sync", "overlap", "zero1", "local", "async" */
PARLM_API parlm_status parlm_dp_mode_parse(const char *name, parlm_dp_mode *out);

/* Collective. m may be a shard of the model (parlm/model.h): then every rank holds the same
 * shard. On a pipeline's first or last stage (not both) the token embedding is tied to the
 * other end's copy and final only once the caller has summed the two: overlap mode starts
 * its buckets in parlm_dp_exchange, after the others. Makes rank 0's parameters (and step) everyone's, moves the model's
 * gradients into node shared memory (parlm_comm_alloc_shared: ranks of a two-rank node
 * then reduce them in place; free the dp before the comm), and in ZeRO-1 mode
 * allocates this rank's block of the AdamW state (taking its slice of the model's state
 * if the model has one, e.g. after loading a checkpoint). */
PARLM_API parlm_status parlm_dp_create(parlm_dp **out, parlm_gpt *m, parlm_comm *comm,
                                       const parlm_dp_config *cfg);
/* Collective (the gradients move back out of shared memory). */
PARLM_API void parlm_dp_free(parlm_dp *dp);

/* Runs parlm_gpt_backward for one micro-step; last = 1 on the step's last micro-batch
 * (overlap mode starts bucket all-reduces during it). */
PARLM_API parlm_status parlm_dp_backward(parlm_dp *dp, float loss_scale, int last);

/* Finishes the gradient exchange and takes one optimizer step (clipping the global
 * gradient norm to grad_clip when > 0). *grad_norm (may be NULL) = global norm before
 * clipping, identical on every rank. */
PARLM_API parlm_status parlm_dp_update(parlm_dp *dp, const parlm_adamw_cfg *cfg, float grad_clip,
                                     float *grad_norm);

/* parlm_dp_update in two halves, for a caller that derives the clipping factor itself (a
 * pipeline stage clips by the norm of the whole model over the grid, parlm/pp.h). Not for
 * PARLM_DP_LOCAL (PARLM_EUNSUPPORTED). Collective.
 * parlm_dp_exchange finishes the gradient exchange after the step's last backward: sync
 * averages every bucket, overlap starts the held buckets and waits for all, ZeRO-1
 * reduce-scatters (only this rank's block is then averaged; the rest is scratch).
 * parlm_dp_block gives that block, [*off, *off + *n) of the gradient buffer (every mode
 * has one, parlm_block_range over the ranks: a norm summed block by block is then the
 * same float sums in every mode). parlm_dp_apply takes the AdamW step with the gradients
 * scaled by grad_scale: ZeRO-1 on its block with its part of the state, then all-gathers
 * the parameters; the other modes on every parameter (parlm_gpt_optimizer_step_scale). */
PARLM_API parlm_status parlm_dp_exchange(parlm_dp *dp);
PARLM_API void parlm_dp_block(const parlm_dp *dp, int64_t *off, int64_t *n);
PARLM_API parlm_status parlm_dp_apply(parlm_dp *dp, const parlm_adamw_cfg *cfg,
                                       float grad_scale);

/* *x = mean of x over the ranks (losses for logging). */
PARLM_API parlm_status parlm_dp_mean(parlm_dp *dp, double *x);

/* 1 while local SGD's replicas are apart: after an update that did not average them (H - 1
 * of every H steps). Nothing that makes the ranks meet should run then: parlm-train keeps
 * each replica's own loss for its log and holds a cancel or a failing step callback for
 * the next averaging step (every rank decides alike: all count the same steps). 0 in every
 * other mode and step. */
PARLM_API int parlm_dp_apart(const parlm_dp *dp);

/* ZeRO-1: gathers the optimizer blocks into the model's full AdamW state (on every rank)
 * so a checkpoint can be written; async: waits for every update and gives every rank the
 * shared parameters, moments and step; other modes: nothing to do. Collective. */
PARLM_API parlm_status parlm_dp_gather_state(parlm_dp *dp);

PARLM_API parlm_dp_stats parlm_dp_get_stats(const parlm_dp *dp);
/* async: this rank takes no more steps (say, a signal stopped it; the ranks do not agree
 * on a step without a collective): a rank waiting for updates that need this one's pushes
 * gets PARLM_ECANCELED from parlm_dp_update instead of waiting forever; then every rank
 * calls parlm_dp_gather_state, which keeps the updates all ranks pushed. Other modes:
 * nothing to do. */
PARLM_API parlm_status parlm_dp_stop(parlm_dp *dp);

/* async: where its store is, "shared memory" or "MPI RMA"; other modes: NULL. */
PARLM_API const char *parlm_dp_async_store(const parlm_dp *dp);

/* Timeline of the last step (what parlm-bench dp --trace draws). Times are seconds of
 * CLOCK_MONOTONIC (comparable between processes of one node). A bucket's end is when
 * this rank first saw it complete (at a progress point or in the final wait), so it is
 * late by at most the gap between progress points. */
typedef enum parlm_dp_lane { PARLM_DP_LANE_COMPUTE = 0, PARLM_DP_LANE_COMM = 1 } parlm_dp_lane;
typedef struct parlm_dp_event {
    const char *name;  /* "backward", "wait", "optimizer" (compute lane); "allreduce",
                        * "reduce-scatter", "all-gather", "embedding rows" (comm lane) */
    parlm_dp_lane lane;
    double start, end;
    int64_t bytes;     /* bytes of the collective's buffer (comm lane); 0 otherwise */
} parlm_dp_event;
/* *events = the last step's events (valid until the next step or free), sorted by start;
 * returns their number (0 for NULL arguments). */
PARLM_API int parlm_dp_get_events(const parlm_dp *dp, const parlm_dp_event **events);

#ifdef __cplusplus
}
#endif
#endif
