/*
 * verify/tok_spm.c - sentencepiece-style merging as llama.cpp's llm_tokenizer_spm_session.
 *
 * The fragment (spaces already written as U+2581) starts as one symbol per UTF-8
 * character, the length of each taken from its lead byte alone (so invalid UTF-8 gives
 * odd-sized symbols, as in llama.cpp, and is never decoded). Every adjacent pair whose
 * concatenation is a token is queued with that token's score; the pair with the highest
 * score is joined first, the leftmost on ties, and joining queues the new symbol's pairs
 * with its neighbours. At the end each symbol is a token or is emitted byte by byte
 * through the byte tokens <0xXX> (or, lacking those, the token that is the bare byte).
 */
#include "verify/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct sym {
    int32_t prev, next;
    size_t off, n; /* n == 0 once merged into its left neighbour */
} sym;

typedef pare_tok_bigram bigram;
typedef pare_tok_heap heap;

/* Queues the pair (l, r) when their text together is a token. Symbols are contiguous
 * in the text, so the pair's text is text[syms[l].off, + both lengths). */
static pare_status try_pair(const pare_tokenizer *tk, const char *text, sym *syms, heap *q, int32_t l, int32_t r,
                            pare_err *err) {
    if (l < 0 || r < 0) return PARE_OK;
    size_t n = syms[l].n + syms[r].n;
    if (n > tk->tokens.max_len) return PARE_OK;
    int64_t id = tok_map_find(&tk->token_map, &tk->tokens, text + syms[l].off, n);
    if (id < 0) return PARE_OK;
    bigram g = {.key = -(double)tk->scores[id], .left = l, .right = r, .size = n};
    return pare_tok_heap_push(q, g, err);
}

static pare_status emit_symbol(const pare_tokenizer *tk, const char *s, size_t n, tok_out *out, pare_err *err) {
    int64_t id = n <= tk->tokens.max_len ? tok_map_find(&tk->token_map, &tk->tokens, s, n) : -1;
    if (id >= 0) return tok_out_push(out, (int32_t)id, err);
    for (size_t i = 0; i < n; i++) {
        int32_t b = tk->byte_token[(unsigned char)s[i]];
        if (b < 0) b = tk->unk;
        if (b >= 0) TRY(tok_out_push(out, b, err));
    }
    return PARE_OK;
}

static pare_status spm_merge(const pare_tokenizer *tk, const char *text, sym *syms, size_t n_syms, heap *q,
                             pare_err *err) {
    for (size_t i = 1; i < n_syms; i++) TRY(try_pair(tk, text, syms, q, (int32_t)i - 1, (int32_t)i, err));
    while (q->n) {
        bigram g = pare_tok_heap_pop(q);
        sym *a = &syms[g.left], *b = &syms[g.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != g.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) syms[b->next].prev = g.left;
        TRY(try_pair(tk, text, syms, q, a->prev, g.left, err));
        TRY(try_pair(tk, text, syms, q, g.left, a->next, err));
    }
    return PARE_OK;
}

/* Symbols of text[off, len) up to the next place where the text may be cut: a U+2581
 * symbol whose previous symbol is not U+2581. When tk->spm_cut_at_space, no token holds
 * a U+2581 after another character, so no merge can join symbols across such a place,
 * and merging each stretch on its own gives what merging the whole text gives (the queue
 * order within a stretch is the same): this keeps the queue small and hot in cache. */
static size_t next_stretch(const pare_tokenizer *tk, const char *text, size_t off, size_t len, sym *syms) {
    size_t n = 0;
    bool prev_space = false;
    for (size_t o = off; o < len; n++) {
        size_t cl = tok_utf8_len((unsigned char)text[o]);
        if (cl > len - o) cl = len - o;
        bool space = cl == 3 && memcmp(text + o, "\xe2\x96\x81", 3) == 0;
        if (tk->spm_cut_at_space && n > 0 && space && !prev_space) break;
        prev_space = space;
        syms[n] = (sym){.prev = (int32_t)n - 1, .next = -1, .off = o, .n = cl};
        if (n > 0) syms[n - 1].next = (int32_t)n;
        o += cl;
    }
    return n;
}

pare_status tok_spm_tokenize(const pare_tokenizer *tk, const char *text, size_t len, tok_out *out,
                             pare_err *err) {
    if (len == 0) return PARE_OK;
    FAIL_IF(len > INT32_MAX, PARE_EUNSUPPORTED, "tokenizer: a text fragment of %zu bytes is too long", len);
    sym *syms = malloc(len * sizeof *syms);
    FAIL_IF(!syms, PARE_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    heap q = {0};
    pare_status st = PARE_OK;
    for (size_t off = 0; st == PARE_OK && off < len;) {
        size_t n_syms = next_stretch(tk, text, off, len, syms);
        size_t end = syms[n_syms - 1].off + syms[n_syms - 1].n; /* before merging zeroes n */
        q.n = 0;
        st = spm_merge(tk, text, syms, n_syms, &q, err);
        for (int32_t i = 0; st == PARE_OK && i >= 0; i = syms[i].next)
            st = emit_symbol(tk, text + syms[i].off, syms[i].n, out, err);
        off = end;
    }
    free(q.v);
    free(syms);
    return st;
}
