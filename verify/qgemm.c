/*
 * verify/qgemm.c - the products of the forward pass for weights whose products take 8-bit
 * activations (Q8_0, Q4_0, Q5_0, IQ4_NL with Q8_0 activations; Q4_1, Q5_1 with Q8_1), done
 * the way llama.cpp (February 2025, b4700-b4800) does them on an x86 CPU with AVX2 or
 * AVX-512, in integers: y[M][N] = x[M][K] W[N][K]^T.
 *
 * Activations. ggml-cpu's x86 quantize_row_q8_0 / q8_1: per block of 32, amax = max |x|,
 * d = amax / 127 (kept as f16), codes q = x * (127 / amax) rounded to nearest even; Q8_1 also
 * keeps s = f16(d * sum(q)) with the f32 d (not the f16 one). The 4-row quantizer of the
 * repacked path (ggml_quantize_mat_q8_0_4x8) gives the same codes and scales.
 *
 * Weights are unpacked to 32 codes per block (Q4_0: nibble - 8; Q5_0: 5 bits - 16; IQ4_NL:
 * kvalues_iq4nl[nibble]; Q4_1, Q5_1: 0..15 / 0..31; Q8_0 as stored) and a scale (and a min).
 * Integer dot products are exact whichever instructions add them, so only the float steps
 * need llama.cpp's order, and that order depends on which code runs:
 *
 *   lanes (tinyBLAS_Q0_AVX in llamafile's sgemm.cpp for Q8_0, Q5_0, IQ4_NL and Q4_0 weights
 *   not repacked; ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1 AVX2 for Q4_1, Q5_1): per output eight
 *   float lanes, lane j holding the dot of bytes 4j..4j+3 of each block pair, accumulated
 *   block after block with fma(d_w * d_x, dot_j, acc_j), then summed as ggml's hsum_float_8,
 *   ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Q4_1/Q5_1 add, after the sum, summs accumulated
 *   in block order as summs += m_w * s_x (one rounding: the product of two f16 is exact, so
 *   it does not matter whether the compiler fused it).
 *
 *   single (Q4_0 repacked): llama.cpp of that time repacks Q4_0 weights whose row count
 *   ne[1] is a multiple of 8 into Q4_0x8 blocks at load time whenever ggml_cpu_has_avx2()
 *   (a compile-time test, so AVX-512 builds too): ggml_aarch64_get_optimal_repack_type in
 *   ggml-cpu-aarch64.cpp, AVX2 enabled there by PR #10446 (December 2024); the CPU_AARCH64
 *   extra buffer type is on by default (GGML_USE_CPU_AARCH64,
 *   ggml_backend_cpu_get_extra_buffers_type) and llama's model loader puts every weight whose
 *   MUL_MAT it supports there (an x86 log of b4777 in issue #11204 shows "CPU_AARCH64 model
 *   buffer size" with no option given), so llama-perplexity runs
 *   ggml_gemm_q4_0_8x8_q8_0 (4 activation rows at once) and ggml_gemv_q4_0_8x8_q8_0 (the
 *   M % 4 rows left). Both, in their AVX2 and AVX-512 forms, keep one float per output:
 *   acc = fma((float) dot of the whole block, d_w * d_x, acc), block after block, and store
 *   acc with no final sum. Q4_0 weights with N % 8 != 0 stay in plain buffers and go
 *   through tinyBLAS (lanes).
 *
 * The scale products d_w * d_x (and m_w * s_x) are products of two f16 values, exact in f32,
 * so these steps give llama.cpp's bits for every output. (Not reproduced: a batch of one
 * row, which llamafile_sgemm refuses (n < 2) and ggml_vec_dot_* takes; those keep
 * tinyBLAS's order except ggml_vec_dot_iq4_nl_q8_0, which adds odd and even blocks in two
 * accumulators. llama-perplexity never evaluates such batches.)
 *
 * Paths, chosen at compile time, all giving the same bits (tests/test_qgemm.c):
 *   AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so activations are stored as
 *     q + 128 and each accumulation starts at -128 * (sum of the weight codes it covers).
 *     Lanes: two weight rows share a register (lanes 0-7, 8-15); a thread prepares a tile of
 *     6 weight rows and runs it against every group of 4 activation rows. Single: a tile of
 *     16 weight rows, lane r = row r, one broadcast 4-byte group of activations per step.
 *   AVX2 (+FMA, F16C): signed activations. Lanes: w . x = maddubs(|w|, sign(x, w)) (as
 *     tinyBLAS, exact for codes in [-128, 127] against activations in [-127, 127]; Q4_1 and
 *     Q5_1 codes, 0..31, need no sign step), tiles of 2 weight rows x 4 activation rows, the
 *     8 scale products of a block from one multiplication. Single: tiles of 8 weight rows,
 *     lane r = row r, the nibbles (0..15) times the activations in 16-bit sums, minus
 *     8 * (sum of the block's activation codes).
 *   Plain C (any CPU, no intrinsics): the same sums one output at a time.
 * The SIMD paths unpack a tile's weight blocks once (decode_v) and run it against every
 * activation row, so that unpacking costs little next to the products.
 *
 * Arm (aarch64, __ARM_NEON; with or without the dot-product extension, __ARM_FEATURE_DOTPROD)
 * follows what llama.cpp of that time computes on Arm, which is not the x86 order:
 *   activations: ggml's NEON quantize_row_q8_0 / q8_1 take codes x * (1 / d), d = amax / 127,
 *     where x86 takes x * (127 / amax); the two multipliers can differ in the last bit, and
 *     then, rarely, a code.
 *   tinyBLAS_Q0_ARM (sgemm.cpp; only with sdot, and only Q8_0 and Q4_0): per output one
 *     4-lane register, lane j = sdot of bytes 4j..4j+3 of both 16-byte halves, c = c + lane *
 *     (d_w * d_x) with vmlaq_n_f32, a multiply and an add (GCC's arm_neon.h keeps them apart),
 *     then vaddvq_f32, (c0 + c1) + (c2 + c3).
 *   Q4_0 repacked (with sdot, N % 4 == 0: ggml_aarch64_get_optimal_repack_type picks Q4_0x4,
 *     ggml_gemm_q4_0_4x4_q8_0 / gemv): one float per output, fma(block dot, d_w * d_x, acc),
 *     the "single" steps above.
 *   the pair form (ggml_vec_dot_{q8_0_q8_0, q4_0_q8_0, q5_0_q8_0, q4_1_q8_1, q5_1_q8_1} NEON,
 *     which take Q5_0, Q4_1, Q5_1 always and Q8_0, Q4_0 without sdot): blocks two at a time
 *     into two 4-lane registers (even, odd blocks), lane j = ggml_vdotq_s32 over both halves
 *     (with sdot bytes 4j..4j+3; ggml's fallback without it, bytes 2j, 2j+1, 8+2j, 9+2j), the
 *     same multiply-then-add; sumf = vaddvq(even) + vaddvq(odd), then Q4_1's summs (+= m0 s0
 *     + m1 s1 per pair) or Q5_1's summs0 + summs1; an odd last block in ggml's scalar loop,
 *     whose `+=` lines GCC contracts (Q8_0, Q5_0: fma(sumi, d_w d_x, sumf); Q4_0:
 *     fma(sumi d_w, d_x, sumf); Q4_1, Q5_1: sumf + fma(d_w d_x, sumi, m s)).
 *   IQ4_NL (tinyBLAS takes it on x86 only): with sdot and N % 4 == 0 ggml repacks it into
 *     IQ4_NLx4 blocks (ggml_aarch64_get_optimal_repack_type: iq4_nl_4x4_q8_0) and
 *     ggml_gemm_iq4_nl_4x4_q8_0 / gemv keep one float per output, sumf = vmlaq_f32(sumf, d_w *
 *     d_x, (float) block dot): a multiply then an add. Otherwise ggml_vec_dot_iq4_nl_q8_0's
 *     NEON form: blocks two at a time into one float, `sumf += d0 * sumi0 + d1 * sumi1`,
 *     which GCC contracts to sumf + fma(d0, sumi0, d1 * sumi1) (checked with GCC 12 for
 *     aarch64), an odd last block fma(sumi, d_w * d_x, sumf).
 * Tiles of MR = 4 activation rows x LROWS = 2 weight rows, the weights unpacked by the plain
 * decoders once per tile; the integer dots with sdot, or without it with smull/saddlp (the
 * fallback's lanes) or smull/addp/sadalp (4-byte lanes). tests/test_qgemm.c transcribes these
 * orders for the aarch64 builds.
 */
#include "verify/llm_impl.h"

#include "quant/blocks.h"

#include <stddef.h>

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define QG_VNNI 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QG_AVX2 1
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define QG_NEON 1
#endif

#define QK PARE_QK_LEG /* values per block, weights and activations */
/* where a field of a weight block lies, from the shared block structs (quant/blocks.h) */
#define OFF(type, field) offsetof(pare_block_##type, field)
#define MR 4  /* activation rows per tile (all paths pad M to a multiple) */

#if defined(QG_VNNI)
#define QBIAS 128 /* activation codes stored as q + 128: vpdpbusd's unsigned operand */
#define LROWS 6   /* weight rows per lanes tile: 3 pairs */
#define SROWS 16  /* weight rows per single tile: one per lane of a 512-bit register */
#elif defined(QG_AVX2)
#define QBIAS 0
#define LROWS 2
#define SROWS 8
#elif defined(QG_NEON)
#define QBIAS 0
#define LROWS 2 /* MR x LROWS outputs x 8 float lanes: 16 of the 32 registers */
#define SROWS 8 /* only sizes the work items: NEON runs single on LROWS tiles too */
#else
#define QBIAS 0
#define LROWS 1
#define SROWS 8
#endif

static float f16(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }
static float f16_round(float x) { return pare_fp16_to_fp32(pare_fp32_to_fp16(x)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* An activation code as stored (q + QBIAS, modulo 256) back to q. */
static inline int xcode(uint8_t u) { return (int8_t)(uint8_t)(u - QBIAS); }
/* Where the scalars of activation row r, block l are (d, s, sums): rows in groups of MR, the
 * MR rows' values of a block side by side, so that a tile loads them at once. */
static inline size_t sidx(int nb, int r, int l) { return ((size_t)(r / MR) * nb + l) * MR + r % MR; }

/* ------------------------------------------------------------------------ weight blocks */

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Each decoder gives the 32 codes of a block in value order, its scale d and its min m
 * (value = d * q + m; m = 0 for the types without one). */
typedef void (*decode_fn)(const uint8_t *b, int8_t q[QK], float *d, float *m);

/* Q8_0 {f16 d; int8 qs[32]} */
static void dec_q8_0(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    *d = f16(b), *m = 0;
    memcpy(q, b + OFF(q8_0, qs), QK);
}
/* Q4_0 {f16 d; u8 qs[16]}: value j = (qs[j] & 15) - 8, value j + 16 = (qs[j] >> 4) - 8 */
static void dec_q4_0(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    *d = f16(b), *m = 0;
    const uint8_t *qs = b + OFF(q4_0, qs);
    for (int j = 0; j < 16; j++) q[j] = (int8_t)((qs[j] & 15) - 8), q[j + 16] = (int8_t)((qs[j] >> 4) - 8);
}
/* Q4_1 {f16 d, m; u8 qs[16]} */
static void dec_q4_1(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    const uint8_t *qs = b + OFF(q4_1, qs);
    *d = f16(b), *m = f16(b + OFF(q4_1, m));
    for (int j = 0; j < 16; j++) q[j] = (int8_t)(qs[j] & 15), q[j + 16] = (int8_t)(qs[j] >> 4);
}
/* Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: bit j of qh is the 5th bit of value j; minus 16 */
static void dec_q5_0(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    const uint32_t qh = le32(b + OFF(q5_0, qh));
    const uint8_t *qs = b + OFF(q5_0, qs);
    *d = f16(b), *m = 0;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 15) | ((qh >> j) & 1) << 4) - 16);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
    }
}
/* Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]} */
static void dec_q5_1(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    const uint32_t qh = le32(b + OFF(q5_1, qh));
    const uint8_t *qs = b + OFF(q5_1, qs);
    *d = f16(b), *m = f16(b + OFF(q5_1, m));
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 15) | ((qh >> j) & 1) << 4);
        q[j + 16] = (int8_t)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
    }
}
/* IQ4_NL {f16 d; u8 qs[16]}: nibbles index kvalues_iq4nl */
static void dec_iq4_nl(const uint8_t *b, int8_t q[QK], float *d, float *m) {
    *d = f16(b), *m = 0;
    const uint8_t *qs = b + OFF(iq4_nl, qs);
    for (int j = 0; j < 16; j++) q[j] = kvalues_iq4nl[qs[j] & 15], q[j + 16] = kvalues_iq4nl[qs[j] >> 4];
}

typedef struct {
    pare_type type;
    int bytes;    /* per block of 32: the sizeof of its block struct */
    bool has_min; /* activations Q8_1: the m_w * s_x term */
    decode_fn decode;
} qg_traits;

static const qg_traits TRAITS[] = {
    {PARE_TYPE_Q8_0, sizeof(pare_block_q8_0), false, dec_q8_0},
    {PARE_TYPE_Q4_0, sizeof(pare_block_q4_0), false, dec_q4_0},
    {PARE_TYPE_Q5_0, sizeof(pare_block_q5_0), false, dec_q5_0},
    {PARE_TYPE_IQ4_NL, sizeof(pare_block_iq4_nl), false, dec_iq4_nl},
    {PARE_TYPE_Q4_1, sizeof(pare_block_q4_1), true, dec_q4_1},
    {PARE_TYPE_Q5_1, sizeof(pare_block_q5_1), true, dec_q5_1},
};

static const qg_traits *traits_of(pare_type t) {
    for (size_t i = 0; i < sizeof TRAITS / sizeof TRAITS[0]; i++)
        if (TRAITS[i].type == t) return &TRAITS[i];
    return NULL;
}

/* ------------------------------------------------------------------------ activations */

typedef struct {
    const float *x;
    int ldx, K, nb;
    uint8_t *xq;   /* [Mp][K]: q + QBIAS */
    float *xd;     /* [Mp * nb] at sidx: d as f32 */
    float *xs;     /* [Mp * nb] at sidx: Q8_1's s as f32, or NULL */
    int32_t *xsum; /* [Mp * nb] at sidx: the sum of the codes, or NULL */
} quant_job;

#if defined(QG_VNNI)
/* Sixteen codes x * id rounded to nearest even (nearbyintf in the default mode). */
static inline __m512i codes16(__m512 x, __m512 id) {
    const int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(x, id), rnd));
}

static void quant_block(const float *x, uint8_t *u, float *d, float *s, int32_t *sum) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float dd = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i c0 = codes16(x0, vid), c1 = codes16(x1, vid), k128 = _mm512_set1_epi32(128);
    _mm_storeu_si128((__m128i *)u, _mm512_cvtepi32_epi8(_mm512_add_epi32(c0, k128)));
    _mm_storeu_si128((__m128i *)(u + 16), _mm512_cvtepi32_epi8(_mm512_add_epi32(c1, k128)));
    *d = f16_round(dd);
    if (s || sum) {
        const int t = _mm512_reduce_add_epi32(_mm512_add_epi32(c0, c1));
        if (s) *s = f16_round(dd * (float)t);
        if (sum) *sum = t;
    }
}
#elif defined(QG_AVX2)
/* ggml's AVX2 quantize_row_q8_0 / q8_1 step for step: round, convert, pack to bytes. */
static void quant_block(const float *x, uint8_t *u, float *d, float *s, int32_t *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
           v3 = _mm256_loadu_ps(x + 24);
    __m256 ma = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    ma = _mm256_max_ps(ma, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(ma, 1), _mm256_castps256_ps128(ma));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float dd = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
    const __m256 mul = _mm256_set1_ps(id);
    const int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), rnd));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), rnd));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), rnd));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), rnd));
    /* the packs work within 128-bit halves; the permutation puts the bytes back in order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)u, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    *d = f16_round(dd);
    if (s || sum) {
        const __m256i t = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        const __m128i h2 = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
        const int tot = _mm_cvtsi128_si32(_mm_add_epi32(h2, _mm_shuffle_epi32(h2, 1)));
        if (s) *s = f16_round(dd * (float)tot);
        if (sum) *sum = tot;
    }
}
#elif defined(QG_NEON)
/* ggml's NEON quantize_row_q8_0 / q8_1: d = amax / 127, codes x * (1 / d) rounded to
 * nearest even (vcvtnq). 1 / d is not x86's 127 / amax: the two can differ in the last bit
 * and so, rarely, in a code. */
static void quant_block(const float *x, uint8_t *u, float *d, float *s, int32_t *sum) {
    float32x4_t v[8], m = vdupq_n_f32(0);
    for (int k = 0; k < 8; k++) v[k] = vld1q_f32(x + 4 * k), m = vmaxq_f32(m, vabsq_f32(v[k]));
    const float amax = vmaxvq_f32(m);
    const float dd = amax / 127.f, id = dd != 0 ? 1.0f / dd : 0.f;
    int32x4_t c[8], t = vdupq_n_s32(0);
    for (int k = 0; k < 8; k++) c[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], id)), t = vaddq_s32(t, c[k]);
    for (int k = 0; k < 8; k += 2) {
        const int16x8_t h = vcombine_s16(vmovn_s32(c[k]), vmovn_s32(c[k + 1]));
        vst1_s8((int8_t *)(u + 4 * k), vmovn_s16(h));
    }
    *d = f16_round(dd);
    const int tot = vaddvq_s32(t);
    if (s) *s = f16_round(dd * (float)tot);
    if (sum) *sum = tot;
}
#else
static void quant_block(const float *x, uint8_t *u, float *d, float *s, int32_t *sum) {
    float amax = 0;
    for (int i = 0; i < QK; i++) {
        const float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    const float dd = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
    int tot = 0;
    for (int i = 0; i < QK; i++) {
        const int q = (int)nearbyintf(x[i] * id);
        tot += q;
        u[i] = (uint8_t)(q + QBIAS);
    }
    *d = f16_round(dd);
    if (s) *s = f16_round(dd * (float)tot);
    if (sum) *sum = tot;
}
#endif

static void quant_row(void *ctx, int64_t r, int thread) {
    (void)thread;
    const quant_job *j = ctx;
    const float *x = j->x + (size_t)r * j->ldx;
    uint8_t *u = j->xq + (size_t)r * j->K;
    for (int b = 0; b < j->nb; b++) {
        const size_t k = sidx(j->nb, (int)r, b);
        quant_block(x + (size_t)b * QK, u + (size_t)b * QK, j->xd + k, j->xs ? j->xs + k : NULL,
                    j->xsum ? j->xsum + k : NULL);
    }
}

/* ------------------------------------------------------------------------ products */

typedef struct {
    const qg_traits *tt;
    bool single; /* Q4_0 repacked: one float per output (see the top) */
    int M, N, K, nb;
    const uint8_t *xq;
    const float *xd, *xs;
    const int32_t *xsum;
    const uint8_t *W;
    size_t ldw;
    float *y;
    int ldy;
    int rows_per_item; /* a multiple of the tile's rows */
    void *tiles;       /* NEON: per thread, nb unpacked blocks of a tile */
} prod_job;

static void item_range(const prod_job *g, int64_t item, int *n0, int *n1) {
    *n0 = (int)item * g->rows_per_item;
    *n1 = *n0 + g->rows_per_item < g->N ? *n0 + g->rows_per_item : g->N;
}

#if !defined(QG_NEON)
/* Plain C, one output at a time with the same integers and float steps, for weight rows
 * [n0, n1): each row unpacked once, then taken against every activation row (without memory
 * for that, unpacked again block by block). */
static void item_ref(const prod_job *g, int n0, int n1) {
    int8_t *q = malloc((size_t)g->nb * QK);
    float *dm = malloc(2 * (size_t)g->nb * sizeof *dm);
    const bool whole = q && dm;
    for (int n = n0; n < n1; n++) {
        const uint8_t *w = g->W + (size_t)n * g->ldw;
        for (int l = 0; whole && l < g->nb; l++)
            g->tt->decode(w + (size_t)l * g->tt->bytes, q + (size_t)l * QK, &dm[2 * l], &dm[2 * l + 1]);
        for (int i = 0; i < g->M; i++) {
            const uint8_t *u = g->xq + (size_t)i * g->K;
            float acc[8] = {0}, one = 0, summs = 0;
            for (int l = 0; l < g->nb; l++, u += QK) {
                int8_t own[QK];
                const int8_t *qb = whole ? q + (size_t)l * QK : own;
                float dw, mw;
                if (whole) {
                    dw = dm[2 * l], mw = dm[2 * l + 1];
                } else {
                    g->tt->decode(w + (size_t)l * g->tt->bytes, own, &dw, &mw);
                }
                const float d = dw * g->xd[sidx(g->nb, i, l)];
                int32_t s[8];
                for (int j = 0; j < 8; j++) {
                    int32_t t = 0;
                    for (int b = 4 * j; b < 4 * j + 4; b++) t += xcode(u[b]) * qb[b];
                    s[j] = t;
                }
                if (g->single) {
                    one = fmaf((float)(s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]), d, one);
                } else {
                    for (int j = 0; j < 8; j++) acc[j] = fmaf(d, (float)s[j], acc[j]);
                }
                if (g->xs) summs = fmaf(mw, g->xs[sidx(g->nb, i, l)], summs);
            }
            g->y[(size_t)i * g->ldy + n] = g->single ? one : g->xs ? llm_hsum8(acc) + summs : llm_hsum8(acc);
        }
    }
    free(q), free(dm);
}
#endif

#if defined(QG_VNNI) || defined(QG_AVX2)
/* The weight rows of a tile past N repeat the last row (their outputs are not stored). */
static const uint8_t *wrow(const prod_job *g, int n) { return g->W + (size_t)(n < g->N ? n : g->N - 1) * g->ldw; }

/* 16 bytes of nibbles as 32 values: low nibbles first, then high ones. */
static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i q = _mm_loadu_si128((const __m128i *)p), m4 = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}
/* 32 bits as 32 bytes: 0x10 where the bit is set (the 5th bit of Q5 codes). */
static inline __m256i bits32(const uint8_t *p) {
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)le32(p)), shuf);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                                          _mm256_set1_epi64x(-1));
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}
/* The decoders above in one register: the codes of the block at b, its scale and min. */
static inline __m256i decode_v(pare_type t, const uint8_t *b, float *d, float *m) {
    *d = f16(b), *m = 0;
    switch (t) {
    case PARE_TYPE_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + OFF(q8_0, qs)));
    case PARE_TYPE_Q4_0: return _mm256_sub_epi8(nibbles32(b + OFF(q4_0, qs)), _mm256_set1_epi8(8));
    case PARE_TYPE_Q4_1: *m = f16(b + OFF(q4_1, m)); return nibbles32(b + OFF(q4_1, qs));
    case PARE_TYPE_Q5_0:
        return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b + OFF(q5_0, qs)), bits32(b + OFF(q5_0, qh))),
                               _mm256_set1_epi8(16));
    case PARE_TYPE_Q5_1: *m = f16(b + OFF(q5_1, m)); return _mm256_or_si256(nibbles32(b + OFF(q5_1, qs)), bits32(b + OFF(q5_1, qh)));
    case PARE_TYPE_IQ4_NL: {
        const __m256i kv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
        return _mm256_shuffle_epi8(kv, nibbles32(b + OFF(iq4_nl, qs)));
    }
    default: assert(0 && "a type without traits"); return _mm256_setzero_si256();
    }
}

#endif

#if defined(QG_VNNI)

/* ---------------------------------------------------------------- AVX-512 VNNI */

/* Lanes: a tile of LROWS weight rows for every block, two rows per register: codes, -128 *
 * (sum of each lane's 4 codes), the two rows' scales. */
typedef struct {
    __m512i w[LROWS / 2], negc[LROWS / 2];
    __m512 dw[LROWS / 2];
} ltile;

/* mins: NULL, or per block 16 floats, lane r = row r's min (kept out of the tile: it takes
 * L1 room the other types need) */
static void prep_ltile(const prod_job *g, int n0, ltile *t, float *mins) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    for (int p = 0; p < LROWS / 2; p++) {
        const uint8_t *a = wrow(g, n0 + 2 * p), *b = wrow(g, n0 + 2 * p + 1);
        for (int l = 0; l < g->nb; l++, a += g->tt->bytes, b += g->tt->bytes) {
            ltile *tl = t + l;
            float da, db, ma, mb;
            const __m256i qa = decode_v(g->tt->type, a, &da, &ma), qb = decode_v(g->tt->type, b, &db, &mb);
            const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1);
            tl->w[p] = w;
            const __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w);
            tl->negc[p] = _mm512_sub_epi32(_mm512_setzero_si512(), c);
            tl->dw[p] = _mm512_insertf32x8(_mm512_set1_ps(da), _mm256_set1_ps(db), 1);
            if (mins) mins[16 * l + 2 * p] = ma, mins[16 * l + 2 * p + 1] = mb;
        }
    }
}

/* Outputs of activation rows [m0, m0 + MR) x the tile's rows starting at n0. */
static void run_ltile(const prod_job *g, const ltile *t0, const float *mins, int m0, int n0) {
    enum { NP = LROWS / 2 };
    __m512 acc[MR][NP];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_ps();
    const uint8_t *u = g->xq + (size_t)m0 * g->K;
    const float *xd = g->xd + sidx(g->nb, m0, 0);
    const ltile *t = t0;
    for (int l = 0; l < g->nb; l++, t++) {
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const uint8_t *ub = u + (size_t)i * g->K + l * QK;
            const __m512i ui = _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)ub));
            const __m512 dx = _mm512_set1_ps(xd[(size_t)l * MR + i]);
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) {
                const __m512i s = _mm512_dpbusd_epi32(t->negc[p], ui, t->w[p]);
                acc[i][p] = _mm512_fmadd_ps(_mm512_mul_ps(t->dw[p], dx), _mm512_cvtepi32_ps(s), acc[i][p]);
            }
        }
    }
    /* stored with constant indices: an accumulator read at a variable index would make the
     * compiler keep the array in memory and store it on every block */
    float out[MR][NP][16], summs[MR][LROWS] = {{0}};
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) _mm512_storeu_ps(out[i][p], acc[i][p]);
    if (g->xs) { /* the mins' terms: ggml's scalar sum block after block, a lane per row */
        const float *xs = g->xs + sidx(g->nb, m0, 0);
        __m512 sm[MR];
        for (int i = 0; i < MR; i++) sm[i] = _mm512_setzero_ps();
        for (int l = 0; l < g->nb; l++) {
            const __m512 m = _mm512_loadu_ps(mins + 16 * l);
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++) sm[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(xs[(size_t)l * MR + i]), sm[i]);
        }
        for (int i = 0; i < MR; i++) {
            float tmp[16];
            _mm512_storeu_ps(tmp, sm[i]);
            memcpy(summs[i], tmp, sizeof summs[i]);
        }
    }
    for (int i = 0; i < MR && m0 + i < g->M; i++) {
        float *y = g->y + (size_t)(m0 + i) * g->ldy;
        for (int p = 0; p < NP; p++) {
            const float *a = out[i][p];
            for (int h = 0; h < 2; h++) {
                const int n = n0 + 2 * p + h;
                if (n < g->N) y[n] = g->xs ? llm_hsum8(a + 8 * h) + summs[i][2 * p + h] : llm_hsum8(a + 8 * h);
            }
        }
    }
}

/* Single: SROWS weight rows, lane r = row r; w[k] holds bytes 4k..4k+3 of each row's codes,
 * negc -128 * (sum of each row's 32 codes), dw the rows' scales. */
typedef struct {
    __m512i w[8], negc;
    __m512 dw;
} stile;

static void prep_stile(const prod_job *g, int n0, stile *t) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(QK)); /* row r's block: r * QK bytes on */
    for (int l = 0; l < g->nb; l++) {
        _Alignas(64) int8_t q[SROWS][QK];
        float d[SROWS], m;
        for (int r = 0; r < SROWS; r++) {
            const uint8_t *b = wrow(g, n0 + r) + (size_t)l * g->tt->bytes;
            _mm256_store_si256((__m256i *)q[r], decode_v(g->tt->type, b, &d[r], &m));
        }
        __m512i c = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) { /* lane r: bytes 4k..4k+3 of row r */
            t[l].w[k] = _mm512_i32gather_epi32(idx, (const void *)(q[0] + 4 * k), 1);
            c = _mm512_dpbusd_epi32(c, k128, t[l].w[k]);
        }
        t[l].negc = _mm512_sub_epi32(_mm512_setzero_si512(), c);
        t[l].dw = _mm512_loadu_ps(d);
    }
}

static void run_stile(const prod_job *g, const stile *t, int m0, int n0) {
    __m512 acc[MR];
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    const uint8_t *u = g->xq + (size_t)m0 * g->K;
    const float *xd = g->xd + sidx(g->nb, m0, 0);
    for (int l = 0; l < g->nb; l++, t++) {
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const uint8_t *ub = u + (size_t)i * g->K + l * QK;
            /* two chains: the integer sum is exact in any order */
            __m512i s0 = t->negc, s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 8; k += 2) {
                int32_t a, b;
                memcpy(&a, ub + 4 * k, 4), memcpy(&b, ub + 4 * k + 4, 4);
                s0 = _mm512_dpbusd_epi32(s0, _mm512_set1_epi32(a), t->w[k]);
                s1 = _mm512_dpbusd_epi32(s1, _mm512_set1_epi32(b), t->w[k + 1]);
            }
            const __m512 sc = _mm512_mul_ps(t->dw, _mm512_set1_ps(xd[(size_t)l * MR + i]));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), sc, acc[i]);
        }
    }
    const __mmask16 keep = llm_lanes16(g->N - n0);
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++) /* constant indices: see run_ltile */
        if (m0 + i < g->M) _mm512_mask_storeu_ps(g->y + (size_t)(m0 + i) * g->ldy + n0, keep, acc[i]);
}

#elif defined(QG_AVX2)

/* ---------------------------------------------------------------- AVX2 */

/* Lanes: LROWS weight rows for every block: |codes|, codes, and the scales and mins laid out
 * for the tile's products: lane p * MR + i holds row p's (i = 0..MR-1). */
typedef struct {
    __m256i aw[LROWS], sw[LROWS];
    __m256 dw;
} ltile;
_Static_assert(LROWS * MR == 8, "one scale product per lane");

/* mins: NULL, or per block 8 floats laid out as dw (kept out of the tile: it takes L1 room
 * the other types need) */
static void prep_ltile(const prod_job *g, int n0, ltile *t, float *mins) {
    for (int l = 0; l < g->nb; l++) {
        float d[8], m[8];
        for (int p = 0; p < LROWS; p++) {
            const __m256i w = decode_v(g->tt->type, wrow(g, n0 + p) + (size_t)l * g->tt->bytes, &d[p * MR], &m[p * MR]);
            for (int i = 1; i < MR; i++) d[p * MR + i] = d[p * MR], m[p * MR + i] = m[p * MR];
            t[l].sw[p] = w;
            t[l].aw[p] = _mm256_sign_epi8(w, w); /* -128 becomes 0x80, read unsigned: 128 */
        }
        t[l].dw = _mm256_loadu_ps(d);
        if (mins) memcpy(mins + 8 * l, m, sizeof m);
    }
}

/* The accumulators of a tile. The scale products of a block, d_w * d_x for the tile's MR x
 * LROWS outputs, come from one multiplication; each product then loads its own with a
 * broadcast, which the load ports do, not the two arithmetic ports the dots keep busy.
 * unsigned_w: codes in [0, 31] (Q4_1, Q5_1): maddubs takes them as they are, no sign step. */
static inline __attribute__((always_inline)) void ltile_sums(const prod_job *g, const ltile *t, int m0, bool unsigned_w,
                                                             __m256 acc[MR][LROWS]) {
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *u = g->xq + (size_t)m0 * g->K;
    const float *xd = g->xd + sidx(g->nb, m0, 0);
    for (int l = 0; l < g->nb; l++, t++) {
        _Alignas(32) float sc[8];
        _mm256_store_ps(sc, _mm256_mul_ps(t->dw, _mm256_broadcast_ps((const __m128 *)(xd + (size_t)l * MR))));
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const __m256i x = _mm256_loadu_si256((const void *)(u + (size_t)i * g->K + l * QK));
#pragma GCC unroll 2
            for (int p = 0; p < LROWS; p++) {
                const __m256i sx = unsigned_w ? x : _mm256_sign_epi8(x, t->sw[p]);
                const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(t->aw[p], sx), ones);
                const __m256 d = _mm256_broadcast_ss(sc + p * MR + i);
                acc[i][p] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[i][p]);
            }
        }
    }
}

static void run_ltile(const prod_job *g, const ltile *t0, const float *mins, int m0, int n0) {
    __m256 acc[MR][LROWS];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < LROWS; p++) acc[i][p] = _mm256_setzero_ps();
    if (g->tt->has_min) {
        ltile_sums(g, t0, m0, true, acc);
    } else {
        ltile_sums(g, t0, m0, false, acc);
    }
    /* constant indices: see the VNNI run_ltile */
    float out[MR][LROWS][8], summs[MR][LROWS] = {{0}};
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
        for (int p = 0; p < LROWS; p++) _mm256_storeu_ps(out[i][p], acc[i][p]);
    if (g->xs) { /* the mins' terms: ggml's scalar sum block after block, lane p * MR + i */
        const float *xs = g->xs + sidx(g->nb, m0, 0);
        __m256 sm = _mm256_setzero_ps();
        for (int l = 0; l < g->nb; l++)
            sm = _mm256_fmadd_ps(_mm256_loadu_ps(mins + 8 * l), _mm256_broadcast_ps((const __m128 *)(xs + l * MR)), sm);
        float tmp[8];
        _mm256_storeu_ps(tmp, sm);
        for (int i = 0; i < MR; i++)
            for (int p = 0; p < LROWS; p++) summs[i][p] = tmp[p * MR + i];
    }
    for (int i = 0; i < MR && m0 + i < g->M; i++) {
        float *y = g->y + (size_t)(m0 + i) * g->ldy;
        for (int p = 0; p < LROWS && n0 + p < g->N; p++) {
            const float *a = out[i][p];
            y[n0 + p] = g->xs ? llm_hsum8(a) + summs[i][p] : llm_hsum8(a);
        }
    }
}

/* Single (Q4_0 only): SROWS rows, lane r = row r; uw[k] bytes 4k..4k+3 of each row's codes
 * plus 8 (the nibbles, 0..15, unsigned for maddubs without a sign step), dw the scales. */
typedef struct {
    __m256i uw[8];
    __m256 dw;
} stile;

static void prep_stile(const prod_job *g, int n0, stile *t) {
    const __m256i idx = _mm256_setr_epi32(0, QK, 2 * QK, 3 * QK, 4 * QK, 5 * QK, 6 * QK, 7 * QK);
    for (int l = 0; l < g->nb; l++) {
        _Alignas(32) int8_t q[SROWS][QK];
        float d[SROWS], m;
        for (int r = 0; r < SROWS; r++) {
            const uint8_t *b = wrow(g, n0 + r) + (size_t)l * g->tt->bytes;
            _mm256_store_si256((__m256i *)q[r], decode_v(g->tt->type, b, &d[r], &m));
        }
        for (int k = 0; k < 8; k++) { /* lane r: bytes 4k..4k+3 of row r, plus 8 */
            const __m256i w = _mm256_i32gather_epi32((const int *)(q[0] + 4 * k), idx, 1);
            t[l].uw[k] = _mm256_add_epi8(w, _mm256_set1_epi8(8));
        }
        t[l].dw = _mm256_loadu_ps(d);
    }
}

/* The block dot of row r is sum (u - 8) x = sum u x - 8 sum x; the 16-bit sums of u x stay
 * within 8 groups x 2 x 15 x 127 = 30480 < 2^15. */
static void run_stile(const prod_job *g, const stile *t, int m0, int n0) {
    __m256 acc[MR];
    for (int i = 0; i < MR; i++) acc[i] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *u = g->xq + (size_t)m0 * g->K;
    const float *xd = g->xd + sidx(g->nb, m0, 0);
    const int32_t *xsum = g->xsum + sidx(g->nb, m0, 0);
    for (int l = 0; l < g->nb; l++, t++) {
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const uint8_t *ub = u + (size_t)i * g->K + l * QK;
            __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                int32_t a;
                memcpy(&a, ub + 4 * k, 4);
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(t->uw[k], _mm256_set1_epi32(a)));
            }
            const __m256i corr = _mm256_set1_epi32(8 * xsum[(size_t)l * MR + i]);
            const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(s16, ones), corr);
            const __m256 sc = _mm256_mul_ps(t->dw, _mm256_set1_ps(xd[(size_t)l * MR + i]));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sc, acc[i]);
        }
    }
    /* n0 + SROWS <= N: N % 8 == 0 on this path */
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++) /* constant indices: see the VNNI run_ltile */
        if (m0 + i < g->M) _mm256_storeu_ps(g->y + (size_t)(m0 + i) * g->ldy + n0, acc[i]);
}

#endif

#if defined(QG_NEON)

/* ---------------------------------------------------------------- Arm NEON */

/* ggml_vdotq_s32: acc + in lane j, with the dot-product extension the dot of bytes
 * 4j..4j+3 (sdot), without it bytes 2j, 2j+1, 8+2j, 9+2j (ggml's fallback: the byte
 * products of each half in 16 bits, pairs added). Which bytes share a lane matters where
 * the lanes are floats. */
static inline int32x4_t gdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b)), p1 = vmull_high_s8(a, b);
    return vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
#endif
}

#include "verify/neon_dot_impl.h" /* dot4 */

/* LROWS weight rows of one block: codes, scales, mins (rows past N repeat the last). */
typedef struct {
    int8_t w[LROWS][QK];
    float dw[LROWS], mw[LROWS];
} ntile;

static void prep_ntile(const prod_job *g, int n0, ntile *t) {
    for (int p = 0; p < LROWS; p++) {
        const int n = n0 + p < g->N ? n0 + p : g->N - 1;
        const uint8_t *b = g->W + (size_t)n * g->ldw;
        for (int l = 0; l < g->nb; l++, b += g->tt->bytes) g->tt->decode(b, t[l].w[p], &t[l].dw[p], &t[l].mw[p]);
    }
}

/* The float orders of the NEON path (see the top): one float per output (ORD_SINGLE),
 * tinyBLAS_Q0_ARM (ORD_TB), ggml_vec_dot_*'s pair of accumulators (ORD_PAIR), and IQ4_NL's
 * own two: ggml_vec_dot_iq4_nl_q8_0's one float over pairs of blocks (ORD_NLPAIR) and the
 * IQ4_NLx4 repack's one float per output, a multiply then an add (ORD_NLSINGLE). The pair
 * forms differ per type in their odd last block and their mins. */
enum { ORD_SINGLE, ORD_TB, ORD_PAIR, ORD_NLPAIR, ORD_NLSINGLE };
enum { TAIL_DD, TAIL_Q4_0, TAIL_MIN1, TAIL_MIN2 };

/* Outputs of activation rows [m0, m0 + MR) x weight rows [n0, n0 + LROWS). `ord`, `kind`
 * and `has_min` are constants where this is inlined. Per output, acc[0] and acc[1] are
 * the pair form's even and odd blocks; acc[0] alone is tinyBLAS's register; `one` the
 * single float of the others. vmlaq_n_f32 and vmlaq_f32 are a multiply and an add (GCC's
 * arm_neon.h keeps them apart), written so here. */
static inline __attribute__((always_inline)) void ntile_body(const prod_job *g, const ntile *t0, int m0, int n0,
                                                             const int ord, const int kind, const bool has_min) {
    float32x4_t acc[MR][LROWS][2];
    float one[MR][LROWS], sm[MR][LROWS][2], pend[MR][LROWS], pendd[MR][LROWS];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < LROWS; p++)
            acc[i][p][0] = acc[i][p][1] = vdupq_n_f32(0), one[i][p] = sm[i][p][0] = sm[i][p][1] = pend[i][p] = 0,
            pendd[i][p] = 0;
    const int8_t *u = (const int8_t *)g->xq + (size_t)m0 * g->K;
    const float *xd = g->xd + sidx(g->nb, m0, 0);
    const float *xs = has_min ? g->xs + sidx(g->nb, m0, 0) : NULL;
    /* the pair forms take blocks two at a time; an odd last block is added in scalar */
    const bool pairs = ord == ORD_PAIR || ord == ORD_NLPAIR;
    const int nv = pairs ? g->nb & ~1 : g->nb;
    const ntile *t = t0;
    for (int l = 0; l < nv; l++, t++) {
        int8x16_t w0[LROWS], w1[LROWS];
        for (int p = 0; p < LROWS; p++) w0[p] = vld1q_s8(t->w[p]), w1[p] = vld1q_s8(t->w[p] + 16);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const int8_t *ub = u + (size_t)i * g->K + l * QK;
            const int8x16_t x0 = vld1q_s8(ub), x1 = vld1q_s8(ub + 16);
            const float dx = xd[(size_t)l * MR + i];
#pragma GCC unroll 2
            for (int p = 0; p < LROWS; p++) {
                const float d = t->dw[p] * dx;
                if (ord == ORD_SINGLE) {
                    const int32x4_t a = dot4(dot4(vdupq_n_s32(0), w0[p], x0), w1[p], x1);
                    one[i][p] = fmaf((float)vaddvq_s32(a), d, one[i][p]);
                } else if (ord == ORD_NLSINGLE) { /* sumf = vmlaq_f32(sumf, d, sumi) */
                    const int32x4_t a = dot4(dot4(vdupq_n_s32(0), w0[p], x0), w1[p], x1);
                    one[i][p] = one[i][p] + d * (float)vaddvq_s32(a);
                } else if (ord == ORD_NLPAIR) { /* sumf += d0 * sumi0 + d1 * sumi1: the first product fused */
                    const int32x4_t a = dot4(dot4(vdupq_n_s32(0), w0[p], x0), w1[p], x1);
                    const float s = (float)vaddvq_s32(a);
                    if (l & 1) one[i][p] = one[i][p] + fmaf(pendd[i][p], pend[i][p], d * s);
                    else pendd[i][p] = d, pend[i][p] = s;
                } else {
                    const int32x4_t a = gdot(gdot(vdupq_n_s32(0), w0[p], x0), w1[p], x1);
                    float32x4_t *c = &acc[i][p][ord == ORD_PAIR ? l & 1 : 0];
                    *c = vaddq_f32(*c, vmulq_n_f32(vcvtq_f32_s32(a), d));
                    if (has_min) { /* m_w * s_x: a product of two f16, exact */
                        const float ms = t->mw[p] * xs[(size_t)l * MR + i];
                        if (kind == TAIL_MIN1) { /* summs += m0 * s0 + m1 * s1 */
                            if (l & 1) sm[i][p][0] += pend[i][p] + ms;
                            else pend[i][p] = ms;
                        } else { /* summs0 += m0 * s0, summs1 += m1 * s1 */
                            sm[i][p][l & 1] += ms;
                        }
                    }
                }
            }
        }
    }
    float tail[MR][LROWS] = {{0}};
    if (pairs && nv < g->nb) { /* the odd last block, as ggml's scalar loop adds it */
        const int l = nv;
        for (int i = 0; i < MR; i++) {
            const int8_t *ub = u + (size_t)i * g->K + l * QK;
            for (int p = 0; p < LROWS; p++) {
                int32_t s = 0;
                for (int k = 0; k < QK; k++) s += t->w[p][k] * ub[k];
                tail[i][p] = (float)s;
            }
        }
    }
    for (int i = 0; i < MR && m0 + i < g->M; i++) {
        float *y = g->y + (size_t)(m0 + i) * g->ldy;
        for (int p = 0; p < LROWS && n0 + p < g->N; p++) {
            float r;
            if (ord == ORD_SINGLE || ord == ORD_NLSINGLE) {
                r = one[i][p];
            } else if (ord == ORD_TB) {
                r = vaddvq_f32(acc[i][p][0]);
            } else {
                r = ord == ORD_NLPAIR ? one[i][p] : vaddvq_f32(acc[i][p][0]) + vaddvq_f32(acc[i][p][1]);
                if (kind == TAIL_MIN1) r = r + sm[i][p][0];
                if (kind == TAIL_MIN2) r = r + sm[i][p][0] + sm[i][p][1];
                if (nv < g->nb) {
                    const float dw = t->dw[p], dx = xd[(size_t)nv * MR + i], s = tail[i][p];
                    if (kind == TAIL_DD) r = fmaf(s, dw * dx, r);           /* sumf += sumi * (dw * dx) */
                    else if (kind == TAIL_Q4_0) r = fmaf(s * dw, dx, r);    /* sumf += sumi * dw * dx */
                    else r = r + fmaf(dw * dx, s, t->mw[p] * xs[(size_t)nv * MR + i]); /* += d * sumi + m * s */
                }
            }
            y[n0 + p] = r;
        }
    }
}

/* The order of a product on NEON (the top lists the sources). */
static int neon_order(const prod_job *g) {
    switch (g->tt->type) {
#if defined(__ARM_FEATURE_DOTPROD)
    case PARE_TYPE_Q8_0: return ORD_TB;
    case PARE_TYPE_Q4_0: return g->single ? ORD_SINGLE : ORD_TB;
#else
    case PARE_TYPE_Q8_0:
    case PARE_TYPE_Q4_0: return ORD_PAIR;
#endif
#if defined(__ARM_FEATURE_DOTPROD)
    /* ggml's repack for IQ4_NL on Arm with sdot: IQ4_NLx4 blocks (iq4_nl_4x4) for N % 4 == 0 */
    case PARE_TYPE_IQ4_NL: return g->N % 4 == 0 ? ORD_NLSINGLE : ORD_NLPAIR;
#else
    case PARE_TYPE_IQ4_NL: return ORD_NLPAIR;
#endif
    default: return ORD_PAIR; /* Q5_0, Q4_1, Q5_1 */
    }
}

static void run_ntile(const prod_job *g, int ord, const ntile *t, int m0, int n0) {
    switch (ord) {
    case ORD_TB: ntile_body(g, t, m0, n0, ORD_TB, TAIL_DD, false); break;
    case ORD_SINGLE: ntile_body(g, t, m0, n0, ORD_SINGLE, TAIL_DD, false); break;
    case ORD_NLSINGLE: ntile_body(g, t, m0, n0, ORD_NLSINGLE, TAIL_DD, false); break;
    case ORD_NLPAIR: ntile_body(g, t, m0, n0, ORD_NLPAIR, TAIL_DD, false); break;
    case ORD_PAIR:
        switch (g->tt->type) {
        case PARE_TYPE_Q4_0: ntile_body(g, t, m0, n0, ORD_PAIR, TAIL_Q4_0, false); break;
        case PARE_TYPE_Q4_1: ntile_body(g, t, m0, n0, ORD_PAIR, TAIL_MIN1, true); break;
        case PARE_TYPE_Q5_1: ntile_body(g, t, m0, n0, ORD_PAIR, TAIL_MIN2, true); break;
        default: ntile_body(g, t, m0, n0, ORD_PAIR, TAIL_DD, false); break;
        }
        break;
    }
}

static void prod_item(void *ctx, int64_t item, int thread) {
    const prod_job *g = ctx;
    int n0, n1;
    item_range(g, item, &n0, &n1);
    ntile *t = (ntile *)g->tiles + (size_t)thread * g->nb;
    const int ord = neon_order(g);
    for (int n = n0; n < n1; n += LROWS) {
        prep_ntile(g, n, t);
        for (int m = 0; m < g->M; m += MR) run_ntile(g, ord, t, m, n);
    }
}

#elif defined(QG_VNNI) || defined(QG_AVX2)
static void prod_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const prod_job *g = ctx;
    int n0, n1;
    item_range(g, item, &n0, &n1);
    const size_t tsize = g->single ? sizeof(stile) : sizeof(ltile), tbytes = ((size_t)g->nb * tsize + 63) / 64 * 64;
    const size_t mbytes = g->xs ? (size_t)g->nb * 16 * sizeof(float) : 0;
    void *t = aligned_alloc(64, tbytes + mbytes);
    if (!t) { /* out of memory: the plain way, same numbers */
        item_ref(g, n0, n1);
        return;
    }
    float *mins = g->xs ? (float *)((char *)t + tbytes) : NULL;
    for (int n = n0; n < n1; n += g->single ? SROWS : LROWS) {
        if (g->single) {
            prep_stile(g, n, t);
            for (int m = 0; m < g->M; m += MR) run_stile(g, t, m, n);
        } else {
            prep_ltile(g, n, t, mins);
            for (int m = 0; m < g->M; m += MR) run_ltile(g, t, mins, m, n);
        }
    }
    free(t);
}
#else
static void prod_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const prod_job *g = ctx;
    int n0, n1;
    item_range(g, item, &n0, &n1);
    item_ref(g, n0, n1);
}
#endif

size_t llm_qgemm_ws(int M, int K) {
    const size_t Mp = (size_t)(M + MR - 1) / MR * MR;
    return Mp * (size_t)K + 3 * Mp * (size_t)(K / QK) * sizeof(float) + 64;
}

bool llm_qgemm_handles(pare_type wtype) { return traits_of(wtype) != NULL; }

bool llm_qgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               size_t ldw, float *y, int ldy, void *ws) {
    const qg_traits *tt = traits_of(wtype);
    if (!tt || K % QK || M <= 0 || N <= 0) return false;
    const int nb = K / QK, Mp = (M + MR - 1) / MR * MR;
    uint8_t *xq = ws;
    float *xd = (float *)(((uintptr_t)(xq + (size_t)Mp * K) + 63) & ~(uintptr_t)63);
#if defined(QG_NEON) && defined(__ARM_FEATURE_DOTPROD)
    /* ggml's repack for Q4_0 on Arm with sdot: Q4_0x4 blocks (q4_0_4x4) for N % 4 == 0 */
    const bool single = wtype == PARE_TYPE_Q4_0 && N % 4 == 0;
#elif defined(QG_NEON)
    const bool single = false; /* no repack without sdot: ggml_vec_dot_q4_0_q8_0 */
#else
    const bool single = wtype == PARE_TYPE_Q4_0 && N % 8 == 0;
#endif
    float *xs = tt->has_min ? xd + (size_t)Mp * nb : NULL;
    int32_t *xsum = single ? (int32_t *)(xd + 2 * (size_t)Mp * nb) : NULL;
    /* padding rows of the last tile: zero codes and scalars, never stored */
    memset(xq + (size_t)M * K, QBIAS, (size_t)(Mp - M) * K);
    for (int r = M; r < Mp; r++)
        for (int l = 0; l < nb; l++) {
            const size_t k = sidx(nb, r, l);
            xd[k] = 0;
            if (xs) xs[k] = 0;
            if (xsum) xsum[k] = 0;
        }
    quant_job qj = {x, ldx, K, nb, xq, xd, xs, xsum};
    pare_pool_for(pool, M, quant_row, &qj);
    const int threads = pare_pool_threads(pool), tile = single ? SROWS : LROWS;
    /* a few items per thread: uneven finishing evens out, tiles stay whole */
    int items = threads > 1 ? 4 * threads : 1;
    int per = (N + items - 1) / items;
    per = (per + tile - 1) / tile * tile;
    items = (N + per - 1) / per;
    prod_job g = {tt, single, M, N, K, nb, xq, xd, xs, xsum, W, ldw, y, ldy, per, NULL};
#if defined(QG_NEON)
    g.tiles = malloc((size_t)threads * nb * sizeof(ntile));
    if (!g.tiles) return false; /* the caller takes the f32 path */
#endif
    pare_pool_for(pool, items, prod_item, &g);
#if defined(QG_NEON)
    free(g.tiles);
#endif
    return true;
}
