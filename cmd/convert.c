/* cmd/convert.c - pare convert IN OUT [--type T] [--threads N] [--force] [-v]. */
#include "cmd.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    pare_convert_opts co = cmd_convert_opts(o);
    pare_err err = {0};
    double t0 = pare_now();
    if (pare_convert(o->pos[0], o->pos[1], &co, &err)) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", o->pos[1], pare_now() - t0);
    return 0;
}

static const cmd_use uses[] = {{&cmd_group_common, "type threads force verbose tokenizer-pre"}, {NULL, NULL}};

const cmd_def cmd_convert = {
    .name = "convert",
    .summary = "convert between HF folders, safetensors, PyTorch and GGUF",
    .usage = "usage: pare convert IN OUT [--type f32|f16|bf16|q8_0] [--threads N] [--force] [-v]\n",
    .args = "  IN   an HF folder, a safetensors file or model.safetensors.index.json, a PyTorch\n"
            "       checkpoint (pytorch_model.bin, .pt) or a GGUF file\n"
            "  OUT  NAME.gguf, NAME.safetensors or a folder (written as an HF folder)\n",
    .notes = "--type sets the type of the 2-D weights; 1-D tensors and norms stay f32 in GGUF, as\n"
             "llama.cpp's converter does.\n"
             "HF -> GGUF renames tensors and changes them as convert_hf_to_gguf.py does (q/k rows\n"
             "permuted, experts merged into 3-D tensors, Gemma norms + 1, ...); GGUF -> safetensors\n"
             "or a folder undoes it. A GGUF of an architecture without HF names (an mmproj, ...)\n"
             "converts to safetensors with its GGUF names and its metadata in __metadata__.\n",
    .min_pos = 2, .max_pos = 2, .need = "IN and OUT",
    .uses = uses,
    .run = run,
};
