/* parlm/tp.h — tensor parallelism (Megatron-LM) over parlm's own collectives: the
 * parlm_gpt_tp_comm a model shard (parlm_gpt_shard, tp > 1) calls for its per-layer
 * all-reduces and its all-gathers, made from a parlm_comm of the tensor-parallel group.
 * A TP group should stay inside one node: its traffic is a few (B,T,C) all-reduces per
 * layer, latency-bound, and parlm_allreduce takes the shared-memory path there. */
#ifndef PARLM_TP_H
#define PARLM_TP_H

#include "dist.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *out so that allreduce_sum is parlm_allreduce(SUM, AUTO) and all_gather is
 * parlm_all_gather(AUTO) of tp * n floats (block r is rank r's n) over tp_group, whose
 * rank r must be the shard's tp_rank r. Both give every rank the same bits. tp_group is
 * borrowed: it must outlive the model's use of *out. */
PARLM_API parlm_status parlm_tp_comm_init(parlm_gpt_tp_comm *out, parlm_comm *tp_group);

#ifdef __cplusplus
}
#endif
#endif
