/* tests/fuzz/fuzz_formats.c — libFuzzer target for the model-file formats: the GGUF
 * reader (every metadata getter and the conversion of every tensor to f32 are exercised
 * on whatever it accepts) and the GPT-2 GGUF import. The first byte picks the parser, the
 * rest is the file. Every input must end in PARLM_OK or an error code: any crash, leak
 * or sanitizer report is a bug. Run by .ci/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char a[64];
    snprintf(a, sizeof a, "/tmp/parlm-fuzzfmt-%d", (int)getpid());
    write_file(a, data + 1, size - 1);
    switch (data[0] % 2) {
    case 0: {
        parlm_gguf *g;
        if (parlm_gguf_open(&g, a) == PARLM_OK) {
            walk(g);
            parlm_gguf_close(g);
        }
        break;
    }
    case 1: {
        parlm_gpt *m;
        if (parlm_gpt_load_gguf(&m, a) == PARLM_OK)
            parlm_gpt_free(m);
        break;
    }
    }
    unlink(a);
    return 0;
}
