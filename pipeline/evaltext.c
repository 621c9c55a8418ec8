/* pipeline/evaltext.c - a model evaluated on a text: the model, its evaluator and the text's
 * tokens, opened together (pare eval, the gate, calibration, structured pruning's scores). */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "verify/tokenizer.h"

#include <stdlib.h>
#include <string.h>

pare_status pare_text_tokens(const pare_model *m, const char *text_path, int32_t **ids, size_t *n_ids, pare_err *err) {
    *ids = NULL;
    *n_ids = 0;
    pare_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0;
    pare_status st = pare_tokenizer_new(&m->meta, &tk, err);
    if (!st) st = pare_read_file(text_path, PARE_TEXT_MAX_BYTES, &text, &len, err);
    if (!st) st = pare_tokenize(tk, text, len, true, ids, n_ids, err);
    free(text);
    pare_tokenizer_free(tk);
    return st;
}

pare_status pare_model_text_open(const char *model, const char *text_path, int n_threads, pare_model_text *mt,
                                 pare_err *err) {
    memset(mt, 0, sizeof *mt);
    pare_model *m = NULL;
    TRY(pare_model_load_gguf(model, &m, err));
    pare_status st = pare_model_text_open_model(m, text_path, n_threads, mt, err);
    if (st) {
        pare_model_free(m);
        return st;
    }
    mt->borrowed = false; /* loaded here: close frees it */
    return PARE_OK;
}

pare_status pare_model_text_open_model(const pare_model *m, const char *text_path, int n_threads,
                                       pare_model_text *mt, pare_err *err) {
    memset(mt, 0, sizeof *mt);
    mt->m = (pare_model *)m; /* read only: not freed by close */
    mt->borrowed = true;
    pare_status st = pare_llm_new(mt->m, n_threads, &mt->llm, err);
    if (!st && text_path) st = pare_text_tokens(mt->m, text_path, &mt->ids, &mt->n_ids, err);
    if (st) pare_model_text_close(mt);
    return st;
}

void pare_model_text_close(pare_model_text *mt) {
    pare_llm_free(mt->llm);
    if (!mt->borrowed) pare_model_free(mt->m);
    free(mt->ids);
    memset(mt, 0, sizeof *mt);
}
