/* core/types.c - the element type table and scalar conversions. */
#include "core.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Block sizes and bytes per block are ggml's (ggml.c type_traits); the safetensors-only
 * types are plain scalars. */
static const pare_type_info type_table[PARE_TYPE_COUNT] = {
    [PARE_TYPE_F32] = {"f32", "F32", 1, 4, false, true},
    [PARE_TYPE_F16] = {"f16", "F16", 1, 2, false, true},
    [PARE_TYPE_Q4_0] = {"q4_0", NULL, 32, 18, true, false},
    [PARE_TYPE_Q4_1] = {"q4_1", NULL, 32, 20, true, false},
    [PARE_TYPE_Q5_0] = {"q5_0", NULL, 32, 22, true, false},
    [PARE_TYPE_Q5_1] = {"q5_1", NULL, 32, 24, true, false},
    [PARE_TYPE_Q8_0] = {"q8_0", NULL, 32, 34, true, false},
    [PARE_TYPE_Q8_1] = {"q8_1", NULL, 32, 36, true, false},
    [PARE_TYPE_Q2_K] = {"q2_K", NULL, 256, 84, true, false},
    [PARE_TYPE_Q3_K] = {"q3_K", NULL, 256, 110, true, false},
    [PARE_TYPE_Q4_K] = {"q4_K", NULL, 256, 144, true, false},
    [PARE_TYPE_Q5_K] = {"q5_K", NULL, 256, 176, true, false},
    [PARE_TYPE_Q6_K] = {"q6_K", NULL, 256, 210, true, false},
    [PARE_TYPE_Q8_K] = {"q8_K", NULL, 256, 292, true, false},
    [PARE_TYPE_IQ2_XXS] = {"iq2_xxs", NULL, 256, 66, true, false},
    [PARE_TYPE_IQ2_XS] = {"iq2_xs", NULL, 256, 74, true, false},
    [PARE_TYPE_IQ3_XXS] = {"iq3_xxs", NULL, 256, 98, true, false},
    [PARE_TYPE_IQ1_S] = {"iq1_s", NULL, 256, 50, true, false},
    [PARE_TYPE_IQ4_NL] = {"iq4_nl", NULL, 32, 18, true, false},
    [PARE_TYPE_IQ3_S] = {"iq3_s", NULL, 256, 110, true, false},
    [PARE_TYPE_IQ2_S] = {"iq2_s", NULL, 256, 82, true, false},
    [PARE_TYPE_IQ4_XS] = {"iq4_xs", NULL, 256, 136, true, false},
    [PARE_TYPE_I8] = {"i8", "I8", 1, 1, false, false},
    [PARE_TYPE_I16] = {"i16", "I16", 1, 2, false, false},
    [PARE_TYPE_I32] = {"i32", "I32", 1, 4, false, false},
    [PARE_TYPE_I64] = {"i64", "I64", 1, 8, false, false},
    [PARE_TYPE_F64] = {"f64", "F64", 1, 8, false, true},
    [PARE_TYPE_IQ1_M] = {"iq1_m", NULL, 256, 56, true, false},
    [PARE_TYPE_BF16] = {"bf16", "BF16", 1, 2, false, true},
    [PARE_TYPE_TQ1_0] = {"tq1_0", NULL, 256, 54, true, false},
    [PARE_TYPE_TQ2_0] = {"tq2_0", NULL, 256, 66, true, false},
    [PARE_TYPE_BOOL] = {"bool", "BOOL", 1, 1, false, false},
    [PARE_TYPE_U8] = {"u8", "U8", 1, 1, false, false},
    [PARE_TYPE_U16] = {"u16", "U16", 1, 2, false, false},
    [PARE_TYPE_U32] = {"u32", "U32", 1, 4, false, false},
    [PARE_TYPE_U64] = {"u64", "U64", 1, 8, false, false},
    [PARE_TYPE_F8_E4M3] = {"f8_e4m3", "F8_E4M3", 1, 1, false, true},
    [PARE_TYPE_F8_E5M2] = {"f8_e5m2", "F8_E5M2", 1, 1, false, true},
};

const pare_type_info *pare_type_get(int type) {
    if (type < 0 || type >= PARE_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

bool pare_type_valid(int type) { return pare_type_get(type) != NULL; }

pare_type pare_type_from_name(const char *name) {
    if (!name) return PARE_TYPE_INVALID;
    for (int i = 0; i < PARE_TYPE_COUNT; i++)
        if (type_table[i].name && strcasecmp(type_table[i].name, name) == 0) return (pare_type)i;
    return pare_type_from_st_name(name);
}

pare_type pare_type_from_st_name(const char *st_name) {
    if (!st_name) return PARE_TYPE_INVALID;
    for (int i = 0; i < PARE_TYPE_COUNT; i++)
        if (type_table[i].st_name && strcmp(type_table[i].st_name, st_name) == 0) return (pare_type)i;
    return PARE_TYPE_INVALID;
}

const char *pare_type_name(pare_type t) {
    const pare_type_info *ti = pare_type_get(t);
    return ti ? ti->name : "?";
}

size_t pare_type_row_size(pare_type t, int64_t ne0) {
    const pare_type_info *ti = pare_type_get(t);
    if (!ti || ne0 < 0 || ne0 % ti->block_size) return 0;
    return (size_t)(ne0 / ti->block_size) * ti->type_size;
}

/* ---- half precision. Rounding is to nearest, ties to even, as F16C and numpy do. */

uint16_t pare_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); /* NaN stays NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds to infinity */
    if (ax < 0x38800000u) {
        /* Below 2^-14 the half is subnormal: adding 0.5 puts the float's last mantissa
         * bit at 2^-24, the half's subnormal step, and the FPU rounds to even for us. */
        float af;
        memcpy(&af, &ax, 4);
        af += 0.5f;
        uint32_t r;
        memcpy(&r, &af, 4);
        return sign | (uint16_t)(r - 0x3f000000u);
    }
    uint32_t odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + odd; /* rebias the exponent by -112 and round the 13 dropped bits */
    return sign | (uint16_t)(ax >> 13);
}

float pare_fp16_to_fp32_soft(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

uint16_t pare_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1))) >> 16);
}

float pare_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* F8 E4M3 "fn": bias 7, no infinities, 0x7f / 0xff are NaN. */
float pare_f8e4m3_to_fp32(uint8_t v) {
    float sign = (v & 0x80) ? -1.0f : 1.0f;
    int e = (v >> 3) & 0xf, m = v & 7;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) return sign * ldexpf((float)m, -9);
    return sign * ldexpf(1.0f + (float)m / 8.0f, e - 7);
}

/* F8 E5M2: the top byte of an IEEE half. */
float pare_f8e5m2_to_fp32(uint8_t v) { return pare_fp16_to_fp32((uint16_t)(v << 8)); }

bool pare_plain_to_f32(pare_type t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (t) {
    case PARE_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case PARE_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pare_fp16_to_fp32(h);
        }
        return true;
    case PARE_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pare_bf16_to_fp32(h);
        }
        return true;
    case PARE_TYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return true;
    case PARE_TYPE_F8_E4M3:
        for (int64_t i = 0; i < n; i++) dst[i] = pare_f8e4m3_to_fp32(s[i]);
        return true;
    case PARE_TYPE_F8_E5M2:
        for (int64_t i = 0; i < n; i++) dst[i] = pare_f8e5m2_to_fp32(s[i]);
        return true;
    case PARE_TYPE_BOOL:
    case PARE_TYPE_U8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return true;
    case PARE_TYPE_I8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i];
        return true;
#define PLAIN_INT(TT, CT)                                                                           \
    case TT:                                                                                        \
        for (int64_t i = 0; i < n; i++) {                                                           \
            CT v;                                                                                   \
            memcpy(&v, s + sizeof(CT) * (size_t)i, sizeof(CT));                                     \
            dst[i] = (float)v;                                                                      \
        }                                                                                           \
        return true;
        PLAIN_INT(PARE_TYPE_I16, int16_t)
        PLAIN_INT(PARE_TYPE_U16, uint16_t)
        PLAIN_INT(PARE_TYPE_I32, int32_t)
        PLAIN_INT(PARE_TYPE_U32, uint32_t)
        PLAIN_INT(PARE_TYPE_I64, int64_t)
        PLAIN_INT(PARE_TYPE_U64, uint64_t)
#undef PLAIN_INT
    default: return false;
    }
}

bool pare_f32_to_plain(pare_type t, const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    switch (t) {
    case PARE_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case PARE_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = pare_fp32_to_fp16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return true;
    case PARE_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = pare_fp32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return true;
    case PARE_TYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double v = src[i];
            memcpy(d + 8 * i, &v, 8);
        }
        return true;
    default: return false;
    }
}
