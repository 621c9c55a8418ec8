/* tests/fuzz/fuzz_tokenizer.c - the tokenizers (verify/tokenizer.h) on arbitrary bytes, as
 * `pare tokenize` and `pare eval` drive them.
 *
 * Input: one selector byte, then the text. The selector picks a vocabulary (below) and
 * whether BOS/EOS are added. The vocabularies, built once per process:
 *   0  the fixture's sentencepiece vocabulary (tests/fixtures/tiny-llama, read through
 *      pare_hf_load; $PARE_FIXTURES overrides tests/fixtures), space prefix on
 *   1  the same with tokenizer.ggml.add_space_prefix false
 *   2  the same with a few tokens turned user-defined (cut out of the text before the rest)
 *   3+ a byte-level BPE vocabulary (GPT-2's byte alphabet, merges of common English pairs,
 *      a control and two user-defined tokens) under each of llama.cpp's pre-tokenizers
 * Checks (an abort otherwise): every id is in the vocabulary; and where the tokenization is
 * lossless, the pieces of the tokens spell the text again: SPM without user-defined tokens
 * (the space prefix, U+2581 read back as a space), and BPE when the text is valid UTF-8
 * (BPE replaces undecodable bytes by U+FFFD). */
#include "formats/hf.h"
#include "fuzz_util.h"
#include "verify/tokenizer.h"

static const char *const pre_names[] = {"default", "llama3", "dbrx", "chatglm-bpe", "deepseek-llm",
                                        "deepseek-coder", "deepseek-v3", "falcon", "gpt-2", "starcoder",
                                        "qwen2", "bloom", "viking", "tekken", "chameleon"};
#define N_PRE (sizeof pre_names / sizeof pre_names[0])
#define N_SPM 3
#define N_VOCABS (N_SPM + N_PRE)

/* Merges over GPT-2's byte alphabet (Ġ is a space, Ċ a newline); each result is a token. */
static const char *const bpe_merges[] = {
    "\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "e r", "\xc4\xa0 a", "o n", "r e", "a t", "\xc4\xa0 s",
    "e n", "\xc4\xa0 w", "o r", "\xc4\xa0 1", "1 2", "\xc4\xa0 \xc4\xa0", "\xc4\xa0\xc4\xa0 \xc4\xa0\xc4\xa0",
    "\xc4\x8a \xc4\x8a", "i s", "\xc4\xa0 is", "l l", "he ll", "hell o", "\xc4\xa0w or", "\xc3 \xa9", "t h",
};
static const char *const bpe_specials[] = {"<|endoftext|>", "<|user|>", "@@"};
static const int32_t bpe_special_types[] = {3, 4, 4};

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256.. */
static void byte_alphabet(char alpha[256][3]) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : next++;
        if (cp < 0x80)
            alpha[b][0] = (char)cp, alpha[b][1] = 0;
        else
            alpha[b][0] = (char)(0xc0 | (cp >> 6)), alpha[b][1] = (char)(0x80 | (cp & 0x3f)), alpha[b][2] = 0;
    }
}

static pare_tokenizer *bpe_vocab(const char *pre) {
    enum { N_M = sizeof bpe_merges / sizeof bpe_merges[0], N_S = sizeof bpe_specials / sizeof bpe_specials[0] };
    static char alpha[256][3];
    char merged[N_M][16];
    pare_str tokens[256 + N_M + N_S], merges[N_M];
    int32_t types[256 + N_M + N_S];
    byte_alphabet(alpha);
    size_t n = 0;
    for (int b = 0; b < 256; b++) types[n] = 1, tokens[n++] = (pare_str){alpha[b], strlen(alpha[b])};
    for (size_t i = 0; i < N_M; i++) {
        const char *sp = strchr(bpe_merges[i], ' ');
        snprintf(merged[i], sizeof merged[i], "%.*s%s", (int)(sp - bpe_merges[i]), bpe_merges[i], sp + 1);
        merges[i] = (pare_str){(char *)bpe_merges[i], strlen(bpe_merges[i])};
        types[n] = 1, tokens[n++] = (pare_str){merged[i], strlen(merged[i])};
    }
    for (size_t i = 0; i < N_S; i++)
        types[n] = bpe_special_types[i], tokens[n++] = (pare_str){(char *)bpe_specials[i], strlen(bpe_specials[i])};
    pare_meta m = {0};
    pare_err err = {0};
    pare_tokenizer *tk = NULL;
    if (pare_meta_set_str(&m, "tokenizer.ggml.model", "gpt2", 4, &err) ||
        pare_meta_set_str(&m, "tokenizer.ggml.pre", pre, strlen(pre), &err) ||
        pare_meta_set_arr(&m, "tokenizer.ggml.tokens", PARE_META_STRING, tokens, n, &err) ||
        pare_meta_set_arr(&m, "tokenizer.ggml.token_type", PARE_META_I32, types, n, &err) ||
        pare_meta_set_arr(&m, "tokenizer.ggml.merges", PARE_META_STRING, merges, N_M, &err) ||
        pare_meta_set_uint(&m, "tokenizer.ggml.bos_token_id", PARE_META_U32, 256 + N_M, &err) ||
        pare_meta_set_uint(&m, "tokenizer.ggml.eos_token_id", PARE_META_U32, 256 + N_M, &err) ||
        pare_tokenizer_new(&m, &tk, &err))
        FUZZ_BUG("BPE vocabulary '%s': %s", pre, err.msg);
    pare_meta_free(&m);
    return tk;
}

/* The fixture's SPM vocabulary; variant 1 without the space prefix, 2 with user-defined
 * tokens (every token of 3 to 5 letters whose id is a multiple of 7). */
static pare_tokenizer *spm_vocab(int variant) {
    const char *root = getenv("PARE_FIXTURES");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny-llama", root ? root : "tests/fixtures");
    pare_model *m = NULL;
    pare_err err = {0};
    if (pare_hf_load(dir, &m, &err)) FUZZ_BUG("the SPM vocabulary comes from %s: %s", dir, err.msg);
    if (variant == 1 && pare_meta_set_bool(&m->meta, "tokenizer.ggml.add_space_prefix", false, &err))
        FUZZ_BUG("%s", err.msg);
    if (variant == 2) {
        const pare_kv *tok = pare_meta_get(&m->meta, "tokenizer.ggml.tokens");
        const pare_kv *ty = pare_meta_get(&m->meta, "tokenizer.ggml.token_type");
        if (!tok || !ty || ty->elem_type != PARE_META_I32 || ty->n != tok->n) FUZZ_BUG("%s: no token types", dir);
        const pare_str *s = tok->arr;
        int32_t *types = ty->arr;
        for (uint64_t i = 0; i < tok->n; i++)
            if (types[i] == 1 && i % 7 == 0 && s[i].len >= 3 && s[i].len <= 5 && !strstr(s[i].s, "\xe2\x96\x81"))
                types[i] = 4;
    }
    pare_tokenizer *tk = NULL;
    if (pare_tokenizer_new(&m->meta, &tk, &err)) FUZZ_BUG("%s: %s", dir, err.msg);
    pare_model_free(m);
    return tk;
}

static pare_tokenizer *vocabs[N_VOCABS];

static void free_vocabs(void) {
    for (size_t i = 0; i < N_VOCABS; i++) pare_tokenizer_free(vocabs[i]);
}

static const pare_tokenizer *vocab(size_t i) {
    if (!vocabs[0]) {
        for (int k = 0; k < N_SPM; k++) vocabs[k] = spm_vocab(k);
        for (size_t k = 0; k < N_PRE; k++) vocabs[N_SPM + k] = bpe_vocab(pre_names[k]);
        atexit(free_vocabs);
    }
    return vocabs[i];
}

static bool valid_utf8(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!n || len - i < n) return false;
        uint32_t cp = n == 1 ? c : (uint32_t)(c & (0x7f >> n));
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n;
    }
    return true;
}

/* U+2581 (what SPM writes for a space) back to a space, in place; returns the new length. */
static size_t unescape_spaces(char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (n - i >= 3 && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            s[w++] = ' ';
            i += 2;
        } else {
            s[w++] = s[i];
        }
    }
    return w;
}

/* The pieces of ids[lo..hi) must spell want[0..n) (with spm, after unescape_spaces: an
 * escaped space can reach the output as the three byte tokens of U+2581, when a stray
 * lead byte before it made SPM cut it into bytes, as llama.cpp does). */
static void check_spelling(const pare_tokenizer *tk, const int32_t *ids, size_t lo, size_t hi, const char *want,
                           size_t n, bool spm, size_t vi) {
    size_t cap = 64, at = 0;
    char *got = malloc(cap);
    if (!got) abort();
    for (size_t i = lo; i < hi; i++) {
        size_t len = 0;
        const char *p = pare_token_piece(tk, ids[i], &len);
        if (!p) FUZZ_BUG("vocabulary %zu: token %zu (id %d) has no piece", vi, i, (int)ids[i]);
        if (at + len > cap) {
            cap = (at + len) * 2;
            got = realloc(got, cap);
            if (!got) abort();
        }
        memcpy(got + at, p, len);
        at += len;
    }
    if (spm) at = unescape_spaces(got, at);
    size_t k = 0;
    while (k < at && k < n && got[k] == want[k]) k++;
    if (k != at || k != n)
        FUZZ_BUG("vocabulary %zu: the tokens spell %zu bytes, the text has %zu; they differ from byte %zu", vi, at, n,
                 k);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t vi = data[0] % N_VOCABS;
    bool add_special = (data[0] / N_VOCABS) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const pare_tokenizer *tk = vocab(vi);
    int32_t *ids = NULL;
    size_t n = 0;
    pare_err err = {0};
    pare_status st = pare_tokenize(tk, text, len, add_special, &ids, &n, &err);
    fuzz_check_status(st, &err, "pare_tokenize");
    for (size_t i = 0; !st && i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= pare_tokenizer_n_vocab(tk))
            FUZZ_BUG("vocabulary %zu: id %d out of %zu", vi, (int)ids[i], pare_tokenizer_n_vocab(tk));
    size_t lo = add_special && pare_tokenizer_add_bos(tk) && n ? 1 : 0;
    size_t hi = add_special && pare_tokenizer_add_eos(tk) && n > lo ? n - 1 : n;
    if (!st && vi < 2) {
        /* SPM: " " + text (with the prefix), U+2581 in the text comes back as a space. */
        char *want = malloc(len + 2);
        if (!want) abort();
        size_t w = 0;
        if (vi == 0 && len) want[w++] = ' ';
        memcpy(want + w, text, len);
        w = unescape_spaces(want, w + len);
        check_spelling(tk, ids, lo, hi, want, w, true, vi);
        free(want);
    } else if (!st && vi >= N_SPM && valid_utf8((const uint8_t *)text, len)) {
        check_spelling(tk, ids, lo, hi, text, len, false, vi);
    }
    free(ids);
    return 0;
}
