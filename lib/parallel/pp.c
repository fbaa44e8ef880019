/* lib/parallel/pp.c — pipeline-parallel training steps (see parlm/pp.h). Each micro-batch
 * i lives in activation slot i mod slots; every transfer of a slot's buffers is posted as
 * soon as the buffer is free (receives for the next micro-batch of a slot right after its
 * backward), so a stage only waits for data that truly is not there yet. MPI moves
 * messages only inside MPI calls, so the model's between-layers hook (parlm_gpt_set_cancel)
 * tests the outstanding requests: a send posted after forward drains while the next
 * forward computes, instead of at the next wait. The replicas of a shard (dp > 1) average
 * their gradients through a parlm_dp over the dp group (parlm/dp.h: sync, overlap during
 * the last micro-batch's backward, or ZeRO-1), which holds the tied embedding's buckets
 * back until the end stages have summed it. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../base/error.h"
#include "parlm/dp.h"
#include "parlm/pp.h"
#include "parlm/tensor.h"

/* request kinds, per slot: index kind * slots + slot */
enum { RECV_ACT = 0, RECV_GRAD = 1, SEND_ACT = 2, SEND_GRAD = 3, NKINDS = 4 };
static const char *const xfer_name[NKINDS] = {"recv act", "recv grad", "send act", "send grad"};

struct parlm_pp {
    parlm_gpt *m;
    parlm_grid *g;
    int B, T, C, M, stage, nstages, slots, first, last;
    parlm_pp_schedule schedule;
    parlm_dp_config dpc;
    parlm_dp *dp;              /* dp > 1: the average over the shard's replicas */
    int last_bwd;              /* the schedule's last backward (ops index) */
    MPI_Comm p2p, world;
    int64_t n; /* floats of one stage boundary, B*T*C */
    float **in, **out, **gout; /* the model's stage buffers of each slot (out: after forward) */
    float *gin;                /* [slots][n]: copies of grad_input being sent */
    MPI_Request *req;          /* [NKINDS * slots] */
    int *req_ev;               /* event of each request */
    parlm_pp_op *ops;          /* the schedule, 2M */
    int64_t wte_off, wte_n;    /* the tied embedding in this shard (n = 0: none) */
    int untied;                /* no tied embedding to sum (a Llama untied head) */
    parlm_pp_event *ev;
    int nev, cap_ev;
    parlm_pp_stats stats;
    parlm_status mpi_failed;   /* set by the progress hook (it cannot return an error) */
    char mpi_msg[128];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int add_event(parlm_pp *pp, const char *name, parlm_pp_lane lane, int mb, double start,
                     double end, int64_t bytes)
{
    if (pp->nev == pp->cap_ev)
        return -1; /* cannot happen: a step has at most 10 M + 3 events (2M computes, 4M
                    * transfers, a wait per transfer, tied, dp, update) */
    pp->ev[pp->nev] = (parlm_pp_event){name, lane, mb, start, end, bytes};
    return pp->nev++;
}

static parlm_status mpi_fail(int err, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS)
        msg[0] = 0;
    return parlm_error(PARLM_ESYSTEM, "pipeline: %s failed: %s", what, msg);
}

/* Tests every outstanding transfer; marks the end of those complete. */
static int progress(void *arg)
{
    parlm_pp *pp = arg;
    int count = NKINDS * pp->slots, done = 0, idx[4 * 64];
    if (count > 4 * 64) /* Testsome's index array: test in pieces */
        count = 4 * 64;
    for (int base = 0; base < NKINDS * pp->slots; base += count) {
        int c = NKINDS * pp->slots - base < count ? NKINDS * pp->slots - base : count;
        int err = MPI_Testsome(c, pp->req + base, &done, idx, MPI_STATUSES_IGNORE);
        if (err != MPI_SUCCESS) {
            pp->mpi_failed = PARLM_ESYSTEM;
            return 1; /* stops the forward / backward: the step fails */
        }
        if (done == MPI_UNDEFINED)
            continue;
        double t = now();
        for (int i = 0; i < done; i++)
            if (pp->req_ev[base + idx[i]] >= 0)
                pp->ev[pp->req_ev[base + idx[i]]].end = t;
    }
    return 0;
}

static parlm_status wait_req(parlm_pp *pp, int kind, int slot, int mb)
{
    int j = kind * pp->slots + slot;
    if (pp->req[j] == MPI_REQUEST_NULL)
        return PARLM_OK;
    double t0 = now();
    int err = MPI_Wait(&pp->req[j], MPI_STATUS_IGNORE);
    double t1 = now();
    if (err != MPI_SUCCESS)
        return mpi_fail(err, xfer_name[kind]);
    if (pp->req_ev[j] >= 0)
        pp->ev[pp->req_ev[j]].end = t1;
    pp->stats.wait += t1 - t0;
    add_event(pp, "wait", PARLM_PP_LANE_COMPUTE, mb, t0, t1, 0);
    return PARLM_OK;
}

/* tags: activations of micro-batch i travel as 2i, their gradients as 2i + 1 */
static parlm_status post(parlm_pp *pp, int kind, int slot, int mb)
{
    int j = kind * pp->slots + slot, err;
    int n = (int)pp->n;
    switch (kind) {
    case RECV_ACT:
        err = MPI_Irecv(pp->in[slot], n, MPI_FLOAT, pp->stage - 1, 2 * mb, pp->p2p, &pp->req[j]);
        break;
    case RECV_GRAD:
        err = MPI_Irecv(pp->gout[slot], n, MPI_FLOAT, pp->stage + 1, 2 * mb + 1, pp->p2p,
                        &pp->req[j]);
        break;
    case SEND_ACT:
        err = MPI_Isend(pp->out[slot], n, MPI_FLOAT, pp->stage + 1, 2 * mb, pp->p2p, &pp->req[j]);
        break;
    default:
        err = MPI_Isend(pp->gin + (size_t)slot * (size_t)pp->n, n, MPI_FLOAT, pp->stage - 1,
                        2 * mb + 1, pp->p2p, &pp->req[j]);
        break;
    }
    if (err != MPI_SUCCESS)
        return mpi_fail(err, xfer_name[kind]);
    double t = now();
    pp->req_ev[j] = add_event(pp, xfer_name[kind], PARLM_PP_LANE_COMM, mb, t, t,
                              pp->n * (int64_t)sizeof(float));
    return PARLM_OK;
}

/* the receives a slot needs for micro-batch mb */
static parlm_status post_recvs(parlm_pp *pp, int slot, int mb)
{
    parlm_status st = PARLM_OK;
    if (!pp->first)
        st = post(pp, RECV_ACT, slot, mb);
    if (st == PARLM_OK && !pp->last)
        st = post(pp, RECV_GRAD, slot, mb);
    return st;
}

static void release(parlm_pp *pp)
{
    parlm_dp_free(pp->dp);
    free(pp->in);
    free(pp->out);
    free(pp->gout);
    parlm_free(pp->gin);
    free(pp->req);
    free(pp->req_ev);
    free(pp->ops);
    free(pp->ev);
    free(pp);
}

parlm_status parlm_pp_create(parlm_pp **out, parlm_gpt *m, parlm_grid *g, int B, int T,
                             unsigned dp_flags)
{
    parlm_dp_config dpc = {PARLM_DP_SYNC, 0, dp_flags, 1, 0};
    return parlm_pp_create_dp(out, m, g, B, T, &dpc);
}

parlm_status parlm_pp_create_dp(parlm_pp **out, parlm_gpt *m, parlm_grid *g, int B, int T,
                                const parlm_dp_config *dpc)
{
    if (out)
        *out = NULL;
    if (!out || !m || !g || !dpc)
        return parlm_error(PARLM_EINVAL, "parlm_pp_create: null argument");
    RETURN_IF_ERROR(parlm_gpt_check_owned(m, "parlm_pp_create"));
    parlm_comm *world = parlm_grid_comm(g, PARLM_GRID_WORLD);
    parlm_status st;
    /* every rank the same micro-batch and averaging, or all stop naming it */
    if ((st = parlm_comm_check_agree(world, "micro-batch size", (uint64_t)(int64_t)B)) !=
            PARLM_OK ||
        (st = parlm_comm_check_agree(world, "sequence length", (uint64_t)(int64_t)T)) !=
            PARLM_OK ||
        (st = parlm_comm_check_agree(world, "data-parallel mode", (uint64_t)dpc->mode)) !=
            PARLM_OK ||
        (st = parlm_comm_check_agree(world, "data-parallel bucket bytes",
                                     (uint64_t)dpc->bucket_bytes)) != PARLM_OK)
        return st;
    if (dpc->mode == PARLM_DP_LOCAL)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_pp_create: local SGD (each replica "
                           "stepping alone) is not composed with the grid: sync, overlap or "
                           "zero1");
    if ((unsigned)dpc->mode > PARLM_DP_ZERO1)
        return parlm_error(PARLM_EINVAL, "parlm_pp_create: unknown data-parallel mode %d",
                           (int)dpc->mode);
    parlm_gpt_config mc = parlm_gpt_get_config(m);
    parlm_gpt_shard sh = parlm_gpt_get_shard(m), want = parlm_grid_shard(g);
    parlm_grid_config gc = parlm_grid_get_config(g);
    int64_t n = (int64_t)B * T * mc.n_embd;
    st = PARLM_OK;
    if (B < 1 || T < 1 || T > mc.max_seq)
        st = parlm_error(PARLM_EINVAL,
                         "parlm_pp_create: micro-batch %d x %d (T must be in [1, %d])", B, T,
                         mc.max_seq);
    else if (n > INT32_MAX)
        st = parlm_error(PARLM_EUNSUPPORTED,
                         "parlm_pp_create: a stage boundary of %lld floats exceeds one MPI message",
                         (long long)n);
    else if (sh.tp != want.tp || sh.tp_rank != want.tp_rank ||
             sh.layer_begin != want.layer_begin || sh.layer_end != want.layer_end)
        st = parlm_error(PARLM_EINVAL,
                         "parlm_pp_create: the model is shard tp %d/%d layers [%d, %d), the grid "
                         "gives this rank tp %d/%d layers [%d, %d)",
                         sh.tp_rank, sh.tp, sh.layer_begin, sh.layer_end, want.tp_rank, want.tp,
                         want.layer_begin, want.layer_end);
    parlm_pp *pp = NULL;
    if (st == PARLM_OK) {
        pp = calloc(1, sizeof *pp);
        if (!pp)
            st = parlm_error(PARLM_ENOMEM, "parlm_pp_create: out of memory");
    }
    if (st == PARLM_OK) {
        pp->m = m;
        pp->g = g;
        pp->B = B, pp->T = T, pp->C = mc.n_embd, pp->n = n;
        pp->M = gc.micro_batches;
        pp->schedule = gc.schedule;
        pp->dpc = *dpc;
        pp->stage = parlm_grid_pp_rank(g);
        pp->nstages = parlm_grid_pp(g);
        pp->first = pp->stage == 0;
        pp->last = pp->stage == pp->nstages - 1;
        pp->slots = parlm_pp_max_in_flight(pp->schedule, pp->stage, pp->nstages, pp->M);
        pp->cap_ev = 16 * pp->M + 16;
        int S = pp->slots;
        pp->in = calloc((size_t)S, sizeof(float *));
        pp->out = calloc((size_t)S, sizeof(float *));
        pp->gout = calloc((size_t)S, sizeof(float *));
        pp->req = malloc(sizeof(MPI_Request) * NKINDS * (size_t)S);
        pp->req_ev = calloc((size_t)NKINDS * (size_t)S, sizeof(int));
        pp->ops = malloc(sizeof(parlm_pp_op) * 2 * (size_t)pp->M);
        pp->ev = malloc(sizeof(parlm_pp_event) * (size_t)pp->cap_ev);
        if (!pp->first)
            pp->gin = parlm_alloc((size_t)S * (size_t)n, sizeof(float));
        if (!pp->in || !pp->out || !pp->gout || !pp->req || !pp->req_ev || !pp->ops || !pp->ev ||
            (!pp->first && !pp->gin))
            st = parlm_error(PARLM_ENOMEM, "parlm_pp_create: out of memory");
    }
    if (st == PARLM_OK) {
        for (int j = 0; j < NKINDS * pp->slots; j++)
            pp->req[j] = MPI_REQUEST_NULL;
        st = parlm_pp_schedule_ops(pp->schedule, pp->stage, pp->nstages, pp->M, pp->ops);
        for (int k = 0; st == PARLM_OK && k < 2 * pp->M; k++)
            if (pp->ops[k].backward)
                pp->last_bwd = k;
    }
    if (st == PARLM_OK)
        st = parlm_gpt_setup_slots(m, B, T, 1, pp->slots);
    for (int k = 0; st == PARLM_OK && k < pp->slots; k++) {
        st = parlm_gpt_set_slot(m, k);
        pp->in[k] = parlm_gpt_stage_input(m);
        pp->gout[k] = parlm_gpt_stage_grad_output(m);
        if (st == PARLM_OK && ((!pp->first && !pp->in[k]) || (!pp->last && !pp->gout[k])))
            st = parlm_error(PARLM_EINVAL, "parlm_pp_create: the model has no stage buffers");
    }
    /* the tied embedding: wte on a first or last stage that is not both (a Llama model
     * with an untied head has none: its wte lives on the first stage only) */
    if (st == PARLM_OK)
        pp->untied = parlm_gpt_get_config(m).untied_head;
    for (int i = 0; st == PARLM_OK && pp->nstages > 1 && !pp->untied &&
                    i < parlm_gpt_num_tensors(m); i++) {
        const char *name;
        int layer;
        int64_t off, cnt;
        if (parlm_gpt_tensor_info(m, i, &name, &layer, &off, &cnt) == PARLM_OK &&
            strcmp(name, "wte") == 0)
            pp->wte_off = off, pp->wte_n = cnt;
    }
    if (st == PARLM_OK && pp->nstages > 1 && !pp->untied && (pp->first || pp->last) &&
        pp->wte_n == 0)
        st = parlm_error(PARLM_EINVAL, "parlm_pp_create: an end stage without the token embedding");
    if (st == PARLM_OK && (parlm_comm_get_mpi(world, &pp->world) != PARLM_OK ||
                           parlm_grid_pp_mpi(g, &pp->p2p) != PARLM_OK))
        st = PARLM_EINVAL;
    /* all ranks go on, or none */
    int bad = st != PARLM_OK, any = bad;
    MPI_Comm wc;
    if (parlm_comm_get_mpi(world, &wc) == PARLM_OK &&
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, wc) != MPI_SUCCESS)
        any = 1;
    if (any && st == PARLM_OK)
        st = parlm_error(PARLM_EINVAL, "parlm_pp_create failed on another rank");
    /* replicas of a shard: data parallelism over the dp group (gradients in the node's
     * shared memory, dp rank 0's parameters and step; ZeRO-1 takes its slice of a loaded
     * AdamW state) */
    if (st == PARLM_OK && parlm_grid_dp(g) > 1)
        st = parlm_dp_create(&pp->dp, m, parlm_grid_comm(g, PARLM_GRID_DP), dpc);
    if (st == PARLM_OK)
        st = parlm_gpt_set_cancel(m, progress, pp);
    if (st != PARLM_OK) {
        if (pp)
            release(pp);
        return st;
    }
    pp->stats.slots = pp->slots;
    pp->stats.activation_bytes = parlm_gpt_activation_bytes(m);
    *out = pp;
    return PARLM_OK;
}

void parlm_pp_free(parlm_pp *pp)
{
    if (!pp)
        return;
    for (int j = 0; j < NKINDS * pp->slots; j++)
        if (pp->req[j] != MPI_REQUEST_NULL) {
            MPI_Cancel(&pp->req[j]);
            MPI_Request_free(&pp->req[j]);
        }
    parlm_gpt_set_cancel(pp->m, NULL, NULL);
    release(pp);
}

/* the schedule's ops, in order */
static parlm_status run_ops(parlm_pp *pp, const int32_t *inputs, const int32_t *targets,
                            double *loss_sum, double *last_end)
{
    parlm_gpt *m = pp->m;
    int64_t bt = (int64_t)pp->B * pp->T;
    parlm_status st = PARLM_OK;
    for (int i = 0; st == PARLM_OK && i < pp->slots && i < pp->M; i++)
        st = post_recvs(pp, i, i);
    for (int k = 0; st == PARLM_OK && k < 2 * pp->M; k++) {
        int mb = pp->ops[k].mb, slot = mb % pp->slots;
        if ((st = parlm_gpt_set_slot(m, slot)) != PARLM_OK)
            break;
        if (!pp->ops[k].backward) {
            if (!pp->first && (st = wait_req(pp, RECV_ACT, slot, mb)) != PARLM_OK)
                break;
            if (!pp->last && (st = wait_req(pp, SEND_ACT, slot, mb)) != PARLM_OK)
                break;
            float loss = 0;
            double t0 = now();
            st = parlm_gpt_forward(m, pp->first ? inputs + mb * bt : NULL,
                                   pp->last ? targets + mb * bt : NULL, &loss);
            double t1 = now();
            if (st != PARLM_OK)
                break;
            pp->stats.compute += t1 - t0;
            add_event(pp, "forward", PARLM_PP_LANE_COMPUTE, mb, t0, t1, 0);
            if (pp->last)
                *loss_sum += loss; /* in micro-batch order, as one process accumulating */
            else if (!(pp->out[slot] = (float *)parlm_gpt_stage_output(m)))
                st = parlm_error(PARLM_EINVAL, "pipeline: stage %d has no output", pp->stage);
            else
                st = post(pp, SEND_ACT, slot, mb);
        } else {
            if (!pp->last && (st = wait_req(pp, RECV_GRAD, slot, mb)) != PARLM_OK)
                break;
            if (!pp->first && (st = wait_req(pp, SEND_GRAD, slot, mb)) != PARLM_OK)
                break;
            /* the output's send is long done (the next stage sent this gradient back), but
             * its request must be completed before the slot's buffers are reused */
            if (!pp->last && (st = wait_req(pp, SEND_ACT, slot, mb)) != PARLM_OK)
                break;
            /* the last backward lets overlap start the final gradients' buckets */
            double t0 = now();
            st = pp->dp ? parlm_dp_backward(pp->dp, 1.0f / (float)pp->M, k == pp->last_bwd)
                        : parlm_gpt_backward(m, 1.0f / (float)pp->M);
            double t1 = now();
            if (st != PARLM_OK)
                break;
            *last_end = t1;
            pp->stats.compute += t1 - t0;
            add_event(pp, "backward", PARLM_PP_LANE_COMPUTE, mb, t0, t1, 0);
            if (!pp->first) {
                memcpy(pp->gin + (size_t)slot * (size_t)pp->n, parlm_gpt_stage_grad_input(m),
                       (size_t)pp->n * sizeof(float));
                st = post(pp, SEND_GRAD, slot, mb);
            }
            if (st == PARLM_OK && mb + pp->slots < pp->M)
                st = post_recvs(pp, slot, mb + pp->slots);
        }
    }
    if (st == PARLM_ECANCELED && pp->mpi_failed)
        st = parlm_error(PARLM_ESYSTEM, "pipeline: testing transfers failed");
    for (int s = 0; st == PARLM_OK && s < pp->slots; s++)
        for (int kind = 0; st == PARLM_OK && kind < NKINDS; kind++)
            st = wait_req(pp, kind, s, -1);
    return st;
}

parlm_status parlm_pp_run(parlm_pp *pp, const int32_t *inputs, const int32_t *targets, float *loss)
{
    if (!pp)
        return parlm_error(PARLM_EINVAL, "parlm_pp_run: null pipeline");
    if ((pp->first && !inputs) || (pp->last && !targets))
        return parlm_error(PARLM_EINVAL, "parlm_pp_run: stage %d needs %s", pp->stage,
                           pp->first && !inputs ? "inputs" : "targets");
    double t_start = now();
    pp->nev = 0;
    pp->mpi_failed = PARLM_OK;
    memset(&pp->stats, 0, sizeof pp->stats);
    pp->stats.slots = pp->slots;
    pp->stats.activation_bytes = parlm_gpt_activation_bytes(pp->m);
    parlm_status st = parlm_gpt_zero_grad(pp->m);
    double loss_sum = 0, last_end = t_start;
    if (st == PARLM_OK)
        st = run_ops(pp, inputs, targets, &loss_sum, &last_end);
    if (last_end > t_start)
        pp->stats.bubble = 1 - pp->stats.compute / (last_end - t_start);
    /* a failed stage leaves its peers waiting: the status of every rank is shared first
     * (MPI errors above are fatal to the job in practice; this catches model errors) */
    int bad = st != PARLM_OK, any = bad;
    if (MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, pp->world) != MPI_SUCCESS)
        any = 1;
    if (st != PARLM_OK)
        return st;
    if (any)
        return parlm_error(PARLM_EINVAL, "parlm_pp_run: another stage failed");
    float *grads = parlm_gpt_grads(pp->m);
    /* the tied embedding: the head's part (last stage) + the lookup's (first stage) */
    parlm_comm *embed = parlm_grid_comm(pp->g, PARLM_GRID_EMBED);
    if (pp->nstages > 1 && embed && !pp->untied) {
        double t0 = now();
        st = parlm_allreduce(embed, grads + pp->wte_off, pp->wte_n, PARLM_REDUCE_SUM, 0);
        double t1 = now();
        pp->stats.tied = t1 - t0;
        add_event(pp, "tied wte", PARLM_PP_LANE_COMPUTE, -1, t0, t1,
                  pp->wte_n * (int64_t)sizeof(float));
    }
    if (st == PARLM_OK && pp->dp) {
        static const char *const names[] = {"dp all-reduce", "dp overlap wait",
                                            "dp reduce-scatter"};
        double t0 = now();
        st = parlm_dp_exchange(pp->dp);
        double t1 = now();
        pp->stats.dp = t1 - t0;
        add_event(pp, names[pp->dpc.mode], PARLM_PP_LANE_COMPUTE, -1, t0, t1,
                  parlm_gpt_num_params(pp->m) * (int64_t)sizeof(float));
    }
    /* the loss: the last stages' means (tensor-parallel rank 0 of each), averaged over dp */
    double x = pp->last && parlm_grid_tp_rank(pp->g) == 0 ? loss_sum / pp->M : 0, sum = 0;
    if (st == PARLM_OK && MPI_Allreduce(&x, &sum, 1, MPI_DOUBLE, MPI_SUM, pp->world) != MPI_SUCCESS)
        st = parlm_error(PARLM_ESYSTEM, "parlm_pp_run: MPI_Allreduce of the loss failed");
    if (st == PARLM_OK && loss)
        *loss = (float)(sum / parlm_grid_dp(pp->g));
    pp->stats.run = now() - t_start;
    return st;
}

/* *sum = sum of squares of the gradients of the owned tensors within [lo, lo + n), by runs
 * of consecutive ones (as parlm_gpt_grad_sumsq does over the whole buffer) */
static parlm_status owned_sumsq(parlm_gpt *m, int64_t lo, int64_t n, double *sum)
{
    const float *g = parlm_gpt_grads(m);
    int64_t a = 0, b = 0; /* the current run */
    double total = 0;
    for (int i = 0, nt = parlm_gpt_num_tensors(m); i <= nt; i++) {
        int64_t s = 0, e = 0;
        parlm_gpt_slice sl = {0};
        if (i < nt) {
            int64_t off, cnt;
            parlm_status st = parlm_gpt_tensor_info(m, i, NULL, NULL, &off, &cnt);
            if (st == PARLM_OK)
                st = parlm_gpt_tensor_slice(m, i, &sl);
            if (st != PARLM_OK)
                return st;
            s = off > lo ? off : lo;
            e = off + cnt < lo + n ? off + cnt : lo + n;
            if (sl.owner && e > s && s == b && b > a) { /* extends the run */
                b = e;
                continue;
            }
        }
        if (b > a) {
            double x;
            parlm_status st = parlm_sumsq(g + a, b - a, &x);
            if (st != PARLM_OK)
                return st;
            total += x;
        }
        a = b = 0;
        if (sl.owner && e > s)
            a = s, b = e;
    }
    *sum = total;
    return PARLM_OK;
}

parlm_status parlm_pp_gather_state(parlm_pp *pp)
{
    if (!pp)
        return parlm_error(PARLM_EINVAL, "parlm_pp_gather_state: null pipeline");
    return pp->dp ? parlm_dp_gather_state(pp->dp) : PARLM_OK;
}

parlm_status parlm_pp_update(parlm_pp *pp, const parlm_adamw_cfg *cfg, float grad_clip,
                             float *grad_norm)
{
    if (!pp || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_pp_update: null argument");
    double t0 = now(), mine = 0, sum = 0;
    /* every tensor once: the owned ones, each replica summing its dp block (ZeRO-1 holds
     * only that block averaged; the same partition in every mode gives the same norm) */
    parlm_status st;
    if (pp->dp) {
        int64_t off, n;
        parlm_dp_block(pp->dp, &off, &n);
        st = owned_sumsq(pp->m, off, n, &mine);
    } else {
        st = parlm_gpt_grad_sumsq(pp->m, 1, &mine);
    }
    int bad = st != PARLM_OK;
    double send[2] = {mine, bad}, recv[2] = {0, 0};
    if (MPI_Allreduce(send, recv, 2, MPI_DOUBLE, MPI_SUM, pp->world) != MPI_SUCCESS)
        return parlm_error(PARLM_ESYSTEM, "parlm_pp_update: MPI_Allreduce of the norm failed");
    if (st != PARLM_OK)
        return st;
    if (recv[1] != 0)
        return parlm_error(PARLM_EINVAL, "parlm_pp_update: another rank failed");
    sum = recv[0];
    float norm = (float)sqrt(sum);
    if (grad_norm)
        *grad_norm = norm;
    if (!isfinite(norm))
        return parlm_error(PARLM_EINVAL, "parlm_pp_update: the gradient norm is %g", (double)norm);
    float scale = grad_clip > 0 && norm > grad_clip ? grad_clip / norm : 1.0f;
    st = pp->dp ? parlm_dp_apply(pp->dp, cfg, scale)
                : parlm_gpt_optimizer_step_scale(pp->m, cfg, scale);
    double t1 = now();
    pp->stats.update = t1 - t0;
    add_event(pp, "update", PARLM_PP_LANE_COMPUTE, -1, t0, t1, 0);
    return st;
}

parlm_pp_stats parlm_pp_get_stats(const parlm_pp *pp)
{
    parlm_pp_stats z = {0};
    return pp ? pp->stats : z;
}

int parlm_pp_get_events(const parlm_pp *pp, const parlm_pp_event **events)
{
    if (!pp || !events)
        return 0;
    *events = pp->ev;
    return pp->nev;
}

const parlm_dp *parlm_pp_dp(const parlm_pp *pp) { return pp ? pp->dp : NULL; }
