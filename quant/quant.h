/*
 * quant/quant.h - GGUF block quantization (placeholder subset: plain types and Q8_0; the
 * full set lands with the quant module).
 *
 * Q8_0: blocks of 32 values: f16 scale d = max|x| / 127, then 32 int8 q = round(x / d);
 * x = q * d.
 */
#ifndef PARE_QUANT_H
#define PARE_QUANT_H

#include "core/core.h"

typedef void (*pare_quantize_row_fn)(const float *src, void *dst, int64_t n, const float *imatrix);
typedef void (*pare_dequantize_row_fn)(const void *src, float *dst, int64_t n);

typedef struct {
    pare_type type;
    pare_quantize_row_fn quantize;     /* NULL when pare cannot quantize to this type */
    pare_dequantize_row_fn dequantize; /* NULL when pare cannot read it */
    bool needs_imatrix;
} pare_quant_traits;

const pare_quant_traits *pare_quant_get(pare_type t);
bool pare_quant_can_quantize(pare_type t);
bool pare_quant_can_dequantize(pare_type t);
pare_status pare_quantize(pare_type type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                          const float *imatrix, int n_threads, pare_err *err);
pare_status pare_dequantize(pare_type type, const void *src, float *dst, int64_t n_rows, int64_t n_per_row,
                            int n_threads, pare_err *err);
pare_status pare_tensor_to_f32(const pare_tensor *t, float *dst, int n_threads, pare_err *err);

#endif
