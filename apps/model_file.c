/* apps/model_file.c — the model and the tokenizer a program runs: a GGUF file alone, or a
 * checkpoint / llm.c file with tokenizer options (see model_file.h). */
#include "model_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mf_is_gguf(const char *path)
{
    unsigned char b[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == 4 && memcmp(b, "GGUF", 4) == 0;
}

int mf_tok_check(const char *prog, const mf_tok_opts *o)
{
    if ((!o->encoder) != (!o->vocab)) {
        fprintf(stderr, "%s: --encoder and --vocab go together\n", prog);
        return 2;
    }
    if ((o->encoder != NULL) + (o->tok_gguf != NULL) + (o->llmc != NULL) > 1) {
        fprintf(stderr, "%s: give one tokenizer: --encoder/--vocab, --tokenizer or "
                "--llmc-tokenizer\n", prog);
        return 2;
    }
    return 0;
}

/* The tokenizer of a GGUF file; one without tokenizer.ggml.model gets the options that
 * give a tokenizer instead in its message, unless bytes (V <= 256, bytes_ok) will do, as
 * for a checkpoint of a byte-level model. */
static int gguf_tokenizer(const char *prog, const char *path, int bytes_ok,
                          parlm_tokenizer **out)
{
    parlm_gguf *g;
    if (parlm_gguf_open(&g, path) != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    int has = parlm_gguf_find_kv(g, "tokenizer.ggml.model") >= 0;
    parlm_gguf_close(g);
    if (!has && bytes_ok) {
        if (parlm_tokenizer_bytes(out) == PARLM_OK)
            return 0;
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    if (!has) {
        fprintf(stderr, "%s: %s holds no tokenizer: metadata key tokenizer.ggml.model is "
                "missing (and with it tokenizer.ggml.tokens); give one with --encoder "
                "encoder.json --vocab vocab.bpe (GPT-2), --tokenizer FILE.gguf (a GGUF file "
                "that has one) or --llmc-tokenizer gpt2_tokenizer.bin\n", prog, path);
        return 1;
    }
    if (parlm_tokenizer_load_gguf(out, path) != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    return 0;
}

int mf_tokenizer(const char *prog, const char *model_path, int model_is_gguf,
                 const mf_tok_opts *o, int V, parlm_tokenizer **out)
{
    *out = NULL;
    parlm_status st;
    if (o->encoder)
        st = parlm_tokenizer_load_gpt2(out, o->encoder, o->vocab);
    else if (o->llmc)
        st = parlm_tokenizer_load_llmc(out, o->llmc);
    else if (o->tok_gguf || model_is_gguf)
        return gguf_tokenizer(prog, o->tok_gguf ? o->tok_gguf : model_path,
                              !o->tok_gguf && V <= 256, out);
    else if (V > 256) { /* the byte tokenizer would print nothing */
        fprintf(stderr, "%s: %s has a vocabulary of %d tokens, not bytes: pass its "
                "tokenizer files, --encoder encoder.json --vocab vocab.bpe (GPT-2), "
                "--tokenizer FILE.gguf or --llmc-tokenizer gpt2_tokenizer.bin\n", prog,
                model_path, V);
        return 1;
    } else
        st = parlm_tokenizer_bytes(out);
    if (st != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    return 0;
}

int mf_prompt(const char *prog, const parlm_tokenizer *tok, const char *prompt, int32_t **ids,
              int *n)
{
    const int bos = parlm_tokenizer_bos(tok), eot = parlm_tokenizer_eot(tok);
    int32_t *e = NULL;
    size_t ne = 0;
    if (prompt && parlm_tokenizer_encode_special(tok, prompt, strlen(prompt), bos >= 0, &e,
                                                 &ne) != PARLM_OK) {
        fprintf(stderr, "%s: --prompt: %s\n", prog, parlm_last_error());
        return 1;
    }
    /* the first token: BOS for a Llama vocabulary (already there unless the prompt was
     * empty or the vocabulary does not add it), else end-of-text or a newline */
    const int first = bos >= 0 ? bos : eot >= 0 ? eot : '\n';
    const int lead = bos >= 0 ? ne == 0 : 1;
    *ids = malloc((ne + 1) * sizeof **ids);
    if (!*ids) {
        parlm_free(e);
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    *n = 0;
    if (lead)
        (*ids)[(*n)++] = first;
    for (size_t i = 0; i < ne; i++)
        (*ids)[(*n)++] = e[i];
    parlm_free(e);
    return 0;
}

int mf_weight_type(const char *prog, const char *type_opt, int have_info,
                   const parlm_gguf_load_info *info, parlm_wtype *out)
{
    *out = PARLM_WT_F32;
    if (type_opt) {
        if (parlm_wtype_parse(type_opt, out) != PARLM_OK || *out == PARLM_WT_F16) {
            fprintf(stderr, "%s: --type: '%s' is not f32, bf16, q8_0 or q4_0\n", prog, type_opt);
            return 2;
        }
        return 0;
    }
    /* f16 files run in f32: parlm has no f16 matmuls */
    if (have_info && (info->wtype == PARLM_WT_Q8_0 || info->wtype == PARLM_WT_Q4_0 ||
                      info->wtype == PARLM_WT_BF16))
        *out = info->wtype;
    return 0;
}

int mf_load_gguf(const char *prog, const char *path, const char *type_opt, int in_place,
                 parlm_gpt **m, parlm_gguf_load_info *info, int *view)
{
    *view = 0;
    if (!type_opt && in_place) {
        parlm_status st = parlm_gpt_map_gguf(m, path, info);
        if (st == PARLM_OK) {
            *view = 1;
            fprintf(stderr, "%s: %s runs in place: its %s matrices are mapped, not copied "
                    "(--type loads a copy)\n", prog, path, parlm_wtype_name(info->wtype));
            return 0;
        }
        if (st != PARLM_EUNSUPPORTED) {
            fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
            return 1;
        }
        fprintf(stderr, "%s: note: loading a copy of %s (%s)\n", prog, path, parlm_last_error());
    }
    if (parlm_gpt_load_gguf_ex(m, path, info) != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    return 0;
}
