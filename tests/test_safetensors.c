/* tests/test_safetensors.c - safetensors reader, index reader, writer, sharded save and a
 * corpus of corrupt files.
 *
 *   test_safetensors                    run the tests
 *   test_safetensors --write-corpus DIR write the corrupt files into DIR and exit
 *                                       (st-NAME.safetensors files and st-index-NAME folders)
 */
#include "formats/safetensors.h"
#include "th.h"

#include <errno.h>
#include <unistd.h>

/* bf16 keeps 8 significant bits: a rounded value is within 2^-8 of the f32 it came from. */
#define BF16_REL_TOL (1.0 / 256.0)

/* ------------------------------------------------------------------------ helpers */

/* A safetensors file from a header text (length field = hdr_len_field, or the real length
 * when UINT64_MAX) followed by data_len bytes of data. */
static int write_st(const char *path, const char *hdr, size_t hdr_bytes, uint64_t hdr_len_field, size_t data_len) {
    size_t n = 8 + hdr_bytes + data_len;
    uint8_t *buf = calloc(1, n);
    if (!buf) return -1;
    uint64_t len = hdr_len_field == UINT64_MAX ? hdr_bytes : hdr_len_field;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len >> (8 * i));
    memcpy(buf + 8, hdr, hdr_bytes);
    for (size_t i = 0; i < data_len; i++) buf[8 + hdr_bytes + i] = (uint8_t)(i * 7 + 1);
    int rc = th_write_file(path, buf, n);
    free(buf);
    return rc;
}

/* Same names, types, dims and bytes, in the same order. Returns the number of differences. */
static int compare_models(const pare_model *a, const pare_model *b, bool same_order) {
    int bad = 0;
    if (a->n_tensors != b->n_tensors) {
        fprintf(stderr, "  tensor counts differ: %zu vs %zu\n", a->n_tensors, b->n_tensors);
        return 1;
    }
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pare_tensor *x = &a->tensors[i];
        const pare_tensor *y = same_order ? &b->tensors[i] : pare_model_find(b, x->name);
        if (!y || strcmp(x->name, y->name) != 0 || x->type != y->type || x->n_dims != y->n_dims ||
            memcmp(x->ne, y->ne, sizeof x->ne) != 0 || x->n_bytes != y->n_bytes) {
            fprintf(stderr, "  tensor %zu '%s' differs in name/type/shape\n", i, x->name);
            bad++;
            continue;
        }
        pare_err err = {0};
        const void *px, *py;
        void *tx, *ty;
        if (pare_tensor_bytes(x, &px, &tx, &err) || pare_tensor_bytes(y, &py, &ty, &err)) {
            fprintf(stderr, "  tensor '%s': %s\n", x->name, err.msg);
            bad++;
            continue;
        }
        if (x->n_bytes && memcmp(px, py, (size_t)x->n_bytes) != 0) {
            fprintf(stderr, "  tensor '%s': bytes differ\n", x->name);
            bad++;
        }
        free(tx);
        free(ty);
    }
    return bad;
}

/* ------------------------------------------------------------------------ reference files */

static void test_load_reference(void) {
    const char *p = th_shared("models/fortune-llama/model.safetensors");
    if (!p) return;
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_safetensors_load(p, &m, &err), &err);
    if (!m) return;
    CHECK(m->format == PARE_FORMAT_SAFETENSORS && !m->gguf_names);
    CHECK_MSG(m->n_tensors == 38, "%zu tensors", m->n_tensors); /* 4 layers x 9 + embed + norm */
    const char *fmt = pare_meta_get_str(&m->meta, "format");
    CHECK(fmt && strcmp(fmt, "pt") == 0);
    pare_tensor *e = pare_model_find(m, "model.embed_tokens.weight");
    CHECK(e && e->type == PARE_TYPE_F32 && e->n_dims == 2 && e->ne[0] == 256 && e->ne[1] == 512);
    CHECK(e && e->n_bytes == 512 * 256 * 4 && e->file_offset == 8 + 4064 && e->source == 0);
    pare_tensor *k = pare_model_find(m, "model.layers.0.self_attn.k_proj.weight");
    CHECK(k && k->ne[0] == 256 && k->ne[1] == 128); /* GQA: 4 KV heads x 32 */
    /* Tensors come in data order and tile the data section. */
    uint64_t pos = 8 + 4064;
    for (size_t i = 0; i < m->n_tensors; i++) {
        CHECK_MSG(m->tensors[i].file_offset == pos, "tensor %zu at %llu, expected %llu", i,
                  (unsigned long long)m->tensors[i].file_offset, (unsigned long long)pos);
        pos = m->tensors[i].file_offset + m->tensors[i].n_bytes;
    }
    CHECK(pos == m->maps[0]->size);
    /* Values: RMSNorm weights of a trained model are positive and near 1. */
    pare_tensor *nw = pare_model_find(m, "model.norm.weight");
    float v[256];
    CHECK_OK(pare_tensor_plain_to_f32(nw, v, &err), &err);
    double sum = 0;
    for (int i = 0; i < 256; i++) sum += v[i];
    CHECK_MSG(sum / 256 > 0.1 && sum / 256 < 10, "mean norm weight %g", sum / 256);
    pare_model_free(m);
}

static void test_load_index_bf16(void) {
    char *f32 = th_shared_dup("models/fortune-llama/model.safetensors");
    const char *idx = th_shared("models/fortune-llama-bf16-sharded/model.safetensors.index.json");
    if (!f32 || !idx) {
        free(f32);
        return;
    }
    pare_model *a = NULL, *b = NULL;
    pare_err err = {0};
    CHECK_OK(pare_safetensors_load(f32, &a, &err), &err);
    CHECK_OK(pare_safetensors_load_index(idx, &b, &err), &err);
    free(f32);
    if (!a || !b) goto done;
    CHECK_MSG(b->n_tensors == 38 && b->n_maps == 3, "%zu tensors in %zu shards", b->n_tensors, b->n_maps);
    /* Every tensor is the bf16 rounding of the f32 one. */
    double worst = 0;
    size_t n_diff = 0;
    for (size_t i = 0; i < a->n_tensors; i++) {
        pare_tensor *x = &a->tensors[i], *y = pare_model_find(b, x->name);
        CHECK_MSG(y && y->type == PARE_TYPE_BF16 && memcmp(x->ne, y->ne, sizeof x->ne) == 0, "'%s'", x->name);
        if (!y || y->type != PARE_TYPE_BF16) continue;
        const float *xf = x->data;
        const uint16_t *yb = y->data;
        for (int64_t j = 0; j < pare_tensor_nelements(x); j++) {
            float r = pare_bf16_to_fp32(yb[j]);
            double rel = fabs(r - xf[j]) / (fabs(xf[j]) > 1e-30 ? fabs(xf[j]) : 1);
            if (rel > worst) worst = rel;
            if (yb[j] != pare_fp32_to_bf16(xf[j])) n_diff++;
        }
    }
    printf("  bf16 shards vs f32: largest relative difference %.3g (tolerance %.3g), %zu values not RNE\n", worst,
           BF16_REL_TOL, n_diff);
    CHECK(worst <= BF16_REL_TOL);
    CHECK(n_diff == 0);
    const pare_tensor *q = pare_model_find(b, "model.layers.2.self_attn.q_proj.weight");
    CHECK(q && strstr(b->maps[q->source]->path, "model-00003-of-00003.safetensors"));
done:
    pare_model_free(a);
    pare_model_free(b);
}

/* load -> save -> the same file, byte for byte (the writer lays headers out as the reference
 * writer did) -> reload -> same tensors. */
static void test_roundtrip_reference(void) {
    const char *p = th_shared("models/fortune-llama/model.safetensors");
    if (!p) return;
    pare_model *m = NULL, *r = NULL;
    pare_err err = {0};
    CHECK_OK(pare_safetensors_load(p, &m, &err), &err);
    if (!m) return;
    const char *out = th_tmp_path("rt.safetensors");
    CHECK_OK(pare_safetensors_save(m, out, false, &err), &err);
    size_t na = 0, nb = 0;
    void *fa = th_read_file(p, &na), *fb = th_read_file(out, &nb);
    CHECK_MSG(fa && fb && na == nb && memcmp(fa, fb, na) == 0, "saved file differs from the original (%zu vs %zu bytes)",
              na, nb);
    free(fa);
    free(fb);
    CHECK_OK(pare_safetensors_load(out, &r, &err), &err);
    if (r) CHECK(compare_models(m, r, true) == 0);
    /* The writer refuses to replace an existing file without force, and its own input. */
    CHECK(pare_safetensors_save(m, out, false, &err) != PARE_OK);
    CHECK(pare_safetensors_save(r, out, true, &err) != PARE_OK);
    pare_model_free(r);
    pare_model_free(m);
}

static void test_sharded_reference(void) {
    const char *p = th_shared("models/fortune-llama/model.safetensors");
    if (!p) return;
    pare_model *m = NULL, *r = NULL;
    pare_err err = {0};
    CHECK_OK(pare_safetensors_load(p, &m, &err), &err);
    if (!m) return;
    const char *dir = th_tmp_path("sharded");
    /* 1 MB shards: the 768x256 f32 MLP weights (786,432 bytes) fit one per shard. */
    const uint64_t max = 1000000;
    CHECK_OK(pare_safetensors_save_sharded(m, dir, max, false, &err), &err);
    CHECK_OK(pare_safetensors_load_index(th_tmp_path("sharded/model.safetensors.index.json"), &r, &err), &err);
    if (r) {
        CHECK(compare_models(m, r, false) == 0);
        uint64_t per_map[64] = {0};
        for (size_t i = 0; i < r->n_tensors; i++)
            if (r->tensors[i].source < 64) per_map[r->tensors[i].source] += r->tensors[i].n_bytes;
        uint64_t total = 0;
        for (size_t s = 0; s < r->n_maps && s < 64; s++) {
            CHECK_MSG(per_map[s] <= max, "shard %zu holds %llu bytes", s, (unsigned long long)per_map[s]);
            total += per_map[s];
        }
        printf("  sharded save: %zu shards of at most %llu bytes, %llu bytes of tensors\n", r->n_maps,
               (unsigned long long)max, (unsigned long long)total);
        CHECK(r->n_maps >= 13 && total == 13116416);
        char name[128];
        snprintf(name, sizeof name, "sharded/model-00001-of-%05zu.safetensors", r->n_maps);
        CHECK(pare_path_exists(th_tmp_path(name)));
        const char *fmt = pare_meta_get_str(&r->meta, "format");
        CHECK(fmt && strcmp(fmt, "pt") == 0);
    }
    /* Everything in one shard: model.safetensors and no index, as transformers. */
    const char *dir1 = th_tmp_path("single");
    CHECK_OK(pare_safetensors_save_sharded(m, dir1, 1ull << 40, false, &err), &err);
    CHECK(pare_path_exists(th_tmp_path("single/model.safetensors")));
    CHECK(!pare_path_exists(th_tmp_path("single/model.safetensors.index.json")));
    pare_model_free(r);
    pare_model_free(m);
}

/* ------------------------------------------------------------------------ generated models */

static void add_tensor(pare_model *m, const char *name, pare_type type, int n_dims, const int64_t *ne) {
    pare_err err = {0};
    pare_tensor t;
    CHECK_OK(pare_tensor_init(&t, name, type, n_dims, ne, &err), &err);
    uint8_t *buf = malloc(t.n_bytes ? (size_t)t.n_bytes : 1);
    for (uint64_t i = 0; i < t.n_bytes; i++) buf[i] = (uint8_t)(i * 31 + strlen(name));
    if (type == PARE_TYPE_BOOL)
        for (uint64_t i = 0; i < t.n_bytes; i++) buf[i] &= 1;
    pare_tensor_set_owned(&t, buf, t.n_bytes);
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

static pare_model *make_model(void) {
    pare_model *m = pare_model_new(PARE_FORMAT_UNKNOWN, NULL);
    pare_err err = {0};
    int64_t a[] = {3, 2}, b[] = {5}, c[] = {2, 3, 4}, d[] = {1}, e[] = {0, 4}, f[] = {2, 1, 2, 3};
    add_tensor(m, "w.f32", PARE_TYPE_F32, 2, a);
    add_tensor(m, "w.f16", PARE_TYPE_F16, 3, c);
    add_tensor(m, "w.bf16", PARE_TYPE_BF16, 1, b);
    add_tensor(m, "ids.i64", PARE_TYPE_I64, 2, a);
    add_tensor(m, "mask", PARE_TYPE_BOOL, 1, b);
    add_tensor(m, "bytes.u8", PARE_TYPE_U8, 4, f);
    add_tensor(m, "scalar", PARE_TYPE_F64, 1, d);
    add_tensor(m, "empty", PARE_TYPE_F32, 2, e);
    add_tensor(m, "fp8", PARE_TYPE_F8_E4M3, 1, b);
    add_tensor(m, "name with \"quotes\", \\ and \xc3\xa9", PARE_TYPE_I32, 1, b);
    CHECK_OK(pare_meta_set_str(&m->meta, "format", "pt", 2, &err), &err);
    const char *note = "line\nbreak \"q\" \x01 \xe2\x82\xac";
    CHECK_OK(pare_meta_set_str(&m->meta, "note", note, strlen(note), &err), &err);
    CHECK_OK(pare_meta_set_uint(&m->meta, "not.a.string", PARE_META_U32, 7, &err), &err);
    return m;
}

static void test_roundtrip_generated(void) {
    pare_model *m = make_model(), *r = NULL;
    pare_err err = {0};
    const char *out = th_tmp_path("gen.safetensors");
    CHECK_OK(pare_safetensors_save(m, out, false, &err), &err);
    CHECK_OK(pare_safetensors_load(out, &r, &err), &err);
    if (r) {
        CHECK(compare_models(m, r, false) == 0);
        /* Larger elements first: every tensor is aligned to its element size. */
        CHECK(strcmp(r->tensors[0].name, "ids.i64") == 0 && strcmp(r->tensors[1].name, "scalar") == 0);
        for (size_t i = 0; i < r->n_tensors; i++)
            CHECK_MSG(r->tensors[i].file_offset % pare_type_get(r->tensors[i].type)->type_size == 0,
                      "'%s' at %llu", r->tensors[i].name, (unsigned long long)r->tensors[i].file_offset);
        const char *note = pare_meta_get_str(&r->meta, "note");
        CHECK(note && strcmp(note, "line\nbreak \"q\" \x01 \xe2\x82\xac") == 0);
        CHECK(r->meta.n == 2); /* only STRING KVs are written */
    }
    /* Sharded with 40-byte shards: the 48-byte f16 and i64 tensors get shards of their own,
     * numbered when met, before the shard that was being filled (as huggingface_hub). */
    pare_model *s = NULL;
    CHECK_OK(pare_safetensors_save_sharded(m, th_tmp_path("gen-sharded"), 40, false, &err), &err);
    CHECK_OK(pare_safetensors_load_index(th_tmp_path("gen-sharded/model.safetensors.index.json"), &s, &err), &err);
    if (s) CHECK(compare_models(m, s, false) == 0);
    size_t n_idx = 0;
    char *idx = th_read_file(th_tmp_path("gen-sharded/model.safetensors.index.json"), &n_idx);
    CHECK(idx && strstr(idx, "\"total_size\": 180"));
    CHECK(idx && strstr(idx, "\"w.f16\": \"model-00001-of-00005.safetensors\""));
    CHECK(idx && strstr(idx, "\"ids.i64\": \"model-00002-of-00005.safetensors\""));
    CHECK(idx && strstr(idx, "\"mask\": \"model-00003-of-00005.safetensors\""));
    CHECK(idx && strstr(idx, "\"fp8\": \"model-00004-of-00005.safetensors\""));
    free(idx);
    pare_model_free(s);
    pare_model_free(r);
    pare_model_free(m);
}

static void test_writer_errors(void) {
    pare_err err = {0};
    pare_model *m = pare_model_new(PARE_FORMAT_UNKNOWN, NULL);
    int64_t ne[] = {64, 2};
    add_tensor(m, "ok", PARE_TYPE_F32, 2, ne);
    add_tensor(m, "blk.0.q4", PARE_TYPE_Q4_0, 2, ne);
    const char *out = th_tmp_path("q.safetensors");
    CHECK(pare_safetensors_save(m, out, false, &err) == PARE_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "blk.0.q4") && strstr(err.msg, out), "%s", err.msg);
    CHECK(!pare_path_exists(out));
    /* Streaming: wrong byte count, too few tensors -> errors, and no file left behind. */
    pare_st_writer *w = NULL;
    CHECK_OK(pare_st_writer_open(out, NULL, m->tensors, 1, false, NULL, 0, &w, &err), &err);
    if (w) {
        CHECK(pare_st_writer_add(w, m->tensors[0].data, 5, &err) == PARE_EUSAGE);
        CHECK(strstr(err.msg, "'ok'") != NULL);
        CHECK(pare_st_writer_finish(w, &err) == PARE_EUSAGE);
        pare_st_writer_free(w);
    }
    CHECK(!pare_path_exists(out));
    /* Duplicate names are refused. */
    pare_tensor two[2] = {m->tensors[0], m->tensors[0]};
    CHECK(pare_st_writer_open(out, NULL, two, 2, false, NULL, 0, &w, &err) == PARE_EINPUT);
    CHECK(strstr(err.msg, "duplicate") != NULL);
    pare_model_free(m);
}

/* ------------------------------------------------------------------------ corrupt files */

typedef struct {
    const char *name;      /* file name in the corpus */
    const char *hdr;       /* header text (NUL-terminated unless hdr_bytes is given) */
    size_t hdr_bytes;      /* 0: strlen(hdr) */
    uint64_t len_field;    /* UINT64_MAX: the real header length */
    size_t data_len;
    pare_status want;
    const char *want_text; /* a piece of the expected message */
} st_case;

#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"
#define NUL_HDR "{\"a\":" F32_2 "[0,8]}}\0   "
static const st_case st_cases[] = {
    {"st-header-past-end", "{}", 0, 1000, 0, PARE_EINPUT, "past the end"},
    {"st-huge-header-length", "{}", 0, 1ull << 62, 0, PARE_EINPUT, "exceeds"},
    {"st-header-length-overflow", "{}", 0, UINT64_MAX - 4, 0, PARE_EINPUT, "exceeds"},
    {"st-zero-header", "", 0, UINT64_MAX, 0, PARE_EINPUT, "not valid JSON"},
    {"st-non-object", "[1,2,3] ", 0, UINT64_MAX, 0, PARE_EINPUT, "not a JSON object"},
    {"st-truncated-json", "{\"a\":" F32_2 "[0,8]", 0, UINT64_MAX, 8, PARE_EINPUT, "not valid JSON"},
    {"st-trailing-garbage", "{\"a\":" F32_2 "[0,8]}} x", 0, UINT64_MAX, 8, PARE_EINPUT, "trailing"},
    {"st-unknown-dtype", "{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,32]}}", 0, UINT64_MAX, 32,
     PARE_EINPUT, "unknown dtype"},
    {"st-missing-dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "dtype"},
    {"st-shape-offset-mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "need 12"},
    {"st-overlap", "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[4,12]}}", 0, UINT64_MAX, 12, PARE_EINPUT, "overlaps"},
    {"st-gap", "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[12,20]}}", 0, UINT64_MAX, 20, PARE_EINPUT, "gap"},
    {"st-not-starting-at-zero", "{\"a\":" F32_2 "[4,12]}}", 0, UINT64_MAX, 12, PARE_EINPUT, "not 0"},
    {"st-not-ending-at-file-end", "{\"a\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 16, PARE_EINPUT, "not covered"},
    {"st-data-past-file-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "past the end"},
    {"st-offsets-reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "end before"},
    {"st-offsets-three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "two non-negative"},
    {"st-offset-string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "two non-negative"},
    {"st-duplicate-name", "{\"a\":" F32_2 "[0,8]},\"a\":" F32_2 "[8,16]}}", 0, UINT64_MAX, 16, PARE_EINPUT, "twice"},
    {"st-duplicate-meta-key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"},\"a\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "twice in one object"},
    {"st-duplicate-dtype", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0,
     UINT64_MAX, 8, PARE_EINPUT, "twice in one object"},
    {"st-invalid-utf8-name", "{\"\xff\xfe\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "UTF-8"},
    {"st-overlong-utf8", "{\"\xc0\xaf\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "UTF-8"},
    {"st-lone-surrogate-escape", "{\"\\udc00\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "JSON"},
    {"st-negative-dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "non-negative"},
    {"st-fractional-dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "non-negative"},
    {"st-shape-overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, UINT64_MAX, 0,
     PARE_EINPUT, "overflow"},
    {"st-bytes-overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}", 0,
     UINT64_MAX, 0, PARE_EINPUT, "overflow"},
    {"st-shape-not-array", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 0, UINT64_MAX, 8,
     PARE_EINPUT, "shape"},
    {"st-entry-not-object", "{\"a\":[1,2]}", 0, UINT64_MAX, 0, PARE_EINPUT, "not a JSON object"},
    {"st-metadata-not-string", "{\"__metadata__\":{\"format\":1}}", 0, UINT64_MAX, 0, PARE_EINPUT,
     "not a string"},
    {"st-metadata-not-object", "{\"__metadata__\":\"pt\"}", 0, UINT64_MAX, 0, PARE_EINPUT, "not a JSON object"},
    {"st-metadata-twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, UINT64_MAX, 0, PARE_EINPUT, "twice"},
    {"st-invalid-utf8-metadata", "{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, UINT64_MAX, 0, PARE_EINPUT,
     "UTF-8"},
    {"st-nul-in-header", NUL_HDR, sizeof NUL_HDR - 1, UINT64_MAX, 8, PARE_EINPUT, "trailing"},
    {"st-control-char-in-name", "{\"a\tb\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "control character"},
    {"st-nul-escape-in-name", "{\"a\\u0000b\":" F32_2 "[0,8]}}", 0, UINT64_MAX, 8, PARE_EINPUT, "u0000"},
    {"st-five-dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2,2,2,2,2],\"data_offsets\":[0,32]}}", 0, UINT64_MAX, 32,
     PARE_EUNSUPPORTED, "dimensions"},
};

static pare_status write_case(const st_case *c, const char *path) {
    size_t hb = c->hdr_bytes ? c->hdr_bytes : strlen(c->hdr);
    return write_st(path, c->hdr, hb, c->len_field, c->data_len) == 0 ? PARE_OK : PARE_EIO;
}

static void test_corrupt_files(void) {
    int n_ok = 0;
    size_t n = sizeof st_cases / sizeof st_cases[0];
    for (size_t i = 0; i < n; i++) {
        const st_case *c = &st_cases[i];
        char name[128];
        snprintf(name, sizeof name, "%s.safetensors", c->name);
        const char *path = th_tmp_path(name);
        CHECK(write_case(c, path) == PARE_OK);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_safetensors_load(path, &m, &err);
        bool ok = st == c->want && m == NULL && strstr(err.msg, path) && strstr(err.msg, c->want_text);
        CHECK_MSG(ok, "%s: status %d (want %d), message: %s", c->name, st, c->want, err.msg);
        n_ok += ok;
        pare_model_free(m);
    }
    /* A 4-byte file is too short even for the length. */
    const char *shortp = th_tmp_path("st-short.safetensors");
    CHECK(th_write_file(shortp, "\x08\0\0\0", 4) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK(pare_safetensors_load(shortp, &m, &err) == PARE_EINPUT && strstr(err.msg, "too short"));
    printf("  %d of %zu corrupt safetensors files refused as expected\n", n_ok, n);
}

/* A header with a very deep JSON nesting is refused without blowing the stack. */
static void test_deep_nesting(void) {
    size_t depth = 100000;
    char *h = malloc(depth * 2 + 16);
    size_t k = 0;
    h[k++] = '{';
    memcpy(h + k, "\"a\":", 4);
    k += 4;
    for (size_t i = 0; i < depth; i++) h[k++] = '[';
    for (size_t i = 0; i < depth; i++) h[k++] = ']';
    h[k++] = '}';
    const char *path = th_tmp_path("st-deep.safetensors");
    CHECK(write_st(path, h, k, UINT64_MAX, 0) == 0);
    free(h);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK(pare_safetensors_load(path, &m, &err) == PARE_EINPUT && strstr(err.msg, path));
}

/* ------------------------------------------------------------------------ corrupt indexes */

typedef struct {
    const char *name;
    const char *index;
    const char *want_text;
} idx_case;

/* Two valid shards: s1 holds a, b; s2 holds c. */
static const idx_case idx_cases[] = {
    {"st-index-missing-tensor",
     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\",\"d\":\"s2.safetensors\"}}",
     "'d' is listed in shard s2.safetensors"},
    {"st-index-unlisted-tensor", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}",
     "'b' of shard"},
    {"st-index-wrong-shard",
     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}",
     "'c' is listed in shard s1.safetensors"},
    {"st-index-escaping-path", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "plain file name"},
    {"st-index-absolute-path", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "plain file name"},
    {"st-index-subfolder", "{\"weight_map\":{\"a\":\"sub/s1.safetensors\"}}", "plain file name"},
    {"st-index-backslash", "{\"weight_map\":{\"a\":\"..\\\\s1.safetensors\"}}", "plain file name"},
    {"st-index-duplicate-key",
     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"},"
     "\"metadata\":{\"total_size\":1,\"total_size\":2}}",
     "twice in one object"},
    {"st-index-no-weight-map", "{\"metadata\":{}}", "weight_map"},
    {"st-index-not-string", "{\"weight_map\":{\"a\":1}}", "not a string"},
    {"st-index-missing-shard", "{\"weight_map\":{\"a\":\"nope.safetensors\"}}", "nope.safetensors"},
    {"st-index-bad-json", "{\"weight_map\":{\"a\":", "not valid JSON"},
};

static int write_index_case(const char *dir, const idx_case *c) {
    char p[600];
    mkdir(dir, 0777);
    const char *s1 = "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[8,16]}}";
    const char *s2 = "{\"c\":" F32_2 "[0,8]}}";
    snprintf(p, sizeof p, "%s/s1.safetensors", dir);
    if (write_st(p, s1, strlen(s1), UINT64_MAX, 16)) return -1;
    snprintf(p, sizeof p, "%s/s2.safetensors", dir);
    if (write_st(p, s2, strlen(s2), UINT64_MAX, 8)) return -1;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    return th_write_file(p, c->index, strlen(c->index));
}

static void test_corrupt_indexes(void) {
    /* First the good one. */
    static const idx_case good = {"st-index-good",
                                  "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"c\":\"s2.safetensors\","
                                  "\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}",
                                  ""};
    const char *dir = th_tmp_path(good.name);
    CHECK(write_index_case(dir, &good) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_safetensors_load_index(th_tmp_path("st-index-good/model.safetensors.index.json"), &m, &err), &err);
    CHECK(m && m->n_tensors == 3 && m->n_maps == 2 && pare_model_find(m, "c")->source == 0);
    pare_model_free(m);
    size_t n = sizeof idx_cases / sizeof idx_cases[0];
    for (size_t i = 0; i < n; i++) {
        const idx_case *c = &idx_cases[i];
        dir = th_tmp_path(c->name);
        CHECK(write_index_case(dir, c) == 0);
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        m = NULL;
        pare_status st = pare_safetensors_load_index(path, &m, &err);
        bool is_missing = strcmp(c->name, "st-index-missing-shard") == 0;
        CHECK_MSG((is_missing ? st == PARE_EIO : st == PARE_EINPUT) && !m && strstr(err.msg, c->want_text),
                  "%s: status %d, message: %s", c->name, st, err.msg);
        CHECK_MSG(strstr(err.msg, dir), "%s: message lacks the file: %s", c->name, err.msg);
        pare_model_free(m);
    }
}

/* Random byte edits and truncations of a valid file: every load either succeeds or fails
 * with a message naming the file; no crash under ASan. */
#define N_MUTATIONS 600

static void test_mutations(void) {
    pare_model *m = make_model(), *r = NULL;
    pare_err err = {0};
    const char *src = th_tmp_path("mut-src.safetensors"), *path = th_tmp_path("mutant.safetensors");
    CHECK_OK(pare_safetensors_save(m, src, false, &err), &err);
    pare_model_free(m);
    size_t n = 0;
    uint8_t *orig = th_read_file(src, &n), *b = malloc(n ? n : 1);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    int loaded = 0, refused = 0, bad = 0;
    for (int it = 0; orig && b && it < N_MUTATIONS; it++) {
        memcpy(b, orig, n);
        size_t len = n;
        for (int k = 0; k < 2; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t pos = (size_t)(rng >> 16) % len;
            /* Mostly hit the header, where the structure is. */
            if (rng % 4) pos %= (len < 400 ? len : 400);
            if (k == 1 && rng % 7 == 0) len = pos + 1;
            else b[pos] = (rng % 3) ? (uint8_t)(rng >> 8) : (uint8_t)"{}[],:\"0123456789"[(rng >> 8) % 18];
        }
        th_write_file(path, b, len);
        r = NULL;
        if (pare_safetensors_load(path, &r, &err) == PARE_OK) loaded++;
        else refused++, bad += strstr(err.msg, path) == NULL;
        pare_model_free(r);
    }
    free(orig);
    free(b);
    printf("  %d mutated files: %d loaded, %d refused, %d messages without the file name\n", N_MUTATIONS, loaded,
           refused, bad);
    CHECK(loaded + refused == N_MUTATIONS && bad == 0 && refused > N_MUTATIONS / 2);
}

/* ------------------------------------------------------------------------ main */

static int write_corpus(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    int bad = 0;
    char path[1024];
    for (size_t i = 0; i < sizeof st_cases / sizeof st_cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, st_cases[i].name);
        bad |= write_case(&st_cases[i], path) != PARE_OK;
    }
    for (size_t i = 0; i < sizeof idx_cases / sizeof idx_cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, idx_cases[i].name);
        bad |= write_index_case(path, &idx_cases[i]) != 0;
    }
    printf("wrote %zu corrupt safetensors files and %zu corrupt index folders to %s\n",
           sizeof st_cases / sizeof st_cases[0], sizeof idx_cases / sizeof idx_cases[0], dir);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    if (!th_tmpdir("pare-st-test")) return 1;
    TH_RUN(test_load_reference);
    TH_RUN(test_load_index_bf16);
    TH_RUN(test_roundtrip_reference);
    TH_RUN(test_sharded_reference);
    TH_RUN(test_roundtrip_generated);
    TH_RUN(test_writer_errors);
    TH_RUN(test_corrupt_files);
    TH_RUN(test_deep_nesting);
    TH_RUN(test_corrupt_indexes);
    TH_RUN(test_mutations);
    th_rm_rf(th.tmpdir);
    return th_done();
}
