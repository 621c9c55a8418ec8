/* pipeline/extract_job.c - pare extract-lora: (tuned - base) -> a PEFT adapter folder. */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
#include "quant/quant.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* HF-named attention and MLP projections of the architectures pare knows: llama-like,
 * GPT-2 / starcoder2 (c_*), phi3's fused qkv_proj / gate_up_proj, GPT-NeoX (query_key_value,
 * dense, dense_h_to_4h, dense_4h_to_h), phi2 (dense, fc1, fc2), Mixtral's experts (w1-w3). */
static const char *const targets[] = {"q_proj",          "k_proj",        "v_proj",        "o_proj",    "gate_proj",
                                      "up_proj",         "down_proj",     "qkv_proj",      "gate_up_proj",
                                      "c_attn",          "c_proj",        "c_fc",          "query_key_value",
                                      "dense",           "dense_h_to_4h", "dense_4h_to_h", "fc1",
                                      "fc2",             "w1",            "w2",            "w3"};

static const char *target_of(const char *hf_name) {
    if (!pare_str_ends_with(hf_name, ".weight")) return NULL;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%s.weight", targets[i]);
        if (pare_str_ends_with(hf_name, suffix)) return targets[i];
    }
    return NULL;
}

static pare_status load_hf_view(const char *path, pare_model **m, pare_err *err) {
    TRY(pare_model_load(path, m, err));
    if ((*m)->gguf_names) return pare_gguf_to_hf(*m, err);
    return PARE_OK;
}

static pare_status add_f32(pare_model *ad, const char *name, int64_t rows, int64_t cols, float *data, pare_err *err) {
    pare_tensor t;
    int64_t ne[2] = {cols, rows};
    pare_status st = pare_tensor_init(&t, name, PARE_TYPE_F32, 2, ne, err);
    if (st) {
        free(data);
        return st;
    }
    pare_tensor_set_owned(&t, data, t.n_bytes);
    st = pare_model_add_tensor(ad, &t, err);
    if (st) pare_tensor_clear(&t);
    return st;
}

static pare_status write_config(const char *dir, int rank, const bool *used, bool gpt2, bool force, pare_err *err) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(j, "r", rank);
    cJSON_AddNumberToObject(j, "lora_alpha", rank);
    cJSON_AddNumberToObject(j, "lora_dropout", 0);
    cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (used[i]) cJSON_AddItemToArray(tm, cJSON_CreateString(targets[i]));
    cJSON_AddBoolToObject(j, "fan_in_fan_out", gpt2);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    FAIL_IF(!s, PARE_ENOMEM, "out of memory");
    char *p = pare_path_join(dir, "adapter_config.json");
    pare_outfile *f = NULL;
    pare_status st = p ? pare_outfile_open(p, force, NULL, 0, &f, err) : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = pare_outfile_write(f, s, strlen(s), err);
    if (!st) st = pare_outfile_commit(f, err);
    pare_outfile_free(f);
    free(p);
    free(s);
    return st;
}

pare_status pare_extract_lora(const char *base, const char *tuned, const char *out, int rank,
                              const pare_convert_opts *o, FILE *report, pare_err *err) {
    FAIL_IF(rank < 1 || rank > 65536, PARE_EUSAGE, "--rank must be between 1 and 65536");
    FAIL_IF(pare_path_exists(out) && !pare_path_is_dir(out), PARE_EUSAGE, "%s: exists and is not a folder", out);
    pare_model *mb = NULL, *mt = NULL, *ad = pare_model_new(PARE_FORMAT_SAFETENSORS, out);
    FAIL_IF(!ad, PARE_ENOMEM, "out of memory");
    bool used[sizeof targets / sizeof targets[0]] = {false}, gpt2 = false, created = false;
    pare_status st = load_hf_view(base, &mb, err);
    if (!st) st = load_hf_view(tuned, &mt, err);
    if (!st) gpt2 = mt->arch && !strcmp(mt->arch, "gpt2");
    for (size_t i = 0; !st && i < mt->n_tensors; i++) {
        const pare_tensor *t = &mt->tensors[i];
        const char *tg = t->n_dims == 2 ? target_of(t->name) : NULL;
        if (!tg) continue;
        const pare_tensor *b = pare_model_find(mb, t->name);
        if (!b || memcmp(b->ne, t->ne, sizeof t->ne)) {
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' has no counterpart of the same shape in %s", tuned,
                              t->name, base);
            break;
        }
        int64_t n = pare_tensor_nelements(t), rows = pare_tensor_nrows(t), cols = t->ne[0];
        float *vt = malloc((size_t)n * sizeof(float)), *vb = malloc((size_t)n * sizeof(float));
        if (!vt || !vb) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_tensor_to_f32(t, vt, o->n_threads, err);
        if (!st) st = pare_tensor_to_f32(b, vb, o->n_threads, err);
        bool differs = false;
        for (int64_t k = 0; !st && k < n; k++) {
            vt[k] -= vb[k];
            differs |= vt[k] != 0.0f;
        }
        float *fa = NULL, *fb = NULL;
        double kept = 0;
        /* GPT-2's Conv1D weights are (in, out) in HF layout: factor the transpose's way. */
        if (!st && differs) st = pare_lora_extract_one(vt, rows, cols, rank, &fa, &fb, &kept, err);
        free(vt);
        free(vb);
        pare_model_release_tensor(mt, t);
        pare_model_release_tensor(mb, b);
        if (st || !differs) continue;
        int r = rank < (rows < cols ? rows : cols) ? rank : (int)(rows < cols ? rows : cols);
        char module[512], name[600];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
        snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", module);
        /* delta ~ fb (rows x r) fa (r x cols): PEFT's A is (r, in), B (out, r); for GPT-2
         * (fan_in_fan_out) the HF matrix is (in, out), so A and B swap and transpose. */
        if (!gpt2) {
            st = add_f32(ad, name, r, cols, fa, err);
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", module);
            if (!st) st = add_f32(ad, name, rows, r, fb, err);
            else free(fb);
        } else {
            float *a2 = malloc((size_t)(r * rows) * sizeof(float)), *b2 = malloc((size_t)(cols * r) * sizeof(float));
            if (!a2 || !b2) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            for (int64_t x = 0; !st && x < rows; x++)
                for (int k = 0; k < r; k++) a2[(int64_t)k * rows + x] = fb[x * r + k];
            for (int64_t y = 0; !st && y < cols; y++)
                for (int k = 0; k < r; k++) b2[y * r + k] = fa[(int64_t)k * cols + y];
            free(fa);
            free(fb);
            if (!st) st = add_f32(ad, name, r, rows, a2, err);
            else free(a2);
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", module);
            if (!st) st = add_f32(ad, name, cols, r, b2, err);
            else free(b2);
        }
        for (size_t k = 0; k < sizeof targets / sizeof targets[0]; k++)
            if (!strcmp(targets[k], tg)) used[k] = true;
        if (!st && report) fprintf(report, "%-48s rank %d keeps %6.2f%% of the difference's energy\n", t->name, r,
                                   100.0 * kept);
    }
    if (!st && ad->n_tensors == 0)
        st = pare_err_set(err, PARE_EINPUT, "%s and %s have no projection weight that differs", base, tuned);
    if (!st && !pare_path_exists(out)) {
        if (mkdir(out, 0755) != 0) st = pare_err_errno(err, "%s: cannot create the folder", out);
        created = !st;
    }
    char *st_path = st ? NULL : pare_path_join(out, "adapter_model.safetensors");
    if (!st && !st_path) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = pare_safetensors_save(ad, st_path, o->force, err);
    if (!st) st = write_config(out, rank, used, gpt2, o->force, err);
    if (st && created) {
        if (st_path) unlink(st_path);
        rmdir(out);
    }
    free(st_path);
    pare_model_free(ad);
    pare_model_free(mb);
    pare_model_free(mt);
    return st;
}
