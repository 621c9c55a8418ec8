/* cmd/shrink.c - pare shrink IN OUT --text FILE [stages] [gate]; also what pare run runs. */
#include "core/isa.h"
#include "cmd.h"

#include "quant/plan.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --target-size: bytes (a plain number, or with k/M/G = 1000^n, Ki/Mi/Gi = 1024^n), or bits
 * per weight (a number up to 32, or with "bpw"). */
static bool parse_size(const char *s, uint64_t *bytes, double *bpw) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || errno || !isfinite(x) || x <= 0) return false;
    static const struct {
        const char *suffix;
        double mul;
    } units[] = {{"", 1}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"Ki", 1024.0}, {"Mi", 1048576.0},
                 {"Gi", 1073741824.0}, {"B", 1}};
    *bytes = 0;
    *bpw = 0;
    if (!strcasecmp(end, "bpw") || (!*end && x <= 32)) {
        *bpw = x;
        return true;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix)) continue;
        *bytes = (uint64_t)llround(x * units[i].mul);
        return true;
    }
    return false;
}

/* One line per stage on a terminal: "shrink: perplexity 12/78 ETA 31 s", redrawn in place. */
typedef struct {
    char what[48];
    double t0;
} progress_state;

static void progress_line(void *user, const char *what, uint64_t done, uint64_t total) {
    progress_state *p = user;
    if (!cmd_stderr_is_tty() || !total) return;
    if (strncmp(p->what, what ? what : "", sizeof p->what - 1)) {
        snprintf(p->what, sizeof p->what, "%s", what ? what : "");
        p->t0 = pare_now();
    }
    const double el = pare_now() - p->t0, eta = done ? el * (double)(total - done) / (double)done : 0;
    const bool bytes = total > 1000000;
    if (bytes)
        fprintf(stderr, "\r\033[Kshrink: %-20.20s %8.1f / %.1f MiB  ETA %4.0f s", p->what, (double)done / 1048576.0,
                (double)total / 1048576.0, eta);
    else
        fprintf(stderr, "\r\033[Kshrink: %-20.20s %6llu / %llu  ETA %4.0f s", p->what, (unsigned long long)done,
                (unsigned long long)total, eta);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_shrink_exec(const cmd_opts *o, const char *in, const char *out, const char *recipe) {
    const bool have_s = cmd_opts_given(o, "sparsity"), have_p = cmd_opts_given(o, "pattern");
    const char *cmd = recipe ? "run" : "shrink";
    const bool is_auto = o->ftype == PARE_FTYPE_AUTO;
    if (!o->text) return cmd_usage_error(cmd, "the quality gate needs --text FILE");
    if (have_s && have_p) return cmd_usage_error(cmd, "give --sparsity or --pattern, not both");
    if (o->method == PARE_PRUNE_WANDA && !o->calib) return cmd_usage_error(cmd, "--method wanda needs --calib FILE");
    if (o->method == PARE_PRUNE_WANDA && !have_s && !have_p)
        return cmd_usage_error(cmd, "--method wanda needs --sparsity or --pattern");
    uint64_t tbytes = 0;
    double tbpw = 0;
    if (o->target_size && !parse_size(o->target_size, &tbytes, &tbpw))
        return cmd_usage_error(cmd, "option '--target-size' takes BYTES (2018144, 2M, 1.9Mi) or BPW (4.5, 4.5bpw) (got '%s')",
                               o->target_size);
    if (o->target_size && !is_auto) return cmd_usage_error(cmd, "option '--target-size' needs --type auto");
    if (is_auto && (cmd_opts_given(o, "tensor-type") || cmd_opts_given(o, "pure")))
        return cmd_usage_error(cmd, "--type auto chooses every tensor's type: no --tensor-type or --pure with it");
    if (o->report && o->text && !strcmp(o->report, o->text)) return cmd_usage_error(cmd, "option '--report' names the gate text");
    pare_prune_job pj = cmd_prune_job(o);
    const bool have_struct = pare_struct_requested(&pj.structured); /* structured pruning (cmd/prune.c) */
    pj.structured.report = o->json ? NULL : stdout;
    /* --max-kld alone bounds the KLD only; the default PPL bound applies otherwise */
    const bool ppl_bound = cmd_opts_given(o, "max-ppl-increase") || !cmd_opts_given(o, "max-kld");
    pare_shrink_job job = {.prune = have_s || have_p || have_struct ? &pj : NULL, .ftype = o->ftype, .imatrix_path = o->imatrix,
                           .text_path = o->text, .ctx = o->ctx, .n_chunks = o->chunks,
                           .max_ppl_increase = ppl_bound ? o->max_ppl_increase / 100.0 : -1,
                           .max_kld = cmd_opts_given(o, "max-kld") ? o->max_kld : -1,
                           .target_bytes = tbytes, .target_bpw = tbpw, .calib_path = o->calib,
                           .calib_ctx = cmd_opts_given(o, "calib-ctx") ? o->calib_ctx : o->ctx,
                           .calib_tokens = o->calib_tokens, .no_cache = o->no_cache};
    pare_convert_opts co = cmd_convert_opts(o);
    progress_state ps = {{0}, 0};
    co.progress = progress_line;
    co.progress_user = &ps;
    /* zeroed: an early failure (the adapters' paths) reaches the free below before pare_shrink */
    pare_shrink_result res = {0};
    cmd_adapters ad;
    pare_err err = {0};
    double t0 = pare_now();
    pare_status st = cmd_adapters_parse(o->lora.v, o->lora.n, &ad, &err);
    job.adapters = ad.v;
    job.n_adapters = ad.n;
    /* stage lines go to stderr; stdout has the results only */
    FILE *log = o->quiet ? NULL : stderr;
    if (!st) st = pare_shrink(in, out, &job, &co, log, &res, &err);
    const bool reported = !st || st == PARE_EQUALITY;
    int rc = 0;
    if (reported && (o->json || o->report)) {
        cJSON *r = pare_shrink_report(cmd, recipe, in, out, &job, &res, &err, st, pare_now() - t0, o->threads);
        cJSON *opts = r ? cmd_recipe_json(o, in, out) : NULL;
        char *text = NULL;
        if (opts) cJSON_AddItemToObject(r, "options", opts);
        if (r) cJSON_AddStringToObject(r, "kernels", pare_isa_name(pare_isa_active()));
        if (r) text = cJSON_Print(r);
        cJSON_Delete(r);
        if (!text) {
            fprintf(stderr, "pare: out of memory for the report\n");
            rc = 2;
        }
        if (text && o->json) printf("%s\n", text);
        if (text && o->report) {
            FILE *f = fopen(o->report, "w");
            if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
                fprintf(stderr, "pare: %s: cannot write the report: %s\n", o->report, strerror(errno));
                rc = 2;
            }
        }
        free(text);
    }
    if (!st && !o->json) {
        printf("%s: %.3f MiB, PPL %.4f (%+.2f%% against %.4f%s)", out, (double)res.out_bytes / 1048576.0, res.eval.ppl,
               100.0 * res.ppl_increase, res.ref.ppl, res.ref_cached ? ", cached" : "");
        if (res.kld_measured) printf(", mean KLD %.5f", res.kld);
        printf("\n");
        if (is_auto) {
            printf("plan: pare quantize --type %s", pare_ftype_name(res.autoq.ftype));
            for (size_t i = 0; i < res.autoq.n_rules; i++)
                printf(" --tensor-type %s=%s", res.autoq.globs[i], pare_type_name(res.autoq.types[i]));
            printf("\n");
        }
    }
    pare_shrink_result_free(&res);
    cmd_adapters_free(&ad);
    if (st) return cmd_fail(&err);
    if (!o->quiet) fprintf(stderr, "pare: wrote %s in %.2f s\n", out, pare_now() - t0);
    return rc;
}

static int run(const cmd_opts *o) {
    if (o->print_recipe) return cmd_recipe_print(o, o->pos[0], o->pos[1], stdout);
    return cmd_shrink_exec(o, o->pos[0], o->pos[1], NULL);
}

static const cmd_opt rows[] = {
    {.key = "lora", .kind = CMD_OPT_LIST, .at = CMD_AT(lora), .arg = "ADAPTER[:SCALE]", .path = true,
     .help = "merge this adapter first (as pare merge-lora); repeatable"},
    {.key = "target-size", .kind = CMD_OPT_STRING, .at = CMD_AT(target_size), .arg = "SIZE",
     .help = "with --type auto: the best quality within SIZE, bytes (2018144, 2M, 1.9Mi)\nor bits per "
             "weight of the file (4.5, 4.5bpw)"},
    {.key = "report", .kind = CMD_OPT_STRING, .at = CMD_AT(report), .arg = "FILE", .path = true,
     .help = "write the JSON report (docs/report-schema.json) to FILE, also when refused"},
    {.key = "no-cache", .kind = CMD_OPT_FLAG, .at = CMD_AT(no_cache),
     .help = "neither read nor write the reference-result cache ($XDG_CACHE_HOME/pare)"},
    {.key = "print-recipe", .kind = CMD_OPT_FLAG, .at = CMD_AT(print_recipe), .no_recipe = true,
     .help = "print this command line as a recipe for pare run, run nothing"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL},
                               {&cmd_group_common, "threads force quiet json tokenizer-pre"},
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
             "                   [--type FTYPE|auto [--calib FILE] [--target-size SIZE]] [--imatrix FILE]\n"
             "                   [--ctx N] [--chunks K] [--max-ppl-increase PCT] [--max-kld X]\n"
             "                   [--report FILE] [--json] [--no-cache] [--print-recipe] [--threads N] [--force]\n",
    .args = "  The whole job with a quality gate: merges the adapters, prunes the attention and MLP\n"
            "  projections, quantizes with llama-quantize's mix FTYPE (Q4_K_M, Q8_0, ...), then\n"
            "  evaluates the result against the model before pruning and quantization (IN, or IN\n"
            "  with the adapters merged) on FILE, as pare eval --kld-base does. OUT is written only\n"
            "  when the perplexity rose by at most PCT percent and, with --max-kld, the mean KL\n"
            "  divergence is at most X; otherwise nothing is written and the exit status is 3.\n"
            "  --type auto picks every tensor's type (F16, Q8_0, K- and i-quants) for the smallest\n"
            "  file that meets the limits (or, with --target-size, the best PPL within a size),\n"
            "  measured on FILE; an importance matrix comes from --calib (a text other than FILE).\n",
    .notes = "Stages run one after the other through a temporary folder beside OUT. Stage lines go to\n"
             "stderr (one progress line per stage on a terminal), results to stdout. The reference's\n"
             "perplexity is cached under $XDG_CACHE_HOME/pare (~/.cache/pare).\n",
    .min_pos = 2, .max_pos = 2, .need = "IN and OUT",
    .uses = uses,
    .run = run,
};
