/* apps/parlm-topo.c — shows the machine (or a synthetic / XML one) as parlm sees it:
 * packages, NUMA nodes, cores, PUs, caches, the thread teams parlm would use with the
 * PU and NUMA node of every thread, and the SIMD kernel set in use. --verify runs the
 * plan on this system and has every thread report the PU it is actually running on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parlm-topo [options]\n"
            "Prints the topology parlm sees and the thread teams it would run.\n"
            "  --synthetic STR   use an hwloc synthetic topology, e.g. \"pack:2 numa:1 core:4 pu:1\"\n"
            "  --xml FILE        use an hwloc XML export (lstopo file.xml)\n"
            "  --policy P        teams: socket (default; one per package), numa (one per\n"
            "                    NUMA node), single (one team of all cores)\n"
            "  --threads N       use at most N threads (default 0 = one per core)\n"
            "  --verify          run the plan on this system; each thread reports the PU it\n"
            "                    runs on (exit 1 if any is off its planned PU)\n"
            "  --json            machine-readable output\n"
            "  --help            this text\n"
            "Environment: PARLM_ISA=scalar|avx2|avx512|neon forces a kernel set.\n");
}

static const char *policy_name(parlm_team_policy p)
{
    return p == PARLM_TEAMS_PER_NUMA ? "numa" : p == PARLM_TEAMS_SINGLE ? "single" : "socket";
}

/* JSON string body: escapes quotes, backslashes and control characters. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void human_bytes(char *buf, size_t n, int64_t b)
{
    if (b >= 1024 * 1024 && b % (1024 * 1024) == 0)
        snprintf(buf, n, "%lld MiB", (long long)(b / (1024 * 1024)));
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(buf, n, "%lld KiB", (long long)(b / 1024));
    else
        snprintf(buf, n, "%lld B", (long long)b);
}

/* ---- --verify: every thread records where it runs ----------------------------------- */

typedef struct {
    const parlm_topo *topo;
    const parlm_teams *teams;
    int *first;      /* [team] offset into running[] */
    int *running;    /* [thread] PU observed, -1 if unknown */
    int *calls;      /* [thread] times fn ran */
} verify_state;

static void verify_fn(int team, int thread, int team_size, void *arg)
{
    (void)team_size;
    verify_state *v = arg;
    int pu = -1;
    if (parlm_topo_current_pu(v->topo, &pu) != PARLM_OK)
        pu = -1;
    int i = v->first[team] + thread;
    v->running[i] = pu;
    v->calls[i]++; /* each slot is written by one thread only */
}

/* Runs the plan; fills running[] and calls[]; returns the status of parlm_teams_run. */
static parlm_status verify(const parlm_topo *topo, const parlm_teams *teams, int **running,
                           int **calls)
{
    int nteams = parlm_teams_count(teams), n = parlm_teams_threads(teams);
    verify_state v = {.topo = topo, .teams = teams};
    v.first = calloc((size_t)nteams, sizeof *v.first);
    v.running = calloc((size_t)n, sizeof *v.running);
    v.calls = calloc((size_t)n, sizeof *v.calls);
    if (!v.first || !v.running || !v.calls) {
        free(v.first);
        free(v.running);
        free(v.calls);
        *running = *calls = NULL;
        fprintf(stderr, "parlm-topo: out of memory\n");
        return PARLM_ENOMEM;
    }
    for (int t = 1; t < nteams; t++)
        v.first[t] = v.first[t - 1] + parlm_teams_size(teams, t - 1);
    parlm_status s = parlm_teams_run(topo, teams, verify_fn, &v);
    free(v.first);
    *running = v.running;
    *calls = v.calls;
    return s;
}

/* ---- output ----------------------------------------------------------------------------- */

static void print_text(const char *source, const parlm_topo *topo, parlm_team_policy policy,
                       const parlm_teams *teams, const int *running, const int *calls)
{
    printf("topology: %s%s\n", source,
           parlm_topo_is_this_system(topo) ? " (this system: binding works)"
                                           : " (not this system: plan only, no binding)");
    printf("  packages %d, NUMA nodes %d, cores %d, PUs %d\n", parlm_topo_packages(topo),
           parlm_topo_numa_nodes(topo), parlm_topo_cores(topo), parlm_topo_pus(topo));
    static const char *names[4] = {"", "L1d", "L2", "L3"};
    printf("  caches:");
    for (int level = 1; level <= 3; level++) {
        char b[32];
        human_bytes(b, sizeof b, parlm_topo_cache_bytes(topo, level));
        int shared = parlm_topo_cache_cores(topo, level);
        printf(" %s %s", names[level], b);
        if (!parlm_topo_cache_reported(topo, level))
            printf(" (default)");
        else if (shared > 1)
            printf(" (shared by %d cores)", shared);
        printf(level < 3 ? "," : "\n");
    }
    printf("  kernels: %s, AVX512-BF16 %s\n", parlm_isa_name(parlm_isa_current()),
           parlm_cpu_has_avx512bf16() ? "yes" : "no");
    const char *why;
    parlm_bf16_path bp = parlm_bf16_path_current(&why);
    printf("  bf16 GEMM: %s (%s)\n", parlm_bf16_path_name(bp), why);
    const char *gwhy;
    parlm_gemv_mode gm = parlm_gemv_mode_current(&gwhy);
    printf("  decode GEMV: %s (%s)\n", parlm_gemv_mode_name(gm), gwhy);
    for (int ti = 0; ti < 2; ti++) {
        int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
        parlm_qlayout ql = parlm_qlayout_current(type, &why);
        printf("  %s decode layout: %s (%s)\n", parlm_wtype_name(type), parlm_qlayout_name(ql),
               why);
    }
    int nteams = parlm_teams_count(teams);
    printf("teams: policy %s, %d team%s, %d thread%s\n", policy_name(policy), nteams,
           nteams == 1 ? "" : "s", parlm_teams_threads(teams),
           parlm_teams_threads(teams) == 1 ? "" : "s");
    int i = 0;
    for (int t = 0; t < nteams; t++) {
        int pkg = parlm_teams_package(teams, t);
        printf("  team %d: ", t);
        if (pkg >= 0)
            printf("package %d", pkg);
        else
            printf("several packages");
        printf(", memory on NUMA node %d, %d thread%s\n", parlm_teams_numa(teams, t),
               parlm_teams_size(teams, t), parlm_teams_size(teams, t) == 1 ? "" : "s");
        for (int th = 0; th < parlm_teams_size(teams, t); th++, i++) {
            printf("    thread %d -> PU %d (NUMA node %d)", th, parlm_teams_pu(teams, t, th),
                   parlm_teams_thread_numa(teams, t, th));
            if (running) {
                if (calls[i] != 1)
                    printf("  ran %d times!", calls[i]);
                else if (running[i] < 0)
                    printf("  running on: unknown");
                else
                    printf("  running on PU %d %s", running[i],
                           running[i] == parlm_teams_pu(teams, t, th) ? "ok" : "MISMATCH");
            }
            printf("\n");
        }
    }
}

static void print_json(const char *source, const parlm_topo *topo, parlm_team_policy policy,
                       const parlm_teams *teams, const int *running, const int *calls)
{
    printf("{\"source\": ");
    json_str(stdout, source);
    printf(", \"this_system\": %s,\n", parlm_topo_is_this_system(topo) ? "true" : "false");
    printf(" \"packages\": %d, \"numa_nodes\": %d, \"cores\": %d, \"pus\": %d,\n",
           parlm_topo_packages(topo), parlm_topo_numa_nodes(topo), parlm_topo_cores(topo),
           parlm_topo_pus(topo));
    printf(" \"caches\": [");
    for (int level = 1; level <= 3; level++)
        printf("%s{\"level\": %d, \"bytes\": %lld, \"cores\": %d, \"reported\": %s}",
               level > 1 ? ", " : "", level, (long long)parlm_topo_cache_bytes(topo, level),
               parlm_topo_cache_cores(topo, level),
               parlm_topo_cache_reported(topo, level) ? "true" : "false");
    const char *why;
    parlm_bf16_path bp = parlm_bf16_path_current(&why);
    const char *gwhy;
    parlm_gemv_mode gm = parlm_gemv_mode_current(&gwhy);
    printf("],\n \"kernels\": {\"isa\": \"%s\", \"avx512bf16\": %s, \"bf16_path\": \"%s\", "
           "\"bf16_path_reason\": \"%s\", \"gemv_mode\": \"%s\", \"gemv_mode_reason\": "
           "\"%s\"},\n",
           parlm_isa_name(parlm_isa_current()), parlm_cpu_has_avx512bf16() ? "true" : "false",
           parlm_bf16_path_name(bp), why, parlm_gemv_mode_name(gm), gwhy);
    for (int ti = 0; ti < 2; ti++) {
        int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
        parlm_qlayout ql = parlm_qlayout_current(type, &why);
        printf(" \"%s_decode_layout\": \"%s\", \"%s_decode_layout_reason\": \"%s\",\n",
               parlm_wtype_name(type), parlm_qlayout_name(ql), parlm_wtype_name(type), why);
    }
    printf(" \"policy\": \"%s\", \"threads\": %d, \"teams\": [", policy_name(policy),
           parlm_teams_threads(teams));
    int i = 0;
    for (int t = 0; t < parlm_teams_count(teams); t++) {
        printf("%s\n  {\"team\": %d, \"package\": %d, \"numa\": %d, \"threads\": [",
               t ? "," : "", t, parlm_teams_package(teams, t), parlm_teams_numa(teams, t));
        for (int th = 0; th < parlm_teams_size(teams, t); th++, i++) {
            printf("%s{\"thread\": %d, \"pu\": %d, \"numa\": %d", th ? ", " : "", th,
                   parlm_teams_pu(teams, t, th), parlm_teams_thread_numa(teams, t, th));
            if (running)
                printf(", \"running_pu\": %d, \"runs\": %d", running[i], calls[i]);
            printf("}");
        }
        printf("]}");
    }
    printf("\n ]}\n");
}

int main(int argc, char **argv)
{
    const char *synthetic = NULL, *xml = NULL;
    parlm_team_policy policy = PARLM_TEAMS_PER_SOCKET;
    int threads = 0, json = 0, do_verify = 0;

    static const char *const policies[] = {"socket", "numa", "single", NULL};
    const char *policy_arg = "socket";
    const cli_opt table[] = {
        CLI_F("--json", &json, 0), CLI_F("--verify", &do_verify, 0),
        CLI_S("--synthetic", &synthetic, 0), CLI_S("--xml", &xml, 0),
        CLI_C("--policy", &policy_arg, policies, 0), CLI_I("--threads", &threads, 0, 4096, 0),
    };
    cli c = {"parlm-topo", table, (int)(sizeof table / sizeof table[0]), usage, NULL, 0};
    int prc = cli_parse(&c, argc, argv);
    if (prc)
        return prc < 0 ? 0 : prc;
    policy = !strcmp(policy_arg, "numa")     ? PARLM_TEAMS_PER_NUMA
             : !strcmp(policy_arg, "single") ? PARLM_TEAMS_SINGLE
                                             : PARLM_TEAMS_PER_SOCKET;
    if (synthetic && xml) {
        fprintf(stderr, "parlm-topo: give --synthetic or --xml, not both\n");
        return 2;
    }
    if (parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "parlm-topo: %s\n", parlm_last_error());
        return 2;
    }

    parlm_topo *topo = NULL;
    parlm_status s = synthetic ? parlm_topo_load_synthetic(&topo, synthetic)
                     : xml     ? parlm_topo_load_xml(&topo, xml)
                               : parlm_topo_load_system(&topo);
    if (s != PARLM_OK) {
        fprintf(stderr, "parlm-topo: %s\n", parlm_last_error());
        return 1;
    }
    char source[1024];
    if (synthetic)
        snprintf(source, sizeof source, "synthetic \"%s\"", synthetic);
    else if (xml)
        snprintf(source, sizeof source, "XML %s", xml);
    else
        snprintf(source, sizeof source, "this machine");

    parlm_teams *teams = NULL;
    if (parlm_teams_plan(topo, policy, threads, &teams) != PARLM_OK) {
        fprintf(stderr, "parlm-topo: %s\n", parlm_last_error());
        parlm_topo_free(topo);
        return 1;
    }

    int *running = NULL, *calls = NULL, rc = 0;
    if (do_verify) {
        if (!parlm_topo_is_this_system(topo)) {
            fprintf(stderr, "parlm-topo: --verify needs this system's topology (drop "
                            "--synthetic / --xml)\n");
            rc = 2;
        } else if ((s = verify(topo, teams, &running, &calls)) != PARLM_OK) {
            fprintf(stderr, "parlm-topo: %s\n", running ? parlm_last_error() : "verify failed");
            rc = 1;
        }
        for (int i = 0; running && i < parlm_teams_threads(teams); i++)
            if (calls[i] != 1 || running[i] < 0)
                rc = 1;
        /* the running PU is compared with the plan while printing; count mismatches here */
        for (int t = 0, i = 0; running && t < parlm_teams_count(teams); t++)
            for (int th = 0; th < parlm_teams_size(teams, t); th++, i++)
                if (running[i] != parlm_teams_pu(teams, t, th))
                    rc = 1;
    }
    if (rc != 2) {
        if (json)
            print_json(source, topo, policy, teams, running, calls);
        else
            print_text(source, topo, policy, teams, running, calls);
    }
    if (do_verify && rc == 0 && !json)
        printf("verify: every thread ran once, on its planned PU\n");
    free(running);
    free(calls);
    parlm_teams_free(teams);
    parlm_topo_free(topo);
    return rc;
}
