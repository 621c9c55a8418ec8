/*
 * formats/hf_pretok.h - the BPE pre-tokenizers pare implements, in both spellings: the
 * tokenizer.ggml.pre names and PCRE2 regex lists of llama.cpp (which verify/tok_pre.c runs)
 * and the tokenizer.json `pre_tokenizer` (+ `normalizer`) Hugging Face writes for the same
 * tokenizers. One table (formats/hf_pretok.c) serves the three users:
 *   - converting an HF folder: pare_hf_pretok_name names llama.cpp's pre-tokenizer from the
 *     tokenizer.json definition (instead of llama.cpp's hash of a test string);
 *   - exporting a GGUF to an HF folder: pare_hf_pretok_json writes the definition back;
 *   - `pare tokenize --check`: pare_hf_pretok_regexes turns any tokenizer.json definition
 *     (known or not) into the regex list Hugging Face's `tokenizers` runs.
 *
 * tokenizer.json steps understood (a lone step or a "Sequence" of them):
 *   Split      {"pattern": {"Regex": R} or {"String": S}, "behavior": "Isolated", "invert": false}
 *   ByteLevel  {"add_prefix_space": false, "use_regex": true | false}: with use_regex, GPT-2's
 *              regex splits first; then every piece is written in GPT-2's byte alphabet, so
 *              later steps see "Ġ" where the text had a space
 *   Digits     {"individual_digits": true | false}: \p{N} or \p{N}+ isolated
 *   Punctuation {"behavior": "Isolated" | "Contiguous"}: ASCII punctuation and \p{P}
 * Normalizers accepted: none, NFC (llama.cpp applies none; text is assumed to be NFC already),
 * or a Sequence of those. Anything else is PARE_EUNSUPPORTED.
 */
#ifndef PARE_FORMATS_HF_PRETOK_H
#define PARE_FORMATS_HF_PRETOK_H

#include "core/core.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* One step of a tokenizer.json pre_tokenizer, as the table spells it. */
typedef enum {
    PARE_PRETOK_END = 0,
    PARE_PRETOK_SPLIT,        /* Split, Regex pattern, Isolated, not inverted */
    PARE_PRETOK_BYTELEVEL,    /* ByteLevel, use_regex false */
    PARE_PRETOK_BYTELEVEL_RE, /* ByteLevel, use_regex true (GPT-2's regex) */
    PARE_PRETOK_DIGITS,       /* Digits, individual_digits false */
    PARE_PRETOK_DIGITS_EACH,  /* Digits, individual_digits true */
    PARE_PRETOK_PUNCT,        /* Punctuation, Contiguous */
    PARE_PRETOK_PUNCT_EACH,   /* Punctuation, Isolated */
} pare_pretok_kind;

typedef struct {
    pare_pretok_kind kind;
    const char *regex; /* PARE_PRETOK_SPLIT: the pattern as tokenizer.json spells it */
} pare_pretok_step;

/* One llama.cpp pre-tokenizer (a group of tokenizer.ggml.pre names that select the same
 * regexes and vocabulary defaults in llama.cpp's llama_vocab::impl::load). */
typedef struct pare_pretok {
    const char *const *names;   /* NULL-terminated; names[0] is what pare writes */
    const char *const *regexes; /* pare's PCRE2 patterns (UTF + UCP), NULL-terminated */
    bool ignore_merges;         /* a piece that is a whole token is taken as is */
    bool add_bos;               /* llama.cpp's default for add_bos_token */
    bool no_bos;                /* the vocabulary has no BOS (chatglm) */
    /* tokenizer.json: the pre_tokenizer steps (END-terminated; NULL: no JSON form) and
     * whether the normalizer is NFC (else none) */
    const pare_pretok_step *json;
    bool nfc;
} pare_pretok;

/* The entry for a tokenizer.ggml.pre value; NULL or "" gives "default". NULL when unknown. */
const pare_pretok *pare_pretok_find(const char *name);
/* The table, for listing and tests: entry i, NULL past the end. */
const pare_pretok *pare_pretok_at(size_t i);

/* Names llama.cpp's pre-tokenizer of a byte-level BPE tokenizer.json (the parsed file):
 * its pre_tokenizer, normalizer and model.ignore_merges are compared with the table. arch
 * (the GGUF architecture, may be NULL) picks among names that are the same tokenizer for
 * llama.cpp the one its converter writes for that family (phi2 -> "phi-2"). path names the
 * file in messages. A definition that matches none is PARE_EUNSUPPORTED with a one-line
 * message showing its regex(es) and saying that --tokenizer-pre NAME forces a name. */
pare_status pare_hf_pretok_name(const cJSON *tokjson, const char *arch, const char *path, char *name, size_t cap,
                                pare_err *err);

/* The tokenizer.json "pre_tokenizer" and "normalizer" values for a tokenizer.ggml.pre name
 * (new cJSON objects; *normalizer is a JSON null when there is none) and model.ignore_merges.
 * PARE_EUNSUPPORTED when the name has no tokenizer.json form in the table. */
pare_status pare_hf_pretok_json(const char *name, cJSON **pre_tokenizer, cJSON **normalizer, bool *ignore_merges,
                                pare_err *err);

/* The pre-tokenizer a tokenizer.json defines, as the regexes Hugging Face's `tokenizers`
 * runs (owned strings, PCRE2 syntax with UTF + UCP; `multiline` set because Oniguruma's "$"
 * and "^" are line anchors), each splitting the pieces into matches and the stretches
 * between them; regexes from index byte_level_at on run on the GPT-2 byte-alphabet form of
 * the pieces (n: never). */
typedef struct {
    char **regexes;
    size_t n;
    size_t byte_level_at;
    bool multiline;
    bool ignore_merges; /* model.ignore_merges */
} pare_hf_pretok_list;

/* Reads tokenjson's pre_tokenizer and normalizer into *out (free with
 * pare_hf_pretok_list_free). Steps or normalizers outside the list in the header comment,
 * and pre-tokenizers without a ByteLevel step, are PARE_EUNSUPPORTED naming them. */
pare_status pare_hf_pretok_regexes(const cJSON *tokjson, const char *path, pare_hf_pretok_list *out, pare_err *err);
void pare_hf_pretok_list_free(pare_hf_pretok_list *l);

#endif
