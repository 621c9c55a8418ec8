/* tests/test_eval.c - the reference evaluator: llama.cpp's logits and perplexity on the
 * fortune-llama fixture (../shared), and synthetic llama / qwen2 / gpt2 models, built in
 * memory, against a naive double-precision forward pass written here. */
#include "core/isa.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "quant/quant.h"
#include "verify/llm.h"
#include "verify/llm_impl.h"
#include "th.h"
#include "th_model.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define TOL_GOLDEN_F32 2e-3   /* |logit - llama.cpp's| for the f32 model (the brief's bound) */
#define GOLDEN_HEAD 8         /* positions of quantized models held to TOL_GOLDEN_F32 */
#define TOL_PPL_REL 2e-4      /* 0.02 % of llama-perplexity's value */
#define TOL_REF_F32 1e-3      /* pare f32 (no ggml rounding) vs the naive double reference */
#define TOL_F64 1e-4          /* the repo fixture's float64 PyTorch logits, plain f32 */
#define TOL_F64_ROUNDED 1e-2  /* the same with ggml's f16 KV cache and rounded activations */
#define TOL_TAIL 1e-5         /* forward_tail's rows vs the same rows of a full forward */
#define TOL_TAIL_ROUNDED 1e-3 /* the same with ggml rounding, relative to max |logit| */
#define TOL_KLD_REL 1e-3      /* mean KLD vs exact base probabilities (16-bit storage) */
#define TOL_REF_ROUNDED 1e-2  /* the same with ggml's activation / KV roundings, relative to max |logit| */

/* ------------------------------------------------------------------------ golden logits */


static bool can_read(const pare_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_type_info *ti = pare_type_get(m->tensors[i].type);
        if (!ti->is_float && !pare_quant_can_dequantize(m->tensors[i].type)) {
            fprintf(stderr, "  %s: type %s cannot be dequantized yet (quant module): skipped\n", m->path,
                    pare_type_name(m->tensors[i].type));
            return false;
        }
    }
    return true;
}

/* Logits of the model for the golden tokens vs llama.cpp's; returns the max abs diff, and
 * in *head that of the first GOLDEN_HEAD positions (NULL: not wanted). */
static double golden_diff(const char *model_rel, const char *logits_rel, bool rounding, double *head) {
    char *mp = th_shared_dup(model_rel), *lp = th_shared_dup(logits_rel);
    double maxd = -1;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    th_plog g = {0};
    pare_err err;
    if (!mp || !lp || !th_plog_read(lp, &g)) goto out;
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (!m) goto out;
    if (!can_read(m)) {
        th.cur_skipped++;
        goto out;
    }
    CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (!llm) goto out;
    CHECK(pare_llm_n_vocab(llm) == (int)g.n_vocab);
    pare_llm_set_ggml_rounding(llm, rounding);
    float *out = malloc(4ull * g.n_tokens * g.n_vocab);
    CHECK_OK(pare_llm_forward(llm, g.tokens, (int)g.n_tokens, out, &err), &err);
    maxd = 0;
    for (size_t i = 0; i < (size_t)g.n_tokens * g.n_vocab; i++) {
        double d = fabs((double)out[i] - g.logits[i]);
        if (!(d <= maxd)) maxd = d; /* NaN propagates */
        if (head && i + 1 == (size_t)GOLDEN_HEAD * g.n_vocab) *head = maxd;
    }
    free(out);
out:
    pare_llm_free(llm);
    pare_model_free(m);
    free(g.tokens);
    free(g.logits);
    free(mp);
    free(lp);
    return maxd;
}

/* ggml's kernels differ by instruction set (expf, the lanes of the attention sums), so
 * llama.cpp's logits do too; pare follows ggml's AVX-512 and AVX2 (+FMA +F16C) paths, and
 * its test compares with the set made by the llama.cpp build of the kernels' level this
 * process runs (core/isa.h; tests/run.sh runs it at every level the CPU has): the AVX-512 one
 * at the top of fortune-llama-golden/, the AVX2 one in avx2/, both to TOL_GOLDEN_F32 at every
 * position. The generic level (plain C) and the aarch64 levels (ggml's Arm orders, for which
 * no llama.cpp logits are at hand) follow neither x86 order: they are compared with the AVX2
 * set at TOL_GOLDEN_OTHER, rare flips of 8-bit codes included, and held to llama.cpp's
 * perplexity by test_ppl_gpl3_f32. */
#define TOL_GOLDEN_OTHER 0.15
static const char *golden_set(double *tol_quant) {
    const pare_isa isa = pare_isa_active();
    const char *set = isa == PARE_ISA_AVX512 ? "models/fortune-llama-golden/" : "models/fortune-llama-golden/avx2/";
    *tol_quant = isa == PARE_ISA_AVX512 || isa == PARE_ISA_AVX2 ? TOL_GOLDEN_F32 : TOL_GOLDEN_OTHER;
    printf("  kernels %s: golden logits of llama.cpp's %s build (%s)\n", pare_isa_name(isa),
           isa == PARE_ISA_AVX512 ? "AVX-512" : "AVX2", set);
    return set;
}

/* The golden logits file `name` of this process's set, in buf, and the bound for the
 * quantized models. */
static void golden_path(const char *name, char *buf, size_t cap, double *tol_quant) {
    snprintf(buf, cap, "%s%s", golden_set(tol_quant), name);
}

static void test_golden_f32(void) {
    char lp[128];
    double tq;
    golden_path("logits-f32.bin", lp, sizeof lp, &tq);
    double d = golden_diff("models/fortune-llama-gguf/fortune-llama-f32.gguf", lp, true, NULL);
    if (d < 0) return;
    printf("  f32: max |logit - llama.cpp| = %.3g (tolerance %.g)\n", d, TOL_GOLDEN_F32);
    CHECK_MSG(d <= TOL_GOLDEN_F32, "max diff %g", d);
    double d2 = golden_diff("models/fortune-llama-gguf/fortune-llama-f32.gguf", lp, false, NULL);
    printf("  f32 without ggml's f16 KV cache rounding: max diff %.3g\n", d2);
}

/* Quantized models: llama.cpp's logits exactly (0 difference is what pare gives), which
 * needs ggml's order everywhere: integer block dots in tinyBLAS's (Q8_0) and vec_dot's
 * (Q4_K, Q6_K) lanes, the f16 attention products, ggml's expf, the fma that GCC puts into
 * its RoPE. One ulp anywhere can flip an 8-bit activation, and the flip travels along the
 * sequence. tol: the bound over all positions; the first positions are always held to the
 * f32 bound. */
static void golden_quant(const char *model_rel, const char *logits_rel, const char *what, double tol) {
    double head = -1, d = golden_diff(model_rel, logits_rel, true, &head);
    if (d < 0) return;
    printf("  %s: max |logit - llama.cpp| = %.3g (tolerance %.2g), first %d positions %.3g (tolerance %.2g)\n", what,
           d, tol, GOLDEN_HEAD, head, TOL_GOLDEN_F32);
    CHECK_MSG(d <= tol, "max diff %g", d);
    CHECK_MSG(head >= 0 && head <= TOL_GOLDEN_F32, "first positions: max diff %g", head);
}

/* With the set of its own instruction set, pare's quantized logits are llama.cpp's (0 is
 * what it gives), so the bound is the f32 one at every position. */
static void test_golden_q8_0(void) {
    char lp[128];
    double tq;
    golden_path("logits-Q8_0.bin", lp, sizeof lp, &tq);
    golden_quant("models/fortune-llama-gguf/fortune-llama-Q8_0.gguf", lp, "Q8_0", tq);
}

static void test_golden_q4_k_m(void) {
    char lp[128];
    double tq;
    golden_path("logits-Q4_K_M.bin", lp, sizeof lp, &tq);
    golden_quant("models/fortune-llama-gguf/fortune-llama-Q4_K_M.gguf", lp, "Q4_K_M", tq);
}

/* ------------------------------------------------------------------------ architectures */

/* The dense families of ../shared/models/arch/: llama.cpp's f32 logits for the first 128
 * tokens of GPL-3 (one sequence), at every position. That llama.cpp was an AVX2 build (its
 * logits at position 0 are pare's AVX2 ones to 6e-6, its AVX-512 ones only to 8e-3), so the
 * bound TOL_GOLDEN_F32 holds at the AVX2 level (where pare gives them to 1e-5). Other levels
 * follow other orders, whose last bits the models amplify: gemma2's 26 layers of sharp
 * attention, through the f16 KV cache and the f16 GELU table, up to 0.4 (as llama.cpp's own
 * AVX-512 build would differ from its AVX2 one); the others up to 0.01. */
#define TOL_ARCH_OTHER 0.02
#define TOL_ARCH_OTHER_GEMMA2 0.5
static void test_arch_logits(void) {
    static const char *const fam[] = {"starcoder2", "phi2", "gptneox", "command-r", "olmo2", "gemma", "phi3", "gemma2"};
    const bool avx2 = pare_isa_active() == PARE_ISA_AVX2;
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        char mp[128], lp[128];
        snprintf(mp, sizeof mp, "models/arch/%s/%s-f32.gguf", fam[i], fam[i]);
        snprintf(lp, sizeof lp, "models/arch/%s/logits-f32.bin", fam[i]);
        double d = golden_diff(mp, lp, true, NULL);
        if (d < 0) return; /* no ../shared: skipped (said by th_shared) */
        const double tol = avx2 ? TOL_GOLDEN_F32 : strcmp(fam[i], "gemma2") ? TOL_ARCH_OTHER : TOL_ARCH_OTHER_GEMMA2;
        printf("  %s f32 (kernels %s): max |logit - llama.cpp's AVX2 build| = %.3g (tolerance %.g)\n", fam[i],
               pare_isa_name(pare_isa_active()), d, tol);
        CHECK_MSG(d <= tol, "%s: max diff %g", fam[i], d);
    }
}

/* ------------------------------------------------------------------------ golden perplexity */

static int32_t *read_tokens(const char *path, size_t *n) {
    char *buf;
    size_t len;
    pare_err err;
    *n = 0;
    if (pare_read_file(path, 16u << 20, &buf, &len, &err)) return NULL;
    int32_t *t = malloc(len / 2 * sizeof *t + 4);
    for (char *p = buf; *p;) {
        if (*p >= '0' && *p <= '9') t[(*n)++] = (int32_t)strtol(p, &p, 10);
        else p++;
    }
    free(buf);
    return t;
}

/* The first chunks of llama-perplexity's table (the whole table: bench/ppl_table.c, which
 * runs the optimized build). */
static void test_ppl_gpl3_f32(void) {
    char *mp = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    const char *tp = mp ? th_shared("models/fortune-llama-golden/tokens-gpl3.txt") : NULL;
    if (!mp || !tp) {
        free(mp);
        return;
    }
    size_t n;
    int32_t *tok = read_tokens(tp, &n);
    CHECK(n == 19997 && tok[0] == 1);
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    pare_err err;
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (m) CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (llm) {
        pare_ppl_opts o = {.n_ctx = 256, .n_chunks = 3};
        pare_ppl_result r;
        double t0 = pare_now();
        CHECK_OK(pare_perplexity(llm, NULL, tok, n, &o, NULL, NULL, &r, &err), &err);
        double t1 = pare_now();
        CHECK(r.n_chunks_done == 3 && r.n_chunks_total == 78 && r.n_scored == 3 * 127);
        const double want[3] = {101.7839, 57.0031, 43.1411};
        double worst = 0;
        for (int i = 0; i < 3 && i < r.n_chunks_done; i++) {
            double rel = fabs(r.chunk_ppl[i] / want[i] - 1);
            if (rel > worst) worst = rel;
            CHECK_MSG(rel <= TOL_PPL_REL, "[%d] %.4f, llama.cpp %.4f", i + 1, r.chunk_ppl[i], want[i]);
        }
        printf("  [1]%.4f [2]%.4f [3]%.4f (llama.cpp [1]101.7839 [2]57.0031 [3]43.1411; worst relative diff %.2g), "
               "%.2f s\n", r.chunk_ppl[0], r.chunk_ppl[1], r.chunk_ppl[2], worst, t1 - t0);
        pare_ppl_result_free(&r);
    }
    pare_llm_free(llm);
    pare_model_free(m);
    free(tok);
    free(mp);
}

/* ------------------------------------------------------------------------ the repo's fixture */

/* tests/fixtures/tiny-llama: a Hugging Face folder (loaded with GGUF names, q/k rows
 * permuted lazily) and the float64 PyTorch reference made with it by make_fixtures.py:
 * logits of 8 positions and perplexity at ctx 64, computed as llama-perplexity does. */
static double *json_doubles(const cJSON *a, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(a);
    double *v = malloc(*n * sizeof *v + 8);
    size_t i = 0;
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next) v[i++] = cJSON_GetNumberValue(e);
    return v;
}

/* pare_llm_prepare with many passes lays f32 weights out ahead for the products: the logits
 * must not change by one bit (same arithmetic, same order), on a partial group of rows too. */
static void test_packed_weights(void) {
    pare_err err;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    CHECK_OK(pare_model_load_gguf("tests/fixtures/tiny-llama", &m, &err), &err);
    if (m) CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (!llm) goto out;
    enum { T = 29 };
    const int V = pare_llm_n_vocab(llm);
    int32_t tok[T];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    float *a = malloc((size_t)T * V * sizeof *a), *b = malloc((size_t)T * V * sizeof *b);
    CHECK_OK(pare_llm_prepare(llm, T, 1, &err), &err);
    CHECK(llm->layers[0].ffn_up.packed == NULL); /* one pass: not worth a copy */
    CHECK_OK(pare_llm_forward(llm, tok, T, a, &err), &err);
    CHECK_OK(pare_llm_prepare(llm, T, PARE_LLM_PACK_PASSES, &err), &err);
    if (llm_gemm_packed_len(64, 64)) /* builds with the AVX-512 product */
        CHECK(llm->layers[0].ffn_up.packed != NULL && llm->layers[1].wo.packed != NULL && llm->output.packed != NULL);
    CHECK_OK(pare_llm_forward(llm, tok, T, b, &err), &err);
    CHECK_MSG(memcmp(a, b, (size_t)T * V * sizeof *a) == 0, "logits changed when the weights were packed ahead");
    free(a), free(b);
out:
    pare_llm_free(llm);
    pare_model_free(m);
}

static void test_fixture_tiny_llama(void) {
    char *js;
    size_t len;
    pare_err err;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    CHECK_OK(pare_read_file("tests/fixtures/tiny-llama-reference.json", 16u << 20, &js, &len, &err), &err);
    CHECK_OK(pare_model_load_gguf("tests/fixtures/tiny-llama", &m, &err), &err);
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    CHECK(j != NULL);
    if (m) CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (!j || !llm) goto out;
    size_t nt, ne, nr;
    double *lt = json_doubles(cJSON_GetObjectItem(j, "logits_tokens"), &nt);
    double *et = json_doubles(cJSON_GetObjectItem(j, "eval_tokens"), &ne);
    const cJSON *rows = cJSON_GetObjectItem(j, "logits_first8");
    const int V = pare_llm_n_vocab(llm);
    int32_t *tok = malloc((nt + ne) * sizeof *tok);
    for (size_t i = 0; i < nt; i++) tok[i] = (int32_t)lt[i];
    float *lg = malloc(nt * (size_t)V * sizeof *lg);
    for (int rounding = 0; rounding < 2; rounding++) {
        pare_llm_set_ggml_rounding(llm, rounding);
        CHECK_OK(pare_llm_forward(llm, tok, (int)nt, lg, &err), &err);
        double maxd = 0;
        int r = 0;
        for (const cJSON *row = rows ? rows->child : NULL; row; row = row->next, r++) {
            double *ref = json_doubles(row, &nr);
            CHECK(nr == (size_t)V);
            for (size_t v = 0; v < nr && v < (size_t)V; v++) maxd = fmax(maxd, fabs(lg[(size_t)r * V + v] - ref[v]));
            free(ref);
        }
        printf("  tiny-llama HF folder%s: max |logit - float64 reference| = %.3g over %d positions\n",
               rounding ? " (ggml rounding)" : "", maxd, r);
        CHECK(r == 8);
        CHECK_MSG(maxd <= (rounding ? TOL_F64_ROUNDED : TOL_F64), "%g", maxd);
    }
    for (size_t i = 0; i < ne; i++) tok[i] = (int32_t)et[i];
    pare_llm_set_ggml_rounding(llm, false);
    pare_ppl_opts o = {.n_ctx = 64, .n_chunks = -1};
    pare_ppl_result res;
    CHECK_OK(pare_perplexity(llm, NULL, tok, ne, &o, NULL, NULL, &res, &err), &err);
    double want = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "ppl_ctx64"));
    printf("  tiny-llama PPL ctx 64: %.6f, reference %.6f (relative diff %.2g), %lld scored\n", res.ppl, want,
           fabs(res.ppl / want - 1), (long long)res.n_scored);
    CHECK(fabs(res.ppl / want - 1) < 1e-5);
    CHECK(res.n_scored == (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "ppl_ctx64_scored")));
    pare_ppl_result_free(&res);
    free(lt), free(et), free(tok), free(lg);
out:
    cJSON_Delete(j);
    free(js);
    pare_llm_free(llm);
    pare_model_free(m);
}

/* ------------------------------------------------------------------------ synthetic models */

typedef struct {
    const char *arch;
    int D, L, H, KV, F, V, n_rot, n_pos;
    bool tied, rope_freqs;
    float linear_scale; /* 0: none */
    pare_type wtype;
} syn_cfg;

static uint64_t rng_state;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / (double)(1ull << 52) - 1.0;
}

static void syn_add(pare_model *m, const char *name, pare_type type, int64_t ne0, int64_t ne1, double scale,
                    double offset) {
    pare_err err;
    pare_tensor t = {0};
    int64_t ne[2] = {ne0, ne1};
    if (ne0 % 32) type = PARE_TYPE_F32; /* 1-D tensors and odd rows stay f32, as llama-quantize */
    if (ne1 == 0) type = PARE_TYPE_F32;
    CHECK_OK(pare_tensor_init(&t, name, type, ne1 ? 2 : 1, ne, &err), &err);
    int64_t n = ne0 * (ne1 ? ne1 : 1);
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)(offset + scale * urand());
    void *buf = malloc(t.n_bytes);
    if (type == PARE_TYPE_Q8_0) CHECK_OK(pare_quantize(type, f, buf, ne1, ne0, NULL, 1, &err), &err);
    else CHECK(pare_f32_to_plain(type, f, buf, n));
    free(f);
    pare_tensor_set_owned(&t, buf, t.n_bytes);
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

static pare_model *syn_model(const syn_cfg *c, uint64_t seed) {
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    pare_err err;
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "synthetic.gguf");
    m->gguf_names = true;
    pare_meta *me = &m->meta;
    char k[128];
    const bool gpt2 = strcmp(c->arch, "gpt2") == 0, qwen2 = strcmp(c->arch, "qwen2") == 0;
    CHECK_OK(pare_meta_set_str(me, "general.architecture", c->arch, strlen(c->arch), &err), &err);
#define KEYU(s, v) (snprintf(k, sizeof k, "%s.%s", c->arch, s), pare_meta_set_uint(me, k, PARE_META_U32, (v), &err))
#define KEYF(s, v) (snprintf(k, sizeof k, "%s.%s", c->arch, s), pare_meta_set_float(me, k, PARE_META_F32, (v), &err))
    CHECK_OK(KEYU("block_count", c->L), &err);
    CHECK_OK(KEYU("embedding_length", c->D), &err);
    CHECK_OK(KEYU("feed_forward_length", c->F), &err);
    CHECK_OK(KEYU("attention.head_count", c->H), &err);
    CHECK_OK(KEYU("context_length", 128), &err);
    if (!gpt2) {
        CHECK_OK(KEYU("attention.head_count_kv", c->KV), &err);
        CHECK_OK(KEYF("attention.layer_norm_rms_epsilon", 1e-5), &err);
        CHECK_OK(KEYF("rope.freq_base", 10000.0), &err);
        CHECK_OK(KEYU("rope.dimension_count", c->n_rot), &err);
        if (c->linear_scale > 0) {
            snprintf(k, sizeof k, "%s.rope.scaling.type", c->arch);
            CHECK_OK(pare_meta_set_str(me, k, "linear", 6, &err), &err);
            CHECK_OK(KEYF("rope.scaling.factor", c->linear_scale), &err);
        }
    } else {
        CHECK_OK(KEYF("attention.layer_norm_epsilon", 1e-5), &err);
    }
#undef KEYU
#undef KEYF
    const int D = c->D, hd = D / c->H, hkv = (gpt2 ? c->H : c->KV) * hd;
    const pare_type wt = c->wtype;
    syn_add(m, "token_embd.weight", wt, D, c->V, 0.5, 0);
    if (gpt2) syn_add(m, "position_embd.weight", PARE_TYPE_F32, D, c->n_pos, 0.2, 0);
    syn_add(m, "output_norm.weight", PARE_TYPE_F32, D, 0, 0.1, 1);
    if (gpt2) syn_add(m, "output_norm.bias", PARE_TYPE_F32, D, 0, 0.1, 0);
    if (!c->tied) syn_add(m, "output.weight", wt, D, c->V, 0.2, 0);
    if (c->rope_freqs) syn_add(m, "rope_freqs.weight", PARE_TYPE_F32, c->n_rot / 2, 0, 0.4, 1.5);
    for (int l = 0; l < c->L; l++) {
        char n[64];
        const double ws = 0.6 / sqrt((double)D);
#define ADD(s, ...) (snprintf(n, sizeof n, "blk.%d.%s", l, s), syn_add(m, n, __VA_ARGS__))
        ADD("attn_norm.weight", PARE_TYPE_F32, D, 0, 0.1, 1);
        ADD("ffn_norm.weight", PARE_TYPE_F32, D, 0, 0.1, 1);
        if (gpt2) {
            ADD("attn_norm.bias", PARE_TYPE_F32, D, 0, 0.1, 0);
            ADD("ffn_norm.bias", PARE_TYPE_F32, D, 0, 0.1, 0);
            ADD("attn_qkv.weight", wt, D, D + 2 * hkv, ws * 2, 0);
            ADD("attn_qkv.bias", PARE_TYPE_F32, D + 2 * hkv, 0, 0.1, 0);
            ADD("attn_output.bias", PARE_TYPE_F32, D, 0, 0.1, 0);
            ADD("ffn_up.bias", PARE_TYPE_F32, c->F, 0, 0.1, 0);
            ADD("ffn_down.bias", PARE_TYPE_F32, D, 0, 0.1, 0);
        } else {
            ADD("attn_q.weight", wt, D, c->H * hd, ws * 2, 0);
            ADD("attn_k.weight", wt, D, hkv, ws * 2, 0);
            ADD("attn_v.weight", wt, D, hkv, ws, 0);
            ADD("ffn_gate.weight", wt, D, c->F, ws, 0);
        }
        if (qwen2) {
            ADD("attn_q.bias", PARE_TYPE_F32, c->H * hd, 0, 0.3, 0);
            ADD("attn_k.bias", PARE_TYPE_F32, hkv, 0, 0.3, 0);
            ADD("attn_v.bias", PARE_TYPE_F32, hkv, 0, 0.1, 0);
        }
        ADD("attn_output.weight", wt, c->H * hd, D, ws, 0);
        ADD("ffn_up.weight", wt, D, c->F, ws, 0);
        ADD("ffn_down.weight", wt, c->F, D, 0.6 / sqrt((double)c->F), 0);
#undef ADD
    }
    return m;
}

/* ---- the naive reference: one token at a time, in double ---- */

static double *ref_w(const pare_model *m, const char *fmt, int l) {
    char n[64];
    snprintf(n, sizeof n, fmt, l);
    const pare_tensor *t = pare_model_find(m, n);
    if (!t) return NULL;
    int64_t ne = pare_tensor_nelements(t);
    float *f = malloc((size_t)ne * sizeof *f);
    pare_err err;
    CHECK_OK(pare_tensor_to_f32(t, f, 1, &err), &err);
    double *d = malloc((size_t)ne * sizeof *d);
    for (int64_t i = 0; i < ne; i++) d[i] = f[i];
    free(f);
    return d;
}

/* y[n_out] = W x (+ b), W stored [n_out][n_in] */
static void ref_mv(const double *W, const double *b, const double *x, int n_in, int n_out, double *y) {
    for (int o = 0; o < n_out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < n_in; i++) s += W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void ref_norm(bool layer, const double *x, const double *w, const double *b, int n, double *y) {
    double mean = 0, var = 0;
    if (layer) {
        for (int i = 0; i < n; i++) mean += x[i] / n;
    }
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean) / n;
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) / sqrt(var + 1e-5) * w[i] + (b ? b[i] : 0);
}

/* Rotation of one head: adjacent pairs (llama) or halves (NEOX), n_rot first dims only. */
static void ref_rope(double *v, int pos, int n_rot, bool neox, const double *ff, double scale) {
    for (int i = 0; i < n_rot / 2; i++) {
        double th = pos / scale * pow(10000.0, -2.0 * i / n_rot) / (ff ? ff[i] : 1);
        int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

static void ref_forward(const pare_model *m, const syn_cfg *c, const int32_t *tok, int T, double *logits) {
    const bool gpt2 = strcmp(c->arch, "gpt2") == 0, neox = strcmp(c->arch, "qwen2") == 0;
    const int D = c->D, H = c->H, KV = gpt2 ? c->H : c->KV, hd = D / H, F = c->F, V = c->V;
    double *x = calloc((size_t)T * D, 8), *h = malloc(D * 8), *q = malloc((size_t)T * H * hd * 8),
           *k = malloc((size_t)T * KV * hd * 8), *v = malloc((size_t)T * KV * hd * 8), *o = malloc(H * hd * 8),
           *f1 = malloc(F * 8), *f2 = malloc(F * 8), *y = malloc((D + 2 * KV * hd) * 8), *p = malloc(T * 8);
    double *emb = ref_w(m, "token_embd.weight", 0), *pos = ref_w(m, "position_embd.weight", 0);
    double *ff = ref_w(m, "rope_freqs.weight", 0);
    const double scale = c->linear_scale > 0 ? c->linear_scale : 1;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) x[t * D + i] = emb[(size_t)tok[t] * D + i] + (pos ? pos[(size_t)t * D + i] : 0);
    for (int l = 0; l < c->L; l++) {
        double *an = ref_w(m, "blk.%d.attn_norm.weight", l), *anb = ref_w(m, "blk.%d.attn_norm.bias", l);
        double *fn = ref_w(m, "blk.%d.ffn_norm.weight", l), *fnb = ref_w(m, "blk.%d.ffn_norm.bias", l);
        double *wq = ref_w(m, "blk.%d.attn_q.weight", l), *wk = ref_w(m, "blk.%d.attn_k.weight", l);
        double *wv = ref_w(m, "blk.%d.attn_v.weight", l), *wqkv = ref_w(m, "blk.%d.attn_qkv.weight", l);
        double *bq = ref_w(m, "blk.%d.attn_q.bias", l), *bk = ref_w(m, "blk.%d.attn_k.bias", l);
        double *bv = ref_w(m, "blk.%d.attn_v.bias", l), *bqkv = ref_w(m, "blk.%d.attn_qkv.bias", l);
        double *wo = ref_w(m, "blk.%d.attn_output.weight", l), *bo = ref_w(m, "blk.%d.attn_output.bias", l);
        double *wg = ref_w(m, "blk.%d.ffn_gate.weight", l), *wu = ref_w(m, "blk.%d.ffn_up.weight", l);
        double *wd = ref_w(m, "blk.%d.ffn_down.weight", l), *bu = ref_w(m, "blk.%d.ffn_up.bias", l);
        double *bd = ref_w(m, "blk.%d.ffn_down.bias", l);
        for (int t = 0; t < T; t++) {
            ref_norm(gpt2, x + t * D, an, anb, D, h);
            double *qt = q + (size_t)t * H * hd, *kt = k + (size_t)t * KV * hd, *vt = v + (size_t)t * KV * hd;
            if (gpt2) {
                ref_mv(wqkv, bqkv, h, D, D + 2 * KV * hd, y);
                memcpy(qt, y, D * 8), memcpy(kt, y + D, KV * hd * 8), memcpy(vt, y + D + KV * hd, KV * hd * 8);
            } else {
                ref_mv(wq, bq, h, D, H * hd, qt), ref_mv(wk, bk, h, D, KV * hd, kt), ref_mv(wv, bv, h, D, KV * hd, vt);
                for (int i = 0; i < H; i++) ref_rope(qt + i * hd, t, c->n_rot, neox, ff, scale);
                for (int i = 0; i < KV; i++) ref_rope(kt + i * hd, t, c->n_rot, neox, ff, scale);
            }
        }
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < H; hh++) {
                const int g = hh / (H / KV);
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < hd; i++) s += q[((size_t)t * H + hh) * hd + i] * k[((size_t)j * KV + g) * hd + i];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += p[j] = exp(p[j] - mx);
                for (int i = 0; i < hd; i++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++) s += p[j] / sum * v[((size_t)j * KV + g) * hd + i];
                    o[hh * hd + i] = s;
                }
            }
            ref_mv(wo, bo, o, H * hd, D, h);
            for (int i = 0; i < D; i++) x[t * D + i] += h[i];
        }
        for (int t = 0; t < T; t++) {
            ref_norm(gpt2, x + t * D, fn, fnb, D, h);
            ref_mv(wu, bu, h, D, F, f2);
            if (wg) {
                ref_mv(wg, NULL, h, D, F, f1);
                for (int i = 0; i < F; i++) f1[i] = f1[i] / (1 + exp(-f1[i])) * f2[i];
            } else {
                for (int i = 0; i < F; i++) {
                    double a = f2[i];
                    f1[i] = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
                }
            }
            ref_mv(wd, bd, f1, F, D, h);
            for (int i = 0; i < D; i++) x[t * D + i] += h[i];
        }
        double *all[] = {an, anb, fn, fnb, wq, wk, wv, wqkv, bq, bk, bv, bqkv, wo, bo, wg, wu, wd, bu, bd};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    }
    double *on = ref_w(m, "output_norm.weight", 0), *onb = ref_w(m, "output_norm.bias", 0);
    double *out = ref_w(m, "output.weight", 0);
    for (int t = 0; t < T; t++) {
        ref_norm(gpt2, x + t * D, on, onb, D, h);
        ref_mv(out ? out : emb, NULL, h, D, V, logits + (size_t)t * V);
    }
    double *all[] = {x, h, q, k, v, o, f1, f2, y, p, emb, pos, ff, on, onb, out};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static const syn_cfg CFG_LLAMA = {"llama", 64, 2, 4, 2, 96, 50, 16, 0, false, true, 2.0f, PARE_TYPE_F32};
static const syn_cfg CFG_QWEN2 = {"qwen2", 64, 2, 4, 1, 80, 40, 8, 0, true, false, 0, PARE_TYPE_F32};
static const syn_cfg CFG_GPT2 = {"gpt2", 48, 2, 3, 3, 192, 30, 0, 64, true, false, 0, PARE_TYPE_F32};

/* pare's logits vs the reference on T random tokens; returns the max abs diff. */
static double syn_compare(const syn_cfg *c, int T, bool rounding, uint64_t seed) {
    pare_model *m = syn_model(c, seed);
    pare_llm *llm = NULL;
    pare_err err;
    double maxd = INFINITY;
    CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (llm) {
        pare_llm_set_ggml_rounding(llm, rounding);
        int32_t *tok = malloc(T * sizeof *tok);
        for (int t = 0; t < T; t++) tok[t] = (int32_t)((urand() + 1) / 2 * c->V) % c->V;
        float *lg = malloc((size_t)T * c->V * sizeof *lg);
        double *ref = malloc((size_t)T * c->V * sizeof *ref);
        CHECK_OK(pare_llm_forward(llm, tok, T, lg, &err), &err);
        ref_forward(m, c, tok, T, ref);
        maxd = 0;
        double amax = 0;
        for (size_t i = 0; i < (size_t)T * c->V; i++) {
            double d = fabs(lg[i] - ref[i]);
            if (!(d <= maxd)) maxd = d;
            if (fabs(ref[i]) > amax) amax = fabs(ref[i]);
        }
        printf("  %s %s%s T=%d: max |pare - reference| = %.3g (logits up to %.2f: relative %.2g)\n", c->arch,
               pare_type_name(c->wtype), rounding ? " (ggml rounding)" : "", T, maxd, amax, maxd / amax);
        /* the tail alone (llama-perplexity's second half) gives the same rows */
        const int first = T / 2;
        float *tail = malloc((size_t)(T - first) * c->V * sizeof *tail);
        CHECK_OK(pare_llm_forward_tail(llm, tok, T, first, tail, &err), &err);
        double td = 0;
        for (size_t i = 0; i < (size_t)(T - first) * c->V; i++) td = fmax(td, fabs(tail[i] - lg[(size_t)first * c->V + i]));
        /* with 8-bit activations, f32 differences of summation order can flip a rounding */
        CHECK_MSG(td <= (rounding ? TOL_TAIL_ROUNDED * amax : TOL_TAIL), "tail rows differ by %g", td);
        free(tail);
        if (rounding) maxd /= amax;
        free(tok), free(lg), free(ref);
    }
    pare_llm_free(llm);
    pare_model_free(m);
    return maxd;
}

static void test_synthetic_llama(void) {
    /* 300 tokens: several attention blocks of 128 rows */
    double d = syn_compare(&CFG_LLAMA, 300, false, 1);
    CHECK_MSG(d <= TOL_REF_F32, "llama: %g", d);
    d = syn_compare(&CFG_LLAMA, 300, true, 1);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "llama rounded: %g", d);
}

static void test_synthetic_qwen2(void) {
    double d = syn_compare(&CFG_QWEN2, 70, false, 2);
    CHECK_MSG(d <= TOL_REF_F32, "qwen2: %g", d);
}

static void test_synthetic_gpt2(void) {
    double d = syn_compare(&CFG_GPT2, 64, false, 3);
    CHECK_MSG(d <= TOL_REF_F32, "gpt2: %g", d);
    d = syn_compare(&CFG_GPT2, 64, true, 3);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "gpt2 rounded: %g", d);
}

static void test_synthetic_quantized(void) {
    syn_cfg c = CFG_LLAMA;
    c.wtype = PARE_TYPE_F16;
    double d = syn_compare(&c, 40, true, 4);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "f16: %g", d);
    c.wtype = PARE_TYPE_BF16;
    d = syn_compare(&c, 40, true, 4);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "bf16: %g", d);
    c.wtype = PARE_TYPE_Q8_0;
    d = syn_compare(&c, 40, true, 4);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "q8_0: %g", d);
    c = CFG_QWEN2;
    c.wtype = PARE_TYPE_Q8_0;
    d = syn_compare(&c, 40, true, 5);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "qwen2 q8_0: %g", d);
    /* heads of 128 (past the 64 that AVX-512's kq16 takes), through the exact attention */
    c = CFG_LLAMA;
    c.D = 256, c.H = 2, c.KV = 1, c.n_rot = 128, c.wtype = PARE_TYPE_Q8_0;
    d = syn_compare(&c, 40, true, 6);
    CHECK_MSG(d <= TOL_REF_ROUNDED, "q8_0, heads of 128: %g", d);
}

/* ------------------------------------------------------------------------ hook, errors */

typedef struct {
    int calls, bad, out_rows;
    char last[64];
} hook_log;

static void hook(void *user, const char *name, const float *x, int n_tokens, int n_in) {
    hook_log *h = user;
    h->calls++;
    snprintf(h->last, sizeof h->last, "%s", name);
    int want = strstr(name, "ffn_down") ? 80 : 64;
    /* every layer sees all 5 rows; the output layer only the rows whose logits are wanted */
    int rows = strcmp(name, "output.weight") == 0 ? h->out_rows : 5;
    if (n_tokens != rows || n_in != want || !isfinite(x[n_tokens * n_in - 1])) h->bad++;
}

static void test_act_hook(void) {
    pare_model *m = syn_model(&CFG_QWEN2, 7);
    pare_llm *llm = NULL;
    pare_err err;
    CHECK_OK(pare_llm_new(m, 1, &llm, &err), &err);
    if (llm) {
        hook_log h = {.out_rows = 5};
        pare_llm_set_act_hook(llm, hook, &h);
        int32_t tok[5] = {1, 2, 3, 4, 5};
        float lg[5 * 40];
        CHECK_OK(pare_llm_forward(llm, tok, 5, lg, &err), &err);
        CHECK_MSG(h.calls == 2 * 7 + 1, "%d calls", h.calls);
        CHECK(h.bad == 0);
        CHECK_MSG(strcmp(h.last, "output.weight") == 0, "last %s", h.last);
        /* with a hook, forward_tail still shows it every row of the last layer */
        float tail[40];
        h.out_rows = 1;
        CHECK_OK(pare_llm_forward_tail(llm, tok, 5, 4, tail, &err), &err);
        CHECK_MSG(h.calls == 30 && h.bad == 0, "%d calls, %d with fewer rows", h.calls, h.bad);
        CHECK(fabs(tail[7] - lg[4 * 40 + 7]) < 1e-5);
        pare_llm_set_act_hook(llm, NULL, NULL);
        CHECK_OK(pare_llm_forward(llm, tok, 5, lg, &err), &err);
        CHECK(h.calls == 30);
    }
    pare_llm_free(llm);
    pare_model_free(m);
}

/* ---- per-layer head counts ---- */

/* A copy of rows [r0, r0 + nr) of a 2-D f32 tensor, each row cut to its first n0 values. */
static void add_slice(pare_model *dst, const pare_tensor *t, int64_t n0, int64_t r0, int64_t nr) {
    pare_err err;
    float *f = malloc((size_t)pare_tensor_nelements(t) * sizeof *f);
    CHECK_OK(pare_tensor_to_f32(t, f, 1, &err), &err);
    pare_tensor c = {0};
    int64_t ne[2] = {n0, nr};
    CHECK_OK(pare_tensor_init(&c, t->name, PARE_TYPE_F32, t->n_dims, ne, &err), &err);
    float *b = malloc(c.n_bytes);
    for (int64_t r = 0; r < nr; r++) memcpy(b + r * n0, f + (r0 + r) * t->ne[0], (size_t)n0 * sizeof *b);
    free(f);
    pare_tensor_set_owned(&c, b, c.n_bytes);
    CHECK_OK(pare_model_add_tensor(dst, &c, &err), &err);
}

/* {arch}.attention.head_count / head_count_kv as per-layer arrays (what structured pruning
 * writes): a llama model whose layer 1 keeps heads 0-1 and kv head 0 of 4 and 2, written to a
 * GGUF and read back, gives the logits of the original with the attention output columns of
 * the dropped heads zeroed. */
static void test_per_layer_heads(void) {
    pare_err err;
    pare_model *orig = syn_model(&CFG_LLAMA, 21);
    pare_model *pr = pare_model_new(PARE_FORMAT_GGUF, "pruned.gguf");
    pr->gguf_names = true;
    CHECK_OK(pare_meta_copy(&pr->meta, &orig->meta, &err), &err);
    const uint32_t nh[2] = {4, 2}, nkv[2] = {2, 1};
    CHECK_OK(pare_meta_set_arr(&pr->meta, "llama.attention.head_count", PARE_META_U32, nh, 2, &err), &err);
    CHECK_OK(pare_meta_set_arr(&pr->meta, "llama.attention.head_count_kv", PARE_META_U32, nkv, 2, &err), &err);
    const int hd = 16;
    for (size_t i = 0; i < orig->n_tensors; i++) {
        pare_tensor *t = &orig->tensors[i];
        if (!strcmp(t->name, "blk.1.attn_q.weight")) add_slice(pr, t, t->ne[0], 0, 2 * hd);
        else if (!strcmp(t->name, "blk.1.attn_k.weight") || !strcmp(t->name, "blk.1.attn_v.weight"))
            add_slice(pr, t, t->ne[0], 0, hd);
        else if (!strcmp(t->name, "blk.1.attn_output.weight")) {
            add_slice(pr, t, 2 * hd, 0, t->ne[1]);
            float *w = (float *)t->data; /* the original's dropped heads contribute nothing */
            for (int64_t r = 0; r < t->ne[1]; r++)
                for (int64_t c = 2 * hd; c < t->ne[0]; c++) w[r * t->ne[0] + c] = 0;
        } else
            add_slice(pr, t, t->ne[0], 0, t->n_dims > 1 ? t->ne[1] : 1);
    }
    char dir[] = "/tmp/pare-eval-test-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/pruned.gguf", dir);
    CHECK_OK(pare_gguf_save(pr, path, false, &err), &err);
    pare_model *back = NULL;
    CHECK_OK(pare_gguf_load(path, &back, &err), &err);
    pare_llm *a = NULL, *b = NULL;
    CHECK_OK(pare_llm_new(orig, 1, &a, &err), &err);
    if (back) CHECK_OK(pare_llm_new(back, 1, &b, &err), &err);
    if (a && b) {
        enum { T = 24, V = 50 };
        int32_t tok[T];
        for (int t = 0; t < T; t++) tok[t] = (t * 7 + 3) % V;
        float la[T * V], lb[T * V];
        CHECK_OK(pare_llm_forward(a, tok, T, la, &err), &err);
        CHECK_OK(pare_llm_forward(b, tok, T, lb, &err), &err);
        double md = 0, mx = 0;
        for (int i = 0; i < T * V; i++) {
            md = fmax(md, fabs((double)la[i] - lb[i]));
            mx = fmax(mx, fabs((double)la[i]));
        }
        printf("  per-layer heads (4+2, 2+1): max |pruned - zeroed original| = %.3g (logits up to %.2f)\n", md, mx);
        CHECK_MSG(md <= 1e-5 * mx, "max diff %g", md);
    }
    /* an array of the wrong length */
    const uint32_t bad[3] = {4, 2, 2};
    pare_llm *c = NULL;
    if (back) {
        CHECK_OK(pare_meta_set_arr(&back->meta, "llama.attention.head_count", PARE_META_U32, bad, 3, &err), &err);
        CHECK(pare_llm_new(back, 1, &c, &err) == PARE_EINPUT && strstr(err.msg, "3 values for 2 layers"));
        fprintf(stderr, "  (expected) %s\n", err.msg);
    }
    pare_llm_free(a);
    pare_llm_free(b);
    pare_model_free(back);
    pare_model_free(pr);
    pare_model_free(orig);
    remove(path);
    rmdir(dir);
}

/* A GGUF of a kind pare does not evaluate (a vision projector) is refused in one line. */
static void test_unknown_arch(void) {
    pare_err err;
    pare_llm *llm = NULL;
    pare_model *m = syn_model(&CFG_LLAMA, 9);
    CHECK_OK(pare_meta_set_str(&m->meta, "general.architecture", "clip", 4, &err), &err);
    CHECK(pare_llm_new(m, 1, &llm, &err) == PARE_EUNSUPPORTED && !llm && strstr(err.msg, "cannot evaluate") &&
          strstr(err.msg, "'clip'") && !strchr(err.msg, '\n'));
    fprintf(stderr, "  (expected) %s\n", err.msg);
    pare_model_free(m);
}

static void test_errors(void) {
    pare_err err;
    pare_llm *llm = NULL;
    pare_model *m = syn_model(&CFG_LLAMA, 8);
    CHECK_OK(pare_meta_set_str(&m->meta, "general.architecture", "mamba", 5, &err), &err);
    CHECK(pare_llm_new(m, 1, &llm, &err) == PARE_EUNSUPPORTED && !llm && strstr(err.msg, "'mamba'"));
    CHECK_OK(pare_meta_set_str(&m->meta, "general.architecture", "llama", 5, &err), &err);
    pare_tensor *t = pare_model_find(m, "blk.1.ffn_down.weight");
    free(t->name);
    t->name = strdup("blk.1.ffn_dowm.weight");
    CHECK(pare_llm_new(m, 1, &llm, &err) == PARE_EINPUT && strstr(err.msg, "blk.1.ffn_down.weight"));
    fprintf(stderr, "  (expected) %s\n", err.msg);
    strcpy(t->name, "blk.1.ffn_down.weight");
    t->ne[0] = 48, t->ne[1] = 128; /* same bytes, wrong shape */
    CHECK(pare_llm_new(m, 1, &llm, &err) == PARE_EINPUT && strstr(err.msg, "shape"));
    fprintf(stderr, "  (expected) %s\n", err.msg);
    t->ne[0] = 96, t->ne[1] = 64;
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count_kv", PARE_META_U32, 3, &err), &err);
    CHECK(pare_llm_new(m, 1, &llm, &err) == PARE_EINPUT);
    fprintf(stderr, "  (expected) %s\n", err.msg);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count_kv", PARE_META_U32, 2, &err), &err);
    CHECK_OK(pare_llm_new(m, 1, &llm, &err), &err);
    if (llm) {
        int32_t tok[3] = {1, 50, 2};
        float lg[3 * 50];
        CHECK(pare_llm_forward(llm, tok, 3, lg, &err) == PARE_EINPUT && strstr(err.msg, "position 1"));
        tok[1] = -1;
        CHECK(pare_llm_forward(llm, tok, 3, lg, &err) == PARE_EINPUT);
        CHECK(pare_llm_forward(llm, tok, 0, lg, &err) == PARE_EUSAGE);
        pare_ppl_result r;
        pare_ppl_opts o = {.n_ctx = 16, .n_chunks = -1};
        int32_t few[31] = {0};
        CHECK(pare_perplexity(llm, NULL, few, 31, &o, NULL, NULL, &r, &err) == PARE_EUSAGE);
        fprintf(stderr, "  (expected) %s\n", err.msg);
        o.first_chunk = 2;
        CHECK(pare_perplexity(llm, NULL, few, 32, &o, NULL, NULL, &r, &err) == PARE_EUSAGE);
    }
    pare_llm_free(llm);
    pare_model_free(m);
}

/* ------------------------------------------------------------------------ perplexity */

/* Chunks evaluated together (pare_perplexity batches up to 2048 tokens) give each chunk the
 * same value as evaluating it alone, for every architecture (gpt2's learned positions, qwen2's
 * biases) and for the integer products; ctx 20 so that the batch also cuts the last layer's
 * rows at an odd place. */
static void test_ppl_batched_same(void) {
    syn_cfg q8 = CFG_LLAMA;
    q8.wtype = PARE_TYPE_Q8_0;
    const syn_cfg *cfgs[] = {&CFG_LLAMA, &CFG_QWEN2, &CFG_GPT2, &q8};
    for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ci++) {
        pare_model *m = syn_model(cfgs[ci], 11);
        pare_llm *llm = NULL;
        pare_err err;
        CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
        if (!llm) {
            pare_model_free(m);
            continue;
        }
        enum { N = 130, CTX = 20 };
        const int V = pare_llm_n_vocab(llm);
        int32_t tok[N];
        for (int i = 0; i < N; i++) tok[i] = (int32_t)((urand() + 1) / 2 * V) % V;
        pare_ppl_opts o = {.n_ctx = CTX, .n_chunks = -1};
        pare_ppl_result all, one;
        CHECK_OK(pare_perplexity(llm, NULL, tok, N, &o, NULL, NULL, &all, &err), &err);
        int bad = 0;
        for (int c = 0; c < N / CTX; c++) {
            pare_ppl_opts oc = {.n_ctx = CTX, .first_chunk = c, .n_chunks = 1};
            CHECK_OK(pare_perplexity(llm, NULL, tok, N, &oc, NULL, NULL, &one, &err), &err);
            bad += memcmp(&one.chunk_nll[0], &all.chunk_nll[c], sizeof(double)) != 0;
            pare_ppl_result_free(&one);
        }
        CHECK_MSG(all.n_chunks_done == N / CTX && bad == 0, "%s (%s): %d of %d chunks differ when batched",
                  cfgs[ci]->arch, pare_type_name(cfgs[ci]->wtype), bad, N / CTX);
        pare_ppl_result_free(&all);
        pare_llm_free(llm);
        pare_model_free(m);
    }
}

static void test_ppl_synthetic(void) {
    pare_model *m = syn_model(&CFG_LLAMA, 9), *m16 = NULL;
    syn_cfg c16 = CFG_LLAMA;
    c16.wtype = PARE_TYPE_Q8_0;
    m16 = syn_model(&c16, 9); /* the same values, stored in Q8_0 */
    pare_llm *llm = NULL, *l16 = NULL;
    pare_err err;
    CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    CHECK_OK(pare_llm_new(m16, 2, &l16, &err), &err);
    if (!llm || !l16) goto out;
    enum { N = 100, CTX = 16, V = 50 };
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((urand() + 1) / 2 * V) % V;
    /* expected: forward each chunk with BOS, score rows 8..14 against the next token */
    double nll = 0, nll2 = 0, running[6];
    int count = 0;
    float lg[CTX * V];
    for (int c = 0; c < N / CTX; c++) {
        int32_t ch[CTX];
        memcpy(ch, tok + c * CTX, sizeof ch);
        ch[0] = pare_llm_bos(llm);
        CHECK_OK(pare_llm_forward(llm, ch, CTX, lg, &err), &err);
        for (int i = CTX / 2; i < CTX - 1; i++) {
            double mx = -1e300, s = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, lg[i * V + v]);
            for (int v = 0; v < V; v++) s += exp(lg[i * V + v] - mx);
            double x = -(lg[i * V + ch[i + 1]] - mx - log(s));
            nll += x, nll2 += x * x, count++;
        }
        running[c] = exp(nll / count);
    }
    double mean = nll / count, ppl = exp(mean), e = ppl * sqrt((nll2 / count - mean * mean) / (count - 1));
    CHECK(pare_llm_add_bos(llm) && pare_llm_bos(llm) == 1);
    pare_ppl_opts o = {.n_ctx = CTX, .n_chunks = -1};
    pare_ppl_result r, a, b, mg, k;
    CHECK_OK(pare_perplexity(llm, NULL, tok, N, &o, NULL, NULL, &r, &err), &err);
    CHECK(r.n_chunks_done == 6 && r.n_scored == 6 * 7 && r.n_chunks_total == 6 && !r.has_kld);
    double worst = fabs(r.ppl / ppl - 1);
    for (int c = 0; c < 6; c++) worst = fmax(worst, fabs(r.chunk_ppl[c] / running[c] - 1));
    printf("  PPL %.6f (naive %.6f) +/- %.6f (%.6f), worst relative diff %.2g\n", r.ppl, ppl, r.ppl_err, e, worst);
    CHECK_MSG(worst < 1e-5, "%g", worst);
    CHECK(fabs(r.ppl_err / e - 1) < 1e-4);
    /* partial runs merged give the whole run */
    o.n_chunks = 2;
    CHECK_OK(pare_perplexity(llm, NULL, tok, N, &o, NULL, NULL, &a, &err), &err);
    o.first_chunk = 2, o.n_chunks = -1;
    CHECK_OK(pare_perplexity(llm, NULL, tok, N, &o, NULL, NULL, &b, &err), &err);
    pare_ppl_result parts[2] = {b, a}; /* out of order on purpose */
    CHECK_OK(pare_ppl_merge(parts, 2, &mg, &err), &err);
    CHECK(mg.n_chunks_done == 6 && mg.first_chunk == 0 && fabs(mg.ppl / r.ppl - 1) < 1e-12);
    CHECK(fabs(mg.chunk_ppl[5] / r.chunk_ppl[5] - 1) < 1e-12 && fabs(mg.chunk_ppl[1] / r.chunk_ppl[1] - 1) < 1e-12);
    pare_ppl_result same[2] = {a, a};
    pare_ppl_result bad;
    CHECK(pare_ppl_merge(same, 2, &bad, &err) == PARE_EUSAGE && strstr(err.msg, "overlap"));
    pare_ppl_result_free(&mg);
    /* KLD of the model against itself is ~0 with the same top token everywhere */
    o.first_chunk = 0;
    CHECK_OK(pare_perplexity(llm, llm, tok, N, &o, NULL, NULL, &k, &err), &err);
    printf("  self KLD %.3g, same top %.1f%%, PPL(base) %.6f\n", k.kld_mean, 100 * k.same_top, k.ppl_base);
    CHECK(k.has_kld && fabs(k.kld_mean) < 1e-6 && k.same_top == 1.0 && fabs(k.ppl_base / r.ppl - 1) < 1e-3);
    pare_ppl_result_free(&k);
    /* Q8_0 weights against the f32 base */
    CHECK_OK(pare_perplexity(l16, llm, tok, N, &o, NULL, NULL, &k, &err), &err);
    printf("  Q8_0 vs f32: KLD %.3g +/- %.2g (max %.3g, median %.3g), dp rms %.3g%%, same top %.1f%%, "
           "PPL ratio %.6f\n", k.kld_mean, k.kld_err, k.kld_max, k.kld_median, 100 * k.dp_rms, 100 * k.same_top,
           k.ppl_ratio);
    CHECK(k.kld_mean > 0 && k.kld_mean < 1e-2 && k.kld_max >= k.kld_median && k.kld_median >= k.kld_min);
    CHECK(k.dp_max >= k.dp_p99 && k.dp_p99 >= k.dp_median && k.dp_median >= k.dp_min);
    CHECK(fabs(k.ppl_base / r.ppl - 1) < 1e-3 && fabs(k.ppl_ratio - k.ppl / k.ppl_base) < 1e-9);
    pare_ppl_result_free(&k);
    pare_ppl_result_free(&r), pare_ppl_result_free(&a), pare_ppl_result_free(&b);
out:
    pare_llm_free(llm);
    pare_llm_free(l16);
    pare_model_free(m);
    pare_model_free(m16);
}

/* KL divergence between two unrelated models against a naive computation with exact base
 * probabilities (llama.cpp, and pare, keep them as 16-bit log-probabilities: small error). */
static void test_kld_naive(void) {
    pare_model *mb = syn_model(&CFG_LLAMA, 11), *mm = syn_model(&CFG_LLAMA, 12);
    pare_llm *base = NULL, *llm = NULL;
    pare_err err;
    CHECK_OK(pare_llm_new(mb, 2, &base, &err), &err);
    CHECK_OK(pare_llm_new(mm, 2, &llm, &err), &err);
    if (!base || !llm) goto out;
    enum { N = 64, CTX = 16, V = 50 };
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((urand() + 1) / 2 * V) % V;
    double kld = 0, dp = 0, nll_b = 0;
    int same = 0, count = 0;
    float lb[CTX * V], lm[CTX * V];
    for (int c = 0; c < N / CTX; c++) {
        int32_t ch[CTX];
        memcpy(ch, tok + c * CTX, sizeof ch);
        ch[0] = 1;
        CHECK_OK(pare_llm_forward(base, ch, CTX, lb, &err), &err);
        CHECK_OK(pare_llm_forward(llm, ch, CTX, lm, &err), &err);
        for (int i = CTX / 2; i < CTX - 1; i++, count++) {
            double pb[V], pm[V], sb = 0, sm = 0;
            int tb = 0, tm = 0;
            for (int v = 0; v < V; v++) {
                sb += pb[v] = exp(lb[i * V + v]), sm += pm[v] = exp(lm[i * V + v]);
                if (lb[i * V + v] > lb[i * V + tb]) tb = v;
                if (lm[i * V + v] > lm[i * V + tm]) tm = v;
            }
            for (int v = 0; v < V; v++) pb[v] /= sb, pm[v] /= sm;
            for (int v = 0; v < V; v++) kld += pb[v] * log(pb[v] / pm[v]);
            dp += pm[ch[i + 1]] - pb[ch[i + 1]];
            nll_b -= log(pb[ch[i + 1]]);
            same += tb == tm;
        }
    }
    pare_ppl_opts o = {.n_ctx = CTX, .n_chunks = -1};
    pare_ppl_result r;
    CHECK_OK(pare_perplexity(llm, base, tok, N, &o, NULL, NULL, &r, &err), &err);
    const double want_kld = kld / count, want_dp = dp / count, want_pb = exp(nll_b / count);
    printf("  KLD %.6f (naive %.6f), mean dp %.6f (%.6f), same top %.4f (%.4f), PPL(base) %.5f (%.5f)\n",
           r.kld_mean, want_kld, r.dp_mean, want_dp, r.same_top, (double)same / count, r.ppl_base, want_pb);
    CHECK(r.n_scored == count && want_kld > 0.05);
    CHECK_MSG(fabs(r.kld_mean / want_kld - 1) < TOL_KLD_REL, "KLD %g vs %g", r.kld_mean, want_kld);
    CHECK(fabs(r.dp_mean - want_dp) < 1e-3 && fabs(r.ppl_base / want_pb - 1) < 1e-3);
    CHECK(fabs(r.same_top - (double)same / count) < 1e-12);
    CHECK(r.kld_min <= r.kld_p1 && r.kld_p1 <= r.kld_median && r.kld_median <= r.kld_p99 && r.kld_p99 <= r.kld_max);
    /* the base's log-probabilities kept (the budget search) give the same bits as the base
     * run beside the model, also after the model's working memory was given back */
    pare_ppl_base *kept = NULL;
    pare_ppl_result rk;
    CHECK_OK(pare_ppl_base_new(base, tok, N, &o, NULL, NULL, &kept, &err), &err);
    pare_llm_trim(llm);
    CHECK_OK(pare_perplexity_kept(llm, kept, tok, N, &o, NULL, NULL, &rk, &err), &err);
    CHECK(rk.has_kld && rk.n_scored == r.n_scored);
    CHECK(rk.sum_kld == r.sum_kld && rk.sum_nll_base == r.sum_nll_base && rk.sum_nll_base_exact == r.sum_nll_base_exact);
    CHECK(rk.nll_sum == r.nll_sum && rk.n_same_top == r.n_same_top && rk.sum_p_diff == r.sum_p_diff);
    CHECK(rk.kld_mean == r.kld_mean && rk.kld_p99 == r.kld_p99 && rk.ppl_base == r.ppl_base);
    pare_ppl_result_free(&rk);
    /* kept for other chunks: refused, not misread */
    pare_ppl_opts o2 = {.n_ctx = CTX, .n_chunks = 2};
    CHECK(pare_perplexity_kept(llm, kept, tok, N, &o2, NULL, NULL, &rk, &err) == PARE_EINTERNAL);
    pare_ppl_base_free(kept);
    pare_ppl_result_free(&r);
out:
    pare_llm_free(base);
    pare_llm_free(llm);
    pare_model_free(mb);
    pare_model_free(mm);
}

int main(void) {
    TH_RUN(test_synthetic_llama);
    TH_RUN(test_synthetic_qwen2);
    TH_RUN(test_synthetic_gpt2);
    TH_RUN(test_synthetic_quantized);
    TH_RUN(test_act_hook);
    TH_RUN(test_errors);
    TH_RUN(test_per_layer_heads);
    TH_RUN(test_unknown_arch);
    TH_RUN(test_ppl_synthetic);
    TH_RUN(test_ppl_batched_same);
    TH_RUN(test_kld_naive);
    TH_RUN(test_fixture_tiny_llama);
    TH_RUN(test_packed_weights);
    TH_RUN(test_golden_f32);
    TH_RUN(test_golden_q8_0);
    TH_RUN(test_golden_q4_k_m);
    TH_RUN(test_ppl_gpl3_f32);
    TH_RUN(test_arch_logits);
    return th_done();
}
