/* tests/test_hf.c - HF folders: metadata and tensors against llama.cpp's conversion, name
 * maps, the q/k permutation, malformed folders (also written out with --write-corpus DIR). */
#include "formats/gguf.h"
#include "formats/hf.h"
#include "th.h"

#include <sys/stat.h>
#include <unistd.h>

static void test_names(void) {
    const char *hf[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                        "model.layers.31.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight",
                        "model.layers.2.self_attn.k_proj.bias", "model.layers.7.post_attention_layernorm.weight"};
    const char *gg[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.31.ffn_down.weight", "output_norm.weight",
                        "output.weight", "blk.2.attn_k.bias", "blk.7.ffn_norm.weight"};
    char out[128];
    for (size_t i = 0; i < sizeof hf / sizeof hf[0]; i++) {
        CHECK(pare_hf_name_to_gguf("llama", hf[i], out, sizeof out) && !strcmp(out, gg[i]));
        CHECK(pare_gguf_name_to_hf("qwen2", gg[i], out, sizeof out) && !strcmp(out, hf[i]));
    }
    CHECK(pare_hf_name_to_gguf("gpt2", "h.3.attn.c_attn.weight", out, sizeof out) && !strcmp(out, "blk.3.attn_qkv.weight"));
    CHECK(pare_hf_name_to_gguf("gpt2", "transformer.wpe.weight", out, sizeof out) && !strcmp(out, "position_embd.weight"));
    CHECK(pare_gguf_name_to_hf("gpt2", "blk.3.ffn_down.bias", out, sizeof out) && !strcmp(out, "transformer.h.3.mlp.c_proj.bias"));
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.x.mlp.up_proj.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.0.mlp.nonsense.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("falcon", "model.norm.weight", out, sizeof out));
}

static void test_permutation(void) {
    /* 2 heads of head_dim 4: HF rows (h, j, i) -> GGUF (h, i, j). */
    int32_t src[8] = {0, 1, 2, 3, 4, 5, 6, 7}, dst[8], back[8];
    pare_hf_permute_rows(src, dst, 8, sizeof(int32_t), 2, false);
    int32_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    CHECK(!memcmp(dst, want, sizeof dst));
    pare_hf_permute_rows(dst, back, 8, sizeof(int32_t), 2, true);
    CHECK(!memcmp(back, src, sizeof src));
}

/* pare_hf_load + pare_hf_to_gguf of the shared model against llama.cpp's f32 conversion. */
static void test_against_llama_cpp(void) {
    char *dir = th_shared_dup("models/fortune-llama");
    char *ref = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    if (dir && ref) {
        pare_model *m = NULL, *r = NULL;
        pare_err err = {0};
        CHECK_OK(pare_hf_load(dir, &m, &err), &err);
        CHECK_OK(pare_gguf_load(ref, &r, &err), &err);
        if (m) CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        if (m && r) {
            /* Every key of the reference but the quantization version, with type and value. */
            size_t same = 0;
            for (size_t i = 0; i < r->meta.n; i++) {
                const pare_kv *a = &r->meta.kv[i], *b = pare_meta_get(&m->meta, a->key);
                if (!strcmp(a->key, "general.quantization_version")) continue;
                bool eq = b && a->type == b->type;
                if (eq && a->type == PARE_META_STRING) eq = !strcmp(a->str.s, b->str.s);
                else if (eq && a->type == PARE_META_ARRAY)
                    eq = a->n == b->n && a->elem_type == b->elem_type &&
                         (a->elem_type == PARE_META_STRING ||
                          !memcmp(a->arr, b->arr, (size_t)a->n * pare_meta_type_size(a->elem_type)));
                else if (eq) eq = a->v.u64 == b->v.u64;
                CHECK_MSG(eq, "key %s differs", a->key);
                same += eq;
            }
            printf("  %zu of %zu reference keys equal\n", same, r->meta.n - 1);
            CHECK(m->n_tensors == r->n_tensors);
            size_t equal = 0;
            for (size_t i = 0; i < r->n_tensors; i++) {
                const pare_tensor *a = &r->tensors[i], *b = pare_model_find(m, a->name);
                CHECK_MSG(b != NULL, "no tensor %s", a->name);
                if (!b) continue;
                void *buf = malloc((size_t)b->n_bytes);
                CHECK_OK(pare_tensor_read(b, buf, &err), &err);
                bool eq = b->type == a->type && b->n_bytes == a->n_bytes && !memcmp(buf, a->data, (size_t)a->n_bytes);
                CHECK_MSG(eq, "tensor %s differs", a->name);
                equal += eq;
                free(buf);
            }
            printf("  %zu of %zu tensors byte-identical\n", equal, r->n_tensors);
        }
        pare_model_free(m);
        pare_model_free(r);
    }
    free(dir);
    free(ref);
}

/* ---- malformed folders ---- */

typedef struct {
    const char *name, *config, *tokenizer_model;
    size_t tokenizer_len;
} bad_case;

static const char good_cfg[] = "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 16, "
                               "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 4, "
                               "\"max_position_embeddings\": 16}";

static const bad_case bad_cases[] = {
    {"hf-config-not-json", "{\"model_type\": ", NULL, 0},
    {"hf-config-array", "[1, 2, 3]", NULL, 0},
    {"hf-config-no-model-type", "{\"hidden_size\": 8}", NULL, 0},
    {"hf-config-unknown-arch", "{\"model_type\": \"mamba\", \"hidden_size\": 8}", NULL, 0},
    {"hf-config-no-hidden", "{\"model_type\": \"llama\", \"intermediate_size\": 16, \"num_hidden_layers\": 1, "
                            "\"num_attention_heads\": 2, \"vocab_size\": 4}", NULL, 0},
    {"hf-config-absurd-layers", "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 16, "
                                "\"num_hidden_layers\": 1e12, \"num_attention_heads\": 2, \"vocab_size\": 4}", NULL, 0},
    {"hf-config-heads-misfit", "{\"model_type\": \"llama\", \"hidden_size\": 9, \"intermediate_size\": 16, "
                               "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 4}", NULL, 0},
    {"hf-config-kv-misfit", "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 16, "
                            "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 3, "
                            "\"vocab_size\": 4}", NULL, 0},
    {"hf-tokenizer-truncated", good_cfg, "\x0a\x20\x0a\x03", 4},
    {"hf-tokenizer-length-past-end", good_cfg, "\x0a\xff\xff\xff\x0f", 5},
    {"hf-tokenizer-bad-varint", good_cfg, "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12},
};

static void make_bad(const char *dir, const bad_case *c) {
    mkdir(dir, 0755);
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(c->config, f);
    fclose(f);
    /* Weights: one tiny valid safetensors file, so that only the named part is wrong. */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    f = fopen(p, "wb");
    const char hdr[] = "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}";
    uint64_t n = sizeof hdr - 1;
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, n, f);
    float z[8] = {0};
    fwrite(z, 4, 8, f);
    fclose(f);
    if (c->tokenizer_model) {
        snprintf(p, sizeof p, "%s/tokenizer.model", dir);
        f = fopen(p, "wb");
        fwrite(c->tokenizer_model, 1, c->tokenizer_len, f);
        fclose(f);
    }
}

static void rm_bad(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.model"};
    char p[1024];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_malformed(void) {
    char root[] = "/tmp/pare-hf-bad-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, bad_cases[i].name);
        make_bad(dir, &bad_cases[i]);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_hf_load(dir, &m, &err);
        CHECK_MSG((st == PARE_EINPUT || st == PARE_EUNSUPPORTED) && strstr(err.msg, bad_cases[i].name),
                  "%s: status %d '%s'", bad_cases[i].name, st, err.msg);
        pare_model_free(m);
        rm_bad(dir);
    }
    /* The good config with the same weights loads. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/good", root);
    bad_case good = {"good", good_cfg, NULL, 0};
    make_bad(dir, &good);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    pare_model_free(m);
    rm_bad(dir);
    rmdir(root);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) {
        for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/%s", argv[2], bad_cases[i].name);
            make_bad(dir, &bad_cases[i]);
        }
        return 0;
    }
    TH_RUN(test_names);
    TH_RUN(test_permutation);
    TH_RUN(test_against_llama_cpp);
    TH_RUN(test_malformed);
    return th_done();
}
