/* tests/test_checkpoint.c — model files and training checkpoints: llm.c format round
 * trips (f32 exact, bf16 to bf16 rounding), parlm checkpoints with AdamW state, every
 * corruption rejected with the file named (any bit of the header), and the promise that
 * matters: k steps + save + load + n-k steps == n steps, bitwise. Checkpoint directories:
 * lock, stale locks and temp files, listing, rotation that keeps unreadable files; and
 * stopping forward/backward midway (parlm_gpt_set_cancel) leaves the model untouched. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"

static char dir[64];

static void setup(void) { ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-ckpt"), 0); }

static void teardown(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

static parlm_gpt *model(uint64_t seed)
{
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .max_seq = 12, .vocab = 30};
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
    ck_assert_int_eq(parlm_gpt_get_step(c), k);
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


static unsigned char *slurp(const char *p, long *n)
{
    *n = file_size(p);
    FILE *f = fopen(p, "rb");
    unsigned char *b = malloc((size_t)*n);
    ck_assert_uint_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

static void spill(const char *p, const unsigned char *b, long n)
{
    FILE *f = fopen(p, "wb");
    ck_assert_uint_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    ck_assert_int_eq(fclose(f), 0);
}

/* FNV-1a over 8-byte words, as the format describes it (written here from that description) */
static uint64_t fnv_words(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    return h;
}

/* Every single bit of the 512-byte header, and random payload bits: each flip is refused
 * with an error naming the file (the step, data position, RNG, batch geometry included). */
START_TEST(checkpoint_every_header_bit)
{
    char good[128], bad[128];
    snprintf(good, sizeof good, "%s/good.ck", dir);
    snprintf(bad, sizeof bad, "%s/bad.ck", dir);
    parlm_gpt *m = model(6), *out;
    ck_assert_int_eq(parlm_gpt_init_optimizer(m), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_step(m, 20), PARLM_OK);
    parlm_train_state st = {.step = 20, .rng = 0x1234567, .train = {1, 4096}, .B = 4, .T = 64,
                            .grad_accum = 2, .world = 1, .seed = 1337, .tokens = 20.0 * 512};
    ck_assert_int_eq(parlm_checkpoint_save(good, m, &st), PARLM_OK);
    long n;
    unsigned char *b = slurp(good, &n);
    parlm_train_state got;
    for (int bit = 0; bit < 512 * 8; bit++) {
        b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        spill(bad, b, n);
        b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        parlm_status r = parlm_checkpoint_load(bad, &out, &got);
        if (r != PARLM_EFORMAT)
            ck_abort_msg("header bit %d: loaded (status %d)", bit, r);
        ck_assert_ptr_null(out);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "bad.ck"));
    }
    uint64_t rs = 99;
    for (int i = 0; i < 64; i++) {
        long at = 512 + (long)(tu_next(&rs) % (uint64_t)(n - 512));
        int bit = (int)(tu_next(&rs) % 8);
        b[at] ^= (unsigned char)(1u << bit);
        spill(bad, b, n);
        b[at] ^= (unsigned char)(1u << bit);
        ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "checksum"));
    }
    /* the step, specifically: what used to resume at the wrong place with exit 0 */
    b[80] ^= 1; /* slot 10 = step */
    spill(bad, b, n);
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "checksum"));
    b[80] ^= 1;
    /* the parameter count and AdamW flag: the message names the field, not a size that matches */
    b[64] ^= 4; /* slot 8 = parameters */
    spill(bad, b, n);
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "corrupt header"));
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "parameters, but its model shape"));
    b[64] ^= 4;
    b[72] ^= 4; /* slot 9 = AdamW flag */
    spill(bad, b, n);
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "AdamW flag 5"));
    b[72] ^= 4;
    /* version 1 files (payload-only hash) still load, with their state */
    uint64_t h[64];
    memcpy(h, b, 512);
    h[1] = 1;
    h[20] = fnv_words(0xcbf29ce484222325ULL, b + 512, (size_t)(n - 512));
    memcpy(b, h, 512);
    spill(bad, b, n);
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_OK);
    ck_assert(memcmp(&got, &st, sizeof st) == 0);
    ck_assert(memcmp(parlm_gpt_params(out), parlm_gpt_params(m),
                     (size_t)parlm_gpt_num_params(m) * 4) == 0);
    parlm_gpt_free(out);
    /* version 2 files (GPT-2: no architecture slots, the header hashed too) still load */
    h[1] = 2;
    h[20] = 0;
    h[20] = fnv_words(fnv_words(0xcbf29ce484222325ULL, b + 512, (size_t)(n - 512)),
                      (const unsigned char *)h, 512);
    memcpy(b, h, 512);
    spill(bad, b, n);
    ck_assert_msg(parlm_checkpoint_load(bad, &out, &got) == PARLM_OK, "%s", parlm_last_error());
    ck_assert(memcmp(&got, &st, sizeof st) == 0);
    ck_assert_int_eq(parlm_gpt_get_config(out).arch, PARLM_ARCH_GPT2);
    ck_assert(memcmp(parlm_gpt_params(out), parlm_gpt_params(m),
                     (size_t)parlm_gpt_num_params(m) * 4) == 0);
    parlm_gpt_free(out);
    h[1] = 4; /* a future version is refused, naming it */
    memcpy(b, h, 512);
    spill(bad, b, n);
    ck_assert_int_eq(parlm_checkpoint_load(bad, &out, &got), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "version 4"));
    free(b);
    parlm_gpt_free(m);
}
END_TEST

/* A Llama model (version 3: the architecture slots) round-trips with every config field,
 * its parameters and AdamW state bitwise; an llm.c file, which cannot express it, refuses
 * it by name; safetensors holds it. */
START_TEST(llama_checkpoint_round_trip)
{
    char ck[128], other[128];
    snprintf(ck, sizeof ck, "%s/llama.ck", dir);
    snprintf(other, sizeof other, "%s/llama.other", dir);
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 4, .n_embd = 16, .max_seq = 12, .vocab = 30,
                            .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2, .ffn_hidden = 40,
                            .untied_head = 1, .rope_theta = 5e5f, .rope_scale = 2.0f,
                            .norm_eps = 1e-6f};
    parlm_gpt *m, *out;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 8), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_init_optimizer(m), PARLM_OK);
    int64_t P = parlm_gpt_num_params(m);
    tu_fill(parlm_gpt_adam_m(m), P, 4);
    tu_fill(parlm_gpt_adam_v(m), P, 5);
    ck_assert_int_eq(parlm_gpt_set_step(m, 7), PARLM_OK);
    parlm_train_state st = {.step = 7, .B = 1, .T = 12, .grad_accum = 1, .world = 1};
    ck_assert_int_eq(parlm_checkpoint_save(ck, m, &st), PARLM_OK);
    unsigned char head[16];
    FILE *f = fopen(ck, "rb");
    ck_assert_uint_eq(fread(head, 1, 16, f), 16);
    fclose(f);
    ck_assert_int_eq(head[8], 3); /* the version slot */
    parlm_train_state got;
    ck_assert_msg(parlm_checkpoint_load(ck, &out, &got) == PARLM_OK, "%s", parlm_last_error());
    parlm_gpt_config a = parlm_gpt_get_config(m), b = parlm_gpt_get_config(out);
    ck_assert(b.arch == PARLM_ARCH_LLAMA && b.n_kv_head == 2 && b.ffn_hidden == 40);
    ck_assert(b.untied_head == 1 && b.rope_theta == 5e5f && b.rope_scale == 2.0f);
    ck_assert(b.norm_eps == 1e-6f && memcmp(&a, &b, sizeof a) == 0);
    ck_assert_int_eq(parlm_gpt_get_step(out), 7);
    ck_assert(memcmp(parlm_gpt_params(out), parlm_gpt_params(m), (size_t)P * 4) == 0);
    ck_assert(memcmp(parlm_gpt_adam_m(out), parlm_gpt_adam_m(m), (size_t)P * 4) == 0);
    ck_assert(memcmp(parlm_gpt_adam_v(out), parlm_gpt_adam_v(m), (size_t)P * 4) == 0);
    parlm_gpt_free(out);
    ck_assert_int_eq(parlm_gpt_save_llmc(m, other, 3), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "Llama"));
    ck_assert_int_eq(access(other, F_OK), -1);
    /* safetensors (HF's LlamaForCausalLM) holds it: the same config and weights back */
    ck_assert_msg(parlm_gpt_save_safetensors(m, other, PARLM_WT_F32) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_msg(parlm_gpt_load_safetensors(&out, other) == PARLM_OK, "%s", parlm_last_error());
    b = parlm_gpt_get_config(out);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    ck_assert(memcmp(parlm_gpt_params(out), parlm_gpt_params(m), (size_t)P * 4) == 0);
    parlm_gpt_free(out);
    parlm_gpt_free(m);
}
END_TEST

/* parlm_gpt_load reports the error of the format the file claims to be */
START_TEST(load_by_magic)
{
    char ck[128], lm[128], sh[128], junk[128];
    snprintf(ck, sizeof ck, "%s/a.ck", dir);
    snprintf(lm, sizeof lm, "%s/m.bin", dir);
    snprintf(sh, sizeof sh, "%s/s.bin", dir);
    snprintf(junk, sizeof junk, "%s/junk.bin", dir);
    parlm_gpt *m = model(7), *out;
    parlm_train_state st = {.step = 0, .B = 2, .T = 8, .grad_accum = 1, .world = 1}, got;
    ck_assert_int_eq(parlm_checkpoint_save(ck, m, &st), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_llmc(m, lm, 3), PARLM_OK);
    uint16_t toks[100] = {0};
    ck_assert_int_eq(parlm_shard_write(sh, toks, 100), PARLM_OK);
    parlm_model_kind k;
    ck_assert_int_eq(parlm_model_file_kind(ck, &k), PARLM_OK);
    ck_assert_int_eq(k, PARLM_MODEL_CHECKPOINT);
    ck_assert_int_eq(parlm_model_file_kind(lm, &k), PARLM_OK);
    ck_assert_int_eq(k, PARLM_MODEL_LLMC);
    ck_assert_int_eq(parlm_gpt_load(&out, ck, &got), PARLM_OK);
    ck_assert_int_eq(got.B, 2);
    parlm_gpt_free(out);
    ck_assert_int_eq(parlm_gpt_load(&out, lm, &got), PARLM_OK);
    ck_assert_int_eq(got.B, 0);
    parlm_gpt_free(out);
    /* an llm.c file with a bad version: llm.c's error, not the checkpoint loader's magic */
    long n;
    unsigned char *b = slurp(lm, &n);
    b[4] = 9;
    spill(lm, b, n);
    ck_assert_int_eq(parlm_gpt_load(&out, lm, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "llm.c"));
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "version 9"));
    memset(b, 'x', 16);
    spill(junk, b, n);
    ck_assert_int_eq(parlm_gpt_load(&out, junk, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "unknown magic"));
    ck_assert_int_eq(parlm_gpt_load(&out, sh, NULL), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "token shard"));
    ck_assert_int_eq(parlm_gpt_load(&out, "/nonexistent.bin", NULL), PARLM_EIO);
    free(b);
    parlm_gpt_free(m);
}
END_TEST

static void touch(const char *d, const char *name, const char *content)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", d, name);
    spill(p, (const unsigned char *)content, (long)strlen(content));
}

static int exists(const char *d, const char *name)
{
    char p[256];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", d, name);
    return stat(p, &sb) == 0;
}

START_TEST(dir_create_lock_and_clean)
{
    char run[128], me[64], file[128];
    snprintf(run, sizeof run, "%s/runs/a/b", dir);
    parlm_ckpt_dir *d, *d2;
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, run), PARLM_OK); /* parents created */
    ck_assert(exists(run, "lock"));
    parlm_ckpt_dir_info info = parlm_ckpt_dir_get_info(d);
    ck_assert_str_eq(info.stale_holder, "");
    ck_assert_str_eq(info.no_lock, "");
    /* a second writer stops at once, naming the holder */
    ck_assert_int_eq(parlm_ckpt_dir_open(&d2, run), PARLM_EBUSY);
    ck_assert_ptr_null(d2);
    snprintf(me, sizeof me, "pid %ld@", (long)getpid());
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), me));
    parlm_ckpt_dir_close(d);
    /* released cleanly: the next holder finds no stale one */
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, run), PARLM_OK);
    ck_assert_str_eq(parlm_ckpt_dir_get_info(d).stale_holder, "");
    parlm_ckpt_dir_close(d);
    /* a holder killed while holding it: its lock is gone with it, and named as stale */
    pid_t child = fork();
    if (child == 0) {
        parlm_ckpt_dir *c;
        _exit(parlm_ckpt_dir_open(&c, run) == PARLM_OK ? 0 : 1); /* never closed */
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* temp files of a dead writer go; final names and files moved aside stay */
    touch(run, "ckpt_00000005.bin.tmp.99999", "partial");
    touch(run, "ckpt_00000004.bin", "final");
    touch(run, "ckpt_00000003.bin.unreadable", "kept");
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, run), PARLM_OK);
    info = parlm_ckpt_dir_get_info(d);
    snprintf(me, sizeof me, "%ld@", (long)child);
    ck_assert_ptr_nonnull(strstr(info.stale_holder, me));
    ck_assert_int_eq(info.removed_tmp, 1);
    ck_assert(!exists(run, "ckpt_00000005.bin.tmp.99999"));
    ck_assert(exists(run, "ckpt_00000004.bin") && exists(run, "ckpt_00000003.bin.unreadable"));
    parlm_ckpt_dir_close(d);
    /* a path that is a file, or under one, fails at open */
    snprintf(file, sizeof file, "%s/plain", dir);
    touch(dir, "plain", "x");
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, file), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "not a directory"));
    snprintf(file, sizeof file, "%s/plain/sub", dir);
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, file), PARLM_EIO);
    /* read-only (root writes anyway, so only as a user) */
    if (geteuid() != 0) {
        snprintf(file, sizeof file, "%s/ro", dir);
        ck_assert_int_eq(mkdir(file, 0555), 0);
        ck_assert_int_eq(parlm_ckpt_dir_open(&d, file), PARLM_EIO);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "lock"));
        chmod(file, 0755);
    }
}
END_TEST

START_TEST(dir_list_and_rotate)
{
    char run[128], path[256];
    snprintf(run, sizeof run, "%s/run", dir);
    ck_assert_int_eq(mkdir(run, 0777), 0);
    /* only final names count */
    touch(run, "ckpt_00000003.bin", "x");
    touch(run, "ckpt_00000012.bin", "x");
    touch(run, "ckpt_12.bin", "x"); /* not the name of step 12: a stranger */
    touch(run, "ckpt_00000007.bin.tmp.1", "x");
    touch(run, "ckpt_00000009.bin.unreadable", "x");
    touch(run, "ckpt_x.bin", "x");
    touch(run, "ckpt_.bin", "x");
    touch(run, "ckpt_00000011.binx", "x");
    int64_t steps[8];
    int n;
    ck_assert_int_eq(parlm_ckpt_list(run, steps, 8, &n), PARLM_OK);
    ck_assert_int_eq(n, 2);
    ck_assert(steps[0] == 12 && steps[1] == 3);
    ck_assert_int_eq(parlm_ckpt_list(run, steps, 1, &n), PARLM_OK);
    ck_assert(n == 1 && steps[0] == 12);
    snprintf(path, sizeof path, "%s/none", dir);
    ck_assert_int_eq(parlm_ckpt_list(path, steps, 8, &n), PARLM_OK);
    ck_assert_int_eq(n, 0);
    /* rotation: files that failed to load are never deleted (nor overwritten) */
    parlm_ckpt_dir *d;
    ck_assert_int_eq(parlm_ckpt_dir_open(&d, run), PARLM_OK);
    parlm_gpt *m = model(8), *out;
    parlm_train_state st = {.B = 1, .T = 1, .grad_accum = 1, .world = 1}, got;
    ck_assert_int_eq(parlm_ckpt_dir_load(d, 12, &out, &st), PARLM_EFORMAT); /* "x": corrupt */
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "ckpt_00000012.bin"));
    for (int64_t s = 1; s <= 13; s += 3) { /* 1 4 7 10 13 */
        ck_assert_int_eq(parlm_gpt_set_step(m, s), PARLM_OK);
        st.step = s;
        ck_assert_int_eq(parlm_ckpt_dir_save(d, m, &st, 2, path, sizeof path), PARLM_OK);
        ck_assert_ptr_nonnull(strstr(path, "run/ckpt_000000"));
    }
    ck_assert_int_eq(parlm_ckpt_list(run, steps, 8, &n), PARLM_OK);
    ck_assert_int_eq(n, 3); /* 13, 10 and the unreadable 12 */
    ck_assert(steps[0] == 13 && steps[1] == 12 && steps[2] == 10);
    /* a save onto the unreadable file's name moves it aside first */
    st.step = 12;
    ck_assert_int_eq(parlm_gpt_set_step(m, 12), PARLM_OK);
    ck_assert_int_eq(parlm_ckpt_dir_save(d, m, &st, 2, path, sizeof path), PARLM_OK);
    ck_assert(exists(run, "ckpt_00000012.bin.unreadable"));
    ck_assert_int_eq(parlm_checkpoint_load(path, &out, &got), PARLM_OK);
    parlm_gpt_free(out);
    ck_assert(exists(run, "ckpt_00000013.bin")); /* newer than the save: untouched */
    int removed;
    ck_assert_int_eq(parlm_ckpt_dir_remove_all(d, &removed), PARLM_OK);
    ck_assert_int_eq(removed, 3); /* 13 12 10 */
    ck_assert_int_eq(parlm_ckpt_list(run, steps, 8, &n), PARLM_OK);
    ck_assert_int_eq(n, 0);
    parlm_ckpt_dir_close(d);
    parlm_gpt_free(m);
}
END_TEST

static int cancel_after(void *arg)
{
    int *left = arg;
    return (*left)-- <= 0;
}

/* A canceled forward or backward returns PARLM_ECANCELED with parameters and optimizer state
 * untouched, and the model trains normally afterwards. */
START_TEST(cancel_midway)
{
    parlm_gpt *m = model(9);
    int64_t P = parlm_gpt_num_params(m);
    ck_assert_int_eq(parlm_gpt_setup(m, 2, 12, 1), PARLM_OK);
    int32_t x[24], y[24];
    for (int i = 0; i < 24; i++)
        x[i] = i % 30, y[i] = (i * 7) % 30;
    float *before = malloc((size_t)P * 4), loss;
    memcpy(before, parlm_gpt_params(m), (size_t)P * 4);
    int left = 1; /* past the first check, then stop: inside the layers */
    ck_assert_int_eq(parlm_gpt_set_cancel(m, cancel_after, &left), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_ECANCELED);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_EINVAL); /* no complete forward */
    left = 100;
    ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
    left = 2;
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_ECANCELED);
    ck_assert(memcmp(before, parlm_gpt_params(m), (size_t)P * 4) == 0);
    ck_assert_int_eq(parlm_gpt_set_cancel(m, NULL, NULL), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
    free(before);
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
    tcase_add_test(tc, checkpoint_every_header_bit);
    tcase_add_test(tc, llama_checkpoint_round_trip);
    tcase_add_test(tc, load_by_magic);
    tcase_add_test(tc, cancel_midway);
    suite_add_tcase(s, tc);
    tc = tcase_create("directory");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, dir_create_lock_and_clean);
    tcase_add_test(tc, dir_list_and_rotate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
