/*
 * verify/kgemm.c - products with Q4_K and Q6_K weights as llama.cpp computes them on x86:
 * y[M][N] = x[M][K] W[N][K]^T.
 *
 * ggml-cpu quantizes the activations to Q8_K (blocks of 256: the value of largest magnitude
 * maps to -127, d = 1/iscale kept in f32, sums of every 16 codes) and takes each product
 * with ggml_vec_dot_q4_K_q8_K / ggml_vec_dot_q6_K_q8_K (AVX2 forms; tinyBLAS has no
 * K-quants). Per output and super-block, eight integer lanes, lane L holding the dots of
 * bytes 4L..4L+3 of every 32-value group times their sub-block scales (and, for Q6_K, the
 * codes minus 32); then in float: acc_L = fma(d_x * d_w, lane_L, acc_L) over the super-blocks,
 * for Q4_K also four lanes fma(-d_x * dmin_w, mins . group sums, accm), and the final sums
 * ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)) (+ ((m0+m2)+(m1+m3))). The integers are exact
 * whichever way they are added, so only these float steps need ggml's order; with them the
 * results are ggml's bits.
 *
 * AVX-512 VNNI computes the lanes with vpdpbusd on unpacked codes (0..15 or 0..63) against
 * the signed activations: a register holds two 32-value groups (lanes 0-7 and 8-15), which
 * are added at the end of the super-block. Elsewhere plain C gives the same numbers.
 */
#include "verify/llm_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define KG_VNNI 1
#endif

#define QK 256
#define Q4K_BYTES 144 /* f16 d, f16 dmin, scales[12], qs[128] */
#define Q6K_BYTES 210 /* ql[128], qh[64], int8 scales[16], f16 d */
#define MRK 4         /* activation rows per tile */
#define NRK 2         /* weight rows per tile */
#define MBK 512       /* activation rows per block (a multiple of MRK) */

static float f16(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }

/* Activations of one super-block: codes, their 32-group sums (16-bit, as ggml pairs its
 * 16-sums), 32 x the sum of every 4 codes (Q6_K's offset), and the scale. */
typedef struct {
    int8_t q[QK];
    int32_t s32x4[QK / 4];
    int16_t g32[8];
    float d;
    float pad[11];
} act_sb;

/* One weight super-block unpacked: codes in value order, sub-block scales spread over the
 * lanes they apply to, Q4_K's mins, and the f16 scales as floats. */
typedef struct {
    uint8_t v[QK];
    int32_t sc[QK / 4]; /* per 4-byte lane of each 64-value register: its group's scale */
    int16_t mins[8];
    float d, dmin;
    float pad[10];
} w_sb;

_Static_assert(sizeof(act_sb) % 64 == 0 && sizeof(w_sb) % 64 == 0, "64-byte rows");

/* ------------------------------------------------------------------------ preparation */

typedef struct {
    const float *x;
    int ldx, nb;
    act_sb *a;
} act_job;

/* quantize_row_q8_K_ref: iscale = -127 / (the value of largest magnitude), codes rounded to
 * nearest even and capped at 127, d = 1 / iscale. */
static void act_row(void *ctx, int64_t r, int thread) {
    (void)thread;
    const act_job *j = ctx;
    const float *x = j->x + (size_t)r * j->ldx;
    for (int b = 0; b < j->nb; b++, x += QK) {
        act_sb *s = &j->a[(size_t)r * j->nb + b];
        float amax = 0, max = 0;
        for (int i = 0; i < QK; i++)
            if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
        if (amax == 0) {
            memset(s, 0, sizeof *s);
            continue;
        }
        const float iscale = -127.f / max;
        for (int i = 0; i < QK; i++) {
            const int q = (int)nearbyintf(iscale * x[i]);
            s->q[i] = (int8_t)(q < 127 ? q : 127);
        }
        s->d = 1 / iscale;
        for (int g = 0; g < 8; g++) {
            int t = 0;
            for (int i = 0; i < 32; i++) t += s->q[32 * g + i];
            s->g32[g] = (int16_t)t;
        }
        for (int l = 0; l < QK / 4; l++)
            s->s32x4[l] = 32 * (s->q[4 * l] + s->q[4 * l + 1] + s->q[4 * l + 2] + s->q[4 * l + 3]);
    }
}

static void unpack_q4_K(const uint8_t *b, w_sb *w) {
    const uint8_t *sc = b + 4, *qs = b + 16;
    uint8_t s[8], m[8];
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j] & 63;
            m[j] = sc[j + 4] & 63;
        } else {
            s[j] = (uint8_t)((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4));
            m[j] = (uint8_t)((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
        }
        w->mins[j] = m[j];
    }
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            w->v[64 * j + l] = qs[32 * j + l] & 0xF;
            w->v[64 * j + 32 + l] = qs[32 * j + l] >> 4;
        }
    for (int l = 0; l < QK / 4; l++) w->sc[l] = s[l / 8]; /* 8 lanes per 32-value group */
    w->d = f16(b);
    w->dmin = f16(b + 2);
}

static void unpack_q6_K(const uint8_t *b, w_sb *w) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int h = 0; h < 2; h++, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            w->v[128 * h + l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4);
            w->v[128 * h + 32 + l] = (uint8_t)((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4);
            w->v[128 * h + 64 + l] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            w->v[128 * h + 96 + l] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    for (int l = 0; l < QK / 4; l++) w->sc[l] = sc[l / 4]; /* 4 lanes per 16-value group */
    memset(w->mins, 0, sizeof w->mins);
    w->d = f16(b + 208);
    w->dmin = 0;
}

/* ------------------------------------------------------------------------ products */

typedef struct {
    int M, N, nb;
    bool q6;
    const act_sb *a;
    const uint8_t *W;
    size_t ldw;
    float *y;
    int ldy;
    int rows_per_item;
    w_sb *wbuf; /* per thread: NRK rows of unpacked super-blocks */
} prod_job;

/* Plain C: output (m, n) in ggml's float order. */
static float dot_ref(const prod_job *g, const w_sb *w, int m) {
    float acc[8] = {0}, accm[4] = {0};
    for (int b = 0; b < g->nb; b++) {
        const act_sb *x = &g->a[(size_t)m * g->nb + b];
        const w_sb *ws = &w[b];
        int32_t lane[8] = {0};
        for (int i = 0; i < QK; i++) {
            const int32_t p = (int32_t)ws->v[i] * x->q[i] - (g->q6 ? 32 * x->q[i] : 0);
            lane[(i % 32) / 4] += ws->sc[i / 4] * p;
        }
        const float d = x->d * ws->d;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)lane[l], acc[l]);
        if (!g->q6) {
            const float dmin = -x->d * ws->dmin;
            for (int k = 0; k < 4; k++)
                accm[k] = fmaf(dmin, (float)(ws->mins[2 * k] * x->g32[2 * k] + ws->mins[2 * k + 1] * x->g32[2 * k + 1]),
                               accm[k]);
        }
    }
    const float r = llm_hsum8(acc);
    return g->q6 ? r : r + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static void unpack_rows(const prod_job *g, int n0, int nr, w_sb *w) {
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = g->W + (size_t)(n0 + r) * g->ldw;
        for (int b = 0; b < g->nb; b++) {
            if (g->q6) unpack_q6_K(row + (size_t)b * Q6K_BYTES, &w[(size_t)r * g->nb + b]);
            else unpack_q4_K(row + (size_t)b * Q4K_BYTES, &w[(size_t)r * g->nb + b]);
        }
    }
}

#if defined(KG_VNNI)

/* Outputs of activation rows [m0, m0 + MRK) x weight rows [n0, n0 + NRK) (w: their unpacked
 * super-blocks, row after row). */
static void run_tile(const prod_job *g, const w_sb *w, int m0, int n0) {
    __m256 acc[MRK][NRK];
    __m128 accm[MRK][NRK];
    for (int i = 0; i < MRK; i++)
        for (int r = 0; r < NRK; r++) acc[i][r] = _mm256_setzero_ps(), accm[i][r] = _mm_setzero_ps();
    for (int b = 0; b < g->nb; b++) {
        for (int i = 0; i < MRK; i++) {
            const act_sb *x = &g->a[(size_t)(m0 + i) * g->nb + b];
            const __m512i x0 = _mm512_load_si512(x->q), x1 = _mm512_load_si512(x->q + 64),
                          x2 = _mm512_load_si512(x->q + 128), x3 = _mm512_load_si512(x->q + 192);
            for (int r = 0; r < NRK; r++) {
                const w_sb *ws = &w[(size_t)r * g->nb + b];
                __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(ws->v), x0);
                __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(ws->v + 64), x1);
                __m512i t2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(ws->v + 128), x2);
                __m512i t3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(ws->v + 192), x3);
                if (g->q6) {
                    t0 = _mm512_sub_epi32(t0, _mm512_load_si512(x->s32x4));
                    t1 = _mm512_sub_epi32(t1, _mm512_load_si512(x->s32x4 + 16));
                    t2 = _mm512_sub_epi32(t2, _mm512_load_si512(x->s32x4 + 32));
                    t3 = _mm512_sub_epi32(t3, _mm512_load_si512(x->s32x4 + 48));
                }
                __m512i s = _mm512_mullo_epi32(t0, _mm512_load_si512(ws->sc));
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(t1, _mm512_load_si512(ws->sc + 16)));
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(t2, _mm512_load_si512(ws->sc + 32)));
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(t3, _mm512_load_si512(ws->sc + 48)));
                const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
                acc[i][r] = _mm256_fmadd_ps(_mm256_set1_ps(x->d * ws->d), _mm256_cvtepi32_ps(lanes), acc[i][r]);
                if (!g->q6) {
                    const __m128i prod = _mm_madd_epi16(_mm_loadu_si128((const void *)ws->mins),
                                                        _mm_loadu_si128((const void *)x->g32));
                    accm[i][r] = _mm_fmadd_ps(_mm_set1_ps(-x->d * ws->dmin), _mm_cvtepi32_ps(prod), accm[i][r]);
                }
            }
        }
    }
    for (int i = 0; i < MRK && m0 + i < g->M; i++)
        for (int r = 0; r < NRK && n0 + r < g->N; r++) {
            float a[8], m[4];
            _mm256_storeu_ps(a, acc[i][r]);
            _mm_storeu_ps(m, accm[i][r]);
            const float v = llm_hsum8(a);
            g->y[(size_t)(m0 + i) * g->ldy + n0 + r] = g->q6 ? v : v + ((m[0] + m[2]) + (m[1] + m[3]));
        }
}

#endif

static void prod_item(void *ctx, int64_t item, int thread) {
    const prod_job *g = ctx;
    const int n0 = (int)item * g->rows_per_item;
    const int n1 = n0 + g->rows_per_item < g->N ? n0 + g->rows_per_item : g->N;
    w_sb *w = g->wbuf + (size_t)thread * NRK * g->nb;
    /* Activations in blocks of MBK rows, each block kept in L2 while a whole item of weight
     * rows runs against it (2048 rows of quantized activations would be streamed from L3 for
     * every pair of weight rows); weight rows are unpacked again per block, which is cheap
     * next to MBK rows of products. */
    for (int m0 = 0; m0 < g->M; m0 += MBK) {
        const int m1 = m0 + MBK < g->M ? m0 + MBK : g->M;
        for (int n = n0; n < n1; n += NRK) {
            const int nr = n1 - n < NRK ? n1 - n : NRK;
            unpack_rows(g, n, nr, w);
#if defined(KG_VNNI)
            if (nr == NRK) {
                for (int m = m0; m < m1; m += MRK) run_tile(g, w, m, n);
                continue;
            }
#endif
            for (int r = 0; r < nr; r++)
                for (int m = m0; m < m1; m++) g->y[(size_t)m * g->ldy + n + r] = dot_ref(g, w + (size_t)r * g->nb, m);
        }
    }
}

bool llm_kgemm_handles(pare_type wtype) { return wtype == PARE_TYPE_Q4_K || wtype == PARE_TYPE_Q6_K; }

size_t llm_kgemm_ws(int M, int K) {
    const size_t Mp = (size_t)(M + MRK - 1) / MRK * MRK;
    return Mp * (size_t)(K / QK) * sizeof(act_sb) + 64;
}

bool llm_kgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               float *y, int ldy, void *ws) {
    if (K % QK || M <= 0 || N <= 0 || !llm_kgemm_handles(wtype)) return false;
    const int nb = K / QK, Mp = (M + MRK - 1) / MRK * MRK;
    act_sb *a = (act_sb *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    const int threads = pare_pool_threads(pool);
    w_sb *wbuf = aligned_alloc(64, (size_t)threads * NRK * nb * sizeof(w_sb));
    if (!wbuf) return false;
    act_job aj = {x, ldx, nb, a};
    pare_pool_for(pool, M, act_row, &aj);
    memset(a + (size_t)M * nb, 0, (size_t)(Mp - M) * nb * sizeof *a); /* padding rows: zero, never stored */
    const bool q6 = wtype == PARE_TYPE_Q6_K;
    int items = threads > 1 ? 4 * threads : 1;
    int per = (N + items - 1) / items;
    per = (per + NRK - 1) / NRK * NRK;
    items = (N + per - 1) / per;
    prod_job g = {M, N, nb, q6, a, W, (size_t)nb * (q6 ? Q6K_BYTES : Q4K_BYTES), y, ldy, per, wbuf};
    pare_pool_for(pool, items, prod_item, &g);
    free(wbuf);
    return true;
}
