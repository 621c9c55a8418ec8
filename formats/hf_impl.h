/*
 * formats/hf_impl.h - private declarations shared by the files of the HF folder module:
 *   hf.c            folder loading, the architecture, model naming heuristics
 *   hf_config.c     config.json <-> GGUF hyperparameters (the table's hparams lists)
 *   hf_names.c      tensor name mapping and the per-family tensor changes, to/from GGUF
 *   hf_tokenizer.c  sentencepiece protobuf and tokenizer.json import / export
 *   hf_write.c      config.json and tokenizer files for a GGUF model
 * Not part of pare's public API.
 */
#ifndef PARE_FORMATS_HF_IMPL_H
#define PARE_FORMATS_HF_IMPL_H

#include "formats/hf.h"

#include <cJSON.h>

/* ------------------------------------------------------------------ JSON files (hf.c) */

/* Reads folder/name as JSON. When the file is absent: *out = NULL and PARE_OK unless required
 * (then PARE_EINPUT). Malformed JSON -> PARE_EINPUT naming the file. want_object: the top
 * value must be an object. */
pare_status pare_hf_json_read(const char *folder, const char *name, bool required, bool want_object, cJSON **out,
                              pare_err *err);
/* Parses len bytes of JSON text (path names the file in messages). */
pare_status pare_hf_json_parse(const char *path, const char *text, size_t len, bool want_object, cJSON **out,
                               pare_err *err);
/* An object member that is present and not null, else NULL. */
const cJSON *pare_hf_json_get(const cJSON *obj, const char *key);
/* A number that is an integer (not a bool). */
bool pare_hf_json_int(const cJSON *v, int64_t *out);
/* Writes a cJSON value as pretty-printed text to folder/name through pare_outfile. */
pare_status pare_hf_json_write(const char *folder, const char *name, const cJSON *j, bool force, pare_err *err);
/* Writes n bytes to folder/name through pare_outfile. */
pare_status pare_hf_file_write(const char *folder, const char *name, const void *buf, size_t n, bool force,
                               pare_err *err);

/* Whether config.json's _name_or_path = model_id gives back meta's general.* names. */
bool pare_hf_model_id_matches(const char *model_id, int64_t total_params, const pare_meta *meta);

/* ------------------------------------------------------------------ names (hf_names.c) */

/* The GGUF architectures this module knows, and whether q/k rows are permuted for them. */
bool pare_hf_arch_known(const char *arch);
bool pare_hf_arch_permutes(const char *arch);
/* The family's PARE_CONV_* flags (0 for an unknown one). */
unsigned pare_hf_arch_flags(const char *arch);
/* Tensors the converter drops before mapping (rotary inv_freq, GPT-2 attention masks). */
bool pare_hf_name_skipped(const char *arch, const char *hf_name);
/* GGUF name of the tensor's HF name, with the block id (or -1) in *bid. */
bool pare_hf_map_name(const char *arch, const char *hf_name, char *out, size_t cap, int *bid);
/* Puts tensors in (source file name, offset) order: how the converter iterates safetensors
 * parts (sorted file names, each file's tensors in file order). */
pare_status pare_hf_sort_tensors(pare_model *m, pare_err *err);
/* Makes t a tensor of the given bytes: a copy of src's data source that borrows it (src must
 * outlive t); t keeps its own name/type/dims. Used for GPT-2's output.weight. */
pare_status pare_hf_tensor_alias(pare_tensor *t, const pare_tensor *src, const char *name, pare_err *err);

/* ------------------------------------------------------------------ config (hf_config.c) */

/* The family's set_gguf_parameters: appends the hyperparameter keys config.json gives, in the
 * converter's order and types, to meta. ftype is general.file_type of the weights as they are. */
pare_status pare_hf_config_import(const char *path, const cJSON *cfg, const char *arch, uint32_t ftype,
                                  pare_meta *meta, pare_err *err);
/* A config.json with a "text_config" object (a multimodal checkpoint, e.g.
 * Gemma3ForConditionalGeneration) flattened as llama.cpp's converter reads it: the top level
 * with text_config's members over it ({**hparams, **text_config}); a new object to free with
 * cJSON_Delete. NULL when cfg has no text_config (or out of memory): use cfg as it is. */
cJSON *pare_hf_config_flatten(const cJSON *cfg);
/* config.json's vocab_size: the top level's, else text_config's (a multimodal checkpoint,
 * e.g. Gemma3ForConditionalGeneration, whose vocabulary the converter pads to it); NULL when
 * neither has one. */
const cJSON *pare_hf_vocab_size(const cJSON *cfg);
/* The inverse: adds to cfg (an object) the config.json keys that give meta's hyperparameters
 * back, with the family's class and model_type. */
pare_status pare_hf_config_export(const pare_model *m, const char *arch, cJSON *cfg, pare_err *err);

/* ------------------------------------------------------------------ tokenizer (hf_tokenizer.c) */

/* Appends the tokenizer keys the converter writes for `arch` (tokenizer.ggml.model, pre,
 * tokens, scores, token_type, merges, special ids, add_* flags, chat_template and the
 * arch-specific extras) to meta, reading folder's tokenizer files. config is config.json.
 * A BPE tokenizer's pre-tokenizer is named from tokenizer.json's definition
 * (formats/hf_pretok.h), or is force_pre when not NULL (a name pare implements). */
pare_status pare_hf_tokenizer_import(const char *folder, const char *arch, const cJSON *config, const char *force_pre,
                                     pare_meta *meta, pare_err *err);
/* Builds tokenizer.model (sentencepiece protobuf) from meta's tokenizer.ggml.* keys into a new
 * malloc'ed buffer. */
pare_status pare_hf_sp_build(const pare_meta *meta, uint8_t **out, size_t *len, pare_err *err);
/* Builds tokenizer.json (as cJSON) for a "gpt2" tokenizer in meta. */
pare_status pare_hf_tokjson_build(const pare_meta *meta, cJSON **out, pare_err *err);
/* Adds to tokenizer_config (an object) the special tokens, add_* flags, chat template and
 * added_tokens_decoder that make the converter read meta's vocabulary back; also fills
 * special_tokens_map. */
pare_status pare_hf_tokcfg_build(const pare_meta *meta, cJSON *tokcfg, cJSON *special_map, pare_err *err);

/* Token types (sentencepiece's enum, as GGUF stores them). */
enum { HF_TOK_NORMAL = 1, HF_TOK_UNKNOWN = 2, HF_TOK_CONTROL = 3, HF_TOK_USER_DEFINED = 4, HF_TOK_UNUSED = 5,
       HF_TOK_BYTE = 6 };

/* The special token kinds the converter looks for, in its order, and their GGUF keys. */
#define HF_N_SPECIAL 7
extern const char *const pare_hf_special_names[HF_N_SPECIAL]; /* "bos", "eos", "unk", ... */
extern const char *const pare_hf_special_keys[HF_N_SPECIAL];  /* "tokenizer.ggml.bos_token_id" ... */

#endif
