/*
 * verify/gemm.c - the f32 matrix product of the forward pass, C = A B^T, where both A (the
 * activations, [M][K]) and B (a weight, [N][K]) are contiguous along K, as ggml stores them.
 *
 * With AVX-512, as BLIS does: A is packed once into panels of MR rows laid out k-major
 * ([K][MR], rows past M zero); threads split the N columns in panels of NR = 32; for each
 * block of KC values of k, a thread packs the panel of B it works on ([KC][32], kept in L1)
 * and runs the micro-kernel over every A panel: MR x 32 accumulators in registers, one
 * broadcast of A and two loads of B per k, no horizontal sums. Without AVX-512 each thread
 * calls OpenBLAS single-threaded on its columns. Either way no OpenBLAS worker threads spin
 * against pare's between calls.
 */
#include "verify/llm_impl.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define MR 12  /* rows of A per micro-kernel */
#define NR 32  /* columns of C per micro-kernel (two vectors of 16) */
#define KC 256 /* values of k per packed B panel: 32 KiB */

typedef struct {
    int M, N, K;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int n_per_item; /* columns per parallel item, a multiple of NR */
    float *Ap;      /* AVX-512: A packed, ceil(M / MR) panels of [K][MR] */
} gemm_job;

#if defined(__AVX512F__)

/* Packs rows [i*MR, i*MR + MR) of A as [K][MR], zero past M. */
static void pack_a(void *ctx, int64_t p, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    float *dst = g->Ap + (size_t)p * MR * g->K;
    const int m0 = (int)p * MR, mr = g->M - m0 < MR ? g->M - m0 : MR;
    const float *a = g->A + (size_t)m0 * g->lda;
    /* sequential writes; the MR rows are read as MR sequential streams */
    for (int k = 0; k < g->K; k++, dst += MR) {
        int i = 0;
        for (; i < mr; i++) dst[i] = a[(size_t)i * g->lda + k];
        for (; i < MR; i++) dst[i] = 0;
    }
}

/* Packs columns [n0, n0 + nr) of B^T for k in [k0, k0 + kc) as [kc][NR], zero past nr. */
static void pack_b(const gemm_job *g, int n0, int nr, int k0, int kc, float *dst) {
    if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof *dst);
    for (int j = 0; j < nr; j++) {
        const float *b = g->B + (size_t)(n0 + j) * g->ldb + k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = b[k];
    }
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = c##i##a;
#define STEP(i)                                                                                    \
    {                                                                                              \
        const __m512 a = _mm512_set1_ps(ap[i]);                                                    \
        c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                                                 \
        c##i##b = _mm512_fmadd_ps(a, b1, c##i##b);                                                 \
    }
#define STORE(i)                                                                                   \
    if (i < mr) {                                                                                  \
        float *c = C + (size_t)(i) * ldc;                                                          \
        if (acc) {                                                                                 \
            c##i##a = _mm512_add_ps(c##i##a, _mm512_maskz_loadu_ps(m0, c));                        \
            c##i##b = _mm512_add_ps(c##i##b, _mm512_maskz_loadu_ps(m1, c + 16));                   \
        }                                                                                          \
        _mm512_mask_storeu_ps(c, m0, c##i##a);                                                     \
        _mm512_mask_storeu_ps(c + 16, m1, c##i##b);                                                \
    }

/* C[0..mr)[0..nr) (+)= Ap[kc][MR] x Bp[kc][NR]; acc: add to what C holds. */
static void kernel(int kc, const float *ap, const float *bp, float *C, int ldc, int mr, int nr, bool acc) {
    ROWS(DECL)
    for (int k = 0; k < kc; k++, ap += MR, bp += NR) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        ROWS(STEP)
    }
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    ROWS(STORE)
}

static void gemm_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    const int n0 = (int)item * g->n_per_item, n1 = n0 + g->n_per_item < g->N ? n0 + g->n_per_item : g->N;
    float bp[KC * NR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < g->K; k0 += KC) {
        const int kc = g->K - k0 < KC ? g->K - k0 : KC;
        for (int n = n0; n < n1; n += NR) {
            const int nr = n1 - n < NR ? n1 - n : NR;
            pack_b(g, n, nr, k0, kc, bp);
            for (int m = 0; m < g->M; m += MR) {
                const float *ap = g->Ap + (size_t)(m / MR) * MR * g->K + (size_t)k0 * MR;
                kernel(kc, ap, bp, g->C + (size_t)m * g->ldc + n, g->ldc, g->M - m < MR ? g->M - m : MR, nr, k0 > 0);
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

size_t llm_gemm_ws(int M, int K) {
#if defined(__AVX512F__)
    return (size_t)((M + MR - 1) / MR) * MR * (size_t)K + 16; /* + 16: room to align to 64 bytes */
#else
    (void)M, (void)K;
    return 0;
#endif
}

void llm_gemm_nt(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                 int ldc, float *ws) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    const int n_threads = pare_pool_threads(pool);
    /* two items per thread balance uneven finishing without shrinking the tiles much */
    int items = N / NR < 2 * n_threads ? (N + NR - 1) / NR : 2 * n_threads;
    int per = (N + items - 1) / items;
    per = (per + NR - 1) / NR * NR;
    items = (N + per - 1) / per;
    gemm_job g = {M, N, K, A, B, C, lda, ldb, ldc, per, NULL};
#if defined(__AVX512F__)
    const int panels = (M + MR - 1) / MR;
    float *own = NULL;
    if (!ws) ws = own = malloc(llm_gemm_ws(M, K) * sizeof(float));
    if (!ws) { /* out of memory: the slow way, without packing */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        return;
    }
    g.Ap = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    if (panels == 1 || n_threads == 1) for (int p = 0; p < panels; p++) pack_a(&g, p, 0);
    else pare_pool_for(pool, panels, pack_a, &g);
#endif
    if (items == 1 || n_threads == 1) for (int i = 0; i < items; i++) gemm_item(&g, i, 0);
    else pare_pool_for(pool, items, gemm_item, &g);
#if defined(__AVX512F__)
    free(own);
#else
    (void)ws;
#endif
}
