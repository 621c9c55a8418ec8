/* cmd/prune.c - pare prune IN OUT --sparsity S | --pattern N:M [...]. */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>

/* The library's job for the pruning options: prune's own, and shrink's first stage. */
pare_prune_job cmd_prune_job(const cmd_opts *o) {
    return (pare_prune_job){.method = (pare_prune_method)o->method, .sparsity = o->sparsity, .scope = (pare_prune_scope)o->scope,
                            .n = o->pattern[0], .m = o->pattern[1], .include = o->include.v,
                            .n_include = o->include.n, .exclude = o->exclude.v, .n_exclude = o->exclude.n,
                            .calib_path = o->calib, .calib_tokens = o->calib_tokens, .calib_ctx = o->calib_ctx,
                            .structured = {.on = o->structured, .drop_layers = o->drop_layers, .layers = o->layers,
                                           .ffn_keep = o->ffn_keep, .heads_keep = o->heads_keep,
                                           .experts_keep = o->experts_keep, .global = o->global,
                                           .candidates = o->candidates, .dry_run = o->dry_run}};
}

/* pare prune --structured: the plan and scores on stdout. */
static int run_structured(const cmd_opts *o) {
    if (cmd_opts_given(o, "sparsity") || cmd_opts_given(o, "pattern"))
        return cmd_usage_error("prune", "--structured does not combine with --sparsity / --pattern");
    if (!o->drop_layers && !o->layers && !o->ffn_keep && !o->heads_keep && !o->experts_keep)
        return cmd_usage_error("prune", "--structured needs --drop-layers, --layers, --ffn-keep, --heads-keep or --experts-keep");
    if (o->drop_layers && o->layers) return cmd_usage_error("prune", "give --drop-layers or --layers, not both");
    pare_prune_job job = cmd_prune_job(o);
    job.structured.on = true;
    job.structured.report = stdout;
    pare_convert_opts co = cmd_convert_opts(o);
    pare_err err = {0};
    double t0 = pare_now();
    if (pare_prune_model(o->pos[0], o->pos[1], &job, &co, NULL, NULL, &err)) return cmd_fail(&err);
    if (o->dry_run) printf("dry run: nothing written\n");
    else fprintf(stderr, "pare: wrote %s in %.2f s\n", o->pos[1], pare_now() - t0);
    return 0;
}

static int run(const cmd_opts *o) {
    const pare_prune_job pj = cmd_prune_job(o);
    if (pare_struct_requested(&pj.structured)) return run_structured(o);
    if (cmd_opts_given(o, "sparsity") == cmd_opts_given(o, "pattern"))
        return cmd_usage_error("prune", "give exactly one of --sparsity and --pattern");
    if (o->method == PARE_PRUNE_WANDA && !o->calib) return cmd_usage_error("prune", "--method wanda needs --calib FILE");
    const char *const *pos = o->pos;
    pare_prune_job job = cmd_prune_job(o);
    pare_convert_opts co = cmd_convert_opts(o);
    pare_err err = {0};
    pare_prune_stat *stats = NULL;
    size_t n_stats = 0;
    double t0 = pare_now();
    if (pare_prune_model(pos[0], pos[1], &job, &co, &stats, &n_stats, &err)) return cmd_fail(&err);
    int64_t n = 0, z = 0;
    for (size_t i = 0; i < n_stats; i++) {
        printf("%-40s %6.2f%% zero (per row %lld..%lld)\n", stats[i].name,
               100.0 * (double)stats[i].zeros / (double)stats[i].n, (long long)stats[i].row_min,
               (long long)stats[i].row_max);
        n += stats[i].n;
        z += stats[i].zeros;
    }
    printf("total: %lld of %lld pruned weights are zero (%.4f%%) in %zu tensors\n", (long long)z, (long long)n,
           n ? 100.0 * (double)z / (double)n : 0.0, n_stats);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[1], pare_now() - t0);
    free(stats);
    return 0;
}

static const cmd_use uses[] = {{&cmd_group_prune, NULL}, {&cmd_group_common, "type threads force"},
                               {&cmd_group_quant, "dry-run"}, {NULL, NULL}};

const cmd_def cmd_prune = {
    .name = "prune",
    .summary = "zero the least important weights (magnitude, N:M, Wanda)",
    .usage = "usage: pare prune IN OUT (--sparsity S | --pattern N:M) [--method magnitude|wanda]\n"
             "                  [--scope row|tensor|global] [--calib FILE] [--calib-tokens K]\n"
             "                  [--include GLOB]... [--exclude GLOB]... [--type T] [--threads N] [--force]\n"
             "       pare prune IN OUT --structured [--drop-layers N | --layers LIST] [--ffn-keep F]\n"
             "                  [--heads-keep F] [--experts-keep F] [--global] --calib FILE [--dry-run]\n",
    .args = "  Zeroes the weights of smallest magnitude (or Wanda score |W| * ||X||) in the attention and\n"
            "  MLP projections (embeddings, norms and the output head only when --include names them).\n",
    .notes = "--type may be a block type (e.g. q4_K: prune and quantize in one run).\n"
             "--structured removes whole layers (--drop-layers: angular distance, then the PPL on\n"
             "--calib without each candidate), FFN channels and heads (activation-weighted\n"
             "importance) or experts, so that the file shrinks; prints the scores and the plan.\n"
             "Prints the sparsity reached per tensor and in total.\n",
    .min_pos = 2, .max_pos = 2, .need = "IN and OUT",
    .uses = uses,
    .run = run,
};
