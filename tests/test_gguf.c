/* tests/test_gguf.c - GGUF reader and writer.
 *
 *   test_gguf                      run the tests
 *   test_gguf --write-corpus DIR   write the malformed files into DIR (gguf-NAME.gguf) and
 *                                  exit, for the CLI's exit-code tests
 *
 * What is checked: a hand-built file field by field; every value type and every tensor
 * layout through writer -> reader -> writer (byte-identical second write); every GGUF in
 * ../shared loads, its tensors agree with independent sources (safetensors, f16 rounding),
 * and a rewrite keeps every key, type, value and byte (and the whole file); split files;
 * writer misuse; 40 malformed files, every truncation and thousands of random mutations;
 * hostile but well-formed counts load in linear time; saving streams without growing RSS.
 * Allocations above 256 MB abort the test (ASan option below), so a reader that trusted a
 * count from a file would crash here. */
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "th.h"

#include <dirent.h>
#include <unistd.h>

/* Any allocation over this aborts under ASan: readers must bound sizes by the file. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "max_allocation_size_mb=256"; }

/* Saving a 96 MB model may add at most this much to the peak RSS. */
#define SAVE_RSS_GROWTH_MAX (40u << 20)
/* 200k keys or 100k tensors load in well under this even under ASan (quadratic: minutes). */
#define HOSTILE_COUNT_SECONDS 10.0

/* ------------------------------------------------------------------------ helpers */

/* GGUF pieces (tests/th.h's buffer) */
static void strn(th_buf *b, const char *s, size_t n) { th_buf_u64(b, n); th_buf_put(b, s, n); }
static void str(th_buf *b, const char *s) { strn(b, s, strlen(s)); }
static void pad(th_buf *b, size_t a) { while (b->n % a) th_buf_put(b, "", 1); }

static bool read_whole(const char *path, pare_map **m) {
    pare_err err = {0};
    *m = NULL;
    return pare_map_open(path, m, &err) == PARE_OK;
}

static bool same_file_bytes(const char *a, const char *b) {
    pare_map *ma, *mb;
    bool same = read_whole(a, &ma) && read_whole(b, &mb) && ma->size == mb->size &&
                (ma->size == 0 || !memcmp(ma->data, mb->data, (size_t)ma->size));
    pare_map_free(ma);
    pare_map_free(mb);
    return same;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

/* ---- comparing models: why is filled with the first difference ---- */

static bool kv_equal(const pare_kv *a, const pare_kv *b) {
    if (strcmp(a->key, b->key) || a->type != b->type) return false;
    switch (a->type) {
    case PARE_META_F32: { float x = (float)a->v.f64, y = (float)b->v.f64; return !memcmp(&x, &y, 4); }
    case PARE_META_F64: return !memcmp(&a->v.f64, &b->v.f64, 8);
    case PARE_META_STRING: return a->str.len == b->str.len && !memcmp(a->str.s, b->str.s, (size_t)a->str.len);
    case PARE_META_ARRAY:
        if (a->elem_type != b->elem_type || a->n != b->n) return false;
        if (a->elem_type == PARE_META_STRING) {
            const pare_str *x = a->arr, *y = b->arr;
            for (uint64_t i = 0; i < a->n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].s, y[i].s, (size_t)x[i].len)) return false;
            return true;
        }
        return !a->n || !memcmp(a->arr, b->arr, (size_t)(a->n * pare_meta_type_size(a->elem_type)));
    default: return a->v.u64 == b->v.u64; /* integers and bools, whichever union member */
    }
}

static bool meta_equal(const pare_meta *a, const pare_meta *b, char *why, size_t cap) {
    if (a->n != b->n) return snprintf(why, cap, "%zu keys vs %zu", a->n, b->n), false;
    for (size_t i = 0; i < a->n; i++)
        if (!kv_equal(&a->kv[i], &b->kv[i]))
            return snprintf(why, cap, "key %zu '%s' differs", i, a->kv[i].key), false;
    return true;
}

static bool tensors_equal(const pare_model *a, const pare_model *b, char *why, size_t cap) {
    if (a->n_tensors != b->n_tensors) return snprintf(why, cap, "%zu tensors vs %zu", a->n_tensors, b->n_tensors), false;
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pare_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        bool same = !strcmp(x->name, y->name) && x->type == y->type && x->n_dims == y->n_dims &&
                    !memcmp(x->ne, y->ne, sizeof x->ne) && x->n_bytes == y->n_bytes &&
                    (!x->n_bytes || !memcmp(x->data, y->data, (size_t)x->n_bytes));
        if (!same) return snprintf(why, cap, "tensor %zu '%s' differs", i, x->name), false;
    }
    return true;
}

/* ------------------------------------------------------------------------ a tiny GGUF */

/* Each option corrupts the tiny file in one way; tiny_default() makes it valid. */
typedef struct {
    const char *magic;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    const char *key1;       /* first key; may hold a NUL (key1_len) */
    size_t key1_len;
    const char *key_str;    /* key of the string value ("a.u32" duplicates) */
    uint32_t u32_type;      /* type tag of a.u32 */
    uint64_t str_len;       /* declared length of "hello" */
    uint32_t align_type, align;
    uint32_t arr_type;      /* element type of a.arr */
    uint64_t arr_n;         /* declared count of a.arr (3 written) */
    bool nested;
    uint8_t bool_val;
    const char *t2_name;
    size_t t2_name_len;
    uint32_t n_dims, type2;
    uint64_t dims[8];
    uint64_t off2;
    size_t truncate;        /* keep only this many bytes (0: all) */
    bool empty;             /* an empty file */
    size_t extra;           /* bytes appended after the data (a polyglot's tail) */
} tiny_opts;

static tiny_opts tiny_default(void) {
    return (tiny_opts){.magic = "GGUF", .version = 3, .n_tensors = 2, .n_kv = 6, .key1 = "general.architecture",
                       .key_str = "a.str", .u32_type = PARE_META_U32, .str_len = 5,
                       .align_type = PARE_META_U32, .align = 32, .arr_type = PARE_META_U32, .arr_n = 3,
                       .bool_val = 1, .t2_name = "t2", .n_dims = 2, .type2 = PARE_TYPE_F32,
                       .dims = {8, 2, 1, 1, 1, 1, 1, 1}, .off2 = 32};
}

/* KVs: general.architecture="tiny", a.u32=7, a.str="hello", general.alignment=32,
 * a.arr=[1,2,3] (u32), a.bool=true. Tensors: t1 f32 [8] = 0..7 at 0, t2 f32 [8,2] = 8..23
 * at 32. The file ends right after t2 (at a multiple of 32). */
static void tiny(th_buf *b, tiny_opts o) {
    b->n = 0;
    th_buf_put(b, o.magic, 4);
    th_buf_u32(b, o.version);
    th_buf_u64(b, o.n_tensors);
    th_buf_u64(b, o.n_kv);
    strn(b, o.key1, o.key1_len ? o.key1_len : strlen(o.key1)); th_buf_u32(b, PARE_META_STRING); str(b, "tiny");
    str(b, "a.u32"); th_buf_u32(b, o.u32_type); th_buf_u32(b, 7);
    str(b, o.key_str); th_buf_u32(b, PARE_META_STRING); th_buf_u64(b, o.str_len); th_buf_put(b, "hello", 5);
    str(b, "general.alignment"); th_buf_u32(b, o.align_type); th_buf_u32(b, o.align);
    str(b, "a.arr"); th_buf_u32(b, PARE_META_ARRAY);
    if (o.nested) { th_buf_u32(b, PARE_META_ARRAY); th_buf_u64(b, 1); th_buf_u32(b, PARE_META_U32); th_buf_u64(b, 1); th_buf_u32(b, 1); }
    else { th_buf_u32(b, o.arr_type); th_buf_u64(b, o.arr_n); th_buf_u32(b, 1); th_buf_u32(b, 2); th_buf_u32(b, 3); }
    str(b, "a.bool"); th_buf_u32(b, PARE_META_BOOL); th_buf_put(b, &o.bool_val, 1);
    str(b, "t1"); th_buf_u32(b, 1); th_buf_u64(b, 8); th_buf_u32(b, PARE_TYPE_F32); th_buf_u64(b, 0);
    strn(b, o.t2_name, o.t2_name_len ? o.t2_name_len : strlen(o.t2_name));
    th_buf_u32(b, o.n_dims);
    for (uint32_t d = 0; d < o.n_dims && d < 8; d++) th_buf_u64(b, o.dims[d]);
    th_buf_u32(b, o.type2); th_buf_u64(b, o.off2);
    pad(b, 32);
    for (int i = 0; i < 8 + 16; i++) { float f = (float)i; th_buf_put(b, &f, 4); }
    for (size_t i = 0; i < o.extra; i++) th_buf_put(b, "P", 1);
    if (o.truncate) b->n = o.truncate;
    if (o.empty) b->n = 0;
}

typedef struct {
    const char *name;
    tiny_opts o;
    pare_status want;
    const char *say; /* the message must contain this */
} corrupt_case;

#define MAX_CASES 64

static size_t corrupt_cases(corrupt_case *c) {
    size_t n = 0;
    tiny_opts d = tiny_default();
#define CASE(nm, st, say_, ...) do { tiny_opts o = d; __VA_ARGS__; c[n++] = (corrupt_case){nm, o, st, say_}; } while (0)
#define BAD(nm, say_, ...) CASE(nm, PARE_EINPUT, say_, __VA_ARGS__)
    BAD("empty.gguf", "truncated", o.empty = true);
    BAD("one-byte.gguf", "truncated", o.truncate = 1);
    BAD("bad-magic.gguf", "magic 'GGUX'", o.magic = "GGUX");
    BAD("version-0.gguf", "version 0", o.version = 0);
    BAD("version-1.gguf", "version 1", o.version = 1);
    BAD("version-4.gguf", "version 4", o.version = 4);
    CASE("version-byte-swapped.gguf", PARE_EUNSUPPORTED, "byte-swapped", o.version = 0x03000000);
    BAD("truncated-header.gguf", "truncated", o.truncate = 10);
    BAD("truncated-kv.gguf", "key 3: truncated", o.truncate = 130);
    BAD("truncated-tensor-info.gguf", "tensor 1 't2': truncated", o.truncate = 280);
    BAD("truncated-data.gguf", "past the end", o.truncate = 330);
    BAD("huge-tensor-count.gguf", "tensors cannot fit", o.n_tensors = 1ull << 60);
    BAD("huge-kv-count.gguf", "metadata keys cannot fit", o.n_kv = 1ull << 62);
    BAD("kv-count-too-high.gguf", "tensor 0", o.n_kv = 7);
    BAD("tensor-count-too-high.gguf", "tensor 2", o.n_tensors = 3);
    BAD("huge-string.gguf", "at most", o.str_len = 1ull << 40);
    BAD("string-past-end.gguf", "truncated", o.str_len = 100000);
    BAD("empty-key.gguf", "empty key", o.key1 = "");
    BAD("nul-in-key.gguf", "NUL", o.key1 = "gen\0ral", o.key1_len = 7);
    BAD("duplicate-key.gguf", "key 2 'a.u32': duplicate key", o.key_str = "a.u32");
    BAD("unknown-value-type.gguf", "key 1 'a.u32': unknown value type 99", o.u32_type = 99);
    BAD("unknown-array-type.gguf", "unknown array element type 13", o.arr_type = 13);
    BAD("nested-array.gguf", "arrays of arrays", o.nested = true);
    BAD("huge-array.gguf", "larger than", o.arr_n = 1ull << 62);
    BAD("array-past-end.gguf", "truncated", o.arr_n = 100000);
    BAD("huge-string-array.gguf", "cannot fit", o.arr_type = PARE_META_STRING, o.arr_n = 1ull << 40);
    BAD("bool-value-2.gguf", "neither 0 nor 1", o.bool_val = 2);
    BAD("alignment-not-pow2.gguf", "power of two", o.align = 24);
    BAD("alignment-zero.gguf", "power of two", o.align = 0);
    BAD("alignment-wrong-type.gguf", "must be a u32", o.align_type = PARE_META_I32);
    BAD("alignment-past-end.gguf", "data section", o.align = 1u << 20);
    BAD("alignment-huge.gguf", "larger than 1048576", o.align = 1u << 30);
    BAD("trailing-byte.gguf", "trailing data is refused", o.extra = 1);
    BAD("trailing-zip.gguf", "trailing data is refused", o.extra = 4096);
    BAD("duplicate-tensor.gguf", "tensor 1 't1': duplicate tensor name", o.t2_name = "t1");
    BAD("long-name.gguf", "at most 63",
        o.t2_name = "a-tensor-name-that-is-much-longer-than-the-sixty-three-bytes-ggml-allows");
    BAD("nul-in-name.gguf", "NUL", o.t2_name = "t\0x", o.t2_name_len = 3);
    BAD("zero-dims.gguf", "0 dimensions", o.n_dims = 0);
    BAD("five-dims.gguf", "5 dimensions", o.n_dims = 5);
    BAD("negative-dim.gguf", "negative", o.dims[1] = (uint64_t)-5);
    BAD("unknown-type.gguf", "unknown ggml type 77", o.type2 = 77);
    BAD("removed-type.gguf", "unknown ggml type 4", o.type2 = 4);
    BAD("type-past-ggml.gguf", "unknown ggml type 64", o.type2 = PARE_TYPE_BOOL);
    BAD("shape-overflow.gguf", "overflow", o.dims[0] = 1ull << 40, o.dims[1] = 1ull << 40);
    BAD("block-misfit.gguf", "block size", o.type2 = PARE_TYPE_Q4_0);
    BAD("misaligned-offset.gguf", "tensor 1 't2': offset 33 is not a multiple of the alignment 32", o.off2 = 33);
    BAD("offset-gap.gguf", "gap", o.off2 = 64);
    BAD("offset-overlap.gguf", "overlap", o.off2 = 0);
    BAD("data-past-end.gguf", "past the end", o.dims[1] = 200);
#undef BAD
#undef CASE
    return n;
}

static void test_tiny_valid(void) {
    th_buf b = {0};
    tiny(&b, tiny_default());
    const char *path = th_tmp_path("tiny.gguf");
    CHECK(th_write_file(path, b.p, b.n) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    if (m) {
        CHECK(m->format == PARE_FORMAT_GGUF && m->version == 3 && m->alignment == 32 && m->gguf_names);
        CHECK(m->arch && !strcmp(m->arch, "tiny"));
        CHECK(m->n_tensors == 2 && m->meta.n == 6 && m->n_maps == 1);
        uint64_t u = 0;
        bool bv = false;
        CHECK(pare_meta_get_u64(&m->meta, "a.u32", &u) && u == 7);
        CHECK(pare_meta_get_bool(&m->meta, "a.bool", &bv) && bv);
        const pare_kv *arr = pare_meta_get(&m->meta, "a.arr");
        int64_t e2 = 0;
        CHECK(arr && arr->elem_type == PARE_META_U32 && arr->n == 3 && pare_kv_arr_i64(arr, 2, &e2) && e2 == 3);
        const pare_kv *s = pare_meta_get(&m->meta, "a.str");
        CHECK(s && s->str.len == 5 && !strcmp(s->str.s, "hello"));
        const pare_tensor *t2 = &m->tensors[1];
        CHECK(!strcmp(t2->name, "t2") && t2->type == PARE_TYPE_F32 && t2->n_dims == 2 && t2->ne[0] == 8 &&
              t2->ne[1] == 2 && t2->ne[2] == 1 && t2->n_bytes == 64 && t2->source == 0);
        /* Data starts at the first multiple of 32 after the infos; t2 32 bytes later. */
        CHECK(t2->file_offset == b.n - 64 && (t2->file_offset - 32) % 32 == 0);
        CHECK(t2->data == m->maps[0]->data + t2->file_offset);
        const float *v = t2->data;
        CHECK(v && v[0] == 8.0f && v[15] == 23.0f);
        CHECK(((const float *)m->tensors[0].data)[7] == 7.0f);
    }
    pare_model_free(m);
    /* Version 2 has the same layout. */
    tiny_opts o = tiny_default();
    o.version = 2;
    tiny(&b, o);
    CHECK(th_write_file(path, b.p, b.n) == 0);
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    CHECK(m && m->version == 2 && m->n_tensors == 2);
    pare_model_free(m);
    /* Missing padding after the last tensor is accepted (ggml reads no further either). */
    o = tiny_default();
    o.n_dims = 1;
    o.dims[0] = 7;
    tiny(&b, o);
    b.n = 288 + 32 + 28; /* t2 (28 bytes at data offset 32) ends the file */
    CHECK(th_write_file(path, b.p, b.n) == 0);
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    pare_model_free(m);
    unlink(path);
    free(b.p);
}

/* ------------------------------------------------------------------------ malformed files */

static void test_corrupt(void) {
    corrupt_case cases[MAX_CASES];
    size_t n = corrupt_cases(cases), refused = 0;
    th_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        tiny(&b, cases[i].o);
        const char *path = th_tmp_path(cases[i].name);
        CHECK(th_write_file(path, b.p, b.n) == 0);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_gguf_load(path, &m, &err);
        bool ok = st == cases[i].want && strstr(err.msg, path) && strstr(err.msg, cases[i].say) && !m;
        CHECK_MSG(ok, "%s: status %d (want %d), message '%s' (want '%s')", cases[i].name, st, cases[i].want, err.msg,
                  cases[i].say);
        refused += ok;
        pare_model_free(m);
        unlink(path);
    }
    free(b.p);
    printf("  %zu of %zu malformed GGUF files refused with the expected status and message\n", refused, n);
    CHECK(n >= 40);
}

/* Every strict prefix of the tiny file is refused. */
static void test_truncations(void) {
    th_buf b = {0};
    tiny(&b, tiny_default());
    const char *path = th_tmp_path("prefix.gguf");
    size_t refused = 0;
    for (size_t len = 0; len < b.n; len++) {
        CHECK(th_write_file(path, b.p, len) == 0);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_gguf_load(path, &m, &err);
        bool ok = st == PARE_EINPUT && strstr(err.msg, path);
        if (!ok) CHECK_MSG(ok, "prefix of %zu bytes: status %d, '%s'", len, st, err.msg);
        refused += ok;
        pare_model_free(m);
    }
    printf("  %zu of %zu truncations refused\n", refused, b.n);
    unlink(path);
    free(b.p);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A loaded model's tensors must lie inside their file, aligned as the header says. */
static bool model_sane(const pare_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        const pare_map *map = m->maps[t->source];
        if (t->file_offset > map->size || t->n_bytes > map->size - t->file_offset) return false;
        if ((const uint8_t *)t->data != map->data + t->file_offset) return false;
    }
    return true;
}

/* Random byte changes in a header: every result is a clean load or a clean refusal. */
static void mutate_file(const uint8_t *orig, size_t n, size_t span, int rounds, uint64_t seed, int counts[3]) {
    uint8_t *b = malloc(n);
    const char *path = th_tmp_path("mutant.gguf");
    for (int r = 0; r < rounds; r++) {
        memcpy(b, orig, n);
        int k = 1 + (int)(rng_next(&seed) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(rng_next(&seed) % span);
            uint64_t how = rng_next(&seed);
            b[at] = (how & 1) ? (uint8_t)(how >> 8) : (uint8_t)(b[at] ^ (1u << ((how >> 8) % 8)));
        }
        size_t len = (rng_next(&seed) % 8 == 0) ? (size_t)(rng_next(&seed) % n) : n;
        if (th_write_file(path, b, len)) break;
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_gguf_load(path, &m, &err);
        if (st == PARE_OK) {
            counts[0]++;
            CHECK_MSG(model_sane(m), "mutant %d loaded with a tensor outside its file", r);
        } else {
            counts[st == PARE_EINPUT ? 1 : 2]++;
            CHECK_MSG((st == PARE_EINPUT || st == PARE_EUNSUPPORTED) && strstr(err.msg, path),
                      "mutant %d: status %d, '%s'", r, st, err.msg);
        }
        pare_model_free(m);
    }
    unlink(path);
    free(b);
}

static void test_mutations(void) {
    th_buf b = {0};
    tiny(&b, tiny_default());
    int counts[3] = {0};
    mutate_file(b.p, b.n, b.n, 2500, 0x9e3779b97f4a7c15ull, counts);
    free(b.p);
    const char *lora = th_shared("models/fortune-llama-lora/lora-licenses-f32.gguf");
    if (lora) {
        pare_map *m;
        if (read_whole(lora, &m)) mutate_file(m->data, (size_t)m->size, 4160, 150, 12345, counts);
        pare_map_free(m);
    }
    printf("  mutants: %d loaded, %d refused as bad input, %d as unsupported\n", counts[0], counts[1], counts[2]);
}

/* Many keys or tensors, each well-formed: loading stays linear. */
static void test_hostile_counts(void) {
    th_buf b = {0};
    const uint32_t n_kv = 200000, n_t = 100000;
    th_buf_put(&b, "GGUF", 4); th_buf_u32(&b, 3); th_buf_u64(&b, 0); th_buf_u64(&b, n_kv);
    char k[32];
    for (uint32_t i = 0; i < n_kv; i++) {
        snprintf(k, sizeof k, "k%07u", i);
        str(&b, k); th_buf_u32(&b, PARE_META_U8); th_buf_put(&b, "x", 1);
    }
    const char *path = th_tmp_path("many.gguf");
    CHECK(th_write_file(path, b.p, b.n) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    double t0 = pare_now();
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    double t_kv = pare_now() - t0;
    CHECK(m && m->meta.n == n_kv);
    pare_model_free(m);
    /* The last key repeats the first. */
    memcpy(b.p + b.n - 1 - 4 - 8, "k0000000", 8);
    CHECK(th_write_file(path, b.p, b.n) == 0);
    CHECK(pare_gguf_load(path, &m, &err) == PARE_EINPUT && strstr(err.msg, "duplicate key"));
    /* 100k empty tensors, all at offset 0 (ne[0] = 0: zero bytes each). */
    b.n = 0;
    th_buf_put(&b, "GGUF", 4); th_buf_u32(&b, 3); th_buf_u64(&b, n_t); th_buf_u64(&b, 0);
    for (uint32_t i = 0; i < n_t; i++) {
        snprintf(k, sizeof k, "t%07u", i);
        str(&b, k); th_buf_u32(&b, 2); th_buf_u64(&b, 0); th_buf_u64(&b, 7); th_buf_u32(&b, PARE_TYPE_F32); th_buf_u64(&b, 0);
    }
    size_t last_name = b.n - 48 + 8;
    pad(&b, 32);
    CHECK(th_write_file(path, b.p, b.n) == 0);
    t0 = pare_now();
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    double t_t = pare_now() - t0;
    CHECK(m && m->n_tensors == n_t && m->tensors[n_t - 1].n_bytes == 0);
    /* ... and the writer handles them as fast. */
    if (m) CHECK_OK(pare_gguf_save(m, th_tmp_path("many-copy.gguf"), false, &err), &err);
    CHECK(same_file_bytes(path, th_tmp_path("many-copy.gguf")));
    pare_model_free(m);
    memcpy(b.p + last_name, "t0000000", 8); /* the last tensor named as the first */
    CHECK(th_write_file(path, b.p, b.n) == 0);
    CHECK(pare_gguf_load(path, &m, &err) == PARE_EINPUT && strstr(err.msg, "duplicate tensor name"));
    printf("  %u keys loaded in %.2f s, %u tensors in %.2f s\n", n_kv, t_kv, n_t, t_t);
    CHECK(t_kv < HOSTILE_COUNT_SECONDS && t_t < HOSTILE_COUNT_SECONDS);
    unlink(path);
    unlink(th_tmp_path("many-copy.gguf"));
    free(b.p);
}

/* ------------------------------------------------------------------------ writer */

/* Metadata with every value type, edge values, empty and NUL-holding strings, and arrays of
 * every element type (some empty). */
static void build_meta(pare_meta *m, uint32_t alignment, pare_err *err) {
    pare_meta_set_str(m, "general.architecture", "test", 4, err);
    pare_meta_set_uint(m, "general.alignment", PARE_META_U32, alignment, err);
    pare_meta_set_uint(m, "v.u8", PARE_META_U8, 255, err);
    pare_meta_set_int(m, "v.i8", PARE_META_I8, -128, err);
    pare_meta_set_uint(m, "v.u16", PARE_META_U16, 65535, err);
    pare_meta_set_int(m, "v.i16", PARE_META_I16, -32768, err);
    pare_meta_set_uint(m, "v.u32", PARE_META_U32, UINT32_MAX, err);
    pare_meta_set_int(m, "v.i32", PARE_META_I32, INT32_MIN, err);
    pare_meta_set_float(m, "v.f32", PARE_META_F32, 0x1p-149, err); /* the smallest subnormal */
    pare_meta_set_bool(m, "v.bool", true, err);
    pare_meta_set_str(m, "v.str", "a\0b\xff", 4, err);
    pare_meta_set_str(m, "v.empty", "", 0, err);
    pare_meta_set_uint(m, "v.u64", PARE_META_U64, UINT64_MAX, err);
    pare_meta_set_int(m, "v.i64", PARE_META_I64, INT64_MIN, err);
    pare_meta_set_float(m, "v.f64", PARE_META_F64, -0.0, err);
    pare_meta_set_float(m, "v.nan", PARE_META_F32, (double)NAN, err);
    uint8_t bytes[16];
    for (int i = 0; i < 16; i++) bytes[i] = (uint8_t)(i * 37);
    for (int t = 0; t < PARE_META_COUNT; t++) {
        if (t == PARE_META_STRING || t == PARE_META_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%s", pare_meta_type_name((pare_meta_type)t));
        size_t es = pare_meta_type_size((pare_meta_type)t);
        uint8_t data[16];
        memcpy(data, bytes, 16);
        if (t == PARE_META_BOOL) for (int i = 0; i < 16; i++) data[i] = (uint8_t)(i & 1);
        pare_meta_set_arr(m, key, (pare_meta_type)t, data, 16 / es, err);
    }
    pare_str s[3] = {{"one", 3}, {"", 0}, {"t\0ree", 5}};
    pare_meta_set_arr(m, "arr.str", PARE_META_STRING, s, 3, err);
    pare_meta_set_arr(m, "arr.empty_u8", PARE_META_U8, NULL, 0, err);
    pare_meta_set_arr(m, "arr.empty_str", PARE_META_STRING, NULL, 0, err);
}

typedef struct {
    const char *name;
    pare_type type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec SPECS[] = {
    {"f32.odd", PARE_TYPE_F32, 1, {3}},          /* 12 bytes: padding follows */
    {"q8_0", PARE_TYPE_Q8_0, 2, {64, 3}},
    {"q4_K", PARE_TYPE_Q4_K, 1, {256}},
    {"f16.4d", PARE_TYPE_F16, 4, {5, 1, 1, 2}},
    {"i32.trailing1", PARE_TYPE_I32, 3, {7, 2, 1}}, /* n_dims kept as written */
    {"empty", PARE_TYPE_F32, 2, {0, 4}},
    {"iq2_xxs", PARE_TYPE_IQ2_XXS, 2, {256, 2}},
    {"bf16", PARE_TYPE_BF16, 2, {33, 1}},
};
#define N_SPECS (sizeof SPECS / sizeof SPECS[0])

/* Writes meta + SPECS with pattern bytes through the streaming writer. */
static pare_status write_synthetic(const char *path, const pare_meta *meta, pare_err *err) {
    pare_tensor t[N_SPECS];
    pare_status st = PARE_OK;
    for (size_t i = 0; i < N_SPECS; i++)
        if (!st) st = pare_tensor_init(&t[i], SPECS[i].name, SPECS[i].type, SPECS[i].n_dims, SPECS[i].ne, err);
    pare_gguf_writer *w = NULL;
    if (!st) st = pare_gguf_writer_open(path, meta, t, N_SPECS, false, NULL, 0, &w, err);
    for (size_t i = 0; i < N_SPECS && !st; i++) {
        uint8_t *d = malloc(t[i].n_bytes + 1);
        for (uint64_t j = 0; j < t[i].n_bytes; j++) d[j] = (uint8_t)(j * 7 + i);
        st = pare_gguf_writer_add(w, d, t[i].n_bytes, err);
        free(d);
    }
    if (!st) st = pare_gguf_writer_finish(w, err);
    pare_gguf_writer_free(w);
    for (size_t i = 0; i < N_SPECS; i++) pare_tensor_clear(&t[i]);
    return st;
}

static void check_synthetic(const char *path, uint32_t alignment) {
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    if (!m) return;
    pare_meta want = {0};
    build_meta(&want, alignment, &err);
    char why[256] = "";
    CHECK_MSG(meta_equal(&want, &m->meta, why, sizeof why), "%s", why);
    pare_meta_free(&want);
    CHECK(m->alignment == alignment && m->version == 3 && m->n_tensors == N_SPECS);
    const pare_map *map = m->maps[0];
    uint64_t data_start = m->n_tensors ? m->tensors[0].file_offset : 0, end = data_start;
    for (size_t i = 0; i < m->n_tensors && i < N_SPECS; i++) {
        const pare_tensor *t = &m->tensors[i];
        CHECK_MSG(!strcmp(t->name, SPECS[i].name) && t->type == SPECS[i].type && t->n_dims == SPECS[i].n_dims,
                  "tensor %zu", i);
        CHECK(t->file_offset == end && t->file_offset % alignment == 0);
        const uint8_t *d = t->data;
        int bad = 0;
        for (uint64_t j = 0; j < t->n_bytes; j++) bad += d[j] != (uint8_t)(j * 7 + i);
        CHECK_MSG(bad == 0, "tensor %zu: %d bytes differ", i, bad);
        end = t->file_offset + t->n_bytes;
        uint64_t padded = (end + alignment - 1) / alignment * alignment;
        for (uint64_t j = end; j < padded; j++) bad += map->data[j] != 0;
        CHECK_MSG(bad == 0, "tensor %zu: padding is not zeros", i);
        end = padded;
    }
    CHECK_MSG(map->size == end, "file is %llu bytes, expected %llu", (unsigned long long)map->size,
              (unsigned long long)end);
    for (uint64_t j = 0; j < 4; j++) CHECK(map->data[j] == (uint8_t)"GGUF"[j]);
    pare_model_free(m);
}

static void test_writer_roundtrip(void) {
    const uint32_t aligns[2] = {32, 64};
    for (int a = 0; a < 2; a++) {
        pare_meta meta = {0};
        pare_err err = {0};
        build_meta(&meta, aligns[a], &err);
        const char *p1 = th_tmp_path("synthetic.gguf"), *p2 = th_tmp_path("synthetic-2.gguf");
        CHECK_OK(write_synthetic(p1, &meta, &err), &err);
        check_synthetic(p1, aligns[a]);
        /* Load and save again: the same bytes. */
        pare_model *m = NULL;
        CHECK_OK(pare_gguf_load(p1, &m, &err), &err);
        if (m) CHECK_OK(pare_gguf_save(m, p2, false, &err), &err);
        CHECK_MSG(same_file_bytes(p1, p2), "alignment %u: second write differs", aligns[a]);
        /* The model's own file is never the output, even with force. */
        if (m) CHECK(pare_gguf_save(m, p1, true, &err) == PARE_EUSAGE && strstr(err.msg, "input"));
        pare_model_free(m);
        pare_meta_free(&meta);
        unlink(p1);
        unlink(p2);
    }
    /* A version 2 file is rewritten as version 3 with the same bytes otherwise. */
    th_buf b = {0};
    tiny_opts o = tiny_default();
    o.version = 2;
    tiny(&b, o);
    const char *v2 = th_tmp_path("v2.gguf"), *v3 = th_tmp_path("v3.gguf");
    CHECK(th_write_file(v2, b.p, b.n) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(v2, &m, &err), &err);
    if (m) CHECK_OK(pare_gguf_save(m, v3, false, &err), &err);
    pare_model_free(m);
    pare_map *mv3;
    if (read_whole(v3, &mv3)) {
        b.p[4] = 3;
        CHECK(mv3->size == b.n && !memcmp(mv3->data, b.p, b.n));
        pare_map_free(mv3);
    }
    unlink(v2);
    unlink(v3);
    free(b.p);
}

static void test_writer_errors(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/werr", th.tmpdir);
    mkdir(dir, 0755);
    char *out = pare_path_join(dir, "out.gguf");
    pare_err err = {0};
    pare_gguf_writer *w = NULL;
    pare_tensor t[2];
    int64_t ne[2] = {32, 2};
    pare_tensor_init(&t[0], "a", PARE_TYPE_F32, 2, ne, &err);
    pare_tensor_init(&t[1], "b", PARE_TYPE_Q8_0, 2, ne, &err);
    /* Sizes come from the shapes, not from n_bytes. */
    t[1].n_bytes = 5;
    CHECK_OK(pare_gguf_writer_open(out, NULL, t, 2, false, NULL, 0, &w, &err), &err);
    static float zeros[64];
    CHECK_OK(pare_gguf_writer_add(w, zeros, 256, &err), &err);
    CHECK(pare_gguf_writer_finish(w, &err) == PARE_EUSAGE && strstr(err.msg, "1 of 2"));
    CHECK(pare_gguf_writer_add(w, zeros, 5, &err) == PARE_EUSAGE && strstr(err.msg, "'b'") && strstr(err.msg, "68"));
    CHECK(pare_gguf_writer_add(w, zeros, 68, &err) == PARE_EUSAGE); /* refused after an error */
    CHECK(pare_gguf_writer_finish(w, &err) == PARE_EUSAGE);
    pare_gguf_writer_free(w);
    CHECK_MSG(count_files(dir) == 0, "%d files left behind", count_files(dir));
    /* Open-time refusals create nothing. */
    pare_tensor bad = t[0];
    bad.name = "a-name-of-more-than-sixty-three-bytes-which-ggml-cannot-hold-at-all";
    CHECK(pare_gguf_writer_open(out, NULL, &bad, 1, false, NULL, 0, &w, &err) == PARE_EUNSUPPORTED && !w);
    bad = t[0];
    bad.type = PARE_TYPE_U8;
    CHECK(pare_gguf_writer_open(out, NULL, &bad, 1, false, NULL, 0, &w, &err) == PARE_EUNSUPPORTED);
    bad.type = PARE_TYPE_Q4_K; /* 32 is not a multiple of 256 */
    CHECK(pare_gguf_writer_open(out, NULL, &bad, 1, false, NULL, 0, &w, &err) == PARE_EUSAGE &&
          strstr(err.msg, "block size"));
    pare_tensor dup[2] = {t[0], t[0]};
    CHECK(pare_gguf_writer_open(out, NULL, dup, 2, false, NULL, 0, &w, &err) == PARE_EUSAGE &&
          strstr(err.msg, "duplicate"));
    pare_meta meta = {0};
    pare_meta_set_uint(&meta, "general.alignment", PARE_META_U32, 24, &err);
    CHECK(pare_gguf_writer_open(out, &meta, t, 1, false, NULL, 0, &w, &err) == PARE_EUSAGE);
    pare_meta_set_int(&meta, "general.alignment", PARE_META_I32, 64, &err);
    CHECK(pare_gguf_writer_open(out, &meta, t, 1, false, NULL, 0, &w, &err) == PARE_EUSAGE);
    pare_meta_free(&meta);
    CHECK(count_files(dir) == 0);
    /* An existing file needs force. */
    CHECK_OK(pare_gguf_writer_open(out, NULL, NULL, 0, false, NULL, 0, &w, &err), &err);
    CHECK_OK(pare_gguf_writer_finish(w, &err), &err);
    pare_gguf_writer_free(w);
    CHECK(pare_gguf_writer_open(out, NULL, NULL, 0, false, NULL, 0, &w, &err) == PARE_EUSAGE);
    pare_model *m = NULL;
    CHECK_OK(pare_gguf_load(out, &m, &err), &err); /* an empty model is a valid file */
    CHECK(m && m->n_tensors == 0 && m->meta.n == 0);
    pare_model_free(m);
    unlink(out);
    free(out);
    pare_tensor_clear(&t[0]);
    pare_tensor_clear(&t[1]);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ ../shared */

static const char *SHARED_DIRS[] = {"golden", "models/fortune-llama-gguf", "models/fortune-llama-lora", "data/vocab"};

/* Calls fn on every .gguf under the shared folders; returns the count (-1 if absent). */
static int each_shared_gguf(void (*fn)(const char *path, void *ctx), void *ctx) {
    int n = 0;
    for (size_t d = 0; d < sizeof SHARED_DIRS / sizeof SHARED_DIRS[0]; d++) {
        char *dir = th_shared_dup(SHARED_DIRS[d]);
        if (!dir) return -1;
        DIR *dd = opendir(dir);
        struct dirent *e;
        while (dd && (e = readdir(dd))) {
            if (!pare_str_ends_with(e->d_name, ".gguf")) continue;
            char *path = pare_path_join(dir, e->d_name);
            fn(path, ctx);
            free(path);
            n++;
        }
        if (dd) closedir(dd);
        free(dir);
    }
    return n;
}

typedef struct {
    int files, identical;
    uint64_t bytes;
} rt_stats;

static void roundtrip_one(const char *path, void *ctx) {
    rt_stats *s = ctx;
    const char *copy = th_tmp_path("copy.gguf");
    pare_model *a = NULL, *b = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(path, &a, &err), &err);
    if (a) CHECK_OK(pare_gguf_save(a, copy, true, &err), &err);
    if (a) CHECK_OK(pare_gguf_load(copy, &b, &err), &err);
    if (a && b) {
        char why[256] = "";
        CHECK_MSG(meta_equal(&a->meta, &b->meta, why, sizeof why), "%s: %s", path, why);
        CHECK_MSG(tensors_equal(a, b, why, sizeof why), "%s: %s", path, why);
        CHECK(a->alignment == b->alignment && (a->arch == NULL) == (b->arch == NULL));
        bool same = same_file_bytes(path, copy);
        CHECK_MSG(same, "%s: the rewrite is not byte-identical", path);
        s->identical += same;
        s->bytes += a->maps[0]->size;
    }
    s->files++;
    pare_model_free(a);
    pare_model_free(b);
    unlink(copy);
}

/* Every GGUF in ../shared loads; a rewrite keeps every key, type, value and tensor byte. */
static void test_shared_roundtrip(void) {
    rt_stats s = {0};
    if (each_shared_gguf(roundtrip_one, &s) < 0) return;
    printf("  %d GGUF files (%.1f MB) from ../shared loaded and rewritten; %d byte-identical to the original\n",
           s.files, (double)s.bytes / 1e6, s.identical);
    CHECK(s.files >= 48);
}

static const pare_tensor *find(const pare_model *m, const char *name) {
    const pare_tensor *t = m ? pare_model_find(m, name) : NULL;
    CHECK_MSG(t != NULL, "no tensor '%s'", name);
    return t;
}

/* The bytes the reader points at are the right ones: the f32 GGUF matches the safetensors
 * it was converted from, and the f16 GGUF is that f32 rounded to half. */
static void test_shared_values(void) {
    char *f32p = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    char *f16p = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f16.gguf");
    char *stp = th_shared_dup("models/fortune-llama/model.safetensors");
    if (!f32p || !f16p || !stp) goto out;
    pare_model *f32 = NULL, *f16 = NULL, *st = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(f32p, &f32, &err), &err);
    CHECK_OK(pare_gguf_load(f16p, &f16, &err), &err);
    CHECK_OK(pare_safetensors_load(stp, &st, &err), &err);
    if (f32 && f16 && st) {
        uint64_t u = 0;
        CHECK(f32->n_tensors == 38 && f32->meta.n == 25 && !strcmp(f32->arch, "llama"));
        CHECK(pare_meta_get_u64(&f32->meta, "llama.block_count", &u) && u == 4);
        const pare_kv *tok = pare_meta_get(&f32->meta, "tokenizer.ggml.tokens");
        CHECK(tok && tok->elem_type == PARE_META_STRING && tok->n == 512);
        const char *pairs[][2] = {{"token_embd.weight", "model.embed_tokens.weight"},
                                  {"blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"},
                                  {"output_norm.weight", "model.norm.weight"}};
        for (int i = 0; i < 3; i++) {
            const pare_tensor *g = find(f32, pairs[i][0]), *h = find(st, pairs[i][1]);
            CHECK_MSG(g && h && g->n_bytes == h->n_bytes && !memcmp(g->data, h->data, (size_t)g->n_bytes),
                      "%s differs from %s", pairs[i][0], pairs[i][1]);
        }
        /* Every 2-D f32 weight rounds to its f16 copy bit for bit. */
        size_t checked = 0, mismatched = 0;
        for (size_t i = 0; i < f32->n_tensors; i++) {
            const pare_tensor *a = &f32->tensors[i], *h = pare_model_find(f16, a->name);
            if (!h || h->type != PARE_TYPE_F16) continue;
            const float *x = a->data;
            const uint16_t *y = h->data;
            for (int64_t j = 0; j < pare_tensor_nelements(a); j++) mismatched += pare_fp32_to_fp16(x[j]) != y[j];
            checked++;
        }
        printf("  %zu f16 tensors checked against the f32 file: %zu values differ\n", checked, mismatched);
        CHECK(checked >= 28 && mismatched == 0);
    }
    pare_model_free(f32);
    pare_model_free(f16);
    pare_model_free(st);
out:
    free(f32p);
    free(f16p);
    free(stp);
}

/* ------------------------------------------------------------------------ splits */

static void test_split(void) {
    char *src = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    if (!src) return;
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(src, &m, &err), &err);
    free(src);
    if (!m) return;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/split", th.tmpdir);
    mkdir(dir, 0755);
    char *prefix = pare_path_join(dir, "fl");
    /* Expected parts, counted independently: llama-gguf-split's rule with 2 MB parts. */
    const uint64_t max = 2000000;
    int want = 1;
    uint64_t cur = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        uint64_t nb = (m->tensors[i].n_bytes + 31) / 32 * 32;
        if (i > 0 && cur + nb > max) { want++; cur = 0; }
        cur += nb;
    }
    int parts = 0;
    CHECK_OK(pare_gguf_save_split(m, prefix, max, false, &parts, &err), &err);
    CHECK_MSG(parts == want && parts > 2, "%d parts, expected %d", parts, want);
    char *p1 = pare_gguf_split_path(prefix, 0, parts), *p2 = pare_gguf_split_path(prefix, 1, parts);
    char *pl = pare_gguf_split_path(prefix, parts - 1, parts);
    /* Part 1: the meta, then split.no, split.tensors.count, split.count; others only those. */
    pare_model *a = NULL, *s = NULL;
    uint64_t u = 0;
    CHECK_OK(pare_gguf_load(p1, &s, &err), &err); /* loads every part */
    if (s) {
        char why[256] = "";
        CHECK_MSG(meta_equal(&m->meta, &s->meta, why, sizeof why), "merged split: %s", why);
        CHECK_MSG(tensors_equal(m, s, why, sizeof why), "merged split: %s", why);
        CHECK((int)s->n_maps == parts);
    }
    pare_model_free(s);
    /* Look at single parts through a renamed copy (the name no longer says it is a part). */
    char *lone = pare_path_join(dir, "lone.gguf");
    CHECK(link(p2, lone) == 0);
    CHECK(pare_gguf_load(lone, &a, &err) == PARE_EINPUT && strstr(err.msg, "not named"));
    unlink(lone);
    /* Loading from the middle part gives the same model. */
    CHECK_OK(pare_gguf_load(pl, &s, &err), &err);
    CHECK(s && s->n_tensors == m->n_tensors && !pare_meta_get(&s->meta, "split.count"));
    pare_model_free(s);
    /* A part in the wrong place: split.no says otherwise. */
    char *p3 = pare_gguf_split_path(prefix, 2, parts);
    char *keep = pare_path_join(dir, "keep.gguf");
    CHECK(rename(p2, keep) == 0 && link(p3, p2) == 0);
    CHECK(pare_gguf_load(p1, &s, &err) == PARE_EINPUT && strstr(err.msg, "split.no is 2") && strstr(err.msg, p2));
    unlink(p2);
    /* A missing part. */
    CHECK(pare_gguf_load(p1, &s, &err) != PARE_OK && strstr(err.msg, p2));
    CHECK(rename(keep, p2) == 0);
    CHECK_OK(pare_gguf_load(p3, &s, &err), &err);
    pare_model_free(s);
    /* Existing parts are not replaced without force. */
    CHECK(pare_gguf_save_split(m, prefix, max, false, &parts, &err) == PARE_EUSAGE);
    CHECK_OK(pare_gguf_save_split(m, prefix, max, true, &parts, &err), &err);
    /* One part only: split.count 1 keeps its keys, as a plain file. */
    char *one = pare_path_join(dir, "one.gguf");
    CHECK_OK(pare_gguf_save_split(m, one, UINT64_MAX, false, &parts, &err), &err);
    CHECK(parts == 1);
    char *one1 = pare_path_join(dir, "one-00001-of-00001.gguf");
    CHECK_OK(pare_gguf_load(one1, &s, &err), &err);
    CHECK(s && s->meta.n == m->meta.n + 3 && pare_meta_get_u64(&s->meta, "split.count", &u) && u == 1);
    if (s) CHECK(!strcmp(s->meta.kv[s->meta.n - 3].key, "split.no") &&
                 !strcmp(s->meta.kv[s->meta.n - 2].key, "split.tensors.count") &&
                 !strcmp(s->meta.kv[s->meta.n - 1].key, "split.count"));
    pare_model_free(s);
    /* split.count 0, as llama-gguf-split --merge leaves it: a plain file. */
    pare_model *z = NULL;
    CHECK_OK(pare_gguf_load(one1, &z, &err), &err);
    if (z) {
        pare_meta_set_uint(&z->meta, "split.count", PARE_META_U16, 0, &err);
        char *zp = pare_path_join(dir, "merged-00001-of-00003.gguf");
        CHECK_OK(pare_gguf_save(z, zp, false, &err), &err);
        pare_model_free(z);
        z = NULL;
        CHECK_OK(pare_gguf_load(zp, &z, &err), &err);
        CHECK(z && z->n_tensors == m->n_tensors && pare_meta_get_u64(&z->meta, "split.count", &u) && u == 0);
        free(zp);
    }
    pare_model_free(z);
    free(one);
    free(one1);
    free(p1);
    free(p2);
    free(p3);
    free(pl);
    free(keep);
    free(lone);
    free(prefix);
    pare_model_free(m);
    th_rm_rf(dir);
}

/* Hand-made parts: wrong split.tensors.count, a tensor in two parts. */
static void test_split_bad(void) {
    pare_err err = {0};
    char dir[300];
    snprintf(dir, sizeof dir, "%s/splitbad", th.tmpdir);
    mkdir(dir, 0755);
    int64_t ne[1] = {8};
    pare_tensor t[2];
    pare_tensor_init(&t[0], "x", PARE_TYPE_F32, 1, ne, &err);
    pare_tensor_init(&t[1], "y", PARE_TYPE_F32, 1, ne, &err);
    static const float v[8];
    const char *names[2][2] = {{"x", "y"}, {"x", "x"}};
    const int64_t counts[2] = {3, 2};
    const char *expect[2] = {"split.tensors.count says 3", "in two parts"};
    for (int c = 0; c < 2; c++) {
        for (int k = 0; k < 2; k++) {
            pare_meta meta = {0};
            pare_meta_set_uint(&meta, "split.no", PARE_META_U16, (uint64_t)k, &err);
            pare_meta_set_uint(&meta, "split.count", PARE_META_U16, 2, &err);
            pare_meta_set_int(&meta, "split.tensors.count", PARE_META_I32, counts[c], &err);
            char path[400];
            snprintf(path, sizeof path, "%s/m-%05d-of-00002.gguf", dir, k + 1);
            pare_tensor one = t[0];
            one.name = (char *)names[c][k];
            pare_gguf_writer *w = NULL;
            CHECK_OK(pare_gguf_writer_open(path, &meta, &one, 1, true, NULL, 0, &w, &err), &err);
            if (w) CHECK_OK(pare_gguf_writer_add(w, v, 32, &err), &err);
            if (w) CHECK_OK(pare_gguf_writer_finish(w, &err), &err);
            pare_gguf_writer_free(w);
            pare_meta_free(&meta);
        }
        pare_model *m = NULL;
        char path[400];
        snprintf(path, sizeof path, "%s/m-00002-of-00002.gguf", dir);
        CHECK_MSG(pare_gguf_load(path, &m, &err) == PARE_EINPUT && strstr(err.msg, expect[c]), "case %d: '%s'", c,
                  err.msg);
        pare_model_free(m);
    }
    pare_tensor_clear(&t[0]);
    pare_tensor_clear(&t[1]);
    th_rm_rf(dir);
}

/* ------------------------------------------------------------------------ memory */

static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n)) v = strtol(line + n, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* Saving a 96 MB model from its mapping does not hold it in memory. */
static void test_save_rss(void) {
    enum { N = 24, ROWS = 1024, COLS = 1024 }; /* 24 tensors of 4 MB */
    const char *in = th_tmp_path("big.gguf"), *out = th_tmp_path("big-copy.gguf");
    pare_err err = {0};
    pare_tensor t[N];
    int64_t ne[2] = {COLS, ROWS};
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "w.%d", i);
        pare_tensor_init(&t[i], name, PARE_TYPE_F32, 2, ne, &err);
    }
    float *row = malloc(sizeof(float) * COLS * ROWS);
    pare_gguf_writer *w = NULL;
    CHECK_OK(pare_gguf_writer_open(in, NULL, t, N, false, NULL, 0, &w, &err), &err);
    for (int i = 0; w && i < N; i++) {
        for (int j = 0; j < COLS * ROWS; j++) row[j] = (float)(i + j);
        CHECK_OK(pare_gguf_writer_add(w, row, sizeof(float) * COLS * ROWS, &err), &err);
    }
    if (w) CHECK_OK(pare_gguf_writer_finish(w, &err), &err);
    pare_gguf_writer_free(w);
    free(row);
    for (int i = 0; i < N; i++) pare_tensor_clear(&t[i]);
    pare_model *m = NULL;
    CHECK_OK(pare_gguf_load(in, &m, &err), &err);
    FILE *cr = fopen("/proc/self/clear_refs", "w"); /* "5" resets the peak RSS */
    bool reset = cr && fputs("5", cr) >= 0;
    if (cr) reset = (fclose(cr) == 0) && reset;
    long before = status_kb("VmRSS:");
    double t0 = pare_now();
    if (m) CHECK_OK(pare_gguf_save(m, out, false, &err), &err);
    double secs = pare_now() - t0;
    long peak = status_kb("VmHWM:");
    if (!reset || before < 0 || peak < 0) {
        th.cur_skipped++;
        fprintf(stderr, "  cannot reset or read the peak RSS: skipped\n");
    } else {
        long grew = (peak - before) * 1024;
        printf("  saved %d MB in %.2f s; peak RSS grew by %.1f MB (limit %u MB)\n", N * 4, secs, (double)grew / 1e6,
               SAVE_RSS_GROWTH_MAX >> 20);
        CHECK(grew < (long)SAVE_RSS_GROWTH_MAX);
    }
    CHECK(same_file_bytes(in, out));
    pare_model_free(m);
    unlink(in);
    unlink(out);
}

/* ------------------------------------------------------------------------ main */

static int write_corpus(const char *dir) {
    corrupt_case cases[MAX_CASES];
    size_t n = corrupt_cases(cases);
    th_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        tiny(&b, cases[i].o);
        char path[1024];
        snprintf(path, sizeof path, "%s/gguf-%s", dir, cases[i].name);
        if (th_write_file(path, b.p, b.n)) {
            perror(path);
            free(b.p);
            return 1;
        }
    }
    free(b.p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) return write_corpus(argv[2]);
    if (!th_tmpdir("pare-gguf-test")) return 1;
    TH_RUN(test_tiny_valid);
    TH_RUN(test_corrupt);
    TH_RUN(test_truncations);
    TH_RUN(test_mutations);
    TH_RUN(test_hostile_counts);
    TH_RUN(test_writer_roundtrip);
    TH_RUN(test_writer_errors);
    TH_RUN(test_shared_values);
    TH_RUN(test_shared_roundtrip);
    TH_RUN(test_split);
    TH_RUN(test_split_bad);
    TH_RUN(test_save_rss);
    th_rm_rf(th.tmpdir);
    return th_done();
}
