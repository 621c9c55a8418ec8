/* cmd/opts.h - the option table of the pare CLI.
 *
 * Every option is one row (cmd_opt): its key, what kind of value it takes and where that
 * value goes in cmd_opts, its default and its help. Rows live in groups (cmd_opt_group);
 * the shared groups (common, evaluation, pruning, quantization, gate) are defined once in
 * cmd/opts.c, and a command (cmd_def) composes the groups it takes, all of a group's rows or
 * the ones it names. One parser walks argv against a command's groups, and the help of
 * `pare CMD --help` and `pare help-options` is generated from the same rows.
 *
 * The key is the option's name without "--" ("ctx" for --ctx): it is also the key of a JSON
 * recipe, and cmd_opts_set applies one (key, value string) pair to a command's options; the
 * argv parser goes through it for every long option, so the CLI tests exercise it.
 *
 * Values: --opt VALUE or --opt=VALUE; a flag takes no value on the command line (--opt=true
 * and --opt=false, and the recipe values "true" / "false", set it too). "--" ends the
 * options; "-" is a positional argument. An option that takes a number, a type or a choice
 * followed by an argument that starts with "--" is missing its value; strings, paths and
 * globs take the next argument whatever it is. Only the repeatable kinds (CMD_OPT_LIST, CMD_OPT_TYPE_RULES) may be
 * given twice.
 */
#ifndef PARE_CMD_OPTS_H
#define PARE_CMD_OPTS_H

#include "core/core.h"
#include "verify/llm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* --ctx: the evaluator's default and smallest (verify/llm.h) */
#define CMD_DEFAULT_CTX PARE_PPL_DEFAULT_CTX
#define CMD_MIN_CTX PARE_PPL_MIN_CTX
#define CMD_MAX_CTX (1 << 20)
#define CMD_TEXT_MAX_BYTES PARE_TEXT_MAX_BYTES
/* Rows one command may take (its given[] bookkeeping). */
#define CMD_MAX_ROWS 64

typedef enum {
    CMD_OPT_FLAG,       /* bool, set to true */
    CMD_OPT_INT,        /* int in [min, max] */
    CMD_OPT_DOUBLE,     /* double in [min, max] (either may be infinite) */
    CMD_OPT_STRING,     /* const char *, pointing at the value (which must outlive cmd_opts) */
    CMD_OPT_TYPE,       /* pare_type by name (pare_type_from_name); PARE_TYPE_INVALID when not given */
    CMD_OPT_FTYPE,      /* int: a pare_ftype, one type or a llama-quantize mix; -1 when not given */
    CMD_OPT_CHOICE,     /* int: the index of the value in choices[] */
    CMD_OPT_PAIR,       /* int[2] from "A:B" with min <= A < B <= max */
    CMD_OPT_LIST,       /* cmd_list, one string per use; repeatable */
    CMD_OPT_TYPE_RULES, /* cmd_type_rules, one GLOB=TYPE per use; repeatable */
    CMD_OPT_N_KINDS
} cmd_opt_kind;

typedef struct {
    const char *key;            /* the long name without "--", and the recipe key */
    char short_name;            /* 'v' for -v, or 0 */
    cmd_opt_kind kind;
    size_t at;                  /* offset of the value in cmd_opts: CMD_AT(field) */
    double min, max;            /* CMD_OPT_INT, CMD_OPT_DOUBLE, CMD_OPT_PAIR */
    const char *const *choices; /* CMD_OPT_CHOICE: the names, NULL-terminated */
    const char *def;            /* the default as a value string, or NULL: zero / not given */
    const char *arg;            /* the value's placeholder in the help ("N", "FILE", "N:M") */
    const char *help;           /* lines separated by '\n' */
    bool path;                  /* a file or folder: a recipe's relative value is read from the
                                   recipe's folder (CMD_OPT_STRING, CMD_OPT_LIST) */
    bool no_recipe;             /* not a recipe key (--print-recipe) */
} cmd_opt;

#define CMD_AT(field) offsetof(cmd_opts, field)

typedef struct {
    const char *title; /* heading in the help ("options", "pruning") */
    const cmd_opt *rows;
    size_t n;
} cmd_opt_group;

#define CMD_GROUP(title, rows) {title, rows, sizeof rows / sizeof rows[0]}

/* One group a command takes: all its rows (only == NULL) or the keys in `only`, separated
 * by spaces. */
typedef struct {
    const cmd_opt_group *group;
    const char *only;
} cmd_use;

typedef struct {
    const char **v;
    size_t n;
} cmd_list;

typedef struct {
    char **globs; /* owned */
    pare_type *types;
    size_t n;
} cmd_type_rules;

struct cmd_def;

/* The values of every option of every command (a command reads the ones it takes). */
typedef struct cmd_opts {
    const struct cmd_def *cmd;
    const char **pos; /* the positional arguments, in order */
    size_t n_pos;
    const cmd_opt *given[CMD_MAX_ROWS]; /* rows given so far, for repeats and cmd_opts_given */
    const char *raw[CMD_MAX_ROWS];      /* their value strings as given (NULL: a bare flag; the
                                           repeatable kinds keep theirs in their lists) */
    size_t n_given;

    /* common */
    int threads; /* 0: the default (all cores the process may use) */
    bool force, verbose, quiet, json;
    pare_type type; /* --type of convert, merge-lora and prune: a tensor type */
    /* evaluation */
    const char *text;
    int ctx, chunks; /* chunks 0: all */
    int chunk_range[2];
    const char *kld_base;
    bool merge;
    /* pruning */
    double sparsity;
    int pattern[2];
    int method, scope; /* pare_prune_method, pare_prune_scope (choices: their indices) */
    const char *calib;
    int calib_tokens, calib_ctx;
    cmd_list include, exclude;
    /* structured pruning (pare prune --structured, and in shrink) */
    bool structured, global;
    int drop_layers, candidates;
    const char *layers;
    double ffn_keep, heads_keep, experts_keep;
    /* quantization */
    int ftype; /* --type of quantize and shrink: a pare_ftype */
    bool pure, leave_output, dry_run, stats;
    pare_type output_type, token_embd_type;
    cmd_type_rules tensor_types;
    const char *imatrix;
    /* quality gate */
    double max_ppl_increase; /* percent */
    double max_kld;          /* < 0: none */
    /* shrink / run */
    const char *target_size, *report;
    bool no_cache, print_recipe;
    /* LoRA */
    cmd_list lora;
    int rank;
    /* diff, hash, inspect, tokenize */
    bool values, tensors_only, gguf_names, full, no_bos, ids;
    double tolerance;
    cmd_list ignore_meta;
    const char *string;
    const char *check;         /* tokenize --check FILE */
    const char *tokenizer_pre; /* --tokenizer-pre NAME: a llama.cpp pre-tokenizer forced */
} cmd_opts;

/* A subcommand: its help prose around the generated option lines, its positional
 * arguments and its groups. */
typedef struct cmd_def {
    const char *name;
    const char *summary; /* one line for pare --help */
    const char *usage;   /* the usage line(s), as printed */
    const char *args;    /* lines describing the positional arguments, or NULL */
    const char *notes;   /* prose after the options, or NULL */
    int min_pos, max_pos; /* positional arguments (max_pos < 0: no limit) */
    const char *need;     /* what too few of them lack: "IN and OUT" */
    const cmd_use *uses;  /* ends with {NULL} */
    int (*run)(const cmd_opts *o);
} cmd_def;

/* The shared groups. */
extern const cmd_opt_group cmd_group_common;  /* threads force verbose quiet json type */
extern const cmd_opt_group cmd_group_eval;    /* text ctx chunks */
extern const cmd_opt_group cmd_group_prune;   /* sparsity pattern method scope calib ... */
extern const cmd_opt_group cmd_group_quant;   /* type (ftype) imatrix pure ... */
extern const cmd_opt_group cmd_group_gate;    /* max-ppl-increase max-kld */

/* Defaults of every row of cmd (PARE_TYPE_INVALID and -1 for types not given); o is then freed with
 * cmd_opts_free. */
void cmd_opts_init(cmd_opts *o, const cmd_def *cmd);
void cmd_opts_free(cmd_opts *o);
/* The row of `key` among the command's groups, or NULL. */
const cmd_opt *cmd_opts_find(const cmd_def *cmd, const char *key);
/* Applies one key = value (NULL: a flag given bare) to o, initialized by cmd_opts_init or
 * cmd_opts_parse: the recipe path, and the argv parser's for every long option. Strings
 * are not copied (value must outlive o). A repeated non-repeatable key is an error. PARE_EUSAGE
 * with err naming the option ("option '--ctx' must be between 4 and 1048576 (got 2)"),
 * PARE_ENOMEM, or PARE_OK. */
pare_status cmd_opts_set(cmd_opts *o, const char *key, const char *value, pare_err *err);
/* Walks argv (argv[0] is the command's name) into o, initialized here. Returns
 * CMD_CONTINUE when the command should run, or the exit code to return now: 0 after
 * printing the help for --help, 1 after printing a usage error. */
#define CMD_CONTINUE (-1)
int cmd_opts_parse(const cmd_def *cmd, int argc, char **argv, cmd_opts *o);
/* Whether the option `key` was given (on the command line or by cmd_opts_set). */
bool cmd_opts_given(const cmd_opts *o, const char *key);
/* `pare CMD --help`. */
void cmd_opts_help(const cmd_def *cmd, FILE *f);
/* The rows of every command as a Markdown document (docs/options.md). */
void cmd_opts_markdown(const cmd_def *const *cmds, size_t n, FILE *f);

#endif
