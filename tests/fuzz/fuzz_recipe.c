/* tests/fuzz/fuzz_recipe.c - the recipe reader of pare run (cmd_recipe_load, cmd/run.c): the
 * JSON, every key against pare shrink's option table, the values' types and ranges, the
 * paths (resolved from the recipe's folder, checked to exist), and pare run's own command
 * line over the recipe. Nothing runs: the shrink job is cmd_shrink_exec, not called here.
 *
 * Input: RECIPE [FUZZ_SEP ARGS]. RECIPE is written as recipe.json into a folder made once
 * per process that holds what recipes name: model (a folder) and model.gguf, eval.txt,
 * calib.txt, imatrix.dat, adapter (a folder), adapter.gguf, and outdir.gguf (a folder, an
 * output that is not a file). ARGS, when present, are pare run's command-line options, one a
 * line, "key" or "key=value" (report, no-cache, threads, force, quiet, json), set as main.c's
 * parser would set them; options it refuses are skipped (that is argv's parser, not recipes).
 *
 * stderr is swapped for a memory stream during each load, which keeps the fuzzer's log small
 * and lets the oracles read the message. Oracles: the exit code is 0, 1 or 2; a refused recipe
 * printed a message starting with "pare"; an accepted one printed nothing, has an input and an
 * output ending in .gguf; and the recipe pare writes for its options (cmd_recipe_json, what
 * --print-recipe prints) loads again, to the same recipe when no command-line option
 * took part (command-line paths are not resolved from the recipe's folder, recipe paths are). */
#include "cmd/cmd.h"
#include "fuzz_util.h"

#include <cJSON.h>

static const char *recipe_dir(void) {
    static char dir[1024];
    if (dir[0]) return dir;
    fuzz_fresh_dir(dir, sizeof dir, "recipe");
    static const char *const files[] = {"model.gguf", "eval.txt", "calib.txt", "imatrix.dat", "adapter.gguf"};
    static const char *const dirs[] = {"model", "adapter", "outdir.gguf"};
    char p[1100];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        fuzz_write(p, "x\n", 2);
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, dirs[i]);
        if (mkdir(p, 0700) != 0) {
            perror(p);
            abort();
        }
    }
    return dir;
}

/* cmd_recipe_load(path, ro) with stderr captured into *msg (malloc'd, NUL-terminated). */
static int load(const char *path, const cmd_opts *ro, cmd_recipe *r, char **msg, size_t *msg_len) {
    FILE *mem = open_memstream(msg, msg_len);
    if (!mem) abort();
    FILE *real = stderr;
    stderr = mem;
    int rc = cmd_recipe_load(path, ro, r);
    stderr = real;
    if (fclose(mem) != 0) abort();
    if (getenv("PARE_FUZZ_VERBOSE")) fprintf(stderr, "  cmd_recipe_load: %d %s", rc, rc ? *msg : "ok\n");
    return rc;
}

static void check_outcome(int rc, const cmd_recipe *r, const char *msg, const char *what) {
    if (rc < 0 || rc > 2) FUZZ_BUG("%s: exit code %d", what, rc);
    if (rc) {
        if (strncmp(msg, "pare", 4) != 0) FUZZ_BUG("%s: exit %d with message '%s'", what, rc, msg);
        return;
    }
    if (msg[0]) FUZZ_BUG("%s: accepted, yet printed '%s'", what, msg);
    if (!r->in || !r->out || !pare_str_ends_with(r->out, ".gguf")) FUZZ_BUG("%s: accepted without input/output", what);
    if (!r->o.text) FUZZ_BUG("%s: accepted without a gate text", what);
}

/* The recipe of r's options, as --print-recipe prints it; NULL when out of memory. */
static char *recipe_text(const cmd_recipe *r) {
    cJSON *j = cmd_recipe_json(&r->o, r->in, r->out);
    char *t = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return t;
}

/* ARGS: one option a line into ro; the strings are kept in buf (which must outlive ro). */
static size_t set_args(cmd_opts *ro, char *buf) {
    size_t n = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!*line) continue;
        char *eq = strchr(line, '=');
        if (eq) *eq++ = 0;
        pare_err err = {0};
        if (cmd_opts_set(ro, line, eq, &err) == PARE_OK) n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = recipe_dir();
    fuzz_piece pc[2];
    size_t np = fuzz_split(data, size, pc, 2);
    char path[1100], again[1100];
    snprintf(path, sizeof path, "%s/recipe.json", dir);
    snprintf(again, sizeof again, "%s/again.json", dir);
    fuzz_write(path, pc[0].p, pc[0].n);

    char *args = NULL;
    cmd_opts ro;
    cmd_opts_init(&ro, &cmd_run);
    size_t n_args = 0;
    if (np > 1) {
        args = malloc(pc[1].n + 1);
        if (!args) abort();
        memcpy(args, pc[1].p, pc[1].n);
        args[pc[1].n] = 0;
        n_args = set_args(&ro, args);
    }

    cmd_recipe r;
    char *msg = NULL;
    size_t msg_len = 0;
    int rc = load(path, &ro, &r, &msg, &msg_len);
    check_outcome(rc, &r, msg, "recipe");
    char *text = rc ? NULL : recipe_text(&r);
    if (text) {
        /* what pare writes for these options must read back */
        fuzz_write(again, text, strlen(text));
        cmd_opts none;
        cmd_opts_init(&none, &cmd_run);
        cmd_recipe r2;
        char *msg2 = NULL;
        size_t msg2_len = 0;
        int rc2 = load(again, &none, &r2, &msg2, &msg2_len);
        if (rc2) FUZZ_BUG("the recipe of an accepted recipe is refused: %s\n%s", msg2, text);
        check_outcome(rc2, &r2, msg2, "recipe again");
        char *text2 = recipe_text(&r2);
        if (text2 && n_args == 0 && strcmp(text, text2) != 0)
            FUZZ_BUG("a recipe changed when read again:\n%s\nthen\n%s", text, text2);
        free(text2);
        free(msg2);
        cmd_recipe_free(&r2);
        cmd_opts_free(&none);
    }
    free(text);
    free(msg);
    cmd_recipe_free(&r);
    cmd_opts_free(&ro);
    free(args);
    return 0;
}
