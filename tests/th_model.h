/* tests/th_model.h - models built in memory for the module tests (with tests/th.h). */
#ifndef PARE_TH_MODEL_H
#define PARE_TH_MODEL_H

#include "core/core.h"
#include "th.h"

/* Adds an F32 tensor with a torch-order shape (d0 outermost; d1 0 for 1-D) and values
 * seed + (k % 997) / 64 (exact in f32). */
static inline void th_add_f32(pare_model *m, const char *name, int64_t d0, int64_t d1, int seed) {
    pare_err err = {0};
    pare_tensor t = {0};
    int64_t ne[2] = {d1 ? d1 : d0, d1 ? d0 : 1};
    CHECK_OK(pare_tensor_init(&t, name, PARE_TYPE_F32, d1 ? 2 : 1, ne, &err), &err);
    int64_t n = d0 * (d1 ? d1 : 1);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t k = 0; k < n; k++) v[k] = (float)seed + (float)(k % 997) / 64.0f;
    pare_tensor_set_owned(&t, v, (uint64_t)n * sizeof *v);
    CHECK_OK(pare_model_add_tensor(m, &t, &err), &err);
}

/* A PLOG file of ../shared (its README): "PLOG", u32 n_tokens, u32 n_vocab, the tokens
 * (i32) and n_tokens x n_vocab logits (f32), as llama.cpp wrote them. */
typedef struct {
    uint32_t n_tokens, n_vocab;
    int32_t *tokens;
    float *logits;
} th_plog;

/* Reads path into *p (free p->tokens and p->logits); a failed CHECK and false when it is not
 * a PLOG file of the size its header gives. */
static inline bool th_plog_read(const char *path, th_plog *p) {
    size_t len = 0;
    memset(p, 0, sizeof *p);
    uint8_t *buf = th_read_file(path, &len);
    bool ok = buf && len >= 12 && memcmp(buf, "PLOG", 4) == 0;
    if (ok) {
        memcpy(&p->n_tokens, buf + 4, 4);
        memcpy(&p->n_vocab, buf + 8, 4);
        ok = p->n_tokens > 0 && p->n_vocab > 0 && 12 + 4ull * p->n_tokens * (1 + p->n_vocab) == len;
    }
    if (ok) {
        p->tokens = malloc(4ull * p->n_tokens);
        p->logits = malloc(4ull * p->n_tokens * p->n_vocab);
        ok = p->tokens && p->logits;
    }
    if (ok) {
        memcpy(p->tokens, buf + 12, 4ull * p->n_tokens);
        memcpy(p->logits, buf + 12 + 4ull * p->n_tokens, 4ull * p->n_tokens * p->n_vocab);
    }
    free(buf);
    CHECK_MSG(ok, "%s is not a PLOG file of the expected size", path);
    return ok;
}

#endif
