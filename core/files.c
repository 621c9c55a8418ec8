/* core/files.c - read-only mappings and atomic output files. */
#define _GNU_SOURCE
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
        /* A file cut short between fstat and mmap would fault at the first read of its
         * tail: look again now that the mapping exists (later changes: pare_catch_sigbus). */
        struct stat st2;
        if (fstat(fd, &st2) != 0 || st2.st_size != st.st_size) {
            munmap(p, (size_t)m->size);
            close(fd);
            free(m->path);
            free(m);
            return pare_err_set(err, PARE_EINPUT, "%s: the file changed size while pare opened it", path);
        }
    }
    m->fd = fd;
    *out = m;
    return PARE_OK;
}

void pare_map_free(pare_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, (size_t)m->size);
    close(m->fd);
    free(m->path);
    free(m);
}

pare_status pare_map_pread(const pare_map *m, void *dst, uint64_t off, size_t n, pare_err *err) {
    FAIL_IF(off > m->size || n > m->size - off, PARE_EINTERNAL, "%s: read of %zu bytes at %llu is past its end",
            m->path, n, (unsigned long long)off);
    uint8_t *p = dst;
    while (n) {
        ssize_t r = pread(m->fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return pare_err_errno(err, "%s: read failed", m->path);
        FAIL_IF(r == 0, PARE_EIO, "%s: the file became shorter while pare read it", m->path);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------------ SIGBUS */

/* Async-signal-safe helpers: only read, write, open, close and _exit below. */
static size_t sb_len(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static void sb_put(const char *s, size_t n) {
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static uint64_t sb_hex(const char **p) {
    uint64_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return v;
        v = v << 4 | (uint64_t)d;
    }
}

/* The line of /proc/self/maps "START-END PERMS OFFSET DEV INODE PATH" holding addr: copies
 * PATH into path and sets *off to addr's offset in the file; false when not found. */
static bool sb_find_mapping(uintptr_t addr, char *path, size_t cap, uint64_t *off) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[8192];
    size_t have = 0;
    bool found = false, eof = false;
    while (!found && !(eof && have == 0)) {
        if (!eof && have < sizeof buf) {
            ssize_t r = read(fd, buf + have, sizeof buf - have);
            if (r <= 0) eof = true;
            else have += (size_t)r;
        }
        char *nl = memchr(buf, '\n', have);
        if (!nl && !eof && have < sizeof buf) continue;
        size_t line_len = nl ? (size_t)(nl - buf) : have; /* a line longer than buf is cut */
        buf[line_len < sizeof buf ? line_len : sizeof buf - 1] = 0;
        const char *p = buf;
        uint64_t start = sb_hex(&p);
        if (*p == '-') p++;
        uint64_t end = sb_hex(&p);
        if (addr >= start && addr < end) {
            for (int field = 0; field < 2 && *p; field++) { /* skip PERMS, to OFFSET */
                while (*p == ' ') p++;
                while (*p && *p != ' ') p++;
            }
            while (*p == ' ') p++;
            uint64_t foff = sb_hex(&p);
            for (int field = 0; field < 2 && *p; field++) { /* skip DEV and INODE */
                while (*p == ' ') p++;
                while (*p && *p != ' ') p++;
            }
            while (*p == ' ') p++;
            size_t n = sb_len(p);
            if (n >= cap) n = cap - 1;
            memcpy(path, p, n);
            path[n] = 0;
            *off = foff + (addr - start);
            found = n > 0;
            break;
        }
        size_t used = nl ? line_len + 1 : have;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    close(fd);
    return found;
}

static void sb_u64(uint64_t v) {
    char d[24];
    size_t n = 0;
    do d[sizeof d - 1 - n++] = (char)('0' + v % 10); while ((v /= 10) && n < sizeof d);
    sb_put(d + sizeof d - n, n);
}

static void sigbus_handler(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    char path[1024];
    uint64_t off = 0;
    sb_put("pare: ", 6);
    if (sb_find_mapping((uintptr_t)si->si_addr, path, sizeof path, &off)) {
        sb_put(path, sb_len(path));
        const char *m = ": the file was cut short or could not be read while pare read it (SIGBUS at byte ";
        sb_put(m, sb_len(m));
        sb_u64(off);
        m = "); nothing was written\n";
        sb_put(m, sb_len(m));
    } else {
        const char *m = "an input file was cut short or could not be read while pare read it (SIGBUS); "
                        "nothing was written\n";
        sb_put(m, sb_len(m));
    }
    _exit(2);
}

pare_status pare_catch_sigbus(pare_err *err) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigbus_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) != 0) return pare_err_errno(err, "cannot install the SIGBUS handler");
    return PARE_OK;
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

/* Large outputs bypass the page cache. A buffered write of a model costs the kernel a copy
 * of every byte into newly allocated cache pages: on the 2-core test VM that was 2-6 s of
 * system time for 2.2 GB, more than converting the values, and it took the cores from the
 * conversion. With O_DIRECT the disk reads the bytes from our buffers.
 * The first DIRECT_FROM bytes (headers, and all of a small file) and the last partial block
 * are written through the page cache; between them the bytes are gathered into aligned
 * staging buffers written in whole blocks, so the two kinds of write never share a block.
 * IO_THREADS threads write full buffers while the caller fills the next: the disk always
 * has a write queued (two in flight wrote 2.2 GB in 1.2 s here, one at a time in 1.7-1.9 s)
 * and is not idle while bytes are copied. Where O_DIRECT is refused (tmpfs, some network
 * file systems) the same threads write the buffers through the page cache. */
#define DIRECT_ALIGN 4096u      /* offset, length and memory alignment of direct writes */
#define DIRECT_FROM (4u << 20)  /* a multiple of DIRECT_ALIGN */
#define DIRECT_STAGE (4u << 20) /* a multiple of DIRECT_ALIGN */
#define N_STAGE 4               /* buffers: IO_THREADS being written, the rest filling */
#define IO_THREADS 2

struct pare_outfile {
    char *path;     /* final name */
    char *tmp_path; /* where we write until commit; NULL for an unnamed (O_TMPFILE) file */
    bool force;     /* an existing file at path may be replaced */
    int fd;         /* flock()ed for the outfile's life: a sweep never takes it for debris */
    int dfd; /* the same file opened with O_DIRECT, or -1 */
    uint64_t pos;
    uint64_t flushed; /* buffered bytes handed to sync_file_range so far */
    bool committed;
    /* staging: stage[cur] holds file offsets [stage_off, stage_off + fill) */
    uint8_t *stage[N_STAGE];
    int cur;
    size_t fill;
    uint64_t stage_off;
    /* the I/O threads; the fields below mu are shared with them */
    int n_io;
    pthread_t io[IO_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy[N_STAGE]; /* queued or being written */
    size_t job_n[N_STAGE];
    uint64_t job_off[N_STAGE];
    int queue[N_STAGE], q_head, q_len; /* buffers waiting for a thread, in order */
    bool quit;
    bool direct_refused; /* by the file system: the threads write through the page cache */
    pare_status io_st;   /* the threads' first error, reported by the next write or commit */
    pare_err io_err;
};

static pare_status outfile_pwrite(int fd, const char *path, const void *buf, size_t n, uint64_t off, pare_err *err) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pare_err_errno(err, "%s: write failed", path);
        }
        FAIL_IF(w == 0, PARE_EIO, "%s: write failed: no progress (%zu bytes left)", path, n);
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return PARE_OK;
}

/* One job of an I/O thread: n bytes (a multiple of DIRECT_ALIGN) at off, directly if the
 * file system lets us, else through the page cache. refused: read and set under f->mu. */
static pare_status direct_write(pare_outfile *f, const uint8_t *buf, size_t n, uint64_t off, bool refused,
                                bool *refuses, pare_err *err) {
    size_t done = 0;
    while (!refused && done < n) {
        ssize_t w = pwrite(f->dfd, buf + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EINVAL) return pare_err_errno(err, "%s: write failed", f->path);
        if (w > 0) done += (size_t)w;
        if (w <= 0 || done % DIRECT_ALIGN) refused = *refuses = true; /* or stopped inside a block */
    }
    return done < n ? outfile_pwrite(f->fd, f->path, buf + done, n - done, off + done, err) : PARE_OK;
}

static void *io_run(void *arg) {
    pare_outfile *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->q_len && !f->quit) pthread_cond_wait(&f->cv, &f->mu);
        if (!f->q_len) break;
        const int b = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % N_STAGE;
        f->q_len--;
        const bool skip = f->io_st != PARE_OK, refused = f->direct_refused;
        pthread_mutex_unlock(&f->mu);
        pare_err e = {0};
        bool refuses = false;
        pare_status st = skip ? PARE_OK : direct_write(f, f->stage[b], f->job_n[b], f->job_off[b], refused, &refuses, &e);
        pthread_mutex_lock(&f->mu);
        if (refuses) f->direct_refused = true;
        if (st && !f->io_st) f->io_st = st, f->io_err = e;
        f->busy[b] = false;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Waits until buffer b is free (b < 0: every buffer); returns the threads' first error. */
static pare_status io_wait(pare_outfile *f, int b, pare_err *err) {
    if (!f->n_io) return PARE_OK;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < N_STAGE; i++)
        if (b < 0 || i == b)
            while (f->busy[i]) pthread_cond_wait(&f->cv, &f->mu);
    pare_status st = f->io_st;
    if (st) *err = f->io_err;
    pthread_mutex_unlock(&f->mu);
    return st;
}

/* Queues the first n bytes of the current staging buffer for the I/O threads and moves to
 * the next buffer; the partial block past n moves to its start. */
static pare_status stage_submit(pare_outfile *f, size_t n, pare_err *err) {
    const int b = f->cur, next = (b + 1) % N_STAGE;
    TRY(io_wait(f, next, err));
    pthread_mutex_lock(&f->mu);
    f->busy[b] = true;
    f->job_n[b] = n;
    f->job_off[b] = f->stage_off;
    f->queue[(f->q_head + f->q_len) % N_STAGE] = b;
    f->q_len++;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    f->cur = next;
    f->fill -= n;
    if (f->fill) memcpy(f->stage[next], f->stage[b] + n, f->fill);
    f->stage_off += n;
    return PARE_OK;
}

static void io_stop(pare_outfile *f) {
    if (!f->n_io) return;
    pthread_mutex_lock(&f->mu);
    f->quit = true; /* the threads finish the queue first */
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < f->n_io; i++) pthread_join(f->io[i], NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    f->n_io = 0;
}

/* Sets up the staging buffers and the I/O threads; false (and buffered writes) if it cannot. */
static bool stage_start(pare_outfile *f) {
    bool ok = true;
    for (int i = 0; i < N_STAGE; i++)
        if (posix_memalign((void **)&f->stage[i], DIRECT_ALIGN, DIRECT_STAGE) != 0) f->stage[i] = NULL, ok = false;
    if (ok) {
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        while (f->n_io < IO_THREADS && pthread_create(&f->io[f->n_io], NULL, io_run, f) == 0) f->n_io++;
        if (f->n_io) {
            f->stage_off = f->pos; /* == DIRECT_FROM, where the buffered part stops */
            return true;
        }
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
    }
    for (int i = 0; i < N_STAGE; i++) {
        free(f->stage[i]);
        f->stage[i] = NULL;
    }
    close(f->dfd);
    f->dfd = -1;
    return false;
}

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

/* The name of a temporary beside `path`: "DIR/.BASE.pare-" then `suffix` (BASE without
 * trailing '/', so a folder "out/" is named after out), and in *dir (when not NULL) the
 * folder, both malloc'ed; NULL when out of memory. Every temporary pare makes is named so,
 * which is what pare_sweep_stale looks for. */
static char *tmp_name(const char *path, const char *suffix, char **dir) {
    char *dcopy = strdup(path), *bcopy = strdup(path), *name = NULL;
    if (dcopy && bcopy) {
        size_t bl = strlen(bcopy);
        while (bl > 1 && bcopy[bl - 1] == '/') bcopy[--bl] = 0;
        const char *d = dirname(dcopy), *b = basename(bcopy);
        const size_t n = strlen(d) + strlen(b) + strlen(suffix) + 16;
        if ((name = malloc(n))) snprintf(name, n, "%s/.%s.pare-%s", d, b, suffix);
        if (name && dir && !(*dir = strdup(d))) free(name), name = NULL;
    }
    free(dcopy);
    free(bcopy);
    return name;
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
    f->fd = f->dfd = -1;
    f->path = strdup(path);
    /* The temporary lives in the destination folder so that rename() is atomic. */
    char *dir = NULL, *name = f->path ? tmp_name(path, "XXXXXX", &dir) : NULL;
    if (!name) {
        pare_outfile_free(f);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    f->force = force;
    pare_sweep_stale(dir);
    /* An unnamed file first (O_TMPFILE): if pare is killed, the kernel frees it and nothing
     * is left in the folder. It gets a name only when complete (linkat in commit), through
     * /proc/self/fd, which must therefore be there. Elsewhere a named ".BASE.pare-XXXXXX",
     * locked while we live, so that the next run in this folder removes it if we are killed. */
    if (access("/proc/self/fd", X_OK) == 0) f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    free(dir);
    if (f->fd < 0) f->tmp_path = name;
    else free(name);
    if (f->fd < 0) f->fd = mkostemp(f->tmp_path, O_CLOEXEC); /* O_EXCL: never follows a planted link */
    if (f->fd < 0) {
        pare_err_errno(err, "%s: cannot create a temporary file in its folder", path);
        free(f->tmp_path);
        f->tmp_path = NULL;
        pare_outfile_free(f);
        return PARE_EIO;
    }
    flock(f->fd, LOCK_EX | LOCK_NB); /* new file: nobody else can hold it */
    fchmod(f->fd, 0644);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    f->dfd = open(f->tmp_path ? f->tmp_path : proc, O_WRONLY | O_DIRECT | O_CLOEXEC); /* -1: buffered only */
    *out = f;
    return PARE_OK;
}

/* Bytes after which buffered data is handed to the disk in the background, so that the
 * final fsync is short and dirty pages do not pile up while a large model is written. */
#define OUTFILE_FLUSH_EVERY (64u << 20)

pare_status pare_outfile_write(pare_outfile *f, const void *buf, size_t n, pare_err *err) {
    const uint8_t *p = buf;
    while (n) {
        if (f->dfd >= 0 && !f->n_io && f->pos >= DIRECT_FROM) stage_start(f);
        if (f->n_io) {
            size_t k = DIRECT_STAGE - f->fill < n ? DIRECT_STAGE - f->fill : n;
            memcpy(f->stage[f->cur] + f->fill, p, k);
            f->fill += k;
            f->pos += k;
            p += k;
            n -= k;
            if (f->fill == DIRECT_STAGE) TRY(stage_submit(f, DIRECT_STAGE, err));
            continue;
        }
        size_t k = n;
        if (f->dfd >= 0 && DIRECT_FROM - f->pos < k) k = (size_t)(DIRECT_FROM - f->pos);
        TRY(outfile_pwrite(f->fd, f->path, p, k, f->pos, err));
        f->pos += k;
        p += k;
        n -= k;
        if (f->pos - f->flushed >= OUTFILE_FLUSH_EVERY) {
            sync_file_range(f->fd, (off_t)f->flushed, (off_t)(f->pos - f->flushed), SYNC_FILE_RANGE_WRITE);
            f->flushed = f->pos;
        }
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
const char *pare_outfile_path(const pare_outfile *f) { return f->path; }

/* Gives the complete unnamed file a name. Straight at its destination when nothing is there
 * (*placed; linkat never replaces, so a file that appeared meanwhile is not lost); otherwise,
 * with --force, a fresh ".BASE.pare-XXXXXX" (f->tmp_path) that commit renames over the old
 * file. */
static pare_status link_tmpfile(pare_outfile *f, bool *placed, pare_err *err) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    *placed = false;
    if (linkat(AT_FDCWD, proc, AT_FDCWD, f->path, AT_SYMLINK_FOLLOW) == 0) {
        *placed = true;
        return PARE_OK;
    }
    if (errno != EEXIST) return pare_err_errno(err, "%s: cannot link the new file into place", f->path);
    FAIL_IF(!f->force, PARE_EUSAGE, "%s: appeared while pare was writing it (use --force to replace it)", f->path);
    char *name = tmp_name(f->path, "XXXXXX", NULL);
    FAIL_IF(!name, PARE_ENOMEM, "out of memory");
    char *x = name + strlen(name) - 6; /* the six characters to fill */
    for (unsigned i = 0;; i++) {
        /* a name nobody uses: pid, time and a counter, tried until linkat finds it free */
        snprintf(x, 7, "%06x", (unsigned)(getpid() * 2654435761u ^ (unsigned)time(NULL) ^ i * 40503u) & 0xFFFFFFu);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) break;
        if (errno != EEXIST || i > 1000) {
            free(name);
            return pare_err_errno(err, "%s: cannot name the new file in its folder", f->path);
        }
    }
    f->tmp_path = name;
    return PARE_OK;
}

/* Whether `name` is one of pare's temporaries: ".BASE.pare-..." (files, and the folders of
 * folder outputs and of shrink). */
static bool is_pare_tmp_name(const char *name) { return name[0] == '.' && strstr(name, ".pare-") != NULL; }

void pare_sweep_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_pare_tmp_name(e->d_name)) continue;
        char *p = pare_path_join(dir, e->d_name);
        if (!p) break;
        /* O_NOFOLLOW | O_NONBLOCK: a planted symlink or FIFO is never followed or waited on */
        int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == geteuid() && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
            flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* nobody holds it: its pare was killed */
            if (S_ISDIR(st.st_mode)) pare_remove_folder(p);
            else unlink(p);
        }
        if (fd >= 0) close(fd);
        free(p);
    }
    closedir(d);
}

/* ---- temporary folders */

struct pare_tmpdir {
    char *path;
    int fd; /* the folder, flock()ed while it lives */
};

pare_status pare_tmpdir_new(const char *beside, const char *tag, pare_tmpdir **out, pare_err *err) {
    *out = NULL;
    char suffix[80], *dir = NULL;
    snprintf(suffix, sizeof suffix, "%.64s%sXXXXXX", tag, *tag ? "-" : "");
    pare_tmpdir *t = calloc(1, sizeof *t);
    char *path = t ? tmp_name(beside, suffix, &dir) : NULL;
    if (!path) {
        free(t);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    pare_sweep_stale(dir);
    free(dir);
    t->path = path;
    t->fd = -1;
    if (!mkdtemp(path)) {
        pare_err_errno(err, "%s: cannot create a working folder beside it", beside);
        pare_tmpdir_free(t);
        return PARE_EIO;
    }
    t->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->fd >= 0) flock(t->fd, LOCK_EX | LOCK_NB);
    *out = t;
    return PARE_OK;
}

const char *pare_tmpdir_path(const pare_tmpdir *t) { return t->path; }

void pare_tmpdir_free(pare_tmpdir *t) {
    if (!t) return;
    if (t->path) pare_remove_folder(t->path); /* gone already when it was renamed into place */
    if (t->fd >= 0) close(t->fd);
    free(t->path);
    free(t);
}

pare_status pare_outfile_commit(pare_outfile *f, pare_err *err) {
    if (f->n_io) {
        /* whole blocks directly, the last partial block through the page cache */
        size_t whole = f->fill / DIRECT_ALIGN * DIRECT_ALIGN;
        if (whole) TRY(stage_submit(f, whole, err));
        TRY(io_wait(f, -1, err));
        if (f->fill) TRY(outfile_pwrite(f->fd, f->path, f->stage[f->cur], f->fill, f->stage_off, err));
        f->stage_off += f->fill;
        f->fill = 0;
        io_stop(f);
    }
    if (fsync(f->fd) != 0) return pare_err_errno(err, "%s: fsync failed", f->path);
    bool placed = false;
    if (!f->tmp_path) TRY(link_tmpfile(f, &placed, err));
    /* The descriptor (and its lock) is kept until the rename: a sweep by another pare in
     * this folder cannot take the named temporary for debris in between. */
    if (!placed && rename(f->tmp_path, f->path) != 0)
        return pare_err_errno(err, "%s: cannot rename into place", f->path);
    f->committed = true;
    pare_sync_dir_of(f->path); /* the rename itself durable */
    const int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) return pare_err_errno(err, "%s: close failed", f->path);
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
    io_stop(f); /* before the buffers and descriptors it uses go */
    if (f->fd >= 0) close(f->fd);
    if (f->dfd >= 0) close(f->dfd);
    for (int i = 0; i < N_STAGE; i++) free(f->stage[i]);
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
