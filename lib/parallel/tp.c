/* lib/parallel/tp.c — the collectives of a tensor-parallel group for a model shard (see
 * parlm/tp.h). All-gather of tp blocks of n: parlm_all_gather's block distribution of
 * tp * n floats over tp ranks gives rank r exactly [r n, (r + 1) n), so the model's
 * layout (rank r's slice at buf + r n) is the collective's own. */
#include <stdint.h>

#include "../../base/error.h"
#include "parlm/tp.h"

static parlm_status tp_allreduce(void *arg, float *buf, int64_t n)
{
    return parlm_allreduce((parlm_comm *)arg, buf, n, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO);
}

static parlm_status tp_all_gather(void *arg, float *buf, int64_t n)
{
    parlm_comm *c = arg;
    int p = parlm_comm_size(c);
    if (n < 0 || (p > 0 && n > INT64_MAX / p))
        return parlm_error(PARLM_EINVAL, "tensor-parallel all-gather: %lld floats x %d ranks",
                           (long long)n, p);
    return parlm_all_gather(c, buf, n * p, PARLM_ALGO_AUTO);
}

parlm_status parlm_tp_comm_init(parlm_gpt_tp_comm *out, parlm_comm *tp_group)
{
    if (!out || !tp_group)
        return parlm_error(PARLM_EINVAL, "parlm_tp_comm_init: NULL argument");
    out->allreduce_sum = tp_allreduce;
    out->all_gather = tp_all_gather;
    out->arg = tp_group;
    return PARLM_OK;
}
