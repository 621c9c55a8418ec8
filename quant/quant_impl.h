/*
 * quant/quant_impl.h - private to quant/: the block structs, shared helpers and the
 * per-type row functions behind the traits table in quant.c.
 *
 * Every block type has a scalar reference (`pare_qref_*`) that is the specification;
 * fast paths (`pare_qsimd_*`, quant/q_simd.c, built when the compiler targets AVX2) must
 * give bit-identical output and are tested against the reference.
 *
 * All multi-byte fields are little-endian; `pare_half` is an IEEE binary16 bit pattern.
 */
#ifndef PARE_QUANT_IMPL_H
#define PARE_QUANT_IMPL_H

#include "quant/blocks.h"
#include "quant/quant.h"

#include <string.h>


#define QK_K PARE_QK_K
#define QK_LEG PARE_QK_LEG

/* Below this a group is treated as all zero (ggml's GROUP_MAX_EPS). */
#define QGROUP_EPS 1e-15f

/* Round to nearest (ties to even) for |v| < 2^22 by ggml's trick: adding 1.5 * 2^23 puts
 * the integer in the low mantissa bits. Out of range (or NaN) it returns some value in
 * [-2^22, 2^22), exactly as ggml does; callers clamp. Fast paths reproduce the bits. */
static inline int q_nearest_int(float v) {
    float f = v + 12582912.f;
    int32_t i;
    memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float q_h2f(pare_half h) { return pare_fp16_to_fp32(h); }
static inline pare_half q_f2h(float f) { return pare_fp32_to_fp16(f); }
static inline int q_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t pare_iq4nl_values[16];

/* ---- scalar references, one per type (n is a multiple of the block size; imatrix is
 * NULL or n weights). The `_q` functions take the quantize signature, `_dq` dequantize. */
#define QREF_DECL(T)                                                                     \
    void pare_qref_q_##T(const float *src, void *dst, int64_t n, const float *imatrix);   \
    void pare_qref_dq_##T(const void *src, float *dst, int64_t n);
QREF_DECL(q4_0)
QREF_DECL(q4_1)
QREF_DECL(q5_0)
QREF_DECL(q5_1)
QREF_DECL(q8_0)
QREF_DECL(q2_K)
QREF_DECL(q3_K)
QREF_DECL(q4_K)
QREF_DECL(q5_K)
QREF_DECL(q6_K)
QREF_DECL(q8_K)
QREF_DECL(iq4_nl)
QREF_DECL(iq4_xs)
QREF_DECL(tq1_0)
QREF_DECL(tq2_0)
QREF_DECL(f32)
QREF_DECL(f16)
QREF_DECL(bf16)
#undef QREF_DECL

/* ---- K-quant search kernels, batched over sub-blocks so that a SIMD lane can take one
 * sub-block each while keeping the reference's order of float operations.
 *
 * qkx2 batch: ggml's make_qkx2_quants on `nsub` sub-blocks of `n` values each, stored
 * one after another in x (and their weights in w). Writes L[nsub*n] (levels 0..nmax),
 * scales[nsub] and mins[nsub] (the positive offset, ggml's *the_min). */
typedef void (*pare_qkx2_batch_fn)(int nsub, int n, int nmax, const float *x, const float *w,
                                   float rmin, float rdelta, int nstep, bool use_mad,
                                   uint8_t *L, float *scales, float *mins);
/* qx batch: ggml's make_qx_quants with rmse_type 1 on nsub sub-blocks of n values; w is
 * the weights or NULL for x*x. Writes L (levels 0..2*nmax-1) and scales. */
typedef void (*pare_qx_batch_fn)(int nsub, int n, int nmax, const float *x, const float *w,
                                 int8_t *L, float *scales);

void pare_qref_qkx2_batch(int nsub, int n, int nmax, const float *x, const float *w, float rmin,
                          float rdelta, int nstep, bool use_mad, uint8_t *L, float *scales,
                          float *mins);
void pare_qref_qx_batch(int nsub, int n, int nmax, const float *x, const float *w, int8_t *L,
                        float *scales);

/* ggml's group searches (q_k.c), shared by the legacy and K types:
 * make_qx_quants (symmetric levels -nmax..nmax-1, returned as L + nmax; rmse_type as ggml),
 * make_qkx3_quants (asymmetric 0..nmax with a min; weights NULL means x*x),
 * make_qp_quants (positive levels 0..nmax for the scales of a super-block). */
float pare_qk_make_qx(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);
float pare_qk_make_qkx3(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                        uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad);
float pare_qk_make_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Row quantizers of the K types parameterised by their search kernel (q_k.c). */
void pare_qk_q2_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2);
void pare_qk_q4_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2);
void pare_qk_q5_K_row(const float *x, void *dst, int64_t n, pare_qkx2_batch_fn kx2);
void pare_qk_q6_K_row(const float *x, void *dst, int64_t n, const float *imatrix,
                      pare_qx_batch_fn qx);

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__) && !defined(PARE_QUANT_NO_SIMD)
#define PARE_QUANT_SIMD 1
/* ---- fast paths (q_simd.c); same contracts as the references above. */
void pare_qsimd_qkx2_batch(int nsub, int n, int nmax, const float *x, const float *w, float rmin,
                           float rdelta, int nstep, bool use_mad, uint8_t *L, float *scales,
                           float *mins);
void pare_qsimd_qx_batch(int nsub, int n, int nmax, const float *x, const float *w, int8_t *L,
                         float *scales);
void pare_qsimd_q_q8_0(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_q4_0(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_f16(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_bf16(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_dq_f16(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_bf16(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q8_0(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q4_0(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q4_1(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q5_0(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q5_1(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q4_K(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q5_K(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q6_K(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q2_K(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_q3_K(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_iq4_nl(const void *src, float *dst, int64_t n);
void pare_qsimd_dq_iq4_xs(const void *src, float *dst, int64_t n);
/* the i-quant quantizers: the references' searches with faster kernels of the level */
void pare_qsimd_q_iq4_nl(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq4_xs(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq2_xxs(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq2_xs(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq2_s(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq3_xxs(const float *src, void *dst, int64_t n, const float *imatrix);
void pare_qsimd_q_iq3_s(const float *src, void *dst, int64_t n, const float *imatrix);
#endif

/* ---- the one table of block types: a row per type, read by quant.c (its references) and by
 * q_simd.c (its fast paths, at the levels that have them). Columns:
 *   TYPE            the pare_type / ggml name (PARE_TYPE_##TYPE)
 *   QREF, DQREF     the scalar quantizer and dequantizer (the specification)
 *   QFAST, DQFAST   what the AVX2 / AVX-512 levels use instead (the reference again when a
 *                   type has no fast path); bit-identical to the reference (tests/test_quant.c)
 *   IMATRIX         ggml refuses to quantize without importance weights
 *   VEC_DOT         the type ggml-cpu converts activations to before its dot products with
 *                   this type (type_traits_cpu[TYPE].vec_dot_type): what the evaluator rounds
 *                   the activations to
 *   BLOCK           the block struct (quant/blocks.h) whose sizeof is the bytes per block, or
 *                   the element type of a plain type
 * Adding a type: its struct in blocks.h, its kernels, one row here (and its id in core). */
#define PARE_QUANT_TYPES(X)                                                                                            \
    X(F32, pare_qref_q_f32, pare_qref_dq_f32, pare_qref_q_f32, pare_qref_dq_f32, false, F32, float)                    \
    X(F16, pare_qref_q_f16, pare_qref_dq_f16, pare_qsimd_q_f16, pare_qsimd_dq_f16, false, F16, pare_half)             \
    X(BF16, pare_qref_q_bf16, pare_qref_dq_bf16, pare_qsimd_q_bf16, pare_qsimd_dq_bf16, false, BF16, uint16_t)         \
    X(Q4_0, pare_qref_q_q4_0, pare_qref_dq_q4_0, pare_qsimd_q_q4_0, pare_qsimd_dq_q4_0, false, Q8_0, pare_block_q4_0)  \
    X(Q4_1, pare_qref_q_q4_1, pare_qref_dq_q4_1, pare_qref_q_q4_1, pare_qsimd_dq_q4_1, false, Q8_1, pare_block_q4_1)   \
    X(Q5_0, pare_qref_q_q5_0, pare_qref_dq_q5_0, pare_qref_q_q5_0, pare_qsimd_dq_q5_0, false, Q8_0, pare_block_q5_0)   \
    X(Q5_1, pare_qref_q_q5_1, pare_qref_dq_q5_1, pare_qref_q_q5_1, pare_qsimd_dq_q5_1, false, Q8_1, pare_block_q5_1)   \
    X(Q8_0, pare_qref_q_q8_0, pare_qref_dq_q8_0, pare_qsimd_q_q8_0, pare_qsimd_dq_q8_0, false, Q8_0, pare_block_q8_0)  \
    X(Q2_K, pare_qref_q_q2_K, pare_qref_dq_q2_K, pare_qfast_q_q2_K, pare_qsimd_dq_q2_K, false, Q8_K, pare_block_q2_K)  \
    X(Q3_K, pare_qref_q_q3_K, pare_qref_dq_q3_K, pare_qref_q_q3_K, pare_qsimd_dq_q3_K, false, Q8_K, pare_block_q3_K)   \
    X(Q4_K, pare_qref_q_q4_K, pare_qref_dq_q4_K, pare_qfast_q_q4_K, pare_qsimd_dq_q4_K, false, Q8_K, pare_block_q4_K)  \
    X(Q5_K, pare_qref_q_q5_K, pare_qref_dq_q5_K, pare_qfast_q_q5_K, pare_qsimd_dq_q5_K, false, Q8_K, pare_block_q5_K)  \
    X(Q6_K, pare_qref_q_q6_K, pare_qref_dq_q6_K, pare_qfast_q_q6_K, pare_qsimd_dq_q6_K, false, Q8_K, pare_block_q6_K)  \
    X(Q8_K, pare_qref_q_q8_K, pare_qref_dq_q8_K, pare_qref_q_q8_K, pare_qref_dq_q8_K, false, Q8_K, pare_block_q8_K)    \
    X(IQ4_NL, pare_qref_q_iq4_nl, pare_qref_dq_iq4_nl, pare_qsimd_q_iq4_nl, pare_qsimd_dq_iq4_nl, false, Q8_0,         \
      pare_block_iq4_nl)                                                                                               \
    X(IQ4_XS, pare_qref_q_iq4_xs, pare_qref_dq_iq4_xs, pare_qsimd_q_iq4_xs, pare_qsimd_dq_iq4_xs, false, Q8_K,         \
      pare_block_iq4_xs)                                                                                               \
    X(TQ1_0, pare_qref_q_tq1_0, pare_qref_dq_tq1_0, pare_qref_q_tq1_0, pare_qref_dq_tq1_0, false, Q8_K, pare_block_tq1_0) \
    X(TQ2_0, pare_qref_q_tq2_0, pare_qref_dq_tq2_0, pare_qref_q_tq2_0, pare_qref_dq_tq2_0, false, Q8_K, pare_block_tq2_0) \
    X(IQ2_XXS, pare_iq_quant_iq2_xxs, pare_iq_dequant_iq2_xxs, pare_qsimd_q_iq2_xxs, pare_iq_dequant_iq2_xxs, true,    \
      Q8_K, pare_block_iq2_xxs)                                                                                        \
    X(IQ2_XS, pare_iq_quant_iq2_xs, pare_iq_dequant_iq2_xs, pare_qsimd_q_iq2_xs, pare_iq_dequant_iq2_xs, true, Q8_K,   \
      pare_block_iq2_xs)                                                                                               \
    X(IQ2_S, pare_iq_quant_iq2_s, pare_iq_dequant_iq2_s, pare_qsimd_q_iq2_s, pare_iq_dequant_iq2_s, false, Q8_K,       \
      pare_block_iq2_s)                                                                                                \
    X(IQ3_XXS, pare_iq_quant_iq3_xxs, pare_iq_dequant_iq3_xxs, pare_qsimd_q_iq3_xxs, pare_iq_dequant_iq3_xxs, false,   \
      Q8_K, pare_block_iq3_xxs)                                                                                        \
    X(IQ3_S, pare_iq_quant_iq3_s, pare_iq_dequant_iq3_s, pare_qsimd_q_iq3_s, pare_iq_dequant_iq3_s, false, Q8_K,       \
      pare_block_iq3_s)                                                                                                \
    X(IQ1_S, pare_iq_quant_iq1_s, pare_iq_dequant_iq1_s, pare_iq_quant_iq1_s, pare_iq_dequant_iq1_s, true, Q8_K,       \
      pare_block_iq1_s)                                                                                                \
    X(IQ1_M, pare_iq_quant_iq1_m, pare_iq_dequant_iq1_m, pare_iq_quant_iq1_m, pare_iq_dequant_iq1_m, false, Q8_K,      \
      pare_block_iq1_m)

/* The traits table with the fast paths of the kernels' level (q_simd.c, compiled once per
 * level: core/isa.h), or NULL at a level without them (then the references serve); its
 * search kernels, for tests (NULL likewise). */
const pare_quant_traits *pare_qsimd_table(void);
pare_qkx2_batch_fn pare_qsimd_kx2(void);
pare_qx_batch_fn pare_qsimd_qx(void);

/* The table of scalar references (for tests and for types without a fast path). */
const pare_quant_traits *pare_quant_ref_get(pare_type t);

#endif
