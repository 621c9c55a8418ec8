/* cmd/diff.c - pare diff A B: exit 0 when the models agree, 3 when they differ. */
#include "cmd.h"

#include "formats/formats.h"
#include "verify/diff.h"

#include <math.h>
#include <stdio.h>

static int run(const cmd_opts *o) {
    pare_diff_opts d = {.values = o->values, .tolerance = o->tolerance, .ignore_meta = o->ignore_meta.v,
                        .n_ignore_meta = o->ignore_meta.n, .skip_meta = o->tensors_only, .n_threads = o->threads};
    const bool gguf_names = o->gguf_names;
    const char *const *pos = o->pos;
    pare_err err = {0};
    pare_model *a = NULL, *b = NULL;
    pare_status st = gguf_names ? pare_model_load_gguf(pos[0], &a, &err) : pare_model_load(pos[0], &a, &err);
    if (!st) st = gguf_names ? pare_model_load_gguf(pos[1], &b, &err) : pare_model_load(pos[1], &b, &err);
    pare_diff_result r;
    if (!st) st = pare_diff_models(a, b, &d, stdout, &r, &err);
    pare_model_free(a);
    pare_model_free(b);
    if (st) return cmd_fail(&err);
    printf("%zu tensors equal, %zu differ, %zu metadata differences", r.tensors_same, r.tensor_diffs, r.meta_diffs);
    if (d.values) printf(", largest value difference %.6g (%s)", r.max_abs_diff, r.worst_tensor[0] ? r.worst_tensor : "-");
    printf("\n");
    return (r.tensor_diffs || r.meta_diffs) ? 3 : 0;
}

static const cmd_opt rows[] = {
    {.key = "values", .kind = CMD_OPT_FLAG, .at = CMD_AT(values),
     .help = "compare f32 values (dequantized) instead of bytes and types"},
    {.key = "tolerance", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(tolerance), .min = 0, .max = INFINITY, .arg = "X",
     .help = "with --values: accept |a-b| <= X"},
    {.key = "ignore-meta", .kind = CMD_OPT_LIST, .at = CMD_AT(ignore_meta), .arg = "GLOB",
     .help = "leave metadata keys matching the glob out; repeatable"},
    {.key = "tensors-only", .kind = CMD_OPT_FLAG, .at = CMD_AT(tensors_only), .help = "leave all metadata out"},
    {.key = "gguf-names", .kind = CMD_OPT_FLAG, .at = CMD_AT(gguf_names),
     .help = "give both models GGUF names and layout first (HF vs GGUF)"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "threads"}, {NULL, NULL}};

const cmd_def cmd_diff = {
    .name = "diff",
    .summary = "list the metadata and tensors that differ between two models",
    .usage = "usage: pare diff A B [--values [--tolerance X]] [--ignore-meta GLOB]... [--tensors-only]\n"
             "                     [--gguf-names] [--threads N]\n",
    .args = "  Lists metadata keys and tensors that differ between two models (any formats).\n",
    .notes = "Exit status: 0 same, 3 different, 1 usage error, 2 bad input.\n",
    .min_pos = 2, .max_pos = 2, .need = "two models A and B",
    .uses = uses,
    .run = run,
};
