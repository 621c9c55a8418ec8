/*
 * verify/hash.h - content digests of tensors and models (XXH3-128).
 *
 * Byte mode hashes each tensor's stored bytes; the model digest hashes, for every tensor in
 * name order (so the order in the file does not matter): the name, the type id, the dims and
 * the tensor's digest. Value mode hashes the tensor's values as little-endian f32 (block
 * types dequantized), and the model digest leaves the type out, so that the same weights
 * stored as F32 safetensors and as an F32 GGUF (after GGUF naming) hash the same.
 */
#ifndef PARE_HASH_H
#define PARE_HASH_H

#include "core/core.h"

typedef struct {
    uint64_t hi, lo;
} pare_digest;

typedef struct {
    pare_digest model;
    pare_digest *tensors; /* one per model tensor, in model order; caller frees */
    size_t n_tensors;
} pare_model_digest;

/* values: hash f32 values instead of bytes. Threads hash different tensors at once. */
pare_status pare_hash_model(const pare_model *m, bool values, int n_threads, pare_model_digest *out, pare_err *err);
void pare_model_digest_free(pare_model_digest *d);
/* 32 lowercase hex digits + NUL. */
void pare_digest_hex(pare_digest d, char out[33]);

#endif
