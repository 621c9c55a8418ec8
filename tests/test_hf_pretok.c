/* tests/test_hf_pretok.c - the pre-tokenizer table of formats/hf_pretok.c: every entry's
 * tokenizer.json form names the entry back; names from the architecture; modified regexes,
 * normalizers and flags refused with a message that shows the regex and --tokenizer-pre;
 * HF's regex list of a definition (Digits, Punctuation, ByteLevel in the middle); and, with
 * ../shared, every BPE vocabulary there named as llama.cpp named it in its GGUF, from the
 * HF folder's tokenizer.json or from the one pare exports from the GGUF. */
#include "formats/formats.h"
#include "formats/hf_impl.h"
#include "formats/hf_pretok.h"
#include "verify/tok_impl.h"
#include "verify/tokenizer.h"

#include "th.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tokenizer.json with just what naming reads, for the table entry called `name`. */
static cJSON *json_of(const char *name, bool ignore_merges) {
    cJSON *pre = NULL, *norm = NULL;
    bool im = false;
    pare_err err = {0};
    CHECK_OK(pare_hf_pretok_json(name, &pre, &norm, &im, &err), &err);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "normalizer", norm);
    cJSON_AddItemToObject(j, "pre_tokenizer", pre);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddBoolToObject(m, "ignore_merges", ignore_merges);
    return j;
}

static pare_status name_of(const cJSON *j, const char *arch, char *name, size_t cap, pare_err *err) {
    return pare_hf_pretok_name(j, arch, "t/tokenizer.json", name, cap, err);
}

static void test_table_round_trip(void) {
    size_t n_json = 0;
    for (size_t i = 0; pare_pretok_at(i); i++) {
        const pare_pretok *p = pare_pretok_at(i);
        CHECK(pare_pretok_find(p->names[0]) == p);
        /* every list compiles */
        tok_pre *c = NULL;
        pare_err err = {0};
        CHECK_OK(tok_pre_compile(p, &c, &err), &err);
        tok_pre_free(c);
        if (!p->json) continue;
        n_json++;
        cJSON *j = json_of(p->names[0], p->ignore_merges);
        char name[64] = "";
        CHECK_OK(name_of(j, NULL, name, sizeof name, &err), &err);
        const pare_pretok *q = pare_pretok_find(name);
        /* the same tokenizer for llama.cpp: same regexes, same merge rule (chatglm-bpe, whose
         * JSON is Llama 3's with ignore_merges false, comes back as smaug-bpe) */
        CHECK_MSG(q && q->regexes == p->regexes && q->ignore_merges == p->ignore_merges, "%s came back as %s",
                  p->names[0], name);
        /* and the HF side's regex list is readable and compiles */
        pare_hf_pretok_list l;
        CHECK_OK(pare_hf_pretok_regexes(j, "t/tokenizer.json", &l, &err), &err);
        CHECK_OK(tok_pre_compile_list(p->names[0], (const char *const *)l.regexes, l.n, l.multiline, l.byte_level_at,
                                      &c, &err),
                 &err);
        CHECK(l.ignore_merges == p->ignore_merges);
        tok_pre_free(c);
        pare_hf_pretok_list_free(&l);
        cJSON_Delete(j);
    }
    CHECK(n_json >= 14);
    pare_err err = {0};
    cJSON *pre, *norm;
    CHECK(pare_hf_pretok_json("default", &pre, &norm, NULL, &err) == PARE_EUNSUPPORTED);
    CHECK(pare_hf_pretok_json("no-such", &pre, &norm, NULL, &err) == PARE_EUNSUPPORTED);
}

static void test_arch_names(void) {
    static const struct {
        const char *json, *arch, *want;
        bool im;
    } cases[] = {
        {"gpt-2", NULL, "gpt-2", false},       {"gpt-2", "phi2", "phi-2", false},
        {"gpt-2", "gptneox", "gpt-2", false},  {"gpt-2", "command-r", "gpt-2", false},
        {"starcoder", "command-r", "command-r", false}, {"starcoder", "starcoder2", "starcoder", false},
        {"llama-bpe", "llama", "llama-bpe", true},      {"llama-bpe", "chatglm", "chatglm-bpe", false},
        {"llama-bpe", NULL, "smaug-bpe", false},        {"qwen2", "qwen3", "qwen2", false},
        {"qwen2", "stablelm", "stablelm2", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = json_of(cases[i].json, cases[i].im);
        char name[64] = "";
        pare_err err = {0};
        CHECK_OK(name_of(j, cases[i].arch, name, sizeof name, &err), &err);
        CHECK_MSG(strcmp(name, cases[i].want) == 0, "%s JSON, arch %s: %s (want %s)", cases[i].json,
                  cases[i].arch ? cases[i].arch : "-", name, cases[i].want);
        cJSON_Delete(j);
    }
    /* the normalizer: none or NFC in any form is the same tokenizer for llama.cpp */
    cJSON *j = json_of("llama-bpe", true);
    cJSON *nfc = cJSON_CreateObject();
    cJSON_AddStringToObject(nfc, "type", "NFC");
    cJSON_ReplaceItemInObject(j, "normalizer", nfc);
    char name[64];
    pare_err err = {0};
    CHECK_OK(name_of(j, NULL, name, sizeof name, &err), &err);
    CHECK(strcmp(name, "llama-bpe") == 0);
    cJSON_Delete(j);
}

/* The message of a refused definition: one line, the path, what is wrong, the hint. */
static void expect_refused(const cJSON *j, const char *needle) {
    char name[64] = "";
    pare_err err = {0};
    pare_status st = name_of(j, NULL, name, sizeof name, &err);
    CHECK_MSG(st == PARE_EUNSUPPORTED && strstr(err.msg, "t/tokenizer.json: BPE pre-tokenizer not recognized") &&
                  strstr(err.msg, "--tokenizer-pre NAME forces one") && strstr(err.msg, needle) &&
                  !strchr(err.msg, '\n'),
              "status %d, message '%s' (want '%s')", st, err.msg, needle);
}

static cJSON *first_split(cJSON *j) {
    cJSON *seq = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pre_tokenizer"), "pretokenizers");
    return cJSON_GetArrayItem(seq, 0);
}

static void test_refused(void) {
    /* Qwen2's regex with \p{N}{1,2}: matches nothing; the message shows the regex */
    cJSON *j = json_of("qwen2", false);
    cJSON *pat = cJSON_GetObjectItem(first_split(j), "pattern");
    const char *re = cJSON_GetObjectItem(pat, "Regex")->valuestring;
    char mod[512];
    const char *at = strstr(re, "\\p{N}|");
    CHECK(at != NULL);
    snprintf(mod, sizeof mod, "%.*s\\p{N}{1,2}%s", (int)(at - re), re, at + 5);
    cJSON_ReplaceItemInObject(pat, "Regex", cJSON_CreateString(mod));
    expect_refused(j, "\\p{N}{1,2}");
    expect_refused(j, "Split /(?i:'s|'t|");
    /* Split behavior other than Isolated, inverted */
    cJSON_Delete(j);
    j = json_of("qwen2", false);
    cJSON_ReplaceItemInObject(first_split(j), "behavior", cJSON_CreateString("Removed"));
    expect_refused(j, "a Split with behavior Removed");
    cJSON_Delete(j);
    j = json_of("qwen2", false);
    cJSON_ReplaceItemInObject(first_split(j), "invert", cJSON_CreateTrue());
    expect_refused(j, "an inverted Split");
    cJSON_Delete(j);
    /* GPT-2's ByteLevel with add_prefix_space, a normalizer llama.cpp does not apply */
    j = json_of("gpt-2", false);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "pre_tokenizer"), "add_prefix_space", cJSON_CreateTrue());
    expect_refused(j, "ByteLevel with add_prefix_space");
    cJSON_Delete(j);
    j = json_of("gpt-2", false);
    cJSON *low = cJSON_CreateObject();
    cJSON_AddStringToObject(low, "type", "Lowercase");
    cJSON_ReplaceItemInObject(j, "normalizer", low);
    expect_refused(j, "the normalizer Lowercase");
    cJSON_Delete(j);
    /* a step pare does not know; no pre_tokenizer at all */
    j = cJSON_Parse("{\"pre_tokenizer\": {\"type\": \"Metaspace\"}}");
    expect_refused(j, "a Metaspace step");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"pre_tokenizer\": null}");
    expect_refused(j, "no pre_tokenizer");
    cJSON_Delete(j);
    /* DeepSeek LLM's long letter class, one letter dropped: the regex is shown cut short */
    j = json_of("deepseek-llm", false);
    cJSON *split = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pre_tokenizer"), "pretokenizers"), 1);
    pat = cJSON_GetObjectItem(split, "pattern");
    char *cut = strdup(cJSON_GetObjectItem(pat, "Regex")->valuestring);
    cut[7] = 'x'; /* \s?[A-Za-z -> \s?[A-Zx-z */
    cJSON_ReplaceItemInObject(pat, "Regex", cJSON_CreateString(cut));
    free(cut);
    char name[64];
    pare_err err = {0};
    CHECK(name_of(j, NULL, name, sizeof name, &err) == PARE_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "\\s?[A-Zx-z") && strstr(err.msg, "...") && strlen(err.msg) < 900, "'%s'", err.msg);
    cJSON_Delete(j);
    /* a name that does not fit the caller's buffer */
    j = json_of("deepseek-coder", false);
    char tiny[4];
    CHECK(name_of(j, NULL, tiny, sizeof tiny, &err) == PARE_EINTERNAL);
    cJSON_Delete(j);
}

/* Splits text with a regex list and compares the pieces with want (NULL terminated). */
static bool list_split_is(const char *const *re, size_t n, size_t bl, const char *text, const char *const *want) {
    tok_pre *p = NULL;
    tok_words w = {0};
    pare_err err = {0};
    bool ok = tok_pre_compile_list("t", re, n, true, bl, &p, &err) == PARE_OK &&
              tok_pre_split(p, text, strlen(text), &w, &err) == PARE_OK;
    size_t i = 0;
    for (; ok && want[i]; i++)
        ok = i < w.n_words && w.n[i] == strlen(want[i]) && memcmp(w.utf8 + w.off[i], want[i], w.n[i]) == 0;
    ok = ok && i == w.n_words;
    if (!ok) {
        fprintf(stderr, "  on '%s' (%s): got", text, err.msg);
        for (size_t k = 0; k < w.n_words; k++) fprintf(stderr, " [%.*s]", (int)w.n[k], w.utf8 + w.off[k]);
        fprintf(stderr, "\n");
    }
    tok_words_free(&w);
    tok_pre_free(p);
    return ok;
}

static void test_hf_regexes(void) {
    /* falcon's form: Punctuation, ByteLevel with GPT-2's regex, Digits, Split */
    cJSON *j = json_of("falcon", false);
    pare_hf_pretok_list l;
    pare_err err = {0};
    CHECK_OK(pare_hf_pretok_regexes(j, "t", &l, &err), &err);
    CHECK(l.n == 4 && l.byte_level_at == 2 && l.multiline);
    CHECK(l.n == 4 && strcmp(l.regexes[0], "[\\p{P}!-/:-@\\[-`{-~]+") == 0 && strcmp(l.regexes[2], "\\p{N}+") == 0 &&
          strcmp(l.regexes[3], "[0-9][0-9][0-9]") == 0);
    /* after ByteLevel the digits step sees "Ġ4" (and U+00BD, a byte of "½" written in the
     * byte alphabet, is a number): the space and the two bytes of "½" come apart */
    CHECK(list_split_is((const char *const *)l.regexes, l.n, l.byte_level_at, "a 4\xc2\xbd 12345",
                        (const char *const[]){"a", " ", "4", "\xc2", "\xbd", " ", "123", "45", NULL}));
    /* llama.cpp's falcon keeps " 4" (as the byte alphabet never comes into its regexes) */
    tok_pre *p = NULL;
    tok_words w = {0};
    CHECK_OK(tok_pre_compile(pare_pretok_find("falcon"), &p, &err), &err);
    CHECK_OK(tok_pre_split(p, "a 4", 3, &w, &err), &err);
    CHECK(w.n_words == 2 && w.n[1] == 2);
    tok_words_free(&w);
    tok_pre_free(p);
    pare_hf_pretok_list_free(&l);
    cJSON_Delete(j);
    /* a String pattern is literal; "$" is an end of line as in Oniguruma */
    j = cJSON_Parse("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                    "{\"type\": \"Split\", \"pattern\": {\"String\": \"a.b\"}, \"behavior\": \"Isolated\"},"
                    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x$\"}, \"behavior\": \"Isolated\"},"
                    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}}");
    CHECK_OK(pare_hf_pretok_regexes(j, "t", &l, &err), &err);
    CHECK(l.n == 2 && l.byte_level_at == 2);
    CHECK(list_split_is((const char *const *)l.regexes, l.n, l.byte_level_at, "1a.b2axb3x\nx",
                        (const char *const[]){"1", "a.b", "2axb3", "x", "\n", "x", NULL}));
    pare_hf_pretok_list_free(&l);
    cJSON_Delete(j);
    /* refused: no ByteLevel, two ByteLevels, an unknown normalizer */
    static const char *const bad[] = {
        "{\"pre_tokenizer\": {\"type\": \"Digits\"}}",
        "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": "
        "\"ByteLevel\"}]}}",
        "{\"normalizer\": {\"type\": \"NFKC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = cJSON_Parse(bad[i]);
        CHECK_MSG(pare_hf_pretok_regexes(j, "t", &l, &err) == PARE_EUNSUPPORTED && l.regexes == NULL, "%s", bad[i]);
        cJSON_Delete(j);
    }
}

/* Pieces of text under a compiled list, as "offset:length" boundaries, for comparing two lists. */
static bool same_pieces(const tok_pre *a, const tok_pre *b, const char *text, size_t len, size_t *at) {
    tok_words wa = {0}, wb = {0};
    pare_err err = {0};
    CHECK_OK(tok_pre_split(a, text, len, &wa, &err), &err);
    CHECK_OK(tok_pre_split(b, text, len, &wb, &err), &err);
    size_t i = 0;
    while (i < wa.n_words && i < wb.n_words && wa.off[i] == wb.off[i] && wa.n[i] == wb.n[i]) i++;
    bool same = i == wa.n_words && i == wb.n_words;
    *at = i < wa.n_words ? wa.off[i] : i < wb.n_words ? wb.off[i] : 0;
    tok_words_free(&wa);
    tok_words_free(&wb);
    return same;
}

/* pare's llama.cpp list and the tokenizer.json form of each entry cut llama.cpp's test
 * strings and the GPL into the same pieces, except where llama.cpp's list is not a rendering
 * of the JSON:
 *   falcon  tokenizers' Digits step runs after ByteLevel, so " 4" becomes "Ġ", "4" (and a
 *           byte of "½" written in the byte alphabet is a number); llama.cpp has no Digits step;
 *   tekken  the JSON's letter classes are \p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M} / \p{Ll}\p{Lm}\p{Lo}\p{M},
 *           llama.cpp's "A-Z or any other letter" / "a-z or any other letter": the same on
 *           ASCII (the GPL), not on Cyrillic capitals or Khmer marks (the test strings). */
static void test_lists_agree(void) {
    const char *inp = th_shared("data/vocab/ggml-vocab-gpt-2.gguf.inp");
    char *a = inp ? strdup(inp) : NULL;
    const char *gpl = th_shared("data/gpl-3.txt");
    char *b = gpl ? strdup(gpl) : NULL;
    static const char own[] = "Don't STOP 'S 12345678 x\xc2\xbd \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
                              "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c HelloWorld  \n\n\t end  ";
    size_t n_text[3] = {sizeof own - 1, 0, 0};
    char *texts[3] = {strdup(own), a ? th_read_file(a, &n_text[1]) : NULL, b ? th_read_file(b, &n_text[2]) : NULL};
    free(a);
    free(b);
    for (size_t i = 0; pare_pretok_at(i); i++) {
        const pare_pretok *p = pare_pretok_at(i);
        if (!p->json) continue;
        cJSON *j = json_of(p->names[0], p->ignore_merges);
        pare_hf_pretok_list l;
        tok_pre *ca = NULL, *cb = NULL;
        pare_err err = {0};
        CHECK_OK(pare_hf_pretok_regexes(j, "t", &l, &err), &err);
        CHECK_OK(tok_pre_compile(p, &ca, &err), &err);
        CHECK_OK(tok_pre_compile_list("hf", (const char *const *)l.regexes, l.n, l.multiline, l.byte_level_at, &cb, &err),
                 &err);
        bool falcon = strcmp(p->names[0], "falcon") == 0, tekken = strcmp(p->names[0], "tekken") == 0;
        bool all_same = true;
        for (int t = 0; ca && cb && t < 3; t++) {
            if (!texts[t]) continue;
            size_t at = 0;
            bool same = same_pieces(ca, cb, texts[t], n_text[t], &at);
            all_same = all_same && same;
            if (!falcon && !(tekken && t < 2))
                CHECK_MSG(same, "%s: text %d cut differently from byte %zu", p->names[0], t, at);
        }
        if (falcon || tekken) CHECK_MSG(!all_same, "%s: expected to differ from tokenizers' reading", p->names[0]);
        tok_pre_free(ca);
        tok_pre_free(cb);
        pare_hf_pretok_list_free(&l);
        cJSON_Delete(j);
    }
    for (int t = 0; t < 3; t++) free(texts[t]);
}

/* pare_tokenizer_new_regex: GPT-2's list given as regexes tokenizes llama.cpp's test strings
 * as the named gpt-2 tokenizer does; a regex that does not compile and an SPM vocabulary are
 * refused. */
static void test_regex_tokenizer(void) {
    pare_err err = {0};
    pare_model *spm = NULL;
    CHECK_OK(pare_model_load("tests/fixtures/tiny-llama", &spm, &err), &err);
    const char *const gpt2[] = {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"};
    pare_tok_regex_pre rp = {.name = "hf", .regexes = gpt2, .n = 1, .byte_level_at = 1, .multiline = true};
    pare_tokenizer *tk = NULL;
    if (spm) CHECK(pare_tokenizer_new_regex(&spm->meta, &rp, &tk, &err) == PARE_EUNSUPPORTED && !tk);
    pare_model_free(spm);
    const char *path = th_shared("data/vocab/ggml-vocab-gpt-2.gguf");
    if (!path) return;
    pare_model *m = NULL;
    CHECK_OK(pare_model_load(path, &m, &err), &err);
    if (!m) return;
    const char *const broken[] = {"(unclosed"};
    pare_tok_regex_pre bad = {.name = "hf", .regexes = broken, .n = 1, .byte_level_at = 1};
    CHECK(pare_tokenizer_new_regex(&m->meta, &bad, &tk, &err) == PARE_EUNSUPPORTED && !tk &&
          strstr(err.msg, "does not compile"));
    pare_tokenizer *named = NULL;
    CHECK_OK(pare_tokenizer_new(&m->meta, &named, &err), &err);
    CHECK_OK(pare_tokenizer_new_regex(&m->meta, &rp, &tk, &err), &err);
    CHECK(tk && strcmp(pare_tokenizer_pre(tk), "hf") == 0);
    char *inp = th_shared_dup("data/vocab/ggml-vocab-gpt-2.gguf.inp");
    size_t n = 0;
    char *text = inp ? th_read_file(inp, &n) : NULL;
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (text && tk && named) {
        CHECK_OK(pare_tokenize(named, text, n, false, &a, &na, &err), &err);
        CHECK_OK(pare_tokenize(tk, text, n, false, &b, &nb, &err), &err);
        CHECK(na == nb && na > 0 && memcmp(a, b, na * sizeof *a) == 0);
    }
    free(a);
    free(b);
    free(text);
    free(inp);
    pare_tokenizer_free(tk);
    pare_tokenizer_free(named);
    pare_model_free(m);
}

/* ------------------------------------------------------------------ ../shared */

/* Names a GGUF's vocabulary from the tokenizer.json pare exports for it and compares with
 * the GGUF's tokenizer.ggml.pre: the same name given the architecture. */
static void name_gguf(const char *rel) {
    const char *path = th_shared(rel);
    if (!path) return;
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_model_load(path, &m, &err), &err);
    if (!m) return;
    const char *pre = pare_meta_get_str(&m->meta, "tokenizer.ggml.pre");
    const char *arch = pare_meta_get_str(&m->meta, "general.architecture");
    cJSON *j = NULL;
    /* formats' export writes the pre-tokenizer through pare_hf_pretok_json once merged; until
     * then it knows three of them: the table's own form stands in for the others */
    if (pare_hf_tokjson_build(&m->meta, &j, &err) != PARE_OK) j = json_of(pre, pare_pretok_find(pre)->ignore_merges);
    char name[64] = "";
    CHECK_OK(name_of(j, arch, name, sizeof name, &err), &err);
    CHECK_MSG(pre && strcmp(name, pre) == 0, "%s: named %s from its exported tokenizer.json, llama.cpp wrote %s", rel,
              name, pre ? pre : "(none)");
    printf("  %s: '%s' (exported tokenizer.json)\n", rel, name);
    cJSON_Delete(j);
    pare_model_free(m);
}

static void test_shared_vocab(void) {
    name_gguf("data/vocab/ggml-vocab-gpt-2.gguf");
    static const char *const archs[] = {"qwen2moe", "starcoder2", "olmo2", "gptneox", "command-r", "phi2"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/arch/%s/%s-f32.gguf", archs[i], archs[i]);
        name_gguf(rel);
        /* the HF folder's own tokenizer.json, with the GGUF's architecture */
        snprintf(rel, sizeof rel, "models/arch/%s/hf/tokenizer.json", archs[i]);
        const char *p = th_shared(rel);
        if (!p) continue;
        size_t n = 0;
        char *text = th_read_file(p, &n);
        cJSON *j = text ? cJSON_ParseWithLength(text, n) : NULL;
        free(text);
        snprintf(rel, sizeof rel, "models/arch/%s/%s-f32.gguf", archs[i], archs[i]);
        pare_model *m = NULL;
        pare_err err = {0};
        const char *gp = th_shared(rel);
        if (gp) CHECK_OK(pare_model_load(gp, &m, &err), &err);
        if (j && m) {
            const char *pre = pare_meta_get_str(&m->meta, "tokenizer.ggml.pre");
            const char *arch = pare_meta_get_str(&m->meta, "general.architecture");
            char name[64] = "";
            CHECK_OK(name_of(j, arch, name, sizeof name, &err), &err);
            CHECK_MSG(pre && strcmp(name, pre) == 0, "%s/hf: named %s, llama.cpp wrote %s", archs[i], name, pre);
            printf("  %s/hf/tokenizer.json: '%s' (llama.cpp: '%s')\n", archs[i], name, pre);
        }
        cJSON_Delete(j);
        pare_model_free(m);
    }
}

int main(void) {
    TH_RUN(test_table_round_trip);
    TH_RUN(test_arch_names);
    TH_RUN(test_refused);
    TH_RUN(test_hf_regexes);
    TH_RUN(test_regex_tokenizer);
    TH_RUN(test_lists_agree);
    TH_RUN(test_shared_vocab);
    return th_done();
}
