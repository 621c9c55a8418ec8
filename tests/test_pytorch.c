/* tests/test_pytorch.c - PyTorch zip checkpoints: real files made by torch, and corrupt or
 * malicious ones built here with a small pickle emitter and libzip.
 *
 *   test_pytorch                    run the tests
 *   test_pytorch --write-corpus DIR write the corrupt files (pt-NAME.bin) into DIR and exit
 */
#include "formats/pytorch.h"
#include "formats/safetensors.h"
#include "th.h"

#include <errno.h>
#include <unistd.h>
#include <zip.h>

#define FIXTURES "tests/fixtures/pytorch/"
/* Values in the fixtures are exact binary fractions or small integers: compared exactly,
 * except f64 thirds, which are compared to double rounding. */
#define F64_TOL 1e-15

/* Pickle pieces, as protocol 2 writes them (into tests/th.h's buffer). */
static void b_op(th_buf *b, uint8_t op) { th_buf_put(b, &op, 1); }
static void pk_str(th_buf *b, const char *s) {
    b_op(b, 'X');
    th_buf_u32(b, (uint32_t)strlen(s));
    th_buf_put(b, s, strlen(s));
}
static void pk_int(th_buf *b, int32_t v) {
    b_op(b, 'J');
    th_buf_u32(b, (uint32_t)v);
}
static void pk_global(th_buf *b, const char *mod, const char *name) {
    b_op(b, 'c');
    th_buf_put(b, mod, strlen(mod));
    b_op(b, '\n');
    th_buf_put(b, name, strlen(name));
    b_op(b, '\n');
}
static void pk_int_tuple(th_buf *b, const int32_t *v, int n) {
    b_op(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    b_op(b, 't');
}

typedef struct {
    const char *name, *cls, *key;
    int32_t numel, offset;
    int ndim;
    int32_t size[4], stride[4];
} pk_tensor;

/* {name: tensor} as torch.save writes a one-tensor state dict. */
static void pk_state_dict(th_buf *b, const pk_tensor *t) {
    th_buf_put(b, "\x80\x02}(", 4);
    pk_str(b, t->name);
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    b_op(b, '(');
    b_op(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", t->cls);
    pk_str(b, t->key);
    pk_str(b, "cpu");
    pk_int(b, t->numel);
    b_op(b, 't');
    b_op(b, 'Q');
    pk_int(b, t->offset);
    pk_int_tuple(b, t->size, t->ndim);
    pk_int_tuple(b, t->stride, t->ndim);
    b_op(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    th_buf_put(b, ")Rt", 3);
    th_buf_put(b, "Ru.", 3);
}

/* ------------------------------------------------------------------------ zips */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
} zentry;

/* Writes a zip of STORED entries with libzip. */
static int write_zip(const char *path, const zentry *e, int n) {
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!za) return -1;
    for (int i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(za, e[i].data, e[i].len, 0);
        zip_int64_t idx = s ? zip_file_add(za, e[i].name, s, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0) {
            zip_source_free(s);
            zip_discard(za);
            return -1;
        }
        zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    return zip_close(za) == 0 ? 0 : -1;
}

/* Overwrites a u32 at `field` bytes into the central-directory (sig 0x02014b50) or local
 * (sig 0x04034b50) header of entry `name`. */
static int patch_header(uint8_t *z, size_t n, uint32_t sig, const char *name, size_t field, uint32_t v) {
    size_t nl = strlen(name), hdr = sig == 0x02014b50 ? 46 : 30;
    for (size_t i = 0; i + hdr + nl <= n; i++) {
        uint32_t s = (uint32_t)z[i] | (uint32_t)z[i + 1] << 8 | (uint32_t)z[i + 2] << 16 | (uint32_t)z[i + 3] << 24;
        if (s != sig || memcmp(z + i + hdr, name, nl) != 0) continue;
        for (int k = 0; k < 4; k++) z[i + field + (size_t)k] = (uint8_t)(v >> (8 * k));
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------------------ the corpus */

typedef enum { MUT_NONE, MUT_TRUNCATE, MUT_CD_BOTH_SIZES, MUT_CD_SIZE, MUT_LOCAL_NAME } mutation;

typedef struct {
    const char *name;
    pk_tensor t;          /* the tensor of the state dict (when raw is NULL) */
    const char *raw;      /* a hand-written pickle instead */
    size_t raw_len;
    int data_bytes;       /* bytes of ARCHIVE/data/0 */
    bool no_data;         /* leave data/0 out */
    const char *byteorder;
    mutation mut;
    pare_status want;
    const char *want_text;
} pt_case;

#define T_OK(cls, numel) {"w", cls, "0", numel, 0, 1, {numel}, {1}}
#define RAW(s) s, sizeof(s) - 1

static const pt_case pt_cases[] = {
    {"pt-os-system", {0}, RAW("\x80\x02" "cos\nsystem\nX\x07\0\0\0echo hi\x85R."), 0, true, NULL, MUT_NONE,
     PARE_EINPUT, "forbidden global 'os.system'"},
    {"pt-posix-system", {0}, RAW("\x80\x02" "cposix\nsystem\nX\x02\0\0\0id\x85R."), 0, true, NULL, MUT_NONE,
     PARE_EINPUT, "forbidden global 'posix.system'"},
    {"pt-builtins-eval", {0},
     RAW("\x80\x04\x8c\x08" "builtins\x94\x8c\x04" "eval\x94\x93X\x01\0\0\0" "1\x85R."), 0, true, NULL, MUT_NONE,
     PARE_EINPUT, "forbidden global 'builtins.eval'"},
    {"pt-inst-opcode", {0}, RAW("\x80\x02(ios\nsystem\n."), 0, true, NULL, MUT_NONE, PARE_EINPUT,
     "unsupported pickle opcode 0x69"},
    {"pt-truncated-zip", T_OK("FloatStorage", 4), NULL, 0, 16, false, NULL, MUT_TRUNCATE, PARE_EINPUT,
     "end-of-directory"},
    {"pt-entry-size-lies", T_OK("FloatStorage", 4), NULL, 0, 16, false, NULL, MUT_CD_BOTH_SIZES, PARE_EINPUT,
     "runs past"},
    {"pt-stored-size-mismatch", T_OK("FloatStorage", 4), NULL, 0, 16, false, NULL, MUT_CD_SIZE, PARE_EINPUT,
     "stored entry has size"},
    {"pt-local-header-mismatch", T_OK("FloatStorage", 4), NULL, 0, 16, false, NULL, MUT_LOCAL_NAME, PARE_EINPUT,
     "local header"},
    {"pt-missing-data-entry", T_OK("FloatStorage", 4), NULL, 0, 16, true, NULL, MUT_NONE, PARE_EINPUT,
     "has no archive entry"},
    {"pt-storage-numel-lies", T_OK("FloatStorage", 100), NULL, 0, 16, false, NULL, MUT_NONE, PARE_EINPUT,
     "declares 100"},
    {"pt-storage-too-small", {"w", "FloatStorage", "0", 4, 0, 1, {8}, {1}}, NULL, 0, 16, false, NULL, MUT_NONE,
     PARE_EINPUT, "reaches element 7"},
    {"pt-offset-past-storage", {"w", "FloatStorage", "0", 4, 3, 2, {2, 2}, {2, 1}}, NULL, 0, 16, false, NULL,
     MUT_NONE, PARE_EINPUT, "reaches element 6"},
    {"pt-stride-past-storage", {"w", "HalfStorage", "0", 8, 0, 2, {2, 4}, {8, 1}}, NULL, 0, 16, false, NULL,
     MUT_NONE, PARE_EINPUT, "reaches element 11"},
    {"pt-negative-size", {"w", "FloatStorage", "0", 4, 0, 1, {-1}, {1}}, NULL, 0, 16, false, NULL, MUT_NONE,
     PARE_EINPUT, "non-negative"},
    {"pt-unknown-storage", T_OK("ComplexFloatStorage", 2), NULL, 0, 16, false, NULL, MUT_NONE, PARE_EINPUT,
     "forbidden global 'torch.ComplexFloatStorage'"},
    {"pt-big-endian", T_OK("FloatStorage", 4), NULL, 0, 16, false, "big", MUT_NONE, PARE_EUNSUPPORTED,
     "big-endian"},
    {"pt-storage-key-path", {"w", "FloatStorage", "../0", 4, 0, 1, {4}, {1}}, NULL, 0, 16, false, NULL, MUT_NONE,
     PARE_EINPUT, "plain name"},
    {"pt-no-stop", {0}, RAW("\x80\x02}q\x00"), 0, true, NULL, MUT_NONE, PARE_EINPUT, "without STOP"},
    {"pt-stack-underflow", {0}, RAW("\x80\x02R."), 0, true, NULL, MUT_NONE, PARE_EINPUT, "underflow"},
    {"pt-mark-underflow", {0}, RAW("\x80\x02}(R."), 0, true, NULL, MUT_NONE, PARE_EINPUT, "underflow"},
    {"pt-memo-huge-key", {0}, RAW("\x80\x02}r\xff\xff\xff\xff."), 0, true, NULL, MUT_NONE, PARE_EINPUT,
     "memo key 4294967295"},
    {"pt-memo-missing", {0}, RAW("\x80\x02h\x05."), 0, true, NULL, MUT_NONE, PARE_EINPUT, "never stored"},
    {"pt-string-past-end", {0}, RAW("\x80\x02X\xff\xff\xff\x7f" "abc"), 0, true, NULL, MUT_NONE, PARE_EINPUT,
     "more bytes"},
    {"pt-not-a-dict", {0}, RAW("\x80\x02]."), 0, true, NULL, MUT_NONE, PARE_EINPUT, "not a dict"},
    {"pt-reduce-storage-class", {0}, RAW("\x80\x02" "ctorch\nFloatStorage\n)R."), 0, true, NULL, MUT_NONE,
     PARE_EINPUT, "not a function"},
    {"pt-setitem-on-list", {0}, RAW("\x80\x02]X\x01\0\0\0aKis."), 0, true, NULL, MUT_NONE, PARE_EINPUT,
     "not a dict"},
    {"pt-unclosed-mark", {0}, RAW("\x80\x02}(."), 0, true, NULL, MUT_NONE, PARE_EINPUT, "MARK"},
};

/* Builds one case into a file; returns 0 on success. */
static int write_case(const pt_case *c, const char *path) {
    th_buf pkl = {0};
    if (c->raw) th_buf_put(&pkl, c->raw, c->raw_len);
    else pk_state_dict(&pkl, &c->t);
    uint8_t data[64];
    for (int i = 0; i < (int)sizeof data; i++) data[i] = (uint8_t)(i * 13);
    zentry e[4] = {{"archive/data.pkl", pkl.p, pkl.n}, {"archive/version", "3\n", 2}};
    int n = 2;
    if (!c->no_data) e[n++] = (zentry){"archive/data/0", data, (size_t)c->data_bytes};
    if (c->byteorder) e[n++] = (zentry){"archive/byteorder", c->byteorder, strlen(c->byteorder)};
    int rc = write_zip(path, e, n);
    free(pkl.p);
    if (rc || c->mut == MUT_NONE) return rc;
    size_t len = 0;
    uint8_t *z = th_read_file(path, &len);
    if (!z) return -1;
    switch (c->mut) {
    case MUT_TRUNCATE: len /= 2; break;
    case MUT_CD_BOTH_SIZES: /* both headers agree on a size far past the file */
        rc |= patch_header(z, len, 0x02014b50, "archive/data/0", 20, 1000000);
        rc |= patch_header(z, len, 0x02014b50, "archive/data/0", 24, 1000000);
        rc |= patch_header(z, len, 0x04034b50, "archive/data/0", 18, 1000000);
        rc |= patch_header(z, len, 0x04034b50, "archive/data/0", 22, 1000000);
        break;
    case MUT_CD_SIZE: /* a stored entry whose size and compressed size differ */
        rc |= patch_header(z, len, 0x02014b50, "archive/data/0", 24, 12);
        rc |= patch_header(z, len, 0x04034b50, "archive/data/0", 22, 12);
        break;
    case MUT_LOCAL_NAME: rc |= patch_header(z, len, 0x04034b50, "archive/data/0", 30, 0x41414141); break;
    default: break;
    }
    rc |= th_write_file(path, z, len);
    free(z);
    return rc;
}

static void test_corrupt_files(void) {
    size_t n = sizeof pt_cases / sizeof pt_cases[0];
    int n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        const pt_case *c = &pt_cases[i];
        char name[128];
        snprintf(name, sizeof name, "%s.bin", c->name);
        const char *path = th_tmp_path(name);
        CHECK_MSG(write_case(c, path) == 0, "%s: cannot build", c->name);
        pare_model *m = NULL;
        pare_err err = {0};
        pare_status st = pare_pytorch_load(path, &m, &err);
        bool ok = st == c->want && !m && strstr(err.msg, path) && strstr(err.msg, c->want_text);
        CHECK_MSG(ok, "%s: status %d (want %d), message: %s", c->name, st, c->want, err.msg);
        n_ok += ok;
        pare_model_free(m);
    }
    printf("  %d of %zu corrupt or forbidden PyTorch files refused as expected\n", n_ok, n);
}

/* The valid counterpart of the corpus: the same builder gives a loadable file. */
static void test_builder_valid(void) {
    static const pt_case good = {"pt-good", {"w", "FloatStorage", "0", 4, 1, 2, {1, 3}, {3, 1}}, NULL, 0, 16,
                                 false, "little", MUT_NONE, PARE_OK, ""};
    const char *path = th_tmp_path("pt-good.bin");
    CHECK(write_case(&good, path) == 0);
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(path, &m, &err), &err);
    if (!m) return;
    const pare_tensor *t = pare_model_find(m, "w");
    CHECK(t && t->type == PARE_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 1 && t->data);
    /* Storage offset 1: bytes 4..15 of data/0 (byte i holds i * 13). */
    const uint8_t *p = t ? t->data : NULL;
    CHECK(p && p[0] == 52 && p[11] == (uint8_t)(15 * 13));
    pare_model_free(m);
}

static void test_legacy_and_junk(void) {
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK(pare_pytorch_load(FIXTURES "legacy.pt", &m, &err) == PARE_EUNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "legacy (non-zip) PyTorch format; re-save with torch>=1.6") && strstr(err.msg, "legacy.pt"),
              "%s", err.msg);
    const char *junk = th_tmp_path("pt-not-zip.bin");
    CHECK(th_write_file(junk, "hello, this is not a checkpoint", 31) == 0);
    CHECK(pare_pytorch_load(junk, &m, &err) == PARE_EINPUT && strstr(err.msg, junk));
    /* A zip that is not a checkpoint. */
    zentry e[1] = {{"readme.txt", "hi", 2}};
    const char *nopkl = th_tmp_path("pt-no-pickle.bin");
    CHECK(write_zip(nopkl, e, 1) == 0);
    CHECK(pare_pytorch_load(nopkl, &m, &err) == PARE_EINPUT && strstr(err.msg, "data.pkl"));
}

/* ------------------------------------------------------------------------ real files */

static float f32_at(const pare_tensor *t, int64_t i) {
    float v = 0;
    pare_err err = {0};
    float *all = malloc((size_t)pare_tensor_nelements(t) * sizeof *all);
    if (all && pare_tensor_plain_to_f32(t, all, &err) == PARE_OK) v = all[i];
    free(all);
    return v;
}

/* Bytes of a tensor (through the reader when lazy) into a new buffer. */
static void *tensor_bytes(const pare_tensor *t) {
    pare_err err = {0};
    void *b = malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
    if (b && pare_tensor_read(t, b, &err) != PARE_OK) {
        fprintf(stderr, "  %s\n", err.msg);
        free(b);
        return NULL;
    }
    return b;
}

static bool shape_is(const pare_tensor *t, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    return t && t->n_dims == nd && t->ne[0] == a && t->ne[1] == b && t->ne[2] == c && t->ne[3] == d;
}

static void check_basic(const pare_model *m, bool compressed) {
    CHECK_MSG(m->n_tensors == 19, "%zu tensors", m->n_tensors);
    const char *order[] = {"f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"};
    for (int i = 0; i < 10 && (size_t)i < m->n_tensors; i++) CHECK(strcmp(m->tensors[i].name, order[i]) == 0);
    const pare_tensor *t = pare_model_find(m, "f32");
    CHECK(shape_is(t, 2, 4, 3, 1, 1) && t->type == PARE_TYPE_F32);
    int bad = 0;
    for (int i = 0; t && i < 12; i++) bad += f32_at(t, i) != i * 0.25f - 1;
    t = pare_model_find(m, "f16");
    for (int i = 0; t && i < 5; i++) bad += f32_at(t, i) != i * 0.5f;
    t = pare_model_find(m, "bf16");
    CHECK(shape_is(t, 2, 3, 2, 1, 1) && t->type == PARE_TYPE_BF16);
    for (int i = 0; t && i < 6; i++) bad += f32_at(t, i) != i * 0.5f - 1;
    t = pare_model_find(m, "f64");
    double *d = t ? tensor_bytes(t) : NULL;
    for (int i = 0; d && i < 3; i++) bad += fabs(d[i] - i / 3.0) > F64_TOL;
    free(d);
    t = pare_model_find(m, "i64");
    int64_t *q = t ? tensor_bytes(t) : NULL;
    CHECK(q && q[0] == 0 && q[1] == -1 && q[2] == (1ll << 40) && q[3] == -(1ll << 40));
    free(q);
    t = pare_model_find(m, "i16");
    int16_t *h = t ? tensor_bytes(t) : NULL;
    CHECK(t && t->type == PARE_TYPE_I16 && h && h[2] == -600);
    free(h);
    t = pare_model_find(m, "bool");
    uint8_t *bb = t ? tensor_bytes(t) : NULL;
    CHECK(t && t->type == PARE_TYPE_BOOL && bb && bb[0] == 1 && bb[1] == 0 && bb[2] == 1);
    free(bb);
    t = pare_model_find(m, "scalar");
    CHECK(shape_is(t, 1, 1, 1, 1, 1) && f32_at(t, 0) == 3.5f);
    t = pare_model_find(m, "empty");
    CHECK(shape_is(t, 2, 4, 0, 1, 1) && t->n_bytes == 0);
    t = pare_model_find(m, "four_d");
    CHECK(shape_is(t, 4, 5, 4, 3, 2));
    for (int i = 0; t && i < 120; i += 17) bad += f32_at(t, i) != (float)i;
    /* Views of one 20-element storage holding 0..19. */
    t = pare_model_find(m, "view.offset");
    CHECK(shape_is(t, 2, 4, 3, 1, 1));
    for (int i = 0; t && i < 12; i++) bad += f32_at(t, i) != (float)(i + 4);
    t = pare_model_find(m, "view.transposed"); /* (4, 3) = base[:12].view(3, 4).t() */
    CHECK(shape_is(t, 2, 3, 4, 1, 1) && t->read && !t->data);
    for (int r = 0; t && r < 4; r++)
        for (int c = 0; c < 3; c++) bad += f32_at(t, r * 3 + c) != (float)(c * 4 + r);
    t = pare_model_find(m, "view.strided");
    for (int i = 0; t && i < 4; i++) bad += f32_at(t, i) != (float)(1 + 5 * i);
    t = pare_model_find(m, "param");
    for (int i = 0; t && i < 4; i++) bad += f32_at(t, i) != 7.0f;
    CHECK_MSG(bad == 0, "%d values differ from the formulas", bad);
    const pare_tensor *f = pare_model_find(m, "f32"), *tied = pare_model_find(m, "tied");
    if (!compressed) {
        /* Contiguous tensors of stored entries point into the file; tied ones share bytes. */
        CHECK(f && tied && f->data && f->data == tied->data);
        CHECK(pare_model_find(m, "view.offset")->data ==
              (const float *)pare_model_find(m, "view.base")->data + 4);
        CHECK((uintptr_t)f->data % 64 == 0); /* torch aligns entry data to 64 bytes */
    } else {
        for (size_t i = 0; i < m->n_tensors; i++)
            CHECK(m->tensors[i].n_bytes == 0 || (m->tensors[i].read && !m->tensors[i].data));
    }
}

static void test_fixture_basic(void) {
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(FIXTURES "basic.pt", &m, &err), &err);
    if (m) check_basic(m, false);
    CHECK(m && m->format == PARE_FORMAT_PYTORCH && !m->gguf_names);
    pare_model_free(m);
}

static void test_fixture_compressed(void) {
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(FIXTURES "compressed.pt", &m, &err), &err);
    if (m) check_basic(m, true);
    pare_model_free(m);
}

/* Every size and offset through zip64 fields and end records: the same tensors, mapped. */
static void test_fixture_zip64(void) {
    pare_model *a = NULL, *z = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(FIXTURES "basic.pt", &a, &err), &err);
    CHECK_OK(pare_pytorch_load(FIXTURES "zip64.pt", &z, &err), &err);
    if (a && z && a->n_tensors == z->n_tensors) {
        int bad = 0;
        for (size_t i = 0; i < a->n_tensors; i++) {
            const pare_tensor *x = &a->tensors[i], *y = &z->tensors[i];
            void *bx = tensor_bytes(x), *by = tensor_bytes(y);
            bad += !bx || !by || strcmp(x->name, y->name) != 0 || x->n_bytes != y->n_bytes ||
                   (x->n_bytes && memcmp(bx, by, (size_t)x->n_bytes) != 0) || (x->data != NULL) != (y->data != NULL);
            free(bx);
            free(by);
        }
        CHECK_MSG(bad == 0, "%d tensors differ between basic.pt and zip64.pt", bad);
    } else {
        CHECK(a && z && a->n_tensors == z->n_tensors);
    }
    pare_model_free(a);
    pare_model_free(z);
}

static void test_fixture_proto4_nested(void) {
    pare_model *m = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(FIXTURES "proto4.pt", &m, &err), &err);
    if (m) {
        const pare_tensor *w = pare_model_find(m, "w"), *b = pare_model_find(m, "b");
        CHECK(m->n_tensors == 2 && shape_is(w, 2, 3, 2, 1, 1) && b && b->type == PARE_TYPE_F16);
        CHECK(w && f32_at(w, 5) == 5.0f && b && f32_at(b, 2) == 2.0f);
    }
    pare_model_free(m);
    m = NULL;
    CHECK_OK(pare_pytorch_load(FIXTURES "nested.pt", &m, &err), &err);
    if (m) {
        CHECK(m->n_tensors == 3);
        CHECK(m->n_tensors == 3 && strcmp(m->tensors[0].name, "model.w") == 0 &&
              strcmp(m->tensors[1].name, "model.inner.b") == 0 && strcmp(m->tensors[2].name, "top") == 0);
        const pare_tensor *t = pare_model_find(m, "model.w");
        CHECK(t && f32_at(t, 3) == 3.0f);
    }
    pare_model_free(m);
}

/* pytorch_model.bin and model.safetensors of the same model hold identical tensors. */
static void test_reference_vs_safetensors(void) {
    char *bin = th_shared_dup("models/fortune-llama/pytorch_model.bin");
    const char *st = th_shared("models/fortune-llama/model.safetensors");
    if (!bin || !st) {
        free(bin);
        return;
    }
    pare_model *a = NULL, *b = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(bin, &a, &err), &err);
    CHECK_OK(pare_safetensors_load(st, &b, &err), &err);
    free(bin);
    if (a && b) {
        CHECK_MSG(a->n_tensors == b->n_tensors, "%zu vs %zu tensors", a->n_tensors, b->n_tensors);
        size_t same = 0, mapped = 0;
        for (size_t i = 0; i < a->n_tensors; i++) {
            const pare_tensor *x = &a->tensors[i], *y = pare_model_find(b, x->name);
            bool eq = y && x->type == y->type && x->n_dims == y->n_dims && memcmp(x->ne, y->ne, sizeof x->ne) == 0 &&
                      x->n_bytes == y->n_bytes && x->data && memcmp(x->data, y->data, (size_t)x->n_bytes) == 0;
            CHECK_MSG(eq, "tensor '%s' differs", x->name);
            same += eq;
            mapped += x->data != NULL && x->source == 0;
        }
        printf("  pytorch_model.bin vs model.safetensors: %zu of %zu tensors identical, %zu zero-copy\n", same,
               a->n_tensors, mapped);
        CHECK(mapped == a->n_tensors);
    }
    pare_model_free(a);
    pare_model_free(b);
}

/* Lazy (compressed, strided) tensors stream through the safetensors writer unchanged. */
static void test_to_safetensors(void) {
    pare_model *a = NULL, *c = NULL, *r = NULL;
    pare_err err = {0};
    CHECK_OK(pare_pytorch_load(FIXTURES "basic.pt", &a, &err), &err);
    CHECK_OK(pare_pytorch_load(FIXTURES "compressed.pt", &c, &err), &err);
    const char *out = th_tmp_path("from-pt.safetensors");
    if (c) CHECK_OK(pare_safetensors_save(c, out, false, &err), &err);
    CHECK_OK(pare_safetensors_load(out, &r, &err), &err);
    if (a && r) {
        CHECK(r->n_tensors == a->n_tensors);
        int bad = 0;
        for (size_t i = 0; i < a->n_tensors; i++) {
            const pare_tensor *x = &a->tensors[i], *y = pare_model_find(r, x->name);
            void *bx = tensor_bytes(x);
            bool eq = y && bx && y->type == x->type && memcmp(y->ne, x->ne, sizeof x->ne) == 0 &&
                      y->n_bytes == x->n_bytes && (!x->n_bytes || memcmp(bx, y->data, (size_t)x->n_bytes) == 0);
            CHECK_MSG(eq, "'%s' differs after pytorch -> safetensors", x->name);
            bad += !eq;
            free(bx);
        }
        printf("  compressed.pt -> safetensors: %zu tensors, %d differ from basic.pt\n", a->n_tensors, bad);
    }
    pare_model_free(a);
    pare_model_free(c);
    pare_model_free(r);
}

/* Random byte edits and truncations of real checkpoints: every load either succeeds (and
 * every tensor then reads) or fails with a message naming the file; no crash under ASan. */
#define N_MUTATIONS 300

static void test_mutations(void) {
    const char *files[] = {FIXTURES "basic.pt", FIXTURES "compressed.pt", FIXTURES "zip64.pt"};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int loaded = 0, refused = 0, bad = 0;
    const char *path = th_tmp_path("mutant.bin");
    for (int f = 0; f < 3; f++) {
        size_t n = 0;
        uint8_t *orig = th_read_file(files[f], &n), *b = malloc(n ? n : 1);
        for (int it = 0; orig && b && it < N_MUTATIONS; it++) {
            memcpy(b, orig, n);
            size_t len = n;
            for (int k = 0; k < 3; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                size_t pos = (size_t)(rng >> 16) % len;
                if (k == 2 && rng % 5 == 0) len = pos + 1;
                else b[pos] = (uint8_t)(rng >> 8);
            }
            th_write_file(path, b, len);
            pare_model *m = NULL;
            pare_err err = {0};
            if (pare_pytorch_load(path, &m, &err) == PARE_OK) {
                loaded++;
                for (size_t i = 0; i < m->n_tensors; i++) {
                    const void *p;
                    void *tmp = NULL;
                    /* A compressed entry with a bad CRC loads, but fails when read. */
                    if (pare_tensor_bytes(&m->tensors[i], &p, &tmp, &err) != PARE_OK) bad += !strstr(err.msg, path);
                    free(tmp);
                }
            } else {
                refused++;
                bad += strstr(err.msg, path) == NULL;
            }
            pare_model_free(m);
        }
        free(orig);
        free(b);
    }
    printf("  %d mutated checkpoints: %d loaded, %d refused, %d messages without the file name\n", loaded + refused,
           loaded, refused, bad);
    CHECK(loaded + refused == 3 * N_MUTATIONS && bad == 0 && refused > 0);
}

/* ------------------------------------------------------------------------ main */

static int write_corpus(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    int bad = 0;
    char path[1024];
    size_t n = sizeof pt_cases / sizeof pt_cases[0];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, pt_cases[i].name);
        bad |= write_case(&pt_cases[i], path) != 0;
    }
    snprintf(path, sizeof path, "%s/pt-legacy.bin", dir);
    size_t len = 0;
    uint8_t *legacy = th_read_file(FIXTURES "legacy.pt", &len);
    /* The legacy format's first bytes: PROTO 2, LONG1 of torch's magic number. */
    static const uint8_t legacy_head[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                          0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    bad |= legacy ? th_write_file(path, legacy, len) : th_write_file(path, legacy_head, sizeof legacy_head);
    free(legacy);
    printf("wrote %zu corrupt or forbidden PyTorch files and pt-legacy.bin to %s\n", n, dir);
    return bad != 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    if (!th_tmpdir("pare-pt-test")) return 1;
    TH_RUN(test_fixture_basic);
    TH_RUN(test_fixture_compressed);
    TH_RUN(test_fixture_zip64);
    TH_RUN(test_fixture_proto4_nested);
    TH_RUN(test_reference_vs_safetensors);
    TH_RUN(test_builder_valid);
    TH_RUN(test_legacy_and_junk);
    TH_RUN(test_corrupt_files);
    TH_RUN(test_to_safetensors);
    TH_RUN(test_mutations);
    th_rm_rf(th.tmpdir);
    return th_done();
}
