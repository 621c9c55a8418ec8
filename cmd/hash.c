/* cmd/hash.c - pare hash MODEL [--values] [--json] [--threads N]. */
#include "cmd.h"

#include "formats/formats.h"
#include "verify/hash.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static int run(const cmd_opts *o) {
    const char *path = o->pos[0];
    const bool json = o->json, values = o->values;
    pare_err err = {0};
    pare_model *m = NULL;
    pare_status st = values ? pare_model_load_gguf(path, &m, &err) : pare_model_load(path, &m, &err);
    if (st == PARE_EUNSUPPORTED && values) st = pare_model_load(path, &m, &err); /* no names to map: hash as is */
    if (st) return cmd_fail(&err);
    pare_model_digest d;
    if (pare_hash_model(m, values, o->threads, &d, &err)) {
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

static const cmd_opt rows[] = {
    {.key = "values", .kind = CMD_OPT_FLAG, .at = CMD_AT(values),
     .help = "hash the f32 values (dequantized) in GGUF layout instead of the bytes, so the\n"
             "same weights stored in two formats hash the same"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&group, NULL}, {&cmd_group_common, "json threads"}, {NULL, NULL}};

const cmd_def cmd_hash = {
    .name = "hash",
    .summary = "XXH3-128 digests of every tensor and of the whole model",
    .usage = "usage: pare hash MODEL [--values] [--json] [--threads N]\n",
    .args = "  XXH3-128 of every tensor's bytes and one digest for the model that does not depend\n"
            "  on the order of the tensors in the file.\n",
    .min_pos = 1, .max_pos = 1, .need = "one MODEL",
    .uses = uses,
    .run = run,
};
