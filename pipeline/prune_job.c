/* pipeline/prune_job.c - the prune pass: select tensors, score, zero (a job writes them). */
#include "pipeline/passes.h"

#include "core/arch.h"
#include "formats/hf.h"
#include "prune/prune.h"
#include "quant/quant.h"
#include "verify/llm.h"

#include <fnmatch.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The projections of attention and MLP blocks in GGUF names (an HF-named model's tensors are
 * matched by their GGUF names, so every family of the architecture table is covered): the
 * 3-D expert stacks and the shared expert of MoE models included, the routers
 * (ffn_gate_inp, ffn_gate_inp_shexp) not. */
static const char *const default_targets[] = {
    "blk.*.attn_q.weight",       "blk.*.attn_k.weight",       "blk.*.attn_v.weight",
    "blk.*.attn_output.weight",  "blk.*.attn_qkv.weight",     "blk.*.ffn_gate.weight",
    "blk.*.ffn_up.weight",       "blk.*.ffn_down.weight",     "blk.*.ffn_gate_exps.weight",
    "blk.*.ffn_up_exps.weight",  "blk.*.ffn_down_exps.weight", "blk.*.ffn_gate_shexp.weight",
    "blk.*.ffn_up_shexp.weight", "blk.*.ffn_down_shexp.weight",
};
/* HF names matched as they are: the common projections, for a model of no known architecture. */
static const char *const hf_targets[] = {
    "*.self_attn.q_proj.weight", "*.self_attn.k_proj.weight", "*.self_attn.v_proj.weight",
    "*.self_attn.o_proj.weight", "*.mlp.gate_proj.weight", "*.mlp.up_proj.weight", "*.mlp.down_proj.weight",
    "*.attn.c_attn.weight",  "*.attn.c_proj.weight",   "*.mlp.c_fc.weight",    "*.mlp.c_proj.weight",
};

static bool any_glob(const char *const *globs, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0) return true;
    return false;
}

/* One expert's HF matrix ("<block prefix>N.<experts prefix>E.<hf>.weight" of the architecture
 * table's .conv), which the converter stacks into blk.N.<gguf>.weight: that name and E. */
static bool hf_expert_slice(const char *arch, const char *name, char *gg, size_t cap, int64_t *expert) {
    const pare_arch *a = arch ? pare_arch_find(arch) : NULL;
    if (!a || !a->conv.experts || !a->conv.experts_prefix || !a->conv.block_prefixes) return false;
    const size_t pl = strlen(a->conv.experts_prefix);
    for (const char *const *bp = a->conv.block_prefixes; *bp; bp++) {
        const size_t bl = strlen(*bp);
        char *end;
        if (strncmp(name, *bp, bl) != 0) continue;
        const long layer = strtol(name + bl, &end, 10);
        if (end == name + bl || *end != '.' || strncmp(end + 1, a->conv.experts_prefix, pl) != 0) continue;
        const char *e_at = end + 1 + pl;
        const long e = strtol(e_at, &end, 10);
        if (end == e_at || *end != '.' || layer < 0 || e < 0) continue;
        for (const pare_arch_expert *x = a->conv.experts; x->hf; x++) {
            const size_t hl = strlen(x->hf);
            if (strncmp(end + 1, x->hf, hl) == 0 && strcmp(end + 1 + hl, ".weight") == 0) {
                snprintf(gg, cap, "blk.%ld.%s.weight", layer, x->gguf);
                *expert = e;
                return true;
            }
        }
    }
    return false;
}

typedef struct {
    const pare_prune_job *job;
    const pare_model *m;
    /* Wanda: per selected tensor, ne0 column norms (NULL for magnitude). */
    float **col_norm;
    /* global scope */
    float threshold;
    int64_t ties_left;
    /* per model tensor, filled by whole tensors or by pieces of rows from several threads */
    pare_prune_stat *stats;
    bool *seen;
    pthread_mutex_t mu;
} prune_ctx;

/* Matrices (2-D) and stacks of expert matrices (3-D) among the default targets or --include,
 * minus --exclude (both globs match the names as the output has them). */
static bool selected(const pare_prune_job *job, const pare_model *m, const pare_tensor *t) {
    if (t->n_dims != 2 && t->n_dims != 3) return false;
    if (any_glob(job->exclude, job->n_exclude, t->name)) return false;
    if (any_glob(job->include, job->n_include, t->name)) return true;
    char gg[256];
    const char *name = t->name;
    if (!m->gguf_names) {
        int64_t e;
        if (any_glob(hf_targets, sizeof hf_targets / sizeof hf_targets[0], t->name) ||
            hf_expert_slice(m->arch, t->name, gg, sizeof gg, &e))
            return true;
        if (!m->arch || !pare_hf_name_to_gguf(m->arch, t->name, gg, sizeof gg)) return false;
        name = gg;
    }
    return any_glob(default_targets, sizeof default_targets / sizeof default_targets[0], name);
}

static bool prune_wants(void *ctx, const pare_tensor *t) {
    const prune_ctx *c = ctx;
    return selected(c->job, c->m, t);
}

/* Matrices in t: its experts for a 3-D stack (ne [n_in, n_out, n_expert]), else 1. */
static int64_t n_mats(const pare_tensor *t) { return t->n_dims == 3 ? t->ne[2] : 1; }

static const float *col_norm_of(prune_ctx *c, const pare_tensor *t) {
    if (!c->col_norm) return NULL;
    return c->col_norm[t - c->m->tensors];
}

/* Adds the zeros of n_rows pruned rows to the tensor's entry. */
static void add_stat(prune_ctx *c, const pare_tensor *t, const float *v, int64_t n_rows) {
    int64_t z = 0, rmin = 0, rmax = 0;
    pare_prune_count_zeros(v, t->ne[0], n_rows, &z, &rmin, &rmax);
    const size_t i = (size_t)(t - c->m->tensors);
    pthread_mutex_lock(&c->mu);
    pare_prune_stat *s = &c->stats[i];
    if (!c->seen[i]) {
        c->seen[i] = true;
        snprintf(s->name, sizeof s->name, "%s", t->name);
        s->row_min = rmin;
        s->row_max = rmax;
    }
    s->n += t->ne[0] * n_rows;
    s->zeros += z;
    s->row_min = rmin < s->row_min ? rmin : s->row_min;
    s->row_max = rmax > s->row_max ? rmax : s->row_max;
    pthread_mutex_unlock(&c->mu);
}

/* Prunes n_rows rows of t given at v, starting at row row0 (all of them, or a piece for
 * row-local jobs). A 3-D stack's rows run through its experts in turn; each expert's rows
 * are scored with its own Wanda norms, and tensor scope counts per expert. */
static pare_status prune_some(prune_ctx *c, const pare_tensor *t, float *v, int64_t row0, int64_t rows,
                              int n_threads, pare_err *err) {
    const pare_prune_job *job = c->job;
    const float *sc = NULL;
    /* The model's own tensor (the pipeline passes it) gives the index for per-tensor data. */
    if (c->col_norm) {
        sc = col_norm_of(c, t);
        FAIL_IF(!sc, PARE_EINPUT, "tensor '%s': no calibration activations reached it", t->name);
    }
    const int64_t ne0 = t->ne[0], per = n_mats(t) > 1 ? t->ne[1] : pare_tensor_nrows(t);
    pare_prune_opts po = {.sparsity = job->sparsity,
                          .scope = job->scope == PARE_PRUNE_TENSOR ? PARE_PRUNE_TENSOR : PARE_PRUNE_ROW,
                          .n = job->n,
                          .m = job->m};
    /* one matrix (or one expert's piece of rows) at a time */
    for (int64_t r = 0; r < rows;) {
        const int64_t e = (row0 + r) / per, left_in_e = (e + 1) * per - (row0 + r);
        const int64_t nr = left_in_e < rows - r ? left_in_e : rows - r;
        const float *esc = sc ? sc + e * ne0 : NULL;
        float *ev = v + r * ne0;
        int64_t z = 0;
        if (job->scope == PARE_PRUNE_GLOBAL && !job->m) {
            pare_prune_below(ev, ne0, nr, esc, c->threshold, &c->ties_left, &z);
        } else {
            pare_status st = pare_prune_matrix(ev, ne0, nr, esc, &po, n_threads, NULL, err);
            if (st) {
                pare_err_prefix(err, "tensor '%s'", t->name);
                return st;
            }
        }
        r += nr;
    }
    add_stat(c, t, v, rows);
    return PARE_OK;
}

static pare_status prune_apply(void *ctx, const pare_tensor *t, float *v, int n_threads, pare_err *err) {
    return prune_some(ctx, t, v, 0, pare_tensor_nrows(t), n_threads, err);
}

/* Row scope and N:M: each row on its own, so the pipeline may hand over pieces (one thread
 * each: the pipeline runs pieces in parallel). */
static pare_status prune_apply_rows(void *ctx, const pare_tensor *t, float *v, int64_t row0, int64_t n_rows,
                                    pare_err *err) {
    return prune_some(ctx, t, v, row0, n_rows, 1, err);
}

/* Global scope: one threshold over the scores of every selected tensor, from a first pass. */
static pare_status global_threshold(prune_ctx *c, int n_threads, pare_err *err) {
    const pare_model *m = c->m;
    int64_t total = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (selected(c->job, m, &m->tensors[i])) total += pare_tensor_nelements(&m->tensors[i]);
    FAIL_IF(total == 0, PARE_EUSAGE, "no tensor is selected for pruning");
    float *scores = malloc((size_t)total * sizeof(float));
    FAIL_IF(!scores, PARE_ENOMEM, "global scope: out of memory for %lld scores", (long long)total);
    int64_t k = 0;
    pare_status st = PARE_OK;
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        if (!selected(c->job, m, t)) continue;
        float *v = scores + k;
        st = pare_tensor_to_f32(t, v, n_threads, err);
        const float *sc = c->col_norm ? c->col_norm[i] : NULL;
        for (int64_t j = 0; !st && j < pare_tensor_nelements(t); j++) {
            float a = v[j] < 0 ? -v[j] : v[j];
            /* an expert's norms for its own matrix: run j / (ne0 * ne1) */
            v[j] = sc ? a * sc[j / (t->ne[0] * t->ne[1]) * t->ne[0] + j % t->ne[0]] : a;
        }
        k += pare_tensor_nelements(t);
        pare_model_release_tensor(m, t);
    }
    if (!st) {
        int64_t want = (int64_t)(c->job->sparsity * (double)total + 0.5);
        if (want <= 0) {
            c->threshold = -1.0f; /* nothing scores below */
            c->ties_left = 0;
        } else {
            c->threshold = pare_prune_kth(scores, total, want - 1);
            int64_t below = 0;
            for (int64_t j = 0; j < total; j++) below += scores[j] < c->threshold;
            c->ties_left = want - below;
        }
    }
    free(scores);
    return st;
}

/* Wanda's ||X_j||_2 for every selected tensor, from one pass of the dense model over the
 * calibration text (the paper prunes with the dense model's activations too; it does not
 * feed pruned layers forward). */
static pare_status wanda_norms(const char *in, const pare_prune_job *job, const pare_model *m, int n_threads,
                               float ***out, pare_err *err) {
    pare_act_stats s;
    int ctx = job->calib_ctx > 0 ? job->calib_ctx : PARE_PPL_DEFAULT_CTX;
    int64_t max_tokens = job->calib_tokens > 0 ? job->calib_tokens : 4096;
    TRY(pare_act_stats_collect(in, job->calib_path, ctx, max_tokens, n_threads, &s, err));
    float **norms = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *norms);
    pare_status st = norms ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        if (!selected(job, m, t)) continue;
        char gg[256];
        const char *name = t->name;
        int64_t expert = -1;
        if (!m->gguf_names) {
            if (!hf_expert_slice(m->arch, t->name, gg, sizeof gg, &expert) &&
                !pare_hf_name_to_gguf(m->arch, t->name, gg, sizeof gg))
                continue;
            name = gg;
        }
        /* a 3-D stack's statistics are n_expert runs of ne0, each over its expert's tokens;
         * one expert's HF matrix takes its run */
        const int64_t n_in = t->ne[0] * n_mats(t);
        const double *sq = NULL;
        if (expert < 0) {
            sq = pare_act_stats_find(&s, name, n_in);
        } else {
            for (size_t k = 0; k < s.n && !sq; k++)
                if (!strcmp(s.names[k], name) && s.n_in[k] >= (expert + 1) * n_in && s.n_in[k] % n_in == 0)
                    sq = s.sumsq[k] + expert * n_in;
        }
        if (!sq) {
            st = pare_err_set(err, PARE_EUNSUPPORTED, "tensor '%s': the calibration pass saw no inputs of %lld values",
                              t->name, (long long)n_in);
            break;
        }
        if (!(norms[i] = malloc((size_t)n_in * sizeof(float)))) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        for (int64_t j = 0; j < n_in; j++) norms[i][j] = (float)sqrt(sq[j]);
    }
    pare_act_stats_free(&s);
    if (st && norms) {
        for (size_t i = 0; i < m->n_tensors; i++) free(norms[i]);
        free(norms);
        norms = NULL;
    }
    *out = norms;
    return st;
}

static bool prune_asked(const pare_job *j) { return j->prune && !pare_struct_requested(&j->prune->structured); }

static void prune_close(void *state) {
    prune_ctx *c = state;
    if (!c) return;
    for (size_t i = 0; c->col_norm && i < c->m->n_tensors; i++) free(c->col_norm[i]);
    free(c->col_norm);
    free(c->stats);
    free(c->seen);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The selection, Wanda's column norms and the global threshold, from the model as read. */
static pare_status prune_open(const pare_job *j, const pare_model *m, pare_out_kind kind, void **state,
                              pare_pass *pass, pare_err *err) {
    (void)kind;
    const pare_prune_job *job = j->prune;
    prune_ctx *c = calloc(1, sizeof *c);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    *c = (prune_ctx){.job = job, .m = m};
    pthread_mutex_init(&c->mu, NULL);
    c->stats = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *c->stats);
    c->seen = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *c->seen);
    pare_status st = c->stats && c->seen ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    size_t n_sel = 0;
    for (size_t i = 0; !st && i < m->n_tensors; i++) n_sel += selected(job, m, &m->tensors[i]);
    if (!st && !n_sel) st = pare_err_set(err, PARE_EUSAGE, "%s: no tensor is selected for pruning", j->in);
    if (!st && job->method == PARE_PRUNE_WANDA) st = wanda_norms(j->in, job, m, j->o->n_threads, &c->col_norm, err);
    if (!st && job->scope == PARE_PRUNE_GLOBAL && !job->m) st = global_threshold(c, j->o->n_threads, err);
    if (st) {
        prune_close(c);
        return st;
    }
    const bool row_local = job->m || job->scope == PARE_PRUNE_ROW;
    *pass = (pare_pass){.name = "prune", .wants = prune_wants, .apply = prune_apply, .ctx = c,
                        .apply_rows = row_local ? prune_apply_rows : NULL};
    *state = c;
    return PARE_OK;
}

/* The pruned tensors' statistics, in file order, to the job's caller. */
static void prune_done(const pare_job *j, void *state) {
    prune_ctx *c = state;
    if (!j->prune_stats) return;
    size_t n = 0;
    for (size_t i = 0; i < c->m->n_tensors; i++)
        if (c->seen[i]) c->stats[n++] = c->stats[i];
    *j->prune_stats = c->stats;
    *j->n_prune_stats = n;
    c->stats = NULL;
}

const pare_pass_kind pare_pass_prune = {"prune", prune_asked, prune_open, prune_done, prune_close};
