/*
 * pipeline/job.c - the one way a model is written: read the input, set up the passes over its
 * tensors, choose the output types and metadata, stream every tensor through the passes into
 * the output (pipeline/write.c). The commands that write a model are configurations of it:
 *
 *   convert     in -> out, the converter's types (o->type)
 *   merge-lora  in -> merge -> out, the input's types
 *   prune       in -> prune -> out (structured: in -> pruned view -> out), o->type or a quantization
 *   quantize    in -> out, llama-quantize's plan
 *   shrink      merge job, then prune + quantize job, then the gate (pipeline/shrink_job.c)
 */
#include "pipeline/passes.h"

#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

/* The value passes, in the order they run on a tensor: a merge is pruned, not the reverse.
 * Quantization is not among them: it is the output's types (and the importance they are
 * quantized with), set up before them because it puts the tensors in llama-quantize's order,
 * which the passes index their state by. */
static const pare_pass_kind *const pass_list[] = {&pare_pass_merge_lora, &pare_pass_prune};
#define N_PASS_KINDS (sizeof pass_list / sizeof pass_list[0])

/* What is streamed: the model read, or a structured view of it. */
typedef struct {
    pare_model *m;
    const pare_meta *st_meta; /* safetensors __metadata__ of a foreign GGUF, or NULL */
    bool view;                /* a structured view: cut tensors get their cut type, the file type is kept */
    bool keep_types;          /* every tensor keeps its type (a view on its way to a Hugging Face output) */
} job_src;

static pare_status choose_types(const job_src *s, const char *out, const pare_convert_opts *o,
                                pare_type **types, pare_err *err) {
    const pare_model *m = s->m;
    pare_out_kind kind = pare_out_kind_for(out);
    pare_type *t = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *t);
    FAIL_IF(!t, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *ti = &m->tensors[i];
        t[i] = s->keep_types ? ti->type : pare_pick_type(m, ti, kind, o->type);
        const pare_type src = s->view ? pare_struct_view_source_type(ti) : PARE_TYPE_INVALID;
        if (!s->keep_types && o->type == PARE_TYPE_INVALID && src != PARE_TYPE_INVALID)
            t[i] = pare_struct_cut_type(src, ti->ne[0]);
    }
    *types = t;
    return PARE_OK;
}

/* The files the output must not replace: the input, the adapters, the imatrix. */
static pare_status job_inputs(const pare_job *j, const char ***inputs, size_t *n, pare_err *err) {
    const char **v = calloc(j->n_adapters + 2, sizeof *v);
    FAIL_IF(!v, PARE_ENOMEM, "out of memory");
    size_t k = 0;
    v[k++] = j->in;
    for (size_t i = 0; i < j->n_adapters; i++) v[k++] = j->adapters[i].path;
    if (j->quantize && j->quantize->imatrix_path) v[k++] = j->quantize->imatrix_path;
    *inputs = v;
    *n = k;
    return PARE_OK;
}

/* s->m through the job's passes into out. */
static pare_status stream(const pare_job *j, const job_src *s, const char *out, const pare_convert_opts *o,
                          pare_err *err) {
    pare_model *m = s->m;
    const pare_out_kind kind = pare_out_kind_for(out);
    pare_quant_setup qs = {0};
    pare_status st = j->quantize ? pare_quant_setup_for(m, j->quantize, &qs, err) : PARE_OK;
    if (!st && qs.requant && j->report)
        fprintf(j->report, "warning: %zu tensors are already quantized and are requantized (quality drops twice)\n",
                qs.requant);
    void *state[N_PASS_KINDS] = {0};
    pare_pass passes[N_PASS_KINDS];
    size_t n_passes = 0;
    for (size_t k = 0; !st && k < N_PASS_KINDS; k++)
        if (pass_list[k]->asked(j)) st = pass_list[k]->open(j, m, kind, &state[k], &passes[n_passes++], err);
    pare_type *types = qs.types;
    if (!st && !types) st = choose_types(s, out, o, &types, err);
    /* GGUF metadata: the quantization's, or the model's with the file type of these types
     * (a GGUF input's own when no type is asked; a view's too, its types are the input's) */
    pare_meta meta = {0};
    const bool keep_ft = o->type == PARE_TYPE_INVALID && (s->view || m->format == PARE_FORMAT_GGUF);
    if (!st && kind == PARE_OUT_GGUF && !j->quantize) st = pare_gguf_meta_for(m, types, keep_ft, &meta, err);
    const bool dry_run = j->quantize && j->quantize->dry_run;
    double *rel = NULL;
    if (!st && !dry_run && j->quantize && j->quantize->stats && !(rel = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *rel)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    const char **inputs = NULL;
    size_t n_inputs = 0;
    if (!st) st = job_inputs(j, &inputs, &n_inputs, err);
    pare_write_extra x = {.passes = passes, .n_passes = n_passes,
                          .imatrix = qs.im ? pare_quant_setup_imatrix : NULL, .imatrix_ctx = &qs,
                          .meta_override = j->quantize ? &qs.meta : kind == PARE_OUT_GGUF ? &meta : NULL,
                          .st_meta = s->st_meta, .rel_error = rel};
    if (!st && !dry_run) st = pare_write_model(m, out, types, &x, o, inputs, n_inputs, err);
    for (size_t k = 0; !st && k < N_PASS_KINDS; k++)
        if (state[k]) pass_list[k]->done(j, state[k]);
    if (!st && j->quantize) pare_quant_print_plan(j->report, m, types, rel);
    for (size_t k = 0; k < N_PASS_KINDS; k++)
        if (state[k]) pass_list[k]->close(state[k]);
    free(inputs);
    free(rel);
    pare_meta_free(&meta);
    if (types != qs.types) free(types);
    pare_quant_setup_free(&qs);
    return st;
}

/* Structured pruning: the view of the model read, written as a GGUF, or through a GGUF in a
 * working folder and the converter (HF names, config.json) for a Hugging Face output. */
static pare_status stream_view(const pare_job *j, pare_model *m, pare_out_kind kind, pare_err *err) {
    pare_model *v = NULL;
    TRY(pare_struct_view_open(j->in, m, j->prune, kind, j->out, j->o->n_threads, &v, err));
    if (!v) return PARE_OK; /* a dry run */
    pare_status st = PARE_OK;
    job_src s = {.m = v, .view = true};
    if (kind == PARE_OUT_GGUF) {
        st = stream(j, &s, j->out, j->o, err);
    } else {
        pare_tmpdir *td = NULL;
        st = pare_tmpdir_new(j->out, "struct", &td, err);
        char *tmp = st ? NULL : pare_path_join(pare_tmpdir_path(td), "pruned.gguf");
        if (!st && !tmp) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        pare_convert_opts co = *j->o;
        co.force = true;
        co.type = PARE_TYPE_INVALID;
        s.keep_types = true;
        if (!st) st = stream(j, &s, tmp, &co, err);
        if (!st) st = pare_convert(tmp, j->out, j->o, err);
        free(tmp);
        pare_tmpdir_free(td);
    }
    pare_model_free(v);
    return st;
}

pare_status pare_job_run(const pare_job *j, pare_err *err) {
    if (j->prune_stats) *j->prune_stats = NULL;
    if (j->n_prune_stats) *j->n_prune_stats = 0;
    const pare_out_kind kind = pare_out_kind_for(j->out);
    const bool structured = j->prune && pare_struct_requested(&j->prune->structured);
    FAIL_IF(j->quantize && kind != PARE_OUT_GGUF, PARE_EUSAGE, "%s: quantized models are written as .gguf", j->out);
    FAIL_IF(structured && (j->prune->sparsity > 0 || j->prune->m), PARE_EUSAGE,
            "structured pruning does not combine with --sparsity / --pattern");
    /* the prune pass measures the model read: it cannot follow a merge in the same stream */
    FAIL_IF(j->prune && j->n_adapters, PARE_EUSAGE, "merge the adapters first, then prune the merged model");
    pare_model *m = NULL;
    pare_meta st_meta = {0};
    /* the passes work on what is written: GGUF names and permuted q/k for GGUF, HF names and
     * layout otherwise; structured pruning works on GGUF names */
    TRY(pare_model_load_out(j->in, structured ? PARE_OUT_GGUF : kind, j->o, &m, &st_meta, err));
    pare_status st;
    if (structured) {
        st = stream_view(j, m, kind, err);
    } else {
        job_src s = {.m = m, .st_meta = st_meta.n ? &st_meta : NULL};
        st = stream(j, &s, j->out, j->o, err);
    }
    pare_meta_free(&st_meta);
    pare_model_free(m);
    return st;
}

/* ---- the commands' configurations --------------------------------------------------------- */

pare_status pare_convert(const char *in, const char *out, const pare_convert_opts *o, pare_err *err) {
    pare_out_kind kind = pare_out_kind_for(out);
    FAIL_IF(o->type != PARE_TYPE_INVALID && o->type != PARE_TYPE_F32 && o->type != PARE_TYPE_F16 &&
                o->type != PARE_TYPE_BF16 && o->type != PARE_TYPE_Q8_0,
            PARE_EUSAGE, "convert writes f32, f16, bf16 or q8_0 (use 'pare quantize' for %s)",
            pare_type_name(o->type));
    FAIL_IF(kind != PARE_OUT_GGUF && o->type == PARE_TYPE_Q8_0, PARE_EUSAGE,
            "%s: safetensors cannot hold q8_0; write a .gguf", out);
    return pare_job_run(&(pare_job){.in = in, .out = out, .o = o}, err);
}

pare_status pare_merge_lora(const char *base, const pare_adapter_spec *ad, size_t n_ad, const char *out,
                            const pare_convert_opts *o, FILE *report, pare_err *err) {
    FAIL_IF(n_ad == 0, PARE_EUSAGE, "no adapter given");
    return pare_job_run(&(pare_job){.in = base, .out = out, .o = o, .adapters = ad, .n_adapters = n_ad,
                                    .report = report}, err);
}

pare_status pare_prune_model(const char *in, const char *out, const pare_prune_job *job, const pare_convert_opts *o,
                             pare_prune_stat **stats, size_t *n_stats, pare_err *err) {
    return pare_job_run(&(pare_job){.in = in, .out = out, .o = o, .prune = job, .quantize = job->quantize,
                                    .prune_stats = stats, .n_prune_stats = n_stats}, err);
}

pare_status pare_quantize_model(const char *in, const char *out, const pare_quantize_job *job,
                                const pare_convert_opts *o, FILE *report, pare_err *err) {
    return pare_job_run(&(pare_job){.in = in, .out = out, .o = o, .quantize = job, .report = report}, err);
}
