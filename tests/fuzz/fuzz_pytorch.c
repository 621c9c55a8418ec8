/* tests/fuzz/fuzz_pytorch.c - the PyTorch zip checkpoint reader (formats/pytorch.h: zip
 * central directory, restricted unpickler, storages and views) as `pare convert` drives it.
 *
 * Input: one torch.save file. When it loads: every tensor is read (views and compressed
 * entries through their lazy readers) and converted to f32, and when all could be read the
 * model is saved as safetensors, which must load again with the same tensors (an abort
 * otherwise). */
#include "formats/pytorch.h"
#include "formats/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[1024], path[1100], out[1100];
    fuzz_fresh_dir(dir, sizeof dir, "pt");
    snprintf(path, sizeof path, "%s/in.pt", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    fuzz_write(path, data, size);
    pare_model *m = NULL, *m2 = NULL;
    pare_err err = {0};
    pare_status st = pare_pytorch_load(path, &m, &err);
    fuzz_check_status(st, &err, "pare_pytorch_load");
    if (!st && fuzz_read_all(m)) {
        st = pare_safetensors_save(m, out, true, &err);
        if (st) FUZZ_BUG("a checkpoint that loads does not save as safetensors: %s", err.msg);
        st = pare_safetensors_load(out, &m2, &err);
        if (st) FUZZ_BUG("a checkpoint saved as safetensors does not load: %s", err.msg);
        fuzz_same_tensors(m, m2, "torch -> safetensors");
        pare_model_free(m2);
    }
    pare_model_free(m);
    return 0;
}
