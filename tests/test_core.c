/* tests/test_core.c - core: types, fp conversions, metadata, outfiles, parallel-for. */
#include "core/core.h"
#include "th.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
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

/* Byte i of the test stream: not periodic at any block size. */
static uint8_t stream_byte(uint64_t i) { return (uint8_t)((i * 2654435761u) >> 13 ^ i >> 20); }

/* Writes n bytes of the stream in uneven chunks (1 byte to 3 MiB), commits, reads back. */
static void outfile_roundtrip(const char *dir, uint64_t n) {
    static const size_t chunks[] = {1, 7, 4095, 4096, 4097, 65537, 3u << 20, 333};
    char *path = pare_path_join(dir, "big.bin");
    pare_err err = {0};
    pare_outfile *f = NULL;
    CHECK_OK(pare_outfile_open(path, false, NULL, 0, &f, &err), &err);
    uint8_t *buf = malloc(3u << 20);
    uint64_t pos = 0;
    for (size_t c = 0; f && buf && pos < n; c++) {
        size_t k = chunks[c % (sizeof chunks / sizeof *chunks)];
        if (k > n - pos) k = (size_t)(n - pos);
        for (size_t i = 0; i < k; i++) buf[i] = stream_byte(pos + i);
        CHECK_OK(pare_outfile_write(f, buf, k, &err), &err);
        pos += k;
        CHECK(pare_outfile_tell(f) == pos);
    }
    CHECK_OK(pare_outfile_commit(f, &err), &err);
    pare_outfile_free(f);
    pare_map *m = NULL;
    CHECK_OK(pare_map_open(path, &m, &err), &err);
    CHECK_MSG(m && m->size == n, "%s: %llu bytes written, %llu on disk", path, (unsigned long long)n,
              m ? (unsigned long long)m->size : 0ull);
    uint64_t bad = 0;
    for (uint64_t i = 0; m && m->size == n && i < n; i++) bad += m->data[i] != stream_byte(i);
    CHECK_MSG(bad == 0, "%s: %llu of %llu bytes differ", path, (unsigned long long)bad, (unsigned long long)n);
    /* pread: the same bytes; a read past the end is an error, not a short read */
    uint8_t got[5000];
    uint64_t at = n > sizeof got ? n - sizeof got - 3 : 0;
    size_t len = n > sizeof got ? sizeof got : (size_t)n;
    CHECK_OK(pare_map_pread(m, got, at, len, &err), &err);
    for (size_t i = 0; i < len; i++) bad += got[i] != stream_byte(at + i);
    CHECK(bad == 0);
    CHECK(pare_map_pread(m, got, n - 2, 3, &err) != PARE_OK);
    pare_map_free(m);
    unlink(path);
    free(path);
    free(buf);
}

/* Large outputs go through aligned staging buffers and O_DIRECT (or the page cache where the
 * file system refuses it): sizes around the 4 MiB the page cache keeps and the 8 MiB
 * staging buffers, on the disk and, when there, on tmpfs; and an abandoned large output. */
static void test_outfile_large(void) {
    char dir[] = "/tmp/pare-test-XXXXXX", shm[] = "/dev/shm/pare-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const bool have_shm = pare_path_is_dir("/dev/shm") && mkdtemp(shm) != NULL;
    const uint64_t sizes[] = {(4u << 20) - 5, 4u << 20, (4u << 20) + 1, 12u << 20, (21u << 20) + 1234};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        outfile_roundtrip(dir, sizes[i]);
        if (have_shm) outfile_roundtrip(shm, sizes[i]);
    }
    char *path = pare_path_join(dir, "abandoned.bin");
    pare_err err = {0};
    pare_outfile *f = NULL;
    CHECK_OK(pare_outfile_open(path, false, NULL, 0, &f, &err), &err);
    uint8_t *buf = calloc(1, 10u << 20);
    for (int i = 0; f && buf && i < 3; i++) CHECK_OK(pare_outfile_write(f, buf, 10u << 20, &err), &err);
    pare_outfile_free(f); /* stops the writer thread, removes the temporary */
    CHECK(!pare_path_exists(path));
    DIR *d = opendir(dir);
    int left = 0;
    for (struct dirent *e; d && (e = readdir(d));) left += e->d_name[0] != '.' || strlen(e->d_name) > 2;
    if (d) closedir(d);
    CHECK_MSG(left == 0, "%d files left in %s", left, dir);
    free(buf);
    free(path);
    rmdir(dir);
    if (have_shm) rmdir(shm);
}

/* Entries of a folder other than . and .., and whether `name` is among them. */
static int dir_entries(const char *dir, const char *name, bool *found) {
    DIR *d = opendir(dir);
    int n = 0;
    if (found) *found = false;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (found && name && !strcmp(e->d_name, name)) *found = true;
    }
    if (d) closedir(d);
    return n;
}

/* No debris: a child killed with SIGKILL while writing leaves nothing in the folder (the
 * output is an unnamed file until commit); --force replaces an existing file whole; a named
 * temporary of a dead run is swept by the next run in the folder, one held by a live run is
 * not; a working folder is removed with its files and swept when abandoned. */
static void test_no_debris(void) {
    char dir[] = "/tmp/pare-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = pare_path_join(dir, "out.bin");
    pare_err err = {0};
    for (int round = 0; round < 3; round++) {
        const pid_t pid = fork();
        if (pid == 0) {
            pare_outfile *f = NULL;
            uint8_t *buf = calloc(1, 1u << 20);
            if (pare_outfile_open(path, true, NULL, 0, &f, &err) || !buf) _exit(3);
            for (int i = 0; i < 6 + 4 * round; i++) pare_outfile_write(f, buf, 1u << 20, &err);
            raise(SIGKILL);
            _exit(4);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
        CHECK_MSG(dir_entries(dir, NULL, NULL) == 0, "round %d: %d entries left in %s", round,
                  dir_entries(dir, NULL, NULL), dir);
    }
    /* --force over an existing file: the new bytes whole, nothing else left */
    FILE *old = fopen(path, "w");
    CHECK(old && fputs("old contents", old) >= 0);
    if (old) fclose(old);
    pare_outfile *f = NULL;
    CHECK_OK(pare_outfile_open(path, true, NULL, 0, &f, &err), &err);
    CHECK_OK(pare_outfile_write(f, "new", 3, &err), &err);
    CHECK_OK(pare_outfile_commit(f, &err), &err);
    pare_outfile_free(f);
    bool found = false;
    CHECK(dir_entries(dir, "out.bin", &found) == 1 && found);
    pare_map *m = NULL;
    CHECK_OK(pare_map_open(path, &m, &err), &err);
    CHECK(m && m->size == 3 && !memcmp(m->data, "new", 3));
    pare_map_free(m);
    /* a dead run's named temporary (no lock) goes; a live one's (locked) stays */
    char *dead = pare_path_join(dir, ".out.bin.pare-dead01"), *live = pare_path_join(dir, ".out.bin.pare-live01");
    char *other = pare_path_join(dir, ".hidden-but-not-pare");
    const int fd_dead = open(dead, O_CREAT | O_WRONLY, 0644), fd_other = open(other, O_CREAT | O_WRONLY, 0644);
    const int fd_live = open(live, O_CREAT | O_WRONLY, 0644);
    CHECK(fd_dead >= 0 && fd_live >= 0 && fd_other >= 0 && flock(fd_live, LOCK_EX) == 0);
    close(fd_dead), close(fd_other);
    pare_tmpdir *abandoned = NULL;
    CHECK_OK(pare_tmpdir_new(path, "work", &abandoned, &err), &err);
    char *inside = abandoned ? pare_path_join(pare_tmpdir_path(abandoned), "part.gguf") : NULL;
    FILE *pf = inside ? fopen(inside, "w") : NULL;
    if (pf) fclose(pf);
    pare_sweep_stale(dir); /* the working folder is ours and locked: it stays */
    CHECK(abandoned && pare_path_is_dir(pare_tmpdir_path(abandoned)) && !pare_path_exists(dead));
    CHECK(pare_path_exists(live) && pare_path_exists(other));
    close(fd_live); /* its owner is gone now */
    char *kept = abandoned ? strdup(pare_tmpdir_path(abandoned)) : NULL;
    pare_tmpdir_free(abandoned); /* removed with its file */
    CHECK(kept && !pare_path_exists(kept));
    CHECK_OK(pare_outfile_open(path, true, NULL, 0, &f, &err), &err); /* sweeps */
    pare_outfile_free(f);
    CHECK(!pare_path_exists(live) && pare_path_exists(other));
    unlink(other), unlink(path);
    CHECK_MSG(dir_entries(dir, NULL, NULL) == 0, "%d entries left", dir_entries(dir, NULL, NULL));
    rmdir(dir);
    free(path), free(dead), free(live), free(other), free(inside), free(kept);
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
    TH_RUN(test_no_debris);
    TH_RUN(test_outfile_large);
    TH_RUN(test_parallel_for);
    TH_RUN(test_pool);
    return th_done();
}
