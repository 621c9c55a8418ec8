/* formats/hf_tokenizer.c - tokenizers of HF folders: sentencepiece tokenizer.model (a small
 * bounded protobuf reader and writer, format in hf.h) and tokenizer.json, turned into the
 * tokenizer.ggml.* metadata convert_hf_to_gguf.py writes, and back.
 *
 * Which vocabulary the converter builds (the table's .conv.tok flags, PARE_TOK_*):
 *   llama   tokenizer.model -> "llama" (_set_vocab_sentencepiece); else a tokenizer.json BPE
 *           with byte fallback -> "llama" (LlamaHfVocab); else tokenizer.json -> "gpt2"
 *   qwen2   tokenizer.model -> "llama"; else tokenizer.json -> "gpt2"
 *   gemma, gemma2, phi3   tokenizer.model only (Phi-3 with its own added-token rules; Gemma
 *           adds add_space_prefix false, Gemma its fixed eot id 107)
 *   others  tokenizer.json -> "gpt2" (Model.set_vocab)
 * then gguf-py's SpecialVocab: merges (gpt2), special token ids (tokenizer_config.json's
 * {bos,eos,unk,sep,pad,cls,mask}_token resolved through tokenizer.json's added_tokens, then
 * config.json's *_token_id; the first found wins), add_bos/add_eos, chat_template.
 *
 * tokenizer.ggml.pre: the converter encodes a fixed text with the tokenizer and looks the
 * hash of the ids up in a table. pare cannot run the tokenizer, so it reads the pre-tokenizer
 * of tokenizer.json instead: GPT-2's ByteLevel regex -> "gpt-2" (or the family's own name for
 * it, .conv.bpe_pre: "phi-2"); a Split with Llama 3's regex
 * followed by ByteLevel -> "llama-bpe"; with Qwen2's regex -> "qwen2". Anything else is
 * PARE_EUNSUPPORTED, as the converter refuses unknown hashes. (Tokenizers that share a regex
 * but differ elsewhere, e.g. "smaug-bpe", get the first name.)
 *
 * Not reproduced: added tokens that are not "normalized" are re-encoded by the converter
 * through the tokenizer (pare keeps their text); a list-valued chat_template keeps the
 * template names in file order (the converter goes through a Python set).
 */
#include "formats/hf_impl.h"

#include "core/arch.h"
#include "formats/hf_pretok.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pare_hf_special_names[HF_N_SPECIAL] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
const char *const pare_hf_special_keys[HF_N_SPECIAL] = {
    "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id"};

#define SP_SCORE_PAD (-10000.0f)  /* score of the [PADi] slots the converter fills in */
#define SP_SCORE_ADDED (-1000.0f) /* score of added tokens */

/* ------------------------------------------------------------------------ vocabulary */

typedef struct {
    int64_t n;
    pare_str *tok;    /* n owned strings */
    float *score;     /* n, or NULL (gpt2 vocabularies have no scores) */
    int32_t *type;    /* n token types */
    pare_str *merges; /* gpt2 */
    int64_t n_merges;
    const char *model; /* "llama" or "gpt2" */
    char pre[32];
} hf_vocab;

static void vocab_free(hf_vocab *v) {
    for (int64_t i = 0; v->tok && i < v->n; i++) free(v->tok[i].s);
    for (int64_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i].s);
    free(v->tok);
    free(v->score);
    free(v->type);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

static pare_status vocab_alloc(hf_vocab *v, int64_t n, bool scores, pare_err *err) {
    v->n = n;
    v->tok = calloc((size_t)n ? (size_t)n : 1, sizeof *v->tok);
    v->type = calloc((size_t)n ? (size_t)n : 1, sizeof *v->type);
    v->score = scores ? calloc((size_t)n ? (size_t)n : 1, sizeof *v->score) : NULL;
    FAIL_IF(!v->tok || !v->type || (scores && !v->score), PARE_ENOMEM, "out of memory for a vocabulary of %lld tokens",
            (long long)n);
    return PARE_OK;
}

static pare_status set_tok(hf_vocab *v, int64_t i, const char *s, size_t len, pare_err *err) {
    char *c = malloc(len + 1);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    free(v->tok[i].s);
    v->tok[i].s = c;
    v->tok[i].len = len;
    return PARE_OK;
}

static pare_status set_pad(hf_vocab *v, int64_t i, pare_err *err) {
    char b[40];
    int n = snprintf(b, sizeof b, "[PAD%lld]", (long long)i);
    v->type[i] = HF_TOK_UNUSED;
    if (v->score) v->score[i] = SP_SCORE_PAD;
    return set_tok(v, i, b, (size_t)n, err);
}

/* Model.does_token_look_special. */
static bool looks_special(const char *t) {
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(t, exact[i]) == 0) return true;
    size_t n = strlen(t);
    if (n >= 4 && strncmp(t, "<|", 2) == 0 && strcmp(t + n - 2, "|>") == 0) return true;
    /* "<｜" ... "｜>" (fullwidth vertical bar U+FF5C, deepseek-coder) */
    if (n >= 8 && strncmp(t, "<\xef\xbd\x9c", 4) == 0 && strcmp(t + n - 4, "\xef\xbd\x9c>") == 0) return true;
    return n >= 8 && strncmp(t, "<unused", 7) == 0 && t[n - 1] == '>';
}

/* token.replace("\u2581", " ") for user-defined added tokens. */
static pare_status set_user_tok(hf_vocab *v, int64_t i, const char *s, pare_err *err) {
    size_t n = strlen(s), o = 0;
    char *c = malloc(n + 1);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    for (size_t k = 0; k < n;) {
        if (k + 3 <= n && memcmp(s + k, "\xe2\x96\x81", 3) == 0) {
            c[o++] = ' ';
            k += 3;
        } else {
            c[o++] = s[k++];
        }
    }
    c[o] = 0;
    free(v->tok[i].s);
    v->tok[i].s = c;
    v->tok[i].len = o;
    return PARE_OK;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xc2)) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return false;
        if (k == 3) {
            uint32_t cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[i + 1] & 0x3f) << 6);
            if (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000)) return false;
        }
        if (k == 4) {
            uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3f) << 12);
            if (cp < 0x10000 || cp > 0x10ffff) return false;
        }
        i += k;
    }
    return true;
}

/* ------------------------------------------------------------------------ protobuf reader */

typedef struct {
    const uint8_t *p, *end, *start;
} pb_in;

static bool pb_varint(pb_in *b, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 70; s += 7) {
        if (b->p >= b->end) return false;
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false; /* more than 10 bytes */
}

/* Reads one field's key and, for length-delimited fields, its bounded payload in *sub. */
static bool pb_field(pb_in *b, uint32_t *field, int *wire, pb_in *sub, uint64_t *val) {
    uint64_t key;
    if (!pb_varint(b, &key) || key >> 32 || key >> 3 == 0) return false; /* field 0 is invalid */
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    switch (*wire) {
    case 0:
        return pb_varint(b, val);
    case 1:
        if (b->end - b->p < 8) return false;
        *val = 0;
        for (int i = 7; i >= 0; i--) *val = (*val << 8) | b->p[i];
        b->p += 8;
        return true;
    case 2: {
        uint64_t n;
        if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return false;
        sub->start = b->start;
        sub->p = b->p;
        sub->end = b->p + n;
        b->p += n;
        return true;
    }
    case 5:
        if (b->end - b->p < 4) return false;
        *val = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
        b->p += 4;
        return true;
    default:
        return false; /* groups (3, 4) are not used by sentencepiece */
    }
}

typedef struct {
    const uint8_t *s;
    uint32_t len;
    float score;
    int type;
} sp_piece;

typedef struct {
    sp_piece *pieces;
    int64_t n;
} sp_model;

static pare_status sp_parse_piece(const char *path, int64_t idx, pb_in *b, sp_piece *pc, pare_err *err) {
    pc->type = HF_TOK_NORMAL;
    pc->s = NULL;
    while (b->p < b->end) {
        size_t at = (size_t)(b->p - b->start);
        uint32_t f;
        int w;
        pb_in sub;
        uint64_t v = 0;
        FAIL_IF(!pb_field(b, &f, &w, &sub, &v), PARE_EINPUT,
                "%s: piece %lld: field at byte %zu is truncated or runs past the end of its message", path,
                (long long)idx, at);
        if (f == 1) {
            FAIL_IF(w != 2, PARE_EINPUT, "%s: piece %lld: the piece text has wire type %d", path, (long long)idx, w);
            FAIL_IF(sub.end - sub.p > UINT32_MAX, PARE_EINPUT, "%s: piece %lld is too long", path, (long long)idx);
            pc->s = sub.p;
            pc->len = (uint32_t)(sub.end - sub.p);
        } else if (f == 2) {
            FAIL_IF(w != 5, PARE_EINPUT, "%s: piece %lld: the score has wire type %d", path, (long long)idx, w);
            uint32_t u = (uint32_t)v;
            memcpy(&pc->score, &u, 4);
        } else if (f == 3) {
            FAIL_IF(w != 0, PARE_EINPUT, "%s: piece %lld: the type has wire type %d", path, (long long)idx, w);
            /* proto2: an enum value the schema does not know leaves the default (NORMAL). */
            if (v >= 1 && v <= 6) pc->type = (int)v;
        }
    }
    FAIL_IF(!pc->s || !pc->len, PARE_EINPUT, "%s: piece %lld has no text", path, (long long)idx);
    FAIL_IF(!utf8_valid(pc->s, pc->len), PARE_EINPUT, "%s: piece %lld is not valid UTF-8", path, (long long)idx);
    return PARE_OK;
}

/* Parses a ModelProto's pieces (pointing into buf, which must outlive the model). */
static pare_status sp_parse(const char *path, const uint8_t *buf, size_t len, sp_model *sp, pare_err *err) {
    memset(sp, 0, sizeof *sp);
    pb_in b = {buf, buf + len, buf};
    int64_t n = 0;
    /* First pass: validate the top-level framing and count the pieces. */
    while (b.p < b.end) {
        size_t at = (size_t)(b.p - buf);
        uint32_t f;
        int w;
        pb_in sub;
        uint64_t v;
        FAIL_IF(!pb_field(&b, &f, &w, &sub, &v), PARE_EINPUT,
                "%s: field at byte %zu is truncated or its length runs past the end of the file (%zu bytes)", path, at,
                len);
        if (f == 1) {
            FAIL_IF(w != 2, PARE_EINPUT, "%s: piece at byte %zu has wire type %d", path, at, w);
            FAIL_IF(++n > PARE_HF_MAX_VOCAB, PARE_EINPUT, "%s: more than %d pieces", path, PARE_HF_MAX_VOCAB);
        }
    }
    FAIL_IF(n == 0, PARE_EINPUT, "%s: no pieces (not a sentencepiece model)", path);
    sp->pieces = calloc((size_t)n, sizeof *sp->pieces);
    FAIL_IF(!sp->pieces, PARE_ENOMEM, "%s: out of memory for %lld pieces", path, (long long)n);
    b.p = buf;
    while (b.p < b.end) {
        uint32_t f;
        int w;
        pb_in sub;
        uint64_t v;
        pb_field(&b, &f, &w, &sub, &v);
        if (f == 1) {
            TRY(sp_parse_piece(path, sp->n, &sub, &sp->pieces[sp->n], err));
            sp->n++;
        }
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------------ sentencepiece vocab */

/* _create_vocab_sentencepiece: vocab_size slots ([PADi] unused), the pieces, then
 * added_tokens.json and tokenizer_config.json's added_tokens_decoder over them. */
static pare_status vocab_from_sp(const char *folder, const char *path, const sp_model *sp, int64_t vocab_size,
                                 const cJSON *tokcfg, bool phi3, hf_vocab *v, pare_err *err) {
    if (vocab_size <= 0) vocab_size = sp->n;
    FAIL_IF(sp->n > vocab_size, PARE_EINPUT, "%s: %lld pieces, more than config.json's vocab_size %lld", path,
            (long long)sp->n, (long long)vocab_size);
    TRY(vocab_alloc(v, vocab_size, true, err));
    v->model = "llama";
    strcpy(v->pre, "default");
    for (int64_t i = 0; i < vocab_size; i++) TRY(set_pad(v, i, err));
    for (int64_t i = 0; i < sp->n; i++) {
        const sp_piece *p = &sp->pieces[i];
        TRY(set_tok(v, i, (const char *)p->s, p->len, err));
        v->score[i] = p->score;
        /* The converter asks IsUnknown / IsControl / IsUnused / IsByte: user-defined is normal. */
        v->type[i] = p->type == HF_TOK_USER_DEFINED ? HF_TOK_NORMAL : p->type;
    }
    cJSON *added;
    TRY(pare_hf_json_read(folder, "added_tokens.json", false, true, &added, err));
    const cJSON *e;
    pare_status st = PARE_OK;
    cJSON_ArrayForEach(e, added) {
        int64_t id;
        if (!pare_hf_json_int(e, &id) || id < 0) {
            st = pare_err_set(err, PARE_EINPUT, "%s/added_tokens.json: '%.100s' has no valid token id", folder, e->string);
            break;
        }
        if (id >= vocab_size) continue; /* the converter warns and ignores it */
        if ((st = set_tok(v, id, e->string, strlen(e->string), err))) break;
        v->score[id] = SP_SCORE_ADDED;
        v->type[id] = HF_TOK_USER_DEFINED;
    }
    cJSON_Delete(added);
    TRY(st);
    const cJSON *dec = tokcfg ? pare_hf_json_get(tokcfg, "added_tokens_decoder") : NULL;
    cJSON_ArrayForEach(e, (cJSON_IsObject(dec) ? dec : NULL)) {
        char *end;
        long long id = strtoll(e->string, &end, 10);
        const cJSON *content = cJSON_IsObject(e) ? pare_hf_json_get(e, "content") : NULL;
        FAIL_IF(*end || end == e->string || id < 0 || id >= vocab_size || !cJSON_IsString(content), PARE_EINPUT,
                "%s/tokenizer_config.json: added_tokens_decoder entry '%.40s' is not a token id below %lld with a "
                "content",
                folder, e->string, (long long)vocab_size);
        if (phi3) {
            /* Phi3MiniModel.set_vocab: control when "special", user-defined otherwise, the
             * text as it is */
            v->type[id] = cJSON_IsTrue(pare_hf_json_get(e, "special")) ? HF_TOK_CONTROL : HF_TOK_USER_DEFINED;
            TRY(set_tok(v, id, content->valuestring, strlen(content->valuestring), err));
        } else if (cJSON_IsTrue(pare_hf_json_get(e, "special")) || looks_special(content->valuestring)) {
            v->type[id] = HF_TOK_CONTROL;
            TRY(set_tok(v, id, content->valuestring, strlen(content->valuestring), err));
        } else {
            v->type[id] = HF_TOK_USER_DEFINED;
            TRY(set_user_tok(v, id, content->valuestring, err));
        }
        v->score[id] = SP_SCORE_ADDED;
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------------ tokenizer.json */

typedef struct {
    char *path;
    cJSON *j;
    const cJSON *model; /* "model" */
    const cJSON *vocab; /* model.vocab: {token: id} */
    const cJSON *added; /* "added_tokens": [{id, content, special}], or NULL */
    const char *arch;      /* the GGUF architecture, for the pre-tokenizer's name */
    const char *force_pre; /* --tokenizer-pre, or NULL */
} hf_tokjson;

static void tokjson_free(hf_tokjson *t) {
    cJSON_Delete(t->j);
    free(t->path);
    memset(t, 0, sizeof *t);
}

static pare_status tokjson_load(const char *folder, hf_tokjson *t, pare_err *err) {
    memset(t, 0, sizeof *t);
    TRY(pare_hf_json_read(folder, "tokenizer.json", false, true, &t->j, err));
    if (!t->j) return PARE_OK;
    t->path = pare_path_join(folder, "tokenizer.json");
    FAIL_IF(!t->path, PARE_ENOMEM, "out of memory");
    t->model = pare_hf_json_get(t->j, "model");
    FAIL_IF(!cJSON_IsObject(t->model), PARE_EINPUT, "%s: no 'model' object", t->path);
    t->vocab = pare_hf_json_get(t->model, "vocab");
    FAIL_IF(!cJSON_IsObject(t->vocab), PARE_EUNSUPPORTED, "%s: the model has no token -> id 'vocab' object (pare reads BPE tokenizers)",
            t->path);
    t->added = pare_hf_json_get(t->j, "added_tokens");
    FAIL_IF(t->added && !cJSON_IsArray(t->added), PARE_EINPUT, "%s: 'added_tokens' is not a list", t->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, t->vocab) {
        int64_t id;
        FAIL_IF(!pare_hf_json_int(e, &id) || id < 0 || id >= PARE_HF_MAX_VOCAB, PARE_EINPUT,
                "%s: token '%.100s' has no valid id (0 to %d)", t->path, e->string, PARE_HF_MAX_VOCAB - 1);
    }
    cJSON_ArrayForEach(e, t->added) {
        int64_t id;
        const cJSON *c = cJSON_IsObject(e) ? pare_hf_json_get(e, "content") : NULL;
        FAIL_IF(!cJSON_IsString(c) || !pare_hf_json_int(pare_hf_json_get(e, "id"), &id) || id < 0 ||
                    id >= PARE_HF_MAX_VOCAB,
                PARE_EINPUT, "%s: an added token lacks a content or a valid id", t->path);
    }
    return PARE_OK;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = o ? pare_hf_json_get(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* tokenizer.ggml.pre: named from the pre_tokenizer / normalizer definition by the table of
 * formats/hf_pretok.c (llama.cpp's converter hashes the tokens of a test string instead), or
 * the name the user forced. */
static pare_status tokjson_pre(const hf_tokjson *t, char *pre, size_t cap, pare_err *err) {
    if (t->force_pre) {
        FAIL_IF(!pare_pretok_find(t->force_pre), PARE_EUSAGE,
                "--tokenizer-pre '%.60s' is not a pre-tokenizer pare implements (see pare tokenize --help)",
                t->force_pre);
        snprintf(pre, cap, "%s", t->force_pre);
        return PARE_OK;
    }
    return pare_hf_pretok_name(t->j, t->arch, t->path, pre, cap, err);
}

/* Model.get_vocab_base + _set_vocab_gpt2's token list: ids from the model vocabulary and the
 * added tokens, [PADi] where none, added tokens control or user-defined. */
static pare_status vocab_from_tokjson(const hf_tokjson *t, int64_t vocab_size, hf_vocab *v, pare_err *err) {
    int64_t max_id = -1, n_distinct = 0;
    const cJSON *e;
    pare_strset *seen = pare_strset_new(1024);
    FAIL_IF(!seen, PARE_ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, t->vocab) {
        int64_t id = (int64_t)e->valuedouble;
        max_id = id > max_id ? id : max_id;
        n_distinct += pare_strset_add(seen, e->string, strlen(e->string)) == 1;
    }
    cJSON_ArrayForEach(e, t->added) {
        const char *c = json_str(e, "content");
        int64_t id = (int64_t)pare_hf_json_get(e, "id")->valuedouble;
        max_id = id > max_id ? id : max_id;
        n_distinct += pare_strset_add(seen, c, strlen(c)) == 1;
    }
    pare_strset_free(seen);
    if (vocab_size <= 0) vocab_size = n_distinct;
    FAIL_IF(max_id >= vocab_size, PARE_EINPUT, "%s: token id %lld is not below the vocabulary size %lld", t->path,
            (long long)max_id, (long long)vocab_size);
    TRY(vocab_alloc(v, vocab_size, false, err));
    v->model = "gpt2";
    TRY(tokjson_pre(t, v->pre, sizeof v->pre, err));
    /* type 0 marks a slot not filled yet */
    cJSON_ArrayForEach(e, t->vocab) {
        int64_t id = (int64_t)e->valuedouble;
        TRY(set_tok(v, id, e->string, strlen(e->string), err));
        v->type[id] = HF_TOK_NORMAL;
    }
    cJSON_ArrayForEach(e, t->added) {
        const char *c = json_str(e, "content");
        int64_t id = (int64_t)pare_hf_json_get(e, "id")->valuedouble;
        if (cJSON_IsTrue(pare_hf_json_get(e, "special")) || looks_special(c)) {
            TRY(set_tok(v, id, c, strlen(c), err));
            v->type[id] = HF_TOK_CONTROL;
        } else {
            TRY(set_user_tok(v, id, c, err));
            v->type[id] = HF_TOK_USER_DEFINED;
        }
    }
    for (int64_t i = 0; i < vocab_size; i++)
        if (!v->type[i]) TRY(set_pad(v, i, err));
    return PARE_OK;
}

/* A special-token entry of tokenizer_config.json / special_tokens_map.json: a string or
 * {"content": string}. */
static const char *special_content(const cJSON *e) {
    if (cJSON_IsString(e)) return e->valuestring;
    return cJSON_IsObject(e) ? json_str(e, "content") : NULL;
}

static bool is_byte_token(const char *s) {
    return strlen(s) == 6 && strncmp(s, "<0x", 3) == 0 && isxdigit((unsigned char)s[3]) &&
           isxdigit((unsigned char)s[4]) && s[5] == '>';
}

/* The ids of transformers' all_special_tokens (tokenizer_config.json, else
 * special_tokens_map.json): bos, eos, unk, sep, pad, cls, mask and additional ones. */
static bool in_specials(const char *tok, const cJSON *tokcfg, const cJSON *smap) {
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    const cJSON *srcs[2] = {tokcfg, smap};
    for (int s = 0; s < 2; s++) {
        if (!srcs[s]) continue;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const char *c = special_content(pare_hf_json_get(srcs[s], keys[k]));
            if (c && strcmp(c, tok) == 0) return true;
        }
        const cJSON *e, *add = pare_hf_json_get(srcs[s], "additional_special_tokens");
        cJSON_ArrayForEach(e, (cJSON_IsArray(add) ? add : NULL)) {
            const char *c = special_content(e);
            if (c && strcmp(c, tok) == 0) return true;
        }
    }
    return false;
}

typedef struct {
    int64_t id;
    const char *content;
} added_tok;

static int added_cmp(const void *a, const void *b) {
    int64_t x = ((const added_tok *)a)->id, y = ((const added_tok *)b)->id;
    return x < y ? -1 : x > y;
}

/* LlamaHfVocab: a tokenizer.json BPE with byte fallback (Llama 2 style without
 * tokenizer.model). Base tokens in id order, then the added tokens above them; every score
 * -1000; <0xXX> byte tokens, control for transformers' special tokens. */
static pare_status vocab_from_llama_hf(const char *folder, const hf_tokjson *t, const cJSON *tokcfg, hf_vocab *v,
                                       pare_err *err) {
    int64_t base = cJSON_GetArraySize(t->vocab), n = base;
    const cJSON *e;
    cJSON_ArrayForEach(e, t->added) {
        int64_t id = (int64_t)pare_hf_json_get(e, "id")->valuedouble;
        if (id >= base) n++;
    }
    FAIL_IF(n > PARE_HF_MAX_VOCAB, PARE_EINPUT, "%s: %lld tokens", t->path, (long long)n);
    cJSON *smap;
    TRY(pare_hf_json_read(folder, "special_tokens_map.json", false, true, &smap, err));
    pare_status st = vocab_alloc(v, n, true, err);
    const char **by_id = st ? NULL : calloc((size_t)(n ? n : 1), sizeof *by_id);
    if (!st && !by_id) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    v->model = "llama";
    strcpy(v->pre, "default");
    cJSON_ArrayForEach(e, (st ? NULL : t->vocab)) {
        int64_t id = (int64_t)e->valuedouble;
        if (id < base) by_id[id] = e->string;
    }
    cJSON_ArrayForEach(e, (st ? NULL : t->added)) {
        int64_t id = (int64_t)pare_hf_json_get(e, "id")->valuedouble;
        if (id < base) by_id[id] = json_str(e, "content");
    }
    for (int64_t i = 0; !st && i < base; i++) {
        if (!by_id[i]) {
            st = pare_err_set(err, PARE_EINPUT, "%s: no token has id %lld", t->path, (long long)i);
            break;
        }
        st = set_tok(v, i, by_id[i], strlen(by_id[i]), err);
        v->score[i] = SP_SCORE_ADDED;
        v->type[i] = is_byte_token(by_id[i]) ? HF_TOK_BYTE
                     : in_specials(by_id[i], tokcfg, smap) ? HF_TOK_CONTROL
                                                           : HF_TOK_NORMAL;
    }
    /* added tokens above the base vocabulary, in id order */
    added_tok *above = st ? NULL : calloc((size_t)(n - base + 1), sizeof *above);
    if (!st && !above) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    int64_t k = 0;
    cJSON_ArrayForEach(e, (st ? NULL : t->added)) {
        int64_t id = (int64_t)pare_hf_json_get(e, "id")->valuedouble;
        if (id >= base) above[k++] = (added_tok){id, json_str(e, "content")};
    }
    if (k > 1) qsort(above, (size_t)k, sizeof *above, added_cmp);
    for (int64_t i = 0; !st && i < k; i++) {
        const char *c = above[i].content;
        st = set_tok(v, base + i, c, strlen(c), err);
        v->score[base + i] = SP_SCORE_ADDED;
        v->type[base + i] = in_specials(c, tokcfg, smap) ? HF_TOK_CONTROL : HF_TOK_USER_DEFINED;
    }
    free(above);
    free(by_id);
    cJSON_Delete(smap);
    return st;
}

/* Merges: tokenizer.json's model.merges ("a b" strings, or ["a", "b"] pairs whose spaces
 * become U+0120 as gguf-py encodes them), else merges.txt. */
static pare_status merges_add(hf_vocab *v, const char *s, size_t n, pare_err *err) {
    char *c = malloc(n + 1);
    FAIL_IF(!c, PARE_ENOMEM, "out of memory");
    memcpy(c, s, n);
    c[n] = 0;
    v->merges[v->n_merges].s = c;
    v->merges[v->n_merges++].len = n;
    return PARE_OK;
}

static pare_status pair_merge(hf_vocab *v, const cJSON *pair, const char *path, pare_err *err) {
    const cJSON *a = cJSON_GetArrayItem(pair, 0), *b = cJSON_GetArrayItem(pair, 1);
    FAIL_IF(cJSON_GetArraySize(pair) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b), PARE_EINPUT,
            "%s: merge %lld is not a pair of strings", path, (long long)v->n_merges);
    const char *parts[2] = {a->valuestring, b->valuestring};
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        for (const char *q = parts[i]; *q; q++) n += *q == ' ' ? 2 : 1;
    char *buf = malloc(n + 2), *o = buf;
    FAIL_IF(!buf, PARE_ENOMEM, "out of memory");
    for (int i = 0; i < 2; i++) {
        if (i) *o++ = ' ';
        for (const char *q = parts[i]; *q; q++) {
            if (*q == ' ') {
                *o++ = (char)0xc4; /* U+0120 */
                *o++ = (char)0xa0;
            } else {
                *o++ = *q;
            }
        }
    }
    pare_status st = merges_add(v, buf, (size_t)(o - buf), err);
    free(buf);
    return st;
}

static pare_status merges_txt(const char *folder, hf_vocab *v, pare_err *err) {
    char *path = pare_path_join(folder, "merges.txt"), *text = NULL;
    size_t len = 0;
    FAIL_IF(!path, PARE_ENOMEM, "out of memory");
    pare_status st = pare_path_exists(path) ? pare_read_file(path, PARE_HF_MAX_JSON, &text, &len, err) : PARE_OK;
    free(path);
    if (st || !text) return st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    v->merges = calloc(lines, sizeof *v->merges);
    if (!v->merges) st = pare_err_set(err, PARE_ENOMEM, "out of memory");
    bool first = true;
    for (char *save = NULL, *line = st ? NULL : strtok_r(text, "\n", &save); line && !st;
         line = strtok_r(NULL, "\n", &save), first = false) {
        char *a = line;
        while (*a == ' ' || *a == '\t' || *a == '\r') a++;
        if (first && *a == '#') continue;
        char *ae = a;
        while (*ae && *ae != ' ' && *ae != '\t' && *ae != '\r') ae++;
        char *b = ae;
        while (*b == ' ' || *b == '\t' || *b == '\r') b++;
        char *be = b;
        while (*be && *be != ' ' && *be != '\t' && *be != '\r') be++;
        char *rest = be;
        while (*rest == ' ' || *rest == '\t' || *rest == '\r') rest++;
        if (ae == a || be == b || *rest) continue; /* empty or malformed: the converter skips it */
        *ae = ' ';
        memmove(ae + 1, b, (size_t)(be - b));
        st = merges_add(v, a, (size_t)(ae + 1 - a) + (size_t)(be - b), err);
    }
    free(text);
    return st;
}

static pare_status load_merges(const char *folder, const hf_tokjson *t, hf_vocab *v, pare_err *err) {
    const cJSON *m = t->model ? pare_hf_json_get(t->model, "merges") : NULL;
    int64_t n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : 0;
    if (n == 0) return merges_txt(folder, v, err);
    v->merges = calloc((size_t)n, sizeof *v->merges);
    FAIL_IF(!v->merges, PARE_ENOMEM, "out of memory for %lld merges", (long long)n);
    bool strings = cJSON_IsString(cJSON_GetArrayItem(m, 0));
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (strings) {
            FAIL_IF(!cJSON_IsString(e), PARE_EINPUT, "%s: merge %lld is not a string", t->path, (long long)v->n_merges);
            TRY(merges_add(v, e->valuestring, strlen(e->valuestring), err));
        } else {
            FAIL_IF(!cJSON_IsArray(e), PARE_EINPUT, "%s: unknown merges format", t->path);
            TRY(pair_merge(v, e, t->path, err));
        }
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------------ special vocab */

#define HF_N_SPECIAL_ALL (HF_N_SPECIAL + 4)
static const char *const extra_special_keys[4] = {
    "tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id",
    "tokenizer.ggml.eot_token_id"};

/* gguf-py's SpecialVocab: ids in the order they were found, add_* flags, chat template. */
typedef struct {
    int64_t id[HF_N_SPECIAL_ALL];
    int order[HF_N_SPECIAL_ALL], n;
    int add[2]; /* bos, eos: -1 unset, else 0/1 */
    const cJSON *chat_template;
} hf_special;

static const char *special_key(int typ) {
    return typ < HF_N_SPECIAL ? pare_hf_special_keys[typ] : extra_special_keys[typ - HF_N_SPECIAL];
}

/* SpecialVocab._set_special_token: non-integers are ignored, the first id found wins, ids
 * at or past n_vocab (when known) are skipped. */
static pare_status special_set(hf_special *sv, int typ, const cJSON *v, int64_t n_vocab, const char *path,
                               pare_err *err) {
    int64_t id;
    if (!v || !pare_hf_json_int(v, &id)) return PARE_OK;
    FAIL_IF(id < 0, PARE_EINPUT, "%s: invalid value for special token type %s: %lld", path,
            typ < HF_N_SPECIAL ? pare_hf_special_names[typ] : "extra", (long long)id);
    if (n_vocab >= 0 && id >= n_vocab) return PARE_OK;
    FAIL_IF(id > UINT32_MAX, PARE_EINPUT, "%s: special token id %lld does not fit 32 bits", path, (long long)id);
    for (int i = 0; i < sv->n; i++)
        if (sv->order[i] == typ) return PARE_OK;
    sv->id[typ] = id;
    sv->order[sv->n++] = typ;
    return PARE_OK;
}

static pare_status special_load(const char *folder, const hf_tokjson *t, const cJSON *tokcfg, const cJSON *config,
                                int64_t n_vocab, hf_special *sv, pare_err *err) {
    memset(sv, 0, sizeof *sv);
    sv->add[0] = sv->add[1] = -1;
    char path[64];
    snprintf(path, sizeof path, "tokenizer_config.json");
    if (tokcfg) {
        const cJSON *ct = pare_hf_json_get(tokcfg, "chat_template");
        if (cJSON_IsString(ct) || cJSON_IsArray(ct)) sv->chat_template = ct;
        for (int typ = 0; typ < HF_N_SPECIAL; typ++) {
            char k[32];
            snprintf(k, sizeof k, "add_%s_token", pare_hf_special_names[typ]);
            const cJSON *a = pare_hf_json_get(tokcfg, k);
            if (cJSON_IsBool(a) && typ < 2) sv->add[typ] = cJSON_IsTrue(a);
            snprintf(k, sizeof k, "%s_token", pare_hf_special_names[typ]);
            const char *content = special_content(pare_hf_json_get(tokcfg, k));
            if (!content || !t->added) continue;
            const cJSON *e, *found = NULL;
            cJSON_ArrayForEach(e, t->added) {
                const char *c = json_str(e, "content");
                if (!found && c && strcmp(c, content) == 0) found = pare_hf_json_get(e, "id");
            }
            TRY(special_set(sv, typ, found, n_vocab, t->path, err));
        }
    }
    (void)folder;
    for (int typ = 0; typ < HF_N_SPECIAL; typ++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token_id", pare_hf_special_names[typ]);
        TRY(special_set(sv, typ, pare_hf_json_get(config, k), n_vocab, "config.json", err));
    }
    return PARE_OK;
}

/* GGUFWriter.add_chat_template: a string, or a list of {name, template}: "default" becomes
 * tokenizer.chat_template, others tokenizer.chat_template.NAME plus the list of names. */
static pare_status chat_template_emit(const cJSON *ct, pare_meta *meta, pare_err *err) {
    if (cJSON_IsString(ct)) return pare_meta_set_str(meta, "tokenizer.chat_template", ct->valuestring,
                                                     strlen(ct->valuestring), err);
    const cJSON *e, *def = NULL;
    pare_str names[64];
    int n = 0;
    pare_status st = PARE_OK;
    cJSON_ArrayForEach(e, ct) {
        const char *name = json_str(e, "name"), *tmpl = json_str(e, "template");
        if (!name || !*name || !tmpl) continue;
        char clean[128];
        size_t k = 0;
        for (const char *q = name; *q && k + 1 < sizeof clean; q++) clean[k++] = isalnum((unsigned char)*q) ? *q : '_';
        clean[k] = 0;
        if (strcmp(clean, "default") == 0) {
            def = pare_hf_json_get(e, "template");
            continue;
        }
        char key[192];
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", clean);
        if ((st = pare_meta_set_str(meta, key, tmpl, strlen(tmpl), err))) break;
        if (n < 64 && (names[n].s = strdup(clean))) names[n].len = strlen(clean), n++;
    }
    if (!st && n) st = pare_meta_set_arr(meta, "tokenizer.chat_templates", PARE_META_STRING, names, (uint64_t)n, err);
    for (int i = 0; i < n; i++) free(names[i].s);
    if (!st && def) st = pare_meta_set_str(meta, "tokenizer.chat_template", def->valuestring, strlen(def->valuestring), err);
    return st;
}

static pare_status special_emit(const hf_special *sv, const hf_vocab *v, pare_meta *meta, pare_err *err) {
    if (v->n_merges)
        TRY(pare_meta_set_arr(meta, "tokenizer.ggml.merges", PARE_META_STRING, v->merges, (uint64_t)v->n_merges, err));
    for (int i = 0; i < sv->n; i++)
        TRY(pare_meta_set_uint(meta, special_key(sv->order[i]), PARE_META_U32, (uint64_t)sv->id[sv->order[i]], err));
    static const char *const add_keys[2] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"};
    for (int i = 0; i < 2; i++)
        if (sv->add[i] >= 0) TRY(pare_meta_set_bool(meta, add_keys[i], sv->add[i] == 1, err));
    if (sv->chat_template) TRY(chat_template_emit(sv->chat_template, meta, err));
    return PARE_OK;
}

static pare_status vocab_emit(const hf_vocab *v, pare_meta *meta, pare_err *err) {
    TRY(pare_meta_set_str(meta, "tokenizer.ggml.model", v->model, strlen(v->model), err));
    TRY(pare_meta_set_str(meta, "tokenizer.ggml.pre", v->pre, strlen(v->pre), err));
    TRY(pare_meta_set_arr(meta, "tokenizer.ggml.tokens", PARE_META_STRING, v->tok, (uint64_t)v->n, err));
    if (v->score) TRY(pare_meta_set_arr(meta, "tokenizer.ggml.scores", PARE_META_F32, v->score, (uint64_t)v->n, err));
    return pare_meta_set_arr(meta, "tokenizer.ggml.token_type", PARE_META_I32, v->type, (uint64_t)v->n, err);
}

/* ------------------------------------------------------------------------ import */

/* Which vocabulary the converter builds (see the header comment). */
typedef enum { VOCAB_SP, VOCAB_LLAMA_HF, VOCAB_GPT2 } vocab_kind;

static bool tokjson_is_llama_hf(const hf_tokjson *t) {
    const char *mt = json_str(t->model, "type");
    const cJSON *bf = pare_hf_json_get(t->model, "byte_fallback");
    bool bpe = mt && strcmp(mt, "BPE") == 0;
    bool llama3 = bpe && cJSON_IsTrue(pare_hf_json_get(t->model, "ignore_merges")) && cJSON_IsFalse(bf);
    const char *dt = json_str(pare_hf_json_get(t->j, "decoder"), "type");
    return !llama3 && bpe && cJSON_IsTrue(bf) && dt && strcmp(dt, "Sequence") == 0;
}

static pare_status build_vocab(const char *folder, const pare_arch_conv *conv, const cJSON *config,
                               const cJSON *tokcfg, const hf_tokjson *t, vocab_kind *kind, hf_vocab *v, pare_err *err) {
    int64_t vocab_size = 0;
    const cJSON *vs = pare_hf_vocab_size(config);
    if (vs)
        FAIL_IF(!pare_hf_json_int(vs, &vocab_size) || vocab_size < 1 || vocab_size > PARE_HF_MAX_VOCAB, PARE_EINPUT,
                "%s/config.json: vocab_size must be an integer from 1 to %d", folder, PARE_HF_MAX_VOCAB);
    char *spath = pare_path_join(folder, "tokenizer.model");
    FAIL_IF(!spath, PARE_ENOMEM, "out of memory");
    pare_status st = PARE_OK;
    bool has_sp = (conv->tok & PARE_TOK_SP) && pare_path_exists(spath);
    if (has_sp) {
        *kind = VOCAB_SP;
        pare_map *map = NULL;
        sp_model sp = {0};
        st = pare_map_open(spath, &map, err);
        if (!st) st = sp_parse(spath, map->data, (size_t)map->size, &sp, err);
        if (!st) st = vocab_from_sp(folder, spath, &sp, vocab_size, tokcfg, (conv->tok & PARE_TOK_PHI3) != 0, v, err);
        free(sp.pieces);
        pare_map_free(map);
    } else if (conv->tok & PARE_TOK_SP_ONLY) {
        st = pare_err_set(err, PARE_EINPUT, "%s: no tokenizer.model (this family's converter reads sentencepiece only)",
                          folder);
    } else if (!t->j) {
        st = pare_err_set(err, PARE_EINPUT, "%s: no tokenizer (tokenizer.model or tokenizer.json)", folder);
    } else if ((conv->tok & PARE_TOK_LLAMA_HF) && tokjson_is_llama_hf(t)) {
        *kind = VOCAB_LLAMA_HF;
        st = vocab_from_llama_hf(folder, t, tokcfg, v, err);
    } else {
        *kind = VOCAB_GPT2;
        st = vocab_from_tokjson(t, vocab_size, v, err);
        /* The converter names pre-tokenizers by a hash of their output: families whose BPE
         * shares GPT-2's regex but not its vocabulary get their own name (phi-2). */
        if (!st && conv->bpe_pre && strcmp(v->pre, "gpt-2") == 0) snprintf(v->pre, sizeof v->pre, "%s", conv->bpe_pre);
        if (!st) st = load_merges(folder, t, v, err);
    }
    free(spath);
    return st;
}

/* LlamaModel.set_vocab's additions after the vocabulary. */
static pare_status llama_extras(const cJSON *config, const cJSON *tokcfg, pare_meta *meta, pare_err *err) {
    int64_t vs = 32000;
    const cJSON *v = pare_hf_json_get(config, "vocab_size");
    if (v) pare_hf_json_int(v, &vs);
    if (vs == 32016) /* CodeLlama's infill tokens */
        for (int i = 0; i < 4; i++)
            if (!pare_meta_get(meta, extra_special_keys[i]))
                TRY(pare_meta_set_uint(meta, extra_special_keys[i], PARE_META_U32, (uint64_t)(32007 + i), err));
    const cJSON *aps = tokcfg ? cJSON_GetObjectItemCaseSensitive(tokcfg, "add_prefix_space") : NULL;
    if (aps) TRY(pare_meta_set_bool(meta, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(aps), err));
    if (vs == 49152) TRY(pare_meta_set_bool(meta, "tokenizer.ggml.add_bos_token", false, err)); /* granite */
    return PARE_OK;
}

pare_status pare_hf_tokenizer_import(const char *folder, const char *arch, const cJSON *config, const char *force_pre,
                                     pare_meta *meta, pare_err *err) {
    const pare_arch *a = pare_arch_find(arch);
    FAIL_IF(!a, PARE_EUNSUPPORTED, "%s: architecture %s has no tokenizer mapping", folder, arch);
    const pare_arch_conv *conv = &a->conv;
    hf_tokjson t;
    cJSON *tokcfg = NULL;
    hf_vocab v = {0};
    hf_special sv;
    vocab_kind kind = VOCAB_GPT2;
    pare_status st = pare_hf_json_read(folder, "tokenizer_config.json", false, true, &tokcfg, err);
    if (!st) st = tokjson_load(folder, &t, err);
    else memset(&t, 0, sizeof t);
    t.arch = arch;
    t.force_pre = force_pre;
    if (!st) st = build_vocab(folder, conv, config, tokcfg, &t, &kind, &v, err);
    if (!st) st = vocab_emit(&v, meta, err);
    if (!st) st = special_load(folder, &t, tokcfg, config, kind == VOCAB_GPT2 ? -1 : v.n, &sv, err);
    if (!st) st = special_emit(&sv, &v, meta, err);
    if (!st && (conv->tok & PARE_TOK_LLAMA_EXTRAS)) st = llama_extras(config, tokcfg, meta, err);
    /* GemmaModel.set_vocab: CodeGemma's fixed ids; of them only eot has a writer in gguf-py */
    if (!st && (conv->tok & PARE_TOK_GEMMA_EOT) && !pare_meta_get(meta, extra_special_keys[3]))
        st = pare_meta_set_uint(meta, extra_special_keys[3], PARE_META_U32, 107, err);
    if (!st && (conv->tok & PARE_TOK_NO_SPACE_PREFIX))
        st = pare_meta_set_bool(meta, "tokenizer.ggml.add_space_prefix", false, err);
    vocab_free(&v);
    tokjson_free(&t);
    cJSON_Delete(tokcfg);
    return st;
}

/* ------------------------------------------------------------------------ export */

/* The vocabulary keys of a GGUF's metadata. */
typedef struct {
    const pare_str *tok;
    const float *score; /* may be NULL */
    const int32_t *type;
    uint64_t n;
    const char *model, *pre;
} meta_vocab;

static pare_status meta_vocab_get(const pare_meta *meta, meta_vocab *v, pare_err *err) {
    memset(v, 0, sizeof *v);
    const pare_kv *t = pare_meta_get(meta, "tokenizer.ggml.tokens");
    const pare_kv *s = pare_meta_get(meta, "tokenizer.ggml.scores");
    const pare_kv *y = pare_meta_get(meta, "tokenizer.ggml.token_type");
    v->model = pare_meta_get_str(meta, "tokenizer.ggml.model");
    v->pre = pare_meta_get_str(meta, "tokenizer.ggml.pre");
    FAIL_IF(!v->model || !t || t->type != PARE_META_ARRAY || t->elem_type != PARE_META_STRING, PARE_EINPUT,
            "the metadata has no tokenizer.ggml.model / tokenizer.ggml.tokens");
    v->tok = t->arr;
    v->n = t->n;
    if (s) FAIL_IF(s->type != PARE_META_ARRAY || s->elem_type != PARE_META_F32 || s->n != v->n, PARE_EINPUT,
                   "tokenizer.ggml.scores is not %llu f32 values", (unsigned long long)v->n);
    FAIL_IF(!y || y->type != PARE_META_ARRAY || y->elem_type != PARE_META_I32 || y->n != v->n, PARE_EINPUT,
            "tokenizer.ggml.token_type is not %llu i32 values", (unsigned long long)v->n);
    v->score = s ? s->arr : NULL;
    v->type = y->arr;
    return PARE_OK;
}

static float vscore(const meta_vocab *v, uint64_t i) {
    float f = 0;
    if (v->score) memcpy(&f, (const uint8_t *)v->score + i * 4, 4);
    return f;
}

static int32_t vtype(const meta_vocab *v, uint64_t i) {
    int32_t t;
    memcpy(&t, (const uint8_t *)v->type + i * 4, 4);
    return t;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} pb_out;

static void pb_put(pb_out *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 256;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void pb_varint_put(pb_out *b, uint64_t v) {
    uint8_t x[10];
    int k = 0;
    do {
        x[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_put(b, x, (size_t)k);
}

static void pb_key(pb_out *b, uint32_t field, int wire) { pb_varint_put(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_int(pb_out *b, uint32_t field, int64_t v) { /* int32 fields: negatives as 10 bytes */
    pb_key(b, field, 0);
    pb_varint_put(b, (uint64_t)v);
}
static void pb_bytes(pb_out *b, uint32_t field, const void *s, size_t n) {
    pb_key(b, field, 2);
    pb_varint_put(b, n);
    pb_put(b, s, n);
}
static void pb_float(pb_out *b, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t x[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(b, field, 5);
    pb_put(b, x, 4);
}

static int64_t meta_id(const pare_meta *meta, const char *key) {
    uint64_t v;
    return pare_meta_get_u64(meta, key, &v) ? (int64_t)v : -1;
}

pare_status pare_hf_sp_build(const pare_meta *meta, uint8_t **out, size_t *len, pare_err *err) {
    *out = NULL;
    meta_vocab v;
    TRY(meta_vocab_get(meta, &v, err));
    pb_out b = {0}, piece = {0}, spec = {0};
    bool has_byte = false;
    int64_t unk = -1;
    for (uint64_t i = 0; i < v.n && !b.oom && !piece.oom; i++) {
        int32_t t = vtype(&v, i);
        if (v.tok[i].len == 0) {
            free(b.p);
            free(piece.p);
            return pare_err_set(err, PARE_EUNSUPPORTED, "token %llu is empty (sentencepiece cannot hold it)",
                                (unsigned long long)i);
        }
        piece.n = 0;
        pb_bytes(&piece, 1, v.tok[i].s, (size_t)v.tok[i].len);
        pb_float(&piece, 2, vscore(&v, i));
        if (t >= HF_TOK_UNKNOWN && t <= HF_TOK_BYTE) pb_int(&piece, 3, t); /* NORMAL is the default */
        has_byte |= t == HF_TOK_BYTE;
        if (t == HF_TOK_UNKNOWN && unk < 0) unk = (int64_t)i;
        pb_bytes(&b, 1, piece.p, piece.n);
    }
    int64_t u = meta_id(meta, "tokenizer.ggml.unknown_token_id");
    pb_int(&spec, 3, 2);                       /* model_type BPE */
    pb_int(&spec, 4, (int64_t)v.n);            /* vocab_size */
    if (has_byte) pb_int(&spec, 35, 1);        /* byte_fallback */
    pb_int(&spec, 40, u >= 0 ? u : (unk >= 0 ? unk : 0));
    pb_int(&spec, 41, meta_id(meta, "tokenizer.ggml.bos_token_id"));
    pb_int(&spec, 42, meta_id(meta, "tokenizer.ggml.eos_token_id"));
    pb_int(&spec, 43, meta_id(meta, "tokenizer.ggml.padding_token_id"));
    pb_bytes(&b, 2, spec.p, spec.n);
    bool prefix = true;
    pare_meta_get_bool(meta, "tokenizer.ggml.add_space_prefix", &prefix);
    spec.n = 0;
    pb_bytes(&spec, 1, "identity", 8);
    pb_int(&spec, 3, prefix); /* add_dummy_prefix */
    pb_int(&spec, 4, 0);      /* remove_extra_whitespaces */
    pb_int(&spec, 5, 1);      /* escape_whitespaces */
    pb_bytes(&b, 3, spec.p, spec.n);
    bool oom = b.oom || piece.oom || spec.oom;
    free(piece.p);
    free(spec.p);
    if (oom) {
        free(b.p);
        return pare_err_set(err, PARE_ENOMEM, "out of memory building tokenizer.model");
    }
    *out = b.p;
    *len = b.n;
    return PARE_OK;
}

static cJSON *json_token(const pare_str *s) {
    /* token texts are UTF-8 without NULs in practice; cJSON strings end at the first NUL */
    return cJSON_CreateString(s->s);
}

static bool is_pad_token(const pare_str *s, uint64_t i) {
    char b[40];
    int n = snprintf(b, sizeof b, "[PAD%llu]", (unsigned long long)i);
    return s->len == (uint64_t)n && memcmp(s->s, b, (size_t)n) == 0;
}

static cJSON *byte_level(bool prefix, bool trim, bool regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", prefix);
    cJSON_AddBoolToObject(o, "trim_offsets", trim);
    cJSON_AddBoolToObject(o, "use_regex", regex);
    return o;
}

pare_status pare_hf_tokjson_build(const pare_meta *meta, cJSON **out, pare_err *err) {
    *out = NULL;
    meta_vocab v;
    TRY(meta_vocab_get(meta, &v, err));
    FAIL_IF(!v.pre, PARE_EUNSUPPORTED, "the metadata has no tokenizer.ggml.pre");
    /* the definition Hugging Face writes for that pre-tokenizer (formats/hf_pretok.c) */
    cJSON *pre = NULL, *norm = NULL;
    bool ignore_merges = false;
    TRY(pare_hf_pretok_json(v.pre, &pre, &norm, &ignore_merges, err));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    cJSON_AddItemToObject(j, "normalizer", norm);
    cJSON_AddItemToObject(j, "pre_tokenizer", pre);
    cJSON_AddItemToObject(j, "post_processor", byte_level(false, false, false));
    cJSON_AddItemToObject(j, "decoder", byte_level(true, true, true));
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", false);
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (uint64_t i = 0; i < v.n; i++) {
        int32_t t = vtype(&v, i);
        if (t == HF_TOK_CONTROL || t == HF_TOK_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddItemToObject(a, "content", json_token(&v.tok[i]));
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", t == HF_TOK_USER_DEFINED);
            cJSON_AddBoolToObject(a, "special", t == HF_TOK_CONTROL);
            cJSON_AddItemToArray(added, a);
        } else if (!(t == HF_TOK_UNUSED && is_pad_token(&v.tok[i], i))) {
            cJSON_AddItemToObject(vocab, v.tok[i].s, cJSON_CreateNumber((double)i));
        }
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    const pare_kv *mk = pare_meta_get(meta, "tokenizer.ggml.merges");
    if (mk && mk->type == PARE_META_ARRAY && mk->elem_type == PARE_META_STRING)
        for (uint64_t i = 0; i < mk->n; i++) cJSON_AddItemToArray(merges, json_token(&((const pare_str *)mk->arr)[i]));
    *out = j;
    return PARE_OK;
}

/* The token text of a special id from meta, or NULL. */
static const char *special_text(const pare_meta *meta, const meta_vocab *v, const char *key) {
    int64_t id = meta_id(meta, key);
    return (id >= 0 && (uint64_t)id < v->n) ? v->tok[id].s : NULL;
}

static void add_chat_templates(const pare_meta *meta, cJSON *tokcfg) {
    const char *def = pare_meta_get_str(meta, "tokenizer.chat_template");
    const pare_kv *names = pare_meta_get(meta, "tokenizer.chat_templates");
    if (!names || names->type != PARE_META_ARRAY || names->elem_type != PARE_META_STRING) {
        if (def) cJSON_AddStringToObject(tokcfg, "chat_template", def);
        return;
    }
    cJSON *list = cJSON_AddArrayToObject(tokcfg, "chat_template");
    if (def) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", "default");
        cJSON_AddStringToObject(e, "template", def);
        cJSON_AddItemToArray(list, e);
    }
    for (uint64_t i = 0; i < names->n; i++) {
        const char *name = ((const pare_str *)names->arr)[i].s;
        char key[192];
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
        const char *tmpl = pare_meta_get_str(meta, key);
        if (!tmpl) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "template", tmpl);
        cJSON_AddItemToArray(list, e);
    }
}

pare_status pare_hf_tokcfg_build(const pare_meta *meta, cJSON *tokcfg, cJSON *special_map, pare_err *err) {
    meta_vocab v;
    TRY(meta_vocab_get(meta, &v, err));
    bool sp = strcmp(v.model, "llama") == 0;
    bool b;
    if (pare_meta_get_bool(meta, "tokenizer.ggml.add_bos_token", &b)) cJSON_AddBoolToObject(tokcfg, "add_bos_token", b);
    if (pare_meta_get_bool(meta, "tokenizer.ggml.add_eos_token", &b)) cJSON_AddBoolToObject(tokcfg, "add_eos_token", b);
    if (pare_meta_get_bool(meta, "tokenizer.ggml.add_space_prefix", &b))
        cJSON_AddBoolToObject(tokcfg, "add_prefix_space", b);
    /* With tokenizer.json, the converter resolves tokenizer_config's special tokens before
     * config.json's ids, each source in bos, eos, unk, ... order. Only the leading run of
     * meta's ids in that order goes into tokenizer_config, so the order comes back. */
    int last = -1;
    bool leading = true;
    for (size_t k = 0; k < meta->n; k++) {
        int typ = -1;
        for (int i = 0; i < HF_N_SPECIAL; i++)
            if (strcmp(meta->kv[k].key, pare_hf_special_keys[i]) == 0) typ = i;
        if (typ < 0) continue;
        const char *text = special_text(meta, &v, pare_hf_special_keys[typ]);
        if (!text) continue;
        int64_t id = meta_id(meta, pare_hf_special_keys[typ]);
        int32_t t = vtype(&v, (uint64_t)id);
        leading = leading && typ > last && (t == HF_TOK_CONTROL || t == HF_TOK_USER_DEFINED);
        last = typ;
        char key[32];
        snprintf(key, sizeof key, "%s_token", pare_hf_special_names[typ]);
        if (sp || leading) cJSON_AddStringToObject(tokcfg, key, text);
        cJSON_AddStringToObject(special_map, key, text);
    }
    if (sp) {
        /* Added tokens the converter gives score -1000 come back through added_tokens_decoder. */
        cJSON *dec = cJSON_AddObjectToObject(tokcfg, "added_tokens_decoder");
        for (uint64_t i = 0; i < v.n; i++) {
            int32_t t = vtype(&v, i);
            if ((t != HF_TOK_CONTROL && t != HF_TOK_USER_DEFINED) || vscore(&v, i) != SP_SCORE_ADDED) continue;
            char id[24];
            snprintf(id, sizeof id, "%llu", (unsigned long long)i);
            cJSON *e = cJSON_AddObjectToObject(dec, id);
            cJSON_AddItemToObject(e, "content", json_token(&v.tok[i]));
            cJSON_AddBoolToObject(e, "lstrip", false);
            cJSON_AddBoolToObject(e, "normalized", t == HF_TOK_USER_DEFINED);
            cJSON_AddBoolToObject(e, "rstrip", false);
            cJSON_AddBoolToObject(e, "single_word", false);
            cJSON_AddBoolToObject(e, "special", t == HF_TOK_CONTROL);
        }
    }
    add_chat_templates(meta, tokcfg);
    return PARE_OK;
}
