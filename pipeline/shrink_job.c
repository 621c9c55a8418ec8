/*
 * pipeline/shrink_job.c - pare shrink: merge LoRA adapters, prune, quantize, then measure the
 * result against the uncompressed model and publish it only when the quality gate passes.
 *
 * Files go to a temporary folder made beside the destination (so that the final rename is
 * atomic and the space is on the same disk): the merged model when there are adapters, then
 * the candidate, pruned and quantized in one streaming pass (pare_prune_job.quantize). The
 * reference for the gate is the model before pruning and quantization: the input, or the input with the adapters merged (a fine-tune is meant to
 * change the model; compression is not). The gate runs the evaluator on both over the same
 * text: perplexity ratio and KL divergence, as `pare eval --kld-base` reports them. On a
 * refusal, or any error, the temporary folder is removed and nothing is written.
 */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "verify/llm.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void stage_end(pare_shrink_result *res, const char *name, double t0) {
    if (res->n_stages >= PARE_MAX_STAGES) return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->stages[res->n_stages++] = (pare_stage_time){name, pare_now() - t0, (double)ru.ru_maxrss / 1024.0};
}

void pare_shrink_result_free(pare_shrink_result *r) {
    pare_ppl_result_free(&r->eval);
    pare_auto_info_free(&r->autoq);
    free(r->prune);
    r->prune = NULL;
    r->n_prune = 0;
}

pare_status pare_shrink(const char *in, const char *out, const pare_shrink_job *job, const pare_convert_opts *o,
                        FILE *report, pare_shrink_result *res, pare_err *err) {
    memset(res, 0, sizeof *res);
    const bool is_auto = job->ftype == PARE_FTYPE_AUTO;
    res->is_auto = is_auto;
    FAIL_IF(!pare_str_ends_with(out, ".gguf"), PARE_EUSAGE, "%s: pare shrink writes a .gguf file", out);
    FAIL_IF(!job->text_path, PARE_EUSAGE, "the quality gate needs evaluation text (--text FILE)");
    FAIL_IF(!job->n_adapters && !job->prune && job->ftype < 0, PARE_EUSAGE,
            "nothing to do: give --lora, --sparsity / --pattern or --type");
    FAIL_IF(job->max_ppl_increase < 0 && job->max_kld < 0, PARE_EUSAGE, "the quality gate needs a limit");
    FAIL_IF(!is_auto && (job->target_bytes || job->target_bpw > 0), PARE_EUSAGE, "--target-size needs --type auto");
    FAIL_IF(pare_same_file(in, out), PARE_EUSAGE, "%s: refusing to overwrite the input", out);
    if (pare_path_exists(out)) {
        FAIL_IF(pare_path_is_dir(out), PARE_EUSAGE, "%s: is a directory", out);
        FAIL_IF(!o->force, PARE_EUSAGE, "%s: already exists (use --force to replace it)", out);
    }
    /* ".NAME.pare-shrink-XXXXXX" beside out, locked while we live (core/files.c) */
    pare_tmpdir *td = NULL;
    TRY(pare_tmpdir_new(out, "shrink", &td, err));
    const char *dir = pare_tmpdir_path(td);
    char *merged = pare_path_join(dir, "merged.gguf"), *pruned = pare_path_join(dir, "pruned.gguf"),
         *cand = pare_path_join(dir, "candidate.gguf");
    pare_status st = (merged && pruned && cand) ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    const char *ref = in, *cur = in;
    pare_convert_opts so = *o;
    so.force = true; /* files of the working folder */
    double t0 = pare_now();
    if (!st && job->n_adapters) {
        if (report) fprintf(report, "shrink: merging %zu adapter(s)\n", job->n_adapters);
        st = pare_job_run(&(pare_job){.in = cur, .out = merged, .o = &so, .adapters = job->adapters,
                                      .n_adapters = job->n_adapters, .report = report}, err);
        if (!st) ref = cur = merged;
        stage_end(res, "merge", t0);
    }
    /* pruning and quantizing in one pass: one write of the model instead of two (--type auto
     * quantizes later, from the pruned file) */
    pare_quantize_job qj = {.ftype = job->ftype, .output_type = PARE_TYPE_INVALID,
                            .token_embd_type = PARE_TYPE_INVALID, .imatrix_path = job->imatrix_path};
    const pare_quantize_job *quantize = job->ftype >= 0 && !is_auto ? &qj : NULL;
    if (!st && (job->prune || quantize)) {
        t0 = pare_now();
        const char *dst = quantize ? cand : pruned;
        st = pare_job_run(&(pare_job){.in = cur, .out = dst, .o = &so, .prune = job->prune, .quantize = quantize,
                                      .prune_stats = &res->prune, .n_prune_stats = &res->n_prune}, err);
        if (!st) cur = dst;
        if (!st && job->prune) {
            int64_t z = 0, n = 0;
            for (size_t i = 0; i < res->n_prune; i++) z += res->prune[i].zeros, n += res->prune[i].n;
            if (report)
                fprintf(report, "shrink: pruned %zu tensors, %.4f%% of their weights are zero%s\n", res->n_prune,
                        n ? 100.0 * (double)z / (double)n : 0.0, quantize ? ", and quantized" : "");
        }
        stage_end(res, job->prune ? "prune" : "quantize", t0);
    }
    if (!st && !is_auto && cur != cand) {
        /* no quantization: the last stage is the candidate */
        if (rename(cur, cand) != 0) st = pare_err_errno(err, "%s: cannot rename in the working folder", cand);
        else if (ref == cur) ref = cand; /* only a merge: the gate compares the merge with itself */
    }
    /* the gate's evaluator, and the reference's perplexity from the cache when it holds it */
    pare_evalx *gate = NULL;
    t0 = pare_now();
    if (!st) st = pare_evalx_open(ref, job->text_path, job->ctx, job->n_chunks, o, &gate, err);
    if (!st && !job->no_cache) {
        st = pare_cache_key(ref, job->text_path, pare_evalx_ctx(gate), pare_evalx_chunks(gate), o->n_threads,
                            res->cache_key, err);
        if (!st) res->ref_cached = pare_cache_get(job->cache_dir, res->cache_key, &res->ref);
        if (!st && report && res->ref_cached) fprintf(report, "shrink: reference PPL %.4f from the cache\n", res->ref.ppl);
    }
    bool ref_known = res->ref_cached;
    if (!st && is_auto && !ref_known && job->max_kld < 0) {
        /* the probes measure PPL only: the reference's once */
        pare_ppl_result rr = {0};
        if (report) fprintf(report, "shrink: evaluating the reference\n");
        st = pare_evalx_ref(gate, &rr, err);
        if (!st) {
            res->ref = (pare_ref_result){rr.ppl, rr.ppl_err, rr.n_chunks_done, rr.n_ctx};
            ref_known = true;
            if (!job->no_cache) pare_cache_put(job->cache_dir, res->cache_key, &res->ref);
        }
        pare_ppl_result_free(&rr);
        stage_end(res, "reference", t0);
    }
    if (!st && is_auto) {
        t0 = pare_now();
        if (report) fprintf(report, "shrink: searching the types (--type auto)\n");
        st = pare_auto_quantize(cur, cur == ref ? pare_evalx_ref_model(gate) : NULL, cand, dir, job, gate, res->ref.ppl, o,
                                report, &res->autoq, err);
        stage_end(res, "auto", t0);
    }
    if (!st) {
        /* the verdict: a real evaluation of the file that would be published; the reference
         * runs beside it when the KLD is bounded or its results are not known yet */
        t0 = pare_now();
        res->kld_measured = job->max_kld >= 0 || !ref_known;
        if (report) fprintf(report, "shrink: evaluating against %s\n", ref == in ? in : "the merged model");
        st = pare_evalx_file(gate, cand, res->kld_measured, &res->eval, err);
        stage_end(res, "gate", t0);
    }
    pare_evalx_free(gate);
    if (!st && !ref_known) {
        res->ref = (pare_ref_result){res->eval.ppl_base_exact, res->eval.ppl_base_err, res->eval.n_chunks_done,
                                     res->eval.n_ctx};
        if (!job->no_cache) pare_cache_put(job->cache_dir, res->cache_key, &res->ref);
    }
    if (!st) {
        /* against the reference's own perplexity: llama.cpp's PPL(base) is computed from its
         * stored log-probabilities, floored at max - 16, and reads low */
        res->ppl_increase = res->ref.ppl > 0 ? res->eval.ppl / res->ref.ppl - 1.0 : 0;
        res->kld = res->kld_measured ? res->eval.kld_mean : -1;
        const bool ppl_ok = job->max_ppl_increase < 0 || res->ppl_increase <= job->max_ppl_increase;
        const bool kld_ok = job->max_kld < 0 || res->kld <= job->max_kld;
        res->passed = ppl_ok && kld_ok;
        if (!ppl_ok) res->failed = "max-ppl-increase", res->failed_by = 100.0 * (res->ppl_increase - job->max_ppl_increase);
        else if (!kld_ok) res->failed = "max-kld", res->failed_by = res->kld - job->max_kld;
        if (report) {
            fprintf(report, "shrink: PPL %.4f -> %.4f (%+.2f%%", res->ref.ppl, res->eval.ppl, 100.0 * res->ppl_increase);
            if (job->max_ppl_increase >= 0) fprintf(report, ", bound %+.2f%%", 100.0 * job->max_ppl_increase);
            if (res->kld_measured)
                fprintf(report, "), mean KLD %.6f%s, same top token %.2f%%\n", res->kld,
                        job->max_kld >= 0 ? "" : " (not bounded)", 100.0 * res->eval.same_top);
            else
                fprintf(report, "), KLD not measured (no --max-kld, reference %s)\n", res->ref_cached ? "from the cache" : "evaluated alone");
        }
    }
    if (!st && !res->passed) {
        char detail[200];
        if (!strcmp(res->failed, "max-kld"))
            snprintf(detail, sizeof detail, "mean KLD %.6f, bound %.6f", res->kld, job->max_kld);
        else
            snprintf(detail, sizeof detail, "PPL %+.2f%%, bound %+.2f%%", 100.0 * res->ppl_increase,
                     100.0 * job->max_ppl_increase);
        st = pare_err_set(err, PARE_EQUALITY, "%s: quality gate failed: %s; nothing written", out, detail);
    }
    if (!st) {
        struct stat sb;
        if (stat(cand, &sb) == 0) res->out_bytes = (uint64_t)sb.st_size;
        if (rename(cand, out) != 0) {
            st = pare_err_errno(err, "%s: cannot rename into place", out);
        } else {
            pare_sync_dir_of(out); /* the rename itself durable */
            if (report) fprintf(report, "shrink: gate passed, wrote %s\n", out);
        }
    }
    pare_tmpdir_free(td);
    free(merged);
    free(pruned);
    free(cand);
    return st;
}
