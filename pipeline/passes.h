/*
 * pipeline/passes.h - the parts a job (pipeline/job.c) is assembled from; internal to the
 * pipeline. A job reads one model, sets up its passes on it, chooses the output types and
 * metadata, and streams every tensor through the passes into the output.
 */
#ifndef PARE_PIPELINE_PASSES_H
#define PARE_PIPELINE_PASSES_H

#include "pipeline/pipeline.h"

/* One kind of value pass (a row of job.c's pass list): whether a job asks for it, its setup
 * on the model read (with the tensors already in their written order: the pass may index
 * per-tensor state by position), what it hands back after a successful write (reports,
 * statistics), and its release. */
typedef struct {
    const char *name;
    bool (*asked)(const pare_job *j);
    pare_status (*open)(const pare_job *j, const pare_model *m, pare_out_kind kind, void **state, pare_pass *pass,
                        pare_err *err);
    void (*done)(const pare_job *j, void *state);
    void (*close)(void *state);
} pare_pass_kind;

extern const pare_pass_kind pare_pass_merge_lora; /* pipeline/merge_lora_job.c */
extern const pare_pass_kind pare_pass_prune;      /* pipeline/prune_job.c */

/* Loads `in` for an output of this kind (pipeline/convert_job.c): as pare_model_load_for,
 * except that a GGUF of a family without Hugging Face names keeps its GGUF names in a
 * safetensors output, with its metadata as string KVs in st_meta. */
pare_status pare_model_load_out(const char *in, pare_out_kind kind, const pare_convert_opts *o, pare_model **out,
                                pare_meta *st_meta, pare_err *err);

/* Structured pruning (pipeline/prune_struct_job.c): the pruned view of m (read from `in`,
 * GGUF names), its plan and scores to job->structured.report; *view NULL on a dry run. */
pare_status pare_struct_view_open(const char *in, const pare_model *m, const pare_prune_job *job, pare_out_kind kind,
                                  const char *out, int n_threads, pare_model **view, pare_err *err);
/* The type a column cut of a tensor of block type src is stored in (ne0: its new row length). */
pare_type pare_struct_cut_type(pare_type src, int64_t ne0);

/* The per-tensor plan of a quantization and its size summary (pipeline/quantize_job.c);
 * rel: the measured relative errors, or NULL. */
void pare_quant_print_plan(FILE *r, const pare_model *m, const pare_type *types, const double *rel);

#endif
