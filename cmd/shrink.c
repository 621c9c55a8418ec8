/* cmd/shrink.c - pare shrink IN OUT --text FILE [stages] [gate]. */
#include "core/isa.h"
#include "cmd.h"

#include "quant/plan.h"

#include <stdio.h>

static int run(const cmd_opts *o) {
    const bool have_s = cmd_opts_given(o, "sparsity"), have_p = cmd_opts_given(o, "pattern");
    if (!o->text) return cmd_usage_error("shrink", "the quality gate needs --text FILE");
    if (have_s && have_p) return cmd_usage_error("shrink", "give --sparsity or --pattern, not both");
    if (o->method == PARE_PRUNE_WANDA && !o->calib) return cmd_usage_error("shrink", "--method wanda needs --calib FILE");
    if (o->method == PARE_PRUNE_WANDA && !have_s && !have_p)
        return cmd_usage_error("shrink", "--method wanda needs --sparsity or --pattern");
    pare_prune_job pj = cmd_prune_job(o);
    const bool have_struct = pare_struct_requested(&pj.structured); /* structured pruning (cmd/prune.c) */
    pj.structured.report = o->json ? NULL : stdout;
    pare_shrink_job job = {.prune = have_s || have_p || have_struct ? &pj : NULL, .ftype = o->ftype, .imatrix_path = o->imatrix,
                           .text_path = o->text, .ctx = o->ctx, .n_chunks = o->chunks,
                           .max_ppl_increase = o->max_ppl_increase / 100.0,
                           .max_kld = cmd_opts_given(o, "max-kld") ? o->max_kld : -1};
    pare_convert_opts co = cmd_convert_opts(o);
    /* zeroed: an early failure (the adapters' paths) reaches the free below before pare_shrink */
    pare_shrink_result res = {0};
    cmd_adapters ad;
    pare_err err = {0};
    double t0 = pare_now();
    pare_status st = cmd_adapters_parse(o->lora.v, o->lora.n, &ad, &err);
    job.adapters = ad.v;
    job.n_adapters = ad.n;
    if (!st) st = pare_shrink(o->pos[0], o->pos[1], &job, &co, o->json ? NULL : stdout, &res, &err);
    if (o->json && (st == PARE_OK || st == PARE_EQUALITY))
        printf("{\"passed\": %s, \"ppl\": %.6f, \"ppl_reference\": %.6f, \"ppl_increase\": %.6f, \"kld\": %.8f, "
               "\"same_top\": %.6f, \"written\": %s, \"kernels\": \"%s\"}\n",
               res.passed ? "true" : "false", res.eval.ppl, res.eval.ppl_base_exact, res.ppl_increase, res.kld,
               res.eval.same_top, st == PARE_OK ? "true" : "false", pare_isa_name(pare_isa_active()));
    pare_ppl_result_free(&res.eval);
    cmd_adapters_free(&ad);
    if (st) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", o->pos[1], pare_now() - t0);
    return 0;
}

static const cmd_opt rows[] = {
    {.key = "lora", .kind = CMD_OPT_LIST, .at = CMD_AT(lora), .arg = "ADAPTER[:SCALE]",
     .help = "merge this adapter first (as pare merge-lora); repeatable"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL},
                               {&cmd_group_common, "threads force json"},
                               {&cmd_group_eval, NULL},
                               {&cmd_group_prune, NULL},
                               {&cmd_group_quant, "type imatrix"},
                               {&cmd_group_gate, NULL},
                               {NULL, NULL}};

const cmd_def cmd_shrink = {
    .name = "shrink",
    .summary = "merge, prune and quantize, then publish only if a quality gate passes",
    .usage = "usage: pare shrink IN OUT.gguf --text FILE [--lora ADAPTER[:SCALE]]...\n"
             "                   [--sparsity S | --pattern N:M] [--method magnitude|wanda --calib FILE]\n"
             "                   [--scope row|tensor|global] [--include GLOB]... [--exclude GLOB]...\n"
             "                   [--type FTYPE] [--imatrix FILE] [--ctx N] [--chunks K]\n"
             "                   [--max-ppl-increase PCT] [--max-kld X] [--threads N] [--force] [--json]\n",
    .args = "  The whole job with a quality gate: merges the adapters, prunes the attention and MLP\n"
            "  projections, quantizes with llama-quantize's mix FTYPE (Q4_K_M, Q8_0, ...), then\n"
            "  evaluates the result against the model before pruning and quantization (IN, or IN\n"
            "  with the adapters merged) on FILE, as pare eval --kld-base does. OUT is written only\n"
            "  when the perplexity rose by at most PCT percent and, with --max-kld, the mean KL\n"
            "  divergence is at most X; otherwise nothing is written and the exit status is 3.\n",
    .notes = "Stages run one after the other through a temporary folder beside OUT.\n",
    .min_pos = 2, .max_pos = 2, .need = "IN and OUT",
    .uses = uses,
    .run = run,
};
