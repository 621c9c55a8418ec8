/* cmd/main.c - dispatch to the subcommands. */
#include "core/isa.h"
#include "cmd.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cmd_entry commands[] = {
    {"inspect", cmd_inspect, "show a model's format, metadata and tensors"},
    {"convert", cmd_convert, "convert between HF folders, safetensors, PyTorch and GGUF"},
    {"hash", cmd_hash, "XXH3-128 digests of every tensor and of the whole model"},
    {"quantize", cmd_quantize, "quantize to GGUF block types with llama-quantize's mixes"},
    {"eval", cmd_eval, "perplexity and KL divergence as llama-perplexity computes them"},
    {"merge-lora", cmd_merge_lora, "merge PEFT or GGUF LoRA adapters into a model"},
    {"extract-lora", cmd_extract_lora, "a LoRA adapter from the difference of two models (SVD)"},
    {"prune", cmd_prune, "zero the least important weights (magnitude, N:M, Wanda)"},
    {"imatrix", cmd_imatrix, "importance matrix (llama.cpp .dat) from calibration text"},
    {"diff", cmd_diff, "list the metadata and tensors that differ between two models"},
    {"tokenize", cmd_tokenize, "tokenize text with a model's vocabulary, as llama.cpp"},
    {"shrink", cmd_shrink, "merge, prune and quantize, then publish only if a quality gate passes"},
};

int cmd_exit_code(pare_status st) {
    if (st == PARE_OK) return 0;
    if (st == PARE_EUSAGE) return 1;
    if (st == PARE_EQUALITY) return 3;
    return 2;
}

int cmd_fail(const pare_err *err) {
    fprintf(stderr, "pare: %s\n", err->msg[0] ? err->msg : "unknown error");
    return cmd_exit_code(err->code ? err->code : PARE_EINTERNAL);
}

int cmd_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pare %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'pare %s --help'\n", cmd);
    return 1;
}

bool cmd_parse_int(const char *s, long min, long max, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cmd_parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

char *cmd_split_scale(const char *arg, double *scale) {
    char *path = strdup(arg);
    *scale = 1.0;
    if (!path) return NULL;
    /* PATH:SCALE, where the part after the last ':' is a number */
    char *colon = strrchr(path, ':');
    double s;
    if (colon && cmd_parse_double(colon + 1, &s)) {
        *colon = 0;
        *scale = s;
    }
    return path;
}

bool cmd_stderr_is_tty(void) { return isatty(2) == 1; }

void cmd_progress(void *user, const char *what, uint64_t done, uint64_t total) {
    (void)user;
    if (!cmd_stderr_is_tty() || total == 0) return;
    int width = 40, filled = (int)((double)done / (double)total * width);
    fprintf(stderr, "\r%-24.24s [", what ? what : "");
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %5.1f%%", 100.0 * (double)done / (double)total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static void usage(FILE *f) {
    fprintf(f, "usage: pare COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'pare COMMAND --help' describes a command. Exit status: 0 success, 1 usage error,\n"
               "2 bad input or failure, 3 a quality gate refused the result (nothing written).\n");
}

int main(int argc, char **argv) {
    /* Passes allocate and free tensor-sized buffers one after another: keep them in the
     * heap instead of mapping and unmapping (and page-faulting) each one again. */
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pare 0.1.0\nkernels: %s\n", pare_isa_describe());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pare: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
