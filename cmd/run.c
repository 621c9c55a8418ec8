/*
 * cmd/run.c - pare run RECIPE.json: a JSON object that says what pare shrink's flags say.
 *
 * Keys: "input" and "output" (shrink's IN and OUT), and every option of pare shrink by its
 * name without "--" (the option table, cmd/opts.c, is the schema: `pare help-options`).
 * Values by the option's kind: a flag is true/false, an integer or a number a JSON number,
 * the repeatable options (lora, include, exclude, tensor-type) an array of strings, every
 * other option a string. Relative paths (input, output and the options marked as paths) are
 * read from the recipe's folder. Everything is checked before any work starts: an unknown
 * key, a value of the wrong type or range, a missing input file or a conflict exits 1 with a
 * message naming the key, and nothing is written. `pare shrink ... --print-recipe` prints
 * the recipe of a command line.
 */
#include "cmd.h"

#include "formats/formats.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing a recipe ---------------------------------------------------------------------- */

cJSON *cmd_recipe_json(const cmd_opts *o, const char *in, const char *out) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "input", in);
    cJSON_AddStringToObject(j, "output", out);
    for (size_t i = 0; i < o->n_given; i++) {
        const cmd_opt *r = o->given[i];
        const void *at = (const char *)o + r->at;
        const char *raw = o->raw[i];
        cJSON *v = NULL;
        if (r->no_recipe) continue;
        switch (r->kind) {
        case CMD_OPT_FLAG: v = cJSON_CreateBool(*(const bool *)at); break;
        case CMD_OPT_INT: v = cJSON_CreateNumber(*(const int *)at); break;
        case CMD_OPT_DOUBLE: v = cJSON_CreateNumber(*(const double *)at); break;
        case CMD_OPT_LIST: {
            const cmd_list *l = at;
            v = cJSON_CreateArray();
            for (size_t k = 0; v && k < l->n; k++) cJSON_AddItemToArray(v, cJSON_CreateString(l->v[k]));
            break;
        }
        case CMD_OPT_TYPE_RULES: {
            const cmd_type_rules *l = at;
            v = cJSON_CreateArray();
            for (size_t k = 0; v && k < l->n; k++) {
                char rule[512];
                snprintf(rule, sizeof rule, "%s=%s", l->globs[k], pare_type_name(l->types[k]));
                cJSON_AddItemToArray(v, cJSON_CreateString(rule));
            }
            break;
        }
        default: v = cJSON_CreateString(raw ? raw : ""); break;
        }
        if (v) cJSON_AddItemToObject(j, r->key, v);
    }
    return j;
}

int cmd_recipe_print(const cmd_opts *o, const char *in, const char *out, FILE *f) {
    cJSON *j = cmd_recipe_json(o, in, out);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return cmd_fail(&(pare_err){.code = PARE_ENOMEM, .msg = "out of memory"});
    fprintf(f, "%s\n", text);
    free(text);
    return 0;
}

/* ---- reading one --------------------------------------------------------------------------- */

typedef struct {
    char **v; /* strings the options point into */
    size_t n;
} arena;

static const char *keep(arena *a, char *s) {
    if (!s) return NULL;
    char **v = realloc(a->v, (a->n + 1) * sizeof *v);
    if (!v) {
        free(s);
        return NULL;
    }
    a->v = v;
    a->v[a->n++] = s;
    return s;
}

static void arena_free(arena *a) {
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
}

/* A recipe's path: as written when absolute or when the recipe is in the current folder,
 * else under the recipe's folder. */
static const char *resolve(arena *a, const char *dir, const char *p) {
    if (p[0] == '/' || !dir) return p;
    return keep(a, pare_path_join(dir, p));
}

/* The path part of ADAPTER[:SCALE] exists (the scale as cmd_adapters_parse reads it). */
static bool adapter_exists(const char *arg) {
    if (pare_path_exists(arg)) return true;
    char *p = strdup(arg), *colon = p ? strrchr(p, ':') : NULL;
    bool ok = false;
    if (colon) {
        *colon = 0;
        ok = pare_path_exists(p);
    }
    free(p);
    return ok;
}

#define RFAIL(...)                                                                                                   \
    do {                                                                                                             \
        fprintf(stderr, "pare run: %s: ", path);                                                                     \
        fprintf(stderr, __VA_ARGS__);                                                                                \
        fprintf(stderr, "\n");                                                                                       \
        goto fail;                                                                                                   \
    } while (0)

/* One value of a key as the option string (into buf or the arena). NULL: wrong type. */
static const char *value_string(const cmd_opt *r, const cJSON *v, char *buf, size_t n) {
    switch (r->kind) {
    case CMD_OPT_FLAG:
        return cJSON_IsBool(v) ? (cJSON_IsTrue(v) ? "true" : "false") : NULL;
    case CMD_OPT_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e15) return NULL;
        snprintf(buf, n, "%.0f", v->valuedouble);
        return buf;
    case CMD_OPT_DOUBLE:
        if (!cJSON_IsNumber(v)) return NULL;
        snprintf(buf, n, "%.17g", v->valuedouble);
        return buf;
    default:
        return cJSON_IsString(v) ? v->valuestring : NULL;
    }
}

static const char *kind_name(const cmd_opt *r) {
    switch (r->kind) {
    case CMD_OPT_FLAG: return "true or false";
    case CMD_OPT_INT: return "an integer";
    case CMD_OPT_DOUBLE: return "a number";
    case CMD_OPT_LIST:
    case CMD_OPT_TYPE_RULES: return "an array of strings";
    default: return "a string";
    }
}

int cmd_recipe_load(const char *path, const cmd_opts *ro, cmd_recipe *rc_out) {
    cmd_recipe *r = rc_out;
    memset(r, 0, sizeof *r);
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    arena a = {0};
    cmd_opts *o = &r->o;
    cmd_opts_init(o, &cmd_shrink);
    int rc = 1;
    pare_err err = {0};
    if (pare_read_file(path, 1 << 20, &text, &len, &err)) {
        rc = cmd_fail(&err);
        goto done;
    }
    j = cJSON_ParseWithLength(text, len);
    if (!j) RFAIL("not valid JSON (near byte %td)", cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : (ptrdiff_t)0);
    if (!cJSON_IsObject(j)) RFAIL("a recipe is a JSON object of option keys");
    {
        const char *slash = strrchr(path, '/');
        if (slash) dir = strndup(path, (size_t)(slash - path) + (slash == path));
    }
    const char *inp = NULL, *outp = NULL;
    for (const cJSON *it = j->child; it; it = it->next) {
        const char *key = it->string;
        for (const cJSON *p = j->child; p != it; p = p->next)
            if (!strcmp(p->string, key)) RFAIL("key '%s' given twice", key);
        if (!strcmp(key, "input") || !strcmp(key, "output")) {
            if (!cJSON_IsString(it) || !*it->valuestring) RFAIL("key '%s' must be a path (a string)", key);
            const char *p = resolve(&a, dir, it->valuestring);
            if (!p) RFAIL("out of memory");
            if (!strcmp(key, "input")) inp = p;
            else outp = p;
            continue;
        }
        const cmd_opt *opt = cmd_opts_find(&cmd_shrink, key);
        if (!opt) RFAIL("unknown key '%s' (the keys are pare shrink's options: pare help-options)", key);
        if (opt->no_recipe) RFAIL("key '%s' is not for recipes", key);
        if (cmd_opts_given(ro, key)) continue; /* the command line wins */
        const bool many = opt->kind == CMD_OPT_LIST || opt->kind == CMD_OPT_TYPE_RULES;
        if (many != cJSON_IsArray(it)) RFAIL("key '%s' must be %s", key, kind_name(opt));
        const cJSON *first = many ? it->child : it;
        if (many && !first) RFAIL("key '%s' must be %s, not empty", key, kind_name(opt));
        for (const cJSON *v = first; v; v = many ? v->next : NULL) {
            char buf[64];
            const char *s = value_string(opt, v, buf, sizeof buf);
            if (!s) RFAIL("key '%s' must be %s", key, kind_name(opt));
            if (opt->path) {
                s = resolve(&a, dir, s);
                if (!s) RFAIL("out of memory");
            } else if (s == buf) {
                s = keep(&a, strdup(buf));
            } else if (opt->kind == CMD_OPT_FLAG && !cJSON_IsTrue(v)) {
                s = "false";
            }
            if (cmd_opts_set(o, key, s, &err)) RFAIL("key '%s': %s", key, err.msg);
            /* the paths a job reads must be there before it starts */
            if (opt->path && strcmp(key, "report") &&
                !(opt->kind == CMD_OPT_LIST ? adapter_exists(s) : pare_path_exists(s)))
                RFAIL("key '%s': %s does not exist", key, s);
        }
    }
    if (!inp) RFAIL("key 'input' is missing (the model to shrink)");
    if (!outp) RFAIL("key 'output' is missing (the .gguf to write)");
    if (!pare_path_exists(inp)) RFAIL("key 'input': %s does not exist", inp);
    if (!pare_str_ends_with(outp, ".gguf")) RFAIL("key 'output': %s is not a .gguf file", outp);
    if (pare_path_is_dir(outp)) RFAIL("key 'output': %s is a directory", outp);
    if (!cmd_opts_given(o, "text") && !cmd_opts_given(ro, "text")) RFAIL("key 'text' is missing (the gate's text)");
    if (!cmd_opts_given(o, "type") && !cmd_opts_given(o, "lora") && !cmd_opts_given(o, "sparsity") &&
        !cmd_opts_given(o, "pattern"))
        RFAIL("nothing to do: give 'type', 'lora', 'sparsity' or 'pattern'");
    /* the command line's own options, after the recipe's */
    for (size_t i = 0; i < ro->n_given; i++) {
        const cmd_opt *opt = ro->given[i];
        if (cmd_opts_set(o, opt->key, ro->raw[i], &err)) RFAIL("option '--%s': %s", opt->key, err.msg);
    }
    r->in = strdup(inp);
    r->out = strdup(outp);
    rc = r->in && r->out ? 0 : 2;
    goto done;
fail:
    rc = 1;
done:
    /* the options point into the parsed JSON and the arena: the recipe keeps them */
    r->json = j;
    r->strings = a.v;
    r->n_strings = a.n;
    free(text);
    free(dir);
    if (rc) cmd_recipe_free(r);
    return rc;
}

void cmd_recipe_free(cmd_recipe *r) {
    if (!r) return;
    cJSON_Delete(r->json);
    cmd_opts_free(&r->o);
    arena a = {r->strings, r->n_strings};
    arena_free(&a);
    free(r->in);
    free(r->out);
    memset(r, 0, sizeof *r);
}

static int run(const cmd_opts *ro) {
    const char *path = ro->pos[0];
    cmd_recipe r;
    int rc = cmd_recipe_load(path, ro, &r);
    if (!rc) rc = cmd_shrink_exec(&r.o, r.in, r.out, path);
    cmd_recipe_free(&r);
    return rc;
}

static const cmd_opt rows[] = {
    {.key = "report", .kind = CMD_OPT_STRING, .at = CMD_AT(report), .arg = "FILE",
     .help = "write the JSON report to FILE (over the recipe's \"report\")"},
    {.key = "no-cache", .kind = CMD_OPT_FLAG, .at = CMD_AT(no_cache),
     .help = "neither read nor write the reference-result cache"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "threads force quiet json"}, {NULL, NULL}};

const cmd_def cmd_run = {
    .name = "run",
    .summary = "run a recipe: pare shrink's options as a JSON file",
    .usage = "usage: pare run RECIPE.json [--report FILE] [--json] [--no-cache] [--threads N] [--force] [-q]\n",
    .args = "  RECIPE.json is an object with \"input\", \"output\" and pare shrink's options by name\n"
            "  (\"type\": \"auto\", \"max-ppl-increase\": 3, \"lora\": [\"adapter:0.5\"], ...); relative\n"
            "  paths are read from the recipe's folder. Every key is checked before anything runs.\n"
            "  Options given here win over the recipe's. Exit status as pare shrink's.\n",
    .notes = "pare shrink ... --print-recipe prints the recipe of a command line.\n",
    .min_pos = 1, .max_pos = 1, .need = "RECIPE.json",
    .uses = uses,
    .run = run,
};
