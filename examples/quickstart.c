/*
 * examples/quickstart.c - pare as a library: open a model, quantize one of its tensors to
 * Q8_0 and measure the error, then evaluate the model's perplexity on a text.
 *
 *     cc quickstart.c $(pkg-config --cflags --libs pare) -o quickstart
 *     ./quickstart MODEL.gguf TEXT.txt [CTX]
 */
#include <pare.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const pare_err *err) {
    fprintf(stderr, "quickstart: %s\n", err->msg);
    return 2;
}

/* Quantizes the first 2-D tensor whose rows fit Q8_0's blocks and prints its relative RMS
 * error after the round trip. */
static pare_status quantize_one(const pare_model *m, pare_err *err) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        if (t->n_dims != 2 || t->ne[0] % 32) continue;
        const int64_t n = pare_tensor_nelements(t);
        float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
        void *q = malloc(pare_type_row_size(PARE_TYPE_Q8_0, t->ne[0]) * (size_t)t->ne[1]);
        pare_status st = x && y && q ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
        if (!st) st = pare_tensor_to_f32(t, x, 0, err);
        if (!st) st = pare_quantize(PARE_TYPE_Q8_0, x, q, t->ne[1], t->ne[0], NULL, 0, err);
        if (!st) st = pare_dequantize(PARE_TYPE_Q8_0, q, y, t->ne[1], t->ne[0], 0, err);
        if (!st) {
            double e = 0, s = 0;
            for (int64_t k = 0; k < n; k++) e += (double)(x[k] - y[k]) * (x[k] - y[k]), s += (double)x[k] * x[k];
            printf("%s: %lld values, Q8_0 relative RMS error %.4f\n", t->name, (long long)n, s > 0 ? sqrt(e / s) : 0.0);
        }
        free(x), free(y), free(q);
        return st;
    }
    printf("no 2-D tensor with rows of whole Q8_0 blocks\n");
    return PARE_OK;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: quickstart MODEL.gguf TEXT.txt [CTX]\n");
        return 1;
    }
    const int ctx = argc > 3 ? atoi(argv[3]) : 64;
    pare_err err = {0};
    pare_model *m = NULL;
    pare_llm *llm = NULL;
    pare_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0, n_tok = 0;
    int32_t *tok = NULL;
    pare_ppl_result r;
    memset(&r, 0, sizeof r);
    printf("pare %s, kernels %s\n", PARE_VERSION, pare_isa_describe());
    pare_status st = pare_model_load_gguf(argv[1], &m, &err);
    if (!st) st = quantize_one(m, &err);
    if (!st) st = pare_llm_new(m, 0, &llm, &err);
    if (!st) st = pare_tokenizer_new(&m->meta, &tk, &err);
    if (!st) st = pare_read_file(argv[2], (size_t)1 << 30, &text, &len, &err);
    if (!st) st = pare_tokenize(tk, text, len, true, &tok, &n_tok, &err);
    if (!st) {
        const pare_ppl_opts o = {.n_ctx = ctx, .n_chunks = -1};
        st = pare_perplexity(llm, NULL, tok, n_tok, &o, NULL, NULL, &r, &err);
    }
    if (!st) printf("perplexity %.4f +/- %.4f over %lld tokens (%d chunks of %d)\n", r.ppl, r.ppl_err,
                    (long long)r.n_scored, r.n_chunks_done, ctx);
    pare_ppl_result_free(&r);
    free(tok);
    free(text);
    pare_tokenizer_free(tk);
    pare_llm_free(llm);
    pare_model_free(m);
    return st ? fail(&err) : 0;
}
