/* tests/test_hf.c - Hugging Face folders: metadata, names and tensors against llama.cpp's own
 * conversions in ../shared, synthetic GPT-2 / Qwen2 folders built here, the q/k permutation,
 * folder export, and corrupt inputs.
 *
 *   test_hf                     run the tests
 *   test_hf --write-corpus DIR  write the corrupt folders (hf-NAME/) into DIR and exit
 */
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "th.h"
#include "th_model.h"

#include <cJSON.h>

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARED_F32 "models/fortune-llama-gguf/fortune-llama-f32.gguf"
#define SHARED_BF16 "models/fortune-llama-gguf/fortune-llama-bf16-sharded-bf16.gguf"
#define SHARED_DIR "models/fortune-llama"
#define SHARED_SHARDED "models/fortune-llama-bf16-sharded"

/* ------------------------------------------------------------------------ metadata compare */

static bool kv_equal(const pare_kv *a, const pare_kv *b) {
    if (strcmp(a->key, b->key) != 0 || a->type != b->type) return false;
    switch (a->type) {
    case PARE_META_STRING:
        return a->str.len == b->str.len && memcmp(a->str.s, b->str.s, a->str.len) == 0;
    case PARE_META_F32:
    case PARE_META_F64:
        return a->v.f64 == b->v.f64;
    case PARE_META_ARRAY:
        if (a->elem_type != b->elem_type || a->n != b->n) return false;
        if (a->elem_type == PARE_META_STRING) {
            const pare_str *x = a->arr, *y = b->arr;
            for (uint64_t i = 0; i < a->n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].s, y[i].s, x[i].len) != 0) return false;
            return true;
        }
        return a->n == 0 || memcmp(a->arr, b->arr, a->n * pare_meta_type_size(a->elem_type)) == 0;
    default:
        return a->v.u64 == b->v.u64;
    }
}

static bool skipped_key(const char *k, const char *const *skip) {
    for (; skip && *skip; skip++)
        if (strcmp(k, *skip) == 0) return true;
    return false;
}

/* Checks that got equals want (keys, order, types, values) except the keys in skip; prints
 * the first differences. Returns the number of differences. */
static int meta_compare(const pare_meta *got, const pare_meta *want, const char *const *skip) {
    size_t i = 0, j = 0;
    int diffs = 0;
    while (i < got->n || j < want->n) {
        if (i < got->n && skipped_key(got->kv[i].key, skip)) {
            i++;
            continue;
        }
        if (j < want->n && skipped_key(want->kv[j].key, skip)) {
            j++;
            continue;
        }
        if (i >= got->n || j >= want->n) {
            if (diffs++ < 5)
                fprintf(stderr, "  meta: %s '%s'\n", i < got->n ? "extra key" : "missing key",
                        i < got->n ? got->kv[i].key : want->kv[j].key);
            i += i < got->n;
            j += j < want->n;
            continue;
        }
        if (!kv_equal(&got->kv[i], &want->kv[j])) {
            if (diffs++ < 5) {
                fprintf(stderr, "  meta %zu: got '%s' (%s", i, got->kv[i].key, pare_meta_type_name(got->kv[i].type));
                if (got->kv[i].type == PARE_META_STRING) fprintf(stderr, " '%.60s'", got->kv[i].str.s);
                if (got->kv[i].type == PARE_META_ARRAY) fprintf(stderr, " of %llu", (unsigned long long)got->kv[i].n);
                fprintf(stderr, "), want '%s' (%s", want->kv[j].key, pare_meta_type_name(want->kv[j].type));
                if (want->kv[j].type == PARE_META_STRING) fprintf(stderr, " '%.60s'", want->kv[j].str.s);
                if (want->kv[j].type == PARE_META_ARRAY) fprintf(stderr, " of %llu", (unsigned long long)want->kv[j].n);
                fprintf(stderr, ")\n");
            }
        }
        i++;
        j++;
    }
    return diffs;
}

static const char *const writer_keys[] = {"general.quantization_version", NULL};

/* ------------------------------------------------------------------------ tensor compare */

/* Compares every tensor of got with want: names in order, types, shapes, bytes (through
 * pare_tensor_read). widen_1d: want's 1-D tensors are F32 while got's are BF16 (compared after
 * widening). Prints the largest absolute difference seen. */
static void tensors_compare_ex(const pare_model *got, const pare_model *want, bool widen_1d, bool by_name) {
    CHECK_MSG(got->n_tensors == want->n_tensors, "%zu tensors, want %zu", got->n_tensors, want->n_tensors);
    size_t n = got->n_tensors < want->n_tensors ? got->n_tensors : want->n_tensors;
    double max_diff = 0;
    int bad = 0;
    pare_err err = {0};
    for (size_t i = 0; i < n; i++) {
        const pare_tensor *a = &got->tensors[i], *b = &want->tensors[i];
        if (by_name && pare_model_find(want, a->name)) b = pare_model_find(want, a->name);
        bool widen = widen_1d && a->n_dims == 1 && a->type == PARE_TYPE_BF16 && b->type == PARE_TYPE_F32;
        bool same = strcmp(a->name, b->name) == 0 && (a->type == b->type || widen) && a->n_dims == b->n_dims &&
                    !memcmp(a->ne, b->ne, sizeof a->ne);
        if (!same) {
            if (bad++ < 5) {
                char s1[64], s2[64];
                fprintf(stderr, "  tensor %zu: got %s %s %s, want %s %s %s\n", i, a->name, pare_type_name(a->type),
                        pare_tensor_shape_str(a, s1, sizeof s1), b->name, pare_type_name(b->type),
                        pare_tensor_shape_str(b, s2, sizeof s2));
            }
            continue;
        }
        int64_t ne = pare_tensor_nelements(a);
        float *x = malloc((size_t)ne * sizeof *x), *y = malloc((size_t)ne * sizeof *y);
        uint8_t *ra = malloc(a->n_bytes + 1), *rb = malloc(b->n_bytes + 1);
        CHECK_OK(pare_tensor_read(a, ra, &err), &err);
        CHECK_OK(pare_tensor_read(b, rb, &err), &err);
        if (!widen && memcmp(ra, rb, a->n_bytes) != 0) {
            if (bad++ < 5) fprintf(stderr, "  tensor %s: bytes differ\n", a->name);
        }
        if (pare_type_get(a->type)->is_float) {
            pare_plain_to_f32(a->type, ra, x, ne);
            pare_plain_to_f32(b->type, rb, y, ne);
            for (int64_t k = 0; k < ne; k++) {
                double d = fabs((double)x[k] - (double)y[k]);
                if (d > max_diff || d != d) max_diff = d;
            }
        }
        free(x), free(y), free(ra), free(rb);
    }
    printf("  %zu tensors compared, largest difference %g\n", n, max_diff);
    CHECK_MSG(bad == 0, "%d tensors differ", bad);
    CHECK_MSG(max_diff == 0, "largest difference %g (expected bit-exact)", max_diff);
}

static void tensors_compare(const pare_model *got, const pare_model *want, bool widen_1d) {
    tensors_compare_ex(got, want, widen_1d, false);
}

/* ------------------------------------------------------------------------ shared references */

static void test_fortune_meta(void) {
    const char *dir = th_shared(SHARED_DIR);
    if (!dir) return;
    char *d = strdup(dir);
    const char *ref = th_shared(SHARED_F32);
    if (!ref) {
        free(d);
        return;
    }
    pare_err err = {0};
    pare_model *m = NULL, *r = NULL;
    CHECK_OK(pare_hf_load(d, &m, &err), &err);
    CHECK_OK(pare_gguf_load(ref, &r, &err), &err);
    if (m && r) {
        CHECK(m->format == PARE_FORMAT_HF && !m->gguf_names && strcmp(m->arch, "llama") == 0);
        int diffs = meta_compare(&m->meta, &r->meta, writer_keys);
        printf("  %zu keys, %d differences from llama.cpp's conversion\n", m->meta.n, diffs);
        CHECK_MSG(diffs == 0, "%d metadata differences", diffs);
        CHECK(m->n_tensors == 38 && pare_model_find(m, "model.embed_tokens.weight"));
        CHECK(!pare_model_find(m, "lm_head.weight"));
    }
    pare_model_free(m);
    pare_model_free(r);
    free(d);
}

static void test_fortune_tensors(void) {
    const char *dir = th_shared(SHARED_DIR);
    if (!dir) return;
    char *d = strdup(dir);
    const char *ref = th_shared(SHARED_F32);
    if (!ref) {
        free(d);
        return;
    }
    pare_err err = {0};
    pare_model *m = NULL, *r = NULL;
    CHECK_OK(pare_hf_load(d, &m, &err), &err);
    CHECK_OK(pare_gguf_load(ref, &r, &err), &err);
    if (m && r) {
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        CHECK(m->gguf_names);
        tensors_compare(m, r, false);
    }
    pare_model_free(m);
    pare_model_free(r);
    free(d);
}


static void test_bf16_sharded(void) {
    const char *dir = th_shared(SHARED_SHARDED);
    if (!dir) return;
    char *d = strdup(dir);
    const char *ref = th_shared(SHARED_BF16);
    if (!ref) {
        free(d);
        return;
    }
    pare_err err = {0};
    pare_model *m = NULL, *r = NULL;
    CHECK_OK(pare_hf_load(d, &m, &err), &err);
    CHECK_OK(pare_gguf_load(ref, &r, &err), &err);
    if (m && r) {
        /* general.name "Fortune Llama Bf16 Sharded", finetune "sharded", basename "fortune-llama" */
        int diffs = meta_compare(&m->meta, &r->meta, writer_keys);
        printf("  %zu keys, %d differences from llama.cpp's conversion\n", m->meta.n, diffs);
        CHECK_MSG(diffs == 0, "%d metadata differences", diffs);
        CHECK(m->n_maps == 3);
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        /* The converter widens 1-D tensors to F32 (a pipeline step): compared after widening. */
        tensors_compare(m, r, true);
    }
    pare_model_free(m);
    pare_model_free(r);
    free(d);
}

/* A folder with only pytorch_model.bin (symlinks to the shared files) loads the same tensors,
 * in the pickle's order, and the same metadata. */
static void test_pytorch_only(void) {
    const char *dir = th_shared(SHARED_DIR);
    if (!dir) return;
    char *src = realpath(dir, NULL);
    const char *ref = th_shared(SHARED_F32);
    if (!ref || !src) {
        free(src);
        return;
    }
    const char *folder = th_tmp_path("fortune-llama");
    mkdir(folder, 0755);
    static const char *const files[] = {"config.json", "generation_config.json", "pytorch_model.bin",
                                        "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", folder, files[i]);
        CHECK_MSG(symlink(a, b) == 0, "symlink %s: %s", b, strerror(errno));
    }
    pare_err err = {0};
    pare_model *m = NULL, *r = NULL;
    CHECK_OK(pare_hf_load(folder, &m, &err), &err);
    CHECK_OK(pare_gguf_load(ref, &r, &err), &err);
    if (m && r) {
        int diffs = meta_compare(&m->meta, &r->meta, writer_keys);
        CHECK_MSG(diffs == 0, "%d metadata differences", diffs);
        /* torch.save kept the module order (the converter writes that order too) */
        CHECK(m->n_tensors == 38 && strcmp(m->tensors[1].name, "model.layers.0.self_attn.q_proj.weight") == 0);
        /* the same file as a one-shard pytorch_model.bin.index.json checkpoint */
        cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
        for (size_t i = 0; i < m->n_tensors; i++)
            cJSON_AddStringToObject(wm, m->tensors[i].name, "pytorch_model-00001-of-00001.bin");
        char *text = cJSON_Print(idx), a[1024], b[1024];
        const char *f2 = th_tmp_path("fortune-llama-idx");
        mkdir(f2, 0755);
        th_write_text(f2, "pytorch_model.bin.index.json", text);
        static const char *const links[][2] = {{"pytorch_model.bin", "pytorch_model-00001-of-00001.bin"},
                                               {"config.json", "config.json"},
                                               {"tokenizer.model", "tokenizer.model"}};
        for (int i = 0; i < 3; i++) {
            snprintf(a, sizeof a, "%s/%s", src, links[i][0]);
            snprintf(b, sizeof b, "%s/%s", f2, links[i][1]);
            CHECK(symlink(a, b) == 0);
        }
        pare_model *m2 = NULL;
        CHECK_OK(pare_hf_load(f2, &m2, &err), &err);
        CHECK(m2 && m2->n_tensors == 38);
        if (m2) {
            CHECK_OK(pare_hf_to_gguf(m2, &err), &err);
            tensors_compare_ex(m2, r, false, true);
        }
        /* an index listing a tensor no shard holds */
        cJSON_AddStringToObject(wm, "model.extra.weight", "pytorch_model-00001-of-00001.bin");
        free(text);
        text = cJSON_Print(idx);
        th_write_text(f2, "pytorch_model.bin.index.json", text);
        pare_model *m3 = NULL;
        CHECK(pare_hf_load(f2, &m3, &err) == PARE_EINPUT && strstr(err.msg, "weight_map"));
        free(text);
        cJSON_Delete(idx);
        pare_model_free(m2);
        pare_model_free(m3);
        th_rm_rf(f2);
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        tensors_compare_ex(m, r, false, true);
    }
    pare_model_free(m);
    pare_model_free(r);
    th_rm_rf(folder);
    free(src);
}

/* ------------------------------------------------------------------------ permutation */

static void test_permute(void) {
    /* Hand-checked: 2 heads of head_dim 4, rows named by their index. HF order within a head
     * is [x0 x1 | y0 y1] (rotate_half pairs x_i with y_i); llama.cpp wants x0 y0 x1 y1. */
    uint8_t src[8] = {0, 1, 2, 3, 4, 5, 6, 7}, dst[8], back[8];
    pare_hf_permute_rows(src, dst, 8, 1, 2, false);
    static const uint8_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    CHECK(memcmp(dst, want, 8) == 0);
    pare_hf_permute_rows(dst, back, 8, 1, 2, true);
    CHECK(memcmp(back, src, 8) == 0);
    /* One head of 8: [0 1 2 3 | 4 5 6 7] -> 0 4 1 5 2 6 3 7 */
    static const uint8_t want1[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    pare_hf_permute_rows(src, dst, 8, 1, 1, false);
    CHECK(memcmp(dst, want1, 8) == 0);
    /* Round trip on wide rows and several head counts. */
    enum { ROWS = 96, RB = 12 };
    static uint8_t a[ROWS * RB], b[ROWS * RB], c[ROWS * RB];
    for (int i = 0; i < ROWS * RB; i++) a[i] = (uint8_t)(i * 7 + 3);
    int bad = 0;
    const int heads[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 48};
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        pare_hf_permute_rows(a, b, ROWS, RB, heads[h], false);
        pare_hf_permute_rows(b, c, ROWS, RB, heads[h], true);
        bad += memcmp(a, c, sizeof a) != 0;
        bad += heads[h] < ROWS / 2 && memcmp(a, b, sizeof a) == 0; /* it does move rows */
    }
    CHECK_MSG(bad == 0, "%d head counts failed the round trip", bad);
}

/* ------------------------------------------------------------------------ names */

typedef struct {
    const char *hf, *gguf;
} name_case;

static int check_names(const char *arch, const name_case *c, size_t n, bool back) {
    int bad = 0;
    char out[256];
    for (size_t i = 0; i < n; i++) {
        if (!pare_hf_name_to_gguf(arch, c[i].hf, out, sizeof out) || strcmp(out, c[i].gguf) != 0) {
            fprintf(stderr, "  %s: %s -> %s, want %s\n", arch, c[i].hf, out, c[i].gguf);
            bad++;
        }
        if (back && (!pare_gguf_name_to_hf(arch, c[i].gguf, out, sizeof out) || strcmp(out, c[i].hf) != 0)) {
            fprintf(stderr, "  %s: %s <- %s, want %s\n", arch, c[i].gguf, out, c[i].hf);
            bad++;
        }
    }
    return bad;
}

static void test_names(void) {
    static const name_case llama[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
        {"model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight"},
        {"model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"},
        {"model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight"},
        {"model.layers.31.post_attention_layernorm.weight", "blk.31.ffn_norm.weight"},
        {"model.layers.31.mlp.gate_proj.weight", "blk.31.ffn_gate.weight"},
        {"model.layers.31.mlp.up_proj.weight", "blk.31.ffn_up.weight"},
        {"model.layers.31.mlp.down_proj.weight", "blk.31.ffn_down.weight"},
    };
    static const name_case qwen2[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.7.input_layernorm.weight", "blk.7.attn_norm.weight"},
        {"model.layers.7.self_attn.q_proj.weight", "blk.7.attn_q.weight"},
        {"model.layers.7.self_attn.q_proj.bias", "blk.7.attn_q.bias"},
        {"model.layers.7.self_attn.k_proj.weight", "blk.7.attn_k.weight"},
        {"model.layers.7.self_attn.k_proj.bias", "blk.7.attn_k.bias"},
        {"model.layers.7.self_attn.v_proj.weight", "blk.7.attn_v.weight"},
        {"model.layers.7.self_attn.v_proj.bias", "blk.7.attn_v.bias"},
        {"model.layers.7.self_attn.o_proj.weight", "blk.7.attn_output.weight"},
        {"model.layers.7.post_attention_layernorm.weight", "blk.7.ffn_norm.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
    };
    static const name_case gpt2[] = {
        {"transformer.wte.weight", "token_embd.weight"},
        {"transformer.wpe.weight", "position_embd.weight"},
        {"transformer.ln_f.weight", "output_norm.weight"},
        {"transformer.ln_f.bias", "output_norm.bias"},
        {"lm_head.weight", "output.weight"},
        {"transformer.h.11.ln_1.weight", "blk.11.attn_norm.weight"},
        {"transformer.h.11.ln_1.bias", "blk.11.attn_norm.bias"},
        {"transformer.h.11.attn.c_attn.weight", "blk.11.attn_qkv.weight"},
        {"transformer.h.11.attn.c_attn.bias", "blk.11.attn_qkv.bias"},
        {"transformer.h.11.attn.c_proj.weight", "blk.11.attn_output.weight"},
        {"transformer.h.11.attn.c_proj.bias", "blk.11.attn_output.bias"},
        {"transformer.h.11.ln_2.weight", "blk.11.ffn_norm.weight"},
        {"transformer.h.11.ln_2.bias", "blk.11.ffn_norm.bias"},
        {"transformer.h.11.mlp.c_fc.weight", "blk.11.ffn_up.weight"},
        {"transformer.h.11.mlp.c_fc.bias", "blk.11.ffn_up.bias"},
        {"transformer.h.11.mlp.c_proj.weight", "blk.11.ffn_down.weight"},
        {"transformer.h.11.mlp.c_proj.bias", "blk.11.ffn_down.bias"},
    };
    /* GPT2Model checkpoints (openai-community/gpt2) have no "transformer." prefix. */
    static const name_case gpt2_bare[] = {
        {"wte.weight", "token_embd.weight"},
        {"wpe.weight", "position_embd.weight"},
        {"ln_f.weight", "output_norm.weight"},
        {"h.0.attn.c_attn.weight", "blk.0.attn_qkv.weight"},
        {"h.0.mlp.c_proj.bias", "blk.0.ffn_down.bias"},
    };
    int bad = check_names("llama", llama, sizeof llama / sizeof llama[0], true);
    bad += check_names("qwen2", qwen2, sizeof qwen2 / sizeof qwen2[0], true);
    bad += check_names("gpt2", gpt2, sizeof gpt2 / sizeof gpt2[0], true);
    bad += check_names("gpt2", gpt2_bare, sizeof gpt2_bare / sizeof gpt2_bare[0], false);
    CHECK_MSG(bad == 0, "%d name mappings wrong", bad);
    char out[64];
    /* unknown names, skipped names, wrong arch, leading zeros, too small a buffer */
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.0.self_attn.rotary_emb.inv_freq", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.0.mlp.c_fc.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.01.mlp.up_proj.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("gpt2", "model.embed_tokens.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("falcon", "model.embed_tokens.weight", out, sizeof out));
    CHECK(!pare_hf_name_to_gguf("llama", "model.layers.0.mlp.up_proj.weight", out, 8));
    CHECK(!pare_gguf_name_to_hf("llama", "blk.0.attn_qkv.weight", out, sizeof out));
    /* GGUF names map to themselves (gguf-py does this), e.g. the generated rope_freqs */
    CHECK(pare_hf_name_to_gguf("llama", "rope_freqs.weight", out, sizeof out) && strcmp(out, "rope_freqs.weight") == 0);
}

/* ------------------------------------------------------------------------ export round trip */

/* Saves m (HF names) as DIR/model.safetensors with only "format": "pt" as __metadata__. */
static void save_weights(pare_model *m, const char *dir) {
    pare_err err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    pare_meta keep = m->meta, st = {0};
    CHECK_OK(pare_meta_set_str(&st, "format", "pt", 2, &err), &err);
    m->meta = st;
    CHECK_OK(pare_safetensors_save(m, path, true, &err), &err);
    m->meta = keep;
    pare_meta_free(&st);
}

/* GGUF -> HF names -> folder (safetensors + pare_hf_write_folder_meta) -> pare_hf_load ->
 * GGUF names: the metadata and tensors come back. */
static void roundtrip_folder(pare_model *g, const char *folder, const pare_model *want) {
    pare_err err = {0};
    mkdir(folder, 0755);
    CHECK_OK(pare_gguf_to_hf(g, &err), &err);
    CHECK(!g->gguf_names);
    CHECK_OK(pare_hf_write_folder_meta(g, folder, false, &err), &err);
    CHECK(pare_hf_write_folder_meta(g, folder, false, &err) != PARE_OK); /* exists, no force */
    CHECK_OK(pare_hf_write_folder_meta(g, folder, true, &err), &err);
    save_weights(g, folder);
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(folder, &m, &err), &err);
    if (m) {
        int diffs = meta_compare(&m->meta, &want->meta, writer_keys);
        printf("  %zu keys back, %d differences\n", m->meta.n, diffs);
        CHECK_MSG(diffs == 0, "%d metadata differences after the round trip", diffs);
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        tensors_compare(m, want, false);
    }
    pare_model_free(m);
}

static void test_fortune_roundtrip(void) {
    const char *ref = th_shared(SHARED_F32);
    if (!ref) return;
    pare_err err = {0};
    pare_model *g = NULL, *want = NULL;
    CHECK_OK(pare_gguf_load(ref, &g, &err), &err);
    CHECK_OK(pare_gguf_load(ref, &want, &err), &err);
    if (g && want) {
        const char *dir = th_tmp_path("rt");
        mkdir(dir, 0755);
        roundtrip_folder(g, th_tmp_path("rt/fortune-llama"), want);
        /* tokenizer.model: the same pieces, scores and types as the original */
        pare_model *g2 = NULL;
        CHECK_OK(pare_gguf_load(ref, &g2, &err), &err);
        th_rm_rf(dir);
        pare_model_free(g2);
    }
    pare_model_free(g);
    pare_model_free(want);
}

/* ------------------------------------------------------------------------ synthetic folders */

#define GPT2_CONFIG                                                                                                  \
    "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_layer\": 2, \"n_ctx\": 64, "          \
    "\"n_positions\": 64, \"n_embd\": 16, \"n_head\": 2, \"layer_norm_epsilon\": 1e-05, \"vocab_size\": 12, "       \
    "\"bos_token_id\": 9, \"eos_token_id\": 9, \"n_inner\": null}"
#define GPT2_TOKENIZER                                                                                               \
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 9, \"content\": \"<|endoftext|>\", \"special\": true}], "     \
    "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "             \
    "\"trim_offsets\": true, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": "  \
    "\"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5, \"abc\": 6, "  \
    "\"\\u0120ab\": 7, \"d\": 8}, \"merges\": [\"a b\", \"\\u0120 a\", \"ab c\", \"\\u0120 ab\"]}}"
#define GPT2_TOKCFG                                                                                                  \
    "{\"add_bos_token\": false, \"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\", "               \
    "\"unk_token\": \"<|endoftext|>\", \"tokenizer_class\": \"GPT2Tokenizer\"}"

static pare_model *gpt2_weights(void) {
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "gpt2");
    th_add_f32(m, "transformer.wte.weight", 12, 16, 1);
    th_add_f32(m, "transformer.wpe.weight", 64, 16, 2);
    for (int l = 0; l < 2; l++) {
        char n[128];
#define GP(suffix, d0, d1, seed) (snprintf(n, sizeof n, "transformer.h.%d." suffix, l), th_add_f32(m, n, d0, d1, seed))
        GP("ln_1.weight", 16, 0, 3);
        GP("ln_1.bias", 16, 0, 4);
        GP("attn.bias", 1, 64 * 64, 0); /* the causal mask buffer: dropped */
        GP("attn.c_attn.weight", 16, 48, 5); /* Conv1D: (in, out) */
        GP("attn.c_attn.bias", 48, 0, 6);
        GP("attn.c_proj.weight", 16, 16, 7);
        GP("attn.c_proj.bias", 16, 0, 8);
        GP("ln_2.weight", 16, 0, 9);
        GP("ln_2.bias", 16, 0, 10);
        GP("mlp.c_fc.weight", 16, 64, 11);
        GP("mlp.c_fc.bias", 64, 0, 12);
        GP("mlp.c_proj.weight", 64, 16, 13);
        GP("mlp.c_proj.bias", 16, 0, 14);
#undef GP
    }
    th_add_f32(m, "transformer.ln_f.weight", 16, 0, 15);
    th_add_f32(m, "transformer.ln_f.bias", 16, 0, 16);
    return m;
}

static void make_folder(const char *dir, const char *config, const char *tokjson, const char *tokcfg, pare_model *w) {
    mkdir(dir, 0755);
    th_write_text(dir, "config.json", config);
    if (tokjson) th_write_text(dir, "tokenizer.json", tokjson);
    if (tokcfg) th_write_text(dir, "tokenizer_config.json", tokcfg);
    if (w) save_weights(w, dir);
}

static void check_u32(const pare_meta *m, const char *key, uint64_t want) {
    const pare_kv *kv = pare_meta_get(m, key);
    CHECK_MSG(kv && kv->type == PARE_META_U32 && kv->v.u64 == want, "%s: want u32 %llu", key,
              (unsigned long long)want);
}

static void check_str(const pare_meta *m, const char *key, const char *want) {
    const pare_kv *kv = pare_meta_get(m, key);
    CHECK_MSG(kv && kv->type == PARE_META_STRING && strcmp(kv->str.s, want) == 0, "%s: got '%s', want '%s'", key,
              kv && kv->type == PARE_META_STRING ? kv->str.s : "(none)", want);
}

/* The keys of a metadata in order, as "a,b,c". */
static void key_list(const pare_meta *m, char *buf, size_t cap) {
    buf[0] = 0;
    for (size_t i = 0; i < m->n; i++) {
        strncat(buf, m->kv[i].key, cap - strlen(buf) - 2);
        strcat(buf, ",");
    }
}

static void test_gpt2_folder(void) {
    const char *dir = th_tmp_path("tiny-gpt2");
    pare_model *w = gpt2_weights();
    make_folder(dir, GPT2_CONFIG, GPT2_TOKENIZER, GPT2_TOKCFG, w);
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (!m) {
        pare_model_free(w);
        return;
    }
    char keys[2048];
    key_list(&m->meta, keys, sizeof keys);
    /* GPT2Model.set_gguf_parameters' keys, then _set_vocab_gpt2's and SpecialVocab's */
    CHECK_MSG(strcmp(keys, "general.architecture,general.type,general.name,general.size_label,gpt2.block_count,"
                           "gpt2.context_length,gpt2.embedding_length,gpt2.feed_forward_length,"
                           "gpt2.attention.head_count,gpt2.attention.layer_norm_epsilon,general.file_type,tokenizer.ggml.model,"
                           "tokenizer.ggml.pre,tokenizer.ggml.tokens,tokenizer.ggml.token_type,tokenizer.ggml.merges,"
                           "tokenizer.ggml.bos_token_id,tokenizer.ggml.eos_token_id,tokenizer.ggml.unknown_token_id,"
                           "tokenizer.ggml.add_bos_token,") == 0,
              "keys %s", keys);
    check_str(&m->meta, "general.name", "Tiny Gpt2");
    check_str(&m->meta, "general.size_label", "8.0K"); /* 7808 + the output copy of wte (192) */
    check_str(&m->meta, "tokenizer.ggml.pre", "gpt-2");
    check_u32(&m->meta, "gpt2.feed_forward_length", 64);
    check_u32(&m->meta, "tokenizer.ggml.unknown_token_id", 9);
    const pare_kv *tok = pare_meta_get(&m->meta, "tokenizer.ggml.tokens");
    const pare_kv *tt = pare_meta_get(&m->meta, "tokenizer.ggml.token_type");
    CHECK(tok && tok->n == 12 && tt && tt->n == 12);
    if (tok && tok->n == 12 && tt) {
        const pare_str *t = tok->arr;
        const int32_t *ty = tt->arr;
        CHECK(strcmp(t[3].s, "\xc4\xa0") == 0 && ty[3] == 1);
        CHECK(strcmp(t[9].s, "<|endoftext|>") == 0 && ty[9] == 3);
        CHECK(strcmp(t[11].s, "[PAD11]") == 0 && ty[11] == 5);
    }
    const pare_kv *mg = pare_meta_get(&m->meta, "tokenizer.ggml.merges");
    CHECK(mg && mg->n == 4 && strcmp(((pare_str *)mg->arr)[1].s, "\xc4\xa0 a") == 0);
    /* to GGUF: mask buffers dropped, Conv1D weights transposed, output = wte */
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    CHECK(m->n_tensors == 2 + 2 * 12 + 2 + 1);
    /* in file order (as the reference conversions in ../shared/models/arch show): wte, its
     * output copy right after it, wpe, the blocks, ln_f last */
    CHECK(strcmp(m->tensors[0].name, "token_embd.weight") == 0);
    CHECK(strcmp(m->tensors[1].name, "output.weight") == 0);
    CHECK(strcmp(m->tensors[m->n_tensors - 1].name, "output_norm.bias") == 0);
    const pare_tensor *qkv = pare_model_find(m, "blk.1.attn_qkv.weight"), *emb = pare_model_find(m, "token_embd.weight");
    const pare_tensor *out = pare_model_find(m, "output.weight");
    const pare_tensor *src = pare_model_find(w, "transformer.h.1.attn.c_attn.weight");
    CHECK(qkv && qkv->ne[0] == 16 && qkv->ne[1] == 48 && src);
    if (qkv && src) {
        float *x = malloc(qkv->n_bytes);
        CHECK_OK(pare_tensor_read(qkv, x, &err), &err);
        const float *y = src->data;
        int bad = 0;
        for (int o = 0; o < 48; o++)
            for (int i = 0; i < 16; i++) bad += x[o * 16 + i] != y[i * 48 + o];
        CHECK_MSG(bad == 0, "%d transposed values differ", bad);
        free(x);
    }
    CHECK(emb && out && out == emb + 1 && out->n_bytes == emb->n_bytes);
    if (emb && out) {
        uint8_t *a = malloc(emb->n_bytes), *b = malloc(out->n_bytes);
        CHECK_OK(pare_tensor_read(emb, a, &err), &err);
        CHECK_OK(pare_tensor_read(out, b, &err), &err);
        CHECK(memcmp(a, b, emb->n_bytes) == 0);
        free(a), free(b);
    }
    /* and back: the original bytes under the original names, no output */
    CHECK_OK(pare_gguf_to_hf(m, &err), &err);
    CHECK(!pare_model_find(m, "lm_head.weight") && m->n_tensors == 2 + 2 * 12 + 2);
    int bad = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *a = &m->tensors[i], *b = pare_model_find(w, a->name);
        if (!b || a->n_bytes != b->n_bytes || memcmp(a->ne, b->ne, sizeof a->ne)) {
            bad++;
            continue;
        }
        uint8_t *x = malloc(a->n_bytes);
        CHECK_OK(pare_tensor_read(a, x, &err), &err);
        bad += memcmp(x, b->data, b->n_bytes) != 0;
        free(x);
    }
    CHECK_MSG(bad == 0, "%d tensors did not come back", bad);
    pare_model_free(m);
    pare_model_free(w);
}

/* GPT-2 through GGUF and back to a folder: tokenizer.json, merges, special ids. */
static void test_gpt2_roundtrip(void) {
    const char *dir = th_tmp_path("tiny-gpt2");
    pare_err err = {0};
    pare_model *m = NULL, *want = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    CHECK_OK(pare_hf_load(dir, &want, &err), &err);
    if (m && want) {
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        CHECK_OK(pare_hf_to_gguf(want, &err), &err);
        mkdir(th_tmp_path("rt2"), 0755);
        roundtrip_folder(m, th_tmp_path("rt2/tiny-gpt2"), want);
    }
    pare_model_free(m);
    pare_model_free(want);
}

#define QWEN2_CONFIG                                                                                                 \
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32, "                  \
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-06, "   \
    "\"rope_theta\": 1000000.0, \"max_position_embeddings\": 128, \"vocab_size\": 16, \"tie_word_embeddings\": "    \
    "true, \"bos_token_id\": 10, \"eos_token_id\": 11, \"_name_or_path\": \"Qwen/Qwen2.5-0.5B-Instruct\", "         \
    "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32}}"
#define QWEN2_TOKENIZER                                                                                              \
    "{\"added_tokens\": [{\"id\": 10, \"content\": \"<|endoftext|>\", \"special\": true}, {\"id\": 11, "            \
    "\"content\": \"<|im_start|>\", \"special\": true}, {\"id\": 12, \"content\": \"my\\u2581word\", \"special\": "  \
    "false}], \"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": " \
    "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"   \
    "\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "     \
    "\"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}, \"model\": {\"type\": "         \
    "\"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"e\": 4, \"ab\": 5, \"cd\": 6, \"abe\": 7}, "     \
    "\"merges\": [[\"a\", \"b\"], [\"c\", \"d\"], [\"ab\", \"e\"], [\"a b\", \"c\"]]}}"
#define QWEN2_TOKCFG                                                                                                 \
    "{\"bos_token\": null, \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"<|endoftext|>\", "                     \
    "\"chat_template\": \"{% for m in messages %}{{ m.content }}{% endfor %}\"}"

static pare_model *qwen2_weights(void) {
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "qwen2");
    th_add_f32(m, "model.embed_tokens.weight", 16, 16, 1);
    th_add_f32(m, "model.layers.0.input_layernorm.weight", 16, 0, 2);
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 16, 16, 3);
    th_add_f32(m, "model.layers.0.self_attn.q_proj.bias", 16, 0, 4);
    th_add_f32(m, "model.layers.0.self_attn.k_proj.weight", 8, 16, 5);
    th_add_f32(m, "model.layers.0.self_attn.k_proj.bias", 8, 0, 6);
    th_add_f32(m, "model.layers.0.self_attn.v_proj.weight", 8, 16, 7);
    th_add_f32(m, "model.layers.0.self_attn.v_proj.bias", 8, 0, 8);
    th_add_f32(m, "model.layers.0.self_attn.o_proj.weight", 16, 16, 9);
    th_add_f32(m, "model.layers.0.post_attention_layernorm.weight", 16, 0, 10);
    th_add_f32(m, "model.layers.0.mlp.gate_proj.weight", 32, 16, 11);
    th_add_f32(m, "model.layers.0.mlp.up_proj.weight", 32, 16, 12);
    th_add_f32(m, "model.layers.0.mlp.down_proj.weight", 16, 32, 13);
    th_add_f32(m, "model.norm.weight", 16, 0, 14);
    th_add_f32(m, "lm_head.weight", 16, 16, 1); /* tied: dropped */
    return m;
}

static void test_qwen2_folder(void) {
    const char *dir = th_tmp_path("qwen-tiny");
    pare_model *w = qwen2_weights();
    make_folder(dir, QWEN2_CONFIG, QWEN2_TOKENIZER, QWEN2_TOKCFG, w);
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (!m) {
        pare_model_free(w);
        return;
    }
    char keys[2048];
    key_list(&m->meta, keys, sizeof keys);
    /* names from _name_or_path; no vocab_size / rope.dimension_count for qwen2; yarn scaling;
     * special ids: tokenizer_config's eos and pad first, then config.json's bos */
    CHECK_MSG(strcmp(keys, "general.architecture,general.type,general.name,general.organization,general.finetune,"
                           "general.basename,general.size_label,qwen2.block_count,qwen2.context_length,"
                           "qwen2.embedding_length,qwen2.feed_forward_length,qwen2.attention.head_count,"
                           "qwen2.attention.head_count_kv,qwen2.rope.freq_base,"
                           "qwen2.attention.layer_norm_rms_epsilon,general.file_type,qwen2.rope.scaling.type,"
                           "qwen2.rope.scaling.factor,qwen2.rope.scaling.original_context_length,"
                           "tokenizer.ggml.model,tokenizer.ggml.pre,tokenizer.ggml.tokens,tokenizer.ggml.token_type,"
                           "tokenizer.ggml.merges,tokenizer.ggml.eos_token_id,tokenizer.ggml.padding_token_id,"
                           "tokenizer.ggml.bos_token_id,tokenizer.chat_template,") == 0,
              "keys %s", keys);
    check_str(&m->meta, "general.name", "Qwen2.5 0.5B Instruct");
    check_str(&m->meta, "general.organization", "Qwen");
    check_str(&m->meta, "general.basename", "Qwen2.5");
    /* "0.5B" is far from this toy's size, so the converter takes it for a finetune name */
    check_str(&m->meta, "general.finetune", "0.5b-Instruct");
    check_str(&m->meta, "general.size_label", "2.6K");
    check_str(&m->meta, "tokenizer.ggml.pre", "qwen2");
    check_str(&m->meta, "qwen2.rope.scaling.type", "yarn");
    check_u32(&m->meta, "tokenizer.ggml.bos_token_id", 10);
    check_u32(&m->meta, "tokenizer.ggml.eos_token_id", 10);
    const pare_kv *tok = pare_meta_get(&m->meta, "tokenizer.ggml.tokens");
    const pare_kv *tt = pare_meta_get(&m->meta, "tokenizer.ggml.token_type");
    if (tok && tt && tok->n == 16) {
        CHECK(strcmp(((pare_str *)tok->arr)[12].s, "my word") == 0 && ((int32_t *)tt->arr)[12] == 4);
        CHECK(((int32_t *)tt->arr)[11] == 3 && ((int32_t *)tt->arr)[13] == 5);
    } else {
        CHECK_MSG(0, "16 tokens expected");
    }
    const pare_kv *mg = pare_meta_get(&m->meta, "tokenizer.ggml.merges");
    CHECK(mg && mg->n == 4 && strcmp(((pare_str *)mg->arr)[3].s, "a\xc4\xa0" "b c") == 0);
    CHECK(!pare_model_find(m, "lm_head.weight") && m->n_tensors == 14);
    /* qwen2 rows are not permuted: every tensor keeps its bytes */
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    const pare_tensor *qb = pare_model_find(m, "blk.0.attn_q.bias");
    CHECK(qb && qb->data && !qb->read);
    CHECK(pare_hf_permute_heads(m, "blk.0.attn_q.weight") == 0);
    pare_model *want = NULL;
    CHECK_OK(pare_hf_load(dir, &want, &err), &err);
    if (want) {
        CHECK_OK(pare_hf_to_gguf(want, &err), &err);
        mkdir(th_tmp_path("rt3"), 0755);
        roundtrip_folder(m, th_tmp_path("rt3/qwen-tiny"), want);
    }
    pare_model_free(want);
    pare_model_free(m);
    pare_model_free(w);
}

/* ------------------------------------------------------------------------ a tiny llama */

/* A protobuf writer for hand-made sentencepiece models (independent of pare's own). */
typedef struct {
    uint8_t p[4096];
    size_t n;
} pbw;
static void pbw_raw(pbw *b, const void *s, size_t n) {
    if (b->n + n <= sizeof b->p) memcpy(b->p + b->n, s, n), b->n += n;
}
static void pbw_varint(pbw *b, uint64_t v) {
    do {
        uint8_t c = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        pbw_raw(b, &c, 1);
        v >>= 7;
    } while (v);
}
static void pbw_bytes(pbw *b, int field, const void *s, size_t n) {
    pbw_varint(b, (uint64_t)field << 3 | 2);
    pbw_varint(b, n);
    pbw_raw(b, s, n);
}

/* 8 pieces: <unk> <s> </s> <0x0A> ▁ a b ▁ab, scores 0 0 0 0 -1 -2 -3 -4. */
static size_t tiny_sp(uint8_t *out) {
    static const char *const pieces[8] = {"<unk>", "<s>", "</s>", "<0x0A>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "ab"};
    static const int types[8] = {2, 3, 3, 6, 1, 1, 1, 4};
    pbw m = {{0}, 0};
    for (int i = 0; i < 8; i++) {
        pbw pc = {{0}, 0};
        pbw_bytes(&pc, 1, pieces[i], strlen(pieces[i]));
        float sc = i < 4 ? 0.0f : (float)(3 - i);
        uint32_t u;
        memcpy(&u, &sc, 4);
        pbw_varint(&pc, 2 << 3 | 5);
        pbw_raw(&pc, &u, 4);
        if (types[i] != 1) pbw_varint(&pc, 3 << 3 | 0), pbw_varint(&pc, (uint64_t)types[i]);
        pbw_varint(&pc, 99 << 3 | 0), pbw_varint(&pc, 7); /* an unknown field, skipped */
        pbw_bytes(&m, 1, pc.p, pc.n);
    }
    pbw tr = {{0}, 0};
    pbw_varint(&tr, 3 << 3), pbw_varint(&tr, 2);
    pbw_bytes(&m, 2, tr.p, tr.n);
    memcpy(out, m.p, m.n);
    return m.n;
}

#define LLAMA_CONFIG                                                                                                 \
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32, "                  \
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-05, "   \
    "\"rope_theta\": 10000.0, \"max_position_embeddings\": 64, \"vocab_size\": 8, \"tie_word_embeddings\": false, " \
    "\"bos_token_id\": 1, \"eos_token_id\": 2}"

static pare_model *llama_weights(void) {
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "llama");
    th_add_f32(m, "model.embed_tokens.weight", 8, 16, 1);
    th_add_f32(m, "model.layers.0.input_layernorm.weight", 16, 0, 2);
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 16, 16, 3);
    th_add_f32(m, "model.layers.0.self_attn.k_proj.weight", 8, 16, 4);
    th_add_f32(m, "model.layers.0.self_attn.v_proj.weight", 8, 16, 5);
    th_add_f32(m, "model.layers.0.self_attn.o_proj.weight", 16, 16, 6);
    th_add_f32(m, "model.layers.0.self_attn.rotary_emb.inv_freq", 4, 0, 7); /* dropped */
    th_add_f32(m, "model.layers.0.post_attention_layernorm.weight", 16, 0, 8);
    th_add_f32(m, "model.layers.0.mlp.gate_proj.weight", 32, 16, 9);
    th_add_f32(m, "model.layers.0.mlp.up_proj.weight", 32, 16, 10);
    th_add_f32(m, "model.layers.0.mlp.down_proj.weight", 16, 32, 11);
    th_add_f32(m, "model.norm.weight", 16, 0, 12);
    th_add_f32(m, "lm_head.weight", 8, 16, 13); /* not tied: kept as output */
    return m;
}

static void make_tiny_llama(const char *dir) {
    pare_model *w = llama_weights();
    make_folder(dir, LLAMA_CONFIG, NULL, "{\"add_bos_token\": true, \"add_eos_token\": false}", w);
    uint8_t sp[4096];
    th_write_in(dir, "tokenizer.model", sp, tiny_sp(sp));
    pare_model_free(w);
}

static void check_rows_permuted(const pare_tensor *t, const pare_tensor *src, int n_head) {
    pare_err err = {0};
    size_t row = (size_t)src->ne[0] * 4;
    uint8_t *got = malloc(t->n_bytes), *want = malloc(t->n_bytes);
    CHECK_OK(pare_tensor_read(t, got, &err), &err);
    pare_hf_permute_rows(src->data, want, src->ne[1], row, n_head, false);
    CHECK_MSG(memcmp(got, want, t->n_bytes) == 0, "%s is not the permuted %s", t->name, src->name);
    CHECK(memcmp(got, src->data, t->n_bytes) != 0);
    free(got), free(want);
}

static void test_llama_tiny(void) {
    const char *dir = th_tmp_path("tiny-llama");
    make_tiny_llama(dir);
    pare_err err = {0};
    pare_model *m = NULL, *w = llama_weights();
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (!m) {
        pare_model_free(w);
        return;
    }
    char keys[2048];
    key_list(&m->meta, keys, sizeof keys);
    CHECK_MSG(strcmp(keys, "general.architecture,general.type,general.name,general.size_label,llama.block_count,"
                           "llama.context_length,llama.embedding_length,llama.feed_forward_length,"
                           "llama.attention.head_count,llama.attention.head_count_kv,llama.rope.freq_base,"
                           "llama.attention.layer_norm_rms_epsilon,general.file_type,llama.vocab_size,llama.rope.dimension_count,"
                           "tokenizer.ggml.model,tokenizer.ggml.pre,tokenizer.ggml.tokens,tokenizer.ggml.scores,"
                           "tokenizer.ggml.token_type,tokenizer.ggml.bos_token_id,tokenizer.ggml.eos_token_id,"
                           "tokenizer.ggml.add_bos_token,tokenizer.ggml.add_eos_token,") == 0,
              "keys %s", keys);
    check_u32(&m->meta, "llama.rope.dimension_count", 8);
    const pare_kv *tt = pare_meta_get(&m->meta, "tokenizer.ggml.token_type");
    const pare_kv *sc = pare_meta_get(&m->meta, "tokenizer.ggml.scores");
    if (tt && sc && tt->n == 8) {
        const int32_t *ty = tt->arr;
        /* user-defined pieces come out normal, as from sentencepiece's Is* queries */
        CHECK(ty[0] == 2 && ty[1] == 3 && ty[3] == 6 && ty[4] == 1 && ty[7] == 1);
        CHECK(((float *)sc->arr)[7] == -4.0f);
    }
    CHECK_OK(pare_hf_to_gguf(m, &err), &err);
    CHECK(m->n_tensors == 12 && pare_model_find(m, "output.weight") && !pare_model_find(m, "blk.0.rope_freqs"));
    const pare_tensor *q = pare_model_find(m, "blk.0.attn_q.weight"), *k = pare_model_find(m, "blk.0.attn_k.weight");
    CHECK(pare_hf_permute_heads(m, "blk.0.attn_q.weight") == 2 && pare_hf_permute_heads(m, "blk.0.attn_k.weight") == 1);
    if (q && k) {
        check_rows_permuted(q, pare_model_find(w, "model.layers.0.self_attn.q_proj.weight"), 2);
        check_rows_permuted(k, pare_model_find(w, "model.layers.0.self_attn.k_proj.weight"), 1);
    }
    /* back to HF names: the inverse permutation gives the original bytes */
    CHECK_OK(pare_gguf_to_hf(m, &err), &err);
    int bad = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *a = &m->tensors[i], *b = pare_model_find(w, a->name);
        uint8_t *x = malloc(a->n_bytes);
        CHECK_OK(pare_tensor_read(a, x, &err), &err);
        bad += !b || b->n_bytes != a->n_bytes || memcmp(x, b->data, a->n_bytes) != 0;
        free(x);
    }
    CHECK_MSG(bad == 0 && m->n_tensors == 12, "%d tensors did not come back", bad);
    pare_model_free(m);
    pare_model_free(w);
}

/* Llama 3 style: tokenizer.json only (BPE, Llama 3's pre-tokenizer regex) and llama3 rope
 * scaling, for which the converter generates rope_freqs. */
#define ROPE_TOL 1e-5 /* powf vs torch's pow: a few ulps at most */
static void test_llama3_tokjson(void) {
    const char *dir = th_tmp_path("tiny-llama3");
    pare_model *w = llama_weights();
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32, "
                      "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                      "\"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, \"max_position_embeddings\": 64, "
                      "\"vocab_size\": 8, \"bos_token_id\": 6, \"eos_token_id\": 7, \"rope_scaling\": {\"factor\": 8.0, "
                      "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": "
                      "8192, \"rope_type\": \"llama3\"}}";
    cJSON *tj = cJSON_CreateObject(), *pre = cJSON_AddObjectToObject(tj, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *seq = cJSON_AddArrayToObject(pre, "pretokenizers"), *split = cJSON_CreateObject(), *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex",
                            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                            "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
    /* as Meta's file has it: without use_regex false, HF's ByteLevel would split with GPT-2's
     * regex again (its default), which is another pre-tokenizer */
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(seq, split);
    cJSON_AddItemToArray(seq, bl);
    cJSON *model = cJSON_AddObjectToObject(tj, "model"), *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", true);
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    const char *toks[6] = {"a", "b", "ab", "\xc4\xa0", "\xc4\xa0" "a", "c"};
    for (int i = 0; i < 6; i++) cJSON_AddNumberToObject(vocab, toks[i], i);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToArray(merges, cJSON_CreateString("a b"));
    cJSON *added = cJSON_AddArrayToObject(tj, "added_tokens");
    const char *sp[2] = {"<|begin_of_text|>", "<|end_of_text|>"};
    for (int i = 0; i < 2; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", 6 + i);
        cJSON_AddStringToObject(a, "content", sp[i]);
        cJSON_AddBoolToObject(a, "special", true);
        cJSON_AddItemToArray(added, a);
    }
    char *text = cJSON_Print(tj);
    make_folder(dir, cfg, text, "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|end_of_text|>\"}", w);
    free(text);
    cJSON_Delete(tj);
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (m) {
        check_str(&m->meta, "tokenizer.ggml.model", "gpt2");
        check_str(&m->meta, "tokenizer.ggml.pre", "llama-bpe");
        CHECK(!pare_meta_get(&m->meta, "llama.rope.scaling.type")); /* llama3 scaling is a tensor */
        const pare_tensor *rf = m->n_tensors ? &m->tensors[0] : NULL;
        CHECK(rf && strcmp(rf->name, "rope_freqs.weight") == 0 && rf->ne[0] == 4);
        if (rf && rf->ne[0] == 4) {
            /* wavelengths 6.3, 167, 4443, 118143 against 2048 / 8192: kept, kept, smoothed, factor */
            const float *f = rf->data;
            const double want[4] = {1.0, 1.0, 1.0 / ((1.0 - (8192.0 / (2 * M_PI * pow(500000.0, 0.5)) - 1) / 3) / 8 +
                                                     (8192.0 / (2 * M_PI * pow(500000.0, 0.5)) - 1) / 3),
                                    8.0};
            double d = 0;
            for (int i = 0; i < 4; i++) d = fmax(d, fabs(f[i] - want[i]) / want[i]);
            printf("  rope_freqs %g %g %g %g, largest relative difference %g\n", f[0], f[1], f[2], f[3], d);
            CHECK_MSG(d < ROPE_TOL, "rope factors off by %g", d);
        }
        check_u32(&m->meta, "tokenizer.ggml.bos_token_id", 6);
        CHECK_OK(pare_hf_to_gguf(m, &err), &err);
        CHECK(strcmp(m->tensors[0].name, "rope_freqs.weight") == 0);
    }
    pare_model_free(m);
    pare_model_free(w);
}

/* Llama 2 style tokenizer.json without tokenizer.model (BPE with byte fallback): the
 * converter's LlamaHfVocab, every score -1000, <0xXX> bytes, special tokens control. */
static void test_llama_hf_tokjson(void) {
    const char *dir = th_tmp_path("tiny-llama-hf");
    pare_model *w = llama_weights();
    const char *tj = "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, "
                     "\"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}], "
                     "\"decoder\": {\"type\": \"Sequence\", \"decoders\": []}, \"model\": {\"type\": \"BPE\", "
                     "\"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x0A>\": 3, "
                     "\"\\u2581\": 4, \"a\": 5, \"b\": 6, \"\\u2581ab\": 7}, \"merges\": [\"a b\"]}}";
    make_folder(dir, LLAMA_CONFIG, tj, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"unk_token\": \"<unk>\"}", w);
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    if (m) {
        check_str(&m->meta, "tokenizer.ggml.model", "llama");
        check_str(&m->meta, "tokenizer.ggml.pre", "default");
        CHECK(!pare_meta_get(&m->meta, "tokenizer.ggml.merges"));
        const pare_kv *tt = pare_meta_get(&m->meta, "tokenizer.ggml.token_type");
        const pare_kv *sc = pare_meta_get(&m->meta, "tokenizer.ggml.scores");
        CHECK(tt && sc && tt->n == 8 && sc->n == 8);
        if (tt && sc && tt->n == 8) {
            const int32_t *ty = tt->arr;
            CHECK(ty[0] == 3 && ty[1] == 3 && ty[2] == 3 && ty[3] == 6 && ty[4] == 1 && ty[7] == 1);
            CHECK(((float *)sc->arr)[5] == -1000.0f);
        }
        /* ids resolved through tokenizer.json's added tokens, in bos, eos, unk order */
        check_u32(&m->meta, "tokenizer.ggml.unknown_token_id", 0);
    }
    pare_model_free(m);
    pare_model_free(w);
}

/* GPT-2 with the merges in merges.txt (the slow tokenizer's file) instead of tokenizer.json. */
static void test_gpt2_merges_txt(void) {
    const char *dir = th_tmp_path("tiny-gpt2-mt");
    pare_model *w = gpt2_weights();
    char tj[2048];
    snprintf(tj, sizeof tj, "%s", GPT2_TOKENIZER);
    char *mg = strstr(tj, ", \"merges\"");
    if (mg) strcpy(mg, "}}");
    make_folder(dir, GPT2_CONFIG, tj, GPT2_TOKCFG, w);
    th_write_text(dir, "merges.txt", "#version: 0.2\na b\n\xc4\xa0 a\n\nbad line here\nab c\n");
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    const pare_kv *k = m ? pare_meta_get(&m->meta, "tokenizer.ggml.merges") : NULL;
    CHECK(k && k->n == 3 && strcmp(((pare_str *)k->arr)[2].s, "ab c") == 0);
    pare_model_free(m);
    pare_model_free(w);
}

/* ------------------------------------------------------------------------ corrupt folders */

static void rm_file(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

/* Replaces "from" by "to" in the tiny llama's config.json. */
static void config_edit(const char *dir, const char *from, const char *to) {
    char cfg[2048];
    const char *at = strstr(LLAMA_CONFIG, from);
    if (!at) {
        fprintf(stderr, "  config_edit: '%s' not found\n", from);
        return;
    }
    snprintf(cfg, sizeof cfg, "%.*s%s%s", (int)(at - LLAMA_CONFIG), LLAMA_CONFIG, to, at + strlen(from));
    th_write_text(dir, "config.json", cfg);
}

static void c_config_not_json(const char *d) { th_write_text(d, "config.json", "{\"hidden_size\": 16,"); }
static void c_config_not_object(const char *d) { th_write_text(d, "config.json", "[1, 2, 3]"); }
static void c_config_missing(const char *d) { rm_file(d, "config.json"); }
static void c_no_hidden_size(const char *d) { config_edit(d, "\"hidden_size\": 16, ", ""); }
static void c_absurd_layers(const char *d) { config_edit(d, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1000000000"); }
static void c_layers_not_int(const char *d) { config_edit(d, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1.5"); }
static void c_heads_not_dividing(const char *d) { config_edit(d, "\"num_attention_heads\": 2", "\"num_attention_heads\": 3"); }
static void c_kv_not_dividing(const char *d) { config_edit(d, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3"); }
static void c_odd_head_dim(const char *d) {
    config_edit(d, "\"num_attention_heads\": 2, \"num_key_value_heads\": 1", "\"num_attention_heads\": 16, \"num_key_value_heads\": 16");
}
static void c_vocab_too_big(const char *d) { config_edit(d, "\"vocab_size\": 8", "\"vocab_size\": 4000000"); }
static void c_unsupported_arch(const char *d) { config_edit(d, "LlamaForCausalLM", "FalconForCausalLM"); }
static void c_sp_truncated(const char *d) {
    uint8_t sp[4096];
    size_t n = tiny_sp(sp);
    th_write_in(d, "tokenizer.model", sp, n / 2 + 1);
}
static void c_sp_length_past_end(const char *d) {
    static const uint8_t b[] = {0x0a, 0xff, 0xff, 0x03, 'x', 'y'}; /* a piece of 65535 bytes in 6 */
    th_write_in(d, "tokenizer.model", b, sizeof b);
}
static void c_sp_bad_varint(const char *d) {
    static const uint8_t b[12] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    th_write_in(d, "tokenizer.model", b, sizeof b);
}
static void c_sp_inner_past_piece(const char *d) {
    /* a 4-byte piece message whose text claims 100 bytes */
    static const uint8_t b[] = {0x0a, 0x04, 0x0a, 100, 'a', 'b'};
    th_write_in(d, "tokenizer.model", b, sizeof b);
}
static void c_sp_not_utf8(const char *d) {
    static const uint8_t b[] = {0x0a, 0x03, 0x0a, 0x01, 0xff};
    th_write_in(d, "tokenizer.model", b, sizeof b);
}
static void c_sp_more_than_vocab(const char *d) { config_edit(d, "\"vocab_size\": 8", "\"vocab_size\": 4"); }
static void c_tokjson_malformed(const char *d) {
    rm_file(d, "tokenizer.model");
    th_write_text(d, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,");
}
static void c_tokjson_bad_id(const char *d) {
    rm_file(d, "tokenizer.model");
    th_write_text(d, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}");
}
static void c_tokjson_id_past_vocab(const char *d) {
    rm_file(d, "tokenizer.model");
    th_write_text(d, "tokenizer.json", "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                                    "\"vocab\": {\"a\": 100}}}");
}
static void c_tokjson_unknown_pre(const char *d) {
    rm_file(d, "tokenizer.model");
    th_write_text(d, "tokenizer.json", "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", "
                                    "\"vocab\": {\"a\": 0}}}");
}
static void c_tokcfg_bad_decoder(const char *d) {
    th_write_text(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"99\": {\"content\": \"<x>\", \"special\": true}}}");
}
static void c_added_tokens_bad(const char *d) { th_write_text(d, "added_tokens.json", "{\"<x>\": \"seven\"}"); }
static void c_no_weights(const char *d) { rm_file(d, "model.safetensors"); }
static void c_no_tokenizer(const char *d) { rm_file(d, "tokenizer.model"); }
static void c_pt_index_escape(const char *d) {
    rm_file(d, "model.safetensors");
    th_write_text(d, "pytorch_model.bin.index.json", "{\"weight_map\": {\"model.norm.weight\": \"../../etc/passwd\"}}");
}

typedef struct {
    const char *name;
    void (*make)(const char *dir);
    pare_status want;
    const char *file; /* the message must name it */
} corrupt_case;

static const corrupt_case corrupt_cases[] = {
    {"config-not-json", c_config_not_json, PARE_EINPUT, "config.json"},
    {"config-not-object", c_config_not_object, PARE_EINPUT, "config.json"},
    {"config-missing", c_config_missing, PARE_EINPUT, "config.json"},
    {"config-no-hidden-size", c_no_hidden_size, PARE_EINPUT, "config.json"},
    {"config-absurd-layers", c_absurd_layers, PARE_EINPUT, "config.json"},
    {"config-layers-not-integer", c_layers_not_int, PARE_EINPUT, "config.json"},
    {"config-heads-not-dividing", c_heads_not_dividing, PARE_EINPUT, "config.json"},
    {"config-kv-heads-not-dividing", c_kv_not_dividing, PARE_EINPUT, "config.json"},
    {"config-odd-head-dim", c_odd_head_dim, PARE_EINPUT, "config.json"},
    {"config-vocab-too-big", c_vocab_too_big, PARE_EINPUT, "config.json"},
    {"config-unsupported-arch", c_unsupported_arch, PARE_EUNSUPPORTED, "FalconForCausalLM"},
    {"sp-truncated", c_sp_truncated, PARE_EINPUT, "tokenizer.model"},
    {"sp-length-past-end", c_sp_length_past_end, PARE_EINPUT, "tokenizer.model"},
    {"sp-bad-varint", c_sp_bad_varint, PARE_EINPUT, "tokenizer.model"},
    {"sp-inner-past-piece", c_sp_inner_past_piece, PARE_EINPUT, "tokenizer.model"},
    {"sp-not-utf8", c_sp_not_utf8, PARE_EINPUT, "tokenizer.model"},
    {"sp-more-than-vocab", c_sp_more_than_vocab, PARE_EINPUT, "tokenizer.model"},
    {"tokjson-malformed", c_tokjson_malformed, PARE_EINPUT, "tokenizer.json"},
    {"tokjson-bad-id", c_tokjson_bad_id, PARE_EINPUT, "tokenizer.json"},
    {"tokjson-id-past-vocab", c_tokjson_id_past_vocab, PARE_EINPUT, "tokenizer.json"},
    {"tokjson-unknown-pre", c_tokjson_unknown_pre, PARE_EUNSUPPORTED, "tokenizer.json"},
    {"tokcfg-bad-decoder", c_tokcfg_bad_decoder, PARE_EINPUT, "tokenizer_config.json"},
    {"added-tokens-bad", c_added_tokens_bad, PARE_EINPUT, "added_tokens.json"},
    {"no-weights", c_no_weights, PARE_EINPUT, "no weights"},
    {"no-tokenizer", c_no_tokenizer, PARE_EINPUT, "no tokenizer"},
    {"pt-index-escape", c_pt_index_escape, PARE_EINPUT, "pytorch_model.bin.index.json"},
};
#define N_CORRUPT (sizeof corrupt_cases / sizeof corrupt_cases[0])

static void make_corrupt(const char *root, const corrupt_case *c, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/hf-%s", root, c->name);
    make_tiny_llama(dir);
    c->make(dir);
}

static void test_corrupt(void) {
    int bad = 0;
    for (size_t i = 0; i < N_CORRUPT; i++) {
        const corrupt_case *c = &corrupt_cases[i];
        char dir[512];
        make_corrupt(th.tmpdir, c, dir, sizeof dir);
        pare_err err = {0};
        pare_model *m = NULL;
        pare_status st = pare_hf_load(dir, &m, &err);
        if (st != c->want || !strstr(err.msg, c->file) || m) {
            fprintf(stderr, "  %s: status %d (want %d), message: %s\n", c->name, st, c->want, err.msg);
            bad++;
        }
        pare_model_free(m);
        th_rm_rf(dir);
    }
    printf("  %zu corrupt folders refused\n", N_CORRUPT - (size_t)bad);
    CHECK_MSG(bad == 0, "%d corrupt folders not refused as expected", bad);
    /* the base folder itself is fine */
    const char *dir = th_tmp_path("tiny-llama-ok");
    make_tiny_llama(dir);
    pare_err err = {0};
    pare_model *m = NULL;
    CHECK_OK(pare_hf_load(dir, &m, &err), &err);
    pare_model_free(m);
    CHECK(pare_hf_load(th_tmp_path("does-not-exist"), &m, &err) == PARE_EINPUT && !m);
}

/* Misuse of the name passes: unknown architecture, unknown tensor, GGUF names without heads. */
static void test_to_gguf_errors(void) {
    pare_err err = {0};
    pare_model *m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bare.safetensors");
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 16, 16, 1);
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EUSAGE); /* no arch */
    m->arch = strdup("llama");
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EINPUT && strstr(err.msg, "head_count")); /* no head count */
    pare_model_free(m);
    m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bare.safetensors");
    m->arch = strdup("llama");
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 16, 16, 1);
    th_add_f32(m, "model.layers.0.mystery.weight", 4, 0, 2);
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count", PARE_META_U32, 2, &err), &err);
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EUNSUPPORTED && strstr(err.msg, "mystery"));
    pare_model_free(m);
    m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bare.safetensors");
    m->arch = strdup("llama");
    th_add_f32(m, "model.layers.0.self_attn.q_proj.weight", 12, 16, 1); /* 12 rows: not 2 * 8 heads */
    CHECK_OK(pare_meta_set_uint(&m->meta, "llama.attention.head_count", PARE_META_U32, 8, &err), &err);
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EINPUT && strstr(err.msg, "heads"));
    pare_model_free(m);
    m = pare_model_new(PARE_FORMAT_SAFETENSORS, "bare.safetensors");
    m->arch = strdup("mamba");
    CHECK(pare_hf_to_gguf(m, &err) == PARE_EUNSUPPORTED && strstr(err.msg, "mamba"));
    pare_model_free(m);
}

static int write_corpus(const char *root) {
    mkdir(root, 0755);
    for (size_t i = 0; i < N_CORRUPT; i++) {
        char dir[1024];
        make_corrupt(root, &corrupt_cases[i], dir, sizeof dir);
        printf("%s\n", dir);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (!th_tmpdir("pare-test-hf")) return 1;
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        int rc = write_corpus(argv[2]);
        th_rm_rf(th.tmpdir);
        return rc;
    }
    TH_RUN(test_fortune_meta);
    TH_RUN(test_fortune_tensors);
    TH_RUN(test_bf16_sharded);
    TH_RUN(test_pytorch_only);
    TH_RUN(test_permute);
    TH_RUN(test_names);
    TH_RUN(test_fortune_roundtrip);
    TH_RUN(test_gpt2_folder);
    TH_RUN(test_gpt2_roundtrip);
    TH_RUN(test_qwen2_folder);
    TH_RUN(test_llama_tiny);
    TH_RUN(test_llama3_tokjson);
    TH_RUN(test_llama_hf_tokjson);
    TH_RUN(test_gpt2_merges_txt);
    TH_RUN(test_corrupt);
    TH_RUN(test_to_gguf_errors);
    th_rm_rf(th.tmpdir);
    return th_done();
}
