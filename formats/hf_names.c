/* formats/hf_names.c - HF <-> GGUF tensor names, the q/k row permutation, GPT-2's Conv1D
 * transposes, and pare_hf_to_gguf / pare_gguf_to_hf.
 *
 * Names follow gguf-py's TensorNameMap for the architectures pare knows. HF names carry a
 * ".weight" or ".bias" suffix that is kept as it is. llama-family HF checkpoints store q_proj
 * and k_proj rows in rotate_half order (dimension i pairs with i + head_dim/2) where
 * llama.cpp's RoPE pairs adjacent rows; the converter reorders them, and so does pare, lazily:
 * the tensor gets a reader that produces the permuted bytes on demand. */
#include "formats/hf_impl.h"

#include "core/arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ tables */

/* The name tables are the architecture table's (core/arch.c, .conv). */
typedef pare_arch_conv hf_arch_names;

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const hf_arch_names *arch_find(const char *arch) {
    const pare_arch *a = pare_arch_find(arch);
    return a && a->conv.global ? &a->conv : NULL;
}

bool pare_hf_arch_known(const char *arch) { return arch_find(arch) != NULL; }

bool pare_hf_arch_permutes(const char *arch) {
    const hf_arch_names *a = arch_find(arch);
    return a && (a->flags & PARE_CONV_PERMUTE_QK);
}

unsigned pare_hf_arch_flags(const char *arch) {
    const hf_arch_names *a = arch_find(arch);
    return a ? a->flags : 0;
}

bool pare_hf_name_skipped(const char *arch, const char *hf_name) {
    /* convert_hf_to_gguf.py's prepare_tensors drops these for every model; some families
     * drop more (GPT-2's causal-mask buffers attn.bias / attn.masked_bias). */
    static const char *const all[] = {".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"};
    for (size_t i = 0; i < N_OF(all); i++)
        if (pare_str_ends_with(hf_name, all[i])) return true;
    const hf_arch_names *a = arch_find(arch);
    for (const char *const *s = a ? a->skip_suffixes : NULL; s && *s; s++)
        if (pare_str_ends_with(hf_name, *s)) return true;
    for (const char *const *s = a ? a->skip_prefixes : NULL; s && *s; s++)
        if (strncmp(hf_name, *s, strlen(*s)) == 0) return true;
    return false;
}

/* The HF name with the family's prefix rewrite applied (the longest matching prefix), in buf;
 * the name itself when none applies or it does not fit. */
static const char *rewrite_prefix(const hf_arch_names *a, const char *hf_name, char *buf, size_t cap) {
    const pare_arch_name *best = NULL;
    for (const pare_arch_name *p = a->prefix_map; p && p->hf; p++)
        if (strncmp(hf_name, p->hf, strlen(p->hf)) == 0 && (!best || strlen(p->hf) > strlen(best->hf))) best = p;
    if (!best) return hf_name;
    int n = snprintf(buf, cap, "%s%s", best->gguf, hf_name + strlen(best->hf));
    return n > 0 && (size_t)n < cap ? buf : hf_name;
}

/* ------------------------------------------------------------------------ mapping */

/* Parses a block id: decimal, no sign, no leading zero, below 10^6. Returns the characters
 * used (0 when none). */
static size_t parse_bid(const char *s, int *bid) {
    size_t n = 0;
    int v = 0;
    while (s[n] >= '0' && s[n] <= '9' && n < 7) v = v * 10 + (s[n++] - '0');
    if (n == 0 || n > 6 || (n > 1 && s[0] == '0')) return 0;
    *bid = v;
    return n;
}

/* Splits "stem.weight" / "stem.bias" (or a bare stem): the suffix, or "" when none. */
static const char *name_suffix(const char *name, size_t *stem_len) {
    size_t n = strlen(name);
    static const char *const sfx[] = {".weight", ".bias"};
    for (size_t i = 0; i < N_OF(sfx); i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && memcmp(name + n - k, sfx[i], k) == 0) {
            *stem_len = n - k;
            return sfx[i];
        }
    }
    *stem_len = n;
    return "";
}

static bool put_name(char *out, size_t cap, const char *a, int bid, const char *b, const char *sfx) {
    int n = bid >= 0 ? snprintf(out, cap, "%s%d.%s%s", a, bid, b, sfx) : snprintf(out, cap, "%s%s%s", a, b, sfx);
    return n > 0 && (size_t)n < cap;
}

static bool stem_eq(const char *stem, size_t len, const char *s) { return strlen(s) == len && !memcmp(stem, s, len); }

/* GGUF stem (no suffix) of one HF stem. */
static bool map_stem_to_gguf(const hf_arch_names *a, const char *stem, size_t len, char *out, size_t cap,
                             const char *sfx, int *bid) {
    *bid = -1;
    for (size_t i = 0; i < a->n_global; i++)
        if (stem_eq(stem, len, a->global[i].hf)) return put_name(out, cap, a->global[i].gguf, -1, "", sfx);
    for (const char *const *p = a->block_prefixes; *p; p++) {
        size_t pl = strlen(*p);
        if (len <= pl || memcmp(stem, *p, pl) != 0) continue;
        int b;
        size_t nd = parse_bid(stem + pl, &b);
        if (!nd || stem[pl + nd] != '.') continue;
        const char *rest = stem + pl + nd + 1;
        size_t rlen = len - pl - nd - 1;
        for (size_t i = 0; i < a->n_block; i++)
            if (stem_eq(rest, rlen, a->block[i].hf)) {
                *bid = b;
                return put_name(out, cap, "blk.", b, a->block[i].gguf, sfx);
            }
    }
    return false;
}

/* Whether stem is already a GGUF name of the arch (gguf-py maps those to themselves). */
static bool gguf_stem_known(const hf_arch_names *a, const char *stem, size_t len, int *bid) {
    *bid = -1;
    for (size_t i = 0; i < a->n_global; i++)
        if (stem_eq(stem, len, a->global[i].gguf)) return true;
    for (const char *const *x = a->extra_gguf; x && *x; x++)
        if (stem_eq(stem, len, *x)) return true;
    if (len > 4 && memcmp(stem, "blk.", 4) == 0) {
        int b;
        size_t nd = parse_bid(stem + 4, &b);
        if (!nd || stem[4 + nd] != '.') return false;
        const char *rest = stem + 4 + nd + 1;
        size_t rlen = len - 4 - nd - 1;
        for (size_t i = 0; i < a->n_block; i++)
            if (stem_eq(rest, rlen, a->block[i].gguf)) {
                *bid = b;
                return true;
            }
        for (const pare_arch_expert *x = a->experts; x && x->hf; x++)
            if (stem_eq(rest, rlen, x->gguf)) {
                *bid = b;
                return true;
            }
    }
    return false;
}

bool pare_hf_map_name(const char *arch, const char *hf_name, char *out, size_t cap, int *bid) {
    const hf_arch_names *a = arch_find(arch);
    if (!a || !hf_name || !cap) return false;
    char rw[512];
    hf_name = rewrite_prefix(a, hf_name, rw, sizeof rw);
    size_t len;
    const char *sfx = name_suffix(hf_name, &len);
    if (map_stem_to_gguf(a, hf_name, len, out, cap, sfx, bid)) return true;
    /* gguf-py also tries the whole name without splitting a suffix off. */
    if (*sfx && map_stem_to_gguf(a, hf_name, strlen(hf_name), out, cap, "", bid)) return true;
    if (gguf_stem_known(a, hf_name, len, bid)) {
        size_t n = strlen(hf_name);
        if (n >= cap) return false;
        memcpy(out, hf_name, n + 1);
        return true;
    }
    return false;
}

bool pare_hf_name_to_gguf(const char *arch, const char *hf_name, char *out, size_t cap) {
    int bid;
    return pare_hf_map_name(arch, hf_name, out, cap, &bid);
}

bool pare_gguf_name_to_hf(const char *arch, const char *gguf_name, char *out, size_t cap) {
    const hf_arch_names *a = arch_find(arch);
    if (!a || !gguf_name || !cap) return false;
    size_t len;
    const char *sfx = name_suffix(gguf_name, &len);
    for (size_t i = 0; i < a->n_global; i++)
        if (stem_eq(gguf_name, len, a->global[i].gguf)) return put_name(out, cap, a->global[i].hf, -1, "", sfx);
    if (len > 4 && memcmp(gguf_name, "blk.", 4) == 0) {
        int b;
        size_t nd = parse_bid(gguf_name + 4, &b);
        if (!nd || gguf_name[4 + nd] != '.') return false;
        const char *rest = gguf_name + 4 + nd + 1;
        size_t rlen = len - 4 - nd - 1;
        for (size_t i = 0; i < a->n_block; i++)
            if (stem_eq(rest, rlen, a->block[i].gguf)) return put_name(out, cap, a->block_prefixes[0], b, a->block[i].hf, sfx);
    }
    return false;
}

/* ------------------------------------------------------------------------ permutation */

void pare_hf_permute_rows(const void *src, void *dst, int64_t n_rows, size_t row_bytes, int n_head, bool inverse) {
    /* Per head: view the head's rows as (2, half) -> (half, 2). Forward: dst row j*2+k takes
     * src row k*half+j, i.e. the converter's reshape(n_head, 2, half, in).swapaxes(1, 2). */
    const uint8_t *s = src;
    uint8_t *d = dst;
    int64_t head_dim = n_rows / n_head, half = head_dim / 2;
    for (int64_t h = 0; h < n_head; h++) {
        const uint8_t *sh = s + (size_t)(h * head_dim) * row_bytes;
        uint8_t *dh = d + (size_t)(h * head_dim) * row_bytes;
        for (int64_t j = 0; j < half; j++)
            for (int64_t k = 0; k < 2; k++) {
                int64_t a = j * 2 + k, b = k * half + j; /* a: llama.cpp order, b: HF order */
                int64_t to = inverse ? b : a, from = inverse ? a : b;
                memcpy(dh + (size_t)to * row_bytes, sh + (size_t)from * row_bytes, row_bytes);
            }
    }
}

static bool gguf_name_is(const char *gguf_name, const char *what) {
    /* blk.N.<what>.weight|bias */
    int b;
    if (strncmp(gguf_name, "blk.", 4) != 0) return false;
    size_t nd = parse_bid(gguf_name + 4, &b);
    if (!nd || gguf_name[4 + nd] != '.') return false;
    const char *rest = gguf_name + 4 + nd + 1;
    size_t wl = strlen(what);
    return strncmp(rest, what, wl) == 0 && (strcmp(rest + wl, ".weight") == 0 || strcmp(rest + wl, ".bias") == 0);
}

static int meta_heads(const pare_meta *meta, const char *arch, const char *what) {
    char key[96];
    snprintf(key, sizeof key, "%s.attention.%s", arch, what);
    uint64_t v;
    if (!pare_meta_get_u64(meta, key, &v) || v == 0 || v > PARE_HF_MAX_HEADS) return 0;
    return (int)v;
}

int pare_hf_permute_heads(const pare_model *m, const char *gguf_name) {
    if (!m || !pare_hf_arch_permutes(m->arch)) return 0;
    int n_head = meta_heads(&m->meta, m->arch, "head_count");
    if (gguf_name_is(gguf_name, "attn_q")) return n_head;
    if (gguf_name_is(gguf_name, "attn_k")) {
        int kv = meta_heads(&m->meta, m->arch, "head_count_kv");
        return kv ? kv : n_head;
    }
    return 0;
}

/* ------------------------------------------------------------------------ lazy transforms */

typedef enum { HF_XF_ALIAS, HF_XF_PERMUTE, HF_XF_TRANSPOSE, HF_XF_ADD, HF_XF_NEOX_QKV, HF_XF_CONCAT } hf_xf_kind;

/* The reader context of a transformed tensor: `src` holds what the tensor was before (its
 * data pointer, owned buffer, or reader, and its original dims), owned by this context unless
 * `borrowed` (aliases). */
typedef struct {
    hf_xf_kind kind;
    bool inverse;
    int n_head;
    bool borrowed;
    float add;          /* HF_XF_ADD: the value added to every element */
    pare_tensor src;
    pare_tensor *parts; /* HF_XF_CONCAT: n_parts tensors (owned), concatenated in order */
    size_t n_parts;
} hf_xf;

static void xf_free(void *p) {
    hf_xf *x = p;
    if (!x) return;
    if (x->borrowed) {
        free(x->src.name);
    } else {
        pare_tensor_clear(&x->src);
    }
    for (size_t i = 0; i < x->n_parts; i++) pare_tensor_clear(&x->parts[i]);
    free(x->parts);
    free(x);
}

/* GPT-NeoX's fused query_key_value: HF rows are (head, {q,k,v}, head_dim), llama.cpp's
 * ({q,k,v}, head, head_dim). Row r of dst comes from row neox_row(r) of src. */
static int64_t neox_row(int64_t r, int64_t n_head, int64_t hd, bool inverse) {
    if (!inverse) { /* dst (part, head, j) <- src (head, part, j) */
        int64_t part = r / (n_head * hd), h = (r / hd) % n_head, j = r % hd;
        return (h * 3 + part) * hd + j;
    }
    int64_t h = r / (3 * hd), part = (r / hd) % 3, j = r % hd; /* dst (head, part, j) <- src (part, head, j) */
    return (part * n_head + h) * hd + j;
}

/* dst (cols x rows of es bytes) = transpose of src (rows x cols), in tiles for the cache. */
static void transpose_bytes(const uint8_t *src, uint8_t *dst, int64_t rows, int64_t cols, size_t es) {
    enum { T = 32 };
    for (int64_t r0 = 0; r0 < rows; r0 += T)
        for (int64_t c0 = 0; c0 < cols; c0 += T) {
            int64_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    memcpy(dst + (size_t)(c * rows + r) * es, src + (size_t)(r * cols + c) * es, es);
        }
}

static pare_status xf_read(const pare_tensor *t, void *dst, pare_err *err) {
    const hf_xf *x = t->read_ctx;
    if (x->kind == HF_XF_ALIAS) return pare_tensor_read(&x->src, dst, err);
    if (x->kind == HF_XF_CONCAT) {
        uint8_t *d = dst;
        for (size_t i = 0; i < x->n_parts; i++) {
            TRY(pare_tensor_read(&x->parts[i], d, err));
            d += x->parts[i].n_bytes;
        }
        return PARE_OK;
    }
    const void *p;
    void *tmp;
    TRY(pare_tensor_bytes(&x->src, &p, &tmp, err));
    if (x->kind == HF_XF_PERMUTE) {
        int64_t rows = x->src.n_dims == 1 ? x->src.ne[0] : pare_tensor_nrows(&x->src);
        size_t row_bytes = (size_t)(x->src.n_bytes / (uint64_t)rows);
        pare_hf_permute_rows(p, dst, rows, row_bytes, x->n_head, x->inverse);
    } else if (x->kind == HF_XF_NEOX_QKV) {
        int64_t rows = x->src.n_dims == 1 ? x->src.ne[0] : pare_tensor_nrows(&x->src);
        size_t row_bytes = (size_t)(x->src.n_bytes / (uint64_t)rows);
        int64_t hd = rows / 3 / x->n_head;
        for (int64_t r = 0; r < rows; r++)
            memcpy((uint8_t *)dst + (size_t)r * row_bytes,
                   (const uint8_t *)p + (size_t)neox_row(r, x->n_head, hd, x->inverse) * row_bytes, row_bytes);
    } else if (x->kind == HF_XF_ADD) {
        /* In the tensor's own type, as torch adds a Python float to it: computed in f32,
         * rounded back to nearest even. */
        int64_t n = pare_tensor_nelements(&x->src);
        if (x->src.type == PARE_TYPE_F32) {
            const float *a = p;
            float *o = dst;
            for (int64_t i = 0; i < n; i++) o[i] = a[i] + x->add;
        } else {
            const uint16_t *a = p;
            uint16_t *o = dst;
            bool f16 = x->src.type == PARE_TYPE_F16;
            for (int64_t i = 0; i < n; i++)
                o[i] = f16 ? pare_fp32_to_fp16(pare_fp16_to_fp32(a[i]) + x->add)
                           : pare_fp32_to_bf16(pare_bf16_to_fp32(a[i]) + x->add);
        }
    } else {
        size_t es = pare_type_get(x->src.type)->type_size;
        transpose_bytes(p, dst, x->src.ne[1], x->src.ne[0], es);
    }
    free(tmp);
    return PARE_OK;
}

/* Moves t's data source into a new transform context and installs the lazy reader. */
static pare_status xf_install(pare_tensor *t, hf_xf_kind kind, int n_head, bool inverse, pare_err *err) {
    hf_xf *x = calloc(1, sizeof *x);
    char *nm = strdup(t->name);
    if (!x || !nm) {
        free(x);
        free(nm);
        return pare_err_set(err, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
    }
    x->kind = kind;
    x->n_head = n_head;
    x->inverse = inverse;
    x->src = *t;
    x->src.name = nm;
    t->data = NULL;
    t->owned = NULL;
    t->read = xf_read;
    t->read_ctx = x;
    t->read_ctx_free = xf_free;
    return PARE_OK;
}

pare_status pare_hf_tensor_alias(pare_tensor *t, const pare_tensor *src, const char *name, pare_err *err) {
    hf_xf *x = calloc(1, sizeof *x);
    FAIL_IF(!x, PARE_ENOMEM, "tensor '%s': out of memory", name);
    pare_status st = pare_tensor_init(t, name, src->type, src->n_dims, src->ne, err);
    if (st) {
        free(x);
        return st;
    }
    x->kind = HF_XF_ALIAS;
    x->borrowed = true;
    x->src = *src;
    x->src.owned = NULL;
    x->src.read_ctx_free = NULL;
    x->src.name = strdup(src->name);
    if (!x->src.name) {
        free(x);
        pare_tensor_clear(t);
        return pare_err_set(err, PARE_ENOMEM, "tensor '%s': out of memory", name);
    }
    t->n_bytes = src->n_bytes;
    t->source = src->source;
    t->file_offset = src->file_offset;
    if (src->data) {
        /* Mapped or owned bytes: point at them directly, the reader is not needed. */
        t->data = src->data;
        xf_free(x);
        return PARE_OK;
    }
    t->read = xf_read;
    t->read_ctx = x;
    t->read_ctx_free = xf_free;
    return PARE_OK;
}

static pare_status permute_tensor(pare_tensor *t, const char *path, int n_head, bool inverse, pare_err *err) {
    int64_t rows = t->n_dims == 1 ? t->ne[0] : pare_tensor_nrows(t);
    FAIL_IF(n_head <= 0 || rows % (2 * (int64_t)n_head) != 0, PARE_EINPUT,
            "%s: tensor '%s': %lld rows cannot be split into %d heads of an even size", path, t->name,
            (long long)rows, n_head);
    FAIL_IF(rows == 0 || t->n_bytes % (uint64_t)rows != 0, PARE_EINPUT, "%s: tensor '%s': rows of uneven size", path,
            t->name);
    return xf_install(t, HF_XF_PERMUTE, n_head, inverse, err);
}

static pare_status transpose_tensor(pare_tensor *t, const char *path, pare_err *err) {
    const pare_type_info *ti = pare_type_get(t->type);
    FAIL_IF(!ti || ti->is_quantized, PARE_EUNSUPPORTED, "%s: tensor '%s': cannot transpose a %s tensor", path,
            t->name, pare_type_name(t->type));
    FAIL_IF(t->n_dims != 2, PARE_EINPUT, "%s: tensor '%s': expected 2 dimensions for a Conv1D weight, got %d", path,
            t->name, t->n_dims);
    TRY(xf_install(t, HF_XF_TRANSPOSE, 0, false, err));
    int64_t a = t->ne[0];
    t->ne[0] = t->ne[1];
    t->ne[1] = a;
    return PARE_OK;
}

static pare_status add_tensor(pare_tensor *t, const char *path, float add, pare_err *err) {
    FAIL_IF(t->type != PARE_TYPE_F32 && t->type != PARE_TYPE_F16 && t->type != PARE_TYPE_BF16, PARE_EUNSUPPORTED,
            "%s: tensor '%s': cannot add %g to a %s tensor", path, t->name, (double)add, pare_type_name(t->type));
    TRY(xf_install(t, HF_XF_ADD, 0, false, err));
    ((hf_xf *)t->read_ctx)->add = add;
    return PARE_OK;
}

static pare_status neox_qkv_tensor(pare_tensor *t, const char *path, int n_head, bool inverse, pare_err *err) {
    int64_t rows = t->n_dims == 1 ? t->ne[0] : pare_tensor_nrows(t);
    FAIL_IF(n_head <= 0 || rows % (3 * (int64_t)n_head) != 0 || t->n_bytes % (uint64_t)rows != 0, PARE_EINPUT,
            "%s: tensor '%s': %lld rows cannot be split into q, k, v of %d heads", path, t->name, (long long)rows,
            n_head);
    return xf_install(t, HF_XF_NEOX_QKV, n_head, inverse, err);
}

/* ------------------------------------------------------------------------ model passes */

static const char *model_path(const pare_model *m) { return m->path ? m->path : "model"; }

static void remove_tensor(pare_model *m, size_t i) {
    pare_tensor_clear(&m->tensors[i]);
    memmove(&m->tensors[i], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
    m->n_tensors--;
}

static pare_status rename_tensor(pare_tensor *t, const char *name, pare_err *err) {
    char *n = strdup(name);
    FAIL_IF(!n, PARE_ENOMEM, "out of memory");
    free(t->name);
    t->name = n;
    return PARE_OK;
}

typedef struct {
    const char *name, *path;
    uint64_t offset;
    size_t index;
} hf_sort_key;

static int sort_key_cmp(const void *pa, const void *pb) {
    const hf_sort_key *a = pa, *b = pb;
    int c = strcmp(a->path, b->path);
    if (c) return c;
    if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Puts tensors in (source file name, offset in the file) order: how the converter iterates
 * safetensors parts (sorted file names, each file's tensors as the file lays them out; files
 * written by safetensors itself have them in name order). */
pare_status pare_hf_sort_tensors(pare_model *m, pare_err *err) {
    size_t n = m->n_tensors;
    if (n < 2) return PARE_OK;
    hf_sort_key *k = malloc(n * sizeof *k);
    pare_tensor *t = malloc(n * sizeof *t);
    if (!k || !t) {
        free(k);
        free(t);
        return pare_err_set(err, PARE_ENOMEM, "out of memory sorting %zu tensors", n);
    }
    for (size_t i = 0; i < n; i++) {
        const pare_tensor *x = &m->tensors[i];
        k[i].name = x->name;
        k[i].path = (x->source >= 0 && (size_t)x->source < m->n_maps) ? m->maps[x->source]->path : "";
        k[i].offset = x->file_offset;
        k[i].index = i;
    }
    qsort(k, n, sizeof *k, sort_key_cmp);
    for (size_t i = 0; i < n; i++) t[i] = m->tensors[k[i].index];
    memcpy(m->tensors, t, n * sizeof *t);
    free(k);
    free(t);
    return PARE_OK;
}

static pare_status check_bid(const pare_model *m, const pare_tensor *t, int bid, pare_err *err) {
    char key[96];
    uint64_t n;
    snprintf(key, sizeof key, "%s.block_count", m->arch);
    if (bid >= 0 && pare_meta_get_u64(&m->meta, key, &n))
        FAIL_IF((uint64_t)bid >= n, PARE_EINPUT, "%s: tensor '%s' belongs to block %d, but the model has %llu blocks",
                model_path(m), t->name, bid, (unsigned long long)n);
    return PARE_OK;
}

static int meta_count(const pare_model *m, const char *suffix) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    uint64_t v;
    if (!pare_meta_get_u64(&m->meta, key, &v) || v == 0 || v > PARE_HF_MAX_HEADS) return 0;
    return (int)v;
}

/* One tensor to GGUF: name, then the family's changes (chosen by the HF name, as the
 * converter does): q/k permutation, Conv1D transpose, Gemma's norm + 1, NeoX's qkv order. */
static pare_status tensor_to_gguf(pare_model *m, pare_tensor *t, pare_err *err) {
    char gname[256];
    int bid;
    unsigned flags = pare_hf_arch_flags(m->arch);
    FAIL_IF(!pare_hf_map_name(m->arch, t->name, gname, sizeof gname, &bid), PARE_EUNSUPPORTED,
            "%s: tensor '%s' has no GGUF name for architecture %s", model_path(m), t->name, m->arch);
    TRY(check_bid(m, t, bid, err));
    bool q = pare_str_ends_with(t->name, "q_proj.weight") || pare_str_ends_with(t->name, "q_proj.bias");
    bool k = pare_str_ends_with(t->name, "k_proj.weight") || pare_str_ends_with(t->name, "k_proj.bias");
    bool conv1d = (flags & PARE_CONV_CONV1D) &&
                  (pare_str_ends_with(t->name, ".c_attn.weight") || pare_str_ends_with(t->name, ".c_proj.weight") ||
                   pare_str_ends_with(t->name, ".c_fc.weight"));
    bool plus1 = (flags & PARE_CONV_NORM_PLUS1) && pare_str_ends_with(t->name, "norm.weight");
    bool qkv = (flags & PARE_CONV_NEOX_QKV) && (pare_str_ends_with(t->name, ".query_key_value.weight") ||
                                                pare_str_ends_with(t->name, ".query_key_value.bias"));
    TRY(rename_tensor(t, gname, err));
    if (pare_hf_arch_permutes(m->arch) && (q || k)) {
        int nh = pare_hf_permute_heads(m, gname);
        FAIL_IF(nh == 0, PARE_EINPUT, "%s: tensor '%s' needs %s.attention.head_count in the metadata to be permuted",
                model_path(m), gname, m->arch);
        TRY(permute_tensor(t, model_path(m), nh, false, err));
    }
    if (conv1d) TRY(transpose_tensor(t, model_path(m), err));
    if (plus1) TRY(add_tensor(t, model_path(m), 1.0f, err));
    if (qkv) {
        int nh = meta_count(m, "attention.head_count");
        FAIL_IF(nh == 0, PARE_EINPUT, "%s: tensor '%s' needs %s.attention.head_count in the metadata to be reordered",
                model_path(m), gname, m->arch);
        TRY(neox_qkv_tensor(t, model_path(m), nh, false, err));
    }
    return PARE_OK;
}

/* The converter writes the token embedding a second time as output.weight (GPT-2). */
static pare_status add_output_copy(pare_model *m, pare_err *err) {
    if (pare_model_find(m, "output.weight")) return PARE_OK;
    size_t e = 0;
    while (e < m->n_tensors && strcmp(m->tensors[e].name, "token_embd.weight") != 0) e++;
    if (e == m->n_tensors) return PARE_OK;
    pare_tensor out = {0};
    TRY(pare_hf_tensor_alias(&out, &m->tensors[e], "output.weight", err));
    pare_status st = pare_model_push_tensor(m, &out, err);
    if (st) {
        pare_tensor_clear(&out);
        return st;
    }
    /* right after the embedding, where the converter writes it */
    pare_tensor last = m->tensors[m->n_tensors - 1];
    memmove(&m->tensors[e + 2], &m->tensors[e + 1], (m->n_tensors - e - 2) * sizeof *m->tensors);
    m->tensors[e + 1] = last;
    return PARE_OK;
}

static bool is_hf_embedding(const char *arch, const char *hf_name) {
    char g[256];
    return pare_hf_name_to_gguf(arch, hf_name, g, sizeof g) && strcmp(g, "token_embd.weight") == 0;
}

/* lm_head stored in the same bytes as the embedding (a tied torch checkpoint) is dropped; so
 * is any lm_head of a family whose converter never writes one (Gemma). */
static void drop_lm_head(pare_model *m) {
    const pare_tensor *e = NULL;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (is_hf_embedding(m->arch, m->tensors[i].name)) e = &m->tensors[i];
    bool always = pare_hf_arch_flags(m->arch) & PARE_CONV_DROP_LM_HEAD;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, "lm_head.weight") == 0 &&
            (always || (e && m->tensors[i].data && m->tensors[i].data == e->data && m->tensors[i].n_bytes == e->n_bytes))) {
            remove_tensor(m, i);
            return;
        }
}

/* ------------------------------------------------------------------------ experts */

/* "PREFIX N. EXPERTS E. PART .weight" of the family: block, expert and part index. */
static bool expert_name(const hf_arch_names *a, const char *name, int *bid, int *xid, int *part) {
    if (!a->experts_prefix || !a->experts) return false;
    for (const char *const *p = a->block_prefixes; *p; p++) {
        size_t pl = strlen(*p);
        if (strncmp(name, *p, pl) != 0) continue;
        size_t nd = parse_bid(name + pl, bid);
        if (!nd || name[pl + nd] != '.') continue;
        const char *r = name + pl + nd + 1;
        size_t el = strlen(a->experts_prefix);
        if (strncmp(r, a->experts_prefix, el) != 0) continue;
        r += el;
        size_t xd = parse_bid(r, xid);
        if (!xd || r[xd] != '.') continue;
        r += xd + 1;
        for (int i = 0; a->experts[i].hf; i++) {
            size_t hl = strlen(a->experts[i].hf);
            if (strncmp(r, a->experts[i].hf, hl) == 0 && strcmp(r + hl, ".weight") == 0) {
                *part = i;
                return true;
            }
        }
    }
    return false;
}

/* Builds blk.N.<gguf>.weight (3-D, experts outermost) from the n_expert 2-D tensors in parts. */
static pare_status concat_experts(pare_tensor *out, const char *name, pare_tensor *parts, int n, const char *path,
                                  pare_err *err) {
    for (int i = 1; i < n; i++)
        FAIL_IF(parts[i].type != parts[0].type || parts[i].n_dims != 2 || parts[i].ne[0] != parts[0].ne[0] ||
                    parts[i].ne[1] != parts[0].ne[1],
                PARE_EINPUT, "%s: expert tensor '%s' does not match the shape or type of '%s'", path, parts[i].name,
                parts[0].name);
    FAIL_IF(parts[0].n_dims != 2, PARE_EINPUT, "%s: expert tensor '%s' is not 2-D", path, parts[0].name);
    int64_t ne[3] = {parts[0].ne[0], parts[0].ne[1], n};
    hf_xf *x = calloc(1, sizeof *x);
    FAIL_IF(!x, PARE_ENOMEM, "out of memory");
    pare_status st = pare_tensor_init(out, name, parts[0].type, 3, ne, err);
    if (st) {
        free(x);
        return st;
    }
    x->kind = HF_XF_CONCAT;
    x->parts = parts;
    x->n_parts = (size_t)n;
    x->src.name = NULL;
    x->borrowed = true; /* src is unused */
    out->n_bytes = 0;
    for (int i = 0; i < n; i++) out->n_bytes += parts[i].n_bytes;
    out->source = -1;
    out->read = xf_read;
    out->read_ctx = x;
    out->read_ctx_free = xf_free;
    return PARE_OK;
}

/* The converter collects a block's expert tensors and, when the last one arrives, writes one
 * 3-D tensor per part (in the family's part order) where that last one was. */
static pare_status merge_experts(pare_model *m, const hf_arch_names *a, pare_err *err) {
    int n_exp = meta_count(m, "expert_count");
    size_t n_parts = 0;
    while (a->experts && a->experts[n_parts].hf) n_parts++;
    bool any = false;
    for (size_t i = 0; i < m->n_tensors && !any; i++) {
        int b, x, p;
        any = expert_name(a, m->tensors[i].name, &b, &x, &p);
    }
    if (!any) return PARE_OK;
    FAIL_IF(n_exp == 0, PARE_EINPUT, "%s: expert tensors but no %s.expert_count in the metadata", model_path(m),
            m->arch);
    size_t n = m->n_tensors, o = 0;
    pare_tensor *out = calloc(n + n_parts * 64, sizeof *out);
    /* per (block, part): the experts seen, by expert index */
    int max_b = 0;
    for (size_t i = 0; i < n; i++) {
        int b, x, p;
        if (expert_name(a, m->tensors[i].name, &b, &x, &p) && b > max_b) max_b = b;
    }
    size_t slots = (size_t)(max_b + 1) * n_parts * (size_t)n_exp;
    pare_tensor *pend = calloc(slots ? slots : 1, sizeof *pend);
    int *count = calloc((size_t)(max_b + 1), sizeof *count);
    size_t cap = n + n_parts * 64;
    pare_status st = (out && pend && count) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        pare_tensor *t = &m->tensors[i];
        int b, x, p;
        if (!expert_name(a, t->name, &b, &x, &p)) {
            out[o++] = *t;
            memset(t, 0, sizeof *t);
            continue;
        }
        if (x >= n_exp) {
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s': expert %d, but the model has %d experts",
                              model_path(m), t->name, x, n_exp);
            break;
        }
        pare_tensor *slot = &pend[((size_t)b * n_parts + (size_t)p) * (size_t)n_exp + (size_t)x];
        if (slot->name) {
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' appears twice", model_path(m), t->name);
            break;
        }
        *slot = *t;
        memset(t, 0, sizeof *t);
        if (++count[b] < n_exp * (int)n_parts) continue;
        count[b] = 0;
        for (size_t q = 0; !st && q < n_parts; q++) {
            pare_tensor *parts = malloc((size_t)n_exp * sizeof *parts);
            if (!parts) {
                st = pare_err_set(err, PARE_ENOMEM, "out of memory");
                break;
            }
            memcpy(parts, &pend[((size_t)b * n_parts + q) * (size_t)n_exp], (size_t)n_exp * sizeof *parts);
            memset(&pend[((size_t)b * n_parts + q) * (size_t)n_exp], 0, (size_t)n_exp * sizeof *parts);
            char name[256];
            snprintf(name, sizeof name, "blk.%d.%s.weight", b, a->experts[q].gguf);
            if (o == cap) {
                pare_tensor *no = realloc(out, (cap *= 2) * sizeof *out);
                if (!no) {
                    for (int e = 0; e < n_exp; e++) pare_tensor_clear(&parts[e]);
                    free(parts);
                    st = pare_err_set(err, PARE_ENOMEM, "out of memory");
                    break;
                }
                out = no;
            }
            memset(&out[o], 0, sizeof out[o]);
            st = concat_experts(&out[o], name, parts, n_exp, model_path(m), err);
            if (st) {
                for (int e = 0; e < n_exp; e++) pare_tensor_clear(&parts[e]);
                free(parts);
            } else {
                o++;
            }
        }
    }
    for (int b = 0; !st && b <= max_b; b++)
        if (count[b])
            st = pare_err_set(err, PARE_EINPUT, "%s: block %d has %d of its %d expert tensors", model_path(m), b,
                              count[b], n_exp * (int)n_parts);
    for (size_t i = 0; i < slots; i++) pare_tensor_clear(&pend[i]);
    free(pend);
    free(count);
    if (st) {
        for (size_t i = 0; i < o; i++) pare_tensor_clear(&out[i]);
        free(out);
        return st; /* the model keeps the tensors that were not moved; it is unusable anyway */
    }
    free(m->tensors);
    m->tensors = out;
    m->n_tensors = o;
    m->cap_tensors = cap;
    return PARE_OK;
}

/* The inverse: each 3-D blk.N.<gguf>.weight becomes n_expert 2-D HF tensors, slices of its
 * bytes (expert e is the e-th contiguous block). */
static pare_status split_experts(pare_model *m, const hf_arch_names *a, pare_err *err) {
    if (!a->experts || !a->experts_prefix) return PARE_OK;
    for (size_t i = 0; i < m->n_tensors; i++) {
        pare_tensor *t = &m->tensors[i];
        int b = -1, part = -1;
        if (strncmp(t->name, "blk.", 4) == 0) {
            size_t nd = parse_bid(t->name + 4, &b);
            const char *r = nd && t->name[4 + nd] == '.' ? t->name + 5 + nd : NULL;
            for (int q = 0; r && a->experts[q].hf; q++) {
                size_t gl = strlen(a->experts[q].gguf);
                if (strncmp(r, a->experts[q].gguf, gl) == 0 && strcmp(r + gl, ".weight") == 0) part = q;
            }
        }
        if (part < 0) continue;
        FAIL_IF(t->n_dims != 3 || t->ne[2] < 1, PARE_EINPUT, "%s: expert tensor '%s' is not 3-D", model_path(m),
                t->name);
        int n = (int)t->ne[2];
        uint64_t sz = t->n_bytes / (uint64_t)n;
        void *buf = NULL;
        const uint8_t *base = t->data;
        if (!base) {
            buf = malloc(t->n_bytes ? t->n_bytes : 1);
            FAIL_IF(!buf, PARE_ENOMEM, "out of memory");
            pare_status st = pare_tensor_read(t, buf, err);
            if (st) {
                free(buf);
                return st;
            }
            base = buf;
        }
        pare_tensor *xs = calloc((size_t)n, sizeof *xs);
        pare_status st = xs ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
        for (int e = 0; !st && e < n; e++) {
            char name[256];
            snprintf(name, sizeof name, "%s%d.%s%d.%s.weight", a->block_prefixes[0], b, a->experts_prefix, e,
                     a->experts[part].hf);
            int64_t ne[2] = {t->ne[0], t->ne[1]};
            st = pare_tensor_init(&xs[e], name, t->type, 2, ne, err);
            if (st) break;
            xs[e].n_bytes = sz;
            if (buf) {
                void *c = malloc(sz ? sz : 1);
                if (!c) {
                    st = pare_err_set(err, PARE_ENOMEM, "out of memory");
                    break;
                }
                memcpy(c, base + (size_t)e * sz, sz);
                pare_tensor_set_owned(&xs[e], c, sz);
                xs[e].source = -1;
            } else {
                xs[e].data = base + (size_t)e * sz;
                xs[e].source = t->source;
                xs[e].file_offset = t->file_offset + (uint64_t)e * sz;
            }
        }
        free(buf);
        if (!st && m->n_tensors + (size_t)n - 1 > m->cap_tensors) {
            size_t cap = m->n_tensors + (size_t)n + 16;
            pare_tensor *nt = realloc(m->tensors, cap * sizeof *nt);
            if (!nt) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            else m->tensors = nt, m->cap_tensors = cap;
        }
        if (st) {
            for (int e = 0; xs && e < n; e++) pare_tensor_clear(&xs[e]);
            free(xs);
            return st;
        }
        t = &m->tensors[i];
        pare_tensor_clear(t);
        memmove(&m->tensors[i + (size_t)n], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
        memcpy(&m->tensors[i], xs, (size_t)n * sizeof *xs);
        free(xs);
        m->n_tensors += (size_t)n - 1;
        i += (size_t)n - 1;
    }
    return PARE_OK;
}

pare_status pare_hf_to_gguf(pare_model *m, pare_err *err) {
    if (m->gguf_names) return PARE_OK;
    FAIL_IF(!m->arch, PARE_EUSAGE, "%s: the architecture must be known to map HF tensor names", model_path(m));
    const hf_arch_names *a = arch_find(m->arch);
    FAIL_IF(!a, PARE_EUNSUPPORTED, "%s: architecture %s is not supported for HF names", model_path(m), m->arch);
    if (m->format == PARE_FORMAT_SAFETENSORS) TRY(pare_hf_sort_tensors(m, err));
    drop_lm_head(m);
    for (size_t i = 0; i < m->n_tensors;) {
        if (pare_hf_name_skipped(m->arch, m->tensors[i].name)) {
            remove_tensor(m, i);
            continue;
        }
        i++;
    }
    if (a->flags & PARE_CONV_MERGE_EXPERTS) TRY(merge_experts(m, a, err));
    for (size_t i = 0; i < m->n_tensors; i++) TRY(tensor_to_gguf(m, &m->tensors[i], err));
    /* Two HF names may map to one GGUF name (wte and transformer.wte): refuse. */
    pare_strset *seen = pare_strset_new(m->n_tensors);
    FAIL_IF(!seen, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_tensors; i++) {
        int r = pare_strset_add(seen, m->tensors[i].name, strlen(m->tensors[i].name));
        if (r != 1) {
            pare_strset_free(seen);
            return pare_err_set(err, r < 0 ? PARE_ENOMEM : PARE_EINPUT, "%s: two tensors map to the GGUF name '%s'",
                                model_path(m), m->tensors[i].name);
        }
    }
    pare_strset_free(seen);
    if (a->flags & PARE_CONV_OUTPUT_COPY) TRY(add_output_copy(m, err));
    m->gguf_names = true;
    return PARE_OK;
}

static pare_status tensor_to_hf(pare_model *m, pare_tensor *t, pare_err *err) {
    char hname[256];
    if (!pare_gguf_name_to_hf(m->arch, t->name, hname, sizeof hname)) {
        /* experts already split carry their HF name */
        const hf_arch_names *a = arch_find(m->arch);
        int b, x, p;
        if (a && expert_name(a, t->name, &b, &x, &p)) return PARE_OK;
        return pare_err_set(err, PARE_EUNSUPPORTED, "%s: tensor '%s' has no HF name for architecture %s",
                            model_path(m), t->name, m->arch);
    }
    unsigned flags = pare_hf_arch_flags(m->arch);
    int nh = pare_hf_permute_heads(m, t->name);
    bool conv1d = (flags & PARE_CONV_CONV1D) &&
                  (gguf_name_is(t->name, "attn_qkv") || gguf_name_is(t->name, "attn_output") ||
                   gguf_name_is(t->name, "ffn_up") || gguf_name_is(t->name, "ffn_down")) &&
                  pare_str_ends_with(t->name, ".weight");
    bool minus1 = (flags & PARE_CONV_NORM_PLUS1) && pare_str_ends_with(t->name, "norm.weight");
    bool qkv = (flags & PARE_CONV_NEOX_QKV) && gguf_name_is(t->name, "attn_qkv");
    if (pare_hf_arch_permutes(m->arch) && (gguf_name_is(t->name, "attn_q") || gguf_name_is(t->name, "attn_k")))
        FAIL_IF(nh == 0, PARE_EINPUT, "%s: tensor '%s' needs %s.attention.head_count in the metadata to be permuted",
                model_path(m), t->name, m->arch);
    if (nh) TRY(permute_tensor(t, model_path(m), nh, true, err));
    if (conv1d) TRY(transpose_tensor(t, model_path(m), err));
    if (minus1) TRY(add_tensor(t, model_path(m), -1.0f, err));
    if (qkv) {
        int n = meta_count(m, "attention.head_count");
        FAIL_IF(n == 0, PARE_EINPUT, "%s: tensor '%s' needs %s.attention.head_count in the metadata to be reordered",
                model_path(m), t->name, m->arch);
        TRY(neox_qkv_tensor(t, model_path(m), n, true, err));
    }
    return rename_tensor(t, hname, err);
}

pare_status pare_gguf_to_hf(pare_model *m, pare_err *err) {
    if (!m->gguf_names) return PARE_OK;
    FAIL_IF(!m->arch, PARE_EUSAGE, "%s: the architecture must be known to map GGUF tensor names", model_path(m));
    const hf_arch_names *a = arch_find(m->arch);
    FAIL_IF(!a, PARE_EUNSUPPORTED,
            "%s: architecture %s has no Hugging Face names in pare (convert it to NAME.safetensors to keep its GGUF "
            "names)",
            model_path(m), m->arch);
    bool copy = a->flags & PARE_CONV_OUTPUT_COPY;
    for (size_t i = 0; i < m->n_tensors;) {
        const char *n = m->tensors[i].name;
        /* Generated tensors (rope_freqs) are recomputed from config.json; an output that is
         * the converter's copy of the embedding is transformers' tied one. */
        bool generated = false;
        for (const char *const *x = a->extra_gguf; x && *x; x++) {
            size_t l = strlen(*x);
            generated |= strncmp(n, *x, l) == 0 && strcmp(n + l, ".weight") == 0;
        }
        if (generated || (copy && strcmp(n, "output.weight") == 0)) {
            remove_tensor(m, i);
            continue;
        }
        i++;
    }
    TRY(split_experts(m, a, err));
    for (size_t i = 0; i < m->n_tensors; i++) TRY(tensor_to_hf(m, &m->tensors[i], err));
    m->gguf_names = false;
    return PARE_OK;
}
