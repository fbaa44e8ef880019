/* bench/model.c — whole-model benchmarks: a training step of GPT-2 124M (d12) and of
 * llama-110m, and generation (prefill, decode) with f32 and bf16 weights, decode also of
 * a model larger than the last-level cache, and a GGUF file's Q8_0 / Q4_0 matrices run in
 * place (mapped: prefill as integer-dot GEMMs, decode on the stored rows) against the
 * loaded copy's decode and the f32 prefill. Baselines in the same run: the FMA peak (MFU = achieved
 * model FLOP/s / (threads x peak of one core)) and the STREAM bandwidth (decode is
 * bound by streaming every weight once per token). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "parlm.h"

typedef struct step_arg {
    parlm_gpt *m;
    const int32_t *x, *y;
    parlm_adamw_cfg opt;
    parlm_status st;
} step_arg;

static void train_step(void *p)
{
    step_arg *a = p;
    float loss;
    if (a->st == PARLM_OK)
        a->st = parlm_gpt_zero_grad(a->m);
    if (a->st == PARLM_OK)
        a->st = parlm_gpt_forward(a->m, a->x, a->y, &loss);
    if (a->st == PARLM_OK)
        a->st = parlm_gpt_backward(a->m, 1.0f);
    float norm; /* no clipping: the norm comes free with the fused update */
    if (a->st == PARLM_OK)
        a->st = parlm_gpt_optimizer_step(a->m, &a->opt, 0.0f, &norm);
}

void bench_random_tokens(int32_t *t, int64_t n, int V, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++)
        t[i] = (int32_t)(parlm_rng_next(&seed) % (uint64_t)V);
}

/* 6 per parameter per token (forward 2, backward 4), without the lookup tables (GPT-2's
 * position embedding; Llama's token embedding when its head is untied: a tied one is the
 * head), plus causal attention 6 L C T per token (queries are C wide whatever the KV heads) */
double bench_step_flops(const parlm_gpt *m, int B, int T)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    double lookup = c.arch == PARLM_ARCH_LLAMA ? (double)c.untied_head * c.vocab_pad * c.n_embd
                                               : (double)c.max_seq * c.n_embd;
    double P = (double)parlm_gpt_num_params(m) - lookup;
    return (double)B * T * (6.0 * P + 6.0 * c.n_layer * c.n_embd * (double)T);
}

/* the train rows of one preset: f32 and bf16 steps at each shape, 1 and all threads */
static int train_rows(bench_ctx *ctx, const char *preset, parlm_gpt_config cfg,
                      const int shapes[2][2], const char *title)
{
    parlm_gpt *m;
    if (parlm_gpt_preset(preset, &cfg) != PARLM_OK || parlm_gpt_create(&m, &cfg, 1) != PARLM_OK) {
        fprintf(stderr, "train: %s\n", parlm_last_error());
        return 1;
    }
    bench_section(ctx, title);
    int rc = 0;
    for (int s = 0; s < 2 && !rc; s++) {
        int B = shapes[s][0], T = shapes[s][1];
        int32_t *x = malloc((size_t)B * T * 4), *y = malloc((size_t)B * T * 4);
        bench_random_tokens(x, (int64_t)B * T, cfg.vocab, 12345);
        bench_random_tokens(y, (int64_t)B * T, cfg.vocab, 12345);
        if (parlm_gpt_setup(m, B, T, 1) != PARLM_OK) {
            fprintf(stderr, "train: %s\n", parlm_last_error());
            rc = 1;
        }
        int tlist[2] = {1, ctx->max_threads};
        for (int i = 0; i < (ctx->max_threads > 1 ? 2 : 1) && !rc; i++) {
            for (int bf16 = 0; bf16 < 2 && !rc; bf16++) {
                omp_set_num_threads(tlist[i]);
                parlm_gpt_set_bf16(m, bf16);
                step_arg a = {m, x, y, {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f}, PARLM_OK};
                double sec = bench_time(train_step, &a, ctx->quick ? 0.0 : ctx->min_time);
                if (a.st != PARLM_OK) {
                    fprintf(stderr, "train: %s\n", parlm_last_error());
                    rc = 1;
                    break;
                }
                char shape[64];
                snprintf(shape, sizeof shape, "%s B=%d T=%d", preset, B, T);
                double gf = bench_step_flops(m, B, T) / sec * 1e-9;
                bench_row r = {.bench = "train", .impl = bf16 ? "parlm-bf16" : "parlm-f32",
                               .shape = shape, .threads = tlist[i], .seconds = sec, .gflops = gf,
                               .pct_peak = ctx->peak_1t > 0 ? 100 * gf / (tlist[i] * ctx->peak_1t) : 0};
                bench_report(ctx, &r);
            }
        }
        free(x);
        free(y);
    }
    omp_set_num_threads(ctx->max_threads);
    parlm_gpt_free(m);
    return rc;
}

int bench_train(bench_ctx *ctx)
{
    const int shapes[2][2] = {{4, 64}, {8, ctx->quick ? 128 : 256}};
    parlm_gpt_config cfg = {.max_seq = ctx->quick ? 128 : 1024, .vocab = ctx->quick ? 256 : 50257};
    int rc = train_rows(ctx, ctx->quick ? "small" : "d12", cfg, shapes,
                        ctx->quick ? "train: one step of the 'small' model (--quick)"
                                   : "train: one step of GPT-2 124M (d12): forward, backward, AdamW");
    /* the Llama configuration: RMSNorm, RoPE, SwiGLU (3 matrices), its 32000 vocabulary */
    parlm_gpt_config lc = {.max_seq = ctx->quick ? 128 : 1024, .vocab = ctx->quick ? 256 : 0};
    if (!rc)
        rc = train_rows(ctx, ctx->quick ? "llama-15m" : "llama-110m", lc, shapes,
                        ctx->quick ? "train: one step of llama-15m (--quick)"
                                   : "train: one step of llama-110m: forward, backward, AdamW");
    return rc;
}

typedef struct gen_arg {
    parlm_gpt *m;
    const int32_t *prompt;
    int n, decode, vocab;
    float *logits;
    parlm_status st;
} gen_arg;

static void prefill_fn(void *p)
{
    gen_arg *a = p;
    if (a->st == PARLM_OK)
        a->st = parlm_gpt_infer(a->m, a->prompt, a->n, 0, a->logits);
}

static void decode_fn(void *p) /* a->decode tokens after the prompt, one forward each */
{
    gen_arg *a = p;
    for (int i = 0; i < a->decode && a->st == PARLM_OK; i++) {
        int32_t t = (int32_t)(i * 7919 % a->vocab);
        a->st = parlm_gpt_infer(a->m, &t, 1, a->n + i, a->logits);
    }
}

/* m saved as a GGUF file of type in $TMPDIR and mapped (parlm_gpt_map_gguf); the file is
 * removed at once (the mapping keeps it). NULL after a message on failure. */
static parlm_gpt *mapped_copy(parlm_gpt *m, int type)
{
    char path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/parlm-bench-%d.gguf", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    parlm_gpt *v = NULL;
    parlm_status st = parlm_gpt_save_gguf(m, path, type, NULL, NULL);
    if (st == PARLM_OK)
        st = parlm_gpt_map_gguf(&v, path, NULL);
    unlink(path);
    if (st != PARLM_OK)
        fprintf(stderr, "generate: a mapped %s file: %s\n", parlm_wtype_name(type),
                parlm_last_error());
    return v;
}

/* One model's generation rows: prefill of the prompt (if `prefill`; f32, bf16 and the
 * mapped files'), then decode at each thread count with f32, bf16, Q8_0 and Q4_0 weights
 * (parlm's decode copy), then a GGUF file's Q8_0 and Q4_0 run in place. Decode streams every
 * weight but GPT-2's position table once per token: GB/s from that, % of STREAM at the thread
 * count STREAM ran with; bf16 tokens/s over f32's, Q8_0's and Q4_0's over bf16's, a mapped
 * file's over the copy of its type; a mapped file's prefill over f32's. */
static int gen_rows(bench_ctx *ctx, const char *preset, int prefill, int ndec)
{
    parlm_gpt_config cfg = {.max_seq = 1024}; /* the preset's vocabulary */
    parlm_gpt *m;
    if (parlm_gpt_preset(preset, &cfg) != PARLM_OK || parlm_gpt_create(&m, &cfg, 1) != PARLM_OK) {
        fprintf(stderr, "generate: %s\n", parlm_last_error());
        return 1;
    }
    /* GPT-2 reads one row of its position table (Llama has none), and a model with its own
     * LM head one row of its token embedding */
    parlm_gpt_config mc = parlm_gpt_get_config(m);
    double P = (double)parlm_gpt_num_params(m) -
               (mc.arch == PARLM_ARCH_GPT2 ? (double)mc.max_seq * mc.n_embd : 0.0) -
               (mc.untied_head ? (double)mc.vocab_pad * mc.n_embd : 0.0);
    int n = 128;
    int32_t prompt[128];
    bench_random_tokens(prompt, n, cfg.vocab, 12345);
    float *logits = malloc((size_t)parlm_gpt_get_config(m).vocab_pad * sizeof(float));
    int tlist[2] = {ctx->max_threads, 1}, nts = ctx->max_threads > 1 && !ctx->quick ? 2 : 1;
    int rc = 0;
    /* weights: f32, bf16, q8_0, q4_0 (bytes per weight as stored), a file's q8_0, q4_0
     * mapped */
    static const struct { const char *impl; int bf16, type, mapped; double bytes; } mode[] = {
        {"parlm-f32", 0, PARLM_WT_F32, 0, 4.0}, {"parlm-bf16", 1, PARLM_WT_F32, 0, 2.0},
        {"parlm-q8_0", 0, PARLM_WT_Q8_0, 0, 34.0 / 32}, {"parlm-q4_0", 0, PARLM_WT_Q4_0, 0, 18.0 / 32},
        {"q8_0-mapped", 0, PARLM_WT_Q8_0, 1, 34.0 / 32}, {"q4_0-mapped", 0, PARLM_WT_Q4_0, 1, 18.0 / 32}};
    double tps[4][2] = {{0}}; /* decode tokens/s of f32, bf16, q8_0, q4_0 per thread count */
    double t_f32 = 0; /* f32 prefill */
    for (int mi = 0; mi < 6 && !rc; mi++) {
        int bf16 = mode[mi].bf16, quant = mode[mi].type != PARLM_WT_F32, mapped = mode[mi].mapped;
        omp_set_num_threads(ctx->max_threads);
        parlm_gpt *v = mapped ? mapped_copy(m, mode[mi].type) : NULL;
        if (mapped && !v) {
            rc = 1;
            break;
        }
        parlm_gpt_set_bf16(m, bf16);
        gen_arg a = {mapped ? v : m, prompt, n, ndec, cfg.vocab, logits, PARLM_OK};
        a.st = parlm_gpt_set_decode_type(a.m, mode[mi].type);
        char shape[96];
        if (a.st == PARLM_OK && prefill && (!quant || mapped)) { /* the copy: f32 / bf16 GEMMs */
            double t_pre = bench_time(prefill_fn, &a, ctx->min_time);
            snprintf(shape, sizeof shape, "%s prefill %d", preset, n);
            bench_row r = {.bench = "generate", .impl = mode[mi].impl,
                           .shape = shape, .threads = ctx->max_threads, .seconds = t_pre,
                           .gflops = 2.0 * P * n / t_pre * 1e-9};
            t_f32 = mi == 0 ? t_pre : t_f32;
            if (mi > 0 && t_f32 > 0)
                r.ratio = t_f32 / t_pre, r.baseline = "f32 prefill";
            if (a.st == PARLM_OK)
                bench_report(ctx, &r);
        } else if (a.st == PARLM_OK) {
            prefill_fn(&a); /* the cache the decoded tokens attend to */
        }
        for (int i = 0; i < nts && a.st == PARLM_OK; i++) {
            omp_set_num_threads(tlist[i]);
            double t_dec = bench_time(decode_fn, &a, ctx->min_time) / ndec;
            if (a.st != PARLM_OK)
                break;
            double gbs = P * mode[mi].bytes / t_dec * 1e-9;
            snprintf(shape, sizeof shape, "%s decode %.1f tok/s", preset, 1.0 / t_dec);
            bench_row d = {.bench = "generate", .impl = mode[mi].impl,
                           .shape = shape, .threads = tlist[i], .seconds = t_dec, .gbs = gbs,
                           .pct_peak = ctx->stream_gbs > 0 && i == 0 ? 100 * gbs / ctx->stream_gbs
                                                                     : 0};
            if (mi < 4)
                tps[mi][i] = 1.0 / t_dec;
            /* bf16 against f32; the Q types against bf16; a mapped file against the copy */
            const int base = mapped ? mi - 2 : mi > 1 ? 1 : 0;
            static const char *const bname[4] = {"f32 decode", "bf16 decode", "q8_0 decode",
                                                 "q4_0 decode"};
            if (mi > 0 && tps[base][i] > 0) {
                d.ratio = (1.0 / t_dec) / tps[base][i];
                d.baseline = bname[base];
            }
            bench_report(ctx, &d);
        }
        if (a.st != PARLM_OK) {
            fprintf(stderr, "generate: %s\n", parlm_last_error());
            rc = 1;
        }
        parlm_gpt_free(v);
    }
    omp_set_num_threads(ctx->max_threads);
    free(logits);
    parlm_gpt_free(m);
    return rc;
}

/* The total last-level cache: the L3 above the first core times the L3 instances the
 * cores span (one per CCX or socket), as hwloc reports it (its default if it does not). */
static double llc_bytes(void)
{
    parlm_topo *t;
    if (parlm_topo_load_system(&t) != PARLM_OK)
        return (double)PARLM_TOPO_L3_DEFAULT;
    int per = parlm_topo_cache_cores(t, 3), cores = parlm_topo_cores(t);
    double b = (double)parlm_topo_cache_bytes(t, 3) * (per > 0 ? (cores + per - 1) / per : 1);
    parlm_topo_free(t);
    return b;
}

int bench_generate(bench_ctx *ctx)
{
    bench_section(ctx, "generate: prefill 128 tokens, then decode with the KV cache");
    int rc = gen_rows(ctx, ctx->quick ? "small" : "d12", 1, ctx->quick ? 16 : 64);
    if (ctx->quick || rc)
        return rc;
    bench_section(ctx, "generate: the ~110M Llama config (GQA-ready layers, SwiGLU, RoPE, "
                       "vocabulary 32000)");
    if ((rc = gen_rows(ctx, "llama-110m", 1, 64)))
        return rc;
    /* GPT-2 124M's weights fit in some CPUs' last-level cache: decode also a model whose
     * bf16 weights exceed it 4x, so that its bandwidth figure is the memory's */
    static const char *const big[] = {"d24", "d36", "d48"};
    double llc = llc_bytes();
    int b = 0;
    for (; b < 2; b++) {
        parlm_gpt_config c = {.max_seq = 1024, .vocab = 50257};
        int64_t np;
        if (parlm_gpt_preset(big[b], &c) == PARLM_OK &&
            parlm_gpt_config_num_params(&c, &np) == PARLM_OK && 2.0 * np >= 4.0 * llc)
            break;
    }
    char title[160];
    snprintf(title, sizeof title, "generate: decode of %s, larger than the last-level cache "
             "(%.0f MiB)", big[b], llc / (1024.0 * 1024.0));
    bench_section(ctx, title);
    return gen_rows(ctx, big[b], 0, 16);
}
