/* lora/extract.c - low-rank factors of a weight difference by truncated SVD (LAPACK). */
#include "lora/lora.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

pare_status pare_lora_extract_one(const float *delta, int64_t n_out, int64_t n_in, int rank, float **a, float **b,
                                  double *kept, pare_err *err) {
    *a = *b = NULL;
    int64_t k = n_out < n_in ? n_out : n_in;
    FAIL_IF(rank < 1, PARE_EUSAGE, "rank %d must be at least 1", rank);
    FAIL_IF(n_out > 1 << 20 || n_in > 1 << 20, PARE_EUNSUPPORTED, "a %lld x %lld matrix is too large for the SVD",
            (long long)n_out, (long long)n_in);
    if (rank > k) rank = (int)k;
    float *m = malloc((size_t)(n_out * n_in) * sizeof(float)), *sv = malloc((size_t)k * sizeof(float));
    float *u = malloc((size_t)(n_out * k) * sizeof(float)), *vt = malloc((size_t)(k * n_in) * sizeof(float));
    float *fa = malloc((size_t)(rank * n_in) * sizeof(float)), *fb = malloc((size_t)(n_out * rank) * sizeof(float));
    pare_status st = (!m || !sv || !u || !vt || !fa || !fb) ? pare_err_set(err, PARE_ENOMEM, "out of memory for the SVD")
                                                           : PARE_OK;
    if (!st) {
        memcpy(m, delta, (size_t)(n_out * n_in) * sizeof(float)); /* gesdd destroys its input */
        lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)n_out, (lapack_int)n_in, m,
                                         (lapack_int)n_in, sv, u, (lapack_int)k, vt, (lapack_int)n_in);
        if (info != 0) st = pare_err_set(err, PARE_EINTERNAL, "the SVD did not converge (LAPACK info %d)", (int)info);
    }
    if (!st) {
        double all = 0, top = 0;
        for (int64_t i = 0; i < k; i++) {
            all += (double)sv[i] * sv[i];
            if (i < rank) top += (double)sv[i] * sv[i];
        }
        *kept = all > 0 ? top / all : 1.0;
        for (int64_t o = 0; o < n_out; o++)
            for (int r = 0; r < rank; r++) fb[o * rank + r] = u[o * k + r] * sv[r];
        memcpy(fa, vt, (size_t)(rank * n_in) * sizeof(float));
        *a = fa;
        *b = fb;
        fa = fb = NULL;
    }
    free(m);
    free(sv);
    free(u);
    free(vt);
    free(fa);
    free(fb);
    return st;
}
