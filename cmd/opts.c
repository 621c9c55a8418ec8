/* cmd/opts.c - the option table: value kinds, the shared groups, the argv parser and the
 * help generated from the rows (see cmd/opts.h). */
#include "cmd.h"

#include "quant/plan.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define HELP_COL 24 /* where the help of an option starts */

/* ---- value kinds --------------------------------------------------------------------------- */

/* Stores value (never NULL here) for row r into dst; name is "--key" for messages. */
typedef pare_status (*set_fn)(void *dst, const cmd_opt *r, const char *value, const char *name, pare_err *err);

/* "between 4 and 1048576", "at least 0", "from 0 to 1" as a range reads best */
static void range_text(const cmd_opt *r, char *buf, size_t n) {
    if (isinf(r->max)) snprintf(buf, n, "at least %.15g", r->min);
    else snprintf(buf, n, "between %.15g and %.15g", r->min, r->max);
}

static pare_status set_flag(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r;
    /* only reached with a value from --flag=VALUE or a recipe: true/false as JSON writes them */
    if (!strcmp(v, "true") || !strcmp(v, "1")) *(bool *)dst = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0")) *(bool *)dst = false;
    else return pare_err_set(err, PARE_EUSAGE, "option '%s' takes no value (got '%s')", name, v);
    return PARE_OK;
}

static pare_status set_int(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    char *end, range[96];
    errno = 0;
    long x = strtol(v, &end, 10);
    FAIL_IF(!*v || *end, PARE_EUSAGE, "option '%s' takes an integer (got '%s')", name, v);
    range_text(r, range, sizeof range);
    FAIL_IF(errno || x < r->min || x > r->max, PARE_EUSAGE, "option '%s' must be %s (got %s)", name, range, v);
    *(int *)dst = (int)x;
    return PARE_OK;
}

static pare_status set_double(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    char *end, range[96];
    errno = 0;
    double x = strtod(v, &end);
    FAIL_IF(!*v || *end || errno || !isfinite(x), PARE_EUSAGE, "option '%s' takes a number (got '%s')", name, v);
    range_text(r, range, sizeof range);
    FAIL_IF(x < r->min || x > r->max, PARE_EUSAGE, "option '%s' must be %s (got %s)", name, range, v);
    *(double *)dst = x;
    return PARE_OK;
}

static pare_status set_string(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r, (void)name, (void)err;
    *(const char **)dst = v;
    return PARE_OK;
}

static pare_status set_type(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r;
    pare_type t = pare_type_from_name(v);
    FAIL_IF(t == PARE_TYPE_INVALID, PARE_EUSAGE, "option '%s': unknown type '%s' (f32, f16, bf16, q8_0, q4_K, ...)",
            name, v);
    *(pare_type *)dst = t;
    return PARE_OK;
}

static pare_status set_ftype(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r;
    if (!strcasecmp(v, "auto")) {
        *(int *)dst = PARE_FTYPE_AUTO; /* pare shrink only (cmd_opts_set checks) */
        return PARE_OK;
    }
    FAIL_IF(!pare_ftype_from_name(v, (int *)dst), PARE_EUSAGE,
            "option '%s': unknown type '%s' (Q4_K_M, Q8_0, ...: 'pare quantize --help' lists them)", name, v);
    return PARE_OK;
}

static pare_status set_choice(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    char list[256] = "";
    for (int i = 0; r->choices[i]; i++) {
        if (!strcmp(v, r->choices[i])) {
            *(int *)dst = i;
            return PARE_OK;
        }
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", r->choices[i]);
    }
    return pare_err_set(err, PARE_EUSAGE, "option '%s' must be one of %s (got '%s')", name, list, v);
}

/* "N:M with 1 <= N < M <= 256": the letters come from the row's placeholder */
static void pair_text(const cmd_opt *r, char *buf, size_t n) {
    const char *arg = r->arg ? r->arg : "A:B", *colon = strchr(arg, ':');
    const int la = colon ? (int)(colon - arg) : 1;
    const char *second = colon ? colon + 1 : "B";
    int k = snprintf(buf, n, "%s with %.15g <= %.*s < %s", arg, r->min, la, arg, second);
    if (r->max < INT_MAX && k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, " <= %.15g", r->max);
}

static pare_status set_pair(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    int a, b;
    char tail, form[96];
    if (sscanf(v, "%d:%d%c", &a, &b, &tail) != 2 || a < r->min || b > r->max || a >= b) {
        pair_text(r, form, sizeof form);
        return pare_err_set(err, PARE_EUSAGE, "option '%s' takes %s (got '%s')", name, form, v);
    }
    ((int *)dst)[0] = a;
    ((int *)dst)[1] = b;
    return PARE_OK;
}

static pare_status set_list(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r, (void)name;
    cmd_list *l = dst;
    const char **g = realloc(l->v, (l->n + 1) * sizeof *g);
    FAIL_IF(!g, PARE_ENOMEM, "out of memory");
    g[l->n++] = v;
    l->v = g;
    return PARE_OK;
}

static pare_status set_type_rule(void *dst, const cmd_opt *r, const char *v, const char *name, pare_err *err) {
    (void)r;
    cmd_type_rules *l = dst;
    const char *eq = strrchr(v, '=');
    FAIL_IF(!eq || eq == v, PARE_EUSAGE, "option '%s' takes GLOB=TYPE (got '%s')", name, v);
    pare_type t = pare_type_from_name(eq + 1);
    FAIL_IF(t == PARE_TYPE_INVALID, PARE_EUSAGE, "option '%s': unknown type '%s' in '%s'", name, eq + 1, v);
    char **g = realloc(l->globs, (l->n + 1) * sizeof *g);
    if (g) l->globs = g;
    pare_type *ty = g ? realloc(l->types, (l->n + 1) * sizeof *ty) : NULL;
    if (ty) l->types = ty;
    char *glob = ty ? strndup(v, (size_t)(eq - v)) : NULL;
    FAIL_IF(!glob, PARE_ENOMEM, "out of memory");
    l->globs[l->n] = glob;
    l->types[l->n++] = t;
    return PARE_OK;
}

static const struct {
    set_fn set;
    bool takes_value; /* on the command line: the next argument, or after '=' */
    bool repeatable;
    bool any_text; /* any argument may be the value, "--x" too (a path, a glob, text) */
    const char *what; /* the value, for docs/options.md */
} kinds[CMD_OPT_N_KINDS] = {
    [CMD_OPT_FLAG] = {set_flag, false, false, false, "flag"},
    [CMD_OPT_INT] = {set_int, true, false, false, "integer"},
    [CMD_OPT_DOUBLE] = {set_double, true, false, false, "number"},
    [CMD_OPT_STRING] = {set_string, true, false, true, "string"},
    [CMD_OPT_TYPE] = {set_type, true, false, false, "tensor type (f16, q8_0, q4_K, ...)"},
    [CMD_OPT_FTYPE] = {set_ftype, true, false, false, "type or llama-quantize mix (Q8_0, Q4_K_M, ...)"},
    [CMD_OPT_CHOICE] = {set_choice, true, false, false, "one of"},
    [CMD_OPT_PAIR] = {set_pair, true, false, false, "pair"},
    [CMD_OPT_LIST] = {set_list, true, true, true, "string, repeatable"},
    [CMD_OPT_TYPE_RULES] = {set_type_rule, true, true, false, "GLOB=TYPE, repeatable"},
};

/* ---- the shared groups ------------------------------------------------------------------- */

static const cmd_opt common_rows[] = {
    {.key = "type", .kind = CMD_OPT_TYPE, .at = CMD_AT(type), .arg = "T",
     .help = "store the weights as type T (f16, q8_0, q4_K, ...; default: the input's)"},
    {.key = "threads", .kind = CMD_OPT_INT, .at = CMD_AT(threads), .min = 1, .max = 256, .arg = "N",
     .help = "worker threads (default: all cores)"},
    {.key = "force", .kind = CMD_OPT_FLAG, .at = CMD_AT(force), .help = "replace an existing OUT"},
    {.key = "verbose", .short_name = 'v', .kind = CMD_OPT_FLAG, .at = CMD_AT(verbose),
     .help = "list every tensor with its old and new type"},
    {.key = "quiet", .short_name = 'q', .kind = CMD_OPT_FLAG, .at = CMD_AT(quiet),
     .help = "do not list the tensors"},
    {.key = "json", .kind = CMD_OPT_FLAG, .at = CMD_AT(json), .help = "print the result as JSON on stdout"},
    {.key = "tokenizer-pre", .kind = CMD_OPT_STRING, .at = CMD_AT(tokenizer_pre), .arg = "NAME",
     .help = "an HF folder's BPE pre-tokenizer, as llama.cpp names it (default: named from\n"
             "tokenizer.json's pre_tokenizer; a definition pare does not know is refused)"},
};
const cmd_opt_group cmd_group_common = CMD_GROUP("options", common_rows);

static const cmd_opt eval_rows[] = {
    {.key = "text", .kind = CMD_OPT_STRING, .at = CMD_AT(text), .arg = "FILE", .path = true,
     .help = "the text to run the model over (read whole, tokenized with BOS first)"},
    {.key = "ctx", .kind = CMD_OPT_INT, .at = CMD_AT(ctx), .min = CMD_MIN_CTX, .max = CMD_MAX_CTX,
     .def = STR(CMD_DEFAULT_CTX), .arg = "N", .help = "tokens per chunk"},
    {.key = "chunks", .kind = CMD_OPT_INT, .at = CMD_AT(chunks), .min = 1, .max = 1 << 30, .arg = "K",
     .help = "use the first K chunks only (default: all)"},
};
const cmd_opt_group cmd_group_eval = CMD_GROUP("evaluation", eval_rows);

/* in the order of pare_prune_method */
static const char *const prune_methods[] = {"magnitude", "wanda", NULL};
_Static_assert(PARE_PRUNE_MAGNITUDE == 0 && PARE_PRUNE_WANDA == 1, "prune_methods follows pare_prune_method");
/* in the order of pare_prune_scope */
static const char *const prune_scopes[] = {"row", "tensor", "global", NULL};
_Static_assert(PARE_PRUNE_ROW == 0 && PARE_PRUNE_TENSOR == 1 && PARE_PRUNE_GLOBAL == 2,
               "prune_scopes follows pare_prune_scope");

static const cmd_opt prune_rows[] = {
    {.key = "sparsity", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(sparsity), .min = 0, .max = 1, .arg = "S",
     .help = "share of weights to zero (0..1); exact in every row for --scope row"},
    {.key = "pattern", .kind = CMD_OPT_PAIR, .at = CMD_AT(pattern), .min = 1, .max = 256, .arg = "N:M",
     .help = "keep N of every M consecutive inputs (2:4, 4:8), exactly"},
    {.key = "method", .kind = CMD_OPT_CHOICE, .at = CMD_AT(method), .choices = prune_methods, .def = "magnitude",
     .arg = "M", .help = "magnitude, or wanda: scores |W| * ||X|| with the input activation\nnorms over --calib FILE"},
    {.key = "scope", .kind = CMD_OPT_CHOICE, .at = CMD_AT(scope), .choices = prune_scopes, .def = "row",
     .arg = "S", .help = "row, tensor, or global: one threshold over all tensors"},
    {.key = "calib", .kind = CMD_OPT_STRING, .at = CMD_AT(calib), .arg = "FILE", .path = true,
     .help = "calibration text for --method wanda (and shrink --type auto's importance\nmatrix and sensitivities)"},
    {.key = "calib-tokens", .kind = CMD_OPT_INT, .at = CMD_AT(calib_tokens), .min = 16, .max = 100000000,
     .arg = "K",
     .help = "tokens of --calib to use (default 4096; shrink --type auto: as many as the gate\nevaluates)"},
    {.key = "calib-ctx", .kind = CMD_OPT_INT, .at = CMD_AT(calib_ctx), .min = CMD_MIN_CTX, .max = CMD_MAX_CTX,
     .def = STR(CMD_DEFAULT_CTX), .arg = "N", .help = "tokens per forward pass over --calib"},
    {.key = "include", .kind = CMD_OPT_LIST, .at = CMD_AT(include), .arg = "GLOB",
     .help = "also prune the tensors whose name matches GLOB (embeddings, norms and the\noutput head are "
             "left alone otherwise); repeatable"},
    {.key = "exclude", .kind = CMD_OPT_LIST, .at = CMD_AT(exclude), .arg = "GLOB",
     .help = "leave the tensors whose name matches GLOB alone; repeatable"},
    /* structured pruning (pipeline/prune_struct_job.c) */
    {.key = "structured", .kind = CMD_OPT_FLAG, .at = CMD_AT(structured),
     .help = "remove whole layers, FFN channels, heads or experts (the file shrinks)"},
    {.key = "drop-layers", .kind = CMD_OPT_INT, .at = CMD_AT(drop_layers), .min = 1, .max = 100000, .arg = "N",
     .help = "remove the N layers whose removal costs least on --calib"},
    {.key = "layers", .kind = CMD_OPT_STRING, .at = CMD_AT(layers), .arg = "LIST",
     .help = "remove exactly these layers (comma-separated indices)"},
    {.key = "ffn-keep", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(ffn_keep), .min = 0.001, .max = 1, .arg = "F",
     .help = "keep the share F of FFN channels, by activation-weighted importance on --calib"},
    {.key = "heads-keep", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(heads_keep), .min = 0.001, .max = 1, .arg = "F",
     .help = "keep the share F of attention heads (whole KV groups), by importance on --calib"},
    {.key = "experts-keep", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(experts_keep), .min = 0.001, .max = 1, .arg = "F",
     .help = "keep the share F of the experts of every MoE layer"},
    {.key = "global", .kind = CMD_OPT_FLAG, .at = CMD_AT(global),
     .help = "--ffn-keep / --heads-keep over all layers at once (widths then differ per layer)"},
    {.key = "candidates", .kind = CMD_OPT_INT, .at = CMD_AT(candidates), .min = 1, .max = 100000, .def = "8",
     .arg = "K", .help = "--drop-layers: the K layers of lowest angular distance get the PPL test"},
};
const cmd_opt_group cmd_group_prune = CMD_GROUP("pruning", prune_rows);

static const cmd_opt quant_rows[] = {
    {.key = "type", .kind = CMD_OPT_FTYPE, .at = CMD_AT(ftype), .arg = "TYPE",
     .help = "a single type or one of llama-quantize's mixes (Q4_K_M, Q8_0, ...)"},
    {.key = "imatrix", .kind = CMD_OPT_STRING, .at = CMD_AT(imatrix), .arg = "FILE", .path = true,
     .help = "importance weights in llama.cpp's imatrix .dat format"},
    {.key = "pure", .kind = CMD_OPT_FLAG, .at = CMD_AT(pure), .help = "one type for every quantized tensor"},
    {.key = "output-tensor-type", .kind = CMD_OPT_TYPE, .at = CMD_AT(output_type), .arg = "T",
     .help = "type of output.weight"},
    {.key = "token-embedding-type", .kind = CMD_OPT_TYPE, .at = CMD_AT(token_embd_type), .arg = "T",
     .help = "type of token_embd.weight"},
    {.key = "leave-output-tensor", .kind = CMD_OPT_FLAG, .at = CMD_AT(leave_output),
     .help = "leave output.weight as it is"},
    {.key = "tensor-type", .kind = CMD_OPT_TYPE_RULES, .at = CMD_AT(tensor_types), .arg = "GLOB=T",
     .help = "tensors whose name matches the glob get type T; repeatable"},
    {.key = "dry-run", .kind = CMD_OPT_FLAG, .at = CMD_AT(dry_run),
     .help = "print the per-tensor plan and the sizes, write nothing"},
    {.key = "stats", .kind = CMD_OPT_FLAG, .at = CMD_AT(stats),
     .help = "print each tensor's relative RMS quantization error"},
};
const cmd_opt_group cmd_group_quant = CMD_GROUP("quantization", quant_rows);

static const cmd_opt gate_rows[] = {
    {.key = "max-ppl-increase", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(max_ppl_increase), .min = 0, .max = INFINITY,
     .def = "5", .arg = "PCT",
     .help = "refuse a result whose perplexity rose by more than PCT percent (with\n--max-kld alone: no PPL bound)"},
    {.key = "max-kld", .kind = CMD_OPT_DOUBLE, .at = CMD_AT(max_kld), .min = 0, .max = INFINITY, .arg = "X",
     .help = "refuse a result whose mean KL divergence is above X (default: no bound)"},
};
const cmd_opt_group cmd_group_gate = CMD_GROUP("quality gate", gate_rows);

/* ---- finding rows ------------------------------------------------------------------------ */

/* Whether key is one of the space-separated words of only (NULL: all are). */
static bool takes(const char *only, const char *key) {
    if (!only) return true;
    size_t n = strlen(key);
    for (const char *p = only; (p = strstr(p, key)); p += n)
        if ((p == only || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return true;
    return false;
}

/* Calls fn for every row the command takes, in help order; stops when fn returns true and
 * returns that row. */
typedef bool (*row_fn)(const cmd_opt *r, const cmd_use *u, void *ctx);
static const cmd_opt *each_row(const cmd_def *cmd, row_fn fn, void *ctx) {
    for (const cmd_use *u = cmd->uses; u->group; u++)
        for (size_t i = 0; i < u->group->n; i++)
            if (takes(u->only, u->group->rows[i].key) && fn(&u->group->rows[i], u, ctx)) return &u->group->rows[i];
    return NULL;
}

static bool key_is(const cmd_opt *r, const cmd_use *u, void *ctx) {
    (void)u;
    return !strcmp(r->key, ctx);
}

static bool short_is(const cmd_opt *r, const cmd_use *u, void *ctx) {
    (void)u;
    return r->short_name && r->short_name == *(const char *)ctx;
}

const cmd_opt *cmd_opts_find(const cmd_def *cmd, const char *key) { return each_row(cmd, key_is, (void *)key); }

bool cmd_opts_given(const cmd_opts *o, const char *key) {
    for (size_t i = 0; i < o->n_given; i++)
        if (!strcmp(o->given[i]->key, key)) return true;
    return false;
}

/* ---- setting values ---------------------------------------------------------------------- */

static bool set_default(const cmd_opt *r, const cmd_use *u, void *ctx) {
    (void)u;
    cmd_opts *o = ctx;
    /* a command takes each key and short name once (common's --type or quantization's) */
    assert(cmd_opts_find(o->cmd, r->key) == r);
    assert(!r->short_name || each_row(o->cmd, short_is, (void *)&r->short_name) == r);
    void *dst = (char *)o + r->at;
    if (r->def) {
        pare_err err = {0};
        char name[64];
        snprintf(name, sizeof name, "--%s", r->key);
        pare_status st = kinds[r->kind].set(dst, r, r->def, name, &err);
        assert(!st && "a row's default is a valid value");
        (void)st;
    }
    return false;
}

void cmd_opts_init(cmd_opts *o, const cmd_def *cmd) {
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    /* "not given" for the kinds where zero is a value, in every command (commands pass
     * o->type to the library whether or not they take --type) */
    o->type = o->output_type = o->token_embd_type = PARE_TYPE_INVALID;
    o->ftype = -1;
    each_row(cmd, set_default, o);
}

void cmd_opts_free(cmd_opts *o) {
    if (!o) return;
    free(o->pos);
    free(o->include.v);
    free(o->exclude.v);
    free(o->lora.v);
    free(o->ignore_meta.v);
    for (size_t i = 0; i < o->tensor_types.n; i++) free(o->tensor_types.globs[i]);
    free(o->tensor_types.globs);
    free(o->tensor_types.types);
    memset(o, 0, sizeof *o);
}

static pare_status set_row(cmd_opts *o, const cmd_opt *r, const char *value, pare_err *err) {
    char name[64];
    snprintf(name, sizeof name, "--%s", r->key);
    bool again = false;
    for (size_t i = 0; i < o->n_given; i++) again = again || o->given[i] == r;
    FAIL_IF(again && !kinds[r->kind].repeatable, PARE_EUSAGE, "option '%s' given twice", name);
    FAIL_IF(!value && kinds[r->kind].takes_value, PARE_EUSAGE, "option '%s' needs a value", name);
    TRY(kinds[r->kind].set((char *)o + r->at, r, value ? value : "true", name, err));
    assert(o->n_given < CMD_MAX_ROWS);
    if (!again) o->raw[o->n_given] = value, o->given[o->n_given++] = r;
    return PARE_OK;
}

pare_status cmd_opts_set(cmd_opts *o, const char *key, const char *value, pare_err *err) {
    const cmd_opt *r = cmd_opts_find(o->cmd, key);
    FAIL_IF(!r, PARE_EUSAGE, "unknown option '--%s'", key);
    /* the budget search is shrink's (pare run runs shrink) */
    FAIL_IF(r->kind == CMD_OPT_FTYPE && value && !strcasecmp(value, "auto") && strcmp(o->cmd->name, "shrink") &&
                strcmp(o->cmd->name, "run"),
            PARE_EUSAGE, "option '--%s': 'auto' is for pare shrink", key);
    return set_row(o, r, value, err);
}

/* ---- the argv parser ---------------------------------------------------------------------- */

/* An argument that is an option, not a value: "--x" (a lone "--" ends the options). */
static bool looks_like_option(const char *a) { return a[0] == '-' && a[1] == '-' && a[2]; }

/* One option argument at argv[*i] (and its value at argv[*i + 1] when it takes one). */
static pare_status parse_option(cmd_opts *o, int argc, char **argv, int *i, pare_err *err) {
    const char *a = argv[*i];
    if (a[1] != '-') {
        const cmd_opt *r = a[2] ? NULL : each_row(o->cmd, short_is, (void *)(a + 1));
        FAIL_IF(!r, PARE_EUSAGE, "unknown option '%s'", a);
        FAIL_IF(kinds[r->kind].takes_value, PARE_EINTERNAL, "-%c: short options are flags", r->short_name);
        return set_row(o, r, NULL, err);
    }
    char key[64];
    const char *eq = strchr(a, '='), *value = eq ? eq + 1 : NULL;
    size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    FAIL_IF(n >= sizeof key, PARE_EUSAGE, "unknown option '%.60s...'", a);
    memcpy(key, a + 2, n);
    key[n] = 0;
    const cmd_opt *r = cmd_opts_find(o->cmd, key);
    FAIL_IF(!r, PARE_EUSAGE, "unknown option '--%s'", key);
    if (!eq && kinds[r->kind].takes_value) {
        FAIL_IF(*i + 1 >= argc || (!kinds[r->kind].any_text && looks_like_option(argv[*i + 1])), PARE_EUSAGE,
                "option '--%s' needs a value", key);
        value = argv[++*i];
    }
    /* the recipe path: what a JSON recipe's "key": value will go through */
    return cmd_opts_set(o, key, value, err);
}

int cmd_opts_parse(const cmd_def *cmd, int argc, char **argv, cmd_opts *o) {
    cmd_opts_init(o, cmd);
    pare_err err = {0};
    o->pos = calloc((size_t)argc, sizeof *o->pos);
    if (!o->pos) return cmd_fail(&(pare_err){.code = PARE_ENOMEM, .msg = "out of memory"});
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && !strcmp(a, "--")) {
            options = false;
        } else if (!options || a[0] != '-' || !a[1]) {
            o->pos[o->n_pos++] = a;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cmd_opts_help(cmd, stdout);
            return 0;
        } else if (parse_option(o, argc, argv, &i, &err)) {
            return err.code == PARE_EUSAGE ? cmd_usage_error(cmd->name, "%s", err.msg) : cmd_fail(&err);
        }
    }
    if (o->n_pos < (size_t)cmd->min_pos) return cmd_usage_error(cmd->name, "need %s", cmd->need);
    if (cmd->max_pos >= 0 && o->n_pos > (size_t)cmd->max_pos)
        return cmd_usage_error(cmd->name, "too many arguments (%s)", cmd->need);
    return CMD_CONTINUE;
}

/* ---- help -------------------------------------------------------------------------------- */

typedef struct {
    FILE *f;
    const char *heading;
} help_state;

static bool help_row(const cmd_opt *r, const cmd_use *u, void *ctx) {
    help_state *h = ctx;
    if (!h->heading || strcmp(h->heading, u->group->title)) fprintf(h->f, "%s:\n", h->heading = u->group->title);
    char left[64];
    snprintf(left, sizeof left, "  %s%c%s--%s%s%s", r->short_name ? "-" : "", r->short_name ? r->short_name : ' ',
             r->short_name ? ", " : "", r->key, r->arg ? " " : "", r->arg ? r->arg : "");
    /* "  -v, --verbose" or "  --ctx N" (the ' ' after an absent short name is dropped) */
    if (!r->short_name) memmove(left + 2, left + 3, strlen(left + 3) + 1);
    int w = fprintf(h->f, "%s", left);
    if (w >= HELP_COL) fprintf(h->f, "\n%*s", HELP_COL, "");
    else fprintf(h->f, "%*s", HELP_COL - w, "");
    for (const char *p = r->help; *p; p++) {
        fputc(*p, h->f);
        if (*p == '\n') fprintf(h->f, "%*s", HELP_COL, "");
    }
    if (r->def) fprintf(h->f, " (default: %s)", r->def);
    fputc('\n', h->f);
    return false;
}

void cmd_opts_help(const cmd_def *cmd, FILE *f) {
    fputs(cmd->usage, f);
    if (cmd->args) fputs(cmd->args, f);
    help_state h = {f, NULL};
    each_row(cmd, help_row, &h);
    if (cmd->notes) fputs(cmd->notes, f);
}

/* ---- docs/options.md ---------------------------------------------------------------------- */

static bool md_row(const cmd_opt *r, const cmd_use *u, void *ctx) {
    FILE *f = ctx;
    fprintf(f, "| `%s%s--%s%s%s` | %s |", r->short_name ? (char[]){'-', r->short_name, 0} : "", r->short_name ? ", " : "",
            r->key, r->arg ? " " : "", r->arg ? r->arg : "", u->group->title);
    if (r->kind == CMD_OPT_INT || r->kind == CMD_OPT_DOUBLE) {
        char range[96];
        range_text(r, range, sizeof range);
        fprintf(f, " %s, %s |", kinds[r->kind].what, range);
    } else if (r->kind == CMD_OPT_CHOICE) {
        fprintf(f, " one of");
        for (int i = 0; r->choices[i]; i++) fprintf(f, "%s `%s`", i ? "," : "", r->choices[i]);
        fprintf(f, " |");
    } else if (r->kind == CMD_OPT_PAIR) {
        char form[96];
        pair_text(r, form, sizeof form);
        fprintf(f, " %s |", form);
    } else {
        fprintf(f, " %s |", kinds[r->kind].what);
    }
    fprintf(f, " %s | ", r->def ? r->def : "");
    for (const char *p = r->help; *p; p++) fputs(*p == '\n' ? " " : *p == '|' ? "\\|" : (char[]){*p, 0}, f);
    fprintf(f, " |\n");
    return false;
}

void cmd_opts_markdown(const cmd_def *const *cmds, size_t n, FILE *f) {
    fprintf(f, "# pare options\n\n"
               "Generated by `pare help-options` from the option table (cmd/opts.c); do not edit.\n"
               "Every option takes `--opt VALUE` or `--opt=VALUE`; the key of a recipe is the option's\n"
               "name without `--`. A usage error exits 1 with one line naming the option.\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "\n## pare %s\n\n%s.\n\n```\n%s```\n\n", cmds[i]->name, cmds[i]->summary, cmds[i]->usage);
        fprintf(f, "| option | group | value | default | meaning |\n| --- | --- | --- | --- | --- |\n");
        each_row(cmds[i], md_row, f);
    }
}
