/* tests/fuzz/fuzz_util.h - helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target is one program: libFuzzer's (build/fuzz/fuzz_NAME, `make fuzz`) or the replay
 * driver's (build/san/fuzz/replay_NAME, `make test`), both calling
 * LLVMFuzzerTestOneInput(data, size) once per input. So this header is static functions only.
 *
 * State. libFuzzer's entry point takes no context, so what a target builds once (its temp
 * folder, a vocabulary, a base model) lives in statics: the one place in pare where mutable
 * statics are allowed, because the harness's API (and atexit's) leaves no other way.
 *
 * Files. pare's readers take paths, so inputs are written into one folder per process,
 * made with mkdtemp under $TMPDIR (else /dev/shm, else /tmp) on first use and removed at
 * exit. tmpfs keeps pare_outfile's fsync cheap.
 *
 * Multi-file inputs. Targets that read several files (a folder, split GGUF parts) cut the
 * input at every FUZZ_SEP into pieces; piece i becomes the target's i-th file, and an empty
 * piece means "no such file". The dictionaries list FUZZ_SEP so that the fuzzer learns it.
 *
 * Oracles. A target aborts (which libFuzzer records as a crash) when pare contradicts
 * itself: a file that loads must write back and load again with the same tensors. Errors
 * are fine - every fuzz input is expected to be refused mostly - but a status outside
 * pare_status, or an error without a message, is a bug too.
 */
#ifndef PARE_FUZZ_UTIL_H
#define PARE_FUZZ_UTIL_H

#include "core/core.h"
#include "quant/quant.h"
#include "../th_files.h" /* th_rm_rf, th_buf */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SEP "\n#pare-fuzz-file#\n"
#define FUZZ_SEP_LEN (sizeof FUZZ_SEP - 1)
#define FUZZ_MAX_PIECES 8

/* Tensor data the targets read back in one input; larger tensors (compressed zip entries
 * can inflate ~1000x) are skipped so that one input stays fast. */
#define FUZZ_READ_MAX ((uint64_t)64 << 20)

/* Prints why and aborts: libFuzzer saves the input as a crash. */
#define FUZZ_BUG(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "fuzz oracle failed at %s:%d: ", __FILE__, __LINE__);                      \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_piece;

/* ------------------------------------------------------------------ files */

static inline void fuzz_rm_rf(const char *path) { th_rm_rf(path); }

static char fuzz_tmp_root[512];

static inline void fuzz_tmp_cleanup(void) {
    if (fuzz_tmp_root[0]) fuzz_rm_rf(fuzz_tmp_root);
}

/* The per-process scratch folder (made on first call). */
static inline const char *fuzz_dir(void) {
    if (fuzz_tmp_root[0]) return fuzz_tmp_root;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base) base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(fuzz_tmp_root, sizeof fuzz_tmp_root, "%s/pare-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_tmp_root)) {
        perror(fuzz_tmp_root);
        abort();
    }
    atexit(fuzz_tmp_cleanup);
    return fuzz_tmp_root;
}

/* "TMP/rel" in buf. */
static inline const char *fuzz_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", fuzz_dir(), rel);
    return buf;
}

/* Removes TMP/rel with everything in it and makes it again, empty: each input starts from a
 * clean folder, so that no file of an earlier input can change what this one does. */
static inline const char *fuzz_fresh_dir(char *buf, size_t cap, const char *rel) {
    fuzz_path(buf, cap, rel);
    fuzz_rm_rf(buf);
    if (mkdir(buf, 0700) != 0) {
        perror(buf);
        abort();
    }
    return buf;
}

/* Writes n bytes at path (unlinking first); aborts on failure (the harness, not pare). */
static inline void fuzz_write(const char *path, const void *p, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* Writes a piece to folder/name, or removes that file when the piece is empty. */
static inline void fuzz_put_piece(const char *folder, const char *name, fuzz_piece pc) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", folder, name);
    if (pc.n)
        fuzz_write(p, pc.p, pc.n);
    else
        unlink(p);
}

/* Cuts data at every FUZZ_SEP into at most max pieces (the last takes the rest). */
static inline size_t fuzz_split(const uint8_t *data, size_t size, fuzz_piece *pc, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; n + 1 < max && i + FUZZ_SEP_LEN <= size; i++)
        if (data[i] == '\n' && memcmp(data + i, FUZZ_SEP, FUZZ_SEP_LEN) == 0) {
            pc[n++] = (fuzz_piece){data + start, i - start};
            start = i + FUZZ_SEP_LEN;
            i = start - 1;
        }
    pc[n++] = (fuzz_piece){data + start, size - start};
    return n;
}

/* ------------------------------------------------------------------ checks */

/* Every failure must carry a known code and a message. With PARE_FUZZ_VERBOSE set in the
 * environment, every checked call prints its outcome (to see how deep a seed gets). */
static inline void fuzz_check_status(pare_status st, const pare_err *err, const char *what) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("PARE_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "  %s: %s\n", what, st ? err->msg : "ok");
    if (st == PARE_OK) return;
    if ((int)st < PARE_EUSAGE || (int)st > PARE_EINTERNAL) FUZZ_BUG("%s: status %d out of range", what, (int)st);
    if (err->code != st) FUZZ_BUG("%s: returned %d but err->code is %d", what, (int)st, (int)err->code);
    if (!err->msg[0]) FUZZ_BUG("%s: error %d without a message", what, (int)st);
    if (st == PARE_EINTERNAL) FUZZ_BUG("%s: internal error: %s", what, err->msg);
}

/* The bytes of tensor t (mapped or lazy) into a new buffer, or NULL when it is too big to
 * bother or its reader fails (that status is checked). */
static inline void *fuzz_tensor_bytes(const pare_tensor *t) {
    if (t->n_bytes > FUZZ_READ_MAX) return NULL;
    void *buf = malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
    if (!buf) abort();
    pare_err err = {0};
    pare_status st = pare_tensor_read(t, buf, &err);
    fuzz_check_status(st, &err, t->name);
    if (st) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Reads every tensor of m the way the CLI's passes do: its bytes, and its values as f32
 * through quant/ (so dequantizers see hostile blocks too). Returns whether every tensor's
 * bytes could be read: lazy tensors (compressed zip entries) may fail only now, and then a
 * writer fails on them as well. */
static inline bool fuzz_read_all(const pare_model *m) {
    bool all = true;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        void *b = fuzz_tensor_bytes(t);
        free(b);
        if (!b && t->n_bytes <= FUZZ_READ_MAX) all = false;
        int64_t ne = pare_tensor_nelements(t);
        if (!b || ne < 0 || (uint64_t)ne > FUZZ_READ_MAX / sizeof(float)) continue;
        float *f = malloc(ne ? (size_t)ne * sizeof *f : 1);
        if (!f) abort();
        pare_err err = {0};
        pare_status st = pare_tensor_to_f32(t, f, 1, &err);
        if (st != PARE_EUNSUPPORTED) fuzz_check_status(st, &err, t->name);
        free(f);
    }
    return all;
}

/* b must hold the same tensors (names, types, dims, bytes) as a, in any order. */
static inline void fuzz_same_tensors(const pare_model *a, const pare_model *b, const char *what) {
    if (a->n_tensors != b->n_tensors) FUZZ_BUG("%s: %zu tensors, then %zu", what, a->n_tensors, b->n_tensors);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const pare_tensor *x = &a->tensors[i], *y = pare_model_find(b, x->name);
        if (!y) FUZZ_BUG("%s: tensor '%s' lost", what, x->name);
        if (x->type != y->type || x->n_bytes != y->n_bytes)
            FUZZ_BUG("%s: tensor '%s' type %d/%d bytes %llu/%llu", what, x->name, (int)x->type, (int)y->type,
                     (unsigned long long)x->n_bytes, (unsigned long long)y->n_bytes);
        for (int d = 0; d < PARE_MAX_DIMS; d++)
            if (x->ne[d] != y->ne[d]) FUZZ_BUG("%s: tensor '%s' dim %d: %lld then %lld", what, x->name, d,
                                               (long long)x->ne[d], (long long)y->ne[d]);
        void *bx = fuzz_tensor_bytes(x), *by = bx ? fuzz_tensor_bytes(y) : NULL;
        if (bx && !by) FUZZ_BUG("%s: tensor '%s' unreadable after the round trip", what, x->name);
        if (bx && memcmp(bx, by, (size_t)x->n_bytes) != 0) FUZZ_BUG("%s: tensor '%s' bytes differ", what, x->name);
        free(bx);
        free(by);
    }
}

/* ------------------------------------------------------------------ a base model */

/* The GGUF metadata of a tiny Llama (tests/fixtures/tiny-llama's shape: 2 layers, 64 wide,
 * 4 heads, 2 KV heads, FFN 192, vocabulary 384): what LoRA loading and quantization plans
 * read from a base model. */
static inline void fuzz_base_meta(pare_meta *m) {
    pare_err err = {0};
    if (pare_meta_set_str(m, "general.architecture", "llama", 5, &err) ||
        pare_meta_set_uint(m, "llama.block_count", PARE_META_U32, 2, &err) ||
        pare_meta_set_uint(m, "llama.embedding_length", PARE_META_U32, 64, &err) ||
        pare_meta_set_uint(m, "llama.feed_forward_length", PARE_META_U32, 192, &err) ||
        pare_meta_set_uint(m, "llama.attention.head_count", PARE_META_U32, 4, &err) ||
        pare_meta_set_uint(m, "llama.attention.head_count_kv", PARE_META_U32, 2, &err))
        FUZZ_BUG("base meta: %s", err.msg);
}

/* The tiny Llama's tensors with GGUF names and shapes, F32, without data. */
static inline pare_model *fuzz_base_model(void) {
    static const struct {
        const char *name;
        int64_t ne0, ne1;
    } sh[] = {{"attn_norm", 64, 1}, {"attn_q", 64, 64},  {"attn_k", 64, 32},    {"attn_v", 64, 32},
              {"attn_output", 64, 64}, {"ffn_norm", 64, 1}, {"ffn_gate", 64, 192}, {"ffn_up", 64, 192},
              {"ffn_down", 192, 64}};
    pare_model *m = pare_model_new(PARE_FORMAT_GGUF, "base.gguf");
    if (!m) abort();
    m->arch = strdup("llama");
    m->gguf_names = true;
    fuzz_base_meta(&m->meta);
    pare_err err = {0};
    char name[64];
    for (int i = -1; i < 2 * (int)(sizeof sh / sizeof sh[0]) + 2; i++) {
        int64_t ne[2] = {64, 384};
        int nd = 2;
        if (i == -1) {
            snprintf(name, sizeof name, "token_embd.weight");
        } else if (i >= 2 * (int)(sizeof sh / sizeof sh[0])) {
            snprintf(name, sizeof name, i % 2 ? "output.weight" : "output_norm.weight");
            nd = i % 2 ? 2 : 1;
            ne[1] = i % 2 ? 384 : 1;
        } else {
            int k = i % (int)(sizeof sh / sizeof sh[0]), l = i / (int)(sizeof sh / sizeof sh[0]);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, sh[k].name);
            ne[0] = sh[k].ne0;
            ne[1] = sh[k].ne1;
            nd = sh[k].ne1 == 1 ? 1 : 2;
        }
        pare_tensor t = {0};
        if (pare_tensor_init(&t, name, PARE_TYPE_F32, nd, ne, &err) ||
            pare_tensor_nbytes(t.type, nd, t.ne, &t.n_bytes, &err))
            FUZZ_BUG("base tensor %s: %s", name, err.msg);
        t.source = -1;
        if (pare_model_add_tensor(m, &t, &err)) FUZZ_BUG("base tensor %s: %s", name, err.msg);
    }
    return m;
}

#endif
