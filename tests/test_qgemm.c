/* tests/test_qgemm.c - the integer products with 8-bit-activation weights (verify/qgemm.c)
 * against plain transcriptions of what llama.cpp (February 2025) computes on x86 with AVX2 or
 * AVX-512, for each weight type:
 *   - the activations by quantize_row_q8_0 / quantize_row_q8_1 (AVX2 forms: round to nearest
 *     even; Q8_1's s = f16(f32 d * sum of codes));
 *   - Q8_0, Q5_0, IQ4_NL, and Q4_0 with N % 8 != 0: tinyBLAS_Q0_AVX, eight lanes of 4-byte
 *     dots, fma(d_w * d_x, dot, lane) block after block, hsum of a 256-bit register;
 *   - Q4_0 with N % 8 == 0: the weights repacked into Q4_0x8 blocks as
 *     make_block_q4_0x8 does (8-byte chunks of 8 rows interleaved, nibbles xor 8), then per
 *     output one float, fma((float) block dot, d_w * d_x, acc), as ggml_gemm_q4_0_8x8_q8_0 /
 *     ggml_gemv_q4_0_8x8_q8_0 do in their AVX2 forms;
 *   - Q4_1, Q5_1: ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1 (AVX2): the lanes as above, then
 *     hsum + summs, summs += m_w * s_x block after block.
 * Built for aarch64 (__ARM_NEON) the references are the Arm ones instead (verify/qgemm.c's top):
 * NEON activation codes (id = 1 / d); with sdot tinyBLAS_Q0_ARM for Q8_0 and Q4_0, and the
 * Q4_0x4 repack's one float per output for Q4_0 with N % 4 == 0; ggml_vec_dot_*'s NEON pair
 * form for Q5_0, Q4_1, Q5_1 (and Q8_0, Q4_0 without sdot), with the fallback's lanes
 * without sdot; IQ4_NL: ggml_vec_dot_iq4_nl_q8_0's NEON form (one float over pairs of blocks),
 * or with sdot and N % 4 == 0 the IQ4_NLx4 repack's one float per output (multiply, add).
 * The weight codes are read here the way ggml's reference dequantizers read them, not with
 * qgemm.c's decoders. Bit-exact equality is required for shapes that leave partial tiles of
 * every path, on one thread and on a pool. Which path runs is the kernels' level of the process
 * (core/isa.h); the test prints it. */
#include "core/core.h"
#include "core/isa.h"
#include "verify/llm_impl.h"
#include "th.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The path that runs: the kernels' level of this process (core/isa.h; tests/run.sh runs the
 * test at every level the CPU has). */
#define PATH_NAME pare_isa_name(pare_isa_active())

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)next_u32() / 4294967296.0f * 2 - 1; }
static float h2f(const uint8_t *p) { return pare_fp16_to_fp32((uint16_t)(p[0] | p[1] << 8)); }
static float f16r(float x) { return pare_fp16_to_fp32(pare_fp32_to_fp16(x)); }
static void put_f16(uint8_t *p, float v) {
    const uint16_t h = pare_fp32_to_fp16(v);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}
static float hsum8(const float a[8]) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

typedef struct {
    pare_type type;
    const char *name;
    int bytes;
} wtype;

static const wtype TYPES[] = {
    {PARE_TYPE_Q8_0, "Q8_0", 34}, {PARE_TYPE_Q4_0, "Q4_0", 18},     {PARE_TYPE_Q5_0, "Q5_0", 22},
    {PARE_TYPE_IQ4_NL, "IQ4_NL", 18}, {PARE_TYPE_Q4_1, "Q4_1", 20}, {PARE_TYPE_Q5_1, "Q5_1", 24},
};

/* Random blocks: f16 scales (and mins) of varied size, random codes (Q8_0: in [-127, 127],
 * as ggml writes them; the nibble types: every bit pattern). */
static uint8_t *make_weights(const wtype *t, int N, int K) {
    const int nb = K / 32;
    uint8_t *w = malloc((size_t)N * nb * t->bytes);
    for (size_t b = 0; b < (size_t)N * nb; b++) {
        uint8_t *p = w + b * t->bytes;
        for (int i = 0; i < t->bytes; i++) p[i] = (uint8_t)next_u32();
        put_f16(p, ldexpf(1.0f + frand() * 0.5f, -8 + (int)(next_u32() % 6)));
        if (t->type == PARE_TYPE_Q4_1 || t->type == PARE_TYPE_Q5_1) put_f16(p + 2, frand() * 0.1f);
        if (t->type == PARE_TYPE_Q8_0)
            for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)(int8_t)((int)(next_u32() % 255) - 127);
    }
    return w;
}

/* ------------------------------------------------------------------------ llama.cpp */

typedef struct {
    int8_t qs[32];
    float d, s; /* d as stored (f16), s of Q8_1 */
} act_block;

/* quantize_row_q8_0 / q8_1 on x86 (AVX2): id = 127 / amax; on Arm (NEON): id = 1 / d. */
static void quantize_act(const float *x, act_block *a) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
#if defined(__ARM_NEON)
    const float d = amax / 127.f, id = d != 0.0f ? 1.0f / d : 0.0f;
#else
    const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
#endif
    int sum = 0;
    for (int i = 0; i < 32; i++) a->qs[i] = (int8_t)nearbyintf(x[i] * id), sum += a->qs[i];
    a->d = f16r(d);
    a->s = f16r(d * (float)sum);
}

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Value j of a weight block as ggml's dequantize_row_* reads it (without the scale), and
 * the block's scale and min. */
static int wcode(pare_type t, const uint8_t *b, int j) {
    const int lo = j < 16, jj = j % 16;
    uint32_t qh;
    switch (t) {
    case PARE_TYPE_Q8_0: return (int8_t)b[2 + j];
    case PARE_TYPE_Q4_0: return (lo ? (b[2 + jj] & 0x0F) : (b[2 + jj] >> 4)) - 8;
    case PARE_TYPE_Q4_1: return lo ? (b[4 + jj] & 0x0F) : (b[4 + jj] >> 4);
    case PARE_TYPE_IQ4_NL: return kvalues_iq4nl[lo ? (b[2 + jj] & 0x0F) : (b[2 + jj] >> 4)];
    case PARE_TYPE_Q5_0:
        memcpy(&qh, b + 2, 4);
        return lo ? ((b[6 + jj] & 0x0F) | (((qh >> jj) << 4) & 0x10)) - 16
                  : ((b[6 + jj] >> 4) | ((qh >> (jj + 12)) & 0x10)) - 16;
    case PARE_TYPE_Q5_1:
        memcpy(&qh, b + 4, 4);
        return lo ? ((b[8 + jj] & 0x0F) | (((qh >> jj) << 4) & 0x10)) : ((b[8 + jj] >> 4) | ((qh >> (jj + 12)) & 0x10));
    default: return 0;
    }
}

/* tinyBLAS_Q0_AVX, and the AVX2 ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1 (has_min). */
static float ref_lanes(pare_type t, int bytes, const act_block *a, const uint8_t *w, int nb, bool has_min) {
    float lane[8] = {0}, summs = 0;
    for (int l = 0; l < nb; l++, w += bytes) {
        const float dw = h2f(w);
        for (int j = 0; j < 8; j++) {
            int s = 0;
            for (int i = 4 * j; i < 4 * j + 4; i++) s += wcode(t, w, i) * a[l].qs[i];
            lane[j] = fmaf(dw * a[l].d, (float)s, lane[j]);
        }
        if (has_min) summs += h2f(w + 2) * a[l].s;
    }
    return has_min ? hsum8(lane) + summs : hsum8(lane);
}

#if defined(__ARM_NEON)
/* The Arm orders (ggml of February 2025, NEON). vmlaq_n_f32 is a multiply then an add
 * (GCC's arm_neon.h keeps them apart); vaddvq_f32 adds (a0 + a1) + (a2 + a3); ggml's scalar
 * `sumf += x * y` lines are fused (GCC contracts them in its default GNU C mode). */
static float hsum4(const float c[4]) { return (c[0] + c[1]) + (c[2] + c[3]); }

/* Whether the kernels run at the dotprod level (sdot; core/isa.h): which order is llama.cpp's
 * is decided by the level the process runs, not by how this test was compiled. */
static bool dotprod_level(void) { return pare_isa_active() == PARE_ISA_DOTPROD; }

/* Byte k of a 16-byte half falls in lane (k % 16) / 4 with sdot; in ggml's fallback for
 * ggml_vdotq_s32 (no sdot) in lane (k % 8) / 2. */
static int glane(int k) { return dotprod_level() ? (k % 16) / 4 : (k % 8) / 2; }

/* tinyBLAS_Q0_ARM (sdot builds: Q8_0, and Q4_0 not repacked): one 4-lane register,
 * lane j = dots of bytes 4j..4j+3 of both halves, c = c + lane * (d_w * d_x). */
static float ref_tb(pare_type t, int bytes, const act_block *a, const uint8_t *w, int nb) {
    float c[4] = {0};
    for (int l = 0; l < nb; l++, w += bytes) {
        int s[4] = {0};
        for (int k = 0; k < 32; k++) s[(k % 16) / 4] += wcode(t, w, k) * a[l].qs[k];
        const float d = h2f(w) * a[l].d;
        for (int j = 0; j < 4; j++) {
            const float pr = (float)s[j] * d;
            c[j] = c[j] + pr;
        }
    }
    return hsum4(c);
}

/* ggml_vec_dot_{q8_0_q8_0, q4_0_q8_0, q5_0_q8_0, q4_1_q8_1, q5_1_q8_1} (NEON): blocks two at
 * a time into two 4-lane registers (even, odd blocks), lanes of ggml_vdotq_s32 over both
 * halves; sumf = hsum(even) + hsum(odd) (+ the mins: Q4_1 summs += m0 s0 + m1 s1; Q5_1
 * summs0, summs1 apart, added in that order); an odd last block in scalar, each type its
 * own way. */
static float ref_pair(pare_type t, int bytes, const act_block *a, const uint8_t *w, int nb) {
    float c[2][4] = {{0}}, summs = 0, summs2[2] = {0};
    const int nv = nb & ~1;
    const bool q41 = t == PARE_TYPE_Q4_1, q51 = t == PARE_TYPE_Q5_1;
    for (int l = 0; l < nv; l += 2) {
        for (int h = 0; h < 2; h++) {
            const uint8_t *b = w + (size_t)(l + h) * bytes;
            int s[4] = {0};
            for (int k = 0; k < 32; k++) s[glane(k)] += wcode(t, b, k) * a[l + h].qs[k];
            const float d = h2f(b) * a[l + h].d;
            for (int j = 0; j < 4; j++) {
                const float pr = (float)s[j] * d;
                c[h][j] = c[h][j] + pr;
            }
            if (q51) summs2[h] += h2f(b + 2) * a[l + h].s;
        }
        if (q41) summs += h2f(w + (size_t)l * bytes + 2) * a[l].s + h2f(w + (size_t)(l + 1) * bytes + 2) * a[l + 1].s;
    }
    float r = hsum4(c[0]) + hsum4(c[1]);
    if (q41) r = r + summs;
    if (q51) r = r + summs2[0] + summs2[1];
    if (nv < nb) {
        const uint8_t *b = w + (size_t)nv * bytes;
        int s = 0;
        for (int k = 0; k < 32; k++) s += wcode(t, b, k) * a[nv].qs[k];
        const float dw = h2f(b), dx = a[nv].d;
        if (q41 || q51) r = r + fmaf(dw * dx, (float)s, h2f(b + 2) * a[nv].s);
        else if (t == PARE_TYPE_Q4_0) r = fmaf((float)s * dw, dx, r);
        else r = fmaf((float)s, dw * dx, r);
    }
    return r;
}

/* The dot of one IQ4_NL block with its activations. */
static int nl_dot(const uint8_t *b, const act_block *a) {
    int s = 0;
    for (int k = 0; k < 32; k++) s += wcode(PARE_TYPE_IQ4_NL, b, k) * a->qs[k];
    return s;
}

/* ggml_vec_dot_iq4_nl_q8_0 (NEON): one float, blocks two at a time,
 * sumf += d0 * sumi0 + d1 * sumi1, which GCC contracts to sumf + fma(d0, sumi0, d1 * sumi1);
 * an odd last block in the scalar loop, sumf += d * sumi (fused). */
static float ref_nl_pair(const act_block *a, const uint8_t *w, int nb) {
    float sumf = 0;
    int l = 0;
    for (; l + 1 < nb; l += 2) {
        const uint8_t *b0 = w + (size_t)l * 18, *b1 = b0 + 18;
        const float d0 = h2f(b0) * a[l].d, d1 = h2f(b1) * a[l + 1].d;
        sumf = sumf + fmaf(d0, (float)nl_dot(b0, &a[l]), d1 * (float)nl_dot(b1, &a[l + 1]));
    }
    for (; l < nb; l++) sumf = fmaf(a[l].d * h2f(w + (size_t)l * 18), (float)nl_dot(w + (size_t)l * 18, &a[l]), sumf);
    return sumf;
}

/* ggml_gemm_iq4_nl_4x4_q8_0 / gemv (IQ4_NL repacked into IQ4_NLx4 on sdot builds, N % 4 ==
 * 0): one float per output, sumf = vmlaq_f32(sumf, d_w * d_x, block dot), a multiply then an
 * add. */
static float ref_nl_single(const act_block *a, const uint8_t *w, int nb) {
    float sumf = 0;
    for (int l = 0; l < nb; l++) {
        const float pr = h2f(w + (size_t)l * 18) * a[l].d * (float)nl_dot(w + (size_t)l * 18, &a[l]);
        sumf = sumf + pr;
    }
    return sumf;
}

/* ggml_gemm_q4_0_4x4_q8_0 / gemv (Q4_0 repacked into Q4_0x4 on sdot builds, N % 4 == 0):
 * one float per output, fma(block dot, d_w * d_x, acc). */
static float ref_single(const act_block *a, const uint8_t *w, int nb) {
    float acc = 0;
    for (int l = 0; l < nb; l++, w += 18) {
        int s = 0;
        for (int k = 0; k < 32; k++) s += wcode(PARE_TYPE_Q4_0, w, k) * a[l].qs[k];
        acc = fmaf((float)s, h2f(w) * a[l].d, acc);
    }
    return acc;
}
#endif

#if !defined(__ARM_NEON)
/* Q4_0 rows [n0, n0 + 8) repacked as make_block_q4_0x8 lays them out: per block l, d[8]
 * then 128 bytes, chunk c (8 bytes) = bytes 8 (c / 8).. of row c % 8's qs, xor 0x88. */
static void repack_q4_0x8(const uint8_t *W, size_t ldw, int n0, int nb, uint8_t *out /* nb * 144 */) {
    for (int l = 0; l < nb; l++) {
        uint8_t *o = out + (size_t)l * 144;
        for (int r = 0; r < 8; r++) memcpy(o + 2 * r, W + (size_t)(n0 + r) * ldw + (size_t)l * 18, 2);
        for (int c = 0; c < 16; c++) {
            const uint8_t *src = W + (size_t)(n0 + c % 8) * ldw + (size_t)l * 18 + 2 + (c / 8) * 8;
            for (int k = 0; k < 8; k++) o[16 + 8 * c + k] = src[k] ^ 0x88;
        }
    }
}

/* ggml_gemv_q4_0_8x8_q8_0 / ggml_gemm_q4_0_8x8_q8_0 (AVX2) for output column r of a
 * repacked group: low nibbles are values 0-15, high nibbles 16-31, each a signed 4-bit
 * number (the xor made them so). */
static float ref_repacked(const uint8_t *packed, int r, const act_block *a, int nb) {
    float acc = 0;
    for (int l = 0; l < nb; l++) {
        const uint8_t *o = packed + (size_t)l * 144;
        int sum = 0;
        for (int c = r; c < 16; c += 8)
            for (int k = 0; k < 8; k++) {
                const int byte = o[16 + 8 * c + k], b = (c / 8) * 8 + k;
                const int lo = (byte & 15) < 8 ? (byte & 15) : (byte & 15) - 16;
                const int hi = (byte >> 4) < 8 ? (byte >> 4) : (byte >> 4) - 16;
                sum += lo * a[l].qs[b] + hi * a[l].qs[16 + b];
            }
        acc = fmaf((float)sum, h2f(o + 2 * r) * a[l].d, acc);
    }
    return acc;
}

#endif

/* ------------------------------------------------------------------------ checks */

/* Outputs where the repacked Q4_0 order and tinyBLAS's give different floats, over all
 * checks: the test can tell the two orders apart only if some do. */
static int64_t order_matters;
#if defined(__ARM_NEON)
/* IQ4_NL on Arm: outputs where its NEON order differs from the x86 lanes, and (sdot) where
 * the repacked order differs from ggml_vec_dot_iq4_nl_q8_0's. */
static int64_t nl_vs_x86, nl_repack_matters;
#endif

/* extreme: activations of equal magnitude (every code +-127) and weight rows of the smallest
 * or the largest codes (Q8_0: -128, which ggml never writes, and 127; the nibble types: all
 * bits clear or set), the largest integer sums each path can meet. */
static void check_shape_x(pare_pool *pool, const wtype *t, int M, int N, int K, bool extreme) {
    const int nb = K / 32;
    const size_t ldw = (size_t)nb * t->bytes;
    const bool has_min = t->type == PARE_TYPE_Q4_1 || t->type == PARE_TYPE_Q5_1;
#if defined(__ARM_NEON)
    const bool repacked = dotprod_level() && t->type == PARE_TYPE_Q4_0 && N % 4 == 0;
#else
    const bool repacked = t->type == PARE_TYPE_Q4_0 && N % 8 == 0;
#endif
    float *x = malloc((size_t)M * K * sizeof *x), *y = malloc((size_t)M * N * sizeof *y);
    for (int i = 0; i < M * K; i++) x[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < 32 && i < K; i++) x[i] = 0; /* a block of zeros: d = 0 */
    uint8_t *w = make_weights(t, N, K);
    if (extreme) {
        for (int i = 0; i < M * K; i++) x[i] = (i / 32 + i / K) % 2 ? 3.0f : -3.0f;
        for (size_t b = 0; b < (size_t)N * nb; b++) {
            const int off = t->type == PARE_TYPE_Q4_1 || t->type == PARE_TYPE_Q5_1 ? 4 : 2;
            const int hi = t->type == PARE_TYPE_Q8_0 ? 0x7F : 0xFF, lo = t->type == PARE_TYPE_Q8_0 ? 0x80 : 0x00;
            memset(w + b * t->bytes + off, (b / nb) % 2 ? hi : lo, (size_t)t->bytes - off);
        }
    }
    void *ws = malloc(llm_qgemm_ws(M, K));
    CHECK(llm_qgemm(pool, t->type, M, N, K, x, K, w, ldw, y, N, ws));
    act_block *a = malloc((size_t)M * nb * sizeof *a);
    for (int i = 0; i < M; i++)
        for (int l = 0; l < nb; l++) quantize_act(x + (size_t)i * K + (size_t)l * 32, &a[(size_t)i * nb + l]);
    uint8_t *packed = malloc((size_t)nb * 144);
    int64_t bad = 0;
    double worst = 0;
    for (int n0 = 0; n0 < N; n0 += 8) {
#if !defined(__ARM_NEON)
        if (repacked) repack_q4_0x8(w, ldw, n0, nb, packed);
#endif
        for (int n = n0; n < n0 + 8 && n < N; n++)
            for (int i = 0; i < M; i++) {
                const act_block *ai = a + (size_t)i * nb;
                const uint8_t *wn = w + (size_t)n * ldw;
#if defined(__ARM_NEON)
                /* Q8_0, Q4_0: tinyBLAS with sdot, else the pair form; Q5_0, Q4_1, Q5_1: the
                 * pair form; IQ4_NL: its own pair form, or with sdot and N % 4 == 0 its
                 * repacked order */
                const pare_type ty = t->type;
                float lanes = ref_lanes(ty, t->bytes, ai, wn, nb, has_min);
                if (ty == PARE_TYPE_IQ4_NL) {
                    const float pair = ref_nl_pair(ai, wn, nb), single = ref_nl_single(ai, wn, nb);
                    const float nl = dotprod_level() && N % 4 == 0 ? single : pair;
                    if (memcmp(&nl, &lanes, sizeof nl)) nl_vs_x86++;
                    if (dotprod_level() && memcmp(&single, &pair, sizeof pair)) nl_repack_matters++;
                    lanes = nl;
                } else if (dotprod_level() && (ty == PARE_TYPE_Q8_0 || ty == PARE_TYPE_Q4_0))
                    lanes = ref_tb(ty, t->bytes, ai, wn, nb);
                else
                    lanes = ref_pair(ty, t->bytes, ai, wn, nb);
                const float r = repacked ? ref_single(ai, wn, nb) : lanes;
                (void)packed;
#else
                const float lanes = ref_lanes(t->type, t->bytes, ai, wn, nb, has_min);
                const float r = repacked ? ref_repacked(packed, n - n0, ai, nb) : lanes;
#endif
                if (repacked && memcmp(&r, &lanes, sizeof r)) order_matters++;
                const float v = y[(size_t)i * N + n];
                if (memcmp(&r, &v, sizeof r)) bad++, worst = fmax(worst, fabs((double)r - v));
            }
    }
    CHECK_MSG(bad == 0, "%s%s M %d N %d K %d, %d threads: %lld of %lld outputs differ (largest %g)", t->name,
              repacked ? " (repacked)" : "", M, N, K, pare_pool_threads(pool), (long long)bad, (long long)M * N, worst);
    free(x), free(y), free(w), free(ws), free(a), free(packed);
}

static void check_shape(pare_pool *pool, const wtype *t, int M, int N, int K) {
    check_shape_x(pool, t, M, N, K, false);
}

static void test_qgemm_bit_exact(void) {
    printf("  path: %s\n", PATH_NAME);
    pare_pool *pool = pare_pool_new(2);
    CHECK(pool);
    /* partial tiles of every path: M % 4; N odd, N % 6, N % 16 == 8 with N % 8 == 0 (Q4_0
     * repacked: a half tile on AVX-512), N % 8 != 0 (Q4_0 through tinyBLAS) */
    const int shapes[][3] = {{1, 1, 32},    {5, 7, 64},     {4, 6, 96},      {3, 8, 64},    {6, 24, 128},
                             {13, 25, 256}, {9, 40, 320},   {37, 131, 768},  {17, 96, 512}, {64, 256, 2048}};
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        CHECK_MSG(llm_qgemm_handles(TYPES[ti].type), "%s not handled", TYPES[ti].name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            check_shape(NULL, &TYPES[ti], shapes[s][0], shapes[s][1], shapes[s][2]);
            check_shape(pool, &TYPES[ti], shapes[s][0], shapes[s][1], shapes[s][2]);
        }
        check_shape_x(pool, &TYPES[ti], 9, 40, 512, true);
        check_shape_x(NULL, &TYPES[ti], 5, 13, 256, true);
    }
#if defined(__ARM_NEON)
    if (dotprod_level()) /* without sdot Q4_0 is not repacked */
#endif
        CHECK_MSG(order_matters > 0, "the repacked Q4_0 order never differed from tinyBLAS's: the test cannot tell");
    printf("  repacked Q4_0: %lld outputs differ between llama.cpp's two float orders\n", (long long)order_matters);
#if defined(__ARM_NEON)
    printf("  IQ4_NL: %lld outputs differ from the x86 lanes, %lld between the repacked and the vec_dot orders\n",
           (long long)nl_vs_x86, (long long)nl_repack_matters);
    CHECK_MSG(nl_vs_x86 > 0, "IQ4_NL's NEON orders never differed from the x86 lanes: the test cannot tell");
    if (dotprod_level())
        CHECK_MSG(nl_repack_matters > 0, "IQ4_NL's repacked order never differed from vec_dot's: the test cannot tell");
#endif
    pare_pool_free(pool);
}

static void test_qgemm_refuses(void) {
    float x[256] = {0}, y[2] = {0};
    uint8_t w[256] = {0};
    char ws[4096];
    /* K not a multiple of the block: refused, the caller takes the f32 path */
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q8_0, 1, 1, 48, x, 48, w, 68, y, 1, ws));
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q4_1, 1, 1, 48, x, 48, w, 40, y, 1, ws));
    /* types without such a product (K-quants have their own, verify/kgemm.c) */
    CHECK(!llm_qgemm_handles(PARE_TYPE_F32) && !llm_qgemm_handles(PARE_TYPE_Q4_K));
    CHECK(!llm_qgemm_handles(PARE_TYPE_Q6_K) && !llm_qgemm_handles(PARE_TYPE_IQ4_XS));
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q6_K, 1, 1, 256, x, 256, w, 210, y, 1, ws));
    CHECK(!llm_qgemm(NULL, PARE_TYPE_F32, 1, 1, 32, x, 32, w, 128, y, 1, ws));
    /* empty shapes */
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q8_0, 0, 1, 32, x, 32, w, 34, y, 1, ws));
    CHECK(!llm_qgemm(NULL, PARE_TYPE_Q8_0, 1, 0, 32, x, 32, w, 34, y, 1, ws));
    CHECK(y[0] == 0 && y[1] == 0);
}

int main(void) {
    TH_RUN(test_qgemm_bit_exact);
    TH_RUN(test_qgemm_refuses);
    return th_done();
}
