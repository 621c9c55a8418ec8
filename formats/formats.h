/*
 * formats/formats.h - open any model file pare reads, whatever its format.
 *
 * Detection is by content, not by name: "GGUF" magic -> GGUF; "PK\3\4" (a zip) -> PyTorch;
 * a little-endian u64 header length followed by '{' -> safetensors; a JSON file with a
 * "weight_map" -> a sharded safetensors index; a folder with config.json -> Hugging Face
 * folder. The per-format readers are in gguf.h, safetensors.h, pytorch.h and hf.h.
 */
#ifndef PARE_FORMATS_H
#define PARE_FORMATS_H

#include "core/core.h"

/* Which format the file or folder at path holds (PARE_FORMAT_UNKNOWN when none). For a
 * sharded safetensors index the answer is PARE_FORMAT_SAFETENSORS. */
pare_format pare_format_detect(const char *path);
const char *pare_format_name(pare_format f);

/* Loads any model. Tensors keep the names of their format (HF or GGUF); see
 * pare_model_load_gguf for a GGUF-named view. The caller frees *out with pare_model_free. */
pare_status pare_model_load(const char *path, pare_model **out, pare_err *err);

/* Loads any model and, when its tensors carry Hugging Face names, renames them to GGUF's
 * and applies llama.cpp's q/k row permutation (lazily), so that passes and the evaluator
 * see one layout. A bare safetensors or PyTorch file is read with the config.json found
 * beside it; without one it cannot be named and PARE_EUNSUPPORTED is returned. */
pare_status pare_model_load_gguf(const char *path, pare_model **out, pare_err *err);

/* What a reader cannot decide from the files alone (zero / NULL fields: the reader decides). */
typedef struct {
    /* The llama.cpp pre-tokenizer (tokenizer.ggml.pre) of an HF folder's BPE tokenizer,
     * instead of the one named from tokenizer.json's definition (formats/hf_pretok.h). */
    const char *tokenizer_pre;
} pare_load_opts;

/* pare_model_load and pare_model_load_gguf with those choices (lo may be NULL). */
pare_status pare_model_load_with(const char *path, const pare_load_opts *lo, pare_model **out, pare_err *err);
pare_status pare_model_load_gguf_with(const char *path, const pare_load_opts *lo, pare_model **out, pare_err *err);

#endif
