/*
 * formats/fp8.h - FP8 checkpoints: weights stored as 8-bit floats with scales beside them,
 * turned into f32 tensors that are computed as they are read.
 *
 * Layouts (Hugging Face safetensors, the weight's name W = "....weight"):
 *   block-scaled   W is F8_E4M3 (or F8_E5M2) [R, C]; "W_scale_inv" (name: the weight's
 *                  name + "_scale_inv") is F32 or BF16 [ceil(R / br), ceil(C / bc)], one
 *                  factor per br x bc block; value = fp8 * factor. DeepSeek-V3 and the
 *                  Qwen3 "-FP8" releases; config.json "quantization_config":
 *                  {"quant_method": "fp8", "weight_block_size": [br, bc], ...}. Edge blocks
 *                  (R or C not a multiple of the block) are partial and use their own factor.
 *   per-tensor     "W_scale" (the name with "_scale" appended to "weight"; compressed-tensors'
 *   per-channel    "weight_scale") holds 1 value, or R values ([R] or [R, 1]): value = fp8 *
 *                  scale (of the row).
 * Activation scales ("input_scale") describe run-time activations, not weights: dropped.
 *
 * The product of an FP8 value (at most 4 significant bits) and an f32 factor (24) is exact
 * in double, so the f32 product computed here is the float64 value rounded to f32 once.
 * Outputs of other types (bf16, f16, quantized) are made from that f32 value, as the
 * reference FP8 -> BF16 scripts do; see docs/fidelity.md.
 */
#ifndef PARE_FORMATS_FP8_H
#define PARE_FORMATS_FP8_H

#include <cJSON.h>

#include "core/core.h"

/* Finds every FP8 tensor of m that has a scale beside it and replaces the pair by one lazy
 * F32 tensor of the weight's name and shape (its reader dequantizes a whole tensor at a
 * time: memory is one tensor's f32 size, not the model's); drops the scale tensors and
 * activation scales. config is config.json (may be NULL): its quantization_config gives the
 * block size (default 128 x 128 when a block-scaled tensor appears without one). A scale
 * whose shape does not fit its weight, an FP8 tensor without a scale when the config says
 * fp8, or a scale without its weight is PARE_EINPUT naming the tensors. *n_fp8 (may be
 * NULL) gets the number of tensors replaced. */
pare_status pare_fp8_dequant_model(pare_model *m, const cJSON *config, size_t *n_fp8, pare_err *err);

#endif
