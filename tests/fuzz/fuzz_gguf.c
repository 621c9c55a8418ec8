/* tests/fuzz/fuzz_gguf.c - the GGUF reader (formats/gguf.h) as `pare inspect` and
 * `pare convert` drive it.
 *
 * Input: one GGUF file, or the parts of a split GGUF separated by FUZZ_SEP (part i is
 * written as in-0000i-of-0000N.gguf and the first part is loaded, which loads the rest).
 * When the file loads: every tensor is read and dequantized; the model is saved as one GGUF
 * and, with two or more tensors, as split parts of one tensor each; both must load again
 * with the same metadata keys and the same tensors (an abort otherwise). */
#include "formats/gguf.h"
#include "fuzz_util.h"

/* Split round trips are skipped above this many tensors, to keep the file count small. */
#define FUZZ_GGUF_MAX_SPLIT_PARTS 16

static void same_meta(const pare_meta *a, const pare_meta *b, const char *what) {
    if (a->n != b->n) FUZZ_BUG("%s: %zu keys, then %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const pare_kv *x = &a->kv[i], *y = &b->kv[i];
        if (strcmp(x->key, y->key) || x->type != y->type || x->n != y->n ||
            (x->type == PARE_META_ARRAY && x->elem_type != y->elem_type) ||
            (x->type == PARE_META_STRING && (x->str.len != y->str.len || memcmp(x->str.s, y->str.s, x->str.len))))
            FUZZ_BUG("%s: key %zu '%s' changed", what, i, x->key);
    }
}

static void roundtrip(const pare_model *m, const char *dir) {
    char out[1024];
    pare_err err = {0};
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    pare_status st = pare_gguf_save(m, out, true, &err);
    if (st) FUZZ_BUG("a GGUF that loads does not save: %s", err.msg);
    pare_model *m2 = NULL;
    st = pare_gguf_load(out, &m2, &err);
    if (st) FUZZ_BUG("a saved GGUF does not load: %s", err.msg);
    same_meta(&m->meta, &m2->meta, "GGUF save");
    fuzz_same_tensors(m, m2, "GGUF save");
    pare_model_free(m2);

    if (m->n_tensors < 2 || m->n_tensors > FUZZ_GGUF_MAX_SPLIT_PARTS) return;
    /* A loaded split model's meta has no split.* keys; a whole file's may (split.count 0
     * or 1 is kept): the split writer replaces them, so only the tensors are compared. */
    snprintf(out, sizeof out, "%s/split", dir);
    int n_parts = 0;
    st = pare_gguf_save_split(m, out, 1, true, &n_parts, &err);
    if (st) FUZZ_BUG("a GGUF that loads does not save as split parts: %s", err.msg);
    if ((size_t)n_parts != m->n_tensors) FUZZ_BUG("split save: %d parts for %zu tensors", n_parts, m->n_tensors);
    char *first = pare_gguf_split_path(out, 0, n_parts);
    if (!first) abort();
    st = pare_gguf_load(first, &m2, &err);
    free(first);
    if (st) FUZZ_BUG("saved split parts do not load: %s", err.msg);
    fuzz_same_tensors(m, m2, "GGUF split save");
    pare_model_free(m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_piece pc[FUZZ_MAX_PIECES];
    size_t n = fuzz_split(data, size, pc, FUZZ_MAX_PIECES);
    char dir[1024], path[1024], prefix[1024];
    fuzz_fresh_dir(dir, sizeof dir, "gguf");
    snprintf(prefix, sizeof prefix, "%s/in", dir);
    for (size_t i = 0; i < n; i++) {
        char *p = n == 1 ? pare_path_join(dir, "in.gguf") : pare_gguf_split_path(prefix, (int)i, (int)n);
        if (!p) abort();
        fuzz_write(p, pc[i].p, pc[i].n);
        if (i == 0) snprintf(path, sizeof path, "%s", p);
        free(p);
    }
    pare_model *m = NULL;
    pare_err err = {0};
    pare_status st = pare_gguf_load(path, &m, &err);
    fuzz_check_status(st, &err, "pare_gguf_load");
    if (!st) {
        /* Mapped tensors cannot fail to read once the file has loaded. */
        if (!fuzz_read_all(m)) FUZZ_BUG("a tensor of a loaded GGUF cannot be read");
        roundtrip(m, dir);
    }
    pare_model_free(m);
    return 0;
}
