/* numa/place.c — a process's share of its node's cores, for programs run several to a
 * node (mpirun, srun). The one idea: with as many ranks on the node as sockets, rank r
 * takes socket r; otherwise the node's cores, in hwloc order, are cut into equal
 * consecutive pieces. The rank's OpenMP threads default to its piece and bind to it, so
 * ranks x threads never exceeds the cores unless the user asks for more threads. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/error.h"
#include "topo.h"

static int env_int(const char *const *names, int *out)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        char *end;
        long x = v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && x >= 0 && x < (1 << 20)) {
            *out = (int)x;
            return 1;
        }
    }
    return 0;
}

void parlm_node_rank_env(int *local_rank, int *local_size)
{
    static const char *const ranks[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                        "SLURM_LOCALID", NULL};
    static const char *const sizes[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                                        "SLURM_NTASKS_PER_NODE", NULL};
    int r = 0, s = 1;
    if (!env_int(ranks, &r) || !env_int(sizes, &s) || s < 1 || r >= s)
        r = 0, s = 1;
    if (local_rank)
        *local_rank = r;
    if (local_size)
        *local_size = s;
}

parlm_status parlm_rank_share(const parlm_topo *topo, int local_rank, int local_size, int *pus,
                              int max_pus, int *n, char *desc, size_t len)
{
    if (!topo || !pus || !n || max_pus < 1 || local_size < 1 || local_rank < 0 ||
        local_rank >= local_size)
        return parlm_error(PARLM_EINVAL, "parlm_rank_share: bad argument (rank %d of %d)",
                           local_rank, local_size);
    parlm_teams *teams = NULL;
    parlm_status st = parlm_teams_plan(topo, PARLM_TEAMS_PER_SOCKET, 0, &teams);
    if (st != PARLM_OK)
        return st;
    char tmp[64];
    *n = 0;
    if (parlm_teams_count(teams) == local_size) {
        for (int t = 0; t < parlm_teams_size(teams, local_rank) && *n < max_pus; t++)
            pus[(*n)++] = parlm_teams_pu(teams, local_rank, t);
        snprintf(tmp, sizeof tmp, "socket %d", parlm_teams_package(teams, local_rank));
    } else {
        int total = parlm_teams_threads(teams), k = 0;
        int a = (int)((int64_t)total * local_rank / local_size);
        int b = (int)((int64_t)total * (local_rank + 1) / local_size);
        if (a == b) /* more ranks than cores: share one */
            a = local_rank % total, b = a + 1;
        for (int team = 0; team < parlm_teams_count(teams); team++)
            for (int t = 0; t < parlm_teams_size(teams, team); t++, k++)
                if (k >= a && k < b && *n < max_pus)
                    pus[(*n)++] = parlm_teams_pu(teams, team, t);
        snprintf(tmp, sizeof tmp, "cores %d..%d of %d", a, b - 1, total);
    }
    parlm_teams_free(teams);
    if (desc && len)
        snprintf(desc, len, "%s", tmp);
    return PARLM_OK;
}

parlm_status parlm_place_threads(int local_rank, int local_size, int want, int bind,
                                 int *threads, char *desc, size_t len)
{
    const parlm_topo *topo;
    int pus[4096], n = 0;
    if (!threads || want < 0)
        return parlm_error(PARLM_EINVAL, "parlm_place_threads: bad argument");
    *threads = 0;
    parlm_status st = parlm_topo_system(&topo);
    if (st == PARLM_OK)
        st = parlm_rank_share(topo, local_rank, local_size, pus, 4096, &n, desc, len);
    if (st != PARLM_OK)
        return st;
    int nt = want > 0 ? want : n;
    omp_set_num_threads(nt);
    *threads = nt;
    if (!bind)
        return PARLM_OK;
    int failed = 0;
    parlm_status first = PARLM_OK;
#pragma omp parallel num_threads(nt) reduction(+ : failed)
    {
        parlm_status s = parlm_bind_thread_to_pu(topo, pus[omp_get_thread_num() % n]);
        if (s != PARLM_OK) {
            failed++;
#pragma omp critical(parlm_place_failure)
            if (first == PARLM_OK)
                first = s;
        }
    }
    if (failed)
        return parlm_error(first, "could not bind %d of %d thread(s) to their cores", failed,
                           nt);
    return PARLM_OK;
}
