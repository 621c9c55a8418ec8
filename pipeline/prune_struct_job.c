/*
 * pipeline/prune_struct_job.c - pare prune --structured: score layers, FFN channels, attention
 * heads and experts on calibration text, plan what goes, and write the smaller model through
 * prune/structured.c's views (one tensor at a time).
 *
 * Scores, all from the dense model except the layer PPL test:
 *   layer L     angular distance (Gromov et al.) between the residual stream entering block L
 *               and leaving it, arccos(cos) / pi averaged over calibration tokens. The
 *               evaluator reports every linear layer's input; attn_q's input is
 *               RMSNorm(x) * g, so dividing by the norm weight g gives x / rms(x), whose
 *               direction is x's (gpt2's LayerNorm also subtracts the mean: the direction
 *               of the centred stream, an approximation). The `candidates` layers of lowest
 *               distance are then removed one at a time and the model is run over the
 *               calibration text; the lowest perplexity goes, greedily, N times.
 *   FFN j       ||h_j|| * ||W_down[:, j]||: the norm over calibration tokens of channel j's
 *               contribution W_down[:, j] h_j to the residual stream (h = the input of
 *               ffn_down, i.e. act(gate) * up), which is what removing rows j of gate / up
 *               and column j of down takes away.
 *   head h      sqrt(sum over the head's dims d of ||a_d||^2 ||W_o[:, d]||^2) (a = the input
 *               of attn_output), summed over the query heads of a KV group: groups go whole.
 *   expert e    a callback (pare_struct_opts has none yet from the evaluator: the weight
 *               proxy of prune/structured.h).
 */
#include "pipeline/passes.h"

#include "formats/formats.h"
#include "prune/structured.h"
#include "quant/quant.h"
#include "verify/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the calibration pass --------------------------------------------------------------- */

typedef struct {
    const pare_struct_shape *s;
    float **norm_w;   /* [n_layer + 1]: attn_norm weights of each layer, then output_norm */
    double *ang;      /* [n_layer] summed angular distances */
    int64_t *ang_n;   /* [n_layer] tokens summed */
    float *prev;      /* [T][n_embd] direction of the stream entering layer prev_l */
    int prev_l, prev_cap;
    double **ffn_sq;  /* [n_layer][n_ff]: sum of squared inputs of ffn_down */
    double **att_sq;  /* [n_layer][n_head * n_embd_head]: of attn_output */
    bool oom;
} calib_ctx;

static void stream_dir(const float *x, const float *g, int T, int D, float *out) {
    for (int i = 0; i < T * D; i++) {
        float w = g[i % D];
        out[i] = w != 0 ? x[i] / w : 0;
    }
}

static double angular(const float *a, const float *b, int D) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < D; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
    if (aa == 0 || bb == 0) return 0.5;
    double c = ab / sqrt(aa * bb);
    c = c > 1 ? 1 : c < -1 ? -1 : c;
    return acos(c) / M_PI;
}

/* The stream entering layer l (l == n_layer: leaving the last) arrived as x. */
static void on_stream(calib_ctx *c, int l, const float *x, int T, int D) {
    if (T > c->prev_cap) {
        float *p = realloc(c->prev, (size_t)T * (size_t)D * sizeof(float));
        if (!p) {
            c->oom = true;
            return;
        }
        c->prev = p;
        c->prev_cap = T;
    }
    float *cur = malloc((size_t)T * (size_t)D * sizeof(float));
    if (!cur) {
        c->oom = true;
        return;
    }
    stream_dir(x, c->norm_w[l], T, D, cur);
    if (l > 0 && c->prev_l == l - 1) {
        for (int t = 0; t < T; t++) c->ang[l - 1] += angular(c->prev + (size_t)t * D, cur + (size_t)t * D, D);
        c->ang_n[l - 1] += T;
    }
    memcpy(c->prev, cur, (size_t)T * (size_t)D * sizeof(float));
    c->prev_l = l;
    free(cur);
}

static void add_sq(double *acc, const float *x, int T, int n) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < n; j++) acc[j] += (double)x[(size_t)t * n + j] * x[(size_t)t * n + j];
}

static void on_act(void *user, const char *name, const float *x, int T, int n_in) {
    calib_ctx *c = user;
    const pare_struct_shape *s = c->s;
    if (!strcmp(name, "output.weight")) {
        if (n_in == s->n_embd) on_stream(c, s->n_layer, x, T, n_in);
        return;
    }
    int il = -1, off = 0;
    if (sscanf(name, "blk.%d.%n", &il, &off) != 1 || !off || il < 0 || il >= s->n_layer) return;
    const char *suf = name + off;
    if ((!strcmp(suf, "attn_q.weight") || !strcmp(suf, "attn_qkv.weight")) && n_in == s->n_embd)
        on_stream(c, il, x, T, n_in);
    else if (!strcmp(suf, "ffn_down.weight") && c->ffn_sq[il] && n_in == s->n_ff[il])
        add_sq(c->ffn_sq[il], x, T, n_in);
    else if (!strcmp(suf, "attn_output.weight") && c->att_sq[il] && n_in == s->n_head[il] * s->n_embd_head)
        add_sq(c->att_sq[il], x, T, n_in);
}

static void calib_free(calib_ctx *c, int n_layer) {
    for (int i = 0; c->norm_w && i <= n_layer; i++) free(c->norm_w[i]);
    for (int i = 0; i < n_layer; i++) {
        if (c->ffn_sq) free(c->ffn_sq[i]);
        if (c->att_sq) free(c->att_sq[i]);
    }
    free(c->norm_w);
    free(c->ang);
    free(c->ang_n);
    free(c->prev);
    free(c->ffn_sq);
    free(c->att_sq);
}

static pare_status read_f32(const pare_model *m, const char *name, int64_t n, float **out, pare_err *err) {
    const pare_tensor *t = pare_model_find(m, name);
    FAIL_IF(!t, PARE_EINPUT, "%s: tensor '%s' is missing", m->path, name);
    FAIL_IF(pare_tensor_nelements(t) != n, PARE_EINPUT, "%s: tensor '%s' has %lld values, expected %lld", m->path, name,
            (long long)pare_tensor_nelements(t), (long long)n);
    *out = malloc((size_t)n * sizeof(float) + sizeof(float));
    FAIL_IF(!*out, PARE_ENOMEM, "out of memory");
    return pare_tensor_to_f32(t, *out, 0, err);
}

/* Tokens of the calibration text, at most max_tokens (0: all). */
static pare_status calib_tokens(const pare_model *m, const char *path, int64_t max_tokens, int32_t **ids,
                                size_t *n_ids, pare_err *err) {
    TRY(pare_text_tokens(m, path, ids, n_ids, err));
    if (max_tokens > 0 && (size_t)max_tokens < *n_ids) *n_ids = (size_t)max_tokens;
    return PARE_OK;
}

static pare_status calib_pass(const pare_model *m, const pare_struct_shape *s, const int32_t *ids, size_t n_ids,
                              int ctx, int n_threads, calib_ctx *c, pare_err *err) {
    const int L = s->n_layer;
    c->s = s;
    c->prev_l = -2;
    c->norm_w = calloc((size_t)L + 1, sizeof *c->norm_w);
    c->ang = calloc((size_t)L, sizeof *c->ang);
    c->ang_n = calloc((size_t)L, sizeof *c->ang_n);
    c->ffn_sq = calloc((size_t)L, sizeof *c->ffn_sq);
    c->att_sq = calloc((size_t)L, sizeof *c->att_sq);
    FAIL_IF(!c->norm_w || !c->ang || !c->ang_n || !c->ffn_sq || !c->att_sq, PARE_ENOMEM, "out of memory");
    char name[96];
    for (int il = 0; il < L; il++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", il);
        TRY(read_f32(m, name, s->n_embd, &c->norm_w[il], err));
        c->ffn_sq[il] = s->n_ff[il] ? calloc((size_t)s->n_ff[il], sizeof(double)) : NULL;
        c->att_sq[il] = calloc((size_t)s->n_head[il] * (size_t)s->n_embd_head, sizeof(double));
        FAIL_IF((s->n_ff[il] && !c->ffn_sq[il]) || !c->att_sq[il], PARE_ENOMEM, "out of memory");
    }
    TRY(read_f32(m, "output_norm.weight", s->n_embd, &c->norm_w[L], err));
    FAIL_IF(n_ids < (size_t)ctx, PARE_EINPUT, "calibration text: %zu tokens, fewer than one chunk of %d", n_ids, ctx);
    pare_llm *llm = NULL;
    TRY(pare_llm_new(m, n_threads, &llm, err));
    float *logits = malloc((size_t)ctx * (size_t)pare_llm_n_vocab(llm) * sizeof(float));
    int32_t *chunk = malloc((size_t)ctx * sizeof *chunk);
    pare_status st = logits && chunk ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    pare_llm_set_act_hook(llm, on_act, c);
    const int32_t bos = pare_llm_bos(llm);
    for (size_t k = 0; !st && (k + 1) * (size_t)ctx <= n_ids; k++) {
        memcpy(chunk, ids + k * (size_t)ctx, (size_t)ctx * sizeof *chunk);
        if (bos >= 0 && pare_llm_add_bos(llm)) chunk[0] = bos;
        c->prev_l = -2;
        st = pare_llm_forward(llm, chunk, ctx, logits, err);
        if (!st && c->oom) st = pare_err_set(err, PARE_ENOMEM, "out of memory for the calibration statistics");
    }
    free(chunk);
    free(logits);
    pare_llm_free(llm);
    return st;
}

/* ---- choosing --------------------------------------------------------------------------- */

/* Perplexity over the calibration tokens of m with the layers of drop[] removed. */
static pare_status ppl_without(const pare_model *m, const bool *drop, int n_layer, const int32_t *ids, size_t n_ids,
                               int ctx, int n_threads, double *ppl, pare_err *err) {
    pare_struct_plan p;
    TRY(pare_struct_plan_init(&p, n_layer, err));
    memcpy(p.drop, drop, (size_t)n_layer * sizeof *drop);
    pare_model *v = NULL;
    pare_llm *llm = NULL;
    pare_ppl_result r = {0};
    pare_status st = pare_struct_build(m, &p, &v, err);
    if (!st) st = pare_llm_new(v, n_threads, &llm, err);
    pare_ppl_opts po = {.n_ctx = ctx, .n_chunks = -1};
    if (!st) st = pare_perplexity(llm, NULL, ids, n_ids, &po, NULL, NULL, &r, err);
    if (!st) *ppl = r.ppl;
    pare_ppl_result_free(&r);
    pare_llm_free(llm);
    pare_model_free(v);
    pare_struct_plan_free(&p);
    return st;
}

typedef struct {
    double ang;
    int l;
} layer_rank;

static int by_ang(const void *a, const void *b) {
    const layer_rank *x = a, *y = b;
    if (x->ang != y->ang) return x->ang < y->ang ? -1 : 1;
    return x->l - y->l;
}

static pare_status choose_layers(const pare_model *m, const pare_struct_opts *so, const calib_ctx *c,
                                 const pare_struct_shape *s, const int32_t *ids, size_t n_ids, int ctx, int n_threads,
                                 pare_struct_plan *p, FILE *rep, pare_err *err) {
    const int L = s->n_layer, N = so->drop_layers;
    FAIL_IF(N >= L, PARE_EUSAGE, "--drop-layers %d: the model has %d layers", N, L);
    layer_rank *r = malloc((size_t)L * sizeof *r);
    FAIL_IF(!r, PARE_ENOMEM, "out of memory");
    for (int l = 0; l < L; l++) r[l] = (layer_rank){c->ang_n[l] ? c->ang[l] / (double)c->ang_n[l] : 1.0, l};
    if (rep) {
        fprintf(rep, "layer importance (angular distance between input and output, 0..1):\n");
        for (int l = 0; l < L; l++) fprintf(rep, "  layer %3d  %.6f\n", l, r[l].ang);
    }
    qsort(r, (size_t)L, sizeof *r, by_ang);
    int K = so->candidates > 0 ? so->candidates : 8;
    if (K < N) K = N;
    if (K > L) K = L;
    pare_status st = PARE_OK;
    bool *drop = calloc((size_t)L, sizeof *drop);
    if (!drop) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (int round = 0; !st && round < N; round++) {
        int best = -1;
        double best_ppl = INFINITY;
        if (rep) fprintf(rep, "removal %d: calibration PPL without each candidate:\n", round + 1);
        for (int k = 0; !st && k < K; k++) {
            const int l = r[k].l;
            if (drop[l]) continue;
            drop[l] = true;
            double ppl = 0;
            st = ppl_without(m, drop, L, ids, n_ids, ctx, n_threads, &ppl, err);
            drop[l] = false;
            if (st) break;
            if (rep) fprintf(rep, "  without layer %3d  PPL %.4f\n", l, ppl);
            if (ppl < best_ppl || (ppl == best_ppl && l < best)) best_ppl = ppl, best = l;
        }
        if (!st && best < 0) st = pare_err_set(err, PARE_EINTERNAL, "no candidate layer left");
        if (!st) {
            drop[best] = true;
            if (rep) fprintf(rep, "  -> removing layer %d (PPL %.4f)\n", best, best_ppl);
        }
    }
    if (!st) memcpy(p->drop, drop, (size_t)L * sizeof *drop);
    free(drop);
    free(r);
    return st;
}

/* Channels to keep of F for a share f: rounded up to a multiple of 32 (the smallest block of
 * the quantization types) when F allows, at least one block. */
static int keep_count(int F, double f) {
    int k = (int)ceil((double)F * f - 1e-9);
    if (F >= 64) {
        k = (k + 31) / 32 * 32;
        if (k < 32) k = 32;
    }
    if (k < 1) k = 1;
    return k > F ? F : k;
}

/* scores[l][0..n[l]) of every layer; keeps, per layer, the top share f (or with global, the
 * top share of all pooled, at least min_keep per layer). Writes n_keep[l] (0 when a layer
 * keeps all) and idx[l]. block: round counts as keep_count does (FFN) or not (heads). */
static pare_status choose_units(double **scores, const int *n, int L, const bool *skip, double f, bool global,
                                bool block, int *n_keep, int32_t **idx, pare_err *err) {
    int *want = calloc((size_t)L, sizeof *want);
    FAIL_IF(!want, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    if (global) {
        int64_t total = 0;
        for (int l = 0; l < L; l++) total += skip[l] ? 0 : n[l];
        double *all = malloc((size_t)(total > 0 ? total : 1) * sizeof *all);
        if (!all) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        int64_t k = 0;
        for (int l = 0; !st && l < L; l++)
            for (int j = 0; !skip[l] && j < n[l]; j++) all[k++] = scores[l][j];
        if (!st && total > 0) {
            int64_t keep = (int64_t)ceil((double)total * f - 1e-9);
            if (keep < 1) keep = 1;
            /* the keep-th highest score is the threshold */
            double *sorted = malloc((size_t)total * sizeof *sorted);
            if (!sorted) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            if (!st) {
                memcpy(sorted, all, (size_t)total * sizeof *sorted);
                int32_t *tmp = malloc((size_t)total * sizeof *tmp);
                if (!tmp) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
                /* counts per layer above the threshold (ties broken by pare_struct_top_k's order) */
                if (!st) st = pare_struct_top_k(sorted, (int)total, (int)keep, tmp, err);
                int64_t base = 0;
                for (int l = 0, p = 0; !st && l < L; l++) {
                    if (skip[l]) continue;
                    while (p < keep && tmp[p] < base + n[l]) want[l]++, p++;
                    base += n[l];
                }
                free(tmp);
            }
            free(sorted);
        }
        free(all);
        for (int l = 0; !st && l < L; l++) {
            if (skip[l] || !n[l]) continue;
            if (block) want[l] = keep_count(n[l], (double)want[l] / n[l]);
            if (want[l] < 1) want[l] = 1;
        }
    } else {
        for (int l = 0; l < L; l++)
            if (!skip[l] && n[l]) {
                want[l] = block ? keep_count(n[l], f) : (int)lround((double)n[l] * f);
                if (want[l] < 1) want[l] = 1;
                if (want[l] > n[l]) want[l] = n[l];
            }
    }
    for (int l = 0; !st && l < L; l++) {
        if (skip[l] || !n[l] || want[l] >= n[l]) continue;
        idx[l] = malloc((size_t)want[l] * sizeof *idx[l]);
        if (!idx[l]) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_struct_top_k(scores[l], n[l], want[l], idx[l], err);
        if (!st) n_keep[l] = want[l];
    }
    free(want);
    return st;
}

/* Per layer: how many units go, and the share of the layer's importance (sum of squared
 * scores: the energy of the contributions) they carried. */
static void report_removed(FILE *rep, const char *what, double **sc, const int *n, int L, const bool *drop,
                           const int *n_keep, int32_t **idx) {
    fprintf(rep, "%s removed per layer (share of the layer's importance):", what);
    for (int l = 0; l < L; l++) {
        if (drop[l] || !n[l]) continue;
        double all = 0, kept = 0;
        for (int j = 0; j < n[l]; j++) all += sc[l][j] * sc[l][j];
        for (int k = 0; n_keep[l] && k < n_keep[l]; k++) kept += sc[l][idx[l][k]] * sc[l][idx[l][k]];
        if (!n_keep[l]) kept = all;
        fprintf(rep, " %d (%.2f%%)", n_keep[l] ? n[l] - n_keep[l] : 0, all > 0 ? 100.0 * (all - kept) / all : 0.0);
    }
    fprintf(rep, "\n");
}

/* ||W[:, j]||^2 for the n_in columns of a GGUF weight [n_in, n_out]. */
static pare_status col_sq(const pare_model *m, const char *name, int64_t n_in, double *out, pare_err *err) {
    const pare_tensor *t = pare_model_find(m, name);
    FAIL_IF(!t || t->n_dims != 2 || t->ne[0] != n_in, PARE_EINPUT, "%s: tensor '%s' is missing or not [%lld, *]",
            m->path, name, (long long)n_in);
    float *w = NULL;
    TRY(read_f32(m, name, pare_tensor_nelements(t), &w, err));
    for (int64_t j = 0; j < n_in; j++) out[j] = 0;
    for (int64_t r = 0; r < t->ne[1]; r++)
        for (int64_t j = 0; j < n_in; j++) out[j] += (double)w[r * n_in + j] * w[r * n_in + j];
    free(w);
    pare_model_release_tensor(m, t);
    return PARE_OK;
}

static pare_status choose_ffn(const pare_model *m, const pare_struct_opts *so, const calib_ctx *c,
                              const pare_struct_shape *s, pare_struct_plan *p, FILE *rep, pare_err *err) {
    const int L = s->n_layer;
    double **sc = calloc((size_t)L, sizeof *sc);
    FAIL_IF(!sc, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    bool any = false;
    for (int l = 0; !st && l < L; l++) {
        if (p->drop[l] || !s->n_ff[l]) continue;
        any = true;
        if (!(sc[l] = malloc((size_t)s->n_ff[l] * sizeof **sc))) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        st = col_sq(m, name, s->n_ff[l], sc[l], err);
        for (int j = 0; !st && j < s->n_ff[l]; j++) sc[l][j] = sqrt(c->ffn_sq[l][j]) * sqrt(sc[l][j]);
    }
    if (!st && !any) st = pare_err_set(err, PARE_EUSAGE, "%s: --ffn-keep: the model has no dense FFN (ffn_up)", m->path);
    if (!st) st = choose_units(sc, s->n_ff, L, p->drop, so->ffn_keep, so->global, true, p->ffn_n, p->ffn_idx, err);
    if (!st && rep) {
        fprintf(rep, "FFN width per layer (kept / was):");
        for (int l = 0; l < L; l++)
            if (!p->drop[l]) fprintf(rep, " %d/%d", p->ffn_n[l] ? p->ffn_n[l] : s->n_ff[l], s->n_ff[l]);
        fprintf(rep, "\n");
        report_removed(rep, "FFN channels", sc, s->n_ff, L, p->drop, p->ffn_n, p->ffn_idx);
    }
    for (int l = 0; l < L; l++) free(sc[l]);
    free(sc);
    return st;
}

static pare_status choose_heads(const pare_model *m, const pare_struct_opts *so, const calib_ctx *c,
                                const pare_struct_shape *s, pare_struct_plan *p, FILE *rep, pare_err *err) {
    const int L = s->n_layer, dh = s->n_embd_head;
    double **sc = calloc((size_t)L, sizeof *sc);
    int *ng = calloc((size_t)L, sizeof *ng);
    pare_status st = sc && ng ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (int l = 0; !st && l < L; l++) {
        if (p->drop[l]) continue;
        const int hq = s->n_head[l], r = hq / s->n_head_kv[l];
        ng[l] = s->n_head_kv[l];
        double *col = malloc((size_t)hq * dh * sizeof *col);
        sc[l] = calloc((size_t)ng[l], sizeof **sc);
        if (!col || !sc[l]) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        char name[96];
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        if (!st) st = col_sq(m, name, (int64_t)hq * dh, col, err);
        for (int h = 0; !st && h < hq; h++) {
            double e = 0;
            for (int d = 0; d < dh; d++) e += c->att_sq[l][h * dh + d] * col[h * dh + d];
            sc[l][h / r] += sqrt(e);
        }
        free(col);
    }
    if (!st) st = choose_units(sc, ng, L, p->drop, so->heads_keep, so->global, false, p->kv_n, p->kv_idx, err);
    if (!st && rep) {
        fprintf(rep, "attention heads per layer (query/KV heads kept, of):");
        for (int l = 0; l < L; l++) {
            if (p->drop[l]) continue;
            int r = s->n_head[l] / s->n_head_kv[l], kv = p->kv_n[l] ? p->kv_n[l] : s->n_head_kv[l];
            fprintf(rep, " %d/%d of %d/%d", kv * r, kv, s->n_head[l], s->n_head_kv[l]);
        }
        fprintf(rep, "\n");
        report_removed(rep, "KV groups", sc, ng, L, p->drop, p->kv_n, p->kv_idx);
        for (int l = 0; l < L; l++) {
            if (p->drop[l]) continue;
            fprintf(rep, "  layer %3d KV group importance:", l);
            for (int g = 0; g < ng[l]; g++) fprintf(rep, " %.4g", sc[l][g]);
            fprintf(rep, "\n");
        }
    }
    for (int l = 0; sc && l < L; l++) free(sc[l]);
    free(sc);
    free(ng);
    return st;
}

static pare_status choose_experts(const pare_model *m, const pare_struct_opts *so, const pare_struct_shape *s,
                                  pare_struct_plan *p, FILE *rep, pare_err *err) {
    FAIL_IF(s->n_expert < 2, PARE_EUSAGE, "%s: --experts-keep: the model has no experts (%s.expert_count)", m->path,
            m->arch);
    int keep = (int)lround(s->n_expert * so->experts_keep);
    if (keep < 1) keep = 1;
    if (keep >= s->n_expert) return PARE_OK;
    p->expert_n = keep;
    double *sc = malloc((size_t)s->n_expert * sizeof *sc);
    FAIL_IF(!sc, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    pare_struct_expert_fn fn = so->expert_scores ? so->expert_scores : pare_struct_expert_weight_scores;
    if (rep)
        fprintf(rep, "experts: keeping %d of %d per layer (importance: %s)\n", keep, s->n_expert,
                so->expert_scores ? "calibration" : "router row norm x down projection norm, from the weights");
    for (int l = 0; !st && l < s->n_layer; l++) {
        if (p->drop[l]) continue;
        st = fn(so->expert_user, m, l, s->n_expert, sc, err);
        if (!st && !(p->expert_idx[l] = malloc((size_t)keep * sizeof(int32_t))))
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_struct_top_k(sc, s->n_expert, keep, p->expert_idx[l], err);
        if (!st && rep) {
            fprintf(rep, "  layer %3d keeps", l);
            for (int k = 0; k < keep; k++) fprintf(rep, " %d", p->expert_idx[l][k]);
            fprintf(rep, "  (scores");
            for (int e = 0; e < s->n_expert; e++) fprintf(rep, " %.4g", sc[e]);
            fprintf(rep, ")\n");
        }
    }
    free(sc);
    return st;
}

/* ---- the job --------------------------------------------------------------------------- */

static bool uniform(const int *v, const bool *drop, int n) {
    int first = -1;
    for (int i = 0; i < n; i++) {
        if (drop[i]) continue;
        if (first < 0) first = v[i];
        else if (v[i] != first) return false;
    }
    return true;
}

static pare_status make_plan(const char *in, const pare_model *m, const pare_prune_job *job, const pare_struct_shape *s,
                             int n_threads, pare_struct_plan *p, pare_err *err) {
    const pare_struct_opts *so = &job->structured;
    FILE *rep = so->report;
    TRY(pare_struct_plan_init(p, s->n_layer, err));
    if (so->layers) {
        int n = 0;
        TRY(pare_struct_parse_layers(so->layers, s->n_layer, p->drop, &n, err));
        if (rep) fprintf(rep, "removing %d layer(s) as asked: %s\n", n, so->layers);
    }
    const bool need_calib = (so->drop_layers > 0 && !so->layers) || so->ffn_keep > 0 || so->heads_keep > 0;
    pare_status st = PARE_OK;
    if (need_calib) {
        FAIL_IF(!job->calib_path, PARE_EUSAGE, "structured pruning of layers, FFN channels or heads needs --calib FILE");
        const int ctx = job->calib_ctx > 0 ? job->calib_ctx : PARE_PPL_DEFAULT_CTX;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        calib_ctx c = {0};
        st = calib_tokens(m, job->calib_path, job->calib_tokens > 0 ? job->calib_tokens : 4096, &ids, &n_ids, err);
        if (!st) st = calib_pass(m, s, ids, n_ids, ctx, n_threads, &c, err);
        if (!st && so->drop_layers > 0 && !so->layers) {
            FAIL_IF(n_ids < 2 * (size_t)ctx, PARE_EINPUT, "%s: %zu calibration tokens, fewer than the two chunks of %d "
                    "the layer test needs", job->calib_path, n_ids, ctx);
            st = choose_layers(m, so, &c, s, ids, n_ids, ctx, n_threads, p, rep, err);
        }
        if (!st && so->ffn_keep > 0) st = choose_ffn(m, so, &c, s, p, rep, err);
        if (!st && so->heads_keep > 0) st = choose_heads(m, so, &c, s, p, rep, err);
        calib_free(&c, s->n_layer);
        free(ids);
        (void)in;
    }
    if (!st && so->experts_keep > 0) st = choose_experts(m, so, s, p, rep, err);
    return st;
}

/* The input's type where the new rows fit its blocks, else llama-quantize's fallback for
 * that type (llama-quant.cpp), else F16. */
pare_type pare_struct_cut_type(pare_type src, int64_t ne0) {
    if (pare_type_row_size(src, ne0)) return src;
    const pare_type nt = pare_quant_fallback_type(src); /* quant/plan.h */
    return nt != PARE_TYPE_INVALID && pare_type_row_size(nt, ne0) ? nt : PARE_TYPE_F16;
}

pare_status pare_struct_view_open(const char *in, const pare_model *m, const pare_prune_job *job, pare_out_kind kind,
                                  const char *out, int n_threads, pare_model **view, pare_err *err) {
    const pare_struct_opts *so = &job->structured;
    *view = NULL;
    pare_struct_shape s;
    pare_struct_plan p = {0};
    TRY(pare_struct_shape_of(m, &s, err));
    pare_status st = make_plan(in, m, job, &s, n_threads, &p, err);
    if (!st && kind != PARE_OUT_GGUF) {
        /* Hugging Face configs have one width for all layers */
        int *ff = malloc((size_t)s.n_layer * sizeof *ff), *hk = malloc((size_t)s.n_layer * sizeof *hk);
        if (!ff || !hk) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        for (int l = 0; !st && l < s.n_layer; l++) {
            ff[l] = p.ffn_n[l] ? p.ffn_n[l] : s.n_ff[l];
            hk[l] = p.kv_n[l] ? p.kv_n[l] : s.n_head_kv[l];
        }
        if (!st && (!uniform(ff, p.drop, s.n_layer) || !uniform(hk, p.drop, s.n_layer)))
            st = pare_err_set(err, PARE_EUNSUPPORTED,
                              "%s: the pruned widths differ between layers, which a Hugging Face config cannot "
                              "express; write a .gguf (or prune to uniform widths without --global)", out);
        free(ff);
        free(hk);
    }
    pare_model *v = NULL;
    if (!st) st = pare_struct_build(m, &p, &v, err);
    if (!st && so->report) {
        fprintf(so->report, "parameters: %llu -> %llu (%.2f%%)\n", (unsigned long long)pare_model_nparams(m),
                (unsigned long long)pare_model_nparams(v),
                100.0 * (double)pare_model_nparams(v) / (double)pare_model_nparams(m));
    }
    pare_struct_plan_free(&p);
    pare_struct_shape_free(&s);
    if (!st && so->dry_run) pare_model_free(v);
    else if (!st) *view = v;
    return st;
}
