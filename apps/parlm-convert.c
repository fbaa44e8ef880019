/* apps/parlm-convert.c — converts GPT-2 model files between formats: llm.c model files
 * (.bin), parlm training checkpoints, GGUF (llama.cpp) and Hugging Face safetensors (with
 * config.json beside it), quantizing on the way
 * (--type). The input's format is read from its first bytes, the output's from its
 * extension (or --format); the program prints what it wrote. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fputs("usage: parlm-convert IN OUT [options]\n"
          "  IN                 an llm.c model file, a parlm checkpoint, a GGUF file or a\n"
          "                     safetensors file with config.json beside it (found from content)\n"
          "  OUT                written atomically; its format from the extension: .gguf = GGUF,\n"
          "                     .safetensors = safetensors (+ config.json in its directory),\n"
          "                     .ckpt = parlm checkpoint, anything else = llm.c model file\n"
          "  --format F         gguf | safetensors | llmc | ckpt: overrides the extension\n"
          "  --type T           weights as f32 (default) | f16 | bf16 | q8_0 | q4_0 (GGUF:\n"
          "                     matrices; norms and biases stay f32); llm.c: f32 or bf16;\n"
          "                     safetensors: f32, f16 or bf16;\n"
          "                     a checkpoint is always f32\n"
          "  --encoder FILE     with --vocab: GPT-2 encoder.json and vocab.bpe, stored in a GGUF\n"
          "  --vocab FILE       file as its tokenizer (tokenizer.ggml.*)\n"
          "  -h, --help\n",
          f);
}

/* "gguf", "llmc", "safetensors" or "ckpt" by the file's first bytes */
static const char *sniff(const char *path)
{
    unsigned char b[8] = {0};
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

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int main(int argc, char **argv)
{
    static const char *const formats[] = {"gguf", "safetensors", "llmc", "ckpt", NULL};
    static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", NULL};
    const char *format = NULL, *type = "f32", *encoder = NULL, *vocab = NULL;
    const char *pos[argc > 0 ? argc : 1];
    cli_opt opts[] = {CLI_C("--format", &format, formats, 0), CLI_C("--type", &type, types, 0),
                      CLI_S("--encoder", &encoder, 0), CLI_S("--vocab", &vocab, 0)};
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
    const char *of = format ? format : ends_with(out, ".gguf") ? "gguf"
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
    if (encoder && strcmp(of, "gguf") != 0) {
        fprintf(stderr, "parlm-convert: only a GGUF file stores a tokenizer (--encoder/--vocab)\n");
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
    parlm_gpt_config cfg = parlm_gpt_get_config(m);
    if (strcmp(of, "gguf") == 0)
        s = parlm_gpt_save_gguf(m, out, wt, encoder, vocab);
    else if (strcmp(of, "safetensors") == 0)
        s = parlm_gpt_save_safetensors(m, out, wt);
    else if (strcmp(of, "llmc") == 0)
        s = parlm_gpt_save_llmc(m, out, wt == PARLM_WT_BF16 ? 5 : 3);
    else {
        st.step = parlm_gpt_get_step(m);
        s = parlm_checkpoint_save(out, m, &st);
    }
    if (s) {
        fprintf(stderr, "parlm-convert: %s\n", parlm_last_error());
        parlm_gpt_free(m);
        return 1;
    }
    struct stat sb;
    long long bytes = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("parlm-convert: wrote %s: %s, GPT-2 L%d NH%d C%d maxT%d V%d, %lld parameters, %s weights%s, %lld bytes (from %s %s)\n",
           out, of, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.max_seq, cfg.vocab,
           (long long)parlm_gpt_num_params(m), type,
           strcmp(of, "gguf") == 0 ? (encoder ? " (norms f32), GPT-2 tokenizer" : " (norms f32), no tokenizer")
           : strcmp(of, "safetensors") == 0 ? ", config.json beside it" : "",
           bytes, inf, in);
    parlm_gpt_free(m);
    return 0;
}
