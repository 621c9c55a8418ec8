/* tests/test_quant_iq.c - quant/q_iq.c: codebook tables, hand-built blocks, and ggml's
 * golden dequantizations (../shared/golden/quant-TYPE.gguf) bit for bit. */
#include "core/core.h"
#include "formats/gguf.h"
#include "quant/iq_impl.h"
#include "th.h"

#include <inttypes.h>

typedef void (*dequant_fn)(const void *src, float *dst, int64_t n);

static const struct {
    const char *name; /* golden file suffix and ggml type name */
    pare_type type;
    dequant_fn fn;
    bool needs_imatrix; /* ggml refuses to quantize these without importance weights */
} IQ_TYPES[] = {
    {"iq2_xxs", PARE_TYPE_IQ2_XXS, pare_iq_dequant_iq2_xxs, true},
    {"iq2_xs", PARE_TYPE_IQ2_XS, pare_iq_dequant_iq2_xs, true},
    {"iq2_s", PARE_TYPE_IQ2_S, pare_iq_dequant_iq2_s, false},
    {"iq3_xxs", PARE_TYPE_IQ3_XXS, pare_iq_dequant_iq3_xxs, false},
    {"iq3_s", PARE_TYPE_IQ3_S, pare_iq_dequant_iq3_s, false},
    {"iq1_s", PARE_TYPE_IQ1_S, pare_iq_dequant_iq1_s, true},
    {"iq1_m", PARE_TYPE_IQ1_M, pare_iq_dequant_iq1_m, false},
};
#define N_IQ_TYPES (sizeof IQ_TYPES / sizeof IQ_TYPES[0])

/* ------------------------------------------------------------------ tables */

static bool all_bytes_in(uint64_t point, int n, const uint8_t *levels, int n_levels) {
    for (int j = 0; j < n; j++) {
        uint8_t b = (uint8_t)(point >> (8 * j));
        bool ok = false;
        for (int k = 0; k < n_levels; k++) ok |= b == levels[k];
        if (!ok) return false;
    }
    return true;
}

static int count_bad_points(const uint64_t *g64, const uint32_t *g32, int n, int n_elem,
                            const uint8_t *levels, int n_levels) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        uint64_t p = g64 ? g64[i] : g32[i];
        if (!all_bytes_in(p, n_elem, levels, n_levels)) bad++;
        if (i > 0 && p == (g64 ? g64[i - 1] : g32[i - 1])) bad++; /* duplicates */
    }
    return bad;
}

static void test_grid_tables(void) {
    static const uint8_t l2[] = {0x08, 0x19, 0x2b};
    static const uint8_t l3xxs[] = {0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3e};
    static const uint8_t l3s[] = {1, 3, 5, 7, 9, 11, 13, 15};
    static const uint8_t l1[] = {0xff, 0x00, 0x01};
    CHECK(count_bad_points(pare_iq2xxs_grid, NULL, 256, 8, l2, 3) == 0);
    CHECK(count_bad_points(pare_iq2xs_grid, NULL, 512, 8, l2, 3) == 0);
    CHECK(count_bad_points(pare_iq2s_grid, NULL, 1024, 8, l2, 3) == 0);
    CHECK(count_bad_points(NULL, pare_iq3xxs_grid, 256, 4, l3xxs, 8) == 0);
    CHECK(count_bad_points(NULL, pare_iq3s_grid, 512, 4, l3s, 8) == 0);
    CHECK(count_bad_points(pare_iq1s_grid, NULL, 2048, 8, l1, 3) == 0);
    /* Entries compared by hand with ggml-common.h (first, last and a few inner ones). */
    CHECK(pare_iq2xxs_grid[0] == 0x0808080808080808ull);
    CHECK(pare_iq2xxs_grid[255] == 0x2b2b2b1908081908ull);
    CHECK(pare_iq2xxs_grid[131] == 0x082b2b2b19081908ull);
    CHECK(pare_iq2xs_grid[301] == 0x1908190808192b19ull);
    CHECK(pare_iq2s_grid[501] == 0x190808082b2b1908ull);
    CHECK(pare_iq3xxs_grid[255] == 0x3e341c04u);
    CHECK(pare_iq3s_grid[302] == 0x07030901u);
    CHECK(pare_iq1s_grid[1001] == 0x00000000ffff0000ull);
    CHECK(pare_iq1s_grid[1500] == 0x01ff00ff00ffff00ull);
    CHECK(pare_iq1s_grid[2047] == 0x0101010101010101ull);
    /* ksigns: 7 bits kept, 8th bit makes the parity even. */
    int bad = 0;
    for (int i = 0; i < 128; i++) {
        unsigned v = pare_iq_ksigns[i], ones = 0;
        for (int b = 0; b < 8; b++) ones += (v >> b) & 1;
        if ((v & 127) != (unsigned)i || ones % 2) bad++;
    }
    CHECK_MSG(bad == 0, "%d ksigns entries wrong", bad);
}

/* ------------------------------------------------------------------ hand-built blocks */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v), put16(p + 2, (uint16_t)(v >> 16)); }

static void test_iq2_xxs_block(void) {
    pare_block_iq2_xxs b = {0};
    float y[256];
    put16(b.d, 0x3c00); /* d = 1 */
    /* first 32 weights: grid points 0 (all 8) and 255 (0x2b2b2b1908081908: byte 0 is 8,
     * byte 7 is 43); signs index 1 for group 0
     * (weights 0 and 7 negative); scale 3 -> db = (0.5 + 3) * 0.25 = 0.875 */
    b.qs[0] = 0, b.qs[1] = 255;
    put32(b.qs + 4, 1u | 3u << 28);
    pare_iq_dequant_iq2_xxs(&b, y, 256);
    CHECK(y[0] == -7.0f && y[1] == 7.0f && y[6] == 7.0f && y[7] == -7.0f);
    CHECK(y[8] == 0.875f * 8 && y[15] == 0.875f * 43);
    /* the other groups of 32: index 0, scale 0 -> 0.125 * 8 = 1 */
    CHECK(y[32] == 1.0f && y[255] == 1.0f);
}

static float g8(uint64_t p, int j) { return (float)(uint8_t)(p >> (8 * j)); }

static void test_iq2_xs_s_iq3_xxs_blocks(void) {
    float y[256];
    /* IQ2_XS: u16 = 9-bit index | 7-bit sign index << 9; scale nibbles per 16 weights */
    pare_block_iq2_xs a = {0};
    put16(a.d, 0x3c00);
    put16(a.qs, (uint16_t)(300 | 1 << 9)); /* ksigns[1]: weights 0 and 7 negative */
    a.scales[0] = 0x52;                    /* groups 0-1: (0.5 + 2) / 4, groups 2-3: (0.5 + 5) / 4 */
    pare_iq_dequant_iq2_xs(&a, y, 256);
    uint64_t p = pare_iq2xs_grid[300];
    CHECK(y[0] == -0.625f * g8(p, 0) && y[1] == 0.625f * g8(p, 1) && y[7] == -0.625f * g8(p, 7));
    CHECK(y[16] == 1.375f * 8 && y[31] == 1.375f * 8);

    /* IQ2_S: 10-bit index, the high 2 bits of group l in qh bits 2l, 2l+1; sign bytes */
    pare_block_iq2_s b = {0};
    put16(b.d, 0x3c00);
    b.qs[0] = 0x10, b.qs[1] = 5, b.qh[0] = 3 << 2; /* group 0 -> 16, group 1 -> 773 */
    b.signs[1] = 0x80;                             /* last weight of group 1 negative */
    b.scales[0] = 0x03;                            /* groups 0-1: 3.5 / 4 */
    pare_iq_dequant_iq2_s(&b, y, 256);
    CHECK(y[0] == 0.875f * g8(pare_iq2s_grid[16], 0) && y[3] == 0.875f * g8(pare_iq2s_grid[16], 3));
    CHECK(y[8] == 0.875f * g8(pare_iq2s_grid[773], 0) && y[15] == -0.875f * g8(pare_iq2s_grid[773], 7));

    /* IQ3_XXS: 4-wide points, scale (0.5 + s) / 2 */
    pare_block_iq3_xxs c = {0};
    put16(c.d, 0x4000); /* d = 2 */
    c.qs[0] = 255, c.qs[1] = 0;
    put32(c.scales_signs, 1u << 28); /* s = 1: db = 2 * 1.5 * 0.5 = 1.5, no signs */
    pare_iq_dequant_iq3_xxs(&c, y, 256);
    uint32_t q = pare_iq3xxs_grid[255];
    CHECK(y[0] == 1.5f * (float)(q & 0xff) && y[3] == 1.5f * (float)(q >> 24));
    CHECK(y[4] == 1.5f * 4 && y[7] == 1.5f * 4);
    CHECK(y[32] == 0.5f * 4); /* next 32: s = 0 -> 2 * 0.5 * 0.5 */
}

static void test_iq3_s_block(void) {
    pare_block_iq3_s b = {0};
    float y[256];
    put16(b.d, 0x3800); /* d = 0.5 */
    b.scales[0] = 0x21;  /* first 32: s = 1 -> db = 0.5 * 3; next 32: s = 2 -> 0.5 * 5 */
    b.qs[0] = 0;         /* with qh bit 0 set -> point 256 */
    b.qs[1] = 2;         /* qh bit 1 clear -> point 2 = 0x01010105 */
    b.qh[0] = 1;
    b.signs[0] = 0x10;   /* weight 4 (first of the second group of 4) negative */
    pare_iq_dequant_iq3_s(&b, y, 256);
    uint32_t p = pare_iq3s_grid[256];
    CHECK(y[0] == 1.5f * (float)(p & 0xff) && y[3] == 1.5f * (float)(p >> 24));
    CHECK(y[4] == -1.5f * 5 && y[5] == 1.5f);
    CHECK(y[32] == 2.5f); /* second 32: point 0 (all 1), db 2.5 */
}

static void test_iq1_blocks(void) {
    pare_block_iq1_s s = {0};
    float y[256];
    put16(s.d, 0x3c00);
    /* group 0: point 2047 (all +1); scale 2 -> dl 5; negative delta */
    s.qs[0] = 0xff;
    put16(s.qh, (uint16_t)(7 | 2 << 12 | 0x8000));
    pare_iq_dequant_iq1_s(&s, y, 256);
    CHECK(y[0] == 5.0f * (1 - 0.125f) && y[7] == 5.0f * (1 - 0.125f));
    /* group 1: point 0 = 0x0000...ffff.. from the table, same scale and delta */
    float e = 5.0f * ((float)(int8_t)(pare_iq1s_grid[0] & 0xff) - 0.125f);
    CHECK(y[8] == e);

    pare_block_iq1_m m = {0};
    /* d = 0.5 = half 0x3800: nibbles 0, 0, 8, 3 in the top of scale words 0..3;
     * scale of weights 0-15 = 1 (dl 1.5), 16-31 = 2 (dl 2.5) */
    put16(m.scales + 0, (uint16_t)(1 | 2 << 3 | 0x0 << 12));
    put16(m.scales + 2, 0x0000);
    put16(m.scales + 4, 0x8000);
    put16(m.scales + 6, 0x3000);
    m.qs[0] = 0xff, m.qh[0] = 0x07 | 0x80; /* group 0: point 2047, +delta; group 1: -delta */
    m.qs[2] = 0xff, m.qh[1] = 0x07;        /* group 2: point 2047 */
    pare_iq_dequant_iq1_m(&m, y, 256);
    CHECK_MSG(y[0] == 0.5f * 3 * (1 + 0.125f), "y[0] = %g", y[0]);
    float g1 = (float)(int8_t)(pare_iq1s_grid[0] & 0xff);
    CHECK(y[8] == 1.5f * (g1 - 0.125f));
    CHECK(y[16] == 2.5f * (1 + 0.125f));
}

/* ------------------------------------------------------------------ IQ3 quantizers */

/* Levels 0..7 of element i of an IQ3 grid point (IQ3_XXS bytes 4, 12, .., 52, 62; IQ3_S
 * bytes 1, 3, .., 15). */
static int iq3_level(uint32_t point, int i, bool xxs) {
    int b = (int)(point >> (8 * i) & 0xff);
    return xxs ? b >> 3 : b >> 1;
}

/* The search tables against their definition (quant/gen_iq_maps.py), recomputed here: the
 * map names each grid point; each off-grid key lists every grid point at its nwant nearest
 * distances, by distance then key; 7 zeros end the lists. */
static int check_iq3_maps(const uint32_t *grid, int n_grid, const int16_t *map, const uint16_t *nb, bool xxs) {
    const int nwant = xxs ? 2 : 3;
    int bad = 0, key_of[512], end = 0;
    for (int g = 0; g < n_grid; g++) {
        key_of[g] = 0;
        for (int i = 0; i < 4; i++) key_of[g] |= iq3_level(grid[g], i, xxs) << (3 * i);
        bad += map[key_of[g]] != g;
    }
    for (int u = 0; u < 4096; u++) {
        if (map[u] >= 0) {
            bad += map[u] >= n_grid || key_of[map[u]] != u;
            continue;
        }
        const uint16_t *l = nb + (-map[u] - 1);
        int n = l[0];
        if (-map[u] + n > end) end = -map[u] + n;
        if (n <= 0 || n > 40) {
            bad++;
            continue;
        }
        int dist[512], kept[3], n_kept = 0; /* the nwant least distinct distances */
        for (int g = 0; g < n_grid; g++) {
            dist[g] = 0;
            for (int i = 0; i < 4; i++) {
                int d = iq3_level(grid[g], i, xxs) - (u >> (3 * i) & 7);
                dist[g] += d * d;
            }
        }
        for (int r = 0; r < nwant; r++) {
            int best = INT32_MAX;
            for (int g = 0; g < n_grid; g++)
                if (dist[g] < best && (r == 0 || dist[g] > kept[r - 1])) best = dist[g];
            kept[n_kept++] = best;
        }
        int j = 1; /* the listed keys, in order, and no more */
        for (int r = 0; r < n_kept; r++)
            for (int g = 0; g < n_grid; g++)
                if (dist[g] == kept[r]) {
                    bad += j > n || l[j] != key_of[g];
                    j++;
                }
        bad += j - 1 != n;
    }
    for (int j = 0; j < 7; j++) bad += nb[end + j] != 0;
    return bad;
}

static void test_iq3_maps(void) {
    int bx = check_iq3_maps(pare_iq3xxs_grid, 256, pare_iq3xxs_map, pare_iq3xxs_neighbours, true);
    int bs = check_iq3_maps(pare_iq3s_grid, 512, pare_iq3s_map, pare_iq3s_neighbours, false);
    CHECK_MSG(bx == 0 && bs == 0, "%d (iq3_xxs) / %d (iq3_s) bad entries", bx, bs);
}

/* Gaussian values from a fixed LCG (Box-Muller). */
static void fill_gauss(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        double u1 = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        double u2 = (double)(seed >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

/* Bounds on the relative RMS error of IQ3 on Gaussian data: on large samples it is about
 * 0.213 (IQ3_XXS) and 0.166 (IQ3_S) without importance weights. */
#define IQ3_XXS_MAX_REL_RMSE 0.23
#define IQ3_S_MAX_REL_RMSE 0.18

static void test_iq3_quantize_roundtrip(void) {
    enum { N = 8 * 1024 };
    static float x[N], y[N], w[N];
    static uint8_t q[N];
    fill_gauss(x, N, 7);
    for (int i = 0; i < N; i++) w[i] = 1.0f + (float)(i % 7);
    for (int t = 0; t < 2; t++)
        for (int im = 0; im < 2; im++) {
            if (t == 0) {
                pare_iq_quant_iq3_xxs(x, q, N, im ? w : NULL);
                pare_iq_dequant_iq3_xxs(q, y, N);
            } else {
                pare_iq_quant_iq3_s(x, q, N, im ? w : NULL);
                pare_iq_dequant_iq3_s(q, y, N);
            }
            double e = 0, s = 0;
            for (int i = 0; i < N; i++) {
                e += (double)(x[i] - y[i]) * (x[i] - y[i]);
                s += (double)x[i] * x[i];
            }
            double rel = sqrt(e / s), tol = t == 0 ? IQ3_XXS_MAX_REL_RMSE : IQ3_S_MAX_REL_RMSE;
            printf("  %s%s: relative RMS error %.4f (bound %.2f)\n", t == 0 ? "iq3_xxs" : "iq3_s",
                   im ? " imatrix" : "", rel, tol);
            CHECK(rel < tol);
        }
}

/* All-zero input gives all-zero blocks; and IQ3_S keeps ggml's quirk that an all-zero group
 * of 32 does not advance the index and sign slots, so the later groups are stored one slot
 * early and the last slot stays empty (their qh bits and scales stay in place). */
static void test_iq3_zero_groups(void) {
    static float x[256];
    static uint8_t zero[110];
    pare_block_iq3_xxs a;
    pare_block_iq3_s b, c;
    memset(&a, 0xff, sizeof a);
    memset(&b, 0xff, sizeof b);
    pare_iq_quant_iq3_xxs(x, &a, 256, NULL);
    pare_iq_quant_iq3_s(x, &b, 256, NULL);
    CHECK(memcmp(&a, zero, sizeof a) == 0 && memcmp(&b, zero, sizeof b) == 0);

    fill_gauss(x, 256, 3);
    pare_iq_quant_iq3_s(x, &c, 256, NULL); /* no zero group: every slot used */
    memset(x, 0, 32 * sizeof(float));        /* group 0 zero */
    pare_iq_quant_iq3_s(x, &b, 256, NULL);
    CHECK(memcmp(b.qs + 56, zero, 8) == 0 && memcmp(b.signs + 28, zero, 4) == 0);
    CHECK(memcmp(b.signs, c.signs + 4, 28) == 0); /* signs do not depend on the search */
    CHECK((b.scales[0] & 0xf) == 0 && b.qh[0] == 0);
}

/* ------------------------------------------------------------------ golden files */

/* Dequantizes every NAME.q / NAME.q_im of one golden file and compares with NAME.deq /
 * NAME.deq_im bit for bit. */
static void golden_one(size_t k) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/quant-%s.gguf", IQ_TYPES[k].name);
    const char *path = th_shared(rel);
    if (!path) return;
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    if (!m) return;
    const char *gt = pare_meta_get_str(&m->meta, "golden.type");
    CHECK_MSG(gt && strcmp(gt, IQ_TYPES[k].name) == 0, "golden.type %s", gt ? gt : "(none)");
    int n_cmp = 0, n_plain = 0, n_bad_tensors = 0;
    int64_t n_values = 0, n_diff = 0;
    double max_diff = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *q = &m->tensors[i];
        const char *dot = strrchr(q->name, '.');
        if (!dot || (strcmp(dot, ".q") != 0 && strcmp(dot, ".q_im") != 0)) continue;
        char want[96];
        snprintf(want, sizeof want, "%.*s.deq%s", (int)(dot - q->name), q->name,
                 strcmp(dot, ".q_im") == 0 ? "_im" : "");
        const pare_tensor *ref = pare_model_find(m, want);
        CHECK_MSG(ref != NULL, "%s: no %s", q->name, want);
        CHECK_MSG(q->type == IQ_TYPES[k].type, "%s has type %d", q->name, q->type);
        if (!ref || q->type != IQ_TYPES[k].type || ref->type != PARE_TYPE_F32) continue;
        int64_t n = pare_tensor_nelements(q);
        CHECK(n == pare_tensor_nelements(ref) && n % PARE_IQ_QK == 0);
        if (n != pare_tensor_nelements(ref) || n % PARE_IQ_QK) continue;
        float *y = malloc((size_t)n * sizeof *y);
        IQ_TYPES[k].fn(q->data, y, n);
        const float *r = ref->data;
        int64_t bad = 0;
        for (int64_t j = 0; j < n; j++) {
            if (memcmp(&y[j], &r[j], sizeof(float)) != 0) {
                bad++;
                double dd = fabs((double)y[j] - (double)r[j]);
                if (dd > max_diff || isnan(dd)) max_diff = dd;
            }
        }
        if (bad) {
            n_bad_tensors++;
            fprintf(stderr, "  %s: %" PRId64 " of %" PRId64 " values differ\n", q->name, bad, n);
        }
        n_diff += bad, n_values += n, n_cmp++;
        n_plain += strcmp(dot, ".q") == 0;
        free(y);
    }
    /* ten inputs; types that need an imatrix have no plain .q tensors */
    CHECK_MSG(n_cmp == (IQ_TYPES[k].needs_imatrix ? 10 : 20), "%d tensors compared", n_cmp);
    CHECK(n_bad_tensors == 0 && n_diff == 0);
    printf("  %-8s %2d tensors (%d without imatrix), %" PRId64 " values, %" PRId64
           " not bit-identical, largest difference %g\n",
           IQ_TYPES[k].name, n_cmp, n_plain, n_values, n_diff, max_diff);
    pare_model_free(m);
}

static void test_golden_iq2_xxs(void) { golden_one(0); }
static void test_golden_iq2_xs(void) { golden_one(1); }
static void test_golden_iq2_s(void) { golden_one(2); }
static void test_golden_iq3_xxs(void) { golden_one(3); }
static void test_golden_iq3_s(void) { golden_one(4); }
static void test_golden_iq1_s(void) { golden_one(5); }
static void test_golden_iq1_m(void) { golden_one(6); }

int main(void) {
    TH_RUN(test_grid_tables);
    TH_RUN(test_iq2_xxs_block);
    TH_RUN(test_iq2_xs_s_iq3_xxs_blocks);
    TH_RUN(test_iq3_s_block);
    TH_RUN(test_iq1_blocks);
    TH_RUN(test_iq3_maps);
    TH_RUN(test_iq3_quantize_roundtrip);
    TH_RUN(test_iq3_zero_groups);
    TH_RUN(test_golden_iq2_xxs);
    TH_RUN(test_golden_iq2_xs);
    TH_RUN(test_golden_iq2_s);
    TH_RUN(test_golden_iq3_xxs);
    TH_RUN(test_golden_iq3_s);
    TH_RUN(test_golden_iq1_s);
    TH_RUN(test_golden_iq1_m);
    return th_done();
}
