/* tests/io/st_tool.c — helper of tests/io/st_numpy.sh (the Llama safetensors layout checked
 * by a numpy forward written the Hugging Face way):
 *   st_tool write DIR tied|untied SHARD_BYTES LOGITS  a small GQA Llama with random weights
 *       (norm weights around 1, rope theta 5e5, linear scaling 2) saved as safetensors into
 *       DIR (shards of SHARD_BYTES, 0: one file); LOGITS gets its logits for TOKENS
 *   st_tool logits PATH LOGITS  loads PATH (a file, an index or a directory) and writes
 *       the logits of TOKENS
 * LOGITS: one line per position, the V real logits "%.9g". TOKENS: 0 5 69 3 17 42 8 1 33. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"

static const int32_t tokens[] = {0, 5, 69, 3, 17, 42, 8, 1, 33};
#define NTOK ((int)(sizeof tokens / sizeof tokens[0]))

static int fail(const char *what)
{
    fprintf(stderr, "st_tool: %s: %s\n", what, parlm_last_error());
    return 1;
}

static int write_logits(parlm_gpt *m, const char *path)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    if (parlm_gpt_setup(m, 1, NTOK, 0) || parlm_gpt_forward(m, tokens, NULL, NULL))
        return fail("forward");
    const float *lg = parlm_gpt_logits(m);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "st_tool: cannot write %s\n", path);
        return 1;
    }
    for (int t = 0; t < NTOK; t++)
        for (int v = 0; v < c.vocab; v++)
            fprintf(f, "%.9g%c", (double)lg[(size_t)t * (size_t)c.vocab_pad + (size_t)v],
                    v + 1 < c.vocab ? ' ' : '\n');
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    parlm_gpt *m = NULL;
    int r;
    if (argc == 6 && strcmp(argv[1], "write") == 0) {
        parlm_gpt_config c = {.n_layer = 2, .n_head = 4, .n_embd = 32, .max_seq = 16,
                              .vocab = 70, .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2,
                              .ffn_hidden = 48, .untied_head = strcmp(argv[3], "untied") == 0,
                              .rope_theta = 5e5f, .rope_scale = 2.0f, .norm_eps = 1e-6f};
        if (parlm_gpt_create(&m, &c, 3))
            return fail("create");
        c = parlm_gpt_get_config(m);
        /* weights of size 1/sqrt(fan-in) (parlm's init, 0.02, would leave attention almost
         * uniform and hide a misplaced rotary pair); norms 1 +- 0.5 */
        uint64_t x = 88172645463325252ull;
        float *p = parlm_gpt_params(m);
        for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
            const char *kind;
            int layer;
            int64_t off, count;
            parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &count);
            int norm = strstr(kind, "norm") != NULL;
            float a = strcmp(kind, "w_down") == 0 ? 0.25f : 0.3f;
            int64_t n = strcmp(kind, "wte") == 0 || strcmp(kind, "lm_head") == 0
                            ? (int64_t)c.vocab * c.n_embd
                            : count; /* padding rows stay 0 */
            for (int64_t k = 0; k < n; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                float u = (float)(x >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
                p[off + k] = norm ? 1.0f + 0.5f * u : (strcmp(kind, "wte") == 0 ? 1.0f : a) * u;
            }
        }
        int ns;
        if (parlm_gpt_save_safetensors_sharded(m, argv[2], PARLM_WT_F32,
                                               strtoull(argv[4], NULL, 10), &ns)) {
            parlm_gpt_free(m);
            return fail("save");
        }
        printf("st_tool: wrote %s (%d shard%s)\n", argv[2], ns, ns > 1 ? "s" : "");
        r = write_logits(m, argv[5]);
    } else if (argc == 4 && strcmp(argv[1], "logits") == 0) {
        if (parlm_gpt_load_safetensors(&m, argv[2]))
            return fail(argv[2]);
        r = write_logits(m, argv[3]);
    } else {
        fprintf(stderr, "usage: st_tool write DIR tied|untied SHARD_BYTES LOGITS | logits PATH LOGITS\n");
        return 2;
    }
    parlm_gpt_free(m);
    return r;
}
