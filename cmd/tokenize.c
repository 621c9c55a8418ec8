/* cmd/tokenize.c - pare tokenize MODEL (--text FILE | --string S) [--no-bos] [--ids | --json]. */
#include "cmd.h"

#include "formats/formats.h"
#include "verify/tokenizer.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints a piece with C-style escapes for quotes, backslashes and bytes outside
 * printable ASCII that are not part of UTF-8 sequences (bytes >= 0x80 pass through). */
static void print_piece(const char *s, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\'' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\'');
}

static int print_json(const char *path, const pare_tokenizer *tk, const int32_t *ids, size_t n) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", path);
    cJSON_AddStringToObject(root, "tokenizer", pare_tokenizer_model(tk));
    cJSON_AddStringToObject(root, "pre", pare_tokenizer_pre(tk));
    cJSON_AddNumberToObject(root, "n_tokens", (double)n);
    cJSON *arr = cJSON_AddArrayToObject(root, "tokens");
    for (size_t i = 0; arr && i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
    char *s = cJSON_PrintUnformatted(root);
    if (s) puts(s);
    free(s);
    cJSON_Delete(root);
    return s ? 0 : 2;
}

static void print_tokens(const pare_tokenizer *tk, const int32_t *ids, size_t n, bool ids_only) {
    if (ids_only) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = pare_token_piece(tk, ids[i], &len);
        printf("%6d ", ids[i]);
        print_piece(p ? p : "", len);
        putchar('\n');
    }
}

static int run(const cmd_opts *o) {
    const char *path = o->pos[0], *file = o->text, *str = o->string;
    const bool json = o->json, ids_only = o->ids, special = !o->no_bos;
    if (!file == !str) return cmd_usage_error("tokenize", "give exactly one of --text FILE and --string S");
    if (json && ids_only) return cmd_usage_error("tokenize", "--ids and --json do not go together");

    pare_err err = {0};
    char *text = NULL;
    size_t len = str ? strlen(str) : 0;
    if (file && pare_read_file(file, CMD_TEXT_MAX_BYTES, &text, &len, &err)) return cmd_fail(&err);
    pare_model *m = NULL;
    pare_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (pare_model_load(path, &m, &err) || pare_tokenizer_new(&m->meta, &tk, &err)) {
        if (m) pare_err_prefix(&err, "%s", path);
        rc = cmd_fail(&err);
    } else if (pare_tokenize(tk, text ? text : str, len, special, &ids, &n, &err)) {
        pare_err_prefix(&err, "%s", path);
        rc = cmd_fail(&err);
    } else if (json) {
        rc = print_json(path, tk, ids, n);
    } else {
        print_tokens(tk, ids, n, ids_only);
    }
    free(ids);
    pare_tokenizer_free(tk);
    pare_model_free(m);
    free(text);
    return rc;
}

static const cmd_opt rows[] = {
    {.key = "text", .kind = CMD_OPT_STRING, .at = CMD_AT(text), .arg = "FILE", .help = "the whole file, bytes as they are"},
    {.key = "string", .kind = CMD_OPT_STRING, .at = CMD_AT(string), .arg = "S", .help = "the argument itself"},
    {.key = "no-bos", .kind = CMD_OPT_FLAG, .at = CMD_AT(no_bos),
     .help = "add neither BOS nor EOS (by default they are added as the vocabulary says)"},
    {.key = "ids", .kind = CMD_OPT_FLAG, .at = CMD_AT(ids), .help = "print the ids only, as [1, 2, 3] (llama-tokenize --ids)"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "json"}, {NULL, NULL}};

const cmd_def cmd_tokenize = {
    .name = "tokenize",
    .summary = "tokenize text with a model's vocabulary, as llama.cpp",
    .usage = "usage: pare tokenize MODEL (--text FILE | --string S) [--no-bos] [--ids | --json]\n",
    .args = "  Tokenizes text with the model's vocabulary as llama.cpp does (llama_tokenize with\n"
            "  add_special, without parsing special tokens). MODEL is a GGUF file or a Hugging Face\n"
            "  folder.\n",
    .notes = "By default one token per line: its id and its text, with C escapes. --json prints\n"
             "{\"model\", \"tokenizer\", \"pre\", \"n_tokens\", \"tokens\"}.\n",
    .min_pos = 1, .max_pos = 1, .need = "one MODEL",
    .uses = uses,
    .run = run,
};
