/* cmd/cmd.h - the subcommands of the pare CLI. cmd/ parses arguments, calls the library,
 * prints and picks exit codes (0 ok, 1 usage, 2 bad input or failure, 3 quality gate refused); logic lives in the
 * modules. Each subcommand is one file cmd/NAME.c with int cmd_NAME(int argc, char **argv),
 * where argv[0] is the subcommand's name. */
#ifndef PARE_CMD_H
#define PARE_CMD_H

#include "core/core.h"

#include <stdbool.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary; /* one line for pare --help */
} cmd_entry;

/* Prints "pare: MESSAGE" to stderr and returns the exit code for the error's status. */
int cmd_fail(const pare_err *err);
/* Prints "pare NAME: MESSAGE" plus "try 'pare NAME --help'" and returns 1. */
int cmd_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a status: 0 ok, 1 usage, 3 quality gate refused, 2 otherwise. */
int cmd_exit_code(pare_status st);
/* Parses a positive integer option value; false on garbage. */
bool cmd_parse_int(const char *s, long min, long max, long *out);
bool cmd_parse_double(const char *s, double *out);
/* A progress callback that draws a bar on stderr when it is a terminal. */
void cmd_progress(void *user, const char *what, uint64_t done, uint64_t total);
bool cmd_stderr_is_tty(void);
/* PATH[:SCALE] (the part after the last ':' when it is a number): a malloc'ed PATH, *scale
 * (1 without one). NULL when out of memory. */
char *cmd_split_scale(const char *arg, double *scale);

int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_hash(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_merge_lora(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_extract_lora(int argc, char **argv);
int cmd_shrink(int argc, char **argv);

#endif
