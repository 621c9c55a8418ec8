/* lora/merge.c - W' = W + s * B A for every adapter pair, as a pipeline pass. */
#include "lora/lora.h"

#include <cblas.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    double base2, change2; /* ||W||^2 and ||W' - W||^2, summed over the pieces of rows */
} merge_record;

struct pare_lora_merger {
    pare_lora_adapter *const *ad;
    size_t n_ad;
    merge_record *done;
    size_t n_done;
    pthread_mutex_t mu; /* pieces of rows arrive from several threads */
};

pare_status pare_lora_merger_new(pare_lora_adapter *const *ad, size_t n, pare_lora_merger **out, pare_err *err) {
    /* The products are rank-r updates, small next to the conversion work around them: one
     * BLAS thread, so that OpenBLAS's idle workers do not spin on the cores pare's own
     * threads need. */
    openblas_set_num_threads(1);
    pare_lora_merger *mg = calloc(1, sizeof *mg);
    FAIL_IF(!mg, PARE_ENOMEM, "out of memory");
    mg->ad = ad;
    mg->n_ad = n;
    pthread_mutex_init(&mg->mu, NULL);
    *out = mg;
    return PARE_OK;
}

void pare_lora_merger_free(pare_lora_merger *mg) {
    if (!mg) return;
    for (size_t i = 0; i < mg->n_done; i++) free(mg->done[i].name);
    free(mg->done);
    pthread_mutex_destroy(&mg->mu);
    free(mg);
}

bool pare_lora_merger_wants(void *ctx, const pare_tensor *t) {
    pare_lora_merger *mg = ctx;
    for (size_t a = 0; a < mg->n_ad; a++) {
        for (size_t i = 0; i < mg->ad[a]->n_pairs; i++)
            if (!strcmp(mg->ad[a]->pairs[i].target, t->name)) return true;
        for (size_t i = 0; i < mg->ad[a]->n_fulls; i++)
            if (!strcmp(mg->ad[a]->fulls[i].target, t->name)) return true;
    }
    return false;
}

/* Rows of W are split between pare's threads, each updating its block (rank_update, or a
 * single-threaded sgemm: OpenBLAS's own threads spin between calls and starve the writer). */
typedef struct {
    float *w;
    const pare_lora_pair *p;
    int64_t rows, per;
} delta_job;

#if defined(__AVX512F__)
#include <immintrin.h>
/* w[nr][n] (row stride n) += (s L)[nr][r] R[r][n], all row-major, L with row stride r: the
 * rank-r update of a block of rows. Sixteen values of k at a time: R's sixteen rows for
 * sixteen columns sit in registers while the block's rows stream past, each row summing its
 * sixteen products in eight fma chains; rows in groups of 16 so that R's columns are read
 * from L2 once per group. In the merge-lora bench (rank 16, 1.1B model) this took about 70%
 * of the time OpenBLAS's sgemm did (measured against the same tensors' f16 conversion);
 * with k = r this small, sgemm's packing dominates. Each row's sums do not depend on which
 * rows share a block, so results do not depend on the thread count. */
static void rank_update(float *w, const float *L, int64_t r, const float *R, int64_t n, int64_t nr, float s) {
    for (int64_t k0 = 0; k0 < r; k0 += 16) {
        const int64_t kr = r - k0 < 16 ? r - k0 : 16;
        for (int64_t i0 = 0; i0 < nr; i0 += 16) {
            const int64_t ir = nr - i0 < 16 ? nr - i0 : 16;
            float sl[16][16]; /* s L, zero past kr: the padding adds exact zeros */
            for (int64_t i = 0; i < ir; i++)
                for (int64_t k = 0; k < 16; k++) sl[i][k] = k < kr ? s * L[(i0 + i) * r + k0 + k] : 0.0f;
            for (int64_t j = 0; j < n; j += 16) {
                const __mmask16 m = (__mmask16)(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1);
                __m512 a[16];
#pragma GCC unroll 16
                for (int k = 0; k < 16; k++)
                    a[k] = k < kr ? _mm512_maskz_loadu_ps(m, R + (k0 + k) * n + j) : _mm512_setzero_ps();
                for (int64_t i = 0; i < ir; i++) {
                    /* eight fma chains, k and k + 8, summed pairwise: one chain of sixteen
                     * waited on the fma latency */
                    float *wr = w + (i0 + i) * n + j;
                    __m512 c[8];
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) c[q] = _mm512_mul_ps(_mm512_set1_ps(sl[i][q]), a[q]);
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) c[q] = _mm512_fmadd_ps(_mm512_set1_ps(sl[i][q + 8]), a[q + 8], c[q]);
                    const __m512 d = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c[0], c[1]), _mm512_add_ps(c[2], c[3])),
                                                   _mm512_add_ps(_mm512_add_ps(c[4], c[5]), _mm512_add_ps(c[6], c[7])));
                    _mm512_mask_storeu_ps(wr, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, wr), d));
                }
            }
        }
    }
}
#endif

/* Rows [r0, r0 + nr) of W (given at w) += their rows of s * B A. */
static void delta_block(float *w, const pare_lora_pair *p, int64_t r0, int64_t nr) {
#if defined(__AVX512F__)
    if (!p->transposed) {
        rank_update(w, p->b + r0 * p->r, p->r, p->a, p->n_in, nr, (float)p->scale);
        return;
    }
#endif
    if (!p->transposed) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)p->n_in, (int)p->r, (float)p->scale,
                    p->b + r0 * p->r, (int)p->r, p->a, (int)p->n_in, 1.0f, w, (int)p->n_in);
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)nr, (int)p->n_out, (int)p->r, (float)p->scale,
                    p->a + r0, (int)p->n_in, p->b, (int)p->r, 1.0f, w, (int)p->n_out);
    }
}

static void delta_rows(void *ctx, int64_t job, int thread) {
    (void)thread;
    delta_job *d = ctx;
    const pare_lora_pair *p = d->p;
    int64_t r0 = job * d->per, nr = d->rows - r0 < d->per ? d->rows - r0 : d->per;
    delta_block(d->w + r0 * (p->transposed ? p->n_out : p->n_in), p, r0, nr);
}

void pare_lora_add_delta(float *w, const pare_lora_pair *p, int n_threads) {
    if (n_threads <= 0) n_threads = pare_default_threads();
    delta_job d = {w, p, p->transposed ? p->n_in : p->n_out, 0};
    int64_t jobs = n_threads * 4;
    d.per = (d.rows + jobs - 1) / jobs;
    if (d.per < 1) d.per = 1;
    pare_parallel_for(n_threads, (d.rows + d.per - 1) / d.per, delta_rows, &d);
}

/* ||s B A||_F^2 = s^2 * sum_ij (A A^T)_ij (B^T B)_ij: r x r Gram matrices, in double (BLAS
 * dsyrk: the plain loops took 5% of a whole merge). 0 when out of memory (only a report). */
static double delta_norm2(const pare_lora_pair *p) {
    const int64_t r = p->r, ni = p->n_in, no = p->n_out;
    double *ga = malloc((size_t)(r * r) * sizeof(double)), *gb = malloc((size_t)(r * r) * sizeof(double));
    double *ad = malloc((size_t)(r * ni) * sizeof(double)), *bd = malloc((size_t)(no * r) * sizeof(double));
    double s = 0;
    if (ga && gb && ad && bd) {
        for (int64_t i = 0; i < r * ni; i++) ad[i] = p->a[i];
        for (int64_t i = 0; i < no * r; i++) bd[i] = p->b[i];
        /* A is r x n_in, B is n_out x r, both row-major; the upper triangles are filled */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)r, (int)ni, 1.0, ad, (int)ni, 0.0, ga, (int)r);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)r, (int)no, 1.0, bd, (int)r, 0.0, gb, (int)r);
        for (int64_t i = 0; i < r; i++) {
            s += ga[i * r + i] * gb[i * r + i];
            for (int64_t j = i + 1; j < r; j++) s += 2 * ga[i * r + j] * gb[i * r + j];
        }
    }
    free(ga), free(gb), free(ad), free(bd);
    return p->scale * p->scale * s;
}

/* Sum of squares: float partial sums over short runs (8 independent lanes the compiler can
 * keep in one register), added up in double. */
static double norm2(const float *v, int64_t n) {
    double s = 0;
    int64_t i = 0;
    for (; i + 1024 <= n; i += 1024) {
        float acc[8] = {0};
        for (int k = 0; k < 1024; k += 8)
            for (int l = 0; l < 8; l++) acc[l] += v[i + k + l] * v[i + k + l];
        for (int l = 0; l < 8; l++) s += acc[l];
    }
    for (; i < n; i++) s += (double)v[i] * v[i];
    return s;
}

/* The record of tensor `name` (created on first use); call with mg->mu held. */
static merge_record *record_of(pare_lora_merger *mg, const char *name, pare_err *err) {
    for (size_t i = mg->n_done; i-- > 0;)
        if (!strcmp(mg->done[i].name, name)) return &mg->done[i];
    merge_record *nd = realloc(mg->done, (mg->n_done + 1) * sizeof *nd);
    if (!nd) {
        pare_err_set(err, PARE_ENOMEM, "out of memory");
        return NULL;
    }
    mg->done = nd;
    merge_record *r = &mg->done[mg->n_done];
    *r = (merge_record){strdup(name), 0, 0};
    if (!r->name) {
        pare_err_set(err, PARE_ENOMEM, "out of memory");
        return NULL;
    }
    mg->n_done++;
    return r;
}

/* Whether pair p fits tensor t: (rows x cols) = t's 2-D shape, or for an expert's pair t's
 * [cols, rows, n_expert] with the expert < n_expert. */
static pare_status pair_fits(const pare_lora_adapter *ad, const pare_lora_pair *p, const pare_tensor *t,
                             pare_err *err) {
    const int64_t rows = p->transposed ? p->n_in : p->n_out, cols = p->transposed ? p->n_out : p->n_in;
    if (p->is_expert) {
        FAIL_IF(t->ne[0] != cols || t->ne[1] != rows || t->ne[3] != 1 || p->expert < 0 || p->expert >= t->ne[2],
                PARE_EINPUT,
                "%s: '%s' expert %lld is %lld x %lld in the adapter but the base has %lld experts of %lld x %lld",
                ad->path, t->name, (long long)p->expert, (long long)rows, (long long)cols, (long long)t->ne[2],
                (long long)t->ne[1], (long long)t->ne[0]);
        return PARE_OK;
    }
    FAIL_IF(t->ne[0] != cols || pare_tensor_nrows(t) != rows, PARE_EINPUT,
            "%s: '%s' is %lld x %lld in the adapter but %lld x %lld in the base (another base model?)", ad->path,
            t->name, (long long)rows, (long long)cols, (long long)pare_tensor_nrows(t), (long long)t->ne[0]);
    return PARE_OK;
}

/* Rows [row0, row0 + n_rows) of t, given at values: every adapter's change to them. whole:
 * the call covers the whole tensor (and may use n_threads). */
static pare_status merge_rows(pare_lora_merger *mg, const pare_tensor *t, float *values, int64_t row0,
                              int64_t n_rows, int n_threads, bool whole, pare_err *err) {
    const int64_t ne0 = t->ne[0], n = ne0 * n_rows;
    double base2 = norm2(values, n), change2 = 0;
    for (size_t a = 0; a < mg->n_ad; a++) {
        const pare_lora_adapter *ad = mg->ad[a];
        for (size_t i = 0; i < ad->n_fulls; i++) {
            const pare_lora_full *f = &ad->fulls[i];
            if (strcmp(f->target, t->name)) continue;
            FAIL_IF(pare_tensor_nelements(&f->t) != pare_tensor_nelements(t) || f->t.ne[0] != ne0, PARE_EINPUT,
                    "%s: '%s' does not have the base's shape", ad->path, t->name);
            const float *v = (const float *)f->t.data + row0 * ne0;
            for (int64_t k = 0; k < n; k++) {
                double d = (double)v[k] - values[k];
                change2 += d * d;
            }
            memcpy(values, v, (size_t)n * sizeof(float));
        }
        for (size_t i = 0; i < ad->n_pairs; i++) {
            const pare_lora_pair *p = &ad->pairs[i];
            if (strcmp(p->target, t->name)) continue;
            TRY(pair_fits(ad, p, t, err));
            /* the pair's rows of t: all, or one expert's slice */
            const int64_t rows = p->transposed ? p->n_in : p->n_out, first = p->is_expert ? p->expert * rows : 0;
            const int64_t lo = row0 > first ? row0 : first,
                          hi = row0 + n_rows < first + rows ? row0 + n_rows : first + rows;
            if (lo >= hi) continue;
            if (whole && lo == first && hi == first + rows) pare_lora_add_delta(values + (lo - row0) * ne0, p, n_threads);
            else delta_block(values + (lo - row0) * ne0, p, lo - first, hi - lo);
            /* the norm of the whole change, once per pair (with its first rows) */
            if (lo == first) change2 += delta_norm2(p);
        }
    }
    pthread_mutex_lock(&mg->mu);
    merge_record *r = record_of(mg, t->name, err);
    if (r) r->base2 += base2, r->change2 += change2;
    pthread_mutex_unlock(&mg->mu);
    return r ? PARE_OK : PARE_ENOMEM;
}

pare_status pare_lora_merger_apply(void *ctx, const pare_tensor *t, float *values, int n_threads, pare_err *err) {
    return merge_rows(ctx, t, values, 0, pare_tensor_nrows(t), n_threads, true, err);
}

pare_status pare_lora_merger_apply_rows(void *ctx, const pare_tensor *t, float *values, int64_t row0, int64_t n_rows,
                                        pare_err *err) {
    return merge_rows(ctx, t, values, row0, n_rows, 1, false, err);
}

size_t pare_lora_merger_n_done(const pare_lora_merger *mg) { return mg->n_done; }

void pare_lora_merger_done(const pare_lora_merger *mg, size_t i, const char **name, double *rel_change) {
    *name = mg->done[i].name;
    /* With several adapters on one tensor this is the sum of their norms squared: an
     * estimate that ignores their cross terms. */
    *rel_change = mg->done[i].base2 > 0 ? sqrt(mg->done[i].change2 / mg->done[i].base2) : 0;
}

pare_status pare_lora_check(const pare_lora_adapter *const *ad, size_t n, const pare_model *base, pare_err *err) {
    size_t matched = 0;
    for (size_t a = 0; a < n; a++) {
        for (size_t i = 0; i < ad[a]->n_pairs; i++) {
            const pare_lora_pair *p = &ad[a]->pairs[i];
            const pare_tensor *t = pare_model_find(base, p->target);
            FAIL_IF(!t, PARE_EINPUT, "%s: the base model has no tensor '%s'", ad[a]->path, p->target);
            TRY(pair_fits(ad[a], p, t, err));
            matched++;
        }
        for (size_t i = 0; i < ad[a]->n_fulls; i++) {
            const pare_lora_full *f = &ad[a]->fulls[i];
            const pare_tensor *t = pare_model_find(base, f->target);
            FAIL_IF(!t, PARE_EINPUT, "%s: the base model has no tensor '%s'", ad[a]->path, f->target);
            FAIL_IF(pare_tensor_nelements(t) != pare_tensor_nelements(&f->t) || t->ne[0] != f->t.ne[0], PARE_EINPUT,
                    "%s: '%s' does not have the base's shape", ad[a]->path, f->target);
            matched++;
        }
    }
    FAIL_IF(!matched, PARE_EINPUT, "no adapter tensor matches a tensor of the base model");
    return PARE_OK;
}
