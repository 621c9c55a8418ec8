/* core/model.c - tensors and the model that holds them. */
#include "core.h"

#include <stdio.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>

int64_t pare_tensor_nelements(const pare_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < PARE_MAX_DIMS; i++) n *= t->ne[i];
    return n;
}

int64_t pare_tensor_nrows(const pare_tensor *t) {
    return t->ne[0] ? pare_tensor_nelements(t) / t->ne[0] : 0;
}

pare_status pare_tensor_nbytes(pare_type type, int n_dims, const int64_t *ne, uint64_t *out, pare_err *err) {
    const pare_type_info *ti = pare_type_get(type);
    FAIL_IF(!ti, PARE_EINPUT, "unknown tensor type %d", (int)type);
    FAIL_IF(n_dims < 0 || n_dims > PARE_MAX_DIMS, PARE_EINPUT, "%d dimensions (at most %d)", n_dims,
            PARE_MAX_DIMS);
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        FAIL_IF(ne[i] < 0, PARE_EINPUT, "dimension %d is negative (%lld)", i, (long long)ne[i]);
        uint64_t d = (uint64_t)ne[i];
        FAIL_IF(d && n > (UINT64_MAX / 2) / d, PARE_EINPUT, "shape overflows 64 bits");
        n *= d;
    }
    FAIL_IF(n_dims > 0 && ne[0] % ti->block_size, PARE_EINPUT,
            "row length %lld is not a multiple of %s's block size %lld", (long long)ne[0], ti->name,
            (long long)ti->block_size);
    uint64_t blocks = n / (uint64_t)ti->block_size;
    FAIL_IF(blocks > UINT64_MAX / 2 / ti->type_size, PARE_EINPUT, "byte size overflows 64 bits");
    *out = blocks * ti->type_size;
    return PARE_OK;
}

pare_status pare_tensor_init(pare_tensor *t, const char *name, pare_type type, int n_dims, const int64_t *ne,
                             pare_err *err) {
    memset(t, 0, sizeof *t);
    FAIL_IF(n_dims < 0 || n_dims > PARE_MAX_DIMS, PARE_EINPUT, "tensor '%s': %d dimensions (at most %d)", name,
            n_dims, PARE_MAX_DIMS);
    t->type = type;
    t->source = -1;
    t->n_dims = n_dims ? n_dims : 1;
    for (int i = 0; i < PARE_MAX_DIMS; i++) t->ne[i] = (i < n_dims) ? ne[i] : 1;
    pare_status st = pare_tensor_nbytes(type, t->n_dims, t->ne, &t->n_bytes, err);
    if (st) {
        pare_err_prefix(err, "tensor '%s'", name);
        return st;
    }
    t->name = strdup(name);
    FAIL_IF(!t->name, PARE_ENOMEM, "out of memory");
    return PARE_OK;
}

void pare_tensor_set_owned(pare_tensor *t, void *buf, uint64_t n_bytes) {
    free(t->owned);
    t->owned = buf;
    t->data = buf;
    t->n_bytes = n_bytes;
}

void pare_tensor_clear(pare_tensor *t) {
    if (!t) return;
    free(t->name);
    free(t->owned);
    if (t->read_ctx_free) t->read_ctx_free(t->read_ctx);
    memset(t, 0, sizeof *t);
}

const char *pare_tensor_shape_str(const pare_tensor *t, char *buf, size_t cap) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < t->n_dims && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

pare_model *pare_model_new(pare_format format, const char *path) {
    pare_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->format = format;
    m->alignment = 32;
    if (path && !(m->path = strdup(path))) {
        free(m);
        return NULL;
    }
    return m;
}

void pare_model_free(pare_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++) pare_tensor_clear(&m->tensors[i]);
    free(m->tensors);
    pare_meta_free(&m->meta);
    for (size_t i = 0; i < m->n_maps; i++) pare_map_free(m->maps[i]);
    free(m->maps);
    if (m->backing_free) m->backing_free(m->backing);
    free(m->arch);
    free(m->path);
    free(m);
}

pare_tensor *pare_model_find(const pare_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

pare_status pare_model_add_tensor(pare_model *m, pare_tensor *t, pare_err *err) {
    /* Linear duplicate check: models have at most a few thousand tensors, and readers
     * of hostile files check duplicates with a pare_strset and use push_tensor. */
    FAIL_IF(pare_model_find(m, t->name), PARE_EINPUT, "%s: duplicate tensor name '%s'", m->path ? m->path : "model",
            t->name);
    return pare_model_push_tensor(m, t, err);
}

pare_status pare_model_push_tensor(pare_model *m, pare_tensor *t, pare_err *err) {
    if (m->n_tensors == m->cap_tensors) {
        size_t cap = m->cap_tensors ? m->cap_tensors * 2 : 64;
        pare_tensor *nt = realloc(m->tensors, cap * sizeof *nt);
        FAIL_IF(!nt, PARE_ENOMEM, "out of memory for tensor list");
        m->tensors = nt;
        m->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = *t;
    memset(t, 0, sizeof *t);
    return PARE_OK;
}

pare_status pare_model_add_map(pare_model *m, pare_map *map, int *index, pare_err *err) {
    pare_map **nm = realloc(m->maps, (m->n_maps + 1) * sizeof *nm);
    if (!nm) {
        pare_map_free(map);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    m->maps = nm;
    m->maps[m->n_maps] = map;
    if (index) *index = (int)m->n_maps;
    m->n_maps++;
    return PARE_OK;
}

uint64_t pare_model_nparams(const pare_model *m) {
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) n += (uint64_t)pare_tensor_nelements(&m->tensors[i]);
    return n;
}

pare_status pare_tensor_read(const pare_tensor *t, void *dst, pare_err *err) {
    if (t->data) {
        if (t->n_bytes) memcpy(dst, t->data, (size_t)t->n_bytes);
        return PARE_OK;
    }
    if (t->read) return t->read(t, dst, err);
    if (t->n_bytes == 0) return PARE_OK;
    return pare_err_set(err, PARE_EINTERNAL, "tensor '%s' has no data", t->name);
}

pare_status pare_tensor_bytes(const pare_tensor *t, const void **out, void **tmp, pare_err *err) {
    *tmp = NULL;
    if (t->data || t->n_bytes == 0) {
        *out = t->data;
        return PARE_OK;
    }
    void *buf = malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
    FAIL_IF(!buf, PARE_ENOMEM, "tensor '%s': out of memory for %llu bytes", t->name,
            (unsigned long long)t->n_bytes);
    pare_status st = pare_tensor_read(t, buf, err);
    if (st) {
        free(buf);
        return st;
    }
    *tmp = buf;
    *out = buf;
    return PARE_OK;
}

pare_status pare_tensor_plain_to_f32(const pare_tensor *t, float *dst, pare_err *err) {
    const pare_type_info *ti = pare_type_get(t->type);
    FAIL_IF(!ti || ti->is_quantized, PARE_EUNSUPPORTED, "tensor '%s': type %s is not a plain type", t->name,
            pare_type_name(t->type));
    const void *p;
    void *tmp;
    TRY(pare_tensor_bytes(t, &p, &tmp, err));
    pare_plain_to_f32(t->type, p, dst, pare_tensor_nelements(t));
    free(tmp);
    return PARE_OK;
}

const pare_map *pare_model_map_of(const pare_model *m, const pare_tensor *t, uint64_t *off) {
    if (!t->data || t->source < 0 || (size_t)t->source >= m->n_maps) return NULL;
    const pare_map *map = m->maps[t->source];
    const uint8_t *p = t->data;
    if (!map->data || p < map->data || p > map->data + map->size || t->n_bytes > (uint64_t)(map->data + map->size - p))
        return NULL;
    *off = (uint64_t)(p - map->data);
    return map;
}

void pare_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void pare_model_release_tensor(const pare_model *m, const pare_tensor *t) {
    if (!t->data || t->source < 0 || (size_t)t->source >= m->n_maps) return;
    const pare_map *map = m->maps[t->source];
    const uint8_t *p = t->data;
    if (p < map->data || p >= map->data + map->size) return;
    pare_map_release(map, (uint64_t)(p - map->data), t->n_bytes);
}

/* ---- string set ---- */

struct pare_strset {
    const char **s;
    size_t *len;
    size_t cap, n;
};

static uint64_t strset_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

pare_strset *pare_strset_new(size_t expected) {
    pare_strset *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cap = 16;
    while (s->cap < expected * 2 + 1) s->cap *= 2;
    s->s = calloc(s->cap, sizeof *s->s);
    s->len = calloc(s->cap, sizeof *s->len);
    if (!s->s || !s->len) {
        pare_strset_free(s);
        return NULL;
    }
    return s;
}

void pare_strset_free(pare_strset *s) {
    if (!s) return;
    free(s->s);
    free(s->len);
    free(s);
}

static bool strset_grow(pare_strset *s) {
    pare_strset *g = pare_strset_new(s->cap);
    if (!g) return false;
    for (size_t i = 0; i < s->cap; i++)
        if (s->s[i]) pare_strset_add(g, s->s[i], s->len[i]);
    free(s->s);
    free(s->len);
    *s = *g;
    free(g);
    return true;
}

int pare_strset_add(pare_strset *s, const char *str, size_t len) {
    if ((s->n + 1) * 2 > s->cap && !strset_grow(s)) return -1;
    size_t i = (size_t)strset_hash(str, len) & (s->cap - 1);
    while (s->s[i]) {
        if (s->len[i] == len && memcmp(s->s[i], str, len) == 0) return 0;
        i = (i + 1) & (s->cap - 1);
    }
    s->s[i] = str;
    s->len[i] = len;
    s->n++;
    return 1;
}
