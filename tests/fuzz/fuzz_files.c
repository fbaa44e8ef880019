/* tests/fuzz/fuzz_files.c — libFuzzer target for every parser of untrusted files: token
 * shards, llm.c model files, parlm checkpoints, llm.c tokenizer files and GPT-2
 * encoder.json + vocab.bpe. The first byte picks the parser; the rest is the file (for
 * GPT-2, split at the first NUL into the two files). Any crash, leak or sanitizer report
 * is a bug: every input must end in PARLM_OK or an error code. Run by .ci/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char a[64], b[64];
    snprintf(a, sizeof a, "/tmp/parlm-fuzz-%d-a", (int)getpid());
    snprintf(b, sizeof b, "/tmp/parlm-fuzz-%d-b", (int)getpid());
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: {
        uint16_t *t;
        size_t count;
        write_file(a, p, n);
        if (parlm_shard_read(a, &t, &count) == PARLM_OK)
            parlm_free(t);
        break;
    }
    case 1: {
        parlm_gpt *m;
        write_file(a, p, n);
        if (parlm_gpt_load_llmc(&m, a) == PARLM_OK)
            parlm_gpt_free(m);
        break;
    }
    case 2: {
        parlm_gpt *m;
        parlm_train_state st;
        write_file(a, p, n);
        if (parlm_checkpoint_load(a, &m, &st) == PARLM_OK)
            parlm_gpt_free(m);
        break;
    }
    case 3: {
        parlm_tokenizer *t;
        write_file(a, p, n);
        if (parlm_tokenizer_load_llmc(&t, a) == PARLM_OK)
            parlm_tokenizer_free(t);
        break;
    }
    case 4: {
        const uint8_t *nul = memchr(p, 0, n);
        size_t na = nul ? (size_t)(nul - p) : n;
        write_file(a, p, na);
        write_file(b, nul ? nul + 1 : p + n, nul ? n - na - 1 : 0);
        parlm_tokenizer *t;
        if (parlm_tokenizer_load_gpt2(&t, a, b) == PARLM_OK) {
            int32_t *ids;
            size_t k;
            if (parlm_tokenizer_encode(t, (const char *)p, n, &ids, &k) == PARLM_OK)
                parlm_free(ids);
            parlm_tokenizer_free(t);
        }
        break;
    }
    }
    unlink(a);
    unlink(b);
    return 0;
}
