/* prune/stack.c - pruning the stacked matrices of 3-D expert tensors (prune.h), one matrix at
 * a time through pare_prune_matrix (whose kernels prune.c holds, per instruction set). */
#include "prune/prune.h"

pare_status pare_prune_stack(float *w, int64_t ne0, int64_t n_rows, int64_t n_mat, const float *col_scale,
                             const pare_prune_opts *o, int n_threads, int64_t *n_zeroed, pare_err *err) {
    FAIL_IF(n_mat < 1, PARE_EINPUT, "a stack of %lld matrices", (long long)n_mat);
    int64_t total = 0;
    for (int64_t e = 0; e < n_mat; e++) {
        int64_t z = 0;
        TRY(pare_prune_matrix(w + e * n_rows * ne0, ne0, n_rows, col_scale ? col_scale + e * ne0 : NULL, o, n_threads,
                              n_zeroed ? &z : NULL, err));
        total += z;
    }
    if (n_zeroed) *n_zeroed = total;
    return PARE_OK;
}
