/* pipeline/merge_lora_job.c - pare merge-lora: base + adapters -> merged model, one tensor at a time. */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "formats/hf.h"
#include "lora/lora.h"

#include <stdlib.h>
#include <string.h>

pare_status pare_merge_lora(const char *base, const pare_adapter_spec *spec, size_t n_ad, const char *out,
                            const pare_convert_opts *o, FILE *report, pare_err *err) {
    FAIL_IF(n_ad == 0, PARE_EUSAGE, "no adapter given");
    pare_out_kind kind = pare_out_kind_for(out);
    pare_model *m = NULL;
    pare_status st;
    /* Merge in the layout that is written: GGUF names and permuted q/k for GGUF output, HF
     * names and layout otherwise; the adapters are brought to the same layout. */
    st = pare_model_load_for(base, kind, o, &m, err);
    if (st) return st;
    pare_lora_adapter **ad = calloc(n_ad, sizeof *ad);
    if (!ad) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < n_ad; i++) {
        st = pare_lora_load(spec[i].path, m->arch, &m->meta, spec[i].scale, &ad[i], err);
        if (!st && kind != PARE_OUT_GGUF) st = pare_lora_to_hf_view(ad[i], m->arch, &m->meta, err);
    }
    if (!st) st = pare_lora_check((const pare_lora_adapter *const *)ad, n_ad, m, err);
    pare_lora_merger *mg = NULL;
    if (!st) st = pare_lora_merger_new(ad, n_ad, &mg, err);
    pare_type *types = NULL;
    if (!st && !(types = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *types)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        /* A GGUF base keeps every tensor's type (quantized ones are requantized to it). */
        types[i] = (m->format == PARE_FORMAT_GGUF && kind == PARE_OUT_GGUF && o->type == PARE_TYPE_INVALID)
                       ? t->type
                       : pare_pick_type(m, t, kind, o->type);
    }
    pare_meta meta = {0};
    if (!st && kind == PARE_OUT_GGUF)
        st = pare_gguf_meta_for(m, types, m->format == PARE_FORMAT_GGUF && o->type == PARE_TYPE_INVALID, &meta, err);
    pare_pass pass = {.name = "merge-lora", .wants = pare_lora_merger_wants, .apply = pare_lora_merger_apply, .ctx = mg,
                      .apply_rows = pare_lora_merger_apply_rows};
    pare_write_extra x = {.passes = &pass, .n_passes = 1, .meta_override = kind == PARE_OUT_GGUF ? &meta : NULL};
    const char **inputs = calloc(n_ad + 1, sizeof *inputs);
    if (!st && !inputs) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) {
        inputs[0] = base;
        for (size_t i = 0; i < n_ad; i++) inputs[i + 1] = spec[i].path;
        st = pare_write_model(m, out, types, &x, o, inputs, n_ad + 1, err);
    }
    if (!st && report) {
        for (size_t i = 0; i < pare_lora_merger_n_done(mg); i++) {
            const char *name;
            double rel;
            pare_lora_merger_done(mg, i, &name, &rel);
            fprintf(report, "merged %-40s relative change %.3e\n", name, rel);
        }
    }
    free(inputs);
    pare_meta_free(&meta);
    free(types);
    pare_lora_merger_free(mg);
    for (size_t i = 0; ad && i < n_ad; i++) pare_lora_free(ad[i]);
    free(ad);
    pare_model_free(m);
    return st;
}
