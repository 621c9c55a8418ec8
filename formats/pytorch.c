/* formats/pytorch.c - torch.save zip checkpoints: zip directory, restricted unpickler, tensors.
 * The format is described in pytorch.h. */
#include "formats/pytorch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* ======================================================================== zip directory
 *
 * End of central directory (EOCD), at most 65535 + 22 bytes before the end:
 *   u32 0x06054b50, u16 disk, u16 cd disk, u16 entries here, u16 entries, u32 cd size,
 *   u32 cd offset, u16 comment length.  0xffff / 0xffffffff mean "see the zip64 record":
 * zip64 locator (20 bytes just before the EOCD): u32 0x07064b50, u32 disk, u64 offset of
 *   the zip64 EOCD, u32 disks;  zip64 EOCD: u32 0x06064b50, u64 size, u16 x2, u32 x2,
 *   u64 entries here, u64 entries, u64 cd size, u64 cd offset.
 * Central directory entry (46 bytes + name + extra + comment): u32 0x02014b50, u16 made by,
 *   u16 needed, u16 flags, u16 method, u16 time, u16 date, u32 crc, u32 comp size,
 *   u32 size, u16 name len, u16 extra len, u16 comment len, u16 disk, u16 int attr,
 *   u32 ext attr, u32 local header offset. Zip64 extra field 0x0001 holds u64 size,
 *   comp size, offset - each only when the 32-bit field is 0xffffffff.
 * Local header (30 bytes + name + extra, then the data): u32 0x04034b50, u16 needed,
 *   u16 flags, u16 method, u16 time, u16 date, u32 crc, u32 comp size, u32 size,
 *   u16 name len, u16 extra len. */

#define PT_ZIP_STORED 0
#define PT_ZIP_DEFLATE 8
/* Deflate cannot expand data more than ~1032:1; a larger claimed size is a lie. */
#define PT_MAX_DEFLATE_RATIO 1032u

typedef struct {
    char *name;
    uint16_t method, flags;
    uint64_t comp_size, size, local_off, data_off;
} pt_zentry;

typedef struct {
    const char *name;
    size_t idx;
} pt_zname;

typedef struct {
    const char *path;
    const uint8_t *d;
    uint64_t size;
    pt_zentry *e;
    size_t n;
    pt_zname *by_name; /* entries sorted by name */
    zip_t *za;       /* libzip's view of the same bytes */
} pt_zip;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void pt_zip_clear(pt_zip *z) {
    for (size_t i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->by_name);
    if (z->za) zip_discard(z->za);
    memset(z, 0, sizeof *z);
}

/* Finds the central directory: *cd_off, *cd_size, *n_entries and *cd_end (where the
 * directory must end: the zip64 EOCD or the EOCD). */
static pare_status pt_zip_find_cd(const pt_zip *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *n_entries,
                                  uint64_t *cd_end, pare_err *err) {
    const uint8_t *d = z->d;
    uint64_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0, eocd = UINT64_MAX;
    for (uint64_t p = z->size - 22 + 1; p-- > lo;)
        if (rd32(d + p) == 0x06054b50 && p + 22 + rd16(d + p + 20) <= z->size) {
            eocd = p;
            break;
        }
    FAIL_IF(eocd == UINT64_MAX, PARE_EINPUT, "%s: no zip end-of-directory record (truncated or not a zip file)",
            z->path);
    const uint8_t *e = d + eocd;
    uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    *cd_end = eocd;
    if (n == 0xffff || *cd_size == 0xffffffff || *cd_off == 0xffffffff) {
        FAIL_IF(eocd < 20 || rd32(d + eocd - 20) != 0x07064b50, PARE_EINPUT, "%s: zip64 locator missing", z->path);
        uint64_t z64 = rd64(d + eocd - 20 + 8);
        FAIL_IF(z64 > eocd - 20 || eocd - 20 - z64 < 56 || rd32(d + z64) != 0x06064b50, PARE_EINPUT,
                "%s: zip64 end-of-directory record at %llu is invalid", z->path, (unsigned long long)z64);
        disk = rd32(d + z64 + 16);
        cd_disk = rd32(d + z64 + 20);
        n = rd64(d + z64 + 32);
        *cd_size = rd64(d + z64 + 40);
        *cd_off = rd64(d + z64 + 48);
        *cd_end = z64;
    }
    FAIL_IF(disk != 0 || cd_disk != 0, PARE_EUNSUPPORTED, "%s: multi-part zip archives are not supported", z->path);
    FAIL_IF(*cd_off > *cd_end || *cd_size > *cd_end - *cd_off, PARE_EINPUT,
            "%s: zip central directory [%llu, +%llu) runs past its end record at %llu", z->path,
            (unsigned long long)*cd_off, (unsigned long long)*cd_size, (unsigned long long)*cd_end);
    FAIL_IF(n > *cd_size / 46, PARE_EINPUT, "%s: zip claims %llu entries in a %llu-byte directory", z->path,
            (unsigned long long)n, (unsigned long long)*cd_size);
    *n_entries = n;
    return PARE_OK;
}

/* Applies the zip64 extra field (id 1) to the 32-bit fields that are 0xffffffff. */
static pare_status pt_zip_extra64(const pt_zip *z, const uint8_t *x, uint32_t len, pt_zentry *e, bool need_size,
                                  bool need_comp, bool need_off, pare_err *err) {
    uint32_t k = 0;
    while (k + 4 <= len) {
        uint16_t id = rd16(x + k), sz = rd16(x + k + 2);
        FAIL_IF(k + 4 + sz > len, PARE_EINPUT, "%s: entry '%s': extra field runs past its end", z->path, e->name);
        if (id == 1) {
            const uint8_t *p = x + k + 4, *end = p + sz;
            if (need_size) e->size = p + 8 <= end ? rd64(p) : UINT64_MAX, p += 8;
            if (need_comp) e->comp_size = p + 8 <= end ? rd64(p) : UINT64_MAX, p += 8;
            if (need_off) e->local_off = p + 8 <= end ? rd64(p) : UINT64_MAX, p += 8;
            FAIL_IF(p > end, PARE_EINPUT, "%s: entry '%s': zip64 extra field too short", z->path, e->name);
            return PARE_OK;
        }
        k += 4u + sz;
    }
    FAIL_IF(need_size || need_comp || need_off, PARE_EINPUT, "%s: entry '%s': zip64 extra field missing", z->path,
            e->name);
    return PARE_OK;
}

/* Checks one entry's local header and computes where its data starts. */
static pare_status pt_zip_local(const pt_zip *z, pt_zentry *e, uint64_t cd_off, pare_err *err) {
    FAIL_IF(e->local_off > cd_off || cd_off - e->local_off < 30 || rd32(z->d + e->local_off) != 0x04034b50,
            PARE_EINPUT, "%s: entry '%s': no local header at offset %llu", z->path, e->name,
            (unsigned long long)e->local_off);
    const uint8_t *l = z->d + e->local_off;
    uint64_t nl = rd16(l + 26), xl = rd16(l + 28);
    e->data_off = e->local_off + 30 + nl + xl;
    FAIL_IF(nl != strlen(e->name) || e->local_off + 30 + nl > cd_off || memcmp(l + 30, e->name, nl) != 0,
            PARE_EINPUT, "%s: entry '%s': local header names a different file", z->path, e->name);
    FAIL_IF(rd16(l + 8) != e->method, PARE_EINPUT, "%s: entry '%s': local and central headers disagree on the method",
            z->path, e->name);
    uint32_t lc = rd32(l + 18), ls = rd32(l + 22);
    /* With a data descriptor (flag 8) the local sizes may be 0; otherwise they must agree. */
    FAIL_IF(!(e->flags & 8) && lc != 0xffffffff && (lc != e->comp_size || ls != e->size), PARE_EINPUT,
            "%s: entry '%s': local header sizes (%u, %u) disagree with the directory (%llu, %llu)", z->path, e->name,
            lc, ls, (unsigned long long)e->comp_size, (unsigned long long)e->size);
    FAIL_IF(e->data_off > cd_off || e->comp_size > cd_off - e->data_off, PARE_EINPUT,
            "%s: entry '%s': data [%llu, +%llu) runs past the start of the zip directory at %llu", z->path, e->name,
            (unsigned long long)e->data_off, (unsigned long long)e->comp_size, (unsigned long long)cd_off);
    FAIL_IF(e->method == PT_ZIP_STORED && e->comp_size != e->size, PARE_EINPUT,
            "%s: entry '%s': stored entry has size %llu but %llu bytes of data", z->path, e->name,
            (unsigned long long)e->size, (unsigned long long)e->comp_size);
    FAIL_IF(e->method != PT_ZIP_STORED && e->method != PT_ZIP_DEFLATE, PARE_EUNSUPPORTED,
            "%s: entry '%s': zip compression method %u is not supported", z->path, e->name, e->method);
    FAIL_IF(e->method == PT_ZIP_DEFLATE && e->size / PT_MAX_DEFLATE_RATIO > e->comp_size + 1, PARE_EINPUT,
            "%s: entry '%s': %llu bytes cannot inflate to the claimed %llu", z->path, e->name,
            (unsigned long long)e->comp_size, (unsigned long long)e->size);
    FAIL_IF(e->flags & 1, PARE_EUNSUPPORTED, "%s: entry '%s' is encrypted", z->path, e->name);
    return PARE_OK;
}

/* Entry names are relative paths of plain parts: a scanner that extracts the archive
 * and pare must see the same files (CVE-2025-1944/1945 hid pickles from scanners through
 * names and headers that differ between zip readers). */
static bool pt_zip_name_ok(const char *s) {
    if (!*s || *s == '/' || strchr(s, '\\')) return false;
    for (const char *p = s;;) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return false;
        if (!q) return true;
        p = q + 1;
    }
}

static pare_status pt_zip_entry(pt_zip *z, uint64_t *pos, uint64_t cd_end, uint64_t cd_off, pt_zentry *e,
                                pare_err *err) {
    const uint8_t *c = z->d + *pos;
    FAIL_IF(cd_end - *pos < 46 || rd32(c) != 0x02014b50, PARE_EINPUT, "%s: zip directory entry at %llu is invalid",
            z->path, (unsigned long long)*pos);
    uint32_t nl = rd16(c + 28), xl = rd16(c + 30), cl = rd16(c + 32);
    FAIL_IF(46ull + nl + xl + cl > cd_end - *pos, PARE_EINPUT, "%s: zip directory entry at %llu runs past the directory",
            z->path, (unsigned long long)*pos);
    e->name = malloc(nl + 1u);
    FAIL_IF(!e->name, PARE_ENOMEM, "out of memory");
    memcpy(e->name, c + 46, nl);
    e->name[nl] = 0;
    FAIL_IF(memchr(c + 46, 0, nl) != NULL, PARE_EINPUT, "%s: zip entry name contains a NUL byte", z->path);
    FAIL_IF(!pt_zip_name_ok(e->name), PARE_EINPUT,
            "%s: zip entry name '%.200s' is absolute, has a backslash or an empty, '.' or '..' part (path traversal)",
            z->path, e->name);
    e->flags = rd16(c + 8);
    e->method = rd16(c + 10);
    e->comp_size = rd32(c + 20);
    e->size = rd32(c + 24);
    e->local_off = rd32(c + 42);
    TRY(pt_zip_extra64(z, c + 46 + nl, xl, e, e->size == 0xffffffff, e->comp_size == 0xffffffff,
                       e->local_off == 0xffffffff, err));
    *pos += 46ull + nl + xl + cl;
    return pt_zip_local(z, e, cd_off, err);
}

static int pt_cmp_zname(const void *a, const void *b) {
    return strcmp(((const pt_zname *)a)->name, ((const pt_zname *)b)->name);
}

/* Index of the entry with this name, or -1. */
static long pt_zip_find(const pt_zip *z, const char *name) {
    pt_zname key = {name, 0};
    const pt_zname *f = bsearch(&key, z->by_name, z->n, sizeof key, pt_cmp_zname);
    return f ? (long)f->idx : -1;
}

/* libzip must see the same entries as pare's own reading of the directory. */
static pare_status pt_zip_open_libzip(pt_zip *z, pare_err *err) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(z->d, z->size, 0, &ze);
    if (src) {
        z->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
        if (!z->za) zip_source_free(src);
    }
    if (!z->za) {
        pare_err_set(err, PARE_EINPUT, "%s: not a valid zip archive: %s", z->path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return PARE_EINPUT;
    }
    zip_error_fini(&ze);
    FAIL_IF(zip_get_num_entries(z->za, 0) != (zip_int64_t)z->n, PARE_EINPUT,
            "%s: zip directory holds %zu entries but libzip counts %lld", z->path, z->n,
            (long long)zip_get_num_entries(z->za, 0));
    for (size_t i = 0; i < z->n; i++) {
        zip_stat_t st;
        zip_stat_init(&st);
        FAIL_IF(zip_stat_index(z->za, i, ZIP_FL_ENC_RAW, &st) != 0, PARE_EINPUT, "%s: entry %zu: %s", z->path, i,
                zip_strerror(z->za));
        const pt_zentry *e = &z->e[i];
        FAIL_IF(!(st.valid & ZIP_STAT_NAME) || strcmp(st.name, e->name) != 0 || st.size != e->size ||
                    st.comp_size != e->comp_size || st.comp_method != e->method,
                PARE_EINPUT, "%s: entry '%s': zip directory is inconsistent", z->path, e->name);
    }
    return PARE_OK;
}

static int pt_cmp_local_off(const void *a, const void *b) {
    const pt_zentry *x = *(const pt_zentry *const *)a, *y = *(const pt_zentry *const *)b;
    return x->local_off < y->local_off ? -1 : x->local_off > y->local_off;
}

/* No two entries share bytes: overlapping entries are how zip bombs reach ratios beyond
 * deflate's, and how two readers can be shown two different files at one offset. */
static pare_status pt_zip_no_overlap(const pt_zip *z, pare_err *err) {
    if (z->n < 2) return PARE_OK;
    const pt_zentry **by_off = malloc(z->n * sizeof *by_off);
    FAIL_IF(!by_off, PARE_ENOMEM, "%s: out of memory", z->path);
    for (size_t i = 0; i < z->n; i++) by_off[i] = &z->e[i];
    qsort(by_off, z->n, sizeof *by_off, pt_cmp_local_off);
    const pt_zentry *bad = NULL, *prev = NULL;
    for (size_t i = 1; i < z->n && !bad; i++)
        if (by_off[i - 1]->data_off + by_off[i - 1]->comp_size > by_off[i]->local_off) prev = by_off[i - 1], bad = by_off[i];
    free(by_off);
    FAIL_IF(bad, PARE_EINPUT, "%s: zip entries '%.200s' and '%.200s' overlap (at offset %llu)", z->path, prev->name,
            bad->name, (unsigned long long)bad->local_off);
    return PARE_OK;
}

static pare_status pt_zip_open(pt_zip *z, const pare_map *map, pare_err *err) {
    memset(z, 0, sizeof *z);
    z->path = map->path;
    z->d = map->data;
    z->size = map->size;
    FAIL_IF(z->size < 22, PARE_EINPUT, "%s: file of %llu bytes is too short for a zip archive", z->path,
            (unsigned long long)z->size);
    uint64_t cd_off = 0, cd_size = 0, n = 0, cd_end = 0;
    TRY(pt_zip_find_cd(z, &cd_off, &cd_size, &n, &cd_end, err));
    z->e = calloc(n ? (size_t)n : 1, sizeof *z->e);
    z->by_name = calloc(n ? (size_t)n : 1, sizeof *z->by_name);
    FAIL_IF(!z->e || !z->by_name, PARE_ENOMEM, "%s: out of memory", z->path);
    uint64_t pos = cd_off;
    for (uint64_t i = 0; i < n; i++) {
        z->n++; /* counted first so that pt_zip_clear frees a half-read name */
        TRY(pt_zip_entry(z, &pos, cd_off + cd_size, cd_off, &z->e[i], err));
        z->by_name[i] = (pt_zname){z->e[i].name, (size_t)i};
    }
    qsort(z->by_name, z->n, sizeof *z->by_name, pt_cmp_zname);
    for (size_t i = 1; i < z->n; i++)
        FAIL_IF(strcmp(z->by_name[i - 1].name, z->by_name[i].name) == 0, PARE_EINPUT,
                "%s: zip entry '%s' appears twice", z->path, z->by_name[i].name);
    TRY(pt_zip_no_overlap(z, err));
    return pt_zip_open_libzip(z, err);
}

/* Reads a whole entry through libzip (inflating and checking the CRC) into a new buffer. */
static pare_status pt_zip_read(zip_t *za, const char *path, const pt_zentry *e, size_t idx, uint8_t **out,
                               pare_err *err) {
    *out = NULL;
    FAIL_IF(e->size > SIZE_MAX - 1, PARE_ENOMEM, "%s: entry '%s' is too large", path, e->name);
    uint8_t *buf = malloc(e->size ? (size_t)e->size : 1);
    FAIL_IF(!buf, PARE_ENOMEM, "%s: entry '%s': out of memory for %llu bytes", path, e->name,
            (unsigned long long)e->size);
    zip_file_t *f = zip_fopen_index(za, idx, 0);
    if (!f) {
        free(buf);
        return pare_err_set(err, PARE_EINPUT, "%s: entry '%s': %s", path, e->name, zip_strerror(za));
    }
    uint64_t got = 0;
    zip_int64_t k = 1;
    while (got < e->size && (k = zip_fread(f, buf + got, e->size - got)) > 0) got += (uint64_t)k;
    uint8_t extra;
    if (k >= 0 && got == e->size) k = zip_fread(f, &extra, 1); /* reaching the end checks the CRC */
    pare_status st = PARE_OK;
    if (k != 0 || got != e->size)
        st = pare_err_set(err, PARE_EINPUT, "%s: entry '%s': read %llu of %llu bytes: %s", path, e->name,
                          (unsigned long long)got, (unsigned long long)e->size,
                          k < 0 ? zip_file_strerror(f) : "the data does not match the declared size");
    zip_fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    return PARE_OK;
}

/* ======================================================================== restricted unpickler
 *
 * A pickle is a program for a stack machine: opcodes push values, build containers from
 * the items above a MARK, store and fetch values in a memo, and call "globals" (REDUCE).
 * pare interprets only what torch.save writes for a dict of tensors, calls nothing, and
 * represents the few callables it allows by an id. All values live in one arena freed at
 * the end, so shared references (memo, tied tensors) need no counting. */

#define PT_MAX_NDIM 8

typedef enum { PV_NONE, PV_BOOL, PV_INT, PV_BIGINT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT,
               PV_GLOBAL, PV_STORAGE, PV_TENSOR } pv_kind;

typedef enum { G_ODICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE } pt_global_id;

static const struct {
    const char *module, *name;
    pt_global_id id;
    pare_type type; /* G_STORAGE */
} pt_globals[] = {
    {"collections", "OrderedDict", G_ODICT, PARE_TYPE_INVALID},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, PARE_TYPE_INVALID},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, PARE_TYPE_INVALID},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, PARE_TYPE_INVALID},
    {"torch", "FloatStorage", G_STORAGE, PARE_TYPE_F32},
    {"torch", "HalfStorage", G_STORAGE, PARE_TYPE_F16},
    {"torch", "BFloat16Storage", G_STORAGE, PARE_TYPE_BF16},
    {"torch", "DoubleStorage", G_STORAGE, PARE_TYPE_F64},
    {"torch", "LongStorage", G_STORAGE, PARE_TYPE_I64},
    {"torch", "IntStorage", G_STORAGE, PARE_TYPE_I32},
    {"torch", "ShortStorage", G_STORAGE, PARE_TYPE_I16},
    {"torch", "CharStorage", G_STORAGE, PARE_TYPE_I8},
    {"torch", "ByteStorage", G_STORAGE, PARE_TYPE_U8},
    {"torch", "BoolStorage", G_STORAGE, PARE_TYPE_BOOL},
};

typedef struct pv {
    pv_kind kind;
    int64_t i;        /* INT, BOOL; STORAGE: element count */
    double f;         /* FLOAT */
    const char *s;    /* STR (NUL-terminated, len bytes); STORAGE: key */
    size_t len;
    struct pv **items; /* TUPLE, LIST; DICT: key, value, key, value, ... */
    size_t n, cap;
    int global;        /* GLOBAL: index into pt_globals */
    bool odict;        /* DICT: made by collections.OrderedDict() */
    pare_type type;    /* STORAGE */
    struct pv *storage; /* TENSOR */
    int64_t offset;
    int ndim;
    int64_t size[PT_MAX_NDIM], stride[PT_MAX_NDIM];
} pv;

typedef struct {
    const char *path;
    const uint8_t *p;
    size_t n, pos, op_pos;
    pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    pv **memo; /* indexed by memo key; keys are below the pickle length */
    size_t memo_cap, memo_len;
    pv **arena;
    size_t n_arena, arena_cap;
    char **strs; /* string bodies, freed with the arena */
    size_t n_strs, strs_cap;
} pt_vm;

static void pt_vm_free(pt_vm *vm) {
    for (size_t i = 0; i < vm->n_arena; i++) {
        free(vm->arena[i]->items);
        free(vm->arena[i]);
    }
    for (size_t i = 0; i < vm->n_strs; i++) free(vm->strs[i]);
    free(vm->arena);
    free(vm->strs);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
}

/* Grows *arr (elements of size el) to hold at least need; false when out of memory. */
static bool pt_grow(void **arr, size_t *cap, size_t need, size_t el) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*arr, c * el);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

#define VM_FAIL(vm, code, ...) \
    pt_vm_fail((vm), err, (code), __VA_ARGS__)
static pare_status pt_vm_fail(const pt_vm *vm, pare_err *err, pare_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static pare_status pt_vm_fail(const pt_vm *vm, pare_err *err, pare_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pare_err_set(err, code, "%s: data.pkl byte %zu: %s", vm->path, vm->op_pos, msg);
}

static pv *pt_new(pt_vm *vm, pv_kind kind) {
    if (!pt_grow((void **)&vm->arena, &vm->arena_cap, vm->n_arena + 1, sizeof *vm->arena)) return NULL;
    pv *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    vm->arena[vm->n_arena++] = v;
    return v;
}

static pare_status pt_push(pt_vm *vm, pv *v, pare_err *err) {
    if (!v || !pt_grow((void **)&vm->stack, &vm->stack_cap, vm->sp + 1, sizeof *vm->stack))
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    vm->stack[vm->sp++] = v;
    return PARE_OK;
}

static pare_status pt_pop(pt_vm *vm, pv **out, pare_err *err) {
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->sp <= floor) return VM_FAIL(vm, PARE_EINPUT, "stack underflow");
    *out = vm->stack[--vm->sp];
    return PARE_OK;
}

static pare_status pt_top(pt_vm *vm, pv **out, pare_err *err) {
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->sp <= floor) return VM_FAIL(vm, PARE_EINPUT, "stack underflow");
    *out = vm->stack[vm->sp - 1];
    return PARE_OK;
}

/* Pops the items above the topmost mark: *items points at them on the stack (valid until
 * the next push), *n is their count. */
static pare_status pt_pop_mark(pt_vm *vm, pv ***items, size_t *n, pare_err *err) {
    if (!vm->n_marks) return VM_FAIL(vm, PARE_EINPUT, "no MARK to pop to");
    size_t m = vm->marks[--vm->n_marks];
    *items = vm->stack + m;
    *n = vm->sp - m;
    vm->sp = m;
    return PARE_OK;
}

static pare_status pt_append(pt_vm *vm, pv *c, pv *item, pare_err *err) {
    if (!pt_grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items))
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    c->items[c->n++] = item;
    return PARE_OK;
}

static pare_status pt_need(pt_vm *vm, size_t k, pare_err *err) {
    if (vm->n - vm->pos < k)
        return VM_FAIL(vm, PARE_EINPUT, "opcode needs %zu more bytes but the pickle ends at %zu", k, vm->n);
    return PARE_OK;
}

static uint64_t pt_le(const uint8_t *p, int k) {
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static pare_status pt_push_str(pt_vm *vm, uint64_t len, pare_err *err) {
    TRY(pt_need(vm, len, err));
    if (!pt_grow((void **)&vm->strs, &vm->strs_cap, vm->n_strs + 1, sizeof *vm->strs))
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    char *s = malloc((size_t)len + 1);
    pv *v = pt_new(vm, PV_STR);
    if (!s || !v) {
        free(s);
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    }
    memcpy(s, vm->p + vm->pos, (size_t)len);
    s[len] = 0;
    vm->strs[vm->n_strs++] = s;
    vm->pos += (size_t)len;
    v->s = s;
    v->len = (size_t)len;
    return pt_push(vm, v, err);
}

static pare_status pt_push_int(pt_vm *vm, int64_t i, pare_err *err) {
    pv *v = pt_new(vm, PV_INT);
    if (v) v->i = i;
    return pt_push(vm, v, err);
}

/* LONG1: n little-endian two's complement bytes. Wider than 64 bits is kept as an opaque
 * number (torch only writes such values outside tensors, e.g. in training state). */
static pare_status pt_long1(pt_vm *vm, pare_err *err) {
    TRY(pt_need(vm, 1, err));
    size_t k = vm->p[vm->pos++];
    TRY(pt_need(vm, k, err));
    const uint8_t *b = vm->p + vm->pos;
    vm->pos += k;
    if (k > 8) return pt_push(vm, pt_new(vm, PV_BIGINT), err);
    uint64_t u = pt_le(b, (int)k);
    if (k && k < 8 && (b[k - 1] & 0x80)) u |= ~0ull << (8 * k); /* sign-extend */
    return pt_push_int(vm, (int64_t)u, err);
}

static pare_status pt_memo_put(pt_vm *vm, uint64_t key, pare_err *err) {
    pv *v = NULL;
    TRY(pt_top(vm, &v, err));
    /* Python's pickler numbers memo entries 0, 1, 2, ... as it stores them; requiring that
     * keeps the memo dense and its memory proportional to the entries actually stored
     * (a key of 2^32 would otherwise ask for a 32 GB table). */
    if (key > vm->memo_len)
        return VM_FAIL(vm, PARE_EINPUT, "memo key %llu out of order (%zu keys stored so far)", (unsigned long long)key,
                       vm->memo_len);
    if (key >= vm->memo_cap) {
        size_t old = vm->memo_cap;
        if (!pt_grow((void **)&vm->memo, &vm->memo_cap, (size_t)key + 1, sizeof *vm->memo))
            return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
        memset(vm->memo + old, 0, (vm->memo_cap - old) * sizeof *vm->memo);
    }
    if (!vm->memo[key]) vm->memo_len++;
    vm->memo[key] = v;
    return PARE_OK;
}

static pare_status pt_memo_get(pt_vm *vm, uint64_t key, pare_err *err) {
    if (key >= vm->memo_cap || !vm->memo[key])
        return VM_FAIL(vm, PARE_EINPUT, "memo key %llu was never stored", (unsigned long long)key);
    return pt_push(vm, vm->memo[key], err);
}

/* Looks a global up in the allow-list; anything else is refused. */
static pare_status pt_global(pt_vm *vm, const char *module, const char *name, pare_err *err) {
    for (size_t i = 0; i < sizeof pt_globals / sizeof pt_globals[0]; i++)
        if (strcmp(pt_globals[i].module, module) == 0 && strcmp(pt_globals[i].name, name) == 0) {
            pv *v = pt_new(vm, PV_GLOBAL);
            if (v) v->global = (int)i, v->type = pt_globals[i].type;
            return pt_push(vm, v, err);
        }
    return VM_FAIL(vm, PARE_EINPUT, "pickle calls forbidden global '%.100s.%.100s'", module, name);
}

/* GLOBAL: "module\nname\n" as text. */
static pare_status pt_op_global(pt_vm *vm, pare_err *err) {
    const uint8_t *s = vm->p + vm->pos, *end = vm->p + vm->n;
    const uint8_t *nl1 = memchr(s, '\n', (size_t)(end - s));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2 || nl2 - s > 512) return VM_FAIL(vm, PARE_EINPUT, "GLOBAL without two newline-ended names");
    char mod[512], name[512];
    memcpy(mod, s, (size_t)(nl1 - s));
    mod[nl1 - s] = 0;
    memcpy(name, nl1 + 1, (size_t)(nl2 - nl1 - 1));
    name[nl2 - nl1 - 1] = 0;
    vm->pos = (size_t)(nl2 + 1 - vm->p);
    return pt_global(vm, mod, name, err);
}

static pare_status pt_op_stack_global(pt_vm *vm, pare_err *err) {
    pv *name = NULL, *mod = NULL;
    TRY(pt_pop(vm, &name, err));
    TRY(pt_pop(vm, &mod, err));
    if (name->kind != PV_STR || mod->kind != PV_STR) return VM_FAIL(vm, PARE_EINPUT, "STACK_GLOBAL needs two strings");
    return pt_global(vm, mod->s, name->s, err);
}

static pare_status pt_op_tuple(pt_vm *vm, size_t k, bool from_mark, pare_err *err) {
    pv **items = NULL;
    if (from_mark) TRY(pt_pop_mark(vm, &items, &k, err));
    else if (vm->sp < k || (vm->n_marks && vm->sp - k < vm->marks[vm->n_marks - 1]))
        return VM_FAIL(vm, PARE_EINPUT, "stack underflow");
    else items = vm->stack + (vm->sp -= k);
    pv *t = pt_new(vm, PV_TUPLE);
    if (!t || (k && !(t->items = malloc(k * sizeof *t->items)))) return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    if (k) memcpy(t->items, items, k * sizeof *items);
    t->n = t->cap = k;
    return pt_push(vm, t, err);
}

static pare_status pt_op_setitems(pt_vm *vm, bool from_mark, pare_err *err) {
    pv **items = NULL, *kv[2] = {NULL, NULL}, *d = NULL;
    size_t k = 2;
    if (from_mark) TRY(pt_pop_mark(vm, &items, &k, err));
    else {
        TRY(pt_pop(vm, &kv[1], err));
        TRY(pt_pop(vm, &kv[0], err));
        items = kv;
    }
    TRY(pt_top(vm, &d, err));
    if (d->kind != PV_DICT) return VM_FAIL(vm, PARE_EINPUT, "SETITEM(S) on something that is not a dict");
    if (k % 2) return VM_FAIL(vm, PARE_EINPUT, "SETITEMS with an odd number of items");
    for (size_t i = 0; i < k; i++) TRY(pt_append(vm, d, items[i], err));
    return PARE_OK;
}

static pare_status pt_op_appends(pt_vm *vm, bool from_mark, pare_err *err) {
    pv **items = NULL, *one = NULL, *l = NULL;
    size_t k = 1;
    if (from_mark) TRY(pt_pop_mark(vm, &items, &k, err));
    else {
        TRY(pt_pop(vm, &one, err));
        items = &one;
    }
    TRY(pt_top(vm, &l, err));
    if (l->kind != PV_LIST) return VM_FAIL(vm, PARE_EINPUT, "APPEND(S) on something that is not a list");
    for (size_t i = 0; i < k; i++) TRY(pt_append(vm, l, items[i], err));
    return PARE_OK;
}

/* A tuple of ints into dims[] (at most PT_MAX_NDIM, each >= 0). */
static pare_status pt_int_tuple(pt_vm *vm, const pv *t, const char *what, int64_t *dims, int *nd, pare_err *err) {
    if (t->kind != PV_TUPLE) return VM_FAIL(vm, PARE_EINPUT, "tensor %s is not a tuple", what);
    if (t->n > PT_MAX_NDIM)
        return VM_FAIL(vm, PARE_EUNSUPPORTED, "tensor has %zu dimensions (at most %d)", t->n, PT_MAX_NDIM);
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PV_INT || t->items[i]->i < 0)
            return VM_FAIL(vm, PARE_EINPUT, "tensor %s entry %zu is not a non-negative integer", what, i);
        dims[i] = t->items[i]->i;
    }
    *nd = (int)t->n;
    return PARE_OK;
}

static pare_status pt_rebuild_tensor(pt_vm *vm, const pv *args, pare_err *err) {
    if (args->n != 6 && args->n != 7)
        return VM_FAIL(vm, PARE_EINPUT, "_rebuild_tensor_v2 takes 6 or 7 arguments, not %zu", args->n);
    pv *t = pt_new(vm, PV_TENSOR);
    if (!t) return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    if (args->items[0]->kind != PV_STORAGE)
        return VM_FAIL(vm, PARE_EINPUT, "_rebuild_tensor_v2: first argument is not a storage");
    if (args->items[1]->kind != PV_INT || args->items[1]->i < 0)
        return VM_FAIL(vm, PARE_EINPUT, "_rebuild_tensor_v2: storage offset is not a non-negative integer");
    t->storage = args->items[0];
    t->offset = args->items[1]->i;
    int ns = 0;
    TRY(pt_int_tuple(vm, args->items[2], "size", t->size, &t->ndim, err));
    TRY(pt_int_tuple(vm, args->items[3], "stride", t->stride, &ns, err));
    if (ns != t->ndim) return VM_FAIL(vm, PARE_EINPUT, "tensor has %d sizes but %d strides", t->ndim, ns);
    return pt_push(vm, t, err);
}

static pare_status pt_op_reduce(pt_vm *vm, pare_err *err) {
    pv *args = NULL, *fn = NULL;
    TRY(pt_pop(vm, &args, err));
    TRY(pt_pop(vm, &fn, err));
    if (fn->kind != PV_GLOBAL) return VM_FAIL(vm, PARE_EINPUT, "REDUCE on something that is not a global");
    if (args->kind != PV_TUPLE) return VM_FAIL(vm, PARE_EINPUT, "REDUCE arguments are not a tuple");
    switch (pt_globals[fn->global].id) {
    case G_ODICT: {
        if (args->n) return VM_FAIL(vm, PARE_EINPUT, "OrderedDict called with arguments");
        pv *d = pt_new(vm, PV_DICT);
        if (d) d->odict = true;
        return pt_push(vm, d, err);
    }
    case G_REBUILD_TENSOR: return pt_rebuild_tensor(vm, args, err);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n != (pt_globals[fn->global].id == G_REBUILD_PARAM ? 3u : 4u) || args->items[0]->kind != PV_TENSOR)
            return VM_FAIL(vm, PARE_EINPUT, "%s: bad arguments", pt_globals[fn->global].name);
        return pt_push(vm, args->items[0], err); /* a Parameter is its tensor */
    case G_STORAGE: break;
    }
    return VM_FAIL(vm, PARE_EINPUT, "REDUCE calls '%s', which is not a function", pt_globals[fn->global].name);
}

/* BINPERSID: ("storage", StorageClass, key, location, numel) names a data/KEY entry. */
static pare_status pt_op_persid(pt_vm *vm, pare_err *err) {
    pv *pid = NULL;
    TRY(pt_pop(vm, &pid, err));
    if (pid->kind != PV_TUPLE || pid->n != 5 || pid->items[0]->kind != PV_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return VM_FAIL(vm, PARE_EINPUT, "persistent id is not a ('storage', type, key, location, size) tuple");
    const pv *cls = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (cls->kind != PV_GLOBAL || pt_globals[cls->global].id != G_STORAGE)
        return VM_FAIL(vm, PARE_EINPUT, "persistent id names no storage class");
    if (key->kind != PV_STR || !key->len || memchr(key->s, '/', key->len) || pid->items[3]->kind != PV_STR)
        return VM_FAIL(vm, PARE_EINPUT, "storage key is not a plain name");
    if (numel->kind != PV_INT || numel->i < 0)
        return VM_FAIL(vm, PARE_EINPUT, "storage '%s': size is not a non-negative integer", key->s);
    pv *s = pt_new(vm, PV_STORAGE);
    if (s) s->type = cls->type, s->s = key->s, s->len = key->len, s->i = numel->i;
    return pt_push(vm, s, err);
}

/* BUILD sets an object's attributes: torch writes it for a module state dict's _metadata
 * and a parameter's state, which pare does not need. */
static pare_status pt_op_build(pt_vm *vm, pare_err *err) {
    pv *state = NULL, *obj = NULL;
    TRY(pt_pop(vm, &state, err));
    TRY(pt_top(vm, &obj, err));
    /* As torch's weights_only unpickler: Tensor, Parameter (a tensor here) or OrderedDict. */
    if (obj->kind != PV_TENSOR && !(obj->kind == PV_DICT && obj->odict))
        return VM_FAIL(vm, PARE_EINPUT, "BUILD on something that is neither a tensor nor an OrderedDict");
    return PARE_OK;
}

static pare_status pt_op_mark(pt_vm *vm, pare_err *err) {
    if (!pt_grow((void **)&vm->marks, &vm->marks_cap, vm->n_marks + 1, sizeof *vm->marks))
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    vm->marks[vm->n_marks++] = vm->sp;
    return PARE_OK;
}

/* Opcodes with a fixed-size little-endian argument. */
static pare_status pt_op_simple(pt_vm *vm, uint8_t op, pare_err *err) {
    static const struct { uint8_t op; uint8_t k; } argsz[] = {
        {0x80, 1}, {0x95, 8}, {'X', 4}, {0x8c, 1}, {0x8d, 8}, {'J', 4}, {'K', 1}, {'M', 2}, {'G', 8},
        {'q', 1}, {'r', 4}, {'h', 1}, {'j', 4},
    };
    int k = -1;
    for (size_t i = 0; i < sizeof argsz / sizeof argsz[0]; i++)
        if (argsz[i].op == op) k = argsz[i].k;
    if (k < 0) return VM_FAIL(vm, PARE_EINPUT, "unsupported pickle opcode 0x%02x", op);
    TRY(pt_need(vm, (size_t)k, err));
    const uint8_t *b = vm->p + vm->pos;
    uint64_t a = pt_le(b, k);
    vm->pos += (size_t)k;
    switch (op) {
    case 0x80: return a <= 5 ? PARE_OK : VM_FAIL(vm, PARE_EUNSUPPORTED, "pickle protocol %llu", (unsigned long long)a);
    case 0x95: return PARE_OK; /* FRAME: a length hint */
    case 'X': case 0x8c: case 0x8d: return pt_push_str(vm, a, err);
    case 'J': return pt_push_int(vm, (int32_t)(uint32_t)a, err);
    case 'K': case 'M': return pt_push_int(vm, (int64_t)a, err);
    case 'G': {
        uint64_t be = 0;
        for (int i = 0; i < 8; i++) be = be << 8 | b[i];
        pv *v = pt_new(vm, PV_FLOAT);
        if (v) memcpy(&v->f, &be, sizeof v->f);
        return pt_push(vm, v, err);
    }
    case 'q': case 'r': return pt_memo_put(vm, a, err);
    default: return pt_memo_get(vm, a, err); /* 'h', 'j' */
    }
}

/* Runs one opcode; *stop is set by STOP. */
static pare_status pt_step(pt_vm *vm, bool *stop, pare_err *err) {
    vm->op_pos = vm->pos;
    uint8_t op = vm->p[vm->pos++];
    pv *v = NULL;
    switch (op) {
    case '.': *stop = true; return PARE_OK;
    case '(': return pt_op_mark(vm, err);
    case '}': return pt_push(vm, pt_new(vm, PV_DICT), err);
    case ']': return pt_push(vm, pt_new(vm, PV_LIST), err);
    case ')': return pt_op_tuple(vm, 0, false, err);
    case 't': return pt_op_tuple(vm, 0, true, err);
    case 0x85: case 0x86: case 0x87: return pt_op_tuple(vm, (size_t)(op - 0x84), false, err);
    case 'N': return pt_push(vm, pt_new(vm, PV_NONE), err);
    case 0x88: case 0x89:
        if ((v = pt_new(vm, PV_BOOL))) v->i = op == 0x88;
        return pt_push(vm, v, err);
    case 0x8a: return pt_long1(vm, err);
    case 0x94: return pt_memo_put(vm, vm->memo_len, err); /* MEMOIZE */
    case 's': return pt_op_setitems(vm, false, err);
    case 'u': return pt_op_setitems(vm, true, err);
    case 'a': return pt_op_appends(vm, false, err);
    case 'e': return pt_op_appends(vm, true, err);
    case 'c': return pt_op_global(vm, err);
    case 0x93: return pt_op_stack_global(vm, err);
    case 'R': return pt_op_reduce(vm, err);
    case 'b': return pt_op_build(vm, err);
    case 'Q': return pt_op_persid(vm, err);
    default: return pt_op_simple(vm, op, err);
    }
}

/* Runs the pickle to its STOP; *out is the value it returns (owned by vm's arena). */
static pare_status pt_unpickle(pt_vm *vm, pv **out, pare_err *err) {
    bool stop = false;
    /* Start with a stack, so that item pointers into it are never offsets from NULL. */
    if (!pt_grow((void **)&vm->stack, &vm->stack_cap, 64, sizeof *vm->stack))
        return VM_FAIL(vm, PARE_ENOMEM, "out of memory");
    while (!stop) {
        if (vm->pos >= vm->n) {
            vm->op_pos = vm->pos;
            return VM_FAIL(vm, PARE_EINPUT, "pickle ends without STOP");
        }
        TRY(pt_step(vm, &stop, err));
    }
    if (vm->n_marks) return VM_FAIL(vm, PARE_EINPUT, "STOP with an unclosed MARK");
    return pt_pop(vm, out, err);
}

/* ======================================================================== tensors */

/* What a lazy tensor needs to produce its bytes: a view (offset, sizes, strides in
 * elements) of a storage entry, read straight from the mapping or inflated by libzip. */
typedef struct {
    const pare_map *map; /* owned by the model, which outlives its tensors' readers */
    pt_zentry entry;     /* entry.name is owned here */
    size_t entry_index;
    size_t elsize;
    int ndim;
    int64_t offset, size[PT_MAX_NDIM], stride[PT_MAX_NDIM];
} pt_lazy;

static void pt_lazy_free(void *p) {
    pt_lazy *c = p;
    if (c) free(c->entry.name);
    free(c);
}

/* Copies the view's elements in row-major order; the innermost dim in one run when its
 * stride is 1. */
static void pt_gather(const pt_lazy *c, const uint8_t *base, uint8_t *dst) {
    int nd = c->ndim;
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= c->size[d];
    if (n == 0) return;
    int64_t inner = nd ? c->size[nd - 1] : 1, istride = nd ? c->stride[nd - 1] : 0;
    int64_t idx[PT_MAX_NDIM] = {0};
    size_t es = c->elsize;
    for (int64_t o = 0; o < n / inner; o++) {
        int64_t src = c->offset;
        for (int d = 0; d < nd - 1; d++) src += idx[d] * c->stride[d];
        if (istride == 1) {
            memcpy(dst, base + (size_t)src * es, (size_t)inner * es);
            dst += (size_t)inner * es;
        } else {
            for (int64_t j = 0; j < inner; j++, dst += es) memcpy(dst, base + (size_t)(src + j * istride) * es, es);
        }
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < c->size[d]) break;
            idx[d] = 0;
        }
    }
}

static pare_status pt_lazy_read(const pare_tensor *t, void *dst, pare_err *err) {
    const pt_lazy *c = t->read_ctx;
    if (c->entry.method == PT_ZIP_STORED) {
        pt_gather(c, c->map->data + c->entry.data_off, dst);
        return PARE_OK;
    }
    /* A private libzip handle per read, so that readers may run on several threads. */
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(c->map->data, c->map->size, 0, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
    if (!za) {
        if (src) zip_source_free(src);
        pare_err_set(err, PARE_EINPUT, "%s: tensor '%s': cannot reopen the archive: %s", c->map->path, t->name,
                     zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return PARE_EINPUT;
    }
    zip_error_fini(&ze);
    uint8_t *buf = NULL;
    pare_status st = pt_zip_read(za, c->map->path, &c->entry, c->entry_index, &buf, err);
    zip_discard(za);
    if (st) return st;
    pt_gather(c, buf, dst);
    free(buf);
    return PARE_OK;
}

/* Checks that the view fits in its storage; *contiguous tells whether it is row-major. */
static pare_status pt_check_view(const char *path, const char *name, const pv *tv, uint64_t storage_numel,
                                 bool *contiguous, pare_err *err) {
    uint64_t numel = 1, last = (uint64_t)tv->offset, expect = 1;
    bool over = false;
    *contiguous = true;
    for (int d = tv->ndim - 1; d >= 0; d--) {
        uint64_t sz = (uint64_t)tv->size[d], sd = (uint64_t)tv->stride[d];
        if (sz && numel > INT64_MAX / sz) over = true;
        numel *= sz;
        if (sz > 1 && sd != expect) *contiguous = false;
        if (sz > 1 && expect > INT64_MAX / sz) over = true;
        expect *= sz ? sz : 1;
        if (sz && sd && (sz - 1) > (UINT64_MAX / 2 - last) / sd) over = true;
        if (sz && !over) last += (sz - 1) * sd;
    }
    FAIL_IF(over, PARE_EINPUT, "%s: tensor '%s': shape or strides overflow 64 bits", path, name);
    FAIL_IF(numel && last >= storage_numel, PARE_EINPUT,
            "%s: tensor '%s': view reaches element %llu of storage '%s', which holds %llu elements", path, name,
            (unsigned long long)last, tv->storage->s, (unsigned long long)storage_numel);
    return PARE_OK;
}

/* ggml dims of a torch size: reversed; leading 1s dropped beyond PARE_MAX_DIMS. */
static pare_status pt_dims(const char *path, const char *name, const pv *tv, int *nd, int64_t *ne, pare_err *err) {
    int first = 0;
    while (tv->ndim - first > PARE_MAX_DIMS && tv->size[first] == 1) first++;
    FAIL_IF(tv->ndim - first > PARE_MAX_DIMS, PARE_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (pare handles at most %d)",
            path, name, tv->ndim, PARE_MAX_DIMS);
    *nd = tv->ndim - first;
    for (int k = 0; k < *nd; k++) ne[k] = tv->size[tv->ndim - 1 - k];
    return PARE_OK;
}

static pare_status pt_make_lazy(pare_tensor *t, const pare_map *map, const pt_zentry *e, size_t idx,
                                size_t elsize, const pv *tv, pare_err *err) {
    pt_lazy *c = calloc(1, sizeof *c);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    c->entry = *e;
    c->entry.name = strdup(e->name);
    if (!c->entry.name) {
        free(c);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    c->map = map;
    c->entry_index = idx;
    c->elsize = elsize;
    c->ndim = tv->ndim;
    c->offset = tv->offset;
    memcpy(c->size, tv->size, sizeof c->size);
    memcpy(c->stride, tv->stride, sizeof c->stride);
    t->read = pt_lazy_read;
    t->read_ctx = c;
    t->read_ctx_free = pt_lazy_free;
    return PARE_OK;
}

typedef struct {
    pare_model *m;
    const pt_zip *z;
    const char *prefix; /* the archive folder */
} pt_ctx;

static pare_status pt_add_tensor(const pt_ctx *cx, const char *name, const pv *tv, pare_err *err) {
    const char *path = cx->z->path;
    const pv *s = tv->storage;
    char ename[600];
    snprintf(ename, sizeof ename, "%s/data/%.500s", cx->prefix, s->s);
    long idx = pt_zip_find(cx->z, ename);
    FAIL_IF(idx < 0, PARE_EINPUT, "%s: tensor '%s': storage '%s' has no archive entry %s", path, name, s->s, ename);
    const pt_zentry *e = &cx->z->e[idx];
    size_t es = pare_type_get(s->type)->type_size;
    FAIL_IF((uint64_t)s->i > UINT64_MAX / es || (uint64_t)s->i * es != e->size, PARE_EINPUT,
            "%s: tensor '%s': storage '%s' declares %lld %s elements but entry %s holds %llu bytes", path, name, s->s,
            (long long)s->i, pare_type_name(s->type), ename, (unsigned long long)e->size);
    bool contiguous;
    TRY(pt_check_view(path, name, tv, (uint64_t)s->i, &contiguous, err));
    int nd = 0;
    int64_t ne[PARE_MAX_DIMS];
    TRY(pt_dims(path, name, tv, &nd, ne, err));
    pare_tensor t;
    TRY(pare_tensor_init(&t, name, s->type, nd, ne, err));
    pare_status st = PARE_OK;
    if (t.n_bytes && contiguous && e->method == PT_ZIP_STORED) {
        t.file_offset = e->data_off + (uint64_t)tv->offset * es;
        t.data = cx->z->d + t.file_offset;
        t.source = 0;
    } else if (t.n_bytes) {
        t.file_offset = e->data_off;
        st = pt_make_lazy(&t, cx->m->maps[0], e, (size_t)idx, es, tv, err);
    }
    if (!st) st = pare_model_add_tensor(cx->m, &t, err);
    if (st) pare_tensor_clear(&t);
    return st;
}

#define PT_MAX_NEST 4

/* Adds the tensors of a dict (keys joined with '.' for nested dicts), in pickle order. */
static pare_status pt_walk(const pt_ctx *cx, const pv *dict, const char *name_prefix, int depth, pare_err *err) {
    for (size_t i = 0; i + 1 < dict->n; i += 2) {
        const pv *k = dict->items[i], *v = dict->items[i + 1];
        if (v->kind != PV_TENSOR && v->kind != PV_DICT) continue;
        FAIL_IF(k->kind != PV_STR, PARE_EINPUT, "%s: a tensor's key is not a string", cx->z->path);
        FAIL_IF(memchr(k->s, 0, k->len) != NULL, PARE_EINPUT, "%s: tensor name contains a NUL byte", cx->z->path);
        size_t len = strlen(name_prefix) + k->len + 2;
        char *name = malloc(len);
        FAIL_IF(!name, PARE_ENOMEM, "out of memory");
        snprintf(name, len, "%s%s", name_prefix, k->s);
        pare_status st = PARE_OK;
        if (v->kind == PV_TENSOR) st = pt_add_tensor(cx, name, v, err);
        else if (depth < PT_MAX_NEST) {
            strcat(name, ".");
            st = pt_walk(cx, v, name, depth + 1, err);
        }
        free(name);
        TRY(st);
    }
    return PARE_OK;
}

/* ======================================================================== loading */

/* The archive folder: the one folder holding data.pkl. */
static pare_status pt_find_pickle(const pt_zip *z, long *idx, char *prefix, size_t cap, pare_err *err) {
    *idx = -1;
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->e[i].name, *slash = strchr(nm, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        FAIL_IF(*idx >= 0, PARE_EINPUT, "%s: archive holds two pickles (%s and %s)", z->path, z->e[*idx].name, nm);
        FAIL_IF((size_t)(slash - nm) >= cap, PARE_EINPUT, "%s: archive folder name too long", z->path);
        memcpy(prefix, nm, (size_t)(slash - nm));
        prefix[slash - nm] = 0;
        *idx = (long)i;
    }
    FAIL_IF(*idx < 0, PARE_EINPUT, "%s: zip archive has no ARCHIVE/data.pkl: not a PyTorch checkpoint", z->path);
    /* One archive folder holds everything: an entry elsewhere is something torch.save never
     * writes and that another reader (or scanner) could take for the checkpoint. */
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->e[i].name;
        FAIL_IF(strncmp(nm, prefix, pl) != 0 || nm[pl] != '/', PARE_EINPUT,
                "%s: zip entry '%.200s' is outside the archive folder '%s/' (one folder per checkpoint)", z->path, nm,
                prefix);
        /* TorchScript (torch.jit.save) archives carry code that torch.load runs even with
         * weights_only=True (CVE-2025-32434); pare reads state dicts only. */
        const char *rest = nm + pl + 1;
        FAIL_IF(strncmp(rest, "code/", 5) == 0 || strcmp(rest, "constants.pkl") == 0, PARE_EINPUT, "%s: entry '%.200s': a TorchScript archive (torch.jit.save), not a state dict: refused "
                "(its code would run on load, CVE-2025-32434)", z->path, nm);
    }
    return PARE_OK;
}

/* Newer torch records the byte order; pare reads little-endian data only. */
static pare_status pt_check_byteorder(const pt_zip *z, const char *prefix, pare_err *err) {
    char name[600];
    snprintf(name, sizeof name, "%s/byteorder", prefix);
    long i = pt_zip_find(z, name);
    if (i < 0) return PARE_OK;
    const pt_zentry *e = &z->e[i];
    uint8_t *buf = NULL;
    FAIL_IF(e->size > 16, PARE_EINPUT, "%s: %s is %llu bytes long", z->path, name, (unsigned long long)e->size);
    TRY(pt_zip_read(z->za, z->path, e, (size_t)i, &buf, err));
    bool little = e->size == 6 && memcmp(buf, "little", 6) == 0, big = e->size == 3 && memcmp(buf, "big", 3) == 0;
    free(buf);
    FAIL_IF(big, PARE_EUNSUPPORTED, "%s: big-endian PyTorch checkpoint", z->path);
    FAIL_IF(!little, PARE_EINPUT, "%s: %s is neither 'little' nor 'big'", z->path, name);
    return PARE_OK;
}

static pare_status pt_load_zip(pare_model *m, pt_zip *z, pare_err *err) {
    char prefix[512];
    long pi;
    TRY(pt_find_pickle(z, &pi, prefix, sizeof prefix, err));
    TRY(pt_check_byteorder(z, prefix, err));
    const pt_zentry *pe = &z->e[pi];
    FAIL_IF(pe->size > PARE_PT_MAX_PICKLE, PARE_EUNSUPPORTED, "%s: data.pkl of %llu bytes is larger than %llu", z->path,
            (unsigned long long)pe->size, (unsigned long long)PARE_PT_MAX_PICKLE);
    uint8_t *pkl = NULL;
    TRY(pt_zip_read(z->za, z->path, pe, (size_t)pi, &pkl, err));
    pt_vm vm = {.path = z->path, .p = pkl, .n = (size_t)pe->size};
    pv *root = NULL;
    pare_status st = pt_unpickle(&vm, &root, err);
    if (!st && root->kind != PV_DICT)
        st = pare_err_set(err, PARE_EINPUT, "%s: the pickled object is not a dict of tensors", z->path);
    pt_ctx cx = {m, z, prefix};
    if (!st) st = pt_walk(&cx, root, "", 0, err);
    pt_vm_free(&vm);
    free(pkl);
    return st;
}

/* Tells the legacy (pre-1.6) format and other non-zip files apart. */
static pare_status pt_check_magic(const pare_map *map, pare_err *err) {
    const uint8_t *d = map->data;
    if (map->size >= 4 && d[0] == 'P' && d[1] == 'K' && (d[2] == 3 || d[2] == 5) && (d[3] == 4 || d[3] == 6))
        return PARE_OK;
    FAIL_IF(map->size >= 2 && d[0] == 0x80 && d[1] <= 5, PARE_EUNSUPPORTED,
            "%s: legacy (non-zip) PyTorch format; re-save with torch>=1.6", map->path);
    FAIL_IF(map->size >= 262 && memcmp(d + 257, "ustar", 5) == 0, PARE_EUNSUPPORTED,
            "%s: legacy (tar) PyTorch format; re-save with torch>=1.6", map->path);
    return pare_err_set(err, PARE_EINPUT, "%s: not a PyTorch zip checkpoint (no zip signature)", map->path);
}

pare_status pare_pytorch_load(const char *path, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_model *m = pare_model_new(PARE_FORMAT_PYTORCH, path);
    FAIL_IF(!m, PARE_ENOMEM, "%s: out of memory", path);
    pare_map *map = NULL;
    pt_zip z = {0};
    pare_status st = pare_map_open(path, &map, err);
    if (!st) st = pare_model_add_map(m, map, NULL, err);
    if (!st) st = pt_check_magic(m->maps[0], err);
    if (!st) st = pt_zip_open(&z, m->maps[0], err);
    if (!st) st = pt_load_zip(m, &z, err);
    pt_zip_clear(&z);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}
