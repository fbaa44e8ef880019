/* tests/test_tokenizer.c — GPT-2 BPE against the reference encoder's ids (from
 * ../shared/data/gpt2, see PARLM_SHARED_DATA), round trips, the byte tokenizer, llm.c's
 * tokenizer file, and malformed vocabulary files (which must fail with a message). */
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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
