/* verify/hash.c - XXH3-128 digests of tensors and models. */
#include "verify/hash.h"

#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define HASH_CHUNK_FLOATS (1 << 20) /* values are dequantized 4 MiB at a time */

void pare_digest_hex(pare_digest d, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)d.hi, (unsigned long long)d.lo);
}

static pare_digest from_xxh(XXH128_hash_t h) { return (pare_digest){h.high64, h.low64}; }

/* f32 values of rows [r0, r0+nr) of a tensor whose bytes are at p. */
static pare_status rows_to_f32(const pare_tensor *t, const uint8_t *p, int64_t r0, int64_t nr, float *dst,
                               pare_err *err) {
    size_t row_bytes = pare_type_row_size(t->type, t->ne[0]);
    const uint8_t *src = p + (size_t)r0 * row_bytes;
    int64_t n = nr * t->ne[0];
    if (pare_plain_to_f32(t->type, src, dst, n)) return PARE_OK;
    const pare_quant_traits *q = pare_quant_get(t->type);
    FAIL_IF(!q || !q->dequantize, PARE_EUNSUPPORTED, "tensor '%s': cannot read values of type %s", t->name,
            pare_type_name(t->type));
    q->dequantize(src, dst, n);
    return PARE_OK;
}

static pare_status hash_tensor(const pare_tensor *t, bool values, pare_digest *out, pare_err *err) {
    const void *p;
    void *tmp;
    TRY(pare_tensor_bytes(t, &p, &tmp, err));
    pare_status st = PARE_OK;
    if (!values) {
        *out = from_xxh(XXH3_128bits(p, (size_t)t->n_bytes));
    } else {
        XXH3_state_t *s = XXH3_createState();
        int64_t rows = pare_tensor_nrows(t), per = HASH_CHUNK_FLOATS / (t->ne[0] ? t->ne[0] : 1);
        if (per < 1) per = 1;
        float *buf = malloc((size_t)(per < rows ? per : rows) * (size_t)t->ne[0] * sizeof(float) + 4);
        if (!s || !buf) st = pare_err_set(err, PARE_ENOMEM, "out of memory hashing '%s'", t->name);
        if (!st) XXH3_128bits_reset(s);
        for (int64_t r = 0; !st && r < rows; r += per) {
            int64_t nr = rows - r < per ? rows - r : per;
            st = rows_to_f32(t, p, r, nr, buf, err);
            if (!st) XXH3_128bits_update(s, buf, (size_t)(nr * t->ne[0]) * sizeof(float));
        }
        if (!st) *out = from_xxh(XXH3_128bits_digest(s));
        free(buf);
        XXH3_freeState(s);
    }
    free(tmp);
    return st;
}

typedef struct {
    const pare_model *m;
    bool values;
    pare_digest *out;
    pare_status *st;
    pare_err *errs;
} hash_job;

static void hash_one(void *ctx, int64_t i, int thread) {
    (void)thread;
    hash_job *j = ctx;
    j->st[i] = hash_tensor(&j->m->tensors[i], j->values, &j->out[i], &j->errs[i]);
    pare_model_release_tensor(j->m, &j->m->tensors[i]);
}

/* Tensor names are unique in a model, so name order is total and qsort needs no context. */
static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const pare_tensor *const *)a)->name, (*(const pare_tensor *const *)b)->name);
}

pare_status pare_hash_model(const pare_model *m, bool values, int n_threads, pare_model_digest *out,
                            pare_err *err) {
    memset(out, 0, sizeof *out);
    size_t n = m->n_tensors;
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    pare_status *st = calloc(n ? n : 1, sizeof *st);
    pare_err *errs = calloc(n ? n : 1, sizeof *errs);
    const pare_tensor **sorted = malloc((n ? n : 1) * sizeof *sorted);
    pare_status res = PARE_OK;
    if (!out->tensors || !st || !errs || !sorted) {
        res = pare_err_set(err, PARE_ENOMEM, "out of memory");
        goto done;
    }
    out->n_tensors = n;
    hash_job job = {m, values, out->tensors, st, errs};
    pare_parallel_for(n_threads, (int64_t)n, hash_one, &job);
    for (size_t i = 0; i < n; i++)
        if (st[i]) {
            *err = errs[i];
            res = st[i];
            goto done;
        }
    for (size_t i = 0; i < n; i++) sorted[i] = &m->tensors[i];
    qsort(sorted, n, sizeof *sorted, cmp_by_name);
    XXH3_state_t *s = XXH3_createState();
    if (!s) {
        res = pare_err_set(err, PARE_ENOMEM, "out of memory");
        goto done;
    }
    XXH3_128bits_reset(s);
    for (size_t k = 0; k < n; k++) {
        const pare_tensor *t = sorted[k];
        XXH3_128bits_update(s, t->name, strlen(t->name) + 1);
        if (!values) {
            int32_t ty = (int32_t)t->type;
            XXH3_128bits_update(s, &ty, sizeof ty);
        }
        XXH3_128bits_update(s, t->ne, sizeof t->ne);
        XXH3_128bits_update(s, &out->tensors[t - m->tensors], sizeof(pare_digest));
    }
    out->model = from_xxh(XXH3_128bits_digest(s));
    XXH3_freeState(s);
done:
    free(st);
    free(errs);
    free(sorted);
    if (res) pare_model_digest_free(out);
    return res;
}

void pare_model_digest_free(pare_model_digest *d) {
    if (!d) return;
    free(d->tensors);
    d->tensors = NULL;
    d->n_tensors = 0;
}
