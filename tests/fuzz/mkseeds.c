/* tests/fuzz/mkseeds.c - writes the hand-made seed inputs of tests/fuzz/regress/NAME/.
 *
 *   mkseeds OUTDIR        (`make fuzz-seeds` runs it with OUTDIR = tests/fuzz/regress)
 *
 * Every seed is made with pare's own writers from the committed fixtures (tests/fixtures,
 * or $PARE_FIXTURES) and small generated data, deterministically, and named seed-*. The
 * fixture files that are seeds as they are (tiny.pt, the safetensors files, ...) are not
 * copied: tests/fuzz/targets.sh lists them for the replay and for `make fuzz`.
 * Multi-file seeds join their files with FUZZ_SEP, as the targets read them. */
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "fuzz_util.h"
#include "lora/lora.h"
#include "quant/plan.h"

#include <errno.h>

static const char *out_root;
static const char *fixtures;

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "mkseeds: " __VA_ARGS__);                                                  \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)
#define OK(expr)                                                                                   \
    do {                                                                                           \
        if ((expr) != PARE_OK) DIE("%s: %s", #expr, err.msg);                                      \
    } while (0)

/* ------------------------------------------------------------------ byte buffers */

typedef th_buf buf; /* tests/th_files.h */
static void put(buf *b, const void *p, size_t n) { th_buf_put(b, p, n); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_sep(buf *b) { put(b, FUZZ_SEP, FUZZ_SEP_LEN); }

static void put_file(buf *b, const char *path) {
    size_t n = 0;
    char *text = NULL;
    pare_err err = {0};
    OK(pare_read_file(path, 64u << 20, &text, &n, &err));
    put(b, text, n);
    free(text);
}

static void put_file_in(buf *b, const char *dir, const char *name) {
    char *p = pare_path_join(dir, name);
    if (!p) abort();
    put_file(b, p);
    free(p);
}

static void save(const char *target, const char *name, const buf *b) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) DIE("%s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/seed-%s", dir, name);
    if (b->n > 64 * 1024) DIE("%s: %zu bytes, over the 64 KB a committed input may have", path, b->n);
    fuzz_write(path, b->p, b->n);
    printf("%s (%zu bytes)\n", path, b->n);
}

static void save_file(const char *target, const char *name, const char *from) {
    buf b = {0};
    put_file(&b, from);
    save(target, name, &b);
    free(b.p);
}

static uint32_t rng_state = 12345;
static uint8_t rnd8(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (uint8_t)(rng_state >> 24);
}

/* A scratch path under the fuzz temp folder. */
static const char *tmp(const char *name) {
    static char b[4][1024];
    static int k;
    char *p = b[k++ % 4];
    return fuzz_path(p, 1024, name);
}

/* ------------------------------------------------------------------ GGUF */

/* A model with meta and one small tensor of each given type and shape, random bytes. */
typedef struct {
    const char *name;
    pare_type type;
    int n_dims;
    int64_t ne[4];
} tspec;

static void write_gguf(const char *path, const pare_meta *meta, const tspec *ts, size_t n) {
    pare_err err = {0};
    pare_tensor *t = calloc(n ? n : 1, sizeof *t);
    for (size_t i = 0; i < n; i++) OK(pare_tensor_init(&t[i], ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err));
    pare_gguf_writer *w = NULL;
    OK(pare_gguf_writer_open(path, meta, t, n, true, NULL, 0, &w, &err));
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        OK(pare_tensor_nbytes(t[i].type, t[i].n_dims, t[i].ne, &nb, &err));
        uint8_t *d = malloc(nb ? nb : 1);
        for (uint64_t k = 0; k < nb; k++) d[k] = rnd8();
        OK(pare_gguf_writer_add(w, d, nb, &err));
        free(d);
    }
    OK(pare_gguf_writer_finish(w, &err));
    pare_gguf_writer_free(w);
    for (size_t i = 0; i < n; i++) pare_tensor_clear(&t[i]);
    free(t);
}

static void seed_file(const char *target, const char *name, const char *path) { save_file(target, name, path); }

/* The fixture's tokenizer and hyperparameters as GGUF metadata (what `pare convert` makes). */
static pare_model *fixture_gguf_model(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny-llama", fixtures);
    pare_model *m = NULL;
    pare_err err = {0};
    OK(pare_hf_load(dir, &m, &err));
    OK(pare_hf_to_gguf(m, &err));
    return m;
}

static void seeds_gguf(void) {
    pare_err err = {0};
    /* 1. The fixture's metadata with one small tensor of every type pare knows. */
    pare_model *fx = fixture_gguf_model();
    tspec all[64];
    size_t n = 0;
    for (int ty = 0; ty < PARE_TYPE_GGML_COUNT; ty++) {
        const pare_type_info *ti = pare_type_get(ty);
        if (!ti || !ti->name) continue;
        tspec *s = &all[n++];
        static char names[64][32];
        snprintf(names[n - 1], sizeof names[0], "t.%s", ti->name);
        *s = (tspec){names[n - 1], (pare_type)ty, 2, {ti->block_size, 2, 1, 1}};
        if (n % 3 == 0) s->n_dims = 3, s->ne[2] = 2;
        if (n % 5 == 0) s->n_dims = 4, s->ne[2] = 1, s->ne[3] = 2;
    }
    write_gguf(tmp("all-types.gguf"), &fx->meta, all, n);
    seed_file("gguf", "fixture-meta-all-types.gguf", tmp("all-types.gguf"));

    /* 2. Every value type, arrays of each, general.alignment 64. */
    pare_meta m = {0};
    OK(pare_meta_set_str(&m, "general.architecture", "llama", 5, &err));
    OK(pare_meta_set_uint(&m, "general.alignment", PARE_META_U32, 64, &err));
    OK(pare_meta_set_uint(&m, "k.u8", PARE_META_U8, 200, &err));
    OK(pare_meta_set_int(&m, "k.i8", PARE_META_I8, -100, &err));
    OK(pare_meta_set_uint(&m, "k.u16", PARE_META_U16, 60000, &err));
    OK(pare_meta_set_int(&m, "k.i16", PARE_META_I16, -30000, &err));
    OK(pare_meta_set_uint(&m, "k.u32", PARE_META_U32, 4000000000u, &err));
    OK(pare_meta_set_int(&m, "k.i32", PARE_META_I32, -2000000000, &err));
    OK(pare_meta_set_float(&m, "k.f32", PARE_META_F32, 1e-5, &err));
    OK(pare_meta_set_bool(&m, "k.bool", true, &err));
    OK(pare_meta_set_str(&m, "k.str", "", 0, &err));
    OK(pare_meta_set_uint(&m, "k.u64", PARE_META_U64, 1ull << 40, &err));
    OK(pare_meta_set_int(&m, "k.i64", PARE_META_I64, -(1ll << 40), &err));
    OK(pare_meta_set_float(&m, "k.f64", PARE_META_F64, 3.25, &err));
    uint8_t raw[64];
    for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)(i * 3);
    static const pare_meta_type elems[] = {PARE_META_U8,  PARE_META_I8,  PARE_META_U16, PARE_META_I16,
                                           PARE_META_U32, PARE_META_I32, PARE_META_F32, PARE_META_BOOL,
                                           PARE_META_U64, PARE_META_I64, PARE_META_F64};
    for (size_t i = 0; i < sizeof elems / sizeof elems[0]; i++) {
        char key[64];
        uint8_t v[64];
        for (size_t k = 0; k < sizeof v; k++) v[k] = elems[i] == PARE_META_BOOL ? raw[k] & 1 : raw[k];
        snprintf(key, sizeof key, "a.%s", pare_meta_type_name(elems[i]));
        OK(pare_meta_set_arr(&m, key, elems[i], v, 4, &err));
    }
    pare_str strs[3] = {{"a", 1}, {"", 0}, {"\xe2\x96\x81the", 6}};
    OK(pare_meta_set_arr(&m, "a.str", PARE_META_STRING, strs, 3, &err));
    OK(pare_meta_set_arr(&m, "a.empty", PARE_META_U32, NULL, 0, &err));
    const tspec three[] = {{"token_embd.weight", PARE_TYPE_F16, 2, {8, 4, 1, 1}},
                           {"blk.0.attn_q.weight", PARE_TYPE_Q8_0, 2, {32, 3, 1, 1}},
                           {"output_norm.weight", PARE_TYPE_F32, 1, {8, 1, 1, 1}}};
    write_gguf(tmp("kv.gguf"), &m, three, 3);
    seed_file("gguf", "every-kv-type.gguf", tmp("kv.gguf"));

    /* 3. The same as version 2 (same layout). */
    buf b = {0};
    put_file(&b, tmp("kv.gguf"));
    b.p[4] = 2;
    save("gguf", "version2.gguf", &b);
    b.n = 0;

    /* 4. Metadata only, no tensors. */
    write_gguf(tmp("meta.gguf"), &m, NULL, 0);
    seed_file("gguf", "no-tensors.gguf", tmp("meta.gguf"));

    /* 5. Split in three parts (one tensor each), joined as the target reads them. */
    pare_model *km = NULL;
    OK(pare_gguf_load(tmp("kv.gguf"), &km, &err));
    int parts = 0;
    OK(pare_gguf_save_split(km, tmp("split"), 1, true, &parts, &err));
    for (int i = 0; i < parts; i++) {
        char *p = pare_gguf_split_path(tmp("split"), i, parts);
        if (i) put_sep(&b);
        put_file(&b, p);
        free(p);
    }
    save("gguf", "split-3.gguf", &b);
    free(b.p);
    pare_model_free(km);
    pare_meta_free(&m);
    pare_model_free(fx);
}

/* ------------------------------------------------------------------ safetensors */

/* A safetensors file from a JSON header and data bytes (header padded to 8 with spaces). */
static void st_raw(const char *name, const char *json, size_t data_bytes) {
    buf b = {0};
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    uint64_t n = padded;
    put(&b, &n, 8);
    puts_(&b, json);
    for (size_t i = hl; i < padded; i++) put(&b, " ", 1);
    for (size_t i = 0; i < data_bytes; i++) {
        uint8_t v = rnd8();
        put(&b, &v, 1);
    }
    save("safetensors", name, &b);
    free(b.p);
}

static void seeds_safetensors(void) {
    static const char *const dtypes[] = {"BOOL", "U8",   "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                         "BF16", "I32", "U32", "F32", "F64",     "I64",     "U64"};
    static const int sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    buf j = {0};
    size_t off = 0;
    puts_(&j, "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"every dtype\"}");
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        char e[256];
        size_t nb = (size_t)sizes[i] * 6;
        snprintf(e, sizeof e, ",\"t.%s\":{\"dtype\":\"%s\",\"shape\":[2,3],\"data_offsets\":[%zu,%zu]}", dtypes[i],
                 dtypes[i], off, off + nb);
        puts_(&j, e);
        off += nb;
    }
    puts_(&j, "}");
    put(&j, "", 1);
    st_raw("every-dtype.safetensors", (const char *)j.p, off);
    free(j.p);
    /* A 0-d tensor, an empty one, a 5-D one with a leading 1, in shuffled header order. */
    st_raw("odd-shapes.safetensors",
           "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[4,4]},"
           "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
           "\"five\":{\"dtype\":\"F16\",\"shape\":[1,2,1,3,2],\"data_offsets\":[4,28]}}",
           28);
    st_raw("empty.safetensors", "{}", 0);
}

static void seeds_st_index(void) {
    buf b = {0};
    puts_(&b, "{\n  \"metadata\": {\"total_size\": 52},\n  \"weight_map\": {\n"
              "    \"a.weight\": \"model-00001-of-00002.safetensors\",\n"
              "    \"b.bias\": \"model-00001-of-00002.safetensors\",\n"
              "    \"c.weight\": \"model-00002-of-00002.safetensors\"\n  }\n}\n");
    save("st_index", "two-shards.json", &b);
    b.n = 0;
    puts_(&b, "{\"weight_map\":{\"c.weight\":\"model-00002-of-00002.safetensors\"}}");
    save("st_index", "one-shard-partial.json", &b);
    free(b.p);
}

/* ------------------------------------------------------------------ HF folders */

/* Files of `folder` (NULL entries: absent) joined in fuzz_hf.c's piece order. */
static void hf_seed(const char *name, const char *folder) {
    static const char *const pieces[] = {"config.json", "tokenizer.model", "tokenizer_config.json",
                                         "tokenizer.json", "added_tokens.json", "special_tokens_map.json"};
    buf b = {0};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        char *p = pare_path_join(folder, pieces[i]);
        if (i) put_sep(&b);
        if (pare_path_exists(p)) put_file(&b, p);
        free(p);
    }
    save("hf", name, &b);
    free(b.p);
}

/* GGUF metadata of a BPE vocabulary over GPT-2's byte alphabet with a few merges. */
static void bpe_meta(pare_meta *m, const char *pre) {
    static const char *const merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "e r", "\xc4\xa0 a", "o n",
                                         "r e", "\xc4\xa0 \xc4\xa0", "l l"};
    enum { N_M = sizeof merges / sizeof merges[0] };
    static char alpha[256][3], merged[N_M][16];
    pare_str tokens[256 + N_M + 1], ms[N_M];
    int32_t types[256 + N_M + 1];
    int next = 256;
    size_t n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : next++;
        if (cp < 0x80)
            alpha[b][0] = (char)cp, alpha[b][1] = 0;
        else
            alpha[b][0] = (char)(0xc0 | (cp >> 6)), alpha[b][1] = (char)(0x80 | (cp & 0x3f)), alpha[b][2] = 0;
        types[n] = 1, tokens[n++] = (pare_str){alpha[b], strlen(alpha[b])};
    }
    for (size_t i = 0; i < N_M; i++) {
        const char *sp = strchr(merges[i], ' ');
        snprintf(merged[i], sizeof merged[i], "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
        ms[i] = (pare_str){(char *)merges[i], strlen(merges[i])};
        types[n] = 1, tokens[n++] = (pare_str){merged[i], strlen(merged[i])};
    }
    types[n] = 3, tokens[n++] = (pare_str){"<|endoftext|>", 13};
    pare_err err = {0};
    OK(pare_meta_set_str(m, "tokenizer.ggml.model", "gpt2", 4, &err));
    OK(pare_meta_set_str(m, "tokenizer.ggml.pre", pre, strlen(pre), &err));
    OK(pare_meta_set_arr(m, "tokenizer.ggml.tokens", PARE_META_STRING, tokens, n, &err));
    OK(pare_meta_set_arr(m, "tokenizer.ggml.token_type", PARE_META_I32, types, n, &err));
    OK(pare_meta_set_arr(m, "tokenizer.ggml.merges", PARE_META_STRING, ms, N_M, &err));
    OK(pare_meta_set_uint(m, "tokenizer.ggml.bos_token_id", PARE_META_U32, n - 1, &err));
    OK(pare_meta_set_uint(m, "tokenizer.ggml.eos_token_id", PARE_META_U32, n - 1, &err));
}

/* An HF folder written by pare for architecture arch with a BPE tokenizer. */
static void hf_bpe_seed(const char *name, const char *arch, const char *pre) {
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "seed.gguf");
    m->arch = strdup(arch);
    m->gguf_names = true;
    pare_err err = {0};
    char key[128];
    OK(pare_meta_set_str(&m->meta, "general.architecture", arch, strlen(arch), &err));
    const struct {
        const char *suffix;
        uint64_t v;
    } hp[] = {{"block_count", 1}, {"context_length", 128}, {"embedding_length", 64}, {"feed_forward_length", 192},
              {"attention.head_count", 4}, {"attention.head_count_kv", 2}};
    for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, hp[i].suffix);
        OK(pare_meta_set_uint(&m->meta, key, PARE_META_U32, hp[i].v, &err));
    }
    snprintf(key, sizeof key, strcmp(arch, "gpt2") ? "%s.attention.layer_norm_rms_epsilon"
                                                   : "%s.attention.layer_norm_epsilon", arch);
    OK(pare_meta_set_float(&m->meta, key, PARE_META_F32, 1e-5, &err));
    bpe_meta(&m->meta, pre);
    char dir[1024];
    fuzz_fresh_dir(dir, sizeof dir, name);
    OK(pare_hf_write_folder_meta(m, dir, true, &err));
    hf_seed(name, dir);
    pare_model_free(m);
}

static void seeds_hf(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny-llama", fixtures);
    hf_seed("fixture-llama-spm", dir);
    hf_bpe_seed("gpt2-bpe", "gpt2", "gpt-2");
    hf_bpe_seed("qwen2-bpe", "qwen2", "qwen2");
    hf_bpe_seed("llama-bpe", "llama", "llama-bpe");
    /* The fixture with an added_tokens.json and rope scaling (llama 3 style). */
    buf b = {0};
    buf c = {0};
    put_file_in(&c, dir, "config.json");
    put(&c, "", 1);
    char *cfg = strdup((const char *)c.p);
    char *rs = strstr(cfg, "\"rope_scaling\": null");
    if (!rs) DIE("fixture config.json has no \"rope_scaling\": null");
    *rs = '\0';
    puts_(&b, cfg);
    puts_(&b, "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
              "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 128}");
    puts_(&b, rs + strlen("\"rope_scaling\": null"));
    put_sep(&b);
    put_file_in(&b, dir, "tokenizer.model");
    put_sep(&b);
    put_file_in(&b, dir, "tokenizer_config.json");
    put_sep(&b);
    put_sep(&b);
    puts_(&b, "{\"<extra_0>\": 384, \"<extra_1>\": 385}");
    save("hf", "fixture-rope-added-tokens", &b);
    free(cfg);
    free(b.p);
    free(c.p);
}

/* ------------------------------------------------------------------ LoRA */

static void seeds_lora(const pare_model *base) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny-llama-lora", fixtures);
    buf b = {0};
    put_file_in(&b, dir, "adapter_config.json");
    put_sep(&b);
    put_file_in(&b, dir, "adapter_model.safetensors");
    save("lora", "fixture-peft", &b);
    b.n = 0;

    /* The fixture adapter as llama.cpp's GGUF adapter: NAME.lora_a ne [in, r], lora_b [r, out]. */
    pare_lora_adapter *ad = NULL;
    pare_err err = {0};
    OK(pare_lora_load(dir, base->arch, &base->meta, 1.0, &ad, &err));
    pare_meta m = {0};
    OK(pare_meta_set_str(&m, "general.architecture", "llama", 5, &err));
    OK(pare_meta_set_str(&m, "general.type", "adapter", 7, &err));
    OK(pare_meta_set_str(&m, "adapter.type", "lora", 4, &err));
    OK(pare_meta_set_float(&m, "adapter.lora.alpha", PARE_META_F32, 8, &err));
    size_t n = ad->n_pairs;
    pare_tensor *ts = calloc(2 * n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const pare_lora_pair *p = &ad->pairs[i];
        char name[128];
        int64_t ne_a[2] = {p->n_in, p->r}, ne_b[2] = {p->r, p->n_out};
        snprintf(name, sizeof name, "%s.lora_a", p->target);
        OK(pare_tensor_init(&ts[2 * i], name, PARE_TYPE_F32, 2, ne_a, &err));
        snprintf(name, sizeof name, "%s.lora_b", p->target);
        OK(pare_tensor_init(&ts[2 * i + 1], name, PARE_TYPE_F32, 2, ne_b, &err));
    }
    pare_gguf_writer *w = NULL;
    OK(pare_gguf_writer_open(tmp("adapter.gguf"), &m, ts, 2 * n, true, NULL, 0, &w, &err));
    for (size_t i = 0; i < n; i++) {
        const pare_lora_pair *p = &ad->pairs[i];
        /* The pair's scale is alpha / r (2 here); the file keeps the raw factors. */
        OK(pare_gguf_writer_add(w, p->a, (uint64_t)(p->r * p->n_in) * 4, &err));
        OK(pare_gguf_writer_add(w, p->b, (uint64_t)(p->r * p->n_out) * 4, &err));
    }
    OK(pare_gguf_writer_finish(w, &err));
    pare_gguf_writer_free(w);
    for (size_t i = 0; i < 2 * n; i++) pare_tensor_clear(&ts[i]);
    free(ts);
    pare_meta_free(&m);
    pare_lora_free(ad);
    save_file("lora", "fixture-as-gguf.gguf", tmp("adapter.gguf"));

    /* One module of the fixture (layer 0 q_proj) with rsLoRA and rank/alpha patterns. */
    pare_model *w0 = NULL;
    char *st = pare_path_join(dir, "adapter_model.safetensors");
    OK(pare_safetensors_load(st, &w0, &err));
    free(st);
    pare_model *one = pare_model_new(PARE_FORMAT_SAFETENSORS, "one");
    for (size_t i = 0; i < w0->n_tensors; i++) {
        const pare_tensor *t = &w0->tensors[i];
        if (!strstr(t->name, "layers.0.self_attn.q_proj")) continue;
        pare_tensor c = {0};
        OK(pare_tensor_init(&c, t->name, t->type, t->n_dims, t->ne, &err));
        void *d = malloc(t->n_bytes);
        memcpy(d, t->data, t->n_bytes);
        pare_tensor_set_owned(&c, d, t->n_bytes);
        c.source = -1;
        OK(pare_model_add_tensor(one, &c, &err));
    }
    OK(pare_safetensors_save(one, tmp("one.safetensors"), true, &err));
    puts_(&b, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true, "
              "\"rank_pattern\": {\"q_proj\": 4}, \"alpha_pattern\": {\"model.layers.0.self_attn.q_proj\": 16}, "
              "\"target_modules\": [\"q_proj\"], \"fan_in_fan_out\": false}");
    put_sep(&b);
    put_file(&b, tmp("one.safetensors"));
    save("lora", "one-module-rslora-patterns", &b);
    /* The same module as a torch checkpoint would be read: the fixture's tiny.pt is no
     * adapter, so this only takes the adapter_model.bin path. */
    b.n = 0;
    puts_(&b, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}");
    put_sep(&b);
    put_sep(&b);
    char pt[1024];
    snprintf(pt, sizeof pt, "%s/tiny.pt", fixtures);
    put_file(&b, pt);
    save("lora", "bin-not-an-adapter", &b);
    free(b.p);
    pare_model_free(one);
    pare_model_free(w0);
}

/* ------------------------------------------------------------------ imatrix */

static void seeds_imatrix(void) {
    pare_err err = {0};
    pare_imatrix *im = pare_imatrix_new();
    float v[192];
    for (int i = 0; i < 192; i++) v[i] = 0.5f + (float)(i % 17);
    OK(pare_imatrix_add(im, "blk.0.attn_q.weight", 12, v, 64, &err));
    OK(pare_imatrix_add(im, "blk.1.ffn_down.weight", 12, v, 192, &err));
    OK(pare_imatrix_add(im, "token_embd.weight", 12, v, 10, &err));
    OK(pare_imatrix_add(im, "blk.0.ffn_up.weight", 0, v, 64, &err));
    OK(pare_imatrix_set_dataset(im, 12, "calib.txt", &err));
    OK(pare_imatrix_save(im, tmp("im.dat"), true, &err));
    save_file("imatrix", "four-entries.dat", tmp("im.dat"));
    /* Without the trailer (older files). */
    buf b = {0};
    put_file(&b, tmp("im.dat"));
    b.n -= 4 + 4 + strlen("calib.txt");
    save("imatrix", "no-trailer.dat", &b);
    free(b.p);
    pare_imatrix_free(im);
}

/* ------------------------------------------------------------------ tokenizer */

static void seeds_tokenizer(void) {
    static const char *const texts[] = {
        "Hello world",
        "  leading spaces and  double  spaces",
        "tab\there and a newline\nand\n\ntwo",
        "digits 1234567890 and 3.14159",
        "\xc3\xbcn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82",
        "invalid \xff\xfe utf-8 \xc3 end",
        "<|user|>hello@@<|endoftext|> <s></s>",
        "\xe2\x96\x81" "already \xe2\x96\x81" "escaped",
        "the GNU General Public License is a free, copyleft license for software",
        "",
        "I'm don't we'll they've CAPS MiXeD",
        "\r\n\r\n   \t\t  \n",
    };
    char name[32];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (int k = 0; k < 3; k++) {
            buf b = {0};
            /* Selectors spread over the vocabularies and both add_special settings. */
            uint8_t sel = (uint8_t)(i * 7 + (size_t)k * 37);
            put(&b, &sel, 1);
            puts_(&b, texts[i]);
            snprintf(name, sizeof name, "text-%02zu-%d", i, k);
            save("tokenizer", name, &b);
            free(b.p);
        }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 1;
    }
    out_root = argv[1];
    fixtures = getenv("PARE_FIXTURES") ? getenv("PARE_FIXTURES") : "tests/fixtures";
    pare_model *base = fuzz_base_model();
    seeds_gguf();
    seeds_safetensors();
    seeds_st_index();
    seeds_hf();
    seeds_lora(base);
    seeds_imatrix();
    seeds_tokenizer();
    pare_model_free(base);
    return 0;
}
