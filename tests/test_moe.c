/* tests/test_moe.c - mixture-of-experts layers (verify/moe.c): llama.cpp's f32 logits of the
 * Mixtral (llama with experts) and Qwen2-MoE references (../shared/models/arch), and the
 * expert activation hook (every routed row reported once, to its expert). */
#include "formats/formats.h"
#include "formats/gguf.h"
#include "pipeline/pipeline.h"
#include "quant/imatrix.h"
#include "quant/quant.h"
#include "verify/llm.h"
#include "th.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

#define TOL_GOLDEN_F32 2e-3 /* |logit - llama.cpp's| for the f32 models (the bound) */

typedef struct {
    uint32_t n_tokens, n_vocab;
    int32_t *tokens;
    float *logits;
} plog;

static bool plog_read(const char *path, plog *p) {
    size_t len = 0;
    uint8_t *buf = th_read_file(path, &len);
    bool ok = buf && len >= 12 && memcmp(buf, "PLOG", 4) == 0;
    if (ok) {
        memcpy(&p->n_tokens, buf + 4, 4);
        memcpy(&p->n_vocab, buf + 8, 4);
        ok = p->n_tokens > 0 && p->n_vocab > 0 && 12 + 4ull * p->n_tokens * (1 + p->n_vocab) == len;
    }
    if (ok) {
        p->tokens = malloc(4ull * p->n_tokens);
        p->logits = malloc(4ull * p->n_tokens * p->n_vocab);
        memcpy(p->tokens, buf + 12, 4ull * p->n_tokens);
        memcpy(p->logits, buf + 12 + 4ull * p->n_tokens, 4ull * p->n_tokens * p->n_vocab);
    }
    free(buf);
    CHECK_MSG(ok, "%s is not a PLOG file of the expected size", path);
    return ok;
}

/* max |pare's logit - llama.cpp's| over every position of the reference's 128 tokens. */
static void golden(const char *arch) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/arch/%s/%s-f32.gguf", arch, arch);
    char *mp = th_shared_dup(rel);
    snprintf(rel, sizeof rel, "models/arch/%s/logits-f32.bin", arch);
    char *lp = mp ? th_shared_dup(rel) : NULL;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    plog g = {0};
    pare_err err;
    if (!lp || !plog_read(lp, &g)) goto out;
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (!m) goto out;
    CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (!llm) goto out;
    CHECK(pare_llm_n_vocab(llm) == (int)g.n_vocab);
    float *o = malloc(4ull * g.n_tokens * g.n_vocab);
    CHECK_OK(pare_llm_forward(llm, g.tokens, (int)g.n_tokens, o, &err), &err);
    double maxd = 0;
    for (size_t i = 0; i < (size_t)g.n_tokens * g.n_vocab; i++) {
        const double d = fabs((double)o[i] - g.logits[i]);
        if (!(d <= maxd)) maxd = d;
    }
    free(o);
    fprintf(stderr, "  %s: max |logit - llama.cpp| = %.3g\n", arch, maxd);
    CHECK_MSG(maxd <= TOL_GOLDEN_F32, "%s: logits differ from llama.cpp's by %g", arch, maxd);
out:
    pare_llm_free(llm);
    pare_model_free(m);
    free(g.tokens);
    free(g.logits);
    free(mp);
    free(lp);
}

static void test_golden_mixtral(void) { golden("mixtral"); }
static void test_golden_qwen2moe(void) { golden("qwen2moe"); }

typedef struct {
    int rows[2][3];  /* [layer][up, gate, down] rows reported */
    int plain_exps;  /* plain-hook calls for expert tensors (must be none) */
    int router;      /* plain-hook calls for ffn_gate_inp */
    int bad;         /* wrong n_expert, expert index or width */
    int per_expert[2][8];
} hook_count;

static void on_expert(void *user, const char *name, int e, int n_expert, const float *x, int n_rows, int n_in) {
    hook_count *c = user;
    int il = -1;
    sscanf(name, "blk.%d.", &il);
    const int k = strstr(name, "ffn_up_exps") ? 0 : strstr(name, "ffn_gate_exps") ? 1 : strstr(name, "ffn_down_exps") ? 2 : -1;
    if (il < 0 || il > 1 || k < 0 || n_expert != 4 || e < 0 || e >= 4 || n_rows < 1 || n_in != (k == 2 ? 32 : 128)) {
        c->bad++;
        return;
    }
    for (int i = 0; i < n_rows * n_in; i++)
        if (!isfinite(x[i])) c->bad++;
    c->rows[il][k] += n_rows;
    if (k == 0) c->per_expert[il][e] += n_rows;
}

static void on_act(void *user, const char *name, const float *x, int n, int n_in) {
    (void)x, (void)n, (void)n_in;
    hook_count *c = user;
    if (strstr(name, "_exps")) c->plain_exps++;
    if (strstr(name, "ffn_gate_inp.weight")) c->router++;
}

static void test_expert_hook(void) {
    char *mp = th_shared_dup("models/arch/mixtral/mixtral-f32.gguf");
    if (!mp) return;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    pare_err err;
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (m) CHECK_OK(pare_llm_new(m, 2, &llm, &err), &err);
    if (llm) {
        enum { T = 40 };
        int32_t tok[T];
        for (int t = 0; t < T; t++) tok[t] = (t * 37 + 5) % 512;
        hook_count c = {0};
        pare_llm_set_expert_hook(llm, on_expert, &c);
        pare_llm_set_act_hook(llm, on_act, &c);
        float *o = malloc((size_t)T * 512 * sizeof *o);
        CHECK_OK(pare_llm_forward(llm, tok, T, o, &err), &err);
        free(o);
        CHECK(c.bad == 0 && c.plain_exps == 0 && c.router == 2);
        for (int il = 0; il < 2; il++) {
            int sum = 0;
            for (int e = 0; e < 4; e++) sum += c.per_expert[il][e];
            CHECK(sum == T * 2);
            for (int k = 0; k < 3; k++) CHECK_MSG(c.rows[il][k] == T * 2, "layer %d tensor %d: %d rows", il, k, c.rows[il][k]);
        }
    }
    pare_llm_free(llm);
    pare_model_free(m);
    free(mp);
}

static void count_experts(void *user, const char *name, int e, int n_expert, const float *x, int n_rows, int n_in) {
    (void)x, (void)n_in, (void)n_expert;
    int *c = user;
    int il = -1;
    sscanf(name, "blk.%d.", &il);
    if (strstr(name, "ffn_up_exps") && il >= 0 && il < 2 && e >= 0 && e < 4) c[il * 4 + e] += n_rows;
}

/* Experts that never fire: the Mixtral reference with its router's rows all equal, so that
 * every token's probabilities tie and ggml's top-k keeps experts 0 and 1; experts 2 and 3 see
 * no row. pare imatrix must still write their entries without NaN or zeros (each such
 * expert gets the mean over the rows of all experts), and quantizing with that imatrix
 * (i-quants, Q4_K_M) must work. */
static void test_imatrix_idle_experts(void) {
    char *mp = th_shared_dup("models/arch/mixtral/mixtral-f32.gguf");
    char *tp = mp ? th_shared_dup("data/gpl-3.txt") : NULL;
    if (!tp) {
        free(mp);
        return;
    }
    char dir[] = "/tmp/pare-moe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char model[128], dat[128], q1[128], q2[128];
    snprintf(model, sizeof model, "%s/idle.gguf", dir);
    snprintf(dat, sizeof dat, "%s/idle.dat", dir);
    snprintf(q1, sizeof q1, "%s/iq4.gguf", dir);
    snprintf(q2, sizeof q2, "%s/q4km.gguf", dir);
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    pare_imatrix *im = NULL;
    pare_err err;
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (!m) goto out;
    for (int il = 0; il < 2; il++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", il);
        pare_tensor *t = (pare_tensor *)pare_model_find(m, n);
        CHECK(t && t->type == PARE_TYPE_F32 && t->ne[0] == 128 && t->ne[1] == 4);
        if (!t) goto out;
        float *w = malloc(t->n_bytes);
        memcpy(w, t->data, t->n_bytes);
        for (int e = 1; e < 4; e++) memcpy(w + e * 128, w, 128 * sizeof *w);
        pare_tensor_set_owned(t, w, t->n_bytes);
    }
    CHECK_OK(pare_gguf_save(m, model, true, &err), &err);
    /* the routing: only experts 0 and 1 */
    pare_model *m2 = NULL;
    CHECK_OK(pare_gguf_load(model, &m2, &err), &err);
    if (m2) CHECK_OK(pare_llm_new(m2, 2, &llm, &err), &err);
    if (llm) {
        int32_t tok[32];
        for (int t = 0; t < 32; t++) tok[t] = (t * 53 + 7) % 512;
        int c[8] = {0};
        float *o = malloc(32 * 512 * sizeof *o);
        pare_llm_set_expert_hook(llm, count_experts, c);
        CHECK_OK(pare_llm_forward(llm, tok, 32, o, &err), &err);
        free(o);
        for (int il = 0; il < 2; il++)
            CHECK_MSG(c[il * 4] == 32 && c[il * 4 + 1] == 32 && c[il * 4 + 2] == 0 && c[il * 4 + 3] == 0,
                      "layer %d: rows per expert %d %d %d %d", il, c[il * 4], c[il * 4 + 1], c[il * 4 + 2], c[il * 4 + 3]);
    }
    pare_llm_free(llm);
    llm = NULL;
    pare_model_free(m2);
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2, .force = true};
    CHECK_OK(pare_imatrix_make(model, tp, dat, 128, 512, &o, &err), &err);
    CHECK_OK(pare_imatrix_load(dat, &im, &err), &err);
    if (!im) goto out;
    static const char *const kinds[] = {"ffn_up_exps", "ffn_gate_exps", "ffn_down_exps"};
    for (int il = 0; il < 2; il++)
        for (int k = 0; k < 3; k++) {
            char n[64];
            snprintf(n, sizeof n, "blk.%d.%s.weight", il, kinds[k]);
            const pare_imatrix_entry *e = pare_imatrix_find(im, n);
            const int64_t w = k == 2 ? 32 : 128;
            CHECK_MSG(e && e->n == 4 * w, "%s: no entry of %lld values", n, (long long)(4 * w));
            if (!e) continue;
            int bad = 0;
            for (int64_t j = 0; j < e->n; j++) bad += !(isfinite(e->values[j]) && e->values[j] > 0);
            CHECK_MSG(bad == 0, "%s: %d values NaN or not positive", n, bad);
            /* an idle expert's values: the mean over all rows = the mean of the two busy
             * experts, which saw the same number of rows */
            for (int64_t j = 0; j < w; j++) {
                const double want = 0.5 * ((double)e->values[j] + e->values[w + j]);
                CHECK(fabs(e->values[2 * w + j] - want) <= 1e-5 * want && e->values[3 * w + j] == e->values[2 * w + j]);
            }
        }
    pare_quantize_job job = {.ftype = PARE_FTYPE_IQ4_XS, .output_type = PARE_TYPE_INVALID,
                             .token_embd_type = PARE_TYPE_INVALID, .imatrix_path = dat};
    CHECK_OK(pare_quantize_model(model, q1, &job, &o, NULL, &err), &err);
    job.ftype = PARE_FTYPE_Q4_K_M;
    CHECK_OK(pare_quantize_model(model, q2, &job, &o, NULL, &err), &err);
out:
    pare_imatrix_free(im);
    pare_model_free(m);
    unlink(model), unlink(dat), unlink(q1), unlink(q2);
    rmdir(dir);
    free(mp);
    free(tp);
}

/* Quantizing a 3-D expert tensor with an imatrix: each expert's rows with its own run of
 * importance values (llama-quantize's imatrix + i03 * n_per_row), on the original Mixtral
 * reference, whose experts see different rows. */
static void test_imatrix_per_expert_quant(void) {
    char *mp = th_shared_dup("models/arch/mixtral/mixtral-f32.gguf");
    char *tp = mp ? th_shared_dup("data/gpl-3.txt") : NULL;
    if (!tp) {
        free(mp);
        return;
    }
    char dir[] = "/tmp/pare-moe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char dat[128], q1[128];
    snprintf(dat, sizeof dat, "%s/m.dat", dir);
    snprintf(q1, sizeof q1, "%s/iq4.gguf", dir);
    pare_model *m = NULL;
    pare_imatrix *im = NULL;
    pare_err err;
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2, .force = true};
    CHECK_OK(pare_imatrix_make(mp, tp, dat, 128, 512, &o, &err), &err);
    CHECK_OK(pare_imatrix_load(dat, &im, &err), &err);
    CHECK_OK(pare_gguf_load(mp, &m, &err), &err);
    if (!im || !m) goto out;
    pare_quantize_job job = {.ftype = PARE_FTYPE_IQ4_XS, .output_type = PARE_TYPE_INVALID,
                             .token_embd_type = PARE_TYPE_INVALID, .imatrix_path = dat};
    CHECK_OK(pare_quantize_model(mp, q1, &job, &o, NULL, &err), &err);
    { /* each expert's rows quantized with its own run of importance values */
        pare_model *qm = NULL;
        CHECK_OK(pare_gguf_load(q1, &qm, &err), &err);
        const pare_tensor *qt = qm ? pare_model_find(qm, "blk.1.ffn_up_exps.weight") : NULL;
        const pare_tensor *ft = pare_model_find(m, "blk.1.ffn_up_exps.weight");
        const pare_imatrix_entry *ie = pare_imatrix_find(im, "blk.1.ffn_up_exps.weight");
        const pare_quant_traits *q = qt ? pare_quant_get(qt->type) : NULL;
        CHECK(qt && ft && ie && q && q->quantize && ft->type == PARE_TYPE_F32);
        if (qt && ft && ie && q && q->quantize) {
            const size_t rb = pare_type_row_size(qt->type, 128);
            uint8_t *row = malloc(rb);
            int diff = 0;
            for (int e = 0; e < 4; e++)
                for (int r = 0; r < 32; r++) {
                    const int64_t g = (int64_t)e * 32 + r;
                    q->quantize((const float *)ft->data + g * 128, row, 128, ie->values + e * 128);
                    diff += memcmp(row, (const uint8_t *)qt->data + g * rb, rb) != 0;
                }
            CHECK_MSG(diff == 0, "%d expert rows not quantized with their expert's importance", diff);
            free(row);
        }
        pare_model_free(qm);
    }
out:
    pare_imatrix_free(im);
    pare_model_free(m);
    unlink(dat), unlink(q1);
    rmdir(dir);
    free(mp);
    free(tp);
}

int main(void) {
    TH_RUN(test_golden_mixtral);
    TH_RUN(test_golden_qwen2moe);
    TH_RUN(test_expert_hook);
    TH_RUN(test_imatrix_idle_experts);
    TH_RUN(test_imatrix_per_expert_quant);
    return th_done();
}
