/* formats/hf_write.c - an HF folder's config.json, generation_config.json and tokenizer files
 * for a model whose metadata is GGUF metadata (pare_hf_write_folder_meta).
 *
 * The files are the inverse of what hf.c and hf_tokenizer.c read: every GGUF key the
 * converter derives from config.json gets its config.json key back, so that GGUF -> folder ->
 * GGUF gives the same metadata (general.* names come back from _name_or_path and the folder's
 * name). Numbers stored as F32 are written with the fewest digits that read back to the same
 * float.
 */
#include "formats/hf_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const pare_meta *meta;
    const char *arch;
    cJSON *cfg;
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

static void put_u(hf_out *o, const char *json_key, const char *suffix) {
    uint64_t v;
    if (mget_u(o, suffix, &v)) cJSON_AddNumberToObject(o->cfg, json_key, (double)v);
}

static void put_f(hf_out *o, const char *json_key, const char *suffix) {
    double v;
    if (mget_f(o, suffix, &v)) cJSON_AddNumberToObject(o->cfg, json_key, f32_short(v));
}

static const char *torch_dtype(const pare_model *m) {
    const char *d = "float32";
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].n_dims < 2) continue;
        if (m->tensors[i].type == PARE_TYPE_BF16) return "bfloat16";
        if (m->tensors[i].type == PARE_TYPE_F16) d = "float16";
    }
    return d;
}

static uint64_t n_tokens(const pare_meta *meta) {
    const pare_kv *t = pare_meta_get(meta, "tokenizer.ggml.tokens");
    return t && t->type == PARE_META_ARRAY ? t->n : 0;
}

static bool has_output(const pare_model *m) {
    return pare_model_find(m, "output.weight") || pare_model_find(m, "lm_head.weight");
}

static pare_status config_llama(hf_out *o, const pare_model *m, pare_err *err) {
    bool qwen2 = strcmp(o->arch, "qwen2") == 0;
    cJSON *a = cJSON_AddArrayToObject(o->cfg, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(o->cfg, "model_type", qwen2 ? "qwen2" : "llama");
    put_u(o, "hidden_size", "embedding_length");
    put_u(o, "intermediate_size", "feed_forward_length");
    put_u(o, "num_hidden_layers", "block_count");
    put_u(o, "num_attention_heads", "attention.head_count");
    put_u(o, "num_key_value_heads", "attention.head_count_kv");
    put_u(o, "head_dim", "attention.key_length");
    put_f(o, "rms_norm_eps", "attention.layer_norm_rms_epsilon");
    put_f(o, "rope_theta", "rope.freq_base");
    put_u(o, "max_position_embeddings", "context_length");
    uint64_t vs;
    if (!mget_u(o, "vocab_size", &vs)) vs = n_tokens(o->meta);
    FAIL_IF(!vs, PARE_EINPUT, "%s: no vocabulary size in the metadata", m->path ? m->path : "model");
    cJSON_AddNumberToObject(o->cfg, "vocab_size", (double)vs);
    cJSON_AddBoolToObject(o->cfg, "tie_word_embeddings", !has_output(m));
    cJSON_AddStringToObject(o->cfg, "hidden_act", "silu");
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", o->arch);
    const char *rt = pare_meta_get_str(o->meta, key);
    double f;
    if (rt && mget_f(o, "rope.scaling.factor", &f)) {
        cJSON *rs = cJSON_AddObjectToObject(o->cfg, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", rt);
        cJSON_AddStringToObject(rs, "rope_type", rt);
        cJSON_AddNumberToObject(rs, "factor", f32_short(f));
        uint64_t oc;
        if (mget_u(o, "rope.scaling.original_context_length", &oc))
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", (double)oc);
    }
    return PARE_OK;
}

static pare_status config_gpt2(hf_out *o, pare_err *err) {
    cJSON *a = cJSON_AddArrayToObject(o->cfg, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(o->cfg, "model_type", "gpt2");
    uint64_t n_embd = 0, ff = 0, ctx = 0;
    put_u(o, "n_layer", "block_count");
    put_u(o, "n_embd", "embedding_length");
    put_u(o, "n_head", "attention.head_count");
    if (mget_u(o, "context_length", &ctx)) {
        cJSON_AddNumberToObject(o->cfg, "n_ctx", (double)ctx);
        cJSON_AddNumberToObject(o->cfg, "n_positions", (double)ctx);
    }
    mget_u(o, "embedding_length", &n_embd);
    if (mget_u(o, "feed_forward_length", &ff) && ff != 4 * n_embd) cJSON_AddNumberToObject(o->cfg, "n_inner", (double)ff);
    put_f(o, "layer_norm_epsilon", "attention.layer_norm_epsilon");
    uint64_t vs = n_tokens(o->meta);
    FAIL_IF(!vs, PARE_EINPUT, "no vocabulary in the metadata");
    cJSON_AddNumberToObject(o->cfg, "vocab_size", (double)vs);
    cJSON_AddStringToObject(o->cfg, "activation_function", "gelu_new");
    cJSON_AddBoolToObject(o->cfg, "tie_word_embeddings", true);
    return PARE_OK;
}

/* config.json's *_token_id, in bos, eos, unk, ... order, and generation_config.json. */
static void special_ids(const pare_meta *meta, cJSON *cfg, cJSON *gen) {
    for (int i = 0; i < HF_N_SPECIAL; i++) {
        uint64_t id;
        if (!pare_meta_get_u64(meta, pare_hf_special_keys[i], &id)) continue;
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", pare_hf_special_names[i]);
        cJSON_AddNumberToObject(cfg, key, (double)id);
        if (i < 2 || i == 4) cJSON_AddNumberToObject(gen, key, (double)id);
    }
}

static pare_status write_tokenizer(const pare_model *m, const char *folder, bool force, const char *tok_model,
                                   pare_err *err) {
    cJSON *tokcfg = cJSON_CreateObject(), *smap = cJSON_CreateObject();
    pare_status st = (tokcfg && smap) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    bool sp = strcmp(tok_model, "llama") == 0;
    if (!st && sp) {
        uint8_t *buf = NULL;
        size_t len = 0;
        st = pare_hf_sp_build(&m->meta, &buf, &len, err);
        if (!st) st = pare_hf_file_write(folder, "tokenizer.model", buf, len, force, err);
        free(buf);
    } else if (!st) {
        cJSON *tj = NULL;
        st = pare_hf_tokjson_build(&m->meta, &tj, err);
        if (!st) st = pare_hf_json_write(folder, "tokenizer.json", tj, force, err);
        cJSON_Delete(tj);
    }
    if (!st) {
        const char *cls = sp ? "LlamaTokenizer"
                          : strcmp(m->arch, "gpt2") == 0  ? "GPT2Tokenizer"
                          : strcmp(m->arch, "qwen2") == 0 ? "Qwen2Tokenizer"
                                                          : "PreTrainedTokenizerFast";
        cJSON_AddStringToObject(tokcfg, "tokenizer_class", cls);
        char key[128];
        uint64_t ctx;
        snprintf(key, sizeof key, "%s.context_length", m->arch);
        if (pare_meta_get_u64(&m->meta, key, &ctx)) cJSON_AddNumberToObject(tokcfg, "model_max_length", (double)ctx);
        st = pare_hf_tokcfg_build(&m->meta, tokcfg, smap, err);
    }
    if (!st) st = pare_hf_json_write(folder, "tokenizer_config.json", tokcfg, force, err);
    if (!st) st = pare_hf_json_write(folder, "special_tokens_map.json", smap, force, err);
    cJSON_Delete(tokcfg);
    cJSON_Delete(smap);
    return st;
}

/* A _name_or_path that gives back general.name and the other general.* names: "org/" plus
 * the name with dashes (as written, or lower-cased), else the name itself. */
static char *model_id(const pare_model *m) {
    const char *name = pare_meta_get_str(&m->meta, "general.name");
    const char *org = pare_meta_get_str(&m->meta, "general.organization");
    if (!name) return NULL;
    size_t n = strlen(name) + (org ? strlen(org) : 0) + 2;
    char *id = malloc(n);
    if (!id) return NULL;
    int64_t total = (int64_t)pare_model_nparams(m);
    for (int pass = 0; pass < 4; pass++) {
        bool with_org = pass < 2 && org, lower = pass % 2;
        if (pass < 2 && !org) continue;
        size_t k = 0;
        if (with_org) k = (size_t)snprintf(id, n, "%s/", org);
        for (const char *q = name; *q; q++) {
            char c = *q == ' ' ? '-' : *q;
            id[k++] = lower && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        id[k] = 0;
        if (pare_hf_model_id_matches(id, total, &m->meta)) return id;
    }
    snprintf(id, n, "%s", name);
    return id;
}

pare_status pare_hf_write_folder_meta(const pare_model *m, const char *folder, bool force, pare_err *err) {
    const char *arch = m->arch ? m->arch : pare_meta_get_str(&m->meta, "general.architecture");
    FAIL_IF(!arch, PARE_EINPUT, "%s: the model has no general.architecture", m->path ? m->path : "model");
    FAIL_IF(!pare_hf_arch_known(arch), PARE_EUNSUPPORTED,
            "%s: architecture %s cannot be written as an HF folder (pare writes llama, qwen2, gpt2)",
            m->path ? m->path : "model", arch);
    if (!pare_path_is_dir(folder) && mkdir(folder, 0755) != 0 && errno != EEXIST)
        return pare_err_errno(err, "%s: cannot create the folder", folder);
    hf_out o = {&m->meta, arch, cJSON_CreateObject()};
    cJSON *gen = cJSON_CreateObject();
    pare_status st = (o.cfg && gen) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = strcmp(arch, "gpt2") == 0 ? config_gpt2(&o, err) : config_llama(&o, m, err);
    if (!st) {
        special_ids(&m->meta, o.cfg, gen);
        cJSON_AddStringToObject(o.cfg, "torch_dtype", torch_dtype(m));
        char *id = model_id(m);
        if (id) cJSON_AddStringToObject(o.cfg, "_name_or_path", id);
        free(id);
        st = pare_hf_json_write(folder, "config.json", o.cfg, force, err);
    }
    if (!st) st = pare_hf_json_write(folder, "generation_config.json", gen, force, err);
    const char *tm = pare_meta_get_str(&m->meta, "tokenizer.ggml.model");
    if (!st && tm) {
        FAIL_IF(strcmp(tm, "llama") != 0 && strcmp(tm, "gpt2") != 0, PARE_EUNSUPPORTED,
                "%s: tokenizer model '%s' cannot be written (pare writes llama and gpt2 tokenizers)",
                m->path ? m->path : "model", tm);
        st = write_tokenizer(m, folder, force, tm, err);
    }
    cJSON_Delete(o.cfg);
    cJSON_Delete(gen);
    return st;
}
