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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th_files.h"

typedef struct {
    int passed, failed, skipped;
    int cur_failed, cur_skipped;
    char tmpdir[256]; /* the binary's scratch folder (th_tmpdir) */
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

/* ---- files the tests make -------------------------------------------------------------- */

/* Makes the binary's scratch folder /tmp/PREFIX-XXXXXX in th.tmpdir; false (with a message)
 * when it cannot. th_rm_rf(th.tmpdir) removes it at the end. */
static inline bool th_tmpdir(const char *prefix) {
    snprintf(th.tmpdir, sizeof th.tmpdir, "/tmp/%s-XXXXXX", prefix);
    if (mkdtemp(th.tmpdir)) return true;
    perror("mkdtemp");
    return false;
}

/* th.tmpdir/name, in one of 8 static buffers used in turn (a call may hold several). */
static inline const char *th_tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", th.tmpdir, name);
    return p;
}

#endif
