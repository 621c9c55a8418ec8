/* tests/test_moe.c - mixture-of-experts layers (verify/moe.c): llama.cpp's f32 logits of the
 * Mixtral (llama with experts) and Qwen2-MoE references (../shared/models/arch), and the
 * expert activation hook (every routed row reported once, to its expert). */
#include "formats/gguf.h"
#include "verify/llm.h"
#include "th.h"

#include <math.h>
#include <stdint.h>

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

int main(void) {
    TH_RUN(test_golden_mixtral);
    TH_RUN(test_golden_qwen2moe);
    TH_RUN(test_expert_hook);
    return th_done();
}
