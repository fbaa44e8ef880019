/* tests/parallel/test_tp.c — tensor parallelism (Megatron-LM) under mpirun (tp_run.sh: 2, 3
 * and 4 ranks). The world is split into groups of tp ranks for every tp in {2, 3, 4} that
 * divides it; each rank also builds the single-process model of the same seed itself,
 * the reference. A shard's gradients are copied into the full layout (the owner of each
 * replicated tensor, every rank its slices) and summed over the group, then compared.
 * Tolerances (f32, u = 6e-8): TP only reorders float sums — the row-parallel projections
 * sum tp partial dot products of K/tp terms instead of one of K, the loss sums the
 * exponentials slice by slice — so each of the ~12 reductions per layer of forward and
 * backward is off by about sqrt(K) u ~ 1e-6 relative to its operands' scale, and over
 * the 2L + 2 of them (L = 4: ~50) the error stays below 1e-4 of each tensor's largest
 * gradient (measured: 1.3e-6 at most). Losses: 1e-5 relative; the clipping norm 1e-4.
 * After 20 AdamW steps parameters within 1e-3 of each tensor's largest (measured 4e-5; see
 * check_training). Replicated parameters and their gradients must be bitwise the same on
 * every rank of a group; the embedding lookup is bitwise the single-process one. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"
#include "../testutil.h"

#define B 2
#define T 16

static int wrank, wsize;

/* one tensor-parallel group of the world */
typedef struct group {
    int tp, rank;
    MPI_Comm mpi;
    parlm_comm *comm;
    parlm_gpt_tp_comm tpc;
} group;

static void group_open(group *g, int tp)
{
    g->tp = tp;
    g->rank = wrank % tp;
    ck_assert_int_eq(MPI_Comm_split(MPI_COMM_WORLD, wrank / tp, g->rank, &g->mpi), MPI_SUCCESS);
    parlm_comm_config cfg = {0}; /* tp_run.sh forces the algorithm, as programs do (apps/cli.c) */
    const char *algo = getenv("PARLM_ALLREDUCE");
    while (algo && cfg.algo < PARLM_ALGO_MPI && strcmp(algo, parlm_algo_name(cfg.algo)))
        cfg.algo++;
    ck_assert_msg(parlm_comm_from_mpi(&g->comm, &g->mpi, &cfg) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_comm_rank(g->comm), g->rank);
    ck_assert_int_eq(parlm_tp_comm_init(&g->tpc, g->comm), PARLM_OK);
}

static void group_close(group *g)
{
    parlm_comm_free(g->comm);
    MPI_Comm_free(&g->mpi);
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

static void agree(group *g, const char *what, uint64_t h)
{
    ck_assert_msg(parlm_comm_check_agree(g->comm, what, h) == PARLM_OK, "%s",
                  parlm_last_error());
}

static parlm_gpt_config small_config(int vocab)
{
    parlm_gpt_config cfg = {0};
    cfg.max_seq = 32;
    cfg.vocab = vocab;
    ck_assert_int_eq(parlm_gpt_preset("small", &cfg), PARLM_OK); /* L4 NH4 C256 */
    return cfg;
}

static int llama; /* the configs are Llama ones: GQA, SwiGLU, RoPE, an untied head at tp 2 */

/* heads, hidden units and the padded vocabulary divide 3 */
static parlm_gpt_config config_for(int tp)
{
    if (llama) { /* NKV and F divide tp; C/tp and F/tp multiples of 32 (quantized decode) */
        parlm_gpt_config cfg = {.n_layer = 2, .n_head = tp == 3 ? 6 : 8, .n_embd = tp == 3 ? 96 : 128,
                                .max_seq = 32, .vocab = 300, .arch = PARLM_ARCH_LLAMA,
                                .n_kv_head = tp == 3 ? 3 : 4, .ffn_hidden = tp == 3 ? 96 : 256,
                                .untied_head = tp == 2};
        return cfg;
    }
    if (tp == 3) {
        parlm_gpt_config cfg = {.n_layer = 2, .n_head = 6, .n_embd = 96,
                                .max_seq = 32, .vocab = 300}; /* Vp 384 */
        return cfg;
    }
    /* Vp 384, not a multiple of 128 tp: slices of 192 or 96 rows, 84 of them padding (at
     * tp = 4 the last slice has 12 real rows) */
    return small_config(300);
}

static parlm_gpt *shard_of(group *g, const parlm_gpt_config *cfg, uint64_t seed)
{
    parlm_gpt_shard sh = {g->tp, g->rank, 0, cfg->n_layer};
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create_shard(&m, cfg, &sh, seed) == PARLM_OK, "%s",
                  parlm_last_error());
    ck_assert_msg(parlm_gpt_set_tp_comm(m, &g->tpc) == PARLM_OK, "%s", parlm_last_error());
    return m;
}

static void tokens(int32_t *x, int n, int V, uint64_t seed)
{
    for (int i = 0; i < n; i++)
        x[i] = (int32_t)(tu_next(&seed) % (uint64_t)V);
}

/* the shard's buffer buf (params or grads) in the full layout, summed over the group:
 * every rank's slices, replicated tensors from their owner (tp rank 0) */
static float *assemble(group *g, parlm_gpt *m, const float *buf, int64_t nfull)
{
    float *full = calloc((size_t)nfull, sizeof(float));
    ck_assert_ptr_nonnull(full);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        parlm_gpt_slice s;
        const char *name;
        int layer;
        int64_t off, n;
        ck_assert_int_eq(parlm_gpt_tensor_info(m, i, &name, &layer, &off, &n), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_tensor_slice(m, i, &s), PARLM_OK);
        ck_assert_int_eq(s.rows * s.nseg * s.cols, n);
        if (s.owner)
            parlm_gpt_slice_copy(&s, (float *)buf + off, full + s.full_offset, 1);
    }
    MPI_Allreduce(MPI_IN_PLACE, full, (int)nfull, MPI_FLOAT, MPI_SUM, g->mpi);
    return full;
}

/* the replicated tensors of buf (layernorms, wpe, the row-parallel biases): one hash */
static uint64_t replicated_hash(parlm_gpt *m, const float *buf)
{
    static const char *const rep[] = {"wpe",  "ln1w", "ln1b",    "attprojb",  "ln2w",
                                      "ln2b", "lnfw", "fcprojb", "lnfb",      "attn_norm",
                                      "ffn_norm", "norm"};
    uint64_t h = 0;
    int found = 0;
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *name;
        int layer;
        int64_t off, n;
        ck_assert_int_eq(parlm_gpt_tensor_info(m, i, &name, &layer, &off, &n), PARLM_OK);
        for (size_t k = 0; k < sizeof rep / sizeof rep[0]; k++)
            if (!strcmp(name, rep[k])) {
                h = h * 31 + hash_bytes(buf + off, (size_t)n * sizeof(float));
                found++;
            }
    }
    ck_assert_int_eq(found, llama ? 1 + 2 * parlm_gpt_get_config(m).n_layer
                                  : 3 + 6 * parlm_gpt_get_config(m).n_layer);
    return h;
}

/* per full tensor: max |a - ref| <= rtol * max |ref| */
static void tensors_close(parlm_gpt *ref, const float *a, const float *r, double rtol,
                          const char *what, int tp)
{
    double worst = 0;
    for (int i = 0; i < parlm_gpt_num_tensors(ref); i++) {
        const char *name;
        int layer;
        int64_t off, n;
        ck_assert_int_eq(parlm_gpt_tensor_info(ref, i, &name, &layer, &off, &n), PARLM_OK);
        float scale = tu_max_abs(r + off, n), d = tu_max_abs_diff(a + off, r + off, n);
        ck_assert_msg(d <= rtol * scale + 1e-30, "tp=%d %s of %s (layer %d): max diff %g, "
                      "scale %g", tp, what, name, layer, (double)d, (double)scale);
        if (scale > 0 && d / scale > worst)
            worst = d / scale;
    }
    if (wrank == 0)
        printf("tp=%d %s: worst max|diff| / max|ref| per tensor = %.2g\n", tp, what, worst);
}

static void check_forward_backward(int tp)
{
    group g;
    group_open(&g, tp);
    parlm_gpt_config cfg = config_for(tp);
    parlm_gpt *ref, *m = shard_of(&g, &cfg, 7);
    ck_assert_int_eq(parlm_gpt_create(&ref, &cfg, 7), PARLM_OK);
    int64_t nfull = parlm_gpt_num_params(ref);
    /* the shard starts as the slices of the full model */
    float *p = assemble(&g, m, parlm_gpt_params(m), nfull);
    ck_assert_msg(memcmp(p, parlm_gpt_params(ref), (size_t)nfull * sizeof(float)) == 0,
                  "tp=%d: the shard's initial parameters are not the full model's", tp);
    free(p);
    int32_t x[B * T], y[B * T];
    tokens(x, B * T, cfg.vocab, 11), tokens(y, B * T, cfg.vocab, 12);
    y[0] = cfg.vocab - 1; /* a target in the last slice, next to the padding */
    float lref, lt;
    ck_assert_int_eq(parlm_gpt_setup(ref, B, T, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(ref, x, y, &lref), PARLM_OK);
    ck_assert_msg(parlm_gpt_forward(m, x, y, &lt) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_msg(fabsf(lt - lref) <= 1e-5f * lref, "tp=%d: loss %.8f, single process %.8f", tp,
                  lt, lref);
    agree(&g, "loss", hash_bytes(&lt, sizeof lt));
    ck_assert_int_eq(parlm_gpt_backward(ref, 1.0f), PARLM_OK);
    ck_assert_msg(parlm_gpt_backward(m, 1.0f) == PARLM_OK, "%s", parlm_last_error());
    float *gr = assemble(&g, m, parlm_gpt_grads(m), nfull);
    tensors_close(ref, gr, parlm_gpt_grads(ref), 1e-4, "gradients", tp);
    agree(&g, "replicated gradients", replicated_hash(m, parlm_gpt_grads(m)));
    free(gr);
    parlm_gpt_free(m);
    parlm_gpt_free(ref);
    group_close(&g);
}

/* 20 AdamW steps with clipping at 1: the single-process fused step against the shard's
 * grad_sumsq (owned tensors, summed over the group) and step_scale */
static void check_training(int tp)
{
    group g;
    group_open(&g, tp);
    parlm_gpt_config cfg = config_for(tp);
    parlm_gpt *ref, *m = shard_of(&g, &cfg, 21);
    ck_assert_int_eq(parlm_gpt_create(&ref, &cfg, 21), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(ref, B, T, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    const parlm_adamw_cfg opt = {1e-3f, 0.9f, 0.95f, 1e-6f, 0.1f};
    const float clip = 1.0f;
    for (int step = 0; step < 20; step++) {
        int32_t x[B * T], y[B * T];
        tokens(x, B * T, cfg.vocab, 100 + step), tokens(y, B * T, cfg.vocab, 200 + step);
        float lref, lt, nref;
        ck_assert_int_eq(parlm_gpt_forward(ref, x, y, &lref), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(ref, 1.0f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_optimizer_step(ref, &opt, clip, &nref), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &lt), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
        double ss;
        ck_assert_int_eq(parlm_gpt_grad_sumsq(m, 1, &ss), PARLM_OK);
        MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, g.mpi);
        float norm = (float)sqrt(ss), scale = norm > clip ? clip / norm : 1.0f;
        ck_assert_msg(fabsf(norm - nref) <= 1e-4f * nref, "tp=%d step %d: norm %g vs %g", tp,
                      step, (double)norm, (double)nref);
        ck_assert_int_eq(parlm_gpt_optimizer_step_scale(m, &opt, scale), PARLM_OK);
        ck_assert_msg(fabsf(lt - lref) <= 1e-5f * lref, "tp=%d step %d: loss %.8f, single "
                      "process %.8f", tp, step, lt, lref);
    }
    agree(&g, "replicated parameters", replicated_hash(m, parlm_gpt_params(m)));
    /* AdamW moves each weight by about lr a step whatever the gradient's size, so the
     * gradient differences above (1e-4 relative) move parameters by ~lr 1e-4 a step,
     * more where |g| is near eps; 20 steps: 1e-3 of the largest weight is a loose bound */
    float *p = assemble(&g, m, parlm_gpt_params(m), parlm_gpt_num_params(ref));
    tensors_close(ref, p, parlm_gpt_params(ref), 1e-3, "parameters after 20 steps", tp);
    free(p);
    parlm_gpt_free(m);
    parlm_gpt_free(ref);
    group_close(&g);
}

/* the largest logit minus the second largest */
static float top2_gap(const float *x, int n)
{
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > a)
            b = a, a = x[i];
        else if (x[i] > b)
            b = x[i];
    return a - b;
}

/* greedy generation with the KV cache: prefill a prompt, decode one token at a time;
 * weights f32, bf16 or (decode) Q8_0 / Q4_0 (dtype), the same in both runs */
static void check_generation(int tp, int bf16, int dtype)
{
    group g;
    group_open(&g, tp);
    parlm_gpt_config cfg = config_for(tp);
    parlm_gpt *ref, *m = shard_of(&g, &cfg, 31);
    ck_assert_int_eq(parlm_gpt_create(&ref, &cfg, 31), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_bf16(ref, bf16), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_bf16(m, bf16), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_decode_type(ref, dtype), PARLM_OK);
    ck_assert_msg(parlm_gpt_set_decode_type(m, dtype) == PARLM_OK, "%s", parlm_last_error());
    /* low precision: a reordered sum can flip the rounding of an activation (bf16: 2^-8
     * relative; the Q types: 1/127 of a block's largest input) */
    const int lowp = bf16 || dtype != PARLM_WT_F32;
    int Vp = cfg.vocab_pad ? cfg.vocab_pad : (cfg.vocab + 127) / 128 * 128;
    float *lr = malloc((size_t)Vp * sizeof(float)), *lt = malloc((size_t)Vp * sizeof(float));
    int32_t prompt[5] = {1, 17, 42, 3, 99}, tr = 0, tt = 0;
    uint64_t rng = 1; /* unused by greedy sampling */
    ck_assert_int_eq(parlm_gpt_infer(ref, prompt, 5, 0, lr), PARLM_OK);
    ck_assert_msg(parlm_gpt_infer(m, prompt, 5, 0, lt) == PARLM_OK, "%s", parlm_last_error());
    for (int pos = 5; pos < 20; pos++) {
        ck_assert_int_eq(parlm_sample(lr, cfg.vocab, 0.0f, 0, 1.0f, &rng, &tr), PARLM_OK);
        ck_assert_int_eq(parlm_sample(lt, cfg.vocab, 0.0f, 0, 1.0f, &rng, &tt), PARLM_OK);
        /* logits: reordered f32 sums (~1e-6 relative, measured), or lowp's flips */
        float scale = tu_max_abs(lr, cfg.vocab), tol = (lowp ? 2e-2f : 1e-4f) * scale;
        ck_assert_msg(scale > 1e-3f, "tp=%d%s type %d position %d: the logits are all (nearly) "
                      "0", tp, bf16 ? " bf16" : "", dtype, pos); /* e.g. a copy never filled */
        ck_assert_msg(tu_max_abs_diff(lr, lt, cfg.vocab) <= tol,
                      "tp=%d type %d position %d: logits differ by %g", tp, dtype, pos,
                      (double)tu_max_abs_diff(lr, lt, cfg.vocab));
        /* the same greedy token, unless the two best logits are closer than the two runs
         * may differ (then both go on with the single-process token) */
        ck_assert_msg(tr == tt || top2_gap(lr, cfg.vocab) <= 2 * tol,
                      "tp=%d%s position %d: token %d, single process %d", tp,
                      bf16 ? " bf16" : "", pos, tt, tr);
        tt = tr;
        agree(&g, "logits", hash_bytes(lt, (size_t)Vp * sizeof(float)));
        ck_assert_int_eq(parlm_gpt_infer(ref, &tr, 1, pos, lr), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_infer(m, &tt, 1, pos, lt), PARLM_OK);
    }
    free(lr), free(lt);
    parlm_gpt_free(m);
    parlm_gpt_free(ref);
    group_close(&g);
}

static int tp_of_test(int i)
{
    static const int tps[3] = {2, 3, 4};
    return wsize % tps[i] == 0 ? tps[i] : 0;
}

START_TEST(collectives_bitwise_and_blocks)
{
    int tp = tp_of_test(_i);
    if (!tp)
        return;
    group g;
    group_open(&g, tp);
    static const int64_t ns[] = {1, 7, 768, 100003};
    for (int a = 0; a < 4; a++) {
        int64_t n = ns[a];
        float *buf = malloc((size_t)(n * tp) * sizeof(float));
        tu_fill(buf, n, 500 + a * 8 + g.rank);
        ck_assert_int_eq(g.tpc.allreduce_sum(g.tpc.arg, buf, n), PARLM_OK);
        agree(&g, "all-reduce", hash_bytes(buf, (size_t)n * sizeof(float)));
        float *want = malloc((size_t)n * sizeof(float));
        for (int r = 0; r < tp; r++) /* block r is rank r's n values, untouched */
            tu_fill(r == g.rank ? buf + r * n : want, n, 900 + a * 8 + r);
        ck_assert_int_eq(g.tpc.all_gather(g.tpc.arg, buf, n), PARLM_OK);
        for (int r = 0; r < tp; r++) {
            tu_fill(want, n, 900 + a * 8 + r);
            ck_assert_msg(memcmp(buf + r * n, want, (size_t)n * sizeof(float)) == 0,
                          "all-gather n=%lld: block %d", (long long)n, r);
        }
        free(want);
        free(buf);
    }
    group_close(&g);
}
END_TEST

START_TEST(forward_backward_equal_single_process)
{
    int tp = tp_of_test(_i);
    if (tp)
        check_forward_backward(tp);
}
END_TEST

START_TEST(training_equals_single_process)
{
    int tp = tp_of_test(_i);
    if (tp)
        check_training(tp);
}
END_TEST

START_TEST(generation_same_tokens)
{
    int tp = tp_of_test(_i);
    if (tp) {
        check_generation(tp, 0, PARLM_WT_F32);
        check_generation(tp, 1, PARLM_WT_F32);
        check_generation(tp, 0, PARLM_WT_Q8_0);
        check_generation(tp, 0, PARLM_WT_Q4_0);
    }
}
END_TEST

/* a shard's decode step is bitwise the same for 1, 2 and 3 threads per rank (heads split
 * over the threads, or rows when they do not divide the heads; one thread calls the
 * collectives); the prefill that fills the cache runs on one thread each time. tp = 3's
 * model is too small to take more than one thread. */
/* The Llama configuration under tensor parallelism: the same checks as GPT-2's */
START_TEST(llama_equals_single_process)
{
    int tp = tp_of_test(_i);
    if (!tp)
        return;
    llama = 1;
    check_forward_backward(tp);
    check_training(tp);
    check_generation(tp, 0, PARLM_WT_F32);
    check_generation(tp, 1, PARLM_WT_F32);
    check_generation(tp, 0, PARLM_WT_Q8_0);
    llama = 0;
}
END_TEST

START_TEST(decode_threads_bitwise)
{
    int tp = tp_of_test(_i);
    if (tp != wsize || tp == 3) /* one group of the world (oversubscribed threads are slow) */
        return;
    group g;
    group_open(&g, tp);
    parlm_gpt_config cfg = config_for(tp);
    parlm_gpt *m = shard_of(&g, &cfg, 41);
    int Vp = (cfg.vocab + 127) / 128 * 128, saved = omp_get_max_threads();
    float *first = malloc((size_t)Vp * 6 * sizeof(float)), *lt = malloc((size_t)Vp * sizeof(float));
    int32_t prompt[4] = {5, 6, 7, 8};
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(1);
        ck_assert_int_eq(parlm_gpt_infer(m, prompt, 4, 0, lt), PARLM_OK);
        omp_set_num_threads(nt);
        for (int i = 0; i < 6; i++) {
            int32_t tok = (int32_t)((i * 37 + 11) % cfg.vocab);
            ck_assert_int_eq(parlm_gpt_infer(m, &tok, 1, 4 + i, lt), PARLM_OK);
            if (nt == 1)
                memcpy(first + (int64_t)i * Vp, lt, (size_t)Vp * sizeof(float));
            else
                ck_assert_msg(memcmp(first + (int64_t)i * Vp, lt, (size_t)Vp * sizeof(float)) == 0,
                              "tp=%d: decode with %d threads differs from 1 thread at step %d",
                              tp, nt, i);
        }
    }
    omp_set_num_threads(saved);
    free(first), free(lt);
    parlm_gpt_free(m);
    group_close(&g);
}
END_TEST

START_TEST(bad_layouts_refused)
{
    parlm_gpt_config cfg = small_config(100); /* Vp 128, NH 4, C 256 */
    parlm_gpt_shard sh = {3, 0, 0, cfg.n_layer};
    parlm_gpt *m = NULL;
    ck_assert_int_eq(parlm_gpt_shard_check(&cfg, &sh), PARLM_EINVAL); /* heads % 3 */
    parlm_gpt_config c3 = {.n_layer = 2, .n_head = 6, .n_embd = 96,
                           .max_seq = 32, .vocab = 100};                      /* Vp 128 % 3 */
    sh.layer_end = c3.n_layer;
    ck_assert_int_eq(parlm_gpt_shard_check(&c3, &sh), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "vocab"));
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &c3, &sh, 1), PARLM_EINVAL);
    ck_assert_ptr_null(m);
    c3.vocab = 300; /* Vp 384 */
    ck_assert_msg(parlm_gpt_shard_check(&c3, &sh) == PARLM_OK, "%s", parlm_last_error());
    /* a shard with tp > 1 and no collectives cannot run */
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &c3, &sh, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, 1, 4, 1), PARLM_OK);
    int32_t x[4] = {1, 2, 3, 4};
    float loss;
    ck_assert_int_eq(parlm_gpt_forward(m, x, x, &loss), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_infer(m, x, 1, 0, &loss), PARLM_EINVAL);
    parlm_gpt_free(m);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK) {
        fprintf(stderr, "test_tp: %s\n", parlm_last_error());
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    MPI_Comm_size(MPI_COMM_WORLD, &wsize);
    Suite *s = suite_create("tp");
    TCase *tc = tcase_create("collectives");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, collectives_bitwise_and_blocks, 0, 3);
    suite_add_tcase(s, tc);
    /* the rest; tp_run.sh also runs "collectives" alone with other algorithms forced */
    tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, forward_backward_equal_single_process, 0, 3);
    tcase_add_loop_test(tc, training_equals_single_process, 0, 3);
    tcase_add_loop_test(tc, generation_same_tokens, 0, 3);
    tcase_add_loop_test(tc, decode_threads_bitwise, 0, 3);
    tcase_add_loop_test(tc, llama_equals_single_process, 0, 3);
    tcase_add_test(tc, bad_layouts_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* every rank must run every collective */
    srunner_run_all(sr, wrank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
