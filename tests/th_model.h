/* tests/th_model.h - models built in memory for the module tests (with tests/th.h). */
#ifndef PARE_TH_MODEL_H
#define PARE_TH_MODEL_H

#include "core/core.h"
#include "th.h"

/* Adds an F32 tensor with a torch-order shape (d0 outermost; d1 0 for 1-D) and values
 * seed + (k % 997) / 64 (exact in f32). */
static inline void th_add_f32(pare_model *m, const char *name, int64_t d0, int64_t d1, int seed) {
    pare_err err = {0};
    pare_tensor t = {0};
    int64_t ne[2] = {d1 ? d1 : d0, d1 ? d0 : 1};
    CHECK_OK(pare_tensor_init(&t, name, PARE_TYPE_F32, d1 ? 2 : 1, ne, &err), &err);
    int64_t n = d0 * (d1 ? d1 : 1);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t k = 0; k < n; k++) v[k] = (float)seed + (float)(k % 997) / 64.0f;
    pare_tensor_set_owned(&t, v, (uint64_t)n * sizeof *v);
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

#endif
