/* tests/test_moe.c - mixture-of-experts layers (verify/moe.c): llama.cpp's f32 logits of the
 * Mixtral (llama with experts) and Qwen2-MoE references (../shared/models/arch), and the
 * expert activation hook (every routed row reported once, to its expert). */
#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "pipeline/pipeline.h"
#include "prune/prune.h"
#include "quant/imatrix.h"
#include "quant/quant.h"
#include "verify/llm.h"
#include "th.h"
#include "th_model.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

#define TOL_GOLDEN_F32 2e-3 /* |logit - llama.cpp's| for the f32 models (the bound) */


/* max |pare's logit - llama.cpp's| over every position of the reference's 128 tokens. */
static void golden(const char *arch) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/arch/%s/%s-f32.gguf", arch, arch);
    char *mp = th_shared_dup(rel);
    snprintf(rel, sizeof rel, "models/arch/%s/logits-f32.bin", arch);
    char *lp = mp ? th_shared_dup(rel) : NULL;
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    th_plog g = {0};
    pare_err err;
    if (!lp || !th_plog_read(lp, &g)) goto out;
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

/* ------------------------------------------------------------------------ LoRA with experts */

/* The test's own map of the PEFT modules of tests/fixtures/moe-lora/ (make_moe_lora.py) to
 * GGUF tensors: HF module suffix within "model.layers.L.", GGUF tensor within "blk.L.",
 * whether it is one expert's slice (the expert number at %d), and the q/k permutation. */
static const struct {
    const char *hf, *gguf;
    bool expert;
    int permute; /* 1: head_count, 2: head_count_kv (llama only) */
} LORA_MAP[] = {
    {"self_attn.q_proj", "attn_q", false, 1},  {"self_attn.k_proj", "attn_k", false, 2},
    {"self_attn.v_proj", "attn_v", false, 0},  {"self_attn.o_proj", "attn_output", false, 0},
    {"block_sparse_moe.experts.%d.w1", "ffn_gate_exps", true, 0},
    {"block_sparse_moe.experts.%d.w2", "ffn_down_exps", true, 0},
    {"block_sparse_moe.experts.%d.w3", "ffn_up_exps", true, 0},
    {"mlp.experts.%d.gate_proj", "ffn_gate_exps", true, 0}, {"mlp.experts.%d.up_proj", "ffn_up_exps", true, 0},
    {"mlp.experts.%d.down_proj", "ffn_down_exps", true, 0},
    {"mlp.shared_expert.gate_proj", "ffn_gate_shexp", false, 0},
    {"mlp.shared_expert.up_proj", "ffn_up_shexp", false, 0},
    {"mlp.shared_expert.down_proj", "ffn_down_shexp", false, 0},
};

typedef struct {
    char name[96];
    const pare_tensor *base;
    double *ref; /* the base's values + every adapted slice's s B A, in double */
} lora_ref;

/* merge-lora of the fixture adapter into the f32 reference, against base + s B A computed in
 * double here: every element within 1e-6 of the tensor's largest value; every other tensor
 * unchanged. The fixture's scales: alpha 8 / r 4, and alpha 3 / r 2 for its one special module. */
static void lora_merge(const char *arch, const char *special) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/arch/%s/%s-f32.gguf", arch, arch);
    char *mp = th_shared_dup(rel);
    if (!mp) return;
    const char *gguf_arch = strcmp(arch, "mixtral") == 0 ? "llama" : arch;
    char probe[64];
    if (!pare_hf_name_to_gguf(gguf_arch, "model.layers.0.self_attn.q_proj.weight", probe, sizeof probe)) {
        fprintf(stderr, "  %s: no HF names for this architecture yet (formats/): skipped\n", arch);
        th.cur_skipped++;
        free(mp);
        return;
    }
    char adir[256], st_path[300];
    snprintf(adir, sizeof adir, "tests/fixtures/moe-lora/%s", arch);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", adir);
    char dir[] = "/tmp/pare-moe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char out[128];
    snprintf(out, sizeof out, "%s/merged.gguf", dir);
    pare_model *base = NULL, *merged = NULL, *ad = NULL;
    lora_ref refs[64];
    size_t n_refs = 0;
    pare_err err;
    pare_adapter_spec spec = {adir, 1.0};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2, .force = true};
    CHECK_OK(pare_merge_lora(mp, &spec, 1, out, &o, NULL, &err), &err);
    CHECK_OK(pare_gguf_load(mp, &base, &err), &err);
    CHECK_OK(pare_gguf_load(out, &merged, &err), &err);
    CHECK_OK(pare_safetensors_load(st_path, &ad, &err), &err);
    if (!base || !merged || !ad) goto out;
    uint64_t nh = 0, nkv = 0;
    char key[96];
    snprintf(key, sizeof key, "%s.attention.head_count", gguf_arch);
    pare_meta_get_u64(&base->meta, key, &nh);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", gguf_arch);
    pare_meta_get_u64(&base->meta, key, &nkv);
    const bool llama = strcmp(gguf_arch, "llama") == 0;
    int pairs = 0, experts = 0;
    for (size_t i = 0; i < ad->n_tensors; i++) {
        const pare_tensor *ta = &ad->tensors[i];
        const char *tag = strstr(ta->name, ".lora_A.weight");
        if (!tag) continue;
        char module[160], nb[200];
        snprintf(module, sizeof module, "%.*s", (int)(tag - ta->name - 17), ta->name + 17); /* "base_model.model." */
        snprintf(nb, sizeof nb, "base_model.model.%s.lora_B.weight", module);
        const pare_tensor *tb = pare_model_find(ad, nb);
        int L = -1, pos = 0;
        CHECK(tb && sscanf(module, "model.layers.%d.%n", &L, &pos) == 1);
        if (!tb || L < 0) continue;
        const char *rest = module + pos;
        int k = -1, e = 0;
        for (size_t j = 0; j < sizeof LORA_MAP / sizeof LORA_MAP[0] && k < 0; j++) {
            char pat[96];
            snprintf(pat, sizeof pat, "%s%%n", LORA_MAP[j].hf);
            int used = 0;
            if (LORA_MAP[j].expert ? (sscanf(rest, pat, &e, &used) == 1 && rest[used] == 0)
                                   : strcmp(rest, LORA_MAP[j].hf) == 0)
                k = (int)j;
        }
        CHECK_MSG(k >= 0, "module %s is not in the test's map", module);
        if (k < 0) continue;
        char gname[96];
        snprintf(gname, sizeof gname, "blk.%d.%s.weight", L, LORA_MAP[k].gguf);
        size_t ri = 0;
        while (ri < n_refs && strcmp(refs[ri].name, gname)) ri++;
        if (ri == n_refs) {
            const pare_tensor *bt = pare_model_find(base, gname);
            CHECK_MSG(bt && bt->type == PARE_TYPE_F32 && n_refs < 64, "base tensor %s", gname);
            if (!bt || n_refs == 64) continue;
            const int64_t n = pare_tensor_nelements(bt);
            refs[ri].base = bt;
            snprintf(refs[ri].name, sizeof refs[ri].name, "%s", gname);
            refs[ri].ref = malloc((size_t)n * sizeof(double));
            for (int64_t j = 0; j < n; j++) refs[ri].ref[j] = ((const float *)bt->data)[j];
            n_refs++;
        }
        const int64_t r = ta->ne[1], n_in = ta->ne[0], n_out = tb->ne[1];
        const pare_tensor *bt = refs[ri].base;
        CHECK(tb->ne[0] == r && bt->ne[0] == n_in && bt->ne[1] == n_out && (!LORA_MAP[k].expert || e < bt->ne[2]));
        const float *A = ta->data;
        float *B = malloc((size_t)(n_out * r) * sizeof *B);
        memcpy(B, tb->data, (size_t)(n_out * r) * sizeof *B);
        const int heads = !llama ? 0 : LORA_MAP[k].permute == 1 ? (int)nh : LORA_MAP[k].permute == 2 ? (int)nkv : 0;
        if (heads) { /* the converter's q/k row order */
            float *tmp = malloc((size_t)(n_out * r) * sizeof *tmp);
            pare_hf_permute_rows(B, tmp, n_out, (size_t)r * sizeof(float), heads, false);
            memcpy(B, tmp, (size_t)(n_out * r) * sizeof *B);
            free(tmp);
        }
        const bool sp = strlen(module) >= strlen(special) && !strcmp(module + strlen(module) - strlen(special), special);
        const double scale = sp ? 3.0 / 2.0 : 8.0 / 4.0;
        CHECK(r == (sp ? 2 : 4));
        double *R = refs[ri].ref + (LORA_MAP[k].expert ? (size_t)e * (size_t)(n_out * n_in) : 0);
        for (int64_t a = 0; a < n_out; a++)
            for (int64_t b = 0; b < n_in; b++) {
                double d = 0;
                for (int64_t q = 0; q < r; q++) d += (double)B[a * r + q] * (double)A[q * n_in + b];
                R[a * n_in + b] += scale * d;
            }
        free(B);
        pairs++;
        experts += LORA_MAP[k].expert;
    }
    CHECK(pairs > 0 && experts > 0);
    for (size_t i = 0; i < merged->n_tensors; i++) {
        const pare_tensor *mt = &merged->tensors[i], *bt = pare_model_find(base, mt->name);
        CHECK(bt && bt->n_bytes == mt->n_bytes && mt->type == bt->type);
        if (!bt || bt->n_bytes != mt->n_bytes) continue;
        size_t ri = 0;
        while (ri < n_refs && strcmp(refs[ri].name, mt->name)) ri++;
        if (ri == n_refs) {
            CHECK_MSG(memcmp(mt->data, bt->data, bt->n_bytes) == 0, "%s changed but has no adapter", mt->name);
            continue;
        }
        const int64_t n = pare_tensor_nelements(bt);
        double maxref = 0, maxd = 0;
        for (int64_t j = 0; j < n; j++) {
            const double v = refs[ri].ref[j], d = fabs((double)((const float *)mt->data)[j] - v);
            if (fabs(v) > maxref) maxref = fabs(v);
            if (!(d <= maxd)) maxd = d;
        }
        CHECK_MSG(maxd <= 1e-6 * maxref, "%s: merged differs from the float64 reference by %g (max |w| %g)", mt->name,
                  maxd, maxref);
    }
    fprintf(stderr, "  %s: %d adapter pairs (%d of experts) into %zu tensors\n", arch, pairs, experts, n_refs);
out:
    for (size_t i = 0; i < n_refs; i++) free(refs[i].ref);
    pare_model_free(base);
    pare_model_free(merged);
    pare_model_free(ad);
    unlink(out);
    rmdir(dir);
    free(mp);
}

static void test_lora_mixtral(void) { lora_merge("mixtral", "layers.1.block_sparse_moe.experts.2.w2"); }
static void test_lora_qwen2moe(void) { lora_merge("qwen2moe", "layers.1.mlp.experts.3.down_proj"); }

/* ------------------------------------------------------------------------ pruning experts */

/* A 3-D expert tensor [ne0, rows, n_mat]: tensor scope per expert with per-expert Wanda
 * factors equals pruning each expert's matrix alone; row scope and 2:4 work on the stack as
 * rows (every row of every expert exact). */
static void test_prune_stack(void) {
    enum { NE0 = 32, ROWS = 8, NMAT = 4, N = NE0 * ROWS * NMAT };
    float *w = malloc(N * sizeof *w), *ref = malloc(N * sizeof *ref), sc[NE0 * NMAT];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
    }
    for (int i = 0; i < NE0 * NMAT; i++) sc[i] = 0.5f + (float)((i * 7919) % 97) / 50.0f;
    pare_err err;
    pare_prune_opts o = {.sparsity = 0.5, .scope = PARE_PRUNE_TENSOR};
    memcpy(ref, w, N * sizeof *w);
    for (int e = 0; e < NMAT; e++)
        CHECK_OK(pare_prune_matrix(ref + e * NE0 * ROWS, NE0, ROWS, sc + e * NE0, &o, 2, NULL, &err), &err);
    float *v = malloc(N * sizeof *v);
    memcpy(v, w, N * sizeof *w);
    int64_t z = 0;
    CHECK_OK(pare_prune_stack(v, NE0, ROWS, NMAT, sc, &o, 2, &z, &err), &err);
    CHECK(memcmp(v, ref, N * sizeof *v) == 0 && z == N / 2);
    for (int e = 0; e < NMAT; e++) {
        int64_t t = 0, rmin, rmax;
        pare_prune_count_zeros(v + e * NE0 * ROWS, NE0, ROWS, &t, &rmin, &rmax);
        CHECK_MSG(t == NE0 * ROWS / 2, "expert %d: %lld zeros", e, (long long)t);
    }
    /* row scope and 2:4 over all rows of all experts */
    memcpy(v, w, N * sizeof *w);
    o = (pare_prune_opts){.sparsity = 0.25, .scope = PARE_PRUNE_ROW};
    CHECK_OK(pare_prune_stack(v, NE0, ROWS, NMAT, NULL, &o, 2, &z, &err), &err);
    int64_t t, rmin, rmax;
    pare_prune_count_zeros(v, NE0, ROWS * NMAT, &t, &rmin, &rmax);
    CHECK(rmin == NE0 / 4 && rmax == NE0 / 4 && z == t);
    memcpy(v, w, N * sizeof *w);
    o = (pare_prune_opts){.n = 2, .m = 4};
    CHECK_OK(pare_prune_stack(v, NE0, ROWS, NMAT, NULL, &o, 2, NULL, &err), &err);
    CHECK(pare_prune_check_nm(v, NE0, ROWS * NMAT, 2, 4));
    pare_prune_count_zeros(v, NE0, ROWS * NMAT, &t, &rmin, &rmax);
    CHECK(t == N / 2);
    free(w), free(ref), free(v);
}

/* A GGUF LoRA adapter with 3-D lora_a [in, r, n_expert] / lora_b [r, out, n_expert] (as
 * llama.cpp's convert_lora_to_gguf.py writes experts' adapters): each expert's slice of the
 * base's ffn_up_exps gets its own s B_e A_e, checked against double sums. */
static void test_lora_gguf_3d(void) {
    char *mp = th_shared_dup("models/arch/mixtral/mixtral-f32.gguf");
    if (!mp) return;
    enum { NI = 128, NO = 32, R = 4, NE = 4 };
    char dir[] = "/tmp/pare-moe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char adp[128], out[128];
    snprintf(adp, sizeof adp, "%s/lora.gguf", dir);
    snprintf(out, sizeof out, "%s/merged.gguf", dir);
    pare_err err;
    pare_model *ad = pare_model_new(PARE_FORMAT_GGUF, adp), *base = NULL, *merged = NULL;
    float *A = malloc(NI * R * NE * sizeof *A), *B = malloc(R * NO * NE * sizeof *B);
    uint64_t x = 99;
    for (int i = 0; i < NI * R * NE; i++) x = x * 6364136223846793005ull + 1442695040888963407ull, A[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
    for (int i = 0; i < R * NO * NE; i++) x = x * 6364136223846793005ull + 1442695040888963407ull, B[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    CHECK_OK(pare_meta_set_str(&ad->meta, "general.architecture", "llama", 5, &err), &err);
    CHECK_OK(pare_meta_set_str(&ad->meta, "general.type", "adapter", 7, &err), &err);
    CHECK_OK(pare_meta_set_str(&ad->meta, "adapter.type", "lora", 4, &err), &err);
    CHECK_OK(pare_meta_set_float(&ad->meta, "adapter.lora.alpha", PARE_META_F32, 8.0, &err), &err);
    const int64_t nea[3] = {NI, R, NE}, neb[3] = {R, NO, NE};
    pare_tensor ta = {0}, tb = {0};
    CHECK_OK(pare_tensor_init(&ta, "blk.0.ffn_up_exps.weight.lora_a", PARE_TYPE_F32, 3, nea, &err), &err);
    CHECK_OK(pare_tensor_init(&tb, "blk.0.ffn_up_exps.weight.lora_b", PARE_TYPE_F32, 3, neb, &err), &err);
    float *ca = malloc(NI * R * NE * sizeof *ca), *cb = malloc(R * NO * NE * sizeof *cb);
    memcpy(ca, A, NI * R * NE * sizeof *ca);
    memcpy(cb, B, R * NO * NE * sizeof *cb);
    pare_tensor_set_owned(&ta, ca, ta.n_bytes);
    pare_tensor_set_owned(&tb, cb, tb.n_bytes);
    CHECK_OK(pare_model_add_tensor(ad, &ta, &err), &err);
    CHECK_OK(pare_model_add_tensor(ad, &tb, &err), &err);
    CHECK_OK(pare_gguf_save(ad, adp, true, &err), &err);
    pare_adapter_spec spec = {adp, 1.0};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2, .force = true};
    CHECK_OK(pare_merge_lora(mp, &spec, 1, out, &o, NULL, &err), &err);
    CHECK_OK(pare_gguf_load(mp, &base, &err), &err);
    CHECK_OK(pare_gguf_load(out, &merged, &err), &err);
    const pare_tensor *bt = base ? pare_model_find(base, "blk.0.ffn_up_exps.weight") : NULL;
    const pare_tensor *mt = merged ? pare_model_find(merged, "blk.0.ffn_up_exps.weight") : NULL;
    CHECK(bt && mt && mt->type == PARE_TYPE_F32 && bt->ne[0] == NI && bt->ne[1] == NO && bt->ne[2] == NE);
    if (bt && mt) {
        double maxd = 0, maxref = 0;
        for (int e = 0; e < NE; e++)
            for (int i = 0; i < NO; i++)
                for (int j = 0; j < NI; j++) {
                    double d = 0;
                    for (int k = 0; k < R; k++) d += (double)B[(e * NO + i) * R + k] * A[(e * R + k) * NI + j];
                    const size_t at = ((size_t)e * NO + i) * NI + j;
                    const double ref = ((const float *)bt->data)[at] + 2.0 * d;
                    maxd = fmax(maxd, fabs(((const float *)mt->data)[at] - ref));
                    maxref = fmax(maxref, fabs(ref));
                }
        CHECK_MSG(maxd <= 1e-6 * maxref, "3-D GGUF adapter: %g off the float64 reference", maxd);
        const pare_tensor *g0 = pare_model_find(base, "blk.0.ffn_gate_exps.weight"),
                          *g1 = pare_model_find(merged, "blk.0.ffn_gate_exps.weight");
        CHECK(g0 && g1 && memcmp(g0->data, g1->data, g0->n_bytes) == 0);
    }
    pare_model_free(ad);
    pare_model_free(base);
    pare_model_free(merged);
    free(A), free(B);
    unlink(adp), unlink(out);
    rmdir(dir);
    free(mp);
}

int main(void) {
    TH_RUN(test_golden_mixtral);
    TH_RUN(test_golden_qwen2moe);
    TH_RUN(test_expert_hook);
    TH_RUN(test_imatrix_idle_experts);
    TH_RUN(test_imatrix_per_expert_quant);
    TH_RUN(test_lora_mixtral);
    TH_RUN(test_lora_qwen2moe);
    TH_RUN(test_lora_gguf_3d);
    TH_RUN(test_prune_stack);
    return th_done();
}
