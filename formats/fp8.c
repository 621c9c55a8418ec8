/* formats/fp8.c - FP8 weights with block, channel or tensor scales, read as f32 (see fp8.h). */
#include "formats/fp8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BLOCK 128

typedef struct {
    pare_tensor w;     /* the FP8 tensor, moved out of the model */
    pare_tensor s;     /* its scales, moved out of the model */
    int64_t br, bc;    /* block rows, block columns (per-tensor: R x C; per-row: 1 x C) */
    int64_t sr, sc;    /* scale grid: rows, columns */
    /* where w's bytes are in a file the model has mapped (NULL: not mapped): they are read
     * with pread, never through the mapping, whose touched pages would count in the
     * process's resident memory until the end (the whole checkpoint, by the last tensor) */
    const pare_map *wmap;
    uint64_t woff;
} fp8_ctx;

static void fp8_ctx_free(void *p) {
    fp8_ctx *c = p;
    if (!c) return;
    pare_tensor_clear(&c->w);
    pare_tensor_clear(&c->s);
    free(c);
}

static pare_status fp8_read(const pare_tensor *t, void *dst, pare_err *err) {
    const fp8_ctx *c = t->read_ctx;
    const int64_t C = c->w.ne[0], R = pare_tensor_nrows(&c->w);
    const size_t ns = (size_t)(c->sr * c->sc);
    float *scale = malloc(ns * sizeof *scale);
    FAIL_IF(!scale, PARE_ENOMEM, "tensor '%s': out of memory for its scales", t->name);
    pare_status st = pare_tensor_plain_to_f32(&c->s, scale, err);
    const void *q = NULL;
    void *tmp = NULL;
    if (!st && c->wmap) {
        tmp = malloc(c->w.n_bytes ? (size_t)c->w.n_bytes : 1);
        if (!tmp) st = pare_err_set(err, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
        else st = pare_map_pread(c->wmap, tmp, c->woff, (size_t)c->w.n_bytes, err);
        q = tmp;
    } else if (!st) {
        st = pare_tensor_bytes(&c->w, &q, &tmp, err);
    }
    if (st) {
        free(tmp);
        free(scale);
        return st;
    }
    const uint8_t *b = q;
    float *out = dst;
    const bool e4m3 = c->w.type == PARE_TYPE_F8_E4M3;
    for (int64_t r = 0; r < R; r++) {
        const float *srow = scale + (r / c->br) * c->sc;
        const uint8_t *in = b + r * C;
        float *o = out + r * C;
        for (int64_t j = 0; j < C; j++) {
            /* fp8 (<= 4 significant bits) times an f32: the f32 product is the exact
             * product rounded once, as a float64 reference rounded to f32. */
            float v = e4m3 ? pare_f8e4m3_to_fp32(in[j]) : pare_f8e5m2_to_fp32(in[j]);
            o[j] = v * srow[j / c->bc];
        }
    }
    free(tmp);
    free(scale);
    return PARE_OK;
}

static bool is_fp8(pare_type t) { return t == PARE_TYPE_F8_E4M3 || t == PARE_TYPE_F8_E5M2; }
static bool is_scale_type(pare_type t) {
    return t == PARE_TYPE_F32 || t == PARE_TYPE_BF16 || t == PARE_TYPE_F16;
}

/* Name index: tensor names sorted, for pairing weights with scales in O(n log n) (a
 * DeepSeek-V3 checkpoint has about 90,000 tensors). */
typedef struct {
    const char *name;
    size_t idx;
} name_ix;

static int name_ix_cmp(const void *a, const void *b) {
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

static long find_ix(const name_ix *ix, size_t n, const char *name) {
    name_ix key = {name, 0};
    const name_ix *f = bsearch(&key, ix, n, sizeof *ix, name_ix_cmp);
    return f ? (long)f->idx : -1;
}

/* quantization_config.weight_block_size, or 0 x 0 when absent. */
static pare_status config_block(const cJSON *config, const char *path, int64_t *br, int64_t *bc, bool *fp8_cfg,
                                pare_err *err) {
    *br = *bc = 0;
    *fp8_cfg = false;
    const cJSON *qc = config ? cJSON_GetObjectItemCaseSensitive(config, "quantization_config") : NULL;
    if (!cJSON_IsObject(qc)) return PARE_OK;
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    *fp8_cfg = cJSON_IsString(qm) && strcmp(qm->valuestring, "fp8") == 0;
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size");
    if (!bs || cJSON_IsNull(bs)) return PARE_OK;
    const cJSON *a = cJSON_GetArrayItem(bs, 0), *b = cJSON_GetArrayItem(bs, 1);
    FAIL_IF(!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
                a->valuedouble < 1 || b->valuedouble < 1 || a->valuedouble > 65536 || b->valuedouble > 65536 ||
                a->valuedouble != (double)(int64_t)a->valuedouble || b->valuedouble != (double)(int64_t)b->valuedouble,
            PARE_EINPUT, "%s: quantization_config.weight_block_size must be two integers in 1..65536", path);
    *br = (int64_t)a->valuedouble;
    *bc = (int64_t)b->valuedouble;
    return PARE_OK;
}

/* Checks the scale tensor s against the weight w and fills the grid of c. */
static pare_status fit_scale(const char *path, const pare_tensor *w, const pare_tensor *s, bool block, int64_t br,
                             int64_t bc, fp8_ctx *c, pare_err *err) {
    const int64_t C = w->ne[0], R = pare_tensor_nrows(w), n = pare_tensor_nelements(s);
    char a[64], b[64];
    FAIL_IF(!is_scale_type(s->type), PARE_EINPUT, "%s: scale tensor '%s' has type %s (F32, BF16 or F16 expected)",
            path, s->name, pare_type_name(s->type));
    FAIL_IF(w->n_dims != 2, PARE_EINPUT, "%s: FP8 tensor '%s' with scales is %s, not 2-D", path, w->name,
            pare_tensor_shape_str(w, a, sizeof a));
    if (block) {
        if (!br) br = bc = DEFAULT_BLOCK;
        const int64_t sr = (R + br - 1) / br, sc = (C + bc - 1) / bc;
        FAIL_IF(s->n_dims != 2 || s->ne[0] != sc || s->ne[1] != sr, PARE_EINPUT,
                "%s: scale '%s' is %s; weight '%s' %s in %lld x %lld blocks needs [%lld, %lld]", path, s->name,
                pare_tensor_shape_str(s, a, sizeof a), w->name, pare_tensor_shape_str(w, b, sizeof b), (long long)br,
                (long long)bc, (long long)sc, (long long)sr);
        c->br = br, c->bc = bc, c->sr = sr, c->sc = sc;
    } else if (n == 1) {
        c->br = R, c->bc = C, c->sr = 1, c->sc = 1;
    } else {
        FAIL_IF(n != R || (s->n_dims == 2 && s->ne[0] != 1) || s->n_dims > 2, PARE_EINPUT,
                "%s: scale '%s' is %s; weight '%s' %s needs one value or one per row (%lld)", path, s->name,
                pare_tensor_shape_str(s, a, sizeof a), w->name, pare_tensor_shape_str(w, b, sizeof b), (long long)R);
        c->br = 1, c->bc = C, c->sr = R, c->sc = 1;
    }
    return PARE_OK;
}

pare_status pare_fp8_dequant_model(pare_model *m, const cJSON *config, size_t *n_fp8, pare_err *err) {
    const char *path = m->path ? m->path : "model";
    if (n_fp8) *n_fp8 = 0;
    int64_t br, bc;
    bool fp8_cfg;
    TRY(config_block(config, path, &br, &bc, &fp8_cfg, err));
    bool any = false;
    for (size_t i = 0; i < m->n_tensors && !any; i++) any = is_fp8(m->tensors[i].type);
    if (!any) return PARE_OK;

    const size_t n = m->n_tensors;
    name_ix *ix = malloc(n * sizeof *ix);
    unsigned char *drop = calloc(n ? n : 1, 1);
    pare_status st = PARE_OK;
    if (!ix || !drop) {
        st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) ix[i] = (name_ix){m->tensors[i].name, i};
    qsort(ix, n, sizeof *ix, name_ix_cmp);
    size_t replaced = 0;
    char name[1024];
    for (size_t i = 0; i < n && !st; i++) {
        pare_tensor *w = &m->tensors[i];
        const size_t L = strlen(w->name);
        if (L > 12 && strcmp(w->name + L - 12, ".input_scale") == 0) { /* activation scale */
            drop[i] = 1;
            continue;
        }
        if (!is_fp8(w->type)) continue;
        snprintf(name, sizeof name, "%s_scale_inv", w->name);
        long si = find_ix(ix, n, name);
        bool block = si >= 0;
        if (!block) {
            snprintf(name, sizeof name, "%s_scale", w->name);
            si = find_ix(ix, n, name);
        }
        if (si < 0) {
            /* An FP8 tensor without scales is plain FP8 (value = fp8): fine unless the
             * config says the weights are scaled. */
            if (fp8_cfg)
                st = pare_err_set(err, PARE_EINPUT, "%s: FP8 tensor '%s' has no '%s_scale_inv' or '%s_scale'", path,
                                  w->name, w->name, w->name);
            continue;
        }
        fp8_ctx *c = calloc(1, sizeof *c);
        if (!c) {
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
            break;
        }
        st = fit_scale(path, w, &m->tensors[si], block, br, bc, c, err);
        if (st) {
            free(c);
            break;
        }
        /* Move both tensors into the reader's context; the weight's slot becomes the lazy
         * f32 tensor of the same name and shape, the scale's slot is dropped. */
        c->wmap = pare_model_map_of(m, w, &c->woff);
        c->w = *w;
        c->s = m->tensors[si];
        pare_tensor nt;
        st = pare_tensor_init(&nt, c->w.name, PARE_TYPE_F32, c->w.n_dims, c->w.ne, err);
        if (st) {
            free(c);
            break;
        }
        c->w.name = strdup(c->w.name);
        c->s.name = strdup(c->s.name);
        if (!c->w.name || !c->s.name) {
            free(c->w.name);
            free(c->s.name);
            free(c);
            pare_tensor_clear(&nt);
            st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
            break;
        }
        /* the model's slots keep their names until compaction below (ix points at them) */
        nt.file_offset = c->w.file_offset;
        nt.source = -1;
        nt.read = fp8_read;
        nt.read_ctx = c;
        nt.read_ctx_free = fp8_ctx_free;
        pare_tensor old_w = *w;
        *w = nt;
        /* the moved-out copies own data/readers now; the old slots keep only their names */
        old_w.owned = NULL, old_w.read_ctx = NULL, old_w.read_ctx_free = NULL;
        free(old_w.name);
        m->tensors[si].owned = NULL, m->tensors[si].read_ctx = NULL, m->tensors[si].read_ctx_free = NULL;
        drop[si] = 1;
        /* w->name is a fresh copy; refresh the index entry that pointed at the old name */
        for (size_t k = 0; k < n; k++)
            if (ix[k].idx == i) {
                ix[k].name = w->name;
                break;
            }
        replaced++;
    }
    if (!st) {
        /* scales whose weight is missing or not FP8 */
        for (size_t i = 0; i < n && !st; i++) {
            const char *nm = m->tensors[i].name;
            const size_t L = strlen(nm);
            if (drop[i]) continue;
            if ((L > 10 && strcmp(nm + L - 10, "_scale_inv") == 0) ||
                (L > 13 && strcmp(nm + L - 13, ".weight_scale") == 0))
                st = pare_err_set(err, PARE_EINPUT, "%s: scale tensor '%s' has no FP8 weight beside it", path, nm);
        }
    }
    if (!st) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (drop[i]) {
                pare_tensor_clear(&m->tensors[i]);
                continue;
            }
            m->tensors[k++] = m->tensors[i];
        }
        m->n_tensors = k;
        if (n_fp8) *n_fp8 = replaced;
    }
done:
    free(ix);
    free(drop);
    return st;
}
