/* formats/hf_config.c - config.json <-> GGUF hyperparameters, driven by the architecture
 * table's hparams list (core/arch.h, pare_arch_hparam).
 *
 * Import runs the family's list in order, as the converter's set_gguf_parameters does, so the
 * keys land in its order with its types (u32 for counts, f32 for epsilons and scales, a bool
 * for GPT-NeoX's parallel residual). Export reads the same list and writes the config.json key
 * each step reads (the first of its keys), so GGUF -> folder -> GGUF gives the keys back.
 */
#include "formats/hf_impl.h"

#include "core/arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ------------------------------------------------------------------------ import */

typedef struct {
    const char *path; /* config.json, for messages */
    const cJSON *cfg;
    const char *arch; /* GGUF architecture */
    pare_meta *meta;
    uint32_t ftype;
    int64_t n_embd, n_head, n_head_kv, head_dim; /* as written so far (0: not yet) */
} hf_cfg;

/* Python's `find_hparam(keys)`: the first key present (its value may be null). */
static const cJSON *cfg_find(const hf_cfg *c, const char *const *keys, const char **which) {
    for (; keys && *keys; keys++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->cfg, *keys);
        if (v) {
            if (which) *which = *keys;
            return cJSON_IsNull(v) ? NULL : v;
        }
    }
    return NULL;
}

static pare_status cfg_int(const hf_cfg *c, const char *key, const cJSON *v, int64_t lo, int64_t hi, int64_t *out,
                           pare_err *err) {
    FAIL_IF(!pare_hf_json_int(v, out) || *out < lo || *out > hi, PARE_EINPUT,
            "%s: '%s' must be an integer from %lld to %lld", c->path, key, (long long)lo, (long long)hi);
    return PARE_OK;
}

/* Bounds of a count, so that a hostile config cannot make pare allocate more than the files justify. */
static void u32_bounds(const char *suffix, int64_t *lo, int64_t *hi) {
    *lo = 0;
    *hi = UINT32_MAX;
    if (strcmp(suffix, "block_count") == 0) *lo = 1, *hi = PARE_HF_MAX_LAYERS;
    else if (strncmp(suffix, "attention.head_count", 20) == 0) *lo = 1, *hi = PARE_HF_MAX_HEADS;
    else if (strcmp(suffix, "embedding_length") == 0 || strncmp(suffix, "attention.key_length", 20) == 0 ||
             strncmp(suffix, "attention.value_length", 22) == 0)
        *lo = 1, *hi = PARE_HF_MAX_DIM;
    else if (strstr(suffix, "feed_forward_length")) *lo = 1, *hi = 8ll * PARE_HF_MAX_DIM;
    else if (strcmp(suffix, "expert_count") == 0 || strcmp(suffix, "expert_used_count") == 0) *lo = 1, *hi = 4096;
    else if (strcmp(suffix, "context_length") == 0) *lo = 1;
}

static void note(hf_cfg *c, const char *suffix, int64_t v) {
    if (strcmp(suffix, "embedding_length") == 0) c->n_embd = v;
    else if (strcmp(suffix, "attention.head_count") == 0) c->n_head = v;
    else if (strcmp(suffix, "attention.head_count_kv") == 0) c->n_head_kv = v;
    else if (strcmp(suffix, "attention.key_length") == 0) c->head_dim = v;
}

static pare_status put_u32(hf_cfg *c, const char *suffix, int64_t v, pare_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    note(c, suffix, v);
    return pare_meta_set_uint(c->meta, key, PARE_META_U32, (uint64_t)v, err);
}

static pare_status put_f32(hf_cfg *c, const char *suffix, double v, pare_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    return pare_meta_set_float(c->meta, key, PARE_META_F32, v, err);
}

static pare_status put_str(hf_cfg *c, const char *suffix, const char *s, pare_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    return pare_meta_set_str(c->meta, key, s, strlen(s), err);
}

/* An integer hyperparameter: written when present; required -> error when absent. */
static pare_status step_u32(hf_cfg *c, const char *const *keys, const char *suffix, bool required, pare_err *err) {
    const char *which = keys[0];
    const cJSON *v = cfg_find(c, keys, &which);
    FAIL_IF(!v && required, PARE_EINPUT, "%s: missing %s", c->path, keys[0]);
    if (!v) return PARE_OK;
    int64_t lo, hi, x;
    u32_bounds(suffix, &lo, &hi);
    TRY(cfg_int(c, which, v, lo, hi, &x, err));
    return put_u32(c, suffix, x, err);
}

static pare_status step_f32(hf_cfg *c, const char *const *keys, const char *suffix, bool required, pare_err *err) {
    const char *which = keys[0];
    const cJSON *v = cfg_find(c, keys, &which);
    FAIL_IF(!v && required, PARE_EINPUT, "%s: missing %s", c->path, keys[0]);
    if (!v) return PARE_OK;
    FAIL_IF(!cJSON_IsNumber(v), PARE_EINPUT, "%s: '%s' must be a number", c->path, which);
    return put_f32(c, suffix, v->valuedouble, err);
}

/* Model.set_gguf_parameters: the hyperparameters every model gets. */
static pare_status step_base(hf_cfg *c, const char *const *ctx_keys, pare_err *err) {
    const char *which = "num_hidden_layers";
    const cJSON *v = cfg_find(c, KEYS("n_layers", "num_hidden_layers", "n_layer", "num_layers"), &which);
    FAIL_IF(!v, PARE_EINPUT, "%s: missing num_hidden_layers", c->path);
    int64_t n_layer;
    TRY(cfg_int(c, which, v, 1, PARE_HF_MAX_LAYERS, &n_layer, err));
    TRY(put_u32(c, "block_count", n_layer, err));
    TRY(step_u32(c, ctx_keys ? ctx_keys : KEYS("max_position_embeddings", "n_ctx"), "context_length", false, err));
    TRY(step_u32(c, KEYS("hidden_size", "n_embd"), "embedding_length", false, err));
    TRY(step_u32(c, KEYS("intermediate_size", "n_inner"), "feed_forward_length", false, err));
    TRY(step_u32(c, KEYS("num_attention_heads", "n_head"), "attention.head_count", false, err));
    TRY(step_u32(c, KEYS("num_key_value_heads"), "attention.head_count_kv", false, err));
    TRY(step_f32(c, KEYS("rope_theta"), "rope.freq_base", false, err));
    TRY(step_f32(c, KEYS("rms_norm_eps"), "attention.layer_norm_rms_epsilon", false, err));
    TRY(step_f32(c, KEYS("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"), "attention.layer_norm_epsilon",
                 false, err));
    TRY(step_u32(c, KEYS("num_local_experts"), "expert_count", false, err));
    TRY(step_u32(c, KEYS("num_experts_per_tok"), "expert_used_count", false, err));
    if (cfg_find(c, KEYS("head_dim"), NULL)) {
        TRY(step_u32(c, KEYS("head_dim"), "attention.key_length", false, err));
        TRY(put_u32(c, "attention.value_length", c->head_dim, err));
    }
    return pare_meta_set_uint(c->meta, "general.file_type", PARE_META_U32, c->ftype, err);
}

/* rope_scaling {"type": T, "factor": F, ...} when T is the one the model class handles
 * (rope_type: read from "rope_type" first, as Gemma3Model does). */
static pare_status step_rope_scaling(hf_cfg *c, const char *type, bool rope_type, pare_err *err) {
    const cJSON *rs = pare_hf_json_get(c->cfg, "rope_scaling");
    if (!cJSON_IsObject(rs) || !cJSON_GetObjectItemCaseSensitive(rs, "factor")) return PARE_OK;
    const cJSON *t = rope_type && pare_hf_json_get(rs, "rope_type") ? pare_hf_json_get(rs, "rope_type")
                                                                     : pare_hf_json_get(rs, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, type) != 0) return PARE_OK;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rs, "factor");
    FAIL_IF(!cJSON_IsNumber(f), PARE_EINPUT, "%s: rope_scaling.factor must be a number", c->path);
    TRY(put_str(c, "rope.scaling.type", type, err));
    TRY(put_f32(c, "rope.scaling.factor", f->valuedouble, err));
    if (strcmp(type, "yarn") == 0) {
        const cJSON *o = pare_hf_json_get(rs, "original_max_position_embeddings");
        int64_t n;
        FAIL_IF(!o, PARE_EINPUT, "%s: rope_scaling has no original_max_position_embeddings", c->path);
        TRY(cfg_int(c, "rope_scaling.original_max_position_embeddings", o, 1, UINT32_MAX, &n, err));
        TRY(put_u32(c, "rope.scaling.original_context_length", n, err));
    }
    return PARE_OK;
}

/* The head sizes must divide: pare permutes q/k rows by head, llama.cpp splits by head. */
static pare_status check_heads(const hf_cfg *c, pare_err *err) {
    FAIL_IF(!c->n_embd, PARE_EINPUT, "%s: missing hidden_size", c->path);
    FAIL_IF(!c->n_head, PARE_EINPUT, "%s: missing num_attention_heads", c->path);
    FAIL_IF(c->n_head_kv && (c->n_head_kv > c->n_head || c->n_head % c->n_head_kv), PARE_EINPUT,
            "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", c->path,
            (long long)c->n_head, (long long)c->n_head_kv);
    FAIL_IF(!c->head_dim && c->n_embd % c->n_head, PARE_EINPUT,
            "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", c->path, (long long)c->n_embd,
            (long long)c->n_head);
    int64_t hd = c->head_dim ? c->head_dim : c->n_embd / c->n_head;
    FAIL_IF(hd % 2, PARE_EINPUT, "%s: the head size %lld is odd (RoPE needs pairs)", c->path, (long long)hd);
    return PARE_OK;
}

static pare_status step_fraction(hf_cfg *c, const pare_arch_hparam *hp, double *f, pare_err *err) {
    const char *which = hp->keys[0];
    const cJSON *v = cfg_find(c, hp->keys, &which);
    FAIL_IF(!cJSON_IsNumber(v), PARE_EINPUT, "%s: missing %s", c->path, hp->keys[0]);
    FAIL_IF(!(v->valuedouble >= 0 && v->valuedouble <= 1), PARE_EINPUT, "%s: '%s' must be from 0 to 1", c->path, which);
    *f = v->valuedouble;
    /* the sizes it multiplies, read here when the list writes them later (GPT-NeoX) */
    int64_t *dst[2] = {&c->n_embd, &c->n_head};
    const char *const *keys[2] = {KEYS("hidden_size", "n_embd"), KEYS("num_attention_heads", "n_head")};
    for (int i = 0; i < 2; i++) {
        if (*dst[i]) continue;
        const cJSON *x = cfg_find(c, keys[i], &which);
        FAIL_IF(!x, PARE_EINPUT, "%s: missing %s", c->path, keys[i][0]);
        TRY(cfg_int(c, which, x, 1, i ? PARE_HF_MAX_HEADS : PARE_HF_MAX_DIM, dst[i], err));
    }
    return PARE_OK;
}

static pare_status run_step(hf_cfg *c, const pare_arch_hparam *hp, pare_err *err) {
    double f;
    const cJSON *v;
    switch (hp->kind) {
    case PARE_HP_BASE:
        return step_base(c, hp->keys, err);
    case PARE_HP_U32:
    case PARE_HP_U32_REQ:
        return step_u32(c, hp->keys, hp->gguf, hp->kind == PARE_HP_U32_REQ, err);
    case PARE_HP_U32_DEFAULT:
        if (cfg_find(c, hp->keys, NULL)) return step_u32(c, hp->keys, hp->gguf, false, err);
        return put_u32(c, hp->gguf, hp->ival, err);
    case PARE_HP_F32:
    case PARE_HP_F32_REQ:
        return step_f32(c, hp->keys, hp->gguf, hp->kind == PARE_HP_F32_REQ, err);
    case PARE_HP_BOOL_DEFAULT: {
        v = cfg_find(c, hp->keys, NULL);
        FAIL_IF(v && !cJSON_IsBool(v), PARE_EINPUT, "%s: '%s' must be true or false", c->path, hp->keys[0]);
        char key[128];
        snprintf(key, sizeof key, "%s.%s", c->arch, hp->gguf);
        return pare_meta_set_bool(c->meta, key, v ? cJSON_IsTrue(v) : hp->ival != 0, err);
    }
    case PARE_HP_HEAD_KV:
        return step_u32(c, cfg_find(c, hp->keys, NULL) ? hp->keys : KEYS("num_attention_heads"), hp->gguf, true, err);
    case PARE_HP_FF_4X:
        FAIL_IF(!c->n_embd, PARE_EINPUT, "%s: missing hidden_size", c->path);
        return put_u32(c, hp->gguf, 4 * c->n_embd, err);
    case PARE_HP_VOCAB_SIZE:
        return step_u32(c, hp->keys, hp->gguf, true, err);
    case PARE_HP_ROPE_DIM:
    case PARE_HP_ROPE_DIM_EMBD:
        TRY(check_heads(c, err));
        return put_u32(c, hp->gguf,
                       hp->kind == PARE_HP_ROPE_DIM && c->head_dim ? c->head_dim : c->n_embd / c->n_head, err);
    case PARE_HP_ROPE_PART_HEAD:
        TRY(step_fraction(c, hp, &f, err));
        return put_u32(c, hp->gguf, (int64_t)(f * (double)(c->n_embd / c->n_head)), err);
    case PARE_HP_ROPE_PART_EMBD:
        TRY(step_fraction(c, hp, &f, err));
        return put_u32(c, hp->gguf, (int64_t)(f * (double)c->n_embd) / c->n_head, err);
    case PARE_HP_ROPE_SCALING:
    case PARE_HP_ROPE_SCALING_RT:
        return step_rope_scaling(c, hp->str, hp->kind == PARE_HP_ROPE_SCALING_RT, err);
    case PARE_HP_F32_DEFAULT:
        if (cfg_find(c, hp->keys, NULL)) return step_f32(c, hp->keys, hp->gguf, false, err);
        return put_f32(c, hp->gguf, strtod(hp->str, NULL), err);
    case PARE_HP_STR:
        return put_str(c, hp->gguf, hp->str, err);
    case PARE_HP_FILE_TYPE:
        return pare_meta_set_uint(c->meta, "general.file_type", PARE_META_U32, c->ftype, err);
    case PARE_HP_ABS_BOOL:
        return pare_meta_set_bool(c->meta, hp->gguf, hp->ival != 0, err);
    case PARE_HP_QUERY_SCALAR:
        return PARE_OK;
    case PARE_HP_END:
        break;
    }
    return PARE_OK;
}

cJSON *pare_hf_config_flatten(const cJSON *cfg) {
    const cJSON *tc = pare_hf_json_get(cfg, "text_config");
    if (!cJSON_IsObject(tc)) return NULL;
    cJSON *out = cJSON_Duplicate(cfg, true);
    if (!out) return NULL;
    for (const cJSON *it = tc->child; it; it = it->next) {
        cJSON *dup = cJSON_Duplicate(it, true);
        if (!dup || !it->string) {
            cJSON_Delete(dup);
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(out, it->string);
        cJSON_AddItemToObject(out, it->string, dup);
    }
    return out;
}

pare_status pare_hf_config_import(const char *path, const cJSON *cfg, const char *arch, uint32_t ftype,
                                  pare_meta *meta, pare_err *err) {
    const pare_arch *a = pare_arch_find(arch);
    FAIL_IF(!a || !a->conv.hparams, PARE_EUNSUPPORTED, "%s: architecture %s has no config.json mapping", path, arch);
    /* a multimodal checkpoint's language model: its text_config over the top level */
    cJSON *flat = pare_hf_config_flatten(cfg);
    hf_cfg c = {path, flat ? flat : cfg, arch, meta, ftype, 0, 0, 0, 0};
    pare_status st = PARE_OK;
    for (const pare_arch_hparam *hp = a->conv.hparams; !st && hp->kind != PARE_HP_END; hp++) st = run_step(&c, hp, err);
    if (!st) st = check_heads(&c, err);
    cJSON_Delete(flat);
    return st;
}

/* ------------------------------------------------------------------------ export */

typedef struct {
    const pare_meta *meta;
    const char *arch;
    cJSON *cfg;
    const pare_arch_hparam *list;
} hf_out;

static bool mget_u(const hf_out *o, const char *suffix, uint64_t *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", o->arch, suffix);
    return pare_meta_get_u64(o->meta, key, v);
}

static bool mget_f(const hf_out *o, const char *suffix, double *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", o->arch, suffix);
    return pare_meta_get_f64(o->meta, key, v);
}

/* The shortest decimal that reads back as the same float32. */
static double f32_short(double v) {
    float f = (float)v;
    char b[40];
    for (int p = 1; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        double d = strtod(b, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

static void set_num(cJSON *cfg, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, key);
    cJSON_AddNumberToObject(cfg, key, v);
}

static void out_u(hf_out *o, const char *json_key, const char *suffix) {
    uint64_t v;
    if (json_key && mget_u(o, suffix, &v)) set_num(o->cfg, json_key, (double)v);
}

static void out_f(hf_out *o, const char *json_key, const char *suffix) {
    double v;
    if (json_key && mget_f(o, suffix, &v)) set_num(o->cfg, json_key, f32_short(v));
}

/* Whether a later step of the list writes this key (then the base step leaves it). */
static bool later_writes(const hf_out *o, const pare_arch_hparam *from, const char *suffix) {
    for (const pare_arch_hparam *hp = from + 1; hp->kind != PARE_HP_END; hp++)
        if (hp->gguf && strcmp(hp->gguf, suffix) == 0) return true;
    (void)o;
    return false;
}

static void export_base(hf_out *o, const pare_arch_hparam *hp) {
    static const struct {
        const char *json, *suffix, *kind;
    } k[] = {{"num_hidden_layers", "block_count", "u"},
             {"hidden_size", "embedding_length", "u"},
             {"intermediate_size", "feed_forward_length", "u"},
             {"num_attention_heads", "attention.head_count", "u"},
             {"num_key_value_heads", "attention.head_count_kv", "u"},
             {"head_dim", "attention.key_length", "u"},
             {"rms_norm_eps", "attention.layer_norm_rms_epsilon", "f"},
             {"layer_norm_eps", "attention.layer_norm_epsilon", "f"},
             {"rope_theta", "rope.freq_base", "f"},
             {"num_local_experts", "expert_count", "u"},
             {"num_experts_per_tok", "expert_used_count", "u"}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (later_writes(o, hp, k[i].suffix)) continue;
        if (k[i].kind[0] == 'u') out_u(o, k[i].json, k[i].suffix);
        else out_f(o, k[i].json, k[i].suffix);
    }
    /* every context key the step reads, so that the first present one gives the value back */
    for (const char *const *c = hp->keys ? hp->keys : KEYS("max_position_embeddings"); *c; c++)
        if (strcmp(*c, "n_ctx") != 0) out_u(o, *c, "context_length");
}

/* A fraction f with (int)(f * whole) / div == want, as the import computes it. */
static double fraction_for(int64_t want, int64_t num, int64_t den, int64_t whole, int64_t div) {
    double f = (double)num / (double)den;
    for (int i = 0; i < 4; i++) {
        if ((int64_t)(f * (double)whole) / div == want) return f;
        f = nextafter(f, 2.0);
    }
    return f;
}

static void export_step(hf_out *o, const pare_arch_hparam *hp) {
    uint64_t u, n_embd = 0, n_head = 0;
    mget_u(o, "embedding_length", &n_embd);
    mget_u(o, "attention.head_count", &n_head);
    switch (hp->kind) {
    case PARE_HP_BASE:
        export_base(o, hp);
        break;
    case PARE_HP_U32:
    case PARE_HP_U32_REQ:
    case PARE_HP_U32_DEFAULT:
    case PARE_HP_HEAD_KV:
    case PARE_HP_VOCAB_SIZE:
        out_u(o, hp->keys[0], hp->gguf);
        if (hp->str) out_u(o, hp->str, hp->gguf);
        break;
    case PARE_HP_F32:
    case PARE_HP_F32_REQ:
    case PARE_HP_F32_DEFAULT:
        out_f(o, hp->keys[0], hp->gguf);
        break;
    case PARE_HP_BOOL_DEFAULT: {
        char key[128];
        bool b;
        snprintf(key, sizeof key, "%s.%s", o->arch, hp->gguf);
        if (pare_meta_get_bool(o->meta, key, &b)) cJSON_AddBoolToObject(o->cfg, hp->keys[0], b);
        break;
    }
    case PARE_HP_FF_4X:
        if (hp->keys && mget_u(o, hp->gguf, &u) && (hp->ival || u != 4 * n_embd)) set_num(o->cfg, hp->keys[0], (double)u);
        break;
    case PARE_HP_ROPE_PART_HEAD:
        if (mget_u(o, hp->gguf, &u) && n_head && n_embd)
            set_num(o->cfg, hp->keys[0],
                    fraction_for((int64_t)u, (int64_t)u, (int64_t)(n_embd / n_head), (int64_t)(n_embd / n_head), 1));
        break;
    case PARE_HP_ROPE_PART_EMBD:
        if (mget_u(o, hp->gguf, &u) && n_head && n_embd)
            set_num(o->cfg, hp->keys[0],
                    fraction_for((int64_t)u, (int64_t)(u * n_head), (int64_t)n_embd, (int64_t)n_embd, (int64_t)n_head));
        break;
    case PARE_HP_ROPE_SCALING:
    case PARE_HP_ROPE_SCALING_RT: {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", o->arch);
        const char *rt = pare_meta_get_str(o->meta, key);
        double f;
        if (rt && strcmp(rt, hp->str) == 0 && mget_f(o, "rope.scaling.factor", &f)) {
            cJSON *rs = cJSON_AddObjectToObject(o->cfg, "rope_scaling");
            cJSON_AddStringToObject(rs, "type", rt);
            cJSON_AddStringToObject(rs, "rope_type", rt);
            cJSON_AddNumberToObject(rs, "factor", f32_short(f));
            uint64_t oc;
            if (mget_u(o, "rope.scaling.original_context_length", &oc))
                cJSON_AddNumberToObject(rs, "original_max_position_embeddings", (double)oc);
        }
        break;
    }
    case PARE_HP_QUERY_SCALAR: {
        uint64_t n_layer = 0, hd = 0;
        mget_u(o, "block_count", &n_layer);
        if (n_head && n_layer == (uint64_t)hp->ival) set_num(o->cfg, hp->keys[0], (double)(n_embd / n_head));
        else if (mget_u(o, "attention.key_length", &hd)) set_num(o->cfg, hp->keys[0], (double)hd);
        break;
    }
    default: /* derived (rope dimensions), constants and general.* keys need no config key */
        break;
    }
}

static uint64_t n_tokens(const pare_meta *meta) {
    const pare_kv *t = pare_meta_get(meta, "tokenizer.ggml.tokens");
    return t && t->type == PARE_META_ARRAY ? t->n : 0;
}

pare_status pare_hf_config_export(const pare_model *m, const char *arch, cJSON *cfg, pare_err *err) {
    const pare_arch *a = pare_arch_find(arch);
    FAIL_IF(!a || !a->conv.hparams || !a->conv.hf_class, PARE_EUNSUPPORTED,
            "%s: architecture %s cannot be written as an HF folder", m->path ? m->path : "model", arch);
    hf_out o = {&m->meta, arch, cfg, a->conv.hparams};
    uint64_t n_exp = 0;
    bool moe = a->conv.moe_hf_class && mget_u(&o, "expert_count", &n_exp) && n_exp > 0;
    cJSON *cls = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(cls, cJSON_CreateString(moe ? a->conv.moe_hf_class : a->conv.hf_class));
    cJSON_AddStringToObject(cfg, "model_type", moe ? a->conv.moe_model_type : a->conv.model_type);
    for (const pare_arch_hparam *hp = a->conv.hparams; hp->kind != PARE_HP_END; hp++) export_step(&o, hp);
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size")) {
        uint64_t vs;
        if (!mget_u(&o, "vocab_size", &vs)) vs = n_tokens(&m->meta);
        FAIL_IF(!vs, PARE_EINPUT, "%s: no vocabulary size in the metadata", m->path ? m->path : "model");
        cJSON_AddNumberToObject(cfg, "vocab_size", (double)vs);
    }
    /* The converter's copy of the embedding (GPT-2) is transformers' tied output. */
    bool tied = (a->conv.flags & PARE_CONV_OUTPUT_COPY) ||
                !(pare_model_find(m, "output.weight") || pare_model_find(m, "lm_head.weight"));
    cJSON_AddBoolToObject(cfg, "tie_word_embeddings", tied);
    if (a->conv.hidden_act) cJSON_AddStringToObject(cfg, "hidden_act", a->conv.hidden_act);
    return PARE_OK;
}
