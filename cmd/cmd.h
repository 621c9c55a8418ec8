/* cmd/cmd.h - the subcommands of the pare CLI. cmd/ parses arguments, calls the library,
 * prints and picks exit codes (0 ok, 1 usage, 2 bad input or failure, 3 quality gate refused); logic lives in the
 * modules. Each subcommand is one file cmd/NAME.c defining a cmd_def (cmd/opts.h): its help
 * prose, its positional arguments, the option groups it takes and its run function, which
 * gets the parsed options. main.c parses argv against the cmd_def before calling run. */
#ifndef PARE_CMD_H
#define PARE_CMD_H

#include "core/core.h"
#include "cmd/opts.h"
#include "pipeline/pipeline.h"

#include <stdbool.h>
#include <stdio.h>

/* Prints "pare: MESSAGE" to stderr and returns the exit code for the error's status. */
int cmd_fail(const pare_err *err);
/* Prints "pare NAME: MESSAGE" plus "try 'pare NAME --help'" and returns 1. */
int cmd_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a status: 0 ok, 1 usage, 3 quality gate refused, 2 otherwise. */
int cmd_exit_code(pare_status st);
/* A progress callback that draws a bar on stderr when it is a terminal. */
void cmd_progress(void *user, const char *what, uint64_t done, uint64_t total);
bool cmd_stderr_is_tty(void);

/* The library options of the common ones: --type, --threads, --force, -v, and a progress
 * bar on a terminal. */
pare_convert_opts cmd_convert_opts(const cmd_opts *o);

/* The library's pruning job for the options of cmd_group_prune (cmd/prune.c; shrink's too). */
pare_prune_job cmd_prune_job(const cmd_opts *o);

/* Adapters from ADAPTER[:SCALE] arguments (the part after the last ':' when it is a number
 * scales the adapter's own scale; 1 without one). */
typedef struct {
    pare_adapter_spec *v;
    char **paths; /* owned: v[i].path */
    size_t n;
} cmd_adapters;
pare_status cmd_adapters_parse(const char *const *args, size_t n, cmd_adapters *out, pare_err *err);
void cmd_adapters_free(cmd_adapters *a);

/* pare shrink's work on parsed options (cmd/shrink.c); recipe: the recipe's path under pare
 * run (NULL from the command line). */
int cmd_shrink_exec(const cmd_opts *o, const char *in, const char *out, const char *recipe);
/* The recipe of shrink's options (cmd/run.c): "input", "output" and every option given. */
struct cJSON;
struct cJSON *cmd_recipe_json(const cmd_opts *o, const char *in, const char *out);
int cmd_recipe_print(const cmd_opts *o, const char *in, const char *out, FILE *f);
/* A recipe read and checked (cmd/run.c): shrink's options as the recipe and then the command
 * line ro (pare run's options) set them, and the resolved input and output paths. */
typedef struct {
    cmd_opts o;
    char *in, *out;
    /* owned storage the options point into */
    struct cJSON *json;
    char **strings;
    size_t n_strings;
} cmd_recipe;
/* Reads and checks the recipe at path without running anything: 0 and *r filled (free it
 * with cmd_recipe_free), or the exit code after a one-line message on stderr (*r empty).
 * pare run is this, then cmd_shrink_exec; tests/fuzz/fuzz_recipe.c drives it alone. */
int cmd_recipe_load(const char *path, const cmd_opts *ro, cmd_recipe *r);
void cmd_recipe_free(cmd_recipe *r);

extern const cmd_def cmd_run;
extern const cmd_def cmd_inspect, cmd_convert, cmd_hash, cmd_quantize, cmd_eval, cmd_merge_lora, cmd_extract_lora,
    cmd_prune, cmd_imatrix, cmd_diff, cmd_tokenize, cmd_shrink;

#endif
