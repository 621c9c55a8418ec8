/* tests/fuzz/fuzz_lora.c - the LoRA adapter readers (lora/lora.h): PEFT folders
 * (adapter_config.json + adapter_model.safetensors or adapter_model.bin) and GGUF adapters,
 * as `pare merge-lora` drives them.
 *
 * Input: a GGUF adapter when it starts with "GGUF"; otherwise up to three files separated
 * by FUZZ_SEP: adapter_config.json, adapter_model.safetensors, adapter_model.bin (an empty
 * piece means the file is absent). The base is a tiny Llama held in memory (GGUF names,
 * tests/fixtures/tiny-llama's shapes, no data; see fuzz_util.h). When the adapter loads:
 * it is checked against the base and, when it fits, merged into zero-valued copies of
 * every tensor it targets; then it is turned into the HF view (names back, q/k rows of B
 * un-permuted) that a merge into an HF-layout base uses. */
#include "fuzz_util.h"
#include "lora/lora.h"

static const char *const piece_names[] = {"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"};
#define N_PIECES (sizeof piece_names / sizeof piece_names[0])

static void merge(pare_lora_adapter *ad, const pare_model *base) {
    pare_err err = {0};
    pare_status st = pare_lora_check((const pare_lora_adapter *const *)&ad, 1, base, &err);
    fuzz_check_status(st, &err, "pare_lora_check");
    if (st) return;
    pare_lora_merger *mg = NULL;
    st = pare_lora_merger_new(&ad, 1, &mg, &err);
    fuzz_check_status(st, &err, "pare_lora_merger_new");
    for (size_t i = 0; !st && i < base->n_tensors; i++) {
        const pare_tensor *t = &base->tensors[i];
        if (!pare_lora_merger_wants(mg, t)) continue;
        float *v = calloc((size_t)pare_tensor_nelements(t), sizeof *v);
        if (!v) abort();
        st = pare_lora_merger_apply(mg, t, v, 1, &err);
        fuzz_check_status(st, &err, "pare_lora_merger_apply");
        free(v);
    }
    pare_lora_merger_free(mg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pare_model *base;
    if (!base) base = fuzz_base_model();
    char dir[1024], path[1100];
    fuzz_fresh_dir(dir, sizeof dir, "lora");
    if (size >= 4 && !memcmp(data, "GGUF", 4)) {
        snprintf(path, sizeof path, "%s/adapter.gguf", dir);
        fuzz_write(path, data, size);
    } else {
        fuzz_piece pc[N_PIECES];
        size_t n = fuzz_split(data, size, pc, N_PIECES);
        for (size_t i = 0; i < n; i++) fuzz_put_piece(dir, piece_names[i], pc[i]);
        snprintf(path, sizeof path, "%s", dir);
    }
    pare_lora_adapter *ad = NULL;
    pare_err err = {0};
    pare_status st = pare_lora_load(path, base->arch, &base->meta, 1.0, &ad, &err);
    fuzz_check_status(st, &err, "pare_lora_load");
    if (!st) {
        merge(ad, base);
        st = pare_lora_to_hf_view(ad, base->arch, &base->meta, &err);
        fuzz_check_status(st, &err, "pare_lora_to_hf_view");
    }
    pare_lora_free(ad);
    return 0;
}
