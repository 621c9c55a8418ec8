/*
 * verify/diff.h - what differs between two models: metadata keys and values, tensor names,
 * types, shapes, bytes and (optionally) values.
 */
#ifndef PARE_DIFF_H
#define PARE_DIFF_H

#include "core/core.h"

#include <stdio.h>

typedef struct {
    const char *const *ignore_meta; /* fnmatch globs of metadata keys to leave out */
    size_t n_ignore_meta;
    bool values;       /* compare dequantized f32 values rather than bytes */
    double tolerance;  /* values: largest |a - b| accepted (0 = exact) */
    bool skip_meta;    /* compare tensors only */
    int n_threads;
} pare_diff_opts;

typedef struct {
    size_t meta_diffs;    /* keys missing on one side or with other values */
    size_t tensor_diffs;  /* tensors missing on one side, or with other type/shape/bytes/values */
    size_t tensors_same;
    double max_abs_diff;  /* values mode: over all tensors */
    char worst_tensor[128];
} pare_diff_result;

/* Compares a and b; writes one line per difference to `report` (may be NULL). */
pare_status pare_diff_models(const pare_model *a, const pare_model *b, const pare_diff_opts *o, FILE *report,
                             pare_diff_result *res, pare_err *err);

#endif
