/* lib/io/gguf_gpt2.c — parlm GPT-2 models <-> llama.cpp's "gpt2" GGUF files.
 * The one idea: ggml lists dimensions fastest-first, so a parlm (out, in) row-major
 * matrix is ne = [in, out] with the same bytes; names and hyperparameter keys are
 * llama.cpp's, so llama.cpp runs what parlm writes. The tokenizer is stored in GPT-2's
 * byte-to-unicode spelling (as encoder.json and vocab.bpe spell it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/gguf.h"
#include "parlm/tensor.h"
#include "parlm/tokenizer.h"

/* llama.cpp's name of parlm tensor kind `kind`, or NULL (the kinds of model.h) */
static const char *gguf_name(const char *kind)
{
    static const char *const map[][2] = {
        {"wte", "token_embd.weight"},      {"wpe", "position_embd.weight"},
        {"ln1w", "attn_norm.weight"},      {"ln1b", "attn_norm.bias"},
        {"qkvw", "attn_qkv.weight"},       {"qkvb", "attn_qkv.bias"},
        {"attprojw", "attn_output.weight"}, {"attprojb", "attn_output.bias"},
        {"ln2w", "ffn_norm.weight"},       {"ln2b", "ffn_norm.bias"},
        {"fcw", "ffn_up.weight"},          {"fcb", "ffn_up.bias"},
        {"fcprojw", "ffn_down.weight"},    {"fcprojb", "ffn_down.bias"},
        {"lnfw", "output_norm.weight"},    {"lnfb", "output_norm.bias"},
        /* Llama */
        {"attn_norm", "attn_norm.weight"}, {"wq", "attn_q.weight"},
        {"wk", "attn_k.weight"},           {"wv", "attn_v.weight"},
        {"wo", "attn_output.weight"},      {"ffn_norm", "ffn_norm.weight"},
        {"w_gate", "ffn_gate.weight"},     {"w_up", "ffn_up.weight"},
        {"w_down", "ffn_down.weight"},     {"norm", "output_norm.weight"},
        {"lm_head", "output.weight"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(kind, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

/* Full name and ggml shape of model tensor i: ne[0] = row length (in features). */
static parlm_status tensor_layout(const parlm_gpt *m, int i, char name[64], int *n_dims,
                                  uint64_t ne[2], int64_t *off)
{
    const char *kind;
    int layer;
    int64_t count;
    parlm_status s = parlm_gpt_tensor_info(m, i, &kind, &layer, off, &count);
    if (s)
        return s;
    parlm_gpt_config c = parlm_gpt_get_config(m);
    const char *g = gguf_name(kind);
    if (!g)
        return parlm_error(PARLM_EINVAL, "model tensor '%s' has no GGUF name", kind);
    if (layer >= 0 && layer < c.n_layer)
        snprintf(name, 64, "blk.%d.%s", layer, g);
    else
        snprintf(name, 64, "%s", g);
    uint64_t C = (uint64_t)c.n_embd;
    int head = strcmp(kind, "wte") == 0 || strcmp(kind, "lm_head") == 0;
    if (head)
        count = (int64_t)c.vocab * c.n_embd; /* the real vocabulary only */
    static const char *const mats[] = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw", "wq",
                                       "wk", "wv", "wo", "w_gate", "w_up", "w_down", "lm_head"};
    int mat = 0;
    for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++)
        mat |= strcmp(kind, mats[k]) == 0;
    if (mat) { /* (out, in): rows of `in` features, 4C (fcprojw) or F (w_down) or C */
        uint64_t in = strcmp(kind, "fcprojw") == 0  ? 4 * C
                      : strcmp(kind, "w_down") == 0 ? (uint64_t)c.ffn_hidden
                                                    : C;
        *n_dims = 2, ne[0] = in, ne[1] = (uint64_t)count / in;
    } else { /* norm weights and biases */
        *n_dims = 1, ne[0] = (uint64_t)count, ne[1] = 1;
    }
    return PARLM_OK;
}

/* GPT-2's printable spelling of byte b as UTF-8 into out (<= 2 bytes); returns length */
static int byte_char(unsigned b, char *out)
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        cp = b;
    else { /* the others, in byte order, take code points 256, 257, ... */
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct vocab {
    char **tokens, **merges;
    size_t *tok_len, *merge_len;
    int32_t *types;
    int64_t ntok, nmerge;
    char *bpe; /* vocab.bpe's text; merges point into it */
} vocab;

static void vocab_free(vocab *v)
{
    for (int64_t i = 0; v->tokens && i < v->ntok; i++)
        free(v->tokens[i]);
    free(v->tokens);
    free(v->tok_len);
    free(v->types);
    free(v->merges);
    free(v->merge_len);
    parlm_free(v->bpe);
}

static parlm_status vocab_load(vocab *v, const char *encoder_json, const char *vocab_bpe, int V)
{
    parlm_tokenizer *tok;
    parlm_status s = parlm_tokenizer_load_gpt2(&tok, encoder_json, vocab_bpe);
    if (s)
        return s;
    int n = parlm_tokenizer_vocab_size(tok), eot = parlm_tokenizer_eot(tok);
    if (n != V) {
        parlm_tokenizer_free(tok);
        return parlm_error(PARLM_EINVAL, "%s has %d tokens, the model's vocabulary is %d",
                           encoder_json, n, V);
    }
    v->ntok = n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->tok_len = calloc((size_t)n, sizeof *v->tok_len);
    v->types = calloc((size_t)n, sizeof *v->types);
    for (int i = 0; v->tokens && v->tok_len && v->types && i < n; i++) {
        const char *b;
        size_t len;
        parlm_tokenizer_token(tok, i, &b, &len);
        char *t = malloc(2 * len + 1);
        if (!t)
            break;
        size_t k = 0;
        if (i == eot) { /* control tokens are spelled as is */
            memcpy(t, b, len);
            k = len;
        } else
            for (size_t j = 0; j < len; j++)
                k += (size_t)byte_char((unsigned char)b[j], t + k);
        v->tokens[i] = t;
        v->tok_len[i] = k;
        v->types[i] = i == eot ? 3 : 1; /* llama.cpp: 1 normal, 3 control */
    }
    parlm_tokenizer_free(tok);
    if (!v->tokens || !v->tok_len || !v->types || !v->tokens[n - 1])
        return parlm_error(PARLM_ENOMEM, "out of memory for the GGUF vocabulary");
    /* merges: vocab.bpe's lines after "#version", in rank order (already checked above) */
    size_t len;
    if ((s = parlm_read_file(vocab_bpe, (size_t)1 << 30, &v->bpe, &len)))
        return s;
    int64_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += v->bpe[i] == '\n';
    v->merges = malloc((size_t)lines * sizeof *v->merges);
    v->merge_len = malloc((size_t)lines * sizeof *v->merge_len);
    if (!v->merges || !v->merge_len)
        return parlm_error(PARLM_ENOMEM, "out of memory for the GGUF merges");
    for (char *p = v->bpe, *end = v->bpe + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (l && p[l - 1] == '\r')
            l--;
        if (l && strncmp(p, "#version", 8) != 0) {
            v->merges[v->nmerge] = p;
            v->merge_len[v->nmerge++] = l;
        }
        p = nl ? nl + 1 : end;
    }
    return PARLM_OK;
}

/* llama.cpp's "gpt2" keys */
static parlm_status gpt2_hparams(parlm_gguf_writer *w, const parlm_gpt_config *c)
{
    uint32_t hp[5] = {(uint32_t)c->max_seq, (uint32_t)c->n_embd, (uint32_t)c->n_layer,
                      4 * (uint32_t)c->n_embd, (uint32_t)c->n_head};
    float eps = 1e-5f;
    parlm_status s;
    if ((s = parlm_gguf_set_str(w, "general.architecture", "gpt2", 4)) ||
        (s = parlm_gguf_set_str(w, "general.name", "parlm gpt2", 10)) ||
        (s = parlm_gguf_set(w, "gpt2.context_length", PARLM_GGUF_U32, &hp[0])) ||
        (s = parlm_gguf_set(w, "gpt2.embedding_length", PARLM_GGUF_U32, &hp[1])) ||
        (s = parlm_gguf_set(w, "gpt2.block_count", PARLM_GGUF_U32, &hp[2])) ||
        (s = parlm_gguf_set(w, "gpt2.feed_forward_length", PARLM_GGUF_U32, &hp[3])) ||
        (s = parlm_gguf_set(w, "gpt2.attention.head_count", PARLM_GGUF_U32, &hp[4])))
        return s;
    return parlm_gguf_set(w, "gpt2.attention.layer_norm_epsilon", PARLM_GGUF_F32, &eps);
}

/* llama.cpp's "llama" keys; RoPE as parlm computes it (llama.cpp's normal rope, the
 * rotated pairs adjacent, over the whole head), a linear position scaling when set */
static parlm_status llama_hparams(parlm_gguf_writer *w, const parlm_gpt_config *c)
{
    uint32_t hp[7] = {(uint32_t)c->max_seq, (uint32_t)c->n_embd, (uint32_t)c->n_layer,
                      (uint32_t)c->ffn_hidden, (uint32_t)c->n_head, (uint32_t)c->n_kv_head,
                      (uint32_t)(c->n_embd / c->n_head)};
    float theta = c->rope_theta, eps = c->norm_eps, factor = c->rope_scale;
    parlm_status s;
    if ((s = parlm_gguf_set_str(w, "general.architecture", "llama", 5)) ||
        (s = parlm_gguf_set_str(w, "general.name", "parlm llama", 11)) ||
        (s = parlm_gguf_set(w, "llama.context_length", PARLM_GGUF_U32, &hp[0])) ||
        (s = parlm_gguf_set(w, "llama.embedding_length", PARLM_GGUF_U32, &hp[1])) ||
        (s = parlm_gguf_set(w, "llama.block_count", PARLM_GGUF_U32, &hp[2])) ||
        (s = parlm_gguf_set(w, "llama.feed_forward_length", PARLM_GGUF_U32, &hp[3])) ||
        (s = parlm_gguf_set(w, "llama.attention.head_count", PARLM_GGUF_U32, &hp[4])) ||
        (s = parlm_gguf_set(w, "llama.attention.head_count_kv", PARLM_GGUF_U32, &hp[5])) ||
        (s = parlm_gguf_set(w, "llama.rope.dimension_count", PARLM_GGUF_U32, &hp[6])) ||
        (s = parlm_gguf_set(w, "llama.rope.freq_base", PARLM_GGUF_F32, &theta)) ||
        (s = parlm_gguf_set(w, "llama.attention.layer_norm_rms_epsilon", PARLM_GGUF_F32, &eps)))
        return s;
    if (factor != 1.0f &&
        ((s = parlm_gguf_set_str(w, "llama.rope.scaling.type", "linear", 6)) ||
         (s = parlm_gguf_set(w, "llama.rope.scaling.factor", PARLM_GGUF_F32, &factor))))
        return s;
    return PARLM_OK;
}

static parlm_status save_gguf(parlm_gpt *m, const char *path, parlm_wtype type,
                              const char *encoder_json, const char *vocab_bpe,
                              const parlm_tokenizer *tok);

parlm_status parlm_gpt_save_gguf(parlm_gpt *m, const char *path, parlm_wtype type,
                                 const char *encoder_json, const char *vocab_bpe)
{
    return save_gguf(m, path, type, encoder_json, vocab_bpe, NULL);
}

parlm_status parlm_gpt_save_gguf_tok(parlm_gpt *m, const char *path, parlm_wtype type,
                                     const parlm_tokenizer *tok)
{
    if (!tok)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_gguf_tok: null tokenizer");
    return save_gguf(m, path, type, NULL, NULL, tok);
}

static parlm_status save_gguf(parlm_gpt *m, const char *path, parlm_wtype type,
                              const char *encoder_json, const char *vocab_bpe,
                              const parlm_tokenizer *tok)
{
    if (!m || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_gguf: null argument");
    RETURN_IF_ERROR(parlm_gpt_check_owned(m, "parlm_gpt_save_gguf"));
    if (!parlm_wtype_name(type))
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_gguf: unknown type %d", (int)type);
    if (!encoder_json != !vocab_bpe)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_gguf: give encoder.json and vocab.bpe together");
    parlm_gpt_config c = parlm_gpt_get_config(m);
    parlm_gguf_writer *w;
    parlm_status s = parlm_gguf_writer_create(&w);
    if (s)
        return s;
    int nt = parlm_gpt_num_tensors(m);
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    vocab v = {0};
    const float *params = parlm_gpt_params(m);
    /* llama.cpp's file types: 0 all f32, 1 f16, 7 q8_0, 2 q4_0, 32 bf16 */
    uint32_t ftype = type == PARLM_WT_F32 ? 0 : type == PARLM_WT_F16 ? 1 : type == PARLM_WT_Q8_0 ? 7
                   : type == PARLM_WT_Q4_0 ? 2 : 32;
    uint32_t align = PARLM_GGUF_DEFAULT_ALIGNMENT, qv = 2;
    if (!bufs) {
        s = parlm_error(PARLM_ENOMEM, "out of memory");
        goto done;
    }
    if ((s = parlm_gguf_set(w, "general.alignment", PARLM_GGUF_U32, &align)) ||
        (s = parlm_gguf_set(w, "general.file_type", PARLM_GGUF_U32, &ftype)) ||
        (s = c.arch == PARLM_ARCH_LLAMA ? llama_hparams(w, &c) : gpt2_hparams(w, &c)))
        goto done;
    if ((type == PARLM_WT_Q8_0 || type == PARLM_WT_Q4_0) &&
        (s = parlm_gguf_set(w, "general.quantization_version", PARLM_GGUF_U32, &qv)))
        goto done;
    if (tok && parlm_tokenizer_vocab_size(tok) != c.vocab) {
        s = parlm_error(PARLM_EINVAL, "parlm_gpt_save_gguf_tok: the tokenizer has %d tokens, the "
                        "model's vocabulary is %d", parlm_tokenizer_vocab_size(tok), c.vocab);
        goto done;
    }
    if (tok && (s = parlm_tokenizer_write_gguf(tok, w)))
        goto done;
    if (encoder_json) {
        int32_t eot;
        if ((s = vocab_load(&v, encoder_json, vocab_bpe, c.vocab)))
            goto done;
        eot = v.types[v.ntok - 1] == 3 ? (int32_t)v.ntok - 1 : -1;
        for (int64_t i = 0; i < v.ntok; i++)
            if (v.types[i] == 3)
                eot = (int32_t)i;
        uint32_t id = (uint32_t)eot;
        /* pre: llama.cpp's name for GPT-2's pre-tokenizer regex */
        if ((s = parlm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", 4)) ||
            (s = parlm_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2", 5)) ||
            (s = parlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (uint64_t)v.ntok,
                                        (const char *const *)v.tokens, v.tok_len)) ||
            (s = parlm_gguf_set_arr(w, "tokenizer.ggml.token_type", PARLM_GGUF_I32,
                                    (uint64_t)v.ntok, v.types)) ||
            (s = parlm_gguf_set_arr_str(w, "tokenizer.ggml.merges", (uint64_t)v.nmerge,
                                        (const char *const *)v.merges, v.merge_len)))
            goto done;
        if (eot >= 0 && ((s = parlm_gguf_set(w, "tokenizer.ggml.bos_token_id", PARLM_GGUF_U32, &id)) ||
                         (s = parlm_gguf_set(w, "tokenizer.ggml.eos_token_id", PARLM_GGUF_U32, &id))))
            goto done;
    }
    /* GPT-2's tied LM head is written twice, as output.weight too: llama.cpp's gpt2 loader
     * requires that tensor (its own converter duplicates wte the same way) */
    parlm_wtype head_t = PARLM_WT_F32;
    uint64_t head_ne[2] = {0, 0};
    const void *head = NULL;
    for (int i = 0; i < nt; i++) {
        char name[64];
        int nd;
        uint64_t ne[2], bytes;
        int64_t off;
        if ((s = tensor_layout(m, i, name, &nd, ne, &off)))
            goto done;
        parlm_wtype t = nd == 1 ? PARLM_WT_F32 : type;
        if ((t == PARLM_WT_Q8_0 || t == PARLM_WT_Q4_0) && ne[0] % PARLM_QBLOCK)
            t = PARLM_WT_F16;
        const void *data = params + off; /* f32: stored as is, no copy */
        if (t != PARLM_WT_F32) {
            if ((s = parlm_wtype_bytes(t, ne[0] * ne[1], &bytes)))
                goto done;
            if (!(bufs[i] = malloc((size_t)bytes))) {
                s = parlm_error(PARLM_ENOMEM, "out of memory converting %s", name);
                goto done;
            }
            if ((s = parlm_quantize(t, params + off, (int64_t)(ne[0] * ne[1]), bufs[i])))
                goto done;
            data = bufs[i];
        }
        if ((s = parlm_gguf_add_tensor(w, name, t, nd, ne, data)))
            goto done;
        if (strcmp(name, "token_embd.weight") == 0)
            head = data, head_t = t, head_ne[0] = ne[0], head_ne[1] = ne[1];
    }
    /* (llama.cpp's llama loader takes token_embd when output.weight is absent) */
    if (head && c.arch == PARLM_ARCH_GPT2 &&
        (s = parlm_gguf_add_tensor(w, "output.weight", head_t, 2, head_ne, head)))
        goto done;
    s = parlm_gguf_write(w, path);
done:
    for (int i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    vocab_free(&v);
    parlm_gguf_writer_free(w);
    return s;
}

static parlm_status get_dim(const parlm_gguf *g, const char *key, uint64_t max, int *out)
{
    uint64_t v;
    parlm_status s = parlm_gguf_get_uint(g, key, &v);
    if (s)
        return s;
    if (v < 1 || v > max)
        return parlm_error(PARLM_EFORMAT, "%s is %llu, outside 1..%llu", key,
                           (unsigned long long)v, (unsigned long long)max);
    *out = (int)v;
    return PARLM_OK;
}

/* parlm's GPT-2 ties the LM head to token_embd: an output.weight (llama.cpp's converters
 * write one, a copy of token_embd) must hold exactly token_embd's type, shape and bytes. */
static parlm_status check_tied_head(const parlm_gguf *g, const char *path,
                                    const parlm_gguf_tensor *te)
{
    int64_t k = parlm_gguf_find_tensor(g, "output.weight");
    if (k < 0)
        return PARLM_OK;
    const parlm_gguf_tensor *o = parlm_gguf_tensor_at(g, k);
    if (o->type != te->type || o->n_dims != te->n_dims || o->ne[0] != te->ne[0] ||
        o->ne[1] != te->ne[1] || o->size != te->size || memcmp(o->data, te->data, o->size))
        return parlm_error(PARLM_EUNSUPPORTED, "%s: output.weight (%s [%llu, %llu]) is not a copy "
                           "of token_embd.weight (%s [%llu, %llu]): an untied LM head, and "
                           "parlm's GPT-2 ties it", path, parlm_wtype_name(o->type),
                           (unsigned long long)o->ne[0], (unsigned long long)o->ne[1],
                           parlm_wtype_name(te->type), (unsigned long long)te->ne[0],
                           (unsigned long long)te->ne[1]);
    return PARLM_OK;
}

/* A llama file's hyperparameters (llama.cpp's keys): head_count_kv, rope.freq_base and
 * rope.dimension_count may be absent (NH, 10000, the head size); a RoPE over part of the
 * head or a scaling other than linear is refused by name. */
static parlm_status llama_config(const parlm_gguf *g, const char *path, parlm_gpt_config *c)
{
    double theta = 10000.0, eps = 0.0, factor = 1.0;
    int hs = 0;
    parlm_status s;
    c->arch = PARLM_ARCH_LLAMA;
    if ((s = get_dim(g, "llama.context_length", 1 << 20, &c->max_seq)) ||
        (s = get_dim(g, "llama.embedding_length", 1 << 16, &c->n_embd)) ||
        (s = get_dim(g, "llama.block_count", 1024, &c->n_layer)) ||
        (s = get_dim(g, "llama.attention.head_count", 1024, &c->n_head)) ||
        (s = get_dim(g, "llama.feed_forward_length", 1 << 18, &c->ffn_hidden)) ||
        (s = parlm_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &eps)))
        return s;
    c->n_kv_head = c->n_head;
    if (parlm_gguf_find_kv(g, "llama.attention.head_count_kv") >= 0 &&
        (s = get_dim(g, "llama.attention.head_count_kv", 1024, &c->n_kv_head)))
        return s;
    if (parlm_gguf_find_kv(g, "llama.rope.freq_base") >= 0 &&
        (s = parlm_gguf_get_float(g, "llama.rope.freq_base", &theta)))
        return s;
    if (parlm_gguf_find_kv(g, "llama.rope.dimension_count") >= 0) {
        if ((s = get_dim(g, "llama.rope.dimension_count", 1 << 16, &hs)))
            return s;
        if (hs != c->n_embd / c->n_head)
            return parlm_error(PARLM_EUNSUPPORTED, "%s: llama.rope.dimension_count %d is not the "
                               "head size %d (parlm rotates whole heads)", path, hs,
                               c->n_embd / c->n_head);
    }
    if (parlm_gguf_find_kv(g, "llama.rope.scaling.type") >= 0) {
        const char *t;
        size_t n;
        if ((s = parlm_gguf_get_str(g, "llama.rope.scaling.type", &t, &n)))
            return s;
        if (n == 6 && memcmp(t, "linear", 6) == 0) {
            if ((s = parlm_gguf_get_float(g, "llama.rope.scaling.factor", &factor)))
                return s;
        } else if (!(n == 4 && memcmp(t, "none", 4) == 0)) {
            return parlm_error(PARLM_EUNSUPPORTED, "%s: llama.rope.scaling.type '%.*s' (parlm "
                               "scales positions linearly, or not at all)", path,
                               (int)(n > 32 ? 32 : n), t);
        }
    }
    c->rope_theta = (float)theta;
    c->norm_eps = (float)eps;
    c->rope_scale = (float)factor;
    return PARLM_OK;
}

/* Whether the blocks of tensor t are exactly parlm_quantize of their dequantized weights w
 * (n of them): then a decode copy quantized from w holds the file's bits. A block whose
 * scale is not finite (NaN or infinite weights) is a bad file. */
static parlm_status blocks_exact(const char *path, const parlm_gguf_tensor *t, const float *w,
                                 int64_t n, int *exact)
{
    void *q = malloc((size_t)t->size);
    if (!q)
        return parlm_error(PARLM_ENOMEM, "out of memory checking the blocks of %s", t->name);
    parlm_status s = parlm_quantize(t->type, w, n, q);
    if (s == PARLM_OK && memcmp(q, t->data, (size_t)t->size) != 0)
        *exact = 0;
    free(q);
    if (s != PARLM_OK) { /* the message is rewritten in the buffer it sits in: copy it */
        char why[160];
        snprintf(why, sizeof why, "%s", parlm_last_error());
        return parlm_error(s, "%s: tensor %s: a block scale is not finite (%s)", path, t->name,
                           why);
    }
    return PARLM_OK;
}

parlm_status parlm_gpt_load_gguf(parlm_gpt **out, const char *path)
{
    return parlm_gpt_load_gguf_ex(out, path, NULL);
}

/* The model's config from the file's metadata, checked against the tensors it holds
 * before anything of that size is allocated */
static parlm_status gguf_config(parlm_gguf *g, const char *path, parlm_gpt_config *out)
{
    parlm_status s;
    parlm_gpt_config c = {0};
    const char *arch;
    size_t alen;
    int ff = 0;
    double eps = 0;
    int64_t ti;
    if ((s = parlm_gguf_get_str(g, "general.architecture", &arch, &alen)))
        goto done;
    int llama = alen == 5 && memcmp(arch, "llama", 5) == 0;
    if (!llama && (alen != 4 || memcmp(arch, "gpt2", 4) != 0)) {
        s = parlm_error(PARLM_EUNSUPPORTED, "%s: architecture '%.*s' (parlm loads gpt2 and llama)",
                        path, (int)(alen > 32 ? 32 : alen), arch);
        goto done;
    }
    if (llama) {
        if ((s = llama_config(g, path, &c)))
            goto done;
    } else {
        if ((s = get_dim(g, "gpt2.context_length", 1 << 20, &c.max_seq)) ||
            (s = get_dim(g, "gpt2.embedding_length", 1 << 16, &c.n_embd)) ||
            (s = get_dim(g, "gpt2.block_count", 1024, &c.n_layer)) ||
            (s = get_dim(g, "gpt2.attention.head_count", 1024, &c.n_head)) ||
            (s = get_dim(g, "gpt2.feed_forward_length", 1 << 18, &ff)) ||
            (s = parlm_gguf_get_float(g, "gpt2.attention.layer_norm_epsilon", &eps)))
            goto done;
        if (ff != 4 * c.n_embd || fabs(eps - 1e-5) > 1e-9) {
            s = parlm_error(PARLM_EUNSUPPORTED,
                            "%s: feed_forward_length %d and layer_norm_epsilon %g (parlm's GPT-2 has 4*%d and 1e-5)",
                            path, ff, eps, c.n_embd);
            goto done;
        }
    }
    if ((ti = parlm_gguf_find_tensor(g, "token_embd.weight")) < 0) {
        s = parlm_error(PARLM_EFORMAT, "%s: tensor token_embd.weight is missing", path);
        goto done;
    }
    const parlm_gguf_tensor *te = parlm_gguf_tensor_at(g, ti);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        s = parlm_error(PARLM_EFORMAT, "%s: token_embd.weight has %llu rows", path,
                        (unsigned long long)te->ne[1]);
        goto done;
    }
    c.vocab = (int)te->ne[1];
    /* Llama: an output.weight that is not token_embd's copy is an untied head */
    c.untied_head = llama && parlm_gguf_find_tensor(g, "output.weight") >= 0 &&
                    check_tied_head(g, path, te) != PARLM_OK;
    int64_t np;
    if ((s = parlm_gpt_config_num_params(&c, &np)))
        goto done;
    if (!llama && (s = check_tied_head(g, path, te)))
        goto done;
    /* before allocating a model of the header's size: the file must hold that many weights
     * (all but the padding rows of the vocabulary, in the embedding and an untied head) */
    uint64_t have = 0, need = (uint64_t)np - (uint64_t)((c.vocab + 127) / 128 * 128 - c.vocab) *
                                                 (uint64_t)c.n_embd * (1 + (uint64_t)c.untied_head);
    for (int64_t i = 0; i < parlm_gguf_num_tensors(g); i++) {
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, i);
        have += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* each <= the file size */
    }
    if (have < need) {
        s = parlm_error(PARLM_EFORMAT, "%s: the header describes %llu weights, the tensors hold %llu",
                        path, (unsigned long long)need, (unsigned long long)have);
        goto done;
    }
    *out = c;
done:
    return s;
}

/* tensor i of m in the file: *t, its name and shape checked */
static parlm_status find_tensor(parlm_gguf *g, const char *path, const parlm_gpt *m, int i,
                                const parlm_gguf_tensor **t, int64_t *off, uint64_t ne[2])
{
    char name[64];
    int nd;
    RETURN_IF_ERROR(tensor_layout(m, i, name, &nd, ne, off));
    int64_t k = parlm_gguf_find_tensor(g, name);
    if (k < 0)
        return parlm_error(PARLM_EFORMAT, "%s: tensor %s is missing", path, name);
    *t = parlm_gguf_tensor_at(g, k);
    if ((*t)->n_dims != nd || (*t)->ne[0] != ne[0] || (*t)->ne[1] != ne[1])
        return parlm_error(PARLM_EFORMAT, "%s: tensor %s has shape [%llu, %llu] (%d dims), "
                           "expected [%llu, %llu]", path, name, (unsigned long long)(*t)->ne[0],
                           (unsigned long long)(*t)->ne[1], (*t)->n_dims,
                           (unsigned long long)ne[0], (unsigned long long)ne[1]);
    return PARLM_OK;
}

parlm_status parlm_gpt_load_gguf_ex(parlm_gpt **out, const char *path, parlm_gguf_load_info *info)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load_gguf: null argument");
    *out = NULL;
    /* weights of the matrices by storage type (indexed by parlm_wtype, < 32) */
    uint64_t by_type[32] = {0};
    int exact = 1;
    parlm_gguf *g;
    parlm_status s = parlm_gguf_open(&g, path);
    if (s)
        return s;
    parlm_gpt *m = NULL;
    parlm_gpt_config c;
    if ((s = gguf_config(g, path, &c)) || (s = parlm_gpt_create(&m, &c, 0)))
        goto done;
    float *params = parlm_gpt_params(m);
    c = parlm_gpt_get_config(m);
    int nt = parlm_gpt_num_tensors(m);
    for (int i = 0; i < nt; i++) {
        uint64_t ne[2];
        int64_t off;
        const parlm_gguf_tensor *t;
        if ((s = find_tensor(g, path, m, i, &t, &off, ne)))
            goto done;
        int nd = t->n_dims;
        if ((s = parlm_dequantize(t->type, t->data, (int64_t)(ne[0] * ne[1]), params + off)))
            goto done;
        if (nd == 2 && (unsigned)t->type < 32)
            by_type[t->type] += ne[0] * ne[1];
        if ((t->type == PARLM_WT_Q8_0 || t->type == PARLM_WT_Q4_0) &&
            (s = blocks_exact(path, t, params + off, (int64_t)(ne[0] * ne[1]), &exact)))
            goto done;
    }
    if (info) {
        info->wtype = PARLM_WT_F32;
        for (int k = 0; k < 32; k++)
            if (by_type[k] > by_type[info->wtype])
                info->wtype = (parlm_wtype)k;
        info->blocks_exact = exact;
    }
    /* the padding rows of the token embedding: never a real token's, zero as in llm.c */
    memset(params + (int64_t)c.vocab * c.n_embd, 0,
           (size_t)(c.vocab_pad - c.vocab) * (size_t)c.n_embd * sizeof(float));
done:
    if (s)
        parlm_gpt_free(m);
    else
        *out = m;
    parlm_gguf_close(g);
    return s;
}

static void close_gguf(void *g) { parlm_gguf_close(g); }

parlm_status parlm_gpt_map_gguf(parlm_gpt **out, const char *path, parlm_gguf_load_info *info)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_map_gguf: null argument");
    *out = NULL;
    parlm_gguf *g;
    parlm_status s = parlm_gguf_open(&g, path);
    if (s)
        return s;
    parlm_gpt *m = NULL;
    parlm_gpt_config c;
    if ((s = gguf_config(g, path, &c)) || (s = parlm_gpt_create_view(&m, &c))) {
        parlm_gguf_close(g);
        return s;
    }
    float *vec = parlm_gpt_view_vectors(m);
    int view_type = PARLM_WT_F32;
    for (int i = 0; i < parlm_gpt_num_tensors(m) && !s; i++) {
        uint64_t ne[2];
        int64_t off;
        const parlm_gguf_tensor *t;
        if ((s = find_tensor(g, path, m, i, &t, &off, ne)))
            break;
        if (off >= 0) { /* a vector: converted into the model's buffer */
            s = parlm_dequantize(t->type, t->data, (int64_t)(ne[0] * ne[1]), vec + off);
        } else if (t->type == PARLM_WT_F32 && (uintptr_t)t->data % sizeof(float)) {
            s = parlm_error(PARLM_EFORMAT, "%s: tensor %s: f32 data at a misaligned offset",
                            path, t->name);
        } else if ((s = parlm_gpt_view_bind(m, i, t->type, t->data))) {
            char why[200];
            snprintf(why, sizeof why, "%s", parlm_last_error());
            s = parlm_error(s, "%s: tensor %s: %s", path, t->name, why);
        } else if (strcmp(t->name, "token_embd.weight") || !c.untied_head) {
            view_type = t->type; /* a product's matrix: the view's type */
        }
    }
    if (!s)
        s = parlm_gpt_view_keep(m, close_gguf, g);
    if (s) {
        parlm_gpt_free(m);
        parlm_gguf_close(g);
        return s;
    }
    if (info) {
        info->wtype = (parlm_wtype)view_type;
        info->blocks_exact = 1;
    }
    *out = m;
    return PARLM_OK;
}
