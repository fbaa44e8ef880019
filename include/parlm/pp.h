/* parlm/pp.h — pipeline-parallel training of a model shard over a parlm_grid (parlm/grid.h),
 * composed with data parallelism (and tensor parallelism inside the shard). One step runs
 * M micro-batches through the stages with the grid's schedule (GPipe or 1F1B):
 * activations go forward and their gradients back with non-blocking MPI, posted as early
 * as each buffer allows and progressed between layers, so transfers overlap compute. After
 * the last backward, the tied token embedding's gradient is summed between the first and
 * last stage (Megatron-LM), each shard's gradients are averaged over its dp group with a
 * data-parallel mode of parlm/dp.h (sync, overlap, ZeRO-1), and the update clips by the
 * norm of the whole model's gradient (every tensor counted once). */
#ifndef PARLM_PP_H
#define PARLM_PP_H
#include <stdint.h>

#include "dist.h"
#include "dp.h"
#include "grid.h"
#include "model.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_pp parlm_pp;

/* Collective over the grid. m must be this rank's shard (parlm_grid_shard), with its tensor-
 * parallel communicator set if tp > 1; B x T is one micro-batch (the same on every rank,
 * checked). Sets up the model's activation slots (parlm_pp_max_in_flight of them); with
 * dp > 1 creates the shard's parlm_dp over the dp group (parlm_dp_create: the gradients,
 * and ZeRO-1's parameters, move into the group's node shared memory, where replicas on a
 * node average them in place; dp rank 0's parameters and step become every replica's).
 * Takes the model's cancel hook (parlm_gpt_set_cancel) to progress transfers between
 * layers, and with overlap its grad hook: do not set others while the pp exists.
 * dp_flags: algorithm flags of the dp all-reduce (parlm/dist.h; 0 = auto). */
PARLM_API parlm_status parlm_pp_create(parlm_pp **out, parlm_gpt *m, parlm_grid *g, int B, int T,
                                       unsigned dp_flags);
/* The same with the replicas averaging as dp says (parlm/dp.h; the same mode and bucket
 * size on every rank, checked; nothing to average when dp = 1):
 *   PARLM_DP_SYNC     one blocking all-reduce of the shard's gradients after the pipeline.
 *   PARLM_DP_OVERLAP  buckets start during the last micro-batch's backward as it finishes
 *                     them and progress between ops; the tied embedding's start after its
 *                     sum between the end stages.
 *   PARLM_DP_ZERO1    reduce-scatter; each replica keeps the AdamW state of its 1/dp block
 *                     of the shard, updates it, and the parameters are all-gathered.
 * The three give bitwise the same parameters at dp = 2 (the two-rank sums are the same
 * float additions). PARLM_DP_LOCAL is PARLM_EUNSUPPORTED. */
PARLM_API parlm_status parlm_pp_create_dp(parlm_pp **out, parlm_gpt *m, parlm_grid *g, int B,
                                          int T, const parlm_dp_config *dp);
/* Collective over the dp group when dp > 1 (the gradients leave its shared memory); gives
 * the cancel hook back. NULL is a no-op. */
PARLM_API void parlm_pp_free(parlm_pp *pp);

/* Forward and backward of the step's M micro-batches, then the gradient exchange (tied
 * embedding, dp average); the gradients are zeroed first. inputs and targets hold M*B*T
 * tokens (micro-batch i at i*B*T): inputs are read on the first stage, targets on the last;
 * other stages may pass NULL. *loss (may be NULL) = the mean loss of the step over every
 * micro-batch and dp rank, on every rank. Collective over the grid. */
PARLM_API parlm_status parlm_pp_run(parlm_pp *pp, const int32_t *inputs, const int32_t *targets,
                                    float *loss);
/* The optimizer step after parlm_pp_run: *grad_norm (may be NULL) = the global gradient norm
 * (sqrt of the owned tensors' sums of squares over the grid), identical on every rank;
 * with grad_clip > 0 the gradients are scaled by min(1, grad_clip / norm); then AdamW
 * (parlm_gpt_optimizer_step_scale). A non-finite norm is PARLM_EINVAL on every rank before
 * anything changes. Collective over the grid. */
PARLM_API parlm_status parlm_pp_update(parlm_pp *pp, const parlm_adamw_cfg *cfg, float grad_clip,
                                       float *grad_norm);
/* ZeRO-1: gathers the replicas' blocks into the shard's full AdamW state (the model's, on
 * every replica) so a checkpoint can be written; other modes: nothing to do. Collective
 * over the grid. */
PARLM_API parlm_status parlm_pp_gather_state(parlm_pp *pp);

/* Time split of the last run and update, seconds. */
typedef struct parlm_pp_stats {
    double run;           /* parlm_pp_run from start to end */
    double compute;       /* inside forward and backward */
    double wait;          /* blocked on activations, gradients and send buffers */
    double tied;          /* summing the tied embedding's gradient */
    double dp;            /* the dp exchange after the pipeline (sync: the all-reduce;
                           * overlap: waiting for the buckets; ZeRO-1: the reduce-scatter) */
    double update;        /* parlm_pp_update (norm all-reduce, AdamW, ZeRO-1 all-gather) */
    double bubble;        /* 1 - compute / (start of the first op to end of the last) */
    int64_t activation_bytes; /* the model's activation arena (every slot) */
    int slots;            /* micro-batches of activations held at once */
} parlm_pp_stats;
PARLM_API parlm_pp_stats parlm_pp_get_stats(const parlm_pp *pp);

/* Timeline of the last step for a Chrome trace. Times: seconds of CLOCK_MONOTONIC
 * (comparable between processes of a node). A transfer's end is when this rank saw it
 * complete (between layers or in a wait), so it may be late by up to a layer's time. */
typedef enum parlm_pp_lane { PARLM_PP_LANE_COMPUTE = 0, PARLM_PP_LANE_COMM = 1 } parlm_pp_lane;
typedef struct parlm_pp_event {
    const char *name; /* compute lane: "forward", "backward", "wait", "tied wte", "dp
                       * all-reduce" (or "dp overlap wait", "dp reduce-scatter"), "update";
                       * comm lane: "send act", "recv act", "send grad", "recv grad" */
    parlm_pp_lane lane;
    int mb;           /* micro-batch, or -1 */
    double start, end;
    int64_t bytes;
} parlm_pp_event;
/* *events = the last step's events (valid until the next run or free); returns their count. */
PARLM_API int parlm_pp_get_events(const parlm_pp *pp, const parlm_pp_event **events);
/* The shard's data parallelism over its replicas (NULL when dp = 1): its stats and the
 * timeline of the last step's exchange (parlm_dp_get_stats, parlm_dp_get_events). */
PARLM_API const parlm_dp *parlm_pp_dp(const parlm_pp *pp);

#ifdef __cplusplus
}
#endif
#endif
