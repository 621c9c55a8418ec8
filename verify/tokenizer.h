/*
 * verify/tokenizer.h - llama.cpp's tokenizers, rebuilt from a model's GGUF metadata.
 *
 * Reproduces llama_tokenize(vocab, text, add_special, parse_special = false) of llama.cpp
 * (February 2025) for the two vocabulary types GGUF models mostly carry:
 *
 *   "llama"  sentencepiece-style (SPM): a space is put in front of the text (unless
 *            tokenizer.ggml.add_space_prefix is false), spaces become U+2581, then UTF-8
 *            characters are merged pairwise, highest token score first, only into pieces
 *            that are tokens; what stays unknown falls back to <0xXX> byte tokens.
 *   "gpt2"   byte-level BPE: the text is split by the pre-tokenizer regexes named by
 *            tokenizer.ggml.pre, every byte of a piece is mapped to GPT-2's printable
 *            byte alphabet, then merged by the rank of each pair in tokenizer.ggml.merges.
 *
 * Metadata read (all under tokenizer.ggml.): model, pre, tokens (string array, required),
 * scores (float array), token_type (integer array: 1 normal, 2 unknown, 3 control,
 * 4 user-defined, 5 unused, 6 byte), merges (string array "left right", required for
 * gpt2), bos/eos/unknown/padding/eot/fim_*_token_id, add_bos_token, add_eos_token,
 * add_space_prefix. Arrays whose length differs from tokens are refused (PARE_EINPUT).
 *
 * User-defined tokens (type 4) are cut out of the text before the main tokenizer runs,
 * as llama.cpp does even with parse_special = false; control and unknown tokens are
 * never parsed from text.
 *
 * Text that is not valid UTF-8 is tokenized as llama.cpp does: SPM works on raw bytes
 * (falling back to byte tokens); BPE replaces each undecodable byte by U+FFFD.
 *
 * A pare_tokenizer is immutable after pare_tokenizer_new: several threads may call
 * pare_tokenize on the same one at once.
 */
#ifndef PARE_VERIFY_TOKENIZER_H
#define PARE_VERIFY_TOKENIZER_H

#include "core/core.h"

typedef struct pare_tokenizer pare_tokenizer;

/* Builds a tokenizer from GGUF tokenizer metadata (the metadata is copied; meta may be
 * freed afterwards). An unknown tokenizer model or pre-tokenizer name is
 * PARE_EUNSUPPORTED naming it; missing or malformed keys are PARE_EINPUT. */
pare_status pare_tokenizer_new(const pare_meta *meta, pare_tokenizer **out, pare_err *err);
void pare_tokenizer_free(pare_tokenizer *tk);

/* A BPE pre-tokenizer given as its regexes rather than by a tokenizer.ggml.pre name (how
 * `pare tokenize --check` runs a tokenizer.json's own definition, formats/hf_pretok.h).
 * The regexes split in order as llama.cpp's lists do; from index byte_level_at on
 * (>= n: never) they see the pieces in GPT-2's byte alphabet; multiline compiles them with
 * PCRE2_MULTILINE. BOS / EOS defaults are those of a GPT-2 vocabulary. */
typedef struct {
    const char *name; /* what pare_tokenizer_pre returns */
    const char *const *regexes;
    size_t n;
    size_t byte_level_at;
    bool multiline;
    bool ignore_merges; /* a piece that is a whole token is taken as is */
} pare_tok_regex_pre;

/* pare_tokenizer_new for a "gpt2" vocabulary in meta, with the pre-tokenizer `pre` in place
 * of tokenizer.ggml.pre (which is not read). A regex that does not compile is
 * PARE_EUNSUPPORTED naming it. */
pare_status pare_tokenizer_new_regex(const pare_meta *meta, const pare_tok_regex_pre *pre, pare_tokenizer **out,
                                     pare_err *err);

/* Tokenizes len bytes of text into a new malloc'ed array (*tokens, the caller frees it;
 * NULL when *n_tokens is 0). add_special adds BOS / EOS as the vocabulary asks
 * (tokenizer.ggml.add_bos_token / add_eos_token, else llama.cpp's defaults: SPM adds BOS,
 * BPE does not except for the llama3 family). */
pare_status pare_tokenize(const pare_tokenizer *tk, const char *text, size_t len, bool add_special,
                          int32_t **tokens, size_t *n_tokens, pare_err *err);

/* The text one token stands for, for display (llama_token_to_piece with special = true):
 * SPM "\u2581the" gives " the", byte tokens their byte, BPE tokens their decoded bytes,
 * control tokens their name, unused tokens "". NULL when id is out of range. The string
 * belongs to the tokenizer. pare_token_piece also gives its length in bytes (a byte
 * token's piece may be a lone NUL or an incomplete UTF-8 sequence). */
const char *pare_token_text(const pare_tokenizer *tk, int32_t id);
const char *pare_token_piece(const pare_tokenizer *tk, int32_t id, size_t *len);

/* Special token ids, -1 when the vocabulary has none. */
int32_t pare_tokenizer_bos(const pare_tokenizer *tk);
int32_t pare_tokenizer_eos(const pare_tokenizer *tk);
/* Whether pare_tokenize(add_special = true) puts BOS first / EOS last. */
bool pare_tokenizer_add_bos(const pare_tokenizer *tk);
bool pare_tokenizer_add_eos(const pare_tokenizer *tk);
size_t pare_tokenizer_n_vocab(const pare_tokenizer *tk);
/* "llama" or "gpt2", and the pre-tokenizer name in use ("default" when none was given). */
const char *pare_tokenizer_model(const pare_tokenizer *tk);
const char *pare_tokenizer_pre(const pare_tokenizer *tk);

#endif
