/* tests/kq_ref.h - what the tests of the Q8_K-activation products (test_kgemm, test_iqgemm)
 * share: a seeded generator, the kernels' level, and plain transcriptions of ggml's
 * nearest_int and quantize_row_q8_K_ref, written apart from verify/ so that they check it. */
#ifndef PARE_TESTS_KQ_REF_H
#define PARE_TESTS_KQ_REF_H

#include "core/core.h"
#include "core/isa.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)next_u32() / 4294967296.0f * 2 - 1; }

/* The path that runs: the kernels' level of this process (core/isa.h; tests/run.sh runs the
 * test at every level the CPU has). */
static const char *build_path(void) { return pare_isa_name(pare_isa_active()); }

/* ---------------------------------------------------------------- references */

/* ggml's nearest_int: round to nearest even through the float adder (NaN gives 0). */
static int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* block_q8_K as quantize_row_q8_K_ref makes it. */
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} ref_q8K;

static void ref_q8_K(const float *x, ref_q8K *y) {
    float amax = 0, max = 0;
    for (int i = 0; i < 256; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    memset(y, 0, sizeof *y);
    if (amax == 0) return;
    const float iscale = -127.f / max;
    for (int i = 0; i < 256; i++) {
        const int v = nearest_int(iscale * x[i]);
        y->qs[i] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += y->qs[16 * j + i];
        y->bsums[j] = (int16_t)s;
    }
    y->d = 1 / iscale;
}

static float h2f(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }

#endif
