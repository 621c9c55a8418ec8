/*
 * verify/gemm.c - the f32 matrix product of the forward pass, C = A B^T, where both A (the
 * activations, [M][K]) and B (a weight, [N][K]) are contiguous along K, as ggml stores them.
 *
 * Threads split the N columns (weight rows); each thread walks its columns in tiles of
 * TILE_N weight rows (kept in L1) against tiles of TILE_M activation rows, over blocks of
 * BLOCK_M activation rows (kept in L2). With AVX-512 a tile is TILE_M x TILE_N dot products
 * of 16-float vectors accumulated in registers and reduced at the end (the scheme of
 * llamafile's tinyBLAS); without it, each thread calls OpenBLAS single-threaded on its
 * columns. Either way no OpenBLAS worker threads spin between calls.
 */
#include "verify/llm_impl.h"

#include <cblas.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define TILE_M 4
#define TILE_N 6
#define BLOCK_M 128

typedef struct {
    int M, N, K;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int n_per_item; /* columns per parallel item, a multiple of TILE_N */
} gemm_job;

#if defined(__AVX512F__)

/* One full TILE_M x TILE_N tile: C[i][j] = sum_k A[i][k] B[j][k]. The 24 accumulators are
 * named variables (GCC keeps an array of them in memory), spelled out by macros. */
#define ROW4(M) M(0) M(1) M(2) M(3)
#define COL6(M) M(0) M(1) M(2) M(3) M(4) M(5)
#define ACC_DECL(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j, c2##j = c0##j, c3##j = c0##j;
#define ACC_STEP(j)                                                                                \
    {                                                                                              \
        const __m512 b = LOADB(B + (size_t)(j) * ldb + k);                                        \
        c0##j = _mm512_fmadd_ps(a0, b, c0##j);                                                     \
        c1##j = _mm512_fmadd_ps(a1, b, c1##j);                                                     \
        c2##j = _mm512_fmadd_ps(a2, b, c2##j);                                                     \
        c3##j = _mm512_fmadd_ps(a3, b, c3##j);                                                     \
    }
#define ACC_STORE(j)                                                                               \
    C[j] = _mm512_reduce_add_ps(c0##j), C[ldc + j] = _mm512_reduce_add_ps(c1##j),                  \
    C[2 * (size_t)ldc + j] = _mm512_reduce_add_ps(c2##j), C[3 * (size_t)ldc + j] = _mm512_reduce_add_ps(c3##j);
#define LOADA(i) const __m512 a##i = LOADB(A + (size_t)(i) * lda + k);

static void tile_full(int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    COL6(ACC_DECL)
    int k = 0;
#define LOADB(p) _mm512_loadu_ps(p)
    for (; k + 16 <= K; k += 16) {
        ROW4(LOADA)
        COL6(ACC_STEP)
    }
#undef LOADB
    if (k < K) {
        const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
#define LOADB(p) _mm512_maskz_loadu_ps(m, p)
        ROW4(LOADA)
        COL6(ACC_STEP)
#undef LOADB
    }
    COL6(ACC_STORE)
}

/* An edge tile of mr x nr (mr <= TILE_M, nr <= TILE_N): one dot product at a time. */
static void tile_edge(int mr, int nr, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const float *a = A + (size_t)i * lda, *b = B + (size_t)j * ldb;
            __m512 acc = _mm512_setzero_ps();
            int k = 0;
            for (; k + 16 <= K; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc);
            if (k < K) {
                const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k), acc);
            }
            C[(size_t)i * ldc + j] = _mm512_reduce_add_ps(acc);
        }
}

static void gemm_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    const int n0 = (int)item * g->n_per_item, n1 = n0 + g->n_per_item < g->N ? n0 + g->n_per_item : g->N;
    for (int m0 = 0; m0 < g->M; m0 += BLOCK_M) {
        const int m1 = m0 + BLOCK_M < g->M ? m0 + BLOCK_M : g->M;
        for (int n = n0; n < n1; n += TILE_N) {
            const int nr = n1 - n < TILE_N ? n1 - n : TILE_N;
            const float *B = g->B + (size_t)n * g->ldb;
            for (int m = m0; m < m1; m += TILE_M) {
                const int mr = m1 - m < TILE_M ? m1 - m : TILE_M;
                const float *A = g->A + (size_t)m * g->lda;
                float *C = g->C + (size_t)m * g->ldc + n;
                if (mr == TILE_M && nr == TILE_N) tile_full(g->K, A, g->lda, B, g->ldb, C, g->ldc);
                else tile_edge(mr, nr, g->K, A, g->lda, B, g->ldb, C, g->ldc);
            }
        }
    }
}

#else

static void gemm_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    const int n0 = (int)item * g->n_per_item, n1 = n0 + g->n_per_item < g->N ? n0 + g->n_per_item : g->N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, n1 - n0, g->K, 1.0f, g->A, g->lda,
                g->B + (size_t)n0 * g->ldb, g->ldb, 0.0f, g->C + n0, g->ldc);
}

#endif

void llm_gemm_nt(int n_threads, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                 int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    if (n_threads < 1) n_threads = 1;
    /* two items per thread balance uneven finishing without shrinking the tiles much */
    int items = N / TILE_N < 2 * n_threads ? (N + TILE_N - 1) / TILE_N : 2 * n_threads;
    int per = (N + items - 1) / items;
    per = (per + TILE_N - 1) / TILE_N * TILE_N;
    items = (N + per - 1) / per;
    gemm_job g = {M, N, K, A, B, C, lda, ldb, ldc, per};
    openblas_set_num_threads(1);
    if (items == 1) gemm_item(&g, 0, 0);
    else pare_parallel_for(n_threads, items, gemm_item, &g);
}
