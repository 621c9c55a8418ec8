/* quant/quant.c - the traits table and whole-tensor helpers. */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint16_t d;
    int8_t qs[32];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block");

static void quantize_q8_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's q8_0 has no weighted variant */
    block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[b].d = pare_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)roundf(x[b * 32 + j] * id);
    }
}

static void dequantize_q8_0(const void *src, float *x, int64_t n) {
    const block_q8_0 *y = src;
    for (int64_t b = 0; b < n / 32; b++) {
        float d = pare_fp16_to_fp32(y[b].d);
        for (int j = 0; j < 32; j++) x[b * 32 + j] = (float)y[b].qs[j] * d;
    }
}

#define PLAIN(T)                                                                                   \
    static void q_##T(const float *s, void *d, int64_t n, const float *im) {                       \
        (void)im;                                                                                  \
        pare_f32_to_plain(PARE_TYPE_##T, s, d, n);                                                 \
    }                                                                                              \
    static void dq_##T(const void *s, float *d, int64_t n) { pare_plain_to_f32(PARE_TYPE_##T, s, d, n); }
PLAIN(F32)
PLAIN(F16)
PLAIN(BF16)
#undef PLAIN

static const pare_quant_traits traits[PARE_TYPE_GGML_COUNT] = {
    [PARE_TYPE_F32] = {PARE_TYPE_F32, q_F32, dq_F32, false},
    [PARE_TYPE_F16] = {PARE_TYPE_F16, q_F16, dq_F16, false},
    [PARE_TYPE_BF16] = {PARE_TYPE_BF16, q_BF16, dq_BF16, false},
    [PARE_TYPE_Q8_0] = {PARE_TYPE_Q8_0, quantize_q8_0, dequantize_q8_0, false},
};

const pare_quant_traits *pare_quant_get(pare_type t) {
    if ((int)t < 0 || t >= PARE_TYPE_GGML_COUNT || (!traits[t].quantize && !traits[t].dequantize)) return NULL;
    return &traits[t];
}

bool pare_quant_can_quantize(pare_type t) { const pare_quant_traits *q = pare_quant_get(t); return q && q->quantize; }
bool pare_quant_can_dequantize(pare_type t) { const pare_quant_traits *q = pare_quant_get(t); return q && q->dequantize; }

typedef struct {
    const pare_quant_traits *q;
    const float *src;
    const void *qsrc;
    void *dst;
    float *fdst;
    int64_t n_per_row;
    size_t row_bytes;
    const float *imatrix;
} rows_job;

static void quantize_row_job(void *ctx, int64_t r, int thread) {
    (void)thread;
    rows_job *j = ctx;
    j->q->quantize(j->src + r * j->n_per_row, (uint8_t *)j->dst + (size_t)r * j->row_bytes, j->n_per_row, j->imatrix);
}

static void dequantize_row_job(void *ctx, int64_t r, int thread) {
    (void)thread;
    rows_job *j = ctx;
    j->q->dequantize((const uint8_t *)j->qsrc + (size_t)r * j->row_bytes, j->fdst + r * j->n_per_row, j->n_per_row);
}

pare_status pare_quantize(pare_type type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                          const float *imatrix, int n_threads, pare_err *err) {
    const pare_quant_traits *q = pare_quant_get(type);
    FAIL_IF(!q || !q->quantize, PARE_EUNSUPPORTED, "pare cannot quantize to %s", pare_type_name(type));
    size_t rb = pare_type_row_size(type, n_per_row);
    FAIL_IF(!rb, PARE_EINPUT, "rows of %lld do not fit %s blocks", (long long)n_per_row, pare_type_name(type));
    rows_job j = {.q = q, .src = src, .dst = dst, .n_per_row = n_per_row, .row_bytes = rb, .imatrix = imatrix};
    pare_parallel_for(n_threads, n_rows, quantize_row_job, &j);
    return PARE_OK;
}

pare_status pare_dequantize(pare_type type, const void *src, float *dst, int64_t n_rows, int64_t n_per_row,
                            int n_threads, pare_err *err) {
    const pare_quant_traits *q = pare_quant_get(type);
    FAIL_IF(!q || !q->dequantize, PARE_EUNSUPPORTED, "pare cannot read type %s", pare_type_name(type));
    size_t rb = pare_type_row_size(type, n_per_row);
    FAIL_IF(!rb && n_per_row, PARE_EINPUT, "rows of %lld do not fit %s blocks", (long long)n_per_row, pare_type_name(type));
    rows_job j = {.q = q, .qsrc = src, .fdst = dst, .n_per_row = n_per_row, .row_bytes = rb};
    pare_parallel_for(n_threads, n_rows, dequantize_row_job, &j);
    return PARE_OK;
}

pare_status pare_tensor_to_f32(const pare_tensor *t, float *dst, int n_threads, pare_err *err) {
    const void *p;
    void *tmp;
    TRY(pare_tensor_bytes(t, &p, &tmp, err));
    pare_status st = PARE_OK;
    if (!pare_plain_to_f32(t->type, p, dst, pare_tensor_nelements(t))) {
        st = pare_dequantize(t->type, p, dst, pare_tensor_nrows(t), t->ne[0], n_threads, err);
        if (st) pare_err_prefix(err, "tensor '%s'", t->name);
    }
    free(tmp);
    return st;
}
