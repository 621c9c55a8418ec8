/* lora/merge.c - W' = W + s * B A for every adapter pair, as a pipeline pass. */
#include "lora/lora.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    double rel_change;
} merge_record;

struct pare_lora_merger {
    pare_lora_adapter *const *ad;
    size_t n_ad;
    merge_record *done;
    size_t n_done;
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
    *out = mg;
    return PARE_OK;
}

void pare_lora_merger_free(pare_lora_merger *mg) {
    if (!mg) return;
    for (size_t i = 0; i < mg->n_done; i++) free(mg->done[i].name);
    free(mg->done);
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

/* Rows of W are split between pare's threads, each running a single-threaded sgemm on its
 * block (OpenBLAS's own threads spin between calls and starve the writer). */
typedef struct {
    float *w;
    const pare_lora_pair *p;
    int64_t rows, per;
} delta_job;

static void delta_rows(void *ctx, int64_t job, int thread) {
    (void)thread;
    delta_job *d = ctx;
    const pare_lora_pair *p = d->p;
    int64_t r0 = job * d->per, nr = d->rows - r0 < d->per ? d->rows - r0 : d->per;
    if (!p->transposed) {
        /* W[r0..] (nr x n_in) += s * B[r0..] (nr x r) A (r x n_in) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)p->n_in, (int)p->r, (float)p->scale,
                    p->b + r0 * p->r, (int)p->r, p->a, (int)p->n_in, 1.0f, d->w + r0 * p->n_in, (int)p->n_in);
    } else {
        /* W[r0..] (nr x n_out) += s * A^T[r0..] (nr x r) B^T (r x n_out) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)nr, (int)p->n_out, (int)p->r, (float)p->scale,
                    p->a + r0, (int)p->n_in, p->b, (int)p->r, 1.0f, d->w + r0 * p->n_out, (int)p->n_out);
    }
}

void pare_lora_add_delta(float *w, const pare_lora_pair *p, int n_threads) {
    if (n_threads <= 0) n_threads = pare_default_threads();
    delta_job d = {w, p, p->transposed ? p->n_in : p->n_out, 0};
    int64_t jobs = n_threads * 4;
    d.per = (d.rows + jobs - 1) / jobs;
    if (d.per < 1) d.per = 1;
    pare_parallel_for(n_threads, (d.rows + d.per - 1) / d.per, delta_rows, &d);
}

/* ||s B A||_F^2 = s^2 * sum_ij (A A^T)_ij (B^T B)_ij: r x r Gram matrices, in double. */
static double delta_norm2(const pare_lora_pair *p) {
    int64_t r = p->r;
    double *ga = calloc((size_t)(r * r), sizeof(double)), *gb = calloc((size_t)(r * r), sizeof(double));
    double s = 0;
    if (ga && gb) {
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < r; j++) {
                double x = 0, y = 0;
                for (int64_t k = 0; k < p->n_in; k++) x += (double)p->a[i * p->n_in + k] * p->a[j * p->n_in + k];
                for (int64_t k = 0; k < p->n_out; k++) y += (double)p->b[k * r + i] * p->b[k * r + j];
                ga[i * r + j] = x;
                gb[i * r + j] = y;
            }
        for (int64_t i = 0; i < r * r; i++) s += ga[i] * gb[i];
    }
    free(ga);
    free(gb);
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

pare_status pare_lora_merger_apply(void *ctx, const pare_tensor *t, float *values, int n_threads, pare_err *err) {
    pare_lora_merger *mg = ctx;
    int64_t n = pare_tensor_nelements(t);
    double base2 = norm2(values, n), change2 = 0;
    for (size_t a = 0; a < mg->n_ad; a++) {
        const pare_lora_adapter *ad = mg->ad[a];
        for (size_t i = 0; i < ad->n_fulls; i++) {
            const pare_lora_full *f = &ad->fulls[i];
            if (strcmp(f->target, t->name)) continue;
            FAIL_IF(pare_tensor_nelements(&f->t) != n, PARE_EINPUT, "%s: '%s' does not have the base's shape",
                    ad->path, t->name);
            const float *v = f->t.data;
            for (int64_t k = 0; k < n; k++) {
                double d = (double)v[k] - values[k];
                change2 += d * d;
            }
            memcpy(values, v, (size_t)n * sizeof(float));
        }
        for (size_t i = 0; i < ad->n_pairs; i++) {
            const pare_lora_pair *p = &ad->pairs[i];
            if (strcmp(p->target, t->name)) continue;
            int64_t rows = p->transposed ? p->n_in : p->n_out, cols = p->transposed ? p->n_out : p->n_in;
            FAIL_IF(t->ne[0] != cols || pare_tensor_nrows(t) != rows, PARE_EINPUT,
                    "%s: '%s' is %lld x %lld in the adapter but %lld x %lld in the base", ad->path, t->name,
                    (long long)rows, (long long)cols, (long long)pare_tensor_nrows(t), (long long)t->ne[0]);
            pare_lora_add_delta(values, p, n_threads);
            change2 += delta_norm2(p);
        }
    }
    merge_record *nd = realloc(mg->done, (mg->n_done + 1) * sizeof *nd);
    FAIL_IF(!nd, PARE_ENOMEM, "out of memory");
    mg->done = nd;
    mg->done[mg->n_done].name = strdup(t->name);
    /* With several adapters on one tensor this is the sum of their norms squared: an
     * estimate that ignores their cross terms. */
    mg->done[mg->n_done].rel_change = base2 > 0 ? sqrt(change2 / base2) : 0;
    mg->n_done++;
    return PARE_OK;
}

size_t pare_lora_merger_n_done(const pare_lora_merger *mg) { return mg->n_done; }

void pare_lora_merger_done(const pare_lora_merger *mg, size_t i, const char **name, double *rel_change) {
    *name = mg->done[i].name;
    *rel_change = mg->done[i].rel_change;
}

pare_status pare_lora_check(const pare_lora_adapter *const *ad, size_t n, const pare_model *base, pare_err *err) {
    size_t matched = 0;
    for (size_t a = 0; a < n; a++) {
        for (size_t i = 0; i < ad[a]->n_pairs; i++) {
            const pare_lora_pair *p = &ad[a]->pairs[i];
            const pare_tensor *t = pare_model_find(base, p->target);
            FAIL_IF(!t, PARE_EINPUT, "%s: the base model has no tensor '%s'", ad[a]->path, p->target);
            int64_t rows = p->transposed ? p->n_in : p->n_out, cols = p->transposed ? p->n_out : p->n_in;
            FAIL_IF(t->ne[0] != cols || pare_tensor_nrows(t) != rows, PARE_EINPUT,
                    "%s: '%s' is %lld x %lld in the adapter but %lld x %lld in the base (another base model?)",
                    ad[a]->path, p->target, (long long)rows, (long long)cols, (long long)pare_tensor_nrows(t),
                    (long long)t->ne[0]);
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
