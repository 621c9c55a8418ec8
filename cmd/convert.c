/* cmd/convert.c - pare convert IN OUT [--type T] [--threads N] [--force] [-v]. */
#include "cmd.h"

#include "pipeline/pipeline.h"

#include <stdio.h>
#include <string.h>

static const char *help =
    "usage: pare convert IN OUT [--type f32|f16|bf16|q8_0] [--threads N] [--force] [-v]\n"
    "  IN   an HF folder, a safetensors file or model.safetensors.index.json, a PyTorch\n"
    "       checkpoint (pytorch_model.bin, .pt) or a GGUF file\n"
    "  OUT  NAME.gguf, NAME.safetensors or a folder (written as an HF folder)\n"
    "  --type T     type of the 2-D weights (default: keep the input's float type);\n"
    "               1-D tensors and norms stay f32 in GGUF, as llama.cpp's converter does\n"
    "  --threads N  worker threads (default: all cores)\n"
    "  --force      replace an existing OUT\n"
    "  -v           list every tensor with its old and new type\n"
    "HF -> GGUF renames tensors and permutes q/k rows as convert_hf_to_gguf.py does;\n"
    "GGUF -> safetensors restores HF names and undoes the permutation.\n";

int cmd_convert(int argc, char **argv) {
    const char *pos[2] = {0};
    int npos = 0;
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .n_threads = 0, .progress = cmd_progress};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--type") && i + 1 < argc) {
            o.type = pare_type_from_name(argv[++i]);
            if (o.type == PARE_TYPE_INVALID) return cmd_usage_error("convert", "unknown type '%s'", argv[i]);
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) return cmd_usage_error("convert", "bad --threads '%s'", argv[i]);
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.log = stderr;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("convert", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("convert", "too many arguments");
        }
    }
    if (npos != 2) return cmd_usage_error("convert", "need IN and OUT");
    pare_err err = {0};
    double t0 = pare_now();
    if (pare_convert(pos[0], pos[1], &o, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[1], pare_now() - t0);
    return 0;
}
