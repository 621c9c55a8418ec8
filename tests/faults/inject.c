/*
 * tests/faults/inject.c - a fault injector for the command-line tests, loaded into a
 * (non-sanitized) pare with LD_PRELOAD. PARE_FAULT says what to break:
 *
 *   write:N:ERR     the N-th write to a regular file (write, pwrite; fds above 2) fails
 *                   with errno ERR (ENOSPC, EDQUOT, EFBIG, EIO)
 *   short           every write to a regular file writes at most half its bytes (at least
 *                   one), as a full pipe or a signal can make it
 *   fsync:N:ERR     the N-th fsync / fdatasync fails
 *   rename:N:ERR    the N-th rename fails
 *   create:N:ERR    the N-th creation of a file (open with O_CREAT or O_TMPFILE, mkostemp)
 *                   fails; N = all: every one, as in a read-only folder
 *
 * PARE_FAULT_TRUNCATE=N:SIZE:PATH cuts the file PATH to SIZE bytes at the N-th time pare
 * reads it with pread or releases pages of a mapping of it (madvise MADV_DONTNEED, which
 * pare does after each tensor it has read through the mapping): what follows then lies
 * past the end of the file, as when another program truncates an input during a run; a
 * pread comes back short, a read through the mapping raises SIGBUS.
 *
 * PARE_FAULT_COUNT=FILE writes, at exit, how many writes to regular files the run made, so
 * that a test can break each one in turn. Nothing here is used by pare itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char what[16];
    long n;
    int err;
    int short_writes;
} fault;

static atomic_long n_write, n_fsync, n_rename, n_create;

static fault get_fault(void) {
    fault f = {{0}, 0, 0, 0};
    const char *s = getenv("PARE_FAULT");
    if (!s) return f;
    if (!strcmp(s, "short")) {
        f.short_writes = 1;
        return f;
    }
    char err[32] = "", n[16] = "";
    if (sscanf(s, "%15[a-z]:%15[a-z0-9]:%31s", f.what, n, err) != 3) return f;
    f.n = !strcmp(n, "all") ? -1 : atol(n);
    f.err = !strcmp(err, "ENOSPC") ? ENOSPC : !strcmp(err, "EDQUOT") ? EDQUOT : !strcmp(err, "EFBIG") ? EFBIG
          : !strcmp(err, "EIO") ? EIO : !strcmp(err, "EROFS") ? EROFS : !strcmp(err, "EACCES") ? EACCES : EIO;
    return f;
}

/* Whether this call is the one to fail: counts the calls of its kind. */
static int hit(const char *what, atomic_long *counter) {
    const fault f = get_fault();
    const long k = atomic_fetch_add(counter, 1) + 1;
    if (f.n && !strcmp(f.what, what) && (k == f.n || f.n < 0)) {
        errno = f.err;
        return 1;
    }
    return 0;
}

static int is_file(int fd) {
    struct stat st;
    return fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static size_t shorten(size_t n) { return get_fault().short_writes && n > 1 ? n / 2 : n; }

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (is_file(fd)) {
        if (hit("write", &n_write)) return -1;
        n = shorten(n);
    }
    return real(fd, buf, n);
}

#define PWRITE(NAME)                                                                                                   \
    ssize_t NAME(int fd, const void *buf, size_t n, off_t off) {                                                       \
        static ssize_t (*real)(int, const void *, size_t, off_t);                                                     \
        if (!real) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, #NAME);                     \
        if (is_file(fd)) {                                                                                             \
            if (hit("write", &n_write)) return -1;                                                                     \
            n = shorten(n);                                                                                            \
        }                                                                                                              \
        return real(fd, buf, n, off);                                                                                  \
    }
PWRITE(pwrite)
PWRITE(pwrite64)

#define SYNC(NAME)                                                                                                     \
    int NAME(int fd) {                                                                                                 \
        static int (*real)(int);                                                                                       \
        if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #NAME);                                                       \
        if (is_file(fd) && hit("fsync", &n_fsync)) return -1;                                                          \
        return real(fd);                                                                                               \
    }
SYNC(fsync)
SYNC(fdatasync)

int rename(const char *a, const char *b) {
    static int (*real)(const char *, const char *);
    if (!real) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    if (hit("rename", &n_rename)) return -1;
    return real(a, b);
}

#define OPEN(NAME)                                                                                                     \
    int NAME(const char *path, int flags, ...) {                                                                       \
        static int (*real)(const char *, int, ...);                                                                    \
        if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #NAME);                                    \
        mode_t mode = 0;                                                                                               \
        if (flags & (O_CREAT | __O_TMPFILE)) {                                                                         \
            va_list ap;                                                                                                \
            va_start(ap, flags);                                                                                       \
            mode = (mode_t)va_arg(ap, int);                                                                            \
            va_end(ap);                                                                                                \
            if (hit("create", &n_create)) return -1;                                                                   \
        }                                                                                                              \
        return real(path, flags, mode);                                                                                \
    }
OPEN(open)
OPEN(open64)

#define MKOSTEMP(NAME)                                                                                                 \
    int NAME(char *tmpl, int flags) {                                                                                  \
        static int (*real)(char *, int);                                                                               \
        if (!real) real = (int (*)(char *, int))dlsym(RTLD_NEXT, #NAME);                                               \
        if (hit("create", &n_create)) return -1;                                                                       \
        return real(tmpl, flags);                                                                                      \
    }
MKOSTEMP(mkostemp)
MKOSTEMP(mkostemp64)

/* ------------------------------------------------------------------ truncation */

static atomic_long n_release;
static _Atomic(uintptr_t) trunc_base, trunc_end; /* the mapping of PARE_FAULT_TRUNCATE's file */

static int trunc_spec(long *n, long long *size, char *path, size_t cap) {
    const char *s = getenv("PARE_FAULT_TRUNCATE");
    int k = 0;
    if (!s || sscanf(s, "%ld:%lld:%n", n, size, &k) != 2 || !k || strlen(s + k) >= cap) return 0;
    strcpy(path, s + k);
    return 1;
}

#define MMAP(NAME)                                                                                                     \
    void *NAME(void *addr, size_t len, int prot, int flags, int fd, off_t off) {                                       \
        static void *(*real)(void *, size_t, int, int, int, off_t);                                                   \
        if (!real) real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, #NAME);                    \
        void *p = real(addr, len, prot, flags, fd, off);                                                              \
        long n;                                                                                                        \
        long long size;                                                                                                \
        char want[4096], link[64], got[4096];                                                                          \
        if (p != MAP_FAILED && fd > 2 && trunc_spec(&n, &size, want, sizeof want)) {                                  \
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);                                                       \
            ssize_t k = readlink(link, got, sizeof got - 1);                                                           \
            char *rw = realpath(want, NULL);                                                                           \
            if (k > 0 && rw) {                                                                                         \
                got[k] = 0;                                                                                            \
                if (!strcmp(got, rw)) {                                                                                \
                    atomic_store(&trunc_base, (uintptr_t)p);                                                           \
                    atomic_store(&trunc_end, (uintptr_t)p + len);                                                      \
                }                                                                                                      \
            }                                                                                                          \
            free(rw);                                                                                                  \
        }                                                                                                              \
        return p;                                                                                                      \
    }
MMAP(mmap)
MMAP(mmap64)

/* Whether fd is the file PARE_FAULT_TRUNCATE names (*n, *size, path from the variable). */
static int trunc_fd(int fd, long *n, long long *size, char *path, size_t cap) {
    if (fd <= 2 || !trunc_spec(n, size, path, cap)) return 0;
    char link[64], got[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, got, sizeof got - 1);
    char *rp = realpath(path, NULL);
    int same = k > 0 && rp && (got[k] = 0, !strcmp(got, rp));
    free(rp);
    return same;
}

#define PREAD(NAME)                                                                                                    \
    ssize_t NAME(int fd, void *buf, size_t len, off_t off) {                                                           \
        static ssize_t (*real)(int, void *, size_t, off_t);                                                           \
        if (!real) real = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, #NAME);                            \
        long n;                                                                                                        \
        long long size;                                                                                                \
        char path[4096];                                                                                               \
        if (trunc_fd(fd, &n, &size, path, sizeof path) && atomic_fetch_add(&n_release, 1) + 1 == n &&                 \
            truncate(path, (off_t)size) != 0)                                                                          \
            perror("inject: truncate");                                                                                \
        return real(fd, buf, len, off);                                                                                \
    }
PREAD(pread)
PREAD(pread64)

int madvise(void *addr, size_t len, int advice) {
    static int (*real)(void *, size_t, int);
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
    int rc = real(addr, len, advice);
    long n;
    long long size;
    char path[4096];
    uintptr_t a = (uintptr_t)addr;
    if (advice == MADV_DONTNEED && a >= atomic_load(&trunc_base) && a < atomic_load(&trunc_end) &&
        trunc_spec(&n, &size, path, sizeof path) && atomic_fetch_add(&n_release, 1) + 1 == n)
        if (truncate(path, (off_t)size) != 0) perror("inject: truncate");
    return rc;
}

__attribute__((destructor)) static void report(void) {
    const char *p = getenv("PARE_FAULT_COUNT");
    if (!p) return;
    FILE *f = fopen(p, "w");
    if (!f) return;
    fprintf(f, "%ld\n", (long)atomic_load(&n_write));
    fclose(f);
}
