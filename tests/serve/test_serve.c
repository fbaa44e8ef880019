/* tests/serve/test_serve.c — lib/serve: paged KV accounting, the batched forward against
 * parlm_gpt_infer (tolerance on logits, equal greedy tokens), batch invariance (bitwise
 * equal logits and tokens alone and among 7 or 31 other sequences, prompts cut in chunks),
 * the same for a Llama model (GQA, RoPE, SwiGLU, untied head), the engine (continuous
 * batching, seeds, cancellation, KV back to zero), stop strings
 * and UTF-8, and the request parser's 400s. Tensor parallelism: 2 and 3 shards run by
 * threads (an all-gather over a barrier) against the whole model, and batch-invariant. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/serve/serve.h"
#include "../testutil.h"

/* a small model: L2 NH2 C64, context 64, vocabulary 97 (Vp 128) */
static parlm_gpt *small_model(void)
{
    parlm_gpt_config c = {.n_layer = 2, .n_head = 2, .n_embd = 64, .max_seq = 64, .vocab = 97};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1234), PARLM_OK);
    return m;
}

/* a small Llama: L2 NH4 NKV2 (two query heads a key/value head) C64 F96, an untied head,
 * RoPE base 500 (so positions matter within 64), RMSNorm eps 1e-6 */
static parlm_gpt *small_llama(void)
{
    parlm_gpt_config c = {.n_layer = 2, .n_head = 4, .n_embd = 64, .max_seq = 64, .vocab = 97,
                          .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2, .ffn_hidden = 96,
                          .untied_head = 1, .rope_theta = 500.0f, .norm_eps = 1e-6f};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 4321), PARLM_OK);
    return m;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

START_TEST(kv_accounting)
{
    ps_kv_pool p;
    int64_t bb = ps_kv_block_bytes(2, 8, 4);
    ck_assert_int_eq(bb, 2 * 2 * 4 * 8 * 4);
    ck_assert_int_eq(ps_kv_pool_init(&p, 2, 8, 4, bb * 10 + 5), PARLM_OK);
    ck_assert_int_eq(p.nblocks, 10);
    ck_assert_int_eq(p.nfree, 10);
    ps_kv_seq a = {0}, b = {0};
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &a, 1), PARLM_OK); /* 1 position: 1 block */
    ck_assert_int_eq(a.nblocks, 1);
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &a, 4), PARLM_OK); /* still 1 */
    ck_assert_int_eq(p.nfree, 9);
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &a, 5), PARLM_OK);
    ck_assert_int_eq(p.nfree, 8);
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &b, 32), PARLM_OK); /* 8 blocks */
    ck_assert_int_eq(p.nfree, 0);
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &a, 9), PARLM_ENOMEM); /* nothing taken */
    ck_assert_int_eq(a.nblocks, 2);
    /* every (seq, layer, k/v, position) has its own C floats */
    for (int s = 0; s < 2; s++)
        for (int l = 0; l < 2; l++)
            for (int v = 0; v < 2; v++)
                for (int pos = 0; pos < (s ? 32 : 8); pos++) {
                    float *x = ps_kv_at(&p, s ? &b : &a, l, v, pos);
                    for (int i = 0; i < 8; i++)
                        x[i] = (float)(((s * 2 + l) * 2 + v) * 100 + pos);
                }
    for (int s = 0; s < 2; s++)
        for (int l = 0; l < 2; l++)
            for (int v = 0; v < 2; v++)
                for (int pos = 0; pos < (s ? 32 : 8); pos++)
                    ck_assert_float_eq(ps_kv_at(&p, s ? &b : &a, l, v, pos)[7],
                                       (float)(((s * 2 + l) * 2 + v) * 100 + pos));
    ps_kv_seq_release(&p, &b);
    ck_assert_int_eq(p.nfree, 8);
    ps_kv_seq_release(&p, &a);
    ck_assert_int_eq(p.nfree, 10);
    ck_assert_int_eq(a.nblocks, 0);
    /* blocks come back and go out again */
    ck_assert_int_eq(ps_kv_seq_reserve(&p, &a, 40), PARLM_OK);
    ck_assert_int_eq(p.nfree, 0);
    ps_kv_seq_release(&p, &a);
    free(a.blocks);
    free(b.blocks);
    ps_kv_pool_free(&p);
    ck_assert_int_eq(ps_kv_pool_init(&p, 0, 8, 4, 100), PARLM_EINVAL);
}
END_TEST

/* the batched forward of one sequence (prompt in chunks of 5, then greedy decode) against
 * parlm_gpt_infer (prompt in one call, then one token at a time), both decoding on qtype
 * (f32, or Q8_0 / Q4_0 copies of the weights); tol: on the logits, relative to the
 * largest */
static void forward_vs_infer(parlm_gpt *m, int qtype, float tol)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    ps_model *pm;
    ck_assert_int_eq(ps_model_create(&pm, m, 16, 2, 0, NULL), PARLM_OK);
    ck_assert_int_eq(ps_model_set_decode_type(pm, qtype), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_decode_type(m, qtype), PARLM_OK);
    ps_kv_pool kv;
    /* the cache keeps the key/value heads' channels: Llama's NKV of NH heads */
    ck_assert_int_eq(ps_model_kv_channels(pm),
                     c.arch == PARLM_ARCH_LLAMA ? c.n_embd / c.n_head * c.n_kv_head : c.n_embd);
    ck_assert_int_eq(ps_kv_pool_init(&kv, c.n_layer, ps_model_kv_channels(pm), 16, 1 << 20),
                     PARLM_OK);
    ps_kv_seq s = {0};
    enum { NP = 13, NG = 40 };
    int32_t toks[NP + NG], ref[NP + NG];
    for (int i = 0; i < NP; i++)
        toks[i] = ref[i] = (i * 31 + 7) % c.vocab;
    float *la = tu_alloc_nan(c.vocab_pad), *lb = tu_alloc_nan(c.vocab_pad);
    ck_assert_int_eq(parlm_gpt_infer(m, ref, NP, 0, la), PARLM_OK);
    for (int p = 0; p < NP; p += 5) {
        int n = NP - p < 5 ? NP - p : 5;
        ck_assert_int_eq(ps_kv_seq_reserve(&kv, &s, p + n), PARLM_OK);
        ps_group g = {&s, toks + p, p, n, p + n == NP ? lb : NULL, 0};
        ck_assert_int_eq(ps_forward(pm, &kv, &g, 1), PARLM_OK);
    }
    float worst = 0;
    for (int t = NP; t < NP + NG; t++) {
        float scale = tu_max_abs(la, c.vocab) > 1 ? tu_max_abs(la, c.vocab) : 1;
        float d = tu_max_abs_diff(la, lb, c.vocab) / scale;
        worst = d > worst ? d : worst;
        ref[t] = argmax(la, c.vocab);
        toks[t] = argmax(lb, c.vocab);
        ck_assert_int_eq(toks[t], ref[t]);
        if (t == NP + NG - 1)
            break;
        ck_assert_int_eq(parlm_gpt_infer(m, ref + t, 1, t, la), PARLM_OK);
        ck_assert_int_eq(ps_kv_seq_reserve(&kv, &s, t + 1), PARLM_OK);
        ps_group g = {&s, toks + t, t, 1, lb, 1};
        ck_assert_int_eq(ps_forward(pm, &kv, &g, 1), PARLM_OK);
    }
    ck_assert_msg(worst < tol, "logits differ by %g (relative to the largest)", worst);
    ps_kv_seq_release(&kv, &s);
    ck_assert_int_eq(kv.nfree, kv.nblocks);
    free(s.blocks);
    parlm_free(la), parlm_free(lb);
    ps_kv_pool_free(&kv);
    ps_model_free(pm);
    parlm_gpt_free(m);
}

/* GEMM vs GEMV and another attention loop: rounding-level differences only */
START_TEST(forward_matches_infer) { forward_vs_infer(small_model(), PARLM_WT_F32, 1e-4f); }
END_TEST
/* RMSNorm, RoPE at each row's position, grouped-query attention, SwiGLU, untied head */
START_TEST(forward_matches_infer_llama) { forward_vs_infer(small_llama(), PARLM_WT_F32, 1e-4f); }
END_TEST
/* decode rows on the same Q8_0 / Q4_0 blocks as parlm_gpt_set_decode_type's, inputs
 * quantized the same way: rounding-level differences again (2e-7 on AVX-512). Where the
 * f32 ops before a product differ in the last bit, an input's 8-bit rounding may flip:
 * a step of d_x/2 times a weight (~1e-4 of these logits each); 2e-3 allows a few, and
 * f32 decode rows against Q8_0 ones differ by 6e-3 */
START_TEST(forward_matches_infer_q8_0) { forward_vs_infer(small_model(), PARLM_WT_Q8_0, 2e-3f); }
END_TEST
START_TEST(forward_matches_infer_llama_q4_0)
{
    forward_vs_infer(small_llama(), PARLM_WT_Q4_0, 2e-3f);
}
END_TEST

/* Sequence 0 alone, then among `others` sequences that start at staggered steps with
 * other prompt lengths; every step's batch mixes decode rows and prompt chunks. Sequence
 * 0's logits must be bitwise the same at every position. */
static void invariance_of(parlm_gpt *m, int others, int threads, int bf16, int qtype)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    const int N = others + 1, NP0 = 9, STEPS = 24, CH = 4;
    ps_model *pm;
    ck_assert_int_eq(ps_model_create(&pm, m, N + CH, threads, bf16, NULL), PARLM_OK);
    ck_assert_int_eq(ps_model_set_decode_type(pm, qtype), PARLM_OK);
    ps_kv_pool kv;
    ck_assert_int_eq(ps_kv_pool_init(&kv, c.n_layer, ps_model_kv_channels(pm), 16, 16 << 20),
                     PARLM_OK);
    int64_t Vp = c.vocab_pad;
    float *solo = tu_alloc_nan(STEPS * Vp), *lg = tu_alloc_nan((int64_t)N * Vp);
    int32_t solo_tok[64];
    for (int run = 0; run < 2; run++) {
        int n = run ? N : 1;
        ps_kv_seq *seq = calloc((size_t)n, sizeof *seq);
        int32_t(*tok)[64] = calloc((size_t)n, sizeof *tok);
        int *np = calloc((size_t)n, sizeof(int)), *pos = calloc((size_t)n, sizeof(int));
        int *ntok = calloc((size_t)n, sizeof(int)), *start = calloc((size_t)n, sizeof(int));
        int *got = calloc((size_t)n, sizeof(int));
        for (int i = 0; i < n; i++) {
            np[i] = i == 0 ? NP0 : 1 + (i * 7) % 13;
            start[i] = i == 0 ? 2 * run : (i * 3) % 7; /* alone: from step 0 */
            for (int j = 0; j < np[i]; j++)
                tok[i][j] = (j * 13 + i * 5 + 3) % c.vocab;
            ntok[i] = np[i];
        }
        for (int step = 0; got[0] < STEPS; step++) {
            ps_group g[64];
            int ng = 0, rows = 0, budget = CH, owner[64];
            /* decode rows, then prompt chunks (as the engine's scheduler) */
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < n; i++) {
                    if (step < start[i] || ntok[i] >= 60)
                        continue;
                    int decode = pos[i] >= np[i];
                    if (decode != (pass == 0) || (!decode && budget == 0))
                        continue;
                    int k = decode ? 1 : (np[i] - pos[i] < budget ? np[i] - pos[i] : budget);
                    budget -= decode ? 0 : k;
                    ck_assert_int_eq(ps_kv_seq_reserve(&kv, &seq[i], pos[i] + k), PARLM_OK);
                    g[ng] = (ps_group){&seq[i], tok[i] + pos[i], pos[i], k,
                                       pos[i] + k == ntok[i] ? lg + (int64_t)ng * Vp : NULL,
                                       decode};
                    owner[ng++] = i;
                    rows += k;
                }
            ck_assert_int_le(rows, N + CH);
            if (ng == 0)
                continue;
            ck_assert_int_eq(ps_forward(pm, &kv, g, ng), PARLM_OK);
            for (int q = 0; q < ng; q++) {
                int i = owner[q];
                pos[i] += g[q].n;
                if (!g[q].logits_out)
                    continue;
                int t = argmax(g[q].logits_out, c.vocab);
                if (i == 0) {
                    if (run == 0) {
                        memcpy(solo + got[0] * Vp, g[q].logits_out, (size_t)Vp * sizeof(float));
                        solo_tok[got[0]] = t;
                    } else {
                        ck_assert_msg(!memcmp(solo + got[0] * Vp, g[q].logits_out,
                                              (size_t)Vp * sizeof(float)),
                                      "logits of token %d differ in a batch of %d", got[0], n);
                        ck_assert_int_eq(t, solo_tok[got[0]]);
                    }
                    got[0]++;
                }
                tok[i][ntok[i]++] = t;
            }
        }
        for (int i = 0; i < n; i++) {
            ps_kv_seq_release(&kv, &seq[i]);
            free(seq[i].blocks);
        }
        ck_assert_int_eq(kv.nfree, kv.nblocks);
        free(seq), free(tok), free(np), free(pos), free(ntok), free(start), free(got);
    }
    parlm_free(solo), parlm_free(lg);
    ps_kv_pool_free(&kv);
    ps_model_free(pm);
    parlm_gpt_free(m);
}

static void invariance(int others, int threads, int bf16)
{
    invariance_of(small_model(), others, threads, bf16, PARLM_WT_F32);
}

START_TEST(batch_invariance_8) { invariance(7, 2, 0); }
END_TEST
START_TEST(batch_invariance_32) { invariance(31, 2, 0); }
END_TEST
START_TEST(batch_invariance_13_one_thread) { invariance(12, 1, 0); }
END_TEST
/* bf16 weights: f32 GEMM of the widened weights, as row-independent as f32 */
START_TEST(batch_invariance_bf16) { invariance(15, 2, 1); }
END_TEST
START_TEST(batch_invariance_llama) { invariance_of(small_llama(), 11, 2, 0, PARLM_WT_F32); }
END_TEST
/* quantized decode rows: one GEMV each, so as row-independent as the GEMMs */
START_TEST(batch_invariance_q8_0) { invariance_of(small_model(), 9, 2, 0, PARLM_WT_Q8_0); }
END_TEST
START_TEST(batch_invariance_llama_q4_0)
{
    invariance_of(small_llama(), 9, 2, 0, PARLM_WT_Q4_0);
}
END_TEST

/* m as a view of a GGUF file of type (parlm_gpt_map_gguf; the file is removed once mapped);
 * m is freed */
static parlm_gpt *view_of(parlm_gpt *m, int type)
{
    char dir[64], path[96];
    ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-serve-view"), 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, type, NULL, NULL), PARLM_OK);
    parlm_gpt_free(m);
    parlm_gpt *v;
    ck_assert_msg(parlm_gpt_map_gguf(&v, path, NULL) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(tu_rmtree(dir), 0);
    return v;
}

/* A view of a mapped file: every row (prompt and decode) on the file's blocks, as
 * parlm_qgemm; against parlm_gpt_infer on the same view (its prefill parlm_qgemm too, its
 * decode the stored rows' GEMVs); bitwise the same logits in any batch; bf16 and another
 * decode type refused */
START_TEST(view_forward_matches_infer)
{
    forward_vs_infer(view_of(small_model(), PARLM_WT_Q4_0), PARLM_WT_Q4_0, 2e-3f);
    forward_vs_infer(view_of(small_llama(), PARLM_WT_Q8_0), PARLM_WT_Q8_0, 2e-3f);
    forward_vs_infer(view_of(small_llama(), PARLM_WT_F32), PARLM_WT_F32, 1e-4f);
}
END_TEST
START_TEST(view_batch_invariance)
{
    invariance_of(view_of(small_llama(), PARLM_WT_Q4_0), 9, 2, 0, PARLM_WT_Q4_0);
    invariance_of(view_of(small_model(), PARLM_WT_Q8_0), 7, 2, 0, PARLM_WT_Q8_0);
    parlm_gpt *v = view_of(small_model(), PARLM_WT_Q8_0);
    ps_model *pm;
    ck_assert_int_eq(ps_model_create(&pm, v, 4, 2, 1, NULL), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(ps_model_create(&pm, v, 4, 2, 0, NULL), PARLM_OK);
    ck_assert_int_eq(ps_model_set_decode_type(pm, PARLM_WT_Q4_0), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "as stored, q8_0"));
    parlm_clear_error();
    ps_model_free(pm);
    parlm_gpt_free(v);
}
END_TEST

/* a Llama shard is refused by name, not run wrong */
START_TEST(llama_shard_refused)
{
    parlm_gpt *m = small_llama(), *s;
    parlm_gpt_shard sh = {2, 0, 0, 2};
    ck_assert_int_eq(parlm_gpt_shard_from(&s, m, &sh), PARLM_OK);
    parlm_gpt_tp_comm comm = {0};
    ps_model *pm;
    ck_assert_int_eq(ps_model_create(&pm, s, 8, 1, 0, &comm), PARLM_EUNSUPPORTED);
    ck_assert_msg(strstr(parlm_last_error(), "Llama") != NULL, "%s", parlm_last_error());
    parlm_gpt_free(s);
    parlm_gpt_free(m);
}
END_TEST

/* the engine: the same requests alone and all at once give the same tokens */
static ps_request *submit(ps_engine *e, int i, int max_tokens)
{
    ps_params p = {0};
    p.nprompt = 1 + (i * 5) % 17;
    p.prompt = malloc((size_t)p.nprompt * sizeof(int32_t));
    for (int j = 0; j < p.nprompt; j++)
        p.prompt[j] = (j * 11 + i) % 97;
    p.max_tokens = max_tokens;
    p.temperature = i % 2 ? 0.9f : 0.0f;
    p.top_p = i % 3 ? 0.9f : 1.0f;
    p.top_k = i % 4 ? 0 : 20;
    p.seed = (uint64_t)i * 77;
    p.has_seed = 1;
    ps_request *r;
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_OK);
    return r;
}

static ps_finish finish(ps_request *r)
{
    size_t sent = 0, len;
    char *text;
    ps_finish f;
    while ((f = ps_request_wait(r, 1000, &sent, &text, &len)) == PS_RUNNING)
        free(text);
    free(text);
    return f;
}

START_TEST(engine_batches)
{
    parlm_gpt *m = small_model();
    ps_engine_cfg cfg = {8, 8, 64, 16, 8 << 20, 2, 0, 0, NULL};
    ps_engine *e;
    ck_assert_int_eq(ps_engine_create(&e, m, NULL, &cfg), PARLM_OK);
    enum { N = 12, MT = 20 };
    int32_t *alone[N];
    int nalone[N];
    for (int i = 0; i < N; i++) {
        ps_request *r = submit(e, i, MT);
        ck_assert_int_eq(finish(r), PS_FINISH_LENGTH);
        ps_request_tokens(r, &alone[i], &nalone[i]);
        ck_assert_int_eq(nalone[i], MT);
        ps_request_release(r);
    }
    ps_request *rs[N];
    for (int i = 0; i < N; i++) /* 12 requests, 8 run at once: 4 wait for a slot */
        rs[i] = submit(e, i, MT);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(finish(rs[i]), PS_FINISH_LENGTH);
        int32_t *ids;
        int n, pt, ct;
        ps_request_tokens(rs[i], &ids, &n);
        ck_assert_int_eq(n, nalone[i]);
        ck_assert_msg(!memcmp(ids, alone[i], (size_t)n * sizeof(int32_t)),
                      "request %d differs in a batch", i);
        ps_request_usage(rs[i], &pt, &ct);
        ck_assert_int_eq(ct, MT);
        free(ids);
        free(alone[i]);
        ps_request_release(rs[i]);
    }
    ps_stats st;
    ps_engine_stats(e, &st);
    ck_assert_int_eq(st.running, 0);
    ck_assert_int_eq(st.generation_tokens, 2 * N * MT);
    ck_assert_uint_eq(st.ttft.n, 2 * N);
    /* cancellation: a long request stops and gives its blocks back. It is cancelled once it
     * has 2 tokens; a fast machine can generate all 40 between two 1-ms polls (it then ends
     * by length), so later attempts cancel sooner, the last ones right after submitting */
    ps_finish f = PS_FINISH_LENGTH;
    for (int attempt = 0; attempt < 10 && f != PS_FINISH_CANCELLED; attempt++) {
        ps_request *r = submit(e, 3, 40);
        size_t sent = 0, len;
        char *text;
        int want = attempt < 3 ? 2 : attempt < 6 ? 1 : 0;
        while (want && ps_request_wait(r, 1, &sent, &text, &len) == PS_RUNNING) { /* poll */
            free(text);
            int pt, ct;
            ps_request_usage(r, &pt, &ct);
            if (ct >= want)
                break;
        }
        ps_request_cancel(r);
        f = finish(r);
        ck_assert(f == PS_FINISH_CANCELLED || f == PS_FINISH_LENGTH);
        ps_request_release(r);
    }
    ck_assert_int_eq(f, PS_FINISH_CANCELLED);
    for (int i = 0; i < 100; i++) { /* the loop thread publishes the count on its next pass */
        ps_engine_stats(e, &st);
        if (st.kv_blocks_used == 0)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(st.kv_blocks_used, 0);
    /* too big for the pool; draining refuses */
    ps_request *r;
    ps_params p = {0};
    p.nprompt = 1;
    p.prompt = calloc(1, sizeof(int32_t));
    p.max_tokens = 63;
    p.top_p = 0; /* must be in (0, 1] */
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_INVALID);
    p.top_p = 1;
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_OK);
    ck_assert_int_eq(finish(r), PS_FINISH_LENGTH);
    ps_request_release(r);
    ps_engine_drain(e);
    p.prompt = calloc(1, sizeof(int32_t));
    p.nprompt = 1;
    p.max_tokens = 5;
    p.top_p = 1;
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_DRAINING);
    ps_params_free(&p);
    ps_engine_free(e);
    /* a pool of 2 blocks of 16: 33 positions do not fit */
    cfg.kv_bytes = 2 * ps_kv_block_bytes(2, 64, 16);
    cfg.max_queue = 0;
    ck_assert_int_eq(ps_engine_create(&e, m, NULL, &cfg), PARLM_OK);
    p.prompt = calloc(1, sizeof(int32_t));
    p.nprompt = 1;
    p.max_tokens = 32;
    p.top_p = 1;
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_TOO_BIG);
    p.max_tokens = 8; /* fits, but a queue of 0 is always full */
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_QUEUE_FULL);
    p.max_tokens = 64; /* 65 positions: more than the context */
    ck_assert_int_eq(ps_engine_submit(e, &p, &r), PS_SUBMIT_TOO_BIG);
    ps_params_free(&p);
    ps_engine_free(e);
    parlm_gpt_free(m);
}
END_TEST

START_TEST(text_stops)
{
    const char *stop[] = {"END", "\n\n"};
    ck_assert_uint_eq(ps_text_safe_len("hello", 5, stop, 2), 5);
    ck_assert_uint_eq(ps_text_safe_len("hello E", 7, stop, 2), 6);
    ck_assert_uint_eq(ps_text_safe_len("hello EN", 8, stop, 2), 6);
    ck_assert_uint_eq(ps_text_safe_len("hello\n", 6, stop, 2), 5);
    ck_assert_uint_eq(ps_text_safe_len("caf\xc3", 4, stop, 0), 3);      /* half of é */
    ck_assert_uint_eq(ps_text_safe_len("caf\xc3\xa9", 5, stop, 0), 5);
    ck_assert_uint_eq(ps_text_safe_len("\xe2\x82", 2, stop, 0), 0);     /* 2 of 3 of € */
    ck_assert_uint_eq(ps_text_safe_len("a\xff", 2, stop, 0), 2);        /* never valid */
    ck_assert_int_eq(ps_text_find_stop("abcEND", 6, 3, stop, 2), 3);
    ck_assert_int_eq(ps_text_find_stop("abcEN", 5, 3, stop, 2), -1);
    ck_assert_int_eq(ps_text_find_stop("x\n\nEND", 6, 0, stop, 2), 1);  /* first of them */
    ck_assert_int_eq(ps_text_find_stop("ENDabc", 6, 5, stop, 2), -1);   /* ended before from */
    char *o;
    size_t n;
    ck_assert_int_eq(ps_utf8_sanitize("a\xff\xc3\xa9\xed\xa0\x80", 7, &o, &n), PARLM_OK);
    ck_assert_str_eq(o, "a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert(ps_utf8_valid(o, n));
    free(o);
    ck_assert(!ps_utf8_valid("\xc0\x80", 2)); /* overlong */
    ck_assert(!ps_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}
END_TEST

static int parse(const char *body, ps_params *p, ps_error *e)
{
    return ps_parse_completion(body, strlen(body), NULL, 64, 97, p, e);
}

START_TEST(request_parsing)
{
    ps_params p;
    ps_error e;
    ck_assert_int_eq(parse("{\"prompt\":[1,2,3],\"max_tokens\":5,\"temperature\":0,\"top_p\":0.5,"
                           "\"top_k\":7,\"stop\":[\"a\",\"bc\"],\"seed\":9,\"stream\":true,"
                           "\"stream_options\":{\"include_usage\":true},\"n\":1,\"model\":\"x\","
                           "\"echo\":false,\"logprobs\":null,\"presence_penalty\":0}",
                           &p, &e), 0);
    ck_assert_int_eq(p.nprompt, 3);
    ck_assert_int_eq(p.prompt[2], 3);
    ck_assert_int_eq(p.max_tokens, 5);
    ck_assert_float_eq(p.temperature, 0.0f);
    ck_assert_float_eq(p.top_p, 0.5f);
    ck_assert_int_eq(p.top_k, 7);
    ck_assert_int_eq(p.nstop, 2);
    ck_assert_str_eq(p.stop[1], "bc");
    ck_assert(p.has_seed && p.seed == 9 && p.stream && p.include_usage);
    ck_assert_str_eq(p.model, "x");
    ps_params_free(&p);
    /* a top_p too small for a float stays positive (found by fuzz_request) */
    ck_assert_int_eq(parse("{\"prompt\":[1],\"top_p\":1e-50,\"temperature\":1e-50}", &p, &e),
                     0);
    ck_assert(p.top_p > 0 && p.top_p <= 1e-37f && p.temperature == 0);
    ps_params_free(&p);
    ck_assert_int_eq(parse("{\"prompt\":[1]}", &p, &e), 0); /* defaults */
    ck_assert_int_eq(p.max_tokens, 16);
    ck_assert_float_eq(p.temperature, 1.0f);
    ck_assert(!p.stream && !p.has_seed);
    ps_params_free(&p);
    static const struct { const char *body, *param, *code; } bad[] = {
        {"{\"prompt\":[1]", NULL, NULL},                       /* malformed */
        {"[1,2]", NULL, NULL},                                 /* not an object */
        {"{\"prompt\":[1],\"bogus\":1}", NULL, NULL},          /* unknown field */
        {"{\"prompt\":[1],\"prompt\":[2]}", NULL, NULL},       /* duplicate key */
        {"{}", "prompt", NULL},
        {"{\"prompt\":\"\"}", "prompt", NULL},
        {"{\"prompt\":[]}", "prompt", NULL},
        {"{\"prompt\":\"text\"}", "prompt", NULL},             /* no tokenizer */
        {"{\"prompt\":[1,97]}", "prompt", NULL},               /* outside the vocabulary */
        {"{\"prompt\":[1,-1]}", "prompt", NULL},
        {"{\"prompt\":[\"a\"]}", "prompt", NULL},
        {"{\"prompt\":5}", "prompt", NULL},
        {"{\"prompt\":[1],\"max_tokens\":0}", "max_tokens", NULL},
        {"{\"prompt\":[1],\"max_tokens\":-3}", "max_tokens", NULL},
        {"{\"prompt\":[1],\"max_tokens\":1000000000000}", "max_tokens", "context_length_exceeded"},
        {"{\"prompt\":[1],\"max_tokens\":\"5\"}", "max_tokens", NULL},
        {"{\"prompt\":[1],\"max_tokens\":1.5}", "max_tokens", NULL},
        {"{\"prompt\":[1,2,3],\"max_tokens\":62}", "max_tokens", "context_length_exceeded"},
        {"{\"prompt\":[1],\"temperature\":-0.1}", "temperature", NULL},
        {"{\"prompt\":[1],\"temperature\":\"hot\"}", "temperature", NULL},
        {"{\"prompt\":[1],\"top_p\":0}", "top_p", NULL},
        {"{\"prompt\":[1],\"top_p\":1.01}", "top_p", NULL},
        {"{\"prompt\":[1],\"top_k\":-2}", "top_k", NULL},
        {"{\"prompt\":[1],\"stop\":\"\"}", "stop", NULL},
        {"{\"prompt\":[1],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", NULL},
        {"{\"prompt\":[1],\"stop\":[1]}", "stop", NULL},
        {"{\"prompt\":[1],\"n\":2}", "n", NULL},
        {"{\"prompt\":[1],\"stream\":1}", "stream", NULL},
        {"{\"prompt\":[1],\"seed\":1.5}", "seed", NULL},
        {"{\"prompt\":[1],\"echo\":true}", "echo", NULL},
        {"{\"prompt\":[1],\"logprobs\":2}", "logprobs", NULL},
        {"{\"prompt\":[1],\"stream_options\":{\"include_usage\":true}}", "stream_options", NULL},
        {"{\"prompt\":\"a\\u0000b\"}", NULL, NULL},            /* NUL in a string */
        {"{\"prompt\":\"\xff\"}", NULL, NULL},                 /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse(bad[i].body, &p, &e) == -1, "accepted: %s", bad[i].body);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.type, "invalid_request_error");
        ck_assert_msg(bad[i].param ? e.param && !strcmp(e.param, bad[i].param) : !e.param,
                      "%s: param %s", bad[i].body, e.param ? e.param : "null");
        ck_assert_msg(bad[i].code ? e.code && !strcmp(e.code, bad[i].code) : 1, "%s: code",
                      bad[i].body);
        ck_assert(strlen(e.message) > 0);
    }
    /* a text prompt through a tokenizer */
    parlm_tokenizer *tok;
    ck_assert_int_eq(parlm_tokenizer_bytes(&tok), PARLM_OK);
    const char *body = "{\"prompt\":\"hi\\u00e9\"}";
    ck_assert_int_eq(ps_parse_completion(body, strlen(body), tok, 300, 300, &p, &e), 0);
    ck_assert_int_eq(p.nprompt, 4);
    ck_assert_int_eq(p.prompt[2], 0xc3);
    ps_params_free(&p);
    parlm_tokenizer_free(tok);
}
END_TEST

/* ---- tensor parallelism: tp threads, one shard each, an all-gather over a barrier ---- */

typedef struct tp_ctx {
    int tp;
    pthread_barrier_t bar;
    float *shared;                 /* the gathered blocks */
    parlm_gpt_config c;
    float *out[2][4];              /* [alone, batch][rank]: sequence 0's logits per step */
    parlm_status st[4];
} tp_ctx;
typedef struct tp_rank {
    tp_ctx *x;
    int r;
} tp_rank;

static parlm_status fake_gather(void *arg, float *buf, int64_t n)
{
    tp_rank *k = arg;
    memcpy(k->x->shared + k->r * n, buf + k->r * n, (size_t)n * sizeof(float));
    pthread_barrier_wait(&k->x->bar);
    memcpy(buf, k->x->shared, (size_t)(k->x->tp * n) * sizeof(float));
    pthread_barrier_wait(&k->x->bar); /* before anyone writes shared again */
    return PARLM_OK;
}

enum { TP_STEPS = 12, TP_CH = 4 };

/* nseq sequences (prompts of 5 + 3i tokens, chunks of TP_CH, then fixed decode tokens);
 * out gets sequence 0's logits at each of its TP_STEPS decode steps */
static parlm_status tp_run(ps_model *pm, int kvc, int nseq, float *out)
{
    parlm_gpt_config c = ps_model_config(pm);
    ps_kv_pool kv;
    parlm_status st = ps_kv_pool_init(&kv, c.n_layer, kvc, 8, 4 << 20);
    ps_kv_seq seq[3] = {{0}};
    int32_t tok[3][64];
    int pos[3] = {0}, np[3], got = 0;
    float *lg = malloc((size_t)3 * (size_t)c.vocab_pad * sizeof(float));
    for (int i = 0; i < nseq; i++) {
        np[i] = 5 + 3 * i;
        for (int j = 0; j < 64; j++)
            tok[i][j] = (j * 37 + i * 11 + 1) % c.vocab;
    }
    while (st == PARLM_OK && got < TP_STEPS) {
        ps_group g[3];
        for (int i = 0; i < nseq; i++) {
            int n = pos[i] < np[i] ? (np[i] - pos[i] < TP_CH ? np[i] - pos[i] : TP_CH) : 1;
            ps_kv_seq_reserve(&kv, &seq[i], pos[i] + n);
            g[i] = (ps_group){&seq[i], tok[i] + pos[i], pos[i], n,
                              pos[i] + n >= np[i] ? lg + (int64_t)i * c.vocab_pad : NULL, 0};
        }
        st = ps_forward(pm, &kv, g, nseq);
        for (int i = 0; i < nseq; i++)
            pos[i] += g[i].n;
        if (g[0].logits_out)
            memcpy(out + (int64_t)got++ * c.vocab_pad, lg, (size_t)c.vocab_pad * sizeof(float));
    }
    for (int i = 0; i < nseq; i++) {
        ps_kv_seq_release(&kv, &seq[i]);
        free(seq[i].blocks);
    }
    free(lg);
    ps_kv_pool_free(&kv);
    return st;
}

static void *tp_thread(void *arg)
{
    tp_rank *k = arg;
    tp_ctx *x = k->x;
    parlm_gpt_shard sh = {x->tp, k->r, 0, x->c.n_layer};
    parlm_gpt *m = NULL;
    ps_model *pm = NULL;
    parlm_gpt_tp_comm comm = {NULL, fake_gather, k};
    parlm_status st = parlm_gpt_create_shard(&m, &x->c, &sh, 77);
    if (st == PARLM_OK)
        st = ps_model_create(&pm, m, 16, 1, 0, &comm);
    for (int run = 0; run < 2 && st == PARLM_OK; run++)
        st = tp_run(pm, ps_model_kv_channels(pm), run ? 3 : 1, x->out[run][k->r]);
    x->st[k->r] = st;
    ps_model_free(pm);
    parlm_gpt_free(m);
    return NULL;
}

static void tp_check(int tp)
{
    tp_ctx x = {.tp = tp, .c = {2, 6, 96, 64, 300, 384}};
    const int64_t Vp = x.c.vocab_pad, n = TP_STEPS * Vp;
    x.shared = malloc((size_t)(16 * 96 * tp + 16 * Vp) * sizeof(float));
    pthread_barrier_init(&x.bar, NULL, (unsigned)tp);
    for (int run = 0; run < 2; run++)
        for (int r = 0; r < tp; r++)
            x.out[run][r] = tu_alloc_nan(n);
    tp_rank k[4];
    pthread_t th[4];
    for (int r = 0; r < tp; r++) {
        k[r] = (tp_rank){&x, r};
        ck_assert_int_eq(pthread_create(&th[r], NULL, tp_thread, &k[r]), 0);
    }
    for (int r = 0; r < tp; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < tp; r++)
        ck_assert_msg(x.st[r] == PARLM_OK, "rank %d: %s", r, parlm_last_error());
    /* the whole model, same schedule */
    parlm_gpt *m;
    ps_model *pm;
    ck_assert_int_eq(parlm_gpt_create(&m, &x.c, 77), PARLM_OK);
    ck_assert_int_eq(ps_model_create(&pm, m, 16, 1, 0, NULL), PARLM_OK);
    float *whole = tu_alloc_nan(n);
    ck_assert_int_eq(tp_run(pm, x.c.n_embd, 1, whole), PARLM_OK);
    for (int r = 0; r < tp; r++) /* every rank the same bits, alone or in a batch */
        for (int run = 0; run < 2; run++)
            ck_assert_msg(!memcmp(x.out[run][r], x.out[0][0], (size_t)n * sizeof(float)),
                          "tp %d: rank %d's logits (%s) differ from rank 0's alone", tp, r,
                          run ? "in a batch" : "alone");
    float worst = 0;
    for (int t = 0; t < TP_STEPS; t++) {
        const float *a = whole + t * Vp, *b = x.out[0][0] + t * Vp;
        float scale = tu_max_abs(a, x.c.vocab) > 1 ? tu_max_abs(a, x.c.vocab) : 1;
        float d = tu_max_abs_diff(a, b, x.c.vocab) / scale;
        worst = d > worst ? d : worst;
        ck_assert_int_eq(argmax(a, x.c.vocab), argmax(b, x.c.vocab));
    }
    /* only the row-parallel sums' order differs: rounding-level */
    ck_assert_msg(worst < 1e-5f, "tp %d: logits differ by %g (relative)", tp, worst);
    parlm_free(whole);
    ps_model_free(pm);
    parlm_gpt_free(m);
    for (int run = 0; run < 2; run++)
        for (int r = 0; r < tp; r++)
            parlm_free(x.out[run][r]);
    pthread_barrier_destroy(&x.bar);
    free(x.shared);
}

START_TEST(tensor_parallel_2) { tp_check(2); }
END_TEST
START_TEST(tensor_parallel_3) { tp_check(3); }
END_TEST

int main(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("serve");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kv_accounting);
    tcase_add_test(tc, forward_matches_infer);
    tcase_add_test(tc, forward_matches_infer_llama);
    tcase_add_test(tc, batch_invariance_llama);
    tcase_add_test(tc, forward_matches_infer_q8_0);
    tcase_add_test(tc, forward_matches_infer_llama_q4_0);
    tcase_add_test(tc, batch_invariance_q8_0);
    tcase_add_test(tc, batch_invariance_llama_q4_0);
    tcase_add_test(tc, view_forward_matches_infer);
    tcase_add_test(tc, view_batch_invariance);
    tcase_add_test(tc, llama_shard_refused);
    tcase_add_test(tc, batch_invariance_8);
    tcase_add_test(tc, batch_invariance_32);
    tcase_add_test(tc, batch_invariance_13_one_thread);
    tcase_add_test(tc, batch_invariance_bf16);
    tcase_add_test(tc, engine_batches);
    tcase_add_test(tc, text_stops);
    tcase_add_test(tc, request_parsing);
    tcase_add_test(tc, tensor_parallel_2);
    tcase_add_test(tc, tensor_parallel_3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
