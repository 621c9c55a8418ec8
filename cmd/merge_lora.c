/* cmd/merge_lora.c - pare merge-lora BASE ADAPTER[:SCALE]... OUT [--type T]. */
#include "cmd.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    const char *base = o->pos[0], *out = o->pos[o->n_pos - 1];
    pare_convert_opts co = cmd_convert_opts(o);
    cmd_adapters ad;
    pare_err err = {0};
    double t0 = pare_now();
    pare_status st = cmd_adapters_parse(o->pos + 1, o->n_pos - 2, &ad, &err);
    if (!st) st = pare_merge_lora(base, ad.v, ad.n, out, &co, o->quiet ? NULL : stdout, &err);
    if (!st) fprintf(stderr, "pare: wrote %s in %.2f s\n", out, pare_now() - t0);
    cmd_adapters_free(&ad);
    return st ? cmd_fail(&err) : 0;
}

static const cmd_use uses[] = {{&cmd_group_common, "type threads force quiet"}, {NULL, NULL}};

const cmd_def cmd_merge_lora = {
    .name = "merge-lora",
    .summary = "merge PEFT or GGUF LoRA adapters into a model",
    .usage = "usage: pare merge-lora BASE ADAPTER[:SCALE]... OUT [--type T] [--threads N] [--force] [-q]\n",
    .args = "  BASE     any model pare reads (HF folder, safetensors, PyTorch, GGUF at any type)\n"
            "  ADAPTER  a PEFT folder (adapter_config.json + adapter_model.safetensors/.bin) or a\n"
            "           llama.cpp GGUF LoRA adapter; :SCALE multiplies its scale (default 1)\n"
            "  OUT      .gguf, .safetensors or a folder\n",
    .notes = "Without --type the weights keep the base's types: a quantized base is dequantized, merged\n"
             "and requantized to its own types.\n"
             "W' = W + SCALE * alpha / r * B A (alpha / sqrt(r) with use_rslora), in f32.\n",
    .min_pos = 3, .max_pos = -1, .need = "BASE, at least one ADAPTER and OUT",
    .uses = uses,
    .run = run,
};
