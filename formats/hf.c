/* formats/hf.c - HF folders: config.json -> GGUF metadata, tensor names, q/k permutation. */
#include "formats/hf.h"

#include "formats/hf_impl.h"
#include "formats/pytorch.h"
#include "formats/safetensors.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (8u << 20)
#define MAX_LAYERS 4096
#define MAX_DIM (1 << 24)

/* ======================================================================== names */

/* Per-layer names: HF suffix after "model.layers.N." (llama/qwen2) or "h.N." (gpt2). */
typedef struct {
    const char *hf, *gguf;
} name_pair;

static const name_pair llama_layer[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {NULL, NULL},
};
static const name_pair llama_global[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {NULL, NULL},
};
static const name_pair gpt2_layer[] = {
    {"ln_1.weight", "attn_norm.weight"},     {"ln_1.bias", "attn_norm.bias"},
    {"attn.c_attn.weight", "attn_qkv.weight"}, {"attn.c_attn.bias", "attn_qkv.bias"},
    {"attn.c_proj.weight", "attn_output.weight"}, {"attn.c_proj.bias", "attn_output.bias"},
    {"ln_2.weight", "ffn_norm.weight"},      {"ln_2.bias", "ffn_norm.bias"},
    {"mlp.c_fc.weight", "ffn_up.weight"},    {"mlp.c_fc.bias", "ffn_up.bias"},
    {"mlp.c_proj.weight", "ffn_down.weight"}, {"mlp.c_proj.bias", "ffn_down.bias"},
    {NULL, NULL},
};
static const name_pair gpt2_global[] = {
    {"transformer.wte.weight", "token_embd.weight"},
    {"transformer.wpe.weight", "position_embd.weight"},
    {"transformer.ln_f.weight", "output_norm.weight"},
    {"transformer.ln_f.bias", "output_norm.bias"},
    {"lm_head.weight", "output.weight"},
    {NULL, NULL},
};

static bool is_gpt2(const char *arch) { return arch && !strcmp(arch, "gpt2"); }
static bool is_llama_like(const char *arch) { return arch && (!strcmp(arch, "llama") || !strcmp(arch, "qwen2")); }

bool pare_hf_name_to_gguf(const char *arch, const char *hf, char *out, size_t cap) {
    const name_pair *layer = is_gpt2(arch) ? gpt2_layer : is_llama_like(arch) ? llama_layer : NULL;
    const name_pair *global = is_gpt2(arch) ? gpt2_global : llama_global;
    if (!layer) return false;
    char buf[512];
    /* GPT-2 checkpoints come with and without the "transformer." prefix. */
    if (is_gpt2(arch) && strncmp(hf, "transformer.", 12) && strncmp(hf, "lm_head", 7)) {
        snprintf(buf, sizeof buf, "transformer.%s", hf);
        hf = buf;
    }
    for (const name_pair *p = global; p->hf; p++)
        if (!strcmp(hf, p->hf)) return snprintf(out, cap, "%s", p->gguf) < (int)cap;
    const char *prefix = is_gpt2(arch) ? "transformer.h." : "model.layers.";
    size_t pl = strlen(prefix);
    if (strncmp(hf, prefix, pl)) return false;
    char *end;
    long n = strtol(hf + pl, &end, 10);
    if (end == hf + pl || *end != '.' || n < 0 || n >= MAX_LAYERS) return false;
    for (const name_pair *p = layer; p->hf; p++)
        if (!strcmp(end + 1, p->hf)) return snprintf(out, cap, "blk.%ld.%s", n, p->gguf) < (int)cap;
    return false;
}

bool pare_gguf_name_to_hf(const char *arch, const char *gg, char *out, size_t cap) {
    const name_pair *layer = is_gpt2(arch) ? gpt2_layer : is_llama_like(arch) ? llama_layer : NULL;
    const name_pair *global = is_gpt2(arch) ? gpt2_global : llama_global;
    if (!layer) return false;
    for (const name_pair *p = global; p->hf; p++)
        if (!strcmp(gg, p->gguf)) return snprintf(out, cap, "%s", p->hf) < (int)cap;
    if (strncmp(gg, "blk.", 4)) return false;
    char *end;
    long n = strtol(gg + 4, &end, 10);
    if (end == gg + 4 || *end != '.' || n < 0 || n >= MAX_LAYERS) return false;
    for (const name_pair *p = layer; p->hf; p++)
        if (!strcmp(end + 1, p->gguf))
            return snprintf(out, cap, "%s%ld.%s", is_gpt2(arch) ? "transformer.h." : "model.layers.", n, p->hf) <
                   (int)cap;
    return false;
}

/* ======================================================================== permutation */

void pare_hf_permute_rows(const void *src, void *dst, int64_t n_rows, size_t row_bytes, int n_head, bool inverse) {
    /* Row r = h*hd + j*half + i (HF) goes to h*hd + i*2 + j (GGUF), j in {0,1}, i < half. */
    int64_t hd = n_rows / n_head, half = hd / 2;
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < half; i++) {
                int64_t hf = h * hd + j * half + i, gg = h * hd + i * 2 + j;
                int64_t from = inverse ? gg : hf, to = inverse ? hf : gg;
                memcpy(d + (size_t)to * row_bytes, s + (size_t)from * row_bytes, row_bytes);
            }
}

int pare_hf_permute_heads(const pare_model *m, const char *gg) {
    if (!m->arch || strcmp(m->arch, "llama")) return 0;
    char key[96];
    uint64_t h = 0;
    bool q = pare_str_ends_with(gg, ".attn_q.weight") || pare_str_ends_with(gg, ".attn_q.bias");
    bool k = pare_str_ends_with(gg, ".attn_k.weight") || pare_str_ends_with(gg, ".attn_k.bias");
    if (!q && !k) return 0;
    snprintf(key, sizeof key, "llama.attention.head_count%s", k ? "_kv" : "");
    if (!pare_meta_get_u64(&m->meta, key, &h) && k) pare_meta_get_u64(&m->meta, "llama.attention.head_count", &h);
    return (int)h;
}

/* ======================================================================== lazy readers */

typedef enum { LAZY_PERMUTE, LAZY_PERMUTE_INV, LAZY_TRANSPOSE } lazy_kind;

typedef struct {
    lazy_kind kind;
    int n_head;
    pare_tensor orig;     /* the source tensor's data/read fields (name borrowed) */
    const pare_map *map;  /* to release the source pages after a read, or NULL */
} lazy_ctx;

static void lazy_free(void *p) {
    lazy_ctx *c = p;
    if (!c) return;
    if (c->orig.read_ctx_free) c->orig.read_ctx_free(c->orig.read_ctx);
    free(c->orig.owned);
    free(c);
}

static pare_status lazy_read(const pare_tensor *t, void *dst, pare_err *err) {
    const lazy_ctx *c = t->read_ctx;
    const void *src;
    void *tmp;
    TRY(pare_tensor_bytes(&c->orig, &src, &tmp, err));
    int64_t rows = pare_tensor_nrows(&c->orig);
    size_t rb = pare_type_row_size(c->orig.type, c->orig.ne[0]);
    if (c->kind == LAZY_TRANSPOSE) {
        /* (rows x cols) of esize-byte elements -> (cols x rows) */
        size_t es = pare_type_get(c->orig.type)->type_size;
        int64_t cols = c->orig.ne[0];
        const uint8_t *s = src;
        uint8_t *d = dst;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) memcpy(d + ((size_t)k * (size_t)rows + (size_t)r) * es, s + ((size_t)r * (size_t)cols + (size_t)k) * es, es);
    } else {
        pare_hf_permute_rows(src, dst, rows, rb, c->n_head, c->kind == LAZY_PERMUTE_INV);
    }
    free(tmp);
    if (c->map && c->orig.data) {
        const uint8_t *p = c->orig.data;
        if (p >= c->map->data && p < c->map->data + c->map->size)
            pare_map_release(c->map, (uint64_t)(p - c->map->data), c->orig.n_bytes);
    }
    return PARE_OK;
}

/* Makes t lazy: its bytes become the permuted / transposed bytes of what it holds now. */
static pare_status make_lazy(pare_model *m, pare_tensor *t, lazy_kind kind, int n_head, pare_err *err) {
    lazy_ctx *c = calloc(1, sizeof *c);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    c->kind = kind;
    c->n_head = n_head;
    c->orig = *t;
    if (t->source >= 0 && (size_t)t->source < m->n_maps) c->map = m->maps[t->source];
    if (kind == LAZY_PERMUTE || kind == LAZY_PERMUTE_INV) {
        int64_t rows = pare_tensor_nrows(t);
        if (n_head <= 0 || rows % (2 * n_head)) {
            free(c);
            return pare_err_set(err, PARE_EINPUT, "%s: tensor '%s': %lld rows cannot be split into %d heads of pairs",
                                m->path, t->name, (long long)rows, n_head);
        }
    }
    t->data = NULL;
    t->owned = NULL;
    t->read = lazy_read;
    t->read_ctx = c;
    t->read_ctx_free = lazy_free;
    if (kind == LAZY_TRANSPOSE) {
        int64_t a = t->ne[0];
        t->ne[0] = t->ne[1];
        t->ne[1] = a;
    }
    return PARE_OK;
}

/* ======================================================================== renaming */

static pare_status rename_tensor(pare_tensor *t, const char *name, pare_err *err) {
    char *n = strdup(name);
    FAIL_IF(!n, PARE_ENOMEM, "out of memory");
    free(t->name);
    t->name = n;
    return PARE_OK;
}

static void drop_tensor(pare_model *m, size_t i) {
    pare_tensor_clear(&m->tensors[i]);
    memmove(&m->tensors[i], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
    m->n_tensors--;
}

static bool hf_skipped(const char *arch, const char *name) {
    if (strstr(name, "rotary_emb.inv_freq")) return true;
    if (is_gpt2(arch) && (pare_str_ends_with(name, ".attn.bias") || pare_str_ends_with(name, ".attn.masked_bias")))
        return true;
    return false;
}

static bool gpt2_conv1d(const char *gguf_name) {
    return pare_str_ends_with(gguf_name, "attn_qkv.weight") || pare_str_ends_with(gguf_name, "attn_output.weight") ||
           pare_str_ends_with(gguf_name, "ffn_up.weight") || pare_str_ends_with(gguf_name, "ffn_down.weight");
}

pare_status pare_hf_to_gguf(pare_model *m, pare_err *err) {
    if (m->gguf_names) return PARE_OK;
    FAIL_IF(!m->arch, PARE_EUNSUPPORTED, "%s: unknown architecture: cannot give tensors GGUF names", m->path);
    FAIL_IF(!is_llama_like(m->arch) && !is_gpt2(m->arch), PARE_EUNSUPPORTED,
            "%s: architecture '%s' is not supported", m->path, m->arch);
    bool tied = false;
    pare_meta_get_bool(&m->meta, "pare.tie_word_embeddings", &tied);
    for (size_t i = 0; i < m->n_tensors;) {
        pare_tensor *t = &m->tensors[i];
        char gg[256];
        if (hf_skipped(m->arch, t->name) || (tied && !strcmp(t->name, "lm_head.weight"))) {
            drop_tensor(m, i);
            continue;
        }
        FAIL_IF(!pare_hf_name_to_gguf(m->arch, t->name, gg, sizeof gg), PARE_EUNSUPPORTED,
                "%s: tensor '%s' is not a tensor of a %s model that pare knows", m->path, t->name, m->arch);
        TRY(rename_tensor(t, gg, err));
        i++;
    }
    m->gguf_names = true;
    for (size_t i = 0; i < m->n_tensors; i++) {
        pare_tensor *t = &m->tensors[i];
        int heads = pare_hf_permute_heads(m, t->name);
        if (heads > 0) TRY(make_lazy(m, t, LAZY_PERMUTE, heads, err));
        if (is_gpt2(m->arch) && t->n_dims == 2 && gpt2_conv1d(t->name)) TRY(make_lazy(m, t, LAZY_TRANSPOSE, 0, err));
    }
    /* GPT-2's output head is its token embedding: the converter writes it as output.weight. */
    if (is_gpt2(m->arch) && !pare_model_find(m, "output.weight")) {
        const pare_tensor *e = pare_model_find(m, "token_embd.weight");
        if (e && e->data) {
            pare_tensor o;
            TRY(pare_tensor_init(&o, "output.weight", e->type, e->n_dims, e->ne, err));
            o.data = e->data;
            o.source = e->source;
            TRY(pare_model_add_tensor(m, &o, err));
        }
    }
    pare_meta_remove(&m->meta, "pare.tie_word_embeddings");
    return PARE_OK;
}

pare_status pare_gguf_to_hf(pare_model *m, pare_err *err) {
    if (!m->gguf_names) return PARE_OK;
    FAIL_IF(!m->arch || (!is_llama_like(m->arch) && !is_gpt2(m->arch)), PARE_EUNSUPPORTED,
            "%s: architecture '%s' has no HF names in pare", m->path, m->arch ? m->arch : "(none)");
    for (size_t i = 0; i < m->n_tensors;) {
        pare_tensor *t = &m->tensors[i];
        if (!strcmp(t->name, "rope_freqs.weight")) {
            drop_tensor(m, i); /* computed from config.json's rope_scaling */
            continue;
        }
        if (is_gpt2(m->arch) && !strcmp(t->name, "output.weight")) {
            drop_tensor(m, i); /* tied to wte in HF's GPT-2 */
            continue;
        }
        int heads = pare_hf_permute_heads(m, t->name);
        if (heads > 0) TRY(make_lazy(m, t, LAZY_PERMUTE_INV, heads, err));
        if (is_gpt2(m->arch) && t->n_dims == 2 && gpt2_conv1d(t->name)) TRY(make_lazy(m, t, LAZY_TRANSPOSE, 0, err));
        i++;
    }
    for (size_t i = 0; i < m->n_tensors; i++) {
        pare_tensor *t = &m->tensors[i];
        char hf[256];
        FAIL_IF(!pare_gguf_name_to_hf(m->arch, t->name, hf, sizeof hf), PARE_EUNSUPPORTED,
                "%s: tensor '%s' has no HF name", m->path, t->name);
        TRY(rename_tensor(t, hf, err));
    }
    m->gguf_names = false;
    return PARE_OK;
}

/* ======================================================================== config.json */

typedef struct {
    const cJSON *j;
    const char *path;
} cfg;

static bool cfg_num(const cfg *c, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->j, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static pare_status cfg_int(const cfg *c, const char *key, int64_t lo, int64_t hi, bool required, int64_t *out,
                           pare_err *err) {
    double d;
    if (!cfg_num(c, key, &d)) {
        FAIL_IF(required, PARE_EINPUT, "%s: '%s' is missing or not a number", c->path, key);
        return PARE_OK;
    }
    FAIL_IF(d != floor(d) || d < (double)lo || d > (double)hi, PARE_EINPUT, "%s: '%s' is %g (expected %lld..%lld)",
            c->path, key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return PARE_OK;
}

/* "fortune-llama" -> "Fortune Llama", as the converter names a model after its folder. */
static void title_name(const char *folder, char *out, size_t cap) {
    size_t n = strlen(folder);
    while (n > 1 && folder[n - 1] == '/') n--;
    const char *base = folder;
    for (size_t i = 0; i < n; i++)
        if (folder[i] == '/') base = folder + i + 1;
    size_t k = 0;
    bool start = true;
    for (const char *p = base; p < folder + n && k + 1 < cap; p++) {
        char ch = *p;
        if (ch == '-' || ch == '_') {
            out[k++] = ' ';
            start = true;
            continue;
        }
        out[k++] = start ? (char)toupper((unsigned char)ch) : ch;
        start = false;
    }
    out[k] = 0;
}

/* gguf-py's reading of a folder name like "llama-7b-v2-bf16-chat": the parts before the
 * first size, version or weight-type part are the basename, the later plain parts the
 * finetune. A name without such parts has neither. */
static bool special_part(const char *p, size_t n) {
    char s[64];
    if (n == 0 || n >= sizeof s) return false;
    for (size_t i = 0; i < n; i++) s[i] = (char)tolower((unsigned char)p[i]);
    s[n] = 0;
    static const char *const types[] = {"f32", "fp32", "f16", "fp16", "bf16", "f64", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "gguf"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(s, types[i])) return true;
    if (s[0] == 'v' && isdigit((unsigned char)s[1])) return true; /* version */
    size_t k = 0;
    while (k < n && (isdigit((unsigned char)s[k]) || s[k] == '.' || s[k] == 'x')) k++;
    return k > 0 && k + 1 == n && strchr("kmbt", s[k]); /* size label: 7b, 1.1b, 8x7b */
}

static void name_parts(const char *folder, char *basename, char *finetune, size_t cap) {
    basename[0] = finetune[0] = 0;
    size_t n = strlen(folder);
    while (n > 1 && folder[n - 1] == '/') n--;
    const char *base = folder;
    for (size_t i = 0; i < n; i++)
        if (folder[i] == '/') base = folder + i + 1;
    const char *end = folder + n, *p = base;
    bool seen_special = false;
    size_t bl = 0, fl = 0;
    while (p < end) {
        const char *q = memchr(p, '-', (size_t)(end - p));
        if (!q) q = end;
        size_t len = (size_t)(q - p);
        if (special_part(p, len)) {
            seen_special = true;
        } else if (!seen_special) {
            if (bl + len + 2 < cap) bl += (size_t)snprintf(basename + bl, cap - bl, "%s%.*s", bl ? "-" : "", (int)len, p);
        } else {
            if (fl + len + 2 < cap) fl += (size_t)snprintf(finetune + fl, cap - fl, "%s%.*s", fl ? "-" : "", (int)len, p);
        }
        p = q < end ? q + 1 : end;
    }
    if (!seen_special) basename[0] = finetune[0] = 0;
}

/* gguf-py's size label: "3.3M", "1.1B" (two significant digits at least). */
static void size_label(uint64_t n, char *out, size_t cap) {
    const char *suffix = "K";
    double scaled = (double)n / 1e3;
    if (n > 1000000000000ull) { suffix = "T"; scaled = (double)n / 1e12; }
    else if (n > 1000000000ull) { suffix = "B"; scaled = (double)n / 1e9; }
    else if (n > 1000000ull) { suffix = "M"; scaled = (double)n / 1e6; }
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", round(scaled));
    int fix = 2 - (int)strlen(digits);
    if (fix < 0) fix = 0;
    snprintf(out, cap, "%.*f%s", fix, scaled, suffix);
}

static uint64_t count_params(const pare_model *m, bool tied) {
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        if (hf_skipped(m->arch, t->name) || (tied && !strcmp(t->name, "lm_head.weight"))) continue;
        n += (uint64_t)pare_tensor_nelements(t);
    }
    return n;
}

/* The architecture keys convert_hf_to_gguf.py writes, in its order. */
static pare_status arch_meta(pare_model *m, const cfg *c, const char *folder, pare_err *err) {
    pare_meta *mt = &m->meta;
    const char *a = m->arch;
    char key[128], name[256], label[32];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
    int64_t n_layer = 0, n_ctx = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = -1, vocab = 0;
    bool gpt2 = is_gpt2(a);
    TRY(cfg_int(c, gpt2 ? "n_layer" : "num_hidden_layers", 1, MAX_LAYERS, true, &n_layer, err));
    TRY(cfg_int(c, gpt2 ? "n_positions" : "max_position_embeddings", 1, 1ll << 30, !gpt2, &n_ctx, err));
    TRY(cfg_int(c, gpt2 ? "n_embd" : "hidden_size", 1, MAX_DIM, true, &n_embd, err));
    if (!gpt2) TRY(cfg_int(c, "intermediate_size", 1, MAX_DIM, true, &n_ff, err));
    if (gpt2) {
        n_ff = 4 * n_embd;
        TRY(cfg_int(c, "n_inner", 1, MAX_DIM, false, &n_ff, err));
    }
    TRY(cfg_int(c, gpt2 ? "n_head" : "num_attention_heads", 1, 65536, true, &n_head, err));
    if (!gpt2) TRY(cfg_int(c, "num_key_value_heads", 1, 65536, false, &n_head_kv, err));
    TRY(cfg_int(c, "vocab_size", 1, 1 << 26, true, &vocab, err));
    FAIL_IF(n_embd % n_head, PARE_EINPUT, "%s: hidden size %lld is not a multiple of %lld heads", c->path,
            (long long)n_embd, (long long)n_head);
    FAIL_IF(n_head_kv > 0 && n_head % n_head_kv, PARE_EINPUT, "%s: %lld heads are not a multiple of %lld KV heads",
            c->path, (long long)n_head, (long long)n_head_kv);
    bool tied = gpt2;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c->j, "tie_word_embeddings");
    if (cJSON_IsBool(tie)) tied = cJSON_IsTrue(tie);
    title_name(folder, name, sizeof name);
    size_label(count_params(m, tied), label, sizeof label);
    TRY(pare_meta_set_str(mt, "general.architecture", a, strlen(a), err));
    TRY(pare_meta_set_str(mt, "general.type", "model", 5, err));
    TRY(pare_meta_set_str(mt, "general.name", name, strlen(name), err));
    char basename[256], finetune[256];
    name_parts(folder, basename, finetune, sizeof basename);
    if (finetune[0]) TRY(pare_meta_set_str(mt, "general.finetune", finetune, strlen(finetune), err));
    if (basename[0]) TRY(pare_meta_set_str(mt, "general.basename", basename, strlen(basename), err));
    TRY(pare_meta_set_str(mt, "general.size_label", label, strlen(label), err));
    TRY(pare_meta_set_uint(mt, K("block_count"), PARE_META_U32, (uint64_t)n_layer, err));
    if (n_ctx) TRY(pare_meta_set_uint(mt, K("context_length"), PARE_META_U32, (uint64_t)n_ctx, err));
    TRY(pare_meta_set_uint(mt, K("embedding_length"), PARE_META_U32, (uint64_t)n_embd, err));
    TRY(pare_meta_set_uint(mt, K("feed_forward_length"), PARE_META_U32, (uint64_t)n_ff, err));
    TRY(pare_meta_set_uint(mt, K("attention.head_count"), PARE_META_U32, (uint64_t)n_head, err));
    if (n_head_kv > 0) TRY(pare_meta_set_uint(mt, K("attention.head_count_kv"), PARE_META_U32, (uint64_t)n_head_kv, err));
    double d;
    if (cfg_num(c, "rope_theta", &d)) TRY(pare_meta_set_float(mt, K("rope.freq_base"), PARE_META_F32, d, err));
    if (cfg_num(c, "rms_norm_eps", &d))
        TRY(pare_meta_set_float(mt, K("attention.layer_norm_rms_epsilon"), PARE_META_F32, d, err));
    if (cfg_num(c, gpt2 ? "layer_norm_epsilon" : "layer_norm_eps", &d))
        TRY(pare_meta_set_float(mt, K("attention.layer_norm_epsilon"), PARE_META_F32, d, err));
    /* The value is set for the weights' own type; the writer replaces it in place. */
    TRY(pare_meta_set_uint(mt, "general.file_type", PARE_META_U32, 0, err));
    if (!strcmp(a, "llama")) {
        TRY(pare_meta_set_uint(mt, K("vocab_size"), PARE_META_U32, (uint64_t)vocab, err));
        TRY(pare_meta_set_uint(mt, K("rope.dimension_count"), PARE_META_U32, (uint64_t)(n_embd / n_head), err));
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c->j, "rope_scaling");
        if (cJSON_IsObject(rs)) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
            if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
            const cJSON *factor = cJSON_GetObjectItemCaseSensitive(rs, "factor");
            FAIL_IF(!cJSON_IsString(type), PARE_EINPUT, "%s: rope_scaling has no type", c->path);
            if (!strcmp(type->valuestring, "linear") && cJSON_IsNumber(factor)) {
                TRY(pare_meta_set_str(mt, K("rope.scaling.type"), "linear", 6, err));
                TRY(pare_meta_set_float(mt, K("rope.scaling.factor"), PARE_META_F32, factor->valuedouble, err));
            } else {
                return pare_err_set(err, PARE_EUNSUPPORTED, "%s: rope_scaling type '%s' is not supported yet", c->path,
                                    type->valuestring);
            }
        }
    }
    /* Remembered for pare_hf_to_gguf (dropping lm_head); never written. */
    TRY(pare_meta_set_bool(mt, "pare.tie_word_embeddings", tied, err));
#undef K
    return PARE_OK;
}

static const char *gguf_arch_of(const char *model_type) {
    if (!strcmp(model_type, "llama") || !strcmp(model_type, "mistral")) return "llama";
    if (!strcmp(model_type, "qwen2")) return "qwen2";
    if (!strcmp(model_type, "gpt2")) return "gpt2";
    return NULL;
}

static pare_status load_weights(const char *folder, const char *weights, pare_model **out, pare_err *err) {
    if (weights) {
        if (pare_str_ends_with(weights, ".json")) {
            /* pytorch_model.bin.index.json is not read yet: only safetensors indexes. */
            FAIL_IF(strstr(weights, "pytorch_model"), PARE_EUNSUPPORTED, "%s: sharded PyTorch checkpoints are not supported",
                    weights);
            return pare_safetensors_load_index(weights, out, err);
        }
        char b[8] = {0};
        FILE *f = fopen(weights, "rb");
        if (f) {
            size_t got = fread(b, 1, 4, f);
            (void)got;
            fclose(f);
        }
        if (!memcmp(b, "PK\3\4", 4) || (unsigned char)b[0] == 0x80) return pare_pytorch_load(weights, out, err);
        return pare_safetensors_load(weights, out, err);
    }
    static const char *const candidates[] = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                             "pytorch_model.bin.index.json"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        char *p = pare_path_join(folder, candidates[i]);
        FAIL_IF(!p, PARE_ENOMEM, "out of memory");
        if (pare_path_exists(p)) {
            pare_status st = load_weights(folder, p, out, err);
            free(p);
            return st;
        }
        free(p);
    }
    return pare_err_set(err, PARE_EINPUT, "%s: no weights (model.safetensors, its index, or pytorch_model.bin)", folder);
}

pare_status pare_hf_load_weights(const char *folder, const char *weights, pare_model **out, pare_err *err) {
    *out = NULL;
    char *cfg_path = pare_path_join(folder, "config.json");
    FAIL_IF(!cfg_path, PARE_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    pare_status st = pare_read_file(cfg_path, CONFIG_MAX_BYTES, &text, &len, err);
    cJSON *j = st ? NULL : cJSON_ParseWithLength(text, len);
    free(text);
    if (!st && (!j || !cJSON_IsObject(j))) st = pare_err_set(err, PARE_EINPUT, "%s: not a JSON object", cfg_path);
    const cJSON *mt = st ? NULL : cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!st && !cJSON_IsString(mt)) st = pare_err_set(err, PARE_EINPUT, "%s: no model_type", cfg_path);
    const char *arch = st ? NULL : gguf_arch_of(mt->valuestring);
    if (!st && !arch)
        st = pare_err_set(err, PARE_EUNSUPPORTED, "%s: architecture '%s' is not supported (llama, mistral, qwen2, gpt2)",
                          cfg_path, mt->valuestring);
    pare_model *w = NULL;
    if (!st) st = load_weights(folder, weights, &w, err);
    if (!st) {
        /* The weights' model becomes the folder's: HF format, GGUF metadata. */
        w->format = PARE_FORMAT_HF;
        free(w->path);
        w->path = strdup(folder);
        pare_meta_free(&w->meta);
        w->arch = strdup(arch);
        if (!w->path || !w->arch) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    cfg c = {j, cfg_path};
    if (!st) st = arch_meta(w, &c, folder, err);
    if (!st) st = pare_hf_tokenizer_meta(folder, j, &w->meta, err);
    if (!st) {
        /* general.file_type for the weights as they are (F32 0, F16 1, BF16 32). */
        uint64_t ft = 0;
        for (size_t i = 0; i < w->n_tensors; i++)
            if (w->tensors[i].n_dims == 2) {
                ft = w->tensors[i].type == PARE_TYPE_F16 ? 1 : w->tensors[i].type == PARE_TYPE_BF16 ? 32 : 0;
                break;
            }
        st = pare_meta_set_uint(&w->meta, "general.file_type", PARE_META_U32, ft, err);
    }
    cJSON_Delete(j);
    free(cfg_path);
    if (st) {
        pare_model_free(w);
        return st;
    }
    *out = w;
    return PARE_OK;
}

pare_status pare_hf_load(const char *folder, pare_model **out, pare_err *err) {
    return pare_hf_load_weights(folder, NULL, out, err);
}
