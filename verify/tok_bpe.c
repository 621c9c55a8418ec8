/*
 * verify/tok_bpe.c - byte-level BPE as llama.cpp's llm_tokenizer_bpe_session.
 *
 * Each piece from the pre-tokenizer is written in GPT-2's byte alphabet: byte b becomes
 * the code point b itself when b is printable ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) and
 * 256 + k for the k-th remaining byte in increasing order (so ' ' is U+0120 'Ġ', '\n' is
 * U+010A 'Ċ'). The piece starts as one symbol per code point of that spelling. Then,
 * repeatedly, of all adjacent symbol pairs (a, b) for which "a b" is a line of
 * tokenizer.ggml.merges, the pair with the lowest line number (rank) is joined, the
 * leftmost one on ties. Finally each symbol is looked up as a token; a symbol that is
 * not a token is emitted byte by byte, each byte only if that single byte is a token.
 * With ignore_merges (llama3, tekken) a piece that is a token as a whole is taken as is.
 */
#include "verify/tok_impl.h"

#include <stdlib.h>
#include <string.h>

void tok_bpe_init_bytes(pare_tokenizer *tk) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        int cp = printable ? b : next++;
        if (cp < 0x80) {
            tk->byte_enc[b][0] = (char)cp;
            tk->byte_enc_len[b] = 1;
        } else {
            tk->byte_enc[b][0] = (char)(0xc0 | (cp >> 6));
            tk->byte_enc[b][1] = (char)(0x80 | (cp & 0x3f));
            tk->byte_enc_len[b] = 2;
        }
    }
}

/* The byte GPT-2's alphabet writes as code point cp, or -1. The 68 unprintable bytes
 * 0x00-0x20, 0x7F-0xA0 and 0xAD are U+0100..U+0143 in that order. */
static int byte_of_cp(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff)) return (int)cp;
    if (cp < 0x100 || cp > 0x143) return -1;
    uint32_t k = cp - 0x100;
    return k < 33 ? (int)k : k < 67 ? (int)(0x7f + k - 33) : 0xad;
}

size_t tok_bpe_decode(const pare_tokenizer *tk, const char *s, size_t len, char *dst) {
    (void)tk;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t k = tok_utf8_len(u[0]);
        if (k > len - i) k = len - i;
        int b = -1;
        if (k == 1)
            b = byte_of_cp(u[0]);
        else if (k == 2 && (u[1] & 0xc0) == 0x80)
            b = byte_of_cp(((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f));
        if (b >= 0)
            dst[o++] = (char)b;
        else {
            memcpy(dst + o, s + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

/* ------------------------------------------------------------------ merging */

typedef struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the encoded piece; n == 0 once merged away */
} sym;

typedef pare_tok_bigram bigram;
typedef pare_tok_heap heap;

/* Per-call scratch: symbols, queue and the buffer "left right" keys are built in. */
typedef struct bpe_work {
    sym *syms;
    size_t cap_syms;
    heap q;
    char *key; /* merges.max_len + 1 bytes */
    char *enc; /* the encoded piece */
    size_t cap_enc;
} bpe_work;

static pare_status try_pair(const pare_tokenizer *tk, bpe_work *w, int32_t l, int32_t r, pare_err *err) {
    if (l < 0 || r < 0) return PARE_OK;
    const sym *a = &w->syms[l], *b = &w->syms[r];
    size_t klen = (size_t)a->n + 1 + b->n;
    if (klen > tk->merges.max_len) return PARE_OK; /* longer than every merge line */
    memcpy(w->key, w->enc + a->off, a->n);
    w->key[a->n] = ' ';
    memcpy(w->key + a->n + 1, w->enc + b->off, b->n);
    int64_t rank = tok_map_find(&tk->merge_map, &tk->merges, w->key, klen);
    if (rank < 0) return PARE_OK;
    bigram g = {.key = (double)rank, .left = l, .right = r, .size = a->n + b->n};
    return pare_tok_heap_push(&w->q, g, err);
}

static pare_status emit_symbol(const pare_tokenizer *tk, const char *s, size_t n, tok_out *out, pare_err *err) {
    int64_t id = tok_map_find(&tk->token_map, &tk->tokens, s, n);
    if (id >= 0) return tok_out_push(out, (int32_t)id, err);
    for (size_t i = 0; i < n; i++) {
        int64_t b = tok_map_find(&tk->token_map, &tk->tokens, s + i, 1);
        if (b >= 0) TRY(tok_out_push(out, (int32_t)b, err));
    }
    return PARE_OK;
}

/* Encodes word[0, n) into w->enc and splits it into one symbol per code point. */
static pare_status bpe_symbols(const pare_tokenizer *tk, bpe_work *w, const char *word, size_t n,
                               size_t *n_syms, size_t *enc_len, pare_err *err) {
    if (2 * n > w->cap_enc) {
        char *e = realloc(w->enc, 2 * n);
        FAIL_IF(!e, PARE_ENOMEM, "tokenizer: out of memory for a piece of %zu bytes", n);
        w->enc = e;
        w->cap_enc = 2 * n;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)word[i];
        memcpy(w->enc + len, tk->byte_enc[b], tk->byte_enc_len[b]);
        len += tk->byte_enc_len[b];
    }
    if (len > w->cap_syms) {
        sym *s = realloc(w->syms, len * sizeof *s);
        FAIL_IF(!s, PARE_ENOMEM, "tokenizer: out of memory for a piece of %zu bytes", n);
        w->syms = s;
        w->cap_syms = len;
    }
    size_t k = 0;
    for (size_t o = 0; o < len; k++) {
        size_t cl = tok_utf8_len((unsigned char)w->enc[o]);
        if (cl > len - o) cl = len - o;
        w->syms[k] = (sym){.prev = (int32_t)k - 1, .next = -1, .off = (uint32_t)o, .n = (uint32_t)cl};
        if (k > 0) w->syms[k - 1].next = (int32_t)k;
        o += cl;
    }
    *n_syms = k;
    *enc_len = len;
    return PARE_OK;
}

static pare_status bpe_word(const pare_tokenizer *tk, bpe_work *w, const char *word, size_t n, tok_out *out,
                            pare_err *err) {
    size_t n_syms = 0, len = 0;
    if (n == 0) return PARE_OK;
    FAIL_IF(n > UINT32_MAX / 2, PARE_EUNSUPPORTED, "tokenizer: a piece of %zu bytes is too long", n);
    TRY(bpe_symbols(tk, w, word, n, &n_syms, &len, err));
    if (tk->ignore_merges && tok_map_find(&tk->token_map, &tk->tokens, w->enc, len) >= 0)
        return emit_symbol(tk, w->enc, len, out, err);
    w->q.n = 0;
    for (size_t i = 1; i < n_syms; i++) TRY(try_pair(tk, w, (int32_t)i - 1, (int32_t)i, err));
    while (w->q.n) {
        bigram g = pare_tok_heap_pop(&w->q);
        sym *a = &w->syms[g.left], *b = &w->syms[g.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != g.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) w->syms[b->next].prev = g.left;
        TRY(try_pair(tk, w, a->prev, g.left, err));
        TRY(try_pair(tk, w, g.left, a->next, err));
    }
    for (int32_t i = n_syms ? 0 : -1; i >= 0; i = w->syms[i].next)
        TRY(emit_symbol(tk, w->enc + w->syms[i].off, w->syms[i].n, out, err));
    return PARE_OK;
}

pare_status tok_bpe_tokenize(const pare_tokenizer *tk, const char *text, size_t len, tok_out *out,
                             pare_err *err) {
    tok_words words;
    TRY(tok_pre_split(tk->pre, text, len, &words, err));
    bpe_work w = {0};
    pare_status st = PARE_OK;
    w.key = malloc((size_t)tk->merges.max_len + 1);
    if (!w.key) st = pare_err_set(err, PARE_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; st == PARE_OK && i < words.n_words; i++)
        st = bpe_word(tk, &w, words.utf8 + words.off[i], words.n[i], out, err);
    free(w.syms);
    free(w.q.v);
    free(w.key);
    free(w.enc);
    tok_words_free(&words);
    return st;
}
