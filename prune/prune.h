/*
 * prune/prune.h - pruning: zero the least important weights of a matrix.
 *
 * A weight matrix here is n_rows rows of ne0 inputs (ggml order: a GGUF tensor with
 * ne = [ne0, n_rows]; row i is output i). Scores: magnitude |W_ij|, or Wanda's
 * |W_ij| * ||X_j||_2 with X_j the activations of input j over calibration tokens. The
 * weights with the lowest scores are zeroed; among equal scores the lower index goes first,
 * so results are exact and deterministic. Selection is quickselect: linear expected time.
 *   unstructured, row scope:    every row loses round(S * ne0) weights;
 *   unstructured, tensor scope: the tensor loses round(S * n) weights;
 *   N:M:                        in every group of M consecutive inputs of a row, the M - N
 *                               lowest are zeroed (ne0 must be a multiple of M).
 * Global scope (one threshold over many tensors) is built from pare_prune_count_below.
 */
#ifndef PARE_PRUNE_H
#define PARE_PRUNE_H

#include "core/core.h"

/* Where the sparsity is counted: each row, each tensor, or (pipeline only: one threshold over
 * every pruned tensor of the model) the whole model. */
typedef enum { PARE_PRUNE_ROW, PARE_PRUNE_TENSOR, PARE_PRUNE_GLOBAL } pare_prune_scope;

typedef struct {
    double sparsity;        /* share of weights to zero, 0..1 (ignored with N:M) */
    pare_prune_scope scope;
    int n, m;               /* N:M pattern; m == 0 means unstructured */
} pare_prune_opts;

/* Prunes w in place. col_scale: ne0 factors multiplying |W| (Wanda's ||X_j||), or NULL for
 * magnitude. *n_zeroed (may be NULL) gets the number of weights this call zeroed. */
pare_status pare_prune_matrix(float *w, int64_t ne0, int64_t n_rows, const float *col_scale,
                              const pare_prune_opts *o, int n_threads, int64_t *n_zeroed, pare_err *err);

/* The same for a stack of n_mat matrices of n_rows rows each, as the 3-D expert tensors of
 * mixture-of-experts models are stored (ggml ne = [ne0, n_rows, n_mat], matrix e at
 * w + e * n_rows * ne0): each matrix is pruned on its own, so tensor scope counts per expert
 * (every expert loses round(S * ne0 * n_rows) weights) and each expert's weights are scored
 * with its own column factors: col_scale holds n_mat runs of ne0 (Wanda's ||X_j|| over the
 * tokens routed to that expert), or is NULL. Row scope and N:M are per row and need no
 * stack; n_mat == 1 is pare_prune_matrix. */
pare_status pare_prune_stack(float *w, int64_t ne0, int64_t n_rows, int64_t n_mat, const float *col_scale,
                             const pare_prune_opts *o, int n_threads, int64_t *n_zeroed, pare_err *err);

/* The k-th smallest score (0-based) of n scores, by quickselect; scores is reordered. */
float pare_prune_kth(float *scores, int64_t n, int64_t k);

/* Global scope: zero every weight whose score is below `threshold`, plus up to *ties_left
 * weights whose score equals it (in index order), decrementing *ties_left. */
void pare_prune_below(float *w, int64_t ne0, int64_t n_rows, const float *col_scale, float threshold,
                      int64_t *ties_left, int64_t *n_zeroed);

/* Counts of zeros in a matrix: total, and the smallest and largest per-row counts. */
void pare_prune_count_zeros(const float *w, int64_t ne0, int64_t n_rows, int64_t *total, int64_t *row_min,
                            int64_t *row_max);
/* true when every group of m consecutive inputs in every row has at most n non-zeros. */
bool pare_prune_check_nm(const float *w, int64_t ne0, int64_t n_rows, int n, int m);

#endif
