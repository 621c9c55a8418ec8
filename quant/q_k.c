/*
 * quant/q_k.c - the K-quant super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K
 * (scalar references), and ggml's group searches shared with q_legacy.c.
 * Layouts are in quant.h.
 *
 * What ggml does, which this file reproduces step for step (the float operations are
 * done in the same order, so the results are bit-identical):
 *   - without importance weights, ggml's quantize_q*_K uses quantize_row_q*_K_ref:
 *     Q2_K/Q4_K/Q5_K search each sub-block's scale and min with make_qkx2_quants
 *     (weights |x| for Q2_K, rms + |x| for Q4_K/Q5_K), then quantize the sub-block
 *     scales linearly against the largest; Q3_K uses make_q3_quants; Q6_K make_qx_quants.
 *   - with importance weights it uses quantize_row_q*_K_impl: weights
 *     qw * sqrt(sigma2 + x^2), make_qkx3_quants / make_qx_quants per sub-block and a
 *     weighted search for the super-block scales (make_qp_quants / make_qx_quants).
 *   - every path re-derives the levels from the stored (f16-rounded) scales at the end.
 * The per-sub-block searches are the hot spot; they are called through batch kernels
 * (quant_impl.h) so that q_simd.c can run 8 sub-blocks in the lanes of one register.
 */
#include "quant/quant_impl.h"

#include <math.h>

/* ------------------------------------------------------------------------ searches */

float pare_qk_make_qx(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QGROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + q_clampi(q_nearest_int(iscale * x[i]), -nmax, nmax - 1));
        return 1 / iscale;
    }
    bool return_early = rmse_type < 0;
    if (rmse_type < 0) rmse_type = -rmse_type;
#define QX_W(i)                                                                                   \
    (qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) \
                                                                                     : sqrtf(fabsf(x[i])))
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_clampi(q_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = QX_W(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = q_clampi(q_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = QX_W(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + q_clampi(q_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
#undef QX_W
    return scale;
}

/* Symmetric levels with a greedy per-element refinement (Q3_K without weights). */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QGROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_clampi(q_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = q_clampi(q_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric levels 0..nmax with a min <= 0: a grid of nstep+1 trial scales, each refined
 * by a weighted least-squares fit of scale and min; returns the scale, *the_min = -min. */
static float make_qkx2(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                       uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)q_clampi(q_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = q_clampi(q_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

void pare_qref_qkx2_batch(int nsub, int n, int nmax, const float *x, const float *w, float rmin,
                          float rdelta, int nstep, bool use_mad, uint8_t *L, float *scales, float *mins) {
    uint8_t Laux[32];
    for (int k = 0; k < nsub; k++)
        scales[k] = make_qkx2(n, nmax, x + n * k, w + n * k, L + n * k, &mins[k], Laux, rmin, rdelta, nstep,
                              use_mad);
}

void pare_qref_qx_batch(int nsub, int n, int nmax, const float *x, const float *w, int8_t *L, float *scales) {
    for (int k = 0; k < nsub; k++) scales[k] = pare_qk_make_qx(n, nmax, x + n * k, L + n * k, 1, w ? w + n * k : NULL);
}

/* As make_qkx2 with weights x^2 when w is NULL; levels are computed so that a fitted min
 * near max (a huge or NaN v) still gives a level in range. */
float pare_qk_make_qkx3(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                        uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
#define KX3_W(i) (weights ? weights[i] : x[i] * x[i])
    float min = x[0], max = x[0], sum_w = KX3_W(0), sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = KX3_W(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_mad = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)q_clampi(q_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += KX3_W(i) * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const float v = iscale * (x[i] - min);
            const int l = v > 0 ? q_nearest_int(v < nmax ? v : (float)nmax) : 0;
            Laux[i] = (uint8_t)l;
            float w = KX3_W(i);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += KX3_W(i) * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
#undef KX3_W
    *the_min = -min;
    return scale;
}

float pare_qk_make_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < QGROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)q_nearest_int(iscale * x[i]);
    float scale = 1 / iscale, best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is, mse = 0;
        for (int i = 0; i < n; i++) {
            int l = q_nearest_int(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_nearest_int(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = q_nearest_int(x[i] * sl2 / slx);
                new_l = new_l < nmax ? new_l : nmax;
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ------------------------------------------------------------------------ shared packing */

/* 2-bit levels of 256 values into 64 bytes (Q2_K, Q3_K low bits). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static float sigma2_of(const float *x, float factor) {
    float s = 0;
    for (int j = 0; j < QK_K; j++) s += x[j] * x[j];
    return factor * s / QK_K;
}

/* The 6-bit scale / min packing of Q4_K and Q5_K (ggml's get_scale_min_k4). */
static void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t *s) {
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Levels 0..nmax of 8 sub-blocks of 32 from the stored scales and mins. */
static void requant_k4(const float *x, const uint8_t *scales, pare_half hd, pare_half hdmin, int nmax, uint8_t *L) {
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d = q_h2f(hd) * sc;
        if (!d) continue;
        const float dm = q_h2f(hdmin) * m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)q_clampi(q_nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

/* ------------------------------------------------------------------------ Q2_K */

static void q2_K_scales_linear(pare_block_q2_K *y, const float *scales, const float *mins) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < QK_K / 16; j++) y->scales[j] = (uint8_t)q_nearest_int(iscale * scales[j]);
        y->d = q_f2h(max_scale / 15.f);
    } else {
        memset(y->scales, 0, 16);
        y->d = q_f2h(0.f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < QK_K / 16; j++) y->scales[j] |= (uint8_t)(q_nearest_int(iscale * mins[j]) << 4);
        y->dmin = q_f2h(max_min / 15.f);
    } else {
        y->dmin = q_f2h(0.f);
    }
}

static void q2_K_finish(pare_block_q2_K *y, const float *x, uint8_t *L) {
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = q_h2f(y->d) * (y->scales[j] & 0xF);
        if (!d) continue;
        const float m = q_h2f(y->dmin) * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (uint8_t)q_clampi(q_nearest_int((x[16 * j + ii] + m) / d), 0, 3);
    }
    pack_2bit(L, y->qs);
}

void pare_qk_q2_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2) {
    pare_block_q2_K *y = dst;
    uint8_t L[QK_K];
    float w[QK_K], scales[QK_K / 16], mins[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        for (int l = 0; l < QK_K; l++) w[l] = fabsf(x[l]);
        kx2(QK_K / 16, 16, 3, x, w, -0.5f, 0.1f, 15, true, L, scales, mins);
        q2_K_scales_linear(&y[i], scales, mins);
        q2_K_finish(&y[i], x, L);
    }
}

static void q2_K_row_imatrix(const float *x, pare_block_q2_K *y, int64_t n, const float *qw) {
    uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
    float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K, qw += QK_K) {
        float sigma2 = sigma2_of(x, 1.f);
        for (int j = 0; j < QK_K / 16; j++) {
            sw[j] = 0;
            for (int l = 0; l < 16; l++) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++) sw[j] += weight[l];
            scales[j] = pare_qk_make_qkx3(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
                                          false);
        }
        float dm = pare_qk_make_qp(QK_K / 16, 15, scales, Ls, sw);
        float mm = pare_qk_make_qp(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = q_f2h(dm);
        y[i].dmin = q_f2h(mm);
        for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_K_finish(&y[i], x, L);
    }
}

void pare_qref_q_q2_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    if (imatrix)
        q2_K_row_imatrix(src, dst, n, imatrix);
    else
        pare_qk_q2_K_row(src, dst, n, pare_qref_qkx2_batch);
}

void pare_qref_dq_q2_K(const void *src, float *y, int64_t n) {
    const pare_block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int nn = 0; nn < QK_K; nn += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ Q3_K */

/* Stores 16 scales of 6 bits, each already offset by 32. */
static void q3_K_put_scale(uint8_t *s, int j, int l) {
    if (j < 8)
        s[j] = (uint8_t)(l & 0xF);
    else
        s[j - 8] |= (uint8_t)((l & 0xF) << 4);
    s[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

static int q3_K_get_scale(const uint8_t *s, int j) {
    int sc = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

static void q3_K_finish(pare_block_q3_K *y, const float *x, int8_t *L) {
    for (int j = 0; j < QK_K / 16; j++) {
        float d = q_h2f(y->d) * (int8_t)q3_K_get_scale(y->scales, j);
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(q_clampi(q_nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    memset(y->hmask, 0, QK_K / 8);
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; j++) {
        if (L[j] > 3) {
            y->hmask[m] |= hm;
            L[j] -= 4;
        }
        if (++m == QK_K / 8) {
            m = 0;
            hm <<= 1;
        }
    }
    pack_2bit((const uint8_t *)L, y->qs);
}

static void q3_K_block_plain(const float *x, pare_block_q3_K *y) {
    int8_t L[QK_K];
    float scales[QK_K / 16], max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; j++) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        float scale = fabsf(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    memset(y->scales, 0, 12);
    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; j++) {
            int8_t l = (int8_t)q_nearest_int(iscale * scales[j]);
            q3_K_put_scale(y->scales, j, q_clampi(l, -32, 31) + 32);
        }
        y->d = q_f2h(1 / iscale);
    } else {
        y->d = q_f2h(0.f);
    }
    q3_K_finish(y, x, L);
}

static void q3_K_block_imatrix(const float *x, pare_block_q3_K *y, const float *qw) {
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], weight[16], sw[QK_K / 16];
    float sigma2 = sigma2_of(x, 2.f);
    for (int j = 0; j < QK_K / 16; j++) {
        for (int l = 0; l < 16; l++) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; l++) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = pare_qk_make_qx(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    memset(y->scales, 0, 12);
    float d_block = pare_qk_make_qx(QK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK_K / 16; j++) q3_K_put_scale(y->scales, j, Ls[j]);
    y->d = q_f2h(d_block);
    q3_K_finish(y, x, L);
}

void pare_qref_q_q3_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_q3_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        if (imatrix)
            q3_K_block_imatrix(x, &y[i], imatrix + QK_K * i);
        else
            q3_K_block_plain(x, &y[i]);
    }
}

void pare_qref_dq_q3_K(const void *src, float *y, int64_t n) {
    const pare_block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = q_h2f(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int nn = 0; nn < QK_K; nn += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    float dl = d_all * q3_K_get_scale(x[i].scales, is++);
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ Q4_K / Q5_K */

/* Weights rms + |x| per 32-value sub-block (the reference path). */
static void k4_weights(const float *x, float *w) {
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[32 * j + l] = av_x + fabsf(x[32 * j + l]);
    }
}

/* Scales and mins against the largest of each, 6 bits each. */
static void k4_scales_linear(const float *scales, const float *mins, uint8_t *s, pare_half *d, pare_half *dmin) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = (uint8_t)q_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)q_nearest_int(inv_min * mins[j]);
        put_scale_min_k4(j, ls < 63 ? ls : 63, lm < 63 ? lm : 63, s);
    }
    *d = q_f2h(max_scale / 63.f);
    *dmin = q_f2h(max_min / 63.f);
}

/* The imatrix path: make_qkx3 per sub-block, make_qp for the scales. */
static void k4_search_imatrix(const float *x, const float *qw, int nmax, uint8_t *L, uint8_t *s, pare_half *d,
                              pare_half *dmin) {
    uint8_t Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
    float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
    float sigma2 = sigma2_of(x, 2.f);
    for (int j = 0; j < QK_K / 32; j++) {
        for (int l = 0; l < 32; l++) weights[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = pare_qk_make_qkx3(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36,
                                      false);
    }
    float d_block = pare_qk_make_qp(QK_K / 32, 63, scales, Ls, sw);
    float m_block = pare_qk_make_qp(QK_K / 32, 63, mins, Lm, sw);
    memset(s, 0, 12);
    for (int j = 0; j < QK_K / 32; j++) put_scale_min_k4(j, Ls[j] < 63 ? Ls[j] : 63, Lm[j] < 63 ? Lm[j] : 63, s);
    *d = q_f2h(d_block);
    *dmin = q_f2h(m_block);
}

static void q4_K_pack(const uint8_t *L, uint8_t *q) {
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Two super-blocks per search call, so that a 16-lane kernel gets 16 sub-blocks. */
void pare_qk_q4_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2) {
    pare_block_q4_K *y = dst;
    uint8_t L[2 * QK_K];
    float w[2 * QK_K], scales[QK_K / 16], mins[QK_K / 16];
    const int64_t nb = n / QK_K;
    for (int64_t i = 0; i < nb; i += 2, x += 2 * QK_K) {
        const int nsb = nb - i >= 2 ? 2 : 1;
        for (int b = 0; b < nsb; b++) k4_weights(x + QK_K * b, w + QK_K * b);
        kx2(nsb * QK_K / 32, 32, 15, x, w, -1.f, 0.1f, 20, false, L, scales, mins);
        for (int b = 0; b < nsb; b++) {
            pare_block_q4_K *yb = &y[i + b];
            pare_half hd, hm;
            memset(yb->scales, 0, 12);
            k4_scales_linear(scales + 8 * b, mins + 8 * b, yb->scales, &hd, &hm);
            yb->d = hd;
            yb->dmin = hm;
            requant_k4(x + QK_K * b, yb->scales, hd, hm, 15, L + QK_K * b);
            q4_K_pack(L + QK_K * b, yb->qs);
        }
    }
}

void pare_qref_q_q4_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (!imatrix) {
        pare_qk_q4_K_row(x, dst, n, pare_qref_qkx2_batch);
        return;
    }
    pare_block_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        pare_half hd, hm;
        k4_search_imatrix(x, imatrix + QK_K * i, 15, L, y[i].scales, &hd, &hm);
        y[i].d = hd;
        y[i].dmin = hm;
        requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q4_K_pack(L, y[i].qs);
    }
}

void pare_qref_dq_q4_K(const void *src, float *y, int64_t n) {
    const pare_block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q = x[i].qs;
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void q5_K_pack(const uint8_t *L, uint8_t *qh, uint8_t *ql) {
    memset(qh, 0, QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int nn = 0; nn < QK_K; nn += 64, ql += 32, m1 = (uint8_t)(m1 << 2), m2 = (uint8_t)(m2 << 2)) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[nn + j], l2 = L[nn + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

void pare_qk_q5_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2) {
    pare_block_q5_K *y = dst;
    uint8_t L[2 * QK_K];
    float w[2 * QK_K], scales[QK_K / 16], mins[QK_K / 16];
    const int64_t nb = n / QK_K;
    for (int64_t i = 0; i < nb; i += 2, x += 2 * QK_K) {
        const int nsb = nb - i >= 2 ? 2 : 1;
        for (int b = 0; b < nsb; b++) k4_weights(x + QK_K * b, w + QK_K * b);
        kx2(nsb * QK_K / 32, 32, 31, x, w, -0.5f, 0.1f, 15, false, L, scales, mins);
        for (int b = 0; b < nsb; b++) {
            pare_block_q5_K *yb = &y[i + b];
            pare_half hd, hm;
            memset(yb->scales, 0, 12);
            k4_scales_linear(scales + 8 * b, mins + 8 * b, yb->scales, &hd, &hm);
            yb->d = hd;
            yb->dmin = hm;
            requant_k4(x + QK_K * b, yb->scales, hd, hm, 31, L + QK_K * b);
            q5_K_pack(L + QK_K * b, yb->qh, yb->qs);
        }
    }
}

void pare_qref_q_q5_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    if (!imatrix) {
        pare_qk_q5_K_row(x, dst, n, pare_qref_qkx2_batch);
        return;
    }
    pare_block_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        pare_half hd, hm;
        k4_search_imatrix(x, imatrix + QK_K * i, 31, L, y[i].scales, &hd, &hm);
        y[i].d = hd;
        y[i].dmin = hm;
        requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q5_K_pack(L, y[i].qh, y[i].qs);
    }
}

void pare_qref_dq_q5_K(const void *src, float *y, int64_t n) {
    const pare_block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* ------------------------------------------------------------------------ Q6_K */

void pare_qk_q6_K_row(const float *x, void *dst, int64_t n, const float *imatrix, pare_qx_batch_fn qx) {
    pare_block_q6_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        qx(QK_K / 16, 16, 32, x, imatrix ? imatrix + QK_K * i : NULL, L, scales);
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < QGROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = q_f2h(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++) {
            int v = q_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            float d = q_h2f(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(q_clampi(q_nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void pare_qref_q_q6_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_qk_q6_K_row(x, dst, n, imatrix, pare_qref_qx_batch);
}

void pare_qref_dq_q6_K(const void *src, float *y, int64_t n) {
    const pare_block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = q_h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int nn = 0; nn < QK_K; nn += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* ------------------------------------------------------------------------ Q8_K */

void pare_qref_q_q8_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = q_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void pare_qref_dq_q8_K(const void *src, float *y, int64_t n) {
    const pare_block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d;
        memcpy(&d, &x[i].d, 4);
        for (int j = 0; j < QK_K; j++) *y++ = d * x[i].qs[j];
    }
}
