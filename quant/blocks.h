/*
 * quant/blocks.h - the block structs of ggml's quantized types, as they lie in a GGUF file
 * (ggml-common.h, February 2025). Layouts and formulas: quant/quant.h. One struct per type,
 * named pare_block_TYPE after ggml's block_TYPE; its sizeof is the type's bytes per block
 * (core/types.c's table holds the same numbers, and tests/test_quant.c checks that they
 * agree). Every field is little-endian; pare_half is an IEEE binary16 bit pattern.
 *
 * The legacy and K types use packed structs with typed fields; the codebook i-quants keep
 * their f16 scale as two bytes (d[2]), so those structs are byte arrays with no padding on
 * any ABI.
 */
#ifndef PARE_QUANT_BLOCKS_H
#define PARE_QUANT_BLOCKS_H

#include <stdint.h>

#define PARE_QK_K 256  /* elements per K-quant and i-quant super-block */
#define PARE_QK_LEG 32 /* elements per legacy block (Q4_0 ... Q8_0, IQ4_NL) */

typedef uint16_t pare_half;

#define PARE_PACKED __attribute__((packed))

typedef struct PARE_PACKED { pare_half d; uint8_t qs[16]; } pare_block_q4_0;
typedef struct PARE_PACKED { pare_half d, m; uint8_t qs[16]; } pare_block_q4_1;
typedef struct PARE_PACKED { pare_half d; uint8_t qh[4]; uint8_t qs[16]; } pare_block_q5_0;
typedef struct PARE_PACKED { pare_half d, m; uint8_t qh[4]; uint8_t qs[16]; } pare_block_q5_1;
typedef struct PARE_PACKED { pare_half d; int8_t qs[32]; } pare_block_q8_0;
typedef struct PARE_PACKED { uint8_t scales[16]; uint8_t qs[64]; pare_half d, dmin; } pare_block_q2_K;
typedef struct PARE_PACKED { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; pare_half d; } pare_block_q3_K;
typedef struct PARE_PACKED { pare_half d, dmin; uint8_t scales[12]; uint8_t qs[128]; } pare_block_q4_K;
typedef struct PARE_PACKED { pare_half d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } pare_block_q5_K;
typedef struct PARE_PACKED { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; pare_half d; } pare_block_q6_K;
typedef struct PARE_PACKED { float d; int8_t qs[256]; int16_t bsums[16]; } pare_block_q8_K;
typedef struct PARE_PACKED { pare_half d; uint8_t qs[16]; } pare_block_iq4_nl;
typedef struct PARE_PACKED { pare_half d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } pare_block_iq4_xs;
typedef struct PARE_PACKED { uint8_t qs[48]; uint8_t qh[4]; pare_half d; } pare_block_tq1_0;
typedef struct PARE_PACKED { uint8_t qs[64]; pare_half d; } pare_block_tq2_0;
typedef struct { uint8_t d[2]; uint8_t qs[64]; } pare_block_iq2_xxs;
typedef struct { uint8_t d[2]; uint8_t qs[64]; uint8_t scales[8]; } pare_block_iq2_xs;
typedef struct { uint8_t d[2]; uint8_t qs[32]; uint8_t signs[32]; uint8_t qh[8]; uint8_t scales[8]; } pare_block_iq2_s;
typedef struct { uint8_t d[2]; uint8_t qs[64]; uint8_t scales_signs[32]; } pare_block_iq3_xxs;
typedef struct { uint8_t d[2]; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; } pare_block_iq3_s;
typedef struct { uint8_t d[2]; uint8_t qs[32]; uint8_t qh[16]; } pare_block_iq1_s;
typedef struct { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; } pare_block_iq1_m;

_Static_assert(sizeof(pare_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(pare_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(pare_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(pare_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(pare_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(pare_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(pare_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(pare_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(pare_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(pare_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(pare_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(pare_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(pare_block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(pare_block_tq1_0) == 54, "tq1_0 block");
_Static_assert(sizeof(pare_block_tq2_0) == 66, "tq2_0 block");
_Static_assert(sizeof(pare_block_iq2_xxs) == 66, "iq2_xxs block");
_Static_assert(sizeof(pare_block_iq2_xs) == 74, "iq2_xs block");
_Static_assert(sizeof(pare_block_iq2_s) == 82, "iq2_s block");
_Static_assert(sizeof(pare_block_iq3_xxs) == 98, "iq3_xxs block");
_Static_assert(sizeof(pare_block_iq3_s) == 110, "iq3_s block");
_Static_assert(sizeof(pare_block_iq1_s) == 50, "iq1_s block");
_Static_assert(sizeof(pare_block_iq1_m) == 56, "iq1_m block");

#endif
