/* tests/test_prune.c - exact counts, N:M patterns, Wanda scaling, ties, against brute force. */
#include "prune/prune.h"
#include "th.h"

#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Brute force: the k weights of smallest |w|*scale (ties: lower index) for one span. */
static void brute(float *w, int64_t n, int64_t ne0, const float *sc, int64_t k) {
    char *gone = calloc((size_t)n, 1);
    for (int64_t step = 0; step < k; step++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            if (gone[i]) continue;
            float s = fabsf(w[i]) * (sc ? sc[i % ne0] : 1.0f);
            float b = best < 0 ? 0 : fabsf(w[best]) * (sc ? sc[best % ne0] : 1.0f);
            if (best < 0 || s < b) best = i;
        }
        gone[best] = 1;
    }
    for (int64_t i = 0; i < n; i++) if (gone[i]) w[i] = 0;
    free(gone);
}

static void test_row_exact(void) {
    enum { NE0 = 96, ROWS = 7 };
    float w[NE0 * ROWS], ref[NE0 * ROWS], sc[NE0];
    for (int i = 0; i < NE0 * ROWS; i++) w[i] = frand();
    for (int i = 0; i < 20; i++) w[i * 3] = 0.25f; /* ties */
    for (int i = 0; i < NE0; i++) sc[i] = 0.5f + fabsf(frand());
    for (int wanda = 0; wanda < 2; wanda++) {
        float x[NE0 * ROWS];
        memcpy(x, w, sizeof w);
        memcpy(ref, w, sizeof w);
        pare_prune_opts o = {.sparsity = 0.5, .scope = PARE_PRUNE_ROW};
        pare_err err = {0};
        int64_t z = 0;
        CHECK_OK(pare_prune_matrix(x, NE0, ROWS, wanda ? sc : NULL, &o, 3, &z, &err), &err);
        for (int r = 0; r < ROWS; r++) brute(ref + r * NE0, NE0, NE0, wanda ? sc : NULL, 48);
        CHECK(memcmp(x, ref, sizeof x) == 0);
        int64_t total, lo, hi;
        pare_prune_count_zeros(x, NE0, ROWS, &total, &lo, &hi);
        CHECK_MSG(lo == 48 && hi == 48 && total == 48 * ROWS, "zeros per row %lld..%lld", (long long)lo, (long long)hi);
        CHECK(z == 48 * ROWS);
    }
}

static void test_tensor_scope(void) {
    enum { NE0 = 40, ROWS = 9 };
    float w[NE0 * ROWS], ref[NE0 * ROWS];
    for (int i = 0; i < NE0 * ROWS; i++) w[i] = frand();
    memcpy(ref, w, sizeof w);
    pare_prune_opts o = {.sparsity = 0.3, .scope = PARE_PRUNE_TENSOR};
    pare_err err = {0};
    CHECK_OK(pare_prune_matrix(w, NE0, ROWS, NULL, &o, 2, NULL, &err), &err);
    brute(ref, NE0 * ROWS, NE0, NULL, 108);
    CHECK(memcmp(w, ref, sizeof w) == 0);
}

static void test_nm(void) {
    enum { NE0 = 64, ROWS = 5 };
    float w[NE0 * ROWS];
    for (int i = 0; i < NE0 * ROWS; i++) w[i] = frand();
    pare_prune_opts o = {.n = 2, .m = 4};
    pare_err err = {0};
    float keep[NE0 * ROWS];
    memcpy(keep, w, sizeof w);
    CHECK_OK(pare_prune_matrix(w, NE0, ROWS, NULL, &o, 2, NULL, &err), &err);
    CHECK(pare_prune_check_nm(w, NE0, ROWS, 2, 4));
    int64_t total;
    pare_prune_count_zeros(w, NE0, ROWS, &total, NULL, NULL);
    CHECK(total == NE0 * ROWS / 2);
    /* The kept two are the two largest of each group. */
    for (int g = 0; g < NE0 * ROWS; g += 4)
        for (int i = 0; i < 4; i++) {
            int larger = 0;
            for (int j = 0; j < 4; j++) larger += fabsf(keep[g + j]) > fabsf(keep[g + i]);
            CHECK((w[g + i] != 0) == (larger < 2));
        }
    o.m = 3;
    CHECK(pare_prune_matrix(w, NE0, ROWS, NULL, &o, 2, NULL, &err) == PARE_EINPUT);
}

/* N:4 with many ties, signed zeros, column scales (Wanda) and a row length that is not a
 * multiple of 16 (the vector path's tail): the zeroed weights are exactly the 4 - n first
 * of each group in (score, index) order. */
static void test_n4_ties(void) {
    enum { NE0 = 68, ROWS = 9 };
    const float vals[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -2.0f, 0.5f};
    float w[NE0 * ROWS], keep[NE0 * ROWS], scale[NE0];
    for (int i = 0; i < NE0; i++) scale[i] = (i % 3) ? 1.0f : 2.0f;
    for (int n = 1; n <= 3; n++)
        for (int sc = 0; sc < 2; sc++) {
            for (int i = 0; i < NE0 * ROWS; i++) keep[i] = w[i] = vals[(i * 7 + i / 5 + n) % 7];
            pare_prune_opts o = {.n = n, .m = 4};
            pare_err err = {0};
            const float *cs = sc ? scale : NULL;
            CHECK_OK(pare_prune_matrix(w, NE0, ROWS, cs, &o, 2, NULL, &err), &err);
            int bad = 0;
            for (int g = 0; g < NE0 * ROWS; g += 4)
                for (int p = 0; p < 4; p++) {
                    float s[4];
                    for (int q = 0; q < 4; q++) s[q] = fabsf(keep[g + q]) * (cs ? cs[(g + q) % NE0] : 1.0f);
                    int rank = 0;
                    for (int q = 0; q < 4; q++) rank += q < p ? s[q] <= s[p] : q > p ? s[q] < s[p] : 0;
                    const float want = rank < 4 - n ? 0.0f : keep[g + p];
                    bad += memcmp(&w[g + p], &want, sizeof want) != 0 && !(want == 0 && w[g + p] == 0);
                }
            CHECK_MSG(bad == 0, "%d:4%s: %d weights differ from the (score, index) rule", n, sc ? " scaled" : "", bad);
        }
}

/* Selection with many equal scores (a few values, signed zeros), several sparsities, both
 * scopes, and a negative column scale (scores below zero take the quickselect): the same
 * weights as brute force. */
static void test_ties_and_sparsities(void) {
    enum { NE0 = 150, ROWS = 5 };
    const float vals[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.0f, 0x1p-140f, -2.0f};
    static const double sp[] = {0.01, 0.3, 0.5, 0.9, 0.995};
    float sc[NE0];
    for (int i = 0; i < NE0; i++) sc[i] = (i % 5) ? 1.0f + (float)(i % 3) : 0.75f;
    for (size_t a = 0; a < sizeof sp / sizeof *sp; a++)
        for (int mode = 0; mode < 4; mode++) { /* row, row + Wanda, tensor, row with a negative scale */
            float w[NE0 * ROWS], ref[NE0 * ROWS];
            for (int i = 0; i < NE0 * ROWS; i++) ref[i] = w[i] = vals[(i * 5 + i / 7) % 7] * (i % 11 ? 1.0f : frand());
            const float *cs = mode == 1 || mode == 3 ? sc : NULL;
            if (mode == 3) sc[7] = -1.0f;
            pare_prune_opts o = {.sparsity = sp[a], .scope = mode == 2 ? PARE_PRUNE_TENSOR : PARE_PRUNE_ROW};
            pare_err err = {0};
            CHECK_OK(pare_prune_matrix(w, NE0, ROWS, cs, &o, 2, NULL, &err), &err);
            if (mode == 2) brute(ref, NE0 * ROWS, NE0, NULL, (int64_t)llround(sp[a] * NE0 * ROWS));
            else
                for (int r = 0; r < ROWS; r++) brute(ref + r * NE0, NE0, NE0, cs, (int64_t)llround(sp[a] * NE0));
            if (mode == 3) sc[7] = 1.0f + (float)(7 % 3);
            int bad = 0;
            for (int i = 0; i < NE0 * ROWS; i++) bad += memcmp(&w[i], &ref[i], sizeof w[i]) != 0 && !(w[i] == 0 && ref[i] == 0);
            CHECK_MSG(bad == 0, "sparsity %g, mode %d: %d weights differ from brute force", sp[a], mode, bad);
        }
}

static void test_kth_and_global(void) {
    float s[1000], c[1000];
    for (int i = 0; i < 1000; i++) s[i] = c[i] = (float)((i * 37) % 100);
    float t = pare_prune_kth(c, 1000, 349);
    CHECK(t == 34.0f); /* 10 copies of each value 0..99: the 350th smallest is 34 */
    int64_t below = 0;
    for (int i = 0; i < 1000; i++) below += s[i] < t;
    int64_t ties = 350 - below, z = 0;
    pare_prune_below(s, 100, 10, NULL, t, &ties, &z);
    CHECK(z == 340); /* the ten weights that are already 0 are not counted as newly zeroed */
    int64_t total;
    pare_prune_count_zeros(s, 100, 10, &total, NULL, NULL);
    CHECK(total == 350 && ties == 0);
}

int main(void) {
    TH_RUN(test_row_exact);
    TH_RUN(test_ties_and_sparsities);
    TH_RUN(test_n4_ties);
    TH_RUN(test_tensor_scope);
    TH_RUN(test_nm);
    TH_RUN(test_kth_and_global);
    return th_done();
}
