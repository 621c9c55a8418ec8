/* cmd/prune.c - pare prune IN OUT --sparsity S | --pattern N:M [...]. */
#include "cmd.h"

#include "pipeline/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GLOBS 64

static const char *help =
    "usage: pare prune IN OUT (--sparsity S | --pattern N:M) [--method magnitude|wanda]\n"
    "                  [--scope row|tensor|global] [--calib FILE] [--calib-tokens K]\n"
    "                  [--include GLOB]... [--exclude GLOB]... [--type T] [--threads N] [--force]\n"
    "  Zeroes the weights of smallest magnitude (or Wanda score |W| * ||X||) in the attention and\n"
    "  MLP projections (embeddings, norms and the output head only when --include names them).\n"
    "  --sparsity S    share of weights to zero (0..1); exact in every row for --scope row\n"
    "  --pattern N:M   keep N of every M consecutive inputs (2:4, 4:8), exactly\n"
    "  --scope         row (default), tensor, or global (one threshold over all tensors)\n"
    "  --method wanda  scores with input activation norms from --calib FILE: --calib-tokens K\n"
    "                  tokens (default 4096) in chunks of --calib-ctx (default 512)\n"
    "  --type T        store the result as T (e.g. q4_K: prune and quantize in one run)\n"
    "  Prints the sparsity reached per tensor and in total.\n";

int cmd_prune(int argc, char **argv) {
    const char *pos[2] = {0}, *inc[MAX_GLOBS], *exc[MAX_GLOBS];
    int npos = 0;
    bool have_s = false;
    pare_prune_job job = {.method = PARE_PRUNE_MAGNITUDE, .include = inc, .exclude = exc};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .progress = cmd_progress};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--sparsity") && more) {
            if (!cmd_parse_double(argv[++i], &job.sparsity) || job.sparsity < 0 || job.sparsity > 1)
                return cmd_usage_error("prune", "--sparsity takes a number from 0 to 1");
            have_s = true;
        } else if (!strcmp(a, "--pattern") && more) {
            if (sscanf(argv[++i], "%d:%d", &job.n, &job.m) != 2 || job.m < 2 || job.m > 256 || job.n < 1 ||
                job.n >= job.m)
                return cmd_usage_error("prune", "--pattern takes N:M with 0 < N < M <= 256, like 2:4");
        } else if (!strcmp(a, "--method") && more) {
            const char *v = argv[++i];
            if (!strcmp(v, "magnitude")) job.method = PARE_PRUNE_MAGNITUDE;
            else if (!strcmp(v, "wanda")) job.method = PARE_PRUNE_WANDA;
            else return cmd_usage_error("prune", "unknown method '%s'", v);
        } else if (!strcmp(a, "--scope") && more) {
            const char *v = argv[++i];
            if (!strcmp(v, "row")) job.scope = 0;
            else if (!strcmp(v, "tensor")) job.scope = 1;
            else if (!strcmp(v, "global")) job.scope = 2;
            else return cmd_usage_error("prune", "unknown scope '%s'", v);
        } else if (!strcmp(a, "--calib-ctx") && more) {
            long k;
            if (!cmd_parse_int(argv[++i], 4, 1 << 20, &k)) return cmd_usage_error("prune", "bad --calib-ctx");
            job.calib_ctx = (int)k;
        } else if (!strcmp(a, "--calib") && more) {
            job.calib_path = argv[++i];
        } else if (!strcmp(a, "--calib-tokens") && more) {
            long k;
            if (!cmd_parse_int(argv[++i], 16, 100000000, &k)) return cmd_usage_error("prune", "bad --calib-tokens");
            job.calib_tokens = k;
        } else if (!strcmp(a, "--include") && more) {
            if (job.n_include == MAX_GLOBS) return cmd_usage_error("prune", "too many --include");
            inc[job.n_include++] = argv[++i];
        } else if (!strcmp(a, "--exclude") && more) {
            if (job.n_exclude == MAX_GLOBS) return cmd_usage_error("prune", "too many --exclude");
            exc[job.n_exclude++] = argv[++i];
        } else if (!strcmp(a, "--type") && more) {
            o.type = pare_type_from_name(argv[++i]);
            if (o.type == PARE_TYPE_INVALID) return cmd_usage_error("prune", "unknown type '%s'", argv[i]);
        } else if (!strcmp(a, "--threads") && more) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) return cmd_usage_error("prune", "bad --threads");
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("prune", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("prune", "too many arguments");
        }
    }
    if (npos != 2) return cmd_usage_error("prune", "need IN and OUT");
    if (have_s == (job.m != 0)) return cmd_usage_error("prune", "give exactly one of --sparsity and --pattern");
    if (job.method == PARE_PRUNE_WANDA && !job.calib_path)
        return cmd_usage_error("prune", "--method wanda needs --calib FILE");
    pare_err err = {0};
    pare_prune_stat *stats = NULL;
    size_t n_stats = 0;
    double t0 = pare_now();
    if (pare_prune_model(pos[0], pos[1], &job, &o, &stats, &n_stats, &err)) return cmd_fail(&err);
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
