/* apps/parlm-plan.c — which (dp, tp, pp, micro-batches, schedule, ZeRO-1, overlap) layout
 * to train a GPT-2 model with on a cluster: enumerates every layout, predicts its step time
 * from a machine profile and a cluster file (parlm/plan.h), prints them fastest first with
 * the term that dominates, then the layouts excluded and why. A model, not a measurement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parlm-plan --profile P.json --cluster C.json --model NAME --global-batch B\n"
            "                  --seq T [--ranks N] [--bf16] [--json OUT] [--top K]\n"
            "Predicts the step time of every parallel layout and prints them fastest first.\n"
            "  --profile FILE      machine profile (rates, link alpha/beta; README: parlm-plan)\n"
            "  --cluster FILE      nodes, sockets, cores, memory, which link is intra/inter-node\n"
            "  --model PRESET      tiny, small, d6, d12, d24, d36, d48 (default d12)\n"
            "  --global-batch B    sequences per optimizer step, all ranks (default 32)\n"
            "  --seq T             tokens per sequence (default 1024)\n"
            "  --ranks N           MPI ranks (default one per core of the cluster)\n"
            "  --bf16              bf16 matmuls (needs fma_peak_bf16 in the profile)\n"
            "  --json FILE         write every layout, its terms and memory as JSON\n"
            "  --top K             print at most K layouts of each list (default 20)\n");
}

static const char *gib(char *b, size_t n, double bytes)
{
    snprintf(b, n, "%.2f", bytes / 1073741824.0);
    return b;
}

int main(int argc, char **argv)
{
    const char *profile = NULL, *cluster = NULL, *model = "d12", *json = NULL;
    int B = 32, T = 1024, ranks = 0, bf16 = 0, top = 20;
    cli_opt table[] = {
        CLI_S("--profile", &profile, 0), CLI_S("--cluster", &cluster, 0),
        CLI_S("--model", &model, 0), CLI_I("--global-batch", &B, 1, 1 << 24, 0),
        CLI_I("--seq", &T, 1, 1 << 20, 0), CLI_I("--ranks", &ranks, 1, 1 << 24, 0),
        CLI_F("--bf16", &bf16, 0), CLI_S("--json", &json, 0), CLI_I("--top", &top, 0, 1 << 30, 0),
    };
    cli c = {"parlm-plan", table, (int)(sizeof table / sizeof table[0]), usage, NULL, 0};
    int prc = cli_parse(&c, argc, argv);
    if (prc)
        return prc < 0 ? 0 : prc;
    if (!profile || !cluster) {
        /* no library function measures the FMA peak, so a profile cannot be guessed */
        fprintf(stderr, "parlm-plan: --profile and --cluster are required (README: parlm-plan)\n");
        return 2;
    }
    parlm_plan_profile pr;
    parlm_plan_cluster cl;
    parlm_plan_request rq = {.seq_len = T, .global_batch = B, .bf16 = bf16};
    if (parlm_plan_profile_load(profile, &pr) || parlm_plan_cluster_load(cluster, &cl) ||
        parlm_gpt_preset(model, &rq.model)) {
        fprintf(stderr, "parlm-plan: %s\n", parlm_last_error());
        return 1;
    }
    rq.ranks = ranks ? ranks : cl.nodes * cl.sockets * cl.cores_per_socket;
    parlm_plan_entry *e;
    int n;
    if (parlm_plan_enumerate(&pr, &cl, &rq, &e, &n)) {
        fprintf(stderr, "parlm-plan: %s\n", parlm_last_error());
        return 1;
    }
    int nfeas = 0;
    while (nfeas < n && !e[nfeas].excluded)
        nfeas++;
    printf("%s, B %d, T %d, %d ranks on %d nodes: %d layouts, %d excluded\n", model, B, T,
           rq.ranks, cl.nodes, n, n - nfeas);
    printf("%4s %4s %4s %5s %-5s %5s %7s %4s %10s %11s %6s %8s  %s\n", "dp", "tp", "pp", "M",
           "sched", "zero1", "overlap", "thr", "step_ms", "tokens/s", "eta", "GiB/rank",
           "bottleneck");
    for (int i = 0; i < nfeas && i < top; i++) {
        const parlm_plan_layout *y = &e[i].layout;
        const parlm_plan_estimate *s = &e[i].est;
        char g[32];
        printf("%4d %4d %4d %5d %-5s %5d %7d %4d %10.2f %11.0f %6.3f %8s  %s\n", y->dp, y->tp,
               y->pp, y->micro_batches, parlm_plan_schedule_name(y->schedule),
               y->zero1, y->overlap, y->threads, s->step * 1e3, s->tokens_per_s, s->eta,
               gib(g, sizeof g, s->mem_total), parlm_plan_term_name(s->bottleneck));
    }
    if (nfeas > top)
        printf("... %d more (--top)\n", nfeas - top);
    if (n > nfeas)
        printf("excluded:\n");
    for (int i = nfeas; i < n && i - nfeas < top; i++) {
        const parlm_plan_layout *y = &e[i].layout;
        printf("  dp %d tp %d pp %d M %d %s zero1 %d overlap %d: %s\n", y->dp, y->tp, y->pp,
               y->micro_batches, parlm_plan_schedule_name(y->schedule),
               y->zero1, y->overlap, e[i].reason);
    }
    if (n - nfeas > top)
        printf("  ... %d more (--top; all in --json)\n", n - nfeas - top);
    int rc = 0;
    if (json && parlm_plan_save(json, &rq, e, n)) {
        fprintf(stderr, "parlm-plan: %s\n", parlm_last_error());
        rc = 1;
    }
    free(e);
    return rc;
}
