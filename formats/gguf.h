/*
 * formats/gguf.h - GGUF files (llama.cpp / ggml): reader for versions 2 and 3, streaming
 * writer for version 3, split files.
 *
 * The format, all integers little-endian:
 *
 *   u8[4] "GGUF"
 *   u32   version               2 or 3 (1 used u32 counts and is refused)
 *   u64   tensor_count
 *   u64   kv_count
 *   kv_count times:
 *     string key                u64 length + bytes, no NUL (pare: at most 64 KiB)
 *     u32    value type         0 U8 1 I8 2 U16 3 I16 4 U32 5 I32 6 F32 7 BOOL(1 byte)
 *                               8 STRING 9 ARRAY 10 U64 11 I64 12 F64
 *     value                     scalars as their type; STRING as above (at most 1 GiB);
 *                               ARRAY = u32 element type, u64 count, elements (no nested
 *                               arrays: pare refuses them, as ggml does)
 *   tensor_count times:
 *     string name               at most 63 bytes (ggml's GGML_MAX_NAME is 64 with the NUL)
 *     u32    n_dims             1..4
 *     u64    ne[n_dims]         ne[0] first: the contiguous row length (the reverse of the
 *                               PyTorch shape); ne[0] a multiple of the type's block size
 *     u32    type               ggml type id (see core.h pare_type)
 *     u64    offset             from the start of the data section
 *   padding to `general.alignment` (U32 key, a power of two, default 32)
 *   data section                tensor i at its offset; offsets are the running sum of the
 *                               sizes each padded to the alignment, in tensor-info order
 *
 * Split files NAME-00001-of-0000N.gguf carry split.no (U16, 0-based), split.count (U16) and
 * split.tensors.count (I32, over all parts); each part is a complete GGUF of its tensors.
 *
 * Limits: every count and length is checked against the bytes left in the file before
 * anything is allocated, so a hostile header cannot make pare allocate more than the file
 * size justifies.
 */
#ifndef PARE_FORMATS_GGUF_H
#define PARE_FORMATS_GGUF_H

#include "core/core.h"

#define PARE_GGUF_MAX_NAME 63              /* bytes of a tensor name */
#define PARE_GGUF_MAX_KEY (64u << 10)      /* bytes of a key */
#define PARE_GGUF_MAX_STRING (1ull << 30)  /* bytes of a string value */

/* Maps and validates a GGUF file. Tensors point into the mapping (t->data, t->source,
 * t->file_offset = absolute offset in the file). model->meta holds every KV in file order;
 * ->version, ->alignment, ->arch (general.architecture) are set; ->gguf_names is true.
 * A split file (split.count > 1) loads every part, found by the NAME-0000i-of-0000N.gguf
 * naming, into one model whose meta is the first part's without the split.* keys. */
pare_status pare_gguf_load(const char *path, pare_model **out, pare_err *err);

/* Streaming writer. `tensors` gives name, type, n_dims and ne of each tensor in write
 * order (data ignored). The header (metadata + tensor infos with offsets computed from the
 * padded sizes) is written at open; then pare_gguf_writer_add is called once per tensor in
 * order with exactly its bytes; pare_gguf_writer_finish pads, fsyncs and renames the file
 * into place. pare_gguf_writer_free without finish removes the temporary file.
 * Alignment: meta's general.alignment when present (must be U32, a power of two), else 32.
 * force / inputs as pare_outfile_open. */
typedef struct pare_gguf_writer pare_gguf_writer;
pare_status pare_gguf_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors,
                                  size_t n_tensors, bool force, const char *const *inputs, size_t n_inputs,
                                  pare_gguf_writer **out, pare_err *err);
pare_status pare_gguf_writer_add(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err);
pare_status pare_gguf_writer_finish(pare_gguf_writer *w, pare_err *err);
void pare_gguf_writer_free(pare_gguf_writer *w);

/* Writes a whole model (meta + every tensor via pare_tensor_read, one at a time, releasing
 * mapped pages as it goes). Refuses to overwrite the model's own file. */
pare_status pare_gguf_save(const pare_model *m, const char *path, bool force, pare_err *err);

#endif
