/*
 * prune/structured.h - structured pruning: remove whole layers, FFN channels, attention heads
 * (whole KV groups) and mixture-of-experts experts, so that the file really shrinks.
 *
 * The work is split in two. Deciding what goes (scores over calibration text) is the
 * pipeline's (pipeline/prune_struct_job.c); this module does the surgery: from a model with
 * GGUF names and metadata and a plan, it builds a new pare_model whose tensors are views of
 * the input's: a tensor that loses nothing borrows the input's bytes, one that loses rows,
 * columns or experts reads and slices its source when the writer asks for it (one tensor at a
 * time, so writing streams as the other passes do). The input model must outlive the result.
 *
 * What each removal touches (GGUF names; ggml order, ne[0] contiguous):
 *   layer L          every blk.L.* tensor; blk.K.* for K > L become blk.K-1.*; {arch}.block_count,
 *                    and every {arch}.* array of block_count elements loses element L.
 *   FFN channel j    row j of ffn_gate / ffn_up (and their biases), column j of ffn_down;
 *                    {arch}.feed_forward_length becomes a per-layer array (a scalar when all
 *                    layers keep the same width).
 *   KV group g       (n_head / n_head_kv query heads sharing key/value head g) rows of attn_q
 *                    of its query heads, rows of attn_k / attn_v of head g (biases alike),
 *                    columns of attn_output; attention.head_count / head_count_kv become
 *                    per-layer arrays (scalars when uniform), and key_length / value_length
 *                    are written, since llama.cpp otherwise derives the head size from layer 0's
 *                    head count.
 *   expert e         slab e of ffn_{gate,up,down}_exps (ne[2]) and their biases, row e of
 *                    ffn_gate_inp and element e of exp_probs_b; {arch}.expert_count, and
 *                    expert_used_count is lowered to it when above.
 * Row and expert slices copy bytes (any type, exact); column slices of a block type go
 * through f32 and the tensor becomes F32 (the writer's type choice applies).
 */
#ifndef PARE_PRUNE_STRUCTURED_H
#define PARE_PRUNE_STRUCTURED_H

#include "core/core.h"

#include <stdio.h>

/* Mixture of experts: fills scores[n_expert] for layer il (higher = more important). */
typedef pare_status (*pare_struct_expert_fn)(void *user, const pare_model *m, int il, int n_expert, double *scores,
                                             pare_err *err);
/* What the user asked for (the CLI's options, the pipeline's job). */
typedef struct {
    bool on;              /* structured pruning requested */
    int drop_layers;      /* remove this many layers, chosen on the calibration text */
    const char *layers;   /* or exactly these (comma-separated indices), or NULL */
    double ffn_keep;      /* share of FFN channels to keep per layer (0: leave the FFN) */
    double heads_keep;    /* share of attention heads (whole KV groups) to keep (0: leave) */
    double experts_keep;  /* share of experts to keep (0: leave) */
    bool global;          /* ffn/heads: one ranking over all layers instead of per layer */
    int candidates;       /* layers: how many of the lowest angular distance get the PPL test (0: 8) */
    bool dry_run;         /* print the plan only */
    pare_struct_expert_fn expert_scores; /* expert importance (NULL: the weight proxy below) */
    void *expert_user;
    FILE *report;         /* the scores and the plan, or NULL */
} pare_struct_opts;

/* true when o asks for any structured removal. */
bool pare_struct_requested(const pare_struct_opts *o);

/* The surgery to do. Index lists are sorted ascending and owned by the plan. */
typedef struct {
    int n_layer;
    bool *drop;            /* [n_layer] */
    int *ffn_n;            /* [n_layer] channels kept, 0: all (unchanged) */
    int32_t **ffn_idx;     /* [n_layer][ffn_n] */
    int *kv_n;             /* [n_layer] KV groups kept, 0: all */
    int32_t **kv_idx;      /* [n_layer][kv_n] */
    int expert_n;          /* experts kept per layer, 0: all */
    int32_t **expert_idx;  /* [n_layer][expert_n] */
} pare_struct_plan;

pare_status pare_struct_plan_init(pare_struct_plan *p, int n_layer, pare_err *err);
void pare_struct_plan_free(pare_struct_plan *p);

/* The model's per-layer shape, from its tensors and metadata (GGUF names). */
typedef struct {
    int n_layer, n_embd;
    int *n_ff;          /* [n_layer] rows of ffn_up (0 when the layer has none: MoE) */
    int *n_head;        /* [n_layer] */
    int *n_head_kv;     /* [n_layer] */
    int n_embd_head;    /* key_length */
    int n_expert, n_expert_used;
} pare_struct_shape;

pare_status pare_struct_shape_of(const pare_model *m, pare_struct_shape *s, pare_err *err);
void pare_struct_shape_free(pare_struct_shape *s);

/* The indices of the k highest of n scores, sorted ascending (ties: lower index first). */
pare_status pare_struct_top_k(const double *scores, int n, int k, int32_t *idx, pare_err *err);

/* Builds the pruned model (see above) into *out. m: GGUF names and metadata. */
pare_status pare_struct_build(const pare_model *m, const pare_struct_plan *p, pare_model **out, pare_err *err);

/* For a tensor of a model from pare_struct_build: the type of the input tensor it reads, when
 * the view's own type differs (a column cut of a block type reads as F32); else
 * PARE_TYPE_INVALID. Writers use it to store the cut tensor in the input's type again. */
pare_type pare_struct_view_source_type(const pare_tensor *t);

/* Parses "3,5,7" into a drop mask of n_layer layers; *n_drop gets the count. */
pare_status pare_struct_parse_layers(const char *list, int n_layer, bool *drop, int *n_drop, pare_err *err);

/* A proxy from the weights alone, for when no calibration pass can run: the norm of the
 * router row times the Frobenius norm of the expert's down projection. */
pare_status pare_struct_expert_weight_scores(void *user, const pare_model *m, int il, int n_expert, double *scores,
                                             pare_err *err);

#endif
