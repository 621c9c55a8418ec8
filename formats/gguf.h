/*
 * formats/gguf.h - GGUF files (llama.cpp / ggml): reader for versions 2 and 3, streaming
 * writer for version 3, split files (llama-gguf-split).
 *
 * The format. Every integer is little-endian (version 3 allows big-endian files; pare
 * reads and writes little-endian only and recognises a byte-swapped version number).
 *
 *   u8[4]  magic "GGUF"
 *   u32    version              3 (2 has the same layout; 1 had u32 counts and lengths)
 *   u64    tensor_count
 *   u64    kv_count
 *   kv_count metadata entries, in file order:
 *     string key                u64 length + that many bytes, no NUL terminator; keys are
 *                               non-empty and unique ("general.architecture", ...)
 *     u32    value_type         0 U8, 1 I8, 2 U16, 3 I16, 4 U32, 5 I32, 6 F32, 7 BOOL,
 *                               8 STRING, 9 ARRAY, 10 U64, 11 I64, 12 F64
 *     value                     a scalar of the type's size (BOOL is one byte, 0 or 1);
 *                               a STRING as above; an ARRAY is u32 element type, u64 count,
 *                               then count elements packed (strings one after another);
 *                               arrays of arrays are not allowed
 *   tensor_count tensor infos, in file order:
 *     string name               at most 63 bytes (ggml's GGML_MAX_NAME 64 with the NUL)
 *     u32    n_dims             1..4
 *     u64    ne[n_dims]         ne[0] first: the contiguous row length, i.e. the PyTorch
 *                               shape reversed; ne[0] a multiple of the type's block size
 *     u32    type               a ggml type id (core.h pare_type: 0 F32, 1 F16, 8 Q8_0, ...)
 *     u64    offset             of the tensor's bytes from the start of the data section
 *   zero padding up to a multiple of ALIGNMENT (only written when there are tensors)
 *   data section                the tensors' bytes, each followed by zero padding up to a
 *                               multiple of ALIGNMENT
 *
 * ALIGNMENT is the value of the key `general.alignment`, which must be a U32 and a power of
 * two, or 32 when the key is absent. Like ggml, pare requires each offset to equal the sum
 * of the padded sizes of the tensors before it (so offsets are aligned, in order, with no
 * gap and no overlap), and the bytes of every tensor to lie inside the file.
 * A tensor's size is ne[0]/block_size * type_size * ne[1] * ne[2] * ne[3] bytes (rows of
 * whole blocks; see pare_type_get for block sizes).
 *
 * Split files (llama-gguf-split): NAME-00001-of-00003.gguf, NAME-00002-of-00003.gguf, ...
 * Each part is a complete GGUF holding some of the tensors. Every part carries split.no
 * (U16, 0-based part index), split.count (U16, number of parts) and split.tensors.count
 * (I32, tensors over all parts); the first part also carries all the other metadata.
 *
 * Limits pare applies to hostile files: every count and length is checked against the
 * bytes left in the file before anything is allocated (a KV takes at least 14 bytes, a
 * tensor info 32, a string 8 + its length), keys are at most PARE_GGUF_MAX_KEY bytes,
 * strings at most PARE_GGUF_MAX_STRING bytes and an array's payload at most
 * PARE_GGUF_MAX_ARRAY bytes; so memory use stays proportional to the file's header.
 * Errors: malformed files give PARE_EINPUT with a one-line message naming the file, the
 * key or the tensor (index and name) and the offending offset or value.
 */
#ifndef PARE_FORMATS_GGUF_H
#define PARE_FORMATS_GGUF_H

#include "core/core.h"

#define PARE_GGUF_MAGIC "GGUF"
#define PARE_GGUF_VERSION 3                /* what the writer writes */
#define PARE_GGUF_DEFAULT_ALIGNMENT 32
#define PARE_GGUF_MAX_ALIGNMENT (1u << 20)  /* largest general.alignment read */
#define PARE_GGUF_MAX_NAME 63              /* bytes of a tensor name */
#define PARE_GGUF_MAX_KEY (1u << 20)       /* bytes of a key */
#define PARE_GGUF_MAX_STRING (1ull << 30)  /* bytes of one string value, as ggml */
#define PARE_GGUF_MAX_ARRAY (1ull << 30)   /* bytes of one array's elements */
#define PARE_GGUF_MAX_SPLITS 65535         /* split.count is a U16 */

/* Maps and validates a GGUF file (version 2 or 3; version 1 is refused).
 * Tensors point into the mapping: t->data, t->source = index in model->maps,
 * t->file_offset = absolute offset of the bytes in that file; t->n_dims is as stored.
 * model->format = PARE_FORMAT_GGUF; ->version; ->meta holds every KV in file order (all 13
 * value types, arrays of strings; nested arrays are refused); ->alignment is
 * general.alignment or 32; ->arch is a copy of general.architecture when present (else
 * NULL); ->gguf_names is true.
 * Split files: when the file has split.count > 1 (it may be any part, named
 * NAME-0000i-of-0000N.gguf), every part is loaded, in order, into one model, checking
 * split.no, split.count and split.tensors.count; the meta is the first part's without the
 * split.* keys; model->maps has one entry per part. A file with split.count 0 (what
 * llama-gguf-split --merge writes) or 1 is a whole model and keeps its split.* keys.
 * Free with pare_model_free. */
pare_status pare_gguf_load(const char *path, pare_model **out, pare_err *err);

/* Streaming writer. `tensors` gives name, type, n_dims and ne of each tensor in write
 * order; their data and n_bytes are not used (sizes are computed from type and shape).
 * The header (every KV of `meta` in order, then the tensor infos with offsets computed from
 * the padded sizes) is written at open; then call pare_gguf_writer_add once per tensor, in
 * order, with exactly that tensor's bytes; pare_gguf_writer_finish fsyncs and renames the
 * file into place. pare_gguf_writer_free without finish removes the temporary file.
 * Always writes version 3. Alignment: meta's general.alignment (must be a U32 power of two)
 * when present, else 32; padding is zeros. force / inputs as pare_outfile_open.
 * Errors: names longer than 63 bytes and types GGUF cannot hold give PARE_EUNSUPPORTED;
 * malformed meta or tensor lists, and add/finish calls out of order, PARE_EUSAGE. After
 * any error the writer refuses further adds and finish. */
typedef struct pare_gguf_writer pare_gguf_writer;
pare_status pare_gguf_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors,
                                  size_t n_tensors, bool force, const char *const *inputs, size_t n_inputs,
                                  pare_gguf_writer **out, pare_err *err);
pare_status pare_gguf_writer_add(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err);
/* The same in pieces: the bytes of the current tensor may come in several calls; the
 * tensor is complete (and padded) when its size is reached. */
pare_status pare_gguf_writer_add_part(pare_gguf_writer *w, const void *data, uint64_t n_bytes, pare_err *err);
pare_status pare_gguf_writer_finish(pare_gguf_writer *w, pare_err *err);
void pare_gguf_writer_free(pare_gguf_writer *w);

/* Writes a whole model: its meta, then every tensor through pare_tensor_bytes, one at a
 * time (mapped tensors are written straight from the mapping and their pages released
 * afterwards with pare_model_release_tensor, so memory does not grow with the model).
 * Refuses to overwrite any of the model's own files. */
pare_status pare_gguf_save(const pare_model *m, const char *path, bool force, pare_err *err);

/* Writes the model as split files like `llama-gguf-split --split-max-size`: tensors in
 * order, a new part whenever the part's padded tensor bytes would exceed max_bytes (each
 * part holds at least one tensor). `path` is NAME.gguf or NAME; the parts are
 * NAME-00001-of-0000N.gguf ... The first part has the meta (minus any split.* keys), then
 * split.no, split.tensors.count, split.count (the order llama-gguf-split writes them); the
 * other parts only the split.* keys and general.alignment when the meta has it.
 * Every part is written under a temporary name and renamed only when all are complete.
 * *n_parts (may be NULL) receives the number of parts. */
pare_status pare_gguf_save_split(const pare_model *m, const char *path, uint64_t max_bytes, bool force,
                                 int *n_parts, pare_err *err);

/* "NAME-00002-of-00005.gguf" from ("NAME", 1, 5) (part index 0-based, as split.no), into
 * a new malloc'ed string (NULL when out of memory). */
char *pare_gguf_split_path(const char *prefix, int part, int count);

#endif
