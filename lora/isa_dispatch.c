/* lora/isa_dispatch.c - merge.c (its rank-r update has AVX-512 kernels) is compiled once per
 * level; these forward its functions to the level pare_isa_active() chose (core/isa_impl.h). */
#if defined(PARE_DISPATCH)
#include "core/isa_impl.h"
#include "lora/lora.h"

PARE_ISA_VOID_FN(pare_lora_add_delta, (float *w, const pare_lora_pair *p, int n_threads), (w, p, n_threads))
PARE_ISA_FN(pare_status, pare_lora_check,
            (const pare_lora_adapter *const *ad, size_t n, const pare_model *base, pare_err *err), (ad, n, base, err))
PARE_ISA_FN(pare_status, pare_lora_merger_apply,
            (void *mg, const pare_tensor *t, float *values, int n_threads, pare_err *err), (mg, t, values, n_threads, err))
PARE_ISA_FN(pare_status, pare_lora_merger_apply_rows,
            (void *mg, const pare_tensor *t, float *values, int64_t row0, int64_t n_rows, pare_err *err),
            (mg, t, values, row0, n_rows, err))
PARE_ISA_VOID_FN(pare_lora_merger_done, (const pare_lora_merger *mg, size_t i, const char **name, double *rel_change),
                 (mg, i, name, rel_change))
PARE_ISA_VOID_FN(pare_lora_merger_free, (pare_lora_merger * mg), (mg))
PARE_ISA_FN(size_t, pare_lora_merger_n_done, (const pare_lora_merger *mg), (mg))
PARE_ISA_FN(pare_status, pare_lora_merger_new,
            (pare_lora_adapter *const *ad, size_t n, pare_lora_merger **out, pare_err *err), (ad, n, out, err))
PARE_ISA_FN(bool, pare_lora_merger_wants, (void *mg, const pare_tensor *t), (mg, t))
#else
typedef int pare_lora_isa_dispatch_unused; /* a one-level build calls merge.c directly */
#endif
