/*
 * verify/kgemm.c - products with K-quant weights (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) as
 * llama.cpp computes them on x86, and on Arm (the end of this comment):
 * y[M][N] = x[M][K] W[N][K]^T.
 *
 * ggml-cpu quantizes the activations to Q8_K (blocks of 256: the value of largest magnitude
 * maps to -127, d = 1/iscale kept in f32, sums of every 16 codes) and takes each product
 * with ggml_vec_dot_<type>_q8_K (AVX2 forms, which AVX-512 machines run too; tinyBLAS has no
 * K-quants). Per output and super-block, every type makes eight integer lanes, lane L
 * holding the dots of bytes 4L..4L+3 of every 32-value group times their sub-block scales
 * (with the weight values signed: Q6_K's codes minus 32, Q3_K's minus 4 without the high
 * bit, IQ4_XS's table levels). The integers are exact whichever way they are added; only
 * the float steps need ggml's order, and with them the results are ggml's bits. Per type
 * (llama.cpp of February 2025, ggml-cpu-quants.c, __AVX2__ branches), with d = d_x * d_w,
 * dmin = -d_x * dmin_w and acc, accm zero at the start:
 *   Q6_K, Q3_K, IQ4_XS: acc_L = fma(d, lane_L, acc_L) per super-block; the result is
 *     hsum8(acc) = ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)).
 *   Q4_K: the same, and four lanes accm_k = fma(dmin, mins . 32-sums of groups 2k, 2k+1,
 *     accm_k); the result is hsum8(acc) + ((m0+m2)+(m1+m3)).
 *   Q5_K: the same acc, and one float summs = fma(dmin, mins . 32-sums, summs) (GCC
 *     contracts ggml's `summs += dmin * int` into an fma: with a multiply and an add the
 *     Q5_K_M fortune-llama's perplexity is 46.4754, llama.cpp's 46.4769); the result is
 *     hsum8(acc) + summs.
 *   Q2_K: first acc_k = fma(dmin, mins . 16-sums of groups 2k, 2k+1, acc_k), then
 *     acc_L = fma(d, lane_L, acc_L), into the same eight lanes; the result is hsum8(acc).
 *
 * Weights are unpacked once per pass over a block of activation rows into value codes
 * (value + an offset that makes them unsigned, or IQ4_XS's signed levels) and scales spread
 * over the pairs of codes they apply to. Three paths give the same numbers. AVX2 (with FMA
 * and F16C) takes the lanes as ggml does: vpmaddubsw of codes and activations (pair sums
 * within int16: codes up to 63 x 127 x 2), offset x the pair sums taken off in 16 bits,
 * then vpmaddwd with the scales, on tiles of 3 activation rows x 3 weight rows. AVX-512
 * VNNI does the same on 64 bytes at a time (two 32-value groups, lanes 0-7 and 8-15, added
 * at the end of the super-block), with vpdpwssd for the scales and the sum, on tiles of
 * 4 x 4. Plain C elsewhere. The activations' quantization is vectorized on both (the same
 * codes and d as quantize_row_q8_K_ref).
 *
 * Arm (aarch64, __ARM_NEON, with or without sdot) follows ggml's NEON forms instead, which
 * reduce each super-block to one exact integer, sumi = the dot of the signed values times
 * their sub-block scales, and keep one float per output; GCC contracts their lines in its
 * default GNU C mode (checked on GCC 12), so with d = d_x * d_w, dmin = d_x * dmin_w:
 *   Q3_K, Q6_K, IQ4_XS: sumf = fma(d, sumi, sumf).
 *   Q4_K: sumf = fma(-dmin, mins . 32-sums, sumf), then fma(d, sumi, sumf).
 *   Q2_K: the same with the 16 mins against the 16-sums.
 *   Q5_K: sumf = sumf + fma(-dmin, mins . 32-sums, d * sumi) (`sumf += d * sumi - dmin *
 *     sumi_mins`: fmul, fnmsub, fadd).
 * Activations: quantize_row_q8_K_ref, as on x86 (ggml has no NEON form of it). Tiles of
 * 4 x 4, codes with an offset (Q3_K, Q6_K) made signed as they are loaded, 16-byte chunks
 * (one sub-block scale each) with sdot or, without it, smull/addp/sadalp. tests/test_kgemm.c
 * transcribes these forms for the aarch64 builds.
 */
#include "verify/llm_impl.h"

#include "quant/blocks.h"

#include <stddef.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define KG_VNNI 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define KG_AVX2 1
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define KG_NEON 1
#endif

#define QK PARE_QK_K
/* where a field of a weight block lies, from the shared block structs (quant/blocks.h) */
#define OFF(type, field) offsetof(pare_block_##type, field)
#if defined(KG_VNNI)
#define MRK 4 /* activation rows per tile */
#define NRK 4 /* weight rows per tile: 16 accumulators of the 32 registers */
#elif defined(KG_AVX2)
#define MRK 3
#define NRK 3 /* 9 accumulators of the 16 registers, with room for codes and scales */
#elif defined(KG_NEON)
#define MRK 4
#define NRK 4 /* 16 integer accumulators of the 32 registers */
#else
#define MRK 4
#define NRK 2
#endif
/* Weight rows unpacked together (a multiple of NRK, about 16): each pass over a tile of
 * activation rows then writes about a cache line of every output row, where one tile alone
 * would write a quarter of one, to be read for ownership again by the next. */
#define NWK (NRK == 3 ? 18 : 4 * NRK)
#define MBK ((512 + MRK - 1) / MRK * MRK) /* activation rows per block: a multiple of MRK, 512 or just above */

static float f16(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }

/* Activations of one super-block: codes, their sums over every 16 and 32 (16-bit, as ggml
 * keeps them), the weight type's offset times the sums the fast paths subtract, and the
 * scale. */
typedef struct {
    int8_t q[QK];
#if defined(KG_VNNI) || defined(KG_AVX2)
    int16_t off2[QK / 2]; /* offset x the sum of codes 2k, 2k+1 */
#endif
    int16_t g16[16];
    int16_t g32[8];
    float d;
    float pad[3];
} act_sb;

/* One weight super-block unpacked: codes in value order, sub-block scales spread over the
 * pairs of codes they apply to, the mins of Q2_K (16), Q4_K and
 * Q5_K (8), and the f16 scales as floats. */
typedef struct {
    uint8_t v[QK];
    int16_t sc16[QK / 2]; /* scale of codes 2k, 2k+1 */
    int16_t mins[16];
    float d, dmin;
    float pad[6];
} w_sb;

_Static_assert(sizeof(act_sb) % 64 == 0 && sizeof(w_sb) % 64 == 0, "64-byte rows");

/* How a type's float steps end (see the header comment). */
typedef enum { FIN_D, FIN_Q4K, FIN_Q5K, FIN_Q2K } kg_fin;

typedef struct {
    pare_type type;
    size_t bytes;  /* per super-block */
    int off_shift; /* codes are value + (1 << off_shift); -1: no offset */
    bool sgn;      /* codes are the signed values themselves */
    kg_fin fin;
    void (*unpack)(const uint8_t *b, w_sb *w);
} kg_type;

/* ------------------------------------------------------------------------ weights */

/* sc: one scale per group of `group` (16 or 32) values. */
static void spread_scales(w_sb *w, const int *sc, int group) {
    for (int g = 0; g < QK / group; g++)
        for (int k = 0; k < group / 2; k++) w->sc16[g * group / 2 + k] = (int16_t)sc[g];
}

/* Q4_K / Q5_K: 8 scales and 8 mins of 6 bits in 12 bytes (ggml's get_scale_min_k4). */
static void scale_min_k4(const uint8_t *q, int *s, int16_t *m) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = q[j] & 63;
            m[j] = q[j + 4] & 63;
        } else {
            s[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            m[j] = (int16_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }
}

/* f16 d, f16 dmin, scales[12], qs[128] */
static void unpack_q4_K(const uint8_t *b, w_sb *w) {
    const uint8_t *qs = b + OFF(q4_K, qs);
    int s[8];
    memset(w->mins, 0, sizeof w->mins);
    scale_min_k4(b + OFF(q4_K, scales), s, w->mins);
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            w->v[64 * j + l] = qs[32 * j + l] & 0xF;
            w->v[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
    spread_scales(w, s, 32);
    w->d = f16(b + OFF(q4_K, d));
    w->dmin = f16(b + OFF(q4_K, dmin));
}

/* f16 d, f16 dmin, scales[12], qh[32], qs[128] */
static void unpack_q5_K(const uint8_t *b, w_sb *w) {
    const uint8_t *qh = b + OFF(q5_K, qh), *qs = b + OFF(q5_K, qs);
    int s[8];
    memset(w->mins, 0, sizeof w->mins);
    scale_min_k4(b + OFF(q5_K, scales), s, w->mins);
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            w->v[64 * j + l] = (uint8_t)((qs[32 * j + l] & 0xF) | ((qh[l] >> (2 * j)) & 1) << 4);
            w->v[64 * j + 32 + l] = (uint8_t)((qs[32 * j + l] >> 4) | ((qh[l] >> (2 * j + 1)) & 1) << 4);
        }
    spread_scales(w, s, 32);
    w->d = f16(b + OFF(q5_K, d));
    w->dmin = f16(b + OFF(q5_K, dmin));
}

/* ql[128], qh[64], int8 scales[16], f16 d; codes 0..63 are value + 32 */
static void unpack_q6_K(const uint8_t *b, w_sb *w) {
    const uint8_t *ql = b + OFF(q6_K, ql), *qh = b + OFF(q6_K, qh);
    int s[16];
    for (int j = 0; j < 16; j++) s[j] = (int8_t)b[OFF(q6_K, scales) + j];
    for (int h = 0; h < 2; h++, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            w->v[128 * h + l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4);
            w->v[128 * h + 32 + l] = (uint8_t)((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4);
            w->v[128 * h + 64 + l] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            w->v[128 * h + 96 + l] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    spread_scales(w, s, 16);
    memset(w->mins, 0, sizeof w->mins);
    w->d = f16(b + OFF(q6_K, d));
    w->dmin = 0;
}

/* hmask[32], qs[64], scales[12] (16 of 6 bits, offset by 32), f16 d; a value is its 2 low
 * bits minus 4 without its high bit, so the code low | high << 2 (0..7) is value + 4. */
static void unpack_q3_K(const uint8_t *b, w_sb *w) {
    const uint8_t *hm = b + OFF(q3_K, hmask), *qs = b + OFF(q3_K, qs), *sc = b + OFF(q3_K, scales);
    int s[16];
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        s[j] = (lo | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
    }
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                w->v[128 * n + 32 * j + l] =
                    (uint8_t)(((qs[32 * n + l] >> (2 * j)) & 3) | ((hm[l] >> (4 * n + j)) & 1) << 2);
    spread_scales(w, s, 16);
    memset(w->mins, 0, sizeof w->mins);
    w->d = f16(b + OFF(q3_K, d));
    w->dmin = 0;
}

/* scales[16] (scale in the low nibble, min in the high), qs[64], f16 d, f16 dmin */
static void unpack_q2_K(const uint8_t *b, w_sb *w) {
    const uint8_t *sc = b + OFF(q2_K, scales), *qs = b + OFF(q2_K, qs);
    int s[16];
    for (int j = 0; j < 16; j++) s[j] = sc[j] & 0xF, w->mins[j] = sc[j] >> 4;
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) w->v[128 * n + 32 * j + l] = (qs[32 * n + l] >> (2 * j)) & 3;
    spread_scales(w, s, 16);
    w->d = f16(b + OFF(q2_K, d));
    w->dmin = f16(b + OFF(q2_K, dmin));
}

/* f16 d, u16 scales_h, scales_l[4], qs[128]; sub-block scales of 6 bits minus 32 */
static void unpack_iq4_xs(const uint8_t *b, w_sb *w) {
    static const int8_t levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    const uint8_t *h = b + OFF(iq4_xs, scales_h), *sl = b + OFF(iq4_xs, scales_l), *qs = b + OFF(iq4_xs, qs);
    const unsigned sh = (unsigned)(h[0] | h[1] << 8);
    int s[8];
    for (int ib = 0; ib < 8; ib++) {
        s[ib] = (((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (int)((sh >> (2 * ib)) & 3) << 4) - 32;
        for (int j = 0; j < 16; j++) {
            w->v[32 * ib + j] = (uint8_t)levels[qs[16 * ib + j] & 0xF];
            w->v[32 * ib + 16 + j] = (uint8_t)levels[qs[16 * ib + j] >> 4];
        }
    }
    spread_scales(w, s, 32);
    memset(w->mins, 0, sizeof w->mins);
    w->d = f16(b);
    w->dmin = 0;
}

static const kg_type kg_types[] = {
    {PARE_TYPE_Q2_K, sizeof(pare_block_q2_K), -1, false, FIN_Q2K, unpack_q2_K},
    {PARE_TYPE_Q3_K, sizeof(pare_block_q3_K), 2, false, FIN_D, unpack_q3_K},
    {PARE_TYPE_Q4_K, sizeof(pare_block_q4_K), -1, false, FIN_Q4K, unpack_q4_K},
    {PARE_TYPE_Q5_K, sizeof(pare_block_q5_K), -1, false, FIN_Q5K, unpack_q5_K},
    {PARE_TYPE_Q6_K, sizeof(pare_block_q6_K), 5, false, FIN_D, unpack_q6_K},
    {PARE_TYPE_IQ4_XS, sizeof(pare_block_iq4_xs), -1, true, FIN_D, unpack_iq4_xs},
};

static const kg_type *find_type(pare_type t) {
    for (size_t i = 0; i < sizeof kg_types / sizeof kg_types[0]; i++)
        if (kg_types[i].type == t) return &kg_types[i];
    return NULL;
}

/* ------------------------------------------------------------------------ activations */

typedef struct {
    const float *x;
    int ldx, nb;
    int off_shift; /* of the weight type, -1 for none */
    act_sb *a;
} act_job;

#if defined(KG_VNNI) || defined(KG_AVX2)

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
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), va, _CMP_EQ_OQ));
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

static void act_sums(act_sb *s, int off_shift) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int c = 0; c < 8; c++) {
        const __m256i pairs = _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(const void *)(s->q + 32 * c)));
        const __m256i s4 = _mm256_madd_epi16(pairs, ones16);
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)(void *)t, s4);
        s->g16[2 * c] = (int16_t)(t[0] + t[1] + t[2] + t[3]);
        s->g16[2 * c + 1] = (int16_t)(t[4] + t[5] + t[6] + t[7]);
        s->g32[c] = (int16_t)(s->g16[2 * c] + s->g16[2 * c + 1]);
        if (off_shift >= 0)
            _mm256_storeu_si256((__m256i *)(void *)(s->off2 + 16 * c), _mm256_slli_epi16(pairs, off_shift));
    }
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

static void act_sums(act_sb *s, int off_shift) {
    (void)off_shift; /* plain C multiplies the signed values directly */
    for (int g = 0; g < 16; g++) {
        int t = 0;
        for (int i = 0; i < 16; i++) t += s->q[16 * g + i];
        s->g16[g] = (int16_t)t;
    }
    for (int g = 0; g < 8; g++) s->g32[g] = (int16_t)(s->g16[2 * g] + s->g16[2 * g + 1]);
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
            continue;
        }
        act_sums(s, j->off_shift);
    }
}

/* ------------------------------------------------------------------------ products */

typedef struct {
    int M, N, nb;
    const kg_type *t;
    const act_sb *a;
    const uint8_t *W;
    size_t ldw;
    float *y;
    int ldy;
    int rows_per_item;
    w_sb *wbuf; /* per thread: NWK rows of unpacked super-blocks */
} prod_job;

#if !defined(KG_VNNI) && !defined(KG_AVX2) && !defined(KG_NEON)

/* Plain C: output (m, n) in ggml's float order. */
static float dot_ref(const prod_job *g, const w_sb *w, int m) {
    const kg_type *t = g->t;
    const int off = t->off_shift < 0 ? 0 : 1 << t->off_shift;
    float acc[8] = {0}, accm[4] = {0}, summs = 0;
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x = &g->a[(size_t)m * g->nb + b];
        const w_sb *ws = &w[b];
        int32_t lane[8] = {0};
        if (t->sgn)
            for (int i = 0; i < QK; i++) lane[(i % 32) / 4] += ws->sc16[i / 2] * (int8_t)ws->v[i] * x->q[i];
        else
            for (int i = 0; i < QK; i++) lane[(i % 32) / 4] += ws->sc16[i / 2] * (ws->v[i] - off) * x->q[i];
        const float d = x->d * ws->d, dmin = -x->d * ws->dmin;
        switch (t->fin) {
        case FIN_D: break;
        case FIN_Q2K:
            for (int k = 0; k < 8; k++)
                acc[k] = fmaf(dmin, (float)(ws->mins[2 * k] * x->g16[2 * k] + ws->mins[2 * k + 1] * x->g16[2 * k + 1]),
                              acc[k]);
            break;
        case FIN_Q4K:
            for (int k = 0; k < 4; k++)
                accm[k] = fmaf(dmin, (float)(ws->mins[2 * k] * x->g32[2 * k] + ws->mins[2 * k + 1] * x->g32[2 * k + 1]),
                               accm[k]);
            break;
        case FIN_Q5K: {
            int32_t s = 0;
            for (int k = 0; k < 8; k++) s += ws->mins[k] * x->g32[k];
            summs = fmaf(dmin, (float)s, summs);
        } break;
        }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
    }
    const float r = llm_hsum8(acc);
    return t->fin == FIN_Q4K ? r + ((accm[0] + accm[2]) + (accm[1] + accm[3])) : t->fin == FIN_Q5K ? r + summs : r;
}

#endif

/* Unpacks weight rows [n0, n0 + nr) into w (row after row) and zeroes the rest of the last
 * tile's NRK rows, which then add nothing and are never stored. */
static void unpack_rows(const prod_job *g, int n0, int nr, w_sb *w) {
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = g->W + (size_t)(n0 + r) * g->ldw;
        for (int b = 0; b < g->nb; b++) g->t->unpack(row + (size_t)b * g->t->bytes, &w[(size_t)r * g->nb + b]);
    }
    const int pad = (NRK - nr % NRK) % NRK;
    if (pad) memset(w + (size_t)nr * g->nb, 0, (size_t)pad * g->nb * sizeof *w);
}

#if defined(KG_VNNI) || defined(KG_AVX2)

/* The float steps of one super-block for one output (lanes: its summed integer lanes), in
 * the type's order; `fin` is a constant where it is inlined. The scalar products
 * d_x * d_w and -d_x * dmin_w are taken lane-wise on broadcast values, which rounds them
 * the same way. */
static inline __attribute__((always_inline)) void fin_step(const kg_fin fin, const act_sb *x, const w_sb *ws,
                                                           __m256i lanes, __m256 *acc, __m128 *accm, float *summs) {
    if (fin == FIN_Q2K) {
        const __m256 dmin = _mm256_mul_ps(_mm256_xor_ps(_mm256_broadcast_ss(&x->d), _mm256_set1_ps(-0.0f)),
                                          _mm256_broadcast_ss(&ws->dmin));
        const __m256i prod = _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(const void *)ws->mins),
                                               _mm256_load_si256((const __m256i *)(const void *)x->g16));
        *acc = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(prod), *acc);
    } else if (fin == FIN_Q4K) {
        const __m128 dmin = _mm_mul_ps(_mm_xor_ps(_mm_broadcast_ss(&x->d), _mm_set1_ps(-0.0f)), _mm_broadcast_ss(&ws->dmin));
        const __m128i prod = _mm_madd_epi16(_mm_load_si128((const __m128i *)(const void *)ws->mins),
                                            _mm_load_si128((const __m128i *)(const void *)x->g32));
        *accm = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(prod), *accm);
    } else if (fin == FIN_Q5K) {
        __m128i t = _mm_madd_epi16(_mm_load_si128((const __m128i *)(const void *)ws->mins),
                                   _mm_load_si128((const __m128i *)(const void *)x->g32));
        t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1));
        *summs = fmaf(-x->d * ws->dmin, (float)_mm_cvtsi128_si32(t), *summs);
    }
    const __m256 d = _mm256_mul_ps(_mm256_broadcast_ss(&x->d), _mm256_broadcast_ss(&ws->d));
    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), *acc);
}

/* ggml's hsum_float_8 (the order of llm_hsum8) and its sum of four lanes
 * (m0+m2)+(m1+m3), in registers. */
static inline float hsum8_ps(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

static inline float hsum4_ps(__m128 m) {
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

/* The last two steps of hsum_float_8 for eight outputs at once: s[k] holds, in its two
 * 128-bit halves, the partial sums p0..p3 of outputs 2k and 2k+1; returns
 * (p0+p2)+(p1+p3) of each, outputs 0..7 in order. The same additions as hsum8_ps and
 * hsum4_ps, in the same order, so the same bits, with a quarter of the instructions. */
static inline __m256 hsum_tail8(const __m256 s[4]) {
    const __m256 g0 = _mm256_add_ps(_mm256_shuffle_ps(s[0], s[1], 0x44), _mm256_shuffle_ps(s[0], s[1], 0xEE));
    const __m256 g1 = _mm256_add_ps(_mm256_shuffle_ps(s[2], s[3], 0x44), _mm256_shuffle_ps(s[2], s[3], 0xEE));
    const __m256 o = _mm256_add_ps(_mm256_shuffle_ps(g0, g1, 0x88), _mm256_shuffle_ps(g0, g1, 0xDD));
    return _mm256_permutevar8x32_ps(o, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* hsum8_ps (+ hsum4_ps of accm for Q4_K, + summs for Q5_K) of eight outputs. */
static inline void final8(kg_fin fin, const __m256 *acc, const __m128 *accm, const float *summs, float *out) {
    __m256 s[4];
    for (int k = 0; k < 4; k++)
        s[k] = _mm256_add_ps(_mm256_permute2f128_ps(acc[2 * k], acc[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(acc[2 * k], acc[2 * k + 1], 0x31));
    __m256 v = hsum_tail8(s);
    if (fin == FIN_Q4K) {
        for (int k = 0; k < 4; k++) s[k] = _mm256_set_m128(accm[2 * k + 1], accm[2 * k]);
        v = _mm256_add_ps(v, hsum_tail8(s));
    } else if (fin == FIN_Q5K) {
        v = _mm256_add_ps(v, _mm256_loadu_ps(summs));
    }
    _mm256_storeu_ps(out, v);
}

/* Stores the outputs of a tile that exist (rows < M, weight rows < nr). */
static void store_tile(const prod_job *g, int m0, int n0, int nr, __m256 acc[MRK][NRK], __m128 accm[MRK][NRK],
                       float summs[MRK][NRK]) {
    const kg_fin fin = g->t->fin;
    float out[MRK * NRK];
    int k = 0;
    for (; k + 8 <= MRK * NRK; k += 8) final8(fin, &acc[0][0] + k, &accm[0][0] + k, &summs[0][0] + k, out + k);
    for (; k < MRK * NRK; k++) {
        const float v = hsum8_ps((&acc[0][0])[k]);
        out[k] = fin == FIN_Q4K ? v + hsum4_ps((&accm[0][0])[k]) : fin == FIN_Q5K ? v + (&summs[0][0])[k] : v;
    }
    for (int i = 0; i < MRK && m0 + i < g->M; i++)
        for (int r = 0; r < nr; r++) g->y[(size_t)(m0 + i) * g->ldy + n0 + r] = out[i * NRK + r];
}

/* The two instruction sets differ only in register width and in how a pair product meets
 * its scale: one register holds KC codes (one 32-value group on AVX2, two on AVX-512, in
 * lanes 0-7 and 8-15, added at the end of the super-block). */
#if defined(KG_VNNI)
#define KC 64
typedef __m512i kv;
static inline kv kv_load(const void *p) { return _mm512_load_si512(p); }
static inline kv kv_zero(void) { return _mm512_setzero_si512(); }
static inline kv kv_abs8(kv w) { return _mm512_abs_epi8(w); }
/* x with the sign of w (AVX-512 has no vpsignb) */
static inline kv kv_sign8(kv x, kv w) { return _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x); }
static inline kv kv_maddubs(kv w, kv x) { return _mm512_maddubs_epi16(w, x); }
static inline kv kv_sub16(kv a, kv b) { return _mm512_sub_epi16(a, b); }
/* acc + the pair products times their scales, summed by pairs (vpdpwssd) */
static inline kv kv_dot16(kv acc, kv p, kv s) { return _mm512_dpwssd_epi32(acc, p, s); }
static inline __m256i kv_lanes(kv a) { return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1)); }
#else
#define KC 32
typedef __m256i kv;
static inline kv kv_load(const void *p) { return _mm256_load_si256(p); }
static inline kv kv_zero(void) { return _mm256_setzero_si256(); }
static inline kv kv_abs8(kv w) { return _mm256_abs_epi8(w); }
static inline kv kv_sign8(kv x, kv w) { return _mm256_sign_epi8(x, w); }
static inline kv kv_maddubs(kv w, kv x) { return _mm256_maddubs_epi16(w, x); }
static inline kv kv_sub16(kv a, kv b) { return _mm256_sub_epi16(a, b); }
static inline kv kv_dot16(kv acc, kv p, kv s) { return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s)); }
static inline __m256i kv_lanes(kv a) { return a; }
#endif

/* How the codes meet the activations: unsigned codes as they are (vpmaddubsw: codes up to
 * 63 x activations, pair sums within int16); unsigned codes with an offset taken off as
 * offset x the pair sums, in 16 bits, as ggml's Q6_K/Q3_K do; or signed values, |value|
 * times the activation with the value's sign, ggml's IQ4_XS way. */
enum { MUL_PLAIN, MUL_OFF, MUL_SGN };

/* Outputs of activation rows [m0, m0 + MRK) x weight rows [n0, n0 + nr) (w: their unpacked
 * super-blocks, row after row). `mul` and `fin` are constants in each caller (one per
 * weight type), so each gets its own loops, the integer accumulators in registers. */
static inline __attribute__((always_inline)) void tile_body(const prod_job *g, const w_sb *w, int m0, int n0, int nr,
                                                            const int mul, const kg_fin fin) {
    __m256 acc[MRK][NRK];
    __m128 accm[MRK][NRK];
    float summs[MRK][NRK];
    for (int i = 0; i < MRK; i++)
        for (int r = 0; r < NRK; r++) acc[i][r] = _mm256_setzero_ps(), accm[i][r] = _mm_setzero_ps(), summs[i][r] = 0;
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x[MRK];
        const w_sb *ws[NRK];
        for (int i = 0; i < MRK; i++) x[i] = &g->a[(size_t)(m0 + i) * g->nb + b];
        for (int r = 0; r < NRK; r++) ws[r] = &w[(size_t)r * g->nb + b];
        kv lanes[MRK][NRK];
        for (int i = 0; i < MRK; i++)
            for (int r = 0; r < NRK; r++) lanes[i][r] = kv_zero();
        for (int c = 0; c < QK / KC; c++) {
            kv wv[NRK], wa[NRK], sv[NRK];
#pragma GCC unroll 4
            for (int r = 0; r < NRK; r++) {
                wv[r] = kv_load(ws[r]->v + KC * c);
                sv[r] = kv_load(ws[r]->sc16 + KC / 2 * c);
                wa[r] = mul == MUL_SGN ? kv_abs8(wv[r]) : wv[r];
            }
#pragma GCC unroll 4
            for (int i = 0; i < MRK; i++) {
                const kv xv = kv_load(x[i]->q + KC * c);
#pragma GCC unroll 4
                for (int r = 0; r < NRK; r++) {
                    kv p = kv_maddubs(wa[r], mul == MUL_SGN ? kv_sign8(xv, wv[r]) : xv);
                    if (mul == MUL_OFF) p = kv_sub16(p, kv_load(x[i]->off2 + KC / 2 * c));
                    lanes[i][r] = kv_dot16(lanes[i][r], p, sv[r]);
                }
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < MRK; i++)
#pragma GCC unroll 4
            for (int r = 0; r < NRK; r++)
                fin_step(fin, x[i], ws[r], kv_lanes(lanes[i][r]), &acc[i][r], &accm[i][r], &summs[i][r]);
    }
    store_tile(g, m0, n0, nr, acc, accm, summs);
}

/* One instance per weight type (Q3_K and Q6_K share theirs). */
static void tile_q2_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, MUL_PLAIN, FIN_Q2K);
}
static void tile_q4_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, MUL_PLAIN, FIN_Q4K);
}
static void tile_q5_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, MUL_PLAIN, FIN_Q5K);
}
static void tile_off(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, MUL_OFF, FIN_D);
}
static void tile_iq4_xs(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, MUL_SGN, FIN_D);
}

static void run_tile(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    switch (g->t->fin) {
    case FIN_Q2K: tile_q2_K(g, w, m0, n0, nr); break;
    case FIN_Q4K: tile_q4_K(g, w, m0, n0, nr); break;
    case FIN_Q5K: tile_q5_K(g, w, m0, n0, nr); break;
    case FIN_D:
        if (g->t->sgn) tile_iq4_xs(g, w, m0, n0, nr);
        else tile_off(g, w, m0, n0, nr);
        break;
    }
}

#endif

#if defined(KG_NEON)

/* ---------------------------------------------------------------- Arm NEON */

#include "verify/neon_dot_impl.h" /* dot4 */

/* sum a[k] * b[k], k < n (8 or 16), 16-bit inputs, 32-bit products: exact. */
static inline int32_t dot16(const int16_t *a, const int16_t *b, int n) {
    int32x4_t s = vmull_s16(vld1_s16(a), vld1_s16(b));
    s = vmlal_s16(s, vld1_s16(a + 4), vld1_s16(b + 4));
    if (n == 16) s = vmlal_s16(vmlal_s16(s, vld1_s16(a + 8), vld1_s16(b + 8)), vld1_s16(a + 12), vld1_s16(b + 12));
    return vaddvq_s32(s);
}

/* Outputs of activation rows [m0, m0 + MRK) x weight rows [n0, n0 + nr), in ggml's NEON
 * order (see the top): per output and super-block one exact integer, the whole dot of the
 * signed values times their sub-block scales, and one float. Codes with an offset (Q3_K,
 * Q6_K) have it taken off as they are loaded, which leaves every code a signed byte; a
 * 16-byte chunk lies in one sub-block, so its dot meets one scale. `off` and `fin` are
 * constants in each caller. */
static inline __attribute__((always_inline)) void tile_body(const prod_job *g, const w_sb *w, int m0, int n0, int nr,
                                                            const bool off, const kg_fin fin) {
    float acc[MRK][NRK];
    for (int i = 0; i < MRK; i++)
        for (int r = 0; r < NRK; r++) acc[i][r] = 0;
    const int8x16_t voff = vdupq_n_s8((int8_t)(off ? 1 << g->t->off_shift : 0));
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x[MRK];
        const w_sb *ws[NRK];
        for (int i = 0; i < MRK; i++) x[i] = &g->a[(size_t)(m0 + i) * g->nb + b];
        for (int r = 0; r < NRK; r++) ws[r] = &w[(size_t)r * g->nb + b];
        int32x4_t s[MRK][NRK];
        for (int i = 0; i < MRK; i++)
            for (int r = 0; r < NRK; r++) s[i][r] = vdupq_n_s32(0);
        for (int c = 0; c < QK / 16; c++) {
            int8x16_t wv[NRK];
            int32_t sc[NRK];
#pragma GCC unroll 4
            for (int r = 0; r < NRK; r++) {
                wv[r] = vsubq_s8(vreinterpretq_s8_u8(vld1q_u8(ws[r]->v + 16 * c)), voff);
                sc[r] = ws[r]->sc16[8 * c];
            }
#pragma GCC unroll 4
            for (int i = 0; i < MRK; i++) {
                const int8x16_t xv = vld1q_s8(x[i]->q + 16 * c);
#pragma GCC unroll 4
                for (int r = 0; r < NRK; r++) s[i][r] = vmlaq_n_s32(s[i][r], dot4(vdupq_n_s32(0), wv[r], xv), sc[r]);
            }
        }
        for (int i = 0; i < MRK; i++)
            for (int r = 0; r < NRK; r++) {
                const float d = x[i]->d * ws[r]->d, dmin = x[i]->d * ws[r]->dmin;
                const float sumi = (float)vaddvq_s32(s[i][r]);
                if (fin == FIN_Q2K) { /* sum += -dmin * mins.bsums; sum += d * isum */
                    acc[i][r] = fmaf(-dmin, (float)dot16(ws[r]->mins, x[i]->g16, 16), acc[i][r]);
                    acc[i][r] = fmaf(d, sumi, acc[i][r]);
                } else if (fin == FIN_Q4K) { /* sumf -= dmin * mins.sums; sumf += d * sumi */
                    acc[i][r] = fmaf(-dmin, (float)dot16(ws[r]->mins, x[i]->g32, 8), acc[i][r]);
                    acc[i][r] = fmaf(d, sumi, acc[i][r]);
                } else if (fin == FIN_Q5K) { /* sumf += d * sumi - dmin * sumi_mins */
                    acc[i][r] = acc[i][r] + fmaf(-dmin, (float)dot16(ws[r]->mins, x[i]->g32, 8), d * sumi);
                } else { /* sum += d * isum */
                    acc[i][r] = fmaf(d, sumi, acc[i][r]);
                }
            }
    }
    for (int i = 0; i < MRK && m0 + i < g->M; i++)
        for (int r = 0; r < nr; r++) g->y[(size_t)(m0 + i) * g->ldy + n0 + r] = acc[i][r];
}

/* One instance per weight type (Q3_K and Q6_K share theirs). */
static void tile_q2_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, false, FIN_Q2K);
}
static void tile_q4_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, false, FIN_Q4K);
}
static void tile_q5_K(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, false, FIN_Q5K);
}
static void tile_off(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, true, FIN_D);
}
static void tile_sgn(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    tile_body(g, w, m0, n0, nr, false, FIN_D);
}

static void run_tile(const prod_job *g, const w_sb *w, int m0, int n0, int nr) {
    switch (g->t->fin) {
    case FIN_Q2K: tile_q2_K(g, w, m0, n0, nr); break;
    case FIN_Q4K: tile_q4_K(g, w, m0, n0, nr); break;
    case FIN_Q5K: tile_q5_K(g, w, m0, n0, nr); break;
    case FIN_D:
        if (g->t->sgn) tile_sgn(g, w, m0, n0, nr);
        else tile_off(g, w, m0, n0, nr);
        break;
    }
}

#endif

static void prod_item(void *ctx, int64_t item, int thread) {
    const prod_job *g = ctx;
    const int n0 = (int)item * g->rows_per_item;
    const int n1 = n0 + g->rows_per_item < g->N ? n0 + g->rows_per_item : g->N;
    w_sb *w = g->wbuf + (size_t)thread * NWK * g->nb;
    /* Activations in blocks of MBK rows, each block kept in L2 while a whole item of weight
     * rows runs against it (2048 rows of quantized activations would be streamed from L3 for
     * every group of weight rows); weight rows are unpacked again per block, which is cheap
     * next to MBK rows of products. */
    for (int m0 = 0; m0 < g->M; m0 += MBK) {
        const int m1 = m0 + MBK < g->M ? m0 + MBK : g->M;
        for (int n = n0; n < n1; n += NWK) {
            const int nr = n1 - n < NWK ? n1 - n : NWK;
            unpack_rows(g, n, nr, w);
#if defined(KG_VNNI) || defined(KG_AVX2) || defined(KG_NEON)
            for (int m = m0; m < m1; m += MRK)
                for (int j = 0; j < nr; j += NRK)
                    run_tile(g, w + (size_t)j * g->nb, m, n + j, nr - j < NRK ? nr - j : NRK);
#else
            for (int r = 0; r < nr; r++)
                for (int m = m0; m < m1; m++) g->y[(size_t)m * g->ldy + n + r] = dot_ref(g, w + (size_t)r * g->nb, m);
#endif
        }
    }
}

bool llm_kgemm_handles(pare_type wtype) { return find_type(wtype) != NULL; }

size_t llm_kgemm_ws(int M, int K) {
    const size_t Mp = (size_t)(M + MRK - 1) / MRK * MRK;
    return Mp * (size_t)(K / QK) * sizeof(act_sb) + 64;
}

bool llm_kgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               float *y, int ldy, void *ws) {
    const kg_type *t = find_type(wtype);
    if (K % QK || M <= 0 || N <= 0 || !t) return false;
    const int nb = K / QK, Mp = (M + MRK - 1) / MRK * MRK;
    act_sb *a = (act_sb *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    const int threads = pare_pool_threads(pool);
    w_sb *wbuf = aligned_alloc(64, (size_t)threads * NWK * nb * sizeof(w_sb));
    if (!wbuf) return false;
    act_job aj = {x, ldx, nb, t->off_shift, a};
    pare_pool_for(pool, M, act_row, &aj);
    memset(a + (size_t)M * nb, 0, (size_t)(Mp - M) * nb * sizeof *a); /* padding rows: zero, never stored */
    int items = threads > 1 ? 4 * threads : 1;
    int per = (N + items - 1) / items;
    per = (per + NRK - 1) / NRK * NRK;
    items = (N + per - 1) / per;
    prod_job g = {M, N, nb, t, a, W, (size_t)nb * t->bytes, y, ldy, per, wbuf};
    pare_pool_for(pool, items, prod_item, &g);
    free(wbuf);
    return true;
}
