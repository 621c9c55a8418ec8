/* cmd/quantize.c - pare quantize IN OUT --type TYPE [...]. */
#include "cmd.h"

#include "pipeline/pipeline.h"
#include "quant/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OVERRIDES 64

static const char *help =
    "usage: pare quantize IN OUT.gguf --type TYPE [--pure] [--imatrix FILE]\n"
    "                     [--output-tensor-type T] [--token-embedding-type T] [--leave-output-tensor]\n"
    "                     [--tensor-type GLOB=T]... [--threads N] [--dry-run] [--stats] [--force]\n"
    "  IN     anything pare reads (HF folder, safetensors, PyTorch, GGUF of any type)\n"
    "  TYPE   a single type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL\n"
    "         IQ4_XS TQ1_0 TQ2_0) or one of llama-quantize's mixes (Q2_K Q2_K_S Q3_K_S Q3_K_M\n"
    "         Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS\n"
    "         IQ3_XS IQ3_S IQ3_M), with llama-quantize's per-tensor choices; where those\n"
    "         are 1- and 2-bit i-quants they need --imatrix, as in llama-quantize\n"
    "  --pure               one type for every quantized tensor\n"
    "  --imatrix FILE       importance weights in llama.cpp's imatrix .dat format\n"
    "  --tensor-type G=T    tensors whose name matches the glob G get type T (repeatable)\n"
    "  --dry-run            print the per-tensor plan and the sizes, write nothing\n"
    "  --stats              print each tensor's relative RMS quantization error\n";

int cmd_quantize(int argc, char **argv) {
    const char *pos[2] = {0}, *globs[MAX_OVERRIDES];
    char *gbuf[MAX_OVERRIDES];
    pare_type otypes[MAX_OVERRIDES];
    int npos = 0, ng = 0, rc = 0;
    bool have_type = false;
    pare_quantize_job job = {.output_type = PARE_TYPE_INVALID, .token_embd_type = PARE_TYPE_INVALID,
                             .override_globs = globs, .override_types = otypes};
    pare_convert_opts o = {.type = PARE_TYPE_INVALID, .progress = cmd_progress};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            goto out;
        } else if (!strcmp(a, "--type") && more) {
            if (!pare_ftype_from_name(argv[++i], &job.ftype))
                rc = cmd_usage_error("quantize", "unknown type '%s'", argv[i]);
            have_type = true;
        } else if (!strcmp(a, "--pure")) {
            job.pure = true;
        } else if (!strcmp(a, "--leave-output-tensor")) {
            job.leave_output = true;
        } else if ((!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) && more) {
            pare_type t = pare_type_from_name(argv[++i]);
            if (t == PARE_TYPE_INVALID) rc = cmd_usage_error("quantize", "unknown type '%s'", argv[i]);
            if (!strcmp(a, "--output-tensor-type")) job.output_type = t;
            else job.token_embd_type = t;
        } else if (!strcmp(a, "--tensor-type") && more) {
            char *eq = strrchr(argv[++i], '=');
            if (!eq || ng == MAX_OVERRIDES) {
                rc = cmd_usage_error("quantize", "--tensor-type takes GLOB=TYPE");
                break;
            }
            pare_type t = pare_type_from_name(eq + 1);
            if (t == PARE_TYPE_INVALID) {
                rc = cmd_usage_error("quantize", "unknown type '%s'", eq + 1);
                break;
            }
            gbuf[ng] = strndup(argv[i], (size_t)(eq - argv[i]));
            globs[ng] = gbuf[ng];
            otypes[ng++] = t;
            job.n_overrides = (size_t)ng;
        } else if (!strcmp(a, "--imatrix") && more) {
            job.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--threads") && more) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) rc = cmd_usage_error("quantize", "bad --threads '%s'", argv[i]);
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--dry-run")) {
            job.dry_run = true;
        } else if (!strcmp(a, "--stats")) {
            job.stats = true;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "-v")) {
            o.log = stderr;
        } else if (a[0] == '-' && a[1]) {
            rc = cmd_usage_error("quantize", "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            rc = cmd_usage_error("quantize", "too many arguments");
        }
    }
    if (!rc && (npos != 2 && !(npos == 1 && job.dry_run))) rc = cmd_usage_error("quantize", "need IN and OUT");
    if (!rc && !have_type) rc = cmd_usage_error("quantize", "--type is required");
    if (!rc) {
        pare_err err = {0};
        double t0 = pare_now();
        const char *out = npos == 2 ? pos[1] : "dry-run.gguf";
        if (pare_quantize_model(pos[0], out, &job, &o, stdout, &err)) {
            rc = cmd_fail(&err);
        } else if (!job.dry_run) {
            fprintf(stderr, "pare: wrote %s (%s) in %.2f s\n", out, pare_ftype_name(job.ftype), pare_now() - t0);
        }
    }
out:
    for (int k = 0; k < ng; k++) free(gbuf[k]);
    return rc;
}
