/* quant/isa_dispatch.c - q_simd.c (the quantizers' AVX2 / AVX-512 paths and their traits
 * table) is compiled once per level; these forward to the level pare_isa_active() chose
 * (core/isa_impl.h). At the generic level they return NULL and the references serve. */
#if defined(PARE_DISPATCH)
#include "core/isa_impl.h"
#include "quant/quant_impl.h"

PARE_ISA_FN(const pare_quant_traits *, pare_qsimd_table, (void), ())
PARE_ISA_FN(pare_qkx2_batch_fn, pare_qsimd_kx2, (void), ())
PARE_ISA_FN(pare_qx_batch_fn, pare_qsimd_qx, (void), ())
#else
typedef int pare_quant_isa_dispatch_unused; /* a one-level build calls q_simd.c directly */
#endif
