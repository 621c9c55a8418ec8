/* formats/formats.c - format detection and the load-anything entry points. */
#include "formats/formats.h"

#include "formats/gguf.h"
#include "formats/hf.h"
#include "formats/pytorch.h"
#include "formats/safetensors.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pare_format_name(pare_format f) {
    switch (f) {
    case PARE_FORMAT_GGUF: return "gguf";
    case PARE_FORMAT_SAFETENSORS: return "safetensors";
    case PARE_FORMAT_PYTORCH: return "pytorch";
    case PARE_FORMAT_HF: return "hf-folder";
    default: return "unknown";
    }
}

pare_format pare_format_detect(const char *path) {
    if (pare_path_is_dir(path)) {
        char *cfg = pare_path_join(path, "config.json");
        bool ok = cfg && pare_path_exists(cfg);
        free(cfg);
        return ok ? PARE_FORMAT_HF : PARE_FORMAT_UNKNOWN;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return PARE_FORMAT_UNKNOWN;
    unsigned char b[16] = {0};
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0) return PARE_FORMAT_GGUF;
    if (n >= 4 && memcmp(b, "PK\3\4", 4) == 0) return PARE_FORMAT_PYTORCH;
    if (n >= 9 && b[8] == '{') return PARE_FORMAT_SAFETENSORS;
    if (n >= 1 && b[0] == '{' && pare_str_ends_with(path, ".json")) return PARE_FORMAT_SAFETENSORS;
    /* A legacy torch file starts with a pickle (0x80 PROTO); let the reader explain. */
    if (n >= 1 && b[0] == 0x80) return PARE_FORMAT_PYTORCH;
    return PARE_FORMAT_UNKNOWN;
}

pare_status pare_model_load(const char *path, pare_model **out, pare_err *err) {
    return pare_model_load_with(path, NULL, out, err);
}

pare_status pare_model_load_gguf(const char *path, pare_model **out, pare_err *err) {
    return pare_model_load_gguf_with(path, NULL, out, err);
}

pare_status pare_model_load_with(const char *path, const pare_load_opts *lo, pare_model **out, pare_err *err) {
    *out = NULL;
    FAIL_IF(!pare_path_exists(path), PARE_EINPUT, "%s: no such file or folder", path);
    switch (pare_format_detect(path)) {
    case PARE_FORMAT_GGUF: return pare_gguf_load(path, out, err);
    case PARE_FORMAT_PYTORCH: return pare_pytorch_load(path, out, err);
    case PARE_FORMAT_HF: return pare_hf_load_with(path, NULL, lo, out, err);
    case PARE_FORMAT_SAFETENSORS:
        if (pare_str_ends_with(path, ".json")) return pare_safetensors_load_index(path, out, err);
        return pare_safetensors_load(path, out, err);
    default:
        if (pare_path_is_dir(path))
            return pare_err_set(err, PARE_EINPUT, "%s: a folder without config.json is not a model folder", path);
        return pare_err_set(err, PARE_EINPUT,
                            "%s: not a model file pare knows (GGUF, safetensors, PyTorch zip, HF folder)", path);
    }
}

pare_status pare_model_load_gguf_with(const char *path, const pare_load_opts *lo, pare_model **out, pare_err *err) {
    *out = NULL;
    pare_format f = pare_format_detect(path);
    if (f == PARE_FORMAT_SAFETENSORS || f == PARE_FORMAT_PYTORCH) {
        /* A weights file inside an HF folder: name its tensors with the folder's config. */
        char *copy = strdup(path);
        FAIL_IF(!copy, PARE_ENOMEM, "out of memory");
        char *dir = dirname(copy);
        char *cfg = pare_path_join(dir, "config.json");
        bool has_cfg = cfg && pare_path_exists(cfg);
        free(cfg);
        if (!has_cfg) {
            free(copy);
            pare_status st = pare_model_load(path, out, err);
            if (st) return st;
            pare_model_free(*out);
            *out = NULL;
            return pare_err_set(err, PARE_EUNSUPPORTED,
                                "%s: no config.json beside it, so its tensors cannot be given GGUF names "
                                "(name the model folder instead)", path);
        }
        pare_status st = pare_hf_load_with(dir, path, lo, out, err);
        free(copy);
        if (st) return st;
    } else {
        TRY(pare_model_load_with(path, lo, out, err));
    }
    if (!(*out)->gguf_names) {
        pare_status st = pare_hf_to_gguf(*out, err);
        if (st) {
            pare_model_free(*out);
            *out = NULL;
            return st;
        }
    }
    return PARE_OK;
}
