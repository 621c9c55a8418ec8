/* formats/hf.c - loading a Hugging Face model folder (see hf.h for the files).
 *
 * pare_hf_load reads config.json, loads the weights through the safetensors or pytorch
 * readers, and builds the metadata the way llama.cpp's convert_hf_to_gguf.py (February 2025)
 * does, in the same order:
 *   general.architecture, general.type "model",
 *   general.name / version / organization / finetune / basename (gguf-py's Metadata
 *     heuristics on config.json's _name_or_path, then on the folder's name),
 *   general.size_label (from the names, else from the parameter count of the GGUF tensors),
 *   the hyperparameters (the family's set_gguf_parameters as the architecture table's hparams
 *     list describes it, hf_config.c),
 *   the tokenizer (hf_tokenizer.c).
 * general.file_type is written where the converter writes it (end of the base
 * hyperparameters) for the weights as they are; a writer with another output type replaces
 * the value in place. Not reproduced: the README.md model card (the converter reads its YAML
 * front matter for names, licenses, tags), --metadata overrides, and
 * general.quantization_version (the GGUF writer's business).
 */
#include "formats/hf_impl.h"

#include "core/arch.h"
#include "formats/fp8.h"
#include "formats/pytorch.h"
#include "formats/safetensors.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ JSON files */

pare_status pare_hf_json_parse(const char *path, const char *text, size_t len, bool want_object, cJSON **out,
                               pare_err *err) {
    *out = NULL;
    const char *end = NULL;
    /* cJSON limits nesting (CJSON_NESTING_LIMIT), so hostile depth cannot exhaust the stack. */
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t at = (end && end >= text && end <= text + len) ? (size_t)(end - text) : 0;
    FAIL_IF(!j, PARE_EINPUT, "%s: not valid JSON (error near byte %zu of %zu)", path, at, len);
    while (at < len && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) at++;
    if (at < len && text[at] != 0) {
        cJSON_Delete(j);
        return pare_err_set(err, PARE_EINPUT, "%s: unexpected bytes after the JSON value (byte %zu of %zu)", path, at,
                            len);
    }
    if (want_object && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pare_err_set(err, PARE_EINPUT, "%s: not a JSON object", path);
    }
    *out = j;
    return PARE_OK;
}

pare_status pare_hf_json_read(const char *folder, const char *name, bool required, bool want_object, cJSON **out,
                              pare_err *err) {
    *out = NULL;
    char *path = pare_path_join(folder, name);
    FAIL_IF(!path, PARE_ENOMEM, "out of memory");
    if (!pare_path_exists(path)) {
        pare_status st = required ? pare_err_set(err, PARE_EINPUT, "%s: missing", path) : PARE_OK;
        free(path);
        return st;
    }
    char *text = NULL;
    size_t len = 0;
    pare_status st = pare_read_file(path, PARE_HF_MAX_JSON, &text, &len, err);
    if (!st) st = pare_hf_json_parse(path, text, len, want_object, out, err);
    free(text);
    free(path);
    return st;
}

const cJSON *pare_hf_vocab_size(const cJSON *cfg) {
    const cJSON *v = pare_hf_json_get(cfg, "vocab_size");
    const cJSON *tc = v ? NULL : pare_hf_json_get(cfg, "text_config");
    return v ? v : cJSON_IsObject(tc) ? pare_hf_json_get(tc, "vocab_size") : NULL;
}

const cJSON *pare_hf_json_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

bool pare_hf_json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

pare_status pare_hf_file_write(const char *folder, const char *name, const void *buf, size_t n, bool force,
                               pare_err *err) {
    char *path = pare_path_join(folder, name);
    FAIL_IF(!path, PARE_ENOMEM, "out of memory");
    pare_outfile *f = NULL;
    pare_status st = pare_outfile_open(path, force, NULL, 0, &f, err);
    if (!st) st = pare_outfile_write(f, buf, n, err);
    if (!st) st = pare_outfile_commit(f, err);
    pare_outfile_free(f);
    free(path);
    return st;
}

pare_status pare_hf_json_write(const char *folder, const char *name, const cJSON *j, bool force, pare_err *err) {
    char *text = cJSON_Print(j);
    FAIL_IF(!text, PARE_ENOMEM, "%s: out of memory formatting JSON", name);
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the terminator: files end with a newline */
    pare_status st = pare_hf_file_write(folder, name, text, n + 1, force, err);
    cJSON_free(text);
    return st;
}

/* ------------------------------------------------------------------------ architecture */

typedef struct {
    const char *path; /* config.json, for messages */
    const cJSON *cfg;
    const char *arch; /* GGUF architecture */
    pare_meta *meta;
} hf_cfg;

/* Parameter counts of the GGUF the converter would write (general.size_label). */
typedef struct {
    int64_t total, shared, expert;
    int64_t n_expert; /* experts (0: a dense model) */
} hf_params;

static pare_status cfg_arch(const char *path, const cJSON *cfg, const char **arch, pare_err *err) {
    const cJSON *a = pare_hf_json_get(cfg, "architectures");
    const char *name = NULL;
    if (a) {
        const cJSON *first = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
        FAIL_IF(!cJSON_IsString(first), PARE_EINPUT, "%s: 'architectures' must be a list of names", path);
        name = first->valuestring;
    } else {
        const cJSON *mt = pare_hf_json_get(cfg, "model_type");
        FAIL_IF(!cJSON_IsString(mt), PARE_EINPUT, "%s: has neither 'architectures' nor 'model_type'", path);
        name = mt->valuestring;
    }
    const pare_arch *e = pare_arch_for_hf(name, !a);
    if (e && e->conv.hparams) {
        *arch = e->name;
        return PARE_OK;
    }
    return pare_err_set(err, PARE_EUNSUPPORTED, "%s: architecture '%.200s' is not supported (pare converts %s)", path,
                        name, pare_arch_names());
}

/* ------------------------------------------------------------------------ model names */

/* gguf-py's Metadata.get_model_id_components, applied to "org/name" ids and folder names. */
enum { ID_VERSION = 1, ID_TYPE = 2, ID_SIZE = 4, ID_FINETUNE = 8, ID_BASENAME = 16 };
#define ID_MAX_PARTS 64

typedef struct {
    char *full, *org, *basename, *finetune, *version, *size_label;
} hf_id;

static void id_free(hf_id *id) {
    free(id->full);
    free(id->org);
    free(id->basename);
    free(id->finetune);
    free(id->version);
    free(id->size_label);
    memset(id, 0, sizeof *id);
}

/* Python re.fullmatch(pattern, s, re.IGNORECASE) for the simple ASCII patterns used here. */
static bool re_full(const char *pattern, const char *s) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_CASELESS | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return isalpha((unsigned char)c) || (unsigned char)c >= 0x80; }

/* normalize_size_label: "7b1" -> "7.1B", "1_5b" -> "1.5B", "7b" -> "7B". */
static void normalize_size(char *p) {
    for (char *q = p; *q; q++)
        if (*q == '_') *q = '.';
    size_t n = strlen(p);
    if (n >= 2 && is_digit(p[n - 1])) {
        char last = p[n - 1], prev = p[n - 2];
        p[n - 2] = '.'; /* "7b1" -> "7" "." "1" "b" (one byte longer) */
        p[n - 1] = last;
        p[n] = prev;
        p[n + 1] = 0;
        n++;
    }
    if (n > 1 && is_digit(p[n - 2]) && strchr("kmbt", p[n - 1])) p[n - 1] = (char)toupper((unsigned char)p[n - 1]);
}

/* float(label[:-1]) * 1000 ** " KMBT".find(label[-1]); false when Python would raise. */
static bool size_params(const char *p, double *out) {
    size_t n = strlen(p);
    if (n < 2) return false;
    char num[64];
    if (n - 1 >= sizeof num) return false;
    memcpy(num, p, n - 1);
    num[n - 1] = 0;
    for (const char *q = num; *q; q++)
        if (!is_digit(*q) && !strchr(".eE+-", *q)) return false;
    char *end;
    double v = strtod(num, &end);
    if (*end || end == num) return false;
    const char *f = strchr(" KMBT", p[n - 1]);
    *out = v * pow(1000.0, f ? (double)(f - " KMBT") : -1.0);
    return true;
}

static char *join_parts(char **parts, const int *types, int n, int want, int unwanted, bool dedup) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(parts[i]) + 1;
    char *s = calloc(1, len + 1);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        if (!(types[i] & want) || (types[i] & unwanted)) continue;
        bool seen = false;
        for (int j = 0; dedup && j < i; j++)
            if ((types[j] & want) && strcmp(parts[j], parts[i]) == 0) seen = true;
        if (seen) continue;
        if (*s) strcat(s, "-");
        strcat(s, parts[i]);
    }
    if (!*s) {
        free(s);
        return NULL;
    }
    return s;
}

static void annotate_part(char *p, int i, int *t, int64_t total_params) {
    if (re_full("(v|iter)?\\d+([.]\\d+)*", p)) {
        *t |= ID_VERSION;
    } else if (re_full("i?q\\d(_\\w)*|b?fp?(16|32)", p)) {
        *t |= ID_TYPE;
        for (char *q = p; *q; q++) *q = (char)toupper((unsigned char)*q);
    } else if (i > 0 && re_full("(([A]|\\d+[x])?\\d+([._]\\d+)?[KMBT][\\d]?|small|mini|medium|large|x?xl)", p)) {
        normalize_size(p);
        double label;
        if (total_params != 0 && size_params(p, &label)) {
            double tp = (double)total_params;
            int64_t a = total_params < 0 ? -total_params : total_params;
            /* A label far from the real size is a context length ("8k"): a finetune. */
            if ((total_params < 0 && label < (double)(a / 8)) ||
                (total_params > 0 && fabs(label - tp) > (double)(7 * total_params / 8))) {
                *t |= ID_FINETUNE;
                size_t n = strlen(p);
                p[n - 1] = (char)tolower((unsigned char)p[n - 1]);
            }
        }
        if (!*t) *t |= ID_SIZE;
    } else if (i > 0 && re_full("chat|instruct|vision|lora", p)) {
        *t |= ID_FINETUNE;
    }
}

static pare_status id_components(const char *model_id, int64_t total_params, hf_id *id, pare_err *err) {
    memset(id, 0, sizeof *id);
    if (strchr(model_id, ' ')) {
        id->full = strdup(model_id);
        FAIL_IF(!id->full, PARE_ENOMEM, "out of memory");
        return PARE_OK;
    }
    const char *slash = strchr(model_id, '/');
    id->full = strdup(slash ? slash + 1 : model_id);
    if (slash && !(slash > model_id && model_id[0] == '.')) id->org = strndup(model_id, (size_t)(slash - model_id));
    FAIL_IF(!id->full || (slash && model_id[0] != '.' && !id->org), PARE_ENOMEM, "out of memory");
    /* Split on '-' (dropping empty parts); each part gets room to grow by one byte. */
    char *parts[ID_MAX_PARTS];
    int types[ID_MAX_PARTS] = {0}, n = 0;
    char *work = strdup(id->full);
    FAIL_IF(!work, PARE_ENOMEM, "out of memory");
    for (char *save = NULL, *tok = strtok_r(work, "-", &save); tok && n < ID_MAX_PARTS;
         tok = strtok_r(NULL, "-", &save)) {
        parts[n] = malloc(strlen(tok) + 2);
        if (!parts[n]) break;
        strcpy(parts[n++], tok);
    }
    free(work);
    for (int i = 0; i < n; i++) annotate_part(parts[i], i, &types[i], total_params);
    bool numeric_size = false;
    for (int i = 0; i < n; i++)
        if (types[i] & ID_SIZE)
            for (const char *q = parts[i]; *q; q++) numeric_size |= is_digit(*q);
    for (int i = 0; numeric_size && i < n; i++) {
        bool alpha = true;
        for (const char *q = parts[i]; *q; q++) alpha &= is_alpha(*q);
        if ((types[i] & ID_SIZE) && alpha) types[i] &= ~ID_SIZE;
    }
    bool at_start = true;
    for (int i = 0; i < n; i++) {
        if (at_start && ((!types[i] && is_alpha(parts[i][0])) || (types[i] & ID_VERSION))) {
            types[i] |= ID_BASENAME;
        } else {
            at_start = false;
            if (!types[i]) types[i] |= ID_FINETUNE;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        if ((types[i] & ID_BASENAME) && types[i] != ID_BASENAME)
            types[i] &= ~ID_BASENAME;
        else
            break;
    }
    id->basename = join_parts(parts, types, n, ID_BASENAME, 0, false);
    id->size_label = join_parts(parts, types, n, ID_SIZE, 0, true);
    id->finetune = join_parts(parts, types, n, ID_FINETUNE, 0, false);
    id->version = join_parts(parts, types, n, ID_VERSION, ID_BASENAME, false);
    if (!id->size_label && !id->finetune && !id->version) {
        free(id->basename);
        id->basename = NULL;
    }
    for (int i = 0; i < n; i++) free(parts[i]);
    return PARE_OK;
}

/* Metadata.id_to_title: "fortune-llama" -> "Fortune Llama"; words with capitals, version
 * numbers and words starting with a digit are kept as they are. */
static char *id_to_title(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    char *work = strdup(s);
    if (!work) {
        free(out);
        return NULL;
    }
    for (char *q = work; *q; q++)
        if (*q == '-') *q = ' ';
    for (char *save = NULL, *w = strtok_r(work, " \t\n\r\f\v", &save); w; w = strtok_r(NULL, " \t\n\r\f\v", &save)) {
        bool lower = false, upper = false;
        for (const char *q = w; *q; q++) {
            lower |= islower((unsigned char)*q) != 0;
            upper |= isupper((unsigned char)*q) != 0;
        }
        bool keep = !lower || upper || is_digit(w[0]) || re_full("v\\d+(?:\\.\\d+)*", w);
        if (o != out) *o++ = ' ';
        bool prev_cased = false;
        for (const char *q = w; *q; q++) {
            char c = *q;
            bool cased = isalpha((unsigned char)c) || (unsigned char)c >= 0x80;
            if (!keep && isalpha((unsigned char)c)) c = (char)(prev_cased ? tolower((unsigned char)c) : toupper((unsigned char)c));
            prev_cased = cased;
            *o++ = c;
        }
    }
    *o = 0;
    free(work);
    return out;
}

/* The converter's model_weight_count_rounded_notation(n, min_digits=2). */
static void size_label(uint64_t n, char *buf, size_t cap) {
    double x = (double)n, s;
    const char *sfx;
    if (x >= 1e12) {
        s = x * 1e-12, sfx = "T";
    } else if (x >= 1e9) {
        s = x * 1e-9, sfx = "B";
    } else if (x >= 1e6) {
        s = x * 1e-6, sfx = "M";
    } else {
        s = x * 1e-3, sfx = "K";
    }
    /* len(str(round(s)).lstrip('0')): digits of the rounded value (Python rounds to even). */
    double r = nearbyint(s);
    int digits = 0;
    for (double v = r; v >= 1; v /= 10) digits++;
    int fix = 2 - digits > 0 ? 2 - digits : 0;
    snprintf(buf, cap, "%.*f%s", fix, s, sfx);
}

typedef struct {
    char *name, *version, *org, *finetune, *basename, *size_label;
} hf_names_md;

static pare_status names_take(hf_names_md *md, const hf_id *id, pare_err *err) {
    struct {
        char **dst;
        const char *src;
        bool title;
    } f[] = {{&md->name, id->full, true},       {&md->org, id->org, true},          {&md->basename, id->basename, false},
             {&md->finetune, id->finetune, false}, {&md->version, id->version, false}, {&md->size_label, id->size_label, false}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (*f[i].dst || !f[i].src) continue;
        *f[i].dst = f[i].title ? id_to_title(f[i].src) : strdup(f[i].src);
        FAIL_IF(!*f[i].dst, PARE_ENOMEM, "out of memory");
    }
    return PARE_OK;
}

/* Whether config.json's _name_or_path = model_id would give back meta's general.name,
 * organization, basename, finetune and version (and size_label, unless the id has none and
 * the parameter count supplies it). */
bool pare_hf_model_id_matches(const char *model_id, int64_t total_params, const pare_meta *meta) {
    hf_id id;
    hf_names_md md = {0};
    if (id_components(model_id, total_params, &id, NULL) || names_take(&md, &id, NULL)) {
        id_free(&id);
        return false;
    }
    const struct {
        const char *key, *val;
    } kv[] = {{"general.name", md.name},         {"general.version", md.version},   {"general.organization", md.org},
              {"general.finetune", md.finetune}, {"general.basename", md.basename}, {"general.size_label", md.size_label}};
    bool ok = true;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        const char *want = pare_meta_get_str(meta, kv[i].key);
        if (i == 5 && !kv[i].val) continue;
        ok &= (!want && !kv[i].val) || (want && kv[i].val && strcmp(want, kv[i].val) == 0);
    }
    id_free(&id);
    free(md.name), free(md.version), free(md.org), free(md.finetune), free(md.basename), free(md.size_label);
    return ok;
}

/* The last component of the folder path ("a/b/fortune-llama/" -> "fortune-llama"); the real
 * path's when the name is "." or "..". */
static char *folder_name(const char *folder) {
    char *rp = NULL;
    size_t n = strlen(folder);
    while (n > 1 && folder[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && folder[b - 1] != '/') b--;
    char *name = strndup(folder + b, n - b);
    if (name && (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) && (rp = realpath(folder, NULL))) {
        free(name);
        char *s = strrchr(rp, '/');
        name = strdup(s && s[1] ? s + 1 : rp);
        free(rp);
    }
    return name;
}

static pare_status meta_names(const char *folder, const cJSON *cfg, const hf_params *pc, pare_meta *meta,
                              pare_err *err) {
    int64_t total_params = pc->total;
    hf_names_md md = {0};
    hf_id id;
    pare_status st = PARE_OK;
    const cJSON *nop = pare_hf_json_get(cfg, "_name_or_path");
    if (cJSON_IsString(nop)) {
        int slashes = 0;
        for (const char *q = nop->valuestring; *q; q++) slashes += *q == '/';
        if (slashes <= 1) {
            st = id_components(nop->valuestring, total_params, &id, err);
            if (!st) st = names_take(&md, &id, err);
            id_free(&id);
        }
    }
    char *fname = folder_name(folder);
    if (!st && !fname) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = id_components(fname, total_params, &id, err);
    if (!st) st = names_take(&md, &id, err);
    id_free(&id);
    free(fname);
    char label[32];
    if (!st && !md.size_label && total_params > 0) {
        /* gguf.size_label: "NxS" with S one expert plus the shared weights for MoE models */
        if (pc->n_expert > 0) {
            char one[24];
            size_label((uint64_t)(pc->shared + pc->expert), one, sizeof one);
            snprintf(label, sizeof label, "%lldx%s", (long long)pc->n_expert, one);
        } else {
            size_label((uint64_t)total_params, label, sizeof label);
        }
        md.size_label = strdup(label);
    }
    const struct {
        const char *key, *val;
    } kv[] = {{"general.name", md.name},         {"general.version", md.version},   {"general.organization", md.org},
              {"general.finetune", md.finetune}, {"general.basename", md.basename}, {"general.size_label", md.size_label}};
    for (size_t i = 0; !st && i < sizeof kv / sizeof kv[0]; i++)
        if (kv[i].val) st = pare_meta_set_str(meta, kv[i].key, kv[i].val, strlen(kv[i].val), err);
    free(md.name), free(md.version), free(md.org), free(md.finetune), free(md.basename), free(md.size_label);
    return st;
}

/* ------------------------------------------------------------------------ weights */

/* Moves every tensor and mapping of src into dst (src is freed). */
static pare_status merge_into(pare_model *dst, pare_model *src, pare_err *err) {
    if (src->backing) {
        pare_model_free(src);
        return pare_err_set(err, PARE_EINTERNAL, "a weight reader kept state pare cannot merge");
    }
    int base = (int)dst->n_maps;
    pare_status st = PARE_OK;
    for (size_t i = 0; i < src->n_maps; i++) {
        pare_map *mp = src->maps[i];
        src->maps[i] = NULL;
        if (!st) st = pare_model_add_map(dst, mp, NULL, err); /* frees mp when it fails */
        else pare_map_free(mp);
    }
    src->n_maps = 0;
    for (size_t i = 0; !st && i < src->n_tensors; i++) {
        pare_tensor *t = &src->tensors[i];
        if (t->source >= 0) t->source += base;
        if (pare_model_find(dst, t->name))
            st = pare_err_set(err, PARE_EINPUT, "%s: tensor '%s' appears in two weight files", src->path, t->name);
        else
            st = pare_model_push_tensor(dst, t, err);
    }
    pare_model_free(src);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of folder entries starting with prefix and ending with suffix. */
static pare_status list_parts(const char *folder, const char *prefix, const char *suffix, char ***out, size_t *n,
                              pare_err *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(folder);
    if (!d) return pare_err_errno(err, "%s: cannot list the folder", folder);
    size_t cap = 0;
    pare_status st = PARE_OK;
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || !pare_str_ends_with(e->d_name, suffix)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nl = realloc(*out, cap * sizeof *nl);
            if (!nl) {
                st = pare_err_set(err, PARE_ENOMEM, "out of memory");
                break;
            }
            *out = nl;
        }
        (*out)[*n] = strdup(e->d_name);
        if (!(*out)[*n]) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
        else (*n)++;
    }
    closedir(d);
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_str);
    return st;
}

static void free_list(char **l, size_t n) {
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

/* Loads each part (sorted file names) and merges them into one model. */
static pare_status load_parts(const char *folder, char **parts, size_t n, bool st_format, pare_model **out,
                              pare_err *err) {
    pare_model *all = NULL;
    pare_status st = PARE_OK;
    for (size_t i = 0; i < n && !st; i++) {
        char *p = pare_path_join(folder, parts[i]);
        pare_model *m = NULL;
        st = p ? (st_format ? pare_safetensors_load(p, &m, err) : pare_pytorch_load(p, &m, err))
               : pare_err_set(err, PARE_ENOMEM, "out of memory");
        free(p);
        if (st) break;
        if (!all) all = m;
        else st = merge_into(all, m, err);
    }
    if (st) {
        pare_model_free(all);
        return st;
    }
    *out = all;
    return PARE_OK;
}

/* pytorch_model.bin.index.json: the shards named in weight_map (sorted), which must hold
 * exactly the tensors listed. */
static pare_status load_pt_index(const char *folder, pare_model **out, pare_err *err) {
    static const char *const name = "pytorch_model.bin.index.json";
    cJSON *idx;
    TRY(pare_hf_json_read(folder, name, true, true, &idx, err));
    const cJSON *wm = pare_hf_json_get(idx, "weight_map");
    pare_status st = cJSON_IsObject(wm) ? PARE_OK
                                         : pare_err_set(err, PARE_EINPUT, "%s/%s: no 'weight_map' object", folder, name);
    size_t n = 0, n_listed = 0;
    char **parts = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (st) break;
        n_listed++;
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/') || strcmp(e->valuestring, "..") == 0) {
            st = pare_err_set(err, PARE_EINPUT, "%s/%s: tensor '%.200s': shard must be a file name in the folder",
                              folder, name, e->string);
            break;
        }
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++) seen = strcmp(parts[i], e->valuestring) == 0;
        if (seen) continue;
        char **np = realloc(parts, (n + 1) * sizeof *np);
        if (!np || !(np[n] = strdup(e->valuestring))) {
            if (np) parts = np;
            st = pare_err_set(err, PARE_ENOMEM, "out of memory");
            break;
        }
        parts = np;
        n++;
    }
    if (!st && n > 1) qsort(parts, n, sizeof *parts, cmp_str);
    pare_model *m = NULL;
    if (!st) st = load_parts(folder, parts, n, false, &m, err);
    for (size_t i = 0; !st && i < m->n_tensors; i++)
        if (!cJSON_GetObjectItemCaseSensitive(wm, m->tensors[i].name))
            st = pare_err_set(err, PARE_EINPUT, "%s/%s: tensor '%s' is in a shard but not in weight_map", folder, name,
                              m->tensors[i].name);
    if (!st && m->n_tensors != n_listed)
        st = pare_err_set(err, PARE_EINPUT, "%s/%s: weight_map lists %zu tensors, the shards hold %zu", folder, name,
                          n_listed, m->n_tensors);
    free_list(parts, n);
    cJSON_Delete(idx);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

/* The converter's choice: model*.safetensors parts (the index's shards when there is one),
 * else pytorch_model*.bin parts (likewise). */
static pare_status load_weights(const char *folder, pare_model **out, bool *is_st, pare_err *err) {
    char *idx = pare_path_join(folder, "model.safetensors.index.json");
    FAIL_IF(!idx, PARE_ENOMEM, "out of memory");
    pare_status st;
    *is_st = true;
    if (pare_path_exists(idx)) {
        st = pare_safetensors_load_index(idx, out, err);
        free(idx);
        return st;
    }
    free(idx);
    char **parts;
    size_t n;
    TRY(list_parts(folder, "model", ".safetensors", &parts, &n, err));
    if (n) {
        st = load_parts(folder, parts, n, true, out, err);
        free_list(parts, n);
        return st;
    }
    free_list(parts, n);
    *is_st = false;
    char *ptidx = pare_path_join(folder, "pytorch_model.bin.index.json");
    FAIL_IF(!ptidx, PARE_ENOMEM, "out of memory");
    bool has_idx = pare_path_exists(ptidx);
    free(ptidx);
    if (has_idx) return load_pt_index(folder, out, err);
    TRY(list_parts(folder, "pytorch_model", ".bin", &parts, &n, err));
    st = n ? load_parts(folder, parts, n, false, out, err)
           : pare_err_set(err, PARE_EINPUT,
                          "%s: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)", folder);
    free_list(parts, n);
    return st;
}

/* ------------------------------------------------------------------------ extra tensors */

/* LlamaModel.generate_extra_tensors: Llama 3 rope scaling as a rope_freqs tensor of
 * head_dim/2 factors, computed in float32 step by step as torch does it. */
static pare_status llama3_rope_freqs(const hf_cfg *c, pare_model *m, pare_err *err) {
    const cJSON *rs = pare_hf_json_get(c->cfg, "rope_scaling");
    const cJSON *rt = cJSON_IsObject(rs) ? pare_hf_json_get(rs, "rope_type") : NULL;
    if (!cJSON_IsString(rt) || strcasecmp(rt->valuestring, "llama3") != 0) return PARE_OK;
    uint64_t n_embd = 0, n_head = 0, hd = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.embedding_length", c->arch);
    pare_meta_get_u64(c->meta, key, &n_embd);
    snprintf(key, sizeof key, "%s.attention.head_count", c->arch);
    pare_meta_get_u64(c->meta, key, &n_head);
    snprintf(key, sizeof key, "%s.attention.key_length", c->arch);
    int64_t dim = pare_meta_get_u64(c->meta, key, &hd) ? (int64_t)hd : (int64_t)(n_embd / n_head);
    const cJSON *v;
    double base = cJSON_IsNumber(v = pare_hf_json_get(c->cfg, "rope_theta")) ? v->valuedouble : 10000.0;
    double factor = cJSON_IsNumber(v = pare_hf_json_get(rs, "factor")) ? v->valuedouble : 8.0;
    double lo = cJSON_IsNumber(v = pare_hf_json_get(rs, "low_freq_factor")) ? v->valuedouble : 1.0;
    double hi = cJSON_IsNumber(v = pare_hf_json_get(rs, "high_freq_factor")) ? v->valuedouble : 4.0;
    /* The converter reads the top-level key, not rope_scaling's (its default matches 3.1). */
    double old_ctx = cJSON_IsNumber(v = pare_hf_json_get(c->cfg, "original_max_position_embeddings")) ? v->valuedouble
                                                                                                       : 8192.0;
    FAIL_IF(lo == hi, PARE_EINPUT, "%s: rope_scaling low_freq_factor equals high_freq_factor", c->path);
    int64_t n = dim / 2;
    float *f = malloc((size_t)n * sizeof *f);
    FAIL_IF(!f, PARE_ENOMEM, "out of memory");
    double lo_wl = old_ctx / lo, hi_wl = old_ctx / hi;
    for (int64_t i = 0; i < n; i++) {
        float e = (float)(2 * i) / (float)dim;
        float freq = 1.0f / powf((float)base, e);
        float wavelen = (1.0f / freq) * (float)(2 * M_PI); /* torch's rtruediv: reciprocal * scalar */
        if (wavelen < (float)hi_wl) {
            f[i] = 1.0f;
        } else if (wavelen > (float)lo_wl) {
            f[i] = (float)factor;
        } else {
            float smooth = ((1.0f / wavelen) * (float)old_ctx - (float)lo) / (float)(hi - lo);
            f[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    pare_tensor t = {0};
    pare_status st = pare_tensor_init(&t, "rope_freqs.weight", PARE_TYPE_F32, 1, &n, err);
    if (st) {
        free(f);
        return st;
    }
    pare_tensor_set_owned(&t, f, (uint64_t)n * sizeof *f);
    t.source = -1;
    TRY(pare_model_push_tensor(m, &t, err));
    /* generate_extra_tensors come first. */
    pare_tensor last = m->tensors[m->n_tensors - 1];
    memmove(&m->tensors[1], &m->tensors[0], (m->n_tensors - 1) * sizeof *m->tensors);
    m->tensors[0] = last;
    return PARE_OK;
}

/* Parameter counts of the GGUF the converter would write (general.size_label): gguf-py's
 * get_total_parameter_count, where a merged expert tensor counts once per expert. */
static bool is_embedding(const char *arch, const char *hf_name) {
    char g[256];
    return pare_hf_name_to_gguf(arch, hf_name, g, sizeof g) && strcmp(g, "token_embd.weight") == 0;
}

static hf_params gguf_param_count(const pare_model *m, const char *arch, const pare_meta *params) {
    hf_params p = {0, 0, 0, 0};
    bool has_lm_head = false;
    int64_t wte = 0;
    uint64_t n_exp = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    pare_meta_get_u64(params, key, &n_exp);
    const pare_arch *a = pare_arch_find(arch);
    bool no_lm_head = a && (a->conv.flags & PARE_CONV_DROP_LM_HEAD);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const pare_tensor *t = &m->tensors[i];
        if (pare_hf_name_skipped(arch, t->name)) continue;
        if (no_lm_head && strcmp(t->name, "lm_head.weight") == 0) continue;
        int64_t n = pare_tensor_nelements(t);
        p.total += n;
        /* per-expert HF tensors: merged into 3-D tensors of n_exp experts each */
        bool expert = a && a->conv.experts_prefix && strstr(t->name, a->conv.experts_prefix) && n_exp > 0;
        if (expert) p.expert += n; /* summed over the experts here, divided below */
        else p.shared += n;
        has_lm_head |= strcmp(t->name, "lm_head.weight") == 0;
        if (is_embedding(arch, t->name)) wte = n;
    }
    if (p.expert) {
        /* a merged tensor of n_exp experts counts size / n_exp (one expert's share) */
        p.expert /= (int64_t)n_exp;
        p.n_expert = (int64_t)n_exp;
    }
    if (a && (a->conv.flags & PARE_CONV_OUTPUT_COPY) && !has_lm_head) { /* the output copy */
        p.total += wte;
        p.shared += wte;
    }
    return p;
}

/* tie_word_embeddings (transformers' class default when absent: the table says). */
static bool cfg_tied(const cJSON *cfg, const char *arch) {
    const cJSON *t = pare_hf_json_get(cfg, "tie_word_embeddings");
    if (cJSON_IsBool(t)) return cJSON_IsTrue(t);
    const pare_arch *a = pare_arch_find(arch);
    return a && (a->conv.flags & PARE_CONV_TIED_DEFAULT);
}

/* ------------------------------------------------------------------------ load */

static pare_status hf_build(const char *folder, const cJSON *cfg, const char *cfg_path, const char *arch,
                            const pare_load_opts *lo, pare_model *m, pare_err *err) {
    /* A tied lm_head holds the embedding's values: the converter's GGUF has no output for it
     * (llama, qwen2) or writes the embedding again (gpt2). */
    if (cfg_tied(cfg, arch))
        for (size_t i = 0; i < m->n_tensors; i++)
            if (strcmp(m->tensors[i].name, "lm_head.weight") == 0) {
                pare_tensor_clear(&m->tensors[i]);
                memmove(&m->tensors[i], &m->tensors[i + 1], (m->n_tensors - i - 1) * sizeof *m->tensors);
                m->n_tensors--;
                break;
            }
    /* vocab_size sizes the token list (padded with [PADi]): it may not exceed the embedding's
     * rows, so a small config cannot make pare allocate millions of tokens. */
    const pare_tensor *emb = NULL;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (is_embedding(arch, m->tensors[i].name)) emb = &m->tensors[i];
    FAIL_IF(!emb || emb->n_dims != 2, PARE_EINPUT, "%s: the weights have no 2-D token embedding", folder);
    const cJSON *vs = pare_hf_vocab_size(cfg);
    int64_t n_vocab;
    if (vs && pare_hf_json_int(vs, &n_vocab))
        FAIL_IF(n_vocab > emb->ne[1], PARE_EINPUT, "%s: vocab_size %lld is more than the %lld rows of '%s'", cfg_path,
                (long long)n_vocab, (long long)emb->ne[1], emb->name);
    hf_cfg c = {cfg_path, cfg, arch, &m->meta};
    /* The converter's file type for the weights kept as they are (llama_ftype: 0 all F32,
     * 1 mostly F16, 32 mostly BF16), from the first matrix, as its type heuristic looks. */
    uint32_t ftype = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].n_dims >= 2) {
            ftype = m->tensors[i].type == PARE_TYPE_F16 ? 1 : m->tensors[i].type == PARE_TYPE_BF16 ? 32 : 0;
            break;
        }
    pare_meta *meta = &m->meta;
    /* Hyperparameters go into a scratch meta first: the names come before them but need the
     * parameter count, which needs rope_freqs, which needs the hyperparameters. */
    pare_meta params = {0};
    c.meta = &params;
    const pare_arch *a = pare_arch_find(arch);
    pare_status st = pare_hf_config_import(cfg_path, cfg, arch, ftype, &params, err);
    if (!st && a && (a->conv.flags & PARE_CONV_ROPE_FREQS)) st = llama3_rope_freqs(&c, m, err);
    if (!st) st = pare_meta_set_str(meta, "general.architecture", arch, strlen(arch), err);
    if (!st) st = pare_meta_set_str(meta, "general.type", "model", 5, err);
    hf_params pc = gguf_param_count(m, arch, &params);
    if (!st) st = meta_names(folder, cfg, &pc, meta, err);
    for (size_t i = 0; !st && i < params.n; i++) st = pare_meta_set_kv(meta, &params.kv[i], err);
    pare_meta_free(&params);
    if (!st) st = pare_hf_tokenizer_import(folder, arch, cfg, lo ? lo->tokenizer_pre : NULL, meta, err);
    return st;
}

/* One given weights file: a safetensors file or index, or a torch checkpoint or its index. */
static pare_status load_weights_file(const char *folder, const char *weights, pare_model **out, bool *is_st,
                                     pare_err *err) {
    const char *base = strrchr(weights, '/');
    base = base ? base + 1 : weights;
    *is_st = !strstr(base, "pytorch_model") && !pare_str_ends_with(base, ".bin") && !pare_str_ends_with(base, ".pt") &&
             !pare_str_ends_with(base, ".pth");
    if (pare_str_ends_with(base, ".json")) {
        if (*is_st) return pare_safetensors_load_index(weights, out, err);
        FAIL_IF(strcmp(base, "pytorch_model.bin.index.json") != 0, PARE_EUNSUPPORTED,
                "%s: pare reads torch indexes named pytorch_model.bin.index.json", weights);
        return load_pt_index(folder, out, err);
    }
    return *is_st ? pare_safetensors_load(weights, out, err) : pare_pytorch_load(weights, out, err);
}

static pare_status hf_load(const char *folder, const char *weights, const pare_load_opts *lo, pare_model **out,
                           pare_err *err) {
    *out = NULL;
    FAIL_IF(!pare_path_is_dir(folder), PARE_EINPUT, "%s: not a folder", folder);
    cJSON *cfg;
    TRY(pare_hf_json_read(folder, "config.json", true, true, &cfg, err));
    char *cfg_path = pare_path_join(folder, "config.json");
    const char *arch = NULL;
    pare_model *m = NULL;
    bool is_st = false;
    pare_status st = cfg_path ? cfg_arch(cfg_path, cfg, &arch, err) : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = weights ? load_weights_file(folder, weights, &m, &is_st, err) : load_weights(folder, &m, &is_st, err);
    if (!st && is_st) st = pare_hf_sort_tensors(m, err);
    /* FP8 weights with their scales become f32 tensors computed as they are read, before
     * anything looks at types or names (formats/fp8.h) */
    if (!st && is_st) st = pare_fp8_dequant_model(m, cfg, NULL, err);
    if (!st) {
        m->format = PARE_FORMAT_HF;
        m->gguf_names = false;
        free(m->path);
        free(m->arch);
        m->path = strdup(folder);
        m->arch = strdup(arch);
        pare_meta_free(&m->meta); /* safetensors __metadata__ is not model metadata */
        if (!m->path || !m->arch) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    }
    if (!st) st = hf_build(folder, cfg, cfg_path, arch, lo, m, err);
    free(cfg_path);
    cJSON_Delete(cfg);
    if (st) {
        pare_model_free(m);
        return st;
    }
    *out = m;
    return PARE_OK;
}

pare_status pare_hf_load(const char *folder, pare_model **out, pare_err *err) {
    return hf_load(folder, NULL, NULL, out, err);
}

pare_status pare_hf_load_weights(const char *folder, const char *weights, pare_model **out, pare_err *err) {
    return hf_load(folder, weights, NULL, out, err);
}

pare_status pare_hf_load_with(const char *folder, const char *weights, const pare_load_opts *lo, pare_model **out,
                              pare_err *err) {
    return hf_load(folder, weights, lo, out, err);
}
