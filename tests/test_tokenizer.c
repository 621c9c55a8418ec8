/* tests/test_tokenizer.c - SPM and BPE tokenizers against llama.cpp's outputs in
 * ../shared (the vocab test files and fortune-llama's tokenization of the GPL), and on
 * small vocabularies built here whose right answers follow from the algorithm. */
#include "formats/gguf.h"
#include "verify/tok_impl.h"
#include "verify/tokenizer.h"
#include "th.h"

/* Speed limits, generous for this ASan + UBSan build on a shared 2-core machine; the -O2
 * build is several times faster. */
#define GPL3_MAX_SECONDS 0.5   /* 35 KB */
#define MB_MAX_SECONDS 3.0     /* 1 MB */

/* ------------------------------------------------------------------ helpers */

static char *read_all(const char *path, size_t *len) {
    char *buf = NULL;
    pare_err err = {0};
    if (pare_read_file(path, 64u << 20, &buf, len, &err) != PARE_OK) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    return buf;
}

static pare_tokenizer *load_vocab(const char *path) {
    pare_model *m = NULL;
    pare_tokenizer *tk = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    if (m) CHECK_OK(pare_tokenizer_new(&m->meta, &tk, &err), &err);
    pare_model_free(m);
    return tk;
}

/* Parses whitespace / comma separated integers (brackets ignored) into a new array. */
static int32_t *parse_ids(const char *s, size_t len, size_t *n) {
    int32_t *v = malloc((len / 2 + 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; i < len;) {
        if ((s[i] >= '0' && s[i] <= '9') || s[i] == '-') {
            char *end;
            v[(*n)++] = (int32_t)strtol(s + i, &end, 10);
            i = (size_t)(end - s);
        } else {
            i++;
        }
    }
    return v;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

static int32_t *tok(const pare_tokenizer *tk, const char *s, size_t len, bool special, size_t *n) {
    int32_t *ids = NULL;
    pare_err err = {0};
    CHECK_OK(pare_tokenize(tk, s, len, special, &ids, n, &err), &err);
    return ids;
}

/* Tokenizes s and compares with the ids given (-1 terminated). */
static bool expect(const pare_tokenizer *tk, const char *s, bool special, const int32_t *want) {
    size_t n = 0, nw = 0;
    while (want[nw] != -1) nw++;
    int32_t *ids = tok(tk, s, strlen(s), special, &n);
    bool ok = same_ids(ids, n, want, nw);
    if (!ok) {
        fprintf(stderr, "  text '%s':\n", s);
        print_ids("got", ids, n);
        print_ids("want", want, nw);
    }
    free(ids);
    return ok;
}
#define EXPECT(tk, s, special, ...) CHECK(expect((tk), (s), (special), (const int32_t[]){__VA_ARGS__, -1}))

/* ------------------------------------------------------------------ llama.cpp vocab tests */

/* Runs every string of VOCAB.inp (separated by "\n__ggml_vocab_test__\n", as
 * llama.cpp's test-tokenizer-0 splits them) and compares with the line of VOCAB.out. */
static void run_vocab_file(const char *rel) {
    char *path = th_shared_dup(rel);
    if (!path) return;
    char inp_path[4200], out_path[4200];
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    pare_tokenizer *tk = load_vocab(path);
    size_t inp_len = 0, out_len = 0;
    char *inp = read_all(inp_path, &inp_len), *out = read_all(out_path, &out_len);
    CHECK(tk && inp && out);
    if (!tk || !inp || !out) goto done;
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep), pos = 0, line = 0, n_tests = 0, n_match = 0;
    while (pos < inp_len) {
        const char *next = strstr(inp + pos, sep);
        size_t end = next ? (size_t)(next - inp) : inp_len;
        size_t le = line; /* the matching line of .out is [line, le) */
        while (le < out_len && out[le] != '\n') le++;
        size_t nw = 0, n = 0;
        int32_t *want = parse_ids(out + line, le - line, &nw);
        int32_t *got = tok(tk, inp + pos, end - pos, false, &n);
        n_tests++;
        if (same_ids(got, n, want, nw)) {
            n_match++;
        } else {
            fprintf(stderr, "  %s: test %zu '%.*s' differs\n", rel, n_tests, (int)(end - pos), inp + pos);
            print_ids("got", got, n);
            print_ids("want", want, nw);
        }
        free(want);
        free(got);
        line = le < out_len ? le + 1 : out_len;
        pos = next ? end + seplen : inp_len;
    }
    printf("  %s: %zu of %zu strings give llama.cpp's tokens\n", rel, n_match, n_tests);
    CHECK(n_tests == 46);
    CHECK(n_match == n_tests);
done:
    free(inp);
    free(out);
    free(path);
    pare_tokenizer_free(tk);
}

static void test_vocab_llama_spm(void) { run_vocab_file("data/vocab/ggml-vocab-llama-spm.gguf"); }
static void test_vocab_gpt2(void) { run_vocab_file("data/vocab/ggml-vocab-gpt-2.gguf"); }

/* ------------------------------------------------------------------ fortune-llama on the GPL */

static void test_fortune_gpl3(void) {
    char *model = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    char *text_path = th_shared_dup("data/gpl-3.txt");
    char *gold_path = th_shared_dup("models/fortune-llama-golden/tokens-gpl3.txt");
    if (!model || !text_path || !gold_path) goto done;
    pare_tokenizer *tk = load_vocab(model);
    size_t tlen = 0, glen = 0, nw = 0, n = 0;
    char *text = read_all(text_path, &tlen), *gold = read_all(gold_path, &glen);
    CHECK(tk && text && gold);
    if (tk && text && gold) {
        int32_t *want = parse_ids(gold, glen, &nw);
        double t0 = pare_now();
        int32_t *got = tok(tk, text, tlen, true, &n);
        double dt = pare_now() - t0;
        size_t first_diff = 0;
        while (first_diff < n && first_diff < nw && got[first_diff] == want[first_diff]) first_diff++;
        printf("  gpl-3.txt (%zu bytes): %zu tokens (llama.cpp: %zu), first difference at %zu, %.1f ms\n", tlen,
               n, nw, first_diff, dt * 1e3);
        CHECK(nw == 19997);
        CHECK(same_ids(got, n, want, nw));
        CHECK_MSG(dt < GPL3_MAX_SECONDS, "took %.3f s", dt);
        /* the pieces put back together give the text, after the prefix space */
        size_t total = 0;
        for (size_t i = 1; i < n; i++) {
            size_t pl;
            pare_token_piece(tk, got[i], &pl);
            total += pl;
        }
        char *joined = malloc(total + 1), *p = joined;
        for (size_t i = 1; i < n; i++) {
            size_t pl;
            const char *s = pare_token_piece(tk, got[i], &pl);
            memcpy(p, s, pl), p += pl;
        }
        CHECK(total == tlen + 1 && joined[0] == ' ' && memcmp(joined + 1, text, tlen) == 0);
        free(joined);
        free(want);
        free(got);
    }
    free(text);
    free(gold);
    pare_tokenizer_free(tk);
done:
    free(model);
    free(text_path);
    free(gold_path);
}

/* 1 MB of the GPL (repeated, with a counter so that it is not all the same) through both
 * vocabularies. */
static void test_speed_1mb(void) {
    const char *vocabs[] = {"models/fortune-llama-gguf/fortune-llama-f32.gguf", "data/vocab/ggml-vocab-gpt-2.gguf",
                            "data/vocab/ggml-vocab-llama-spm.gguf"};
    char *text_path = th_shared_dup("data/gpl-3.txt");
    if (!text_path) return;
    size_t tlen = 0;
    char *text = read_all(text_path, &tlen);
    free(text_path);
    if (!text) return;
    size_t cap = (1u << 20) + tlen + 64, len = 0;
    char *big = malloc(cap);
    for (int rep = 0; len < (1u << 20); rep++) {
        len += (size_t)snprintf(big + len, cap - len, "%d. ", rep);
        memcpy(big + len, text, tlen), len += tlen;
    }
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        char *path = th_shared_dup(vocabs[v]);
        if (!path) continue;
        pare_tokenizer *tk = load_vocab(path);
        free(path);
        if (!tk) continue;
        size_t n = 0;
        double t0 = pare_now();
        int32_t *ids = tok(tk, big, len, true, &n);
        double dt = pare_now() - t0;
        printf("  %s: %zu bytes -> %zu tokens in %.0f ms\n", vocabs[v], len, n, dt * 1e3);
        CHECK(n > len / 10);
        CHECK_MSG(dt < MB_MAX_SECONDS, "%s took %.3f s", vocabs[v], dt);
        free(ids);
        pare_tokenizer_free(tk);
    }
    free(text);
    free(big);
}

int main(void) {
    (void)expect;
    TH_RUN(test_vocab_llama_spm);
    TH_RUN(test_vocab_gpt2);
    TH_RUN(test_fortune_gpl3);
    TH_RUN(test_speed_1mb);
    return th_done();
}
