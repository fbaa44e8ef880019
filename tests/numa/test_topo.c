/* tests/test_topo.c — topology loading, team plans, binding and NUMA memory (numa/).
 * Multi-socket plans are checked on hwloc synthetic and XML topologies against facts
 * the test reads from its own hwloc handle (which core / package / NUMA node holds a
 * PU), never against parlm's answers; binding and memory are checked on this machine
 * with the OS's own view (sched_getcpu, hwloc_get_cpubind, sysfs cache sizes). */
#include <check.h>
#include <errno.h>
#include <hwloc.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"

/* ---- helpers ------------------------------------------------------------------------ */

static parlm_topo *load_syn(const char *desc)
{
    parlm_topo *t = NULL;
    ck_assert_msg(parlm_topo_load_synthetic(&t, desc) == PARLM_OK, "%s: %s", desc,
                  parlm_last_error());
    ck_assert_ptr_nonnull(t);
    return t;
}

static parlm_teams *plan(const parlm_topo *t, parlm_team_policy p, int max_threads)
{
    parlm_teams *teams = NULL;
    ck_assert_msg(parlm_teams_plan(t, p, max_threads, &teams) == PARLM_OK, "%s",
                  parlm_last_error());
    ck_assert_ptr_nonnull(teams);
    return teams;
}

/* The test's own hwloc view of the same description. */
static hwloc_topology_t ref_synthetic(const char *desc)
{
    hwloc_topology_t h;
    ck_assert_int_eq(hwloc_topology_init(&h), 0);
    ck_assert_int_eq(hwloc_topology_set_synthetic(h, desc), 0);
    ck_assert_int_eq(hwloc_topology_load(h), 0);
    return h;
}

static hwloc_topology_t ref_system(void)
{
    hwloc_topology_t h;
    ck_assert_int_eq(hwloc_topology_init(&h), 0);
    ck_assert_int_eq(hwloc_topology_load(h), 0);
    return h;
}

static hwloc_obj_t ancestor(hwloc_topology_t h, hwloc_obj_type_t type, hwloc_obj_t o)
{
    return o->type == type ? o : hwloc_get_ancestor_obj_by_type(h, type, o);
}

/* Invariants every plan must satisfy, checked against the reference topology:
 * threads on distinct cores, each on its core's first PU, the sizes adding up to
 * parlm_teams_threads, and a team's package holding every thread of the team and
 * (when the team has a package) its NUMA node too. */
static void check_plan_invariants(hwloc_topology_t ref, const parlm_teams *teams)
{
    int ncores = hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_CORE);
    char *used = calloc((size_t)ncores, 1);
    int total = 0;
    for (int t = 0; t < parlm_teams_count(teams); t++) {
        int size = parlm_teams_size(teams, t);
        ck_assert_int_ge(size, 1); /* no empty team */
        total += size;
        int pkg = parlm_teams_package(teams, t);
        for (int th = 0; th < size; th++) {
            int pu_os = parlm_teams_pu(teams, t, th);
            hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(ref, (unsigned)pu_os);
            ck_assert_msg(pu != NULL, "team %d thread %d: PU %d does not exist", t, th, pu_os);
            hwloc_obj_t core = ancestor(ref, HWLOC_OBJ_CORE, pu);
            ck_assert_ptr_nonnull(core);
            ck_assert_msg(!used[core->logical_index], "core %u used twice", core->logical_index);
            used[core->logical_index] = 1;
            /* first PU of the core: the lowest logical PU inside it */
            hwloc_obj_t first = hwloc_get_obj_inside_cpuset_by_type(ref, core->cpuset,
                                                                     HWLOC_OBJ_PU, 0);
            ck_assert_int_eq((int)first->os_index, pu_os);
            if (pkg >= 0)
                ck_assert_int_eq((int)ancestor(ref, HWLOC_OBJ_PACKAGE, pu)->os_index, pkg);
            /* the thread's NUMA node is one whose cpuset covers its PU */
            hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(
                ref, (unsigned)parlm_teams_thread_numa(teams, t, th));
            ck_assert_ptr_nonnull(node);
            ck_assert(hwloc_bitmap_isset(node->cpuset, (unsigned)pu_os));
        }
        hwloc_obj_t node =
            hwloc_get_numanode_obj_by_os_index(ref, (unsigned)parlm_teams_numa(teams, t));
        ck_assert_ptr_nonnull(node);
        if (pkg >= 0) {
            hwloc_obj_t package = hwloc_get_obj_by_type(ref, HWLOC_OBJ_PACKAGE, 0);
            while (package && (int)package->os_index != pkg)
                package = package->next_cousin;
            ck_assert_ptr_nonnull(package);
            ck_assert_msg(hwloc_bitmap_isincluded(node->cpuset, package->cpuset),
                          "team %d: NUMA node %d is not in package %d", t,
                          parlm_teams_numa(teams, t), pkg);
        }
    }
    ck_assert_int_eq(total, parlm_teams_threads(teams));
    free(used);
}

static void expect_sizes(const parlm_teams *teams, int n, const int *sizes)
{
    ck_assert_int_eq(parlm_teams_count(teams), n);
    for (int t = 0; t < n; t++)
        ck_assert_msg(parlm_teams_size(teams, t) == sizes[t], "team %d: size %d, expected %d",
                      t, parlm_teams_size(teams, t), sizes[t]);
}

static int binding_supported(hwloc_topology_t ref)
{
    const struct hwloc_topology_support *s = hwloc_topology_get_support(ref);
    if (!s->cpubind->set_thisthread_cpubind || !s->cpubind->get_thisthread_cpubind) {
        printf("note: hwloc says thread binding is unsupported here; binding checks skipped\n");
        return 0;
    }
    return 1;
}

static char *temp_path(const char *tag)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/parlm-test-topo-%s-XXXXXX", tag);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return path;
}

/* ---- plans on synthetic machines ------------------------------------------------------ */

/* A rank's share: a socket each when ranks = sockets, equal consecutive pieces of the
 * cores otherwise, one core round-robin when there are more ranks than cores. In the
 * synthetic machine PU p of core c has OS index 2c + p, and a share takes first PUs. */
START_TEST(rank_share_of_the_node)
{
    parlm_topo *t = load_syn("pack:2 numa:1 core:4 pu:2");
    int pus[16], n = -1;
    char desc[64];
    ck_assert_int_eq(parlm_rank_share(t, 1, 2, pus, 16, &n, desc, sizeof desc), PARLM_OK);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pus[i], 8 + 2 * i);
    ck_assert_str_eq(desc, "socket 1");
    ck_assert_int_eq(parlm_rank_share(t, 1, 3, pus, 16, &n, desc, sizeof desc), PARLM_OK);
    ck_assert_int_eq(n, 3); /* cores [8/3, 16/3) = 2, 3, 4 */
    ck_assert_int_eq(pus[0], 4);
    ck_assert_int_eq(pus[2], 8);
    ck_assert_str_eq(desc, "cores 2..4 of 8");
    ck_assert_int_eq(parlm_rank_share(t, 0, 1, pus, 16, &n, NULL, 0), PARLM_OK);
    ck_assert_int_eq(n, 8); /* one rank alone takes every core */
    ck_assert_int_eq(parlm_rank_share(t, 13, 20, pus, 16, &n, desc, sizeof desc), PARLM_OK);
    ck_assert_int_eq(n, 1); /* 20 ranks on 8 cores: [104/20, 112/20) is empty, share 13 % 8 */
    ck_assert_int_eq(pus[0], 10);
    ck_assert_int_eq(parlm_rank_share(t, 2, 2, pus, 16, &n, NULL, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_rank_share(t, 0, 1, pus, 0, &n, NULL, 0), PARLM_EINVAL);
    parlm_topo_free(t);

    int r = -1, sz = -1;
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
    parlm_node_rank_env(&r, &sz);
    ck_assert(r == 3 && sz == 4);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "4", 1); /* inconsistent: ignored */
    parlm_node_rank_env(&r, &sz);
    ck_assert(r == 0 && sz == 1);
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
}
END_TEST

START_TEST(plan_two_sockets)
{
    const char *desc = "pack:2 numa:1 core:4 pu:1";
    parlm_topo *t = load_syn(desc);
    hwloc_topology_t ref = ref_synthetic(desc);
    ck_assert_int_eq(parlm_topo_packages(t), 2);
    ck_assert_int_eq(parlm_topo_numa_nodes(t), 2);
    ck_assert_int_eq(parlm_topo_cores(t), 8);
    ck_assert_int_eq(parlm_topo_pus(t), 8);
    ck_assert_int_eq(parlm_topo_is_this_system(t), 0);

    parlm_teams *teams = plan(t, PARLM_TEAMS_PER_SOCKET, 0);
    expect_sizes(teams, 2, (int[]){4, 4});
    ck_assert_int_eq(parlm_teams_threads(teams), 8);
    ck_assert_int_eq(parlm_teams_package(teams, 0), 0);
    ck_assert_int_eq(parlm_teams_package(teams, 1), 1);
    ck_assert_int_ne(parlm_teams_numa(teams, 0), parlm_teams_numa(teams, 1));
    check_plan_invariants(ref, teams);
    parlm_teams_free(teams);

    /* one NUMA node per socket: the per-NUMA plan is the same split */
    teams = plan(t, PARLM_TEAMS_PER_NUMA, 0);
    expect_sizes(teams, 2, (int[]){4, 4});
    check_plan_invariants(ref, teams);
    parlm_teams_free(teams);
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
}
END_TEST

START_TEST(plan_four_sockets_smt)
{
    const char *desc = "pack:4 numa:2 core:2 pu:2";
    parlm_topo *t = load_syn(desc);
    hwloc_topology_t ref = ref_synthetic(desc);
    ck_assert_int_eq(parlm_topo_packages(t), 4);
    ck_assert_int_eq(parlm_topo_numa_nodes(t), 8);
    ck_assert_int_eq(parlm_topo_cores(t), 16);
    ck_assert_int_eq(parlm_topo_pus(t), 32);

    /* per socket: 4 teams of the socket's 4 cores, one PU per core (never SMT siblings) */
    parlm_teams *teams = plan(t, PARLM_TEAMS_PER_SOCKET, 0);
    expect_sizes(teams, 4, (int[]){4, 4, 4, 4});
    for (int tm = 0; tm < 4; tm++) {
        ck_assert_int_eq(parlm_teams_package(teams, tm), tm);
        /* 2 threads on each of the socket's nodes 2tm, 2tm+1: the tie goes to the lower */
        ck_assert_int_eq(parlm_teams_numa(teams, tm), 2 * tm);
    }
    check_plan_invariants(ref, teams);
    parlm_teams_free(teams);

    /* per NUMA node: 8 teams of 2, every thread local to its team's node */
    teams = plan(t, PARLM_TEAMS_PER_NUMA, 0);
    expect_sizes(teams, 8, (int[]){2, 2, 2, 2, 2, 2, 2, 2});
    for (int tm = 0; tm < 8; tm++) {
        ck_assert_int_eq(parlm_teams_package(teams, tm), tm / 2);
        for (int th = 0; th < 2; th++)
            ck_assert_int_eq(parlm_teams_thread_numa(teams, tm, th), parlm_teams_numa(teams, tm));
    }
    check_plan_invariants(ref, teams);
    parlm_teams_free(teams);

    /* single: one team of all 16 cores, spanning packages (-1) */
    teams = plan(t, PARLM_TEAMS_SINGLE, 0);
    expect_sizes(teams, 1, (int[]){16});
    ck_assert_int_eq(parlm_teams_package(teams, 0), -1);
    ck_assert_int_eq(parlm_teams_numa(teams, 0), 0); /* an 8-way tie */
    check_plan_invariants(ref, teams);
    parlm_teams_free(teams);

    /* 3 threads on socket 0: two on node 0, one on node 1 -> the majority, node 0;
     * per-socket with 6 threads gives team 0 cores on node 0 only */
    teams = plan(t, PARLM_TEAMS_SINGLE, 3);
    ck_assert_int_eq(parlm_teams_numa(teams, 0), 0);
    ck_assert_int_eq(parlm_teams_thread_numa(teams, 0, 2), 1);
    ck_assert_int_eq(parlm_teams_package(teams, 0), 0);
    parlm_teams_free(teams);
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
}
END_TEST

/* Expected splits worked out by hand from the rule in topo.h. */
START_TEST(plan_thread_limits)
{
    const char *desc2 = "pack:2 numa:1 core:4 pu:1", *desc4 = "pack:4 numa:2 core:2 pu:2";
    parlm_topo *t2 = load_syn(desc2), *t4 = load_syn(desc4);
    hwloc_topology_t ref2 = ref_synthetic(desc2), ref4 = ref_synthetic(desc4);
    struct {
        parlm_topo *t;
        hwloc_topology_t ref;
        parlm_team_policy p;
        int max, nteams, sizes[8], pkg0;
    } cases[] = {
        {t2, ref2, PARLM_TEAMS_PER_SOCKET, 3, 2, {2, 1}, 0},
        {t2, ref2, PARLM_TEAMS_PER_SOCKET, 5, 2, {3, 2}, 0},
        {t2, ref2, PARLM_TEAMS_PER_SOCKET, 1, 1, {1}, 0},
        {t2, ref2, PARLM_TEAMS_PER_SOCKET, 100, 2, {4, 4}, 0}, /* capped at the cores */
        {t2, ref2, PARLM_TEAMS_SINGLE, 3, 1, {3}, 0},           /* compact: socket 0 only */
        {t4, ref4, PARLM_TEAMS_PER_SOCKET, 2, 2, {1, 1}, 0},    /* fewer threads than sockets */
        {t4, ref4, PARLM_TEAMS_PER_SOCKET, 6, 4, {2, 2, 1, 1}, 0},
        {t4, ref4, PARLM_TEAMS_PER_SOCKET, 13, 4, {4, 3, 3, 3}, 0},
        {t4, ref4, PARLM_TEAMS_PER_NUMA, 9, 8, {2, 1, 1, 1, 1, 1, 1, 1}, 0},
        {t4, ref4, PARLM_TEAMS_PER_NUMA, 3, 3, {1, 1, 1}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parlm_teams *teams = plan(cases[i].t, cases[i].p, cases[i].max);
        expect_sizes(teams, cases[i].nteams, cases[i].sizes);
        ck_assert_int_eq(parlm_teams_package(teams, 0), cases[i].pkg0);
        check_plan_invariants(cases[i].ref, teams);
        parlm_teams_free(teams);
    }
    /* fewer threads than sockets: the teams are on the first sockets, in order */
    parlm_teams *teams = plan(t4, PARLM_TEAMS_PER_SOCKET, 3);
    for (int tm = 0; tm < 3; tm++)
        ck_assert_int_eq(parlm_teams_package(teams, tm), tm);
    parlm_teams_free(teams);
    hwloc_topology_destroy(ref2);
    hwloc_topology_destroy(ref4);
    parlm_topo_free(t2);
    parlm_topo_free(t4);
}
END_TEST

/* hwloc's own export of a reference topology, restricted to the PUs in `keep` (NULL:
 * all), written to a temp file. Restriction keeps a NUMA node whose PUs are all gone
 * (it still holds memory), which gives a CPU-less node. */
static char *export_xml(const char *desc, const char *keep, const char *tag)
{
    hwloc_topology_t h = ref_synthetic(desc);
    if (keep) {
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        ck_assert_int_eq(hwloc_bitmap_list_sscanf(set, keep), 0);
        ck_assert_int_eq(hwloc_topology_restrict(h, set, 0), 0);
        hwloc_bitmap_free(set);
    }
    char *path = temp_path(tag);
    ck_assert_int_eq(hwloc_topology_export_xml(h, path, 0), 0);
    hwloc_topology_destroy(h);
    return path;
}

START_TEST(plan_asymmetric_and_cpuless_numa)
{
    /* socket 1 keeps 2 of its 4 cores */
    char path[256];
    snprintf(path, sizeof path, "%s", export_xml("pack:2 numa:1 core:4 pu:1", "0-5", "asym"));
    parlm_topo *t = NULL;
    ck_assert_msg(parlm_topo_load_xml(&t, path) == PARLM_OK, "%s", parlm_last_error());
    hwloc_topology_t ref;
    ck_assert_int_eq(hwloc_topology_init(&ref), 0);
    ck_assert_int_eq(hwloc_topology_set_xml(ref, path), 0);
    ck_assert_int_eq(hwloc_topology_load(ref), 0);
    ck_assert_int_eq(parlm_topo_cores(t), 6);
    struct {
        int max, n, sizes[2];
    } cases[] = {{0, 2, {4, 2}}, {6, 2, {4, 2}}, {5, 2, {3, 2}}, {4, 2, {2, 2}}, {3, 2, {2, 1}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parlm_teams *teams = plan(t, PARLM_TEAMS_PER_SOCKET, cases[i].max);
        expect_sizes(teams, cases[i].n, cases[i].sizes);
        check_plan_invariants(ref, teams);
        parlm_teams_free(teams);
    }
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
    unlink(path);

    /* socket 1 loses every core: its NUMA node has memory but no CPUs -> no team there */
    snprintf(path, sizeof path, "%s", export_xml("pack:2 numa:1 core:4 pu:1", "0-3", "cpuless"));
    ck_assert_msg(parlm_topo_load_xml(&t, path) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_topo_cores(t), 4);
    ck_assert_int_eq(parlm_topo_numa_nodes(t), 2);
    for (int p = 0; p < 3; p++) {
        parlm_teams *teams = plan(t, (parlm_team_policy)p, 0);
        expect_sizes(teams, 1, (int[]){4});
        ck_assert_int_eq(parlm_teams_numa(teams, 0), 0);
        for (int th = 0; th < 4; th++)
            ck_assert_int_eq(parlm_teams_pu(teams, 0, th), th);
        parlm_teams_free(teams);
    }
    parlm_topo_free(t);
    unlink(path);
}
END_TEST

/* ---- caches -------------------------------------------------------------------------- */

START_TEST(cache_defaults_on_synthetic)
{
    parlm_topo *t = load_syn("pack:2 numa:1 core:4 pu:1");
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 1), 32 * 1024);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 2), 1024 * 1024);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 3), 8 * 1024 * 1024);
    for (int level = 1; level <= 3; level++)
        ck_assert_int_eq(parlm_topo_cache_reported(t, level), 0);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 0), -1);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 4), -1);
    ck_assert_int_eq(parlm_topo_cache_bytes(NULL, 1), -1);
    parlm_topo_free(t);

    /* synthetic caches are reported: an L2 bigger than the L3 default raises that default */
    t = load_syn("pack:1 l2:2(size=16MiB) core:2 pu:1");
    ck_assert_int_eq(parlm_topo_cache_reported(t, 2), 1);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 2), 16 * 1024 * 1024);
    ck_assert_int_eq(parlm_topo_cache_cores(t, 2), 2); /* 2 cores under each L2 */
    ck_assert_int_eq(parlm_topo_cache_reported(t, 1), 0);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 1), 32 * 1024);
    ck_assert_int_eq(parlm_topo_cache_reported(t, 3), 0);
    ck_assert_int_eq(parlm_topo_cache_bytes(t, 3), 16 * 1024 * 1024);
    parlm_topo_free(t);
}
END_TEST

/* sysfs size of the cpu0 cache at `level` ("Data"/"Unified"), 0 if unreadable. */
static int64_t sysfs_cache(int level)
{
    for (int i = 0; i < 8; i++) {
        char p[128], type[32] = "";
        int lv = 0;
        long kb = 0;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(p, "r");
        if (!f)
            return 0;
        if (fscanf(f, "%d", &lv) != 1)
            lv = 0;
        fclose(f);
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if ((f = fopen(p, "r"))) {
            if (fscanf(f, "%31s", type) != 1)
                type[0] = '\0';
            fclose(f);
        }
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if ((f = fopen(p, "r"))) {
            if (fscanf(f, "%ldK", &kb) != 1)
                kb = 0;
            fclose(f);
        }
        if (lv == level && strcmp(type, "Instruction") != 0)
            return (int64_t)kb * 1024;
    }
    return 0;
}

START_TEST(cache_sizes_of_this_machine)
{
    parlm_topo *t = NULL;
    ck_assert_int_eq(parlm_topo_load_system(&t), PARLM_OK);
    int64_t l1 = parlm_topo_cache_bytes(t, 1), l2 = parlm_topo_cache_bytes(t, 2),
            l3 = parlm_topo_cache_bytes(t, 3);
    printf("this machine: L1d %lld, L2 %lld, L3 %lld bytes (reported %d%d%d)\n", (long long)l1,
           (long long)l2, (long long)l3, parlm_topo_cache_reported(t, 1),
           parlm_topo_cache_reported(t, 2), parlm_topo_cache_reported(t, 3));
    ck_assert_int_gt(l1, 0);
    ck_assert_int_lt(l1, l2);
    ck_assert_int_le(l2, l3);
    /* an independent reading: the kernel's sysfs view of cpu0 (skipped if absent) */
    for (int level = 1; level <= 3; level++) {
        int64_t s = sysfs_cache(level);
        if (s > 0 && parlm_topo_cache_reported(t, level))
            ck_assert_msg(s == parlm_topo_cache_bytes(t, level), "L%d: sysfs %lld, parlm %lld",
                          level, (long long)s, (long long)parlm_topo_cache_bytes(t, level));
    }
    parlm_topo_free(t);
}
END_TEST

/* ---- XML ----------------------------------------------------------------------------- */

START_TEST(xml_roundtrip)
{
    const char *desc = "pack:4 numa:2 core:2 pu:2";
    char path[256];
    snprintf(path, sizeof path, "%s", export_xml(desc, NULL, "roundtrip"));
    parlm_topo *x = NULL, *s = load_syn(desc);
    ck_assert_msg(parlm_topo_load_xml(&x, path) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_topo_is_this_system(x), 0);
    ck_assert_int_eq(parlm_topo_packages(x), 4);
    ck_assert_int_eq(parlm_topo_numa_nodes(x), 8);
    ck_assert_int_eq(parlm_topo_cores(x), 16);
    ck_assert_int_eq(parlm_topo_pus(x), 32);
    /* the same machine plans the same teams, whichever way it was described */
    for (int p = 0; p < 3; p++) {
        parlm_teams *a = plan(x, (parlm_team_policy)p, 0), *b = plan(s, (parlm_team_policy)p, 0);
        ck_assert_int_eq(parlm_teams_count(a), parlm_teams_count(b));
        for (int tm = 0; tm < parlm_teams_count(a); tm++) {
            ck_assert_int_eq(parlm_teams_size(a, tm), parlm_teams_size(b, tm));
            ck_assert_int_eq(parlm_teams_numa(a, tm), parlm_teams_numa(b, tm));
            for (int th = 0; th < parlm_teams_size(a, tm); th++)
                ck_assert_int_eq(parlm_teams_pu(a, tm, th), parlm_teams_pu(b, tm, th));
        }
        parlm_teams_free(a);
        parlm_teams_free(b);
    }
    /* binding with an XML topology is refused, not silently faked */
    ck_assert_int_eq(parlm_bind_thread_to_pu(x, 0), PARLM_EUNSUPPORTED);
    parlm_topo_free(x);
    parlm_topo_free(s);
    unlink(path);
}
END_TEST

static void expect_xml_error(const char *path, parlm_status want)
{
    parlm_topo *t = (parlm_topo *)&t; /* must be reset to NULL */
    parlm_clear_error();
    parlm_status st = parlm_topo_load_xml(&t, path);
    ck_assert_msg(st == want, "%s: got %d (%s), want %d", path, st, parlm_last_error(), want);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), path)); /* the message names the file */
}

START_TEST(xml_errors)
{
    char path[256];
    /* truncated: the first half of a valid export */
    snprintf(path, sizeof path, "%s", export_xml("pack:2 numa:1 core:4 pu:1", NULL, "trunc"));
    FILE *f = fopen(path, "r+");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    ck_assert_int_eq(truncate(path, len / 2), 0);
    expect_xml_error(path, PARLM_EFORMAT);

    /* garbage, then valid XML that is not a topology, then empty */
    const char *bodies[] = {"\x01\x02 this is not xml at all \xff\n",
                            "<?xml version=\"1.0\"?>\n<notatopology/>\n", ""};
    for (int i = 0; i < 3; i++) {
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(bodies[i], f);
        fclose(f);
        expect_xml_error(path, PARLM_EFORMAT);
    }
    unlink(path);
    expect_xml_error("/nonexistent/parlm/topology.xml", PARLM_EIO);
}
END_TEST

/* ---- argument errors ------------------------------------------------------------------ */

static void must_not_run(int team, int thread, int team_size, void *arg)
{
    (void)team, (void)thread, (void)team_size, (void)arg;
    ck_abort_msg("fn ran for a plan that does not fit the topology");
}

START_TEST(bad_arguments)
{
    parlm_topo *t = NULL;
    parlm_clear_error();
    ck_assert_int_eq(parlm_topo_load_synthetic(&t, "pack:2 bogus:3"), PARLM_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "pack:2 bogus:3"));
    ck_assert_int_eq(parlm_topo_load_synthetic(&t, ""), PARLM_EINVAL);

    ck_assert_int_eq(parlm_topo_load_system(NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_load_synthetic(NULL, "pu:2"), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_load_synthetic(&t, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_load_xml(NULL, "/tmp/x.xml"), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_load_xml(&t, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_system(NULL), PARLM_EINVAL);
    parlm_topo_free(NULL);
    parlm_teams_free(NULL);
    ck_assert_int_eq(parlm_topo_cores(NULL), 0);
    ck_assert_int_eq(parlm_topo_is_this_system(NULL), 0);

    t = load_syn("pack:2 numa:1 core:4 pu:1");
    parlm_teams *teams = (parlm_teams *)&teams;
    ck_assert_int_eq(parlm_teams_plan(NULL, PARLM_TEAMS_SINGLE, 0, &teams), PARLM_EINVAL);
    ck_assert_ptr_null(teams);
    ck_assert_int_eq(parlm_teams_plan(t, PARLM_TEAMS_SINGLE, 0, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_teams_plan(t, (parlm_team_policy)7, 0, &teams), PARLM_EINVAL);
    ck_assert_int_eq(parlm_teams_plan(t, PARLM_TEAMS_SINGLE, -1, &teams), PARLM_EINVAL);
    ck_assert(strlen(parlm_last_error()) > 0);

    teams = plan(t, PARLM_TEAMS_PER_SOCKET, 0);
    ck_assert_int_eq(parlm_teams_count(NULL), -1);
    ck_assert_int_eq(parlm_teams_size(teams, 2), -1);
    ck_assert_int_eq(parlm_teams_size(teams, -1), -1);
    ck_assert_int_eq(parlm_teams_pu(teams, 0, 4), -1);
    ck_assert_int_eq(parlm_teams_pu(teams, 0, -1), -1);
    ck_assert_int_eq(parlm_teams_numa(teams, 5), -1);
    ck_assert_int_eq(parlm_teams_package(NULL, 0), -1);
    ck_assert_int_eq(parlm_teams_thread_numa(teams, 1, 9), -1);
    ck_assert_int_eq(parlm_teams_run(NULL, teams, NULL, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_teams_run(t, NULL, NULL, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_teams_run(t, teams, NULL, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_teams_first_touch(t, teams, NULL, 10), PARLM_EINVAL);
    ck_assert_int_eq(parlm_bind_thread_to_pu(NULL, 0), PARLM_EINVAL);
    int pu;
    ck_assert_int_eq(parlm_topo_current_pu(NULL, &pu), PARLM_EINVAL);
    ck_assert_int_eq(parlm_topo_current_pu(t, NULL), PARLM_EINVAL);

    /* a plan from a bigger machine does not run on a smaller one */
    parlm_topo *small = load_syn("pack:1 core:2 pu:1");
    ck_assert_int_eq(parlm_teams_run(small, teams, must_not_run, NULL), PARLM_EINVAL);
    parlm_topo_free(small);
    parlm_teams_free(teams);
    parlm_topo_free(t);
}
END_TEST

/* ---- binding -------------------------------------------------------------------------- */

START_TEST(bind_refused_on_synthetic)
{
    parlm_topo *t = load_syn("pack:2 numa:1 core:4 pu:1");
    parlm_clear_error();
    ck_assert_int_eq(parlm_bind_thread_to_pu(t, 0), PARLM_EUNSUPPORTED);
    ck_assert(strlen(parlm_last_error()) > 0);
    int pu = 99;
    ck_assert_int_eq(parlm_topo_current_pu(t, &pu), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(pu, -1);
    parlm_topo_free(t);
}
END_TEST

START_TEST(bind_this_thread)
{
    parlm_topo *t = NULL;
    ck_assert_int_eq(parlm_topo_load_system(&t), PARLM_OK);
    ck_assert_int_eq(parlm_topo_is_this_system(t), 1);
    hwloc_topology_t ref = ref_system();
    ck_assert_int_eq(parlm_topo_pus(t), hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_PU));
    ck_assert_int_eq(parlm_bind_thread_to_pu(t, 1 << 20), PARLM_EINVAL);
    ck_assert_int_eq(parlm_bind_thread_to_pu(t, -1), PARLM_EINVAL);
    if (binding_supported(ref)) {
        cpu_set_t saved;
        ck_assert_int_eq(sched_getaffinity(0, sizeof saved, &saved), 0);
        hwloc_bitmap_t got = hwloc_bitmap_alloc();
        for (hwloc_obj_t pu = hwloc_get_obj_by_type(ref, HWLOC_OBJ_PU, 0); pu;
             pu = pu->next_cousin) {
            ck_assert_msg(parlm_bind_thread_to_pu(t, (int)pu->os_index) == PARLM_OK, "%s",
                          parlm_last_error());
            ck_assert_int_eq(hwloc_get_cpubind(ref, got, HWLOC_CPUBIND_THREAD), 0);
            ck_assert_msg(hwloc_bitmap_isequal(got, pu->cpuset), "bound to PU %u but cpubind "
                          "differs", pu->os_index);
            ck_assert_int_eq(sched_getcpu(), (int)pu->os_index); /* bound: must run there */
            int cur = -1;
            ck_assert_int_eq(parlm_topo_current_pu(t, &cur), PARLM_OK);
            ck_assert_int_eq(cur, (int)pu->os_index);
        }
        hwloc_bitmap_free(got);
        ck_assert_int_eq(sched_setaffinity(0, sizeof saved, &saved), 0);
    }
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
}
END_TEST

/* ---- running plans -------------------------------------------------------------------- */

#define MAX_RUN 64
typedef struct {
    int first[MAX_RUN];      /* [team] offset of its thread 0 */
    int calls[MAX_RUN];      /* [thread] times fn ran there */
    int cpu[MAX_RUN];        /* [thread] sched_getcpu() inside fn */
    int size_seen[MAX_RUN];  /* [thread] team_size argument */
    int level[MAX_RUN];      /* [thread] omp_get_active_level() inside fn */
} run_record;

static void record_fn(int team, int thread, int team_size, void *arg)
{
    run_record *r = arg;
    int i = r->first[team] + thread;
#pragma omp atomic
    r->calls[i]++;
    r->cpu[i] = sched_getcpu();
    r->size_seen[i] = team_size;
    r->level[i] = omp_get_active_level();
}

static void run_and_check(const parlm_topo *t, const parlm_teams *teams, int check_cpu)
{
    static run_record r;
    memset(&r, 0, sizeof r);
    ck_assert_int_le(parlm_teams_threads(teams), MAX_RUN);
    for (int tm = 1; tm < parlm_teams_count(teams); tm++)
        r.first[tm] = r.first[tm - 1] + parlm_teams_size(teams, tm - 1);
    ck_assert_msg(parlm_teams_run(t, teams, record_fn, &r) == PARLM_OK, "%s",
                  parlm_last_error());
    for (int tm = 0; tm < parlm_teams_count(teams); tm++)
        for (int th = 0; th < parlm_teams_size(teams, tm); th++) {
            int i = r.first[tm] + th;
            ck_assert_msg(r.calls[i] == 1, "team %d thread %d ran %d times", tm, th, r.calls[i]);
            ck_assert_int_eq(r.size_seen[i], parlm_teams_size(teams, tm));
            /* nesting took effect: one active level per region with more than one thread */
            int levels = (parlm_teams_count(teams) > 1) + (parlm_teams_size(teams, tm) > 1);
            ck_assert_int_eq(r.level[i], levels);
            if (check_cpu)
                ck_assert_msg(r.cpu[i] == parlm_teams_pu(teams, tm, th),
                              "team %d thread %d ran on CPU %d, planned PU %d", tm, th, r.cpu[i],
                              parlm_teams_pu(teams, tm, th));
        }
}

START_TEST(run_on_this_system)
{
    parlm_topo *t = NULL;
    ck_assert_int_eq(parlm_topo_load_system(&t), PARLM_OK);
    hwloc_topology_t ref = ref_system();
    int bind = binding_supported(ref);
    cpu_set_t before, after;
    ck_assert_int_eq(sched_getaffinity(0, sizeof before, &before), 0);
    for (int p = 0; p < 3; p++)
        for (int max = 0; max <= 2; max++) {
            parlm_teams *teams = plan(t, (parlm_team_policy)p, max);
            check_plan_invariants(ref, teams);
            run_and_check(t, teams, bind);
            parlm_teams_free(teams);
        }
    /* the caller's own binding is given back */
    ck_assert_int_eq(sched_getaffinity(0, sizeof after, &after), 0);
    ck_assert(CPU_EQUAL(&before, &after));
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
}
END_TEST

START_TEST(run_synthetic_unbound)
{
    /* 16 threads on a 2-core machine: unbound, so they just time-share */
    parlm_topo *t = load_syn("pack:4 numa:2 core:2 pu:2");
    parlm_teams *teams = plan(t, PARLM_TEAMS_PER_SOCKET, 0);
    run_and_check(t, teams, 0);
    parlm_teams_free(teams);
    teams = plan(t, PARLM_TEAMS_PER_NUMA, 5);
    run_and_check(t, teams, 0);
    parlm_teams_free(teams);

    /* not from inside a parallel region */
    teams = plan(t, PARLM_TEAMS_SINGLE, 2);
    parlm_status inner = PARLM_OK;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        inner = parlm_teams_run(t, teams, record_fn, NULL);
    }
    ck_assert_int_eq(inner, PARLM_EINVAL);
    parlm_teams_free(teams);
    parlm_topo_free(t);
}
END_TEST

/* ---- the process-wide system topology ------------------------------------------------- */

START_TEST(system_topology_is_shared)
{
    const parlm_topo *a = NULL, *b[8] = {NULL};
#pragma omp parallel num_threads(8)
    {
        const parlm_topo *mine = NULL;
        if (parlm_topo_system(&mine) == PARLM_OK)
            b[omp_get_thread_num()] = mine;
    }
    ck_assert_int_eq(parlm_topo_system(&a), PARLM_OK);
    ck_assert_ptr_nonnull(a);
    for (int i = 0; i < 8; i++) /* every thread that got one got the same */
        ck_assert(b[i] == NULL || b[i] == a);
    ck_assert_ptr_eq(b[0], a);
    ck_assert_int_eq(parlm_topo_is_this_system(a), 1);
    hwloc_topology_t ref = ref_system();
    ck_assert_int_eq(parlm_topo_cores(a), hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_CORE));
    ck_assert_int_eq(parlm_topo_numa_nodes(a), hwloc_get_nbobjs_by_type(ref, HWLOC_OBJ_NUMANODE));
    hwloc_topology_destroy(ref);
}
END_TEST

/* ---- memory --------------------------------------------------------------------------- */

START_TEST(numa_alloc_on_this_system)
{
    parlm_topo *t = NULL;
    ck_assert_int_eq(parlm_topo_load_system(&t), PARLM_OK);
    hwloc_topology_t ref = ref_system();
    long page = sysconf(_SC_PAGESIZE);
    for (hwloc_obj_t node = hwloc_get_obj_by_type(ref, HWLOC_OBJ_NUMANODE, 0); node;
         node = node->next_cousin) {
        size_t bytes = 3 * 1024 * 1024 + 123; /* not a page multiple */
        unsigned char *p = parlm_numa_alloc(t, bytes, (int)node->os_index);
        ck_assert_msg(p != NULL, "%s", parlm_last_error());
        ck_assert_int_eq((uintptr_t)p % (uintptr_t)page, 0);
        for (size_t i = 0; i < bytes; i++)
            p[i] = (unsigned char)(i * 7);
        size_t bad = 0;
        for (size_t i = 0; i < bytes; i++)
            bad += p[i] != (unsigned char)(i * 7);
        ck_assert_uint_eq(bad, 0);
        /* the OS's view of where the touched pages live (if it can tell) */
        hwloc_bitmap_t where = hwloc_bitmap_alloc();
        if (hwloc_get_area_memlocation(ref, p, bytes, where, HWLOC_MEMBIND_BYNODESET) == 0 &&
            !hwloc_bitmap_iszero(where))
            ck_assert_msg(hwloc_bitmap_isequal(where, node->nodeset),
                          "pages of a buffer bound to node %u are elsewhere", node->os_index);
        hwloc_bitmap_free(where);
        parlm_numa_free(t, p, bytes);
    }
    parlm_clear_error();
    ck_assert_ptr_null(parlm_numa_alloc(t, 4096, 1 << 20));
    ck_assert(strlen(parlm_last_error()) > 0);
    ck_assert_ptr_null(parlm_numa_alloc(t, 4096, -1));
    ck_assert_ptr_null(parlm_numa_alloc(t, 0, 0));
    ck_assert_ptr_null(parlm_numa_alloc(NULL, 4096, 0));
    parlm_numa_free(t, NULL, 0);
    hwloc_topology_destroy(ref);
    parlm_topo_free(t);
}
END_TEST

/* Each team's buffer is filled with a pattern, first-touched, and must read all zero. */
static void first_touch_zeroes(const parlm_topo *t, const parlm_teams *teams, size_t bytes)
{
    int n = parlm_teams_count(teams);
    void *bufs[MAX_RUN];
    for (int tm = 0; tm < n; tm++) {
        bufs[tm] = parlm_numa_alloc(t, bytes, parlm_teams_numa(teams, tm));
        ck_assert_msg(bufs[tm] != NULL, "%s", parlm_last_error());
        memset(bufs[tm], 0xA5, bytes);
    }
    ck_assert_msg(parlm_teams_first_touch(t, teams, bufs, bytes) == PARLM_OK, "%s",
                  parlm_last_error());
    for (int tm = 0; tm < n; tm++) {
        const unsigned char *p = bufs[tm];
        size_t bad = 0;
        for (size_t i = 0; i < bytes; i++)
            bad += p[i] != 0;
        ck_assert_msg(bad == 0, "team %d: %zu bytes not cleared", tm, bad);
        parlm_numa_free(t, bufs[tm], bytes);
    }
}

START_TEST(first_touch_clears_every_byte)
{
    parlm_topo *t = NULL;
    ck_assert_int_eq(parlm_topo_load_system(&t), PARLM_OK);
    parlm_teams *teams = plan(t, PARLM_TEAMS_PER_SOCKET, 0);
    first_touch_zeroes(t, teams, 5 * 4096 + 77);
    first_touch_zeroes(t, teams, 100); /* less than a page: one thread clears it */
    parlm_teams_free(teams);
    parlm_topo_free(t);

    /* a synthetic machine: allocation falls back to plain pages, threads run unbound */
    t = load_syn("pack:4 numa:2 core:2 pu:2");
    teams = plan(t, PARLM_TEAMS_PER_NUMA, 0);
    first_touch_zeroes(t, teams, 3 * 4096 + 123);
    ck_assert_ptr_null(parlm_numa_alloc(t, 4096, 8)); /* nodes are 0..7 */
    parlm_teams_free(teams);
    parlm_topo_free(t);
}
END_TEST

static Suite *topo_suite(void)
{
    Suite *s = suite_create("topo");
    TCase *tc = tcase_create("plans");
    tcase_add_test(tc, plan_two_sockets);
    tcase_add_test(tc, rank_share_of_the_node);
    tcase_add_test(tc, plan_four_sockets_smt);
    tcase_add_test(tc, plan_thread_limits);
    tcase_add_test(tc, plan_asymmetric_and_cpuless_numa);
    suite_add_tcase(s, tc);
    tc = tcase_create("caches");
    tcase_add_test(tc, cache_defaults_on_synthetic);
    tcase_add_test(tc, cache_sizes_of_this_machine);
    suite_add_tcase(s, tc);
    tc = tcase_create("xml");
    tcase_add_test(tc, xml_roundtrip);
    tcase_add_test(tc, xml_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    tc = tcase_create("binding");
    tcase_add_test(tc, bind_refused_on_synthetic);
    tcase_add_test(tc, bind_this_thread);
    suite_add_tcase(s, tc);
    tc = tcase_create("run");
    tcase_add_test(tc, run_on_this_system);
    tcase_add_test(tc, run_synthetic_unbound);
    tcase_add_test(tc, system_topology_is_shared);
    suite_add_tcase(s, tc);
    tc = tcase_create("memory");
    tcase_add_test(tc, numa_alloc_on_this_system);
    tcase_add_test(tc, first_touch_clears_every_byte);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(topo_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
