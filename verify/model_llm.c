/*
 * verify/model_llm.c - building a pare_llm from a model with GGUF names and metadata:
 * hyper-parameters from the ARCH.* keys (as llama.cpp's llm_load_hparams reads them), the
 * tensors each architecture needs (checked for presence, shape and a readable type), and
 * the scratch buffers of the forward pass.
 */
#include "verify/llm_impl.h"

#include <sys/mman.h>

#include "core/arch.h"
#include "quant/quant.h" /* core/arch.h: h-moe wiring */

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest dimension pare accepts from metadata: far above any real model, and small
 * enough that products of two of them fit in int64 and buffer sizes in size_t. */
#define LLM_MAX_DIM (1 << 24)
#define LLM_MAX_LAYERS 4096

/* ------------------------------------------------------------------------ metadata */

/* Reads ARCH.suffix as an integer in [lo, hi]; absent -> *v = def, or an error when def < 0. */
static pare_status meta_int(const pare_llm *llm, const char *arch, const char *suffix, int64_t def, int64_t lo,
                            int64_t hi, int *v, pare_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pare_kv *kv = pare_meta_get(&llm->m->meta, key);
    if (!kv) {
        FAIL_IF(def < 0, PARE_EINPUT, "%s: metadata key %s is missing", llm->name, key);
        *v = (int)def;
        return PARE_OK;
    }
    int64_t x;
    FAIL_IF(kv->type == PARE_META_ARRAY, PARE_EUNSUPPORTED, "%s: %s is an array (per-layer values are not supported)",
            llm->name, key);
    FAIL_IF(!pare_meta_get_i64(&llm->m->meta, key, &x), PARE_EINPUT, "%s: %s is a %s, not an integer", llm->name, key,
            pare_meta_type_name(kv->type));
    FAIL_IF(x < lo || x > hi, PARE_EINPUT, "%s: %s = %lld is outside [%lld, %lld]", llm->name, key, (long long)x,
            (long long)lo, (long long)hi);
    *v = (int)x;
    return PARE_OK;
}

static pare_status meta_float(const pare_llm *llm, const char *arch, const char *suffix, double def, float *v,
                              pare_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pare_kv *kv = pare_meta_get(&llm->m->meta, key);
    if (!kv) {
        FAIL_IF(isnan(def), PARE_EINPUT, "%s: metadata key %s is missing", llm->name, key);
        *v = (float)def;
        return PARE_OK;
    }
    double x;
    FAIL_IF(!pare_meta_get_f64(&llm->m->meta, key, &x), PARE_EINPUT, "%s: %s is a %s, not a number", llm->name, key,
            pare_meta_type_name(kv->type));
    FAIL_IF(!isfinite(x), PARE_EINPUT, "%s: %s is not finite", llm->name, key);
    *v = (float)x;
    return PARE_OK;
}

static pare_status read_hparams(pare_llm *llm, const char *a, pare_err *err) {
    TRY(meta_int(llm, a, "block_count", -1, 1, LLM_MAX_LAYERS, &llm->n_layer, err));
    TRY(meta_int(llm, a, "embedding_length", -1, 1, LLM_MAX_DIM, &llm->n_embd, err));
    TRY(meta_int(llm, a, "attention.head_count", -1, 1, LLM_MAX_DIM, &llm->n_head, err));
    TRY(meta_int(llm, a, "attention.head_count_kv", llm->n_head, 1, llm->n_head, &llm->n_head_kv, err));
    TRY(meta_int(llm, a, "context_length", 0, 0, INT32_MAX, &llm->n_ctx_train, err));
    FAIL_IF(llm->n_head % llm->n_head_kv, PARE_EINPUT, "%s: head_count %d is not a multiple of head_count_kv %d",
            llm->name, llm->n_head, llm->n_head_kv);
    int def_head = llm->n_embd % llm->n_head ? -1 : llm->n_embd / llm->n_head;
    int kl, vl;
    TRY(meta_int(llm, a, "attention.key_length", def_head, 1, LLM_MAX_DIM, &kl, err));
    TRY(meta_int(llm, a, "attention.value_length", kl, 1, LLM_MAX_DIM, &vl, err));
    FAIL_IF(kl != vl, PARE_EUNSUPPORTED, "%s: key_length %d differs from value_length %d", llm->name, kl, vl);
    llm->n_embd_head = kl;
    llm->kq_scale = 1.0f / sqrtf((float)kl);
    if (llm->arch == LLM_ARCH_GPT2) {
        TRY(meta_float(llm, a, "attention.layer_norm_epsilon", NAN, &llm->norm_eps, err));
        FAIL_IF(llm->n_embd_head * llm->n_head != llm->n_embd, PARE_EUNSUPPORTED,
                "%s: gpt2 with head size %d x %d heads != embedding %d", llm->name, kl, llm->n_head, llm->n_embd);
        return PARE_OK;
    }
    TRY(meta_float(llm, a, "attention.layer_norm_rms_epsilon", NAN, &llm->norm_eps, err));
    TRY(meta_float(llm, a, "rope.freq_base", 10000.0, &llm->rope_freq_base, err));
    TRY(meta_int(llm, a, "rope.dimension_count", kl, 2, kl, &llm->n_rot, err));
    FAIL_IF(llm->n_rot % 2, PARE_EINPUT, "%s: rope.dimension_count %d is odd", llm->name, llm->n_rot);
    llm->rope_neox = llm->arch == LLM_ARCH_QWEN2;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    const char *st = pare_meta_get_str(&llm->m->meta, key);
    float factor = 0;
    TRY(meta_float(llm, a, "rope.scaling.factor", 0.0, &factor, err));
    if (factor == 0) TRY(meta_float(llm, a, "rope.scale_linear", 0.0, &factor, err)); /* older files */
    llm->rope_freq_scale = 1.0f;
    if (st && strcmp(st, "none") != 0) {
        FAIL_IF(strcmp(st, "linear") != 0, PARE_EUNSUPPORTED, "%s: RoPE scaling '%s' is not supported (none, linear)",
                llm->name, st);
        FAIL_IF(!(factor > 0), PARE_EINPUT, "%s: linear RoPE scaling without a positive factor", llm->name);
    }
    if ((!st || strcmp(st, "none") != 0) && factor > 0) llm->rope_freq_scale = 1.0f / factor;
    return PARE_OK;
}

/* tokenizer.ggml.add_bos_token, with llama.cpp's defaults: true for a sentencepiece vocab. */
static void read_bos(pare_llm *llm) {
    const pare_meta *me = &llm->m->meta;
    const char *tm = pare_meta_get_str(me, "tokenizer.ggml.model");
    bool spm = !tm || strcmp(tm, "llama") == 0;
    uint64_t id;
    llm->bos = pare_meta_get_u64(me, "tokenizer.ggml.bos_token_id", &id) && id < (uint64_t)llm->n_vocab
                   ? (int32_t)id
                   : (spm && llm->n_vocab > 1 ? 1 : -1);
    bool ab;
    llm->add_bos = pare_meta_get_bool(me, "tokenizer.ggml.add_bos_token", &ab) ? ab : spm;
    if (llm->bos < 0) llm->add_bos = false;
}

/* ------------------------------------------------------------------------ tensors */

static bool type_readable(pare_type t) {
    const pare_type_info *ti = pare_type_get(t);
    return ti && (ti->is_float || pare_quant_can_dequantize(t));
}

/* Finds NAME (printf format) and checks its shape is [ne0] or [ne0, ne1]. */
static pare_status find_tensor(const pare_llm *llm, bool required, int64_t ne0, int64_t ne1, const pare_tensor **out,
                               pare_err *err, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static pare_status find_tensor(const pare_llm *llm, bool required, int64_t ne0, int64_t ne1, const pare_tensor **out,
                               pare_err *err, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    const pare_tensor *t = pare_model_find(llm->m, name);
    if (!t) {
        FAIL_IF(required, PARE_EINPUT, "%s: tensor '%s' is missing", llm->name, name);
        return PARE_OK;
    }
    char sh[96];
    bool ok = t->ne[0] == ne0 && t->ne[1] == (ne1 ? ne1 : 1) && t->ne[2] == 1 && t->ne[3] == 1;
    FAIL_IF(!ok, PARE_EINPUT, "%s: tensor '%s' has shape %s, expected [%lld%s%lld]", llm->name, name,
            pare_tensor_shape_str(t, sh, sizeof sh), (long long)ne0, ne1 ? ", " : "", (long long)ne1);
    FAIL_IF(!type_readable(t->type), PARE_EUNSUPPORTED, "%s: tensor '%s': pare cannot read type %s", llm->name, name,
            pare_type_name(t->type));
    uint64_t nb;
    TRY(pare_tensor_nbytes(t->type, t->n_dims, t->ne, &nb, err));
    FAIL_IF(nb != t->n_bytes, PARE_EINPUT, "%s: tensor '%s' holds %llu bytes, its shape and type need %llu", llm->name,
            name, (unsigned long long)t->n_bytes, (unsigned long long)nb);
    *out = t;
    return PARE_OK;
}

static pare_status find_mat(const pare_llm *llm, bool required, int64_t n_in, int64_t n_out, llm_mat *w,
                            pare_err *err, const char *name) {
    TRY(find_tensor(llm, required, n_in, n_out, &w->t, err, "%s", name));
    w->n_in = n_in;
    w->n_out = n_out;
    return PARE_OK;
}

/* A 1-D tensor converted to an owned f32 array of n values (NULL when absent and optional). */
static pare_status find_vec(const pare_llm *llm, bool required, int64_t n, float **out, pare_err *err,
                            const char *name) {
    const pare_tensor *t;
    *out = NULL;
    TRY(find_tensor(llm, required, n, 0, &t, err, "%s", name));
    if (!t) return PARE_OK;
    float *v = malloc((size_t)n * sizeof *v);
    FAIL_IF(!v, PARE_ENOMEM, "%s: out of memory for '%s'", llm->name, name);
    pare_status st = pare_tensor_to_f32(t, v, 1, err);
    if (st) {
        free(v);
        return st;
    }
    *out = v;
    return PARE_OK;
}

static pare_status load_layer(pare_llm *llm, int il, llm_layer *L, pare_err *err) {
    const int64_t D = llm->n_embd, hq = (int64_t)llm->n_head * llm->n_embd_head,
                  hkv = (int64_t)llm->n_head_kv * llm->n_embd_head;
    const bool gpt2 = llm->arch == LLM_ARCH_GPT2, qwen2 = llm->arch == LLM_ARCH_QWEN2;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(find_vec(llm, true, D, &L->attn_norm, err, NAME("attn_norm.weight")));
    TRY(find_vec(llm, gpt2, D, &L->attn_norm_b, err, NAME("attn_norm.bias")));
    TRY(find_vec(llm, true, D, &L->ffn_norm, err, NAME("ffn_norm.weight")));
    TRY(find_vec(llm, gpt2, D, &L->ffn_norm_b, err, NAME("ffn_norm.bias")));
    if (gpt2) {
        TRY(find_mat(llm, true, D, D + 2 * hkv, &L->wqkv, err, NAME("attn_qkv.weight")));
        TRY(find_vec(llm, true, D + 2 * hkv, &L->bqkv, err, NAME("attn_qkv.bias")));
    } else {
        TRY(find_mat(llm, true, D, hq, &L->wq, err, NAME("attn_q.weight")));
        TRY(find_mat(llm, true, D, hkv, &L->wk, err, NAME("attn_k.weight")));
        TRY(find_mat(llm, true, D, hkv, &L->wv, err, NAME("attn_v.weight")));
        TRY(find_vec(llm, qwen2, hq, &L->bq, err, NAME("attn_q.bias")));
        TRY(find_vec(llm, qwen2, hkv, &L->bk, err, NAME("attn_k.bias")));
        TRY(find_vec(llm, qwen2, hkv, &L->bv, err, NAME("attn_v.bias")));
    }
    TRY(find_mat(llm, true, hq, D, &L->wo, err, NAME("attn_output.weight")));
    TRY(find_vec(llm, gpt2, D, &L->bo, err, NAME("attn_output.bias")));
    if (llm->n_expert > 0) return llm_moe_load(llm, il, L, err); /* h-moe wiring */
    /* The FFN width is read from ffn_up, so that it may differ between layers. */
    const pare_tensor *up = pare_model_find(llm->m, NAME("ffn_up.weight"));
    FAIL_IF(!up, PARE_EINPUT, "%s: tensor '%s' is missing", llm->name, n);
    int64_t F = up->ne[1];
    FAIL_IF(F < 1 || F > LLM_MAX_DIM, PARE_EINPUT, "%s: tensor '%s' has %lld rows", llm->name, n, (long long)F);
    if (F > llm->n_ff_max) llm->n_ff_max = (int)F;
    TRY(find_mat(llm, true, D, F, &L->ffn_up, err, n));
    TRY(find_mat(llm, !gpt2, D, F, &L->ffn_gate, err, NAME("ffn_gate.weight")));
    FAIL_IF(gpt2 && L->ffn_gate.t, PARE_EUNSUPPORTED, "%s: gpt2 with a gated FFN ('%s')", llm->name, n);
    TRY(find_mat(llm, true, F, D, &L->ffn_down, err, NAME("ffn_down.weight")));
    TRY(find_vec(llm, gpt2, F, &L->ffn_up_b, err, NAME("ffn_up.bias")));
    TRY(find_vec(llm, false, F, &L->ffn_gate_b, err, NAME("ffn_gate.bias")));
    TRY(find_vec(llm, gpt2, D, &L->ffn_down_b, err, NAME("ffn_down.bias")));
#undef NAME
    return PARE_OK;
}

enum { LAYER_MATS = 8 };
/* A layer's weight matrices (some may have no tensor). */
static void layer_mats(llm_layer *L, llm_mat *ms[LAYER_MATS]) {
    llm_mat *all[LAYER_MATS] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    memcpy(ms, all, sizeof all);
}

static pare_status load_tensors(pare_llm *llm, pare_err *err) {
    const int64_t D = llm->n_embd;
    const bool gpt2 = llm->arch == LLM_ARCH_GPT2;
    const pare_tensor *te = pare_model_find(llm->m, "token_embd.weight");
    FAIL_IF(!te, PARE_EINPUT, "%s: tensor 'token_embd.weight' is missing", llm->name);
    FAIL_IF(te->ne[1] < 1 || te->ne[1] > INT32_MAX, PARE_EINPUT, "%s: token_embd.weight has %lld rows", llm->name,
            (long long)te->ne[1]);
    llm->n_vocab = (int)te->ne[1];
    TRY(find_mat(llm, true, D, llm->n_vocab, &llm->tok_embd, err, "token_embd.weight"));
    if (gpt2) {
        const pare_tensor *pe = pare_model_find(llm->m, "position_embd.weight");
        FAIL_IF(!pe, PARE_EINPUT, "%s: tensor 'position_embd.weight' is missing", llm->name);
        FAIL_IF(pe->ne[1] < 1 || pe->ne[1] > INT32_MAX, PARE_EINPUT, "%s: position_embd.weight has %lld rows",
                llm->name, (long long)pe->ne[1]);
        TRY(find_mat(llm, true, D, pe->ne[1], &llm->pos_embd, err, "position_embd.weight"));
    }
    TRY(find_vec(llm, true, D, &llm->out_norm, err, "output_norm.weight"));
    TRY(find_vec(llm, gpt2, D, &llm->out_norm_b, err, "output_norm.bias"));
    TRY(find_mat(llm, false, D, llm->n_vocab, &llm->output, err, "output.weight"));
    if (!llm->output.t) llm->output = llm->tok_embd; /* tied embeddings */
    llm->output_name = "output.weight";
    if (!gpt2) TRY(find_vec(llm, false, llm->n_rot / 2, &llm->rope_freqs, err, "rope_freqs.weight"));
    llm->layers = calloc((size_t)llm->n_layer, sizeof *llm->layers);
    FAIL_IF(!llm->layers, PARE_ENOMEM, "%s: out of memory", llm->name);
    for (int il = 0; il < llm->n_layer; il++) TRY(load_layer(llm, il, &llm->layers[il], err));
    /* The output matrix (often the largest) is dequantized in blocks of rows no bigger than
     * the largest matrix of a layer, so a pass holds at most that much in f32. */
    for (int il = 0; il < llm->n_layer; il++) {
        llm_mat *ms[LAYER_MATS];
        layer_mats(&llm->layers[il], ms);
        for (size_t i = 0; i < LAYER_MATS; i++)
            if (ms[i]->t && (size_t)(ms[i]->n_in * ms[i]->n_out) > llm->wblock) llm->wblock = (size_t)(ms[i]->n_in * ms[i]->n_out);
    }
    return PARE_OK;
}

/* Touches every page of the weights that are read in place (mapped files), so that the page
 * faults happen while loading, not inside the timed evaluation: what llama.cpp's loader does
 * with MAP_POPULATE. One read per 4 KiB page; the kernel maps its neighbours around it. */
static void prefault(const pare_model *m) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const uint8_t *p = m->tensors[i].data;
        if (!p) continue;
        for (uint64_t o = 0; o < m->tensors[i].n_bytes; o += 4096) sink ^= p[o];
    }
    (void)sink;
}

pare_status pare_llm_new(const pare_model *m, int n_threads, pare_llm **out, pare_err *err) {
    *out = NULL;
    const char *path = m->path ? m->path : "model";
    FAIL_IF(!m->gguf_names, PARE_EUNSUPPORTED, "%s: tensors do not carry GGUF names (load it with GGUF naming)", path);
    const char *arch = pare_meta_get_str(&m->meta, "general.architecture");
    if (!arch) arch = m->arch;
    FAIL_IF(!arch, PARE_EINPUT, "%s: no general.architecture", path);
    llm_arch a;
    if (strcmp(arch, "llama") == 0) a = LLM_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0 || strcmp(arch, "qwen2moe") == 0) a = LLM_ARCH_QWEN2; /* h-moe wiring */
    else if (strcmp(arch, "gpt2") == 0) a = LLM_ARCH_GPT2;
    else return pare_err_set(err, PARE_EUNSUPPORTED, "%s: architecture '%s' is not supported (llama, qwen2, gpt2)",
                             path, arch);
    pare_llm *llm = calloc(1, sizeof *llm);
    FAIL_IF(!llm, PARE_ENOMEM, "out of memory");
    llm->m = m;
    llm->arch = a;
    snprintf(llm->name, sizeof llm->name, "%s", path);
    llm->n_threads = n_threads > 0 ? n_threads : pare_default_threads();
    llm->ggml_round = true;
    llm->ad = pare_arch_find(arch); /* h-moe wiring */
    pare_status st = read_hparams(llm, arch, err);
    if (!st) st = llm_moe_hparams(llm, err); /* h-moe wiring */
    if (!st) st = load_tensors(llm, err);
    if (st) {
        pare_llm_free(llm);
        return st;
    }
    read_bos(llm);
    /* With 8-bit activations one ulp in the attention can flip a code and travel along the
     * sequence, so there its products follow ggml's order exactly (slower); with f32/f16/bf16
     * weights the difference stays at float rounding and the blocked GEMM is used. */
    for (size_t i = 0; i < m->n_tensors; i++)
        if (pare_type_get(m->tensors[i].type)->is_quantized && m->tensors[i].n_dims == 2) llm->att_exact = true;
    prefault(m);
    *out = llm;
    return PARE_OK;
}

pare_status llm_sync_pool(pare_llm *llm, pare_err *err) {
    if (llm->pool && pare_pool_threads(llm->pool) == llm->n_threads) return PARE_OK;
    pare_pool_free(llm->pool);
    llm->pool = llm->n_threads > 1 ? pare_pool_new(llm->n_threads) : NULL;
    FAIL_IF(llm->n_threads > 1 && !llm->pool, PARE_ENOMEM, "%s: cannot start %d threads", llm->name, llm->n_threads);
    return PARE_OK;
}

void pare_llm_free(pare_llm *llm) {
    if (!llm) return;
    for (int il = 0; llm->layers && il < llm->n_layer; il++) {
        llm_layer *L = &llm->layers[il];
        float *v[] = {L->attn_norm, L->attn_norm_b, L->bq,         L->bk,         L->bv,         L->bqkv,
                      L->bo,        L->ffn_norm,    L->ffn_norm_b, L->ffn_gate_b, L->ffn_up_b,   L->ffn_down_b};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
        llm_mat *ms[LAYER_MATS];
        layer_mats(L, ms);
        for (size_t i = 0; i < LAYER_MATS; i++) free(ms[i]->packed);
        llm_moe_free(L->moe); /* h-moe wiring */
    }
    free(llm->output.packed);
    pare_pool_free(llm->pool);
    free(llm->layers);
    free(llm->out_norm);
    free(llm->out_norm_b);
    free(llm->rope_freqs);
    free(llm->wbuf);
    free(llm->gws);
    free(llm->qws);
    free(llm->lbuf);
    float *b[] = {llm->x, llm->xn, llm->q, llm->k, llm->v, llm->att, llm->h1, llm->h2, llm->tmp, llm->rope};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
    free(llm);
}

int pare_llm_n_vocab(const pare_llm *llm) { return llm->n_vocab; }
int pare_llm_n_ctx_train(const pare_llm *llm) { return llm->n_ctx_train; }
bool pare_llm_add_bos(const pare_llm *llm) { return llm->add_bos; }
int32_t pare_llm_bos(const pare_llm *llm) { return llm->bos; }

void pare_llm_set_act_hook(pare_llm *llm, pare_llm_act_fn fn, void *user) {
    llm->hook = fn;
    llm->hook_user = user;
}

void pare_llm_set_ggml_rounding(pare_llm *llm, bool on) { llm->ggml_round = on; }

/* ------------------------------------------------------------------------ scratch */

void *llm_big_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge / 2) return malloc(bytes ? bytes : 1);
    const size_t n = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, n)) return NULL;
#if defined(MADV_HUGEPAGE)
    madvise(p, n, MADV_HUGEPAGE); /* a hint: without it the memory is just 4 KiB pages */
#endif
    return p;
}

bool llm_ws_reserve(void **buf, size_t *cap, size_t bytes) {
    if (bytes <= *cap && *buf) return true;
    free(*buf);
    *buf = llm_big_alloc(bytes);
    *cap = *buf ? bytes : 0;
    return *buf != NULL;
}

/* The contents are not kept: a pass fills its buffers from the start. */
static pare_status grow(float **p, size_t n, pare_err *err) {
    free(*p);
    *p = llm_big_alloc(n * sizeof **p);
    FAIL_IF(!*p, PARE_ENOMEM, "out of memory for %zu activations", n);
    return PARE_OK;
}

pare_status llm_reserve(pare_llm *llm, int n_tokens, pare_err *err) {
    if (n_tokens <= llm->cap_tokens) return PARE_OK;
    const size_t T = (size_t)n_tokens, D = (size_t)llm->n_embd, F = (size_t)llm->n_ff_max;
    const size_t hq = (size_t)llm->n_head * llm->n_embd_head, hkv = (size_t)llm->n_head_kv * llm->n_embd_head;
    size_t wide = D + 2 * hkv;
    if (hq > wide) wide = hq;
    if (F > wide) wide = F;
    TRY(grow(&llm->x, T * D, err));
    TRY(grow(&llm->xn, T * D, err));
    TRY(grow(&llm->q, T * (llm->arch == LLM_ARCH_GPT2 ? D + 2 * hkv : hq), err));
    TRY(grow(&llm->k, T * hkv, err));
    TRY(grow(&llm->v, T * hkv, err));
    TRY(grow(&llm->att, T * hq, err));
    TRY(grow(&llm->h1, T * F, err));
    TRY(grow(&llm->h2, T * F, err));
    TRY(grow(&llm->tmp, T * wide, err));
    TRY(grow(&llm->rope, T * (size_t)(llm->n_rot > 0 ? llm->n_rot : 1), err));
    /* touched now, once, rather than page by page inside the products */
    float *b[] = {llm->x, llm->xn, llm->att, llm->h1, llm->h2, llm->tmp};
    const size_t nb[] = {T * D, T * D, T * hq, T * F, T * F, T * wide};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) memset(b[i], 0, nb[i] * sizeof(float));
    memset(llm->q, 0, T * (llm->arch == LLM_ARCH_GPT2 ? D + 2 * hkv : hq) * sizeof(float));
    memset(llm->k, 0, T * hkv * sizeof(float));
    memset(llm->v, 0, T * hkv * sizeof(float));
    llm->cap_tokens = n_tokens;
    return PARE_OK;
}

/* For long evaluations, f32 weights read in place from a mapped file are laid out once for
 * the f32 product (llm_gemm_pack) in huge-page memory, and the file's pages given back:
 * packing each panel at every product waits on memory (4 KiB pages, rows read in short runs),
 * and the evaluation runs about 13% faster without it. The copy replaces the mapped pages, so
 * the memory in use stays about the same, but new memory has to be touched: 0.5-0.9 s for the
 * 440 MB of the `small` bench model on the machine this was measured on, repaid after about
 * 30 chunks of 512 tokens. Weights held in memory (not mapped) are left alone: a
 * copy would double them. Without memory for a copy, the products pack as they go. */
static void pack_mat(pare_llm *llm, llm_mat *w) {
    const pare_tensor *t = w->t;
    if (!t || w->packed || t->type != PARE_TYPE_F32 || !t->data || t->source < 0 || (uintptr_t)t->data % sizeof(float))
        return;
    if (w->n_in > INT_MAX || w->n_out > INT_MAX) return;
    const size_t len = llm_gemm_packed_len((int)w->n_out, (int)w->n_in);
    if (!len || !(w->packed = llm_big_alloc(len * sizeof(float)))) return;
    llm_gemm_pack(llm->pool, (int)w->n_out, (int)w->n_in, t->data, (int)w->n_in, w->packed);
    if (t != llm->tok_embd.t && t != llm->pos_embd.t) pare_model_release_tensor(llm->m, t);
}

pare_status pare_llm_prepare(pare_llm *llm, int n_tokens, int n_passes, pare_err *err) {
    FAIL_IF(n_tokens < 1, PARE_EUSAGE, "%s: nothing to prepare for (%d tokens)", llm->name, n_tokens);
    /* the chunks that pare_perplexity evaluates together */
    const int rows = n_tokens * llm_batch_seqs(n_tokens, n_passes);
    TRY(llm_reserve(llm, rows, err));
    TRY(llm_sync_pool(llm, err));
    const int K = llm->n_embd > llm->n_ff_max ? llm->n_embd : llm->n_ff_max;
    size_t qws = llm_qgemm_ws(rows, K);
    if (K % 256 == 0 && llm_kgemm_ws(rows, K) > qws) qws = llm_kgemm_ws(rows, K);
    FAIL_IF(!llm_ws_reserve((void **)&llm->gws, &llm->gws_cap, llm_gemm_ws(rows, K) * sizeof(float)) ||
                !llm_ws_reserve(&llm->qws, &llm->qws_cap, qws),
            PARE_ENOMEM, "%s: out of memory for the products' workspaces", llm->name);
    /* the logits of the scored half of a perplexity chunk: llama.cpp reserves its output
     * buffer when the context is made */
    const size_t lbytes = (size_t)(n_tokens - n_tokens / 2) * (size_t)llm->n_vocab * sizeof(float);
    FAIL_IF(!llm_ws_reserve(&llm->lbuf, &llm->lbuf_cap, lbytes), PARE_ENOMEM, "%s: out of memory for %zu bytes of logits",
            llm->name, lbytes);
    memset(llm->gws, 0, llm->gws_cap); /* touched now, not inside the timed products */
    memset(llm->qws, 0, llm->qws_cap);
    memset(llm->lbuf, 0, llm->lbuf_cap);
    if (n_passes < PARE_LLM_PACK_PASSES) return PARE_OK;
    for (int il = 0; il < llm->n_layer; il++) {
        llm_mat *ms[LAYER_MATS];
        layer_mats(&llm->layers[il], ms);
        for (size_t i = 0; i < LAYER_MATS; i++) pack_mat(llm, ms[i]);
    }
    pack_mat(llm, &llm->output);
    return PARE_OK;
}

pare_status llm_weight_f32(pare_llm *llm, const llm_mat *w, int64_t r0, int64_t r1, const float **out,
                           pare_err *err) {
    const pare_tensor *t = w->t;
    if (t->type == PARE_TYPE_F32 && t->data && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = (const float *)t->data + r0 * w->n_in;
        return PARE_OK;
    }
    const size_t n = (size_t)(r1 - r0) * (size_t)w->n_in;
    if (n > llm->wbuf_cap) {
        free(llm->wbuf);
        llm->wbuf = malloc(n * sizeof(float));
        llm->wbuf_cap = llm->wbuf ? n : 0;
        FAIL_IF(!llm->wbuf, PARE_ENOMEM, "%s: out of memory for '%s' in f32", llm->name, t->name);
    }
    const void *bytes;
    void *tmp;
    TRY(pare_tensor_bytes(t, &bytes, &tmp, err));
    const size_t rb = pare_type_row_size(t->type, w->n_in);
    const uint8_t *src = (const uint8_t *)bytes + (size_t)r0 * rb;
    pare_status st = PARE_OK;
    if (!pare_plain_to_f32(t->type, src, llm->wbuf, (int64_t)n))
        st = pare_dequantize(t->type, src, llm->wbuf, r1 - r0, w->n_in, llm->n_threads, err);
    free(tmp);
    if (st) pare_err_prefix(err, "%s: tensor '%s'", llm->name, t->name);
    *out = llm->wbuf;
    return st;
}

pare_status llm_row_f32(const pare_tensor *t, const void *bytes, int64_t row, float *dst, pare_err *err) {
    size_t rb = pare_type_row_size(t->type, t->ne[0]);
    const uint8_t *src = (const uint8_t *)bytes + (size_t)row * rb;
    if (pare_plain_to_f32(t->type, src, dst, t->ne[0])) return PARE_OK;
    const pare_quant_traits *q = pare_quant_get(t->type);
    FAIL_IF(!q || !q->dequantize, PARE_EUNSUPPORTED, "tensor '%s': pare cannot read type %s", t->name,
            pare_type_name(t->type));
    q->dequantize(src, dst, t->ne[0]);
    return PARE_OK;
}
