/* lib/io/tokenizer.c — GPT-2 byte-level BPE, llm.c's tokenizer file, bytes, and the
 * choice between GPT-2's and Llama's (tokenizer_spm.c) tokenizer in a GGUF file.
 * GPT-2 encoding: (1) split the text with GPT-2's pre-tokenizer regex, written out by
 * hand over Unicode classes; (2) run BPE on each piece's bytes: repeatedly merge the
 * adjacent pair of lowest merge rank (leftmost first), found with a heap, so a piece of
 * n bytes costs O(n log n) even for pathological runs. Tokens are kept as raw bytes. */
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/gguf.h"
#include "parlm/tensor.h"
#include "parlm/tokenizer.h"
#include "tokenizer_impl.h"
#include "unicode_tables.h"
#define MAX_VOCAB_FILE ((size_t)64 << 20)

/* ---- Unicode classes -------------------------------------------------------------- */

static int in_table(const uint32_t (*t)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < t[mid][0])
            hi = mid;
        else if (cp > t[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}
#define IN(tab, cp) in_table(tab, sizeof tab / sizeof tab[0], cp)

enum { C_LETTER, C_NUMBER, C_SPACE, C_OTHER };

static int classify(uint32_t cp)
{
    if (cp < 128) { /* fast path */
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return C_LETTER;
        if (cp >= '0' && cp <= '9')
            return C_NUMBER;
        if (cp == ' ' || (cp >= 9 && cp <= 13))
            return C_SPACE;
        return C_OTHER;
    }
    if (IN(uni_letter, cp))
        return C_LETTER;
    if (IN(uni_number, cp))
        return C_NUMBER;
    if (IN(uni_space, cp))
        return C_SPACE;
    return C_OTHER;
}

/* Decodes one UTF-8 sequence at s[0..n); invalid or overlong input is one byte of
 * class "other" (U+FFFD), so every byte still reaches the byte-level BPE. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (len > n)
        goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xfffd;
    return 1;
}

/* ---- GPT-2 pre-tokenizer ------------------------------------------------------------
 * The regex  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * tried in order at each position. Returns the byte length of the piece at s. */
static size_t class_run(const unsigned char *s, size_t n, size_t i, int cls)
{
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_next(s + i, n - i, &cp);
        if (classify(cp) != cls)
            break;
        i += l;
    }
    return i;
}

static size_t next_piece(const unsigned char *s, size_t n)
{
    if (s[0] == '\'' && n >= 2) {
        static const char *const suffix[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (int k = 0; k < 7; k++) {
            size_t l = strlen(suffix[k]);
            if (n >= 1 + l && memcmp(s + 1, suffix[k], l) == 0)
                return 1 + l;
        }
    }
    size_t k = s[0] == ' ' ? 1 : 0;
    if (k < n) {
        uint32_t cp;
        size_t l = utf8_next(s + k, n - k, &cp);
        int cls = classify(cp);
        if (cls != C_SPACE)
            return class_run(s, n, k + l, cls);
    }
    /* white space: the run, less its last character when a non-space follows */
    size_t end = 0, last = 0;
    while (end < n) {
        uint32_t cp;
        size_t l = utf8_next(s + end, n - end, &cp);
        if (classify(cp) != C_SPACE)
            break;
        last = end;
        end += l;
    }
    if (end < n && last > 0)
        return last;
    return end;
}

/* ---- merge table ---------------------------------------------------------------- */

static size_t pair_hash(int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static const merge *merge_find(const parlm_tokenizer *t, int32_t a, int32_t b)
{
    for (size_t h = pair_hash(a, b) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        const merge *m = &t->merges[h];
        if (m->a == -1)
            return NULL;
        if (m->a == a && m->b == b)
            return m;
    }
}

/* ---- BPE on one piece -------------------------------------------------------------- */

typedef struct heap_item {
    int32_t rank, pos;
} heap_item;

typedef struct bpe_work {
    int32_t *ids, *next, *prev;
    heap_item *heap;
    size_t cap, nheap;
} bpe_work;

static int item_less(heap_item x, heap_item y)
{
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(bpe_work *w, heap_item it)
{
    size_t i = w->nheap++;
    while (i > 0 && item_less(it, w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = it;
}

static heap_item heap_pop(bpe_work *w)
{
    heap_item top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nheap)
            break;
        if (c + 1 < w->nheap && item_less(w->heap[c + 1], w->heap[c]))
            c++;
        if (!item_less(w->heap[c], last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->nheap)
        w->heap[i] = last;
    return top;
}

static parlm_status work_reserve(bpe_work *w, size_t n)
{
    if (n <= w->cap)
        return PARLM_OK;
    size_t cap = n < 64 ? 64 : n * 2;
    int32_t *ids = realloc(w->ids, cap * sizeof *ids);
    if (ids)
        w->ids = ids;
    int32_t *next = realloc(w->next, cap * sizeof *next);
    if (next)
        w->next = next;
    int32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (prev)
        w->prev = prev;
    heap_item *heap = realloc(w->heap, 3 * cap * sizeof *heap); /* n-1 pairs + 2 per merge */
    if (heap)
        w->heap = heap;
    if (!ids || !next || !prev || !heap)
        return parlm_error(PARLM_ENOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
    w->cap = cap;
    return PARLM_OK;
}

static void push_pair(const parlm_tokenizer *t, bpe_work *w, int32_t pos)
{
    if (pos < 0) /* no symbol before the first */
        return;
    int32_t nx = w->next[pos];
    if (nx < 0)
        return;
    const merge *m = merge_find(t, w->ids[pos], w->ids[nx]);
    if (m)
        heap_push(w, (heap_item){m->rank, pos});
}

/* Appends the BPE tokens of piece s[0..n) to out. */
static parlm_status bpe_piece(const parlm_tokenizer *t, bpe_work *w, const unsigned char *s,
                              size_t n, int32_t *out, size_t *nout)
{
    parlm_status st = work_reserve(w, n);
    if (st != PARLM_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        w->ids[i] = t->byte_id[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(t, w, (int32_t)i);
    while (w->nheap) {
        heap_item it = heap_pop(w);
        int32_t nx = w->next[it.pos];
        if (w->ids[it.pos] < 0 || nx < 0)
            continue; /* stale: this symbol was merged away */
        const merge *m = merge_find(t, w->ids[it.pos], w->ids[nx]);
        if (!m || m->rank != it.rank)
            continue; /* stale: a neighbour changed since the push */
        w->ids[it.pos] = m->id;
        w->ids[nx] = -1;
        w->next[it.pos] = w->next[nx];
        if (w->next[nx] >= 0)
            w->prev[w->next[nx]] = it.pos;
        push_pair(t, w, w->prev[it.pos]);
        push_pair(t, w, it.pos);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        out[(*nout)++] = w->ids[i];
    return PARLM_OK;
}

parlm_status parlm_tokenizer_encode(const parlm_tokenizer *t, const char *text, size_t len,
                                    int32_t **ids, size_t *n)
{
    return parlm_tokenizer_encode_special(t, text, len, 0, ids, n);
}

parlm_status parlm_tokenizer_encode_special(const parlm_tokenizer *t, const char *text,
                                            size_t len, int add_special, int32_t **ids, size_t *n)
{
    if (!t || (!text && len) || !ids || !n)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_encode: null argument");
    *ids = NULL;
    *n = 0;
    if (t->kind == TOK_LLMC)
        return parlm_error(PARLM_EUNSUPPORTED,
                           "parlm_tokenizer_encode: an llm.c tokenizer file can only decode; "
                           "load encoder.json + vocab.bpe to encode");
    if (t->kind == TOK_LLAMA)
        return parlm_spm_encode(t, text, len, add_special, ids, n);
    /* a piece never yields more tokens than bytes */
    int32_t *out = malloc((len ? len : 1) * sizeof *out);
    if (!out)
        return parlm_error(PARLM_ENOMEM, "parlm_tokenizer_encode: %zu bytes of text", len);
    const unsigned char *s = (const unsigned char *)text;
    size_t count = 0;
    if (t->kind == TOK_BYTES) {
        for (size_t i = 0; i < len; i++)
            out[i] = s[i];
        count = len;
    } else {
        bpe_work w = {0};
        parlm_status st = PARLM_OK;
        for (size_t i = 0; i < len && st == PARLM_OK;) {
            size_t l = next_piece(s + i, len - i);
            st = bpe_piece(t, &w, s + i, l, out, &count);
            i += l;
        }
        free(w.ids), free(w.next), free(w.prev), free(w.heap);
        if (st != PARLM_OK) {
            free(out);
            return st;
        }
    }
    *ids = out;
    *n = count;
    return PARLM_OK;
}

/* ---- decoding ------------------------------------------------------------------- */

parlm_status parlm_tokenizer_token(const parlm_tokenizer *t, int32_t id, const char **bytes,
                                   size_t *len)
{
    if (!t || !bytes || !len)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_token: null argument");
    if (id < 0 || id >= t->vocab)
        return parlm_error(PARLM_EINVAL, "token id %d outside the vocabulary [0, %d)", id,
                           t->vocab);
    *bytes = t->bytes + t->off[id];
    *len = t->off[id + 1] - t->off[id];
    return PARLM_OK;
}

parlm_status parlm_tokenizer_decode(const parlm_tokenizer *t, const int32_t *ids, size_t n,
                                    char **text, size_t *len)
{
    if (!t || (!ids && n) || !text || !len)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_decode: null argument");
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return parlm_error(PARLM_EINVAL, "decode: ids[%zu] = %d outside the vocabulary [0, %d)",
                               i, ids[i], t->vocab);
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out)
        return parlm_error(PARLM_ENOMEM, "decode: %zu bytes", total + 1);
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
        memcpy(out + p, t->bytes + t->off[ids[i]], l);
        p += l;
    }
    if (t->kind == TOK_LLAMA && parlm_spm_leading_skip(t, ids, n)) {
        memmove(out, out + 1, p - 1); /* the first text byte is that space */
        p--;
    }
    out[p] = '\0';
    *text = out;
    *len = p;
    return PARLM_OK;
}

int parlm_tokenizer_vocab_size(const parlm_tokenizer *t) { return t ? t->vocab : 0; }
int parlm_tokenizer_eot(const parlm_tokenizer *t) { return t ? t->eot : -1; }
int parlm_tokenizer_bos(const parlm_tokenizer *t) { return t ? t->bos : -1; }
int parlm_tokenizer_can_encode(const parlm_tokenizer *t) { return t && t->kind != TOK_LLMC; }

void parlm_tokenizer_free(parlm_tokenizer *t)
{
    if (!t)
        return;
    free(t->bytes);
    free(t->off);
    free(t->merges);
    parlm_spm_free(t->spm);
    free(t);
}

static parlm_tokenizer *tok_new(int kind, int vocab, size_t nbytes)
{
    parlm_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kind = kind;
    t->vocab = vocab;
    t->eot = -1;
    t->bos = -1;
    t->bytes = malloc(nbytes ? nbytes : 1);
    t->off = calloc((size_t)vocab + 1, sizeof *t->off);
    if (!t->bytes || !t->off) {
        parlm_tokenizer_free(t);
        return NULL;
    }
    return t;
}

parlm_status parlm_tokenizer_bytes(parlm_tokenizer **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_bytes: out is NULL");
    parlm_tokenizer *t = tok_new(TOK_BYTES, 256, 256);
    if (!t)
        return parlm_error(PARLM_ENOMEM, "parlm_tokenizer_bytes: out of memory");
    for (int i = 0; i < 256; i++) {
        t->bytes[i] = (char)i;
        t->off[i + 1] = (uint32_t)i + 1;
        t->byte_id[i] = i;
    }
    *out = t;
    return PARLM_OK;
}

/* ---- loading GPT-2's encoder.json + vocab.bpe ---------------------------------------- */

/* GPT-2 stores a byte b as the code point byte_cp(b): printable Latin-1 bytes as
 * themselves, the other 68 bytes as 256, 257, ... in byte order. */
static void byte_to_cp(uint32_t cp_of[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        cp_of[b] = printable ? (uint32_t)b : next++;
    }
}

typedef struct str_map { /* token string (GPT-2's mapped form) -> id, open addressing */
    const char **key;
    uint32_t *klen;
    int32_t *val;
    size_t mask;
} str_map;

static size_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

static int32_t *str_slot(str_map *m, const char *s, size_t n)
{
    for (size_t h = str_hash(s, n) & m->mask;; h = (h + 1) & m->mask) {
        if (!m->key[h]) {
            m->key[h] = s;
            m->klen[h] = (uint32_t)n;
            m->val[h] = -1;
            return &m->val[h];
        }
        if (m->klen[h] == n && memcmp(m->key[h], s, n) == 0)
            return &m->val[h];
    }
}

static int32_t str_get(const str_map *m, const char *s, size_t n)
{
    for (size_t h = str_hash(s, n) & m->mask;; h = (h + 1) & m->mask) {
        if (!m->key[h])
            return -1;
        if (m->klen[h] == n && memcmp(m->key[h], s, n) == 0)
            return m->val[h];
    }
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* JSON parsing state: the buffer is unescaped in place (output never outruns input). */
typedef struct json {
    char *p, *end;
    const char *path, *start;
} json;

static parlm_status json_fail(const json *j, const char *what)
{
    return parlm_error(PARLM_EFORMAT, "%s: %s at byte %lld", j->path, what,
                       (long long)(j->p - j->start));
}

static void json_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* Parses a JSON string at j->p; its UTF-8 bytes are written in place: *s, *n. */
static parlm_status json_string(json *j, char **s, size_t *n)
{
    if (j->p >= j->end || *j->p != '"')
        return json_fail(j, "expected a string");
    char *o = ++j->p, *start = o;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20)
            return json_fail(j, "control character in a string");
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        if (j->p >= j->end)
            break;
        char e = *j->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char rep[] = "\"\\/\b\f\n\r\t";
            *o++ = rep[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u')
            return json_fail(j, "bad escape in a string");
        uint32_t cp = 0;
        for (int pass = 0; pass < 2; pass++) {
            if (j->end - j->p < 4)
                return json_fail(j, "truncated \\u escape");
            uint32_t v = 0;
            for (int k = 0; k < 4; k++) {
                int h = hexval(j->p[k]);
                if (h < 0)
                    return json_fail(j, "bad \\u escape");
                v = v * 16 + (uint32_t)h;
            }
            j->p += 4;
            if (pass == 0) {
                cp = v;
                if (v < 0xd800 || v > 0xdfff)
                    break;
                if (v > 0xdbff || j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return json_fail(j, "unpaired surrogate in \\u escape");
                j->p += 2;
            } else {
                if (v < 0xdc00 || v > 0xdfff)
                    return json_fail(j, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (v - 0xdc00);
            }
        }
        o += utf8_put(o, cp);
    }
    if (j->p >= j->end)
        return json_fail(j, "unterminated string");
    j->p++; /* closing quote */
    *s = start;
    *n = (size_t)(o - start);
    return PARLM_OK;
}

/* Maps a token string in GPT-2's code-point form back to its raw bytes. */
static parlm_status token_to_bytes(const char *s, size_t n, const int16_t *byte_of_cp, char *out,
                                   size_t *outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (cp >= 324 || byte_of_cp[cp] < 0)
            return PARLM_EFORMAT;
        out[k++] = (char)byte_of_cp[cp];
        i += l;
    }
    *outlen = k;
    return PARLM_OK;
}

static parlm_status load_encoder(parlm_tokenizer **out, str_map *map, char *buf, size_t len,
                                 const char *path)
{
    uint32_t cp_of[256];
    int16_t byte_of_cp[324];
    byte_to_cp(cp_of);
    memset(byte_of_cp, 0xff, sizeof byte_of_cp);
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of[b]] = (int16_t)b;

    /* pass 1: count entries so the map and the arrays are sized once */
    size_t entries = 0;
    for (size_t i = 0; i < len; i++)
        entries += buf[i] == ':';
    if (entries == 0 || entries > MAX_VOCAB)
        return parlm_error(PARLM_EFORMAT, "%s: not a GPT-2 encoder.json (%zu entries)", path,
                           entries);
    size_t cap = 16;
    while (cap < 2 * entries)
        cap *= 2;
    map->key = calloc(cap, sizeof *map->key);
    map->klen = calloc(cap, sizeof *map->klen);
    map->val = calloc(cap, sizeof *map->val);
    map->mask = cap - 1;
    int32_t *id_of_entry = malloc(entries * sizeof *id_of_entry); /* entry -> id */
    char **tok_s = malloc(entries * sizeof *tok_s);
    size_t *tok_n = malloc(entries * sizeof *tok_n);
    parlm_tokenizer *t = NULL;
    parlm_status st = PARLM_OK;
    if (!map->key || !map->klen || !map->val || !id_of_entry || !tok_s || !tok_n) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
        goto done;
    }

    json j = {buf, buf + len, path, buf};
    json_ws(&j);
    if (j.p >= j.end || *j.p++ != '{') {
        st = json_fail(&j, "expected '{'");
        goto done;
    }
    size_t count = 0;
    int32_t max_id = -1;
    json_ws(&j);
    if (j.p < j.end && *j.p == '}')
        j.p++;
    else
        for (;;) {
            char *s = NULL;
            size_t n = 0;
            json_ws(&j);
            if ((st = json_string(&j, &s, &n)) != PARLM_OK)
                goto done;
            json_ws(&j);
            if (j.p >= j.end || *j.p++ != ':') {
                st = json_fail(&j, "expected ':'");
                goto done;
            }
            json_ws(&j);
            long long v = 0;
            int digits = 0;
            while (j.p < j.end && *j.p >= '0' && *j.p <= '9' && digits < 10) {
                v = v * 10 + (*j.p++ - '0');
                digits++;
            }
            if (!digits || v >= MAX_VOCAB || (j.p < j.end && *j.p >= '0' && *j.p <= '9')) {
                st = json_fail(&j, "expected a token id in [0, 2^24)");
                goto done;
            }
            if (count >= entries) {
                st = json_fail(&j, "more entries than ':' separators");
                goto done;
            }
            int32_t *slot = str_slot(map, s, n);
            if (*slot != -1) {
                st = parlm_error(PARLM_EFORMAT, "%s: token \"%.*s\" appears twice", path,
                                 (int)(n < 40 ? n : 40), s);
                goto done;
            }
            *slot = (int32_t)v;
            tok_s[count] = s;
            tok_n[count] = n;
            id_of_entry[count++] = (int32_t)v;
            max_id = (int32_t)v > max_id ? (int32_t)v : max_id;
            json_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            st = json_fail(&j, "expected ',' or '}'");
            goto done;
        }
    json_ws(&j);
    if (j.p != j.end) {
        st = json_fail(&j, "trailing data after the object");
        goto done;
    }
    if ((size_t)max_id + 1 != count) {
        st = parlm_error(PARLM_EFORMAT, "%s: ids must be 0..%zu each exactly once, largest is %d",
                         path, count - 1, max_id);
        goto done;
    }

    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += tok_n[i];
    t = tok_new(TOK_GPT2, (int)count, total);
    if (!t) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    /* token bytes in id order: lengths first (each id once: checked above via max_id) */
    size_t *len_of = calloc(count, sizeof *len_of);
    char **str_of = calloc(count, sizeof *str_of);
    if (!len_of || !str_of) {
        free(len_of), free(str_of);
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (str_of[id_of_entry[i]]) {
            free(len_of), free(str_of);
            st = parlm_error(PARLM_EFORMAT, "%s: id %d is used twice", path, id_of_entry[i]);
            goto done;
        }
        str_of[id_of_entry[i]] = tok_s[i];
        len_of[id_of_entry[i]] = tok_n[i];
    }
    uint32_t off = 0;
    for (size_t id = 0; id < count; id++) {
        size_t bl;
        if (token_to_bytes(str_of[id], len_of[id], byte_of_cp, t->bytes + off, &bl) != PARLM_OK) {
            free(len_of), free(str_of);
            st = parlm_error(PARLM_EFORMAT, "%s: token %zu is not in GPT-2's byte alphabet",
                             path, id);
            goto done;
        }
        t->off[id] = off;
        off += (uint32_t)bl;
    }
    t->off[count] = off;
    free(len_of), free(str_of);
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t ul = utf8_put(u, cp_of[b]);
        t->byte_id[b] = str_get(map, u, ul);
        if (t->byte_id[b] < 0) {
            st = parlm_error(PARLM_EFORMAT, "%s: no token for byte 0x%02x", path, b);
            goto done;
        }
    }
    t->eot = str_get(map, "<|endoftext|>", 13);
done:
    free(id_of_entry);
    free(tok_s);
    free(tok_n);
    if (st != PARLM_OK) {
        parlm_tokenizer_free(t);
        t = NULL;
    }
    *out = t;
    return st;
}

/* vocab.bpe: a "#version" line, then one merge "left right" per line in rank order. The
 * file must account for the whole vocabulary: every token that is neither one of the 256
 * byte tokens nor <|endoftext|> is made by exactly one merge (GPT-2: 50257 = 256 + 50000
 * + 1), and in rank order, so ids rise line by line. So an empty, truncated, reordered or
 * foreign merges file is refused, never half-used. */
static parlm_status load_merges(parlm_tokenizer *t, const str_map *map, char *buf, size_t len,
                                const char *path)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    size_t cap = 16;
    while (cap < 2 * lines)
        cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < cap; i++)
        t->merges[i].a = -1;
    t->merge_mask = cap - 1;
    char *cat = malloc(len + 1);                         /* scratch for "left" + "right" */
    unsigned char *made = calloc((size_t)t->vocab, 1);   /* 1: a byte, eot or merge result */
    if (!cat || !made) {
        free(cat), free(made);
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    }
    for (int b = 0; b < 256; b++)
        made[t->byte_id[b]] = 1;
    if (t->eot >= 0)
        made[t->eot] = 1;
    int32_t rank = 0, last_made = -1;
    size_t lineno = 0;
    parlm_status st = PARLM_OK;
    if (len < 8 || memcmp(buf, "#version", 8))
        st = parlm_error(PARLM_EFORMAT, "%s:1: expected the \"#version\" header line of a GPT-2 "
                         "merges file%s", path, len ? "" : " (the file is empty)");
    for (char *p = buf, *end = buf + len; p < end && st == PARLM_OK;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (lineno == 1) { /* the header, checked above */
            p = le + 1;
            continue;
        }
        char *sp = n ? memchr(p, ' ', n) : NULL;
        if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', (size_t)(p + n - sp - 1))) {
            st = parlm_error(PARLM_EFORMAT, "%s:%zu: expected two tokens separated by one space%s",
                             path, lineno, n ? "" : " (an empty line)");
            break;
        }
        size_t la = (size_t)(sp - p), lb = n - la - 1;
        int32_t a = str_get(map, p, la), b = str_get(map, sp + 1, lb);
        memcpy(cat, p, la);
        memcpy(cat + la, sp + 1, lb);
        int32_t ab = str_get(map, cat, la + lb);
        if (a < 0 || b < 0 || ab < 0) {
            st = parlm_error(PARLM_EFORMAT, "%s:%zu: merge \"%.*s\" names a token that "
                             "encoder.json does not have", path, lineno, (int)(n < 60 ? n : 60), p);
            break;
        }
        if (made[ab]) {
            st = parlm_error(PARLM_EFORMAT, "%s:%zu: merge \"%.*s\" makes token %d, which is a "
                             "byte, <|endoftext|> or already made by an earlier merge", path,
                             lineno, (int)(n < 60 ? n : 60), p, ab);
            break;
        }
        if (ab <= last_made) { /* GPT-2 numbers merged tokens in merge order: 256 + rank */
            st = parlm_error(PARLM_EFORMAT, "%s:%zu: merge \"%.*s\" makes token %d, but the "
                             "merge before it made %d: merged tokens are numbered in merge "
                             "order (lines swapped, or ids of another encoder.json)", path,
                             lineno, (int)(n < 60 ? n : 60), p, ab, last_made);
            break;
        }
        last_made = ab;
        made[ab] = 1;
        size_t h = pair_hash(a, b) & t->merge_mask;
        while (t->merges[h].a != -1 && !(t->merges[h].a == a && t->merges[h].b == b))
            h = (h + 1) & t->merge_mask;
        if (t->merges[h].a != -1) {
            st = parlm_error(PARLM_EFORMAT, "%s:%zu: merge \"%.*s\" is repeated", path, lineno,
                             (int)(n < 60 ? n : 60), p);
            break;
        }
        t->merges[h] = (merge){a, b, ab, rank++};
        p = le + 1;
    }
    int special = t->eot >= 0;
    if (st == PARLM_OK && rank != t->vocab - 256 - special)
        st = parlm_error(PARLM_EFORMAT, "%s: %d merges, but encoder.json has %d tokens, which "
                         "needs %d (256 bytes%s + one merge per other token): truncated, or "
                         "not the merges of this encoder.json", path, (int)rank, t->vocab,
                         t->vocab - 256 - special, special ? " + <|endoftext|>" : "");
    free(cat);
    free(made);
    return st;
}

parlm_status parlm_tokenizer_load_gpt2(parlm_tokenizer **out, const char *encoder_json,
                                       const char *vocab_bpe)
{
    if (!out || !encoder_json || !vocab_bpe)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_load_gpt2: null argument");
    *out = NULL;
    char *enc = NULL, *bpe = NULL;
    size_t enc_len, bpe_len;
    str_map map = {0};
    parlm_tokenizer *t = NULL;
    parlm_status st = parlm_read_file(encoder_json, MAX_VOCAB_FILE, &enc, &enc_len);
    if (st == PARLM_OK)
        st = parlm_read_file(vocab_bpe, MAX_VOCAB_FILE, &bpe, &bpe_len);
    if (st == PARLM_OK)
        st = load_encoder(&t, &map, enc, enc_len, encoder_json);
    if (st == PARLM_OK)
        st = load_merges(t, &map, bpe, bpe_len, vocab_bpe);
    free(map.key), free(map.klen), free(map.val);
    parlm_free(enc);
    parlm_free(bpe);
    if (st != PARLM_OK) {
        parlm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PARLM_OK;
}

/* ---- llm.c's gpt2_tokenizer.bin -------------------------------------------------------
 * header: 256 uint32 (magic 20240328, version 1|2, vocab size, v2: eot id), then per
 * token: one length byte (1..255) and that many bytes. */
parlm_status parlm_tokenizer_load_llmc(parlm_tokenizer **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_load_llmc: null argument");
    *out = NULL;
    char *buf;
    size_t len;
    parlm_status st = parlm_read_file(path, MAX_VOCAB_FILE, &buf, &len);
    if (st != PARLM_OK)
        return st;
    uint32_t h[256];
    if (len < sizeof h) {
        parlm_free(buf);
        return parlm_error(PARLM_EFORMAT, "%s: truncated header (%zu of 1024 bytes)", path, len);
    }
    memcpy(h, buf, sizeof h);
    if (h[0] != 20240328u || (h[1] != 1 && h[1] != 2) || h[2] == 0 || h[2] > MAX_VOCAB) {
        parlm_free(buf);
        return parlm_error(PARLM_EFORMAT, "%s: not an llm.c tokenizer (magic %u, version %u, "
                           "vocab %u; expected 20240328, 1 or 2, 1..2^24)", path, h[0], h[1], h[2]);
    }
    int vocab = (int)h[2];
    parlm_tokenizer *t = tok_new(TOK_LLMC, vocab, len);
    if (!t) {
        parlm_free(buf);
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    }
    size_t p = sizeof h;
    uint32_t off = 0;
    for (int i = 0; i < vocab; i++) {
        if (p >= len || (unsigned char)buf[p] == 0 || p + 1 + (unsigned char)buf[p] > len) {
            parlm_free(buf);
            parlm_tokenizer_free(t);
            return parlm_error(PARLM_EFORMAT, "%s: truncated or bad entry for token %d of %d",
                               path, i, vocab);
        }
        size_t l = (unsigned char)buf[p];
        memcpy(t->bytes + off, buf + p + 1, l);
        t->off[i] = off;
        off += (uint32_t)l;
        p += 1 + l;
    }
    t->off[vocab] = off;
    parlm_free(buf);
    if (p != len) {
        parlm_tokenizer_free(t);
        return parlm_error(PARLM_EFORMAT, "%s: %zu bytes of trailing data", path, len - p);
    }
    t->eot = h[1] == 2 ? (int)h[3] : (vocab > 50256 ? 50256 : -1);
    if (t->eot >= vocab) {
        int e = t->eot;
        parlm_tokenizer_free(t);
        return parlm_error(PARLM_EFORMAT, "%s: end-of-text id %d outside vocab %d", path, e,
                           vocab);
    }
    *out = t;
    return PARLM_OK;
}

/* ---- a GGUF file's tokenizer ---------------------------------------------------------
 * "gpt2": the tokens in GPT-2's byte-to-unicode spelling (control tokens as they are) and
 * the merges "left right" in rank order, held to the rules of encoder.json + vocab.bpe:
 * the merges go through load_merges as the text of a vocab.bpe. "llama": tokenizer_spm.c. */
static parlm_status load_gpt2_gguf(parlm_tokenizer **out, const parlm_gguf *g, const char *path)
{
    *out = NULL;
    const char *tk = "tokenizer.ggml.tokens", *mk = "tokenizer.ggml.merges";
    const char *yk = "tokenizer.ggml.token_type", *pre;
    parlm_gguf_type et;
    uint64_t ntok = 0, nmerge = 0;
    size_t plen;
    /* "gpt2" also carries other BPE vocabularies (Llama 3, Qwen, ...) whose pre-tokenizer
     * regex is not GPT-2's: refused by name rather than encoded wrongly */
    if (parlm_gguf_find_kv(g, "tokenizer.ggml.pre") >= 0) {
        parlm_status sp = parlm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &plen);
        if (sp)
            return sp;
        if (!(plen == 5 && memcmp(pre, "gpt-2", 5) == 0) &&
            !(plen == 7 && memcmp(pre, "default", 7) == 0))
            return parlm_error(PARLM_EUNSUPPORTED, "%s: tokenizer.ggml.pre is '%.*s' (parlm has "
                               "GPT-2's pre-tokenizer: gpt-2 or default)", path,
                               (int)(plen < 32 ? plen : 32), pre);
    }
    int64_t ki = parlm_gguf_find_kv(g, tk), mi = parlm_gguf_find_kv(g, mk);
    if (ki < 0 || mi < 0)
        return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' is missing", path,
                           ki < 0 ? tk : mk);
    if (parlm_gguf_kv_type(g, ki, &et, &ntok) != PARLM_GGUF_ARRAY || et != PARLM_GGUF_STRING)
        return parlm_error(PARLM_EFORMAT, "%s: %s is not an array of strings", path, tk);
    if (parlm_gguf_kv_type(g, mi, &et, &nmerge) != PARLM_GGUF_ARRAY || et != PARLM_GGUF_STRING)
        return parlm_error(PARLM_EFORMAT, "%s: %s is not an array of strings", path, mk);
    if (ntok < 1 || ntok > MAX_VOCAB)
        return parlm_error(PARLM_EFORMAT, "%s: %s has %llu tokens, expected 1..%d", path, tk,
                           (unsigned long long)ntok, MAX_VOCAB);
    const void *types = NULL; /* optional; control tokens (3) are spelled as they are */
    parlm_status st;
    if (parlm_gguf_find_kv(g, yk) >= 0) {
        uint64_t m;
        if ((st = parlm_gguf_get_arr(g, yk, &et, &m, &types)))
            return st;
        if (et != PARLM_GGUF_I32 || m != ntok)
            return parlm_error(PARLM_EFORMAT, "%s: %s must hold %llu int32 (one per token), it "
                               "holds %llu of GGUF type %d", path, yk, (unsigned long long)ntok,
                               (unsigned long long)m, (int)et);
    }
    uint32_t cp_of[256];
    int16_t byte_of_cp[324];
    byte_to_cp(cp_of);
    memset(byte_of_cp, 0xff, sizeof byte_of_cp);
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of[b]] = (int16_t)b;
    size_t n = (size_t)ntok, cap = 16, total = 0, blen = 9;
    while (cap < 2 * n)
        cap *= 2;
    str_map map = {calloc(cap, sizeof *map.key), calloc(cap, sizeof *map.klen),
                   calloc(cap, sizeof *map.val), cap - 1};
    parlm_tokenizer *t = NULL;
    char *bpe = NULL, *label = malloc(strlen(path) + 32);
    if (!map.key || !map.klen || !map.val || !label) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory for %zu tokens", path, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        if ((st = parlm_gguf_get_arr_str(g, tk, i, &s, &l)))
            goto done;
        if (l > ((size_t)1 << 20)) {
            st = parlm_error(PARLM_EFORMAT, "%s: %s[%zu] is %zu bytes long", path, tk, i, l);
            goto done;
        }
        int32_t *slot = str_slot(&map, s, l);
        if (*slot != -1) {
            st = parlm_error(PARLM_EFORMAT, "%s: %s: token \"%.*s\" appears twice", path, tk,
                             (int)(l < 40 ? l : 40), s);
            goto done;
        }
        *slot = (int32_t)i;
        total += l;
    }
    if (!(t = tok_new(TOK_GPT2, (int)n, total))) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory for %zu tokens", path, n);
        goto done;
    }
    uint32_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t l, bl;
        int32_t type = 1;
        parlm_gguf_get_arr_str(g, tk, i, &s, &l); /* read above */
        if (types)
            memcpy(&type, (const char *)types + 4 * i, 4);
        t->off[i] = off;
        if (type == 3) {
            memcpy(t->bytes + off, s, l);
            bl = l;
        } else if (token_to_bytes(s, l, byte_of_cp, t->bytes + off, &bl) != PARLM_OK) {
            st = parlm_error(PARLM_EFORMAT, "%s: %s[%zu] is not in GPT-2's byte alphabet", path,
                             tk, i);
            goto done;
        }
        off += (uint32_t)bl;
    }
    t->off[n] = off;
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t ul = utf8_put(u, cp_of[b]);
        if ((t->byte_id[b] = str_get(&map, u, ul)) < 0) {
            st = parlm_error(PARLM_EFORMAT, "%s: %s has no token for byte 0x%02x", path, tk, b);
            goto done;
        }
    }
    t->eot = str_get(&map, "<|endoftext|>", 13);
    for (uint64_t i = 0; i < nmerge; i++) {
        const char *s;
        size_t l;
        if ((st = parlm_gguf_get_arr_str(g, mk, i, &s, &l)))
            goto done;
        if (memchr(s, '\n', l) || memchr(s, '\r', l)) {
            st = parlm_error(PARLM_EFORMAT, "%s: %s[%llu] contains a line break", path, mk,
                             (unsigned long long)i);
            goto done;
        }
        blen += l + 1;
    }
    if (!(bpe = malloc(blen + 1))) {
        st = parlm_error(PARLM_ENOMEM, "%s: out of memory for %s", path, mk);
        goto done;
    }
    memcpy(bpe, "#version\n", 9);
    size_t p = 9;
    for (uint64_t i = 0; i < nmerge; i++) {
        const char *s;
        size_t l;
        parlm_gguf_get_arr_str(g, mk, i, &s, &l); /* read above */
        memcpy(bpe + p, s, l);
        p += l;
        bpe[p++] = '\n';
    }
    /* load_merges's messages give line numbers: merge i is line i + 2 */
    snprintf(label, strlen(path) + 32, "%s (%s)", path, mk);
    st = load_merges(t, &map, bpe, p, label);
done:
    free(map.key), free(map.klen), free(map.val);
    free(bpe);
    free(label);
    if (st != PARLM_OK) {
        parlm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PARLM_OK;
}

parlm_status parlm_tokenizer_load_gguf(parlm_tokenizer **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_tokenizer_load_gguf: null argument");
    *out = NULL;
    parlm_gguf *g;
    parlm_status st = parlm_gguf_open(&g, path);
    if (st)
        return st;
    const char *model;
    size_t mlen;
    if ((st = parlm_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen)) == PARLM_OK) {
        if (mlen == 4 && memcmp(model, "gpt2", 4) == 0)
            st = load_gpt2_gguf(out, g, path);
        else if (mlen == 5 && memcmp(model, "llama", 5) == 0)
            st = parlm_spm_load_gguf(out, g, path);
        else
            st = parlm_error(PARLM_EUNSUPPORTED, "%s: tokenizer.ggml.model is '%.*s' (parlm reads "
                             "gpt2 and llama)", path, (int)(mlen < 32 ? mlen : 32), model);
    }
    parlm_gguf_close(g);
    return st;
}
