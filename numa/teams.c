/* PLACEHOLDER — replaced before commit. */
typedef int parlm_placeholder_teams_numa;
