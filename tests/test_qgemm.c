/* tests/test_qgemm.c - the integer products with Q8_0-activation weights (verify/qgemm.c)
 * against plain transcriptions of what llama.cpp does on x86: quantize_row_q8_0 for the
 * activations, then per output eight lanes of 4-byte integer dots, fma(d_w * d_x, dot, lane)
 * block after block, and tinyBLAS's final sum of a 256-bit register. Bit-exact equality is
 * required, for shapes that leave partial tiles (M % 4, N % 6, odd N), on one thread and on a
 * pool. */
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


/* Q8_0 weights with random codes in [-127, 127] and f16 scales of varied size. */
static uint8_t *make_weights(int N, int K) {
    const int nb = K / 32;
    uint8_t *w = malloc((size_t)N * nb * 34);
    for (int n = 0; n < N; n++)
        for (int l = 0; l < nb; l++) {
            uint8_t *b = w + ((size_t)n * nb + l) * 34;
            const uint16_t d = pare_fp32_to_fp16(ldexpf(1.0f + frand() * 0.5f, -8 + (int)(next_u32() % 6)));
            b[0] = (uint8_t)d, b[1] = (uint8_t)(d >> 8);
            for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)((int)(next_u32() % 255) - 127);
        }
    return w;
}

static float ref_dot(const float *x, const uint8_t *w, int K) {
    float lane[8] = {0};
    for (int l = 0; l < K / 32; l++, x += 32, w += 34) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float dx = pare_fp16_to_fp32(pare_fp32_to_fp16(amax / 127.f)), id = amax != 0 ? 127.f / amax : 0.f;
        const float dw = pare_fp16_to_fp32((uint16_t)(w[0] | w[1] << 8));
        for (int j = 0; j < 8; j++) {
            int s = 0;
            for (int i = 4 * j; i < 4 * j + 4; i++) s += (int)nearbyintf(x[i] * id) * (int8_t)w[2 + i];
            lane[j] = fmaf(dw * dx, (float)s, lane[j]);
        }
    }
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

static void check_shape(pare_pool *pool, int M, int N, int K) {
    float *x = malloc((size_t)M * K * sizeof *x), *y = malloc((size_t)M * N * sizeof *y);
    for (int i = 0; i < M * K; i++) x[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < 32 && i < K; i++) x[i] = 0; /* a block of zeros: d = 0 */
    uint8_t *w = make_weights(N, K);
    void *ws = malloc(llm_qgemm_ws(M, K));
    CHECK(llm_qgemm(pool, PARE_TYPE_Q8_0, M, N, K, x, K, w, (size_t)K / 32 * 34, y, N, ws));
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            const float r = ref_dot(x + (size_t)i * K, w + (size_t)n * (K / 32) * 34, K);
            const float v = y[(size_t)i * N + n];
            if (memcmp(&r, &v, sizeof r)) bad++, worst = fmax(worst, fabs((double)r - v));
        }
    CHECK_MSG(bad == 0, "M %d N %d K %d, %d threads: %lld of %lld outputs differ (largest %g)", M, N, K,
              pare_pool_threads(pool), (long long)bad, (long long)M * N, worst);
    free(x), free(y), free(w), free(ws);
}

static void test_qgemm_bit_exact(void) {
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool);
    const int shapes[][3] = {{1, 1, 32}, {5, 7, 64}, {4, 6, 96}, {13, 25, 256}, {37, 131, 768}, {64, 256, 2048}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        check_shape(NULL, shapes[s][0], shapes[s][1], shapes[s][2]);
        check_shape(pool, shapes[s][0], shapes[s][1], shapes[s][2]);
    }
    /* K not a multiple of the block: refused, the caller takes the f32 path */
    float x[48] = {0}, y[1];
    uint8_t w[68] = {0};
    char ws[4096];
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q8_0, 1, 1, 48, x, 48, w, 68, y, 1, ws));
    pare_pool_free(pool);
}

int main(void) {
    TH_RUN(test_qgemm_bit_exact);
    return th_done();
}
