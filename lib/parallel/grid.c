/* lib/parallel/grid.c — the process grid over MPI (see parlm/grid.h): agreement and layout
 * checks first (every rank reaches the same verdict from the same inputs, so all stop
 * together), then MPI_Comm_split into the dp, tp, pp and embedding groups, each wrapped
 * in a parlm_comm, plus one more duplicate of the pipeline group whose only traffic is the
 * stages' point-to-point messages (so their tags never meet a collective's). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../numa/topo.h"
#include "../../base/error.h"
#include "parlm/grid.h"
#include "parlm/topo.h"

#define PLAN_LINE 256
#define NGROUPS 5

struct parlm_grid {
    parlm_gpt_config mc;
    parlm_grid_config gc;
    int dp, tp, pp, d, t, p;
    parlm_comm *comm[NGROUPS]; /* [PARLM_GRID_WORLD] is the caller's */
    MPI_Comm p2p;
    int *bounds; /* pp + 1 */
    char *plan;
};

/* The socket (or share of cores) this rank's threads take: what parlm_place_threads
 * would bind them to, with the package of its first core. */
static void socket_desc(int local_rank, int local_size, char *out, size_t len)
{
    const parlm_topo *topo;
    int pus[256], n = 0;
    char share[64];
    snprintf(out, len, "socket ?");
    if (parlm_topo_system(&topo) != PARLM_OK ||
        parlm_rank_share(topo, local_rank, local_size, pus, 256, &n, share, sizeof share) !=
            PARLM_OK ||
        n < 1) {
        parlm_clear_error();
        return;
    }
    if (strncmp(share, "socket", 6) == 0) {
        snprintf(out, len, "%s", share);
        return;
    }
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(parlm_topo_hwloc(topo), (unsigned)pus[0]);
    hwloc_obj_t pkg = pu ? parlm_topo_package_of(pu) : NULL;
    snprintf(out, len, "socket %d, %s", pkg ? parlm_topo_os_index(pkg) : 0, share);
}

static void plan_line(const parlm_grid *g, int rank, int node, int local_rank, int local_size,
                      char *out)
{
    int b = g->bounds[g->p], e = g->bounds[g->p + 1];
    int NH = g->mc.n_head, Vp = g->mc.vocab_pad;
    char vocab[48] = "-", host[MPI_MAX_PROCESSOR_NAME] = "?", sock[96];
    int hl = 0;
    if (MPI_Get_processor_name(host, &hl) != MPI_SUCCESS)
        snprintf(host, sizeof host, "?");
    if (b == 0 || e == g->mc.n_layer)
        snprintf(vocab, sizeof vocab, "%d..%d", (int)((int64_t)g->t * Vp / g->tp),
                 (int)((int64_t)(g->t + 1) * Vp / g->tp) - 1);
    socket_desc(local_rank, local_size, sock, sizeof sock);
    int T = g->gc.seq_len ? g->gc.seq_len : g->mc.max_seq;
    snprintf(out, PLAN_LINE,
             "rank %d: dp %d tp %d pp %d | layers %d..%d%s%s (cost %.2f layers) | heads %d..%d "
             "| vocab rows %s | node %d (%s), %s\n",
             rank, g->d, g->t, g->p, b, e - 1, b == 0 ? " +embedding" : "",
             e == g->mc.n_layer ? " +head" : "", parlm_pp_stage_cost(&g->mc, T, b, e),
             g->t * NH / g->tp, (g->t + 1) * NH / g->tp - 1, vocab, node, host, sock);
}

/* every rank learns whether any failed; the failing ones keep their message, the others
 * get one naming the first failed rank */
static parlm_status vote(MPI_Comm wc, parlm_status st, const char *what)
{
    int code = st == PARLM_OK ? 0 : -st, got = 0;
    if (MPI_Allreduce(&code, &got, 1, MPI_INT, MPI_MAX, wc) != MPI_SUCCESS)
        return parlm_error(PARLM_ESYSTEM, "%s: MPI_Allreduce failed", what);
    if (got == 0)
        return PARLM_OK;
    if (st != PARLM_OK)
        return st;
    return parlm_error((parlm_status)-got, "%s failed on another rank", what);
}

static void grid_release(parlm_grid *g)
{
    for (int i = 1; i < NGROUPS; i++)
        parlm_comm_free(g->comm[i]);
    if (g->p2p != MPI_COMM_NULL)
        MPI_Comm_free(&g->p2p);
    free(g->bounds);
    free(g->plan);
    free(g);
}

parlm_status parlm_grid_create(parlm_grid **out, parlm_comm *world, const parlm_gpt_config *cfg,
                               const parlm_grid_config *gc)
{
    if (out)
        *out = NULL;
    if (!out || !world || !cfg || !gc)
        return parlm_error(PARLM_EINVAL, "parlm_grid_create: null argument");
    MPI_Comm wc;
    parlm_status st = parlm_comm_get_mpi(world, &wc);
    if (st != PARLM_OK)
        return st;
    int size = parlm_comm_size(world), rank = parlm_comm_rank(world);
    /* the same layout everywhere, or every rank stops naming the field */
    const struct {
        const char *name;
        int v;
    } fields[] = {{"tp", gc->tp},
                  {"pp", gc->pp},
                  {"micro-batches", gc->micro_batches},
                  {"schedule", (int)gc->schedule},
                  {"sequence length", gc->seq_len},
                  {"tp across nodes", gc->allow_tp_across_nodes},
                  {"n_layer", cfg->n_layer},
                  {"n_head", cfg->n_head},
                  {"n_embd", cfg->n_embd},
                  {"vocab", cfg->vocab},
                  {"vocab_pad", cfg->vocab_pad},
                  {"max_seq", cfg->max_seq}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if ((st = parlm_comm_check_agree(world, fields[i].name, (uint64_t)(int64_t)fields[i].v)) !=
            PARLM_OK)
            return st;
    /* from here every rank has the same inputs, so the checks agree too */
    if ((st = parlm_grid_check(cfg, size, gc)) != PARLM_OK)
        return st;
    int *node = malloc(sizeof(int) * (size_t)size);
    int mynode = parlm_comm_node(world);
    st = node ? PARLM_OK : parlm_error(PARLM_ENOMEM, "parlm_grid_create: out of memory");
    if ((st = vote(wc, st, "parlm_grid_create")) != PARLM_OK) {
        free(node);
        return st;
    }
    if (MPI_Allgather(&mynode, 1, MPI_INT, node, 1, MPI_INT, wc) != MPI_SUCCESS) {
        free(node);
        return parlm_error(PARLM_ESYSTEM, "parlm_grid_create: MPI_Allgather of nodes failed");
    }
    st = parlm_grid_check_nodes(size, gc, node);
    free(node);
    if (st != PARLM_OK)
        return st;

    parlm_grid *g = calloc(1, sizeof *g);
    if (g) {
        g->p2p = MPI_COMM_NULL;
        g->bounds = malloc(sizeof(int) * ((size_t)gc->pp + 1));
    }
    st = g && g->bounds ? PARLM_OK : parlm_error(PARLM_ENOMEM, "parlm_grid_create: out of memory");
    if (st == PARLM_OK) {
        g->mc = *cfg;
        if (g->mc.vocab_pad == 0)
            g->mc.vocab_pad = (g->mc.vocab + 127) / 128 * 128;
        g->gc = *gc;
        g->tp = gc->tp;
        g->pp = gc->pp;
        g->dp = size / (gc->tp * gc->pp);
        parlm_grid_coords(rank, g->tp, g->pp, &g->d, &g->t, &g->p);
        g->comm[PARLM_GRID_WORLD] = world;
        st = parlm_pp_split(&g->mc, gc->seq_len ? gc->seq_len : cfg->max_seq, g->pp, g->bounds);
    }
    if ((st = vote(wc, st, "parlm_grid_create")) != PARLM_OK) {
        if (g)
            grid_release(g);
        return st;
    }
    /* the groups: color picks the group, key orders its ranks */
    int first_last = g->p == 0 || g->p == g->pp - 1;
    const int color[NGROUPS] = {0, g->p * g->tp + g->t, g->d * g->pp + g->p, g->d * g->tp + g->t,
                                first_last ? g->d * g->tp + g->t : MPI_UNDEFINED};
    const int key[NGROUPS] = {0, g->d, g->t, g->p, g->p};
    for (int i = 1; i < NGROUPS; i++) {
        MPI_Comm sub = MPI_COMM_NULL;
        if (MPI_Comm_split(wc, color[i], key[i], &sub) != MPI_SUCCESS) {
            grid_release(g);
            return parlm_error(PARLM_ESYSTEM, "parlm_grid_create: MPI_Comm_split failed");
        }
        st = PARLM_OK;
        if (sub != MPI_COMM_NULL) {
            parlm_comm_config cc; /* the groups are tuned as world is */
            st = parlm_comm_get_config(world, &cc);
            if (st == PARLM_OK)
                st = parlm_comm_from_mpi(&g->comm[i], &sub, &cc);
            if (st == PARLM_OK && i == PARLM_GRID_PP && MPI_Comm_dup(sub, &g->p2p) != MPI_SUCCESS)
                st = parlm_error(PARLM_ESYSTEM, "parlm_grid_create: MPI_Comm_dup failed");
            MPI_Comm_free(&sub);
        }
        if ((st = vote(wc, st, "parlm_grid_create")) != PARLM_OK) {
            grid_release(g);
            return st;
        }
    }
    /* the plan: each rank writes its line, everyone gets all of them */
    char line[PLAN_LINE];
    memset(line, 0, sizeof line);
    plan_line(g, rank, parlm_comm_node(world), parlm_comm_local_rank(world),
              parlm_comm_local_size(world), line);
    char *all = malloc((size_t)size * PLAN_LINE);
    g->plan = malloc((size_t)size * PLAN_LINE + 1);
    st = all && g->plan ? PARLM_OK : parlm_error(PARLM_ENOMEM, "parlm_grid_create: out of memory");
    if ((st = vote(wc, st, "parlm_grid_create")) != PARLM_OK ||
        (MPI_Allgather(line, PLAN_LINE, MPI_CHAR, all, PLAN_LINE, MPI_CHAR, wc) != MPI_SUCCESS &&
         (st = parlm_error(PARLM_ESYSTEM, "parlm_grid_create: MPI_Allgather failed")))) {
        free(all);
        grid_release(g);
        return st;
    }
    size_t len = 0;
    for (int r = 0; r < size; r++) {
        const char *l = all + (size_t)r * PLAN_LINE;
        size_t n = strnlen(l, PLAN_LINE - 1);
        memcpy(g->plan + len, l, n);
        len += n;
    }
    g->plan[len] = 0;
    free(all);
    *out = g;
    return PARLM_OK;
}

void parlm_grid_free(parlm_grid *g)
{
    if (g)
        grid_release(g);
}

parlm_grid_config parlm_grid_get_config(const parlm_grid *g)
{
    parlm_grid_config z = {0};
    return g ? g->gc : z;
}

int parlm_grid_dp(const parlm_grid *g) { return g ? g->dp : -1; }
int parlm_grid_tp(const parlm_grid *g) { return g ? g->tp : -1; }
int parlm_grid_pp(const parlm_grid *g) { return g ? g->pp : -1; }
int parlm_grid_dp_rank(const parlm_grid *g) { return g ? g->d : -1; }
int parlm_grid_tp_rank(const parlm_grid *g) { return g ? g->t : -1; }
int parlm_grid_pp_rank(const parlm_grid *g) { return g ? g->p : -1; }

parlm_comm *parlm_grid_comm(const parlm_grid *g, parlm_grid_group group)
{
    if (!g || (int)group < 0 || (int)group >= NGROUPS)
        return NULL;
    return g->comm[group];
}

parlm_status parlm_grid_pp_mpi(const parlm_grid *g, void *mpi_comm_out)
{
    if (!g || !mpi_comm_out)
        return parlm_error(PARLM_EINVAL, "parlm_grid_pp_mpi: null argument");
    *(MPI_Comm *)mpi_comm_out = g->p2p;
    return PARLM_OK;
}

parlm_gpt_shard parlm_grid_shard(const parlm_grid *g)
{
    parlm_gpt_shard sh = {1, 0, 0, 0};
    if (g) {
        sh.tp = g->tp;
        sh.tp_rank = g->t;
        sh.layer_begin = g->bounds[g->p];
        sh.layer_end = g->bounds[g->p + 1];
    }
    return sh;
}

void parlm_grid_stage_layers(const parlm_grid *g, int stage, int *begin, int *end)
{
    int b = -1, e = -1;
    if (g && stage >= 0 && stage < g->pp)
        b = g->bounds[stage], e = g->bounds[stage + 1];
    if (begin)
        *begin = b;
    if (end)
        *end = e;
}

const char *parlm_grid_plan(const parlm_grid *g)
{
    return g && g->plan ? g->plan : "";
}
