/* tests/test_lora.c - LoRA merges against a float64 reference computed here. */
#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
#include "pipeline/pipeline.h"
#include "quant/quant.h"
#include "th.h"

#include <unistd.h>

#define REL_TOL 1e-6 /* ||merged - reference|| / ||reference|| per tensor */

static void tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/pare-lora-XXXXXX");
    if (!mkdtemp(buf)) buf[0] = 0;
}

/* The float64 reference of base + scale * B A for one HF weight, in HF layout. */
static double *reference(const pare_tensor *w, const pare_tensor *a, const pare_tensor *b, double scale) {
    int64_t out = w->ne[1], in = w->ne[0], r = a->ne[1];
    double *ref = malloc((size_t)(out * in) * sizeof(double));
    float *wf = malloc((size_t)(out * in) * sizeof(float)), *af = malloc((size_t)(r * in) * sizeof(float)),
          *bf = malloc((size_t)(out * r) * sizeof(float));
    pare_err err = {0};
    pare_tensor_to_f32(w, wf, 1, &err);
    pare_tensor_to_f32(a, af, 1, &err);
    pare_tensor_to_f32(b, bf, 1, &err);
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)bf[o * r + k] * (double)af[k * in + i];
            ref[o * in + i] = (double)wf[o * in + i] + scale * s;
        }
    free(wf);
    free(af);
    free(bf);
    return ref;
}

/* Compares every LoRA target of the merged HF-layout model with the reference. */
static void compare_merged(const pare_model *merged, const pare_model *base, const pare_model *adapter, double scale,
                           const char *what) {
    double worst = 0;
    size_t n_checked = 0;
    for (size_t i = 0; i < adapter->n_tensors; i++) {
        const char *an = adapter->tensors[i].name;
        const char *p = strstr(an, ".lora_A.weight");
        if (!p) continue;
        char module[256], bname[300], wname[300];
        snprintf(module, sizeof module, "%.*s", (int)(p - an), an);
        snprintf(bname, sizeof bname, "%s.lora_B.weight", module);
        snprintf(wname, sizeof wname, "%s.weight", module + strlen("base_model.model."));
        const pare_tensor *w = pare_model_find(base, wname), *m = pare_model_find(merged, wname);
        const pare_tensor *b = pare_model_find(adapter, bname);
        CHECK_MSG(w && m && b, "%s: missing %s", what, wname);
        if (!w || !m || !b) continue;
        double *ref = reference(w, &adapter->tensors[i], b, scale);
        int64_t n = pare_tensor_nelements(w);
        float *mf = malloc((size_t)n * sizeof(float));
        pare_err err = {0};
        CHECK_OK(pare_tensor_to_f32(m, mf, 1, &err), &err);
        double num = 0, den = 0;
        for (int64_t k = 0; k < n; k++) {
            num += (mf[k] - ref[k]) * (mf[k] - ref[k]);
            den += ref[k] * ref[k];
        }
        double rel = sqrt(num / den);
        if (rel > worst) worst = rel;
        n_checked++;
        free(mf);
        free(ref);
    }
    printf("  %s: %zu tensors, largest relative difference from float64 %.3g (tolerance %g)\n", what, n_checked, worst,
           REL_TOL);
    CHECK(n_checked == 28);
    CHECK(worst <= REL_TOL);
}

static void test_peft_into_hf_and_gguf(void) {
    char *base_dir = th_shared_dup("models/fortune-llama");
    char *lora_dir = th_shared_dup("models/fortune-llama-lora");
    char *gguf_base = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    char *gguf_lora = th_shared_dup("models/fortune-llama-lora/lora-licenses-f32.gguf");
    if (!base_dir || !lora_dir || !gguf_base || !gguf_lora) goto out;
    char dir[64];
    tmpdir(dir, sizeof dir);
    pare_err err = {0};
    pare_model *base = NULL, *adapter = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", base_dir);
    CHECK_OK(pare_safetensors_load(path, &base, &err), &err);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", lora_dir);
    CHECK_OK(pare_safetensors_load(path, &adapter, &err), &err);
    /* lora_alpha 16, r 8: scale 2 (times the user's 1). */
    const char *bases[2] = {base_dir, gguf_base};
    const char *adapters[2] = {lora_dir, gguf_lora};
    for (int bi = 0; bi < 2; bi++)
        for (int ai = 0; ai < 2; ai++) {
            char out[600], what[64];
            snprintf(out, sizeof out, "%s/m%d%d.safetensors", dir, bi, ai);
            snprintf(what, sizeof what, "%s base, %s adapter", bi ? "GGUF" : "HF", ai ? "GGUF" : "PEFT");
            pare_adapter_spec spec = {adapters[ai], 1.0};
            pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2};
            CHECK_OK(pare_merge_lora(bases[bi], &spec, 1, out, &o, NULL, &err), &err);
            pare_model *merged = NULL;
            CHECK_OK(pare_safetensors_load(out, &merged, &err), &err);
            if (merged) compare_merged(merged, base, adapter, 2.0, what);
            pare_model_free(merged);
            unlink(out);
        }
    /* A scale multiplies: :0.5 gives half the change. */
    snprintf(path, sizeof path, "%s/half.safetensors", dir);
    pare_adapter_spec half = {lora_dir, 0.5};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 2};
    CHECK_OK(pare_merge_lora(base_dir, &half, 1, path, &o, NULL, &err), &err);
    pare_model *merged = NULL;
    CHECK_OK(pare_safetensors_load(path, &merged, &err), &err);
    if (merged) compare_merged(merged, base, adapter, 1.0, "scale 0.5");
    pare_model_free(merged);
    unlink(path);
    pare_model_free(base);
    pare_model_free(adapter);
    rmdir(dir);
out:
    free(base_dir);
    free(lora_dir);
    free(gguf_base);
    free(gguf_lora);
}

static void test_refusals(void) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"use_dora\": true}", f);
    fclose(f);
    pare_meta meta = {0};
    pare_lora_adapter *ad = NULL;
    pare_err err = {0};
    CHECK(pare_lora_load(dir, "llama", &meta, 1.0, &ad, &err) == PARE_EUNSUPPORTED);
    CHECK(strstr(err.msg, "DoRA") != NULL);
    f = fopen(cfg, "w");
    fputs("{\"peft_type\": \"PROMPT_TUNING\"}", f);
    fclose(f);
    CHECK(pare_lora_load(dir, "llama", &meta, 1.0, &ad, &err) == PARE_EUNSUPPORTED);
    f = fopen(cfg, "w");
    fputs("[1, 2]", f);
    fclose(f);
    CHECK(pare_lora_load(dir, "llama", &meta, 1.0, &ad, &err) == PARE_EINPUT);
    CHECK(strstr(err.msg, cfg) != NULL);
    unlink(cfg);
    rmdir(dir);
}

static void test_delta_transposed(void) {
    /* W (3x2 stored as 2 rows of 3 when transposed) gets (B A)^T. */
    float a[2] = {1, 2};          /* r = 1, n_in = 2 */
    float b[3] = {1, 10, 100};    /* n_out = 3 */
    pare_lora_pair p = {.r = 1, .n_in = 2, .n_out = 3, .a = a, .b = b, .scale = 0.5};
    float w[6] = {0};
    pare_lora_add_delta(w, &p, 1); /* (3 x 2) */
    float want[6] = {0.5f, 1, 5, 10, 50, 100};
    CHECK(memcmp(w, want, sizeof w) == 0);
    float wt[6] = {0};
    p.transposed = true;
    pare_lora_add_delta(wt, &p, 1); /* (2 x 3) */
    float want_t[6] = {0.5f, 5, 50, 1, 10, 100};
    CHECK(memcmp(wt, want_t, sizeof wt) == 0);
}

/* Merging piece by piece, as the pipeline cuts tensors: the merged values against float64
 * (ranks under, at and over one 16-value block of the rank-r kernel; a column count that is
 * not a multiple of 16), and the reported relative change ||W' - W|| / ||W|| (from the Gram
 * matrices of A and B and the base rows) against float64 sums; a transposed pair too. */
static void check_pieces(int R, int tr) {
    enum { NI = 70, NO = 45 };
    uint64_t x = 0x2545F4914F6CDD1Dull + (uint64_t)R;
    float *a = malloc(sizeof(float) * R * NI), *b = malloc(sizeof(float) * NO * R);
    float w[NO * NI], w0[NO * NI];
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (float)(x >> 40) / 16777216.0f - 0.5f)
    for (int i = 0; i < R * NI; i++) a[i] = RND();
    for (int i = 0; i < NO * R; i++) b[i] = RND();
    for (int i = 0; i < NO * NI; i++) w0[i] = w[i] = RND() * 3;
#undef RND
    pare_lora_pair p = {.target = "blk.0.attn_q.weight", .r = R, .n_in = NI, .n_out = NO, .a = a, .b = b,
                        .scale = 0.75, .transposed = tr};
    pare_lora_adapter ad = {.path = "mem", .pairs = &p, .n_pairs = 1};
    pare_lora_adapter *ads[1] = {&ad};
    /* stored as NO rows of NI, or (transposed) NI rows of NO */
    pare_tensor t = {.name = p.target, .type = PARE_TYPE_F32, .n_dims = 2, .ne = {tr ? NO : NI, tr ? NI : NO, 1, 1}};
    const int rows = tr ? NI : NO, cols = tr ? NO : NI;
    pare_lora_merger *mg = NULL;
    pare_err err;
    CHECK_OK(pare_lora_merger_new(ads, 1, &mg, &err), &err);
    for (int r0 = 0; r0 < rows; r0 += 20) /* pieces of 20 rows: 16-row groups and a tail */
        CHECK_OK(pare_lora_merger_apply_rows(mg, &t, w + (size_t)r0 * cols, r0, rows - r0 < 20 ? rows - r0 : 20, &err), &err);
    double d2 = 0, b2 = 0, worst = 0, top = 0;
    for (int o = 0; o < NO; o++)
        for (int i = 0; i < NI; i++) {
            double d = 0;
            for (int k = 0; k < R; k++) d += (double)b[o * R + k] * a[k * NI + i];
            const size_t at = tr ? (size_t)i * NO + o : (size_t)o * NI + i;
            const double want = w0[at] + 0.75 * d;
            worst = fmax(worst, fabs(w[at] - want)), top = fmax(top, fabs(want));
            d2 += 0.5625 * d * d, b2 += (double)w0[at] * w0[at];
        }
    CHECK_MSG(worst < 1e-6 * top, "rank %d, transposed %d: merged values %g from float64 (largest %g)", R, tr, worst, top);
    const char *name;
    double rel = -1;
    CHECK(pare_lora_merger_n_done(mg) == 1);
    pare_lora_merger_done(mg, 0, &name, &rel);
    CHECK_MSG(fabs(rel - sqrt(d2 / b2)) < 1e-5 * sqrt(d2 / b2), "rank %d, transposed %d: reported %.9g, float64 %.9g", R,
              tr, rel, sqrt(d2 / b2));
    pare_lora_merger_free(mg);
    free(a), free(b);
}

/* Adds an f32 tensor of n_dims dims (ne ggml order) with values v to m. */
static void add_f32(pare_model *m, const char *name, int n_dims, const int64_t *ne, const float *v, int64_t n) {
    pare_err err = {0};
    pare_tensor t;
    float *buf = malloc((size_t)n * sizeof(float));
    memcpy(buf, v, (size_t)n * sizeof(float));
    CHECK_OK(pare_tensor_init(&t, name, PARE_TYPE_F32, n_dims, ne, &err), &err);
    pare_tensor_set_owned(&t, buf, (uint64_t)n * sizeof(float));
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

/* GPT-NeoX's query_key_value: the converter reorders its rows from per-head (head, {q,k,v},
 * head_dim) to q | k | v, so an adapter's B rows and a replaced bias follow into GGUF layout,
 * and come back in the HF view. 2 heads of 2: HF row (h, part, j) = h * 6 + part * 2 + j. */
static void test_neox_qkv(void) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, \"target_modules\": [\"query_key_value\"]}", f);
    fclose(f);
    float a[4] = {1, 2, 3, 4}, b[12], bias[12];
    for (int i = 0; i < 12; i++) b[i] = (float)(100 + i), bias[i] = (float)(200 + i);
    pare_model *w = pare_model_new(PARE_FORMAT_SAFETENSORS, NULL);
    const char *mod = "base_model.model.gpt_neox.layers.0.attention.query_key_value";
    char name[160];
    snprintf(name, sizeof name, "%s.lora_A.weight", mod);
    add_f32(w, name, 2, (int64_t[]){4, 1}, a, 4);
    snprintf(name, sizeof name, "%s.lora_B.weight", mod);
    add_f32(w, name, 2, (int64_t[]){1, 12}, b, 12);
    snprintf(name, sizeof name, "%s.bias", mod);
    add_f32(w, name, 1, (int64_t[]){12}, bias, 12);
    pare_err err = {0};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK_OK(pare_safetensors_save(w, path, true, &err), &err);
    pare_model_free(w);
    pare_meta meta = {0};
    CHECK_OK(pare_meta_set_uint(&meta, "gptneox.attention.head_count", PARE_META_U32, 2, &err), &err);
    pare_lora_adapter *ad = NULL;
    CHECK_OK(pare_lora_load(dir, "gptneox", &meta, 1.0, &ad, &err), &err);
    if (ad) {
        CHECK(ad->n_pairs == 1 && ad->n_fulls == 1);
        CHECK(!strcmp(ad->pairs[0].target, "blk.0.attn_qkv.weight"));
        CHECK(!strcmp(ad->fulls[0].target, "blk.0.attn_qkv.bias"));
        CHECK(fabs(ad->pairs[0].scale - 2.0) < 1e-12);
        /* GGUF row (part, h, j) = part * 4 + h * 2 + j holds HF row (h, part, j) */
        for (int part = 0; part < 3; part++)
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 2; j++) {
                    int g = part * 4 + h * 2 + j, hf = h * 6 + part * 2 + j;
                    CHECK_MSG(ad->pairs[0].b[g] == b[hf], "B row %d: %g, want %g", g, ad->pairs[0].b[g], b[hf]);
                    const float *fv = ad->fulls[0].t.owned;
                    CHECK_MSG(fv[g] == bias[hf], "bias %d: %g, want %g", g, fv[g], bias[hf]);
                }
        CHECK_OK(pare_lora_to_hf_view(ad, "gptneox", &meta, &err), &err);
        CHECK(!strcmp(ad->pairs[0].target, "gpt_neox.layers.0.attention.query_key_value.weight"));
        CHECK(memcmp(ad->pairs[0].b, b, sizeof b) == 0);
        CHECK(memcmp(ad->fulls[0].t.owned, bias, sizeof bias) == 0);
    }
    pare_lora_free(ad);
    pare_meta_free(&meta);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);
}

static void test_pieces(void) {
    static const int ranks[] = {1, 5, 16, 21};
    for (size_t i = 0; i < sizeof ranks / sizeof *ranks; i++)
        for (int tr = 0; tr < 2; tr++) check_pieces(ranks[i], tr);
}

int main(void) {
    TH_RUN(test_pieces);
    TH_RUN(test_delta_transposed);
    TH_RUN(test_refusals);
    TH_RUN(test_neox_qkv);
    TH_RUN(test_peft_into_hf_and_gguf);
    return th_done();
}
