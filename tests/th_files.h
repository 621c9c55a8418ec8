/* tests/th_files.h - files and byte buffers for the tests: writing and reading whole files,
 * removing folders, building files in memory. No harness state: the module tests (through
 * tests/th.h) and the fuzz tools (seeds, replays) can both include it. */
#ifndef PARE_TH_FILES_H
#define PARE_TH_FILES_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Removes a file or a folder with everything in it (links are removed, not followed). */
static inline void th_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            th_rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Writes n bytes to dir/name (dir/name as one path when dir is NULL), 0 on success. */
static inline int th_write_in(const char *dir, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
    return th_write_file(path, p, n);
}
static inline int th_write_text(const char *dir, const char *name, const char *text) {
    return th_write_in(dir, name, text, strlen(text));
}

/* A growing byte buffer, for files built in memory (free p when done). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} th_buf;

static inline void th_buf_put(th_buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
/* Little-endian integers. */
static inline void th_buf_u32(th_buf *b, uint32_t v) {
    const uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    th_buf_put(b, x, 4);
}
static inline void th_buf_u64(th_buf *b, uint64_t v) {
    th_buf_u32(b, (uint32_t)v);
    th_buf_u32(b, (uint32_t)(v >> 32));
}

#endif
