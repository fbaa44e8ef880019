/* tests/test_tokenizer.c — GPT-2 BPE against the reference encoder's ids (from
 * ../shared/data/gpt2, see PARLM_SHARED_DATA), round trips, the byte tokenizer, llm.c's
 * tokenizer file, malformed vocabulary files (which must fail with a message), and the
 * tokenizers of GGUF files: GPT-2's, and Llama's SentencePiece-style one on a vocabulary
 * built here with hand-worked encodings. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "parlm/tokenizer.h"
#include "../testutil.h"

static char data_dir[4096]; /* .../shared/data/gpt2, or "" when not configured */

static parlm_tokenizer *load_gpt2(void)
{
    char enc[4200], bpe[4200];
    snprintf(enc, sizeof enc, "%s/encoder.json", data_dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", data_dir);
    parlm_tokenizer *t = NULL;
    parlm_status st = parlm_tokenizer_load_gpt2(&t, enc, bpe);
    ck_assert_msg(st == PARLM_OK, "load: %s", parlm_last_error());
    return t;
}

/* Minimal JSON reader for the reference lines {"text": "...", "ids": [..]}. */
static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63)); return 4;
}

static const char *read_json_string(const char *p, char *out, size_t *n)
{
    size_t k = 0;
    ck_assert_int_eq(*p, '"');
    for (p++; *p != '"'; p++) {
        if (*p != '\\') { out[k++] = *p; continue; }
        p++;
        switch (*p) {
        case 'n': out[k++] = '\n'; break;
        case 't': out[k++] = '\t'; break;
        case 'r': out[k++] = '\r'; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo = (unsigned)strtoul((char[5]){p[3], p[4], p[5], p[6], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            k += put_utf8(out + k, cp);
            break;
        }
        default: out[k++] = *p; break;
        }
    }
    *n = k;
    return p + 1;
}

START_TEST(gpt2_reference_ids)
{
    if (!data_dir[0]) {
        fprintf(stderr, "gpt2_reference_ids: PARLM_SHARED_DATA not set, skipped\n");
        return;
    }
    parlm_tokenizer *t = load_gpt2();
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), 50257);
    ck_assert_int_eq(parlm_tokenizer_eot(t), 50256);
    char path[4200];
    snprintf(path, sizeof path, "%s/reference_ids.jsonl", data_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[65536], text[65536];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"text\":");
        ck_assert_ptr_nonnull(p);
        size_t tlen;
        p = read_json_string(p + 7, text, &tlen);
        p = strstr(p, "\"ids\":[");
        ck_assert_ptr_nonnull(p);
        p += 7;
        int32_t want[4096];
        size_t nwant = 0;
        while (*p != ']') {
            want[nwant++] = (int32_t)strtol(p, (char **)&p, 10);
            if (*p == ',')
                p++;
        }
        int32_t *ids;
        size_t n;
        ck_assert_int_eq(parlm_tokenizer_encode(t, text, tlen, &ids, &n), PARLM_OK);
        ck_assert_msg(n == nwant, "'%.*s': %zu ids, want %zu", (int)tlen, text, n, nwant);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(ids[i] == want[i], "'%.*s': id %zu is %d, want %d", (int)tlen, text,
                          i, ids[i], want[i]);
        char *back;
        size_t blen;
        ck_assert_int_eq(parlm_tokenizer_decode(t, ids, n, &back, &blen), PARLM_OK);
        ck_assert_uint_eq(blen, tlen);
        ck_assert(memcmp(back, text, tlen) == 0);
        parlm_free(back);
        parlm_free(ids);
        cases++;
    }
    fclose(f);
    ck_assert_int_ge(cases, 10);
    parlm_tokenizer_free(t);
}
END_TEST

/* Random bytes (mostly invalid UTF-8) and long runs: encode never loses a byte and a
 * 200 kB run of one character stays fast (the heap keeps BPE at O(n log n)). */
START_TEST(gpt2_round_trip_arbitrary_bytes)
{
    if (!data_dir[0])
        return;
    parlm_tokenizer *t = load_gpt2();
    uint64_t s = 42;
    char buf[4096];
    for (int rep = 0; rep < 50; rep++) {
        size_t len = (size_t)(tu_next(&s) % sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = rep % 2 ? (char)tu_next(&s) : " abc\n\t'sé日1"[tu_next(&s) % 14];
        int32_t *ids;
        size_t n;
        char *back;
        size_t blen;
        ck_assert_int_eq(parlm_tokenizer_encode(t, buf, len, &ids, &n), PARLM_OK);
        ck_assert_uint_le(n, len);
        ck_assert_int_eq(parlm_tokenizer_decode(t, ids, n, &back, &blen), PARLM_OK);
        ck_assert_uint_eq(blen, len);
        ck_assert(memcmp(back, buf, len) == 0);
        parlm_free(ids), parlm_free(back);
    }
    size_t big = 200000;
    char *run = malloc(big);
    memset(run, '=', big);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(parlm_tokenizer_encode(t, run, big, &ids, &n), PARLM_OK);
    ck_assert_uint_lt(n, big / 4); /* "================" is one token in GPT-2 */
    parlm_free(ids);
    free(run);
    parlm_tokenizer_free(t);
}
END_TEST

START_TEST(byte_tokenizer)
{
    parlm_tokenizer *t;
    ck_assert_int_eq(parlm_tokenizer_bytes(&t), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), 256);
    ck_assert_int_eq(parlm_tokenizer_eot(t), -1);
    const char text[] = "h\xc3\xa9llo\x00\xff";
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(parlm_tokenizer_encode(t, text, sizeof text - 1, &ids, &n), PARLM_OK);
    ck_assert_uint_eq(n, sizeof text - 1);
    ck_assert_int_eq(ids[1], 0xc3);
    ck_assert_int_eq(ids[7], 0xff);
    char *back;
    size_t blen;
    ck_assert_int_eq(parlm_tokenizer_decode(t, ids, n, &back, &blen), PARLM_OK);
    ck_assert(blen == n && memcmp(back, text, n) == 0);
    parlm_free(back);
    parlm_free(ids);
    int32_t bad = 256;
    ck_assert_int_eq(parlm_tokenizer_decode(t, &bad, 1, &back, &blen), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "256"));
    ck_assert_int_eq(parlm_tokenizer_encode(t, "", 0, &ids, &n), PARLM_OK);
    ck_assert_uint_eq(n, 0);
    parlm_free(ids);
    parlm_tokenizer_free(t);
    parlm_tokenizer_free(NULL);
}
END_TEST

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A tiny vocabulary of our own: the 256 byte tokens plus merges "a b" -> "ab". */
static void write_tiny_vocab(const char *enc, const char *bpe, const char *extra_json,
                             const char *merges)
{
    char *json = malloc(1 << 16);
    size_t k = (size_t)sprintf(json, "{");
    int next = 256;
    for (int b = 0, cp_next = 256; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : cp_next++;
        k += (size_t)sprintf(json + k, "%s\"\\u%04x\": %d", b ? ", " : "", cp, b);
    }
    k += (size_t)sprintf(json + k, ", \"ab\": %d, \"abc\": %d%s}", next, next + 1, extra_json);
    write_file(enc, json, k);
    write_file(bpe, merges, strlen(merges));
    free(json);
}

START_TEST(own_vocab_and_malformed_files)
{
    char dir[] = "/tmp/parlm-tok-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char enc[64], bpe[64];
    snprintf(enc, sizeof enc, "%s/enc.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    parlm_tokenizer *t;

    write_tiny_vocab(enc, bpe, "", "#version: 0.2\na b\nab c\n");
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), 258);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(parlm_tokenizer_encode(t, "abcab", 5, &ids, &n), PARLM_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 257);
    ck_assert_int_eq(ids[1], 256);
    parlm_free(ids);
    parlm_tokenizer_free(t);

    /* each malformed variant: an error code, a message naming the file, no tokenizer */
    struct { const char *json_extra, *merges, *expect; parlm_status st; } bad[] = {
        {"", "#version: 0.2\na q\n", "vocab.bpe:2", PARLM_EFORMAT},     /* "aq" unknown */
        {"", "a  b\n", "vocab.bpe:1", PARLM_EFORMAT},                     /* two spaces */
        {", \"zz\": 9", "a b\n", "enc.json", PARLM_EFORMAT},              /* id reused */
        {", \"zz\": 99999999999", "a b\n", "enc.json", PARLM_EFORMAT},    /* id too large */
        {", \"zz\": 300", "a b\n", "enc.json", PARLM_EFORMAT},            /* id gap */
        {", \"a\": 259", "a b\n", "enc.json", PARLM_EFORMAT},             /* duplicate key */
        {", \"\\uZZZZ\": 258", "a b\n", "enc.json", PARLM_EFORMAT},       /* bad escape */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_tiny_vocab(enc, bpe, bad[i].json_extra, bad[i].merges);
        t = (parlm_tokenizer *)1;
        ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), bad[i].st);
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(parlm_last_error(), bad[i].expect), "case %zu: '%s'", i,
                      parlm_last_error());
    }
    /* truncated JSON at every length must fail cleanly, never crash */
    write_tiny_vocab(enc, bpe, "", "a b\n");
    char *full;
    FILE *f = fopen(enc, "rb");
    fseek(f, 0, SEEK_END);
    long flen = ftell(f);
    fseek(f, 0, SEEK_SET);
    full = malloc((size_t)flen);
    ck_assert_uint_eq(fread(full, 1, (size_t)flen, f), (size_t)flen);
    fclose(f);
    for (long cut = 0; cut < flen; cut += 97) {
        write_file(enc, full, (size_t)cut);
        ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), PARLM_EFORMAT);
    }
    free(full);
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, "/nonexistent/enc.json", bpe), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "/nonexistent/enc.json"));
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, dir, bpe), PARLM_EIO); /* a directory */
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(NULL, enc, bpe), PARLM_EINVAL);
    unlink(enc);
    unlink(bpe);
    rmdir(dir);
}
END_TEST

/* vocab.bpe must account for the vocabulary: header, one "left right" per line, one merge
 * per token that is not a byte (or <|endoftext|>). Empty, truncated and garbled files are
 * refused with the file named, never half-used. */
START_TEST(merges_file_is_validated)
{
    char dir[] = "/tmp/parlm-tok-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char enc[64], bpe[64];
    snprintf(enc, sizeof enc, "%s/enc.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    parlm_tokenizer *t;
    struct { const char *merges, *expect; } bad[] = {
        {"", "empty"},                                              /* empty */
        {"#version: 0.2\n", "0 merges"},                            /* header only */
        {"#version: 0.2\na b\n", "1 merges"},                       /* truncated */
        {"#version: 0.2\na b\nab", "vocab.bpe:3"},                  /* cut mid-line */
        {"a b\nab c\n", "vocab.bpe:1"},                             /* no header */
        {"#version: 0.2\na b\n\nab c\n", "empty line"},             /* blank line */
        {"#version: 0.2\na b c\nab c\n", "vocab.bpe:2"},            /* three tokens */
        {"#version: 0.2\na\tb\nab c\n", "vocab.bpe:2"},             /* no space */
        {"#version: 0.2\nb a\nab c\n", "vocab.bpe:2"},              /* "ba" unknown */
        {"#version: 0.2\na b\nab c\na b\n", "vocab.bpe:4"},         /* repeated */
        {"#version: 0.2\na b\nab c\nabc \n", "vocab.bpe:4"},        /* trailing space */
        {"#version: 0.2\nab c\na b\n", "numbered in merge order"}, /* lines swapped */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_tiny_vocab(enc, bpe, "", bad[i].merges);
        t = (parlm_tokenizer *)1;
        ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), PARLM_EFORMAT);
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(parlm_last_error(), bad[i].expect) &&
                      strstr(parlm_last_error(), "vocab.bpe"), "case %zu: '%s'", i,
                      parlm_last_error());
    }
    /* a token no merge makes ("zz" besides "ab", "abc"): the count no longer adds up */
    write_tiny_vocab(enc, bpe, ", \"zz\": 258", "#version: 0.2\na b\nab c\n");
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "2 merges"));
    /* CRLF line ends and a missing final newline are still the same file */
    write_tiny_vocab(enc, bpe, "", "#version: 0.2\r\na b\r\nab c");
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, enc, bpe), PARLM_OK);
    parlm_tokenizer_free(t);

    /* GPT-2's own files, cut: at half, without the last line, inside the last line */
    if (data_dir[0]) {
        char ref[4200], renc[4200];
        snprintf(ref, sizeof ref, "%s/vocab.bpe", data_dir);
        snprintf(renc, sizeof renc, "%s/encoder.json", data_dir);
        FILE *f = fopen(ref, "rb");
        ck_assert_ptr_nonnull(f);
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *full = malloc((size_t)len);
        ck_assert_uint_eq(fread(full, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        long last_nl = len - 2;
        while (full[last_nl] != '\n')
            last_nl--;
        long half = len / 2;
        while (full[half] != '\n')
            half++;
        long cuts[] = {half + 1, last_nl + 1, len - 2, len - 3, len - 4, 0, 5};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            write_file(bpe, full, (size_t)cuts[i]);
            t = (parlm_tokenizer *)1;
            ck_assert_msg(parlm_tokenizer_load_gpt2(&t, renc, bpe) == PARLM_EFORMAT,
                          "cut at %ld of %ld accepted", cuts[i], len);
            ck_assert_ptr_null(t);
        }
        /* a garbled byte inside a token */
        full[len / 3] = full[len / 3] == 'q' ? 'x' : 'q';
        write_file(bpe, full, (size_t)len);
        ck_assert_int_eq(parlm_tokenizer_load_gpt2(&t, renc, bpe), PARLM_EFORMAT);
        free(full);
    }
    unlink(enc);
    unlink(bpe);
    rmdir(dir);
}
END_TEST

START_TEST(llmc_tokenizer_file)
{
    char path[] = "/tmp/parlm-llmc-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    /* version 2, 3 tokens: "a", "bc", "<eot>", eot = 2 */
    unsigned char buf[1024 + 16];
    uint32_t h[256] = {20240328u, 2, 3, 2};
    memcpy(buf, h, sizeof h);
    size_t k = sizeof h;
    const char *toks[3] = {"a", "bc", "<eot>"};
    for (int i = 0; i < 3; i++) {
        buf[k++] = (unsigned char)strlen(toks[i]);
        memcpy(buf + k, toks[i], strlen(toks[i]));
        k += strlen(toks[i]);
    }
    write_file(path, buf, k);
    parlm_tokenizer *t;
    ck_assert_int_eq(parlm_tokenizer_load_llmc(&t, path), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), 3);
    ck_assert_int_eq(parlm_tokenizer_eot(t), 2);
    ck_assert(!parlm_tokenizer_can_encode(t));
    int32_t ids[3] = {1, 0, 1}, *out;
    size_t n;
    char *text;
    ck_assert_int_eq(parlm_tokenizer_decode(t, ids, 3, &text, &n), PARLM_OK);
    ck_assert_str_eq(text, "bcabc");
    parlm_free(text);
    ck_assert_int_eq(parlm_tokenizer_encode(t, "a", 1, &out, &n), PARLM_EUNSUPPORTED);
    parlm_tokenizer_free(t);
    /* every truncation is an error; so are bad magic and trailing bytes */
    for (size_t cut = 0; cut < k; cut++) {
        write_file(path, buf, cut);
        ck_assert_int_eq(parlm_tokenizer_load_llmc(&t, path), PARLM_EFORMAT);
    }
    buf[k] = 'x';
    write_file(path, buf, k + 1);
    ck_assert_int_eq(parlm_tokenizer_load_llmc(&t, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "trailing"));
    buf[0] ^= 1;
    write_file(path, buf, k);
    ck_assert_int_eq(parlm_tokenizer_load_llmc(&t, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "magic"));
    unlink(path);
}
END_TEST

/* ---- llama (SentencePiece-style) ------------------------------------------------------
 * A vocabulary built here: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> (ids
 * 3..258, as Llama's), then scored pieces. The expected ids are worked out by hand from
 * the rule (merge the adjacent pair whose concatenation is the piece of highest score,
 * leftmost on ties), so a different rule gives different ids. */
#define SP "\xe2\x96\x81" /* U+2581 */
enum { P_SP = 259, P_A, P_B, P_C, P_AB, P_BC, P_SPA, P_EACUTE, P_X, P_XX, P_SPX, N_LLAMA };
#define BYTE(b) (3 + (b))

static parlm_tokenizer *llama_vocab(int add_space_prefix, int with_bytes, int with_unk)
{
    static char names[256][8];
    const char *pieces[N_LLAMA];
    float scores[N_LLAMA];
    int32_t types[N_LLAMA];
    pieces[0] = "<unk>", types[0] = PARLM_TOKEN_UNKNOWN;
    pieces[1] = "<s>", types[1] = PARLM_TOKEN_CONTROL;
    pieces[2] = "</s>", types[2] = PARLM_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        pieces[BYTE(b)] = names[b];
        /* without byte tokens: the same spellings, unused (so no byte fallback) */
        types[BYTE(b)] = with_bytes ? PARLM_TOKEN_BYTE : PARLM_TOKEN_UNUSED;
    }
    const struct { int id; const char *p; float score; } normal[] = {
        {P_SP, SP, -1}, {P_A, "a", -2}, {P_B, "b", -3}, {P_C, "c", -4}, {P_AB, "ab", -5},
        {P_BC, "bc", -0.5f}, /* scores above "ab": "abc" is a + bc, not ab + c */
        {P_SPA, SP "a", -6}, {P_EACUTE, "\xc3\xa9", -9}, {P_X, "x", -10},
        {P_XX, "xx", -1},    /* "xxx": both pairs score alike, the left one merges */
        {P_SPX, SP "x", -20},
    };
    for (int i = 0; i < 3 + 256; i++)
        scores[i] = 0;
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++) {
        pieces[normal[i].id] = normal[i].p;
        scores[normal[i].id] = normal[i].score;
        types[normal[i].id] = PARLM_TOKEN_NORMAL;
    }
    parlm_llama_vocab v = {N_LLAMA, pieces, NULL, scores, types, 1, 2, with_unk ? 0 : -1, -1,
                           1, 0, add_space_prefix};
    if (!with_unk)
        types[0] = PARLM_TOKEN_UNUSED;
    parlm_tokenizer *t = NULL;
    ck_assert_msg(parlm_tokenizer_create_llama(&t, &v) == PARLM_OK, "%s", parlm_last_error());
    return t;
}

static void expect_ids(const parlm_tokenizer *t, const char *text, size_t len, int special,
                       const int32_t *want, size_t nwant)
{
    int32_t *ids;
    size_t n;
    ck_assert_msg(parlm_tokenizer_encode_special(t, text, len, special, &ids, &n) == PARLM_OK,
                  "'%.*s': %s", (int)len, text, parlm_last_error());
    int same = n == nwant;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    if (!same) {
        char got[512];
        size_t k = 0;
        for (size_t i = 0; i < n && k < 480; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, " %d", ids[i]);
        got[k] = 0;
        ck_abort_msg("'%.*s' encodes as [%s ], want %zu ids starting %d", (int)len, text, got,
                     nwant, nwant ? want[0] : -1);
    }
    parlm_free(ids);
}
#define EXPECT(t, text, special, ...)                                                        \
    expect_ids(t, text, sizeof text - 1, special, (const int32_t[]){__VA_ARGS__},            \
               sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void expect_decode(const parlm_tokenizer *t, const int32_t *ids, size_t n,
                          const char *want)
{
    char *text;
    size_t len;
    ck_assert_int_eq(parlm_tokenizer_decode(t, ids, n, &text, &len), PARLM_OK);
    ck_assert_msg(len == strlen(want) && memcmp(text, want, len) == 0, "decoded '%s', want '%s'",
                  text, want);
    parlm_free(text);
}

START_TEST(llama_merges_by_score)
{
    parlm_tokenizer *t = llama_vocab(1, 1, 1);
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), N_LLAMA);
    ck_assert_int_eq(parlm_tokenizer_bos(t), 1);
    ck_assert_int_eq(parlm_tokenizer_eot(t), 2);
    /* "▁abc": bc (-0.5) first, then ▁a (-6); "abc" and "▁abc" are no pieces */
    EXPECT(t, "abc", 0, P_SPA, P_BC);
    /* "▁xxx": ▁x (-20) loses to xx (-1); the two xx pairs tie and the left one wins */
    EXPECT(t, "xxx", 0, P_SP, P_XX, P_X);
    EXPECT(t, "xxxx", 0, P_SP, P_XX, P_XX);
    EXPECT(t, "x", 0, P_SPX);
    /* spaces are ▁, each its own symbol: "▁a▁▁b" */
    EXPECT(t, "a  b", 0, P_SPA, P_SP, P_SP, P_B);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(parlm_tokenizer_encode(t, "", 0, &ids, &n), PARLM_OK);
    ck_assert_uint_eq(n, 0); /* no prefix for empty text */
    parlm_free(ids);
    /* a long run: pairs from the left, in O(n log n) (a quadratic merge loop would take
     * minutes here) */
    size_t big = 400000;
    char *run = malloc(big);
    memset(run, 'x', big);
    ck_assert_int_eq(parlm_tokenizer_encode(t, run, big, &ids, &n), PARLM_OK);
    ck_assert_uint_eq(n, 1 + big / 2);
    ck_assert_int_eq(ids[0], P_SP);
    for (size_t i = 1; i < n; i++)
        ck_assert_int_eq(ids[i], P_XX);
    parlm_free(ids);
    free(run);
    parlm_tokenizer_free(t);

    /* no dummy prefix: "abc" is a + bc; with ab + c (merge order by position, or by the
     * order of the vocabulary) it would be P_AB, P_C */
    t = llama_vocab(0, 1, 1);
    EXPECT(t, "abc", 0, P_A, P_BC);
    EXPECT(t, "xxx", 0, P_XX, P_X);
    EXPECT(t, " x", 0, P_SPX);
    parlm_tokenizer_free(t);
}
END_TEST

START_TEST(llama_byte_fallback)
{
    parlm_tokenizer *t = llama_vocab(1, 1, 1);
    /* é is a piece; ü (c3 bc), 日 (e6 97 a5), 😀 (f0 9f 98 80) and q are not: their bytes */
    EXPECT(t, "a\xc3\xa9", 0, P_SPA, P_EACUTE);
    EXPECT(t, "a \xc3\xbc", 0, P_SPA, P_SP, BYTE(0xc3), BYTE(0xbc));
    EXPECT(t, "\xe6\x97\xa5q", 0, P_SP, BYTE(0xe6), BYTE(0x97), BYTE(0xa5), BYTE('q'));
    EXPECT(t, "\xf0\x9f\x98\x80", 0, P_SP, BYTE(0xf0), BYTE(0x9f), BYTE(0x98), BYTE(0x80));
    /* invalid UTF-8: a lone continuation byte, a truncated sequence, 0xff */
    EXPECT(t, "\x80" "a\xc3", 0, P_SP, BYTE(0x80), P_A, BYTE(0xc3));
    EXPECT(t, "\xff\x00", 0, P_SP, BYTE(0xff), BYTE(0));
    int32_t ids[] = {P_SPA, P_SP, BYTE(0xc3), BYTE(0xbc)};
    expect_decode(t, ids, 4, "a \xc3\xbc");
    parlm_tokenizer_free(t);

    /* no byte tokens: an unknown character is one <unk>; with no <unk> either, an error */
    t = llama_vocab(1, 0, 1);
    EXPECT(t, "a\xe6\x97\xa5" "b", 0, P_SPA, 0, P_B);
    int32_t unk = 0;
    expect_decode(t, &unk, 1, "\xe2\x96\x85");
    parlm_tokenizer_free(t);
    t = llama_vocab(1, 0, 0);
    int32_t *out;
    size_t n;
    ck_assert_int_eq(parlm_tokenizer_encode(t, "aq", 2, &out, &n), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "0x71"));
    EXPECT(t, "ab", 0, P_SP, P_AB); /* ab (-5) before ▁a (-6) */
    parlm_tokenizer_free(t);
}
END_TEST

START_TEST(llama_bos_eos_and_decode)
{
    parlm_tokenizer *t = llama_vocab(1, 1, 1);
    EXPECT(t, "abc", 1, 1, P_SPA, P_BC); /* add_bos_token on, add_eos_token off */
    EXPECT(t, "abc", 0, P_SPA, P_BC);
    EXPECT(t, "", 1, 1);
    /* BOS and EOS decode to nothing; the dummy prefix's space goes */
    int32_t ids[] = {1, P_SPA, P_BC, P_SP, P_XX, 2};
    expect_decode(t, ids, 6, "abc xx");
    expect_decode(t, ids + 1, 2, "abc");
    const char *b;
    size_t len;
    ck_assert_int_eq(parlm_tokenizer_token(t, P_SPA, &b, &len), PARLM_OK);
    ck_assert(len == 2 && memcmp(b, " a", 2) == 0);
    ck_assert_int_eq(parlm_tokenizer_token(t, 1, &b, &len), PARLM_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(parlm_tokenizer_token(t, BYTE(0xff), &b, &len), PARLM_OK);
    ck_assert(len == 1 && (unsigned char)b[0] == 0xff);
    /* a round trip of arbitrary bytes: bytes split anywhere come back whole */
    uint64_t s = 7;
    char buf[2048];
    for (int rep = 0; rep < 60; rep++) {
        size_t n = (size_t)(tu_next(&s) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = rep % 2 ? (char)tu_next(&s) : " abcx\xc3\xa9\xe6\x97\xa5\n"[tu_next(&s) % 12];
        int32_t *out;
        size_t nout;
        char *back;
        size_t blen;
        ck_assert_int_eq(parlm_tokenizer_encode_special(t, buf, n, 1, &out, &nout), PARLM_OK);
        ck_assert_int_eq(out[0], 1);
        ck_assert_int_eq(parlm_tokenizer_decode(t, out, nout, &back, &blen), PARLM_OK);
        ck_assert_msg(blen == n && memcmp(back, buf, n) == 0, "rep %d: %zu bytes back of %zu",
                      rep, blen, n);
        parlm_free(out), parlm_free(back);
    }
    parlm_tokenizer_free(t);
    t = llama_vocab(0, 1, 1); /* without the prefix nothing is stripped */
    int32_t sp[] = {P_SPX};
    expect_decode(t, sp, 1, " x");
    parlm_tokenizer_free(t);
}
END_TEST

/* Writes a "llama" tokenizer GGUF by the writer's key API (independent of
 * parlm_tokenizer_write_gguf); each field can be spoiled by the caller. */
typedef struct spm_file {
    uint64_t ntok, nscores, ntypes;
    int bad_type_at, bos, with_model;
    parlm_gguf_type score_type;
} spm_file;

static void write_spm_file(const char *path, const spm_file *f)
{
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "<0x41>", SP, "a", "b", SP "a",
                                         "ab"};
    float scores[9] = {0, 0, 0, 0, -1, -2, -3, -4, -0.5f};
    int32_t types[9] = {2, 3, 3, 6, 1, 1, 1, 1, 1};
    if (f->bad_type_at >= 0)
        types[f->bad_type_at] = 7;
    parlm_gguf_writer *w;
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    uint32_t bos = (uint32_t)f->bos, eos = 2;
    uint8_t yes = 1;
    ck_assert_int_eq(parlm_gguf_set_str(w, "general.architecture", "llama", 5), PARLM_OK);
    if (f->with_model)
        ck_assert_int_eq(parlm_gguf_set_str(w, "tokenizer.ggml.model", "llama", 5), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", f->ntok, pieces, NULL),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_arr(w, "tokenizer.ggml.scores", f->score_type, f->nscores,
                                        f->score_type == PARLM_GGUF_F32 ? (void *)scores
                                                                        : (void *)types),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_arr(w, "tokenizer.ggml.token_type", PARLM_GGUF_I32, f->ntypes,
                                        types), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "tokenizer.ggml.bos_token_id", PARLM_GGUF_U32, &bos),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "tokenizer.ggml.eos_token_id", PARLM_GGUF_U32, &eos),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "tokenizer.ggml.add_bos_token", PARLM_GGUF_BOOL, &yes),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gguf_write(w, path), PARLM_OK);
    parlm_gguf_writer_free(w);
}

START_TEST(llama_from_gguf)
{
    char path[] = "/tmp/parlm-spm-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    spm_file good = {9, 9, 9, -1, 1, 1, PARLM_GGUF_F32};
    write_spm_file(path, &good);
    parlm_tokenizer *t = NULL;
    ck_assert_msg(parlm_tokenizer_load_gguf(&t, path) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), 9);
    ck_assert_int_eq(parlm_tokenizer_bos(t), 1);
    ck_assert_int_eq(parlm_tokenizer_eot(t), 2);
    /* "▁ab": ab (-0.5) beats ▁a (-4); A has only its byte token; c has nothing: <unk> */
    EXPECT(t, "ab", 1, 1, 4, 8);
    EXPECT(t, "bA c", 0, 4, 6, 3, 4, 0);
    int32_t ids[] = {1, 4, 8, 3};
    expect_decode(t, ids, 4, "abA");
    parlm_tokenizer_free(t);

    /* parlm_tokenizer_write_gguf of the test vocabulary: loads back alike */
    parlm_tokenizer *a = llama_vocab(1, 1, 1), *b = NULL;
    parlm_gguf_writer *w;
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_write_gguf(a, w), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_write(w, path), PARLM_OK);
    parlm_gguf_writer_free(w);
    ck_assert_msg(parlm_tokenizer_load_gguf(&b, path) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_tokenizer_vocab_size(b), N_LLAMA);
    ck_assert_int_eq(parlm_tokenizer_bos(b), 1);
    ck_assert_int_eq(parlm_tokenizer_eot(b), 2);
    EXPECT(b, "abc", 1, 1, P_SPA, P_BC);
    EXPECT(b, "a \xc3\xbc", 0, P_SPA, P_SP, BYTE(0xc3), BYTE(0xbc));
    uint64_t s = 11;
    char buf[512];
    for (int rep = 0; rep < 20; rep++) {
        size_t n = (size_t)(tu_next(&s) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = rep % 2 ? (char)tu_next(&s) : " abcx\xc3\xa9\xe6\x97\xa5\n"[tu_next(&s) % 12];
        int32_t *ia, *ib;
        size_t na, nb;
        ck_assert_int_eq(parlm_tokenizer_encode_special(a, buf, n, 1, &ia, &na), PARLM_OK);
        ck_assert_int_eq(parlm_tokenizer_encode_special(b, buf, n, 1, &ib, &nb), PARLM_OK);
        ck_assert(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0);
        parlm_free(ia), parlm_free(ib);
    }
    parlm_tokenizer_free(a);
    parlm_tokenizer_free(b);
    parlm_tokenizer *g2 = NULL;
    ck_assert_int_eq(parlm_tokenizer_bytes(&g2), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_write_gguf(g2, w), PARLM_EUNSUPPORTED);
    parlm_gguf_writer_free(w);
    parlm_tokenizer_free(g2);

    /* damaged metadata: an error naming the file and the key, no tokenizer */
    struct { spm_file f; const char *key; parlm_status st; } bad[] = {
        {{9, 8, 9, -1, 1, 1, PARLM_GGUF_F32}, "tokenizer.ggml.scores", PARLM_EFORMAT},
        {{9, 9, 8, -1, 1, 1, PARLM_GGUF_F32}, "tokenizer.ggml.token_type", PARLM_EFORMAT},
        {{9, 9, 9, 5, 1, 1, PARLM_GGUF_F32}, "tokenizer.ggml.token_type[5]", PARLM_EFORMAT},
        {{9, 9, 9, -1, 9, 1, PARLM_GGUF_F32}, "tokenizer.ggml.bos_token_id", PARLM_EFORMAT},
        {{9, 9, 9, -1, 1, 1, PARLM_GGUF_I32}, "tokenizer.ggml.scores", PARLM_EFORMAT},
        {{9, 9, 9, -1, 1, 0, PARLM_GGUF_F32}, "tokenizer.ggml.model", PARLM_EFORMAT},
        {{0, 0, 0, -1, 1, 1, PARLM_GGUF_F32}, "tokenizer.ggml.tokens", PARLM_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_spm_file(path, &bad[i].f);
        t = (parlm_tokenizer *)1;
        ck_assert_int_eq(parlm_tokenizer_load_gguf(&t, path), bad[i].st);
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(parlm_last_error(), bad[i].key) && strstr(parlm_last_error(), path),
                      "case %zu: '%s'", i, parlm_last_error());
    }
    /* the file cut anywhere: an error, never a crash */
    write_spm_file(path, &good);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char full[4096];
    size_t flen = fread(full, 1, sizeof full, f);
    fclose(f);
    ck_assert_uint_lt(flen, sizeof full);
    /* (a GGUF without tensors may end in up to 31 bytes of alignment padding, which a cut
     * may remove harmlessly: every cut of 32 bytes or more reaches the metadata) */
    for (size_t cut = 0; cut + 32 <= flen; cut += 7) {
        write_file(path, full, cut);
        t = (parlm_tokenizer *)1;
        ck_assert_int_ne(parlm_tokenizer_load_gguf(&t, path), PARLM_OK);
        ck_assert_ptr_null(t);
    }
    unlink(path);
}
END_TEST

/* A "gpt2" GGUF as parlm_gpt_save_gguf writes it (tokens in GPT-2's byte spelling, the
 * merges, <|endoftext|> as a control token) encodes as the encoder.json + vocab.bpe it
 * came from: seeded random texts, and the GGUF file of a model of vocabulary V. */
static void gguf_encodes_as(const char *enc, const char *bpe, int V, int eot, const char *gguf)
{
    parlm_gpt_config c = {.n_layer = 1, .n_head = 1, .n_embd = 8, .max_seq = 8, .vocab = V};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_msg(parlm_gpt_save_gguf(m, gguf, PARLM_WT_F32, enc, bpe) == PARLM_OK, "%s",
                  parlm_last_error());
    parlm_gpt_free(m);
    parlm_tokenizer *ref, *t;
    ck_assert_int_eq(parlm_tokenizer_load_gpt2(&ref, enc, bpe), PARLM_OK);
    ck_assert_msg(parlm_tokenizer_load_gguf(&t, gguf) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_tokenizer_vocab_size(t), V);
    ck_assert_int_eq(parlm_tokenizer_eot(t), eot);
    uint64_t s = 5;
    char buf[1024];
    for (int rep = 0; rep < 20; rep++) {
        size_t n = (size_t)(tu_next(&s) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = rep % 2 ? (char)tu_next(&s) : " abc\n'\xc3\xa9"[tu_next(&s) % 8];
        int32_t *ia, *ib;
        size_t na, nb;
        ck_assert_int_eq(parlm_tokenizer_encode(ref, buf, n, &ia, &na), PARLM_OK);
        ck_assert_int_eq(parlm_tokenizer_encode(t, buf, n, &ib, &nb), PARLM_OK);
        ck_assert(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0);
        parlm_free(ia), parlm_free(ib);
    }
    if (eot >= 0) {
        const char *a, *b;
        size_t la, lb;
        ck_assert_int_eq(parlm_tokenizer_token(ref, eot, &a, &la), PARLM_OK);
        ck_assert_int_eq(parlm_tokenizer_token(t, eot, &b, &lb), PARLM_OK);
        ck_assert(la == lb && memcmp(a, b, la) == 0);
    }
    parlm_tokenizer_free(ref);
    parlm_tokenizer_free(t);
}

START_TEST(gpt2_from_gguf)
{
    char dir[] = "/tmp/parlm-tokg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char enc[64], bpe[64], gguf[64];
    snprintf(enc, sizeof enc, "%s/enc.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    write_tiny_vocab(enc, bpe, "", "#version: 0.2\na b\nab c\n");
    gguf_encodes_as(enc, bpe, 258, -1, gguf);
    parlm_tokenizer *t;
    ck_assert_int_eq(parlm_tokenizer_load_gguf(&t, gguf), PARLM_OK);
    EXPECT(t, "abcab", 0, 257, 256);
    parlm_tokenizer_free(t);
    if (data_dir[0]) { /* GPT-2's own vocabulary */
        char renc[4200], rbpe[4200];
        snprintf(renc, sizeof renc, "%s/encoder.json", data_dir);
        snprintf(rbpe, sizeof rbpe, "%s/vocab.bpe", data_dir);
        gguf_encodes_as(renc, rbpe, 50257, 50256, gguf);
    }
    /* a "gpt2" tokenizer with another pre-tokenizer (Llama 3's) is refused by name */
    parlm_gguf_writer *w;
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", 4), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_str(w, "tokenizer.ggml.pre", "llama-bpe", 9), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_write(w, gguf), PARLM_OK);
    parlm_gguf_writer_free(w);
    ck_assert_int_eq(parlm_tokenizer_load_gguf(&t, gguf), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "llama-bpe"));
    /* a model file without a tokenizer */
    parlm_gpt_config c = {.n_layer = 1, .n_head = 1, .n_embd = 8, .max_seq = 8, .vocab = 258};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, gguf, PARLM_WT_F32, NULL, NULL), PARLM_OK);
    parlm_gpt_free(m);
    ck_assert_int_eq(parlm_tokenizer_load_gguf(&t, gguf), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "tokenizer.ggml.model"));
    unlink(gguf), unlink(enc), unlink(bpe);
    rmdir(dir);
}
END_TEST

int main(void)
{
    const char *d = getenv("PARLM_SHARED_DATA");
    if (d && *d) {
        snprintf(data_dir, sizeof data_dir, "%s/gpt2", d);
        if (access(data_dir, R_OK) != 0) {
            fprintf(stderr, "PARLM_SHARED_DATA=%s has no gpt2/ directory\n", d);
            return 1;
        }
    }
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("gpt2");
    tcase_add_test(tc, gpt2_reference_ids);
    tcase_add_test(tc, gpt2_round_trip_arbitrary_bytes);
    suite_add_tcase(s, tc);
    tc = tcase_create("bytes");
    tcase_add_test(tc, byte_tokenizer);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, own_vocab_and_malformed_files);
    tcase_add_test(tc, merges_file_is_validated);
    tcase_add_test(tc, llmc_tokenizer_file);
    tcase_add_test(tc, gpt2_from_gguf);
    suite_add_tcase(s, tc);
    tc = tcase_create("llama");
    tcase_add_test(tc, llama_merges_by_score);
    tcase_add_test(tc, llama_byte_fallback);
    tcase_add_test(tc, llama_bos_eos_and_decode);
    tcase_add_test(tc, llama_from_gguf);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
