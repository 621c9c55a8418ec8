/* lora/adapter.c - loading PEFT and GGUF LoRA adapters into pare's canonical form. */
#include "lora/lora.h"

#include "core/arch.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/pytorch.h"
#include "formats/safetensors.h"
#include "quant/quant.h"

#include <cJSON.h>
#include <libgen.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (4u << 20)
#define NAME_MAX_LEN 512

void pare_lora_free(pare_lora_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_pairs; i++) {
        free(a->pairs[i].target);
        free(a->pairs[i].hf_name);
        if (!a->pairs[i].a_borrowed) free(a->pairs[i].a);
        if (!a->pairs[i].b_borrowed) free(a->pairs[i].b);
    }
    for (size_t i = 0; i < a->n_fulls; i++) {
        free(a->fulls[i].target);
        pare_tensor_clear(&a->fulls[i].t);
    }
    free(a->pairs);
    free(a->fulls);
    free(a->path);
    free(a->arch);
    pare_model_free(a->src);
    free(a);
}

/* f32 copy of any tensor (plain or block type). */
static pare_status tensor_f32(const pare_tensor *t, float **out, pare_err *err) {
    int64_t n = pare_tensor_nelements(t);
    *out = malloc((size_t)n * sizeof(float) + sizeof(float));
    FAIL_IF(!*out, PARE_ENOMEM, "out of memory for '%s'", t->name);
    pare_status st = pare_tensor_to_f32(t, *out, 1, err);
    if (st) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* The f32 values of an adapter tensor: borrowed from the file's mapping when they are f32
 * there already and may be used as they are, else a copy. On the test VM a fresh page costs
 * about 18 us on first touch (the host backs it then), so copying a 50 MB adapter took 0.25 s
 * of a 2.5 s merge; the mapping's pages are in the page cache already. */
static pare_status tensor_f32_view(const pare_tensor *t, bool may_borrow, float **out, bool *borrowed,
                                   pare_err *err) {
    *borrowed = may_borrow && t->type == PARE_TYPE_F32 && t->data && (uintptr_t)t->data % _Alignof(float) == 0;
    if (*borrowed) {
        *out = (float *)(uintptr_t)t->data; /* never written: see pare_lora_pair */
        return PARE_OK;
    }
    return tensor_f32(t, out, err);
}

/* Makes a borrowed value array a private copy (before a change in place). */
static pare_status own_values(float **v, bool *borrowed, int64_t n, pare_err *err) {
    if (!*borrowed) return PARE_OK;
    float *c = malloc((size_t)n * sizeof(float) + sizeof(float));
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    memcpy(c, *v, (size_t)n * sizeof(float));
    *v = c;
    *borrowed = false;
    return PARE_OK;
}

static void pair_clear(pare_lora_pair *p) {
    if (!p->a_borrowed) free(p->a);
    if (!p->b_borrowed) free(p->b);
    free(p->target);
    free(p->hf_name);
}

static pare_status add_pair(pare_lora_adapter *ad, pare_lora_pair *p, pare_err *err) {
    pare_lora_pair *np = realloc(ad->pairs, (ad->n_pairs + 1) * sizeof *np);
    FAIL_IF(!np, PARE_ENOMEM, "out of memory");
    ad->pairs = np;
    ad->pairs[ad->n_pairs++] = *p;
    memset(p, 0, sizeof *p);
    return PARE_OK;
}

/* Heads to permute a GGUF-named tensor's rows with (0: none), from the base's metadata. */
static int permute_heads(const char *arch, const pare_meta *meta, const char *gguf_name) {
    pare_model view;
    memset(&view, 0, sizeof view);
    view.arch = (char *)arch;
    view.meta = *meta; /* a shallow view: never freed */
    view.gguf_names = true;
    return pare_hf_permute_heads(&view, gguf_name);
}

static pare_status permute_in_place(float *rows, int64_t n_rows, int64_t row_len, int n_head, bool inverse,
                                    pare_err *err) {
    size_t bytes = (size_t)(n_rows * row_len) * sizeof(float);
    float *tmp = malloc(bytes ? bytes : 1);
    FAIL_IF(!tmp, PARE_ENOMEM, "out of memory");
    pare_hf_permute_rows(rows, tmp, n_rows, (size_t)row_len * sizeof(float), n_head, inverse);
    memcpy(rows, tmp, bytes);
    free(tmp);
    return PARE_OK;
}

/* GPT-NeoX's fused query_key_value (the arch's PARE_CONV_NEOX_QKV): the converter reorders
 * its rows from HF's per-head (head, {q,k,v}, head_dim) to llama.cpp's ({q,k,v}, head,
 * head_dim), so the rows of B (and of a replaced weight or bias) must follow, or the merge
 * adds q's change to another head's k. Returns the head count to reorder a GGUF-named
 * tensor's rows with, 0 when it is not reordered. */
static int neox_qkv_heads(const char *arch, const pare_meta *meta, const char *gguf_name) {
    const pare_arch *e = arch ? pare_arch_find(arch) : NULL;
    if (!e || !(e->conv.flags & PARE_CONV_NEOX_QKV)) return 0;
    const char *dot = strstr(gguf_name, ".attn_qkv.");
    if (strncmp(gguf_name, "blk.", 4) != 0 || !dot ||
        (strcmp(dot, ".attn_qkv.weight") != 0 && strcmp(dot, ".attn_qkv.bias") != 0))
        return 0;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    uint64_t v;
    if (!pare_meta_get_u64(meta, key, &v) || v == 0 || v > 65536) return 0;
    return (int)v;
}

/* Reorders n_rows rows (3 * n_head * head_dim of row_len floats) in place: per-head to
 * q | k | v, or back with inverse (the same map as formats/hf_names.c's). */
static pare_status neox_reorder(float *rows, int64_t n_rows, int64_t row_len, int n_head, bool inverse,
                                const char *path, const char *name, pare_err *err) {
    FAIL_IF(n_rows % (3 * (int64_t)n_head) != 0, PARE_EINPUT,
            "%s: '%s': %lld rows cannot be split into q, k, v of %d heads", path, name, (long long)n_rows, n_head);
    const int64_t hd = n_rows / 3 / n_head;
    size_t bytes = (size_t)(n_rows * row_len) * sizeof(float);
    float *tmp = malloc(bytes ? bytes : 1);
    FAIL_IF(!tmp, PARE_ENOMEM, "out of memory");
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t src;
        if (!inverse) { /* dst (part, head, j) <- src (head, part, j) */
            int64_t part = r / (n_head * hd), h = (r / hd) % n_head, j = r % hd;
            src = (h * 3 + part) * hd + j;
        } else { /* dst (head, part, j) <- src (part, head, j) */
            int64_t h = r / (3 * hd), part = (r / hd) % 3, j = r % hd;
            src = (part * n_head + h) * hd + j;
        }
        memcpy(tmp + r * row_len, rows + src * row_len, (size_t)row_len * sizeof(float));
    }
    memcpy(rows, tmp, bytes);
    free(tmp);
    return PARE_OK;
}

/* ---- experts --------------------------------------------------------------------------- */

/* Whether PEFT module `module` is one expert's, as the architecture table's .conv names them
 * ("<block prefix>L.<experts prefix>E.<hf>", e.g. Mixtral's
 * model.layers.L.block_sparse_moe.experts.E.w1, Qwen2-MoE's model.layers.L.mlp.experts.E.
 * gate_proj): *layer, *expert and the GGUF name of the 3-D tensor convert_hf_to_gguf.py
 * stacks the experts into ("blk.L.ffn_gate_exps.weight"). */
static bool expert_module(const char *arch, const char *module, int *layer, int *expert, char *gguf, size_t cap) {
    const pare_arch *a = arch ? pare_arch_find(arch) : NULL;
    if (!a || !a->conv.experts || !a->conv.experts_prefix || !a->conv.block_prefixes) return false;
    const size_t pl = strlen(a->conv.experts_prefix);
    for (const char *const *bp = a->conv.block_prefixes; *bp; bp++) {
        const size_t bl = strlen(*bp);
        if (strncmp(module, *bp, bl) != 0) continue;
        char *end = NULL;
        const long l = strtol(module + bl, &end, 10);
        if (end == module + bl || *end != '.' || l < 0 || l > 1 << 20 || strncmp(end + 1, a->conv.experts_prefix, pl))
            continue;
        const char *at = end + 1 + pl;
        const long e = strtol(at, &end, 10);
        if (end == at || *end != '.' || e < 0 || e > 1 << 20) continue;
        for (const pare_arch_expert *x = a->conv.experts; x->hf; x++) {
            if (strcmp(end + 1, x->hf) != 0) continue;
            *layer = (int)l;
            *expert = (int)e;
            snprintf(gguf, cap, "blk.%ld.%s.weight", l, x->gguf);
            return true;
        }
    }
    return false;
}

/* ---- PEFT ------------------------------------------------------------------------------ */

typedef struct {
    double r, alpha;
    bool rslora, fan_in_fan_out;
    const cJSON *rank_pattern, *alpha_pattern;
} peft_config;

/* PEFT's pattern lookup: the first key K for which "(.*\.)?K$" matches the module name. */
static bool pattern_value(const cJSON *patterns, const char *module, double *out) {
    if (!cJSON_IsObject(patterns)) return false;
    const cJSON *it;
    cJSON_ArrayForEach(it, patterns) {
        if (!cJSON_IsNumber(it) || !it->string) continue;
        size_t n = strlen(it->string) + 16;
        char *re = malloc(n);
        if (!re) return false;
        snprintf(re, n, "^(.*\\.)?(%s)$", it->string);
        regex_t rx;
        bool hit = false;
        if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) == 0) {
            hit = regexec(&rx, module, 0, NULL, 0) == 0;
            regfree(&rx);
        }
        free(re);
        if (hit) {
            *out = it->valuedouble;
            return true;
        }
    }
    return false;
}

static pare_status read_peft_config(const char *cfg_path, cJSON **json, peft_config *c, pare_err *err) {
    char *text = NULL;
    size_t len = 0;
    TRY(pare_read_file(cfg_path, CONFIG_MAX_BYTES, &text, &len, err));
    *json = cJSON_ParseWithLength(text, len);
    free(text);
    FAIL_IF(!*json || !cJSON_IsObject(*json), PARE_EINPUT, "%s: not a JSON object", cfg_path);
    const cJSON *j = *json;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    FAIL_IF(cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA") != 0, PARE_EUNSUPPORTED,
            "%s: peft_type %s is not supported (only LORA)", cfg_path, pt->valuestring);
    FAIL_IF(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_dora")), PARE_EUNSUPPORTED,
            "%s: DoRA adapters (use_dora) are not supported", cfg_path);
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(j, "layer_replication");
    FAIL_IF(lr && !cJSON_IsNull(lr), PARE_EUNSUPPORTED, "%s: layer_replication is not supported", cfg_path);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    FAIL_IF(!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536, PARE_EINPUT,
            "%s: 'r' must be a positive integer", cfg_path);
    FAIL_IF(alpha && !cJSON_IsNumber(alpha), PARE_EINPUT, "%s: 'lora_alpha' must be a number", cfg_path);
    c->r = r->valuedouble;
    c->alpha = alpha ? alpha->valuedouble : 8.0; /* PEFT's default lora_alpha */
    c->rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    c->fan_in_fan_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out"));
    c->rank_pattern = cJSON_GetObjectItemCaseSensitive(j, "rank_pattern");
    c->alpha_pattern = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    return PARE_OK;
}

/* Splits a PEFT tensor name into the module and what it holds. */
typedef enum { PEFT_A, PEFT_B, PEFT_EMB_A, PEFT_EMB_B, PEFT_DORA, PEFT_FULL } peft_kind;

static peft_kind peft_split(const char *name, char *module, size_t cap) {
    const char *n = name;
    if (strncmp(n, "base_model.model.", 17) == 0) n += 17;
    static const struct {
        const char *tag;
        peft_kind kind;
    } tags[] = {{".lora_A", PEFT_A}, {".lora_B", PEFT_B}, {".lora_embedding_A", PEFT_EMB_A},
                {".lora_embedding_B", PEFT_EMB_B}, {".lora_magnitude_vector", PEFT_DORA}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        const char *p = strstr(n, tags[i].tag);
        if (!p) continue;
        size_t k = (size_t)(p - n);
        if (k >= cap) k = cap - 1;
        memcpy(module, n, k);
        module[k] = 0;
        return tags[i].kind;
    }
    snprintf(module, cap, "%s", n);
    return PEFT_FULL;
}

static pare_status peft_pair(pare_lora_adapter *ad, const pare_model *w, const char *module, bool emb,
                             const peft_config *c, const char *arch, const pare_meta *meta, double user_scale,
                             pare_err *err) {
    char na[NAME_MAX_LEN], nb[NAME_MAX_LEN], hf[NAME_MAX_LEN], gg[NAME_MAX_LEN];
    const char *sa = emb ? "lora_embedding_A" : "lora_A.weight", *sb = emb ? "lora_embedding_B" : "lora_B.weight";
    const pare_tensor *ta = NULL, *tb = NULL;
    for (size_t i = 0; i < w->n_tensors && (!ta || !tb); i++) {
        char mod[NAME_MAX_LEN];
        peft_kind k = peft_split(w->tensors[i].name, mod, sizeof mod);
        if (strcmp(mod, module)) continue;
        if (k == (emb ? PEFT_EMB_A : PEFT_A)) ta = &w->tensors[i];
        if (k == (emb ? PEFT_EMB_B : PEFT_B)) tb = &w->tensors[i];
    }
    snprintf(na, sizeof na, "%s.%s", module, sa);
    snprintf(nb, sizeof nb, "%s.%s", module, sb);
    FAIL_IF(!ta || !tb, PARE_EINPUT, "%s: module '%s' lacks %s", ad->path, module, !ta ? sa : sb);
    FAIL_IF(ta->n_dims != 2 || tb->n_dims != 2, PARE_EINPUT, "%s: '%s' LoRA tensors are not matrices", ad->path, module);
    /* ggml order: A (r, in) has ne = [in, r]; B (out, r) has ne = [r, out]. */
    pare_lora_pair p = {0};
    p.r = ta->ne[1];
    p.n_in = ta->ne[0];
    p.n_out = tb->ne[1];
    FAIL_IF(tb->ne[0] != p.r, PARE_EINPUT, "%s: '%s': lora_A has rank %lld but lora_B %lld", ad->path, module,
            (long long)p.r, (long long)tb->ne[0]);
    double r = c->r, alpha = c->alpha;
    pattern_value(c->rank_pattern, module, &r);
    pattern_value(c->alpha_pattern, module, &alpha);
    FAIL_IF((int64_t)r != p.r, PARE_EINPUT, "%s: '%s' has rank %lld but the config says %g", ad->path, module,
            (long long)p.r, r);
    p.scale = user_scale * alpha / (c->rslora ? sqrt(r) : r);
    if (emb) {
        /* lora_embedding_A (r, vocab), B (dim, r): the embedding (vocab rows of dim) gets (B A)^T. */
        p.transposed = true;
    }
    snprintf(hf, sizeof hf, "%s.weight", module);
    int layer, expert;
    if (!emb && expert_module(arch, module, &layer, &expert, gg, sizeof gg)) {
        p.is_expert = true;
        p.expert = expert;
        if (!(p.hf_name = strdup(hf))) return pare_err_set(err, PARE_ENOMEM, "out of memory");
    } else if (!pare_hf_name_to_gguf(arch, hf, gg, sizeof gg)) {
        return pare_err_set(err, PARE_EINPUT, "%s: module '%s' is not a tensor of a %s model", ad->path, module, arch);
    }
    /* q and k (and NeoX's qkv): B's rows get the GGUF order, so B is a copy */
    int heads = permute_heads(arch, meta, gg), qkv_heads = neox_qkv_heads(arch, meta, gg);
    pare_status st = tensor_f32_view(ta, true, &p.a, &p.a_borrowed, err);
    if (!st) st = tensor_f32_view(tb, heads == 0 && qkv_heads == 0, &p.b, &p.b_borrowed, err);
    if (!st && !(p.target = strdup(gg))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st && heads > 0) st = permute_in_place(p.b, p.n_out, p.r, heads, false, err);
    if (!st && qkv_heads > 0) st = neox_reorder(p.b, p.n_out, p.r, qkv_heads, false, ad->path, gg, err);
    if (!st) st = add_pair(ad, &p, err);
    if (st) pair_clear(&p);
    return st;
}

static pare_status peft_full(pare_lora_adapter *ad, const pare_tensor *t, const char *module, const char *arch,
                             const pare_meta *meta, pare_err *err) {
    char gg[NAME_MAX_LEN];
    FAIL_IF(!pare_hf_name_to_gguf(arch, module, gg, sizeof gg), PARE_EINPUT,
            "%s: tensor '%s' is not a tensor of a %s model", ad->path, t->name, arch);
    pare_lora_full *nf = realloc(ad->fulls, (ad->n_fulls + 1) * sizeof *nf);
    FAIL_IF(!nf, PARE_ENOMEM, "out of memory");
    ad->fulls = nf;
    pare_lora_full *f = &ad->fulls[ad->n_fulls];
    memset(f, 0, sizeof *f);
    float *v = NULL;
    TRY(tensor_f32(t, &v, err));
    pare_status st = pare_tensor_init(&f->t, gg, PARE_TYPE_F32, t->n_dims, t->ne, err);
    if (st) {
        free(v);
        return st;
    }
    pare_tensor_set_owned(&f->t, v, f->t.n_bytes);
    f->target = strdup(gg);
    ad->n_fulls++;
    FAIL_IF(!f->target, PARE_ENOMEM, "out of memory");
    int heads = permute_heads(arch, meta, gg), qkv_heads = neox_qkv_heads(arch, meta, gg);
    if (heads > 0) TRY(permute_in_place(v, pare_tensor_nrows(&f->t), f->t.ne[0], heads, false, err));
    if (qkv_heads > 0) {
        /* a bias is one row per element */
        const int64_t len = f->t.n_dims == 1 ? 1 : f->t.ne[0];
        TRY(neox_reorder(v, pare_tensor_nelements(&f->t) / len, len, qkv_heads, false, ad->path, gg, err));
    }
    return PARE_OK;
}

static pare_status load_peft(pare_lora_adapter *ad, const char *dir, const char *arch, const pare_meta *meta,
                             double user_scale, pare_err *err) {
    char *cfg = pare_path_join(dir, "adapter_config.json");
    char *st_path = pare_path_join(dir, "adapter_model.safetensors");
    char *bin_path = pare_path_join(dir, "adapter_model.bin");
    cJSON *json = NULL;
    pare_model *w = NULL;
    peft_config c = {0};
    pare_status st = (!cfg || !st_path || !bin_path) ? pare_err_set(err, PARE_ENOMEM, "out of memory") : PARE_OK;
    if (!st && !pare_path_exists(cfg)) st = pare_err_set(err, PARE_EINPUT, "%s: no adapter_config.json", dir);
    if (!st) st = read_peft_config(cfg, &json, &c, err);
    if (!st) {
        if (pare_path_exists(st_path))
            st = pare_safetensors_load(st_path, &w, err);
        else if (pare_path_exists(bin_path))
            st = pare_pytorch_load(bin_path, &w, err);
        else
            st = pare_err_set(err, PARE_EINPUT, "%s: no adapter_model.safetensors or adapter_model.bin", dir);
    }
    ad->src = w; /* the pairs may borrow from it */
    for (size_t i = 0; !st && i < w->n_tensors; i++) {
        char module[NAME_MAX_LEN];
        peft_kind k = peft_split(w->tensors[i].name, module, sizeof module);
        if (k == PEFT_DORA)
            st = pare_err_set(err, PARE_EUNSUPPORTED, "%s: DoRA tensor '%s': DoRA adapters are not supported", dir,
                              w->tensors[i].name);
        else if (k == PEFT_A || k == PEFT_EMB_A)
            st = peft_pair(ad, w, module, k == PEFT_EMB_A, &c, arch, meta, user_scale, err);
        else if (k == PEFT_FULL)
            st = peft_full(ad, &w->tensors[i], module, arch, meta, err);
    }
    /* fan_in_fan_out needs no flag here: in GGUF layout every weight is (out, in) (the
     * converter transposes GPT-2's Conv1D weights); pare_lora_to_hf_view flips it back. */
    cJSON_Delete(json);
    free(cfg);
    free(st_path);
    free(bin_path);
    return st;
}

/* ---- GGUF adapters --------------------------------------------------------------------- */

/* A GGUF adapter's 3-D pair (lora_a [in, r, n_expert], lora_b [r, out, n_expert], as
 * llama.cpp's convert_lora_to_gguf.py stacks experts' adapters): one pair per expert, each
 * with its own copy of its slices. */
static pare_status gguf_expert_pairs(pare_lora_adapter *ad, const char *path, const char *target,
                                     const pare_tensor *ta, const pare_tensor *tb, double alpha, double user_scale,
                                     pare_err *err) {
    const int64_t r = ta->ne[1], ni = ta->ne[0], no = tb->ne[1], ne = ta->ne[2];
    FAIL_IF(ta->n_dims != 3 || tb->n_dims != 3 || tb->ne[0] != r || tb->ne[2] != ne || ne < 1, PARE_EINPUT,
            "%s: '%s': 3-D lora_a and lora_b do not fit", path, target);
    float *va = NULL, *vb = NULL;
    TRY(tensor_f32(ta, &va, err));
    pare_status st = tensor_f32(tb, &vb, err);
    for (int64_t e = 0; !st && e < ne; e++) {
        pare_lora_pair p = {.r = r, .n_in = ni, .n_out = no, .is_expert = true, .expert = e};
        p.scale = alpha == 0 ? user_scale : user_scale * alpha / (double)r;
        p.a = malloc((size_t)(r * ni) * sizeof(float) + sizeof(float));
        p.b = malloc((size_t)(no * r) * sizeof(float) + sizeof(float));
        p.target = strdup(target);
        if (!p.a || !p.b || !p.target) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) {
            memcpy(p.a, va + e * r * ni, (size_t)(r * ni) * sizeof(float));
            memcpy(p.b, vb + e * no * r, (size_t)(no * r) * sizeof(float));
            st = add_pair(ad, &p, err);
        }
        if (st) pair_clear(&p);
    }
    free(va);
    free(vb);
    return st;
}

static pare_status load_gguf_adapter(pare_lora_adapter *ad, const char *path, const char *base_arch,
                                     double user_scale, pare_err *err) {
    pare_model *m = NULL;
    TRY(pare_gguf_load(path, &m, err));
    ad->src = m; /* the pairs may borrow from it */
    pare_status st = PARE_OK;
    const char *type = pare_meta_get_str(&m->meta, "general.type");
    const char *atype = pare_meta_get_str(&m->meta, "adapter.type");
    double alpha = 0;
    if (!type || strcmp(type, "adapter") || !atype || strcmp(atype, "lora"))
        st = pare_err_set(err, PARE_EINPUT, "%s: not a LoRA adapter (general.type '%s', adapter.type '%s')", path,
                          type ? type : "none", atype ? atype : "none");
    if (!st && m->arch && base_arch && strcmp(m->arch, base_arch))
        st = pare_err_set(err, PARE_EINPUT, "%s: adapter for architecture '%s', base is '%s'", path, m->arch, base_arch);
    if (!st && m->arch && !(ad->arch = strdup(m->arch))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    pare_meta_get_f64(&m->meta, "adapter.lora.alpha", &alpha);
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *ta = &m->tensors[i];
        if (!pare_str_ends_with(ta->name, ".lora_a")) {
            if (!pare_str_ends_with(ta->name, ".lora_b"))
                st = pare_err_set(err, PARE_EUNSUPPORTED, "%s: tensor '%s' is neither lora_a nor lora_b", path, ta->name);
            continue;
        }
        char target[NAME_MAX_LEN], nb[NAME_MAX_LEN];
        size_t k = strlen(ta->name) - 7;
        snprintf(target, sizeof target, "%.*s", (int)k, ta->name);
        snprintf(nb, sizeof nb, "%s.lora_b", target);
        const pare_tensor *tb = pare_model_find(m, nb);
        if (!tb) {
            st = pare_err_set(err, PARE_EINPUT, "%s: '%s' has no matching '%s'", path, ta->name, nb);
            break;
        }
        if (ta->n_dims == 3 || tb->n_dims == 3) {
            st = gguf_expert_pairs(ad, path, target, ta, tb, alpha, user_scale, err);
            continue;
        }
        pare_lora_pair p = {0};
        p.r = ta->ne[1];
        p.n_in = ta->ne[0];
        p.n_out = tb->ne[1];
        if (ta->n_dims != 2 || tb->n_dims != 2 || tb->ne[0] != p.r) {
            st = pare_err_set(err, PARE_EINPUT, "%s: '%s': lora_a [%lld, %lld] and lora_b [%lld, %lld] do not fit",
                              path, target, (long long)ta->ne[0], (long long)ta->ne[1], (long long)tb->ne[0],
                              (long long)tb->ne[1]);
            break;
        }
        p.scale = alpha == 0 ? user_scale : user_scale * alpha / (double)p.r;
        st = tensor_f32_view(ta, true, &p.a, &p.a_borrowed, err);
        if (!st) st = tensor_f32_view(tb, true, &p.b, &p.b_borrowed, err);
        if (!st && !(p.target = strdup(target))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = add_pair(ad, &p, err);
        if (st) pair_clear(&p);
    }
    return st;
}

pare_status pare_lora_load(const char *path, const char *base_arch, const pare_meta *base_meta, double user_scale,
                           pare_lora_adapter **out, pare_err *err) {
    *out = NULL;
    FAIL_IF(!pare_path_exists(path), PARE_EUSAGE, "%s: no such adapter", path);
    pare_lora_adapter *ad = calloc(1, sizeof *ad);
    FAIL_IF(!ad || !(ad->path = strdup(path)), PARE_ENOMEM, "out of memory");
    pare_status st;
    if (pare_format_detect(path) == PARE_FORMAT_GGUF) {
        st = load_gguf_adapter(ad, path, base_arch, user_scale, err);
    } else {
        char *copy = strdup(path);
        const char *dir = pare_path_is_dir(path) ? path : (copy ? dirname(copy) : ".");
        FAIL_IF(!base_arch, PARE_EUNSUPPORTED, "%s: the base model's architecture is unknown", path);
        st = load_peft(ad, dir, base_arch, base_meta, user_scale, err);
        free(copy);
    }
    if (!st && ad->n_pairs == 0 && ad->n_fulls == 0)
        st = pare_err_set(err, PARE_EINPUT, "%s: the adapter holds no LoRA tensors", path);
    if (st) {
        pare_lora_free(ad);
        return st;
    }
    *out = ad;
    return PARE_OK;
}

pare_status pare_lora_to_hf_view(pare_lora_adapter *a, const char *arch, const pare_meta *meta, pare_err *err) {
    char hf[NAME_MAX_LEN];
    for (size_t i = 0; i < a->n_pairs; i++) {
        pare_lora_pair *p = &a->pairs[i];
        if (p->is_expert) { /* an HF base keeps each expert as its own 2-D tensor */
            FAIL_IF(!p->hf_name, PARE_EUNSUPPORTED,
                    "%s: '%s' expert %lld: a stacked (3-D) adapter needs a GGUF base or output", a->path, p->target,
                    (long long)p->expert);
            free(p->target);
            p->target = p->hf_name;
            p->hf_name = NULL;
            p->is_expert = false;
            continue;
        }
        FAIL_IF(!pare_gguf_name_to_hf(arch, p->target, hf, sizeof hf), PARE_EINPUT,
                "%s: no HF name for '%s'", a->path, p->target);
        int heads = permute_heads(arch, meta, p->target), qkv_heads = neox_qkv_heads(arch, meta, p->target);
        if (heads > 0) {
            TRY(own_values(&p->b, &p->b_borrowed, p->n_out * p->r, err));
            TRY(permute_in_place(p->b, p->n_out, p->r, heads, true, err));
        }
        if (qkv_heads > 0) {
            TRY(own_values(&p->b, &p->b_borrowed, p->n_out * p->r, err));
            TRY(neox_reorder(p->b, p->n_out, p->r, qkv_heads, true, a->path, p->target, err));
        }
        char *n = strdup(hf);
        FAIL_IF(!n, PARE_ENOMEM, "out of memory");
        free(p->target);
        p->target = n;
        /* GPT-2's Conv1D weights are (in, out) in HF layout. */
        if (arch && !strcmp(arch, "gpt2") && strstr(hf, ".weight") && !strstr(hf, "wte") && !strstr(hf, "wpe"))
            p->transposed = !p->transposed;
    }
    for (size_t i = 0; i < a->n_fulls; i++) {
        pare_lora_full *f = &a->fulls[i];
        FAIL_IF(!pare_gguf_name_to_hf(arch, f->target, hf, sizeof hf), PARE_EINPUT,
                "%s: no HF name for '%s'", a->path, f->target);
        int heads = permute_heads(arch, meta, f->target), qkv_heads = neox_qkv_heads(arch, meta, f->target);
        if (heads > 0)
            TRY(permute_in_place(f->t.owned, pare_tensor_nrows(&f->t), f->t.ne[0], heads, true, err));
        if (qkv_heads > 0) {
            const int64_t len = f->t.n_dims == 1 ? 1 : f->t.ne[0];
            TRY(neox_reorder(f->t.owned, pare_tensor_nelements(&f->t) / len, len, qkv_heads, true, a->path, f->target,
                             err));
        }
        char *n = strdup(hf);
        FAIL_IF(!n, PARE_ENOMEM, "out of memory");
        free(f->target);
        f->target = n;
    }
    return PARE_OK;
}
