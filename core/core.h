/*
 * core/core.h - the types every pare module shares.
 *
 * core depends on nothing else in pare; every other module may include it.
 *
 *   errors     pare_err: a status code plus a caller-owned message. Library code never
 *              prints or exits; it fills a pare_err and returns its code.
 *   types      pare_type: one enum for every tensor element type pare knows, numbered
 *              as ggml numbers them (so a GGUF type id is a pare_type), with the
 *              safetensors-only dtypes after them. pare_type_info() gives block sizes.
 *   fp         f16 / bf16 <-> f32 conversions (round to nearest even, as ggml and numpy).
 *   meta       pare_meta: an ordered list of typed key/value pairs with GGUF's value types.
 *   tensors    pare_tensor: name, type, dims (ggml order: ne[0] is the contiguous row
 *              length, i.e. the LAST dimension of the PyTorch shape), bytes, data.
 *   model      pare_model: metadata + tensors + the mappings / buffers that back them.
 *   files      read-only mappings; atomic output files (temp file in the destination
 *              folder, fsync, rename on commit, unlink on abort).
 *   threads    a parallel-for over a range of indices.
 *
 * Ownership: every *_open / *_create / *_new has a matching *_free that accepts NULL.
 */
#ifndef PARE_CORE_H
#define PARE_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ errors */

typedef enum {
    PARE_OK = 0,
    PARE_EUSAGE = 1,       /* the caller asked for something invalid (CLI exit 1) */
    PARE_EINPUT = 2,       /* malformed or unsupported input file (CLI exit 2) */
    PARE_EIO = 3,          /* a system call failed; sys_errno says why */
    PARE_ENOMEM = 4,       /* an allocation failed */
    PARE_EUNSUPPORTED = 5, /* well-formed input that pare does not handle (yet) */
    PARE_EQUALITY = 6,     /* a quality gate refused the result */
    PARE_EINTERNAL = 7,
} pare_status;

#define PARE_ERR_MSG_MAX 1024

typedef struct pare_err {
    pare_status code;
    int sys_errno;              /* errno when code == PARE_EIO, else 0 */
    const char *src_file;       /* where in pare's source the error was raised */
    int src_line;
    char msg[PARE_ERR_MSG_MAX]; /* one line, names the file and what is wrong */
} pare_err;

/* Records an error and returns `code`. err may be NULL (the error is then dropped).
 * The message is formatted with printf rules and truncated to fit. */
pare_status pare_err_set_at(pare_err *err, const char *src_file, int src_line,
                            pare_status code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
pare_status pare_err_vset_at(pare_err *err, const char *src_file, int src_line,
                             pare_status code, const char *fmt, va_list ap);
#define pare_err_set(err, code, ...) pare_err_set_at((err), __FILE__, __LINE__, (code), __VA_ARGS__)
/* Like pare_err_set with code PARE_EIO, appending ": strerror(errno)". */
pare_status pare_err_errno_at(pare_err *err, const char *src_file, int src_line,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define pare_err_errno(err, ...) pare_err_errno_at((err), __FILE__, __LINE__, __VA_ARGS__)
/* Prepends "prefix: " to an existing message (to add the file or tensor name). */
void pare_err_prefix(pare_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pare_err_clear(pare_err *err);

/* Carry an error up: evaluate expr (a pare_status); if not PARE_OK, return it. */
#define TRY(expr)                                                                      \
    do {                                                                               \
        pare_status try_st_ = (expr);                                                  \
        if (try_st_ != PARE_OK) return try_st_;                                        \
    } while (0)
/* Fail with a message when cond holds. Needs a `pare_err *err` in scope. */
#define FAIL_IF(cond, code, ...)                                                       \
    do {                                                                               \
        if (cond) return pare_err_set(err, (code), __VA_ARGS__);                       \
    } while (0)

/* ------------------------------------------------------------------------ types */

/* Values 0..38 are ggml's type ids (gaps are types ggml removed). Values from 64 on
 * are safetensors dtypes that ggml has no type for. */
typedef enum {
    PARE_TYPE_F32 = 0,
    PARE_TYPE_F16 = 1,
    PARE_TYPE_Q4_0 = 2,
    PARE_TYPE_Q4_1 = 3,
    PARE_TYPE_Q5_0 = 6,
    PARE_TYPE_Q5_1 = 7,
    PARE_TYPE_Q8_0 = 8,
    PARE_TYPE_Q8_1 = 9,
    PARE_TYPE_Q2_K = 10,
    PARE_TYPE_Q3_K = 11,
    PARE_TYPE_Q4_K = 12,
    PARE_TYPE_Q5_K = 13,
    PARE_TYPE_Q6_K = 14,
    PARE_TYPE_Q8_K = 15,
    PARE_TYPE_IQ2_XXS = 16,
    PARE_TYPE_IQ2_XS = 17,
    PARE_TYPE_IQ3_XXS = 18,
    PARE_TYPE_IQ1_S = 19,
    PARE_TYPE_IQ4_NL = 20,
    PARE_TYPE_IQ3_S = 21,
    PARE_TYPE_IQ2_S = 22,
    PARE_TYPE_IQ4_XS = 23,
    PARE_TYPE_I8 = 24,
    PARE_TYPE_I16 = 25,
    PARE_TYPE_I32 = 26,
    PARE_TYPE_I64 = 27,
    PARE_TYPE_F64 = 28,
    PARE_TYPE_IQ1_M = 29,
    PARE_TYPE_BF16 = 30,
    PARE_TYPE_TQ1_0 = 34,
    PARE_TYPE_TQ2_0 = 35,
    PARE_TYPE_GGML_COUNT = 39, /* ggml's GGML_TYPE_COUNT of February 2025 */
    PARE_TYPE_BOOL = 64,
    PARE_TYPE_U8,
    PARE_TYPE_U16,
    PARE_TYPE_U32,
    PARE_TYPE_U64,
    PARE_TYPE_F8_E4M3,
    PARE_TYPE_F8_E5M2,
    PARE_TYPE_COUNT,
    PARE_TYPE_INVALID = -1,
} pare_type;

typedef struct pare_type_info {
    const char *name;    /* ggml's name ("q4_K", "f32"); NULL for an unused id */
    const char *st_name; /* safetensors dtype ("F32", "BF16"); NULL if none */
    int64_t block_size;  /* elements per block (1 for plain types) */
    size_t type_size;    /* bytes per block */
    bool is_quantized;   /* a block type */
    bool is_float;       /* F64/F32/F16/BF16/F8: convertible to f32 by core */
} pare_type_info;

/* NULL for ids that are not a known type. */
const pare_type_info *pare_type_get(int type);
bool pare_type_valid(int type);
/* Looks a type up by ggml name (case-insensitive, "q4_k" == "Q4_K") or safetensors dtype.
 * Returns PARE_TYPE_INVALID when unknown. */
pare_type pare_type_from_name(const char *name);
pare_type pare_type_from_st_name(const char *st_name);
const char *pare_type_name(pare_type t); /* "?" for unknown */
/* Bytes of one row of ne0 elements; 0 if ne0 is not a multiple of the block size. */
size_t pare_type_row_size(pare_type t, int64_t ne0);

/* ------------------------------------------------------------------------ fp */

uint16_t pare_fp32_to_fp16(float f);
float pare_fp16_to_fp32_soft(uint16_t h);
/* Inline, so that code compiled with F16C (the avx2 and avx512 kernel levels, whose inner
 * loops convert block scales) gets the one instruction, and the rest the portable bit
 * arithmetic: the same value either way (f16 -> f32 is exact; a signalling NaN comes out
 * quiet from the instruction, as in ggml's x86 builds). */
#if defined(__F16C__)
#include <immintrin.h>
static inline float pare_fp16_to_fp32(uint16_t h) { return _cvtsh_ss(h); }
#else
static inline float pare_fp16_to_fp32(uint16_t h) { return pare_fp16_to_fp32_soft(h); }
#endif
uint16_t pare_fp32_to_bf16(float f);
float pare_bf16_to_fp32(uint16_t h);
float pare_f8e4m3_to_fp32(uint8_t v);
float pare_f8e5m2_to_fp32(uint8_t v);

/* Converts n elements of a non-block type (float or integer) to f32. Returns false when
 * the type is a block type (use quant/ for those). */
bool pare_plain_to_f32(pare_type t, const void *src, float *dst, int64_t n);
/* Converts n f32 values to F32, F16, BF16 or F64. Returns false for other types. */
bool pare_f32_to_plain(pare_type t, const float *src, void *dst, int64_t n);

/* ------------------------------------------------------------------------ meta */

/* GGUF's metadata value types, with GGUF's numbering. */
typedef enum {
    PARE_META_U8 = 0,
    PARE_META_I8 = 1,
    PARE_META_U16 = 2,
    PARE_META_I16 = 3,
    PARE_META_U32 = 4,
    PARE_META_I32 = 5,
    PARE_META_F32 = 6,
    PARE_META_BOOL = 7,
    PARE_META_STRING = 8,
    PARE_META_ARRAY = 9,
    PARE_META_U64 = 10,
    PARE_META_I64 = 11,
    PARE_META_F64 = 12,
    PARE_META_COUNT = 13,
} pare_meta_type;

typedef struct pare_str {
    char *s;      /* NUL-terminated copy; may contain inner NULs, use len */
    uint64_t len; /* bytes, without the terminator */
} pare_str;

typedef struct pare_kv {
    char *key;
    pare_meta_type type;      /* scalar type, STRING or ARRAY */
    pare_meta_type elem_type; /* ARRAY: type of the elements (never ARRAY) */
    uint64_t n;               /* ARRAY: element count */
    union {
        uint64_t u64; /* every unsigned scalar, BOOL as 0/1 */
        int64_t i64;  /* every signed scalar */
        double f64;   /* F32 and F64 */
    } v;
    pare_str str; /* STRING */
    void *arr;    /* ARRAY: n packed little-endian elements of elem_type's size, or
                     pare_str[n] when elem_type is STRING */
} pare_kv;

typedef struct pare_meta {
    pare_kv *kv;
    size_t n, cap;
} pare_meta;

size_t pare_meta_type_size(pare_meta_type t); /* 0 for STRING/ARRAY/invalid */
const char *pare_meta_type_name(pare_meta_type t);
void pare_meta_free(pare_meta *m); /* frees the contents, not m itself */
const pare_kv *pare_meta_get(const pare_meta *m, const char *key);
long pare_meta_find(const pare_meta *m, const char *key); /* index or -1 */
bool pare_meta_remove(pare_meta *m, const char *key);
/* Setters replace an existing key in place (keeping its position) or append. */
pare_status pare_meta_set_uint(pare_meta *m, const char *key, pare_meta_type t, uint64_t v, pare_err *err);
pare_status pare_meta_set_int(pare_meta *m, const char *key, pare_meta_type t, int64_t v, pare_err *err);
pare_status pare_meta_set_float(pare_meta *m, const char *key, pare_meta_type t, double v, pare_err *err);
pare_status pare_meta_set_bool(pare_meta *m, const char *key, bool v, pare_err *err);
pare_status pare_meta_set_str(pare_meta *m, const char *key, const char *s, size_t len, pare_err *err);
/* Copies n elements. For STRING elements, data is a pare_str[n] (strings are copied). */
pare_status pare_meta_set_arr(pare_meta *m, const char *key, pare_meta_type elem, const void *data,
                              uint64_t n, pare_err *err);
/* Deep copy of one kv into m (replacing any key of the same name). */
pare_status pare_meta_set_kv(pare_meta *m, const pare_kv *kv, pare_err *err);
pare_status pare_meta_copy(pare_meta *dst, const pare_meta *src, pare_err *err);
/* Typed getters: false when absent or of a type that does not convert exactly. */
bool pare_meta_get_u64(const pare_meta *m, const char *key, uint64_t *out);
bool pare_meta_get_i64(const pare_meta *m, const char *key, int64_t *out);
bool pare_meta_get_f64(const pare_meta *m, const char *key, double *out);
bool pare_meta_get_bool(const pare_meta *m, const char *key, bool *out);
const char *pare_meta_get_str(const pare_meta *m, const char *key); /* NULL if absent */
/* Element i of an ARRAY kv as a number (false for strings / out of range). */
bool pare_kv_arr_f64(const pare_kv *kv, uint64_t i, double *out);
bool pare_kv_arr_i64(const pare_kv *kv, uint64_t i, int64_t *out);

/* ------------------------------------------------------------------------ tensors */

#define PARE_MAX_DIMS 4

typedef struct pare_tensor {
    char *name;                  /* owned by the tensor */
    pare_type type;
    int n_dims;                  /* 1..4 (0 is a scalar, stored as n_dims 1, ne[0] 1) */
    int64_t ne[PARE_MAX_DIMS];   /* ggml order: ne[0] contiguous; unused dims are 1 */
    uint64_t n_bytes;            /* bytes of data */
    const void *data;            /* points into a mapping, `owned`, or NULL (not loaded) */
    void *owned;                 /* malloc'ed buffer owned by this tensor, or NULL */
    uint64_t file_offset;        /* where the bytes were found in the source (for messages) */
    int source;                  /* index of the model's map the bytes live in, or -1 */
    /* Lazy tensors (compressed zip entries, HF q/k rows that need permuting, ...) have
     * data == NULL and a reader that produces the n_bytes bytes on demand. Use
     * pare_tensor_read() rather than data when a tensor may be lazy. */
    pare_status (*read)(const struct pare_tensor *t, void *dst, pare_err *err);
    void *read_ctx;
    void (*read_ctx_free)(void *ctx);
} pare_tensor;

int64_t pare_tensor_nelements(const pare_tensor *t);
int64_t pare_tensor_nrows(const pare_tensor *t); /* nelements / ne[0] */
/* Computes the byte size of a tensor of this type and shape, checking that every dim is
 * >= 0, ne[0] is a multiple of the block size and nothing overflows. */
pare_status pare_tensor_nbytes(pare_type t, int n_dims, const int64_t *ne, uint64_t *out, pare_err *err);
/* Sets name (copied), type, dims; data and owned stay NULL. */
pare_status pare_tensor_init(pare_tensor *t, const char *name, pare_type type, int n_dims,
                             const int64_t *ne, pare_err *err);
/* Replaces the tensor's data by an owned buffer (frees any previous owned buffer). */
void pare_tensor_set_owned(pare_tensor *t, void *buf, uint64_t n_bytes);
void pare_tensor_clear(pare_tensor *t); /* frees name, owned data and read_ctx */
/* Copies the tensor's n_bytes bytes to dst (from data, or through the reader). */
pare_status pare_tensor_read(const pare_tensor *t, void *dst, pare_err *err);
/* Returns a pointer to the tensor's bytes: t->data when present, else reads into a new
 * malloc'ed buffer stored in *tmp (caller frees *tmp, which is NULL when not needed). */
pare_status pare_tensor_bytes(const pare_tensor *t, const void **out, void **tmp, pare_err *err);
/* Reads the tensor as n_elements f32 values into dst, for plain types (F32/F16/BF16/...).
 * Block types return PARE_EUNSUPPORTED here; quant/ has the general version. */
pare_status pare_tensor_plain_to_f32(const pare_tensor *t, float *dst, pare_err *err);
/* "[256, 768]" style shape in ggml order into buf. */
const char *pare_tensor_shape_str(const pare_tensor *t, char *buf, size_t cap);

/* ------------------------------------------------------------------------ files */

typedef struct pare_map {
    char *path;
    const uint8_t *data; /* read-only mapping of the whole file (NULL when size 0) */
    uint64_t size;
    int fd; /* the file, open for pare_map_pread */
} pare_map;

/* Maps a whole file read-only. The pare_map is allocated; free with pare_map_free. */
pare_status pare_map_open(const char *path, pare_map **out, pare_err *err);
void pare_map_free(pare_map *m);
/* Copies n bytes at off to dst through read(2) rather than the mapping. For a pass that
 * streams over a large file this is several times faster where page-table work is dear (on
 * the test VM, 11 GB/s against 2 GB/s through the mapping: the kernel copies from its own
 * large-page view of the cache, the mapping costs a TLB miss per 4 KiB). Also a file cut
 * short meanwhile gives an error here, where the mapping would raise SIGBUS. */
pare_status pare_map_pread(const pare_map *m, void *dst, uint64_t off, size_t n, pare_err *err);
/* Tells the kernel the pages of [off, off+len) are not needed any more, so that a pass
 * streaming over a large file keeps its resident memory small. Safe on any range. */
void pare_map_release(const pare_map *m, uint64_t off, uint64_t len);
/* Makes a SIGBUS from a mapped input (the file was cut short, or its disk failed, while
 * pare read it) end the process with exit status 2 and one line naming the file, instead
 * of a crash. Process-wide, so only the command-line tool calls it, once, at start; the
 * handler keeps no state (it finds the file in /proc/self/maps) and no output is left:
 * outputs are unnamed (O_TMPFILE) until complete, named temporaries are swept by the next
 * run. Library users who map files themselves keep their own SIGBUS policy. */
pare_status pare_catch_sigbus(pare_err *err);
/* Reads a whole (small) file into a NUL-terminated buffer, refusing files over max_bytes. */
pare_status pare_read_file(const char *path, size_t max_bytes, char **out, size_t *len, pare_err *err);
/* The max_bytes of every text read whole (evaluation, calibration and tokenizer input). */
#define PARE_TEXT_MAX_BYTES ((size_t)1 << 30)

/* An output file written under a temporary name in the destination folder and renamed
 * into place by pare_outfile_commit. pare_outfile_free without commit removes it. */
typedef struct pare_outfile pare_outfile;
/* Refuses to replace an existing file unless force; refuses to replace any of the
 * `inputs` (same device and inode). */
pare_status pare_outfile_open(const char *path, bool force, const char *const *inputs, size_t n_inputs,
                              pare_outfile **out, pare_err *err);
pare_status pare_outfile_write(pare_outfile *f, const void *buf, size_t n, pare_err *err);
pare_status pare_outfile_pad_to(pare_outfile *f, uint64_t off, pare_err *err); /* zero-fill */
uint64_t pare_outfile_tell(const pare_outfile *f);
const char *pare_outfile_path(const pare_outfile *f); /* the final path */
pare_status pare_outfile_commit(pare_outfile *f, pare_err *err); /* fsync + rename */
void pare_outfile_free(pare_outfile *f); /* removes the temp file if not committed */
/* true when a and b name the same existing file. */
bool pare_same_file(const char *a, const char *b);
bool pare_path_is_dir(const char *path);
bool pare_path_exists(const char *path);
/* "dir/name" into a new malloc'ed string (NULL on failure). */
char *pare_path_join(const char *dir, const char *name);
/* Removes the files of a flat folder, then the folder (best effort: temporary folders). */
void pare_remove_folder(const char *dir);
/* Removes the debris of killed pare runs from a folder: entries ".BASE.pare-..." (files and
 * folders) of this user that no live pare holds locked. pare_outfile_open and
 * pare_tmpdir_new sweep the destination folder first. */
void pare_sweep_stale(const char *dir);
/* A working folder ".BASE.pare-TAG-XXXXXX" beside the path `beside`, locked while it lives
 * (so a sweep leaves it alone) and removed with its files by pare_tmpdir_free, unless it was
 * renamed into place first. */
typedef struct pare_tmpdir pare_tmpdir;
pare_status pare_tmpdir_new(const char *beside, const char *tag, pare_tmpdir **out, pare_err *err);
const char *pare_tmpdir_path(const pare_tmpdir *t);
void pare_tmpdir_free(pare_tmpdir *t);
/* fsyncs the folder that holds path, so that a rename into it is durable. */
void pare_sync_dir_of(const char *path);
bool pare_str_ends_with(const char *s, const char *suffix);

/* ------------------------------------------------------------------------ model */

typedef enum {
    PARE_FORMAT_UNKNOWN = 0,
    PARE_FORMAT_GGUF,
    PARE_FORMAT_SAFETENSORS,
    PARE_FORMAT_PYTORCH,
    PARE_FORMAT_HF, /* a Hugging Face folder (config.json + weights) */
} pare_format;

typedef struct pare_model {
    pare_format format;
    char *path;          /* what the user named */
    uint32_t version;    /* GGUF version; 0 otherwise */
    char *arch;          /* "llama", "qwen2", "gpt2", ... or NULL when unknown */
    bool gguf_names;     /* tensor names follow GGUF ("blk.0.attn_q.weight") rather than HF */
    pare_meta meta;      /* GGUF metadata, or metadata derived from config.json etc. */
    pare_tensor *tensors;
    size_t n_tensors, cap_tensors;
    pare_map **maps;     /* the files the tensors point into */
    size_t n_maps;
    void *backing;       /* format-specific extra state (e.g. an open zip); see below */
    void (*backing_free)(void *);
    uint64_t alignment;  /* GGUF data alignment (32 when not GGUF) */
} pare_model;

pare_model *pare_model_new(pare_format format, const char *path);
void pare_model_free(pare_model *m);
/* Appends a tensor (moving it: the model takes ownership of name and owned data).
 * Refuses duplicate names. */
pare_status pare_model_add_tensor(pare_model *m, pare_tensor *t, pare_err *err);
/* Takes ownership of a mapping; returns its index. */
pare_status pare_model_add_map(pare_model *m, pare_map *map, int *index, pare_err *err);
/* Appends without the duplicate check, for readers that check names with a pare_strset. */
pare_status pare_model_push_tensor(pare_model *m, pare_tensor *t, pare_err *err);
pare_tensor *pare_model_find(const pare_model *m, const char *name);
uint64_t pare_model_nparams(const pare_model *m);
/* Releases the mapped pages behind a tensor (see pare_map_release); no-op if not mapped. */
void pare_model_release_tensor(const pare_model *m, const pare_tensor *t);
/* Hands the allocator's free memory back to the system (glibc: malloc_trim). The command-line
 * tool keeps freed tensor-sized buffers in the heap (cmd/main.c), which suits one pass over a
 * model; where large working buffers are freed while a model stays mapped (one evaluation
 * after another in the budget search), keeping them would add to the peak. */
void pare_release_free_memory(void);
/* The file of m whose mapping holds t's bytes, and their offset in it; NULL when t's bytes
 * are owned or produced by a reader. */
const pare_map *pare_model_map_of(const pare_model *m, const pare_tensor *t, uint64_t *off);

/* ------------------------------------------------------------------------ string set */

/* A set of byte strings (open addressing), so that readers check names for duplicates in
 * linear time however many a hostile file declares. Strings are not copied: they must
 * outlive the set. */
typedef struct pare_strset pare_strset;
pare_strset *pare_strset_new(size_t expected);
void pare_strset_free(pare_strset *s);
/* Returns 1 when added, 0 when already present, -1 when out of memory. */
int pare_strset_add(pare_strset *s, const char *str, size_t len);

/* ------------------------------------------------------------------------ threads */

/* Calls fn(ctx, i) for every i in [0, n) on up to n_threads threads (including the
 * caller). Items are handed out in increasing order, one at a time; the function returns
 * after all calls are done. n_threads <= 0 means the number of online CPUs. */
typedef void (*pare_parallel_fn)(void *ctx, int64_t i, int thread_index);
void pare_parallel_for(int n_threads, int64_t n, pare_parallel_fn fn, void *ctx);
int pare_default_threads(void);

/* A pool of n_threads - 1 worker threads that stay alive between parallel-fors, for code
 * that runs thousands of short ones (the evaluator: several per layer and chunk), where
 * creating threads each time costs more than the work. Workers spin briefly after each
 * job, then sleep on a condition variable. pare_pool_for has pare_parallel_for's contract;
 * one caller at a time. A NULL pool runs everything on the caller. */
typedef struct pare_pool pare_pool;
pare_pool *pare_pool_new(int n_threads); /* NULL when out of memory or threads */
void pare_pool_free(pare_pool *p);
int pare_pool_threads(const pare_pool *p); /* 1 for NULL */
void pare_pool_for(pare_pool *p, int64_t n, pare_parallel_fn fn, void *ctx);

/* A progress callback: done of total units (bytes or items) of the named step. Library
 * code calls it; only cmd/ decides whether to print. May be NULL. */
typedef void (*pare_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);

/* Monotonic seconds. */
double pare_now(void);

#endif
