/* tests/io/test_gguf_view.c — a GGUF file run in place (parlm_gpt_map_gguf): the view of a
 * GPT-2 and a Llama file (tied and untied heads, grouped-query attention) in f32, Q8_0 and
 * Q4_0 decodes bitwise as the loaded copy's decode on the same blocks; its prefill and
 * evaluation agree with its decode; the file is mapped, not copied (resident memory grows by
 * about the file, not by its f32 size) and unmapped at free; training, bf16, another decode
 * type, sharding and saving are refused by name; mixed and unsupported types, unbound
 * matrices and bad binds are errors naming the tensor. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"

static char dir[64];

static void setup(void) { ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-view"), 0); }

static void teardown(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

/* GPT-2: L2 NH2 C64, a vocabulary of 300 (padded to 384); Llama: NH4 NKV2 C64 F96 */
static parlm_gpt *make_model(int llama, int untied)
{
    parlm_gpt_config c = {.n_layer = 2, .n_head = 2, .n_embd = 64, .max_seq = 32, .vocab = 300};
    if (llama)
        c = (parlm_gpt_config){.n_layer = 2, .n_head = 4, .n_embd = 64, .max_seq = 32,
                               .vocab = 70, .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2,
                               .ffn_hidden = 96, .untied_head = untied, .rope_theta = 5e5f,
                               .norm_eps = 1e-6f};
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create(&m, &c, 11) == PARLM_OK, "%s", parlm_last_error());
    return m;
}

static void expect_unsupported(parlm_status st, const char *what)
{
    ck_assert_msg(st == PARLM_EUNSUPPORTED, "%s: status %d", what, (int)st);
    ck_assert_msg(strstr(parlm_last_error(), what) && strstr(parlm_last_error(), "view"),
                  "%s: %s", what, parlm_last_error());
    parlm_clear_error();
}

/* The view decodes bitwise as the copy (same blocks, plain rows); its prefill and forward
 * agree with its own decode; the copy's prefill (f32 products) is close */
START_TEST(view_runs_as_the_copy)
{
    const parlm_wtype types[3] = {PARLM_WT_F32, PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    const int models[3][2] = {{0, 0}, {1, 0}, {1, 1}}; /* gpt2, llama tied, llama untied */
    char path[128];
    snprintf(path, sizeof path, "%s/v.gguf", dir);
    for (int mi = 0; mi < 3; mi++)
        for (int ti = 0; ti < 3; ti++) {
            const int type = types[ti];
            parlm_gpt *m = make_model(models[mi][0], models[mi][1]);
            ck_assert_int_eq(parlm_gpt_save_gguf(m, path, type, NULL, NULL), PARLM_OK);
            parlm_gpt_free(m);
            parlm_gpt *copy, *view;
            parlm_gguf_load_info info = {PARLM_WT_BF16, -1};
            ck_assert_int_eq(parlm_gpt_load_gguf(&copy, path), PARLM_OK);
            ck_assert_msg(parlm_gpt_map_gguf(&view, path, &info) == PARLM_OK, "%s",
                          parlm_last_error());
            ck_assert_int_eq(info.wtype, type);
            ck_assert_int_eq(info.blocks_exact, 1);
            ck_assert(parlm_gpt_is_view(view) && !parlm_gpt_is_view(copy));
            ck_assert_ptr_null(parlm_gpt_params(view));
            ck_assert_ptr_nonnull(parlm_gpt_view_vectors(view));
            ck_assert_ptr_null(parlm_gpt_view_vectors(copy));
            ck_assert_int_eq(parlm_gpt_num_params(view), parlm_gpt_num_params(copy));
            for (int i = 0; i < parlm_gpt_num_tensors(view); i++) {
                const char *kind;
                int64_t off;
                parlm_gpt_tensor_info(view, i, &kind, NULL, &off, NULL);
                int vec = strstr(kind, "ln") || strstr(kind, "norm") || !strcmp(kind, "wpe") ||
                          (strlen(kind) > 1 && kind[strlen(kind) - 1] == 'b');
                ck_assert_msg((off >= 0) == vec, "%s at %lld", kind, (long long)off);
            }
            if (type != PARLM_WT_F32) {
                ck_assert_int_eq(parlm_qlayout_select(type, PARLM_QLAYOUT_ROWS), PARLM_OK);
                ck_assert_int_eq(parlm_gpt_set_decode_type(copy, type), PARLM_OK);
            }
            ck_assert_int_eq(parlm_gpt_set_decode_type(view, type), PARLM_OK); /* as stored */
            parlm_gpt_config c = parlm_gpt_get_config(view);
            const int n = 7, Vp = c.vocab_pad;
            int32_t tok[7];
            for (int i = 0; i < n; i++)
                tok[i] = (i * 37 + 5) % c.vocab;
            float *lv = malloc((size_t)Vp * 4), *lc = malloc((size_t)Vp * 4);
            float *pv = malloc((size_t)Vp * 4), *pc = malloc((size_t)Vp * 4);
            for (int nt = 1; nt <= 2; nt++) {
                omp_set_num_threads(nt);
                for (int i = 0; i < n; i++) {
                    ck_assert_int_eq(parlm_gpt_infer(view, tok + i, 1, i, lv), PARLM_OK);
                    ck_assert_int_eq(parlm_gpt_infer(copy, tok + i, 1, i, lc), PARLM_OK);
                    ck_assert_msg(memcmp(lv, lc, (size_t)Vp * 4) == 0,
                                  "model %d %s: decode of position %d differs (%d threads)", mi,
                                  parlm_wtype_name(type), i, nt);
                }
                for (int v = c.vocab; v < Vp; v++)
                    ck_assert(lv[v] == 0.0f);
            }
            /* prefill: the whole prompt at once, against the token-by-token decode */
            ck_assert_int_eq(parlm_gpt_infer(view, tok, n, 0, pv), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_infer(copy, tok, n, 0, pc), PARLM_OK);
            float amax = tu_max_abs(lv, c.vocab);
            ck_assert_msg(tu_max_abs_diff(pv, lv, Vp) <= 1e-4f * amax, "model %d %s: prefill "
                          "%g from decode", mi, parlm_wtype_name(type),
                          (double)tu_max_abs_diff(pv, lv, Vp));
            /* the copy's prefill multiplies f32 activations: the view's rounds them to 8
             * bits a block */
            float tol = type == PARLM_WT_F32 ? 1e-4f : 0.05f;
            ck_assert_msg(tu_max_abs_diff(pv, pc, Vp) <= tol * amax, "model %d %s: %g from the "
                          "copy's prefill", mi, parlm_wtype_name(type),
                          (double)tu_max_abs_diff(pv, pc, Vp));
            /* evaluation: the mean loss of a batch of 2 */
            int32_t in[2][6], tg[2][6];
            for (int b = 0; b < 2; b++)
                for (int t = 0; t < 6; t++)
                    in[b][t] = tok[(b + t) % n], tg[b][t] = tok[(b + t + 1) % n];
            float loss_v = -1, loss_c = -1;
            ck_assert_int_eq(parlm_gpt_setup(view, 2, 6, 0), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_setup(copy, 2, 6, 0), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_forward(view, &in[0][0], &tg[0][0], &loss_v), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_forward(copy, &in[0][0], &tg[0][0], &loss_c), PARLM_OK);
            ck_assert_msg(fabsf(loss_v - loss_c) <= (type == PARLM_WT_F32 ? 1e-5f : 0.01f) * loss_c,
                          "model %d %s: loss %g vs the copy's %g", mi, parlm_wtype_name(type),
                          (double)loss_v, (double)loss_c);
            free(lv), free(lc), free(pv), free(pc);
            parlm_gpt_free(view);
            parlm_gpt_free(copy);
        }
    omp_set_num_threads(2);
    ck_assert_int_eq(parlm_qlayout_select(PARLM_WT_Q8_0, parlm_qlayout_current(PARLM_WT_Q8_0, NULL)),
                     PARLM_OK);
}
END_TEST

/* kB of resident memory of a kind ("RssAnon:" the process's own, "RssFile:" pages of mapped
 * files), and whether path is mapped, from /proc/self */
static long rss_kb(const char *which)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(which);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, which, n))
            kb = strtol(line + n, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int is_mapped(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        found |= strstr(line, path) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* Memory-mapped, not copied: a Q8_0 file of ~30 MB (29M weights, 116 MB in f32) runs with
 * resident memory grown by about the file; the mapping goes with the model */
START_TEST(view_maps_not_copies)
{
    char path[128];
    snprintf(path, sizeof path, "%s/big.gguf", dir);
    parlm_gpt_config c = {.n_layer = 4, .n_head = 8, .n_embd = 512, .max_seq = 64,
                          .vocab = 32000};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 3), PARLM_OK);
    int64_t np = parlm_gpt_num_params(m);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_Q8_0, NULL, NULL), PARLM_OK);
    parlm_gpt_free(m);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long file_kb = ftell(f) / 1024;
    fclose(f);
    long anon0 = rss_kb("RssAnon:"), file0 = rss_kb("RssFile:");
    parlm_gpt *view;
    ck_assert_int_eq(parlm_gpt_map_gguf(&view, path, NULL), PARLM_OK);
    ck_assert(is_mapped(path));
    float *logits = malloc((size_t)parlm_gpt_get_config(view).vocab_pad * 4);
    int32_t t[2] = {17, 31999};
    ck_assert_int_eq(parlm_gpt_infer(view, t, 2, 0, logits), PARLM_OK); /* prefill */
    ck_assert_int_eq(parlm_gpt_infer(view, t, 1, 2, logits), PARLM_OK); /* decode */
    long anon = rss_kb("RssAnon:") - anon0, file = rss_kb("RssFile:") - file0;
    long f32_kb = (long)(np * 4 / 1024);
    /* the process's own memory: the vectors, a KV cache of 1 MB and scratch, not the
     * weights (113 MB in f32, 47 MB as stored); the pages of the file it read (and of
     * code run for the first time) */
    ck_assert_msg(anon < 8 * 1024 && file <= file_kb + 4096,
                  "resident memory grew by %ld kB of its own and %ld kB of files (file %ld kB, "
                  "f32 weights %ld kB)", anon, file, file_kb, f32_kb);
    printf("view of a %ld kB Q8_0 file (%ld kB in f32): +%ld kB own memory, +%ld kB of the "
           "file resident\n", file_kb, f32_kb, anon, file);
    free(logits);
    parlm_gpt_free(view);
    ck_assert_msg(!is_mapped(path), "the file is still mapped after parlm_gpt_free");
}
END_TEST

/* Inference only: everything that needs weights of the model's own is refused by name */
START_TEST(view_refuses_training_and_saving)
{
    char path[128], out[160];
    snprintf(path, sizeof path, "%s/r.gguf", dir);
    parlm_gpt *m = make_model(1, 1);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_Q4_0, NULL, NULL), PARLM_OK);
    parlm_gpt_free(m);
    parlm_gpt *v, *s;
    ck_assert_int_eq(parlm_gpt_map_gguf(&v, path, NULL), PARLM_OK);
    expect_unsupported(parlm_gpt_setup(v, 1, 4, 1), "parlm_gpt_setup");
    expect_unsupported(parlm_gpt_set_bf16(v, 1), "parlm_gpt_set_bf16");
    ck_assert_int_eq(parlm_gpt_set_bf16(v, 0), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_decode_type(v, PARLM_WT_Q8_0), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "as stored, q4_0"));
    ck_assert_int_eq(parlm_gpt_set_decode_type(v, PARLM_WT_F32), PARLM_EUNSUPPORTED);
    parlm_clear_error();
    parlm_gpt_shard sh = {2, 0, 0, 2};
    expect_unsupported(parlm_gpt_shard_from(&s, v, &sh), "parlm_gpt_shard_from");
    expect_unsupported(parlm_gpt_zero_grad(v), "parlm_gpt_zero_grad");
    expect_unsupported(parlm_gpt_init_optimizer(v), "parlm_gpt_init_optimizer");
    float norm;
    expect_unsupported(parlm_gpt_grad_norm(v, &norm), "parlm_gpt_grad_norm");
    parlm_adamw_cfg opt = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f};
    expect_unsupported(parlm_gpt_optimizer_step(v, &opt, 1.0f, &norm), "parlm_gpt_init_optimizer");
    snprintf(out, sizeof out, "%s/o.gguf", dir);
    expect_unsupported(parlm_gpt_save_gguf(v, out, PARLM_WT_F32, NULL, NULL), "parlm_gpt_save_gguf");
    snprintf(out, sizeof out, "%s/o.safetensors", dir);
    expect_unsupported(parlm_gpt_save_safetensors(v, out, PARLM_WT_F32),
                       "parlm_gpt_save_safetensors");
    snprintf(out, sizeof out, "%s/o.bin", dir);
    expect_unsupported(parlm_gpt_save_llmc(v, out, 3), "parlm_gpt_save_llmc");
    parlm_train_state st = {0};
    expect_unsupported(parlm_checkpoint_save(out, v, &st), "parlm_checkpoint_save");
    ck_assert_int_eq(access(out, F_OK), -1); /* nothing written */
    parlm_gpt_free(v);
}
END_TEST

/* A file whose matrices are not of one f32 / q8_0 / q4_0 type; a view with a matrix not
 * bound; bad binds */
START_TEST(view_errors_name_the_tensor)
{
    char path[128];
    snprintf(path, sizeof path, "%s/e.gguf", dir);
    /* f16 matrices: copied by the loader, not run in place */
    parlm_gpt *m = make_model(0, 0);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_F16, NULL, NULL), PARLM_OK);
    parlm_gpt *v = (parlm_gpt *)1;
    ck_assert_int_eq(parlm_gpt_map_gguf(&v, path, NULL), PARLM_EUNSUPPORTED);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(parlm_last_error(), "token_embd.weight") &&
                  strstr(parlm_last_error(), "f16"), "%s", parlm_last_error());
    parlm_clear_error();
    parlm_gpt_free(m);
    /* C = 48: rows of 48 weights cannot be Q8_0 blocks, the saver stores those as f16, and
     * the 192-weight rows of fcprojw as Q8_0: a mix */
    parlm_gpt_config c = {.n_layer = 1, .n_head = 2, .n_embd = 48, .max_seq = 8, .vocab = 64};
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_Q8_0, NULL, NULL), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_map_gguf(&v, path, NULL), PARLM_EUNSUPPORTED);
    ck_assert_msg(strstr(parlm_last_error(), "e.gguf: tensor "), "%s", parlm_last_error());
    parlm_clear_error();
    parlm_gpt_free(m);
    /* an unbound view */
    c.n_embd = 64;
    ck_assert_int_eq(parlm_gpt_create_view(&v, &c), PARLM_OK);
    int32_t tok = 1;
    float logits[128];
    ck_assert_int_eq(parlm_gpt_infer(v, &tok, 1, 0, logits), PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), "matrix wte") &&
                  strstr(parlm_last_error(), "no weights"), "%s", parlm_last_error());
    parlm_clear_error();
    static const uint8_t blocks[64 * 34 * 64];
    const char *kind;
    int64_t off;
    int vec = -1, fcw = -1, wte = -1;
    for (int i = 0; i < parlm_gpt_num_tensors(v); i++) {
        parlm_gpt_tensor_info(v, i, &kind, NULL, &off, NULL);
        vec = off >= 0 ? i : vec;
        fcw = !strcmp(kind, "fcw") ? i : fcw;
        wte = !strcmp(kind, "wte") ? i : wte;
    }
    ck_assert_int_eq(parlm_gpt_view_bind(v, vec, PARLM_WT_F32, blocks), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "not a matrix"));
    ck_assert_int_eq(parlm_gpt_view_bind(v, fcw, PARLM_WT_BF16, blocks), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "fcw (layer 0) is bf16"));
    ck_assert_int_eq(parlm_gpt_view_bind(v, fcw, PARLM_WT_Q4_0, blocks), PARLM_OK);
    /* the tied embedding is the head: a product of the view's one type */
    ck_assert_int_eq(parlm_gpt_view_bind(v, wte, PARLM_WT_Q8_0, blocks), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "other matrices are q4_0"));
    parlm_clear_error();
    ck_assert_int_eq(parlm_gpt_view_bind(v, 0, PARLM_WT_Q4_0, NULL), PARLM_EINVAL);
    parlm_clear_error();
    ck_assert_int_eq(parlm_gpt_infer(v, &tok, 1, 0, logits), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "matrix wte"));
    parlm_clear_error();
    parlm_gpt_free(v);
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_view_bind(m, 0, PARLM_WT_Q8_0, blocks), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "not a view"));
    ck_assert_int_eq(parlm_gpt_view_keep(m, NULL, NULL), PARLM_EINVAL);
    parlm_clear_error();
    parlm_gpt_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gguf view");
    TCase *tc = tcase_create("view");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, view_runs_as_the_copy);
    tcase_add_test(tc, view_maps_not_copies);
    tcase_add_test(tc, view_refuses_training_and_saving);
    tcase_add_test(tc, view_errors_name_the_tensor);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
