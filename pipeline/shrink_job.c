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
#include "verify/tokenizer.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Evaluates cand against ref on the text; fills res (KLD included). */
static pare_status gate_eval(const char *ref_path, const char *cand_path, const pare_shrink_job *job,
                             const pare_convert_opts *o, pare_ppl_result *res, pare_err *err) {
    pare_model *rm = NULL, *cm = NULL;
    pare_llm *rl = NULL, *cl = NULL;
    pare_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    const int ctx = job->ctx > 0 ? job->ctx : PARE_PPL_DEFAULT_CTX;
    pare_status st = pare_model_load_gguf(ref_path, &rm, err);
    if (!st) st = pare_model_load_gguf(cand_path, &cm, err);
    if (!st) st = pare_llm_new(rm, o->n_threads, &rl, err);
    if (!st) st = pare_llm_new(cm, o->n_threads, &cl, err);
    if (!st) st = pare_tokenizer_new(&rm->meta, &tk, err);
    if (!st) st = pare_read_file(job->text_path, PARE_TEXT_MAX_BYTES, &text, &len, err);
    if (!st) st = pare_tokenize(tk, text, len, true, &ids, &n_ids, err);
    if (!st && n_ids < (size_t)2 * (size_t)ctx)
        st = pare_err_set(err, PARE_EINPUT, "%s: %zu tokens, fewer than two chunks of %d (use a longer text or a smaller --ctx)",
                          job->text_path, n_ids, ctx);
    pare_ppl_opts po = {.n_ctx = ctx, .n_chunks = job->n_chunks > 0 ? job->n_chunks : -1, .n_threads = o->n_threads};
    const int n_pass = pare_ppl_n_chunks(n_ids, &po);
    if (!st) st = pare_llm_prepare(rl, ctx, n_pass, err);
    if (!st) st = pare_llm_prepare(cl, ctx, n_pass, err);
    if (!st) st = pare_perplexity(cl, rl, ids, n_ids, &po, o->progress, o->progress_user, res, err);
    free(ids);
    free(text);
    pare_tokenizer_free(tk);
    pare_llm_free(cl);
    pare_llm_free(rl);
    pare_model_free(cm);
    pare_model_free(rm);
    return st;
}

pare_status pare_shrink(const char *in, const char *out, const pare_shrink_job *job, const pare_convert_opts *o,
                        FILE *report, pare_shrink_result *res, pare_err *err) {
    memset(res, 0, sizeof *res);
    FAIL_IF(!pare_str_ends_with(out, ".gguf"), PARE_EUSAGE, "%s: pare shrink writes a .gguf file", out);
    FAIL_IF(!job->text_path, PARE_EUSAGE, "the quality gate needs evaluation text (--text FILE)");
    FAIL_IF(!job->n_adapters && !job->prune && job->ftype < 0, PARE_EUSAGE,
            "nothing to do: give --lora, --sparsity / --pattern or --type");
    FAIL_IF(job->max_ppl_increase < 0, PARE_EUSAGE, "the PPL increase bound must not be negative");
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
    if (!st && job->n_adapters) {
        if (report) fprintf(report, "shrink: merging %zu adapter(s)\n", job->n_adapters);
        st = pare_merge_lora(cur, job->adapters, job->n_adapters, merged, &so, report, err);
        if (!st) ref = cur = merged;
    }
    pare_quantize_job qj = {.ftype = job->ftype, .output_type = PARE_TYPE_INVALID,
                            .token_embd_type = PARE_TYPE_INVALID, .imatrix_path = job->imatrix_path};
    if (!st && job->prune) {
        /* with quantization, in the same pass: one write of the model instead of two */
        pare_prune_job pj = *job->prune;
        pj.quantize = job->ftype >= 0 ? &qj : NULL;
        pare_prune_stat *ps = NULL;
        size_t nps = 0;
        st = pare_prune_model(cur, pj.quantize ? cand : pruned, &pj, &so, &ps, &nps, err);
        if (!st) {
            int64_t z = 0, n = 0;
            for (size_t i = 0; i < nps; i++) z += ps[i].zeros, n += ps[i].n;
            if (report)
                fprintf(report, "shrink: pruned %zu tensors, %.4f%% of their weights are zero%s\n", nps,
                        n ? 100.0 * (double)z / (double)n : 0.0, pj.quantize ? ", and quantized" : "");
            cur = pj.quantize ? cand : pruned;
        }
        free(ps);
    }
    if (!st && job->ftype >= 0 && cur != cand) {
        st = pare_quantize_model(cur, cand, &qj, &so, NULL, err);
        if (!st) cur = cand;
    }
    if (!st && cur != cand) {
        /* no quantization: the last stage is the candidate */
        if (rename(cur, cand) != 0) st = pare_err_errno(err, "%s: cannot rename in the working folder", cand);
        else if (ref == cur) ref = cand; /* only a merge: the gate compares the merge with itself */
    }
    if (!st) {
        if (report) fprintf(report, "shrink: evaluating against %s\n", ref == in ? in : "the merged model");
        st = gate_eval(ref, cand, job, o, &res->eval, err);
    }
    if (!st) {
        /* against the reference's own perplexity: llama.cpp's PPL(base) is computed from its
         * stored log-probabilities, floored at max - 16, and reads low */
        res->ppl_increase = res->eval.ppl_base_exact > 0 ? res->eval.ppl / res->eval.ppl_base_exact - 1.0 : 0;
        res->kld = res->eval.kld_mean;
        res->passed = res->ppl_increase <= job->max_ppl_increase && (job->max_kld < 0 || res->kld <= job->max_kld);
        if (report)
            fprintf(report, "shrink: PPL %.4f -> %.4f (%+.2f%%, bound %+.2f%%), mean KLD %.6f%s, same top token %.2f%%\n",
                    res->eval.ppl_base_exact, res->eval.ppl, 100.0 * res->ppl_increase, 100.0 * job->max_ppl_increase,
                    res->kld, job->max_kld >= 0 ? "" : " (not bounded)", 100.0 * res->eval.same_top);
    }
    if (!st && !res->passed) {
        st = pare_err_set(err, PARE_EQUALITY,
                          "%s: quality gate failed: PPL %+.2f%% (bound %+.2f%%), mean KLD %.6f%s; nothing written", out,
                          100.0 * res->ppl_increase, 100.0 * job->max_ppl_increase, res->kld,
                          job->max_kld >= 0 ? " (bound given)" : "");
    }
    if (!st) {
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
