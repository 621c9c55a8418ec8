/* tests/th.h - a tiny test harness for module tests.
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); CHECK_MSG(ok, "got %d", v); }
 *   int main(void) { TH_RUN(test_x); return th_done(); }
 *
 * Each test prints "PASS name" or "FAIL name" with the failed checks; th_done prints
 * "N passed, N failed" and returns the exit status. tests/run.sh adds the counts up.
 *
 * Data from ../shared/ (made by the reference tools) is found through th_shared(): when
 * it is absent the test is reported as SKIP, except under CI=true, where absence fails. */
#ifndef PARE_TH_H
#define PARE_TH_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int passed, failed, skipped;
    int cur_failed, cur_skipped;
} th_state;
static th_state th;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            th.cur_failed++;                                                                       \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
        }                                                                                          \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            th.cur_failed++;                                                                       \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)
/* A pare_status call that must succeed; prints the error message otherwise. */
#define CHECK_OK(expr, errp)                                                                       \
    do {                                                                                           \
        if ((expr) != 0) {                                                                         \
            th.cur_failed++;                                                                       \
            fprintf(stderr, "  %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, (errp)->msg);  \
        }                                                                                          \
    } while (0)

/* TH_ONLY=NAME[,NAME...] in the environment runs only those tests of the binary (the others
 * are not counted): `make test T=test_eval TH_ONLY=test_golden_q8_0`. */
static inline bool th_selected(const char *name) {
    const char *only = getenv("TH_ONLY");
    if (!only || !*only) return true;
    const size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}

static inline void th_run(const char *name, void (*fn)(void)) {
    if (!th_selected(name)) return;
    th.cur_failed = th.cur_skipped = 0;
    fn();
    if (th.cur_failed) {
        th.failed++;
        printf("FAIL %s\n", name);
    } else if (th.cur_skipped) {
        th.skipped++;
        printf("SKIP %s\n", name);
    } else {
        th.passed++;
        printf("PASS %s\n", name);
    }
    fflush(stdout);
}
#define TH_RUN(fn) th_run(#fn, fn)

static inline int th_done(void) {
    printf("%d passed, %d failed, %d skipped\n", th.passed, th.failed, th.skipped);
    return th.failed ? 1 : 0;
}

/* Path of a file under ../shared/ (or $PARE_SHARED) in a static buffer, or NULL when
 * missing: the caller returns at once; the test counts as skipped, or failed under CI. */
static inline const char *th_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("PARE_SHARED");
    if (!root) root = "../shared";
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    struct stat st;
    if (stat(buf, &st) == 0) return buf;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        th.cur_failed++;
        fprintf(stderr, "  shared file %s is missing under CI\n", buf);
    } else {
        th.cur_skipped++;
        fprintf(stderr, "  %s not present: skipped\n", buf);
    }
    return NULL;
}

/* Copy of a th_shared path that survives the next call. */
static inline char *th_shared_dup(const char *rel) {
    const char *p = th_shared(rel);
    return p ? strdup(p) : NULL;
}

/* Writes n bytes to a new file at path, 0 on success. The old file is unlinked first rather
 * than truncated: ext4 flushes files that are truncated and rewritten (auto_da_alloc), which
 * makes thousands of small rewrites take seconds. */
static inline int th_write_file(const char *path, const void *p, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* The whole file in a malloc'ed buffer (NULL on failure); *n gets its size. */
static inline void *th_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(len > 0 ? (size_t)len : 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return p;
}

#endif
