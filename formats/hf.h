/*
 * formats/hf.h - Hugging Face model folders: import to GGUF metadata and names, export back.
 *
 * A Hugging Face model folder is a directory of files, all optional but config.json:
 *
 *   config.json                    JSON object of hyperparameters. pare reads
 *                                  "architectures"[0] (else "model_type"), which picks the
 *                                  entry of the architecture table (core/arch.h), whose
 *                                  hparams list names the keys read and the GGUF keys they
 *                                  become (hidden_size, num_hidden_layers, ..., GPT-2's n_embd,
 *                                  GPT-NeoX's rotary_pct, Gemma 2's soft-capping, ...), plus
 *                                  vocab_size, tie_word_embeddings, *_token_id, _name_or_path.
 *   model.safetensors.index.json   {"weight_map": {tensor: shard file}} over
 *   model-0000i-of-0000N.safetensors, or a single model.safetensors (see safetensors.h);
 *   pytorch_model.bin[.index.json] the same as torch zip checkpoints (see pytorch.h).
 *   tokenizer.model                a sentencepiece ModelProto (protobuf, see below)
 *   tokenizer.json                 a `tokenizers` fast tokenizer: {"added_tokens": [{id, content,
 *                                  special, ...}], "pre_tokenizer": {...}, "model": {"type": "BPE",
 *                                  "vocab": {token: id}, "merges": ["a b", ...] or [["a","b"],...]}}
 *   added_tokens.json              {token: id} (sentencepiece models)
 *   tokenizer_config.json          add_bos_token, add_eos_token, {bos,eos,unk,...}_token,
 *                                  added_tokens_decoder {"id": {content, special}}, chat_template
 *   special_tokens_map.json, generation_config.json   written for transformers; not read (the
 *                                  reference converter does not read them either)
 *
 * The sentencepiece protobuf (proto2 wire format; varints little-endian base 128, at most 10
 * bytes; a key is (field << 3) | wire type; wire types 0 varint, 1 fixed64, 2 length-delimited
 * (varint length + bytes), 5 fixed32):
 *   ModelProto        1 repeated SentencePiece pieces, 2 TrainerSpec, 3 NormalizerSpec, ...
 *   SentencePiece     1 piece (bytes, UTF-8), 2 score (float, fixed32), 3 type (enum: 1 NORMAL
 *                     (default), 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE)
 *   TrainerSpec       3 model_type (1 UNIGRAM, 2 BPE), 4 vocab_size, 35 byte_fallback,
 *                     40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id (int32, -1 = none)
 *   NormalizerSpec    1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
 *                     5 escape_whitespaces (bools, default true)
 * Every length is checked against the bytes remaining in its enclosing message; unknown fields
 * are skipped; at most PARE_HF_MAX_VOCAB pieces.
 *
 * What pare writes into the metadata follows llama.cpp's convert_hf_to_gguf.py (February 2025)
 * key by key, in its order and with its value types; the notes in hf.c say where it cannot
 * (README model cards are not read; added tokens are not re-normalised through the tokenizer;
 * tokenizer.ggml.pre of BPE tokenizers is chosen from the pre-tokenizer regex, see
 * hf_tokenizer.c, where the converter hashes the tokenizer's output).
 *
 * Limits: config.json and the tokenizer files are read whole (at most PARE_HF_MAX_JSON bytes);
 * layer, head and size counts are bounded below so that a hostile config cannot make pare
 * allocate more than its files justify.
 */
#ifndef PARE_FORMATS_HF_H
#define PARE_FORMATS_HF_H

#include "core/core.h"
#include "formats/formats.h"

#define PARE_HF_MAX_JSON (512ull << 20) /* bytes of one JSON file (tokenizer.json can be big) */
#define PARE_HF_MAX_LAYERS 4096
#define PARE_HF_MAX_HEADS 65536
#define PARE_HF_MAX_DIM (1 << 20)       /* hidden_size, intermediate_size, head_dim */
#define PARE_HF_MAX_VOCAB (1 << 22)     /* vocab_size and sentencepiece pieces */
#define PARE_HF_MAX_CONTEXT (1ll << 32) /* max_position_embeddings */

/* Loads an HF folder: config.json (a class or model_type of the architecture table: llama,
 * mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, gpt2, gemma, gemma2, gemma3_text, gemma3
 * (its language model), phi3, starcoder2, olmo2, gpt_neox, cohere, phi; others ->
 * PARE_EUNSUPPORTED naming the architecture), weights from model.safetensors, or
 * model.safetensors.index.json (or model*.safetensors parts), or pytorch_model.bin (or its
 * index pytorch_model.bin.index.json, or pytorch_model*.bin parts), and the tokenizer
 * (tokenizer.model, or tokenizer.json, plus tokenizer_config.json / added_tokens.json).
 * Result: names stay HF names (gguf_names = false), in the order the converter reads them
 * (safetensors parts sorted by file name, each file's tensors in file order; torch files in
 * pickle order); a tied lm_head (tie_word_embeddings, its default from the table) is dropped;
 * model->format = PARE_FORMAT_HF; model->arch = the GGUF architecture ("llama" for llama,
 * mistral and mixtral, ...); model->meta = the metadata convert_hf_to_gguf.py writes for that
 * model, in its order and types, with general.file_type at the converter's place set for the
 * weights as they are (0 F32, 1 F16, 32 BF16: the writer replaces it in place for another
 * output type) and without general.quantization_version (the writer adds it).
 * general.name, basename, finetune, version and size_label are derived from config.json's
 * _name_or_path and the folder's name as the converter does.
 * Errors: PARE_EINPUT naming the file for malformed files. */
pare_status pare_hf_load(const char *folder, pare_model **out, pare_err *err);
/* The same with the weights taken from one given file of the folder (a safetensors file or
 * model.safetensors.index.json, a torch checkpoint or pytorch_model.bin.index.json) instead
 * of the folder's default choice. */
pare_status pare_hf_load_weights(const char *folder, const char *weights, pare_model **out, pare_err *err);
/* Either of the two (weights NULL: the folder's choice) with the reader's options. */
pare_status pare_hf_load_with(const char *folder, const char *weights, const pare_load_opts *lo, pare_model **out,
                              pare_err *err);

/* Turns a model with HF tensor names (from pare_hf_load, or a bare safetensors / pytorch file
 * with m->arch set and, for llama, {arch}.attention.head_count[_kv] in m->meta) into GGUF names
 * and layout in place, as the architecture table's .conv says: renames every tensor (unknown
 * names -> PARE_EUNSUPPORTED naming the tensor, except ones llama.cpp skips:
 * rotary_emb.inv_freq, GPT-2's attn.bias and attn.masked_bias), drops lm_head when it shares
 * the embedding's bytes (always for Gemma), merges per-expert tensors into 3-D ffn_*_exps
 * (needs {arch}.expert_count; written where the block's last expert was, in the family's part
 * order), and lazily (t->read; the original data kept in the reader's context): permutes the
 * rows of llama-family q_proj / k_proj, transposes GPT-2's Conv1D weights, adds 1 to Gemma's
 * norm weights, reorders GPT-NeoX's query_key_value from per-head to q | k | v; adds GPT-2's
 * output.weight as a copy of the token embedding (as the converter does) and, for llama 3
 * rope scaling, the generated rope_freqs.weight first. A bare safetensors model is put in
 * file order first. Sets gguf_names = true. A model that already has GGUF names is left as it
 * is. */
pare_status pare_hf_to_gguf(pare_model *m, pare_err *err);

/* The inverse: GGUF names -> HF names (the table's first block prefix), inverse permutation
 * of attn_q / attn_k (lazy), GPT-2's Conv1D weights transposed back, Gemma's norms - 1,
 * GPT-NeoX's qkv rows back to per-head order, 3-D expert tensors split into one 2-D tensor per
 * expert (slices of the same bytes), GPT-2's output.weight dropped (transformers ties it to
 * wte), rope_freqs dropped (it is computed from config.json's rope_scaling). When the GGUF has
 * no output.weight no lm_head is made (the folder's config says the embeddings are tied). An
 * architecture without HF names -> PARE_EUNSUPPORTED (convert keeps such a GGUF's names in
 * safetensors instead). gguf_names = false. */
pare_status pare_gguf_to_hf(pare_model *m, pare_err *err);

/* Writes config.json and generation_config.json for a model whose meta is GGUF metadata, and
 * the tokenizer: tokenizer.model (a sentencepiece protobuf rebuilt from tokenizer.ggml.* for
 * the "llama" tokenizer model) or tokenizer.json (for "gpt2"), tokenizer_config.json and
 * special_tokens_map.json, so that GGUF -> HF folder -> GGUF reproduces the metadata. The
 * folder is created when missing. Each file goes through pare_outfile (atomic; existing files
 * are replaced only with force). Tensors are not written (see pare_safetensors_save). */
pare_status pare_hf_write_folder_meta(const pare_model *m, const char *folder, bool force, pare_err *err);

/* Name mapping helpers (also used by the LoRA merger): map one name; false when unknown or
 * when it does not fit in cap bytes. arch is the GGUF architecture (an entry of core/arch.h).
 * Names llama.cpp skips (rotary_emb.inv_freq ...) are unknown here; per-expert HF names are
 * not single tensors in GGUF and are unknown too. */
bool pare_hf_name_to_gguf(const char *arch, const char *hf_name, char *out, size_t cap);
bool pare_gguf_name_to_hf(const char *arch, const char *gguf_name, char *out, size_t cap);

/* Row permutation of q/k as the converter does it (n_rows = n_head * head_dim rows of
 * row_bytes bytes each; head_dim even): within each head, row j * 2 + k of dst is row
 * k * head_dim / 2 + j of src. inverse undoes it. src and dst must not overlap. */
void pare_hf_permute_rows(const void *src, void *dst, int64_t n_rows, size_t row_bytes, int n_head, bool inverse);

/* For a GGUF-named tensor: the head count to permute it with (attn_q: head_count, attn_k:
 * head_count_kv, or head_count when absent) for llama-family archs, 0 when it is not permuted
 * (other tensors, other archs, or head counts missing from m->meta). */
int pare_hf_permute_heads(const pare_model *m, const char *gguf_name);

#endif
