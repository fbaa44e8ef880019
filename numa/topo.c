/* numa/topo.c — loading a topology with hwloc (this system, synthetic, XML), its counts
 * and cache sizes, thread binding and NUMA-bound memory.
 * The one idea: hwloc binds for real only when the topology describes the running
 * machine (hwloc_topology_is_thissystem); for any other it silently "succeeds", so every
 * binding entry point checks that first and says so instead of pretending. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/error.h"
#include "topo.h"

static const char *errno_text(int e, char *buf, size_t n)
{
    /* GNU strerror_r: thread-safe, may return a static string instead of filling buf */
    return strerror_r(e, buf, n);
}

hwloc_topology_t parlm_topo_hwloc(const parlm_topo *topo) { return topo ? topo->h : NULL; }

int parlm_topo_os_index(hwloc_obj_t obj)
{
    return obj->os_index != HWLOC_UNKNOWN_INDEX ? (int)obj->os_index : (int)obj->logical_index;
}

hwloc_obj_t parlm_topo_local_numa(hwloc_obj_t obj)
{
    for (hwloc_obj_t o = obj; o; o = o->parent) {
        hwloc_obj_t m = o->memory_first_child;
        while (m && m->type != HWLOC_OBJ_NUMANODE) /* memory-side caches sit above nodes */
            m = m->memory_first_child;
        if (m)
            return m;
    }
    return NULL;
}

hwloc_obj_t parlm_topo_package_of(hwloc_obj_t obj)
{
    for (hwloc_obj_t o = obj; o; o = o->parent)
        if (o->type == HWLOC_OBJ_PACKAGE)
            return o;
    return NULL;
}

static int count_of(hwloc_topology_t h, hwloc_obj_type_t type)
{
    int n = hwloc_get_nbobjs_by_type(h, type);
    return n > 0 ? n : 0; /* 0: none; -1 would mean "at several depths" */
}

/* Caches above the first core: the nearest L1 (data/unified; instruction caches are a
 * type of their own), L2 and L3. Missing levels take defaults, kept monotonic. */
static void find_caches(parlm_topo *t)
{
    static const int64_t defaults[4] = {0, PARLM_TOPO_L1_DEFAULT, PARLM_TOPO_L2_DEFAULT,
                                        PARLM_TOPO_L3_DEFAULT};
    hwloc_obj_t core = hwloc_get_obj_by_type(t->h, t->core_type, 0);
    for (hwloc_obj_t o = core ? core->parent : NULL; o; o = o->parent) {
        int level = o->type == HWLOC_OBJ_L1CACHE   ? 1
                    : o->type == HWLOC_OBJ_L2CACHE ? 2
                    : o->type == HWLOC_OBJ_L3CACHE ? 3
                                                   : 0;
        if (level == 0 || t->cache_reported[level] || o->attr->cache.size == 0)
            continue;
        t->cache_reported[level] = 1;
        t->cache_bytes[level] = (int64_t)o->attr->cache.size;
        int cores = hwloc_get_nbobjs_inside_cpuset_by_type(t->h, o->cpuset, t->core_type);
        t->cache_cores[level] = cores > 0 ? cores : 1;
    }
    for (int level = 1; level <= 3; level++) {
        if (t->cache_reported[level])
            continue;
        int64_t below = level > 1 ? t->cache_bytes[level - 1] : 0;
        t->cache_bytes[level] = defaults[level] > below ? defaults[level] : below;
        t->cache_cores[level] = 1;
    }
}

/* Takes ownership of a loaded hwloc topology. */
static parlm_status wrap(hwloc_topology_t h, parlm_topo **out)
{
    parlm_topo *t = calloc(1, sizeof *t);
    if (!t) {
        hwloc_topology_destroy(h);
        return parlm_error(PARLM_ENOMEM, "out of memory for a topology");
    }
    t->h = h;
    t->this_system = hwloc_topology_is_thissystem(h) ? 1 : 0;
    t->npus = count_of(h, HWLOC_OBJ_PU);
    int cores = count_of(h, HWLOC_OBJ_CORE);
    t->core_type = cores > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    t->ncores = cores > 0 ? cores : t->npus;
    int packages = count_of(h, HWLOC_OBJ_PACKAGE);
    t->npackages = packages > 0 ? packages : 1;
    t->nnuma = count_of(h, HWLOC_OBJ_NUMANODE);
    find_caches(t);
    *out = t;
    return PARLM_OK;
}

parlm_status parlm_topo_load_system(parlm_topo **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_topo_load_system: out is NULL");
    *out = NULL;
    hwloc_topology_t h;
    char eb[128];
    if (hwloc_topology_init(&h) != 0)
        return parlm_error(PARLM_ESYSTEM, "hwloc_topology_init failed: %s",
                           errno_text(errno, eb, sizeof eb));
    if (hwloc_topology_load(h) != 0) {
        int e = errno;
        hwloc_topology_destroy(h);
        return parlm_error(PARLM_ESYSTEM, "hwloc could not discover this system's topology: %s",
                           errno_text(e, eb, sizeof eb));
    }
    return wrap(h, out);
}

parlm_status parlm_topo_load_synthetic(parlm_topo **out, const char *desc)
{
    if (!out || !desc)
        return parlm_error(PARLM_EINVAL, "parlm_topo_load_synthetic: %s is NULL",
                           out ? "desc" : "out");
    *out = NULL;
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) != 0)
        return parlm_error(PARLM_ESYSTEM, "hwloc_topology_init failed");
    if (hwloc_topology_set_synthetic(h, desc) != 0 || hwloc_topology_load(h) != 0) {
        hwloc_topology_destroy(h);
        return parlm_error(PARLM_EINVAL,
                           "bad hwloc synthetic topology \"%s\" (expected e.g. "
                           "\"pack:2 numa:1 core:4 pu:1\"; HWLOC_SYNTHETIC_VERBOSE=1 says why)",
                           desc);
    }
    return wrap(h, out);
}

parlm_status parlm_topo_load_xml(parlm_topo **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_topo_load_xml: %s is NULL", out ? "path" : "out");
    *out = NULL;
    /* hwloc reports a missing file and a corrupt one alike (EINVAL): tell them apart */
    char eb[128];
    FILE *f = fopen(path, "rb");
    if (!f)
        return parlm_error(PARLM_EIO, "cannot open topology XML \"%s\": %s", path,
                           errno_text(errno, eb, sizeof eb));
    fclose(f);
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) != 0)
        return parlm_error(PARLM_ESYSTEM, "hwloc_topology_init failed");
    if (hwloc_topology_set_xml(h, path) != 0 || hwloc_topology_load(h) != 0) {
        hwloc_topology_destroy(h);
        return parlm_error(PARLM_EFORMAT,
                           "\"%s\" is not a valid hwloc XML topology (HWLOC_XML_VERBOSE=1 says "
                           "why)",
                           path);
    }
    return wrap(h, out);
}

void parlm_topo_free(parlm_topo *topo)
{
    if (!topo)
        return;
    hwloc_topology_destroy(topo->h);
    free(topo);
}

/* ---- the process-wide system topology ---------------------------------------------- */

static pthread_once_t sys_once = PTHREAD_ONCE_INIT;
static parlm_topo *sys_topo;
static parlm_status sys_status;
static char sys_msg[512]; /* the load error, re-issued to every caller (messages are per thread) */

static void sys_load(void)
{
    sys_status = parlm_topo_load_system(&sys_topo);
    if (sys_status != PARLM_OK)
        snprintf(sys_msg, sizeof sys_msg, "%s", parlm_last_error());
}

parlm_status parlm_topo_system(const parlm_topo **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_topo_system: out is NULL");
    pthread_once(&sys_once, sys_load);
    *out = sys_topo;
    if (sys_status != PARLM_OK)
        return parlm_error(sys_status, "%s", sys_msg);
    return PARLM_OK;
}

/* ---- queries --------------------------------------------------------------------------- */

int parlm_topo_is_this_system(const parlm_topo *topo) { return topo ? topo->this_system : 0; }
int parlm_topo_packages(const parlm_topo *topo) { return topo ? topo->npackages : 0; }
int parlm_topo_numa_nodes(const parlm_topo *topo) { return topo ? topo->nnuma : 0; }
int parlm_topo_cores(const parlm_topo *topo) { return topo ? topo->ncores : 0; }
int parlm_topo_pus(const parlm_topo *topo) { return topo ? topo->npus : 0; }

int64_t parlm_topo_cache_bytes(const parlm_topo *topo, int level)
{
    return topo && level >= 1 && level <= 3 ? topo->cache_bytes[level] : -1;
}

int parlm_topo_cache_reported(const parlm_topo *topo, int level)
{
    return topo && level >= 1 && level <= 3 ? topo->cache_reported[level] : 0;
}

int parlm_topo_cache_cores(const parlm_topo *topo, int level)
{
    return topo && level >= 1 && level <= 3 ? topo->cache_cores[level] : -1;
}

/* ---- binding ----------------------------------------------------------------------------- */

int parlm_topo_bind_pu(const parlm_topo *topo, int pu_os_index)
{
    hwloc_obj_t pu =
        pu_os_index >= 0 ? hwloc_get_pu_obj_by_os_index(topo->h, (unsigned)pu_os_index) : NULL;
    if (!pu)
        return ENOENT;
    errno = 0;
    if (hwloc_set_cpubind(topo->h, pu->cpuset, HWLOC_CPUBIND_THREAD) != 0)
        return errno ? errno : ENOSYS;
    return 0;
}

static parlm_status not_this_system(const char *what)
{
    return parlm_error(PARLM_EUNSUPPORTED,
                       "%s: the topology is not this system (synthetic or XML); only a "
                       "topology from parlm_topo_load_system can bind",
                       what);
}

parlm_status parlm_bind_thread_to_pu(const parlm_topo *topo, int pu_os_index)
{
    if (!topo)
        return parlm_error(PARLM_EINVAL, "parlm_bind_thread_to_pu: topo is NULL");
    if (!topo->this_system)
        return not_this_system("parlm_bind_thread_to_pu");
    int e = parlm_topo_bind_pu(topo, pu_os_index);
    char eb[128];
    switch (e) {
    case 0: return PARLM_OK;
    case ENOENT:
        return parlm_error(PARLM_EINVAL, "no PU with OS index %d (this topology has %d PUs)",
                           pu_os_index, topo->npus);
    case ENOSYS:
    case EXDEV:
    case EPERM:
    case EINVAL: /* the kernel refuses a CPU outside the allowed set (cgroup cpuset) */
        return parlm_error(PARLM_EUNSUPPORTED, "cannot bind thread to PU %d: %s", pu_os_index,
                           errno_text(e, eb, sizeof eb));
    default:
        return parlm_error(PARLM_ESYSTEM, "binding thread to PU %d failed: %s", pu_os_index,
                           errno_text(e, eb, sizeof eb));
    }
}

parlm_status parlm_topo_current_pu(const parlm_topo *topo, int *pu_os_index)
{
    if (!topo || !pu_os_index)
        return parlm_error(PARLM_EINVAL, "parlm_topo_current_pu: %s is NULL",
                           topo ? "pu_os_index" : "topo");
    *pu_os_index = -1;
    if (!topo->this_system)
        return not_this_system("parlm_topo_current_pu");
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return parlm_error(PARLM_ENOMEM, "out of memory for a cpuset");
    int rc = hwloc_get_last_cpu_location(topo->h, set, HWLOC_CPUBIND_THREAD);
    int pu = rc == 0 ? hwloc_bitmap_first(set) : -1;
    hwloc_bitmap_free(set);
    if (pu < 0)
        return parlm_error(PARLM_EUNSUPPORTED, "the OS does not tell which PU a thread runs on");
    *pu_os_index = pu;
    return PARLM_OK;
}

/* ---- memory ---------------------------------------------------------------------------- */

void *parlm_numa_alloc(const parlm_topo *topo, size_t bytes, int numa_os_index)
{
    if (!topo) {
        parlm_error(PARLM_EINVAL, "parlm_numa_alloc: topo is NULL");
        return NULL;
    }
    if (bytes == 0) {
        parlm_error(PARLM_EINVAL, "parlm_numa_alloc: 0 bytes requested");
        return NULL;
    }
    hwloc_obj_t node = numa_os_index >= 0
                           ? hwloc_get_numanode_obj_by_os_index(topo->h, (unsigned)numa_os_index)
                           : NULL;
    if (!node) {
        parlm_error(PARLM_EINVAL, "no NUMA node with OS index %d (this topology has %d)",
                    numa_os_index, topo->nnuma);
        return NULL;
    }
    void *p = NULL;
    const struct hwloc_topology_support *sup = hwloc_topology_get_support(topo->h);
    if (topo->this_system && sup->membind->alloc_membind && sup->membind->bind_membind)
        /* STRICT: fail rather than silently ignore the node, so we know to fall back */
        p = hwloc_alloc_membind(topo->h, bytes, node->nodeset, HWLOC_MEMBIND_BIND,
                                HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT);
    if (!p)
        p = hwloc_alloc(topo->h, bytes); /* page-aligned; hwloc_free releases both kinds */
    if (!p)
        parlm_error(PARLM_ENOMEM, "cannot allocate %zu bytes on NUMA node %d", bytes,
                    numa_os_index);
    return p;
}

void parlm_numa_free(const parlm_topo *topo, void *p, size_t bytes)
{
    if (topo && p)
        hwloc_free(topo->h, p, bytes);
}
