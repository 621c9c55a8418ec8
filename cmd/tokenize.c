/* cmd/tokenize.c - pare tokenize MODEL (--text FILE | --string S) [--no-bos] [--ids | --json], and
 * pare tokenize MODEL --check FILE: the tokens of llama.cpp's pre-tokenizer that the GGUF declares
 * (or that pare names from the folder's tokenizer.json) against the tokens of the tokenizer.json's
 * own definition (formats/hf_pretok.h), first difference reported, exit 3 when they differ. */
#include "cmd.h"

#include "formats/formats.h"
#include "formats/hf.h"
#include "formats/hf_pretok.h"
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

/* ------------------------------------------------------------------ --check */

/* The vocabulary of a tokenizer.json as GGUF metadata (what convert_hf_to_gguf.py's gpt2
 * vocabulary holds): model.vocab and added_tokens by id, "[PADi]" (unused) where no token
 * has the id, added tokens control when "special", else user-defined; model.merges ("a b"
 * strings, or pairs whose spaces become U+0120 as gguf-py writes them). */
static pare_status json_vocab_meta(const cJSON *j, const char *path, pare_meta *meta, pare_err *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    FAIL_IF(!cJSON_IsObject(vocab) || (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0), PARE_EUNSUPPORTED,
            "%s: not a BPE tokenizer with a token -> id vocabulary", path);
    int64_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        FAIL_IF(!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= PARE_HF_MAX_VOCAB, PARE_EINPUT,
                "%s: token '%.60s' has no valid id", path, e->string);
        if ((int64_t)e->valuedouble + 1 > n) n = (int64_t)e->valuedouble + 1;
    }
    cJSON_ArrayForEach(e, (cJSON_IsArray(added) ? added : NULL)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        FAIL_IF(!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= PARE_HF_MAX_VOCAB || !cJSON_IsString(c),
                PARE_EINPUT, "%s: an added token lacks a content or a valid id", path);
        if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
    }
    FAIL_IF(n == 0, PARE_EINPUT, "%s: the vocabulary is empty", path);
    pare_str *tok = calloc((size_t)n, sizeof *tok);
    int32_t *ty = calloc((size_t)n, sizeof *ty);
    char (*pad)[24] = calloc((size_t)n, sizeof *pad);
    pare_status st = tok && ty && pad ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory for %lld tokens", (long long)n);
    cJSON_ArrayForEach(e, (st ? NULL : vocab)) {
        int64_t id = (int64_t)e->valuedouble;
        tok[id] = (pare_str){e->string, strlen(e->string)};
        ty[id] = 1;
    }
    cJSON_ArrayForEach(e, (st || !cJSON_IsArray(added) ? NULL : added)) {
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        tok[id] = (pare_str){(char *)c, strlen(c)};
        ty[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? 3 : 4;
    }
    for (int64_t i = 0; !st && i < n; i++)
        if (!ty[i]) {
            int k = snprintf(pad[i], sizeof pad[i], "[PAD%lld]", (long long)i);
            tok[i] = (pare_str){pad[i], (size_t)k};
            ty[i] = 5;
        }
    if (!st) st = pare_meta_set_str(meta, "tokenizer.ggml.model", "gpt2", 4, err);
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.tokens", PARE_META_STRING, tok, (uint64_t)n, err);
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.token_type", PARE_META_I32, ty, (uint64_t)n, err);
    free(tok);
    free(ty);
    free(pad);
    TRY(st);
    int64_t nm = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0;
    pare_str *ms = calloc((size_t)nm + 1, sizeof *ms);
    FAIL_IF(!ms, PARE_ENOMEM, "out of memory for %lld merges", (long long)nm);
    int64_t k = 0;
    cJSON_ArrayForEach(e, (nm ? merges : NULL)) {
        if (cJSON_IsString(e)) {
            ms[k++] = (pare_str){strdup(e->valuestring), strlen(e->valuestring)};
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            const char *parts[2] = {cJSON_GetArrayItem(e, 0)->valuestring, cJSON_GetArrayItem(e, 1)->valuestring};
            char *b = malloc(2 * (strlen(parts[0]) + strlen(parts[1])) + 2), *q = b;
            for (int h = 0; b && h < 2; h++) {
                if (h) *q++ = ' ';
                for (const char *c = parts[h]; *c; c++)
                    if (*c == ' ') *q++ = (char)0xc4, *q++ = (char)0xa0; /* U+0120 */
                    else *q++ = *c;
            }
            if (b) *q = '\0';
            ms[k++] = (pare_str){b, b ? (size_t)(q - b) : 0};
        } else {
            st = pare_err_set(err, PARE_EINPUT, "%s: merge %lld is neither \"a b\" nor a pair of strings", path, (long long)k);
            break;
        }
        if (!ms[k - 1].s) {
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
    }
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.merges", PARE_META_STRING, ms, (uint64_t)k, err);
    for (int64_t i = 0; i < k; i++) free(ms[i].s);
    free(ms);
    return st;
}

/* Both tokenizers of --check and what names them in the report. */
typedef struct {
    pare_meta json_meta;   /* the folder's tokenizer.json as GGUF metadata */
    pare_model *model;     /* the GGUF */
    cJSON *json;           /* the tokenizer.json (read or built from the GGUF) */
    char *json_path;
    char pre[64];          /* llama.cpp's name on side (a) */
    pare_tokenizer *gguf, *hf;
} check_pair;

static void check_pair_free(check_pair *c) {
    pare_tokenizer_free(c->gguf);
    pare_tokenizer_free(c->hf);
    pare_meta_free(&c->json_meta);
    pare_model_free(c->model);
    cJSON_Delete(c->json);
    free(c->json_path);
}

/* A GGUF: side (a) from its metadata, side (b) from the tokenizer.json pare writes for its
 * tokenizer.ggml.pre (pare_hf_pretok_json) over the same vocabulary. */
static pare_status check_from_gguf(const char *path, const char *force_pre, check_pair *c, pare_err *err) {
    TRY(pare_model_load(path, &c->model, err));
    pare_meta *meta = &c->model->meta;
    const char *model = pare_meta_get_str(meta, "tokenizer.ggml.model");
    FAIL_IF(!model || strcmp(model, "gpt2") != 0, PARE_EUNSUPPORTED,
            "%s: --check compares byte-level BPE (gpt2) tokenizers; this vocabulary is '%s'", path, model ? model : "(none)");
    const char *pre = force_pre ? force_pre : pare_meta_get_str(meta, "tokenizer.ggml.pre");
    snprintf(c->pre, sizeof c->pre, "%s", pre ? pre : "default");
    if (force_pre) TRY(pare_meta_set_str(meta, "tokenizer.ggml.pre", force_pre, strlen(force_pre), err));
    cJSON *pt = NULL, *norm = NULL;
    bool im = false;
    TRY(pare_hf_pretok_json(c->pre, &pt, &norm, &im, err));
    c->json = cJSON_CreateObject();
    cJSON *m = c->json ? cJSON_AddObjectToObject(c->json, "model") : NULL;
    if (!m) {
        cJSON_Delete(pt);
        cJSON_Delete(norm);
        return pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    cJSON_AddItemToObject(c->json, "normalizer", norm);
    cJSON_AddItemToObject(c->json, "pre_tokenizer", pt);
    cJSON_AddBoolToObject(m, "ignore_merges", im);
    c->json_path = strdup("the tokenizer.json pare exports");
    FAIL_IF(!c->json_path, PARE_ENOMEM, "out of memory");
    return PARE_OK;
}

/* An HF folder: both sides over tokenizer.json's vocabulary and merges; side (a) with the
 * pre-tokenizer pare names from the file (or force_pre). */
static pare_status check_from_folder(const char *dir, const char *force_pre, check_pair *c, pare_err *err) {
    c->json_path = pare_path_join(dir, "tokenizer.json");
    FAIL_IF(!c->json_path, PARE_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    TRY(pare_read_file(c->json_path, PARE_HF_MAX_JSON, &text, &len, err));
    c->json = cJSON_ParseWithLength(text, len);
    free(text);
    FAIL_IF(!cJSON_IsObject(c->json), PARE_EINPUT, "%s: not a JSON object", c->json_path);
    if (force_pre) {
        FAIL_IF(!pare_pretok_find(force_pre), PARE_EUNSUPPORTED, "--tokenizer-pre '%.60s' is not a pre-tokenizer pare knows",
                force_pre);
        snprintf(c->pre, sizeof c->pre, "%s", force_pre);
    } else {
        TRY(pare_hf_pretok_name(c->json, NULL, c->json_path, c->pre, sizeof c->pre, err));
    }
    TRY(json_vocab_meta(c->json, c->json_path, &c->json_meta, err));
    return pare_meta_set_str(&c->json_meta, "tokenizer.ggml.pre", c->pre, strlen(c->pre), err);
}

/* Prints up to 6 tokens from i on, as "id 'piece'". */
static void print_tokens_from(const char *label, const pare_tokenizer *tk, const int32_t *ids, size_t n, size_t i) {
    printf("  %s:", label);
    for (size_t k = i; k < n && k < i + 6; k++) {
        size_t len = 0;
        const char *p = pare_token_piece(tk, ids[k], &len);
        printf(" %d ", ids[k]);
        print_piece(p ? p : "", len);
    }
    printf(i >= n ? " (end of text)\n" : n > i + 6 ? " ...\n" : "\n");
}

static int check(const cmd_opts *o) {
    const char *path = o->pos[0];
    pare_err err = {0};
    char *text = NULL;
    size_t len = 0;
    if (pare_read_file(o->check, CMD_TEXT_MAX_BYTES, &text, &len, &err)) return cmd_fail(&err);
    check_pair c = {0};
    pare_hf_pretok_list hl = {0};
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    pare_status st = pare_path_is_dir(path) ? check_from_folder(path, o->tokenizer_pre, &c, &err)
                                            : check_from_gguf(path, o->tokenizer_pre, &c, &err);
    const pare_meta *meta = c.model ? &c.model->meta : &c.json_meta;
    if (!st) st = pare_tokenizer_new(meta, &c.gguf, &err);
    if (!st) st = pare_hf_pretok_regexes(c.json, c.json_path, &hl, &err);
    if (!st) {
        pare_tok_regex_pre rp = {.name = "tokenizer.json", .regexes = (const char *const *)hl.regexes, .n = hl.n,
                                 .byte_level_at = hl.byte_level_at, .multiline = hl.multiline,
                                 .ignore_merges = hl.ignore_merges};
        st = pare_tokenizer_new_regex(meta, &rp, &c.hf, &err);
    }
    if (!st) st = pare_tokenize(c.gguf, text, len, false, &a, &na, &err);
    if (!st) st = pare_tokenize(c.hf, text, len, false, &b, &nb, &err);
    int rc = 0;
    if (st) {
        if (!strstr(err.msg, path)) pare_err_prefix(&err, "%s", path);
        rc = cmd_fail(&err);
    } else {
        size_t i = 0, off = 0;
        while (i < na && i < nb && a[i] == b[i]) {
            size_t pl = 0;
            pare_token_piece(c.gguf, a[i++], &pl);
            off += pl;
        }
        if (i == na && i == nb) {
            printf("%s: %s: %zu tokens, the same with llama.cpp's pre-tokenizer '%s' and with the definition in %s\n",
                   path, o->check, na, c.pre, c.json_path);
        } else {
            if (off > len) off = len; /* pieces of text that was not valid UTF-8 may be longer */
            size_t from = off > 24 ? off - 24 : 0, to = off + 40 < len ? off + 40 : len;
            while (from > 0 && from < len && ((unsigned char)text[from] & 0xc0) == 0x80) from--;
            while (to < len && ((unsigned char)text[to] & 0xc0) == 0x80) to++;
            printf("%s: %s: the tokenizations differ at token %zu, byte %zu of the text:\n  text: ", path, o->check, i, off);
            print_piece(text + from, off - from);
            printf(" <here> ");
            print_piece(text + off, to - off);
            putchar('\n');
            char label[96];
            snprintf(label, sizeof label, "llama.cpp's '%s' (%zu tokens)", c.pre, na);
            print_tokens_from(label, c.gguf, a, na, i);
            snprintf(label, sizeof label, "tokenizer.json's own (%zu tokens)", nb);
            print_tokens_from(label, c.hf, b, nb, i);
            rc = 3;
        }
    }
    free(a);
    free(b);
    pare_hf_pretok_list_free(&hl);
    check_pair_free(&c);
    free(text);
    return rc;
}

static int run(const cmd_opts *o) {
    const char *path = o->pos[0], *file = o->text, *str = o->string;
    const bool json = o->json, ids_only = o->ids, special = !o->no_bos;
    if (o->check) {
        if (file || str || json || ids_only)
            return cmd_usage_error("tokenize", "--check FILE goes without --text, --string, --ids and --json");
        return check(o);
    }
    if (o->tokenizer_pre) return cmd_usage_error("tokenize", "--tokenizer-pre goes with --check");
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
    {.key = "check", .kind = CMD_OPT_STRING, .at = CMD_AT(check), .arg = "FILE",
     .help = "tokenize FILE with llama.cpp's pre-tokenizer and with tokenizer.json's own\n"
             "definition; report the first difference (exit 3)"},
    {.key = "tokenizer-pre", .kind = CMD_OPT_STRING, .at = CMD_AT(tokenizer_pre), .arg = "NAME",
     .help = "with --check: the llama.cpp pre-tokenizer of side (a) (default: the GGUF's,\n"
             "or the one pare names from tokenizer.json)"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "json"}, {NULL, NULL}};

const cmd_def cmd_tokenize = {
    .name = "tokenize",
    .summary = "tokenize text with a model's vocabulary, as llama.cpp",
    .usage = "usage: pare tokenize MODEL (--text FILE | --string S) [--no-bos] [--ids | --json]\n"
             "       pare tokenize MODEL --check FILE [--tokenizer-pre NAME]\n",
    .args = "  Tokenizes text with the model's vocabulary as llama.cpp does (llama_tokenize with\n"
            "  add_special, without parsing special tokens). MODEL is a GGUF file or a Hugging Face\n"
            "  folder.\n",
    .notes = "By default one token per line: its id and its text, with C escapes. --json prints\n"
             "{\"model\", \"tokenizer\", \"pre\", \"n_tokens\", \"tokens\"}.\n"
             "--check FILE (byte-level BPE vocabularies) tokenizes FILE twice, without BOS/EOS:\n"
             "(a) as llama.cpp would, with the pre-tokenizer the GGUF declares (for an HF folder:\n"
             "the one pare names from tokenizer.json, as `pare convert` would write it), and (b)\n"
             "with the tokenizer.json's own pre_tokenizer regexes as Hugging Face runs them (for\n"
             "a GGUF: the tokenizer.json pare would export), over the same vocabulary and merges.\n"
             "Equal: one line with the number of tokens, exit 0. Different: the first difference\n"
             "(token index, byte offset, the text around it, the tokens of each side), exit 3.\n",
    .min_pos = 1, .max_pos = 1, .need = "one MODEL",
    .uses = uses,
    .run = run,
};
