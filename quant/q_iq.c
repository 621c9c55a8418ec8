/*
 * quant/q_iq.c - reference dequantization of ggml's codebook i-quants.
 *
 * Block layouts and formulas: quant/iq_impl.h. The arithmetic follows ggml's
 * dequantize_row_iq* operation for operation (same operand order, f32 throughout) so that
 * the results agree bit for bit; the float expressions below must not be "simplified".
 */
#include "quant/iq_impl.h"

#include "core/core.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* Byte j of a grid point. */
static inline uint8_t g64(uint64_t point, int j) { return (uint8_t)(point >> (8 * j)); }
static inline uint8_t g32(uint32_t point, int j) { return (uint8_t)(point >> (8 * j)); }
static inline float sgn(unsigned signs, int j) { return (signs >> j) & 1 ? -1.f : 1.f; }

void pare_iq_dequant_iq2_xxs(const void *src, float *y, int64_t n) {
    const pare_block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *idx = x[i].qs + 8 * ib;         /* 4 grid indices */
            const uint32_t aux = rd32(x[i].qs + 8 * ib + 4); /* signs + scale */
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint64_t p = pare_iq2xxs_grid[idx[l]];
                const unsigned s = pare_iq_ksigns[(aux >> (7 * l)) & 127];
                for (int j = 0; j < 8; j++) y[j] = db * (float)g64(p, j) * sgn(s, j);
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq2_xs(const void *src, float *y, int64_t n) {
    const pare_block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++) {
                const uint16_t q = rd16(x[i].qs + 2 * (4 * ib + l));
                const uint64_t p = pare_iq2xs_grid[q & 511];
                const unsigned s = pare_iq_ksigns[q >> 9];
                for (int j = 0; j < 8; j++) y[j] = db[l / 2] * (float)g64(p, j) * sgn(s, j);
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq2_s(const void *src, float *y, int64_t n) {
    const pare_block_iq2_s *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++) {
                /* qh holds 2 high index bits per group, group 0 in bits 0-1 */
                const unsigned idx = x[i].qs[4 * ib + l] | (((unsigned)x[i].qh[ib] >> (2 * l)) & 3) << 8;
                const uint64_t p = pare_iq2s_grid[idx];
                const unsigned s = x[i].signs[4 * ib + l];
                for (int j = 0; j < 8; j++) y[j] = db[l / 2] * (float)g64(p, j) * sgn(s, j);
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq3_xxs(const void *src, float *y, int64_t n) {
    const pare_block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x[i].qs + 8 * ib;
            const uint32_t aux = rd32(x[i].scales_signs + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                const unsigned s = pare_iq_ksigns[(aux >> (7 * l)) & 127];
                const uint32_t p1 = pare_iq3xxs_grid[qs[2 * l]];
                const uint32_t p2 = pare_iq3xxs_grid[qs[2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)g32(p1, j) * sgn(s, j);
                    y[j + 4] = db * (float)g32(p2, j) * sgn(s, j + 4);
                }
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq3_s(const void *src, float *y, int64_t n) {
    const pare_block_iq3_s *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            /* one scale nibble per 32 weights, low nibble for the even half */
            const unsigned sc = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
            const float db = d * (float)(1 + 2 * (int)sc);
            const uint8_t *qs = x[i].qs + 8 * ib;
            const unsigned qh = x[i].qh[ib]; /* bit k: 9th index bit of group k of 4 */
            for (int l = 0; l < 4; l++) {
                const uint32_t p1 = pare_iq3s_grid[qs[2 * l] | ((qh >> (2 * l)) & 1) << 8];
                const uint32_t p2 = pare_iq3s_grid[qs[2 * l + 1] | ((qh >> (2 * l + 1)) & 1) << 8];
                const unsigned s = x[i].signs[4 * ib + l];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)g32(p1, j) * sgn(s, j);
                    y[j + 4] = db * (float)g32(p2, j) * sgn(s, j + 4);
                }
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq1_s(const void *src, float *y, int64_t n) {
    const pare_block_iq1_s *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        const float d = pare_fp16_to_fp32(rd16(x[i].d));
        for (int ib = 0; ib < 8; ib++) {
            const unsigned qh = rd16(x[i].qh + 2 * ib);
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -PARE_IQ1S_DELTA : PARE_IQ1S_DELTA;
            for (int l = 0; l < 4; l++) {
                const uint64_t p = pare_iq1s_grid[x[i].qs[4 * ib + l] | ((qh >> (3 * l)) & 7) << 8];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)g64(p, j) + delta);
                y += 8;
            }
        }
    }
}

void pare_iq_dequant_iq1_m(const void *src, float *y, int64_t n) {
    const pare_block_iq1_m *x = src;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++) {
        uint16_t sc[4];
        for (int k = 0; k < 4; k++) sc[k] = rd16(x[i].scales + 2 * k);
        const uint16_t dbits = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                          ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        const float d = pare_fp16_to_fp32(dbits);
        for (int ib = 0; ib < 8; ib++) {
            const unsigned s = sc[ib / 2] >> (6 * (ib % 2));
            const float dl[2] = {d * (float)(2 * (s & 7) + 1), d * (float)(2 * ((s >> 3) & 7) + 1)};
            const uint8_t *qh = x[i].qh + 2 * ib; /* one nibble per group of 8 */
            for (int l = 0; l < 4; l++) {
                const unsigned nib = (qh[l / 2] >> (4 * (l % 2))) & 0xf;
                const uint64_t p = pare_iq1s_grid[x[i].qs[4 * ib + l] | (nib & 7) << 8];
                const float delta = nib & 8 ? -PARE_IQ1M_DELTA : PARE_IQ1M_DELTA;
                for (int j = 0; j < 8; j++) y[j] = dl[l / 2] * ((float)(int8_t)g64(p, j) + delta);
                y += 8;
            }
        }
    }
}
