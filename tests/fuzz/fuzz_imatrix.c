/* tests/fuzz/fuzz_imatrix.c - llama.cpp's legacy imatrix .dat reader (quant/plan.h) as
 * `pare quantize --imatrix` drives it.
 *
 * Input: one .dat file. When it loads: its values are looked up for every tensor of a tiny
 * Llama base (fuzz_util.h) and a quantization plan is made with it (IQ2_XXS, the mix that
 * requires importance values, and Q4_K_M); then it is saved and loaded again, which must give
 * the same entries, values, chunk count and dataset name (an abort otherwise). */
#include "fuzz_util.h"
#include "quant/plan.h"

static void same_imatrix(const pare_imatrix *a, const pare_imatrix *b) {
    if (a->n_entries != b->n_entries) FUZZ_BUG("imatrix save: %zu entries, then %zu", a->n_entries, b->n_entries);
    /* The writer always writes a trailer: a file without one comes back with chunks 0 and
     * an empty dataset name. */
    if (a->chunks != b->chunks || strcmp(a->dataset ? a->dataset : "", b->dataset ? b->dataset : ""))
        FUZZ_BUG("imatrix save: trailer changed (%d '%s' -> %d '%s')", (int)a->chunks, a->dataset ? a->dataset : "",
                 (int)b->chunks, b->dataset ? b->dataset : "");
    for (size_t i = 0; i < a->n_entries; i++) {
        const pare_imatrix_entry *x = &a->entries[i], *y = &b->entries[i];
        if (strcmp(x->name, y->name) || x->ncall != y->ncall || x->n != y->n ||
            memcmp(x->raw, y->raw, (size_t)x->n * sizeof *x->raw))
            FUZZ_BUG("imatrix save: entry %zu '%s' changed", i, x->name);
    }
}

static void plan(const pare_model *base, const pare_imatrix *im, int ftype) {
    pare_type types[64];
    if (base->n_tensors > sizeof types / sizeof types[0]) abort();
    pare_quant_plan_opts o = {.ftype = ftype, .output_type = PARE_TYPE_INVALID,
                              .token_embd_type = PARE_TYPE_INVALID, .imatrix = im};
    pare_err err = {0};
    pare_status st = pare_quant_plan(base, &o, types, &err);
    fuzz_check_status(st, &err, "pare_quant_plan");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pare_model *base;
    if (!base) base = fuzz_base_model();
    char dir[1024], path[1100], out[1100];
    fuzz_fresh_dir(dir, sizeof dir, "imatrix");
    snprintf(path, sizeof path, "%s/in.dat", dir);
    snprintf(out, sizeof out, "%s/out.dat", dir);
    fuzz_write(path, data, size);
    pare_imatrix *im = NULL, *im2 = NULL;
    pare_err err = {0};
    pare_status st = pare_imatrix_load(path, &im, &err);
    fuzz_check_status(st, &err, "pare_imatrix_load");
    if (!st) {
        for (size_t i = 0; i < base->n_tensors; i++) {
            const float *v = NULL;
            pare_status s2 = pare_imatrix_for_tensor(im, &base->tensors[i], &v, &err);
            fuzz_check_status(s2, &err, "pare_imatrix_for_tensor");
        }
        plan(base, im, PARE_FTYPE_IQ2_XXS);
        plan(base, im, PARE_FTYPE_Q4_K_M);
        st = pare_imatrix_save(im, out, true, &err);
        if (st) FUZZ_BUG("an imatrix that loads does not save: %s", err.msg);
        st = pare_imatrix_load(out, &im2, &err);
        if (st) FUZZ_BUG("a saved imatrix does not load: %s", err.msg);
        same_imatrix(im, im2);
    }
    pare_imatrix_free(im);
    pare_imatrix_free(im2);
    return 0;
}
