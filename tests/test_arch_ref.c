/* tests/test_arch_ref.c - the forward pass of the newer families (qwen3, qwen3moe, gemma3 and
 * the language model of a Gemma3ForConditionalGeneration checkpoint) against a float64
 * reference written from the Hugging Face definitions (tests/ref/hf_forward.py), on small
 * random-weight checkpoints made by tests/fixtures/make_arch_models.py at test time; qwen2 and
 * gemma2, whose paths llama.cpp's own logits pin down (test_eval, test_moe, eval_arch.sh),
 * against the same reference, so that the reference itself is checked.
 *
 * Each checkpoint is loaded as pare converts it (pare_hf_load + pare_hf_to_gguf: GGUF names,
 * Gemma's norm + 1, experts merged) and evaluated on 80 tokens (past gemma3's 32-token window,
 * so the local layers' mask and RoPE base are exercised):
 *   - f32 weights, llama.cpp's roundings, K and V kept in f32 (pare_llm_set_kv_f16(false)):
 *     max |logit - reference| within TOL_REL of max |reference|;
 *   - the default f16 KV cache: mean |logit - reference| at most TOL_MEAN_F16KV.
 * Needs python3 with numpy (make deps); the scripts run in a temporary folder. */
#include "core/arch.h"
#include "formats/hf.h"
#include "verify/llm.h"
#include "th.h"

#include <stdint.h>

#define TOL_REL 1e-4        /* max |d| / max |ref|, K and V in f32 */
#define TOL_MEAN_F16KV 0.2  /* mean |d| with the f16 KV cache */
#define N_TOK 80

static char tmpdir[256];
static const char *py; /* a python3 with numpy, or NULL */

static const char *find_python(void) {
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

static bool run(const char *cmd) {
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "'%s' exited %d", cmd, rc);
    return rc == 0;
}

/* Reads the PLOG the reference wrote: n tokens x v logits, as float. */
static float *read_plog(const char *path, int n, int v) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f, "cannot open %s", path);
    if (!f) return NULL;
    char magic[4];
    uint32_t hn = 0, hv = 0;
    bool ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "PLOG", 4) == 0 && fread(&hn, 4, 1, f) == 1 &&
              fread(&hv, 4, 1, f) == 1 && hn == (uint32_t)n && hv == (uint32_t)v && fseek(f, 4L * n, SEEK_CUR) == 0;
    float *l = ok ? malloc(sizeof(float) * (size_t)n * (size_t)v) : NULL;
    ok = l && fread(l, sizeof(float), (size_t)n * (size_t)v, f) == (size_t)n * (size_t)v;
    fclose(f);
    CHECK_MSG(ok, "%s: not the reference logits of %d tokens x %d (got %u x %u)", path, n, v, hn, hv);
    if (!ok) {
        free(l);
        return NULL;
    }
    return l;
}

typedef struct {
    double max_rel; /* max |d| / max |ref| */
    double mean;    /* mean |d| */
} diff_t;

static diff_t diff(const float *a, const float *ref, size_t n) {
    double maxd = 0, maxr = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= maxd)) maxd = d; /* NaN propagates */
        if (fabs((double)ref[i]) > maxr) maxr = fabs((double)ref[i]);
        sum += d;
    }
    return (diff_t){maxr > 0 ? maxd / maxr : maxd, sum / (double)n};
}

/* Generates FAMILY's checkpoint, its reference logits, and checks pare's against them. */
static void family(const char *fam, const char *want_arch) {
    if (!py) {
        CHECK_MSG(py, "no python3 with numpy (make deps installs python3-numpy)");
        return;
    }
    char dir[512], cmd[2048], plog[600], toks[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, fam);
    snprintf(cmd, sizeof cmd, "%s tests/fixtures/make_arch_models.py '%s' %s >/dev/null", py, dir, fam);
    if (!run(cmd)) return;
    pare_err err = {0};
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    float *ref = NULL, *out = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (!m) return;
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    CHECK_MSG(m->arch && strcmp(m->arch, want_arch) == 0, "%s: architecture %s, want %s", fam, m->arch, want_arch);
    CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (!llm) goto out;
    const int V = pare_llm_n_vocab(llm);
    int32_t tokens[N_TOK];
    snprintf(toks, sizeof toks, "%s/tokens.txt", dir);
    FILE *f = fopen(toks, "w");
    CHECK(f);
    if (!f) goto out;
    for (int i = 0; i < N_TOK; i++) {
        tokens[i] = i == 0 ? pare_llm_bos(llm) >= 0 ? pare_llm_bos(llm) : 1 : (int32_t)((i * 37 + 11) % (V - 3) + 3);
        fprintf(f, "%d\n", tokens[i]);
    }
    fclose(f);
    snprintf(plog, sizeof plog, "%s/ref.plog", dir);
    snprintf(cmd, sizeof cmd, "%s tests/ref/hf_forward.py '%s' --tokens-file '%s' --out '%s'", py, dir, toks, plog);
    if (!run(cmd) || !(ref = read_plog(plog, N_TOK, V))) goto out;
    out = malloc(sizeof(float) * (size_t)N_TOK * (size_t)V);
    const size_t n = (size_t)N_TOK * (size_t)V;
    /* K and V in f32, llama.cpp's other roundings (none for f32 weights but GELU's table) */
    pare_llm_set_kv_f16(llm, false);
    CHECK_OK(pare_llm_forward(llm, tokens, N_TOK, out, &err), &err);
    diff_t d32 = diff(out, ref, n);
    /* plain f32 throughout */
    pare_llm_set_ggml_rounding(llm, false);
    CHECK_OK(pare_llm_forward(llm, tokens, N_TOK, out, &err), &err);
    diff_t dplain = diff(out, ref, n);
    /* llama.cpp's defaults: the f16 KV cache */
    pare_llm_set_ggml_rounding(llm, true);
    pare_llm_set_kv_f16(llm, true);
    CHECK_OK(pare_llm_forward(llm, tokens, N_TOK, out, &err), &err);
    diff_t d16 = diff(out, ref, n);
    printf("  %-9s f32 KV: max rel %.2e (mean %.2e); plain f32: max rel %.2e; f16 KV: mean |d| %.4f (max rel %.2e)\n",
           fam, d32.max_rel, d32.mean, dplain.max_rel, d16.mean, d16.max_rel);
    /* ggml's f16 GELU table (Gemma's GEGLU) rounds every activation to f16: there the f32-KV
     * bound is held with that table off, as the float64 definition has no such rounding */
    const pare_arch *a = pare_arch_find(want_arch);
    const bool gelu_table = a && a->fwd.ffn != PARE_FFN_SWIGLU;
    const double rel = gelu_table ? dplain.max_rel : d32.max_rel;
    CHECK_MSG(rel <= TOL_REL, "%s: f32 logits with f32 K/V differ from the float64 reference by %.3g of max |logit|",
              fam, rel);
    CHECK_MSG(d16.mean <= TOL_MEAN_F16KV, "%s: mean |d| %.4f with the f16 KV cache", fam, d16.mean);
out:
    free(out);
    free(ref);
    pare_llm_free(llm);
    pare_model_free(m);
}

static void test_qwen3(void) { family("qwen3", "qwen3"); }
static void test_qwen3moe(void) { family("qwen3moe", "qwen3moe"); }
static void test_gemma3(void) { family("gemma3", "gemma3"); }
static void test_gemma3mm(void) { family("gemma3mm", "gemma3"); }
static void test_qwen2(void) { family("qwen2", "qwen2"); }
static void test_gemma2(void) { family("gemma2", "gemma2"); }

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pare-test-arch-ref-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    py = find_python();
    TH_RUN(test_qwen3);
    TH_RUN(test_qwen3moe);
    TH_RUN(test_gemma3);
    TH_RUN(test_gemma3mm);
    TH_RUN(test_qwen2);
    TH_RUN(test_gemma2);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", tmpdir);
    return th_done();
}
