/* lib/parallel/dp_async.h — internal: PARLM_DP_ASYNC, bounded-staleness data parallelism
 * (stale synchronous parallel); parlm/dp.h dispatches to it. */
#ifndef PARLM_DP_ASYNC_H
#define PARLM_DP_ASYNC_H
#include <stdint.h>

#include "parlm/dist.h"
#include "parlm/model.h"
#include "parlm/nn.h"

typedef struct dp_async dp_async;

/* Collective. The model's parameters (and step) must already be the same on every rank;
 * rank 0's, with its AdamW moments when it has them (zeros otherwise), start the stored
 * copy. staleness S >= 0. The store is the node's shared memory, unless comm spans nodes
 * or rma is nonzero: then an MPI window on rank 0 reached by passive-target RMA. */
parlm_status dp_async_create(dp_async **out, parlm_gpt *m, parlm_comm *comm, int staleness,
                             int rma);
/* Nonzero when the store is reached through RMA. */
int dp_async_uses_rma(const dp_async *a);
/* Collective. */
void dp_async_free(dp_async *a);

/* After the step's last backward (the model's gradients are this rank's step c): pushes
 * them; the rank that completes step c applies update c (the rank-ordered mean of every
 * rank's step-c gradients, clipping, AdamW) once update c-1 is in; then waits until at
 * most S updates are missing for step c+1 and loads the newest parameters into the model.
 * *norm: the gradient norm of the newest update this rank knows of. */
parlm_status dp_async_step(dp_async *a, const parlm_adamw_cfg *cfg, float clip, float *norm);

/* This rank takes no more steps (a signal stopped it): a rank waiting for updates that
 * need its pushes returns PARLM_ECANCELED from dp_async_step instead of waiting forever.
 * The run then ends with dp_async_drain. */
parlm_status dp_async_stop(dp_async *a);

/* Collective: waits for every pushed update and gives the model the shared parameters,
 * AdamW moments and step (before a checkpoint, at the end of a run). Ranks that took
 * different numbers of steps (a stop) keep the updates every rank pushed. */
parlm_status dp_async_drain(dp_async *a);

/* Nonzero after dp_async_drain until the next step (the same on every rank): collectives
 * then cost no rank a wait for another's steps. */
int dp_async_drained(const dp_async *a);

/* The version (updates applied) of the parameters the model holds now, the staleness of
 * the next step (its index minus that version), and the seconds the last step waited. */
void dp_async_state(const dp_async *a, int64_t *version, int64_t *staleness, double *wait);
#endif
