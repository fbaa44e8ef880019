/* tests/fuzz/fuzz_formats.c — libFuzzer target for the model-file formats: the GGUF
 * reader (every metadata getter and the conversion of every tensor to f32 are exercised
 * on whatever it accepts) and the GGUF model import (gpt2 or llama). The first byte picks
 * the parser, the rest is the file. Every input must end in PARLM_OK or an error code: any crash, leak
 * or sanitizer report is a bug. Also the safetensors reader (JSON header through Jansson)
 * and the GPT-2 safetensors import with its config.json (selector 3: the input is split at
 * the first NUL into config.json and the safetensors file), and (selector 4) the
 * tokenizer a GGUF file carries, gpt2 or llama. Selectors 5 and 6 fuzz the Hugging Face
 * Llama import's config.json and the sharded checkpoint's model.safetensors.index.json:
 * the input is that file, beside a fixed tiny Llama written once per process (for 5 as one
 * model.safetensors, for 6 in one-tensor shards model-00001-of-00011 ... as fuzz.sh's seed
 * names them).
 * Run by .ci/fuzz.sh. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parlm.h"

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(p, 1, n, f);
    fclose(f);
}

/* reads everything the file claims to have, as a user of the reader would */
static void walk(parlm_gguf *g)
{
    for (int64_t i = 0; i < parlm_gguf_num_kv(g); i++) {
        const char *key = parlm_gguf_kv_key(g, i), *s;
        parlm_gguf_type et;
        uint64_t n, u;
        int64_t v;
        double d;
        int b;
        size_t len;
        const void *data;
        parlm_gguf_kv_type(g, i, &et, &n);
        parlm_gguf_get_uint(g, key, &u);
        parlm_gguf_get_int(g, key, &v);
        parlm_gguf_get_float(g, key, &d);
        parlm_gguf_get_bool(g, key, &b);
        parlm_gguf_get_str(g, key, &s, &len);
        parlm_gguf_get_arr(g, key, &et, &n, &data);
        if (parlm_gguf_get_arr_str(g, key, 0, &s, &len) == PARLM_OK)
            parlm_gguf_get_arr_str(g, key, n - 1, &s, &len);
    }
    for (int64_t i = 0; i < parlm_gguf_num_tensors(g); i++) {
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, i);
        uint64_t count = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (count > (1u << 20))
            continue;
        float *out = malloc((size_t)(count ? count : 1) * sizeof *out);
        if (out)
            parlm_dequantize(t->type, t->data, (int64_t)count, out);
        free(out);
    }
}

static char llama_dir[2][64];

static void remove_llama_dirs(void)
{
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(llama_dir[k]);
        struct dirent *e;
        char p[384];
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", llama_dir[k], e->d_name);
                unlink(p);
            }
        if (d)
            closedir(d);
        rmdir(llama_dir[k]);
    }
}

/* the fixed tiny Llama (L1 NH2 NKV1 C16 F16 V8 maxT4, tied): in one file (k = 0) or in
 * 11 one-tensor shards (k = 1) */
static const char *llama_files(int k)
{
    if (llama_dir[k][0])
        return llama_dir[k];
    snprintf(llama_dir[k], sizeof llama_dir[k], "/tmp/parlm-fuzzfmt-%d.llama%d", (int)getpid(), k);
    parlm_gpt_config c = {.n_layer = 1, .n_head = 2, .n_embd = 16, .max_seq = 4, .vocab = 8,
                          .arch = PARLM_ARCH_LLAMA, .n_kv_head = 1, .ffn_hidden = 16};
    parlm_gpt *m;
    if (parlm_gpt_create(&m, &c, 1) == PARLM_OK) {
        parlm_gpt_save_safetensors_sharded(m, llama_dir[k], PARLM_WT_F32, (uint64_t)k, NULL);
        parlm_gpt_free(m);
    }
    if (!llama_dir[!k][0])
        atexit(remove_llama_dirs);
    return llama_dir[k];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char a[64], d[64], cfg[96], model[96];
    snprintf(a, sizeof a, "/tmp/parlm-fuzzfmt-%d", (int)getpid());
    snprintf(d, sizeof d, "/tmp/parlm-fuzzfmt-%d.d", (int)getpid());
    snprintf(cfg, sizeof cfg, "%s/config.json", d);
    snprintf(model, sizeof model, "%s/model.safetensors", d);
    mkdir(d, 0700);
    write_file(a, data + 1, size - 1);
    switch (data[0] % 7) {
    case 0: {
        parlm_gguf *g;
        if (parlm_gguf_open(&g, a) == PARLM_OK) {
            walk(g);
            parlm_gguf_close(g);
        }
        break;
    }
    case 1: { /* loaded as a copy; run in place (mapped), with a prompt and a decode step */
        parlm_gpt *m;
        if (parlm_gpt_load_gguf(&m, a) == PARLM_OK)
            parlm_gpt_free(m);
        if (parlm_gpt_map_gguf(&m, a, NULL) == PARLM_OK) {
            parlm_gpt_config c = parlm_gpt_get_config(m);
            float *lg = malloc((size_t)c.vocab_pad * sizeof *lg);
            int32_t t[2] = {0, c.vocab - 1};
            if (lg && c.max_seq >= 3 && (int64_t)c.max_seq * c.n_embd * c.n_layer <= (1 << 24) &&
                parlm_gpt_infer(m, t, 2, 0, lg) == PARLM_OK)
                parlm_gpt_infer(m, t, 1, 2, lg);
            free(lg);
            parlm_gpt_free(m);
        }
        break;
    }
    case 2: {
        parlm_safetensors *st;
        if (parlm_safetensors_open(&st, a) == PARLM_OK) {
            for (int64_t i = 0; i < parlm_safetensors_num_tensors(st); i++) {
                const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, i);
                uint64_t n = t->size / (t->type == PARLM_WT_F32 ? 4 : 2);
                float *out = n <= (1u << 20) ? malloc((size_t)(n ? n : 1) * sizeof *out) : NULL;
                if (out)
                    parlm_dequantize(t->type, t->data, (int64_t)n, out);
                free(out);
            }
            parlm_safetensors_meta(st, "format");
            parlm_safetensors_close(st);
        }
        break;
    }
    case 3: {
        const uint8_t *p = data + 1, *nul = memchr(p, 0, size - 1);
        size_t na = nul ? (size_t)(nul - p) : size - 1;
        write_file(cfg, p, na);
        write_file(model, nul ? nul + 1 : p + na, nul ? size - 1 - na - 1 : 0);
        parlm_gpt *m;
        if (parlm_gpt_load_safetensors(&m, model) == PARLM_OK)
            parlm_gpt_free(m);
        break;
    }
    case 4: { /* the tokenizer in the GGUF metadata; what loads must encode and decode */
        parlm_tokenizer *tok;
        if (parlm_tokenizer_load_gguf(&tok, a) == PARLM_OK) {
            static const char text[] = "Hello w\xc3\xb6rld \xe6\x97\xa5\xff <s> ab  c";
            int32_t *ids;
            size_t n;
            if (parlm_tokenizer_encode_special(tok, text, sizeof text - 1, 1, &ids, &n) ==
                PARLM_OK) {
                char *back;
                size_t len;
                if (parlm_tokenizer_decode(tok, ids, n, &back, &len) == PARLM_OK)
                    parlm_free(back);
                parlm_free(ids);
            }
            parlm_tokenizer_free(tok);
        }
        break;
    }
    case 5:   /* config.json beside the tiny Llama's shards */
    case 6: { /* model.safetensors.index.json */
        const char *ld = llama_files(data[0] % 7 - 5);
        char p[128];
        snprintf(p, sizeof p, "%s/%s", ld, data[0] % 7 == 5 ? "config.json" : "model.safetensors.index.json");
        write_file(p, data + 1, size - 1);
        parlm_gpt *m;
        if (parlm_gpt_load_safetensors(&m, ld) == PARLM_OK)
            parlm_gpt_free(m);
        break;
    }
    }
    unlink(a);
    unlink(cfg);
    unlink(model);
    rmdir(d);
    return 0;
}
