/* lib/io/safetensors_gpt2.c — parlm GPT-2 models <-> Hugging Face GPT2LMHeadModel
 * safetensors + config.json. The one idea: HF's GPT-2 uses Conv1D layers whose weights
 * are (in, out), the transpose of parlm's (out, in) linear weights, so c_attn, c_proj,
 * c_fc and mlp.c_proj are transposed on the way; embeddings and norms are copied. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/safetensors.h"
#include "parlm/tensor.h"

/* HF name suffix of parlm tensor kind, and whether it is a transposed Conv1D weight */
static const char *hf_name(const char *kind, int *conv)
{
    static const struct { const char *kind, *hf; int conv; } map[] = {
        {"wte", "wte.weight", 0},           {"wpe", "wpe.weight", 0},
        {"ln1w", "ln_1.weight", 0},         {"ln1b", "ln_1.bias", 0},
        {"qkvw", "attn.c_attn.weight", 1},  {"qkvb", "attn.c_attn.bias", 0},
        {"attprojw", "attn.c_proj.weight", 1}, {"attprojb", "attn.c_proj.bias", 0},
        {"ln2w", "ln_2.weight", 0},         {"ln2b", "ln_2.bias", 0},
        {"fcw", "mlp.c_fc.weight", 1},      {"fcb", "mlp.c_fc.bias", 0},
        {"fcprojw", "mlp.c_proj.weight", 1}, {"fcprojb", "mlp.c_proj.bias", 0},
        {"lnfw", "ln_f.weight", 0},         {"lnfb", "ln_f.bias", 0}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(kind, map[i].kind) == 0) {
            *conv = map[i].conv;
            return map[i].hf;
        }
    return NULL;
}

/* HF name and row-major shape of model tensor i (as HF stores it) */
static parlm_status st_layout(const parlm_gpt *m, int i, char name[96], int *nd, uint64_t shape[2],
                              int *conv, int64_t *off)
{
    const char *kind;
    int layer;
    int64_t count;
    parlm_status s = parlm_gpt_tensor_info(m, i, &kind, &layer, off, &count);
    if (s)
        return s;
    parlm_gpt_config c = parlm_gpt_get_config(m);
    const char *h = hf_name(kind, conv);
    if (!h)
        return parlm_error(PARLM_EINVAL, "model tensor '%s' has no Hugging Face name", kind);
    if (layer >= 0 && layer < c.n_layer)
        snprintf(name, 96, "h.%d.%s", layer, h);
    else
        snprintf(name, 96, "%s", h);
    uint64_t C = (uint64_t)c.n_embd;
    if (strcmp(kind, "wte") == 0)
        count = (int64_t)c.vocab * c.n_embd;
    if (strcmp(kind, "wte") == 0 || strcmp(kind, "wpe") == 0)
        *nd = 2, shape[0] = (uint64_t)count / C, shape[1] = C;
    else if (*conv) /* parlm (out, in) -> (in, out) */
        *nd = 2, shape[0] = strcmp(kind, "fcprojw") == 0 ? 4 * C : C,
        shape[1] = (uint64_t)count / shape[0];
    else
        *nd = 1, shape[0] = (uint64_t)count, shape[1] = 1;
    return PARLM_OK;
}

/* out (cols, rows) = in (rows, cols) transposed */
static void transpose(const float *in, float *out, uint64_t rows, uint64_t cols)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t k = 0; k < cols; k++)
            out[k * rows + r] = in[r * cols + k];
}

static char *config_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(dl + sizeof "config.json");
    if (p) {
        memcpy(p, path, dl);
        strcpy(p + dl, "config.json");
    }
    return p;
}

static parlm_status dump_json(FILE *f, void *arg)
{
    return json_dumpf((json_t *)arg, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 && fputc('\n', f) != EOF
               ? PARLM_OK
               : parlm_error(PARLM_EIO, "cannot write config.json");
}

static parlm_status write_config(const parlm_gpt_config *c, const char *path, parlm_wtype type)
{
    char *cp = config_path(path);
    json_t *j = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:s,s:f,s:b,s:s}",
                          "architectures", "GPT2LMHeadModel", "model_type", "gpt2",
                          "vocab_size", c->vocab, "n_positions", c->max_seq, "n_ctx", c->max_seq,
                          "n_embd", c->n_embd, "n_layer", c->n_layer, "n_head", c->n_head,
                          "n_inner", "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
                          "tie_word_embeddings", 1, "torch_dtype",
                          type == PARLM_WT_F32 ? "float32" : type == PARLM_WT_F16 ? "float16" : "bfloat16");
    parlm_status s = !cp || !j ? parlm_error(PARLM_ENOMEM, "out of memory") : parlm_write_file_atomic(cp, dump_json, j);
    json_decref(j);
    free(cp);
    return s;
}

parlm_status parlm_gpt_save_safetensors(parlm_gpt *m, const char *path, parlm_wtype type)
{
    if (!m || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_safetensors: null argument");
    if (type != PARLM_WT_F32 && type != PARLM_WT_F16 && type != PARLM_WT_BF16)
        return parlm_error(PARLM_EINVAL, "safetensors stores f32, f16 or bf16, not %s",
                           parlm_wtype_name(type) ? parlm_wtype_name(type) : "?");
    parlm_gpt_config c = parlm_gpt_get_config(m);
    if (c.arch != PARLM_ARCH_GPT2)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_gpt_save_safetensors: safetensors export "
                           "of Llama models is not implemented (the writer maps GPT-2 tensors "
                           "only)");
    int nt = parlm_gpt_num_tensors(m);
    parlm_safetensors_writer *w;
    parlm_status s = parlm_safetensors_writer_create(&w);
    if (s)
        return s;
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    const float *params = parlm_gpt_params(m);
    if (!bufs || (s = parlm_safetensors_set_meta(w, "format", "pt")))
        goto done;
    for (int i = 0; i < nt; i++) {
        char name[96];
        int nd, conv;
        uint64_t shape[2];
        int64_t off;
        if ((s = st_layout(m, i, name, &nd, shape, &conv, &off)))
            goto done;
        uint64_t n = shape[0] * shape[1];
        const float *src = params + off;
        if (conv || type != PARLM_WT_F32) {
            float *tmp = NULL;
            if (!(bufs[i] = malloc((size_t)n * (type == PARLM_WT_F32 ? 4 : 2))) ||
                (conv && !(tmp = malloc((size_t)n * sizeof *tmp)))) {
                free(tmp);
                s = parlm_error(PARLM_ENOMEM, "out of memory converting %s", name);
                goto done;
            }
            if (conv) /* HF (in, out) from parlm (out, in) = (shape[1], shape[0]) */
                transpose(src, tmp, shape[1], shape[0]);
            s = parlm_quantize(type, conv ? tmp : src, (int64_t)n, bufs[i]);
            free(tmp);
            if (s)
                goto done;
            src = bufs[i];
        }
        if ((s = parlm_safetensors_add(w, name, type, nd, shape, src)))
            goto done;
    }
    if ((s = parlm_safetensors_write(w, path)))
        goto done;
    s = write_config(&c, path, type);
done:
    for (int i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    parlm_safetensors_writer_free(w);
    return s;
}

static parlm_status cfg_int(json_t *j, const char *cp, const char *key, int max, int *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return parlm_error(PARLM_EFORMAT, "%s: \"%s\" missing or not an integer in 1..%d", cp, key, max);
    *out = (int)json_integer_value(v);
    return PARLM_OK;
}

static parlm_status read_config(const char *path, parlm_gpt_config *c)
{
    char *cp = config_path(path), *text = NULL;
    size_t len;
    if (!cp)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    parlm_status s = parlm_read_file(cp, 1 << 20, &text, &len);
    json_t *j = NULL;
    if (s)
        goto done;
    json_error_t err;
    if (!(j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err)) || !json_is_object(j)) {
        s = parlm_error(PARLM_EFORMAT, "%s: %s", cp, j ? "not a JSON object" : err.text);
        goto done;
    }
    json_t *mt = json_object_get(j, "model_type"), *act = json_object_get(j, "activation_function"),
           *inner = json_object_get(j, "n_inner"), *eps = json_object_get(j, "layer_norm_epsilon"),
           *tie = json_object_get(j, "tie_word_embeddings");
    if (!json_is_string(mt) || strcmp(json_string_value(mt), "gpt2") != 0) {
        s = parlm_error(PARLM_EUNSUPPORTED, "%s: model_type is not \"gpt2\"", cp);
        goto done;
    }
    if ((s = cfg_int(j, cp, "n_layer", 1024, &c->n_layer)) || (s = cfg_int(j, cp, "n_head", 1024, &c->n_head)) ||
        (s = cfg_int(j, cp, "n_embd", 1 << 16, &c->n_embd)) ||
        (s = cfg_int(j, cp, "n_positions", 1 << 20, &c->max_seq)) ||
        (s = cfg_int(j, cp, "vocab_size", 1 << 24, &c->vocab)))
        goto done;
    if ((act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_new") != 0)) ||
        (inner && !json_is_null(inner) && json_integer_value(inner) != 4 * (json_int_t)c->n_embd) ||
        (eps && fabs(json_number_value(eps) - 1e-5) > 1e-9) || (tie && json_is_false(tie)))
        s = parlm_error(PARLM_EUNSUPPORTED,
                        "%s: parlm's GPT-2 has gelu_new, n_inner 4*n_embd, layer_norm_epsilon 1e-5 and tied embeddings",
                        cp);
done:
    json_decref(j);
    parlm_free(text);
    free(cp);
    return s;
}

parlm_status parlm_gpt_load_safetensors(parlm_gpt **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load_safetensors: null argument");
    *out = NULL;
    parlm_gpt_config c = {0};
    parlm_status s = read_config(path, &c);
    if (s)
        return s;
    int64_t np;
    if ((s = parlm_gpt_config_num_params(&c, &np)))
        return s;
    parlm_safetensors *st;
    if ((s = parlm_safetensors_open(&st, path)))
        return s;
    parlm_gpt *m = NULL;
    float *tmp = NULL;
    /* before allocating a model of config.json's size: the file must hold that many weights */
    uint64_t have = 0, need = (uint64_t)np - (uint64_t)((c.vocab + 127) / 128 * 128 - c.vocab) * (uint64_t)c.n_embd;
    for (int64_t i = 0; i < parlm_safetensors_num_tensors(st); i++) {
        const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, i);
        have += t->size / (t->type == PARLM_WT_F32 ? 4 : 2);
    }
    if (have < need) {
        s = parlm_error(PARLM_EFORMAT, "%s: config.json describes %llu weights, the file holds %llu",
                        path, (unsigned long long)need, (unsigned long long)have);
        goto done;
    }
    if ((s = parlm_gpt_create(&m, &c, 0)))
        goto done;
    c = parlm_gpt_get_config(m);
    float *params = parlm_gpt_params(m);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        char name[96], full[128];
        int nd, conv;
        uint64_t shape[2];
        int64_t off;
        if ((s = st_layout(m, i, name, &nd, shape, &conv, &off)))
            goto done;
        int64_t k = parlm_safetensors_find(st, name);
        if (k < 0) { /* transformers' save_pretrained prefixes the body */
            snprintf(full, sizeof full, "transformer.%s", name);
            k = parlm_safetensors_find(st, full);
        }
        if (k < 0) {
            s = parlm_error(PARLM_EFORMAT, "%s: tensor %s is missing", path, name);
            goto done;
        }
        const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, k);
        if (t->n_dims != nd || t->shape[0] != shape[0] || (nd == 2 && t->shape[1] != shape[1])) {
            s = parlm_error(PARLM_EFORMAT, "%s: tensor %s has the wrong shape (expected [%llu, %llu])",
                            path, name, (unsigned long long)shape[0], (unsigned long long)shape[1]);
            goto done;
        }
        uint64_t n = shape[0] * shape[1];
        if (!conv) {
            if ((s = parlm_dequantize(t->type, t->data, (int64_t)n, params + off)))
                goto done;
            continue;
        }
        free(tmp);
        if (!(tmp = malloc((size_t)n * sizeof *tmp))) {
            s = parlm_error(PARLM_ENOMEM, "out of memory reading %s", path);
            goto done;
        }
        if ((s = parlm_dequantize(t->type, t->data, (int64_t)n, tmp)))
            goto done;
        transpose(tmp, params + off, shape[0], shape[1]);
    }
    memset(params + (int64_t)c.vocab * c.n_embd, 0,
           (size_t)(c.vocab_pad - c.vocab) * (size_t)c.n_embd * sizeof(float));
done:
    free(tmp);
    parlm_safetensors_close(st);
    if (s)
        parlm_gpt_free(m);
    else
        *out = m;
    return s;
}
