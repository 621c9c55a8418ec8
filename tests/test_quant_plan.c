/* tests/test_quant_plan.c - quant/plan.c and quant/imatrix.c: llama-quantize's per-tensor
 * types (against the files llama-quantize made in ../shared/models/fortune-llama-gguf, and
 * synthetic shapes whose expected types are derived from src/llama-quant.cpp by hand),
 * the metadata it adds, and legacy imatrix files (reference file, round trip, corrupt). */
#include "core/core.h"
#include "formats/gguf.h"
#include "quant/plan.h"
#include "th.h"

#include <inttypes.h>
#include <unistd.h>

#define FORTUNE "models/fortune-llama-gguf/"

static pare_quant_plan_opts default_opts(int ftype) {
    return (pare_quant_plan_opts){.ftype = ftype, .output_type = PARE_TYPE_INVALID,
                                  .token_embd_type = PARE_TYPE_INVALID};
}

/* ------------------------------------------------------------------ ftype names */

static void test_ftype_names(void) {
    int ft = -1;
    CHECK(pare_ftype_from_name("Q4_K_M", &ft) && ft == 15);
    CHECK(pare_ftype_from_name("q4_k_m", &ft) && ft == 15);
    CHECK(pare_ftype_from_name("q4_k", &ft) && ft == PARE_FTYPE_Q4_K_M); /* llama-quantize alias */
    CHECK(pare_ftype_from_name("Q3_K", &ft) && ft == PARE_FTYPE_Q3_K_M);
    CHECK(pare_ftype_from_name("q8_0", &ft) && ft == 7);
    CHECK(pare_ftype_from_name("iq4_xs", &ft) && ft == 30);
    CHECK(pare_ftype_from_name("F32", &ft) && ft == 0);
    CHECK(pare_ftype_from_name("bf16", &ft) && ft == 32);
    CHECK(pare_ftype_from_name("18", &ft) && ft == PARE_FTYPE_Q6_K);
    CHECK(!pare_ftype_from_name("4", &ft));  /* removed Q4_1_SOME_F16 */
    CHECK(!pare_ftype_from_name("Q4_K_X", &ft));
    CHECK(!pare_ftype_from_name("", &ft));
    CHECK(!pare_ftype_from_name("15x", &ft));
    CHECK(pare_ftype_name(PARE_FTYPE_Q5_K_M) && strcmp(pare_ftype_name(PARE_FTYPE_Q5_K_M), "Q5_K_M") == 0);
    CHECK(pare_ftype_name(99) == NULL);
    CHECK(pare_ftype_base_type(PARE_FTYPE_IQ2_S) == PARE_TYPE_IQ2_XS);
    CHECK(pare_ftype_base_type(PARE_FTYPE_IQ3_XS) == PARE_TYPE_IQ3_S);
    CHECK(pare_ftype_base_type(PARE_FTYPE_Q2_K_S) == PARE_TYPE_Q2_K);
    CHECK(pare_ftype_base_type(5) == PARE_TYPE_INVALID);
    /* every named ftype maps back to itself */
    for (int f = 0; f < 64; f++) {
        const char *n = pare_ftype_name(f);
        if (!n) continue;
        int back = -1;
        CHECK_MSG(pare_ftype_from_name(n, &back) && back == f, "%s -> %d", n, back);
    }
}

/* ------------------------------------------------------------------ fortune-llama */

/* Compares two metadata lists key by key (names, types, scalar values, strings, array
 * lengths); skip_value names a key whose value is not compared. Returns the mismatches. */
static int meta_diff(const pare_meta *a, const pare_meta *b, const char *skip_value) {
    int bad = 0;
    if (a->n != b->n) {
        fprintf(stderr, "  %zu keys vs %zu\n", a->n, b->n);
        bad++;
    }
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        const pare_kv *x = &a->kv[i], *y = &b->kv[i];
        bool same = strcmp(x->key, y->key) == 0 && x->type == y->type;
        if (same && !(skip_value && strcmp(x->key, skip_value) == 0)) {
            if (x->type == PARE_META_STRING) same = x->str.len == y->str.len && memcmp(x->str.s, y->str.s, x->str.len) == 0;
            else if (x->type == PARE_META_ARRAY) same = x->n == y->n && x->elem_type == y->elem_type;
            else same = x->v.u64 == y->v.u64;
        }
        if (!same) {
            fprintf(stderr, "  key %zu: '%s' vs '%s'\n", i, x->key, y->key);
            bad++;
        }
    }
    return bad;
}

/* Plans f32 -> ftype and compares with llama-quantize's file: every tensor's type, the
 * tensor order, and the metadata llama-quantize writes. */
static void check_against_file(const pare_model *f32, int ftype, const char *file, const pare_imatrix *im) {
    char rel[256];
    snprintf(rel, sizeof rel, FORTUNE "%s", file);
    const char *path = th_shared(rel);
    if (!path) return;
    pare_err err = {0};
    pare_model *q = NULL;
    CHECK_OK(pare_gguf_load(path, &q, &err), &err);
    if (!q) return;
    pare_type *types = calloc(f32->n_tensors, sizeof *types);
    pare_quant_plan_opts o = default_opts(ftype);
    o.imatrix = im;
    CHECK_OK(pare_quant_plan(f32, &o, types, &err), &err);
    int bad = 0, quantized = 0;
    for (size_t i = 0; i < f32->n_tensors; i++) {
        const pare_tensor *want = pare_model_find(q, f32->tensors[i].name);
        if (!want || want->type != types[i]) {
            bad++;
            fprintf(stderr, "  %s %s: planned %s, llama-quantize %s\n", file, f32->tensors[i].name,
                    pare_type_name(types[i]), want ? pare_type_name(want->type) : "(missing)");
        }
        quantized += types[i] != f32->tensors[i].type;
    }
    CHECK_MSG(bad == 0, "%s: %d of %zu tensor types differ", file, bad, f32->n_tensors);
    uint64_t ft = 0;
    CHECK(pare_meta_get_u64(&q->meta, "general.file_type", &ft) && ft == (uint64_t)ftype);
    /* order */
    size_t *order = malloc(f32->n_tensors * sizeof *order);
    pare_quant_plan_order(f32, order);
    int bad_order = q->n_tensors != f32->n_tensors;
    for (size_t k = 0; k < f32->n_tensors && k < q->n_tensors; k++)
        bad_order += strcmp(f32->tensors[order[k]].name, q->tensors[k].name) != 0;
    CHECK_MSG(bad_order == 0, "%s: %d tensors out of llama-quantize's order", file, bad_order);
    /* metadata */
    pare_meta meta = {0};
    CHECK_OK(pare_meta_copy(&meta, &f32->meta, &err), &err);
    CHECK_OK(pare_quant_plan_set_meta(&meta, ftype, im, &err), &err);
    CHECK_MSG(meta_diff(&meta, &q->meta, "quantize.imatrix.file") == 0, "%s: metadata differs", file);
    printf("  %-28s %2zu tensors, %2d quantized, types %s, order %s\n", file, f32->n_tensors, quantized,
           bad ? "DIFFER" : "match", bad_order ? "differs" : "matches");
    pare_meta_free(&meta);
    free(order);
    free(types);
    pare_model_free(q);
}

static pare_model *load_fortune_f32(void) {
    const char *path = th_shared(FORTUNE "fortune-llama-f32.gguf");
    if (!path) return NULL;
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    return m;
}

static void test_fortune_plans(void) {
    static const struct { int ftype; const char *file; } CASES[] = {
        {PARE_FTYPE_Q8_0, "fortune-llama-Q8_0.gguf"},     {PARE_FTYPE_Q6_K, "fortune-llama-Q6_K.gguf"},
        {PARE_FTYPE_Q5_K_M, "fortune-llama-Q5_K_M.gguf"}, {PARE_FTYPE_Q5_0, "fortune-llama-Q5_0.gguf"},
        {PARE_FTYPE_Q5_1, "fortune-llama-Q5_1.gguf"},     {PARE_FTYPE_Q4_K_M, "fortune-llama-Q4_K_M.gguf"},
        {PARE_FTYPE_Q4_K_S, "fortune-llama-Q4_K_S.gguf"}, {PARE_FTYPE_Q4_0, "fortune-llama-Q4_0.gguf"},
        {PARE_FTYPE_Q4_1, "fortune-llama-Q4_1.gguf"},     {PARE_FTYPE_Q3_K_M, "fortune-llama-Q3_K_M.gguf"},
        {PARE_FTYPE_Q2_K, "fortune-llama-Q2_K.gguf"},     {PARE_FTYPE_IQ4_NL, "fortune-llama-IQ4_NL.gguf"},
        {PARE_FTYPE_IQ4_XS, "fortune-llama-IQ4_XS.gguf"},
    };
    pare_model *m = load_fortune_f32();
    if (!m) return;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_against_file(m, CASES[i].ftype, CASES[i].file, NULL);
    pare_model_free(m);
}

static void test_fortune_imatrix_plans(void) {
    pare_model *m = load_fortune_f32();
    const char *dat = th_shared(FORTUNE "fortune-llama-imatrix-licenses.dat");
    if (!m || !dat) {
        pare_model_free(m);
        return;
    }
    pare_err err = {0};
    pare_imatrix *im = NULL;
    CHECK_OK(pare_imatrix_load(dat, &im, &err), &err);
    if (im) {
        check_against_file(m, PARE_FTYPE_Q2_K, "fortune-llama-Q2_K-imatrix.gguf", im);
        check_against_file(m, PARE_FTYPE_IQ4_XS, "fortune-llama-IQ4_XS-imatrix.gguf", im);
        check_against_file(m, PARE_FTYPE_Q4_K_M, "fortune-llama-Q4_K_M-imatrix.gguf", im);
        /* the very-low-bit mixes: refused without an imatrix, planned with one */
        pare_type *types = calloc(m->n_tensors, sizeof *types);
        pare_quant_plan_opts o = default_opts(PARE_FTYPE_IQ2_XXS);
        CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUSAGE);
        CHECK_MSG(strstr(err.msg, "importance matrix") && strstr(err.msg, "iq2_xxs"), "%s", err.msg);
        o.imatrix = im;
        CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
        const pare_tensor *t = pare_model_find(m, "blk.1.attn_q.weight");
        CHECK(types[t - m->tensors] == PARE_TYPE_IQ2_XXS);
        t = pare_model_find(m, "token_embd.weight"); /* tied: the output rule, Q5_K for IQ2 mixes */
        CHECK(types[t - m->tensors] == PARE_TYPE_Q5_K);
        free(types);
    }
    pare_imatrix_free(im);
    pare_model_free(m);
}

/* ------------------------------------------------------------------ synthetic models */

typedef struct { const char *name; int64_t ne0, ne1; } shape;

/* A tensor list without data (the plan reads names, shapes and types only). */
static pare_model *synth_model(const char *arch, int n_layer, int n_head, int n_head_kv, int n_expert, int64_t embd,
                               int64_t ff, int64_t vocab, bool with_output) {
    pare_err err = {0};
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "synthetic.gguf");
    m->gguf_names = true;
    m->arch = strdup(arch);
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch);
    pare_meta_set_uint(&m->meta, key, PARE_META_U32, (uint64_t)n_layer, &err);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    pare_meta_set_uint(&m->meta, key, PARE_META_U32, (uint64_t)n_head, &err);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    pare_meta_set_uint(&m->meta, key, PARE_META_U32, (uint64_t)n_head_kv, &err);
    if (n_expert) {
        snprintf(key, sizeof key, "%s.expert_count", arch);
        pare_meta_set_uint(&m->meta, key, PARE_META_U32, (uint64_t)n_expert, &err);
    }
    const int64_t head = embd / n_head, kv = head * n_head_kv;
    shape top[] = {{"token_embd.weight", embd, vocab}, {"output_norm.weight", embd, 1}, {"output.weight", embd, vocab}};
    for (int i = 0; i < (with_output ? 3 : 2); i++) {
        pare_tensor t = {0};
        int64_t ne[2] = {top[i].ne0, top[i].ne1};
        pare_tensor_init(&t, top[i].name, PARE_TYPE_F16, ne[1] > 1 ? 2 : 1, ne, &err);
        if (ne[1] == 1) t.type = PARE_TYPE_F32;
        pare_model_add_tensor(m, &t, &err);
    }
    for (int l = 0; l < n_layer; l++) {
        shape s[] = {{"attn_norm.weight", embd, 1}, {"attn_q.weight", embd, embd}, {"attn_k.weight", embd, kv},
                     {"attn_v.weight", embd, kv},   {"attn_output.weight", embd, embd}, {"ffn_norm.weight", embd, 1},
                     {"ffn_gate.weight", embd, ff}, {"ffn_up.weight", embd, ff}, {"ffn_down.weight", ff, embd}};
        for (size_t k = 0; k < sizeof s / sizeof s[0]; k++) {
            pare_tensor t = {0};
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s", l, s[k].name);
            int64_t ne[2] = {s[k].ne0, s[k].ne1};
            pare_tensor_init(&t, name, ne[1] > 1 ? PARE_TYPE_F16 : PARE_TYPE_F32, ne[1] > 1 ? 2 : 1, ne, &err);
            pare_model_add_tensor(m, &t, &err);
        }
    }
    return m;
}

static pare_type type_of(const pare_model *m, const pare_type *types, const char *name) {
    const pare_tensor *t = pare_model_find(m, name);
    return t ? types[t - m->tensors] : PARE_TYPE_INVALID;
}

static pare_type layer_type(const pare_model *m, const pare_type *types, int l, const char *what) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, what);
    return type_of(m, types, name);
}

/* Checks one layer tensor kind against expected[l] for every layer; returns mismatches. */
static int check_layers(const pare_model *m, const pare_type *types, int n_layer, const char *what,
                        const pare_type *expected, const char *label) {
    int bad = 0;
    for (int l = 0; l < n_layer; l++) {
        pare_type got = layer_type(m, types, l, what);
        if (got != expected[l]) {
            bad++;
            fprintf(stderr, "  %s blk.%d.%s: %s, expected %s\n", label, l, what, pare_type_name(got),
                    pare_type_name(expected[l]));
        }
    }
    return bad;
}

static void fill(pare_type *e, int n, pare_type t) { for (int i = 0; i < n; i++) e[i] = t; }

/* TinyLlama-1.1B's shape: 22 layers, hidden 2048, 32 heads, 4 KV heads (n_gqa = 8), FFN
 * 5632 (= 22 x 256, so nothing falls back), vocabulary 32000, an untied output.weight.
 *
 * Derivation from llama_tensor_get_type (February 2025):
 *  - use_more_bits(i, 22) is i < 22/8 = 2 || i >= 7*22/8 = 19 || (i - 2) % 3 == 2, true for
 *    layers {0, 1, 4, 7, 10, 13, 16, 19, 20, 21}.
 *  - output.weight has its own rule: Q6_K unless the base is Q8_0 (or an IQ1/IQ2 mix).
 *  - token_embd.weight (untied) keeps the base type for the K mixes.
 *  Q4_K_M: attn_v and ffn_down take Q6_K on use_more_bits layers (counters advance one
 *    layer at a time), Q4_K elsewhere; everything else Q4_K.
 *  Q3_K_M: attn_v is Q5_K for the first two (i_attention_wv < 2), then Q4_K (the n_gqa >= 4
 *    rules only concern Q2_K / IQ3 mixes); ffn_down Q5_K for i < 22/16 = 1, then Q4_K
 *    (not Falcon); attn_output Q4_K; q / k / gate / up stay Q3_K.
 *  Q2_K: n_gqa = 8 >= 4 so attn_v is Q4_K in every layer; ffn_down and attn_output Q3_K;
 *    the rest Q2_K. No imatrix is needed (only Q2_K_S insists on one). */
static void test_tinyllama_shapes(void) {
    enum { NL = 22 };
    pare_model *m = synth_model("llama", NL, 32, 4, 0, 2048, 5632, 32000, true);
    pare_type *types = calloc(m->n_tensors, sizeof *types), e[NL];
    pare_err err = {0};
    static const int more[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    int bad = 0;

    pare_quant_plan_opts o = default_opts(PARE_FTYPE_Q4_K_M);
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_Q6_K);
    CHECK(type_of(m, types, "token_embd.weight") == PARE_TYPE_Q4_K);
    CHECK(type_of(m, types, "output_norm.weight") == PARE_TYPE_F32);
    fill(e, NL, PARE_TYPE_Q4_K);
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) e[more[i]] = PARE_TYPE_Q6_K;
    bad += check_layers(m, types, NL, "attn_v.weight", e, "Q4_K_M");
    bad += check_layers(m, types, NL, "ffn_down.weight", e, "Q4_K_M");
    fill(e, NL, PARE_TYPE_Q4_K);
    bad += check_layers(m, types, NL, "attn_q.weight", e, "Q4_K_M");
    bad += check_layers(m, types, NL, "attn_output.weight", e, "Q4_K_M");
    bad += check_layers(m, types, NL, "ffn_up.weight", e, "Q4_K_M");
    fill(e, NL, PARE_TYPE_F32);
    bad += check_layers(m, types, NL, "ffn_norm.weight", e, "Q4_K_M");

    o = default_opts(PARE_FTYPE_Q3_K_M);
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_Q6_K);
    CHECK(type_of(m, types, "token_embd.weight") == PARE_TYPE_Q3_K);
    fill(e, NL, PARE_TYPE_Q4_K), e[0] = e[1] = PARE_TYPE_Q5_K;
    bad += check_layers(m, types, NL, "attn_v.weight", e, "Q3_K_M");
    fill(e, NL, PARE_TYPE_Q4_K), e[0] = PARE_TYPE_Q5_K;
    bad += check_layers(m, types, NL, "ffn_down.weight", e, "Q3_K_M");
    fill(e, NL, PARE_TYPE_Q4_K);
    bad += check_layers(m, types, NL, "attn_output.weight", e, "Q3_K_M");
    fill(e, NL, PARE_TYPE_Q3_K);
    bad += check_layers(m, types, NL, "attn_k.weight", e, "Q3_K_M");
    bad += check_layers(m, types, NL, "ffn_gate.weight", e, "Q3_K_M");

    o = default_opts(PARE_FTYPE_Q2_K);
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_Q6_K);
    CHECK(type_of(m, types, "token_embd.weight") == PARE_TYPE_Q2_K);
    fill(e, NL, PARE_TYPE_Q4_K);
    bad += check_layers(m, types, NL, "attn_v.weight", e, "Q2_K");
    fill(e, NL, PARE_TYPE_Q3_K);
    bad += check_layers(m, types, NL, "ffn_down.weight", e, "Q2_K");
    bad += check_layers(m, types, NL, "attn_output.weight", e, "Q2_K");
    fill(e, NL, PARE_TYPE_Q2_K);
    bad += check_layers(m, types, NL, "attn_q.weight", e, "Q2_K");
    bad += check_layers(m, types, NL, "ffn_up.weight", e, "Q2_K");

    /* Q2_K_S insists on importance values for its Q2_K tensors */
    o = default_opts(PARE_FTYPE_Q2_K_S);
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUSAGE);
    CHECK_MSG(strstr(err.msg, "blk.0.attn_k.weight") != NULL, "%s", err.msg);
    CHECK_MSG(bad == 0, "%d layer tensors differ", bad);
    free(types);
    pare_model_free(m);
}

/* ne[0] not a multiple of 256 (hidden 320, FFN 864 = 27 x 32): the fallback types. */
static void test_fallback_shapes(void) {
    enum { NL = 4 };
    pare_model *m = synth_model("llama", NL, 5, 5, 0, 320, 864, 1000, true);
    pare_type *types = calloc(m->n_tensors, sizeof *types);
    pare_err err = {0};
    struct { int ftype; pare_type q, v2, down2, out; } cases[] = {
        /* ftype     attn_q (Q*_K -> fallback)  attn_v layer 2     ffn_down layer 2   output */
        {PARE_FTYPE_Q4_K_M, PARE_TYPE_Q5_0, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0},
        {PARE_FTYPE_Q5_K_M, PARE_TYPE_Q5_1, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0},
        {PARE_FTYPE_Q2_K, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_NL, PARE_TYPE_Q8_0},
        {PARE_FTYPE_Q6_K, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0, PARE_TYPE_Q8_0},
        {PARE_FTYPE_IQ4_XS, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_NL, PARE_TYPE_IQ4_NL, PARE_TYPE_Q8_0},
        {PARE_FTYPE_Q4_0, PARE_TYPE_Q4_0, PARE_TYPE_Q4_0, PARE_TYPE_Q4_0, PARE_TYPE_Q6_K},
    };
    /* Q4_K_M layer 2: use_more_bits(2, 4) -> Q6_K -> falls back to Q8_0; Q2_K attn_v is
     * Q3_K (n_gqa 1) -> IQ4_NL, ffn_down Q3_K -> IQ4_NL; output: nx % 256 != 0 -> Q8_0,
     * except with Q4_0 (block 32 divides 320) -> Q6_K ... which then falls back to Q8_0. */
    cases[5].out = PARE_TYPE_Q8_0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pare_quant_plan_opts o = default_opts(cases[c].ftype);
        CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
        const char *fn = pare_ftype_name(cases[c].ftype);
        CHECK_MSG(type_of(m, types, "blk.0.attn_q.weight") == cases[c].q, "%s attn_q %s", fn,
                  pare_type_name(type_of(m, types, "blk.0.attn_q.weight")));
        CHECK_MSG(type_of(m, types, "blk.2.attn_v.weight") == cases[c].v2, "%s attn_v %s", fn,
                  pare_type_name(type_of(m, types, "blk.2.attn_v.weight")));
        CHECK_MSG(type_of(m, types, "blk.2.ffn_down.weight") == cases[c].down2, "%s ffn_down %s", fn,
                  pare_type_name(type_of(m, types, "blk.2.ffn_down.weight")));
        CHECK_MSG(type_of(m, types, "output.weight") == cases[c].out, "%s output %s", fn,
                  pare_type_name(type_of(m, types, "output.weight")));
    }
    pare_model_free(m);

    /* ne[0] = 100 (no block type divides it but F16): llama-quantize gives up on
     * output.weight (its rule picks Q8_0, which has no fallback) unless the user names a
     * type for it; then Q4_K -> Q5_0 -> F16 and Q5_K -> Q5_1 -> F16 */
    m = synth_model("llama", 2, 4, 4, 0, 100, 256, 64, true);
    types = realloc(types, m->n_tensors * sizeof *types);
    pare_quant_plan_opts o = default_opts(PARE_FTYPE_Q4_K_S);
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "'output.weight'") != NULL, "%s", err.msg);
    o.output_type = PARE_TYPE_F16;
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_F16);
    CHECK(type_of(m, types, "token_embd.weight") == PARE_TYPE_F16);
    CHECK(type_of(m, types, "blk.1.attn_q.weight") == PARE_TYPE_F16);
    CHECK(type_of(m, types, "blk.1.attn_v.weight") == PARE_TYPE_F16);   /* Q5_K (i < 4) -> Q5_1 -> F16 */
    CHECK(type_of(m, types, "blk.1.ffn_down.weight") == PARE_TYPE_Q4_K); /* ne[0] 256; i < 2/8 false */
    /* Q8_0 has no fallback: token_embd.weight keeps the base type and cannot have it */
    o = default_opts(PARE_FTYPE_Q8_0);
    o.output_type = PARE_TYPE_F16;
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "'token_embd.weight'") != NULL, "%s", err.msg);
    /* --pure falls back too (llama-quantize would abort); a user's type must divide */
    o = default_opts(PARE_FTYPE_Q4_K_M);
    o.pure = true;
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "blk.0.attn_v.weight") == PARE_TYPE_F16);
    CHECK(type_of(m, types, "blk.0.ffn_down.weight") == PARE_TYPE_Q4_K);
    const char *glob[] = {"*attn_q*"};
    const pare_type gt[] = {PARE_TYPE_Q4_0};
    o.override_globs = glob, o.override_types = gt, o.n_overrides = 1;
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUSAGE);
    CHECK_MSG(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "q4_0"), "%s", err.msg);
    free(types);
    pare_model_free(m);
}

static void test_options(void) {
    pare_model *m = synth_model("llama", 8, 8, 2, 0, 512, 1024, 2000, true);
    pare_type *types = calloc(m->n_tensors, sizeof *types);
    pare_err err = {0};
    /* --pure: every quantizable tensor at the base type, output included */
    pare_quant_plan_opts o = default_opts(PARE_FTYPE_Q4_K_M);
    o.pure = true;
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    int not_base = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].n_dims == 2 && types[i] != PARE_TYPE_Q4_K) not_base++;
    CHECK_MSG(not_base == 0, "%d tensors not Q4_K under --pure", not_base);
    /* overrides: globs (first match wins), embedding and output types, leave output */
    const char *globs[] = {"blk.*.ffn_down.weight", "blk.*", "blk.1.*"};
    const pare_type gt[] = {PARE_TYPE_Q8_0, PARE_TYPE_Q5_0, PARE_TYPE_Q2_K};
    o = default_opts(PARE_FTYPE_Q4_K_M);
    o.override_globs = globs, o.override_types = gt, o.n_overrides = 3;
    o.token_embd_type = PARE_TYPE_Q8_0;
    o.leave_output = true;
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "blk.3.ffn_down.weight") == PARE_TYPE_Q8_0);
    CHECK(type_of(m, types, "blk.1.attn_q.weight") == PARE_TYPE_Q5_0);
    CHECK(type_of(m, types, "blk.1.attn_norm.weight") == PARE_TYPE_F32); /* never quantized */
    CHECK(type_of(m, types, "token_embd.weight") == PARE_TYPE_Q8_0);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_F16);          /* left as it is */
    o = default_opts(PARE_FTYPE_Q4_K_M);
    o.output_type = PARE_TYPE_Q8_0;
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_Q8_0);
    /* F16 / F32 ftypes: 2-D weights converted, norms stay F32 */
    o = default_opts(PARE_FTYPE_ALL_F32);
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "blk.0.attn_q.weight") == PARE_TYPE_F32);
    CHECK(type_of(m, types, "output.weight") == PARE_TYPE_F32);
    o = default_opts(5);
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EUSAGE);
    free(types);
    pare_model_free(m);

    /* 8 experts: attn_v and attn_k at Q8_0, attn_output Q5_K for Q4_K_M; a tensor that
     * names no layer cannot be placed */
    m = synth_model("llama", 4, 8, 8, 8, 256, 512, 300, true);
    types = calloc(m->n_tensors, sizeof *types);
    o = default_opts(PARE_FTYPE_Q4_K_M);
    CHECK_OK(pare_quant_plan(m, &o, types, &err), &err);
    CHECK(type_of(m, types, "blk.2.attn_v.weight") == PARE_TYPE_Q8_0);
    CHECK(type_of(m, types, "blk.2.attn_k.weight") == PARE_TYPE_Q8_0);
    CHECK(type_of(m, types, "blk.2.attn_output.weight") == PARE_TYPE_Q5_K);
    pare_tensor t = {0};
    int64_t ne[2] = {512, 256};
    pare_tensor_init(&t, "ffn_down_exps.weight", PARE_TYPE_F16, 2, ne, &err);
    pare_model_add_tensor(m, &t, &err);
    types = realloc(types, m->n_tensors * sizeof *types);
    CHECK(pare_quant_plan(m, &o, types, &err) == PARE_EINPUT);
    CHECK_MSG(strstr(err.msg, "ffn_down_exps.weight") != NULL, "%s", err.msg);
    free(types);
    pare_model_free(m);
}

/* ------------------------------------------------------------------ imatrix files */

static bool write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void test_imatrix_reference(void) {
    char *dat = th_shared_dup(FORTUNE "fortune-llama-imatrix-licenses.dat");
    pare_model *m = load_fortune_f32();
    pare_err err = {0};
    pare_imatrix *im = NULL;
    if (dat && m) CHECK_OK(pare_imatrix_load(dat, &im, &err), &err);
    if (!im) {
        free(dat);
        pare_model_free(m);
        return;
    }
    CHECK(im->n_entries == 28);
    CHECK(im->chunks == 448);
    CHECK(im->dataset && strcmp(im->dataset, "licenses-train.txt") == 0);
    const pare_imatrix_entry *e = &im->entries[0];
    CHECK(strcmp(e->name, "blk.3.ffn_down.weight") == 0 && e->ncall == 448 && e->n == 768);
    int matched = 0, bad_div = 0, non_positive = 0;
    for (size_t i = 0; i < im->n_entries; i++) {
        e = &im->entries[i];
        const pare_tensor *t = pare_model_find(m, e->name);
        const float *v = NULL;
        CHECK_MSG(t != NULL, "no tensor %s", e->name);
        if (!t) continue;
        CHECK_OK(pare_imatrix_for_tensor(im, t, &v, &err), &err);
        matched += v == e->values && e->n == t->ne[0];
        for (int64_t j = 0; j < e->n; j++) {
            bad_div += e->values[j] != e->raw[j] / (float)e->ncall;
            non_positive += !(e->values[j] > 0);
        }
    }
    CHECK_MSG(matched == 28, "%d entries matched their tensors", matched);
    CHECK(bad_div == 0 && non_positive == 0);
    printf("  %zu entries, %d matched (nval == ne[0]), %d chunks of %s\n", im->n_entries, matched, im->chunks,
           im->dataset);
    /* a tensor whose rows do not fit its entry */
    pare_tensor t = {0};
    int64_t ne[2] = {512, 256};
    pare_tensor_init(&t, "blk.0.attn_q.weight", PARE_TYPE_F32, 2, ne, &err);
    const float *v = NULL;
    CHECK(pare_imatrix_for_tensor(im, &t, &v, &err) == PARE_EINPUT && v == NULL);
    CHECK_MSG(strstr(err.msg, dat) && strstr(err.msg, "blk.0.attn_q.weight"), "%s", err.msg);
    pare_tensor_clear(&t);
    pare_imatrix_free(im);
    pare_model_free(m);
    free(dat);
}

static void test_imatrix_round_trip(void) {
    pare_err err = {0};
    /* in memory -> file -> back */
    pare_imatrix *im = pare_imatrix_new();
    float a[3] = {3.0f, 6.0f, 1.5f}, b[2] = {0.25f, 8.0f};
    CHECK_OK(pare_imatrix_add(im, "blk.0.attn_q.weight", 3, a, 3, &err), &err);
    CHECK_OK(pare_imatrix_add(im, "blk.0.ffn_down.weight", 0, b, 2, &err), &err);
    CHECK(pare_imatrix_add(im, "blk.0.ffn_down.weight", 1, b, 2, &err) == PARE_EUSAGE);
    CHECK_OK(pare_imatrix_set_dataset(im, 7, "calib.txt", &err), &err);
    CHECK(im->entries[0].values[1] == 2.0f && im->entries[1].values[1] == 8.0f); /* ncall 0: kept */
    const char *p = th_tmp_path("rt.dat");
    CHECK_OK(pare_imatrix_save(im, p, false, &err), &err);
    CHECK(pare_imatrix_save(im, p, false, &err) != PARE_OK); /* no silent overwrite */
    pare_imatrix *back = NULL;
    CHECK_OK(pare_imatrix_load(p, &back, &err), &err);
    if (back) {
        CHECK(back->n_entries == 2 && back->chunks == 7 && strcmp(back->dataset, "calib.txt") == 0);
        CHECK(back->entries[0].ncall == 3 && memcmp(back->entries[0].raw, a, sizeof a) == 0);
        CHECK(memcmp(back->entries[1].raw, b, sizeof b) == 0);
    }
    pare_imatrix_free(back);
    pare_imatrix_free(im);
}

/* The reference file is rewritten byte for byte. */
static void test_imatrix_rewrite_reference(void) {
    const char *dat = th_shared(FORTUNE "fortune-llama-imatrix-licenses.dat");
    if (!dat) return;
    pare_err err = {0};
    pare_imatrix *im = NULL;
    const char *p = NULL;
    CHECK_OK(pare_imatrix_load(dat, &im, &err), &err);
    if (!im) return;
    p = th_tmp_path("copy.dat");
    CHECK_OK(pare_imatrix_save(im, p, true, &err), &err);
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    CHECK_OK(pare_read_file(dat, 1 << 20, &x, &nx, &err), &err);
    CHECK_OK(pare_read_file(p, 1 << 20, &y, &ny, &err), &err);
    CHECK_MSG(x && y && nx == ny && memcmp(x, y, nx) == 0, "rewritten file differs (%zu vs %zu bytes)", nx, ny);
    free(x);
    free(y);
    pare_imatrix_free(im);
}

/* A little-endian byte builder for hand-made files. */
typedef struct { uint8_t b[512]; size_t n; } buf;
static void put_i32(buf *w, int32_t v) {
    for (int i = 0; i < 4; i++) w->b[w->n++] = (uint8_t)((uint32_t)v >> (8 * i));
}
static void put_bytes(buf *w, const char *s) { size_t n = strlen(s); memcpy(w->b + w->n, s, n), w->n += n; }
static void put_f32(buf *w, float f) { int32_t v; memcpy(&v, &f, 4); put_i32(w, v); }

/* One well-formed entry "w" with 2 values, then a trailer. */
static buf good_file(void) {
    buf w = {.n = 0};
    put_i32(&w, 1);
    put_i32(&w, 1), put_bytes(&w, "w");
    put_i32(&w, 2), put_i32(&w, 2), put_f32(&w, 4.0f), put_f32(&w, 8.0f);
    put_i32(&w, 5), put_i32(&w, 3), put_bytes(&w, "set");
    return w;
}

/* Loading must give PARE_EINPUT and a message naming the file. Returns 1 on failure. */
static int expect_einput(const char *label, const void *p, size_t n) {
    const char *path = th_tmp_path("bad.dat");
    if (!write_bytes(path, p, n)) return 1;
    pare_err err = {0};
    pare_imatrix *im = NULL;
    pare_status s = pare_imatrix_load(path, &im, &err);
    pare_imatrix_free(im);
    if (s != PARE_EINPUT || !strstr(err.msg, path) || im) {
        fprintf(stderr, "  %s: status %d, message '%s'\n", label, s, err.msg);
        return 1;
    }
    return 0;
}

static void test_imatrix_corrupt(void) {
    buf g = good_file();
    int bad = 0, cases = 0;
    /* the hand-made file itself is fine */
    const char *path = th_tmp_path("good.dat");
    CHECK(write_bytes(path, g.b, g.n));
    pare_err err = {0};
    pare_imatrix *im = NULL;
    CHECK_OK(pare_imatrix_load(path, &im, &err), &err);
    CHECK(im && im->n_entries == 1 && im->entries[0].values[1] == 4.0f && im->chunks == 5);
    pare_imatrix_free(im);
    /* every truncation fails, except the one that drops exactly the whole trailer */
    const size_t end_of_entries = 4 + 4 + 1 + 8 + 8;
    for (size_t cut = 0; cut < g.n; cut++) {
        if (cut == end_of_entries) continue;
        char label[48];
        snprintf(label, sizeof label, "truncated at %zu", cut);
        bad += expect_einput(label, g.b, cut), cases++;
    }
    /* patched fields: offset, value */
    struct { const char *label; size_t off; int32_t v; } patches[] = {
        {"zero entries", 0, 0},           {"negative entries", 0, -1},     {"huge entries", 0, INT32_MAX},
        {"negative name length", 4, -5},  {"huge name length", 4, INT32_MAX}, {"name past end", 4, 1000},
        {"zero values", 13, 0},           {"negative values", 13, -2},     {"huge values", 13, 0x40000000},
        {"negative dataset length", 29, -1}, {"huge dataset length", 29, INT32_MAX},
        {"NaN value", 17, 0x7fc00000},    {"infinite value", 21, 0x7f800000},
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        buf w = g;
        w.n = patches[i].off, put_i32(&w, patches[i].v), w.n = g.n; /* overwrite 4 bytes */
        bad += expect_einput(patches[i].label, w.b, w.n), cases++;
    }
    /* trailing garbage; a duplicate entry */
    buf w = g;
    put_bytes(&w, "xyz");
    bad += expect_einput("trailing bytes", w.b, w.n), cases++;
    w = (buf){.n = 0};
    put_i32(&w, 2);
    for (int k = 0; k < 2; k++) put_i32(&w, 1), put_bytes(&w, "w"), put_i32(&w, 1), put_i32(&w, 1), put_f32(&w, 1.0f);
    bad += expect_einput("duplicate name", w.b, w.n), cases++;
    CHECK_MSG(bad == 0, "%d of %d corrupt files not refused as bad input", bad, cases);
    printf("  %d corrupt files refused with PARE_EINPUT naming the file\n", cases - bad);
    /* a missing file is an I/O error */
    CHECK(pare_imatrix_load(th_tmp_path("none.dat"), &im, &err) == PARE_EIO);
}

int main(void) {
    if (!th_tmpdir("pare-plan")) return 1;
    TH_RUN(test_ftype_names);
    TH_RUN(test_fortune_plans);
    TH_RUN(test_fortune_imatrix_plans);
    TH_RUN(test_tinyllama_shapes);
    TH_RUN(test_fallback_shapes);
    TH_RUN(test_options);
    TH_RUN(test_imatrix_reference);
    TH_RUN(test_imatrix_round_trip);
    TH_RUN(test_imatrix_rewrite_reference);
    TH_RUN(test_imatrix_corrupt);
    const char *names[] = {"rt.dat", "copy.dat", "bad.dat", "good.dat"};
    for (size_t i = 0; i < 4; i++) unlink(th_tmp_path(names[i]));
    rmdir(th.tmpdir);
    return th_done();
}
