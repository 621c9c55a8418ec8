/*
 * quant/q_simd.c - AVX2 fast paths (built when the compiler targets AVX2 + F16C + FMA).
 *
 * Every function here must give the same bits as its scalar reference in quant_impl.h;
 * tests/test_quant.c checks that on random data. The rules that make this possible:
 *   - reductions that the reference does in order (sums over a group) are never split
 *     across lanes: the K-quant searches put one sub-block in each lane instead, so each
 *     lane does the reference's additions in the reference's order;
 *   - no fused multiply-add (the reference is compiled without contraction, -std=c11),
 *     and every product / sum is formed in the reference's association order;
 *   - ggml's nearest_int (the 1.5 * 2^23 trick) is reproduced bit for bit, including its
 *     results out of range, rather than using the CPU's conversion;
 *   - roundf (halves away from zero) is built from truncation, not the CPU's ties-to-even.
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#ifdef PARE_QUANT_SIMD

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ helpers */

/* ggml's nearest_int on 8 lanes, bit for bit. */
static inline __m256i v_nearest(__m256 v) {
    __m256i i = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

static inline __m256i v_clamp(__m256i v, int lo, int hi) {
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
}

static inline __m256 v_abs(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

static inline __m256 v_blend(__m256 a, __m256 b, __m256 mask) { return _mm256_blendv_ps(a, b, mask); }

static inline pare_half f2h(float f) { return (pare_half)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
static inline float h2f(pare_half h) { return _cvtsh_ss(h); }

/* 8 bytes (unsigned) to 8 floats. */
static inline __m256 v_u8(const uint8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p))); }
static inline __m256 v_i8(const int8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p))); }

/* Sub-block k's values, one lane per sub-block: xt[i][k] = x[n * k + i]. */
static void transpose8(const float *x, int n, float (*xt)[8]) {
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < n; i++) xt[i][k] = x[n * k + i];
}


#ifdef __AVX512F__
/* ------------------------------------------------------------------------ AVX-512: 16 lanes
 * The same searches with one sub-block in each of 16 lanes. Levels are rounded in the
 * float domain ((v + 1.5*2^23) - 1.5*2^23, then clamped), which equals ggml's nearest_int
 * and clamp whenever |v| < 2^22; each trial first checks that bound for the group's
 * extreme values (rounding is monotonic, so they bound every v) and otherwise uses the
 * bit-exact integer emulation. */

#define Z_MAGIC 12582912.f

static inline __m512i z_nearest(__m512 v) {
    __m512i i = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(Z_MAGIC)));
    return _mm512_sub_epi32(_mm512_and_si512(i, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
}

/* Rounded and clamped levels as floats; exact selects the integer emulation. */
static inline __m512 z_level(__m512 v, float lo, float hi, bool exact) {
    if (exact) {
        __m512i l = _mm512_max_epi32(z_nearest(v), _mm512_set1_epi32((int)lo));
        return _mm512_cvtepi32_ps(_mm512_min_epi32(l, _mm512_set1_epi32((int)hi)));
    }
    __m512 r = _mm512_sub_ps(_mm512_add_ps(v, _mm512_set1_ps(Z_MAGIC)), _mm512_set1_ps(Z_MAGIC));
    return _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
}

/* true unless some lane's extreme trial value is out of nearest_int's range (or NaN). */
static inline bool z_in_range(__m512 a, __m512 b) {
    const __m512 lim = _mm512_set1_ps(4194304.f);
    __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(a), lim, _CMP_LT_OQ) &
                   _mm512_cmp_ps_mask(_mm512_abs_ps(b), lim, _CMP_LT_OQ);
    return ok == 0xFFFF;
}

static void transpose16(const float *x, int n, float (*xt)[16]) {
    for (int k = 0; k < 16; k++)
        for (int i = 0; i < n; i++) xt[i][k] = x[n * k + i];
}

typedef struct {
    __m512 x[32], w[32], l[32];
    __m512 xlo, xhi;
    bool has_nan; /* a NaN value escapes the range check: always use the exact levels */
} kx2_z;

static inline void kx2z_levels(kx2_z *s, int n, int nmax, __m512 iscale, __m512 min, __m512 *sl, __m512 *sl2,
                               __m512 *sxl) {
    bool exact = s->has_nan || !z_in_range(_mm512_mul_ps(iscale, _mm512_sub_ps(s->xlo, min)),
                                           _mm512_mul_ps(iscale, _mm512_sub_ps(s->xhi, min)));
    __m512 a = _mm512_setzero_ps(), b = a, c = a;
    for (int i = 0; i < n; i++) {
        __m512 l = z_level(_mm512_mul_ps(iscale, _mm512_sub_ps(s->x[i], min)), 0.f, (float)nmax, exact);
        s->l[i] = l;
        __m512 wl = _mm512_mul_ps(s->w[i], l);
        a = _mm512_add_ps(a, wl);
        b = _mm512_add_ps(b, _mm512_mul_ps(wl, l));
        c = _mm512_add_ps(c, _mm512_mul_ps(wl, s->x[i]));
    }
    *sl = a;
    *sl2 = b;
    *sxl = c;
}

static inline __m512 kx2z_error(const kx2_z *s, int n, __m512 scale, __m512 min, bool use_mad) {
    __m512 e = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, s->l[i]), min), s->x[i]);
        diff = use_mad ? _mm512_abs_ps(diff) : _mm512_mul_ps(diff, diff);
        e = _mm512_add_ps(e, _mm512_mul_ps(s->w[i], diff));
    }
    return e;
}

static void kx2_16(int n, int nmax, const float *x, const float *w, float rmin, float rdelta, int nstep,
                   bool use_mad, uint8_t *L, float *scales, float *mins) {
    kx2_z s;
    float xt[32][16], wt[32][16];
    transpose16(x, n, xt);
    transpose16(w, n, wt);
    s.x[0] = _mm512_loadu_ps(xt[0]);
    s.w[0] = _mm512_loadu_ps(wt[0]);
    __m512 vmin = s.x[0], vmax = s.x[0], sum_w = s.w[0], sum_x = _mm512_mul_ps(sum_w, s.x[0]);
    __mmask16 nan = _mm512_cmp_ps_mask(s.x[0], s.x[0], _CMP_UNORD_Q);
    for (int i = 1; i < n; i++) {
        s.x[i] = _mm512_loadu_ps(xt[i]);
        s.w[i] = _mm512_loadu_ps(wt[i]);
        nan |= _mm512_cmp_ps_mask(s.x[i], s.x[i], _CMP_UNORD_Q);
        vmin = _mm512_min_ps(s.x[i], vmin);
        vmax = _mm512_max_ps(s.x[i], vmax);
        sum_w = _mm512_add_ps(sum_w, s.w[i]);
        sum_x = _mm512_add_ps(sum_x, _mm512_mul_ps(s.w[i], s.x[i]));
    }
    s.xlo = vmin;
    s.xhi = vmax;
    s.has_nan = nan != 0;
    const __m512 zero = _mm512_setzero_ps();
    vmin = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(vmin, zero, _CMP_GT_OQ), vmin, zero);
    const __mmask16 degenerate = _mm512_cmp_ps_mask(vmax, vmin, _CMP_EQ_OQ);
    const __m512 min0 = vmin;
    __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)nmax), _mm512_sub_ps(vmax, vmin));
    __m512 scale = _mm512_div_ps(_mm512_set1_ps(1.f), iscale), sl, sl2, sxl;
    kx2z_levels(&s, n, nmax, iscale, vmin, &sl, &sl2, &sxl);
    __m512 best_error = kx2z_error(&s, n, scale, vmin, use_mad);
    __m512 best_is = iscale, best_mn = vmin;
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        const float num = rmin + rdelta * is + nmax;
        iscale = _mm512_div_ps(_mm512_set1_ps(num), _mm512_sub_ps(vmax, vmin));
        kx2z_levels(&s, n, nmax, iscale, vmin, &sl, &sl2, &sxl);
        __m512 D = _mm512_sub_ps(_mm512_mul_ps(sum_w, sl2), _mm512_mul_ps(sl, sl));
        __m512 ts = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_w, sxl), _mm512_mul_ps(sum_x, sl)), D);
        __m512 tm = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sl2, sum_x), _mm512_mul_ps(sl, sxl)), D);
        __mmask16 pos = _mm512_cmp_ps_mask(tm, zero, _CMP_GT_OQ);
        tm = _mm512_mask_blend_ps(pos, tm, zero);
        ts = _mm512_mask_blend_ps(pos, ts, _mm512_div_ps(sxl, sl2));
        __m512 err = kx2z_error(&s, n, ts, tm, use_mad);
        __mmask16 better = _mm512_cmp_ps_mask(D, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(err, best_error, _CMP_LT_OQ);
        best_error = _mm512_mask_blend_ps(better, best_error, err);
        scale = _mm512_mask_blend_ps(better, scale, ts);
        best_is = _mm512_mask_blend_ps(better, best_is, iscale);
        best_mn = _mm512_mask_blend_ps(better, best_mn, vmin);
        vmin = _mm512_mask_blend_ps(better, vmin, tm);
    }
    float sc[16], mn[16], mn0[16];
    _mm512_storeu_ps(sc, scale);
    _mm512_storeu_ps(mn, vmin);
    _mm512_storeu_ps(mn0, min0);
    int32_t lv[32][16];
    for (int i = 0; i < n; i++) {
        __m512i l = _mm512_max_epi32(z_nearest(_mm512_mul_ps(best_is, _mm512_sub_ps(s.x[i], best_mn))), _mm512_setzero_si512());
        _mm512_storeu_si512(lv[i], _mm512_min_epi32(l, _mm512_set1_epi32(nmax)));
    }
    for (int k = 0; k < 16; k++) {
        bool d = (degenerate >> k) & 1;
        scales[k] = d ? 0.f : sc[k];
        mins[k] = d ? -mn0[k] : -mn[k];
        for (int i = 0; i < n; i++) L[n * k + i] = d ? 0 : (uint8_t)lv[i][k];
    }
}

static inline void qxz_sums(const __m512 *x, const __m512 *w, int n, int nmax, __m512 iscale, bool exact,
                            __m512 *slx, __m512 *sl2) {
    __m512 a = _mm512_setzero_ps(), b = a;
    for (int i = 0; i < n; i++) {
        __m512 l = z_level(_mm512_mul_ps(iscale, x[i]), (float)-nmax, (float)(nmax - 1), exact);
        a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_mul_ps(w[i], x[i]), l));
        b = _mm512_add_ps(b, _mm512_mul_ps(_mm512_mul_ps(w[i], l), l));
    }
    *slx = a;
    *sl2 = b;
}

static void qx_16(int n, int nmax, const float *x, const float *w, int8_t *L, float *scales) {
    __m512 vx[32], vw[32];
    float xt[32][16], wt[32][16];
    transpose16(x, n, xt);
    if (w) transpose16(w, n, wt);
    __m512 amax = _mm512_setzero_ps(), max = amax, xlo = _mm512_set1_ps(INFINITY), xhi = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    for (int i = 0; i < n; i++) {
        vx[i] = _mm512_loadu_ps(xt[i]);
        vw[i] = w ? _mm512_loadu_ps(wt[i]) : _mm512_mul_ps(vx[i], vx[i]);
        __m512 ax = _mm512_abs_ps(vx[i]);
        __mmask16 gt = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
        amax = _mm512_mask_blend_ps(gt, amax, ax);
        max = _mm512_mask_blend_ps(gt, max, vx[i]);
        xlo = _mm512_min_ps(xlo, vx[i]);
        xhi = _mm512_max_ps(xhi, vx[i]);
        nan |= _mm512_cmp_ps_mask(vx[i], vx[i], _CMP_UNORD_Q);
    }
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 allzero = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(QGROUP_EPS), _CMP_LT_OQ);
    __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max), slx, sl2;
    bool exact = nan || !z_in_range(_mm512_mul_ps(iscale, xlo), _mm512_mul_ps(iscale, xhi));
    qxz_sums(vx, vw, n, nmax, iscale, exact, &slx, &sl2);
    __m512 scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(sl2, zero, _CMP_NEQ_UQ), zero, _mm512_div_ps(slx, sl2));
    __m512 best = _mm512_mul_ps(scale, slx), best_is = iscale;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float num = -(nmax + 0.1f * is);
        iscale = _mm512_div_ps(_mm512_set1_ps(num), max);
        exact = nan || !z_in_range(_mm512_mul_ps(iscale, xlo), _mm512_mul_ps(iscale, xhi));
        qxz_sums(vx, vw, n, nmax, iscale, exact, &slx, &sl2);
        __mmask16 better = _mm512_cmp_ps_mask(sl2, zero, _CMP_GT_OQ) &
                           _mm512_cmp_ps_mask(_mm512_mul_ps(slx, slx), _mm512_mul_ps(best, sl2), _CMP_GT_OQ);
        __m512 ns = _mm512_div_ps(slx, sl2);
        scale = _mm512_mask_blend_ps(better, scale, ns);
        best = _mm512_mask_blend_ps(better, best, _mm512_mul_ps(ns, slx));
        best_is = _mm512_mask_blend_ps(better, best_is, iscale);
    }
    float sc[16];
    int32_t lv[32][16];
    _mm512_storeu_ps(sc, scale);
    for (int i = 0; i < n; i++) {
        __m512i l = _mm512_max_epi32(z_nearest(_mm512_mul_ps(best_is, vx[i])), _mm512_set1_epi32(-nmax));
        l = _mm512_min_epi32(l, _mm512_set1_epi32(nmax - 1));
        _mm512_storeu_si512(lv[i], _mm512_add_epi32(l, _mm512_set1_epi32(nmax)));
    }
    for (int k = 0; k < 16; k++) {
        bool z = (allzero >> k) & 1;
        scales[k] = z ? 0.f : sc[k];
        for (int i = 0; i < n; i++) L[n * k + i] = z ? 0 : (int8_t)lv[i][k];
    }
}
#endif

/* ------------------------------------------------------------------------ make_qkx2 x 8 */

typedef struct {
    __m256 x[32], w[32], l[32];
} kx2_lanes;

/* One trial: levels for iscale (against the current min) and the weighted sums. */
static inline void kx2_levels(kx2_lanes *s, int n, int nmax, __m256 iscale, __m256 min, __m256 *sl, __m256 *sl2,
                              __m256 *sxl) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a;
    for (int i = 0; i < n; i++) {
        __m256 l = _mm256_cvtepi32_ps(v_clamp(v_nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(s->x[i], min))), 0, nmax));
        s->l[i] = l;
        __m256 wl = _mm256_mul_ps(s->w[i], l);
        a = _mm256_add_ps(a, wl);
        b = _mm256_add_ps(b, _mm256_mul_ps(wl, l));
        c = _mm256_add_ps(c, _mm256_mul_ps(wl, s->x[i]));
    }
    *sl = a;
    *sl2 = b;
    *sxl = c;
}

/* Weighted error of levels s->l under scale and min. */
static inline __m256 kx2_error(const kx2_lanes *s, int n, __m256 scale, __m256 min, bool use_mad) {
    __m256 e = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, s->l[i]), min), s->x[i]);
        diff = use_mad ? v_abs(diff) : _mm256_mul_ps(diff, diff);
        e = _mm256_add_ps(e, _mm256_mul_ps(s->w[i], diff));
    }
    return e;
}

/* GCC cannot see that n >= 1 fills s.x[0] before it is read. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
static void kx2_8(int n, int nmax, const float *x, const float *w, float rmin, float rdelta, int nstep, bool use_mad,
                  uint8_t *L, float *scales, float *mins) {
    kx2_lanes s;
    float xt[32][8], wt[32][8];
    transpose8(x, n, xt);
    transpose8(w, n, wt);
    s.x[0] = _mm256_loadu_ps(xt[0]); /* n >= 1: the batch callers pass 16 or 32 */
    s.w[0] = _mm256_loadu_ps(wt[0]);
    for (int i = 1; i < n; i++) {
        s.x[i] = _mm256_loadu_ps(xt[i]);
        s.w[i] = _mm256_loadu_ps(wt[i]);
    }
    __m256 vmin = s.x[0], vmax = s.x[0], sum_w = s.w[0], sum_x = _mm256_mul_ps(sum_w, s.x[0]);
    for (int i = 1; i < n; i++) {
        vmin = _mm256_min_ps(s.x[i], vmin);
        vmax = _mm256_max_ps(s.x[i], vmax);
        sum_w = _mm256_add_ps(sum_w, s.w[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(s.w[i], s.x[i]));
    }
    const __m256 zero = _mm256_setzero_ps();
    vmin = v_blend(vmin, zero, _mm256_cmp_ps(vmin, zero, _CMP_GT_OQ));
    const __m256 degenerate = _mm256_cmp_ps(vmax, vmin, _CMP_EQ_OQ), min0 = vmin;
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(vmax, vmin));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
    __m256 sl, sl2, sxl;
    kx2_levels(&s, n, nmax, iscale, vmin, &sl, &sl2, &sxl);
    __m256 best_error = kx2_error(&s, n, scale, vmin, use_mad);
    __m256 best_is = iscale, best_mn = vmin; /* what the kept levels were computed with */
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        const float num = rmin + rdelta * is + nmax;
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(vmax, vmin));
        kx2_levels(&s, n, nmax, iscale, vmin, &sl, &sl2, &sxl);
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sl2), _mm256_mul_ps(sl, sl));
        __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sxl), _mm256_mul_ps(sum_x, sl)), D);
        __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sum_x), _mm256_mul_ps(sl, sxl)), D);
        __m256 pos = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
        tm = v_blend(tm, zero, pos);
        ts = v_blend(ts, _mm256_div_ps(sxl, sl2), pos);
        __m256 err = kx2_error(&s, n, ts, tm, use_mad);
        __m256 better = _mm256_and_ps(_mm256_cmp_ps(D, zero, _CMP_GT_OQ), _mm256_cmp_ps(err, best_error, _CMP_LT_OQ));
        best_error = v_blend(best_error, err, better);
        scale = v_blend(scale, ts, better);
        best_is = v_blend(best_is, iscale, better);
        best_mn = v_blend(best_mn, vmin, better);
        vmin = v_blend(vmin, tm, better);
    }
    float sc[8], mn[8], mn0[8], bi[8], bm[8];
    int deg = _mm256_movemask_ps(degenerate);
    _mm256_storeu_ps(sc, scale);
    _mm256_storeu_ps(mn, vmin);
    _mm256_storeu_ps(mn0, min0);
    _mm256_storeu_ps(bi, best_is);
    _mm256_storeu_ps(bm, best_mn);
    int32_t lv[32][8];
    for (int i = 0; i < n; i++)
        _mm256_storeu_si256((__m256i *)(void *)lv[i],
                            v_clamp(v_nearest(_mm256_mul_ps(best_is, _mm256_sub_ps(s.x[i], best_mn))), 0, nmax));
    for (int k = 0; k < 8; k++) {
        bool d = (deg >> k) & 1;
        scales[k] = d ? 0.f : sc[k];
        mins[k] = d ? -mn0[k] : -mn[k];
        for (int i = 0; i < n; i++) L[n * k + i] = d ? 0 : (uint8_t)lv[i][k];
    }
}
#pragma GCC diagnostic pop

void pare_qsimd_qkx2_batch(int nsub, int n, int nmax, const float *x, const float *w, float rmin, float rdelta,
                           int nstep, bool use_mad, uint8_t *L, float *scales, float *mins) {
    int k = 0;
#ifdef __AVX512F__
    for (; k + 16 <= nsub && n >= 1 && n <= 32; k += 16)
        kx2_16(n, nmax, x + n * k, w + n * k, rmin, rdelta, nstep, use_mad, L + n * k, scales + k, mins + k);
#endif
    for (; k + 8 <= nsub && n >= 1 && n <= 32; k += 8)
        kx2_8(n, nmax, x + n * k, w + n * k, rmin, rdelta, nstep, use_mad, L + n * k, scales + k, mins + k);
    if (k < nsub)
        pare_qref_qkx2_batch(nsub - k, n, nmax, x + n * k, w + n * k, rmin, rdelta, nstep, use_mad, L + n * k,
                             scales + k, mins + k);
}

/* ------------------------------------------------------------------------ make_qx_quants x 8 */

/* Sums of w*x*l and w*l*l for the levels at iscale. */
static inline void qx_sums(const __m256 *x, const __m256 *w, int n, int nmax, __m256 iscale, __m256 *slx, __m256 *sl2) {
    __m256 a = _mm256_setzero_ps(), b = a;
    for (int i = 0; i < n; i++) {
        __m256 l = _mm256_cvtepi32_ps(v_clamp(v_nearest(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1));
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), l));
        b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_mul_ps(w[i], l), l));
    }
    *slx = a;
    *sl2 = b;
}

static void qx_8(int n, int nmax, const float *x, const float *w, int8_t *L, float *scales) {
    __m256 vx[32], vw[32];
    float xt[32][8], wt[32][8];
    transpose8(x, n, xt);
    if (w) transpose8(w, n, wt);
    __m256 amax = _mm256_setzero_ps(), max = amax;
    for (int i = 0; i < n; i++) {
        vx[i] = _mm256_loadu_ps(xt[i]);
        vw[i] = w ? _mm256_loadu_ps(wt[i]) : _mm256_mul_ps(vx[i], vx[i]);
        __m256 ax = v_abs(vx[i]), gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = v_blend(amax, ax, gt);
        max = v_blend(max, vx[i], gt);
    }
    const __m256 zero = _mm256_setzero_ps();
    int allzero = _mm256_movemask_ps(_mm256_cmp_ps(amax, _mm256_set1_ps(QGROUP_EPS), _CMP_LT_OQ));
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max), slx, sl2;
    qx_sums(vx, vw, n, nmax, iscale, &slx, &sl2);
    /* scale = suml2 ? sumlx / suml2 : 0 (a NaN suml2 counts as true, as in C) */
    __m256 scale = v_blend(zero, _mm256_div_ps(slx, sl2), _mm256_cmp_ps(sl2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, slx), best_is = iscale;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float num = -(nmax + 0.1f * is);
        iscale = _mm256_div_ps(_mm256_set1_ps(num), max);
        qx_sums(vx, vw, n, nmax, iscale, &slx, &sl2);
        __m256 better = _mm256_and_ps(_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
                                      _mm256_cmp_ps(_mm256_mul_ps(slx, slx), _mm256_mul_ps(best, sl2), _CMP_GT_OQ));
        __m256 ns = _mm256_div_ps(slx, sl2);
        scale = v_blend(scale, ns, better);
        best = v_blend(best, _mm256_mul_ps(ns, slx), better);
        best_is = v_blend(best_is, iscale, better);
    }
    float sc[8];
    int32_t lv[32][8];
    _mm256_storeu_ps(sc, scale);
    for (int i = 0; i < n; i++)
        _mm256_storeu_si256((__m256i *)(void *)lv[i],
                            _mm256_add_epi32(v_clamp(v_nearest(_mm256_mul_ps(best_is, vx[i])), -nmax, nmax - 1),
                                             _mm256_set1_epi32(nmax)));
    for (int k = 0; k < 8; k++) {
        bool z = (allzero >> k) & 1;
        scales[k] = z ? 0.f : sc[k];
        for (int i = 0; i < n; i++) L[n * k + i] = z ? 0 : (int8_t)lv[i][k];
    }
}

void pare_qsimd_qx_batch(int nsub, int n, int nmax, const float *x, const float *w, int8_t *L, float *scales) {
    int k = 0;
#ifdef __AVX512F__
    for (; k + 16 <= nsub && n >= 1 && n <= 32; k += 16) qx_16(n, nmax, x + n * k, w ? w + n * k : NULL, L + n * k, scales + k);
#endif
    for (; k + 8 <= nsub && n >= 1 && n <= 32; k += 8) qx_8(n, nmax, x + n * k, w ? w + n * k : NULL, L + n * k, scales + k);
    if (k < nsub) pare_qref_qx_batch(nsub - k, n, nmax, x + n * k, w ? w + n * k : NULL, L + n * k, scales + k);
}

/* ------------------------------------------------------------------------ Q8_0, Q4_0 */

/* roundf: truncate, then step away from zero when the dropped part is at least a half. */
static inline __m256 v_roundf(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = v_abs(_mm256_sub_ps(v, t));
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.f), _mm256_and_ps(v, _mm256_set1_ps(-0.f)));
    return _mm256_add_ps(t, _mm256_and_ps(one, _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
}

/* 32 int32 lanes (a, b, c, d in order) to 32 bytes in order. */
static inline __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i abcd = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

void pare_qsimd_q_q8_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK_LEG; i++, x += QK_LEG) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(v_abs(v[0]), v_abs(v[1])), _mm256_max_ps(v_abs(v[2]), v_abs(v[3])));
        const float amax = hmax8(m), d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(v_roundf(_mm256_mul_ps(v[k], vid)));
        _mm256_storeu_si256((__m256i *)(void *)y[i].qs, pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    }
}

void pare_qsimd_q_q4_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (imatrix) {
        pare_qref_q_q4_0(x, dst, n, imatrix);
        return;
    }
    pare_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK_LEG; i++, x += QK_LEG) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(v_abs(v[0]), v_abs(v[1])), _mm256_max_ps(v_abs(v[2]), v_abs(v[3])));
        const float amax = hmax8(m);
        float max = 0.f; /* the first value of largest magnitude, as the reference picks it */
        if (amax > 0) {
            __m256 va = _mm256_set1_ps(amax);
            uint32_t bits = 0;
            for (int k = 0; k < 4; k++)
                bits |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v_abs(v[k]), va, _CMP_EQ_OQ)) << (8 * k);
            max = bits ? x[__builtin_ctz(bits)] : 0.f;
        }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(8.5f);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[k], vid), half)), _mm256_set1_epi32(15));
        __m256i b = pack_i32_to_i8(q[0], q[1], q[2], q[3]);
        __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
        _mm_storeu_si128((__m128i *)(void *)y[i].qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
    }
}

/* ------------------------------------------------------------------------ f16, bf16 */

void pare_qsimd_q_f16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(d + 2 * i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) pare_f32_to_plain(PARE_TYPE_F16, src + i, d + 2 * i, n - i);
}

void pare_qsimd_dq_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    int64_t i = 0;
    /* F16C quiets signalling NaNs; core keeps their bits, so those chunks go the scalar way. */
    const __m128i expm = _mm_set1_epi16(0x7e00), snan = _mm_set1_epi16(0x7c00), pay = _mm_set1_epi16(0x01ff);
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i));
        __m128i is_snan = _mm_andnot_si128(_mm_cmpeq_epi16(_mm_and_si128(h, pay), _mm_setzero_si128()),
                                           _mm_cmpeq_epi16(_mm_and_si128(h, expm), snan));
        if (_mm_movemask_epi8(is_snan))
            pare_plain_to_f32(PARE_TYPE_F16, s + 2 * i, dst + i, 8);
        else
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    if (i < n) pare_plain_to_f32(PARE_TYPE_F16, s + 2 * i, dst + i, n - i);
}

void pare_qsimd_q_bf16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *d = dst;
    int64_t i = 0;
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 8 * k));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, absm), inf);
            __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
            __m256i rnd = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
            __m256i qn = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(64));
            r[k] = _mm256_blendv_epi8(rnd, qn, nan);
        }
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(d + 2 * i), p);
    }
    if (i < n) pare_f32_to_plain(PARE_TYPE_BF16, src + i, d + 2 * i, n - i);
}

void pare_qsimd_dq_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    if (i < n) pare_plain_to_f32(PARE_TYPE_BF16, s + 2 * i, dst + i, n - i);
}

/* ------------------------------------------------------------------------ dequantization */

/* y[0..8) = d * q (+ or - m as the reference adds it) */
static inline void st_mul(float *y, __m256 q, float d) { _mm256_storeu_ps(y, _mm256_mul_ps(q, _mm256_set1_ps(d))); }
static inline void st_mul_add(float *y, __m256 q, float d, float m) {
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(q, _mm256_set1_ps(d)), _mm256_set1_ps(m)));
}
static inline void st_mul_sub(float *y, __m256 q, float d, float m) {
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(d), q), _mm256_set1_ps(m)));
}

/* Low and high nibbles of 16 bytes as 16 bytes each. */
static inline void nibbles16(const uint8_t *p, uint8_t *lo, uint8_t *hi) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p), m = _mm_set1_epi8(0x0F);
    _mm_storeu_si128((__m128i *)(void *)lo, _mm_and_si128(v, m));
    _mm_storeu_si128((__m128i *)(void *)hi, _mm_and_si128(_mm_srli_epi16(v, 4), m));
}

void pare_qsimd_dq_q8_0(const void *src, float *y, int64_t n) {
    const pare_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d);
        for (int k = 0; k < 4; k++) st_mul(y + 8 * k, v_i8(x[i].qs + 8 * k), d);
    }
}

void pare_qsimd_dq_q4_0(const void *src, float *y, int64_t n) {
    const pare_block_q4_0 *x = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d);
        nibbles16(x[i].qs, q, q + 16);
        for (int k = 0; k < 4; k++) st_mul(y + 8 * k, _mm256_sub_ps(v_u8(q + 8 * k), _mm256_set1_ps(8.f)), d);
    }
}

void pare_qsimd_dq_q4_1(const void *src, float *y, int64_t n) {
    const pare_block_q4_1 *x = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        nibbles16(x[i].qs, q, q + 16);
        for (int k = 0; k < 4; k++) st_mul_add(y + 8 * k, v_u8(q + 8 * k), d, m);
    }
}

/* 32 five-bit levels of a Q5 block as bytes. */
static inline void q5_levels(const uint8_t *qs, const uint8_t *qhb, uint8_t *q) {
    uint32_t qh;
    memcpy(&qh, qhb, 4);
    nibbles16(qs, q, q + 16);
    __m256i bits = _mm256_set1_epi32((int)qh);
    for (int k = 0; k < 4; k++) {
        __m256i sh = _mm256_srlv_epi32(bits, _mm256_setr_epi32(8 * k, 8 * k + 1, 8 * k + 2, 8 * k + 3, 8 * k + 4,
                                                               8 * k + 5, 8 * k + 6, 8 * k + 7));
        __m256i hb = _mm256_slli_epi32(_mm256_and_si256(sh, _mm256_set1_epi32(1)), 4);
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)(void *)t, hb);
        for (int j = 0; j < 8; j++) q[8 * k + j] |= (uint8_t)t[j];
    }
}

void pare_qsimd_dq_q5_0(const void *src, float *y, int64_t n) {
    const pare_block_q5_0 *x = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d);
        q5_levels(x[i].qs, x[i].qh, q);
        for (int k = 0; k < 4; k++) st_mul(y + 8 * k, _mm256_sub_ps(v_u8(q + 8 * k), _mm256_set1_ps(16.f)), d);
    }
}

void pare_qsimd_dq_q5_1(const void *src, float *y, int64_t n) {
    const pare_block_q5_1 *x = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        q5_levels(x[i].qs, x[i].qh, q);
        for (int k = 0; k < 4; k++) st_mul_add(y + 8 * k, v_u8(q + 8 * k), d, m);
    }
}

static inline void k4_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void pare_qsimd_dq_q4_K(const void *src, float *y, int64_t n) {
    const pare_block_q4_K *x = src;
    uint8_t q[64];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        for (int j = 0; j < 4; j++, y += 64) {
            uint8_t sc, m;
            nibbles16(x[i].qs + 32 * j, q, q + 32);
            nibbles16(x[i].qs + 32 * j + 16, q + 16, q + 48);
            k4_scale_min(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            k4_scale_min(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int k = 0; k < 4; k++) st_mul_sub(y + 8 * k, v_u8(q + 8 * k), d1, m1);
            for (int k = 4; k < 8; k++) st_mul_sub(y + 8 * k, v_u8(q + 8 * k), d2, m2);
        }
    }
}

void pare_qsimd_dq_q5_K(const void *src, float *y, int64_t n) {
    const pare_block_q5_K *x = src;
    uint8_t q[64];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)x[i].qh);
        for (int j = 0; j < 4; j++, y += 64) {
            uint8_t sc, m;
            nibbles16(x[i].qs + 32 * j, q, q + 32);
            nibbles16(x[i].qs + 32 * j + 16, q + 16, q + 48);
            /* bit 2j of qh[l] is the 5th bit of value l, bit 2j+1 of value 32 + l */
            __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), _mm256_set1_epi8(1));
            __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), _mm256_set1_epi8(1));
            __m256i q0 = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(void *)q), _mm256_slli_epi16(b0, 4));
            __m256i q1 = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(void *)(q + 32)), _mm256_slli_epi16(b1, 4));
            _mm256_storeu_si256((__m256i *)(void *)q, q0);
            _mm256_storeu_si256((__m256i *)(void *)(q + 32), q1);
            k4_scale_min(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            k4_scale_min(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int k = 0; k < 4; k++) st_mul_sub(y + 8 * k, v_u8(q + 8 * k), d1, m1);
            for (int k = 4; k < 8; k++) st_mul_sub(y + 8 * k, v_u8(q + 8 * k), d2, m2);
        }
    }
}

void pare_qsimd_dq_q6_K(const void *src, float *y, int64_t n) {
    const pare_block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)qh);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
            v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4));
            for (int g = 0; g < 4; g++) {
                int8_t q[32];
                _mm256_storeu_si256((__m256i *)(void *)q, _mm256_sub_epi8(v[g], _mm256_set1_epi8(32)));
                const float d0 = d * sc[2 * g], d1 = d * sc[2 * g + 1];
                st_mul(y + 32 * g, v_i8(q), d0);
                st_mul(y + 32 * g + 8, v_i8(q + 8), d0);
                st_mul(y + 32 * g + 16, v_i8(q + 16), d1);
                st_mul(y + 32 * g + 24, v_i8(q + 24), d1);
            }
        }
    }
}

void pare_qsimd_dq_q2_K(const void *src, float *y, int64_t n) {
    const pare_block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        int is = 0;
        for (int nn = 0; nn < 2; nn++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * nn));
            for (int shift = 0; shift < 8; shift += 2) {
                uint8_t q[32];
                _mm256_storeu_si256((__m256i *)(void *)q, _mm256_and_si256(_mm256_srli_epi16(qv, shift), _mm256_set1_epi8(3)));
                for (int half = 0; half < 2; half++, y += 16) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    st_mul_sub(y, v_u8(q + 16 * half), dl, ml);
                    st_mul_sub(y + 8, v_u8(q + 16 * half + 8), dl, ml);
                }
            }
        }
    }
}

void pare_qsimd_dq_q3_K(const void *src, float *y, int64_t n) {
    const pare_block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *s = x[i].scales;
        __m256i hm = _mm256_loadu_si256((const __m256i *)(const void *)x[i].hmask);
        int is = 0, bit = 0;
        for (int nn = 0; nn < 2; nn++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * nn));
            for (int shift = 0; shift < 8; shift += 2, bit++) {
                /* level - 4 when the high bit is clear */
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qv, shift), _mm256_set1_epi8(3));
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, bit), _mm256_set1_epi8(1));
                __m256i sub = _mm256_slli_epi16(_mm256_xor_si256(hb, _mm256_set1_epi8(1)), 2);
                int8_t q[32];
                _mm256_storeu_si256((__m256i *)(void *)q, _mm256_sub_epi8(lo, sub));
                for (int half = 0; half < 2; half++, y += 16, is++) {
                    int sc = is < 8 ? s[is] & 0xF : s[is - 8] >> 4;
                    sc = (sc | (((s[8 + is % 4] >> (2 * (is / 4))) & 3) << 4)) - 32;
                    const float dl = d_all * sc;
                    st_mul(y, v_i8(q + 16 * half), dl);
                    st_mul(y + 8, v_i8(q + 16 * half + 8), dl);
                }
            }
        }
    }
}

/* 16 bytes of nibble indices to 32 levels (low nibbles first). */
static inline void iq4_levels(const uint8_t *qs, int8_t *q) {
    const __m128i tbl = _mm_loadu_si128((const __m128i *)(const void *)pare_iq4nl_values);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs), m = _mm_set1_epi8(0x0F);
    _mm_storeu_si128((__m128i *)(void *)q, _mm_shuffle_epi8(tbl, _mm_and_si128(v, m)));
    _mm_storeu_si128((__m128i *)(void *)(q + 16), _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(v, 4), m)));
}

void pare_qsimd_dq_iq4_nl(const void *src, float *y, int64_t n) {
    const pare_block_iq4_nl *x = src;
    int8_t q[32];
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = h2f(x[i].d);
        iq4_levels(x[i].qs, q);
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_set1_ps(d), v_i8(q + 8 * k)));
    }
}

void pare_qsimd_dq_iq4_xs(const void *src, float *y, int64_t n) {
    const pare_block_iq4_xs *x = src;
    int8_t q[32];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint16_t sh = x[i].scales_h;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            iq4_levels(x[i].qs + 16 * ib, q);
            for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_set1_ps(dl), v_i8(q + 8 * k)));
        }
    }
}

/* ------------------------------------------------------------------------ IQ4_NL, IQ4_XS quantization
 * q_iq4.c's reference, reorganised so that vectors do the work without changing a bit.
 *
 * best_index(x) is the number of k in 1..15 with !(x - v[k-1] < v[k] - x) (v the levels):
 * that comparison is monotone in x (float subtraction is monotone in each operand) and
 * false at the bracket ggml's bisection ends in, so counting equals the bisection,
 * ties and out-of-range values included. Near the midpoint m = (v[k-1] + v[k]) / 2 both
 * differences are exact (they are multiples of x's ulp smaller than 2 |x|), so the
 * comparison is exactly x < m: the count is that of midpoints m_k with !(x < m_k), which
 * NaN passes too (15, as the reference). tests/test_quant.c checks the midpoints.
 *
 * A group's 16 trial scales (the first guess and itry = -7..7) are independent until one
 * is chosen, so trial t runs in lane t (AVX-512: one vector of 16; AVX2: two of 8): each
 * lane adds its sumqx and sumq2 over j = 0..31 in the reference's order with the
 * reference's products ((w q) x, (w q) q), and the choice then walks the trials in the
 * reference's order. The final levels are one index search per value, a vector of values
 * at a time. Everything else is elementwise (weights, the group maximum) or keeps its
 * order (sigma2: eight super-blocks' sums side by side, each in order). */

#ifdef __AVX512F__
#define IQ4_W 16 /* lanes: the 16 trials at once */
#else
#define IQ4_W 8 /* the 16 trials in two halves (wider GNU vectors are split badly on AVX2) */
#endif
typedef float iq4_vf __attribute__((vector_size(4 * IQ4_W)));
typedef int32_t iq4_vi __attribute__((vector_size(4 * IQ4_W)));

/* The constants as vectors (no vector is passed by value: 64-byte vectors have no ABI
 * below AVX-512). */
typedef struct {
    iq4_vf mid[15];  /* midpoints of adjacent levels */
    iq4_vi step[15]; /* the bits of v[k] - v[k-1], added to v[0] for each midpoint passed */
    iq4_vf v0;       /* v[0] */
    iq4_vf num[16 / IQ4_W]; /* lane t (1..15): itry + v[0] for itry = t - 8, the trials' numerators */
#ifdef __AVX512F__
    __m512 tmid; /* lane k (1..15): mid[k - 1], for a search by permutes (lane 0 unused) */
    __m512 vals; /* lane k: v[k] */
#endif
} iq4_tab;

static void iq4_tab_init(iq4_tab *t) {
    const int8_t *v = pare_iq4nl_values;
    for (int k = 1; k < 16; k++) {
        float mid = (float)(v[k - 1] + v[k]) * 0.5f, step = (float)(v[k] - v[k - 1]);
        for (int l = 0; l < IQ4_W; l++) {
            t->mid[k - 1][l] = mid;
            memcpy(&t->step[k - 1][l], &step, 4);
        }
    }
    for (int l = 0; l < IQ4_W; l++) t->v0[l] = (float)v[0];
    for (int l = 0; l < 16; l++) t->num[l / IQ4_W][l % IQ4_W] = (float)(l - 8 + v[0]);
#ifdef __AVX512F__
    float tm[16] = {-INFINITY}, vl[16];
    for (int k = 1; k < 16; k++) tm[k] = t->mid[k - 1][0];
    for (int k = 0; k < 16; k++) vl[k] = (float)v[k];
    t->tmid = _mm512_loadu_ps(tm);
    t->vals = _mm512_loadu_ps(vl);
#endif
}

#ifdef __AVX512F__
/* best_index of 16 lanes by bisection: 4 permutes of the midpoints instead of 15 compares.
 * !(v < m) (NLT_UQ, true for NaN) is the compare of the count above, and it is monotone in
 * the midpoint, so the bisection counts the same midpoints. */
static inline __m512i iq4_index16(const iq4_tab *t, __m512 v) {
    __m512i idx = _mm512_setzero_si512(), probe;
#define IQ4_STEP(step)                                                                                         \
    probe = _mm512_add_epi32(idx, _mm512_set1_epi32(step));                                                    \
    idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(probe, t->tmid), _CMP_NLT_UQ), \
                                probe);
    IQ4_STEP(8)
    IQ4_STEP(4)
    IQ4_STEP(2)
    IQ4_STEP(1)
#undef IQ4_STEP
    return idx;
}
#endif

/* best_index of n values (a multiple of IQ4_W) id * x[j] into L. */
static inline void iq4_indices(const iq4_tab *t, const float *x, float id, int n, uint8_t *L) {
    for (int j0 = 0; j0 < n; j0 += IQ4_W) {
        iq4_vf v;
        memcpy(&v, x + j0, sizeof v);
        v = id * v;
#ifdef __AVX512F__
        _mm_storeu_si128((__m128i *)(void *)(L + j0), _mm512_cvtepi32_epi8(iq4_index16(t, (__m512)v)));
#else
        iq4_vi c = {0};
        for (int k = 0; k < 15; k++) c -= ~(v < t->mid[k]);
        for (int j = 0; j < IQ4_W; j++) L[j0 + j] = (uint8_t)c[j];
#endif
    }
}

/* The reference's iq4_group (ntry = 7) without its levels (iq4_super re-picks them). */
static float iq4_group_fast(const iq4_tab *t, const float *xb, const float *weight) {
    /* The reference's amax is the largest |x| that is not NaN (maxps returns its second
     * operand for a NaN), max the first x of that magnitude. */
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 ax[4], m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        ax[k] = _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * k));
        m = _mm256_max_ps(ax[k], m);
    }
    m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
    m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4e));
    m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xb1));
    const float amax = _mm256_cvtss_f32(m);
    if (amax < QGROUP_EPS) return 0;
    uint32_t at = 0;
    for (int k = 0; k < 4; k++) at |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(ax[k], m, _CMP_EQ_OQ)) << (8 * k);
    const float max = xb[__builtin_ctz(at)];
    iq4_vf ids[16 / IQ4_W];
    for (int h = 0; h < 16 / IQ4_W; h++) ids[h] = t->num[h] / max;
    ids[0][0] = 1 / (-max / pare_iq4nl_values[0]);
    float sx[16], s2[16];
    for (int h = 0; h < 16; h += IQ4_W) {
        iq4_vf id = ids[h / IQ4_W], vx = {0}, v2 = {0};
        for (int j = 0; j < 32; j++) {
            /* the level of each lane: v[0] plus the steps of the midpoints passed */
            iq4_vf v = id * xb[j];
#ifdef __AVX512F__
            iq4_vf q = (iq4_vf)_mm512_permutexvar_ps(iq4_index16(t, (__m512)v), t->vals);
#else
            iq4_vf q = t->v0;
            for (int k = 0; k < 15; k++) q += (iq4_vf)(t->step[k] & ~(v < t->mid[k]));
#endif
            iq4_vf wq = weight[j] * q;
            vx += wq * xb[j];
            v2 += wq * q;
        }
        memcpy(sx + h, &vx, sizeof vx);
        memcpy(s2 + h, &v2, sizeof v2);
    }
    float d = s2[0] > 0 ? sx[0] / s2[0] : 0.f;
    float best = d * sx[0];
    for (int k = 1; k < 16; k++)
        if (s2[k] > 0 && sx[k] * sx[k] > best * s2[k]) {
            d = sx[k] / s2[k];
            best = d * sx[k];
        }
    return d;
}

/* The reference's iq4_super; sigma2 from iq4_sigma2 (used with importance weights only). */
static void iq4_super_fast(const iq4_tab *t, int sbs, const float *x, const float *qw, float sigma2, uint8_t *L,
                           float *scales, pare_half *dh, uint16_t *scales_h, uint8_t *scales_l) {
    float weight[32];
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sbs / 32; ib++) {
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 32; j += 8) { /* one rounding per operation, as sqrtf */
            __m256 v = _mm256_loadu_ps(xb + j), v2 = _mm256_mul_ps(v, v);
            if (qw)
                v2 = _mm256_mul_ps(_mm256_loadu_ps(qw + 32 * ib + j),
                                   _mm256_sqrt_ps(_mm256_add_ps(_mm256_set1_ps(sigma2), v2)));
            _mm256_storeu_ps(weight + j, v2);
        }
        scales[ib] = iq4_group_fast(t, xb, weight);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (sbs == 32) {
        *dh = q_f2h(scales[0]);
        iq4_indices(t, x, scales[0] ? 1 / scales[0] : 0, 32, L);
        return;
    }
    *scales_h = 0;
    float d = -max_scale / 32;
    *dh = q_f2h(d);
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < sbs / 32; ib++) {
        int l = q_clampi(q_nearest_int(id * scales[ib]), -32, 31);
        float dl = d * l, idl = dl ? 1 / dl : 0.f;
        iq4_indices(t, x + 32 * ib, idl, 32, L + 32 * ib);
        iq4_put_scale(l, ib, scales_l, scales_h);
    }
}

/* The reference's sigma2 (2 / sbs times the sum of squares, added in order) of the
 * super-blocks i0 .. i0 + nb - 1 (nb <= 8) of sbs values: 8 sums side by side rather than
 * one long chain of dependent additions. */
static void iq4_sigma2(const float *x, int sbs, int64_t i0, int nb, float *sigma2) {
    float s[8] = {0};
    const float *xs = x + sbs * i0;
    for (int j = 0; j < sbs; j++)
        for (int b = 0; b < nb; b++) s[b] += xs[sbs * b + j] * xs[sbs * b + j];
    for (int b = 0; b < nb; b++) sigma2[b] = s[b] * (2.f / sbs);
}

void pare_qsimd_q_iq4_nl(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq4_nl *y = dst;
    iq4_tab t;
    iq4_tab_init(&t);
    uint8_t L[32];
    float scale, sigma2[8] = {0};
    for (int64_t i = 0; i < n / 32; i++) {
        pare_half hd;
        if (imatrix && i % 8 == 0) iq4_sigma2(x, 32, i, n / 32 - i < 8 ? (int)(n / 32 - i) : 8, sigma2);
        iq4_super_fast(&t, 32, x + 32 * i, imatrix ? imatrix + 32 * i : NULL, sigma2[i % 8], L, &scale, &hd, NULL,
                       NULL);
        y[i].d = hd;
        iq4_pack_nibbles(L, y[i].qs, 1);
    }
}

void pare_qsimd_q_iq4_xs(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq4_xs *y = dst;
    iq4_tab t;
    iq4_tab_init(&t);
    uint8_t L[QK_K];
    float scales[QK_K / 32], sigma2[8] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t sh = 0;
        pare_half hd;
        memset(y[i].scales_l, 0, 4);
        if (imatrix && i % 8 == 0) iq4_sigma2(x, QK_K, i, n / QK_K - i < 8 ? (int)(n / QK_K - i) : 8, sigma2);
        iq4_super_fast(&t, QK_K, x + QK_K * i, imatrix ? imatrix + QK_K * i : NULL, sigma2[i % 8], L, scales, &hd,
                       &sh, y[i].scales_l);
        y[i].d = hd;
        y[i].scales_h = sh;
        iq4_pack_nibbles(L, y[i].qs, QK_K / 32);
    }
}

/* ------------------------------------------------------------------------ IQ3 neighbour search
 * q_iq3.c's best_neighbour with the distances from tables: coordinate i adds the term
 * e_i[l] = (w_i (scale q_l - x_i)) (scale q_l - x_i), q_l = 2l + 1, that the reference adds
 * for level l, so a neighbour's distance ((((0 + e_0[l0]) + e_1[l1]) + e_2[l2]) + e_3[l3])
 * is the reference's sum from four permutes, for 8 (AVX2) or 16 (AVX-512) neighbours at a
 * time. The winner is the reference's: the first entry equal to the least distance, when
 * that is below FLT_MAX (minps returns its second operand for a NaN, so NaNs never count). */
#ifdef __AVX512F__
#define IQ3_W 16
typedef __m512 iq3_vec;
#else
#define IQ3_W 8
typedef __m256 iq3_vec;
#endif
#define IQ3_CHUNKS ((PARE_IQ3_MAX_NEIGHBOURS + IQ3_W - 1) / IQ3_W)

/* A search's first half: the distances of the listed neighbours, IQ3_W per chunk (+inf past
 * the list's end), and their lane-wise minimum (no NaN: minps keeps its second operand). */
static inline __attribute__((always_inline)) iq3_vec iq3_distances(const uint16_t *list, const float *xval,
                                                                   const float *w, float scale, iq3_vec *acc) {
    const int n = list[0];
    const uint16_t *nb = list + 1;
#ifdef __AVX512F__
    const __m512 q = _mm512_setr_ps(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
    __m512 e[4];
    for (int i = 0; i < 4; i++) {
        __m512 diff = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(scale), q), _mm512_set1_ps(xval[i]));
        e[i] = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[i]), diff), diff);
    }
    __m512 vmin = _mm512_set1_ps(FLT_MAX);
    const __m512i seven = _mm512_set1_epi32(7);
    for (int c = 0; 16 * c < n; c++) {
        const int left = n - 16 * c;
        const __mmask16 in = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        /* a masked load: the list may end within 16 entries of the table's end */
        __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in, nb + 16 * c));
        __m512 a = _mm512_add_ps(_mm512_setzero_ps(), _mm512_permutexvar_ps(_mm512_and_si512(u, seven), e[0]));
        a = _mm512_add_ps(a, _mm512_permutexvar_ps(_mm512_and_si512(_mm512_srli_epi32(u, 3), seven), e[1]));
        a = _mm512_add_ps(a, _mm512_permutexvar_ps(_mm512_and_si512(_mm512_srli_epi32(u, 6), seven), e[2]));
        a = _mm512_add_ps(a, _mm512_permutexvar_ps(_mm512_and_si512(_mm512_srli_epi32(u, 9), seven), e[3]));
        acc[c] = _mm512_mask_blend_ps(in, _mm512_set1_ps(INFINITY), a);
        vmin = _mm512_min_ps(acc[c], vmin);
    }
    return vmin;
#else
    const __m256 q = _mm256_setr_ps(1, 3, 5, 7, 9, 11, 13, 15);
    __m256 e[4];
    for (int i = 0; i < 4; i++) {
        __m256 diff = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(scale), q), _mm256_set1_ps(xval[i]));
        e[i] = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff);
    }
    __m256 vmin = _mm256_set1_ps(FLT_MAX);
    const __m256i seven = _mm256_set1_epi32(7), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int c = 0; 8 * c < n; c++) {
        /* 8 keys: past the list's end, the next list's or the zeros that end the table */
        __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(nb + 8 * c)));
        __m256 a = _mm256_add_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(e[0], _mm256_and_si256(u, seven)));
        a = _mm256_add_ps(a, _mm256_permutevar8x32_ps(e[1], _mm256_and_si256(_mm256_srli_epi32(u, 3), seven)));
        a = _mm256_add_ps(a, _mm256_permutevar8x32_ps(e[2], _mm256_and_si256(_mm256_srli_epi32(u, 6), seven)));
        a = _mm256_add_ps(a, _mm256_permutevar8x32_ps(e[3], _mm256_and_si256(_mm256_srli_epi32(u, 9), seven)));
        __m256 in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * c), lane));
        acc[c] = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), a, in);
        vmin = _mm256_min_ps(acc[c], vmin);
    }
    return vmin;
#endif
}

/* The second half: the levels of the first neighbour at the least distance, when that is
 * below FLT_MAX (else of the first listed). */
static inline __attribute__((always_inline)) void iq3_pick(const uint16_t *list, const iq3_vec *acc, iq3_vec vmin,
                                                           int8_t *L) {
    const uint16_t *nb = list + 1;
    int best = 0;
#ifdef __AVX512F__
    const float min = _mm512_reduce_min_ps(vmin);
    if (min < FLT_MAX)
        for (int c = 0;; c++) {
            __mmask16 eq = _mm512_cmp_ps_mask(acc[c], _mm512_set1_ps(min), _CMP_EQ_OQ);
            if (eq) {
                best = 16 * c + __builtin_ctz(eq);
                break;
            }
        }
#else
    vmin = _mm256_min_ps(vmin, _mm256_permute2f128_ps(vmin, vmin, 1));
    vmin = _mm256_min_ps(vmin, _mm256_shuffle_ps(vmin, vmin, 0x4e));
    vmin = _mm256_min_ps(vmin, _mm256_shuffle_ps(vmin, vmin, 0xb1));
    const float min = _mm256_cvtss_f32(vmin);
    if (min < FLT_MAX)
        for (int c = 0;; c++) {
            int eq = _mm256_movemask_ps(_mm256_cmp_ps(acc[c], _mm256_set1_ps(min), _CMP_EQ_OQ));
            if (eq) {
                best = 8 * c + __builtin_ctz((unsigned)eq);
                break;
            }
        }
#endif
    const unsigned u = nb[best];
    L[0] = (int8_t)(u & 7);
    L[1] = (int8_t)(u >> 3 & 7);
    L[2] = (int8_t)(u >> 6 & 7);
    L[3] = (int8_t)(u >> 9 & 7);
}

static void iq3_neighbour_fast(const uint16_t *list, const float *xval, const float *w, float scale, int8_t *L) {
    iq3_vec acc[IQ3_CHUNKS];
    iq3_vec vmin = iq3_distances(list, xval, w, scale, acc);
    iq3_pick(list, acc, vmin, L);
}

/* q_iq3.c's round_trial: the rounding 8 values at a time (ggml's nearest_int bit for bit);
 * then the distances of every off-grid point, then their picks, so that the searches of
 * different points overlap instead of each waiting for its own reduction. */
static void iq3_trial_fast(const int16_t *map, const uint16_t *neighbours, const float *xval, const float *w,
                           float id, float scale, int8_t *L, bool *on_grid) {
    for (int c = 0; c < 4; c++) {
        __m256 v = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(id), _mm256_loadu_ps(xval + 8 * c)), _mm256_set1_ps(1.f));
        __m256i l = v_clamp(v_nearest(_mm256_mul_ps(_mm256_set1_ps(0.5f), v)), 0, 7);
        __m128i b = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        b = _mm_packs_epi16(b, b);
        _mm_storel_epi64((__m128i *)(void *)(L + 8 * c), b);
    }
    int off[8], n_off = 0;
    const uint16_t *list[8];
    for (int g = 0; g < 8; g++) {
        const int8_t *p = L + 4 * g;
        const int key = p[0] | p[1] << 3 | p[2] << 6 | p[3] << 9, m = map[key];
        on_grid[g] = m >= 0;
        list[n_off] = neighbours + (-m - 1);
        off[n_off] = g;
        n_off += m < 0;
    }
    iq3_vec acc[8][IQ3_CHUNKS], vmin[8];
    for (int k = 0; k < n_off; k++) vmin[k] = iq3_distances(list[k], xval + 4 * off[k], w + 4 * off[k], scale, acc[k]);
    for (int k = 0; k < n_off; k++) iq3_pick(list[k], acc[k], vmin[k], L + 4 * off[k]);
}

static const pare_iq3_kernels iq3_fast = {iq3_neighbour_fast, iq3_trial_fast};

void pare_qsimd_q_iq3_xxs(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq3_xxs_with(src, dst, n, imatrix, &iq3_fast);
}
void pare_qsimd_q_iq3_s(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq3_s_with(src, dst, n, imatrix, &iq3_fast);
}

/* ------------------------------------------------------------------------ IQ2 neighbour search
 * q_iq2.c's best_neighbour by the same tables as IQ3's: coordinate i adds
 * e_i[l] = (w_i (scale q_l - x_i)) (scale q_l - x_i), q_l = 1, 3, 5, the reference's term,
 * looked up by a permute for 16 (AVX-512) or 8 (AVX2) candidates at a time; the candidates'
 * indices are the reference's running sums. A chunk's least distance replaces the best so
 * far only when strictly less, and within a chunk the first lane of that value wins: the
 * reference's first strict minimum below FLT_MAX (NaN distances never count). */
#ifdef __AVX512F__
#define IQ2_W 16
#else
#define IQ2_W 8
#endif

static void iq2_neighbour_fast(const uint64_t *grid, unsigned size, const uint16_t *list, const float *xval,
                               const float *w, float scale, int8_t *L) {
    const int count = list[0];
    const uint16_t *nb = list + 1;
    unsigned j = 0, gi = nb[0];
    float best = FLT_MAX;
#ifdef __AVX512F__
    /* lane 4 c + l of t[h]: e_{4h + c}[l] (lane 4 c + 3 unused) */
    __m512 t[2];
    for (int h = 0; h < 2; h++) {
        const float *x = xval + 4 * h, *ww = w + 4 * h;
        __m512 q = _mm512_setr_ps(1, 3, 5, 0, 1, 3, 5, 0, 1, 3, 5, 0, 1, 3, 5, 0);
        __m512 xv = _mm512_setr_ps(x[0], x[0], x[0], x[0], x[1], x[1], x[1], x[1], x[2], x[2], x[2], x[2], x[3], x[3],
                                   x[3], x[3]);
        __m512 wv = _mm512_setr_ps(ww[0], ww[0], ww[0], ww[0], ww[1], ww[1], ww[1], ww[1], ww[2], ww[2], ww[2], ww[2],
                                   ww[3], ww[3], ww[3], ww[3]);
        __m512 diff = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(scale), q), xv);
        t[h] = _mm512_mul_ps(_mm512_mul_ps(wv, diff), diff);
    }
    const __m512i three = _mm512_set1_epi32(3);
#define IQ2_TERM(v, sh, c, tab)                                                                                  \
    a = _mm512_add_ps(a, _mm512_permutexvar_ps(                                                                  \
                             _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(v, sh), three), _mm512_set1_epi32(c)), \
                             tab));
#else
    /* lane 4 c + l of t[h]: e_{2h + c}[l] (lane 4 c + 3 unused) */
    __m256 t[4];
    for (int h = 0; h < 4; h++) {
        const float *x = xval + 2 * h, *ww = w + 2 * h;
        __m256 q = _mm256_setr_ps(1, 3, 5, 0, 1, 3, 5, 0);
        __m256 xv = _mm256_setr_ps(x[0], x[0], x[0], x[0], x[1], x[1], x[1], x[1]);
        __m256 wv = _mm256_setr_ps(ww[0], ww[0], ww[0], ww[0], ww[1], ww[1], ww[1], ww[1]);
        __m256 diff = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(scale), q), xv);
        t[h] = _mm256_mul_ps(_mm256_mul_ps(wv, diff), diff);
    }
    const __m256i three = _mm256_set1_epi32(3), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#define IQ2_TERM(v, sh, c, tab)                                                                                  \
    a = _mm256_add_ps(a, _mm256_permutevar8x32_ps(                                                               \
                             tab, _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(v, sh), three),          \
                                                   _mm256_set1_epi32(c))));
#endif
    /* The candidates' indices are running sums of the list's differences modulo the grid
     * size (a power of 2): a prefix sum per chunk plus the chunk before's last index. Lanes
     * past the list's end add 0 (a masked load) and repeat the last index, as the reference. */
    for (int j0 = 0; j0 < count; j0 += IQ2_W) {
        const int m = count - j0 < IQ2_W ? count - j0 : IQ2_W;
        uint32_t idx[IQ2_W];
#ifdef __AVX512F__
        const __mmask16 in = (__mmask16)(m == 16 ? 0xFFFF : (1u << m) - 1);
        __m512i d = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in, nb + j0)), z = _mm512_setzero_si512();
        d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 15));
        d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 14));
        d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 12));
        d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 8));
        const __m512i vi = _mm512_and_si512(_mm512_add_epi32(d, _mm512_set1_epi32((int)j)), _mm512_set1_epi32((int)size - 1));
        _mm512_storeu_si512(idx, vi);
        j = idx[15];
        const __m512i g0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(vi), (const void *)grid, 8);
        const __m512i g1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(vi, 1), (const void *)grid, 8);
        const __m512i vlo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(g0)), _mm512_cvtepi64_epi32(g1), 1);
        const __m512i vhi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(g0, 32))),
                                               _mm512_cvtepi64_epi32(_mm512_srli_epi64(g1, 32)), 1);
        /* the level of byte i is bits 4-5 of it (0x08, 0x19, 0x2b) */
        __m512 a = _mm512_setzero_ps();
        IQ2_TERM(vlo, 4, 0, t[0])
        IQ2_TERM(vlo, 12, 4, t[0])
        IQ2_TERM(vlo, 20, 8, t[0])
        IQ2_TERM(vlo, 28, 12, t[0])
        IQ2_TERM(vhi, 4, 0, t[1])
        IQ2_TERM(vhi, 12, 4, t[1])
        IQ2_TERM(vhi, 20, 8, t[1])
        IQ2_TERM(vhi, 28, 12, t[1])
        const __mmask16 ok = in & _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q);
        a = _mm512_mask_blend_ps(ok, _mm512_set1_ps(INFINITY), a);
        const float cmin = _mm512_reduce_min_ps(a);
        if (cmin < best) {
            best = cmin;
            gi = idx[__builtin_ctz(_mm512_cmp_ps_mask(a, _mm512_set1_ps(cmin), _CMP_EQ_OQ))];
        }
#else
        const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32(m), lane);
        uint16_t tail[8] = {0}; /* the list may end within 8 entries of the table's end */
        const uint16_t *dp = nb + j0;
        if (m < 8) dp = memcpy(tail, nb + j0, sizeof tail[0] * (size_t)m);
        __m256i d = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)dp));
        d = _mm256_add_epi32(d, _mm256_slli_si256(d, 4));
        d = _mm256_add_epi32(d, _mm256_slli_si256(d, 8));
        d = _mm256_add_epi32(d, _mm256_blend_epi32(_mm256_setzero_si256(),
                                                   _mm256_permutevar8x32_epi32(d, _mm256_set1_epi32(3)), 0xF0));
        const __m256i vi = _mm256_and_si256(_mm256_add_epi32(d, _mm256_set1_epi32((int)j)), _mm256_set1_epi32((int)size - 1));
        _mm256_storeu_si256((__m256i *)(void *)idx, vi);
        j = idx[7];
        const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        const __m256i p0 = _mm256_permutevar8x32_epi32(
            _mm256_i32gather_epi64((const long long *)(const void *)grid, _mm256_castsi256_si128(vi), 8), perm);
        const __m256i p1 = _mm256_permutevar8x32_epi32(
            _mm256_i32gather_epi64((const long long *)(const void *)grid, _mm256_extracti128_si256(vi, 1), 8), perm);
        const __m256i vlo = _mm256_permute2x128_si256(p0, p1, 0x20), vhi = _mm256_permute2x128_si256(p0, p1, 0x31);
        __m256 a = _mm256_setzero_ps();
        IQ2_TERM(vlo, 4, 0, t[0])
        IQ2_TERM(vlo, 12, 4, t[0])
        IQ2_TERM(vlo, 20, 0, t[1])
        IQ2_TERM(vlo, 28, 4, t[1])
        IQ2_TERM(vhi, 4, 0, t[2])
        IQ2_TERM(vhi, 12, 4, t[2])
        IQ2_TERM(vhi, 20, 0, t[3])
        IQ2_TERM(vhi, 28, 4, t[3])
        const __m256 ok = _mm256_and_ps(_mm256_castsi256_ps(in), _mm256_cmp_ps(a, a, _CMP_ORD_Q));
        a = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), a, ok);
        __m256 v = _mm256_min_ps(a, _mm256_permute2f128_ps(a, a, 1));
        v = _mm256_min_ps(v, _mm256_shuffle_ps(v, v, 0x4e));
        v = _mm256_min_ps(v, _mm256_shuffle_ps(v, v, 0xb1));
        const float cmin = _mm256_cvtss_f32(v);
        if (cmin < best) {
            best = cmin;
            gi = idx[__builtin_ctz((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(cmin), _CMP_EQ_OQ)))];
        }
#endif
    }
#undef IQ2_TERM
    for (int i = 0; i < 8; i++) L[i] = (int8_t)(((grid[gi] >> (8 * i)) & 0xff) >> 4);
}

void pare_qsimd_q_iq2_xxs(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq2_xxs_with(src, dst, n, imatrix, iq2_neighbour_fast);
}
void pare_qsimd_q_iq2_xs(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq2_xs_with(src, dst, n, imatrix, iq2_neighbour_fast);
}
void pare_qsimd_q_iq2_s(const float *src, void *dst, int64_t n, const float *imatrix) {
#ifdef __AVX512F__
    pare_iq_quant_iq2_s_with(src, dst, n, imatrix, iq2_neighbour_fast);
#else
    /* IQ2_S's lists are short (8 on average): 8 lanes do not pay for their set-up */
    pare_iq_quant_iq2_s(src, dst, n, imatrix);
#endif
}

/* ------------------------------------------------------------------------ the table */

static void pare_qfast_q_q2_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (imatrix)
        pare_qref_q_q2_K(x, dst, n, imatrix);
    else
        pare_qk_q2_K_row(x, dst, n, pare_qsimd_qkx2_batch);
}
static void pare_qfast_q_q4_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (imatrix)
        pare_qref_q_q4_K(x, dst, n, imatrix);
    else
        pare_qk_q4_K_row(x, dst, n, pare_qsimd_qkx2_batch);
}
static void pare_qfast_q_q5_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (imatrix)
        pare_qref_q_q5_K(x, dst, n, imatrix);
    else
        pare_qk_q5_K_row(x, dst, n, pare_qsimd_qkx2_batch);
}
static void pare_qfast_q_q6_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_qk_q6_K_row(x, dst, n, imatrix, pare_qsimd_qx_batch);
}
#define FAST_ROW(T, QREF, DQREF, QFAST, DQFAST, IMATRIX, VEC_DOT, BLOCK)                                         \
    [PARE_TYPE_##T] = {PARE_TYPE_##T, QFAST, DQFAST, IMATRIX, PARE_TYPE_##VEC_DOT, sizeof(BLOCK)},
static const pare_quant_traits fast_table[PARE_TYPE_GGML_COUNT] = {PARE_QUANT_TYPES(FAST_ROW)};
#undef FAST_ROW

const pare_quant_traits *pare_qsimd_table(void) { return fast_table; }
pare_qkx2_batch_fn pare_qsimd_kx2(void) { return pare_qsimd_qkx2_batch; }
pare_qx_batch_fn pare_qsimd_qx(void) { return pare_qsimd_qx_batch; }

#else
/* Without AVX2 the traits table uses the scalar references only. */
const pare_quant_traits *pare_qsimd_table(void) { return NULL; }
pare_qkx2_batch_fn pare_qsimd_kx2(void) { return NULL; }
pare_qx_batch_fn pare_qsimd_qx(void) { return NULL; }
#endif
