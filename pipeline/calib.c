/* pipeline/calib.c - activation statistics over calibration text (Wanda, imatrix).
 *
 * Mixture-of-experts tensors (ffn_*_exps, 3-D [n_in, n_out, n_expert]) come through the
 * evaluator's expert hook, once per expert with the rows routed to it. Their entry in
 * pare_act_stats is named as the tensor, with n_in * n_expert sums: one run of n_in per
 * expert (the layout of llama.cpp's imatrix entries for them); the collector also counts the
 * rows each expert saw, which the imatrix needs (llama-imatrix divides each expert's sums by
 * its own count). */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "quant/plan.h"
#include "verify/llm.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    pare_act_stats *s;
    int64_t **expert_rows; /* [entry]: rows seen per expert, NULL for entries of 2-D weights */
    int *n_expert;         /* [entry]: experts of the tensor, 0 for 2-D weights */
    size_t cap;            /* entries expert_rows and n_expert have */
    bool oom;
} collector;

static void collector_free(collector *c) {
    for (size_t i = 0; i < c->cap; i++) free(c->expert_rows[i]);
    free(c->expert_rows);
    free(c->n_expert);
    c->expert_rows = NULL;
    c->n_expert = NULL;
    c->cap = 0;
}

/* The entry of `name` with n values (created zeroed; n_expert > 0: with expert row counts),
 * or SIZE_MAX when out of memory or when an entry of that name has another size. */
static size_t entry(collector *c, const char *name, int64_t n, int n_expert) {
    pare_act_stats *s = c->s;
    size_t i = 0;
    while (i < s->n && strcmp(s->names[i], name)) i++;
    if (i < s->n) return s->n_in[i] == n ? i : SIZE_MAX; /* another size cannot happen for one model */
    char **nn = realloc(s->names, (s->n + 1) * sizeof *nn);
    if (nn) s->names = nn;
    double **ns = realloc(s->sumsq, (s->n + 1) * sizeof *ns);
    if (ns) s->sumsq = ns;
    int64_t *ni = realloc(s->n_in, (s->n + 1) * sizeof *ni);
    if (ni) s->n_in = ni;
    int64_t **ne = realloc(c->expert_rows, (s->n + 1) * sizeof *ne);
    if (ne) c->expert_rows = ne;
    int *nx = realloc(c->n_expert, (s->n + 1) * sizeof *nx);
    if (nx) c->n_expert = nx;
    if (!nn || !ns || !ni || !ne || !nx) {
        c->oom = true;
        return SIZE_MAX;
    }
    c->expert_rows[i] = n_expert > 0 ? calloc((size_t)n_expert, sizeof(int64_t)) : NULL;
    c->n_expert[i] = n_expert;
    c->cap = s->n + 1;
    s->names[i] = strdup(name);
    s->sumsq[i] = calloc((size_t)n, sizeof(double));
    s->n_in[i] = n;
    if (!s->names[i] || !s->sumsq[i] || (n_expert > 0 && !c->expert_rows[i])) {
        free(s->names[i]);
        free(s->sumsq[i]);
        free(c->expert_rows[i]);
        c->expert_rows[i] = NULL;
        c->cap = s->n;
        c->oom = true;
        return SIZE_MAX;
    }
    s->n++;
    return i;
}

static void add_sq(double *acc, const float *x, int n_rows, int n_in) {
    for (int t = 0; t < n_rows; t++) {
        const float *row = x + (size_t)t * (size_t)n_in;
        for (int j = 0; j < n_in; j++) acc[j] += (double)row[j] * row[j];
    }
}

static void on_act(void *user, const char *name, const float *x, int n_tokens, int n_in) {
    collector *c = user;
    const size_t i = entry(c, name, n_in, 0);
    if (i != SIZE_MAX) add_sq(c->s->sumsq[i], x, n_tokens, n_in);
}

static void on_expert(void *user, const char *name, int expert, int n_expert, const float *x, int n_rows, int n_in) {
    collector *c = user;
    const size_t i = entry(c, name, (int64_t)n_in * n_expert, n_expert);
    if (i == SIZE_MAX || !c->expert_rows[i] || expert < 0 || expert >= n_expert) return;
    add_sq(c->s->sumsq[i] + (size_t)expert * (size_t)n_in, x, n_rows, n_in);
    c->expert_rows[i][expert] += n_rows;
}

void pare_act_stats_free(pare_act_stats *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
        free(s->sumsq[i]);
    }
    free(s->names);
    free(s->sumsq);
    free(s->n_in);
    memset(s, 0, sizeof *s);
}

const double *pare_act_stats_find(const pare_act_stats *s, const char *gguf_name, int64_t n_in) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], gguf_name) && s->n_in[i] == n_in) return s->sumsq[i];
    return NULL;
}

/* The statistics into out and c (whose s is out). */
static pare_status collect(const char *model, const pare_model *loaded, const char *text_path, int ctx,
                           int64_t max_tokens, int n_threads, pare_act_stats *out, collector *c_out, pare_err *err) {
    memset(out, 0, sizeof *out);
    pare_model_text mt;
    float *logits = NULL;
    collector c = {.s = out};
    pare_status st = loaded ? pare_model_text_open_model(loaded, text_path, n_threads, &mt, err)
                            : pare_model_text_open(model, text_path, n_threads, &mt, err);
    pare_llm *llm = mt.llm;
    int32_t *ids = mt.ids;
    size_t n_ids = mt.n_ids;
    if (!st && max_tokens > 0 && (size_t)max_tokens < n_ids) n_ids = (size_t)max_tokens;
    if (!st && n_ids < (size_t)ctx)
        st = pare_err_set(err, PARE_EINPUT, "%s: %zu tokens, fewer than one chunk of %d", text_path, n_ids, ctx);
    if (!st && !(logits = malloc((size_t)pare_llm_n_vocab(llm) * sizeof(float))))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) pare_llm_set_act_hook(llm, on_act, &c);
    if (!st) pare_llm_set_expert_hook(llm, on_expert, &c);
    int32_t bos = st ? -1 : pare_llm_bos(llm);
    for (size_t k = 0; !st && (k + 1) * (size_t)ctx <= n_ids; k++) {
        int32_t *chunk = ids + k * (size_t)ctx;
        if (bos >= 0 && pare_llm_add_bos(llm)) chunk[0] = bos;
        /* Only the activations matter: ask for the last position's logits alone. */
        st = pare_llm_forward_tail(llm, chunk, ctx, ctx - 1, logits, err);
        if (!st && c.oom) st = pare_err_set(err, PARE_ENOMEM, "out of memory for activation statistics");
        if (!st) {
            out->n_tokens += ctx;
            out->n_calls++;
        }
    }
    free(logits);
    pare_model_text_close(&mt);
    if (st) {
        pare_act_stats_free(out);
        collector_free(&c);
    }
    *c_out = c;
    return st;
}

pare_status pare_act_stats_collect(const char *model, const char *text_path, int ctx, int64_t max_tokens,
                                   int n_threads, pare_act_stats *out, pare_err *err) {
    collector c;
    pare_status st = collect(model, NULL, text_path, ctx, max_tokens, n_threads, out, &c, err);
    collector_free(&c);
    return st;
}

pare_status pare_act_stats_collect_model(const pare_model *m, const char *text_path, int ctx, int64_t max_tokens,
                                         int n_threads, pare_act_stats *out, pare_err *err) {
    collector c;
    pare_status st = collect(NULL, m, text_path, ctx, max_tokens, n_threads, out, &c, err);
    collector_free(&c);
    return st;
}

/* An imatrix entry's stored values (the legacy format's mean(x^2) * ncall) from the sums of
 * entry i. For an expert tensor each expert's sums are divided by its own rows, as
 * llama-imatrix does; an expert no row was routed to (llama-imatrix would store 0/0 = NaN,
 * or drop the whole entry as partial data) gets the mean over all experts' rows instead, so
 * that its quantization is weighted like its neighbours' rather than not at all. False when
 * no row at all was seen (then no entry is written). */
static bool entry_values(const collector *c, size_t i, float *raw) {
    const pare_act_stats *s = c->s;
    const int64_t *rows = c->expert_rows && i < c->cap ? c->expert_rows[i] : NULL;
    const double *sq = s->sumsq[i], calls = (double)s->n_calls;
    if (!rows) {
        if (s->n_tokens <= 0) return false;
        for (int64_t j = 0; j < s->n_in[i]; j++) raw[j] = (float)(sq[j] / (double)s->n_tokens * calls);
        return true;
    }
    const int ne = c->n_expert[i];
    const int64_t w = s->n_in[i] / ne;
    int64_t all = 0;
    for (int e = 0; e < ne; e++) all += rows[e];
    if (all == 0) return false;
    for (int64_t j = 0; j < w; j++) {
        double pooled = 0;
        for (int e = 0; e < ne; e++) pooled += sq[(size_t)e * (size_t)w + (size_t)j];
        pooled /= (double)all;
        for (int e = 0; e < ne; e++) {
            const size_t k = (size_t)e * (size_t)w + (size_t)j;
            raw[k] = (float)((rows[e] > 0 ? sq[k] / (double)rows[e] : pooled) * calls);
        }
    }
    return true;
}

pare_status pare_imatrix_make(const char *model, const char *text_path, const char *out, int ctx,
                              int64_t max_tokens, const pare_convert_opts *o, pare_err *err) {
    FAIL_IF(pare_path_exists(out) && !o->force, PARE_EUSAGE, "%s: already exists (use --force to replace it)", out);
    FAIL_IF(pare_same_file(out, model) || pare_same_file(out, text_path), PARE_EUSAGE,
            "%s: refusing to overwrite an input file", out);
    pare_act_stats s;
    collector c;
    TRY(collect(model, NULL, text_path, ctx, max_tokens, o->n_threads, &s, &c, err));
    pare_imatrix *im = pare_imatrix_new();
    pare_status st = im ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < s.n; i++) {
        if (!strcmp(s.names[i], "output.weight")) continue; /* llama-imatrix leaves the output head out */
        float *raw = malloc((size_t)s.n_in[i] * sizeof(float));
        if (!raw) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        /* The legacy format stores mean(x^2) * ncall; readers divide by ncall. */
        if (entry_values(&c, i, raw)) st = pare_imatrix_add(im, s.names[i], s.n_calls, raw, s.n_in[i], err);
        free(raw);
    }
    if (!st) st = pare_imatrix_set_dataset(im, s.n_calls, text_path, err);
    if (!st) st = pare_imatrix_save(im, out, o->force, err);
    pare_imatrix_free(im);
    pare_act_stats_free(&s);
    collector_free(&c);
    return st;
}
