/* pipeline/write.c - the streaming model writer every job ends in: for each tensor, read it,
 * run the passes that want it, convert it to its output type, append it to the output. */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "quant/quant.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pare_load_opts pare_load_opts_of(const pare_convert_opts *o) {
    return (pare_load_opts){.tokenizer_pre = o ? o->tokenizer_pre : NULL};
}

pare_status pare_model_load_for(const char *in, pare_out_kind kind, const pare_convert_opts *o, pare_model **out,
                                pare_err *err) {
    const pare_load_opts lo = pare_load_opts_of(o);
    if (kind == PARE_OUT_GGUF) return pare_model_load_gguf_with(in, &lo, out, err);
    TRY(pare_model_load_with(in, &lo, out, err));
    pare_status st = (*out)->gguf_names ? pare_gguf_to_hf(*out, err) : PARE_OK;
    if (st) {
        pare_model_free(*out);
        *out = NULL;
    }
    return st;
}

pare_out_kind pare_out_kind_for(const char *path) {
    if (pare_str_ends_with(path, ".gguf")) return PARE_OUT_GGUF;
    if (pare_str_ends_with(path, ".safetensors")) return PARE_OUT_SAFETENSORS;
    return PARE_OUT_FOLDER;
}

/* ---- type conversion of one tensor ---------------------------------------------------- */

#define CONVERT_ROWS_PER_JOB 64

typedef struct {
    const pare_tensor *t;
    const uint8_t *src;
    /* When the source bytes are in a mapped file, each job reads its rows with
     * pare_map_pread into its own raw buffer instead of touching the mapping (see there). */
    const pare_map *map;
    uint64_t map_off; /* of src's first byte */
    uint8_t *raw;     /* per thread: CONVERT_ROWS_PER_JOB source rows */
    pare_type dst_type;
    uint8_t *dst;
    size_t src_row, dst_row;
    int64_t n_rows;
    float *scratch; /* per thread: CONVERT_ROWS_PER_JOB rows of f32 */
    int64_t scratch_stride;
    const pare_quant_traits *sq, *dq;
    /* row-local passes (apply_rows) on the f32 values between the two conversions */
    const pare_pass *passes;
    size_t n_passes;
    const pare_tensor *orig; /* the model's tensor, for the passes */
    int64_t row0;            /* row of orig where this piece starts */
    atomic_int failed;
    pare_status st;
    pare_err err;
} convert_job;

static void convert_rows(void *ctx, int64_t job, int thread) {
    convert_job *c = ctx;
    int64_t r0 = job * CONVERT_ROWS_PER_JOB, nr = c->n_rows - r0;
    if (nr > CONVERT_ROWS_PER_JOB) nr = CONVERT_ROWS_PER_JOB;
    int64_t n = nr * c->t->ne[0];
    uint8_t *dst = c->dst + (size_t)r0 * c->dst_row;
    float *f = c->scratch + (size_t)thread * (size_t)c->scratch_stride;
    const uint8_t *src;
    if (c->map) {
        uint8_t *raw = c->raw + (size_t)thread * CONVERT_ROWS_PER_JOB * c->src_row;
        pare_err e = {0};
        if (pare_map_pread(c->map, raw, c->map_off + (uint64_t)r0 * c->src_row, (size_t)nr * c->src_row, &e)) {
            int expect = 0;
            if (atomic_compare_exchange_strong(&c->failed, &expect, 1)) c->st = e.code ? e.code : PARE_EIO, c->err = e;
            return;
        }
        src = raw;
    } else {
        src = c->src + (size_t)r0 * c->src_row;
    }
    if (c->dst_type == PARE_TYPE_F32) f = (float *)dst; /* no second copy */
    /* The quant module's row functions (vectorised, also for f16/bf16) where it has them,
     * core's scalar conversions for the other plain types. */
    if (c->n_passes && c->t->type == PARE_TYPE_F32) {
        memcpy(f, src, (size_t)n * sizeof *f); /* the passes write to it */
    } else if (c->t->type == PARE_TYPE_F32 && c->dst_type != PARE_TYPE_F32) {
        f = (float *)src; /* read-only use below */
    } else if (c->sq && c->sq->dequantize) {
        c->sq->dequantize(src, f, n);
    } else {
        pare_plain_to_f32(c->t->type, src, f, n);
    }
    for (size_t p = 0; p < c->n_passes; p++) {
        const pare_pass *ps = &c->passes[p];
        if (!ps->wants(ps->ctx, c->orig)) continue;
        pare_err e = {0};
        if (ps->apply_rows(ps->ctx, c->orig, f, c->row0 + r0, nr, &e)) {
            int expect = 0;
            if (atomic_compare_exchange_strong(&c->failed, &expect, 1)) c->st = e.code ? e.code : PARE_EINTERNAL, c->err = e;
            return;
        }
    }
    if (c->dst_type == PARE_TYPE_F32)
        return; /* already in dst */
    if (c->dq && c->dq->quantize)
        c->dq->quantize(f, dst, n, NULL);
    else
        pare_f32_to_plain(c->dst_type, f, dst, n);
}

/* Where a tensor's bytes come from: memory, or (map != NULL) the file at map_off. */
typedef struct {
    const void *bytes;
    const pare_map *map;
    uint64_t map_off;
} src_bytes;

static pare_status convert_passes(const pare_tensor *t, src_bytes src, pare_type dst_type, void *dst, int n_threads,
                                  const pare_pass *passes, size_t n_passes, const pare_tensor *orig, int64_t row0,
                                  pare_err *err);

pare_status pare_tensor_convert(const pare_tensor *t, const void *bytes, pare_type dst_type, void *dst,
                                int n_threads, pare_err *err) {
    return convert_passes(t, (src_bytes){bytes, NULL, 0}, dst_type, dst, n_threads, NULL, 0, t, 0, err);
}

/* pare_tensor_convert with row-local passes run on the f32 values of each job; t may be a
 * piece of orig starting at its row row0. */
static pare_status convert_passes(const pare_tensor *t, src_bytes src, pare_type dst_type, void *dst, int n_threads,
                                  const pare_pass *passes, size_t n_passes, const pare_tensor *orig, int64_t row0,
                                  pare_err *err) {
    const pare_type_info *si = pare_type_get(t->type), *di = pare_type_get(dst_type);
    FAIL_IF(!si || !di, PARE_EINTERNAL, "tensor '%s': bad types", t->name);
    convert_job c = {.t = t, .src = src.bytes, .map = src.map, .map_off = src.map_off, .dst_type = dst_type,
                     .dst = dst, .n_rows = pare_tensor_nrows(t), .passes = passes, .n_passes = n_passes,
                     .orig = orig, .row0 = row0};
    atomic_init(&c.failed, 0);
    c.src_row = pare_type_row_size(t->type, t->ne[0]);
    c.dst_row = pare_type_row_size(dst_type, t->ne[0]);
    FAIL_IF(!c.dst_row && t->ne[0], PARE_EUNSUPPORTED, "tensor '%s': rows of %lld cannot be stored as %s",
            t->name, (long long)t->ne[0], di->name);
    c.sq = pare_quant_get(t->type);
    c.dq = pare_quant_get(dst_type);
    if (si->is_quantized) {
        FAIL_IF(!c.sq || !c.sq->dequantize, PARE_EUNSUPPORTED, "tensor '%s': pare cannot read type %s", t->name,
                si->name);
    }
    if (di->is_quantized) {
        FAIL_IF(!c.dq || !c.dq->quantize, PARE_EUNSUPPORTED, "pare cannot quantize to %s", di->name);
    } else {
        FAIL_IF(dst_type != PARE_TYPE_F32 && dst_type != PARE_TYPE_F16 && dst_type != PARE_TYPE_BF16 &&
                    dst_type != PARE_TYPE_F64,
                PARE_EUNSUPPORTED, "tensor '%s': cannot write type %s", t->name, di->name);
    }
    if (n_threads <= 0) n_threads = pare_default_threads();
    c.scratch_stride = CONVERT_ROWS_PER_JOB * t->ne[0];
    c.scratch = malloc((size_t)n_threads * (size_t)c.scratch_stride * sizeof(float) + sizeof(float));
    if (c.map) c.raw = malloc((size_t)n_threads * CONVERT_ROWS_PER_JOB * c.src_row + 1);
    if (!c.scratch || (c.map && !c.raw)) {
        free(c.scratch);
        free(c.raw);
        return pare_err_set(err, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
    }
    int64_t jobs = (c.n_rows + CONVERT_ROWS_PER_JOB - 1) / CONVERT_ROWS_PER_JOB;
    pare_parallel_for(n_threads, jobs, convert_rows, &c);
    free(c.scratch);
    free(c.raw);
    if (atomic_load(&c.failed)) {
        *err = c.err;
        return c.st;
    }
    return PARE_OK;
}

/* Converts f32 values (n_rows rows of ne0) to dst_type, threaded. */
typedef struct {
    const float *src;
    pare_type type;
    uint8_t *dst;
    int64_t ne0, n_rows;
    int64_t ne1, ne2; /* rows per matrix and matrices: a 3-D expert tensor's imatrix has a run per matrix (h-moe) */
    size_t dst_row;
    const float *imatrix;
    const pare_quant_traits *q;
} from_f32_job;

static void from_f32_rows(void *ctx, int64_t job, int thread) {
    (void)thread;
    from_f32_job *c = ctx;
    int64_t r0 = job * CONVERT_ROWS_PER_JOB, nr = c->n_rows - r0;
    if (nr > CONVERT_ROWS_PER_JOB) nr = CONVERT_ROWS_PER_JOB;
    const float *src = c->src + r0 * c->ne0;
    uint8_t *dst = c->dst + (size_t)r0 * c->dst_row;
    if (c->q) {
        /* Row by row: quantizers take importance weights per column, the same for each row. */
        for (int64_t r = 0; r < nr; r++) {
            const float *im = c->imatrix ? c->imatrix + (r0 + r) / c->ne1 % c->ne2 * c->ne0 : NULL; /* h-moe */
            c->q->quantize(src + r * c->ne0, dst + (size_t)r * c->dst_row, c->ne0, im);
        }
    } else {
        const pare_quant_traits *fast = pare_quant_get(c->type); /* vectorised f16/bf16 */
        if (fast && fast->quantize)
            fast->quantize(src, dst, nr * c->ne0, NULL);
        else
            pare_f32_to_plain(c->type, src, dst, nr * c->ne0);
    }
}

static pare_status f32_to_type(const pare_tensor *t, const float *src, pare_type type, void *dst,
                               const float *imatrix, int n_threads, pare_err *err) {
    const pare_type_info *ti = pare_type_get(type);
    from_f32_job c = {.src = src, .type = type, .dst = dst, .ne0 = t->ne[0], .n_rows = pare_tensor_nrows(t),
                      .ne1 = t->ne[1] > 0 ? t->ne[1] : 1, .ne2 = t->ne[2] > 0 ? t->ne[2] : 1, .imatrix = imatrix};
    c.dst_row = pare_type_row_size(type, t->ne[0]);
    FAIL_IF(!ti || (!c.dst_row && t->ne[0]), PARE_EUNSUPPORTED, "tensor '%s': rows of %lld cannot be stored as %s",
            t->name, (long long)t->ne[0], pare_type_name(type));
    if (ti->is_quantized) {
        c.q = pare_quant_get(type);
        FAIL_IF(!c.q || !c.q->quantize, PARE_EUNSUPPORTED, "pare cannot quantize to %s", ti->name);
        FAIL_IF(c.q->needs_imatrix && !imatrix, PARE_EUSAGE,
                "tensor '%s': %s needs importance weights (--imatrix)", t->name, ti->name);
    } else if (type != PARE_TYPE_F32 && type != PARE_TYPE_F16 && type != PARE_TYPE_BF16 && type != PARE_TYPE_F64) {
        return pare_err_set(err, PARE_EUNSUPPORTED, "tensor '%s': cannot write values as %s", t->name, ti->name);
    }
    int64_t jobs = (c.n_rows + CONVERT_ROWS_PER_JOB - 1) / CONVERT_ROWS_PER_JOB;
    pare_parallel_for(n_threads, jobs, from_f32_rows, &c);
    return PARE_OK;
}

/* ---- writers behind one interface ----------------------------------------------------- */

typedef struct {
    pare_gguf_writer *g;
    pare_st_writer *s;
} out_writer;

static pare_status writer_finish(out_writer *w, pare_err *err) {
    return w->g ? pare_gguf_writer_finish(w->g, err) : pare_st_writer_finish(w->s, err);
}

static void writer_free(out_writer *w) {
    pare_gguf_writer_free(w->g);
    pare_st_writer_free(w->s);
}

/* ---- folders: built beside the destination, published at the end ---------------------- */

/* The folder an HF output is built in, beside out and locked while pare lives (a killed run's
 * is removed by the next run in that folder: core's pare_sweep_stale). */
static pare_status make_tmp_folder(const char *out, bool force, pare_tmpdir **tmp, pare_err *err) {
    *tmp = NULL;
    if (pare_path_exists(out)) {
        FAIL_IF(!pare_path_is_dir(out), PARE_EUSAGE, "%s: exists and is not a folder", out);
        FAIL_IF(!force, PARE_EUSAGE, "%s: already exists (use --force to replace its files)", out);
    }
    return pare_tmpdir_new(out, "", tmp, err);
}

static pare_status publish_folder(const char *tmp, const char *out, pare_err *err) {
    if (!pare_path_exists(out)) {
        if (rename(tmp, out) != 0) return pare_err_errno(err, "%s: cannot rename the new folder into place", out);
        return PARE_OK;
    }
    DIR *d = opendir(tmp);
    if (!d) return pare_err_errno(err, "%s: cannot read", tmp);
    struct dirent *e;
    pare_status st = PARE_OK;
    while (!st && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *a = pare_path_join(tmp, e->d_name), *b = pare_path_join(out, e->d_name);
        if (!a || !b)
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        else if (rename(a, b) != 0)
            st = pare_err_errno(err, "%s: cannot move into place", b);
        free(a);
        free(b);
    }
    closedir(d);
    pare_remove_folder(tmp);
    return st;
}

/* ---- the loop ------------------------------------------------------------------------- */

static bool any_pass_wants(const pare_write_extra *x, const pare_tensor *t) {
    for (size_t p = 0; x && p < x->n_passes; p++)
        if (x->passes[p].wants(x->passes[p].ctx, t)) return true;
    return false;
}

/* true when every pass that wants t can run on pieces of rows. */
static bool row_passes(const pare_write_extra *x, const pare_tensor *t) {
    for (size_t p = 0; x && p < x->n_passes; p++)
        if (x->passes[p].wants(x->passes[p].ctx, t) && !x->passes[p].apply_rows) return false;
    return true;
}

/* Produces the output bytes of one tensor into *out (malloc'ed). */
static pare_status produce(const pare_tensor *t, src_bytes src, pare_type type, const pare_write_extra *x,
                           int n_threads, void **out, uint64_t out_bytes, double *rel_error, pare_err *err) {
    bool passes = any_pass_wants(x, t) || rel_error;
    const float *imatrix = (x && x->imatrix) ? x->imatrix(x->imatrix_ctx, t) : NULL;
    const pare_type_info *ti = pare_type_get(type);
    *out = malloc(out_bytes ? (size_t)out_bytes : 1);
    FAIL_IF(!*out, PARE_ENOMEM, "tensor '%s': out of memory for %llu bytes", t->name, (unsigned long long)out_bytes);
    if (!passes && !(ti->is_quantized && imatrix))
        return convert_passes(t, src, type, *out, n_threads, NULL, 0, t, 0, err);
    int64_t n = pare_tensor_nelements(t);
    float *v = malloc((size_t)n * sizeof(float) + sizeof(float));
    FAIL_IF(!v, PARE_ENOMEM, "tensor '%s': out of memory for its f32 values", t->name);
    pare_status st = convert_passes(t, src, PARE_TYPE_F32, v, n_threads, NULL, 0, t, 0, err);
    for (size_t p = 0; !st && x && p < x->n_passes; p++)
        if (x->passes[p].wants(x->passes[p].ctx, t)) st = x->passes[p].apply(x->passes[p].ctx, t, v, n_threads, err);
    if (!st) st = f32_to_type(t, v, type, *out, imatrix, n_threads, err);
    if (!st && rel_error) {
        /* Round trip the output and compare with what went in. */
        float *back = malloc((size_t)n * sizeof(float) + sizeof(float));
        pare_tensor view = *t;
        view.type = type;
        if (!back) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_tensor_convert(&view, *out, PARE_TYPE_F32, back, n_threads, err);
        double num = 0, den = 0;
        for (int64_t i = 0; !st && i < n; i++) {
            double d = (double)back[i] - v[i];
            num += d * d;
            den += (double)v[i] * v[i];
        }
        *rel_error = den > 0 ? sqrt(num / den) : 0;
        free(back);
    }
    free(v);
    return st;
}

/* ---- the background writer -----------------------------------------------------------
 * Writing and converting overlap: the main thread converts the next piece while a writer
 * thread hands the previous one to the kernel. One piece is in flight at a time, so the
 * memory held is two pieces (plus one whole tensor when a pass needs all of it). */

typedef struct {
    const void *data;
    uint64_t n;
    void *owned; /* freed after writing */
} piece;

typedef struct {
    out_writer *w;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    piece slot;
    bool full, quit;
    pare_status st; /* first error of the writer thread */
    pare_err err;
} bg_writer;

static void *bg_run(void *arg) {
    bg_writer *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->full && !b->quit) pthread_cond_wait(&b->cv, &b->mu);
        if (!b->full && b->quit) break;
        piece p = b->slot;
        pthread_mutex_unlock(&b->mu);
        pare_status st = PARE_OK;
        if (!b->st) {
            st = b->w->g ? pare_gguf_writer_add_part(b->w->g, p.data, p.n, &b->err)
                         : pare_st_writer_add_part(b->w->s, p.data, p.n, &b->err);
        }
        free(p.owned);
        pthread_mutex_lock(&b->mu);
        if (st && !b->st) b->st = st;
        b->full = false;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Queues a piece (waits while the previous one is written). Takes ownership of owned. */
static pare_status bg_put(bg_writer *b, piece p, pare_err *err) {
    pthread_mutex_lock(&b->mu);
    while (b->full) pthread_cond_wait(&b->cv, &b->mu);
    pare_status st = b->st;
    if (!st) {
        b->slot = p;
        b->full = true;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (st) {
        free(p.owned);
        *err = b->err;
    }
    return st;
}

/* Waits for the last piece and stops the thread; returns the writer's first error. */
static pare_status bg_stop(bg_writer *b, pare_err *err) {
    pthread_mutex_lock(&b->mu);
    b->quit = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->tid, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    if (b->st && err) *err = b->err;
    return b->st;
}

/* Rows per piece when a tensor is converted without passes: about 16 MiB of output. */
#define PIECE_BYTES (16u << 20)

static pare_status write_converted(const pare_tensor *t, src_bytes src, const pare_tensor *plan_t, bg_writer *bg,
                                   const pare_write_extra *x, int n_threads, pare_err *err) {
    size_t src_row = pare_type_row_size(t->type, t->ne[0]), dst_row = pare_type_row_size(plan_t->type, t->ne[0]);
    int64_t rows = pare_tensor_nrows(t);
    const bool rp = any_pass_wants(x, t); /* then all of them have apply_rows */
    int64_t per = dst_row ? (int64_t)(PIECE_BYTES / dst_row) : rows;
    if (per < 1) per = 1;
    for (int64_t r = 0; r < rows; r += per) {
        int64_t nr = rows - r < per ? rows - r : per;
        pare_tensor part = *t;
        part.ne[1] = nr;
        part.ne[2] = part.ne[3] = 1;
        part.read = NULL;
        part.data = NULL;
        void *buf = malloc((size_t)nr * dst_row + 1);
        FAIL_IF(!buf, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
        src_bytes ps = {src.map ? NULL : (const uint8_t *)src.bytes + (size_t)r * src_row, src.map,
                        src.map_off + (uint64_t)r * src_row};
        pare_status st = convert_passes(&part, ps, plan_t->type, buf, n_threads, rp ? x->passes : NULL,
                                        rp ? x->n_passes : 0, t, r, err);
        if (st) {
            free(buf);
            return st;
        }
        TRY(bg_put(bg, (piece){buf, (uint64_t)nr * dst_row, buf}, err));
    }
    return PARE_OK;
}

/* A tensor written unchanged from a mapped file, read in pieces with pare_map_pread; small
 * pieces, as nothing is computed on them: two are in memory at a time. */
#define COPY_PIECE_BYTES (4u << 20)

static pare_status write_copied(const pare_tensor *t, src_bytes src, bg_writer *bg, pare_err *err) {
    for (uint64_t done = 0; done < t->n_bytes;) {
        size_t k = t->n_bytes - done < COPY_PIECE_BYTES ? (size_t)(t->n_bytes - done) : COPY_PIECE_BYTES;
        void *buf = malloc(k);
        FAIL_IF(!buf, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
        pare_status st = pare_map_pread(src.map, buf, src.map_off + done, k, err);
        if (st) {
            free(buf);
            return st;
        }
        TRY(bg_put(bg, (piece){buf, k, buf}, err));
        done += k;
    }
    return PARE_OK;
}

static pare_status write_tensors(const pare_model *m, const pare_tensor *plan, const pare_write_extra *x,
                                 out_writer *w, const pare_convert_opts *o, pare_err *err) {
    uint64_t total = 0, done = 0;
    int n_threads = o->n_threads > 0 ? o->n_threads : pare_default_threads();
    for (size_t i = 0; i < m->n_tensors; i++) total += plan[i].n_bytes;
    bg_writer bg = {.w = w};
    pthread_mutex_init(&bg.mu, NULL);
    pthread_cond_init(&bg.cv, NULL);
    if (pthread_create(&bg.tid, NULL, bg_run, &bg) != 0) {
        pthread_mutex_destroy(&bg.mu);
        pthread_cond_destroy(&bg.cv);
        return pare_err_set(err, PARE_EIO, "cannot start the writer thread");
    }
    pare_status st = PARE_OK;
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        const void *src;
        void *tmp = NULL, *out = NULL;
        st = pare_tensor_bytes(t, &src, &tmp, err);
        if (st) break;
        /* Mapped bytes are read with pare_map_pread, never through the mapping: none of its
         * pages become resident, so there are none to release after the tensor. */
        src_bytes sb = {src, NULL, 0};
        sb.map = pare_model_map_of(m, t, &sb.map_off);
        bool passes = (any_pass_wants(x, t) && !row_passes(x, t)) || (x && x->rel_error) || (x && x->imatrix);
        if (x && x->rel_error) x->rel_error[i] = -1;
        if (plan[i].type == t->type && !any_pass_wants(x, t)) {
            /* Unchanged: read from the file (or the lazy copy) into the output. */
            if (sb.map) {
                st = write_copied(t, sb, &bg, err);
            } else {
                st = bg_put(&bg, (piece){src, t->n_bytes, tmp}, err);
                tmp = NULL;
            }
        } else if (!passes && t->n_dims <= 2) {
            st = write_converted(t, sb, &plan[i], &bg, x, n_threads, err);
        } else {
            st = produce(t, sb, plan[i].type, x, n_threads, &out, plan[i].n_bytes,
                         (x && x->rel_error) ? &x->rel_error[i] : NULL, err);
            if (!st) st = bg_put(&bg, (piece){out, plan[i].n_bytes, out}, err);
            else free(out);
        }
        if (tmp) {
            /* The converted pieces are queued; the source copy must outlive their conversion only. */
            free(tmp);
        }
        if (st) break;
        if (o->log) {
            char shape[96];
            fprintf(o->log, "%-40s %-7s -> %-7s %s\n", plan[i].name, pare_type_name(t->type),
                    pare_type_name(plan[i].type), pare_tensor_shape_str(&plan[i], shape, sizeof shape));
        }
        done += plan[i].n_bytes;
        if (o->progress) o->progress(o->progress_user, "writing", done, total);
    }
    pare_err werr = {0};
    pare_status ws = bg_stop(&bg, &werr);
    if (!st && ws) {
        *err = werr;
        st = ws;
    }
    return st;
}

pare_status pare_write_model(const pare_model *m, const char *out, const pare_type *types,
                             const pare_write_extra *x, const pare_convert_opts *o, const char *const *inputs,
                             size_t n_inputs, pare_err *err) {
    pare_out_kind kind = pare_out_kind_for(out);
    pare_tensor *plan = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *plan);
    FAIL_IF(!plan, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        const pare_tensor *t = &m->tensors[i];
        st = pare_tensor_init(&plan[i], t->name, types[i], t->n_dims, t->ne, err);
        if (!st && kind != PARE_OUT_GGUF && !pare_type_get(types[i])->st_name)
            st = pare_err_set(err, PARE_EUNSUPPORTED, "%s: safetensors cannot hold tensor '%s' as %s", out, t->name,
                              pare_type_name(types[i]));
    }
    pare_tmpdir *td = NULL;
    const char *folder = NULL;
    char *file = NULL;
    if (!st && kind == PARE_OUT_FOLDER) {
        st = make_tmp_folder(out, o->force, &td, err);
        if (!st) folder = pare_tmpdir_path(td);
        if (!st && !(file = pare_path_join(folder, "model.safetensors")))
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_hf_write_folder_meta(m, folder, true, err);
    }
    out_writer w = {0};
    if (!st) {
        if (kind == PARE_OUT_GGUF) {
            const pare_meta *meta = (x && x->meta_override) ? x->meta_override : &m->meta;
            st = pare_gguf_writer_open(out, meta, plan, m->n_tensors, o->force, inputs, n_inputs, &w.g, err);
        } else {
            /* transformers refuses safetensors files without format = pt; a job may give the
             * whole __metadata__ (convert keeps a foreign GGUF's metadata there) */
            pare_meta st_meta = {0};
            if (x && x->st_meta && kind == PARE_OUT_SAFETENSORS) st = pare_meta_copy(&st_meta, x->st_meta, err);
            else st = pare_meta_set_str(&st_meta, "format", "pt", 2, err);
            if (!st)
                st = pare_st_writer_open(file ? file : out, &st_meta, plan, m->n_tensors, file ? true : o->force,
                                         inputs, n_inputs, &w.s, err);
            pare_meta_free(&st_meta);
        }
    }
    if (!st) st = write_tensors(m, plan, x, &w, o, err);
    if (!st) st = writer_finish(&w, err);
    writer_free(&w);
    if (folder && !st) st = publish_folder(folder, out, err);
    pare_tmpdir_free(td); /* the folder, unless it was renamed into place */
    for (size_t i = 0; i < m->n_tensors; i++) pare_tensor_clear(&plan[i]);
    free(plan);
    free(file);
    return st;
}
