/*
 * quant/q_iq2.c - quantizers of ggml's 2-bit codebook types IQ2_XXS, IQ2_XS and IQ2_S
 * (layouts in quant/iq_impl.h), following ggml's quantize_iq2_xxs / _xs / _s step for step
 * so that the blocks come out the same, bit for bit.
 *
 * All three work on groups of 8 values, each stored as a point of a codebook grid (8 levels
 * 0..2 standing for the magnitudes 1, 3, 5 times a scale) plus 8 signs:
 *   - each value is replaced by its magnitude; IQ2_XXS and IQ2_XS store only 7 signs per
 *     group and the 8th is implied by even parity, so a group with an odd number of
 *     negatives keeps the one of least weight * x^2 negated in its magnitudes instead;
 *   - a sub-block (32 values for IQ2_XXS, 16 otherwise) tries a range of scales; at each,
 *     every group is rounded to levels, and a level vector that is not a grid point is
 *     replaced by its best neighbour (the weighted nearest of a precomputed candidate list,
 *     quant/iq2_maps.c); the scale with the best weighted fit sum(w q x)^2 / sum(w q^2)
 *     wins, and groups found off the grid are re-rounded at that scale;
 *   - each sub-block scale s becomes a 4-bit l with s ~ d (2 l + 1), d = max_scale / 31
 *     (IQ2_S stores d times ggml's factor 0.9875); the dequantizer reads d (l + 0.5) / 4
 *     times the grid bytes 8, 25, 43 (roughly 8 times 1, 3, 5).
 * Weights are imatrix * sqrt(sigma2 + x^2) (sigma2 = mean square of the block for
 * IQ2_XXS/XS, twice that for IQ2_S); without an imatrix IQ2_S uses sigma2 / 4 + x^2 and
 * the other two x^2 (ggml refuses to quantize them without one).
 *
 * The float expressions keep ggml's operand order; do not "simplify" them.
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#include <assert.h>
#include <float.h>
#include <math.h>

#define IQ2_EPS 1e-15f /* ggml's GROUP_MAX_EPS */
#define IQ2S_EPS 1e-8f /* ggml's GROUP_MAX_EPS_IQ2_S */
#define KMAXQ 3        /* levels per value */

typedef struct {
    const uint64_t *grid;
    unsigned size; /* points in the grid, a power of 2 */
    const int32_t *map;
    const uint16_t *nbrs;
    pare_iq2_neighbour_fn neighbour; /* best_neighbour below, or a level's (q_simd.c) */
} iq2_book;

static void best_neighbour(const uint64_t *grid, unsigned size, const uint16_t *nb, const float *xval,
                           const float *w, float scale, int8_t *L);

static const iq2_book book_xxs = {pare_iq2xxs_grid, 256, pare_iq2xxs_map, pare_iq2xxs_nbrs, best_neighbour};
static const iq2_book book_xs = {pare_iq2xs_grid, 512, pare_iq2xs_map, pare_iq2xs_nbrs, best_neighbour};
static const iq2_book book_s = {pare_iq2s_grid, 1024, pare_iq2s_map, pare_iq2s_nbrs, best_neighbour};

/* Level 0..2 of element i of a grid point, and its magnitude 2 l + 1: the grid bytes are
 * 0x08, 0x19, 0x2b, so byte >> 4 is the level and byte >> 3 the magnitude. */
static inline int point_level(uint64_t point, int i) { return (int)((point >> (8 * i)) & 0xff) >> 4; }

/* Rounds 8 magnitudes to levels at inverse scale id; returns their base-3 index. */
static int round_group(const float *xval, float id, int8_t *L) {
    int u = 0, p3 = 1;
    for (int i = 0; i < 8; i++) {
        int l = q_clampi(q_nearest_int(0.5f * (id * xval[i] - 1)), 0, KMAXQ - 1);
        L[i] = (int8_t)l;
        u += l * p3;
        p3 *= 3;
    }
    return u;
}

/* ggml's iq2_find_best_neighbour: of the candidates of an off-grid vector (map entry m < 0),
 * the first with the least sum w (scale q - x)^2, q = 2 l + 1; writes its levels to L.
 * The list holds index differences modulo the grid size (quant/gen_iq2_maps.py). Candidates
 * are scored 8 at a time, one per lane, each summing over i in ggml's order, so the
 * compiler can vectorize without changing a bit of the result. */
static void best_neighbour(const uint64_t *grid, unsigned size, const uint16_t *nb, const float *xval,
                           const float *w, float scale, int8_t *L) {
    const int count = nb[0];
    float best_d2 = FLT_MAX;
    unsigned j = 0, gi = nb[1]; /* ggml aborts when none compares below FLT_MAX (NaN input) */
    for (int j0 = 0; j0 < count; j0 += 8) {
        unsigned idx[8];
        uint32_t lo[8], hi[8]; /* bytes 0-3 and 4-7 of the 8 candidates (the last repeated) */
        for (int c = 0; c < 8; c++) {
            if (j0 + c < count) j = (j + nb[1 + j0 + c]) & (size - 1);
            idx[c] = j;
            lo[c] = (uint32_t)grid[j];
            hi[c] = (uint32_t)(grid[j] >> 32);
        }
        float d2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int i = 0; i < 8; i++) {
            const float xi = xval[i], wi = w[i];
            const int sh = 8 * (i & 3) + 3;
            const uint32_t *src = i < 4 ? lo : hi;
            for (int c = 0; c < 8; c++) {
                float q = (float)(int)((src[c] >> sh) & 31);
                float diff = scale * q - xi;
                d2[c] += wi * diff * diff;
            }
        }
        for (int c = 0; c < 8 && j0 + c < count; c++)
            if (d2[c] < best_d2) {
                best_d2 = d2[c];
                gi = idx[c];
            }
    }
    for (int i = 0; i < 8; i++) L[i] = (int8_t)point_level(grid[gi], i);
}

/* Rounds one group at inverse scale id and moves it onto the grid when it is off it (the
 * neighbour search uses `scale`). Returns whether the rounded vector was a grid point. */
static bool group_to_grid(const iq2_book *b, const float *xval, const float *waux, float id, float scale,
                          int8_t *L) {
    int32_t m = b->map[round_group(xval, id, L)];
    if (m >= 0) return true;
    b->neighbour(b->grid, b->size, b->nbrs + (-(int64_t)m - 1), xval, waux, scale, L);
    return false;
}

/* Grid index of the 8 levels at L, which must form a grid point. */
static int grid_index(const iq2_book *b, const int8_t *L) {
    int u = 0;
    for (int i = 7; i >= 0; i--) {
        assert(L[i] >= 0 && L[i] < KMAXQ);
        u = 3 * u + L[i];
    }
    assert(b->map[u] >= 0);
    return b->map[u];
}

/* sum w x q and sum w q^2 over n values at levels L. */
static float fit(int n, const float *w, const float *xval, const int8_t *L, float *sumq2) {
    float sumqx = 0, sq2 = 0;
    for (int i = 0; i < n; i++) {
        float q = (float)(2 * L[i] + 1);
        sumqx += w[i] * xval[i] * q;
        sq2 += w[i] * q * q;
    }
    *sumq2 = sq2;
    return sumqx;
}

/* Magnitudes of 8 values into xval and their 7-bit sign index: with an odd number of
 * negatives, the value of least w x^2 keeps its sign in xval (a negative magnitude). */
static uint8_t even_signs(const float *xb, const float *w, float *xval) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; i++) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            nflip++;
            s |= (uint8_t)(1u << i);
        }
    }
    if (nflip % 2) {
        int imin = 0;
        float min = w[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; i++) {
            float ax = w[i] * xb[i] * xb[i];
            if (ax < min) {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1u << imin);
    }
    return s & 127;
}

/* Weights w of n values xb (qw: their imatrix entries or NULL; see the header comment)
 * and waux = sqrt(w), the weights of the neighbour search. */
static void make_weights(int n, const float *xb, const float *qw, float sigma2, bool iq2s, float *w, float *waux) {
    for (int i = 0; i < n; i++) {
        if (qw)
            w[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
        else
            w[i] = iq2s ? 0.25f * sigma2 + xb[i] * xb[i] : xb[i] * xb[i];
    }
    for (int i = 0; i < n; i++) waux[i] = sqrtf(w[i]);
}

/* 4-bit sub-block scale for d = max_scale / 31 (ggml: nearest_int(0.5 (s / d - 1))). */
static int scale_nibble(float id, float s) { return q_clampi(q_nearest_int(0.5f * (id * s - 1)), 0, 15); }

/* ------------------------------------------------------------------------ IQ2_XXS */

/* Scale search of one 32-value sub-block; fills L (levels of 4 grid points) and returns
 * the scale, or returns NAN for a sub-block that ggml leaves empty. */
static float xxs_search(const iq2_book *b, const float *xval, const float *w, const float *waux, int8_t *L) {
    memset(L, 0, 32);
    float max = pare_iq_max(xval, 32);
    if (max < IQ2_EPS) return NAN;
    uint8_t Lqp[32];
    float scale = pare_qk_make_qp(32, KMAXQ + 1, xval, Lqp, w);
    float eff_max = scale * KMAXQ;
    if (eff_max <= 0) return NAN; /* all weights zero: nothing to fit */
    int8_t Laux[32];
    float best = 0, sumq2;
    for (int is = -6; is <= 6; is++) {
        float id = (2 * KMAXQ - 1 + is * 0.1f) / eff_max, this_scale = 1 / id;
        for (int k = 0; k < 4; k++)
            group_to_grid(b, xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k);
        float sumqx = fit(32, w, xval, Laux, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 32);
        }
    }
    if (scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 4; k++) group_to_grid(b, xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k);
        float sumqx = fit(32, w, xval, L, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale; /* NaN only from NaN input, where ggml aborts: pare stores an empty sub-block */
}

static void iq2_xxs_row(const iq2_book *b, const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq2_xxs *y = dst;
    float weight[32], waux[32], xval[32], scales[8];
    int8_t L[32];
    for (int64_t ibl = 0; ibl < n / PARE_IQ_QK; ibl++) {
        const float *xbl = src + PARE_IQ_QK * ibl;
        uint32_t q2[16] = {0};
        float sigma2 = pare_iq_sum_squares(xbl) / PARE_IQ_QK, max_scale = 0;
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib;
            make_weights(32, xb, imatrix ? imatrix + PARE_IQ_QK * ibl + 32 * ib : NULL, sigma2, false, weight, waux);
            uint8_t signs[4];
            for (int k = 0; k < 4; k++) signs[k] = even_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
            float scale = xxs_search(b, xval, weight, waux, L);
            if (isnan(scale)) {
                scales[ib] = 0;
                continue;
            }
            if (scale < 0) { /* not expected (ggml guards it the same way): flip all signs */
                scale = -scale;
                for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
            }
            for (int k = 0; k < 4; k++) {
                q2[2 * ib] |= (uint32_t)grid_index(b, L + 8 * k) << (8 * k);
                q2[2 * ib + 1] |= (uint32_t)signs[k] << (7 * k);
            }
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        memset(y[ibl].d, 0, sizeof y[ibl].d);
        memset(y[ibl].qs, 0, sizeof y[ibl].qs);
        if (!max_scale) continue;
        float d = max_scale / 31, id = 1 / d;
        pare_iq_put16(y[ibl].d, q_f2h(d));
        for (int ib = 0; ib < 8; ib++) q2[2 * ib + 1] |= (uint32_t)scale_nibble(id, scales[ib]) << 28;
        for (int j = 0; j < 16; j++)
            for (int b = 0; b < 4; b++) y[ibl].qs[4 * j + b] = (uint8_t)(q2[j] >> (8 * b));
    }
}

/* ------------------------------------------------------------------------ IQ2_XS, IQ2_S */

/* Scale search of one 16-value sub-block (two groups) of IQ2_XS or IQ2_S; fills L and
 * returns the scale, or NAN for a sub-block that ggml leaves empty (max below eps). */
static float search16(const iq2_book *b, float eps, const float *xval, const float *w, const float *waux,
                      int8_t *L) {
    memset(L, 0, 16);
    float max = pare_iq_max(xval, 16);
    if (max < eps) return NAN;
    int8_t Laux[16];
    bool on_grid[2] = {true, true}, on_aux[2];
    float best = 0, scale = max / (2 * KMAXQ - 1), sumq2;
    for (int is = -9; is <= 9; is++) {
        float id = (2 * KMAXQ - 1 + is * 0.1f) / max, this_scale = 1 / id;
        for (int k = 0; k < 2; k++)
            on_aux[k] = group_to_grid(b, xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k);
        float sumqx = fit(16, w, xval, Laux, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 16);
            on_grid[0] = on_aux[0];
            on_grid[1] = on_aux[1];
        }
    }
    if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 2; k++)
            if (!on_grid[k]) group_to_grid(b, xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k);
        float sumqx = fit(16, w, xval, L, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale; /* NaN only from NaN input, where ggml aborts: pare stores an empty sub-block */
}

/* The 4-bit sub-block scales, two per byte, low nibble first. */
static void put_scales16(uint8_t *dst, const float *scales, float id) {
    for (int ib = 0; ib < 16; ib += 2)
        dst[ib / 2] = (uint8_t)(scale_nibble(id, scales[ib]) | scale_nibble(id, scales[ib + 1]) << 4);
}

static void iq2_xs_row(const iq2_book *b, const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq2_xs *y = dst;
    float weight[16], waux[16], xval[16], scales[16];
    int8_t L[16];
    for (int64_t ibl = 0; ibl < n / PARE_IQ_QK; ibl++) {
        const float *xbl = src + PARE_IQ_QK * ibl;
        uint16_t q2[32] = {0};
        float sigma2 = pare_iq_sum_squares(xbl) / PARE_IQ_QK, max_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            make_weights(16, xb, imatrix ? imatrix + PARE_IQ_QK * ibl + 16 * ib : NULL, sigma2, false, weight, waux);
            uint8_t signs[2];
            for (int k = 0; k < 2; k++) signs[k] = even_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
            float scale = search16(b, IQ2_EPS, xval, weight, waux, L);
            if (isnan(scale)) {
                scales[ib] = 0;
                continue;
            }
            if (scale < 0) { /* not expected (ggml guards it the same way): flip all signs */
                scale = -scale;
                for (int k = 0; k < 2; k++) signs[k] = (uint8_t)(~signs[k] & 127);
            }
            for (int k = 0; k < 2; k++)
                q2[2 * ib + k] = (uint16_t)(grid_index(b, L + 8 * k) | signs[k] << 9);
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        memset(&y[ibl], 0, sizeof y[ibl]);
        if (!max_scale) continue;
        float d = max_scale / 31, id = 1 / d;
        pare_iq_put16(y[ibl].d, q_f2h(d));
        put_scales16(y[ibl].scales, scales, id);
        for (int j = 0; j < 32; j++) pare_iq_put16(y[ibl].qs + 2 * j, q2[j]);
    }
}

static void iq2_s_row(const iq2_book *b, const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq2_s *y = dst;
    float weight[16], waux[16], xval[16], scales[16];
    int8_t L[16];
    for (int64_t ibl = 0; ibl < n / PARE_IQ_QK; ibl++) {
        const float *xbl = src + PARE_IQ_QK * ibl;
        pare_block_iq2_s *yb = &y[ibl];
        memset(yb, 0, sizeof *yb);
        float sigma2 = 2 * pare_iq_sum_squares(xbl) / PARE_IQ_QK, max_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            make_weights(16, xb, imatrix ? imatrix + PARE_IQ_QK * ibl + 16 * ib : NULL, sigma2, true, weight, waux);
            uint8_t signs[2] = {0, 0}; /* all 8 signs stored: no parity trick */
            for (int i = 0; i < 16; i++) {
                xval[i] = xb[i] >= 0 ? xb[i] : -xb[i];
                if (xb[i] < 0) signs[i / 8] |= (uint8_t)(1u << (i % 8));
            }
            float scale = search16(b, IQ2S_EPS, xval, weight, waux, L);
            if (isnan(scale)) {
                scales[ib] = 0;
                continue;
            }
            if (scale < 0) {
                scale = -scale;
                signs[0] = (uint8_t)~signs[0];
                signs[1] = (uint8_t)~signs[1];
            }
            for (int k = 0; k < 2; k++) {
                const int i8 = 2 * ib + k, gi = grid_index(b, L + 8 * k);
                yb->qs[i8] = (uint8_t)(gi & 255);
                yb->qh[i8 / 4] |= (uint8_t)((gi >> 8) << (2 * (i8 % 4)));
                yb->signs[i8] = signs[k];
            }
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale) continue;
        float d = max_scale / 31, id = 1 / d;
        pare_iq_put16(yb->d, q_f2h(d * 0.9875f)); /* ggml's factor on the stored scale only */
        put_scales16(yb->scales, scales, id);
    }
}

/* ------------------------------------------------------------------------ entry points */

#define IQ2_ENTRY(T)                                                                                       \
    void pare_iq_quant_iq2_##T(const float *src, void *dst, int64_t n, const float *imatrix) {             \
        iq2_##T##_row(&book_##T, src, dst, n, imatrix);                                                     \
    }                                                                                                      \
    void pare_iq_quant_iq2_##T##_with(const float *src, void *dst, int64_t n, const float *imatrix,        \
                                      pare_iq2_neighbour_fn nbr) {                                         \
        iq2_book b = book_##T;                                                                             \
        b.neighbour = nbr;                                                                                 \
        iq2_##T##_row(&b, src, dst, n, imatrix);                                                           \
    }
IQ2_ENTRY(xxs)
IQ2_ENTRY(xs)
IQ2_ENTRY(s)
