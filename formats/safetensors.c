/* formats/safetensors.c - safetensors reader (single file and index) and streaming writer.
 * The format is described in safetensors.h. */
#include "formats/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Largest model.safetensors.index.json pare reads (real ones are ~100 KB). */
#define ST_MAX_INDEX_BYTES PARE_ST_MAX_HEADER
/* cJSON holds numbers as doubles: integers above 2^53 cannot be told apart. */
#define ST_MAX_EXACT_INT 9007199254740992.0

/* ======================================================================== helpers */

/* Strict UTF-8 check (no overlong forms, no surrogates, nothing above U+10FFFF).
 * Returns the offset of the first bad byte, or len when the text is valid. */
static size_t st_utf8_bad_at(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n;
    }
    return len;
}

static uint64_t st_rd_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer cJSON holds exactly. */
static bool st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0) || d >= ST_MAX_EXACT_INT || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

/* JSON forbids raw control characters inside strings (cJSON lets them through); a \u0000
 * escape would cut a C string short. Returns the offset of the first such byte, or len. */
static size_t st_json_string_bad_at(const char *t, size_t len) {
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!in_str) {
            in_str = c == '"';
        } else if (c == '\\') {
            if (len - i >= 6 && memcmp(t + i + 1, "u0000", 5) == 0) return i;
            i++;
        } else if (c == '"') {
            in_str = false;
        } else if (c < 0x20) {
            return i;
        }
    }
    return len;
}

static int st_cmp_str_ptr(const void *a, const void *b);

/* The name of a key that appears twice in one object anywhere in the tree, or NULL
 * (*oom set when out of memory). cJSON keeps both copies and its lookups return the first,
 * while serde_json and Python's json keep the last: two readers would see two different
 * files (Trail of Bits TOB-SFTN, parser differentials). */
static const char *st_json_dup_key(const cJSON *j, bool *oom) {
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        n++;
        if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            const char *d = st_json_dup_key(c, oom);
            if (d || *oom) return d;
        }
    }
    if (!cJSON_IsObject(j) || n < 2) return NULL;
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        *oom = true;
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *c = j->child; c; c = c->next) names[k++] = c->string;
    qsort(names, n, sizeof *names, st_cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
    free(names);
    return dup;
}

static bool st_is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Parses len bytes of UTF-8 JSON text; only whitespace may follow the value. */
static pare_status st_json_parse(const char *path, const char *what, const char *text, size_t len, cJSON **out,
                                 pare_err *err) {
    *out = NULL;
    size_t bad = st_utf8_bad_at((const uint8_t *)text, len);
    FAIL_IF(bad != len, PARE_EINPUT, "%s: %s is not valid UTF-8 (byte %zu)", path, what, bad);
    bad = st_json_string_bad_at(text, len);
    FAIL_IF(bad != len, PARE_EINPUT, "%s: %s has a control character or \\u0000 inside a string (byte %zu)", path,
            what, bad);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t at = (end && end >= text && end <= text + len) ? (size_t)(end - text) : len;
    FAIL_IF(!j, PARE_EINPUT, "%s: %s is not valid JSON (error near byte %zu of %zu)", path, what, at, len);
    size_t k = at;
    while (k < len && st_is_json_space(text[k])) k++;
    if (k != len) {
        cJSON_Delete(j);
        return pare_err_set(err, PARE_EINPUT, "%s: %s has trailing bytes after the JSON value (byte %zu of %zu)",
                            path, what, k, len);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pare_err_set(err, PARE_EINPUT, "%s: %s is not a JSON object", path, what);
    }
    bool oom = false;
    const char *dup = st_json_dup_key(j, &oom);
    if (dup || oom) {
        if (oom) pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
        else pare_err_set(err, PARE_EINPUT, "%s: %s has the key \"%.200s\" twice in one object (duplicate keys)", path,
                          what, dup);
        cJSON_Delete(j);
        return oom ? PARE_ENOMEM : PARE_EINPUT;
    }
    *out = j;
    return PARE_OK;
}

static int st_cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ======================================================================== reader */

typedef struct {
    const char *name; /* points into the cJSON tree */
    pare_type type;
    int n_dims;
    int64_t ne[PARE_MAX_DIMS]; /* ggml order */
    uint64_t begin, end, n_bytes;
} st_entry;

static int st_cmp_entry_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads "shape": non-negative integers; product and byte size overflow-checked (as the
 * reference, in 64 bits); leading 1s dropped beyond PARE_MAX_DIMS dims. */
static pare_status st_parse_shape(const char *path, st_entry *e, const cJSON *shape, size_t elem_size,
                                  pare_err *err) {
    FAIL_IF(!cJSON_IsArray(shape), PARE_EINPUT, "%s: tensor '%s': \"shape\" is missing or not an array", path,
            e->name);
    int n = cJSON_GetArraySize(shape);
    uint64_t dims[PARE_MAX_DIMS];
    int nd = 0, i = 0;
    uint64_t prod = 1;
    bool overflow = false;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        FAIL_IF(!st_json_uint(d, &v), PARE_EINPUT,
                "%s: tensor '%s': shape entry %d is not a non-negative integer (or is above 2^53)", path, e->name, i);
        if (v && prod > UINT64_MAX / v) overflow = true;
        prod *= v;
        /* Leading dims of 1 beyond what pare can hold are dropped. */
        if (nd == 0 && v == 1 && n - i > PARE_MAX_DIMS) continue;
        FAIL_IF(nd == PARE_MAX_DIMS, PARE_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (pare handles at most %d)",
                path, e->name, n, PARE_MAX_DIMS);
        dims[nd++] = v;
    }
    FAIL_IF(overflow || (prod && elem_size > UINT64_MAX / prod), PARE_EINPUT,
            "%s: tensor '%s': shape overflows 64 bits", path, e->name);
    e->n_bytes = prod * elem_size;
    e->n_dims = nd ? nd : 1;
    for (int k = 0; k < PARE_MAX_DIMS; k++) e->ne[k] = 1;
    for (int k = 0; k < nd; k++) e->ne[k] = (int64_t)dims[nd - 1 - k];
    return PARE_OK;
}

static pare_status st_parse_entry(const char *path, const cJSON *item, st_entry *e, pare_err *err) {
    e->name = item->string;
    FAIL_IF(!cJSON_IsObject(item), PARE_EINPUT, "%s: tensor '%s': entry is not a JSON object", path, e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    FAIL_IF(!cJSON_IsString(dtype), PARE_EINPUT, "%s: tensor '%s': \"dtype\" is missing or not a string", path,
            e->name);
    e->type = pare_type_from_st_name(dtype->valuestring);
    FAIL_IF(e->type == PARE_TYPE_INVALID, PARE_EINPUT, "%s: tensor '%s': unknown dtype \"%s\"", path, e->name,
            dtype->valuestring);
    TRY(st_parse_shape(path, e, cJSON_GetObjectItemCaseSensitive(item, "shape"),
                       pare_type_get(e->type)->type_size, err));
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    FAIL_IF(!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !st_json_uint(offs->child, &e->begin) ||
                !st_json_uint(offs->child->next, &e->end),
            PARE_EINPUT, "%s: tensor '%s': \"data_offsets\" is not an array of two non-negative integers", path,
            e->name);
    FAIL_IF(e->end < e->begin, PARE_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
            path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
    FAIL_IF(e->end - e->begin != e->n_bytes, PARE_EINPUT,
            "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s and the shape need %llu", path,
            e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
            (unsigned long long)(e->end - e->begin), dtype->valuestring, (unsigned long long)e->n_bytes);
    return PARE_OK;
}

/* "__metadata__": an object of strings, added to meta (keeping existing keys when keep). */
static pare_status st_parse_metadata(const char *path, const cJSON *md, pare_meta *meta, bool keep,
                                     pare_err *err) {
    FAIL_IF(!cJSON_IsObject(md), PARE_EINPUT, "%s: \"__metadata__\" is not a JSON object", path);
    for (const cJSON *kv = md->child; kv; kv = kv->next) {
        FAIL_IF(!cJSON_IsString(kv), PARE_EINPUT, "%s: \"__metadata__\" entry '%s' is not a string", path,
                kv->string);
        if (keep && pare_meta_find(meta, kv->string) >= 0) continue;
        TRY(pare_meta_set_str(meta, kv->string, kv->valuestring, strlen(kv->valuestring), err));
    }
    return PARE_OK;
}

/* Checks names are unique and offsets tile [0, data_size) exactly; sorts e by offset. */
static pare_status st_check_layout(const char *path, st_entry *e, size_t n, uint64_t data_size, pare_err *err) {
    if (n > 1) {
        const char **names = malloc(n * sizeof *names);
        FAIL_IF(!names, PARE_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < n; i++) names[i] = e[i].name;
        qsort(names, n, sizeof *names, st_cmp_str_ptr);
        const char *dup = NULL;
        for (size_t i = 1; i < n && !dup; i++)
            if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
        free(names);
        FAIL_IF(dup, PARE_EINPUT, "%s: tensor '%s' appears twice in the header", path, dup);
    }
    qsort(e, n, sizeof *e, st_cmp_entry_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        FAIL_IF(e[i].begin < pos, PARE_EINPUT, "%s: tensor '%s': data [%llu, %llu) overlaps tensor '%s' (ends at %llu)",
                path, e[i].name, (unsigned long long)e[i].begin, (unsigned long long)e[i].end, e[i - 1].name,
                (unsigned long long)pos);
        FAIL_IF(e[i].begin > pos && i == 0, PARE_EINPUT, "%s: tensor '%s': the first tensor's data starts at %llu, not 0",
                path, e[i].name, (unsigned long long)e[i].begin);
        FAIL_IF(e[i].begin > pos, PARE_EINPUT, "%s: tensor '%s': gap of %llu bytes before its data at %llu (after tensor '%s')",
                path, e[i].name, (unsigned long long)(e[i].begin - pos), (unsigned long long)e[i].begin,
                e[i - 1].name);
        pos = e[i].end;
    }
    FAIL_IF(pos > data_size, PARE_EINPUT, "%s: tensor '%s': data ends at %llu, past the end of the file's data (%llu bytes)",
            path, e[n - 1].name, (unsigned long long)pos, (unsigned long long)data_size);
    FAIL_IF(pos < data_size, PARE_EINPUT, "%s: %llu bytes after the last tensor%s%s%s are not covered by any tensor",
            path, (unsigned long long)(data_size - pos), n ? " '" : "", n ? e[n - 1].name : "", n ? "'" : "");
    return PARE_OK;
}

static pare_status st_add_tensors(pare_model *m, const pare_map *map, int src, uint64_t data_start,
                                  const st_entry *e, size_t n, pare_err *err) {
    for (size_t i = 0; i < n; i++) {
        pare_tensor t;
        TRY(pare_tensor_init(&t, e[i].name, e[i].type, e[i].n_dims, e[i].ne, err));
        if (t.n_bytes != e[i].n_bytes) {
            pare_tensor_clear(&t);
            return pare_err_set(err, PARE_EINTERNAL, "%s: tensor '%s': size mismatch", map->path, e[i].name);
        }
        t.file_offset = data_start + e[i].begin;
        t.data = map->data + t.file_offset;
        t.source = src;
        pare_status st = pare_model_add_tensor(m, &t, err);
        if (st) {
            pare_tensor_clear(&t);
            return st;
        }
    }
    return PARE_OK;
}

/* Parses the JSON tree of one file's header and adds its tensors and metadata to m. */
static pare_status st_parse_tree(pare_model *m, const pare_map *map, int src, const cJSON *root,
                                 uint64_t data_start, bool keep_meta, pare_err *err) {
    const char *path = map->path;
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next) n++;
    st_entry *e = calloc(n ? n : 1, sizeof *e);
    FAIL_IF(!e, PARE_ENOMEM, "%s: out of memory for %zu header entries", path, n);
    size_t k = 0;
    bool seen_meta = false;
    pare_status st = PARE_OK;
    for (const cJSON *c = root->child; c && !st; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (seen_meta) st = pare_err_set(err, PARE_EINPUT, "%s: \"__metadata__\" appears twice", path);
            else st = st_parse_metadata(path, c, &m->meta, keep_meta, err);
            seen_meta = true;
            continue;
        }
        st = st_parse_entry(path, c, &e[k++], err);
    }
    if (!st) st = st_check_layout(path, e, k, map->size - data_start, err);
    if (!st) st = st_add_tensors(m, map, src, data_start, e, k, err);
    free(e);
    return st;
}

/* Validates the file behind map (model map index src) and adds its tensors to m. */
static pare_status st_parse_file(pare_model *m, const pare_map *map, int src, bool keep_meta, pare_err *err) {
    const char *path = map->path;
    FAIL_IF(map->size < 8, PARE_EINPUT, "%s: file is %llu bytes, too short for the 8-byte header length", path,
            (unsigned long long)map->size);
    uint64_t n = st_rd_u64le(map->data);
    FAIL_IF(n > PARE_ST_MAX_HEADER, PARE_EINPUT, "%s: header length %llu exceeds the limit of %llu bytes", path,
            (unsigned long long)n, (unsigned long long)PARE_ST_MAX_HEADER);
    FAIL_IF(8 + n > map->size, PARE_EINPUT, "%s: header of %llu bytes runs past the end of the file (%llu bytes)",
            path, (unsigned long long)n, (unsigned long long)map->size);
    cJSON *root;
    TRY(st_json_parse(path, "header", (const char *)map->data + 8, (size_t)n, &root, err));
    pare_status st = st_parse_tree(m, map, src, root, 8 + n, keep_meta, err);
    cJSON_Delete(root);
    return st;
}

pare_status pare_safetensors_load(const char *path, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, path);
    FAIL_IF(!m, PARE_ENOMEM, "%s: out of memory", path);
    pare_map *map = NULL;
    int src = -1;
    pare_status st = pare_map_open(path, &map, err);
    if (!st) st = pare_model_add_map(m, map, &src, err);
    if (!st) st = st_parse_file(m, m->maps[src], src, false, err);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

/* ------------------------------------------------------------------------ index */

typedef struct {
    const char *name;  /* tensor name (in the cJSON tree) */
    const char *shard; /* shard file name (in the cJSON tree) */
    int shard_index;   /* index into the shard list = the model's map index */
} st_wm_entry;

static int st_cmp_wm(const void *a, const void *b) {
    return strcmp(((const st_wm_entry *)a)->name, ((const st_wm_entry *)b)->name);
}

static int st_cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(pare_tensor *const *)a)->name, (*(pare_tensor *const *)b)->name);
}

/* Shard names are plain file names in the index's folder: no '/', no "." or "..", no
 * backslash (a Windows separator elsewhere), nothing hidden behind a NUL escape. */
static bool st_shard_name_ok(const char *s) {
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* A shard must resolve (through any symlinks) to a file directly inside the index's own
 * folder: a link leading elsewhere would let a downloaded index read any file. */
static pare_status st_shard_inside(const char *index_path, const char *shard_path, const char *shard,
                                   pare_err *err) {
    char *real = realpath(shard_path, NULL);
    if (!real) return pare_err_errno(err, "%s: shard %s", index_path, shard);
    char *idx = strdup(index_path);
    char *islash = idx ? strrchr(idx, '/') : NULL;
    char *dir = NULL;
    if (idx) {
        if (islash) islash[islash == idx ? 1 : 0] = 0;
        dir = realpath(islash ? idx : ".", NULL);
    }
    char *rslash = strrchr(real, '/');
    bool ok = dir && rslash &&
              (rslash == real ? strcmp(dir, "/") == 0
                              : (size_t)(rslash - real) == strlen(dir) && memcmp(real, dir, strlen(dir)) == 0);
    pare_status st = PARE_OK;
    if (!dir) st = pare_err_errno(err, "%s: cannot resolve its folder", index_path);
    else if (!ok)
        st = pare_err_set(err, PARE_EINPUT, "%s: shard %s resolves to %s, outside the index's folder %s", index_path,
                          shard, real, dir);
    free(real);
    free(idx);
    free(dir);
    return st;
}

/* Reads weight_map into wm (n entries) and the distinct shard names in first-seen order. */
static pare_status st_read_weight_map(const char *path, const cJSON *root, st_wm_entry **wm_out, size_t *n_out,
                                      const char ***shards_out, size_t *n_shards_out, pare_err *err) {
    const cJSON *wmj = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    FAIL_IF(!cJSON_IsObject(wmj), PARE_EINPUT, "%s: \"weight_map\" is missing or not a JSON object", path);
    size_t n = 0;
    for (const cJSON *c = wmj->child; c; c = c->next) n++;
    st_wm_entry *wm = calloc(n ? n : 1, sizeof *wm);
    const char **shards = calloc(n ? n : 1, sizeof *shards);
    *wm_out = wm;
    *shards_out = shards;
    FAIL_IF(!wm || !shards, PARE_ENOMEM, "%s: out of memory", path);
    size_t ns = 0, i = 0;
    for (const cJSON *c = wmj->child; c; c = c->next, i++) {
        FAIL_IF(!cJSON_IsString(c), PARE_EINPUT, "%s: weight_map entry for tensor '%s' is not a string", path,
                c->string);
        FAIL_IF(!st_shard_name_ok(c->valuestring), PARE_EINPUT,
                "%s: tensor '%s': shard name \"%s\" is not a plain file name in the index's folder", path, c->string,
                c->valuestring);
        size_t s = 0;
        while (s < ns && strcmp(shards[s], c->valuestring) != 0) s++;
        if (s == ns) shards[ns++] = c->valuestring;
        wm[i] = (st_wm_entry){c->string, c->valuestring, (int)s};
    }
    *n_out = n;
    *n_shards_out = ns;
    return PARE_OK;
}

/* Checks that the tensors loaded from the shards and the weight_map agree exactly. */
static pare_status st_check_index(const char *path, const pare_model *m, st_wm_entry *wm, size_t n,
                                  pare_err *err) {
    qsort(wm, n, sizeof *wm, st_cmp_wm);
    for (size_t i = 1; i < n; i++)
        FAIL_IF(strcmp(wm[i - 1].name, wm[i].name) == 0, PARE_EINPUT,
                "%s: tensor '%s' appears twice in weight_map", path, wm[i].name);
    pare_tensor **ts = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *ts);
    FAIL_IF(!ts, PARE_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < m->n_tensors; i++) ts[i] = &m->tensors[i];
    qsort(ts, m->n_tensors, sizeof *ts, st_cmp_tensor_name);
    size_t a = 0, b = 0;
    pare_status st = PARE_OK;
    while (!st && (a < n || b < m->n_tensors)) {
        int c = a == n ? 1 : b == m->n_tensors ? -1 : strcmp(wm[a].name, ts[b]->name);
        if (c < 0)
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' is listed in shard %s, which does not hold it", path,
                              wm[a].name, wm[a].shard);
        else if (c > 0)
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' of shard %s is not listed in weight_map", path,
                              ts[b]->name, m->maps[ts[b]->source]->path);
        else if (ts[b]->source != wm[a].shard_index)
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' is listed in shard %s but found in %s", path,
                              wm[a].name, wm[a].shard, m->maps[ts[b]->source]->path);
        a++, b++;
    }
    free(ts);
    return st;
}

static pare_status st_load_shards(pare_model *m, const char *index_path, const char **shards, size_t ns,
                                  pare_err *err) {
    char *dir = strdup(index_path);
    FAIL_IF(!dir, PARE_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    pare_status st = PARE_OK;
    for (size_t s = 0; s < ns && !st; s++) {
        char *p = *dir ? pare_path_join(dir, shards[s]) : strdup(shards[s]);
        if (!p) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        pare_map *map = NULL;
        int src = -1;
        st = st_shard_inside(index_path, p, shards[s], err);
        if (!st) {
            st = pare_map_open(p, &map, err);
            if (st) pare_err_prefix(err, "%s: shard %s", index_path, shards[s]);
        }
        if (!st) st = pare_model_add_map(m, map, &src, err);
        if (!st && src != (int)s) st = pare_err_set(err, PARE_EINTERNAL, "%s: shard map index mismatch", p);
        if (!st) st = st_parse_file(m, m->maps[src], src, true, err);
        free(p);
    }
    free(dir);
    return st;
}

pare_status pare_safetensors_load_index(const char *index_path, pare_model **out, pare_err *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    TRY(pare_read_file(index_path, ST_MAX_INDEX_BYTES, &text, &len, err));
    cJSON *root = NULL;
    pare_status st = st_json_parse(index_path, "index", text, len, &root, err);
    free(text);
    TRY(st);
    st_wm_entry *wm = NULL;
    const char **shards = NULL;
    size_t n = 0, ns = 0;
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, index_path);
    st = m ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = st_read_weight_map(index_path, root, &wm, &n, &shards, &ns, err);
    if (!st) st = st_load_shards(m, index_path, shards, ns, err);
    if (!st) st = st_check_index(index_path, m, wm, n, err);
    free(wm);
    free(shards);
    cJSON_Delete(root);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

/* ======================================================================== writer */

/* A growable text buffer for headers and index files. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(st_buf *b, uint64_t v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string, escaped as serde_json and Python's json do for ASCII control characters;
 * other bytes (UTF-8) are copied as they are. */
static void sb_json_str(st_buf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) sb_puts(b, esc);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

struct pare_st_writer {
    pare_outfile *f;
    char **names;      /* copies, for messages */
    uint64_t *n_bytes; /* expected bytes of each tensor */
    size_t n, next;
    uint64_t part;     /* bytes of tensor `next` written so far */
};

void pare_st_writer_free(pare_st_writer *w) {
    if (!w) return;
    pare_outfile_free(w->f);
    if (w->names)
        for (size_t i = 0; i < w->n; i++) free(w->names[i]);
    free(w->names);
    free(w->n_bytes);
    free(w);
}

/* Refuses what a reader would refuse: types without a dtype, bad UTF-8, duplicate names. */
static pare_status st_writer_check(const char *path, const pare_meta *meta, const pare_tensor *ts, size_t n,
                                   pare_err *err) {
    for (size_t i = 0; i < n; i++) {
        const pare_type_info *ti = pare_type_get(ts[i].type);
        FAIL_IF(!ti || !ti->st_name, PARE_EUNSUPPORTED, "%s: tensor '%s': type %s has no safetensors dtype", path,
                ts[i].name, pare_type_name(ts[i].type));
        size_t len = strlen(ts[i].name);
        FAIL_IF(st_utf8_bad_at((const uint8_t *)ts[i].name, len) != len, PARE_EINPUT,
                "%s: tensor name '%s' is not valid UTF-8", path, ts[i].name);
        FAIL_IF(strcmp(ts[i].name, "__metadata__") == 0, PARE_EINPUT, "%s: a tensor may not be named __metadata__",
                path);
        FAIL_IF(ts[i].n_dims < 1 || ts[i].n_dims > PARE_MAX_DIMS, PARE_EINPUT, "%s: tensor '%s': %d dimensions", path,
                ts[i].name, ts[i].n_dims);
    }
    for (size_t i = 0; meta && i < meta->n; i++) {
        const pare_kv *kv = &meta->kv[i];
        if (kv->type != PARE_META_STRING) continue;
        size_t kl = strlen(kv->key);
        FAIL_IF(st_utf8_bad_at((const uint8_t *)kv->key, kl) != kl ||
                    st_utf8_bad_at((const uint8_t *)kv->str.s, (size_t)kv->str.len) != kv->str.len,
                PARE_EINPUT, "%s: metadata '%s' is not valid UTF-8", path, kv->key);
        FAIL_IF(memchr(kv->str.s, 0, (size_t)kv->str.len) != NULL, PARE_EINPUT,
                "%s: metadata '%s' contains a NUL byte", path, kv->key);
    }
    if (n < 2) return PARE_OK;
    const char **names = malloc(n * sizeof *names);
    FAIL_IF(!names, PARE_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) names[i] = ts[i].name;
    qsort(names, n, sizeof *names, st_cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
    free(names);
    FAIL_IF(dup, PARE_EINPUT, "%s: duplicate tensor name '%s'", path, dup);
    return PARE_OK;
}

/* The header as the reference writer lays it out: compact JSON, tensors in data order,
 * "__metadata__" last (as the safetensors release that wrote ../shared's files), padded
 * with spaces to a multiple of 8 bytes. */
static void st_build_header(st_buf *b, const pare_meta *meta, const pare_tensor *ts, size_t n) {
    uint64_t off = 0;
    sb_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        const pare_tensor *t = &ts[i];
        if (i) sb_put(b, ",", 1);
        sb_json_str(b, t->name, strlen(t->name));
        sb_puts(b, ":{\"dtype\":");
        sb_json_str(b, pare_type_get(t->type)->st_name, strlen(pare_type_get(t->type)->st_name));
        sb_puts(b, ",\"shape\":[");
        for (int d = t->n_dims - 1; d >= 0; d--) {
            sb_u64(b, (uint64_t)t->ne[d]);
            if (d) sb_put(b, ",", 1);
        }
        sb_puts(b, "],\"data_offsets\":[");
        sb_u64(b, off);
        sb_put(b, ",", 1);
        off += t->n_bytes;
        sb_u64(b, off);
        sb_puts(b, "]}");
    }
    bool first = true;
    for (size_t i = 0; meta && i < meta->n; i++) {
        const pare_kv *kv = &meta->kv[i];
        if (kv->type != PARE_META_STRING) continue;
        sb_puts(b, first ? (n ? ",\"__metadata__\":{" : "\"__metadata__\":{") : ",");
        first = false;
        sb_json_str(b, kv->key, strlen(kv->key));
        sb_put(b, ":", 1);
        sb_json_str(b, kv->str.s, (size_t)kv->str.len);
    }
    if (!first) sb_put(b, "}", 1);
    sb_put(b, "}", 1);
    while (b->n % 8) sb_put(b, " ", 1);
}

static pare_status st_writer_setup(pare_st_writer *w, const char *path, const pare_meta *meta,
                                   const pare_tensor *ts, size_t n, pare_err *err) {
    w->names = calloc(n ? n : 1, sizeof *w->names);
    w->n_bytes = calloc(n ? n : 1, sizeof *w->n_bytes);
    FAIL_IF(!w->names || !w->n_bytes, PARE_ENOMEM, "%s: out of memory", path);
    w->n = n;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb;
        TRY(pare_tensor_nbytes(ts[i].type, ts[i].n_dims, ts[i].ne, &nb, err));
        FAIL_IF(!(w->names[i] = strdup(ts[i].name)), PARE_ENOMEM, "%s: out of memory", path);
        w->n_bytes[i] = nb;
    }
    st_buf b = {0};
    st_build_header(&b, meta, ts, n);
    if (b.oom) {
        free(b.p);
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory for the header", path);
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    pare_status st = pare_outfile_write(w->f, len, 8, err);
    if (!st) st = pare_outfile_write(w->f, b.p, b.n, err);
    free(b.p);
    return st;
}

pare_status pare_st_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors, size_t n,
                                bool force, const char *const *inputs, size_t n_inputs, pare_st_writer **out,
                                pare_err *err) {
    *out = NULL;
    TRY(st_writer_check(path, meta, tensors, n, err));
    pare_st_writer *w = calloc(1, sizeof *w);
    FAIL_IF(!w, PARE_ENOMEM, "%s: out of memory", path);
    pare_status st = pare_outfile_open(path, force, inputs, n_inputs, &w->f, err);
    if (!st) st = st_writer_setup(w, path, meta, tensors, n, err);
    if (st) {
        pare_st_writer_free(w);
        return st;
    }
    *out = w;
    return PARE_OK;
}

pare_status pare_st_writer_add(pare_st_writer *w, const void *data, uint64_t n_bytes, pare_err *err) {
    FAIL_IF(w->next < w->n && (w->part || n_bytes != w->n_bytes[w->next]), PARE_EUSAGE,
            "%s: tensor '%s': %llu bytes given, %llu expected", pare_outfile_path(w->f), w->names[w->next],
            (unsigned long long)n_bytes, (unsigned long long)w->n_bytes[w->next]);
    return pare_st_writer_add_part(w, data, n_bytes, err);
}

pare_status pare_st_writer_add_part(pare_st_writer *w, const void *data, uint64_t n_bytes, pare_err *err) {
    const char *path = pare_outfile_path(w->f);
    FAIL_IF(w->next >= w->n, PARE_EUSAGE, "%s: more tensors added than the %zu announced", path, w->n);
    FAIL_IF(n_bytes > w->n_bytes[w->next] - w->part, PARE_EUSAGE, "%s: tensor '%s': %llu bytes given, %llu expected",
            path, w->names[w->next], (unsigned long long)(w->part + n_bytes), (unsigned long long)w->n_bytes[w->next]);
    /* pare_outfile_write takes a size_t; feed it in bounded pieces. */
    const uint8_t *p = data;
    uint64_t left = n_bytes;
    while (left) {
        size_t k = left > (1u << 30) ? (1u << 30) : (size_t)left;
        TRY(pare_outfile_write(w->f, p, k, err));
        p += k;
        left -= k;
    }
    w->part += n_bytes;
    if (w->part == w->n_bytes[w->next]) {
        w->next++;
        w->part = 0;
    }
    return PARE_OK;
}

pare_status pare_st_writer_finish(pare_st_writer *w, pare_err *err) {
    FAIL_IF(w->next != w->n, PARE_EUSAGE, "%s: only %zu of %zu tensors were written", pare_outfile_path(w->f),
            w->next, w->n);
    return pare_outfile_commit(w->f, err);
}

/* ------------------------------------------------------------------------ whole models */

/* The STRING KVs of m->meta plus "format": "pt" when absent. */
static pare_status st_save_meta(const pare_model *m, pare_meta *out, pare_err *err) {
    for (size_t i = 0; i < m->meta.n; i++)
        if (m->meta.kv[i].type == PARE_META_STRING) TRY(pare_meta_set_kv(out, &m->meta.kv[i], err));
    if (pare_meta_find(out, "format") < 0) TRY(pare_meta_set_str(out, "format", "pt", 2, err));
    return PARE_OK;
}

/* Files the model reads from: never to be overwritten by its own output. */
static const char **st_model_inputs(const pare_model *m, size_t *n) {
    const char **in = calloc(m->n_maps + 1, sizeof *in);
    if (!in) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->n_maps; i++) in[k++] = m->maps[i]->path;
    if (m->path) in[k++] = m->path;
    *n = k;
    return in;
}

/* Larger elements first, then model order: as the reference writer's order by dtype, this
 * keeps every tensor aligned to its element size (the data start is 8-aligned). */
static int st_cmp_align(const void *a, const void *b) {
    const pare_tensor *x = *(pare_tensor *const *)a, *y = *(pare_tensor *const *)b;
    size_t sx = pare_type_get(x->type) ? pare_type_get(x->type)->type_size : 0;
    size_t sy = pare_type_get(y->type) ? pare_type_get(y->type)->type_size : 0;
    if (sx != sy) return sx > sy ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Writes tensors ts[0..n) of m (pointers into m->tensors, reordered here) to path. */
static pare_status st_save_list(const pare_model *m, pare_tensor **ts, size_t n, const pare_meta *meta,
                                const char *path, bool force, pare_err *err) {
    pare_tensor *hdr = calloc(n ? n : 1, sizeof *hdr);
    size_t n_in = 0;
    const char **in = st_model_inputs(m, &n_in);
    if (!hdr || !in) {
        free(hdr);
        free(in);
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
    }
    qsort(ts, n, sizeof *ts, st_cmp_align);
    for (size_t i = 0; i < n; i++) hdr[i] = *ts[i]; /* shallow: only name/type/dims are read */
    pare_st_writer *w = NULL;
    pare_status st = pare_st_writer_open(path, meta, hdr, n, force, in, n_in, &w, err);
    free(hdr);
    free(in);
    for (size_t i = 0; i < n && !st; i++) {
        const void *p;
        void *tmp;
        st = pare_tensor_bytes(ts[i], &p, &tmp, err);
        if (!st) st = pare_st_writer_add(w, p, ts[i]->n_bytes, err);
        free(tmp);
        pare_model_release_tensor(m, ts[i]);
    }
    if (!st) st = pare_st_writer_finish(w, err);
    pare_st_writer_free(w);
    return st;
}

pare_status pare_safetensors_save(const pare_model *m, const char *path, bool force, pare_err *err) {
    pare_tensor **ts = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *ts);
    FAIL_IF(!ts, PARE_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < m->n_tensors; i++) ts[i] = &m->tensors[i];
    pare_meta meta = {0};
    pare_status st = st_save_meta(m, &meta, err);
    if (!st) st = st_save_list(m, ts, m->n_tensors, &meta, path, force, err);
    pare_meta_free(&meta);
    free(ts);
    return st;
}

/* ------------------------------------------------------------------------ sharded save */

/* Assigns each tensor a shard as huggingface_hub's split_state_dict_into_shards: tensors in
 * order fill the current shard until the next would pass max_bytes; a tensor larger than
 * max_bytes gets a shard of its own, numbered when it is met. Returns the shard count. */
static size_t st_plan_shards(const pare_model *m, uint64_t max_bytes, size_t *shard_of, size_t *cur) {
    size_t n_shards = 0, n_cur = 0;
    uint64_t cur_bytes = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        uint64_t nb = m->tensors[i].n_bytes;
        if (nb > max_bytes) {
            shard_of[i] = n_shards++;
            continue;
        }
        if (n_cur && cur_bytes + nb > max_bytes) {
            for (size_t k = 0; k < n_cur; k++) shard_of[cur[k]] = n_shards;
            n_shards++;
            n_cur = 0;
            cur_bytes = 0;
        }
        cur[n_cur++] = i;
        cur_bytes += nb;
    }
    if (n_cur) {
        for (size_t k = 0; k < n_cur; k++) shard_of[cur[k]] = n_shards;
        n_shards++;
    }
    return n_shards;
}

static void st_shard_name(char *buf, size_t cap, size_t s, size_t n_shards) {
    if (n_shards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
}


/* The index as transformers writes it: json.dumps(indent=2, sort_keys=True) + "\n". */
static pare_status st_write_index(const pare_model *m, const char *dir, const size_t *shard_of, size_t n_shards,
                                  bool force, pare_err *err) {
    size_t n = m->n_tensors;
    pare_tensor **ts = malloc((n ? n : 1) * sizeof *ts);
    FAIL_IF(!ts, PARE_ENOMEM, "%s: out of memory", dir);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) ts[i] = &m->tensors[i], total += m->tensors[i].n_bytes;
    qsort(ts, n, sizeof *ts, st_cmp_tensor_name);
    st_buf b = {0};
    sb_puts(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
    sb_u64(&b, total);
    sb_puts(&b, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        char name[64];
        st_shard_name(name, sizeof name, shard_of[ts[i] - m->tensors], n_shards);
        sb_puts(&b, i ? ",\n    " : "\n    ");
        sb_json_str(&b, ts[i]->name, strlen(ts[i]->name));
        sb_puts(&b, ": ");
        sb_json_str(&b, name, strlen(name));
    }
    sb_puts(&b, n ? "\n  }\n}\n" : "}\n}\n");
    free(ts);
    char *path = pare_path_join(dir, "model.safetensors.index.json");
    if (b.oom || !path) {
        free(b.p);
        free(path);
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", dir);
    }
    pare_outfile *f = NULL;
    pare_status st = pare_outfile_open(path, force, NULL, 0, &f, err);
    if (!st) st = pare_outfile_write(f, b.p, b.n, err);
    if (!st) st = pare_outfile_commit(f, err);
    pare_outfile_free(f);
    free(b.p);
    free(path);
    return st;
}

static pare_status st_write_shards(const pare_model *m, const char *dir, const size_t *shard_of, size_t n_shards,
                                   const pare_meta *meta, bool force, pare_err *err) {
    pare_tensor **ts = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *ts);
    FAIL_IF(!ts, PARE_ENOMEM, "%s: out of memory", dir);
    pare_status st = PARE_OK;
    for (size_t s = 0; s < n_shards && !st; s++) {
        size_t k = 0;
        for (size_t i = 0; i < m->n_tensors; i++)
            if (shard_of[i] == s) ts[k++] = &m->tensors[i];
        char name[64];
        st_shard_name(name, sizeof name, s, n_shards);
        char *path = pare_path_join(dir, name);
        if (!path) {
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", dir);
            break;
        }
        st = st_save_list(m, ts, k, meta, path, force, err);
        free(path);
    }
    free(ts);
    return st;
}

pare_status pare_safetensors_save_sharded(const pare_model *m, const char *dir, uint64_t max_shard_bytes, bool force,
                                          pare_err *err) {
    FAIL_IF(max_shard_bytes == 0, PARE_EUSAGE, "%s: the shard size must be positive", dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return pare_err_errno(err, "%s: cannot create folder", dir);
    FAIL_IF(!pare_path_is_dir(dir), PARE_EUSAGE, "%s: exists and is not a folder", dir);
    size_t n = m->n_tensors ? m->n_tensors : 1;
    size_t *shard_of = calloc(n, sizeof *shard_of), *cur = calloc(n, sizeof *cur);
    pare_meta meta = {0};
    pare_status st = (shard_of && cur) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "%s: out of memory", dir);
    size_t n_shards = st ? 0 : st_plan_shards(m, max_shard_bytes, shard_of, cur);
    if (n_shards == 0) n_shards = 1; /* an empty model still gets one (empty) file */
    if (!st) st = st_save_meta(m, &meta, err);
    if (!st) st = st_write_shards(m, dir, shard_of, n_shards, &meta, force, err);
    if (!st && n_shards > 1) st = st_write_index(m, dir, shard_of, n_shards, force, err);
    pare_meta_free(&meta);
    free(shard_of);
    free(cur);
    return st;
}
