/*
 * pipeline/gate.c - the evaluator as the gate and the budget search use it: the reference
 * model and the tokenized text are loaded once, then any number of candidates (files or
 * models built in memory) are evaluated against them, with or without the reference's
 * forward pass (the KL divergence needs it; a perplexity ratio can use the reference's
 * perplexity computed once, or read from the cache). The reference's log-probabilities for
 * the KL divergence are computed at its first use and kept (pare_ppl_base), so every later
 * candidate costs one forward pass, not two.
 */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "verify/llm.h"

#include <stdlib.h>

struct pare_evalx {
    pare_model_text ref; /* the reference, its evaluator and the text's tokens */
    pare_ppl_base *kept; /* the reference's side of the KLD, once computed */
    bool keep;           /* keep it (pare_evalx_keep_base) rather than run the reference beside
                          * each candidate */
    pare_ppl_opts po;
    int n_pass;
    pare_progress_fn progress;
    void *progress_user;
};

static pare_status evalx_open(const char *ref_path, const pare_model *ref_model, const char *text_path, int ctx,
                              int n_chunks, const pare_convert_opts *o, pare_evalx **out, pare_err *err) {
    *out = NULL;
    pare_evalx *e = calloc(1, sizeof *e);
    FAIL_IF(!e, PARE_ENOMEM, "out of memory");
    ctx = ctx > 0 ? ctx : PARE_PPL_DEFAULT_CTX;
    e->progress = o->progress;
    e->progress_user = o->progress_user;
    pare_status st = ref_model ? pare_model_text_open_model(ref_model, text_path, o->n_threads, &e->ref, err)
                               : pare_model_text_open(ref_path, text_path, o->n_threads, &e->ref, err);
    if (!st && e->ref.n_ids < (size_t)2 * (size_t)ctx)
        st = pare_err_set(err, PARE_EINPUT,
                          "%s: %zu tokens, fewer than two chunks of %d (use a longer text or a smaller --ctx)", text_path,
                          e->ref.n_ids, ctx);
    e->po = (pare_ppl_opts){.n_ctx = ctx, .n_chunks = n_chunks > 0 ? n_chunks : -1, .n_threads = o->n_threads};
    e->n_pass = st ? 0 : pare_ppl_n_chunks(e->ref.n_ids, &e->po);
    if (!st) st = pare_llm_prepare(e->ref.llm, ctx, e->n_pass, err);
    if (st) {
        pare_evalx_free(e);
        return st;
    }
    *out = e;
    return PARE_OK;
}

pare_status pare_evalx_open(const char *ref_path, const char *text_path, int ctx, int n_chunks,
                            const pare_convert_opts *o, pare_evalx **out, pare_err *err) {
    return evalx_open(ref_path, NULL, text_path, ctx, n_chunks, o, out, err);
}

pare_status pare_evalx_open_model(const pare_model *ref, const char *text_path, int ctx, int n_chunks,
                                  const pare_convert_opts *o, pare_evalx **out, pare_err *err) {
    return evalx_open(NULL, ref, text_path, ctx, n_chunks, o, out, err);
}

const pare_model *pare_evalx_ref_model(const pare_evalx *e) { return e->ref.m; }

/* 2 bytes per vocabulary entry per scored token: beyond this the reference runs again
 * beside each candidate instead */
#define KEEP_MAX_BYTES ((uint64_t)512 << 20)

pare_status pare_evalx_keep_now(pare_evalx *e, pare_err *err) {
    if (!e->keep || e->kept) return PARE_OK;
    pare_status st = pare_ppl_base_new(e->ref.llm, e->ref.ids, e->ref.n_ids, &e->po, NULL, NULL, &e->kept, err);
    pare_llm_trim(e->ref.llm);
    pare_release_free_memory();
    return st;
}

bool pare_evalx_keep_base(pare_evalx *e) {
    const uint64_t bytes = (uint64_t)e->n_pass * (uint64_t)(e->po.n_ctx - 1 - e->po.n_ctx / 2) *
                           (uint64_t)pare_llm_n_vocab(e->ref.llm) * 2;
    e->keep = bytes <= KEEP_MAX_BYTES;
    return e->keep;
}

void pare_evalx_free(pare_evalx *e) {
    if (!e) return;
    pare_ppl_base_free(e->kept);
    pare_model_text_close(&e->ref);
    free(e);
}

int pare_evalx_chunks(const pare_evalx *e) { return e->n_pass; }
int pare_evalx_ctx(const pare_evalx *e) { return e->po.n_ctx; }

/* The reference's working memory is given back after each of its uses: candidates are
 * evaluated beside it, each with its own. */
pare_status pare_evalx_ref(pare_evalx *e, pare_ppl_result *res, pare_err *err) {
    pare_status st =
        pare_perplexity(e->ref.llm, NULL, e->ref.ids, e->ref.n_ids, &e->po, e->progress, e->progress_user, res, err);
    pare_llm_trim(e->ref.llm);
    pare_release_free_memory();
    return st;
}

pare_status pare_evalx_model(pare_evalx *e, const pare_model *cm, bool kld, pare_ppl_result *res, pare_err *err) {
    pare_llm *cl = NULL;
    /* the reference's pass (when kept) before the candidate's evaluator holds its memory */
    pare_status st = kld ? pare_evalx_keep_now(e, err) : PARE_OK;
    if (!st) st = pare_llm_new(cm, e->po.n_threads, &cl, err);
    if (!st) st = pare_llm_prepare(cl, e->po.n_ctx, e->n_pass, err);
    if (!st && kld && e->kept)
        st = pare_perplexity_kept(cl, e->kept, e->ref.ids, e->ref.n_ids, &e->po, e->progress, e->progress_user, res, err);
    else if (!st)
        st = pare_perplexity(cl, kld ? e->ref.llm : NULL, e->ref.ids, e->ref.n_ids, &e->po, e->progress,
                             e->progress_user, res, err);
    pare_llm_free(cl);
    pare_release_free_memory();
    return st;
}

pare_status pare_evalx_file(pare_evalx *e, const char *cand, bool kld, pare_ppl_result *res, pare_err *err) {
    pare_model *cm = NULL;
    TRY(pare_model_load_gguf(cand, &cm, err));
    pare_status st = pare_evalx_model(e, cm, kld, res, err);
    pare_model_free(cm);
    return st;
}
