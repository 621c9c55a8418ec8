/*
 * quant/q_tq.c - the ternary types TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights): every
 * value is -1, 0 or +1 times the block's absolute maximum. Layouts are in quant.h.
 *
 * TQ1_0 packs 5 trits per byte as a base-3 number t0*81 + t1*27 + t2*9 + t3*3 + t4 scaled to
 * a byte by ceil(v * 256 / 243), so that multiplying the byte by 3^k (mod 256) and taking
 * the top bits of (byte * 3) >> 8 reads trit k. The first 32 bytes hold values m + 32n
 * (n = 0..4) of the first 160; the next 16 bytes values m + 16n of the next 80; qh's 4
 * bytes hold 4 trits each (values j + 4m of the last 16), shifted as if 5 were stored.
 * Rounding is half away from zero (lroundf), as ggml.
 */
#include "quant/quant_impl.h"

#include <math.h>

static float absmax256(const float *x) {
    float amax = 0;
    for (int j = 0; j < QK_K; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

static uint8_t trit_byte(uint8_t q) { return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243); }

void pare_qref_q_tq1_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_block_tq1_0 *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = absmax256(x), id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int m = 0; m < 32; m++) {
            uint8_t q = 0;
            for (int k = 0; k < 5; k++) q = (uint8_t)(q * 3 + (lroundf(x[m + 32 * k] * id) + 1));
            y[i].qs[m] = trit_byte(q);
        }
        x += 160;
        for (int m = 0; m < 16; m++) {
            uint8_t q = 0;
            for (int k = 0; k < 5; k++) q = (uint8_t)(q * 3 + (lroundf(x[m + 16 * k] * id) + 1));
            y[i].qs[32 + m] = trit_byte(q);
        }
        x += 80;
        for (int j = 0; j < 4; j++) {
            uint8_t q = 0;
            for (int m = 0; m < 4; m++) q = (uint8_t)(q * 3 + (lroundf(x[j + 4 * m] * id) + 1));
            y[i].qh[j] = trit_byte((uint8_t)(q * 3));
        }
        x += 16;
    }
}

static float trit(uint8_t byte, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[k]);
    return (float)((((uint16_t)q * 3) >> 8) - 1);
}

void pare_qref_dq_tq1_0(const void *src, float *y, int64_t n) {
    const pare_block_tq1_0 *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = q_h2f(x[i].d);
        for (int k = 0; k < 5; k++)
            for (int m = 0; m < 32; m++) *y++ = trit(x[i].qs[m], k) * d;
        for (int k = 0; k < 5; k++)
            for (int m = 0; m < 16; m++) *y++ = trit(x[i].qs[32 + m], k) * d;
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++) *y++ = trit(x[i].qh[j], k) * d;
    }
}

void pare_qref_q_tq2_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_block_tq2_0 *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = absmax256(x), id = d ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int j = 0; j < 64; j += 32, x += 128) {
            for (int m = 0; m < 32; m++) {
                uint8_t q = 0;
                for (int k = 0; k < 4; k++) q = (uint8_t)(q + (((lroundf(x[m + 32 * k] * id) + 1) & 3) << (2 * k)));
                y[i].qs[j + m] = q;
            }
        }
    }
}

void pare_qref_dq_tq2_0(const void *src, float *y, int64_t n) {
    const pare_block_tq2_0 *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < 64; j += 32)
            for (int k = 0; k < 4; k++)
                for (int m = 0; m < 32; m++) *y++ = (float)(((x[i].qs[j + m] >> (2 * k)) & 3) - 1) * d;
    }
}
