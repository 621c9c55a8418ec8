/* formats/gguf.c - GGUF reader: versions 2 and 3, split files. The format and the limits
 * are described in gguf.h; the writer is in gguf_write.c.
 *
 * Structure: the file is mapped; a cursor (rd) walks the header, checking every length
 * against the bytes left before copying anything. Metadata goes straight into the
 * pare_meta's array (appending through pare_meta_set_* would search the keys each time,
 * which a file with a million keys turns into 10^12 comparisons); tensors straight into
 * the model's tensor array; duplicates are found with a pare_strset. Arrays grow as
 * entries are actually read rather than being sized from the counts in the header, so
 * memory follows the bytes parsed, whatever a header claims. */
#include "formats/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest encodings, to bound counts by the bytes left: a KV is an 8-byte key length,
 * a 1-byte key, a 4-byte type and a 1-byte value; a tensor info an 8-byte name length,
 * a 4-byte n_dims, one 8-byte dim, a 4-byte type and an 8-byte offset. */
#define GGUF_MIN_KV_BYTES 14
#define GGUF_MIN_TENSOR_INFO_BYTES 32

/* ------------------------------------------------------------------------ cursor */

typedef struct {
    const char *path;
    const uint8_t *p;
    uint64_t size, pos;
} rd;

/* What is being read, for messages: "key 3 'general.name'" or "tensor 12 'blk.0...'". */
typedef struct {
    const char *kind; /* "key", "tensor" or NULL for the header */
    uint64_t index;
    const char *name; /* NULL until known */
    size_t name_len;
} loc;

/* Fails with PARE_EINPUT and "PATH: KIND INDEX 'NAME': MESSAGE". */
static pare_status bad_at(pare_err *err, const char *src, int line, const rd *r, const loc *l, const char *fmt,
                          ...) __attribute__((format(printf, 6, 7)));
static pare_status bad_at(pare_err *err, const char *src, int line, const rd *r, const loc *l, const char *fmt,
                          ...) {
    char msg[PARE_ERR_MSG_MAX], where[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l && l->kind && l->name)
        snprintf(where, sizeof where, "%s %llu '%.*s': ", l->kind, (unsigned long long)l->index,
                 (int)(l->name_len > 160 ? 160 : l->name_len), l->name);
    else if (l && l->kind)
        snprintf(where, sizeof where, "%s %llu: ", l->kind, (unsigned long long)l->index);
    return pare_err_set_at(err, src, line, PARE_EINPUT, "%s: %s%s", r->path, where, msg);
}
#define BAD(r, l, ...) bad_at(err, __FILE__, __LINE__, (r), (l), __VA_ARGS__)

static uint64_t left(const rd *r) { return r->size - r->pos; }

static pare_status rd_need(rd *r, const loc *l, uint64_t n, const char *what, pare_err *err) {
    if (n <= left(r)) return PARE_OK;
    return BAD(r, l, "truncated: %s at offset %llu needs %llu bytes, only %llu left (file size %llu)", what,
               (unsigned long long)r->pos, (unsigned long long)n, (unsigned long long)left(r),
               (unsigned long long)r->size);
}

static pare_status rd_u32(rd *r, const loc *l, uint32_t *v, const char *what, pare_err *err) {
    TRY(rd_need(r, l, 4, what, err));
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return PARE_OK;
}

static pare_status rd_u64(rd *r, const loc *l, uint64_t *v, const char *what, pare_err *err) {
    TRY(rd_need(r, l, 8, what, err));
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return PARE_OK;
}

/* A length-prefixed string in place: *s points into the mapping (not NUL-terminated). */
static pare_status rd_str(rd *r, const loc *l, uint64_t max, const char **s, uint64_t *len, const char *what,
                          pare_err *err) {
    uint64_t n;
    TRY(rd_u64(r, l, &n, what, err));
    if (n > max)
        return BAD(r, l, "%s at offset %llu is %llu bytes long (at most %llu)", what,
                   (unsigned long long)(r->pos - 8), (unsigned long long)n, (unsigned long long)max);
    TRY(rd_need(r, l, n, what, err));
    *s = (const char *)r->p + r->pos;
    *len = n;
    r->pos += n;
    return PARE_OK;
}

/* Room for element n of array p with *cap elements (doubling from 64, never beyond max).
 * Returns the possibly moved array, or NULL when out of memory (p is then unchanged). */
static void *grow(void *p, size_t *cap, size_t n, size_t elem, uint64_t max) {
    if (n < *cap) return p;
    size_t c = *cap ? *cap * 2 : 64;
    if (c > max) c = (size_t)max;
    if (c <= n) c = n + 1;
    void *np = realloc(p, c * elem);
    if (np) *cap = c;
    return np;
}

static char *copy_bytes(const char *s, uint64_t n) {
    char *c = malloc((size_t)n + 1);
    if (!c) return NULL;
    if (n) memcpy(c, s, (size_t)n);
    c[n] = 0;
    return c;
}

/* ------------------------------------------------------------------------ metadata */

/* One scalar of type t into kv (unsigned and BOOL in v.u64, signed in v.i64, floats in v.f64). */
static pare_status rd_scalar(rd *r, const loc *l, pare_meta_type t, pare_kv *kv, pare_err *err) {
    size_t n = pare_meta_type_size(t);
    uint8_t b[8] = {0};
    TRY(rd_need(r, l, n, "the value", err));
    memcpy(b, r->p + r->pos, n);
    switch (t) {
    case PARE_META_U8: kv->v.u64 = b[0]; break;
    case PARE_META_BOOL:
        if (b[0] > 1) return BAD(r, l, "bool value %u at offset %llu is neither 0 nor 1", b[0], (unsigned long long)r->pos);
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
    default: return pare_err_set(err, PARE_EINTERNAL, "%s: type %d is not a scalar", r->path, (int)t);
    }
    r->pos += n;
    kv->type = t;
    return PARE_OK;
}

static pare_status rd_str_array(rd *r, const loc *l, uint64_t n, pare_kv *kv, pare_err *err) {
    /* Each string takes at least its 8-byte length: bound n before allocating. */
    if (n > left(r) / 8)
        return BAD(r, l, "an array of %llu strings cannot fit in the %llu bytes left", (unsigned long long)n,
                   (unsigned long long)left(r));
    kv->type = PARE_META_ARRAY;
    kv->elem_type = PARE_META_STRING;
    kv->n = 0; /* strings read so far: what the meta frees if reading stops */
    size_t cap = 0;
    if (!(kv->arr = grow(NULL, &cap, 0, sizeof(pare_str), n ? n : 1)))
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    uint64_t start = r->pos;
    for (uint64_t i = 0; i < n; i++) {
        const char *p;
        uint64_t len;
        TRY(rd_str(r, l, PARE_GGUF_MAX_STRING, &p, &len, "a string element", err));
        if (r->pos - start > PARE_GGUF_MAX_ARRAY)
            return BAD(r, l, "array of strings is larger than %llu bytes", (unsigned long long)PARE_GGUF_MAX_ARRAY);
        void *na = grow(kv->arr, &cap, (size_t)i, sizeof(pare_str), n);
        if (!na) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
        kv->arr = na;
        pare_str *s = (pare_str *)kv->arr + i;
        if (!(s->s = copy_bytes(p, len))) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
        s->len = len;
        kv->n = i + 1;
    }
    return PARE_OK;
}

static pare_status rd_array(rd *r, const loc *l, pare_kv *kv, pare_err *err) {
    uint32_t et;
    uint64_t n;
    TRY(rd_u32(r, l, &et, "the array element type", err));
    TRY(rd_u64(r, l, &n, "the array length", err));
    if (et == PARE_META_ARRAY) return BAD(r, l, "arrays of arrays are not allowed");
    if (et >= PARE_META_COUNT)
        return BAD(r, l, "unknown array element type %u at offset %llu", et, (unsigned long long)(r->pos - 12));
    if (et == PARE_META_STRING) return rd_str_array(r, l, n, kv, err);
    size_t es = pare_meta_type_size((pare_meta_type)et);
    if (n > PARE_GGUF_MAX_ARRAY / es)
        return BAD(r, l, "array of %llu %s elements is larger than %llu bytes", (unsigned long long)n,
                   pare_meta_type_name((pare_meta_type)et), (unsigned long long)PARE_GGUF_MAX_ARRAY);
    TRY(rd_need(r, l, n * es, "the array elements", err));
    const uint8_t *p = r->p + r->pos;
    if (et == PARE_META_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (p[i] > 1) return BAD(r, l, "bool element %llu is %u, neither 0 nor 1", (unsigned long long)i, p[i]);
    kv->arr = malloc(n ? (size_t)(n * es) : 1);
    if (!kv->arr) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    if (n) memcpy(kv->arr, p, (size_t)(n * es));
    kv->type = PARE_META_ARRAY;
    kv->elem_type = (pare_meta_type)et;
    kv->n = n;
    r->pos += n * es;
    return PARE_OK;
}

static pare_status rd_kv(rd *r, uint64_t i, pare_kv *kv, pare_strset *keys, pare_err *err) {
    loc l = {"key", i, NULL, 0};
    const char *k;
    uint64_t klen;
    uint32_t type;
    TRY(rd_str(r, &l, PARE_GGUF_MAX_KEY, &k, &klen, "the key", err));
    l.name = k;
    l.name_len = (size_t)klen;
    if (klen == 0) return BAD(r, &l, "empty key at offset %llu", (unsigned long long)(r->pos - 8));
    if (memchr(k, 0, (size_t)klen)) return BAD(r, &l, "the key contains a NUL byte");
    if (!(kv->key = copy_bytes(k, klen))) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    int added = pare_strset_add(keys, kv->key, (size_t)klen);
    if (added < 0) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    if (added == 0) return BAD(r, &l, "duplicate key");
    TRY(rd_u32(r, &l, &type, "the value type", err));
    if (type >= PARE_META_COUNT)
        return BAD(r, &l, "unknown value type %u at offset %llu", type, (unsigned long long)(r->pos - 4));
    if (type == PARE_META_ARRAY) return rd_array(r, &l, kv, err);
    if (type == PARE_META_STRING) {
        const char *s;
        uint64_t len;
        TRY(rd_str(r, &l, PARE_GGUF_MAX_STRING, &s, &len, "the string value", err));
        if (!(kv->str.s = copy_bytes(s, len))) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
        kv->str.len = len;
        kv->type = PARE_META_STRING;
        return PARE_OK;
    }
    return rd_scalar(r, &l, (pare_meta_type)type, kv, err);
}

/* Reads n_kv KVs into the empty `meta`, which owns whatever was read even on failure. */
static pare_status rd_kvs(rd *r, uint64_t n_kv, pare_meta *meta, pare_err *err) {
    if (n_kv > left(r) / GGUF_MIN_KV_BYTES)
        return BAD(r, NULL, "%llu metadata keys cannot fit in the %llu bytes left after the header",
                   (unsigned long long)n_kv, (unsigned long long)left(r));
    pare_strset *keys = pare_strset_new(n_kv < 4096 ? (size_t)n_kv : 4096);
    if (!keys) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    pare_status st = PARE_OK;
    for (uint64_t i = 0; i < n_kv && !st; i++) {
        pare_kv *nk = grow(meta->kv, &meta->cap, meta->n, sizeof *meta->kv, n_kv);
        if (!nk) {
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory for %llu keys", r->path, (unsigned long long)n_kv);
            break;
        }
        meta->kv = nk;
        memset(&meta->kv[i], 0, sizeof meta->kv[i]);
        meta->n++; /* counted first so that pare_meta_free releases a half-read entry */
        st = rd_kv(r, i, &meta->kv[i], keys, err);
    }
    pare_strset_free(keys);
    return st;
}

/* general.alignment: absent (32), or a U32 power of two. */
static pare_status rd_alignment(const rd *r, const pare_meta *meta, uint64_t *out, pare_err *err) {
    *out = PARE_GGUF_DEFAULT_ALIGNMENT;
    long i = pare_meta_find(meta, "general.alignment");
    if (i < 0) return PARE_OK;
    const pare_kv *kv = &meta->kv[i];
    loc l = {"key", (uint64_t)i, kv->key, strlen(kv->key)};
    if (kv->type != PARE_META_U32) return BAD(r, &l, "must be a u32, not %s", pare_meta_type_name(kv->type));
    /* 0 divided Ollama's reader by zero (CVE-2025-0317); a huge one makes the padding
     * arithmetic and the "no trailing bytes" rule meaningless. */
    if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)))
        return BAD(r, &l, "alignment %llu is not a power of two", (unsigned long long)kv->v.u64);
    if (kv->v.u64 > PARE_GGUF_MAX_ALIGNMENT)
        return BAD(r, &l, "alignment %llu is larger than %u", (unsigned long long)kv->v.u64, PARE_GGUF_MAX_ALIGNMENT);
    *out = kv->v.u64;
    return PARE_OK;
}

/* ------------------------------------------------------------------------ tensor infos */

static pare_status rd_tensor_info(rd *r, uint64_t i, pare_tensor *t, pare_strset *names, pare_err *err) {
    loc l = {"tensor", i, NULL, 0};
    const char *name;
    uint64_t nlen;
    TRY(rd_str(r, &l, PARE_GGUF_MAX_NAME, &name, &nlen, "the tensor name", err));
    l.name = name;
    l.name_len = (size_t)nlen;
    if (memchr(name, 0, (size_t)nlen)) return BAD(r, &l, "the name contains a NUL byte");
    uint32_t n_dims, type;
    TRY(rd_u32(r, &l, &n_dims, "n_dims", err));
    if (n_dims < 1 || n_dims > PARE_MAX_DIMS)
        return BAD(r, &l, "%u dimensions at offset %llu (1 to %d)", n_dims, (unsigned long long)(r->pos - 4),
                   PARE_MAX_DIMS);
    int64_t ne[PARE_MAX_DIMS] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t v;
        TRY(rd_u64(r, &l, &v, "a dimension", err));
        if (v > (uint64_t)INT64_MAX)
            return BAD(r, &l, "dimension %u is %lld (negative)", d, (long long)(int64_t)v);
        ne[d] = (int64_t)v;
    }
    TRY(rd_u32(r, &l, &type, "the type", err));
    if (type >= PARE_TYPE_GGML_COUNT || !pare_type_valid((int)type))
        return BAD(r, &l, "unknown ggml type %u at offset %llu", type, (unsigned long long)(r->pos - 4));
    uint64_t off;
    TRY(rd_u64(r, &l, &off, "the data offset", err));
    /* Shape checks (dims >= 0, overflow, whole blocks per row) and the byte size. */
    pare_err e = {0};
    uint64_t nb;
    if (pare_tensor_nbytes((pare_type)type, (int)n_dims, ne, &nb, &e)) return BAD(r, &l, "%s", e.msg);
    char cname[PARE_GGUF_MAX_NAME + 1];
    memcpy(cname, name, (size_t)nlen);
    cname[nlen] = 0;
    TRY(pare_tensor_init(t, cname, (pare_type)type, (int)n_dims, ne, err));
    t->file_offset = off; /* relative to the data section until rd_data */
    int added = pare_strset_add(names, t->name, (size_t)nlen);
    if (added < 0) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    if (added == 0) return BAD(r, &l, "duplicate tensor name");
    return PARE_OK;
}

/* Appends n_t tensor infos to m. */
static pare_status rd_tensor_infos(rd *r, uint64_t n_t, pare_model *m, pare_err *err) {
    if (n_t > left(r) / GGUF_MIN_TENSOR_INFO_BYTES)
        return BAD(r, NULL, "%llu tensors cannot fit in the %llu bytes left after the metadata",
                   (unsigned long long)n_t, (unsigned long long)left(r));
    pare_strset *names = pare_strset_new(n_t < 4096 ? (size_t)n_t : 4096);
    if (!names) return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", r->path);
    pare_status st = PARE_OK;
    uint64_t max = m->n_tensors + n_t;
    for (uint64_t i = 0; i < n_t && !st; i++) {
        pare_tensor *nt = grow(m->tensors, &m->cap_tensors, m->n_tensors, sizeof *m->tensors, max);
        if (!nt) {
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory for %llu tensors", r->path, (unsigned long long)n_t);
            break;
        }
        m->tensors = nt;
        pare_tensor *t = &m->tensors[m->n_tensors];
        memset(t, 0, sizeof *t);
        st = rd_tensor_info(r, i, t, names, err);
        if (st) pare_tensor_clear(t);
        else m->n_tensors++;
    }
    pare_strset_free(names);
    return st;
}

static uint64_t pad_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }
static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* The data section: where it starts, offsets as ggml requires, bytes inside the file.
 * `t` are this file's n tensors; their offsets become absolute. */
static pare_status rd_data(rd *r, pare_tensor *t, size_t n, uint64_t alignment, int map_index, pare_err *err) {
    uint64_t data = pad_up(r->pos, alignment), expect = 0;
    if (n == 0) {
        /* Vocabulary-only files end right after the metadata, or after its padding. */
        if (r->size > data)
            return BAD(r, NULL, "%llu bytes after the metadata and its padding (a file without tensors ends at %llu): "
                       "trailing data is refused (GGUF+ZIP polyglots)",
                       (unsigned long long)(r->size - data), (unsigned long long)data);
        return PARE_OK;
    }
    if (data > r->size)
        return BAD(r, NULL, "the data section would start at %llu, past the end of the file (%llu)",
                   (unsigned long long)data, (unsigned long long)r->size);
    for (size_t i = 0; i < n; i++) {
        loc l = {"tensor", i, t[i].name, strlen(t[i].name)};
        uint64_t off = t[i].file_offset, nb = t[i].n_bytes;
        if (off % alignment)
            return BAD(r, &l, "offset %llu is not a multiple of the alignment %llu", (unsigned long long)off,
                       (unsigned long long)alignment);
        if (off != expect)
            return BAD(r, &l, "offset %llu, expected %llu (tensors must follow each other, each padded to %llu: %s)",
                       (unsigned long long)off, (unsigned long long)expect, (unsigned long long)alignment,
                       off > expect ? "gap" : "overlap");
        if (off > r->size - data || nb > r->size - data - off)
            return BAD(r, &l, "data ends at %llu, past the end of the file (%llu)",
                       (unsigned long long)sat_add(sat_add(data, off), nb), (unsigned long long)r->size);
        t[i].file_offset = data + off;
        t[i].data = r->p + data + off;
        t[i].source = map_index;
        expect = pad_up(off + nb, alignment); /* off + nb <= size: no overflow */
    }
    /* The last tensor may be padded or not; anything more is another file hidden behind
     * this one (a GGUF+ZIP polyglot that other tools would read differently). */
    if (r->size - data > expect)
        return BAD(r, NULL, "%llu bytes after the last tensor's data and padding (the data ends at %llu): trailing data "
                   "is refused (GGUF+ZIP polyglots)",
                   (unsigned long long)(r->size - data - expect), (unsigned long long)(data + expect));
    return PARE_OK;
}

/* ------------------------------------------------------------------------ one file */

static pare_status rd_header(rd *r, uint32_t *version, uint64_t *n_t, uint64_t *n_kv, pare_err *err) {
    TRY(rd_need(r, NULL, 4, "the magic", err));
    if (memcmp(r->p, PARE_GGUF_MAGIC, 4)) {
        char m[5];
        for (int i = 0; i < 4; i++) m[i] = (r->p[i] >= 32 && r->p[i] < 127) ? (char)r->p[i] : '?';
        m[4] = 0;
        return BAD(r, NULL, "not a GGUF file (magic '%s', expected 'GGUF')", m);
    }
    r->pos = 4;
    TRY(rd_u32(r, NULL, version, "the version", err));
    uint32_t v = *version;
    if (v != 0 && (v & 0xffff) == 0)
        return pare_err_set(err, PARE_EUNSUPPORTED, "%s: GGUF version %u looks byte-swapped: big-endian GGUF files "
                            "are not supported", r->path, v);
    if (v == 1) return BAD(r, NULL, "GGUF version 1 is no longer supported (only 2 and 3; reconvert the model)");
    if (v != 2 && v != 3) return BAD(r, NULL, "unknown GGUF version %u (pare reads 2 and 3)", v);
    TRY(rd_u64(r, NULL, n_t, "the tensor count", err));
    TRY(rd_u64(r, NULL, n_kv, "the metadata count", err));
    /* A first, loose bound so that a nonsense count fails before any work. */
    if (*n_t > left(r) / GGUF_MIN_TENSOR_INFO_BYTES)
        return BAD(r, NULL, "%llu tensors cannot fit in a file of %llu bytes", (unsigned long long)*n_t,
                   (unsigned long long)r->size);
    return PARE_OK;
}

typedef struct {
    uint32_t version;
    uint64_t alignment;
    size_t first_tensor, n_tensors;
} part_info;

/* Reads one GGUF file: its map is added to m, its tensors appended to m->tensors, its KVs
 * put into the empty `meta`. */
static pare_status load_part(const char *path, pare_model *m, pare_meta *meta, part_info *pi, pare_err *err) {
    pare_map *map = NULL;
    TRY(pare_map_open(path, &map, err));
    int idx;
    TRY(pare_model_add_map(m, map, &idx, err));
    rd r = {path, map->data, map->size, 0};
    uint64_t n_t, n_kv;
    TRY(rd_header(&r, &pi->version, &n_t, &n_kv, err));
    TRY(rd_kvs(&r, n_kv, meta, err));
    TRY(rd_alignment(&r, meta, &pi->alignment, err));
    pi->first_tensor = m->n_tensors;
    TRY(rd_tensor_infos(&r, n_t, m, err));
    pi->n_tensors = m->n_tensors - pi->first_tensor;
    /* m->tensors is NULL while no part has tensors: NULL + 0 is undefined in C. */
    return rd_data(&r, pi->n_tensors ? m->tensors + pi->first_tensor : NULL, pi->n_tensors, pi->alignment, idx, err);
}

/* ------------------------------------------------------------------------ split files */

static bool all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return n > 0;
}

/* "DIR/NAME-00002-of-00005.gguf" -> prefix length, part 2, count 5 (as written: 1-based).
 * The numbers have at least 5 digits, as llama.cpp's "%05d". */
static bool split_name(const char *path, size_t *prefix_len, long *no, long *count) {
    size_t n = strlen(path);
    if (!pare_str_ends_with(path, ".gguf")) return false;
    size_t e = n - 5, b = e; /* the count's digits are [b, e) */
    while (b > 0 && path[b - 1] >= '0' && path[b - 1] <= '9') b--;
    if (e - b < 5 || e - b > 9 || b < 4 || memcmp(path + b - 4, "-of-", 4)) return false;
    size_t e2 = b - 4, b2 = e2;
    while (b2 > 0 && path[b2 - 1] >= '0' && path[b2 - 1] <= '9') b2--;
    if (e2 - b2 < 5 || e2 - b2 > 9 || b2 < 1 || path[b2 - 1] != '-' || !all_digits(path + b2, e2 - b2)) return false;
    *no = strtol(path + b2, NULL, 10);
    *count = strtol(path + b, NULL, 10);
    *prefix_len = b2 - 1;
    return true;
}

char *pare_gguf_split_path(const char *prefix, int part, int count) {
    size_t n = strlen(prefix) + 64;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s-%05d-of-%05d.gguf", prefix, part + 1, count);
    return p;
}

/* split.no and split.count of a part must say part k of count; split.tensors.count must
 * agree with the first part's (first_total, -1 for part 0 itself). */
static pare_status check_part_keys(const char *path, const pare_meta *meta, uint64_t k, uint64_t count,
                                   int64_t first_total, pare_err *err) {
    uint64_t no = UINT64_MAX, c = 0;
    FAIL_IF(!pare_meta_get_u64(meta, "split.no", &no) || no != k, PARE_EINPUT,
            "%s: split.no is %lld, expected %llu (this should be part %llu of %llu)", path,
            no == UINT64_MAX ? -1LL : (long long)no, (unsigned long long)k, (unsigned long long)k + 1,
            (unsigned long long)count);
    FAIL_IF(!pare_meta_get_u64(meta, "split.count", &c) || c != count, PARE_EINPUT,
            "%s: split.count is %llu, but the first part says %llu", path, (unsigned long long)c,
            (unsigned long long)count);
    int64_t tc = -1;
    FAIL_IF(first_total >= 0 && (!pare_meta_get_i64(meta, "split.tensors.count", &tc) || tc != first_total),
            PARE_EINPUT, "%s: split.tensors.count is %lld, but the first part says %lld", path, (long long)tc,
            (long long)first_total);
    return PARE_OK;
}

/* Every part of a split model into the empty m, part 1 first. */
static pare_status load_parts(const char *path, uint64_t count, pare_model *m, pare_err *err) {
    size_t plen;
    long no, named;
    FAIL_IF(!split_name(path, &plen, &no, &named) || (uint64_t)named != count || no < 1 || (uint64_t)no > count,
            PARE_EINPUT, "%s: split.count is %llu but the file is not named NAME-0000i-of-%05llu.gguf", path,
            (unsigned long long)count, (unsigned long long)count);
    FAIL_IF(count > PARE_GGUF_MAX_SPLITS, PARE_EINPUT, "%s: split.count %llu is more than %d", path,
            (unsigned long long)count, PARE_GGUF_MAX_SPLITS);
    char *prefix = copy_bytes(path, plen);
    FAIL_IF(!prefix, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    int64_t total = -1;
    for (uint64_t k = 0; k < count && !st; k++) {
        char *part = pare_gguf_split_path(prefix, (int)k, (int)count);
        pare_meta pm = {0};
        part_info pi;
        if (!part) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = load_part(part, m, k == 0 ? &m->meta : &pm, &pi, err);
        if (!st) st = check_part_keys(part, k == 0 ? &m->meta : &pm, k, count, k == 0 ? -1 : total, err);
        if (!st && k == 0) {
            m->version = pi.version;
            m->alignment = pi.alignment;
            if (!pare_meta_get_i64(&m->meta, "split.tensors.count", &total)) total = -1;
        }
        /* The parts are one model: they must agree on the alignment (a reader using the
         * first part's for all would otherwise compute wrong offsets). */
        if (!st && k > 0 && pi.alignment != m->alignment)
            st = pare_err_set(err, PARE_EINPUT, "%s: general.alignment %llu differs from the first part's %llu", part,
                              (unsigned long long)pi.alignment, (unsigned long long)m->alignment);
        if (st && part && err && !strstr(err->msg, part)) pare_err_prefix(err, "%s", part);
        if (st && part && strcmp(part, path))
            pare_err_prefix(err, "%s: part %llu of %llu", path, (unsigned long long)k + 1, (unsigned long long)count);
        pare_meta_free(&pm);
        free(part);
    }
    free(prefix);
    TRY(st);
    FAIL_IF(total >= 0 && (uint64_t)total != m->n_tensors, PARE_EINPUT,
            "%s: split.tensors.count says %lld tensors, the %llu parts hold %zu", path, (long long)total,
            (unsigned long long)count, m->n_tensors);
    /* Names must be unique across the parts too. */
    pare_strset *names = pare_strset_new(m->n_tensors);
    FAIL_IF(!names, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        int added = pare_strset_add(names, m->tensors[i].name, strlen(m->tensors[i].name));
        if (added < 0) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (added == 0) st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' is in two parts", path, m->tensors[i].name);
    }
    pare_strset_free(names);
    TRY(st);
    pare_meta_remove(&m->meta, "split.no");
    pare_meta_remove(&m->meta, "split.count");
    pare_meta_remove(&m->meta, "split.tensors.count");
    return PARE_OK;
}

/* ------------------------------------------------------------------------ metadata used as bounds */

/* Keys other code uses as counts or indices, checked once here so that no consumer
 * trusts them: the vocabulary arrays agree in length (llama.cpp indexed scores and types
 * by the token count), token strings are short (CVE-2025-49847: a huge token length
 * overflowed llama.cpp's piece buffer), special-token ids lie inside the vocabulary,
 * block and head counts are small positive numbers, per-layer arrays have block_count
 * entries. Keys of the wrong type are refused too: a consumer reading them would
 * otherwise silently fall back to a default. */
#define GGUF_MAX_TOKEN_BYTES 65536u
#define GGUF_MAX_BLOCKS 65536u
#define GGUF_MAX_HEADS 65536u

static const char *const special_id_keys[] = {
    "tokenizer.ggml.bos_token_id",    "tokenizer.ggml.eos_token_id",    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id",   "tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id",
    "tokenizer.ggml.middle_token_id", "tokenizer.ggml.eot_token_id",    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id",
    "tokenizer.ggml.fim_pad_token_id", "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
};

static bool type_is_int(pare_meta_type t) {
    return t <= PARE_META_I32 || t == PARE_META_U64 || t == PARE_META_I64;
}
static bool meta_is_int(const pare_kv *kv) { return type_is_int(kv->type); }
static bool meta_is_signed(pare_meta_type t) {
    return t == PARE_META_I8 || t == PARE_META_I16 || t == PARE_META_I32 || t == PARE_META_I64;
}

/* Element i of an integer array as a signed 64-bit value. */
static int64_t arr_int(const pare_kv *kv, uint64_t i) {
    const uint8_t *p = (const uint8_t *)kv->arr + i * pare_meta_type_size(kv->elem_type);
    switch (kv->elem_type) {
    case PARE_META_U8: return p[0];
    case PARE_META_I8: return (int8_t)p[0];
    case PARE_META_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case PARE_META_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case PARE_META_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case PARE_META_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case PARE_META_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? -1 : (int64_t)v; }
    case PARE_META_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return -1;
    }
}

/* A count key: absent, or an integer in [lo, hi]; or, when per_layer, an array of such
 * integers with n_layers entries (n_layers 0: unknown). */
static pare_status check_count(const char *path, const pare_meta *meta, const char *key, int64_t lo, int64_t hi,
                               bool per_layer, uint64_t n_layers, pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, key);
    if (!kv) return PARE_OK;
    if (kv->type == PARE_META_ARRAY && per_layer) {
        FAIL_IF(!type_is_int(kv->elem_type), PARE_EINPUT, "%s: key '%s': an array of %s, not of integers", path, key,
                pare_meta_type_name(kv->elem_type));
        FAIL_IF(n_layers && kv->n != n_layers, PARE_EINPUT,
                "%s: key '%s': %llu per-layer values for block_count %llu layers", path, key,
                (unsigned long long)kv->n, (unsigned long long)n_layers);
        for (uint64_t i = 0; i < kv->n; i++) {
            int64_t v = arr_int(kv, i);
            FAIL_IF(v < 0 || v > hi, PARE_EINPUT, "%s: key '%s': layer %llu value %lld is outside [0, %lld]", path, key,
                    (unsigned long long)i, (long long)v, (long long)hi);
        }
        return PARE_OK;
    }
    FAIL_IF(!meta_is_int(kv), PARE_EINPUT, "%s: key '%s' is a %s, not an integer", path, key,
            pare_meta_type_name(kv->type));
    int64_t v = meta_is_signed(kv->type) ? kv->v.i64 : kv->v.u64 > INT64_MAX ? INT64_MAX : (int64_t)kv->v.u64;
    FAIL_IF(v < lo || v > hi, PARE_EINPUT, "%s: key '%s' is %lld, outside [%lld, %lld]", path, key, (long long)v,
            (long long)lo, (long long)hi);
    return PARE_OK;
}

static pare_status check_vocab(const char *path, const pare_meta *meta, pare_err *err) {
    const pare_kv *tok = pare_meta_get(meta, "tokenizer.ggml.tokens");
    uint64_t n_vocab = 0;
    if (tok) {
        FAIL_IF(tok->type != PARE_META_ARRAY || tok->elem_type != PARE_META_STRING, PARE_EINPUT,
                "%s: key 'tokenizer.ggml.tokens' is not an array of strings", path);
        n_vocab = tok->n;
        FAIL_IF(n_vocab > INT32_MAX, PARE_EINPUT, "%s: key 'tokenizer.ggml.tokens' has %llu tokens (at most 2^31-1)",
                path, (unsigned long long)n_vocab);
        const pare_str *ts = tok->arr;
        for (uint64_t i = 0; i < n_vocab; i++)
            FAIL_IF(ts[i].len > GGUF_MAX_TOKEN_BYTES, PARE_EINPUT,
                    "%s: key 'tokenizer.ggml.tokens': token %llu is %llu bytes long (at most %u; CVE-2025-49847)",
                    path, (unsigned long long)i, (unsigned long long)ts[i].len, GGUF_MAX_TOKEN_BYTES);
    }
    static const struct { const char *key; pare_meta_type type; } per_token[] = {
        {"tokenizer.ggml.scores", PARE_META_F32}, {"tokenizer.ggml.token_type", PARE_META_I32}};
    for (size_t k = 0; k < sizeof per_token / sizeof per_token[0]; k++) {
        const pare_kv *kv = pare_meta_get(meta, per_token[k].key);
        if (!kv) continue;
        FAIL_IF(!tok, PARE_EINPUT, "%s: key '%s' without tokenizer.ggml.tokens", path, per_token[k].key);
        FAIL_IF(kv->type != PARE_META_ARRAY || kv->elem_type != per_token[k].type || kv->n != n_vocab, PARE_EINPUT,
                "%s: key '%s' must be an array of %llu %s values (one per token), not %llu %s", path, per_token[k].key,
                (unsigned long long)n_vocab, pare_meta_type_name(per_token[k].type),
                (unsigned long long)(kv->type == PARE_META_ARRAY ? kv->n : 1),
                pare_meta_type_name(kv->type == PARE_META_ARRAY ? kv->elem_type : kv->type));
    }
    for (size_t k = 0; k < sizeof special_id_keys / sizeof special_id_keys[0]; k++) {
        const pare_kv *kv = pare_meta_get(meta, special_id_keys[k]);
        if (!kv) continue;
        FAIL_IF(!meta_is_int(kv), PARE_EINPUT, "%s: key '%s' is a %s, not a token id", path, special_id_keys[k],
                pare_meta_type_name(kv->type));
        /* -1 (or its u32 bits) is how converters say "none". */
        int64_t v = meta_is_signed(kv->type) ? kv->v.i64 : (int64_t)kv->v.u64;
        if (v == -1 || (kv->type == PARE_META_U32 && kv->v.u64 == UINT32_MAX)) continue;
        FAIL_IF(!tok, PARE_EINPUT, "%s: key '%s' is set but the file has no tokenizer.ggml.tokens", path,
                special_id_keys[k]);
        FAIL_IF(v < 0 || (uint64_t)v >= n_vocab, PARE_EINPUT,
                "%s: key '%s' is %lld, outside the vocabulary of %llu tokens", path, special_id_keys[k], (long long)v,
                (unsigned long long)n_vocab);
    }
    return PARE_OK;
}

/* The architecture's count keys ("llama.block_count", ...). */
static pare_status check_arch_counts(const char *path, const pare_meta *meta, pare_err *err) {
    const pare_kv *a = pare_meta_get(meta, "general.architecture");
    if (!a) return PARE_OK;
    FAIL_IF(a->type != PARE_META_STRING || a->str.len == 0 || a->str.len > 64 || memchr(a->str.s, 0, a->str.len),
            PARE_EINPUT, "%s: key 'general.architecture' is not a short non-empty string", path);
    char key[160];
    snprintf(key, sizeof key, "%s.block_count", a->str.s);
    TRY(check_count(path, meta, key, 1, GGUF_MAX_BLOCKS, false, 0, err));
    uint64_t n_layers = 0;
    if (!pare_meta_get_u64(meta, key, &n_layers)) n_layers = 0;
    static const char *const heads[] = {"attention.head_count", "attention.head_count_kv"};
    for (size_t k = 0; k < 2; k++) {
        snprintf(key, sizeof key, "%s.%s", a->str.s, heads[k]);
        TRY(check_count(path, meta, key, 0, GGUF_MAX_HEADS, true, n_layers, err));
    }
    snprintf(key, sizeof key, "%s.vocab_size", a->str.s);
    return check_count(path, meta, key, 1, INT32_MAX, false, 0, err);
}

static pare_status check_meta_bounds(const char *path, const pare_meta *meta, pare_err *err) {
    TRY(check_vocab(path, meta, err));
    return check_arch_counts(path, meta, err);
}

/* ------------------------------------------------------------------------ entry point */

static pare_status load_model(const char *path, pare_model **out, pare_err *err) {
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, path);
    FAIL_IF(!m, PARE_ENOMEM, "out of memory");
    m->gguf_names = true;
    *out = m;
    part_info pi;
    TRY(load_part(path, m, &m->meta, &pi, err));
    m->version = pi.version;
    m->alignment = pi.alignment;
    /* split.count 0 (what llama-gguf-split --merge leaves) or 1: a whole model in one file. */
    uint64_t count = 0;
    FAIL_IF(pare_meta_find(&m->meta, "split.count") >= 0 && !pare_meta_get_u64(&m->meta, "split.count", &count),
            PARE_EINPUT, "%s: split.count must be a non-negative integer", path);
    if (count > 1) {
        /* Start over from part 1, whichever part was named. */
        pare_model_free(m);
        m = *out = pare_model_new(PARE_FORMAT_GGUF, path);
        FAIL_IF(!m, PARE_ENOMEM, "out of memory");
        m->gguf_names = true;
        TRY(load_parts(path, count, m, err));
    }
    TRY(check_meta_bounds(path, &m->meta, err));
    const char *arch = pare_meta_get_str(&m->meta, "general.architecture");
    FAIL_IF(arch && !(m->arch = strdup(arch)), PARE_ENOMEM, "out of memory");
    return PARE_OK;
}

pare_status pare_gguf_load(const char *path, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_model *m = NULL;
    pare_status st = load_model(path, &m, err);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}
