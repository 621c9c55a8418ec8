/* cmd/hash.c - pare hash MODEL [--values] [--json] [--threads N]. */
#include "cmd.h"

#include "formats/formats.h"
#include "verify/hash.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *help =
    "usage: pare hash MODEL [--values] [--json] [--threads N]\n"
    "  XXH3-128 of every tensor's bytes and one digest for the model that does not depend\n"
    "  on the order of the tensors in the file.\n"
    "  --values  hash the f32 values (dequantized) in GGUF layout instead of the bytes, so the\n"
    "            same weights stored in two formats hash the same\n";

int cmd_hash(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, values = false;
    int n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--values")) {
            values = true;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long n;
            if (!cmd_parse_int(argv[++i], 1, 256, &n)) return cmd_usage_error("hash", "bad --threads '%s'", argv[i]);
            n_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            return cmd_usage_error("hash", "unknown option '%s'", a);
        } else if (!path) {
            path = a;
        } else {
            return cmd_usage_error("hash", "one MODEL at a time");
        }
    }
    if (!path) return cmd_usage_error("hash", "no MODEL given");
    pare_err err = {0};
    pare_model *m = NULL;
    pare_status st = values ? pare_model_load_gguf(path, &m, &err) : pare_model_load(path, &m, &err);
    if (st == PARE_EUNSUPPORTED && values) st = pare_model_load(path, &m, &err); /* no names to map: hash as is */
    if (st) return cmd_fail(&err);
    pare_model_digest d;
    if (pare_hash_model(m, values, n_threads, &d, &err)) {
        pare_model_free(m);
        return cmd_fail(&err);
    }
    char hex[33];
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "path", path);
        cJSON_AddStringToObject(root, "mode", values ? "values" : "bytes");
        pare_digest_hex(d.model, hex);
        cJSON_AddStringToObject(root, "model", hex);
        cJSON *ts = cJSON_AddObjectToObject(root, "tensors");
        for (size_t i = 0; i < m->n_tensors; i++) {
            pare_digest_hex(d.tensors[i], hex);
            cJSON_AddStringToObject(ts, m->tensors[i].name, hex);
        }
        char *s = cJSON_Print(root);
        if (s) puts(s);
        free(s);
        cJSON_Delete(root);
    } else {
        for (size_t i = 0; i < m->n_tensors; i++) {
            pare_digest_hex(d.tensors[i], hex);
            printf("%s  %s\n", hex, m->tensors[i].name);
        }
        pare_digest_hex(d.model, hex);
        printf("%s  (model, %s)\n", hex, values ? "values" : "bytes");
    }
    pare_model_digest_free(&d);
    pare_model_free(m);
    return 0;
}
