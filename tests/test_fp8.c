/* tests/test_fp8.c - FP8 weights with block, row and tensor scales (formats/fp8.h) against a
 * float64 computation of the same values, on shapes with partial edge blocks. */
#include "formats/fp8.h"
#include "th.h"

#include <stdint.h>

/* Adds a tensor with owned bytes to m. */
static void add(pare_model *m, const char *name, pare_type type, int nd, int64_t ne0, int64_t ne1, const void *bytes) {
    pare_tensor t;
    int64_t ne[2] = {ne0, ne1};
    pare_err e = {0};
    CHECK(pare_tensor_init(&t, name, type, nd, ne, &e) == PARE_OK);
    void *b = malloc(t.n_bytes);
    memcpy(b, bytes, t.n_bytes);
    pare_tensor_set_owned(&t, b, t.n_bytes);
    CHECK(pare_model_add_tensor(m, &t, &e) == PARE_OK);
}

/* Exact FP8 decoding in double, written from the format's definition (not core's code). */
static double e4m3(uint8_t v) {
    int s = v >> 7, e = (v >> 3) & 15, mnt = v & 7;
    double x = e ? ldexp(1.0 + mnt / 8.0, e - 7) : ldexp(mnt / 8.0, -6);
    return s ? -x : x;
}
static double e5m2(uint8_t v) {
    int s = v >> 7, e = (v >> 2) & 31, mnt = v & 3;
    double x = e ? ldexp(1.0 + mnt / 4.0, e - 15) : ldexp(mnt / 4.0, -14);
    return s ? -x : x;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static uint8_t rnd_fp8(bool is_e4m3) {
    for (;;) {
        uint8_t v = (uint8_t)rnd();
        if (is_e4m3 && (v & 0x7f) == 0x7f) continue; /* NaN */
        if (!is_e4m3 && ((v >> 2) & 31) == 31) continue; /* inf / NaN */
        return v;
    }
}

/* R x C weight, block br x bc scales (f32 or bf16): values equal double fp8 * scale rounded to f32. */
static void check_block(int64_t R, int64_t C, int64_t br, int64_t bc, bool is_e4m3, bool bf16_scales) {
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "mem.safetensors");
    uint8_t *q = malloc((size_t)(R * C));
    for (int64_t i = 0; i < R * C; i++) q[i] = rnd_fp8(is_e4m3);
    const int64_t sr = (R + br - 1) / br, sc = (C + bc - 1) / bc;
    float *s = malloc((size_t)(sr * sc) * 4);
    uint16_t *sb = malloc((size_t)(sr * sc) * 2);
    for (int64_t i = 0; i < sr * sc; i++) {
        s[i] = (float)((rnd() % 100000 + 1) * 1e-7) * ((i % 3) ? 1.0f : 1.7f);
        sb[i] = pare_fp32_to_bf16(s[i]);
        if (bf16_scales) s[i] = pare_bf16_to_fp32(sb[i]);
    }
    add(m, "model.layers.0.mlp.up_proj.weight", is_e4m3 ? PARE_TYPE_F8_E4M3 : PARE_TYPE_F8_E5M2, 2, C, R, q);
    if (bf16_scales) add(m, "model.layers.0.mlp.up_proj.weight_scale_inv", PARE_TYPE_BF16, 2, sc, sr, sb);
    else add(m, "model.layers.0.mlp.up_proj.weight_scale_inv", PARE_TYPE_F32, 2, sc, sr, s);
    float one = 1.0f;
    add(m, "model.norm.weight", PARE_TYPE_F32, 1, 1, 1, &one);
    add(m, "model.layers.0.self_attn.q_proj.input_scale", PARE_TYPE_F32, 1, 1, 1, &one);
    cJSON *cfg = cJSON_Parse("{\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [0, 0]}}");
    cJSON *bs = cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "quantization_config"), "weight_block_size");
    cJSON_ReplaceItemInArray(bs, 0, cJSON_CreateNumber((double)br));
    cJSON_ReplaceItemInArray(bs, 1, cJSON_CreateNumber((double)bc));
    pare_err e = {0};
    size_t n = 0;
    CHECK_MSG(pare_fp8_dequant_model(m, cfg, &n, &e) == PARE_OK, "%s", e.msg);
    CHECK(n == 1);
    CHECK(m->n_tensors == 2); /* the weight and the norm: scales and the activation scale dropped */
    pare_tensor *t = pare_model_find(m, "model.layers.0.mlp.up_proj.weight");
    CHECK(t && t->type == PARE_TYPE_F32 && t->ne[0] == C && t->ne[1] == R);
    CHECK(!pare_model_find(m, "model.layers.0.mlp.up_proj.weight_scale_inv"));
    float *out = malloc((size_t)(R * C) * 4);
    CHECK(t && pare_tensor_read(t, out, &e) == PARE_OK);
    int64_t bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            double v = (is_e4m3 ? e4m3(q[r * C + c]) : e5m2(q[r * C + c])) * (double)s[(r / br) * sc + c / bc];
            float want = (float)v;
            if (memcmp(&want, &out[r * C + c], 4) != 0) bad++;
        }
    CHECK_MSG(bad == 0, "%lld of %lld values differ (R %lld C %lld block %lldx%lld)", (long long)bad,
              (long long)(R * C), (long long)R, (long long)C, (long long)br, (long long)bc);
    cJSON_Delete(cfg);
    free(out);
    free(q);
    free(s);
    free(sb);
    pare_model_free(m);
}

static void test_block_scales(void) {
    check_block(256, 384, 128, 128, true, false);  /* whole blocks */
    check_block(200, 300, 128, 128, true, false);  /* partial blocks at both edges */
    check_block(70, 33, 32, 16, false, true);      /* E5M2, bf16 scales, other block */
    check_block(5, 7, 128, 128, true, true);       /* smaller than one block */
}

static void test_row_and_tensor_scales(void) {
    for (int mode = 0; mode < 2; mode++) {
        const int64_t R = 9, C = 40;
        pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "mem.safetensors");
        uint8_t q[9 * 40];
        for (int i = 0; i < R * C; i++) q[i] = rnd_fp8(true);
        float s[9];
        for (int i = 0; i < 9; i++) s[i] = 0.01f * (float)(i + 1) + 0.003f;
        add(m, "w.weight", PARE_TYPE_F8_E4M3, 2, C, R, q);
        if (mode == 0) add(m, "w.weight_scale", PARE_TYPE_F32, 2, 1, R, s);
        else add(m, "w.weight_scale", PARE_TYPE_F32, 1, 1, 1, s);
        pare_err e = {0};
        CHECK_MSG(pare_fp8_dequant_model(m, NULL, NULL, &e) == PARE_OK, "%s", e.msg);
        CHECK(m->n_tensors == 1);
        float out[9 * 40];
        CHECK(pare_tensor_read(&m->tensors[0], out, &e) == PARE_OK);
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                float want = (float)(e4m3(q[r * C + c]) * (double)s[mode == 0 ? r : 0]);
                bad += memcmp(&want, &out[r * C + c], 4) != 0;
            }
        CHECK_MSG(bad == 0, "mode %d: %d values differ", mode, bad);
        pare_model_free(m);
    }
}

static void test_bad_scales(void) {
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bad.safetensors");
    uint8_t q[300 * 4] = {0};
    float s[4] = {1, 1, 1, 1};
    add(m, "a.weight", PARE_TYPE_F8_E4M3, 2, 300, 4, q);
    add(m, "a.weight_scale_inv", PARE_TYPE_F32, 2, 2, 2, s); /* needs [3, 1] for 128 x 128 */
    pare_err e = {0};
    CHECK(pare_fp8_dequant_model(m, NULL, NULL, &e) == PARE_EINPUT);
    CHECK_MSG(strstr(e.msg, "bad.safetensors") && strstr(e.msg, "a.weight_scale_inv") && strstr(e.msg, "[3, 1]"),
              "%s", e.msg);
    pare_model_free(m);

    m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bad.safetensors");
    add(m, "b.weight_scale_inv", PARE_TYPE_F32, 1, 1, 1, s);
    add(m, "c.weight", PARE_TYPE_F8_E4M3, 2, 4, 1, q);
    CHECK(pare_fp8_dequant_model(m, NULL, NULL, &e) == PARE_EINPUT);
    CHECK_MSG(strstr(e.msg, "b.weight_scale_inv") && strstr(e.msg, "no FP8 weight"), "%s", e.msg);
    pare_model_free(m);

    m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bad.safetensors");
    add(m, "c.weight", PARE_TYPE_F8_E4M3, 2, 4, 1, q);
    cJSON *cfg = cJSON_Parse("{\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}}");
    CHECK(pare_fp8_dequant_model(m, cfg, NULL, &e) == PARE_EINPUT);
    CHECK_MSG(strstr(e.msg, "c.weight") && strstr(e.msg, "no 'c.weight_scale_inv'"), "%s", e.msg);
    cJSON_Delete(cfg);
    pare_model_free(m);
}

int main(void) {
    TH_RUN(test_block_scales);
    TH_RUN(test_row_and_tensor_scales);
    TH_RUN(test_bad_scales);
    return th_done();
}
