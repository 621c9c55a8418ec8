/*
 * verify/model_llm.c - building a pare_llm from a model with GGUF names and metadata:
 * hyper-parameters from the ARCH.* keys (as llama.cpp's llm_load_hparams reads them), the
 * tensors each architecture needs (checked for presence, shape and a readable type), and
 * the scratch buffers of the forward pass.
 */
#include "verify/llm_impl.h"

#include <sys/mman.h>

#include "core/arch.h"
#include "quant/quant.h"

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
/* Models with at most this many bytes of F32 matrices multiply them in ggml's order. */
#define LLM_F32_EXACT_MAX_BYTES ((uint64_t)64 << 20)

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

/* ARCH.suffix for every layer: one integer for all, or (as llama.cpp accepts for head counts)
 * an array of n_layer values. Absent -> def (an error when def < 0); def_arr, when not NULL,
 * gives per-layer defaults instead. */
static pare_status meta_layers(const pare_llm *llm, const char *arch, const char *suffix, int64_t def,
                               const int *def_arr, int64_t lo, int64_t hi, int *v, pare_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pare_kv *kv = pare_meta_get(&llm->m->meta, key);
    if (!kv || kv->type != PARE_META_ARRAY) {
        int one = 0;
        TRY(meta_int(llm, arch, suffix, def_arr ? 0 : def, lo, hi, &one, err));
        for (int il = 0; il < llm->n_layer; il++) v[il] = kv || !def_arr ? one : def_arr[il];
        return PARE_OK;
    }
    FAIL_IF(kv->n != (uint64_t)llm->n_layer, PARE_EINPUT, "%s: %s has %llu values for %d layers", llm->name, key,
            (unsigned long long)kv->n, llm->n_layer);
    for (int il = 0; il < llm->n_layer; il++) {
        int64_t x;
        FAIL_IF(!pare_kv_arr_i64(kv, (uint64_t)il, &x), PARE_EINPUT, "%s: %s[%d] is not an integer", llm->name, key, il);
        FAIL_IF(x < lo || x > hi, PARE_EINPUT, "%s: %s[%d] = %lld is outside [%lld, %lld]", llm->name, key, il,
                (long long)x, (long long)lo, (long long)hi);
        v[il] = (int)x;
    }
    return PARE_OK;
}

static pare_status read_hparams(pare_llm *llm, const char *a, pare_err *err) {
    const pare_arch_fwd *f = &llm->ad->fwd;
    TRY(meta_int(llm, a, "block_count", -1, 1, LLM_MAX_LAYERS, &llm->n_layer, err));
    TRY(meta_int(llm, a, "embedding_length", -1, 1, LLM_MAX_DIM, &llm->n_embd, err));
    TRY(meta_int(llm, a, "context_length", 0, 0, INT32_MAX, &llm->n_ctx_train, err));
    llm->layers = calloc((size_t)llm->n_layer, sizeof *llm->layers);
    int *nh = malloc(2 * (size_t)llm->n_layer * sizeof *nh);
    if (!llm->layers || !nh) {
        free(nh);
        return pare_err_set(err, PARE_ENOMEM, "%s: out of memory", llm->name);
    }
    int *nkv = nh + llm->n_layer;
    pare_status st = meta_layers(llm, a, "attention.head_count", -1, NULL, 1, LLM_MAX_DIM, nh, err);
    if (!st) st = meta_layers(llm, a, "attention.head_count_kv", 0, nh, 1, LLM_MAX_DIM, nkv, err);
    for (int il = 0; !st && il < llm->n_layer; il++) {
        llm_layer *L = &llm->layers[il];
        L->n_head = nh[il];
        L->n_head_kv = nkv[il];
        if (L->n_head % L->n_head_kv)
            st = pare_err_set(err, PARE_EINPUT, "%s: layer %d: head_count %d is not a multiple of head_count_kv %d",
                              llm->name, il, L->n_head, L->n_head_kv);
        if (L->n_head > llm->n_head) llm->n_head = L->n_head;
        if (L->n_head_kv > llm->n_head_kv) llm->n_head_kv = L->n_head_kv;
    }
    free(nh);
    TRY(st);
    /* llama.cpp: the head size defaults to n_embd / the first layer's head count */
    const int h0 = llm->layers[0].n_head;
    int def_head = llm->n_embd % h0 ? -1 : llm->n_embd / h0;
    int kl, vl;
    TRY(meta_int(llm, a, "attention.key_length", def_head, 1, LLM_MAX_DIM, &kl, err));
    TRY(meta_int(llm, a, "attention.value_length", kl, 1, LLM_MAX_DIM, &vl, err));
    FAIL_IF(kl != vl, PARE_EUNSUPPORTED, "%s: key_length %d differs from value_length %d", llm->name, kl, vl);
    llm->n_embd_head = kl;
    float scale = 1.0f / sqrtf((float)kl);
    if ((f->flags & PARE_FWD_Q_SCALE_BY_TYPE) && llm->n_layer == f->q_scale_layers) /* gemma2, gemma3 27B */
        scale = 1.0f / sqrtf((float)(llm->n_embd / h0));
    llm->kq_scale = f->flags & PARE_FWD_Q_PRESCALE ? 1.0f : scale;
    llm->q_scale = f->flags & PARE_FWD_Q_PRESCALE ? scale : 1.0f;
    TRY(meta_float(llm, a, f->norm == PARE_NORM_LAYER ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
                   NAN, &llm->norm_eps, err));
    llm->parallel = f->flags & (PARE_FWD_PARALLEL | PARE_FWD_PARALLEL_2NORM);
    if (f->flags & PARE_FWD_PARALLEL_2NORM) {
        char key[160];
        bool par;
        snprintf(key, sizeof key, "%s.use_parallel_residual", a);
        if (pare_meta_get_bool(&llm->m->meta, key, &par)) llm->parallel = par;
    }
    llm->embd_scale = f->flags & PARE_FWD_EMBD_SCALE ? sqrtf((float)llm->n_embd) : 1.0f;
    llm->logit_scale = 1.0f;
    if (f->flags & PARE_FWD_LOGIT_SCALE) TRY(meta_float(llm, a, "logit_scale", 1.0, &llm->logit_scale, err));
    if (f->flags & PARE_FWD_SOFTCAP) {
        TRY(meta_float(llm, a, "attn_logit_softcapping", 50.0, &llm->attn_softcap, err));
        TRY(meta_float(llm, a, "final_logit_softcapping", 30.0, &llm->final_softcap, err));
        FAIL_IF(llm->attn_softcap < 0 || llm->final_softcap < 0, PARE_EINPUT, "%s: negative logit soft-capping",
                llm->name);
    }
    if (f->flags & PARE_FWD_SWA) {
        TRY(meta_int(llm, a, "attention.sliding_window", f->swa_window, 0, INT32_MAX, &llm->n_swa, err));
        for (int il = 0; il < llm->n_layer; il++)
            llm->layers[il].swa = llm->n_swa > 0 && (f->swa_period <= 1 || il % f->swa_period < f->swa_period - 1);
    }
    if (f->flags & PARE_FWD_MOE) TRY(llm_moe_hparams(llm, err));
    if (f->rope == PARE_ROPE_NONE) {
        FAIL_IF(llm->n_embd_head * llm->n_head != llm->n_embd, PARE_EUNSUPPORTED,
                "%s: %s with head size %d x %d heads != embedding %d", llm->name, a, kl, llm->n_head, llm->n_embd);
        return PARE_OK;
    }
    TRY(meta_float(llm, a, "rope.freq_base", 10000.0, &llm->rope_freq_base, err));
    TRY(meta_int(llm, a, "rope.dimension_count", kl, 2, kl, &llm->n_rot, err));
    FAIL_IF(llm->n_rot % 2, PARE_EINPUT, "%s: rope.dimension_count %d is odd", llm->name, llm->n_rot);
    llm->rope_neox = f->rope == PARE_ROPE_NEOX;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    const char *st_ = pare_meta_get_str(&llm->m->meta, key);
    float factor = 0;
    TRY(meta_float(llm, a, "rope.scaling.factor", 0.0, &factor, err));
    if (factor == 0) TRY(meta_float(llm, a, "rope.scale_linear", 0.0, &factor, err)); /* older files */
    llm->rope_freq_scale = 1.0f;
    if (st_ && strcmp(st_, "none") != 0) {
        FAIL_IF(strcmp(st_, "linear") != 0, PARE_EUNSUPPORTED, "%s: RoPE scaling '%s' is not supported (none, linear)",
                llm->name, st_);
        FAIL_IF(!(factor > 0), PARE_EINPUT, "%s: linear RoPE scaling without a positive factor", llm->name);
    }
    if ((!st_ || strcmp(st_, "none") != 0) && factor > 0) llm->rope_freq_scale = 1.0f / factor;
    /* gemma3: the sliding-window layers' own base, unscaled (llama.cpp's loader fixes both) */
    llm->rope_freq_base_swa = f->rope_base_swa > 0 ? f->rope_base_swa : llm->rope_freq_base;
    llm->rope_freq_scale_swa = f->rope_base_swa > 0 ? 1.0f : llm->rope_freq_scale;
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

/* ------------------------------------------------------------------------ activation rounding
 * (shared by forward.c's products and moe.c's expert products; plain scalar code, no sum to
 * contract, so every kernel level computes the same values) */

/* Q8_0 as ggml-cpu's x86 quantize_row_q8_0: d = amax / 127 stored as f16, q = round to
 * nearest even of x * 127 / amax. */
void llm_round_q8_0(const float *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n; b += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = pare_fp16_to_fp32(pare_fp32_to_fp16(amax / 127.f)), id = amax != 0 ? 127.f / amax : 0.f;
        for (int j = 0; j < 32; j++) y[b + j] = nearbyintf(x[b + j] * id) * d;
    }
}

/* Q8_K as ggml's quantize_row_q8_K_ref: the signed value of largest magnitude maps to -127,
 * d = 1 / iscale kept in f32. */
void llm_round_q8_K(const float *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n; b += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[b + j]) > amax) amax = fabsf(x[b + j]), max = x[b + j];
        if (amax == 0) {
            memset(y + b, 0, 256 * sizeof *y);
            continue;
        }
        const float iscale = -127.f / max, d = 1 / iscale;
        for (int j = 0; j < 256; j++) {
            float q = nearbyintf(iscale * x[b + j]);
            y[b + j] = (q < 127 ? q : 127) * d;
        }
    }
}


/* ggml_table_gelu_f16: GELU (tanh approximation, in float) of every f16 value, rounded to
 * f16; kept here as f32. Entries for inputs outside (-10, 10) are not used. */
static void gelu_table(float *tab) {
    const float c = 0.79788456080286535587989211986876f, a = 0.044715f;
    for (int h = 0; h < 65536; h++) {
        const float x = pare_fp16_to_fp32((uint16_t)h);
        /* ggml-cpu is built for the machine (-march=native: FMA) in GNU C, where GCC contracts
         * 1 + a x x into one fma; without it some entries round to the other f16 */
        const float u = fmaf(a * x, x, 1.0f);
        tab[h] = pare_fp16_to_fp32(pare_fp32_to_fp16(0.5f * x * (1.0f + tanhf(c * x * u))));
    }
}

/* Loads norm NAME.weight (+ NAME.bias when present) of n values. */
static pare_status find_norm(const pare_llm *llm, bool required, int64_t n, float **w, float **b, pare_err *err,
                             const char *name) {
    char k[128];
    snprintf(k, sizeof k, "%s.weight", name);
    TRY(find_vec(llm, required, n, w, err, k));
    if (!b) return PARE_OK;
    snprintf(k, sizeof k, "%s.bias", name);
    return *w ? find_vec(llm, false, n, b, err, k) : PARE_OK;
}

/* attn_q_norm / attn_k_norm: one vector per head (n_embd_head) or over all heads (n), by the
 * tensor's length. */
static pare_status find_qk_norm(const pare_llm *llm, const char *name, int64_t n, float **w, float **b, int64_t *len,
                                pare_err *err) {
    const pare_tensor *t = pare_model_find(llm->m, name);
    *w = *b = NULL;
    if (!t) return PARE_OK;
    *len = t->ne[0] == llm->n_embd_head ? llm->n_embd_head : n;
    char base[96];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(".weight")), name);
    return find_norm(llm, true, *len, w, b, err, base);
}

static pare_status load_layer(pare_llm *llm, int il, llm_layer *L, pare_err *err) {
    const pare_arch_fwd *f = &llm->ad->fwd;
    const int64_t D = llm->n_embd, hq = (int64_t)L->n_head * llm->n_embd_head,
                  hkv = (int64_t)L->n_head_kv * llm->n_embd_head;
    const bool pre = !(f->flags & PARE_FWD_NO_PRE_NORM), post = f->flags & PARE_FWD_POST_NORM;
    /* one norm feeds both sublayers of a parallel block, except GPT-NeoX's */
    const bool ffn_norm = pre && !(llm->parallel && (f->flags & PARE_FWD_PARALLEL));
    char n[96], w[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
#define WNAME(s) (snprintf(w, sizeof w, "blk.%d.%s.weight", il, s), w)
    TRY(find_norm(llm, pre, D, &L->attn_norm, &L->attn_norm_b, err, NAME("attn_norm")));
    TRY(find_norm(llm, ffn_norm, D, &L->ffn_norm, &L->ffn_norm_b, err, NAME("ffn_norm")));
    TRY(find_norm(llm, post, D, &L->attn_post_norm, NULL, err, NAME("post_attention_norm")));
    TRY(find_norm(llm, post, D, &L->ffn_post_norm, NULL, err, NAME("post_ffw_norm")));
    if (pare_model_find(llm->m, WNAME("attn_qkv"))) {
        TRY(find_mat(llm, true, D, hq + 2 * hkv, &L->wqkv, err, w));
        TRY(find_vec(llm, false, hq + 2 * hkv, &L->bqkv, err, NAME("attn_qkv.bias")));
    } else {
        TRY(find_mat(llm, true, D, hq, &L->wq, err, WNAME("attn_q")));
        TRY(find_mat(llm, true, D, hkv, &L->wk, err, WNAME("attn_k")));
        TRY(find_mat(llm, true, D, hkv, &L->wv, err, WNAME("attn_v")));
        TRY(find_vec(llm, false, hq, &L->bq, err, NAME("attn_q.bias")));
        TRY(find_vec(llm, false, hkv, &L->bk, err, NAME("attn_k.bias")));
        TRY(find_vec(llm, false, hkv, &L->bv, err, NAME("attn_v.bias")));
    }
    TRY(find_qk_norm(llm, WNAME("attn_q_norm"), hq, &L->q_norm, &L->q_norm_b, &L->q_norm_n, err));
    TRY(find_qk_norm(llm, WNAME("attn_k_norm"), hkv, &L->k_norm, &L->k_norm_b, &L->k_norm_n, err));
    TRY(find_mat(llm, true, hq, D, &L->wo, err, WNAME("attn_output")));
    TRY(find_vec(llm, false, D, &L->bo, err, NAME("attn_output.bias")));
    if (llm->n_expert > 0) return llm_moe_load(llm, il, L, err); /* verify/moe.c */
    /* The FFN width is read from ffn_up, so that it may differ between layers. */
    const pare_tensor *up = pare_model_find(llm->m, WNAME("ffn_up"));
    FAIL_IF(!up, PARE_EINPUT, "%s: tensor '%s' is missing", llm->name, w);
    const int64_t U = up->ne[1], F = f->flags & PARE_FWD_FUSED_GATE_UP ? U / 2 : U;
    FAIL_IF(U < 1 || U > LLM_MAX_DIM || (F * 2 != U && F != U), PARE_EINPUT, "%s: tensor '%s' has %lld rows", llm->name,
            w, (long long)U);
    if (U > llm->n_ff_max) llm->n_ff_max = (int)U;
    L->n_ff = F;
    TRY(find_mat(llm, true, D, U, &L->ffn_up, err, w));
    const bool gated = f->ffn != PARE_FFN_GELU && !(f->flags & PARE_FWD_FUSED_GATE_UP);
    TRY(find_mat(llm, gated, D, F, &L->ffn_gate, err, WNAME("ffn_gate")));
    FAIL_IF(!gated && L->ffn_gate.t, PARE_EUNSUPPORTED, "%s: unexpected '%s' (%s has no separate FFN gate)", llm->name,
            w, llm->ad->name);
    TRY(find_mat(llm, true, F, D, &L->ffn_down, err, WNAME("ffn_down")));
    TRY(find_vec(llm, false, U, &L->ffn_up_b, err, NAME("ffn_up.bias")));
    TRY(find_vec(llm, false, F, &L->ffn_gate_b, err, NAME("ffn_gate.bias")));
    TRY(find_vec(llm, false, D, &L->ffn_down_b, err, NAME("ffn_down.bias")));
#undef NAME
#undef WNAME
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
    const pare_arch_fwd *f = &llm->ad->fwd;
    const pare_tensor *te = pare_model_find(llm->m, "token_embd.weight");
    FAIL_IF(!te, PARE_EINPUT, "%s: tensor 'token_embd.weight' is missing", llm->name);
    FAIL_IF(te->ne[1] < 1 || te->ne[1] > INT32_MAX, PARE_EINPUT, "%s: token_embd.weight has %lld rows", llm->name,
            (long long)te->ne[1]);
    llm->n_vocab = (int)te->ne[1];
    TRY(find_mat(llm, true, D, llm->n_vocab, &llm->tok_embd, err, "token_embd.weight"));
    if (f->rope == PARE_ROPE_NONE) {
        const pare_tensor *pe = pare_model_find(llm->m, "position_embd.weight");
        FAIL_IF(!pe, PARE_EINPUT, "%s: tensor 'position_embd.weight' is missing", llm->name);
        FAIL_IF(pe->ne[1] < 1 || pe->ne[1] > INT32_MAX, PARE_EINPUT, "%s: position_embd.weight has %lld rows",
                llm->name, (long long)pe->ne[1]);
        TRY(find_mat(llm, true, D, pe->ne[1], &llm->pos_embd, err, "position_embd.weight"));
    }
    TRY(find_norm(llm, true, D, &llm->out_norm, &llm->out_norm_b, err, "output_norm"));
    TRY(find_mat(llm, false, D, llm->n_vocab, &llm->output, err, "output.weight"));
    if (!llm->output.t) llm->output = llm->tok_embd; /* tied embeddings */
    TRY(find_vec(llm, false, llm->n_vocab, &llm->output_b, err, "output.bias"));
    llm->output_name = "output.weight";
    if (f->rope != PARE_ROPE_NONE) TRY(find_vec(llm, false, llm->n_rot / 2, &llm->rope_freqs, err, "rope_freqs.weight"));
    for (int il = 0; il < llm->n_layer; il++) TRY(load_layer(llm, il, &llm->layers[il], err));
    /* The output matrix (often the largest) is dequantized in blocks of rows no bigger than
     * the largest matrix of a layer, so a pass holds at most that much in f32. */
    for (int il = 0; il < llm->n_layer; il++) {
        llm_mat *ms[LAYER_MATS];
        layer_mats(&llm->layers[il], ms);
        for (size_t i = 0; i < LAYER_MATS; i++)
            if (ms[i]->t && (size_t)(ms[i]->n_in * ms[i]->n_out) > llm->wblock) llm->wblock = (size_t)(ms[i]->n_in * ms[i]->n_out);
    }
    if (!llm->wblock) llm->wblock = (size_t)D * (size_t)(llm->n_ff_max > 0 ? llm->n_ff_max : D);
    if (f->ffn == PARE_FFN_GELU || f->ffn == PARE_FFN_GEGLU) {
        llm->gelu_tab = malloc(65536 * sizeof *llm->gelu_tab);
        FAIL_IF(!llm->gelu_tab, PARE_ENOMEM, "%s: out of memory", llm->name);
        gelu_table(llm->gelu_tab);
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
    const pare_arch *ad = pare_arch_find(arch);
    /* a GGUF of another kind (a vision projector, an embedding model, ...) or a family without
     * a forward pass */
    FAIL_IF(!ad, PARE_EUNSUPPORTED, "%s: pare cannot evaluate architecture '%s' (it evaluates %s)", path, arch,
            pare_arch_names());
    pare_llm *llm = calloc(1, sizeof *llm);
    FAIL_IF(!llm, PARE_ENOMEM, "out of memory");
    llm->m = m;
    llm->ad = ad;
    snprintf(llm->name, sizeof llm->name, "%s", path);
    llm->n_threads = n_threads > 0 ? n_threads : pare_default_threads();
    llm->ggml_round = true;
    llm->kv_f16 = true;
    pare_status st = read_hparams(llm, arch, err);
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
        if ((pare_type_get(m->tensors[i].type)->is_quantized && m->tensors[i].n_dims == 2)) llm->att_exact = true;
    /* F32 weights: the blocked GEMM's order differs from ggml's in the last bits, which stay
     * there in most models; deep models with sharp attention (gemma2's reference: 26 layers)
     * amplify them through the f16 KV cache and the f16 GELU table to 0.3 in the logits. Small
     * models, where speed does not matter, take ggml's order for f32 products and attention too
     * (the larger ones keep the fast kernel: bench/). */
    uint64_t f32_bytes = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].type == PARE_TYPE_F32 && m->tensors[i].n_dims >= 2) f32_bytes += m->tensors[i].n_bytes;
    if (f32_bytes <= LLM_F32_EXACT_MAX_BYTES) llm->att_exact = llm->f32_exact = true;
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

void pare_llm_trim(pare_llm *llm) {
    float **b[] = {&llm->x,  &llm->xn,  &llm->q,    &llm->k,        &llm->v,   &llm->att, &llm->h1,
                   &llm->h2, &llm->tmp, &llm->rope, &llm->rope_swa, &llm->qkv, &llm->ao,  &llm->fo};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        free(*b[i]);
        *b[i] = NULL;
    }
    llm->cap_tokens = 0;
    free(llm->wbuf), llm->wbuf = NULL, llm->wbuf_cap = 0;
    free(llm->gws), llm->gws = NULL, llm->gws_cap = 0;
    free(llm->qws), llm->qws = NULL, llm->qws_cap = 0;
    free(llm->lbuf), llm->lbuf = NULL, llm->lbuf_cap = 0;
}

void pare_llm_free(pare_llm *llm) {
    if (!llm) return;
    for (int il = 0; llm->layers && il < llm->n_layer; il++) {
        llm_layer *L = &llm->layers[il];
        float *v[] = {L->attn_norm, L->attn_norm_b, L->bq,       L->bk,         L->bv,         L->bqkv,
                      L->bo,        L->ffn_norm,    L->ffn_norm_b, L->ffn_gate_b, L->ffn_up_b, L->ffn_down_b,
                      L->q_norm,    L->q_norm_b,    L->k_norm,   L->k_norm_b,   L->attn_post_norm, L->ffn_post_norm};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
        llm_mat *ms[LAYER_MATS];
        layer_mats(L, ms);
        for (size_t i = 0; i < LAYER_MATS; i++) free(ms[i]->packed);
        llm_moe_free(L->moe);
    }
    free(llm->output.packed);
    pare_pool_free(llm->pool);
    free(llm->layers);
    free(llm->out_norm);
    free(llm->out_norm_b);
    free(llm->output_b);
    free(llm->gelu_tab);
    free(llm->rope_freqs);
    free(llm->wbuf);
    free(llm->gws);
    free(llm->qws);
    free(llm->lbuf);
    float *b[] = {llm->x,  llm->xn, llm->q,   llm->k,   llm->v,   llm->att, llm->h1,
                  llm->h2, llm->tmp, llm->rope, llm->rope_swa, llm->qkv, llm->ao, llm->fo};
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
void pare_llm_set_kv_f16(pare_llm *llm, bool on) { llm->kv_f16 = on; }

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
    bool fused = false;
    for (int il = 0; il < llm->n_layer; il++) fused |= llm->layers[il].wqkv.t != NULL;
    size_t wide = hq + 2 * hkv;
    if (D > wide) wide = D;
    if (F > wide) wide = F;
    TRY(grow(&llm->x, T * D, err));
    TRY(grow(&llm->xn, T * D, err));
    TRY(grow(&llm->ao, T * D, err));
    TRY(grow(&llm->fo, T * D, err));
    TRY(grow(&llm->q, T * hq, err));
    TRY(grow(&llm->k, T * hkv, err));
    TRY(grow(&llm->v, T * hkv, err));
    TRY(grow(&llm->att, T * hq, err));
    TRY(grow(&llm->h1, T * F, err));
    TRY(grow(&llm->h2, T * F, err));
    TRY(grow(&llm->tmp, T * wide, err));
    if (fused) TRY(grow(&llm->qkv, T * (hq + 2 * hkv), err));
    TRY(grow(&llm->rope, T * (size_t)(llm->n_rot > 0 ? llm->n_rot : 1), err));
    TRY(grow(&llm->rope_swa, T * (size_t)(llm->n_rot > 0 ? llm->n_rot : 1), err));
    /* touched now, once, rather than page by page inside the products */
    float *b[] = {llm->x, llm->xn, llm->ao, llm->fo, llm->att, llm->h1, llm->h2, llm->tmp, llm->q, llm->k, llm->v};
    const size_t nb[] = {T * D, T * D, T * D, T * D, T * hq, T * F, T * F, T * wide, T * hq, T * hkv, T * hkv};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) memset(b[i], 0, nb[i] * sizeof(float));
    if (fused) memset(llm->qkv, 0, T * (hq + 2 * hkv) * sizeof(float));
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
