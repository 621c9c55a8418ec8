/* bench/quant_speed.c - quantization / dequantization throughput per type (not part of
 * make test).
 *
 *   make build/libpare.a
 *   cc -O2 -march=native -std=c11 -D_DEFAULT_SOURCE -I. bench/quant_speed.c build/libpare.a \
 *      -lpthread -lm -o build/quant_speed && ./build/quant_speed [threads] [MB]
 *
 * For each type prints MB/s of f32 input consumed by quantization (scalar reference on one
 * thread, fast path on one thread and on `threads` threads) and of f32 output produced by
 * dequantization, and the time a 1.1B-parameter model would take at the threaded rate.
 * Reference (../shared/README.md, llama-quantize of TinyLlama-1.1B f16, 2 threads):
 * Q8_0 4.0 s, Q4_0 2.5 s, Q6_K 16.7 s, Q4_K_M 26.7 s (includes its file I/O).
 */
#include "core/core.h"
#include "quant/quant.h"
#include "quant/quant_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double mbps(double bytes, double secs) { return bytes / secs / 1e6; }

/* Runs fn until at least 0.3 s have passed; returns seconds per run. */
typedef void (*bench_fn)(void *ctx);
static double time_it(bench_fn fn, void *ctx) {
    int reps = 0;
    double t0 = pare_now(), t;
    do {
        fn(ctx);
        reps++;
        t = pare_now() - t0;
    } while (t < 0.3);
    return t / reps;
}

typedef struct {
    pare_type type;
    const pare_quant_traits *tr;
    const float *x;
    void *q;
    float *y;
    int64_t rows, cols;
    int threads;
} job;

static void run_ref_q(void *c) {
    job *j = c;
    size_t rs = pare_type_row_size(j->type, j->cols);
    for (int64_t r = 0; r < j->rows; r++) j->tr->quantize(j->x + r * j->cols, (uint8_t *)j->q + r * rs, j->cols, NULL);
}
static void run_fast_q(void *c) {
    job *j = c;
    pare_err err = {0};
    if (pare_quantize(j->type, j->x, j->q, j->rows, j->cols, NULL, j->threads, &err) != PARE_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}
static void run_fast_dq(void *c) {
    job *j = c;
    pare_err err = {0};
    if (pare_dequantize(j->type, j->q, j->y, j->rows, j->cols, j->threads, &err) != PARE_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int mb = argc > 2 ? atoi(argv[2]) : 32;
    const int64_t cols = 4096, rows = (int64_t)mb * 1000000 / 4 / cols;
    const int64_t n = rows * cols;
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    void *q = malloc((size_t)n * 4);
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float u = (float)((s >> 40) * 0x1p-24) + 1e-7f;
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float v = (float)((s >> 40) * 0x1p-24);
        x[i] = 0.02f * sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
    }
    const pare_type types[] = {PARE_TYPE_F16,  PARE_TYPE_BF16, PARE_TYPE_Q8_0, PARE_TYPE_Q4_0,   PARE_TYPE_Q4_1,
                               PARE_TYPE_Q5_0, PARE_TYPE_Q5_1, PARE_TYPE_Q2_K, PARE_TYPE_Q3_K,   PARE_TYPE_Q4_K,
                               PARE_TYPE_Q5_K, PARE_TYPE_Q6_K, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_XS, PARE_TYPE_TQ2_0};
    printf("%lld x %lld f32 (%.0f MB), %d threads; MB/s of f32\n", (long long)rows, (long long)cols, n * 4 / 1e6,
           threads);
    printf("%-8s %10s %10s %10s %10s   %s\n", "type", "q ref/1", "q fast/1", "q fast/T", "dq fast/T",
           "1.1B params at q fast/T");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        job j = {types[i], pare_quant_ref_get(types[i]), x, q, y, rows, cols, 1};
        double t_ref = time_it(run_ref_q, &j);
        double t_f1 = time_it(run_fast_q, &j);
        j.threads = threads;
        double t_ft = time_it(run_fast_q, &j);
        double t_dq = time_it(run_fast_dq, &j);
        double bytes = (double)n * 4;
        printf("%-8s %10.0f %10.0f %10.0f %10.0f   %.2f s\n", pare_type_name(types[i]), mbps(bytes, t_ref),
               mbps(bytes, t_f1), mbps(bytes, t_ft), mbps(bytes, t_dq), 1.1e9 * t_ft / (double)n);
    }
    free(x);
    free(y);
    free(q);
    return 0;
}
