/* tests/test_kgemm.c - the integer products with K-quant weights (verify/kgemm.c) against
 * plain transcriptions of ggml_vec_dot_*_q8_K, bit for bit, on one thread and on a pool. */
#include "core/core.h"
#include "verify/llm_impl.h"
#include "th.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)next_u32() / 4294967296.0f * 2 - 1; }


/* ---------------------------------------------------------------- Q4_K / Q6_K (kgemm.c) */

/* quantize_row_q8_K_ref for one block of 256, into codes and d. */
static float ref_q8_K(const float *x, int8_t *q) {
    float amax = 0, max = 0;
    for (int i = 0; i < 256; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax == 0) {
        memset(q, 0, 256);
        return 0;
    }
    const float iscale = -127.f / max;
    for (int i = 0; i < 256; i++) {
        int v = (int)nearbyintf(iscale * x[i]);
        q[i] = (int8_t)(v < 127 ? v : 127);
    }
    return 1 / iscale;
}

static void ref_scale_min(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) *d = q[j] & 63, *m = q[j + 4] & 63;
    else *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

/* ggml_vec_dot_q4_K_q8_K / q6_K_q8_K (AVX2), one output, written out lane by lane. */
static float ref_kdot(bool q6, const float *x, const uint8_t *w, int K) {
    float acc[8] = {0}, accm[4] = {0};
    for (int b = 0; b < K / 256; b++, x += 256) {
        int8_t q[256];
        const float yd = ref_q8_K(x, q);
        int lane[8] = {0};
        if (!q6) {
            const uint8_t *blk = w + (size_t)b * 144;
            const float d = yd * pare_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8));
            const float dmin = -yd * pare_fp16_to_fp32((uint16_t)(blk[2] | blk[3] << 8));
            int sc[8], mn[8], g32[8];
            for (int j = 0; j < 8; j++) ref_scale_min(j, blk + 4, &sc[j], &mn[j]);
            for (int k = 0; k < 8; k++) {
                g32[k] = 0;
                for (int i = 0; i < 32; i++) g32[k] += q[32 * k + i];
            }
            for (int j = 0; j < 4; j++) /* 64 values: low nibbles, then high nibbles, of 32 bytes */
                for (int i = 0; i < 32; i++) {
                    const uint8_t byte = blk[16 + 32 * j + i];
                    lane[i / 4] += sc[2 * j] * (byte & 15) * q[64 * j + i] + sc[2 * j + 1] * (byte >> 4) * q[64 * j + 32 + i];
                }
            for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
            for (int k = 0; k < 4; k++)
                accm[k] = fmaf(dmin, (float)(mn[2 * k] * g32[2 * k] + mn[2 * k + 1] * g32[2 * k + 1]), accm[k]);
        } else {
            const uint8_t *blk = w + (size_t)b * 210, *ql = blk, *qh = blk + 128;
            const int8_t *sc = (const int8_t *)(blk + 192);
            const float d = yd * pare_fp16_to_fp32((uint16_t)(blk[208] | blk[209] << 8));
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 32; i++) {
                    const int v[4] = {(ql[64 * h + i] & 15) | ((qh[32 * h + i] & 3) << 4),
                                      (ql[64 * h + 32 + i] & 15) | (((qh[32 * h + i] >> 2) & 3) << 4),
                                      (ql[64 * h + i] >> 4) | (((qh[32 * h + i] >> 4) & 3) << 4),
                                      (ql[64 * h + 32 + i] >> 4) | (((qh[32 * h + i] >> 6) & 3) << 4)};
                    for (int c = 0; c < 4; c++) {
                        const int idx = 128 * h + 32 * c + i;
                        lane[i / 4] += sc[idx / 16] * (v[c] - 32) * q[idx];
                    }
                }
            for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        }
    }
    const float r = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    return q6 ? r : r + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static void check_kshape(pare_pool *pool, bool q6, int M, int N, int K) {
    const size_t bb = q6 ? 210 : 144, row = (size_t)K / 256 * bb;
    float *x = malloc((size_t)M * K * sizeof *x), *y = malloc((size_t)M * N * sizeof *y);
    uint8_t *w = malloc((size_t)N * row);
    for (int i = 0; i < M * K; i++) x[i] = frand() * (i % 89 == 0 ? 6.0f : 1.0f);
    for (int i = 0; i < 256 && i < K; i++) x[i] = 0; /* an all-zero block */
    for (size_t i = 0; i < (size_t)N * row; i++) w[i] = (uint8_t)next_u32();
    for (int n = 0; n < N; n++) /* sane f16 scales */
        for (int b = 0; b < K / 256; b++) {
            uint8_t *blk = w + n * row + (size_t)b * bb;
            uint16_t d = pare_fp32_to_fp16(ldexpf(1.0f + frand() * 0.5f, -9)), dm = pare_fp32_to_fp16(ldexpf(1.0f, -10));
            if (q6) blk[208] = (uint8_t)d, blk[209] = (uint8_t)(d >> 8);
            else blk[0] = (uint8_t)d, blk[1] = (uint8_t)(d >> 8), blk[2] = (uint8_t)dm, blk[3] = (uint8_t)(dm >> 8);
        }
    void *ws = malloc(llm_kgemm_ws(M, K));
    CHECK(llm_kgemm(pool, q6 ? PARE_TYPE_Q6_K : PARE_TYPE_Q4_K, M, N, K, x, K, w, y, N, ws));
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            const float r = ref_kdot(q6, x + (size_t)i * K, w + n * row, K), v = y[(size_t)i * N + n];
            if (memcmp(&r, &v, sizeof r)) bad++, worst = fmax(worst, fabs((double)r - v));
        }
    CHECK_MSG(bad == 0, "%s M %d N %d K %d, %d threads: %lld of %lld outputs differ (largest %g)", q6 ? "Q6_K" : "Q4_K",
              M, N, K, pare_pool_threads(pool), (long long)bad, (long long)M * N, worst);
    free(x), free(y), free(w), free(ws);
}

static void test_kgemm_bit_exact(void) {
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool);
    /* the last: more rows than one 512-row block of activations, and a partial tile */
    const int shapes[][3] = {{1, 1, 256}, {5, 3, 512}, {4, 2, 256}, {13, 25, 768}, {33, 64, 2048}, {1030, 5, 256}};
    for (int q6 = 0; q6 < 2; q6++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check_kshape(NULL, q6, shapes[s][0], shapes[s][1], shapes[s][2]);
            check_kshape(pool, q6, shapes[s][0], shapes[s][1], shapes[s][2]);
        }
    float x[256] = {0}, y[1];
    uint8_t w[210] = {0};
    char ws[8192];
    CHECK(!llm_kgemm(NULL, PARE_TYPE_Q4_K, 1, 1, 128, x, 128, w, y, 1, ws)); /* K not a multiple of 256 */
    CHECK(!llm_kgemm(NULL, PARE_TYPE_Q5_K, 1, 1, 256, x, 256, w, y, 1, ws)); /* a type it does not do */
    pare_pool_free(pool);
}

int main(void) {
    TH_RUN(test_kgemm_bit_exact);
    return th_done();
}
