/*
 * formats/hf_pretok.c - the table of BPE pre-tokenizers (see hf_pretok.h): for each group of
 * llama.cpp tokenizer.ggml.pre names, the regexes pare runs (verify/tok_pre.c takes them from
 * here) and the tokenizer.json pre_tokenizer Hugging Face writes for those tokenizers.
 *
 * pare's PCRE2 patterns (compiled with UTF + UCP: \p{L} / \p{N} / \p{P} are Unicode
 * categories, \s is Unicode White_Space) are llama.cpp's lists (src/llama-vocab.cpp,
 * src/unicode.cpp) with these adjustments:
 *   - GPT-2's list gets a final "|\s+": llama.cpp's matcher takes a run of whitespace that
 *     \s+(?!\S) cannot, and without it PCRE2 would leave it as an unmatched stretch, which
 *     is the same piece anyway; the alternative keeps the two equal by construction.
 *   - "(?i:'s|'t|...)" is spelled '[sS]|'[tT]|... (llama.cpp does the same): PCRE2's
 *     caseless mode would also fold U+017F and U+212A, llama.cpp's matcher does not.
 *   - std::regex's "$" (end of input) is "\z" (PCRE2's "$" also matches before a final
 *     newline); tekken's lookahead groups are character classes (see re_tekken).
 *
 * The tokenizer.json side is what the models' own files hold (Hugging Face's spelling:
 * "(?i:...)", "$", tekken's \p{Lu}/\p{Ll} classes, Digits and Punctuation steps where
 * llama.cpp has a regex). Where llama.cpp's list is not an exact rendering of the JSON
 * (tekken's letter classes, falcon's Digits step, the case folding above), the table still
 * pairs them, because that is the pair llama.cpp's converter makes; `pare tokenize --check`
 * shows where the two tokenize differently.
 *
 * Names: several llama.cpp names select the same regexes and defaults and their tokenizer.json
 * files are alike; the converter tells them apart by hashing the tokenizer's output. pare
 * writes names[0] unless the GGUF architecture prefers another of the group (arch_prefs).
 */
#include "formats/hf_pretok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ pare's PCRE2 lists */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACTIONS_ANYCASE "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
#define RE_LLAMA3_TAIL                                                                                          \
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2_TAIL "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 RE_CONTRACTIONS_ANYCASE RE_LLAMA3_TAIL
#define RE_QWEN2 RE_CONTRACTIONS_ANYCASE RE_QWEN2_TAIL
#define RE_BLOOM " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
#define RE_CJK "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
/* DeepSeek LLM lists its Latin, Greek, Cyrillic... letters explicitly (from its
 * tokenizer.json); \s?[...]+ then covers words of those scripts only. */
#define RE_DEEPSEEK_LETTERS                                                                                  \
    "[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"           \
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"       \
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"           \
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"           \
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"             \
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"           \
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"        \
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"       \
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"           \
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"                     \
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"                  \
    "\U0001e900-\U0001e943]+"
#define RE_DEEPSEEK_PUNCT "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
#define RE_DEEPSEEK3_CJK "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
#define RE_DEEPSEEK3_MAIN                                                                                       \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"       \
    "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CHAM_SENTINEL "<sentinel:[0-9]+>"
#define RE_CHAM_IMG "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"
#define RE_CHAM_WS "([\\t\\n]|    |  )"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_bloom[] = {RE_BLOOM, NULL};
static const char *const re_viking[] = {RE_BLOOM, "\\p{N}", NULL};
static const char *const re_deepseek_llm[] = {"[\\r\\n]", "\\s?" RE_DEEPSEEK_LETTERS, RE_DEEPSEEK_PUNCT, "\\s+\\z",
                                              RE_CJK, "\\p{N}+", NULL};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}", NULL};
static const char *const re_deepseek3[] = {"\\p{N}{1,3}", RE_DEEPSEEK3_CJK, RE_DEEPSEEK3_MAIN, NULL};
/* Tekken (Mistral Nemo): words split before capitals. llama.cpp writes "a letter that is
 * not a-z" as ((?=[\p{L}])([^a-z])); [^\P{L}a-z] says the same without a group per
 * character, which PCRE2's JIT would need stack for on long words. */
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+|[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const re_chameleon[] = {RE_CHAM_SENTINEL, RE_CHAM_IMG, RE_CHAM_WS, "\\p{N}",
                                           "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2, NULL};

/* ------------------------------------------------------------------ tokenizer.json forms */

#define HF_CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define SPLIT(re) {PARE_PRETOK_SPLIT, re}
#define BYTELEVEL {PARE_PRETOK_BYTELEVEL, NULL}
#define BYTELEVEL_RE {PARE_PRETOK_BYTELEVEL_RE, NULL}
#define END {PARE_PRETOK_END, NULL}

static const pare_pretok_step js_gpt2[] = {BYTELEVEL_RE, END};
static const pare_pretok_step js_llama3[] = {SPLIT(HF_CONTRACTIONS RE_LLAMA3_TAIL), BYTELEVEL, END};
static const pare_pretok_step js_qwen2[] = {SPLIT(HF_CONTRACTIONS RE_QWEN2_TAIL), BYTELEVEL, END};
static const pare_pretok_step js_starcoder[] = {{PARE_PRETOK_DIGITS_EACH, NULL}, BYTELEVEL_RE, END};
static const pare_pretok_step js_falcon[] = {
    {PARE_PRETOK_PUNCT, NULL}, BYTELEVEL_RE, {PARE_PRETOK_DIGITS, NULL}, SPLIT("[0-9][0-9][0-9]"), END};
static const pare_pretok_step js_bloom[] = {SPLIT(RE_BLOOM), BYTELEVEL, END};
static const pare_pretok_step js_viking[] = {SPLIT(RE_BLOOM), {PARE_PRETOK_DIGITS_EACH, NULL}, BYTELEVEL, END};
static const pare_pretok_step js_deepseek_llm[] = {
    SPLIT("[\\r\\n]"), SPLIT("\\s?" RE_DEEPSEEK_LETTERS), SPLIT(RE_DEEPSEEK_PUNCT), SPLIT("\\s+$"),
    SPLIT(RE_CJK),     {PARE_PRETOK_DIGITS, NULL},        BYTELEVEL,               END};
static const pare_pretok_step js_deepseek_coder[] = {SPLIT("[\\r\\n]"), SPLIT("\\s?\\p{L}+"), SPLIT("\\s?\\p{P}+"),
                                                     SPLIT(RE_CJK),     {PARE_PRETOK_DIGITS_EACH, NULL},
                                                     BYTELEVEL,         END};
static const pare_pretok_step js_deepseek3[] = {SPLIT("\\p{N}{1,3}"), SPLIT(RE_DEEPSEEK3_CJK), SPLIT(RE_DEEPSEEK3_MAIN),
                                                BYTELEVEL, END};
static const pare_pretok_step js_tekken[] = {
    SPLIT("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
          "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
          "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
    BYTELEVEL, END};
static const pare_pretok_step js_chameleon[] = {SPLIT(RE_CHAM_SENTINEL),      SPLIT(RE_CHAM_IMG),
                                                SPLIT(RE_CHAM_WS),            {PARE_PRETOK_DIGITS_EACH, NULL},
                                                {PARE_PRETOK_PUNCT_EACH, NULL}, BYTELEVEL_RE,
                                                END};

/* ------------------------------------------------------------------ the table */

/* The names llama.cpp's llama_vocab::impl::load accepts for tokenizer.ggml.pre, grouped by
 * the regex list they select; names[0] is the one its converter writes. "gpt-neox" is not
 * one of them; pare takes it as GPT-2's. */
static const char *const n_default[] = {"default", NULL};
static const char *const n_llama3[] = {"llama-bpe", "llama3", "llama-v3", "falcon3", NULL};
static const char *const n_dbrx[] = {"smaug-bpe", "dbrx", NULL};
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
static const char *const n_bloom[] = {"bloom", "poro-chat", "gpt3-finnish", NULL};
static const char *const n_viking[] = {"viking", NULL};
static const char *const n_tekken[] = {"tekken", NULL};
static const char *const n_chameleon[] = {"chameleon", NULL};

/* chatglm-bpe and llama-bpe share the JSON form (chatglm differs in having no BOS): llama-bpe
 * is listed first, so a JSON names llama-bpe unless the architecture says chatglm. */
static const pare_pretok table[] = {
    {.names = n_default, .regexes = re_default},
    {.names = n_llama3, .regexes = re_llama3, .ignore_merges = true, .add_bos = true, .json = js_llama3},
    {.names = n_dbrx, .regexes = re_llama3, .json = js_llama3},
    {.names = n_chatglm, .regexes = re_llama3, .no_bos = true, .json = js_llama3},
    {.names = n_deepseek_llm, .regexes = re_deepseek_llm, .json = js_deepseek_llm},
    {.names = n_deepseek_coder, .regexes = re_deepseek_coder, .json = js_deepseek_coder},
    {.names = n_deepseek3, .regexes = re_deepseek3, .json = js_deepseek3},
    {.names = n_falcon, .regexes = re_falcon, .json = js_falcon},
    {.names = n_gpt2, .regexes = re_gpt2, .json = js_gpt2},
    {.names = n_starcoder, .regexes = re_starcoder, .json = js_starcoder},
    {.names = n_qwen2, .regexes = re_qwen2, .json = js_qwen2, .nfc = true},
    {.names = n_bloom, .regexes = re_bloom, .json = js_bloom},
    {.names = n_viking, .regexes = re_viking, .json = js_viking},
    {.names = n_tekken, .regexes = re_tekken, .ignore_merges = true, .add_bos = true, .json = js_tekken},
    {.names = n_chameleon, .regexes = re_chameleon, .add_bos = true, .json = js_chameleon},
};
#define N_TABLE (sizeof table / sizeof table[0])

/* GGUF architectures whose converter output names a member of a group other than names[0]
 * (the hash of those models' tokenizers picks it). */
static const struct {
    const char *arch, *name;
} arch_prefs[] = {
    {"phi2", "phi-2"},     {"mpt", "mpt"},         {"olmo", "olmo"},           {"jais", "jais"},
    {"refact", "refact"},  {"command-r", "command-r"}, {"codeshell", "codeshell"}, {"exaone", "exaone"},
    {"chatglm", "chatglm-bpe"}, {"stablelm", "stablelm2"}, {"dbrx", "dbrx"},
};

const pare_pretok *pare_pretok_find(const char *name) {
    if (!name || !*name) name = "default";
    for (size_t i = 0; i < N_TABLE; i++)
        for (const char *const *n = table[i].names; *n; n++)
            if (strcmp(*n, name) == 0) return &table[i];
    return NULL;
}

const pare_pretok *pare_pretok_at(size_t i) { return i < N_TABLE ? &table[i] : NULL; }

/* ------------------------------------------------------------------ reading tokenizer.json */

#define MAX_STEPS 32

typedef struct {
    pare_pretok_kind kind;
    const char *regex;  /* SPLIT: the pattern text (points into the JSON) */
    bool literal;       /* SPLIT: a {"String": ...} pattern */
} step_in;

typedef struct {
    step_in v[MAX_STEPS];
    size_t n;
    /* the first step pare cannot read, described for the message ("" when none) */
    char bad[160];
} steps_in;

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *jget(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static void set_bad(steps_in *s, const char *fmt, const char *a, const char *b) {
    if (!s->bad[0]) snprintf(s->bad, sizeof s->bad, fmt, a ? a : "?", b ? b : "");
}

static void push_step(steps_in *s, pare_pretok_kind kind, const char *regex, bool literal) {
    if (s->n == MAX_STEPS) {
        set_bad(s, "more than 32 steps%s%s", "", "");
        return;
    }
    s->v[s->n++] = (step_in){kind, regex, literal};
}

/* Flattens a pre_tokenizer (a step or a Sequence of them) into s. */
static void read_steps(const cJSON *p, steps_in *s, int depth) {
    const char *type = jstr(p, "type");
    if (!type) {
        set_bad(s, "a step without a type%s%s", "", "");
        return;
    }
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const cJSON *e, *seq = jget(p, "pretokenizers");
        if (!cJSON_IsArray(seq)) set_bad(s, "a Sequence without its pretokenizers list%s%s", "", "");
        cJSON_ArrayForEach(e, (cJSON_IsArray(seq) ? seq : NULL)) read_steps(e, s, depth + 1);
    } else if (strcmp(type, "ByteLevel") == 0) {
        if (cJSON_IsTrue(jget(p, "add_prefix_space"))) set_bad(s, "ByteLevel with add_prefix_space%s%s", "", "");
        push_step(s, cJSON_IsFalse(jget(p, "use_regex")) ? PARE_PRETOK_BYTELEVEL : PARE_PRETOK_BYTELEVEL_RE, NULL, false);
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pat = jget(p, "pattern");
        const char *re = jstr(pat, "Regex"), *str = jstr(pat, "String"), *beh = jstr(p, "behavior");
        if (!re && !str) set_bad(s, "a Split without a pattern%s%s", "", "");
        else if (beh && strcmp(beh, "Isolated") != 0) set_bad(s, "a Split with behavior %s%s", beh, ""); /* none: Isolated */
        else if (cJSON_IsTrue(jget(p, "invert"))) set_bad(s, "an inverted Split%s%s", "", "");
        push_step(s, PARE_PRETOK_SPLIT, re ? re : str, !re);
    } else if (strcmp(type, "Digits") == 0) {
        push_step(s, cJSON_IsTrue(jget(p, "individual_digits")) ? PARE_PRETOK_DIGITS_EACH : PARE_PRETOK_DIGITS, NULL,
                  false);
    } else if (strcmp(type, "Punctuation") == 0) {
        const char *beh = jstr(p, "behavior");
        if (beh && strcmp(beh, "Isolated") != 0 && strcmp(beh, "Contiguous") != 0)
            set_bad(s, "Punctuation with behavior %s%s", beh, "");
        push_step(s, beh && strcmp(beh, "Contiguous") == 0 ? PARE_PRETOK_PUNCT : PARE_PRETOK_PUNCT_EACH, NULL, false);
    } else {
        set_bad(s, "a %s step%s", type, "");
    }
}

/* Whether the normalizer is one llama.cpp's behavior agrees with: none, NFC, or a Sequence
 * of NFCs. Else describes it in bad. */
static bool normalizer_ok(const cJSON *n, char *bad, size_t cap, int depth) {
    if (!n || cJSON_IsNull(n)) return true;
    const char *type = jstr(n, "type");
    if (type && strcmp(type, "NFC") == 0) return true;
    if (type && strcmp(type, "Sequence") == 0 && depth < 4) {
        const cJSON *e, *seq = jget(n, "normalizers");
        cJSON_ArrayForEach(e, (cJSON_IsArray(seq) ? seq : NULL)) if (!normalizer_ok(e, bad, cap, depth + 1)) return false;
        if (cJSON_IsArray(seq)) return true;
    }
    snprintf(bad, cap, "the normalizer %s", type ? type : "(without a type)");
    return false;
}

static const char *kind_name(pare_pretok_kind k) {
    switch (k) {
    case PARE_PRETOK_SPLIT: return "Split";
    case PARE_PRETOK_BYTELEVEL: return "ByteLevel";
    case PARE_PRETOK_BYTELEVEL_RE: return "ByteLevel(use_regex)";
    case PARE_PRETOK_DIGITS: return "Digits";
    case PARE_PRETOK_DIGITS_EACH: return "Digits(individual)";
    case PARE_PRETOK_PUNCT: return "Punctuation(Contiguous)";
    case PARE_PRETOK_PUNCT_EACH: return "Punctuation";
    default: return "?";
    }
}

/* Appends to buf (capacity cap, always terminated) with control characters escaped; a text
 * longer than `max` bytes is cut at a UTF-8 boundary and ends with "...". */
static void append_escaped(char *buf, size_t cap, const char *s, size_t max) {
    size_t o = strlen(buf);
    for (size_t i = 0; s[i] && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= max && (c & 0xc0) != 0x80) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    buf[o < cap ? o : cap - 1] = '\0';
}

/* "Split /re/ + ByteLevel", with each regex cut to a readable length. */
static void describe(const steps_in *s, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t per = s->n ? 400 / s->n : 400;
    if (per < 60) per = 60;
    for (size_t i = 0; i < s->n && strlen(buf) + 16 < cap; i++) {
        size_t o = strlen(buf);
        snprintf(buf + o, cap - o, "%s%s", i ? " + " : "", kind_name(s->v[i].kind));
        if (s->v[i].kind == PARE_PRETOK_SPLIT) {
            o = strlen(buf);
            snprintf(buf + o, cap - o, s->v[i].literal ? " \"" : " /");
            /* a Split without a pattern is kept as a step (refused by s->bad) with none */
            append_escaped(buf, cap, s->v[i].regex ? s->v[i].regex : "", per);
            o = strlen(buf);
            snprintf(buf + o, cap - o, s->v[i].literal ? "\"" : "/");
        }
    }
    if (!s->n) snprintf(buf, cap, "no pre_tokenizer");
}

static bool steps_equal(const steps_in *s, const pare_pretok_step *t) {
    size_t i = 0;
    for (; t[i].kind != PARE_PRETOK_END; i++) {
        if (i >= s->n || s->v[i].kind != t[i].kind) return false;
        if (t[i].kind == PARE_PRETOK_SPLIT && (s->v[i].literal || strcmp(s->v[i].regex, t[i].regex) != 0)) return false;
    }
    return i == s->n;
}

pare_status pare_hf_pretok_name(const cJSON *tokjson, const char *arch, const char *path, char *name, size_t cap,
                                pare_err *err) {
    steps_in s = {.n = 0};
    const cJSON *pre = jget(tokjson, "pre_tokenizer");
    if (pre) read_steps(pre, &s, 0);
    char bad[160] = "";
    bool norm = normalizer_ok(jget(tokjson, "normalizer"), bad, sizeof bad, 0);
    bool im = cJSON_IsTrue(jget(jget(tokjson, "model"), "ignore_merges"));
    const pare_pretok *hit = NULL;
    for (size_t i = 0; norm && !s.bad[0] && i < N_TABLE; i++) {
        if (!table[i].json || !steps_equal(&s, table[i].json)) continue;
        if (!hit || (table[i].ignore_merges == im && hit->ignore_merges != im)) hit = &table[i];
    }
    if (hit) {
        const char *pick = hit->names[0];
        for (size_t i = 0; arch && i < sizeof arch_prefs / sizeof arch_prefs[0]; i++) {
            const pare_pretok *alt = pare_pretok_find(arch_prefs[i].name);
            if (strcmp(arch, arch_prefs[i].arch) == 0 && alt && alt->json == hit->json) pick = arch_prefs[i].name;
        }
        FAIL_IF(strlen(pick) >= cap, PARE_EINTERNAL, "%s: pre-tokenizer name '%s' does not fit", path, pick);
        snprintf(name, cap, "%s", pick);
        return PARE_OK;
    }
    char what[640], known[256] = "";
    describe(&s, what, sizeof what);
    for (size_t i = 0; i < N_TABLE; i++) {
        size_t o = strlen(known);
        if (table[i].json) snprintf(known + o, sizeof known - o, "%s%s", o ? ", " : "", table[i].names[0]);
    }
    return pare_err_set(err, PARE_EUNSUPPORTED,
                        "%s: BPE pre-tokenizer not recognized%s%s: %s (pare knows the tokenizer.json forms of "
                        "llama.cpp's %s; --tokenizer-pre NAME forces one)",
                        path, s.bad[0] || !norm ? ", it has " : "", s.bad[0] ? s.bad : !norm ? bad : "", what, known);
}

/* ------------------------------------------------------------------ writing tokenizer.json */

static cJSON *step_json(const pare_pretok_step *t) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    switch (t->kind) {
    case PARE_PRETOK_SPLIT: {
        cJSON_AddStringToObject(o, "type", "Split");
        cJSON *pat = cJSON_AddObjectToObject(o, "pattern");
        if (pat) cJSON_AddStringToObject(pat, "Regex", t->regex);
        cJSON_AddStringToObject(o, "behavior", "Isolated");
        cJSON_AddBoolToObject(o, "invert", false);
        break;
    }
    case PARE_PRETOK_BYTELEVEL:
    case PARE_PRETOK_BYTELEVEL_RE:
        cJSON_AddStringToObject(o, "type", "ByteLevel");
        cJSON_AddBoolToObject(o, "add_prefix_space", false);
        cJSON_AddBoolToObject(o, "trim_offsets", true);
        cJSON_AddBoolToObject(o, "use_regex", t->kind == PARE_PRETOK_BYTELEVEL_RE);
        break;
    case PARE_PRETOK_DIGITS:
    case PARE_PRETOK_DIGITS_EACH:
        cJSON_AddStringToObject(o, "type", "Digits");
        cJSON_AddBoolToObject(o, "individual_digits", t->kind == PARE_PRETOK_DIGITS_EACH);
        break;
    default:
        cJSON_AddStringToObject(o, "type", "Punctuation");
        cJSON_AddStringToObject(o, "behavior", t->kind == PARE_PRETOK_PUNCT ? "Contiguous" : "Isolated");
        break;
    }
    return o;
}

pare_status pare_hf_pretok_json(const char *name, cJSON **pre_tokenizer, cJSON **normalizer, bool *ignore_merges,
                                pare_err *err) {
    *pre_tokenizer = *normalizer = NULL;
    const pare_pretok *p = pare_pretok_find(name);
    FAIL_IF(!p || !p->json, PARE_EUNSUPPORTED, "tokenizer.ggml.pre '%.100s' has no tokenizer.json pre-tokenizer in pare",
            name ? name : "(none)");
    size_t n = 0;
    while (p->json[n].kind != PARE_PRETOK_END) n++;
    cJSON *pre = NULL;
    if (n == 1) {
        pre = step_json(&p->json[0]);
    } else if ((pre = cJSON_CreateObject())) {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *seq = cJSON_AddArrayToObject(pre, "pretokenizers");
        for (size_t i = 0; seq && i < n; i++) cJSON_AddItemToArray(seq, step_json(&p->json[i]));
    }
    cJSON *norm = p->nfc ? cJSON_CreateObject() : cJSON_CreateNull();
    if (p->nfc && norm) cJSON_AddStringToObject(norm, "type", "NFC");
    if (!pre || !norm) {
        cJSON_Delete(pre);
        cJSON_Delete(norm);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    *pre_tokenizer = pre;
    *normalizer = norm;
    if (ignore_merges) *ignore_merges = p->ignore_merges;
    return PARE_OK;
}

/* ------------------------------------------------------------------ regexes of any definition */

/* GPT-2's regex as tokenizers' ByteLevel spells it (PCRE2 reads it the same way). */
#define HF_RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Rust's char::is_ascii_punctuation() || unicode_categories' is_punctuation() */
#define HF_RE_PUNCT "[\\p{P}!-/:-@\\[-`{-~]"

void pare_hf_pretok_list_free(pare_hf_pretok_list *l) {
    for (size_t i = 0; l && l->regexes && i < l->n; i++) free(l->regexes[i]);
    if (l) free(l->regexes);
    if (l) memset(l, 0, sizeof *l);
}

/* A {"String": s} pattern as a PCRE2 regex: every ASCII character that is not a letter or
 * digit gets a backslash (PCRE2 takes any such escape as the character itself). */
static char *quote_literal(const char *s) {
    size_t n = strlen(s);
    char *q = malloc(2 * n + 1), *o = q;
    if (!q) return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) *o++ = '\\';
        *o++ = (char)c;
    }
    *o = '\0';
    return q;
}

pare_status pare_hf_pretok_regexes(const cJSON *tokjson, const char *path, pare_hf_pretok_list *out, pare_err *err) {
    memset(out, 0, sizeof *out);
    steps_in s = {.n = 0};
    const cJSON *pre = jget(tokjson, "pre_tokenizer");
    if (pre) read_steps(pre, &s, 0);
    char bad[160] = "";
    FAIL_IF(!normalizer_ok(jget(tokjson, "normalizer"), bad, sizeof bad, 0), PARE_EUNSUPPORTED,
            "%s: pare does not apply %s", path, bad);
    FAIL_IF(s.bad[0], PARE_EUNSUPPORTED, "%s: pare cannot run a pre_tokenizer with %s", path, s.bad);
    out->regexes = calloc(s.n + 1, sizeof *out->regexes);
    FAIL_IF(!out->regexes, PARE_ENOMEM, "out of memory");
    out->multiline = true;
    out->byte_level_at = SIZE_MAX;
    out->ignore_merges = cJSON_IsTrue(jget(jget(tokjson, "model"), "ignore_merges"));
    for (size_t i = 0; i < s.n; i++) {
        const step_in *t = &s.v[i];
        const char *re = NULL;
        switch (t->kind) {
        case PARE_PRETOK_SPLIT: re = t->regex; break;
        case PARE_PRETOK_BYTELEVEL_RE: re = HF_RE_GPT2; break;
        case PARE_PRETOK_DIGITS: re = "\\p{N}+"; break;
        case PARE_PRETOK_DIGITS_EACH: re = "\\p{N}"; break;
        case PARE_PRETOK_PUNCT: re = HF_RE_PUNCT "+"; break;
        case PARE_PRETOK_PUNCT_EACH: re = HF_RE_PUNCT; break;
        default: break;
        }
        if (t->kind == PARE_PRETOK_BYTELEVEL || t->kind == PARE_PRETOK_BYTELEVEL_RE) {
            if (out->byte_level_at != SIZE_MAX) {
                pare_hf_pretok_list_free(out);
                return pare_err_set(err, PARE_EUNSUPPORTED, "%s: the pre_tokenizer has two ByteLevel steps", path);
            }
        }
        if (re) {
            char *c = t->kind == PARE_PRETOK_SPLIT && t->literal ? quote_literal(re) : strdup(re);
            if (!c) {
                pare_hf_pretok_list_free(out);
                return pare_err_set(err, PARE_ENOMEM, "out of memory");
            }
            out->regexes[out->n++] = c;
        }
        if (t->kind == PARE_PRETOK_BYTELEVEL || t->kind == PARE_PRETOK_BYTELEVEL_RE) out->byte_level_at = out->n;
    }
    if (out->byte_level_at == SIZE_MAX) {
        pare_hf_pretok_list_free(out);
        return pare_err_set(err, PARE_EUNSUPPORTED, "%s: the pre_tokenizer has no ByteLevel step (not a byte-level BPE)",
                            path);
    }
    return PARE_OK;
}
