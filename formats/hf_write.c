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

#include "core/arch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *torch_dtype(const pare_model *m) {
    const char *d = "float32";
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].n_dims < 2) continue;
        if (m->tensors[i].type == PARE_TYPE_BF16) return "bfloat16";
        if (m->tensors[i].type == PARE_TYPE_F16) d = "float16";
    }
    return d;
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
        const pare_arch *a = pare_arch_find(m->arch);
        const char *cls = sp                                      ? "LlamaTokenizer"
                          : a && a->conv.tokenizer_class ? a->conv.tokenizer_class
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
            "%s: architecture %s cannot be written as an HF folder (pare writes %s)", m->path ? m->path : "model", arch,
            pare_arch_names());
    if (!pare_path_is_dir(folder) && mkdir(folder, 0755) != 0 && errno != EEXIST)
        return pare_err_errno(err, "%s: cannot create the folder", folder);
    cJSON *cfg = cJSON_CreateObject();
    cJSON *gen = cJSON_CreateObject();
    pare_status st = (cfg && gen) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = pare_hf_config_export(m, arch, cfg, err);
    if (!st) {
        special_ids(&m->meta, cfg, gen);
        cJSON_AddStringToObject(cfg, "torch_dtype", torch_dtype(m));
        char *id = model_id(m);
        if (id) cJSON_AddStringToObject(cfg, "_name_or_path", id);
        free(id);
        st = pare_hf_json_write(folder, "config.json", cfg, force, err);
    }
    if (!st) st = pare_hf_json_write(folder, "generation_config.json", gen, force, err);
    const char *tm = pare_meta_get_str(&m->meta, "tokenizer.ggml.model");
    if (!st && tm) {
        FAIL_IF(strcmp(tm, "llama") != 0 && strcmp(tm, "gpt2") != 0, PARE_EUNSUPPORTED,
                "%s: tokenizer model '%s' cannot be written (pare writes llama and gpt2 tokenizers)",
                m->path ? m->path : "model", tm);
        st = write_tokenizer(m, folder, force, tm, err);
    }
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    return st;
}
