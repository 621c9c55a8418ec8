/* prune/prune.c - magnitude / Wanda scores, exact selection, N:M patterns. */
#include "prune/prune.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef struct {
    float score;
    int32_t idx;
} scored;

/* (score, index) order: the first k of this order are pruned. */
static inline bool before(scored a, scored b) { return a.score < b.score || (a.score == b.score && a.idx < b.idx); }

/* Rearranges v so that v[0..k) are the k first in (score, index) order (Hoare-style
 * quickselect with median-of-three pivots; expected linear time). */
static void select_k(scored *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (before(v[mid], v[lo])) { scored t = v[mid]; v[mid] = v[lo]; v[lo] = t; }
        if (before(v[hi], v[lo])) { scored t = v[hi]; v[hi] = v[lo]; v[lo] = t; }
        if (before(v[hi], v[mid])) { scored t = v[hi]; v[hi] = v[mid]; v[mid] = t; }
        scored pivot = v[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (before(v[i], pivot)) i++;
            while (before(pivot, v[j])) j--;
            if (i <= j) { scored t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return;
    }
}

static inline float score_of(const float *w, int64_t j, const float *col_scale, int64_t col) {
    float s = fabsf(w[j]);
    return col_scale ? s * col_scale[col] : s;
}

/* The same selection by the scores' bits: a non-negative float's bits order as the float
 * does, so a radix select (11 + 11 + 10 bits, three counting passes) finds the bits T of the
 * k-th score; then every weight scored below T goes, and of those scored T the lowest indices,
 * as many as are left: the (score, index) order of select_k, in linear time (the quickselect
 * took about 15 ns per weight of the 1.1B model). False, with nothing changed, when a score
 * is negative or NaN (a negative column scale): select_k handles those. */
static bool prune_span_radix(float *w, int64_t n, int64_t ne0, const float *col_scale, int64_t k, uint32_t *u) {
    for (int64_t i = 0; i < n; i++) {
        const float s = score_of(w, i, col_scale, i % ne0);
        memcpy(&u[i], &s, sizeof s);
        if (u[i] > 0x7f800000u) return false; /* sign bit set, or NaN */
    }
    static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint32_t cnt[2048], prefix = 0, mask = 0;
    int64_t rank = k - 1; /* of the k-th score, among those matching prefix so far */
    for (int l = 0; l < 3; l++) {
        const uint32_t digits = (1u << width[l]) - 1;
        memset(cnt, 0, (digits + 1) * sizeof *cnt);
        for (int64_t i = 0; i < n; i++)
            if ((u[i] & mask) == prefix) cnt[(u[i] >> shift[l]) & digits]++;
        uint32_t b = 0;
        while (rank >= cnt[b]) rank -= cnt[b++];
        prefix |= b << shift[l];
        mask |= digits << shift[l];
    }
    int64_t ties = rank + 1; /* scored exactly T, lowest indices first */
    int64_t i = 0;
#if defined(__AVX512F__)
    /* sixteen at a time with masks: the scalar loop's branch on u < T mispredicted half the
     * time (then 60% of the selection's time) */
    const __m512i vt = _mm512_set1_epi32((int)prefix);
    for (; i + 16 <= n; i += 16) {
        const __m512i v = _mm512_loadu_si512((const void *)(u + i));
        __mmask16 m = _mm512_cmp_epu32_mask(v, vt, _MM_CMPINT_LT);
        __mmask16 eq = _mm512_cmp_epu32_mask(v, vt, _MM_CMPINT_EQ);
        while (eq && ties > 0) { /* lowest index first */
            const __mmask16 low = (__mmask16)(eq & -eq);
            m |= low, eq ^= low, ties--;
        }
        _mm512_mask_storeu_ps(w + i, m, _mm512_setzero_ps());
    }
#endif
    for (; i < n; i++)
        if (u[i] < prefix || (u[i] == prefix && ties-- > 0)) w[i] = 0.0f;
    return true;
}

/* Zeroes the k lowest-scored of n weights (w[0..n), columns col0 + i % ne0). buf: n entries. */
static void prune_span(float *w, int64_t n, int64_t ne0, const float *col_scale, int64_t k, scored *buf) {
    if (k <= 0) return;
    if (k >= n) {
        memset(w, 0, (size_t)n * sizeof *w);
        return;
    }
    if (prune_span_radix(w, n, ne0, col_scale, k, (uint32_t *)(void *)buf)) return;
    for (int64_t i = 0; i < n; i++) buf[i] = (scored){score_of(w, i, col_scale, i % ne0), (int32_t)i};
    select_k(buf, n, k - 1);
    for (int64_t i = 0; i < k; i++) w[buf[i].idx] = 0.0f;
}

#if defined(__AVX512F__)
/* N:4 on 16 weights (four groups, one per 128-bit lane) at a time, the same ranks as the
 * scalar loop below: for each rotation r of a lane, the weight q = (p + r) % 4 is below p
 * when (q > p and score_q < score_p) or (q < p and not score_p < score_q). */
static int64_t prune_n4_avx512(float *w, int64_t ne0, const float *col_scale, int n) {
    const __m512i one = _mm512_set1_epi32(1), need = _mm512_set1_epi32(4 - n);
    /* lanes p of each group whose partner after rotation r comes earlier (q < p) */
    const __mmask16 earlier[4] = {0, 0x8888, 0xCCCC, 0xEEEE};
    int64_t c = 0;
    for (; c + 16 <= ne0; c += 16) {
        const __m512 v = _mm512_loadu_ps(w + c);
        __m512 a = _mm512_abs_ps(v);
        if (col_scale) a = _mm512_mul_ps(a, _mm512_loadu_ps(col_scale + c));
        __m512i rank = _mm512_setzero_si512();
        const __m512 rot[4] = {a, _mm512_permute_ps(a, 0x39), _mm512_permute_ps(a, 0x4E), _mm512_permute_ps(a, 0x93)};
        for (int r = 1; r < 4; r++) {
            const __mmask16 lt = _mm512_cmp_ps_mask(rot[r], a, _CMP_LT_OQ);  /* score_q < score_p */
            const __mmask16 nlt = _mm512_cmp_ps_mask(a, rot[r], _CMP_NLT_UQ); /* !(score_p < score_q) */
            const __mmask16 below = (__mmask16)((nlt & earlier[r]) | (lt & ~earlier[r]));
            rank = _mm512_mask_add_epi32(rank, below, rank, one);
        }
        _mm512_storeu_ps(w + c, _mm512_maskz_mov_ps(_mm512_cmpge_epi32_mask(rank, need), v));
    }
    return c;
}
#endif

static void prune_nm_row(float *w, int64_t ne0, const float *col_scale, int n, int m) {
    float sc[256];
    int rank[256];
    int64_t c0 = 0;
#if defined(__AVX512F__)
    if (m == 4) c0 = prune_n4_avx512(w, ne0, col_scale, n);
#endif
    for (int64_t c = c0; c + m <= ne0; c += m) {
        for (int i = 0; i < m; i++) {
            sc[i] = score_of(w, c + i, col_scale, c + i);
            rank[i] = 0;
        }
        /* Each weight's rank in (score, index) order from one comparison per pair (for
         * i < j, j comes first only when its score is strictly lower): 6 branch-free
         * comparisons for 2:4. The m - n lowest ranks are zeroed. */
        for (int i = 0; i < m; i++)
            for (int j = i + 1; j < m; j++) {
                int lower = sc[j] < sc[i];
                rank[i] += lower;
                rank[j] += !lower;
            }
        for (int i = 0; i < m; i++)
            if (rank[i] < m - n) w[c + i] = 0.0f;
    }
}

typedef struct {
    float *w;
    int64_t ne0, n_rows, k;
    const float *col_scale;
    const pare_prune_opts *o;
    scored *bufs; /* per thread: ne0 */
} row_job;

#define ROWS_PER_JOB 16

static void prune_rows(void *ctx, int64_t job, int thread) {
    row_job *j = ctx;
    int64_t r0 = job * ROWS_PER_JOB, r1 = r0 + ROWS_PER_JOB < j->n_rows ? r0 + ROWS_PER_JOB : j->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        float *row = j->w + r * j->ne0;
        if (j->o->m)
            prune_nm_row(row, j->ne0, j->col_scale, j->o->n, j->o->m);
        else
            prune_span(row, j->ne0, j->ne0, j->col_scale, j->k, j->bufs + (size_t)thread * (size_t)j->ne0);
    }
}

static int64_t count_zeros(const float *w, int64_t n) {
    int64_t z = 0;
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        z += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(w + i), _mm512_setzero_ps(), _CMP_EQ_OQ));
#endif
    for (; i < n; i++) z += w[i] == 0.0f;
    return z;
}

pare_status pare_prune_matrix(float *w, int64_t ne0, int64_t n_rows, const float *col_scale,
                              const pare_prune_opts *o, int n_threads, int64_t *n_zeroed, pare_err *err) {
    int64_t n = ne0 * n_rows, before_z = n_zeroed ? count_zeros(w, n) : 0;
    FAIL_IF(o->m && (o->n < 0 || o->n >= o->m || o->m > 256), PARE_EUSAGE, "bad N:M pattern %d:%d", o->n, o->m);
    FAIL_IF(o->m && ne0 % o->m, PARE_EINPUT, "rows of %lld are not a multiple of M = %d", (long long)ne0, o->m);
    FAIL_IF(!o->m && (o->sparsity < 0 || o->sparsity > 1), PARE_EUSAGE, "sparsity %g is not between 0 and 1",
            o->sparsity);
    FAIL_IF(ne0 > INT32_MAX || (o->scope == PARE_PRUNE_TENSOR && n > INT32_MAX), PARE_EUNSUPPORTED,
            "matrix too large to prune");
    if (n_threads <= 0) n_threads = pare_default_threads();
    if (!o->m && o->scope == PARE_PRUNE_TENSOR) {
        scored *buf = malloc((size_t)n * sizeof *buf + sizeof *buf);
        FAIL_IF(!buf, PARE_ENOMEM, "out of memory");
        prune_span(w, n, ne0, col_scale, (int64_t)llround(o->sparsity * (double)n), buf);
        free(buf);
    } else {
        row_job j = {w, ne0, n_rows, (int64_t)llround(o->sparsity * (double)ne0), col_scale, o, NULL};
        if (!o->m) { /* N:M needs no selection buffers */
            j.bufs = malloc((size_t)n_threads * (size_t)ne0 * sizeof *j.bufs + sizeof *j.bufs);
            FAIL_IF(!j.bufs, PARE_ENOMEM, "out of memory");
        }
        pare_parallel_for(n_threads, (n_rows + ROWS_PER_JOB - 1) / ROWS_PER_JOB, prune_rows, &j);
        free(j.bufs);
    }
    if (n_zeroed) *n_zeroed = count_zeros(w, n) - before_z;
    return PARE_OK;
}

float pare_prune_kth(float *s, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = s[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (s[i] < pivot) i++;
            while (pivot < s[j]) j--;
            if (i <= j) { float t = s[i]; s[i] = s[j]; s[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return s[k];
}

void pare_prune_below(float *w, int64_t ne0, int64_t n_rows, const float *col_scale, float threshold,
                      int64_t *ties_left, int64_t *n_zeroed) {
    int64_t z = 0;
    for (int64_t i = 0; i < ne0 * n_rows; i++) {
        float s = score_of(w, i, col_scale, i % ne0);
        if (s < threshold || (s == threshold && *ties_left > 0)) {
            if (s == threshold) (*ties_left)--;
            if (w[i] != 0.0f) z++;
            w[i] = 0.0f;
        }
    }
    if (n_zeroed) *n_zeroed = z;
}

void pare_prune_count_zeros(const float *w, int64_t ne0, int64_t n_rows, int64_t *total, int64_t *row_min,
                            int64_t *row_max) {
    int64_t t = 0, lo = INT64_MAX, hi = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t z = count_zeros(w + r * ne0, ne0);
        t += z;
        if (z < lo) lo = z;
        if (z > hi) hi = z;
    }
    *total = t;
    if (row_min) *row_min = n_rows ? lo : 0;
    if (row_max) *row_max = hi;
}

bool pare_prune_check_nm(const float *w, int64_t ne0, int64_t n_rows, int n, int m) {
    if (m <= 0 || ne0 % m) return false;
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t c = 0; c < ne0; c += m) {
            int nz = 0;
            for (int i = 0; i < m; i++) nz += w[r * ne0 + c + i] != 0.0f;
            if (nz > n) return false;
        }
    return true;
}
