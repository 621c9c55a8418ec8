/*
 * verify/iqgemm.c - products with the codebook i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M) as llama.cpp computes them on x86, and on Arm (the end of this
 * comment): y[M][N] = x[M][K] W[N][K]^T.
 *
 * ggml-cpu quantizes the activations to Q8_K (quantize_row_q8_K_ref: blocks of 256, the
 * value of largest magnitude maps to -127, d = 1/iscale in f32, sums of every 16 codes) and
 * takes each product with ggml_vec_dot_<type>_q8_K, whose AVX2 form AVX-512 machines run too.
 * Per output and super-block every type makes eight integer lanes: lane L holds, over the
 * eight 32-value groups, the dots of bytes 4L..4L+3 (grid value x sign x activation) times
 * the scale of the 16 or 32 values they belong to (vpmaddubsw of |grid| and the signed
 * activations, vpmaddwd with the scales). Integers are exact whichever way they are added;
 * only the float steps need ggml's order. Per type (llama.cpp of February 2025,
 * ggml-cpu-quants.c, __AVX2__ branches), with d = d_w * d_x (f32) and acc zero at the start:
 *   IQ2_XXS, IQ2_XS, IQ2_S (scales 2s+1): acc_L = fma(d, lane_L, acc_L) per super-block;
 *     the result is 0.125f * hsum8(acc).
 *   IQ3_XXS (2s+1): the same, the result 0.25f * hsum8(acc).
 *   IQ3_S (2s+1): the same, the result hsum8(acc).
 *   IQ1_S (2s+1 per 32 values, grid values -1, 0, 1): acc as above, and one float
 *     acc1 = fma(d, sumi1, acc1), sumi1 = sum over groups of +-scale x the group's 32-sum of
 *     activation codes (the sign of IQ1S_DELTA); the result fma(0.125f, acc1, hsum8(acc)).
 *     ggml writes `accum1 += d * sumi1`, which GCC (gnu11, -ffp-contract=fast, as llama.cpp
 *     builds) contracts into an fma, as it does Q5_K's summs (verify/kgemm.c; not checked
 *     against llama.cpp's figures for IQ1_S: none are in ../shared). Its final
 *     `hsum_float_8(accum) + IQ1S_DELTA * accum1` is the same contracted or not: x 0.125
 *     is exact.
 *   IQ1_M (2s+1 per 16 values; d from the four scale words' top nibbles): acc as above, and
 *     acc2_L = fma(d, lane2_L, acc2_L), lane2 the same dot with the +-1 delta signs in place
 *     of the grid values; the result fma(0.125f, hsum8(acc2), hsum8(acc)) (ggml's
 *     `hsum_float_8(accum1) + IQ1M_DELTA * hsum_float_8(accum2)`, the same either way).
 * hsum8(a) = ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)), ggml's hsum_float_8.
 *
 * Weights are decoded once per pass over a block of activation rows into signed values
 * (grid x sign), scales spread over pairs of values, and for IQ1 the delta signs (IQ1_M's
 * as scale x sign per 4 values, met by the activations' sums of 4: the same integers). The fast
 * paths take the lanes another way than ggml's |grid| x (activation with the sign), for
 * the same integers: vpmaddubsw of the activation codes + 128 (unsigned) and the signed
 * values (pair sums within int16 as |value| <= 62), the scales by vpmaddwd (AVX2 with FMA
 * and F16C, tiles of 3 activation rows x 3 weight rows) or vpdpwssd (AVX-512 VNNI, 64 bytes
 * at a time, tiles of 4 x 3), and at the end of the super-block 128 x the weights' own lanes
 * taken off (computed once at decoding). Plain C elsewhere; the three give the same numbers.
 *
 * Arm (aarch64, __ARM_NEON, with or without sdot) follows ggml's NEON forms instead
 * (ggml-cpu-quants.c, `#if defined(__ARM_NEON)` branches), which reduce integers further
 * before any float step; GCC contracts their `+=` lines in its default GNU C mode (checked
 * with GCC 12 for aarch64 on the same expressions: fmadd), so with d = d_w * d_x:
 *   IQ2_XS, IQ2_S, IQ3_S: sumi = the whole super-block's dot of the signed values times
 *     their scales (an exact integer); sumf = fma(d, sumi, sumf); the result 0.125f * sumf
 *     (IQ2_XS, IQ2_S) or sumf (IQ3_S).
 *   IQ2_XXS, IQ3_XXS: per group of 32 the unscaled dot p_g, and floats
 *     sumf1 += p_g * (0.5f + s_g) over the even groups, sumf2 over the odd ones, in group
 *     order (the products are exact: |p_g (2 s_g + 1)| < 2^23); sumf = fma(d, sumf1 + sumf2,
 *     sumf); the result 0.25f * sumf (IQ2_XXS) or 0.5f * sumf (IQ3_XXS).
 *   IQ1_S: sumi as above and sumi3 = the signed scales times the 32-sums;
 *     sumf = fma(d, fma(IQ1S_DELTA, sumi3, sumi), sumf), the result sumf (ggml's
 *     `sumf += y.d * d_w * (sumi1 + sumi2 + IQ1S_DELTA * sumi3)`).
 *   IQ1_M: the same with sumi2 = the delta signs' dot (IQ1M_DELTA).
 * The activations are quantize_row_q8_K_ref's (ggml has no NEON form). NEON tiles of
 * 4 x 4: signed values against the codes, 16 values (one scale) per sdot register (without
 * sdot: smull/addp/sadalp; only each register's total is used), the scales by vmla into
 * 32-bit lanes; IQ2_XXS and IQ3_XXS keep the eight groups' registers apart.
 * tests/test_iqgemm.c transcribes these forms for the aarch64 builds.
 */
#include "verify/llm_impl.h"

#include "quant/blocks.h"

#include <stddef.h>

#include "quant/iq_grids.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define IG_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define IG_VNNI 1
#endif
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define IG_NEON 1
#endif

#define QK PARE_QK_K
/* where a field of a weight block lies, from the shared block structs (quant/blocks.h) */
#define OFF(type, field) offsetof(pare_block_##type, field)
#if defined(IG_VNNI)
#define MRI 4 /* activation rows per tile */
#define NRI 3 /* weight rows: 12 integer and 12 float accumulators stay in the 32 registers (4 x 4 spills) */
#elif defined(IG_AVX2)
#define MRI 3
#define NRI 3 /* 9 accumulators of the 16 registers, with room for codes and scales */
#elif defined(IG_NEON)
#define MRI 4
#define NRI 4 /* 16 integer accumulators of the 32 registers */
#else
#define MRI 4
#define NRI 2
#endif
/* Weight rows decoded together: each pass over a tile of activation rows then writes a run
 * of every output row rather than a few floats of it. */
#define NWI (NRI == 3 ? 18 : 4 * NRI)
#define MBI ((512 + MRI - 1) / MRI * MRI) /* activation rows per block, kept in L2 */

static float f16(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Activations of one super-block: Q8_K codes, the codes + 128 (1..255, the unsigned operand
 * of vpmaddubsw), their sums over every 4 (for IQ1_M) and every 32 (ggml's bsums[2g] +
 * bsums[2g+1]), and the scale. */
typedef struct {
    int8_t q[QK];
    uint8_t u[QK];
    int16_t s4[64]; /* IQ1_M: sum of codes 4L..4L+3 of group g at 8g + L */
    int16_t g32[8];
    float d;
    float pad[11];
} act_sb;

/* One weight super-block decoded: signed values (grid x sign) in order, the delta signs of
 * IQ1_M (+-1), the scale of every pair of values, IQ1_S's signed scale per 32 values (the
 * sign of its delta), 128 x the lanes of the values with their scales, which the fast paths
 * take off (they multiply the codes + 128), and the f32 scale. IQ1_M's delta signs are
 * constant over 8 values and its scales over 16, so its second lanes are the products of
 * the scaled signs and the activations' sums of 4 (sd, s4): 8 per group, not 32. */
typedef struct {
    int8_t v[QK];
    int16_t sc16[QK / 2];
    int16_t sd[64]; /* IQ1_M: scale x delta sign of bytes 4L..4L+3 of group g at 8g + L */
    union {
        int32_t off[8]; /* AVX2, AVX-512 */
        float hs[8];    /* NEON, IQ2_XXS and IQ3_XXS: the group's (2s+1) / 2, ggml's 0.5f + s */
    };
    int16_t dsc[8];
    float d;
    float pad[3];
} w_sb;

_Static_assert(sizeof(act_sb) % 64 == 0 && sizeof(w_sb) % 64 == 0, "64-byte rows");

/* How a type's float steps end (see the header comment). */
typedef enum { FIN_SCALE, FIN_IQ1S, FIN_IQ1M } ig_fin;

typedef struct {
    pare_type type;
    size_t bytes; /* per super-block */
    ig_fin fin;
    float factor; /* FIN_SCALE: the final multiplier */
    void (*unpack)(const uint8_t *b, w_sb *w);
    /* Arm (see the end of the header comment): FIN_SCALE types whose NEON form keeps a float
     * per 32 values (IQ2_XXS, IQ3_XXS), and the NEON form's final multiplier */
    bool half;
    float nfactor;
} ig_type;

/* ------------------------------------------------------------------------ weights */

/* Grid point p's bytes 0..n-1 with the sign bits s (bit j: value j negative) into v. */
static void put_signed(int8_t *v, uint64_t p, unsigned s, int n) {
    for (int j = 0; j < n; j++) {
        const int g = (uint8_t)(p >> (8 * j));
        v[j] = (int8_t)((s >> j) & 1 ? -g : g);
    }
}

/* Scales of the 16-value halves of group g (values 32g..32g+31). */
static void put_scales(w_sb *w, int g, int lo, int hi) {
    for (int k = 0; k < 8; k++) w->sc16[16 * g + k] = (int16_t)lo, w->sc16[16 * g + 8 + k] = (int16_t)hi;
}

/* f16 d, then per group of 32: 4 grid indices, a word of 4 x 7 sign bits and a 4-bit scale. */
static void unpack_iq2_xxs(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq2_xxs, qs);
    for (int g = 0; g < 8; g++) {
        const uint32_t aux = rd32(qs + 8 * g + 4);
        for (int l = 0; l < 4; l++)
            put_signed(w->v + 32 * g + 8 * l, pare_iq2xxs_grid[qs[8 * g + l]], pare_iq_ksigns[(aux >> (7 * l)) & 127], 8);
        const int ls = 2 * (int)(aux >> 28) + 1;
        put_scales(w, g, ls, ls);
    }
    w->d = f16(b);
}

/* f16 d, 32 x u16 (9-bit index, 7 sign bits), 8 bytes of two 4-bit scales. */
static void unpack_iq2_xs(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq2_xs, qs), *sc = b + OFF(iq2_xs, scales);
    for (int g = 0; g < 8; g++) {
        for (int l = 0; l < 4; l++) {
            const unsigned q = rd16(qs + 2 * (4 * g + l));
            put_signed(w->v + 32 * g + 8 * l, pare_iq2xs_grid[q & 511], pare_iq_ksigns[q >> 9], 8);
        }
        put_scales(w, g, 2 * (sc[g] & 0xf) + 1, 2 * (sc[g] >> 4) + 1);
    }
    w->d = f16(b);
}

/* f16 d, qs[32] (index low bits), signs[32], qh[8] (2 high bits per index), scales[8]. */
static void unpack_iq2_s(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq2_s, qs), *signs = b + OFF(iq2_s, signs), *qh = b + OFF(iq2_s, qh),
                  *sc = b + OFF(iq2_s, scales);
    for (int g = 0; g < 8; g++) {
        for (int l = 0; l < 4; l++) {
            const unsigned idx = qs[4 * g + l] | ((qh[g] >> (2 * l)) & 3u) << 8;
            put_signed(w->v + 32 * g + 8 * l, pare_iq2s_grid[idx], signs[4 * g + l], 8);
        }
        put_scales(w, g, 2 * (sc[g] & 0xf) + 1, 2 * (sc[g] >> 4) + 1);
    }
    w->d = f16(b);
}

/* f16 d, qs[64] (8 indices of 4-value points per group), 8 words of signs and scale. */
static void unpack_iq3_xxs(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq3_xxs, qs), *ss = b + OFF(iq3_xxs, scales_signs);
    for (int g = 0; g < 8; g++) {
        const uint32_t aux = rd32(ss + 4 * g);
        for (int l = 0; l < 4; l++) {
            const unsigned s = pare_iq_ksigns[(aux >> (7 * l)) & 127];
            put_signed(w->v + 32 * g + 8 * l, pare_iq3xxs_grid[qs[8 * g + 2 * l]], s, 4);
            put_signed(w->v + 32 * g + 8 * l + 4, pare_iq3xxs_grid[qs[8 * g + 2 * l + 1]], s >> 4, 4);
        }
        const int ls = 2 * (int)(aux >> 28) + 1;
        put_scales(w, g, ls, ls);
    }
    w->d = f16(b);
}

/* f16 d, qs[64], qh[8] (9th index bit per point), signs[32], scales[4] (a nibble per group). */
static void unpack_iq3_s(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq3_s, qs), *qh = b + OFF(iq3_s, qh), *signs = b + OFF(iq3_s, signs),
                  *sc = b + OFF(iq3_s, scales);
    for (int g = 0; g < 8; g++) {
        for (int l = 0; l < 4; l++) {
            const unsigned s = signs[4 * g + l];
            const unsigned i1 = qs[8 * g + 2 * l] | ((qh[g] >> (2 * l)) & 1u) << 8;
            const unsigned i2 = qs[8 * g + 2 * l + 1] | ((qh[g] >> (2 * l + 1)) & 1u) << 8;
            put_signed(w->v + 32 * g + 8 * l, pare_iq3s_grid[i1], s, 4);
            put_signed(w->v + 32 * g + 8 * l + 4, pare_iq3s_grid[i2], s >> 4, 4);
        }
        const int ls = 2 * ((sc[g / 2] >> (4 * (g % 2))) & 0xf) + 1;
        put_scales(w, g, ls, ls);
    }
    w->d = f16(b);
}

/* f16 d, qs[32], 8 x u16 qh (3 high index bits per point, a 3-bit scale, the delta's sign). */
static void unpack_iq1_s(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq1_s, qs);
    for (int g = 0; g < 8; g++) {
        const unsigned qh = rd16(b + OFF(iq1_s, qh) + 2 * g);
        for (int l = 0; l < 4; l++) {
            const uint64_t p = pare_iq1s_grid[qs[4 * g + l] | ((qh >> (3 * l)) & 7u) << 8];
            for (int j = 0; j < 8; j++) w->v[32 * g + 8 * l + j] = (int8_t)(p >> (8 * j));
        }
        const int ls = 2 * (int)((qh >> 12) & 7) + 1;
        put_scales(w, g, ls, ls);
        w->dsc[g] = (int16_t)(qh & 0x8000 ? -ls : ls);
    }
    w->d = f16(b);
}

/* qs[32], qh[16] (a nibble per point: 3 high index bits, the delta's sign), scales[8] (four
 * u16: 3-bit scales per 16 values, the f16 d in their top nibbles). */
static void unpack_iq1_m(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(iq1_m, qs), *qh = b + OFF(iq1_m, qh);
    uint16_t sc[4];
    for (int k = 0; k < 4; k++) sc[k] = rd16(b + OFF(iq1_m, scales) + 2 * k);
    for (int g = 0; g < 8; g++) {
        for (int l = 0; l < 4; l++) {
            const unsigned nib = (qh[2 * g + l / 2] >> (4 * (l % 2))) & 0xf;
            const uint64_t p = pare_iq1s_grid[qs[4 * g + l] | (nib & 7) << 8];
            for (int j = 0; j < 8; j++) w->v[32 * g + 8 * l + j] = (int8_t)(p >> (8 * j));
        }
        const unsigned s = sc[g / 2] >> (6 * (g % 2));
        const int ls[2] = {2 * (int)(s & 7) + 1, 2 * (int)((s >> 3) & 7) + 1};
        put_scales(w, g, ls[0], ls[1]);
        for (int l = 0; l < 4; l++) { /* two lanes per group of 8 */
            const int sd = (qh[2 * g + l / 2] >> (4 * (l % 2))) & 8 ? -ls[l / 2] : ls[l / 2];
            w->sd[8 * g + 2 * l] = w->sd[8 * g + 2 * l + 1] = (int16_t)sd;
        }
    }
    const uint16_t dbits =
        (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    w->d = pare_fp16_to_fp32(dbits);
}

static const ig_type ig_types[] = {
    {PARE_TYPE_IQ2_XXS, sizeof(pare_block_iq2_xxs), FIN_SCALE, 0.125f, unpack_iq2_xxs, true, 0.25f},
    {PARE_TYPE_IQ2_XS, sizeof(pare_block_iq2_xs), FIN_SCALE, 0.125f, unpack_iq2_xs, false, 0.125f},
    {PARE_TYPE_IQ2_S, sizeof(pare_block_iq2_s), FIN_SCALE, 0.125f, unpack_iq2_s, false, 0.125f},
    {PARE_TYPE_IQ3_XXS, sizeof(pare_block_iq3_xxs), FIN_SCALE, 0.25f, unpack_iq3_xxs, true, 0.5f},
    {PARE_TYPE_IQ3_S, sizeof(pare_block_iq3_s), FIN_SCALE, 1.0f, unpack_iq3_s, false, 1.0f},
    {PARE_TYPE_IQ1_S, sizeof(pare_block_iq1_s), FIN_IQ1S, 0, unpack_iq1_s, false, 1.0f},
    {PARE_TYPE_IQ1_M, sizeof(pare_block_iq1_m), FIN_IQ1M, 0, unpack_iq1_m, false, 1.0f},
};

static const ig_type *find_type(pare_type t) {
    for (size_t i = 0; i < sizeof ig_types / sizeof ig_types[0]; i++)
        if (ig_types[i].type == t) return &ig_types[i];
    return NULL;
}

/* ------------------------------------------------------------------------ activations */

typedef struct {
    const float *x;
    int ldx, nb;
    ig_fin fin; /* the sums of 32 are for IQ1_S only, those of 4 for IQ1_M only */
    act_sb *a;
} act_job;

#if defined(IG_AVX2)

/* quantize_row_q8_K_ref on one super-block, 8 lanes at a time: the same codes and d. The
 * largest magnitude is a maximum (NaN skipped, as the scalar `>` skips it); the value
 * carrying it is the first one equal to it, as the scalar scan keeps the first. */
static bool quant_sb(const float *x, act_sb *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    for (int i = 0; i < QK; i += 8) vmax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), vmax);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0) return false;
    float max = 0;
    const __m256 va = _mm256_set1_ps(amax);
    for (int i = 0; i < QK; i += 8) {
        const int hit =
            _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), va, _CMP_EQ_OQ));
        if (hit) {
            max = x[i + __builtin_ctz((unsigned)hit)];
            break;
        }
    }
    const float iscale = -127.f / max;
    const __m256 vs = _mm256_set1_ps(iscale), cap = _mm256_set1_ps(127.f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < QK; i += 32) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_round_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 8 * k)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q)); /* NaN: 0, as ggml's nearest_int */
            v[k] = _mm256_cvtps_epi32(_mm256_min_ps(t, cap));
        }
        /* packs interleave the 128-bit halves; the permutation puts the codes back in order */
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(void *)(s->q + i), _mm256_permutevar8x32_epi32(b, order));
    }
    s->d = 1 / iscale;
    return true;
}

#else

/* quantize_row_q8_K_ref: iscale = -127 / (the value of largest magnitude), codes rounded to
 * nearest even (NaN to 0, as ggml's nearest_int) and capped at 127, d = 1 / iscale. False
 * for an all-zero block. */
static bool quant_sb(const float *x, act_sb *s) {
    float amax = 0, max = 0;
    for (int i = 0; i < QK; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax == 0) return false;
    const float iscale = -127.f / max;
    for (int i = 0; i < QK; i++) {
        const float v = iscale * x[i];
        const int q = v == v ? (int)nearbyintf(v) : 0;
        s->q[i] = (int8_t)(q < 127 ? q : 127);
    }
    s->d = 1 / iscale;
    return true;
}

#endif

static void act_row(void *ctx, int64_t r, int thread) {
    (void)thread;
    const act_job *j = ctx;
    const float *x = j->x + (size_t)r * j->ldx;
    for (int b = 0; b < j->nb; b++, x += QK) {
        act_sb *s = &j->a[(size_t)r * j->nb + b];
        if (!quant_sb(x, s)) {
            memset(s, 0, sizeof *s);
            memset(s->u, 128, sizeof s->u); /* lanes of exactly 0, as ggml's */
            continue;
        }
        for (int i = 0; i < QK; i++) s->u[i] = (uint8_t)(s->q[i] + 128);
        if (j->fin == FIN_IQ1S)
            for (int g = 0; g < 8; g++) {
                int t = 0;
                for (int i = 0; i < 32; i++) t += s->q[32 * g + i];
                s->g32[g] = (int16_t)t;
            }
        if (j->fin == FIN_IQ1M)
            for (int k = 0; k < 64; k++)
                s->s4[k] = (int16_t)(s->q[4 * k] + s->q[4 * k + 1] + s->q[4 * k + 2] + s->q[4 * k + 3]);
    }
}

/* ------------------------------------------------------------------------ products */

typedef struct {
    int M, N, nb;
    const ig_type *t;
    const act_sb *a;
    const uint8_t *W;
    size_t ldw;
    float *y;
    int ldy;
    int rows_per_item;
    w_sb *wbuf; /* per thread: NWI rows of decoded super-blocks */
} prod_job;

#if !defined(IG_AVX2) && !defined(IG_NEON)

/* IQ1_S's delta sum of one super-block: the signed scales times the 32-sums. */
static int32_t iq1s_sum(const act_sb *x, const w_sb *w) {
    int32_t s = 0;
    for (int g = 0; g < 8; g++) s += w->dsc[g] * x->g32[g];
    return s;
}

static float hsum8(const float a[8]) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

/* Plain C: output (m, n) in ggml's float order. */
static float dot_ref(const prod_job *g, const w_sb *w, int m) {
    const ig_fin fin = g->t->fin;
    float acc[8] = {0}, acc2[8] = {0}, acc1 = 0;
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x = &g->a[(size_t)m * g->nb + b];
        const w_sb *ws = &w[b];
        int32_t lane[8] = {0}, lane2[8] = {0};
        /* a lane's 4 bytes share their scale (one per 16 values) */
        for (int i = 0; i < QK; i += 32)
            for (int l = 0; l < 8; l++) {
                const int8_t *v = ws->v + i + 4 * l, *q = x->q + i + 4 * l;
                lane[l] += ws->sc16[(i + 4 * l) / 2] * (v[0] * q[0] + v[1] * q[1] + v[2] * q[2] + v[3] * q[3]);
            }
        if (fin == FIN_IQ1M)
            for (int k = 0; k < 64; k++) lane2[k % 8] += ws->sd[k] * x->s4[k];
        const float d = ws->d * x->d;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        if (fin == FIN_IQ1S) acc1 = fmaf(d, (float)iq1s_sum(x, ws), acc1);
        if (fin == FIN_IQ1M)
            for (int l = 0; l < 8; l++) acc2[l] = fmaf(d, (float)lane2[l], acc2[l]);
    }
    if (fin == FIN_IQ1S) return fmaf(0.125f, acc1, hsum8(acc));
    if (fin == FIN_IQ1M) return fmaf(0.125f, hsum8(acc2), hsum8(acc));
    return g->t->factor * hsum8(acc);
}

#endif

/* 128 x sum of scale x value over each lane's bytes (4L..4L+3 of every group of 32): the
 * x86 fast paths multiply the activation codes + 128 (unsigned, as vpmaddubsw wants them;
 * pair sums (x + 128) v stay within int16 as |v| <= 62) and take this off. NEON multiplies
 * signed codes and needs none; it keeps each group's 0.5f + s instead. */
static void lane_offsets(w_sb *w) {
#if defined(IG_NEON)
    /* NEON takes signed codes: no offsets; the float per group of IQ2_XXS and IQ3_XXS */
    for (int g = 0; g < 8; g++) w->hs[g] = 0.5f * (float)w->sc16[16 * g];
#else
    for (int l = 0; l < 8; l++) w->off[l] = 0;
    for (int i = 0; i < QK; i++) w->off[(i % 32) / 4] += 128 * w->sc16[i / 2] * w->v[i];
#endif
}

/* Decodes weight rows [n0, n0 + nr) into w (row after row) and zeroes the rest of the last
 * tile's NRI rows, which then add nothing and are never stored. */
static void unpack_rows(const prod_job *g, int n0, int nr, w_sb *w) {
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = g->W + (size_t)(n0 + r) * g->ldw;
        for (int b = 0; b < g->nb; b++) {
            w_sb *ws = &w[(size_t)r * g->nb + b];
            g->t->unpack(row + (size_t)b * g->t->bytes, ws);
            lane_offsets(ws);
        }
    }
    const int pad = (NRI - nr % NRI) % NRI;
    if (pad) memset(w + (size_t)nr * g->nb, 0, (size_t)pad * g->nb * sizeof *w);
}

#if defined(IG_AVX2)

/* ggml's hsum_float_8 on a register. */
static inline float hsum8_ps(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

/* The last two steps of hsum_float_8 for eight outputs at once: s[k] holds, in its two
 * 128-bit halves, the partial sums p0..p3 of outputs 2k and 2k+1; returns
 * (p0+p2)+(p1+p3) of each, outputs 0..7 in order: the additions of hsum8_ps in its order. */
static inline __m256 hsum_tail8(const __m256 s[4]) {
    const __m256 g0 = _mm256_add_ps(_mm256_shuffle_ps(s[0], s[1], 0x44), _mm256_shuffle_ps(s[0], s[1], 0xEE));
    const __m256 g1 = _mm256_add_ps(_mm256_shuffle_ps(s[2], s[3], 0x44), _mm256_shuffle_ps(s[2], s[3], 0xEE));
    const __m256 o = _mm256_add_ps(_mm256_shuffle_ps(g0, g1, 0x88), _mm256_shuffle_ps(g0, g1, 0xDD));
    return _mm256_permutevar8x32_ps(o, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* hsum8_ps of eight accumulators, lane k the sum of a[k]. */
static inline __m256 hsum8x8(const __m256 *a) {
    __m256 s[4];
    for (int k = 0; k < 4; k++)
        s[k] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * k], a[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(a[2 * k], a[2 * k + 1], 0x31));
    return hsum_tail8(s);
}

/* The results of a tile (see the header comment), eight at a time where it can (the same
 * operations lane-wise), stored where they exist (rows < M, weight rows < nr). */
static inline __attribute__((always_inline)) void store_tile(const prod_job *g, int m0, int n0, int nr,
                                                             const ig_fin fin, __m256 acc[MRI][NRI],
                                                             __m256 acc2[MRI][NRI], float acc1[MRI][NRI]) {
    const float factor = g->t->factor;
    float out[MRI * NRI];
    int k = 0;
    for (; k + 8 <= MRI * NRI; k += 8) {
        const __m256 h = hsum8x8(&acc[0][0] + k);
        __m256 v;
        if (fin == FIN_IQ1S) v = _mm256_fmadd_ps(_mm256_set1_ps(0.125f), _mm256_loadu_ps(&acc1[0][0] + k), h);
        else if (fin == FIN_IQ1M) v = _mm256_fmadd_ps(_mm256_set1_ps(0.125f), hsum8x8(&acc2[0][0] + k), h);
        else v = _mm256_mul_ps(_mm256_set1_ps(factor), h);
        _mm256_storeu_ps(out + k, v);
    }
    for (; k < MRI * NRI; k++) {
        const float h = hsum8_ps((&acc[0][0])[k]);
        out[k] = fin == FIN_IQ1S   ? fmaf(0.125f, (&acc1[0][0])[k], h)
                 : fin == FIN_IQ1M ? fmaf(0.125f, hsum8_ps((&acc2[0][0])[k]), h)
                                   : factor * h;
    }
    for (int i = 0; i < MRI && m0 + i < g->M; i++)
        for (int r = 0; r < nr; r++) g->y[(size_t)(m0 + i) * g->ldy + n0 + r] = out[i * NRI + r];
}

/* IQ1_M's second lanes: scaled delta signs x the activations' sums of 4, 16 products of
 * int16 per register (groups 2k and 2k+1); four registers added within int16 (|sum| <=
 * 4 x 15 x 508), then the two groups' halves in int32. */
static inline __m256i iq1m_lanes2(const act_sb *x, const w_sb *w) {
    __m256i t = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++)
        t = _mm256_add_epi16(t, _mm256_mullo_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w->sd + 16 * k)),
                                                   _mm256_loadu_si256((const __m256i *)(const void *)(x->s4 + 16 * k))));
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(t)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(t, 1)));
}

/* One register holds KC bytes: one 32-value group on AVX2, two on AVX-512 (lanes 0-7 and
 * 8-15, added at the end of the super-block). */
#if defined(IG_VNNI)
#define KC 64
typedef __m512i kv;
static inline kv kv_load(const void *p) { return _mm512_loadu_si512(p); }
static inline kv kv_zero(void) { return _mm512_setzero_si512(); }
/* acc + (codes + 128) x values, by pairs (int16), times their scales, by pairs (vpdpwssd) */
static inline kv kv_step(kv acc, kv u, kv v, kv s) { return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, v), s); }
static inline __m256i kv_lanes(kv a) { return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1)); }
#else
#define KC 32
typedef __m256i kv;
static inline kv kv_load(const void *p) { return _mm256_loadu_si256(p); }
static inline kv kv_zero(void) { return _mm256_setzero_si256(); }
static inline kv kv_step(kv acc, kv u, kv v, kv s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), s));
}
static inline __m256i kv_lanes(kv a) { return a; }
#endif

/* Outputs of activation rows [m0, m0 + MRI) x weight rows [n0, n0 + nr) (w: their decoded
 * super-blocks, row after row). `fin` is a constant in each caller, so IQ1_M's second set
 * of lanes costs the other types nothing. */
static inline __attribute__((always_inline)) void tile_body(const prod_job *g, const w_sb *w, int m0, int n0, int nr,
                                                            const ig_fin fin) {
    __m256 acc[MRI][NRI], acc2[MRI][NRI];
    float acc1[MRI][NRI];
    for (int i = 0; i < MRI; i++)
        for (int r = 0; r < NRI; r++) acc[i][r] = acc2[i][r] = _mm256_setzero_ps(), acc1[i][r] = 0;
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x[MRI];
        const w_sb *ws[NRI];
        for (int i = 0; i < MRI; i++) x[i] = &g->a[(size_t)(m0 + i) * g->nb + b];
        for (int r = 0; r < NRI; r++) ws[r] = &w[(size_t)r * g->nb + b];
        kv lanes[MRI][NRI];
        for (int i = 0; i < MRI; i++)
            for (int r = 0; r < NRI; r++) lanes[i][r] = kv_zero();
        for (int c = 0; c < QK / KC; c++) {
            kv wv[NRI], sv[NRI];
#pragma GCC unroll 4
            for (int r = 0; r < NRI; r++) {
                wv[r] = kv_load(ws[r]->v + KC * c);
                sv[r] = kv_load(ws[r]->sc16 + KC / 2 * c);
            }
#pragma GCC unroll 4
            for (int i = 0; i < MRI; i++) {
                const kv xv = kv_load(x[i]->u + KC * c);
#pragma GCC unroll 4
                for (int r = 0; r < NRI; r++) lanes[i][r] = kv_step(lanes[i][r], xv, wv[r], sv[r]);
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < MRI; i++)
#pragma GCC unroll 4
            for (int r = 0; r < NRI; r++) {
                /* d_w * d_x lane-wise on broadcast values: the same rounding as the scalar */
                const __m256 d = _mm256_mul_ps(_mm256_broadcast_ss(&ws[r]->d), _mm256_broadcast_ss(&x[i]->d));
                const __m256i l1 = _mm256_sub_epi32(kv_lanes(lanes[i][r]), _mm256_loadu_si256((const __m256i *)(const void *)ws[r]->off));
                acc[i][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(l1), acc[i][r]);
                if (fin == FIN_IQ1S) {
                    __m128i t = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)ws[r]->dsc),
                                               _mm_loadu_si128((const __m128i *)(const void *)x[i]->g32));
                    t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
                    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1)); /* iq1s_sum */
                    acc1[i][r] = fmaf(ws[r]->d * x[i]->d, (float)_mm_cvtsi128_si32(t), acc1[i][r]);
                }
                if (fin == FIN_IQ1M)
                    acc2[i][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(iq1m_lanes2(x[i], ws[r])), acc2[i][r]);
            }
    }
    store_tile(g, m0, n0, nr, fin, acc, acc2, acc1);
}

static void tile_scale(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_SCALE);
}
static void tile_iq1s(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_IQ1S);
}
static void tile_iq1m(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_IQ1M);
}

static void run_tile(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    switch (g->t->fin) {
    case FIN_SCALE: tile_scale(g, w, m0, n0, nr); break;
    case FIN_IQ1S: tile_iq1s(g, w, m0, n0, nr); break;
    case FIN_IQ1M: tile_iq1m(g, w, m0, n0, nr); break;
    }
}

#endif

#if defined(IG_NEON)

/* ---------------------------------------------------------------- Arm NEON */

#include "verify/neon_dot_impl.h" /* dot4 */

/* sum a[k] * b[k], k < n (a multiple of 8), 16-bit inputs, 32-bit products: exact. */
static inline int32_t dot16(const int16_t *a, const int16_t *b, int n) {
    int32x4_t s = vdupq_n_s32(0);
    for (int k = 0; k < n; k += 8) {
        const int16x8_t va = vld1q_s16(a + k), vb = vld1q_s16(b + k);
        s = vmlal_s16(s, vget_low_s16(va), vget_low_s16(vb));
        s = vmlal_high_s16(s, va, vb);
    }
    return vaddvq_s32(s);
}

/* IQ2_XXS and IQ3_XXS (see the top): from the eight groups' lanes of one output, the
 * groups' floats (float) dot x (0.5f + s), exact, then sumf1 over the even groups and sumf2
 * over the odd ones in group order; returns sumf1 + sumf2. */
static inline float half_sums(const int32x4_t gl[8], const float hs[8]) {
    const int32x4_t lo = vpaddq_s32(vpaddq_s32(gl[0], gl[1]), vpaddq_s32(gl[2], gl[3]));
    const int32x4_t hi = vpaddq_s32(vpaddq_s32(gl[4], gl[5]), vpaddq_s32(gl[6], gl[7]));
    const float32x4_t flo = vmulq_f32(vcvtq_f32_s32(lo), vld1q_f32(hs));
    const float32x4_t fhi = vmulq_f32(vcvtq_f32_s32(hi), vld1q_f32(hs + 4));
    /* lane 0: ((f0 + f2) + f4) + f6, lane 1: ((f1 + f3) + f5) + f7 */
    float32x2_t s = vadd_f32(vget_low_f32(flo), vget_high_f32(flo));
    s = vadd_f32(vadd_f32(s, vget_low_f32(fhi)), vget_high_f32(fhi));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
}

/* Outputs of activation rows [m0, m0 + MRI) x weight rows [n0, n0 + nr) in ggml's NEON
 * order (see the top). Per output and super-block: the integer sumi of the values times
 * their scales, 16 values (one scale) per sdot register (IQ2_XS, IQ2_S, IQ3_S, IQ1_S,
 * IQ1_M, with IQ1's delta integer beside it), or for IQ2_XXS and IQ3_XXS the eight groups'
 * unscaled lanes, kept in memory until the super-block ends. `fin` and `half` are
 * constants in each caller. */
static inline __attribute__((always_inline)) void tile_body(const prod_job *g, const w_sb *w, int m0, int n0, int nr,
                                                            const ig_fin fin, const bool half) {
    float acc[MRI][NRI];
    for (int i = 0; i < MRI; i++)
        for (int r = 0; r < NRI; r++) acc[i][r] = 0;
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x[MRI];
        const w_sb *ws[NRI];
        for (int i = 0; i < MRI; i++) x[i] = &g->a[(size_t)(m0 + i) * g->nb + b];
        for (int r = 0; r < NRI; r++) ws[r] = &w[(size_t)r * g->nb + b];
        int32x4_t s[MRI][NRI];
        int32x4_t gl[MRI][NRI][8];
        for (int i = 0; i < MRI; i++)
            for (int r = 0; r < NRI; r++) s[i][r] = vdupq_n_s32(0);
        for (int c = 0; c < QK / 32; c++) {
            int8x16_t w0[NRI], w1[NRI];
            int32_t sc0[NRI], sc1[NRI];
#pragma GCC unroll 4
            for (int r = 0; r < NRI; r++) {
                w0[r] = vld1q_s8(ws[r]->v + 32 * c), w1[r] = vld1q_s8(ws[r]->v + 32 * c + 16);
                sc0[r] = ws[r]->sc16[16 * c], sc1[r] = ws[r]->sc16[16 * c + 8];
            }
#pragma GCC unroll 4
            for (int i = 0; i < MRI; i++) {
                const int8x16_t x0 = vld1q_s8(x[i]->q + 32 * c), x1 = vld1q_s8(x[i]->q + 32 * c + 16);
#pragma GCC unroll 4
                for (int r = 0; r < NRI; r++) {
                    if (half) {
                        gl[i][r][c] = dot4(dot4(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                    } else {
                        s[i][r] = vmlaq_n_s32(s[i][r], dot4(vdupq_n_s32(0), w0[r], x0), sc0[r]);
                        s[i][r] = vmlaq_n_s32(s[i][r], dot4(vdupq_n_s32(0), w1[r], x1), sc1[r]);
                    }
                }
            }
        }
        for (int i = 0; i < MRI; i++)
            for (int r = 0; r < NRI; r++) {
                const float d = ws[r]->d * x[i]->d;
                if (half) { /* sumf += d * (sumf1 + sumf2) */
                    acc[i][r] = fmaf(d, half_sums(gl[i][r], ws[r]->hs), acc[i][r]);
                } else if (fin == FIN_SCALE) { /* sumf += d * sumi */
                    acc[i][r] = fmaf(d, (float)vaddvq_s32(s[i][r]), acc[i][r]);
                } else { /* sumf += d * (sumi + DELTA * sumi_delta), DELTA = 0.125, both fused */
                    const int32_t delta =
                        fin == FIN_IQ1S ? dot16(ws[r]->dsc, x[i]->g32, 8) : dot16(ws[r]->sd, x[i]->s4, 64);
                    const float t = fmaf(0.125f, (float)delta, (float)vaddvq_s32(s[i][r]));
                    acc[i][r] = fmaf(d, t, acc[i][r]);
                }
            }
    }
    const float factor = g->t->nfactor;
    for (int i = 0; i < MRI && m0 + i < g->M; i++)
        for (int r = 0; r < nr; r++) g->y[(size_t)(m0 + i) * g->ldy + n0 + r] = factor * acc[i][r];
}

/* One instance per float form. */
static void tile_int(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_SCALE, false);
}
static void tile_half(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_SCALE, true);
}
static void tile_iq1s(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_IQ1S, false);
}
static void tile_iq1m(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, FIN_IQ1M, false);
}

static void run_tile(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    switch (g->t->fin) {
    case FIN_SCALE:
        if (g->t->half) tile_half(g, w, m0, n0, nr);
        else tile_int(g, w, m0, n0, nr);
        break;
    case FIN_IQ1S: tile_iq1s(g, w, m0, n0, nr); break;
    case FIN_IQ1M: tile_iq1m(g, w, m0, n0, nr); break;
    }
}

#endif

static void prod_item(void *ctx, int64_t item, int thread) {
    const prod_job *g = ctx;
    const int n0 = (int)item * g->rows_per_item;
    const int n1 = n0 + g->rows_per_item < g->N ? n0 + g->rows_per_item : g->N;
    w_sb *w = g->wbuf + (size_t)thread * NWI * g->nb;
    /* Activations in blocks of MBI rows, each block kept in L2 while a whole item of weight
     * rows runs against it; weight rows are decoded again per block, which is cheap next to
     * MBI rows of products. */
    for (int m0 = 0; m0 < g->M; m0 += MBI) {
        const int m1 = m0 + MBI < g->M ? m0 + MBI : g->M;
        for (int n = n0; n < n1; n += NWI) {
            const int nr = n1 - n < NWI ? n1 - n : NWI;
            unpack_rows(g, n, nr, w);
#if defined(IG_AVX2) || defined(IG_NEON)
            for (int m = m0; m < m1; m += MRI)
                for (int j = 0; j < nr; j += NRI)
                    run_tile(g, w + (size_t)j * g->nb, m, n + j, nr - j < NRI ? nr - j : NRI);
#else
            for (int r = 0; r < nr; r++)
                for (int m = m0; m < m1; m++) g->y[(size_t)m * g->ldy + n + r] = dot_ref(g, w + (size_t)r * g->nb, m);
#endif
        }
    }
}

bool llm_iqgemm_handles(pare_type wtype) { return find_type(wtype) != NULL; }

size_t llm_iqgemm_ws(int M, int K) {
    const size_t Mp = (size_t)(M + MRI - 1) / MRI * MRI;
    return Mp * (size_t)(K / QK) * sizeof(act_sb) + 64;
}

bool llm_iqgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
                float *y, int ldy, void *ws) {
    const ig_type *t = find_type(wtype);
    if (K % QK || M <= 0 || N <= 0 || !t) return false;
    const int nb = K / QK, Mp = (M + MRI - 1) / MRI * MRI;
    act_sb *a = (act_sb *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    const int threads = pare_pool_threads(pool);
    w_sb *wbuf = aligned_alloc(64, (size_t)threads * NWI * nb * sizeof(w_sb));
    if (!wbuf) return false;
    act_job aj = {x, ldx, nb, t->fin, a};
    pare_pool_for(pool, M, act_row, &aj);
    memset(a + (size_t)M * nb, 0, (size_t)(Mp - M) * nb * sizeof *a); /* padding rows: zero, never stored */
    int items = threads > 1 ? 4 * threads : 1;
    int per = (N + items - 1) / items;
    per = (per + NRI - 1) / NRI * NRI;
    items = (N + per - 1) / per;
    prod_job g = {M, N, nb, t, a, W, (size_t)nb * t->bytes, y, ldy, per, wbuf};
    pare_pool_for(pool, items, prod_item, &g);
    free(wbuf);
    return true;
}
