/* tests/test_iqgemm.c - the integer products with codebook i-quant weights (verify/iqgemm.c)
 * against plain transcriptions of ggml_vec_dot_*_q8_K's AVX2 forms (llama.cpp of February
 * 2025, ggml-cpu-quants.c), or their NEON forms on aarch64, bit for bit, on one thread and on
 * a pool, for every type it takes.
 *
 * The references get each weight's value times its sub-block scale another way than
 * iqgemm.c: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S through the quant module's
 * dequantizers (ggml's dequantize_row_iq*, bit for bit) run on a copy of the block with
 * d = 1, which gives (2s+1) x grid x sign / 8 (IQ2), / 4 (IQ3_XXS) or / 1 (IQ3_S) exactly;
 * IQ1_S and IQ1_M read the raw bits with ggml's AVX2 shifts and masks. Then ggml's lanes
 * (bytes 4L..4L+3 of every 32-value group), its float accumulators and order. Built for
 * aarch64 (__ARM_NEON) the references are ggml's NEON forms instead (verify/iqgemm.c's top:
 * fewer floats, other final multipliers for IQ2_XXS and IQ3_XXS, whose group scales are
 * read here from the raw scale words), at both levels (with and without sdot). Every type
 * must meet outputs where the two forms differ, or the test could not tell them apart. The
 * kernels' level of the process decides which path of iqgemm.c runs, and the test names it. */
#include "core/core.h"
#include "core/isa.h"
#include "quant/iq_impl.h"
#include "verify/llm_impl.h"
#include "th.h"
#include "kq_ref.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static float hsum8(const float *a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

typedef struct {
    const char *name;
    pare_type type;
    size_t bytes;
    void (*dequant)(const void *, float *, int64_t); /* NULL: IQ1, read from the bits */
    float unit;                                      /* value x scale = dequantized (d = 1) x unit */
    float factor;                                    /* ggml's final multiplier (AVX2) */
    float nfactor;                                   /* and its NEON form's */
    int ls_at, ls_step; /* IQ2_XXS, IQ3_XXS: byte of group 0's scale word and the step per group; -1: none */
} itype;

static const itype itypes[] = {
    {"IQ2_XXS", PARE_TYPE_IQ2_XXS, 66, pare_iq_dequant_iq2_xxs, 8, 0.125f, 0.25f, 2 + 4, 8},
    {"IQ3_S", PARE_TYPE_IQ3_S, 110, pare_iq_dequant_iq3_s, 1, 1.0f, 1.0f, -1, 0},
    {"IQ3_XXS", PARE_TYPE_IQ3_XXS, 98, pare_iq_dequant_iq3_xxs, 4, 0.25f, 0.5f, 2 + 64, 4},
    {"IQ2_XS", PARE_TYPE_IQ2_XS, 74, pare_iq_dequant_iq2_xs, 8, 0.125f, 0.125f, -1, 0},
    {"IQ2_S", PARE_TYPE_IQ2_S, 82, pare_iq_dequant_iq2_s, 8, 0.125f, 0.125f, -1, 0},
    {"IQ1_S", PARE_TYPE_IQ1_S, 50, NULL, 0, 0, 1.0f, -1, 0},
    {"IQ1_M", PARE_TYPE_IQ1_M, 56, NULL, 0, 0, 1.0f, -1, 0},
};
#define NTYPES (sizeof itypes / sizeof itypes[0])

/* Each reference returns the AVX2 form's result and puts the NEON form's (ggml-cpu-quants.c,
 * `#if defined(__ARM_NEON)` branches) in *arm. Those reduce more in integers and keep fewer
 * floats; their `+=` lines are fused as GCC contracts them (GNU C mode, checked with GCC 12
 * for aarch64). */

/* IQ2_*, IQ3_*: per super-block, lanes of (value x scale) . codes, then
 * accumf = fma(d, lanes, accumf); the result factor x hsum_float_8(accumf).
 * NEON: IQ2_XS, IQ2_S, IQ3_S: sumf = fma(d, sumi, sumf) with sumi the whole super-block's
 * integer, the result nfactor x sumf. IQ2_XXS, IQ3_XXS: per group the unscaled dot p times
 * 0.5f + s (s the 4 top bits of the group's scale word), sumf1 over the even groups, sumf2
 * over the odd ones, sumf = fma(d, sumf1 + sumf2, sumf), the result nfactor x sumf. */
static float ref_scaled(const itype *t, const ref_q8K *y, const uint8_t *w, int nb, float *arm) {
    float acc[8] = {0}, sumf = 0;
    uint8_t blk[110];
    float v[256];
    for (int i = 0; i < nb; i++, w += t->bytes) {
        memcpy(blk, w, t->bytes);
        blk[0] = 0x00, blk[1] = 0x3C; /* d = 1 */
        t->dequant(blk, v, 256);
        int32_t lane[8] = {0}, grp[8] = {0}, sumi = 0;
        for (int k = 0; k < 256; k++) {
            const int32_t p = (int32_t)(v[k] * t->unit) * y[i].qs[k];
            lane[(k % 32) / 4] += p, grp[k / 32] += p, sumi += p;
        }
        const float d = h2f(w) * y[i].d;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        if (t->ls_at < 0) {
            sumf = fmaf(d, (float)sumi, sumf);
            continue;
        }
        float sumf1 = 0, sumf2 = 0;
        for (int g = 0; g < 8; g++) {
            const uint32_t aux = rd32(w + t->ls_at + t->ls_step * g) >> 28; /* ggml's aux32 >> 28 */
            const int32_t p = grp[g] / (int32_t)(2 * aux + 1); /* the group's unscaled dot */
            if (g % 2) sumf2 = fmaf((float)p, 0.5f + (float)aux, sumf2);
            else sumf1 = fmaf((float)p, 0.5f + (float)aux, sumf1);
        }
        sumf = fmaf(d, sumf1 + sumf2, sumf);
    }
    *arm = t->nfactor * sumf;
    return t->factor * hsum8(acc);
}

/* IQ1_S: sumi from the grid (-1, 0, 1) with the 3-bit scales, sumi1 from the bsums with the
 * delta's sign; accum = fma(d, sumi, accum), accum1 += d * sumi1 (an fma), the result
 * hsum_float_8(accum) + IQ1S_DELTA * accum1 (an fma).
 * NEON: sumf += y.d * d_w * (sumi + IQ1S_DELTA * sumi1), both fused. */
static float ref_iq1_s(const itype *t, const ref_q8K *y, const uint8_t *w, int nb, float *arm) {
    (void)t;
    float acc[8] = {0}, accum1 = 0, sumf = 0;
    for (int i = 0; i < nb; i++, w += 50) {
        const uint8_t *qs = w + 2;
        int32_t lane[8] = {0}, sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const unsigned qh = rd16(w + 34 + 2 * ib);
            const unsigned idx[4] = {qs[0] | ((qh << 8) & 0x700), qs[1] | ((qh << 5) & 0x700),
                                     qs[2] | ((qh << 2) & 0x700), qs[3] | ((qh >> 1) & 0x700)};
            qs += 4;
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            for (int l = 0; l < 4; l++)
                for (int j = 0; j < 8; j++)
                    lane[(8 * l + j) / 4] += ls * (int8_t)(pare_iq1s_grid[idx[l]] >> (8 * j)) * y[i].qs[32 * ib + 8 * l + j];
            sumi1 += (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]) * (qh & 0x8000 ? -1 : 1) * ls;
        }
        const float d = y[i].d * h2f(w);
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        accum1 = fmaf(d, (float)sumi1, accum1);
        int32_t sumi = 0;
        for (int l = 0; l < 8; l++) sumi += lane[l];
        sumf = fmaf(d, fmaf(0.125f, (float)sumi1, (float)sumi), sumf);
    }
    *arm = sumf;
    return fmaf(0.125f, accum1, hsum8(acc));
}

/* IQ1_M: the f16 scale from the scale words' top nibbles; per pair of groups one scale word,
 * its 3-bit fields at shifts 0, 3 (group ib, halves of 16) and 6, 9 (group ib + 1);
 * sumi1 with the grid, sumi2 with the delta signs (qh bits 3 and 7); two accumulators; the
 * result hsum_float_8(accum1) + IQ1M_DELTA * hsum_float_8(accum2) (an fma).
 * NEON: sumf += y.d * d_w * (sumi1 + IQ1M_DELTA * sumi2), both fused. */
static float ref_iq1_m(const itype *t, const ref_q8K *y, const uint8_t *w, int nb, float *arm) {
    (void)t;
    float acc1[8] = {0}, acc2[8] = {0}, sumf = 0;
    for (int i = 0; i < nb; i++, w += 56) {
        const uint8_t *qs = w, *qh = w + 32;
        uint16_t sc[4];
        for (int k = 0; k < 4; k++) sc[k] = rd16(w + 48 + 2 * k);
        const uint16_t sbits = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        int32_t lane1[8] = {0}, lane2[8] = {0};
        for (int ib = 0; ib < 8; ib++) {
            const unsigned word = sc[ib / 2], sh = ib % 2 ? 6 : 0;
            const int s[2] = {2 * ((word >> sh) & 7) + 1, 2 * ((word >> (sh + 3)) & 7) + 1};
            const unsigned idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                                     qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
            const int delta[4] = {qh[0] & 0x08 ? -1 : 1, qh[0] & 0x80 ? -1 : 1, qh[1] & 0x08 ? -1 : 1,
                                  qh[1] & 0x80 ? -1 : 1};
            for (int l = 0; l < 4; l++)
                for (int j = 0; j < 8; j++) {
                    const int q = y[i].qs[32 * ib + 8 * l + j];
                    lane1[(8 * l + j) / 4] += s[l / 2] * (int8_t)(pare_iq1s_grid[idx[l]] >> (8 * j)) * q;
                    lane2[(8 * l + j) / 4] += s[l / 2] * delta[l] * q;
                }
            qs += 4, qh += 2;
        }
        const float d = y[i].d * pare_fp16_to_fp32(sbits);
        for (int l = 0; l < 8; l++) acc1[l] = fmaf(d, (float)lane1[l], acc1[l]), acc2[l] = fmaf(d, (float)lane2[l], acc2[l]);
        int32_t sumi1 = 0, sumi2 = 0;
        for (int l = 0; l < 8; l++) sumi1 += lane1[l], sumi2 += lane2[l];
        sumf = fmaf(d, fmaf(0.125f, (float)sumi2, (float)sumi1), sumf);
    }
    *arm = sumf;
    return fmaf(0.125f, hsum8(acc2), hsum8(acc1));
}

/* The product in the order of the build's instruction set: the NEON form on aarch64 (both
 * levels, with and without sdot), the AVX2 form elsewhere; *other gets the other one. */
static float ref_dot(const itype *t, const ref_q8K *y, const uint8_t *w, int nb, float *other) {
    float arm, x86;
    if (t->type == PARE_TYPE_IQ1_S) x86 = ref_iq1_s(t, y, w, nb, &arm);
    else if (t->type == PARE_TYPE_IQ1_M) x86 = ref_iq1_m(t, y, w, nb, &arm);
    else x86 = ref_scaled(t, y, w, nb, &arm);
#if defined(__ARM_NEON)
    *other = x86;
    return arm;
#else
    *other = arm;
    return x86;
#endif
}

/* ---------------------------------------------------------------- tests */

/* A sane f16 scale into a block of random bits (grid indices and signs are any bits). */
static void set_scale(const itype *t, uint8_t *blk) {
    const uint16_t h = pare_fp32_to_fp16(ldexpf(1.0f + frand() * 0.5f, -9));
    if (t->type != PARE_TYPE_IQ1_M) {
        blk[0] = (uint8_t)h, blk[1] = (uint8_t)(h >> 8);
        return;
    }
    for (int k = 0; k < 4; k++) { /* nibble k of the f16 in the top nibble of scale word k */
        const uint16_t sw = (uint16_t)((rd16(blk + 48 + 2 * k) & 0x0fff) | ((h >> (4 * k)) & 0xf) << 12);
        blk[48 + 2 * k] = (uint8_t)sw, blk[49 + 2 * k] = (uint8_t)(sw >> 8);
    }
}

/* Outputs where the AVX2 and NEON forms give different floats, per type over all checks:
 * the test tells the two orders apart only where some do. */
static int64_t order_matters[NTYPES];

/* extreme: every weight byte but the scale set (the largest grid indices and scales, every
 * sign bit) and activations of equal magnitude (every code +-127, the sign flipping per
 * group of 32 and per row): the largest integer sums the paths meet. */
static void check_shape_x(pare_pool *pool, const itype *t, int M, int N, int K, bool extreme) {
    const int nb = K / 256;
    const size_t row = (size_t)nb * t->bytes;
    float *x = malloc((size_t)M * K * sizeof *x), *y = malloc((size_t)M * N * sizeof *y);
    uint8_t *w = malloc((size_t)N * row);
    ref_q8K *q = malloc((size_t)nb * sizeof *q);
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = frand() * (i % 89 == 0 ? 6.0f : 1.0f);
    for (int i = 0; i < 256 && i < K; i++) x[i] = 0; /* an all-zero block */
    if (M > 1) x[K + 3] = -9.5f, x[K + 7] = 9.5f;     /* the largest magnitude twice: the first one's sign counts */
    if (M > 3) x[3 * K + 5] = NAN;                    /* skipped by the maximum, code 0 */
    for (size_t i = 0; i < (size_t)N * row; i++) w[i] = (uint8_t)next_u32();
    if (extreme) {
        for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (i / 32 + i / (size_t)K) % 2 ? 3.0f : -3.0f;
        memset(w, 0xFF, (size_t)N * row);
    }
    for (int n = 0; n < N; n++)
        for (int b = 0; b < nb; b++) set_scale(t, w + n * row + (size_t)b * t->bytes);
    void *ws = malloc(llm_iqgemm_ws(M, K));
    CHECK(llm_iqgemm(pool, t->type, M, N, K, x, K, w, y, N, ws));
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++) {
        for (int b = 0; b < nb; b++) ref_q8_K(x + (size_t)i * K + 256 * b, &q[b]);
        for (int n = 0; n < N; n++) {
            float other;
            const float r = ref_dot(t, q, w + n * row, nb, &other), v = y[(size_t)i * N + n];
            if (memcmp(&r, &other, sizeof r)) order_matters[t - itypes]++;
            if (memcmp(&r, &v, sizeof r)) bad++, worst = fmax(worst, fabs((double)r - v));
        }
    }
    CHECK_MSG(bad == 0, "%s (%s path)%s M %d N %d K %d, %d threads: %lld of %lld outputs differ (largest %g)", t->name,
              build_path(), extreme ? " extreme" : "", M, N, K, pare_pool_threads(pool), (long long)bad,
              (long long)M * N, worst);
    free(x), free(y), free(w), free(ws), free(q);
}

static void check_shape(pare_pool *pool, const itype *t, int M, int N, int K) {
    check_shape_x(pool, t, M, N, K, false);
}

static void test_iqgemm_bit_exact(void) {
    printf("iqgemm path of this build: %s\n", build_path());
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool);
    /* partial tiles in both directions (N not a multiple of 2, 3 or 4, M of 3 or 4); the last
     * two have more rows than one 512-row block of activations */
    const int shapes[][3] = {{1, 1, 256}, {5, 3, 512}, {4, 2, 256}, {13, 25, 768}, {33, 64, 2048}, {1030, 5, 256},
                             {517, 7, 512}};
    for (size_t t = 0; t < NTYPES; t++) {
        CHECK_MSG(llm_iqgemm_handles(itypes[t].type), "%s not handled", itypes[t].name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check_shape(NULL, &itypes[t], shapes[s][0], shapes[s][1], shapes[s][2]);
            check_shape(pool, &itypes[t], shapes[s][0], shapes[s][1], shapes[s][2]);
        }
        check_shape_x(pool, &itypes[t], 9, 10, 1024, true);
        check_shape_x(NULL, &itypes[t], 5, 3, 256, true);
        printf("  %s: %lld outputs differ between the AVX2 and NEON forms\n", itypes[t].name,
               (long long)order_matters[t]);
        CHECK_MSG(order_matters[t] > 0, "%s: the AVX2 and NEON forms never differed: the test cannot tell them apart",
                  itypes[t].name);
    }
    pare_pool_free(pool);
}

static void test_iqgemm_refuses(void) {
    float x[256] = {0}, y[1];
    uint8_t w[256] = {0};
    char ws[8192];
    CHECK(!llm_iqgemm(NULL, PARE_TYPE_IQ2_XXS, 1, 1, 128, x, 128, w, y, 1, ws)); /* K not a multiple of 256 */
    CHECK(!llm_iqgemm(NULL, PARE_TYPE_IQ2_XXS, 0, 1, 256, x, 256, w, y, 1, ws)); /* no rows */
    CHECK(!llm_iqgemm(NULL, PARE_TYPE_IQ3_S, 1, 0, 256, x, 256, w, y, 1, ws));
    /* types it does not do: K-quants and IQ4_XS (kgemm.c), 8-bit-activation types, floats */
    const pare_type others[] = {PARE_TYPE_Q4_K, PARE_TYPE_IQ4_XS, PARE_TYPE_Q8_0, PARE_TYPE_IQ4_NL, PARE_TYPE_F32,
                                PARE_TYPE_TQ2_0};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK(!llm_iqgemm_handles(others[i]));
        CHECK(!llm_iqgemm(NULL, others[i], 1, 1, 256, x, 256, w, y, 1, ws));
    }
}

int main(void) {
    TH_RUN(test_iqgemm_bit_exact);
    TH_RUN(test_iqgemm_refuses);
    return th_done();
}
