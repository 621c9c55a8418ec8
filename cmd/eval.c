/* cmd/eval.c - pare eval MODEL --text FILE [...] and pare eval --merge PARTS... */
#include "core/isa.h"
#include "cmd.h"

#include "formats/formats.h"
#include "verify/llm.h"

#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PART_MAX_BYTES (1u << 30)
#define PART_FORMAT "pare-eval"
#define PART_VERSION 1

/* ---- JSON parts --------------------------------------------------------------------------- */

static cJSON *double_array(const double *v, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *float_array(const float *v, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *result_json(const pare_ppl_result *r, const char *model, const char *base) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", PART_FORMAT);
    cJSON_AddNumberToObject(j, "version", PART_VERSION);
    if (model) cJSON_AddStringToObject(j, "model", model);
    if (base) cJSON_AddStringToObject(j, "kld_base", base);
    /* the level of the kernels that computed it: parts from different levels differ in the
     * last bits (ggml's own builds do too), and a merge says so */
    cJSON_AddStringToObject(j, "kernels", pare_isa_name(pare_isa_active()));
    cJSON_AddNumberToObject(j, "n_ctx", r->n_ctx);
    cJSON_AddNumberToObject(j, "n_vocab", r->n_vocab);
    cJSON_AddNumberToObject(j, "first_chunk", r->first_chunk);
    cJSON_AddNumberToObject(j, "n_chunks", r->n_chunks_done);
    cJSON_AddNumberToObject(j, "n_chunks_total", r->n_chunks_total);
    cJSON_AddNumberToObject(j, "n_scored", (double)r->n_scored);
    cJSON_AddNumberToObject(j, "ppl", r->ppl);
    cJSON_AddNumberToObject(j, "ppl_err", r->ppl_err);
    cJSON_AddNumberToObject(j, "nll_sum", r->nll_sum);
    cJSON_AddNumberToObject(j, "nll2_sum", r->nll2_sum);
    cJSON_AddItemToObject(j, "chunk_nll", double_array(r->chunk_nll, r->n_chunks_done));
    cJSON_AddItemToObject(j, "chunk_ppl", double_array(r->chunk_ppl, r->n_chunks_done));
    if (r->has_kld) {
        cJSON *k = cJSON_AddObjectToObject(j, "kld");
        cJSON_AddNumberToObject(k, "mean", r->kld_mean);
        cJSON_AddNumberToObject(k, "err", r->kld_err);
        cJSON_AddNumberToObject(k, "max", r->kld_max);
        cJSON_AddNumberToObject(k, "p99", r->kld_p99);
        cJSON_AddNumberToObject(k, "median", r->kld_median);
        cJSON_AddNumberToObject(k, "min", r->kld_min);
        cJSON_AddNumberToObject(k, "same_top", r->same_top);
        cJSON_AddNumberToObject(k, "same_top_err", r->same_top_err);
        cJSON_AddNumberToObject(k, "dp_mean", r->dp_mean);
        cJSON_AddNumberToObject(k, "dp_rms", r->dp_rms);
        cJSON_AddNumberToObject(k, "dp_rms_err", r->dp_rms_err);
        cJSON_AddNumberToObject(k, "ppl_base", r->ppl_base);
        cJSON_AddNumberToObject(k, "ppl_ratio", r->ppl_ratio);
        cJSON_AddNumberToObject(k, "ppl_ratio_err", r->ppl_ratio_err);
        cJSON_AddNumberToObject(k, "ln_ppl_cor", r->ln_ppl_cor);
        /* the sums and per-token values a merge needs */
        cJSON *s = cJSON_AddObjectToObject(k, "sums");
        cJSON_AddNumberToObject(s, "nll_base", r->sum_nll_base);
        cJSON_AddNumberToObject(s, "nll_base2", r->sum_nll_base2);
        cJSON_AddNumberToObject(s, "nll_nll_base", r->sum_nll_nll_base);
        cJSON_AddNumberToObject(s, "kld", r->sum_kld);
        cJSON_AddNumberToObject(s, "kld2", r->sum_kld2);
        cJSON_AddNumberToObject(s, "p_diff", r->sum_p_diff);
        cJSON_AddNumberToObject(s, "p_diff2", r->sum_p_diff2);
        cJSON_AddNumberToObject(s, "p_diff4", r->sum_p_diff4);
        cJSON_AddNumberToObject(s, "max_p_diff", r->max_p_diff);
        cJSON_AddNumberToObject(s, "n_same_top", (double)r->n_same_top);
        cJSON_AddItemToObject(k, "kld_values", float_array(r->kld_values, r->n_scored));
        cJSON_AddItemToObject(k, "p_diff_values", float_array(r->p_diff_values, r->n_scored));
    }
    return j;
}

static bool num(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static bool read_doubles(const cJSON *a, double **out, int64_t n) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return false;
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    if (!*out) return false;
    int64_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e)) return false;
        (*out)[i++] = e->valuedouble;
    }
    return true;
}

static bool read_floats(const cJSON *a, float **out, int64_t n) {
    double *d = NULL;
    if (!read_doubles(a, &d, n)) {
        free(d);
        return false;
    }
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    for (int64_t i = 0; *out && i < n; i++) (*out)[i] = (float)d[i];
    free(d);
    return *out != NULL;
}

/* kernels: the part's "kernels" field, or "" (parts written before pare recorded it). */
static pare_status part_from_json(const char *path, pare_ppl_result *r, char kernels[16], pare_err *err) {
    memset(r, 0, sizeof *r);
    kernels[0] = 0;
    char *text = NULL;
    size_t len = 0;
    TRY(pare_read_file(path, PART_MAX_BYTES, &text, &len, err));
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *kern = cJSON_GetObjectItemCaseSensitive(j, "kernels");
    if (cJSON_IsString(kern)) snprintf(kernels, 16, "%s", kern->valuestring);
    double v = 0, d;
    pare_status st = PARE_OK;
    if (!cJSON_IsObject(j) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, PART_FORMAT))
        st = pare_err_set(err, PARE_EINPUT, "%s: not a 'pare eval --json' result", path);
    else if (!num(j, "version", &v) || v != PART_VERSION)
        st = pare_err_set(err, PARE_EINPUT, "%s: result version %g; this pare reads version %d", path, v, PART_VERSION);
    bool ok = !st;
#define GET(field, key) (ok = ok && num(j, key, &d), r->field = ok ? d : 0)
    GET(n_ctx, "n_ctx");
    GET(n_vocab, "n_vocab");
    GET(first_chunk, "first_chunk");
    GET(n_chunks_done, "n_chunks");
    GET(n_chunks_total, "n_chunks_total");
    GET(n_scored, "n_scored");
    GET(nll_sum, "nll_sum");
    GET(nll2_sum, "nll2_sum");
    ok = ok && r->n_chunks_done >= 0 && r->n_scored >= 0 && r->n_chunks_done < (1 << 26) && r->n_scored < (1ll << 40);
    ok = ok && read_doubles(cJSON_GetObjectItemCaseSensitive(j, "chunk_nll"), &r->chunk_nll, r->n_chunks_done);
    ok = ok && read_doubles(cJSON_GetObjectItemCaseSensitive(j, "chunk_ppl"), &r->chunk_ppl, r->n_chunks_done);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "kld");
    if (ok && k) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(k, "sums");
        r->has_kld = true;
        ok = num(s, "nll_base", &r->sum_nll_base) && num(s, "nll_base2", &r->sum_nll_base2) &&
             num(s, "nll_nll_base", &r->sum_nll_nll_base) && num(s, "kld", &r->sum_kld) &&
             num(s, "kld2", &r->sum_kld2) && num(s, "p_diff", &r->sum_p_diff) && num(s, "p_diff2", &r->sum_p_diff2) &&
             num(s, "p_diff4", &r->sum_p_diff4) && num(s, "max_p_diff", &r->max_p_diff) && num(s, "n_same_top", &d);
        r->n_same_top = ok ? (int64_t)d : 0;
        ok = ok && read_floats(cJSON_GetObjectItemCaseSensitive(k, "kld_values"), &r->kld_values, r->n_scored);
        ok = ok && read_floats(cJSON_GetObjectItemCaseSensitive(k, "p_diff_values"), &r->p_diff_values, r->n_scored);
    }
#undef GET
    if (!st && !ok) st = pare_err_set(err, PARE_EINPUT, "%s: a field of the result is missing or malformed", path);
    cJSON_Delete(j);
    if (st) pare_ppl_result_free(r);
    return st;
}

/* ---- printing ----------------------------------------------------------------------------- */

static void print_text(const pare_ppl_result *r) {
    for (int i = 0; i < r->n_chunks_done; i++) printf("[%d]%.4lf,", r->first_chunk + i + 1, r->chunk_ppl[i]);
    printf("\nFinal estimate: PPL = %.4lf +/- %.5lf\n", r->ppl, r->ppl_err);
    printf("%lld tokens scored in %d chunks of %d\n", (long long)r->n_scored, r->n_chunks_done, r->n_ctx);
    if (!r->has_kld) return;
    printf("\n====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6lf +/- %10.6lf\n", r->ppl, r->ppl_err);
    printf("Mean PPL(base)                : %10.6lf +/- %10.6lf\n", r->ppl_base, r->ppl_base_err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * r->ln_ppl_cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6lf +/- %10.6lf\n", r->ln_ppl_ratio, r->ln_ppl_ratio_err);
    printf("Mean PPL(Q)/PPL(base)         : %10.6lf +/- %10.6lf\n", r->ppl_ratio, r->ppl_ratio_err);
    printf("Mean PPL(Q)-PPL(base)         : %10.6lf +/- %10.6lf\n", r->ppl_diff, r->ppl_diff_err);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6lf +/- %10.6lf\n", r->kld_mean, r->kld_err);
    printf("Maximum KLD: %10.6lf\n99.9%%   KLD: %10.6lf\n99.0%%   KLD: %10.6lf\n", r->kld_max, r->kld_p999, r->kld_p99);
    printf("Median  KLD: %10.6lf\n10.0%%   KLD: %10.6lf\n 5.0%%   KLD: %10.6lf\n 1.0%%   KLD: %10.6lf\n", r->kld_median,
           r->kld_p10, r->kld_p5, r->kld_p1);
    printf("Minimum KLD: %10.6lf\n", r->kld_min);
    printf("\n====== Token probability statistics ======\n");
    printf("Mean    Δp: %6.3lf +/- %5.3lf %%\n", 100.0 * r->dp_mean, 100.0 * r->dp_err);
    printf("Maximum Δp: %6.3lf%%\n99.9%%   Δp: %6.3lf%%\n99.0%%   Δp: %6.3lf%%\n95.0%%   Δp: %6.3lf%%\n", 100.0 * r->dp_max,
           100.0 * r->dp_p999, 100.0 * r->dp_p99, 100.0 * r->dp_p95);
    printf("Median  Δp: %6.3lf%%\n 5.0%%   Δp: %6.3lf%%\n 1.0%%   Δp: %6.3lf%%\nMinimum Δp: %6.3lf%%\n", 100.0 * r->dp_median,
           100.0 * r->dp_p5, 100.0 * r->dp_p1, 100.0 * r->dp_min);
    printf("RMS Δp    : %6.3lf +/- %5.3lf %%\n", 100.0 * r->dp_rms, 100.0 * r->dp_rms_err);
    printf("Same top p: %6.3lf +/- %5.3lf %%\n", 100.0 * r->same_top, 100.0 * r->same_top_err);
}

static void print_result(const pare_ppl_result *r, bool json, const char *model, const char *base) {
    if (json) {
        cJSON *j = result_json(r, model, base);
        char *s = cJSON_Print(j);
        if (s) puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        print_text(r);
    }
}

static int merge_parts(int n, const char *const *paths, bool json) {
    pare_ppl_result *parts = calloc((size_t)n, sizeof *parts), out;
    pare_err err = {0};
    pare_status st = parts ? PARE_OK : pare_err_set(&err, PARE_ENOMEM, "out of memory");
    int loaded = 0;
    char first[16] = "", kernels[16];
    for (; !st && loaded < n; loaded++) {
        st = part_from_json(paths[loaded], &parts[loaded], kernels, &err);
        if (st) break;
        if (loaded == 0) memcpy(first, kernels, sizeof first);
        else if (strcmp(first, kernels))
            fprintf(stderr, "pare eval: warning: %s was computed with %s kernels, %s with %s: their last digits may "
                            "differ\n", paths[0], *first ? first : "unrecorded", paths[loaded], *kernels ? kernels : "unrecorded");
    }
    if (!st) st = pare_ppl_merge(parts, (size_t)n, &out, &err);
    for (int i = 0; i < loaded; i++) pare_ppl_result_free(&parts[i]);
    free(parts);
    if (st) return cmd_fail(&err);
    print_result(&out, json, NULL, NULL);
    pare_ppl_result_free(&out);
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------ */

/* The two vocabularies must be the same for the comparison to mean anything. */
static pare_status same_vocab(const pare_model *a, const pare_model *b, pare_err *err) {
    const pare_kv *ta = pare_meta_get(&a->meta, "tokenizer.ggml.tokens"), *tb = pare_meta_get(&b->meta, "tokenizer.ggml.tokens");
    bool same = ta && tb && ta->n == tb->n;
    for (uint64_t i = 0; same && i < ta->n; i++) {
        const pare_str *x = &((const pare_str *)ta->arr)[i], *y = &((const pare_str *)tb->arr)[i];
        same = x->len == y->len && !memcmp(x->s, y->s, x->len);
    }
    FAIL_IF(!same, PARE_EINPUT, "%s and %s have different vocabularies: KL divergence needs the same tokens", a->path,
            b->path);
    return PARE_OK;
}

static int run_eval(const char *model, const char *text_path, const char *base_path, pare_ppl_opts *po,
                    int n_threads, bool json) {
    pare_err err = {0};
    pare_model_text l = {0}, b = {0}; /* the model on the text; the base for the KL divergence */
    pare_ppl_result r;
    memset(&r, 0, sizeof r);
    pare_status st = pare_model_text_open(model, text_path, n_threads, &l, &err);
    const int32_t *ids = l.ids;
    const size_t n_ids = l.n_ids;
    if (!st && base_path) st = pare_model_text_open(base_path, NULL, n_threads, &b, &err);
    if (!st && base_path) st = same_vocab(l.m, b.m, &err);
    if (!st && (size_t)2 * (size_t)po->n_ctx > n_ids)
        st = pare_err_set(&err, PARE_EINPUT, "%s: %zu tokens, fewer than two chunks of %d (use a longer text or a smaller --ctx)",
                          text_path, n_ids, po->n_ctx);
    if (!st) {
        if (!json)
            fprintf(stderr, "pare eval: %s, %zu tokens, ctx %d, %d threads, %s kernels\n", model, n_ids, po->n_ctx,
                    n_threads > 0 ? n_threads : pare_default_threads(), pare_isa_name(pare_isa_active()));
        const int n_pass = pare_ppl_n_chunks(n_ids, po);
        st = pare_llm_prepare(l.llm, po->n_ctx, n_pass, &err);
        if (!st && b.llm) st = pare_llm_prepare(b.llm, po->n_ctx, n_pass, &err);
    }
    if (!st) {
        double t0 = pare_now();
        st = pare_perplexity(l.llm, b.llm, ids, n_ids, po, cmd_progress, NULL, &r, &err);
        if (!st && !json)
            fprintf(stderr, "pare eval: %.2f s, %.0f tokens/s\n", pare_now() - t0,
                    (double)r.n_chunks_done * po->n_ctx / (pare_now() - t0));
    }
    if (!st) print_result(&r, json, model, base_path);
    pare_ppl_result_free(&r);
    pare_model_text_close(&b);
    pare_model_text_close(&l);
    return st ? cmd_fail(&err) : 0;
}

static int run(const cmd_opts *o) {
    if (o->merge) {
        if (!o->n_pos) return cmd_usage_error("eval", "--merge needs the JSON parts");
        return merge_parts((int)o->n_pos, o->pos, o->json);
    }
    if (o->n_pos != 1) return cmd_usage_error("eval", o->n_pos ? "one MODEL at a time" : "need MODEL and --text FILE");
    if (!o->text) return cmd_usage_error("eval", "need MODEL and --text FILE");
    if (cmd_opts_given(o, "chunks") && cmd_opts_given(o, "chunk-range"))
        return cmd_usage_error("eval", "give --chunks or --chunk-range, not both");
    pare_ppl_opts po = {.n_ctx = o->ctx, .first_chunk = 0, .n_chunks = o->chunks > 0 ? o->chunks : -1,
                        .n_threads = o->threads};
    if (cmd_opts_given(o, "chunk-range")) {
        po.first_chunk = o->chunk_range[0];
        po.n_chunks = o->chunk_range[1] - o->chunk_range[0];
    }
    return run_eval(o->pos[0], o->text, o->kld_base, &po, o->threads, o->json);
}

static const cmd_opt rows[] = {
    {.key = "chunk-range", .kind = CMD_OPT_PAIR, .at = CMD_AT(chunk_range), .min = 0, .max = INT_MAX, .arg = "A:B",
     .help = "evaluate chunks A..B-1 only (0-based); with --json the output is a\n"
             "part that 'pare eval --merge' combines with the others"},
    {.key = "kld-base", .kind = CMD_OPT_STRING, .at = CMD_AT(kld_base), .arg = "BASE",
     .help = "also run BASE on the same tokens: KL divergence (BASE || MODEL), same\n"
             "top token %, RMS of the change in the correct token's probability, PPL ratio"},
    {.key = "merge", .kind = CMD_OPT_FLAG, .at = CMD_AT(merge),
     .help = "combine the parts (--chunk-range runs with --json) given as arguments"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {
    {&cmd_group_eval, NULL}, {&group, NULL}, {&cmd_group_common, "json threads"}, {NULL, NULL}};

const cmd_def cmd_eval = {
    .name = "eval",
    .summary = "perplexity and KL divergence as llama-perplexity computes them",
    .usage = "usage: pare eval MODEL --text FILE [--ctx N] [--chunks K] [--chunk-range A:B]\n"
             "                 [--kld-base BASE] [--json] [--threads N]\n"
             "       pare eval --merge PART.json... [--json]\n",
    .args = "  Perplexity as llama-perplexity computes it: the text is tokenized (BOS first), cut into\n"
            "  chunks of --ctx tokens, the first token of each chunk becomes BOS, the second half of\n"
            "  each chunk is scored. Prints [i]ppl after each chunk and 'Final estimate: PPL = X +/- E'.\n",
    .min_pos = 0, .max_pos = -1, .need = "MODEL and --text FILE",
    .uses = uses,
    .run = run,
};
