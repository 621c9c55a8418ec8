/*
 * verify/tokenizer.c - building a tokenizer from GGUF metadata (llama.cpp's
 * llama_vocab::impl::load), cutting user-defined tokens out of the text
 * (tokenizer_st_partition) and handing the rest to the SPM or BPE tokenizer.
 *
 * Defaults when keys are absent, as llama.cpp of February 2025:
 *   llama (SPM): bos 1, eos 2, unk 0, add_bos true, add_eos false, add_space_prefix true
 *   gpt2 (BPE):  bos 11, eos 11, no unk, add_bos only for the llama3 / tekken / chameleon
 *                pre-tokenizers, add_eos false, add_space_prefix false; chatglm-bpe has no
 *                BOS. A default id beyond the vocabulary counts as absent here.
 * An id key naming a token beyond the vocabulary is ignored (the default stays), as
 * llama.cpp does with a warning.
 */
#include "verify/tok_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of token / merge text pare accepts in one vocabulary (llama.cpp has no limit;
 * real vocabularies stay under 10 MB). */
#define TOK_MAX_ARENA (1ull << 30)

/* ------------------------------------------------------------------ strings, maps, out */

static void strs_free(tok_strs *s) {
    free(s->arena);
    free(s->off);
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* Allocates room for n strings of `bytes` bytes in total (NULs added here). */
static pare_status strs_alloc(tok_strs *s, uint64_t n, uint64_t bytes, const char *what, pare_err *err) {
    FAIL_IF(bytes > TOK_MAX_ARENA || n > UINT32_MAX / 2, PARE_EUNSUPPORTED,
            "tokenizer metadata: %s holds %llu strings of %llu bytes, more than pare accepts", what,
            (unsigned long long)n, (unsigned long long)bytes);
    s->arena = malloc(bytes + n + 1);
    s->off = malloc((n ? n : 1) * sizeof *s->off);
    s->len = malloc((n ? n : 1) * sizeof *s->len);
    FAIL_IF(!s->arena || !s->off || !s->len, PARE_ENOMEM, "tokenizer: out of memory for %s", what);
    s->n = 0;
    s->max_len = 0;
    return PARE_OK;
}

/* Appends a string at arena offset *pos. */
static void strs_add(tok_strs *s, uint64_t *pos, const char *p, size_t n) {
    memcpy(s->arena + *pos, p, n);
    s->arena[*pos + n] = '\0';
    s->off[s->n] = (uint32_t)*pos;
    s->len[s->n] = (uint32_t)n;
    if (n > s->max_len) s->max_len = (uint32_t)n;
    s->n++;
    *pos += n + 1;
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

pare_status tok_map_build(tok_map *m, const tok_strs *s, bool keep_last, pare_err *err) {
    uint64_t cap = 16;
    while (cap < 2ull * s->n) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    FAIL_IF(!m->slots, PARE_ENOMEM, "tokenizer: out of memory for a hash table of %llu slots",
            (unsigned long long)cap);
    m->mask = cap - 1;
    for (uint32_t i = 0; i < s->n; i++) {
        const char *k = s->arena + s->off[i];
        uint64_t h = hash_bytes(k, s->len[i]) & m->mask;
        for (;; h = (h + 1) & m->mask) {
            uint32_t v = m->slots[h];
            if (v == 0) {
                m->slots[h] = i + 1;
                break;
            }
            if (s->len[v - 1] == s->len[i] && memcmp(s->arena + s->off[v - 1], k, s->len[i]) == 0) {
                if (keep_last) m->slots[h] = i + 1;
                break;
            }
        }
    }
    return PARE_OK;
}

void tok_map_free(tok_map *m) {
    free(m->slots);
    m->slots = NULL;
}

int64_t tok_map_find(const tok_map *m, const tok_strs *s, const char *key, size_t len) {
    if (!m->slots || len > s->max_len) return -1;
    for (uint64_t h = hash_bytes(key, len) & m->mask;; h = (h + 1) & m->mask) {
        uint32_t v = m->slots[h];
        if (v == 0) return -1;
        if (s->len[v - 1] == len && memcmp(s->arena + s->off[v - 1], key, len) == 0) return (int64_t)v - 1;
    }
}

pare_status tok_out_push(tok_out *o, int32_t id, pare_err *err) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        FAIL_IF(!v, PARE_ENOMEM, "tokenizer: out of memory for %zu tokens", cap);
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return PARE_OK;
}

/* ------------------------------------------------------------------ reading metadata */

/* A string-array key; NULL when absent. Present with another type is an error. */
static pare_status get_str_array(const pare_meta *meta, const char *key, const pare_kv **out, pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, key);
    *out = NULL;
    if (!kv) return PARE_OK;
    FAIL_IF(kv->type != PARE_META_ARRAY || kv->elem_type != PARE_META_STRING, PARE_EINPUT,
            "tokenizer metadata: %s is %s%s%s, expected an array of strings", key, pare_meta_type_name(kv->type),
            kv->type == PARE_META_ARRAY ? " of " : "",
            kv->type == PARE_META_ARRAY ? pare_meta_type_name(kv->elem_type) : "");
    *out = kv;
    return PARE_OK;
}

/* A numeric array key of exactly n elements; NULL when absent. */
static pare_status get_num_array(const pare_meta *meta, const char *key, uint64_t n, bool integer,
                                 const pare_kv **out, pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, key);
    *out = NULL;
    if (!kv) return PARE_OK;
    pare_meta_type e = kv->elem_type;
    bool is_int = e <= PARE_META_I32 || e == PARE_META_U64 || e == PARE_META_I64;
    bool is_num = is_int || e == PARE_META_F32 || e == PARE_META_F64;
    FAIL_IF(kv->type != PARE_META_ARRAY || !(integer ? is_int : is_num), PARE_EINPUT,
            "tokenizer metadata: %s is %s%s%s, expected an array of %s", key, pare_meta_type_name(kv->type),
            kv->type == PARE_META_ARRAY ? " of " : "",
            kv->type == PARE_META_ARRAY ? pare_meta_type_name(e) : "", integer ? "integers" : "numbers");
    FAIL_IF(kv->n != n, PARE_EINPUT, "tokenizer metadata: %s has %llu entries but tokenizer.ggml.tokens has %llu",
            key, (unsigned long long)kv->n, (unsigned long long)n);
    *out = kv;
    return PARE_OK;
}

static pare_status get_bool(const pare_meta *meta, const char *key, bool *v, pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, key);
    if (!kv) return PARE_OK;
    FAIL_IF(kv->type != PARE_META_BOOL, PARE_EINPUT, "tokenizer metadata: %s is %s, expected a bool", key,
            pare_meta_type_name(kv->type));
    *v = kv->v.u64 != 0;
    return PARE_OK;
}

/* A token id key: leaves *id alone when absent or out of range; *found says whether it
 * named a token. */
static pare_status get_id(const pare_meta *meta, const char *key, uint32_t n_vocab, int32_t *id, bool *found,
                          pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, key);
    if (found) *found = false;
    if (!kv) return PARE_OK;
    int64_t v;
    FAIL_IF(!pare_meta_get_i64(meta, key, &v), PARE_EINPUT, "tokenizer metadata: %s is %s, expected an integer",
            key, pare_meta_type_name(kv->type));
    if (v < 0 || v >= (int64_t)n_vocab) return PARE_OK;
    *id = (int32_t)v;
    if (found) *found = true;
    return PARE_OK;
}

static pare_status load_tokens(pare_tokenizer *tk, const pare_meta *meta, pare_err *err) {
    const pare_kv *kv;
    TRY(get_str_array(meta, "tokenizer.ggml.tokens", &kv, err));
    FAIL_IF(!kv, PARE_EINPUT, "tokenizer metadata: no tokenizer.ggml.tokens (the vocabulary)");
    FAIL_IF(kv->n == 0, PARE_EINPUT, "tokenizer metadata: tokenizer.ggml.tokens is empty");
    FAIL_IF(kv->n > INT32_MAX, PARE_EUNSUPPORTED, "tokenizer metadata: %llu tokens is more than llama.cpp takes",
            (unsigned long long)kv->n);
    const pare_str *s = kv->arr;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < kv->n && bytes <= TOK_MAX_ARENA; i++) /* stops before it can wrap */
        bytes += s[i].len > TOK_MAX_ARENA ? TOK_MAX_ARENA + 1 : s[i].len ? s[i].len : 24;
    TRY(strs_alloc(&tk->tokens, kv->n, bytes, "tokenizer.ggml.tokens", err));
    uint64_t pos = 0;
    for (uint64_t i = 0; i < kv->n; i++) {
        if (s[i].len) {
            strs_add(&tk->tokens, &pos, s[i].s, (size_t)s[i].len);
        } else { /* llama.cpp renames empty tokens so that every text is distinct */
            char name[24];
            int n = snprintf(name, sizeof name, "[EMPTY_%llu]", (unsigned long long)i);
            strs_add(&tk->tokens, &pos, name, (size_t)n);
        }
    }
    return tok_map_build(&tk->token_map, &tk->tokens, true, err);
}

static pare_status load_merges(pare_tokenizer *tk, const pare_meta *meta, pare_err *err) {
    const pare_kv *kv;
    TRY(get_str_array(meta, "tokenizer.ggml.merges", &kv, err));
    FAIL_IF(!kv, PARE_EINPUT, "tokenizer metadata: a gpt2 (BPE) vocabulary needs tokenizer.ggml.merges");
    const pare_str *s = kv->arr;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < kv->n && bytes <= TOK_MAX_ARENA; i++)
        bytes += s[i].len > TOK_MAX_ARENA ? TOK_MAX_ARENA + 1 : s[i].len;
    TRY(strs_alloc(&tk->merges, kv->n, bytes, "tokenizer.ggml.merges", err));
    uint64_t pos = 0;
    for (uint64_t i = 0; i < kv->n; i++) strs_add(&tk->merges, &pos, s[i].s, (size_t)s[i].len);
    return tok_map_build(&tk->merge_map, &tk->merges, false, err);
}

static uint16_t attr_of_type(int64_t t) {
    switch (t) {
    case 1: return TOK_ATTR_NORMAL;
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_UNDEFINED;
    }
}

static pare_status load_scores_types(pare_tokenizer *tk, const pare_meta *meta, pare_err *err) {
    uint32_t n = tk->tokens.n;
    const pare_kv *sc, *ty;
    TRY(get_num_array(meta, "tokenizer.ggml.scores", n, false, &sc, err));
    TRY(get_num_array(meta, "tokenizer.ggml.token_type", n, true, &ty, err));
    tk->scores = calloc(n, sizeof *tk->scores);
    tk->attr = calloc(n, sizeof *tk->attr);
    FAIL_IF(!tk->scores || !tk->attr, PARE_ENOMEM, "tokenizer: out of memory for %u tokens", n);
    for (uint32_t i = 0; i < n; i++) {
        double d = 0;
        int64_t t = 1;
        if (sc) pare_kv_arr_f64(sc, i, &d);
        if (ty) pare_kv_arr_i64(ty, i, &t);
        tk->scores[i] = (float)d;
        tk->attr[i] = attr_of_type(t);
    }
    return PARE_OK;
}

/* ------------------------------------------------------------------ special tokens */

static int64_t find_text(const pare_tokenizer *tk, const char *s) {
    return tok_map_find(&tk->token_map, &tk->tokens, s, strlen(s));
}

/* llama.cpp finds some special tokens by their text when their id key is absent, and
 * forces the one it picks to be a control token (so it is not cut out of text as a
 * user-defined token would be). It takes the first match in hash order; pare takes the
 * candidate with the lowest id. */
typedef struct autodetect {
    const char *keys[2]; /* id keys whose presence turns the detection off */
    const char *texts[8];
} autodetect;

static const autodetect autodetects[] = {
    {{"tokenizer.ggml.eot_token_id"},
     {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
      "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"}},
    {{"tokenizer.ggml.eom_token_id"}, {"<|eom_id|>"}},
    {{"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"},
     {"<|fim_prefix|>", "<fim-prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>"}},
    {{"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"},
     {"<|fim_suffix|>", "<fim-suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>"}},
    {{"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"},
     {"<|fim_middle|>", "<fim-middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>"}},
    {{"tokenizer.ggml.fim_pad_token_id"}, {"<|fim_pad|>", "<fim-pad>", "<PAD>"}},
    {{"tokenizer.ggml.fim_rep_token_id"}, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
    {{"tokenizer.ggml.fim_sep_token_id"}, {"<|file_sep|>"}},
};

/* Texts llama.cpp always treats as end-of-generation, hence control tokens. */
static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|eom_id|>", "<EOT>"};

static pare_status force_control(pare_tokenizer *tk, const pare_meta *meta, pare_err *err) {
    for (size_t a = 0; a < sizeof autodetects / sizeof autodetects[0]; a++) {
        bool set = false;
        for (int k = 0; k < 2 && autodetects[a].keys[k] && !set; k++) {
            int32_t id = -1;
            TRY(get_id(meta, autodetects[a].keys[k], tk->tokens.n, &id, &set, err));
        }
        if (set) continue;
        int64_t best = -1;
        for (int t = 0; t < 8 && autodetects[a].texts[t]; t++) {
            int64_t id = find_text(tk, autodetects[a].texts[t]);
            if (id >= 0 && (best < 0 || id < best)) best = id;
        }
        if (best >= 0) tk->attr[best] = TOK_ATTR_CONTROL;
    }
    for (size_t t = 0; t < sizeof eog_texts / sizeof eog_texts[0]; t++) {
        int64_t id = find_text(tk, eog_texts[t]);
        if (id >= 0) tk->attr[id] = TOK_ATTR_CONTROL;
    }
    return PARE_OK;
}

typedef struct special_key {
    uint32_t len;
    int32_t id;
} special_key;

/* Longest text first, then lower id (llama.cpp's std::sort leaves ties unordered). */
static int special_cmp(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static pare_status build_special_list(pare_tokenizer *tk, pare_err *err) {
    uint32_t n = tk->tokens.n, k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (tk->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) k++;
    if (k == 0) return PARE_OK;
    special_key *keys = malloc(k * sizeof *keys);
    tk->special = malloc(k * sizeof *tk->special);
    if (!keys || !tk->special) {
        free(keys);
        return pare_err_set(err, PARE_ENOMEM, "tokenizer: out of memory for %u special tokens", k);
    }
    k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (tk->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            keys[k++] = (special_key){tk->tokens.len[i], (int32_t)i};
    qsort(keys, k, sizeof *keys, special_cmp);
    for (uint32_t i = 0; i < k; i++) tk->special[i] = keys[i].id;
    tk->n_special = k;
    free(keys);
    return PARE_OK;
}

static void set_strip(pare_tokenizer *tk, const char *text, uint16_t flag, bool on) {
    int64_t id = find_text(tk, text);
    if (id < 0) return;
    tk->attr[id] = on ? (uint16_t)(tk->attr[id] | flag) : (uint16_t)(tk->attr[id] & ~flag);
}

/* Per-model strip flags llama.cpp sets by name: Phi-3 strips spaces after its special
 * tokens, the jina-v2 vocabularies before <mask>. */
static void set_strip_flags(pare_tokenizer *tk, const pare_meta *meta) {
    const char *pre = pare_meta_get_str(meta, "tokenizer.ggml.pre");
    const char *name = pare_meta_get_str(meta, "general.name");
    if (pre && (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code"))) {
        set_strip(tk, "<mask>", TOK_ATTR_LSTRIP, true);
        return;
    }
    if (!name) return;
    char low[256];
    size_t n = strlen(name) < sizeof low - 1 ? strlen(name) : sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = '\0';
    if (!strstr(low, "phi-3") && !strstr(low, "phi3")) return;
    for (size_t i = 0; i < tk->n_special; i++) tk->attr[tk->special[i]] |= TOK_ATTR_RSTRIP;
    set_strip(tk, "</s>", TOK_ATTR_RSTRIP, true);
    set_strip(tk, "<unk>", TOK_ATTR_RSTRIP, false);
    set_strip(tk, "<s>", TOK_ATTR_RSTRIP, false);
    set_strip(tk, "<|endoftext|>", TOK_ATTR_RSTRIP, false);
}

static pare_status load_flags(pare_tokenizer *tk, const pare_meta *meta, pare_err *err) {
    uint32_t n = tk->tokens.n;
    if (tk->type == TOK_SPM) {
        tk->bos = 1, tk->eos = 2, tk->unk = 0;
        tk->add_bos = true, tk->add_space_prefix = true;
    } else {
        tk->bos = tk->pre_def->no_bos ? -1 : 11, tk->eos = 11, tk->unk = -1;
        tk->add_bos = tk->pre_def->add_bos, tk->ignore_merges = tk->pre_def->ignore_merges;
    }
    if (tk->bos >= (int32_t)n) tk->bos = -1;
    if (tk->eos >= (int32_t)n) tk->eos = -1;
    if (tk->unk >= (int32_t)n) tk->unk = -1;
    TRY(get_bool(meta, "tokenizer.ggml.add_space_prefix", &tk->add_space_prefix, err));
    TRY(get_id(meta, "tokenizer.ggml.bos_token_id", n, &tk->bos, NULL, err));
    TRY(get_id(meta, "tokenizer.ggml.eos_token_id", n, &tk->eos, NULL, err));
    TRY(get_id(meta, "tokenizer.ggml.unknown_token_id", n, &tk->unk, NULL, err));
    TRY(get_bool(meta, "tokenizer.ggml.add_bos_token", &tk->add_bos, err));
    TRY(get_bool(meta, "tokenizer.ggml.add_eos_token", &tk->add_eos, err));
    return PARE_OK;
}

/* SPM byte fallback: <0xXX> (upper-case hex), else the token that is the bare byte. */
static void find_byte_tokens(pare_tokenizer *tk) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int64_t id = find_text(tk, name);
        if (id < 0) {
            char c = (char)b;
            id = tok_map_find(&tk->token_map, &tk->tokens, &c, 1);
        }
        tk->byte_token[b] = (int32_t)id;
    }
}

/* Whether SPM text may be merged stretch by stretch (see tok_spm.c): true unless some
 * token holds a U+2581 that is not at its start or after another U+2581. */
static bool spm_cut_at_space(const pare_tokenizer *tk) {
    for (uint32_t i = 0; i < tk->tokens.n; i++) {
        const char *t = tk->tokens.arena + tk->tokens.off[i];
        size_t n = tk->tokens.len[i];
        for (size_t k = 1; k + 3 <= n; k++)
            if (memcmp(t + k, "\xe2\x96\x81", 3) == 0 && (k < 3 || memcmp(t + k - 3, "\xe2\x96\x81", 3) != 0))
                return false;
    }
    return true;
}

/* ------------------------------------------------------------------ display pieces */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Writes token i's piece to dst (never longer than the token text); returns its length. */
static size_t make_piece(const pare_tokenizer *tk, uint32_t i, char *dst) {
    const char *t = tk->tokens.arena + tk->tokens.off[i];
    size_t n = tk->tokens.len[i], o = 0;
    uint16_t a = tk->attr[i];
    if (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED)) {
        memcpy(dst, t, n);
        return n;
    }
    if (tk->type == TOK_BPE) return (a & TOK_ATTR_NORMAL) ? tok_bpe_decode(tk, t, n, dst) : 0;
    if (a & TOK_ATTR_NORMAL) {
        for (size_t k = 0; k < n;) {
            if (n - k >= 3 && memcmp(t + k, "\xe2\x96\x81", 3) == 0) {
                dst[o++] = ' ';
                k += 3;
            } else {
                dst[o++] = t[k++];
            }
        }
        return o;
    }
    if ((a & TOK_ATTR_BYTE) && n >= 5 && hexval(t[3]) >= 0 && hexval(t[4]) >= 0) {
        dst[0] = (char)(hexval(t[3]) * 16 + hexval(t[4]));
        return 1;
    }
    return 0;
}

static pare_status build_pieces(pare_tokenizer *tk, pare_err *err) {
    uint64_t bytes = (uint64_t)tk->tokens.off[tk->tokens.n - 1] + tk->tokens.len[tk->tokens.n - 1] + 1;
    TRY(strs_alloc(&tk->pieces, tk->tokens.n, bytes, "token pieces", err));
    char *tmp = malloc((size_t)tk->tokens.max_len + 1);
    FAIL_IF(!tmp, PARE_ENOMEM, "tokenizer: out of memory");
    uint64_t pos = 0;
    for (uint32_t i = 0; i < tk->tokens.n; i++) {
        size_t n = make_piece(tk, i, tmp);
        strs_add(&tk->pieces, &pos, tmp, n);
    }
    free(tmp);
    return PARE_OK;
}

/* ------------------------------------------------------------------ new / free */

void pare_tokenizer_free(pare_tokenizer *tk) {
    if (!tk) return;
    tok_pre_free(tk->pre);
    free(tk->pre_name);
    strs_free(&tk->tokens);
    tok_map_free(&tk->token_map);
    free(tk->scores);
    free(tk->attr);
    strs_free(&tk->pieces);
    strs_free(&tk->merges);
    tok_map_free(&tk->merge_map);
    free(tk->special);
    free(tk);
}

static pare_status pick_model(pare_tokenizer *tk, const pare_meta *meta, const pare_tok_regex_pre *custom,
                              pare_err *err) {
    const pare_kv *kv = pare_meta_get(meta, "tokenizer.ggml.model");
    FAIL_IF(!kv, PARE_EINPUT, "tokenizer metadata: no tokenizer.ggml.model");
    FAIL_IF(kv->type != PARE_META_STRING, PARE_EINPUT, "tokenizer metadata: tokenizer.ggml.model is %s, expected a string",
            pare_meta_type_name(kv->type));
    const char *model = kv->str.s;
    if (strcmp(model, "llama") == 0) {
        tk->type = TOK_SPM;
    } else if (strcmp(model, "gpt2") == 0) {
        tk->type = TOK_BPE;
    } else {
        static const char *const known[] = {"bert", "t5", "rwkv", "no_vocab", "none"};
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            FAIL_IF(strcmp(model, known[i]) == 0, PARE_EUNSUPPORTED,
                    "tokenizer model '%s' is not supported (pare handles 'llama' and 'gpt2')", model);
        return pare_err_set(err, PARE_EUNSUPPORTED, "unknown tokenizer model '%.100s'", model);
    }
    if (custom) { /* GPT-2's vocabulary defaults, the given regexes */
        FAIL_IF(tk->type != TOK_BPE, PARE_EUNSUPPORTED, "tokenizer: a regex pre-tokenizer needs a gpt2 (BPE) vocabulary, not '%s'",
                model);
        tk->pre_def = tok_pre_find("gpt-2");
        tk->pre_name = strdup(custom->name ? custom->name : "custom");
        FAIL_IF(!tk->pre_name, PARE_ENOMEM, "tokenizer: out of memory");
        return PARE_OK;
    }
    const pare_kv *pk = pare_meta_get(meta, "tokenizer.ggml.pre");
    FAIL_IF(pk && pk->type != PARE_META_STRING, PARE_EINPUT, "tokenizer metadata: tokenizer.ggml.pre is %s, expected a string",
            pare_meta_type_name(pk->type));
    const char *pre = pk ? pk->str.s : NULL;
    if (tk->type == TOK_BPE) { /* SPM vocabularies ignore pre, as llama.cpp */
        tk->pre_def = tok_pre_find(pre);
        FAIL_IF(!tk->pre_def, PARE_EUNSUPPORTED, "unknown pre-tokenizer type '%.100s' (tokenizer.ggml.pre)", pre);
    }
    tk->pre_name = strdup(pre && *pre ? pre : "default");
    FAIL_IF(!tk->pre_name, PARE_ENOMEM, "tokenizer: out of memory");
    return PARE_OK;
}

static pare_status tokenizer_load(pare_tokenizer *tk, const pare_meta *meta, const pare_tok_regex_pre *custom,
                                  pare_err *err) {
    TRY(pick_model(tk, meta, custom, err));
    TRY(load_tokens(tk, meta, err));
    TRY(load_scores_types(tk, meta, err));
    if (tk->type == TOK_BPE) {
        TRY(load_merges(tk, meta, err));
        if (custom)
            TRY(tok_pre_compile_list(tk->pre_name, custom->regexes, custom->n, custom->multiline, custom->byte_level_at,
                                     &tk->pre, err));
        else
            TRY(tok_pre_compile(tk->pre_def, &tk->pre, err));
        tok_bpe_init_bytes(tk);
    }
    TRY(load_flags(tk, meta, err));
    if (custom) tk->ignore_merges = custom->ignore_merges;
    TRY(force_control(tk, meta, err));
    TRY(build_special_list(tk, err));
    set_strip_flags(tk, meta);
    if (tk->type == TOK_SPM) {
        find_byte_tokens(tk);
        tk->spm_cut_at_space = spm_cut_at_space(tk);
    }
    return build_pieces(tk, err);
}

static pare_status tokenizer_new(const pare_meta *meta, const pare_tok_regex_pre *custom, pare_tokenizer **out,
                                 pare_err *err) {
    *out = NULL;
    pare_tokenizer *tk = calloc(1, sizeof *tk);
    FAIL_IF(!tk, PARE_ENOMEM, "tokenizer: out of memory");
    pare_status st = tokenizer_load(tk, meta, custom, err);
    if (st != PARE_OK) {
        pare_tokenizer_free(tk);
        return st;
    }
    *out = tk;
    return PARE_OK;
}

pare_status pare_tokenizer_new(const pare_meta *meta, pare_tokenizer **out, pare_err *err) {
    return tokenizer_new(meta, NULL, out, err);
}

pare_status pare_tokenizer_new_regex(const pare_meta *meta, const pare_tok_regex_pre *pre, pare_tokenizer **out,
                                     pare_err *err) {
    return tokenizer_new(meta, pre, out, err);
}

/* ------------------------------------------------------------------ tokenizing */

/* A stretch of the input: text still to tokenize (token < 0), or a token cut out. */
typedef struct frag {
    int32_t token;
    size_t off, len;
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static pare_status frags_push(frags *f, int32_t token, size_t off, size_t len, pare_err *err) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        FAIL_IF(!v, PARE_ENOMEM, "tokenizer: out of memory");
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (frag){token, off, len};
    return PARE_OK;
}

static bool c_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t k) {
    if (k == 0 || k > n) return NULL;
    const char *end = hay + n - k + 1;
    for (const char *p = hay; p < end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, needle, k) == 0) return p;
    }
    return NULL;
}

/* Splits one text fragment around every occurrence of special token id, left to right. */
static pare_status cut_token(const pare_tokenizer *tk, const char *text, frag f, int32_t id, frags *dst,
                             pare_err *err) {
    const char *tok = tk->tokens.arena + tk->tokens.off[id];
    size_t k = tk->tokens.len[id], base = f.off, n = f.len;
    uint16_t a = tk->attr[id];
    while (n > 0) {
        const char *m = find_bytes(text + base, n, tok, k);
        if (!m) return frags_push(dst, -1, base, n, err);
        size_t ms = (size_t)(m - text), left = ms - base;
        if (a & TOK_ATTR_LSTRIP)
            while (left > 0 && c_isspace(text[base + left - 1])) left--;
        if (left > 0) TRY(frags_push(dst, -1, base, left, err));
        TRY(frags_push(dst, id, 0, 0, err));
        size_t roff = ms + k, rlen = base + n - roff;
        if (a & TOK_ATTR_RSTRIP)
            while (rlen > 0 && c_isspace(text[roff])) roff++, rlen--;
        base = roff, n = rlen;
    }
    return PARE_OK;
}

/* llama.cpp's tokenizer_st_partition with parse_special = false: only user-defined
 * tokens are cut out, longest first. */
static pare_status partition(const pare_tokenizer *tk, const char *text, size_t len, frags *f, pare_err *err) {
    if (len > 0) TRY(frags_push(f, -1, 0, len, err));
    frags next = {0};
    pare_status st = PARE_OK;
    for (size_t s = 0; st == PARE_OK && s < tk->n_special; s++) {
        int32_t id = tk->special[s];
        if (!(tk->attr[id] & TOK_ATTR_USER_DEFINED)) continue;
        next.n = 0;
        for (size_t i = 0; st == PARE_OK && i < f->n; i++)
            st = f->v[i].token >= 0 ? frags_push(&next, f->v[i].token, 0, 0, err)
                                    : cut_token(tk, text, f->v[i], id, &next, err);
        frags t = *f;
        *f = next;
        next = t;
    }
    free(next.v);
    return st;
}

/* SPM: a space in front of the first fragment and of each one after a cut-out token
 * (when add_space_prefix), then every ' ' written as U+2581. */
static pare_status spm_fragment(const pare_tokenizer *tk, const char *text, size_t len, bool prefix, tok_out *out,
                                pare_err *err) {
    FAIL_IF(len > (SIZE_MAX - 3) / 3, PARE_ENOMEM, "tokenizer: text of %zu bytes is too long", len);
    char *buf = malloc(3 * (len + 1));
    FAIL_IF(!buf, PARE_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    size_t o = 0;
    if (prefix) memcpy(buf, "\xe2\x96\x81", 3), o = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(buf + o, "\xe2\x96\x81", 3), o += 3;
        else
            buf[o++] = text[i];
    }
    pare_status st = tok_spm_tokenize(tk, buf, o, out, err);
    free(buf);
    return st;
}

static pare_status tokenize_frags(const pare_tokenizer *tk, const char *text, const frags *f, tok_out *out,
                                  pare_err *err) {
    bool prev_special = true;
    for (size_t i = 0; i < f->n; i++) {
        const frag *g = &f->v[i];
        if (g->token >= 0) {
            TRY(tok_out_push(out, g->token, err));
            prev_special = true;
        } else if (tk->type == TOK_SPM) {
            TRY(spm_fragment(tk, text + g->off, g->len, tk->add_space_prefix && prev_special, out, err));
            prev_special = false;
        } else {
            TRY(tok_bpe_tokenize(tk, text + g->off, g->len, out, err));
        }
    }
    return PARE_OK;
}

pare_status pare_tokenize(const pare_tokenizer *tk, const char *text, size_t len, bool add_special,
                          int32_t **tokens, size_t *n_tokens, pare_err *err) {
    *tokens = NULL;
    *n_tokens = 0;
    FAIL_IF(!text && len > 0, PARE_EUSAGE, "tokenizer: no text given");
    FAIL_IF(add_special && tk->add_bos && tk->bos < 0, PARE_EINPUT,
            "tokenizer: the vocabulary asks for a BOS token (add_bos_token) but has none");
    FAIL_IF(add_special && tk->add_eos && tk->eos < 0, PARE_EINPUT,
            "tokenizer: the vocabulary asks for an EOS token (add_eos_token) but has none");
    tok_out out = {0};
    frags f = {0};
    pare_status st = PARE_OK;
    if (add_special && tk->add_bos) st = tok_out_push(&out, tk->bos, err);
    if (st == PARE_OK) st = partition(tk, text, len, &f, err);
    if (st == PARE_OK) st = tokenize_frags(tk, text, &f, &out, err);
    if (st == PARE_OK && add_special && tk->add_eos) st = tok_out_push(&out, tk->eos, err);
    free(f.v);
    if (st != PARE_OK || out.n == 0) {
        free(out.v);
        return st;
    }
    *tokens = out.v;
    *n_tokens = out.n;
    return PARE_OK;
}

/* ------------------------------------------------------------------ queries */

const char *pare_token_piece(const pare_tokenizer *tk, int32_t id, size_t *len) {
    if (!tk || id < 0 || (uint32_t)id >= tk->pieces.n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tk->pieces.len[id];
    return tk->pieces.arena + tk->pieces.off[id];
}

const char *pare_token_text(const pare_tokenizer *tk, int32_t id) { return pare_token_piece(tk, id, NULL); }
int32_t pare_tokenizer_bos(const pare_tokenizer *tk) { return tk->bos; }
int32_t pare_tokenizer_eos(const pare_tokenizer *tk) { return tk->eos; }
bool pare_tokenizer_add_bos(const pare_tokenizer *tk) { return tk->add_bos && tk->bos >= 0; }
bool pare_tokenizer_add_eos(const pare_tokenizer *tk) { return tk->add_eos && tk->eos >= 0; }
size_t pare_tokenizer_n_vocab(const pare_tokenizer *tk) { return tk->tokens.n; }
const char *pare_tokenizer_model(const pare_tokenizer *tk) { return tk->type == TOK_SPM ? "llama" : "gpt2"; }
const char *pare_tokenizer_pre(const pare_tokenizer *tk) { return tk->pre_name; }

/* ---- the merge queue (tok_impl.h) ---- */

static bool bg_before(const pare_tok_bigram *a, const pare_tok_bigram *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

pare_status pare_tok_heap_push(pare_tok_heap *h, pare_tok_bigram b, pare_err *err) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        pare_tok_bigram *v = realloc(h->v, cap * sizeof *v);
        FAIL_IF(!v, PARE_ENOMEM, "tokenizer: out of memory for the merge queue");
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && bg_before(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = b;
    return PARE_OK;
}

pare_tok_bigram pare_tok_heap_pop(pare_tok_heap *h) {
    pare_tok_bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bg_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bg_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}
