/* tests/plan/test_plan.c — the cost model (parlm/plan.h) against hand arithmetic on a
 * small model whose every term fits in a comment, layout enumeration counts, memory
 * exclusion, the alpha/beta fit on synthetic timings, and the JSON files (untrusted). */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"

#define NEAR(a, b) ck_assert_msg(fabs((a) - (b)) <= 1e-9 * fabs(b) + 1e-15, "%s = %.12g, want %.12g", #a, (double)(a), (double)(b))

/* L2 NH2 C64, max_seq 16, vocab 128 (= vocab_pad). Every rate 1e9 (one GEMM point, and
 * every elementwise op in elements/s), so a time is FLOPs (or elements) / 1e9. Link "a" (intra): all-reduce alpha 2e-6, beta 2e-9; link "b"
 * (inter): 1e-5 and 1e-8 for both kinds. 2 nodes of 1 socket x 2 cores. */
static parlm_plan_profile pr;
static parlm_plan_cluster cl;
static parlm_plan_request rq;

static void setup(void)
{
    memset(&pr, 0, sizeof pr);
    pr.fma_peak_f32 = pr.fma_peak_bf16 = 1e9;
    pr.n_gemm = 1;
    pr.gemm[0] = (parlm_plan_gemm_point){64, 64, 64, 1e9};
    pr.attention_flops = 1e9, pr.stream_bandwidth = 1e9;
    for (int i = 0; i < PARLM_PLAN_NEW; i++)
        pr.ew_rate[i] = 1e9;
    pr.n_links = 2;
    pr.links[0] = (parlm_plan_link){"a", 1e-6, 1e-9, 2e-6, 2e-9};
    pr.links[1] = (parlm_plan_link){"b", 1e-5, 1e-8, 1e-5, 1e-8};
    cl = (parlm_plan_cluster){.nodes = 2, .sockets = 1, .cores_per_socket = 2,
                              .memory_per_node = 1e12, .intra_link = "a", .inter_link = "b"};
    rq = (parlm_plan_request){.model = {.n_layer = 2, .n_head = 2, .n_embd = 64, .max_seq = 16,
                                        .vocab = 128, .vocab_pad = 128},
                              .global_batch = 4, .seq_len = 16, .ranks = 4};
}

START_TEST(primitives)
{
    /* ring of 4 over 1000 bytes: 2*3/4*1000*1e-9 + 6*1e-6 */
    NEAR(parlm_plan_ring_allreduce(1000, 4, 1e-6, 1e-9), 1.5e-6 + 6e-6);
    NEAR(parlm_plan_ring_allreduce(1000, 1, 1e-6, 1e-9), 0.0);
    /* FLOPs per token: layer params 12*64^2 + 13*64 = 49984, x2 = 99968, attention 2*64*16 =
     * 2048; head 2*(128*64 + 2*64) = 16640: 2*(99968 + 2048) + 16640 = 220672 */
    NEAR(parlm_plan_gpt_flops_per_token(&rq.model, 16), 220672.0);
    /* inverse-distance weights (power 4) in log space: 1e9 at 1^3, 3e9 at 100^3 -> 2e9
     * half-way; a measured shape is its own rate; beyond the points the nearest dominates
     * (d^2 = 3 ln(10)^2 and 3 ln(1000)^2: weights 81 : 1) */
    parlm_plan_profile p2 = pr;
    p2.n_gemm = 2;
    p2.gemm[0] = (parlm_plan_gemm_point){1, 1, 1, 1e9};
    p2.gemm[1] = (parlm_plan_gemm_point){100, 100, 100, 3e9};
    NEAR(parlm_plan_gemm_rate(&p2, 10, 10, 10), 2e9);
    NEAR(parlm_plan_gemm_rate(&p2, 100, 100, 100), 3e9);
    NEAR(parlm_plan_gemm_rate(&p2, 1000, 1000, 1000), (81 * 3e9 + 1e9) / 82);
    /* shape, not volume: 64x3072x768 and 256x768x768 have one volume; 256x1536x384 takes
     * its rate from its neighbours in n and k (128 and 512 rows of 1536x384), not from
     * the 64-row point of the same volume */
    p2.n_gemm = 4;
    p2.gemm[0] = (parlm_plan_gemm_point){64, 3072, 768, 1e9};
    p2.gemm[1] = (parlm_plan_gemm_point){256, 768, 768, 2e9};
    p2.gemm[2] = (parlm_plan_gemm_point){128, 1536, 384, 4e9};
    p2.gemm[3] = (parlm_plan_gemm_point){512, 1536, 384, 4e9};
    ck_assert_double_gt(parlm_plan_gemm_rate(&p2, 256, 1536, 384), 3.5e9);
}
END_TEST

START_TEST(tp_pp_terms)
{
    /* dp 1, tp 2, pp 2, M 2, GPipe, 1 thread: micro-batch b = 4/2 = 2 sequences, 32 tokens.
     * Stages [0,1), [1,2) (parlm_pp_split). Stage 1 = layer + head:
     *   t_c = 3 * 32 * (99968 + 16640 + 2048) / 1e9 / tp 2 = 5.695488e-3
     * TP all-reduce of 32*64*4 = 8192 bytes over 2 on "a": 8192*2e-9 + 2*2e-6 = 20.384e-6,
     *   4 a layer: 81.536e-6.
     * Elementwise, elements a token of stage 1 (one layer, the head; tp 2): layernorm 2C + C
     *   = 192, gelu 4C/2 = 128, residual 2C = 128, bias 7C/2 + 2C = 352, crossentropy
     *   Vp/2 = 64: 864 (stage 0: 128 + 128 + 192 (the embedding's add) + 352 = 800), x 32
     *   tokens: 27.648e-6. Slowest micro-batch 5.695488e-3 + 27.648e-6 + 81.536e-6 =
     *   5.804672e-3.
     * compute 2 * 5.695488e-3; elementwise 2 * 27.648e-6; tp 2 * 81.536e-6; bubble 1 *
     *   5.804672e-3.
     * p2p: a pipeline (4 ranks) spans both nodes -> "b": 2*(M+pp-2) = 4 transfers of
     *   1e-5 + 8192*1e-8 = 9.192e-5 -> 3.6768e-4.
     * optimizer: stage 0 holds 49984/2 + (128*64 + 16*64)/2 = 29600 params (the most),
     *   28 bytes each at 1e9/2 ranks a node: 1.6576e-3 (the memory binds: 1.8e7
     *   parameters/s against adamw's 1e9). */
    parlm_plan_layout y = {.dp = 1, .tp = 2, .pp = 2, .micro_batches = 2, .schedule = 0,
                           .threads = 1};
    parlm_plan_estimate e;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_COMPUTE], 11.390976e-3);
    NEAR(e.term[PARLM_PLAN_TP], 163.072e-6);
    NEAR(e.term[PARLM_PLAN_ELEMENTWISE], 55.296e-6);
    NEAR(e.ew[PARLM_PLAN_EW_LAYERNORM], 2 * 32 * 192e-9);
    NEAR(e.ew[PARLM_PLAN_EW_GELU], 2 * 32 * 128e-9);
    NEAR(e.ew[PARLM_PLAN_EW_RESIDUAL], 2 * 32 * 128e-9);
    NEAR(e.ew[PARLM_PLAN_EW_BIAS], 2 * 32 * 352e-9);
    NEAR(e.ew[PARLM_PLAN_EW_CROSSENTROPY], 2 * 32 * 64e-9);
    NEAR(e.ew[PARLM_PLAN_EW_ADAMW], 1.6576e-3);
    NEAR(e.term[PARLM_PLAN_BUBBLE], 5.804672e-3);
    NEAR(e.term[PARLM_PLAN_P2P], 3.6768e-4);
    NEAR(e.term[PARLM_PLAN_DP], 0.0);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 1.6576e-3);
    NEAR(e.step, 19.439296e-3);
    NEAR(e.tokens_per_s, 64 / 19.439296e-3);
    ck_assert_int_eq(e.bottleneck, PARLM_PLAN_COMPUTE);
    /* memory, stage 1 (the worst): 29216 params (24992 + 8192/2 + 128): 4 + 4 + 8 bytes;
     * activations 32 tokens * 4 bytes * (9*64 + (12*64 + 2*2*16)/2 + 2*128/2) = 143360,
     * GPipe keeps M = 2: 286720. Total 754176. Limit 1e12 / 2 ranks a node. */
    NEAR(e.mem_act, 286720.0);
    NEAR(e.mem_total, 754176.0);
    NEAR(e.mem_limit, 5e11);
    /* 1F1B: stage 1 keeps min(M, pp - 1) = 1, stage 0 keeps 2 and becomes the worst:
     * 29600*16 + 2 * 32*4*(576 + 416) = 473600 + 253952 = 727552 */
    y.schedule = 1;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.mem_total, 727552.0);
}
END_TEST

START_TEST(dp_terms)
{
    /* dp 4, tp 1, pp 1, M 1: all 109312 params (= parlm_gpt_config_num_params), 437248
     * bytes of gradients. 2 replicas a node: ring of 2 on "a": 437248*2e-9 + 2*2e-6 =
     * 878.496e-6; then 218624 bytes across 2 nodes on "b": 218624e-8 + 2e-5 = 2206.24e-6.
     * Total 3084.736e-6. Micro-batch compute: 3 * 16 * 220672 / 1e9 = 10.592256e-3, 2/3 of
     * it (7.06e-3) hides the whole all-reduce when overlapping. */
    parlm_plan_layout y = {.dp = 4, .tp = 1, .pp = 1, .micro_batches = 1, .threads = 1};
    parlm_plan_estimate e;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.dp_total, 3084.736e-6);
    NEAR(e.term[PARLM_PLAN_DP], 3084.736e-6);
    NEAR(e.term[PARLM_PLAN_COMPUTE], 10.592256e-3);
    /* elementwise, 16 tokens of both layers, the embedding and the head: layernorm 5C =
     * 320, gelu 8C = 512, residual 5C = 320, bias 2 x 9C = 1152, crossentropy 128: 2432 */
    NEAR(e.term[PARLM_PLAN_ELEMENTWISE], 16 * 2432e-9);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 28.0 * 109312 / 5e8);
    /* ZeRO-1 shards AdamW state and its update over dp 4; overlap hides the all-reduce */
    y.zero1 = y.overlap = 1;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_DP], 0.0);
    NEAR(e.dp_hidden, 3084.736e-6);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 28.0 * 109312 / 4 / 5e8);
    NEAR(e.mem_optim, 8.0 * 109312 / 4);
    /* a slow optimizer (1e6 parameters/s a core) binds before the memory does, and is
     * shared by the rank's threads: 109312 / 4 / (2 x 1e6) */
    pr.ew_rate[PARLM_PLAN_EW_ADAMW] = 1e6, y.threads = 2, cl.cores_per_socket = 4;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 109312.0 / 4 / 2e6);
    NEAR(e.ew[PARLM_PLAN_EW_ADAMW], 109312.0 / 4 / 2e6);
    /* and the elementwise ops run on both threads */
    NEAR(e.term[PARLM_PLAN_ELEMENTWISE], 16 * 2432e-9 / 2);
    y.threads = 1, cl.cores_per_socket = 2;
    /* a broken layout names the rule */
    y.tp = 4, y.dp = 1;
    ck_assert_int_ne(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
}
END_TEST

static int find(const parlm_plan_entry *e, int n, int dp, int tp, int pp, int M, int sch)
{
    for (int i = 0; i < n; i++)
        if (e[i].layout.dp == dp && e[i].layout.tp == tp && e[i].layout.pp == pp &&
            e[i].layout.micro_batches == M && e[i].layout.schedule == sch &&
            !e[i].layout.zero1 && !e[i].layout.overlap)
            return i;
    return -1;
}

START_TEST(enumeration)
{
    /* 4 ranks, B 4: (tp,pp,dp) = (1,1,4): M 1, zero1 x overlap 4 -> 4; (1,2,2): M 1|2, 2
     * schedules, 4 -> 16; (1,4,1): M 1|2|4, 2 -> 6; (2,1,2): 2 M x 4 -> 8; (2,2,1): 3 x 2 -> 6;
     * (4,1,1): 3. Total 43. Excluded: pp 4 > 2 layers (6), tp 4 > 2 heads (3), 1F1B with
     * M 1 < pp 2 (4 at dp 2, 1 at dp 1): 14. */
    parlm_plan_entry *e;
    int n;
    ck_assert_int_eq(parlm_plan_enumerate(&pr, &cl, &rq, &e, &n), PARLM_OK);
    ck_assert_int_eq(n, 43);
    int ex = 0;
    for (int i = 0; i < n; i++) {
        ex += e[i].excluded;
        if (i > 0 && !e[i].excluded) /* feasible first, fastest first */
            ck_assert(!e[i - 1].excluded && e[i - 1].est.step <= e[i].est.step);
        if (e[i].excluded)
            ck_assert(e[i].reason[0]);
    }
    ck_assert_int_eq(ex, 14);
    free(e);
    /* memory: 740000 bytes a rank keeps 1F1B (727552) and drops GPipe (754176) */
    cl.memory_per_node = 1480000;
    ck_assert_int_eq(parlm_plan_enumerate(&pr, &cl, &rq, &e, &n), PARLM_OK);
    int g = find(e, n, 1, 2, 2, 2, 0), f = find(e, n, 1, 2, 2, 2, 1);
    ck_assert(g >= 0 && f >= 0);
    ck_assert(e[g].excluded && strstr(e[g].reason, "GiB"));
    ck_assert(!e[f].excluded);
    free(e);
}
END_TEST

START_TEST(fit)
{
    double x[64], t[64], a, b, r;
    uint64_t s = 12345;
    for (int i = 0; i < 64; i++) {
        x[i] = 1000.0 * (i + 1) * (i + 1); /* 1 kB .. 4 MB */
        t[i] = 5e-6 + 1e-10 * x[i];
    }
    ck_assert_int_eq(parlm_plan_fit_alpha_beta(x, t, 64, &a, &b, &r), PARLM_OK);
    ck_assert(fabs(a - 5e-6) < 1e-12 && fabs(b - 1e-10) < 1e-16 && r < 1e-9);
    /* +-1% multiplicative noise: parameters within a few percent, rms near 0.6% */
    for (int i = 0; i < 64; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
        t[i] = (5e-6 + 1e-10 * x[i]) * (1 + 0.01 * u);
    }
    ck_assert_int_eq(parlm_plan_fit_alpha_beta(x, t, 64, &a, &b, &r), PARLM_OK);
    ck_assert_msg(fabs(a - 5e-6) < 1e-6 && fabs(b - 1e-10) < 2e-12 && r > 1e-4 && r < 0.02,
                  "alpha %g beta %g rms %g", a, b, r);
    /* 8 B .. 32 MB with +-3% noise: latency-bound below ~2 kB. Fitting relative errors
     * recovers alpha within 10%; plain least squares would leave it to the noise of the
     * largest sizes (3% of 34 ms is 500x alpha) */
    for (int i = 0; i < 12; i++) {
        x[i] = 8.0 * pow(4.0, i);
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
        t[i] = (2e-6 + 1e-9 * x[i]) * (1 + 0.03 * u);
    }
    ck_assert_int_eq(parlm_plan_fit_alpha_beta(x, t, 12, &a, &b, &r), PARLM_OK);
    ck_assert_msg(fabs(a - 2e-6) < 2e-7 && fabs(b - 1e-9) < 5e-11 && r < 0.03,
                  "alpha %g beta %g rms %g", a, b, r);
    /* bad input */
    ck_assert_int_ne(parlm_plan_fit_alpha_beta(x, t, 1, &a, &b, &r), PARLM_OK);
    double same[3] = {10, 10, 10}, neg[3] = {1e-6, -1, 2e-6};
    ck_assert_int_ne(parlm_plan_fit_alpha_beta(same, t, 3, &a, &b, &r), PARLM_OK);
    ck_assert_int_ne(parlm_plan_fit_alpha_beta(x, neg, 3, &a, &b, &r), PARLM_OK);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert(f);
    fputs(text, f);
    fclose(f);
}

/* loading text as a profile (or a cluster) fails and the message names the field */
static void bad(int cluster, const char *text, const char *field)
{
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    write_file(path, text);
    parlm_plan_profile p;
    parlm_plan_cluster c;
    parlm_status st = cluster ? parlm_plan_cluster_load(path, &c) : parlm_plan_profile_load(path, &p);
    unlink(path);
    ck_assert_int_ne(st, PARLM_OK);
    ck_assert_msg(strstr(parlm_last_error(), field) && strstr(parlm_last_error(), path),
                  "error '%s' should name %s and the file", parlm_last_error(), field);
}

START_TEST(json)
{
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    parlm_plan_profile p;
    parlm_plan_cluster c;
    ck_assert_int_eq(parlm_plan_profile_save(path, &pr), PARLM_OK);
    ck_assert_int_eq(parlm_plan_profile_load(path, &p), PARLM_OK);
    ck_assert(memcmp(&p, &pr, sizeof p) == 0);
    ck_assert_int_eq(parlm_plan_cluster_save(path, &cl), PARLM_OK);
    ck_assert_int_eq(parlm_plan_cluster_load(path, &c), PARLM_OK);
    ck_assert(memcmp(&c, &cl, sizeof c) == 0);
    unlink(path);
    bad(0, "{\"fma_peak_f32\": 1e9,", "line");
    bad(0, "[1, 2]", "object");
    bad(0, "{\"fma_peak_bf16\": 0}", "fma_peak_f32");
    bad(0, "{\"fma_peak_f32\": -5, \"fma_peak_bf16\": 0}", "fma_peak_f32");
    bad(0, "{\"fma_peak_f32\": 1, \"fma_peak_bf16\": 0, \"attention_flops\": 1,"
           "\"stream_bandwidth\": 1, \"gemm\": [{\"m\": 1, \"n\": 1, \"k\": \"x\", \"flops\": 1}]}",
        "gemm[0].k");
    bad(0, "{\"fma_peak_f32\": 1, \"fma_peak_bf16\": 0, \"attention_flops\": 1,"
           "\"stream_bandwidth\": 1, \"gemm\": [{\"m\": 1, \"n\": 1, \"k\": 1, \"flops\": 1}],"
           "\"links\": [{\"name\": \"a\", \"p2p_alpha\": 0, \"p2p_beta\": -1}]}",
        "links[0].p2p_beta");
    bad(0, "{\"fma_peak_f32\": 1, \"fma_peak_bf16\": 0, \"attention_flops\": 1,"
           "\"stream_bandwidth\": 1, \"gemm\": [{\"m\": 1, \"n\": 1, \"k\": 1, \"flops\": 1}],"
           "\"links\": 5}", "links");
    bad(0, "{\"fma_peak_f32\": 1, \"fma_peak_bf16\": 0, \"attention_flops\": 1,"
           "\"stream_bandwidth\": 1, \"gemm\": [{\"m\": 1, \"n\": 1, \"k\": 1, \"flops\": 1}],"
           "\"elementwise\": {\"layernorm\": 1}}", "elementwise.gelu");
    bad(0, "{\"fma_peak_f32\": 1, \"fma_peak_bf16\": 0, \"attention_flops\": 1,"
           "\"stream_bandwidth\": 1, \"gemm\": [{\"m\": 1, \"n\": 1, \"k\": 1, \"flops\": 1}],"
           "\"elementwise\": 3}", "elementwise");
    bad(1, "{\"nodes\": 2, \"sockets\": 0}", "sockets");
    bad(1, "{\"nodes\": 2, \"sockets\": 1, \"cores_per_socket\": 4, \"memory_per_node\": 1e9,"
           "\"intra_link\": 3}", "intra_link");
    ck_assert_int_ne(parlm_plan_profile_load("/nonexistent/p.json", &p), PARLM_OK);
}
END_TEST

/* a profile calibrated on one rank has no links: it saves, loads, plans one rank, and a
 * plan of several ranks fails naming the missing link */
START_TEST(no_links)
{
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    parlm_plan_profile p = pr;
    p.n_links = 0;
    ck_assert_int_eq(parlm_plan_profile_save(path, &p), PARLM_OK);
    ck_assert_int_eq(parlm_plan_profile_load(path, &p), PARLM_OK);
    unlink(path);
    ck_assert_int_eq(p.n_links, 0);
    cl.nodes = 1;
    rq.ranks = 1;
    parlm_plan_layout y = {.dp = 1, .tp = 1, .pp = 1, .micro_batches = 1, .threads = 2};
    parlm_plan_estimate e;
    ck_assert_int_eq(parlm_plan_estimate_layout(&p, &cl, &rq, &y, &e), PARLM_OK);
    ck_assert(e.step > 0 && e.term[PARLM_PLAN_DP] == 0 && e.term[PARLM_PLAN_TP] == 0);
    /* the 1-rank step is the same as with links */
    parlm_plan_estimate e2;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e2), PARLM_OK);
    NEAR(e.step, e2.step);
    rq.ranks = 2, y.dp = 2;
    ck_assert_int_ne(parlm_plan_estimate_layout(&p, &cl, &rq, &y, &e), PARLM_OK);
    ck_assert(strstr(parlm_last_error(), "links"));
}
END_TEST

/* a profile of an older calibrate (no "elementwise"): it loads, with no rates, so its
 * links can still be copied; planning with it fails naming the field and the remedy */
START_TEST(old_profile)
{
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    write_file(path, "{\"fma_peak_f32\": 1e9, \"fma_peak_bf16\": 1e9, \"attention_flops\": 1e9,"
                     "\"stream_bandwidth\": 1e9, \"gemm\": [{\"m\": 64, \"n\": 64, \"k\": 64, "
                     "\"flops\": 1e9}], \"links\": [{\"name\": \"a\", \"p2p_alpha\": 1e-6, "
                     "\"p2p_beta\": 1e-9, \"allreduce_alpha\": 2e-6, \"allreduce_beta\": 2e-9}]}");
    parlm_plan_profile p;
    ck_assert_int_eq(parlm_plan_profile_load(path, &p), PARLM_OK);
    unlink(path);
    ck_assert_int_eq(p.n_links, 1);
    for (int i = 0; i < PARLM_PLAN_NEW; i++)
        ck_assert(p.ew_rate[i] == 0);
    parlm_plan_layout y = {.dp = 4, .tp = 1, .pp = 1, .micro_batches = 1, .threads = 1};
    parlm_plan_estimate e;
    ck_assert_int_ne(parlm_plan_estimate_layout(&p, &cl, &rq, &y, &e), PARLM_OK);
    ck_assert_msg(strstr(parlm_last_error(), "elementwise.layernorm") &&
                  strstr(parlm_last_error(), "calibrate"), "%s", parlm_last_error());
    parlm_plan_entry *en;
    int n;
    ck_assert_int_ne(parlm_plan_enumerate(&p, &cl, &rq, &en, &n), PARLM_OK);
}
END_TEST

/* parlm_plan_save -> parlm_plan_load keeps the request and every layout in order; a file
 * with a bad layout names the file and the field */
START_TEST(plan_file)
{
    parlm_plan_entry *e, *f;
    int n, m;
    ck_assert_int_eq(parlm_plan_enumerate(&pr, &cl, &rq, &e, &n), PARLM_OK);
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_int_eq(parlm_plan_save(path, &rq, e, n), PARLM_OK);
    parlm_plan_request q;
    ck_assert_int_eq(parlm_plan_load(path, &q, &f, &m), PARLM_OK);
    ck_assert_int_eq(m, n);
    ck_assert(q.model.n_layer == 2 && q.model.n_head == 2 && q.model.n_embd == 64 &&
              q.model.max_seq == 16 && q.model.vocab == 128 && q.model.vocab_pad == 128);
    ck_assert(q.global_batch == 4 && q.seq_len == 16 && q.ranks == 4 && q.bf16 == 0);
    for (int i = 0; i < n; i++) {
        ck_assert(memcmp(&f[i].layout, &e[i].layout, sizeof e[i].layout) == 0);
        ck_assert_int_eq(f[i].excluded, e[i].excluded);
        if (!e[i].excluded)
            NEAR(f[i].est.step, e[i].est.step);
        else
            ck_assert_str_eq(f[i].reason, e[i].reason);
    }
    free(e);
    free(f);
    static const char *const bads[][2] = {
        {"{\"model\": 3}", "model"},
        {"{\"model\": {\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 64, \"max_seq\": 16, "
         "\"vocab_pad\": 128}, \"global_batch\": 4, \"seq_len\": 16, \"ranks\": 2, "
         "\"bf16\": false, \"layouts\": [{\"dp\": 2, \"pp\": 1}]}", "layouts[0].tp"},
        {"{\"model\": {\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 64, \"max_seq\": 16, "
         "\"vocab_pad\": 128}, \"global_batch\": 4, \"seq_len\": 16, \"ranks\": 2, "
         "\"bf16\": false, \"layouts\": [{\"dp\": 1, \"tp\": 1, \"pp\": 1, "
         "\"micro_batches\": 1, \"threads\": 1, \"zero1\": false, \"overlap\": false, "
         "\"bf16\": false, \"excluded\": false, \"schedule\": \"1f1b\"}]}", "ranks 2"},
        {"{\"model\": {\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 64, \"max_seq\": 16, "
         "\"vocab_pad\": 128}, \"global_batch\": 4, \"seq_len\": 16, \"ranks\": 1, "
         "\"bf16\": false, \"layouts\": [{\"dp\": 1, \"tp\": 1, \"pp\": 1, "
         "\"micro_batches\": 1, \"threads\": 1, \"zero1\": false, \"overlap\": false, "
         "\"bf16\": false, \"excluded\": false, \"schedule\": \"x\"}]}", "layouts[0].schedule"},
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        write_file(path, bads[i][0]);
        ck_assert_int_ne(parlm_plan_load(path, &q, &f, &m), PARLM_OK);
        ck_assert_msg(strstr(parlm_last_error(), bads[i][1]) && strstr(parlm_last_error(), path),
                      "error '%s' should name %s and the file", parlm_last_error(), bads[i][1]);
    }
    unlink(path);
}
END_TEST

/* A small Llama: L2 NH4 NKV2 (GQA, hs 16, KV = 32) C64 F96 (not 4C), untied head, vocab
 * 128, max_seq 16, on the fixture's rates (1e9 everywhere). By hand, a layer's matmul
 * weights: wq, wo 2 x 64^2 = 8192; wk, wv 2 x 64 x 32 = 4096; w_gate, w_up, w_down
 * 3 x 64 x 96 = 18432: 30720, + 2 RMSNorms 128 = 30848 parameters. */
static parlm_gpt_config small_llama(void)
{
    return (parlm_gpt_config){.n_layer = 2, .n_head = 4, .n_embd = 64, .max_seq = 16,
                              .vocab = 128, .vocab_pad = 128, .arch = PARLM_ARCH_LLAMA,
                              .n_kv_head = 2, .ffn_hidden = 96, .untied_head = 1};
}

START_TEST(llama_counts)
{
    /* parameters: wte + lm_head 2 x 128 x 64 = 16384, layers 2 x 30848 = 61696, final
     * norm 64: 78144 (tied: 69952) */
    parlm_gpt_config c = small_llama();
    int64_t np;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &np), PARLM_OK);
    ck_assert_int_eq(np, 78144);
    /* forward FLOPs a token at T 16: 2 x (2 x 30720 + 128 x 64) = 139264, attention
     * 2 x 2C T = 4096: 143360; a tied head costs the same */
    NEAR(parlm_plan_gpt_flops_per_token(&c, 16), 143360.0);
    c.untied_head = 0;
    NEAR(parlm_plan_gpt_flops_per_token(&c, 16), 143360.0);
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &np), PARLM_OK);
    ck_assert_int_eq(np, 69952);
    /* 0 means the defaults: NKV = NH, F = 4C: 2 x (2 x (2C^2 + 2C^2 + 12C^2) + 8192) + 4096 */
    c.n_kv_head = c.ffn_hidden = 0;
    NEAR(parlm_plan_gpt_flops_per_token(&c, 16), 2.0 * (2 * 16.0 * 64 * 64 + 8192) + 4096);
}
END_TEST

START_TEST(llama_one_rank)
{
    /* 1 rank, 1 thread, B 4 x T 16 = 64 tokens in one micro-batch:
     * compute 64 x 3 x 143360 / 1e9 = 27.52512e-3;
     * elementwise a token: rmsnorm 2 x 2C + C = 320, rope 2 x (C + KV) = 192, swiglu 2F =
     *   192, residual 2 x 2C = 256, crossentropy 128: 1088, x 64 = 69.632e-6;
     * optimizer 78144 parameters x 28 bytes at 1e9 B/s = 2.188032e-3 (memory binds). */
    rq.model = small_llama();
    rq.ranks = 1, cl.nodes = 1;
    parlm_plan_layout y = {.dp = 1, .tp = 1, .pp = 1, .micro_batches = 1, .threads = 1};
    parlm_plan_estimate e;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_COMPUTE], 27.52512e-3);
    NEAR(e.term[PARLM_PLAN_ELEMENTWISE], 69.632e-6);
    NEAR(e.ew[PARLM_PLAN_EW_RMSNORM], 64 * 320e-9);
    NEAR(e.ew[PARLM_PLAN_EW_ROPE], 64 * 192e-9);
    NEAR(e.ew[PARLM_PLAN_EW_SWIGLU], 64 * 192e-9);
    NEAR(e.ew[PARLM_PLAN_EW_RESIDUAL], 64 * 256e-9);
    NEAR(e.ew[PARLM_PLAN_EW_CROSSENTROPY], 64 * 128e-9);
    ck_assert(e.ew[PARLM_PLAN_EW_LAYERNORM] == 0 && e.ew[PARLM_PLAN_EW_GELU] == 0 &&
              e.ew[PARLM_PLAN_EW_BIAS] == 0);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 2.188032e-3);
    NEAR(e.step, 29.782784e-3);
    /* one core is its own baseline */
    NEAR(e.eta, 1.0);
    /* the rank holds the whole model: parlm_gpt_config_num_params' count */
    NEAR(e.mem_params, 4.0 * 78144);
    rq.model.untied_head = 0;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.mem_params, 4.0 * 69952);
    rq.model.untied_head = 1;
    /* each matmul at its own shape's rate: exact points (m = 64 tokens) for q and o
     * (64x64, 1e9), k and v (32x64, 5e8), gate and up (96x64, 2e9), down (64x96, 4e9), the
     * head (128x64, 8e9). A token: 6 x (2 layers x (4096/1e9 + 2 x 2048/5e8 + 4096/1e9 +
     * 2 x 6144/2e9 + 6144/4e9) + 8192/8e9) = 294912e-9, x 64 = 18.874368e-3, + attention
     * 64 x 3 x 4096 / 1e9 = 0.786432e-3 */
    parlm_plan_profile p = pr;
    p.n_gemm = 5;
    p.gemm[0] = (parlm_plan_gemm_point){64, 64, 64, 1e9};
    p.gemm[1] = (parlm_plan_gemm_point){64, 32, 64, 5e8};
    p.gemm[2] = (parlm_plan_gemm_point){64, 96, 64, 2e9};
    p.gemm[3] = (parlm_plan_gemm_point){64, 64, 96, 4e9};
    p.gemm[4] = (parlm_plan_gemm_point){64, 128, 64, 8e9};
    ck_assert_int_eq(parlm_plan_estimate_layout(&p, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_COMPUTE], 19.6608e-3);
    /* a profile without the Llama ops' rates (an older calibrate): RMSNorm at layernorm's,
     * RoPE at residual's, SwiGLU at GELU's */
    p = pr;
    p.ew_rate[PARLM_PLAN_EW_RMSNORM] = p.ew_rate[PARLM_PLAN_EW_ROPE] = 0;
    p.ew_rate[PARLM_PLAN_EW_SWIGLU] = 0;
    p.ew_rate[PARLM_PLAN_EW_LAYERNORM] = 2e9, p.ew_rate[PARLM_PLAN_EW_RESIDUAL] = 4e9;
    p.ew_rate[PARLM_PLAN_EW_GELU] = 8e9;
    ck_assert_int_eq(parlm_plan_estimate_layout(&p, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.ew[PARLM_PLAN_EW_RMSNORM], 64 * 320 / 2e9);
    NEAR(e.ew[PARLM_PLAN_EW_ROPE], 64 * 192 / 4e9);
    NEAR(e.ew[PARLM_PLAN_EW_SWIGLU], 64 * 192 / 8e9);
    NEAR(e.ew[PARLM_PLAN_EW_RESIDUAL], 64 * 256 / 4e9);
}
END_TEST

START_TEST(llama_tp_pp)
{
    /* dp 1, tp 2, pp 2, M 2, GPipe, 1 thread (the fixture: 2 nodes of 2 cores), 32 tokens
     * a micro-batch, stages [0,1) and [1,2). A rank holds NH/2 = 2 query heads, NKV/2 = 1
     * KV head, F/2 = 48 SwiGLU units, 64 vocabulary rows.
     * Stage 1 (layer + head): matmuls 6 x (30720/2 + 128 x 64/2) = 116736e-9 a token,
     *   attention 3 x 2C T / 2 = 3072e-9: x 32 = 3.833856e-3.
     *   elementwise a token: rmsnorm 2C + C = 192, rope (C + KV)/2 = 48, swiglu F/2 = 48,
     *   residual 2C = 128, crossentropy Vp/2 = 64: 480, x 32 = 15.36e-6.
     *   TP: 4 all-reduces of 32 x 64 x 4 = 8192 bytes over 2 on "a" (20.384e-6 each, as in
     *   tp_pp_terms): 81.536e-6. Micro-batch 3.930752e-3, the slowest (stage 0 has no head).
     * compute 2 x 3.833856e-3, elementwise 2 x 15.36e-6, tp 2 x 81.536e-6, bubble
     *   3.930752e-3, p2p 3.6768e-4 (as tp_pp_terms), optimizer: stage 1 holds 30720/2 + 128
     *   + 8192/2 (its own head) + 64 = 19648 parameters (stage 0: 15488 + 4096 = 19584),
     *   x 28 bytes at 5e8 B/s = 1.100288e-3. Step 13.260224e-3. */
    rq.model = small_llama();
    parlm_plan_layout y = {.dp = 1, .tp = 2, .pp = 2, .micro_batches = 2, .schedule = 0,
                           .threads = 1};
    parlm_plan_estimate e;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.term[PARLM_PLAN_COMPUTE], 7.667712e-3);
    NEAR(e.term[PARLM_PLAN_ELEMENTWISE], 30.72e-6);
    NEAR(e.term[PARLM_PLAN_TP], 163.072e-6);
    NEAR(e.term[PARLM_PLAN_BUBBLE], 3.930752e-3);
    NEAR(e.term[PARLM_PLAN_P2P], 3.6768e-4);
    NEAR(e.term[PARLM_PLAN_DP], 0.0);
    NEAR(e.term[PARLM_PLAN_OPTIMIZER], 1.100288e-3);
    NEAR(e.step, 13.260224e-3);
    ck_assert_int_eq(e.bottleneck, PARLM_PLAN_COMPUTE);
    /* memory, stage 1: activations a token: the layer 4C + 2 = 258 whole and (q, k, v
     * C + 2KV = 128, attention output 64, lse NH 4, gate, up, SwiGLU 3F = 288) / 2 = 242,
     * the stage's input C 64, final norm C + 1, logits Vp/2 64, loss and lse 2: 695
     * floats, x 32 x 4 = 88960 bytes a micro-batch, GPipe keeps 2: 177920; parameters
     * 19648 x 16 = 314368: 492288 (stage 0: 2 x 32 x 4 x 564 + 19584 x 16 = 457728) */
    NEAR(e.mem_act, 177920.0);
    NEAR(e.mem_total, 492288.0);
    /* 1F1B: stage 1 keeps 1 micro-batch (403328), stage 0 two and is the worst */
    y.schedule = 1;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    NEAR(e.mem_total, 457728.0);
    /* 475000 bytes a rank: GPipe is excluded for memory, 1F1B fits */
    cl.memory_per_node = 950000;
    parlm_plan_entry *en;
    int n;
    ck_assert_int_eq(parlm_plan_enumerate(&pr, &cl, &rq, &en, &n), PARLM_OK);
    int g = find(en, n, 1, 2, 2, 2, 0), f = find(en, n, 1, 2, 2, 2, 1);
    ck_assert(g >= 0 && f >= 0);
    ck_assert(en[g].excluded && strstr(en[g].reason, "GiB"));
    ck_assert(!en[f].excluded);
    /* tp 4 > NKV 2: excluded, naming the KV heads (they are split, not replicated) */
    int k = find(en, n, 1, 4, 1, 1, 0);
    ck_assert(k >= 0 && en[k].excluded && strstr(en[k].reason, "KV heads"));
    free(en);
    /* the same with an estimate: tp 4 breaks the KV heads; with NKV 4, F 90 breaks F */
    cl.nodes = 1, cl.cores_per_socket = 4;
    y = (parlm_plan_layout){.dp = 1, .tp = 4, .pp = 1, .micro_batches = 1, .threads = 1};
    ck_assert_int_ne(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    ck_assert_msg(strstr(parlm_last_error(), "2 KV heads"), "%s", parlm_last_error());
    rq.model.n_kv_head = 4, rq.model.ffn_hidden = 90;
    ck_assert_int_ne(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
    ck_assert_msg(strstr(parlm_last_error(), "SwiGLU's 90"), "%s", parlm_last_error());
    rq.model.ffn_hidden = 96;
    ck_assert_int_eq(parlm_plan_estimate_layout(&pr, &cl, &rq, &y, &e), PARLM_OK);
}
END_TEST

/* a Llama request survives parlm_plan_save -> parlm_plan_load with its shape */
START_TEST(llama_plan_file)
{
    rq.model = small_llama();
    parlm_plan_entry *e, *f;
    int n, m;
    ck_assert_int_eq(parlm_plan_enumerate(&pr, &cl, &rq, &e, &n), PARLM_OK);
    char path[] = "/tmp/parlm-plan-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_int_eq(parlm_plan_save(path, &rq, e, n), PARLM_OK);
    parlm_plan_request q;
    ck_assert_int_eq(parlm_plan_load(path, &q, &f, &m), PARLM_OK);
    ck_assert_int_eq(m, n);
    ck_assert(q.model.arch == PARLM_ARCH_LLAMA && q.model.n_kv_head == 2 &&
              q.model.ffn_hidden == 96 && q.model.untied_head == 1 && q.model.n_head == 4);
    for (int i = 0; i < n; i++)
        if (!e[i].excluded)
            NEAR(f[i].est.step, e[i].est.step);
    free(e);
    free(f);
    write_file(path, "{\"model\": {\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, "
                     "\"max_seq\": 16, \"vocab_pad\": 128, \"arch\": \"mamba\"}}");
    ck_assert_int_ne(parlm_plan_load(path, &q, &f, &m), PARLM_OK);
    ck_assert_msg(strstr(parlm_last_error(), "model.arch"), "%s", parlm_last_error());
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("plan");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, primitives);
    tcase_add_test(tc, tp_pp_terms);
    tcase_add_test(tc, dp_terms);
    tcase_add_test(tc, enumeration);
    tcase_add_test(tc, fit);
    tcase_add_test(tc, json);
    tcase_add_test(tc, no_links);
    tcase_add_test(tc, old_profile);
    tcase_add_test(tc, plan_file);
    tcase_add_test(tc, llama_counts);
    tcase_add_test(tc, llama_one_rank);
    tcase_add_test(tc, llama_tp_pp);
    tcase_add_test(tc, llama_plan_file);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
