/*
 * verify/tok_pre.c - the BPE pre-tokenizers of llama.cpp (src/llama-vocab.cpp,
 * src/unicode.cpp) on top of PCRE2, and the UTF-8 decoding they share.
 *
 * A pre-tokenizer is a list of regexes. The text starts as one piece; each regex in turn
 * splits every piece into its matches and the stretches between matches (which stay as
 * pieces too). A regex never sees past the end of the piece it runs on.
 *
 * llama.cpp runs the two most common lists (GPT-2's and Llama 3's) through hand-written
 * matchers and the others through std::regex over a text in which every non-ASCII code
 * point is replaced by a stand-in for its category. Both behave as PCRE2 patterns compiled
 * with UTF + UCP; those patterns, and how they differ in spelling from llama.cpp's, are in
 * the table of formats/hf_pretok.c, which also holds the tokenizer.json form of each.
 *
 * tok_pre_compile_list runs any list, for `pare tokenize --check`: Hugging Face's own
 * regexes, where a ByteLevel step in the middle writes the pieces in GPT-2's byte alphabet
 * before the later regexes see them (the pieces are mapped back to text offsets at the end).
 * Where the categories come from differs: llama.cpp carries its own Unicode 15.1 tables,
 * PCRE2 its own (Debian 12's 10.42: Unicode 14), so code points assigned in Unicode 15
 * may be classified differently.
 *
 * UTF-8 is decoded as llama.cpp's unicode_cpt_from_utf8: the lead byte's top bits give
 * the length, continuation bytes must be 10xxxxxx and present; overlong forms and
 * surrogates are accepted as the code point they spell; a byte that starts no decodable
 * sequence becomes U+FFFD and decoding resumes at the next byte. The pieces are then
 * re-encoded from the code points (so an overlong "\xC1\x81" is "A"). Code points above
 * U+10FFFF (F4 90.. to F7 ..) make llama.cpp throw; pare turns them into U+FFFD.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "verify/tok_impl.h"

#include <stdlib.h>
#include <string.h>

const tok_pre_def *tok_pre_find(const char *name) { return pare_pretok_find(name); }

/* ------------------------------------------------------------------ compiled lists */

struct tok_pre {
    pcre2_code **code;
    size_t n;
    size_t byte_level_at; /* regexes from this index on see the GPT-2 byte alphabet */
};

void tok_pre_free(tok_pre *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) pcre2_code_free(p->code[i]);
    free(p->code);
    free(p);
}

pare_status tok_pre_compile_list(const char *what, const char *const *regexes, size_t n, bool multiline,
                                 size_t byte_level_at, tok_pre **out, pare_err *err) {
    *out = NULL;
    tok_pre *p = calloc(1, sizeof *p);
    if (!p || !(p->code = calloc(n ? n : 1, sizeof *p->code))) {
        free(p);
        return pare_err_set(err, PARE_ENOMEM, "pre-tokenizer '%s': out of memory", what);
    }
    p->byte_level_at = byte_level_at;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (multiline ? PCRE2_MULTILINE : 0);
    for (; p->n < n; p->n++) {
        int ec;
        PCRE2_SIZE eoff;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)regexes[p->n], PCRE2_ZERO_TERMINATED, opts, &ec, &eoff, NULL);
        if (!c) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            pare_err_set(err, PARE_EUNSUPPORTED, "pre-tokenizer '%s': regex %zu does not compile at %zu: %s", what,
                         p->n, (size_t)eoff, (const char *)msg);
            tok_pre_free(p);
            return PARE_EUNSUPPORTED;
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        p->code[p->n] = c;
    }
    *out = p;
    return PARE_OK;
}

pare_status tok_pre_compile(const tok_pre_def *def, tok_pre **out, pare_err *err) {
    size_t n = 0;
    while (def->regexes[n]) n++;
    pare_status st = tok_pre_compile_list(def->names[0], def->regexes, n, false, n, out, err);
    /* pare's own lists must compile: a failure is a bug, not bad input */
    return st == PARE_EUNSUPPORTED ? PARE_EINTERNAL : st;
}

/* ------------------------------------------------------------------ UTF-8 */

/* Decodes one code point at s[*i] the llama.cpp way (see the header comment); returns
 * 0xFFFD and advances one byte when nothing decodes. */
static uint32_t utf8_decode(const unsigned char *s, size_t len, size_t *i) {
    size_t o = *i;
    unsigned c = s[o];
    if (!(c & 0x80)) {
        *i = o + 1;
        return c;
    }
    size_t need = (c & 0x40) == 0 ? 0 : (c & 0x20) == 0 ? 2 : (c & 0x10) == 0 ? 3 : (c & 0x08) == 0 ? 4 : 0;
    bool ok = need != 0 && o + need - 1 < len;
    for (size_t k = 1; ok && k < need; k++) ok = (s[o + k] & 0xc0) == 0x80;
    if (!ok) {
        *i = o + 1;
        return 0xfffd;
    }
    uint32_t cp = c & (0x7fu >> need);
    for (size_t k = 1; k < need; k++) cp = (cp << 6) | (s[o + k] & 0x3fu);
    *i = o + need;
    return cp > 0x10ffff ? 0xfffd : cp;
}

static size_t utf8_encode(uint32_t cp, char *d) {
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xc0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xe0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Re-encodes text from its code points into w->utf8, and into *safe the same bytes with
 * each surrogate (which PCRE2 refuses in UTF mode) replaced by U+E000, a private-use code
 * point of the same length and, like a surrogate, neither letter, number, punctuation nor
 * space. Output is at most 3 bytes per input byte (4-byte sequences stay 4 bytes). */
static pare_status decode_text(const char *text, size_t len, tok_words *w, char **safe, pare_err *err) {
    FAIL_IF(len > (SIZE_MAX - 1) / 3, PARE_ENOMEM, "tokenizer: text of %zu bytes is too long", len);
    w->utf8 = malloc(3 * len + 1);
    *safe = malloc(3 * len + 1);
    FAIL_IF(!w->utf8 || !*safe, PARE_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = utf8_decode(s, len, &i);
        size_t k = utf8_encode(cp, w->utf8 + o);
        if (cp >= 0xd800 && cp <= 0xdfff)
            utf8_encode(0xe000, *safe + o);
        else
            memcpy(*safe + o, w->utf8 + o, k);
        o += k;
    }
    w->utf8[o] = (*safe)[o] = '\0';
    w->len = o;
    return PARE_OK;
}

/* ------------------------------------------------------------------ splitting */

typedef struct spans {
    size_t *off, *n;
    size_t count, cap;
} spans;

static pare_status spans_push(spans *s, size_t off, size_t n, pare_err *err) {
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        size_t *o = realloc(s->off, cap * sizeof *o);
        if (o) s->off = o;
        size_t *l = o ? realloc(s->n, cap * sizeof *l) : NULL;
        if (l) s->n = l;
        FAIL_IF(!o || !l, PARE_ENOMEM, "tokenizer: out of memory for %zu pieces", cap);
        s->cap = cap;
    }
    s->off[s->count] = off;
    s->n[s->count++] = n;
    return PARE_OK;
}

/* Splits safe[off, off + n) by one regex into matches and the stretches between them. */
static pare_status split_piece(const pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mc,
                               const char *safe, size_t off, size_t n, spans *dst, pare_err *err) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(safe + off);
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(re, subj, n, pos, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return pare_err_set(err, PARE_EUNSUPPORTED, "tokenizer: pre-tokenizer regex failed on a piece of %zu bytes: %s",
                                n, (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match adds nothing: step over one code point */
            pos = ms + tok_utf8_len((unsigned char)safe[off + ms]);
            continue;
        }
        if (ms > last) TRY(spans_push(dst, off + last, ms - last, err));
        TRY(spans_push(dst, off + ms, me - ms, err));
        last = pos = me;
    }
    if (last < n) TRY(spans_push(dst, off + last, n - last, err));
    return PARE_OK;
}

/* PCRE2's JIT starts with 32 KiB of stack, which lookaheads on a piece of a megabyte can
 * exhaust; each call gets its own stack that may grow to this size. */
#define TOK_JIT_STACK_MAX (16u << 20)

/* The text in GPT-2's byte alphabet (byte b as the UTF-8 of one code point: b itself when
 * printable, else 256 + its rank among the unprintable bytes) and where each byte of the
 * text starts in it (eoff, len + 1 entries) and back (ooff, at those starts). */
typedef struct bytelevel {
    char *enc;
    size_t *eoff, *ooff;
} bytelevel;

static pare_status bytelevel_make(const char *text, size_t len, bytelevel *b, pare_err *err) {
    b->enc = malloc(2 * len + 1);
    b->eoff = malloc((len + 1) * sizeof *b->eoff);
    b->ooff = malloc((2 * len + 1) * sizeof *b->ooff);
    FAIL_IF(!b->enc || !b->eoff || !b->ooff, PARE_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    uint32_t cp_of[256];
    for (uint32_t c = 0, next = 256; c < 256; c++) {
        bool printable = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        cp_of[c] = printable ? c : next++;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        b->eoff[i] = o;
        b->ooff[o] = i;
        o += utf8_encode(cp_of[(unsigned char)text[i]], b->enc + o);
    }
    b->eoff[len] = o;
    b->ooff[o] = len;
    b->enc[o] = '\0';
    return PARE_OK;
}

static void bytelevel_free(bytelevel *b) {
    free(b->enc);
    free(b->eoff);
    free(b->ooff);
}

static pare_status split_all(const tok_pre *p, const char *utf8, const char *safe, size_t len, spans *cur,
                             pare_err *err) {
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_jit_stack *js = pcre2_jit_stack_create(32u << 10, TOK_JIT_STACK_MAX, NULL);
    if (!md || !mc || !js) {
        pcre2_match_data_free(md);
        pcre2_match_context_free(mc);
        pcre2_jit_stack_free(js);
        return pare_err_set(err, PARE_ENOMEM, "tokenizer: out of memory");
    }
    pcre2_jit_stack_assign(mc, NULL, js);
    spans next = {0};
    bytelevel bl = {0};
    bool encoded = false;
    pare_status st = len ? spans_push(cur, 0, len, err) : PARE_OK;
    for (size_t r = 0; st == PARE_OK && r < p->n; r++) {
        if (r == p->byte_level_at) { /* from here on the regexes see the byte alphabet */
            st = bytelevel_make(utf8, len, &bl, err);
            for (size_t i = 0; st == PARE_OK && i < cur->count; i++) {
                size_t e = bl.eoff[cur->off[i]];
                cur->n[i] = bl.eoff[cur->off[i] + cur->n[i]] - e;
                cur->off[i] = e;
            }
            safe = bl.enc;
            encoded = st == PARE_OK;
        }
        next.count = 0;
        for (size_t i = 0; st == PARE_OK && i < cur->count; i++)
            st = split_piece(p->code[r], md, mc, safe, cur->off[i], cur->n[i], &next, err);
        spans t = *cur;
        *cur = next;
        next = t;
    }
    for (size_t i = 0; encoded && st == PARE_OK && i < cur->count; i++) { /* back to text offsets */
        size_t o = bl.ooff[cur->off[i]];
        cur->n[i] = bl.ooff[cur->off[i] + cur->n[i]] - o;
        cur->off[i] = o;
    }
    bytelevel_free(&bl);
    free(next.off);
    free(next.n);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    return st;
}

pare_status tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_words *w, pare_err *err) {
    memset(w, 0, sizeof *w);
    char *safe = NULL;
    spans cur = {0};
    pare_status st = decode_text(text, len, w, &safe, err);
    if (st == PARE_OK) st = split_all(p, w->utf8, safe, w->len, &cur, err);
    free(safe);
    w->off = cur.off;
    w->n = cur.n;
    w->n_words = cur.count;
    w->cap = cur.cap;
    if (st != PARE_OK) tok_words_free(w);
    return st;
}

void tok_words_free(tok_words *w) {
    if (!w) return;
    free(w->utf8);
    free(w->off);
    free(w->n);
    memset(w, 0, sizeof *w);
}
