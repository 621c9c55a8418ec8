/*
 * pipeline/pipeline.h - whole-model jobs built from the modules: read -> (merge LoRA) ->
 * (prune) -> (quantize) -> (evaluate) -> write. Every job streams one tensor at a time and
 * writes through an atomic output file, so a failure leaves nothing behind.
 */
#ifndef PARE_PIPELINE_H
#define PARE_PIPELINE_H

#include "core/core.h"
#include "prune/prune.h"
#include "formats/formats.h"
#include "prune/structured.h"
#include "quant/plan.h"
#include "verify/llm.h"

#include <stdio.h>

typedef enum {
    PARE_OUT_GGUF,
    PARE_OUT_SAFETENSORS, /* one .safetensors file */
    PARE_OUT_FOLDER,      /* an HF folder: config.json, tokenizer files, model.safetensors */
} pare_out_kind;

/* What kind of output a path names: *.gguf, *.safetensors, anything else is a folder. */
pare_out_kind pare_out_kind_for(const char *path);

/* Loads `in` in the layout an output of this kind is written in: GGUF names and permuted
 * q/k for GGUF, HF names and layout otherwise (passes then work on what is written). */
typedef struct pare_convert_opts pare_convert_opts;
pare_status pare_model_load_for(const char *in, pare_out_kind kind, const pare_convert_opts *o, pare_model **out,
                                pare_err *err);

/* The reader's choices that come from a job's options (o may be NULL). */
pare_load_opts pare_load_opts_of(const pare_convert_opts *o);

struct pare_convert_opts {
    /* Target type of the weights that llama.cpp's converter would convert (2-D ".weight"
     * tensors other than position embeddings): F32, F16, BF16 or Q8_0. PARE_TYPE_INVALID
     * keeps each tensor's type where the output format can hold it (f64/f8 become F32;
     * block types become F32 in safetensors). 1-D tensors and norms are always F32 in GGUF. */
    pare_type type;
    int n_threads;
    bool force;
    pare_progress_fn progress;
    void *progress_user;
    FILE *log; /* per-tensor lines ("name type -> type shape"); NULL for none */
    const char *tokenizer_pre; /* an HF BPE tokenizer's llama.cpp pre-tokenizer, forced (NULL: named) */
};

/* A pass rewrites the f32 values of the tensors it wants (LoRA merge, pruning, ...). The
 * pipeline dequantizes such a tensor, runs every pass that wants it in order, and converts
 * the result to the output type. */
typedef struct pare_pass {
    const char *name;
    bool (*wants)(void *ctx, const pare_tensor *t);
    /* values: pare_tensor_nelements(t) floats, rows of t->ne[0], modified in place. */
    pare_status (*apply)(void *ctx, const pare_tensor *t, float *values, int n_threads, pare_err *err);
    void *ctx;
    /* Optional, for passes whose result for a row depends on that row alone (row-scope and
     * N:M pruning): the same work on rows [row0, row0 + n_rows) of t, whose values are given.
     * With it the pipeline streams the tensor in pieces and runs the pass inside its
     * conversion jobs, on several threads at once (different rows), instead of holding the
     * whole tensor in f32. */
    pare_status (*apply_rows)(void *ctx, const pare_tensor *t, float *values, int64_t row0, int64_t n_rows,
                              pare_err *err);
} pare_pass;

/* Importance weights for quantizing one tensor (ne0 floats), or NULL. */
typedef const float *(*pare_imatrix_fn)(void *ctx, const pare_tensor *t);

typedef struct {
    const pare_pass *passes;
    size_t n_passes;
    pare_imatrix_fn imatrix;
    void *imatrix_ctx;
    const pare_meta *meta_override; /* GGUF: metadata to write instead of the model's; NULL = model's */
    const pare_meta *st_meta;       /* safetensors: the __metadata__ (string KVs); NULL = {"format": "pt"} */
    double *rel_error; /* when non-NULL: per tensor, ||dequant(out) - in|| / ||in|| for
                          tensors whose type changed (-1 for the others) */
} pare_write_extra;

/* Writes model m to `out` (kind from its name) with tensor i stored as types[i], running the
 * passes. GGUF output gets the model's metadata (or meta_override); safetensors output needs
 * HF names (call pare_gguf_to_hf first). `inputs` are files that must not be overwritten. */
pare_status pare_write_model(const pare_model *m, const char *out, const pare_type *types,
                             const pare_write_extra *extra, const pare_convert_opts *o,
                             const char *const *inputs, size_t n_inputs, pare_err *err);

/* Converts the model at `in` (any format pare reads) to `out`. */
pare_status pare_convert(const char *in, const char *out, const pare_convert_opts *o, pare_err *err);

/* The output type convert gives tensor t of m for an output of this kind (see
 * pare_convert_opts.type; `want` may also be a block type for jobs that quantize). */
pare_type pare_pick_type(const pare_model *m, const pare_tensor *t, pare_out_kind kind, pare_type want);

/* GGUF metadata for writing m with these tensor types: m's metadata with general.file_type
 * set (kept when keep_file_type and present) and general.quantization_version. */
pare_status pare_gguf_meta_for(const pare_model *m, const pare_type *types, bool keep_file_type, pare_meta *meta,
                               pare_err *err);

/* One adapter to merge and the factor its own scale is multiplied by. */
typedef struct {
    const char *path;
    double scale;
} pare_adapter_spec;

/* pare merge-lora: merges the adapters into base and writes out. Tensors keep the base's
 * types (quantized ones are requantized to their type) unless o->type names one. Writes one
 * line per merged tensor with its relative change to `report` (may be NULL). */
pare_status pare_merge_lora(const char *base, const pare_adapter_spec *ad, size_t n_ad, const char *out,
                            const pare_convert_opts *o, FILE *report, pare_err *err);

typedef struct {
    pare_ftype ftype;          /* a single type or a mix (quant/plan.h) */
    bool pure;
    pare_type output_type, token_embd_type; /* PARE_TYPE_INVALID: the mix's choice */
    bool leave_output;
    const char *const *override_globs;
    const pare_type *override_types;
    size_t n_overrides;
    const char *imatrix_path;  /* llama.cpp's imatrix .dat, or NULL */
    bool dry_run;              /* print the plan only */
    bool stats;                /* measure each tensor's relative RMS error */
} pare_quantize_job;

typedef enum { PARE_PRUNE_MAGNITUDE, PARE_PRUNE_WANDA } pare_prune_method;

typedef struct {
    pare_prune_method method;
    double sparsity;          /* 0..1, unstructured */
    pare_prune_scope scope;
    int n, m;                 /* N:M pattern (m == 0: none) */
    const char *const *include; /* globs of extra tensors to prune (matched on the output's names) */
    size_t n_include;
    const char *const *exclude; /* globs of tensors to leave alone */
    size_t n_exclude;
    const char *calib_path;   /* wanda: calibration text */
    int64_t calib_tokens;     /* wanda: tokens of it to use (0: 4096) */
    int calib_ctx;            /* wanda: context per forward pass (0: PARE_PPL_DEFAULT_CTX) */
    const pare_quantize_job *quantize; /* or NULL: quantize as pare quantize does, in the same
                                          pass (the output is then a .gguf; o->type unused) */
    pare_struct_opts structured; /* layers, FFN channels, heads, experts (pipeline/prune_struct_job.c) */
} pare_prune_job;

/* One line of the pruning report. */
typedef struct {
    char name[128];
    int64_t n, zeros;
    int64_t row_min, row_max; /* zeros per row */
} pare_prune_stat;

/* pare prune: prunes the selected weights of `in` and writes `out` (types as convert, or
 * o->type, which may be a block type: pruning then quantizing in one run). stats (may be
 * NULL) receives one malloc'ed entry per pruned tensor. */
pare_status pare_prune_model(const char *in, const char *out, const pare_prune_job *job, const pare_convert_opts *o,
                             pare_prune_stat **stats, size_t *n_stats, pare_err *err);


/* llama-quantize's plan for m, which it reorders to llama-quantize's tensor order: the types,
 * the imatrix (loaded and checked against every tensor), the GGUF metadata to write, and how
 * many tensors are already quantized and get requantized. For the jobs that quantize as
 * they write; pare_quant_setup_imatrix is the pare_imatrix_fn for it (ctx: the setup). */
typedef struct {
    pare_type *types;
    struct pare_imatrix *im;
    pare_meta meta;
    size_t requant;
    pare_err err; /* the first bad imatrix entry met while writing */
} pare_quant_setup;
pare_status pare_quant_setup_for(pare_model *m, const pare_quantize_job *job, pare_quant_setup *s, pare_err *err);
void pare_quant_setup_free(pare_quant_setup *s);
const float *pare_quant_setup_imatrix(void *ctx, const pare_tensor *t);

/* A job (pipeline/job.c): one input, passes over its tensors in order (merge LoRA, prune),
 * the output types (convert's choice of o->type, or llama-quantize's plan), one output,
 * streamed one tensor at a time. convert, merge-lora, prune, quantize and the stages of
 * shrink are configurations of it. Structured pruning replaces the model read by its pruned
 * view (pipeline/prune_struct_job.c) before the passes. */
typedef struct {
    const char *in, *out;
    const pare_convert_opts *o;
    const pare_adapter_spec *adapters; /* merge-lora pass (none: no merge) */
    size_t n_adapters;
    const pare_prune_job *prune;       /* prune pass, or structured pruning (NULL: none); its
                                          .quantize is not read: see quantize */
    const pare_quantize_job *quantize; /* the output's types from llama-quantize's plan (the
                                          output is a .gguf); NULL: convert's choice */
    FILE *report;                      /* merged tensors, the quantization plan (NULL: none) */
    pare_prune_stat **prune_stats;     /* when non-NULL: one malloc'ed entry per pruned tensor */
    size_t *n_prune_stats;
} pare_job;
pare_status pare_job_run(const pare_job *j, pare_err *err);

/* pare quantize: llama-quantize's per-tensor plan, then quantize and write a GGUF. Writes
 * the per-tensor plan / results and a summary to `report`. */
pare_status pare_quantize_model(const char *in, const char *out, const pare_quantize_job *job,
                                const pare_convert_opts *o, FILE *report, pare_err *err);

/* A model evaluated on a text (pipeline/evaltext.c): the model (a GGUF, or anything pare
 * reads, with GGUF names), its evaluator and the text's tokens by the model's tokenizer (BOS
 * first). text_path NULL: no tokens. Close releases all (also after a failed open). */
typedef struct {
    pare_model *m;
    pare_llm *llm;
    int32_t *ids;
    size_t n_ids;
    bool borrowed; /* m is the caller's (pare_model_text_open_model) */
} pare_model_text;
pare_status pare_model_text_open(const char *model, const char *text_path, int n_threads, pare_model_text *mt,
                                 pare_err *err);
/* The same with a model the caller keeps (it must outlive mt). */
pare_status pare_model_text_open_model(const pare_model *m, const char *text_path, int n_threads,
                                       pare_model_text *mt, pare_err *err);
void pare_model_text_close(pare_model_text *mt);
/* The tokens of a text file (up to PARE_TEXT_MAX_BYTES) by model m's tokenizer, BOS first. */
pare_status pare_text_tokens(const pare_model *m, const char *text_path, int32_t **ids, size_t *n_ids, pare_err *err);

/* Input activation statistics of every linear layer over calibration text: for weight
 * `names[i]` (GGUF name), sumsq[i][j] = sum over tokens of x_j^2, from n_tokens tokens in
 * n_calls forward passes (chunks). Feeds Wanda (||X_j|| = sqrt(sumsq)) and imatrix files. */
typedef struct {
    char **names;
    double **sumsq;
    int64_t *n_in;
    size_t n;
    int64_t n_tokens;
    int n_calls;
} pare_act_stats;

/* Runs the evaluator over the text in chunks of ctx tokens (first token BOS, as
 * llama-imatrix), up to max_tokens (0: all), collecting the statistics. */
pare_status pare_act_stats_collect(const char *model, const char *text_path, int ctx, int64_t max_tokens,
                                   int n_threads, pare_act_stats *out, pare_err *err);
/* The same on a loaded model (the caller's). */
pare_status pare_act_stats_collect_model(const pare_model *m, const char *text_path, int ctx, int64_t max_tokens,
                                         int n_threads, pare_act_stats *out, pare_err *err);
void pare_act_stats_free(pare_act_stats *s);
const double *pare_act_stats_find(const pare_act_stats *s, const char *gguf_name, int64_t n_in);

/* pare imatrix: the statistics written as llama.cpp's imatrix .dat (usable by
 * pare quantize --imatrix and llama-quantize). */
pare_status pare_imatrix_make(const char *model, const char *text_path, const char *out, int ctx,
                              int64_t max_tokens, const pare_convert_opts *o, pare_err *err);

/* pare extract-lora: for every 2-D attention/MLP weight where tuned differs from base, the
 * rank-r truncated SVD of the difference, written as a PEFT folder out (adapter_config.json
 * with r = lora_alpha = rank, adapter_model.safetensors with HF names). One line per tensor
 * with the share of the difference's energy kept goes to report. */
pare_status pare_extract_lora(const char *base, const char *tuned, const char *out, int rank,
                              const pare_convert_opts *o, FILE *report, pare_err *err);

/* pare shrink: the whole job with a quality gate. */
typedef struct {
    const pare_adapter_spec *adapters; /* merged first (may be none) */
    size_t n_adapters;
    const pare_prune_job *prune;       /* then pruned (NULL: not) */
    int ftype;                         /* then quantized with this pare_ftype's plan (< 0: not) */
    const char *imatrix_path;          /* importance matrix for the quantization, or NULL */
    const char *text_path;             /* evaluation text for the gate */
    int ctx;                           /* tokens per chunk (0: PARE_PPL_DEFAULT_CTX) */
    int n_chunks;                      /* chunks of the text to evaluate (<= 0: all) */
    double max_ppl_increase;           /* bound on PPL(result) / PPL(reference) - 1 */
    double max_kld;                    /* bound on the mean KL divergence (< 0: none) */
    /* --type auto (ftype PARE_FTYPE_AUTO, pipeline/auto.c) */
    uint64_t target_bytes;             /* --target-size in bytes (0: none) ... */
    double target_bpw;                 /* ... or in bits per weight (0: none) */
    const char *calib_path;            /* calibration text: importance and sensitivities (or NULL) */
    int calib_ctx;                     /* tokens per pass over it (0: PARE_PPL_DEFAULT_CTX) */
    int64_t calib_tokens;              /* tokens of it to use (0: all) */
    /* the reference-result cache (pipeline/cache.c) */
    bool no_cache;
    const char *cache_dir;             /* NULL: $XDG_CACHE_HOME/pare, else ~/.cache/pare */
} pare_shrink_job;

/* --type auto: what the search did. */
#define PARE_FTYPE_AUTO 1000 /* the pare_shrink_job.ftype of --type auto */
typedef struct {
    int64_t step;          /* the path step probed */
    uint64_t tensor_bytes; /* bytes of the searched tensors at that step */
    double ppl, ppl_increase, kld; /* kld < 0: not measured */
    bool passed;
} pare_auto_probe;

typedef struct {
    int ftype;             /* general.file_type written (the most common type's mix) */
    char *rules;           /* the globs' storage */
    char **globs;          /* the plan as --tensor-type GLOB=TYPE rules */
    pare_type *types;
    size_t n_rules;
    size_t n_tensors;      /* tensors searched */
    int64_t n_steps, step; /* the path's length and the step written */
    double predicted_kld;
    uint64_t target_bytes; /* --target-size in bytes (0: none) */
    pare_auto_probe *probes;
    int n_probes;
} pare_auto_info;
void pare_auto_info_clear_rules(pare_auto_info *info);
void pare_auto_info_free(pare_auto_info *info);

/* The evaluator for a gate: the reference model and the tokenized text, loaded once
 * (pipeline/gate.c). */
typedef struct pare_evalx pare_evalx;
pare_status pare_evalx_open(const char *ref_path, const char *text_path, int ctx, int n_chunks,
                            const pare_convert_opts *o, pare_evalx **out, pare_err *err);
/* The same on a model already loaded (borrowed: it must outlive the evaluator), so that one
 * mapping of a large model serves the gate, the calibration and the search. */
pare_status pare_evalx_open_model(const pare_model *ref, const char *text_path, int ctx, int n_chunks,
                                  const pare_convert_opts *o, pare_evalx **out, pare_err *err);
const pare_model *pare_evalx_ref_model(const pare_evalx *e);
/* For many candidates: the reference's log-probabilities are computed at the first KLD
 * evaluation and kept (2 bytes x vocabulary per scored token), so that each candidate costs
 * one forward pass, not two. False (and not kept) when they would take over 512 MB. */
bool pare_evalx_keep_base(pare_evalx *e);
/* Computes the kept log-probabilities now (no-op unless keeping and not yet computed): before
 * candidates are built in memory, so that the reference's pass does not add to them. */
pare_status pare_evalx_keep_now(pare_evalx *e, pare_err *err);
void pare_evalx_free(pare_evalx *e);
int pare_evalx_chunks(const pare_evalx *e);
int pare_evalx_ctx(const pare_evalx *e);
/* The reference's own perplexity. */
pare_status pare_evalx_ref(pare_evalx *e, pare_ppl_result *res, pare_err *err);
/* A candidate (in memory, or a file) against the reference; kld: also the KL divergence. */
pare_status pare_evalx_model(pare_evalx *e, const pare_model *cm, bool kld, pare_ppl_result *res, pare_err *err);
pare_status pare_evalx_file(pare_evalx *e, const char *cand, bool kld, pare_ppl_result *res, pare_err *err);

/* --type auto: searches the per-tensor types of src (GGUF names) and writes the plan chosen
 * to out (see pipeline/auto.c); gate evaluates the probes, against ref_ppl (the reference's
 * perplexity on the gate text) when no KLD bound is given. src_model: src already loaded
 * (the gate's reference when that is src), or NULL. Working files go to workdir.
 * info is filled (free with pare_auto_info_free). */
pare_status pare_auto_quantize(const char *src, const pare_model *src_model, const char *out, const char *workdir,
                               const pare_shrink_job *job, pare_evalx *gate, double ref_ppl,
                               const pare_convert_opts *o, FILE *log, pare_auto_info *info, pare_err *err);

/* One stage of a job: its wall time and the process's peak resident memory at its end. */
typedef struct {
    const char *name;
    double seconds;
    double peak_mib;
} pare_stage_time;
#define PARE_MAX_STAGES 12

/* The reference's results on a gate text, as cached (pipeline/cache.c). */
typedef struct {
    double ppl, ppl_err;
    int n_chunks, n_ctx;
} pare_ref_result;

typedef struct {
    pare_ppl_result eval;  /* the result evaluated against the reference (KLD when kld_measured) */
    double ppl_increase;   /* eval.ppl / ref.ppl - 1 */
    double kld;            /* eval.kld_mean (when kld_measured) */
    bool passed, kld_measured;
    pare_ref_result ref;   /* the reference's perplexity ... */
    bool ref_cached;       /* ... read from the cache (not evaluated in this run) */
    char cache_key[33];    /* the entry's key ("" with no_cache) */
    const char *failed;    /* refused: "max-ppl-increase" or "max-kld" (the first that failed) */
    double failed_by;      /* ... and by how much the measure exceeds it (same unit as the option) */
    bool is_auto;
    pare_auto_info autoq;  /* --type auto */
    pare_stage_time stages[PARE_MAX_STAGES];
    int n_stages;
    pare_prune_stat *prune;/* per pruned tensor (n_prune) */
    size_t n_prune;
    uint64_t out_bytes;    /* the written file's size */
} pare_shrink_result;
void pare_shrink_result_free(pare_shrink_result *r);

/* The reference-result cache: key from the model's digest, the text's digest, ctx, chunks
 * and the evaluator's version; entries under dir (NULL: $XDG_CACHE_HOME/pare or
 * ~/.cache/pare). A missing, corrupt or foreign entry is a miss. put is best effort. */
#define PARE_EVAL_VERSION 1
pare_status pare_cache_key(const char *model, const char *text, int ctx, int n_chunks, int n_threads, char key[33],
                           pare_err *err);
bool pare_cache_get(const char *dir, const char *key, pare_ref_result *r);
void pare_cache_put(const char *dir, const char *key, const pare_ref_result *r);
/* The report of a shrink (pipeline/report.c, docs/report-schema.json): command "shrink" or
 * "run", recipe its path or NULL; st and err the job's outcome. A cJSON object (the caller
 * adds "options" and frees it), NULL when out of memory. */
#define PARE_REPORT_VERSION 1
struct cJSON;
struct cJSON *pare_shrink_report(const char *command, const char *recipe, const char *in, const char *out,
                                 const pare_shrink_job *job, const pare_shrink_result *res, const pare_err *err,
                                 pare_status st, double seconds, int n_threads);

/* XXH3-128 of a file's bytes as 32 hex digits (false when it cannot be read). */
bool pare_file_digest(const char *path, char hex[33]);

/* Runs the stages into a temporary folder beside `out`, evaluates the result against the
 * model before pruning and quantization (the input, or the input with the adapters merged)
 * on job->text_path, and renames it to `out` only when the gate passes; otherwise returns
 * PARE_EQUALITY with the figures in err and writes nothing. res->eval is set when the
 * evaluation ran (free with pare_ppl_result_free). Stage reports go to `report`. */
pare_status pare_shrink(const char *in, const char *out, const pare_shrink_job *job, const pare_convert_opts *o,
                        FILE *report, pare_shrink_result *res, pare_err *err);

/* The file type llama.cpp records for a GGUF whose weights have these types (the most
 * common type among 2-D weights; 0 (ALL_F32) when there are none). */
uint32_t pare_guess_file_type(const pare_model *m, const pare_type *types);

/* Converts the values of tensor t to type dst_type into dst (n_rows rows), through f32,
 * quantizing or dequantizing as needed, with n_threads threads. */
pare_status pare_tensor_convert(const pare_tensor *t, const void *src_bytes, pare_type dst_type, void *dst,
                                int n_threads, pare_err *err);

#endif
