/*
 * quant/quant.h - GGUF block quantization: quantize f32 rows into ggml's block types and
 * dequantize them back, bit-compatible with ggml (llama.cpp, February 2025).
 *
 * Block layouts (ggml's ggml-common.h). A row of n values is n / block_size blocks laid
 * end to end; "half" is an IEEE binary16, everything is little-endian. Within a block,
 * value j of a legacy 32-block whose nibble is in qs[j % 16] sits in the low nibble for
 * j < 16 and the high nibble for j >= 16.
 *
 *   Q4_0   32 values, 18 bytes: half d; u8 qs[16].          x = d * (q - 8), q in 0..15
 *   Q4_1   32 values, 20 bytes: half d, m; u8 qs[16].       x = d * q + m
 *   Q5_0   32 values, 22 bytes: half d; u8 qh[4]; u8 qs[16]. 5th bit of value j is bit j of
 *          the u32 qh;                                      x = d * (q - 16)
 *   Q5_1   32 values, 24 bytes: half d, m; u8 qh[4]; u8 qs[16]. x = d * q + m
 *   Q8_0   32 values, 34 bytes: half d; i8 qs[32].          x = d * q
 *   Q2_K   256 values, 84 bytes: u8 scales[16] (low nibble scale, high nibble min of each
 *          16-value group); u8 qs[64] (2 bits; byte l of each 32-byte half holds values
 *          l, l+32, l+64, l+96 of that 128 half in bits 0-1, 2-3, 4-5, 6-7); half d, dmin.
 *          x = d * sc * q - dmin * m
 *   Q3_K   256 values, 110 bytes: u8 hmask[32] (3rd bit: value j's is bit j/32 of
 *          hmask[j%32]); u8 qs[64] (low 2 bits, as Q2_K); u8 scales[12] (16 6-bit signed
 *          scales, offset 32: low nibbles in bytes 0-7, high 2 bits in bytes 8-11); half d.
 *          x = d * (sc - 32) * (q - 4 * !hbit)
 *   Q4_K   256 values, 144 bytes: half d, dmin; u8 scales[12] (8 6-bit scales and 8 6-bit
 *          mins, ggml's get_scale_min_k4 packing); u8 qs[128] (each 64 values: 32 bytes,
 *          low nibbles first 32, high nibbles next 32).   x = d * sc * q - dmin * m
 *   Q5_K   256 values, 176 bytes: as Q4_K plus u8 qh[32] before qs (5th bit of value
 *          64*k + j is bit 2k of qh[j], of 64*k + 32 + j bit 2k+1).
 *   Q6_K   256 values, 210 bytes: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), i8
 *          scales[16] (one per 16 values), half d.     x = d * sc * (q - 32)
 *   Q8_K   256 values, 292 bytes: f32 d; i8 qs[256]; i16 bsums[16] (sums of 16 values).
 *   IQ4_NL 32 values, 18 bytes: half d; u8 qs[16] (nibbles as Q4_0) indexing the levels
 *          {-127,-104,-83,-65,-49,-35,-22,-10,1,13,25,38,53,69,89,113}. x = d * level
 *   IQ4_XS 256 values, 136 bytes: half d; u16 scales_h (2 high bits per 32-group);
 *          u8 scales_l[4] (low nibbles); u8 qs[128] (as IQ4_NL per 32-group).
 *          x = d * (ls - 32) * level
 *   TQ1_0  256 values, 54 bytes: u8 qs[48] (5 trits per byte, stored as ceil(v*256/243)),
 *          u8 qh[4] (4 trits each), half d.              x = d * (t - 1), t in 0..2
 *   TQ2_0  256 values, 66 bytes: u8 qs[64] (2 bits each as Q2_K's order within 128), half d.
 *
 * Row functions: n must be a multiple of the block size; imatrix is NULL or n importance
 * weights, one per column. Whole-tensor helpers are threaded and their output does not
 * depend on the number of threads.
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
    bool needs_imatrix;                /* ggml refuses without importance weights */
    pare_type vec_dot_type;            /* activations' type in ggml-cpu's dot products with it */
    size_t block_bytes;                /* sizeof its block struct (quant/blocks.h) */
} pare_quant_traits;

/* Traits of a type (also F32/F16/BF16, as plain conversions); NULL for an unknown id. */
const pare_quant_traits *pare_quant_get(pare_type t);
bool pare_quant_can_quantize(pare_type t);
bool pare_quant_can_dequantize(pare_type t);

/* src holds n_rows * n_per_row f32; dst receives n_rows rows of
 * pare_type_row_size(type, n_per_row) bytes. imatrix: NULL or n_per_row weights.
 * n_threads <= 0 uses every CPU. PARE_EUSAGE when n_per_row does not fit the block size,
 * PARE_EUNSUPPORTED when the type cannot be quantized (or needs an imatrix not given). */
pare_status pare_quantize(pare_type type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                          const float *imatrix, int n_threads, pare_err *err);
pare_status pare_dequantize(pare_type type, const void *src, float *dst, int64_t n_rows, int64_t n_per_row,
                            int n_threads, pare_err *err);

/* Any tensor (plain or block, lazy or mapped) to f32; dst holds pare_tensor_nelements(t)
 * floats. Checks that n_bytes matches the type and shape. */
pare_status pare_tensor_to_f32(const pare_tensor *t, float *dst, int n_threads, pare_err *err);

#endif
