/*
 * formats/hf.h - Hugging Face model folders.
 *
 * A folder holds config.json (architecture and hyper-parameters), the weights
 * (model.safetensors, model.safetensors.index.json + shards, or pytorch_model.bin /
 * pytorch_model.bin.index.json) and the tokenizer: tokenizer.model (a sentencepiece
 * ModelProto, protobuf) or tokenizer.json, with tokenizer_config.json,
 * special_tokens_map.json and generation_config.json around them.
 *
 * pare reads the folder into GGUF metadata, exactly what llama.cpp's convert_hf_to_gguf.py
 * writes for it (architecture keys, tokenizer.ggml.*), and maps tensor names between HF and
 * GGUF, including the converter's row permutation of q and k projections for llama-family
 * models: rows reshaped to (n_head, 2, head_dim/2) with the middle axes swapped, because
 * llama.cpp's RoPE rotates adjacent pairs where HF's rotate_half pairs i with i + head_dim/2.
 * The permutation moves whole rows, so it applies to any element type; pare applies it
 * lazily, when a tensor's bytes are read.
 *
 * Architectures: llama (and mistral), qwen2, gpt2.
 */
#ifndef PARE_FORMATS_HF_H
#define PARE_FORMATS_HF_H

#include "core/core.h"

/* Loads an HF folder. Tensor names stay HF's (gguf_names false); model->arch is the GGUF
 * architecture; model->meta the GGUF metadata the converter writes (general.file_type is
 * present with the value for the weights' own type; general.quantization_version is left
 * to the writer). Unknown architectures give PARE_EUNSUPPORTED naming them. */
pare_status pare_hf_load(const char *folder, pare_model **out, pare_err *err);
/* The same with the weights taken from one given file (a safetensors file, index or
 * PyTorch checkpoint) instead of the folder's default. */
pare_status pare_hf_load_weights(const char *folder, const char *weights, pare_model **out, pare_err *err);

/* HF names and layout -> GGUF names and layout, in place: renames every tensor, permutes
 * q/k rows (lazily), transposes GPT-2's Conv1D weights (lazily), drops what the converter
 * drops (rotary inv_freq, attention bias buffers, lm_head when embeddings are tied) and
 * orders nothing. Unknown names give PARE_EUNSUPPORTED naming the tensor. */
pare_status pare_hf_to_gguf(pare_model *m, pare_err *err);
/* The inverse, for writing safetensors or an HF folder from a GGUF model. */
pare_status pare_gguf_to_hf(pare_model *m, pare_err *err);

/* Writes config.json, generation_config.json and the tokenizer files (tokenizer.model
 * rebuilt from tokenizer.ggml.* for sentencepiece vocabularies, tokenizer.json for BPE,
 * tokenizer_config.json, special_tokens_map.json) for a model with GGUF metadata. */
pare_status pare_hf_write_folder_meta(const pare_model *m, const char *folder, bool force, pare_err *err);

/* One name, either way; false when the name is not one of the architecture's. */
bool pare_hf_name_to_gguf(const char *arch, const char *hf_name, char *out, size_t cap);
bool pare_gguf_name_to_hf(const char *arch, const char *gguf_name, char *out, size_t cap);
/* Row permutation of q/k: n_rows rows of row_bytes bytes; inverse undoes it. */
void pare_hf_permute_rows(const void *src, void *dst, int64_t n_rows, size_t row_bytes, int n_head, bool inverse);
/* The head count a GGUF-named tensor of m is permuted with (q: head_count, k:
 * head_count_kv) for llama-family models, 0 when it is not permuted. */
int pare_hf_permute_heads(const pare_model *m, const char *gguf_name);

#endif
