/* parlm/topo.h — the machine as hwloc sees it, and OpenMP thread teams laid out on it.
 * A parlm_topo is the hardware (this system, or a synthetic / XML description for
 * planning and tests); a parlm_teams is a plan drawn from it: one team per socket (or
 * NUMA node, or one team), one thread per distinct core, and the NUMA node that holds
 * each team's memory. Only a topology of this very system can bind threads or memory. */
#ifndef PARLM_TOPO_H
#define PARLM_TOPO_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_topo parlm_topo;   /* opaque; parlm_topo_free */
typedef struct parlm_teams parlm_teams; /* opaque; parlm_teams_free */

/* ---- loading ------------------------------------------------------------------
 * All three set *out = NULL on failure. The usual hwloc environment variables apply to
 * load_system (HWLOC_XMLFILE, HWLOC_SYNTHETIC, HWLOC_THISSYSTEM).
 * Errors: PARLM_EINVAL (NULL argument, bad synthetic description), PARLM_EIO (XML file
 * missing or unreadable), PARLM_EFORMAT (not a valid hwloc XML topology),
 * PARLM_ESYSTEM (hwloc failed), PARLM_ENOMEM. The message names the input. */
PARLM_API parlm_status parlm_topo_load_system(parlm_topo **out);
/* desc: hwloc synthetic description, e.g. "pack:2 numa:1 core:4 pu:1". */
PARLM_API parlm_status parlm_topo_load_synthetic(parlm_topo **out, const char *desc);
/* path: an hwloc XML export (lstopo file.xml, hwloc_topology_export_xml). */
PARLM_API parlm_status parlm_topo_load_xml(parlm_topo **out, const char *path);
PARLM_API void parlm_topo_free(parlm_topo *topo); /* NULL is a no-op */

/* The process-wide topology of this system, loaded once on first call (thread-safe)
 * and kept until exit; the library reads cache sizes from it. Never free it. A failed
 * load is remembered: every call then returns the same status and message. */
PARLM_API parlm_status parlm_topo_system(const parlm_topo **out);

/* 1 if binding threads and memory with this topology acts on the running machine
 * (loaded from this system, or HWLOC_THISSYSTEM=1), 0 otherwise or for NULL. */
PARLM_API int parlm_topo_is_this_system(const parlm_topo *topo);

/* ---- counts (0 for NULL) --------------------------------------------------------
 * packages: at least 1 (a machine where hwloc shows no Package counts as one).
 * cores: hwloc Core objects; where hwloc shows none, every PU counts as a core. */
PARLM_API int parlm_topo_packages(const parlm_topo *topo);
PARLM_API int parlm_topo_numa_nodes(const parlm_topo *topo);
PARLM_API int parlm_topo_cores(const parlm_topo *topo);
PARLM_API int parlm_topo_pus(const parlm_topo *topo);

/* ---- caches, as seen from the first core -----------------------------------------
 * level 1 = L1 data cache of a core, 2 = L2 of a core, 3 = L3 (last level) above a core.
 * A level hwloc does not report (synthetic topologies, some VMs, CPUs without L3)
 * takes its default, PARLM_TOPO_L1/L2/L3_DEFAULT, raised if needed to the size of the
 * level below it (so a default never makes L2 < L1 or L3 < L2). Sizes hwloc reports are
 * returned as they are. Returns -1 for NULL or a level outside 1..3. */
#define PARLM_TOPO_L1_DEFAULT ((int64_t)32 * 1024)
#define PARLM_TOPO_L2_DEFAULT ((int64_t)1024 * 1024)
#define PARLM_TOPO_L3_DEFAULT ((int64_t)8 * 1024 * 1024)
PARLM_API int64_t parlm_topo_cache_bytes(const parlm_topo *topo, int level);
/* 1 if hwloc reported that level (0: the size above is a default). */
PARLM_API int parlm_topo_cache_reported(const parlm_topo *topo, int level);
/* Cores sharing that cache (1 for L1/L2 of most CPUs; the cores of a CCX or socket
 * for L3). 1 for a default size; -1 for NULL or a bad level. */
PARLM_API int parlm_topo_cache_cores(const parlm_topo *topo, int level);

/* ---- team plans ------------------------------------------------------------------ */
typedef enum parlm_team_policy {
    PARLM_TEAMS_PER_SOCKET = 0, /* one team per package that has cores */
    PARLM_TEAMS_PER_NUMA = 1,   /* one team per NUMA node that has local cores */
    PARLM_TEAMS_SINGLE = 2,     /* one team of all cores */
} parlm_team_policy;

/* Plans teams on topo. Each thread gets its own core and binds to the core's first
 * PU (SMT siblings stay idle: the kernels saturate a core's FMA units alone).
 * A core belongs to the NUMA node closest to it in the hwloc tree (the memory child of
 * its nearest ancestor that has one); NUMA nodes without cores get no team.
 *
 * Thread count: n = max_threads, or every core when max_threads is 0 or exceeds the
 * core count (never more threads than cores). With G groups (sockets / NUMA nodes):
 * - n >= G: every group gets a team; threads are shared as evenly as the groups' core
 *   counts allow (a group never gets more threads than cores; what a small group cannot
 *   take goes to the others), and a remainder goes one each to the lowest groups first.
 *   E.g. 3 threads on 2 sockets of 4 cores: teams of 2 and 1.
 * - n < G: only the first n groups get a team, of one thread each.
 * Within a team, threads take the group's cores in hwloc order (compact), and the
 * team's NUMA node is the one local to most of its threads (lowest index on a tie).
 * Errors: PARLM_EINVAL (NULL, unknown policy, max_threads < 0), PARLM_EUNSUPPORTED
 * (no cores), PARLM_ENOMEM. *out = NULL on failure. */
PARLM_API parlm_status parlm_teams_plan(const parlm_topo *topo, parlm_team_policy policy,
                                        int max_threads, parlm_teams **out);
PARLM_API void parlm_teams_free(parlm_teams *teams); /* NULL is a no-op */

/* Accessors return -1 for NULL or an index out of range. */
PARLM_API int parlm_teams_count(const parlm_teams *teams);
PARLM_API int parlm_teams_threads(const parlm_teams *teams); /* all teams together */
PARLM_API int parlm_teams_size(const parlm_teams *teams, int team);
/* OS index of the PU (Linux CPU number) the thread binds to. */
PARLM_API int parlm_teams_pu(const parlm_teams *teams, int team, int thread);
/* OS index of the NUMA node local to that thread's core. */
PARLM_API int parlm_teams_thread_numa(const parlm_teams *teams, int team, int thread);
/* OS index of the team's NUMA node: where its data belongs (parlm_numa_alloc). */
PARLM_API int parlm_teams_numa(const parlm_teams *teams, int team);
/* OS index of the team's package (hwloc logical index when the OS gives none);
 * -1 also when the team spans several packages (PARLM_TEAMS_SINGLE on a multi-socket
 * machine) or the machine shows no Package object. */
PARLM_API int parlm_teams_package(const parlm_teams *teams, int team);

/* ---- binding ---------------------------------------------------------------------
 * Binds the calling thread to one PU (hwloc_set_cpubind, HWLOC_CPUBIND_THREAD).
 * Errors: PARLM_EINVAL (NULL topo, no PU with that OS index), PARLM_EUNSUPPORTED (topo
 * is not this system, or the OS refuses thread binding), PARLM_ESYSTEM. */
PARLM_API parlm_status parlm_bind_thread_to_pu(const parlm_topo *topo, int pu_os_index);

/* OS index of the PU the calling thread ran on most recently (it may move at once
 * unless bound). PARLM_EUNSUPPORTED when topo is not this system or the OS cannot tell. */
PARLM_API parlm_status parlm_topo_current_pu(const parlm_topo *topo, int *pu_os_index);

/* Runs fn(team, thread, team_size, arg) once on every thread of the plan, with nested
 * OpenMP: an outer parallel region of one thread per team, each opening an inner region
 * of team_size threads (max-active-levels is raised to at least 2 and omp_set_dynamic(0)
 * set for the call, both restored after it; max-active-levels is process-wide in OpenMP 5).
 * When topo is this system, each thread binds to its planned PU before fn and gets its
 * previous binding back after fn; on any other topology the threads run unbound (a
 * synthetic plan can still be exercised). A thread whose bind fails still runs fn,
 * unbound; the call then returns PARLM_EUNSUPPORTED / PARLM_ESYSTEM naming the first
 * failure. If OpenMP provides fewer threads than planned (OMP_THREAD_LIMIT), the short
 * team does not run fn and the call returns PARLM_ESYSTEM. Must not be called from
 * inside an OpenMP parallel region. teams must come from a plan of the same machine. */
typedef void (*parlm_team_fn)(int team, int thread, int team_size, void *arg);
PARLM_API parlm_status parlm_teams_run(const parlm_topo *topo, const parlm_teams *teams,
                                       parlm_team_fn fn, void *arg);

/* ---- a rank's share of the node ---------------------------------------------------
 * For programs run several to a node (mpirun, srun). */

/* This process's rank among the node's and their count, from the launcher's environment
 * (Open MPI: OMPI_COMM_WORLD_LOCAL_RANK/SIZE; MPICH: MPI_LOCALRANKID/MPI_LOCALNRANKS;
 * Slurm: SLURM_LOCALID/SLURM_NTASKS_PER_NODE); 0 of 1 when absent or inconsistent.
 * Usable before MPI_Init. Either pointer may be NULL. */
PARLM_API void parlm_node_rank_env(int *local_rank, int *local_size);

/* The PUs (OS indices, up to max_pus) of local rank local_rank of local_size: socket
 * local_rank's cores when the node has exactly local_size sockets, otherwise the local_rank-th of local_size equal consecutive pieces of all cores (one
 * core shared round-robin when there are more ranks than cores). desc (may be NULL)
 * gets e.g. "socket 1" or "cores 2..3 of 4". Errors: PARLM_EINVAL, those of
 * parlm_teams_plan. */
PARLM_API parlm_status parlm_rank_share(const parlm_topo *topo, int local_rank,
                                        int local_size, int *pus, int max_pus, int *n,
                                        char *desc, size_t len);

/* Takes this process's share of this system (parlm_rank_share): sets the OpenMP thread
 * count to want (> 0) or to the share's core count (want = 0), *threads = that count,
 * and, if bind, binds thread i of an OpenMP team to the share's PU i mod n. Call it
 * before the program's first parallel region. On a binding failure *threads is still
 * set and the threads run unbound; the status says why. */
PARLM_API parlm_status parlm_place_threads(int local_rank, int local_size, int want, int bind,
                                           int *threads, char *desc, size_t len);

/* ---- memory ----------------------------------------------------------------------
 * Allocates `bytes` (page-aligned) bound to one NUMA node (hwloc_alloc_membind,
 * HWLOC_MEMBIND_BIND). Where binding is unsupported (a topology that is not this
 * system, a kernel or container without mbind) it falls back to a plain page-aligned
 * allocation, whose pages land where they are first touched (parlm_teams_first_touch).
 * NULL with a message for NULL topo, bytes == 0, no NUMA node with that OS index,
 * or out of memory. Free with parlm_numa_free and the same topo and size. */
PARLM_API void *parlm_numa_alloc(const parlm_topo *topo, size_t bytes, int numa_os_index);
PARLM_API void parlm_numa_free(const parlm_topo *topo, void *p, size_t bytes); /* NULL ok */

/* First touch: zeroes bufs[team] (bytes each, one buffer per team) with the team's own
 * threads, each clearing a contiguous page-aligned slice, so that on a system with a
 * first-touch policy every page is placed on the node of the thread that will use it.
 * Same binding and errors as parlm_teams_run; PARLM_EINVAL for a NULL buffer. */
PARLM_API parlm_status parlm_teams_first_touch(const parlm_topo *topo,
                                               const parlm_teams *teams, void *const *bufs,
                                               size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
