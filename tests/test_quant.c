/* tests/test_quant.c - quant/: golden vectors from ggml, fast paths against the scalar
 * references, f16/bf16 conversions, threading, errors, tensor conversion. */
#include "core/core.h"
#include "quant/quant.h"
#include "core/isa.h"
#include "quant/quant_impl.h"
#include "th.h"

#include <float.h>

/* pare's error may exceed ggml's by this factor at most. */
#define ERR_RATIO_TOL 1.001

/* ------------------------------------------------------------------------ tiny GGUF reader
 * Enough of GGUF v3 for the golden files (see ../shared/FACTS.md): header, metadata skipped
 * (general.alignment kept), tensor infos, aligned data section. Bounds are checked. */

typedef struct {
    char name[64];
    int type;
    int64_t ne[4];
    const uint8_t *data;
    uint64_t n_bytes;
} gt_tensor;

typedef struct {
    pare_map *map;
    gt_tensor *t;
    size_t n;
} gt_file;

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} gt_cur;

static uint64_t gt_u(gt_cur *c, int size) {
    if (c->bad || (size_t)(c->end - c->p) < (size_t)size) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, c->p, (size_t)size);
    c->p += size;
    return v;
}

static void gt_skip(gt_cur *c, uint64_t n) {
    if (c->bad || (uint64_t)(c->end - c->p) < n)
        c->bad = true;
    else
        c->p += n;
}

static void gt_skip_value(gt_cur *c, uint32_t type, uint32_t *u32_out) {
    static const int sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
        gt_skip(c, gt_u(c, 8));
    } else if (type == 9) {
        uint32_t et = (uint32_t)gt_u(c, 4);
        uint64_t n = gt_u(c, 8);
        for (uint64_t i = 0; i < n && !c->bad; i++) gt_skip_value(c, et, NULL);
    } else if (type < 13) {
        uint64_t v = gt_u(c, sizes[type]);
        if (u32_out && type == 4) *u32_out = (uint32_t)v;
    } else {
        c->bad = true;
    }
}

static void gt_close(gt_file *f) {
    pare_map_free(f->map);
    free(f->t);
    memset(f, 0, sizeof *f);
}

static bool gt_open(const char *path, gt_file *f) {
    memset(f, 0, sizeof *f);
    pare_err err = {0};
    if (pare_map_open(path, &f->map, &err) != PARE_OK) {
        fprintf(stderr, "  %s\n", err.msg);
        return false;
    }
    gt_cur c = {f->map->data, f->map->data + f->map->size, false};
    if (gt_u(&c, 4) != 0x46554747u || gt_u(&c, 4) != 3) goto bad;
    uint64_t nt = gt_u(&c, 8), nkv = gt_u(&c, 8);
    uint32_t align = 32;
    for (uint64_t i = 0; i < nkv && !c.bad; i++) {
        uint64_t kl = gt_u(&c, 8);
        bool is_align = kl == 17 && (size_t)(c.end - c.p) >= 17 && memcmp(c.p, "general.alignment", 17) == 0;
        gt_skip(&c, kl);
        uint32_t type = (uint32_t)gt_u(&c, 4);
        gt_skip_value(&c, type, is_align ? &align : NULL);
    }
    if (c.bad || nt > f->map->size / 24 || align == 0) goto bad;
    f->t = calloc(nt ? nt : 1, sizeof *f->t);
    f->n = nt;
    uint64_t *offs = calloc(nt ? nt : 1, 8);
    for (uint64_t i = 0; i < nt && !c.bad; i++) {
        uint64_t nl = gt_u(&c, 8);
        if (nl > 63 || (uint64_t)(c.end - c.p) < nl) {
            c.bad = true;
            break;
        }
        memcpy(f->t[i].name, c.p, nl);
        c.p += nl;
        uint32_t nd = (uint32_t)gt_u(&c, 4);
        if (nd > 4) c.bad = true;
        for (int d = 0; d < 4; d++) f->t[i].ne[d] = d < (int)nd ? (int64_t)gt_u(&c, 8) : 1;
        f->t[i].type = (int)gt_u(&c, 4);
        offs[i] = gt_u(&c, 8);
    }
    uint64_t data_off = ((uint64_t)(c.p - f->map->data) + align - 1) / align * align;
    for (uint64_t i = 0; i < nt && !c.bad; i++) {
        pare_err e2 = {0};
        uint64_t nb = 0;
        if (pare_tensor_nbytes(f->t[i].type, 4, f->t[i].ne, &nb, &e2) != PARE_OK ||
            data_off + offs[i] + nb > f->map->size) {
            c.bad = true;
            break;
        }
        f->t[i].data = f->map->data + data_off + offs[i];
        f->t[i].n_bytes = nb;
    }
    free(offs);
    if (c.bad) goto bad;
    return true;
bad:
    fprintf(stderr, "  %s: not a GGUF file this reader understands\n", path);
    gt_close(f);
    return false;
}

static const gt_tensor *gt_find(const gt_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

static const char *const input_names[] = {"gauss", "student_t3", "uniform",     "outliers", "zero_rows",
                                          "const_rows", "tiny",     "mixed_scale", "large",    "sparse50"};
#define N_INPUTS (sizeof input_names / sizeof input_names[0])

static const pare_type my_types[] = {
    PARE_TYPE_F16,  PARE_TYPE_BF16, PARE_TYPE_Q4_0, PARE_TYPE_Q4_1,   PARE_TYPE_Q5_0,   PARE_TYPE_Q5_1,
    PARE_TYPE_Q8_0, PARE_TYPE_Q2_K, PARE_TYPE_Q3_K, PARE_TYPE_Q4_K,   PARE_TYPE_Q5_K,   PARE_TYPE_Q6_K,
    PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_XS, PARE_TYPE_TQ1_0, PARE_TYPE_TQ2_0, PARE_TYPE_IQ3_XXS, PARE_TYPE_IQ3_S,
    PARE_TYPE_IQ1_S, PARE_TYPE_IQ1_M, PARE_TYPE_IQ2_XXS, PARE_TYPE_IQ2_XS, PARE_TYPE_IQ2_S};
#define N_MY_TYPES (sizeof my_types / sizeof my_types[0])

static bool open_golden(pare_type t, gt_file *f) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/quant-%s.gguf", pare_type_name(t));
    const char *p = th_shared(rel);
    return p && gt_open(p, f);
}

/* Number of 32-bit words that differ. */
static int64_t bits_differ(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

/* ------------------------------------------------------------------------ golden: dequantize */

static void test_golden_dequantize(void) {
    int64_t checked = 0, bad_fast = 0, bad_ref = 0;
    for (size_t ti = 0; ti < N_MY_TYPES; ti++) {
        pare_type t = my_types[ti];
        gt_file f;
        if (!open_golden(t, &f)) return;
        for (size_t i = 0; i < N_INPUTS; i++) {
            for (int im = 0; im < 2; im++) {
                char qn[64], dn[64];
                snprintf(qn, sizeof qn, "%s.q%s", input_names[i], im ? "_im" : "");
                snprintf(dn, sizeof dn, "%s.deq%s", input_names[i], im ? "_im" : "");
                const gt_tensor *q = gt_find(&f, qn), *dq = gt_find(&f, dn);
                if (!q) continue;
                CHECK_MSG(dq && q->type == (int)t && dq->type == PARE_TYPE_F32, "%s %s", pare_type_name(t), qn);
                if (!dq || q->type != (int)t) continue;
                int64_t n = q->ne[0] * q->ne[1], rows = q->ne[1];
                float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
                memcpy(want, dq->data, (size_t)n * 4);
                pare_err err = {0};
                CHECK_OK(pare_dequantize(t, q->data, a, rows, q->ne[0], 2, &err), &err);
                const pare_quant_traits *ref = pare_quant_ref_get(t);
                size_t rs = pare_type_row_size(t, q->ne[0]);
                for (int64_t r = 0; r < rows; r++) ref->dequantize(q->data + rs * r, b + q->ne[0] * r, q->ne[0]);
                int64_t df = bits_differ(a, want, n), dr = bits_differ(b, want, n);
                CHECK_MSG(df == 0 && dr == 0, "%s %s: %lld (fast) / %lld (ref) values differ from ggml",
                          pare_type_name(t), qn, (long long)df, (long long)dr);
                bad_fast += df;
                bad_ref += dr;
                checked += n;
                free(a);
                free(b);
                free(want);
            }
        }
        gt_close(&f);
    }
    printf("  dequantize: %lld values checked, %lld differ (fast), %lld differ (ref)\n", (long long)checked,
           (long long)bad_fast, (long long)bad_ref);
    CHECK(checked > 0);
}

/* ------------------------------------------------------------------------ golden: quantize */

/* Sum of w[col] * (x - y)^2 over a rows x cols matrix (w NULL: unweighted). */
static double sq_err(const float *x, const float *y, int64_t rows, int64_t cols, const float *w) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)x[r * cols + c] - (double)y[r * cols + c];
            s += (w ? w[c] : 1.0) * d * d;
        }
    return s;
}

typedef struct {
    int compared, identical, ggml_nan;
    double worst_ratio;
} golden_stats;

/* Quantizes one input one way (im = with importance weights) and compares with ggml. */
static void golden_one(pare_type t, const gt_file *f, const gt_file *in, size_t i, int im, golden_stats *st) {
    char name[64], qn[64], dn[64];
    snprintf(name, sizeof name, "in.%s", input_names[i]);
    snprintf(qn, sizeof qn, "%s.q%s", input_names[i], im ? "_im" : "");
    snprintf(dn, sizeof dn, "%s.deq%s", input_names[i], im ? "_im" : "");
    const gt_tensor *x = gt_find(in, name), *q = gt_find(f, qn), *dq = gt_find(f, dn);
    snprintf(name, sizeof name, "imatrix.%s", input_names[i]);
    const gt_tensor *imt = gt_find(in, name);
    if (!q || !dq) return;
    CHECK_MSG(x && imt && x->ne[0] == q->ne[0] && x->ne[1] == q->ne[1], "input %s missing or mis-shaped",
              input_names[i]);
    if (!x || !imt || x->ne[0] != q->ne[0] || x->ne[1] != q->ne[1]) return;
    int64_t cols = x->ne[0], rows = x->ne[1], n = cols * rows;
    const float *w = im ? (const float *)(const void *)imt->data : NULL;
    size_t qbytes = pare_type_row_size(t, cols) * (size_t)rows;
    uint8_t *mine = malloc(qbytes);
    float *back = malloc((size_t)n * 4), *xin = malloc((size_t)n * 4), *gdeq = malloc((size_t)n * 4);
    memcpy(xin, x->data, (size_t)n * 4);
    memcpy(gdeq, dq->data, (size_t)n * 4);
    pare_err err = {0};
    CHECK_OK(pare_quantize(t, xin, mine, rows, cols, w, 2, &err), &err);
    CHECK_OK(pare_dequantize(t, mine, back, rows, cols, 2, &err), &err);
    double e_pare = sq_err(xin, back, rows, cols, w), e_ggml = sq_err(xin, gdeq, rows, cols, w);
    double ratio = e_ggml > 0 ? e_pare / e_ggml : (e_pare > 0 ? INFINITY : 1.0);
    bool same = q->n_bytes == qbytes && memcmp(q->data, mine, qbytes) == 0;
    st->compared++;
    st->identical += same;
    if (isnan(e_ggml)) {
        /* ggml's imatrix K-quants divide 0/0 when every weight underflows (|x| ~ 1e-30:
         * x^2 is 0 in float) and store NaN scales; pare keeps the block finite instead. */
        CHECK_MSG(isfinite(e_pare), "%s %s: pare's result is not finite either", pare_type_name(t), qn);
        st->ggml_nan++;
        free(mine);
        free(back);
        free(xin);
        free(gdeq);
        return;
    }
    CHECK_MSG(e_pare <= e_ggml * ERR_RATIO_TOL, "%s %s: error %.6g vs ggml %.6g (ratio %.6f)", pare_type_name(t),
              qn, e_pare, e_ggml, ratio);
    if (ratio > st->worst_ratio) st->worst_ratio = ratio;
    if (!same && getenv("QUANT_VERBOSE")) printf("    %s %s differs from ggml (ratio %.6f)\n", pare_type_name(t), qn, ratio);
    free(mine);
    free(back);
    free(xin);
    free(gdeq);
}

static void test_golden_quantize(void) {
    const char *inp = th_shared("golden/quant-inputs.gguf");
    gt_file in;
    if (!inp || !gt_open(inp, &in)) return;
    int total = 0, total_same = 0, total_nan = 0;
    for (size_t ti = 0; ti < N_MY_TYPES; ti++) {
        pare_type t = my_types[ti];
        gt_file f;
        if (!open_golden(t, &f)) break;
        golden_stats st[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
        for (size_t i = 0; i < N_INPUTS; i++)
            for (int im = 0; im < 2; im++) golden_one(t, &f, &in, i, im, &st[im]);
        printf("  %-7s plain: %2d/%2d bit-identical to ggml, worst error ratio %.6f;  imatrix: %2d/%2d, worst %.6f%s\n",
               pare_type_name(t), st[0].identical, st[0].compared, st[0].worst_ratio, st[1].identical,
               st[1].compared, st[1].worst_ratio, st[1].ggml_nan ? " (+1 where ggml gave NaN)" : "");
        CHECK(st[0].ggml_nan == 0 && st[1].ggml_nan <= 1);
        total_nan += st[1].ggml_nan;
        /* types that need an imatrix have only imatrix golden data */
        const pare_quant_traits *tr = pare_quant_get(t);
        CHECK_MSG((st[0].compared > 0 || (tr && tr->needs_imatrix)) && st[1].compared > 0, "%s: no golden tensors",
                  pare_type_name(t));
        total += st[0].compared + st[1].compared;
        total_same += st[0].identical + st[1].identical;
        gt_close(&f);
    }
    printf("  quantize: %d of %d golden tensors bit-identical to ggml; %d where ggml's output is NaN\n", total_same,
           total, total_nan);
    gt_close(&in);
}

/* ------------------------------------------------------------------------ fast == reference */

/* Deterministic test data: several distributions, zero and constant blocks, outliers. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static float rng_unit(uint64_t *s) { return (float)((rng_next(s) >> 40) * 0x1p-24); }
static float rng_gauss(uint64_t *s) {
    float u = rng_unit(s) + 1e-7f, v = rng_unit(s);
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static void fill_data(float *x, int64_t n, int kind, uint64_t *s) {
    for (int64_t i = 0; i < n; i++) {
        float g = rng_gauss(s);
        switch (kind % 6) {
        case 0: x[i] = g; break;
        case 1: x[i] = g * 1e-3f + (i % 97 == 0 ? 0.5f : 0.f); break; /* outliers */
        case 2: x[i] = (i / 256) % 3 == 0 ? 0.f : g; break;          /* zero super-blocks */
        case 3: x[i] = (i / 32) % 2 ? 0.25f : -g * g; break;          /* constant / one-signed */
        case 4: x[i] = rng_unit(s) * 8 - 2; break;
        default: x[i] = (i % 3 == 0) ? 0.f : g * 100.f; break;
        }
    }
}

static void test_fast_matches_reference(void) {
    /* 1280 columns: rows of K types have a pair of super-blocks (16-lane kernels) and an odd
     * one out (8-lane kernels). */
    const int64_t rows = 6, cols = 1280, n = rows * cols;
    float *x = malloc((size_t)n * 4), *w = malloc((size_t)cols * 4), *da = malloc((size_t)n * 4),
          *db = malloc((size_t)n * 4);
    uint8_t *qa = malloc((size_t)n * 4), *qb = malloc((size_t)n * 4);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int64_t worst_q = 0, worst_d = 0, cases = 0;
    for (pare_type t = 0; t < PARE_TYPE_GGML_COUNT; t++) {
        const pare_quant_traits *fa = pare_quant_get(t), *re = pare_quant_ref_get(t);
        if (!fa || !fa->quantize || !fa->dequantize) continue;
        size_t rs = pare_type_row_size(t, cols);
        for (int kind = 0; kind < 12; kind++) {
            fill_data(x, n, kind, &s);
            for (int64_t c = 0; c < cols; c++) w[c] = rng_unit(&s) * rng_unit(&s) * 4;
            const float *imx = kind >= 6 ? w : NULL;
            memset(qa, 0, (size_t)n * 4);
            memset(qb, 0, (size_t)n * 4);
            for (int64_t r = 0; r < rows; r++) {
                fa->quantize(x + r * cols, qa + r * rs, cols, imx);
                re->quantize(x + r * cols, qb + r * rs, cols, imx);
            }
            int64_t dq = 0;
            for (size_t k = 0; k < rs * rows; k++) dq += qa[k] != qb[k];
            for (int64_t r = 0; r < rows; r++) {
                fa->dequantize(qb + r * rs, da + r * cols, cols);
                re->dequantize(qb + r * rs, db + r * cols, cols);
            }
            int64_t dd = bits_differ(da, db, n);
            CHECK_MSG(dq == 0 && dd == 0, "%s data kind %d%s: %lld bytes / %lld values differ", pare_type_name(t),
                      kind, imx ? " (imatrix)" : "", (long long)dq, (long long)dd);
            worst_q = dq > worst_q ? dq : worst_q;
            worst_d = dd > worst_d ? dd : worst_d;
            cases++;
        }
    }
    printf("  fast vs reference: %lld cases, most differing bytes %lld, values %lld (simd %s)\n", (long long)cases,
           (long long)worst_q, (long long)worst_d, pare_qsimd_table() ? pare_isa_name(pare_isa_active()) : "off");
    free(x);
    free(w);
    free(da);
    free(db);
    free(qa);
    free(qb);
}


/* The i-quant fast paths (quant/q_simd.c) against their references on hostile rows: each
 * 32-value group is drawn from its own kind (zeros, huge and subnormal magnitudes, NaN and
 * infinities, integers that put the IQ4 trial values exactly on the midpoints between
 * levels, one-hot, one-signed), with and without importance weights (some of them zero). */
static void fill_hostile_group(float *x, int kind, uint64_t *s) {
    float big = rng_unit(s) < 0.5f ? 1e30f : FLT_MAX / 4;
    for (int j = 0; j < 32; j++) {
        float g = rng_gauss(s);
        switch (kind) {
        case 0: x[j] = 0; break;
        case 1: x[j] = g * big; break;
        case 2: x[j] = g * 1e-40f; break; /* subnormal */
        case 3: x[j] = g * 1e-16f; break; /* about QGROUP_EPS */
        case 4: x[j] = (float)((int)(rng_unit(s) * 255) - 127); break;
        case 5: x[j] = (float)((int)(rng_unit(s) * 509) - 254) * 0.5f; break;
        case 6: x[j] = j == 5 ? g : 0; break;
        case 7: x[j] = fabsf(g); break;
        case 8: x[j] = j == 3 ? NAN : g; break;
        case 9: x[j] = j == 7 ? (g < 0 ? -INFINITY : INFINITY) : g; break;
        case 10: x[j] = j % 5 ? g : -g * 1e6f; break;
        default: x[j] = g; break;
        }
    }
    /* the integer kinds: a group maximum of +-127 makes the first trial's scale exactly 1 */
    if (kind == 4 || kind == 5) x[(int)(rng_unit(s) * 32) & 31] = rng_unit(s) < 0.5f ? 127.f : -127.f;
}

static void test_iq_fast_hostile(void) {
    const int64_t rows = 48, cols = 1024, n = rows * cols;
    float *x = malloc((size_t)n * 4), *w = malloc((size_t)n * 4);
    uint8_t *qa = malloc((size_t)n * 2), *qb = malloc((size_t)n * 2);
    uint64_t s = 20261207;
    char done[256] = "";
    int64_t bad = 0, rows_done = 0;
    for (pare_type t = 0; t < PARE_TYPE_GGML_COUNT; t++) {
        const pare_quant_traits *fa = pare_quant_get(t), *re = pare_quant_ref_get(t);
        if (!fa || !re || !fa->quantize || fa->quantize == re->quantize) continue;
        const char *name = pare_type_name(t);
        if (strncmp(name, "iq", 2) != 0) continue;
        snprintf(done + strlen(done), sizeof done - strlen(done), " %s", name);
        size_t rs = pare_type_row_size(t, cols);
        for (int im = 0; im < 2; im++) {
            for (int64_t g = 0; g < n / 32; g++) fill_hostile_group(x + 32 * g, (int)(rng_unit(&s) * 13), &s);
            for (int64_t i = 0; i < n; i++) w[i] = rng_unit(&s) < 0.05f ? 0.f : rng_unit(&s) * 3;
            for (int64_t r = 0; r < rows; r++) {
                const float *imx = im ? w + cols * r : NULL;
                fa->quantize(x + cols * r, qa + rs * r, cols, imx);
                re->quantize(x + cols * r, qb + rs * r, cols, imx);
                int row_bad = memcmp(qa + rs * r, qb + rs * r, rs) != 0;
                CHECK_MSG(!row_bad, "%s row %lld%s differs from the reference", name, (long long)r,
                          im ? " (imatrix)" : "");
                bad += row_bad;
                rows_done++;
            }
        }
    }
    printf("  i-quant fast paths vs reference (%s):%s, %lld hostile rows, %lld differ\n",
           pare_isa_name(pare_isa_active()), done[0] ? done : " none at this level", (long long)rows_done,
           (long long)bad);
    free(x);
    free(w);
    free(qa);
    free(qb);
}

/* The claim behind the IQ4 fast path's level search: with the levels v, the reference's
 * comparison x - v[k-1] < v[k] - x is false at the midpoint m and true at the float just
 * below it (it is monotone in x, so exactly x < m). */
static void test_iq4_midpoints(void) {
    const int8_t *v = pare_iq4nl_values;
    for (int k = 1; k < 16; k++) {
        float a = v[k - 1], b = v[k], m = (a + b) * 0.5f, below = nextafterf(m, -INFINITY);
        CHECK_MSG(!(m - a < b - m) && below - a < b - below, "levels %d, %d: midpoint %g is not the boundary",
                  v[k - 1], v[k], (double)m);
    }
}

/* The K-quant search kernels on hostile groups (NaN, infinities, huge and subnormal values,
 * constant groups): the fast kernels must still agree with the reference bit for bit. */
static void test_search_kernels_hostile(void) {
    const pare_qkx2_batch_fn kx2 = pare_qsimd_kx2();
    const pare_qx_batch_fn qx = pare_qsimd_qx();
    if (!kx2 || !qx) {
        printf("  kernels at level %s have no SIMD search: nothing to compare\n", pare_isa_name(pare_isa_active()));
        return;
    }
    enum { NSUB = 16, N = 32 };
    float x[NSUB * N], w[NSUB * N], sa[NSUB], sb[NSUB], ma[NSUB], mb[NSUB];
    uint8_t La[NSUB * N], Lb[NSUB * N];
    int8_t Ka[NSUB * N], Kb[NSUB * N];
    uint64_t s = 4242;
    int bad = 0, cases = 0;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < NSUB * N; i++) {
            float g = rng_gauss(&s);
            int k = i / N;
            switch ((k + round) % 8) {
            case 0: x[i] = g; break;
            case 1: x[i] = i % N == 3 ? NAN : g; break;
            case 2: x[i] = i % N == 5 ? INFINITY : g; break;
            case 3: x[i] = g * 1e30f; break;
            case 4: x[i] = g * 1e-40f; break; /* subnormal */
            case 5: x[i] = 7.f; break;
            case 6: x[i] = i % N == 0 ? -3e38f : g; break;
            default: x[i] = -fabsf(g) - 1.f; break; /* all negative: max < 0 */
            }
            w[i] = round % 2 ? rng_unit(&s) : fabsf(x[i]);
        }
        const int n = round % 3 == 0 ? 16 : 32, nmax = round % 4 == 0 ? 3 : round % 4 == 1 ? 15 : 31;
        /* 16 sub-blocks take the widest kernel, 8 the AVX2 one */
        for (int nsub = NSUB; nsub >= 8; nsub /= 2) {
            memset(sa, 0, sizeof sa), memset(sb, 0, sizeof sb), memset(ma, 0, sizeof ma), memset(mb, 0, sizeof mb);
            pare_qref_qkx2_batch(nsub, n, nmax, x, w, -1.f, 0.1f, 20, round % 5 == 0, La, sa, ma);
            kx2(nsub, n, nmax, x, w, -1.f, 0.1f, 20, round % 5 == 0, Lb, sb, mb);
            bad += memcmp(La, Lb, (size_t)nsub * n) != 0 || memcmp(sa, sb, sizeof sa) != 0 ||
                   memcmp(ma, mb, sizeof ma) != 0;
            pare_qref_qx_batch(nsub, 16, 32, x, round % 2 ? w : NULL, Ka, sa);
            qx(nsub, 16, 32, x, round % 2 ? w : NULL, Kb, sb);
            bad += memcmp(Ka, Kb, (size_t)nsub * 16) != 0 || memcmp(sa, sb, sizeof sa) != 0;
            cases += 2;
        }
    }
    CHECK_MSG(bad == 0, "%d of %d hostile search batches differ", bad, cases);
    printf("  hostile search batches: %d, %d differ\n", cases, bad);
}

/* ------------------------------------------------------------------------ f16 / bf16 */

static void test_half_conversions(void) {
    enum { N = 65536 };
    uint16_t *h = malloc(N * 2), *h2 = malloc(N * 2);
    float *f = malloc(N * 4);
    for (int i = 0; i < N; i++) h[i] = (uint16_t)i;
    const pare_quant_traits *f16 = pare_quant_get(PARE_TYPE_F16), *bf16 = pare_quant_get(PARE_TYPE_BF16);
    int bad = 0;
    f16->dequantize(h, f, N);
    for (int i = 0; i < N; i++) {
        float want = pare_fp16_to_fp32(h[i]);
        bad += memcmp(&want, &f[i], 4) != 0;
    }
    bf16->dequantize(h, f, N);
    for (int i = 0; i < N; i++) {
        float want = pare_bf16_to_fp32(h[i]);
        bad += memcmp(&want, &f[i], 4) != 0;
    }
    CHECK_MSG(bad == 0, "%d halves widen differently from core", bad);
    /* Narrowing: random bit patterns (all classes: NaN, inf, subnormal, ties) and edges. */
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        uint32_t b = (uint32_t)rng_next(&s);
        if (i % 4 == 1) b = (b & 0x80000000u) | (0x33000000u + (b & 0x0fffffffu) % 0x0c000000u); /* f16 range */
        if (i % 4 == 2) b &= 0xffff8000u | (1u << 12);                                     /* near ties */
        memcpy(&f[i], &b, 4);
    }
    const float edges[] = {0.f, -0.f, 65519.f, 65520.f, -65520.f, 0x1p-25f, 0x1.8p-25f, 0x1p-14f, INFINITY, -INFINITY, NAN, FLT_MAX};
    memcpy(f, edges, sizeof edges);
    int bad16 = 0, badbf = 0;
    f16->quantize(f, h, N, NULL);
    bf16->quantize(f, h2, N, NULL);
    for (int i = 0; i < N; i++) {
        bad16 += h[i] != pare_fp32_to_fp16(f[i]);
        badbf += h2[i] != pare_fp32_to_bf16(f[i]);
    }
    CHECK_MSG(bad16 == 0 && badbf == 0, "%d f16 / %d bf16 narrowings differ from core", bad16, badbf);
    printf("  half conversions: %d widenings, %d narrowings each, %d / %d differ\n", 2 * N, N, bad16, badbf);
    free(h);
    free(h2);
    free(f);
}

/* ------------------------------------------------------------------------ threads */

static void test_threads_deterministic(void) {
    const int64_t rows = 37, cols = 2048, n = rows * cols;
    float *x = malloc((size_t)n * 4), *d1 = malloc((size_t)n * 4), *d4 = malloc((size_t)n * 4);
    uint8_t *q1 = malloc((size_t)n * 4), *q4 = malloc((size_t)n * 4);
    uint64_t s = 777;
    fill_data(x, n, 0, &s);
    const pare_type types[] = {PARE_TYPE_Q8_0, PARE_TYPE_Q4_K, PARE_TYPE_Q6_K, PARE_TYPE_IQ4_XS, PARE_TYPE_F16};
    pare_err err = {0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t bytes = pare_type_row_size(types[i], cols) * (size_t)rows;
        CHECK_OK(pare_quantize(types[i], x, q1, rows, cols, NULL, 1, &err), &err);
        CHECK_OK(pare_quantize(types[i], x, q4, rows, cols, NULL, 4, &err), &err);
        CHECK_MSG(memcmp(q1, q4, bytes) == 0, "%s: 1 and 4 threads differ", pare_type_name(types[i]));
        CHECK_OK(pare_dequantize(types[i], q1, d1, rows, cols, 1, &err), &err);
        CHECK_OK(pare_dequantize(types[i], q1, d4, rows, cols, 4, &err), &err);
        CHECK_MSG(bits_differ(d1, d4, n) == 0, "%s: dequantize 1 and 4 threads differ", pare_type_name(types[i]));
    }
    free(x);
    free(d1);
    free(d4);
    free(q1);
    free(q4);
}

/* ------------------------------------------------------------------------ errors, tensors */

static void test_errors(void) {
    float x[512] = {0};
    uint8_t q[1024];
    pare_err err = {0};
    CHECK(pare_quantize(PARE_TYPE_Q4_K, x, q, 1, 100, NULL, 1, &err) == PARE_EUSAGE);
    CHECK(strstr(err.msg, "multiple") != NULL);
    CHECK(pare_quantize(PARE_TYPE_IQ2_XXS, x, q, 1, 256, NULL, 1, &err) == PARE_EUNSUPPORTED);
    CHECK(pare_quantize(PARE_TYPE_I32, x, q, 1, 256, NULL, 1, &err) == PARE_EUNSUPPORTED);
    CHECK(pare_dequantize(PARE_TYPE_Q8_0, q, x, 1, 0, 1, &err) == PARE_EUSAGE);
    CHECK(pare_quant_get(PARE_TYPE_IQ2_XXS) && pare_quant_get(PARE_TYPE_IQ2_XXS)->needs_imatrix);
    CHECK(!pare_quant_get(PARE_TYPE_Q4_K)->needs_imatrix);
    CHECK(pare_quant_get((pare_type)4) == NULL && pare_quant_get(PARE_TYPE_U8) == NULL);
    CHECK(pare_quant_can_quantize(PARE_TYPE_TQ1_0) && pare_quant_can_dequantize(PARE_TYPE_Q8_K));
    CHECK(pare_quantize(PARE_TYPE_Q8_0, x, q, 0, 32, NULL, 4, &err) == PARE_OK); /* no rows: nothing */
}

/* The traits table against core's type table and the block structs: the same bytes per block
 * in both (the table takes sizeof of quant/blocks.h's struct, core states the number), the
 * fast table at this level agreeing with the reference table in everything but the kernels,
 * and the activation types of ggml-cpu's dot products. */
static void test_traits_table(void) {
    int rows = 0;
    for (int i = 0; i < PARE_TYPE_GGML_COUNT; i++) {
        const pare_quant_traits *re = pare_quant_ref_get((pare_type)i), *fa = pare_quant_get((pare_type)i);
        CHECK((re == NULL) == (fa == NULL));
        if (!re || !fa) continue;
        const pare_type_info *ti = pare_type_get(i);
        CHECK_MSG(re->block_bytes == ti->type_size, "%s: %zu bytes per block in the traits, %zu in core", ti->name,
                  re->block_bytes, ti->type_size);
        CHECK(fa->block_bytes == re->block_bytes && fa->vec_dot_type == re->vec_dot_type &&
              fa->needs_imatrix == re->needs_imatrix && fa->type == re->type);
        CHECK(pare_type_get(re->vec_dot_type) != NULL);
        rows++;
    }
    CHECK(rows >= 25);
    CHECK(pare_quant_get(PARE_TYPE_Q4_0)->vec_dot_type == PARE_TYPE_Q8_0);
    CHECK(pare_quant_get(PARE_TYPE_Q5_1)->vec_dot_type == PARE_TYPE_Q8_1);
    CHECK(pare_quant_get(PARE_TYPE_Q4_K)->vec_dot_type == PARE_TYPE_Q8_K);
    CHECK(pare_quant_get(PARE_TYPE_F16)->vec_dot_type == PARE_TYPE_F16);
    CHECK(pare_quant_get(PARE_TYPE_IQ4_NL)->vec_dot_type == PARE_TYPE_Q8_0);
    CHECK(pare_quant_get(PARE_TYPE_IQ4_XS)->vec_dot_type == PARE_TYPE_Q8_K);
    CHECK(sizeof(pare_block_q4_K) == 144 && sizeof(pare_block_iq2_xxs) == 66);
    printf("  %d types: block sizes agree with core, fast and reference rows agree\n", rows);
}

typedef struct {
    const uint8_t *bytes;
    int calls;
} lazy_ctx;

static pare_status lazy_read(const pare_tensor *t, void *dst, pare_err *err) {
    (void)err;
    lazy_ctx *c = t->read_ctx;
    c->calls++;
    memcpy(dst, c->bytes, t->n_bytes);
    return PARE_OK;
}

static void test_tensor_to_f32(void) {
    const int64_t ne[2] = {256, 3};
    float x[768], want[768], got[768];
    uint64_t s = 99;
    fill_data(x, 768, 0, &s);
    uint8_t q[3 * 210];
    pare_err err = {0};
    CHECK_OK(pare_quantize(PARE_TYPE_Q6_K, x, q, 3, 256, NULL, 1, &err), &err);
    CHECK_OK(pare_dequantize(PARE_TYPE_Q6_K, q, want, 3, 256, 1, &err), &err);
    pare_tensor t = {0};
    CHECK_OK(pare_tensor_init(&t, "blk.0.ffn_up.weight", PARE_TYPE_Q6_K, 2, ne, &err), &err);
    t.n_bytes = sizeof q;
    t.data = q;
    memset(got, 0, sizeof got);
    CHECK_OK(pare_tensor_to_f32(&t, got, 2, &err), &err);
    CHECK(bits_differ(got, want, 768) == 0);
    /* Lazy: no data pointer, a reader. */
    lazy_ctx lc = {q, 0};
    t.data = NULL;
    t.read = lazy_read;
    t.read_ctx = &lc;
    memset(got, 0, sizeof got);
    CHECK_OK(pare_tensor_to_f32(&t, got, 2, &err), &err);
    CHECK(lc.calls == 1 && bits_differ(got, want, 768) == 0);
    t.read = NULL;
    t.read_ctx = NULL;
    t.data = q;
    /* Wrong byte count and unreadable types are refused with the tensor's name. */
    t.n_bytes = sizeof q - 1;
    CHECK(pare_tensor_to_f32(&t, got, 1, &err) == PARE_EINPUT);
    CHECK(strstr(err.msg, "blk.0.ffn_up.weight") != NULL);
    t.type = PARE_TYPE_IQ3_S;
    t.n_bytes = 3 * 110;
    pare_status st = pare_tensor_to_f32(&t, got, 1, &err);
    CHECK(st == PARE_OK || st == PARE_EUNSUPPORTED);
    /* Plain types go through core. */
    int32_t ints[4] = {-2, 0, 7, 1 << 20};
    const int64_t ne1[1] = {4};
    pare_tensor ti = {0};
    CHECK_OK(pare_tensor_init(&ti, "ints", PARE_TYPE_I32, 1, ne1, &err), &err);
    ti.data = ints;
    ti.n_bytes = sizeof ints;
    CHECK_OK(pare_tensor_to_f32(&ti, got, 1, &err), &err);
    CHECK(got[0] == -2.f && got[3] == 1048576.f);
    t.data = NULL;
    pare_tensor_clear(&t);
    ti.data = NULL;
    pare_tensor_clear(&ti);
}

/* Q8_K has no golden file: it must round-trip within half a step of each block's scale. */
static void test_q8_K_roundtrip(void) {
    float x[512], y[512];
    uint8_t q[2 * 292];
    uint64_t s = 5;
    fill_data(x, 512, 0, &s);
    pare_err err = {0};
    CHECK_OK(pare_quantize(PARE_TYPE_Q8_K, x, q, 2, 256, NULL, 1, &err), &err);
    CHECK_OK(pare_dequantize(PARE_TYPE_Q8_K, q, y, 2, 256, 1, &err), &err);
    double worst = 0;
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(x[256 * b + i]));
        for (int i = 0; i < 256; i++) {
            double e = fabs((double)x[256 * b + i] - y[256 * b + i]) / (amax / 127.0);
            worst = e > worst ? e : worst;
        }
    }
    printf("  q8_K: largest error %.4f steps\n", worst);
    CHECK(worst <= 0.5 + 1e-4);
}

int main(void) {
    TH_RUN(test_golden_dequantize);
    TH_RUN(test_golden_quantize);
    TH_RUN(test_fast_matches_reference);
    TH_RUN(test_search_kernels_hostile);
    TH_RUN(test_iq_fast_hostile);
    TH_RUN(test_iq4_midpoints);
    TH_RUN(test_half_conversions);
    TH_RUN(test_threads_deterministic);
    TH_RUN(test_errors);
    TH_RUN(test_traits_table);
    TH_RUN(test_tensor_to_f32);
    TH_RUN(test_q8_K_roundtrip);
    return th_done();
}
