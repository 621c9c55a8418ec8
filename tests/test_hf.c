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

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARED_F32 "models/fortune-llama-gguf/fortune-llama-f32.gguf"
#define SHARED_BF16 "models/fortune-llama-gguf/fortune-llama-bf16-sharded-bf16.gguf"
#define SHARED_DIR "models/fortune-llama"
#define SHARED_SHARDED "models/fortune-llama-bf16-sharded"

static char tmpdir[256];

__attribute__((unused)) static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void rm_rf(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", path);
}

__attribute__((unused)) static void write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

__attribute__((unused)) static void write_bytes(const char *dir, const char *name, const void *data, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

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

static const char *const writer_keys[] = {"general.file_type", "general.quantization_version", NULL};

/* ------------------------------------------------------------------------ tensor compare */

/* Compares every tensor of got with want: names in order, types, shapes, bytes (through
 * pare_tensor_read). widen_1d: want's 1-D tensors are F32 while got's are BF16 (compared after
 * widening). Prints the largest absolute difference seen. */
static void tensors_compare(const pare_model *got, const pare_model *want, bool widen_1d) {
    CHECK_MSG(got->n_tensors == want->n_tensors, "%zu tensors, want %zu", got->n_tensors, want->n_tensors);
    size_t n = got->n_tensors < want->n_tensors ? got->n_tensors : want->n_tensors;
    double max_diff = 0;
    int bad = 0;
    pare_err err = {0};
    for (size_t i = 0; i < n; i++) {
        const pare_tensor *a = &got->tensors[i], *b = &want->tensors[i];
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

int main(int argc, char **argv) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pare-test-hf-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    (void)argc;
    (void)argv;
    TH_RUN(test_fortune_meta);
    TH_RUN(test_fortune_tensors);
    rm_rf(tmpdir);
    return th_done();
}
