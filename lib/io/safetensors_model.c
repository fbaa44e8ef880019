/* lib/io/safetensors_model.c — parlm models <-> Hugging Face safetensors + config.json:
 * GPT2LMHeadModel and LlamaForCausalLM, one file or sharded (model.safetensors.index.json).
 * The ideas: HF's GPT-2 uses Conv1D layers whose weights are (in, out), the transpose of
 * parlm's (out, in), so c_attn, c_proj, c_fc and mlp.c_proj are transposed on the way.
 * HF's Llama rotates the two halves of a head (rotate_half) where parlm, like Meta's
 * checkpoints and llama.cpp, rotates adjacent pairs: the rows of q_proj and k_proj are
 * permuted, within each head, from (pair, 2) order to (2, pair) order on the way out and
 * back on the way in. Everything else is copied. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/tensor.h"
#include "safetensors_index.h"


/* how a tensor's HF layout follows from parlm's */
enum { X_COPY, X_CONV, X_PERM_Q, X_PERM_K };

typedef struct st_entry {
    char name[96];
    int nd;
    uint64_t shape[2]; /* as HF stores it */
    int xform;
    int64_t off; /* in the parameter buffer */
} st_entry;

/* HF name of parlm tensor kind, and its transform */
static const char *hf_name(const char *kind, int llama, int *xform)
{
    static const struct { const char *kind, *hf; int xform; } gpt2[] = {
        {"wte", "wte.weight", X_COPY},           {"wpe", "wpe.weight", X_COPY},
        {"ln1w", "ln_1.weight", X_COPY},         {"ln1b", "ln_1.bias", X_COPY},
        {"qkvw", "attn.c_attn.weight", X_CONV},  {"qkvb", "attn.c_attn.bias", X_COPY},
        {"attprojw", "attn.c_proj.weight", X_CONV}, {"attprojb", "attn.c_proj.bias", X_COPY},
        {"ln2w", "ln_2.weight", X_COPY},         {"ln2b", "ln_2.bias", X_COPY},
        {"fcw", "mlp.c_fc.weight", X_CONV},      {"fcb", "mlp.c_fc.bias", X_COPY},
        {"fcprojw", "mlp.c_proj.weight", X_CONV}, {"fcprojb", "mlp.c_proj.bias", X_COPY},
        {"lnfw", "ln_f.weight", X_COPY},         {"lnfb", "ln_f.bias", X_COPY}},
      llm[] = {
        {"wte", "model.embed_tokens.weight", X_COPY},
        {"attn_norm", "input_layernorm.weight", X_COPY},
        {"wq", "self_attn.q_proj.weight", X_PERM_Q}, {"wk", "self_attn.k_proj.weight", X_PERM_K},
        {"wv", "self_attn.v_proj.weight", X_COPY},   {"wo", "self_attn.o_proj.weight", X_COPY},
        {"ffn_norm", "post_attention_layernorm.weight", X_COPY},
        {"w_gate", "mlp.gate_proj.weight", X_COPY},  {"w_up", "mlp.up_proj.weight", X_COPY},
        {"w_down", "mlp.down_proj.weight", X_COPY},  {"norm", "model.norm.weight", X_COPY},
        {"lm_head", "lm_head.weight", X_COPY}};
    size_t n = llama ? sizeof llm / sizeof llm[0] : sizeof gpt2 / sizeof gpt2[0];
    for (size_t i = 0; i < n; i++) {
        const char *k = llama ? llm[i].kind : gpt2[i].kind;
        if (strcmp(kind, k) == 0) {
            *xform = llama ? llm[i].xform : gpt2[i].xform;
            return llama ? llm[i].hf : gpt2[i].hf;
        }
    }
    return NULL;
}

/* HF name, row-major shape and transform of model tensor i */
static parlm_status st_layout(const parlm_gpt *m, int i, st_entry *e)
{
    const char *kind;
    int layer;
    int64_t count;
    parlm_status s = parlm_gpt_tensor_info(m, i, &kind, &layer, &e->off, &count);
    if (s)
        return s;
    parlm_gpt_config c = parlm_gpt_get_config(m);
    int llama = c.arch == PARLM_ARCH_LLAMA;
    const char *h = hf_name(kind, llama, &e->xform);
    if (!h)
        return parlm_error(PARLM_EINVAL, "model tensor '%s' has no Hugging Face name", kind);
    if (layer >= 0 && layer < c.n_layer)
        snprintf(e->name, sizeof e->name, llama ? "model.layers.%d.%s" : "h.%d.%s", layer, h);
    else
        snprintf(e->name, sizeof e->name, "%s", h);
    uint64_t C = (uint64_t)c.n_embd;
    int head = strcmp(kind, "wte") == 0 || strcmp(kind, "lm_head") == 0;
    if (head)
        count = (int64_t)c.vocab * c.n_embd; /* the real vocabulary only */
    if (head || strcmp(kind, "wpe") == 0)
        e->nd = 2, e->shape[0] = (uint64_t)count / C, e->shape[1] = C;
    else if (e->xform == X_CONV) /* parlm (out, in) -> (in, out) */
        e->nd = 2, e->shape[0] = strcmp(kind, "fcprojw") == 0 ? 4 * C : C,
        e->shape[1] = (uint64_t)count / e->shape[0];
    else if (llama && strcmp(kind, "attn_norm") != 0 && strcmp(kind, "ffn_norm") != 0 &&
             strcmp(kind, "norm") != 0) { /* (out, in) as parlm */
        uint64_t in = strcmp(kind, "w_down") == 0 ? (uint64_t)c.ffn_hidden : C;
        e->nd = 2, e->shape[0] = (uint64_t)count / in, e->shape[1] = in;
    } else
        e->nd = 1, e->shape[0] = (uint64_t)count, e->shape[1] = 1;
    return PARLM_OK;
}

/* out (cols, rows) = in (rows, cols) transposed */
static void transpose(const float *in, float *out, uint64_t rows, uint64_t cols)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t k = 0; k < cols; k++)
            out[k * rows + r] = in[r * cols + k];
}

/* q/k rows of `heads` heads of hs rows each, of cols columns. Within a head, parlm's row
 * 2p + j (pair p, j = 0, 1) is HF's row j hs/2 + p (transformers' `permute` in
 * convert_llama_weights_to_hf.py); to_hf = 0 undoes it. */
static void permute_rows(const float *in, float *out, uint64_t heads, uint64_t hs, uint64_t cols,
                         int to_hf)
{
    for (uint64_t h = 0; h < heads; h++)
        for (uint64_t p = 0; p < hs / 2; p++)
            for (uint64_t j = 0; j < 2; j++) {
                uint64_t meta = h * hs + 2 * p + j, hf = h * hs + j * (hs / 2) + p;
                const float *src = in + (to_hf ? meta : hf) * cols;
                memcpy(out + (to_hf ? hf : meta) * cols, src, (size_t)cols * sizeof *out);
            }
}

/* applies e's transform from parlm's layout to HF's (to_hf) or back */
static void xform_apply(const parlm_gpt_config *c, const st_entry *e, const float *in, float *out,
                        int to_hf)
{
    uint64_t hs = (uint64_t)(c->n_embd / c->n_head);
    if (e->xform == X_CONV) /* HF (in, out) = shape; parlm (out, in) */
        to_hf ? transpose(in, out, e->shape[1], e->shape[0]) : transpose(in, out, e->shape[0], e->shape[1]);
    else
        permute_rows(in, out, e->xform == X_PERM_Q ? (uint64_t)c->n_head : (uint64_t)c->n_kv_head,
                     hs, e->shape[1], to_hf);
}

/* dir of path with its trailing '/' ("" for a bare name) + file */
static char *beside(const char *path, const char *file)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0, fl = strlen(file);
    char *p = malloc(dl + fl + 1);
    if (p) {
        memcpy(p, path, dl);
        memcpy(p + dl, file, fl + 1);
    }
    return p;
}

static parlm_status dump_json(FILE *f, void *arg)
{
    /* 9 significant digits: every value written is a float's shortest decimal */
    return json_dumpf((json_t *)arg, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) == 0 &&
                   fputc('\n', f) != EOF
               ? PARLM_OK
               : parlm_error(PARLM_EIO, "cannot write JSON");
}

/* the double whose shortest decimal is float f's shortest decimal (1e-6f -> 1e-6) */
static double short_real(float f)
{
    char b[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        if (strtof(b, NULL) == f)
            break;
    }
    return strtod(b, NULL);
}

static const char *torch_dtype(parlm_wtype type)
{
    return type == PARLM_WT_F32 ? "float32" : type == PARLM_WT_F16 ? "float16" : "bfloat16";
}

static json_t *gpt2_config_json(const parlm_gpt_config *c, parlm_wtype type)
{
    return json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:s,s:f,s:b,s:s}",
                     "architectures", "GPT2LMHeadModel", "model_type", "gpt2",
                     "vocab_size", c->vocab, "n_positions", c->max_seq, "n_ctx", c->max_seq,
                     "n_embd", c->n_embd, "n_layer", c->n_layer, "n_head", c->n_head,
                     "n_inner", "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
                     "tie_word_embeddings", 1, "torch_dtype", torch_dtype(type));
}

/* transformers' LlamaConfig keys */
static json_t *llama_config_json(const parlm_gpt_config *c, parlm_wtype type)
{
    json_t *scaling = c->rope_scale == 1.0f
                          ? json_null()
                          : json_pack("{s:s,s:s,s:f}", "type", "linear", "rope_type", "linear",
                                      "factor", short_real(c->rope_scale));
    if (!scaling)
        return NULL;
    return json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:f,s:f,s:o,s:b,s:b,s:b,s:i,s:s}",
                     "architectures", "LlamaForCausalLM", "model_type", "llama",
                     "hidden_size", c->n_embd, "intermediate_size", c->ffn_hidden,
                     "num_attention_heads", c->n_head, "num_key_value_heads", c->n_kv_head,
                     "num_hidden_layers", c->n_layer, "head_dim", c->n_embd / c->n_head,
                     "hidden_act", "silu", "max_position_embeddings", c->max_seq,
                     "rms_norm_eps", short_real(c->norm_eps), "rope_theta", short_real(c->rope_theta),
                     "rope_scaling", scaling, "tie_word_embeddings", !c->untied_head,
                     "attention_bias", 0, "mlp_bias", 0, "vocab_size", c->vocab,
                     "torch_dtype", torch_dtype(type));
}

static parlm_status write_json(const char *path, json_t *j)
{
    return j ? parlm_write_file_atomic(path, dump_json, j) : parlm_error(PARLM_ENOMEM, "out of memory");
}

/* Writes dir (with its '/', or "") + the shards (one: `single`; several: HF's
 * model-0000i-of-0000N names and the index), then config.json. */
static parlm_status save(parlm_gpt *m, const char *dir, const char *single, parlm_wtype type,
                         uint64_t max_shard, int *n_shards)
{
    RETURN_IF_ERROR(parlm_gpt_check_owned(m, "parlm_gpt_save_safetensors"));
    if (type != PARLM_WT_F32 && type != PARLM_WT_F16 && type != PARLM_WT_BF16)
        return parlm_error(PARLM_EINVAL, "safetensors stores f32, f16 or bf16, not %s",
                           parlm_wtype_name(type) ? parlm_wtype_name(type) : "?");
    parlm_gpt_config c = parlm_gpt_get_config(m);
    if (c.arch == PARLM_ARCH_LLAMA && (c.n_embd / c.n_head) % 2)
        return parlm_error(PARLM_EUNSUPPORTED, "safetensors: a Llama head size %d is odd (rotary "
                           "pairs)", c.n_embd / c.n_head);
    int nt = parlm_gpt_num_tensors(m), ns = 0;
    size_t esz = type == PARLM_WT_F32 ? 4 : 2;
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    const void **data = calloc((size_t)nt, sizeof *data);
    st_entry *e = calloc((size_t)nt, sizeof *e);
    int *shard = calloc((size_t)nt, sizeof *shard);
    json_t *map = json_object(), *index = NULL;
    parlm_safetensors_writer *w = NULL;
    char *path = NULL, file[64];
    parlm_status s = PARLM_OK;
    uint64_t fill = 0, total = 0;
    const float *params = parlm_gpt_params(m);
    if (!bufs || !data || !e || !shard || !map) {
        s = parlm_error(PARLM_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nt; i++) { /* HF's layout and type; greedy shards of <= max_shard */
        if ((s = st_layout(m, i, &e[i])))
            goto done;
        uint64_t n = e[i].shape[0] * e[i].shape[1], bytes = n * esz;
        data[i] = params + e[i].off;
        if (e[i].xform != X_COPY || type != PARLM_WT_F32) {
            float *tmp = NULL;
            if (!(bufs[i] = malloc((size_t)bytes)) ||
                (e[i].xform != X_COPY && !(tmp = malloc((size_t)n * sizeof *tmp)))) {
                free(tmp);
                s = parlm_error(PARLM_ENOMEM, "out of memory converting %s", e[i].name);
                goto done;
            }
            if (tmp)
                xform_apply(&c, &e[i], params + e[i].off, tmp, 1);
            s = parlm_quantize(type, tmp ? tmp : params + e[i].off, (int64_t)n, bufs[i]);
            free(tmp);
            if (s)
                goto done;
            data[i] = bufs[i];
        }
        if (i == 0 || (max_shard && fill + bytes > max_shard && fill > 0))
            ns++, fill = 0;
        shard[i] = ns - 1;
        fill += bytes;
        total += bytes;
    }
    for (int k = 0; k < ns; k++) {
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", k + 1, ns);
        const char *name = ns == 1 ? single : file;
        free(path);
        if (!(path = malloc(strlen(dir) + strlen(name) + 1))) {
            s = parlm_error(PARLM_ENOMEM, "out of memory");
            goto done;
        }
        strcat(strcpy(path, dir), name);
        parlm_safetensors_writer_free(w);
        w = NULL;
        if ((s = parlm_safetensors_writer_create(&w)) || (s = parlm_safetensors_set_meta(w, "format", "pt")))
            goto done;
        for (int i = 0; i < nt; i++) {
            if (shard[i] != k)
                continue;
            if ((s = parlm_safetensors_add(w, e[i].name, type, e[i].nd, e[i].shape, data[i])))
                goto done;
            if (json_object_set_new(map, e[i].name, json_string(name))) {
                s = parlm_error(PARLM_ENOMEM, "out of memory");
                goto done;
            }
        }
        if ((s = parlm_safetensors_write(w, path)))
            goto done;
    }
    free(path);
    path = NULL;
    if (!(path = malloc(strlen(dir) + sizeof PARLM_ST_INDEX))) {
        s = parlm_error(PARLM_ENOMEM, "out of memory");
        goto done;
    }
    strcat(strcpy(path, dir), PARLM_ST_INDEX);
    /* one model.safetensors: an index left by an earlier sharded save would be read instead */
    if (ns == 1 && strcmp(single, "model.safetensors") == 0 && remove(path) != 0 && errno != ENOENT) {
        s = parlm_error(PARLM_EIO, "cannot remove the stale %s: %s", path, strerror(errno));
        goto done;
    }
    if (ns > 1) { /* the index last: a reader never finds one whose shards are not all there */
        index = json_pack("{s:{s:I},s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
        if ((s = write_json(path, index)))
            goto done;
    }
    free(path);
    if (!(path = malloc(strlen(dir) + sizeof "config.json"))) {
        s = parlm_error(PARLM_ENOMEM, "out of memory");
        goto done;
    }
    strcat(strcpy(path, dir), "config.json");
    json_t *cj = c.arch == PARLM_ARCH_LLAMA ? llama_config_json(&c, type) : gpt2_config_json(&c, type);
    s = write_json(path, cj);
    json_decref(cj);
    if (!s && n_shards)
        *n_shards = ns;
done:
    for (int i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(data);
    free(e);
    free(shard);
    free(path);
    json_decref(map);
    json_decref(index);
    parlm_safetensors_writer_free(w);
    return s;
}

parlm_status parlm_gpt_save_safetensors(parlm_gpt *m, const char *path, parlm_wtype type)
{
    if (!m || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_safetensors: null argument");
    const char *slash = strrchr(path, '/');
    char *dir = beside(path, "");
    if (!dir)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    parlm_status s = save(m, dir, slash ? slash + 1 : path, type, 0, NULL);
    free(dir);
    return s;
}

parlm_status parlm_gpt_save_safetensors_sharded(parlm_gpt *m, const char *dir, parlm_wtype type,
                                                uint64_t max_shard_bytes, int *n_shards)
{
    if (!m || !dir || !*dir)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_safetensors_sharded: null argument");
    parlm_status s = parlm_mkdir_p(dir);
    if (s)
        return s;
    size_t n = strlen(dir);
    char *d = malloc(n + 2);
    if (!d)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    memcpy(d, dir, n + 1);
    if (d[n - 1] != '/')
        d[n] = '/', d[n + 1] = 0;
    s = save(m, d, "model.safetensors", type, max_shard_bytes, n_shards);
    free(d);
    return s;
}

/* ---- reading ------------------------------------------------------------------------ */

static parlm_status cfg_int(json_t *j, const char *cp, const char *key, int max, int *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return parlm_error(PARLM_EFORMAT, "%s: \"%s\" missing or not an integer in 1..%d", cp, key, max);
    *out = (int)json_integer_value(v);
    return PARLM_OK;
}

/* a number in [lo, hi], dflt when absent or null */
static parlm_status cfg_num(json_t *j, const char *cp, const char *key, double dflt, double lo,
                            double hi, double *out)
{
    json_t *v = json_object_get(j, key);
    *out = !v || json_is_null(v) ? dflt : json_number_value(v);
    if ((v && !json_is_null(v) && !json_is_number(v)) || !(*out >= lo && *out <= hi))
        return parlm_error(PARLM_EFORMAT, "%s: \"%s\" is not a number in %g..%g", cp, key, lo, hi);
    return PARLM_OK;
}

static parlm_status gpt2_config(json_t *j, const char *cp, parlm_gpt_config *c)
{
    json_t *act = json_object_get(j, "activation_function"), *inner = json_object_get(j, "n_inner"),
           *eps = json_object_get(j, "layer_norm_epsilon"), *tie = json_object_get(j, "tie_word_embeddings");
    parlm_status s;
    if ((s = cfg_int(j, cp, "n_layer", 1024, &c->n_layer)) || (s = cfg_int(j, cp, "n_head", 1024, &c->n_head)) ||
        (s = cfg_int(j, cp, "n_embd", 1 << 16, &c->n_embd)) ||
        (s = cfg_int(j, cp, "n_positions", 1 << 20, &c->max_seq)) ||
        (s = cfg_int(j, cp, "vocab_size", 1 << 24, &c->vocab)))
        return s;
    if ((act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_new") != 0)) ||
        (inner && !json_is_null(inner) && json_integer_value(inner) != 4 * (json_int_t)c->n_embd) ||
        (eps && fabs(json_number_value(eps) - 1e-5) > 1e-9) || (tie && json_is_false(tie)))
        return parlm_error(PARLM_EUNSUPPORTED,
                           "%s: parlm's GPT-2 has gelu_new, n_inner 4*n_embd, layer_norm_epsilon 1e-5 and tied embeddings",
                           cp);
    return PARLM_OK;
}

/* transformers' LlamaConfig, with its defaults where a key may be absent */
static parlm_status llama_config(json_t *j, const char *cp, parlm_gpt_config *c)
{
    parlm_status s;
    double eps, theta, factor = 1.0;
    c->arch = PARLM_ARCH_LLAMA;
    if ((s = cfg_int(j, cp, "num_hidden_layers", 1024, &c->n_layer)) ||
        (s = cfg_int(j, cp, "num_attention_heads", 1024, &c->n_head)) ||
        (s = cfg_int(j, cp, "hidden_size", 1 << 16, &c->n_embd)) ||
        (s = cfg_int(j, cp, "intermediate_size", 1 << 18, &c->ffn_hidden)) ||
        (s = cfg_int(j, cp, "max_position_embeddings", 1 << 20, &c->max_seq)) ||
        (s = cfg_int(j, cp, "vocab_size", 1 << 24, &c->vocab)))
        return s;
    json_t *kv = json_object_get(j, "num_key_value_heads"), *hd = json_object_get(j, "head_dim"),
           *act = json_object_get(j, "hidden_act"), *tie = json_object_get(j, "tie_word_embeddings"),
           *rs = json_object_get(j, "rope_scaling");
    c->n_kv_head = c->n_head;
    if (kv && !json_is_null(kv) && (s = cfg_int(j, cp, "num_key_value_heads", 1024, &c->n_kv_head)))
        return s;
    if (c->n_embd % c->n_head || c->n_head % c->n_kv_head)
        return parlm_error(PARLM_EFORMAT, "%s: \"hidden_size\" %d, \"num_attention_heads\" %d and "
                           "\"num_key_value_heads\" %d do not divide", cp, c->n_embd, c->n_head, c->n_kv_head);
    if (hd && !json_is_null(hd) && (!json_is_integer(hd) || json_integer_value(hd) != c->n_embd / c->n_head))
        return parlm_error(PARLM_EUNSUPPORTED, "%s: \"head_dim\" is not hidden_size / "
                           "num_attention_heads = %d (parlm's heads split the hidden size)", cp,
                           c->n_embd / c->n_head);
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return parlm_error(PARLM_EUNSUPPORTED, "%s: \"hidden_act\" '%.32s' (parlm's Llama MLP is "
                           "SwiGLU, \"silu\")", cp, json_is_string(act) ? json_string_value(act) : "?");
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        json_t *b = json_object_get(j, biases[i]);
        if (b && !json_is_false(b) && !json_is_null(b))
            return parlm_error(PARLM_EUNSUPPORTED, "%s: \"%s\" is not false (parlm's Llama has no "
                               "biases)", cp, biases[i]);
    }
    if (tie && !json_is_boolean(tie))
        return parlm_error(PARLM_EFORMAT, "%s: \"tie_word_embeddings\" is not true or false", cp);
    c->untied_head = !json_is_true(tie); /* LlamaConfig's default: untied */
    if ((s = cfg_num(j, cp, "rms_norm_eps", 1e-6, 1e-12, 0.5, &eps)) ||
        (s = cfg_num(j, cp, "rope_theta", 10000.0, 1.0001, 1e9, &theta)))
        return s;
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs))
            return parlm_error(PARLM_EFORMAT, "%s: \"rope_scaling\" is not an object or null", cp);
        /* transformers writes "rope_type", older versions "type"; both may be there */
        const char *t = json_string_value(json_object_get(rs, "rope_type")),
                   *t2 = json_string_value(json_object_get(rs, "type"));
        if (!t)
            t = t2;
        if (!t || (t2 && strcmp(t, t2) != 0))
            return parlm_error(PARLM_EFORMAT, "%s: \"rope_scaling\": \"rope_type\" (or \"type\") "
                               "missing, not a string, or two different ones", cp);
        if (strcmp(t, "linear") == 0) {
            if ((s = cfg_num(rs, cp, "factor", NAN, 1.0, 1024.0, &factor)))
                return parlm_error(s, "%s: \"rope_scaling\": \"factor\" is not a number in 1..1024", cp);
        } else if (strcmp(t, "default") != 0)
            return parlm_error(PARLM_EUNSUPPORTED, "%s: \"rope_scaling\" type '%.32s' (parlm "
                               "scales positions linearly, or not at all)", cp, t);
    }
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    c->rope_scale = (float)factor;
    return PARLM_OK;
}

static parlm_status read_config(const char *cp, parlm_gpt_config *c)
{
    char *text = NULL;
    size_t len;
    parlm_status s = parlm_read_file(cp, 1 << 20, &text, &len);
    json_t *j = NULL;
    if (s)
        return s;
    json_error_t err;
    if (!(j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err)) || !json_is_object(j)) {
        s = parlm_error(PARLM_EFORMAT, "%s: %s", cp, j ? "not a JSON object" : err.text);
        goto done;
    }
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    if (mt && strcmp(mt, "gpt2") == 0)
        s = gpt2_config(j, cp, c);
    else if (mt && strcmp(mt, "llama") == 0)
        s = llama_config(j, cp, c);
    else
        s = parlm_error(PARLM_EUNSUPPORTED, "%s: \"model_type\" '%.32s' (parlm loads \"gpt2\" and "
                        "\"llama\")", cp, mt ? mt : "(missing)");
done:
    json_decref(j);
    parlm_free(text);
    return s;
}

parlm_status parlm_gpt_load_safetensors(parlm_gpt **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load_safetensors: null argument");
    *out = NULL;
    parlm_st_set src = {0};
    parlm_gpt *m = NULL;
    float *tmp = NULL;
    char *cp = NULL;
    parlm_gpt_config c = {0};
    parlm_status s = parlm_st_set_open(&src, path);
    if (s)
        goto done;
    if (!(cp = malloc(strlen(src.dir) + sizeof "config.json"))) {
        s = parlm_error(PARLM_ENOMEM, "out of memory");
        goto done;
    }
    strcat(strcpy(cp, src.dir), "config.json");
    int64_t np;
    if ((s = read_config(cp, &c)) || (s = parlm_gpt_config_num_params(&c, &np)))
        goto done;
    /* before allocating a model of config.json's size: the files must hold that many weights
     * (all but the padding rows of the embedding and of an untied head) */
    uint64_t have = 0, need = (uint64_t)np - (uint64_t)((c.vocab + 127) / 128 * 128 - c.vocab) *
                                                 (uint64_t)c.n_embd * (1 + (uint64_t)c.untied_head);
    for (int k = 0; k < src.n; k++)
        for (int64_t i = 0; i < parlm_safetensors_num_tensors(src.st[k]); i++) {
            const parlm_st_tensor *t = parlm_safetensors_tensor_at(src.st[k], i);
            have += t->size / (t->type == PARLM_WT_F32 ? 4 : 2);
        }
    if (have < need) {
        s = parlm_error(PARLM_EFORMAT, "%s: config.json describes %llu weights, the file%s hold%s %llu",
                        src.index ? src.index : path, (unsigned long long)need, src.index ? "s" : "",
                        src.index ? "" : "s", (unsigned long long)have);
        goto done;
    }
    if ((s = parlm_gpt_create(&m, &c, 0)))
        goto done;
    c = parlm_gpt_get_config(m);
    float *params = parlm_gpt_params(m);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        st_entry e;
        char full[128];
        int k = 0;
        if ((s = st_layout(m, i, &e)))
            goto done;
        const parlm_st_tensor *t = parlm_st_set_find(&src, e.name, &k);
        if (!t && c.arch == PARLM_ARCH_GPT2) { /* transformers' save_pretrained prefixes the body */
            snprintf(full, sizeof full, "transformer.%s", e.name);
            t = parlm_st_set_find(&src, full, &k);
        }
        if (!t) {
            s = parlm_error(PARLM_EFORMAT, "%s: tensor %s is missing", src.index ? src.index : path, e.name);
            goto done;
        }
        const char *fp = src.st[k] ? src.files[k] : path;
        if (t->n_dims != e.nd || t->shape[0] != e.shape[0] || (e.nd == 2 && t->shape[1] != e.shape[1])) {
            s = parlm_error(PARLM_EFORMAT, "%s%s: tensor %s has the wrong shape (expected [%llu, %llu])",
                            src.index ? src.dir : "", fp, e.name, (unsigned long long)e.shape[0],
                            (unsigned long long)e.shape[1]);
            goto done;
        }
        uint64_t n = e.shape[0] * e.shape[1];
        if (e.xform == X_COPY) {
            if ((s = parlm_dequantize(t->type, t->data, (int64_t)n, params + e.off)))
                goto done;
            continue;
        }
        free(tmp);
        if (!(tmp = malloc((size_t)n * sizeof *tmp))) {
            s = parlm_error(PARLM_ENOMEM, "out of memory reading %s", fp);
            goto done;
        }
        if ((s = parlm_dequantize(t->type, t->data, (int64_t)n, tmp)))
            goto done;
        xform_apply(&c, &e, tmp, params + e.off, 0);
    }
    /* the padding rows of the embedding (and of an untied head): never a real token's, 0 */
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *kind;
        int layer;
        int64_t off, count;
        parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &count);
        if (strcmp(kind, "wte") == 0 || strcmp(kind, "lm_head") == 0)
            memset(params + off + (int64_t)c.vocab * c.n_embd, 0,
                   (size_t)(c.vocab_pad - c.vocab) * (size_t)c.n_embd * sizeof(float));
    }
done:
    free(tmp);
    free(cp);
    parlm_st_set_close(&src);
    if (s)
        parlm_gpt_free(m);
    else
        *out = m;
    return s;
}
