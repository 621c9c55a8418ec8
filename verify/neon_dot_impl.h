/* verify/neon_dot_impl.h - the NEON byte dot product of the integer kernels (qgemm.c, kgemm.c,
 * iqgemm.c include it in their Arm sections). */
#ifndef PARE_VERIFY_NEON_DOT_IMPL_H
#define PARE_VERIFY_NEON_DOT_IMPL_H

#include <arm_neon.h>

/* acc + the dots of bytes 4j..4j+3 of a and b in lane j: one sdot with the dot-product
 * extension; without, byte products in 16 bits, pairs added, pairs of pairs into the 32-bit
 * lanes. Exact while a pair of products fits int16 (|a x b| <= 128 x 127 for every caller).
 * ggml's fallback groups other bytes into its lanes, but the kernels add a lane's whole
 * register before any float step, so the grouping does not matter. */
static inline int32x4_t dot4(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    return vpadalq_s16(acc, vpaddq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vmull_high_s8(a, b)));
#endif
}

#endif
