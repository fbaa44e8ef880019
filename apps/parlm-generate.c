/* apps/parlm-generate.c — text from a trained model (a parlm checkpoint, an llm.c file, or
 * a GGUF file, which brings its tokenizer and runs as stored: Q8_0 / Q4_0 matrices decode
 * on those blocks): the prompt is prefilled in one
 * forward, then each new token costs one forward of one position against the KV cache.
 * Prints prefill and decode speed (tokens/s) at the end. With --tp N under mpirun, N ranks
 * hold one tensor-parallel shard each (1/N of the weights, streamed per token) and compute
 * the same logits, so every rank samples the same token; rank 0 prints. With --perplexity
 * it scores a token shard instead, one decode step a token: the weights the decode uses
 * (f32, bf16, Q8_0, Q4_0) are the ones measured. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "model_file.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: parlm-generate MODEL [options]   (or --ckpt MODEL)\n"
        "  MODEL              a GGUF file (GPT-2 or Llama; its tokenizer comes from the file,\n"
        "                     no other file needed), a parlm checkpoint file, a --ckpt-dir of\n"
        "                     parlm-train (its newest checkpoint), or an llm.c model file\n"
        "  --prompt TEXT      text to continue (default: start of a document)\n"
        "  --max-tokens N     tokens to generate (default 200)\n"
        "  --temperature X    0 = greedy (default 0.8)\n"
        "  --top-k N          sample among the N most likely tokens (default 40; 0 = all)\n"
        "  --top-p X          nucleus sampling mass, in (0, 1] (default 0.95)\n"
        "  --seed N           sampling seed (default 42)\n"
        "  --encoder F --vocab F   GPT-2 tokenizer files (needed for a GPT-2 vocabulary)\n"
        "  --tokenizer F      the tokenizer of GGUF file F (tokenizer.ggml.*: GPT-2 or Llama)\n"
        "  --llmc-tokenizer F llm.c's gpt2_tokenizer.bin (decoding only: no --prompt)\n"
        "                     (none of these: a GGUF model's own tokenizer; bytes for a\n"
        "                     vocabulary of 256)\n"
        "  --type T           weights of the decode: f32, bf16 (f32 activations and\n"
        "                     accumulation), q8_0 or q4_0 (ggml's blocks; activations\n"
        "                     quantized to 8 bits per 32). Default: as a GGUF file stores its\n"
        "                     matrices (q8_0, q4_0, bf16; f16 runs as f32), else f32\n"
        "  --bf16             the same as --type bf16\n"
        "  --decode-type T    the same as --type T, for q8_0 or q4_0\n"
        "  --threads N        OpenMP threads (default: all cores; under mpirun, the rank's share)\n"
        "  --tp N             tensor parallelism over N ranks (mpirun -np N; the model's heads\n"
        "                     and padded vocabulary must divide by N)\n"
        "  --perplexity SHARD score a token shard (parlm-prepare's, e.g. its validation split)\n"
        "                     instead of generating: windows of the context length, each token\n"
        "                     predicted by one decode step; prints loss (nats/token) and\n"
        "                     perplexity\n"
        "  --eval-tokens N    tokens --perplexity predicts (default 8192; 0 = the whole shard)\n"
        "  -h, --help\n"
        "A Llama tokenizer puts BOS before the prompt (tokenizer.ggml.add_bos_token); others\n"
        "start with end-of-text. Generation stops at end-of-text (EOS) or after --max-tokens or\n"
        "at the context length.\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* PATH as a file, or a --ckpt-dir of parlm-train: its newest checkpoint that loads (never
 * a temp file of a write in progress; a corrupt newest one is named and skipped) */
static int load_ckpt(const char *path, parlm_gpt **m, char *chosen, size_t len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "parlm-generate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    parlm_train_state ts;
    snprintf(chosen, len, "%s", path);
    if (!S_ISDIR(st.st_mode)) {
        if (parlm_gpt_load(m, path, &ts) == PARLM_OK)
            return 0;
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    int64_t steps[64];
    int n;
    if (parlm_ckpt_list(path, steps, 64, &n) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    if (!n) {
        fprintf(stderr, "parlm-generate: no checkpoint (ckpt_<step>.bin) in %s\n", path);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (parlm_ckpt_path(chosen, len, path, steps[i]) == PARLM_OK &&
            parlm_checkpoint_load(chosen, m, &ts) == PARLM_OK)
            return 0;
        fprintf(stderr, "parlm-generate: %s%s\n", parlm_last_error(),
                i + 1 < n ? "; trying an older checkpoint" : "");
    }
    fprintf(stderr, "parlm-generate: no checkpoint in %s loads\n", path);
    return 1;
}

#if PARLM_WITH_MPI
/* Replaces *m (the whole model) by this rank's tensor-parallel shard of it: each rank
 * loads the file and keeps only its slices. */
static int to_shard(parlm_gpt **m, int tp, int rank, parlm_comm *comm, parlm_gpt_tp_comm *tpc)
{
    parlm_gpt_shard sh = {tp, rank, 0, parlm_gpt_get_config(*m).n_layer};
    parlm_gpt *s = NULL;
    if (parlm_gpt_shard_from(&s, *m, &sh) != PARLM_OK ||
        parlm_tp_comm_init(tpc, comm) != PARLM_OK || parlm_gpt_set_tp_comm(s, tpc) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: --tp %d: %s\n", tp, parlm_last_error());
        parlm_gpt_free(s);
        return 1;
    }
    parlm_gpt_free(*m);
    *m = s;
    return 0;
}
#endif

/* --perplexity: mean negative log-likelihood of the shard's tokens, each predicted from the
 * ones before it in its window (windows of the context length, overlapping by one token so
 * every pair is scored), one parlm_gpt_infer step a token as decode runs it. */
static int perplexity(parlm_gpt *m, const char *path, int64_t want, int rank, const char *wname)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    uint16_t *t = NULL;
    size_t n = 0;
    if (parlm_shard_read(path, &t, &n) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: --perplexity: %s\n", parlm_last_error());
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (t[i] >= c.vocab) {
            fprintf(stderr, "parlm-generate: --perplexity %s: token %zu is %u, outside the "
                    "model's vocabulary of %d\n", path, i, t[i], c.vocab);
            parlm_free(t);
            return 1;
        }
    if (n < 2) {
        fprintf(stderr, "parlm-generate: --perplexity %s: %zu token(s), nothing to predict\n",
                path, n);
        parlm_free(t);
        return 1;
    }
    float *logits = malloc((size_t)c.vocab_pad * sizeof *logits);
    if (!logits) {
        parlm_free(t);
        return 1;
    }
    double nll = 0, t0 = now();
    int64_t count = 0;
    parlm_status st = PARLM_OK;
    for (size_t start = 0; start + 1 < n && (want == 0 || count < want) && st == PARLM_OK;
         start += (size_t)c.max_seq - 1) {
        size_t len = n - start < (size_t)c.max_seq ? n - start : (size_t)c.max_seq;
        for (size_t i = 0; i + 1 < len && (want == 0 || count < want); i++) {
            int32_t in = t[start + i];
            if ((st = parlm_gpt_infer(m, &in, 1, (int)i, logits)) != PARLM_OK)
                break;
            double mx = logits[0], sum = 0;
            for (int v = 1; v < c.vocab; v++)
                mx = logits[v] > mx ? logits[v] : mx;
            for (int v = 0; v < c.vocab; v++)
                sum += exp(logits[v] - mx);
            nll += mx + log(sum) - logits[t[start + i + 1]];
            count++;
        }
    }
    double sec = now() - t0;
    free(logits);
    parlm_free(t);
    if (st != PARLM_OK) {
        fprintf(stderr, "parlm-generate: --perplexity: %s\n", parlm_last_error());
        return 1;
    }
    if (rank == 0)
        printf("perplexity %s: %lld tokens, loss %.6f nats/token, perplexity %.4f (%s weights, "
               "%.1f tokens/s)\n", path, (long long)count, nll / count, exp(nll / count), wname,
               count / sec);
    return 0;
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *prompt = NULL, *type_name = NULL;
    mf_tok_opts to = {0};
    int max_tokens = 200, top_k = 40, bf16 = 0, threads = 0, tp = 1, rank = 0;
    const char *dtype_name = NULL, *ppl = NULL;
    int64_t eval_tokens = 8192;
    parlm_wtype dtype = PARLM_WT_F32;
    double temperature = 0.8, top_p = 0.95;
    uint64_t seed = 42;
    const cli_opt table[] = {
        CLI_S("--ckpt", &ckpt, 0), CLI_S("--prompt", &prompt, 0),
        CLI_S("--encoder", &to.encoder, 0), CLI_S("--vocab", &to.vocab, 0),
        CLI_S("--tokenizer", &to.tok_gguf, 0), CLI_S("--llmc-tokenizer", &to.llmc, 0),
        CLI_S("--type", &type_name, 0),
        CLI_I("--max-tokens", &max_tokens, 1, INT_MAX, 0), CLI_I("--top-k", &top_k, 0, INT_MAX, 0),
        CLI_I("--threads", &threads, 0, 4096, 0), CLI_I("--tp", &tp, 1, 4096, 0),
        CLI_D("--temperature", &temperature, 0, 1e6, 0), CLI_D("--top-p", &top_p, 1e-9, 1, 0),
        CLI_U64("--seed", &seed, 0), CLI_F("--bf16", &bf16, 0),
        CLI_S("--decode-type", &dtype_name, 0), CLI_S("--perplexity", &ppl, 0),
        CLI_I64("--eval-tokens", &eval_tokens, 0, INT64_MAX, 0),
    };
    const char *args[argc > 0 ? argc : 1];
    cli cl = {"parlm-generate", table, (int)(sizeof table / sizeof table[0]), usage, args, 0};
    int rc = cli_parse(&cl, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (cl.npos > 1 || (cl.npos == 1 && ckpt)) {
        fprintf(stderr, "parlm-generate: give one MODEL (try --help)\n");
        return 2;
    }
    if (cl.npos == 1)
        ckpt = args[0];
    if (!ckpt) {
        fprintf(stderr, "parlm-generate: a MODEL file (or --ckpt) is required (try --help)\n");
        return 2;
    }
    if ((rc = mf_tok_check("parlm-generate", &to)))
        return rc;
    if (dtype_name && (parlm_wtype_parse(dtype_name, &dtype) != PARLM_OK ||
                       (dtype != PARLM_WT_Q8_0 && dtype != PARLM_WT_Q4_0))) {
        fprintf(stderr, "parlm-generate: --decode-type: '%s' is not q8_0 or q4_0\n", dtype_name);
        return 2;
    }
    if ((type_name != NULL) + (dtype_name != NULL) + bf16 > 1) {
        fprintf(stderr, "parlm-generate: give one of --type, --decode-type and --bf16\n");
        return 2;
    }
    if (dtype_name || bf16)
        type_name = dtype_name ? dtype_name : "bf16";
#if PARLM_WITH_MPI
    parlm_comm *comm = NULL;
    parlm_gpt_tp_comm tpc;
    if (tp > 1) {
        parlm_comm_config cc;
        if (cli_comm_env("parlm-generate", &cc))
            return 2;
        if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&comm, &cc) != PARLM_OK) {
            fprintf(stderr, "parlm-generate: MPI: %s\n", parlm_last_error());
            return 1;
        }
        rank = parlm_comm_rank(comm);
        if (parlm_comm_size(comm) != tp) {
            if (rank == 0)
                fprintf(stderr, "parlm-generate: --tp %d needs %d ranks (mpirun -np %d), not %d\n",
                        tp, tp, tp, parlm_comm_size(comm));
            parlm_comm_free(comm);
            parlm_dist_finalize();
            return 2;
        }
    }
#else
    if (tp > 1) {
        fprintf(stderr, "parlm-generate: --tp needs a build with MPI\n");
        return 2;
    }
#endif
    cli_gemm_env();
    if (parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 2;
    }
    int local_rank, local_size; /* under mpirun / srun: this rank's share of the cores */
    parlm_node_rank_env(&local_rank, &local_size);
    if (local_size > 1) {
        int nt = 0, want = threads                       ? threads
                           : getenv("OMP_NUM_THREADS") ? omp_get_max_threads()
                                                       : 0;
        if (parlm_place_threads(local_rank, local_size, want, 1, &nt, NULL, 0) != PARLM_OK)
            fprintf(stderr, "parlm-generate: rank %d of the node: %s\n", local_rank,
                    parlm_last_error());
    } else if (threads) {
        omp_set_num_threads(threads);
    }

    parlm_gpt *m = NULL;
    char path[4096];
    const int gguf = mf_is_gguf(ckpt);
    parlm_gguf_load_info info = {PARLM_WT_F32, 1};
    int view = 0;
    if (gguf) {
        snprintf(path, sizeof path, "%s", ckpt);
        if (mf_load_gguf("parlm-generate", ckpt, type_name, tp == 1, &m, &info, &view))
            return 1;
    } else if (load_ckpt(ckpt, &m, path, sizeof path)) {
        return 1;
    }
    parlm_wtype wt;
    if ((rc = mf_weight_type("parlm-generate", type_name, gguf, &info, &wt))) {
        parlm_gpt_free(m);
        return rc;
    }
    bf16 = wt == PARLM_WT_BF16;
    dtype = wt == PARLM_WT_Q8_0 || wt == PARLM_WT_Q4_0 ? wt : PARLM_WT_F32;
    if (rank == 0 && dtype != PARLM_WT_F32 && gguf && info.wtype == dtype && !info.blocks_exact)
        fprintf(stderr, "parlm-generate: note: some %s blocks of %s are not parlm's rounding "
                "of their values: decode runs on parlm's re-quantization of them\n",
                parlm_wtype_name(dtype), ckpt);
#if PARLM_WITH_MPI
    if (tp > 1 && to_shard(&m, tp, rank, comm, &tpc))
        return 1;
#endif
    parlm_gpt_config c = parlm_gpt_get_config(m);
    const char *wname = dtype != PARLM_WT_F32 ? parlm_wtype_name(dtype) : bf16 ? "bf16" : "f32";
    if (bf16 && parlm_gpt_set_bf16(m, 1) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    if (dtype != PARLM_WT_F32 && parlm_gpt_set_decode_type(m, dtype) != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s weights: %s\n", wname, parlm_last_error());
        return 1;
    }
    parlm_tokenizer *tok = NULL;
    int32_t *ctx = NULL;
    float *logits = NULL;
    if (ppl) { /* scores token ids: no tokenizer needed */
        rc = perplexity(m, ppl, eval_tokens, rank, wname);
        goto done;
    }
    if (mf_tokenizer("parlm-generate", path, gguf, &to, c.vocab, &tok)) {
        rc = 1;
        goto done;
    }
    if (parlm_tokenizer_vocab_size(tok) > c.vocab) {
        fprintf(stderr, "parlm-generate: the tokenizer has %d tokens, the model only %d (a GPT-2 "
                "model needs --encoder/--vocab)\n", parlm_tokenizer_vocab_size(tok), c.vocab);
        rc = 1;
        goto done;
    }
    /* the prompt: BOS (Llama) or EOT (or a newline for byte models), the prompt's tokens */
    int eot = parlm_tokenizer_eot(tok);
    int n = 0;
    if (mf_prompt("parlm-generate", tok, prompt, &ctx, &n)) {
        rc = 1;
        goto done;
    }
    if (n >= c.max_seq) {
        fprintf(stderr, "parlm-generate: the prompt (%d tokens) fills the context of %d\n", n,
                c.max_seq);
        return 1;
    }
    logits = malloc((size_t)c.vocab_pad * sizeof *logits);
    uint64_t rng = seed;
    if (prompt && rank == 0)
        fputs(prompt, stdout);
    double t0 = now();
    parlm_status st = parlm_gpt_infer(m, ctx, n, 0, logits);
    double t_prefill = now() - t0, t_decode = 0;
    int pos = n, generated = 0, decoded = 0; /* decoded: forwards of one token, timed */
    while (st == PARLM_OK && generated < max_tokens) {
        int32_t next;
        if ((st = parlm_sample(logits, c.vocab, (float)temperature, top_k, (float)top_p, &rng,
                               &next)) != PARLM_OK || next == eot)
            break;
        const char *b;
        size_t len;
        if (rank == 0 && parlm_tokenizer_token(tok, next, &b, &len) == PARLM_OK)
            fwrite(b, 1, len, stdout);
        fflush(stdout);
        generated++;
        if (pos >= c.max_seq || generated == max_tokens)
            break;
        double t1 = now();
        st = parlm_gpt_infer(m, &next, 1, pos++, logits);
        t_decode += now() - t1;
        decoded++;
    }
    if (rank == 0)
        printf("\n");
    fflush(stdout);
    if (st != PARLM_OK) {
        fprintf(stderr, "parlm-generate: %s\n", parlm_last_error());
        return 1;
    }
    if (rank == 0)
        fprintf(stderr, "prefill: %d tokens, %.1f tokens/s | decode: %d tokens, %.1f tokens/s "
                "(%s weights, %d threads%s, %s kernels)\n", n, n / t_prefill, decoded,
                decoded > 0 ? decoded / t_decode : 0.0,
                wname,
                omp_get_max_threads(), tp > 1 ? " per rank x tp" : "",
                parlm_isa_name(parlm_isa_current()));
    if (rank == 0 && tp > 1)
        fprintf(stderr, "tensor parallelism: %d ranks, each with 1/%d of the weights\n", tp, tp);
    rc = 0;
done:
    free(ctx);
    free(logits);
    parlm_tokenizer_free(tok);
    parlm_gpt_free(m);
#if PARLM_WITH_MPI
    if (comm) {
        parlm_comm_free(comm);
        parlm_dist_finalize();
    }
#endif
    return rc;
}
