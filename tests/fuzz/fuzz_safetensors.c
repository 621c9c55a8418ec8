/* tests/fuzz/fuzz_safetensors.c - the safetensors reader (formats/safetensors.h) as
 * `pare inspect` and `pare convert` drive it.
 *
 * Input: one .safetensors file. When it loads: every tensor is read and converted to f32;
 * the model is saved as one file and, with two or more tensors, as shards of one tensor
 * each with a model.safetensors.index.json; both must load again with the same tensors and
 * the same __metadata__ strings (an abort otherwise). */
#include "formats/safetensors.h"
#include "fuzz_util.h"

/* Sharded round trips are skipped above this many tensors, to keep the file count small. */
#define FUZZ_ST_MAX_SHARDS 16

/* Every STRING key of a must be in b with the same value (b may add "format": "pt"). */
static void same_strings(const pare_meta *a, const pare_meta *b, const char *what) {
    for (size_t i = 0; i < a->n; i++) {
        const pare_kv *x = &a->kv[i];
        if (x->type != PARE_META_STRING) continue;
        const pare_kv *y = pare_meta_get(b, x->key);
        if (!y || y->type != PARE_META_STRING || y->str.len != x->str.len || memcmp(x->str.s, y->str.s, x->str.len))
            FUZZ_BUG("%s: __metadata__ '%s' changed", what, x->key);
    }
}

static void roundtrip(const pare_model *m, const char *dir) {
    char out[1024];
    pare_err err = {0};
    pare_model *m2 = NULL;
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    pare_status st = pare_safetensors_save(m, out, true, &err);
    if (st) FUZZ_BUG("a safetensors file that loads does not save: %s", err.msg);
    st = pare_safetensors_load(out, &m2, &err);
    if (st) FUZZ_BUG("a saved safetensors file does not load: %s", err.msg);
    fuzz_same_tensors(m, m2, "safetensors save");
    same_strings(&m->meta, &m2->meta, "safetensors save");
    pare_model_free(m2);

    if (m->n_tensors < 2 || m->n_tensors > FUZZ_ST_MAX_SHARDS) return;
    snprintf(out, sizeof out, "%s/sharded", dir);
    st = pare_safetensors_save_sharded(m, out, 1, true, &err);
    if (st) FUZZ_BUG("a safetensors file that loads does not save as shards: %s", err.msg);
    snprintf(out, sizeof out, "%s/sharded/model.safetensors.index.json", dir);
    st = pare_safetensors_load_index(out, &m2, &err);
    if (st) FUZZ_BUG("saved shards do not load: %s", err.msg);
    fuzz_same_tensors(m, m2, "safetensors sharded save");
    pare_model_free(m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[1024], path[1100];
    fuzz_fresh_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    fuzz_write(path, data, size);
    pare_model *m = NULL;
    pare_err err = {0};
    pare_status st = pare_safetensors_load(path, &m, &err);
    fuzz_check_status(st, &err, "pare_safetensors_load");
    if (!st) {
        /* Mapped tensors cannot fail to read once the file has loaded. */
        if (!fuzz_read_all(m)) FUZZ_BUG("a tensor of a loaded safetensors file cannot be read");
        roundtrip(m, dir);
    }
    pare_model_free(m);
    return 0;
}
