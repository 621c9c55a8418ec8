/* core/meta.c - the ordered, typed key/value store behind GGUF metadata. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} meta_types[PARE_META_COUNT] = {
    [PARE_META_U8] = {"u8", 1},     [PARE_META_I8] = {"i8", 1},   [PARE_META_U16] = {"u16", 2},
    [PARE_META_I16] = {"i16", 2},   [PARE_META_U32] = {"u32", 4}, [PARE_META_I32] = {"i32", 4},
    [PARE_META_F32] = {"f32", 4},   [PARE_META_BOOL] = {"bool", 1}, [PARE_META_STRING] = {"string", 0},
    [PARE_META_ARRAY] = {"array", 0}, [PARE_META_U64] = {"u64", 8}, [PARE_META_I64] = {"i64", 8},
    [PARE_META_F64] = {"f64", 8},
};

size_t pare_meta_type_size(pare_meta_type t) {
    return ((unsigned)t < PARE_META_COUNT) ? meta_types[t].size : 0;
}

const char *pare_meta_type_name(pare_meta_type t) {
    return ((unsigned)t < PARE_META_COUNT) ? meta_types[t].name : "?";
}

static void kv_clear(pare_kv *kv) {
    free(kv->key);
    free(kv->str.s);
    if (kv->type == PARE_META_ARRAY && kv->elem_type == PARE_META_STRING && kv->arr) {
        pare_str *s = kv->arr;
        for (uint64_t i = 0; i < kv->n; i++) free(s[i].s);
    }
    free(kv->arr);
    memset(kv, 0, sizeof *kv);
}

void pare_meta_free(pare_meta *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) kv_clear(&m->kv[i]);
    free(m->kv);
    memset(m, 0, sizeof *m);
}

long pare_meta_find(const pare_meta *m, const char *key) {
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kv[i].key, key) == 0) return (long)i;
    return -1;
}

const pare_kv *pare_meta_get(const pare_meta *m, const char *key) {
    long i = pare_meta_find(m, key);
    return i < 0 ? NULL : &m->kv[i];
}

bool pare_meta_remove(pare_meta *m, const char *key) {
    long i = pare_meta_find(m, key);
    if (i < 0) return false;
    kv_clear(&m->kv[i]);
    memmove(&m->kv[i], &m->kv[i + 1], (m->n - (size_t)i - 1) * sizeof *m->kv);
    m->n--;
    return true;
}

/* Returns the slot for key: the existing one (cleared, key kept) or a new one at the end. */
static pare_kv *slot(pare_meta *m, const char *key, pare_err *err) {
    long i = pare_meta_find(m, key);
    if (i >= 0) {
        pare_kv *kv = &m->kv[i];
        char *k = kv->key;
        kv->key = NULL;
        kv_clear(kv);
        kv->key = k;
        return kv;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        pare_kv *nk = realloc(m->kv, cap * sizeof *nk);
        if (!nk) {
            pare_err_set(err, PARE_ENOMEM, "out of memory for metadata key '%s'", key);
            return NULL;
        }
        m->kv = nk;
        m->cap = cap;
    }
    pare_kv *kv = &m->kv[m->n];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        pare_err_set(err, PARE_ENOMEM, "out of memory for metadata key '%s'", key);
        return NULL;
    }
    m->n++;
    return kv;
}

pare_status pare_meta_set_uint(pare_meta *m, const char *key, pare_meta_type t, uint64_t v, pare_err *err) {
    pare_kv *kv = slot(m, key, err);
    if (!kv) return err ? err->code : PARE_ENOMEM;
    kv->type = t;
    kv->v.u64 = v;
    return PARE_OK;
}

pare_status pare_meta_set_int(pare_meta *m, const char *key, pare_meta_type t, int64_t v, pare_err *err) {
    pare_kv *kv = slot(m, key, err);
    if (!kv) return err ? err->code : PARE_ENOMEM;
    kv->type = t;
    kv->v.i64 = v;
    return PARE_OK;
}

pare_status pare_meta_set_float(pare_meta *m, const char *key, pare_meta_type t, double v, pare_err *err) {
    pare_kv *kv = slot(m, key, err);
    if (!kv) return err ? err->code : PARE_ENOMEM;
    kv->type = t;
    kv->v.f64 = (t == PARE_META_F32) ? (double)(float)v : v;
    return PARE_OK;
}

pare_status pare_meta_set_bool(pare_meta *m, const char *key, bool v, pare_err *err) {
    return pare_meta_set_uint(m, key, PARE_META_BOOL, v ? 1 : 0, err);
}

static bool str_copy(pare_str *dst, const char *s, uint64_t len) {
    dst->s = malloc(len + 1);
    if (!dst->s) return false;
    if (len) memcpy(dst->s, s, len);
    dst->s[len] = 0;
    dst->len = len;
    return true;
}

pare_status pare_meta_set_str(pare_meta *m, const char *key, const char *s, size_t len, pare_err *err) {
    pare_kv *kv = slot(m, key, err);
    if (!kv) return err ? err->code : PARE_ENOMEM;
    kv->type = PARE_META_STRING;
    if (!str_copy(&kv->str, s, len)) return pare_err_set(err, PARE_ENOMEM, "out of memory for '%s'", key);
    return PARE_OK;
}

pare_status pare_meta_set_arr(pare_meta *m, const char *key, pare_meta_type elem, const void *data, uint64_t n,
                              pare_err *err) {
    FAIL_IF(elem == PARE_META_ARRAY || (unsigned)elem >= PARE_META_COUNT, PARE_EUNSUPPORTED,
            "metadata '%s': arrays of type %d are not supported", key, (int)elem);
    pare_kv *kv = slot(m, key, err);
    if (!kv) return err ? err->code : PARE_ENOMEM;
    kv->type = PARE_META_ARRAY;
    kv->elem_type = elem;
    if (elem == PARE_META_STRING) {
        pare_str *dst = calloc(n ? n : 1, sizeof *dst);
        if (!dst) return pare_err_set(err, PARE_ENOMEM, "out of memory for '%s'", key);
        kv->arr = dst;
        const pare_str *src = data;
        for (uint64_t i = 0; i < n; i++) {
            if (!str_copy(&dst[i], src[i].s, src[i].len)) {
                kv->n = i;
                return pare_err_set(err, PARE_ENOMEM, "out of memory for '%s'", key);
            }
        }
        kv->n = n;
    } else {
        size_t es = pare_meta_type_size(elem);
        kv->arr = malloc(n ? n * es : 1);
        if (!kv->arr) return pare_err_set(err, PARE_ENOMEM, "out of memory for '%s'", key);
        if (n) memcpy(kv->arr, data, n * es);
        kv->n = n;
    }
    return PARE_OK;
}

pare_status pare_meta_set_kv(pare_meta *m, const pare_kv *kv, pare_err *err) {
    switch (kv->type) {
    case PARE_META_STRING: return pare_meta_set_str(m, kv->key, kv->str.s, kv->str.len, err);
    case PARE_META_ARRAY: return pare_meta_set_arr(m, kv->key, kv->elem_type, kv->arr, kv->n, err);
    default: {
        pare_kv *d = slot(m, kv->key, err);
        if (!d) return err ? err->code : PARE_ENOMEM;
        d->type = kv->type;
        d->v = kv->v;
        return PARE_OK;
    }
    }
}

pare_status pare_meta_copy(pare_meta *dst, const pare_meta *src, pare_err *err) {
    for (size_t i = 0; i < src->n; i++) TRY(pare_meta_set_kv(dst, &src->kv[i], err));
    return PARE_OK;
}

static bool is_unsigned(pare_meta_type t) {
    return t == PARE_META_U8 || t == PARE_META_U16 || t == PARE_META_U32 || t == PARE_META_U64 ||
           t == PARE_META_BOOL;
}
static bool is_signed(pare_meta_type t) {
    return t == PARE_META_I8 || t == PARE_META_I16 || t == PARE_META_I32 || t == PARE_META_I64;
}

bool pare_meta_get_u64(const pare_meta *m, const char *key, uint64_t *out) {
    const pare_kv *kv = pare_meta_get(m, key);
    if (!kv) return false;
    if (is_unsigned(kv->type)) { *out = kv->v.u64; return true; }
    if (is_signed(kv->type) && kv->v.i64 >= 0) { *out = (uint64_t)kv->v.i64; return true; }
    return false;
}

bool pare_meta_get_i64(const pare_meta *m, const char *key, int64_t *out) {
    const pare_kv *kv = pare_meta_get(m, key);
    if (!kv) return false;
    if (is_signed(kv->type)) { *out = kv->v.i64; return true; }
    if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX) { *out = (int64_t)kv->v.u64; return true; }
    return false;
}

bool pare_meta_get_f64(const pare_meta *m, const char *key, double *out) {
    const pare_kv *kv = pare_meta_get(m, key);
    if (!kv) return false;
    if (kv->type == PARE_META_F32 || kv->type == PARE_META_F64) { *out = kv->v.f64; return true; }
    if (is_signed(kv->type)) { *out = (double)kv->v.i64; return true; }
    if (is_unsigned(kv->type)) { *out = (double)kv->v.u64; return true; }
    return false;
}

bool pare_meta_get_bool(const pare_meta *m, const char *key, bool *out) {
    const pare_kv *kv = pare_meta_get(m, key);
    if (!kv || kv->type != PARE_META_BOOL) return false;
    *out = kv->v.u64 != 0;
    return true;
}

const char *pare_meta_get_str(const pare_meta *m, const char *key) {
    const pare_kv *kv = pare_meta_get(m, key);
    return (kv && kv->type == PARE_META_STRING) ? kv->str.s : NULL;
}

bool pare_kv_arr_f64(const pare_kv *kv, uint64_t i, double *out) {
    if (kv->type != PARE_META_ARRAY || i >= kv->n) return false;
    const uint8_t *p = (const uint8_t *)kv->arr + i * pare_meta_type_size(kv->elem_type);
    switch (kv->elem_type) {
    case PARE_META_F32: { float f; memcpy(&f, p, 4); *out = f; return true; }
    case PARE_META_F64: { memcpy(out, p, 8); return true; }
    default: {
        int64_t v;
        if (!pare_kv_arr_i64(kv, i, &v)) return false;
        *out = (double)v;
        return true;
    }
    }
}

bool pare_kv_arr_i64(const pare_kv *kv, uint64_t i, int64_t *out) {
    if (kv->type != PARE_META_ARRAY || i >= kv->n) return false;
    const uint8_t *p = (const uint8_t *)kv->arr + i * pare_meta_type_size(kv->elem_type);
    switch (kv->elem_type) {
    case PARE_META_U8: case PARE_META_BOOL: *out = *p; return true;
    case PARE_META_I8: *out = (int8_t)*p; return true;
    case PARE_META_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case PARE_META_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case PARE_META_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case PARE_META_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case PARE_META_U64: { uint64_t v; memcpy(&v, p, 8); if (v > (uint64_t)INT64_MAX) return false; *out = (int64_t)v; return true; }
    case PARE_META_I64: { memcpy(out, p, 8); return true; }
    default: return false;
    }
}
