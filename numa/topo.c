/* PLACEHOLDER — replaced before commit. */
typedef int parlm_placeholder_topo_numa;
