/*
 * quant/imatrix.c - llama.cpp's legacy importance-matrix (.dat) files: reading, writing and
 * matching entries to tensors. The format is described in quant/plan.h.
 */
#include "quant/imatrix.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMATRIX_MAX_NAME 65535 /* tensor names are at most 63 bytes; anything huge is garbage */

/* ------------------------------------------------------------------ building */

pare_imatrix *pare_imatrix_new(void) { return calloc(1, sizeof(pare_imatrix)); }

static void entry_clear(pare_imatrix_entry *e) {
    free(e->name);
    free(e->raw);
    free(e->values);
}

void pare_imatrix_free(pare_imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n_entries; i++) entry_clear(&im->entries[i]);
    free(im->entries);
    free(im->path);
    free(im->dataset);
    free(im);
}

const pare_imatrix_entry *pare_imatrix_find(const pare_imatrix *im, const char *name) {
    for (size_t i = 0; im && i < im->n_entries; i++)
        if (strcmp(im->entries[i].name, name) == 0) return &im->entries[i];
    return NULL;
}

/* Appends an entry taking ownership of name and raw (freed on failure too). */
static pare_status add_owned(pare_imatrix *im, char *name, int32_t ncall, float *raw, int64_t n, pare_err *err) {
    float *values = malloc((size_t)n * sizeof *values);
    if (im->n_entries == im->cap_entries) {
        size_t cap = im->cap_entries ? 2 * im->cap_entries : 16;
        pare_imatrix_entry *e = values ? realloc(im->entries, cap * sizeof *e) : NULL;
        if (e) im->entries = e, im->cap_entries = cap;
        else free(values), values = NULL;
    }
    if (!values) {
        free(name);
        free(raw);
        return pare_err_set(err, PARE_ENOMEM, "out of memory for imatrix entry of %" PRId64 " values", n);
    }
    /* llama-quantize divides by ncall as float / int -> float */
    for (int64_t j = 0; j < n; j++) values[j] = ncall > 0 ? raw[j] / (float)ncall : raw[j];
    im->entries[im->n_entries++] = (pare_imatrix_entry){name, ncall, n, raw, values};
    return PARE_OK;
}

pare_status pare_imatrix_add(pare_imatrix *im, const char *name, int32_t ncall, const float *raw, int64_t n,
                             pare_err *err) {
    FAIL_IF(!name || n < 1 || n > INT32_MAX, PARE_EUSAGE, "imatrix entry '%s': %" PRId64 " values (need 1..2^31-1)",
            name ? name : "(null)", n);
    FAIL_IF(pare_imatrix_find(im, name), PARE_EUSAGE, "imatrix entry '%s' added twice", name);
    for (int64_t j = 0; j < n; j++)
        FAIL_IF(!isfinite(raw[j]), PARE_EUSAGE, "imatrix entry '%s': value %" PRId64 " is not finite", name, j);
    char *nm = strdup(name);
    float *copy = malloc((size_t)n * sizeof *copy);
    if (!nm || !copy) {
        free(nm);
        free(copy);
        return pare_err_set(err, PARE_ENOMEM, "out of memory for imatrix entry '%s'", name);
    }
    memcpy(copy, raw, (size_t)n * sizeof *copy);
    return add_owned(im, nm, ncall, copy, n, err);
}

pare_status pare_imatrix_set_dataset(pare_imatrix *im, int32_t chunks, const char *dataset, pare_err *err) {
    char *d = NULL;
    if (dataset) {
        d = strdup(dataset);
        FAIL_IF(!d, PARE_ENOMEM, "out of memory");
    }
    free(im->dataset);
    im->dataset = d;
    im->chunks = chunks;
    return PARE_OK;
}

/* ------------------------------------------------------------------ reading */

typedef struct {
    const uint8_t *p;
    uint64_t size, off;
    const char *path;
} reader;

static uint64_t left(const reader *r) { return r->size - r->off; }

static pare_status rd_i32(reader *r, const char *what, int32_t *v, pare_err *err) {
    FAIL_IF(left(r) < 4, PARE_EINPUT, "%s: truncated: %s at offset %" PRIu64 " is past the end of the file (%" PRIu64
            " bytes)", r->path, what, r->off, r->size);
    const uint8_t *b = r->p + r->off;
    *v = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    r->off += 4;
    return PARE_OK;
}

/* A length-prefixed string of at most max bytes into a new NUL-terminated buffer. */
static pare_status rd_str(reader *r, const char *what, int32_t max, char **out, pare_err *err) {
    int32_t len = 0;
    TRY(rd_i32(r, what, &len, err));
    FAIL_IF(len < 0 || len > max, PARE_EINPUT, "%s: %s length %d at offset %" PRIu64 " is out of range (0..%d)",
            r->path, what, len, r->off - 4, max);
    FAIL_IF((uint64_t)len > left(r), PARE_EINPUT, "%s: truncated: %s of %d bytes at offset %" PRIu64
            " runs past the end of the file (%" PRIu64 " bytes)", r->path, what, len, r->off, r->size);
    char *s = malloc((size_t)len + 1);
    FAIL_IF(!s, PARE_ENOMEM, "%s: out of memory", r->path);
    memcpy(s, r->p + r->off, (size_t)len);
    s[len] = '\0';
    r->off += (uint64_t)len;
    *out = s;
    return PARE_OK;
}

static pare_status rd_entry(reader *r, pare_imatrix *im, int32_t idx, pare_err *err) {
    char *name = NULL;
    TRY(rd_str(r, "entry name", IMATRIX_MAX_NAME, &name, err));
    int32_t ncall = 0, nval = 0;
    pare_status s = rd_i32(r, "call count", &ncall, err);
    if (s == PARE_OK) s = rd_i32(r, "value count", &nval, err);
    if (s == PARE_OK && (nval < 1 || (uint64_t)nval * 4 > left(r)))
        s = pare_err_set(err, PARE_EINPUT, "%s: entry %d '%s': %d values do not fit in the %" PRIu64
                         " bytes left at offset %" PRIu64, r->path, idx, name, nval, left(r), r->off);
    if (s == PARE_OK && pare_imatrix_find(im, name))
        s = pare_err_set(err, PARE_EINPUT, "%s: entry %d: '%s' appears twice", r->path, idx, name);
    float *raw = s == PARE_OK ? malloc((size_t)nval * sizeof *raw) : NULL;
    if (s == PARE_OK && !raw) s = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    for (int32_t j = 0; s == PARE_OK && j < nval; j++) {
        int32_t bits = 0;
        rd_i32(r, "value", &bits, err); /* cannot fail: bounded above */
        memcpy(&raw[j], &bits, sizeof bits);
        if (!isfinite(raw[j]))
            s = pare_err_set(err, PARE_EINPUT, "%s: entry %d '%s': value %d is not finite", r->path, idx, name, j);
    }
    if (s != PARE_OK) {
        free(name);
        free(raw);
        return s;
    }
    return add_owned(im, name, ncall, raw, nval, err);
}

static pare_status rd_all(reader *r, pare_imatrix *im, pare_err *err) {
    int32_t n = 0;
    TRY(rd_i32(r, "entry count", &n, err));
    /* each entry takes at least 16 bytes: name length, ncall, nval and one value */
    FAIL_IF(n < 1 || (uint64_t)n > left(r) / 16, PARE_EINPUT,
            "%s: entry count %d is impossible for a file of %" PRIu64 " bytes", r->path, n, r->size);
    for (int32_t i = 0; i < n; i++) TRY(rd_entry(r, im, i, err));
    if (left(r) == 0) return PARE_OK; /* no trailer (older files) */
    TRY(rd_i32(r, "chunk count", &im->chunks, err));
    TRY(rd_str(r, "dataset name", INT32_MAX, &im->dataset, err));
    FAIL_IF(left(r) != 0, PARE_EINPUT, "%s: %" PRIu64 " unexpected bytes after the dataset name at offset %" PRIu64,
            r->path, left(r), r->off);
    return PARE_OK;
}

pare_status pare_imatrix_load(const char *path, pare_imatrix **out, pare_err *err) {
    *out = NULL;
    pare_map *map = NULL;
    TRY(pare_map_open(path, &map, err));
    pare_imatrix *im = pare_imatrix_new();
    char *p = strdup(path);
    pare_status s = PARE_OK;
    if (!im || !p) s = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
    if (s == PARE_OK) {
        im->path = p, p = NULL;
        reader r = {map->data, map->size, 0, path};
        s = rd_all(&r, im, err);
    }
    free(p);
    pare_map_free(map);
    if (s != PARE_OK) {
        pare_imatrix_free(im);
        return s;
    }
    *out = im;
    return PARE_OK;
}

/* ------------------------------------------------------------------ writing */

static pare_status wr_i32(pare_outfile *f, int32_t v, pare_err *err) {
    const uint32_t u = (uint32_t)v;
    const uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    return pare_outfile_write(f, b, 4, err);
}

static pare_status wr_str(pare_outfile *f, const char *s, pare_err *err) {
    size_t len = s ? strlen(s) : 0;
    FAIL_IF(len > INT32_MAX, PARE_EUSAGE, "string of %zu bytes is too long for an imatrix file", len);
    TRY(wr_i32(f, (int32_t)len, err));
    return len ? pare_outfile_write(f, s, len, err) : PARE_OK;
}

static pare_status wr_all(pare_outfile *f, const pare_imatrix *im, pare_err *err) {
    FAIL_IF(im->n_entries < 1 || im->n_entries > INT32_MAX, PARE_EUSAGE, "an imatrix file needs 1.. entries, not %zu",
            im->n_entries);
    TRY(wr_i32(f, (int32_t)im->n_entries, err));
    for (size_t i = 0; i < im->n_entries; i++) {
        const pare_imatrix_entry *e = &im->entries[i];
        TRY(wr_str(f, e->name, err));
        TRY(wr_i32(f, e->ncall, err));
        TRY(wr_i32(f, (int32_t)e->n, err));
        for (int64_t j = 0; j < e->n; j++) {
            int32_t bits;
            memcpy(&bits, &e->raw[j], sizeof bits);
            TRY(wr_i32(f, bits, err));
        }
    }
    TRY(wr_i32(f, im->chunks, err));
    return wr_str(f, im->dataset, err);
}

pare_status pare_imatrix_save(const pare_imatrix *im, const char *path, bool force, pare_err *err) {
    pare_outfile *f = NULL;
    TRY(pare_outfile_open(path, force, NULL, 0, &f, err));
    pare_status s = wr_all(f, im, err);
    if (s == PARE_OK) s = pare_outfile_commit(f, err);
    pare_outfile_free(f);
    return s;
}

/* ------------------------------------------------------------------ matching */

pare_status pare_imatrix_for_tensor(const pare_imatrix *im, const pare_tensor *t, const float **values,
                                    pare_err *err) {
    *values = NULL;
    const pare_imatrix_entry *e = pare_imatrix_find(im, t->name);
    if (!e) return PARE_OK;
    /* one run of ne[0] per expert for 3-D expert tensors */
    const int64_t want = t->ne[0] * t->ne[2];
    if (e->n == want) {
        *values = e->values;
        return PARE_OK;
    }
    /* llama-quantize skips a mismatched token_embd entry: it is looked up, never used */
    if (strcmp(t->name, "token_embd.weight") == 0) return PARE_OK;
    char shape[96];
    return pare_err_set(err, PARE_EINPUT, "%s: entry '%s' has %" PRId64 " values but tensor '%s' %s needs %" PRId64,
                        im->path ? im->path : "imatrix", e->name, e->n, t->name,
                        pare_tensor_shape_str(t, shape, sizeof shape), want);
}
