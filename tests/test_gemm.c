/* tests/test_gemm.c - the evaluator's f32 product (verify/gemm.c) against float64 sums, for
 * shapes that leave partial tiles and packed blocks, on strided operands, with B as it is
 * and, where the build packs weights ahead (pare's own kernel: AVX-512, AVX2), packed. */
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

/* ---------------------------------------------------------------- f32 (gemm.c) */

static void check_f32(pare_pool *pool, int M, int N, int K, int pad, bool packed) {
    const int lda = K + pad, ldb = K + 2 * pad, ldc = N + pad;
    float *a = malloc((size_t)M * lda * sizeof *a), *b = malloc((size_t)N * ldb * sizeof *b);
    float *c = malloc((size_t)M * ldc * sizeof *c);
    for (int i = 0; i < M * lda; i++) a[i] = frand();
    for (int i = 0; i < N * ldb; i++) b[i] = frand();
    for (int i = 0; i < M * ldc; i++) c[i] = 12345.0f; /* past N it must stay */
    float *ws = malloc((llm_gemm_ws(M, K) + 1) * sizeof *ws);
    float *bp = packed ? malloc(llm_gemm_packed_len(N, K) * sizeof *bp) : NULL;
    if (bp) {
        llm_gemm_pack(pool, N, K, b, ldb, bp);
        llm_gemm_nt_packed(pool, M, N, K, a, lda, bp, c, ldc, ws);
    } else {
        llm_gemm_nt(pool, M, N, K, a, lda, b, ldb, c, ldc, ws);
    }
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++) {
        for (int n = 0; n < N; n++) {
            double r = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                r += (double)a[(size_t)i * lda + k] * b[(size_t)n * ldb + k];
                mag += fabs((double)a[(size_t)i * lda + k] * b[(size_t)n * ldb + k]);
            }
            const double e = fabs(r - c[(size_t)i * ldc + n]);
            if (e > 1e-6 * mag + 1e-30) bad++;
            worst = fmax(worst, e);
        }
        for (int n = N; n < ldc; n++) bad += c[(size_t)i * ldc + n] != 12345.0f;
    }
    CHECK_MSG(bad == 0, "f32 M %d N %d K %d pad %d, %d threads%s: %lld wrong (largest error %g)", M, N, K, pad,
              pare_pool_threads(pool), bp ? ", packed B" : "", (long long)bad, worst);
    free(a), free(b), free(c), free(ws), free(bp);
}

static void test_gemm_f32(void) {
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool != NULL);
    /* K: one value, under and over one 16-value block, several 1024-value panels; N: under one
     * 16-row block, one and a half, several 32-row panels with a tail; M: partial 12-row (6-row
     * with AVX2) panels, and more rows than a block of A (AVX2: 48) */
    static const int shapes[][3] = {{1, 1, 1},   {5, 7, 3},     {12, 16, 16},  {13, 17, 33},
                                    {25, 48, 256}, {40, 70, 300}, {64, 96, 513}, {7, 200, 768},
                                    {30, 70, 2100}, {101, 40, 1100}};
    const bool packs = llm_gemm_packed_len(16, 16) > 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int pad = 0; pad <= 3; pad += 3)
            for (int p = 0; p <= (int)packs; p++) {
                check_f32(NULL, shapes[s][0], shapes[s][1], shapes[s][2], pad, p);
                check_f32(pool, shapes[s][0], shapes[s][1], shapes[s][2], pad, p);
            }
    pare_pool_free(pool);
}

int main(void) {
    TH_RUN(test_gemm_f32);
    return th_done();
}
