/* apps/parlm-convert.c — converts GPT-2 and Llama model files between formats: llm.c
 * model files (.bin, GPT-2 only), parlm training checkpoints, GGUF (llama.cpp) and Hugging
 * Face safetensors (with config.json beside it, one file or sharded with
 * model.safetensors.index.json), quantizing on the way (--type). The input's format is
 * read from its first bytes, the output's from its extension (or --format); the program
 * prints what it wrote. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fputs("usage: parlm-convert IN OUT [options]\n"
          "  IN                 an llm.c model file, a parlm checkpoint, a GGUF file, or Hugging\n"
          "                     Face safetensors with config.json beside it: a .safetensors\n"
          "                     file, a model.safetensors.index.json or a directory holding\n"
          "                     either (found from content); GPT-2 or Llama\n"
          "  OUT                written atomically; its format from the extension: .gguf = GGUF,\n"
          "                     .safetensors = safetensors (+ config.json in its directory),\n"
          "                     .ckpt = parlm checkpoint, anything else = llm.c model file\n"
          "                     (GPT-2 only); with --shard-size, a directory\n"
          "  --format F         gguf | safetensors | llmc | ckpt: overrides the extension\n"
          "  --type T           weights as f32 (default) | f16 | bf16 | q8_0 | q4_0 (GGUF:\n"
          "                     matrices; norms and biases stay f32); llm.c: f32 or bf16;\n"
          "                     safetensors: f32, f16 or bf16;\n"
          "                     a checkpoint is always f32\n"
          "  --shard-size SIZE  safetensors in shards of at most SIZE of weights, as Hugging\n"
          "                     Face names them (model-00001-of-00003.safetensors, ...) with\n"
          "                     model.safetensors.index.json, into the directory OUT; SIZE in\n"
          "                     bytes or with KB, MB, GB (10^3...) or KiB, MiB, GiB (2^10...)\n"
          "  --encoder FILE     with --vocab: GPT-2 encoder.json and vocab.bpe, stored in a GGUF\n"
          "  --vocab FILE       file as its tokenizer (tokenizer.ggml.*)\n"
          "  --tokenizer FILE   a GGUF file's Llama tokenizer, stored in the GGUF output\n"
          "  -h, --help\n",
          f);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "gguf", "llmc", "safetensors" or "ckpt" by the file's first bytes; a directory or an
 * index (*.json) is safetensors */
static const char *sniff(const char *path)
{
    unsigned char b[8] = {0};
    struct stat sb;
    if (stat(path, &sb) == 0 && (S_ISDIR(sb.st_mode) || ends_with(path, ".json")))
        return "safetensors";
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0)
        return "gguf";
    int32_t magic = (int32_t)(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24);
    if (n >= 4 && magic == PARLM_LLMC_MAGIC)
        return "llmc";
    /* safetensors: a header length, then the JSON object's '{' */
    f = fopen(path, "rb");
    int c9 = -1;
    if (f && fseek(f, 8, SEEK_SET) == 0)
        c9 = fgetc(f);
    if (f)
        fclose(f);
    if (n == 8 && c9 == '{' && b[6] == 0 && b[7] == 0)
        return "safetensors";
    return "ckpt";
}

/* "500MB", "2GB", "1GiB", "123": bytes; 0 when malformed or 0 */
static uint64_t parse_size(const char *s)
{
    static const struct { const char *unit; uint64_t mul; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000},
        {"KiB", 1u << 10}, {"MiB", 1u << 20}, {"GiB", 1u << 30}};
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return 0;
    double v = strtod(s, &end);
    for (size_t i = 0; errno == 0 && i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0 && v * (double)units[i].mul < 1e18)
            return (uint64_t)(v * (double)units[i].mul);
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const formats[] = {"gguf", "safetensors", "llmc", "ckpt", NULL};
    static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", NULL};
    const char *format = NULL, *type = "f32", *encoder = NULL, *vocab = NULL, *shard = NULL,
               *tokf = NULL;
    const char *pos[argc > 0 ? argc : 1];
    cli_opt opts[] = {CLI_C("--format", &format, formats, 0), CLI_C("--type", &type, types, 0),
                      CLI_S("--encoder", &encoder, 0), CLI_S("--vocab", &vocab, 0),
                      CLI_S("--shard-size", &shard, 0), CLI_S("--tokenizer", &tokf, 0)};
    cli c = {"parlm-convert", opts, (int)(sizeof opts / sizeof opts[0]), usage, pos, 0};
    int r = cli_parse(&c, argc, argv);
    if (r)
        return r < 0 ? 0 : r;
    if (c.npos != 2) {
        fprintf(stderr, "parlm-convert: give IN and OUT (try --help)\n");
        return 2;
    }
    if (!encoder != !vocab) {
        fprintf(stderr, "parlm-convert: --encoder and --vocab go together\n");
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    uint64_t shard_bytes = shard ? parse_size(shard) : 0;
    if (shard && !shard_bytes) {
        fprintf(stderr, "parlm-convert: --shard-size '%s': give a size such as 2GB, 500MB or 1GiB\n", shard);
        return 2;
    }
    if (shard && format && strcmp(format, "safetensors") != 0) {
        fprintf(stderr, "parlm-convert: --shard-size writes safetensors, not %s\n", format);
        return 2;
    }
    const char *of = format ? format : shard ? "safetensors" : ends_with(out, ".gguf") ? "gguf"
                   : ends_with(out, ".safetensors") ? "safetensors" : ends_with(out, ".ckpt") ? "ckpt" : "llmc";
    parlm_wtype wt;
    parlm_wtype_parse(type, &wt);
    if (strcmp(of, "llmc") == 0 && wt != PARLM_WT_F32 && wt != PARLM_WT_BF16) {
        fprintf(stderr, "parlm-convert: an llm.c model file holds f32 or bf16 weights, not %s\n", type);
        return 2;
    }
    if (strcmp(of, "safetensors") == 0 && wt != PARLM_WT_F32 && wt != PARLM_WT_F16 && wt != PARLM_WT_BF16) {
        fprintf(stderr, "parlm-convert: a safetensors file holds f32, f16 or bf16 weights, not %s\n", type);
        return 2;
    }
    if (strcmp(of, "ckpt") == 0 && wt != PARLM_WT_F32) {
        fprintf(stderr, "parlm-convert: a checkpoint holds f32 weights, not %s\n", type);
        return 2;
    }
    if ((encoder || tokf) && strcmp(of, "gguf") != 0) {
        fprintf(stderr, "parlm-convert: only a GGUF file stores a tokenizer (--encoder/--vocab, "
                "--tokenizer)\n");
        return 2;
    }
    if (encoder && tokf) {
        fprintf(stderr, "parlm-convert: give --encoder/--vocab or --tokenizer, not both\n");
        return 2;
    }
    const char *inf = sniff(in);
    if (!inf) {
        fprintf(stderr, "parlm-convert: %s: cannot open\n", in);
        return 1;
    }
    parlm_gpt *m = NULL;
    parlm_train_state st = {0};
    parlm_status s = strcmp(inf, "gguf") == 0   ? parlm_gpt_load_gguf(&m, in)
                     : strcmp(inf, "llmc") == 0 ? parlm_gpt_load_llmc(&m, in)
                     : strcmp(inf, "safetensors") == 0 ? parlm_gpt_load_safetensors(&m, in)
                                                : parlm_checkpoint_load(in, &m, &st);
    if (s) {
        fprintf(stderr, "parlm-convert: %s\n", parlm_last_error());
        return 1;
    }
    parlm_tokenizer *tok = NULL;
    if (tokf && parlm_tokenizer_load_gguf(&tok, tokf) != PARLM_OK) {
        fprintf(stderr, "parlm-convert: --tokenizer: %s\n", parlm_last_error());
        parlm_gpt_free(m);
        return 1;
    }
    parlm_gpt_config cfg = parlm_gpt_get_config(m);
    int llama = cfg.arch == PARLM_ARCH_LLAMA, shards = 1;
    if (llama && strcmp(of, "llmc") == 0) {
        fprintf(stderr, "parlm-convert: an llm.c model file holds GPT-2 models only (write .gguf, "
                        ".safetensors or .ckpt)\n");
        parlm_gpt_free(m);
        return 2;
    }
    if (shard)
        s = parlm_gpt_save_safetensors_sharded(m, out, wt, shard_bytes, &shards);
    else if (strcmp(of, "gguf") == 0)
        s = tok ? parlm_gpt_save_gguf_tok(m, out, wt, tok)
                : parlm_gpt_save_gguf(m, out, wt, encoder, vocab);
    else if (strcmp(of, "safetensors") == 0)
        s = parlm_gpt_save_safetensors(m, out, wt);
    else if (strcmp(of, "llmc") == 0)
        s = parlm_gpt_save_llmc(m, out, wt == PARLM_WT_BF16 ? 5 : 3);
    else {
        st.step = parlm_gpt_get_step(m);
        s = parlm_checkpoint_save(out, m, &st);
    }
    parlm_tokenizer_free(tok);
    if (s) {
        fprintf(stderr, "parlm-convert: %s\n", parlm_last_error());
        parlm_gpt_free(m);
        return 1;
    }
    struct stat sb;
    long long bytes = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    char arch[160], files[96];
    if (llama)
        snprintf(arch, sizeof arch, "Llama L%d NH%d NKV%d C%d F%d maxT%d V%d %s head, rope theta "
                 "%g scale %g", cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.n_embd, cfg.ffn_hidden,
                 cfg.max_seq, cfg.vocab, cfg.untied_head ? "untied" : "tied", cfg.rope_theta,
                 cfg.rope_scale);
    else
        snprintf(arch, sizeof arch, "GPT-2 L%d NH%d C%d maxT%d V%d", cfg.n_layer, cfg.n_head,
                 cfg.n_embd, cfg.max_seq, cfg.vocab);
    if (shard && shards > 1) {
        bytes = 0;
        for (int k = 1; k <= shards; k++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", out, k, shards);
            bytes += stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
        }
        snprintf(files, sizeof files, ", %d shards + model.safetensors.index.json", shards);
    } else if (shard) {
        char p[4200];
        snprintf(p, sizeof p, "%s/model.safetensors", out);
        bytes = stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
        snprintf(files, sizeof files, ", 1 shard (model.safetensors)");
    } else
        files[0] = 0;
    printf("parlm-convert: wrote %s: %s, %s, %lld parameters, %s weights%s%s, %lld bytes (from %s %s)\n",
           out, of, arch, (long long)parlm_gpt_num_params(m), type, files,
           strcmp(of, "gguf") == 0 ? (encoder ? " (norms f32), GPT-2 tokenizer"
                                      : tokf  ? " (norms f32), Llama tokenizer"
                                              : " (norms f32), no tokenizer")
           : strcmp(of, "safetensors") == 0 ? ", config.json beside it" : "",
           bytes, inf, in);
    parlm_gpt_free(m);
    return 0;
}
