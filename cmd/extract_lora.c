/* cmd/extract_lora.c - pare extract-lora BASE TUNED OUT --rank R. */
#include "cmd.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    if (!cmd_opts_given(o, "rank")) return cmd_usage_error("extract-lora", "need BASE, TUNED, OUT and --rank R");
    pare_convert_opts co = cmd_convert_opts(o);
    const char *const *pos = o->pos;
    pare_err err = {0};
    if (pare_extract_lora(pos[0], pos[1], pos[2], o->rank, &co, o->quiet ? NULL : stdout, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s\n", pos[2]);
    return 0;
}

static const cmd_opt rows[] = {
    {.key = "rank", .kind = CMD_OPT_INT, .at = CMD_AT(rank), .min = 1, .max = 65536, .arg = "R",
     .help = "rank of the adapter (required)"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "threads force quiet"}, {NULL, NULL}};

const cmd_def cmd_extract_lora = {
    .name = "extract-lora",
    .summary = "a LoRA adapter from the difference of two models (SVD)",
    .usage = "usage: pare extract-lora BASE TUNED OUT --rank R [--threads N] [--force] [-q]\n",
    .args = "  The low-rank approximation (truncated SVD) of TUNED - BASE for every attention and MLP\n"
            "  projection, written as a PEFT adapter folder OUT (adapter_config.json +\n"
            "  adapter_model.safetensors) that PEFT and 'pare merge-lora' load. Prints the share of\n"
            "  each difference's energy the rank keeps (-q: not).\n",
    .min_pos = 3, .max_pos = 3, .need = "BASE, TUNED, OUT and --rank R",
    .uses = uses,
    .run = run,
};
