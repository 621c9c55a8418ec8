/* cmd/diff.c - pare diff A B: exit 0 when the models agree, 3 when they differ. */
#include "cmd.h"

#include "formats/formats.h"
#include "verify/diff.h"

#include <stdio.h>
#include <string.h>

#define MAX_IGNORES 64

static const char *help =
    "usage: pare diff A B [--values [--tolerance X]] [--ignore-meta GLOB]... [--tensors-only]\n"
    "                     [--gguf-names] [--threads N]\n"
    "  Lists metadata keys and tensors that differ between two models (any formats).\n"
    "  --values        compare f32 values (dequantized) instead of bytes and types\n"
    "  --tolerance X   with --values: accept |a-b| <= X\n"
    "  --ignore-meta G leave metadata keys matching the glob G out (repeatable)\n"
    "  --tensors-only  leave all metadata out\n"
    "  --gguf-names    give both models GGUF names and layout first (HF vs GGUF)\n"
    "Exit status: 0 same, 3 different, 1 usage error, 2 bad input.\n";

int cmd_diff(int argc, char **argv) {
    const char *pos[2] = {0};
    const char *ignores[MAX_IGNORES];
    int npos = 0;
    bool gguf_names = false;
    pare_diff_opts o = {.ignore_meta = ignores};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--values")) {
            o.values = true;
        } else if (!strcmp(a, "--tolerance") && i + 1 < argc) {
            if (!cmd_parse_double(argv[++i], &o.tolerance) || o.tolerance < 0)
                return cmd_usage_error("diff", "bad --tolerance '%s'", argv[i]);
        } else if (!strcmp(a, "--ignore-meta") && i + 1 < argc) {
            if (o.n_ignore_meta == MAX_IGNORES) return cmd_usage_error("diff", "too many --ignore-meta");
            ignores[o.n_ignore_meta++] = argv[++i];
        } else if (!strcmp(a, "--tensors-only")) {
            o.skip_meta = true;
        } else if (!strcmp(a, "--gguf-names")) {
            gguf_names = true;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) return cmd_usage_error("diff", "bad --threads '%s'", argv[i]);
            o.n_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("diff", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("diff", "too many arguments");
        }
    }
    if (npos != 2) return cmd_usage_error("diff", "need two models");
    pare_err err = {0};
    pare_model *a = NULL, *b = NULL;
    pare_status st = gguf_names ? pare_model_load_gguf(pos[0], &a, &err) : pare_model_load(pos[0], &a, &err);
    if (!st) st = gguf_names ? pare_model_load_gguf(pos[1], &b, &err) : pare_model_load(pos[1], &b, &err);
    pare_diff_result r;
    if (!st) st = pare_diff_models(a, b, &o, stdout, &r, &err);
    pare_model_free(a);
    pare_model_free(b);
    if (st) return cmd_fail(&err);
    printf("%zu tensors equal, %zu differ, %zu metadata differences", r.tensors_same, r.tensor_diffs, r.meta_diffs);
    if (o.values) printf(", largest value difference %.6g (%s)", r.max_abs_diff, r.worst_tensor[0] ? r.worst_tensor : "-");
    printf("\n");
    return (r.tensor_diffs || r.meta_diffs) ? 3 : 0;
}
