/*
 * lora/lora.h - LoRA adapters: load PEFT folders and llama.cpp GGUF adapters, merge them into
 * a base model as a pipeline pass.
 *
 * PEFT (adapter_config.json + adapter_model.safetensors or adapter_model.bin):
 *   tensors base_model.model.MODULE.lora_A.weight (r, in) and .lora_B.weight (out, r);
 *   lora_embedding_A (r, vocab) / lora_embedding_B (dim, r) for embeddings; any other tensor
 *   (modules_to_save, trained biases) replaces the base tensor of that name whole.
 *   W' = W + s * B A, s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora; rank_pattern
 *   and alpha_pattern override r and alpha per module (PEFT matches "(.*\.)?KEY$").
 *   fan_in_fan_out: the base stores W transposed (GPT-2 Conv1D), so W^T gets the update.
 *   DoRA (use_dora / lora_magnitude_vector) is refused, never ignored.
 * GGUF (general.type = "adapter", adapter.type = "lora", adapter.lora.alpha): tensors
 *   NAME.lora_a (ne [in, r]) and NAME.lora_b (ne [r, out]) for a base tensor NAME in GGUF
 *   layout (q/k rows already permuted); W += S * alpha / r * B A, alpha 0 meaning S.
 *
 * Mixture-of-experts models: a PEFT module of one expert (Mixtral's
 *   block_sparse_moe.experts.E.w1/w2/w3, Qwen2-MoE's mlp.experts.E.gate_proj/up_proj/down_proj)
 *   updates expert E's slice of the 3-D GGUF tensor (ffn_gate_exps / ffn_down_exps /
 *   ffn_up_exps, rows [E * n_out, (E + 1) * n_out)); a GGUF adapter's 3-D lora_a / lora_b
 *   ([in, r, n_expert], [r, out, n_expert]) is one pair per expert.
 *
 * Adapters are held in one canonical form: GGUF tensor names and GGUF layout (q/k rows of B
 * permuted as llama.cpp's converter permutes the weights). pare_lora_to_hf_view converts
 * them for a base that keeps HF names and layout.
 */
#ifndef PARE_LORA_H
#define PARE_LORA_H

#include "core/core.h"

typedef struct {
    char *target;      /* base tensor name (GGUF, or HF after pare_lora_to_hf_view) */
    int64_t r, n_in, n_out;
    float *a;          /* (r, n_in) row-major */
    float *b;          /* (n_out, r) row-major */
    /* a or b points into the adapter file's read-only mapping (its f32 values as they
     * are): not freed, and copied before any change in place. */
    bool a_borrowed, b_borrowed;
    double scale;      /* the full factor: user scale * alpha / r (or / sqrt(r)) */
    bool transposed;   /* the base stores this weight as (n_in rows of n_out): add (B A)^T */
    /* is_expert: the pair updates expert `expert`'s slice of a 3-D tensor (rows
     * [expert * n_out, (expert + 1) * n_out)); else the whole tensor. hf_name (owned): the
     * expert's own 2-D tensor in HF naming, for pare_lora_to_hf_view, or NULL. */
    bool is_expert;
    int64_t expert;
    char *hf_name;
} pare_lora_pair;

typedef struct {
    char *target;
    pare_tensor t;     /* owned values replacing the base tensor (type and shape must match) */
} pare_lora_full;

typedef struct pare_lora_adapter {
    char *path;
    char *arch;        /* architecture the adapter was made for, when it says */
    pare_lora_pair *pairs;
    size_t n_pairs;
    pare_lora_full *fulls;
    size_t n_fulls;
    pare_model *src; /* the adapter's file, kept open while pairs borrow from it */
} pare_lora_adapter;

/* Loads a PEFT folder (or its adapter_config.json) or a GGUF adapter. base_arch and
 * base_meta (GGUF metadata of the base: head counts for the q/k permutation) say how PEFT
 * module names map to GGUF names. user_scale multiplies the adapter's own scale. */
pare_status pare_lora_load(const char *path, const char *base_arch, const pare_meta *base_meta, double user_scale,
                           pare_lora_adapter **out, pare_err *err);
void pare_lora_free(pare_lora_adapter *a);

/* Renames targets to HF names and undoes the q/k permutation of B, for a base in HF layout. */
pare_status pare_lora_to_hf_view(pare_lora_adapter *a, const char *base_arch, const pare_meta *base_meta,
                                 pare_err *err);

/* Checks every target against the base: the tensor exists and its shape matches; fails when
 * no target matches at all or any shape differs (naming the tensor and both shapes). */
pare_status pare_lora_check(const pare_lora_adapter *const *ad, size_t n, const pare_model *base, pare_err *err);

/* The merge as a pipeline pass (see pipeline.h's pare_pass: wants + apply on f32 values).
 * The merger keeps, for each tensor it changed, ||W' - W|| / ||W||. */
typedef struct pare_lora_merger pare_lora_merger;
pare_status pare_lora_merger_new(pare_lora_adapter *const *ad, size_t n, pare_lora_merger **out, pare_err *err);
void pare_lora_merger_free(pare_lora_merger *mg);
bool pare_lora_merger_wants(void *mg, const pare_tensor *t);
pare_status pare_lora_merger_apply(void *mg, const pare_tensor *t, float *values, int n_threads, pare_err *err);
/* The same on rows [row0, row0 + n_rows) of t alone (one thread; safe to call from several at
 * once on different rows): the pipeline's streaming form. */
pare_status pare_lora_merger_apply_rows(void *mg, const pare_tensor *t, float *values, int64_t row0, int64_t n_rows,
                                        pare_err *err);
/* Per merged tensor: name and relative change, in merge order. */
size_t pare_lora_merger_n_done(const pare_lora_merger *mg);
void pare_lora_merger_done(const pare_lora_merger *mg, size_t i, const char **name, double *rel_change);

/* The reverse, as mergekit extracts adapters: the best rank-r approximation of a weight
 * difference delta (n_out rows of n_in) by truncated SVD, delta ~ B A with B = U_r S_r
 * (n_out x r) and A = V_r^T (r x n_in). *kept is the share of the difference's energy
 * (sum of squared singular values) that the rank-r factors keep. a and b are malloc'ed. */
pare_status pare_lora_extract_one(const float *delta, int64_t n_out, int64_t n_in, int rank, float **a, float **b,
                                  double *kept, pare_err *err);

/* Adds s * B A (or its transpose) to W (n_out rows of n_in) in place. Exposed for tests. */
void pare_lora_add_delta(float *w, const pare_lora_pair *p, int n_threads);

#endif
