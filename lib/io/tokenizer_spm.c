/* lib/io/tokenizer_spm.c — Llama's tokenizer: SentencePiece-style BPE over scored pieces
 * with byte fallback, as llama.cpp's "llama" vocabulary runs it, read from and written to
 * GGUF metadata (tokenizer.ggml.*). The one idea: there is no merge list; the text is
 * cut into UTF-8 characters and the adjacent pair whose concatenation is the piece of
 * highest score is merged first (leftmost on ties), found with a heap and discarded when
 * stale, so n characters cost O(n log n). What no piece covers is spelled in <0xXX>s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "parlm/gguf.h"
#include "parlm/tokenizer.h"
#include "tokenizer_impl.h"

struct spm_vocab {
    char *pieces;    /* piece spellings as stored (U+2581 for a space), concatenated */
    uint32_t *poff;  /* piece i is pieces[poff[i] .. poff[i+1]) */
    float *scores;
    int8_t *types;
    int32_t *map;    /* open addressing: ids of the mergeable pieces, -1 empty */
    size_t mask;
    uint32_t max_len; /* of the mergeable pieces: longer pairs need no look-up */
    int bos, eos, unk, pad;
    int add_bos, add_eos, add_space_prefix;
};

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* U+2581 */
static const char UNK_TEXT[] = "\xe2\x96\x85";   /* U+2585: llama.cpp's text of <unk> */

void parlm_spm_free(struct spm_vocab *v)
{
    if (!v)
        return;
    free(v->pieces);
    free(v->poff);
    free(v->scores);
    free(v->types);
    free(v->map);
    free(v);
}

static int mergeable(int type)
{
    return type == PARLM_TOKEN_NORMAL || type == PARLM_TOKEN_USER_DEFINED ||
           type == PARLM_TOKEN_UNDEFINED;
}

static size_t bytes_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

static int piece_is(const struct spm_vocab *v, int32_t id, const char *s, size_t n)
{
    return v->poff[id + 1] - v->poff[id] == n && memcmp(v->pieces + v->poff[id], s, n) == 0;
}

/* id of the mergeable piece spelled s[0..n), or -1 */
static int32_t piece_id(const struct spm_vocab *v, const char *s, size_t n)
{
    for (size_t h = bytes_hash(s, n) & v->mask;; h = (h + 1) & v->mask) {
        int32_t id = v->map[h];
        if (id < 0)
            return -1;
        if (piece_is(v, id, s, n))
            return id;
    }
}

/* "<0xXX>" (uppercase or lowercase hex) -> XX, else -1 */
static int byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Checks v (from a file or a caller; who names it in errors) and builds the tokenizer. */
static parlm_status build(parlm_tokenizer **out, const parlm_llama_vocab *v, const char *who)
{
    *out = NULL;
    if (v->n < 1 || v->n > MAX_VOCAB)
        return parlm_error(PARLM_EFORMAT, "%s: tokenizer.ggml.tokens has %d tokens, expected "
                           "1..%d", who, v->n, MAX_VOCAB);
    size_t n = (size_t)v->n, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v->pieces[i])
            return parlm_error(PARLM_EINVAL, "%s: token %zu is NULL", who, i);
        total += v->lens ? v->lens[i] : strlen(v->pieces[i]);
        if (total > UINT32_MAX / 2)
            return parlm_error(PARLM_EFORMAT, "%s: tokenizer.ggml.tokens holds more than 2 GiB "
                               "of text", who);
        int type = v->types ? v->types[i] : PARLM_TOKEN_NORMAL;
        if (type < PARLM_TOKEN_UNDEFINED || type > PARLM_TOKEN_BYTE)
            return parlm_error(PARLM_EFORMAT, "%s: tokenizer.ggml.token_type[%zu] is %d, "
                               "outside 0..6", who, i, type);
        if (v->scores && isnan(v->scores[i]))
            return parlm_error(PARLM_EFORMAT, "%s: tokenizer.ggml.scores[%zu] is NaN", who, i);
    }
    const struct { const char *key; int id; } special[] = {
        {"tokenizer.ggml.bos_token_id", v->bos}, {"tokenizer.ggml.eos_token_id", v->eos},
        {"tokenizer.ggml.unknown_token_id", v->unk}, {"tokenizer.ggml.padding_token_id", v->pad}};
    for (int k = 0; k < 4; k++)
        if (special[k].id < -1 || special[k].id >= v->n)
            return parlm_error(PARLM_EFORMAT, "%s: %s is %d, outside the vocabulary [0, %d)",
                               who, special[k].key, special[k].id, v->n);

    struct spm_vocab *sv = calloc(1, sizeof *sv);
    parlm_tokenizer *t = calloc(1, sizeof *t);
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (sv) {
        sv->pieces = malloc(total ? total : 1);
        sv->poff = malloc((n + 1) * sizeof *sv->poff);
        sv->scores = malloc(n * sizeof *sv->scores);
        sv->types = malloc(n);
        sv->map = malloc(cap * sizeof *sv->map);
    }
    if (t) {
        t->spm = sv;
        t->bytes = malloc(total + 3 * n); /* a piece's bytes or fewer; <unk>'s 3 */
        t->off = malloc((n + 1) * sizeof *t->off);
    }
    if (!t || !sv || !sv->pieces || !sv->poff || !sv->scores || !sv->types || !sv->map ||
        !t->bytes || !t->off) {
        if (t)
            parlm_tokenizer_free(t);
        else
            parlm_spm_free(sv);
        return parlm_error(PARLM_ENOMEM, "%s: out of memory for %zu tokens", who, n);
    }
    t->kind = TOK_LLAMA;
    t->vocab = v->n;
    t->eot = v->eos;
    t->bos = v->bos;
    sv->mask = cap - 1;
    memset(sv->map, 0xff, cap * sizeof *sv->map);
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    sv->bos = v->bos, sv->eos = v->eos, sv->unk = v->unk, sv->pad = v->pad;
    sv->add_bos = !!v->add_bos, sv->add_eos = !!v->add_eos;
    sv->add_space_prefix = !!v->add_space_prefix;

    uint32_t po = 0, bo = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = v->pieces[i];
        size_t len = v->lens ? v->lens[i] : strlen(p);
        int type = v->types ? v->types[i] : PARLM_TOKEN_NORMAL;
        memcpy(sv->pieces + po, p, len);
        sv->poff[i] = po;
        sv->scores[i] = v->scores ? v->scores[i] : 0.0f;
        sv->types[i] = (int8_t)type;
        t->off[i] = bo;
        if (type == PARLM_TOKEN_BYTE) {
            int b = byte_piece(p, len);
            if (b < 0) {
                parlm_tokenizer_free(t);
                return parlm_error(PARLM_EFORMAT, "%s: token %zu has type byte but is spelled "
                                   "\"%.*s\", not <0xXX>", who, i, (int)(len < 20 ? len : 20), p);
            }
            if (t->byte_id[b] < 0) /* the first token of a byte encodes it */
                t->byte_id[b] = (int32_t)i;
            t->bytes[bo++] = (char)b;
        } else if (type == PARLM_TOKEN_UNKNOWN) {
            memcpy(t->bytes + bo, UNK_TEXT, 3);
            bo += 3;
        } else if (mergeable(type)) {
            for (size_t j = 0; j < len;) {
                if (j + 3 <= len && memcmp(p + j, SPACE_MARK, 3) == 0) {
                    t->bytes[bo++] = ' ';
                    j += 3;
                } else
                    t->bytes[bo++] = p[j++];
            }
            /* a repeated piece: the later id wins, as in llama.cpp's token map */
            sv->poff[i + 1] = po + (uint32_t)len; /* piece_is reads poff[id + 1] */
            size_t h = bytes_hash(p, len) & sv->mask;
            while (sv->map[h] >= 0 && !piece_is(sv, sv->map[h], p, len))
                h = (h + 1) & sv->mask;
            sv->map[h] = (int32_t)i;
            sv->max_len = len > sv->max_len ? (uint32_t)len : sv->max_len;
        }
        po += (uint32_t)len;
        sv->poff[i + 1] = po;
    }
    t->off[n] = bo;
    *out = t;
    return PARLM_OK;
}

parlm_status parlm_tokenizer_create_llama(parlm_tokenizer **out, const parlm_llama_vocab *v)
{
    if (!out || !v || (v->n > 0 && !v->pieces))
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_create_llama: null argument");
    return build(out, v, "parlm_tokenizer_create_llama");
}

/* ---- encoding ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), or 1 for a byte that starts none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80)
        return 1;
    else if ((c & 0xe0) == 0xc0)
        len = 2, v = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, v = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 1;
    if (len > n)
        return 1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 1;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 1;
    return len;
}

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of left + right when pushed: a mismatch means stale */
} bigram;

typedef struct symbols {
    const char *text;
    uint32_t *start, *size; /* size 0: merged into its left neighbour */
    int32_t *prev, *next;
    bigram *heap;
    size_t nheap;
} symbols;

static int better(bigram x, bigram y)
{
    return x.score > y.score || (x.score == y.score && x.left < y.left);
}

static void heap_push(symbols *s, bigram b)
{
    size_t i = s->nheap++;
    while (i > 0 && better(b, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = b;
}

static bigram heap_pop(symbols *s)
{
    bigram top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && better(s->heap[c + 1], s->heap[c]))
            c++;
        if (!better(s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static void try_pair(const struct spm_vocab *v, symbols *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = s->size[l] + s->size[r];
    if (size > v->max_len)
        return;
    int32_t id = piece_id(v, s->text + s->start[l], size);
    if (id >= 0)
        heap_push(s, (bigram){v->scores[id], l, r, size});
}

parlm_status parlm_spm_encode(const parlm_tokenizer *t, const char *text, size_t len,
                              int add_special, int32_t **ids, size_t *n)
{
    const struct spm_vocab *v = t->spm;
    if (len > (size_t)INT32_MAX / 4)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_encode: %zu bytes of text, at most %d "
                           "at once for a llama tokenizer", len, INT32_MAX / 4);
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    /* the normalised text: "▁" + text with every ' ' spelled "▁" */
    size_t nl = len ? len + 2 * spaces + (v->add_space_prefix ? 3 : 0) : 0;
    char *norm = malloc(nl ? nl : 1);
    /* every character yields at most one token per byte */
    int32_t *out = malloc((nl + 2) * sizeof *out);
    symbols s = {norm, malloc((nl ? nl : 1) * sizeof *s.start),
                 malloc((nl ? nl : 1) * sizeof *s.size), malloc((nl ? nl : 1) * sizeof *s.prev),
                 malloc((nl ? nl : 1) * sizeof *s.next), malloc((3 * nl + 1) * sizeof *s.heap), 0};
    parlm_status st = PARLM_OK;
    size_t count = 0;
    if (!norm || !out || !s.start || !s.size || !s.prev || !s.next || !s.heap) {
        st = parlm_error(PARLM_ENOMEM, "parlm_tokenizer_encode: %zu bytes of text", len);
        goto done;
    }
    size_t k = 0;
    if (len && v->add_space_prefix) {
        memcpy(norm, SPACE_MARK, 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(norm + k, SPACE_MARK, 3);
            k += 3;
        } else
            norm[k++] = text[i];
    }
    int32_t nsym = 0;
    for (size_t i = 0; i < nl; nsym++) {
        size_t l = utf8_len((const unsigned char *)norm + i, nl - i);
        s.start[nsym] = (uint32_t)i;
        s.size[nsym] = (uint32_t)l;
        s.prev[nsym] = nsym - 1;
        s.next[nsym] = i + l < nl ? nsym + 1 : -1;
        i += l;
    }
    for (int32_t i = 1; i < nsym; i++)
        try_pair(v, &s, i - 1, i);
    while (s.nheap) {
        bigram b = heap_pop(&s);
        if (!s.size[b.left] || !s.size[b.right] || s.next[b.left] != b.right ||
            s.size[b.left] + s.size[b.right] != b.size)
            continue; /* stale: one side was merged since the push */
        s.size[b.left] += s.size[b.right];
        s.size[b.right] = 0;
        s.next[b.left] = s.next[b.right];
        if (s.next[b.right] >= 0)
            s.prev[s.next[b.right]] = b.left;
        try_pair(v, &s, s.prev[b.left], b.left);
        try_pair(v, &s, b.left, s.next[b.left]);
    }
    if (add_special && v->add_bos && v->bos >= 0)
        out[count++] = v->bos;
    for (int32_t i = nsym ? 0 : -1; i >= 0; i = s.next[i]) {
        const char *p = norm + s.start[i];
        int32_t id = piece_id(v, p, s.size[i]);
        if (id >= 0) {
            out[count++] = id;
            continue;
        }
        int all = 1; /* an unmerged character without a piece: its bytes */
        for (uint32_t j = 0; j < s.size[i]; j++)
            all &= t->byte_id[(unsigned char)p[j]] >= 0;
        if (all) {
            for (uint32_t j = 0; j < s.size[i]; j++)
                out[count++] = t->byte_id[(unsigned char)p[j]];
        } else if (v->unk >= 0) {
            out[count++] = v->unk;
        } else {
            st = parlm_error(PARLM_EINVAL, "parlm_tokenizer_encode: byte 0x%02x (byte %u of "
                             "the normalised text) has no piece, no <0xXX> token, and the "
                             "vocabulary no unknown token", (unsigned char)p[0],
                             (unsigned)s.start[i]);
            goto done;
        }
    }
    if (add_special && v->add_eos && v->eos >= 0)
        out[count++] = v->eos;
done:
    free(norm);
    free(s.start), free(s.size), free(s.prev), free(s.next), free(s.heap);
    if (st != PARLM_OK) {
        free(out);
        return st;
    }
    *ids = out;
    *n = count;
    return PARLM_OK;
}

size_t parlm_spm_leading_skip(const parlm_tokenizer *t, const int32_t *ids, size_t n)
{
    const struct spm_vocab *v = t->spm;
    if (!v->add_space_prefix)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (t->off[id + 1] == t->off[id])
            continue; /* control, unused: no text */
        return mergeable(v->types[id]) && t->bytes[t->off[id]] == ' ';
    }
    return 0;
}

/* ---- GGUF ---------------------------------------------------------------------------- */

/* A token id key: absent is def (if inside the vocabulary, else none); -1 and 0xffffffff
 * (-1 stored as u32) are none; anything else outside [0, n) is an error. */
static parlm_status get_id(const parlm_gguf *g, const char *path, const char *key, int def,
                           int n, int *out)
{
    if (parlm_gguf_find_kv(g, key) < 0) {
        *out = def < n ? def : -1;
        return PARLM_OK;
    }
    int64_t x;
    parlm_status st = parlm_gguf_get_int(g, key, &x);
    if (st)
        return st;
    if (x == -1 || x == 0xffffffffLL) {
        *out = -1;
        return PARLM_OK;
    }
    if (x < 0 || x >= n)
        return parlm_error(PARLM_EFORMAT, "%s: %s is %lld, outside the vocabulary [0, %d)", path,
                           key, (long long)x, n);
    *out = (int)x;
    return PARLM_OK;
}

static parlm_status get_flag(const parlm_gguf *g, const char *key, int def, int *out)
{
    if (parlm_gguf_find_kv(g, key) < 0) {
        *out = def;
        return PARLM_OK;
    }
    return parlm_gguf_get_bool(g, key, out);
}

/* A numeric array of exactly n elements of type want, or absent (*data NULL). */
static parlm_status get_column(const parlm_gguf *g, const char *path, const char *key,
                               parlm_gguf_type want, const char *want_name, uint64_t n,
                               const void **data)
{
    *data = NULL;
    if (parlm_gguf_find_kv(g, key) < 0)
        return PARLM_OK;
    parlm_gguf_type et;
    uint64_t m;
    parlm_status st = parlm_gguf_get_arr(g, key, &et, &m, data);
    if (st)
        return st;
    if (et != want)
        return parlm_error(PARLM_EFORMAT, "%s: %s holds elements of GGUF type %d, expected %s",
                           path, key, (int)et, want_name);
    if (m != n)
        return parlm_error(PARLM_EFORMAT, "%s: %s has %llu entries, tokenizer.ggml.tokens has "
                           "%llu", path, key, (unsigned long long)m, (unsigned long long)n);
    return PARLM_OK;
}

parlm_status parlm_spm_load_gguf(parlm_tokenizer **out, const parlm_gguf *g, const char *path)
{
    *out = NULL;
    const char *key = "tokenizer.ggml.tokens";
    int64_t ki = parlm_gguf_find_kv(g, key);
    parlm_gguf_type et;
    uint64_t ntok = 0;
    if (ki < 0)
        return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' is missing", path, key);
    if (parlm_gguf_kv_type(g, ki, &et, &ntok) != PARLM_GGUF_ARRAY || et != PARLM_GGUF_STRING)
        return parlm_error(PARLM_EFORMAT, "%s: %s is not an array of strings", path, key);
    if (ntok < 1 || ntok > MAX_VOCAB)
        return parlm_error(PARLM_EFORMAT, "%s: %s has %llu tokens, expected 1..%d", path, key,
                           (unsigned long long)ntok, MAX_VOCAB);
    int n = (int)ntok;
    const void *sc, *ty;
    parlm_status st;
    if ((st = get_column(g, path, "tokenizer.ggml.scores", PARLM_GGUF_F32, "float32", ntok, &sc)) ||
        (st = get_column(g, path, "tokenizer.ggml.token_type", PARLM_GGUF_I32, "int32", ntok, &ty)))
        return st;
    parlm_llama_vocab v = {.n = n};
    if ((st = get_id(g, path, "tokenizer.ggml.bos_token_id", 1, n, &v.bos)) ||
        (st = get_id(g, path, "tokenizer.ggml.eos_token_id", 2, n, &v.eos)) ||
        (st = get_id(g, path, "tokenizer.ggml.unknown_token_id", 0, n, &v.unk)) ||
        (st = get_id(g, path, "tokenizer.ggml.padding_token_id", -1, n, &v.pad)) ||
        (st = get_flag(g, "tokenizer.ggml.add_bos_token", 1, &v.add_bos)) ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", 0, &v.add_eos)) ||
        (st = get_flag(g, "tokenizer.ggml.add_space_prefix", 1, &v.add_space_prefix)))
        return st;
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = sc ? malloc((size_t)n * sizeof *scores) : NULL;
    int32_t *types = ty ? malloc((size_t)n * sizeof *types) : NULL;
    if (!pieces || !lens || (sc && !scores) || (ty && !types)) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory for %d tokens", path, n);
        goto done;
    }
    for (int i = 0; i < n && !st; i++)
        st = parlm_gguf_get_arr_str(g, key, (uint64_t)i, &pieces[i], &lens[i]);
    if (st)
        goto done;
    if (sc)
        memcpy(scores, sc, (size_t)n * sizeof *scores); /* unaligned in the file */
    if (ty)
        memcpy(types, ty, (size_t)n * sizeof *types);
    v.pieces = pieces;
    v.lens = lens;
    v.scores = scores;
    v.types = types;
    st = build(out, &v, path);
done:
    free(pieces), free(lens), free(scores), free(types);
    return st;
}

parlm_status parlm_tokenizer_write_gguf(const parlm_tokenizer *t, parlm_gguf_writer *w)
{
    if (!t || !w)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_write_gguf: null argument");
    if (t->kind != TOK_LLAMA)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_tokenizer_write_gguf: only a llama "
                           "tokenizer is written (GPT-2's goes in with parlm_gpt_save_gguf)");
    const struct spm_vocab *v = t->spm;
    size_t n = (size_t)t->vocab;
    const char **pieces = malloc(n * sizeof *pieces);
    size_t *lens = malloc(n * sizeof *lens);
    int32_t *types = malloc(n * sizeof *types);
    parlm_status st = PARLM_OK;
    if (!pieces || !lens || !types) {
        st = parlm_error(PARLM_ENOMEM, "parlm_tokenizer_write_gguf: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pieces[i] = v->pieces + v->poff[i];
        lens[i] = v->poff[i + 1] - v->poff[i];
        types[i] = v->types[i];
    }
    uint8_t flags[3] = {(uint8_t)v->add_bos, (uint8_t)v->add_eos, (uint8_t)v->add_space_prefix};
    if ((st = parlm_gguf_set_str(w, "tokenizer.ggml.model", "llama", 5)) ||
        (st = parlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", n, pieces, lens)) ||
        (st = parlm_gguf_set_arr(w, "tokenizer.ggml.scores", PARLM_GGUF_F32, n, v->scores)) ||
        (st = parlm_gguf_set_arr(w, "tokenizer.ggml.token_type", PARLM_GGUF_I32, n, types)))
        goto done;
    const struct { const char *key; int id; } special[] = {
        {"tokenizer.ggml.bos_token_id", v->bos}, {"tokenizer.ggml.eos_token_id", v->eos},
        {"tokenizer.ggml.unknown_token_id", v->unk}, {"tokenizer.ggml.padding_token_id", v->pad}};
    for (int k = 0; k < 4 && !st; k++) {
        /* u32 as llama.cpp reads them; absent would mean llama.cpp's default, so "none"
         * is written as 0xffffffff (-1), which llama.cpp also leaves unset */
        uint32_t id = special[k].id < 0 ? UINT32_MAX : (uint32_t)special[k].id;
        st = parlm_gguf_set(w, special[k].key, PARLM_GGUF_U32, &id);
    }
    static const char *const flag_key[3] = {"tokenizer.ggml.add_bos_token",
                                            "tokenizer.ggml.add_eos_token",
                                            "tokenizer.ggml.add_space_prefix"};
    for (int k = 0; k < 3 && !st; k++)
        st = parlm_gguf_set(w, flag_key[k], PARLM_GGUF_BOOL, &flags[k]);
done:
    free(pieces), free(lens), free(types);
    return st;
}
