/* tests/io/test_ckpt_shards.c — a sharded model in the whole-model files, one process:
 * pipeline-stage shards (and the whole model as one shard) save byte for byte the file
 * parlm_checkpoint_save writes of the whole model; a checkpoint or llm.c file (f32, bf16)
 * loads into stage shards as exactly the slices of the whole model, and the same for
 * tensor-parallel slices; shards that do not
 * cover the model, or cover it twice, are refused and write nothing; bad layouts and
 * corrupt files are errors naming the file; the checkpoint directory rotates them. The
 * reference slices are cut here from the whole model in memory. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"
#include "ckpt_fixture.h"

static char dir[64];
static const parlm_gpt_config CFG = {.n_layer = 4, .n_head = 2, .n_embd = 32,
                                     .max_seq = 16, .vocab = 200}; /* L4 NH2 C32, V200 (Vp 256) */

static void setup(void) { ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-ckpt-shards"), 0); }

static void teardown(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void assert_same_shard(parlm_gpt *a, parlm_gpt *b)
{
    int64_t n = parlm_gpt_num_params(a);
    ck_assert_int_eq(parlm_gpt_num_params(b), n);
    ck_assert_int_eq(parlm_gpt_get_step(a), parlm_gpt_get_step(b));
    ck_assert_mem_eq(parlm_gpt_params(a), parlm_gpt_params(b), (size_t)n * 4);
    ck_assert_int_eq(parlm_gpt_adam_m(a) != NULL, parlm_gpt_adam_m(b) != NULL);
    if (parlm_gpt_adam_m(a)) {
        ck_assert_mem_eq(parlm_gpt_adam_m(a), parlm_gpt_adam_m(b), (size_t)n * 4);
        ck_assert_mem_eq(parlm_gpt_adam_v(a), parlm_gpt_adam_v(b), (size_t)n * 4);
    }
}

static long file_bytes(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    ck_assert_int_eq(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return n;
}

static void assert_same_file(const char *a, const char *b)
{
    unsigned char *x, *y;
    long n = file_bytes(a, &x), m = file_bytes(b, &y);
    ck_assert_int_eq(n, m);
    ck_assert_mem_eq(x, y, (size_t)n);
    free(x);
    free(y);
}

static const parlm_train_state STATE = {.step = 0, .rng = 0x1234, .train = {1, 4242}, .B = 2,
                                        .T = 8, .grad_accum = 3, .world = 2, .seed = 7,
                                        .tokens = 96.0};

/* layouts: 3 stages (1 + 2 + 1 layers), 2 stages, the whole model as one shard */
static const parlm_gpt_shard THREE[3] = {{1, 0, 0, 1}, {1, 0, 1, 3}, {1, 0, 3, 4}};
static const parlm_gpt_shard TWO[2] = {{1, 0, 0, 2}, {1, 0, 2, 4}};
static const parlm_gpt_shard ONE[1] = {{1, 0, 0, 4}};

static void save_layout(parlm_gpt *full, const parlm_gpt_shard *lay, int n, const char *name)
{
    parlm_gpt *sh[4];
    for (int k = 0; k < n; k++)
        sh[k] = fx_cut(&CFG, full, lay[k]);
    parlm_train_state st = STATE;
    st.step = parlm_gpt_get_step(full);
    char a[128], b[128];
    path_of(a, sizeof a, "whole.bin");
    path_of(b, sizeof b, name);
    ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
    parlm_status s = parlm_checkpoint_save_shards(b, sh, n, NULL, &st);
    ck_assert_msg(s == PARLM_OK, "%s", parlm_last_error());
    assert_same_file(a, b);
    for (int k = 0; k < n; k++)
        parlm_gpt_free(sh[k]);
}

START_TEST(save_from_stages_is_the_whole_file)
{
    parlm_gpt *full = fx_trained(&CFG, 2); /* with AdamW state */
    save_layout(full, THREE, 3, "three.bin");
    save_layout(full, TWO, 2, "two.bin");
    save_layout(full, ONE, 1, "one.bin");
    /* the shards in another order assemble the same file */
    parlm_gpt_shard rev[3] = {THREE[2], THREE[0], THREE[1]};
    save_layout(full, rev, 3, "rev.bin");
    parlm_gpt_free(full);
    full = fx_trained(&CFG, 0); /* no AdamW state */
    save_layout(full, THREE, 3, "fresh.bin");
    parlm_gpt_free(full);
}
END_TEST

START_TEST(load_into_stages_is_the_slices)
{
    parlm_gpt *full = fx_trained(&CFG, 3);
    char a[128];
    path_of(a, sizeof a, "whole.bin");
    parlm_train_state st = STATE, got;
    st.step = 3;
    ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
    const parlm_gpt_shard *lays[3] = {THREE, TWO, ONE};
    const int ns[3] = {3, 2, 1};
    for (int l = 0; l < 3; l++) {
        parlm_gpt *sh[3];
        memset(&got, 0xff, sizeof got);
        parlm_status s = parlm_gpt_load_shards(a, lays[l], ns[l], sh, &got);
        ck_assert_msg(s == PARLM_OK, "%s", parlm_last_error());
        ck_assert_mem_eq(&got, &st, sizeof st);
        for (int k = 0; k < ns[l]; k++) {
            parlm_gpt *want = fx_cut(&CFG, full, lays[l][k]);
            parlm_gpt_shard g = parlm_gpt_get_shard(sh[k]);
            ck_assert(g.layer_begin == lays[l][k].layer_begin &&
                      g.layer_end == lays[l][k].layer_end);
            assert_same_shard(sh[k], want);
            parlm_gpt_free(want);
            parlm_gpt_free(sh[k]);
        }
    }
    /* no layout: the whole model, as parlm_checkpoint_load gives it */
    parlm_gpt *one, *ref;
    ck_assert_int_eq(parlm_gpt_load_shards(a, NULL, 1, &one, NULL), PARLM_OK);
    ck_assert_int_eq(parlm_checkpoint_load(a, &ref, &got), PARLM_OK);
    assert_same_shard(one, ref);
    parlm_gpt_free(one);
    parlm_gpt_free(ref);
    parlm_gpt_free(full);
}
END_TEST

START_TEST(llmc_into_stages)
{
    parlm_gpt *full = fx_trained(&CFG, 1);
    for (int version = 3; version <= 5; version += 2) {
        char a[128];
        path_of(a, sizeof a, version == 3 ? "f32.llmc" : "bf16.llmc");
        ck_assert_int_eq(parlm_gpt_save_llmc(full, a, version), PARLM_OK);
        parlm_gpt *whole; /* the whole-model loader's values (bf16 rounding included) */
        ck_assert_int_eq(parlm_gpt_load_llmc(&whole, a), PARLM_OK);
        if (version == 3)
            ck_assert_mem_eq(parlm_gpt_params(whole), parlm_gpt_params(full),
                             (size_t)parlm_gpt_num_params(full) * 4);
        parlm_gpt_config c;
        ck_assert_int_eq(parlm_model_file_config(a, &c), PARLM_OK);
        ck_assert_int_eq(c.n_layer, 4);
        ck_assert_int_eq(c.vocab, 200);
        parlm_gpt *sh[3];
        parlm_train_state got;
        ck_assert_int_eq(parlm_gpt_load_shards(a, THREE, 3, sh, &got), PARLM_OK);
        ck_assert_int_eq(got.step, 0);
        for (int k = 0; k < 3; k++) {
            parlm_gpt *want = fx_cut(&CFG, whole, THREE[k]);
            assert_same_shard(sh[k], want);
            ck_assert_ptr_null(parlm_gpt_adam_m(sh[k]));
            parlm_gpt_free(want);
            parlm_gpt_free(sh[k]);
        }
        parlm_gpt_free(whole);
    }
    parlm_gpt_free(full);
}
END_TEST

/* Tensor-parallel slices (heads in the q, k, v thirds, MLP units, vocabulary rows; replicas
 * owned by tp rank 0), alone and with pipeline stages, all held by this one process. */
static const parlm_gpt_shard TP2[2] = {{2, 0, 0, 4}, {2, 1, 0, 4}};
static const parlm_gpt_shard TP2PP2[4] = {{2, 0, 0, 2}, {2, 1, 0, 2}, {2, 0, 2, 4}, {2, 1, 2, 4}};

START_TEST(tensor_parallel_slices)
{
    parlm_gpt *full = fx_trained(&CFG, 2);
    char a[128];
    path_of(a, sizeof a, "whole.bin");
    parlm_train_state st = STATE;
    st.step = 2;
    ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
    parlm_gpt *sh[4];
    save_layout(full, TP2, 2, "tp2.bin");
    save_layout(full, TP2PP2, 4, "tp2pp2.bin");
    const parlm_gpt_shard *lays[2] = {TP2, TP2PP2};
    for (int l = 0; l < 2; l++) {
        int n = l ? 4 : 2;
        parlm_train_state got;
        ck_assert_int_eq(parlm_gpt_load_shards(a, lays[l], n, sh, &got), PARLM_OK);
        ck_assert_mem_eq(&got, &st, sizeof st);
        for (int k = 0; k < n; k++) {
            parlm_gpt *want = fx_cut(&CFG, full, lays[l][k]);
            assert_same_shard(sh[k], want);
            parlm_gpt_free(want);
            parlm_gpt_free(sh[k]);
        }
    }
    parlm_gpt_free(full);
}
END_TEST

static void refused_save(parlm_gpt **sh, int n, const parlm_train_state *st, const char *text)
{
    char b[128];
    path_of(b, sizeof b, "refused.bin");
    parlm_status s = parlm_checkpoint_save_shards(b, sh, n, NULL, st);
    ck_assert_int_eq(s, PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), text), "'%s' not in '%s'", text, parlm_last_error());
    ck_assert_int_ne(access(b, F_OK), 0); /* nothing written, no temp file */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", b, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
}

START_TEST(bad_shards_and_files)
{
    parlm_gpt *full = fx_trained(&CFG, 1);
    parlm_gpt *sh[3] = {fx_cut(&CFG, full, THREE[0]), fx_cut(&CFG, full, THREE[1]), fx_cut(&CFG, full, THREE[2])};
    parlm_train_state st = STATE;
    st.step = 1;
    parlm_gpt *gap[2] = {sh[0], sh[2]}; /* layers 1, 2 missing */
    refused_save(gap, 2, &st, "the shards own 0 of the");
    parlm_gpt *twice[4] = {sh[0], sh[1], sh[1], sh[2]};
    refused_save(twice, 4, &st, "each value must be owned exactly once");
    st.step = 2;
    refused_save(sh, 3, &st, "state step 2 differs from shard 0's 1");
    st.step = 1;

    char a[128];
    path_of(a, sizeof a, "good.bin");
    ck_assert_int_eq(parlm_checkpoint_save_shards(a, sh, 3, NULL, &st), PARLM_OK);
    parlm_gpt *out[2] = {(parlm_gpt *)1, (parlm_gpt *)1};
    parlm_gpt_shard bad[2] = {{1, 0, 0, 2}, {1, 0, 2, 5}};
    ck_assert_int_eq(parlm_gpt_load_shards(a, bad, 2, out, NULL), PARLM_EINVAL);
    ck_assert_ptr_null(out[0]);
    ck_assert_ptr_null(out[1]);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "good.bin: cannot be loaded into shard 1"));

    /* a flipped payload bit: the checksum, and no shard left */
    FILE *f = fopen(a, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 512 + 4 * 1000 + 1, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 512 + 4 * 1000 + 1, SEEK_SET);
    fputc(c ^ 4, f);
    fclose(f);
    ck_assert_int_eq(parlm_gpt_load_shards(a, TWO, 2, out, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "checksum mismatch"));
    ck_assert_ptr_null(out[0]);
    /* truncated, and not a model at all */
    ck_assert_int_eq(truncate(a, 4000), 0);
    ck_assert_int_eq(parlm_gpt_load_shards(a, TWO, 2, out, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "truncated"));
    char t[128];
    path_of(t, sizeof t, "tokens.bin");
    uint16_t toks[600] = {0};
    ck_assert_int_eq(parlm_shard_write(t, toks, 600), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_load_shards(t, TWO, 2, out, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "a token shard, not a model"));
    parlm_gpt_config cfg;
    ck_assert_int_ne(parlm_model_file_config(t, &cfg), PARLM_OK);
    for (int k = 0; k < 3; k++)
        parlm_gpt_free(sh[k]);
    parlm_gpt_free(full);
}
END_TEST

START_TEST(checkpoint_directory)
{
    char d[128], p[4096];
    path_of(d, sizeof d, "run");
    parlm_ckpt_dir *h;
    ck_assert_int_eq(parlm_ckpt_dir_open(&h, d), PARLM_OK);
    parlm_gpt *full = fx_trained(&CFG, 0);
    for (int step = 1; step <= 3; step++) {
        parlm_gpt_free(full);
        full = fx_trained(&CFG, step);
        parlm_gpt *sh[2] = {fx_cut(&CFG, full, TWO[0]), fx_cut(&CFG, full, TWO[1])};
        parlm_train_state st = STATE;
        st.step = step;
        ck_assert_int_eq(parlm_ckpt_dir_save_shards(h, sh, 2, NULL, &st, 2, p, sizeof p),
                         PARLM_OK);
        char want[4096];
        ck_assert_int_eq(parlm_ckpt_path(want, sizeof want, d, step), PARLM_OK);
        ck_assert_str_eq(p, want);
        parlm_gpt_free(sh[0]);
        parlm_gpt_free(sh[1]);
    }
    int64_t steps[8];
    int n;
    ck_assert_int_eq(parlm_ckpt_list(d, steps, 8, &n), PARLM_OK);
    ck_assert_int_eq(n, 2);
    ck_assert(steps[0] == 3 && steps[1] == 2);
    parlm_gpt *out[3];
    parlm_train_state got;
    ck_assert_int_eq(parlm_ckpt_dir_load_shards(h, 3, THREE, 3, out, &got), PARLM_OK);
    ck_assert_int_eq(got.step, 3);
    for (int k = 0; k < 3; k++) {
        parlm_gpt *want = fx_cut(&CFG, full, THREE[k]);
        assert_same_shard(out[k], want);
        parlm_gpt_free(want);
        parlm_gpt_free(out[k]);
    }
    ck_assert_int_ne(parlm_ckpt_dir_load_shards(h, 1, THREE, 3, out, &got), PARLM_OK);
    parlm_gpt_free(full);
    parlm_ckpt_dir_close(h);
}
END_TEST

int main(void)
{
    if (parlm_isa_init() != PARLM_OK)
        return 1;
    Suite *s = suite_create("ckpt_shards");
    TCase *tc = tcase_create("ckpt_shards");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, save_from_stages_is_the_whole_file);
    tcase_add_test(tc, load_into_stages_is_the_slices);
    tcase_add_test(tc, llmc_into_stages);
    tcase_add_test(tc, tensor_parallel_slices);
    tcase_add_test(tc, bad_shards_and_files);
    tcase_add_test(tc, checkpoint_directory);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
