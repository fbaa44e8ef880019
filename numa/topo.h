/* numa/topo.h — internal: what a parlm_topo holds, shared by topo.c (discovery, caches,
 * binding, memory) and teams.c (team plans and running them). The hwloc handle is
 * reachable here (never through the public header) so lib/ and tests can ask hwloc
 * directly for anything parlm does not wrap. */
#ifndef PARLM_NUMA_TOPO_H
#define PARLM_NUMA_TOPO_H
#include <hwloc.h>

#include "parlm/topo.h"

struct parlm_topo {
    hwloc_topology_t h;
    int this_system;
    hwloc_obj_type_t core_type; /* HWLOC_OBJ_CORE, or HWLOC_OBJ_PU when there are no cores */
    int npackages, nnuma, ncores, npus;
    int64_t cache_bytes[4]; /* [level], 1..3 */
    int cache_reported[4];
    int cache_cores[4];
};

/* The topology's hwloc handle (owned by topo; do not destroy or modify it). */
hwloc_topology_t parlm_topo_hwloc(const parlm_topo *topo);

/* The NUMA node closest to obj: the first NUMA memory child of its nearest ancestor
 * (or itself) that has memory children. Never NULL in a loaded topology. */
hwloc_obj_t parlm_topo_local_numa(hwloc_obj_t obj);

/* The package containing obj, or NULL when the machine shows none. */
hwloc_obj_t parlm_topo_package_of(hwloc_obj_t obj);

/* OS index of an object, or its logical index when the OS gives none. */
int parlm_topo_os_index(hwloc_obj_t obj);

/* Binds the calling thread to the PU with that OS index; 0 or an errno value
 * (ENOENT: no such PU). Sets no message: callable from worker threads. */
int parlm_topo_bind_pu(const parlm_topo *topo, int pu_os_index);
#endif
