/*
 * quant/q_legacy.c - the 32-value block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (scalar
 * references). Layouts are in quant.h.
 *
 * Without importance weights these follow ggml's quantize_row_*_ref: a scale from the
 * block's extreme value (symmetric types: the signed value of largest magnitude, first
 * one on ties) and truncating rounding. With weights they follow ggml's
 * quantize_row_*_impl: weights qw[j] * sqrt(sigma2 + x[j]^2), sigma2 the row's mean
 * square, and a least-squares search (make_qx_quants / make_qkx3_quants). Q8_0 ignores
 * the weights, as ggml does.
 */
#include "quant/quant_impl.h"

#include <float.h>
#include <math.h>

static float row_sigma2(const float *x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return s / (float)n;
}

static void block_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < QK_LEG; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* Packs 32 levels of 0..31 into the low nibbles and the 5th-bit word. */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= ((uint32_t)(L[j] & 0x10) >> 4) << j;
        qh |= ((uint32_t)(L[j + 16] & 0x10) >> 4) << (j + 16);
    }
    memcpy(qh_bytes, &qh, 4);
}

/* Signed value of the largest magnitude (first on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* ------------------------------------------------------------------------ Q4_0 */

void pare_qref_q_q4_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_q4_0 *y = dst;
    const int64_t nb = n / QK_LEG;
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK_LEG];
        int8_t L[QK_LEG];
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = x + QK_LEG * ib;
            block_weights(xb, imatrix + QK_LEG * ib, sigma2, w);
            y[ib].d = q_f2h(pare_qk_make_qx(QK_LEG, 8, xb, L, 1, w));
            for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++, x += QK_LEG) {
        const float d = signed_absmax(x, QK_LEG) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + 16] * id + 8.5f);
            y[i].qs[j] = (uint8_t)((a < 15 ? a : 15) | ((b < 15 ? b : 15) << 4));
        }
    }
}

void pare_qref_dq_q4_0(const void *src, float *y, int64_t n) {
    const pare_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ------------------------------------------------------------------------ Q4_1 */

void pare_qref_q_q4_1(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_q4_1 *y = dst;
    const int64_t nb = n / QK_LEG;
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK_LEG], min;
        uint8_t L[QK_LEG], Laux[QK_LEG];
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = x + QK_LEG * ib;
            block_weights(xb, imatrix + QK_LEG * ib, sigma2, w);
            float d = pare_qk_make_qkx3(QK_LEG, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
            y[ib].d = q_f2h(d);
            y[ib].m = q_f2h(-min);
            for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++, x += QK_LEG) {
        float min, max;
        minmax(x, QK_LEG, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        y[i].m = q_f2h(min);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)((x[j] - min) * id + 0.5f), b = (int8_t)((x[j + 16] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a < 15 ? a : 15) | ((b < 15 ? b : 15) << 4));
        }
    }
}

void pare_qref_dq_q4_1(const void *src, float *y, int64_t n) {
    const pare_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = q_h2f(x[i].d), m = q_h2f(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ------------------------------------------------------------------------ Q5_0 */

void pare_qref_q_q5_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_q5_0 *y = dst;
    const int64_t nb = n / QK_LEG;
    uint8_t L[QK_LEG];
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK_LEG];
        int8_t Ls[QK_LEG];
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = x + QK_LEG * ib;
            block_weights(xb, imatrix + QK_LEG * ib, sigma2, w);
            y[ib].d = q_f2h(pare_qk_make_qx(QK_LEG, 16, xb, Ls, 1, w));
            for (int j = 0; j < QK_LEG; j++) L[j] = (uint8_t)Ls[j];
            pack_q5(L, y[ib].qs, y[ib].qh);
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++, x += QK_LEG) {
        const float d = signed_absmax(x, QK_LEG) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int j = 0; j < QK_LEG; j++) {
            int a = (int8_t)(x[j] * id + 16.5f);
            L[j] = (uint8_t)(a < 31 ? a : 31);
        }
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void pare_qref_dq_q5_0(const void *src, float *y, int64_t n) {
    const pare_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = q_h2f(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* ------------------------------------------------------------------------ Q5_1 */

void pare_qref_q_q5_1(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_q5_1 *y = dst;
    const int64_t nb = n / QK_LEG;
    uint8_t L[QK_LEG];
    if (imatrix) {
        float sigma2 = row_sigma2(x, n), w[QK_LEG], min;
        uint8_t Laux[QK_LEG];
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = x + QK_LEG * ib;
            block_weights(xb, imatrix + QK_LEG * ib, sigma2, w);
            float d = pare_qk_make_qkx3(QK_LEG, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
            y[ib].d = q_f2h(d);
            y[ib].m = q_f2h(-min);
            pack_q5(L, y[ib].qs, y[ib].qh);
        }
        return;
    }
    for (int64_t i = 0; i < nb; i++, x += QK_LEG) {
        float min, max;
        minmax(x, QK_LEG, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        y[i].m = q_f2h(min);
        for (int j = 0; j < QK_LEG; j++) L[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void pare_qref_dq_q5_1(const void *src, float *y, int64_t n) {
    const pare_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = q_h2f(x[i].d), m = q_h2f(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = ((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + 16] = ((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* ------------------------------------------------------------------------ Q8_0 */

void pare_qref_q_q8_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's Q8_0 has no weighted variant */
    pare_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK_LEG; i++, x += QK_LEG) {
        float amax = 0;
        for (int j = 0; j < QK_LEG; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int j = 0; j < QK_LEG; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void pare_qref_dq_q8_0(const void *src, float *y, int64_t n) {
    const pare_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK_LEG; i++, y += QK_LEG) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < QK_LEG; j++) y[j] = x[i].qs[j] * d;
    }
}
