/* cmd/inspect.c - pare inspect MODEL [--json]: format, metadata and tensor table. */
#include "cmd.h"

#include "formats/formats.h"
#include "prune/structured.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREVIEW 8      /* array elements shown in the text listing */
#define JSON_ARRAY_MAX 64 /* array elements written in JSON before "truncated" */

static void print_scalar(const pare_kv *kv, pare_meta_type t, const void *p, FILE *f) {
    int64_t i;
    double d;
    pare_kv one = {.type = PARE_META_ARRAY, .elem_type = t, .n = 1, .arr = (void *)p};
    (void)kv;
    if (t == PARE_META_STRING) {
        fprintf(f, "\"%s\"", ((const pare_str *)p)->s);
    } else if (t == PARE_META_F32 || t == PARE_META_F64) {
        pare_kv_arr_f64(&one, 0, &d);
        fprintf(f, "%.9g", d);
    } else if (t == PARE_META_BOOL) {
        fprintf(f, "%s", *(const uint8_t *)p ? "true" : "false");
    } else if (t == PARE_META_U64) {
        uint64_t u;
        memcpy(&u, p, 8);
        fprintf(f, "%" PRIu64, u);
    } else if (pare_kv_arr_i64(&one, 0, &i)) {
        fprintf(f, "%" PRId64, i);
    }
}

static void print_value(const pare_kv *kv, bool full, FILE *f) {
    switch (kv->type) {
    case PARE_META_STRING: fprintf(f, "\"%s\"", kv->str.s); return;
    case PARE_META_F32:
    case PARE_META_F64: fprintf(f, "%.9g", kv->v.f64); return;
    case PARE_META_BOOL: fprintf(f, "%s", kv->v.u64 ? "true" : "false"); return;
    case PARE_META_I8:
    case PARE_META_I16:
    case PARE_META_I32:
    case PARE_META_I64: fprintf(f, "%" PRId64, kv->v.i64); return;
    case PARE_META_ARRAY: {
        size_t es = kv->elem_type == PARE_META_STRING ? sizeof(pare_str) : pare_meta_type_size(kv->elem_type);
        uint64_t shown = full || kv->n <= PREVIEW ? kv->n : PREVIEW;
        fprintf(f, "[");
        for (uint64_t i = 0; i < shown; i++) {
            if (i) fprintf(f, ", ");
            print_scalar(kv, kv->elem_type, (const uint8_t *)kv->arr + i * es, f);
        }
        if (shown < kv->n) fprintf(f, ", ... (%" PRIu64 " in all)", kv->n);
        fprintf(f, "]");
        return;
    }
    default: fprintf(f, "%" PRIu64, kv->v.u64); return;
    }
}

static cJSON *json_scalar(pare_meta_type t, const void *p) {
    pare_kv one = {.type = PARE_META_ARRAY, .elem_type = t, .n = 1, .arr = (void *)p};
    double d = 0;
    if (t == PARE_META_STRING) return cJSON_CreateString(((const pare_str *)p)->s);
    if (t == PARE_META_BOOL) return cJSON_CreateBool(*(const uint8_t *)p);
    pare_kv_arr_f64(&one, 0, &d);
    return cJSON_CreateNumber(d);
}

static cJSON *json_value(const pare_kv *kv, bool full) {
    switch (kv->type) {
    case PARE_META_STRING: return cJSON_CreateString(kv->str.s);
    case PARE_META_BOOL: return cJSON_CreateBool(kv->v.u64 != 0);
    case PARE_META_F32:
    case PARE_META_F64: return cJSON_CreateNumber(kv->v.f64);
    case PARE_META_I8:
    case PARE_META_I16:
    case PARE_META_I32:
    case PARE_META_I64: return cJSON_CreateNumber((double)kv->v.i64);
    case PARE_META_ARRAY: {
        cJSON *a = cJSON_CreateArray();
        size_t es = kv->elem_type == PARE_META_STRING ? sizeof(pare_str) : pare_meta_type_size(kv->elem_type);
        uint64_t shown = full || kv->n <= JSON_ARRAY_MAX ? kv->n : JSON_ARRAY_MAX;
        for (uint64_t i = 0; i < shown; i++)
            cJSON_AddItemToArray(a, json_scalar(kv->elem_type, (const uint8_t *)kv->arr + i * es));
        return a;
    }
    default: return cJSON_CreateNumber((double)kv->v.u64);
    }
}

static uint64_t total_bytes(const pare_model *m) {
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) n += m->tensors[i].n_bytes;
    return n;
}

/* Per-layer widths (FFN from ffn_up, heads from the metadata), which structured pruning
 * makes differ between layers; false for models without GGUF names and a block count. */
static bool layer_shape(const pare_model *m, pare_struct_shape *s) {
    if (!m->gguf_names || !m->arch) return false;
    pare_err e = {0};
    return pare_struct_shape_of(m, s, &e) == PARE_OK;
}

static bool shape_uniform(const pare_struct_shape *s) {
    for (int l = 1; l < s->n_layer; l++)
        if (s->n_ff[l] != s->n_ff[0] || s->n_head[l] != s->n_head[0] || s->n_head_kv[l] != s->n_head_kv[0]) return false;
    return true;
}

static void print_layers(const pare_model *m) {
    pare_struct_shape s;
    if (!layer_shape(m, &s)) return;
    char ex[48] = "";
    if (s.n_expert) snprintf(ex, sizeof ex, ", %d experts (%d used)", s.n_expert, s.n_expert_used);
    if (shape_uniform(&s)) {
        printf("layers:       %d, each FFN %d, heads %d, KV heads %d, head size %d%s\n", s.n_layer, s.n_ff[0],
               s.n_head[0], s.n_head_kv[0], s.n_embd_head, ex);
    } else {
        printf("layers:       %d, head size %d%s, widths per layer:\n", s.n_layer, s.n_embd_head, ex);
        printf("  %-6s %8s %6s %9s\n", "layer", "FFN", "heads", "KV heads");
        for (int l = 0; l < s.n_layer; l++) printf("  %-6d %8d %6d %9d\n", l, s.n_ff[l], s.n_head[l], s.n_head_kv[l]);
    }
    pare_struct_shape_free(&s);
}

static void json_layers(const pare_model *m, cJSON *root) {
    pare_struct_shape s;
    if (!layer_shape(m, &s)) return;
    cJSON *a = cJSON_AddArrayToObject(root, "layers");
    for (int l = 0; l < s.n_layer; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ffn", s.n_ff[l]);
        cJSON_AddNumberToObject(o, "heads", s.n_head[l]);
        cJSON_AddNumberToObject(o, "kv_heads", s.n_head_kv[l]);
        if (s.n_expert) cJSON_AddNumberToObject(o, "experts", s.n_expert);
        cJSON_AddItemToArray(a, o);
    }
    pare_struct_shape_free(&s);
}

static void print_json(const pare_model *m, bool full) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "path", m->path);
    cJSON_AddStringToObject(root, "format", pare_format_name(m->format));
    if (m->version) cJSON_AddNumberToObject(root, "version", m->version);
    if (m->arch) cJSON_AddStringToObject(root, "architecture", m->arch);
    cJSON_AddNumberToObject(root, "n_tensors", (double)m->n_tensors);
    cJSON_AddNumberToObject(root, "n_params", (double)pare_model_nparams(m));
    cJSON_AddNumberToObject(root, "tensor_bytes", (double)total_bytes(m));
    json_layers(m, root);
    cJSON *meta = cJSON_AddArrayToObject(root, "metadata");
    for (size_t i = 0; i < m->meta.n; i++) {
        const pare_kv *kv = &m->meta.kv[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", kv->key);
        cJSON_AddStringToObject(o, "type", pare_meta_type_name(kv->type));
        if (kv->type == PARE_META_ARRAY) {
            cJSON_AddStringToObject(o, "elem_type", pare_meta_type_name(kv->elem_type));
            cJSON_AddNumberToObject(o, "n", (double)kv->n);
            if (!full && kv->n > JSON_ARRAY_MAX) cJSON_AddBoolToObject(o, "truncated", 1);
        }
        cJSON_AddItemToObject(o, "value", json_value(kv, full));
        cJSON_AddItemToArray(meta, o);
    }
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "type", pare_type_name(t->type));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
        cJSON_AddNumberToObject(o, "bytes", (double)t->n_bytes);
        cJSON_AddNumberToObject(o, "offset", (double)t->file_offset);
        cJSON_AddItemToArray(ts, o);
    }
    char *s = cJSON_Print(root);
    if (s) puts(s);
    free(s);
    cJSON_Delete(root);
}

static void print_text(const pare_model *m, bool full) {
    printf("file:         %s\n", m->path);
    printf("format:       %s", pare_format_name(m->format));
    if (m->version) printf(" v%u", m->version);
    printf("\narchitecture: %s\n", m->arch ? m->arch : "(unknown)");
    printf("tensors:      %zu, %" PRIu64 " parameters, %" PRIu64 " bytes\n", m->n_tensors, pare_model_nparams(m),
           total_bytes(m));
    print_layers(m);
    printf("\nmetadata (%zu keys):\n", m->meta.n);
    for (size_t i = 0; i < m->meta.n; i++) {
        const pare_kv *kv = &m->meta.kv[i];
        char type[32];
        if (kv->type == PARE_META_ARRAY)
            snprintf(type, sizeof type, "%s[]", pare_meta_type_name(kv->elem_type));
        else
            snprintf(type, sizeof type, "%s", pare_meta_type_name(kv->type));
        printf("  %-44s %-9s ", kv->key, type);
        print_value(kv, full, stdout);
        printf("\n");
    }
    printf("\n  %-4s %-44s %-8s %-22s %12s %12s\n", "#", "tensor", "type", "shape", "bytes", "offset");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        char shape[96];
        printf("  %-4zu %-44s %-8s %-22s %12" PRIu64 " %12" PRIu64 "\n", i, t->name, pare_type_name(t->type),
               pare_tensor_shape_str(t, shape, sizeof shape), t->n_bytes, t->file_offset);
    }
}

static int run(const cmd_opts *o) {
    const char *path = o->pos[0];
    const bool json = o->json, full = o->full;
    pare_err err = {0};
    pare_model *m = NULL;
    if (pare_model_load(path, &m, &err)) return cmd_fail(&err);
    if (json)
        print_json(m, full);
    else
        print_text(m, full);
    pare_model_free(m);
    return 0;
}

static const cmd_opt rows[] = {
    {.key = "full", .kind = CMD_OPT_FLAG, .at = CMD_AT(full), .help = "print whole metadata arrays (tokens, scores, ...)"},
};
static const cmd_opt_group group = CMD_GROUP("options", rows);
static const cmd_use uses[] = {{&cmd_group_common, "json"}, {&group, NULL}, {NULL, NULL}};

const cmd_def cmd_inspect = {
    .name = "inspect",
    .summary = "show a model's format, metadata and tensors",
    .usage = "usage: pare inspect MODEL [--json] [--full]\n",
    .args = "  MODEL   a GGUF file, safetensors file or index, PyTorch checkpoint or HF folder\n",
    .min_pos = 1, .max_pos = 1, .need = "one MODEL",
    .uses = uses,
    .run = run,
};
