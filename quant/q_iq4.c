/*
 * quant/q_iq4.c - IQ4_NL (32-value blocks) and IQ4_XS (256-value super-blocks of eight
 * 32-value groups), the 4-bit non-linear types. Layouts are in quant.h.
 *
 * Each value is one of 16 fixed levels times a scale. ggml's quantize_iq4_nl and
 * quantize_iq4_xs (with or without importance weights) run quantize_row_iq4_nl_impl with
 * 7 trial scales each side of the first guess: weights are qw * sqrt(sigma2 + x^2) with
 * sigma2 = 2 * mean square of the super-block, or x^2 without qw. IQ4_XS then stores the
 * group scales as 6-bit multiples of a super-block scale and re-picks the levels.
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#include <math.h>

const int8_t pare_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* Index of the level nearest x (upper one on an exact tie), as ggml's best_index_int8.
 * ggml bisects to the pair val[mu-1] <= x < val[mu]; counting the levels <= x finds the
 * same mu without unpredictable branches, then the same float comparison picks the side. */
static int best_index(float x) {
    /* pare_iq4nl_values as floats (exact copies), to compare without conversions */
    static const float val[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    if (x <= val[0]) return 0;
    if (x >= val[15] || x != x) return 15; /* NaN ends ggml's bisection at 14/15: 15 */
    int mu = 1;
    for (int k = 1; k < 15; k++) mu += val[k] <= x;
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* Best scale for one 32-value group; fills Lb. Returns 0 for an all-zero group. */
static float iq4_group(const float *xb, const float *weight, uint8_t *Lb, int ntry) {
    const int8_t *values = pare_iq4nl_values;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < QGROUP_EPS) {
        memset(Lb, 0, 32);
        return 0;
    }
    float d = ntry > 0 ? -max / values[0] : max / values[0];
    float id = 1 / d, sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        int l = best_index(id * xb[j]);
        Lb[j] = (uint8_t)l;
        float q = values[l], w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; itry++) {
        id = (itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            int l = best_index(id * xb[j]);
            float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* One super-block of sbs values (32 for IQ4_NL, 256 for IQ4_XS). L receives the levels,
 * scales the group scales; *dh the block scale. For IQ4_XS also the packed 6-bit scales. */
static void iq4_super(int sbs, const float *x, const float *qw, uint8_t *L, float *scales, pare_half *dh,
                      uint16_t *scales_h, uint8_t *scales_l) {
    const int ntry = 7;
    float sigma2 = 0, weight[32];
    for (int j = 0; j < sbs; j++) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sbs;
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sbs / 32; ib++) {
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 32; j++)
            weight[j] = qw ? qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        scales[ib] = iq4_group(xb, weight, L + 32 * ib, ntry);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (sbs == 32) {
        *dh = q_f2h(scales[0]);
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index(id * x[j]);
        return;
    }
    *scales_h = 0;
    float d = -max_scale / 32;
    *dh = q_f2h(d);
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < sbs / 32; ib++) {
        int l = q_clampi(q_nearest_int(id * scales[ib]), -32, 31);
        float dl = d * l, idl = dl ? 1 / dl : 0.f;
        for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)best_index(idl * x[32 * ib + j]);
        iq4_put_scale(l, ib, scales_l, scales_h);
    }
}

void pare_qref_q_iq4_nl(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq4_nl *y = dst;
    uint8_t L[32];
    float scale;
    for (int64_t i = 0; i < n / 32; i++) {
        pare_half hd;
        iq4_super(32, x + 32 * i, imatrix ? imatrix + 32 * i : NULL, L, &scale, &hd, NULL, NULL);
        y[i].d = hd;
        iq4_pack_nibbles(L, y[i].qs, 1);
    }
}

void pare_qref_q_iq4_xs(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq4_xs *y = dst;
    uint8_t L[QK_K];
    float scales[QK_K / 32];
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t sh = 0;
        pare_half hd;
        memset(y[i].scales_l, 0, 4);
        iq4_super(QK_K, x + QK_K * i, imatrix ? imatrix + QK_K * i : NULL, L, scales, &hd, &sh, y[i].scales_l);
        y[i].d = hd;
        y[i].scales_h = sh;
        iq4_pack_nibbles(L, y[i].qs, QK_K / 32);
    }
}

void pare_qref_dq_iq4_nl(const void *src, float *y, int64_t n) {
    const pare_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * pare_iq4nl_values[x[i].qs[j] & 0xf];
            y[j + 16] = d * pare_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

void pare_qref_dq_iq4_xs(const void *src, float *y, int64_t n) {
    const pare_block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const float d = q_h2f(x[i].d);
        uint16_t sh = x[i].scales_h;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * pare_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * pare_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}
