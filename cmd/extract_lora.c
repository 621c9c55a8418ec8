/* cmd/extract_lora.c - pare extract-lora BASE TUNED OUT --rank R. */
#include "cmd.h"

#include "pipeline/pipeline.h"

#include <stdio.h>
#include <string.h>

static const char *help =
    "usage: pare extract-lora BASE TUNED OUT --rank R [--threads N] [--force] [-q]\n"
    "  The low-rank approximation (truncated SVD) of TUNED - BASE for every attention and MLP\n"
    "  projection, written as a PEFT adapter folder OUT (adapter_config.json +\n"
    "  adapter_model.safetensors) that PEFT and 'pare merge-lora' load. Prints the share of\n"
    "  each difference's energy the rank keeps.\n";

int cmd_extract_lora(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0;
    long rank = 0;
    bool quiet = false;
    pare_convert_opts o = {.type = PARE_TYPE_INVALID};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--rank") && i + 1 < argc) {
            if (!cmd_parse_int(argv[++i], 1, 65536, &rank)) return cmd_usage_error("extract-lora", "bad --rank");
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (!cmd_parse_int(argv[++i], 1, 256, &v)) return cmd_usage_error("extract-lora", "bad --threads");
            o.n_threads = (int)v;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "-q")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("extract-lora", "unknown option '%s'", a);
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("extract-lora", "too many arguments");
        }
    }
    if (npos != 3 || !rank) return cmd_usage_error("extract-lora", "need BASE, TUNED, OUT and --rank R");
    pare_err err = {0};
    if (pare_extract_lora(pos[0], pos[1], pos[2], (int)rank, &o, quiet ? NULL : stdout, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s\n", pos[2]);
    return 0;
}
