/*
 * quant/quant.c - the quantization traits table, the plain float conversions and the
 * threaded whole-tensor helpers.
 *
 * Two tables: `ref_table` holds the scalar references (the specification, quant_impl.h)
 * and q_simd.c's fast table what callers get, with the AVX2 / AVX-512 paths of the level
 * the process runs with (core/isa.h; the references at the generic level). Rows are independent, so the threaded helpers give the same bytes
 * for any number of threads.
 */
#include "quant/iq_impl.h"
#include "quant/quant_impl.h"

#include <stdlib.h>

/* ------------------------------------------------------------------------ plain types */

void pare_qref_q_f32(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    memcpy(dst, src, (size_t)n * sizeof(float));
}
void pare_qref_dq_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
void pare_qref_q_f16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_f32_to_plain(PARE_TYPE_F16, src, dst, n);
}
void pare_qref_dq_f16(const void *src, float *dst, int64_t n) { pare_plain_to_f32(PARE_TYPE_F16, src, dst, n); }
void pare_qref_q_bf16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    pare_f32_to_plain(PARE_TYPE_BF16, src, dst, n);
}
void pare_qref_dq_bf16(const void *src, float *dst, int64_t n) { pare_plain_to_f32(PARE_TYPE_BF16, src, dst, n); }

/* ------------------------------------------------------------------------ tables */

#define REF_ROW(T, QREF, DQREF, QFAST, DQFAST, IMATRIX, VEC_DOT, BLOCK)                                          \
    [PARE_TYPE_##T] = {PARE_TYPE_##T, QREF, DQREF, IMATRIX, PARE_TYPE_##VEC_DOT, sizeof(BLOCK)},
static const pare_quant_traits ref_table[PARE_TYPE_GGML_COUNT] = {PARE_QUANT_TYPES(REF_ROW)};
#undef REF_ROW


/* Unlisted ids are zero-filled, so their `type` (0) differs from the id asked for. */
static const pare_quant_traits *table_get(const pare_quant_traits *table, pare_type t) {
    if ((int)t < 0 || (int)t >= PARE_TYPE_GGML_COUNT || !pare_type_get(t)) return NULL;
    return table[t].type == t ? &table[t] : NULL;
}

/* The fast table of the kernels' level (q_simd.c), or the references when it has none. */
const pare_quant_traits *pare_quant_get(pare_type t) {
    const pare_quant_traits *fast = pare_qsimd_table();
    return table_get(fast ? fast : ref_table, t);
}
const pare_quant_traits *pare_quant_ref_get(pare_type t) { return table_get(ref_table, t); }

bool pare_quant_can_quantize(pare_type t) {
    const pare_quant_traits *q = pare_quant_get(t);
    return q && q->quantize;
}

bool pare_quant_can_dequantize(pare_type t) {
    const pare_quant_traits *q = pare_quant_get(t);
    return q && q->dequantize;
}

/* ------------------------------------------------------------------------ threaded rows */

typedef struct {
    const pare_quant_traits *tr;
    const uint8_t *src;
    uint8_t *dst;
    size_t src_row, dst_row; /* bytes per row on each side */
    int64_t n_rows, n_per_row, rows_per_item;
    const float *imatrix;
    bool quantize;
} rows_job;

static void rows_item(void *ctx, int64_t item, int thread) {
    (void)thread;
    const rows_job *j = ctx;
    int64_t r0 = item * j->rows_per_item, r1 = r0 + j->rows_per_item;
    if (r1 > j->n_rows) r1 = j->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *s = j->src + (size_t)r * j->src_row;
        uint8_t *d = j->dst + (size_t)r * j->dst_row;
        if (j->quantize)
            j->tr->quantize((const float *)(const void *)s, d, j->n_per_row, j->imatrix);
        else
            j->tr->dequantize(s, (float *)(void *)d, j->n_per_row);
    }
}

/* Checks the shape, then runs the rows on the threads, about 64K values per work item. */
static pare_status run_rows(rows_job *j, pare_type type, int n_threads, pare_err *err) {
    const pare_type_info *ti = pare_type_get(type);
    FAIL_IF(j->n_rows < 0 || j->n_per_row <= 0, PARE_EUSAGE, "quantize %s: bad shape %lld x %lld",
            pare_type_name(type), (long long)j->n_rows, (long long)j->n_per_row);
    FAIL_IF(j->n_per_row % ti->block_size, PARE_EUSAGE,
            "quantize %s: row length %lld is not a multiple of the block size %lld", ti->name,
            (long long)j->n_per_row, (long long)ti->block_size);
    FAIL_IF(j->n_rows > INT64_MAX / j->n_per_row / 4, PARE_EUSAGE, "quantize %s: %lld x %lld values overflow",
            ti->name, (long long)j->n_rows, (long long)j->n_per_row);
    size_t qrow = pare_type_row_size(type, j->n_per_row), frow = (size_t)j->n_per_row * sizeof(float);
    j->src_row = j->quantize ? frow : qrow;
    j->dst_row = j->quantize ? qrow : frow;
    j->rows_per_item = j->n_per_row >= 65536 ? 1 : 65536 / j->n_per_row;
    int64_t items = (j->n_rows + j->rows_per_item - 1) / j->rows_per_item;
    if (items == 0) return PARE_OK;
    if (items == 1 || n_threads == 1) {
        for (int64_t i = 0; i < items; i++) rows_item(j, i, 0);
        return PARE_OK;
    }
    pare_parallel_for(n_threads, items, rows_item, j);
    return PARE_OK;
}

pare_status pare_quantize(pare_type type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                          const float *imatrix, int n_threads, pare_err *err) {
    const pare_quant_traits *tr = pare_quant_get(type);
    FAIL_IF(!tr || !tr->quantize, PARE_EUNSUPPORTED, "pare cannot quantize to %s", pare_type_name(type));
    FAIL_IF(tr->needs_imatrix && !imatrix, PARE_EUNSUPPORTED, "quantizing to %s needs an importance matrix",
            pare_type_name(type));
    rows_job j = {.tr = tr, .src = (const uint8_t *)src, .dst = dst, .n_rows = n_rows, .n_per_row = n_per_row,
                  .imatrix = imatrix, .quantize = true};
    return run_rows(&j, type, n_threads, err);
}

pare_status pare_dequantize(pare_type type, const void *src, float *dst, int64_t n_rows, int64_t n_per_row,
                            int n_threads, pare_err *err) {
    const pare_quant_traits *tr = pare_quant_get(type);
    FAIL_IF(!tr || !tr->dequantize, PARE_EUNSUPPORTED, "pare cannot read type %s", pare_type_name(type));
    rows_job j = {.tr = tr, .src = src, .dst = (uint8_t *)dst, .n_rows = n_rows, .n_per_row = n_per_row,
                  .quantize = false};
    return run_rows(&j, type, n_threads, err);
}

/* ------------------------------------------------------------------------ tensors */

pare_status pare_tensor_to_f32(const pare_tensor *t, float *dst, int n_threads, pare_err *err) {
    const pare_type_info *ti = pare_type_get(t->type);
    FAIL_IF(!ti, PARE_EINPUT, "tensor '%s': unknown type id %d", t->name, (int)t->type);
    uint64_t want = 0;
    pare_status st = pare_tensor_nbytes(t->type, t->n_dims, t->ne, &want, err);
    if (st != PARE_OK) {
        pare_err_prefix(err, "tensor '%s'", t->name);
        return st;
    }
    FAIL_IF(t->n_bytes != want, PARE_EINPUT, "tensor '%s': holds %llu bytes, its type %s and shape need %llu",
            t->name, (unsigned long long)t->n_bytes, ti->name, (unsigned long long)want);
    const pare_quant_traits *tr = pare_quant_get(t->type);
    bool fast = tr && tr->dequantize;
    FAIL_IF(!fast && ti->is_quantized, PARE_EUNSUPPORTED, "tensor '%s': pare cannot read type %s", t->name,
            ti->name);
    const void *bytes = NULL;
    void *tmp = NULL;
    TRY(pare_tensor_bytes(t, &bytes, &tmp, err));
    int64_t nel = pare_tensor_nelements(t);
    if (fast && nel > 0)
        st = pare_dequantize(t->type, bytes, dst, nel / t->ne[0], t->ne[0], n_threads, err);
    else if (nel > 0 && !pare_plain_to_f32(t->type, bytes, dst, nel)) /* no bytes (NULL) when empty */
        st = pare_err_set(err, PARE_EUNSUPPORTED, "tensor '%s': cannot convert %s to f32", t->name, ti->name);
    if (st != PARE_OK) pare_err_prefix(err, "tensor '%s'", t->name);
    free(tmp);
    return st;
}
