/* tests/model/test_trainer.c — the trainer API (parlm/trainer.h) on one process: its steps
 * are bitwise the steps a program takes by hand with parlm_gpt_* calls (schedule,
 * accumulation, clipping, AdamW written out here again), the cancel flag stops a step and
 * the last whole step is what gets checkpointed, a stopped run resumes bitwise, and a bad
 * configuration is an error with a message before anything is allocated. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../testutil.h"

#define NB 2
#define NT 16
#define ACCUM 2
#define VOCAB 256

static char dir[256], data[300];

/* random tokens, with some structure so the loss moves */
static void make_data(void)
{
    ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-test-trainer"), 0);
    snprintf(data, sizeof data, "%s/train.bin", dir);
    enum { N = 20000 };
    uint16_t *tok = malloc(N * sizeof *tok);
    uint64_t s = 7;
    for (int i = 0; i < N; i++)
        tok[i] = (uint16_t)(i % 3 ? (uint64_t)(tok[i - 1] * 5 + 1) % VOCAB : tu_next(&s) % VOCAB);
    ck_assert_int_eq(parlm_shard_write(data, tok, N), PARLM_OK);
    free(tok);
}

static void remove_data(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

static char said[8][600];
static int nsaid;
static void on_message(void *arg, parlm_trainer_msg kind, const char *text)
{
    (void)arg, (void)kind;
    if (nsaid < 8)
        snprintf(said[nsaid++], sizeof said[0], "%s", text);
}

static parlm_trainer_config config(void)
{
    parlm_trainer_config c;
    parlm_trainer_config_default(&c);
    c.model = "tiny", c.vocab = VOCAB, c.data = data, c.B = NB, c.T = NT, c.grad_accum = ACCUM;
    c.steps = 5, c.warmup = 2, c.lr = 3e-3, c.lr_min_frac = 0.1, c.weight_decay = 0.1;
    c.grad_clip = 0.5, c.seed = 42;
    c.val_every = 0, c.sample_every = 0, c.ckpt_every = 0;
    c.on_message = on_message;
    nsaid = 0;
    return c;
}

/* warmup then cosine to lr * min_frac over the rest of the steps: written out again */
static float lr_of(int64_t step)
{
    const double lr = 3e-3, lo = 3e-4;
    if (step < 2)
        return (float)(lr * (step + 1) / 2);
    return (float)(lo + (lr - lo) * 0.5 * (1 + cos(M_PI * (double)(step - 2) / 3)));
}

START_TEST(steps_equal_by_hand)
{
    make_data();
    parlm_trainer_config c = config();
    parlm_trainer *t;
    ck_assert_int_eq(parlm_trainer_create(&t, &c), PARLM_OK);
    double losses[5];
    float norms[5];
    for (int i = 0; i < 5; i++) {
        ck_assert(!parlm_trainer_done(t));
        parlm_trainer_report r;
        ck_assert_int_eq(parlm_trainer_step(t, &r), PARLM_OK);
        ck_assert_int_eq(r.step, i + 1);
        ck_assert_int_eq(r.tokens, NB * NT * ACCUM);
        ck_assert(isnan(r.val_loss) && !r.sample);
        ck_assert_float_eq(r.lr, lr_of(i));
        losses[i] = r.loss, norms[i] = r.grad_norm;
    }
    ck_assert(parlm_trainer_done(t) && !parlm_trainer_canceled(t));

    /* the same by hand */
    parlm_gpt_config cfg = {.max_seq = NT, .vocab = VOCAB};
    parlm_gpt *m;
    parlm_loader *l;
    ck_assert_int_eq(parlm_gpt_preset("tiny", &cfg), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 42), PARLM_OK);
    ck_assert_int_eq(parlm_loader_open(&l, data, NB, NT, 0, 1, VOCAB), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, NB, NT, 1), PARLM_OK);
    int32_t x[NB * NT], y[NB * NT];
    for (int i = 0; i < 5; i++) {
        double loss = 0;
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        for (int k = 0; k < ACCUM; k++) {
            float lk;
            ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_forward(m, x, y, &lk), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_backward(m, 1.0f / ACCUM), PARLM_OK);
            loss += lk / ACCUM;
        }
        float norm;
        parlm_adamw_cfg opt = {lr_of(i), 0.9f, 0.95f, 1e-8f, 0.1f};
        ck_assert_int_eq(parlm_gpt_optimizer_step(m, &opt, 0.5f, &norm), PARLM_OK);
        ck_assert(loss == losses[i]);
        ck_assert(norm == norms[i]);
    }
    parlm_gpt *tm = parlm_trainer_model(t);
    int64_t P = parlm_gpt_num_params(m);
    ck_assert_int_eq(parlm_gpt_num_params(tm), P);
    ck_assert_mem_eq(parlm_gpt_params(tm), parlm_gpt_params(m), (size_t)P * sizeof(float));
    ck_assert_mem_eq(parlm_gpt_adam_m(tm), parlm_gpt_adam_m(m), (size_t)P * sizeof(float));
    ck_assert_mem_eq(parlm_gpt_adam_v(tm), parlm_gpt_adam_v(m), (size_t)P * sizeof(float));
    parlm_train_state ts = parlm_trainer_state(t);
    ck_assert_int_eq(ts.step, 5);
    ck_assert(ts.train.shard == parlm_loader_tell(l).shard &&
              ts.train.position == parlm_loader_tell(l).position);
    /* past the end: an error, not a sixth step */
    parlm_trainer_report r;
    ck_assert_int_eq(parlm_trainer_step(t, &r), PARLM_EINVAL);
    parlm_loader_free(l);
    parlm_gpt_free(m);
    parlm_trainer_free(t);
    remove_data();
}
END_TEST

static volatile sig_atomic_t stop_flag;

/* The flag set during a step stops it midway: the model stays that of the last whole step,
 * and that is what finish checkpoints; a second trainer resumes it and ends bitwise where
 * an uninterrupted run ends. */
START_TEST(cancel_and_resume)
{
    make_data();
    char ckdir[300], path[400];
    snprintf(ckdir, sizeof ckdir, "%s/ck", dir);
    parlm_trainer_config c = config();
    c.ckpt_dir = ckdir, c.ckpt_every = 0, c.cancel = &stop_flag;
    stop_flag = 0;
    parlm_trainer *t;
    parlm_trainer_report r;
    ck_assert_int_eq(parlm_trainer_create(&t, &c), PARLM_OK);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(parlm_trainer_step(t, &r), PARLM_OK);
    int64_t P = parlm_gpt_num_params(parlm_trainer_model(t));
    float *after2 = malloc((size_t)P * sizeof *after2);
    memcpy(after2, parlm_gpt_params(parlm_trainer_model(t)), (size_t)P * sizeof *after2);
    stop_flag = 1;
    ck_assert_int_eq(parlm_trainer_step(t, &r), PARLM_ECANCELED);
    ck_assert(parlm_trainer_done(t) && parlm_trainer_canceled(t));
    ck_assert_int_eq(parlm_trainer_state(t).step, 2);
    ck_assert_mem_eq(parlm_gpt_params(parlm_trainer_model(t)), after2, (size_t)P * sizeof(float));
    ck_assert_int_eq(parlm_trainer_finish(t), PARLM_OK);
    ck_assert_int_eq(parlm_ckpt_path(path, sizeof path, ckdir, 2), PARLM_OK);
    char line[500];
    snprintf(line, sizeof line, "checkpoint: %s", path);
    ck_assert_str_eq(said[nsaid - 1], line);
    parlm_trainer_free(t);
    stop_flag = 0;
    parlm_gpt *m;
    parlm_train_state ts;
    ck_assert_int_eq(parlm_checkpoint_load(path, &m, &ts), PARLM_OK);
    ck_assert_int_eq(ts.step, 2);
    ck_assert_mem_eq(parlm_gpt_params(m), after2, (size_t)P * sizeof(float));
    parlm_gpt_free(m);

    /* resumed: 3 more steps equal 5 uninterrupted ones */
    c.resume = 1, c.cancel = NULL;
    ck_assert_int_eq(parlm_trainer_create(&t, &c), PARLM_OK);
    ck_assert_int_eq(parlm_trainer_state(t).step, 2);
    while (!parlm_trainer_done(t))
        ck_assert_int_eq(parlm_trainer_step(t, &r), PARLM_OK);
    parlm_trainer_config c2 = config();
    parlm_trainer *u;
    ck_assert_int_eq(parlm_trainer_create(&u, &c2), PARLM_OK);
    while (!parlm_trainer_done(u))
        ck_assert_int_eq(parlm_trainer_step(u, &r), PARLM_OK);
    ck_assert_mem_eq(parlm_gpt_params(parlm_trainer_model(t)),
                     parlm_gpt_params(parlm_trainer_model(u)), (size_t)P * sizeof(float));
    parlm_trainer_free(u);
    parlm_trainer_free(t);
    free(after2);
    remove_data();
}
END_TEST

/* A configuration that cannot work: an error with a message, and no trainer. */
static void refused(parlm_trainer_config *c, parlm_status want, const char *text)
{
    parlm_trainer *t = (parlm_trainer *)1;
    nsaid = 0;
    parlm_status st = parlm_trainer_create(&t, c);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", text, st, want, parlm_last_error());
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(parlm_last_error(), text), "'%s' not in '%s'", text, parlm_last_error());
    ck_assert_int_eq(nsaid, 1); /* the callback heard it too */
    ck_assert_str_eq(said[0], parlm_last_error());
}

START_TEST(bad_config)
{
    make_data();
    parlm_trainer_config c = config();
    c.B = 0;
    refused(&c, PARLM_EINVAL, "-b and -t must be >= 1");
    c = config(), c.beta2 = 1;
    refused(&c, PARLM_EINVAL, "--beta1 and --beta2 must be below 1");
    c = config(), c.resume = 1;
    refused(&c, PARLM_EINVAL, "--resume needs --ckpt-dir");
    c = config(), c.dp = "ring";
    refused(&c, PARLM_EINVAL, "--dp must be one of");
    c = config(), c.tp = 2;
    refused(&c, PARLM_EUNSUPPORTED, "--tp 2 --pp 1: tensor and pipeline parallelism");
    c = config(), c.pp = 3;
    refused(&c, PARLM_EUNSUPPORTED, "--tp 1 --pp 3");
    c = config(), c.schedule = "zigzag";
    refused(&c, PARLM_EINVAL, "--schedule must be gpipe or 1f1b");
    c = config(), c.model = "d13";
    refused(&c, PARLM_EINVAL, "d13");
    char none[400];
    snprintf(none, sizeof none, "%s/none_*.bin", dir);
    c = config(), c.data = none;
    refused(&c, PARLM_EIO, "none_*.bin");
    c = config(), c.T = 4096, c.model = "tiny", c.init = data; /* a token shard is no model */
    refused(&c, PARLM_EIO, "--init");
    remove_data();
}
END_TEST

int main(void)
{
    if (parlm_isa_init() != PARLM_OK)
        return 1;
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, steps_equal_by_hand);
    tcase_add_test(tc, cancel_and_resume);
    tcase_add_test(tc, bad_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
