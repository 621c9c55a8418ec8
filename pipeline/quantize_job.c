/* pipeline/quantize_job.c - a job's quantization: llama-quantize's plan, the imatrix, the metadata. */
#include "pipeline/passes.h"

#include "formats/formats.h"
#include "quant/plan.h"
#include "quant/quant.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const float *pare_quant_setup_imatrix(void *ctx, const pare_tensor *t) {
    pare_quant_setup *s = ctx;
    const float *v = NULL;
    if (s->im) pare_imatrix_for_tensor(s->im, t, &v, &s->err);
    return v;
}

/* Reorders m's tensors as llama-quantize writes them (its layer counters follow it). */
static pare_status reorder(pare_model *m, pare_err *err) {
    size_t n = m->n_tensors;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    pare_tensor *t = malloc((n ? n : 1) * sizeof *t);
    if (!order || !t) {
        free(order);
        free(t);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    pare_quant_plan_order(m, order);
    for (size_t i = 0; i < n; i++) t[i] = m->tensors[order[i]];
    memcpy(m->tensors, t, n * sizeof *t);
    free(order);
    free(t);
    return PARE_OK;
}

void pare_quant_print_plan(FILE *r, const pare_model *m, const pare_type *types, const double *rel) {
    uint64_t before = 0, after = 0, n_params = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        uint64_t nb = 0;
        pare_tensor_nbytes(types[i], t->n_dims, t->ne, &nb, NULL);
        before += t->n_bytes;
        after += nb;
        n_params += (uint64_t)pare_tensor_nelements(t);
        if (!r) continue;
        char shape[96];
        fprintf(r, "%-34s %-22s %-7s -> %-7s %10.3f MiB", t->name, pare_tensor_shape_str(t, shape, sizeof shape),
                pare_type_name(t->type), pare_type_name(types[i]), (double)nb / 1048576.0);
        if (rel && rel[i] >= 0) fprintf(r, "  rel. RMS error %.5f", rel[i]);
        fprintf(r, "\n");
    }
    if (r)
        fprintf(r, "size: %.2f MiB -> %.2f MiB, %.3f bits per weight\n", (double)before / 1048576.0,
                (double)after / 1048576.0, n_params ? 8.0 * (double)after / (double)n_params : 0.0);
}

pare_status pare_quant_setup_for(pare_model *m, const pare_quantize_job *job, pare_quant_setup *s, pare_err *err) {
    memset(s, 0, sizeof *s);
    pare_status st = job->imatrix_path ? pare_imatrix_load(job->imatrix_path, &s->im, err) : PARE_OK;
    if (!st) st = reorder(m, err);
    if (!st) pare_quant_plan_dims(m);
    if (!st && !(s->types = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *s->types)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    pare_quant_plan_opts po = {.ftype = job->ftype, .pure = job->pure, .output_type = job->output_type,
                               .token_embd_type = job->token_embd_type, .leave_output = job->leave_output,
                               .override_globs = job->override_globs, .override_types = job->override_types,
                               .n_overrides = job->n_overrides, .imatrix = s->im};
    if (!st) st = pare_quant_plan(m, &po, s->types, err);
    /* Every imatrix entry must fit its tensor before anything is written. */
    for (size_t i = 0; !st && s->im && i < m->n_tensors; i++) {
        const float *v;
        st = pare_imatrix_for_tensor(s->im, &m->tensors[i], &v, err);
    }
    for (size_t i = 0; !st && i < m->n_tensors; i++)
        s->requant += pare_type_get(m->tensors[i].type)->is_quantized && s->types[i] != m->tensors[i].type;
    if (!st) st = pare_meta_copy(&s->meta, &m->meta, err);
    if (!st) st = pare_quant_plan_set_meta(&s->meta, job->ftype, s->im, err);
    if (st) pare_quant_setup_free(s);
    return st;
}

void pare_quant_setup_free(pare_quant_setup *s) {
    free(s->types);
    pare_imatrix_free(s->im);
    pare_meta_free(&s->meta);
    memset(s, 0, sizeof *s);
}
