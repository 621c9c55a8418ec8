/*
 * formats/safetensors.h - safetensors files (single and sharded): reader and streaming writer.
 *
 * The format (huggingface/safetensors), all integers little-endian:
 *
 *   u64   N                     header length in bytes; pare, like the reference library,
 *                               refuses N > 100,000,000 and 8 + N > file size
 *   u8    header[N]             UTF-8 JSON object (may be padded with trailing spaces; the
 *                               reference writer pads to a multiple of 8 so that the data
 *                               start stays 8-byte aligned):
 *           { "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]},
 *             ...,
 *             "__metadata__": {"key": "string value", ...} }      (optional, strings only)
 *   u8    data[]                the tensors' bytes, row-major ("C" order), little-endian;
 *                               offsets are relative to the start of data (8 + N)
 *
 * dtypes: BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 (element sizes
 * 1 1 1 1 1 2 2 2 2 4 4 4 8 8 8). Validation follows the reference `validate`: shape entries
 * are non-negative integers whose product (times the element size) must not overflow and must
 * equal end - begin; sorted by begin, the tensors start at 0, leave no gaps, do not overlap
 * and end exactly at the end of the file; names are unique; every string is valid UTF-8.
 * The tensor order in the header does not matter (the reference sorts by offset).
 *
 * Sharded checkpoints: `model.safetensors.index.json` holds
 *   {"metadata": {"total_size": bytes}, "weight_map": {"NAME": "model-00001-of-00003.safetensors", ...}}
 * with shard names relative to the index's folder.
 *
 * In pare: dims are reversed into ggml order (ne[0] = last entry of the shape); a 0-d tensor
 * (shape []) becomes n_dims 1, ne[0] 1 (and is written back as shape [1]); shapes of more
 * than 4 dims are accepted only when the extra leading dims are 1. `__metadata__` entries
 * become STRING KVs of model->meta under their raw key (e.g. "format" -> "pt"), and the
 * writers write every STRING KV of the given meta as `__metadata__`.
 */
#ifndef PARE_FORMATS_SAFETENSORS_H
#define PARE_FORMATS_SAFETENSORS_H

#include "core/core.h"

/* Largest header the reader accepts, as the reference library. */
#define PARE_ST_MAX_HEADER 100000000ull

/* Maps the file; tensors point into the mapping (model->maps[0]). model->format is
 * PARE_FORMAT_SAFETENSORS, gguf_names false; tensors are in data-offset order.
 * Bad files give PARE_EINPUT with a message naming the file (and the tensor); shapes pare
 * cannot hold (5+ dims that are not 1) give PARE_EUNSUPPORTED. Free with pare_model_free. */
pare_status pare_safetensors_load(const char *path, pare_model **out, pare_err *err);

/* Loads every shard named in a model.safetensors.index.json (paths relative to the index's
 * folder; absolute paths and ".." are refused) into one model, one map per shard, shards in
 * order of first appearance in weight_map. Checks that every tensor listed is present in
 * the shard it is listed for and that every shard tensor is listed. Shard `__metadata__`
 * entries are merged into model->meta (the first shard's value wins). */
pare_status pare_safetensors_load_index(const char *index_path, pare_model **out, pare_err *err);

/* Streaming writer. `tensors` gives name, type, n_dims and ne of each tensor in write order
 * (their data is not used); every STRING KV of `meta` (may be NULL) is written in
 * `__metadata__`. The header is written at open; then call pare_st_writer_add once per tensor,
 * in order, with exactly that tensor's bytes; pare_st_writer_finish fsyncs and renames the
 * file into place. pare_st_writer_free without finish removes the temporary file.
 * force / inputs as pare_outfile_open. Types without a safetensors dtype (quantized types)
 * give PARE_EUNSUPPORTED naming the tensor. */
typedef struct pare_st_writer pare_st_writer;
pare_status pare_st_writer_open(const char *path, const pare_meta *meta, const pare_tensor *tensors, size_t n,
                                bool force, const char *const *inputs, size_t n_inputs, pare_st_writer **out,
                                pare_err *err);
pare_status pare_st_writer_add(pare_st_writer *w, const void *data, uint64_t n_bytes, pare_err *err);
/* The same in pieces: a tensor's bytes may come in several calls, in order. */
pare_status pare_st_writer_add_part(pare_st_writer *w, const void *data, uint64_t n_bytes, pare_err *err);
pare_status pare_st_writer_finish(pare_st_writer *w, pare_err *err);
void pare_st_writer_free(pare_st_writer *w);

/* Writes the whole model through pare_tensor_read (so lazy tensors work). Tensors are laid
 * out by element size, largest first, then in model order - as the reference writer, which
 * sorts by dtype - so that every tensor's data is aligned to its element size; a file read
 * with pare_safetensors_load (data order) is written back byte for byte.
 * The STRING KVs of m->meta become `__metadata__`, plus "format": "pt" when m->meta has no
 * "format" key (transformers refuses safetensors files without it). Refuses to overwrite
 * the model's own input files. */
pare_status pare_safetensors_save(const pare_model *m, const char *path, bool force, pare_err *err);

/* Sharded save as transformers' save_pretrained: tensors in model order are packed into
 * shards of at most max_shard_bytes of tensor data (a larger tensor gets a shard of its
 * own; each shard laid out as pare_safetensors_save), written as
 * DIR/model-0000i-of-0000N.safetensors plus DIR/model.safetensors.index.json
 * (weight_map sorted by name, metadata.total_size = sum of tensor bytes). When everything
 * fits in one shard, writes DIR/model.safetensors and no index, as transformers does.
 * DIR is created if missing. */
pare_status pare_safetensors_save_sharded(const pare_model *m, const char *dir, uint64_t max_shard_bytes, bool force,
                                          pare_err *err);

#endif
