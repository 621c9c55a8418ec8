/*
 * verify/tok_impl.h - private parts of the tokenizer shared by tokenizer.c (loading,
 * special tokens, dispatch), tok_spm.c (sentencepiece merges), tok_bpe.c (byte-level BPE)
 * and tok_pre.c (UTF-8 decoding and the pre-tokenizer regexes). Not a public header.
 */
#ifndef PARE_VERIFY_TOK_IMPL_H
#define PARE_VERIFY_TOK_IMPL_H

#include "core/core.h"
#include "verify/tokenizer.h"
#include "formats/hf_pretok.h"

/* Token attributes, as llama.cpp's llama_token_attr (one type bit plus strip flags). */
enum {
    TOK_ATTR_UNDEFINED = 1 << 0,
    TOK_ATTR_UNKNOWN = 1 << 1,
    TOK_ATTR_UNUSED = 1 << 2,
    TOK_ATTR_NORMAL = 1 << 3,
    TOK_ATTR_CONTROL = 1 << 4,
    TOK_ATTR_USER_DEFINED = 1 << 5,
    TOK_ATTR_BYTE = 1 << 6,
    TOK_ATTR_LSTRIP = 1 << 8,
    TOK_ATTR_RSTRIP = 1 << 9,
};

typedef enum { TOK_SPM = 0, TOK_BPE = 1 } tok_type;

/* A set of strings stored back to back in one arena: string i is arena[off[i], off[i] +
 * len[i]) followed by a NUL. */
typedef struct tok_strs {
    char *arena;
    uint32_t *off, *len;
    uint32_t n;
    uint32_t max_len;
} tok_strs;

/* Open-addressing hash index over a tok_strs: maps a string to the index of the string
 * equal to it. Slots hold index + 1 (0 = empty). */
typedef struct tok_map {
    uint32_t *slots;
    uint64_t mask;
} tok_map;

/* Builds the index. keep_last: when two strings are equal, the later index wins (as
 * llama.cpp's token_to_id[word] = i); else the first wins (as bpe_ranks.emplace). */
pare_status tok_map_build(tok_map *m, const tok_strs *s, bool keep_last, pare_err *err);
void tok_map_free(tok_map *m);
/* Index of the string equal to key[0, len), or -1. */
int64_t tok_map_find(const tok_map *m, const tok_strs *s, const char *key, size_t len);

/* A growing array of token ids. */
typedef struct tok_out {
    int32_t *v;
    size_t n, cap;
} tok_out;
pare_status tok_out_push(tok_out *o, int32_t id, pare_err *err);

/* ------------------------------------------------------------ pre-tokenizer (tok_pre.c) */

/* One pre-tokenizer: the regexes applied one after another (each splits the pieces the
 * previous one produced; text no regex matches stays as pieces of its own), and the
 * vocabulary defaults llama.cpp attaches to that pre name. The table is formats/hf_pretok.c,
 * shared with the tokenizer.json reader and writer. */
typedef pare_pretok tok_pre_def;

/* The definition for a tokenizer.ggml.pre value; NULL name or "" gives "default".
 * NULL when the name is unknown. */
const tok_pre_def *tok_pre_find(const char *name);

typedef struct tok_pre tok_pre; /* compiled regexes */
pare_status tok_pre_compile(const tok_pre_def *def, tok_pre **out, pare_err *err);
/* Compiles any list of n regexes (what names it in messages): multiline adds
 * PCRE2_MULTILINE; regexes from index byte_level_at on (>= n: none) run on the pieces
 * written in GPT-2's byte alphabet, as after Hugging Face's ByteLevel step. */
pare_status tok_pre_compile_list(const char *what, const char *const *regexes, size_t n, bool multiline,
                                 size_t byte_level_at, tok_pre **out, pare_err *err);
void tok_pre_free(tok_pre *p);

/* Text decoded the llama.cpp way and split into pieces.
 * utf8: the text re-encoded from its code points (each byte that does not start a
 * decodable sequence became U+FFFD); pieces are byte ranges of it, in order. */
typedef struct tok_words {
    char *utf8;
    size_t len;
    size_t *off, *n; /* piece i is utf8[off[i], off[i] + n[i]) */
    size_t n_words, cap;
} tok_words;
pare_status tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_words *w, pare_err *err);
void tok_words_free(tok_words *w);

/* Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes), from
 * its top four bits, as llama.cpp's unicode_len_utf8. */
static inline size_t tok_utf8_len(unsigned char c) {
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* ------------------------------------------------------------ the tokenizer */

struct pare_tokenizer {
    tok_type type;
    const tok_pre_def *pre_def; /* BPE only */
    char *pre_name;
    tok_pre *pre;               /* BPE only */

    tok_strs tokens;  /* token texts (an empty one becomes "[EMPTY_i]", as llama.cpp) */
    tok_map token_map;
    float *scores;    /* n_vocab */
    uint16_t *attr;   /* n_vocab TOK_ATTR_* */
    tok_strs pieces;  /* display text of each token */

    tok_strs merges;  /* BPE: "left right" in rank order */
    tok_map merge_map;

    int32_t bos, eos, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    bool spm_cut_at_space; /* no token has U+2581 after another character (tok_spm.c) */

    int32_t *special;    /* control / user-defined / unknown ids, longest text first */
    size_t n_special;

    int32_t byte_token[256]; /* SPM: token of each byte (<0xXX> or the bare byte), or -1 */
    /* GPT-2 byte alphabet: byte b is written as the UTF-8 of one code point (1-2 bytes). */
    char byte_enc[256][2];
    uint8_t byte_enc_len[256];
};

/* SPM: tokenizes one escaped fragment (spaces already U+2581), appending to out. */
pare_status tok_spm_tokenize(const pare_tokenizer *tk, const char *text, size_t len, tok_out *out,
                             pare_err *err);
/* BPE: pre-tokenizes and merges one fragment, appending to out. */
pare_status tok_bpe_tokenize(const pare_tokenizer *tk, const char *text, size_t len, tok_out *out,
                             pare_err *err);
/* Fills tk->byte_enc / byte_enc_len (GPT-2's bytes_to_unicode). */
void tok_bpe_init_bytes(pare_tokenizer *tk);
/* Writes the bytes a GPT-2-alphabet string stands for into dst (capacity >= len); code
 * points outside the alphabet are copied unchanged. Returns the length written. */
size_t tok_bpe_decode(const pare_tokenizer *tk, const char *s, size_t len, char *dst);

/* The merge queue both tokenizers use: a binary heap ordered by (key, left), lowest first.
 * SPM queues -score (highest score first), BPE the merge rank. `size` is the bytes of both
 * symbols when queued; a mismatch when popped means the pair is stale. */
typedef struct {
    double key;
    int32_t left, right;
    size_t size;
} pare_tok_bigram;

typedef struct {
    pare_tok_bigram *v;
    size_t n, cap;
} pare_tok_heap;

pare_status pare_tok_heap_push(pare_tok_heap *h, pare_tok_bigram b, pare_err *err);
pare_tok_bigram pare_tok_heap_pop(pare_tok_heap *h);

#endif
