/* tests/llmc_update.c — helper of tests/train_llmc.sh: checks that parlm-train's steps
 * follow llm.c's AdamW (train_gpt2.c's gpt2_update): m, v with bias correction
 * 1 - beta^t, decoupled weight decay on every parameter, no clipping, fixed lr.
 *   llmc_update prepare DIR          writes DIR/model.bin (llm.c v3) and DIR/train.bin
 *   llmc_update check DIR N LR B1 B2 EPS WD LOG
 * check: for each step k = 1..N, from parlm's own state after step k-1 (DIR/init.bin
 * or DIR/step_<k-1>.bin) it computes the gradient with parlm's forward/backward on step
 * k's batch, applies the update rule in double, and compares with DIR/step_<k>.bin
 * (parameters and moments) and the loss parlm-train logged (LOG, csv). Starting every step
 * from parlm's state keeps the comparison to one step's rounding, so it stays tight. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"

enum { B = 2, T = 16, V = 256 }; /* V: parlm-train's byte tokenizer */

static int fail(const char *what)
{
    fprintf(stderr, "llmc_update: %s: %s\n", what, parlm_last_error());
    return 1;
}

static int prepare(const char *dir)
{
    char path[4096];
    /* the shape of --model tiny */
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 64,
                            .max_seq = 32, .vocab = V, .vocab_pad = 320};
    parlm_gpt *m;
    if (parlm_gpt_create(&m, &cfg, 7) != PARLM_OK)
        return fail("create");
    snprintf(path, sizeof path, "%s/model.bin", dir);
    if (parlm_gpt_save_llmc(m, path, 3) != PARLM_OK)
        return fail(path);
    parlm_gpt_free(m);
    enum { NTOK = 4096 };
    uint16_t tok[NTOK];
    uint64_t s = 12345;
    for (int i = 0; i < NTOK; i++) { /* a few repeating patterns: learnable, not trivial */
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (uint16_t)((i % 7 == 0 ? (s >> 33) : (uint64_t)i * 5) % V);
    }
    snprintf(path, sizeof path, "%s/train.bin", dir);
    if (parlm_shard_write(path, tok, NTOK) != PARLM_OK)
        return fail(path);
    return 0;
}

/* the loss parlm-train logged for step k (csv: step,loss,...), NAN if absent */
static double logged_loss(const char *log, int k)
{
    FILE *f = fopen(log, "r");
    char line[512];
    double loss = NAN;
    while (f && fgets(line, sizeof line, f)) {
        int step;
        double l;
        if (sscanf(line, "%d,%lf", &step, &l) == 2 && step == k)
            loss = l;
    }
    if (f)
        fclose(f);
    return loss;
}

static int check(const char *dir, int n, double lr, float b1, float b2, float eps, double wd,
                 const char *log)
{
    char path[4096];
    int bad = 0;
    for (int k = 1; k <= n; k++) {
        parlm_gpt *a = NULL, *b = NULL;
        parlm_train_state sa = {0}, sb = {0};
        parlm_loader *ld = NULL;
        int32_t x[B * T], y[B * T];
        float loss;
        if (k == 1)
            snprintf(path, sizeof path, "%s/model.bin", dir);
        else
            snprintf(path, sizeof path, "%s/step_%d.bin", dir, k - 1);
        if ((k == 1 ? parlm_gpt_load_llmc(&a, path) : parlm_checkpoint_load(path, &a, &sa)) !=
            PARLM_OK)
            return fail(path);
        snprintf(path, sizeof path, "%s/step_%d.bin", dir, k);
        if (parlm_checkpoint_load(path, &b, &sb) != PARLM_OK)
            return fail(path);
        snprintf(path, sizeof path, "%s/train.bin", dir);
        if (parlm_loader_open(&ld, path, B, T, 0, 1, V) != PARLM_OK ||
            (k > 1 && parlm_loader_seek(ld, sa.train) != PARLM_OK) ||
            parlm_loader_next(ld, x, y) != PARLM_OK || parlm_gpt_setup(a, B, T, 1) != PARLM_OK ||
            parlm_gpt_zero_grad(a) != PARLM_OK || parlm_gpt_forward(a, x, y, &loss) != PARLM_OK ||
            parlm_gpt_backward(a, 1.0f) != PARLM_OK)
            return fail("gradient");
        parlm_loader_free(ld);
        /* the same code on the same parameters and batch: the logged loss, up to %.6f */
        double ll = logged_loss(log, k);
        if (!(fabs(ll - loss) <= 1e-6 * (1 + fabs(loss)))) {
            fprintf(stderr, "step %d: parlm-train logged loss %.6f, the batch gives %.6f\n", k,
                    ll, loss);
            bad++;
        }
        int64_t P = parlm_gpt_num_params(a);
        const float *p = parlm_gpt_params(a), *g = parlm_gpt_grads(a);
        const float *m0 = k > 1 ? parlm_gpt_adam_m(a) : NULL, *v0 = k > 1 ? parlm_gpt_adam_v(a) : NULL;
        const float *p1 = parlm_gpt_params(b), *m1 = parlm_gpt_adam_m(b), *v1 = parlm_gpt_adam_v(b);
        /* llm.c computes the bias corrections in float (1.0f - powf(beta, t)); so does
         * parlm. In double they differ by up to an ulp of beta^t, i.e. relative
         * 2^-24 / (1 - beta2^t) ~ 6e-5 at t = 1 with beta2 = 0.999: hence the update's
         * tolerance of 2e-4 relative. Moments: a few float roundings, 4 * FLT_EPSILON. */
        double bc1 = 1.0 - pow(b1, k), bc2 = 1.0 - pow(b2, k);
        int64_t worst = -1;
        double worst_err = 0;
        for (int64_t i = 0; i < P; i++) {
            double mi = (m0 ? m0[i] : 0.0), vi = (v0 ? v0[i] : 0.0), gi = g[i];
            double mn = b1 * mi + (1.0 - b1) * gi, vn = b2 * vi + (1.0 - b2) * gi * gi;
            double u = (mn / bc1) / (sqrt(vn / bc2) + eps);
            double pn = p[i] - lr * (u + wd * p[i]);
            double em = fabs(m1[i] - mn) / (4 * FLT_EPSILON * (fabs(b1 * mi) + fabs((1 - b1) * gi)) + 1e-38);
            double ev = fabs(v1[i] - vn) / (4 * FLT_EPSILON * (fabs(b2 * vi) + (1 - b2) * gi * gi) + 1e-38);
            double ep = fabs(p1[i] - pn) /
                        (2 * FLT_EPSILON * fabs(pn) + 2e-4 * lr * fabs(u) + 1e-30);
            double e = fmax(em, fmax(ev, ep));
            if (e > worst_err)
                worst_err = e, worst = i;
        }
        if (worst_err > 1) {
            fprintf(stderr, "step %d: parameter %lld: p %.9g m %.9g v %.9g; the rule gives "
                    "tolerance-scaled errors up to %.3g (> 1)\n", k, (long long)worst,
                    p1[worst], m1[worst], v1[worst], worst_err);
            bad++;
        }
        if (parlm_gpt_get_step(b) != k) {
            fprintf(stderr, "step %d: the checkpoint says step %lld\n", k,
                    (long long)parlm_gpt_get_step(b));
            bad++;
        }
        printf("step %d: loss %.6f, worst error %.3f of its tolerance\n", k, loss, worst_err);
        parlm_gpt_free(a);
        parlm_gpt_free(b);
    }
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (parlm_isa_init() != PARLM_OK)
        return fail("isa");
    if (argc == 3 && !strcmp(argv[1], "prepare"))
        return prepare(argv[2]);
    if (argc == 10 && !strcmp(argv[1], "check"))
        return check(argv[2], atoi(argv[3]), (float)atof(argv[4]), (float)atof(argv[5]),
                     (float)atof(argv[6]), (float)atof(argv[7]), atof(argv[8]), argv[9]);
    fprintf(stderr, "usage: llmc_update prepare DIR | check DIR N LR B1 B2 EPS WD LOG\n");
    return 2;
}
