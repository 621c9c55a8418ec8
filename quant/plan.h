/*
 * quant/plan.h - which type llama-quantize gives each tensor.
 *
 * The plan reproduces llama.cpp's llama-quantize of February 2025 (src/llama-quant.cpp):
 * a target "ftype" (llama_ftype: a base type plus per-tensor rules, e.g. Q4_K_M keeps
 * attn_v and ffn_down of some layers at Q6_K), the tensors it never quantizes, --pure,
 * --output-tensor-type / --token-embedding-type, --leave-output-tensor, the fallback when
 * ne[0] is not a multiple of the chosen type's block, and the refusal of the lowest-bit
 * types without an importance matrix. Tensor names must be GGUF's ("blk.N.attn_v.weight").
 *
 * Per-tensor overrides (pare's --tensor-type GLOB=TYPE): fnmatch(3) globs over the full
 * tensor name, first match wins, applied to every tensor llama-quantize would quantize,
 * after its own choice and before the output / token-embedding overrides. (llama.cpp later
 * added a regex version of this option; February 2025 has none.)
 *
 * Importance matrices (quant/imatrix.h) weigh the quantizers' errors.
 */
#ifndef PARE_QUANT_PLAN_H
#define PARE_QUANT_PLAN_H

#include "core/core.h"
#include "quant/imatrix.h"

/* llama_ftype values (stored as general.file_type). */
typedef enum {
    PARE_FTYPE_ALL_F32 = 0,
    PARE_FTYPE_F16 = 1,
    PARE_FTYPE_Q4_0 = 2,
    PARE_FTYPE_Q4_1 = 3,
    PARE_FTYPE_Q8_0 = 7,
    PARE_FTYPE_Q5_0 = 8,
    PARE_FTYPE_Q5_1 = 9,
    PARE_FTYPE_Q2_K = 10,
    PARE_FTYPE_Q3_K_S = 11,
    PARE_FTYPE_Q3_K_M = 12,
    PARE_FTYPE_Q3_K_L = 13,
    PARE_FTYPE_Q4_K_S = 14,
    PARE_FTYPE_Q4_K_M = 15,
    PARE_FTYPE_Q5_K_S = 16,
    PARE_FTYPE_Q5_K_M = 17,
    PARE_FTYPE_Q6_K = 18,
    PARE_FTYPE_IQ2_XXS = 19,
    PARE_FTYPE_IQ2_XS = 20,
    PARE_FTYPE_Q2_K_S = 21,
    PARE_FTYPE_IQ3_XS = 22,
    PARE_FTYPE_IQ3_XXS = 23,
    PARE_FTYPE_IQ1_S = 24,
    PARE_FTYPE_IQ4_NL = 25,
    PARE_FTYPE_IQ3_S = 26,
    PARE_FTYPE_IQ3_M = 27,
    PARE_FTYPE_IQ2_S = 28,
    PARE_FTYPE_IQ2_M = 29,
    PARE_FTYPE_IQ4_XS = 30,
    PARE_FTYPE_IQ1_M = 31,
    PARE_FTYPE_BF16 = 32,
    PARE_FTYPE_TQ1_0 = 36,
    PARE_FTYPE_TQ2_0 = 37,
} pare_ftype;

/* "Q4_K_M", "q8_0", "iq4_xs", "F16", the aliases Q3_K / Q4_K / Q5_K (= _M, as
 * llama-quantize), or the ftype number. Case-insensitive. False when unknown. */
bool pare_ftype_from_name(const char *name, int *ftype);
/* "Q4_K_M" etc.; NULL for an unknown ftype. */
const char *pare_ftype_name(int ftype);
/* The mix's base type (Q4_K_M -> q4_K, IQ2_S -> iq2_xs, ...); PARE_TYPE_INVALID if unknown. */
pare_type pare_ftype_base_type(int ftype);

/* ------------------------------------------------------------------ plan */

typedef struct pare_quant_plan_opts {
    int ftype;                   /* a pare_ftype */
    bool pure;                   /* --pure: the base type for every quantized tensor */
    pare_type output_type;       /* output.weight's type; PARE_TYPE_INVALID = default */
    pare_type token_embd_type;   /* token_embd.weight's type; PARE_TYPE_INVALID = default */
    bool leave_output;           /* --leave-output-tensor: keep output.weight as it is */
    const char *const *override_globs; /* n_overrides fnmatch globs ... */
    const pare_type *override_types;   /* ... and their types */
    size_t n_overrides;
    const pare_imatrix *imatrix; /* NULL: none */
} pare_quant_plan_opts;

/* Fills types[i] for every tensor m->tensors[i]: its new type, or its own type when it
 * stays as it is. Reads {arch}.block_count, .attention.head_count(_kv), .expert_count from
 * m->meta. PARE_EUSAGE for an unknown ftype, an override type whose block does not divide
 * ne[0], or a very-low-bit type without importance values (as llama-quantize);
 * PARE_EUNSUPPORTED where llama-quantize has no fallback type (e.g. Q8_0 with ne[0] = 100);
 * PARE_EINPUT for a missing block_count or a bad imatrix entry. */
pare_status pare_quant_plan(const pare_model *m, const pare_quant_plan_opts *o, pare_type *types, pare_err *err);

/* llama-quantize's type for a tensor whose rows do not fit t's blocks (llama-quant.cpp's
 * fallback switch; the caller still checks the new type's block, F16 when it does not fit
 * either). PARE_TYPE_INVALID when llama-quantize has none for t. */
pare_type pare_quant_fallback_type(pare_type t);

/* The order llama-quantize visits and writes tensors (the plan's layer counters follow
 * it): tensors without a "blk.N." prefix first, then by layer number, ties by name
 * (strcmp). Fills order[0..m->n_tensors) with tensor indices. */
void pare_quant_plan_order(const pare_model *m, size_t *order);

/* llama-quantize writes every tensor with ggml_n_dims dimensions (gguf_write_tensor_info):
 * trailing dimensions of 1 are dropped, so a [128, 1] tensor of the converter's file (Qwen2-MoE's
 * ffn_gate_inp_shexp) comes out as [128]. Sets m's tensors' n_dims so (ne is unchanged). */
void pare_quant_plan_dims(pare_model *m);

/* Sets the keys llama-quantize adds to a quantized file, removing any earlier copies so
 * they come last, in its order: general.quantization_version (U32 2), general.file_type
 * (U32 ftype), and with an imatrix quantize.imatrix.file (its path), .dataset (when
 * known), .entries_count and .chunks_count (I32). Removes split.* keys. */
pare_status pare_quant_plan_set_meta(pare_meta *meta, int ftype, const pare_imatrix *im, pare_err *err);

#endif
