/* tests/test_structured.c - the surgery of structured pruning on small in-memory models: which
 * rows, columns and expert slabs each tensor keeps, renamed layers, metadata arrays. */
#include "prune/structured.h"
#include "quant/quant.h"
#include "th.h"

#include <stdint.h>

/* A tensor whose element i is base + i (F32, or F16 when f16: values stay small). */
static void add(pare_model *m, const char *name, int n_dims, int64_t a, int64_t b, int64_t c, float base, bool f16) {
    pare_err err = {0};
    pare_tensor t = {0};
    int64_t ne[4] = {a, b, c, 1};
    pare_type ty = f16 ? PARE_TYPE_F16 : PARE_TYPE_F32;
    CHECK_OK(pare_tensor_init(&t, name, ty, n_dims, ne, &err), &err);
    CHECK_OK(pare_tensor_nbytes(ty, n_dims, ne, &t.n_bytes, &err), &err);
    const int64_t n = a * b * c;
    void *buf = malloc((size_t)t.n_bytes);
    for (int64_t i = 0; i < n; i++) {
        if (f16) ((uint16_t *)buf)[i] = pare_fp32_to_fp16(base + (float)i);
        else ((float *)buf)[i] = base + (float)i;
    }
    pare_tensor_set_owned(&t, buf, t.n_bytes);
    t.data = buf;
    t.source = -1;
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

static pare_model *dense_model(void) {
    pare_err err = {0};
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "mem.gguf");
    m->arch = strdup("llama");
    m->gguf_names = true;
    CHECK_OK(pare_meta_set_str(&m->meta, "general.architecture", "llama", 5, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.block_count", PARE_META_U32, 3, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.embedding_length", PARE_META_U32, 8, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.feed_forward_length", PARE_META_U32, 6, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count", PARE_META_U32, 4, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count_kv", PARE_META_U32, 2, &err), &err);
    CHECK_OK(pare_meta_set_float(&m->meta, "llama.attention.layer_norm_rms_epsilon", PARE_META_F32, 1e-5, &err), &err);
    const int32_t per_layer[3] = {10, 11, 12};
    CHECK_OK(pare_meta_set_arr(&m->meta, "llama.test_per_layer", PARE_META_I32, per_layer, 3, &err), &err);
    add(m, "token_embd.weight", 2, 8, 5, 1, 0, false);
    for (int l = 0; l < 3; l++) {
        char n[64];
        const float b = 1000.0f * (float)(l + 1);
#define T(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        add(m, T("attn_norm.weight"), 1, 8, 1, 1, b, false);
        add(m, T("attn_q.weight"), 2, 8, 8, 1, b + 100, false);
        add(m, T("attn_k.weight"), 2, 8, 4, 1, b + 200, false);
        add(m, T("attn_v.weight"), 2, 8, 4, 1, b + 300, false);
        add(m, T("attn_output.weight"), 2, 8, 8, 1, b + 400, false);
        add(m, T("ffn_up.weight"), 2, 8, 6, 1, b + 500, false);
        add(m, T("ffn_gate.weight"), 2, 8, 6, 1, b + 600, false);
        add(m, T("ffn_down.weight"), 2, 6, 8, 1, (float)l, true); /* F16: element-wise column cut */
#undef T
    }
    add(m, "output_norm.weight", 1, 8, 1, 1, 0, false);
    return m;
}

/* The f32 values of the view named `name` in o (NULL when absent; caller frees). */
static float *values(const pare_model *o, const char *name, const int64_t *want_ne) {
    const pare_tensor *t = pare_model_find(o, name);
    CHECK_MSG(t != NULL, "%s missing", name);
    if (!t) return NULL;
    for (int d = 0; d < 3 && want_ne; d++) CHECK_MSG(t->ne[d] == want_ne[d], "%s ne[%d] = %lld", name, d, (long long)t->ne[d]);
    float *v = malloc((size_t)pare_tensor_nelements(t) * sizeof(float));
    pare_err err = {0};
    CHECK_OK(pare_tensor_to_f32(t, v, 1, &err), &err);
    return v;
}

static int64_t meta_arr(const pare_model *o, const char *key, uint64_t i) {
    const pare_kv *kv = pare_meta_get(&o->meta, key);
    int64_t v = -1;
    if (kv && kv->type == PARE_META_ARRAY) pare_kv_arr_i64(kv, i, &v);
    return v;
}

static void test_dense(void) {
    pare_model *m = dense_model();
    pare_err err = {0};
    pare_struct_plan p;
    CHECK_OK(pare_struct_plan_init(&p, 3, &err), &err);
    p.drop[1] = true;
    p.ffn_n[0] = 2;
    p.ffn_idx[0] = malloc(2 * sizeof(int32_t));
    p.ffn_idx[0][0] = 1, p.ffn_idx[0][1] = 4;
    p.kv_n[2] = 1;
    p.kv_idx[2] = malloc(sizeof(int32_t));
    p.kv_idx[2][0] = 1;
    pare_model *o = NULL;
    CHECK_OK(pare_struct_build(m, &p, &o, &err), &err);
    if (!o) goto out;
    CHECK(o->n_tensors == m->n_tensors - 8);
    CHECK(!pare_model_find(o, "blk.2.attn_q.weight"));
    uint64_t u = 0;
    CHECK(pare_meta_get_u64(&o->meta, "llama.block_count", &u) && u == 2);
    CHECK(meta_arr(o, "llama.test_per_layer", 0) == 10 && meta_arr(o, "llama.test_per_layer", 1) == 12);
    CHECK(pare_meta_get(&o->meta, "llama.test_per_layer")->n == 2);
    CHECK(meta_arr(o, "llama.feed_forward_length", 0) == 2 && meta_arr(o, "llama.feed_forward_length", 1) == 6);
    CHECK(meta_arr(o, "llama.attention.head_count", 0) == 4 && meta_arr(o, "llama.attention.head_count", 1) == 2);
    CHECK(meta_arr(o, "llama.attention.head_count_kv", 0) == 2 &&
          meta_arr(o, "llama.attention.head_count_kv", 1) == 1);
    CHECK(pare_meta_get_u64(&o->meta, "llama.attention.key_length", &u) && u == 2);
    /* layer 0: rows 1 and 4 of up / gate, columns 1 and 4 of down (F16, cut element-wise) */
    float *v = values(o, "blk.0.ffn_up.weight", (int64_t[]){8, 2, 1});
    for (int j = 0; v && j < 8; j++) CHECK(v[j] == 1500 + 8 + j && v[8 + j] == 1500 + 32 + j);
    free(v);
    CHECK(pare_model_find(o, "blk.0.ffn_down.weight")->type == PARE_TYPE_F16);
    v = values(o, "blk.0.ffn_down.weight", (int64_t[]){2, 8, 1});
    for (int r = 0; v && r < 8; r++) CHECK(v[2 * r] == 6 * r + 1 && v[2 * r + 1] == 6 * r + 4);
    free(v);
    /* old layer 2 is layer 1: KV group 1 = query heads 2, 3 (rows 4..7), KV head 1 (rows 2, 3) */
    v = values(o, "blk.1.attn_q.weight", (int64_t[]){8, 4, 1});
    for (int i = 0; v && i < 32; i++) CHECK(v[i] == 3100 + 32 + i);
    free(v);
    v = values(o, "blk.1.attn_k.weight", (int64_t[]){8, 2, 1});
    for (int i = 0; v && i < 16; i++) CHECK(v[i] == 3200 + 16 + i);
    free(v);
    v = values(o, "blk.1.attn_output.weight", (int64_t[]){4, 8, 1});
    for (int r = 0; v && r < 8; r++)
        for (int j = 0; j < 4; j++) CHECK(v[4 * r + j] == 3400 + 8 * r + 4 + j);
    free(v);
    v = values(o, "blk.1.ffn_up.weight", (int64_t[]){8, 6, 1}); /* untouched */
    for (int i = 0; v && i < 48; i++) CHECK(v[i] == 3500 + i);
    free(v);
    /* the untouched tensors borrow the input's bytes */
    CHECK(pare_model_find(o, "blk.1.ffn_up.weight")->data == pare_model_find(m, "blk.2.ffn_up.weight")->data);
    pare_struct_shape s;
    CHECK_OK(pare_struct_shape_of(o, &s, &err), &err);
    CHECK(s.n_layer == 2 && s.n_ff[0] == 2 && s.n_ff[1] == 6 && s.n_head[1] == 2 && s.n_head_kv[1] == 1);
    pare_struct_shape_free(&s);
out:
    pare_model_free(o);
    pare_struct_plan_free(&p);
    pare_model_free(m);
}

static void test_experts(void) {
    pare_err err = {0};
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "moe.gguf");
    m->arch = strdup("llama");
    m->gguf_names = true;
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.block_count", PARE_META_U32, 1, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.embedding_length", PARE_META_U32, 8, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count", PARE_META_U32, 2, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.expert_count", PARE_META_U32, 4, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.expert_used_count", PARE_META_U32, 2, &err), &err);
    add(m, "blk.0.ffn_gate_inp.weight", 2, 8, 4, 1, 0, false);
    add(m, "blk.0.ffn_up_exps.weight", 3, 8, 6, 4, 0, false);
    add(m, "blk.0.ffn_down_exps.weight", 3, 6, 8, 4, 0, false);
    for (int keep = 1; keep <= 2; keep++) {
        pare_struct_plan p;
        CHECK_OK(pare_struct_plan_init(&p, 1, &err), &err);
        p.expert_n = keep;
        p.expert_idx[0] = malloc(2 * sizeof(int32_t));
        p.expert_idx[0][0] = keep == 1 ? 2 : 0, p.expert_idx[0][1] = 3;
        pare_model *o = NULL;
        CHECK_OK(pare_struct_build(m, &p, &o, &err), &err);
        uint64_t n = 0, used = 0;
        CHECK(o && pare_meta_get_u64(&o->meta, "llama.expert_count", &n) && n == (uint64_t)keep);
        CHECK(o && pare_meta_get_u64(&o->meta, "llama.expert_used_count", &used) && used == (uint64_t)keep);
        float *v = o ? values(o, "blk.0.ffn_up_exps.weight", (int64_t[]){8, 6, keep}) : NULL;
        for (int k = 0; v && k < keep; k++)
            for (int i = 0; i < 48; i++) CHECK(v[k * 48 + i] == 48 * p.expert_idx[0][k] + i);
        free(v);
        v = o ? values(o, "blk.0.ffn_gate_inp.weight", (int64_t[]){8, keep, 1}) : NULL;
        for (int k = 0; v && k < keep; k++)
            for (int i = 0; i < 8; i++) CHECK(v[k * 8 + i] == 8 * p.expert_idx[0][k] + i);
        free(v);
        pare_model_free(o);
        pare_struct_plan_free(&p);
    }
    double sc[4];
    CHECK_OK(pare_struct_expert_weight_scores(NULL, m, 0, 4, sc, &err), &err);
    CHECK(sc[3] > sc[2] && sc[2] > sc[1] && sc[1] > sc[0]); /* the values grow with the index */
    pare_model_free(m);
}

static void test_top_k_and_layers(void) {
    pare_err err = {0};
    const double s[6] = {0.5, 2, 1, 2, -1, NAN};
    int32_t idx[3];
    CHECK_OK(pare_struct_top_k(s, 6, 3, idx, &err), &err);
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 3); /* 2, 2, 1: NaN counts as lowest */
    bool drop[4] = {0};
    int n = 0;
    CHECK_OK(pare_struct_parse_layers("3,1", 4, drop, &n, &err), &err);
    CHECK(n == 2 && drop[1] && drop[3] && !drop[0]);
    bool d2[4] = {0};
    CHECK(pare_struct_parse_layers("1,1", 4, d2, &n, &err) == PARE_EUSAGE);
    bool d3[4] = {0};
    CHECK(pare_struct_parse_layers("4", 4, d3, &n, &err) == PARE_EUSAGE);
    bool d4[2] = {0};
    CHECK(pare_struct_parse_layers("0,1", 2, d4, &n, &err) == PARE_EUSAGE);
    bool d5[4] = {0};
    CHECK(pare_struct_parse_layers("x", 4, d5, &n, &err) == PARE_EUSAGE);
}

int main(void) {
    TH_RUN(test_dense);
    TH_RUN(test_experts);
    TH_RUN(test_top_k_and_layers);
    return th_done();
}
