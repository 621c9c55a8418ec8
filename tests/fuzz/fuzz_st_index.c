/* tests/fuzz/fuzz_st_index.c - the sharded safetensors index reader
 * (pare_safetensors_load_index, formats/safetensors.h).
 *
 * Input: a model.safetensors.index.json, written beside two fixed shards made once per
 * process: model-00001-of-00002.safetensors ("a.weight" F32 [2, 3], "b.bias" F16 [3]) and
 * model-00002-of-00002.safetensors ("c.weight" BF16 [4, 2], and __metadata__ "format": "pt").
 * When the index loads, every tensor is read and converted to f32. */
#include "formats/safetensors.h"
#include "fuzz_util.h"

static void write_shard(const char *dir, const char *name, const pare_tensor *ts, size_t n, const pare_meta *meta) {
    char *path = pare_path_join(dir, name);
    if (!path) abort();
    pare_st_writer *w = NULL;
    pare_err err = {0};
    uint8_t bytes[64];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 37 + 11);
    if (pare_st_writer_open(path, meta, ts, n, true, NULL, 0, &w, &err)) FUZZ_BUG("shard: %s", err.msg);
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        if (pare_tensor_nbytes(ts[i].type, ts[i].n_dims, ts[i].ne, &nb, &err) || nb > sizeof bytes ||
            pare_st_writer_add(w, bytes, nb, &err))
            FUZZ_BUG("shard: %s", err.msg);
    }
    if (pare_st_writer_finish(w, &err)) FUZZ_BUG("shard: %s", err.msg);
    pare_st_writer_free(w);
    free(path);
}

static const char *shard_dir(void) {
    static char dir[1024];
    if (dir[0]) return dir;
    fuzz_fresh_dir(dir, sizeof dir, "index");
    pare_err err = {0};
    pare_tensor t[3] = {{0}};
    const int64_t ne_a[2] = {3, 2}, ne_b[1] = {3}, ne_c[2] = {2, 4};
    if (pare_tensor_init(&t[0], "a.weight", PARE_TYPE_F32, 2, ne_a, &err) ||
        pare_tensor_init(&t[1], "b.bias", PARE_TYPE_F16, 1, ne_b, &err) ||
        pare_tensor_init(&t[2], "c.weight", PARE_TYPE_BF16, 2, ne_c, &err))
        FUZZ_BUG("shard tensors: %s", err.msg);
    pare_meta meta = {0};
    if (pare_meta_set_str(&meta, "format", "pt", 2, &err)) FUZZ_BUG("shard meta: %s", err.msg);
    write_shard(dir, "model-00001-of-00002.safetensors", t, 2, NULL);
    write_shard(dir, "model-00002-of-00002.safetensors", t + 2, 1, &meta);
    for (int i = 0; i < 3; i++) pare_tensor_clear(&t[i]);
    pare_meta_free(&meta);
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = pare_path_join(shard_dir(), "model.safetensors.index.json");
    if (!path) abort();
    fuzz_write(path, data, size);
    pare_model *m = NULL;
    pare_err err = {0};
    pare_status st = pare_safetensors_load_index(path, &m, &err);
    fuzz_check_status(st, &err, "pare_safetensors_load_index");
    if (!st) fuzz_read_all(m);
    pare_model_free(m);
    free(path);
    return 0;
}
