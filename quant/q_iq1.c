/*
 * quant/q_iq1.c - the IQ1_S and IQ1_M quantizers (layouts in quant/iq_impl.h).
 *
 * Both types store each group of 8 weights as one point of the 2048-point iq1s grid (levels
 * -1, 0, 1), shifted by +-delta and multiplied by a group scale. This file reproduces
 * ggml's quantize_iq1_s / quantize_iq1_m (llama.cpp of February 2025) step for step, with
 * the float operations in the same order, so that the blocks come out bit-identical:
 *
 *   1. per super-block of 256: sigma2 = 2 * mean square; weights qw * sqrt(sigma2 + x^2)
 *      with importance weights qw, else x^2;
 *   2. per block (32 weights for IQ1_S, 16 for IQ1_M): sort the values; every split of
 *      the sorted values into levels -1 | 0 | +1 is scored exactly (weighted least squares
 *      for the scale) with delta of either sign (IQ1_M: a sign per half block);
 *   3. each group of 8 levels that is not a grid point is replaced by its best grid
 *      neighbour (quant/iq1_maps.c), then the scale is refitted;
 *   4. the block scales are quantized to 3 bits against the largest (IQ1_S: d = max/15,
 *      stored * 1.125; IQ1_M: d refitted over the whole super-block, stored * 1.1125 -
 *      ggml's empirical factors).
 * The searches are organised differently where that keeps every float operation: shared
 * prefixes of ggml's sums are reused, and the neighbour search walks a small ball around
 * the vector instead of ggml's global lists (see quant/gen_iq1_maps.py), cutting branches
 * that cannot win.
 *
 * Two deliberate differences, neither seen in ggml's golden outputs: where ggml asserts
 * (every weight of a block zero) the block gets scale 0, as later ggml does; and a block
 * below ggml's zero threshold inside a non-zero super-block takes its delta sign from the
 * same block of the previous super-block of the row, where ggml's comes from whatever its
 * reused array held (possibly another row).
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#include <assert.h>
#include <float.h>
#include <math.h>

#define IQ1S_BLOCK 32
#define IQ1M_BLOCK 16
#define IQ1S_EPS 1e-12f /* ggml's GROUP_MAX_EPS_IQ1_S: below this a block is all zero */
#define IQ1M_EPS 1e-7f  /* ggml's GROUP_MAX_EPS_IQ1_M */

/* The three values a level 0, 1, 2 (grid -1, 0, +1) stands for, with delta added (P) or
 * subtracted (M). Exact in float. */
static const float XP[3] = {-1 + PARE_IQ1S_DELTA, PARE_IQ1S_DELTA, 1 + PARE_IQ1S_DELTA};
static const float XM[3] = {-1 - PARE_IQ1S_DELTA, -PARE_IQ1S_DELTA, 1 - PARE_IQ1S_DELTA};

/* ggml's MAX(a, b), NaN handling included (fmaxf would differ) */
static inline float max_of(float a, float b) { return a > b ? a : b; }

static inline int grid_level(int gidx, int j) { return (int8_t)(pare_iq1s_grid[gidx] >> (8 * j)) + 1; }

/* idx = 0..n-1 ordered by x ascending, equal values kept in index order. ggml sorts with
 * qsort on the values alone; glibc's qsort is a merge sort for arrays this small, so it
 * keeps equal values in their original order too, and so the split sums add up alike. */
static void sort_order(const float *x, int n, int *idx) {
    for (int j = 0; j < n; j++) {
        int k = j;
        while (k > 0 && x[idx[k - 1]] > x[j]) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = j;
    }
}

/* Weights of the 256 values of a super-block (step 1). */
static void superblock_weights(const float *x, const float *qw, float *w) {
    float sigma2 = 2 * pare_iq_sum_squares(x) / PARE_IQ_QK;
    for (int i = 0; i < PARE_IQ_QK; i++) w[i] = qw ? qw[i] * sqrtf(sigma2 + x[i] * x[i]) : x[i] * x[i];
}

/* ------------------------------------------------------------------------ grid neighbours */

/* State of the walk over the grid points near an off-grid vector. */
typedef struct {
    float err[8][3]; /* weighted squared error of element i at level b, as ggml adds it */
    int radius;      /* squared level distance of ggml's farthest neighbour */
    float best;      /* ggml keeps the first neighbour with the strictly smallest error */
    int best_dist, best_j;
    int first_dist, first_j; /* the head of ggml's list, if no error is below FLT_MAX */
    bool prune;              /* errors are >= 0, so a partial sum above the best is beaten */
    float rest[9];           /* sum of the smallest errors of elements i.., a lower bound */
    int8_t try_order[8][3];  /* levels of element i, smallest error first */
} nb_walk;

/* Grid points within the radius, in any order: ggml's list is ordered by distance, then
 * grid index, so the first smallest error is the smallest (error, distance, index). The
 * error is accumulated element by element along the walk, in ggml's order; float addition
 * of a non-negative term never decreases a sum, so a branch whose partial error already
 * exceeds the best cannot win and is cut (trying small errors first finds a good best
 * early). */
static void walk(nb_walk *s, const int *lv, int i, int key, int pow3, int dist, float acc) {
    if (i == 8) {
        int j = pare_iq1_kmap[key];
        if (j < 0) return; /* not a grid point (or the vector itself) */
        if (dist < s->first_dist || (dist == s->first_dist && j < s->first_j)) {
            s->first_dist = dist;
            s->first_j = j;
        }
        if (acc < s->best ||
            (acc == s->best && s->best_j >= 0 &&
             (dist < s->best_dist || (dist == s->best_dist && j < s->best_j)))) {
            s->best = acc;
            s->best_dist = dist;
            s->best_j = j;
        }
        return;
    }
    if (s->prune && s->best_j >= 0) {
        if (acc > s->best) return;
        /* the bound is summed in another order: keep a margin far above float rounding,
         * and use it only where the best is a normal number (subnormals round coarser) */
        if (s->best > 1e-30f && (acc + s->rest[i]) * (1 - 1e-5f) > s->best) return;
    }
    for (int t = 0; t < 3; t++) {
        int b = s->try_order[i][t];
        int dd = dist + (b - lv[i]) * (b - lv[i]);
        if (dd <= s->radius) walk(s, lv, i + 1, key + b * pow3, pow3 * 3, dd, acc + s->err[i][b]);
    }
}

/* Grid index for the 8 levels L (0..2) of values x with weights w at this scale, xx the
 * level values: L itself when it is on the grid, else ggml's best neighbour (and L is
 * overwritten with its levels). *on_grid is cleared for a neighbour. */
static int grid_index(int8_t *L, const float *x, const float *w, float scale, const float *xx, bool *on_grid) {
    int key = 0;
    for (int j = 7; j >= 0; j--) key = 3 * key + L[j];
    int g = pare_iq1_kmap[key];
    if (g >= 0) return g;
    *on_grid = false;
    nb_walk s = {.radius = -g, .best = FLT_MAX, .best_dist = 0, .best_j = -1, .first_dist = INT32_MAX, .first_j = -1};
    int lv[8];
    s.prune = true;
    for (int i = 0; i < 8; i++) {
        lv[i] = L[i];
        s.prune = s.prune && w[i] >= 0;
        for (int b = 0; b < 3; b++) {
            float diff = scale * xx[b] - x[i];
            s.err[i][b] = w[i] * diff * diff;
        }
        const float *e = s.err[i];
        int8_t *o = s.try_order[i];
        o[0] = 0, o[1] = 1, o[2] = 2;
        for (int a = 1; a < 3; a++)
            for (int c = a; c > 0 && e[o[c]] < e[o[c - 1]]; c--) {
                int8_t t = o[c];
                o[c] = o[c - 1];
                o[c - 1] = t;
            }
    }
    s.rest[8] = 0;
    for (int i = 7; i >= 0; i--) s.rest[i] = s.rest[i + 1] + s.err[i][s.try_order[i][0]];
    walk(&s, lv, 0, 0, 1, 0, 0.f);
    g = s.best_j >= 0 ? s.best_j : s.first_j;
    assert(g >= 0);
    for (int j = 0; j < 8; j++) L[j] = (int8_t)grid_level(g, j);
    return g;
}

/* ------------------------------------------------------------------------ IQ1_S */

/* Best split of the sorted block for IQ1_S: one delta sign for all 32. Returns the shift
 * (+1: delta added, -1: subtracted) or 0 when no split has a positive weight. For each i1
 * the sums of all i2 are formed first (independent, so they vectorize); a row none of
 * whose candidates beats the best is skipped before the exact, ordered comparisons. */
static int iq1s_split(const float *xb, const float *w, const int *order, int *pi1, int *pi2, float *pscale) {
    enum { N = IQ1S_BLOCK };
    float sumx[N + 1], sumw[N + 1];
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < N; j++) {
        int i = order[j];
        sumx[j + 1] = sumx[j] + w[i] * xb[i];
        sumw[j + 1] = sumw[j] + w[i];
    }
    float best = -FLT_MAX;
    int shift = 0;
    for (int i1 = 0; i1 <= N; i1++) {
        const float a = sumx[i1] - sumx[0], aw = sumw[i1] - sumw[0];
        const int m = N + 1 - i1;
        /* [0]: delta added, [1]: subtracted, for i2 = i1 + t */
        float qx[2][N + 1], q2[2][N + 1];
        for (int t = 0; t < m; t++) {
            int i2 = i1 + t;
            float b = sumx[i2] - sumx[i1], c = sumx[N] - sumx[i2];
            float bw = sumw[i2] - sumw[i1], cw = sumw[N] - sumw[i2];
            qx[0][t] = a * XP[0] + b * XP[1] + c * XP[2];
            q2[0][t] = aw * XP[0] * XP[0] + bw * XP[1] * XP[1] + cw * XP[2] * XP[2];
            qx[1][t] = a * XM[0] + b * XM[1] + c * XM[2];
            q2[1][t] = aw * XM[0] * XM[0] + bw * XM[1] * XM[1] + cw * XM[2] * XM[2];
        }
        int any = 0;
        for (int t = 0; t < m; t++)
            any |= ((q2[0][t] > 0) & (qx[0][t] * qx[0][t] > best * q2[0][t])) |
                   ((q2[1][t] > 0) & (qx[1][t] * qx[1][t] > best * q2[1][t]));
        if (!any) continue;
        for (int t = 0; t < m; t++)
            for (int h = 0; h < 2; h++) { /* ggml tries + before - */
                if (q2[h][t] > 0 && qx[h][t] * qx[h][t] > best * q2[h][t]) {
                    *pscale = qx[h][t] / q2[h][t];
                    best = *pscale * qx[h][t];
                    *pi1 = i1;
                    *pi2 = i1 + t;
                    shift = h ? -1 : 1;
                }
            }
    }
    return shift;
}

/* One 32-value block: returns its scale (0 for a zero block) and sets *shift and the 4
 * grid indices. */
static float iq1s_block(const float *xb, const float *w, int *shift, uint16_t *gidx) {
    float max = fabsf(xb[0]);
    for (int i = 1; i < IQ1S_BLOCK; i++) max = max_of(max, fabsf(xb[i]));
    if (max < IQ1S_EPS) return 0;
    int order[IQ1S_BLOCK];
    sort_order(xb, IQ1S_BLOCK, order);
    int i1 = 0, i2 = 0;
    float scale = max;
    int s = iq1s_split(xb, w, order, &i1, &i2, &scale);
    if (s == 0) return 0;
    int8_t L[IQ1S_BLOCK];
    for (int j = 0; j < IQ1S_BLOCK; j++) L[order[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
    if (scale < 0) {
        for (int j = 0; j < IQ1S_BLOCK; j++) L[j] = (int8_t)(2 - L[j]);
        scale = -scale;
        s = -s;
    }
    const float *xx = s > 0 ? XP : XM;
    bool on_grid = true;
    for (int k = 0; k < IQ1S_BLOCK / 8; k++)
        gidx[k] = (uint16_t)grid_index(L + 8 * k, xb + 8 * k, w + 8 * k, scale, xx, &on_grid);
    if (!on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < IQ1S_BLOCK / 8; k++)
            for (int j = 0; j < 8; j++) {
                float q = xx[grid_level(gidx[k], j)], wq = w[8 * k + j] * q;
                sumqx += wq * xb[8 * k + j];
                sumq2 += wq * q;
            }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
    }
    *shift = s;
    return scale;
}

void pare_iq_quant_iq1_s(const float *x, void *dst, int64_t n, const float *imatrix) {
    pare_block_iq1_s *y = dst;
    /* ggml leaves the shift of a zero block at its value from the previous super-block
     * (its array outlives the loop); pare starts from +1, what later ggml writes. */
    int shifts[PARE_IQ_QK / IQ1S_BLOCK] = {1, 1, 1, 1, 1, 1, 1, 1};
    float w[PARE_IQ_QK];
    for (int64_t ibl = 0; ibl < n / PARE_IQ_QK; ibl++) {
        const float *xbl = x + PARE_IQ_QK * ibl;
        superblock_weights(xbl, imatrix ? imatrix + PARE_IQ_QK * ibl : NULL, w);
        memset(&y[ibl], 0, sizeof y[ibl]);
        float scales[PARE_IQ_QK / IQ1S_BLOCK], max_scale = 0;
        uint16_t qh[PARE_IQ_QK / IQ1S_BLOCK] = {0};
        for (int ib = 0; ib < PARE_IQ_QK / IQ1S_BLOCK; ib++) {
            uint16_t gidx[IQ1S_BLOCK / 8] = {0};
            int s = 0;
            scales[ib] = iq1s_block(xbl + IQ1S_BLOCK * ib, w + IQ1S_BLOCK * ib, &s, gidx);
            if (s == 0) continue;
            for (int k = 0; k < IQ1S_BLOCK / 8; k++) {
                y[ibl].qs[4 * ib + k] = (uint8_t)(gidx[k] & 255);
                qh[ib] |= (uint16_t)((gidx[k] >> 8) << (3 * k));
            }
            shifts[ib] = s;
            max_scale = max_of(max_scale, scales[ib]);
        }
        if (max_scale != 0) {
            float d = max_scale / 15;
            pare_half dh = q_f2h(d * 1.125f);
            pare_iq_put16(y[ibl].d, dh);
            float id = 1 / d;
            for (int ib = 0; ib < PARE_IQ_QK / IQ1S_BLOCK; ib++) {
                int l = q_clampi(q_nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
                if (shifts[ib] == -1) l |= 8;
                qh[ib] |= (uint16_t)(l << 12);
            }
        }
        for (int ib = 0; ib < PARE_IQ_QK / IQ1S_BLOCK; ib++) {
            y[ibl].qh[2 * ib] = (uint8_t)qh[ib];
            y[ibl].qh[2 * ib + 1] = (uint8_t)(qh[ib] >> 8);
        }
    }
}

/* ------------------------------------------------------------------------ IQ1_M */

/* Best split of the sorted 16-value block for IQ1_M, where each half (values 0-7, 8-15)
 * has its own delta sign: k = 0 (+,+), 1 (+,-), 2 (-,+), 3 (-,-). Returns k or -1.
 *
 * ggml sums, for every split (i1, i2), the terms of all 16 sorted values from scratch, in
 * sorted order. The same running sums are formed here with less work: the part before i1
 * and the middle part are carried from the previous split (they are prefixes of the same
 * sequence of float additions); only the tail is added afresh. The 4 sumqx and 4 sumq2
 * are 8 lanes, and a split none of whose k beats the best is skipped before the exact,
 * ordered comparisons. */
static int iq1m_split(const float *xb, const float *w, const int *order, int *pi1, int *pi2, float *pscale) {
    enum { N = IQ1M_BLOCK };
    /* t[l][j]: the terms sorted value j adds to sumqx[0..3] (lanes 0-3) and sumq2[0..3]
     * (lanes 4-7) when it gets level l */
    float t[3][N][8];
    for (int j = 0; j < N; j++) {
        int i = order[j];
        for (int k = 0; k < 4; k++) {
            bool minus = i < N / 2 ? k >= 2 : k % 2 == 1;
            const float *v = minus ? XM : XP;
            for (int l = 0; l < 3; l++) {
                t[l][j][k] = w[i] * v[l] * xb[i];
                t[l][j][4 + k] = w[i] * v[l] * v[l];
            }
        }
    }
    float best = -FLT_MAX;
    int best_k = -1;
    float p[8] = {0}; /* values before i1 at level 0 */
    for (int i1 = 0; i1 <= N; i1++) {
        /* a[i2]: then those from i1 to i2 at level 1, then the rest at level 2. The
         * tails are added j by j across all i2 at once: independent sums, no chain of
         * dependent additions; each a[i2] still gets its terms in ggml's order. */
        float a[N + 1][8];
        memcpy(a[i1], p, sizeof p);
        for (int i2 = i1 + 1; i2 <= N; i2++)
            for (int l = 0; l < 8; l++) a[i2][l] = a[i2 - 1][l] + t[1][i2 - 1][l];
        for (int j = i1; j < N; j++)
            for (int i2 = i1; i2 <= j; i2++)
                for (int l = 0; l < 8; l++) a[i2][l] += t[2][j][l];
        for (int i2 = i1; i2 <= N; i2++) {
            const float *sx = a[i2], *sq = a[i2] + 4;
            int any = 0;
            for (int k = 0; k < 4; k++) any |= (sq[k] > 0) & (sx[k] * sx[k] > best * sq[k]);
            if (!any) continue;
            for (int k = 0; k < 4; k++) {
                if (sq[k] > 0 && sx[k] * sx[k] > best * sq[k]) {
                    *pscale = sx[k] / sq[k];
                    best = *pscale * sx[k];
                    *pi1 = i1;
                    *pi2 = i2;
                    best_k = k;
                }
            }
        }
        if (i1 < N)
            for (int l = 0; l < 8; l++) p[l] += t[0][i1][l];
    }
    return best_k;
}

/* Level values of group k (0: first 8, 1: last 8) of a block with sign pattern bk. */
static const float *iq1m_xx(int bk, int k) { return (k == 0 ? bk < 2 : bk % 2 == 0) ? XP : XM; }

/* One 16-value block: returns its scale (0 for a zero block; *bk then untouched) and sets
 * *bk and the two grid indices. */
static float iq1m_block(const float *xb, const float *w, int *bk, uint16_t *gidx) {
    float max = fabsf(xb[0]);
    for (int i = 1; i < IQ1M_BLOCK; i++) max = max_of(max, fabsf(xb[i]));
    if (max < IQ1M_EPS) return 0;
    int order[IQ1M_BLOCK];
    sort_order(xb, IQ1M_BLOCK, order);
    int i1 = 0, i2 = 0;
    float scale = max;
    int k4 = iq1m_split(xb, w, order, &i1, &i2, &scale);
    if (k4 < 0) return 0;
    int8_t L[IQ1M_BLOCK];
    for (int j = 0; j < IQ1M_BLOCK; j++) L[order[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
    if (scale < 0) {
        for (int j = 0; j < IQ1M_BLOCK; j++) L[j] = (int8_t)(2 - L[j]);
        scale = -scale;
        k4 = 3 - k4; /* both signs flip */
    }
    bool on_grid = true;
    for (int k = 0; k < 2; k++)
        gidx[k] = (uint16_t)grid_index(L + 8 * k, xb + 8 * k, w + 8 * k, scale, iq1m_xx(k4, k), &on_grid);
    if (!on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < 2; k++) {
            const float *xx = iq1m_xx(k4, k);
            for (int j = 0; j < 8; j++) {
                float q = xx[grid_level(gidx[k], j)], wq = w[8 * k + j] * q;
                sumqx += wq * xb[8 * k + j];
                sumq2 += wq * q;
            }
        }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
    }
    *bk = k4;
    return scale;
}

void pare_iq_quant_iq1_m(const float *x, void *dst, int64_t n, const float *imatrix) {
    enum { NB = PARE_IQ_QK / IQ1M_BLOCK };
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88}; /* delta sign bits per k */
    pare_block_iq1_m *y = dst;
    /* As for IQ1_S, a zero block keeps the previous super-block's sign pattern; from 0. */
    int shifts[NB] = {0};
    float w[PARE_IQ_QK];
    for (int64_t ibl = 0; ibl < n / PARE_IQ_QK; ibl++) {
        const float *xbl = x + PARE_IQ_QK * ibl;
        superblock_weights(xbl, imatrix ? imatrix + PARE_IQ_QK * ibl : NULL, w);
        memset(&y[ibl], 0, sizeof y[ibl]);
        float scales[NB], max_scale = 0;
        uint16_t gidx[NB][2];
        memset(gidx, 0, sizeof gidx);
        for (int ib = 0; ib < NB; ib++) {
            int bk = -1;
            scales[ib] = iq1m_block(xbl + IQ1M_BLOCK * ib, w + IQ1M_BLOCK * ib, &bk, gidx[ib]);
            if (bk < 0) continue;
            shifts[ib] = bk;
            max_scale = max_of(max_scale, scales[ib]);
        }
        for (int ib = 0; ib < NB; ib++) {
            y[ibl].qs[2 * ib] = (uint8_t)(gidx[ib][0] & 255);
            y[ibl].qs[2 * ib + 1] = (uint8_t)(gidx[ib][1] & 255);
            y[ibl].qh[ib] = (uint8_t)((gidx[ib][0] >> 8) | ((gidx[ib][1] >> 8) << 4));
        }
        if (max_scale == 0) continue;
        /* 3-bit block scales against d = max/15, then d refitted to all 256 values with
         * those scales and levels */
        uint16_t sc[4] = {0, 0, 0, 0};
        float d = max_scale / 15, id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < NB; ib++) {
            int l = q_clampi(q_nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
            sc[ib / 4] |= (uint16_t)(l << (3 * (ib % 4)));
            y[ibl].qh[ib] |= masks[shifts[ib]];
            const float *xb = xbl + IQ1M_BLOCK * ib, *wb = w + IQ1M_BLOCK * ib;
            for (int k = 0; k < 2; k++) {
                const float *xx = iq1m_xx(shifts[ib], k);
                for (int j = 0; j < 8; j++) {
                    float q = xx[grid_level(gidx[ib][k], j)] * (float)(2 * l + 1), wq = wb[8 * k + j] * q;
                    sumqx += wq * xb[8 * k + j];
                    sumq2 += wq * q;
                }
            }
        }
        if (sumq2 > 0) d = sumqx / sumq2;
        pare_half h = q_f2h(d * 1.1125f);
        sc[0] |= (uint16_t)((h & 0x000f) << 12);
        sc[1] |= (uint16_t)((h & 0x00f0) << 8);
        sc[2] |= (uint16_t)((h & 0x0f00) << 4);
        sc[3] |= (uint16_t)(h & 0xf000);
        for (int k = 0; k < 4; k++) {
            y[ibl].scales[2 * k] = (uint8_t)sc[k];
            y[ibl].scales[2 * k + 1] = (uint8_t)(sc[k] >> 8);
        }
    }
}
