/* cmd/merge_lora.c - pare merge-lora BASE ADAPTER[:SCALE]... OUT [--type T]. */
#include "cmd.h"

#include "pipeline/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: pare merge-lora BASE ADAPTER[:SCALE]... OUT [--type T] [--threads N] [--force] [-q]\n"
    "  BASE     any model pare reads (HF folder, safetensors, PyTorch, GGUF at any type)\n"
    "  ADAPTER  a PEFT folder (adapter_config.json + adapter_model.safetensors/.bin) or a\n"
    "           llama.cpp GGUF LoRA adapter; :SCALE multiplies its scale (default 1)\n"
    "  OUT      .gguf, .safetensors or a folder\n"
    "  --type T store the weights as T (default: the base's types; a quantized base is\n"
    "           dequantized, merged and requantized to its own types)\n"
    "  -q       do not list the merged tensors\n"
    "W' = W + SCALE * alpha / r * B A (alpha / sqrt(r) with use_rslora), in f32.\n";

int cmd_merge_lora(int argc, char **argv) {
    const char **pos = calloc((size_t)argc, sizeof *pos);
    int npos = 0;
    bool quiet = false;
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .progress = cmd_progress};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            free(pos);
            return 0;
        } else if (!strcmp(a, "--type") && i + 1 < argc) {
            o.type = pare_type_from_name(argv[++i]);
            if (o.type == PARE_TYPE_INVALID) rc = cmd_usage_error("merge-lora", "unknown type '%s'", argv[i]);
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) rc = cmd_usage_error("merge-lora", "bad --threads '%s'", argv[i]);
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "-q")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            rc = cmd_usage_error("merge-lora", "unknown option '%s'", a);
        } else {
            pos[npos++] = a;
        }
    }
    if (!rc && npos < 3) rc = cmd_usage_error("merge-lora", "need BASE, at least one ADAPTER and OUT");
    if (rc) {
        free(pos);
        return rc;
    }
    size_t n_ad = (size_t)npos - 2;
    pare_adapter_spec *ad = calloc(n_ad, sizeof *ad);
    char **paths = calloc(n_ad, sizeof *paths);
    for (size_t i = 0; i < n_ad; i++) {
        paths[i] = cmd_split_scale(pos[i + 1], &ad[i].scale);
        ad[i].path = paths[i];
    }
    pare_err err = {0};
    double t0 = pare_now();
    pare_status st = pare_merge_lora(pos[0], ad, n_ad, pos[npos - 1], &o, quiet ? NULL : stdout, &err);
    if (!st) fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[npos - 1], pare_now() - t0);
    for (size_t i = 0; i < n_ad; i++) free(paths[i]);
    free(paths);
    free(ad);
    free(pos);
    return st ? cmd_fail(&err) : 0;
}
