/* core/files.c - read-only mappings and atomic output files. */
#define _GNU_SOURCE
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

pare_status pare_map_open(const char *path, pare_map **out, pare_err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pare_err_errno(err, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pare_err_errno(err, "%s: cannot stat", path);
        close(fd);
        return PARE_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pare_err_set(err, PARE_EINPUT, "%s: not a regular file", path);
    }
    pare_map *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        close(fd);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    m->size = (uint64_t)st.st_size;
    if (m->size) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            pare_err_errno(err, "%s: cannot map %llu bytes", path, (unsigned long long)m->size);
            close(fd);
            free(m->path);
            free(m);
            return PARE_EIO;
        }
        m->data = p;
    }
    close(fd);
    *out = m;
    return PARE_OK;
}

void pare_map_free(pare_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, (size_t)m->size);
    free(m->path);
    free(m);
}

void pare_map_release(const pare_map *m, uint64_t off, uint64_t len) {
    if (!m || !m->data || off >= m->size) return;
    if (len > m->size - off) len = m->size - off;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    /* Only whole pages inside the range: a neighbour tensor may share the edge pages. */
    uint64_t start = (off + page - 1) / page * page, end = (off + len) / page * page;
    if (end > start) madvise((void *)(m->data + start), (size_t)(end - start), MADV_DONTNEED);
}

pare_status pare_read_file(const char *path, size_t max_bytes, char **out, size_t *len, pare_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pare_err_errno(err, "%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pare_err_set(err, PARE_EINPUT, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return pare_err_set(err, PARE_EINPUT, "%s: %lld bytes is more than the %zu this file may have", path,
                            (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return pare_err_set(err, PARE_EIO, "%s: short read", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return PARE_OK;
}

struct pare_outfile {
    char *path;     /* final name */
    char *tmp_path; /* where we write until commit */
    int fd;
    uint64_t pos;
    uint64_t flushed; /* bytes handed to sync_file_range so far */
    bool committed;
};

bool pare_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool pare_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool pare_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *pare_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

bool pare_str_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

pare_status pare_outfile_open(const char *path, bool force, const char *const *inputs, size_t n_inputs,
                              pare_outfile **out, pare_err *err) {
    *out = NULL;
    for (size_t i = 0; i < n_inputs; i++)
        FAIL_IF(inputs[i] && pare_same_file(path, inputs[i]), PARE_EUSAGE,
                "%s: refusing to overwrite an input file", path);
    struct stat st;
    if (stat(path, &st) == 0) {
        FAIL_IF(S_ISDIR(st.st_mode), PARE_EUSAGE, "%s: is a directory", path);
        FAIL_IF(!force, PARE_EUSAGE, "%s: already exists (use --force to replace it)", path);
    }
    pare_outfile *f = calloc(1, sizeof *f);
    FAIL_IF(!f, PARE_ENOMEM, "out of memory");
    f->fd = -1;
    f->path = strdup(path);
    /* The temporary lives in the destination folder so that rename() is atomic. */
    char *dcopy = strdup(path), *bcopy = strdup(path);
    if (!f->path || !dcopy || !bcopy) {
        free(dcopy);
        free(bcopy);
        pare_outfile_free(f);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    const char *dir = dirname(dcopy), *base = basename(bcopy);
    size_t n = strlen(dir) + strlen(base) + 32;
    f->tmp_path = malloc(n);
    if (f->tmp_path) snprintf(f->tmp_path, n, "%s/.%s.pare-XXXXXX", dir, base);
    free(dcopy);
    free(bcopy);
    if (!f->tmp_path) {
        pare_outfile_free(f);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
    if (f->fd < 0) {
        pare_err_errno(err, "%s: cannot create a temporary file in its folder", path);
        free(f->tmp_path);
        f->tmp_path = NULL;
        pare_outfile_free(f);
        return PARE_EIO;
    }
    fchmod(f->fd, 0644);
    *out = f;
    return PARE_OK;
}

pare_status pare_outfile_pwrite(pare_outfile *f, const void *buf, size_t n, uint64_t off, pare_err *err) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(f->fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pare_err_errno(err, "%s: write failed", f->path);
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return PARE_OK;
}

/* Bytes after which written data is handed to the disk in the background, so that the
 * final fsync is short and dirty pages do not pile up while a large model is written. */
#define OUTFILE_FLUSH_EVERY (64u << 20)

pare_status pare_outfile_write(pare_outfile *f, const void *buf, size_t n, pare_err *err) {
    TRY(pare_outfile_pwrite(f, buf, n, f->pos, err));
    f->pos += n;
    if (f->pos - f->flushed >= OUTFILE_FLUSH_EVERY) {
        sync_file_range(f->fd, (off_t)f->flushed, (off_t)(f->pos - f->flushed), SYNC_FILE_RANGE_WRITE);
        f->flushed = f->pos;
    }
    return PARE_OK;
}

pare_status pare_outfile_pad_to(pare_outfile *f, uint64_t off, pare_err *err) {
    static const uint8_t zeros[256];
    while (f->pos < off) {
        uint64_t k = off - f->pos;
        TRY(pare_outfile_write(f, zeros, k > sizeof zeros ? sizeof zeros : (size_t)k, err));
    }
    return PARE_OK;
}

uint64_t pare_outfile_tell(const pare_outfile *f) { return f->pos; }
int pare_outfile_fd(const pare_outfile *f) { return f->fd; }
const char *pare_outfile_path(const pare_outfile *f) { return f->path; }

pare_status pare_outfile_commit(pare_outfile *f, pare_err *err) {
    if (fsync(f->fd) != 0) return pare_err_errno(err, "%s: fsync failed", f->path);
    if (close(f->fd) != 0) {
        f->fd = -1;
        return pare_err_errno(err, "%s: close failed", f->path);
    }
    f->fd = -1;
    if (rename(f->tmp_path, f->path) != 0) return pare_err_errno(err, "%s: cannot rename into place", f->path);
    f->committed = true;
    pare_sync_dir_of(f->path); /* the rename itself durable */
    return PARE_OK;
}

void pare_sync_dir_of(const char *path) {
    char *dcopy = strdup(path);
    if (!dcopy) return;
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dcopy);
}

void pare_remove_folder(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = pare_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

void pare_outfile_free(pare_outfile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (!f->committed && f->tmp_path) unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    free(f);
}

double pare_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
