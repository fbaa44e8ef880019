/* tests/test_checkpoint.c — model files and training checkpoints: llm.c format round
 * trips (f32 exact, bf16 to bf16 rounding), parlm checkpoints with AdamW state, every
 * corruption rejected with the file named, and the promise that matters: k steps + save
 * + load + n-k steps == n steps, bitwise. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "testutil.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/parlm-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static parlm_gpt *model(uint64_t seed)
{
    parlm_gpt_config cfg = {2, 2, 16, 12, 30, 0};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, seed), PARLM_OK);
    return m;
}

static long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void truncate_copy(const char *src, const char *dst, long n, long flip)
{
    FILE *f = fopen(src, "rb");
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (flip >= 0)
        buf[flip] ^= 0x40;
    f = fopen(dst, "wb");
    ck_assert_uint_eq(fwrite(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(buf);
}

START_TEST(llmc_round_trip)
{
    char p3[128], p5[128];
    snprintf(p3, sizeof p3, "%s/m3.bin", dir);
    snprintf(p5, sizeof p5, "%s/m5.bin", dir);
    parlm_gpt *m = model(1), *a, *b;
    int64_t P = parlm_gpt_num_params(m);
    ck_assert_int_eq(parlm_gpt_save_llmc(m, p3, 3), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_llmc(m, p5, 5), PARLM_OK);
    ck_assert_int_eq(file_size(p3), 1024 + 4 * P);
    ck_assert_int_eq(file_size(p5), 1024 + 2 * P);
    ck_assert_int_eq(parlm_gpt_load_llmc(&a, p3), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_load_llmc(&b, p5), PARLM_OK);
    parlm_gpt_config ca = parlm_gpt_get_config(a), cm = parlm_gpt_get_config(m);
    ck_assert(memcmp(&ca, &cm, sizeof ca) == 0);
    ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(m), (size_t)P * 4) == 0);
    /* bf16: each weight is the round-to-nearest-even bf16 of the original */
    const float *pm = parlm_gpt_params(m), *pb = parlm_gpt_params(b);
    for (int64_t i = 0; i < P; i++) {
        uint16_t h;
        float back;
        parlm_f32_to_bf16(&pm[i], &h, 1);
        parlm_bf16_to_f32(&h, &back, 1);
        ck_assert(back == pb[i]);
    }
    /* the file groups tensors by kind: the 2nd layer's ln1w (all ones) follows the first's */
    FILE *f = fopen(p3, "rb");
    float v[2];
    parlm_gpt_config c = cm;
    fseek(f, 1024 + 4L * ((long)c.vocab_pad * c.n_embd + (long)c.max_seq * c.n_embd +
                          c.n_embd), SEEK_SET);
    ck_assert_uint_eq(fread(v, 4, 2, f), 2);
    fclose(f);
    ck_assert(v[0] == 1.0f && v[1] == 1.0f);
    ck_assert_int_eq(parlm_gpt_save_llmc(m, p3, 4), PARLM_EINVAL);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
    parlm_gpt_free(m);
}
END_TEST

START_TEST(llmc_corruption)
{
    char good[128], bad[128];
    snprintf(good, sizeof good, "%s/good.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    parlm_gpt *m = model(2), *out;
    ck_assert_int_eq(parlm_gpt_save_llmc(m, good, 3), PARLM_OK);
    long n = file_size(good);
    for (long cut = 0; cut < n; cut += n / 13 + 1) {
        truncate_copy(good, bad, cut, -1);
        ck_assert_int_eq(parlm_gpt_load_llmc(&out, bad), PARLM_EFORMAT);
        ck_assert_ptr_null(out);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "bad.bin"));
    }
    truncate_copy(good, bad, n, 0); /* magic */
    ck_assert_int_eq(parlm_gpt_load_llmc(&out, bad), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "magic"));
    truncate_copy(good, bad, n, 4 * 6 + 1); /* C in the header: shape no longer fits the size */
    ck_assert_int_ne(parlm_gpt_load_llmc(&out, bad), PARLM_OK);
    truncate_copy(good, bad, n, 4 * 5); /* NH = 66: C % NH != 0 */
    ck_assert_int_ne(parlm_gpt_load_llmc(&out, bad), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_load_llmc(&out, "/nonexistent.bin"), PARLM_EIO);
    parlm_gpt_free(m);
}
END_TEST

static void step(parlm_gpt *m, parlm_loader *l, int32_t *x, int32_t *y)
{
    parlm_adamw_cfg opt = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    float loss, norm;
    ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_grad_norm(m, &norm), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_update(m, &opt, norm > 1 ? 1 / norm : 1), PARLM_OK);
}

START_TEST(resume_is_bitwise_exact)
{
    char shard[128], ck[128];
    snprintf(shard, sizeof shard, "%s/tokens.bin", dir);
    snprintf(ck, sizeof ck, "%s/ck.bin", dir);
    uint16_t toks[2000];
    uint64_t s = 5;
    for (int i = 0; i < 2000; i++)
        toks[i] = (uint16_t)(tu_next(&s) % 30);
    ck_assert_int_eq(parlm_shard_write(shard, toks, 2000), PARLM_OK);
    const int B = 2, T = 12, n = 9, k = 4;
    int32_t x[24], y[24];
    /* straight through */
    parlm_gpt *a = model(3);
    parlm_loader *la;
    ck_assert_int_eq(parlm_loader_open(&la, shard, B, T, 0, 1, 30), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(a, B, T, 1), PARLM_OK);
    for (int i = 0; i < n; i++)
        step(a, la, x, y);
    /* k steps, save, drop everything, load, n-k steps */
    parlm_gpt *b = model(3), *c;
    parlm_loader *lb;
    ck_assert_int_eq(parlm_loader_open(&lb, shard, B, T, 0, 1, 30), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(b, B, T, 1), PARLM_OK);
    for (int i = 0; i < k; i++)
        step(b, lb, x, y);
    parlm_train_state st = {.step = k, .rng = 77, .train = parlm_loader_tell(lb), .B = B, .T = T,
                            .grad_accum = 1, .world = 1, .seed = 3, .tokens = k * B * T};
    ck_assert_int_eq(parlm_checkpoint_save(ck, b, &st), PARLM_OK);
    parlm_gpt_free(b);
    parlm_loader_free(lb);
    parlm_train_state st2;
    ck_assert_int_eq(parlm_checkpoint_load(ck, &c, &st2), PARLM_OK);
    ck_assert(memcmp(&st, &st2, sizeof st) == 0);
    ck_assert_int_eq(parlm_gpt_step(c), k);
    ck_assert_int_eq(parlm_loader_open(&lb, shard, B, T, 0, 1, 30), PARLM_OK);
    ck_assert_int_eq(parlm_loader_seek(lb, st2.train), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(c, B, T, 1), PARLM_OK);
    for (int i = k; i < n; i++)
        step(c, lb, x, y);
    int64_t P = parlm_gpt_num_params(a);
    ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(c), (size_t)P * 4) == 0);
    ck_assert(memcmp(parlm_gpt_adam_m(a), parlm_gpt_adam_m(c), (size_t)P * 4) == 0);
    ck_assert(memcmp(parlm_gpt_adam_v(a), parlm_gpt_adam_v(c), (size_t)P * 4) == 0);
    parlm_gpt_free(a);
    parlm_gpt_free(c);
    parlm_loader_free(la);
    parlm_loader_free(lb);
}
END_TEST

START_TEST(checkpoint_corruption)
{
    char good[128], bad[128];
    snprintf(good, sizeof good, "%s/good.ck", dir);
    snprintf(bad, sizeof bad, "%s/bad.ck", dir);
    parlm_gpt *m = model(4), *out;
    ck_assert_int_eq(parlm_gpt_init_optimizer(m), PARLM_OK);
    parlm_train_state st = {.B = 1, .T = 1, .grad_accum = 1, .world = 1};
    ck_assert_int_eq(parlm_checkpoint_save(good, m, &st), PARLM_OK);
    long n = file_size(good);
    ck_assert_int_eq(n, 512 + 3 * 4 * parlm_gpt_num_params(m));
    parlm_train_state got;
    for (long cut = 0; cut < n; cut += n / 17 + 1) {
        truncate_copy(good, bad, cut, -1);
        ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "bad.ck"));
    }
    truncate_copy(good, bad, n, n - 3); /* one bit in the AdamW state */
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "checksum"));
    truncate_copy(good, bad, n, 8); /* version */
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "version"));
    /* a step that disagrees with the model's is refused */
    st.step = 5;
    ck_assert_int_eq(parlm_checkpoint_save(good, m, &st), PARLM_EINVAL);
    /* and the earlier good file is still there, intact */
    ck_assert_int_eq(parlm_checkpoint_load(good, &out, &got), PARLM_OK);
    parlm_gpt_free(out);
    parlm_gpt_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("llmc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, llmc_round_trip);
    tcase_add_test(tc, llmc_corruption);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, resume_is_bitwise_exact);
    tcase_add_test(tc, checkpoint_corruption);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
