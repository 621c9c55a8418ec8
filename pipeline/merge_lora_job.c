/* pipeline/merge_lora_job.c - the merge-lora pass: base + adapters, one tensor at a time. */
#include "pipeline/passes.h"

#include "lora/lora.h"

#include <stdlib.h>

typedef struct {
    pare_lora_adapter **ad;
    size_t n_ad;
    pare_lora_merger *mg;
} merge_state;

static bool merge_asked(const pare_job *j) { return j->n_adapters > 0; }

static void merge_close(void *state) {
    merge_state *s = state;
    if (!s) return;
    pare_lora_merger_free(s->mg);
    for (size_t i = 0; s->ad && i < s->n_ad; i++) pare_lora_free(s->ad[i]);
    free(s->ad);
    free(s);
}

/* The adapters are brought to the layout that is written: GGUF names and permuted q/k for
 * GGUF output, HF names and layout otherwise (the model is read in the same layout). */
static pare_status merge_open(const pare_job *j, const pare_model *m, pare_out_kind kind, void **state,
                              pare_pass *pass, pare_err *err) {
    merge_state *s = calloc(1, sizeof *s);
    FAIL_IF(!s, PARE_ENOMEM, "out of memory");
    s->n_ad = j->n_adapters;
    pare_status st = (s->ad = calloc(s->n_ad, sizeof *s->ad)) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < s->n_ad; i++) {
        st = pare_lora_load(j->adapters[i].path, m->arch, &m->meta, j->adapters[i].scale, &s->ad[i], err);
        if (!st && kind != PARE_OUT_GGUF) st = pare_lora_to_hf_view(s->ad[i], m->arch, &m->meta, err);
    }
    if (!st) st = pare_lora_check((const pare_lora_adapter *const *)s->ad, s->n_ad, m, err);
    if (!st) st = pare_lora_merger_new(s->ad, s->n_ad, &s->mg, err);
    if (st) {
        merge_close(s);
        return st;
    }
    *pass = (pare_pass){.name = "merge-lora", .wants = pare_lora_merger_wants, .apply = pare_lora_merger_apply,
                        .ctx = s->mg, .apply_rows = pare_lora_merger_apply_rows};
    *state = s;
    return PARE_OK;
}

/* One line per merged tensor with its relative change. */
static void merge_done(const pare_job *j, void *state) {
    const merge_state *s = state;
    for (size_t i = 0; j->report && i < pare_lora_merger_n_done(s->mg); i++) {
        const char *name;
        double rel;
        pare_lora_merger_done(s->mg, i, &name, &rel);
        fprintf(j->report, "merged %-40s relative change %.3e\n", name, rel);
    }
}

const pare_pass_kind pare_pass_merge_lora = {"merge-lora", merge_asked, merge_open, merge_done, merge_close};
