/* parlm/grid.h — the process grid of model-parallel training: the ranks of a parlm_comm
 * split into dp x tp x pp, tp innermost, then pp, then dp: rank = (d*pp + p)*tp + t, so a
 * tensor-parallel group is consecutive ranks (one node when launchers fill nodes in order)
 * and data parallelism, whose traffic is one exchange per step, is outermost. Layers are
 * split into pp stages balanced by cost (the first stage also embeds tokens, the last
 * also runs the LM head and the loss). Everything is checked before anything is allocated. */
#ifndef PARLM_GRID_H
#define PARLM_GRID_H
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "model.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pipeline schedules ---------------------------------------------------------
 * GPipe: every forward, then every backward (M micro-batches of activations in flight).
 * 1F1B (PipeDream-Flush): stage s runs min(pp - s - 1, M) forwards, then alternates one
 * forward and one backward, then the remaining backwards; at most pp - s micro-batches are
 * in flight on stage s, the same bubble as GPipe. Both run backwards in micro-batch order
 * (0, 1, ..., M-1) on every stage, so gradients accumulate in the same order. */
typedef enum parlm_pp_schedule {
    PARLM_PP_GPIPE = 0,
    PARLM_PP_1F1B = 1,
} parlm_pp_schedule;
PARLM_API const char *parlm_pp_schedule_name(parlm_pp_schedule s); /* "gpipe", "1f1b" */
PARLM_API parlm_status parlm_pp_schedule_parse(const char *name, parlm_pp_schedule *out);

typedef struct parlm_pp_op {
    int backward; /* 0: forward, 1: backward */
    int mb;       /* micro-batch 0 .. M-1 */
} parlm_pp_op;

/* The 2M operations stage `stage` of pp runs in one step, in order, into ops (2M).
 * Errors: PARLM_EINVAL (pp < 1, stage outside [0, pp), M < 1, NULL ops, unknown kind). */
PARLM_API parlm_status parlm_pp_schedule_ops(parlm_pp_schedule kind, int stage, int pp, int M,
                                             parlm_pp_op *ops);
/* Micro-batches whose activations a stage holds at once: M for GPipe, min(M, pp - stage)
 * for 1F1B (the number of slots it needs, parlm_gpt_setup_slots). 0 for bad arguments. */
PARLM_API int parlm_pp_max_in_flight(parlm_pp_schedule kind, int stage, int pp, int M);

/* ---- layouts ------------------------------------------------------------------------ */
typedef struct parlm_grid_config {
    int tp, pp;                 /* dp = ranks / (tp * pp) */
    int micro_batches;          /* M per step and dp rank (>= 1) */
    parlm_pp_schedule schedule;
    int seq_len;                /* T, for the cost of attention (0: the model's max_seq) */
    int allow_tp_across_nodes;  /* 0: a tensor-parallel group spanning nodes is refused */
} parlm_grid_config;

/* Whether a layout can train this model on nranks ranks (no MPI needed): ranks % (tp*pp),
 * heads % tp, 4C % tp and vocab_pad % tp (parlm_gpt_shard_check), layers >= pp,
 * micro_batches >= pp for 1F1B. The message names the values and the rule. */
PARLM_API parlm_status parlm_grid_check(const parlm_gpt_config *cfg, int nranks,
                                        const parlm_grid_config *gc);
/* With node[r] = node index of rank r (nranks entries): refused if a tensor-parallel group
 * would span nodes (its two all-reduces per half-block are latency-bound: they need
 * shared memory), naming the group, its ranks and their nodes, and saying how to allow it. */
PARLM_API parlm_status parlm_grid_check_nodes(int nranks, const parlm_grid_config *gc,
                                              const int *node);

/* Coordinates of rank r in a grid of dp x tp x pp (rank = (d*pp + p)*tp + t). */
PARLM_API void parlm_grid_coords(int rank, int tp, int pp, int *d, int *t, int *p);

/* Relative cost (forward + backward FLOPs per token) of stage [begin, end) of the model,
 * with the token embedding if begin == 0 and the final layernorm, LM head and loss if end
 * == L; T is the sequence length (attention grows with it). In units of one layer's cost. */
PARLM_API double parlm_pp_stage_cost(const parlm_gpt_config *cfg, int T, int begin, int end);
/* Splits the L layers into pp contiguous stages of at least one layer each, minimizing the
 * cost of the most expensive stage, then the sum of squared stage costs (evenness): stage s holds
 * [bounds[s], bounds[s+1]), bounds has pp + 1 entries, bounds[0] = 0, bounds[pp] = L.
 * GPT-2 124M at T = 1024: the LM head costs about 5 layers, so pp = 2 gives 8 + 4. */
PARLM_API parlm_status parlm_pp_split(const parlm_gpt_config *cfg, int T, int pp, int *bounds);

/* ---- the grid over MPI ------------------------------------------------------------ */
typedef struct parlm_grid parlm_grid;

typedef enum parlm_grid_group {
    PARLM_GRID_WORLD = 0, /* every rank of the grid (the caller's comm) */
    PARLM_GRID_DP = 1,    /* same (tp, pp): averages a shard's gradients */
    PARLM_GRID_TP = 2,    /* same (dp, pp): the tensor-parallel collectives */
    PARLM_GRID_PP = 3,    /* same (dp, tp): the stages of one pipeline, rank = stage */
    PARLM_GRID_EMBED = 4, /* {first stage, last stage} of one pipeline: the tied wte's
                           * gradient sum; NULL on middle stages (a single rank if pp = 1) */
} parlm_grid_group;

/* Collective over world. Checks the layout (parlm_grid_check; the node map of world with
 * parlm_grid_check_nodes) on every rank before allocating anything, then creates one
 * parlm_comm per group. A failure on any rank fails it on every rank with the same kind
 * (the message of the rank that failed). world must outlive the grid. */
PARLM_API parlm_status parlm_grid_create(parlm_grid **out, parlm_comm *world,
                                         const parlm_gpt_config *cfg,
                                         const parlm_grid_config *gc);
PARLM_API void parlm_grid_free(parlm_grid *g); /* collective; NULL is a no-op */

PARLM_API parlm_grid_config parlm_grid_get_config(const parlm_grid *g);
/* sizes and this rank's coordinates (-1 for NULL) */
PARLM_API int parlm_grid_dp(const parlm_grid *g);
PARLM_API int parlm_grid_tp(const parlm_grid *g);
PARLM_API int parlm_grid_pp(const parlm_grid *g);
PARLM_API int parlm_grid_dp_rank(const parlm_grid *g);
PARLM_API int parlm_grid_tp_rank(const parlm_grid *g);
PARLM_API int parlm_grid_pp_rank(const parlm_grid *g);
PARLM_API parlm_comm *parlm_grid_comm(const parlm_grid *g, parlm_grid_group group);
/* A communicator of the pipeline group for point-to-point traffic (stage s is rank s),
 * separate from every parlm_comm's: writes an MPI_Comm into *(MPI_Comm *)mpi_comm_out. */
PARLM_API parlm_status parlm_grid_pp_mpi(const parlm_grid *g, void *mpi_comm_out);
/* This rank's shard, and the layer range of any stage. */
PARLM_API parlm_gpt_shard parlm_grid_shard(const parlm_grid *g);
PARLM_API void parlm_grid_stage_layers(const parlm_grid *g, int stage, int *begin, int *end);

/* The plan, identical on every rank: one line per rank with its dp/tp/pp coordinates,
 * layers, heads, vocabulary rows, stage cost, node (host name) and the socket or cores
 * its threads take (parlm_rank_share of its node). Returns the text (owned by the grid). */
PARLM_API const char *parlm_grid_plan(const parlm_grid *g);

#ifdef __cplusplus
}
#endif
#endif
