/* pipeline/calib.c - activation statistics over calibration text (Wanda, imatrix). */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "quant/plan.h"
#include "verify/llm.h"
#include "verify/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    pare_act_stats *s;
    bool oom;
} collector;

static void on_act(void *user, const char *name, const float *x, int n_tokens, int n_in) {
    collector *c = user;
    pare_act_stats *s = c->s;
    size_t i = 0;
    while (i < s->n && strcmp(s->names[i], name)) i++;
    if (i == s->n) {
        char **nn = realloc(s->names, (s->n + 1) * sizeof *nn);
        if (nn) s->names = nn;
        double **ns = realloc(s->sumsq, (s->n + 1) * sizeof *ns);
        if (ns) s->sumsq = ns;
        int64_t *ni = realloc(s->n_in, (s->n + 1) * sizeof *ni);
        if (ni) s->n_in = ni;
        if (!nn || !ns || !ni) {
            c->oom = true;
            return;
        }
        s->names[i] = strdup(name);
        s->sumsq[i] = calloc((size_t)n_in, sizeof(double));
        s->n_in[i] = n_in;
        if (!s->names[i] || !s->sumsq[i]) {
            free(s->names[i]);
            free(s->sumsq[i]);
            c->oom = true;
            return;
        }
        s->n++;
    }
    if (s->n_in[i] != n_in) return; /* cannot happen for one model */
    double *acc = s->sumsq[i];
    for (int t = 0; t < n_tokens; t++) {
        const float *row = x + (size_t)t * (size_t)n_in;
        for (int j = 0; j < n_in; j++) acc[j] += (double)row[j] * row[j];
    }
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

pare_status pare_act_stats_collect(const char *model, const char *text_path, int ctx, int64_t max_tokens,
                                   int n_threads, pare_act_stats *out, pare_err *err) {
    memset(out, 0, sizeof *out);
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    pare_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    collector c = {.s = out};
    pare_status st = pare_model_load_gguf(model, &m, err);
    if (!st) st = pare_llm_new(m, n_threads, &llm, err);
    if (!st) st = pare_tokenizer_new(&m->meta, &tk, err);
    if (!st) st = pare_read_file(text_path, PARE_TEXT_MAX_BYTES, &text, &len, err);
    if (!st) st = pare_tokenize(tk, text, len, true, &ids, &n_ids, err);
    if (!st && max_tokens > 0 && (size_t)max_tokens < n_ids) n_ids = (size_t)max_tokens;
    if (!st && n_ids < (size_t)ctx)
        st = pare_err_set(err, PARE_EINPUT, "%s: %zu tokens, fewer than one chunk of %d", text_path, n_ids, ctx);
    if (!st && !(logits = malloc((size_t)pare_llm_n_vocab(llm) * sizeof(float))))
        st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) pare_llm_set_act_hook(llm, on_act, &c);
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
    free(ids);
    free(text);
    pare_tokenizer_free(tk);
    pare_llm_free(llm);
    pare_model_free(m);
    if (st) pare_act_stats_free(out);
    return st;
}

pare_status pare_imatrix_make(const char *model, const char *text_path, const char *out, int ctx,
                              int64_t max_tokens, const pare_convert_opts *o, pare_err *err) {
    FAIL_IF(pare_path_exists(out) && !o->force, PARE_EUSAGE, "%s: already exists (use --force to replace it)", out);
    FAIL_IF(pare_same_file(out, model) || pare_same_file(out, text_path), PARE_EUSAGE,
            "%s: refusing to overwrite an input file", out);
    pare_act_stats s;
    TRY(pare_act_stats_collect(model, text_path, ctx, max_tokens, o->n_threads, &s, err));
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
        for (int64_t j = 0; j < s.n_in[i]; j++)
            raw[j] = (float)(s.sumsq[i][j] / (double)s.n_tokens * (double)s.n_calls);
        st = pare_imatrix_add(im, s.names[i], s.n_calls, raw, s.n_in[i], err);
        free(raw);
    }
    if (!st) st = pare_imatrix_set_dataset(im, s.n_calls, text_path, err);
    if (!st) st = pare_imatrix_save(im, out, o->force, err);
    pare_imatrix_free(im);
    pare_act_stats_free(&s);
    return st;
}
