/* cmd/shrink.c - pare shrink IN OUT --text FILE [stages] [gate]. */
#include "core/isa.h"
#include "cmd.h"

#include "pipeline/pipeline.h"
#include "quant/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADAPTERS 16

static const char *help =
    "usage: pare shrink IN OUT.gguf --text FILE [--lora ADAPTER[:SCALE]]...\n"
    "                   [--sparsity S | --pattern N:M] [--method magnitude|wanda --calib FILE]\n"
    "                   [--type FTYPE] [--imatrix FILE] [--ctx N] [--chunks K]\n"
    "                   [--max-ppl-increase PCT] [--max-kld X] [--threads N] [--force]\n"
    "  The whole job with a quality gate: merges the adapters, prunes the attention and MLP\n"
    "  projections, quantizes with llama-quantize's mix FTYPE (Q4_K_M, Q8_0, ...), then\n"
    "  evaluates the result against the model before pruning and quantization (IN, or IN\n"
    "  with the adapters merged) on FILE, as pare eval --kld-base does. OUT is written only\n"
    "  when the perplexity rose by at most PCT percent (default 5) and, with --max-kld, the\n"
    "  mean KL divergence is at most X; otherwise nothing is written and the exit status is 3.\n"
    "  --ctx N     tokens per evaluation chunk (default 512); --chunks K: evaluate K chunks\n"
    "  Stages run one after the other through a temporary folder beside OUT.\n";

int cmd_shrink(int argc, char **argv) {
    const char *pos[2] = {0}, *lora[MAX_ADAPTERS];
    int npos = 0, n_lora = 0;
    bool have_s = false, have_p = false, json = false;
    pare_prune_job pj = {.method = PARE_PRUNE_MAGNITUDE};
    pare_shrink_job job = {.ftype = -1, .max_ppl_increase = 0.05, .max_kld = -1};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .progress = cmd_progress};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        long n;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--text") && more) {
            job.text_path = argv[++i];
        } else if (!strcmp(a, "--lora") && more) {
            if (n_lora == MAX_ADAPTERS) return cmd_usage_error("shrink", "at most %d adapters", MAX_ADAPTERS);
            lora[n_lora++] = argv[++i];
        } else if (!strcmp(a, "--sparsity") && more) {
            if (!cmd_parse_double(argv[++i], &pj.sparsity) || pj.sparsity < 0 || pj.sparsity > 1)
                return cmd_usage_error("shrink", "--sparsity takes a number from 0 to 1");
            have_s = true;
        } else if (!strcmp(a, "--pattern") && more) {
            if (sscanf(argv[++i], "%d:%d", &pj.n, &pj.m) != 2 || pj.m < 2 || pj.m > 256 || pj.n < 1 || pj.n >= pj.m)
                return cmd_usage_error("shrink", "--pattern takes N:M with 0 < N < M <= 256, like 2:4");
            have_p = true;
        } else if (!strcmp(a, "--method") && more) {
            const char *v = argv[++i];
            if (!strcmp(v, "magnitude")) pj.method = PARE_PRUNE_MAGNITUDE;
            else if (!strcmp(v, "wanda")) pj.method = PARE_PRUNE_WANDA;
            else return cmd_usage_error("shrink", "unknown method '%s'", v);
        } else if (!strcmp(a, "--calib") && more) {
            pj.calib_path = argv[++i];
        } else if (!strcmp(a, "--type") && more) {
            if (!pare_ftype_from_name(argv[++i], &job.ftype))
                return cmd_usage_error("shrink", "unknown type '%s' (Q4_K_M, Q8_0, ...)", argv[i]);
        } else if (!strcmp(a, "--imatrix") && more) {
            job.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--ctx") && more) {
            if (!cmd_parse_int(argv[++i], 8, 1 << 20, &n)) return cmd_usage_error("shrink", "bad --ctx '%s'", argv[i]);
            job.ctx = (int)n;
        } else if (!strcmp(a, "--chunks") && more) {
            if (!cmd_parse_int(argv[++i], 1, 1 << 30, &n)) return cmd_usage_error("shrink", "bad --chunks '%s'", argv[i]);
            job.n_chunks = (int)n;
        } else if (!strcmp(a, "--max-ppl-increase") && more) {
            if (!cmd_parse_double(argv[++i], &d) || d < 0)
                return cmd_usage_error("shrink", "--max-ppl-increase takes a percentage >= 0");
            job.max_ppl_increase = d / 100.0;
        } else if (!strcmp(a, "--max-kld") && more) {
            if (!cmd_parse_double(argv[++i], &d) || d < 0) return cmd_usage_error("shrink", "--max-kld takes a number >= 0");
            job.max_kld = d;
        } else if (!strcmp(a, "--threads") && more) {
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) return cmd_usage_error("shrink", "bad --threads '%s'", argv[i]);
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("shrink", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return cmd_usage_error("shrink", "too many arguments");
        }
    }
    if (npos != 2) return cmd_usage_error("shrink", "expected IN and OUT");
    if (!job.text_path) return cmd_usage_error("shrink", "the quality gate needs --text FILE");
    if (have_s && have_p) return cmd_usage_error("shrink", "give --sparsity or --pattern, not both");
    if (pj.method == PARE_PRUNE_WANDA && !pj.calib_path) return cmd_usage_error("shrink", "--method wanda needs --calib FILE");
    if (pj.method == PARE_PRUNE_WANDA && !have_s && !have_p)
        return cmd_usage_error("shrink", "--method wanda needs --sparsity or --pattern");
    if (have_s || have_p) job.prune = &pj;
    pare_adapter_spec ad[MAX_ADAPTERS];
    char *paths[MAX_ADAPTERS] = {0};
    int rc = 0;
    for (int i = 0; i < n_lora; i++) {
        if (!(paths[i] = cmd_split_scale(lora[i], &ad[i].scale))) rc = 2;
        ad[i].path = paths[i];
    }
    job.adapters = ad;
    job.n_adapters = (size_t)n_lora;
    pare_shrink_result res;
    pare_err err = {0};
    double t0 = pare_now();
    pare_status st = rc ? pare_err_set(&err, PARE_ENOMEM, "out of memory")
                        : pare_shrink(pos[0], pos[1], &job, &o, json ? NULL : stdout, &res, &err);
    if (json && (st == PARE_OK || st == PARE_EQUALITY))
        printf("{\"passed\": %s, \"ppl\": %.6f, \"ppl_reference\": %.6f, \"ppl_increase\": %.6f, \"kld\": %.8f, "
               "\"same_top\": %.6f, \"written\": %s, \"kernels\": \"%s\"}\n",
               res.passed ? "true" : "false", res.eval.ppl, res.eval.ppl_base_exact, res.ppl_increase, res.kld,
               res.eval.same_top, st == PARE_OK ? "true" : "false", pare_isa_name(pare_isa_active()));
    pare_ppl_result_free(&res.eval);
    for (int i = 0; i < n_lora; i++) free(paths[i]);
    if (st) return cmd_fail(&err);
    fprintf(stderr, "pare: wrote %s in %.2f s\n", pos[1], pare_now() - t0);
    return 0;
}
