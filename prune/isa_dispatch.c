/* prune/isa_dispatch.c - prune.c (its selection and masking have AVX-512 kernels) is compiled
 * once per level; these forward its functions to the level pare_isa_active() chose
 * (core/isa_impl.h). */
#if defined(PARE_DISPATCH)
#include "core/isa_impl.h"
#include "prune/prune.h"

PARE_ISA_VOID_FN(pare_prune_below,
                 (float *w, int64_t ne0, int64_t n_rows, const float *col_scale, float threshold, int64_t *ties_left,
                  int64_t *n_zeroed),
                 (w, ne0, n_rows, col_scale, threshold, ties_left, n_zeroed))
PARE_ISA_FN(bool, pare_prune_check_nm, (const float *w, int64_t ne0, int64_t n_rows, int n, int m), (w, ne0, n_rows, n, m))
PARE_ISA_VOID_FN(pare_prune_count_zeros,
                 (const float *w, int64_t ne0, int64_t n_rows, int64_t *total, int64_t *row_min, int64_t *row_max),
                 (w, ne0, n_rows, total, row_min, row_max))
PARE_ISA_FN(float, pare_prune_kth, (float *scores, int64_t n, int64_t k), (scores, n, k))
PARE_ISA_FN(pare_status, pare_prune_matrix,
            (float *w, int64_t ne0, int64_t n_rows, const float *col_scale, const pare_prune_opts *o, int n_threads,
             int64_t *n_zeroed, pare_err *err),
            (w, ne0, n_rows, col_scale, o, n_threads, n_zeroed, err))
#else
typedef int pare_prune_isa_dispatch_unused; /* a one-level build calls prune.c directly */
#endif
