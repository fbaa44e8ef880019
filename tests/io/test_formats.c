/* tests/test_formats.c — model file formats: the f16/bf16/Q8_0/Q4_0 conversions against
 * independent references (exhaustive f16, nearest-value checks, stated error bounds,
 * hand-computed blocks); GGUF read from hand-assembled bytes (independent of the writer),
 * written and read back with every metadata type; every truncation and header bit flip
 * refused without a crash; GPT-2 models exported to llama.cpp's gpt2 layout and back;
 * safetensors from hand-assembled headers, every bad offset refused, GPT-2 and Llama in
 * HF's layout, sharded checkpoints with their index, bad shards, indexes and configs. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"

static char dir[64];

static void setup(void) { ck_assert_int_eq(tu_mkdtemp(dir, sizeof dir, "parlm-formats"), 0); }

static void teardown(void) { ck_assert_int_eq(tu_rmtree(dir), 0); }

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_raw(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n + 1);
    ck_assert_uint_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

/* ---- conversions ------------------------------------------------------------------ */

/* f16 -> f32 by the definition (sign, exponent, mantissa), independent of the library */
static double half_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

START_TEST(f16_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = parlm_f16_to_f32((uint16_t)h);
        double ref = half_value((uint16_t)h);
        if (isnan(ref)) {
            ck_assert(isnan(f));
            ck_assert(isnan(parlm_f16_to_f32(parlm_f32_to_f16(f))));
            continue;
        }
        ck_assert_msg((double)f == ref && !signbit(f) == !signbit(ref), "f16 %04x", h);
        ck_assert_uint_eq(parlm_f32_to_f16(f), h); /* every half survives the round trip */
    }
    /* random floats go to the nearest half; ties to the even mantissa */
    uint64_t rng = 7;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)tu_next(&rng);
        u = (u & 0x8fffffffu) | (i % 3 == 0 ? 0 : 0x30000000u); /* many in the half range */
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x))
            continue;
        uint16_t h = parlm_f32_to_f16(x);
        double d = fabs(half_value(h) - x);
        if (isinf(half_value(h))) { /* overflow: x at least halfway past 65504 */
            ck_assert(fabs((double)x) >= 65520.0);
            continue;
        }
        for (int k = -1; k <= 1; k += 2) {
            uint16_t nb = (uint16_t)(h + k);
            if ((nb & 0x7c00) == 0x7c00 || (nb ^ h) & 0x8000)
                continue;
            double dn = fabs(half_value(nb) - x);
            ck_assert_msg(d < dn || (d == dn && (h & 1) == 0), "x=%a h=%04x", (double)x, h);
        }
    }
    ck_assert_uint_eq(parlm_f32_to_f16(65519.0f), 0x7bff);
    ck_assert_uint_eq(parlm_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(parlm_f32_to_f16(-1e-9f), 0x8000);
}
END_TEST

START_TEST(bf16_nearest)
{
    uint64_t rng = 11;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)tu_next(&rng);
        float x;
        memcpy(&x, &u, 4);
        uint16_t b = parlm_f32_to_bf16_scalar(x);
        if (isnan(x)) {
            ck_assert(isnan(parlm_bf16_to_f32_scalar(b)));
            continue;
        }
        /* candidates: the truncation t and t+1 (the next bf16 away from zero) */
        uint16_t t = (uint16_t)(u >> 16);
        uint32_t low = u & 0xffff;
        uint16_t want = low > 0x8000 || (low == 0x8000 && (t & 1)) ? (uint16_t)(t + 1) : t;
        ck_assert_uint_eq(b, want);
        ck_assert_uint_eq(parlm_f32_to_bf16_scalar(parlm_bf16_to_f32_scalar(b)), b);
    }
}
END_TEST

static void fill_blocks(float *x, int n, uint64_t seed)
{
    tu_fill(x, n, seed);
    for (int b = 0; b < n / 32; b++) { /* a different scale per block, one block all zero */
        float scale = b == 3 ? 0.0f : powf(10.0f, (float)(b % 7) - 3.0f);
        for (int j = 0; j < 32; j++)
            x[b * 32 + j] *= scale;
    }
}

/* largest magnitude of a 32-weight block (a plain compare: aarch64 gcc 12's vectorizer
 * crashes on an fmax reduction here) */
static double block_amax(const float *x)
{
    float m = 0;
    for (int j = 0; j < 32; j++)
        m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
    return m;
}

/* Q8_0: d = amax/127 in f32, rounded to f16 as stored. Each element is within half a step
 * of the grid q*d (rounding), and the stored d16 moves q*d by |q|*|d16-d| <= 127*|d16-d|. */
START_TEST(q8_0_error_bound)
{
    enum { N = 32 * 40 };
    float x[N], y[N];
    uint8_t q[N / 32 * 34];
    fill_blocks(x, N, 3);
    uint64_t bytes;
    ck_assert_int_eq(parlm_wtype_bytes(PARLM_WT_Q8_0, N, &bytes), PARLM_OK);
    ck_assert_uint_eq(bytes, sizeof q);
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q8_0, x, N, q), PARLM_OK);
    ck_assert_int_eq(parlm_dequantize(PARLM_WT_Q8_0, q, N, y), PARLM_OK);
    for (int b = 0; b < N / 32; b++) {
        double amax = block_amax(x + b * 32);
        double d = amax / 127, d16 = half_value((uint16_t)(q[b * 34] | q[b * 34 + 1] << 8));
        double bound = d / 2 + 127 * fabs(d16 - d) + 1e-6 * amax;
        for (int j = 0; j < 32; j++)
            ck_assert_msg(fabs((double)y[b * 32 + j] - x[b * 32 + j]) <= bound, "block %d elem %d", b, j);
    }
    /* a hand-computed block: amax 127 -> d = 1, q = round(x) */
    float h[32] = {0};
    h[0] = 127.0f, h[1] = -3.4f, h[2] = 2.5f, h[31] = -127.0f;
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q8_0, h, 32, q), PARLM_OK);
    ck_assert_uint_eq(q[0] | q[1] << 8, 0x3c00); /* 1.0 in f16 */
    ck_assert_int_eq((int8_t)q[2], 127);
    ck_assert_int_eq((int8_t)q[3], -3);
    ck_assert_int_eq((int8_t)q[4], 3); /* roundf: half away from zero */
    ck_assert_int_eq((int8_t)q[33], -127);
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q8_0, h, 31, q), PARLM_EINVAL);
}
END_TEST

/* Q4_0: d = m/-8 where m has the largest magnitude, q = clamp(floor(x/d + 8.5), 0, 15):
 * an element is within |d|/2 of its value (plus the f16 rounding of d, 8*|d16-d|), except
 * one of magnitude amax and sign opposite to m, which clamps at 15 and is within |d|. */
START_TEST(q4_0_error_bound_and_layout)
{
    enum { N = 32 * 40 };
    float x[N], y[N];
    uint8_t q[N / 32 * 18];
    fill_blocks(x, N, 5);
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q4_0, x, N, q), PARLM_OK);
    ck_assert_int_eq(parlm_dequantize(PARLM_WT_Q4_0, q, N, y), PARLM_OK);
    for (int b = 0; b < N / 32; b++) {
        double amax = block_amax(x + b * 32);
        double d = amax / 8, d16 = fabs(half_value((uint16_t)(q[b * 18] | q[b * 18 + 1] << 8)));
        for (int j = 0; j < 32; j++) {
            double bound = (fabs((double)x[b * 32 + j]) > 7.5 * d ? d : d / 2) + 8 * fabs(d16 - d) + 1e-6 * amax;
            ck_assert_msg(fabs((double)y[b * 32 + j] - x[b * 32 + j]) <= bound, "block %d elem %d", b, j);
        }
    }
    /* layout: m = -8 -> d = 1; x = j - 8 for j < 16 gives q = j in the low nibbles,
     * x[j + 16] = 7 - j gives q = 15 - j in the high nibbles */
    float h[32];
    for (int j = 0; j < 16; j++) {
        h[j] = (float)j - 8.0f;
        h[j + 16] = 7.0f - (float)j;
    }
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q4_0, h, 32, q), PARLM_OK);
    ck_assert_uint_eq(q[0] | q[1] << 8, 0x3c00);
    for (int j = 0; j < 16; j++)
        ck_assert_uint_eq(q[2 + j], (unsigned)(j | (15 - j) << 4));
    ck_assert_int_eq(parlm_dequantize(PARLM_WT_Q4_0, q, 32, y), PARLM_OK);
    for (int j = 0; j < 32; j++)
        ck_assert_float_eq(y[j], h[j]);
}
END_TEST

START_TEST(wtype_names)
{
    parlm_wtype t;
    ck_assert_int_eq(parlm_wtype_parse("Q4_0", &t), PARLM_OK);
    ck_assert_int_eq(t, PARLM_WT_Q4_0);
    ck_assert_int_eq(parlm_wtype_parse("q5_k", &t), PARLM_EINVAL);
    ck_assert_str_eq(parlm_wtype_name(PARLM_WT_BF16), "bf16");
    ck_assert_ptr_null(parlm_wtype_name(12));
    uint64_t n;
    ck_assert_int_eq(parlm_wtype_bytes(12, 256, &n), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_wtype_bytes(PARLM_WT_Q4_0, UINT64_MAX - 31, &n), PARLM_OK);
    ck_assert_int_eq(parlm_wtype_bytes(PARLM_WT_F32, UINT64_MAX / 2, &n), PARLM_ENOMEM);
}
END_TEST

/* ---- GGUF from hand-assembled bytes ---------------------------------------------- */

typedef struct buf {
    uint8_t p[4096];
    size_t n;
} buf;

static void b_le(buf *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b->p[b->n++] = (uint8_t)(v >> (8 * i));
}

static void b_str(buf *b, const char *s)
{
    b_le(b, strlen(s), 8);
    memcpy(b->p + b->n, s, strlen(s));
    b->n += strlen(s);
}

static void b_pad(buf *b, size_t a)
{
    while (b->n % a)
        b->p[b->n++] = 0;
}

/* A small v3 file: 4 metadata entries (string, u32 alignment 64, i16 array, string
 * array) and two tensors: "a" f32 [3,2] at 0 and "b" q8_0 [32] at 64. Offsets of the
 * fields that the corruption tests poke are returned. */
typedef struct hand_offsets {
    size_t nt, nkv, arrlen, name_b_len, type_b, off_b, data;
} hand_offsets;

static size_t hand_gguf(buf *b, hand_offsets *o)
{
    b->n = 0;
    memcpy(b->p, "GGUF", 4);
    b->n = 4;
    b_le(b, 3, 4);
    o->nt = b->n;
    b_le(b, 2, 8);
    o->nkv = b->n;
    b_le(b, 4, 8);
    b_str(b, "general.architecture");
    b_le(b, 8, 4);
    b_str(b, "gpt2");
    b_str(b, "general.alignment");
    b_le(b, 4, 4);
    b_le(b, 64, 4);
    b_str(b, "x.shorts");
    b_le(b, 9, 4);
    b_le(b, 3, 4);
    o->arrlen = b->n;
    b_le(b, 3, 8);
    b_le(b, 0xffff, 2); /* -1 */
    b_le(b, 2, 2);
    b_le(b, 0x8000, 2); /* -32768 */
    b_str(b, "x.words");
    b_le(b, 9, 4);
    b_le(b, 8, 4);
    b_le(b, 2, 8);
    b_str(b, "");
    b_str(b, "héllo");
    b_str(b, "a");
    b_le(b, 2, 4);
    b_le(b, 3, 8);
    b_le(b, 2, 8);
    b_le(b, 0, 4);
    b_le(b, 0, 8);
    o->name_b_len = b->n;
    b_str(b, "b");
    b_le(b, 1, 4);
    b_le(b, 32, 8);
    o->type_b = b->n;
    b_le(b, 8, 4);
    o->off_b = b->n;
    b_le(b, 64, 8);
    b_pad(b, 64);
    o->data = b->n;
    for (int i = 0; i < 6; i++) {
        float f = (float)i + 0.5f;
        uint32_t u;
        memcpy(&u, &f, 4);
        b_le(b, u, 4);
    }
    b_pad(b, 64);
    b_le(b, 0x3c00, 2); /* d = 1 */
    for (int j = 0; j < 32; j++)
        b->p[b->n++] = (uint8_t)(j - 16);
    return b->n;
}

START_TEST(gguf_reads_hand_assembled_file)
{
    buf b;
    hand_offsets o;
    char path[128];
    snprintf(path, sizeof path, "%s/h.gguf", dir);
    write_raw(path, b.p, hand_gguf(&b, &o));
    parlm_gguf *g;
    ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
    ck_assert_uint_eq(parlm_gguf_version(g), 3);
    ck_assert_uint_eq(parlm_gguf_alignment(g), 64);
    ck_assert_uint_eq(parlm_gguf_data_offset(g), o.data);
    ck_assert_int_eq(parlm_gguf_num_kv(g), 4);
    const char *s;
    size_t len;
    ck_assert_int_eq(parlm_gguf_get_str(g, "general.architecture", &s, &len), PARLM_OK);
    ck_assert(len == 4 && memcmp(s, "gpt2", 4) == 0);
    uint64_t u;
    ck_assert_int_eq(parlm_gguf_get_uint(g, "general.alignment", &u), PARLM_OK);
    ck_assert_uint_eq(u, 64);
    parlm_gguf_type et;
    uint64_t n;
    const void *data;
    ck_assert_int_eq(parlm_gguf_get_arr(g, "x.shorts", &et, &n, &data), PARLM_OK);
    ck_assert_int_eq(et, PARLM_GGUF_I16);
    ck_assert_uint_eq(n, 3);
    int16_t sh[3];
    memcpy(sh, data, sizeof sh);
    ck_assert(sh[0] == -1 && sh[1] == 2 && sh[2] == -32768);
    ck_assert_int_eq(parlm_gguf_kv_type(g, parlm_gguf_find_kv(g, "x.words"), &et, &n), PARLM_GGUF_ARRAY);
    ck_assert(et == PARLM_GGUF_STRING && n == 2);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "x.words", 1, &s, &len), PARLM_OK);
    ck_assert(len == 6 && memcmp(s, "héllo", 6) == 0);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "x.words", 0, &s, &len), PARLM_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "x.words", 2, &s, &len), PARLM_EINVAL);
    /* wrong kinds and missing keys name the file and the key */
    ck_assert_int_eq(parlm_gguf_get_uint(g, "general.architecture", &u), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "general.architecture"));
    ck_assert_int_eq(parlm_gguf_get_uint(g, "nope", &u), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "h.gguf"));
    ck_assert_int_eq(parlm_gguf_num_tensors(g), 2);
    const parlm_gguf_tensor *a = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "a"));
    ck_assert(a->n_dims == 2 && a->ne[0] == 3 && a->ne[1] == 2 && a->type == PARLM_WT_F32);
    ck_assert_uint_eq(a->size, 24);
    float f[6];
    memcpy(f, a->data, sizeof f);
    ck_assert_float_eq(f[5], 5.5f);
    const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, 1);
    ck_assert_str_eq(t->name, "b");
    ck_assert(t->type == PARLM_WT_Q8_0 && t->offset == 64 && t->size == 34);
    float y[32];
    ck_assert_int_eq(parlm_dequantize(t->type, t->data, 32, y), PARLM_OK);
    ck_assert_float_eq(y[0], -16.0f);
    ck_assert_float_eq(y[31], 15.0f);
    parlm_gguf_close(g);
}
END_TEST

static parlm_status open_bytes(const char *path, const uint8_t *p, size_t n)
{
    write_raw(path, p, n);
    parlm_gguf *g;
    parlm_status s = parlm_gguf_open(&g, path);
    parlm_gguf_close(s == PARLM_OK ? g : NULL);
    return s;
}

START_TEST(gguf_truncation_and_bit_flips)
{
    buf b;
    hand_offsets o;
    char path[128];
    snprintf(path, sizeof path, "%s/t.gguf", dir);
    size_t n = hand_gguf(&b, &o);
    /* every truncation ends inside something the reader needs: refused, never a crash */
    for (size_t k = 0; k < n; k++) {
        parlm_status s = open_bytes(path, b.p, k);
        ck_assert_msg(s == PARLM_EFORMAT, "truncated to %zu bytes: %d", k, (int)s);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "t.gguf"));
    }
    ck_assert_int_eq(open_bytes(path, b.p, n), PARLM_OK);
    /* every bit of the header and tensor infos flipped: an error or a valid file */
    for (size_t k = 0; k < o.data; k++)
        for (int bit = 0; bit < 8; bit++) {
            b.p[k] ^= (uint8_t)(1 << bit);
            parlm_status s = open_bytes(path, b.p, n);
            ck_assert_msg(s == PARLM_OK || s == PARLM_EFORMAT || s == PARLM_EUNSUPPORTED,
                          "byte %zu bit %d: %d", k, bit, (int)s);
            b.p[k] ^= (uint8_t)(1 << bit);
        }
}
END_TEST

static void poke(buf *b, size_t at, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b->p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* each damaged field: refused with a message naming it */
START_TEST(gguf_corrupt_fields)
{
    buf b;
    hand_offsets o;
    char path[128];
    snprintf(path, sizeof path, "%s/c.gguf", dir);
    struct {
        const char *what; /* expected in the message */
        int field;        /* which offset of hand_offsets, or -1 for the magic */
        uint64_t value;
        int bytes;
        parlm_status want;
    } cases[] = {
        {"not a GGUF", -1, 0x46554746, 4, PARLM_EFORMAT},
        {"header counts", 0, UINT64_MAX, 8, PARLM_EFORMAT},            /* tensor count */
        {"header counts", 1, (uint64_t)1 << 40, 8, PARLM_EFORMAT},     /* kv count */
        {"does not fit", 2, (uint64_t)1 << 62, 8, PARLM_EFORMAT},      /* array length */
        {"at most 63", 3, 1000, 8, PARLM_EFORMAT},                     /* tensor name length */
        {"unsupported tensor type 12 for tensor b", 4, 12, 4, PARLM_EUNSUPPORTED},
        {"unsupported tensor type 4294967295 for tensor b", 4, UINT32_MAX, 4, PARLM_EUNSUPPORTED},
        {"not a multiple of the alignment", 5, 32, 8, PARLM_EFORMAT},  /* offset of b */
        {"overlap", 5, 0, 8, PARLM_EFORMAT},
        {"past the end", 5, 128, 8, PARLM_EFORMAT},
        {"past the end", 5, UINT64_MAX - 63, 8, PARLM_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = hand_gguf(&b, &o);
        size_t at[] = {o.nt, o.nkv, o.arrlen, o.name_b_len, o.type_b, o.off_b};
        poke(&b, cases[i].field < 0 ? 0 : at[cases[i].field], cases[i].value, cases[i].bytes);
        ck_assert_int_eq(open_bytes(path, b.p, n), cases[i].want);
        ck_assert_msg(strstr(parlm_last_error(), cases[i].what) && strstr(parlm_last_error(), "c.gguf"),
                      "case %zu: %s", i, parlm_last_error());
    }
    /* a duplicate tensor name: rename "b" to "a" */
    size_t n = hand_gguf(&b, &o);
    b.p[o.name_b_len + 8] = 'a';
    ck_assert_int_eq(open_bytes(path, b.p, n), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "'a' appears twice"));
    /* a bool other than 0/1, a version 1 file */
    n = hand_gguf(&b, &o);
    poke(&b, 4, 1, 4);
    ck_assert_int_eq(open_bytes(path, b.p, n), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "version 1"));
    parlm_gguf *g;
    ck_assert_int_eq(parlm_gguf_open(&g, "/nonexistent/x.gguf"), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "/nonexistent/x.gguf"));
}
END_TEST

/* ---- GGUF writer -> reader -------------------------------------------------------- */

START_TEST(gguf_write_read_all_types)
{
    char path[128];
    snprintf(path, sizeof path, "%s/w.gguf", dir);
    parlm_gguf_writer *w;
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    uint8_t u8 = 200, bo = 1;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u, align = 128;
    int32_t i32 = -2000000000;
    uint64_t u64 = UINT64_MAX;
    int64_t i64 = INT64_MIN;
    float f32 = 1.5f;
    double f64 = -2.25;
    ck_assert_int_eq(parlm_gguf_set(w, "t.u8", PARLM_GGUF_U8, &u8), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.i8", PARLM_GGUF_I8, &i8), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.u16", PARLM_GGUF_U16, &u16), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.i16", PARLM_GGUF_I16, &i16), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.u32", PARLM_GGUF_U32, &u32), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.i32", PARLM_GGUF_I32, &i32), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.u64", PARLM_GGUF_U64, &u64), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.i64", PARLM_GGUF_I64, &i64), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.f32", PARLM_GGUF_F32, &f32), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.f64", PARLM_GGUF_F64, &f64), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "t.bool", PARLM_GGUF_BOOL, &bo), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set(w, "general.alignment", PARLM_GGUF_U32, &align), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_str(w, "t.str", "a\0b", 3), PARLM_OK);
    const char *words[] = {"x", "", "yz"};
    ck_assert_int_eq(parlm_gguf_set_arr_str(w, "t.words", 3, words, NULL), PARLM_OK);
    const double ds[2] = {1e300, -0.0};
    ck_assert_int_eq(parlm_gguf_set_arr(w, "t.doubles", PARLM_GGUF_F64, 2, ds), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_arr(w, "t.empty", PARLM_GGUF_U32, 0, NULL), PARLM_OK);
    /* refused: a second key of the same name, a bad bool, a bad alignment */
    ck_assert_int_eq(parlm_gguf_set(w, "t.u8", PARLM_GGUF_U8, &u8), PARLM_EINVAL);
    uint8_t two = 2;
    ck_assert_int_eq(parlm_gguf_set(w, "t.bool2", PARLM_GGUF_BOOL, &two), PARLM_EINVAL);
    uint32_t a3 = 3;
    ck_assert_int_eq(parlm_gguf_set(w, "general.alignment", PARLM_GGUF_U32, &a3), PARLM_EINVAL);

    /* one tensor of each type, 2 x 64 elements */
    float x[128];
    tu_fill(x, 128, 9);
    static uint8_t data[5][512];
    parlm_wtype types[5] = {PARLM_WT_F32, PARLM_WT_F16, PARLM_WT_BF16, PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    uint64_t ne[2] = {64, 2};
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "w.%s", parlm_wtype_name(types[i]));
        ck_assert_int_eq(parlm_quantize(types[i], x, 128, data[i]), PARLM_OK);
        ck_assert_int_eq(parlm_gguf_add_tensor(w, name, types[i], 2, ne, data[i]), PARLM_OK);
    }
    uint64_t bad[1] = {33};
    ck_assert_int_eq(parlm_gguf_add_tensor(w, "w.bad", PARLM_WT_Q8_0, 1, bad, data[0]), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gguf_add_tensor(w, "w.f32", PARLM_WT_F32, 2, ne, data[0]), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gguf_write(w, path), PARLM_OK);
    parlm_gguf_writer_free(w);

    parlm_gguf *g;
    ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
    uint64_t u;
    int64_t i;
    double d;
    int bv;
    ck_assert_int_eq(parlm_gguf_get_uint(g, "t.u8", &u), PARLM_OK);
    ck_assert_uint_eq(u, 200);
    ck_assert_int_eq(parlm_gguf_get_int(g, "t.i8", &i), PARLM_OK);
    ck_assert_int_eq(i, -100);
    ck_assert_int_eq(parlm_gguf_get_uint(g, "t.i8", &u), PARLM_EFORMAT); /* negative */
    ck_assert_int_eq(parlm_gguf_get_uint(g, "t.u16", &u), PARLM_OK);
    ck_assert_uint_eq(u, 60000);
    ck_assert_int_eq(parlm_gguf_get_int(g, "t.i16", &i), PARLM_OK);
    ck_assert_int_eq(i, -30000);
    ck_assert_int_eq(parlm_gguf_get_uint(g, "t.u32", &u), PARLM_OK);
    ck_assert_uint_eq(u, 4000000000u);
    ck_assert_int_eq(parlm_gguf_get_int(g, "t.i32", &i), PARLM_OK);
    ck_assert_int_eq(i, -2000000000);
    ck_assert_int_eq(parlm_gguf_get_uint(g, "t.u64", &u), PARLM_OK);
    ck_assert(u == UINT64_MAX);
    ck_assert_int_eq(parlm_gguf_get_int(g, "t.u64", &i), PARLM_EFORMAT); /* too large */
    ck_assert_int_eq(parlm_gguf_get_int(g, "t.i64", &i), PARLM_OK);
    ck_assert(i == INT64_MIN);
    ck_assert_int_eq(parlm_gguf_get_float(g, "t.f32", &d), PARLM_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(parlm_gguf_get_float(g, "t.f64", &d), PARLM_OK);
    ck_assert(d == -2.25);
    ck_assert_int_eq(parlm_gguf_get_bool(g, "t.bool", &bv), PARLM_OK);
    ck_assert_int_eq(bv, 1);
    const char *s;
    size_t len;
    ck_assert_int_eq(parlm_gguf_get_str(g, "t.str", &s, &len), PARLM_OK);
    ck_assert(len == 3 && memcmp(s, "a\0b", 3) == 0);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "t.words", 2, &s, &len), PARLM_OK);
    ck_assert(len == 2 && memcmp(s, "yz", 2) == 0);
    parlm_gguf_type et;
    uint64_t n;
    const void *p;
    ck_assert_int_eq(parlm_gguf_get_arr(g, "t.doubles", &et, &n, &p), PARLM_OK);
    double dd[2];
    memcpy(dd, p, sizeof dd);
    ck_assert(et == PARLM_GGUF_F64 && n == 2 && dd[0] == 1e300 && signbit(dd[1]));
    ck_assert_int_eq(parlm_gguf_get_arr(g, "t.empty", &et, &n, &p), PARLM_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(parlm_gguf_alignment(g), 128);
    ck_assert_uint_eq(parlm_gguf_data_offset(g) % 128, 0);
    ck_assert_int_eq(parlm_gguf_num_tensors(g), 5);
    for (int k = 0; k < 5; k++) {
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, k);
        uint64_t bytes;
        parlm_wtype_bytes(types[k], 128, &bytes);
        ck_assert_int_eq(t->type, types[k]);
        ck_assert(t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 2 && t->size == bytes);
        ck_assert_uint_eq(t->offset % 128, 0);
        ck_assert(memcmp(t->data, data[k], bytes) == 0);
    }
    parlm_gguf_close(g);
    parlm_gguf_close(NULL);
}
END_TEST

/* ---- GPT-2 <-> GGUF --------------------------------------------------------------- */

static parlm_gpt *tiny_model(int vocab)
{
    parlm_gpt_config c = {0};
    ck_assert_int_eq(parlm_gpt_preset("tiny", &c), PARLM_OK);
    c.max_seq = 32;
    c.vocab = vocab;
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 42), PARLM_OK);
    return m;
}

START_TEST(gpt2_gguf_round_trip_f32)
{
    char path[128];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    parlm_gpt *m = tiny_model(300);
    parlm_gpt_config c = parlm_gpt_get_config(m);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_F32, NULL, NULL), PARLM_OK);

    /* llama.cpp's names and ggml shapes ([in, out]) */
    parlm_gguf *g;
    ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
    const char *s;
    size_t len;
    ck_assert_int_eq(parlm_gguf_get_str(g, "general.architecture", &s, &len), PARLM_OK);
    ck_assert(len == 4 && memcmp(s, "gpt2", 4) == 0);
    uint64_t u;
    ck_assert_int_eq(parlm_gguf_get_uint(g, "gpt2.block_count", &u), PARLM_OK);
    ck_assert_uint_eq(u, (uint64_t)c.n_layer);
    ck_assert_int_eq(parlm_gguf_get_uint(g, "gpt2.feed_forward_length", &u), PARLM_OK);
    ck_assert_uint_eq(u, 4 * (uint64_t)c.n_embd);
    /* + output.weight, the tied head written again for llama.cpp: token_embd's bytes */
    ck_assert_int_eq(parlm_gguf_num_tensors(g), 2 + 12 * c.n_layer + 2 + 1);
    const parlm_gguf_tensor *te = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "token_embd.weight"));
    const parlm_gguf_tensor *to = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "output.weight"));
    ck_assert(te && to && to->type == te->type && to->ne[0] == te->ne[0] && to->ne[1] == te->ne[1]);
    ck_assert(to->size == te->size && memcmp(to->data, te->data, te->size) == 0);
    struct {
        const char *name;
        uint64_t ne0, ne1;
    } want[] = {{"token_embd.weight", 64, 300},   {"position_embd.weight", 64, 32},
                {"blk.0.attn_qkv.weight", 64, 192}, {"blk.1.attn_qkv.bias", 192, 1},
                {"blk.1.attn_output.weight", 64, 64}, {"blk.0.ffn_up.weight", 64, 256},
                {"blk.0.ffn_down.weight", 256, 64}, {"blk.1.ffn_norm.bias", 64, 1},
                {"output_norm.weight", 64, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, want[i].name));
        ck_assert_msg(t && t->ne[0] == want[i].ne0 && t->ne[1] == want[i].ne1 &&
                          t->n_dims == (want[i].ne1 > 1 ? 2 : 1), "%s", want[i].name);
    }
    /* bytes as stored are the model's: blk.1.attn_qkv.weight is layer 1's qkvw */
    const char *kind;
    int layer;
    int64_t off, cnt;
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &cnt);
        if (strcmp(kind, "qkvw") == 0 && layer == 1) {
            const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "blk.1.attn_qkv.weight"));
            ck_assert(memcmp(t->data, parlm_gpt_params(m) + off, (size_t)cnt * 4) == 0);
        }
    }
    parlm_gguf_close(g);

    parlm_gpt *b;
    ck_assert_int_eq(parlm_gpt_load_gguf(&b, path), PARLM_OK);
    parlm_gpt_config cb = parlm_gpt_get_config(b);
    ck_assert(memcmp(&c, &cb, sizeof c) == 0);
    int64_t np = parlm_gpt_num_params(m), pad0 = (int64_t)c.vocab * c.n_embd,
            pad1 = (int64_t)c.vocab_pad * c.n_embd;
    const float *pa = parlm_gpt_params(m), *pb = parlm_gpt_params(b);
    ck_assert(memcmp(pa, pb, (size_t)pad0 * 4) == 0);
    ck_assert(memcmp(pa + pad1, pb + pad1, (size_t)(np - pad1) * 4) == 0);
    for (int64_t i = pad0; i < pad1; i++)
        ck_assert(pb[i] == 0.0f);
    parlm_gpt_free(b);
    parlm_gpt_free(m);
}
END_TEST

START_TEST(gpt2_gguf_quantized)
{
    char path[128];
    snprintf(path, sizeof path, "%s/q.gguf", dir);
    parlm_gpt *m = tiny_model(256);
    parlm_wtype types[4] = {PARLM_WT_F16, PARLM_WT_BF16, PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    /* relative to the largest weight of a tensor: f16 2^-11, bf16 2^-8, Q8_0 one step
     * (1/127, f16 scale included), Q4_0 one step (1/8) */
    double tol[4] = {1.0 / 2048, 1.0 / 256, 1.0 / 127, 1.0 / 8};
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(parlm_gpt_save_gguf(m, path, types[k], NULL, NULL), PARLM_OK);
        parlm_gguf *g;
        ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
        ck_assert_int_eq(parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "blk.0.ffn_down.weight"))->type, types[k]);
        ck_assert_int_eq(parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "blk.0.ffn_norm.weight"))->type, PARLM_WT_F32);
        uint64_t qv;
        ck_assert_int_eq(parlm_gguf_get_uint(g, "general.quantization_version", &qv),
                         k >= 2 ? PARLM_OK : PARLM_EFORMAT);
        parlm_gguf_close(g);
        parlm_gpt *b;
        ck_assert_int_eq(parlm_gpt_load_gguf(&b, path), PARLM_OK);
        for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
            const char *kind;
            int layer;
            int64_t off, cnt;
            parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &cnt);
            if (strcmp(kind, "wte") == 0)
                cnt = 256 * 64;
            const float *x = parlm_gpt_params(m) + off, *y = parlm_gpt_params(b) + off;
            float amax = tu_max_abs(x, cnt), err = tu_max_abs_diff(x, y, cnt);
            ck_assert_msg(err <= tol[k] * amax * 1.01, "%s %s: %g > %g", parlm_wtype_name(types[k]),
                          kind, (double)err, tol[k] * amax);
        }
        parlm_gpt_free(b);
    }
    parlm_gpt_free(m);
}
END_TEST

START_TEST(gpt2_gguf_refuses_other_models)
{
    char path[128];
    snprintf(path, sizeof path, "%s/o.gguf", dir);
    parlm_gguf_writer *w;
    ck_assert_int_eq(parlm_gguf_writer_create(&w), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_set_str(w, "general.architecture", "mamba", 5), PARLM_OK);
    ck_assert_int_eq(parlm_gguf_write(w, path), PARLM_OK);
    parlm_gguf_writer_free(w);
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_load_gguf(&m, path), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "mamba"));
    /* a gpt2 file missing a tensor names it */
    parlm_gpt *t = tiny_model(256);
    ck_assert_int_eq(parlm_gpt_save_gguf(t, path, PARLM_WT_F32, NULL, NULL), PARLM_OK);
    parlm_gpt_free(t);
    size_t n;
    uint8_t *p = read_raw(path, &n);
    uint8_t *hit = memmem(p, n, "blk.1.ffn_up.bias", 17);
    ck_assert_ptr_nonnull(hit);
    hit[4] = '9'; /* blk.9...: layer 1's tensor is gone */
    write_raw(path, p, n);
    free(p);
    ck_assert_int_eq(parlm_gpt_load_gguf(&m, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "blk.1.ffn_up.bias"));
    /* a header promising a far bigger model than the tensors hold: refused before the
     * model is allocated */
    t = tiny_model(256);
    ck_assert_int_eq(parlm_gpt_save_gguf(t, path, PARLM_WT_F32, NULL, NULL), PARLM_OK);
    parlm_gpt_free(t);
    p = read_raw(path, &n);
    hit = memmem(p, n, "gpt2.block_count", 16);
    ck_assert_ptr_nonnull(hit);
    hit[16 + 4] = 255; /* 2 -> 255 layers */
    write_raw(path, p, n);
    free(p);
    ck_assert_int_eq(parlm_gpt_load_gguf(&m, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "the header describes"));
    /* an output.weight that is not token_embd's copy: an untied head, refused by name
     * (in every type: the quantized copies are compared as stored) */
    parlm_wtype types[2] = {PARLM_WT_F32, PARLM_WT_Q8_0};
    for (int k = 0; k < 2; k++) {
        t = tiny_model(256);
        ck_assert_int_eq(parlm_gpt_save_gguf(t, path, types[k], NULL, NULL), PARLM_OK);
        parlm_gpt_free(t);
        parlm_gguf *g;
        ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
        const parlm_gguf_tensor *o = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "output.weight"));
        ck_assert_ptr_nonnull(o);
        uint64_t at = parlm_gguf_data_offset(g) + o->offset + o->size - 1;
        parlm_gguf_close(g);
        ck_assert_int_eq(parlm_gpt_load_gguf(&m, path), PARLM_OK); /* the copy as written */
        parlm_gpt_free(m);
        p = read_raw(path, &n);
        ck_assert_uint_lt(at, n);
        p[at] ^= 0x40;
        write_raw(path, p, n);
        free(p);
        ck_assert_int_eq(parlm_gpt_load_gguf(&m, path), PARLM_EUNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "untied"));
    }
}
END_TEST

/* A Llama model in llama.cpp's "llama" layout: its keys, names and ggml shapes; read back
 * bit for bit (config and weights), tied (no output.weight) and untied; a RoPE over part of
 * the head or a non-linear scaling is refused by name. */
static parlm_gpt *tiny_llama(int untied)
{
    parlm_gpt_config c = {.n_layer = 2, .n_head = 4, .n_embd = 32, .max_seq = 16, .vocab = 70,
                          .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2, .ffn_hidden = 48,
                          .untied_head = untied, .rope_theta = 5e5f, .rope_scale = 2.0f,
                          .norm_eps = 1e-6f};
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create(&m, &c, 7) == PARLM_OK, "%s", parlm_last_error());
    return m;
}

START_TEST(llama_gguf_round_trip)
{
    char path[128];
    snprintf(path, sizeof path, "%s/l.gguf", dir);
    for (int untied = 0; untied <= 1; untied++) {
        parlm_gpt *m = tiny_llama(untied);
        parlm_gpt_config c = parlm_gpt_get_config(m);
        ck_assert_msg(parlm_gpt_save_gguf(m, path, PARLM_WT_F32, NULL, NULL) == PARLM_OK, "%s",
                      parlm_last_error());
        parlm_gguf *g;
        ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
        const char *s;
        size_t len;
        ck_assert_int_eq(parlm_gguf_get_str(g, "general.architecture", &s, &len), PARLM_OK);
        ck_assert(len == 5 && memcmp(s, "llama", 5) == 0);
        uint64_t u;
        double d;
        ck_assert_int_eq(parlm_gguf_get_uint(g, "llama.attention.head_count_kv", &u), PARLM_OK);
        ck_assert_uint_eq(u, 2);
        ck_assert_int_eq(parlm_gguf_get_uint(g, "llama.feed_forward_length", &u), PARLM_OK);
        ck_assert_uint_eq(u, 48);
        ck_assert_int_eq(parlm_gguf_get_uint(g, "llama.rope.dimension_count", &u), PARLM_OK);
        ck_assert_uint_eq(u, 8);
        ck_assert_int_eq(parlm_gguf_get_float(g, "llama.rope.freq_base", &d), PARLM_OK);
        ck_assert(d == 5e5);
        ck_assert_int_eq(parlm_gguf_get_float(g, "llama.rope.scaling.factor", &d), PARLM_OK);
        ck_assert(d == 2.0);
        /* 1 + 9 per layer + output_norm (+ output) */
        ck_assert_int_eq(parlm_gguf_num_tensors(g), 1 + 9 * 2 + 1 + untied);
        ck_assert_int_eq(parlm_gguf_find_tensor(g, "output.weight") >= 0, untied);
        struct {
            const char *name;
            uint64_t ne0, ne1;
        } want[] = {{"token_embd.weight", 32, 70},   {"blk.0.attn_norm.weight", 32, 1},
                    {"blk.0.attn_q.weight", 32, 32}, {"blk.1.attn_k.weight", 32, 16},
                    {"blk.1.attn_v.weight", 32, 16}, {"blk.0.attn_output.weight", 32, 32},
                    {"blk.1.ffn_gate.weight", 32, 48}, {"blk.0.ffn_up.weight", 32, 48},
                    {"blk.1.ffn_down.weight", 48, 32}, {"output_norm.weight", 32, 1}};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, want[i].name));
            ck_assert_msg(t && t->ne[0] == want[i].ne0 && t->ne[1] == want[i].ne1, "%s", want[i].name);
        }
        parlm_gguf_close(g);
        parlm_gpt *b;
        ck_assert_msg(parlm_gpt_load_gguf(&b, path) == PARLM_OK, "%s", parlm_last_error());
        parlm_gpt_config cb = parlm_gpt_get_config(b);
        ck_assert(memcmp(&c, &cb, sizeof c) == 0);
        ck_assert_int_eq(parlm_gpt_num_params(b), parlm_gpt_num_params(m));
        ck_assert(memcmp(parlm_gpt_params(m), parlm_gpt_params(b),
                         (size_t)parlm_gpt_num_params(m) * 4) == 0); /* padding rows: 0 in both */
        parlm_gpt_free(b);
        parlm_gpt_free(m);
    }
    /* refused by name: a RoPE over part of the head, a YaRN scaling */
    for (int k = 0; k < 2; k++) {
        parlm_gpt *m = tiny_llama(0);
        ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_F32, NULL, NULL), PARLM_OK);
        parlm_gpt_free(m);
        size_t n;
        uint8_t *p = read_raw(path, &n);
        const char *key = k == 0 ? "llama.rope.dimension_count" : "llama.rope.scaling.type";
        uint8_t *hit = memmem(p, n, key, strlen(key));
        ck_assert_ptr_nonnull(hit);
        if (k == 0)
            hit[strlen(key) + 4] = 4; /* u32 8 -> 4 */
        else
            memcpy(hit + strlen(key) + 4 + 8, "yarn__", 6); /* type, length, "linear" */
        write_raw(path, p, n);
        free(p);
        parlm_gpt *b;
        ck_assert_int_eq(parlm_gpt_load_gguf(&b, path), PARLM_EUNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), k == 0 ? "dimension_count" : "yarn__"));
    }
}
END_TEST

/* A quantized Llama file loads within one quantization step of the weights. */
START_TEST(llama_gguf_quantized)
{
    char path[128];
    snprintf(path, sizeof path, "%s/lq.gguf", dir);
    parlm_gpt *m = tiny_llama(1);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_Q8_0, NULL, NULL), PARLM_OK);
    parlm_gpt *b;
    ck_assert_msg(parlm_gpt_load_gguf(&b, path) == PARLM_OK, "%s", parlm_last_error());
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *kind;
        int layer;
        int64_t off, cnt;
        parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &cnt);
        const float *x = parlm_gpt_params(m) + off, *y = parlm_gpt_params(b) + off;
        float amax = tu_max_abs(x, cnt), err = tu_max_abs_diff(x, y, cnt);
        ck_assert_msg(err <= amax / 127 * 1.01, "%s: %g > %g", kind, (double)err, amax / 127);
    }
    parlm_gpt_free(b);
    parlm_gpt_free(m);
}
END_TEST

/* A quantized file decodes on its own blocks: the stored Q8_0 / Q4_0 bytes of the token
 * embedding, a layer's stacked wq, the SwiGLU gate and the untied head are exactly
 * parlm_quantize of the loaded weights (what parlm_gpt_set_decode_type's copy is made
 * of), and the loader says so (wtype, blocks_exact). A block another quantizer rounded
 * otherwise (scale 1, every weight q = 1 or nibble 9) is reported as not exact. */
START_TEST(gguf_decode_blocks_exact)
{
    char path[128];
    snprintf(path, sizeof path, "%s/qb.gguf", dir);
    const parlm_wtype types[2] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    for (int k = 0; k < 2; k++) {
        parlm_gpt *m = tiny_llama(1);
        ck_assert_int_eq(parlm_gpt_save_gguf(m, path, types[k], NULL, NULL), PARLM_OK);
        parlm_gpt_free(m);
        parlm_gpt *b;
        parlm_gguf_load_info info = {PARLM_WT_F32, -1};
        ck_assert_msg(parlm_gpt_load_gguf_ex(&b, path, &info) == PARLM_OK, "%s",
                      parlm_last_error());
        ck_assert_int_eq(info.wtype, types[k]);
        ck_assert_int_eq(info.blocks_exact, 1);
        parlm_gguf *g;
        ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
        static const struct {
            const char *file, *model;
            int layer;
        } pairs[] = {{"token_embd.weight", "wte", -1}, {"blk.1.attn_q.weight", "wq", 1},
                     {"blk.0.ffn_gate.weight", "w_gate", 0}, {"output.weight", "lm_head", 2}};
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            const parlm_gguf_tensor *t =
                parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, pairs[p].file));
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(t->type, types[k]);
            int64_t off = -1, count, n = (int64_t)(t->ne[0] * t->ne[1]);
            for (int i = 0; i < parlm_gpt_num_tensors(b); i++) {
                const char *kind;
                int layer;
                int64_t o;
                parlm_gpt_tensor_info(b, i, &kind, &layer, &o, &count);
                if (!strcmp(kind, pairs[p].model) && (layer == pairs[p].layer || layer < 0 ||
                                                      layer >= 2))
                    off = o;
            }
            ck_assert_int_ge(off, 0);
            uint8_t *q = malloc((size_t)t->size);
            ck_assert_int_eq(parlm_quantize(types[k], parlm_gpt_params(b) + off, n, q), PARLM_OK);
            ck_assert_msg(memcmp(q, t->data, (size_t)t->size) == 0, "%s: re-quantized blocks "
                          "differ from the file's", pairs[p].file);
            free(q);
        }
        /* another quantizer's block: the first of blk.0.attn_q.weight */
        const parlm_gguf_tensor *t = parlm_gguf_tensor_at(g, parlm_gguf_find_tensor(g, "blk.0.attn_q.weight"));
        size_t at = (size_t)(parlm_gguf_data_offset(g) + t->offset);
        parlm_gguf_close(g);
        parlm_gpt_free(b);
        size_t n;
        uint8_t *raw = read_raw(path, &n);
        raw[at] = 0x00, raw[at + 1] = 0x3C; /* f16 1.0 */
        memset(raw + at + 2, types[k] == PARLM_WT_Q8_0 ? 1 : 0x99, types[k] == PARLM_WT_Q8_0 ? 32 : 16);
        write_raw(path, raw, n);
        free(raw);
        ck_assert_int_eq(parlm_gpt_load_gguf_ex(&b, path, &info), PARLM_OK);
        ck_assert_int_eq(info.wtype, types[k]);
        ck_assert_int_eq(info.blocks_exact, 0);
        ck_assert_float_eq(parlm_gpt_params(b)[parlm_gpt_get_config(b).vocab_pad * 32 + 32], 1.0f);
        parlm_gpt_free(b);
        /* a block scale that is NaN, then infinite: a bad file, named with its tensor */
        for (int bad = 0; bad < 2; bad++) {
            raw = read_raw(path, &n);
            raw[at] = 0x00, raw[at + 1] = bad ? 0x7C : 0x7E; /* f16 +inf, NaN */
            write_raw(path, raw, n);
            free(raw);
            b = NULL;
            ck_assert_int_eq(parlm_gpt_load_gguf_ex(&b, path, &info), PARLM_EINVAL);
            ck_assert_ptr_null(b);
            ck_assert_msg(strstr(parlm_last_error(), "blk.0.attn_q.weight") &&
                          strstr(parlm_last_error(), "not finite"), "%s", parlm_last_error());
        }
    }
    /* the quantizer itself: NaN and infinity are errors naming the index */
    float x[64] = {0};
    uint8_t q[72];
    x[40] = NAN;
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q8_0, x, 64, q), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "x[40]"));
    x[40] = -INFINITY;
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q4_0, x, 64, q), PARLM_EINVAL);
    x[40] = 3.0f;
    ck_assert_int_eq(parlm_quantize(PARLM_WT_Q4_0, x, 64, q), PARLM_OK);
}
END_TEST

/* ggml's reference quantizers as its docs describe them (independent of parlm_quantize):
 * Q8_0 d = amax/127, q = roundf(x * (1/d)); Q4_0 d = m / -8 for the first x of largest
 * magnitude m, q = min(15, (int8)(x * (1/d) + 8.5)). n: a multiple of 32. */
static void ggml_style_quantize(int type, const float *x, int64_t n, uint8_t *out)
{
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0, m = 0;
        for (int i = 0; i < 32; i++)
            if (fabsf(x[i]) > amax)
                amax = fabsf(x[i]), m = x[i];
        float d = type == PARLM_WT_Q8_0 ? amax / 127 : m / -8, id = d != 0 ? 1.0f / d : 0;
        uint16_t h = parlm_f32_to_f16(d);
        out[0] = (uint8_t)h, out[1] = (uint8_t)(h >> 8);
        if (type == PARLM_WT_Q8_0) {
            for (int i = 0; i < 32; i++)
                out[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
            out += 34;
        } else {
            uint8_t q[32];
            for (int i = 0; i < 32; i++) {
                int v = (int8_t)(x[i] * id + 8.5f);
                q[i] = (uint8_t)(v < 15 ? v : 15);
            }
            for (int j = 0; j < 16; j++)
                out[2 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
            out += 18;
        }
    }
}

/* A file quantized by ggml's rounding (llama.cpp's quantizer) also decodes on its own
 * blocks: each block re-quantizes to itself (Q8_0: some |q| is 127; Q4_0: the largest
 * magnitude is q = 0), so the loader reports blocks_exact. (On these weights parlm's
 * quantizer writes the same blocks as ggml's; the re-quantization is what is checked.) */
START_TEST(gguf_ggml_rounding_is_exact)
{
    char f32[128], q[128];
    snprintf(f32, sizeof f32, "%s/w.gguf", dir);
    snprintf(q, sizeof q, "%s/wq.gguf", dir);
    const parlm_wtype types[2] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    for (int k = 0; k < 2; k++) {
        parlm_gpt *m = tiny_llama(1);
        /* blocks whose largest magnitude comes twice, with both signs, in both orders (which
         * one sets a Q4_0 scale is the rounding's choice), and a block of zeros */
        float *wq = parlm_gpt_params(m) + parlm_gpt_get_config(m).vocab_pad * 32 + 32;
        wq[0] = -0.5f, wq[1] = 0.5f, wq[32] = 0.5f, wq[33] = -0.5f;
        memset(wq + 64, 0, 32 * sizeof *wq);
        ck_assert_int_eq(parlm_gpt_save_gguf(m, f32, PARLM_WT_F32, NULL, NULL), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_save_gguf(m, q, types[k], NULL, NULL), PARLM_OK);
        parlm_gpt_free(m);
        size_t n;
        uint8_t *raw = read_raw(q, &n);
        parlm_gguf *gf, *gq;
        ck_assert_int_eq(parlm_gguf_open(&gf, f32), PARLM_OK);
        ck_assert_int_eq(parlm_gguf_open(&gq, q), PARLM_OK);
        int64_t blocks = 0, differ = 0;
        for (int64_t i = 0; i < parlm_gguf_num_tensors(gq); i++) {
            const parlm_gguf_tensor *t = parlm_gguf_tensor_at(gq, i);
            if (t->type != types[k])
                continue;
            const parlm_gguf_tensor *w = parlm_gguf_tensor_at(gf, parlm_gguf_find_tensor(gf, t->name));
            ck_assert(w && w->type == PARLM_WT_F32);
            int64_t cnt = (int64_t)(t->ne[0] * t->ne[1]);
            float *x = malloc((size_t)cnt * sizeof *x);
            memcpy(x, w->data, (size_t)cnt * sizeof *x);
            uint8_t *dst = raw + parlm_gguf_data_offset(gq) + t->offset;
            uint8_t *mine = malloc((size_t)t->size);
            ggml_style_quantize(types[k], x, cnt, mine);
            size_t bs = types[k] == PARLM_WT_Q8_0 ? 34 : 18;
            for (int64_t b = 0; b < cnt / 32; b++, blocks++)
                differ += memcmp(mine + b * bs, dst + b * bs, bs) != 0;
            memcpy(dst, mine, (size_t)t->size);
            free(mine);
            free(x);
        }
        parlm_gguf_close(gf);
        parlm_gguf_close(gq);
        write_raw(q, raw, n);
        free(raw);
        ck_assert_int_gt(blocks, 100);
        parlm_gpt *b;
        parlm_gguf_load_info info = {PARLM_WT_F32, -1};
        ck_assert_int_eq(parlm_gpt_load_gguf_ex(&b, q, &info), PARLM_OK);
        ck_assert_int_eq(info.wtype, types[k]);
        ck_assert_msg(info.blocks_exact == 1, "%s: ggml's rounding does not re-quantize to itself "
                      "(%lld of %lld blocks differ from parlm's own)", parlm_wtype_name(types[k]),
                      (long long)differ, (long long)blocks);
        parlm_gpt_free(b);
    }
}
END_TEST

/* parlm_gpt_save_gguf_tok: a Llama model and its tokenizer in one file, read back alike;
 * a tokenizer of another size is refused */
START_TEST(llama_gguf_with_tokenizer)
{
    char path[128];
    snprintf(path, sizeof path, "%s/lt.gguf", dir);
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
                                         "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab"};
    enum { NP = sizeof pieces / sizeof pieces[0] };
    const float scores[NP] = {0, 0, 0, 1, 1, 1, 2, 2, 3};
    const int32_t types[NP] = {2, 3, 3, 1, 1, 1, 1, 1, 1};
    parlm_llama_vocab v = {NP, pieces, NULL, scores, types, 1, 2, 0, -1, 1, 0, 1};
    parlm_tokenizer *tok, *back;
    ck_assert_int_eq(parlm_tokenizer_create_llama(&tok, &v), PARLM_OK);
    parlm_gpt *m = tiny_llama(0);
    ck_assert_int_eq(parlm_gpt_save_gguf_tok(m, path, PARLM_WT_F32, tok), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "9 tokens"));
    parlm_gpt_free(m);
    parlm_gpt_config c = {.n_layer = 1, .n_head = 2, .n_embd = 32, .max_seq = 8, .vocab = NP,
                          .arch = PARLM_ARCH_LLAMA};
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 3), PARLM_OK);
    ck_assert_msg(parlm_gpt_save_gguf_tok(m, path, PARLM_WT_Q8_0, tok) == PARLM_OK, "%s",
                  parlm_last_error());
    ck_assert_int_eq(parlm_tokenizer_load_gguf(&back, path), PARLM_OK);
    int32_t *a, *b;
    size_t na, nb;
    ck_assert_int_eq(parlm_tokenizer_encode_special(tok, "ab a abb", 8, 1, &a, &na), PARLM_OK);
    ck_assert_int_eq(parlm_tokenizer_encode_special(back, "ab a abb", 8, 1, &b, &nb), PARLM_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(a, b, na * sizeof *a) == 0);
    ck_assert_int_eq(b[0], 1); /* BOS */
    ck_assert_int_eq(b[1], 8); /* "\u2581ab" */
    parlm_free(a), parlm_free(b);
    parlm_gpt *l;
    ck_assert_int_eq(parlm_gpt_load_gguf(&l, path), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_get_config(l).vocab, NP);
    parlm_gpt_free(l);
    parlm_gpt_free(m);
    parlm_tokenizer_free(back);
    parlm_tokenizer_free(tok);
}
END_TEST

/* the GPT-2 tokenizer in the file: tokens in GPT-2's byte-to-unicode spelling, merges in
 * rank order, <|endoftext|> a control token and bos/eos */
START_TEST(gpt2_gguf_tokenizer)
{
    const char *sd = getenv("PARLM_SHARED_DATA");
    char enc[512], bpe[512], path[128];
    if (!sd || !*sd)
        return; /* no GPT-2 vocabulary here (configure names the shared data directory) */
    snprintf(enc, sizeof enc, "%s/gpt2/encoder.json", sd);
    snprintf(bpe, sizeof bpe, "%s/gpt2/vocab.bpe", sd);
    if (access(enc, R_OK) != 0)
        return;
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    parlm_gpt_config c = {0};
    ck_assert_int_eq(parlm_gpt_preset("tiny", &c), PARLM_OK);
    c.max_seq = 8;
    c.vocab = 50257;
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_Q8_0, enc, bpe), PARLM_OK);
    parlm_gpt_free(m);
    parlm_gguf *g;
    ck_assert_int_eq(parlm_gguf_open(&g, path), PARLM_OK);
    const char *s;
    size_t len;
    ck_assert_int_eq(parlm_gguf_get_str(g, "tokenizer.ggml.model", &s, &len), PARLM_OK);
    ck_assert(len == 4 && memcmp(s, "gpt2", 4) == 0);
    ck_assert_int_eq(parlm_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), PARLM_OK);
    ck_assert(len == 5 && memcmp(s, "gpt-2", 5) == 0);
    parlm_gguf_type et;
    uint64_t n;
    ck_assert_int_eq(parlm_gguf_kv_type(g, parlm_gguf_find_kv(g, "tokenizer.ggml.tokens"), &et, &n), PARLM_GGUF_ARRAY);
    ck_assert_uint_eq(n, 50257);
    /* encoder.json's own spellings: "!" is 0, "\u0120" (space) starts " the" = 262 */
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &len), PARLM_OK);
    ck_assert(len == 1 && s[0] == '!');
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 262, &s, &len), PARLM_OK);
    ck_assert(len == 5 && memcmp(s, "\xc4\xa0the", 5) == 0);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 50256, &s, &len), PARLM_OK);
    ck_assert(len == 13 && memcmp(s, "<|endoftext|>", 13) == 0);
    ck_assert_int_eq(parlm_gguf_get_arr_str(g, "tokenizer.ggml.merges", 0, &s, &len), PARLM_OK);
    ck_assert(len == 4 && memcmp(s, "\xc4\xa0 t", 4) == 0);
    ck_assert_int_eq(parlm_gguf_kv_type(g, parlm_gguf_find_kv(g, "tokenizer.ggml.merges"), &et, &n), PARLM_GGUF_ARRAY);
    ck_assert_uint_eq(n, 50000);
    const void *p;
    ck_assert_int_eq(parlm_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &p), PARLM_OK);
    int32_t tt[2];
    memcpy(&tt[0], (const int32_t *)p + 0, 4);
    memcpy(&tt[1], (const char *)p + 4 * 50256, 4);
    ck_assert(et == PARLM_GGUF_I32 && tt[0] == 1 && tt[1] == 3);
    uint64_t id;
    ck_assert_int_eq(parlm_gguf_get_uint(g, "tokenizer.ggml.eos_token_id", &id), PARLM_OK);
    ck_assert_uint_eq(id, 50256);
    parlm_gguf_close(g);
    /* a vocabulary that does not match the model's is refused */
    c.vocab = 1000;
    ck_assert_int_eq(parlm_gpt_create(&m, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_save_gguf(m, path, PARLM_WT_F32, enc, bpe), PARLM_EINVAL);
    parlm_gpt_free(m);
}
END_TEST


/* ---- safetensors ------------------------------------------------------------------ */

/* header JSON + data, as Hugging Face lays it out: u64 length, JSON, bytes */
static size_t hand_st(uint8_t *out, const char *json, const void *data, size_t n)
{
    uint64_t hl = strlen(json);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(hl >> (8 * i));
    memcpy(out + 8, json, hl);
    memcpy(out + 8 + hl, data, n);
    return 8 + hl + n;
}

static parlm_status open_st(const char *path, const uint8_t *p, size_t n)
{
    write_raw(path, p, n);
    parlm_safetensors *st;
    parlm_status s = parlm_safetensors_open(&st, path);
    parlm_safetensors_close(s == PARLM_OK ? st : NULL);
    return s;
}

START_TEST(safetensors_hand_assembled_and_corrupt)
{
    char path[128];
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[2] = {0x3c00, 0xc000}; /* f16 1, -2 */
    uint8_t data[28], file[1024];
    memcpy(data, a, 24);
    memcpy(data + 24, b, 4);
    const char *good = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2],"
                       "\"data_offsets\":[24,28]},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t n = hand_st(file, good, data, sizeof data);
    write_raw(path, file, n);
    parlm_safetensors *st;
    ck_assert_int_eq(parlm_safetensors_open(&st, path), PARLM_OK);
    ck_assert_int_eq(parlm_safetensors_num_tensors(st), 2);
    ck_assert_str_eq(parlm_safetensors_meta(st, "format"), "pt");
    ck_assert_ptr_null(parlm_safetensors_meta(st, "nope"));
    const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, "a"));
    ck_assert(t->type == PARLM_WT_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    ck_assert(memcmp(t->data, a, 24) == 0);
    t = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, "b"));
    float y[2];
    ck_assert_int_eq(parlm_dequantize(t->type, t->data, 2, y), PARLM_OK);
    ck_assert(y[0] == 1.0f && y[1] == -2.0f);
    parlm_safetensors_close(st);
    /* every truncation refused, naming the file */
    for (size_t k = 0; k < n; k++) {
        ck_assert_msg(open_st(path, file, k) == PARLM_EFORMAT, "truncated to %zu", k);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "h.safetensors"));
    }
    struct {
        const char *json, *what;
        parlm_status want;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[20,24]}}", "contiguous", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[26,30]}}", "contiguous", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", "cover 24 of the 28", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}", "needs 16", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}", "unsupported dtype I64 for tensor a", PARLM_EUNSUPPORTED},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}", "duplicate", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,24]}}", "overflows", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,24]}}", "shape[0]", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[24,0]}}", "invalid", PARLM_EFORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[0,28]}, \"__metadata__\":{\"x\":1}}", "not a string", PARLM_EFORMAT},
        {"[1,2]", "not an object", PARLM_EFORMAT},
        {"{\"a\":", "header JSON", PARLM_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = hand_st(file, bad[i].json, data, sizeof data);
        ck_assert_int_eq(open_st(path, file, n), bad[i].want);
        ck_assert_msg(strstr(parlm_last_error(), bad[i].what) && strstr(parlm_last_error(), "h.safetensors"),
                      "case %zu: %s", i, parlm_last_error());
    }
    /* a header length beyond the file */
    n = hand_st(file, good, data, sizeof data);
    file[7] = 0x40;
    ck_assert_int_eq(open_st(path, file, n), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "header length"));
}
END_TEST

START_TEST(gpt2_safetensors_round_trip)
{
    char path[128], cfg[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    parlm_gpt *m = tiny_model(300);
    parlm_gpt_config c = parlm_gpt_get_config(m);
    ck_assert_int_eq(parlm_gpt_save_safetensors(m, path, PARLM_WT_F32), PARLM_OK);
    ck_assert_int_eq(access(cfg, R_OK), 0);
    parlm_safetensors *st;
    ck_assert_int_eq(parlm_safetensors_open(&st, path), PARLM_OK);
    ck_assert_int_eq(parlm_safetensors_num_tensors(st), 2 + 12 * c.n_layer + 2);
    ck_assert_uint_eq(parlm_safetensors_tensor_at(st, 0)->offset, 0);
    /* Conv1D: h.1.attn.c_attn.weight is (C, 3C), the transpose of layer 1's qkvw (3C, C) */
    const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, "h.1.attn.c_attn.weight"));
    ck_assert(t && t->n_dims == 2 && t->shape[0] == 64 && t->shape[1] == 192);
    const parlm_st_tensor *f = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, "h.0.mlp.c_proj.weight"));
    ck_assert(f && f->shape[0] == 256 && f->shape[1] == 64);
    const parlm_st_tensor *e = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, "wte.weight"));
    ck_assert(e && e->shape[0] == 300 && e->shape[1] == 64);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *kind;
        int layer;
        int64_t off, cnt;
        parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &cnt);
        if (strcmp(kind, "qkvw") != 0 || layer != 1)
            continue;
        const float *w = parlm_gpt_params(m) + off;
        for (int o = 0; o < 192; o += 7)
            for (int in = 0; in < 64; in += 5) {
                float hf;
                memcpy(&hf, (const char *)t->data + 4 * ((size_t)in * 192 + (size_t)o), 4);
                ck_assert(hf == w[o * 64 + in]);
            }
    }
    parlm_safetensors_close(st);
    parlm_gpt *b;
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_OK);
    parlm_gpt_config cb = parlm_gpt_get_config(b);
    ck_assert(memcmp(&c, &cb, sizeof c) == 0);
    int64_t np = parlm_gpt_num_params(m), pad0 = (int64_t)c.vocab * c.n_embd,
            pad1 = (int64_t)c.vocab_pad * c.n_embd;
    ck_assert(memcmp(parlm_gpt_params(m), parlm_gpt_params(b), (size_t)pad0 * 4) == 0);
    ck_assert(memcmp(parlm_gpt_params(m) + pad1, parlm_gpt_params(b) + pad1, (size_t)(np - pad1) * 4) == 0);
    parlm_gpt_free(b);
    /* bf16: within half a step, 2^-8 of the value (8 significant bits) */
    ck_assert_int_eq(parlm_gpt_save_safetensors(m, path, PARLM_WT_BF16), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_OK);
    const float *x = parlm_gpt_params(m), *y = parlm_gpt_params(b);
    for (int64_t i = pad1; i < np; i++)
        ck_assert(fabsf(x[i] - y[i]) <= fabsf(x[i]) * (1.0f / 256));
    parlm_gpt_free(b);
    ck_assert_int_eq(parlm_gpt_save_safetensors(m, path, PARLM_WT_Q8_0), PARLM_EINVAL);
    /* config.json: missing, or another model */
    unlink(cfg);
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "config.json"));
    write_raw(cfg, "{\"model_type\": \"mistral\"}", 25);
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "mistral"));
    write_raw(cfg, "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 64, \"n_positions\": 32, \"vocab_size\": 299}", 101);
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "wte.weight"));
    write_raw(cfg, "{\"model_type\": \"gpt2\", \"n_layer\": 900, \"n_head\": 2, \"n_embd\": 64, \"n_positions\": 32, \"vocab_size\": 300}", 103);
    ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_EFORMAT);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "config.json describes"));
    parlm_gpt_free(m);
}
END_TEST

/* ---- Llama and sharded safetensors -------------------------------------------------- */

/* every weight random (norms too, so a misplaced one shows), the padding rows 0 */
static void scramble(parlm_gpt *m, uint64_t seed)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    float *p = parlm_gpt_params(m);
    tu_fill(p, parlm_gpt_num_params(m), seed);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *kind;
        int layer;
        int64_t off, cnt;
        parlm_gpt_tensor_info(m, i, &kind, &layer, &off, &cnt);
        if (strcmp(kind, "wte") == 0 || strcmp(kind, "lm_head") == 0)
            memset(p + off + (int64_t)c.vocab * c.n_embd, 0,
                   (size_t)(c.vocab_pad - c.vocab) * (size_t)c.n_embd * sizeof(float));
    }
}

static const float *tensor_of(parlm_gpt *m, const char *kind, int layer)
{
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        const char *k;
        int l;
        int64_t off, cnt;
        parlm_gpt_tensor_info(m, i, &k, &l, &off, &cnt);
        if (strcmp(k, kind) == 0 && l == layer)
            return parlm_gpt_params(m) + off;
    }
    return NULL;
}

static void assert_same_model(parlm_gpt *a, parlm_gpt *b)
{
    parlm_gpt_config ca = parlm_gpt_get_config(a), cb = parlm_gpt_get_config(b);
    ck_assert(memcmp(&ca, &cb, sizeof ca) == 0);
    ck_assert_int_eq(parlm_gpt_num_params(a), parlm_gpt_num_params(b));
    ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(b), (size_t)parlm_gpt_num_params(a) * 4) == 0);
}

static char *slurp(const char *path)
{
    size_t n;
    char *t = (char *)read_raw(path, &n);
    t[n] = 0;
    return t;
}

/* path's text with `from` (which must be there) replaced by `to` */
static void edit(const char *path, const char *orig, const char *from, const char *to)
{
    const char *hit = strstr(orig, from);
    ck_assert_msg(hit != NULL, "'%s' not in %s", from, path);
    size_t a = (size_t)(hit - orig), fl = strlen(from), tl = strlen(to), n = strlen(orig);
    char *t = malloc(n - fl + tl + 1);
    memcpy(t, orig, a);
    memcpy(t + a, to, tl);
    memcpy(t + a + tl, hit + fl, n - a - fl + 1);
    write_raw(path, t, strlen(t));
    free(t);
}

/* loading path fails with code and a message holding both needles */
static void expect_load_error(const char *path, parlm_status code, const char *n1, const char *n2)
{
    parlm_gpt *b = NULL;
    parlm_status s = parlm_gpt_load_safetensors(&b, path);
    ck_assert_msg(s == code && strstr(parlm_last_error(), n1) && strstr(parlm_last_error(), n2),
                  "expected %d '%s' '%s', got %d: %s", code, n1, n2, s, s ? parlm_last_error() : "ok");
    ck_assert_ptr_null(b);
}

/* A Llama model as LlamaForCausalLM: HF's names and shapes, q_proj and k_proj rows
 * permuted within each head (parlm's row 2p + j is HF's row j hs/2 + p: transformers'
 * `permute`, written out here independently of the library), the config.json keys; read
 * back bit for bit, tied (no lm_head.weight) and untied, GQA; bf16 within half a step. */
START_TEST(llama_safetensors_round_trip)
{
    char path[128], cfg[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    for (int untied = 0; untied <= 1; untied++) {
        parlm_gpt *m = tiny_llama(untied);
        scramble(m, 11 + (uint64_t)untied);
        ck_assert_msg(parlm_gpt_save_safetensors(m, path, PARLM_WT_F32) == PARLM_OK, "%s",
                      parlm_last_error());
        parlm_safetensors *st;
        ck_assert_int_eq(parlm_safetensors_open(&st, path), PARLM_OK);
        ck_assert_int_eq(parlm_safetensors_num_tensors(st), 1 + 9 * 2 + 1 + untied);
        ck_assert_int_eq(parlm_safetensors_find(st, "lm_head.weight") >= 0, untied);
        struct {
            const char *name;
            uint64_t s0, s1;
        } want[] = {{"model.embed_tokens.weight", 70, 32},
                    {"model.layers.0.input_layernorm.weight", 32, 0},
                    {"model.layers.1.self_attn.q_proj.weight", 32, 32},
                    {"model.layers.1.self_attn.k_proj.weight", 16, 32},
                    {"model.layers.0.self_attn.v_proj.weight", 16, 32},
                    {"model.layers.0.self_attn.o_proj.weight", 32, 32},
                    {"model.layers.1.post_attention_layernorm.weight", 32, 0},
                    {"model.layers.0.mlp.gate_proj.weight", 48, 32},
                    {"model.layers.1.mlp.up_proj.weight", 48, 32},
                    {"model.layers.1.mlp.down_proj.weight", 32, 48},
                    {"model.norm.weight", 32, 0}};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            const parlm_st_tensor *t = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, want[i].name));
            ck_assert_msg(t && t->n_dims == (want[i].s1 ? 2 : 1) && t->shape[0] == want[i].s0 &&
                              (!want[i].s1 || t->shape[1] == want[i].s1), "%s", want[i].name);
        }
        /* q: 4 heads of 8 rows; k: 2 heads; v is copied as is */
        static const struct { const char *kind, *hf; int heads; } perm[] = {
            {"wq", "model.layers.1.self_attn.q_proj.weight", 4},
            {"wk", "model.layers.1.self_attn.k_proj.weight", 2},
            {"wv", "model.layers.1.self_attn.v_proj.weight", 0}};
        for (int k = 0; k < 3; k++) {
            const float *w = tensor_of(m, perm[k].kind, 1);
            const float *hf = parlm_safetensors_tensor_at(st, parlm_safetensors_find(st, perm[k].hf))->data;
            int heads = perm[k].heads ? perm[k].heads : 2;
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < 4; p++)
                    for (int j = 0; j < 2; j++) {
                        int meta = h * 8 + 2 * p + j, row = perm[k].heads ? h * 8 + j * 4 + p : meta;
                        ck_assert_msg(memcmp(hf + row * 32, w + meta * 32, 32 * 4) == 0,
                                      "%s row %d", perm[k].hf, row);
                    }
        }
        parlm_safetensors_close(st);
        char *text = slurp(cfg);
        static const char *const keys[] = {"\"LlamaForCausalLM\"", "\"model_type\": \"llama\"",
            "\"hidden_size\": 32", "\"intermediate_size\": 48", "\"num_attention_heads\": 4",
            "\"num_key_value_heads\": 2", "\"num_hidden_layers\": 2", "\"hidden_act\": \"silu\"",
            "\"max_position_embeddings\": 16", "\"rms_norm_eps\": 1e-6", "\"rope_theta\": 500000.0",
            "\"rope_type\": \"linear\"", "\"factor\": 2.0", "\"vocab_size\": 70",
            "\"torch_dtype\": \"float32\""};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            ck_assert_msg(strstr(text, keys[i]), "config.json has no %s:\n%s", keys[i], text);
        ck_assert_ptr_nonnull(strstr(text, untied ? "\"tie_word_embeddings\": false" : "\"tie_word_embeddings\": true"));
        free(text);
        parlm_gpt *b;
        ck_assert_msg(parlm_gpt_load_safetensors(&b, path) == PARLM_OK, "%s", parlm_last_error());
        assert_same_model(m, b);
        parlm_gpt_free(b);
        /* bf16: within half a step, 2^-8 of the value */
        ck_assert_int_eq(parlm_gpt_save_safetensors(m, path, PARLM_WT_BF16), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_load_safetensors(&b, path), PARLM_OK);
        const float *x = parlm_gpt_params(m), *y = parlm_gpt_params(b);
        for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
            ck_assert(fabsf(x[i] - y[i]) <= fabsf(x[i]) * (1.0f / 256));
        parlm_gpt_free(b);
        parlm_gpt_free(m);
    }
}
END_TEST

/* Sharded as save_pretrained does it: HF's file names, a tensor larger than the limit
 * alone in its shard, the index written; read back bit for bit from the directory and from
 * the index, GPT-2 and Llama; one shard is a plain model.safetensors without an index. */
START_TEST(safetensors_sharded_round_trip)
{
    char sub[128], p[256];
    for (int k = 0; k < 3; k++) {
        parlm_gpt *m = k == 0 ? tiny_model(300) : tiny_llama(k == 2);
        scramble(m, 21 + (uint64_t)k);
        snprintf(sub, sizeof sub, "%s/s%d", dir, k);
        /* 1 byte: every tensor in a shard of its own */
        int ns = 0, nt = parlm_gpt_num_tensors(m);
        ck_assert_msg(parlm_gpt_save_safetensors_sharded(m, sub, PARLM_WT_F32, 1, &ns) == PARLM_OK,
                      "%s", parlm_last_error());
        ck_assert_int_eq(ns, nt);
        snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", sub, nt, nt);
        ck_assert_int_eq(access(p, R_OK), 0);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", sub);
        char *text = slurp(p);
        ck_assert_ptr_nonnull(strstr(text, "\"total_size\""));
        ck_assert_ptr_nonnull(strstr(text, k ? "\"model.norm.weight\": \"model-" : "\"ln_f.bias\": \"model-"));
        free(text);
        parlm_gpt *b;
        ck_assert_msg(parlm_gpt_load_safetensors(&b, sub) == PARLM_OK, "%s", parlm_last_error());
        assert_same_model(m, b);
        parlm_gpt_free(b);
        ck_assert_msg(parlm_gpt_load_safetensors(&b, p) == PARLM_OK, "%s", parlm_last_error());
        assert_same_model(m, b);
        parlm_gpt_free(b);
        /* 8000 bytes: several tensors a shard, none over the limit unless alone */
        snprintf(sub, sizeof sub, "%s/t%d", dir, k);
        ck_assert_int_eq(parlm_gpt_save_safetensors_sharded(m, sub, PARLM_WT_F32, 8000, &ns), PARLM_OK);
        ck_assert(ns > 1 && ns < nt);
        for (int i = 1; i <= ns; i++) {
            snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", sub, i, ns);
            parlm_safetensors *st;
            ck_assert_int_eq(parlm_safetensors_open(&st, p), PARLM_OK);
            uint64_t bytes = 0;
            for (int64_t j = 0; j < parlm_safetensors_num_tensors(st); j++)
                bytes += parlm_safetensors_tensor_at(st, j)->size;
            ck_assert(bytes <= 8000 || parlm_safetensors_num_tensors(st) == 1);
            parlm_safetensors_close(st);
        }
        ck_assert_int_eq(parlm_gpt_load_safetensors(&b, sub), PARLM_OK);
        assert_same_model(m, b);
        parlm_gpt_free(b);
        /* no limit, into the same directory: one model.safetensors, the stale index removed */
        snprintf(sub, sizeof sub, "%s/t%d", dir, k);
        ck_assert_int_eq(parlm_gpt_save_safetensors_sharded(m, sub, PARLM_WT_F32, 0, &ns), PARLM_OK);
        ck_assert_int_eq(ns, 1);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", sub);
        ck_assert_int_ne(access(p, F_OK), 0);
        ck_assert_int_eq(parlm_gpt_load_safetensors(&b, sub), PARLM_OK);
        assert_same_model(m, b);
        parlm_gpt_free(b);
        parlm_gpt_free(m);
    }
}
END_TEST

/* A bad shard or index is an error naming the file and what is wrong with it */
START_TEST(safetensors_bad_shards_and_index)
{
    char sub[128], idx[192], p[256], q[256];
    snprintf(sub, sizeof sub, "%s/m", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", sub);
    parlm_gpt *m = tiny_llama(1);
    int ns;
    ck_assert_int_eq(parlm_gpt_save_safetensors_sharded(m, sub, PARLM_WT_F32, 8000, &ns), PARLM_OK);
    ck_assert_int_ge(ns, 3);
    char *good = slurp(idx);
    char s2[64], s3[64];
    snprintf(s2, sizeof s2, "model-00002-of-%05d.safetensors", ns);
    snprintf(s3, sizeof s3, "model-00003-of-%05d.safetensors", ns);
    /* a truncated shard */
    snprintf(p, sizeof p, "%s/%s", sub, s2);
    size_t n;
    uint8_t *bytes = read_raw(p, &n);
    write_raw(p, bytes, n - 4);
    expect_load_error(sub, PARLM_EFORMAT, s2, "");
    /* a shard gone */
    ck_assert_int_eq(unlink(p), 0);
    expect_load_error(sub, PARLM_EIO, s2, "");
    write_raw(p, bytes, n);
    free(bytes);
    parlm_gpt *b;
    ck_assert_msg(parlm_gpt_load_safetensors(&b, sub) == PARLM_OK, "%s", parlm_last_error());
    parlm_gpt_free(b);
    /* the index maps a tensor to a shard without it */
    parlm_safetensors *st;
    ck_assert_int_eq(parlm_safetensors_open(&st, p), PARLM_OK);
    char t2[96];
    snprintf(t2, sizeof t2, "\"%s\": \"%s\"", parlm_safetensors_tensor_at(st, 0)->name, s2);
    parlm_safetensors_close(st);
    char t3[160];
    snprintf(t3, sizeof t3, "%.*s\"%s\"", (int)(strchr(t2, ':') - t2 + 2), t2, s3);
    edit(idx, good, t2, t3);
    expect_load_error(idx, PARLM_EFORMAT, s3, "is missing");
    /* a shard holds a tensor the index does not list */
    char gone[160];
    snprintf(gone, sizeof gone, "%s,", t2);
    edit(idx, good, gone, "");
    expect_load_error(sub, PARLM_EFORMAT, s2, "not in");
    /* a tensor in two shards: an extra shard with a copy of model.norm.weight */
    parlm_safetensors_writer *w;
    float v[32] = {0};
    uint64_t shape[1] = {32};
    ck_assert_int_eq(parlm_safetensors_writer_create(&w), PARLM_OK);
    ck_assert_int_eq(parlm_safetensors_add(w, "model.norm.weight", PARLM_WT_F32, 1, shape, v), PARLM_OK);
    ck_assert_int_eq(parlm_safetensors_add(w, "extra", PARLM_WT_F32, 1, shape, v), PARLM_OK);
    snprintf(q, sizeof q, "%s/extra.safetensors", sub);
    ck_assert_int_eq(parlm_safetensors_write(w, q), PARLM_OK);
    parlm_safetensors_writer_free(w);
    edit(idx, good, "\"weight_map\": {", "\"weight_map\": {\"extra\": \"extra.safetensors\",");
    expect_load_error(sub, PARLM_EFORMAT, "extra.safetensors", "duplicated");
    /* the index itself */
    static const struct { const char *from, *to, *what; } bad[] = {
        {"\"weight_map\": {", "\"weight_map\": {\"x\": \"../x.safetensors\",", "not a file name"},
        {"\"weight_map\": {", "\"weight_map\": {\"x\": 3,", "not a file name"},
        {"\"weight_map\"", "\"weight_mop\"", "weight_map"},
        {"\"total_size\": ", "\"total_size\": -", "metadata.total_size"},
        {"{", "[", "model.safetensors.index.json"},
        {"\"weight_map\": {", "\"weight_map\": {}, \"wm\": {", "empty"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        edit(idx, good, bad[i].from, bad[i].to);
        expect_load_error(idx, PARLM_EFORMAT, "model.safetensors.index.json", bad[i].what);
    }
    write_raw(idx, good, strlen(good));
    free(good);
    /* config.json: each bad field named */
    snprintf(p, sizeof p, "%s/config.json", sub);
    char *cfg = slurp(p);
    static const struct { const char *from, *to, *what; parlm_status code; } bc[] = {
        {"\"silu\"", "\"gelu\"", "hidden_act", PARLM_EUNSUPPORTED},
        {"\"rope_scaling\": {", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}, \"x\": {",
         "yarn", PARLM_EUNSUPPORTED},
        {"\"rope_scaling\": {", "\"rope_scaling\": {\"type\": \"linear\", \"rope_type\": \"dynamic\"}, \"x\": {",
         "rope_type", PARLM_EFORMAT},
        {"\"factor\": 2.0", "\"factor\": 0.5", "factor", PARLM_EFORMAT},
        {"\"head_dim\": 8", "\"head_dim\": 16", "head_dim", PARLM_EUNSUPPORTED},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "num_key_value_heads", PARLM_EFORMAT},
        {"\"hidden_size\": 32", "\"hidden_size\": \"32\"", "hidden_size", PARLM_EFORMAT},
        {"\"rms_norm_eps\": ", "\"rms_norm_eps\": -", "rms_norm_eps", PARLM_EFORMAT},
        {"\"rope_theta\": 500000.0", "\"rope_theta\": true", "rope_theta", PARLM_EFORMAT},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", "tie_word_embeddings", PARLM_EFORMAT},
        {"\"attention_bias\": false", "\"attention_bias\": true", "attention_bias", PARLM_EUNSUPPORTED},
        {"\"rope_scaling\": {", "\"rope_scaling\": 3, \"x\": {", "rope_scaling", PARLM_EFORMAT},
        {"\"model_type\": \"llama\"", "\"model_type\": \"llama\", \"model_type\": \"gpt2\"", "duplicate", PARLM_EFORMAT},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 900", "config.json describes", PARLM_EFORMAT}};
    for (size_t i = 0; i < sizeof bc / sizeof bc[0]; i++) {
        edit(p, cfg, bc[i].from, bc[i].to);
        expect_load_error(sub, bc[i].code, "config.json", bc[i].what);
    }
    /* a config that does not fit the tensors: the shard and the tensor named */
    edit(p, cfg, "\"vocab_size\": 70", "\"vocab_size\": 69");
    expect_load_error(sub, PARLM_EFORMAT, "model-00001-of-", "model.embed_tokens.weight has the wrong shape");
    /* rope_scaling null: no scaling */
    edit(p, cfg, "\"rope_scaling\": {", "\"rope_scaling\": null, \"x\": {");
    ck_assert_msg(parlm_gpt_load_safetensors(&b, sub) == PARLM_OK, "%s", parlm_last_error());
    ck_assert(parlm_gpt_get_config(b).rope_scale == 1.0f && parlm_gpt_get_config(b).untied_head == 1);
    parlm_gpt_free(b);
    /* only the required keys: LlamaConfig's defaults (theta 10000, eps 1e-6, untied) */
    static const char minimal[] = "{\"model_type\": \"llama\", \"hidden_size\": 32, "
        "\"intermediate_size\": 48, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
        "\"num_hidden_layers\": 2, \"max_position_embeddings\": 16, \"vocab_size\": 70}";
    write_raw(p, minimal, sizeof minimal - 1);
    ck_assert_msg(parlm_gpt_load_safetensors(&b, sub) == PARLM_OK, "%s", parlm_last_error());
    parlm_gpt_config cm = parlm_gpt_get_config(b);
    ck_assert(cm.arch == PARLM_ARCH_LLAMA && cm.n_kv_head == 2 && cm.untied_head == 1 &&
              cm.rope_theta == 10000.0f && cm.rope_scale == 1.0f && cm.norm_eps == 1e-6f);
    ck_assert(memcmp(parlm_gpt_params(m), parlm_gpt_params(b), (size_t)parlm_gpt_num_params(m) * 4) == 0);
    parlm_gpt_free(b);
    free(cfg);
    parlm_gpt_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("formats");
    TCase *tc = tcase_create("conversions");
    tcase_add_test(tc, f16_exhaustive);
    tcase_add_test(tc, bf16_nearest);
    tcase_add_test(tc, q8_0_error_bound);
    tcase_add_test(tc, q4_0_error_bound_and_layout);
    tcase_add_test(tc, wtype_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("gguf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, gguf_reads_hand_assembled_file);
    tcase_add_test(tc, gguf_truncation_and_bit_flips);
    tcase_add_test(tc, gguf_corrupt_fields);
    tcase_add_test(tc, gguf_write_read_all_types);
    tcase_add_test(tc, gpt2_gguf_round_trip_f32);
    tcase_add_test(tc, gpt2_gguf_quantized);
    tcase_add_test(tc, gpt2_gguf_refuses_other_models);
    tcase_add_test(tc, gpt2_gguf_tokenizer);
    tcase_add_test(tc, llama_gguf_round_trip);
    tcase_add_test(tc, llama_gguf_quantized);
    tcase_add_test(tc, gguf_decode_blocks_exact);
    tcase_add_test(tc, gguf_ggml_rounding_is_exact);
    tcase_add_test(tc, llama_gguf_with_tokenizer);
    suite_add_tcase(s, tc);
    tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, safetensors_hand_assembled_and_corrupt);
    tcase_add_test(tc, gpt2_safetensors_round_trip);
    tcase_add_test(tc, llama_safetensors_round_trip);
    tcase_add_test(tc, safetensors_sharded_round_trip);
    tcase_add_test(tc, safetensors_bad_shards_and_index);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
