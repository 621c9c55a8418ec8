/* formats/gguf.c - GGUF reader (v2, v3, split files) and streaming writer (v3). */
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_SPLITS 1024

/* ======================================================================== reading */

typedef struct {
    const char *path;
    const uint8_t *p;
    uint64_t size, pos;
} rd;

static pare_status rd_need(rd *r, uint64_t n, const char *what, pare_err *err) {
    FAIL_IF(n > r->size - r->pos, PARE_EINPUT, "%s: %s at offset %llu needs %llu bytes, past the end of the file (%llu)",
            r->path, what, (unsigned long long)r->pos, (unsigned long long)n, (unsigned long long)r->size);
    return PARE_OK;
}

static pare_status rd_raw(rd *r, void *dst, uint64_t n, const char *what, pare_err *err) {
    TRY(rd_need(r, n, what, err));
    memcpy(dst, r->p + r->pos, (size_t)n);
    r->pos += n;
    return PARE_OK;
}

static pare_status rd_u32(rd *r, uint32_t *v, const char *what, pare_err *err) { return rd_raw(r, v, 4, what, err); }
static pare_status rd_u64(rd *r, uint64_t *v, const char *what, pare_err *err) { return rd_raw(r, v, 8, what, err); }

/* A string in place: *s points into the mapping, not NUL-terminated. */
static pare_status rd_str(rd *r, uint64_t max, const char **s, uint64_t *len, const char *what, pare_err *err) {
    uint64_t n;
    TRY(rd_u64(r, &n, what, err));
    FAIL_IF(n > max, PARE_EINPUT, "%s: %s at offset %llu is %llu bytes long (at most %llu)", r->path, what,
            (unsigned long long)(r->pos - 8), (unsigned long long)n, (unsigned long long)max);
    TRY(rd_need(r, n, what, err));
    *s = (const char *)r->p + r->pos;
    *len = n;
    r->pos += n;
    return PARE_OK;
}

/* Reads one value of scalar type t into a u64/i64/f64 union form. */
static pare_status rd_scalar(rd *r, pare_meta_type t, pare_kv *kv, const char *key, pare_err *err) {
    size_t n = pare_meta_type_size(t);
    uint8_t b[8] = {0};
    TRY(rd_raw(r, b, n, key, err));
    switch (t) {
    case PARE_META_U8: kv->v.u64 = b[0]; break;
    case PARE_META_BOOL:
        FAIL_IF(b[0] > 1, PARE_EINPUT, "%s: key '%s': bool value %u is neither 0 nor 1", r->path, key, b[0]);
        kv->v.u64 = b[0];
        break;
    case PARE_META_I8: kv->v.i64 = (int8_t)b[0]; break;
    case PARE_META_U16: { uint16_t v; memcpy(&v, b, 2); kv->v.u64 = v; break; }
    case PARE_META_I16: { int16_t v; memcpy(&v, b, 2); kv->v.i64 = v; break; }
    case PARE_META_U32: { uint32_t v; memcpy(&v, b, 4); kv->v.u64 = v; break; }
    case PARE_META_I32: { int32_t v; memcpy(&v, b, 4); kv->v.i64 = v; break; }
    case PARE_META_F32: { float v; memcpy(&v, b, 4); kv->v.f64 = v; break; }
    case PARE_META_U64: memcpy(&kv->v.u64, b, 8); break;
    case PARE_META_I64: memcpy(&kv->v.i64, b, 8); break;
    case PARE_META_F64: memcpy(&kv->v.f64, b, 8); break;
    default: return pare_err_set(err, PARE_EINTERNAL, "not a scalar");
    }
    kv->type = t;
    return PARE_OK;
}

static pare_status rd_array(rd *r, pare_meta *meta, const char *key, pare_err *err) {
    uint32_t et;
    uint64_t n;
    TRY(rd_u32(r, &et, key, err));
    TRY(rd_u64(r, &n, key, err));
    FAIL_IF(et == PARE_META_ARRAY, PARE_EINPUT, "%s: key '%s': nested arrays are not supported", r->path, key);
    FAIL_IF(et >= PARE_META_COUNT, PARE_EINPUT, "%s: key '%s': unknown array element type %u", r->path, key, et);
    if (et == PARE_META_STRING) {
        /* Each string takes at least its 8-byte length: bound n before allocating. */
        FAIL_IF(n > (r->size - r->pos) / 8, PARE_EINPUT,
                "%s: key '%s': %llu strings cannot fit in the %llu bytes left", r->path, key, (unsigned long long)n,
                (unsigned long long)(r->size - r->pos));
        pare_str *strs = malloc((size_t)(n ? n : 1) * sizeof *strs);
        FAIL_IF(!strs, PARE_ENOMEM, "%s: out of memory", r->path);
        pare_status st = PARE_OK;
        for (uint64_t i = 0; i < n && !st; i++) {
            const char *s;
            uint64_t len;
            st = rd_str(r, PARE_GGUF_MAX_STRING, &s, &len, key, err);
            strs[i].s = (char *)s;
            strs[i].len = len;
        }
        if (!st) st = pare_meta_set_arr(meta, key, PARE_META_STRING, strs, n, err);
        free(strs);
        return st;
    }
    size_t es = pare_meta_type_size((pare_meta_type)et);
    FAIL_IF(n > (r->size - r->pos) / es, PARE_EINPUT,
            "%s: key '%s': %llu elements of %zu bytes run past the end of the file", r->path, key,
            (unsigned long long)n, es);
    if (et == PARE_META_BOOL)
        for (uint64_t i = 0; i < n; i++)
            FAIL_IF(r->p[r->pos + i] > 1, PARE_EINPUT, "%s: key '%s': bool element %llu is %u", r->path, key,
                    (unsigned long long)i, r->p[r->pos + i]);
    TRY(pare_meta_set_arr(meta, key, (pare_meta_type)et, r->p + r->pos, n, err));
    r->pos += n * es;
    return PARE_OK;
}

static pare_status rd_kvs(rd *r, uint64_t n_kv, pare_meta *meta, pare_err *err) {
    pare_strset *keys = pare_strset_new((size_t)n_kv);
    FAIL_IF(!keys, PARE_ENOMEM, "%s: out of memory", r->path);
    pare_status st = PARE_OK;
    char *key = NULL;
    for (uint64_t i = 0; i < n_kv && !st; i++) {
        const char *k;
        uint64_t klen;
        uint32_t type;
        st = rd_str(r, PARE_GGUF_MAX_KEY, &k, &klen, "metadata key", err);
        if (st) break;
        if (memchr(k, 0, (size_t)klen)) {
            st = pare_err_set(err, PARE_EINPUT, "%s: metadata key %llu contains a NUL byte", r->path,
                              (unsigned long long)i);
            break;
        }
        int added = pare_strset_add(keys, k, (size_t)klen);
        free(key);
        key = strndup(k, (size_t)klen);
        if (added < 0 || !key) {
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
            break;
        }
        if (added == 0) {
            st = pare_err_set(err, PARE_EINPUT, "%s: duplicate metadata key '%s'", r->path, key);
            break;
        }
        st = rd_u32(r, &type, key, err);
        if (st) break;
        if (type >= PARE_META_COUNT) {
            st = pare_err_set(err, PARE_EINPUT, "%s: key '%s' has unknown value type %u", r->path, key, type);
        } else if (type == PARE_META_STRING) {
            const char *s;
            uint64_t len;
            st = rd_str(r, PARE_GGUF_MAX_STRING, &s, &len, key, err);
            if (!st) st = pare_meta_set_str(meta, key, s, (size_t)len, err);
        } else if (type == PARE_META_ARRAY) {
            st = rd_array(r, meta, key, err);
        } else {
            pare_kv kv = {.key = key};
            st = rd_scalar(r, (pare_meta_type)type, &kv, key, err);
            if (!st) st = pare_meta_set_kv(meta, &kv, err);
        }
    }
    free(key);
    pare_strset_free(keys);
    return st;
}

/* Tensor infos; offsets are relative to the data section until rd_check_data. */
static pare_status rd_tensor_infos(rd *r, uint64_t n_t, pare_model *m, pare_err *err) {
    pare_strset *names = pare_strset_new((size_t)n_t);
    FAIL_IF(!names, PARE_ENOMEM, "%s: out of memory", r->path);
    pare_status st = PARE_OK;
    for (uint64_t i = 0; i < n_t && !st; i++) {
        const char *name;
        uint64_t nlen, off;
        uint32_t n_dims, type;
        int64_t ne[PARE_MAX_DIMS] = {1, 1, 1, 1};
        char what[48];
        snprintf(what, sizeof what, "tensor %llu name", (unsigned long long)i);
        st = rd_str(r, PARE_GGUF_MAX_NAME, &name, &nlen, what, err);
        if (st) break;
        char cname[PARE_GGUF_MAX_NAME + 1];
        memcpy(cname, name, (size_t)nlen);
        cname[nlen] = 0;
        if (strlen(cname) != nlen) {
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor %llu: name contains a NUL byte", r->path,
                              (unsigned long long)i);
            break;
        }
        int added = pare_strset_add(names, name, (size_t)nlen);
        if (added <= 0) {
            st = added < 0 ? pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path)
                           : pare_err_set(err, PARE_EINPUT, "%s: tensor %llu: duplicate tensor name '%s'", r->path,
                                          (unsigned long long)i, cname);
            break;
        }
        st = rd_u32(r, &n_dims, cname, err);
        if (!st && (n_dims < 1 || n_dims > PARE_MAX_DIMS))
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor %llu '%s': %u dimensions (1 to 4)", r->path,
                              (unsigned long long)i, cname, n_dims);
        for (uint32_t d = 0; !st && d < n_dims; d++) {
            uint64_t v;
            st = rd_u64(r, &v, cname, err);
            if (!st && v > (uint64_t)INT64_MAX)
                st = pare_err_set(err, PARE_EINPUT, "%s: tensor %llu '%s': dimension %u is %llu", r->path,
                                  (unsigned long long)i, cname, d, (unsigned long long)v);
            ne[d] = (int64_t)v;
        }
        if (!st) st = rd_u32(r, &type, cname, err);
        if (!st && (type >= PARE_TYPE_GGML_COUNT || !pare_type_valid((int)type)))
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor %llu '%s': unknown type %u", r->path,
                              (unsigned long long)i, cname, type);
        if (!st) st = rd_u64(r, &off, cname, err);
        pare_tensor t;
        if (!st) {
            st = pare_tensor_init(&t, cname, (pare_type)type, (int)n_dims, ne, err);
            if (st) pare_err_prefix(err, "%s: tensor %llu", r->path, (unsigned long long)i);
        }
        if (!st) {
            t.file_offset = off;
            st = pare_model_push_tensor(m, &t, err);
            if (st) pare_tensor_clear(&t);
        }
    }
    pare_strset_free(names);
    return st;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* The data section: aligned start, offsets as ggml requires, data inside the file. */
static pare_status rd_check_data(rd *r, pare_model *m, int map_index, pare_err *err) {
    uint64_t data = pad_to(r->pos, m->alignment), expect = 0;
    if (m->n_tensors == 0) return PARE_OK; /* vocabulary-only files end after the metadata */
    FAIL_IF(data > r->size, PARE_EINPUT, "%s: the data section would start at %llu, past the end of the file (%llu)",
            r->path, (unsigned long long)data, (unsigned long long)r->size);
    for (size_t i = 0; i < m->n_tensors; i++) {
        pare_tensor *t = &m->tensors[i];
        uint64_t off = t->file_offset;
        FAIL_IF(off % m->alignment, PARE_EINPUT, "%s: tensor %zu '%s': offset %llu is not a multiple of the alignment %llu",
                r->path, i, t->name, (unsigned long long)off, (unsigned long long)m->alignment);
        FAIL_IF(off != expect, PARE_EINPUT,
                "%s: tensor %zu '%s': offset %llu, expected %llu (tensors must follow each other, padded to %llu)",
                r->path, i, t->name, (unsigned long long)off, (unsigned long long)expect,
                (unsigned long long)m->alignment);
        FAIL_IF(t->n_bytes > r->size - data || off > r->size - data - t->n_bytes, PARE_EINPUT,
                "%s: tensor %zu '%s': data ends at %llu, past the end of the file (%llu)", r->path, i, t->name,
                (unsigned long long)(data + off + t->n_bytes), (unsigned long long)r->size);
        t->file_offset = data + off;
        t->data = r->p + data + off;
        t->source = map_index;
        expect = pad_to(off + t->n_bytes, m->alignment);
    }
    return PARE_OK;
}

/* Reads one GGUF file into m (tensors appended). */
static pare_status load_one(const char *path, pare_model *m, pare_meta *meta, pare_err *err) {
    pare_map *map = NULL;
    TRY(pare_map_open(path, &map, err));
    int idx;
    TRY(pare_model_add_map(m, map, &idx, err));
    rd r = {path, map->data, map->size, 0};
    char magic[4];
    TRY(rd_raw(&r, magic, 4, "the magic", err));
    FAIL_IF(memcmp(magic, "GGUF", 4), PARE_EINPUT, "%s: not a GGUF file (bad magic)", path);
    uint32_t version;
    TRY(rd_u32(&r, &version, "the version", err));
    FAIL_IF(version == 1, PARE_EUNSUPPORTED, "%s: GGUF version 1 is not supported (convert it with a newer llama.cpp)", path);
    FAIL_IF(version != 2 && version != 3, PARE_EINPUT, "%s: unknown GGUF version %u", path, version);
    m->version = version;
    uint64_t n_t, n_kv;
    TRY(rd_u64(&r, &n_t, "the tensor count", err));
    TRY(rd_u64(&r, &n_kv, "the metadata count", err));
    /* A tensor info takes at least 8+4+8+4+8 bytes and a KV at least 8+4+1. */
    FAIL_IF(n_t > (r.size - r.pos) / 32, PARE_EINPUT, "%s: %llu tensors cannot fit in a file of %llu bytes", path,
            (unsigned long long)n_t, (unsigned long long)r.size);
    FAIL_IF(n_kv > (r.size - r.pos) / 13, PARE_EINPUT, "%s: %llu metadata keys cannot fit in a file of %llu bytes",
            path, (unsigned long long)n_kv, (unsigned long long)r.size);
    TRY(rd_kvs(&r, n_kv, meta, err));
    const pare_kv *al = pare_meta_get(meta, "general.alignment");
    m->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (al) {
        FAIL_IF(al->type != PARE_META_U32, PARE_EINPUT, "%s: general.alignment must be a u32, not %s", path,
                pare_meta_type_name(al->type));
        FAIL_IF(al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)), PARE_EINPUT,
                "%s: general.alignment %llu is not a power of two", path, (unsigned long long)al->v.u64);
        m->alignment = al->v.u64;
    }
    size_t first = m->n_tensors;
    TRY(rd_tensor_infos(&r, n_t, m, err));
    pare_model part = *m; /* a view of only this file's tensors */
    part.tensors = m->tensors + first;
    part.n_tensors = m->n_tensors - first;
    return rd_check_data(&r, &part, idx, err);
}

/* "DIR/NAME-00002-of-00005.gguf" -> prefix "DIR/NAME" and count 5; false when not split-named. */
static bool split_name(const char *path, char *prefix, size_t cap, int *count) {
    size_t n = strlen(path);
    const char *tail = "-00000-of-00000.gguf";
    size_t tl = strlen(tail);
    if (n < tl) return false;
    const char *p = path + n - tl;
    int no, cnt;
    char rest[8];
    if (sscanf(p, "-%5d-of-%5d%6s", &no, &cnt, rest) != 3 || strcmp(rest, ".gguf")) return false;
    if (n - tl >= cap) return false;
    memcpy(prefix, path, n - tl);
    prefix[n - tl] = 0;
    *count = cnt;
    return true;
}

static pare_status load_splits(const char *path, pare_model *m, pare_meta *first_meta, pare_err *err) {
    uint64_t count = 0, no = 0;
    int64_t total = 0;
    pare_meta_get_u64(first_meta, "split.count", &count);
    pare_meta_get_u64(first_meta, "split.no", &no);
    pare_meta_get_i64(first_meta, "split.tensors.count", &total);
    char prefix[4096];
    int named = 0;
    FAIL_IF(!split_name(path, prefix, sizeof prefix, &named) || (uint64_t)named != count, PARE_EINPUT,
            "%s: split.count is %llu but the file is not named NAME-0000i-of-%05llu.gguf", path,
            (unsigned long long)count, (unsigned long long)count);
    FAIL_IF(count > GGUF_MAX_SPLITS, PARE_EINPUT, "%s: %llu splits (at most %d)", path, (unsigned long long)count,
            GGUF_MAX_SPLITS);
    /* Start over from part 1 whichever part was named. */
    for (size_t i = 0; i < m->n_tensors; i++) pare_tensor_clear(&m->tensors[i]);
    m->n_tensors = 0;
    for (uint64_t k = 0; k < count; k++) {
        char part[4200];
        snprintf(part, sizeof part, "%s-%05llu-of-%05llu.gguf", prefix, (unsigned long long)k + 1,
                 (unsigned long long)count);
        pare_meta pm = {0};
        pare_status st = load_one(part, m, &pm, err);
        uint64_t pno = UINT64_MAX, pc = 0;
        if (!st && (!pare_meta_get_u64(&pm, "split.no", &pno) || pno != k || !pare_meta_get_u64(&pm, "split.count", &pc) ||
                    pc != count))
            st = pare_err_set(err, PARE_EINPUT, "%s: split.no/split.count do not say part %llu of %llu", part,
                              (unsigned long long)k, (unsigned long long)count);
        if (!st && k == 0) {
            pare_meta_free(&m->meta);
            st = pare_meta_copy(&m->meta, &pm, err);
        }
        pare_meta_free(&pm);
        if (st) return st;
    }
    FAIL_IF(total >= 0 && (uint64_t)total != m->n_tensors, PARE_EINPUT,
            "%s: split.tensors.count says %lld tensors, the parts hold %zu", path, (long long)total, m->n_tensors);
    /* Names must be unique across parts too. */
    pare_strset *names = pare_strset_new(m->n_tensors);
    FAIL_IF(!names, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (pare_strset_add(names, m->tensors[i].name, strlen(m->tensors[i].name)) != 1) {
            pare_strset_free(names);
            return pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' appears in two parts", path, m->tensors[i].name);
        }
    }
    pare_strset_free(names);
    pare_meta_remove(&m->meta, "split.no");
    pare_meta_remove(&m->meta, "split.count");
    pare_meta_remove(&m->meta, "split.tensors.count");
    return PARE_OK;
}

pare_status pare_gguf_load(const char *path, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, path);
    FAIL_IF(!m, PARE_ENOMEM, "out of memory");
    m->gguf_names = true;
    pare_status st = load_one(path, m, &m->meta, err);
    uint64_t count = 0;
    if (!st && pare_meta_get_u64(&m->meta, "split.count", &count) && count > 1) {
        pare_meta first = m->meta;
        memset(&m->meta, 0, sizeof m->meta);
        st = load_splits(path, m, &first, err);
        pare_meta_free(&first);
    }
    const char *arch = st ? NULL : pare_meta_get_str(&m->meta, "general.architecture");
    if (arch && !(m->arch = strdup(arch))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

/* ======================================================================== writing */

struct pare_gguf_writer {
    pare_outfile *f;
    uint64_t alignment, data_start;
    uint64_t *sizes; /* bytes of each tensor */
    size_t n, next;
    uint8_t *buf; /* header staging */
    size_t len, cap;
    pare_err *err;
};

static bool wb_put(pare_gguf_writer *w, const void *p, size_t n) {
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) return false;
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return true;
}

static bool wb_u32(pare_gguf_writer *w, uint32_t v) { return wb_put(w, &v, 4); }
static bool wb_u64(pare_gguf_writer *w, uint64_t v) { return wb_put(w, &v, 8); }
static bool wb_str(pare_gguf_writer *w, const char *s, uint64_t n) { return wb_u64(w, n) && wb_put(w, s, (size_t)n); }

static bool wb_scalar(pare_gguf_writer *w, const pare_kv *kv) {
    uint8_t b[8];
    size_t n = pare_meta_type_size(kv->type);
    switch (kv->type) {
    case PARE_META_U8: case PARE_META_BOOL: b[0] = (uint8_t)kv->v.u64; break;
    case PARE_META_I8: b[0] = (uint8_t)(int8_t)kv->v.i64; break;
    case PARE_META_U16: { uint16_t v = (uint16_t)kv->v.u64; memcpy(b, &v, 2); break; }
    case PARE_META_I16: { int16_t v = (int16_t)kv->v.i64; memcpy(b, &v, 2); break; }
    case PARE_META_U32: { uint32_t v = (uint32_t)kv->v.u64; memcpy(b, &v, 4); break; }
    case PARE_META_I32: { int32_t v = (int32_t)kv->v.i64; memcpy(b, &v, 4); break; }
    case PARE_META_F32: { float v = (float)kv->v.f64; memcpy(b, &v, 4); break; }
    case PARE_META_U64: memcpy(b, &kv->v.u64, 8); break;
    case PARE_META_I64: memcpy(b, &kv->v.i64, 8); break;
    case PARE_META_F64: memcpy(b, &kv->v.f64, 8); break;
    default: return false;
    }
    return wb_put(w, b, n);
}

static bool wb_kv(pare_gguf_writer *w, const pare_kv *kv) {
    if (!wb_str(w, kv->key, strlen(kv->key)) || !wb_u32(w, (uint32_t)kv->type)) return false;
    if (kv->type == PARE_META_STRING) return wb_str(w, kv->str.s, kv->str.len);
    if (kv->type != PARE_META_ARRAY) return wb_scalar(w, kv);
    if (!wb_u32(w, (uint32_t)kv->elem_type) || !wb_u64(w, kv->n)) return false;
    if (kv->elem_type == PARE_META_STRING) {
        const pare_str *s = kv->arr;
        for (uint64_t i = 0; i < kv->n; i++)
            if (!wb_str(w, s[i].s, s[i].len)) return false;
        return true;
    }
    return wb_put(w, kv->arr, (size_t)(kv->n * pare_meta_type_size(kv->elem_type)));
}

pare_status pare_gguf_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors,
                                  size_t n_tensors, bool force, const char *const *inputs, size_t n_inputs,
                                  pare_gguf_writer **out, pare_err *err) {
    *out = NULL;
    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    const pare_kv *al = meta ? pare_meta_get(meta, "general.alignment") : NULL;
    if (al) {
        FAIL_IF(al->type != PARE_META_U32 || al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)), PARE_EUSAGE,
                "%s: general.alignment must be a u32 power of two", path);
        alignment = al->v.u64;
    }
    for (size_t i = 0; i < n_tensors; i++) {
        FAIL_IF(strlen(tensors[i].name) > PARE_GGUF_MAX_NAME, PARE_EUNSUPPORTED,
                "%s: tensor name '%s' is longer than GGUF's %d bytes", path, tensors[i].name, PARE_GGUF_MAX_NAME);
        FAIL_IF(tensors[i].type >= PARE_TYPE_GGML_COUNT, PARE_EUNSUPPORTED, "%s: GGUF cannot hold tensor '%s' of type %s",
                path, tensors[i].name, pare_type_name(tensors[i].type));
    }
    pare_gguf_writer *w = calloc(1, sizeof *w);
    FAIL_IF(!w, PARE_ENOMEM, "out of memory");
    w->alignment = alignment;
    w->n = n_tensors;
    w->sizes = calloc(n_tensors ? n_tensors : 1, sizeof *w->sizes);
    bool ok = w->sizes && wb_put(w, "GGUF", 4) && wb_u32(w, 3) && wb_u64(w, n_tensors) && wb_u64(w, meta ? meta->n : 0);
    for (size_t i = 0; ok && meta && i < meta->n; i++) ok = wb_kv(w, &meta->kv[i]);
    uint64_t off = 0;
    for (size_t i = 0; ok && i < n_tensors; i++) {
        const pare_tensor *t = &tensors[i];
        ok = wb_str(w, t->name, strlen(t->name)) && wb_u32(w, (uint32_t)t->n_dims);
        for (int d = 0; ok && d < t->n_dims; d++) ok = wb_u64(w, (uint64_t)t->ne[d]);
        ok = ok && wb_u32(w, (uint32_t)t->type) && wb_u64(w, off);
        w->sizes[i] = t->n_bytes;
        off = pad_to(off + t->n_bytes, alignment);
    }
    if (!ok) {
        pare_gguf_writer_free(w);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    /* ggml pads to the data section only when there is one. */
    w->data_start = n_tensors ? pad_to(w->len, alignment) : w->len;
    pare_status st = pare_outfile_open(path, force, inputs, n_inputs, &w->f, err);
    if (!st) st = pare_outfile_write(w->f, w->buf, w->len, err);
    if (!st) st = pare_outfile_pad_to(w->f, w->data_start, err);
    free(w->buf);
    w->buf = NULL;
    if (st) {
        pare_gguf_writer_free(w);
        return st;
    }
    *out = w;
    return PARE_OK;
}

pare_status pare_gguf_writer_add(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err) {
    FAIL_IF(w->next >= w->n, PARE_EINTERNAL, "gguf writer: more tensors than announced");
    FAIL_IF(n_bytes != w->sizes[w->next], PARE_EINTERNAL, "gguf writer: tensor %zu has %llu bytes, announced %llu",
            w->next, (unsigned long long)n_bytes, (unsigned long long)w->sizes[w->next]);
    if (n_bytes) TRY(pare_outfile_write(w->f, data, (size_t)n_bytes, err));
    TRY(pare_outfile_pad_to(w->f, w->data_start + pad_to(pare_outfile_tell(w->f) - w->data_start, w->alignment), err));
    w->next++;
    return PARE_OK;
}

pare_status pare_gguf_writer_finish(pare_gguf_writer *w, pare_err *err) {
    FAIL_IF(w->next != w->n, PARE_EINTERNAL, "gguf writer: %zu of %zu tensors written", w->next, w->n);
    return pare_outfile_commit(w->f, err);
}

void pare_gguf_writer_free(pare_gguf_writer *w) {
    if (!w) return;
    pare_outfile_free(w->f);
    free(w->sizes);
    free(w->buf);
    free(w);
}

pare_status pare_gguf_save(const pare_model *m, const char *path, bool force, pare_err *err) {
    const char **inputs = calloc(m->n_maps + 1, sizeof *inputs);
    FAIL_IF(!inputs, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_maps; i++) inputs[i] = m->maps[i]->path;
    pare_gguf_writer *w = NULL;
    pare_status st = pare_gguf_writer_open(path, &m->meta, m->tensors, m->n_tensors, force, inputs, m->n_maps, &w, err);
    free(inputs);
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        const void *p;
        void *tmp;
        st = pare_tensor_bytes(t, &p, &tmp, err);
        if (!st) st = pare_gguf_writer_add(w, p, t->n_bytes, err);
        free(tmp);
        pare_model_release_tensor(m, t);
    }
    if (!st) st = pare_gguf_writer_finish(w, err);
    pare_gguf_writer_free(w);
    return st;
}
