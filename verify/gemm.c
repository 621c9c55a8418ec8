/*
 * verify/gemm.c - the f32 matrix product of the forward pass, C = A B^T, where both A (the
 * activations, [M][K]) and B (a weight, [N][K]) are contiguous along K, as ggml stores them.
 *
 * With AVX-512, in the manner of BLIS: threads split the N columns in panels of NR = 32; for
 * each block of KC values of k, a thread packs the panel of B it works on ([KC][32], kept in
 * L2) and runs the micro-kernel down the rows of A: MR x 32 accumulators in registers, one
 * broadcast of A and two loads of B per k, no horizontal sums. A is read in place, MR rows at
 * a time (packing it cost more than it saved: measured 11% of an f32 evaluation); only a last
 * partial group of rows is packed, zero-padded. B can also be packed once ahead
 * (llm_gemm_pack) for weights used by many products. With AVX2 (+FMA +F16C) and no AVX-512
 * the same design in 8-lane registers: MR x NR = 6 x 16, and with B packed ahead the rows
 * of A go in blocks of MB that stay in L2 while every panel of the thread's columns passes
 * (measured against OpenBLAS's Haswell kernels on a 125M f32 evaluation: 9-10% less CPU time,
 * and the chunks can be batched, see llm_batch_seqs). Elsewhere each thread calls OpenBLAS
 * single-threaded on its columns. Either way no OpenBLAS worker threads spin against pare's
 * between calls.
 */
#include "verify/llm_impl.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* GEMM_OWN: this build has pare's own kernel (else OpenBLAS). The shapes fill the vector
 * registers: MR x 2 accumulators, two vectors of B and a broadcast of A. */
#if defined(__AVX512F__)
#define GEMM_OWN 1
#define MR 12  /* rows of A per micro-kernel */
#define NR 32  /* columns of C per micro-kernel (two vectors of 16) */
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define GEMM_OWN 1
#define MR 6   /* 12 of the 16 registers accumulate */
#define NR 16  /* two vectors of 8 */
#define MB 48  /* rows of A per block when B is packed ahead: MB x KC floats, 192 KiB, stay in L2 */
#else
#define NR 32  /* OpenBLAS: each thread's columns, a multiple of this */
#endif
/* Values of k per packed B panel: 128 KiB, in L2 (one block for K = 768). 256 (32 KiB, in
 * L1) was 2-4% slower over a whole f32 evaluation in paired runs: the weights then came from
 * memory in runs of 1 KiB per row, and C was read and written once per block. */
#define KC 1024

typedef struct {
    int M, N, K;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int n_per_item; /* columns per parallel item, a multiple of NR */
    float *Ap;      /* own kernel: the last M % MR rows of A packed as [K][MR] (pack_a_tail) */
    const float *Bp; /* own kernel, or NULL: B packed by llm_gemm_pack (then B is not read) */
    float *dst;      /* llm_gemm_pack's output */
} gemm_job;

#if defined(GEMM_OWN)

/* Packs the last rows of A, [m0, M) with M - m0 < MR, as [K][MR], zero past M. */
static void pack_a_tail(const gemm_job *g, int m0, float *dst) {
    const int mr = g->M - m0;
    const float *a = g->A + (size_t)m0 * g->lda;
    for (int k = 0; k < g->K; k++, dst += MR) {
        int i = 0;
        for (; i < mr; i++) dst[i] = a[(size_t)i * g->lda + k];
        for (; i < MR; i++) dst[i] = 0;
    }
}

#endif

#if defined(__AVX512F__)

/* Packs columns [n0, n0 + nr) of B^T for k in [k0, k0 + kc) as [kc][NR], zero past nr. */
static void pack_b(const gemm_job *g, int n0, int nr, int k0, int kc, float *dst) {
    if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof *dst);
    int j = 0, kv = kc / 16 * 16;
    /* 16 x 16 blocks transposed in registers: a scalar copy spent a load and a store per value */
    for (; j + 16 <= nr; j += 16) {
        const float *b = g->B + (size_t)(n0 + j) * g->ldb + k0;
        for (int k = 0; k < kv; k += 16) {
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(b + (size_t)i * g->ldb + k);
            for (int i = 0; i < 16; i += 2) { /* pairs of rows interleaved by 32-bit values */
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 16; i += 4) /* then by 64-bit pairs */
                for (int h = 0; h < 2; h++) {
                    const __m512d x = _mm512_castps_pd(t[i + h]), y = _mm512_castps_pd(t[i + 2 + h]);
                    r[i + h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
                    r[i + 2 + h] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
                }
            for (int i = 0; i < 16; i += 8) /* then by 128-bit lanes */
                for (int h = 0; h < 4; h++) {
                    t[i + h] = _mm512_shuffle_f32x4(r[i + h], r[i + 4 + h], 0x88);
                    t[i + 4 + h] = _mm512_shuffle_f32x4(r[i + h], r[i + 4 + h], 0xDD);
                }
            for (int h = 0; h < 8; h++) {
                r[h] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0x88);
                r[h + 8] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0xDD);
            }
            /* r[q] now holds column k + c(q) of the 16 rows, c(q) the order the shuffles left */
            static const int col[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
            for (int q = 0; q < 16; q++) _mm512_storeu_ps(dst + (size_t)(k + col[q]) * NR + j, r[q]);
        }
    }
    for (int jj = 0; jj < j; jj++) { /* rows done in blocks: the k tail */
        const float *b = g->B + (size_t)(n0 + jj) * g->ldb + k0;
        for (int k = kv; k < kc; k++) dst[(size_t)k * NR + jj] = b[k];
    }
    for (; j < nr; j++) {
        const float *b = g->B + (size_t)(n0 + j) * g->ldb + k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = b[k];
    }
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = c##i##a;
/* row i's two accumulators += a_i (broadcast) x the two vectors of B */
#define FMA2(i, A)                                                                                 \
    {                                                                                              \
        const __m512 a = _mm512_set1_ps(A);                                                        \
        c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                                                 \
        c##i##b = _mm512_fmadd_ps(a, b1, c##i##b);                                                 \
    }
#define STEP(i) FMA2(i, ap[i])
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
    const __mmask16 m0 = llm_lanes16(nr), m1 = llm_lanes16(nr - 16);
    ROWS(STORE)
}

/* The same, reading A in place (MR full rows lda apart) instead of packed: rows in three
 * groups of four pointers, each row addressed as base + {0, 1, 2} x the row stride, so the
 * twelve broadcasts need four pointer increments per k. */
#define DSTEP(i, P, J) FMA2(i, *(const float *)(P + J * L))
static void kernel_direct(int kc, const float *A, size_t lda, const float *bp, float *C, int ldc, int nr, bool acc) {
    ROWS(DECL)
    const char *p0 = (const char *)A, *p3 = (const char *)(A + 3 * lda), *p6 = (const char *)(A + 6 * lda),
               *p9 = (const char *)(A + 9 * lda);
    const size_t L = lda * sizeof(float);
    for (int k = 0; k < kc; k++, p0 += 4, p3 += 4, p6 += 4, p9 += 4, bp += NR) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        DSTEP(0, p0, 0) DSTEP(1, p0, 1) DSTEP(2, p0, 2) DSTEP(3, p3, 0) DSTEP(4, p3, 1) DSTEP(5, p3, 2)
        DSTEP(6, p6, 0) DSTEP(7, p6, 1) DSTEP(8, p6, 2) DSTEP(9, p9, 0) DSTEP(10, p9, 1) DSTEP(11, p9, 2)
    }
    const int mr = MR;
    const __mmask16 m0 = llm_lanes16(nr), m1 = llm_lanes16(nr - 16);
    ROWS(STORE)
}

#elif defined(GEMM_OWN) /* AVX2 */

/* Packs columns [n0, n0 + nr) of B^T for k in [k0, k0 + kc) as [kc][NR], zero past nr. */
static void pack_b(const gemm_job *g, int n0, int nr, int k0, int kc, float *dst) {
    if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof *dst);
    int j = 0, kv = kc / 8 * 8;
    for (; j + 8 <= nr; j += 8) { /* 8 x 8 blocks transposed in registers */
        const float *b = g->B + (size_t)(n0 + j) * g->ldb + k0;
        for (int k = 0; k < kv; k += 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(b + (size_t)i * g->ldb + k);
            for (int i = 0; i < 8; i += 2) { /* pairs of rows interleaved by 32-bit values */
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) { /* then by 64-bit pairs: r[i + c] = column c (+4) of 4 rows */
                r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int c = 0; c < 4; c++) { /* then the halves: columns c and c + 4 of the 8 rows */
                _mm256_storeu_ps(dst + (size_t)(k + c) * NR + j, _mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
                _mm256_storeu_ps(dst + (size_t)(k + c + 4) * NR + j, _mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
            }
        }
    }
    for (int jj = 0; jj < j; jj++) { /* rows done in blocks: the k tail */
        const float *b = g->B + (size_t)(n0 + jj) * g->ldb + k0;
        for (int k = kv; k < kc; k++) dst[(size_t)k * NR + jj] = b[k];
    }
    for (; j < nr; j++) {
        const float *b = g->B + (size_t)(n0 + j) * g->ldb + k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = b[k];
    }
}

/* The first n of 8 lanes, as a mask for maskload / maskstore. */
static inline __m256i lanes8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(i) __m256 c##i##a = _mm256_setzero_ps(), c##i##b = c##i##a;
#define FMA2(i, A)                                                                                 \
    {                                                                                              \
        const __m256 a = _mm256_set1_ps(A);                                                        \
        c##i##a = _mm256_fmadd_ps(a, b0, c##i##a);                                                 \
        c##i##b = _mm256_fmadd_ps(a, b1, c##i##b);                                                 \
    }
#define STEP(i) FMA2(i, ap[i])
#define STORE(i)                                                                                   \
    if (i < mr) {                                                                                  \
        float *c = C + (size_t)(i) * ldc;                                                          \
        if (acc) {                                                                                 \
            c##i##a = _mm256_add_ps(c##i##a, _mm256_maskload_ps(c, m0));                           \
            c##i##b = _mm256_add_ps(c##i##b, _mm256_maskload_ps(c + 8, m1));                       \
        }                                                                                          \
        _mm256_maskstore_ps(c, m0, c##i##a);                                                       \
        _mm256_maskstore_ps(c + 8, m1, c##i##b);                                                   \
    }

/* C[0..mr)[0..nr) (+)= Ap[kc][MR] x Bp[kc][NR]; acc: add to what C holds. */
static void kernel(int kc, const float *ap, const float *bp, float *C, int ldc, int mr, int nr, bool acc) {
    ROWS(DECL)
    for (int k = 0; k < kc; k++, ap += MR, bp += NR) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        ROWS(STEP)
    }
    const __m256i m0 = lanes8(nr), m1 = lanes8(nr - 8);
    ROWS(STORE)
}

/* The same, reading A in place (MR full rows lda apart): two groups of three rows, each row
 * addressed as base + {0, 1, 2} x the row stride. */
#define DSTEP(i, P, J) FMA2(i, *(const float *)(P + J * L))
static void kernel_direct(int kc, const float *A, size_t lda, const float *bp, float *C, int ldc, int nr, bool acc) {
    ROWS(DECL)
    const char *p0 = (const char *)A, *p3 = (const char *)(A + 3 * lda);
    const size_t L = lda * sizeof(float);
    /* unrolled: the loop's own instructions otherwise take the front end's last slots (24
     * per 12 fma, at Skylake's 4 per cycle) */
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++, p0 += 4, p3 += 4, bp += NR) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        DSTEP(0, p0, 0) DSTEP(1, p0, 1) DSTEP(2, p0, 2) DSTEP(3, p3, 0) DSTEP(4, p3, 1) DSTEP(5, p3, 2)
    }
    const int mr = MR;
    const __m256i m0 = lanes8(nr), m1 = lanes8(nr - 8);
    ROWS(STORE)
}

#endif

#if defined(GEMM_OWN)

static void gemm_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    const int n0 = (int)item * g->n_per_item, n1 = n0 + g->n_per_item < g->N ? n0 + g->n_per_item : g->N;
    const int m_full = g->M / MR * MR; /* rows read in place; the rest from g->Ap */
    float own[KC * NR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < g->K; k0 += KC) {
        const int kc = g->K - k0 < KC ? g->K - k0 : KC;
#if defined(MB)
        if (g->Bp) { /* B packed ahead: blocks of MB rows of A, each kept in L2 across the panels */
            for (int mb = 0; mb < g->M; mb += MB)
                for (int n = n0; n < n1; n += NR) {
                    const int nr = n1 - n < NR ? n1 - n : NR, me = mb + MB < g->M ? mb + MB : g->M;
                    const float *bp = g->Bp + (size_t)(n / NR) * NR * g->K + (size_t)k0 * NR;
                    for (int m = mb; m < me; m += MR) {
                        float *c = g->C + (size_t)m * g->ldc + n;
                        if (m < m_full)
                            kernel_direct(kc, g->A + (size_t)m * g->lda + k0, (size_t)g->lda, bp, c, g->ldc, nr, k0 > 0);
                        else
                            kernel(kc, g->Ap + (size_t)k0 * MR, bp, c, g->ldc, g->M - m, nr, k0 > 0);
                    }
                }
            continue;
        }
#endif
        for (int n = n0; n < n1; n += NR) {
            const int nr = n1 - n < NR ? n1 - n : NR;
            const float *bp = own;
            if (g->Bp) bp = g->Bp + (size_t)(n / NR) * NR * g->K + (size_t)k0 * NR;
            else pack_b(g, n, nr, k0, kc, own);
            /* The weights come from memory once per product, and the hardware prefetcher
             * does not follow them far enough (unpacked: runs of kc values per row, on 4 KiB
             * pages): the next panel's lines are fetched into L2 while the micro-kernel runs
             * on this one. Packed ahead, the next panel is one contiguous run. */
            int pn = n + NR, pk0 = k0;
            if (pn >= n1) pn = n0, pk0 = k0 + KC;
            const int pnr = pk0 < g->K ? (n1 - pn < NR ? n1 - pn : NR) : 0;
            const int pkc = pk0 < g->K ? (g->K - pk0 < KC ? g->K - pk0 : KC) : 0;
            const int lines_per_row = (pkc * (int)sizeof(float) + 63) / 64;
            const int lines = g->Bp ? (pnr ? pkc * NR * (int)sizeof(float) / 64 : 0) : pnr * lines_per_row;
            const float *pbp = g->Bp ? g->Bp + (size_t)(pn / NR) * NR * g->K + (size_t)pk0 * NR : NULL;
            const int groups = (g->M + MR - 1) / MR, per = (lines + groups - 1) / groups;
            int line = 0;
            for (int m = 0; m < g->M; m += MR) {
                for (int e = line + per; line < e && line < lines; line++) {
                    const float *b = pbp ? pbp + line * 16 /* 16 floats per 64-byte line */
                                         : g->B + (size_t)(pn + line / lines_per_row) * g->ldb + pk0 +
                                               (line % lines_per_row) * 16;
                    _mm_prefetch((const char *)b, _MM_HINT_T1);
                }
                float *c = g->C + (size_t)m * g->ldc + n;
                if (m < m_full)
                    kernel_direct(kc, g->A + (size_t)m * g->lda + k0, (size_t)g->lda, bp, c, g->ldc, nr, k0 > 0);
                else
                    kernel(kc, g->Ap + (size_t)k0 * MR, bp, c, g->ldc, g->M - m, nr, k0 > 0);
            }
        }
    }
}

/* One panel of NR columns of B for llm_gemm_pack: [K][NR], in KC blocks as pack_b lays them. */
static void pack_panel(void *ctx, int64_t p, int thread) {
    (void)thread;
    const gemm_job *g = ctx;
    const int n = (int)p * NR, nr = g->N - n < NR ? g->N - n : NR;
    for (int k0 = 0; k0 < g->K; k0 += KC)
        pack_b(g, n, nr, k0, g->K - k0 < KC ? g->K - k0 : KC, g->dst + (size_t)p * NR * g->K + (size_t)k0 * NR);
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
#if defined(GEMM_OWN)
    return M % MR ? (size_t)MR * (size_t)K + 16 : 0; /* + 16: room to align to 64 bytes */
#else
    (void)M, (void)K;
    return 0;
#endif
}

size_t llm_gemm_packed_len(int N, int K) {
#if defined(GEMM_OWN)
    return N > 0 && K > 0 ? (size_t)((N + NR - 1) / NR) * NR * (size_t)K : 0;
#else
    (void)N, (void)K;
    return 0;
#endif
}

void llm_gemm_pack(pare_pool *pool, int N, int K, const float *B, int ldb, float *dst) {
#if defined(GEMM_OWN)
    gemm_job g = {.N = N, .K = K, .B = B, .ldb = ldb, .dst = dst};
    pare_pool_for(pool, (N + NR - 1) / NR, pack_panel, &g);
#else
    (void)pool, (void)N, (void)K, (void)B, (void)ldb, (void)dst;
#endif
}

static void gemm_run(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                     const float *Bp, float *C, int ldc, float *ws) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    const int n_threads = pare_pool_threads(pool);
    /* Six items per thread (each a few panels of NR columns, handed out as threads free up):
     * with two, a thread that the machine slowed left the other waiting at the end of every
     * product (measured 4-6% of an f32 evaluation against six). */
    int items = N / NR < 6 * n_threads ? (N + NR - 1) / NR : 6 * n_threads;
    int per = (N + items - 1) / items;
    per = (per + NR - 1) / NR * NR;
    items = (N + per - 1) / per;
    gemm_job g = {M, N, K, A, B, C, lda, ldb, ldc, per, NULL, Bp, NULL};
#if defined(GEMM_OWN)
    float *own = NULL;
    if (M % MR) {
        if (!ws) ws = own = malloc(llm_gemm_ws(M, K) * sizeof(float));
        if (!ws) { /* out of memory: the slow way */
            if (B) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
            else /* packed B: one panel of NR columns at a time, [K][NR] read as a K x NR matrix */
                for (int n = 0; n < N; n += NR)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N - n < NR ? N - n : NR, K, 1.0f, A,
                                lda, Bp + (size_t)n * K, NR, 0.0f, C + n, ldc);
            return;
        }
        g.Ap = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
        pack_a_tail(&g, M / MR * MR, g.Ap);
    }
#endif
    if (items == 1 || n_threads == 1) for (int i = 0; i < items; i++) gemm_item(&g, i, 0);
    else pare_pool_for(pool, items, gemm_item, &g);
#if defined(GEMM_OWN)
    free(own);
#else
    (void)ws;
#endif
}

void llm_gemm_nt(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                 int ldc, float *ws) {
    gemm_run(pool, M, N, K, A, lda, B, ldb, NULL, C, ldc, ws);
}

void llm_gemm_nt_packed(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *Bp, float *C,
                        int ldc, float *ws) {
    gemm_run(pool, M, N, K, A, lda, NULL, 0, Bp, C, ldc, ws);
}
