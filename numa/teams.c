/* numa/teams.c — thread-team plans (which core and NUMA node each thread of each team
 * gets) and running them with nested OpenMP, plus first-touch placement.
 * The one idea: a plan is pure data computed from the hwloc tree — groups of cores
 * (per package, per NUMA node, or all), threads shared out by water-filling — so it can
 * be drawn and tested on any synthetic machine; only parlm_teams_run touches the OS. */
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/error.h"
#include "topo.h"

struct parlm_teams {
    int nteams, nthreads;
    int *size;    /* [nteams] threads per team */
    int *first;   /* [nteams] index of the team's thread 0 in pu[] / pu_numa[] */
    int *numa;    /* [nteams] OS index of the team's NUMA node */
    int *package; /* [nteams] OS index of its package, -1 if several or none */
    int *pu;      /* [nthreads] OS index of each thread's PU */
    int *pu_numa; /* [nthreads] OS index of the NUMA node local to each thread */
};

/* One usable core: its first PU, the NUMA node local to it, its package and group. */
typedef struct {
    hwloc_obj_t pu, numa, package;
    int group;
} core_slot;

/* Shares n threads over g groups of cap[i] cores (n <= sum cap, n >= g): groups that
 * cannot take an even share are filled, the rest split what remains evenly, lowest
 * groups taking the remainder. Each pass only raises the share, so it settles in <= g. */
static void water_fill(int n, int g, const int *cap, int *take)
{
    int remaining = n, active = g;
    for (int i = 0; i < g; i++)
        take[i] = -1; /* -1: still open */
    for (int changed = 1; changed && active > 0;) {
        changed = 0;
        int share = remaining / active;
        for (int i = 0; i < g; i++)
            if (take[i] < 0 && cap[i] <= share) {
                take[i] = cap[i];
                remaining -= cap[i];
                active--;
                changed = 1;
            }
    }
    if (active == 0)
        return;
    int share = remaining / active, extra = remaining % active;
    for (int i = 0; i < g; i++)
        if (take[i] < 0)
            take[i] = share + (extra-- > 0 ? 1 : 0);
}

static parlm_teams *teams_alloc(int nteams, int nthreads)
{
    parlm_teams *t = calloc(1, sizeof *t);
    int *ints = calloc((size_t)(4 * nteams + 2 * nthreads), sizeof *ints);
    if (!t || !ints) {
        free(t);
        free(ints);
        return NULL;
    }
    t->nteams = nteams;
    t->nthreads = nthreads;
    t->size = ints;
    t->first = t->size + nteams;
    t->numa = t->first + nteams;
    t->package = t->numa + nteams;
    t->pu = t->package + nteams;
    t->pu_numa = t->pu + nthreads;
    return t;
}

void parlm_teams_free(parlm_teams *teams)
{
    if (!teams)
        return;
    free(teams->size); /* the one block holding every array */
    free(teams);
}

/* Fills team `team` from its group's first `n` cores (slots[0..n)). */
static void fill_team(parlm_teams *t, int team, int first, const core_slot *slots, int n)
{
    t->size[team] = n;
    t->first[team] = first;
    hwloc_obj_t pkg = slots[0].package;
    /* majority NUMA node; ties go to the lowest logical index (slots are in hwloc order) */
    hwloc_obj_t best = NULL;
    int best_votes = 0;
    for (int i = 0; i < n; i++) {
        t->pu[first + i] = parlm_topo_os_index(slots[i].pu);
        t->pu_numa[first + i] = parlm_topo_os_index(slots[i].numa);
        if (slots[i].package != pkg)
            pkg = NULL;
        int votes = 0;
        for (int j = 0; j < n; j++)
            votes += slots[j].numa == slots[i].numa;
        if (votes > best_votes ||
            (votes == best_votes && slots[i].numa->logical_index < best->logical_index)) {
            best = slots[i].numa;
            best_votes = votes;
        }
    }
    t->numa[team] = parlm_topo_os_index(best);
    t->package[team] = pkg ? parlm_topo_os_index(pkg) : -1;
}

static int cmp_group(const void *a, const void *b)
{
    const core_slot *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    /* stable within a group: hwloc (logical) order of the PUs */
    return x->pu->logical_index < y->pu->logical_index
               ? -1
               : x->pu->logical_index > y->pu->logical_index;
}

parlm_status parlm_teams_plan(const parlm_topo *topo, parlm_team_policy policy,
                              int max_threads, parlm_teams **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_teams_plan: out is NULL");
    *out = NULL;
    if (!topo)
        return parlm_error(PARLM_EINVAL, "parlm_teams_plan: topo is NULL");
    if (policy != PARLM_TEAMS_PER_SOCKET && policy != PARLM_TEAMS_PER_NUMA &&
        policy != PARLM_TEAMS_SINGLE)
        return parlm_error(PARLM_EINVAL, "parlm_teams_plan: unknown policy %d", (int)policy);
    if (max_threads < 0)
        return parlm_error(PARLM_EINVAL, "parlm_teams_plan: max_threads must be >= 0, got %d",
                           max_threads);

    core_slot *slots = calloc((size_t)(topo->ncores > 0 ? topo->ncores : 1), sizeof *slots);
    if (!slots)
        return parlm_error(PARLM_ENOMEM, "out of memory planning teams");
    int ncores = 0;
    for (int i = 0; i < topo->ncores; i++) {
        hwloc_obj_t core = hwloc_get_obj_by_type(topo->h, topo->core_type, (unsigned)i);
        hwloc_obj_t pu = core && core->type == HWLOC_OBJ_PU
                             ? core
                             : core ? hwloc_get_obj_inside_cpuset_by_type(topo->h, core->cpuset,
                                                                          HWLOC_OBJ_PU, 0)
                                    : NULL;
        hwloc_obj_t numa = pu ? parlm_topo_local_numa(pu) : NULL;
        if (!pu || !numa)
            continue; /* a core without a PU or memory cannot host a thread */
        core_slot *s = &slots[ncores++];
        s->pu = pu;
        s->numa = numa;
        s->package = parlm_topo_package_of(pu);
        s->group = policy == PARLM_TEAMS_PER_SOCKET ? (s->package ? (int)s->package->logical_index : 0)
                   : policy == PARLM_TEAMS_PER_NUMA ? (int)numa->logical_index
                                                    : 0;
    }
    if (ncores == 0) {
        free(slots);
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_teams_plan: the topology has no usable cores");
    }
    qsort(slots, (size_t)ncores, sizeof *slots, cmp_group);

    /* groups: runs of equal `group` in the sorted slots */
    int ngroups = 0;
    int *start = calloc((size_t)ncores + 1, sizeof *start);
    int *cap = calloc((size_t)ncores, sizeof *cap);
    int *take = calloc((size_t)ncores, sizeof *take);
    if (!start || !cap || !take) {
        free(slots), free(start), free(cap), free(take);
        return parlm_error(PARLM_ENOMEM, "out of memory planning teams");
    }
    for (int i = 0; i < ncores; i++)
        if (i == 0 || slots[i].group != slots[i - 1].group)
            start[ngroups++] = i;
    start[ngroups] = ncores;
    for (int g = 0; g < ngroups; g++)
        cap[g] = start[g + 1] - start[g];

    int n = max_threads == 0 || max_threads > ncores ? ncores : max_threads;
    int nteams = n < ngroups ? n : ngroups;
    if (n < ngroups)
        for (int g = 0; g < ngroups; g++)
            take[g] = g < n ? 1 : 0;
    else
        water_fill(n, ngroups, cap, take);

    parlm_teams *t = teams_alloc(nteams, n);
    if (!t) {
        free(slots), free(start), free(cap), free(take);
        return parlm_error(PARLM_ENOMEM, "out of memory planning teams");
    }
    for (int g = 0, team = 0, first = 0; g < ngroups; g++) {
        if (take[g] == 0)
            continue;
        fill_team(t, team++, first, &slots[start[g]], take[g]);
        first += take[g];
    }
    free(slots), free(start), free(cap), free(take);
    *out = t;
    return PARLM_OK;
}

/* ---- accessors ------------------------------------------------------------------------- */

int parlm_teams_count(const parlm_teams *t) { return t ? t->nteams : -1; }
int parlm_teams_threads(const parlm_teams *t) { return t ? t->nthreads : -1; }

static int team_ok(const parlm_teams *t, int team) { return t && team >= 0 && team < t->nteams; }
static int thread_ok(const parlm_teams *t, int team, int thread)
{
    return team_ok(t, team) && thread >= 0 && thread < t->size[team];
}

int parlm_teams_size(const parlm_teams *t, int team) { return team_ok(t, team) ? t->size[team] : -1; }
int parlm_teams_numa(const parlm_teams *t, int team) { return team_ok(t, team) ? t->numa[team] : -1; }
int parlm_teams_package(const parlm_teams *t, int team)
{
    return team_ok(t, team) ? t->package[team] : -1;
}
int parlm_teams_pu(const parlm_teams *t, int team, int thread)
{
    return thread_ok(t, team, thread) ? t->pu[t->first[team] + thread] : -1;
}
int parlm_teams_thread_numa(const parlm_teams *t, int team, int thread)
{
    return thread_ok(t, team, thread) ? t->pu_numa[t->first[team] + thread] : -1;
}

/* ---- running a plan -------------------------------------------------------------------- */

typedef struct {
    const parlm_topo *topo;
    const parlm_teams *teams;
    parlm_team_fn fn;
    void *arg;
    int bind;
    /* the first failure, written under a critical section */
    int nfail, fail_team, fail_thread, fail_pu, fail_errno;
    int nshort, short_team, short_got, short_want;
} run_state;

static void record_bind_failure(run_state *st, int team, int thread, int pu, int e)
{
#pragma omp critical(parlm_teams_failure)
    {
        if (st->nfail++ == 0) {
            st->fail_team = team;
            st->fail_thread = thread;
            st->fail_pu = pu;
            st->fail_errno = e;
        }
    }
}

static void record_short(run_state *st, int team, int got, int want)
{
#pragma omp critical(parlm_teams_failure)
    {
        if (st->nshort++ == 0) {
            st->short_team = team;
            st->short_got = got;
            st->short_want = want;
        }
    }
}

/* One thread of the plan: bind, run, restore the binding it had. */
static void run_thread(run_state *st, int team, int thread, int size)
{
    hwloc_topology_t h = st->topo->h;
    hwloc_bitmap_t old = NULL;
    int bound = 0;
    if (st->bind) {
        old = hwloc_bitmap_alloc();
        if (old && hwloc_get_cpubind(h, old, HWLOC_CPUBIND_THREAD) != 0) {
            hwloc_bitmap_free(old);
            old = NULL;
        }
        int pu = st->teams->pu[st->teams->first[team] + thread];
        int e = parlm_topo_bind_pu(st->topo, pu);
        if (e)
            record_bind_failure(st, team, thread, pu, e);
        else
            bound = 1;
    }
    st->fn(team, thread, size, st->arg);
    if (bound && old)
        hwloc_set_cpubind(h, old, HWLOC_CPUBIND_THREAD);
    hwloc_bitmap_free(old);
}

parlm_status parlm_teams_run(const parlm_topo *topo, const parlm_teams *teams, parlm_team_fn fn,
                             void *arg)
{
    if (!topo || !teams || !fn)
        return parlm_error(PARLM_EINVAL, "parlm_teams_run: %s is NULL",
                           !topo ? "topo" : !teams ? "teams" : "fn");
    if (omp_in_parallel())
        return parlm_error(PARLM_EINVAL,
                           "parlm_teams_run: called inside an OpenMP parallel region");
    for (int i = 0; i < teams->nthreads; i++)
        if (!hwloc_get_pu_obj_by_os_index(topo->h, (unsigned)teams->pu[i]))
            return parlm_error(PARLM_EINVAL,
                               "parlm_teams_run: the plan uses PU %d, which this topology lacks "
                               "(plan and topology come from different machines)",
                               teams->pu[i]);

    run_state st = {.topo = topo, .teams = teams, .fn = fn, .arg = arg,
                    .bind = topo->this_system};
    int saved_levels = omp_get_max_active_levels();
    int saved_dynamic = omp_get_dynamic();
    omp_set_dynamic(0); /* exact team sizes; inherited by the inner regions */
    omp_set_max_active_levels(saved_levels > 2 ? saved_levels : 2);
    const int nteams = teams->nteams;
#pragma omp parallel num_threads(nteams)
    {
        int team = omp_get_thread_num();
        if (omp_get_num_threads() != nteams) {
            if (team == 0)
                record_short(&st, -1, omp_get_num_threads(), nteams);
        } else {
            const int size = teams->size[team];
#pragma omp parallel num_threads(size)
            {
                if (omp_get_num_threads() != size) {
                    if (omp_get_thread_num() == 0)
                        record_short(&st, team, omp_get_num_threads(), size);
                } else {
                    run_thread(&st, team, omp_get_thread_num(), size);
                }
            }
        }
    }
    omp_set_max_active_levels(saved_levels);
    omp_set_dynamic(saved_dynamic);

    if (st.nshort) {
        if (st.short_team < 0)
            return parlm_error(PARLM_ESYSTEM,
                               "parlm_teams_run: OpenMP gave %d outer threads for %d teams "
                               "(OMP_THREAD_LIMIT?); nothing ran",
                               st.short_got, st.short_want);
        return parlm_error(PARLM_ESYSTEM,
                           "parlm_teams_run: OpenMP gave team %d only %d of %d threads "
                           "(OMP_THREAD_LIMIT?); %d team(s) did not run",
                           st.short_team, st.short_got, st.short_want, st.nshort);
    }
    if (st.nfail) {
        char eb[128];
        const char *why = strerror_r(st.fail_errno, eb, sizeof eb);
        int kind = st.fail_errno == ENOSYS || st.fail_errno == EXDEV || st.fail_errno == EPERM ||
                           st.fail_errno == EINVAL
                       ? PARLM_EUNSUPPORTED
                       : PARLM_ESYSTEM;
        return parlm_error((parlm_status)kind,
                           "parlm_teams_run: %d thread(s) ran unbound; first: team %d thread %d "
                           "could not bind to PU %d: %s",
                           st.nfail, st.fail_team, st.fail_thread, st.fail_pu, why);
    }
    return PARLM_OK;
}

/* ---- first touch ----------------------------------------------------------------------- */

typedef struct {
    void *const *bufs;
    size_t bytes, page;
} touch_args;

/* floor(pages * t / n) without overflowing pages * t */
static size_t split_at(size_t pages, int t, int n)
{
    size_t q = pages / (size_t)n, r = pages % (size_t)n;
    return q * (size_t)t + r * (size_t)t / (size_t)n;
}

static void touch_slice(int team, int thread, int size, void *arg)
{
    const touch_args *a = arg;
    size_t pages = (a->bytes + a->page - 1) / a->page;
    size_t b0 = split_at(pages, thread, size) * a->page;
    size_t b1 = split_at(pages, thread + 1, size) * a->page;
    if (b1 > a->bytes)
        b1 = a->bytes;
    if (b1 > b0)
        memset((char *)a->bufs[team] + b0, 0, b1 - b0);
}

parlm_status parlm_teams_first_touch(const parlm_topo *topo, const parlm_teams *teams,
                                     void *const *bufs, size_t bytes)
{
    if (!topo || !teams || !bufs)
        return parlm_error(PARLM_EINVAL, "parlm_teams_first_touch: %s is NULL",
                           !topo ? "topo" : !teams ? "teams" : "bufs");
    for (int i = 0; i < teams->nteams; i++)
        if (!bufs[i] && bytes > 0)
            return parlm_error(PARLM_EINVAL, "parlm_teams_first_touch: bufs[%d] is NULL", i);
    if (bytes == 0)
        return PARLM_OK;
    long page = sysconf(_SC_PAGESIZE);
    touch_args a = {.bufs = bufs, .bytes = bytes, .page = page > 0 ? (size_t)page : 4096};
    return parlm_teams_run(topo, teams, touch_slice, &a);
}
