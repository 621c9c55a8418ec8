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
 * point is replaced by a stand-in for its category. Both behave as the PCRE2 patterns
 * below (compiled with UTF + UCP, so \p{L} / \p{N} / \p{P} use Unicode categories and \s
 * is Unicode White_Space), with these adjustments written into the patterns:
 *   - GPT-2's list gets a final "|\s+": llama.cpp's matcher takes a run of whitespace that
 *     \s+(?!\S) cannot, and without it PCRE2 would leave it as an unmatched stretch, which
 *     is the same piece anyway; the alternative keeps the two equal by construction.
 *   - "(?i:'s|'t|...)" is spelled '[sS]|'[tT]|... (llama.cpp does the same): PCRE2's
 *     caseless mode would also fold U+017F and U+212A, llama.cpp's matcher does not.
 *   - std::regex's "$" (end of input) is "\z" (PCRE2's "$" also matches before a final
 *     newline); tekken's lookahead groups are character classes (see re_tekken).
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

/* ------------------------------------------------------------------ the regex lists */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACTIONS_ANYCASE "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
#define RE_LLAMA3                                                                                   \
    RE_CONTRACTIONS_ANYCASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                            "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                  \
    RE_CONTRACTIONS_ANYCASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                            "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
#define RE_CJK "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]",
                                         NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_bloom[] = {RE_BLOOM, NULL};
static const char *const re_viking[] = {RE_BLOOM, "\\p{N}", NULL};
/* DeepSeek LLM lists its Latin, Greek, Cyrillic... letters explicitly (from its
 * tokenizer.json); \s?[...]+ then covers words of those scripts only. */
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+\\z",
    RE_CJK,
    "\\p{N}+",
    NULL,
};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}", NULL};
static const char *const re_deepseek3[] = {
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* Tekken (Mistral Nemo): words split before capitals. llama.cpp writes "a letter that is
 * not a-z" as ((?=[\p{L}])([^a-z])); [^\P{L}a-z] says the same without a group per
 * character, which PCRE2's JIT would need stack for on long words. */
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+|[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const re_chameleon[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    RE_GPT2,
    NULL,
};

/* The names llama.cpp's llama_vocab::impl::load accepts for tokenizer.ggml.pre, grouped by
 * the regex list they select. "gpt-neox" is not one of them; pare takes it as GPT-2's. */
static const char *const n_default[] = {"default", NULL};
static const char *const n_llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", NULL};
static const char *const n_dbrx[] = {"dbrx", "smaug-bpe", NULL};
static const char *const n_chatglm[] = {"chatglm-bpe", NULL};
static const char *const n_deepseek_llm[] = {"deepseek-llm", NULL};
static const char *const n_deepseek_coder[] = {"deepseek-coder", NULL};
static const char *const n_deepseek3[] = {"deepseek-v3", NULL};
static const char *const n_falcon[] = {"falcon", NULL};
static const char *const n_gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en",
                                     "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt",
                                     "olmo", "jais", "gpt-neox", NULL};
static const char *const n_starcoder[] = {"starcoder", "refact", "command-r", "smollm", "codeshell",
                                          "exaone", "minerva-7b", NULL};
static const char *const n_qwen2[] = {"qwen2", "stablelm2", "megrez", NULL};
static const char *const n_bloom[] = {"poro-chat", "bloom", "gpt3-finnish", NULL};
static const char *const n_viking[] = {"viking", NULL};
static const char *const n_tekken[] = {"tekken", NULL};
static const char *const n_chameleon[] = {"chameleon", NULL};

static const tok_pre_def pre_defs[] = {
    {.names = n_default, .regexes = re_default},
    {.names = n_llama3, .regexes = re_llama3, .ignore_merges = true, .add_bos = true},
    {.names = n_dbrx, .regexes = re_llama3},
    {.names = n_chatglm, .regexes = re_llama3, .no_bos = true},
    {.names = n_deepseek_llm, .regexes = re_deepseek_llm},
    {.names = n_deepseek_coder, .regexes = re_deepseek_coder},
    {.names = n_deepseek3, .regexes = re_deepseek3},
    {.names = n_falcon, .regexes = re_falcon},
    {.names = n_gpt2, .regexes = re_gpt2},
    {.names = n_starcoder, .regexes = re_starcoder},
    {.names = n_qwen2, .regexes = re_qwen2},
    {.names = n_bloom, .regexes = re_bloom},
    {.names = n_viking, .regexes = re_viking},
    {.names = n_tekken, .regexes = re_tekken, .ignore_merges = true, .add_bos = true},
    {.names = n_chameleon, .regexes = re_chameleon, .add_bos = true},
};

const tok_pre_def *tok_pre_find(const char *name) {
    if (!name || !*name) name = "default";
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
        for (const char *const *n = pre_defs[i].names; *n; n++)
            if (strcmp(*n, name) == 0) return &pre_defs[i];
    return NULL;
}

/* ------------------------------------------------------------------ compiled lists */

struct tok_pre {
    pcre2_code **code;
    size_t n;
};

void tok_pre_free(tok_pre *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) pcre2_code_free(p->code[i]);
    free(p->code);
    free(p);
}

pare_status tok_pre_compile(const tok_pre_def *def, tok_pre **out, pare_err *err) {
    *out = NULL;
    size_t n = 0;
    while (def->regexes[n]) n++;
    tok_pre *p = calloc(1, sizeof *p);
    if (!p || !(p->code = calloc(n ? n : 1, sizeof *p->code))) {
        free(p);
        return pare_err_set(err, PARE_ENOMEM, "pre-tokenizer '%s': out of memory", def->names[0]);
    }
    for (; p->n < n; p->n++) {
        int ec;
        PCRE2_SIZE eoff;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)def->regexes[p->n], PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_UCP, &ec, &eoff, NULL);
        if (!c) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            pare_err_set(err, PARE_EINTERNAL, "pre-tokenizer '%s': regex %zu does not compile at %zu: %s",
                         def->names[0], p->n, (size_t)eoff, (const char *)msg);
            tok_pre_free(p);
            return PARE_EINTERNAL;
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        p->code[p->n] = c;
    }
    *out = p;
    return PARE_OK;
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

static pare_status split_all(const tok_pre *p, const char *safe, size_t len, spans *cur, pare_err *err) {
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
    pare_status st = len ? spans_push(cur, 0, len, err) : PARE_OK;
    for (size_t r = 0; st == PARE_OK && r < p->n; r++) {
        next.count = 0;
        for (size_t i = 0; st == PARE_OK && i < cur->count; i++)
            st = split_piece(p->code[r], md, mc, safe, cur->off[i], cur->n[i], &next, err);
        spans t = *cur;
        *cur = next;
        next = t;
    }
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
    if (st == PARE_OK) st = split_all(p, safe, w->len, &cur, err);
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
