/* pipeline/convert_job.c - pare convert: any model format to GGUF, safetensors or an HF folder,
 * with the type choices llama.cpp's convert_hf_to_gguf.py makes. */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "formats/hf.h"

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

pare_status pare_convert(const char *in, const char *out, const pare_convert_opts *o, pare_err *err) {
    pare_out_kind kind = pare_out_kind_for(out);
    FAIL_IF(o->type != PARE_TYPE_INVALID && o->type != PARE_TYPE_F32 && o->type != PARE_TYPE_F16 &&
                o->type != PARE_TYPE_BF16 && o->type != PARE_TYPE_Q8_0,
            PARE_EUSAGE, "convert writes f32, f16, bf16 or q8_0 (use 'pare quantize' for %s)",
            pare_type_name(o->type));
    FAIL_IF(kind != PARE_OUT_GGUF && o->type == PARE_TYPE_Q8_0, PARE_EUSAGE,
            "%s: safetensors cannot hold q8_0; write a .gguf", out);
    pare_model *m = NULL;
    pare_status st;
    st = pare_model_load_for(in, kind, &m, err);
    pare_type *types = NULL;
    if (!st && !(types = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *types)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < m->n_tensors; i++) types[i] = pare_pick_type(m, &m->tensors[i], kind, o->type);
    pare_meta meta = {0};
    if (!st && kind == PARE_OUT_GGUF) st = pare_gguf_meta_for(m, types, m->format == PARE_FORMAT_GGUF && o->type == PARE_TYPE_INVALID, &meta, err);
    const char *inputs[1] = {in};
    pare_write_extra x = {.meta_override = kind == PARE_OUT_GGUF ? &meta : NULL};
    if (!st) st = pare_write_model(m, out, types, &x, o, inputs, 1, err);
    pare_meta_free(&meta);
    free(types);
    pare_model_free(m);
    return st;
}
