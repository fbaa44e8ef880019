/* apps/parlm-plan.c — which (dp, tp, pp, micro-batches, schedule, ZeRO-1, overlap) layout
 * to train a GPT-2 or Llama model with on a cluster: enumerates every layout, predicts its
 * step time from a machine profile and a cluster file (parlm/plan.h), prints them fastest
 * first with the term that dominates, then the layouts excluded and why. A model, not a
 * measurement. */
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
            "                  [--layout DP,TP,PP [--micro-batches M] [--schedule S] [--zero1]\n"
            "                   [--overlap] [--threads N]] [--vocab V]\n"
            "Predicts the step time of every parallel layout and prints them fastest first;\n"
            "with --layout, of that one layout only, term by term.\n"
            "  --profile FILE      machine profile (rates, link alpha/beta; README: parlm-plan)\n"
            "  --cluster FILE      nodes, sockets, cores, memory, which link is intra/inter-node\n"
            "  --model PRESET      tiny, small, d6, d12, d24, d36, d48 (GPT-2), llama-15m,\n"
            "                      llama-110m, tinyllama-1.1b, llama-7b (default d12)\n"
            "  --global-batch B    sequences per optimizer step, all ranks (default 32)\n"
            "  --seq T             tokens per sequence (default 1024)\n"
            "  --ranks N           MPI ranks (default one per core of the cluster)\n"
            "  --bf16              bf16 matmuls (needs fma_peak_bf16 in the profile)\n"
            "  --json FILE         write every layout, its terms and memory as JSON\n"
            "  --top K             print at most K layouts of each list (default 20)\n"
            "  --vocab V           vocabulary size (default 50257, Llama 32000; parlm-train's\n"
            "                      byte tokenizer: 256)\n"
            "  --layout DP,TP,PP   estimate this grid alone (ranks = DP x TP x PP)\n"
            "  --micro-batches M   its pipeline micro-batches (default PP)\n"
            "  --schedule S        gpipe or 1f1b (default 1f1b)\n"
            "  --zero1, --overlap  its DP mode (default plain sync)\n"
            "  --threads N         cores per rank (default: the node's cores / its ranks)\n");
}

static const char *gib(char *b, size_t n, double bytes)
{
    snprintf(b, n, "%.2f", bytes / 1073741824.0);
    return b;
}

/* --layout: one layout's estimate, term by term (and --json as a one-entry plan) */
static int plan_one(const parlm_plan_profile *pr, const parlm_plan_cluster *cl,
                    parlm_plan_request *rq, parlm_plan_layout *y, const char *schedule,
                    const char *json)
{
    int rpn = rq->ranks / cl->nodes;
    if (!y->micro_batches)
        y->micro_batches = y->pp;
    y->schedule = strcmp(schedule, "gpipe") ? 1 : 0;
    y->bf16 = rq->bf16;
    if (!y->threads)
        y->threads = rpn > 0 && cl->sockets * cl->cores_per_socket / rpn > 0
                         ? cl->sockets * cl->cores_per_socket / rpn : 1;
    parlm_plan_entry e = {.layout = *y};
    if (parlm_plan_estimate_layout(pr, cl, rq, y, &e.est)) {
        fprintf(stderr, "parlm-plan: %s\n", parlm_last_error());
        return 1;
    }
    const parlm_plan_estimate *s = &e.est;
    int llama = rq->model.arch == PARLM_ARCH_LLAMA;
    char g[32];
    printf("dp %d tp %d pp %d M %d %s zero1 %d overlap %d, %d thread(s) a rank, B %d, T %d: "
           "step_ms %.3f, tokens/s %.0f, eta %.3f, %s GiB a rank (limit %.2f), bottleneck %s\n",
           y->dp, y->tp, y->pp, y->micro_batches, parlm_plan_schedule_name(y->schedule),
           y->zero1, y->overlap, y->threads, rq->global_batch, rq->seq_len, s->step * 1e3,
           s->tokens_per_s, s->eta, gib(g, sizeof g, s->mem_total), s->mem_limit / 1073741824.0,
           parlm_plan_term_name(s->bottleneck));
    for (int t = 0; t < PARLM_PLAN_NTERMS; t++) {
        printf("  %-13s %10.3f ms\n", parlm_plan_term_name((parlm_plan_term)t), s->term[t] * 1e3);
        /* the elementwise term by op (a GPT-2 model's five, a Llama model's that it runs);
         * the optimizer term is the adamw op alone */
        for (int i = 0; t == PARLM_PLAN_ELEMENTWISE && i < PARLM_PLAN_NEW; i++)
            if (i != PARLM_PLAN_EW_ADAMW &&
                (llama ? s->ew[i] > 0 : i < PARLM_PLAN_EW_ADAMW))
                printf("    %-12s %9.3f ms\n", parlm_plan_ew_name((parlm_plan_ew)i), s->ew[i] * 1e3);
    }
    if (s->mem_total > s->mem_limit)
        printf("does not fit in memory\n");
    if (json && parlm_plan_save(json, rq, &e, 1)) {
        fprintf(stderr, "parlm-plan: %s\n", parlm_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *profile = NULL, *cluster = NULL, *model = "d12", *json = NULL;
    int B = 32, T = 1024, ranks = 0, bf16 = 0, top = 20, vocab = 0;
    const char *layout = NULL, *schedule = "1f1b";
    static const char *const schedules[] = {"gpipe", "1f1b", NULL};
    parlm_plan_layout one = {0};
    cli_opt table[] = {
        CLI_S("--profile", &profile, 0), CLI_S("--cluster", &cluster, 0),
        CLI_S("--model", &model, 0), CLI_I("--global-batch", &B, 1, 1 << 24, 0),
        CLI_I("--seq", &T, 1, 1 << 20, 0), CLI_I("--ranks", &ranks, 1, 1 << 24, 0),
        CLI_F("--bf16", &bf16, 0), CLI_S("--json", &json, 0), CLI_I("--top", &top, 0, 1 << 30, 0),
        CLI_I("--vocab", &vocab, 1, 1 << 24, 0), CLI_S("--layout", &layout, 0),
        CLI_I("--micro-batches", &one.micro_batches, 1, 1 << 24, 0),
        CLI_C("--schedule", &schedule, schedules, 0), CLI_F("--zero1", &one.zero1, 0),
        CLI_F("--overlap", &one.overlap, 0), CLI_I("--threads", &one.threads, 1, 1 << 20, 0),
    };
    cli c = {"parlm-plan", table, (int)(sizeof table / sizeof table[0]), usage, NULL, 0};
    int prc = cli_parse(&c, argc, argv);
    if (prc)
        return prc < 0 ? 0 : prc;
    if (!profile || !cluster) {
        /* a profile is measured (parlm-bench calibrate), never guessed */
        fprintf(stderr, "parlm-plan: --profile and --cluster are required (`parlm-bench "
                        "calibrate --out FILE` measures a profile; README: parlm-plan)\n");
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
    if (vocab)
        rq.model.vocab = vocab, rq.model.vocab_pad = 0;
    rq.ranks = ranks ? ranks : cl.nodes * cl.sockets * cl.cores_per_socket;
    if (layout) {
        char end;
        if (sscanf(layout, "%d,%d,%d%c", &one.dp, &one.tp, &one.pp, &end) != 3 || one.dp < 1 ||
            one.tp < 1 || one.pp < 1) {
            fprintf(stderr, "parlm-plan: --layout '%s': want DP,TP,PP (positive integers)\n",
                    layout);
            return 2;
        }
        rq.ranks = one.dp * one.tp * one.pp;
        return plan_one(&pr, &cl, &rq, &one, schedule, json);
    }
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
