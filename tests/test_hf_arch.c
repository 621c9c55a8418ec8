/* tests/test_hf_arch.c - the architecture table's conversion parts on synthetic models (no
 * ../shared needed): experts merged into 3-D tensors and split back (Mixtral, Qwen2-MoE
 * order), Gemma's norm + 1, GPT-NeoX's query_key_value order, config.json hyperparameters
 * for the new families (partial rotary, 4 * n_embd, no file type, bools), and every entry's
 * tables read both ways. ../shared's reference conversions are tests/cli/arch_convert.sh's. */
#include "core/arch.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "th.h"
#include "th_model.h"

#include <stdint.h>
#include <sys/stat.h>

/* An empty model of a family with HF names (as pare_hf_load leaves it). */
static pare_model *hf_model(const char *arch) {
    pare_model *m = pare_model_new(PARE_FORMAT_HF, NULL);
    if (m) m->arch = strdup(arch);
    return m;
}

static float *read_all(const pare_tensor *t) {
    pare_err err = {0};
    float *v = malloc(t->n_bytes ? t->n_bytes : 1);
    CHECK_OK(pare_tensor_read(t, v, &err), &err);
    return v;
}

static void set_u32(pare_model *m, const char *key, uint64_t v) {
    pare_err err = {0};
    CHECK_OK(pare_meta_set_uint(&m->meta, key, PARE_META_U32, v, &err), &err);
}

/* Every tensor of a equals the tensor of b with the same name, byte for byte. */
static void same_tensors(const pare_model *a, const pare_model *b) {
    CHECK_MSG(a->n_tensors == b->n_tensors, "%zu tensors, want %zu", a->n_tensors, b->n_tensors);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pare_tensor *x = &a->tensors[i], *y = pare_model_find(b, x->name);
        CHECK_MSG(y && y->n_bytes == x->n_bytes && y->type == x->type, "tensor %s", x->name);
        if (!y || y->n_bytes != x->n_bytes) continue;
        float *p = read_all(x), *q = read_all(y);
        CHECK_MSG(memcmp(p, q, x->n_bytes) == 0, "tensor %s: bytes differ", x->name);
        free(p);
        free(q);
    }
}

/* ------------------------------------------------------------------------ experts */

/* A Mixtral-shaped model with HF names, in file order: attention, router, then the experts
 * w1/w2/w3 expert by expert. */
static pare_model *mixtral_model(int n_exp) {
    pare_model *m = hf_model("llama");
    th_add_f32(m, "model.embed_tokens.weight", 12, 8, 1);
    for (int l = 0; l < 2; l++) {
        char n[128];
#define T(suffix, d0, d1, seed) (snprintf(n, sizeof n, "model.layers.%d." suffix, l), th_add_f32(m, n, d0, d1, seed + 100 * l))
        T("input_layernorm.weight", 8, 0, 2);
        T("self_attn.q_proj.weight", 8, 8, 3);
        T("self_attn.k_proj.weight", 4, 8, 4);
        T("self_attn.v_proj.weight", 4, 8, 5);
        T("self_attn.o_proj.weight", 8, 8, 6);
        T("post_attention_layernorm.weight", 8, 0, 7);
        T("block_sparse_moe.gate.weight", n_exp, 8, 8);
#undef T
        for (int e = 0; e < n_exp; e++)
            for (int w = 1; w <= 3; w++) {
                snprintf(n, sizeof n, "model.layers.%d.block_sparse_moe.experts.%d.w%d.weight", l, e, w);
                th_add_f32(m, n, w == 2 ? 8 : 6, w == 2 ? 6 : 8, 10 + 10 * e + w + 100 * l);
            }
    }
    th_add_f32(m, "model.norm.weight", 8, 0, 90);
    th_add_f32(m, "lm_head.weight", 12, 8, 91);
    set_u32(m, "llama.attention.head_count", 2);
    set_u32(m, "llama.attention.head_count_kv", 1);
    set_u32(m, "llama.block_count", 2);
    set_u32(m, "llama.expert_count", (uint64_t)n_exp);
    return m;
}

static void test_experts(void) {
    pare_err err = {0};
    pare_model *m = mixtral_model(3), *orig = mixtral_model(3);
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    /* 1 + 2 * (7 + 3) + 2 tensors: each block's 9 expert tensors became 3 */
    CHECK_MSG(m->n_tensors == 23, "%zu tensors", m->n_tensors);
    const pare_tensor *g = pare_model_find(m, "blk.1.ffn_gate_exps.weight");
    const pare_tensor *d = pare_model_find(m, "blk.1.ffn_down_exps.weight");
    CHECK(g && g->n_dims == 3 && g->ne[0] == 8 && g->ne[1] == 6 && g->ne[2] == 3);
    CHECK(d && d->n_dims == 3 && d->ne[0] == 6 && d->ne[1] == 8 && d->ne[2] == 3);
    /* llama.cpp's order: router first (file order), then gate, down, up where the last expert was */
    if (m->n_tensors == 23) {
        CHECK(strcmp(m->tensors[7].name, "blk.0.ffn_gate_inp.weight") == 0);
        CHECK(strcmp(m->tensors[8].name, "blk.0.ffn_gate_exps.weight") == 0);
        CHECK(strcmp(m->tensors[9].name, "blk.0.ffn_down_exps.weight") == 0);
        CHECK(strcmp(m->tensors[10].name, "blk.0.ffn_up_exps.weight") == 0);
    }
    if (g) {
        /* expert e is the e-th block of the merged bytes */
        float *v = read_all(g);
        for (int e = 0; e < 3; e++) {
            char n[128];
            snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.w1.weight", e);
            const pare_tensor *s = pare_model_find(orig, n);
            CHECK(s && memcmp((const uint8_t *)v + (size_t)e * s->n_bytes, s->data, s->n_bytes) == 0);
        }
        free(v);
    }
    /* and back: per-expert HF tensors again, the same bytes (q/k permuted back too) */
    CHECK_OK(pare_gguf_to_hf(m, &err), &err);
    same_tensors(m, orig);
    pare_model_free(m);
    /* a block with an expert missing is refused */
    m = mixtral_model(3);
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, "model.layers.0.block_sparse_moe.experts.2.w3.weight") == 0) {
            pare_tensor_clear(&m->tensors[i]);
            memmove(&m->tensors[i], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
            m->n_tensors--;
        }
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EINPUT && strstr(err.msg, "expert"));
    pare_model_free(m);
    pare_model_free(orig);
}

/* Qwen2-MoE: down, gate, up; the shared expert and its gate map by name. */
static void test_qwen2moe_names(void) {
    char out[256];
    CHECK(pare_hf_name_to_gguf("qwen2moe", "model.layers.3.mlp.shared_expert_gate.weight", out, sizeof out) &&
          strcmp(out, "blk.3.ffn_gate_inp_shexp.weight") == 0);
    CHECK(pare_hf_name_to_gguf("qwen2moe", "model.layers.3.mlp.gate.weight", out, sizeof out) &&
          strcmp(out, "blk.3.ffn_gate_inp.weight") == 0);
    CHECK(pare_gguf_name_to_hf("qwen2moe", "blk.0.ffn_up_shexp.weight", out, sizeof out) &&
          strcmp(out, "model.layers.0.mlp.shared_expert.up_proj.weight") == 0);
    CHECK(pare_gguf_name_to_hf("olmo2", "blk.1.post_attention_norm.weight", out, sizeof out) &&
          strcmp(out, "model.layers.1.post_attention_layernorm.weight") == 0);
    CHECK(pare_hf_name_to_gguf("gemma2", "model.layers.0.pre_feedforward_layernorm.weight", out, sizeof out) &&
          strcmp(out, "blk.0.ffn_norm.weight") == 0);
    CHECK(pare_hf_name_to_gguf("gptneox", "embed_out.weight", out, sizeof out) && strcmp(out, "output.weight") == 0);
    CHECK(pare_hf_name_to_gguf("phi2", "model.final_layernorm.bias", out, sizeof out) &&
          strcmp(out, "output_norm.bias") == 0);
    CHECK(!pare_hf_name_to_gguf("phi2", "model.norm.weight", out, sizeof out));
}

/* ------------------------------------------------------------------------ transforms */

static void test_gemma_norm(void) {
    pare_err err = {0};
    pare_model *m = hf_model("gemma");
    th_add_f32(m, "model.embed_tokens.weight", 12, 8, 1);
    th_add_f32(m, "model.layers.0.input_layernorm.weight", 8, 0, 2);
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 8, 8, 3);
    th_add_f32(m, "model.norm.weight", 8, 0, 4);
    th_add_f32(m, "lm_head.weight", 12, 8, 5); /* Gemma's converter never writes one */
    set_u32(m, "gemma.attention.head_count", 2);
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    CHECK(m->n_tensors == 4 && !pare_model_find(m, "output.weight"));
    const pare_tensor *n = pare_model_find(m, "blk.0.attn_norm.weight"), *q = pare_model_find(m, "blk.0.attn_q.weight");
    if (n && q) {
        float *v = read_all(n), *w = read_all(q);
        CHECK(v[0] == 3.0f && v[5] == 3.0f + 5.0f / 64.0f); /* 1 + w */
        CHECK(w[1] == 3.0f + 1.0f / 64.0f);                 /* not permuted: gemma keeps HF rows */
        free(v);
        free(w);
    }
    CHECK_OK(pare_gguf_to_hf(m, &err), &err);
    n = pare_model_find(m, "model.norm.weight");
    if (n) {
        float *v = read_all(n);
        CHECK(v[0] == 4.0f); /* w again */
        free(v);
    }
    pare_model_free(m);
}

static void test_neox_qkv(void) {
    pare_err err = {0};
    /* 2 heads of 4: HF rows (head, {q,k,v}, j) -> GGUF ({q,k,v}, head, j) */
    pare_model *m = hf_model("gptneox");
    th_add_f32(m, "gpt_neox.embed_in.weight", 12, 8, 1);
    th_add_f32(m, "gpt_neox.layers.0.attention.query_key_value.weight", 24, 8, 0);
    th_add_f32(m, "gpt_neox.layers.0.attention.query_key_value.bias", 24, 0, 0);
    set_u32(m, "gptneox.attention.head_count", 2);
    pare_model *orig = hf_model("gptneox");
    th_add_f32(orig, "gpt_neox.embed_in.weight", 12, 8, 1);
    th_add_f32(orig, "gpt_neox.layers.0.attention.query_key_value.weight", 24, 8, 0);
    th_add_f32(orig, "gpt_neox.layers.0.attention.query_key_value.bias", 24, 0, 0);
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    const pare_tensor *b = pare_model_find(m, "blk.0.attn_qkv.bias");
    if (b) {
        float *v = read_all(b);
        /* GGUF row r = (part, head, j) came from HF row (head * 3 + part) * 4 + j */
        for (int part = 0; part < 3; part++)
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 4; j++) {
                    int r = (part * 2 + h) * 4 + j, src = (h * 3 + part) * 4 + j;
                    CHECK_MSG(v[r] == (float)src / 64.0f, "row %d", r);
                }
        free(v);
    }
    CHECK_OK(pare_gguf_to_hf(m, &err), &err);
    same_tensors(m, orig);
    pare_model_free(m);
    pare_model_free(orig);
}

/* ------------------------------------------------------------------------ config.json */

#define BPE_TOKENIZER                                                                                                \
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 9, \"content\": \"<|endoftext|>\", \"special\": true}], "     \
    "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "             \
    "\"trim_offsets\": true, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": "  \
    "\"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5, \"abc\": 6, "  \
    "\"\\u0120ab\": 7, \"d\": 8}, \"merges\": [\"a b\", \"\\u0120 a\", \"ab c\", \"\\u0120 ab\"]}}"

/* The keys of a metadata in order, as "a,b,c,". */
static void key_list(const pare_meta *m, char *buf, size_t cap) {
    buf[0] = 0;
    for (size_t i = 0; i < m->n; i++) {
        strncat(buf, m->kv[i].key, cap - strlen(buf) - 2);
        strcat(buf, ",");
    }
}

/* Writes a folder (config, BPE tokenizer, weights) and loads it. */
static pare_model *load_folder(const char *name, const char *config, pare_model *w) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", th.tmpdir, name);
    mkdir(dir, 0755);
    th_write_text(dir, "config.json", config);
    th_write_text(dir, "tokenizer.json", BPE_TOKENIZER);
    pare_err err = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(pare_safetensors_save(w, path, true, &err), &err);
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    return m;
}

static void test_config_gptneox(void) {
    pare_model *w = pare_model_new(PARE_FORMAT_SAFETENSORS, NULL);
    th_add_f32(w, "gpt_neox.embed_in.weight", 12, 16, 1);
    th_add_f32(w, "gpt_neox.layers.0.attention.query_key_value.weight", 48, 16, 2);
    th_add_f32(w, "embed_out.weight", 12, 16, 3);
    pare_model *m = load_folder("tiny-neox",
                                "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"hidden_size\": 16, "
                                "\"num_attention_heads\": 2, \"num_hidden_layers\": 1, \"intermediate_size\": 64, "
                                "\"max_position_embeddings\": 128, \"rotary_pct\": 0.25, \"layer_norm_eps\": 1e-5, "
                                "\"vocab_size\": 12, \"use_parallel_residual\": false}",
                                w);
    if (m) {
        char keys[2048];
        key_list(&m->meta, keys, sizeof keys);
        /* GPTNeoXModel.set_gguf_parameters: its order, rope dims int(0.25 * 8), a bool, no file type */
        CHECK_MSG(strstr(keys, "gptneox.context_length,gptneox.embedding_length,gptneox.block_count,"
                               "gptneox.feed_forward_length,gptneox.rope.dimension_count,gptneox.attention.head_count,"
                               "gptneox.use_parallel_residual,gptneox.attention.layer_norm_epsilon,tokenizer.ggml.model") != NULL,
                  "keys %s", keys);
        uint64_t rd = 0;
        bool par = true;
        CHECK(pare_meta_get_u64(&m->meta, "gptneox.rope.dimension_count", &rd) && rd == 2);
        CHECK(pare_meta_get_bool(&m->meta, "gptneox.use_parallel_residual", &par) && !par);
        CHECK(!pare_meta_get(&m->meta, "general.file_type"));
    }
    pare_model_free(m);
    pare_model_free(w);
}

static void test_config_phi2(void) {
    pare_model *w = pare_model_new(PARE_FORMAT_SAFETENSORS, NULL);
    th_add_f32(w, "model.embed_tokens.weight", 12, 20, 1);
    th_add_f32(w, "lm_head.weight", 12, 20, 2);
    th_add_f32(w, "lm_head.bias", 12, 0, 3);
    pare_model *m = load_folder("tiny-phi2",
                                "{\"architectures\": [\"PhiForCausalLM\"], \"hidden_size\": 20, "
                                "\"num_attention_heads\": 2, \"num_hidden_layers\": 1, \"intermediate_size\": 999, "
                                "\"max_position_embeddings\": 64, \"partial_rotary_factor\": 0.4, "
                                "\"layer_norm_eps\": 1e-5, \"vocab_size\": 12}",
                                w);
    if (m) {
        uint64_t v = 0;
        bool b = true;
        CHECK(pare_meta_get_u64(&m->meta, "phi2.feed_forward_length", &v) && v == 80); /* 4 * n_embd, not the config's */
        CHECK(pare_meta_get_u64(&m->meta, "phi2.rope.dimension_count", &v) && v == 4); /* int(0.4 * 20) // 2 */
        CHECK(pare_meta_get_bool(&m->meta, "tokenizer.ggml.add_bos_token", &b) && !b);
        const char *pre = pare_meta_get_str(&m->meta, "tokenizer.ggml.pre");
        CHECK(pre && strcmp(pre, "phi-2") == 0);
        /* back to a folder: partial_rotary_factor gives 4 again */
        pare_err err = {0};
        char dir[512];
        snprintf(dir, sizeof dir, "%s/tiny-phi2-back", th.tmpdir);
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        CHECK_OK(pare_hf_write_folder_meta(m, dir, true, &err), &err);
        CHECK_OK(pare_gguf_to_hf(m, &err), &err);
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        CHECK_OK(pare_safetensors_save(m, path, true, &err), &err);
        pare_model *m2 = NULL;
        CHECK_OK(pare_hf_load(dir, &m2, &err), &err);
        if (m2) {
            CHECK(pare_meta_get_u64(&m2->meta, "phi2.rope.dimension_count", &v) && v == 4);
            CHECK(pare_meta_get_u64(&m2->meta, "phi2.feed_forward_length", &v) && v == 80);
        }
        pare_model_free(m2);
    }
    pare_model_free(m);
    pare_model_free(w);
}

/* Every entry with conversion tables maps each of its names both ways and back. */
static void test_tables_both_ways(void) {
    size_t n;
    const pare_arch *all = pare_arch_all(&n);
    for (size_t i = 0; i < n; i++) {
        const pare_arch_conv *c = &all[i].conv;
        CHECK_MSG(c->global && c->block && c->hparams && c->hf_class && c->model_type, "%s: conversion part", all[i].name);
        CHECK_MSG(pare_arch_for_hf(c->hf_class, false) == &all[i], "%s: class %s", all[i].name, c->hf_class);
        for (size_t k = 0; c->block && k < c->n_block; k++) {
            char hf[256], g[256], back[256];
            snprintf(hf, sizeof hf, "%s7.%s.weight", c->block_prefixes[0], c->block[k].hf);
            CHECK_MSG(pare_hf_name_to_gguf(all[i].name, hf, g, sizeof g), "%s: %s", all[i].name, hf);
            CHECK_MSG(pare_gguf_name_to_hf(all[i].name, g, back, sizeof back) && strcmp(back, hf) == 0, "%s: %s back",
                      all[i].name, g);
        }
    }
}

int main(void) {
    if (!th_tmpdir("pare-test-hf-arch")) return 1;
    TH_RUN(test_experts);
    TH_RUN(test_qwen2moe_names);
    TH_RUN(test_gemma_norm);
    TH_RUN(test_neox_qkv);
    TH_RUN(test_config_gptneox);
    TH_RUN(test_config_phi2);
    TH_RUN(test_tables_both_ways);
    th_rm_rf(th.tmpdir);
    return th_done();
}
