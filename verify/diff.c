/* verify/diff.c - model differences. */
#include "verify/diff.h"

#include "quant/quant.h"
#include "verify/hash.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool ignored(const pare_diff_opts *o, const char *key) {
    for (size_t i = 0; i < o->n_ignore_meta; i++)
        if (fnmatch(o->ignore_meta[i], key, 0) == 0) return true;
    return false;
}

static bool kv_equal(const pare_kv *a, const pare_kv *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case PARE_META_STRING: return a->str.len == b->str.len && memcmp(a->str.s, b->str.s, a->str.len) == 0;
    case PARE_META_F32:
    case PARE_META_F64: return a->v.f64 == b->v.f64 || (isnan(a->v.f64) && isnan(b->v.f64));
    case PARE_META_ARRAY:
        if (a->elem_type != b->elem_type || a->n != b->n) return false;
        if (a->elem_type == PARE_META_STRING) {
            const pare_str *x = a->arr, *y = b->arr;
            for (uint64_t i = 0; i < a->n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].s, y[i].s, x[i].len)) return false;
            return true;
        }
        return a->n == 0 || memcmp(a->arr, b->arr, a->n * pare_meta_type_size(a->elem_type)) == 0;
    default: return a->v.u64 == b->v.u64;
    }
}

static void diff_meta(const pare_model *a, const pare_model *b, const pare_diff_opts *o, FILE *r,
                      pare_diff_result *res) {
    for (size_t i = 0; i < a->meta.n; i++) {
        const pare_kv *ka = &a->meta.kv[i];
        if (ignored(o, ka->key)) continue;
        const pare_kv *kb = pare_meta_get(&b->meta, ka->key);
        if (!kb) {
            res->meta_diffs++;
            if (r) fprintf(r, "meta %s: only in A\n", ka->key);
        } else if (!kv_equal(ka, kb)) {
            res->meta_diffs++;
            if (r) fprintf(r, "meta %s: differs (%s vs %s)\n", ka->key, pare_meta_type_name(ka->type), pare_meta_type_name(kb->type));
        }
    }
    for (size_t i = 0; i < b->meta.n; i++) {
        const pare_kv *kb = &b->meta.kv[i];
        if (ignored(o, kb->key) || pare_meta_get(&a->meta, kb->key)) continue;
        res->meta_diffs++;
        if (r) fprintf(r, "meta %s: only in B\n", kb->key);
    }
}

/* Largest |a - b| over the values of two tensors of the same shape. */
static pare_status value_diff(const pare_tensor *ta, const pare_tensor *tb, int n_threads, double *out, pare_err *err) {
    int64_t n = pare_tensor_nelements(ta);
    float *va = malloc((size_t)n * sizeof(float) + 4), *vb = malloc((size_t)n * sizeof(float) + 4);
    pare_status st = (!va || !vb) ? pare_err_set(err, PARE_ENOMEM, "out of memory comparing '%s'", ta->name) : PARE_OK;
    if (!st) st = pare_tensor_to_f32(ta, va, n_threads, err);
    if (!st) st = pare_tensor_to_f32(tb, vb, n_threads, err);
    double worst = 0;
    for (int64_t i = 0; !st && i < n; i++) {
        double d = fabs((double)va[i] - (double)vb[i]);
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    *out = worst;
    free(va);
    free(vb);
    return st;
}

pare_status pare_diff_models(const pare_model *a, const pare_model *b, const pare_diff_opts *o, FILE *r,
                             pare_diff_result *res, pare_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->skip_meta) diff_meta(a, b, o, r, res);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pare_tensor *ta = &a->tensors[i];
        const pare_tensor *tb = pare_model_find(b, ta->name);
        if (!tb) {
            res->tensor_diffs++;
            if (r) fprintf(r, "tensor %s: only in A\n", ta->name);
            continue;
        }
        bool shape = ta->n_dims == tb->n_dims && !memcmp(ta->ne, tb->ne, sizeof ta->ne);
        if (!shape) {
            res->tensor_diffs++;
            if (r) fprintf(r, "tensor %s: shapes differ\n", ta->name);
            continue;
        }
        if (o->values) {
            double d;
            TRY(value_diff(ta, tb, o->n_threads, &d, err));
            if (d > res->max_abs_diff) {
                res->max_abs_diff = d;
                snprintf(res->worst_tensor, sizeof res->worst_tensor, "%s", ta->name);
            }
            if (d > o->tolerance) {
                res->tensor_diffs++;
                if (r) fprintf(r, "tensor %s: values differ by up to %.6g\n", ta->name, d);
            } else {
                res->tensors_same++;
            }
        } else if (ta->type != tb->type) {
            res->tensor_diffs++;
            if (r) fprintf(r, "tensor %s: type %s vs %s\n", ta->name, pare_type_name(ta->type), pare_type_name(tb->type));
        } else {
            const void *pa, *pb;
            void *xa = NULL, *xb = NULL;
            pare_status st = pare_tensor_bytes(ta, &pa, &xa, err);
            if (!st) st = pare_tensor_bytes(tb, &pb, &xb, err);
            bool same = !st && (ta->n_bytes == 0 || memcmp(pa, pb, (size_t)ta->n_bytes) == 0);
            free(xa);
            free(xb);
            if (st) return st;
            if (same) {
                res->tensors_same++;
            } else {
                res->tensor_diffs++;
                if (r) fprintf(r, "tensor %s: bytes differ\n", ta->name);
            }
        }
    }
    for (size_t i = 0; i < b->n_tensors; i++) {
        if (pare_model_find(a, b->tensors[i].name)) continue;
        res->tensor_diffs++;
        if (r) fprintf(r, "tensor %s: only in B\n", b->tensors[i].name);
    }
    return PARE_OK;
}
