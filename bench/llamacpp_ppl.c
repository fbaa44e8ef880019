/* bench/llamacpp_ppl.c — llama.cpp's perplexity, computed by parlm, to check a model
 * against llama.cpp on the same weights: the text is encoded with the GPT-2 tokenizer (no
 * BOS, as llama.cpp's gpt2 vocabulary), cut into chunks of CTX tokens, and in each chunk
 * the tokens from CTX/2 on are predicted from the ones before them (the scheme of
 * llama.cpp's examples/perplexity); the same count and PPL as `llama-perplexity -c CTX`.
 * The model is any file parlm loads (a checkpoint, an llm.c file; a GGUF through
 * parlm-convert to .ckpt), decoded a token at a time in f32 or on Q8_0 / Q4_0 copies of its
 * weights; or ("mapped") a GGUF file run in place, each chunk one batched forward, as
 * llama-perplexity runs it (prompt-style products: activations rounded to 8 bits a block).
 * Not part of the build (a by-hand check; bench/llamacpp_check.sh builds and runs it):
 *   gcc -O2 -fopenmp -Iinclude -Ibuild/include bench/llamacpp_ppl.c -o llamacpp_ppl \
 *       -Lbuild/lib/.libs -lparlm -lm -Wl,-rpath,$PWD/build/lib/.libs
 *   ./llamacpp_ppl MODEL encoder.json vocab.bpe TEXT CTX [f32|q8_0|q4_0|mapped]   */
#include <math.h>
#include <parlm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "llamacpp_ppl: %s: %s\n", what, parlm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: llamacpp_ppl MODEL encoder.json vocab.bpe TEXT CTX [type]\n");
        return 2;
    }
    int ctx = atoi(argv[5]);
    parlm_tokenizer *tok;
    parlm_gpt *m;
    if (parlm_tokenizer_load_gpt2(&tok, argv[2], argv[3]) != PARLM_OK)
        return fail("tokenizer");
    const int mapped = argc > 6 && !strcmp(argv[6], "mapped");
    parlm_gguf_load_info info = {PARLM_WT_F32, 1};
    if (mapped ? parlm_gpt_map_gguf(&m, argv[1], &info) != PARLM_OK
               : parlm_gpt_load(&m, argv[1], NULL) != PARLM_OK)
        return fail(argv[1]);
    parlm_wtype wt = mapped ? info.wtype : PARLM_WT_F32;
    if (argc > 6 && !mapped && (parlm_wtype_parse(argv[6], &wt) != PARLM_OK ||
                                parlm_gpt_set_decode_type(m, wt) != PARLM_OK))
        return fail(argv[6]);
    parlm_gpt_config c = parlm_gpt_get_config(m);
    if (ctx < 4 || ctx > c.max_seq) {
        fprintf(stderr, "llamacpp_ppl: CTX %d outside 4..%d (the model's context)\n", ctx,
                c.max_seq);
        return 2;
    }
    char *text;
    size_t len;
    FILE *f = fopen(argv[4], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (long)(len = (size_t)ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
        !(text = malloc(len + 1)) || fread(text, 1, len, f) != len) {
        fprintf(stderr, "llamacpp_ppl: cannot read %s\n", argv[4]);
        return 1;
    }
    fclose(f);
    int32_t *ids;
    size_t n;
    if (parlm_tokenizer_encode(tok, text, len, &ids, &n) != PARLM_OK)
        return fail("encode");
    float *logits = malloc((size_t)c.vocab_pad * sizeof *logits);
    if (!logits)
        return 1;
    int first = ctx / 2;
    size_t chunks = n / (size_t)ctx;
    double nll = 0;
    long count = 0;
    if (mapped && parlm_gpt_setup(m, 1, ctx, 0) != PARLM_OK)
        return fail("setup");
    for (size_t ch = 0; ch < chunks; ch++)
        for (int j = 0; j + 1 < ctx; j++) {
            int32_t in = ids[ch * (size_t)ctx + (size_t)j];
            if (mapped && j == 0 && parlm_gpt_forward(m, ids + ch * (size_t)ctx, NULL, NULL) != PARLM_OK)
                return fail("forward");
            if (mapped)
                memcpy(logits, parlm_gpt_logits(m) + (size_t)j * (size_t)c.vocab_pad,
                       (size_t)c.vocab_pad * sizeof *logits);
            else if (parlm_gpt_infer(m, &in, 1, j, logits) != PARLM_OK)
                return fail("decode");
            if (j < first)
                continue;
            double mx = logits[0], sum = 0;
            for (int v = 1; v < c.vocab; v++)
                mx = logits[v] > mx ? logits[v] : mx;
            for (int v = 0; v < c.vocab; v++)
                sum += exp(logits[v] - mx);
            nll += mx + log(sum) - logits[ids[ch * (size_t)ctx + (size_t)j + 1]];
            count++;
        }
    printf("parlm (%s%s): %zu tokens, %zu chunks of %d, %ld predicted, PPL = %.4f\n",
           parlm_wtype_name(wt), mapped ? ", mapped" : "", n, chunks, ctx, count, exp(nll / (double)count));
    free(logits);
    free(text);
    parlm_free(ids);
    parlm_gpt_free(m);
    parlm_tokenizer_free(tok);
    return 0;
}
