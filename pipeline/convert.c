/* pipeline/convert.c - pare convert: any model format to GGUF, safetensors or an HF folder,
 * one tensor at a time. */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "quant/quant.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

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
    pare_type dst_type;
    uint8_t *dst;
    size_t src_row, dst_row;
    int64_t n_rows;
    float *scratch; /* per thread: CONVERT_ROWS_PER_JOB rows of f32 */
    int64_t scratch_stride;
    const pare_quant_traits *sq, *dq;
} convert_job;

static void convert_rows(void *ctx, int64_t job, int thread) {
    convert_job *c = ctx;
    int64_t r0 = job * CONVERT_ROWS_PER_JOB, nr = c->n_rows - r0;
    if (nr > CONVERT_ROWS_PER_JOB) nr = CONVERT_ROWS_PER_JOB;
    int64_t n = nr * c->t->ne[0];
    const uint8_t *src = c->src + (size_t)r0 * c->src_row;
    uint8_t *dst = c->dst + (size_t)r0 * c->dst_row;
    float *f = c->scratch + (size_t)thread * (size_t)c->scratch_stride;
    if (c->t->type == PARE_TYPE_F32) {
        f = (float *)src; /* read-only use below */
    } else if (!pare_plain_to_f32(c->t->type, src, f, n)) {
        c->sq->dequantize(src, f, n);
    }
    if (!pare_f32_to_plain(c->dst_type, f, dst, n)) c->dq->quantize(f, dst, n, NULL);
}

pare_status pare_tensor_convert(const pare_tensor *t, const void *src_bytes, pare_type dst_type, void *dst,
                                int n_threads, pare_err *err) {
    const pare_type_info *si = pare_type_get(t->type), *di = pare_type_get(dst_type);
    FAIL_IF(!si || !di, PARE_EINTERNAL, "tensor '%s': bad types", t->name);
    convert_job c = {.t = t, .src = src_bytes, .dst_type = dst_type, .dst = dst, .n_rows = pare_tensor_nrows(t)};
    c.src_row = pare_type_row_size(t->type, t->ne[0]);
    c.dst_row = pare_type_row_size(dst_type, t->ne[0]);
    FAIL_IF(!c.dst_row && t->ne[0], PARE_EUNSUPPORTED, "tensor '%s': rows of %lld cannot be stored as %s",
            t->name, (long long)t->ne[0], di->name);
    if (si->is_quantized) {
        c.sq = pare_quant_get(t->type);
        FAIL_IF(!c.sq || !c.sq->dequantize, PARE_EUNSUPPORTED, "tensor '%s': pare cannot read type %s", t->name,
                si->name);
    }
    if (di->is_quantized) {
        c.dq = pare_quant_get(dst_type);
        FAIL_IF(!c.dq || !c.dq->quantize, PARE_EUNSUPPORTED, "pare cannot quantize to %s", di->name);
    } else {
        FAIL_IF(dst_type != PARE_TYPE_F32 && dst_type != PARE_TYPE_F16 && dst_type != PARE_TYPE_BF16 &&
                    dst_type != PARE_TYPE_F64,
                PARE_EUNSUPPORTED, "tensor '%s': cannot write type %s", t->name, di->name);
    }
    if (n_threads <= 0) n_threads = pare_default_threads();
    c.scratch_stride = CONVERT_ROWS_PER_JOB * t->ne[0];
    c.scratch = malloc((size_t)n_threads * (size_t)c.scratch_stride * sizeof(float) + sizeof(float));
    FAIL_IF(!c.scratch, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
    int64_t jobs = (c.n_rows + CONVERT_ROWS_PER_JOB - 1) / CONVERT_ROWS_PER_JOB;
    pare_parallel_for(n_threads, jobs, convert_rows, &c);
    free(c.scratch);
    return PARE_OK;
}

/* ---- choosing types ------------------------------------------------------------------- */

/* The converter's rule (convert_hf_to_gguf.py prepare_tensors): 1-D tensors, norms,
 * non-".weight" tensors and position/token-type embeddings stay F32. */
static bool gguf_keeps_f32(const pare_tensor *t) {
    if (t->n_dims <= 1 || pare_str_ends_with(t->name, "_norm.weight")) return true;
    if (!pare_str_ends_with(t->name, ".weight")) return true;
    return strncmp(t->name, "position_embd", 13) == 0 || strncmp(t->name, "token_types", 11) == 0;
}

static pare_type float_or_f32(pare_type t) {
    return (t == PARE_TYPE_F32 || t == PARE_TYPE_F16 || t == PARE_TYPE_BF16) ? t : PARE_TYPE_F32;
}

static pare_type pick_type(const pare_model *m, const pare_tensor *t, pare_out_kind kind, pare_type want) {
    const pare_type_info *ti = pare_type_get(t->type);
    if (kind == PARE_OUT_GGUF) {
        bool integer = ti && !ti->is_quantized && !ti->is_float;
        if (integer && t->type < PARE_TYPE_GGML_COUNT) return t->type; /* i8..i64 tensors pass through */
        if (gguf_keeps_f32(t)) {
            /* A GGUF source keeps its own choices for these (they are F32 there anyway). */
            return (m->format == PARE_FORMAT_GGUF && want == PARE_TYPE_INVALID) ? t->type : PARE_TYPE_F32;
        }
        if (want == PARE_TYPE_INVALID) {
            if (m->format == PARE_FORMAT_GGUF) return t->type;
            return float_or_f32(t->type);
        }
        if (want == PARE_TYPE_Q8_0 && t->ne[0] % 32) return PARE_TYPE_F16; /* the converter's fallback */
        return want;
    }
    /* safetensors: plain types only. */
    if (ti && !ti->is_quantized && ti->st_name && (want == PARE_TYPE_INVALID || !ti->is_float))
        return t->type == PARE_TYPE_F64 || t->type == PARE_TYPE_F8_E4M3 || t->type == PARE_TYPE_F8_E5M2
                   ? (want == PARE_TYPE_INVALID ? t->type : want)
                   : t->type;
    if (want != PARE_TYPE_INVALID && ti && (ti->is_float || ti->is_quantized)) return want;
    return PARE_TYPE_F32;
}

uint32_t pare_guess_file_type(const pare_model *m, const pare_type *types) {
    /* llama_ftype values for the types a converter writes. */
    static const struct {
        pare_type t;
        uint32_t ftype;
    } map[] = {{PARE_TYPE_F32, 0},  {PARE_TYPE_F16, 1},   {PARE_TYPE_Q4_0, 2},   {PARE_TYPE_Q4_1, 3},
               {PARE_TYPE_Q8_0, 7}, {PARE_TYPE_Q5_0, 8},  {PARE_TYPE_Q5_1, 9},   {PARE_TYPE_Q2_K, 10},
               {PARE_TYPE_Q6_K, 18}, {PARE_TYPE_IQ4_NL, 25}, {PARE_TYPE_IQ4_XS, 30}, {PARE_TYPE_BF16, 32},
               {PARE_TYPE_TQ1_0, 36}, {PARE_TYPE_TQ2_0, 37}};
    size_t count[sizeof map / sizeof map[0]] = {0};
    for (size_t i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].n_dims < 2) continue;
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (map[k].t == types[i]) count[k]++;
    }
    size_t best = 0;
    for (size_t k = 1; k < sizeof map / sizeof map[0]; k++)
        if (count[k] > count[best]) best = k;
    return map[best].ftype;
}

/* ---- writers behind one interface ----------------------------------------------------- */

typedef struct {
    pare_gguf_writer *g;
    pare_st_writer *s;
} out_writer;

static pare_status writer_add(out_writer *w, const void *data, uint64_t n, pare_err *err) {
    return w->g ? pare_gguf_writer_add(w->g, data, n, err) : pare_st_writer_add(w->s, data, n, err);
}

static pare_status writer_finish(out_writer *w, pare_err *err) {
    return w->g ? pare_gguf_writer_finish(w->g, err) : pare_st_writer_finish(w->s, err);
}

static void writer_free(out_writer *w) {
    pare_gguf_writer_free(w->g);
    pare_st_writer_free(w->s);
}

/* ---- the job -------------------------------------------------------------------------- */

static pare_status gguf_meta(const pare_model *m, const pare_type *types, pare_type want, pare_meta *meta,
                             pare_err *err) {
    TRY(pare_meta_copy(meta, &m->meta, err));
    uint64_t old = 0;
    bool keep = m->format == PARE_FORMAT_GGUF && want == PARE_TYPE_INVALID && pare_meta_get_u64(meta, "general.file_type", &old);
    if (!keep) TRY(pare_meta_set_uint(meta, "general.file_type", PARE_META_U32, pare_guess_file_type(m, types), err));
    if (!pare_meta_get(meta, "general.quantization_version"))
        TRY(pare_meta_set_uint(meta, "general.quantization_version", PARE_META_U32, 2, err));
    return PARE_OK;
}

static pare_status write_tensors(const pare_model *m, const pare_tensor *plan, out_writer *w,
                                 const pare_convert_opts *o, pare_err *err) {
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < m->n_tensors; i++) total += plan[i].n_bytes;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        const void *src;
        void *tmp = NULL, *out = NULL;
        TRY(pare_tensor_bytes(t, &src, &tmp, err));
        pare_status st = PARE_OK;
        if (plan[i].type == t->type) {
            st = writer_add(w, src, t->n_bytes, err);
        } else {
            out = malloc(plan[i].n_bytes ? (size_t)plan[i].n_bytes : 1);
            if (!out) st = pare_err_set(err, PARE_ENOMEM, "tensor '%s': out of memory", t->name);
            if (!st) st = pare_tensor_convert(t, src, plan[i].type, out, o->n_threads, err);
            if (!st) st = writer_add(w, out, plan[i].n_bytes, err);
        }
        free(out);
        free(tmp);
        pare_model_release_tensor(m, t);
        if (st) return st;
        if (o->log) {
            char shape[96];
            fprintf(o->log, "%-40s %-6s -> %-6s %s\n", plan[i].name, pare_type_name(t->type),
                    pare_type_name(plan[i].type), pare_tensor_shape_str(&plan[i], shape, sizeof shape));
        }
        done += plan[i].n_bytes;
        if (o->progress) o->progress(o->progress_user, "convert", done, total);
    }
    return PARE_OK;
}

/* Builds the output tensor list (name, type, shape) for a model. */
static pare_status make_plan(const pare_model *m, pare_out_kind kind, pare_type want, pare_tensor **out,
                             pare_type **types_out, pare_err *err) {
    pare_tensor *plan = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *plan);
    pare_type *types = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *types);
    if (!plan || !types) {
        free(plan);
        free(types);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    pare_status st = PARE_OK;
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        const pare_tensor *t = &m->tensors[i];
        types[i] = pick_type(m, t, kind, want);
        st = pare_tensor_init(&plan[i], t->name, types[i], t->n_dims, t->ne, err);
    }
    if (st) {
        for (size_t i = 0; i < m->n_tensors; i++) pare_tensor_clear(&plan[i]);
        free(plan);
        free(types);
        return st;
    }
    *out = plan;
    *types_out = types;
    return PARE_OK;
}

static pare_status open_writer(const pare_model *m, const char *path, pare_out_kind kind, const pare_tensor *plan,
                               const pare_type *types, const pare_convert_opts *o, const char *in,
                               out_writer *w, pare_err *err) {
    const char *inputs[1] = {in};
    if (kind == PARE_OUT_GGUF) {
        pare_meta meta = {0};
        pare_status st = gguf_meta(m, types, o->type, &meta, err);
        if (!st)
            st = pare_gguf_writer_open(path, &meta, plan, m->n_tensors, o->force, inputs, 1, &w->g, err);
        pare_meta_free(&meta);
        return st;
    }
    return pare_st_writer_open(path, NULL, plan, m->n_tensors, o->force, inputs, 1, &w->s, err);
}

/* Folder output is built in a temporary sibling folder and published at the end, so that a
 * failure leaves nothing behind. An existing folder is only replaced file by file with force. */
static pare_status make_tmp_folder(const char *out, bool force, char **tmp, pare_err *err) {
    *tmp = NULL;
    if (pare_path_exists(out)) {
        FAIL_IF(!pare_path_is_dir(out), PARE_EUSAGE, "%s: exists and is not a folder", out);
        FAIL_IF(!force, PARE_EUSAGE, "%s: already exists (use --force to replace its files)", out);
    }
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    char *t = malloc(n + 16);
    FAIL_IF(!t, PARE_ENOMEM, "out of memory");
    memcpy(t, out, n);
    memcpy(t + n, ".pare-XXXXXX", 13);
    if (!mkdtemp(t)) {
        free(t);
        return pare_err_errno(err, "%s: cannot create a temporary folder beside it", out);
    }
    *tmp = t;
    return PARE_OK;
}

static void remove_folder(const char *dir) {
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
        if (!a || !b) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        else if (rename(a, b) != 0) st = pare_err_errno(err, "%s: cannot move into place", b);
        free(a);
        free(b);
    }
    closedir(d);
    remove_folder(tmp);
    return st;
}

pare_status pare_convert(const char *in, const char *out, const pare_convert_opts *o, pare_err *err) {
    pare_out_kind kind = pare_out_kind_for(out);
    FAIL_IF(o->type != PARE_TYPE_INVALID && o->type != PARE_TYPE_F32 && o->type != PARE_TYPE_F16 &&
                o->type != PARE_TYPE_BF16 && o->type != PARE_TYPE_Q8_0,
            PARE_EUSAGE, "convert writes f32, f16, bf16 or q8_0 (use 'pare quantize' for %s)",
            pare_type_name(o->type));
    FAIL_IF(kind != PARE_OUT_GGUF && o->type == PARE_TYPE_Q8_0, PARE_EUSAGE,
            "%s: safetensors cannot hold q8_0; write a .gguf", out);
    pare_model *m = NULL;
    pare_status st;
    if (kind == PARE_OUT_GGUF) {
        st = pare_model_load_gguf(in, &m, err);
    } else {
        st = pare_model_load(in, &m, err);
        if (!st && m->gguf_names) st = pare_gguf_to_hf(m, err);
    }
    if (st) {
        pare_model_free(m);
        return st;
    }
    char *folder = NULL, *file = NULL;
    if (kind == PARE_OUT_FOLDER) {
        st = make_tmp_folder(out, o->force, &folder, err);
        if (!st && !(file = pare_path_join(folder, "model.safetensors")))
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_hf_write_folder_meta(m, folder, true, err);
    }
    pare_tensor *plan = NULL;
    pare_type *types = NULL;
    out_writer w = {0};
    if (!st) st = make_plan(m, kind, o->type, &plan, &types, err);
    if (!st) st = open_writer(m, file ? file : out, kind, plan, types, o, in, &w, err);
    if (!st) st = write_tensors(m, plan, &w, o, err);
    if (!st) st = writer_finish(&w, err);
    writer_free(&w);
    if (folder) {
        if (!st) st = publish_folder(folder, out, err);
        else remove_folder(folder);
    }
    if (plan)
        for (size_t i = 0; i < m->n_tensors; i++) pare_tensor_clear(&plan[i]);
    free(plan);
    free(types);
    free(file);
    free(folder);
    pare_model_free(m);
    return st;
}
