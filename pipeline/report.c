/*
 * pipeline/report.c - the machine-readable report of pare shrink / pare run (schema:
 * docs/report-schema.json, version PARE_REPORT_VERSION). Every field is always present; a
 * figure that was not measured is null.
 */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "verify/hash.h"
#include "pare.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *num_or_null(double x, bool have) { return have && isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull(); }
static cJSON *str_or_null(const char *s) { return s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

/* The model's content digest (bytes mode), or NULL. */
static cJSON *model_digest(const char *path, int n_threads) {
    pare_model *m = NULL;
    pare_err e = {0};
    pare_model_digest d = {0};
    if (pare_model_load(path, &m, &e)) return cJSON_CreateNull();
    pare_status st = pare_hash_model(m, false, n_threads, &d, &e);
    pare_model_free(m);
    if (st) return cJSON_CreateNull();
    char hex[33];
    pare_digest_hex(d.model, hex);
    pare_model_digest_free(&d);
    return cJSON_CreateString(hex);
}

static cJSON *file_digest(const char *path) {
    char hex[33];
    if (pare_path_is_dir(path)) {
        /* a PEFT adapter folder: its weights */
        char *w = pare_path_join(path, "adapter_model.safetensors");
        bool ok = w && pare_file_digest(w, hex);
        free(w);
        return ok ? cJSON_CreateString(hex) : cJSON_CreateNull();
    }
    return pare_file_digest(path, hex) ? cJSON_CreateString(hex) : cJSON_CreateNull();
}

static void add_input(cJSON *arr, const char *role, const char *path, cJSON *digest) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", role);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddItemToObject(o, "digest", digest);
    cJSON_AddItemToArray(arr, o);
}

/* bytes and parameters of a model's tensors */
static bool model_size(const char *path, uint64_t *bytes, uint64_t *params) {
    pare_model *m = NULL;
    pare_err e = {0};
    if (pare_model_load(path, &m, &e)) return false;
    *bytes = 0;
    for (size_t i = 0; i < m->n_tensors; i++) *bytes += m->tensors[i].n_bytes;
    *params = pare_model_nparams(m);
    pare_model_free(m);
    return true;
}

static cJSON *size_obj(uint64_t bytes, uint64_t params, bool have) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "bytes", num_or_null((double)bytes, have));
    cJSON_AddItemToObject(o, "params", num_or_null((double)params, have));
    cJSON_AddItemToObject(o, "bits_per_weight", num_or_null(params ? 8.0 * (double)bytes / (double)params : 0, have && params));
    return o;
}

cJSON *pare_shrink_report(const char *command, const char *recipe, const char *in, const char *out,
                          const pare_shrink_job *job, const pare_shrink_result *res, const pare_err *err,
                          pare_status st, double seconds, int n_threads) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "schema", "pare-report");
    cJSON_AddNumberToObject(r, "schema_version", PARE_REPORT_VERSION);
    cJSON_AddStringToObject(r, "pare_version", PARE_VERSION);
    cJSON_AddStringToObject(r, "command", command);
    cJSON_AddItemToObject(r, "recipe", str_or_null(recipe));

    cJSON *inputs = cJSON_AddArrayToObject(r, "inputs");
    add_input(inputs, "model", in, model_digest(in, n_threads));
    for (size_t i = 0; i < job->n_adapters; i++) add_input(inputs, "adapter", job->adapters[i].path, file_digest(job->adapters[i].path));
    add_input(inputs, "text", job->text_path, file_digest(job->text_path));
    if (job->calib_path) add_input(inputs, "calib", job->calib_path, file_digest(job->calib_path));
    if (job->imatrix_path) add_input(inputs, "imatrix", job->imatrix_path, file_digest(job->imatrix_path));

    /* the passes with their parameters */
    cJSON *passes = cJSON_AddArrayToObject(r, "passes");
    if (job->n_adapters) {
        cJSON *p = cJSON_CreateObject(), *a = cJSON_CreateArray();
        cJSON_AddStringToObject(p, "name", "merge-lora");
        for (size_t i = 0; i < job->n_adapters; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "path", job->adapters[i].path);
            cJSON_AddNumberToObject(x, "scale", job->adapters[i].scale);
            cJSON_AddItemToArray(a, x);
        }
        cJSON_AddItemToObject(p, "adapters", a);
        cJSON_AddItemToArray(passes, p);
    }
    if (job->prune) {
        static const char *const methods[] = {"magnitude", "wanda"}, *const scopes[] = {"row", "tensor", "global"};
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", "prune");
        cJSON_AddStringToObject(p, "method", methods[job->prune->method]);
        cJSON_AddStringToObject(p, "scope", scopes[job->prune->scope]);
        cJSON_AddItemToObject(p, "sparsity", num_or_null(job->prune->sparsity, job->prune->m == 0));
        char pat[32];
        snprintf(pat, sizeof pat, "%d:%d", job->prune->n, job->prune->m);
        cJSON_AddItemToObject(p, "pattern", job->prune->m ? cJSON_CreateString(pat) : cJSON_CreateNull());
        cJSON_AddItemToArray(passes, p);
    }
    if (job->ftype >= 0) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", "quantize");
        const bool au = job->ftype == PARE_FTYPE_AUTO;
        cJSON_AddStringToObject(p, "type", au ? "auto" : pare_ftype_name(job->ftype) ? pare_ftype_name(job->ftype) : "?");
        cJSON_AddItemToObject(p, "imatrix", str_or_null(job->imatrix_path));
        if (au) {
            const pare_auto_info *a = &res->autoq;
            cJSON *x = cJSON_CreateObject(), *rules = cJSON_CreateArray(), *probes = cJSON_CreateArray();
            cJSON_AddItemToObject(x, "file_type", str_or_null(a->n_rules ? pare_ftype_name(a->ftype) : NULL));
            for (size_t i = 0; i < a->n_rules; i++) {
                char rule[256];
                snprintf(rule, sizeof rule, "%s=%s", a->globs[i], pare_type_name(a->types[i]));
                cJSON_AddItemToArray(rules, cJSON_CreateString(rule));
            }
            cJSON_AddItemToObject(x, "tensor_type_rules", rules);
            cJSON_AddItemToObject(x, "calib", str_or_null(job->calib_path));
            cJSON_AddItemToObject(x, "target_bytes", num_or_null((double)a->target_bytes, a->target_bytes > 0));
            cJSON_AddNumberToObject(x, "path_steps", (double)a->n_steps);
            cJSON_AddNumberToObject(x, "step", (double)a->step);
            cJSON_AddNumberToObject(x, "predicted_kld", a->predicted_kld);
            for (int i = 0; i < a->n_probes; i++) {
                const pare_auto_probe *pr = &a->probes[i];
                cJSON *y = cJSON_CreateObject();
                cJSON_AddNumberToObject(y, "step", (double)pr->step);
                cJSON_AddNumberToObject(y, "tensor_bytes", (double)pr->tensor_bytes);
                cJSON_AddNumberToObject(y, "ppl", pr->ppl);
                cJSON_AddNumberToObject(y, "ppl_increase_pct", 100.0 * pr->ppl_increase);
                cJSON_AddItemToObject(y, "kld_mean", num_or_null(pr->kld, pr->kld >= 0));
                cJSON_AddBoolToObject(y, "passed", pr->passed);
                cJSON_AddItemToArray(probes, y);
            }
            cJSON_AddItemToObject(x, "probes", probes);
            cJSON_AddItemToObject(p, "auto", x);
        }
        cJSON_AddItemToArray(passes, p);
    }
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "name", "gate");
    cJSON_AddStringToObject(g, "text", job->text_path);
    cJSON_AddNumberToObject(g, "ctx", job->ctx > 0 ? job->ctx : PARE_PPL_DEFAULT_CTX);
    cJSON_AddItemToObject(g, "chunks", num_or_null(res->eval.n_chunks_done, res->eval.n_chunks_done > 0));
    cJSON_AddItemToObject(g, "max_ppl_increase_pct", num_or_null(100.0 * job->max_ppl_increase, job->max_ppl_increase >= 0));
    cJSON_AddItemToObject(g, "max_kld", num_or_null(job->max_kld, job->max_kld >= 0));
    cJSON_AddItemToArray(passes, g);

    /* sizes and tensors */
    uint64_t bi = 0, pi = 0, bo = 0, po = 0;
    const bool have_in = model_size(in, &bi, &pi);
    const bool written = st == PARE_OK;
    cJSON_AddItemToObject(r, "size_before", size_obj(bi, pi, have_in));
    cJSON *after = size_obj(0, 0, false);
    cJSON *tensors = cJSON_AddArrayToObject(r, "tensors");
    pare_model *m = NULL;
    pare_err e = {0};
    if (written && !pare_model_load_gguf(out, &m, &e)) {
        for (size_t i = 0; i < m->n_tensors; i++) {
            const pare_tensor *t = &m->tensors[i];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", t->name);
            cJSON_AddStringToObject(x, "type", pare_type_name(t->type));
            cJSON_AddNumberToObject(x, "params", (double)pare_tensor_nelements(t));
            cJSON_AddNumberToObject(x, "bytes", (double)t->n_bytes);
            double sp = -1;
            for (size_t k = 0; k < res->n_prune; k++)
                if (!strcmp(res->prune[k].name, t->name) && res->prune[k].n)
                    sp = (double)res->prune[k].zeros / (double)res->prune[k].n;
            cJSON_AddItemToObject(x, "sparsity", num_or_null(sp, sp >= 0));
            cJSON_AddItemToArray(tensors, x);
            bo += t->n_bytes;
            po += (uint64_t)pare_tensor_nelements(t);
        }
        pare_model_free(m);
        cJSON_Delete(after);
        after = size_obj(bo, po, true);
    }
    cJSON_AddItemToObject(after, "file_bytes", num_or_null((double)res->out_bytes, written && res->out_bytes));
    cJSON_AddItemToObject(r, "size_after", after);

    const bool evaluated = res->eval.n_chunks_done > 0;
    cJSON *ref = cJSON_AddObjectToObject(r, "reference");
    cJSON_AddItemToObject(ref, "ppl", num_or_null(res->ref.ppl, res->ref.ppl > 0));
    cJSON_AddItemToObject(ref, "ppl_err", num_or_null(res->ref.ppl_err, res->ref.ppl > 0));
    cJSON_AddStringToObject(ref, "source", res->ref_cached ? "cache" : res->ref.ppl > 0 ? "evaluated" : "none");
    cJSON_AddItemToObject(ref, "cache_key", str_or_null(res->cache_key[0] ? res->cache_key : NULL));
    cJSON *out_r = cJSON_AddObjectToObject(r, "result");
    cJSON_AddItemToObject(out_r, "ppl", num_or_null(res->eval.ppl, evaluated));
    cJSON_AddItemToObject(out_r, "ppl_err", num_or_null(res->eval.ppl_err, evaluated));
    cJSON_AddItemToObject(out_r, "ppl_increase_pct", num_or_null(100.0 * res->ppl_increase, evaluated));
    const bool k = evaluated && res->kld_measured;
    cJSON_AddItemToObject(out_r, "kld_mean", num_or_null(res->eval.kld_mean, k));
    cJSON_AddItemToObject(out_r, "kld_p99", num_or_null(res->eval.kld_p99, k));
    cJSON_AddItemToObject(out_r, "kld_max", num_or_null(res->eval.kld_max, k));
    cJSON_AddItemToObject(out_r, "top1_agreement", num_or_null(res->eval.same_top, k));

    cJSON *o = cJSON_AddObjectToObject(r, "output");
    cJSON_AddStringToObject(o, "path", out);
    cJSON_AddBoolToObject(o, "written", written);
    const char *verdict = st == PARE_OK ? "passed" : st == PARE_EQUALITY ? "refused" : "error";
    cJSON_AddStringToObject(r, "verdict", verdict);
    if (st == PARE_EQUALITY && res->failed) {
        cJSON *f = cJSON_AddObjectToObject(r, "failed");
        cJSON_AddStringToObject(f, "limit", res->failed);
        cJSON_AddNumberToObject(f, "by", res->failed_by);
    } else {
        cJSON_AddNullToObject(r, "failed");
    }
    cJSON_AddItemToObject(r, "error", str_or_null(st && st != PARE_EQUALITY ? err->msg : NULL));
    cJSON *stages = cJSON_AddArrayToObject(r, "stages");
    for (int i = 0; i < res->n_stages; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", res->stages[i].name);
        cJSON_AddNumberToObject(x, "seconds", res->stages[i].seconds);
        cJSON_AddNumberToObject(x, "peak_rss_mib", res->stages[i].peak_mib);
        cJSON_AddItemToArray(stages, x);
    }
    cJSON_AddNumberToObject(r, "seconds", seconds);
    return r;
}
