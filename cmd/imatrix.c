/* cmd/imatrix.c - pare imatrix MODEL --text FILE OUT [--ctx N] [--chunks K]. */
#include "cmd.h"

#include "pipeline/pipeline.h"

#include <stdio.h>
#include <string.h>

static const char *help =
    "usage: pare imatrix MODEL --text FILE OUT.dat [--ctx N] [--chunks K] [--threads N] [--force]\n"
    "  Runs MODEL over the text in chunks of --ctx tokens (default 512; BOS first, as\n"
    "  llama-imatrix) and writes the mean squared input activation of every linear layer in\n"
    "  llama.cpp's imatrix .dat format, for 'pare quantize --imatrix' and llama-quantize.\n";

int cmd_imatrix(int argc, char **argv) {
    const char *pos[2] = {0}, *text = NULL;
    int npos = 0, ctx = 512;
    long chunks = 0;
    pare_convert_opts o = {.type = PARE_TYPE_INVALID};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--text") && more) {
            text = argv[++i];
        } else if (!strcmp(a, "--ctx") && more) {
            if (!cmd_parse_int(argv[++i], 4, 1 << 20, &v)) return cmd_usage_error("imatrix", "bad --ctx");
            ctx = (int)v;
        } else if (!strcmp(a, "--chunks") && more) {
            if (!cmd_parse_int(argv[++i], 1, 1 << 26, &chunks)) return cmd_usage_error("imatrix", "bad --chunks");
        } else if (!strcmp(a, "--threads") && more) {
            if (!cmd_parse_int(argv[++i], 1, 256, &v)) return cmd_usage_error("imatrix", "bad --threads");
            o.n_threads = (int)v;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("imatrix", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("imatrix", "too many arguments");
        }
    }
    if (npos != 2 || !text) return cmd_usage_error("imatrix", "need MODEL, --text FILE and OUT");
    pare_err err = {0};
    double t0 = pare_now();
    if (pare_imatrix_make(pos[0], text, pos[1], ctx, chunks * ctx, &o, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[1], pare_now() - t0);
    return 0;
}
