/* cmd/quantize.c - pare quantize IN OUT --type TYPE [...]. */
#include "cmd.h"

#include "quant/plan.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    /* OUT may be left out with --dry-run */
    if (o->n_pos != 2 && !(o->n_pos == 1 && o->dry_run)) return cmd_usage_error("quantize", "need IN and OUT");
    if (o->ftype < 0) return cmd_usage_error("quantize", "--type is required");
    pare_quantize_job job = {.ftype = o->ftype, .pure = o->pure, .output_type = o->output_type,
                             .token_embd_type = o->token_embd_type, .leave_output = o->leave_output,
                             .override_globs = (const char *const *)o->tensor_types.globs,
                             .override_types = o->tensor_types.types, .n_overrides = o->tensor_types.n,
                             .imatrix_path = o->imatrix, .dry_run = o->dry_run, .stats = o->stats};
    pare_convert_opts co = cmd_convert_opts(o);
    pare_err err = {0};
    double t0 = pare_now();
    const char *out = o->n_pos == 2 ? o->pos[1] : "dry-run.gguf";
    if (pare_quantize_model(o->pos[0], out, &job, &co, stdout, &err)) return cmd_fail(&err);
    if (!job.dry_run) fprintf(stderr, "pare: wrote %s (%s) in %.2f s\n", out, pare_ftype_name(job.ftype), pare_now() - t0);
    return 0;
}

static const cmd_use uses[] = {{&cmd_group_quant, NULL}, {&cmd_group_common, "threads force verbose tokenizer-pre"}, {NULL, NULL}};

const cmd_def cmd_quantize = {
    .name = "quantize",
    .summary = "quantize to GGUF block types with llama-quantize's mixes",
    .usage = "usage: pare quantize IN OUT.gguf --type TYPE [--pure] [--imatrix FILE]\n"
             "                     [--output-tensor-type T] [--token-embedding-type T] [--leave-output-tensor]\n"
             "                     [--tensor-type GLOB=T]... [--threads N] [--dry-run] [--stats] [--force]\n",
    .args = "  IN     anything pare reads (HF folder, safetensors, PyTorch, GGUF of any type)\n"
            "  TYPE   a single type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL\n"
            "         IQ4_XS TQ1_0 TQ2_0) or one of llama-quantize's mixes (Q2_K Q2_K_S Q3_K_S Q3_K_M\n"
            "         Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS\n"
            "         IQ3_XS IQ3_S IQ3_M), with llama-quantize's per-tensor choices; where those\n"
            "         are 1- and 2-bit i-quants they need --imatrix, as in llama-quantize\n",
    .min_pos = 1, .max_pos = 2, .need = "IN and OUT",
    .uses = uses,
    .run = run,
};
