/* cmd/main.c - dispatch to the subcommands: parse their options, run them. */
#include "core/isa.h"
#include "cmd.h"
#include "pare.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* in the order of pare --help */
static const cmd_def *const commands[] = {
    &cmd_inspect, &cmd_convert, &cmd_hash, &cmd_quantize, &cmd_eval, &cmd_merge_lora,
    &cmd_extract_lora, &cmd_prune, &cmd_imatrix, &cmd_diff, &cmd_tokenize, &cmd_shrink, &cmd_run,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

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

pare_convert_opts cmd_convert_opts(const cmd_opts *o) {
    return (pare_convert_opts){.type = o->type, .n_threads = o->threads, .force = o->force,
                               .log = o->verbose ? stderr : NULL, .progress = cmd_progress,
                               .tokenizer_pre = o->tokenizer_pre};
}

/* PATH:SCALE, where the part after the last ':' is a number: a malloc'ed PATH, *scale. */
static char *split_scale(const char *arg, double *scale) {
    char *path = strdup(arg);
    *scale = 1.0;
    if (!path) return NULL;
    char *colon = strrchr(path, ':'), *end;
    if (colon && colon[1]) {
        errno = 0;
        double s = strtod(colon + 1, &end);
        if (!*end && !errno && isfinite(s)) {
            *colon = 0;
            *scale = s;
        }
    }
    return path;
}

pare_status cmd_adapters_parse(const char *const *args, size_t n, cmd_adapters *out, pare_err *err) {
    memset(out, 0, sizeof *out);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    out->paths = calloc(n ? n : 1, sizeof *out->paths);
    FAIL_IF(!out->v || !out->paths, PARE_ENOMEM, "out of memory");
    for (; out->n < n; out->n++) {
        out->paths[out->n] = split_scale(args[out->n], &out->v[out->n].scale);
        FAIL_IF(!out->paths[out->n], PARE_ENOMEM, "out of memory");
        out->v[out->n].path = out->paths[out->n];
    }
    return PARE_OK;
}

void cmd_adapters_free(cmd_adapters *a) {
    for (size_t i = 0; a->paths && i < a->n; i++) free(a->paths[i]);
    free(a->paths);
    free(a->v);
    memset(a, 0, sizeof *a);
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
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n'pare COMMAND --help' describes a command. Exit status: 0 success, 1 usage error,\n"
               "2 bad input or failure, 3 a quality gate refused the result (nothing written).\n"
               "'pare help-options' prints every command's options as Markdown (docs/options.md).\n");
}

int main(int argc, char **argv) {
    /* Passes allocate and free tensor-sized buffers one after another: keep them in the
     * heap instead of mapping and unmapping (and page-faulting) each one again. */
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    /* An input cut short while it is mapped raises SIGBUS: an error, not a crash. */
    pare_err sigbus_err = {0};
    if (pare_catch_sigbus(&sigbus_err)) fprintf(stderr, "pare: %s\n", sigbus_err.msg);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pare %s\nkernels: %s\n", PARE_VERSION, pare_isa_describe());
        return 0;
    }
    if (!strcmp(argv[1], "help-options")) {
        cmd_opts_markdown(commands, N_COMMANDS, stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i]->name)) continue;
        cmd_opts o;
        int rc = cmd_opts_parse(commands[i], argc - 1, argv + 1, &o);
        if (rc == CMD_CONTINUE) rc = commands[i]->run(&o);
        cmd_opts_free(&o);
        return rc;
    }
    fprintf(stderr, "pare: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
