/* tests/test_gguf.c - GGUF reader and writer: every GGUF in ../shared, round trips, split
 * files, and a corpus of malformed files (also written out with --write-corpus DIR). */
#include "formats/gguf.h"
#include "th.h"

#include <dirent.h>
#include <unistd.h>

/* ---- a tiny valid GGUF built by hand, to corrupt ---- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) { memcpy(b->b + b->n, p, n); b->n += n; }
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }

/* Options that corrupt the tiny file in one way each. */
typedef struct {
    uint32_t version;
    uint64_t n_tensors_delta, n_kv_override;
    const char *key2;        /* second key (duplicate when "a.b") */
    uint32_t value_type;     /* of the u32 key */
    uint64_t str_len;        /* declared length of the string value */
    const char *t2_name;     /* second tensor's name */
    uint32_t n_dims, type2;
    uint64_t dim0, dim1, off2;
    uint32_t alignment_type, alignment;
    bool nested;
    size_t truncate;
    bool bad_magic;
} tiny_opts;

static tiny_opts tiny_default(void) {
    return (tiny_opts){.version = 3, .key2 = "a.c", .value_type = 4, .str_len = 5, .t2_name = "t2", .n_dims = 2,
                       .type2 = 0, .dim0 = 8, .dim1 = 2, .off2 = 32, .alignment_type = 4, .alignment = 32};
}

static void tiny(buf *b, tiny_opts o) {
    b->n = 0;
    put(b, o.bad_magic ? "GGUX" : "GGUF", 4);
    u32(b, o.version);
    u64(b, 2 + o.n_tensors_delta);
    u64(b, o.n_kv_override ? o.n_kv_override : 4);
    str(b, "a.b"); u32(b, o.value_type); u32(b, 7);
    str(b, o.key2); u32(b, 8); u64(b, o.str_len); put(b, "hello", 5);
    str(b, "general.alignment"); u32(b, o.alignment_type); u32(b, o.alignment);
    str(b, "a.arr"); u32(b, 9);
    if (o.nested) { u32(b, 9); u64(b, 1); u32(b, 4); u64(b, 1); u32(b, 1); }
    else { u32(b, 4); u64(b, 3); u32(b, 1); u32(b, 2); u32(b, 3); }
    /* t1: f32 [8], t2: f32 [8, 2] */
    str(b, "t1"); u32(b, 1); u64(b, 8); u32(b, 0); u64(b, 0);
    str(b, o.t2_name); u32(b, o.n_dims); u64(b, o.dim0); if (o.n_dims > 1) u64(b, o.dim1);
    for (uint32_t d = 2; d < o.n_dims && d < 8; d++) u64(b, 1);
    u32(b, o.type2); u64(b, o.off2);
    while (b->n % 32) b->b[b->n++] = 0;
    for (int i = 0; i < 8 + 16; i++) { float f = (float)i; put(b, &f, 4); }
    while (b->n % 32) b->b[b->n++] = 0;
    if (o.truncate) b->n = o.truncate;
}

static void write_file(const char *path, const buf *b) {
    FILE *f = fopen(path, "wb");
    fwrite(b->b, 1, b->n, f);
    fclose(f);
}

typedef struct {
    const char *name;
    tiny_opts o;
} corrupt_case;

static size_t corrupt_cases(corrupt_case *c) {
    size_t n = 0;
    tiny_opts d = tiny_default();
#define CASE(nm, field_assign) do { tiny_opts o = d; field_assign; c[n++] = (corrupt_case){nm, o}; } while (0)
    CASE("bad-magic.gguf", o.bad_magic = true);
    CASE("version-1.gguf", o.version = 1);
    CASE("version-4.gguf", o.version = 4);
    CASE("truncated-header.gguf", o.truncate = 10);
    CASE("truncated-kv.gguf", o.truncate = 40);
    CASE("truncated-tensor-info.gguf", o.truncate = 150);
    CASE("truncated-data.gguf", o.truncate = 200);
    CASE("huge-tensor-count.gguf", o.n_tensors_delta = (1ull << 60));
    CASE("huge-kv-count.gguf", o.n_kv_override = (1ull << 62));
    CASE("huge-string.gguf", o.str_len = (1ull << 40));
    CASE("string-past-end.gguf", o.str_len = 1000);
    CASE("duplicate-key.gguf", o.key2 = "a.b");
    CASE("unknown-value-type.gguf", o.value_type = 99);
    CASE("duplicate-tensor.gguf", o.t2_name = "t1");
    CASE("long-name.gguf", o.t2_name = "a-tensor-name-that-is-much-longer-than-the-sixty-three-bytes-ggml-allows");
    CASE("five-dims.gguf", o.n_dims = 5);
    CASE("zero-dims.gguf", o.n_dims = 0);
    CASE("unknown-type.gguf", o.type2 = 77);
    CASE("removed-type.gguf", o.type2 = 4);
    CASE("shape-overflow.gguf", (o.dim0 = 1ull << 40, o.dim1 = 1ull << 40));
    CASE("block-misfit.gguf", (o.type2 = 2, o.dim0 = 8));
    CASE("misaligned-offset.gguf", o.off2 = 33);
    CASE("offset-gap.gguf", o.off2 = 64);
    CASE("offset-overlap.gguf", o.off2 = 0);
    CASE("data-past-end.gguf", o.dim1 = 200);
    CASE("alignment-not-pow2.gguf", o.alignment = 24);
    CASE("alignment-zero.gguf", o.alignment = 0);
    CASE("alignment-wrong-type.gguf", o.alignment_type = 5);
    CASE("nested-array.gguf", o.nested = true);
#undef CASE
    return n;
}

static void test_tiny_valid(void) {
    buf b;
    tiny(&b, tiny_default());
    char path[] = "/tmp/pare-gguf-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_file(path, &b);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(path, &m, &err), &err);
    if (m) {
        CHECK(m->n_tensors == 2 && m->meta.n == 4 && m->version == 3);
        const float *v = m->tensors[1].data;
        CHECK(v && v[0] == 8.0f && v[15] == 23.0f);
        uint64_t u = 0;
        CHECK(pare_meta_get_u64(&m->meta, "a.b", &u) && u == 7);
    }
    pare_model_free(m);
    unlink(path);
}

static void test_corrupt(void) {
    corrupt_case cases[64];
    size_t n = corrupt_cases(cases);
    char dir[] = "/tmp/pare-gguf-bad-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    size_t refused = 0;
    for (size_t i = 0; i < n; i++) {
        buf b;
        tiny(&b, cases[i].o);
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        write_file(path, &b);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_gguf_load(path, &m, &err);
        bool ok = (st == PARE_EINPUT || st == PARE_EUNSUPPORTED) && strstr(err.msg, cases[i].name);
        CHECK_MSG(ok, "%s: status %d, message '%s'", cases[i].name, st, err.msg);
        refused += ok;
        pare_model_free(m);
        unlink(path);
    }
    rmdir(dir);
    printf("  %zu of %zu malformed GGUF files refused with the file named\n", refused, n);
}

/* Every GGUF in ../shared loads, and a rewrite keeps every key, value and tensor byte. */
static void test_shared_roundtrip(void) {
    const char *dirs[] = {"golden", "models/fortune-llama-gguf", "models/fortune-llama-lora", "data/vocab"};
    char out[] = "/tmp/pare-gguf-rt-XXXXXX";
    CHECK(mkdtemp(out) != NULL);
    int files = 0, identical = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        char *dir = th_shared_dup(dirs[d]);
        if (!dir) return;
        DIR *dd = opendir(dir);
        struct dirent *e;
        while (dd && (e = readdir(dd))) {
            if (!pare_str_ends_with(e->d_name, ".gguf")) continue;
            char *path = pare_path_join(dir, e->d_name), *copy = pare_path_join(out, "copy.gguf");
            pare_model *a = NULL, *b = NULL;
            pare_err err = {0};
            CHECK_OK(pare_gguf_load(path, &a, &err), &err);
            if (a) CHECK_OK(pare_gguf_save(a, copy, true, &err), &err);
            CHECK_OK(pare_gguf_load(copy, &b, &err), &err);
            if (a && b) {
                bool same = a->meta.n == b->meta.n && a->n_tensors == b->n_tensors;
                for (size_t i = 0; same && i < a->meta.n; i++)
                    same = !strcmp(a->meta.kv[i].key, b->meta.kv[i].key) && a->meta.kv[i].type == b->meta.kv[i].type;
                for (size_t i = 0; same && i < a->n_tensors; i++)
                    same = !strcmp(a->tensors[i].name, b->tensors[i].name) && a->tensors[i].n_bytes == b->tensors[i].n_bytes &&
                           !memcmp(a->tensors[i].data, b->tensors[i].data, (size_t)a->tensors[i].n_bytes);
                CHECK_MSG(same, "%s changed in a rewrite", e->d_name);
                /* ggml's writer lays files out as pare does: the bytes should be identical. */
                pare_map *ma = NULL, *mb = NULL;
                if (!pare_map_open(path, &ma, &err) && !pare_map_open(copy, &mb, &err))
                    identical += ma->size == mb->size && !memcmp(ma->data, mb->data, (size_t)ma->size);
                pare_map_free(ma);
                pare_map_free(mb);
            }
            files++;
            pare_model_free(a);
            pare_model_free(b);
            unlink(copy);
            free(path);
            free(copy);
        }
        if (dd) closedir(dd);
        free(dir);
    }
    rmdir(out);
    printf("  %d GGUF files from ../shared read and rewritten; %d byte-identical to the original\n", files, identical);
    CHECK(files >= 40);
}

static void test_split(void) {
    char *src = th_shared_dup("models/fortune-llama-gguf/fortune-llama-f32.gguf");
    if (!src) return;
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_gguf_load(src, &m, &err), &err);
    char dir[] = "/tmp/pare-gguf-split-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    /* Write it as three parts by hand: split.* keys, tensors divided. */
    size_t cut[4] = {0, 10, 25, m->n_tensors};
    for (int k = 0; k < 3; k++) {
        pare_model part = *m;
        pare_meta meta = {0};
        if (k == 0) pare_meta_copy(&meta, &m->meta, &err);
        pare_meta_set_uint(&meta, "split.no", PARE_META_U16, (uint64_t)k, &err);
        pare_meta_set_uint(&meta, "split.count", PARE_META_U16, 3, &err);
        pare_meta_set_int(&meta, "split.tensors.count", PARE_META_I32, (int64_t)m->n_tensors, &err);
        part.meta = meta;
        part.tensors = m->tensors + cut[k];
        part.n_tensors = cut[k + 1] - cut[k];
        char path[256];
        snprintf(path, sizeof path, "%s/x-%05d-of-00003.gguf", dir, k + 1);
        CHECK_OK(pare_gguf_save(&part, path, false, &err), &err);
        pare_meta_free(&meta);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/x-00002-of-00003.gguf", dir);
    pare_model *s = NULL;
    CHECK_OK(pare_gguf_load(path, &s, &err), &err);
    if (s) {
        CHECK(s->n_tensors == m->n_tensors && s->meta.n == m->meta.n && !pare_meta_get(&s->meta, "split.count"));
        for (size_t i = 0; i < s->n_tensors; i++)
            CHECK(!memcmp(s->tensors[i].data, m->tensors[i].data, (size_t)m->tensors[i].n_bytes));
    }
    pare_model_free(s);
    snprintf(path, sizeof path, "%s/x-00003-of-00003.gguf", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/x-00001-of-00003.gguf", dir);
    CHECK(pare_gguf_load(path, &s, &err) != PARE_OK); /* a part is missing */
    unlink(path);
    snprintf(path, sizeof path, "%s/x-00002-of-00003.gguf", dir);
    unlink(path);
    rmdir(dir);
    pare_model_free(m);
    free(src);
}

static int write_corpus(const char *dir) {
    corrupt_case cases[64];
    size_t n = corrupt_cases(cases);
    for (size_t i = 0; i < n; i++) {
        buf b;
        tiny(&b, cases[i].o);
        char path[1024];
        snprintf(path, sizeof path, "%s/gguf-%s", dir, cases[i].name);
        write_file(path, &b);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) return write_corpus(argv[2]);
    TH_RUN(test_tiny_valid);
    TH_RUN(test_corrupt);
    TH_RUN(test_shared_roundtrip);
    TH_RUN(test_split);
    return th_done();
}
