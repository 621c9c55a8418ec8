/* tests/test_kgemm.c - the integer products with K-quant weights (verify/kgemm.c) against
 * plain transcriptions of ggml_vec_dot_*_q8_K's AVX2 forms (llama.cpp of February 2025,
 * ggml-cpu-quants.c), bit for bit, on one thread and on a pool, for every type it takes; on
 * Arm (built for aarch64: __ARM_NEON) against their NEON forms instead.
 *
 * The references read the raw blocks the way ggml does (its scale decoding with kmask words
 * for Q3_K, nibble and bit extraction per 32-byte load) and keep ggml's float accumulators
 * and order; kgemm.c unpacks differently, so a layout slip on either side shows. The build
 * decides which path of kgemm.c runs (AVX-512 VNNI, AVX2 or plain C: the same macros as
 * kgemm.c), and the test names it. */
#include "core/core.h"
#include "core/isa.h"
#include "verify/llm_impl.h"
#include "th.h"
#include "kq_ref.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__ARM_NEON)
static float hsum8(const float *a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }
#endif

/* The NEON forms (ggml-cpu-quants.c, __ARM_NEON branches) reduce a super-block to one
 * integer, sumi = the whole dot of the signed values times their scales, and keep one
 * float: sumf += d * sumi (Q2_K and Q4_K first add -dmin x the mins' integer; Q5_K adds
 * d * sumi - dmin * mins at once). GCC contracts these lines in its default GNU C mode
 * (checked on GCC 12: fmadd, fmsub; Q5_K: fmul, fnmsub, fadd). */
static int lanes_total(const int lane[8]) {
    int t = 0;
    for (int l = 0; l < 8; l++) t += lane[l];
    return t;
}

/* ggml's unpacking of the 12 bytes of Q4_K/Q5_K scales into utmp (scales in bytes 0-7,
 * mins in 8-15). */
static void ref_utmp_k4(const uint8_t *scales, uint8_t out[16]) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t utmp[4];
    memcpy(utmp, scales, 12);
    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = utmp[1] & kmask1;
    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
    utmp[2] = uaux;
    utmp[0] &= kmask1;
    memcpy(out, utmp, 16); /* little-endian, as on x86 */
}

/* Q4_K: 144 bytes: f16 d, f16 dmin, scales[12], qs[128]. acc: 8 lanes; acc_m: 4 lanes of the
 * mins against the 32-sums (hadd of bsums). */
static float ref_q4_K(const ref_q8K *y, const uint8_t *w, int nb) {
    float acc[8] = {0}, accm[4] = {0}, one = 0;
    for (int b = 0; b < nb; b++, w += 144) {
        const float d = y[b].d * h2f(w), dmin = -y[b].d * h2f(w + 2);
        uint8_t sm[16];
        ref_utmp_k4(w + 4, sm);
        int mins = 0;
        for (int k = 0; k < 4; k++) {
            const int q8s0 = y[b].bsums[4 * k] + y[b].bsums[4 * k + 1], q8s1 = y[b].bsums[4 * k + 2] + y[b].bsums[4 * k + 3];
            accm[k] = fmaf(dmin, (float)(sm[8 + 2 * k] * q8s0 + sm[8 + 2 * k + 1] * q8s1), accm[k]);
            mins += sm[8 + 2 * k] * q8s0 + sm[8 + 2 * k + 1] * q8s1;
        }
        one = fmaf(dmin, (float)mins, one); /* sumf -= dmin * mins (dmin here is negative) */
        int lane[8] = {0};
        for (int j = 0; j < 4; j++) /* 32 bytes: low nibbles against q8[64j..], high against q8[64j+32..] */
            for (int i = 0; i < 32; i++) {
                const uint8_t byte = w[16 + 32 * j + i];
                lane[i / 4] += sm[2 * j] * (byte & 15) * y[b].qs[64 * j + i] + sm[2 * j + 1] * (byte >> 4) * y[b].qs[64 * j + 32 + i];
            }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        one = fmaf(d, (float)lanes_total(lane), one);
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
#endif
}

/* Q5_K: 176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]. The mins go to one float,
 * summs += dmin * isum, which GCC contracts into an fma. */
static float ref_q5_K(const ref_q8K *y, const uint8_t *w, int nb) {
    float acc[8] = {0}, summs = 0, one = 0;
    for (int b = 0; b < nb; b++, w += 176) {
        const float d = y[b].d * h2f(w), dmin = -y[b].d * h2f(w + 2);
        uint8_t sm[16];
        ref_utmp_k4(w + 4, sm);
        int mins = 0;
        for (int k = 0; k < 8; k++) mins += sm[8 + k] * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        summs = fmaf(dmin, (float)mins, summs);
        const uint8_t *qh = w + 16, *qs = w + 48;
        int lane[8] = {0}, bit = 0;
        for (int j = 0; j < 4; j++, bit += 2)
            for (int i = 0; i < 32; i++) {
                const int v0 = (qs[32 * j + i] & 15) + (((qh[i] >> bit) & 1) << 4);
                const int v1 = (qs[32 * j + i] >> 4) + (((qh[i] >> (bit + 1)) & 1) << 4);
                lane[i / 4] += sm[2 * j] * v0 * y[b].qs[64 * j + i] + sm[2 * j + 1] * v1 * y[b].qs[64 * j + 32 + i];
            }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        one = one + fmaf(dmin, (float)mins, d * (float)lanes_total(lane)); /* sumf += d * sumi - dmin * mins */
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc) + summs;
#endif
}

/* Q6_K: 210 bytes: ql[128], qh[64], int8 scales[16], f16 d; pair products of the 6-bit codes
 * minus 32 x the pair sums, in 16 bits, times the 16-value scales. */
static float ref_q6_K(const ref_q8K *y, const uint8_t *w, int nb) {
    float acc[8] = {0}, one = 0;
    for (int b = 0; b < nb; b++, w += 210) {
        const float d = y[b].d * h2f(w + 208);
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        int lane[8] = {0};
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 32; i++) {
                const int v[4] = {(ql[64 * h + i] & 15) | ((qh[32 * h + i] & 3) << 4),
                                  (ql[64 * h + 32 + i] & 15) | (((qh[32 * h + i] >> 2) & 3) << 4),
                                  (ql[64 * h + i] >> 4) | (((qh[32 * h + i] >> 4) & 3) << 4),
                                  (ql[64 * h + 32 + i] >> 4) | (((qh[32 * h + i] >> 6) & 3) << 4)};
                for (int c = 0; c < 4; c++) {
                    const int idx = 128 * h + 32 * c + i;
                    lane[i / 4] += sc[idx / 16] * (v[c] - 32) * y[b].qs[idx];
                }
            }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        one = fmaf(d, (float)lanes_total(lane), one); /* sum += d * isum */
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc);
#endif
}

/* Q3_K: 110 bytes: hmask[32], qs[64], scales[12], f16 d. Scales as ggml's AVX2 code builds
 * them from three 32-bit words, minus 32; a value is its two bits minus 4 where the hmask
 * bit is clear. */
static float ref_q3_K(const ref_q8K *y, const uint8_t *w, int nb) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    float acc[8] = {0}, one = 0;
    for (int b = 0; b < nb; b++, w += 110) {
        const float d = y[b].d * h2f(w + 108);
        uint32_t aux[3], t[4];
        memcpy(aux, w + 96, 12);
        t[0] = (aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4);
        t[1] = (aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4);
        t[2] = ((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4);
        t[3] = ((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4);
        int8_t sc[16];
        memcpy(sc, t, 16);
        for (int j = 0; j < 16; j++) sc[j] = (int8_t)(sc[j] - 32);
        const uint8_t *hm = w, *qs = w + 32;
        int lane[8] = {0}, bit = 0;
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 4; k++, bit++)
                for (int i = 0; i < 32; i++) {
                    const int v = ((qs[32 * j + i] >> (2 * k)) & 3) - (((hm[i] >> bit) & 1) ? 0 : 4);
                    const int idx = 128 * j + 32 * k + i;
                    lane[i / 4] += sc[idx / 16] * v * y[b].qs[idx];
                }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        one = fmaf(d, (float)lanes_total(lane), one); /* sum += d * isum */
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc);
#endif
}

/* Q2_K: 84 bytes: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin.
 * The mins against the 16-sums go into the same eight lanes first, then the products. */
static float ref_q2_K(const ref_q8K *y, const uint8_t *w, int nb) {
    float acc[8] = {0}, one = 0;
    for (int b = 0; b < nb; b++, w += 84) {
        const float d = y[b].d * h2f(w + 80), dmin = -y[b].d * h2f(w + 82);
        int mins = 0;
        for (int k = 0; k < 8; k++) {
            acc[k] = fmaf(dmin, (float)((w[2 * k] >> 4) * y[b].bsums[2 * k] + (w[2 * k + 1] >> 4) * y[b].bsums[2 * k + 1]),
                          acc[k]);
            mins += (w[2 * k] >> 4) * y[b].bsums[2 * k] + (w[2 * k + 1] >> 4) * y[b].bsums[2 * k + 1];
        }
        one = fmaf(dmin, (float)mins, one); /* sum += dmin * mins (dmin = -y.d * dmin_w) */
        const uint8_t *qs = w + 16;
        int lane[8] = {0};
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 4; k++)
                for (int i = 0; i < 32; i++) {
                    const int idx = 128 * j + 32 * k + i;
                    lane[i / 4] += (w[idx / 16] & 15) * ((qs[32 * j + i] >> (2 * k)) & 3) * y[b].qs[idx];
                }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        one = fmaf(d, (float)lanes_total(lane), one); /* sum += d * isum */
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc);
#endif
}

/* IQ4_XS: 136 bytes: f16 d, u16 scales_h, scales_l[4], qs[128]; each 16 bytes hold a
 * 32-value group, low nibbles first; d = fp16(d) * y.d. */
static float ref_iq4_xs(const ref_q8K *y, const uint8_t *w, int nb) {
    static const int8_t kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    float acc[8] = {0}, one = 0;
    for (int b = 0; b < nb; b++, w += 136) {
        uint16_t sh = (uint16_t)(w[2] | w[3] << 8);
        int lane[8] = {0};
        for (int ib = 0; ib < 8; ib += 2) {
            const int ls1 = ((w[4 + ib / 2] & 0xf) | ((sh << 4) & 0x30)) - 32;
            const int ls2 = ((w[4 + ib / 2] >> 4) | ((sh << 2) & 0x30)) - 32;
            sh >>= 4;
            for (int half = 0; half < 2; half++) {
                const uint8_t *qs = w + 8 + 16 * (ib + half);
                const int8_t *q8 = y[b].qs + 32 * (ib + half);
                for (int i = 0; i < 32; i++) {
                    const int v = kvalues[i < 16 ? qs[i] & 15 : qs[i - 16] >> 4];
                    lane[i / 4] += (half ? ls2 : ls1) * v * q8[i];
                }
            }
        }
        for (int l = 0; l < 8; l++) acc[l] = fmaf(h2f(w) * y[b].d, (float)lane[l], acc[l]);
        one = fmaf(h2f(w) * y[b].d, (float)lanes_total(lane), one); /* sumf += d * y.d * (sumi1 + sumi2) */
    }
#if defined(__ARM_NEON)
    return one;
#else
    return hsum8(acc);
#endif
}

typedef struct {
    const char *name;
    pare_type type;
    size_t bytes;
    int d_at, dmin_at; /* f16 scales set to sane values by the test; -1: none */
    float (*ref)(const ref_q8K *y, const uint8_t *w, int nb);
} ktype;

static const ktype ktypes[] = {
    {"Q2_K", PARE_TYPE_Q2_K, 84, 80, 82, ref_q2_K},     {"Q3_K", PARE_TYPE_Q3_K, 110, 108, -1, ref_q3_K},
    {"Q4_K", PARE_TYPE_Q4_K, 144, 0, 2, ref_q4_K},      {"Q5_K", PARE_TYPE_Q5_K, 176, 0, 2, ref_q5_K},
    {"Q6_K", PARE_TYPE_Q6_K, 210, 208, -1, ref_q6_K},   {"IQ4_XS", PARE_TYPE_IQ4_XS, 136, 0, -1, ref_iq4_xs},
};

/* ---------------------------------------------------------------- tests */

static void put_f16(uint8_t *p, float v) {
    const uint16_t h = pare_fp32_to_fp16(v);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

static void check_kshape(pare_pool *pool, const ktype *kt, int M, int N, int K) {
    const int nb = K / 256;
    const size_t row = (size_t)nb * kt->bytes;
    float *x = malloc((size_t)M * K * sizeof *x), *y = malloc((size_t)M * N * sizeof *y);
    uint8_t *w = malloc((size_t)N * row);
    ref_q8K *q = malloc((size_t)nb * sizeof *q);
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = frand() * (i % 89 == 0 ? 6.0f : 1.0f);
    for (int i = 0; i < 256 && i < K; i++) x[i] = 0; /* an all-zero block */
    if (M > 1) /* the largest magnitude twice, with both signs: the first one's sign counts */
        x[K + 3] = -9.5f, x[K + 7] = 9.5f;
    if (M > 2) x[2 * K + 3] = 9.5f, x[2 * K + 7] = -9.5f;
    if (M > 3) x[3 * K + 5] = NAN; /* skipped by the maximum, code 0 */
    for (size_t i = 0; i < (size_t)N * row; i++) w[i] = (uint8_t)next_u32();
    for (int n = 0; n < N; n++)
        for (int b = 0; b < nb; b++) {
            uint8_t *blk = w + n * row + (size_t)b * kt->bytes;
            put_f16(blk + kt->d_at, ldexpf(1.0f + frand() * 0.5f, -9));
            if (kt->dmin_at >= 0) put_f16(blk + kt->dmin_at, ldexpf(1.0f + frand() * 0.5f, -10));
        }
    void *ws = malloc(llm_kgemm_ws(M, K));
    CHECK(llm_kgemm(pool, kt->type, M, N, K, x, K, w, y, N, ws));
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++) {
        for (int b = 0; b < nb; b++) ref_q8_K(x + (size_t)i * K + 256 * b, &q[b]);
        for (int n = 0; n < N; n++) {
            const float r = kt->ref(q, w + n * row, nb), v = y[(size_t)i * N + n];
            if (memcmp(&r, &v, sizeof r)) bad++, worst = fmax(worst, fabs((double)r - v));
        }
    }
    CHECK_MSG(bad == 0, "%s (%s path) M %d N %d K %d, %d threads: %lld of %lld outputs differ (largest %g)", kt->name,
              build_path(), M, N, K, pare_pool_threads(pool), (long long)bad, (long long)M * N, worst);
    free(x), free(y), free(w), free(ws), free(q);
}

static void test_kgemm_bit_exact(void) {
    printf("kgemm path of this build: %s\n", build_path());
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool);
    /* partial tiles in both directions (N not a multiple of 2 or 3, M of 4); the last two have
     * more rows than one 512-row block of activations */
    const int shapes[][3] = {{1, 1, 256}, {5, 3, 512}, {4, 2, 256}, {13, 25, 768}, {33, 64, 2048}, {1030, 5, 256},
                             {517, 7, 512}};
    for (size_t t = 0; t < sizeof ktypes / sizeof ktypes[0]; t++) {
        CHECK_MSG(llm_kgemm_handles(ktypes[t].type), "%s not handled", ktypes[t].name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check_kshape(NULL, &ktypes[t], shapes[s][0], shapes[s][1], shapes[s][2]);
            check_kshape(pool, &ktypes[t], shapes[s][0], shapes[s][1], shapes[s][2]);
        }
    }
    pare_pool_free(pool);
}

static void test_kgemm_refuses(void) {
    float x[256] = {0}, y[1];
    uint8_t w[256] = {0};
    char ws[8192];
    CHECK(!llm_kgemm(NULL, PARE_TYPE_Q4_K, 1, 1, 128, x, 128, w, y, 1, ws)); /* K not a multiple of 256 */
    CHECK(!llm_kgemm(NULL, PARE_TYPE_Q4_K, 0, 1, 256, x, 256, w, y, 1, ws)); /* no rows */
    CHECK(!llm_kgemm(NULL, PARE_TYPE_Q6_K, 1, 0, 256, x, 256, w, y, 1, ws));
    /* types it does not do: Q8_K activations but another product, or not K-quants at all */
    const pare_type others[] = {PARE_TYPE_Q8_0, PARE_TYPE_Q4_0, PARE_TYPE_F32, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ2_XXS,
                                PARE_TYPE_TQ2_0};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK(!llm_kgemm_handles(others[i]));
        CHECK(!llm_kgemm(NULL, others[i], 1, 1, 256, x, 256, w, y, 1, ws));
    }
}

int main(void) {
    TH_RUN(test_kgemm_bit_exact);
    TH_RUN(test_kgemm_refuses);
    return th_done();
}
