/*
 * verify/qgemm.c - the product of the forward pass for Q8_0 weights, done the way llama.cpp
 * does it on x86, in integers: y[M][N] = x[M][K] W[N][K]^T.
 *
 * ggml-cpu quantizes the activations x to Q8_0 (per block of 32: d = amax / 127 kept as f16,
 * q = x * 127 / amax rounded to nearest even), and llamafile's tinyBLAS multiplies the two
 * Q8_0 matrices: for each output, eight float lanes, lane j holding the integer dot product
 * of bytes 4j..4j+3 of each block pair, accumulated over the blocks l in order with
 * fma(d_w[l] * d_x[l], dot_j[l], acc_j), then summed as ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
 * Doing exactly that gives the same floats as llama.cpp for every product (the scale product
 * of two f16 values is exact in f32, the integer dots are exact), so a Q8_0 model's
 * activations round to the same Q8_0 codes in both programs.
 *
 * With AVX-512 VNNI the dots come from vpdpbusd, which multiplies unsigned by signed bytes:
 * the activations are stored as q + 128 (1..255) and the excess 128 * sum(w) of each lane
 * is subtracted by starting the accumulation at -128 * sum(w) (computed once per weight
 * block with the same instruction). Two weight rows share one register (lanes 0-7 and 8-15).
 * A thread prepares a tile of 6 weight rows (codes, corrections, scales; in L1) and runs it
 * against every group of 4 activation rows. Without VNNI, plain C computes the same sums.
 */
#include "verify/llm_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define QG_VNNI 1
#endif

#define QK 32       /* values per Q8_0 block */
#define QB 34       /* bytes per Q8_0 block: f16 d, 32 int8 */
#define MRQ 4       /* activation rows per tile */
#define NPQ 3       /* pairs of weight rows per tile */

static float f16(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }

/* ------------------------------------------------------------------------ activations */

typedef struct {
    const float *x;
    int ldx, K, nb;
    uint8_t *xu; /* [Mp][K]: q + 128 */
    float *xd;   /* [Mp][nb]: d as f32 */
} quant_job;

/* One row as ggml-cpu's x86 quantize_row_q8_0. */
#if defined(QG_VNNI)
/* Sixteen codes x * id + 128, rounded to nearest even as nearbyintf in the default mode
 * (codes 1..255 fit a byte). */
static inline __m128i codes16(__m512 x, __m512 id) {
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(x, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32(128)));
}
#endif

static void quant_row(void *ctx, int64_t r, int thread) {
    (void)thread;
    const quant_job *j = ctx;
    const float *x = j->x + (size_t)r * j->ldx;
    uint8_t *u = j->xu + (size_t)r * j->K;
    float *d = j->xd + (size_t)r * j->nb;
    for (int b = 0; b < j->nb; b++, x += QK, u += QK) {
#if defined(QG_VNNI)
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
#else
        float amax = 0;
        for (int i = 0; i < QK; i++) {
            const float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
#endif
        d[b] = pare_fp16_to_fp32(pare_fp32_to_fp16(amax / 127.f));
        const float id = amax != 0 ? 127.f / amax : 0.f;
#if defined(QG_VNNI)
        const __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)u, codes16(x0, vid));
        _mm_storeu_si128((__m128i *)(u + 16), codes16(x1, vid));
#else
        for (int i = 0; i < QK; i++) u[i] = (uint8_t)((int)nearbyintf(x[i] * id) + 128);
#endif
    }
}

/* ------------------------------------------------------------------------ products */

typedef struct {
    int M, Mp, N, K, nb;
    const uint8_t *xu;
    const float *xd;
    const uint8_t *W;
    size_t ldw;
    float *y;
    int ldy;
    int rows_per_item; /* a multiple of 2 * NPQ */
} prod_job;

/* Plain C: output (i, n) with the same lanes and order. */
static float dot_ref(const prod_job *g, int i, int n) {
    float acc[8] = {0};
    const uint8_t *u = g->xu + (size_t)i * g->K;
    const uint8_t *w = g->W + (size_t)n * g->ldw;
    for (int l = 0; l < g->nb; l++, w += QB, u += QK) {
        const float d = f16(w) * g->xd[(size_t)i * g->nb + l];
        const int8_t *q = (const int8_t *)(w + 2);
        for (int j = 0; j < 8; j++) {
            int32_t s = 0;
            for (int b = 4 * j; b < 4 * j + 4; b++) s += ((int32_t)u[b] - 128) * q[b];
            acc[j] = fmaf(d, (float)s, acc[j]);
        }
    }
    return llm_hsum8(acc);
}

#if defined(QG_VNNI)

/* A tile of 2 * NPQ weight rows, prepared for every block: codes of two rows per register,
 * -128 * (sum of each lane's 4 codes), the two rows' scales. */
typedef struct {
    __m512i w[NPQ], negc[NPQ];
    __m512 dw[NPQ];
} wtile;

static void prep_tile(const prod_job *g, int n0, wtile *t) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    for (int p = 0; p < NPQ; p++) {
        int na = n0 + 2 * p, nb2 = na + 1;
        if (na >= g->N) na = g->N - 1; /* rows past N repeat the last one; not stored */
        if (nb2 >= g->N) nb2 = g->N - 1;
        const uint8_t *a = g->W + (size_t)na * g->ldw, *b = g->W + (size_t)nb2 * g->ldw;
        for (int l = 0; l < g->nb; l++, a += QB, b += QB) {
            wtile *tl = t + l;
            const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(a + 2))),
                                                 _mm256_loadu_si256((const void *)(b + 2)), 1);
            tl->w[p] = w;
            tl->negc[p] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w));
            tl->dw[p] = _mm512_insertf32x8(_mm512_set1_ps(f16(a)), _mm256_set1_ps(f16(b)), 1);
        }
    }
}

/* Outputs of activation rows [m0, m0 + MRQ) x the tile's rows starting at n0. */
static void run_tile(const prod_job *g, const wtile *t, int m0, int n0) {
    __m512 acc[MRQ][NPQ];
    for (int i = 0; i < MRQ; i++)
        for (int p = 0; p < NPQ; p++) acc[i][p] = _mm512_setzero_ps();
    const uint8_t *u = g->xu + (size_t)m0 * g->K;
    const float *xd = g->xd + (size_t)m0 * g->nb;
    for (int l = 0; l < g->nb; l++, t++) {
#pragma GCC unroll 4
        for (int i = 0; i < MRQ; i++) {
            const __m512i ui = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)(u + (size_t)i * g->K + l * QK)));
            const __m512 dx = _mm512_set1_ps(xd[(size_t)i * g->nb + l]);
#pragma GCC unroll 3
            for (int p = 0; p < NPQ; p++) {
                const __m512i s = _mm512_dpbusd_epi32(t->negc[p], ui, t->w[p]);
                acc[i][p] = _mm512_fmadd_ps(_mm512_mul_ps(t->dw[p], dx), _mm512_cvtepi32_ps(s), acc[i][p]);
            }
        }
    }
    for (int i = 0; i < MRQ && m0 + i < g->M; i++) {
        float *y = g->y + (size_t)(m0 + i) * g->ldy;
        for (int p = 0; p < NPQ; p++) {
            float a[16];
            _mm512_storeu_ps(a, acc[i][p]);
            const int n = n0 + 2 * p;
            if (n < g->N) y[n] = llm_hsum8(a);
            if (n + 1 < g->N) y[n + 1] = llm_hsum8(a + 8);
        }
    }
}

static void prod_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const prod_job *g = ctx;
    const int n0 = (int)item * g->rows_per_item;
    const int n1 = n0 + g->rows_per_item < g->N ? n0 + g->rows_per_item : g->N;
    wtile *t = aligned_alloc(64, (size_t)g->nb * sizeof *t);
    if (!t) { /* out of memory: the plain way */
        for (int i = 0; i < g->M; i++)
            for (int n = n0; n < n1; n++) g->y[(size_t)i * g->ldy + n] = dot_ref(g, i, n);
        return;
    }
    for (int n = n0; n < n1; n += 2 * NPQ) {
        prep_tile(g, n, t);
        for (int m = 0; m < g->M; m += MRQ) run_tile(g, t, m, n);
    }
    free(t);
}

#else

static void prod_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const prod_job *g = ctx;
    const int n0 = (int)item * g->rows_per_item;
    const int n1 = n0 + g->rows_per_item < g->N ? n0 + g->rows_per_item : g->N;
    for (int i = 0; i < g->M; i++)
        for (int n = n0; n < n1; n++) g->y[(size_t)i * g->ldy + n] = dot_ref(g, i, n);
}

#endif

size_t llm_qgemm_ws(int M, int K) {
    const size_t Mp = (size_t)(M + MRQ - 1) / MRQ * MRQ;
    return Mp * (size_t)K + Mp * (size_t)(K / QK) * sizeof(float) + 64;
}

bool llm_qgemm_handles(pare_type wtype) { return wtype == PARE_TYPE_Q8_0; }

bool llm_qgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               size_t ldw, float *y, int ldy, void *ws) {
    if (!llm_qgemm_handles(wtype) || K % QK || M <= 0 || N <= 0) return false;
    const int nb = K / QK, Mp = (M + MRQ - 1) / MRQ * MRQ;
    uint8_t *xu = ws;
    float *xd = (float *)(((uintptr_t)(xu + (size_t)Mp * K) + 63) & ~(uintptr_t)63);
    quant_job qj = {x, ldx, K, nb, xu, xd};
    pare_pool_for(pool, M, quant_row, &qj);
    /* padding rows of the last tile: zero codes (128) and scales, never stored */
    memset(xu + (size_t)M * K, 128, (size_t)(Mp - M) * K);
    memset(xd + (size_t)M * nb, 0, (size_t)(Mp - M) * nb * sizeof *xd);
    const int threads = pare_pool_threads(pool), tile = 2 * NPQ;
    /* a few items per thread: uneven finishing evens out, tiles stay whole */
    int items = threads > 1 ? 4 * threads : 1;
    int per = (N + items - 1) / items;
    per = (per + tile - 1) / tile * tile;
    items = (N + per - 1) / per;
    prod_job g = {M, Mp, N, K, nb, xu, xd, W, ldw, y, ldy, per};
    pare_pool_for(pool, items, prod_item, &g);
    return true;
}
