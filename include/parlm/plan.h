/* parlm/plan.h — the cost model and the layout planner (issue 14), pure functions, no MPI.
 * A machine profile (rates, link latency/bandwidth) and a cluster shape turn every
 * (dp, tp, pp, micro-batches, schedule, ZeRO-1, overlap) layout into a predicted step
 * time split into named terms; the largest term is the bottleneck. Models: the GPT-2 family
 * and Llama (the config's arch: GQA, SwiGLU, RMSNorm, RoPE, tied or untied head). */
#ifndef PARLM_PLAN_H
#define PARLM_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARLM_PLAN_NAME 32
#define PARLM_PLAN_MAX_GEMM 64
#define PARLM_PLAN_MAX_LINKS 8

/* One measured GEMM shape: a linear layer of m tokens, k inputs, n outputs ran its forward
 * and both backward GEMMs (3 x 2 m n k FLOPs) at flops FLOP/s on one core (f32). */
typedef struct parlm_plan_gemm_point {
    double m, n, k, flops;
} parlm_plan_gemm_point;

/* A link class: time of a message of n bytes = alpha + n * beta; allreduce_* are the
 * per-step latency and per-byte cost a ring all-reduce sees on it. */
typedef struct parlm_plan_link {
    char name[PARLM_PLAN_NAME];
    double p2p_alpha, p2p_beta;             /* s, s/byte */
    double allreduce_alpha, allreduce_beta; /* s, s/byte */
} parlm_plan_link;

/* The non-GEMM work of a step, each op's forward and backward together, measured on one
 * core in elements per second (elements, not bytes: each op's mix of reads, writes and
 * math is folded into its own rate, so the planner only counts an op's width per token).
 * An element is: one of a layernorm row; one GELU input; one residual-add output; one
 * bias-add output (and its bias-grad share); one logit of the cross-entropy; one parameter
 * of the optimizer (gradient norm, AdamW, zeroing the gradient); Llama's: one of an
 * RMSNorm row; one rotated element of q or k (RoPE); one SwiGLU output. The Llama ops are
 * optional in a profile (calibrates before them did not measure them): a rate of 0 takes
 * layernorm's for RMSNorm, residual's for RoPE and GELU's for SwiGLU. */
typedef enum parlm_plan_ew {
    PARLM_PLAN_EW_LAYERNORM = 0,
    PARLM_PLAN_EW_GELU,
    PARLM_PLAN_EW_RESIDUAL,
    PARLM_PLAN_EW_BIAS,
    PARLM_PLAN_EW_CROSSENTROPY,
    PARLM_PLAN_EW_ADAMW,
    PARLM_PLAN_EW_RMSNORM,
    PARLM_PLAN_EW_ROPE,
    PARLM_PLAN_EW_SWIGLU,
    PARLM_PLAN_NEW
} parlm_plan_ew;

typedef struct parlm_plan_profile {
    double fma_peak_f32, fma_peak_bf16; /* FLOP/s per core */
    int n_gemm;                         /* >= 1 */
    parlm_plan_gemm_point gemm[PARLM_PLAN_MAX_GEMM];
    double attention_flops;  /* FLOP/s per core of the attention kernels */
    double stream_bandwidth; /* bytes/s of one node (STREAM triad) */
    /* elements/s per core (parlm_plan_ew); the GPT-2 ops all 0: a profile of an older
     * calibrate, which loads (its links can be copied) but does not plan: estimates refuse
     * it by name. The Llama ops may be 0 (see parlm_plan_ew). */
    double ew_rate[PARLM_PLAN_NEW];
    int n_links;
    parlm_plan_link links[PARLM_PLAN_MAX_LINKS];
} parlm_plan_profile;

typedef struct parlm_plan_cluster {
    int nodes, sockets, cores_per_socket; /* per node: sockets x cores_per_socket */
    double memory_per_node;               /* bytes */
    char intra_link[PARLM_PLAN_NAME];     /* a link name of the profile */
    char inter_link[PARLM_PLAN_NAME];
} parlm_plan_cluster;

typedef struct parlm_plan_layout {
    int dp, tp, pp, micro_batches;
    int schedule; /* a parlm_pp_schedule (parlm/grid.h): 0 GPipe, 1 1F1B */
    int zero1, overlap, bf16;
    int threads; /* cores per rank */
} parlm_plan_layout;

/* The terms of a step, in seconds; step = compute + elementwise + tp + bubble + p2p +
 * dp_exposed + optimizer. */
typedef enum parlm_plan_term {
    PARLM_PLAN_COMPUTE = 0, /* M micro-batches of GEMMs and attention on the slowest stage */
    PARLM_PLAN_TP,          /* Megatron all-reduces: 2 forward + 2 backward per layer */
    PARLM_PLAN_BUBBLE,      /* (pp - 1) idle micro-batch slots of the pipeline */
    PARLM_PLAN_P2P,         /* activations and their gradients between stages */
    PARLM_PLAN_DP,          /* the gradient all-reduce, the part overlap does not hide */
    PARLM_PLAN_OPTIMIZER,   /* gradient norm + AdamW + zeroing of the rank's parameters */
    PARLM_PLAN_ELEMENTWISE, /* M micro-batches of layernorm, GELU, residual, bias, loss */
    PARLM_PLAN_NTERMS
} parlm_plan_term;

typedef struct parlm_plan_estimate {
    double term[PARLM_PLAN_NTERMS];
    /* the elementwise and optimizer terms by op: [PARLM_PLAN_EW_ADAMW] is the optimizer
     * term, the others sum to the elementwise term */
    double ew[PARLM_PLAN_NEW];
    double dp_total, dp_hidden; /* the whole gradient all-reduce, and what overlap hides */
    double step;                /* s */
    double tokens_per_s;
    double eta;                 /* T1 / (cores * step), T1 = the step on one core */
    double mem_params, mem_grads, mem_optim, mem_act, mem_total; /* bytes, worst rank */
    double mem_limit;           /* bytes a rank may use: node memory / ranks per node */
    parlm_plan_term bottleneck;
} parlm_plan_estimate;

/* What to plan: model, global batch (sequences per step), sequence length, ranks. */
typedef struct parlm_plan_request {
    parlm_gpt_config model;
    int global_batch, seq_len;
    int ranks; /* a multiple of cluster.nodes, at most one per core */
    int bf16;
} parlm_plan_request;

typedef struct parlm_plan_entry {
    parlm_plan_layout layout;
    parlm_plan_estimate est;
    int excluded;     /* 1: does not fit or breaks a grid rule; reason says which */
    char reason[256];
} parlm_plan_entry;

PARLM_API const char *parlm_plan_term_name(parlm_plan_term t);
/* An elementwise op's name: its key in the profile's "elementwise" object */
PARLM_API const char *parlm_plan_ew_name(parlm_plan_ew op);
/* A layout's schedule by name ("gpipe", "1f1b"): parlm/grid.h is installed only by MPI
 * builds, the planner everywhere. */
PARLM_API const char *parlm_plan_schedule_name(int schedule);

/* Forward FLOPs per token (matmuls and attention, the count parlm-train uses for MFU:
 * forward + backward = 3x forward) of the whole model at sequence length T. GPT-2: 2 per
 * parameter of the layers (biases and layernorms too) and of the head (wte and the final
 * layernorm), plus attention 2 C T a layer. Llama: 2 per weight of the matmuls (wq, wo
 * C x C; wk, wv NKV hs x C; w_gate, w_up F x C; w_down C x F; the head Vp x C, tied or
 * not), plus attention 2 C T a layer (QK^T and AV of NH heads over T/2 keys on average;
 * GQA shares K and V, not the FLOPs). */
PARLM_API double parlm_plan_gpt_flops_per_token(const parlm_gpt_config *cfg, int T);

/* Cost of a ring all-reduce of n bytes over p ranks: 2(p-1)/p n beta + 2(p-1) alpha. */
PARLM_API double parlm_plan_ring_allreduce(double n, int p, double alpha, double beta);

/* The f32 GEMM rate (FLOP/s per core) at (m, n, k): the profile's points weighted by
 * 1 / d^4, d their distance in (log m, log n, log k) (a measured shape: its own rate;
 * beyond the points the nearest dominates). */
PARLM_API double parlm_plan_gemm_rate(const parlm_plan_profile *pr, double m, double n, double k);

/* Estimates one layout; PARLM_EINVAL if it breaks a grid rule (message says which).
 * A layout that does not fit in memory still gets an estimate: compare mem_total, mem_limit.
 * Llama is split as Megatron-LM does: tp divides the query heads, the KV heads (each rank
 * holds NKV/tp of them, never a replica: tp > NKV is refused), the SwiGLU width F and the
 * padded vocabulary; RMSNorm weights are replicated. Stages are balanced as for GPT-2
 * (parlm_pp_split). */
PARLM_API parlm_status parlm_plan_estimate_layout(const parlm_plan_profile *pr,
                                                  const parlm_plan_cluster *cl,
                                                  const parlm_plan_request *rq,
                                                  const parlm_plan_layout *lay,
                                                  parlm_plan_estimate *est);

/* Every layout of rq->ranks ranks: dp*tp*pp = ranks, M dividing the per-replica batch,
 * GPipe and 1F1B when pp > 1, ZeRO-1 and overlap on/off when dp > 1. Feasible entries
 * first, sorted by step time, then the excluded ones with their reason. *out is malloc'd
 * (free() it); *n its length. */
PARLM_API parlm_status parlm_plan_enumerate(const parlm_plan_profile *pr,
                                            const parlm_plan_cluster *cl,
                                            const parlm_plan_request *rq,
                                            parlm_plan_entry **out, int *n);

/* Least squares t = alpha + beta * bytes over n >= 2 samples (at least two distinct sizes,
 * times > 0), in relative terms (weights 1/t^2: 8 B and 64 MB messages count alike); it
 * minimizes rel_rms = sqrt(mean(((fit - t) / t)^2)), which is returned. */
PARLM_API parlm_status parlm_plan_fit_alpha_beta(const double *bytes, const double *seconds,
                                                 int n, double *alpha, double *beta,
                                                 double *rel_rms);

/* JSON files (untrusted: errors name the file and the field). */
PARLM_API parlm_status parlm_plan_profile_load(const char *path, parlm_plan_profile *pr);
PARLM_API parlm_status parlm_plan_profile_save(const char *path, const parlm_plan_profile *pr);
PARLM_API parlm_status parlm_plan_cluster_load(const char *path, parlm_plan_cluster *cl);
PARLM_API parlm_status parlm_plan_cluster_save(const char *path, const parlm_plan_cluster *cl);
/* The result as JSON: request, then every entry with its terms. */
PARLM_API parlm_status parlm_plan_save(const char *path, const parlm_plan_request *rq,
                                       const parlm_plan_entry *e, int n);
/* Reads a file parlm_plan_save wrote back: the request (model shape, batch, ranks) and
 * every entry's layout, excluded flag, reason and est.step (the other estimate fields are
 * 0). Errors name the file and the field. *out is malloc'd (free() it). */
PARLM_API parlm_status parlm_plan_load(const char *path, parlm_plan_request *rq,
                                       parlm_plan_entry **out, int *n);

/* A straggler's cost: the mean step time (seconds, over `steps` steps from a common
 * start) of p data-parallel ranks whose steps take `compute` each, plus slow_extra on the
 * slow rank (slow_rank: a rank, -1 none, -2 rotating: rank c mod p at step c), under mode
 * "sync" (every step waits for all, then the exchange), "local" (local SGD: ranks meet
 * every k = H steps, the exchange then) or "async" (bounded staleness k = S: a rank starts
 * step c once update c-S-1, the last push of that step plus the exchange, is in). */
PARLM_API parlm_status parlm_plan_straggler(const char *mode, int p, int k, double compute,
                                            double slow_extra, int slow_rank, double exchange,
                                            int steps, double *step_seconds);

#ifdef __cplusplus
}
#endif
#endif
