/* lib/core/quant.c — scalar reference conversions between f32 and the stored weight types
 * (f16, bf16, ggml's Q8_0 and Q4_0 blocks). Plain loops on purpose: these define what
 * the formats mean, and faster kernels are checked against them. Q8_0/Q4_0 follow ggml's
 * reference quantizer exactly (scale from the f32 maximum, stored as f16), so files
 * written here hold the same bytes llama.cpp would write for the same weights. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "../../base/error.h"
#include "parlm/quant.h"

const char *parlm_wtype_name(int type)
{
    switch (type) {
    case PARLM_WT_F32: return "f32";
    case PARLM_WT_F16: return "f16";
    case PARLM_WT_BF16: return "bf16";
    case PARLM_WT_Q8_0: return "q8_0";
    case PARLM_WT_Q4_0: return "q4_0";
    default: return NULL;
    }
}

parlm_status parlm_wtype_parse(const char *s, parlm_wtype *type)
{
    static const parlm_wtype all[] = {PARLM_WT_F32, PARLM_WT_F16, PARLM_WT_BF16, PARLM_WT_Q8_0,
                                      PARLM_WT_Q4_0};
    if (!s || !type)
        return parlm_error(PARLM_EINVAL, "parlm_wtype_parse: null argument");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcasecmp(s, parlm_wtype_name(all[i])) == 0) {
            *type = all[i];
            return PARLM_OK;
        }
    return parlm_error(PARLM_EINVAL, "unknown weight type '%s' (f32, f16, bf16, q8_0, q4_0)", s);
}

parlm_status parlm_wtype_bytes(int type, uint64_t n, uint64_t *bytes)
{
    uint64_t per, blk;
    switch (type) {
    case PARLM_WT_F32: per = 4, blk = 1; break;
    case PARLM_WT_F16:
    case PARLM_WT_BF16: per = 2, blk = 1; break;
    case PARLM_WT_Q8_0: per = 2 + PARLM_QBLOCK, blk = PARLM_QBLOCK; break;
    case PARLM_WT_Q4_0: per = 2 + PARLM_QBLOCK / 2, blk = PARLM_QBLOCK; break;
    default: return parlm_error(PARLM_EUNSUPPORTED, "unsupported tensor type %d", type);
    }
    if (n % blk)
        return parlm_error(PARLM_EINVAL, "%s needs a multiple of %llu elements, got %llu",
                           parlm_wtype_name(type), (unsigned long long)blk, (unsigned long long)n);
    if (n / blk > UINT64_MAX / per)
        return parlm_error(PARLM_ENOMEM, "%llu %s elements overflow a 64-bit size",
                           (unsigned long long)n, parlm_wtype_name(type));
    *bytes = n / blk * per;
    return PARLM_OK;
}

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t parlm_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) /* NaN: keep it quiet and nonzero */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000) { /* below the smallest normal half (2^-14): subnormal or zero */
        /* value = a_float; half subnormal unit is 2^-24: round(x * 2^24) to even */
        float f = bits_f32(a) * 16777216.0f; /* exact: power-of-two scale, no overflow */
        float r = nearbyintf(f);             /* default rounding mode: to nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* normal: rebias the exponent, round the 23-bit mantissa to 10 bits (nearest even) */
    uint32_t m = a + 0xC8000000u; /* exponent - 112 (127 - 15) in bits 23.. */
    uint32_t lsb = (m >> 13) & 1;
    m += 0xfff + lsb;
    return (uint16_t)(sign | (m >> 13));
}

float parlm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) /* zero or subnormal: m * 2^-24, exact in f32 */
        return bits_f32(sign) + (sign ? -1.0f : 1.0f) * (float)m * 5.9604644775390625e-8f;
    if (e == 31)
        return bits_f32(sign | 0x7f800000 | (m << 13));
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t parlm_f32_to_bf16_scalar(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float parlm_bf16_to_f32_scalar(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* one Q8_0 block: x (32) -> p (34 bytes) */
static void q8_0_block(const float *x, uint8_t *p)
{
    float amax = 0.0f;
    for (int j = 0; j < PARLM_QBLOCK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(p, parlm_f32_to_f16(d));
    for (int j = 0; j < PARLM_QBLOCK; j++)
        p[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* one Q4_0 block: x (32) -> p (18 bytes) */
static void q4_0_block(const float *x, uint8_t *p)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < PARLM_QBLOCK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(p, parlm_f32_to_f16(d));
    for (int j = 0; j < PARLM_QBLOCK / 2; j++) {
        /* x*id lies in [-8, 8]: +8.5 then truncation rounds half up into [0, 16] */
        int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
        lo = lo > 15 ? 15 : lo;
        hi = hi > 15 ? 15 : hi;
        p[2 + j] = (uint8_t)(lo | hi << 4);
    }
}

parlm_status parlm_quantize(int type, const float *x, int64_t n, void *out)
{
    uint64_t bytes;
    if (!x || !out || n < 0)
        return parlm_error(PARLM_EINVAL, "parlm_quantize: null buffer or negative count");
    parlm_status s = parlm_wtype_bytes(type, (uint64_t)n, &bytes);
    if (s)
        return s;
    uint8_t *p = out;
    switch (type) {
    case PARLM_WT_F32: memcpy(out, x, (size_t)n * 4); break;
    case PARLM_WT_F16:
        for (int64_t i = 0; i < n; i++)
            put16(p + 2 * i, parlm_f32_to_f16(x[i]));
        break;
    case PARLM_WT_BF16:
        for (int64_t i = 0; i < n; i++)
            put16(p + 2 * i, parlm_f32_to_bf16_scalar(x[i]));
        break;
    case PARLM_WT_Q8_0:
    case PARLM_WT_Q4_0:
        /* a block scale and its rounding need finite values (a NaN or infinity would
         * reach a float-to-integer conversion that has no defined result) */
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return parlm_error(PARLM_EINVAL, "parlm_quantize: x[%lld] is %g: %s blocks hold "
                                   "finite values only", (long long)i, (double)x[i],
                                   parlm_wtype_name(type));
        for (int64_t b = 0; b < n / PARLM_QBLOCK; b++) {
            if (type == PARLM_WT_Q8_0)
                q8_0_block(x + b * PARLM_QBLOCK, p + b * (2 + PARLM_QBLOCK));
            else
                q4_0_block(x + b * PARLM_QBLOCK, p + b * (2 + PARLM_QBLOCK / 2));
        }
        break;
    }
    return PARLM_OK;
}

parlm_status parlm_dequantize(int type, const void *in, int64_t n, float *out)
{
    uint64_t bytes;
    if (!in || !out || n < 0)
        return parlm_error(PARLM_EINVAL, "parlm_dequantize: null buffer or negative count");
    parlm_status s = parlm_wtype_bytes(type, (uint64_t)n, &bytes);
    if (s)
        return s;
    const uint8_t *p = in;
    switch (type) {
    case PARLM_WT_F32: memcpy(out, in, (size_t)n * 4); break;
    case PARLM_WT_F16:
        for (int64_t i = 0; i < n; i++)
            out[i] = parlm_f16_to_f32(get16(p + 2 * i));
        break;
    case PARLM_WT_BF16:
        for (int64_t i = 0; i < n; i++)
            out[i] = parlm_bf16_to_f32_scalar(get16(p + 2 * i));
        break;
    case PARLM_WT_Q8_0:
        for (int64_t b = 0; b < n / PARLM_QBLOCK; b++) {
            const uint8_t *q = p + b * (2 + PARLM_QBLOCK);
            float d = parlm_f16_to_f32(get16(q));
            for (int j = 0; j < PARLM_QBLOCK; j++)
                out[b * PARLM_QBLOCK + j] = d * (float)(int8_t)q[2 + j];
        }
        break;
    case PARLM_WT_Q4_0:
        for (int64_t b = 0; b < n / PARLM_QBLOCK; b++) {
            const uint8_t *q = p + b * (2 + PARLM_QBLOCK / 2);
            float d = parlm_f16_to_f32(get16(q));
            float *o = out + b * PARLM_QBLOCK;
            for (int j = 0; j < PARLM_QBLOCK / 2; j++) {
                o[j] = d * (float)((q[2 + j] & 0xf) - 8);
                o[j + 16] = d * (float)((q[2 + j] >> 4) - 8);
            }
        }
        break;
    }
    return PARLM_OK;
}
