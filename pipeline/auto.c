/*
 * pipeline/auto.c - pare shrink --type auto: the smallest file within a quality budget (or
 * the best quality within a size), found by prediction and proved by measurement.
 *
 * 1. Importance: activation statistics of every linear layer over the calibration text
 *    (--calib); they weigh the quantization error and become the importance matrix of the
 *    types that need one (i-quants). With --imatrix FILE instead, its values are used.
 * 2. Error: for every tensor llama-quantize would quantize and every candidate type (F16,
 *    Q8_0, Q6_K, Q5_0, Q5_K, IQ4_NL, Q4_0, Q4_K, IQ4_XS, Q3_K, IQ3_S, IQ3_XXS, Q2_K, IQ2_S, IQ2_XS, IQ2_XXS: those
 *    whose block divides the rows and whose importance needs are met), the expected squared
 *    output error E = sum_j mean(x_j^2) * sum_i (W - deq(q(W)))_ij^2 on a sample of rows, as
 *    the writer quantizes them (same imatrix).
 * 3. Sensitivity: one gain per tensor role (attn_q, ffn_down, token_embd, ...), calibrated by
 *    real evaluations on the calibration text: the model with only that role at ~3.5 bits,
 *    its measured KL divergence over the predicted error. Predicted KLD of a plan =
 *    sum of gain(role) * E(tensor, type).
 * 4. Path: each tensor's candidates reduced to their lower convex hull in (bytes, predicted
 *    KLD); all hull steps sorted by predicted KLD added per byte saved. Step k of the path is
 *    the plan after the first k cheapest steps: a sequence of plans from all-F16 down to the
 *    smallest types, each the best the predictor knows for its size.
 * 5. Search: probes along the path, each a real evaluation on the gate text of the plan
 *    quantized in memory; the next probe is where the prediction, rescaled by the last
 *    measurement, meets the limit, else the middle of the bracket (largest passing step,
 *    smallest failing one). With --target-size: the first step whose file fits.
 * 6. Verdict: the plan is written as pare quantize would write it with its --tensor-type
 *    rules, and that file is evaluated; should it miss (it cannot unless quantization is not
 *    deterministic), the search steps back and writes again.
 */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "quant/plan.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* candidate types, largest first, with the ftype a file mostly of that type records */
/* candidate types, largest first, with the ftype a file mostly of that type records */
static const struct {
    pare_type type;
    int ftype;
} cands[] = {
    {PARE_TYPE_F16, PARE_FTYPE_F16},         {PARE_TYPE_Q8_0, PARE_FTYPE_Q8_0},
    {PARE_TYPE_Q6_K, PARE_FTYPE_Q6_K},       {PARE_TYPE_Q5_0, PARE_FTYPE_Q5_0},
    {PARE_TYPE_Q5_K, PARE_FTYPE_Q5_K_M},     {PARE_TYPE_IQ4_NL, PARE_FTYPE_IQ4_NL},
    {PARE_TYPE_Q4_0, PARE_FTYPE_Q4_0},       {PARE_TYPE_Q4_K, PARE_FTYPE_Q4_K_M},
    {PARE_TYPE_IQ4_XS, PARE_FTYPE_IQ4_XS},
    {PARE_TYPE_Q3_K, PARE_FTYPE_Q3_K_M},     {PARE_TYPE_IQ3_S, PARE_FTYPE_IQ3_S},
    {PARE_TYPE_IQ3_XXS, PARE_FTYPE_IQ3_XXS}, {PARE_TYPE_Q2_K, PARE_FTYPE_Q2_K},
    {PARE_TYPE_IQ2_S, PARE_FTYPE_IQ2_M},     {PARE_TYPE_IQ2_XS, PARE_FTYPE_IQ2_XS},
    {PARE_TYPE_IQ2_XXS, PARE_FTYPE_IQ2_XXS},
};
#define N_CANDS (sizeof cands / sizeof cands[0])
#define SAMPLE_ELEMS (1 << 16) /* values per tensor the error is measured on */
#define CAL_CHUNKS 8           /* chunks of the calibration text per sensitivity probe, at most
                                * a quarter of the gate's: the search's cost follows the gate's */
#define MAX_PROBES 12
#define PROBE_TOL 0.01 /* stop probing when the bracket's sizes differ by less than this share */
#define CAL_BPW 3.5            /* bits per weight of a role's sensitivity probe */
#define CAL_TENSORS 8          /* at most this many tensors of a role in its probe */

typedef struct {
    size_t ti;          /* index in the source model */
    int role;
    int n_c;            /* hull candidates, largest first */
    int c[N_CANDS];     /* indices into cands */
    uint64_t bytes[N_CANDS];
    double err[N_CANDS]; /* expected squared output error (unscaled) */
} tinfo;

typedef struct {
    int t, to; /* tensor (index into tinfo), hull position after the step */
    double slope;
} step;

typedef struct {
    const pare_model *sm; /* source (GGUF names), read-only: the gate's reference model when
                           * that is the source, else loaded here (own_sm) */
    pare_model *own_sm;
    tinfo *ti;
    size_t n_t;
    char **roles;
    double *gain;
    size_t n_roles;
    pare_imatrix *im;
    pare_act_stats acts;
    bool have_acts;
    char *im_path;    /* the imatrix file the writer uses, or NULL */
    bool im_made;     /* made here from --calib (recorded without its temporary path) */
    int *pos;         /* per tensor: hull position in the plan being built */
    pare_model *cm;   /* the candidate in memory: sm's tensors, borrowed, or quantized (owned) */
    pare_type *cm_type;
    const pare_convert_opts *o;
    FILE *log;
    int64_t gate_tokens; /* tokens the gate evaluates */
} auto_state;

/* "blk.3.ffn_down.weight" -> "ffn_down.weight" */
static const char *role_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return name;
    const char *p = strchr(name + 4, '.');
    return p ? p + 1 : name;
}

static int role_index(auto_state *s, const char *name, pare_err *err) {
    const char *r = role_of(name);
    for (size_t i = 0; i < s->n_roles; i++)
        if (!strcmp(s->roles[i], r)) return (int)i;
    char **nr = realloc(s->roles, (s->n_roles + 1) * sizeof *nr);
    if (!nr) return pare_err_set(err, PARE_ENOMEM, "out of memory"), -1;
    s->roles = nr;
    if (!(s->roles[s->n_roles] = strdup(r))) return pare_err_set(err, PARE_ENOMEM, "out of memory"), -1;
    return (int)s->n_roles++;
}

static bool type_needs_imatrix(pare_type t) {
    return t == PARE_TYPE_IQ2_XXS || t == PARE_TYPE_IQ2_XS || t == PARE_TYPE_IQ2_S || t == PARE_TYPE_IQ1_S ||
           t == PARE_TYPE_IQ1_M;
}

static const float *imatrix_of(const auto_state *s, const pare_tensor *t) {
    const float *v = NULL;
    pare_err e = {0};
    if (s->im) pare_imatrix_for_tensor(s->im, t, &v, &e);
    return v;
}

/* Importance of each input column (mean x^2), or NULL (uniform). */
static double *col_weights(const auto_state *s, const pare_tensor *t) {
    const int64_t n = t->ne[0];
    double *w = malloc((size_t)n * sizeof *w);
    if (!w) return NULL;
    const double *a = s->have_acts ? pare_act_stats_find(&s->acts, t->name, n) : NULL;
    const float *v = a ? NULL : imatrix_of(s, t);
    for (int64_t j = 0; j < n; j++)
        w[j] = a ? a[j] / (double)(s->acts.n_tokens ? s->acts.n_tokens : 1) : v ? v[j] : 1.0;
    return w;
}

/* Where a source tensor's rows come from: its mapped file, read with pread (the mapping's
 * pages are not touched: they would stay in the process's resident memory, and the search
 * runs beside an evaluator of the same model), or for a tensor not in a mapped file (lazy)
 * its bytes, read once. */
typedef struct {
    const pare_tensor *t;
    const pare_map *map;
    uint64_t off;
    const void *all; /* the bytes when not mapped */
    void *tmp;       /* owned copy behind all, or NULL */
    void *raw;       /* one row of the source type */
    size_t rb;
} src_rows;

static void src_close(src_rows *r) {
    free(r->tmp);
    free(r->raw);
}

static pare_status src_open(const auto_state *s, const pare_tensor *t, src_rows *r, pare_err *err) {
    *r = (src_rows){.t = t, .rb = pare_type_row_size(t->type, t->ne[0])};
    r->map = pare_model_map_of(s->sm, t, &r->off);
    FAIL_IF(!(r->raw = malloc(r->rb + 64)), PARE_ENOMEM, "out of memory");
    pare_status st = r->map ? PARE_OK : pare_tensor_bytes(t, &r->all, &r->tmp, err);
    if (st) src_close(r);
    return st;
}

/* Rows r0, r0 + step, ... (n of them) as f32 into dst. */
static pare_status src_f32(src_rows *r, int64_t r0, int64_t step, int64_t n, float *dst, pare_err *err) {
    const int64_t ne0 = r->t->ne[0];
    pare_status st = PARE_OK;
    for (int64_t i = 0; !st && i < n; i++) {
        const uint64_t at = (uint64_t)(r0 + i * step) * r->rb;
        const void *row = r->raw;
        if (r->map) st = pare_map_pread(r->map, r->raw, r->off + at, r->rb, err);
        else row = (const uint8_t *)r->all + at;
        if (!st && !pare_plain_to_f32(r->t->type, row, dst + i * ne0, ne0))
            st = pare_dequantize(r->t->type, row, dst + i * ne0, 1, ne0, 1, err);
    }
    return st;
}

/* Measures every candidate's error on a sample of t's rows and keeps the hull. */
static pare_status measure(auto_state *s, tinfo *ti, pare_err *err) {
    const pare_tensor *t = &s->sm->tensors[ti->ti];
    const int64_t ne0 = t->ne[0], rows = pare_tensor_nrows(t);
    int64_t step_r = 1;
    while (rows / step_r * ne0 > SAMPLE_ELEMS && step_r < rows) step_r++;
    const int64_t ns = (rows + step_r - 1) / step_r;
    float *smp = malloc((size_t)(ns * ne0) * sizeof(float)), *deq = malloc((size_t)(ns * ne0) * sizeof(float));
    void *q = malloc((size_t)(ns * ne0) * 4 + 4096);
    double *w = col_weights(s, t);
    double *w2 = NULL;
    pare_status st = (smp && deq && q && w) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    src_rows src;
    if (!st && !(st = src_open(s, t, &src, err))) {
        st = src_f32(&src, 0, step_r, ns, smp, err);
        src_close(&src);
    }
    /* a tied embedding is also the output head: its rows' errors count twice, as looked up
     * (one row per token, uniform) and as the head's (weighted by its inputs) */
    const bool tied = !strcmp(t->name, "token_embd.weight") && !pare_model_find(s->sm, "output.weight");
    if (!st && tied && s->have_acts) {
        const double *a = pare_act_stats_find(&s->acts, "output.weight", ne0);
        if (a && (w2 = malloc((size_t)ne0 * sizeof *w2)))
            for (int64_t j = 0; j < ne0; j++) w2[j] = a[j] / (double)s->acts.n_tokens;
    }
    const bool embd = !strcmp(t->name, "token_embd.weight");
    const float *imx = imatrix_of(s, t);
    uint64_t bytes[N_CANDS];
    double errs[N_CANDS];
    int ok[N_CANDS], n_ok = 0;
    for (size_t c = 0; !st && c < N_CANDS; c++) {
        const pare_type ty = cands[c].type;
        if (ne0 % pare_type_get(ty)->block_size || !pare_quant_can_quantize(ty)) continue;
        if (type_needs_imatrix(ty) && !imx) continue;
        st = pare_quantize(ty, smp, q, ns, ne0, imx, s->o->n_threads, err);
        if (!st) st = pare_dequantize(ty, q, deq, ns, ne0, s->o->n_threads, err);
        if (st) break;
        double e = 0;
        for (int64_t r = 0; r < ns; r++) {
            const float *x = smp + r * ne0, *y = deq + r * ne0;
            for (int64_t j = 0; j < ne0; j++) {
                const double d = (double)x[j] - y[j];
                /* an embedding row is added as it is: mean over tokens of ||delta||^2 */
                e += d * d * (embd ? 1.0 / (double)rows : w[j]) + (w2 ? d * d * w2[j] : 0);
            }
        }
        st = pare_tensor_nbytes(ty, t->n_dims, t->ne, &bytes[n_ok], err);
        errs[n_ok] = e * (double)step_r;
        ok[n_ok++] = (int)c;
    }
    /* lower convex hull over (bytes decreasing, error increasing) */
    ti->n_c = 0;
    for (int k = 0; !st && k < n_ok; k++) {
        while (ti->n_c > 0 && ti->err[ti->n_c - 1] >= errs[k]) ti->n_c--; /* dominated: bigger and worse */
        while (ti->n_c >= 2) {
            const int a = ti->n_c - 2, b = ti->n_c - 1;
            const double s1 = (ti->err[b] - ti->err[a]) / (double)(ti->bytes[a] - ti->bytes[b]);
            const double s2 = (errs[k] - ti->err[b]) / (double)(ti->bytes[b] - bytes[k]);
            if (s1 < s2) break;
            ti->n_c--;
        }
        ti->c[ti->n_c] = ok[k];
        ti->bytes[ti->n_c] = bytes[k];
        ti->err[ti->n_c++] = errs[k];
    }
    if (!st && !ti->n_c) st = pare_err_set(err, PARE_EUNSUPPORTED, "tensor '%s': no candidate type fits its rows", t->name);
    free(smp);
    free(deq);
    free(q);
    free(w);
    free(w2);
    return st;
}

#define SET_ROWS 1024 /* rows converted and quantized at a time: a few MB, not the tensor in f32 */

/* Sets the in-memory candidate's tensor k to hull position p: back to the source's bytes when
 * that is the source's type, else quantized from the source (read by rows with pread), and
 * the source's pages given back (the candidate's evaluator reads the quantized copy). */
static pare_status set_tensor(auto_state *s, size_t k, int p, pare_err *err) {
    const tinfo *ti = &s->ti[k];
    const pare_type ty = cands[ti->c[p]].type;
    pare_tensor *ct = &s->cm->tensors[ti->ti];
    if (s->cm_type[k] == ty) return PARE_OK;
    const pare_tensor *t = &s->sm->tensors[ti->ti];
    if (ty == t->type) {
        pare_tensor_set_owned(ct, NULL, 0);
        ct->data = t->data;
        ct->read = t->read;
        ct->read_ctx = t->read_ctx;
        ct->n_bytes = t->n_bytes;
        ct->type = ty;
        s->cm_type[k] = ty;
        return PARE_OK;
    }
    const int64_t ne0 = t->ne[0], rows = pare_tensor_nrows(t);
    const size_t qrow = pare_type_row_size(ty, ne0);
    const float *imx = imatrix_of(s, t);
    /* an expert stack's importance is per expert (ne[0] values for each of ne[2]): one
     * expert's rows at a time, with its slice */
    const bool per_expert = imx && t->n_dims == 3 && t->ne[2] > 1;
    const int64_t blk = per_expert ? t->ne[1] : rows < SET_ROWS ? rows : SET_ROWS;
    float *v = malloc((size_t)(blk * ne0) * sizeof(float));
    uint8_t *q = malloc(ti->bytes[p] ? ti->bytes[p] : 1);
    pare_status st = (v && q) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    src_rows src;
    if (!st && !(st = src_open(s, t, &src, err))) {
        for (int64_t r = 0; !st && r < rows; r += blk) {
            const int64_t n = rows - r < blk ? rows - r : blk;
            const float *im = per_expert ? imx + (r / t->ne[1]) * ne0 : imx;
            st = src_f32(&src, r, 1, n, v, err);
            if (!st) st = pare_quantize(ty, v, q + (size_t)r * qrow, n, ne0, im, s->o->n_threads, err);
        }
        src_close(&src);
    }
    free(v);
    if (st) {
        free(q);
        return st;
    }
    pare_tensor_set_owned(ct, q, ti->bytes[p]);
    ct->type = ty;
    ct->read = NULL;
    ct->source = -1;
    s->cm_type[k] = ty;
    pare_model_release_tensor(s->sm, t);
    return PARE_OK;
}

static pare_status set_plan(auto_state *s, const int *pos, pare_err *err) {
    for (size_t k = 0; k < s->n_t; k++) TRY(set_tensor(s, k, pos[k], err));
    pare_release_free_memory(); /* the conversion buffers and the replaced tensors */
    return PARE_OK;
}

/* A model whose tensors are sm's, borrowed (no second mapping or copy): the candidate. */
static pare_status model_view(const pare_model *sm, pare_model **out, pare_err *err) {
    pare_model *m = pare_model_new(sm->format, sm->path);
    FAIL_IF(!m, PARE_ENOMEM, "out of memory");
    m->version = sm->version;
    m->gguf_names = sm->gguf_names;
    m->alignment = sm->alignment;
    pare_status st = sm->arch && !(m->arch = strdup(sm->arch)) ? pare_err_set(err, PARE_ENOMEM, "out of memory") : PARE_OK;
    if (!st) st = pare_meta_copy(&m->meta, &sm->meta, err);
    for (size_t i = 0; !st && i < sm->n_tensors; i++) {
        const pare_tensor *t = &sm->tensors[i];
        pare_tensor v;
        st = pare_tensor_init(&v, t->name, t->type, t->n_dims, t->ne, err);
        if (st) break;
        v.data = t->data;
        v.read = t->read; /* a lazy tensor (an HF folder's permuted q/k): sm's reader, borrowed */
        v.read_ctx = t->read_ctx;
        v.n_bytes = t->n_bytes;
        v.file_offset = t->file_offset;
        v.source = -1;
        st = pare_model_push_tensor(m, &v, err);
        if (st) pare_tensor_clear(&v);
    }
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

/* Positions of path step k: the first k steps applied. */
static void plan_at(const auto_state *s, const step *path, size_t k, int *pos) {
    memset(pos, 0, s->n_t * sizeof *pos);
    for (size_t i = 0; i < k; i++) pos[path[i].t] = path[i].to;
}

/* ------------------------------------------------------------------ importance */

static pare_status importance(auto_state *s, const pare_shrink_job *job, const char *workdir,
                              pare_err *err) {
    if (job->imatrix_path) {
        TRY(pare_imatrix_load(job->imatrix_path, &s->im, err));
        s->im_path = strdup(job->imatrix_path);
        FAIL_IF(!s->im_path, PARE_ENOMEM, "out of memory");
    }
    if (!job->calib_path) return PARE_OK;
    const int ctx = job->calib_ctx > 0 ? job->calib_ctx : PARE_PPL_DEFAULT_CTX;
    /* no more of the calibration text than the gate evaluates, unless --calib-tokens says */
    const int64_t max_tokens = job->calib_tokens > 0 ? job->calib_tokens : s->gate_tokens;
    const double t0 = pare_now();
    TRY(pare_act_stats_collect_model(s->sm, job->calib_path, ctx, max_tokens, s->o->n_threads, &s->acts, err));
    s->have_acts = true;
    if (s->log)
        fprintf(s->log, "auto: activation statistics over %lld tokens of %s in %.1f s\n", (long long)s->acts.n_tokens,
                job->calib_path, pare_now() - t0);
    if (s->im) return PARE_OK; /* the user's imatrix quantizes; the statistics weigh the errors */
    pare_imatrix *im = pare_imatrix_new();
    FAIL_IF(!im, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    for (size_t i = 0; !st && i < s->acts.n; i++) {
        if (!strcmp(s->acts.names[i], "output.weight")) continue; /* as llama-imatrix */
        float *raw = malloc((size_t)s->acts.n_in[i] * sizeof(float));
        if (!raw) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        for (int64_t j = 0; j < s->acts.n_in[i]; j++)
            raw[j] = (float)(s->acts.sumsq[i][j] / (double)s->acts.n_tokens * (double)s->acts.n_calls);
        st = pare_imatrix_add(im, s->acts.names[i], s->acts.n_calls, raw, s->acts.n_in[i], err);
        free(raw);
    }
    /* the calibration text's base name: the file's bytes do not depend on where it was run */
    const char *base = strrchr(job->calib_path, '/');
    if (!st) st = pare_imatrix_set_dataset(im, s->acts.n_calls, base ? base + 1 : job->calib_path, err);
    if (!st && !(s->im_path = pare_path_join(workdir, "imatrix.dat"))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = pare_imatrix_save(im, s->im_path, true, err);
    pare_imatrix_free(im);
    if (!st) st = pare_imatrix_load(s->im_path, &s->im, err);
    s->im_made = true;
    return st;
}

/* ------------------------------------------------------------------ writing */

/* The most common chosen type (by weights) decides general.file_type. */
static int plan_ftype(const auto_state *s, const int *pos) {
    double w[N_CANDS] = {0};
    for (size_t k = 0; k < s->n_t; k++)
        w[s->ti[k].c[pos[k]]] += (double)pare_tensor_nelements(&s->sm->tensors[s->ti[k].ti]);
    size_t best = 0;
    for (size_t c = 1; c < N_CANDS; c++)
        if (w[c] > w[best]) best = c;
    return cands[best].ftype;
}

/* The plan as rules: one glob per role when every layer agrees, else one per tensor. */
static pare_status plan_rules(const auto_state *s, const int *pos, pare_auto_info *info, pare_err *err) {
    size_t cap = 0;
    for (size_t k = 0; k < s->n_t; k++) cap += strlen(s->sm->tensors[s->ti[k].ti].name) + 16;
    info->rules = calloc(cap + s->n_roles * 32 + 1, 1);
    info->globs = calloc(s->n_t + 1, sizeof *info->globs);
    info->types = calloc(s->n_t + 1, sizeof *info->types);
    FAIL_IF(!info->rules || !info->globs || !info->types, PARE_ENOMEM, "out of memory");
    char *p = info->rules;
    for (size_t r = 0; r < s->n_roles; r++) {
        pare_type ty = PARE_TYPE_INVALID;
        bool same = true, layered = false;
        for (size_t k = 0; k < s->n_t; k++) {
            if (s->ti[k].role != (int)r) continue;
            const pare_type tk = cands[s->ti[k].c[pos[k]]].type;
            layered = layered || !strncmp(s->sm->tensors[s->ti[k].ti].name, "blk.", 4);
            if (ty != PARE_TYPE_INVALID && tk != ty) same = false;
            ty = tk;
        }
        for (size_t k = 0; k < s->n_t; k++) {
            if (s->ti[k].role != (int)r) continue;
            const char *name = s->sm->tensors[s->ti[k].ti].name;
            char glob[160];
            if (same && layered) snprintf(glob, sizeof glob, "blk.*.%s", s->roles[r]);
            else snprintf(glob, sizeof glob, "%s", name);
            info->globs[info->n_rules] = p;
            p += sprintf(p, "%s", glob) + 1;
            info->types[info->n_rules++] = cands[s->ti[k].c[pos[k]]].type;
            if (same) break;
        }
    }
    return PARE_OK;
}

static pare_status write_plan(auto_state *s, const char *src, const char *out, const int *pos, pare_auto_info *info,
                              pare_err *err) {
    pare_auto_info_clear_rules(info);
    TRY(plan_rules(s, pos, info, err));
    info->ftype = plan_ftype(s, pos);
    pare_quantize_job qj = {.ftype = info->ftype, .output_type = PARE_TYPE_INVALID,
                            .token_embd_type = PARE_TYPE_INVALID, .override_globs = (const char *const *)info->globs,
                            .override_types = info->types, .n_overrides = info->n_rules, .imatrix_path = s->im_path};
    pare_model *m = NULL;
    pare_quant_setup qs = {0};
    pare_status st = pare_model_load_gguf(src, &m, err);
    if (!st) st = pare_quant_setup_for(m, &qj, &qs, err);
    if (!st && s->im_made) {
        /* no temporary path in the file: the dataset (the calibration text's name) says it */
        free(qs.im->path);
        qs.im->path = NULL;
        st = pare_quant_plan_set_meta(&qs.meta, qj.ftype, qs.im, err);
    }
    /* the writer's plan must be the one chosen */
    for (size_t k = 0; !st && k < s->n_t; k++) {
        const char *name = s->sm->tensors[s->ti[k].ti].name;
        for (size_t i = 0; i < m->n_tensors; i++)
            if (!strcmp(m->tensors[i].name, name) && qs.types[i] != cands[s->ti[k].c[pos[k]]].type)
                st = pare_err_set(err, PARE_EINTERNAL, "tensor '%s': the writer's plan gives %s, the search chose %s",
                                  name, pare_type_name(qs.types[i]), pare_type_name(cands[s->ti[k].c[pos[k]]].type));
    }
    pare_write_extra x = {.imatrix = qs.im ? pare_quant_setup_imatrix : NULL, .imatrix_ctx = &qs,
                          .meta_override = &qs.meta};
    pare_convert_opts wo = *s->o;
    wo.force = true;
    const char *inputs[1] = {src};
    /* the candidate holds the plan's tensors already quantized (the same quantizer, rows and
     * importance as the writer's: tests/cli/auto_fixture.sh checks that pare quantize with the
     * printed rules writes the same bytes), so the writer copies them instead of quantizing
     * the model once more */
    pare_model *w = NULL;
    if (!st) st = set_plan(s, pos, err);
    if (!st) st = model_view(m, &w, err); /* the file's order, the candidate's bytes */
    for (size_t i = 0; !st && i < w->n_tensors; i++) {
        pare_tensor *t = &w->tensors[i];
        const pare_tensor *c = pare_model_find(s->cm, t->name);
        if (!c) {
            st = pare_err_set(err, PARE_EINTERNAL, "%s: tensor '%s' is not in the search's model", src, t->name);
            break;
        }
        t->type = c->type;
        t->data = c->data;
        t->n_bytes = c->n_bytes;
    }
    if (!st) st = pare_write_model(w, out, qs.types, &x, &wo, inputs, 1, err);
    pare_model_free(w);
    pare_quant_setup_free(&qs);
    pare_model_free(m);
    return st;
}

void pare_auto_info_clear_rules(pare_auto_info *info) {
    free(info->rules);
    free(info->globs);
    free(info->types);
    info->rules = NULL;
    info->globs = NULL;
    info->types = NULL;
    info->n_rules = 0;
}

void pare_auto_info_free(pare_auto_info *info) {
    pare_auto_info_clear_rules(info);
    free(info->probes);
    memset(info, 0, sizeof *info);
}

/* ------------------------------------------------------------------ the search */

static bool passes(const pare_shrink_job *job, double ref_ppl, const pare_ppl_result *r, double *stress) {
    const double inc = ref_ppl > 0 ? r->ppl / ref_ppl - 1.0 : 0;
    double sx = 0;
    bool ok = true;
    if (job->max_ppl_increase >= 0) {
        ok = ok && inc <= job->max_ppl_increase;
        const double lim = log1p(job->max_ppl_increase);
        sx = fmax(sx, lim > 0 ? log1p(inc) / lim : (inc > 0 ? 1e9 : 0));
    }
    if (job->max_kld >= 0) {
        ok = ok && r->kld_mean <= job->max_kld;
        sx = fmax(sx, job->max_kld > 0 ? r->kld_mean / job->max_kld : (r->kld_mean > 0 ? 1e9 : 0));
    }
    *stress = sx;
    return ok;
}

static pare_status probe(auto_state *s, pare_evalx *gate, const pare_shrink_job *job, double ref_ppl,
                         const step *path, size_t k, const uint64_t *bytes, pare_auto_info *info, bool *ok,
                         double *stress, pare_err *err) {
    const double t0 = pare_now();
    plan_at(s, path, k, s->pos);
    TRY(set_plan(s, s->pos, err));
    pare_ppl_result r = {0};
    pare_status st = pare_evalx_model(gate, s->cm, job->max_kld >= 0, &r, err);
    if (!st) {
        const double rp = job->max_kld >= 0 ? r.ppl_base_exact : ref_ppl;
        *ok = passes(job, rp, &r, stress);
        pare_auto_probe *pr = &info->probes[info->n_probes++];
        *pr = (pare_auto_probe){.step = (int64_t)k, .tensor_bytes = bytes[k], .ppl = r.ppl,
                                .ppl_increase = rp > 0 ? r.ppl / rp - 1 : 0, .kld = job->max_kld >= 0 ? r.kld_mean : -1,
                                .passed = *ok};
        char kld[48] = "";
        if (job->max_kld >= 0) snprintf(kld, sizeof kld, ", mean KLD %.5f", r.kld_mean);
        if (s->log)
            fprintf(s->log, "auto: probe %d: step %zu, %.3f MiB of weights, PPL %+.3f%%%s, %s (%.1f s)\n", info->n_probes,
                    k, (double)bytes[k] / 1048576.0, 100 * pr->ppl_increase, kld, *ok ? "passes" : "fails",
                    pare_now() - t0);
    }
    pare_ppl_result_free(&r);
    return st;
}

static int cmp_step(const void *a, const void *b) {
    const step *x = a, *y = b;
    if (x->slope != y->slope) return x->slope < y->slope ? -1 : 1;
    return x->t != y->t ? (x->t < y->t ? -1 : 1) : (x->to < y->to ? -1 : 1);
}

static uint64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Sensitivity per role: evaluations of the model with one role at about CAL_BPW bits. */
static pare_status calibrate(auto_state *s, const pare_shrink_job *job, pare_err *err) {
    const char *text = job->calib_path ? job->calib_path : job->text_path;
    pare_evalx *cal = NULL;
    int ctx = job->ctx > 0 ? job->ctx : PARE_PPL_DEFAULT_CTX;
    pare_status st;
    /* a short calibration text gets shorter chunks, down to 16 tokens */
    for (;;) {
        pare_err e2 = {0};
        int64_t n = s->gate_tokens / 4 / ctx;
        n = n < 1 ? 1 : n > CAL_CHUNKS ? CAL_CHUNKS : n;
        st = pare_evalx_open_model(s->sm, text, ctx, (int)n, s->o, &cal, &e2);
        if (!st) pare_evalx_keep_base(cal);
        if (!st || e2.code != PARE_EINPUT || ctx <= 16) {
            if (st) *err = e2;
            break;
        }
        ctx /= 2;
    }
    if (st) return st;
    const double t0 = pare_now();
    double *meas = calloc(s->n_roles + 1, sizeof *meas), *pred = calloc(s->n_roles + 1, sizeof *pred);
    if (!meas || !pred) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    /* the top plan is the source itself when every tensor's largest candidate is its own type
     * (an F16 source): its divergence from the source is nil, no evaluation needed */
    bool top_is_source = true;
    for (size_t k = 0; k < s->n_t; k++)
        top_is_source = top_is_source && cands[s->ti[k].c[0]].type == s->sm->tensors[s->ti[k].ti].type;
    for (size_t r = 0; !st && r <= s->n_roles; r++) {
        /* r == n_roles: the all-F16 (top) plan, the floor the others are measured from */
        if (r == s->n_roles && top_is_source) break;
        /* at most CAL_TENSORS of the role's tensors (every stride-th layer): the gain is the
         * measured KLD over their predicted error either way, and the probe's quantization
         * then costs the same whatever the depth */
        size_t n_in_role = 0, seen = 0;
        for (size_t k = 0; k < s->n_t; k++) n_in_role += s->ti[k].role == (int)r;
        const size_t stride = (n_in_role + CAL_TENSORS - 1) / CAL_TENSORS;
        for (size_t k = 0; k < s->n_t; k++) {
            int p = 0;
            if (s->ti[k].role == (int)r && seen++ % (stride ? stride : 1) == 0) {
                /* the hull's type nearest CAL_BPW. (Preferring types that quantize fast, K-quants
                 * instead of i-quants, made the path worse: on fortune-llama +1% PPL took
                 * 1,612,032 bytes instead of 1,486,336; the gains do not carry over well.) */
                const pare_tensor *t = &s->sm->tensors[s->ti[k].ti];
                double best = 1e30;
                for (int h = 1; h < s->ti[k].n_c; h++) {
                    const double bpw = 8.0 * (double)s->ti[k].bytes[h] / (double)pare_tensor_nelements(t);
                    if (fabs(bpw - CAL_BPW) < best) best = fabs(bpw - CAL_BPW), p = h;
                }
                pred[r] += s->ti[k].err[p];
            }
            s->pos[k] = p;
        }
        pare_ppl_result res = {0};
        st = set_plan(s, s->pos, err);
        if (!st) st = pare_evalx_model(cal, s->cm, true, &res, err);
        if (!st) meas[r] = res.kld_mean;
        pare_ppl_result_free(&res);
    }
    if (!st && s->log)
        fprintf(s->log, "auto: %zu sensitivity evaluations of %d x %d tokens in %.1f s\n", s->n_roles + !top_is_source,
                pare_evalx_chunks(cal), pare_evalx_ctx(cal), pare_now() - t0);
    double gsum = 0;
    int gn = 0;
    for (size_t r = 0; !st && r < s->n_roles; r++) {
        const double d = meas[r] - meas[s->n_roles];
        s->gain[r] = pred[r] > 0 && d > 0 ? d / pred[r] : -1;
        if (s->gain[r] > 0) gsum += log(s->gain[r]), gn++;
    }
    /* a role whose probe moved nothing measurable: the geometric mean of the others */
    for (size_t r = 0; !st && r < s->n_roles; r++) {
        if (s->gain[r] <= 0) s->gain[r] = gn ? exp(gsum / gn) * 0.1 : 1.0;
        if (s->log) fprintf(s->log, "auto: sensitivity %-22s %.4g (KLD %.5f at ~%.1f bits)\n", s->roles[r], s->gain[r],
                            meas[r], CAL_BPW);
    }
    free(meas);
    free(pred);
    pare_evalx_free(cal);
    return st;
}

pare_status pare_auto_quantize(const char *src, const pare_model *src_model, const char *out, const char *workdir,
                               const pare_shrink_job *job, pare_evalx *gate, double ref_ppl,
                               const pare_convert_opts *o, FILE *log, pare_auto_info *info, pare_err *err) {
    memset(info, 0, sizeof *info);
    auto_state s = {.o = o, .log = log,
                    .gate_tokens = (int64_t)pare_evalx_chunks(gate) * (int64_t)pare_evalx_ctx(gate)};
    step *path = NULL;
    uint64_t *bytes = NULL;
    double *pred = NULL;
    pare_type *base_types = NULL;
    size_t n_steps = 0;
    /* the probes' KLD: the reference's side computed once, now, while no candidate is in memory */
    pare_status st = job->max_kld >= 0 && pare_evalx_keep_base(gate) ? pare_evalx_keep_now(gate, err) : PARE_OK;
    if (!st && src_model) s.sm = src_model;
    else if (!st && !(st = pare_model_load_gguf(src, &s.own_sm, err))) s.sm = s.own_sm;
    if (!st) st = model_view(s.sm, &s.cm, err);
    if (!st) st = importance(&s, job, workdir, err);
    /* the tensors llama-quantize quantizes: the ones Q8_0's plan changes */
    if (!st && !(base_types = calloc(s.sm->n_tensors + 1, sizeof *base_types)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    pare_quant_plan_opts po = {.ftype = PARE_FTYPE_Q8_0, .output_type = PARE_TYPE_INVALID,
                               .token_embd_type = PARE_TYPE_INVALID};
    if (!st) st = pare_quant_plan(s.sm, &po, base_types, err);
    if (!st && (!(s.ti = calloc(s.sm->n_tensors + 1, sizeof *s.ti)) ||
                !(s.cm_type = calloc(s.sm->n_tensors + 1, sizeof *s.cm_type)) ||
                !(s.pos = calloc(s.sm->n_tensors + 1, sizeof *s.pos))))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    double t0 = pare_now();
    for (size_t i = 0; !st && i < s.sm->n_tensors; i++) {
        if (base_types[i] != PARE_TYPE_Q8_0) continue;
        tinfo *ti = &s.ti[s.n_t];
        ti->ti = i;
        ti->role = role_index(&s, s.sm->tensors[i].name, err);
        if (ti->role < 0) st = err->code;
        if (!st) st = measure(&s, ti, err);
        if (!st) {
            s.cm_type[s.n_t] = s.sm->tensors[i].type;
            s.n_t++;
        }
        if (o->progress) o->progress(o->progress_user, "auto: errors", i + 1, s.sm->n_tensors);
    }
    FAIL_IF(!st && !s.n_t, PARE_EUSAGE, "%s: no tensor to quantize", src);
    if (!st && log) fprintf(log, "auto: errors of %zu candidate types for %zu tensors in %.2f s\n", N_CANDS, s.n_t,
                            pare_now() - t0);
    if (!st && !(s.gain = calloc(s.n_roles + 1, sizeof *s.gain))) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = calibrate(&s, job, err);
    /* the path */
    size_t cap = 0;
    for (size_t k = 0; k < s.n_t; k++) cap += (size_t)s.ti[k].n_c;
    if (!st && (!(path = calloc(cap + 1, sizeof *path)) || !(bytes = calloc(cap + 2, sizeof *bytes)) ||
                !(pred = calloc(cap + 2, sizeof *pred))))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t k = 0; !st && k < s.n_t; k++) {
        const tinfo *ti = &s.ti[k];
        const double g = s.gain[ti->role];
        for (int h = 0; h + 1 < ti->n_c; h++)
            path[n_steps++] = (step){(int)k, h + 1, g * (ti->err[h + 1] - ti->err[h]) / (double)(ti->bytes[h] - ti->bytes[h + 1])};
        bytes[0] += ti->bytes[0];
        pred[0] += g * ti->err[0];
    }
    if (!st) qsort(path, n_steps, sizeof *path, cmp_step);
    for (size_t i = 0; !st && i < n_steps; i++) {
        const tinfo *ti = &s.ti[path[i].t];
        const int h = path[i].to;
        bytes[i + 1] = bytes[i] - (ti->bytes[h - 1] - ti->bytes[h]);
        pred[i + 1] = pred[i] + s.gain[ti->role] * (ti->err[h] - ti->err[h - 1]);
    }
    info->n_steps = (int64_t)n_steps;
    if (!st && !(info->probes = calloc(MAX_PROBES + 8, sizeof *info->probes)))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");

    /* bytes of the file that are not the searched tensors: the source's other tensors and
     * metadata, corrected by what is measured once a file is written */
    uint64_t other = 0;
    for (size_t i = 0; !st && i < s.sm->n_tensors; i++)
        if (base_types[i] != PARE_TYPE_Q8_0) other += s.sm->tensors[i].n_bytes;
    {
        /* the metadata: what the source's file holds beyond its tensors (a guess for a folder) */
        uint64_t all = 0, fs = pare_path_is_dir(src) ? 0 : file_size(src);
        for (size_t i = 0; s.sm && i < s.sm->n_tensors; i++) all += s.sm->tensors[i].n_bytes;
        other += fs > all ? fs - all : 16384;
    }
    int64_t k_sel = 0;
    if (!st && job->target_bytes + job->target_bpw > 0) {
        /* --target-size: the first step whose file fits, verified on the written file */
        const uint64_t target = job->target_bytes ? job->target_bytes
                                                  : (uint64_t)(job->target_bpw * (double)pare_model_nparams(s.sm) / 8.0);
        info->target_bytes = target;
        for (int tries = 0; !st; tries++) {
            k_sel = 0;
            while ((size_t)k_sel < n_steps && bytes[k_sel] + other > target) k_sel++;
            if (bytes[k_sel] + other > target) {
                st = pare_err_set(err, PARE_EUSAGE, "--target-size %llu bytes: the smallest plan needs %llu",
                                  (unsigned long long)target, (unsigned long long)(bytes[k_sel] + other));
                break;
            }
            plan_at(&s, path, (size_t)k_sel, s.pos);
            st = write_plan(&s, src, out, s.pos, info, err);
            const uint64_t fs = file_size(out);
            if (st || fs <= target || tries >= 4) break;
            other = fs - bytes[k_sel]; /* measured: try again with it */
        }
    } else if (!st) {
        /* the budget: bracket the largest passing step */
        int64_t lo = -1, hi = (int64_t)n_steps + 1;
        double c = job->max_kld >= 0 ? 1.0 / fmax(job->max_kld, 1e-12) : 1.0 / fmax(log1p(job->max_ppl_increase), 1e-12);
        int64_t k = 0;
        while (k + 1 <= (int64_t)n_steps && c * pred[k + 1] <= 1.0) k++;
        bool ok = false;
        double stress = 0;
        /* until the bracket is closed, or narrower than PROBE_TOL of the passing plan's bytes */
        while (!st && hi - lo > 1 && info->n_probes < MAX_PROBES &&
               !(lo >= 0 && hi <= (int64_t)n_steps && (double)(bytes[lo] - bytes[hi]) < PROBE_TOL * (double)bytes[lo])) {
            if (k <= lo || k >= hi) k = lo + (hi - lo) / 2;
            st = probe(&s, gate, job, ref_ppl, path, (size_t)k, bytes, info, &ok, &stress, err);
            if (st) break;
            if (ok) lo = k;
            else hi = k;
            /* rescale the prediction by this measurement, then aim where it meets the limit */
            if (stress > 0 && pred[k] > 0) c = stress / pred[k];
            int64_t nk = lo < 0 ? 0 : lo;
            while (nk + 1 < hi && c * pred[nk + 1] <= 1.0) nk++;
            k = nk;
            if (k <= lo || k >= hi) k = lo + (hi - lo) / 2;
            /* once bracketed, stay in the middle half: where the error jumps between two steps
             * (one sensitive tensor changing type) the rescaled prediction keeps aiming next
             * to one end, and the bracket would shrink by one step per probe */
            const int64_t w = hi - lo;
            if (lo >= 0 && hi <= (int64_t)n_steps && w >= 4) k = k < lo + w / 4 ? lo + w / 4 : k > hi - w / 4 ? hi - w / 4 : k;
            if (lo >= 0 && k == lo) k = lo + 1;
        }
        k_sel = lo < 0 ? 0 : lo;
        if (!st) {
            plan_at(&s, path, (size_t)k_sel, s.pos);
            st = write_plan(&s, src, out, s.pos, info, err);
        }
    }
    if (!st) {
        info->step = k_sel;
        info->predicted_kld = pred[k_sel];
        info->n_tensors = s.n_t;
    }
    if (!st && log) {
        fprintf(log, "auto: plan at step %lld of %zu, %.3f MiB of weights (predicted KLD %.5f), %d probes:\n",
                (long long)k_sel, n_steps, (double)bytes[k_sel] / 1048576.0, pred[k_sel], info->n_probes);
        fprintf(log, "auto: pare quantize --type %s", pare_ftype_name(info->ftype));
        for (size_t i = 0; i < info->n_rules; i++)
            fprintf(log, " --tensor-type %s=%s", info->globs[i], pare_type_name(info->types[i]));
        fprintf(log, "%s%s\n", s.im_path && !s.im_made ? " --imatrix " : "", s.im_path && !s.im_made ? s.im_path : "");
    }
    free(path);
    free(bytes);
    free(pred);
    free(base_types);
    for (size_t r = 0; r < s.n_roles; r++) free(s.roles[r]);
    free(s.roles);
    free(s.gain);
    free(s.ti);
    free(s.pos);
    free(s.cm_type);
    free(s.im_path);
    pare_imatrix_free(s.im);
    if (s.have_acts) pare_act_stats_free(&s.acts);
    pare_model_free(s.cm);
    pare_model_free(s.own_sm);
    return st;
}
