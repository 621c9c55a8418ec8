/* prune/structured.c - the surgery of structured pruning: a pruned model as views of the input. */
#include "prune/structured.h"

#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pare_struct_requested(const pare_struct_opts *o) {
    return o->on || o->drop_layers > 0 || o->layers || o->ffn_keep > 0 || o->heads_keep > 0 || o->experts_keep > 0;
}

/* ---- plan and shape --------------------------------------------------------------------- */

pare_status pare_struct_plan_init(pare_struct_plan *p, int n_layer, pare_err *err) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    size_t n = n_layer > 0 ? (size_t)n_layer : 1;
    p->drop = calloc(n, sizeof *p->drop);
    p->ffn_n = calloc(n, sizeof *p->ffn_n);
    p->ffn_idx = calloc(n, sizeof *p->ffn_idx);
    p->kv_n = calloc(n, sizeof *p->kv_n);
    p->kv_idx = calloc(n, sizeof *p->kv_idx);
    p->expert_idx = calloc(n, sizeof *p->expert_idx);
    if (!p->drop || !p->ffn_n || !p->ffn_idx || !p->kv_n || !p->kv_idx || !p->expert_idx) {
        pare_struct_plan_free(p);
        return pare_err_set(err, PARE_ENOMEM, "out of memory for the pruning plan");
    }
    return PARE_OK;
}

void pare_struct_plan_free(pare_struct_plan *p) {
    for (int i = 0; i < p->n_layer; i++) {
        if (p->ffn_idx) free(p->ffn_idx[i]);
        if (p->kv_idx) free(p->kv_idx[i]);
        if (p->expert_idx) free(p->expert_idx[i]);
    }
    free(p->drop);
    free(p->ffn_n);
    free(p->ffn_idx);
    free(p->kv_n);
    free(p->kv_idx);
    free(p->expert_idx);
    memset(p, 0, sizeof *p);
}

/* {arch}.suffix for layer il: a scalar, or element il of a per-layer array; def when absent. */
static bool layer_int(const pare_model *m, const char *suffix, int il, int64_t def, int64_t *v) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    const pare_kv *kv = pare_meta_get(&m->meta, key);
    if (!kv) {
        *v = def;
        return def >= 0;
    }
    if (kv->type == PARE_META_ARRAY) return pare_kv_arr_i64(kv, (uint64_t)il, v);
    return pare_meta_get_i64(&m->meta, key, v);
}

pare_status pare_struct_shape_of(const pare_model *m, pare_struct_shape *s, pare_err *err) {
    memset(s, 0, sizeof *s);
    FAIL_IF(!m->arch || !m->gguf_names, PARE_EUNSUPPORTED, "%s: structured pruning needs GGUF names and metadata",
            m->path);
    int64_t v;
    FAIL_IF(!layer_int(m, "block_count", 0, -1, &v) || v < 1 || v > 100000, PARE_EINPUT,
            "%s: %s.block_count is missing or invalid", m->path, m->arch);
    s->n_layer = (int)v;
    FAIL_IF(!layer_int(m, "embedding_length", 0, -1, &v) || v < 1, PARE_EINPUT,
            "%s: %s.embedding_length is missing", m->path, m->arch);
    s->n_embd = (int)v;
    s->n_ff = calloc((size_t)s->n_layer, sizeof(int));
    s->n_head = calloc((size_t)s->n_layer, sizeof(int));
    s->n_head_kv = calloc((size_t)s->n_layer, sizeof(int));
    if (!s->n_ff || !s->n_head || !s->n_head_kv) {
        pare_struct_shape_free(s);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    for (int il = 0; il < s->n_layer; il++) {
        int64_t h = 0, hk = 0;
        if (!layer_int(m, "attention.head_count", il, -1, &h) || h < 1 ||
            !layer_int(m, "attention.head_count_kv", il, h, &hk) || hk < 1 || h % hk) {
            pare_struct_shape_free(s);
            return pare_err_set(err, PARE_EINPUT, "%s: attention.head_count / head_count_kv of layer %d are invalid",
                                m->path, il);
        }
        s->n_head[il] = (int)h;
        s->n_head_kv[il] = (int)hk;
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", il);
        const pare_tensor *up = pare_model_find(m, name);
        s->n_ff[il] = up && up->n_dims == 2 ? (int)up->ne[1] : 0;
    }
    if (!layer_int(m, "attention.key_length", 0, s->n_embd % s->n_head[0] ? -1 : s->n_embd / s->n_head[0], &v) ||
        v < 1) {
        pare_struct_shape_free(s);
        return pare_err_set(err, PARE_EINPUT, "%s: no head size (attention.key_length)", m->path);
    }
    s->n_embd_head = (int)v;
    if (layer_int(m, "expert_count", 0, 0, &v)) s->n_expert = (int)v;
    if (layer_int(m, "expert_used_count", 0, 0, &v)) s->n_expert_used = (int)v;
    return PARE_OK;
}

void pare_struct_shape_free(pare_struct_shape *s) {
    free(s->n_ff);
    free(s->n_head);
    free(s->n_head_kv);
    memset(s, 0, sizeof *s);
}

typedef struct {
    double s;
    int32_t i;
} scored;

/* Highest score first; equal scores: lower index first. */
static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

static int by_index(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

pare_status pare_struct_top_k(const double *scores, int n, int k, int32_t *idx, pare_err *err) {
    FAIL_IF(k < 0 || k > n, PARE_EINTERNAL, "top %d of %d", k, n);
    scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    FAIL_IF(!v, PARE_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) v[i] = (scored){isnan(scores[i]) ? -INFINITY : scores[i], i};
    qsort(v, (size_t)n, sizeof *v, by_score_desc);
    for (int i = 0; i < k; i++) idx[i] = v[i].i;
    free(v);
    qsort(idx, (size_t)k, sizeof *idx, by_index);
    return PARE_OK;
}

pare_status pare_struct_parse_layers(const char *list, int n_layer, bool *drop, int *n_drop, pare_err *err) {
    *n_drop = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        FAIL_IF(end == p || (*end && *end != ','), PARE_EUSAGE, "--layers '%s': expected comma-separated layer numbers",
                list);
        FAIL_IF(v < 0 || v >= n_layer, PARE_EUSAGE, "--layers: layer %ld is outside 0..%d", v, n_layer - 1);
        FAIL_IF(drop[v], PARE_EUSAGE, "--layers: layer %ld is named twice", v);
        drop[v] = true;
        ++*n_drop;
        p = *end ? end + 1 : end;
    }
    FAIL_IF(*n_drop == 0, PARE_EUSAGE, "--layers: no layer given");
    FAIL_IF(*n_drop >= n_layer, PARE_EUSAGE, "--layers: removing all %d layers leaves no model", n_layer);
    return PARE_OK;
}

/* ---- tensor views ------------------------------------------------------------------------ */

/* A view of a source tensor: the whole of it (axis < 0) or the elements idx[] of one axis. */
typedef struct {
    const pare_model *m; /* the source's model, to release its pages after reading */
    const pare_tensor *src;
    int axis;
    int64_t n_idx;
    int64_t *idx;
} slice_ctx;

static void slice_ctx_free(void *p) {
    slice_ctx *c = p;
    if (c) free(c->idx);
    free(c);
}

static pare_status slice_read(const pare_tensor *t, void *dst, pare_err *err) {
    const slice_ctx *c = t->read_ctx;
    const pare_tensor *s = c->src;
    if (c->axis < 0) {
        pare_status st = pare_tensor_read(s, dst, err);
        pare_model_release_tensor(c->m, s);
        return st;
    }
    uint8_t *out = dst;
    pare_status st = PARE_OK;
    const pare_type_info *ti = pare_type_get(s->type);
    if (c->axis == 0 && ti->block_size > 1) {
        /* columns of a block type: through f32 (t is F32) */
        const int64_t n = pare_tensor_nelements(s), rows = pare_tensor_nrows(s);
        float *f = malloc((size_t)n * sizeof(float) + sizeof(float));
        FAIL_IF(!f, PARE_ENOMEM, "tensor '%s': out of memory", s->name);
        st = pare_tensor_to_f32(s, f, 0, err);
        float *o = (float *)dst;
        for (int64_t r = 0; !st && r < rows; r++)
            for (int64_t k = 0; k < c->n_idx; k++) *o++ = f[r * s->ne[0] + c->idx[k]];
        free(f);
        pare_model_release_tensor(c->m, s);
        return st;
    }
    const void *bytes = NULL;
    void *tmp = NULL;
    TRY(pare_tensor_bytes(s, &bytes, &tmp, err));
    const uint8_t *in = bytes;
    size_t unit; /* bytes of one index step along the axis */
    int64_t outer = 1;
    if (c->axis == 0) {
        unit = ti->type_size;
        for (int d = 1; d < PARE_MAX_DIMS; d++) outer *= s->ne[d];
    } else {
        unit = pare_type_row_size(s->type, s->ne[0]);
        for (int d = 1; d < c->axis; d++) unit *= (size_t)s->ne[d];
        for (int d = c->axis + 1; d < PARE_MAX_DIMS; d++) outer *= s->ne[d];
    }
    const size_t stride = unit * (size_t)s->ne[c->axis];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < c->n_idx; k++) {
            memcpy(out, in + (size_t)o * stride + (size_t)c->idx[k] * unit, unit);
            out += unit;
        }
    free(tmp);
    pare_model_release_tensor(c->m, s);
    return st;
}

pare_type pare_struct_view_source_type(const pare_tensor *t) {
    if (t->read != slice_read || !t->read_ctx) return PARE_TYPE_INVALID;
    const slice_ctx *c = t->read_ctx;
    return c->src->type != t->type ? c->src->type : PARE_TYPE_INVALID;
}

/* Appends to out a view named `name` of src: whole (axis < 0) or elements idx of an axis. */
static pare_status add_view(pare_model *out, const pare_model *m, const pare_tensor *src, const char *name, int axis,
                            const int64_t *idx, int64_t n_idx, pare_err *err) {
    int64_t ne[PARE_MAX_DIMS];
    memcpy(ne, src->ne, sizeof ne);
    pare_type type = src->type;
    if (axis >= 0) {
        FAIL_IF(axis >= src->n_dims && !(axis == 0), PARE_EINTERNAL, "tensor '%s' has no axis %d", src->name, axis);
        ne[axis] = n_idx;
        if (axis == 0 && pare_type_get(type)->block_size > 1) type = PARE_TYPE_F32;
    }
    pare_tensor t = {0};
    TRY(pare_tensor_init(&t, name, type, src->n_dims, ne, err));
    pare_status st = pare_tensor_nbytes(type, src->n_dims, ne, &t.n_bytes, err);
    t.source = -1;
    t.file_offset = src->file_offset;
    if (!st && axis < 0 && src->data) {
        t.data = src->data; /* borrowed: the input outlives the view */
    } else if (!st) {
        slice_ctx *c = calloc(1, sizeof *c);
        if (c && axis >= 0) c->idx = malloc((size_t)(n_idx > 0 ? n_idx : 1) * sizeof *c->idx);
        if (!c || (axis >= 0 && !c->idx)) {
            slice_ctx_free(c);
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        } else {
            *c = (slice_ctx){.m = m, .src = src, .axis = axis, .n_idx = n_idx, .idx = c->idx};
            if (axis >= 0) memcpy(c->idx, idx, (size_t)n_idx * sizeof *idx);
            t.read = slice_read;
            t.read_ctx = c;
            t.read_ctx_free = slice_ctx_free;
        }
    }
    if (!st) st = pare_model_push_tensor(out, &t, err);
    if (st) pare_tensor_clear(&t);
    return st;
}

/* ---- what a tensor loses ------------------------------------------------------------------ */

typedef enum { UNIT_FFN, UNIT_QHEAD, UNIT_KVHEAD, UNIT_EXPERT } unit_kind;

/* Per-layer tensors that lose rows / columns / slabs, by their name after "blk.N.". */
static const struct {
    const char *suffix;
    int axis;
    unit_kind unit;
} cut_table[] = {
    {"ffn_gate.weight", 1, UNIT_FFN},       {"ffn_up.weight", 1, UNIT_FFN},       {"ffn_down.weight", 0, UNIT_FFN},
    {"ffn_gate.bias", 0, UNIT_FFN},         {"ffn_up.bias", 0, UNIT_FFN},
    {"attn_q.weight", 1, UNIT_QHEAD},       {"attn_q.bias", 0, UNIT_QHEAD},       {"attn_output.weight", 0, UNIT_QHEAD},
    {"attn_k.weight", 1, UNIT_KVHEAD},      {"attn_k.bias", 0, UNIT_KVHEAD},
    {"attn_v.weight", 1, UNIT_KVHEAD},      {"attn_v.bias", 0, UNIT_KVHEAD},
    {"ffn_gate_exps.weight", 2, UNIT_EXPERT}, {"ffn_up_exps.weight", 2, UNIT_EXPERT},
    {"ffn_down_exps.weight", 2, UNIT_EXPERT}, {"ffn_gate_exps.bias", 1, UNIT_EXPERT},
    {"ffn_up_exps.bias", 1, UNIT_EXPERT},     {"ffn_down_exps.bias", 1, UNIT_EXPERT},
    {"ffn_gate_inp.weight", 1, UNIT_EXPERT},  {"exp_probs_b.bias", 0, UNIT_EXPERT},
};

/* The element indices along the cut axis that layer il keeps for this unit kind, or n 0 when
 * the layer keeps everything. */
static pare_status kept_elements(const pare_struct_plan *p, const pare_struct_shape *s, int il, unit_kind u,
                                 int64_t **out, int64_t *n, pare_err *err) {
    *out = NULL;
    *n = 0;
    const int32_t *units = NULL;
    int n_units = 0, width = 1, group = 1;
    switch (u) {
    case UNIT_FFN: units = p->ffn_idx[il], n_units = p->ffn_n[il]; break;
    case UNIT_QHEAD:
        units = p->kv_idx[il], n_units = p->kv_n[il], width = s->n_embd_head;
        group = s->n_head[il] / s->n_head_kv[il];
        break;
    case UNIT_KVHEAD: units = p->kv_idx[il], n_units = p->kv_n[il], width = s->n_embd_head; break;
    case UNIT_EXPERT: units = p->expert_idx[il], n_units = p->expert_n; break;
    }
    if (!n_units || !units) return PARE_OK;
    int64_t total = (int64_t)n_units * group * width;
    int64_t *e = malloc((size_t)total * sizeof *e);
    FAIL_IF(!e, PARE_ENOMEM, "out of memory");
    int64_t k = 0;
    for (int i = 0; i < n_units; i++)
        for (int g = 0; g < group; g++)
            for (int w = 0; w < width; w++) e[k++] = ((int64_t)units[i] * group + g) * width + w;
    *out = e;
    *n = total;
    return PARE_OK;
}

/* Expected length of the cut axis of a tensor of layer il for a unit kind. */
static int64_t full_length(const pare_struct_shape *s, int il, unit_kind u) {
    switch (u) {
    case UNIT_FFN: return s->n_ff[il];
    case UNIT_QHEAD: return (int64_t)s->n_head[il] * s->n_embd_head;
    case UNIT_KVHEAD: return (int64_t)s->n_head_kv[il] * s->n_embd_head;
    case UNIT_EXPERT: return s->n_expert;
    }
    return -1;
}

/* ---- metadata ----------------------------------------------------------------------------- */

static pare_status set_key_u32(pare_meta *meta, const char *arch, const char *suffix, uint64_t v, pare_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pare_kv *kv = pare_meta_get(meta, key);
    pare_meta_type t = kv && kv->type != PARE_META_ARRAY ? kv->type : PARE_META_U32;
    if (t == PARE_META_I32 || t == PARE_META_I64 || t == PARE_META_I16 || t == PARE_META_I8)
        return pare_meta_set_int(meta, key, t, (int64_t)v, err);
    return pare_meta_set_uint(meta, key, t, v, err);
}

/* Writes a per-layer value: a scalar when every layer has the same, else an INT32 array (the
 * type gguf-py writes Python int lists with; llama.cpp's loader takes INT32 and UINT32). */
static pare_status set_per_layer(pare_meta *meta, const char *arch, const char *suffix, const int32_t *v, int n,
                                 pare_err *err) {
    bool same = true;
    for (int i = 1; i < n; i++) same &= v[i] == v[0];
    if (same) {
        char key[160];
        snprintf(key, sizeof key, "%s.%s", arch, suffix);
        const pare_kv *kv = pare_meta_get(meta, key);
        if (kv && kv->type == PARE_META_ARRAY) pare_meta_remove(meta, key); /* a scalar again */
        return set_key_u32(meta, arch, suffix, (uint64_t)v[0], err);
    }
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return pare_meta_set_arr(meta, key, PARE_META_I32, v, (uint64_t)n, err);
}

/* Every {arch}.* array of n_layer elements loses the elements of dropped layers. */
static pare_status drop_meta_arrays(pare_meta *meta, const char *arch, const pare_struct_plan *p, int n_keep,
                                    pare_err *err) {
    size_t al = strlen(arch);
    for (size_t i = 0; i < meta->n; i++) {
        pare_kv *kv = &meta->kv[i];
        if (kv->type != PARE_META_ARRAY || kv->n != (uint64_t)p->n_layer || strncmp(kv->key, arch, al) ||
            kv->key[al] != '.')
            continue;
        size_t es = kv->elem_type == PARE_META_STRING ? sizeof(pare_str) : pare_meta_type_size(kv->elem_type);
        FAIL_IF(!es, PARE_EINPUT, "metadata %s: an array of %s", kv->key, pare_meta_type_name(kv->elem_type));
        uint8_t *v = malloc(es * (size_t)(n_keep > 0 ? n_keep : 1));
        FAIL_IF(!v, PARE_ENOMEM, "out of memory");
        size_t k = 0;
        for (int il = 0; il < p->n_layer; il++)
            if (!p->drop[il]) memcpy(v + es * k++, (const uint8_t *)kv->arr + es * (size_t)il, es);
        char *key = strdup(kv->key);
        pare_status st = key ? pare_meta_set_arr(meta, key, kv->elem_type, v, (uint64_t)n_keep, err)
                             : pare_err_set(err, PARE_ENOMEM, "out of memory");
        free(key);
        free(v);
        TRY(st);
    }
    return PARE_OK;
}

/* Moves key `key` (just appended) to right after `after` (both {arch}.-prefixed), where
 * llama.cpp's converter writes it, so that the file converts to HF and back unchanged. */
static void move_after(pare_meta *meta, const char *arch, const char *key, const char *after) {
    char k[160], a[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    snprintf(a, sizeof a, "%s.%s", arch, after);
    long i = pare_meta_find(meta, k), j = pare_meta_find(meta, a);
    if (i < 0 || j < 0 || i <= j + 1) return;
    pare_kv kv = meta->kv[i];
    memmove(&meta->kv[j + 2], &meta->kv[j + 1], (size_t)(i - j - 1) * sizeof kv);
    meta->kv[j + 1] = kv;
}

static pare_status rewrite_meta(pare_meta *meta, const pare_model *m, const pare_struct_shape *s,
                                const pare_struct_plan *p, int n_keep, pare_err *err) {
    const char *a = m->arch;
    TRY(set_key_u32(meta, a, "block_count", (uint64_t)n_keep, err));
    TRY(drop_meta_arrays(meta, a, p, n_keep, err));
    int32_t *ff = malloc((size_t)n_keep * sizeof *ff), *hq = malloc((size_t)n_keep * sizeof *hq),
            *hk = malloc((size_t)n_keep * sizeof *hk);
    pare_status st = ff && hq && hk ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    bool ffn_cut = false, heads_cut = false;
    for (int il = 0, k = 0; !st && il < p->n_layer; il++) {
        if (p->drop[il]) continue;
        ffn_cut |= p->ffn_n[il] > 0;
        heads_cut |= p->kv_n[il] > 0;
        ff[k] = p->ffn_n[il] ? p->ffn_n[il] : s->n_ff[il];
        const int r = s->n_head[il] / s->n_head_kv[il];
        hk[k] = p->kv_n[il] ? p->kv_n[il] : s->n_head_kv[il];
        hq[k] = p->kv_n[il] ? p->kv_n[il] * r : s->n_head[il];
        k++;
    }
    if (!st && ffn_cut) st = set_per_layer(meta, a, "feed_forward_length", ff, n_keep, err);
    if (!st && heads_cut) {
        st = set_per_layer(meta, a, "attention.head_count", hq, n_keep, err);
        if (!st) st = set_per_layer(meta, a, "attention.head_count_kv", hk, n_keep, err);
        /* llama.cpp derives the head size as n_embd / head_count of layer 0 when absent */
        if (!st) st = set_key_u32(meta, a, "attention.key_length", (uint64_t)s->n_embd_head, err);
        if (!st) st = set_key_u32(meta, a, "attention.value_length", (uint64_t)s->n_embd_head, err);
        if (!st) {
            move_after(meta, a, "attention.key_length", "attention.layer_norm_rms_epsilon");
            move_after(meta, a, "attention.value_length", "attention.key_length");
        }
    }
    if (!st && p->expert_n) {
        st = set_key_u32(meta, a, "expert_count", (uint64_t)p->expert_n, err);
        if (!st && s->n_expert_used > p->expert_n)
            st = set_key_u32(meta, a, "expert_used_count", (uint64_t)p->expert_n, err);
    }
    free(ff);
    free(hq);
    free(hk);
    return st;
}

/* gguf-py's model_weight_count_rounded_notation(n, min_digits=2), as the converter labels a
 * model ("3.3M"): a label that was derived from the parameter count follows the new count,
 * so that a GGUF -> HF -> GGUF round trip of the pruned file gives back the same bytes. */
static void count_label(uint64_t n, char *buf, size_t cap) {
    const double x = (double)n;
    const double s = x >= 1e12 ? x * 1e-12 : x >= 1e9 ? x * 1e-9 : x >= 1e6 ? x * 1e-6 : x * 1e-3;
    const char *sfx = x >= 1e12 ? "T" : x >= 1e9 ? "B" : x >= 1e6 ? "M" : "K";
    int digits = 0;
    for (double v = nearbyint(s); v >= 1; v /= 10) digits++;
    snprintf(buf, cap, "%.*f%s", digits < 2 ? 2 - digits : 0, s, sfx);
}

static pare_status relabel(pare_model *o, const pare_model *m, pare_err *err) {
    const char *old = pare_meta_get_str(&m->meta, "general.size_label");
    char was[32], now[32];
    count_label(pare_model_nparams(m), was, sizeof was);
    if (!old || strcmp(old, was)) return PARE_OK;
    count_label(pare_model_nparams(o), now, sizeof now);
    return pare_meta_set_str(&o->meta, "general.size_label", now, strlen(now), err);
}

/* ---- building ------------------------------------------------------------------------------ */

pare_status pare_struct_build(const pare_model *m, const pare_struct_plan *p, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_struct_shape s;
    TRY(pare_struct_shape_of(m, &s, err));
    pare_status st = PARE_OK;
    if (p->n_layer != s.n_layer) st = pare_err_set(err, PARE_EINTERNAL, "plan for %d layers, model has %d", p->n_layer, s.n_layer);
    int *new_index = calloc((size_t)s.n_layer, sizeof *new_index);
    int n_keep = 0;
    for (int il = 0; new_index && il < s.n_layer; il++) new_index[il] = p->drop[il] ? -1 : n_keep++;
    if (!st && !new_index) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st && n_keep == 0) st = pare_err_set(err, PARE_EUSAGE, "%s: the plan removes every layer", m->path);
    pare_model *o = st ? NULL : pare_model_new(PARE_FORMAT_GGUF, m->path);
    if (!st && !o) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) {
        o->version = m->version;
        o->gguf_names = true;
        o->alignment = m->alignment;
        o->arch = strdup(m->arch);
        if (!o->arch) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    if (!st) st = pare_meta_copy(&o->meta, &m->meta, err);
    if (!st) st = rewrite_meta(&o->meta, m, &s, p, n_keep, err);
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        int il = -1, off = 0;
        if (sscanf(t->name, "blk.%d.%n", &il, &off) != 1 || off == 0 || il < 0 || il >= s.n_layer) {
            st = add_view(o, m, t, t->name, -1, NULL, 0, err);
            continue;
        }
        if (p->drop[il]) continue;
        const char *suffix = t->name + off;
        char name[256];
        snprintf(name, sizeof name, "blk.%d.%s", new_index[il], suffix);
        if (p->kv_n[il] && !strncmp(suffix, "attn_qkv.", 9)) {
            st = pare_err_set(err, PARE_EUNSUPPORTED, "%s: tensor '%s': heads of a fused qkv projection cannot be pruned yet",
                              m->path, t->name);
            break;
        }
        int axis = -1;
        unit_kind u = UNIT_FFN;
        for (size_t k = 0; k < sizeof cut_table / sizeof cut_table[0]; k++)
            if (!strcmp(suffix, cut_table[k].suffix)) axis = cut_table[k].axis, u = cut_table[k].unit;
        int64_t *idx = NULL, n_idx = 0;
        if (axis >= 0) st = kept_elements(p, &s, il, u, &idx, &n_idx, err);
        if (!st && n_idx) {
            const int64_t full = full_length(&s, il, u);
            if (axis >= t->n_dims || t->ne[axis] != full)
                st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s': axis %d has %lld elements, expected %lld", m->path,
                                  t->name, axis, axis < PARE_MAX_DIMS ? (long long)t->ne[axis] : -1LL, (long long)full);
        }
        if (!st) st = add_view(o, m, t, name, n_idx ? axis : -1, idx, n_idx, err);
        free(idx);
    }
    if (!st) st = relabel(o, m, err);
    free(new_index);
    pare_struct_shape_free(&s);
    if (st) {
        pare_model_free(o);
        return st;
    }
    *out = o;
    return PARE_OK;
}

/* ---- experts: a proxy from the weights ----------------------------------------------------- */

static pare_status tensor_f32(const pare_model *m, const char *name, float **v, const pare_tensor **t,
                              pare_err *err) {
    *t = pare_model_find(m, name);
    FAIL_IF(!*t, PARE_EINPUT, "%s: tensor '%s' is missing", m->path, name);
    *v = malloc((size_t)pare_tensor_nelements(*t) * sizeof(float) + sizeof(float));
    FAIL_IF(!*v, PARE_ENOMEM, "out of memory");
    pare_status st = pare_tensor_to_f32(*t, *v, 0, err);
    pare_model_release_tensor(m, *t);
    if (st) {
        free(*v);
        *v = NULL;
    }
    return st;
}

pare_status pare_struct_expert_weight_scores(void *user, const pare_model *m, int il, int n_expert, double *scores,
                                             pare_err *err) {
    (void)user;
    char name[96];
    float *r = NULL, *d = NULL;
    const pare_tensor *rt, *dt;
    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", il);
    TRY(tensor_f32(m, name, &r, &rt, err));
    snprintf(name, sizeof name, "blk.%d.ffn_down_exps.weight", il);
    pare_status st = tensor_f32(m, name, &d, &dt, err);
    if (!st && (rt->ne[1] != n_expert || dt->n_dims != 3 || dt->ne[2] != n_expert))
        st = pare_err_set(err, PARE_EINPUT, "%s: layer %d: router or expert tensors do not have %d experts", m->path, il,
                          n_expert);
    for (int e = 0; !st && e < n_expert; e++) {
        double rn = 0, dn = 0;
        for (int64_t j = 0; j < rt->ne[0]; j++) rn += (double)r[e * rt->ne[0] + j] * r[e * rt->ne[0] + j];
        const int64_t per = dt->ne[0] * dt->ne[1];
        for (int64_t j = 0; j < per; j++) dn += (double)d[e * per + j] * d[e * per + j];
        scores[e] = sqrt(rn) * sqrt(dn);
    }
    free(r);
    free(d);
    return st;
}
