/* tests/gguf_tool.c — helper of tests/gguf_npm.sh and the fuzz seeds: `write PATH
 * [encoder.json vocab.bpe]` writes a tiny GPT-2 GGUF (Q8_0 matrices, the tokenizer if
 * given), PATH.llama.gguf a tiny Llama (GQA, untied head, Q8_0), PATH.types.gguf with one
 * metadata key and tensor of every type, and (without a
 * vocabulary) PATH.st/model.safetensors + config.json; `dump PATH` prints what parlm's reader sees, one canonical line per
 * fact, in the format tests/gguf_npm.mjs prints for @huggingface/gguf's view. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "parlm.h"

static void put_json(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c == '\r')
            printf("\\r");
        else if (c == '\b')
            printf("\\b");
        else if (c == '\f')
            printf("\\f");
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* one scalar at p of type t, as the JS side prints it */
static void put_scalar(parlm_gguf_type t, const unsigned char *p)
{
    uint64_t u = 0;
    int n = t == PARLM_GGUF_U8 || t == PARLM_GGUF_I8 || t == PARLM_GGUF_BOOL ? 1
          : t == PARLM_GGUF_U16 || t == PARLM_GGUF_I16                     ? 2
          : t == PARLM_GGUF_U32 || t == PARLM_GGUF_I32 || t == PARLM_GGUF_F32 ? 4 : 8;
    for (int i = n - 1; i >= 0; i--)
        u = u << 8 | p[i];
    switch (t) {
    case PARLM_GGUF_I8: printf("%d", (int8_t)u); break;
    case PARLM_GGUF_I16: printf("%d", (int16_t)u); break;
    case PARLM_GGUF_I32: printf("%d", (int32_t)u); break;
    case PARLM_GGUF_I64: printf("%lld", (long long)(int64_t)u); break;
    case PARLM_GGUF_BOOL: printf("%s", u ? "true" : "false"); break;
    case PARLM_GGUF_F32: printf("f32:%08llx", (unsigned long long)u); break;
    case PARLM_GGUF_F64: printf("f64:%016llx", (unsigned long long)u); break;
    default: printf("%llu", (unsigned long long)u); break;
    }
}

static int dump(const char *path)
{
    parlm_gguf *g;
    if (parlm_gguf_open(&g, path) != PARLM_OK) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    printf("header version=%u tensors=%lld kv=%lld data_offset=%llu\n", parlm_gguf_version(g),
           (long long)parlm_gguf_num_tensors(g), (long long)parlm_gguf_num_kv(g),
           (unsigned long long)parlm_gguf_data_offset(g));
    for (int64_t i = 0; i < parlm_gguf_num_kv(g); i++) {
        const char *key = parlm_gguf_kv_key(g, i), *s;
        parlm_gguf_type et;
        uint64_t n;
        size_t len;
        const void *data;
        printf("kv %s = ", key);
        switch (parlm_gguf_kv_type(g, i, &et, &n)) {
        case PARLM_GGUF_STRING:
            parlm_gguf_get_str(g, key, &s, &len);
            put_json(s, len);
            break;
        case PARLM_GGUF_ARRAY:
            printf("[%llu]", (unsigned long long)n);
            for (uint64_t k = 0; k < n; k++) {
                putchar(' ');
                if (et == PARLM_GGUF_STRING) {
                    parlm_gguf_get_arr_str(g, key, k, &s, &len);
                    put_json(s, len);
                } else if (parlm_gguf_get_arr(g, key, &et, &n, &data) == PARLM_OK) {
                    int sz = et <= PARLM_GGUF_I8 || et == PARLM_GGUF_BOOL ? 1
                           : et <= PARLM_GGUF_I16                        ? 2
                           : et <= PARLM_GGUF_F32                        ? 4 : 8;
                    put_scalar(et, (const unsigned char *)data + k * (uint64_t)sz);
                } else
                    printf("?");
            }
            break;
        default: {
            /* a scalar: find its bytes through a one-element view */
            parlm_gguf_type t = parlm_gguf_kv_type(g, i, NULL, NULL);
            uint64_t u;
            int64_t v;
            double d;
            int b;
            if (t == PARLM_GGUF_F32 || t == PARLM_GGUF_F64) {
                parlm_gguf_get_float(g, key, &d);
                if (t == PARLM_GGUF_F32) {
                    float f = (float)d;
                    uint32_t bits;
                    memcpy(&bits, &f, 4);
                    printf("f32:%08x", bits);
                } else {
                    uint64_t bits;
                    memcpy(&bits, &d, 8);
                    printf("f64:%016llx", (unsigned long long)bits);
                }
            } else if (t == PARLM_GGUF_BOOL) {
                parlm_gguf_get_bool(g, key, &b);
                printf("%s", b ? "true" : "false");
            } else if (parlm_gguf_get_uint(g, key, &u) == PARLM_OK)
                printf("%llu", (unsigned long long)u);
            else if (parlm_gguf_get_int(g, key, &v) == PARLM_OK)
                printf("%lld", (long long)v);
        }
        }
        putchar('\n');
    }
    for (int64_t i = 0; i < parlm_gguf_num_tensors(g); i++) {
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, i);
        printf("tensor %s dims=%d shape=", t->name, t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            printf("%s%llu", d ? "," : "", (unsigned long long)t->ne[d]);
        printf(" type=%d offset=%llu\n", (int)t->type, (unsigned long long)t->offset);
    }
    parlm_gguf_close(g);
    return 0;
}

static int write_sample(const char *path, const char *enc, const char *bpe)
{
    parlm_gpt_config c = {0};
    parlm_gpt *m;
    parlm_gguf_writer *w;
    /* small (a 20 kB file: quick to fuzz) unless the GPT-2 vocabulary needs its rows */
    c.n_layer = 1, c.n_head = 2, c.n_embd = 32, c.max_seq = 8, c.vocab = 16;
    if (enc)
        c.n_layer = 2, c.n_embd = 64, c.vocab = 50257;
    if (parlm_gpt_create(&m, &c, 5) != PARLM_OK ||
        parlm_gpt_save_gguf(m, path, PARLM_WT_Q8_0, enc, bpe) != PARLM_OK) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    /* the same model as Hugging Face safetensors + config.json, in PATH.st/ */
    char st[4096];
    snprintf(st, sizeof st, "%s.st", path);
    mkdir(st, 0755);
    snprintf(st, sizeof st, "%s.st/model.safetensors", path);
    if (!enc && parlm_gpt_save_safetensors(m, st, PARLM_WT_F32) != PARLM_OK) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    parlm_gpt_free(m);
    /* a Llama beside it: 4 heads on 2 KV heads, SwiGLU 48, an untied head */
    parlm_gpt_config lc = {.n_layer = 1, .n_head = 4, .n_embd = 32, .max_seq = 8, .vocab = 16,
                           .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2, .ffn_hidden = 48,
                           .untied_head = 1};
    char lpath[4096];
    snprintf(lpath, sizeof lpath, "%s.llama.gguf", path);
    if (parlm_gpt_create(&m, &lc, 6) != PARLM_OK ||
        parlm_gpt_save_gguf(m, lpath, PARLM_WT_Q8_0, NULL, NULL) != PARLM_OK) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    parlm_gpt_free(m);
    /* a second file beside it: one key of every type and tensors of every type */
    char other[4096];
    snprintf(other, sizeof other, "%s.types.gguf", path);
    uint8_t u8 = 255, bo = 1;
    int8_t i8 = -128;
    uint16_t u16 = 65535;
    int16_t i16 = -32768;
    uint32_t u32 = 4294967295u;
    int32_t i32 = -2147483647 - 1;
    uint64_t u64 = 18446744073709551615ull;
    int64_t i64 = -9223372036854775807ll - 1;
    float f32 = -0.1f;
    double f64 = 1e-300;
    int16_t arr[3] = {-1, 0, 1};
    const char *strs[3] = {"tab\there", "quote\"back\\slash", "ünï"};
    float x[64];
    static unsigned char buf[5][256];
    parlm_wtype types[5] = {PARLM_WT_F32, PARLM_WT_F16, PARLM_WT_BF16, PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    uint64_t ne[2] = {32, 2};
    for (int i = 0; i < 64; i++)
        x[i] = (float)i / 7.0f - 4.0f;
    if (parlm_gguf_writer_create(&w) ||
        parlm_gguf_set_str(w, "general.architecture", "parlmtest", 9) ||
        parlm_gguf_set(w, "t.u8", PARLM_GGUF_U8, &u8) || parlm_gguf_set(w, "t.i8", PARLM_GGUF_I8, &i8) ||
        parlm_gguf_set(w, "t.u16", PARLM_GGUF_U16, &u16) || parlm_gguf_set(w, "t.i16", PARLM_GGUF_I16, &i16) ||
        parlm_gguf_set(w, "t.u32", PARLM_GGUF_U32, &u32) || parlm_gguf_set(w, "t.i32", PARLM_GGUF_I32, &i32) ||
        parlm_gguf_set(w, "t.u64", PARLM_GGUF_U64, &u64) || parlm_gguf_set(w, "t.i64", PARLM_GGUF_I64, &i64) ||
        parlm_gguf_set(w, "t.f32", PARLM_GGUF_F32, &f32) || parlm_gguf_set(w, "t.f64", PARLM_GGUF_F64, &f64) ||
        parlm_gguf_set(w, "t.bool", PARLM_GGUF_BOOL, &bo) ||
        parlm_gguf_set_arr(w, "t.i16s", PARLM_GGUF_I16, 3, arr) ||
        parlm_gguf_set_arr_str(w, "t.strs", 3, strs, NULL)) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", parlm_wtype_name(types[i]));
        if (parlm_quantize(types[i], x, 64, buf[i]) ||
            parlm_gguf_add_tensor(w, name, types[i], 2, ne, buf[i])) {
            fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
            return 1;
        }
    }
    parlm_status s = parlm_gguf_write(w, other);
    parlm_gguf_writer_free(w);
    if (s) {
        fprintf(stderr, "gguf_tool: %s\n", parlm_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "dump") == 0)
        return dump(argv[2]);
    if ((argc == 3 || argc == 5) && strcmp(argv[1], "write") == 0)
        return write_sample(argv[2], argc == 5 ? argv[3] : NULL, argc == 5 ? argv[4] : NULL);
    fprintf(stderr, "usage: gguf_tool dump FILE | write FILE [encoder.json vocab.bpe]\n");
    return 2;
}
