/* tests/test_core.c - core: types, fp conversions, metadata, outfiles, parallel-for. */
#include "core/core.h"
#include "th.h"

#include <unistd.h>

static void test_type_table(void) {
    CHECK(pare_type_get(PARE_TYPE_Q4_K)->type_size == 144);
    CHECK(pare_type_get(PARE_TYPE_IQ4_XS)->type_size == 136);
    CHECK(pare_type_get(4) == NULL); /* removed Q4_2 */
    CHECK(pare_type_from_name("Q4_K") == PARE_TYPE_Q4_K);
    CHECK(pare_type_from_name("bf16") == PARE_TYPE_BF16);
    CHECK(pare_type_from_st_name("F8_E4M3") == PARE_TYPE_F8_E4M3);
    CHECK(pare_type_from_name("nope") == PARE_TYPE_INVALID);
    CHECK(pare_type_row_size(PARE_TYPE_Q8_0, 64) == 68);
    CHECK(pare_type_row_size(PARE_TYPE_Q8_0, 33) == 0);
}

static void test_fp16(void) {
    /* Every half converts to f32 and back unchanged (NaNs stay NaN). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pare_fp16_to_fp32((uint16_t)h);
        uint16_t back = pare_fp32_to_fp16(f);
        if (isnan(f) ? !isnan(pare_fp16_to_fp32(back)) : back != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d halves did not round-trip", bad);
    /* Ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10. */
    CHECK(pare_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);
    CHECK(pare_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(pare_fp32_to_fp16(65520.0f) == 0x7c00);
    CHECK(pare_fp32_to_fp16(65519.0f) == 0x7bff);
    CHECK(pare_fp32_to_fp16(0x1p-25f) == 0);        /* halfway to the smallest subnormal: even */
    CHECK(pare_fp32_to_fp16(0x1.8p-25f) == 1);
    CHECK(pare_fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80); /* tie to even */
    CHECK(pare_bf16_to_fp32(0x3f80) == 1.0f);
    CHECK(pare_f8e4m3_to_fp32(0x38) == 1.0f);
    CHECK(pare_f8e4m3_to_fp32(0x7e) == 448.0f);
    CHECK(pare_f8e5m2_to_fp32(0x3c) == 1.0f);
}

static void test_meta(void) {
    pare_meta m = {0};
    pare_err err = {0};
    CHECK_OK(pare_meta_set_uint(&m, "a.count", PARE_META_U32, 7, &err), &err);
    CHECK_OK(pare_meta_set_float(&m, "a.eps", PARE_META_F32, 1e-5, &err), &err);
    CHECK_OK(pare_meta_set_str(&m, "a.name", "x", 1, &err), &err);
    pare_str strs[2] = {{"hi", 2}, {"there", 5}};
    CHECK_OK(pare_meta_set_arr(&m, "a.tokens", PARE_META_STRING, strs, 2, &err), &err);
    CHECK_OK(pare_meta_set_uint(&m, "a.count", PARE_META_U32, 9, &err), &err); /* replace in place */
    uint64_t u = 0;
    CHECK(pare_meta_get_u64(&m, "a.count", &u) && u == 9);
    CHECK(m.n == 4 && strcmp(m.kv[0].key, "a.count") == 0);
    double d = 0;
    CHECK(pare_meta_get_f64(&m, "a.eps", &d) && d == (double)1e-5f);
    const pare_kv *kv = pare_meta_get(&m, "a.tokens");
    CHECK(kv && kv->n == 2 && strcmp(((pare_str *)kv->arr)[1].s, "there") == 0);
    pare_meta c = {0};
    CHECK_OK(pare_meta_copy(&c, &m, &err), &err);
    CHECK(pare_meta_remove(&c, "a.name") && c.n == 3);
    CHECK(pare_meta_get_str(&m, "a.name") && !pare_meta_get_str(&c, "a.name"));
    pare_meta_free(&c);
    pare_meta_free(&m);
}

static void test_tensor_sizes(void) {
    pare_err err = {0};
    uint64_t n = 0;
    int64_t ne[2] = {256, 3};
    CHECK_OK(pare_tensor_nbytes(PARE_TYPE_Q4_K, 2, ne, &n, &err), &err);
    CHECK(n == 3 * 144);
    int64_t bad[2] = {100, 3};
    CHECK(pare_tensor_nbytes(PARE_TYPE_Q4_K, 2, bad, &n, &err) == PARE_EINPUT);
    int64_t huge[4] = {INT64_MAX, INT64_MAX, 2, 2};
    CHECK(pare_tensor_nbytes(PARE_TYPE_F32, 4, huge, &n, &err) == PARE_EINPUT);
    CHECK(strstr(err.msg, "overflow") != NULL);
}

static void test_outfile(void) {
    char dir[] = "/tmp/pare-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = pare_path_join(dir, "out.bin");
    pare_err err = {0};
    pare_outfile *f = NULL;
    CHECK_OK(pare_outfile_open(path, false, NULL, 0, &f, &err), &err);
    CHECK_OK(pare_outfile_write(f, "abc", 3, &err), &err);
    CHECK(!pare_path_exists(path)); /* not visible before commit */
    pare_outfile_free(f);           /* abort: nothing left */
    CHECK(!pare_path_exists(path));
    CHECK_OK(pare_outfile_open(path, false, NULL, 0, &f, &err), &err);
    CHECK_OK(pare_outfile_write(f, "abc", 3, &err), &err);
    CHECK_OK(pare_outfile_pad_to(f, 8, &err), &err);
    CHECK_OK(pare_outfile_commit(f, &err), &err);
    pare_outfile_free(f);
    pare_map *m = NULL;
    CHECK_OK(pare_map_open(path, &m, &err), &err);
    CHECK(m && m->size == 8 && memcmp(m->data, "abc\0\0\0\0\0", 8) == 0);
    pare_map_free(m);
    /* Existing output needs force; an input is never the output. */
    CHECK(pare_outfile_open(path, false, NULL, 0, &f, &err) == PARE_EUSAGE);
    const char *inputs[1] = {path};
    CHECK(pare_outfile_open(path, true, inputs, 1, &f, &err) == PARE_EUSAGE);
    unlink(path);
    rmdir(dir);
    free(path);
}

typedef struct {
    int64_t sum[8];
} pf_ctx;
static void pf_add(void *ctx, int64_t i, int t) { ((pf_ctx *)ctx)->sum[t] += i; }

static void test_parallel_for(void) {
    pf_ctx c = {{0}};
    pare_parallel_for(4, 1000, pf_add, &c);
    int64_t s = 0;
    for (int i = 0; i < 8; i++) s += c.sum[i];
    CHECK(s == 999 * 1000 / 2);
}

/* Many short jobs back to back, as the evaluator runs them: every item of every job runs
 * exactly once, on the pool's threads only, and jobs of one item or none are fine. */
static void test_pool(void) {
    for (int nt = 1; nt <= 4; nt++) {
        pare_pool *p = pare_pool_new(nt);
        CHECK(p && pare_pool_threads(p) == nt);
        int64_t bad = 0;
        for (int job = 0; job < 1000; job++) {
            pf_ctx c = {{0}};
            const int64_t n = job % 7;
            pare_pool_for(p, n, pf_add, &c);
            int64_t s = 0;
            for (int i = 0; i < 8; i++) s += c.sum[i];
            for (int i = nt; i < 8; i++) bad += c.sum[i] != 0;
            bad += s != n * (n - 1) / 2;
        }
        CHECK_MSG(bad == 0, "%lld wrong jobs with %d threads", (long long)bad, nt);
        pare_pool_free(p);
    }
    pf_ctx c = {{0}};
    pare_pool_for(NULL, 10, pf_add, &c);
    CHECK(c.sum[0] == 45 && pare_pool_threads(NULL) == 1);
    pare_pool_free(NULL);
}

int main(void) {
    TH_RUN(test_type_table);
    TH_RUN(test_fp16);
    TH_RUN(test_meta);
    TH_RUN(test_tensor_sizes);
    TH_RUN(test_outfile);
    TH_RUN(test_parallel_for);
    TH_RUN(test_pool);
    return th_done();
}
