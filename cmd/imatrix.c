/* cmd/imatrix.c - pare imatrix MODEL --text FILE OUT [--ctx N] [--chunks K]. */
#include "cmd.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    if (!o->text) return cmd_usage_error("imatrix", "need MODEL, --text FILE and OUT");
    const char *const *pos = o->pos;
    pare_convert_opts co = cmd_convert_opts(o);
    pare_err err = {0};
    double t0 = pare_now();
    if (pare_imatrix_make(pos[0], o->text, pos[1], o->ctx, (int64_t)o->chunks * o->ctx, &co, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[1], pare_now() - t0);
    return 0;
}

static const cmd_use uses[] = {{&cmd_group_eval, NULL}, {&cmd_group_common, "threads force"}, {NULL, NULL}};

const cmd_def cmd_imatrix = {
    .name = "imatrix",
    .summary = "importance matrix (llama.cpp .dat) from calibration text",
    .usage = "usage: pare imatrix MODEL --text FILE OUT.dat [--ctx N] [--chunks K] [--threads N] [--force]\n",
    .args = "  Runs MODEL over the text in chunks of --ctx tokens (BOS first, as llama-imatrix) and\n"
            "  writes the mean squared input activation of every linear layer in llama.cpp's imatrix\n"
            "  .dat format, for 'pare quantize --imatrix' and llama-quantize.\n",
    .min_pos = 2, .max_pos = 2, .need = "MODEL, --text FILE and OUT",
    .uses = uses,
    .run = run,
};
