/* pipeline/convert_job.c - what a job writes when it does not quantize: any model format to
 * GGUF, safetensors or an HF folder, with the type choices and metadata llama.cpp's
 * convert_hf_to_gguf.py makes. */
#include "pipeline/passes.h"

#include "core/arch.h"
#include "formats/formats.h"
#include "formats/hf.h"

#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- choosing types ------------------------------------------------------------------- */

/* The converter's rule (convert_hf_to_gguf.py prepare_tensors): 1-D tensors, norms,
 * non-".weight" tensors, expert routers (ffn_gate_inp) and position/token-type embeddings
 * stay F32. */
static bool gguf_keeps_f32(const pare_tensor *t) {
    if (t->n_dims <= 1 || pare_str_ends_with(t->name, "_norm.weight")) return true;
    if (!pare_str_ends_with(t->name, ".weight")) return true;
    if (strncmp(t->name, "blk.", 4) == 0 && pare_str_ends_with(t->name, ".ffn_gate_inp.weight")) return true;
    return strncmp(t->name, "position_embd", 13) == 0 || strncmp(t->name, "token_types", 11) == 0;
}

/* The converter's float output types; anything else (f64, f8) is widened to F32. */
static pare_type float_or_f32(pare_type t) {
    return (t == PARE_TYPE_F32 || t == PARE_TYPE_F16 || t == PARE_TYPE_BF16) ? t : PARE_TYPE_F32;
}

pare_type pare_pick_type(const pare_model *m, const pare_tensor *t, pare_out_kind kind, pare_type want) {
    const pare_type_info *ti = pare_type_get(t->type);
    if (kind == PARE_OUT_GGUF) {
        bool integer = ti && !ti->is_quantized && !ti->is_float;
        if (integer && t->type < PARE_TYPE_GGML_COUNT) return t->type; /* i8..i64 tensors pass through */
        if (gguf_keeps_f32(t)) {
            /* A GGUF source keeps its own choices for these (they are F32 there anyway). */
            return (m->format == PARE_FORMAT_GGUF && want == PARE_TYPE_INVALID) ? t->type : PARE_TYPE_F32;
        }
        if (want == PARE_TYPE_INVALID) {
            if (m->format == PARE_FORMAT_GGUF) return t->type;
            return float_or_f32(t->type);
        }
        const pare_type_info *wi = pare_type_get(want);
        if (wi && wi->is_quantized && t->ne[0] % wi->block_size) return PARE_TYPE_F16; /* the converter's fallback */
        return want;
    }
    /* safetensors: plain types only; block types are dequantized. */
    if (want != PARE_TYPE_INVALID && ti && (ti->is_float || ti->is_quantized)) return want;
    if (ti && !ti->is_quantized && ti->st_name) return t->type;
    return PARE_TYPE_F32;
}

uint32_t pare_guess_file_type(const pare_model *m, const pare_type *types) {
    /* llama_ftype values for the types a converter writes. */
    static const struct {
        pare_type t;
        uint32_t ftype;
    } map[] = {{PARE_TYPE_F32, 0},  {PARE_TYPE_F16, 1},   {PARE_TYPE_Q4_0, 2},   {PARE_TYPE_Q4_1, 3},
               {PARE_TYPE_Q8_0, 7}, {PARE_TYPE_Q5_0, 8},  {PARE_TYPE_Q5_1, 9},   {PARE_TYPE_Q2_K, 10},
               {PARE_TYPE_Q6_K, 18}, {PARE_TYPE_IQ4_NL, 25}, {PARE_TYPE_IQ4_XS, 30}, {PARE_TYPE_BF16, 32},
               {PARE_TYPE_TQ1_0, 36}, {PARE_TYPE_TQ2_0, 37}};
    size_t count[sizeof map / sizeof map[0]] = {0};
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].n_dims < 2) continue;
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (map[k].t == types[i]) count[k]++;
    }
    size_t best = 0;
    for (size_t k = 1; k < sizeof map / sizeof map[0]; k++)
        if (count[k] > count[best]) best = k;
    return map[best].ftype;
}

pare_status pare_gguf_meta_for(const pare_model *m, const pare_type *types, bool keep_file_type, pare_meta *meta,
                               pare_err *err) {
    TRY(pare_meta_copy(meta, &m->meta, err));
    uint64_t old = 0;
    bool has = pare_meta_get_u64(meta, "general.file_type", &old);
    bool keep = keep_file_type && has;
    /* An HF folder's metadata is the converter's: when its family writes no file type
     * (GPT-NeoX), neither does pare; otherwise the value is replaced in place. */
    if (!keep && (has || m->format != PARE_FORMAT_HF))
        TRY(pare_meta_set_uint(meta, "general.file_type", PARE_META_U32, pare_guess_file_type(m, types), err));
    if (!pare_meta_get(meta, "general.quantization_version"))
        TRY(pare_meta_set_uint(meta, "general.quantization_version", PARE_META_U32, 2, err));
    return PARE_OK;
}

/* ---- GGUFs of architectures pare does not model ----------------------------------------- */

/* Whether the architecture table maps the family's tensor names to Hugging Face's. */
static bool hf_mapped(const char *arch) {
    const pare_arch *a = pare_arch_find(arch);
    return a && a->conv.global && a->conv.hf_class;
}

/* One element of a metadata value as JSON (arrays) or text (scalars). */
static cJSON *kv_elem_json(pare_meta_type t, const void *p) {
    uint64_t u = 0;
    int64_t i = 0;
    size_t sz = pare_meta_type_size(t);
    switch (t) {
    case PARE_META_STRING:
        return cJSON_CreateString(((const pare_str *)p)->s);
    case PARE_META_BOOL:
        return cJSON_CreateBool(*(const uint8_t *)p != 0);
    case PARE_META_F32: {
        float f;
        memcpy(&f, p, 4);
        return cJSON_CreateNumber(f);
    }
    case PARE_META_F64: {
        double d;
        memcpy(&d, p, 8);
        return cJSON_CreateNumber(d);
    }
    case PARE_META_I8:
    case PARE_META_I16:
    case PARE_META_I32:
    case PARE_META_I64:
        memcpy(&i, p, sz); /* little-endian: sign-extend from sz bytes */
        if (sz < 8 && (i >> (sz * 8 - 1)) & 1) i |= (int64_t)(~0ull << (sz * 8));
        return cJSON_CreateNumber((double)i);
    default:
        memcpy(&u, p, sz);
        return cJSON_CreateNumber((double)u);
    }
}

/* A metadata value as the text safetensors' __metadata__ holds: strings as they are, numbers
 * and bools as JSON scalars, arrays as JSON arrays. */
static char *kv_text(const pare_kv *kv) {
    if (kv->type == PARE_META_STRING) return strdup(kv->str.s);
    char buf[64];
    if (kv->type != PARE_META_ARRAY) {
        switch (kv->type) {
        case PARE_META_BOOL:
            return strdup(kv->v.u64 ? "true" : "false");
        case PARE_META_F32:
            snprintf(buf, sizeof buf, "%.9g", kv->v.f64);
            break;
        case PARE_META_F64:
            snprintf(buf, sizeof buf, "%.17g", kv->v.f64);
            break;
        case PARE_META_I8:
        case PARE_META_I16:
        case PARE_META_I32:
        case PARE_META_I64:
            snprintf(buf, sizeof buf, "%lld", (long long)kv->v.i64);
            break;
        default:
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)kv->v.u64);
        }
        return strdup(buf);
    }
    cJSON *a = cJSON_CreateArray();
    size_t sz = kv->elem_type == PARE_META_STRING ? sizeof(pare_str) : pare_meta_type_size(kv->elem_type);
    for (uint64_t k = 0; a && k < kv->n; k++)
        cJSON_AddItemToArray(a, kv_elem_json(kv->elem_type, (const uint8_t *)kv->arr + k * sz));
    char *t = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return t;
}

/* The model's GGUF metadata as string KVs for __metadata__ (with "format": "pt", which
 * transformers wants). */
static pare_status st_meta_of(const pare_model *m, pare_meta *out, pare_err *err) {
    TRY(pare_meta_set_str(out, "format", "pt", 2, err));
    for (size_t i = 0; i < m->meta.n; i++) {
        const pare_kv *kv = &m->meta.kv[i];
        if (strcmp(kv->key, "format") == 0) continue;
        char *t = kv_text(kv);
        FAIL_IF(!t, PARE_ENOMEM, "out of memory");
        pare_status st = pare_meta_set_str(out, kv->key, t, strlen(t), err);
        free(t);
        TRY(st);
    }
    return PARE_OK;
}

/* A GGUF of a family without HF names (a vision projector, an embedding model, an
 * architecture pare does not know) is still a container of tensors: to safetensors it keeps
 * its GGUF names, its metadata goes to __metadata__. */
pare_status pare_model_load_out(const char *in, pare_out_kind kind, const pare_convert_opts *o, pare_model **out,
                                pare_meta *st_meta, pare_err *err) {
    if (kind != PARE_OUT_SAFETENSORS) return pare_model_load_for(in, kind, o, out, err);
    const pare_load_opts lo = pare_load_opts_of(o);
    TRY(pare_model_load_with(in, &lo, out, err));
    pare_model *m = *out;
    pare_status st = PARE_OK;
    if (m->gguf_names && !hf_mapped(m->arch)) st = st_meta_of(m, st_meta, err);
    else if (m->gguf_names) st = pare_gguf_to_hf(m, err);
    if (st) {
        pare_model_free(m);
        *out = NULL;
    }
    return st;
}
