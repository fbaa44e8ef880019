/* apps/parlm-generate.c — text from a trained model: the prompt is prefilled in one
 * forward, then each new token costs one forward of one position against the KV cache.
 * Prints prefill and decode speed (tokens/s) at the end. */
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "parlm.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: parlm-generate --ckpt PATH [options]\n"
        "  --ckpt PATH        a parlm checkpoint file, a --ckpt-dir of parlm-train (its newest\n"
        "                     checkpoint), or an llm.c model file\n"
        "  --prompt TEXT      text to continue (default: start of a document)\n"
        "  --max-tokens N     tokens to generate (default 200)\n"
        "  --temperature X    0 = greedy (default 0.8)\n"
        "  --top-k N          sample among the N most likely tokens (default 40; 0 = all)\n"
        "  --top-p X          nucleus sampling mass (default 0.95)\n"
        "  --seed N           sampling seed (default 42)\n"
        "  --encoder F --vocab F   GPT-2 tokenizer files (needed for a GPT-2 vocabulary)\n"
        "  --llmc-tokenizer F llm.c's gpt2_tokenizer.bin (decoding only: no --prompt)\n"
        "  --bf16             bf16 weights (f32 activations and accumulation)\n"
        "  --threads N        OpenMP threads (default: all cores)\n"
        "  -h, --help\n"
        "Generation stops at end-of-text or after --max-tokens or at the context length.\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* PATH as a file, or the newest ckpt_*.bin in PATH as a directory */
static int resolve_ckpt(const char *path, char *out, size_t len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "parlm-generate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, len, "%s", path);
        return 0;
    }
    DIR *d = opendir(path);
    long long best = -1;
    for (struct dirent *e; d && (e = readdir(d));) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "ckpt_%lld.bi%c", &s, &tail) == 2 && tail == 'n' && s > best)
            best = s;
    }
    if (d)
        closedir(d);
    if (best < 0) {
        fprintf(stderr, "parlm-generate: no checkpoint (ckpt_*.bin) in %s\n", path);
        return 1;
    }
    snprintf(out, len, "%s/ckpt_%08lld.bin", path, best);
    return 0;
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *prompt = NULL, *encoder = NULL, *vocab = NULL, *llmc_tok = NULL;
    int max_tokens = 200, top_k = 40, bf16 = 0, threads = 0;
    double temperature = 0.8, top_p = 0.95;
    unsigned long long seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = "";
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--bf16")) {
            bf16 = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "parlm-generate: %s needs a value (try --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--ckpt")) {
            ckpt = v;
        } else if (!strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "--encoder")) {
            encoder = v;
        } else if (!strcmp(a, "--vocab")) {
            vocab = v;
        } else if (!strcmp(a, "--llmc-tokenizer")) {
            llmc_tok = v;
        } else if (!strcmp(a, "--max-tokens")) {
            max_tokens = (int)strtol(v, &end, 10);
        } else if (!strcmp(a, "--top-k")) {
            top_k = (int)strtol(v, &end, 10);
        } else if (!strcmp(a, "--threads")) {
            threads = (int)strtol(v, &end, 10);
        } else if (!strcmp(a, "--temperature")) {
            temperature = strtod(v, &end);
        } else if (!strcmp(a, "--top-p")) {
            top_p = strtod(v, &end);
        } else if (!strcmp(a, "--seed")) {
            seed = strtoull(v, &end, 10);
        } else {
            fprintf(stderr, "parlm-generate: unknown option '%s' (try --help)\n", a);
            return 2;
        }
        if (*end || !*v) {
            fprintf(stderr, "parlm-generate: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }
    if (!ckpt) {
        fprintf(stderr, "parlm-generate: --ckpt is required (try --help)\n");
        return 2;
    }
    if (max_tokens < 1 || top_k < 0 || threads < 0 || !(temperature >= 0) ||
        !(top_p > 0 && top_p <= 1) || (!encoder) != (!vocab)) {
        fprintf(stderr, "parlm-generate: need --max-tokens >= 1, --top-k >= 0, --temperature >= 0, "
                "0 < --top-p <= 1, and --encoder with --vocab\n");
        return 2;
    }
    if (parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 2;
    }
    if (threads)
        omp_set_num_threads(threads);

    char path[4096];
    if (resolve_ckpt(ckpt, path, sizeof path))
        return 1;
    parlm_gpt *m = NULL;
    parlm_train_state ts;
    if (parlm_gpt_load_llmc(&m, path) != PARLM_OK && parlm_checkpoint_load(path, &m, &ts) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s: neither an llm.c model nor a parlm checkpoint (%s)\n",
                path, parlm_last_error());
        return 1;
    }
    parlm_gpt_config c = parlm_gpt_get_config(m);
    parlm_tokenizer *tok = NULL;
    parlm_status st = encoder    ? parlm_tokenizer_load_gpt2(&tok, encoder, vocab)
                      : llmc_tok ? parlm_tokenizer_load_llmc(&tok, llmc_tok)
                                 : parlm_tokenizer_bytes(&tok);
    if (st != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    if (parlm_tokenizer_vocab_size(tok) > c.vocab) {
        fprintf(stderr, "parlm-generate: the tokenizer has %d tokens, the model only %d (a GPT-2 "
                "model needs --encoder/--vocab)\n", parlm_tokenizer_vocab_size(tok), c.vocab);
        return 1;
    }
    if (bf16 && parlm_gpt_set_bf16(m, 1) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    /* the prompt: EOT (or a newline for byte models) then the prompt's tokens */
    int eot = parlm_tokenizer_eot(tok);
    int32_t *ids = NULL;
    size_t nids = 0;
    if (prompt && parlm_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &nids) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: --prompt: %s\n", parlm_last_error());
        return 1;
    }
    int32_t *ctx = malloc((size_t)(nids + 1) * sizeof *ctx);
    int n = 0;
    ctx[n++] = eot >= 0 ? eot : '\n';
    for (size_t i = 0; i < nids; i++)
        ctx[n++] = ids[i];
    parlm_free(ids);
    if (n >= c.max_seq) {
        fprintf(stderr, "parlm-generate: the prompt (%d tokens) fills the context of %d\n", n,
                c.max_seq);
        return 1;
    }
    float *logits = malloc((size_t)c.vocab_pad * sizeof *logits);
    uint64_t rng = seed;
    if (prompt)
        fputs(prompt, stdout);
    double t0 = now();
    st = parlm_gpt_infer(m, ctx, n, 0, logits);
    double t_prefill = now() - t0, t_decode = 0;
    int pos = n, generated = 0;
    while (st == PARLM_OK && generated < max_tokens) {
        int32_t next;
        if ((st = parlm_sample(logits, c.vocab, (float)temperature, top_k, (float)top_p, &rng,
                               &next)) != PARLM_OK || next == eot)
            break;
        const char *b;
        size_t len;
        if (parlm_tokenizer_token(tok, next, &b, &len) == PARLM_OK)
            fwrite(b, 1, len, stdout);
        fflush(stdout);
        generated++;
        if (pos >= c.max_seq)
            break;
        double t1 = now();
        st = parlm_gpt_infer(m, &next, 1, pos++, logits);
        t_decode += now() - t1;
    }
    printf("\n");
    fflush(stdout);
    if (st != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    fprintf(stderr, "prefill: %d tokens, %.1f tokens/s | decode: %d tokens, %.1f tokens/s "
            "(%s weights, %d threads, %s kernels)\n", n, n / t_prefill, generated - 1 > 0 ? generated - 1 : 0,
            generated > 1 ? (generated - 1) / t_decode : 0.0, bf16 ? "bf16" : "f32",
            omp_get_max_threads(), parlm_isa_name(parlm_isa_current()));
    free(ctx);
    free(logits);
    parlm_tokenizer_free(tok);
    parlm_gpt_free(m);
    return 0;
}
