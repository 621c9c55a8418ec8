/* formats/gguf_write.c - GGUF version 3 writer: a streaming writer (header at open, then
 * one tensor at a time), whole-model saves and llama-gguf-split style split saves.
 *
 * The header (magic, counts, KVs, tensor infos) is built in memory: it is small next to the
 * tensors (a 150k-token vocabulary is a few MB) and its size is known only once every KV is
 * encoded. Tensor bytes are never buffered: each add writes the caller's buffer (often a
 * read-only mapping of the input) straight to the output file, then zero padding. The
 * layout is ggml's (gguf_write_to_file): offsets are running sums of padded sizes, the data
 * section starts at the next multiple of the alignment after the tensor infos, and every
 * tensor, the last included, is padded; with no tensors nothing follows the metadata (as
 * gguf-py writes vocabulary-only files). */
#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ header buffer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} hbuf;

static void hb_put(hbuf *b, const void *p, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void hb_u32(hbuf *b, uint32_t v) { hb_put(b, &v, 4); }
static void hb_u64(hbuf *b, uint64_t v) { hb_put(b, &v, 8); }
static void hb_str(hbuf *b, const char *s, uint64_t n) { hb_u64(b, n); hb_put(b, s, (size_t)n); }

/* A scalar in its GGUF width, from pare_kv's u64 / i64 / f64 forms. */
static void hb_scalar(hbuf *b, const pare_kv *kv) {
    uint8_t v[8];
    switch (kv->type) {
    case PARE_META_U8: v[0] = (uint8_t)kv->v.u64; break;
    case PARE_META_BOOL: v[0] = kv->v.u64 != 0; break;
    case PARE_META_I8: v[0] = (uint8_t)(int8_t)kv->v.i64; break;
    case PARE_META_U16: { uint16_t x = (uint16_t)kv->v.u64; memcpy(v, &x, 2); break; }
    case PARE_META_I16: { int16_t x = (int16_t)kv->v.i64; memcpy(v, &x, 2); break; }
    case PARE_META_U32: { uint32_t x = (uint32_t)kv->v.u64; memcpy(v, &x, 4); break; }
    case PARE_META_I32: { int32_t x = (int32_t)kv->v.i64; memcpy(v, &x, 4); break; }
    case PARE_META_F32: { float x = (float)kv->v.f64; memcpy(v, &x, 4); break; }
    case PARE_META_U64: memcpy(v, &kv->v.u64, 8); break;
    case PARE_META_I64: memcpy(v, &kv->v.i64, 8); break;
    case PARE_META_F64: memcpy(v, &kv->v.f64, 8); break;
    default: return; /* check_meta refused it */
    }
    hb_put(b, v, pare_meta_type_size(kv->type));
}

static void hb_kv(hbuf *b, const pare_kv *kv) {
    hb_str(b, kv->key, strlen(kv->key));
    hb_u32(b, (uint32_t)kv->type);
    if (kv->type == PARE_META_STRING) {
        hb_str(b, kv->str.s, kv->str.len);
    } else if (kv->type == PARE_META_ARRAY) {
        hb_u32(b, (uint32_t)kv->elem_type);
        hb_u64(b, kv->n);
        if (kv->elem_type == PARE_META_STRING) {
            const pare_str *s = kv->arr;
            for (uint64_t i = 0; i < kv->n; i++) hb_str(b, s[i].s, s[i].len);
        } else {
            hb_put(b, kv->arr, (size_t)(kv->n * pare_meta_type_size(kv->elem_type)));
        }
    } else {
        hb_scalar(b, kv);
    }
}

/* ------------------------------------------------------------------------ checks */

static uint64_t pad_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

static pare_status check_kv(const char *path, size_t i, const pare_kv *kv, pare_err *err) {
    FAIL_IF(!kv->key || !kv->key[0], PARE_EUSAGE, "%s: metadata entry %zu has no key", path, i);
    FAIL_IF(strlen(kv->key) > PARE_GGUF_MAX_KEY, PARE_EUNSUPPORTED, "%s: key %zu is longer than %u bytes", path, i,
            PARE_GGUF_MAX_KEY);
    FAIL_IF((unsigned)kv->type >= PARE_META_COUNT, PARE_EUSAGE, "%s: key '%s' has invalid type %d", path, kv->key,
            (int)kv->type);
    if (kv->type == PARE_META_STRING)
        FAIL_IF(!kv->str.s && kv->str.len, PARE_EUSAGE, "%s: key '%s' has no string", path, kv->key);
    if (kv->type != PARE_META_ARRAY) return PARE_OK;
    FAIL_IF((unsigned)kv->elem_type >= PARE_META_COUNT || kv->elem_type == PARE_META_ARRAY, PARE_EUSAGE,
            "%s: key '%s': GGUF arrays cannot hold elements of type %d", path, kv->key, (int)kv->elem_type);
    FAIL_IF(kv->n && !kv->arr, PARE_EUSAGE, "%s: key '%s': array of %llu elements has no data", path, kv->key,
            (unsigned long long)kv->n);
    if (kv->elem_type != PARE_META_STRING)
        FAIL_IF(kv->n > SIZE_MAX / 8, PARE_EUSAGE, "%s: key '%s': %llu elements", path, kv->key,
                (unsigned long long)kv->n);
    return PARE_OK;
}

/* Valid keys and values, no duplicate keys; the alignment meta asks for. */
static pare_status check_meta(const char *path, const pare_meta *meta, uint64_t *alignment, pare_err *err) {
    *alignment = PARE_GGUF_DEFAULT_ALIGNMENT;
    if (!meta || meta->n == 0) return PARE_OK;
    pare_strset *keys = pare_strset_new(meta->n);
    FAIL_IF(!keys, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    for (size_t i = 0; i < meta->n && !st; i++) {
        st = check_kv(path, i, &meta->kv[i], err);
        int added = st ? 1 : pare_strset_add(keys, meta->kv[i].key, strlen(meta->kv[i].key));
        if (added < 0) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (added == 0) st = pare_err_set(err, PARE_EUSAGE, "%s: duplicate key '%s'", path, meta->kv[i].key);
    }
    pare_strset_free(keys);
    TRY(st);
    const pare_kv *al = pare_meta_get(meta, "general.alignment");
    if (al) {
        FAIL_IF(al->type != PARE_META_U32 || al->v.u64 == 0 || al->v.u64 > UINT32_MAX || (al->v.u64 & (al->v.u64 - 1)),
                PARE_EUSAGE, "%s: general.alignment must be a u32 power of two (is a %s)", path,
                pare_meta_type_name(al->type));
        *alignment = al->v.u64;
    }
    return PARE_OK;
}

static pare_status check_tensor(const char *path, size_t i, const pare_tensor *t, uint64_t *size, pare_err *err) {
    FAIL_IF(!t->name, PARE_EUSAGE, "%s: tensor %zu has no name", path, i);
    FAIL_IF(strlen(t->name) > PARE_GGUF_MAX_NAME, PARE_EUNSUPPORTED,
            "%s: tensor %zu '%s': the name is %zu bytes, GGUF allows at most %d", path, i, t->name, strlen(t->name),
            PARE_GGUF_MAX_NAME);
    FAIL_IF(!pare_type_valid(t->type) || t->type >= PARE_TYPE_GGML_COUNT, PARE_EUNSUPPORTED,
            "%s: tensor %zu '%s': GGUF cannot hold type %s", path, i, t->name, pare_type_name(t->type));
    FAIL_IF(t->n_dims < 1 || t->n_dims > PARE_MAX_DIMS, PARE_EUSAGE, "%s: tensor %zu '%s': %d dimensions (1 to %d)",
            path, i, t->name, t->n_dims, PARE_MAX_DIMS);
    pare_status st = pare_tensor_nbytes(t->type, t->n_dims, t->ne, size, err);
    if (st) {
        pare_err_prefix(err, "%s: tensor %zu '%s'", path, i, t->name);
        if (err) err->code = PARE_EUSAGE;
        return PARE_EUSAGE;
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------------ writer */

struct pare_gguf_writer {
    pare_outfile *f;
    uint64_t alignment, data_start;
    uint64_t *sizes; /* bytes of each tensor */
    char **names;    /* copies, for messages */
    size_t n, next;
    uint64_t part; /* bytes of tensor `next` written so far (pare_gguf_writer_add_part) */
    bool failed;
};

void pare_gguf_writer_free(pare_gguf_writer *w) {
    if (!w) return;
    pare_outfile_free(w->f);
    for (size_t i = 0; w->names && i < w->n; i++) free(w->names[i]);
    free(w->names);
    free(w->sizes);
    free(w);
}

/* Validates everything and fills sizes and names; nothing is written yet. */
static pare_status writer_plan(pare_gguf_writer *w, const char *path, const pare_tensor *tensors, pare_err *err) {
    w->sizes = calloc(w->n ? w->n : 1, sizeof *w->sizes);
    w->names = calloc(w->n ? w->n : 1, sizeof *w->names);
    pare_strset *names = pare_strset_new(w->n);
    pare_status st = (w->sizes && w->names && names) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < w->n && !st; i++) {
        st = check_tensor(path, i, &tensors[i], &w->sizes[i], err);
        int added = st ? 1 : pare_strset_add(names, tensors[i].name, strlen(tensors[i].name));
        if (added < 0) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (added == 0)
            st = pare_err_set(err, PARE_EUSAGE, "%s: tensor %zu: duplicate name '%s'", path, i, tensors[i].name);
        if (!st && !(w->names[i] = strdup(tensors[i].name))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    pare_strset_free(names);
    return st;
}

static void encode_header(hbuf *b, const pare_meta *meta, const pare_tensor *tensors, const pare_gguf_writer *w) {
    hb_put(b, PARE_GGUF_MAGIC, 4);
    hb_u32(b, PARE_GGUF_VERSION);
    hb_u64(b, w->n);
    hb_u64(b, meta ? meta->n : 0);
    for (size_t i = 0; meta && i < meta->n; i++) hb_kv(b, &meta->kv[i]);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const pare_tensor *t = &tensors[i];
        hb_str(b, t->name, strlen(t->name));
        hb_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) hb_u64(b, (uint64_t)t->ne[d]);
        hb_u32(b, (uint32_t)t->type);
        hb_u64(b, off);
        off = pad_up(off + w->sizes[i], w->alignment);
    }
}

pare_status pare_gguf_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors,
                                  size_t n_tensors, bool force, const char *const *inputs, size_t n_inputs,
                                  pare_gguf_writer **out, pare_err *err) {
    *out = NULL;
    pare_gguf_writer *w = calloc(1, sizeof *w);
    FAIL_IF(!w, PARE_ENOMEM, "out of memory");
    w->n = n_tensors;
    pare_status st = check_meta(path, meta, &w->alignment, err);
    if (!st) st = writer_plan(w, path, tensors, err);
    /* The data section must be addressable: the sum of padded sizes may not overflow. */
    uint64_t total = 0;
    for (size_t i = 0; i < w->n && !st; i++) {
        uint64_t p = pad_up(w->sizes[i], w->alignment);
        if (p < w->sizes[i] || p > UINT64_MAX / 2 - total)
            st = pare_err_set(err, PARE_EUSAGE, "%s: the tensors add up to more than 2^63 bytes", path);
        total += p;
    }
    hbuf b = {0};
    if (!st) {
        encode_header(&b, meta, tensors, w);
        if (b.oom) st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory for the header", path);
    }
    w->data_start = n_tensors ? pad_up(b.n, w->alignment) : b.n;
    if (!st) st = pare_outfile_open(path, force, inputs, n_inputs, &w->f, err);
    if (!st) st = pare_outfile_write(w->f, b.p, b.n, err);
    if (!st) st = pare_outfile_pad_to(w->f, w->data_start, err);
    free(b.p);
    if (st) {
        pare_gguf_writer_free(w);
        return st;
    }
    *out = w;
    return PARE_OK;
}

pare_status pare_gguf_writer_add_part(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err) {
    const char *path = w->f ? pare_outfile_path(w->f) : "gguf";
    FAIL_IF(w->failed, PARE_EUSAGE, "%s: writer used after an error", path);
    FAIL_IF(w->next >= w->n, PARE_EUSAGE, "%s: more tensors added than the %zu announced", path, w->n);
    if (n_bytes > w->sizes[w->next] - w->part || (!data && n_bytes)) {
        w->failed = true;
        return pare_err_set(err, PARE_EUSAGE, "%s: tensor %zu '%s' was given %llu bytes, its shape needs %llu", path,
                            w->next, w->names[w->next], (unsigned long long)(w->part + n_bytes),
                            (unsigned long long)w->sizes[w->next]);
    }
    pare_status st = PARE_OK;
    /* pare_outfile_write loops over the kernel's per-call limit. */
    if (n_bytes) st = pare_outfile_write(w->f, data, (size_t)n_bytes, err);
    w->part += n_bytes;
    if (!st && w->part == w->sizes[w->next]) {
        uint64_t end = pare_outfile_tell(w->f);
        st = pare_outfile_pad_to(w->f, w->data_start + pad_up(end - w->data_start, w->alignment), err);
        w->next++;
        w->part = 0;
    }
    if (st) w->failed = true;
    return st;
}

pare_status pare_gguf_writer_add(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err) {
    const char *path = w->f ? pare_outfile_path(w->f) : "gguf";
    FAIL_IF(w->failed, PARE_EUSAGE, "%s: writer used after an error", path);
    FAIL_IF(w->next >= w->n, PARE_EUSAGE, "%s: more tensors added than the %zu announced", path, w->n);
    if (w->part || n_bytes != w->sizes[w->next]) {
        w->failed = true;
        return pare_err_set(err, PARE_EUSAGE, "%s: tensor %zu '%s' was given %llu bytes, its shape needs %llu", path,
                            w->next, w->names[w->next], (unsigned long long)n_bytes,
                            (unsigned long long)w->sizes[w->next]);
    }
    return pare_gguf_writer_add_part(w, data, n_bytes, err);
}

pare_status pare_gguf_writer_finish(pare_gguf_writer *w, pare_err *err) {
    const char *path = pare_outfile_path(w->f);
    FAIL_IF(w->failed, PARE_EUSAGE, "%s: not finishing a file after an error", path);
    FAIL_IF(w->next != w->n, PARE_EUSAGE, "%s: %zu of %zu tensors were added", path, w->next, w->n);
    pare_status st = pare_outfile_commit(w->f, err);
    w->failed = true; /* committed or not, the writer is done */
    return st;
}

/* ------------------------------------------------------------------------ whole models */

/* Writes tensors [first, first + n) of m through w, releasing mapped pages as it goes. */
static pare_status write_tensors(pare_gguf_writer *w, const pare_model *m, size_t first, size_t n, pare_err *err) {
    for (size_t i = first; i < first + n; i++) {
        const pare_tensor *t = &m->tensors[i];
        const void *p;
        void *tmp;
        TRY(pare_tensor_bytes(t, &p, &tmp, err));
        pare_status st = pare_gguf_writer_add(w, p, t->n_bytes, err);
        free(tmp);
        pare_model_release_tensor(m, t);
        TRY(st);
    }
    return PARE_OK;
}

/* The model's own files, which an output must never replace. */
static const char **model_inputs(const pare_model *m, size_t *n) {
    const char **in = calloc(m->n_maps + 1, sizeof *in);
    if (!in) return NULL;
    for (size_t i = 0; i < m->n_maps; i++) in[i] = m->maps[i]->path;
    in[m->n_maps] = m->path;
    *n = m->n_maps + 1;
    return in;
}

pare_status pare_gguf_save(const pare_model *m, const char *path, bool force, pare_err *err) {
    size_t n_in = 0;
    const char **inputs = model_inputs(m, &n_in);
    FAIL_IF(!inputs, PARE_ENOMEM, "out of memory");
    pare_gguf_writer *w = NULL;
    pare_status st = pare_gguf_writer_open(path, &m->meta, m->tensors, m->n_tensors, force, inputs, n_in, &w, err);
    free(inputs);
    if (!st) st = write_tensors(w, m, 0, m->n_tensors, err);
    if (!st) st = pare_gguf_writer_finish(w, err);
    pare_gguf_writer_free(w);
    return st;
}

/* ------------------------------------------------------------------------ split saves */

/* Part k's meta: for the first, m's meta without split.* keys; for the others only
 * general.alignment; then split.no, split.tensors.count, split.count. */
static pare_status split_meta(const pare_model *m, int k, int count, pare_meta *meta, pare_err *err) {
    for (size_t i = 0; i < m->meta.n; i++) {
        const pare_kv *kv = &m->meta.kv[i];
        if (!strncmp(kv->key, "split.", 6)) continue;
        if (k > 0 && strcmp(kv->key, "general.alignment")) continue;
        TRY(pare_meta_set_kv(meta, kv, err));
    }
    FAIL_IF(m->n_tensors > INT32_MAX, PARE_EUNSUPPORTED, "%zu tensors do not fit split.tensors.count", m->n_tensors);
    TRY(pare_meta_set_uint(meta, "split.no", PARE_META_U16, (uint64_t)k, err));
    TRY(pare_meta_set_int(meta, "split.tensors.count", PARE_META_I32, (int64_t)m->n_tensors, err));
    TRY(pare_meta_set_uint(meta, "split.count", PARE_META_U16, (uint64_t)count, err));
    return PARE_OK;
}

/* Where each part starts: a new part when the padded bytes would pass max_bytes (sizes
 * padded to 32, as llama-gguf-split counts them). starts[count] = n_tensors. */
static pare_status split_plan(const pare_model *m, uint64_t max_bytes, size_t **starts, int *count, pare_err *err) {
    size_t *s = malloc((m->n_tensors + 2) * sizeof *s);
    FAIL_IF(!s, PARE_ENOMEM, "out of memory");
    int c = 0;
    s[c++] = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        uint64_t nb = pad_up(m->tensors[i].n_bytes, PARE_GGUF_DEFAULT_ALIGNMENT);
        if (i > s[c - 1] && (nb > max_bytes || cur > max_bytes - nb)) {
            s[c++] = i;
            cur = 0;
        }
        cur += nb;
    }
    s[c] = m->n_tensors;
    if (c > PARE_GGUF_MAX_SPLITS) {
        free(s);
        return pare_err_set(err, PARE_EUSAGE, "%d parts of at most %llu bytes: more than the %d GGUF allows", c,
                            (unsigned long long)max_bytes, PARE_GGUF_MAX_SPLITS);
    }
    *starts = s;
    *count = c;
    return PARE_OK;
}

pare_status pare_gguf_save_split(const pare_model *m, const char *path, uint64_t max_bytes, bool force,
                                 int *n_parts, pare_err *err) {
    FAIL_IF(max_bytes == 0, PARE_EUSAGE, "%s: the split size must be more than 0 bytes", path);
    size_t plen = strlen(path);
    if (pare_str_ends_with(path, ".gguf")) plen -= 5;
    char *prefix = strndup(path, plen);
    size_t *starts = NULL, n_in = 0;
    int count = 0;
    const char **inputs = model_inputs(m, &n_in);
    pare_status st = (prefix && inputs) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = split_plan(m, max_bytes, &starts, &count, err);
    /* Every part is kept open until all are written, then all are renamed into place. */
    pare_gguf_writer **w = st ? NULL : calloc((size_t)count, sizeof *w);
    if (!st && !w) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (int k = 0; k < count && !st; k++) {
        pare_meta meta = {0};
        char *part = pare_gguf_split_path(prefix, k, count);
        st = part ? split_meta(m, k, count, &meta, err) : pare_err_set(err, PARE_ENOMEM, "out of memory");
        size_t first = starts[k], n = starts[k + 1] - starts[k];
        if (!st) st = pare_gguf_writer_open(part, &meta, m->tensors + first, n, force, inputs, n_in, &w[k], err);
        if (!st) st = write_tensors(w[k], m, first, n, err);
        pare_meta_free(&meta);
        free(part);
    }
    for (int k = 0; k < count && !st; k++) st = pare_gguf_writer_finish(w[k], err);
    for (int k = 0; w && k < count; k++) pare_gguf_writer_free(w[k]);
    if (!st && n_parts) *n_parts = count;
    free(w);
    free(starts);
    free((void *)inputs);
    free(prefix);
    return st;
}
