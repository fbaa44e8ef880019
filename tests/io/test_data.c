/* tests/test_data.c — token shards (round trip, every kind of corruption rejected with
 * the file named), atomic writes (a failed write leaves the old file intact), and the
 * loader (content, disjoint rank windows, wrap-around, exact resume); the kind of a data
 * file from name and content, and the shard checksum ranks compare. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/io/file.h"
#include "parlm.h"
#include "../testutil.h"

static char dir[64];

static void setup(void) { ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-data"), 0); }

static void teardown(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

/* shard i holds tokens base_i + k for k < n (distinct across shards) */
static void make_shard(const char *path, size_t n, uint16_t base)
{
    uint16_t *t = malloc(n * sizeof *t);
    for (size_t k = 0; k < n; k++)
        t[k] = (uint16_t)(base + k);
    ck_assert_int_eq(parlm_shard_write(path, t, n), PARLM_OK);
    free(t);
}

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

START_TEST(shard_round_trip)
{
    char path[128];
    snprintf(path, sizeof path, "%s/s.bin", dir);
    uint16_t toks[5] = {0, 1, 65535, 50256, 7};
    ck_assert_int_eq(parlm_shard_write(path, toks, 5), PARLM_OK);
    uint16_t *back;
    size_t n;
    ck_assert_int_eq(parlm_shard_read(path, &back, &n), PARLM_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert(memcmp(back, toks, sizeof toks) == 0);
    parlm_free(back);
    ck_assert_int_eq(parlm_shard_count(path, &n), PARLM_OK);
    ck_assert_uint_eq(n, 5);
    /* no temp file is left behind */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/s.bin.tmp.%ld", dir, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
}
END_TEST

START_TEST(shard_corruption_is_rejected)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    uint16_t toks[100];
    for (int i = 0; i < 100; i++)
        toks[i] = (uint16_t)i;
    ck_assert_int_eq(parlm_shard_write(path, toks, 100), PARLM_OK);
    unsigned char good[1024 + 200];
    FILE *f = fopen(path, "rb");
    ck_assert_uint_eq(fread(good, 1, sizeof good, f), sizeof good);
    fclose(f);
    unsigned char buf[sizeof good + 2];
    size_t n;
    uint16_t *t;
    /* truncated anywhere: header or body */
    for (size_t cut = 0; cut < sizeof good; cut += 37) {
        write_raw(path, good, cut);
        ck_assert_int_eq(parlm_shard_read(path, &t, &n), PARLM_EFORMAT);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), path));
    }
    write_raw(path, good, sizeof good - 1);
    ck_assert_int_eq(parlm_shard_count(path, &n), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "truncated"));
    /* trailing bytes */
    memcpy(buf, good, sizeof good);
    buf[sizeof good] = buf[sizeof good + 1] = 0;
    write_raw(path, buf, sizeof buf);
    ck_assert_int_eq(parlm_shard_read(path, &t, &n), PARLM_EFORMAT);
    /* magic, version, negative and oversized counts */
    int32_t fields[][2] = {{0, 20240521}, {1, 2}, {2, -5}, {2, 101}, {2, 0x7fffffff}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(buf, good, sizeof good);
        memcpy(buf + 4 * fields[i][0], &fields[i][1], 4);
        write_raw(path, buf, sizeof good);
        ck_assert_int_eq(parlm_shard_read(path, &t, &n), PARLM_EFORMAT);
        ck_assert_ptr_null(t);
    }
    ck_assert_int_eq(parlm_shard_read("/nonexistent/x.bin", &t, &n), PARLM_EIO);
    ck_assert_int_eq(parlm_shard_read(NULL, &t, &n), PARLM_EINVAL);
}
END_TEST

/* One flipped bit in any checked header field (magic, version, token count) is refused
 * whatever the file's name: with ".bin" as a bad shard, otherwise as neither a shard nor
 * text (the header's NUL bytes). The 253 reserved header words carry nothing (llm.c writes
 * zeros and never reads them), so a flip there is accepted: it cannot change the tokens.
 * A flip in the token payload is not detectable from the file alone (the format has no
 * checksum); the loader's vocabulary check and the MPI data checksum cover what they can. */
START_TEST(shard_header_bit_flips)
{
    char path[128], other[128], text[128];
    snprintf(path, sizeof path, "%s/s.bin", dir);
    snprintf(other, sizeof other, "%s/s.tokens", dir);
    snprintf(text, sizeof text, "%s/notes.txt", dir);
    uint16_t toks[64];
    for (int i = 0; i < 64; i++)
        toks[i] = (uint16_t)(i * 7);
    ck_assert_int_eq(parlm_shard_write(path, toks, 64), PARLM_OK);
    unsigned char good[1024 + 128], buf[sizeof good];
    FILE *f = fopen(path, "rb");
    ck_assert_uint_eq(fread(good, 1, sizeof good, f), sizeof good);
    fclose(f);
    parlm_data_kind kind = 0;
    ck_assert_int_eq(parlm_data_probe(path, &kind), PARLM_OK);
    ck_assert_int_eq(kind, PARLM_DATA_SHARD);
    write_raw(other, good, sizeof good); /* a good shard is a shard under any name */
    ck_assert_int_eq(parlm_data_probe(other, &kind), PARLM_OK);
    ck_assert_int_eq(kind, PARLM_DATA_SHARD);
    for (int bit = 0; bit < 3 * 32; bit++) {
        memcpy(buf, good, sizeof good);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        write_raw(path, buf, sizeof buf);
        write_raw(other, buf, sizeof buf);
        ck_assert_msg(parlm_data_probe(path, &kind) == PARLM_EFORMAT, "bit %d accepted", bit);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), path));
        ck_assert_msg(parlm_data_probe(other, &kind) == PARLM_EFORMAT, "bit %d accepted", bit);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), other));
        size_t n;
        ck_assert_int_eq(parlm_shard_count(path, &n), PARLM_EFORMAT);
    }
    for (int word = 3; word < 256; word += 50) { /* reserved: accepted, tokens unchanged */
        memcpy(buf, good, sizeof good);
        buf[4 * word + 1] ^= 0x10;
        write_raw(path, buf, sizeof buf);
        uint16_t *t;
        size_t n;
        ck_assert_int_eq(parlm_shard_read(path, &t, &n), PARLM_OK);
        ck_assert(n == 64 && memcmp(t, toks, sizeof toks) == 0);
        parlm_free(t);
    }
    write_raw(text, "plain text\nsecond line\n", 23);
    ck_assert_int_eq(parlm_data_probe(text, &kind), PARLM_OK);
    ck_assert_int_eq(kind, PARLM_DATA_TEXT);
    write_raw(text, "text\0with a NUL", 15);
    ck_assert_int_eq(parlm_data_probe(text, &kind), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "neither"));
    write_raw(path, "text in a .bin", 14);
    ck_assert_int_eq(parlm_data_probe(path, &kind), PARLM_EFORMAT);
    ck_assert_int_eq(parlm_data_probe("/nonexistent/x", &kind), PARLM_EIO);
}
END_TEST

/* Same bytes, same checksum; a change of one bit anywhere (header, tokens, a tail that is
 * not a multiple of 8 bytes, beyond the first 1 MiB chunk) changes it. */
START_TEST(shard_checksum_sees_every_bit)
{
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.bin", dir);
    snprintf(b, sizeof b, "%s/b.bin", dir);
    size_t n = 700001; /* 1.4 MB: two chunks, odd tail */
    uint16_t *t = malloc(n * sizeof *t);
    for (size_t k = 0; k < n; k++)
        t[k] = (uint16_t)(k * 2654435761u >> 16);
    ck_assert_int_eq(parlm_shard_write(a, t, n), PARLM_OK);
    ck_assert_int_eq(parlm_shard_write(b, t, n), PARLM_OK);
    uint64_t ha, hb;
    ck_assert_int_eq(parlm_shard_checksum(a, &ha), PARLM_OK);
    ck_assert_int_eq(parlm_shard_checksum(b, &hb), PARLM_OK);
    ck_assert_uint_eq(ha, hb);
    size_t where[] = {0, 1, 17, 600000, n - 1};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        for (int bit = 0; bit < 16; bit += 5) {
            t[where[i]] ^= (uint16_t)(1u << bit);
            ck_assert_int_eq(parlm_shard_write(b, t, n), PARLM_OK); /* same size */
            ck_assert_int_eq(parlm_shard_checksum(b, &hb), PARLM_OK);
            ck_assert_msg(ha != hb, "token %zu bit %d not seen", where[i], bit);
            t[where[i]] ^= (uint16_t)(1u << bit);
        }
    /* a zero byte appended (the padding of the tail is zeros): the length is in the sum */
    ck_assert_int_eq(parlm_shard_write(b, t, n), PARLM_OK);
    FILE *f = fopen(b, "ab");
    fputc(0, f);
    fclose(f);
    ck_assert_int_eq(parlm_shard_checksum(b, &hb), PARLM_OK);
    ck_assert_uint_ne(ha, hb);
    write_raw(b, "\0", 1);
    uint64_t h1, h2;
    ck_assert_int_eq(parlm_shard_checksum(b, &h1), PARLM_OK);
    write_raw(b, "\0\0", 2);
    ck_assert_int_eq(parlm_shard_checksum(b, &h2), PARLM_OK);
    ck_assert_uint_ne(h1, h2);
    ck_assert_int_eq(parlm_shard_checksum("/nonexistent/x", &h1), PARLM_EIO);
    free(t);
}
END_TEST

static parlm_status failing_writer(FILE *f, void *arg)
{
    (void)arg;
    fputs("half a file", f);
    return PARLM_EIO;
}

START_TEST(atomic_write_keeps_old_file_on_failure)
{
    char path[128];
    snprintf(path, sizeof path, "%s/keep.bin", dir);
    make_shard(path, 50, 0);
    ck_assert_int_eq(parlm_write_file_atomic(path, failing_writer, NULL), PARLM_EIO);
    size_t n;
    ck_assert_int_eq(parlm_shard_count(path, &n), PARLM_OK);
    ck_assert_uint_eq(n, 50);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
    /* a directory that does not exist: an error naming it, nothing written */
    ck_assert_int_eq(parlm_shard_write("/nonexistent/dir/s.bin", (uint16_t[]){1}, 1), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "/nonexistent/dir"));
}
END_TEST

START_TEST(loader_batches_and_ranks)
{
    char p0[128], p1[128], pattern[128];
    snprintf(p0, sizeof p0, "%s/c_train_000000.bin", dir);
    snprintf(p1, sizeof p1, "%s/c_train_000001.bin", dir);
    snprintf(pattern, sizeof pattern, "%s/c_train_*.bin", dir);
    make_shard(p0, 100, 0);     /* tokens 0..99 */
    make_shard(p1, 50, 1000);   /* tokens 1000..1049 */
    const int B = 2, T = 4, R = 3;
    parlm_loader *l[3];
    for (int r = 0; r < R; r++)
        ck_assert_int_eq(parlm_loader_open(&l[r], pattern, B, T, r, R, 2000), PARLM_OK);
    ck_assert_uint_eq(parlm_loader_num_shards(l[0]), 2);
    ck_assert_uint_eq(parlm_loader_num_tokens(l[0]), 150);
    int32_t x[8], y[8];
    /* step s, rank r reads tokens from s*R*B*T + r*B*T of the current shard:
     * shard 0 fits 4 steps (4*24+1 <= 100), shard 1 fits 2 (2*24+1 <= 50), then wrap */
    int expect_base[8] = {0, 24, 48, 72, 1000, 1024, 0, 24};
    for (int s = 0; s < 8; s++)
        for (int r = 0; r < R; r++) {
            ck_assert_int_eq(parlm_loader_next(l[r], x, y), PARLM_OK);
            int base = expect_base[s] + r * B * T;
            for (int i = 0; i < B * T; i++) {
                ck_assert_int_eq(x[i], base + i);
                ck_assert_int_eq(y[i], base + i + 1);
            }
        }
    for (int r = 0; r < R; r++)
        parlm_loader_free(l[r]);
}
END_TEST

START_TEST(loader_resumes_exactly)
{
    char p0[128], p1[128], pattern[128];
    snprintf(p0, sizeof p0, "%s/d_000.bin", dir);
    snprintf(p1, sizeof p1, "%s/d_001.bin", dir);
    snprintf(pattern, sizeof pattern, "%s/d_*.bin", dir);
    make_shard(p0, 77, 0);
    make_shard(p1, 91, 500);
    parlm_loader *a, *b;
    ck_assert_int_eq(parlm_loader_open(&a, pattern, 3, 5, 0, 1, 0), PARLM_OK);
    int32_t xa[15], ya[15], xb[15], yb[15];
    for (int s = 0; s < 7; s++)
        ck_assert_int_eq(parlm_loader_next(a, xa, ya), PARLM_OK);
    parlm_loader_pos pos = parlm_loader_tell(a);
    ck_assert_int_eq(parlm_loader_open(&b, pattern, 3, 5, 0, 1, 0), PARLM_OK);
    ck_assert_int_eq(parlm_loader_seek(b, pos), PARLM_OK);
    for (int s = 0; s < 20; s++) {
        ck_assert_int_eq(parlm_loader_next(a, xa, ya), PARLM_OK);
        ck_assert_int_eq(parlm_loader_next(b, xb, yb), PARLM_OK);
        ck_assert(memcmp(xa, xb, sizeof xa) == 0 && memcmp(ya, yb, sizeof ya) == 0);
    }
    ck_assert_int_eq(parlm_loader_seek(b, (parlm_loader_pos){5, 0}), PARLM_EINVAL);
    parlm_loader_free(a);
    parlm_loader_free(b);
}
END_TEST

START_TEST(loader_bad_input)
{
    char p0[128], pattern[128];
    snprintf(p0, sizeof p0, "%s/e_000.bin", dir);
    snprintf(pattern, sizeof pattern, "%s/e_*.bin", dir);
    make_shard(p0, 40, 250); /* tokens 250..289 */
    parlm_loader *l;
    int32_t x[8], y[8];
    /* a token outside the vocabulary: named with its file and position */
    ck_assert_int_eq(parlm_loader_open(&l, pattern, 2, 4, 0, 1, 256), PARLM_OK);
    ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "e_000.bin"));
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "position 6"));
    parlm_loader_free(l);
    /* shard too small for one block of 4 ranks * 2 * 8 + 1 tokens */
    ck_assert_int_eq(parlm_loader_open(&l, pattern, 2, 8, 0, 4, 0), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "fewer than one batch"));
    char nomatch[128];
    snprintf(nomatch, sizeof nomatch, "%s/none_*.bin", dir);
    ck_assert_int_eq(parlm_loader_open(&l, nomatch, 2, 4, 0, 1, 0), PARLM_EIO);
    ck_assert_int_eq(parlm_loader_open(&l, pattern, 0, 4, 0, 1, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_loader_open(&l, pattern, 2, 4, 2, 2, 0), PARLM_EINVAL);
    /* a corrupt shard among good ones is named */
    char p1[128];
    snprintf(p1, sizeof p1, "%s/e_001.bin", dir);
    write_raw(p1, "garbage", 7);
    ck_assert_int_eq(parlm_loader_open(&l, pattern, 2, 4, 0, 1, 0), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "e_001.bin"));
    parlm_loader_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("shards");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, shard_round_trip);
    tcase_add_test(tc, shard_corruption_is_rejected);
    tcase_add_test(tc, shard_header_bit_flips);
    tcase_add_test(tc, shard_checksum_sees_every_bit);
    tcase_add_test(tc, atomic_write_keeps_old_file_on_failure);
    suite_add_tcase(s, tc);
    tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, loader_batches_and_ranks);
    tcase_add_test(tc, loader_resumes_exactly);
    tcase_add_test(tc, loader_bad_input);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
