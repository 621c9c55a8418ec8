/* formats/hf_tokenizer.c - HF tokenizers to GGUF tokenizer metadata and back.
 *
 * tokenizer.model is a sentencepiece ModelProto (protobuf): field 1 repeats SentencePiece
 * messages {1: piece (string), 2: score (float), 3: type (enum: 1 normal, 2 unknown,
 * 3 control, 4 user-defined, 5 unused, 6 byte)}; field 2 is the trainer spec and field 3 the
 * normalizer spec. Protobuf wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
 * tokenizer.json (HF tokenizers) holds a BPE model {vocab: {token: id}, merges: [...]} and
 * added_tokens [{id, content, special}].
 */
#include "formats/hf.h"
#include "formats/hf_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKENIZER_MAX_BYTES (256u << 20)
#define MAX_VOCAB (1u << 24)

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* ---- a bounded protobuf reader ---------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    const char *path;
} pb;

static pare_status pb_varint(pb *b, uint64_t *v, pare_err *err) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        FAIL_IF(b->p >= b->end, PARE_EINPUT, "%s: truncated protobuf varint", b->path);
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return PARE_OK;
        }
    }
    return pare_err_set(err, PARE_EINPUT, "%s: protobuf varint longer than 10 bytes", b->path);
}

/* Reads a field header and, for length-delimited fields, bounds the payload. */
static pare_status pb_field(pb *b, uint32_t *field, uint32_t *wire, pb *sub, pare_err *err) {
    uint64_t key;
    TRY(pb_varint(b, &key, err));
    *field = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    if (*wire == 2) {
        uint64_t len;
        TRY(pb_varint(b, &len, err));
        FAIL_IF(len > (uint64_t)(b->end - b->p), PARE_EINPUT, "%s: protobuf field %u of %llu bytes runs past the end",
                b->path, *field, (unsigned long long)len);
        *sub = (pb){b->p, b->p + len, b->path};
        b->p += len;
    }
    return PARE_OK;
}

static pare_status pb_skip(pb *b, uint32_t wire, pare_err *err) {
    uint64_t v;
    switch (wire) {
    case 0: return pb_varint(b, &v, err);
    case 1: FAIL_IF(b->end - b->p < 8, PARE_EINPUT, "%s: truncated protobuf", b->path); b->p += 8; return PARE_OK;
    case 2: return PARE_OK; /* pb_field consumed it */
    case 5: FAIL_IF(b->end - b->p < 4, PARE_EINPUT, "%s: truncated protobuf", b->path); b->p += 4; return PARE_OK;
    default: return pare_err_set(err, PARE_EINPUT, "%s: unknown protobuf wire type %u", b->path, wire);
    }
}

/* ---- a growing vocabulary ---------------------------------------------------------------- */

typedef struct {
    pare_str *tokens;
    float *scores;
    int32_t *types;
    size_t n, cap;
} vocab;

static void vocab_free(vocab *v) {
    for (size_t i = 0; i < v->n; i++) free(v->tokens[i].s);
    free(v->tokens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

static pare_status vocab_reserve(vocab *v, size_t n, pare_err *err) {
    if (n <= v->cap) return PARE_OK;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < n) cap *= 2;
    pare_str *t = realloc(v->tokens, cap * sizeof *t);
    if (t) v->tokens = t;
    float *s = realloc(v->scores, cap * sizeof *s);
    if (s) v->scores = s;
    int32_t *y = realloc(v->types, cap * sizeof *y);
    if (y) v->types = y;
    FAIL_IF(!t || !s || !y, PARE_ENOMEM, "out of memory for the vocabulary");
    v->cap = cap;
    return PARE_OK;
}

/* Sets entry i (growing with [PADi] placeholders up to it). */
static pare_status vocab_set(vocab *v, size_t i, const char *s, size_t len, float score, int32_t type, pare_err *err) {
    FAIL_IF(i >= MAX_VOCAB, PARE_EINPUT, "token id %zu is too large", i);
    TRY(vocab_reserve(v, i + 1, err));
    while (v->n <= i) {
        char pad[32];
        int k = snprintf(pad, sizeof pad, "[PAD%zu]", v->n);
        v->tokens[v->n].s = strdup(pad);
        v->tokens[v->n].len = (uint64_t)k;
        v->scores[v->n] = -1000.0f;
        v->types[v->n] = TT_UNUSED;
        FAIL_IF(!v->tokens[v->n].s, PARE_ENOMEM, "out of memory");
        v->n++;
    }
    char *c = malloc(len + 1);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    free(v->tokens[i].s);
    v->tokens[i] = (pare_str){c, len};
    v->scores[i] = score;
    v->types[i] = type;
    return PARE_OK;
}

/* ---- sentencepiece ------------------------------------------------------------------------ */

static pare_status spm_piece(pb *b, vocab *v, pare_err *err) {
    const char *piece = "";
    uint64_t plen = 0, type = 1;
    float score = 0;
    while (b->p < b->end) {
        uint32_t f, w;
        pb sub;
        TRY(pb_field(b, &f, &w, &sub, err));
        if (f == 1 && w == 2) {
            piece = (const char *)sub.p;
            plen = (uint64_t)(sub.end - sub.p);
        } else if (f == 2 && w == 5) {
            FAIL_IF(b->end - b->p < 4, PARE_EINPUT, "%s: truncated score", b->path);
            memcpy(&score, b->p, 4);
            b->p += 4;
        } else if (f == 3 && w == 0) {
            TRY(pb_varint(b, &type, err));
        } else {
            TRY(pb_skip(b, w, err));
        }
    }
    /* The converter's mapping: unknown, control, unused, byte; anything else is normal. */
    int32_t tt = type == 2 ? TT_UNKNOWN : type == 3 ? TT_CONTROL : type == 5 ? TT_UNUSED : type == 6 ? TT_BYTE : TT_NORMAL;
    return vocab_set(v, v->n, piece, (size_t)plen, score, tt, err);
}

static pare_status read_spm(const char *path, vocab *v, pare_err *err) {
    char *data = NULL;
    size_t len = 0;
    TRY(pare_read_file(path, TOKENIZER_MAX_BYTES, &data, &len, err));
    pb b = {(const uint8_t *)data, (const uint8_t *)data + len, path};
    pare_status st = PARE_OK;
    while (!st && b.p < b.end) {
        uint32_t f, w;
        pb sub;
        st = pb_field(&b, &f, &w, &sub, err);
        if (!st && f == 1 && w == 2) st = spm_piece(&sub, v, err);
        else if (!st) st = pb_skip(&b, w, err);
    }
    if (!st && v->n == 0) st = pare_err_set(err, PARE_EINPUT, "%s: no sentencepiece pieces", path);
    free(data);
    return st;
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

static pare_status read_json(const char *folder, const char *name, cJSON **out, pare_err *err) {
    *out = NULL;
    char *p = pare_path_join(folder, name);
    FAIL_IF(!p, PARE_ENOMEM, "out of memory");
    if (!pare_path_exists(p)) {
        free(p);
        return PARE_OK;
    }
    char *text = NULL;
    size_t len = 0;
    pare_status st = pare_read_file(p, TOKENIZER_MAX_BYTES, &text, &len, err);
    if (!st) {
        *out = cJSON_ParseWithLength(text, len);
        if (!*out || !cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
            st = pare_err_set(err, PARE_EINPUT, "%s: not a JSON object", p);
        }
    }
    free(text);
    free(p);
    return st;
}

/* A special token named in tokenizer_config.json: a string or {"content": ...}. */
static const char *token_content(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* ---- special tokens (gguf-py's SpecialVocab) ---------------------------------------------- */

static pare_status special_meta(const cJSON *config, const cJSON *tok_cfg, const cJSON *tok_json, size_t n_vocab,
                                pare_meta *meta, pare_err *err) {
    static const char *const types[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    const cJSON *added = tok_json ? cJSON_GetObjectItemCaseSensitive(tok_json, "added_tokens") : NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char key[64];
        long id = -1;
        snprintf(key, sizeof key, "%s_token", types[i]);
        const char *content = tok_cfg ? token_content(cJSON_GetObjectItemCaseSensitive(tok_cfg, key)) : NULL;
        const cJSON *a;
        if (content && added)
            cJSON_ArrayForEach(a, added) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content"), *aid = cJSON_GetObjectItemCaseSensitive(a, "id");
                if (cJSON_IsString(c) && cJSON_IsNumber(aid) && !strcmp(c->valuestring, content)) id = (long)aid->valuedouble;
            }
        if (id < 0) {
            snprintf(key, sizeof key, "%s_token_id", types[i]);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
            if (cJSON_IsNumber(v)) id = (long)v->valuedouble;
        }
        if (id < 0 || (size_t)id >= n_vocab) continue;
        snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", !strcmp(types[i], "sep") ? "seperator" : types[i]);
        if (!strcmp(types[i], "pad")) snprintf(key, sizeof key, "tokenizer.ggml.padding_token_id");
        if (!strcmp(types[i], "unk")) snprintf(key, sizeof key, "tokenizer.ggml.unknown_token_id");
        TRY(pare_meta_set_uint(meta, key, PARE_META_U32, (uint64_t)id, err));
    }
    static const char *const adds[] = {"bos", "eos"};
    for (size_t i = 0; tok_cfg && i < 2; i++) {
        char key[64];
        snprintf(key, sizeof key, "add_%s_token", adds[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tok_cfg, key);
        if (!cJSON_IsBool(v)) continue;
        snprintf(key, sizeof key, "tokenizer.ggml.add_%s_token", adds[i]);
        TRY(pare_meta_set_bool(meta, key, cJSON_IsTrue(v), err));
    }
    const cJSON *tmpl = tok_cfg ? cJSON_GetObjectItemCaseSensitive(tok_cfg, "chat_template") : NULL;
    if (cJSON_IsString(tmpl))
        TRY(pare_meta_set_str(meta, "tokenizer.chat_template", tmpl->valuestring, strlen(tmpl->valuestring), err));
    return PARE_OK;
}

/* added_tokens_decoder of tokenizer_config.json: control or user-defined tokens. */
static pare_status apply_added(const cJSON *tok_cfg, vocab *v, pare_err *err) {
    const cJSON *dec = tok_cfg ? cJSON_GetObjectItemCaseSensitive(tok_cfg, "added_tokens_decoder") : NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, dec) {
        char *end;
        long id = strtol(e->string ? e->string : "", &end, 10);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (*end || id < 0 || (size_t)id >= MAX_VOCAB || !cJSON_IsString(c)) continue;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        if ((size_t)id < v->n && v->types[id] == TT_CONTROL && special) continue;
        TRY(vocab_set(v, (size_t)id, c->valuestring, strlen(c->valuestring), 0.0f, special ? TT_CONTROL : TT_USER, err));
    }
    return PARE_OK;
}

/* ---- BPE from tokenizer.json -------------------------------------------------------------- */

static const char *bpe_pre_name(const cJSON *tj) {
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(tj, "pare_pre"); /* written by pare */
    if (cJSON_IsString(own)) return own->valuestring;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "ByteLevel")) return "gpt-2";
    char *s = cJSON_PrintUnformatted(pre);
    const char *name = "default";
    if (s) {
        /* The split regexes of the families llama.cpp knows, by a fragment unique to each. */
        if (strstr(s, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}")) name = "llama-bpe";
        else if (strstr(s, "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*")) name = "qwen2";
        free(s);
    }
    return name;
}

static pare_status read_bpe(const cJSON *tj, const char *path, vocab *v, pare_meta *meta, pare_err *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    FAIL_IF(!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"), PARE_EUNSUPPORTED,
            "%s: tokenizer model '%s' is not supported (BPE only)", path,
            cJSON_IsString(type) ? type->valuestring : "?");
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *e;
    FAIL_IF(!cJSON_IsObject(voc), PARE_EINPUT, "%s: model.vocab is not an object", path);
    cJSON_ArrayForEach(e, voc) {
        FAIL_IF(!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= MAX_VOCAB, PARE_EINPUT,
                "%s: bad id for token '%s'", path, e->string);
        TRY(vocab_set(v, (size_t)e->valuedouble, e->string, strlen(e->string), 0.0f, TT_NORMAL, err));
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || id->valuedouble < 0 || id->valuedouble >= MAX_VOCAB) continue;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        const char *s = c->valuestring;
        size_t n = strlen(s);
        bool looks = (n > 3 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) || !strcmp(s, "<pad>");
        TRY(vocab_set(v, (size_t)id->valuedouble, s, n, 0.0f, (special || looks) ? TT_CONTROL : TT_USER, err));
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    size_t nm = (size_t)cJSON_GetArraySize(merges), k = 0;
    pare_str *ms = calloc(nm ? nm : 1, sizeof *ms);
    FAIL_IF(!ms, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    cJSON_ArrayForEach(e, merges) {
        char *s = NULL;
        if (cJSON_IsString(e)) {
            s = strdup(e->valuestring);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) {
            const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
            if (cJSON_IsString(a) && cJSON_IsString(b)) {
                size_t n = strlen(a->valuestring) + strlen(b->valuestring) + 2;
                s = malloc(n);
                if (s) snprintf(s, n, "%s %s", a->valuestring, b->valuestring);
            }
        }
        if (!s) {
            st = pare_err_set(err, PARE_EINPUT, "%s: merge %zu is malformed", path, k);
            break;
        }
        ms[k++] = (pare_str){s, strlen(s)};
    }
    if (!st) st = pare_meta_set_str(meta, "tokenizer.ggml.model", "gpt2", 4, err);
    const char *pre = bpe_pre_name(tj);
    if (!st) st = pare_meta_set_str(meta, "tokenizer.ggml.pre", pre, strlen(pre), err);
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.tokens", PARE_META_STRING, v->tokens, v->n, err);
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.token_type", PARE_META_I32, v->types, v->n, err);
    if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.merges", PARE_META_STRING, ms, k, err);
    for (size_t i = 0; i < k; i++) free(ms[i].s);
    free(ms);
    return st;
}

pare_status pare_hf_tokenizer_meta(const char *folder, const cJSON *config, pare_meta *meta, pare_err *err) {
    cJSON *tok_cfg = NULL, *tok_json = NULL;
    vocab v = {0};
    int64_t vocab_size = 0;
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(config, "vocab_size");
    if (cJSON_IsNumber(vs) && vs->valuedouble > 0 && vs->valuedouble < MAX_VOCAB) vocab_size = (int64_t)vs->valuedouble;
    char *spm = pare_path_join(folder, "tokenizer.model");
    pare_status st = spm ? PARE_OK : pare_err_set(err, PARE_ENOMEM, "out of memory");
    if (!st) st = read_json(folder, "tokenizer_config.json", &tok_cfg, err);
    if (!st) st = read_json(folder, "tokenizer.json", &tok_json, err);
    if (!st && pare_path_exists(spm)) {
        st = read_spm(spm, &v, err);
        if (!st) st = apply_added(tok_cfg, &v, err);
        /* The converter pads the vocabulary to config.json's vocab_size with [PADi]. */
        while (!st && (int64_t)v.n < vocab_size) {
            char pad[32];
            int k = snprintf(pad, sizeof pad, "[PAD%zu]", v.n);
            st = vocab_set(&v, v.n, pad, (size_t)k, -1000.0f, TT_UNUSED, err);
        }
        if (!st) st = pare_meta_set_str(meta, "tokenizer.ggml.model", "llama", 5, err);
        if (!st) st = pare_meta_set_str(meta, "tokenizer.ggml.pre", "default", 7, err);
        if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.tokens", PARE_META_STRING, v.tokens, v.n, err);
        if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.scores", PARE_META_F32, v.scores, v.n, err);
        if (!st) st = pare_meta_set_arr(meta, "tokenizer.ggml.token_type", PARE_META_I32, v.types, v.n, err);
    } else if (!st && tok_json) {
        char *p = pare_path_join(folder, "tokenizer.json");
        st = p ? read_bpe(tok_json, p, &v, meta, err) : pare_err_set(err, PARE_ENOMEM, "out of memory");
        free(p);
    }
    /* A folder without a tokenizer converts with no tokenizer keys; llama.cpp then cannot
     * run it, but the weights are still useful. */
    if (!st && v.n) st = special_meta(config, tok_cfg, tok_json, v.n, meta, err);
    vocab_free(&v);
    cJSON_Delete(tok_cfg);
    cJSON_Delete(tok_json);
    free(spm);
    return st;
}

/* ======================================================================== writing */

typedef struct {
    uint8_t *b;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        while (cap < w->n + n) cap *= 2;
        uint8_t *nb = realloc(w->b, cap);
        if (!nb) {
            w->oom = true;
            return;
        }
        w->b = nb;
        w->cap = cap;
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void wb_varint(wbuf *w, uint64_t v) {
    uint8_t b[10];
    int k = 0;
    do {
        b[k] = v & 0x7f;
        v >>= 7;
        if (v) b[k] |= 0x80;
        k++;
    } while (v);
    wb_put(w, b, (size_t)k);
}

static void wb_key(wbuf *w, uint32_t field, uint32_t wire) { wb_varint(w, (uint64_t)field << 3 | wire); }
static void wb_bytes(wbuf *w, uint32_t field, const void *p, size_t n) {
    wb_key(w, field, 2);
    wb_varint(w, n);
    wb_put(w, p, n);
}

static pare_status write_file(const char *folder, const char *name, const void *data, size_t n, bool force,
                              pare_err *err) {
    char *p = pare_path_join(folder, name);
    FAIL_IF(!p, PARE_ENOMEM, "out of memory");
    pare_outfile *f = NULL;
    pare_status st = pare_outfile_open(p, force, NULL, 0, &f, err);
    if (!st) st = pare_outfile_write(f, data, n, err);
    if (!st) st = pare_outfile_commit(f, err);
    pare_outfile_free(f);
    free(p);
    return st;
}

static pare_status write_json(const char *folder, const char *name, cJSON *j, bool force, pare_err *err) {
    char *s = cJSON_Print(j);
    FAIL_IF(!s, PARE_ENOMEM, "out of memory");
    pare_status st = write_file(folder, name, s, strlen(s), force, err);
    free(s);
    return st;
}

static pare_status write_spm(const pare_meta *meta, const char *folder, bool force, pare_err *err) {
    const pare_kv *tok = pare_meta_get(meta, "tokenizer.ggml.tokens");
    const pare_kv *sc = pare_meta_get(meta, "tokenizer.ggml.scores");
    const pare_kv *ty = pare_meta_get(meta, "tokenizer.ggml.token_type");
    wbuf w = {0};
    const pare_str *s = tok->arr;
    for (uint64_t i = 0; i < tok->n; i++) {
        wbuf piece = {0};
        double score = 0;
        int64_t t = TT_NORMAL;
        if (sc) pare_kv_arr_f64(sc, i, &score);
        if (ty) pare_kv_arr_i64(ty, i, &t);
        float f = (float)score;
        wb_bytes(&piece, 1, s[i].s, (size_t)s[i].len);
        wb_key(&piece, 2, 5);
        wb_put(&piece, &f, 4);
        if (t != TT_NORMAL) {
            wb_key(&piece, 3, 0);
            wb_varint(&piece, (uint64_t)t);
        }
        wb_bytes(&w, 1, piece.b, piece.n);
        w.oom |= piece.oom;
        free(piece.b);
    }
    /* trainer_spec: model_type BPE (2), vocab_size, byte_fallback; normalizer_spec: identity,
     * add_dummy_prefix, escape whitespaces - what llama's sentencepiece models say. */
    wbuf tr = {0}, nz = {0};
    wb_key(&tr, 3, 0); wb_varint(&tr, 2);
    wb_key(&tr, 4, 0); wb_varint(&tr, tok->n);
    wb_key(&tr, 35, 0); wb_varint(&tr, 1);
    wb_bytes(&nz, 1, "identity", 8);
    wb_key(&nz, 3, 0); wb_varint(&nz, 1);
    wb_key(&nz, 4, 0); wb_varint(&nz, 0);
    wb_key(&nz, 5, 0); wb_varint(&nz, 1);
    wb_bytes(&w, 2, tr.b, tr.n);
    wb_bytes(&w, 3, nz.b, nz.n);
    bool oom = w.oom || tr.oom || nz.oom;
    free(tr.b);
    free(nz.b);
    pare_status st = oom ? pare_err_set(err, PARE_ENOMEM, "out of memory") : write_file(folder, "tokenizer.model", w.b, w.n, force, err);
    free(w.b);
    return st;
}

static pare_status write_bpe(const pare_meta *meta, const char *folder, bool force, pare_err *err) {
    const pare_kv *tok = pare_meta_get(meta, "tokenizer.ggml.tokens");
    const pare_kv *ty = pare_meta_get(meta, "tokenizer.ggml.token_type");
    const pare_kv *mg = pare_meta_get(meta, "tokenizer.ggml.merges");
    cJSON *j = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *voc = cJSON_AddObjectToObject(model, "vocab"), *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    const pare_str *s = tok->arr;
    for (uint64_t i = 0; i < tok->n; i++) {
        int64_t t = TT_NORMAL;
        if (ty) pare_kv_arr_i64(ty, i, &t);
        if (t == TT_CONTROL || t == TT_USER) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", s[i].s);
            cJSON_AddBoolToObject(a, "special", t == TT_CONTROL);
            cJSON_AddItemToArray(added, a);
        }
        cJSON_AddNumberToObject(voc, s[i].s, (double)i);
    }
    const pare_str *m = mg ? mg->arr : NULL;
    for (uint64_t i = 0; mg && i < mg->n; i++) cJSON_AddItemToArray(merges, cJSON_CreateString(m[i].s));
    const char *pre = pare_meta_get_str(meta, "tokenizer.ggml.pre");
    cJSON *pt = cJSON_AddObjectToObject(j, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "ByteLevel");
    cJSON_AddBoolToObject(pt, "add_prefix_space", 0);
    /* Other pre-tokenizers are recorded by name for pare's own round trip. */
    if (pre && strcmp(pre, "gpt-2")) cJSON_AddStringToObject(j, "pare_pre", pre);
    pare_status st = write_json(folder, "tokenizer.json", j, force, err);
    cJSON_Delete(j);
    return st;
}

pare_status pare_hf_write_tokenizer(const pare_meta *meta, const char *folder, bool force, pare_err *err) {
    const char *model = pare_meta_get_str(meta, "tokenizer.ggml.model");
    const pare_kv *tok = pare_meta_get(meta, "tokenizer.ggml.tokens");
    if (!model || !tok || tok->type != PARE_META_ARRAY || tok->elem_type != PARE_META_STRING) return PARE_OK;
    cJSON *tc = cJSON_CreateObject(), *sm = cJSON_CreateObject();
    bool b;
    if (pare_meta_get_bool(meta, "tokenizer.ggml.add_bos_token", &b)) cJSON_AddBoolToObject(tc, "add_bos_token", b);
    if (pare_meta_get_bool(meta, "tokenizer.ggml.add_eos_token", &b)) cJSON_AddBoolToObject(tc, "add_eos_token", b);
    static const char *const sp[][2] = {{"bos", "bos_token_id"}, {"eos", "eos_token_id"}, {"unk", "unknown_token_id"},
                                        {"pad", "padding_token_id"}};
    const pare_str *s = tok->arr;
    for (size_t i = 0; i < 4; i++) {
        char key[64], name[32];
        uint64_t id;
        snprintf(key, sizeof key, "tokenizer.ggml.%s", sp[i][1]);
        if (!pare_meta_get_u64(meta, key, &id) || id >= tok->n) continue;
        snprintf(name, sizeof name, "%s_token", sp[i][0]);
        cJSON_AddStringToObject(tc, name, s[id].s);
        cJSON_AddStringToObject(sm, name, s[id].s);
    }
    const char *tmpl = pare_meta_get_str(meta, "tokenizer.chat_template");
    if (tmpl) cJSON_AddStringToObject(tc, "chat_template", tmpl);
    bool spm = !strcmp(model, "llama");
    if (spm) cJSON_AddStringToObject(tc, "tokenizer_class", "LlamaTokenizer");
    pare_status st = write_json(folder, "tokenizer_config.json", tc, force, err);
    if (!st) st = write_json(folder, "special_tokens_map.json", sm, force, err);
    cJSON_Delete(tc);
    cJSON_Delete(sm);
    if (!st) st = spm ? write_spm(meta, folder, force, err) : write_bpe(meta, folder, force, err);
    return st;
}

/* config.json from GGUF metadata. */
pare_status pare_hf_write_folder_meta(const pare_model *m, const char *folder, bool force, pare_err *err) {
    const pare_meta *mt = &m->meta;
    const char *a = m->arch;
    FAIL_IF(!a, PARE_EUNSUPPORTED, "%s: unknown architecture: cannot write config.json", m->path);
    char key[128];
    uint64_t u;
    double d;
    cJSON *j = cJSON_CreateObject();
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
    bool gpt2 = !strcmp(a, "gpt2");
    cJSON *arr = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arr, cJSON_CreateString(gpt2 ? "GPT2LMHeadModel" : !strcmp(a, "qwen2") ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", a);
    if (pare_meta_get_u64(mt, K("embedding_length"), &u)) cJSON_AddNumberToObject(j, gpt2 ? "n_embd" : "hidden_size", (double)u);
    if (pare_meta_get_u64(mt, K("feed_forward_length"), &u)) cJSON_AddNumberToObject(j, gpt2 ? "n_inner" : "intermediate_size", (double)u);
    if (pare_meta_get_u64(mt, K("block_count"), &u)) cJSON_AddNumberToObject(j, gpt2 ? "n_layer" : "num_hidden_layers", (double)u);
    if (pare_meta_get_u64(mt, K("attention.head_count"), &u)) cJSON_AddNumberToObject(j, gpt2 ? "n_head" : "num_attention_heads", (double)u);
    if (pare_meta_get_u64(mt, K("attention.head_count_kv"), &u)) cJSON_AddNumberToObject(j, "num_key_value_heads", (double)u);
    if (pare_meta_get_f64(mt, K("attention.layer_norm_rms_epsilon"), &d)) cJSON_AddNumberToObject(j, "rms_norm_eps", d);
    if (pare_meta_get_f64(mt, K("attention.layer_norm_epsilon"), &d)) cJSON_AddNumberToObject(j, "layer_norm_epsilon", d);
    if (pare_meta_get_f64(mt, K("rope.freq_base"), &d)) cJSON_AddNumberToObject(j, "rope_theta", d);
    if (pare_meta_get_u64(mt, K("context_length"), &u)) cJSON_AddNumberToObject(j, gpt2 ? "n_positions" : "max_position_embeddings", (double)u);
    const char *rst = pare_meta_get_str(mt, K("rope.scaling.type"));
    if (rst && !strcmp(rst, "linear") && pare_meta_get_f64(mt, K("rope.scaling.factor"), &d)) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "linear");
        cJSON_AddNumberToObject(rs, "factor", d);
    }
    const pare_kv *tok = pare_meta_get(mt, "tokenizer.ggml.tokens");
    if (!pare_meta_get_u64(mt, K("vocab_size"), &u) && tok) u = tok->n;
    if (tok || pare_meta_get(mt, K("vocab_size"))) cJSON_AddNumberToObject(j, "vocab_size", (double)u);
    bool tied = !pare_model_find(m, m->gguf_names ? "output.weight" : "lm_head.weight");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", gpt2 ? 1 : tied);
    cJSON *gen = cJSON_CreateObject();
    if (pare_meta_get_u64(mt, "tokenizer.ggml.bos_token_id", &u)) {
        cJSON_AddNumberToObject(j, "bos_token_id", (double)u);
        cJSON_AddNumberToObject(gen, "bos_token_id", (double)u);
    }
    if (pare_meta_get_u64(mt, "tokenizer.ggml.eos_token_id", &u)) {
        cJSON_AddNumberToObject(j, "eos_token_id", (double)u);
        cJSON_AddNumberToObject(gen, "eos_token_id", (double)u);
    }
    if (!gpt2) cJSON_AddStringToObject(j, "hidden_act", "silu");
#undef K
    pare_status st = write_json(folder, "config.json", j, force, err);
    if (!st) st = write_json(folder, "generation_config.json", gen, force, err);
    cJSON_Delete(j);
    cJSON_Delete(gen);
    if (!st) st = pare_hf_write_tokenizer(mt, folder, force, err);
    return st;
}
