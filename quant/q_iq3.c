/*
 * quant/q_iq3.c - the IQ3_XXS and IQ3_S quantizers (block layouts: quant/iq_impl.h).
 *
 * Both follow ggml's quantize_row_iq3_xxs_impl / quantize_row_iq3_s_impl step for step, with
 * the float operations in the same order (compiled without contraction), so that the blocks
 * come out bit for bit as ggml's. Per 256-value block:
 *
 *   1. weights: qw * sqrt(sigma2 + x^2) with sigma2 = 2 * mean square of the block, or x^2
 *      without importance weights; the grid search measures distance with their square
 *      roots.
 *   2. per 32-value group: take |x| and remember the signs (IQ3_XXS must have an even
 *      number of negatives per 8 values, so with an odd count it flips the value of least
 *      w * x^2); then try 2n + 1 scales, 1 / scale = (15 + 0.2 * is) / max for is in -n..n
 *      (n = 15 for IQ3_XXS, 9 for IQ3_S), rounding each value to a level l in 0..7 (value
 *      2l + 1) and replacing each 4-level point that is not on the grid by its best listed
 *      neighbour (quant/iq3_maps.c); keep the trial with the best weighted fit sumqx^2 /
 *      sumq2 and its least-squares scale. If some point of the best trial was off the grid,
 *      round again at that scale (IQ3_XXS: those points only; IQ3_S: all) and refit.
 *   3. block scale d = max group scale / 31; each group stores the nibble
 *      round((scale / d - 1) / 2), and the stored d is d times a fudge factor (1.0125 for
 *      IQ3_XXS, 1.033 for IQ3_S).
 *
 * Two quirks of ggml's are kept because they change the bytes: an IQ3_XXS block whose
 * groups are all (near) zero is stored as all zeros; and IQ3_S writes the indices and signs
 * of a group through pointers that an all-zero group does not advance, so the groups after
 * one are stored one slot early (their high index bits and scales stay in place).
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#include <assert.h>
#include <float.h>
#include <math.h>

/* What differs between the two types' searches. */
typedef struct {
    const int16_t *map;          /* 4-level key -> grid index, or where its neighbour list is */
    const uint16_t *neighbours;
    int n_steps;                 /* trial scales is = -n_steps..n_steps */
    bool xxs;                    /* IQ3_XXS: parity of signs, zero threshold, partial refit */
} iq3_kind;

static const iq3_kind kind_xxs = {pare_iq3xxs_map, pare_iq3xxs_neighbours, 15, true};
static const iq3_kind kind_s = {pare_iq3s_map, pare_iq3s_neighbours, 9, false};

#define IQ3_GROUP_EPS 1e-8f     /* ggml's GROUP_MAX_EPS_IQ3_XXS: below it an IQ3_XXS group is zero */
#define IQ3_MAX_NEIGHBOURS PARE_IQ3_MAX_NEIGHBOURS

/* Points are handled as keys u = l0 | l1 << 3 | l2 << 6 | l3 << 9 (quant/gen_iq_maps.py). */
static inline int levels_key(const int8_t *L) { return L[0] | L[1] << 3 | L[2] << 6 | L[3] << 9; }
static inline void key_levels(int u, int8_t *L) {
    for (int i = 0; i < 4; i++) L[i] = (int8_t)(u >> (3 * i) & 7);
}

/* Rounds 4 magnitudes times id to levels 0..7 into L; returns their key. */
static inline int round_point(const float *xval, float id, int8_t *L) {
    for (int i = 0; i < 4; i++) L[i] = (int8_t)q_clampi(q_nearest_int(0.5f * (id * xval[i] - 1)), 0, 7);
    return levels_key(L);
}

/* GNU C vectors of 8 lanes: each lane does exactly the IEEE operations of the scalar code
 * (no contraction: the build is -std=c11), the compiler picks the instructions. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));

/* Replaces the off-grid point `key` by its listed neighbour of least weighted distance
 * sum w (scale * q - x)^2 (q = 2l + 1), the first one on a tie, as ggml's
 * iq3_find_best_neighbour; writes its levels to L.
 *
 * ggml scans the list keeping the first strict minimum below FLT_MAX. The same winner is the
 * first entry equal to the least distance (NaNs never count), so the distances and their
 * minimum are computed 8 entries at a time, each distance by the same sequence of float
 * operations as ggml's; lanes past the list's end (keys of the next list, or the zeros that
 * end the table) get +inf, which never wins. This is most of the quantizers' time: selects
 * rather than branches, as the winner's place is unpredictable. */
static void best_neighbour(const uint16_t *list, const float *xval, const float *w, float scale, int8_t *L) {
    const uint16_t *nb = list;
    const int n = nb[0];
    nb++;
    assert(n > 0 && n <= IQ3_MAX_NEIGHBOURS);
    float d2[IQ3_MAX_NEIGHBOURS + 7];
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const v8f inf = {INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY};
    v8f vmin = {FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX};
    for (int j0 = 0; j0 < n; j0 += 8) {
        v8u16 k16;
        memcpy(&k16, nb + j0, sizeof k16);
        const v8i u = __builtin_convertvector(k16, v8i);
        v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int i = 0; i < 4; i++) {
            v8f q = __builtin_convertvector(((u >> (3 * i)) & 7) * 2 + 1, v8f);
            v8f diff = scale * q - xval[i];
            acc += w[i] * diff * diff;
        }
        const v8i in_list = lane < n - j0;
        acc = (v8f)(((v8i)acc & in_list) | ((v8i)inf & ~in_list));
        memcpy(d2 + j0, &acc, sizeof acc);
        const v8i lt = acc < vmin;
        vmin = (v8f)(((v8i)acc & lt) | ((v8i)vmin & ~lt));
    }
    float m[8];
    memcpy(m, &vmin, sizeof m);
    const float m01 = m[1] < m[0] ? m[1] : m[0], m23 = m[3] < m[2] ? m[3] : m[2];
    const float m45 = m[5] < m[4] ? m[5] : m[4], m67 = m[7] < m[6] ? m[7] : m[6];
    const float m03 = m23 < m01 ? m23 : m01, m47 = m67 < m45 ? m67 : m45;
    const float min = m47 < m03 ? m47 : m03;
    int best = 0; /* ggml asserts a winner; only non-finite distances leave none */
    if (min < FLT_MAX)
        for (int j = n - 1; j >= 0; j--) best = d2[j] == min ? j : best;
    key_levels(nb[best], L);
}

/* The neighbour list of the off-grid key: its count, then the keys. */
static inline const uint16_t *neighbour_list(const iq3_kind *k, int key) { return k->neighbours + (-k->map[key] - 1); }

/* One trial of step 2: rounds the 32 magnitudes times id to levels in La and replaces each
 * point off the grid by its best neighbour at scale; on_grid[g]: point g was on the grid. */
static void round_trial(const int16_t *map, const uint16_t *neighbours, const float *xval, const float *waux, float id,
                        float scale, int8_t *La, bool *on_grid) {
    for (int i = 0; i < 32; i++) La[i] = (int8_t)q_clampi(q_nearest_int(0.5f * (id * xval[i] - 1)), 0, 7);
    for (int g = 0; g < 8; g++) {
        int key = levels_key(La + 4 * g);
        on_grid[g] = map[key] >= 0;
        if (!on_grid[g]) best_neighbour(neighbours + (-map[key] - 1), xval + 4 * g, waux + 4 * g, scale, La + 4 * g);
    }
}

static const pare_iq3_kernels ref_kernels = {best_neighbour, round_trial};

/* Weighted sums of the fit of levels L to xval: sum w x q and sum w q^2, q = 2l + 1. */
static void fit_sums(const float *xval, const float *weight, const int8_t *L, float *sumqx, float *sumq2) {
    float sx = 0, s2 = 0;
    for (int i = 0; i < 32; i++) {
        float w = weight[i], q = (float)(2 * L[i] + 1);
        sx += w * xval[i] * q;
        s2 += w * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

#define IQ3_MAX_TRIALS 31 /* 2 * 15 + 1 trial scales of IQ3_XXS */

/* Step 2 for one 32-value group of magnitudes xval (max > 0): fills L with levels that form
 * grid points and returns the group's scale.
 *
 * The trials do not depend on each other until one is chosen, so all are rounded first and
 * their fit sums are then accumulated side by side (trial t in lane t, values in ggml's
 * order), which vectorizes; the choice runs over the trials in ggml's order. */
static float search_group(const iq3_kind *k, const pare_iq3_kernels *ks, const float *xval, const float *weight,
                          const float *waux, float max, int8_t *L) {
    const int n_trials = 2 * k->n_steps + 1;
    int8_t Lt[32][IQ3_MAX_TRIALS + 1]; /* level of value i in trial t; lane 31 unused */
    bool on_grid_t[IQ3_MAX_TRIALS][8], on_grid[8];
    memset(Lt, 0, sizeof Lt);
    for (int t = 0; t < n_trials; t++) {
        float id = (15 + (float)(t - k->n_steps) * 0.2f) / max, this_scale = 1 / id;
        int8_t La[32];
        ks->trial(k->map, k->neighbours, xval, waux, id, this_scale, La, on_grid_t[t]);
        for (int i = 0; i < 32; i++) Lt[i][t] = La[i];
    }
    float sumqx[IQ3_MAX_TRIALS + 1] = {0}, sumq2[IQ3_MAX_TRIALS + 1] = {0};
    for (int i = 0; i < 32; i++) {
        const float w = weight[i], wx = w * xval[i]; /* ggml's w * x * q is (w * x) * q */
        for (int t = 0; t < IQ3_MAX_TRIALS + 1; t++) {
            float q = (float)(2 * Lt[i][t] + 1);
            sumqx[t] += wx * q;
            sumq2[t] += w * q * q;
        }
    }
    float best = 0, scale = max / 15;
    int chosen = -1;
    for (int t = 0; t < n_trials; t++)
        if (sumq2[t] > 0 && sumqx[t] * sumqx[t] > best * sumq2[t]) {
            scale = sumqx[t] / sumq2[t];
            best = scale * sumqx[t];
            chosen = t;
        }
    if (chosen >= 0) {
        for (int i = 0; i < 32; i++) L[i] = Lt[i][chosen];
        memcpy(on_grid, on_grid_t[chosen], sizeof on_grid);
    } else {
        /* no trial fit (all weights zero): L stays zero; IQ3_S still refits at max / 15 */
        for (int g = 0; g < 8; g++) on_grid[g] = k->xxs;
    }
    int n_off = 0;
    for (int g = 0; g < 8; g++) n_off += !on_grid[g];
    if (n_off > 0 && scale > 0) {
        float id = 1 / scale;
        for (int g = 0; g < 8; g++) {
            if (k->xxs && on_grid[g]) continue;
            int key = round_point(xval + 4 * g, id, L + 4 * g);
            if (k->map[key] < 0) ks->neighbour(neighbour_list(k, key), xval + 4 * g, waux + 4 * g, scale, L + 4 * g);
        }
        float sx, s2;
        fit_sums(xval, weight, L, &sx, &s2);
        if (s2 > 0) scale = sx / s2;
    }
    return scale;
}

/* Step 1 for group ib of block xbl: the weights and their square roots. */
static void group_weights(const float *xbl, const float *qw, float sigma2, int ib, float *weight, float *waux) {
    const float *xb = xbl + 32 * ib;
    for (int i = 0; i < 32; i++)
        weight[i] = qw ? qw[32 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
    for (int i = 0; i < 32; i++) waux[i] = sqrtf(weight[i]);
}

/* Magnitudes of 8 values into xval; returns their sign bits (bit i: value i negative). */
static unsigned split_signs(const float *xb, float *xval) {
    unsigned s = 0;
    for (int i = 0; i < 8; i++) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            s |= 1u << i;
        }
    }
    return s;
}

/* Grid index of the point of levels L (a search result, always on the grid). */
static int point_index(const iq3_kind *k, const int8_t *L) {
    int gi = k->map[levels_key(L)];
    assert(gi >= 0);
    return gi;
}


/* ------------------------------------------------------------------------ IQ3_XXS */

static void iq3_xxs_block(const float *xbl, const float *qw, const pare_iq3_kernels *ks, pare_block_iq3_xxs *y) {
    const iq3_kind *k = &kind_xxs;
    float scales[8], weight[32], waux[32], xval[32], max_scale = 0;
    uint32_t signs_scales[8] = {0};
    int8_t L[32];
    memset(y, 0, sizeof *y);
    const float sigma2 = 2 * pare_iq_sum_squares(xbl) / PARE_IQ_QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = xbl + 32 * ib;
        group_weights(xbl, qw, sigma2, ib, weight, waux);
        unsigned bsigns[4];
        for (int s = 0; s < 4; s++) {
            unsigned bits = split_signs(xb + 8 * s, xval + 8 * s);
            int nflip = 0;
            for (int i = 0; i < 8; i++) nflip += (bits >> i) & 1;
            if (nflip % 2) {
                /* an odd count cannot be stored: flip the value that costs least */
                int imin = 0;
                float min = weight[8 * s] * xb[8 * s] * xb[8 * s];
                for (int i = 1; i < 8; i++) {
                    float ax = weight[8 * s + i] * xb[8 * s + i] * xb[8 * s + i];
                    if (ax < min) {
                        min = ax;
                        imin = i;
                    }
                }
                xval[8 * s + imin] = -xval[8 * s + imin];
                bits ^= 1u << imin;
            }
            bsigns[s] = bits & 127; /* bit 7 follows from the parity */
        }
        float max = pare_iq_max(xval, 32);
        memset(L, 0, sizeof L);
        if (max < IQ3_GROUP_EPS) {
            scales[ib] = 0;
            continue;
        }
        float scale = search_group(k, ks, xval, weight, waux, max, L);
        if (scale < 0) { /* cannot happen with |x| and w >= 0; ggml flips rather than fails */
            scale = -scale;
            for (int s = 0; s < 4; s++) bsigns[s] = ~bsigns[s] & 127;
        }
        for (int g = 0; g < 8; g++) y->qs[8 * ib + g] = (uint8_t)point_index(k, L + 4 * g);
        signs_scales[ib] = bsigns[0] | bsigns[1] << 7 | bsigns[2] << 14 | bsigns[3] << 21;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(y, 0, sizeof *y);
        return;
    }
    float d = max_scale / 31;
    pare_iq_put16(y->d, q_f2h(d * 1.0125f));
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib++) {
        int l = q_clampi(q_nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        pare_iq_put32(y->scales_signs + 4 * ib, signs_scales[ib] | (uint32_t)l << 28);
    }
}

void pare_iq_quant_iq3_xxs_with(const float *src, void *dst, int64_t n, const float *imatrix,
                                const pare_iq3_kernels *ks) {
    pare_block_iq3_xxs *y = dst;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++)
        iq3_xxs_block(src + PARE_IQ_QK * i, imatrix ? imatrix + PARE_IQ_QK * i : NULL, ks, &y[i]);
}

void pare_iq_quant_iq3_xxs(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq3_xxs_with(src, dst, n, imatrix, &ref_kernels);
}

/* ------------------------------------------------------------------------ IQ3_S */

static void iq3_s_block(const float *xbl, const float *qw, const pare_iq3_kernels *ks, pare_block_iq3_s *y) {
    const iq3_kind *k = &kind_s;
    float scales[8], weight[32], waux[32], xval[32], max_scale = 0;
    int8_t L[32];
    int slot = 0; /* where ggml's advancing qs / signs pointers are: skips zero groups */
    memset(y, 0, sizeof *y);
    const float sigma2 = 2 * pare_iq_sum_squares(xbl) / PARE_IQ_QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = xbl + 32 * ib;
        group_weights(xbl, qw, sigma2, ib, weight, waux);
        uint8_t bsigns[4];
        for (int s = 0; s < 4; s++) bsigns[s] = (uint8_t)split_signs(xb + 8 * s, xval + 8 * s);
        float max = pare_iq_max(xval, 32);
        memset(L, 0, sizeof L);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        float scale = search_group(k, ks, xval, weight, waux, max, L);
        if (scale < 0) {
            scale = -scale;
            for (int s = 0; s < 4; s++) bsigns[s] = (uint8_t)~bsigns[s];
        }
        for (int g = 0; g < 8; g++) {
            int gi = point_index(k, L + 4 * g);
            y->qs[8 * slot + g] = (uint8_t)(gi & 255);
            y->qh[ib] |= (uint8_t)((gi >> 8) << g);
        }
        memcpy(y->signs + 4 * slot, bsigns, 4);
        slot++;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) return;
    float d = max_scale / 31;
    pare_iq_put16(y->d, q_f2h(d * 1.033f));
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib += 2) {
        int l1 = q_clampi(q_nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        int l2 = q_clampi(q_nearest_int(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
        y->scales[ib / 2] = (uint8_t)(l1 | l2 << 4);
    }
}

void pare_iq_quant_iq3_s_with(const float *src, void *dst, int64_t n, const float *imatrix,
                              const pare_iq3_kernels *ks) {
    pare_block_iq3_s *y = dst;
    for (int64_t i = 0; i < n / PARE_IQ_QK; i++)
        iq3_s_block(src + PARE_IQ_QK * i, imatrix ? imatrix + PARE_IQ_QK * i : NULL, ks, &y[i]);
}

void pare_iq_quant_iq3_s(const float *src, void *dst, int64_t n, const float *imatrix) {
    pare_iq_quant_iq3_s_with(src, dst, n, imatrix, &ref_kernels);
}
