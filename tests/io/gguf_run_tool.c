/* tests/io/gguf_run_tool.c — helper of tests/io/gguf_run.sh and tests/serve/serve_gguf.sh.
 * `write DIR` writes two small random models and their tokenizers:
 *   DIR/encoder.json, DIR/vocab.bpe  a GPT-2 byte-level vocabulary (256 bytes, a few
 *                                    merges, <|endoftext|>) in OpenAI's file formats;
 *   DIR/gpt2.ckpt                    a GPT-2 (L2 NH2 C64, context 64) of that vocabulary;
 * weights 6 times GPT-2's init (text that depends on the context, unlike at the init);
 *   DIR/bytes.ckpt                   a GPT-2 (L1 NH2 C32) of byte tokens (vocabulary 256);
 *   DIR/llama.ckpt                   a Llama (L2 NH4 NKV2 C64 F128, untied head, context 64)
 *                                    of a SentencePiece-style vocabulary (byte fallback)
 *                                    whose greedy text is made of its 32 pieces;
 *   DIR/llama.gguf, llama_q8_0.gguf, llama_q4_0.gguf   that Llama with its tokenizer in
 *                                    the file (parlm_gpt_save_gguf_tok), f32, Q8_0, Q4_0.
 * `prompt GGUF TEXT` prints, as a JSON array, the token ids parlm-generate starts from:
 * end-of-text then the text's tokens for a GPT-2 vocabulary, BOS then the tokens for a
 * Llama one. Exit 1 with a message on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        if ((call) != PARLM_OK) {                                                        \
            fprintf(stderr, "gguf_run_tool: %s: %s\n", #call, parlm_last_error());       \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* GPT-2's printable spelling of byte b (bytes_to_unicode), UTF-8 into out; its length */
static int spell(unsigned b, char *out)
{
    int direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    unsigned cp = b;
    if (!direct) { /* the n-th byte without a printable self, in byte order, is 256 + n */
        cp = 256;
        for (unsigned x = 0; x < b; x++)
            cp += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* a JSON string of s (GPT-2 spellings are printable; escape what JSON needs) */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int write_gpt2_vocab(const char *dir)
{
    /* merges over GPT-2 spellings ("\xc4\xa0" is U+0120, the spelling of a space) */
    static const char *const merges[][2] = {
        {"t", "h"}, {"th", "e"}, {"\xc4\xa0", "the"}, {"l", "l"}, {"e", "ll"}, {"h", "ell"},
        {"hell", "o"}, {"\xc4\xa0", "hello"}, {"o", "r"}, {"w", "or"}, {"wor", "l"},
        {"worl", "d"}, {"\xc4\xa0", "world"}, {"i", "n"}, {"\xc4\xa0", "in"}, {"a", "n"}};
    const int nm = (int)(sizeof merges / sizeof merges[0]);
    char path[4096];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    FILE *e = fopen(path, "w");
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    FILE *v = fopen(path, "w");
    if (!e || !v) {
        fprintf(stderr, "gguf_run_tool: cannot write the vocabulary into %s\n", dir);
        exit(1);
    }
    fputc('{', e);
    for (unsigned b = 0; b < 256; b++) {
        char s[3] = {0};
        spell(b, s);
        json_str(e, s);
        fprintf(e, ": %u, ", b);
    }
    fprintf(v, "#version: 0.2\n");
    for (int i = 0; i < nm; i++) {
        char s[64];
        snprintf(s, sizeof s, "%s%s", merges[i][0], merges[i][1]);
        json_str(e, s);
        fprintf(e, ": %d, ", 256 + i);
        fprintf(v, "%s %s\n", merges[i][0], merges[i][1]);
    }
    fprintf(e, "\"<|endoftext|>\": %d}", 256 + nm);
    fclose(e);
    fclose(v);
    return 256 + nm + 1;
}

/* a Llama vocabulary: <unk> <s> </s>, the 256 byte tokens, then scored pieces */
static parlm_tokenizer *llama_vocab(void)
{
    static const char *const words[] = {
        "\xe2\x96\x81", "e", "t", "h", "o", "l", "a", "n", "i", "s", "r", "d", "w",
        "th", "he", "\xe2\x96\x81t", "\xe2\x96\x81th", "\xe2\x96\x81the", "ll", "llo",
        "hello", "\xe2\x96\x81hello", "or", "wor", "world", "\xe2\x96\x81world", "in",
        "\xe2\x96\x81in", "an", "\xe2\x96\x81" "an", "is", "\xe2\x96\x81is"};
    enum { NW = sizeof words / sizeof words[0], N = 3 + 256 + NW };
    static char bytes[256][8];
    const char *pieces[N];
    float scores[N];
    int32_t types[N];
    pieces[0] = "<unk>", pieces[1] = "<s>", pieces[2] = "</s>";
    types[0] = PARLM_TOKEN_UNKNOWN, types[1] = types[2] = PARLM_TOKEN_CONTROL;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[3 + b] = bytes[b], types[3 + b] = PARLM_TOKEN_BYTE, scores[3 + b] = 0;
    }
    for (int i = 0; i < NW; i++) /* longer pieces score higher: merged first */
        pieces[259 + i] = words[i], types[259 + i] = PARLM_TOKEN_NORMAL,
                    scores[259 + i] = (float)strlen(words[i]) - 0.01f * (float)i;
    parlm_llama_vocab v = {N, pieces, NULL, scores, types, 1, 2, 0, -1, 1, 0, 1};
    parlm_tokenizer *t;
    CHECK(parlm_tokenizer_create_llama(&t, &v));
    return t;
}

static void save_ckpt(parlm_gpt *m, const char *dir, const char *name)
{
    char path[4096];
    parlm_train_state st = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(parlm_checkpoint_save(path, m, &st));
}

static int write_models(const char *dir)
{
    int V = write_gpt2_vocab(dir);
    parlm_gpt_config g = {.n_layer = 2, .n_head = 2, .n_embd = 64, .max_seq = 64, .vocab = V};
    parlm_gpt *m;
    CHECK(parlm_gpt_create(&m, &g, 11));
    /* as for the Llama below: weights * 6, and the tied embedding rows of the bytes >= 128
     * zero (never the largest logit: the greedy text is valid UTF-8) */
    for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
        parlm_gpt_params(m)[i] *= 6.0f;
    memset(parlm_gpt_params(m) + 128 * g.n_embd, 0, 128 * (size_t)g.n_embd * sizeof(float));
    save_ckpt(m, dir, "gpt2.ckpt");
    parlm_gpt_free(m);
    parlm_gpt_config b = {.n_layer = 1, .n_head = 2, .n_embd = 32, .max_seq = 16, .vocab = 256};
    CHECK(parlm_gpt_create(&m, &b, 13));
    save_ckpt(m, dir, "bytes.ckpt");
    parlm_gpt_free(m);

    parlm_tokenizer *tok = llama_vocab();
    parlm_gpt_config l = {.n_layer = 2, .n_head = 4, .n_embd = 64, .max_seq = 64,
                          .vocab = parlm_tokenizer_vocab_size(tok), .arch = PARLM_ARCH_LLAMA,
                          .n_kv_head = 2, .ffn_hidden = 128, .untied_head = 1,
                          .rope_theta = 1000.0f, .norm_eps = 1e-6f};
    CHECK(parlm_gpt_create(&m, &l, 12));
    /* weights of std 0.02 * 6: the text then depends on the context (at GPT-2's init a
     * random model repeats one token) */
    for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
        parlm_gpt_params(m)[i] *= 6.0f;
    /* the head's rows of the control and byte tokens are zero: their logits are exactly 0,
     * below the largest of the 32 pieces' random logits (all 32 negative: odds 2^-32), so
     * greedy text is whole UTF-8 pieces (parlm-serve's JSON would replace stray bytes) */
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *name;
        int layer;
        int64_t off, count;
        CHECK(parlm_gpt_tensor_info(m, i, &name, &layer, &off, &count));
        if (strcmp(name, "lm_head") == 0)
            memset(parlm_gpt_params(m) + off, 0, 259 * (size_t)l.n_embd * sizeof(float));
    }
    save_ckpt(m, dir, "llama.ckpt");
    static const struct {
        const char *file;
        parlm_wtype type;
    } out[] = {{"llama.gguf", PARLM_WT_F32},
               {"llama_q8_0.gguf", PARLM_WT_Q8_0},
               {"llama_q4_0.gguf", PARLM_WT_Q4_0}};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, out[i].file);
        CHECK(parlm_gpt_save_gguf_tok(m, path, out[i].type, tok));
    }
    parlm_gpt_free(m);
    parlm_tokenizer_free(tok);
    return 0;
}

static int print_prompt(const char *gguf, const char *text)
{
    parlm_tokenizer *tok;
    CHECK(parlm_tokenizer_load_gguf(&tok, gguf));
    int bos = parlm_tokenizer_bos(tok);
    int32_t *ids;
    size_t n;
    CHECK(parlm_tokenizer_encode(tok, text, strlen(text), &ids, &n));
    printf("[%d", bos >= 0 ? bos : parlm_tokenizer_eot(tok));
    for (size_t i = 0; i < n; i++)
        printf(",%d", ids[i]);
    printf("]\n");
    parlm_free(ids);
    parlm_tokenizer_free(tok);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        return write_models(argv[2]);
    if (argc == 4 && strcmp(argv[1], "prompt") == 0)
        return print_prompt(argv[2], argv[3]);
    fprintf(stderr, "usage: gguf_run_tool write DIR | prompt GGUF TEXT\n");
    return 2;
}
